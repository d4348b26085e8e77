/*
 * agora-billing: turns the Redis usage stream into money in PostgreSQL
 * through the consumer (consumer.c): batches from the group `billing`, one
 * transaction each, XACK after COMMIT. Several workers can run at once.
 * SIGTERM lets the batch in flight commit and ack, then stops; SIGHUP
 * reloads the configuration (log_level, billing_batch, billing_claim_idle_ms,
 * billing_linger_ms
 * live; the rest is logged as needing a restart).
 * On billing_listen (empty: none) it answers /health and /metrics (metrics.c).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include <unistd.h>

#include "conf.h"
#include "consumer.h"
#include "httpd.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "pgc.h"
#include "rds.h"

#define STATUS_MS 30000
#define BILLING_LIVE "log_level billing_batch billing_claim_idle_ms billing_linger_ms"
#define BILLING_UNUSED CONF_ROUTER_KEYS " analytics_listen web_dir key_secret key_secret_file " \
	"key_cache_ttl_ms drain_timeout_ms"

static struct event_base *base;
static struct agora_conf conf;
static const char *conf_path;
static struct pgc *pg;
static struct rds *rd;
static struct consumer *cons;
static struct bmetrics *metrics;
static struct httpd *httpd;
static struct event *stop_timer;
static int stop_polls;

static void
redis_connected(struct rds *r, void *arg)
{
	(void)r;
	(void)arg;
	consumer_redis_up(cons);
}

static void
pg_check_cb(PGresult *res, const char *err, void *arg)
{
	(void)arg;
	if (!res || PQresultStatus(res) != PGRES_TUPLES_OK)
		log_warn("postgresql: check failed: %s", res ? PQresultErrorMessage(res) : err);
	else {
		struct consumer_stats st;

		consumer_stats(cons, &st);
		log_info("status: postgresql ok (%s events billed in all), redis %s; this worker: "
			 "%lld batches, %lld events, %lld new, %lld duplicates, %lld acked, %lld claimed",
			 PQgetvalue(res, 0, 0), rds_is_connected(rd) ? "ok" : "down", st.batches,
			 st.events, st.inserted, st.duplicates, st.acked, st.claimed);
	}
}

static void
partitions_cb(PGresult *res, const char *err, void *arg)
{
	(void)arg;
	if (!res || PQresultStatus(res) != PGRES_TUPLES_OK)
		log_warn("postgresql: monthly partitions not checked: %s", res ? PQresultErrorMessage(res) : err);
	else if (strcmp(PQgetvalue(res, 0, 0), "0") != 0)
		log_info("made %s monthly usage_events partitions", PQgetvalue(res, 0, 0));
}

static void
status_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	pgc_query(pg, "SELECT count(*)::text FROM ledger WHERE kind = 'usage'", 0, NULL, pg_check_cb, NULL);
	/* the current month and the next two have their own partitions */
	pgc_query(pg, "SELECT agora_ensure_event_partitions(2)::text", 0, NULL, partitions_cb, NULL);
}

/* Stops once no batch is between its read and its ack (at most 10 s). */
static void
stop_cb(evutil_socket_t fd, short what, void *arg)
{
	struct timeval tv = { 0, 50 * 1000 };

	(void)fd;
	(void)what;
	(void)arg;
	if (!consumer_busy(cons) || ++stop_polls > 200) {
		event_base_loopexit(base, NULL);
		return;
	}
	evtimer_add(stop_timer, &tv);
}

static void
reload(void)
{
	int lvl;

	if (conf_reload(&conf, conf_path, BILLING_LIVE, BILLING_UNUSED) < 0)
		return;
	consumer_set_batch(cons, conf.billing_batch, conf.billing_claim_idle_ms, conf.billing_linger_ms);
	log_info("reload: done (batches of %d)", conf.billing_batch);
	lvl = log_level_parse(conf.log_level);	/* last: the reload is logged as before */
	log_init("agora-billing", lvl < 0 ? LOG_INFO : (enum log_level)lvl);
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
	log_info("signal %d: stopping after the batch in flight", (int)sig);
	if (!stop_timer && (stop_timer = evtimer_new(base, stop_cb, NULL)))
		stop_cb(-1, 0, NULL);
	else
		event_base_loopexit(base, NULL);
}

/* The health and metrics listener on billing_listen, when set. */
static int
listen_setup(const char *addr)
{
	struct httpd_limits hl = { 8192, 1024, 32, 64, 5000, 30000, 10000 };
	char err[256];

	if (!(metrics = bmetrics_new(base, pg, rd, cons)))
		return log_error("out of memory"), -1;
	if (!addr[0])
		return 0;
	if (!(httpd = httpd_new(base, addr, &hl, bmetrics_handle, metrics, err, sizeof(err))))
		return log_error("billing_listen: %s", err), -1;
	log_info("health and metrics on %s", addr);
	return 0;
}

int
main(int argc, char **argv)
{
	struct timeval st = { STATUS_MS / 1000, 0 }, now = { 0, 0 };
	struct event *sigterm, *sigint, *sighup, *status;
	char err[512];
	int lvl;

	conf_path = getenv("AGORA_CONF");
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
			conf_path = argv[++i];
		} else {
			fprintf(stderr, "usage: agora-billing [-c CONFIG]\n");
			return 2;
		}
	}
	if (conf_load(&conf, conf_path, err, sizeof(err)) < 0) {
		fprintf(stderr, "agora-billing: %s\n", err);
		return 1;
	}
	lvl = log_level_parse(conf.log_level);
	log_init("agora-billing", lvl < 0 ? LOG_INFO : (enum log_level)lvl);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN);	/* until the loop handles it */
	if (!(base = loop_base_new()))
		return 1;
	pg = pgc_new(base, conf.pg_dsn, conf.pg_timeout_ms, 1024);
	{
		char rerr[256];

		if (!(rd = rds_new(base, &conf, rerr, sizeof(rerr)))) {
			log_error("redis: %s", rerr);
			return 1;
		}
		conf_forget_redis_passwords(&conf);
	}
	{
		char name[160], host[64] = "host";

		gethostname(host, sizeof(host) - 1);
		snprintf(name, sizeof(name), "%s-%d", host, (int)getpid());
		if (!pg || !rd || !(cons = consumer_new(base, pg, rd, name, conf.usage_shards)))
			return 1;
		consumer_set_batch(cons, conf.billing_batch, conf.billing_claim_idle_ms, conf.billing_linger_ms);
	}
	if (listen_setup(conf.billing_listen) < 0)
		return 1;
	rds_set_connect_cb(rd, redis_connected, NULL);
	pgc_connect(pg);
	rds_connect(rd);
	sigterm = evsignal_new(base, SIGTERM, signal_cb, NULL);
	sigint = evsignal_new(base, SIGINT, signal_cb, NULL);
	sighup = evsignal_new(base, SIGHUP, signal_cb, NULL);
	status = event_new(base, -1, EV_PERSIST, status_cb, NULL);
	event_add(sigterm, NULL);
	event_add(sigint, NULL);
	event_add(sighup, NULL);
	event_add(status, &st);
	event_base_once(base, -1, EV_TIMEOUT, status_cb, NULL, &now);
	log_info("started");
	event_base_dispatch(base);
	httpd_free(httpd);
	rds_free(rd);		/* fires pending callbacks: the consumer must live */
	pgc_free(pg);
	bmetrics_free(metrics);
	consumer_free(cons);
	if (stop_timer)
		event_free(stop_timer);
	event_free(sigterm);
	event_free(sigint);
	event_free(sighup);
	event_free(status);
	event_base_free(base);
	log_info("stopped");
	return 0;
}
