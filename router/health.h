/*
 * health: what every attempt teaches about an endpoint, kept by each router
 * and shared by the fleet through Redis.
 *
 * Locally (struct rcat_health, rcat.h, fed by route_success/route_failure):
 * decaying averages of time to first token and output tokens per second,
 * and a ring of the last RCAT_WINDOW attempts (outcome, TTFT, total latency,
 * tokens per second) from which p50/p75/p90/p99 and the success ratio over
 * the last 30 minutes are computed on demand, without allocating.
 *
 * Fleet: every sync interval a router writes, for a bounded slice of the
 * current catalog's endpoints, its own summary into one Redis hash per
 * endpoint and reads the others' back, pipelined on the shared async
 * connection (the loop never waits; without Redis the local values stand):
 *
 *   eph:{<endpoint id>}   hash, EXPIRE 300 s
 *     <router instance id> = "ttft_avg_ms,tps_avg,samples,fail_until_ms,updated_ms"
 *
 * samples are the router's successes in its 30-minute window (at most
 * RCAT_WINDOW). The merge (health_merge, pure) keeps entries updated within
 * HEALTH_FRESH_MS: the fleet's speed is the samples-weighted mean (weights
 * capped at HEALTH_WEIGHT_CAP) of this router's live values and the others',
 * present only when another router contributed; the fleet's open deadline
 * is the latest fail_until another router reports. Fields not updated for
 * HEALTH_GC_MS (routers that went away) are deleted by whoever reads them.
 */
#ifndef AGORA_HEALTH_H
#define AGORA_HEALTH_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "rcat.h"
#include "rds.h"

#define HEALTH_SPAN_MS (30 * 60 * 1000)	/* the window's time span */
#define HEALTH_FRESH_MS 60000		/* fleet entries older are ignored */
#define HEALTH_GC_MS 300000		/* and older than this deleted */
#define HEALTH_KEY_TTL_S 300		/* an endpoint's hash outlives silence */
#define HEALTH_WEIGHT_CAP 64		/* one router's weight in the mean */
#define HEALTH_MAX_OPEN_MS 3600000	/* a reported deadline is capped at now + this */
#define HEALTH_BATCH 512		/* endpoints synced per tick */
#define HEALTH_MAX_ROUTERS 64		/* entries merged per endpoint */

/* ---- the window (pure) ---- */

/* Records one attempt in the ring. */
void health_record(struct rcat_health *h, int64_t now_ms, int ok, double ttft_ms, double latency_ms,
		   double tps);

struct health_pct {
	double p50, p75, p90, p99;
};

struct health_stats {
	int ok, failed;			/* attempts within the span */
	int nttft, nlatency, ntps;	/* successes with each measure */
	struct health_pct ttft, latency;	/* ms; pNN: NN% were at most this */
	struct health_pct tps;		/* tokens/s; pNN: NN% were at least this */
};

/* Stats of the attempts that ended within span_ms before now. */
void health_stats(const struct rcat_health *h, int64_t now_ms, int64_t span_ms, struct health_stats *s);

/* Nearest-rank percentiles of v[0..n) (n <= RCAT_WINDOW; v is sorted in
 * place, ascending, or descending when high_is_good). n 0: all zero. */
void health_percentiles(float *v, int n, int high_is_good, struct health_pct *out);

/* ---- the fleet (pure) ---- */

struct health_entry {
	double ttft_ms, tps;		/* decaying averages, 0: none */
	long long samples;		/* successes in the window */
	int64_t until_ms;		/* breaker open until (0: closed) */
	int64_t updated_ms;
};

/* This router's entry for an endpoint now. */
void health_entry_own(const struct rcat_health *h, int64_t now_ms, struct health_entry *e);
/* "ttft,tps,samples,until,updated"; returns the length or -1. */
int health_entry_format(const struct health_entry *e, char *buf, size_t len);
/* The reverse (extra trailing fields are ignored); 0 or -1. */
int health_entry_parse(const char *s, size_t len, struct health_entry *e);

struct health_fleet {
	double ttft_ms, tps;		/* 0: no other router has samples */
	long long samples;		/* successes behind the means */
	int routers;			/* fresh entries with something to say, own included */
	int64_t until_ms;		/* latest open deadline of another router, 0: none */
};

/* Merges this router's entry (may be NULL) with the others' (stale ones
 * are skipped). */
void health_merge(const struct health_entry *own, const struct health_entry *others, int n, int64_t now_ms,
		  struct health_fleet *out);
/* Stores a merge in an endpoint's health. */
void health_apply(struct rcat_health *h, const struct health_fleet *f, int64_t now_ms);

/* The speeds routing uses: the fleet's when another router has samples,
 * else this router's, else 0 (the caller's prior). */
double health_ttft_ms(const struct rcat_health *h);
double health_tps(const struct rcat_health *h);

/* ---- the sync (Redis) ---- */

struct health;

/* cat: where the current catalog snapshot pointer lives (it may change or
 * be NULL between ticks). */
struct health *health_new(struct event_base *base, struct rds *rd, struct rcat **cat, int sync_ms);
/* Free after rds_free(): replies still pending are delivered (as NULL)
 * while the rds is freed, and they refer to this object. */
void health_free(struct health *hs);
/* This router's random instance id (the hash field it writes). */
const char *health_instance(const struct health *hs);

#endif
