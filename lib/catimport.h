/*
 * catimport: reads a catalog file (see README "Catalog"), checks it and
 * returns it normalised: defaults filled, `${NAME}` environment references
 * expanded, endpoints flattened with their model id. Pure: no I/O but the
 * caller's environment lookup. Errors name the JSON path, e.g.
 * "models[3].endpoints[1].price.prompt_uusd_per_mtok: must be a non-negative integer".
 *
 * Result: {"providers":[{id,name,api,base_url,api_key_env,region,training,
 * retention_days,status}], "models":[{id,name,author,description,origin,
 * license,open_weights,context_length,created,input_modalities,
 * output_modalities,tokenizer,supported_parameters,status}],
 * "endpoints":[{model_id,provider_id,upstream_model,quantization,
 * context_length,max_output,prompt,completion,cost_prompt,cost_completion,
 * supported_parameters,status}]} with prices as integers (strings in JSON
 * would be safer for huge values; catalogs are bounded to 10^15).
 */
#ifndef AGORA_CATIMPORT_H
#define AGORA_CATIMPORT_H

#include <stddef.h>

#include <cjson/cJSON.h>

#define CATIMPORT_MAX_BYTES (16 * 1024 * 1024)
#define CATIMPORT_MAX_MODELS 10000
#define CATIMPORT_MAX_ENDPOINTS 100	/* per model */

/* Returns the value of an environment variable, or NULL. */
typedef const char *(*catimport_env_fn)(const char *name, void *arg);

/* NULL on error, with the reason in err. Caller frees with cJSON_Delete. */
cJSON *catimport_parse(const char *json, size_t len, catimport_env_fn env, void *env_arg,
		       char *err, size_t errlen);

#endif
