/*
 * agora-router: the hot path. Reads the configuration, connects to
 * PostgreSQL (catalog and keys, asynchronously), listens for clients and
 * proxies chat completions to providers. One event loop; nothing blocks.
 * Signals (deploy/operations.md): TERM/INT drain (stop accepting, let
 * requests finish up to drain_timeout_ms, then cut and bill them as cut),
 * HUP reloads the configuration and certificates, USR2 starts the binary
 * anew on the same listening sockets and drains once it serves.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "clock.h"
#include "log.h"
#include "loop.h"
#include "lsock.h"
#include "router.h"
#include "secretbox.h"

#define MAX_WORKERS 64
#define DRAIN_POLL_MS 50
#define DRAIN_SETTLE_MS 3000		/* after the requests: leases back, events out */
#define UPGRADE_WAIT_MS 60000		/* the new binary must serve within this */

/* What SIGHUP may change in a running router; anything else that changed
 * is logged as needing a restart. */
#define ROUTER_LIVE "log_level log_flush_ms metering_flush_ms drain_timeout_ms max_body_bytes max_header_bytes max_headers " \
	"max_connections client_header_timeout_ms client_idle_timeout_ms client_write_timeout_ms " \
	"stream_buffer_bytes max_response_bytes upstream_connect_timeout_ms " \
	"upstream_first_byte_timeout_ms upstream_idle_timeout_ms upstream_total_timeout_ms " \
	"upstream_pool_idle upstream_pool_idle_ms upstream_ca_file tls_cert_file tls_key_file " \
	"max_attempts failure_cooldown_ms breaker_failures catalog_poll_ms key_cache_ttl_ms " \
	"key_rpm_default key_tpm_default"
#define ROUTER_UNUSED "analytics_listen web_dir billing_batch billing_claim_idle_ms billing_linger_ms"

enum drain_phase { DR_REQUESTS, DR_LEASES, DR_BARRIER };

static struct router rt;
static struct agora_conf conf_file;	/* as loaded: what SIGHUP compares with */

static const char *conf_path;
static char **saved_argv;		/* argv[0] made absolute: the upgrade execs it */
static int64_t drain_deadline;
static enum drain_phase drain_phase;
static SSL_CTX *listen_tls;		/* tls_cert_file set: the listener's */
static SSL_CTX *listen_tls_new(const char *cert, const char *key, char *err, size_t len);
static struct event *drain_timer;
static pid_t worker_pids[MAX_WORKERS];	/* worker 0 (the first process): the others */
static int nworker_pids, worker_index;
static int lfds[LSOCK_MAX];		/* listening sockets held (-1: closed) */
static int nlfds, inherited;		/* inherited: systemd or the previous binary's */
static pid_t upgrade_pid;		/* the new binary, until it serves */
static struct event *upgrade_ev;	/* its readiness pipe */
static int serving;			/* accepting since the first catalog */

static void drain_start(const char *why);

/* Access lines gathered for log_flush_ms (0: written each at once). */
static void
log_access_setup(void)
{
	if (rt.conf.log_flush_ms > 0 && log_buffer(rt.base, rt.conf.log_flush_ms) == 0)
		return;
	log_unbuffer();
}

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
	if (!serving && !rt.draining) {	/* inherited sockets wait for a catalog */
		serving = 1;
		httpd_start_accepting(rt.httpd);
		if (worker_index == 0)
			lsock_ready();
	}
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
	} else if (get && (strcmp(path, "/health") == 0 || strcmp(path, "/health/live") == 0)) {
		api_health(&rt, req);
	} else if (get && strcmp(path, "/metrics") == 0) {
		api_metrics(&rt, req);
	} else {
		httpd_reply_error(req, 404, "no such endpoint: %s %s", m, path);
	}
}

/* ---- drain ---- */

/* Requests end (or are cut at the deadline), then the credit leases go
 * back (budget.h), then every usage event sent is settled in its stream
 * (answered on whichever node holds its shard; confirmed by replicas with
 * redis_wait_replicas). Events not settled by then go to the spool
 * (meter.h) as the connection closes, replayed at the next start. */
static void
drain_cb(evutil_socket_t fd, short what, void *arg)
{
	struct timeval tv = { 0, DRAIN_POLL_MS * 1000 };
	int64_t now = clock_wall_ms();

	(void)fd;
	(void)what;
	(void)arg;
	if (drain_phase == DR_REQUESTS && (rt.inflight > 0 || httpd_busy(rt.httpd) > 0)) {
		if (now < drain_deadline)
			goto again;
		log_warn("drain: %d requests still running after %d ms: cut (billed as cut)",
			 rt.inflight, rt.conf.drain_timeout_ms);
		httpd_abort_requests(rt.httpd);
	}
	if (drain_phase == DR_REQUESTS) {
		drain_phase = DR_LEASES;
		drain_deadline = now + DRAIN_SETTLE_MS;
	}
	if (now >= drain_deadline)
		goto out;
	if (drain_phase == DR_LEASES && budget_flush(rt.budget) == 0)
		drain_phase = DR_BARRIER;
	if (drain_phase == DR_BARRIER && (meter_unsettled(rt.meter) == 0 || !rds_is_connected(rt.redis)))
		goto out;
again:
	evtimer_add(drain_timer, &tv);
	return;
out:
	event_base_loopexit(rt.base, NULL);
}

/* Closes this process's copies of the listening sockets: once nobody
 * holds one (no new binary took it), connections to it are refused. */
static void
listen_close_all(void)
{
	for (int i = 0; i < nlfds; i++)
		if (lfds[i] >= 0) {
			close(lfds[i]);
			lfds[i] = -1;
		}
}

static void
drain_start(const char *why)
{
	if (rt.draining)
		return;
	rt.draining = 1;
	log_info("%s: draining %d requests (at most %d ms)", why, rt.inflight, rt.conf.drain_timeout_ms);
	httpd_drain(rt.httpd);
	listen_close_all();
	meter_drain(rt.meter);
	drain_deadline = clock_wall_ms() + rt.conf.drain_timeout_ms;
	drain_phase = DR_REQUESTS;
	if (!(drain_timer = evtimer_new(rt.base, drain_cb, NULL))) {
		event_base_loopexit(rt.base, NULL);
		return;
	}
	drain_cb(-1, 0, NULL);
}

static void
workers_signal(int sig)
{
	for (int i = 0; i < nworker_pids; i++)
		if (worker_pids[i] > 0)
			kill(worker_pids[i], sig);
}

/* ---- reload ---- */

static void
reload_tls(void)
{
	char err[256];
	SSL_CTX *ctx;

	if (!listen_tls != !rt.conf.tls_cert_file[0]) {
		log_warn("reload: turning TLS %s needs a restart", listen_tls ? "off" : "on");
		return;
	}
	if (!listen_tls)
		return;
	if (!(ctx = listen_tls_new(rt.conf.tls_cert_file, rt.conf.tls_key_file, err, sizeof(err)))) {
		log_error("reload: tls: %s: keeping the certificate in use", err);
		return;
	}
	httpd_set_tls(rt.httpd, ctx);	/* connections open keep the old one */
	SSL_CTX_free(listen_tls);
	listen_tls = ctx;
	log_info("reload: TLS certificate %s loaded for new connections", rt.conf.tls_cert_file);
}

static void router_limits(struct httpd_limits *hl, struct upstream_limits *ul);

static void
reload(void)
{
	struct timeval poll;
	struct httpd_limits hl;
	struct upstream_limits ul;
	char err[256];
	int lvl;

	if (conf_reload(&conf_file, conf_path, ROUTER_LIVE, ROUTER_UNUSED) < 0)
		return;
	conf_copy_list(&rt.conf, &conf_file, ROUTER_LIVE);
	router_limits(&hl, &ul);
	httpd_set_limits(rt.httpd, &hl);
	if (upstream_pool_set_limits(rt.up, &ul, err, sizeof(err)) < 0)
		log_error("reload: upstream: %s: keeping the CA certificates in use", err);
	auth_set_ttl(rt.auth, rt.conf.key_cache_ttl_ms);
	meter_set_flush(rt.meter, rt.conf.metering_flush_ms);
	poll.tv_sec = rt.conf.catalog_poll_ms / 1000;
	poll.tv_usec = (rt.conf.catalog_poll_ms % 1000) * 1000;
	evtimer_add(rt.poll_timer, &poll);
	reload_tls();
	log_info("reload: done");
	lvl = log_level_parse(rt.conf.log_level);	/* last: the reload is logged as before */
	log_init("agora-router", lvl < 0 ? LOG_INFO : (enum log_level)lvl);
	log_access_setup();
}

/* ---- upgrade ---- */

static void
upgrade_end(void)
{
	event_free(upgrade_ev);
	upgrade_ev = NULL;
	upgrade_pid = 0;
}

static void
upgrade_cb(evutil_socket_t fd, short what, void *arg)
{
	char b;
	ssize_t n = (what & EV_READ) ? read(fd, &b, 1) : -1;

	(void)arg;
	if (n < 0 && errno == EAGAIN && !(what & EV_TIMEOUT))
		return;
	close(fd);
	if (n == 1) {
		log_info("upgrade: pid %d serves: this one drains", (int)upgrade_pid);
		upgrade_end();
		workers_signal(SIGTERM);
		drain_start("upgrade");
		return;
	}
	log_error("upgrade: pid %d %s: still serving", (int)upgrade_pid,
		  n == 0 ? "ended before serving" : "did not serve in time");
	if (n != 0)
		kill(upgrade_pid, SIGTERM);
	upgrade_end();
}

/* SIGUSR2: the binary at argv[0] (possibly new) starts with our listening
 * sockets; once it serves (its first catalog loaded) this one drains. */
static void
upgrade_start(void)
{
	struct timeval tv = { UPGRADE_WAIT_MS / 1000, 0 };
	int fds[LSOCK_MAX], n = 0, rfd;

	if (upgrade_pid || rt.draining) {
		log_warn("upgrade: %s", rt.draining ? "already draining" : "already in progress");
		return;
	}
	for (int i = 0; i < nlfds; i++)
		if (lfds[i] >= 0)
			fds[n++] = lfds[i];
	if ((upgrade_pid = lsock_exec(saved_argv, fds, n, &rfd)) < 0) {
		log_error("upgrade: cannot start %s: %s", saved_argv[0], strerror(errno));
		upgrade_pid = 0;
		return;
	}
	log_info("upgrade: started %s as pid %d with %d listening sockets", saved_argv[0], (int)upgrade_pid, n);
	if (!(upgrade_ev = event_new(rt.base, rfd, EV_READ | EV_PERSIST, upgrade_cb, NULL)) ||
	    event_add(upgrade_ev, &tv) < 0)
		log_error("upgrade: cannot watch pid %d", (int)upgrade_pid);
}

/* ---- signals ---- */

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	(void)arg;
	if (sig == SIGUSR2) {
		upgrade_start();
		return;
	}
	workers_signal((int)sig);	/* the other workers drain or reload too */
	if (sig == SIGHUP) {
		reload();
		return;
	}
	if (rt.draining) {
		event_base_loopexit(rt.base, NULL);	/* second signal: now */
		return;
	}
	drain_start(sig == SIGTERM ? "SIGTERM" : "SIGINT");
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

/* The listening sockets: inherited (systemd, or the previous binary on
 * upgrade), else bound here, one per worker with SO_REUSEPORT when
 * workers > 1 (the kernel spreads connections over them). */
static int
listen_open(void)
{
	int n = rt.conf.workers > 1 ? rt.conf.workers : 1;
	char err[256];

	if ((nlfds = lsock_inherited(lfds, LSOCK_MAX)) > 0) {
		inherited = 1;
		log_info("%d listening sockets inherited (the listen key is not used)", nlfds);
		return 0;
	}
	for (; nlfds < n; nlfds++)
		if ((lfds[nlfds] = lsock_bind(rt.conf.listen, rt.conf.workers > 1, err, sizeof(err))) < 0) {
			log_error("%s", err);
			return -1;
		}
	return 0;
}

/* Worker w's sockets: every one whose index is w modulo the workers (or,
 * fewer sockets than workers, one shared). Worker 0 keeps a copy of all
 * (an upgrade hands them over); the others close the rest. */
static int
listen_mine(int *fds)
{
	int w = rt.conf.workers > 1 ? rt.conf.workers : 1, n = 0;

	if (nlfds < w) {
		fds[0] = lfds[worker_index % nlfds];
		return 1;
	}
	for (int i = 0; i < nlfds; i++)
		if (i % w == worker_index)
			fds[n++] = lfds[i];
		else if (worker_index > 0) {
			close(lfds[i]);
			lfds[i] = -1;
		}
	return n;
}

/* workers = N > 1: this process is worker 0 and forks workers 1..N-1,
 * before any loop or thread exists. Each one has its own loop,
 * connections, upstream pools, key cache, credit leases and spool
 * (spool_path.I): to the fleet, each worker is one more router.
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
			signal(SIGUSR2, SIG_IGN);	/* upgrades are worker 0's */
			nworker_pids = 0;
			snprintf(rt.conf.spool_path + n, sizeof(rt.conf.spool_path) - n, ".%d", i);
			return i;
		}
		worker_pids[nworker_pids++] = pid;
	}
	return 0;
}

/* Worker w ended: worker 0 closes its copies of w's own sockets, so that
 * the kernel spreads their connections over the other workers' sockets. */
static void
listen_orphan(int w)
{
	if (nlfds < rt.conf.workers)
		return;		/* shared sockets: still served by the others */
	for (int i = 0; i < nlfds; i++)
		if (i % rt.conf.workers == w && lfds[i] >= 0) {
			close(lfds[i]);
			lfds[i] = -1;
		}
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
				if (!rt.draining)
					log_error("worker %d (pid %d) ended (status %d)", i + 1, (int)pid, status);
				listen_orphan(i + 1);
			}
}

/* Worker 0, leaving: the others end (they drain in parallel: told once,
 * a second SIGTERM would cut their streams), or are killed. */
static void
reap_workers(void)
{
	int64_t end = clock_wall_ms() + rt.conf.drain_timeout_ms + DRAIN_SETTLE_MS + 2000;

	for (int i = 0; i < nworker_pids; i++) {
		if (worker_pids[i] <= 0)
			continue;
		if (!rt.draining)
			kill(worker_pids[i], SIGTERM);
		while (waitpid(worker_pids[i], NULL, WNOHANG) == 0) {
			if (clock_wall_ms() > end) {
				kill(worker_pids[i], SIGKILL);
				waitpid(worker_pids[i], NULL, 0);
				break;
			}
			usleep(20000);
		}
	}
}

/* ---- main ---- */

/* The client and upstream bounds of the configuration. */
static void
router_limits(struct httpd_limits *hl, struct upstream_limits *ul)
{
	hl->max_header_bytes = (size_t)rt.conf.max_header_bytes;
	hl->max_body_bytes = (size_t)rt.conf.max_body_bytes;
	hl->max_headers = rt.conf.max_headers;
	hl->max_connections = rt.conf.max_connections;
	hl->header_timeout_ms = rt.conf.client_header_timeout_ms;
	hl->idle_timeout_ms = rt.conf.client_idle_timeout_ms;
	hl->write_timeout_ms = rt.conf.client_write_timeout_ms;
	ul->connect_ms = rt.conf.upstream_connect_timeout_ms;
	ul->first_byte_ms = rt.conf.upstream_first_byte_timeout_ms;
	ul->idle_ms = rt.conf.upstream_idle_timeout_ms;
	ul->total_ms = rt.conf.upstream_total_timeout_ms;
	ul->pool_idle = rt.conf.upstream_pool_idle;
	ul->pool_idle_ms = rt.conf.upstream_pool_idle_ms;
	ul->ca_file = rt.conf.upstream_ca_file;
}

static int
router_setup(void)
{
	struct httpd_limits hl;
	struct upstream_limits ul;
	int fds[LSOCK_MAX], nfds;
	struct timeval poll = { rt.conf.catalog_poll_ms / 1000, (rt.conf.catalog_poll_ms % 1000) * 1000 };
	char err[256];

	router_limits(&hl, &ul);
	{
		uint8_t mk[SBOX_KEY_LEN];
		int have = sbox_key_load(rt.conf.master_key, rt.conf.master_key_file, mk, err, sizeof(err));

		if (have < 0)
			return log_error("master_key: %s", err), -1;
		rcat_set_master_key(have ? mk : NULL);
		OPENSSL_cleanse(mk, sizeof(mk));
		OPENSSL_cleanse(rt.conf.master_key, sizeof(rt.conf.master_key));
	}
	rt.pg_ctl = pgc_new(rt.base, conf_pg_listen_dsn(&rt.conf), rt.conf.pg_timeout_ms, 64);	/* LISTENs */
	rt.pg_auth = pgc_new(rt.base, rt.conf.pg_dsn, rt.conf.pg_timeout_ms, 10000);
	if (!rt.pg_ctl || !rt.pg_auth || !(rt.auth = auth_new(rt.pg_auth, rt.conf.key_secret, rt.conf.key_cache_ttl_ms)))
		return log_error("out of memory"), -1;
	pgc_set_connect_cb(rt.pg_ctl, ctl_connected_cb, NULL);
	pgc_set_notify_cb(rt.pg_ctl, notify_cb, NULL);
	if (!(rt.redis = rds_new(rt.base, &rt.conf, err, sizeof(err))) ||
	    !(rt.meter = meter_new(rt.base, rt.redis, rt.conf.usage_shards, rt.conf.spool_path, rt.conf.spool_max_bytes,
				   rt.conf.metering_max_inflight, err, sizeof(err))))
		return log_error("metering: %s", err), -1;
	conf_forget_redis_passwords(&rt.conf);
	meter_set_wait(rt.meter, rt.conf.redis_wait_replicas);
	meter_set_flush(rt.meter, rt.conf.metering_flush_ms);
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
	nfds = listen_mine(fds);
	if (!(rt.httpd = httpd_new_fds(rt.base, fds, nfds, &hl, router_handle, NULL, err, sizeof(err))))
		return log_error("%s", err), -1;
	if (api_metrics_init(&rt) < 0)
		return log_error("out of memory"), -1;
	if (!inherited) {	/* else from the first catalog: the old process serves */
		serving = 1;
		httpd_start_accepting(rt.httpd);
	}
	if (rt.conf.tls_cert_file[0]) {
		if (!(listen_tls = listen_tls_new(rt.conf.tls_cert_file, rt.conf.tls_key_file, err, sizeof(err))))
			return log_error("tls: %s", err), -1;
		httpd_set_tls(rt.httpd, listen_tls);
	}
	rt.poll_timer = event_new(rt.base, -1, EV_PERSIST, poll_cb, NULL);
	evtimer_add(rt.poll_timer, &poll);
	pgc_connect(rt.pg_ctl);
	pgc_connect(rt.pg_auth);
	log_info("listening on %s (port %d%s)", inherited ? "inherited sockets" : rt.conf.listen,
		 httpd_port(rt.httpd), listen_tls ? ", TLS" : "");
	rt.metering = strcmp(rt.conf.metering, "off") != 0;
	if (!rt.metering)
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
	api_metrics_free(&rt);
	if (upgrade_ev)
		upgrade_end();
	listen_close_all();
}

static void
usage(void)
{
	fprintf(stderr, "usage: agora-router [-c CONFIG] [--dump-config]\n"
			"  settings: CONFIG file, then AGORA_<KEY> environment variables\n");
}

/* argv with argv[0] absolute (this binary's path at start: an upgrade
 * runs whatever binary is at that path then). */
static void
save_argv(int argc, char **argv)
{
	static char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	saved_argv = argv;
	if (n <= 0)
		return;
	exe[n] = '\0';
	if (n > 10 && strcmp(exe + n - 10, " (deleted)") == 0)
		exe[n - 10] = '\0';	/* replaced since: the new file */
	if (!(saved_argv = calloc((size_t)argc + 1, sizeof(char *)))) {
		saved_argv = argv;
		return;
	}
	memcpy(saved_argv, argv, (size_t)argc * sizeof(char *));
	saved_argv[0] = exe;
}

static int
serve(void)
{
	static const int sigs[] = { SIGTERM, SIGINT, SIGHUP, SIGUSR2, SIGCHLD };
	struct event *ev[5] = { NULL };
	int rc = 1;

	for (int i = 0; i < 5; i++) {
		if (sigs[i] == SIGUSR2 && worker_index > 0)
			continue;
		ev[i] = evsignal_new(rt.base, sigs[i], sigs[i] == SIGCHLD ? sigchld_cb : signal_cb, NULL);
		if (ev[i])
			event_add(ev[i], NULL);
	}
	if (router_setup() == 0) {
		event_base_dispatch(rt.base);
		rc = 0;
	}
	router_teardown();
	reap_workers();
	for (int i = 0; i < 5; i++)
		if (ev[i])
			event_free(ev[i]);
	return rc;
}

int
main(int argc, char **argv)
{
	int dump = 0, lvl, rc;
	char err[512];

	conf_path = getenv("AGORA_CONF");
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-c") == 0 && i + 1 < argc)
			conf_path = argv[++i];
		else if (strcmp(argv[i], "--dump-config") == 0)
			dump = 1;
		else
			return usage(), 2;
	}
	if (conf_load(&rt.conf, conf_path, err, sizeof(err)) < 0) {
		fprintf(stderr, "agora-router: %s\n", err);
		return 1;
	}
	if (dump) {
		conf_dump(&rt.conf, stdout);
		return 0;
	}
	conf_file = rt.conf;
	OPENSSL_cleanse(conf_file.master_key, sizeof(conf_file.master_key));
	conf_forget_redis_passwords(&conf_file);
	save_argv(argc, argv);
	lvl = log_level_parse(rt.conf.log_level);
	log_init("agora-router", lvl < 0 ? LOG_INFO : (enum log_level)lvl);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN);	/* until the loop handles it */
	raise_nofile();
	if (listen_open() < 0)
		return 1;
	if (rt.conf.workers > 1) {
		worker_index = fork_workers();
		log_info("worker %d of %d", worker_index, rt.conf.workers);
	}
	/* no threads touch libevent (the spool thread wakes the loop through
	 * an eventfd): no evthread locks */
	if (!(rt.base = loop_base_new()))
		return 1;
	clock_loop_set(rt.base);
	log_access_setup();
	rc = serve();
	log_unbuffer();
	clock_loop_set(NULL);
	event_base_free(rt.base);
	log_info("stopped");
	return rc;
}
