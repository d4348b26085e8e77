/*
 * router: the state one router process shares between its modules: the
 * loop, configuration, PostgreSQL connections, key cache, catalog snapshot,
 * upstream pool and counters. Nothing in here blocks.
 */
#ifndef AGORA_ROUTER_H
#define AGORA_ROUTER_H

#include <stdint.h>

#include <event2/event.h>

#include "auth.h"
#include "budget.h"
#include "conf.h"
#include "httpd.h"
#include "meter.h"
#include "pgc.h"
#include "rds.h"
#include "health.h"
#include "ratelimit.h"
#include "rcat.h"
#include "rstats.h"
#include "upstream.h"

/* Counters, defined once: name, help. Rendered by GET /metrics. */
#define ROUTER_STATS(X) \
	X(requests_total, "HTTP requests handled") \
	X(completions_total, "chat completion requests") \
	X(completions_ok, "chat completions answered 200") \
	X(completions_failed, "chat completions answered with an error") \
	X(streams_total, "streamed completions started to a client") \
	X(client_aborts, "clients gone before their answer ended") \
	X(upstream_attempts, "upstream requests sent") \
	X(upstream_failures, "upstream attempts that failed") \
	X(upstream_failovers, "requests moved on to another endpoint") \
	X(upstream_timeouts, "upstream attempts that timed out") \
	X(backpressure_pauses, "upstream reads paused for a slow client") \
	X(catalog_reloads, "catalog snapshots loaded") \
	X(auth_failures, "requests refused for their key") \
	X(meter_refusals, "completions refused because usage could not be recorded") \
	X(rate_limited, "completions refused by a key's rate limit") \
	X(credit_refusals, "completions refused for credits or key limits (402)") \
	X(budget_waits, "completions that waited for a credit lease from Redis") \
	X(budget_fallbacks, "completions checked against the cached balance (Redis away)") \
	X(breaker_opens, "endpoint circuit breakers opened")

struct router_stats {
#define X(name, help) long long name;
	ROUTER_STATS(X)
#undef X
};

struct router {
	struct event_base *base;
	struct agora_conf conf;
	struct httpd *httpd;
	struct pgc *pg_ctl;		/* LISTEN + catalog loads */
	struct pgc *pg_auth;		/* key lookups */
	struct auth *auth;
	struct upstream_pool *up;
	struct rds *redis;		/* metering */
	int metering;			/* conf.metering is "on" (read once) */
	struct meter *meter;
	struct ratelimit *ratelimit;	/* per-key RPM/TPM */
	struct budget *budget;		/* prepaid credit leases */
	struct health *health;		/* endpoint health shared by the fleet */
	struct rcat *cat;		/* current snapshot, NULL until loaded */
	int cat_loading;
	struct event *poll_timer;
	int inflight;			/* completions in progress */
	int streams_inflight;		/* of which streaming to their client */
	int draining;			/* SIGTERM: /health answers 503 (not ready) */
	struct router_stats st;
	struct rstats *rs;		/* histograms, outcomes per provider (api.c) */
};


/* POST /api/v1/chat/completions (proxy.c). */
void proxy_chat(struct router *rt, struct httpd_req *req);
/* GET /api/v1/models, /models/{a}/{s}/endpoints, /key, /health, /metrics (api.c). */
void api_models(struct router *rt, struct httpd_req *req);
void api_model_endpoints(struct router *rt, struct httpd_req *req, const char *model_id);
void api_key(struct router *rt, struct httpd_req *req);
void api_metrics(struct router *rt, struct httpd_req *req);
/* GET /health: 200 ready; 503 before the catalog has loaded or while
 * draining (a readiness probe). GET /health/live: 200 while the loop runs. */
void api_health(struct router *rt, struct httpd_req *req);
/* The metrics' state and the httpd hook counting answers; -1: no memory. */
int api_metrics_init(struct router *rt);
void api_metrics_free(struct router *rt);
/* GET /generation?id=, GET /credits: the calling key's account only. */
void api_generation(struct router *rt, struct httpd_req *req);
void api_credits(struct router *rt, struct httpd_req *req);
/* /keys and /keys/{hash}: the provisioning API (keys.c); hash may be NULL. */
void api_keys(struct router *rt, struct httpd_req *req, const char *hash);
/* The bearer token of a request, or NULL; *len gets its length. */
const char *api_bearer(struct httpd_req *req, size_t *len);

#endif
