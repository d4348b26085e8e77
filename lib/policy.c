/*
 * policy: account and key routing policy (see policy.h). A policy keeps
 * its layers as validated cJSON objects; checks walk short lists, so a
 * check costs well under a microsecond per endpoint.
 */
#include "policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define POLICY_MAX_LIST 64

enum { LAYER_ACCOUNT, LAYER_KEY, NLAYERS };

struct policy {
	int refs;
	int broken;			/* a layer did not validate: deny all */
	char broken_msg[256];
	cJSON *layer[NLAYERS];		/* NULL: that layer says nothing */
};

static const char *const layer_name[NLAYERS] = { "account", "key" };
static const char *const list_fields[] = { "providers_allow", "providers_deny", "regions", "origins", "licenses" };
static const char *const price_fields[] = { "max_prompt_uusd_per_mtok", "max_completion_uusd_per_mtok" };

static int
fail(char *msg, size_t len, const char *field, const char *what)
{
	snprintf(msg, len, "policy.%s must be %s", field, what);
	return -1;
}

static int
validate_list(const cJSON *v, const char *field, char *msg, size_t len)
{
	const cJSON *x;

	if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) > POLICY_MAX_LIST)
		return fail(msg, len, field, "an array of at most 64 strings");
	cJSON_ArrayForEach(x, v)
		if (!cJSON_IsString(x) || !*x->valuestring || strlen(x->valuestring) > 100)
			return fail(msg, len, field, "an array of non-empty strings");
	return 0;
}

int
policy_validate(const cJSON *obj, char *msg, size_t len)
{
	const cJSON *v;

	if (!cJSON_IsObject(obj))
		return snprintf(msg, len, "a policy must be a JSON object"), -1;
	cJSON_ArrayForEach(v, obj) {
		size_t i;
		int known = 0;

		for (i = 0; i < sizeof(list_fields) / sizeof(list_fields[0]); i++)
			if (strcmp(v->string, list_fields[i]) == 0) {
				if (validate_list(v, v->string, msg, len) < 0)
					return -1;
				known = 1;
			}
		for (i = 0; i < sizeof(price_fields) / sizeof(price_fields[0]); i++)
			if (strcmp(v->string, price_fields[i]) == 0) {
				if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 1e15 ||
				    v->valuedouble != (double)(int64_t)v->valuedouble)
					return fail(msg, len, v->string, "a non-negative integer (micro-USD per million tokens)");
				known = 1;
			}
		if (strcmp(v->string, "open_weights_only") == 0) {
			if (!cJSON_IsBool(v))
				return fail(msg, len, v->string, "true or false");
			known = 1;
		}
		if (strcmp(v->string, "data_policy") == 0) {
			if (!cJSON_IsString(v) || (strcmp(v->valuestring, "any") != 0 &&
			    strcmp(v->valuestring, "no_training") != 0 && strcmp(v->valuestring, "zdr") != 0))
				return fail(msg, len, v->string, "\"any\", \"no_training\" or \"zdr\"");
			known = 1;
		}
		if (!known)
			return snprintf(msg, len, "policy.%s is not a policy field", v->string), -1;
	}
	return 0;
}

/* ---- lifetime ---- */

/* Parses one layer; returns 0 (layer set or empty) or -1 (broken). */
static int
layer_load(struct policy *p, int l, const char *json)
{
	char msg[128];
	cJSON *o;

	if (!json || !*json)
		return 0;
	if (!(o = cJSON_Parse(json)) || policy_validate(o, msg, sizeof(msg)) < 0) {
		snprintf(p->broken_msg, sizeof(p->broken_msg), "the %s's policy is invalid (%s); it denies everything",
			 layer_name[l], o ? msg : "not JSON");
		cJSON_Delete(o);
		return -1;
	}
	if (!o->child) {		/* {}: says nothing */
		cJSON_Delete(o);
		return 0;
	}
	p->layer[l] = o;
	return 0;
}

struct policy *
policy_new(const char *account_json, const char *key_json)
{
	struct policy *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	p->refs = 1;
	if (layer_load(p, LAYER_ACCOUNT, account_json) < 0 || layer_load(p, LAYER_KEY, key_json) < 0)
		p->broken = 1;
	if (!p->broken && !p->layer[LAYER_ACCOUNT] && !p->layer[LAYER_KEY]) {
		free(p);
		return NULL;
	}
	return p;
}

struct policy *
policy_ref(struct policy *p)
{
	if (p)
		p->refs++;
	return p;
}

void
policy_unref(struct policy *p)
{
	if (!p || --p->refs > 0)
		return;
	for (int l = 0; l < NLAYERS; l++)
		cJSON_Delete(p->layer[l]);
	free(p);
}

/* ---- checks ---- */

static int
in_list(const cJSON *list, const char *s)
{
	const cJSON *x;

	if (!s)
		return 0;
	cJSON_ArrayForEach(x, list)
		if (strcasecmp(x->valuestring, s) == 0)
			return 1;
	return 0;
}

/* "EU, DE" from a list, bounded. */
static void
join(const cJSON *list, char *out, size_t len)
{
	const cJSON *x;
	size_t n = 0;

	out[0] = '\0';
	cJSON_ArrayForEach(x, list) {
		int w = snprintf(out + n, len - n, "%s%s", n ? ", " : "", x->valuestring);

		if (w < 0 || (size_t)w >= len - n)
			break;
		n += (size_t)w;
	}
}

static int
deny(char *why, size_t len, int l, const char *fmt, const char *a, const char *b)
{
	char rule[160];

	if (!why)
		return 0;
	snprintf(rule, sizeof(rule), fmt, a, b ? b : "?");
	snprintf(why, len, "the %s's policy %s", layer_name[l], rule);
	return 0;
}

/* Allowed-value lists: the endpoint's value must be listed. */
static int
check_lists(const cJSON *o, int l, const struct policy_endpoint *e, char *why, size_t len)
{
	static const struct { const char *field, *fmt; } rules[] = {
		{ "providers_allow", "allows providers %s only (not %s)" },
		{ "regions", "allows provider regions %s only (this provider is in %s)" },
		{ "origins", "allows model origins %s only (this model's is %s)" },
		{ "licenses", "allows model licenses %s only (this model's is %s)" },
	};
	const char *vals[] = { e->provider, e->region, e->origin, e->license };
	char list[120];

	for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, rules[i].field);

		if (v && !in_list(v, vals[i])) {
			join(v, list, sizeof(list));
			return deny(why, len, l, rules[i].fmt, list, vals[i] && *vals[i] ? vals[i] : "unknown");
		}
	}
	return 1;
}

static int
check_layer(const cJSON *o, int l, const struct policy_endpoint *e, char *why, size_t len)
{
	const cJSON *v;
	char a[32], b[32];

	if (!check_lists(o, l, e, why, len))
		return 0;
	if (in_list(cJSON_GetObjectItemCaseSensitive(o, "providers_deny"), e->provider))
		return deny(why, len, l, "denies provider %s%s", e->provider, "");
	if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "open_weights_only")) && !e->open_weights)
		return deny(why, len, l, "allows open-weight models only%s%s", "", "");
	for (int i = 0; i < 2; i++) {
		int64_t price = i == 0 ? e->price_prompt : e->price_completion;

		v = cJSON_GetObjectItemCaseSensitive(o, price_fields[i]);
		if (cJSON_IsNumber(v) && price > (int64_t)v->valuedouble) {
			snprintf(a, sizeof(a), "%lld", (long long)v->valuedouble);
			snprintf(b, sizeof(b), "%lld", (long long)price);
			return deny(why, len, l, i == 0 ? "caps prompt prices at %s uusd/Mtok (this endpoint: %s)"
							: "caps completion prices at %s uusd/Mtok (this endpoint: %s)", a, b);
		}
	}
	v = cJSON_GetObjectItemCaseSensitive(o, "data_policy");
	if (cJSON_IsString(v) && strcmp(v->valuestring, "any") != 0) {
		int zdr = strcmp(v->valuestring, "zdr") == 0;

		if (e->training || (zdr && e->retention_days > 0))
			return deny(why, len, l, "requires providers that %s (not %s)",
				    zdr ? "neither train on nor retain prompts" : "do not train on prompts", e->provider);
	}
	return 1;
}

int
policy_allows(const struct policy *p, const struct policy_endpoint *e, char *why, size_t len)
{
	if (!p)
		return 1;
	if (p->broken) {
		if (why)
			snprintf(why, len, "%s", p->broken_msg);
		return 0;
	}
	for (int l = 0; l < NLAYERS; l++)
		if (p->layer[l] && !check_layer(p->layer[l], l, e, why, len))
			return 0;
	return 1;
}
