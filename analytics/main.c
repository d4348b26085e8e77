/*
 * agora-analytics: the read side. Everything it shows comes from the tables
 * billing writes (usage_events, ledger, usage_daily, usage_hourly,
 * attempts_hourly) and from the router's live counters in Redis.
 *
 *   GET /health, /metrics                      public
 *   GET /api/v1/analytics/overview             public catalog counts
 *   GET /api/v1/analytics/{share,share/series,providers,live,check}
 *                                              operator keys (market-wide)
 *   GET /api/v1/analytics/{spend,statement}, /api/v1/activity
 *                                              any key; inference keys see
 *                                              only their own account
 *   /api/v1/analytics/reconciliation...        operator keys, recon.c
 *   other GET paths                            the dashboards, pages.c
 *
 * Keys are verified as the router does (lib/auth: HMAC hash, cache, NOTIFY
 * agora_keys evictions). Queries run through pgc and Redis through hiredis's
 * libevent adapter: the loop never waits.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "ametrics.h"
#include "ana.h"
#include "clock.h"
#include "keyhash.h"
#include "log.h"
#include "pages.h"
#include "prom.h"
#include "recon.h"
#include "replica.h"

#define RECON_PREFIX "/api/v1/analytics/reconciliation"
#define STOP_POLL_MS 50

/* What SIGHUP may change here; keys only others read are ignored. */
#define ANA_LIVE "log_level key_cache_ttl_ms drain_timeout_ms"
#define ANA_UNUSED CONF_ROUTER_KEYS " billing_batch billing_claim_idle_ms billing_linger_ms"

static struct ana A;
static struct ametrics *M;	/* requests by endpoint class (ametrics.c) */
static const char *conf_path;
static struct event *stop_timer;
static int64_t stop_deadline;

static const char overview_sql[] =
	"SELECT (SELECT count(*) FROM providers WHERE status = 'active')::text, "
	"(SELECT count(*) FROM models WHERE status = 'active')::text, "
	"(SELECT count(*) FROM endpoints WHERE status = 'active')::text, "
	"(SELECT count(*) FROM accounts)::text, "
	"(SELECT version FROM catalog_version WHERE id = 1)::text";

/* The authenticated API: path, operator keys only (market-wide), handler. */
struct route {
	const char *path;
	int market;
	void (*fn)(struct areq *x);
};

static const struct route routes[] = {
	{ "/api/v1/analytics/share", 1, api_share },
	{ "/api/v1/analytics/share/series", 1, api_share_series },
	{ "/api/v1/analytics/providers", 1, api_providers },
	{ "/api/v1/analytics/live", 1, api_live },
	{ "/api/v1/analytics/check", 1, api_check },
	{ "/api/v1/analytics/spend", 0, api_spend },
	{ "/api/v1/analytics/statement", 0, api_statement },
	{ "/api/v1/activity", 0, api_activity },
};

/* ---- public endpoints ---- */

static void
overview_cb(PGresult *res, const char *err, void *arg)
{
	struct httpd_req *req = arg;
	static const char *const names[] = { "providers", "models", "endpoints", "accounts",
					     "catalog_version" };
	cJSON *root, *d;

	if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
		httpd_reply_error(req, 503, "database unavailable: %s",
				  res ? PQresultErrorMessage(res) : err);
		return;
	}
	root = cJSON_CreateObject();
	d = cJSON_AddObjectToObject(root, "data");
	for (int i = 0; i < 5; i++)
		cJSON_AddNumberToObject(d, names[i], strtod(PQgetvalue(res, 0, i), NULL));
	httpd_reply_json(req, 200, root);
	cJSON_Delete(root);
}

/* 200 once PostgreSQL answers a query. */
static void
health_cb(PGresult *res, const char *err, void *arg)
{
	struct httpd_req *req = arg;

	if (!res || PQresultStatus(res) != PGRES_TUPLES_OK)
		httpd_reply_error(req, 503, "database unavailable: %s", res ? PQresultErrorMessage(res) : err);
	else
		httpd_reply(req, 200, "application/json", "{\"status\":\"ok\"}", 15);
}

static void
metrics(struct httpd_req *req)
{
	struct evbuffer *b = evbuffer_new();
	size_t len;

	if (!b) {
		httpd_reply_error(req, 503, "out of memory");
		return;
	}
#define X(name, help) prom_counter(b, "agora_analytics_" #name, help, A.st.name);
	ANA_STATS(X)
#undef X
	prom_head(b, "agora_analytics_pg_connected", "gauge", "query connections up");
	for (int i = 0; i < ANA_PG_POOL; i++) {
		char n[12];
		const char *const l[] = { "conn", n, NULL };

		snprintf(n, sizeof(n), "%d", i);
		prom_sample_int(b, "agora_analytics_pg_connected", l, pgc_is_connected(A.pg[i]));
	}
	prom_gauge(b, "agora_analytics_redis_connected", "live counters reachable", rds_is_connected(A.rd));
	replica_lag_metrics(A.lag, b);
	ametrics_write(M, b);
	len = evbuffer_get_length(b);
	httpd_reply(req, 200, PROM_CONTENT_TYPE, evbuffer_pullup(b, -1), len);
	evbuffer_free(b);
}

/* ---- authentication and dispatch ---- */

struct pending {
	struct areq *x;
	const struct route *rt;		/* NULL: reconciliation */
};

static const char *
bearer(struct httpd_req *req, size_t *len)
{
	const char *h = httpd_req_header(req, "Authorization"), *end;

	if (!h || strncasecmp(h, "Bearer ", 7) != 0)
		return NULL;
	for (h += 7; *h == ' '; h++)
		;
	end = h + strlen(h);
	while (end > h && end[-1] == ' ')
		end--;
	*len = (size_t)(end - h);
	return end > h ? h : NULL;
}

static void
dispatch(struct areq *x, const struct route *rt)
{
	struct httpd_req *req = x->req;

	if (rt) {
		A.st.api_requests++;
		rt->fn(x);
		return;
	}
	free(x);		/* recon answers the request itself */
	A.st.api_requests++;
	if (!recon_route(A.pg_write, req, httpd_req_path(req)))
		httpd_reply_error(req, 404, "no such page: %s", httpd_req_path(req));
}

static void
auth_cb(const struct auth_key *k, const char *err, void *arg)
{
	struct pending *p = arg;
	struct areq *x = p->x;
	const struct route *rt = p->rt;

	free(p);
	if (err) {
		ana_fail(x, 503, "%s", err);
		return;
	}
	if (!k || !k->usable) {
		A.st.auth_failures++;
		ana_fail(x, 401, k ? "this API key is disabled or revoked" : "invalid API key");
		return;
	}
	if (!k->operator_key && (!rt || rt->market)) {
		A.st.auth_failures++;
		ana_fail(x, 403, "%s is market-wide: it needs an operator key (an inference key sees only "
			 "its own account's spend, statement and activity)", x->name);
		return;
	}
	/* scopes: market-wide reads need 'analytics', reconciliation 'finance' */
	if (k->operator_key && ((rt && rt->market && !(k->scopes & AUTH_SCOPE_ANALYTICS)) ||
				(!rt && !(k->scopes & AUTH_SCOPE_FINANCE)))) {
		A.st.auth_failures++;
		ana_fail(x, 403, "this operator key lacks the '%s' scope for %s",
			 rt ? "analytics" : "finance", x->name);
		return;
	}
	/* without 'finance' an operator key reads only its own account */
	x->operator_key = k->operator_key && (k->scopes & AUTH_SCOPE_FINANCE);
	x->account_id = k->account_id;
	dispatch(x, rt);
}

static void
authenticate(struct httpd_req *req, const struct route *rt, const char *name)
{
	struct pending *p;
	struct areq *x;
	const char *key;
	size_t len;

	if (!(key = bearer(req, &len))) {
		A.st.auth_failures++;
		httpd_reply_error(req, 401, "missing API key: send Authorization: Bearer <key>");
		return;
	}
	if (!(x = calloc(1, sizeof(*x))) || !(p = calloc(1, sizeof(*p)))) {
		free(x);
		httpd_reply_error(req, 503, "out of memory");
		return;
	}
	x->a = &A;
	x->req = req;
	snprintf(x->name, sizeof(x->name), "%s", name);
	p->x = x;
	p->rt = rt;
	if (auth_lookup(A.auth, key, len, 0, auth_cb, p) < 0) {
		free(p);
		ana_fail(x, 503, "authentication backend busy");
	}
}

static const struct route *
find_route(const char *path)
{
	size_t n = strlen(path);

	if (n > 1 && path[n - 1] == '/')	/* one trailing slash is tolerated */
		n--;
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
		if (strlen(routes[i].path) == n && strncmp(routes[i].path, path, n) == 0)
			return &routes[i];
	return NULL;
}

/* The API's short name from its path ("share/series"), for logs and files. */
static const char *
api_name(const char *path)
{
	const char *p = strncmp(path, "/api/v1/analytics/", 18) == 0 ? path + 18 : path + 8;

	return *p ? p : "api";
}

static void
handle_api(struct httpd_req *req, const char *path)
{
	const struct route *rt;
	char name[32];

	if (strncmp(path, RECON_PREFIX, sizeof(RECON_PREFIX) - 1) == 0 &&
	    (path[sizeof(RECON_PREFIX) - 1] == '\0' || path[sizeof(RECON_PREFIX) - 1] == '/')) {
		authenticate(req, NULL, "reconciliation");
		return;
	}
	if (strcmp(path, "/api/v1/analytics/overview") == 0 && strcmp(httpd_req_method(req), "GET") == 0) {
		if (pgc_query(ana_pick_pg(&A), overview_sql, 0, NULL, overview_cb, req) < 0)
			httpd_reply_error(req, 503, "too many queries in flight");
		return;
	}
	if (!(rt = find_route(path))) {
		httpd_reply_error(req, 404, "no such API: %s", path);
		return;
	}
	if (strcmp(httpd_req_method(req), "GET") != 0) {
		httpd_add_header(req, "Allow", "GET");
		httpd_reply_error(req, 405, "method not allowed: %s takes GET", path);
		return;
	}
	snprintf(name, sizeof(name), "%s", api_name(rt->path));
	for (char *c = name; *c; c++)
		if (*c == '/')
			*c = '-';
	authenticate(req, rt, name);
}

static void
handle(struct httpd_req *req, void *arg)
{
	const char *path = httpd_req_path(req);
	int get = strcmp(httpd_req_method(req), "GET") == 0 || strcmp(httpd_req_method(req), "HEAD") == 0;

	(void)arg;
	A.st.requests_total++;
	if (strncmp(path, "/api/", 5) == 0) {
		handle_api(req, path);
	} else if (!get) {
		httpd_reply_error(req, 405, "method not allowed");
	} else if (strcmp(path, "/health") == 0) {
		if (pgc_query(ana_pick_pg(&A), "SELECT 1", 0, NULL, health_cb, req) < 0)
			httpd_reply_error(req, 503, "too many queries in flight");
	} else if (strcmp(path, "/metrics") == 0) {
		metrics(req);
	} else if (pages_serve(req, path)) {
		return;
	} else {
		httpd_reply_error(req, 404, "no such page: %s", path);
	}
}

/* ---- process ---- */

static void
ignore_cb(PGresult *res, const char *err, void *arg)
{
	(void)arg;
	if (!res || (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK))
		log_warn("postgresql: session setup failed: %s", res ? PQresultErrorMessage(res) : err);
}

static void
auth_connected_cb(struct pgc *pg, void *arg)
{
	(void)arg;
	pgc_query(pg, "LISTEN agora_keys", 0, NULL, ignore_cb, NULL);
	auth_clear(A.auth);	/* evictions may have been missed while away */
}

/* Every query connection: UTC dates (PgBouncer tracks TimeZone per client,
 * so this holds behind a transaction pool too); room to aggregate in memory
 * and a statement time-out under the connection's own (pgc resets a
 * connection whose query overruns; this fails only the query) are startup
 * options of the connection (replica_read_dsn). */
static void
query_connected_cb(struct pgc *pg, void *arg)
{
	(void)arg;
	pgc_query(pg, "SELECT set_config('TimeZone', 'UTC', false)", 0, NULL, ignore_cb, NULL);
}

static void
notify_cb(const char *channel, const char *payload, void *arg)
{
	(void)arg;
	if (strcmp(channel, "agora_keys") == 0)
		auth_evict_hex(A.auth, payload);
}

/* Draining: answers being made finish (up to drain_timeout_ms). */
static void
stop_cb(evutil_socket_t fd, short what, void *arg)
{
	struct timeval tv = { 0, STOP_POLL_MS * 1000 };

	(void)fd;
	(void)what;
	(void)arg;
	if (httpd_busy(A.httpd) == 0 || clock_mono_ms() >= stop_deadline) {
		event_base_loopexit(A.base, NULL);
		return;
	}
	evtimer_add(stop_timer, &tv);
}

static void
reload(void)
{
	int lvl;

	if (conf_reload(&A.conf, conf_path, ANA_LIVE, ANA_UNUSED) < 0)
		return;
	auth_set_ttl(A.auth, A.conf.key_cache_ttl_ms);
	log_info("reload: done");
	lvl = log_level_parse(A.conf.log_level);	/* last: the reload is logged as before */
	log_init("agora-analytics", lvl < 0 ? LOG_INFO : (enum log_level)lvl);
}

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	(void)arg;
	if (sig == SIGHUP) {
		reload();
		return;
	}
	if (A.stopping || !(stop_timer = evtimer_new(A.base, stop_cb, NULL))) {
		event_base_loopexit(A.base, NULL);	/* second signal: now */
		return;
	}
	log_info("signal %d: draining %d requests (at most %d ms)", (int)sig, httpd_busy(A.httpd),
		 A.conf.drain_timeout_ms);
	A.stopping = 1;
	httpd_drain(A.httpd);
	stop_deadline = clock_mono_ms() + A.conf.drain_timeout_ms;
	stop_cb(-1, 0, NULL);
}

static int
setup(void)
{
	const struct agora_conf *c = &A.conf;
	char *read_dsn = replica_read_dsn(c);
	char err[256] = "out of memory";

	if (!read_dsn || !(M = ametrics_new()) || !(A.base = event_base_new()) ||
	    !(A.pg_auth = pgc_new(A.base, conf_pg_listen_dsn(c), c->pg_timeout_ms, 1024)) ||
	    !(A.pg_write = pgc_new(A.base, c->pg_dsn, c->pg_timeout_ms, 256)) ||
	    !(A.auth = auth_new(A.pg_auth, c->key_secret, c->key_cache_ttl_ms)) ||
	    !(A.rd = rds_new(A.base, c, err, sizeof(err))) || !(A.lag = replica_lag_new(&A, 2000))) {
		log_error("setup: %s", err);
		goto fail;
	}
	conf_forget_redis_passwords(&A.conf);
	for (int i = 0; i < ANA_PG_POOL; i++) {
		if (!(A.pg[i] = pgc_new(A.base, read_dsn, c->pg_timeout_ms, 256)))
			goto fail;
		pgc_set_connect_cb(A.pg[i], query_connected_cb, NULL);
	}
	free(read_dsn);
	pgc_set_connect_cb(A.pg_auth, auth_connected_cb, NULL);
	pgc_set_notify_cb(A.pg_auth, notify_cb, NULL);
	return 0;
fail:
	free(read_dsn);
	return -1;
}

/* Pending callbacks answer 503 while things are freed: the listener first,
 * then key lookups (which may dispatch to the pool), then Redis and the
 * pool. */
static void
teardown(void)
{
	httpd_free(A.httpd);
	pgc_free(A.pg_auth);
	auth_free(A.auth);
	rds_free(A.rd);
	for (int i = 0; i < ANA_PG_POOL; i++)
		pgc_free(A.pg[i]);
	pgc_free(A.pg_write);
	replica_lag_free(A.lag);	/* after the pool: its query's callback */
	if (A.base)
		event_base_free(A.base);
	ametrics_free(M);
}

static int
serve(void)
{
	struct httpd_limits hl = { 16384, 8 << 20, 64, 1000, 10000, 60000, 60000 };
	struct event *sigterm, *sigint, *sighup;
	char err[512];

	sigterm = evsignal_new(A.base, SIGTERM, signal_cb, NULL);
	sigint = evsignal_new(A.base, SIGINT, signal_cb, NULL);
	sighup = evsignal_new(A.base, SIGHUP, signal_cb, NULL);
	event_add(sigterm, NULL);
	event_add(sigint, NULL);
	event_add(sighup, NULL);
	if (!(A.httpd = httpd_new(A.base, A.conf.analytics_listen, &hl, handle, NULL, err, sizeof(err)))) {
		log_error("%s", err);
		event_free(sigterm);
		event_free(sigint);
		event_free(sighup);
		return 1;
	}
	httpd_set_done_cb(A.httpd, ametrics_done, M);
	pgc_connect(A.pg_auth);
	for (int i = 0; i < ANA_PG_POOL; i++)
		pgc_connect(A.pg[i]);
	rds_connect(A.rd);
	log_info("listening on %s", A.conf.analytics_listen);
	event_base_dispatch(A.base);
	event_free(sigterm);
	event_free(sigint);
	event_free(sighup);
	if (stop_timer)
		event_free(stop_timer);
	return 0;
}

int
main(int argc, char **argv)
{
	char err[512];
	int lvl, rc = 1;

	conf_path = getenv("AGORA_CONF");
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
			conf_path = argv[++i];
		} else {
			fprintf(stderr, "usage: agora-analytics [-c CONFIG]\n");
			return 2;
		}
	}
	if (conf_load(&A.conf, conf_path, err, sizeof(err)) < 0) {
		fprintf(stderr, "agora-analytics: %s\n", err);
		return 1;
	}
	lvl = log_level_parse(A.conf.log_level);
	log_init("agora-analytics", lvl < 0 ? LOG_INFO : (enum log_level)lvl);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN);	/* until the loop handles it */
	if (!A.conf.key_secret[0]) {
		log_error("no key_secret (or key_secret_file) configured: API keys cannot be verified");
		return 1;
	}
	if (A.conf.web_dir[0] && pages_init(A.conf.web_dir) < 0)
		return 1;	/* a configured web_dir must hold the pages */
	if (setup() == 0)
		rc = serve();
	else
		log_error("out of memory at start");
	teardown();
	log_info("stopped");
	return rc;
}
