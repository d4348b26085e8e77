/*
 * agora-billing: turns the Redis usage stream into money in PostgreSQL. In
 * this stage it connects to both (asynchronously, reconnecting), makes sure
 * the consumer group `billing` exists on stream `usage`, reports its state on
 * a timer, and stops cleanly on SIGTERM. Batch consumption (XREADGROUP,
 * idempotent inserts, ledger, XACK after COMMIT) is the metering issue's.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "conf.h"
#include "log.h"
#include "pgc.h"
#include "rds.h"

#define STATUS_MS 30000

static struct event_base *base;
static struct pgc *pg;
static struct rds *rd;

static void
group_cb(redisAsyncContext *ac, void *reply, void *arg)
{
	redisReply *r = reply;

	(void)ac;
	(void)arg;
	if (!r)
		return;
	if (r->type == REDIS_REPLY_ERROR && !strstr(r->str, "BUSYGROUP"))
		log_warn("redis: XGROUP CREATE: %s", r->str);
	else
		log_info("redis: consumer group billing ready on stream usage");
}

static void
redis_connected(struct rds *r, void *arg)
{
	(void)arg;
	redisAsyncCommand(rds_ctx(r), group_cb, NULL, "XGROUP CREATE usage billing $ MKSTREAM");
}

static void
pg_check_cb(PGresult *res, const char *err, void *arg)
{
	(void)arg;
	if (!res || PQresultStatus(res) != PGRES_TUPLES_OK)
		log_warn("postgresql: check failed: %s", res ? PQresultErrorMessage(res) : err);
	else
		log_info("status: postgresql ok (%s accounts), redis %s", PQgetvalue(res, 0, 0),
			 rds_is_connected(rd) ? "ok" : "down");
}

static void
status_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	pgc_query(pg, "SELECT count(*)::text FROM accounts", 0, NULL, pg_check_cb, NULL);
}

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	(void)arg;
	log_info("signal %d: stopping", (int)sig);
	event_base_loopexit(base, NULL);
}

int
main(int argc, char **argv)
{
	const char *path = getenv("AGORA_CONF");
	struct timeval st = { STATUS_MS / 1000, 0 }, now = { 0, 0 };
	struct event *sigterm, *sigint, *status;
	struct agora_conf conf;
	char err[512];
	int lvl;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
			path = argv[++i];
		} else {
			fprintf(stderr, "usage: agora-billing [-c CONFIG]\n");
			return 2;
		}
	}
	if (conf_load(&conf, path, err, sizeof(err)) < 0) {
		fprintf(stderr, "agora-billing: %s\n", err);
		return 1;
	}
	lvl = log_level_parse(conf.log_level);
	log_init("agora-billing", lvl < 0 ? LOG_INFO : (enum log_level)lvl);
	signal(SIGPIPE, SIG_IGN);
	if (!(base = event_base_new()))
		return 1;
	pg = pgc_new(base, conf.pg_dsn, conf.pg_timeout_ms, 1024);
	rd = rds_new(base, conf.redis_host, conf.redis_port);
	if (!pg || !rd)
		return 1;
	rds_set_connect_cb(rd, redis_connected, NULL);
	pgc_connect(pg);
	rds_connect(rd);
	sigterm = evsignal_new(base, SIGTERM, signal_cb, NULL);
	sigint = evsignal_new(base, SIGINT, signal_cb, NULL);
	status = event_new(base, -1, EV_PERSIST, status_cb, NULL);
	event_add(sigterm, NULL);
	event_add(sigint, NULL);
	event_add(status, &st);
	event_base_once(base, -1, EV_TIMEOUT, status_cb, NULL, &now);
	log_info("started");
	event_base_dispatch(base);
	rds_free(rd);
	pgc_free(pg);
	event_free(sigterm);
	event_free(sigint);
	event_free(status);
	event_base_free(base);
	log_info("stopped");
	return 0;
}
