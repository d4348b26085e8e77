/*
 * agora-router: the hot path. Reads the configuration, connects to
 * PostgreSQL (catalog and keys, asynchronously), listens for clients and
 * proxies chat completions to providers. One event loop; nothing blocks.
 * SIGTERM/SIGINT drain (stop accepting, let requests finish, up to 10 s).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/thread.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "log.h"
#include "router.h"
#include "secretbox.h"

#define DRAIN_MAX_MS 10000
#define MAX_WORKERS 64

static struct router rt;
static int64_t drain_deadline;
static SSL_CTX *listen_tls;		/* tls_cert_file set: the listener's */
static SSL_CTX *listen_tls_new(const char *cert, const char *key, char *err, size_t len);
static struct event *drain_timer;
static pid_t worker_pids[MAX_WORKERS];	/* worker 0 (the first process): the others */
static int nworker_pids;

/* ---- catalog ---- */

static void catalog_load(void);

static void
catalog_loaded_cb(PGresult *res, const char *err, void *arg)
{
	struct rcat *c;
	char msg[256];

	(void)arg;
	rt.cat_loading = 0;
	if (!res || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		log_warn("catalog: load failed: %s", res ? PQresultErrorMessage(res) : err);
		return;
	}
	c = rcat_from_row(PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 2),
			  PQgetvalue(res, 0, 3), rt.cat, msg, sizeof(msg));
	if (!c) {
		log_error("%s", msg);
		return;
	}
	if (rt.cat)
		rcat_unref(rt.cat);
	rt.cat = c;
	rt.st.catalog_reloads++;
	log_info("catalog: version %lld, %d providers, %d models, %d endpoints",
		 (long long)c->version, c->nprovs, c->nmodels, c->neps);
}

static void
catalog_load(void)
{
	if (rt.cat_loading)
		return;
	if (pgc_query(rt.pg_ctl, rcat_sql, 0, NULL, catalog_loaded_cb, NULL) == 0)
		rt.cat_loading = 1;
}

static void
version_cb(PGresult *res, const char *err, void *arg)
{
	(void)err;
	(void)arg;
	if (!res || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
		return;
	if (!rt.cat || strtoll(PQgetvalue(res, 0, 0), NULL, 10) != rt.cat->version)
		catalog_load();
}

static void
poll_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	if (rt.cat_loading)
		return;
	pgc_query(rt.pg_ctl, "SELECT version::text FROM catalog_version WHERE id = 1", 0, NULL,
		  version_cb, NULL);
}

static void
ignore_cb(PGresult *res, const char *err, void *arg)
{
	(void)arg;
	if (!res || PQresultStatus(res) != PGRES_COMMAND_OK)
		log_warn("postgresql: LISTEN failed: %s", res ? PQresultErrorMessage(res) : err);
}

static void
ctl_connected_cb(struct pgc *pg, void *arg)
{
	(void)arg;
	pgc_query(pg, "LISTEN agora_catalog", 0, NULL, ignore_cb, NULL);
	pgc_query(pg, "LISTEN agora_keys", 0, NULL, ignore_cb, NULL);
	rt.cat_loading = 0;
	catalog_load();	/* notifications may have been missed while away */
}

static void
notify_cb(const char *channel, const char *payload, void *arg)
{
	(void)arg;
	if (strcmp(channel, "agora_catalog") == 0)
		catalog_load();
	else if (strcmp(channel, "agora_keys") == 0)
		auth_evict_hex(rt.auth, payload);
}

static void
redis_connected_cb(struct rds *r, void *arg)
{
	(void)r;
	(void)arg;
	meter_redis_up(rt.meter);
}

/* ---- HTTP dispatch ---- */

static int
path_is(const char *path, const char *suffix)
{
	return (strncmp(path, "/api/v1", 7) == 0 && strcmp(path + 7, suffix) == 0) ||
	       (strncmp(path, "/v1", 3) == 0 && strcmp(path + 3, suffix) == 0);
}

/* "/api/v1/models/{author}/{slug}/endpoints" -> "author/slug". */
static int
endpoints_model(const char *path, char *out, size_t len)
{
	const char *p = strncmp(path, "/api/v1/models/", 15) == 0 ? path + 15
			: strncmp(path, "/v1/models/", 11) == 0	   ? path + 11 : NULL;
	const char *end;
	size_t n;

	if (!p || !(end = strstr(p, "/endpoints")) || end[10] != '\0')
		return 0;
	n = (size_t)(end - p);
	if (n == 0 || n >= len || !memchr(p, '/', n))
		return 0;
	memcpy(out, p, n);
	out[n] = '\0';
	return 1;
}

static void
reply_health(struct httpd_req *req)
{
	if (rt.cat)
		httpd_reply(req, 200, "application/json", "{\"status\":\"ok\"}", 15);
	else
		httpd_reply_error(req, 503, "the catalog is not loaded yet");
}

static void
reply_options(struct httpd_req *req)
{
	httpd_add_header(req, "Access-Control-Allow-Origin", "*");
	httpd_add_header(req, "Access-Control-Allow-Methods", "GET, POST, PATCH, DELETE, OPTIONS");
	httpd_add_header(req, "Access-Control-Allow-Headers",
			 "Authorization, Content-Type, HTTP-Referer, X-Title, X-OpenRouter-Title");
	httpd_add_header(req, "Access-Control-Max-Age", "86400");
	httpd_reply(req, 204, NULL, NULL, 0);
}

static void
router_handle(struct httpd_req *req, void *arg)
{
	const char *m = httpd_req_method(req), *path = httpd_req_path(req);
	int get = strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0, post = strcmp(m, "POST") == 0;
	char model[512];

	(void)arg;
	rt.st.requests_total++;
	if (strcmp(m, "OPTIONS") == 0) {
		reply_options(req);
		return;
	}
	httpd_add_header(req, "Access-Control-Allow-Origin", "*");
	if (path_is(path, "/chat/completions")) {
		if (post)
			proxy_chat(&rt, req);
		else
			httpd_reply_error(req, 405, "use POST for chat completions");
	} else if (get && path_is(path, "/models")) {
		api_models(&rt, req);
	} else if (get && endpoints_model(path, model, sizeof(model))) {
		api_model_endpoints(&rt, req, model);
	} else if (get && (path_is(path, "/key") || path_is(path, "/auth/key"))) {
		api_key(&rt, req);
	} else if (path_is(path, "/keys")) {
		api_keys(&rt, req, NULL);
	} else if (strncmp(path, "/api/v1/keys/", 13) == 0 || strncmp(path, "/v1/keys/", 9) == 0) {
		api_keys(&rt, req, strrchr(path, '/') + 1);
	} else if (get && path_is(path, "/generation")) {
		api_generation(&rt, req);
	} else if (get && path_is(path, "/credits")) {
		api_credits(&rt, req);
	} else if (get && strcmp(path, "/health") == 0) {
		reply_health(req);
	} else if (get && strcmp(path, "/metrics") == 0) {
		api_metrics(&rt, req);
	} else {
		httpd_reply_error(req, 404, "no such endpoint: %s %s", m, path);
	}
}

/* ---- signals ---- */

static void
drain_cb(evutil_socket_t fd, short what, void *arg)
{
	struct timeval tv = { 0, 100 * 1000 };

	(void)fd;
	(void)what;
	(void)arg;
	/* requests done, then credit leases given back (budget.h) */
	if ((rt.inflight == 0 && budget_flush(rt.budget) == 0) || router_now_ms() >= drain_deadline) {
		event_base_loopexit(rt.base, NULL);
		return;
	}
	evtimer_add(drain_timer, &tv);
}

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	(void)arg;
	for (int i = 0; i < nworker_pids; i++)	/* the other workers drain too */
		if (worker_pids[i] > 0)
			kill(worker_pids[i], (int)sig);
	if (drain_timer) {
		event_base_loopexit(rt.base, NULL);	/* second signal: now */
		return;
	}
	log_info("signal %d: draining %d requests", (int)sig, rt.inflight);
	httpd_stop_accepting(rt.httpd);
	drain_deadline = router_now_ms() + DRAIN_MAX_MS;
	drain_timer = evtimer_new(rt.base, drain_cb, NULL);
	drain_cb(-1, 0, NULL);
}

/* ---- workers ---- */

/* As many open files as allowed: each client connection is a descriptor,
 * and so is each upstream one (max_connections is the bound that answers). */
static void
raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* workers = N > 1: this process is worker 0 and forks workers 1..N-1,
 * before any loop or thread exists. Each one binds the listen address
 * with SO_REUSEPORT (the kernel spreads connections over them) and has
 * its own loop, connections, upstream pools, key cache, credit leases and
 * spool (spool_path.I): to the fleet, each worker is one more router.
 * Returns this process's worker index. */
static int
fork_workers(void)
{
	pid_t parent = getpid();

	for (int i = 1; i < rt.conf.workers && i < MAX_WORKERS; i++) {
		pid_t pid = fork();

		if (pid < 0) {
			log_error("fork of worker %d: %s", i, strerror(errno));
			break;
		}
		if (pid == 0) {
			size_t n = strlen(rt.conf.spool_path);

			prctl(PR_SET_PDEATHSIG, SIGTERM);	/* worker 0 gone: this one goes */
			if (getppid() != parent)
				_exit(0);
			nworker_pids = 0;
			snprintf(rt.conf.spool_path + n, sizeof(rt.conf.spool_path) - n, ".%d", i);
			return i;
		}
		worker_pids[nworker_pids++] = pid;
	}
	return 0;
}

/* A worker that ended on its own (a crash): said, and reaped. */
static void
sigchld_cb(evutil_socket_t sig, short what, void *arg)
{
	int status;
	pid_t pid;

	(void)sig;
	(void)what;
	(void)arg;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
		for (int i = 0; i < nworker_pids; i++)
			if (worker_pids[i] == pid) {
				worker_pids[i] = 0;
				if (!drain_timer)
					log_error("worker %d (pid %d) ended (status %d)", i + 1, (int)pid, status);
			}
}

/* Worker 0, leaving: the others end (they drain in parallel), or are killed. */
static void
reap_workers(void)
{
	int64_t end = router_now_ms() + DRAIN_MAX_MS + 2000;

	for (int i = 0; i < nworker_pids; i++) {
		if (worker_pids[i] <= 0)
			continue;
		kill(worker_pids[i], SIGTERM);
		while (waitpid(worker_pids[i], NULL, WNOHANG) == 0) {
			if (router_now_ms() > end) {
				kill(worker_pids[i], SIGKILL);
				waitpid(worker_pids[i], NULL, 0);
				break;
			}
			usleep(20000);
		}
	}
}

/* ---- main ---- */

static int
router_setup(void)
{
	struct httpd_limits hl = {
		.max_header_bytes = (size_t)rt.conf.max_header_bytes,
		.max_body_bytes = (size_t)rt.conf.max_body_bytes,
		.max_headers = rt.conf.max_headers,
		.max_connections = rt.conf.max_connections,
		.header_timeout_ms = rt.conf.client_header_timeout_ms,
		.idle_timeout_ms = rt.conf.client_idle_timeout_ms,
		.write_timeout_ms = rt.conf.client_write_timeout_ms,
	};
	struct upstream_limits ul = {
		.connect_ms = rt.conf.upstream_connect_timeout_ms,
		.first_byte_ms = rt.conf.upstream_first_byte_timeout_ms,
		.idle_ms = rt.conf.upstream_idle_timeout_ms,
		.total_ms = rt.conf.upstream_total_timeout_ms,
		.pool_idle = rt.conf.upstream_pool_idle,
		.pool_idle_ms = rt.conf.upstream_pool_idle_ms,
		.ca_file = rt.conf.upstream_ca_file,
	};
	struct timeval poll = { rt.conf.catalog_poll_ms / 1000, (rt.conf.catalog_poll_ms % 1000) * 1000 };
	char err[256];

	{
		uint8_t mk[SBOX_KEY_LEN];
		int have = sbox_key_load(rt.conf.master_key, rt.conf.master_key_file, mk, err, sizeof(err));

		if (have < 0)
			return log_error("master_key: %s", err), -1;
		rcat_set_master_key(have ? mk : NULL);
		OPENSSL_cleanse(mk, sizeof(mk));
		OPENSSL_cleanse(rt.conf.master_key, sizeof(rt.conf.master_key));
	}
	rt.pg_ctl = pgc_new(rt.base, rt.conf.pg_dsn, rt.conf.pg_timeout_ms, 64);
	rt.pg_auth = pgc_new(rt.base, rt.conf.pg_dsn, rt.conf.pg_timeout_ms, 10000);
	if (!rt.pg_ctl || !rt.pg_auth || !(rt.auth = auth_new(rt.pg_auth, rt.conf.key_secret, rt.conf.key_cache_ttl_ms)))
		return log_error("out of memory"), -1;
	pgc_set_connect_cb(rt.pg_ctl, ctl_connected_cb, NULL);
	pgc_set_notify_cb(rt.pg_ctl, notify_cb, NULL);
	if (!(rt.redis = rds_new(rt.base, &rt.conf, err, sizeof(err))) ||
	    !(rt.meter = meter_new(rt.base, rt.redis, rt.conf.usage_shards, rt.conf.spool_path, rt.conf.spool_max_bytes,
				   err, sizeof(err))))
		return log_error("metering: %s", err), -1;
	meter_set_wait(rt.meter, rt.conf.redis_wait_replicas);
	if (!(rt.ratelimit = ratelimit_new(rt.base, rt.redis, rt.conf.ratelimit_sync_ms)))
		return log_error("out of memory"), -1;
	if (!(rt.budget = budget_new(rt.base, rt.redis, rt.conf.budget_lease_nusd, rt.conf.budget_lease_idle_ms)))
		return log_error("out of memory"), -1;
	if (!(rt.health = health_new(rt.base, rt.redis, &rt.cat, rt.conf.health_sync_ms)))
		return log_error("out of memory"), -1;
	rds_set_connect_cb(rt.redis, redis_connected_cb, NULL);
	rds_connect(rt.redis);
	if (!(rt.up = upstream_pool_new(rt.base, &ul, err, sizeof(err))))
		return log_error("%s", err), -1;
	httpd_set_reuse_port(rt.conf.workers > 1);
	if (!(rt.httpd = httpd_new(rt.base, rt.conf.listen, &hl, router_handle, NULL, err, sizeof(err))))
		return log_error("%s", err), -1;
	if (rt.conf.tls_cert_file[0]) {
		if (!(listen_tls = listen_tls_new(rt.conf.tls_cert_file, rt.conf.tls_key_file, err, sizeof(err))))
			return log_error("tls: %s", err), -1;
		httpd_set_tls(rt.httpd, listen_tls);
	}
	rt.poll_timer = event_new(rt.base, -1, EV_PERSIST, poll_cb, NULL);
	evtimer_add(rt.poll_timer, &poll);
	pgc_connect(rt.pg_ctl);
	pgc_connect(rt.pg_auth);
	log_info("listening on %s (port %d%s)", rt.conf.listen, httpd_port(rt.httpd), listen_tls ? ", TLS" : "");
	if (strcmp(rt.conf.metering, "off") == 0)
		log_warn("metering = off: no usage event is emitted and nothing is billed (benchmarks only)");
	return 0;
}

/* The listener's TLS: TLS 1.2 or newer, the certificate chain and key
 * from PEM files (checked to match). */
static SSL_CTX *
listen_tls_new(const char *cert, const char *key, char *err, size_t len)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (!ctx)
		goto fail;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, key[0] ? key : cert, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1)
		goto fail;
	return ctx;
fail:
	{
		const char *why = ERR_reason_error_string(ERR_get_error());

		snprintf(err, len, "%.100s / %.100s: %s", cert, key[0] ? key : cert, why ? why : "cannot load");
	}
	SSL_CTX_free(ctx);
	return NULL;
}

static void
router_teardown(void)
{
	httpd_free(rt.httpd);		/* aborts requests: they cancel upstreams */
	if (listen_tls)
		SSL_CTX_free(listen_tls);
	upstream_pool_free(rt.up);
	rds_free(rt.redis);		/* unanswered XADDs fall back to the spool */
	meter_free(rt.meter);		/* then the spool is flushed */
	ratelimit_free(rt.ratelimit);
	budget_free(rt.budget);		/* after rds_free: its pending replies refer to it */
	health_free(rt.health);		/* after rds_free: its pending replies refer to it */
	auth_free(rt.auth);
	pgc_free(rt.pg_ctl);
	pgc_free(rt.pg_auth);
	if (rt.cat)
		rcat_unref(rt.cat);
	if (rt.poll_timer)
		event_free(rt.poll_timer);
	if (drain_timer)
		event_free(drain_timer);
}

static void
usage(void)
{
	fprintf(stderr, "usage: agora-router [-c CONFIG] [--dump-config]\n"
			"  settings: CONFIG file, then AGORA_<KEY> environment variables\n");
}

int
main(int argc, char **argv)
{
	const char *path = getenv("AGORA_CONF");
	struct event *sigterm, *sigint, *sigchld = NULL;
	int dump = 0, lvl, rc = 1, worker = 0;
	char err[512];

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-c") == 0 && i + 1 < argc)
			path = argv[++i];
		else if (strcmp(argv[i], "--dump-config") == 0)
			dump = 1;
		else
			return usage(), 2;
	}
	if (conf_load(&rt.conf, path, err, sizeof(err)) < 0) {
		fprintf(stderr, "agora-router: %s\n", err);
		return 1;
	}
	if (dump) {
		conf_dump(&rt.conf, stdout);
		return 0;
	}
	lvl = log_level_parse(rt.conf.log_level);
	log_init("agora-router", lvl < 0 ? LOG_INFO : (enum log_level)lvl);
	signal(SIGPIPE, SIG_IGN);
	raise_nofile();
	if (rt.conf.workers > 1) {
		worker = fork_workers();
		log_info("worker %d of %d", worker, rt.conf.workers);
	}
	evthread_use_pthreads();	/* the spool thread wakes the loop */
	if (!(rt.base = event_base_new()))
		return 1;
	sigterm = evsignal_new(rt.base, SIGTERM, signal_cb, NULL);
	sigint = evsignal_new(rt.base, SIGINT, signal_cb, NULL);
	event_add(sigterm, NULL);
	event_add(sigint, NULL);
	if (nworker_pids > 0 && (sigchld = evsignal_new(rt.base, SIGCHLD, sigchld_cb, NULL)))
		event_add(sigchld, NULL);
	if (router_setup() == 0) {
		event_base_dispatch(rt.base);
		rc = 0;
	}
	router_teardown();
	reap_workers();
	event_free(sigterm);
	event_free(sigint);
	if (sigchld)
		event_free(sigchld);
	event_base_free(rt.base);
	log_info("stopped");
	return rc;
}
