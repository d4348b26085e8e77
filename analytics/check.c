/*
 * check: the internal check anyone with an operator key can run at any
 * moment. Per account and UTC day of [from, to): the usage events (count,
 * cost), the ledger's usage charges (generations, amount), usage_daily and
 * usage_daily_keys (requests, cost) must agree; per day in total
 * (usage_hourly and usage_daily_endpoints have no account), usage_daily,
 * usage_hourly and usage_daily_endpoints must agree; per account and whole
 * calendar month of the range, usage_monthly_keys and usage_daily_keys.
 *
 *   /api/v1/analytics/check?from&to
 *     {"ok", "from", "to", "checked": {...}, "differences": [...]}
 *
 * It reads usage_events over the range (the only API that does): narrow
 * the range on a large database. Days of archived months (partition
 * retention) are checked without their events, which are in the archives.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ana.h"

#define TS(n) "($" #n "::date::timestamp AT TIME ZONE 'UTC')"
#define CHECK_MAX_DIFFS 1000

/* Per account and day (j), per day (jt) and per account and whole month of
 * the range (jm, [$4, $5)): counts and costs of each source, 0 where a
 * source has nothing. */
static const char check_sql[] =
	"WITH e AS (SELECT account_id AS a, (created_at AT TIME ZONE 'UTC')::date AS d, count(*) AS n,"
	"  sum(cost_nusd) AS c FROM usage_events WHERE created_at >= " TS(1) " AND created_at < " TS(2)
	"  GROUP BY 1, 2),"
	" l AS (SELECT account_id AS a, (created_at AT TIME ZONE 'UTC')::date AS d, sum(generations) AS n,"
	"  -sum(amount_nusd) AS c FROM ledger WHERE kind = 'usage' AND created_at >= " TS(1)
	"  AND created_at < " TS(2) " GROUP BY 1, 2),"
	" dd AS (SELECT account_id AS a, day AS d, sum(requests) AS n, sum(cost_nusd) AS c FROM usage_daily"
	"  WHERE day >= $1::date AND day < $2::date GROUP BY 1, 2),"
	" dk AS (SELECT account_id AS a, day AS d, sum(requests) AS n, sum(cost_nusd) AS c FROM usage_daily_keys"
	"  WHERE day >= $1::date AND day < $2::date GROUP BY 1, 2),"
	" ad AS (SELECT a, d FROM e UNION SELECT a, d FROM l UNION SELECT a, d FROM dd UNION SELECT a, d FROM dk),"
	" j AS (SELECT ad.a, ad.d, coalesce(e.n, 0) AS en, coalesce(e.c, 0) AS ec, coalesce(l.n, 0) AS ln,"
	"  coalesce(l.c, 0) AS lc, coalesce(dd.n, 0) AS dn, coalesce(dd.c, 0) AS dc, coalesce(dk.n, 0) AS kn,"
	"  coalesce(dk.c, 0) AS kc FROM ad LEFT JOIN e USING (a, d) LEFT JOIN l USING (a, d)"
	"  LEFT JOIN dd USING (a, d) LEFT JOIN dk USING (a, d)),"
	" h AS (SELECT (hour AT TIME ZONE 'UTC')::date AS d, sum(requests) AS n, sum(cost_nusd) AS c"
	"  FROM usage_hourly WHERE hour >= " TS(1) " AND hour < " TS(2) " GROUP BY 1),"
	" de AS (SELECT day AS d, sum(requests) AS n, sum(cost_nusd) AS c FROM usage_daily_endpoints"
	"  WHERE day >= $1::date AND day < $2::date GROUP BY 1),"
	" t AS (SELECT d, sum(dn) AS n, sum(dc) AS c FROM j GROUP BY d),"
	" dx AS (SELECT d FROM t UNION SELECT d FROM h UNION SELECT d FROM de),"
	" jt AS (SELECT dx.d, coalesce(t.n, 0) AS dn, coalesce(t.c, 0) AS dc, coalesce(h.n, 0) AS hn,"
	"  coalesce(h.c, 0) AS hc, coalesce(de.n, 0) AS pn, coalesce(de.c, 0) AS pc"
	"  FROM dx LEFT JOIN t USING (d) LEFT JOIN h USING (d) LEFT JOIN de USING (d)),"
	" mm AS (SELECT account_id AS a, month AS d, sum(requests) AS n, sum(cost_nusd) AS c FROM usage_monthly_keys"
	"  WHERE month >= $4::date AND month < $5::date GROUP BY 1, 2),"
	" km AS (SELECT a, date_trunc('month', d::timestamp)::date AS d, sum(kn) AS n, sum(kc) AS c FROM j"
	"  WHERE d >= $4::date AND d < $5::date GROUP BY 1, 2),"
	" jm AS (SELECT coalesce(mm.a, km.a) AS a, coalesce(mm.d, km.d) AS d, coalesce(km.n, 0) AS kn,"
	"  coalesce(km.c, 0) AS kc, coalesce(mm.n, 0) AS mn, coalesce(mm.c, 0) AS mc"
	"  FROM mm FULL JOIN km ON km.a = mm.a AND km.d = mm.d)"
	" SELECT 0 AS o, 'summary', NULL, NULL, (SELECT count(*) FROM j)::text, (SELECT count(*) FROM jt)::text,"
	"  (SELECT coalesce(sum(en), 0) FROM j)::text, (SELECT coalesce(sum(ec), 0) FROM j)::text,"
	"  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL"
	" UNION ALL SELECT 1, 'account_day', d::text, a::text, en::text, ec::text, ln::text, lc::text,"
	"  dn::text, dc::text, kn::text, kc::text, NULL, NULL, NULL, NULL, NULL, NULL FROM j"
	"  WHERE ln <> dn OR ln <> kn OR lc <> dc OR lc <> kc OR ((en <> ln OR ec <> lc) AND d >= coalesce("
	"  (SELECT (max(range_to) AT TIME ZONE 'UTC')::date FROM partition_archives WHERE parent = 'usage_events'),"
	"  '-infinity'))"	/* events of archived months are in the archives (deploy/postgres.md) */
	" UNION ALL SELECT 2, 'day', d::text, NULL, NULL, NULL, NULL, NULL, dn::text, dc::text, NULL, NULL,"
	"  hn::text, hc::text, pn::text, pc::text, NULL, NULL FROM jt WHERE dn <> hn OR dn <> pn OR dc <> hc OR dc <> pc"
	" UNION ALL SELECT 3, 'account_month', d::text, a::text, NULL, NULL, NULL, NULL, NULL, NULL, kn::text,"
	"  kc::text, NULL, NULL, NULL, NULL, mn::text, mc::text FROM jm WHERE kn <> mn OR kc <> mc"
	" ORDER BY 1, 3, 4 LIMIT $3";

static void
add_cost(cJSON *o, const char *name, const PGresult *r, int i, int col)
{
	char nm[96];

	if (!ana_null(r, i, col)) {
		ana_json_usd(o, name, ana_i64(r, i, col));
		return;
	}
	cJSON_AddNullToObject(o, name);
	snprintf(nm, sizeof(nm), "%s_nusd", name);
	cJSON_AddNullToObject(o, nm);
}

static cJSON *
difference(const PGresult *r, int i)
{
	static const char *const names[] = { "events", "ledger", "daily", "daily_keys", "hourly", "daily_endpoints",
					     "monthly_keys" };
	cJSON *o = cJSON_CreateObject();
	char nm[64];

	ana_json_str(o, "scope", r, i, 1);
	ana_json_str(o, "date", r, i, 2);
	ana_json_int(o, "account", r, i, 3);
	for (int k = 0; k < 7; k++) {	/* counts then costs, per source */
		snprintf(nm, sizeof(nm), "%s_%s", names[k], k == 1 ? "generations" : "requests");
		ana_json_int(o, k == 0 ? "events" : nm, r, i, 4 + 2 * k);
	}
	for (int k = 0; k < 7; k++) {
		snprintf(nm, sizeof(nm), "%s_cost", names[k]);
		add_cost(o, nm, r, i, 5 + 2 * k);
	}
	return o;
}

static void
check_rows_cb(struct areq *x, PGresult *res)
{
	static const struct ana_col cols[] = {
		{ "scope", "scope", 0 }, { "date", "date", 0 }, { "account", "account", 0 },
		{ "events", "events", 0 }, { "ledger_generations", "ledger_generations", 0 },
		{ "daily_requests", "daily_requests", 0 }, { "daily_keys_requests", "daily_keys_requests", 0 },
		{ "hourly_requests", "hourly_requests", 0 },
		{ "daily_endpoints_requests", "daily_endpoints_requests", 0 },
		{ "monthly_keys_requests", "monthly_keys_requests", 0 },
		{ "events_cost_usd", "events_cost", 0 }, { "ledger_cost_usd", "ledger_cost", 0 },
		{ "daily_cost_usd", "daily_cost", 0 }, { "daily_keys_cost_usd", "daily_keys_cost", 0 },
		{ "hourly_cost_usd", "hourly_cost", 0 }, { "daily_endpoints_cost_usd", "daily_endpoints_cost", 0 },
		{ "monthly_keys_cost_usd", "monthly_keys_cost", 0 },
	};
	int n = PQntuples(res);
	cJSON *d = cJSON_CreateObject(), *checked, *diffs;

	cJSON_AddBoolToObject(d, "ok", n == 1);
	cJSON_AddStringToObject(d, "from", x->from_s);
	cJSON_AddStringToObject(d, "to", x->to_s);
	checked = cJSON_AddObjectToObject(d, "checked");
	ana_json_int(checked, "account_days", res, 0, 4);
	ana_json_int(checked, "days", res, 0, 5);
	ana_json_int(checked, "events", res, 0, 6);
	ana_json_usd(checked, "cost", ana_i64(res, 0, 7));
	diffs = cJSON_AddArrayToObject(d, "differences");
	for (int i = 1; i < n && i <= CHECK_MAX_DIFFS; i++)
		cJSON_AddItemToArray(diffs, difference(res, i));
	cJSON_AddBoolToObject(d, "truncated", n > CHECK_MAX_DIFFS + 1);
	if (x->csv) {
		struct csv c;

		csv_init(&c);
		ana_csv_table(&c, diffs, cols, (int)(sizeof(cols) / sizeof(cols[0])));
		cJSON_Delete(d);
		ana_reply_csv(x, &c);
		return;
	}
	ana_reply_json(x, d);
}

void
api_check(struct areq *x)
{
	char limit[16], m1[DAYS_DATE_LEN], m2[DAYS_DATE_LEN];
	const char *params[5] = { x->from_s, x->to_s, limit, m1, m2 };
	int32_t a, b;

	if (ana_common(x) < 0)
		return;
	snprintf(limit, sizeof(limit), "%d", CHECK_MAX_DIFFS + 2);
	days_whole_months(x->from, x->to, &a, &b);
	days_format(a, m1);
	days_format(b, m2);
	ana_query(x, check_sql, 5, params, check_rows_cb);
}
