/*
 * share: market share (OpenRouter's rankings) as top N plus "others", over a
 * range or as a time series by day, week (Monday) or month.
 *
 *   /api/v1/analytics/share?by=model|author|provider|origin|app
 *       &metric=tokens|requests|spend&from&to&top=N&open_weights=true|false
 *   /api/v1/analytics/share/series?...&interval=day|week|month
 *
 * By model, author, provider and origin the rollup is usage_daily_endpoints
 * (the marketplace per day and endpoint, no accounts: a month is 30 rows per
 * endpoint whatever the traffic); by app, usage_daily (the only rollup with
 * the app). Rows are first summed per model and provider, then joined to the
 * catalog (names, origin, open weights) and summed per key, so the joins
 * touch a few hundred rows whatever the range.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ana.h"
#include "money.h"

enum share_by { BY_MODEL, BY_AUTHOR, BY_PROVIDER, BY_ORIGIN, BY_APP };
enum share_metric { M_TOKENS, M_REQUESTS, M_SPEND };

static const char *const by_names[] = { "model", "author", "provider", "origin", "app", NULL };
static const char *const metric_names[] = { "tokens", "requests", "spend", NULL };

/* Per `by`: the key and label over s (summed rollup rows) with m (models)
 * and p (providers) joined. */
static const char *const key_sql[] = {
	"s.model_id", "s.model_author", "s.provider_id", "coalesce(m.origin, 'unknown')", "s.app",
};
static const char *const label_sql[] = {
	"coalesce(m.name, s.model_id)", "s.model_author", "coalesce(p.name, s.provider_id)",
	"coalesce(m.origin, 'unknown')", "CASE WHEN s.app = '' THEN '(no app)' ELSE s.app END",
};
static const char *const metric_sql[] = { "s.tokens", "s.requests", "s.spend" };

static const char market_src[] =
	"SELECT %s AS b, model_id, model_author, provider_id, ''::text AS app, sum(requests) AS requests,"
	" sum(prompt_tokens + completion_tokens) AS tokens, sum(cost_nusd) AS spend"
	" FROM usage_daily_endpoints WHERE day >= $1::date AND day < $2::date GROUP BY 1, 2, 3, 4";
static const char daily_src[] =
	"SELECT %s AS b, model_id, model_author, provider_id, app, sum(requests) AS requests,"
	" sum(prompt_tokens + completion_tokens) AS tokens, sum(cost_nusd) AS spend"
	" FROM usage_daily WHERE day >= $1::date AND day < $2::date GROUP BY 1, 2, 3, 4, 5";

/* s: the rollup summed per bucket, model, provider (and app); kv: per key. */
static const char keyed_sql[] =
	"WITH s AS (%s),"
	" kv AS (SELECT s.b, %s AS kk, %s AS label, %s AS v FROM s"
	"  LEFT JOIN models m ON m.id = s.model_id LEFT JOIN providers p ON p.id = s.provider_id"
	"  WHERE $3::boolean IS NULL OR m.open_weights = $3::boolean),"
	" t AS (SELECT kk, min(label) AS label, sum(v) AS v FROM kv GROUP BY kk),"
	" r AS (SELECT kk, label, v, row_number() OVER (ORDER BY v DESC, kk) AS rn FROM t) ";

static const char share_tail[] =
	"SELECT 0 AS o, kk, label, v::text, rn FROM r WHERE rn <= $4"
	" UNION ALL SELECT 1, NULL, NULL, coalesce(sum(v), 0)::text, count(*) FROM r WHERE rn > $4"
	" ORDER BY 1, 5";

static const char series_tail[] =
	"SELECT least(r.rn, $4 + 1) AS rn, CASE WHEN r.rn <= $4 THEN r.kk END,"
	" CASE WHEN r.rn <= $4 THEN r.label END, kv.b::text, sum(kv.v)::text"
	" FROM kv JOIN r USING (kk) GROUP BY 1, 2, 3, 4 ORDER BY 1, 4";

struct share {
	enum share_by by;
	enum share_metric metric;
	enum days_interval iv;
	int top;
	int nb;				/* buckets (series) */
	int32_t buckets[ANA_MAX_DAYS];
};

/* The whole statement for the request (fragments are constants chosen by
 * the validated parameters; values travel as parameters). */
static char *
share_sql(const struct share *sh, int series)
{
	static const char *const trunc_day[] = {
		"day", "date_trunc('week', day::timestamp)::date", "date_trunc('month', day::timestamp)::date",
	};
	const char *b = series ? trunc_day[sh->iv] : "NULL::date";
	char src[1024], *sql;
	size_t len;

	snprintf(src, sizeof(src), sh->by == BY_APP ? daily_src : market_src, b);
	len = strlen(keyed_sql) + strlen(src) + 512 + strlen(series ? series_tail : share_tail);
	if (!(sql = malloc(len)))
		return NULL;
	snprintf(sql, len, keyed_sql, src, key_sql[sh->by], label_sql[sh->by], metric_sql[sh->metric]);
	strcat(sql, series ? series_tail : share_tail);
	return sql;
}

/* A value of the metric: a number, or for spend a decimal USD string with
 * the integer nano-USD beside it (name_nusd). */
static void
add_value(cJSON *o, const char *name, const struct share *sh, int64_t v)
{
	if (sh->metric == M_SPEND)
		ana_json_usd(o, name, v);
	else
		ana_json_i64(o, name, v);
}

static void
add_header(cJSON *d, const struct areq *x, const struct share *sh)
{
	cJSON_AddStringToObject(d, "by", by_names[sh->by]);
	cJSON_AddStringToObject(d, "metric", metric_names[sh->metric]);
	cJSON_AddStringToObject(d, "from", x->from_s);
	cJSON_AddStringToObject(d, "to", x->to_s);
}

/* ---- share ---- */

static void
share_csv(struct areq *x, const cJSON *d)
{
	static const struct ana_col cols[] = {
		{ "key", "key", 1 }, { "label", "label", 1 }, { "value", "value", 0 }, { "share", "share", 0 },
	};
	const cJSON *o = cJSON_GetObjectItemCaseSensitive(d, "others");
	struct csv c;

	csv_init(&c);
	ana_csv_table(&c, cJSON_GetObjectItemCaseSensitive(d, "rows"), cols, 4);
	if (cJSON_GetObjectItemCaseSensitive(o, "count")->valuedouble > 0) {
		csv_raw(&c, "others");
		csv_raw(&c, "others");
		ana_csv_cell(&c, cJSON_GetObjectItemCaseSensitive(o, "value"), 0);
		ana_csv_cell(&c, cJSON_GetObjectItemCaseSensitive(o, "share"), 0);
		csv_end_row(&c);
	}
	ana_reply_csv(x, &c);
}

static void
share_rows_cb(struct areq *x, PGresult *res)
{
	const struct share *sh = x->priv;
	int n = PQntuples(res);
	int64_t total = 0, others = n ? ana_i64(res, n - 1, 3) : 0;
	cJSON *d = cJSON_CreateObject(), *rows, *o;

	for (int i = 0; i < n; i++)
		total += ana_i64(res, i, 3);
	add_header(d, x, sh);
	add_value(d, "total", sh, total);
	rows = cJSON_AddArrayToObject(d, "rows");
	for (int i = 0; i < n - 1; i++) {
		cJSON_AddItemToArray(rows, o = cJSON_CreateObject());
		ana_json_str(o, "key", res, i, 1);
		ana_json_str(o, "label", res, i, 2);
		add_value(o, "value", sh, ana_i64(res, i, 3));
		cJSON_AddNumberToObject(o, "share", total ? (double)ana_i64(res, i, 3) / (double)total : 0);
	}
	o = cJSON_AddObjectToObject(d, "others");
	add_value(o, "value", sh, others);
	cJSON_AddNumberToObject(o, "share", total ? (double)others / (double)total : 0);
	ana_json_i64(o, "count", n ? ana_i64(res, n - 1, 4) : 0);
	if (x->csv) {
		share_csv(x, d);
		cJSON_Delete(d);
		return;
	}
	ana_reply_json(x, d);
}

/* by, metric, top, open_weights into sh and the parameters' texts. */
static int
share_params(struct areq *x, struct share *sh, char *ow, char *top)
{
	int by, metric, w;
	int64_t n;

	if (ana_common(x) < 0 || (by = ana_param_enum(x, "by", by_names, BY_MODEL)) < 0 ||
	    (metric = ana_param_enum(x, "metric", metric_names, M_TOKENS)) < 0 ||
	    ana_param_int(x, "top", 1, 100, 10, &n) < 0 || (w = ana_param_bool(x, "open_weights")) == -1)
		return -1;
	sh->by = (enum share_by)by;
	sh->metric = (enum share_metric)metric;
	sh->top = (int)n;
	snprintf(top, 8, "%d", sh->top);
	snprintf(ow, 8, "%s", w == 1 ? "true" : w == 0 ? "false" : "");
	return 0;
}

static void
share_run(struct areq *x, struct share *sh, int series, ana_rows_fn fn)
{
	char ow[8], top[8], *sql;
	const char *params[4];

	if (share_params(x, sh, ow, top) < 0)
		return;
	if (series) {
		static const char *const ivs[] = { "day", "week", "month", NULL };
		int iv = ana_param_enum(x, "interval", ivs, DAYS_DAY);

		if (iv < 0)
			return;
		sh->iv = (enum days_interval)iv;
		if ((sh->nb = days_buckets(x->from, x->to, sh->iv, sh->buckets, ANA_MAX_DAYS)) < 0) {
			ana_fail(x, 400, "parameter 'interval': too many buckets");
			return;
		}
	}
	if (!(sql = share_sql(sh, series))) {
		ana_fail(x, 503, "out of memory");
		return;
	}
	params[0] = x->from_s;
	params[1] = x->to_s;
	params[2] = ow[0] ? ow : NULL;
	params[3] = top;
	ana_query(x, sql, 4, params, fn);
	free(sql);
}

void
api_share(struct areq *x)
{
	struct share *sh = calloc(1, sizeof(*sh));

	if (!sh) {
		ana_fail(x, 503, "out of memory");
		return;
	}
	x->priv = sh;
	share_run(x, sh, 0, share_rows_cb);
}

/* ---- share/series ---- */

static void
series_csv(struct areq *x, const cJSON *d)
{
	static const char *const cols[] = { "bucket", "key", "label", "value", "share", NULL };
	const cJSON *buckets = cJSON_GetObjectItemCaseSensitive(d, "buckets"), *s;
	struct csv c;

	csv_init(&c);
	csv_header(&c, cols);
	cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(d, "series")) {
		const cJSON *vals = cJSON_GetObjectItemCaseSensitive(s, "values");
		const cJSON *shares = cJSON_GetObjectItemCaseSensitive(s, "shares");

		for (int i = 0; i < cJSON_GetArraySize(buckets); i++) {
			csv_raw(&c, cJSON_GetArrayItem(buckets, i)->valuestring);
			ana_csv_cell(&c, cJSON_GetObjectItemCaseSensitive(s, "key"), 1);
			ana_csv_cell(&c, cJSON_GetObjectItemCaseSensitive(s, "label"), 1);
			ana_csv_cell(&c, cJSON_GetArrayItem(vals, i), 0);
			ana_csv_cell(&c, cJSON_GetArrayItem(shares, i), 0);
			csv_end_row(&c);
		}
	}
	ana_reply_csv(x, &c);
}

/* Rows (rn, key, label, bucket, value), ordered by rn then bucket, into a
 * matrix of series x buckets; rn top + 1 is "others". */
static int
series_matrix(const struct share *sh, PGresult *res, int64_t *m, int64_t *totals)
{
	int n = PQntuples(res), nseries = 0;

	for (int i = 0; i < n; i++) {
		int s = (int)ana_i64(res, i, 0) - 1;
		int32_t day;
		int b;

		if (days_parse(PQgetvalue(res, i, 3), &day) < 0 || (b = days_bucket_index(sh->buckets, sh->nb, day)) < 0)
			continue;
		m[(size_t)s * (size_t)sh->nb + (size_t)b] += ana_i64(res, i, 4);
		totals[b] += ana_i64(res, i, 4);
		if (s + 1 > nseries)
			nseries = s + 1;
	}
	return nseries;
}

/* An array of per-bucket integers: numbers, or for spend USD strings (and
 * the integers under name_nusd). */
static void
add_i64_array(cJSON *o, const char *name, const struct share *sh, const int64_t *v)
{
	cJSON *a = cJSON_AddArrayToObject(o, name), *n = NULL;
	char buf[64];

	if (sh->metric == M_SPEND) {
		snprintf(buf, sizeof(buf), "%s_nusd", name);
		n = cJSON_AddArrayToObject(o, buf);
	}
	for (int i = 0; i < sh->nb; i++) {
		snprintf(buf, sizeof(buf), "%" PRId64, v[i]);
		if (n) {
			cJSON_AddItemToArray(n, cJSON_CreateRaw(buf));
			money_format_usd(v[i], buf, sizeof(buf));
			cJSON_AddItemToArray(a, cJSON_CreateString(buf));
		} else {
			cJSON_AddItemToArray(a, cJSON_CreateRaw(buf));
		}
	}
}

/* One series: key, label, values and shares of each bucket's total. */
static cJSON *
series_json(const struct share *sh, PGresult *res, int s, const int64_t *vals, const int64_t *totals)
{
	cJSON *o = cJSON_CreateObject(), *shares;
	int row = 0;

	while (row < PQntuples(res) - 1 && ana_i64(res, row, 0) - 1 < s)	/* its first row */
		row++;
	if (s == sh->top) {
		cJSON_AddStringToObject(o, "key", "others");
		cJSON_AddStringToObject(o, "label", "Others");
	} else {
		ana_json_str(o, "key", res, row, 1);
		ana_json_str(o, "label", res, row, 2);
	}
	add_i64_array(o, "values", sh, vals);
	shares = cJSON_AddArrayToObject(o, "shares");
	for (int i = 0; i < sh->nb; i++)
		cJSON_AddItemToArray(shares, cJSON_CreateNumber(totals[i] ? (double)vals[i] / (double)totals[i] : 0));
	return o;
}

static void
series_rows_cb(struct areq *x, PGresult *res)
{
	const struct share *sh = x->priv;
	int64_t *m = calloc((size_t)(sh->top + 1) * (size_t)sh->nb, sizeof(int64_t));
	int64_t *totals = calloc((size_t)sh->nb, sizeof(int64_t));
	cJSON *d = cJSON_CreateObject(), *series, *buckets;
	char buf[DAYS_DATE_LEN];
	int nseries;

	if (!m || !totals || !d) {
		free(m);
		free(totals);
		cJSON_Delete(d);
		ana_fail(x, 503, "out of memory");
		return;
	}
	nseries = series_matrix(sh, res, m, totals);
	add_header(d, x, sh);
	cJSON_AddStringToObject(d, "interval", days_interval_name(sh->iv));
	buckets = cJSON_AddArrayToObject(d, "buckets");
	for (int i = 0; i < sh->nb; i++) {
		days_format(sh->buckets[i], buf);
		cJSON_AddItemToArray(buckets, cJSON_CreateString(buf));
	}
	series = cJSON_AddArrayToObject(d, "series");
	for (int s = 0; s < nseries; s++)
		cJSON_AddItemToArray(series, series_json(sh, res, s, m + (size_t)s * (size_t)sh->nb, totals));
	add_i64_array(d, "totals", sh, totals);
	free(m);
	free(totals);
	if (x->csv) {
		series_csv(x, d);
		cJSON_Delete(d);
		return;
	}
	ana_reply_json(x, d);
}

void
api_share_series(struct areq *x)
{
	struct share *sh = calloc(1, sizeof(*sh));

	if (!sh) {
		ana_fail(x, 503, "out of memory");
		return;
	}
	x->priv = sh;
	share_run(x, sh, 1, series_rows_cb);
}
