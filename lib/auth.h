/*
 * auth: API key verification, shared by the router and agora-analytics. The
 * presented key is hashed (HMAC-SHA256 with the server secret) and looked up
 * in a bounded cache; a miss costs one asynchronous PostgreSQL query. Entries
 * live key_cache_ttl_ms; a NOTIFY on channel agora_keys (payload: the hash in
 * hex) evicts at once, so a revoked key stops working on every process within
 * that time. When PostgreSQL is unreachable, a known key's stale entry keeps
 * serving.
 */
#ifndef AGORA_AUTH_H
#define AGORA_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "pgc.h"
#include "policy.h"

struct auth;

struct auth_key {
	int64_t key_id, account_id;
	char name[128];
	char prefix[24];
	int operator_key;		/* provisioning/operator key */
	int64_t limit_nusd;		/* -1: no limit */
	int64_t usage_nusd;
	int64_t balance_nusd;		/* the account's, as billed so far */
	int64_t billed_nusd;		/* the account's usage billed so far (its keys' usage) */
	int64_t credits_nusd;		/* its total credits: top-ups, adjustments, refunds
					 * (= balance + billed, from one snapshot) */
	int64_t rpm_limit, tpm_limit;	/* -1: the configured default */
	int usable;			/* not disabled nor revoked */
	unsigned scopes;		/* AUTH_SCOPE_* of an operator key; 0 for inference keys */
	struct policy *policy;		/* account AND key policy; NULL: none.
					 * Owned by the cache: policy_ref() it to keep it. */
};

/* Operator key scopes (api_keys.scopes; NULL: all). */
#define AUTH_SCOPE_KEYS 1u		/* the provisioning API */
#define AUTH_SCOPE_ANALYTICS 2u		/* market-wide analytics */
#define AUTH_SCOPE_FINANCE 4u		/* every account's spend, statements, reconciliation */
#define AUTH_SCOPE_ALL 7u

/* "keys,finance" (or "*": all) as AUTH_SCOPE_* bits; unknown names ignored. */
unsigned auth_scopes_parse(const char *csv);

/* k is NULL when the key is unknown; err is set when the lookup could not
 * be made (k is then NULL too). k is borrowed for the call. */
typedef void (*auth_fn)(const struct auth_key *k, const char *err, void *arg);

struct auth *auth_new(struct pgc *pg, const char *secret, int ttl_ms);
/* SIGHUP: entries cached from now on live ttl_ms. */
void auth_set_ttl(struct auth *a, int ttl_ms);
void auth_free(struct auth *a);
/* Looks a key up; may call fn before returning (cache hit). fresh = 1
 * bypasses the cache. Returns -1 (fn not called) if no query can be queued. */
int auth_lookup(struct auth *a, const char *key, size_t len, int fresh, auth_fn fn, void *arg);
/* Drops the entry whose hash is `hex` (64 hex chars). */
void auth_evict_hex(struct auth *a, const char *hex);
void auth_clear(struct auth *a);

#endif
