/*
 * areq: answering, parameters, queries and result conversion for the
 * analytics API (see ana.h).
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ana.h"
#include "log.h"
#include "money.h"
#include "qparam.h"

/* ---- answering ---- */

static void
areq_free(struct areq *x)
{
	if (x->priv_free)
		x->priv_free(x->priv);
	else
		free(x->priv);
	free(x);
}

void
ana_reply_raw_json(struct areq *x, cJSON *root)
{
	if (!root) {
		ana_fail(x, 503, "out of memory");
		return;
	}
	httpd_reply_json(x->req, 200, root);
	cJSON_Delete(root);
	areq_free(x);
}

void
ana_reply_json(struct areq *x, cJSON *data)
{
	cJSON *root = cJSON_CreateObject();

	if (!root || !data) {
		cJSON_Delete(root);
		cJSON_Delete(data);
		ana_fail(x, 503, "out of memory");
		return;
	}
	cJSON_AddItemToObject(root, "data", data);
	ana_reply_raw_json(x, root);
}

void
ana_reply_csv(struct areq *x, struct csv *c)
{
	char disp[128];
	const char *d;
	size_t len;

	if (!(d = csv_data(c, &len))) {
		csv_free(c);
		ana_fail(x, 503, "out of memory");
		return;
	}
	snprintf(disp, sizeof(disp), "attachment; filename=\"agora-%s-%s-%s.csv\"", x->name, x->from_s, x->to_s);
	httpd_add_header(x->req, "Content-Disposition", disp);
	httpd_reply(x->req, 200, "text/csv; charset=utf-8; header=present", d, len);
	x->a->st.csv_answers++;
	csv_free(c);
	areq_free(x);
}

void
ana_fail(struct areq *x, int status, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (status == 400)
		x->a->st.bad_requests++;
	httpd_reply_error(x->req, status, "%s", msg);
	areq_free(x);
}

/* ---- parameters ---- */

int
ana_param(struct areq *x, const char *name, char *buf, size_t len)
{
	int r = qparam_get(httpd_req_query(x->req), name, buf, len);

	if (r < 0)
		ana_fail(x, 400, "parameter '%s': malformed or too long", name);
	return r;
}

static int
param_date(struct areq *x, const char *name, int32_t dflt, int32_t *out)
{
	char buf[32];
	int r = ana_param(x, name, buf, sizeof(buf));

	if (r < 0)
		return -1;
	if (r == 0) {
		*out = dflt;
		return 0;
	}
	if (days_parse(buf, out) < 0) {
		ana_fail(x, 400, "parameter '%s': expected a date YYYY-MM-DD (UTC)", name);
		return -1;
	}
	return 0;
}

int
ana_common(struct areq *x)
{
	static const char *const formats[] = { "json", "csv", NULL };
	int32_t today = days_today();
	int f;

	if ((f = ana_param_enum(x, "format", formats, 0)) < 0)
		return -1;
	x->csv = f == 1;
	if (param_date(x, "to", today + 1, &x->to) < 0 ||
	    param_date(x, "from", x->to - ANA_DEFAULT_DAYS, &x->from) < 0)
		return -1;
	if (x->from >= x->to) {
		ana_fail(x, 400, "parameter 'from': must be before 'to' (to is excluded)");
		return -1;
	}
	if (x->to - x->from > ANA_MAX_DAYS) {
		ana_fail(x, 400, "parameter 'from': the range is at most %d days", ANA_MAX_DAYS);
		return -1;
	}
	days_format(x->from, x->from_s);
	days_format(x->to, x->to_s);
	return 0;
}

int
ana_param_enum(struct areq *x, const char *name, const char *const *names, int dflt)
{
	char buf[64], list[256] = "";
	int r = ana_param(x, name, buf, sizeof(buf));

	if (r <= 0)
		return r < 0 ? -1 : dflt;
	for (int i = 0; names[i]; i++) {
		if (strcmp(buf, names[i]) == 0)
			return i;
		snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", i ? "|" : "", names[i]);
	}
	ana_fail(x, 400, "parameter '%s': expected %s", name, list);
	return -1;
}

int
ana_param_int(struct areq *x, const char *name, int64_t min, int64_t max, int64_t dflt, int64_t *out)
{
	char buf[32];
	int r = ana_param(x, name, buf, sizeof(buf));

	if (r < 0)
		return -1;
	if (r == 0) {
		*out = dflt;
		return 0;
	}
	if (qparam_int(buf, min, max, out) < 0) {
		ana_fail(x, 400, "parameter '%s': expected an integer from %" PRId64 " to %" PRId64, name, min, max);
		return -1;
	}
	return 0;
}

int
ana_param_bool(struct areq *x, const char *name)
{
	static const char *const names[] = { "false", "true", NULL };

	return ana_param_enum(x, name, names, -2);
}

int
ana_param_account(struct areq *x, int required, int64_t *out)
{
	int64_t v = 0;
	char buf[32];
	int r = ana_param(x, "account", buf, sizeof(buf));

	if (r < 0)
		return -1;
	if (r > 0 && qparam_int(buf, 1, INT64_MAX, &v) < 0) {
		ana_fail(x, 400, "parameter 'account': expected an account id");
		return -1;
	}
	if (!x->operator_key) {
		if (r > 0 && v != x->account_id) {
			x->a->st.auth_failures++;
			ana_fail(x, 403, "an inference key sees only its own account (%" PRId64 ")", x->account_id);
			return -1;
		}
		*out = x->account_id;
		return 0;
	}
	if (r == 0 && required) {
		ana_fail(x, 400, "parameter 'account': required (an account id)");
		return -1;
	}
	*out = v;
	return 0;
}

/* ---- queries ---- */

static int
pick_slot(const struct ana *a)
{
	int best = 0;

	for (int i = 1; i < ANA_PG_POOL; i++)
		if (a->inflight[i] < a->inflight[best])
			best = i;
	return best;
}

struct pgc *
ana_pick_pg(struct ana *a)
{
	return a->pg[pick_slot(a)];
}

struct query {
	struct areq *x;
	ana_rows_fn fn;
};

static void
query_cb(PGresult *res, const char *err, void *arg)
{
	struct query *q = arg;
	struct areq *x = q->x;
	ana_rows_fn fn = q->fn;

	free(q);
	x->a->inflight[x->pg_slot]--;
	if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
		x->a->st.query_errors++;
		log_warn("%s: query failed: %s", x->name, res ? PQresultErrorMessage(res) : err);
		ana_fail(x, 503, "database unavailable or too slow; try again or narrow the range");
		return;
	}
	fn(x, res);
}

void
ana_query(struct areq *x, const char *sql, int n, const char *const *params, ana_rows_fn fn)
{
	struct ana *a = x->a;
	struct query *q = malloc(sizeof(*q));
	int slot = pick_slot(a);

	if (!q) {
		ana_fail(x, 503, "out of memory");
		return;
	}
	q->x = x;
	q->fn = fn;
	x->pg_slot = slot;
	if (pgc_query(a->pg[slot], sql, n, params, query_cb, q) < 0) {
		free(q);
		ana_fail(x, 503, "too many queries in flight");
		return;
	}
	a->inflight[slot]++;
	a->st.queries++;
}

/* ---- results ---- */

int64_t
ana_i64(const PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

int
ana_null(const PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col);
}

void
ana_json_i64(cJSON *o, const char *name, int64_t v)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%" PRId64, v);
	cJSON_AddItemToObject(o, name, cJSON_CreateRaw(buf));
}

void
ana_json_int(cJSON *o, const char *name, const PGresult *r, int row, int col)
{
	if (PQgetisnull(r, row, col))
		cJSON_AddNullToObject(o, name);
	else
		ana_json_i64(o, name, ana_i64(r, row, col));
}

void
ana_json_usd(cJSON *o, const char *name, int64_t nusd)
{
	char buf[64], nm[64];

	money_format_usd(nusd, buf, sizeof(buf));
	cJSON_AddStringToObject(o, name, buf);
	snprintf(nm, sizeof(nm), "%s_nusd", name);
	ana_json_i64(o, nm, nusd);
}

void
ana_json_num(cJSON *o, const char *name, const PGresult *r, int row, int col)
{
	if (PQgetisnull(r, row, col))
		cJSON_AddNullToObject(o, name);
	else
		cJSON_AddNumberToObject(o, name, strtod(PQgetvalue(r, row, col), NULL));
}

void
ana_json_str(cJSON *o, const char *name, const PGresult *r, int row, int col)
{
	if (PQgetisnull(r, row, col))
		cJSON_AddNullToObject(o, name);
	else
		cJSON_AddStringToObject(o, name, PQgetvalue(r, row, col));
}

void
ana_csv_cell(struct csv *c, const cJSON *v, int text)
{
	if (!v || cJSON_IsNull(v))
		csv_empty(c);
	else if (cJSON_IsRaw(v))
		csv_raw(c, v->valuestring);
	else if (cJSON_IsString(v) && text)
		csv_text(c, v->valuestring);
	else if (cJSON_IsString(v))
		csv_raw(c, v->valuestring);
	else if (cJSON_IsBool(v))
		csv_raw(c, cJSON_IsTrue(v) ? "true" : "false");
	else if (cJSON_IsNumber(v))
		csv_double(c, v->valuedouble);
	else
		csv_empty(c);
}

void
ana_csv_table(struct csv *c, const cJSON *rows, const struct ana_col *cols, int ncols)
{
	const cJSON *row;

	for (int i = 0; i < ncols; i++)
		csv_raw(c, cols[i].name);
	csv_end_row(c);
	cJSON_ArrayForEach(row, rows) {
		for (int i = 0; i < ncols; i++)
			ana_csv_cell(c, cJSON_GetObjectItemCaseSensitive(row, cols[i].field), cols[i].text);
		csv_end_row(c);
	}
}
