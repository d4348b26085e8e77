/*
 * route: provider preferences (see route.h).
 */
#include "route.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "health.h"
#include "money.h"
#include "request.h"

static int
bad(char *msg, size_t len, const char *field, const char *what)
{
	snprintf(msg, len, "provider.%s must be %s", field, what);
	return -1;
}

static int
str_list(const cJSON *p, const char *field, const char **out, int *n, char *msg, size_t len)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(p, field), *x;

	*n = 0;
	if (!v || cJSON_IsNull(v))
		return 0;
	if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) > ROUTE_MAX_LIST)
		return bad(msg, len, field, "an array of at most 32 strings");
	cJSON_ArrayForEach(x, v) {
		if (!cJSON_IsString(x))
			return bad(msg, len, field, "an array of strings");
		out[(*n)++] = x->valuestring;
	}
	return 0;
}

/* USD per million tokens (a JSON number or string) to uusd per Mtok. */
static int
price_field(const cJSON *mp, const char *field, int64_t *out, char *msg, size_t len)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(mp, field);
	char buf[64];
	int64_t nusd;

	*out = -1;
	if (!v || cJSON_IsNull(v))
		return 0;
	if (cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < 1e9)
		snprintf(buf, sizeof(buf), "%.6f", v->valuedouble);
	else if (cJSON_IsString(v) && strlen(v->valuestring) < sizeof(buf))
		snprintf(buf, sizeof(buf), "%s", v->valuestring);
	else
		return bad(msg, len, field[0] == 'p' ? "max_price.prompt" : "max_price.completion",
			   "a non-negative number of USD per million tokens");
	/* USD with 6 decimals per Mtok == uusd per Mtok; reuse the exact parser
	 * (it reads 9 decimals: divide back). */
	if (money_parse_usd(buf, &nusd) < 0 || nusd < 0)
		return bad(msg, len, field[0] == 'p' ? "max_price.prompt" : "max_price.completion",
			   "a non-negative number of USD per million tokens");
	*out = nusd / 1000;
	return 0;
}

int
route_parse(const cJSON *p, struct route_prefs *rp, char *msg, size_t len)
{
	const cJSON *v;

	memset(rp, 0, sizeof(*rp));
	rp->allow_fallbacks = 1;
	rp->max_prompt = rp->max_completion = -1;
	if (!p || cJSON_IsNull(p))
		return 0;
	if (!cJSON_IsObject(p))
		return snprintf(msg, len, "provider must be an object"), -1;
	if (str_list(p, "order", rp->order, &rp->norder, msg, len) < 0 ||
	    str_list(p, "only", rp->only, &rp->nonly, msg, len) < 0 ||
	    str_list(p, "ignore", rp->ignore, &rp->nignore, msg, len) < 0 ||
	    str_list(p, "quantizations", rp->quant, &rp->nquant, msg, len) < 0)
		return -1;
	if ((v = cJSON_GetObjectItemCaseSensitive(p, "allow_fallbacks")) && !cJSON_IsNull(v)) {
		if (!cJSON_IsBool(v))
			return bad(msg, len, "allow_fallbacks", "true or false");
		rp->allow_fallbacks = cJSON_IsTrue(v);
	}
	if ((v = cJSON_GetObjectItemCaseSensitive(p, "data_collection")) && !cJSON_IsNull(v)) {
		if (!cJSON_IsString(v) || (strcmp(v->valuestring, "deny") && strcmp(v->valuestring, "allow")))
			return bad(msg, len, "data_collection", "\"allow\" or \"deny\"");
		rp->data_deny = strcmp(v->valuestring, "deny") == 0;
	}
	if ((v = cJSON_GetObjectItemCaseSensitive(p, "require_parameters")) && !cJSON_IsNull(v)) {
		if (!cJSON_IsBool(v))
			return bad(msg, len, "require_parameters", "true or false");
		rp->require_parameters = cJSON_IsTrue(v);
	}
	if ((v = cJSON_GetObjectItemCaseSensitive(p, "zdr")) && !cJSON_IsNull(v)) {
		if (!cJSON_IsBool(v))
			return bad(msg, len, "zdr", "true or false");
		rp->zdr = cJSON_IsTrue(v);
	}
	if ((v = cJSON_GetObjectItemCaseSensitive(p, "sort")) && !cJSON_IsNull(v)) {
		if (!cJSON_IsString(v) || (strcmp(v->valuestring, "price") && strcmp(v->valuestring, "latency") &&
					   strcmp(v->valuestring, "throughput")))
			return bad(msg, len, "sort", "\"price\", \"latency\" or \"throughput\"");
		rp->sort = v->valuestring[0] == 'l' ? ROUTE_SORT_LATENCY
			   : v->valuestring[0] == 't' ? ROUTE_SORT_THROUGHPUT : ROUTE_SORT_PRICE;
	}
	if ((v = cJSON_GetObjectItemCaseSensitive(p, "max_price")) && !cJSON_IsNull(v)) {
		if (!cJSON_IsObject(v))
			return bad(msg, len, "max_price", "an object");
		if (price_field(v, "prompt", &rp->max_prompt, msg, len) < 0 ||
		    price_field(v, "completion", &rp->max_completion, msg, len) < 0)
			return -1;
	}
	return 0;
}

void
route_strip_suffix(char *id, struct route_prefs *rp)
{
	char *c = strrchr(id, ':');

	if (c && (strcmp(c, ":floor") == 0 || strcmp(c, ":nitro") == 0)) {
		if (rp)
			rp->sort = c[1] == 'n' ? ROUTE_SORT_THROUGHPUT : ROUTE_SORT_PRICE;
		*c = '\0';
	}
}

/* ---- health and speed ---- */

#define PROBE_LOST_MS 30000
#define EWMA 0.2

enum route_state
route_state(const struct rcat_endpoint *e, int64_t now)
{
	const struct rcat_health *h = &e->health;

	if (h->until_ms > now || h->fleet_until_ms > now)
		return ROUTE_OPEN;		/* here, or another router found it dead */
	if (h->until_ms == 0)
		return ROUTE_CLOSED;
	if (h->probe_ms && now - h->probe_ms < PROBE_LOST_MS)
		return ROUTE_OPEN;		/* the probe is out: wait for it */
	return ROUTE_HALF_OPEN;
}

void
route_success(struct rcat_endpoint *e, int64_t now, double ttft_ms, double tps, double latency_ms)
{
	struct rcat_health *h = &e->health;

	health_record(h, now, 1, ttft_ms, latency_ms, tps);

	h->failures = 0;
	h->until_ms = h->probe_ms = 0;
	h->last_ok_ms = now;
	if (ttft_ms > 0)
		h->ttft_ms = h->samples ? h->ttft_ms + EWMA * (ttft_ms - h->ttft_ms) : ttft_ms;
	if (tps > 0)
		h->tps = h->samples && h->tps > 0 ? h->tps + EWMA * (tps - h->tps) : tps;
	h->samples++;
}

void
route_failure(struct rcat_endpoint *e, int64_t now, int threshold, int64_t cooldown, int64_t retry_after)
{
	struct rcat_health *h = &e->health;
	int was_probe = h->probe_ms != 0;

	health_record(h, now, 0, 0, 0, 0);
	h->failures++;
	h->last_fail_ms = now;
	h->probe_ms = 0;
	if (retry_after > 0 || was_probe || h->failures >= threshold) {
		h->until_ms = now + (retry_after > cooldown ? retry_after : cooldown);
		if (h->until_ms <= now)
			h->until_ms = now + 1;	/* open, if only for a moment */
		h->opens++;
	}
}

static double
metric(const struct route_prefs *rp, const struct rcat_endpoint *e)
{
	/* the fleet's averages, else this router's, else the priors */
	double v = rp->sort == ROUTE_SORT_LATENCY ? health_ttft_ms(&e->health) : health_tps(&e->health);

	if (rp->sort == ROUTE_SORT_LATENCY)
		return v > 0 ? v : ROUTE_PRIOR_TTFT_MS;
	return -(v > 0 ? v : ROUTE_PRIOR_TPS);
}

/* Stable insertion sort of out[from..n) by the preference's metric. */
static void
sort_tail(const struct route_prefs *rp, struct rcat_endpoint **out, int from, int n)
{
	for (int i = from + 1; i < n; i++) {
		struct rcat_endpoint *x = out[i];
		int j = i - 1;

		while (j >= from && metric(rp, out[j]) > metric(rp, x)) {
			out[j + 1] = out[j];
			j--;
		}
		out[j + 1] = x;
	}
}

static int
names(const struct rcat_endpoint *e, const char *const *list, int n)
{
	for (int i = 0; i < n; i++)
		if (strcasecmp(list[i], e->prov->id) == 0 || strcasecmp(list[i], e->prov->name) == 0)
			return i;
	return -1;
}

/* The request parameters that an endpoint may or may not support. */
static const char *const route_params[] = {
	"tools", "tool_choice", "response_format", "structured_outputs", "temperature", "top_p", "top_k",
	"stop", "seed", "frequency_penalty", "presence_penalty", "repetition_penalty", "logit_bias",
	"logprobs", "top_logprobs", "min_p", "top_a", "reasoning", "include_reasoning", "parallel_tool_calls",
};

void
route_from_request(struct route_prefs *rp, const cJSON *body, size_t body_len)
{
	struct jfields f;
	const cJSON *mt;

	jfields_init(&f, body);
	if (!cJSON_IsNumber(mt = jfields_get(&f, "max_tokens")))
		mt = jfields_get(&f, "max_completion_tokens");
	rp->need_output = cJSON_IsNumber(mt) ? (int64_t)mt->valuedouble : 0;
	rp->need_context = (int64_t)(body_len / 4) + rp->need_output;
	rp->nparams = 0;
	for (size_t i = 0; i < sizeof(route_params) / sizeof(route_params[0]); i++) {
		const cJSON *v = jfields_get(&f, route_params[i]);

		if (v && !cJSON_IsNull(v) && rp->nparams < ROUTE_MAX_LIST)
			rp->params[rp->nparams++] = route_params[i];
	}
}

static int
supports(const struct rcat_endpoint *e, const char *param)
{
	const cJSON *list = e->supported ? e->supported : e->model ? e->model->supported : NULL, *x;

	cJSON_ArrayForEach(x, list)
		if (cJSON_IsString(x) && strcmp(x->valuestring, param) == 0)
			return 1;
	return 0;
}

int
route_policy_allows(const struct policy *pol, const struct rcat_endpoint *e, char *why, size_t len)
{
	struct policy_endpoint pe;

	if (!pol)
		return 1;
	pe.provider = e->prov->id;
	pe.region = e->prov->region;
	pe.origin = e->model ? e->model->origin : NULL;
	pe.license = e->model ? e->model->license : NULL;
	pe.open_weights = e->model ? e->model->open_weights : 0;
	pe.price_prompt = e->price_prompt;
	pe.price_completion = e->price_completion;
	pe.training = e->prov->training;
	pe.retention_days = e->prov->retention_days;
	return policy_allows(pol, &pe, why, len);
}

static int
allowed(const struct route_prefs *rp, const struct rcat_endpoint *e)
{
	int q = 0;

	if (!route_policy_allows(rp->policy, e, NULL, 0))
		return 0;

	if (rp->need_output > 0 && rp->need_output > e->max_output)
		return 0;
	if (rp->need_context > 0 && e->context_length > 0 && rp->need_context > e->context_length)
		return 0;
	for (int i = 0; rp->require_parameters && i < rp->nparams; i++)
		if (!supports(e, rp->params[i]))
			return 0;

	if (rp->nonly && names(e, rp->only, rp->nonly) < 0)
		return 0;
	if (rp->nignore && names(e, rp->ignore, rp->nignore) >= 0)
		return 0;
	if (rp->data_deny && (e->prov->training || e->prov->retention_days > 0))
		return 0;
	if (rp->zdr && e->prov->retention_days > 0)
		return 0;
	for (int i = 0; i < rp->nquant; i++)
		q |= strcasecmp(rp->quant[i], e->quantization) == 0;
	if (rp->nquant && !q)
		return 0;
	if (rp->max_prompt >= 0 && e->price_prompt > rp->max_prompt)
		return 0;
	if (rp->max_completion >= 0 && e->price_completion > rp->max_completion)
		return 0;
	return 1;
}

static double
balance_weight(const struct rcat_endpoint *e)
{
	double price = (double)(e->price_prompt + e->price_completion);

	if (price < 1.0)
		price = 1.0;			/* free endpoints: the largest weight */
	return 1.0 / (price * price);
}

static int
balance_eligible(const struct rcat_endpoint *e, int64_t now)
{
	const struct rcat_health *h = &e->health;

	/* closed, and no failure in the last 30 s that a success did not follow */
	return route_state(e, now) == ROUTE_CLOSED && h->failures == 0 &&
	       (h->last_fail_ms < h->last_ok_ms || now - h->last_fail_ms >= ROUTE_RECENT_FAILURE_MS);
}

int
route_balance(struct rcat_endpoint **eps, int n, double u, int64_t now)
{
	double total = 0, acc = 0;
	int pick = -1;

	for (int i = 0; i < n; i++)
		if (balance_eligible(eps[i], now))
			total += balance_weight(eps[i]);
	if (total <= 0)
		return -1;
	for (int i = 0; i < n; i++) {
		if (!balance_eligible(eps[i], now))
			continue;
		pick = i;
		acc += balance_weight(eps[i]) / total;
		if (u < acc)
			break;
	}
	for (int i = pick; i > 0; i--) {
		struct rcat_endpoint *x = eps[i];

		eps[i] = eps[i - 1];
		eps[i - 1] = x;
	}
	return pick;
}

int
route_select(const struct route_prefs *rp, struct rcat_endpoint *const *in, int n,
	     struct rcat_endpoint **out, int max)
{
	int k = 0;

	/* `order` first, in its order; an endpoint once, at the first entry
	 * naming it (by id or by name) */
	for (int o = 0; o < rp->norder; o++)
		for (int i = 0; i < n && k < max; i++)
			if (names(in[i], rp->order, rp->norder) == o && allowed(rp, in[i]))
				out[k++] = in[i];
	if (!rp->allow_fallbacks && rp->norder)
		return k;
	/* then everyone else allowed: cheapest first, or by speed */
	{
		int from = k;

		for (int i = 0; i < n && k < max; i++)
			if ((rp->norder == 0 || names(in[i], rp->order, rp->norder) < 0) && allowed(rp, in[i]))
				out[k++] = in[i];
		if (rp->sort > ROUTE_SORT_PRICE)
			sort_tail(rp, out, from, k);
	}
	if (!rp->allow_fallbacks && k > 1)
		k = 1;				/* no order: the primary only */
	return k;
}
