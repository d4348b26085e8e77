/*
 * replica: the read side's DSN and lag (see replica.h).
 */
#include "replica.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "prom.h"

/* 0 on a primary or a replica that has replayed all it received; else the
 * age of the last transaction it replayed. */
static const char lag_sql[] =
	"SELECT CASE WHEN NOT pg_is_in_recovery() OR pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 "
	"ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0) END::float8::text";

struct replica_lag {
	struct ana *a;
	struct event *timer;
	double seconds;			/* < 0: not measured yet */
	int inflight;
};

char *
replica_read_dsn(const struct agora_conf *c)
{
	const char *dsn = conf_analytics_pg_dsn(c);
	int ms = c->pg_timeout_ms > 1000 ? c->pg_timeout_ms - 500 : c->pg_timeout_ms;
	size_t len = strlen(dsn) + 96;
	char *out = malloc(len);

	if (out)
		snprintf(out, len, "%s options='-c work_mem=32MB -c statement_timeout=%d'", dsn, ms);
	return out;
}

static void
lag_cb(PGresult *res, const char *err, void *arg)
{
	struct replica_lag *l = arg;

	l->inflight = 0;
	if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
		log_debug("replica lag: %s", res ? PQresultErrorMessage(res) : err);
		return;
	}
	l->seconds = strtod(PQgetvalue(res, 0, 0), NULL);
}

static void
tick(evutil_socket_t fd, short what, void *arg)
{
	struct replica_lag *l = arg;

	(void)fd;
	(void)what;
	if (!l->inflight && !l->a->stopping && pgc_query(ana_pick_pg(l->a), lag_sql, 0, NULL, lag_cb, l) == 0)
		l->inflight = 1;
}

struct replica_lag *
replica_lag_new(struct ana *a, int every_ms)
{
	struct replica_lag *l = calloc(1, sizeof(*l));
	struct timeval tv = { every_ms / 1000, (every_ms % 1000) * 1000 };

	if (!l)
		return NULL;
	l->a = a;
	l->seconds = -1;
	if (!(l->timer = event_new(a->base, -1, EV_PERSIST, tick, l)) || event_add(l->timer, &tv) < 0) {
		replica_lag_free(l);
		return NULL;
	}
	return l;
}

void
replica_lag_free(struct replica_lag *l)
{
	if (!l)
		return;
	if (l->timer)
		event_free(l->timer);
	free(l);
}

void
replica_lag_metrics(const struct replica_lag *l, struct evbuffer *b)
{
	if (!l || l->seconds < 0)
		return;
	prom_gauge(b, "agora_analytics_pg_replica_lag_seconds",
		   "how far the read connections' PostgreSQL is behind the primary (0: a primary, or caught up)",
		   l->seconds);
}
