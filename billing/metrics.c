/*
 * metrics: billing's health and Prometheus metrics (see metrics.h).
 */
#include "metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <hiredis/hiredis.h>

#include "clock.h"
#include "prom.h"

#define GROUP "billing"
#define POLL_MS 2000

static const double batch_le[] = { 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000 };

struct bmetrics {
	struct pgc *pg;
	struct rds *rd;
	struct consumer *cons;
	struct event *timer;
	struct prom_hist batch_size, commit;
	double pending, lag, length;	/* all shards, for the group (NAN: unknown) */
	double sum_pending, sum_lag, sum_length;	/* the poll under way */
	int polling;			/* a poll's replies outstanding */
};

static void
batch_cb(int entries, long long events, long long commit_us, void *arg)
{
	struct bmetrics *m = arg;

	(void)events;
	prom_hist_observe(&m->batch_size, entries);
	prom_hist_observe(&m->commit, (double)commit_us / 1e6);
}

/* The group's pending and lag from one shard's XINFO GROUPS:
 * [[name, "billing", "pending", n, "lag", n|nil, ...], ...]. */
static void
groups_read(struct bmetrics *m, const redisReply *r)
{
	const redisReply *pending = rds_group_field(r, GROUP, "pending"), *lag = rds_group_field(r, GROUP, "lag");

	if (pending && pending->type == REDIS_REPLY_INTEGER)
		m->sum_pending += (double)pending->integer;
	else
		m->sum_pending = NAN;
	if (lag && lag->type == REDIS_REPLY_INTEGER)
		m->sum_lag += (double)lag->integer;
	else
		m->sum_lag = NAN;	/* nil: Redis cannot tell */
}

/* Every shard answered (or failed): the sums become the gauges. */
static void
poll_reply_done(struct bmetrics *m)
{
	if (--m->polling > 0)
		return;
	m->pending = m->sum_pending;
	m->lag = m->sum_lag;
	m->length = m->sum_length;
}

static void
groups_cb(struct rds *rd, redisReply *r, void *arg)
{
	struct bmetrics *m = arg;

	(void)rd;
	groups_read(m, r);
	poll_reply_done(m);
}

static void
xlen_cb(struct rds *rd, redisReply *r, void *arg)
{
	struct bmetrics *m = arg;

	(void)rd;
	if (r && r->type == REDIS_REPLY_INTEGER)
		m->sum_length += (double)r->integer;
	else
		m->sum_length = NAN;
	poll_reply_done(m);
}

/* XINFO GROUPS and XLEN of every shard, summed (NAN if any is unknown). */
static void
poll_cb(evutil_socket_t fd, short what, void *arg)
{
	struct bmetrics *m = arg;
	(void)fd;
	(void)what;
	if (m->polling)
		return;
	if (!rds_is_connected(m->rd)) {
		m->pending = m->lag = m->length = NAN;
		return;
	}
	m->sum_pending = m->sum_lag = m->sum_length = 0;
	m->polling = 1;		/* held until every command is sent */
	for (int i = 0; i < consumer_nshards(m->cons); i++) {
		size_t n;
		const char *key = consumer_shard(m->cons, i, &n);

		if (rds_command(m->rd, key, n, groups_cb, m, "XINFO GROUPS %b", key, n) == 0)
			m->polling++;
		else
			m->sum_pending = m->sum_lag = NAN;
		if (rds_command(m->rd, key, n, xlen_cb, m, "XLEN %b", key, n) == 0)
			m->polling++;
		else
			m->sum_length = NAN;
	}
	poll_reply_done(m);
}

struct bmetrics *
bmetrics_new(struct event_base *base, struct pgc *pg, struct rds *rd, struct consumer *cons)
{
	struct bmetrics *m = calloc(1, sizeof(*m));
	struct timeval tv = { POLL_MS / 1000, (POLL_MS % 1000) * 1000 };

	if (!m)
		return NULL;
	m->pg = pg;
	m->rd = rd;
	m->cons = cons;
	m->pending = m->lag = m->length = NAN;
	prom_hist_init(&m->batch_size, batch_le, (int)(sizeof(batch_le) / sizeof(batch_le[0])));
	prom_hist_init(&m->commit, prom_seconds_le, PROM_SECONDS_N);
	if (!(m->timer = event_new(base, -1, EV_PERSIST, poll_cb, m))) {
		free(m);
		return NULL;
	}
	evtimer_add(m->timer, &tv);
	consumer_set_batch_cb(cons, batch_cb, m);
	return m;
}

void
bmetrics_free(struct bmetrics *m)
{
	if (!m)
		return;
	event_free(m->timer);
	consumer_set_batch_cb(m->cons, NULL, NULL);
	free(m);	/* after rds_free: every reply has come (NULL or not) */
}

static void
counters(struct evbuffer *b, const struct consumer_stats *st)
{
	prom_counter(b, "agora_billing_batches_total", "batches committed", st->batches);
	prom_counter(b, "agora_billing_events_total", "usage events in committed batches", st->events);
	prom_counter(b, "agora_billing_events_inserted_total", "usage events billed (new)", st->inserted);
	prom_counter(b, "agora_billing_events_duplicate_total", "usage events already billed (skipped)",
		     st->duplicates);
	prom_counter(b, "agora_billing_entries_acked_total", "stream entries acknowledged after commit", st->acked);
	prom_counter(b, "agora_billing_entries_claimed_total", "stream entries taken over from stopped workers",
		     st->claimed);
	prom_counter(b, "agora_billing_bad_entries_total", "stream entries refused (not usage events billing can bill)",
		     st->bad_entries);
	prom_counter(b, "agora_billing_split_entries_total",
		     "stream entries of several events, one refused, whose events went back to the stream one an entry",
		     st->split_entries);
	prom_counter(b, "agora_billing_dead_letters_total",
		     "refused entries copied to their stream's dead-letter stream <stream>:dead, then acknowledged",
		     st->dead_letters);
	prom_counter(b, "agora_billing_conflict_retries_total",
		     "batches written again with ON CONFLICT DO NOTHING: an event in them was billed before",
		     st->conflict_retries);
	prom_counter(b, "agora_billing_pg_errors_total", "batches PostgreSQL did not commit", st->pg_errors);
	prom_counter(b, "agora_billing_redis_errors_total", "failed stream reads and acknowledgements",
		     st->redis_errors);
}

static void
metrics_reply(struct bmetrics *m, struct httpd_req *req)
{
	struct evbuffer *b = evbuffer_new();
	struct consumer_stats st;

	if (!b) {
		httpd_reply_error(req, 503, "out of memory");
		return;
	}
	consumer_stats(m->cons, &st);
	counters(b, &st);
	prom_head(b, "agora_billing_batch_size", "histogram", "stream entries per committed batch");
	prom_hist_write(b, "agora_billing_batch_size", NULL, &m->batch_size);
	prom_head(b, "agora_billing_commit_seconds", "histogram", "batch statement sent to COMMIT");
	prom_hist_write(b, "agora_billing_commit_seconds", NULL, &m->commit);
	prom_gauge(b, "agora_billing_stream_pending", "entries delivered to the group and not acknowledged yet",
		   m->pending);
	prom_gauge(b, "agora_billing_stream_lag", "entries in the stream not yet delivered to the group", m->lag);
	prom_gauge(b, "agora_billing_stream_length", "entries in the stream (XLEN)", m->length);
	if (st.newest_ts_ms > 0) {
		prom_gauge(b, "agora_billing_lag_seconds",
			   "now minus the created_at of the newest event this worker committed",
			   (double)(clock_wall_ms() - st.newest_ts_ms) / 1000.0);
	}
	prom_gauge(b, "agora_billing_redis_up", "1 while Redis is connected", rds_is_connected(m->rd));
	prom_gauge(b, "agora_billing_pg_up", "1 while PostgreSQL is connected", pgc_is_connected(m->pg));
	httpd_reply(req, 200, PROM_CONTENT_TYPE, evbuffer_pullup(b, -1), evbuffer_get_length(b));
	evbuffer_free(b);
}

void
bmetrics_handle(struct httpd_req *req, void *arg)
{
	struct bmetrics *m = arg;
	const char *path = httpd_req_path(req);

	if (strcmp(httpd_req_method(req), "GET") != 0 && strcmp(httpd_req_method(req), "HEAD") != 0)
		httpd_reply_error(req, 405, "method not allowed");
	else if (strcmp(path, "/metrics") == 0)
		metrics_reply(m, req);
	else if (strcmp(path, "/health/live") == 0)
		httpd_reply(req, 200, "application/json", "{\"status\":\"alive\"}", 18);
	else if (strcmp(path, "/health") != 0)
		httpd_reply_error(req, 404, "no such endpoint: %s", path);
	else if (!pgc_is_connected(m->pg) || !rds_is_connected(m->rd))
		httpd_reply_error(req, 503, "%s", !pgc_is_connected(m->pg) ? "PostgreSQL is not connected"
									 : "Redis is not connected");
	else
		httpd_reply(req, 200, "application/json", "{\"status\":\"ok\"}", 15);
}
