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
 * (price) / ":nitro" (throughput) suffixes. Speeds are this router's
 * decaying averages, with priors for endpoints not seen yet.
 */
#ifndef AGORA_ROUTE_H
#define AGORA_ROUTE_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "rcat.h"

#define ROUTE_MAX_LIST 32

enum { ROUTE_SORT_PRICE, ROUTE_SORT_LATENCY, ROUTE_SORT_THROUGHPUT };

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
/* Outcomes. retry_after_ms > 0 opens the breaker at once for that long. */
void route_success(struct rcat_endpoint *e, int64_t now_ms, double ttft_ms, double tps);
void route_failure(struct rcat_endpoint *e, int64_t now_ms, int threshold, int64_t cooldown_ms,
		   int64_t retry_after_ms);

/* Filters and orders endpoints (in: cheapest first) into out (at most max).
 * Returns how many; 0 means the preferences left none. */
int route_select(const struct route_prefs *prefs, struct rcat_endpoint *const *in, int n,
		 struct rcat_endpoint **out, int max);

#endif
