/*
 * agoractl: what operators and finance do by hand. Migrations, catalog
 * import, accounts, credits and keys, against the PostgreSQL the config
 * names. A command-line tool, so plain synchronous libpq; every statement
 * takes its values as parameters.
 */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <libpq-fe.h>

#include "args.h"
#include "catimport.h"
#include "conf.h"
#include "keyhash.h"
#include "money.h"
#include "partitions.h"
#include "policy.h"
#include "reconcile_cmd.h"
#include "simulate.h"
#include "secretbox.h"

#include <openssl/crypto.h>

static struct agora_conf conf;
static const char *migrations_dir = "migrations";
static PGconn *db;

static void __attribute__((noreturn, format(printf, 1, 2)))
die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "agoractl: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (db)
		PQfinish(db);
	exit(1);
}

/* Warnings and errors to stderr; notices (e.g. a migration's "already
 * exists, skipping") dropped. */
static void
notice(void *arg, const char *msg)
{
	(void)arg;
	if (strncmp(msg, "NOTICE:", 7) != 0 && strncmp(msg, "INFO:", 5) != 0 && strncmp(msg, "DEBUG:", 6) != 0)
		fprintf(stderr, "%s", msg);
}

static void
connect_db(void)
{
	char dsn[600];

	snprintf(dsn, sizeof(dsn), "%s connect_timeout=10", conf.pg_dsn);
	db = PQconnectdb(dsn);
	if (PQstatus(db) != CONNECTION_OK)
		die("cannot connect to PostgreSQL: %s", PQerrorMessage(db));
	PQsetNoticeProcessor(db, notice, NULL);	/* not SET: no session state (PgBouncer) */
}

/* Runs a statement; dies on error. Caller PQclears the result. */
static PGresult *
q(const char *sql, int n, const char *const *params)
{
	PGresult *r = PQexecParams(db, sql, n, NULL, params, NULL, NULL, 0);
	ExecStatusType s = PQresultStatus(r);

	if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
		char msg[1024];

		snprintf(msg, sizeof(msg), "%s", PQresultErrorMessage(r));
		msg[strcspn(msg, "\n")] = '\0';
		PQclear(r);
		PQclear(PQexec(db, "ROLLBACK"));
		die("%s", msg);
	}
	return r;
}

static void
exec0(const char *sql, int n, const char *const *params)
{
	PQclear(q(sql, n, params));
}

static char *
read_file(const char *path, size_t *len)
{
	char *buf = args_read_file(path, CATIMPORT_MAX_BYTES, len);

	if (!buf)
		exit(1);	/* args_read_file said why */
	return buf;
}

/* ---- migrate ---- */

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void
cmd_migrate(void)
{
	char *names[1000], path[1024], ver[16];
	struct dirent *de;
	DIR *d = opendir(migrations_dir);
	int n = 0, applied = 0;

	if (!d)
		die("%s: %s", migrations_dir, strerror(errno));
	while ((de = readdir(d)) && n < 1000) {
		size_t l = strlen(de->d_name);

		if (l > 9 && strspn(de->d_name, "0123456789") == 4 && de->d_name[4] == '_' &&
		    strcmp(de->d_name + l - 4, ".sql") == 0)
			names[n++] = strdup(de->d_name);
	}
	closedir(d);
	qsort(names, (size_t)n, sizeof(char *), cmp_str);
	exec0("CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, "
	      "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())", 0, NULL);
	for (int i = 0; i < n; i++) {
		const char *params[2] = { ver, names[i] };
		PGresult *r;
		size_t len;
		char *sql;

		snprintf(ver, sizeof(ver), "%.4s", names[i]);
		exec0("BEGIN", 0, NULL);
		exec0("SELECT pg_advisory_xact_lock(72657)", 0, NULL);	/* one migrator at a time */
		r = q("SELECT 1 FROM schema_migrations WHERE version = $1::int", 1, params);
		if (PQntuples(r) > 0) {
			PQclear(r);
			exec0("COMMIT", 0, NULL);
			continue;
		}
		PQclear(r);
		snprintf(path, sizeof(path), "%s/%s", migrations_dir, names[i]);
		sql = read_file(path, &len);
		r = PQexec(db, sql);	/* the file's statements, inside our transaction */
		free(sql);
		if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
			fprintf(stderr, "agoractl: %s: %s", names[i], PQresultErrorMessage(r));
			PQclear(r);
			PQclear(PQexec(db, "ROLLBACK"));
			die("migration %s failed; nothing of it was applied", names[i]);
		}
		PQclear(r);
		exec0("INSERT INTO schema_migrations (version, name) VALUES ($1::int, $2)", 2, params);
		exec0("COMMIT", 0, NULL);
		printf("applied %s\n", names[i]);
		applied++;
	}
	if (!applied)
		printf("up to date (%d migrations)\n", n);
	for (int i = 0; i < n; i++)
		free(names[i]);
}

/* ---- catalog ---- */

static const char sql_providers[] =
	"INSERT INTO providers (id, name, api, base_url, api_key_env, region, data_training, "
	" data_retention_days, status, updated_at) "
	"SELECT id, name, api, base_url, nullif(api_key_env, ''), region, training, retention_days, status, now() "
	"FROM jsonb_to_recordset($1::jsonb -> 'providers') AS x(id text, name text, api text, base_url text, "
	" api_key_env text, region text, training bool, retention_days int, status text) "
	"ON CONFLICT (id) DO UPDATE SET name = excluded.name, api = excluded.api, base_url = excluded.base_url, "
	" api_key_env = excluded.api_key_env, region = excluded.region, data_training = excluded.data_training, "
	" data_retention_days = excluded.data_retention_days, status = excluded.status, updated_at = now()";
static const char sql_models[] =
	"INSERT INTO models (id, name, author, description, origin, license, open_weights, context_length, "
	" created, input_modalities, output_modalities, tokenizer, supported_parameters, status, updated_at) "
	"SELECT id, name, author, description, nullif(origin, ''), nullif(license, ''), open_weights, "
	" context_length, coalesce(created, extract(epoch FROM now())::bigint), "
	" ARRAY(SELECT jsonb_array_elements_text(input_modalities)), "
	" ARRAY(SELECT jsonb_array_elements_text(output_modalities)), tokenizer, "
	" ARRAY(SELECT jsonb_array_elements_text(supported_parameters)), status, now() "
	"FROM jsonb_to_recordset($1::jsonb -> 'models') AS x(id text, name text, author text, description text, "
	" origin text, license text, open_weights bool, context_length int, created bigint, "
	" input_modalities jsonb, output_modalities jsonb, tokenizer text, supported_parameters jsonb, status text) "
	"ON CONFLICT (id) DO UPDATE SET name = excluded.name, author = excluded.author, "
	" description = excluded.description, origin = excluded.origin, license = excluded.license, "
	" open_weights = excluded.open_weights, context_length = excluded.context_length, "
	" created = CASE WHEN (SELECT m->>'created' FROM jsonb_array_elements($1::jsonb -> 'models') m "
	"   WHERE m->>'id' = excluded.id) IS NULL THEN models.created ELSE excluded.created END, "
	" input_modalities = excluded.input_modalities, output_modalities = excluded.output_modalities, "
	" tokenizer = excluded.tokenizer, supported_parameters = excluded.supported_parameters, "
	" status = excluded.status, updated_at = now()";
static const char sql_endpoints[] =
	"INSERT INTO endpoints (model_id, provider_id, upstream_model, quantization, context_length, max_output, "
	" prompt_uusd_per_mtok, completion_uusd_per_mtok, cost_prompt_uusd_per_mtok, "
	" cost_completion_uusd_per_mtok, supported_parameters, status, updated_at) "
	"SELECT model_id, provider_id, upstream_model, quantization, context_length, max_output, prompt, "
	" completion, cost_prompt, cost_completion, "
	" CASE WHEN jsonb_typeof(supported_parameters) = 'array' "
	"  THEN ARRAY(SELECT jsonb_array_elements_text(supported_parameters)) END, status, now() "
	"FROM jsonb_to_recordset($1::jsonb -> 'endpoints') AS x(model_id text, provider_id text, "
	" upstream_model text, quantization text, context_length int, max_output int, prompt bigint, "
	" completion bigint, cost_prompt bigint, cost_completion bigint, supported_parameters jsonb, status text) "
	"ON CONFLICT (model_id, provider_id) DO UPDATE SET upstream_model = excluded.upstream_model, "
	" quantization = excluded.quantization, context_length = excluded.context_length, "
	" max_output = excluded.max_output, prompt_uusd_per_mtok = excluded.prompt_uusd_per_mtok, "
	" completion_uusd_per_mtok = excluded.completion_uusd_per_mtok, "
	" cost_prompt_uusd_per_mtok = excluded.cost_prompt_uusd_per_mtok, "
	" cost_completion_uusd_per_mtok = excluded.cost_completion_uusd_per_mtok, "
	" supported_parameters = excluded.supported_parameters, status = excluded.status, updated_at = now()";
static const char sql_disable[] =
	"WITH f AS (SELECT $1::jsonb AS j), "
	"p AS (UPDATE providers SET status = 'disabled', updated_at = now() WHERE status <> 'disabled' AND id NOT IN "
	" (SELECT x->>'id' FROM f, jsonb_array_elements(j -> 'providers') x) RETURNING 1), "
	"m AS (UPDATE models SET status = 'disabled', updated_at = now() WHERE status <> 'disabled' AND id NOT IN "
	" (SELECT x->>'id' FROM f, jsonb_array_elements(j -> 'models') x) RETURNING 1), "
	"e AS (UPDATE endpoints SET status = 'disabled', updated_at = now() WHERE status <> 'disabled' AND "
	" (model_id, provider_id) NOT IN (SELECT x->>'model_id', x->>'provider_id' FROM f, "
	" jsonb_array_elements(j -> 'endpoints') x) RETURNING 1) "
	"SELECT (SELECT count(*) FROM p) + (SELECT count(*) FROM m) + (SELECT count(*) FROM e)";

static void
cmd_catalog_import(const char *path)
{
	char err[512], *text, *norm;
	const char *params[1];
	PGresult *r;
	cJSON *cat;
	size_t len;

	text = read_file(path, &len);
	if (!(cat = catimport_parse(text, len, NULL, NULL, err, sizeof(err))))
		die("%s: %s", path, err);
	free(text);
	norm = cJSON_PrintUnformatted(cat);
	params[0] = norm;
	exec0("BEGIN", 0, NULL);
	exec0(sql_providers, 1, params);
	exec0(sql_models, 1, params);
	exec0(sql_endpoints, 1, params);
	r = q(sql_disable, 1, params);
	printf("disabled %s entries absent from the file\n", PQgetvalue(r, 0, 0));
	PQclear(r);
	r = q("UPDATE catalog_version SET version = version + 1, updated_at = now() WHERE id = 1 "
	      "RETURNING version::text", 0, NULL);
	printf("catalog: %d providers, %d models, %d endpoints (version %s)\n",
	       cJSON_GetArraySize(cJSON_GetObjectItem(cat, "providers")),
	       cJSON_GetArraySize(cJSON_GetObjectItem(cat, "models")),
	       cJSON_GetArraySize(cJSON_GetObjectItem(cat, "endpoints")), PQgetvalue(r, 0, 0));
	PQclear(r);
	exec0("SELECT pg_notify('agora_catalog', (SELECT version::text FROM catalog_version))", 0, NULL);
	exec0("COMMIT", 0, NULL);
	cJSON_free(norm);
	cJSON_Delete(cat);
}

static void
print_price(int64_t uusd)
{
	char buf[64];

	money_format_scaled(uusd, 6, buf, sizeof(buf));
	printf(" %10s", buf);
}

static void
cmd_catalog_show(void)
{
	PGresult *r = q("SELECT e.model_id, e.provider_id, e.prompt_uusd_per_mtok::text, "
			"e.completion_uusd_per_mtok::text, e.context_length::text, e.quantization, p.region, "
			"e.status FROM endpoints e JOIN providers p ON p.id = e.provider_id "
			"ORDER BY e.model_id, e.prompt_uusd_per_mtok + e.completion_uusd_per_mtok", 0, NULL);

	printf("%-36s %-14s %10s %10s %9s %-8s %-4s %s\n", "model", "provider", "in $/Mtok",
	       "out $/Mtok", "context", "quant", "reg", "status");
	for (int i = 0; i < PQntuples(r); i++) {
		printf("%-36s %-14s", PQgetvalue(r, i, 0), PQgetvalue(r, i, 1));
		print_price(strtoll(PQgetvalue(r, i, 2), NULL, 10));
		print_price(strtoll(PQgetvalue(r, i, 3), NULL, 10));
		printf(" %9s %-8s %-4s %s\n", PQgetvalue(r, i, 4), PQgetvalue(r, i, 5), PQgetvalue(r, i, 6),
		       PQgetvalue(r, i, 7));
	}
	PQclear(r);
}

/* ---- accounts, credits, keys ---- */

/* The id of an account given by id or name; dies if unknown. */
static char *
account_id(const char *ref)
{
	const char *params[1] = { ref };
	PGresult *r = q("SELECT id::text FROM accounts WHERE name = $1 OR id::text = $1 "
			"ORDER BY (name = $1) DESC LIMIT 1", 1, params);
	char *id;

	if (PQntuples(r) == 0)
		die("no account '%s'", ref);
	id = strdup(PQgetvalue(r, 0, 0));
	PQclear(r);
	return id;
}

static int64_t
parse_usd_or_die(const char *s)
{
	int64_t v;

	if (money_parse_usd(s, &v) < 0)
		die("'%s' is not an amount in USD (up to 9 decimals)", s);
	return v;
}

/* Credits (a negative amount: an adjustment) dated `at` (NULL: now). */
static void
add_credits_at(const char *acct, int64_t nusd, const char *note, const char *at)
{
	char amount[32];
	const char *params[5] = { acct, nusd < 0 ? "adjustment" : "topup", amount, note, at };

	snprintf(amount, sizeof(amount), "%lld", (long long)nusd);
	exec0("INSERT INTO ledger (account_id, kind, amount_nusd, note, created_at) "
	      "VALUES ($1::bigint, $2, $3::bigint, $4, coalesce($5::timestamptz, now()))", 5, params);
	exec0("UPDATE accounts SET balance_nusd = balance_nusd + $2::bigint WHERE id = $1::bigint", 2,
	      (const char *[]){ acct, amount });
	/* Routers drop the account's cached keys at commit, so the new total
	 * credits are used within a round trip (README "Credits"). */
	exec0("SELECT count(pg_notify('agora_keys', encode(hash, 'hex'))) FROM api_keys WHERE account_id = $1::bigint",
	      1, params);
}

static void
add_credits(const char *acct, int64_t nusd, const char *note)
{
	add_credits_at(acct, nusd, note, NULL);
}

static void
print_usd(const char *label, const char *nusd)
{
	char buf[64];

	money_format_usd(strtoll(nusd, NULL, 10), buf, sizeof(buf));
	printf("%s%s USD\n", label, buf);
}

static void
cmd_account_create(const char *name, const char *credits, int if_missing)
{
	const char *params[1] = { name };
	PGresult *r;
	char *id;

	exec0("BEGIN", 0, NULL);
	r = q("INSERT INTO accounts (name) VALUES ($1) ON CONFLICT (name) DO NOTHING RETURNING id::text",
	      1, params);
	if (PQntuples(r) == 0) {
		PQclear(r);
		exec0("ROLLBACK", 0, NULL);
		if (!if_missing)
			die("account '%s' exists", name);
		id = account_id(name);
		printf("%s\n", id);
		free(id);
		return;
	}
	id = strdup(PQgetvalue(r, 0, 0));
	PQclear(r);
	if (credits)
		add_credits(id, parse_usd_or_die(credits), "initial credits");
	exec0("COMMIT", 0, NULL);
	printf("%s\n", id);
	free(id);
}

static void
cmd_account_show(const char *ref)
{
	char *id = account_id(ref);
	const char *params[1] = { id };
	PGresult *r = q("SELECT a.name, a.status, a.created_at::text, "
			"(SELECT coalesce(sum(amount_nusd), 0)::text FROM ledger WHERE account_id = a.id), "
			"(SELECT coalesce(sum(amount_nusd), 0)::text FROM ledger WHERE account_id = a.id AND amount_nusd > 0), "
			"(SELECT coalesce(-sum(amount_nusd), 0)::text FROM ledger WHERE account_id = a.id AND kind = 'usage'), "
			"(SELECT count(*)::text FROM api_keys WHERE account_id = a.id AND revoked_at IS NULL) "
			"FROM accounts a WHERE a.id = $1::bigint", 1, params);

	printf("account %s: %s (%s), created %s\n", id, PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1),
	       PQgetvalue(r, 0, 2));
	print_usd("balance:  ", PQgetvalue(r, 0, 3));
	print_usd("credits:  ", PQgetvalue(r, 0, 4));
	print_usd("usage:    ", PQgetvalue(r, 0, 5));
	printf("keys:     %s active\n", PQgetvalue(r, 0, 6));
	PQclear(r);
	free(id);
}

static void
cmd_account_list(void)
{
	PGresult *r = q("SELECT a.id::text, a.name, a.status, coalesce(sum(l.amount_nusd), 0)::text "
			"FROM accounts a LEFT JOIN ledger l ON l.account_id = a.id GROUP BY a.id ORDER BY a.id",
			0, NULL);
	char buf[64];

	printf("%-6s %-24s %-9s %s\n", "id", "name", "status", "balance USD");
	for (int i = 0; i < PQntuples(r); i++) {
		money_format_usd(strtoll(PQgetvalue(r, i, 3), NULL, 10), buf, sizeof(buf));
		printf("%-6s %-24s %-9s %s\n", PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), PQgetvalue(r, i, 2), buf);
	}
	PQclear(r);
}

static void
cmd_credits_add(const char *ref, const char *usd, const char *note)
{
	char *id = account_id(ref);
	const char *params[1] = { id };
	PGresult *r;

	exec0("BEGIN", 0, NULL);
	add_credits(id, parse_usd_or_die(usd), note ? note : "");
	r = q("SELECT coalesce(sum(amount_nusd), 0)::text FROM ledger WHERE account_id = $1::bigint", 1, params);
	exec0("COMMIT", 0, NULL);
	print_usd("balance: ", PQgetvalue(r, 0, 0));
	PQclear(r);
	free(id);
}

static void
hex(const unsigned char *h, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", h[i]);
}

static void
cmd_key_create(const char *ref, const char *name, const char *limit, int operator_key, const char *rpm,
	       const char *tpm, const char *scopes)
{
	unsigned char hash[KEY_HASH_LEN];
	char key[KEY_LEN + 1], hexhash[2 * KEY_HASH_LEN + 3] = "\\x", prefix[KEY_SHOWN_PREFIX_LEN + 1];
	char lim[32], *id = account_id(ref);
	char scope_arr[80];
	const char *params[9] = { id, hexhash, prefix, name ? name : "", operator_key ? "operator" : "inference",
				  limit ? lim : NULL, rpm, tpm, scopes ? scope_arr : NULL };

	if (limit)
		snprintf(lim, sizeof(lim), "%lld", (long long)parse_usd_or_die(limit));
	if (scopes && !operator_key)
		die("--scopes is for operator keys (--operator)");
	if (scopes && (strlen(scopes) > 60 || strspn(scopes, "keysanalyticsfinance,") != strlen(scopes)))
		die("--scopes: a comma-separated list of keys, analytics, finance");
	snprintf(scope_arr, sizeof(scope_arr), "{%s}", scopes ? scopes : "");
	if (keyhash_generate(key) < 0 ||
	    keyhash_hash(conf.key_secret, strlen(conf.key_secret), key, KEY_LEN, hash) < 0)
		die("cannot generate a key");
	hex(hash, KEY_HASH_LEN, hexhash + 2);
	snprintf(prefix, sizeof(prefix), "%.*s", KEY_SHOWN_PREFIX_LEN, key);
	exec0("INSERT INTO api_keys (account_id, hash, prefix, name, kind, limit_nusd, rpm_limit, tpm_limit, scopes) "
	      "VALUES ($1::bigint, $2::bytea, $3, $4, $5, $6::bigint, $7::integer, $8::bigint, $9::text[])", 9, params);
	printf("%s\n", key);
	fprintf(stderr, "agoractl: this key is shown once; only its hash is stored\n");
	free(id);
}

static void
cmd_key_list(const char *ref)
{
	char *id = account_id(ref), u[64], l[64];
	const char *params[1] = { id };
	PGresult *r = q("SELECT id::text, prefix, name, kind, coalesce(limit_nusd::text, ''), usage_nusd::text, "
			"CASE WHEN revoked_at IS NOT NULL THEN 'revoked' WHEN disabled THEN 'disabled' "
			"ELSE 'active' END, created_at::date::text FROM api_keys WHERE account_id = $1::bigint "
			"ORDER BY id", 1, params);

	printf("%-6s %-18s %-16s %-10s %12s %14s %-9s %s\n", "id", "key", "name", "kind", "limit USD",
	       "usage USD", "state", "created");
	for (int i = 0; i < PQntuples(r); i++) {
		const char *lim = PQgetvalue(r, i, 4);

		money_format_usd(strtoll(PQgetvalue(r, i, 5), NULL, 10), u, sizeof(u));
		if (*lim)
			money_format_usd(strtoll(lim, NULL, 10), l, sizeof(l));
		printf("%-6s %s... %-16s %-10s %12s %14s %-9s %s\n", PQgetvalue(r, i, 0), PQgetvalue(r, i, 1),
		       PQgetvalue(r, i, 2), PQgetvalue(r, i, 3), *lim ? l : "-", u, PQgetvalue(r, i, 6),
		       PQgetvalue(r, i, 7));
	}
	PQclear(r);
	free(id);
}

static void
cmd_key_revoke(const char *ref)
{
	const char *params[1] = { ref };
	PGresult *r;

	exec0("BEGIN", 0, NULL);
	r = q("UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()), disabled = true, updated_at = now() "
	      "WHERE id::text = $1 OR (length($1) >= 12 AND starts_with($1, prefix)) "
	      "RETURNING id::text, encode(hash, 'hex')", 1, params);
	if (PQntuples(r) != 1) {
		int n = PQntuples(r);

		PQclear(r);
		exec0("ROLLBACK", 0, NULL);
		if (n)
			die("'%s' matches %d keys; use the key id", ref, n);
		die("no key '%s'", ref);
	}
	{
		const char *np[1] = { PQgetvalue(r, 0, 1) };

		exec0("SELECT pg_notify('agora_keys', $1)", 1, np);
	}
	exec0("COMMIT", 0, NULL);
	printf("revoked key %s\n", PQgetvalue(r, 0, 0));
	PQclear(r);
}

/* ---- provider credentials (sealed at rest) ---- */

/* Bumps the catalog version and tells every router to reload it. */
static void
catalog_bump(void)
{
	exec0("UPDATE catalog_version SET version = version + 1, updated_at = now() WHERE id = 1", 0, NULL);
	exec0("SELECT pg_notify('agora_catalog', (SELECT version::text FROM catalog_version))", 0, NULL);
}

static void
master_key_or_die(uint8_t key[SBOX_KEY_LEN])
{
	char err[200];
	int have = sbox_key_load(conf.master_key, conf.master_key_file, key, err, sizeof(err));

	if (have < 0)
		die("master_key: %s", err);
	if (!have)
		die("no master_key or master_key_file is configured: provider keys are sealed with it");
}

/* Reads a provider's API key from standard input (never from the command
 * line, where ps would show it), seals it and stores it. */
static void
cmd_provider_set_key(const char *provider)
{
	uint8_t key[SBOX_KEY_LEN];
	char line[SBOX_MAX_PLAIN + 2] = "", *sealed;
	const char *params[2];
	PGresult *r;
	size_t n;

	master_key_or_die(key);
	if (!fgets(line, sizeof(line), stdin) || (n = strcspn(line, "\r\n")) == 0)
		die("provider set-key: give the API key on standard input");
	line[n] = '\0';
	sealed = sbox_seal(key, provider, line, n);
	OPENSSL_cleanse(line, sizeof(line));
	OPENSSL_cleanse(key, sizeof(key));
	if (!sealed)
		die("cannot seal the key");
	params[0] = provider;
	params[1] = sealed;
	exec0("BEGIN", 0, NULL);
	r = q("UPDATE providers SET api_key_sealed = $2, updated_at = now() WHERE id = $1 RETURNING id", 2, params);
	if (PQntuples(r) != 1)
		die("no provider '%s'", provider);
	PQclear(r);
	catalog_bump();
	exec0("COMMIT", 0, NULL);
	printf("provider %s: API key sealed (master key %.8s) and stored\n", provider, sealed + 3);
	free(sealed);
}

static void
cmd_provider_clear_key(const char *provider)
{
	const char *params[1] = { provider };
	PGresult *r;

	exec0("BEGIN", 0, NULL);
	r = q("UPDATE providers SET api_key_sealed = NULL, updated_at = now() WHERE id = $1 RETURNING id", 1, params);
	if (PQntuples(r) != 1)
		die("no provider '%s'", provider);
	PQclear(r);
	catalog_bump();
	exec0("COMMIT", 0, NULL);
	printf("provider %s: sealed API key removed (the router uses api_key_env)\n", provider);
}

/* Re-seals every provider key under a new master key, in one transaction:
 * opened with the configured key, sealed with the new one. */
static void
cmd_secrets_rotate(const char *new_file)
{
	uint8_t old[SBOX_KEY_LEN], fresh[SBOX_KEY_LEN];
	char err[200];
	PGresult *r;
	int n;

	master_key_or_die(old);
	if (sbox_key_file(new_file, fresh, err, sizeof(err)) < 0)
		die("new master key: %s", err);
	exec0("BEGIN", 0, NULL);
	r = q("SELECT id, api_key_sealed FROM providers WHERE api_key_sealed IS NOT NULL FOR UPDATE", 0, NULL);
	n = PQntuples(r);
	for (int i = 0; i < n; i++) {
		const char *id = PQgetvalue(r, i, 0);
		char *plain = sbox_open(old, id, PQgetvalue(r, i, 1), err, sizeof(err)), *sealed;
		const char *params[2];

		if (!plain)
			die("provider %s: %s; nothing changed", id, err);
		sealed = sbox_seal(fresh, id, plain, strlen(plain));
		OPENSSL_cleanse(plain, strlen(plain));
		free(plain);
		if (!sealed)
			die("cannot seal; nothing changed");
		params[0] = id;
		params[1] = sealed;
		exec0("UPDATE providers SET api_key_sealed = $2, updated_at = now() WHERE id = $1", 2, params);
		free(sealed);
	}
	PQclear(r);
	catalog_bump();
	exec0("COMMIT", 0, NULL);
	OPENSSL_cleanse(old, sizeof(old));
	OPENSSL_cleanse(fresh, sizeof(fresh));
	printf("re-sealed %d provider keys under the new master key; point master_key_file at it and "
	       "restart the routers now (until then they cannot open the keys)\n", n);
}

/* ---- routing policy ---- */

static const char *opt(int argc, char **argv, int from, const char *name);

/* "a,b,c" as a JSON array of strings under name. */
static void
policy_list(cJSON *o, const char *name, const char *csv)
{
	cJSON *a;
	char *copy, *tok, *save = NULL;

	if (!csv)
		return;
	if (!*csv)
		die("--%s needs a comma-separated list", name);
	a = cJSON_AddArrayToObject(o, name);
	copy = strdup(csv);
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
		if (*tok)
			cJSON_AddItemToArray(a, cJSON_CreateString(tok));
	free(copy);
}

/* USD per million tokens as integer uusd per Mtok. */
static void
policy_price(cJSON *o, const char *name, const char *usd)
{
	int64_t nusd;

	if (!usd)
		return;
	if (money_parse_usd(usd, &nusd) < 0 || nusd < 0 || nusd % 1000)
		die("'%s' is not a price in USD per million tokens (up to 6 decimals)", usd);
	cJSON_AddNumberToObject(o, name, (double)(nusd / 1000));
}

/* The policy object from the command line's flags (or --json). */
static cJSON *
policy_from_args(int argc, char **argv, int from)
{
	const char *json = opt(argc, argv, from, "--json"), *dp = opt(argc, argv, from, "--data-policy");
	cJSON *o;
	char msg[200];

	if (json) {
		if (!(o = cJSON_Parse(json)))
			die("--json: not JSON");
	} else {
		o = cJSON_CreateObject();
		policy_list(o, "providers_allow", opt(argc, argv, from, "--allow-providers"));
		policy_list(o, "providers_deny", opt(argc, argv, from, "--deny-providers"));
		policy_list(o, "regions", opt(argc, argv, from, "--regions"));
		policy_list(o, "origins", opt(argc, argv, from, "--origins"));
		policy_list(o, "licenses", opt(argc, argv, from, "--licenses"));
		if (opt(argc, argv, from, "--open-weights-only"))
			cJSON_AddTrueToObject(o, "open_weights_only");
		policy_price(o, "max_prompt_uusd_per_mtok", opt(argc, argv, from, "--max-prompt"));
		policy_price(o, "max_completion_uusd_per_mtok", opt(argc, argv, from, "--max-completion"));
		if (dp)
			cJSON_AddStringToObject(o, "data_policy", dp);
	}
	if (policy_validate(o, msg, sizeof(msg)) < 0)
		die("%s", msg);
	return o;
}

/* Sets (json non-NULL) or clears the policy of an account, or of one of its
 * keys; every router drops its cached keys (NOTIFY agora_keys). */
static void
policy_store(const char *ref, const char *key, const char *json)
{
	char *acct = account_id(ref);
	const char *params[3] = { acct, json, key };
	PGresult *r;

	exec0("BEGIN", 0, NULL);
	if (key)
		r = q("UPDATE api_keys SET policy = $2::jsonb, updated_at = now() "
		      "WHERE account_id = $1::bigint AND id::text = $3 RETURNING id::text", 3, params);
	else
		r = q("UPDATE accounts SET policy = $2::jsonb WHERE id = $1::bigint RETURNING id::text", 2, params);
	if (PQntuples(r) != 1)
		die("no key '%s' in account '%s'", key ? key : "", ref);
	PQclear(r);
	exec0("SELECT pg_notify('agora_keys', 'policy')", 0, NULL);
	exec0("COMMIT", 0, NULL);
	printf("%s %s%s: %s\n", json ? "policy set for" : "policy cleared for", key ? "key " : "account ",
	       key ? key : ref, json ? json : "every endpoint allowed");
	free(acct);
}

static void
cmd_policy_set(const char *ref, int argc, char **argv)
{
	cJSON *o = policy_from_args(argc, argv, 3);
	char *s = cJSON_PrintUnformatted(o);

	if (!o->child)
		die("policy set: say what to restrict (see usage), or use policy clear");
	policy_store(ref, opt(argc, argv, 3, "--key"), s);
	cJSON_free(s);
	cJSON_Delete(o);
}

static void
cmd_policy_show(const char *ref)
{
	char *acct = account_id(ref);
	const char *params[1] = { acct };
	PGresult *r = q("SELECT 'account', coalesce(policy::text, '(none)') FROM accounts WHERE id = $1::bigint "
			"UNION ALL SELECT 'key ' || id::text || ' (' || prefix || ')', policy::text FROM api_keys "
			"WHERE account_id = $1::bigint AND policy IS NOT NULL", 1, params);

	for (int i = 0; i < PQntuples(r); i++)
		printf("%-28s %s\n", PQgetvalue(r, i, 0), PQgetvalue(r, i, 1));
	PQclear(r);
	free(acct);
}

/* ---- statements ---- */

static void
usd_col(const char *nusd, char *buf, size_t len)
{
	money_format_usd(strtoll(nusd, NULL, 10), buf, len);
}

/* An account's statement for [from, to) (UTC dates): opening balance, credits
 * and usage per day, model and provider, closing balance; and a check that
 * the rollups agree with the ledger over the period. */
static void
cmd_statement(const char *ref, const char *from, const char *to)
{
	char *id = account_id(ref), a[64], b[64], c[64];
	const char *params[3] = { id, from, to };
	PGresult *r;

	r = q("SELECT (SELECT coalesce(sum(amount_nusd), 0) FROM ledger WHERE account_id = $1::bigint "
	      " AND created_at < $2::date)::text, "
	      "(SELECT coalesce(sum(amount_nusd), 0) FROM ledger WHERE account_id = $1::bigint "
	      " AND created_at < $3::date)::text, "
	      "(SELECT coalesce(-sum(amount_nusd), 0) FROM ledger WHERE account_id = $1::bigint AND kind = 'usage' "
	      " AND created_at >= $2::date AND created_at < $3::date)::text, "
	      "(SELECT coalesce(sum(cost_nusd), 0) FROM usage_daily WHERE account_id = $1::bigint "
	      " AND day >= $2::date AND day < $3::date)::text", 3, params);
	usd_col(PQgetvalue(r, 0, 0), a, sizeof(a));
	usd_col(PQgetvalue(r, 0, 1), b, sizeof(b));
	printf("statement for account %s (%s), %s to %s (UTC, end excluded)\n", id, ref, from, to);
	printf("opening balance: %s USD\n\n", a);
	if (strcmp(PQgetvalue(r, 0, 2), PQgetvalue(r, 0, 3)) != 0)
		fprintf(stderr, "agoractl: WARNING: ledger usage %s nusd != rollups %s nusd over the period\n",
			PQgetvalue(r, 0, 2), PQgetvalue(r, 0, 3));
	PQclear(r);
	r = q("SELECT created_at::date::text, kind, amount_nusd::text, note FROM ledger "
	      "WHERE account_id = $1::bigint AND kind <> 'usage' AND created_at >= $2::date AND created_at < $3::date "
	      "ORDER BY created_at", 3, params);
	printf("%-10s  %-12s %16s  %s\n", "date", "credits", "USD", "note");
	for (int i = 0; i < PQntuples(r); i++) {
		usd_col(PQgetvalue(r, i, 2), c, sizeof(c));
		printf("%-10s  %-12s %16s  %s\n", PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), c, PQgetvalue(r, i, 3));
	}
	PQclear(r);
	r = q("SELECT day::text, model_id, provider_id, sum(requests)::text, sum(prompt_tokens)::text, "
	      "sum(completion_tokens)::text, sum(cost_nusd)::text FROM usage_daily "
	      "WHERE account_id = $1::bigint AND day >= $2::date AND day < $3::date "
	      "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3", 3, params);
	printf("\n%-10s  %-32s %-12s %8s %12s %12s %14s\n", "date", "model", "provider", "requests", "prompt tok",
	       "output tok", "USD");
	for (int i = 0; i < PQntuples(r); i++) {
		usd_col(PQgetvalue(r, i, 6), c, sizeof(c));
		printf("%-10s  %-32s %-12s %8s %12s %12s %14s\n", PQgetvalue(r, i, 0), PQgetvalue(r, i, 1),
		       PQgetvalue(r, i, 2), PQgetvalue(r, i, 3), PQgetvalue(r, i, 4), PQgetvalue(r, i, 5), c);
	}
	PQclear(r);
	printf("\nclosing balance: %s USD\n", b);
	free(id);
}

/* ---- main ---- */

static void
usage(void)
{
	fprintf(stderr,
		"usage: agoractl [-c CONFIG] [--migrations DIR] COMMAND\n"
		"  migrate\n"
		"  catalog import FILE | catalog show\n"
		"  account create NAME [--credits USD] [--if-missing] | account show ACCOUNT | account list\n"
		"  credits add ACCOUNT USD [--note TEXT]\n"
		"  statement ACCOUNT --from YYYY-MM-DD --to YYYY-MM-DD\n"
		"  key create ACCOUNT [--name NAME] [--limit USD] [--rpm N] [--tpm N] [--operator [--scopes S,...]]\n"
		"  key list ACCOUNT\n"
		"  key revoke KEY_ID_OR_PREFIX\n"
		"  policy set ACCOUNT [--key KEY_ID] [--allow-providers A,B] [--deny-providers A,B]\n"
		"      [--regions R,S] [--origins O,P] [--licenses L,M] [--open-weights-only]\n"
		"      [--max-prompt USD_PER_MTOK] [--max-completion USD_PER_MTOK]\n"
		"      [--data-policy any|no_training|zdr] | [--json OBJECT]\n"
		"  policy show ACCOUNT | policy clear ACCOUNT [--key KEY_ID]\n"
		"  simulate [--days N] [--seed S] [--rate EVENTS_PER_HOUR] [--end YYYY-MM-DD] [--wait SECONDS] [--force]\n"
		"  reconcile import PROVIDER FILE [--label LABEL]\n"
		"  reconcile report PROVIDER [--from YYYY-MM-DD] [--to YYYY-MM-DD] [--tolerance-pct P]\n"
		"      [--tolerance-tokens N] [--tolerance-amount USD]\n"
		"  partitions list\n"
		"  partitions retain --keep-months N --archive-dir DIR [--dry-run] [--keep-detached]\n"
		"  provider set-key PROVIDER  (the API key on standard input) | provider clear-key PROVIDER\n"
		"  secrets rotate --new-key-file FILE\n"
		"  config dump\n");
	exit(2);
}

/* The value of --name in argv[from..], or NULL; flags without values too. */
static const char *
opt(int argc, char **argv, int from, const char *name)
{
	return args_opt(argc, argv, from, name);
}

int
main(int argc, char **argv)
{
	const char *path = getenv("AGORA_CONF");
	char err[512];
	int i = 1;

	if (getenv("AGORA_MIGRATIONS_DIR"))
		migrations_dir = getenv("AGORA_MIGRATIONS_DIR");
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "-c") == 0 && i + 1 < argc)
			path = argv[++i];
		else if (strcmp(argv[i], "--migrations") == 0 && i + 1 < argc)
			migrations_dir = argv[++i];
		else
			usage();
	}
	if (i >= argc)
		usage();
	if (conf_load(&conf, path, err, sizeof(err)) < 0)
		die("%s", err);
	argc -= i;
	argv += i;
	if (argc == 2 && strcmp(argv[0], "config") == 0 && strcmp(argv[1], "dump") == 0) {
		conf_dump(&conf, stdout);
		return 0;
	}
	connect_db();
	if (argc >= 1 && strcmp(argv[0], "simulate") == 0) {
		int rc = ctl_simulate(db, &conf, add_credits_at, argc, argv);

		if (rc == 2)
			usage();
		PQfinish(db);
		return rc;
	}
	if (argc >= 2 && strcmp(argv[0], "reconcile") == 0) {
		int rc = ctl_reconcile(db, argc, argv);

		if (rc == 2)
			usage();
		PQfinish(db);
		return rc;
	}
	if (argc >= 2 && strcmp(argv[0], "partitions") == 0) {
		int rc = ctl_partitions(db, conf.retention_months, argc, argv);

		if (rc == 2)
			usage();
		PQfinish(db);
		return rc;
	}
	if (argc == 1 && strcmp(argv[0], "migrate") == 0)
		cmd_migrate();
	else if (argc == 3 && strcmp(argv[0], "catalog") == 0 && strcmp(argv[1], "import") == 0)
		cmd_catalog_import(argv[2]);
	else if (argc == 2 && strcmp(argv[0], "catalog") == 0 && strcmp(argv[1], "show") == 0)
		cmd_catalog_show();
	else if (argc >= 3 && strcmp(argv[0], "account") == 0 && strcmp(argv[1], "create") == 0)
		cmd_account_create(argv[2], opt(argc, argv, 3, "--credits"), opt(argc, argv, 3, "--if-missing") != NULL);
	else if (argc == 3 && strcmp(argv[0], "account") == 0 && strcmp(argv[1], "show") == 0)
		cmd_account_show(argv[2]);
	else if (argc == 2 && strcmp(argv[0], "account") == 0 && strcmp(argv[1], "list") == 0)
		cmd_account_list();
	else if (argc >= 4 && strcmp(argv[0], "credits") == 0 && strcmp(argv[1], "add") == 0)
		cmd_credits_add(argv[2], argv[3], opt(argc, argv, 4, "--note"));
	else if (argc >= 6 && strcmp(argv[0], "statement") == 0 && opt(argc, argv, 2, "--from") &&
		 opt(argc, argv, 2, "--to"))
		cmd_statement(argv[1], opt(argc, argv, 2, "--from"), opt(argc, argv, 2, "--to"));
	else if (argc >= 3 && strcmp(argv[0], "key") == 0 && strcmp(argv[1], "create") == 0)
		cmd_key_create(argv[2], opt(argc, argv, 3, "--name"), opt(argc, argv, 3, "--limit"),
			       opt(argc, argv, 3, "--operator") != NULL, opt(argc, argv, 3, "--rpm"),
			       opt(argc, argv, 3, "--tpm"), opt(argc, argv, 3, "--scopes"));
	else if (argc == 3 && strcmp(argv[0], "key") == 0 && strcmp(argv[1], "list") == 0)
		cmd_key_list(argv[2]);
	else if (argc == 3 && strcmp(argv[0], "key") == 0 && strcmp(argv[1], "revoke") == 0)
		cmd_key_revoke(argv[2]);
	else if (argc == 3 && strcmp(argv[0], "provider") == 0 && strcmp(argv[1], "set-key") == 0)
		cmd_provider_set_key(argv[2]);
	else if (argc == 3 && strcmp(argv[0], "provider") == 0 && strcmp(argv[1], "clear-key") == 0)
		cmd_provider_clear_key(argv[2]);
	else if (argc == 4 && strcmp(argv[0], "secrets") == 0 && strcmp(argv[1], "rotate") == 0 &&
		 strcmp(argv[2], "--new-key-file") == 0)
		cmd_secrets_rotate(argv[3]);
	else if (argc >= 4 && strcmp(argv[0], "policy") == 0 && strcmp(argv[1], "set") == 0)
		cmd_policy_set(argv[2], argc, argv);
	else if (argc == 3 && strcmp(argv[0], "policy") == 0 && strcmp(argv[1], "show") == 0)
		cmd_policy_show(argv[2]);
	else if (argc >= 3 && strcmp(argv[0], "policy") == 0 && strcmp(argv[1], "clear") == 0)
		policy_store(argv[2], opt(argc, argv, 3, "--key"), NULL);
	else
		usage();
	PQfinish(db);
	return 0;
}
