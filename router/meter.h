/*
 * meter: the router's usage events. When a generation ends, one event (ids,
 * tokens, integer nano-USD costs, timings; never prompt or completion text)
 * is appended to the Redis stream `usage` (or, with usage_shards > 1, its
 * account's shard) with a pipelined asynchronous XADD;
 * a request never waits on Redis. While Redis is away, or an XADD fails,
 * events go to a local append-only spool file (flushed and fsync'd off the
 * loop by a writer thread) that is replayed in order when Redis returns.
 * Billing is idempotent on the generation id, so a replay that repeats an
 * event is harmless.
 */
#ifndef AGORA_METER_H
#define AGORA_METER_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "rds.h"

struct meter;

struct usage_event {
	const char *id;			/* gen-... */
	int64_t ts_ms;			/* when the generation ended */
	int64_t account_id, key_id;
	const char *app_url, *app_title;	/* HTTP-Referer, X-Title (may be NULL) */
	const char *model, *author, *provider;
	int64_t endpoint_id;
	int64_t prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens;
	int64_t cost_nusd, provider_cost_nusd;
	int latency_ms, ttft_ms;
	int64_t tps_milli;		/* output tokens per second x 1000 */
	int streamed, estimated, status, attempts;
	const char *finish_reason;
	const char *provider_responses;	/* JSON array of attempts, or NULL */
};

struct meter_stats {
	long long emitted, spooled, replayed, spool_bytes, xadd_errors, spool_full;
};

/* shards: usage_shards; an event goes to the stream of its account's shard
 * (rds_shard_key), replayed ones too. */
/* max_inflight: events sent and not yet answered, at most (more are
 * spooled, or left in the spool by a replay, and sent a second later). */
struct meter *meter_new(struct event_base *base, struct rds *rd, int shards, const char *spool_path,
			int64_t spool_max_bytes, int max_inflight, char *err, size_t errlen);
void meter_free(struct meter *m);
/* Records one event. Returns -1 only when neither Redis nor the spool can
 * take it (spool full): callers should stop serving until it drains. */
int meter_emit(struct meter *m, const struct usage_event *ev);
/* 0 when new work can be metered (spool not full). */
int meter_blocked(const struct meter *m);
/* Call after every Redis (re)connect: replays the spool. */
void meter_redis_up(struct meter *m);
void meter_stats(const struct meter *m, struct meter_stats *st);
/* Events sent to Redis and not yet settled (answered, and confirmed by
 * WAIT with redis_wait_replicas): 0 means every one is in its stream. */
long long meter_unsettled(const struct meter *m);
/* replicas > 0: an XADD counts as delivered only once WAIT says that many
 * replicas hold it (else it is spooled and sent again), so a fail-over that
 * promotes a replica loses no event (redis_wait_replicas). */
void meter_set_wait(struct meter *m, int replicas);
/* ms > 0: events are held up to ms (at most 1,024) and sent together, one
 * write for many, so that Redis wakes and appends to its AOF once for them
 * (metering_flush_ms); 0: each is sent at the end of its loop turn. */
void meter_set_flush(struct meter *m, int ms);
/* A drain: held events go now, later ones with their answers, whatever
 * meter_set_flush says after (a reload during the drain). */
void meter_drain(struct meter *m);

/* The event as the compact JSON stored in the stream field `e` (exposed for
 * tests and for billing's parser). Caller frees with free(). */
char *meter_event_json(const struct usage_event *ev);

#endif
