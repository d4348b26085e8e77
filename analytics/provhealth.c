/*
 * provhealth: provider health per endpoint and hour, and the live minutes.
 *
 *   /api/v1/analytics/providers?from&to&provider=&model=
 *       usage_hourly (served generations and the sums behind the means) with
 *       attempts_hourly (attempts failed over): requests are attempts
 *       (served + failed over), failures are failed attempts (non-200 served +
 *       failed over), uptime = 1 - failures / requests. p50/p90 of latency and
 *       time to first token (successful generations) from usage_events with
 *       percentile_disc when the range is at most 7 days, else null.
 *   /api/v1/analytics/live?minutes=N
 *       the router's per-minute counters in Redis (live:<unix minute>, fields
 *       r|model|provider and t|model|provider), read with pipelined HGETALLs.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "ana.h"
#include "log.h"

#define TS(n) "($" #n "::date::timestamp AT TIME ZONE 'UTC')"
#define PCT_MAX_DAYS 7
#define LIVE_MAX_SERIES 2000
#define LIVE_BUCKETS 512

/* ---- providers ---- */

#define FILTERS " AND ($3::text IS NULL OR provider_id = $3) AND ($4::text IS NULL OR model_id = $4)"

static const char providers_sql[] =
	"WITH u AS (SELECT hour, model_id, provider_id, endpoint_id, requests, failures, latency_ms_sum,"
	"  ttft_ms_sum, tps_milli_sum FROM usage_hourly WHERE hour >= " TS(1) " AND hour < " TS(2) FILTERS "),"
	" f AS (SELECT hour, model_id, provider_id, endpoint_id, failures FROM attempts_hourly"
	"  WHERE hour >= " TS(1) " AND hour < " TS(2) FILTERS "),"
	" h AS (SELECT coalesce(u.hour, f.hour) AS hour, coalesce(u.model_id, f.model_id) AS model_id,"
	"  coalesce(u.provider_id, f.provider_id) AS provider_id, coalesce(u.endpoint_id, f.endpoint_id) AS endpoint_id,"
	"  coalesce(u.requests, 0) AS served, coalesce(u.failures, 0) AS failed, coalesce(f.failures, 0) AS fo,"
	"  coalesce(u.latency_ms_sum, 0) AS lat, coalesce(u.ttft_ms_sum, 0) AS ttft, coalesce(u.tps_milli_sum, 0) AS tps"
	"  FROM u FULL JOIN f ON f.hour = u.hour AND f.model_id = u.model_id AND f.provider_id = u.provider_id"
	"  AND f.endpoint_id = u.endpoint_id),"
	" a AS (SELECT hour, provider_id, model_id, endpoint_id, sum(served) AS served, sum(failed) AS failed,"
	"  sum(fo) AS fo, sum(lat) AS lat, sum(ttft) AS ttft, sum(tps) AS tps FROM h"
	"  GROUP BY GROUPING SETS ((hour, provider_id, model_id, endpoint_id), (provider_id, model_id, endpoint_id))),"
	" q AS (SELECT date_trunc('hour', created_at) AS hour, provider_id, model_id, endpoint_id,"
	"  percentile_disc(0.5) WITHIN GROUP (ORDER BY latency_ms) AS l50,"
	"  percentile_disc(0.9) WITHIN GROUP (ORDER BY latency_ms) AS l90,"
	"  percentile_disc(0.5) WITHIN GROUP (ORDER BY ttft_ms) AS t50,"
	"  percentile_disc(0.9) WITHIN GROUP (ORDER BY ttft_ms) AS t90"
	"  FROM usage_events WHERE $5::boolean AND created_at >= " TS(1) " AND created_at < " TS(2)
	"  AND status = 200" FILTERS
	"  GROUP BY GROUPING SETS ((date_trunc('hour', created_at), provider_id, model_id, endpoint_id),"
	"  (provider_id, model_id, endpoint_id)))"
	" SELECT (a.hour IS NULL)::int, to_char(a.hour AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:00:00\"Z\"'),"
	"  a.provider_id, coalesce(p.name, a.provider_id), a.model_id, a.endpoint_id::text,"
	"  (a.served + a.fo)::text, (a.failed + a.fo)::text, a.served::text, a.lat::text, a.ttft::text,"
	"  a.tps::text, q.l50, q.l90, q.t50, q.t90"
	" FROM a LEFT JOIN q ON q.hour IS NOT DISTINCT FROM a.hour AND q.provider_id = a.provider_id"
	"  AND q.model_id = a.model_id AND q.endpoint_id = a.endpoint_id"
	" LEFT JOIN providers p ON p.id = a.provider_id"
	" ORDER BY a.hour IS NOT NULL, a.hour, a.provider_id, a.model_id, a.endpoint_id LIMIT $6";

static const struct ana_col provider_cols[] = {
	{ "hour", "hour", 0 }, { "provider", "provider", 1 }, { "provider_name", "provider_name", 1 },
	{ "model", "model", 1 }, { "endpoint_id", "endpoint_id", 0 }, { "requests", "requests", 0 },
	{ "failures", "failures", 0 }, { "uptime", "uptime", 0 }, { "latency_ms_avg", "latency_ms_avg", 0 },
	{ "ttft_ms_avg", "ttft_ms_avg", 0 }, { "tps_avg", "tps_avg", 0 },
	{ "latency_ms_p50", "latency_ms_p50", 0 }, { "latency_ms_p90", "latency_ms_p90", 0 },
	{ "ttft_ms_p50", "ttft_ms_p50", 0 }, { "ttft_ms_p90", "ttft_ms_p90", 0 },
};

static void
add_ratio(cJSON *o, const char *name, double num, double den)
{
	if (den > 0)
		cJSON_AddNumberToObject(o, name, num / den);
	else
		cJSON_AddNullToObject(o, name);
}

static cJSON *
provider_row(const PGresult *res, int i)
{
	cJSON *o = cJSON_CreateObject();
	double req = (double)ana_i64(res, i, 6), fail = (double)ana_i64(res, i, 7);
	double served = (double)ana_i64(res, i, 8);

	ana_json_str(o, "hour", res, i, 1);
	ana_json_str(o, "provider", res, i, 2);
	ana_json_str(o, "provider_name", res, i, 3);
	ana_json_str(o, "model", res, i, 4);
	ana_json_int(o, "endpoint_id", res, i, 5);
	ana_json_int(o, "requests", res, i, 6);
	ana_json_int(o, "failures", res, i, 7);
	add_ratio(o, "uptime", req - fail, req);
	add_ratio(o, "latency_ms_avg", (double)ana_i64(res, i, 9), served);
	add_ratio(o, "ttft_ms_avg", (double)ana_i64(res, i, 10), served);
	add_ratio(o, "tps_avg", (double)ana_i64(res, i, 11) / 1000.0, served);
	ana_json_int(o, "latency_ms_p50", res, i, 12);
	ana_json_int(o, "latency_ms_p90", res, i, 13);
	ana_json_int(o, "ttft_ms_p50", res, i, 14);
	ana_json_int(o, "ttft_ms_p90", res, i, 15);
	return o;
}

static void
providers_rows_cb(struct areq *x, PGresult *res)
{
	int n = PQntuples(res), table = *(int *)x->priv;
	cJSON *d = cJSON_CreateObject(), *rows, *summary;

	cJSON_AddStringToObject(d, "from", x->from_s);
	cJSON_AddStringToObject(d, "to", x->to_s);
	cJSON_AddBoolToObject(d, "percentiles", x->to - x->from <= PCT_MAX_DAYS);
	rows = cJSON_AddArrayToObject(d, "rows");
	summary = cJSON_AddArrayToObject(d, "summary");
	for (int i = 0; i < n && i < ANA_MAX_ROWS; i++)
		cJSON_AddItemToArray(ana_i64(res, i, 0) ? summary : rows, provider_row(res, i));
	cJSON_AddBoolToObject(d, "truncated", n > ANA_MAX_ROWS);
	if (x->csv) {
		struct csv c;

		csv_init(&c);
		ana_csv_table(&c, table ? summary : rows, provider_cols,
			      (int)(sizeof(provider_cols) / sizeof(provider_cols[0])));
		cJSON_Delete(d);
		ana_reply_csv(x, &c);
		return;
	}
	ana_reply_json(x, d);
}

void
api_providers(struct areq *x)
{
	static const char *const tables[] = { "hourly", "summary", NULL };
	char prov[128], model[256], limit[16];
	const char *params[6] = { x->from_s, x->to_s, NULL, NULL, NULL, limit };
	int rp, rm, table;

	if (ana_common(x) < 0 || (rp = ana_param(x, "provider", prov, sizeof(prov))) < 0 ||
	    (rm = ana_param(x, "model", model, sizeof(model))) < 0 ||
	    (table = ana_param_enum(x, "table", tables, 0)) < 0)
		return;
	if (!(x->priv = malloc(sizeof(int)))) {
		ana_fail(x, 503, "out of memory");
		return;
	}
	*(int *)x->priv = table;
	params[2] = rp > 0 && *prov ? prov : NULL;
	params[3] = rm > 0 && *model ? model : NULL;
	params[4] = x->to - x->from <= PCT_MAX_DAYS ? "true" : "false";
	snprintf(limit, sizeof(limit), "%d", ANA_MAX_ROWS + 1);
	ana_query(x, providers_sql, 6, params, providers_rows_cb);
}

/* ---- live ---- */

struct live_series {
	char *key;			/* "model|provider" */
	char *model, *provider;		/* its two parts */
	int64_t total;
	int64_t *req, *tok;
	struct live_series *next;
};

struct live {
	struct areq *x;
	int n;				/* minutes */
	int64_t first;			/* the first unix minute */
	int expected, replies, failed, nseries;
	struct live_series *buckets[LIVE_BUCKETS];
};

static void
live_free(void *arg)
{
	struct live *l = arg;

	for (int i = 0; l && i < LIVE_BUCKETS; i++) {
		for (struct live_series *s = l->buckets[i], *nx; s; s = nx) {
			nx = s->next;
			free(s->key);
			free(s->model);
			free(s->provider);
			free(s->req);
			free(s->tok);
			free(s);
		}
	}
	free(l);
}

static unsigned
live_hash(const char *s, size_t n)
{
	unsigned h = 2166136261u;

	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 16777619u;
	return h % LIVE_BUCKETS;
}

/* The series of "model|provider" (created when new; NULL when full). */
static struct live_series *
live_series(struct live *l, const char *mp, size_t len)
{
	const char *bar = memrchr(mp, '|', len);
	unsigned h = live_hash(mp, len);
	struct live_series *s;

	if (!bar)
		return NULL;
	for (s = l->buckets[h]; s; s = s->next)
		if (strlen(s->key) == len && memcmp(s->key, mp, len) == 0)
			return s;
	if (l->nseries >= LIVE_MAX_SERIES || !(s = calloc(1, sizeof(*s))))
		return NULL;
	s->key = strndup(mp, len);
	s->model = strndup(mp, (size_t)(bar - mp));
	s->provider = strndup(bar + 1, len - (size_t)(bar - mp) - 1);
	s->req = calloc((size_t)l->n, sizeof(int64_t));
	s->tok = calloc((size_t)l->n, sizeof(int64_t));
	s->next = l->buckets[h];
	l->buckets[h] = s;
	l->nseries++;
	if (!s->key || !s->model || !s->provider || !s->req || !s->tok)
		l->failed = 1;
	return s;
}

/* One HGETALL reply: [field, value, ...] of minute `idx`. */
static void
live_add(struct live *l, int idx, const redisReply *r)
{
	for (size_t j = 0; j + 1 < r->elements; j += 2) {
		const redisReply *f = r->element[j], *v = r->element[j + 1];
		struct live_series *s;

		if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING || f->len < 4 ||
		    (f->str[0] != 'r' && f->str[0] != 't') || f->str[1] != '|')
			continue;
		if (!(s = live_series(l, f->str + 2, f->len - 2)) || l->failed)
			continue;
		if (f->str[0] == 'r') {
			s->req[idx] += strtoll(v->str, NULL, 10);
			s->total += strtoll(v->str, NULL, 10);
		} else {
			s->tok[idx] += strtoll(v->str, NULL, 10);
		}
	}
}

static int
series_cmp(const void *a, const void *b)
{
	const struct live_series *x = *(struct live_series *const *)a, *y = *(struct live_series *const *)b;
	int c;

	if (x->total != y->total)
		return x->total > y->total ? -1 : 1;
	return (c = strcmp(x->model, y->model)) ? c : strcmp(x->provider, y->provider);
}

static cJSON *
i64_array(const int64_t *v, int n)
{
	cJSON *a = cJSON_CreateArray();
	char buf[32];

	for (int i = 0; i < n; i++) {
		snprintf(buf, sizeof(buf), "%" PRId64, v[i]);
		cJSON_AddItemToArray(a, cJSON_CreateRaw(buf));
	}
	return a;
}

static void
live_csv(struct areq *x, struct live *l, struct live_series **all)
{
	static const char *const cols[] = { "minute", "model", "provider", "requests", "tokens", NULL };
	char iso[DAYS_MINUTE_LEN];
	struct csv c;

	csv_init(&c);
	csv_header(&c, cols);
	for (int i = 0; i < l->nseries; i++) {
		for (int m = 0; m < l->n; m++) {
			days_iso_minute(l->first + m, iso);
			csv_raw(&c, iso);
			csv_text(&c, all[i]->model);
			csv_text(&c, all[i]->provider);
			csv_i64(&c, all[i]->req[m]);
			csv_i64(&c, all[i]->tok[m]);
			csv_end_row(&c);
		}
	}
	ana_reply_csv(x, &c);
}

static void
live_answer(struct live *l)
{
	struct areq *x = l->x;
	struct live_series **all = calloc((size_t)l->nseries + 1, sizeof(*all));
	char iso[DAYS_MINUTE_LEN];
	cJSON *d, *mins, *series, *o;
	int k = 0;

	if (!all) {
		ana_fail(x, 503, "out of memory");
		return;
	}
	for (int i = 0; i < LIVE_BUCKETS; i++)
		for (struct live_series *s = l->buckets[i]; s; s = s->next)
			all[k++] = s;
	qsort(all, (size_t)k, sizeof(*all), series_cmp);
	if (x->csv) {
		live_csv(x, l, all);
		free(all);
		return;
	}
	d = cJSON_CreateObject();
	mins = cJSON_AddArrayToObject(d, "minutes");
	for (int m = 0; m < l->n; m++) {
		days_iso_minute(l->first + m, iso);
		cJSON_AddItemToArray(mins, cJSON_CreateString(iso));
	}
	series = cJSON_AddArrayToObject(d, "series");
	for (int i = 0; i < k; i++) {
		cJSON_AddItemToArray(series, o = cJSON_CreateObject());
		cJSON_AddStringToObject(o, "model", all[i]->model);
		cJSON_AddStringToObject(o, "provider", all[i]->provider);
		cJSON_AddItemToObject(o, "requests", i64_array(all[i]->req, l->n));
		cJSON_AddItemToObject(o, "tokens", i64_array(all[i]->tok, l->n));
	}
	free(all);
	ana_reply_json(x, d);
}

static void
live_cb(struct rds *rd, redisReply *r, void *arg)
{
	struct live *l = arg;
	int idx = l->replies++;

	(void)rd;
	if (!r || r->type == REDIS_REPLY_ERROR)
		l->failed = 1;
	else if (r->type == REDIS_REPLY_ARRAY)
		live_add(l, idx, r);
	if (l->replies < l->expected)
		return;
	if (l->failed)
		ana_fail(l->x, 503, "live counters unavailable: Redis did not answer");
	else
		live_answer(l);	/* frees l with the request */
}

void
api_live(struct areq *x)
{
	struct live *l;
	int64_t n;

	if (ana_common(x) < 0 || ana_param_int(x, "minutes", 1, 120, 15, &n) < 0)
		return;
	if (!rds_is_connected(x->a->rd)) {
		ana_fail(x, 503, "live counters unavailable: Redis is not connected");
		return;
	}
	if (!(l = calloc(1, sizeof(*l)))) {
		ana_fail(x, 503, "out of memory");
		return;
	}
	x->priv = l;
	x->priv_free = live_free;
	l->x = x;
	l->n = (int)n;
	l->first = (int64_t)time(NULL) / 60 - n + 1;
	x->a->st.live_reads++;
	for (int i = 0; i < l->n; i++) {
		char key[32];
		size_t kl = (size_t)snprintf(key, sizeof(key), "live:%lld", (long long)(l->first + i));

		if (rds_command(x->a->rd, key, kl, live_cb, l, "HGETALL %s", key) < 0)
			break;
		l->expected++;
	}
	if (l->expected == 0)
		ana_fail(x, 503, "live counters unavailable: Redis refused the reads");
	else if (l->expected < l->n)
		l->failed = 1;	/* the last reply answers 503 */
}
