/*
 * keys: the provisioning API, OpenRouter's shape, for operator keys only.
 *   POST   /api/v1/keys            {name, limit, account?} -> 201, the secret once
 *   GET    /api/v1/keys[?account=] list (the operator's account by default)
 *   GET    /api/v1/keys/{hash}     one key
 *   PATCH  /api/v1/keys/{hash}     {name?, limit?, disabled?}
 *   DELETE /api/v1/keys/{hash}     revoke
 * A key is named by `hash` (hex of its HMAC). `account` (id or name) is
 * Agora's extension so a marketplace operator can provision any account.
 * Every change NOTIFYs agora_keys, so routers drop cached entries at once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keyhash.h"
#include "log.h"
#include "money.h"
#include "router.h"

enum keys_op { KO_CREATE, KO_LIST, KO_GET, KO_PATCH, KO_DELETE };

struct keys_call {
	struct router *rt;
	struct httpd_req *req;
	enum keys_op op;
	int64_t operator_account;
	char hash[2 * KEY_HASH_LEN + 1];
	char secret[KEY_LEN + 1];	/* POST: shown once */
};

#define KEY_COLS "encode(k.hash, 'hex'), k.prefix, k.name, k.kind, coalesce(k.limit_nusd::text, ''), " \
	"k.usage_nusd::text, (k.disabled OR k.revoked_at IS NOT NULL)::text, " \
	"to_char(k.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), " \
	"to_char(k.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), a.name, k.account_id::text"

/* $1 account ref ('' = the operator's own: $2) */
#define ACCOUNT_OF "(SELECT id FROM accounts WHERE CASE WHEN $1 = '' THEN id = $2::bigint " \
	"ELSE name = $1 OR id::text = $1 END ORDER BY id LIMIT 1)"

static const char sql_create[] =
	"WITH acct AS (SELECT " ACCOUNT_OF " AS id), "
	"k AS (INSERT INTO api_keys (account_id, hash, prefix, name, limit_nusd) "
	" SELECT id, decode($3, 'hex'), $4, $5, $6::bigint FROM acct WHERE id IS NOT NULL RETURNING *) "
	"SELECT " KEY_COLS " FROM k JOIN accounts a ON a.id = k.account_id";
static const char sql_list[] =
	"SELECT " KEY_COLS " FROM api_keys k JOIN accounts a ON a.id = k.account_id "
	"WHERE k.account_id = " ACCOUNT_OF " AND k.revoked_at IS NULL ORDER BY k.id LIMIT 1000";
static const char sql_get[] =
	"SELECT " KEY_COLS " FROM api_keys k JOIN accounts a ON a.id = k.account_id "
	"WHERE k.hash = decode($1, 'hex') AND k.revoked_at IS NULL";
static const char sql_patch[] =
	"WITH k AS (UPDATE api_keys SET name = coalesce($2, name), "
	" limit_nusd = CASE WHEN $3 = 'keep' THEN limit_nusd WHEN $3 = 'none' THEN NULL ELSE $3::bigint END, "
	" disabled = coalesce($4::boolean, disabled), updated_at = now() "
	" WHERE hash = decode($1, 'hex') AND revoked_at IS NULL RETURNING *), "
	"n AS (SELECT pg_notify('agora_keys', encode(hash, 'hex')) FROM k) "
	"SELECT " KEY_COLS " FROM k JOIN accounts a ON a.id = k.account_id, (SELECT count(*) FROM n) x";
static const char sql_delete[] =
	"WITH k AS (UPDATE api_keys SET revoked_at = now(), disabled = true, updated_at = now() "
	" WHERE hash = decode($1, 'hex') AND revoked_at IS NULL RETURNING hash), "
	"n AS (SELECT pg_notify('agora_keys', encode(hash, 'hex')) FROM k) "
	"SELECT (SELECT count(*) FROM k)::text, (SELECT count(*) FROM n)::text";

static void
usd(cJSON *o, const char *name, const char *nusd)
{
	char buf[64];

	if (!*nusd) {
		cJSON_AddNullToObject(o, name);
		return;
	}
	money_format_usd(strtoll(nusd, NULL, 10), buf, sizeof(buf));
	cJSON_AddItemToObject(o, name, cJSON_CreateRaw(buf));
}

static cJSON *
key_json(const PGresult *res, int row)
{
	cJSON *o = cJSON_CreateObject();
	char label[64];

	snprintf(label, sizeof(label), "%s...", PQgetvalue(res, row, 1));
	cJSON_AddStringToObject(o, "hash", PQgetvalue(res, row, 0));
	cJSON_AddStringToObject(o, "name", PQgetvalue(res, row, 2));
	cJSON_AddStringToObject(o, "label", label);
	cJSON_AddBoolToObject(o, "is_provisioning_key", strcmp(PQgetvalue(res, row, 3), "operator") == 0);
	usd(o, "limit", PQgetvalue(res, row, 4));
	usd(o, "usage", PQgetvalue(res, row, 5));
	cJSON_AddBoolToObject(o, "disabled", strcmp(PQgetvalue(res, row, 6), "true") == 0);
	cJSON_AddStringToObject(o, "created_at", PQgetvalue(res, row, 7));
	cJSON_AddStringToObject(o, "updated_at", PQgetvalue(res, row, 8));
	cJSON_AddStringToObject(o, "account", PQgetvalue(res, row, 9));
	cJSON_AddNumberToObject(o, "account_id", strtod(PQgetvalue(res, row, 10), NULL));
	return o;
}

static void
keys_result_cb(PGresult *res, const char *err, void *arg)
{
	struct keys_call *c = arg;
	struct httpd_req *req = c->req;
	cJSON *root;

	if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
		log_warn("keys: %s", res ? PQresultErrorMessage(res) : err);
		httpd_reply_error(req, res ? 400 : 503, res ? "the key could not be changed" : "database unavailable");
		free(c);
		return;
	}
	root = cJSON_CreateObject();
	if (c->op == KO_LIST) {
		cJSON *arr = cJSON_AddArrayToObject(root, "data");

		for (int i = 0; i < PQntuples(res); i++)
			cJSON_AddItemToArray(arr, key_json(res, i));
	} else if (c->op == KO_DELETE) {
		if (strcmp(PQgetvalue(res, 0, 0), "0") == 0)
			goto notfound;
		cJSON_AddTrueToObject(cJSON_AddObjectToObject(root, "data"), "success");
	} else {
		if (PQntuples(res) == 0)
			goto notfound;
		cJSON_AddItemToObject(root, "data", key_json(res, 0));
		if (c->op == KO_CREATE)
			cJSON_AddStringToObject(root, "key", c->secret);
	}
	httpd_reply_json(req, c->op == KO_CREATE ? 201 : 200, root);
	cJSON_Delete(root);
	memset(c->secret, 0, sizeof(c->secret));
	free(c);
	return;
notfound:
	cJSON_Delete(root);
	httpd_reply_error(req, 404, c->op == KO_CREATE ? "no such account" : "no such key");
	free(c);
}

/* Reads {name, limit, disabled, account} for POST/PATCH into params. */
static int
parse_body(struct keys_call *c, cJSON *b, char *limit, size_t llen, const char **name,
	   const char **disabled, const char **account, char *msg, size_t mlen)
{
	const cJSON *n = cJSON_GetObjectItemCaseSensitive(b, "name");
	const cJSON *l = cJSON_GetObjectItemCaseSensitive(b, "limit");
	const cJSON *d = cJSON_GetObjectItemCaseSensitive(b, "disabled");
	const cJSON *a = cJSON_GetObjectItemCaseSensitive(b, "account");
	int64_t nusd;
	char num[64];

	if (!cJSON_IsObject(b))
		return snprintf(msg, mlen, "the body must be a JSON object"), -1;
	if (n && !cJSON_IsString(n))
		return snprintf(msg, mlen, "'name' must be a string"), -1;
	*name = n ? n->valuestring : NULL;
	if (c->op == KO_CREATE && (!*name || !**name))
		return snprintf(msg, mlen, "'name' is required"), -1;
	snprintf(limit, llen, c->op == KO_CREATE ? "none" : "keep");
	if (cJSON_IsNull(l)) {
		snprintf(limit, llen, "none");
	} else if (l) {
		if (!cJSON_IsNumber(l) || l->valuedouble < 0 || l->valuedouble > 1e9)
			return snprintf(msg, mlen, "'limit' must be a non-negative amount in USD or null"), -1;
		snprintf(num, sizeof(num), "%.9f", l->valuedouble);
		if (money_parse_usd(num, &nusd) < 0)
			return snprintf(msg, mlen, "'limit' is not a valid amount"), -1;
		snprintf(limit, llen, "%lld", (long long)nusd);
	}
	if (d && !cJSON_IsBool(d))
		return snprintf(msg, mlen, "'disabled' must be true or false"), -1;
	*disabled = d ? (cJSON_IsTrue(d) ? "true" : "false") : NULL;
	if (a && !cJSON_IsString(a) && !(cJSON_IsNumber(a) && a->valuedouble >= 1 && a->valuedouble < 9e15))
		return snprintf(msg, mlen, "'account' must be an account name or id"), -1;
	*account = a && cJSON_IsString(a) ? a->valuestring : NULL;
	if (a && cJSON_IsNumber(a)) {
		static char idbuf[32];

		snprintf(idbuf, sizeof(idbuf), "%lld", (long long)a->valuedouble);
		*account = idbuf;
	}
	return 0;
}

static int
keys_create(struct keys_call *c, cJSON *b, char *msg, size_t mlen)
{
	unsigned char h[KEY_HASH_LEN];
	char limit[32], own[24], prefix[KEY_SHOWN_PREFIX_LEN + 1], hex[2 * KEY_HASH_LEN + 1];
	const char *name, *disabled, *account;
	const char *params[6];

	if (parse_body(c, b, limit, sizeof(limit), &name, &disabled, &account, msg, mlen) < 0)
		return -1;
	if (keyhash_generate(c->secret) < 0 ||
	    keyhash_hash(c->rt->conf.key_secret, strlen(c->rt->conf.key_secret), c->secret, KEY_LEN, h) < 0)
		return snprintf(msg, mlen, "cannot generate a key"), -1;
	for (int i = 0; i < KEY_HASH_LEN; i++)
		snprintf(hex + 2 * i, 3, "%02x", h[i]);
	snprintf(prefix, sizeof(prefix), "%.*s", KEY_SHOWN_PREFIX_LEN, c->secret);
	snprintf(own, sizeof(own), "%lld", (long long)c->operator_account);
	params[0] = account ? account : "";
	params[1] = own;
	params[2] = hex;
	params[3] = prefix;
	params[4] = name;
	params[5] = strcmp(limit, "none") == 0 ? NULL : limit;
	return pgc_query(c->rt->pg_auth, sql_create, 6, params, keys_result_cb, c);
}

static int
keys_patch(struct keys_call *c, cJSON *b, char *msg, size_t mlen)
{
	char limit[32];
	const char *name, *disabled, *account;
	const char *params[4];

	if (parse_body(c, b, limit, sizeof(limit), &name, &disabled, &account, msg, mlen) < 0)
		return -1;
	params[0] = c->hash;
	params[1] = name;
	params[2] = limit;
	params[3] = disabled;
	return pgc_query(c->rt->pg_auth, sql_patch, 4, params, keys_result_cb, c);
}

static void
keys_auth_cb(const struct auth_key *k, const char *err, void *arg)
{
	struct keys_call *c = arg;
	struct httpd_req *req = c->req;
	char msg[200] = "", own[24], account[128] = "";
	const char *params[2] = { account, own };
	size_t len;
	const char *body;
	cJSON *b = NULL;
	int rc = -1;

	if (err || !k || !k->usable || !k->operator_key || !(k->scopes & AUTH_SCOPE_KEYS)) {
		free(c);
		if (err)
			httpd_reply_error(req, 503, "%s", err);
		else if (!k || !k->usable)
			httpd_reply_error(req, 401, "invalid API key");
		else if (k->operator_key)
			httpd_reply_error(req, 403, "this operator key lacks the 'keys' scope");
		else
			httpd_reply_error(req, 403, "only operator (provisioning) keys manage keys");
		return;
	}
	c->operator_account = k->account_id;
	snprintf(own, sizeof(own), "%lld", (long long)k->account_id);
	body = httpd_req_body(req, &len);
	if (c->op == KO_CREATE || c->op == KO_PATCH) {
		if (!(b = cJSON_ParseWithLength(body, len))) {
			free(c);
			httpd_reply_error(req, 400, "the request body is not valid JSON");
			return;
		}
		rc = c->op == KO_CREATE ? keys_create(c, b, msg, sizeof(msg)) : keys_patch(c, b, msg, sizeof(msg));
		cJSON_Delete(b);
	} else if (c->op == KO_LIST) {
		const char *q = httpd_req_query(req);

		if (strncmp(q, "account=", 8) == 0)
			snprintf(account, sizeof(account), "%.*s", (int)strcspn(q + 8, "&"), q + 8);
		rc = pgc_query(c->rt->pg_auth, sql_list, 2, params, keys_result_cb, c);
	} else {
		params[0] = c->hash;
		rc = pgc_query(c->rt->pg_auth, c->op == KO_GET ? sql_get : sql_delete, 1, params, keys_result_cb, c);
	}
	if (rc < 0) {
		free(c);
		httpd_reply_error(req, msg[0] ? 400 : 503, "%s", msg[0] ? msg : "too many queries in flight");
	}
}

void
api_keys(struct router *rt, struct httpd_req *req, const char *hash)
{
	const char *m = httpd_req_method(req), *key;
	struct keys_call *c;
	size_t len;

	if (!(key = api_bearer(req, &len))) {
		httpd_reply_error(req, 401, "missing API key: send Authorization: Bearer <key>");
		return;
	}
	if (!(c = calloc(1, sizeof(*c)))) {
		httpd_reply_error(req, 503, "out of memory");
		return;
	}
	c->rt = rt;
	c->req = req;
	if (hash) {
		if (strlen(hash) != 2 * KEY_HASH_LEN || strspn(hash, "0123456789abcdef") != 2 * KEY_HASH_LEN) {
			free(c);
			httpd_reply_error(req, 404, "no such key");
			return;
		}
		memcpy(c->hash, hash, sizeof(c->hash));
	}
	if (strcmp(m, "POST") == 0 && !hash)
		c->op = KO_CREATE;
	else if (strcmp(m, "GET") == 0)
		c->op = hash ? KO_GET : KO_LIST;
	else if (strcmp(m, "PATCH") == 0 && hash)
		c->op = KO_PATCH;
	else if (strcmp(m, "DELETE") == 0 && hash)
		c->op = KO_DELETE;
	else {
		free(c);
		httpd_reply_error(req, 405, "method not allowed here");
		return;
	}
	if (auth_lookup(rt->auth, key, len, 1, keys_auth_cb, c) < 0) {
		free(c);
		httpd_reply_error(req, 503, "authentication backend busy");
	}
}
