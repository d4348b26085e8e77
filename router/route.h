/*
 * route: which endpoints may serve a request, in which order, from the
 * request's OpenRouter `provider` preferences and model suffix. Pure
 * functions over catalog endpoints: no allocation per request beyond the
 * caller's arrays, unit-tested with a table of cases.
 *
 * Supported now: order, allow_fallbacks, only, ignore, data_collection
 * ("deny": no training, no retention), zdr (no retention), quantizations,
 * max_price {prompt, completion} (USD per million tokens), sort "price" and
 * the ":floor" suffix. sort "latency"/"throughput" and ":nitro" are accepted
 * and, until endpoint statistics exist, keep the price order.
 */
#ifndef AGORA_ROUTE_H
#define AGORA_ROUTE_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "rcat.h"

#define ROUTE_MAX_LIST 32

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
	int data_deny, zdr;
	int64_t max_prompt, max_completion;	/* uusd per Mtok; -1: none */
};

/* Reads the `provider` object (may be NULL). Strings point into the cJSON
 * tree, which must outlive prefs. Unknown fields are ignored; a known field
 * of the wrong type is an error naming it. Returns 0 or -1 (msg). */
int route_parse(const cJSON *provider, struct route_prefs *prefs, char *msg, size_t len);

/* Strips a ":floor" / ":nitro" suffix from a model id (in place). */
void route_strip_suffix(char *model_id);

/* Filters and orders endpoints (in: cheapest first) into out (at most max).
 * Returns how many; 0 means the preferences left none. */
int route_select(const struct route_prefs *prefs, struct rcat_endpoint *const *in, int n,
		 struct rcat_endpoint **out, int max);

#endif
