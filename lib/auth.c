/*
 * auth: hashed-key cache and asynchronous lookups (see auth.h). The cache is
 * a fixed bucket array with chains, bounded by AUTH_MAX_ENTRIES; when full it
 * is emptied (every entry is one query away).
 */
#include "auth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "keyhash.h"
#include "log.h"

#define AUTH_BUCKETS 4096
#define AUTH_MAX_ENTRIES 100000
#define AUTH_NEGATIVE_TTL_MS 1000

struct auth_entry {
	unsigned char hash[KEY_HASH_LEN];
	struct auth_key key;
	int known;			/* 0: negative entry */
	int64_t expires_ms;
	struct auth_entry *next;
};

struct auth {
	struct pgc *pg;
	char *secret;
	int ttl_ms;
	int nentries;
	struct auth_entry *buckets[AUTH_BUCKETS];
};

struct auth_lookup {
	struct auth *a;
	unsigned char hash[KEY_HASH_LEN];
	auth_fn fn;
	void *arg;
};

static const char auth_sql[] =
	"SELECT k.id::text, k.account_id::text, k.name, k.prefix, k.kind, "
	"coalesce(k.limit_nusd::text, ''), k.usage_nusd::text, "
	"(NOT k.disabled AND k.revoked_at IS NULL AND a.status = 'active')::text, a.balance_nusd::text, "
	"coalesce(k.rpm_limit::text, ''), coalesce(k.tpm_limit::text, ''), "
	"coalesce(a.policy::text, ''), coalesce(k.policy::text, ''), "
	"(SELECT coalesce(sum(u.usage_nusd), 0) FROM api_keys u WHERE u.account_id = a.id)::text, "
	"coalesce(array_to_string(k.scopes, ','), '*') "
	"FROM api_keys k JOIN accounts a ON a.id = k.account_id "
	"WHERE k.hash = decode($1, 'hex')";

static unsigned
bucket_of(const unsigned char *hash)
{
	unsigned v;

	memcpy(&v, hash, sizeof(v));
	return v % AUTH_BUCKETS;
}

static struct auth_entry *
cache_find(struct auth *a, const unsigned char *hash)
{
	struct auth_entry *e;

	for (e = a->buckets[bucket_of(hash)]; e; e = e->next)
		if (keyhash_equal(e->hash, hash))
			return e;
	return NULL;
}

void
auth_clear(struct auth *a)
{
	for (int i = 0; i < AUTH_BUCKETS; i++) {
		struct auth_entry *e = a->buckets[i], *n;

		for (; e; e = n) {
			n = e->next;
			policy_unref(e->key.policy);
			free(e);
		}
		a->buckets[i] = NULL;
	}
	a->nentries = 0;
}

static void
cache_put(struct auth *a, const unsigned char *hash, const struct auth_key *k, int64_t ttl)
{
	struct auth_entry *e = cache_find(a, hash);

	if (!e) {
		if (a->nentries >= AUTH_MAX_ENTRIES)
			auth_clear(a);
		if (!(e = calloc(1, sizeof(*e))))
			return;
		memcpy(e->hash, hash, KEY_HASH_LEN);
		e->next = a->buckets[bucket_of(hash)];
		a->buckets[bucket_of(hash)] = e;
		a->nentries++;
	}
	policy_unref(e->key.policy);
	e->key.policy = NULL;
	e->known = k != NULL;
	if (k) {
		e->key = *k;
		policy_ref(e->key.policy);
	}
	e->expires_ms = clock_wall_ms() + ttl;
}

void
auth_evict_hex(struct auth *a, const char *hex)
{
	unsigned char hash[KEY_HASH_LEN];
	struct auth_entry **pp, *e;

	if (strlen(hex) != 2 * KEY_HASH_LEN) {
		auth_clear(a);	/* unknown payload: be safe */
		return;
	}
	for (int i = 0; i < KEY_HASH_LEN; i++) {
		unsigned v;

		if (sscanf(hex + 2 * i, "%2x", &v) != 1) {
			auth_clear(a);
			return;
		}
		hash[i] = (unsigned char)v;
	}
	for (pp = &a->buckets[bucket_of(hash)]; (e = *pp); pp = &e->next) {
		if (keyhash_equal(e->hash, hash)) {
			*pp = e->next;
			policy_unref(e->key.policy);
			free(e);
			a->nentries--;
			return;
		}
	}
}

static int64_t
parse_i64(const char *s, int64_t dflt)
{
	return s && *s ? strtoll(s, NULL, 10) : dflt;
}

unsigned
auth_scopes_parse(const char *csv)
{
	static const struct { const char *name; unsigned bit; } names[] = {
		{ "keys", AUTH_SCOPE_KEYS }, { "analytics", AUTH_SCOPE_ANALYTICS }, { "finance", AUTH_SCOPE_FINANCE },
	};
	unsigned s = 0;

	if (strcmp(csv, "*") == 0)
		return AUTH_SCOPE_ALL;
	for (const char *p = csv; *p; p += strcspn(p, ","), p += *p == ',') {
		size_t n = strcspn(p, ",");

		for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
			if (strlen(names[i].name) == n && strncmp(p, names[i].name, n) == 0)
				s |= names[i].bit;
	}
	return s;
}

static void
auth_result_cb(PGresult *res, const char *err, void *arg)
{
	struct auth_lookup *l = arg;
	struct auth *a = l->a;
	struct auth_entry *stale;
	struct auth_key k;

	if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
		const char *why = res ? PQresultErrorMessage(res) : err;

		log_warn("auth: key lookup failed: %s", why);
		stale = cache_find(a, l->hash);
		if (stale && stale->known)
			l->fn(&stale->key, NULL, l->arg);
		else
			l->fn(NULL, "authentication backend unavailable", l->arg);
		free(l);
		return;
	}
	if (PQntuples(res) == 0) {
		cache_put(a, l->hash, NULL, AUTH_NEGATIVE_TTL_MS);
		l->fn(NULL, NULL, l->arg);
		free(l);
		return;
	}
	memset(&k, 0, sizeof(k));
	k.key_id = parse_i64(PQgetvalue(res, 0, 0), 0);
	k.account_id = parse_i64(PQgetvalue(res, 0, 1), 0);
	snprintf(k.name, sizeof(k.name), "%s", PQgetvalue(res, 0, 2));
	snprintf(k.prefix, sizeof(k.prefix), "%s", PQgetvalue(res, 0, 3));
	k.operator_key = strcmp(PQgetvalue(res, 0, 4), "operator") == 0;
	k.limit_nusd = parse_i64(PQgetvalue(res, 0, 5), -1);
	k.usage_nusd = parse_i64(PQgetvalue(res, 0, 6), 0);
	k.usable = strcmp(PQgetvalue(res, 0, 7), "true") == 0;
	k.balance_nusd = parse_i64(PQgetvalue(res, 0, 8), 0);
	k.rpm_limit = parse_i64(PQgetvalue(res, 0, 9), -1);
	k.tpm_limit = parse_i64(PQgetvalue(res, 0, 10), -1);
	k.policy = policy_new(PQgetvalue(res, 0, 11), PQgetvalue(res, 0, 12));
	k.billed_nusd = parse_i64(PQgetvalue(res, 0, 13), 0);
	k.credits_nusd = k.balance_nusd + k.billed_nusd;
	k.scopes = k.operator_key ? auth_scopes_parse(PQgetvalue(res, 0, 14)) : 0;
	cache_put(a, l->hash, &k, a->ttl_ms);
	l->fn(&k, NULL, l->arg);
	policy_unref(k.policy);
	free(l);
}

int
auth_lookup(struct auth *a, const char *key, size_t len, int fresh, auth_fn fn, void *arg)
{
	unsigned char hash[KEY_HASH_LEN];
	char hex[2 * KEY_HASH_LEN + 1];
	const char *params[1] = { hex };
	struct auth_entry *e;
	struct auth_lookup *l;

	if (!keyhash_well_formed(key, len)) {
		fn(NULL, NULL, arg);
		return 0;
	}
	if (keyhash_hash(a->secret, strlen(a->secret), key, len, hash) < 0)
		return -1;
	e = cache_find(a, hash);
	if (e && !fresh && e->expires_ms > clock_wall_ms()) {
		fn(e->known ? &e->key : NULL, NULL, arg);
		return 0;
	}
	/* PostgreSQL away: a known key's stale entry answers at once rather
	 * than after the reconnect back-off (revocations wait for PostgreSQL) */
	if (e && e->known && !pgc_is_connected(a->pg)) {
		fn(&e->key, NULL, arg);
		return 0;
	}
	for (int i = 0; i < KEY_HASH_LEN; i++)
		snprintf(hex + 2 * i, 3, "%02x", hash[i]);
	if (!(l = calloc(1, sizeof(*l))))
		return -1;
	l->a = a;
	memcpy(l->hash, hash, KEY_HASH_LEN);
	l->fn = fn;
	l->arg = arg;
	if (pgc_query(a->pg, auth_sql, 1, params, auth_result_cb, l) < 0) {
		free(l);
		return -1;
	}
	return 0;
}

void
auth_set_ttl(struct auth *a, int ttl_ms)
{
	a->ttl_ms = ttl_ms;
}

struct auth *
auth_new(struct pgc *pg, const char *secret, int ttl_ms)
{
	struct auth *a = calloc(1, sizeof(*a));

	if (!a)
		return NULL;
	a->pg = pg;
	a->ttl_ms = ttl_ms;
	if (!(a->secret = strdup(secret))) {
		free(a);
		return NULL;
	}
	return a;
}

void
auth_free(struct auth *a)
{
	if (!a)
		return;
	auth_clear(a);
	free(a->secret);
	free(a);
}
