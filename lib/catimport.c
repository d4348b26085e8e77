/*
 * catimport: catalog file validation and normalisation (see catimport.h).
 * Every check reports the JSON path of what it refuses.
 */
#include "catimport.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_STR 4096
#define MAX_PRICE 1000000000000000LL	/* 10^15 uusd/Mtok: a billion USD a token */

struct ctx {
	char *err;
	size_t errlen;
	catimport_env_fn env;
	void *env_arg;
};

/* A JSON path, truncated if it ever had to be (paths are for people). */
static void
pathf(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (vsnprintf(buf, len, fmt, ap) < 0)
		buf[0] = '\0';
	va_end(ap);
}

static int
fail(struct ctx *c, const char *path, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(c->err, c->errlen, "%s: %s", path, msg);
	return -1;
}

/* Replaces ${NAME} in every string of the tree. */
static int
expand(struct ctx *c, cJSON *node, const char *path)
{
	cJSON *ch;

	if (cJSON_IsString(node) && strstr(node->valuestring, "${")) {
		char out[MAX_STR], name[128];
		const char *s = node->valuestring, *e, *v;
		size_t o = 0;

		while (*s) {
			if (s[0] == '$' && s[1] == '{' && (e = strchr(s + 2, '}')) && e - s - 2 < (long)sizeof(name)) {
				memcpy(name, s + 2, (size_t)(e - s - 2));
				name[e - s - 2] = '\0';
				if (!(v = c->env(name, c->env_arg)))
					return fail(c, path, "environment variable %s is not set", name);
				if (o + strlen(v) >= sizeof(out))
					return fail(c, path, "too long after expansion");
				memcpy(out + o, v, strlen(v));
				o += strlen(v);
				s = e + 1;
			} else {
				if (o + 1 >= sizeof(out))
					return fail(c, path, "too long after expansion");
				out[o++] = *s++;
			}
		}
		out[o] = '\0';
		return cJSON_SetValuestring(node, out) ? 0 : fail(c, path, "out of memory");
	}
	cJSON_ArrayForEach(ch, node)
		if (expand(c, ch, path) < 0)
			return -1;
	return 0;
}

static int
is_slug(const char *s, int allow_upper)
{
	if (!*s || !isalnum((unsigned char)*s) || (!allow_upper && isupper((unsigned char)*s)))
		return 0;
	for (; *s; s++)
		if (!(isalnum((unsigned char)*s) || *s == '.' || *s == '_' || *s == '-') ||
		    (!allow_upper && isupper((unsigned char)*s)))
			return 0;
	return 1;
}

/* A string member; required or defaulted. Writes into out. */
static int
get_str(struct ctx *c, const cJSON *o, const char *key, const char *path, const char *dflt,
	cJSON *out, const char *outkey)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	char p[400];

	pathf(p, sizeof(p), "%s.%s", path, key);
	if (!v || cJSON_IsNull(v)) {
		if (!dflt)
			return fail(c, p, "is required");
		if (out)
			cJSON_AddStringToObject(out, outkey, dflt);
		return 0;
	}
	if (!cJSON_IsString(v))
		return fail(c, p, "must be a string");
	if (strlen(v->valuestring) > MAX_STR)
		return fail(c, p, "is longer than %d bytes", MAX_STR);
	if (out)
		cJSON_AddStringToObject(out, outkey, v->valuestring);
	return 0;
}

/* An integer member in [min, max]; dflt < min means required. */
static int
get_int(struct ctx *c, const cJSON *o, const char *key, const char *path, long long min,
	long long max, long long dflt, long long *val)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	char p[400];

	pathf(p, sizeof(p), "%s.%s", path, key);
	if (!v || cJSON_IsNull(v)) {
		if (dflt < min)
			return fail(c, p, "is required");
		*val = dflt;
		return 0;
	}
	/* range first: casting an out-of-range double is undefined */
	if (!cJSON_IsNumber(v) || v->valuedouble < (double)min || v->valuedouble > (double)max ||
	    v->valuedouble != (double)(long long)v->valuedouble) {
		if (min == 0)
			return fail(c, p, "must be a non-negative integer");
		return fail(c, p, "must be an integer from %lld to %lld", min, max);
	}
	*val = (long long)v->valuedouble;
	return 0;
}

static int
get_bool(struct ctx *c, const cJSON *o, const char *key, const char *path, int dflt, int *val)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	char p[400];

	if (!v || cJSON_IsNull(v)) {
		*val = dflt;
		return 0;
	}
	pathf(p, sizeof(p), "%s.%s", path, key);
	if (!cJSON_IsBool(v))
		return fail(c, p, "must be true or false");
	*val = cJSON_IsTrue(v);
	return 0;
}

/* An array of strings. Absent: [dflt], or [] when dflt is "", or null when
 * dflt is NULL. */
static int
get_strings(struct ctx *c, const cJSON *o, const char *key, const char *path, const char *dflt,
	    cJSON *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key), *x;
	char p[400];

	pathf(p, sizeof(p), "%s.%s", path, key);
	if (!v || cJSON_IsNull(v)) {
		if (!dflt) {
			cJSON_AddNullToObject(out, key);
		} else {
			cJSON *a = cJSON_AddArrayToObject(out, key);

			if (*dflt)
				cJSON_AddItemToArray(a, cJSON_CreateString(dflt));
		}
		return 0;
	}
	if (!cJSON_IsArray(v))
		return fail(c, p, "must be an array of strings");
	cJSON_ArrayForEach(x, v)
		if (!cJSON_IsString(x))
			return fail(c, p, "must be an array of strings");
	cJSON_AddItemToObject(out, key, cJSON_Duplicate(v, 1));
	return 0;
}

static int
get_status(struct ctx *c, const cJSON *o, const char *path, cJSON *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "status");
	char p[400];

	pathf(p, sizeof(p), "%s.status", path);
	if (v && !cJSON_IsNull(v) && !(cJSON_IsString(v) && (strcmp(v->valuestring, "active") == 0 ||
							     strcmp(v->valuestring, "disabled") == 0)))
		return fail(c, p, "must be \"active\" or \"disabled\"");
	cJSON_AddStringToObject(out, "status", v && cJSON_IsString(v) ? v->valuestring : "active");
	return 0;
}

static int
has_id(const cJSON *arr, const char *key, const char *id)
{
	const cJSON *x;

	cJSON_ArrayForEach(x, arr) {
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(x, key);

		if (cJSON_IsString(v) && strcmp(v->valuestring, id) == 0)
			return 1;
	}
	return 0;
}

static int
parse_provider(struct ctx *c, const cJSON *p, const char *path, cJSON *outs)
{
	cJSON *o = cJSON_CreateObject();
	const cJSON *dp = cJSON_GetObjectItemCaseSensitive(p, "data_policy"), *v;
	long long ret = 0;
	int training = 0;
	char pp[400];

	cJSON_AddItemToArray(outs, o);
	if (!cJSON_IsObject(p))
		return fail(c, path, "must be an object");
	if (get_str(c, p, "id", path, NULL, o, "id") < 0 || get_str(c, p, "name", path, NULL, o, "name") < 0 ||
	    get_str(c, p, "api", path, NULL, o, "api") < 0 || get_str(c, p, "base_url", path, NULL, o, "base_url") < 0 ||
	    get_str(c, p, "api_key_env", path, "", o, "api_key_env") < 0 ||
	    get_str(c, p, "region", path, "US", o, "region") < 0 || get_status(c, p, path, o) < 0)
		return -1;
	v = cJSON_GetObjectItemCaseSensitive(o, "id");
	pathf(pp, sizeof(pp), "%s.id", path);
	if (!is_slug(v->valuestring, 0))
		return fail(c, pp, "must be a lower-case slug ([a-z0-9._-])");
	for (const cJSON *y = outs->child; y && y != o; y = y->next)
		if (strcmp(cJSON_GetObjectItemCaseSensitive(y, "id")->valuestring, v->valuestring) == 0)
			return fail(c, pp, "duplicate provider id '%s'", v->valuestring);
	v = cJSON_GetObjectItemCaseSensitive(o, "api");
	pathf(pp, sizeof(pp), "%s.api", path);
	if (strcmp(v->valuestring, "openai") != 0 && strcmp(v->valuestring, "anthropic") != 0)
		return fail(c, pp, "must be \"openai\" or \"anthropic\"");
	v = cJSON_GetObjectItemCaseSensitive(o, "base_url");
	pathf(pp, sizeof(pp), "%s.base_url", path);
	if (strncmp(v->valuestring, "http://", 7) != 0 && strncmp(v->valuestring, "https://", 8) != 0)
		return fail(c, pp, "must start with http:// or https://");
	if (dp && !cJSON_IsNull(dp)) {
		pathf(pp, sizeof(pp), "%s.data_policy", path);
		if (!cJSON_IsObject(dp))
			return fail(c, pp, "must be an object");
		if (get_bool(c, dp, "training", pp, 0, &training) < 0 ||
		    get_int(c, dp, "retention_days", pp, 0, 36500, 0, &ret) < 0)
			return -1;
	}
	cJSON_AddBoolToObject(o, "training", training);
	cJSON_AddNumberToObject(o, "retention_days", (double)ret);
	return 0;
}

static int
parse_price(struct ctx *c, const cJSON *e, const char *key, const char *path, cJSON *o,
	    const char *pk, const char *ck, int required)
{
	const cJSON *pr = cJSON_GetObjectItemCaseSensitive(e, key);
	long long p = 0, q = 0;
	char pp[400];

	pathf(pp, sizeof(pp), "%s.%s", path, key);
	if (!pr || cJSON_IsNull(pr)) {
		if (required)
			return fail(c, pp, "is required");
		cJSON_AddNullToObject(o, pk);
		cJSON_AddNullToObject(o, ck);
		return 0;
	}
	if (!cJSON_IsObject(pr))
		return fail(c, pp, "must be an object");
	if (get_int(c, pr, "prompt_uusd_per_mtok", pp, 0, MAX_PRICE, -1, &p) < 0 ||
	    get_int(c, pr, "completion_uusd_per_mtok", pp, 0, MAX_PRICE, -1, &q) < 0)
		return -1;
	cJSON_AddNumberToObject(o, pk, (double)p);
	cJSON_AddNumberToObject(o, ck, (double)q);
	return 0;
}

static int
parse_endpoint(struct ctx *c, const cJSON *e, const char *path, const cJSON *model,
	       const cJSON *providers, cJSON *outs, int first)
{
	cJSON *o = cJSON_CreateObject();
	const char *mid = cJSON_GetObjectItemCaseSensitive(model, "id")->valuestring;
	const cJSON *x;
	long long ctxlen = 0, maxo = 0;
	char pp[400];

	cJSON_AddItemToArray(outs, o);
	if (!cJSON_IsObject(e))
		return fail(c, path, "must be an object");
	cJSON_AddStringToObject(o, "model_id", mid);
	if (get_str(c, e, "provider", path, NULL, o, "provider_id") < 0 ||
	    get_str(c, e, "upstream_model", path, NULL, o, "upstream_model") < 0 ||
	    get_str(c, e, "quantization", path, "unknown", o, "quantization") < 0 ||
	    get_int(c, e, "context_length", path, 1, 100000000,
		    cJSON_GetObjectItemCaseSensitive(model, "context_length")->valuedouble, &ctxlen) < 0 ||
	    get_int(c, e, "max_output", path, 1, 100000000, -1, &maxo) < 0 ||
	    parse_price(c, e, "price", path, o, "prompt", "completion", 1) < 0 ||
	    parse_price(c, e, "provider_cost", path, o, "cost_prompt", "cost_completion", 0) < 0 ||
	    get_strings(c, e, "supported_parameters", path, NULL, o) < 0 || get_status(c, e, path, o) < 0)
		return -1;
	cJSON_AddNumberToObject(o, "context_length", (double)ctxlen);
	cJSON_AddNumberToObject(o, "max_output", (double)maxo);
	x = cJSON_GetObjectItemCaseSensitive(o, "provider_id");
	pathf(pp, sizeof(pp), "%s.provider", path);
	if (!has_id(providers, "id", x->valuestring))
		return fail(c, pp, "unknown provider '%s'", x->valuestring);
	for (const cJSON *y = cJSON_GetArrayItem(outs, first); y && y != o; y = y->next)
		if (strcmp(cJSON_GetObjectItemCaseSensitive(y, "provider_id")->valuestring, x->valuestring) == 0)
			return fail(c, pp, "provider '%s' appears twice for this model", x->valuestring);
	return 0;
}

static int
parse_model(struct ctx *c, const cJSON *m, const char *path, const cJSON *providers, cJSON *models,
	    cJSON *eps)
{
	cJSON *o = cJSON_CreateObject();
	const cJSON *v, *el = cJSON_GetObjectItemCaseSensitive(m, "endpoints"), *e;
	long long ctxlen = 0, created = 0;
	int open = 1, i = 0, first;
	char pp[400], author[256] = "";
	const char *slash;

	cJSON_AddItemToArray(models, o);
	if (!cJSON_IsObject(m))
		return fail(c, path, "must be an object");
	if (get_str(c, m, "id", path, NULL, o, "id") < 0)
		return -1;
	v = cJSON_GetObjectItemCaseSensitive(o, "id");
	pathf(pp, sizeof(pp), "%s.id", path);
	if (!(slash = strchr(v->valuestring, '/')) || slash == v->valuestring || strchr(slash + 1, '/') ||
	    (size_t)(slash - v->valuestring) >= sizeof(author))
		return fail(c, pp, "must be \"author/slug\"");
	memcpy(author, v->valuestring, (size_t)(slash - v->valuestring));
	if (!is_slug(author, 1) || !is_slug(slash + 1, 1))
		return fail(c, pp, "must be \"author/slug\" of [A-Za-z0-9._-]");
	for (const cJSON *y = models->child; y && y != o; y = y->next)
		if (strcmp(cJSON_GetObjectItemCaseSensitive(y, "id")->valuestring, v->valuestring) == 0)
			return fail(c, pp, "duplicate model id '%s'", v->valuestring);
	if (get_str(c, m, "name", path, NULL, o, "name") < 0 || get_str(c, m, "author", path, author, o, "author") < 0 ||
	    get_str(c, m, "description", path, "", o, "description") < 0 ||
	    get_str(c, m, "origin", path, "", o, "origin") < 0 || get_str(c, m, "license", path, "", o, "license") < 0 ||
	    get_str(c, m, "tokenizer", path, "Other", o, "tokenizer") < 0 ||
	    get_bool(c, m, "open_weights", path, 1, &open) < 0 ||
	    get_int(c, m, "context_length", path, 1, 100000000, -1, &ctxlen) < 0 ||
	    get_int(c, m, "created", path, 0, 4102444800LL, 0, &created) < 0 ||
	    get_strings(c, m, "input_modalities", path, "text", o) < 0 ||
	    get_strings(c, m, "output_modalities", path, "text", o) < 0 ||
	    get_strings(c, m, "supported_parameters", path, "", o) < 0 || get_status(c, m, path, o) < 0)
		return -1;
	cJSON_AddBoolToObject(o, "open_weights", open);
	cJSON_AddNumberToObject(o, "context_length", (double)ctxlen);
	if (created)
		cJSON_AddNumberToObject(o, "created", (double)created);
	else
		cJSON_AddNullToObject(o, "created");
	pathf(pp, sizeof(pp), "%s.endpoints", path);
	if (el && !cJSON_IsArray(el))
		return fail(c, pp, "must be an array");
	if (cJSON_GetArraySize(el) > CATIMPORT_MAX_ENDPOINTS)
		return fail(c, pp, "more than %d endpoints", CATIMPORT_MAX_ENDPOINTS);
	first = cJSON_GetArraySize(eps);
	cJSON_ArrayForEach(e, el) {
		pathf(pp, sizeof(pp), "%s.endpoints[%d]", path, i++);
		if (parse_endpoint(c, e, pp, o, providers, eps, first) < 0)
			return -1;
	}
	return 0;
}

static const char *
default_env(const char *name, void *arg)
{
	(void)arg;
	return getenv(name);
}

cJSON *
catimport_parse(const char *json, size_t len, catimport_env_fn env, void *env_arg, char *err,
		size_t errlen)
{
	struct ctx c = { err, errlen, env ? env : default_env, env_arg };
	cJSON *in = NULL, *out = cJSON_CreateObject(), *provs, *models, *eps;
	const cJSON *x, *pl, *ml;
	char path[64];
	int i = 0;

	if (len > CATIMPORT_MAX_BYTES) {
		fail(&c, "catalog", "larger than %d bytes", CATIMPORT_MAX_BYTES);
		goto fail;
	}
	if (!(in = cJSON_ParseWithLength(json, len))) {
		fail(&c, "catalog", "not valid JSON");
		goto fail;
	}
	if (!cJSON_IsObject(in)) {
		fail(&c, "catalog", "must be an object with providers and models");
		goto fail;
	}
	provs = cJSON_AddArrayToObject(out, "providers");
	models = cJSON_AddArrayToObject(out, "models");
	eps = cJSON_AddArrayToObject(out, "endpoints");
	pl = cJSON_GetObjectItemCaseSensitive(in, "providers");
	ml = cJSON_GetObjectItemCaseSensitive(in, "models");
	if (!cJSON_IsArray(pl) || !cJSON_IsArray(ml)) {
		fail(&c, cJSON_IsArray(pl) ? "models" : "providers", "must be an array");
		goto fail;
	}
	if (cJSON_GetArraySize(ml) > CATIMPORT_MAX_MODELS || cJSON_GetArraySize(pl) > CATIMPORT_MAX_MODELS) {
		fail(&c, "catalog", "more than %d models or providers", CATIMPORT_MAX_MODELS);
		goto fail;
	}
	if (expand(&c, in, "catalog") < 0)
		goto fail;
	cJSON_ArrayForEach(x, pl) {
		snprintf(path, sizeof(path), "providers[%d]", i++);
		if (parse_provider(&c, x, path, provs) < 0)
			goto fail;
	}
	i = 0;
	cJSON_ArrayForEach(x, ml) {
		snprintf(path, sizeof(path), "models[%d]", i++);
		if (parse_model(&c, x, path, provs, models, eps) < 0)
			goto fail;
	}
	cJSON_Delete(in);
	return out;
fail:
	cJSON_Delete(in);
	cJSON_Delete(out);
	return NULL;
}
