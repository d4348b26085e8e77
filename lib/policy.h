/*
 * policy: what an operator allows an account (and, narrower still, one of
 * its keys) to be served by. A policy is a JSON object stored beside the
 * account or key in PostgreSQL and set with `agoractl policy set`:
 *
 *   {"providers_allow": ["deepinfra", ...],   only these providers
 *    "providers_deny":  ["cheapco", ...],     never these
 *    "regions":  ["EU", "DE"],                provider region (data residency)
 *    "origins":  ["US", "FR"],                model origin (country of the lab)
 *    "licenses": ["MIT", "Apache-2.0"],       model license
 *    "open_weights_only": true,
 *    "max_prompt_uusd_per_mtok": 2000000,     price ceilings, integer uusd/Mtok
 *    "max_completion_uusd_per_mtok": 8000000,
 *    "data_policy": "no_training" | "zdr"}    floor: no training, or also no retention
 *
 * Every field is optional; lists match case-insensitively. The effective
 * policy of a request is the account's AND the key's: each layer can only
 * take endpoints away, and nothing a request says can add one back.
 */
#ifndef AGORA_POLICY_H
#define AGORA_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

struct policy;

/* What a policy looks at in one endpoint. */
struct policy_endpoint {
	const char *provider, *region;		/* provider id and region */
	const char *origin, *license;		/* of the model */
	int open_weights;
	int64_t price_prompt, price_completion;	/* uusd per Mtok */
	int training, retention_days;		/* the provider's data policy */
};

/* Checks a policy object; 0, or -1 with a message naming the field. */
int policy_validate(const cJSON *obj, char *msg, size_t len);

/* The effective policy of the two layers' JSON texts (either may be NULL or
 * empty). Returns NULL when neither restricts anything. A layer that does
 * not parse or validate makes a policy that denies everything (fail
 * closed), saying so in policy_allows' reason. */
struct policy *policy_new(const char *account_json, const char *key_json);
struct policy *policy_ref(struct policy *p);
void policy_unref(struct policy *p);

/* 1 when p (may be NULL: no policy) lets e serve; 0 with why (if not NULL)
 * saying which rule refused it, e.g. "the account's policy allows regions
 * EU only (provider x is in US)". */
int policy_allows(const struct policy *p, const struct policy_endpoint *e, char *why, size_t len);

#endif
