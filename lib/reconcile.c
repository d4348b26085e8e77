/*
 * reconcile: provider-invoice reconciliation shared by agoractl and
 * agora-analytics (reconcile.h): the CSV checked row by row, a report's
 * arguments, the SQL and the report rows.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "csvparse.h"
#include "days.h"
#include "jsonw.h"
#include "money.h"
#include "reconcile.h"

enum { COL_DATE, COL_MODEL, COL_IN, COL_OUT, COL_AMOUNT, NCOLS };

static const char *const col_names[NCOLS] = { "date", "model", "input_tokens", "output_tokens",
					       "amount" };

struct reader {
	struct csvp csv;
	int col[NCOLS];			/* field index of each column */
	char *err;
	size_t errlen;
	struct jsonw json;		/* the rows as a JSON array, being written */
	struct reconcile_totals *t;
};

static int __attribute__((format(printf, 3, 4)))
bad(struct reader *r, long line, const char *fmt, ...)
{
	va_list ap;
	int n = snprintf(r->err, r->errlen, "line %ld: ", line);

	if (n < 0 || (size_t)n >= r->errlen)
		return -1;
	va_start(ap, fmt);
	vsnprintf(r->err + n, r->errlen - (size_t)n, fmt, ap);
	va_end(ap);
	return -1;
}

/* Trims spaces and tabs in place (the reader's buffer is ours to change). */
static const char *
trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
		*--e = '\0';
	return s;
}

int
reconcile_parse_count(const char *s, int64_t *out)
{
	int64_t v = 0;
	size_t n = strlen(s);

	if (n == 0 || n > 18)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return 0;
}

static int
read_header(struct reader *r)
{
	char *const *f;
	int n, rc = csvp_next(&r->csv, &f, &n);

	if (rc < 0) {
		snprintf(r->err, r->errlen, "%s", csvp_error(&r->csv));
		return -1;
	}
	if (rc == 0)
		return bad(r, 1, "empty file: a header row (date,model,input_tokens,output_tokens,amount) is required");
	for (int c = 0; c < NCOLS; c++)
		r->col[c] = -1;
	for (int i = 0; i < n; i++) {
		const char *name = trim(f[i]);

		for (int c = 0; c < NCOLS; c++) {
			if (strcasecmp(name, col_names[c]) != 0)
				continue;
			if (r->col[c] >= 0)
				return bad(r, csvp_line(&r->csv), "column '%s' appears twice in the header", col_names[c]);
			r->col[c] = i;
		}
	}
	for (int c = 0; c < NCOLS; c++) {
		if (r->col[c] < 0)
			return bad(r, csvp_line(&r->csv),
				   "the header has no '%s' column (need date, model, input_tokens, output_tokens, amount)",
				   col_names[c]);
	}
	return 0;
}

/* The trimmed, non-empty value of column c, or NULL after an error. */
static const char *
value(struct reader *r, char *const *f, int n, int c)
{
	const char *v;

	if (r->col[c] >= n) {
		bad(r, csvp_line(&r->csv), "missing field '%s' (the row has %d field%s)", col_names[c], n,
		    n == 1 ? "" : "s");
		return NULL;
	}
	v = trim(f[r->col[c]]);
	if (!*v) {
		bad(r, csvp_line(&r->csv), "empty '%s'", col_names[c]);
		return NULL;
	}
	return v;
}

static int
add_total(struct reader *r, int64_t *sum, int64_t v)
{
	if (*sum > INT64_MAX - v)
		return bad(r, csvp_line(&r->csv), "the file's total overflows");
	*sum += v;
	return 0;
}

static void
track_days(struct reconcile_totals *t, const char *day)
{
	if (!t->first_day[0] || strcmp(day, t->first_day) < 0)
		memcpy(t->first_day, day, 11);
	if (!t->last_day[0] || strcmp(day, t->last_day) > 0)
		memcpy(t->last_day, day, 11);
}

/* One row as [line, "date", "model", "in", "out", "nusd"], appended to the
 * array's text: memory stays that text's size. The date and the numbers
 * are digits and dashes, checked before; the model name is escaped. */
static int
add_row_json(struct reader *r, const char *day, const char *model, int64_t in, int64_t out, int64_t nusd)
{
	struct jsonw *w = &r->json;

	jsonw_add(w, w->len ? ",[" : "[[", 2);
	jsonw_int(w, csvp_line(&r->csv));
	JSONW_LIT(w, ",\"");
	jsonw_add(w, day, strlen(day));
	JSONW_LIT(w, "\",");
	jsonw_string(w, model);
	JSONW_LIT(w, ",\"");
	jsonw_int(w, in);
	JSONW_LIT(w, "\",\"");
	jsonw_int(w, out);
	JSONW_LIT(w, "\",\"");
	jsonw_int(w, nusd);
	JSONW_LIT(w, "\"]");
	return w->oom ? bad(r, csvp_line(&r->csv), "out of memory") : 0;
}

static int
read_row(struct reader *r, char *const *f, int n)
{
	const char *v[NCOLS];
	int64_t in, out, nusd;
	int32_t day;
	long line = csvp_line(&r->csv);

	for (int c = 0; c < NCOLS; c++)
		if (!(v[c] = value(r, f, n, c)))
			return -1;
	if (days_parse(v[COL_DATE], &day) < 0)
		return bad(r, line, "bad date '%.40s' (want YYYY-MM-DD)", v[COL_DATE]);
	if (reconcile_parse_count(v[COL_IN], &in) < 0)
		return bad(r, line, "bad input_tokens '%.40s' (want a non-negative integer)", v[COL_IN]);
	if (reconcile_parse_count(v[COL_OUT], &out) < 0)
		return bad(r, line, "bad output_tokens '%.40s' (want a non-negative integer)", v[COL_OUT]);
	if (money_parse_usd(v[COL_AMOUNT], &nusd) < 0 || nusd < 0)
		return bad(r, line, "bad amount '%.40s' (want a non-negative USD decimal, at most 9 decimals)",
			   v[COL_AMOUNT]);
	if (strlen(v[COL_MODEL]) > RECONCILE_MAX_MODEL)
		return bad(r, line, "model name longer than %d bytes", RECONCILE_MAX_MODEL);
	if (add_total(r, &r->t->input_tokens, in) < 0 || add_total(r, &r->t->output_tokens, out) < 0 ||
	    add_total(r, &r->t->amount_nusd, nusd) < 0)
		return -1;
	track_days(r->t, v[COL_DATE]);
	r->t->rows++;
	return add_row_json(r, v[COL_DATE], v[COL_MODEL], in, out, nusd);
}

static int
read_rows(struct reader *r)
{
	char *const *f;
	int n, rc;

	while ((rc = csvp_next(&r->csv, &f, &n)) > 0) {
		if (r->t->rows == RECONCILE_MAX_ROWS)
			return bad(r, csvp_line(&r->csv), "more than %d data rows", RECONCILE_MAX_ROWS);
		if (read_row(r, f, n) < 0)
			return -1;
	}
	if (rc < 0) {
		snprintf(r->err, r->errlen, "%s", csvp_error(&r->csv));
		return -1;
	}
	if (r->t->rows == 0)
		return bad(r, r->csv.line, "no data rows after the header");
	return 0;
}

int
reconcile_parse_csv(const char *data, size_t len, char **rows_json, struct reconcile_totals *t,
		    char *err, size_t errlen)
{
	struct csvp_limits lim = { RECONCILE_MAX_RECORD, 64, RECONCILE_MAX_ROWS + 2 };
	struct reader r = { .err = err, .errlen = errlen, .t = t };

	*rows_json = NULL;
	memset(t, 0, sizeof(*t));
	if (csvp_init(&r.csv, data, len, &lim) < 0) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (read_header(&r) < 0 || read_rows(&r) < 0)
		goto fail;
	JSONW_LIT(&r.json, "]");
	if (r.json.oom) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	csvp_free(&r.csv);
	*rows_json = r.json.p;
	return 0;
fail:
	free(r.json.p);
	csvp_free(&r.csv);
	return -1;
}

/* ---- the SQL ---- */

const char reconcile_import_sql[] =
	"SELECT import_id::text, $1::text, row_count::text, first_day::text, last_day::text, "
	"input_tokens::text, output_tokens::text, amount_nusd::text, replaced_rows::text "
	"FROM agora_recon_import($1::text, $2::text, $3::jsonb)";

const char reconcile_report_sql[] =
	"SELECT day::text, provider_id, model_id, status, ours_input::text, ours_output::text, "
	"ours_nusd::text, theirs_input::text, theirs_output::text, theirs_nusd::text "
	"FROM agora_recon_report(nullif($1::text, ''), $2::date, $3::date, $4::numeric, $5::bigint, "
	"$6::bigint, $7::integer)";

/* ---- a report's arguments ---- */

static int __attribute__((format(printf, 3, 4)))
qerr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

static const char *
or_default(const char *s, const char *def)
{
	return s && *s ? s : def;
}

static int
query_range(struct reconcile_query *q, const char *from, const char *to, char *err, size_t errlen)
{
	int32_t f, t;

	if (to && *to) {
		if (days_parse(to, &t) < 0)
			return qerr(err, errlen, "bad to date '%.40s' (want YYYY-MM-DD)", to);
	} else {
		t = days_today() + 1;
	}
	if (from && *from) {
		if (days_parse(from, &f) < 0)
			return qerr(err, errlen, "bad from date '%.40s' (want YYYY-MM-DD)", from);
	} else {
		f = t - RECONCILE_DEFAULT_DAYS;
	}
	if (f >= t)
		return qerr(err, errlen, "the from date must be before the to date (which is excluded)");
	if (t - f > RECONCILE_MAX_DAYS)
		return qerr(err, errlen, "at most %d days at a time", RECONCILE_MAX_DAYS);
	days_format(f, q->from);
	days_format(t, q->to);
	return 0;
}

static int
query_tolerances(struct reconcile_query *q, const char *pct, const char *tokens, const char *amount,
		 char *err, size_t errlen)
{
	int64_t v;

	pct = or_default(pct, RECONCILE_DEFAULT_PCT);
	if (money_parse_usd(pct, &v) < 0 || v < 0 || v > 100 * INT64_C(1000000000))
		return qerr(err, errlen, "bad tolerance percentage '%.40s' (want a decimal from 0 to 100)", pct);
	money_format_usd(v, q->pct, sizeof(q->pct));
	tokens = or_default(tokens, RECONCILE_DEFAULT_TOKENS);
	if (reconcile_parse_count(tokens, &v) < 0)
		return qerr(err, errlen, "bad token tolerance '%.40s' (want a non-negative integer)", tokens);
	snprintf(q->tokens, sizeof(q->tokens), "%" PRId64, v);
	amount = or_default(amount, RECONCILE_DEFAULT_AMOUNT);
	if (money_parse_usd(amount, &v) < 0 || v < 0)
		return qerr(err, errlen, "bad amount tolerance '%.40s' (want a non-negative USD decimal)", amount);
	snprintf(q->amount_nusd, sizeof(q->amount_nusd), "%" PRId64, v);
	return 0;
}

int
reconcile_query_init(struct reconcile_query *q, const char *provider, const char *from,
		     const char *to, const char *pct, const char *tokens, const char *amount,
		     char *err, size_t errlen)
{
	memset(q, 0, sizeof(*q));
	if (provider && strlen(provider) >= sizeof(q->provider))
		return qerr(err, errlen, "provider id longer than %zu bytes", sizeof(q->provider) - 1);
	snprintf(q->provider, sizeof(q->provider), "%s", provider ? provider : "");
	if (query_range(q, from, to, err, errlen) < 0 ||
	    query_tolerances(q, pct, tokens, amount, err, errlen) < 0)
		return -1;
	snprintf(q->limit, sizeof(q->limit), "%d", RECONCILE_MAX_REPORT_ROWS + 1);
	return 0;
}

void
reconcile_query_params(const struct reconcile_query *q, const char *params[7])
{
	params[0] = q->provider;
	params[1] = q->from;
	params[2] = q->to;
	params[3] = q->pct;
	params[4] = q->tokens;
	params[5] = q->amount_nusd;
	params[6] = q->limit;
}

/* ---- report rows ---- */

const char *const reconcile_status_names[RS_NSTATUS] = { "matched", "differs", "only_ours", "only_theirs" };

static enum reconcile_status
status_of(const char *s)
{
	for (int i = 0; i < RS_NSTATUS; i++)
		if (strcmp(s, reconcile_status_names[i]) == 0)
			return (enum reconcile_status)i;
	return RS_DIFFERS;
}

/* Columns col..col+2 into v; 0 when NULL (a missing side). */
static int
side(const PGresult *res, int i, int col, int64_t v[3])
{
	if (PQgetisnull(res, i, col)) {
		v[0] = v[1] = v[2] = 0;
		return 0;
	}
	for (int k = 0; k < 3; k++)
		v[k] = strtoll(PQgetvalue(res, i, col + k), NULL, 10);
	return 1;
}

void
reconcile_row_get(const PGresult *res, int i, struct reconcile_row *r, struct reconcile_summary *s)
{
	r->day = PQgetvalue(res, i, 0);
	r->provider = PQgetvalue(res, i, 1);
	r->model = PQgetvalue(res, i, 2);
	r->status = status_of(PQgetvalue(res, i, 3));
	r->has_ours = side(res, i, 4, r->ours);
	r->has_theirs = side(res, i, 7, r->theirs);
	for (int k = 0; k < 3; k++)
		r->diff[k] = r->theirs[k] - r->ours[k];	/* both >= 0: no overflow */
	if (!s)
		return;
	s->count[r->status]++;
	/* saturating: a report over 9.2 billion USD shows the cap, never a wrapped sum */
	if (__builtin_add_overflow(s->ours_nusd, r->ours[2], &s->ours_nusd))
		s->ours_nusd = INT64_MAX;
	if (__builtin_add_overflow(s->theirs_nusd, r->theirs[2], &s->theirs_nusd))
		s->theirs_nusd = INT64_MAX;
}
