/*
 * rcat: catalog snapshots (see rcat.h). PostgreSQL renders the whole active
 * catalog as JSON in one round trip; prices travel as text and are parsed
 * with strtoll, so no floating point ever carries money.
 */
#include "rcat.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "health.h"
#include "log.h"
#include "money.h"
#include "route.h"
#include "secretbox.h"

static uint8_t master_key[SBOX_KEY_LEN];
static int have_master_key;

const char rcat_sql[] =
	"SELECT (SELECT version::text FROM catalog_version WHERE id = 1), "
	"(SELECT coalesce(json_agg(p ORDER BY p.id), '[]') FROM (SELECT id, name, api, base_url, "
	"  api_key_env, api_key_sealed, region, data_training, data_retention_days FROM providers "
	"  WHERE status = 'active') p)::text, "
	"(SELECT coalesce(json_agg(m ORDER BY m.id), '[]') FROM (SELECT id, name, author, "
	"  description, origin, license, open_weights, context_length, created::text AS created, "
	"  input_modalities, output_modalities, tokenizer, supported_parameters FROM models "
	"  WHERE status = 'active') m)::text, "
	"(SELECT coalesce(json_agg(e ORDER BY e.eid), '[]') FROM (SELECT e.id AS eid, e.id::text AS id, e.model_id, "
	"  e.provider_id, e.upstream_model, e.quantization, e.context_length, e.max_output, "
	"  e.prompt_uusd_per_mtok::text AS prompt, e.completion_uusd_per_mtok::text AS completion, "
	"  coalesce(e.cost_prompt_uusd_per_mtok, e.prompt_uusd_per_mtok)::text AS cost_prompt, "
	"  coalesce(e.cost_completion_uusd_per_mtok, e.completion_uusd_per_mtok)::text AS cost_completion, "
	"  e.supported_parameters FROM endpoints e JOIN providers p ON p.id = e.provider_id "
	"  JOIN models m ON m.id = e.model_id WHERE e.status = 'active' AND p.status = 'active' "
	"  AND m.status = 'active') e)::text";

static char *
jstr(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

	return strdup(cJSON_IsString(v) ? v->valuestring : "");
}

static int
jint(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

	return cJSON_IsNumber(v) ? v->valueint : 0;
}

static int
jbool(const cJSON *o, const char *k)
{
	return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, k));
}

static int64_t
jtext_i64(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
	char *end;
	long long n;

	if (!cJSON_IsString(v))
		return -1;
	errno = 0;
	n = strtoll(v->valuestring, &end, 10);
	return errno || *end ? -1 : (int64_t)n;
}

static cJSON *
jarray(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

	return cJSON_IsArray(v) ? cJSON_Duplicate(v, 1) : NULL;
}

void
rcat_set_master_key(const uint8_t *key)
{
	have_master_key = key != NULL;
	if (key)
		memcpy(master_key, key, SBOX_KEY_LEN);
	else
		OPENSSL_cleanse(master_key, sizeof(master_key));
}

/* fmt with the credential v ("Authorization: Bearer %s"), or NULL. */
static char *
header_line(const char *fmt, const char *v)
{
	char *s;
	size_t n;

	if (!v || !*v || strpbrk(v, "\r\n"))
		return NULL;
	n = strlen(fmt) + strlen(v) + 1;
	if ((s = malloc(n)))
		snprintf(s, n, fmt, v);
	return s;
}

static int
cmp_model_id(const void *a, const void *b)
{
	return strcmp(((const struct rcat_model *)a)->id, ((const struct rcat_model *)b)->id);
}

static int
cmp_ep_price(const void *a, const void *b)
{
	const struct rcat_endpoint *x = *(struct rcat_endpoint *const *)a;
	const struct rcat_endpoint *y = *(struct rcat_endpoint *const *)b;
	int64_t px = x->price_prompt + x->price_completion;
	int64_t py = y->price_prompt + y->price_completion;

	if (px != py)
		return px < py ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

static struct rcat_provider *
find_provider(struct rcat *c, const char *id)
{
	for (int i = 0; i < c->nprovs; i++)
		if (strcmp(c->provs[i].id, id) == 0)
			return &c->provs[i];
	return NULL;
}

static const struct rcat_endpoint *
find_endpoint(const struct rcat *c, int64_t id)
{
	int lo = 0, hi = c->neps - 1;

	while (lo <= hi) {
		int mid = (lo + hi) / 2;

		if (c->eps[mid].id == id)
			return &c->eps[mid];
		if (c->eps[mid].id < id)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return NULL;
}

/* A provider's API key: sealed in the catalog (opened with the master key),
 * else the environment variable the catalog names. Caller wipes and frees. */
static char *
provider_credential(const cJSON *p)
{
	const cJSON *sealed = cJSON_GetObjectItemCaseSensitive(p, "api_key_sealed");
	const cJSON *env = cJSON_GetObjectItemCaseSensitive(p, "api_key_env");
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(p, "id");
	const char *v;
	char err[128];
	char *plain;

	if (cJSON_IsString(sealed) && *sealed->valuestring && cJSON_IsString(id)) {
		if (!have_master_key) {
			log_error("catalog: provider %s has a sealed API key but no master_key is configured",
				  id->valuestring);
			return NULL;
		}
		if (!(plain = sbox_open(master_key, id->valuestring, sealed->valuestring, err, sizeof(err))))
			log_error("catalog: provider %s: its sealed API key %s", id->valuestring, err);
		return plain;
	}
	v = cJSON_IsString(env) && *env->valuestring ? getenv(env->valuestring) : NULL;
	return v ? strdup(v) : NULL;
}

static int
load_providers(struct rcat *c, const cJSON *arr)
{
	const cJSON *p;
	int i = 0;

	c->nprovs = cJSON_GetArraySize(arr);
	if (c->nprovs && !(c->provs = calloc((size_t)c->nprovs, sizeof(*c->provs))))
		return -1;
	cJSON_ArrayForEach(p, arr) {
		struct rcat_provider *pv = &c->provs[i++];
		char *cred = provider_credential(p);

		pv->id = jstr(p, "id");
		pv->name = jstr(p, "name");
		pv->api = jstr(p, "api");
		pv->base_url = jstr(p, "base_url");
		pv->region = jstr(p, "region");
		pv->training = jbool(p, "data_training");
		pv->retention_days = jint(p, "data_retention_days");
		pv->auth_header = header_line("Authorization: Bearer %s", cred);
		pv->anthropic_key_header = header_line("x-api-key: %s", cred);
		if (cred) {
			OPENSSL_cleanse(cred, strlen(cred));
			free(cred);
		}
		if (!pv->id || !pv->name || !pv->api || !pv->base_url || !pv->region)
			return -1;
	}
	return 0;
}

static int
load_models(struct rcat *c, const cJSON *arr)
{
	const cJSON *m;
	int i = 0;

	c->nmodels = cJSON_GetArraySize(arr);
	if (c->nmodels && !(c->models = calloc((size_t)c->nmodels, sizeof(*c->models))))
		return -1;
	cJSON_ArrayForEach(m, arr) {
		struct rcat_model *md = &c->models[i++];

		md->id = jstr(m, "id");
		md->name = jstr(m, "name");
		md->author = jstr(m, "author");
		md->description = jstr(m, "description");
		md->origin = jstr(m, "origin");
		md->license = jstr(m, "license");
		md->tokenizer = jstr(m, "tokenizer");
		md->open_weights = jbool(m, "open_weights");
		md->context_length = jint(m, "context_length");
		md->created = jtext_i64(m, "created");
		md->input_modalities = jarray(m, "input_modalities");
		md->output_modalities = jarray(m, "output_modalities");
		md->supported = jarray(m, "supported_parameters");
		if (!md->id || !md->name || !md->author || !md->description || !md->origin ||
		    !md->license || !md->tokenizer)
			return -1;
	}
	if (c->nmodels > 1)
		qsort(c->models, (size_t)c->nmodels, sizeof(*c->models), cmp_model_id);
	return 0;
}

static int
endpoint_url(struct rcat_endpoint *e)
{
	const char *suffix = strcmp(e->prov->api, "anthropic") == 0 ? "/messages" : "/chat/completions";
	size_t blen = strlen(e->prov->base_url), n;

	while (blen > 0 && e->prov->base_url[blen - 1] == '/')
		blen--;
	n = blen + strlen(suffix) + 1;
	if (!(e->url = malloc(n)))
		return -1;
	snprintf(e->url, n, "%.*s%s", (int)blen, e->prov->base_url, suffix);
	return 0;
}

static int
load_endpoints(struct rcat *c, const cJSON *arr, const struct rcat *prev)
{
	const cJSON *e;
	int n = 0;

	if (cJSON_GetArraySize(arr) && !(c->eps = calloc((size_t)cJSON_GetArraySize(arr), sizeof(*c->eps))))
		return -1;
	cJSON_ArrayForEach(e, arr) {
		struct rcat_endpoint *ep = &c->eps[n];
		const cJSON *mid = cJSON_GetObjectItemCaseSensitive(e, "model_id");
		const cJSON *pid = cJSON_GetObjectItemCaseSensitive(e, "provider_id");
		const struct rcat_endpoint *old;

		if (!cJSON_IsString(mid) || !cJSON_IsString(pid))
			continue;
		ep->model = rcat_model(c, mid->valuestring);
		ep->prov = find_provider(c, pid->valuestring);
		if (!ep->model || !ep->prov)
			continue;
		ep->id = jtext_i64(e, "id");
		ep->upstream_model = jstr(e, "upstream_model");
		ep->quantization = jstr(e, "quantization");
		ep->context_length = jint(e, "context_length");
		ep->max_output = jint(e, "max_output");
		ep->price_prompt = jtext_i64(e, "prompt");
		ep->price_completion = jtext_i64(e, "completion");
		ep->cost_prompt = jtext_i64(e, "cost_prompt");
		ep->cost_completion = jtext_i64(e, "cost_completion");
		if (ep->cost_prompt < 0)
			ep->cost_prompt = ep->price_prompt;
		if (ep->cost_completion < 0)
			ep->cost_completion = ep->price_completion;
		ep->supported = jarray(e, "supported_parameters");
		if (!ep->upstream_model || !ep->quantization || ep->price_prompt < 0 ||
		    ep->price_completion < 0 || endpoint_url(ep) < 0) {
			c->neps = n + 1;	/* so rcat_unref frees this one too */
			return -1;
		}
		if (prev && (old = find_endpoint(prev, ep->id)))
			ep->health = old->health;
		ep->model->neps++;
		n++;
	}
	c->neps = n;
	for (int i = 0; i < c->nmodels; i++) {
		struct rcat_model *m = &c->models[i];

		if (m->neps && !(m->eps = calloc((size_t)m->neps, sizeof(*m->eps))))
			return -1;
		m->neps = 0;
	}
	for (int i = 0; i < c->neps; i++)
		c->eps[i].model->eps[c->eps[i].model->neps++] = &c->eps[i];
	for (int i = 0; i < c->nmodels; i++)
		if (c->models[i].neps > 1)
			qsort(c->models[i].eps, (size_t)c->models[i].neps, sizeof(struct rcat_endpoint *),
			      cmp_ep_price);
	return 0;
}

cJSON *
rcat_pricing_json(const struct rcat_endpoint *e)
{
	cJSON *p = cJSON_CreateObject();
	char buf[64];

	money_format_price_per_token(e->price_prompt, buf, sizeof(buf));
	cJSON_AddStringToObject(p, "prompt", buf);
	money_format_price_per_token(e->price_completion, buf, sizeof(buf));
	cJSON_AddStringToObject(p, "completion", buf);
	cJSON_AddStringToObject(p, "request", "0");
	cJSON_AddStringToObject(p, "image", "0");
	cJSON_AddStringToObject(p, "web_search", "0");
	cJSON_AddStringToObject(p, "internal_reasoning", "0");
	return p;
}

static void
modality_append(char *buf, size_t len, const cJSON *arr)
{
	const cJSON *x;
	int first = 1;

	cJSON_ArrayForEach(x, arr) {
		if (!cJSON_IsString(x))
			continue;
		if (!first)
			strncat(buf, "+", len - strlen(buf) - 1);
		strncat(buf, x->valuestring, len - strlen(buf) - 1);
		first = 0;
	}
}

static cJSON *
architecture_json(const struct rcat_model *m)
{
	cJSON *a = cJSON_CreateObject();
	cJSON *in = m->input_modalities ? cJSON_Duplicate(m->input_modalities, 1) : cJSON_CreateArray();
	cJSON *out = m->output_modalities ? cJSON_Duplicate(m->output_modalities, 1) : cJSON_CreateArray();
	char modality[128] = "";

	modality_append(modality, sizeof(modality), in);
	strncat(modality, "->", sizeof(modality) - strlen(modality) - 1);
	modality_append(modality, sizeof(modality), out);
	cJSON_AddStringToObject(a, "modality", modality);
	cJSON_AddItemToObject(a, "input_modalities", in);
	cJSON_AddItemToObject(a, "output_modalities", out);
	cJSON_AddStringToObject(a, "tokenizer", m->tokenizer);
	cJSON_AddNullToObject(a, "instruct_type");
	return a;
}

static cJSON *
model_json(const struct rcat_model *m)
{
	cJSON *o = cJSON_CreateObject(), *top;
	const struct rcat_endpoint *best = m->eps[0];

	cJSON_AddStringToObject(o, "id", m->id);
	cJSON_AddStringToObject(o, "canonical_slug", m->id);
	cJSON_AddStringToObject(o, "name", m->name);
	cJSON_AddNumberToObject(o, "created", (double)m->created);
	cJSON_AddStringToObject(o, "description", m->description);
	cJSON_AddNumberToObject(o, "context_length", m->context_length);
	cJSON_AddItemToObject(o, "architecture", architecture_json(m));
	cJSON_AddItemToObject(o, "pricing", rcat_pricing_json(best));
	top = cJSON_AddObjectToObject(o, "top_provider");
	cJSON_AddNumberToObject(top, "context_length", best->context_length);
	cJSON_AddNumberToObject(top, "max_completion_tokens", best->max_output);
	cJSON_AddFalseToObject(top, "is_moderated");
	cJSON_AddNullToObject(o, "per_request_limits");
	cJSON_AddNullToObject(o, "default_parameters");
	cJSON_AddNullToObject(o, "supported_voices");
	{
		char link[600];

		snprintf(link, sizeof(link), "/api/v1/models/%s/endpoints", m->id);
		cJSON_AddStringToObject(cJSON_AddObjectToObject(o, "links"), "details", link);
	}
	cJSON_AddItemToObject(o, "supported_parameters",
			      m->supported ? cJSON_Duplicate(m->supported, 1) : cJSON_CreateArray());
	cJSON_AddStringToObject(o, "author", m->author);
	cJSON_AddStringToObject(o, "origin", m->origin);
	cJSON_AddStringToObject(o, "license", m->license);
	cJSON_AddBoolToObject(o, "open_weights", m->open_weights);
	cJSON_AddNumberToObject(o, "endpoint_count", m->neps);
	return o;
}

static int
render_models(struct rcat *c)
{
	cJSON *root = cJSON_CreateObject(), *data;

	if (!root || !(data = cJSON_AddArrayToObject(root, "data"))) {
		cJSON_Delete(root);
		return -1;
	}
	for (int i = 0; i < c->nmodels; i++)
		if (c->models[i].neps > 0)
			cJSON_AddItemToArray(data, model_json(&c->models[i]));
	cJSON_AddNumberToObject(root, "total_count", cJSON_GetArraySize(data));
	cJSON_AddNullToObject(cJSON_AddObjectToObject(root, "links"), "next");
	c->models_json = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	if (!c->models_json)
		return -1;
	c->models_json_len = strlen(c->models_json);
	return 0;
}

static void
pct_json(cJSON *o, const char *name, int n, const struct health_pct *p)
{
	cJSON *x;

	if (n == 0) {
		cJSON_AddNullToObject(o, name);
		return;
	}
	x = cJSON_AddObjectToObject(o, name);
	cJSON_AddNumberToObject(x, "p50", p->p50);
	cJSON_AddNumberToObject(x, "p75", p->p75);
	cJSON_AddNumberToObject(x, "p90", p->p90);
	cJSON_AddNumberToObject(x, "p99", p->p99);
}

/* OpenRouter's latency_last_30m (TTFT, ms), throughput_last_30m (tokens/s,
 * pNN: the slowest (100-NN)% were slower) and uptime_last_30m (percent),
 * from this router's window; and Agora's `health`: the speeds routing uses
 * and where they come from. */
static void
health_json(cJSON *o, const struct rcat_health *h, int64_t now)
{
	struct health_stats st;
	cJSON *x;

	health_stats(h, now, HEALTH_SPAN_MS, &st);
	pct_json(o, "latency_last_30m", st.nttft, &st.ttft);
	pct_json(o, "throughput_last_30m", st.ntps, &st.tps);
	if (st.ok + st.failed)
		cJSON_AddNumberToObject(o, "uptime_last_30m", 100.0 * st.ok / (st.ok + st.failed));
	else
		cJSON_AddNullToObject(o, "uptime_last_30m");
	x = cJSON_AddObjectToObject(o, "health");
	cJSON_AddNumberToObject(x, "ttft_ms", health_ttft_ms(h) > 0 ? health_ttft_ms(h) : ROUTE_PRIOR_TTFT_MS);
	cJSON_AddNumberToObject(x, "tps", health_tps(h) > 0 ? health_tps(h) : ROUTE_PRIOR_TPS);
	cJSON_AddStringToObject(x, "source", h->fleet_samples > 0 ? "fleet" : h->samples ? "local" : "prior");
	cJSON_AddNumberToObject(x, "samples", (double)(h->fleet_samples > 0 ? h->fleet_samples : h->samples));
	cJSON_AddNumberToObject(x, "routers", h->fleet_routers);
	pct_json(x, "total_latency_last_30m", st.nlatency, &st.latency);
	cJSON_AddNumberToObject(x, "attempts_last_30m", st.ok + st.failed);
	cJSON_AddNumberToObject(x, "failures_last_30m", st.failed);
	cJSON_AddBoolToObject(x, "breaker_open", h->until_ms > now);
	if (h->fleet_until_ms > now)
		cJSON_AddNumberToObject(x, "fleet_open_until_ms", (double)h->fleet_until_ms);
	else
		cJSON_AddNullToObject(x, "fleet_open_until_ms");
}

cJSON *
rcat_endpoints_json(const struct rcat *c, const struct rcat_model *m, int64_t now_ms)
{
	cJSON *root = cJSON_CreateObject(), *data, *eps;

	(void)c;
	data = cJSON_AddObjectToObject(root, "data");
	cJSON_AddStringToObject(data, "id", m->id);
	cJSON_AddStringToObject(data, "name", m->name);
	cJSON_AddNumberToObject(data, "created", (double)m->created);
	cJSON_AddStringToObject(data, "description", m->description);
	cJSON_AddItemToObject(data, "architecture", architecture_json(m));
	eps = cJSON_AddArrayToObject(data, "endpoints");
	for (int i = 0; i < m->neps; i++) {
		const struct rcat_endpoint *e = m->eps[i];
		cJSON *o = cJSON_CreateObject(), *dp;
		char name[512], tag[256];
		int degraded = e->health.until_ms > now_ms || e->health.fleet_until_ms > now_ms ||
			       (e->health.until_ms != 0 && e->health.failures > 0);

		snprintf(name, sizeof(name), "%s | %s", e->prov->name, m->id);
		snprintf(tag, sizeof(tag), "%s/%s", e->prov->id, e->quantization);
		cJSON_AddStringToObject(o, "name", name);
		cJSON_AddStringToObject(o, "model_name", m->name);
		cJSON_AddNumberToObject(o, "context_length", e->context_length);
		cJSON_AddItemToObject(o, "pricing", rcat_pricing_json(e));
		cJSON_AddStringToObject(o, "provider_name", e->prov->name);
		cJSON_AddStringToObject(o, "provider_id", e->prov->id);
		cJSON_AddStringToObject(o, "tag", tag);
		cJSON_AddStringToObject(o, "quantization", e->quantization);
		cJSON_AddNumberToObject(o, "max_completion_tokens", e->max_output);
		cJSON_AddNullToObject(o, "max_prompt_tokens");
		cJSON_AddItemToObject(o, "supported_parameters",
			e->supported ? cJSON_Duplicate(e->supported, 1)
				     : m->supported ? cJSON_Duplicate(m->supported, 1) : cJSON_CreateArray());
		cJSON_AddNumberToObject(o, "status", degraded ? -1 : 0);
		cJSON_AddStringToObject(o, "status_text", degraded ? "degraded" : "ok");
		health_json(o, &e->health, now_ms);
		cJSON_AddStringToObject(o, "region", e->prov->region);
		dp = cJSON_AddObjectToObject(o, "data_policy");
		cJSON_AddBoolToObject(dp, "training", e->prov->training);
		cJSON_AddNumberToObject(dp, "retention_days", e->prov->retention_days);
		cJSON_AddItemToArray(eps, o);
	}
	return root;
}

struct rcat_endpoint *
rcat_endpoint(const struct rcat *c, int64_t id)
{
	return (struct rcat_endpoint *)find_endpoint(c, id);
}

struct rcat_model *
rcat_model(const struct rcat *c, const char *id)
{
	struct rcat_model key = { .id = (char *)id };

	if (!c->nmodels)
		return NULL;
	return bsearch(&key, c->models, (size_t)c->nmodels, sizeof(*c->models), cmp_model_id);
}

struct rcat *
rcat_from_row(const char *version, const char *providers, const char *models,
	      const char *endpoints, const struct rcat *prev, char *err, size_t errlen)
{
	struct rcat *c = calloc(1, sizeof(*c));
	cJSON *jp = cJSON_Parse(providers ? providers : "[]");
	cJSON *jm = cJSON_Parse(models ? models : "[]");
	cJSON *je = cJSON_Parse(endpoints ? endpoints : "[]");

	if (!c || !jp || !jm || !je) {
		snprintf(err, errlen, "catalog: unreadable JSON from PostgreSQL");
		goto fail;
	}
	c->refs = 1;
	c->version = version ? strtoll(version, NULL, 10) : 0;
	if (load_providers(c, jp) < 0 || load_models(c, jm) < 0 || load_endpoints(c, je, prev) < 0 ||
	    render_models(c) < 0) {
		snprintf(err, errlen, "catalog: out of memory or bad rows");
		goto fail;
	}
	cJSON_Delete(jp);
	cJSON_Delete(jm);
	cJSON_Delete(je);
	return c;
fail:
	cJSON_Delete(jp);
	cJSON_Delete(jm);
	cJSON_Delete(je);
	rcat_unref(c);
	return NULL;
}

struct rcat *
rcat_ref(struct rcat *c)
{
	c->refs++;
	return c;
}

void
rcat_unref(struct rcat *c)
{
	if (!c || --c->refs > 0)
		return;
	for (int i = 0; i < c->nprovs; i++) {
		struct rcat_provider *p = &c->provs[i];

		free(p->id); free(p->name); free(p->api); free(p->base_url); free(p->region);
		free(p->auth_header); free(p->anthropic_key_header);
	}
	for (int i = 0; i < c->nmodels; i++) {
		struct rcat_model *m = &c->models[i];

		free(m->id); free(m->name); free(m->author); free(m->description); free(m->origin);
		free(m->license); free(m->tokenizer); free(m->eps);
		cJSON_Delete(m->input_modalities); cJSON_Delete(m->output_modalities);
		cJSON_Delete(m->supported);
	}
	for (int i = 0; i < c->neps; i++) {
		struct rcat_endpoint *e = &c->eps[i];

		free(e->upstream_model); free(e->quantization); free(e->url);
		cJSON_Delete(e->supported);
	}
	free(c->provs);
	free(c->models);
	free(c->eps);
	cJSON_free(c->models_json);
	free(c);
}
