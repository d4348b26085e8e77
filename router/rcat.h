/*
 * rcat: the router's in-memory catalog snapshot, loaded from PostgreSQL. A
 * snapshot is immutable apart from endpoint health, reference-counted, and
 * replaced whole when the catalog version changes; requests in flight keep
 * the snapshot they started with. Each model's endpoints are sorted by price
 * (prompt + completion), cheapest first.
 */
#ifndef AGORA_RCAT_H
#define AGORA_RCAT_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

struct rcat_provider {
	char *id, *name, *api, *base_url, *region;
	char *auth_header;		/* "Authorization: Bearer ..." or NULL */
	char *anthropic_key_header;	/* "x-api-key: ..." or NULL */
	int training, retention_days;
};

/* One attempt in an endpoint's window: its outcome and, for a success,
 * time to first token, total latency and output tokens per second. */
#define RCAT_WINDOW 128
struct rcat_sample {
	int64_t at_ms;			/* when it ended; 0: an empty slot */
	float ttft_ms, latency_ms, tps;	/* tps 0: unknown */
	int ok;
};

/* Per-endpoint health and speed, learnt by this router (kept across
 * catalog reloads). The breaker is open while until_ms is in the future;
 * after it, one probe request (probe_ms) is let through: success closes it,
 * failure opens it again. */
struct rcat_health {
	int failures;			/* consecutive */
	int64_t until_ms;		/* open (tried last) until then */
	int64_t probe_ms;		/* half-open: when the probe started */
	int64_t last_ok_ms, last_fail_ms;
	long long opens;		/* times the breaker opened */
	double ttft_ms, tps;		/* decaying averages (0: no sample yet) */
	long long samples;
	/* The last RCAT_WINDOW attempts, a ring (health.h: percentiles). */
	struct rcat_sample win[RCAT_WINDOW];
	int win_next;			/* the slot written next */
	/* What the fleet reports through Redis (health.c); fleet_samples 0:
	 * nothing fresh, use this router's own values. */
	double fleet_ttft_ms, fleet_tps;	/* samples-weighted, own included */
	long long fleet_samples;
	int fleet_routers;		/* fresh entries merged, own included */
	int64_t fleet_until_ms;		/* latest open deadline another router reports */
	int64_t fleet_at_ms;		/* when last merged (0: never) */
};

struct rcat_model;

struct rcat_endpoint {
	int64_t id;
	struct rcat_provider *prov;
	struct rcat_model *model;
	char *upstream_model, *quantization;
	int context_length, max_output;
	int64_t price_prompt, price_completion;	/* uusd per Mtok, charged */
	int64_t cost_prompt, cost_completion;	/* uusd per Mtok, the provider bills */
	cJSON *supported;		/* array, or NULL: the model's */
	char *url;			/* chat completions URL */
	struct rcat_health health;
};

struct rcat_model {
	char *id, *name, *author, *description, *origin, *license, *tokenizer;
	int open_weights, context_length;
	int64_t created;
	cJSON *input_modalities, *output_modalities, *supported;
	struct rcat_endpoint **eps;	/* sorted by price */
	int neps;
};

struct rcat {
	int refs;
	int64_t version;
	struct rcat_provider *provs;
	int nprovs;
	struct rcat_model *models;	/* sorted by id */
	int nmodels;
	struct rcat_endpoint *eps;	/* sorted by id */
	int neps;
	char *models_json;		/* pre-rendered GET /models body */
	size_t models_json_len;
};

/* The master key that opens providers' sealed API keys (NULL: none; then
 * only api_key_env credentials work). Copied. */
void rcat_set_master_key(const uint8_t *key);

/* The one SQL query whose single row rcat_from_row() reads. */
extern const char rcat_sql[];

/* Builds a snapshot from the query's columns (version text, providers json,
 * models json, endpoints json). Provider keys come from getenv(api_key_env).
 * `prev` (may be NULL) lends its endpoint health. NULL on error (in err). */
struct rcat *rcat_from_row(const char *version, const char *providers,
			   const char *models, const char *endpoints,
			   const struct rcat *prev, char *err, size_t errlen);
struct rcat *rcat_ref(struct rcat *c);
void rcat_unref(struct rcat *c);

struct rcat_model *rcat_model(const struct rcat *c, const char *id);
/* An endpoint by its catalog id, or NULL. */
struct rcat_endpoint *rcat_endpoint(const struct rcat *c, int64_t id);

/* GET /models/{id}/endpoints body (caller frees with cJSON_Delete). */
cJSON *rcat_endpoints_json(const struct rcat *c, const struct rcat_model *m, int64_t now_ms);
/* The OpenRouter pricing object of an endpoint. */
cJSON *rcat_pricing_json(const struct rcat_endpoint *e);

#endif
