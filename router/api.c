/*
 * api: the router's read endpoints in OpenRouter's shapes: the model list
 * (pre-rendered per catalog snapshot), a model's endpoints, the calling key,
 * readiness, and Prometheus metrics (lib/prom; rstats: histograms, outcomes).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "clock.h"
#include "log.h"
#include "money.h"
#include "prom.h"
#include "route.h"
#include "router.h"

const char *
api_bearer(struct httpd_req *req, size_t *len)
{
	const char *h = httpd_req_header(req, "Authorization");
	const char *end;

	if (!h || strncasecmp(h, "Bearer ", 7) != 0)
		return NULL;
	h += 7;
	while (*h == ' ')
		h++;
	end = h + strlen(h);
	while (end > h && end[-1] == ' ')
		end--;
	if (end == h)
		return NULL;
	*len = (size_t)(end - h);
	return h;
}

void
api_models(struct router *rt, struct httpd_req *req)
{
	if (!rt->cat) {
		httpd_reply_error(req, 503, "the catalog is not loaded yet");
		return;
	}
	httpd_reply(req, 200, "application/json", rt->cat->models_json, rt->cat->models_json_len);
}

void
api_model_endpoints(struct router *rt, struct httpd_req *req, const char *model_id)
{
	struct rcat_model *m;
	cJSON *o;

	if (!rt->cat) {
		httpd_reply_error(req, 503, "the catalog is not loaded yet");
		return;
	}
	if (!(m = rcat_model(rt->cat, model_id)) || m->neps == 0) {
		httpd_reply_error(req, 404, "model '%s' not found", model_id);
		return;
	}
	o = rcat_endpoints_json(rt->cat, m, clock_wall_ms());
	httpd_reply_json(req, 200, o);
	cJSON_Delete(o);
}

/* ---- GET /key ---- */

struct key_lookup {
	struct httpd_req *req;
	int aborted;
};

static void
usd_number(cJSON *o, const char *name, int64_t nusd)
{
	char buf[64];

	money_format_usd(nusd, buf, sizeof(buf));
	cJSON_AddItemToObject(o, name, cJSON_CreateRaw(buf));
}

static void
key_abort_cb(struct httpd_req *req, void *arg)
{
	(void)req;
	((struct key_lookup *)arg)->aborted = 1;
}

static void
key_cb(const struct auth_key *k, const char *err, void *arg)
{
	struct key_lookup *l = arg;
	struct httpd_req *req = l->req;
	cJSON *root, *d, *rl;
	char label[64];

	free(l);
	if (err) {
		httpd_reply_error(req, 503, "%s", err);
		return;
	}
	if (!k || !k->usable) {
		httpd_reply_error(req, 401, k ? "this API key is disabled or revoked" : "invalid API key");
		return;
	}
	root = cJSON_CreateObject();
	d = cJSON_AddObjectToObject(root, "data");
	snprintf(label, sizeof(label), "%s...", k->prefix);
	cJSON_AddStringToObject(d, "label", label);
	cJSON_AddStringToObject(d, "name", k->name);
	usd_number(d, "usage", k->usage_nusd);
	if (k->limit_nusd >= 0) {
		usd_number(d, "limit", k->limit_nusd);
		usd_number(d, "limit_remaining",
			   k->limit_nusd > k->usage_nusd ? k->limit_nusd - k->usage_nusd : 0);
	} else {
		cJSON_AddNullToObject(d, "limit");
		cJSON_AddNullToObject(d, "limit_remaining");
	}
	cJSON_AddFalseToObject(d, "is_free_tier");
	cJSON_AddBoolToObject(d, "is_provisioning_key", k->operator_key);
	rl = cJSON_AddObjectToObject(d, "rate_limit");
	cJSON_AddNumberToObject(rl, "requests", -1);
	cJSON_AddStringToObject(rl, "interval", "10s");
	httpd_reply_json(req, 200, root);
	cJSON_Delete(root);
}

void
api_key(struct router *rt, struct httpd_req *req)
{
	struct key_lookup *l;
	const char *key;
	size_t len;

	if (!(key = api_bearer(req, &len))) {
		httpd_reply_error(req, 401, "missing API key: send Authorization: Bearer <key>");
		return;
	}
	if (!(l = calloc(1, sizeof(*l)))) {
		httpd_reply_error(req, 503, "out of memory");
		return;
	}
	l->req = req;
	httpd_req_set_abort_cb(req, key_abort_cb, l);
	if (auth_lookup(rt->auth, key, len, 1, key_cb, l) < 0) {
		free(l);
		httpd_reply_error(req, 503, "authentication backend busy");
	}
}

/* ---- GET /health, GET /metrics ---- */

void
api_health(struct router *rt, struct httpd_req *req)
{
	if (strcmp(httpd_req_path(req), "/health/live") == 0)
		httpd_reply(req, 200, "application/json", "{\"status\":\"alive\"}", 18);
	else if (rt->draining)
		httpd_reply_error(req, 503, "draining: this router is shutting down");
	else if (!rt->cat)
		httpd_reply_error(req, 503, "the catalog is not loaded yet");
	else
		httpd_reply(req, 200, "application/json", "{\"status\":\"ok\"}", 15);
}

static void
response_done(const struct httpd_req *req, int status, long long usec, void *arg)
{
	(void)req;
	(void)usec;
	rstats_response(((struct router *)arg)->rs, status);
}

int
api_metrics_init(struct router *rt)
{
	if (!(rt->rs = rstats_new()))
		return -1;
	httpd_set_done_cb(rt->httpd, response_done, rt);
	return 0;
}

void
api_metrics_free(struct router *rt)
{
	rstats_free(rt->rs);
	rt->rs = NULL;
}

static void
endpoint_sample(struct evbuffer *b, const char *name, const struct rcat_endpoint *e, const char *quantile,
		double v)
{
	char id[24];
	const char *const l[] = { "provider", e->prov->id, "model", e->model->id, "endpoint", id,
				  quantile ? "quantile" : NULL, quantile, NULL };

	snprintf(id, sizeof(id), "%lld", (long long)e->id);
	prom_sample(b, name, l, v);
}

/* Per-endpoint gauges of the current snapshot: this router's 30-minute
 * window (TTFT and total latency quantiles, success ratio), the speeds
 * routing uses (the fleet's, else this router's), and the breakers. */
static void
endpoint_metrics(struct evbuffer *b, const struct rcat *c, int64_t now)
{
	struct health_stats *st;

	if (!c || c->neps == 0 || !(st = calloc((size_t)c->neps, sizeof(*st))))
		return;
	for (int i = 0; i < c->neps; i++)
		health_stats(&c->eps[i].health, now, HEALTH_SPAN_MS, &st[i]);
	prom_head(b, "agora_endpoint_ttft_ms", "gauge", "time to first token, last 30 minutes (this router)");
	for (int i = 0; i < c->neps; i++) {
		if (!st[i].nttft)
			continue;
		endpoint_sample(b, "agora_endpoint_ttft_ms", &c->eps[i], "0.5", st[i].ttft.p50);
		endpoint_sample(b, "agora_endpoint_ttft_ms", &c->eps[i], "0.9", st[i].ttft.p90);
	}
	prom_head(b, "agora_endpoint_latency_ms", "gauge", "whole answer time, last 30 minutes (this router)");
	for (int i = 0; i < c->neps; i++) {
		if (!st[i].nlatency)
			continue;
		endpoint_sample(b, "agora_endpoint_latency_ms", &c->eps[i], "0.5", st[i].latency.p50);
		endpoint_sample(b, "agora_endpoint_latency_ms", &c->eps[i], "0.9", st[i].latency.p90);
	}
	prom_head(b, "agora_endpoint_uptime_ratio", "gauge", "successful attempts, last 30 minutes (this router)");
	for (int i = 0; i < c->neps; i++)
		if (st[i].ok + st[i].failed)
			endpoint_sample(b, "agora_endpoint_uptime_ratio", &c->eps[i], NULL,
					(double)st[i].ok / (st[i].ok + st[i].failed));
	prom_head(b, "agora_endpoint_ttft_avg_ms", "gauge", "decaying average TTFT routing uses (fleet, else local)");
	for (int i = 0; i < c->neps; i++)
		if (health_ttft_ms(&c->eps[i].health) > 0)
			endpoint_sample(b, "agora_endpoint_ttft_avg_ms", &c->eps[i], NULL,
					health_ttft_ms(&c->eps[i].health));
	prom_head(b, "agora_endpoint_tps", "gauge", "decaying average output tokens/s routing uses (fleet, else local)");
	for (int i = 0; i < c->neps; i++)
		if (health_tps(&c->eps[i].health) > 0)
			endpoint_sample(b, "agora_endpoint_tps", &c->eps[i], NULL, health_tps(&c->eps[i].health));
	prom_head(b, "agora_endpoint_fleet_routers", "gauge", "routers reporting on the endpoint through Redis");
	for (int i = 0; i < c->neps; i++)
		endpoint_sample(b, "agora_endpoint_fleet_routers", &c->eps[i], NULL, c->eps[i].health.fleet_routers);
	prom_head(b, "agora_endpoint_breaker_open", "gauge", "1 while the endpoint is tried last (here or fleet)");
	for (int i = 0; i < c->neps; i++)
		endpoint_sample(b, "agora_endpoint_breaker_open", &c->eps[i], NULL,
				route_state(&c->eps[i], now) == ROUTE_OPEN);
	free(st);
}

/* Connections, in-flight work, upstream pool and metering. */
/* The Redis client (lib/rds): commands, and in cluster or sentinel mode
 * the redirections and topology lookups that show a moving cluster. */
static void
redis_metrics(struct evbuffer *b, const struct rds *r)
{
	struct rds_stats st;

	rds_stats(r, &st);
	prom_counter(b, "agora_router_redis_commands", "Redis commands sent", st.sent);
	prom_counter(b, "agora_router_redis_failed", "Redis commands answered by a lost link or not sendable", st.failed);
	prom_counter(b, "agora_router_redis_moved", "cluster MOVED redirections followed", st.moved);
	prom_counter(b, "agora_router_redis_ask", "cluster ASK redirections followed", st.ask);
	prom_counter(b, "agora_router_redis_slot_refreshes", "cluster slot map reloads", st.refreshes);
	prom_counter(b, "agora_router_redis_master_resolves", "sentinel master lookups", st.resolves);
}

static void
router_gauges(struct router *rt, struct evbuffer *b)
{
	struct upstream_stats us;
	struct meter_stats ms;

	upstream_pool_stats(rt->up, &us);
	meter_stats(rt->meter, &ms);
	prom_gauge(b, "agora_router_ready", "1 when /health answers 200 (catalog loaded, not draining)",
		   rt->cat && !rt->draining);
	prom_gauge(b, "agora_router_draining", "1 after SIGTERM, while requests finish", rt->draining);
	prom_gauge(b, "agora_router_client_connections", "open client connections", httpd_connections(rt->httpd));
	prom_gauge(b, "agora_router_inflight", "chat completions in progress", rt->inflight);
	prom_gauge(b, "agora_router_streams_in_flight", "completions streaming to their client", rt->streams_inflight);
	prom_gauge(b, "agora_router_upstream_connections", "open upstream connections", (double)us.open);
	prom_gauge(b, "agora_router_upstream_idle", "idle pooled upstream connections", (double)us.idle);
	prom_counter(b, "agora_router_upstream_connects", "upstream connections opened", us.connects);
	prom_counter(b, "agora_router_upstream_reuses", "upstream requests on a pooled connection", us.reuses);
	prom_gauge(b, "agora_router_catalog_version", "catalog version loaded (-1: none)",
		   rt->cat ? (double)rt->cat->version : -1);
	prom_counter(b, "agora_router_usage_events", "usage events emitted", ms.emitted);
	prom_counter(b, "agora_router_usage_spooled", "usage events written to the spool", ms.spooled);
	prom_counter(b, "agora_router_usage_replayed", "spooled usage events replayed to Redis", ms.replayed);
	prom_gauge(b, "agora_router_spool_bytes", "bytes in the usage spool (its depth)", (double)ms.spool_bytes);
	prom_gauge(b, "agora_router_spool_events", "usage events spooled and not replayed yet (this run)",
		   (double)(ms.spooled > ms.replayed ? ms.spooled - ms.replayed : 0));
	prom_gauge(b, "agora_router_spool_max_bytes", "spool bound (completions answer 503 at it)",
		   (double)rt->conf.spool_max_bytes);
	prom_counter(b, "agora_router_xadd_errors", "XADDs Redis refused (the event went to the spool)", ms.xadd_errors);
	prom_gauge(b, "agora_router_redis_up", "1 while Redis is connected", rds_is_connected(rt->redis));
	redis_metrics(b, rt->redis);
}

void
api_metrics(struct router *rt, struct httpd_req *req)
{
	struct evbuffer *b = evbuffer_new();
	size_t len;

	if (!b) {
		httpd_reply_error(req, 503, "out of memory");
		return;
	}
#define X(name, help) prom_counter(b, "agora_router_" #name, help, rt->st.name);
	ROUTER_STATS(X)
#undef X
	router_gauges(rt, b);
	rstats_write(rt->rs, b);
	endpoint_metrics(b, rt->cat, clock_wall_ms());
	len = evbuffer_get_length(b);
	httpd_reply(req, 200, PROM_CONTENT_TYPE, evbuffer_pullup(b, (ev_ssize_t)len), len);
	evbuffer_free(b);
}

/* ---- GET /generation?id=, GET /credits: account-scoped reads ---- */

enum acct_query { AQ_GENERATION, AQ_CREDITS };

struct acct_lookup {
	struct router *rt;
	struct httpd_req *req;
	enum acct_query kind;
	char gen_id[64];
	char gen_secs[24];		/* the time in the id (gen-<unix s>-...), or "" */
};

static const char generation_sql[] =
	"SELECT e.generation_id, "
	"to_char(e.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), "
	"e.model_id, e.provider_id, coalesce(p.name, e.provider_id), e.prompt_tokens::text, "
	"e.completion_tokens::text, e.cost_nusd::text, e.latency_ms::text, e.ttft_ms::text, "
	"e.streamed::text, e.estimated::text, e.status::text, e.attempts::text, "
	"coalesce(e.finish_reason, ''), coalesce(e.app_title, ''), coalesce(e.app_url, ''), e.tps_milli::text, "
	"coalesce(e.provider_responses::text, ''), e.endpoint_id::text, "
	/* not found: the retention boundary when the id's time is before it */
	"(SELECT to_char(max(range_to) AT TIME ZONE 'UTC', 'YYYY-MM-DD') FROM partition_archives "
	" WHERE parent = 'usage_events' HAVING max(range_to) > to_timestamp($3::bigint)) "
	"FROM (SELECT 1) one LEFT JOIN (usage_events e LEFT JOIN providers p ON p.id = e.provider_id) "
	"ON e.generation_id = $1 AND e.account_id = $2::bigint";

static const char credits_sql[] =
	"SELECT coalesce(sum(amount_nusd) FILTER (WHERE kind IN ('topup', 'adjustment', 'refund')), 0)::text, "
	"coalesce(-sum(amount_nusd) FILTER (WHERE kind = 'usage'), 0)::text "
	"FROM ledger WHERE account_id = $1::bigint";

static int64_t
col_i64(const PGresult *res, int c)
{
	return strtoll(PQgetvalue(res, 0, c), NULL, 10);
}

/* Every attempt of a generation; events of a generation served at the
 * first attempt store none: it is the served one. */
static cJSON *
provider_responses(const PGresult *res)
{
	cJSON *tried = *PQgetvalue(res, 0, 18) ? cJSON_Parse(PQgetvalue(res, 0, 18)) : NULL, *o;

	if (cJSON_IsArray(tried))
		return tried;
	cJSON_Delete(tried);
	tried = cJSON_CreateArray();
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "provider", PQgetvalue(res, 0, 3));
	cJSON_AddStringToObject(o, "provider_name", PQgetvalue(res, 0, 4));
	cJSON_AddStringToObject(o, "model", PQgetvalue(res, 0, 2));
	cJSON_AddNumberToObject(o, "endpoint_id", (double)col_i64(res, 19));
	cJSON_AddNumberToObject(o, "status", (double)col_i64(res, 12));
	cJSON_AddNumberToObject(o, "latency", (double)col_i64(res, 8));
	cJSON_AddItemToArray(tried, o);
	return tried;
}

static cJSON *
generation_json(const PGresult *res)
{
	cJSON *d = cJSON_CreateObject();
	const char *app = *PQgetvalue(res, 0, 15) ? PQgetvalue(res, 0, 15) : PQgetvalue(res, 0, 16);
	int64_t latency = col_i64(res, 8), ttft = col_i64(res, 9);

	cJSON_AddStringToObject(d, "id", PQgetvalue(res, 0, 0));
	cJSON_AddStringToObject(d, "created_at", PQgetvalue(res, 0, 1));
	cJSON_AddStringToObject(d, "model", PQgetvalue(res, 0, 2));
	cJSON_AddStringToObject(d, "provider", PQgetvalue(res, 0, 3));
	cJSON_AddStringToObject(d, "provider_name", PQgetvalue(res, 0, 4));
	cJSON_AddNumberToObject(d, "tokens_prompt", (double)col_i64(res, 5));
	cJSON_AddNumberToObject(d, "tokens_completion", (double)col_i64(res, 6));
	usd_number(d, "total_cost", col_i64(res, 7));
	cJSON_AddNumberToObject(d, "latency", (double)latency);
	cJSON_AddNumberToObject(d, "time_to_first_token", (double)ttft);
	cJSON_AddNumberToObject(d, "generation_time", (double)(latency - ttft));
	cJSON_AddNumberToObject(d, "tokens_per_second", (double)col_i64(res, 17) / 1000.0);
	cJSON_AddBoolToObject(d, "streamed", strcmp(PQgetvalue(res, 0, 10), "true") == 0);
	cJSON_AddBoolToObject(d, "usage_estimated", strcmp(PQgetvalue(res, 0, 11), "true") == 0);
	cJSON_AddNumberToObject(d, "status", (double)col_i64(res, 12));
	cJSON_AddBoolToObject(d, "cancelled", col_i64(res, 12) == 499);
	cJSON_AddNumberToObject(d, "attempts", (double)col_i64(res, 13));
	if (*PQgetvalue(res, 0, 14))
		cJSON_AddStringToObject(d, "finish_reason", PQgetvalue(res, 0, 14));
	else
		cJSON_AddNullToObject(d, "finish_reason");
	if (*app)
		cJSON_AddStringToObject(d, "app", app);
	else
		cJSON_AddNullToObject(d, "app");
	cJSON_AddFalseToObject(d, "is_byok");
	cJSON_AddItemToObject(d, "provider_responses", provider_responses(res));
	return d;
}

static void
acct_result_cb(PGresult *res, const char *err, void *arg)
{
	struct acct_lookup *l = arg;
	struct httpd_req *req = l->req;
	enum acct_query kind = l->kind;
	cJSON *root, *d;

	free(l);
	if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
		log_warn("account query failed: %s", res ? PQresultErrorMessage(res) : err);
		httpd_reply_error(req, 503, "database unavailable");
		return;
	}
	if (PQntuples(res) == 0 || PQgetisnull(res, 0, 0)) {
		if (kind == AQ_GENERATION && !PQgetisnull(res, 0, 20))
			httpd_reply_error(req, 404, "generation not found: it is past retention (usage events before %s "
					  "are archived; statements, balances and analytics still count it)",
					  PQgetvalue(res, 0, 20));
		else
			httpd_reply_error(req, 404, "generation not found (it is recorded a moment after it ends)");
		return;
	}
	root = cJSON_CreateObject();
	if (kind == AQ_GENERATION) {
		cJSON_AddItemToObject(root, "data", generation_json(res));
	} else {
		d = cJSON_AddObjectToObject(root, "data");
		usd_number(d, "total_credits", col_i64(res, 0));
		usd_number(d, "total_usage", col_i64(res, 1));
	}
	httpd_reply_json(req, 200, root);
	cJSON_Delete(root);
}

static void
acct_auth_cb(const struct auth_key *k, const char *err, void *arg)
{
	struct acct_lookup *l = arg;
	char acct[24];
	const char *params[3];
	int n = 0;

	if (err || !k || !k->usable) {
		struct httpd_req *req = l->req;

		free(l);
		if (err)
			httpd_reply_error(req, 503, "%s", err);
		else
			httpd_reply_error(req, 401, k ? "this API key is disabled or revoked" : "invalid API key");
		return;
	}
	snprintf(acct, sizeof(acct), "%lld", (long long)k->account_id);
	if (l->kind == AQ_GENERATION)
		params[n++] = l->gen_id;
	params[n++] = acct;
	if (l->kind == AQ_GENERATION)
		params[n++] = l->gen_secs[0] ? l->gen_secs : NULL;
	if (pgc_query(l->rt->pg_auth, l->kind == AQ_GENERATION ? generation_sql : credits_sql, n, params,
		      acct_result_cb, l) < 0) {
		struct httpd_req *req = l->req;

		free(l);
		httpd_reply_error(req, 503, "too many queries in flight");
	}
}

static void
acct_query(struct router *rt, struct httpd_req *req, enum acct_query kind, const char *gen_id)
{
	struct acct_lookup *l;
	const char *key;
	size_t len, n;

	if (!(key = api_bearer(req, &len))) {
		httpd_reply_error(req, 401, "missing API key: send Authorization: Bearer <key>");
		return;
	}
	if (!(l = calloc(1, sizeof(*l)))) {
		httpd_reply_error(req, 503, "out of memory");
		return;
	}
	l->rt = rt;
	l->req = req;
	l->kind = kind;
	if (gen_id) {
		snprintf(l->gen_id, sizeof(l->gen_id), "%s", gen_id);
		if (strncmp(gen_id, "gen-", 4) == 0 && (n = strspn(gen_id + 4, "0123456789")) > 0 && n < 12)
			snprintf(l->gen_secs, sizeof(l->gen_secs), "%.*s", (int)n, gen_id + 4);
	}
	if (auth_lookup(rt->auth, key, len, 0, acct_auth_cb, l) < 0) {
		free(l);
		httpd_reply_error(req, 503, "authentication backend busy");
	}
}

void
api_generation(struct router *rt, struct httpd_req *req)
{
	const char *q = httpd_req_query(req), *p;
	char id[64];
	size_t n = 0;

	for (p = q; p && *p; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL) {
		if (strncmp(p, "id=", 3) == 0) {
			p += 3;
			while (p[n] && p[n] != '&' && n < sizeof(id) - 1) {
				char ch = p[n];

				if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
				      (ch >= '0' && ch <= '9') || ch == '-' || ch == '_'))
					break;
				id[n] = ch;
				n++;
			}
			break;
		}
	}
	if (n == 0 || (p && p[n] && p[n] != '&')) {
		httpd_reply_error(req, 400, "give the generation id: /generation?id=gen-...");
		return;
	}
	id[n] = '\0';
	acct_query(rt, req, AQ_GENERATION, id);
}

void
api_credits(struct router *rt, struct httpd_req *req)
{
	acct_query(rt, req, AQ_CREDITS, NULL);
}
