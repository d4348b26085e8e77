/*
 * route: which endpoints may serve a request, in which order, from the
 * request's OpenRouter `provider` preferences and model suffix. Pure
 * functions over catalog endpoints: no allocation per request beyond the
 * caller's arrays, unit-tested with a table of cases.
 *
 * Supported: order, allow_fallbacks, only, ignore, data_collection ("deny":
 * no training, no retention), zdr (no retention), quantizations, max_price
 * {prompt, completion} (USD per million tokens), sort price | latency (time
 * to first token) | throughput (tokens per second), and the ":floor"
 * (price) / ":nitro" (throughput) suffixes. Speeds are the fleet's
 * decaying averages (health.h), else this router's, with priors for
 * endpoints not seen yet.
 */
#ifndef AGORA_ROUTE_H
#define AGORA_ROUTE_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "policy.h"
#include "rcat.h"

#define ROUTE_MAX_LIST 32

/* DEFAULT: load balanced (route_balance), then cheapest first; PRICE: the
 * cheapest strictly first (sort "price", ":floor"). */
enum { ROUTE_SORT_DEFAULT, ROUTE_SORT_PRICE, ROUTE_SORT_LATENCY, ROUTE_SORT_THROUGHPUT };

/* An endpoint that failed this recently is kept out of the balanced pick. */
#define ROUTE_RECENT_FAILURE_MS 30000

/* Priors for endpoints without samples yet: a cold endpoint is neither
 * favoured nor shunned. */
#define ROUTE_PRIOR_TTFT_MS 1000.0
#define ROUTE_PRIOR_TPS 40.0

struct route_prefs {
	const char *order[ROUTE_MAX_LIST];	/* provider ids or names */
	int norder;
	const char *only[ROUTE_MAX_LIST];
	int nonly;
	const char *ignore[ROUTE_MAX_LIST];
	int nignore;
	const char *quant[ROUTE_MAX_LIST];
	int nquant;
	int allow_fallbacks;			/* default 1 */
	int sort;				/* ROUTE_SORT_* */
	int data_deny, zdr;
	int64_t max_prompt, max_completion;	/* uusd per Mtok; -1: none */
	int require_parameters;
	/* Set by the caller: the operator's policy for the key (may be NULL),
	 * applied before anything the request says. */
	const struct policy *policy;
	/* Filled by the caller from the request (not from `provider`): */
	int64_t need_output;			/* max_tokens asked for, 0: none */
	int64_t need_context;			/* prompt estimate + need_output */
	const char *params[ROUTE_MAX_LIST];	/* parameters the request uses */
	int nparams;
};

/* Fills need_output, need_context and params from the request body; the
 * prompt is estimated at ~4 bytes a token. */
void route_from_request(struct route_prefs *prefs, const cJSON *body, size_t body_len);

/* Reads the `provider` object (may be NULL). Strings point into the cJSON
 * tree, which must outlive prefs. Unknown fields are ignored; a known field
 * of the wrong type is an error naming it. Returns 0 or -1 (msg). */
int route_parse(const cJSON *provider, struct route_prefs *prefs, char *msg, size_t len);

/* Strips a ":floor" / ":nitro" suffix from a model id (in place) and sets
 * the sort it asks for (prefs may be NULL). */
void route_strip_suffix(char *model_id, struct route_prefs *prefs);

enum route_state { ROUTE_CLOSED, ROUTE_OPEN, ROUTE_HALF_OPEN };

/* The breaker's state now (a probe older than 30 s is considered lost). */
enum route_state route_state(const struct rcat_endpoint *e, int64_t now_ms);
/* The breaker is also open while another router reports it open
 * (health.fleet_until_ms). Outcomes feed the breaker, the averages and the
 * window (health.h); latency_ms: the whole answer. retry_after_ms > 0 opens
 * the breaker at once for that long. */
void route_success(struct rcat_endpoint *e, int64_t now_ms, double ttft_ms, double tps, double latency_ms);
void route_failure(struct rcat_endpoint *e, int64_t now_ms, int threshold, int64_t cooldown_ms,
		   int64_t retry_after_ms);

/* 1 when the operator policy lets e serve (why: the rule that refused). */
int route_policy_allows(const struct policy *policy, const struct rcat_endpoint *e, char *why, size_t len);

/* Default load balancing (OpenRouter's): among eps[0..n) whose breaker is
 * closed and that have not failed in the last ROUTE_RECENT_FAILURE_MS, picks
 * one with probability proportional to 1 / price^2 (price: prompt +
 * completion) and moves it to the front; the others keep their order. u is
 * a uniform random number in [0, 1). Returns the index picked, or -1 when
 * none qualifies (eps unchanged). */
int route_balance(struct rcat_endpoint **eps, int n, double u, int64_t now_ms);

/* Filters and orders endpoints (in: cheapest first) into out (at most max).
 * Returns how many; 0 means the preferences left none. */
int route_select(const struct route_prefs *prefs, struct rcat_endpoint *const *in, int n,
		 struct rcat_endpoint **out, int max);

#endif
