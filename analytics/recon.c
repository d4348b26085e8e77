/*
 * recon: provider-invoice reconciliation over HTTP (see recon.h and
 * README, "Reconciliation").
 *
 *   POST /api/v1/analytics/reconciliation/import?provider=ID&label=L
 *        body: the provider's CSV (at most the server's body limit)
 *   GET  /api/v1/analytics/reconciliation?provider=&from=&to=&tolerance_pct=
 *        &tolerance_tokens=&tolerance_amount=&format=json|csv
 *
 * The CSV is read and checked on the loop (bounded by the body limit), then
 * imported by one statement through pgc; the report is one statement too.
 * The loop never waits on PostgreSQL.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "csv.h"
#include "log.h"
#include "money.h"
#include "qparam.h"
#include "recon.h"
#include "reconcile.h"

#define RECON_PATH "/api/v1/analytics/reconciliation"

struct report_ctx {
	struct httpd_req *req;
	struct reconcile_query q;
	int csv;
};

/* Reads parameter `name` of the request's query into buf ("" when absent).
 * Answers 400 and returns -1 when it is malformed or too long. */
static int
param(struct httpd_req *req, const char *name, char *buf, size_t len)
{
	int rc = qparam_get(httpd_req_query(req), name, buf, len);

	if (rc < 0) {
		httpd_reply_error(req, 400, "bad or over-long query parameter '%s'", name);
		return -1;
	}
	if (rc == 0)
		buf[0] = '\0';
	return 0;
}

/* A failed statement: the file's or the caller's fault (400), or ours. */
static void
reply_db_error(struct httpd_req *req, PGresult *res, const char *err)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

	if (state && strcmp(state, RECONCILE_USER_ERROR) == 0) {
		httpd_reply_error(req, 400, "%s", PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY));
		return;
	}
	log_error("recon: %s", res ? PQresultErrorMessage(res) : err);
	httpd_reply_error(req, 503, "database unavailable");
}

/* ---- import ---- */

static void
add_raw(cJSON *o, const char *name, const char *digits)
{
	cJSON_AddItemToObject(o, name, cJSON_CreateRaw(digits));
}

/* An integer, exactly (cJSON's numbers are doubles). */
static void
add_i64(cJSON *o, const char *name, int64_t v)
{
	char buf[24];

	snprintf(buf, sizeof(buf), "%" PRId64, v);
	add_raw(o, name, buf);
}

static void
add_usd(cJSON *o, const char *name, const char *nusd)
{
	char usd[48];

	money_format_usd(strtoll(nusd, NULL, 10), usd, sizeof(usd));
	cJSON_AddStringToObject(o, name, usd);
}

static void
import_cb(PGresult *res, const char *err, void *arg)
{
	struct httpd_req *req = arg;
	cJSON *root, *d;

	if (!res || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		reply_db_error(req, res, err ? err : "no import row");
		return;
	}
	root = cJSON_CreateObject();
	d = cJSON_AddObjectToObject(root, "data");
	add_raw(d, "import_id", PQgetvalue(res, 0, 0));
	cJSON_AddStringToObject(d, "provider", PQgetvalue(res, 0, 1));
	add_raw(d, "rows", PQgetvalue(res, 0, 2));
	cJSON_AddStringToObject(d, "first_date", PQgetvalue(res, 0, 3));
	cJSON_AddStringToObject(d, "last_date", PQgetvalue(res, 0, 4));
	add_raw(d, "input_tokens", PQgetvalue(res, 0, 5));
	add_raw(d, "output_tokens", PQgetvalue(res, 0, 6));
	add_usd(d, "amount", PQgetvalue(res, 0, 7));
	add_raw(d, "amount_nusd", PQgetvalue(res, 0, 7));
	add_raw(d, "replaced_rows", PQgetvalue(res, 0, 8));
	log_info("recon: import %s: %s rows of provider %s, %s to %s", PQgetvalue(res, 0, 0),
		 PQgetvalue(res, 0, 2), PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 3), PQgetvalue(res, 0, 4));
	httpd_reply_json(req, 200, root);
	cJSON_Delete(root);
}

static void
handle_import(struct pgc *pg, struct httpd_req *req)
{
	char provider[65], label[201], err[256];
	struct reconcile_totals t;
	const char *params[3], *body;
	char *rows = NULL;
	size_t len;

	if (param(req, "provider", provider, sizeof(provider)) < 0 || param(req, "label", label, sizeof(label)) < 0)
		return;
	body = httpd_req_body(req, &len);
	if (!provider[0]) {
		httpd_reply_error(req, 400, "the provider parameter is required (?provider=ID)");
	} else if (!body || len == 0) {
		httpd_reply_error(req, 400, "empty body: send the CSV file as the request body (text/csv)");
	} else if (reconcile_parse_csv(body, len, &rows, &t, err, sizeof(err)) < 0) {
		httpd_reply_error(req, 400, "%s", err);
	} else {
		params[0] = provider;
		params[1] = label;
		params[2] = rows;
		if (pgc_query(pg, reconcile_import_sql, 3, params, import_cb, req) < 0)
			httpd_reply_error(req, 503, "too many queries in flight");
	}
	free(rows);
}

/* ---- report ---- */

static cJSON *
side_json(int present, const int64_t v[3])
{
	char usd[48];
	cJSON *o;

	if (!present)
		return cJSON_CreateNull();
	o = cJSON_CreateObject();
	add_i64(o, "input_tokens", v[0]);
	add_i64(o, "output_tokens", v[1]);
	money_format_usd(v[2], usd, sizeof(usd));
	cJSON_AddStringToObject(o, "amount", usd);
	add_i64(o, "amount_nusd", v[2]);
	return o;
}

static cJSON *
row_json(const struct reconcile_row *r)
{
	cJSON *o = cJSON_CreateObject();

	cJSON_AddStringToObject(o, "date", r->day);
	cJSON_AddStringToObject(o, "provider", r->provider);
	cJSON_AddStringToObject(o, "model", r->model);
	cJSON_AddStringToObject(o, "status", reconcile_status_names[r->status]);
	cJSON_AddItemToObject(o, "ours", side_json(r->has_ours, r->ours));
	cJSON_AddItemToObject(o, "theirs", side_json(r->has_theirs, r->theirs));
	cJSON_AddItemToObject(o, "diff", side_json(1, r->diff));
	return o;
}

static cJSON *
summary_json(const struct reconcile_summary *s)
{
	cJSON *o = cJSON_CreateObject();
	char usd[48];

	for (int i = 0; i < RS_NSTATUS; i++)
		cJSON_AddNumberToObject(o, reconcile_status_names[i], (double)s->count[i]);
	money_format_usd(s->ours_nusd, usd, sizeof(usd));
	cJSON_AddStringToObject(o, "ours_amount", usd);
	add_i64(o, "ours_amount_nusd", s->ours_nusd);
	money_format_usd(s->theirs_nusd, usd, sizeof(usd));
	cJSON_AddStringToObject(o, "theirs_amount", usd);
	add_i64(o, "theirs_amount_nusd", s->theirs_nusd);
	money_format_usd(s->theirs_nusd - s->ours_nusd, usd, sizeof(usd));
	cJSON_AddStringToObject(o, "diff_amount", usd);
	add_i64(o, "diff_amount_nusd", s->theirs_nusd - s->ours_nusd);
	return o;
}

static cJSON *
query_json(const struct reconcile_query *q)
{
	cJSON *o = cJSON_CreateObject(), *tol;
	char usd[48];

	if (q->provider[0])
		cJSON_AddStringToObject(o, "provider", q->provider);
	else
		cJSON_AddNullToObject(o, "provider");
	cJSON_AddStringToObject(o, "from", q->from);
	cJSON_AddStringToObject(o, "to", q->to);
	tol = cJSON_AddObjectToObject(o, "tolerance");
	cJSON_AddStringToObject(tol, "pct", q->pct);
	add_raw(tol, "tokens", q->tokens);
	money_format_usd(strtoll(q->amount_nusd, NULL, 10), usd, sizeof(usd));
	cJSON_AddStringToObject(tol, "amount", usd);
	return o;
}

static void
reply_report_json(struct report_ctx *c, PGresult *res)
{
	struct reconcile_summary s = { { 0 }, 0, 0 };
	struct reconcile_row r;
	cJSON *root = cJSON_CreateObject(), *d, *rows;

	d = cJSON_AddObjectToObject(root, "data");
	cJSON_AddItemToObject(d, "query", query_json(&c->q));
	rows = cJSON_AddArrayToObject(d, "rows");
	for (int i = 0; i < PQntuples(res); i++) {
		reconcile_row_get(res, i, &r, &s);
		cJSON_AddItemToArray(rows, row_json(&r));
	}
	cJSON_AddItemToObject(d, "summary", summary_json(&s));
	httpd_reply_json(c->req, 200, root);
	cJSON_Delete(root);
}

static void
csv_side(struct csv *w, int present, const int64_t v[3])
{
	if (!present) {
		csv_empty(w);
		csv_empty(w);
		csv_empty(w);
		return;
	}
	csv_i64(w, v[0]);
	csv_i64(w, v[1]);
	csv_usd(w, v[2]);
}

static void
reply_report_csv(struct report_ctx *c, PGresult *res)
{
	static const char *const cols[] = {
		"date", "provider", "model", "status", "ours_input_tokens", "ours_output_tokens", "ours_amount",
		"theirs_input_tokens", "theirs_output_tokens", "theirs_amount", "diff_input_tokens",
		"diff_output_tokens", "diff_amount", NULL
	};
	struct reconcile_row r;
	struct csv w;
	const char *data;
	char disp[96];
	size_t len;

	csv_init(&w);
	csv_header(&w, cols);
	for (int i = 0; i < PQntuples(res); i++) {
		reconcile_row_get(res, i, &r, NULL);
		csv_raw(&w, r.day);
		csv_text(&w, r.provider);
		csv_text(&w, r.model);
		csv_raw(&w, reconcile_status_names[r.status]);
		csv_side(&w, r.has_ours, r.ours);
		csv_side(&w, r.has_theirs, r.theirs);
		csv_side(&w, 1, r.diff);
		csv_end_row(&w);
	}
	if (!(data = csv_data(&w, &len))) {
		httpd_reply_error(c->req, 503, "out of memory");
	} else {
		snprintf(disp, sizeof(disp), "attachment; filename=\"reconciliation-%s-%s.csv\"", c->q.from, c->q.to);
		httpd_add_header(c->req, "Content-Disposition", disp);
		httpd_reply(c->req, 200, "text/csv; charset=utf-8", data, len);
	}
	csv_free(&w);
}

static void
report_cb(PGresult *res, const char *err, void *arg)
{
	struct report_ctx *c = arg;

	if (!res || PQresultStatus(res) != PGRES_TUPLES_OK)
		reply_db_error(c->req, res, err);
	else if (PQntuples(res) > RECONCILE_MAX_REPORT_ROWS)
		httpd_reply_error(c->req, 400, "more than %d rows: narrow the dates or name a provider",
				  RECONCILE_MAX_REPORT_ROWS);
	else if (c->csv)
		reply_report_csv(c, res);
	else
		reply_report_json(c, res);
	free(c);
}

static void
handle_report(struct pgc *pg, struct httpd_req *req)
{
	char provider[80], from[16], to[16], pct[48], tokens[32], amount[48], format[8], err[256];
	const char *params[7];
	struct report_ctx *c;

	if (param(req, "provider", provider, sizeof(provider)) < 0 || param(req, "from", from, sizeof(from)) < 0 ||
	    param(req, "to", to, sizeof(to)) < 0 || param(req, "tolerance_pct", pct, sizeof(pct)) < 0 ||
	    param(req, "tolerance_tokens", tokens, sizeof(tokens)) < 0 ||
	    param(req, "tolerance_amount", amount, sizeof(amount)) < 0 || param(req, "format", format, sizeof(format)) < 0)
		return;
	if (format[0] && strcmp(format, "json") != 0 && strcmp(format, "csv") != 0) {
		httpd_reply_error(req, 400, "format must be json or csv");
		return;
	}
	if (!(c = calloc(1, sizeof(*c)))) {
		httpd_reply_error(req, 503, "out of memory");
		return;
	}
	c->req = req;
	c->csv = strcmp(format, "csv") == 0;
	if (reconcile_query_init(&c->q, provider, from, to, pct, tokens, amount, err, sizeof(err)) < 0) {
		httpd_reply_error(req, 400, "%s", err);
		goto fail;
	}
	reconcile_query_params(&c->q, params);
	if (pgc_query(pg, reconcile_report_sql, 7, params, report_cb, c) < 0) {
		httpd_reply_error(req, 503, "too many queries in flight");
		goto fail;
	}
	return;
fail:
	free(c);
}

int
recon_route(struct pgc *pg, struct httpd_req *req, const char *path)
{
	const char *method = httpd_req_method(req);

	if (strcmp(path, RECON_PATH) == 0) {
		if (strcmp(method, "GET") == 0) {
			handle_report(pg, req);
		} else {
			httpd_add_header(req, "Allow", "GET");
			httpd_reply_error(req, 405, "method not allowed: use GET");
		}
		return 1;
	}
	if (strcmp(path, RECON_PATH "/import") == 0) {
		if (strcmp(method, "POST") == 0) {
			handle_import(pg, req);
		} else {
			httpd_add_header(req, "Allow", "POST");
			httpd_reply_error(req, 405, "method not allowed: use POST with the CSV as the body");
		}
		return 1;
	}
	return 0;
}
