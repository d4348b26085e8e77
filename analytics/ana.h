/*
 * ana: what agora-analytics' API modules share: the process state (one
 * PostgreSQL connection for key lookups, a small pool for queries, Redis for
 * the live counters), the request being answered (who asks, which dates,
 * JSON or CSV), and the helpers every endpoint uses to read parameters, run
 * one parameterised query asynchronously and answer.
 *
 * Ownership: an endpoint function receives a struct areq and must complete
 * it exactly once, by ana_reply_json(), ana_reply_csv() or ana_fail(), which
 * answer the HTTP request and free the areq. A query callback receives the
 * areq back and completes it the same way.
 */
#ifndef AGORA_ANA_H
#define AGORA_ANA_H

#include <stdint.h>

#include <cjson/cJSON.h>
#include <libpq-fe.h>

#include "auth.h"
#include "conf.h"
#include "csv.h"
#include "days.h"
#include "httpd.h"
#include "pgc.h"
#include "rds.h"

#define ANA_PG_POOL 3		/* query connections */
#define ANA_MAX_DAYS 731	/* longest date range (two years) */
#define ANA_DEFAULT_DAYS 30
#define ANA_MAX_ROWS 50000	/* rows of one answer (then "truncated": true) */

#define ANA_STATS(X) \
	X(requests_total, "HTTP requests handled") \
	X(api_requests, "analytics API requests authenticated and dispatched") \
	X(auth_failures, "API requests refused for their key (401/403)") \
	X(bad_requests, "API requests refused for their parameters (400)") \
	X(queries, "PostgreSQL queries sent") \
	X(query_errors, "PostgreSQL queries that failed (503)") \
	X(csv_answers, "answers sent as CSV") \
	X(live_reads, "live views read from Redis")

struct ana_stats {
#define X(name, help) long long name;
	ANA_STATS(X)
#undef X
};

struct ana {
	struct event_base *base;
	struct agora_conf conf;
	struct pgc *pg_auth;		/* key lookups, LISTEN agora_keys (pg_listen_dsn) */
	struct pgc *pg[ANA_PG_POOL];	/* queries, least busy first (analytics_pg_dsn) */
	struct pgc *pg_write;		/* reconciliation (pg_dsn: the primary) */
	struct replica_lag *lag;	/* the read side's replication lag */
	int inflight[ANA_PG_POOL];
	struct rds *rd;			/* live counters */
	struct auth *auth;
	struct httpd *httpd;
	int stopping;
	struct ana_stats st;
};

/* One API request being answered. */
struct areq {
	struct ana *a;
	struct httpd_req *req;
	char name[32];			/* endpoint name, for logs and file names */
	int operator_key;
	int64_t account_id;		/* the caller's account */
	int csv;			/* format=csv */
	int32_t from, to;		/* [from, to) as day numbers */
	char from_s[DAYS_DATE_LEN], to_s[DAYS_DATE_LEN];
	int pg_slot;			/* pool connection of the query in flight */
	void *priv;			/* the endpoint's own state (freed with free()) */
	void (*priv_free)(void *);
};

typedef void (*ana_rows_fn)(struct areq *x, PGresult *res);

/* ---- answering (each completes and frees x) ---- */

void ana_reply_json(struct areq *x, cJSON *data);	/* {"data": data}; takes data */
void ana_reply_raw_json(struct areq *x, cJSON *root);	/* root as it is; takes root */
void ana_reply_csv(struct areq *x, struct csv *c);	/* frees the writer too */
void ana_fail(struct areq *x, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- parameters (on failure they answer 400 and return -1) ---- */

/* The query parameter, decoded into buf; 0 absent, 1 present, -1 answered 400. */
int ana_param(struct areq *x, const char *name, char *buf, size_t len);
/* from/to (YYYY-MM-DD, to exclusive, default the last 30 days, today
 * included) and format=json|csv. */
int ana_common(struct areq *x);
/* One of the NULL-terminated names; the default when absent. Returns the
 * index, or -1 (answered 400). */
int ana_param_enum(struct areq *x, const char *name, const char *const *names, int dflt);
/* An integer in [min, max] or the default. */
int ana_param_int(struct areq *x, const char *name, int64_t min, int64_t max, int64_t dflt, int64_t *out);
/* open_weights=true|false: 1, 0, or -2 when absent; -1 answered 400. */
int ana_param_bool(struct areq *x, const char *name);
/* account=: the account the answer is about. Operator keys may name any
 * account (0 when absent and not required); an inference key only its
 * own (forced when absent; another one is 403). -1: answered. */
int ana_param_account(struct areq *x, int required, int64_t *out);

/* ---- queries ---- */

/* Sends sql with text parameters on the least busy pool connection; fn gets
 * a TUPLES_OK result (errors answer 503 and are logged). */
void ana_query(struct areq *x, const char *sql, int n, const char *const *params, ana_rows_fn fn);
/* Picks the least busy pool connection (for recon_route). */
struct pgc *ana_pick_pg(struct ana *a);

/* ---- results into JSON and CSV ---- */

int64_t ana_i64(const PGresult *r, int row, int col);	/* NULL reads 0 */
int ana_null(const PGresult *r, int row, int col);
/* An exact integer (from SQL text) as a JSON number; NULL as null. */
void ana_json_int(cJSON *o, const char *name, const PGresult *r, int row, int col);
void ana_json_i64(cJSON *o, const char *name, int64_t v);
/* An amount: "name": "1.5" (decimal USD) and "name_nusd": 1500000000. */
void ana_json_usd(cJSON *o, const char *name, int64_t nusd);
/* A double, or null when the SQL value is NULL. */
void ana_json_num(cJSON *o, const char *name, const PGresult *r, int row, int col);
void ana_json_str(cJSON *o, const char *name, const PGresult *r, int row, int col);

/* A CSV column taken from each row object: `field` of the object; `text`
 * marks labels (formula guard) as opposed to numbers and amounts. */
struct ana_col {
	const char *name;
	const char *field;
	int text;
};
/* Header plus one line per object of `rows` (an array), as cols say. */
void ana_csv_table(struct csv *c, const cJSON *rows, const struct ana_col *cols, int ncols);
/* One cell from a JSON value (string, raw number, number, bool, null). */
void ana_csv_cell(struct csv *c, const cJSON *v, int text);

/* ---- endpoints ---- */

void api_share(struct areq *x);
void api_share_series(struct areq *x);
void api_providers(struct areq *x);
void api_live(struct areq *x);
void api_spend(struct areq *x);
void api_statement(struct areq *x);
void api_check(struct areq *x);
void api_activity(struct areq *x);

#endif
