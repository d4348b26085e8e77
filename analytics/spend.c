/*
 * spend: what finance reads. Every amount is an exact decimal USD string
 * from integer nano-USD, with the integer beside it.
 *
 *   /api/v1/analytics/spend?by=account|key|app|model|provider|day&from&to&account=
 *       requests, tokens, the account's cost, the provider's cost, the margin,
 *       per key and in total. By account and key: usage_monthly_keys and
 *       usage_daily_keys (months, plus or minus days); by model,
 *       provider and day market-wide: usage_daily_endpoints; otherwise (by
 *       app, or one account by model, provider, day): usage_daily. The same
 *       sums, billed in the same transactions; the fewest rows win.
 *   /api/v1/analytics/statement?account=&from&to
 *       opening and closing balance, credits and usage from the ledger (the
 *       numbers of `agoractl statement`), per day with requests and tokens.
 *   /api/v1/activity[?date=YYYY-MM-DD]
 *       OpenRouter's shape: the account's usage per day, model and endpoint.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ana.h"
#include "money.h"

#define TS(n) "($" #n "::date::timestamp AT TIME ZONE 'UTC')"

/* ---- spend ---- */

enum spend_by { SB_ACCOUNT, SB_KEY, SB_APP, SB_MODEL, SB_PROVIDER, SB_DAY };

static const char *const spend_by_names[] = { "account", "key", "app", "model", "provider", "day", NULL };

/* Per `by`: the column in usage_daily, in usage_daily_endpoints (NULL: not
 * there), in usage_daily_keys and usage_monthly_keys (NULL: not there), the
 * join for the label, the label, the order. */
static const struct {
	const char *daily, *market, *keys, *join, *label, *order;
} spend_by[] = {
	{ "account_id", NULL, "account_id", "LEFT JOIN accounts a ON a.id = z.rk", "coalesce(a.name, z.rk::text)",
	  "z.c DESC NULLS LAST, z.rk" },
	{ "key_id", NULL, "key_id", "LEFT JOIN api_keys k ON k.id = z.rk",
	  "coalesce(nullif(k.name, ''), k.prefix || '...', z.rk::text)", "z.c DESC NULLS LAST, z.rk" },
	{ "app", NULL, NULL, "", "CASE WHEN z.rk = '' THEN '(no app)' ELSE z.rk END", "z.c DESC NULLS LAST, z.rk" },
	{ "model_id", "model_id", NULL, "LEFT JOIN models m ON m.id = z.rk", "coalesce(m.name, z.rk)",
	  "z.c DESC NULLS LAST, z.rk" },
	{ "provider_id", "provider_id", NULL, "LEFT JOIN providers p ON p.id = z.rk", "coalesce(p.name, z.rk)",
	  "z.c DESC NULLS LAST, z.rk" },
	{ "day", "day", NULL, "", "z.rk::text", "z.rk" },
};

#define SPEND_COLS "requests, prompt_tokens, completion_tokens, cost_nusd, provider_cost_nusd"
#define SPEND_ACCOUNT "($3::bigint IS NULL OR account_id = $3::bigint)"

/* The rollup rows of [from, to) ($1, $2), of account $3 unless NULL. */
static const char spend_src[] =
	"SELECT %s AS rk, " SPEND_COLS " FROM %s WHERE day >= $1::date AND day < $2::date AND %s";
/* By account or key: the months [$5, $6) from usage_monthly_keys, plus the
 * range's other days, minus those months' days outside the range, from
 * usage_daily_keys (days_month_cover: "the last 30 days" is a month minus
 * its days to come plus a few days; exact, integers). */
static const char spend_keys_src[] =
	"SELECT %s AS rk, " SPEND_COLS " FROM usage_monthly_keys"
	" WHERE month >= $5::date AND month < $6::date AND " SPEND_ACCOUNT
	" UNION ALL SELECT %s, " SPEND_COLS " FROM usage_daily_keys WHERE day >= $1::date AND day < $2::date"
	" AND (day < $5::date OR day >= $6::date) AND " SPEND_ACCOUNT
	" UNION ALL SELECT %s, -requests, -prompt_tokens, -completion_tokens, -cost_nusd, -provider_cost_nusd"
	" FROM usage_daily_keys WHERE day >= $5::date AND day < $6::date AND (day < $1::date OR day >= $2::date)"
	" AND " SPEND_ACCOUNT;

/* z: the sums per key plus the total (ROLLUP), then labels. A key whose
 * requests sum to nothing (only in days subtracted) is no row. */
static const char spend_sql[] =
	"WITH z AS (SELECT rk, grouping(rk) AS tot, sum(requests) AS r, sum(prompt_tokens) AS pt,"
	"  sum(completion_tokens) AS ct, sum(cost_nusd) AS c, sum(provider_cost_nusd) AS pc"
	"  FROM (%s) y GROUP BY ROLLUP (rk) HAVING grouping(rk) = 1 OR sum(requests) <> 0)"
	" SELECT z.tot, z.rk::text, %s, z.r::text, z.pt::text, z.ct::text, z.c::text, z.pc::text"
	" FROM z %s ORDER BY z.tot DESC, %s LIMIT $4";

static void
spend_fields(cJSON *o, const PGresult *res, int i)
{
	int64_t c = ana_i64(res, i, 6), pc = ana_i64(res, i, 7);

	ana_json_i64(o, "requests", ana_i64(res, i, 3));
	ana_json_i64(o, "prompt_tokens", ana_i64(res, i, 4));
	ana_json_i64(o, "completion_tokens", ana_i64(res, i, 5));
	ana_json_usd(o, "cost", c);
	ana_json_usd(o, "provider_cost", pc);
	ana_json_usd(o, "margin", c - pc);
}

static void
spend_rows_cb(struct areq *x, PGresult *res)
{
	static const struct ana_col cols[] = {
		{ "key", "key", 1 }, { "label", "label", 1 }, { "requests", "requests", 0 },
		{ "prompt_tokens", "prompt_tokens", 0 }, { "completion_tokens", "completion_tokens", 0 },
		{ "cost_usd", "cost", 0 }, { "provider_cost_usd", "provider_cost", 0 }, { "margin_usd", "margin", 0 },
	};
	int n = PQntuples(res), nrows = n > ANA_MAX_ROWS + 1 ? ANA_MAX_ROWS + 1 : n;
	cJSON *d = cJSON_CreateObject(), *rows, *o;

	cJSON_AddStringToObject(d, "by", (const char *)x->priv);
	cJSON_AddStringToObject(d, "from", x->from_s);
	cJSON_AddStringToObject(d, "to", x->to_s);
	rows = cJSON_AddArrayToObject(d, "rows");
	for (int i = 1; i < nrows; i++) {		/* row 0 is the total */
		cJSON_AddItemToArray(rows, o = cJSON_CreateObject());
		ana_json_str(o, "key", res, i, 1);
		ana_json_str(o, "label", res, i, 2);
		spend_fields(o, res, i);
	}
	spend_fields(o = cJSON_AddObjectToObject(d, "totals"), res, 0);
	cJSON_AddBoolToObject(d, "truncated", n > ANA_MAX_ROWS + 1);
	if (x->csv) {
		struct csv c;

		csv_init(&c);
		ana_csv_table(&c, rows, cols, 8);
		cJSON_Delete(d);
		ana_reply_csv(x, &c);
		return;
	}
	ana_reply_json(x, d);
}

/* The source rows for `by`: the rollup with the fewest rows that has the
 * column. Returns the number of parameters the statement uses. */
static int
spend_source(const struct areq *x, int by, int64_t acct, char *src, size_t len, char m[2][DAYS_DATE_LEN])
{
	int32_t m1, m2;

	if (!acct && spend_by[by].market) {
		snprintf(src, len, spend_src, spend_by[by].market, "usage_daily_endpoints", "$3::bigint IS NULL");
		return 4;
	}
	if (!spend_by[by].keys) {
		snprintf(src, len, spend_src, spend_by[by].daily, "usage_daily", SPEND_ACCOUNT);
		return 4;
	}
	days_month_cover(x->from, x->to, &m1, &m2);
	days_format(m1, m[0]);
	days_format(m2, m[1]);
	snprintf(src, len, spend_keys_src, spend_by[by].keys, spend_by[by].keys, spend_by[by].keys);
	return 6;
}

void
api_spend(struct areq *x)
{
	char acct_s[24], limit[24], src[1024], m[2][DAYS_DATE_LEN], *sql = NULL;
	const char *params[6] = { x->from_s, x->to_s, NULL, limit, m[0], m[1] };
	int64_t acct;
	int by, n;
	size_t len;

	if (ana_common(x) < 0 || (by = ana_param_enum(x, "by", spend_by_names, SB_ACCOUNT)) < 0 ||
	    ana_param_account(x, 0, &acct) < 0)
		return;
	x->priv = strdup(spend_by_names[by]);
	if (acct) {
		snprintf(acct_s, sizeof(acct_s), "%" PRId64, acct);
		params[2] = acct_s;
	}
	snprintf(limit, sizeof(limit), "%d", ANA_MAX_ROWS + 2);
	n = spend_source(x, by, acct, src, sizeof(src), m);
	len = sizeof(spend_sql) + strlen(src) + 512;
	if (!x->priv || !(sql = malloc(len))) {
		ana_fail(x, 503, "out of memory");
		return;
	}
	snprintf(sql, len, spend_sql, src, spend_by[by].label, spend_by[by].join, spend_by[by].order);
	ana_query(x, sql, n, params, spend_rows_cb);
	free(sql);
}

/* ---- statement ---- */

/* One row per day of [from, to): credits and usage from the ledger, requests
 * and tokens from usage_daily_keys; opening and closing balances (the ledger
 * before from, before to) and the account's name on every row. */
static const char statement_sql[] =
	"WITH l AS (SELECT (created_at AT TIME ZONE 'UTC')::date AS d,"
	"  coalesce(sum(amount_nusd) FILTER (WHERE kind <> 'usage'), 0) AS cr,"
	"  coalesce(-sum(amount_nusd) FILTER (WHERE kind = 'usage'), 0) AS us"
	"  FROM ledger WHERE account_id = $1::bigint AND created_at >= " TS(2) " AND created_at < " TS(3)
	"  GROUP BY 1),"
	" u AS (SELECT day AS d, sum(requests) AS rq, sum(prompt_tokens + completion_tokens) AS tk"
	"  FROM usage_daily_keys WHERE account_id = $1::bigint AND day >= $2::date AND day < $3::date GROUP BY 1),"
	" days AS (SELECT generate_series($2::date, $3::date - 1, interval '1 day')::date AS d)"
	" SELECT days.d::text, coalesce(l.cr, 0)::text, coalesce(l.us, 0)::text, coalesce(u.rq, 0)::text,"
	"  coalesce(u.tk, 0)::text,"
	"  (SELECT coalesce(sum(amount_nusd), 0) FROM ledger WHERE account_id = $1::bigint"
	"   AND created_at < " TS(2) ")::text,"
	"  (SELECT coalesce(sum(amount_nusd), 0) FROM ledger WHERE account_id = $1::bigint"
	"   AND created_at < " TS(3) ")::text,"
	"  (SELECT name FROM accounts WHERE id = $1::bigint)"
	" FROM days LEFT JOIN l USING (d) LEFT JOIN u USING (d) ORDER BY days.d";

static void
statement_rows_cb(struct areq *x, PGresult *res)
{
	static const struct ana_col cols[] = {
		{ "date", "date", 0 }, { "credits_usd", "credits", 0 }, { "usage_usd", "usage", 0 },
		{ "requests", "requests", 0 }, { "tokens", "tokens", 0 },
	};
	int n = PQntuples(res);
	int64_t credits = 0, usage = 0;
	cJSON *d, *days, *o;

	if (n == 0 || ana_null(res, 0, 7)) {
		ana_fail(x, 404, "no account %s", (const char *)x->priv);
		return;
	}
	d = cJSON_CreateObject();
	ana_json_i64(d, "account", strtoll((const char *)x->priv, NULL, 10));
	ana_json_str(d, "account_name", res, 0, 7);
	cJSON_AddStringToObject(d, "from", x->from_s);
	cJSON_AddStringToObject(d, "to", x->to_s);
	days = cJSON_CreateArray();
	for (int i = 0; i < n; i++) {
		cJSON_AddItemToArray(days, o = cJSON_CreateObject());
		ana_json_str(o, "date", res, i, 0);
		ana_json_usd(o, "credits", ana_i64(res, i, 1));
		ana_json_usd(o, "usage", ana_i64(res, i, 2));
		ana_json_int(o, "requests", res, i, 3);
		ana_json_int(o, "tokens", res, i, 4);
		credits += ana_i64(res, i, 1);
		usage += ana_i64(res, i, 2);
	}
	ana_json_usd(d, "opening_balance", ana_i64(res, 0, 5));
	ana_json_usd(d, "credits", credits);
	ana_json_usd(d, "usage", usage);
	ana_json_usd(d, "closing_balance", ana_i64(res, 0, 6));
	cJSON_AddItemToObject(d, "days", days);
	if (x->csv) {
		struct csv c;

		csv_init(&c);
		ana_csv_table(&c, days, cols, 5);
		cJSON_Delete(d);
		ana_reply_csv(x, &c);
		return;
	}
	ana_reply_json(x, d);
}

void
api_statement(struct areq *x)
{
	char acct_s[24];
	const char *params[3] = { acct_s, x->from_s, x->to_s };
	int64_t acct;

	if (ana_common(x) < 0 || ana_param_account(x, 1, &acct) < 0)
		return;
	snprintf(acct_s, sizeof(acct_s), "%" PRId64, acct);
	if (!(x->priv = strdup(acct_s))) {
		ana_fail(x, 503, "out of memory");
		return;
	}
	ana_query(x, statement_sql, 3, params, statement_rows_cb);
}

/* ---- activity (OpenRouter's shape) ---- */

/* An endpoint is one (model, provider) pair of the catalog, so the daily
 * rollup's pair names it. */
static const char activity_sql[] =
	"SELECT d.day::text, d.model_id, coalesce(e.id::text, ''), coalesce(p.name, d.provider_id),"
	" sum(d.cost_nusd)::text, sum(d.requests)::text, sum(d.prompt_tokens)::text,"
	" sum(d.completion_tokens)::text, sum(d.reasoning_tokens)::text"
	" FROM usage_daily d LEFT JOIN endpoints e ON e.model_id = d.model_id AND e.provider_id = d.provider_id"
	" LEFT JOIN providers p ON p.id = d.provider_id"
	" WHERE d.account_id = $1::bigint AND d.day >= $2::date AND d.day < $3::date"
	" GROUP BY d.day, d.model_id, e.id, p.name, d.provider_id"
	" ORDER BY d.day DESC, sum(d.cost_nusd) DESC, d.model_id, d.provider_id LIMIT $4";

static void
activity_rows_cb(struct areq *x, PGresult *res)
{
	static const struct ana_col cols[] = {
		{ "date", "date", 0 }, { "model", "model", 1 }, { "model_permaslug", "model_permaslug", 1 },
		{ "endpoint_id", "endpoint_id", 1 }, { "provider_name", "provider_name", 1 },
		{ "usage_usd", "usage", 0 }, { "byok_usage_inference", "byok_usage_inference", 0 },
		{ "requests", "requests", 0 }, { "prompt_tokens", "prompt_tokens", 0 },
		{ "completion_tokens", "completion_tokens", 0 }, { "reasoning_tokens", "reasoning_tokens", 0 },
	};
	cJSON *root = cJSON_CreateObject(), *data = cJSON_AddArrayToObject(root, "data"), *o;
	char usd[64];

	for (int i = 0; i < PQntuples(res); i++) {
		cJSON_AddItemToArray(data, o = cJSON_CreateObject());
		ana_json_str(o, "date", res, i, 0);
		ana_json_str(o, "model", res, i, 1);
		ana_json_str(o, "model_permaslug", res, i, 1);
		ana_json_str(o, "endpoint_id", res, i, 2);
		ana_json_str(o, "provider_name", res, i, 3);
		money_format_usd(ana_i64(res, i, 4), usd, sizeof(usd));
		cJSON_AddItemToObject(o, "usage", cJSON_CreateRaw(usd));	/* a number, exact */
		cJSON_AddNumberToObject(o, "byok_usage_inference", 0);
		ana_json_int(o, "requests", res, i, 5);
		ana_json_int(o, "prompt_tokens", res, i, 6);
		ana_json_int(o, "completion_tokens", res, i, 7);
		ana_json_int(o, "reasoning_tokens", res, i, 8);
	}
	if (x->csv) {
		struct csv c;

		csv_init(&c);
		ana_csv_table(&c, data, cols, 11);
		cJSON_Delete(root);
		ana_reply_csv(x, &c);
		return;
	}
	ana_reply_raw_json(x, root);
}

void
api_activity(struct areq *x)
{
	char acct_s[24], date[32], limit[16];
	const char *params[4] = { acct_s, x->from_s, x->to_s, limit };
	int64_t acct;
	int r;

	if (ana_common(x) < 0 || ana_param_account(x, 0, &acct) < 0 ||
	    (r = ana_param(x, "date", date, sizeof(date))) < 0)
		return;
	if (r > 0) {
		if (days_parse(date, &x->from) < 0) {
			ana_fail(x, 400, "parameter 'date': expected a date YYYY-MM-DD (UTC)");
			return;
		}
		x->to = x->from + 1;
		days_format(x->from, x->from_s);
		days_format(x->to, x->to_s);
	}
	snprintf(acct_s, sizeof(acct_s), "%" PRId64, acct ? acct : x->account_id);
	snprintf(limit, sizeof(limit), "%d", ANA_MAX_ROWS);
	ana_query(x, activity_sql, 4, params, activity_rows_cb);
}
