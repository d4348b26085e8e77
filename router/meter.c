/*
 * meter: usage events to Redis, with a local spool (see meter.h).
 *
 * Threads: the loop never touches the spool file. It appends spooled lines
 * to `pending` under a mutex; the writer thread writes them with O_APPEND and
 * fdatasync()s. For a replay, the thread renames the spool aside, reads it
 * and hands the bytes to the loop, waking it through an eventfd (libevent's
 * own cross-thread wake-up would need evthread_use_pthreads(), which puts a
 * lock around every event and bufferevent operation); the loop XADDs every
 * line and then asks the thread to delete the file. Lines that fail again are
 * spooled again.
 */
#include "meter.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "jsonw.h"
#include "log.h"
#include "loop.h"
#include "rds_slot.h"
#include "utf8.h"

#define METER_KEY_LEN 40		/* usage:{tag} */
#define METER_WAIT_MS 500		/* WAIT's time-out for the replicas' copies */
#define METER_REWAIT_MS 1000		/* WAIT again after one short of replicas */
#define METER_RETRY_MS 1000		/* spooled while connected: replayed after this */
#define METER_LIVE_TTL "7200"		/* live counters: two hours of minutes */
#define METER_LIVE_MS 500		/* live counts are summed and sent this often */
#define METER_LIVE_SLOTS 64		/* model|provider|minute sums held at once */
#define METER_LIVE_FIELD 320
#define METER_QUEUE_MAX 1024		/* events held for the next send: then sent at once */

struct meter {
	struct event_base *base;
	struct rds *rd;
	int nshards;			/* usage stream shards, by account */
	char shard_key[RDS_SHARDS_MAX][METER_KEY_LEN];
	size_t shard_len[RDS_SHARDS_MAX];
	int wait_replicas;		/* > 0: an XADD counts once WAIT says so */
	struct xadd_ctx *unsure[RDS_SHARDS_MAX];	/* answered, awaiting a WAIT */
	struct event *wait_ev;		/* sends the WAITs after this loop turn */
	struct event *rewait_ev;	/* and again later while replicas lack */
	/* WAIT blocks the node's connection, which every other command to that
	 * node shares: at most one in flight per shard, and after a short one
	 * (replicas lacking) none until rewait_ev */
	unsigned char wait_busy[RDS_SHARDS_MAX], wait_hold[RDS_SHARDS_MAX];
	int wait_short;			/* the last WAIT was short (logged once) */
	struct event *retry_ev;		/* replays what failed while Redis stayed up */
	char path[512], replay_path[520];
	int64_t spool_max;
	long long inflight;		/* events sent awaiting a reply (or a WAIT) */
	long long max_inflight;		/* metering_max_inflight */
	struct event *replay_ev;	/* thread -> loop: replay bytes ready (wake_fd) */
	int wake_fd;			/* eventfd the thread writes to */
	int replaying;			/* a replay is under way */
	long long replay_left;		/* its XADDs awaiting replies, + 1 while lines are unsent */
	char *replay_buf;		/* the spool aside, read whole: lines from replay_off unsent */
	size_t replay_end, replay_off;	/* its length, and where sending resumes */
	int pumping;			/* inside replay_pump */
	int64_t live_expired;		/* last minute whose live key got its TTL */
	struct live_slot {		/* live counts not yet sent */
		int64_t minute, requests, tokens;
		size_t flen;
		char field[METER_LIVE_FIELD];	/* model|provider */
	} live[METER_LIVE_SLOTS];
	int nlive;
	struct event *live_ev;		/* sends them every METER_LIVE_MS */
	/* events held up to flush_ms and sent together: one write to Redis,
	 * and one wake-up and AOF write of Redis, for many events */
	struct queued {
		char *json;
		size_t len;
		int shard;
	} queue[METER_QUEUE_MAX];
	int nqueue;
	int flush_ms;			/* 0: sent at the end of the loop turn */
	int draining;			/* meter_drain: nothing held any more */
	struct event *flush_ev;		/* flush_ms's timer; flush_ms 0: activated, sends after this loop turn */
	struct meter_stats st;

	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	char *pending;			/* lines to append (guarded by mu) */
	size_t pending_len, pending_cap;
	int64_t spool_bytes;		/* on disk + pending (guarded by mu) */
	int want_replay, want_unlink, stop;	/* requests to the thread */
	char *replay_data;		/* thread -> loop (guarded by mu) */
	size_t replay_len;
	int replay_failed;		/* the spool aside could not be read: kept */
	int replay_ready;		/* replay_data (or replay_failed) is set */
};

/* ---- the event as JSON ---- */

/* The event is written by hand, not through cJSON: cJSON prints every
 * number with sprintf("%1.15g") and checks it back with sscanf, which made
 * this function a fifth of a request's CPU time (README "Performance"). */
/* Members are written with their key as one literal, comma and quotes
 * included (",\"ts\":"): one copy a key rather than four. */
#define JB_KEY(b, lit) JSONW_LIT((b), "," lit)
#define JB_INT(b, lit, v) (JB_KEY(b, lit), jsonw_int((b), (v)))
#define JB_BOOL(b, lit, v) (JB_KEY(b, lit), (v) ? JSONW_LIT((b), "true") : JSONW_LIT((b), "false"))
#define JB_STR(b, lit, v) jb_str((b), "," lit, sizeof("," lit) - 1, (v))

/* A string member (jsonw escapes as cJSON does) after its key (",\"k\":");
 * NULL: no member. */
static void
jb_str(struct jsonw *b, const char *key, size_t klen, const char *v)
{
	size_t n;
	char *clean;

	if (!v)
		return;
	jsonw_add(b, key, klen);
	if (utf8_valid(v, n = strlen(v))) {
		jsonw_string(b, v);
		return;
	}
	/* a provider's finish_reason, a client's title cut mid-character: whole
	 * characters, U+FFFD for each bad byte, so that PostgreSQL's text takes
	 * every event */
	if (!(clean = malloc(3 * n + 1))) {
		b->oom = 1;
		return;
	}
	clean[utf8_sanitize(clean, 3 * n, v, n)] = '\0';
	jsonw_string(b, clean);
	free(clean);
}

char *
meter_event_json(const struct usage_event *e)
{
	struct jsonw b = { NULL, 0, 0, 0 };

	if (!e->id)
		return NULL;	/* no event without its generation id */
	jsonw_reserve(&b, 480);
	jb_str(&b, "{\"id\":", 6, e->id);	/* first: the keys after it open with a comma */
	JB_INT(&b, "\"ts\":", e->ts_ms);
	JB_INT(&b, "\"account\":", e->account_id);
	JB_INT(&b, "\"key\":", e->key_id);
	JB_STR(&b, "\"app_url\":", e->app_url);
	JB_STR(&b, "\"app_title\":", e->app_title);
	JB_STR(&b, "\"model\":", e->model);
	JB_STR(&b, "\"author\":", e->author);
	JB_STR(&b, "\"provider\":", e->provider);
	JB_INT(&b, "\"endpoint\":", e->endpoint_id);
	JB_INT(&b, "\"pt\":", e->prompt_tokens);
	JB_INT(&b, "\"ct\":", e->completion_tokens);
	JB_INT(&b, "\"cached\":", e->cached_tokens);
	JB_INT(&b, "\"reasoning\":", e->reasoning_tokens);
	JB_INT(&b, "\"cost\":", e->cost_nusd);
	JB_INT(&b, "\"pcost\":", e->provider_cost_nusd);
	JB_INT(&b, "\"latency_ms\":", e->latency_ms);
	JB_INT(&b, "\"ttft_ms\":", e->ttft_ms);
	JB_INT(&b, "\"tps_milli\":", e->tps_milli);
	JB_BOOL(&b, "\"stream\":", e->streamed);
	JB_BOOL(&b, "\"estimated\":", e->estimated);
	JB_INT(&b, "\"status\":", e->status);
	JB_INT(&b, "\"attempts\":", e->attempts);
	JB_STR(&b, "\"finish\":", e->finish_reason);
	if (e->provider_responses) {
		JB_KEY(&b, "\"tried\":");
		jsonw_add(&b, e->provider_responses, strlen(e->provider_responses));
	}
	jsonw_add(&b, "}", 1);
	if (b.oom) {
		free(b.p);
		return NULL;
	}
	return b.p;
}

/* ---- spool (loop side) ---- */

/* Queues one line for the writer thread. -1 when the spool is full. */
static int
spool_append(struct meter *m, const char *json)
{
	size_t n = strlen(json);
	int rc = -1;

	pthread_mutex_lock(&m->mu);
	if (m->spool_bytes + (int64_t)n + 1 <= m->spool_max) {
		if (m->pending_len + n + 1 > m->pending_cap) {
			size_t cap = m->pending_cap ? m->pending_cap * 2 : 65536;
			char *p;

			while (cap < m->pending_len + n + 1)
				cap *= 2;
			if (!(p = realloc(m->pending, cap)))
				goto out;
			m->pending = p;
			m->pending_cap = cap;
		}
		memcpy(m->pending + m->pending_len, json, n);
		m->pending[m->pending_len + n] = '\n';
		m->pending_len += n + 1;
		m->spool_bytes += (int64_t)n + 1;
		m->st.spooled++;
		rc = 0;
		pthread_cond_signal(&m->cv);
	} else {
		m->st.spool_full++;
	}
out:
	pthread_mutex_unlock(&m->mu);
	return rc;
}

int
meter_blocked(const struct meter *m)
{
	int64_t b;

	pthread_mutex_lock((pthread_mutex_t *)&m->mu);
	b = m->spool_bytes;
	pthread_mutex_unlock((pthread_mutex_t *)&m->mu);
	return b + 4096 > m->spool_max;
}

/* Events that could not be sent into the spool, each as a line (the
 * spool's bound is in bytes: as many as fit). -1: some lost, logged with
 * why they were spooled. */
static int
spool_events(struct meter *m, char *const *ev, int n, const char *why)
{
	int lost = 0;

	loop_timer_once(m->retry_ev, METER_RETRY_MS);	/* sent again then (retry_cb) */
	for (int i = 0; i < n; i++)
		lost += spool_append(m, ev[i]) < 0;
	if (lost)
		log_error("meter: %d of %d events from %.40s lost: %s and the spool is full", lost, n, ev[0], why);
	return lost ? -1 : 0;
}

/* ---- Redis ---- */

/* One replayed line answered (or the replay's guard released): when none
 * is left, the spool copy that was replayed can go. */
static void
replay_release(struct meter *m)
{
	if (--m->replay_left > 0)
		return;
	pthread_mutex_lock(&m->mu);
	m->want_unlink = 1;
	pthread_cond_signal(&m->cv);
	pthread_mutex_unlock(&m->mu);
	m->replaying = 0;
	log_info("meter: spool replay done (%lld events so far)", m->st.replayed);
}

static void replay_pump(struct meter *m);

struct xadd_ctx {
	struct meter *m;
	int replay, shard;
	uint64_t link;			/* rds_link it was written on (WAIT) */
	struct xadd_ctx *next;		/* awaiting the same WAIT */
	int n;				/* events in the entry */
	char *ev[];			/* they, ours (spooled if it fails) */
};

/* An XADD settled: delivered (ok), or spooled to be sent again. */
static void
xadd_done(struct meter *m, struct xadd_ctx *x, int ok)
{
	m->inflight -= x->n;
	if (!ok) {
		m->st.xadd_errors++;
		spool_events(m, x->ev, x->n, "Redis failed");
	} else if (x->replay) {
		m->st.replayed += x->n;
	} else {
		m->st.emitted += x->n;
	}
	if (x->replay)
		replay_release(m);
	for (int i = 0; i < x->n; i++)
		free(x->ev[i]);
	free(x);
	replay_pump(m);		/* room in flight again */
}

/* With redis_wait_replicas, an answered XADD waits for a WAIT on its link
 * (WAIT covers the writes made on its own connection). WAIT says enough
 * replicas have it: delivered. Too few: it stays on the master, and WAIT is
 * asked again a second later (a new master's replica still syncing, or a
 * replica away: events wait in memory, bounded by max_inflight, then
 * in the spool). Its link gone (a fail-over moved the master, a reconnect):
 * it may never reach the master that now counts, so it is spooled and sent
 * again; billing drops the duplicate by generation id. */
struct wait_ctx {
	struct meter *m;
	int shard;
	struct xadd_ctx *list;
};

static void
settle_all(struct meter *m, struct xadd_ctx *list, int ok)
{
	for (struct xadd_ctx *x = list, *nx; x; x = nx) {
		nx = x->next;
		xadd_done(m, x, ok);
	}
}

static void
wait_reply_cb(struct rds *rd, redisReply *r, void *arg)
{
	struct wait_ctx *w = arg;
	struct meter *m = w->m;

	(void)rd;
	m->wait_busy[w->shard] = 0;
	if (r && r->type == REDIS_REPLY_INTEGER && r->integer >= m->wait_replicas) {
		m->wait_short = 0;
		settle_all(m, w->list, 1);
	} else if (r && r->type == REDIS_REPLY_INTEGER) {
		m->wait_hold[w->shard] = 1;
		if (!m->wait_short++)
			log_warn("meter: WAIT %d: %lld replicas have the last events; asking again every %d ms",
				 m->wait_replicas, r->integer, METER_REWAIT_MS);
		while (w->list) {
			struct xadd_ctx *x = w->list;

			w->list = x->next;
			x->next = m->unsure[w->shard];
			m->unsure[w->shard] = x;
		}
		loop_timer_once(m->rewait_ev, METER_REWAIT_MS);
	} else {
		settle_all(m, w->list, 0);	/* link lost or an error: sent again */
	}
	if (m->unsure[w->shard] && !m->wait_hold[w->shard])
		event_active(m->wait_ev, EV_TIMEOUT, 0);	/* answered meanwhile */
	free(w);
}

static void
wait_send(struct meter *m, int shard)
{
	struct wait_ctx *w;
	uint64_t link;
	struct xadd_ctx *x, *gone = NULL, *here = NULL;

	if (m->wait_busy[shard] || m->wait_hold[shard])
		return;		/* its reply, or rewait_ev, sends the next */
	w = malloc(sizeof(*w));
	link = rds_link(m->rd, m->shard_key[shard], m->shard_len[shard]);
	while ((x = m->unsure[shard])) {
		m->unsure[shard] = x->next;
		if (x->link == link && link) {
			x->next = here;
			here = x;
		} else {
			x->next = gone;
			gone = x;
		}
	}
	settle_all(m, gone, 0);
	if (!here) {
		free(w);
		return;
	}
	if (w) {
		w->m = m;
		w->shard = shard;
		w->list = here;
		if (rds_command(m->rd, m->shard_key[shard], m->shard_len[shard], wait_reply_cb, w, "WAIT %d %d",
				m->wait_replicas, METER_WAIT_MS) == 0) {
			m->wait_busy[shard] = 1;
			return;
		}
		free(w);
	}
	settle_all(m, here, 0);
}

static void
wait_ev_cb(evutil_socket_t fd, short what, void *arg)
{
	struct meter *m = arg;

	(void)fd;
	(void)what;
	for (int i = 0; i < m->nshards; i++)
		if (m->unsure[i])
			wait_send(m, i);
}

/* A second after a short WAIT: the held shards ask again. */
static void
rewait_cb(evutil_socket_t fd, short what, void *arg)
{
	struct meter *m = arg;

	memset(m->wait_hold, 0, sizeof(m->wait_hold));
	wait_ev_cb(fd, what, arg);
}

static void
xadd_cb(struct rds *rd, redisReply *r, void *arg)
{
	struct xadd_ctx *x = arg;
	struct meter *m = x->m;
	int ok = r && r->type != REDIS_REPLY_ERROR;

	(void)rd;
	if (ok && m->wait_replicas > 0) {
		x->next = m->unsure[x->shard];
		m->unsure[x->shard] = x;
		event_active(m->wait_ev, EV_TIMEOUT, 0);	/* one WAIT per shard and loop turn */
		return;
	}
	xadd_done(m, x, ok);
}

/* The account of an event's JSON (ours: "account" is the third member),
 * for a replayed line; 0 when missing. */
static int64_t
json_account(const char *json, size_t len)
{
	const char *p = memmem(json, len, "\"account\":", 10);

	return p ? strtoll(p + 10, NULL, 10) : 0;
}

/* Sends one stream entry of n events (ev[i]: malloc'd JSON, len[i] bytes)
 * to a shard: XADD <key> * e <event>, or XADD <key> * ev <event> ev
 * <event> ... 0: the events are taken (freed once the XADD settles); -1:
 * not sent, still the caller's. */
static int
xadd(struct meter *m, char *const *ev, const size_t *len, int n, int shard, int replay)
{
	const char *argv[3 + 2 * RDS_ENTRY_EVENTS_MAX];
	size_t argl[3 + 2 * RDS_ENTRY_EVENTS_MAX];
	struct xadd_ctx *x;
	int argc = 3;

	if (n < 1 || n > RDS_ENTRY_EVENTS_MAX || !rds_is_connected(m->rd) || m->inflight + n > m->max_inflight)
		return -1;
	argv[0] = "XADD", argl[0] = 4;
	argv[1] = m->shard_key[shard], argl[1] = m->shard_len[shard];
	argv[2] = "*", argl[2] = 1;
	for (int i = 0; i < n; i++) {
		/* several: fields ev, which a billing worker older than them does
		 * not read (it sets the entry apart in usage:dead, whole, instead
		 * of billing the first event and acknowledging the others) */
		argv[argc] = n == 1 ? "e" : "ev";
		argl[argc++] = n == 1 ? 1 : 2;
		argv[argc] = ev[i];
		argl[argc++] = len[i];
	}
	if (!(x = malloc(sizeof(*x) + (size_t)n * sizeof(x->ev[0]))))
		return -1;
	x->m = m;
	x->replay = replay;
	x->shard = shard;
	x->next = NULL;
	/* the link it is written on, now: replies on a link left since (a new
	 * master) may come after the switch, and WAIT on the new link would not
	 * cover it */
	x->link = m->wait_replicas > 0 ? rds_link(m->rd, argv[1], argl[1]) : 0;
	x->n = n;
	memcpy(x->ev, ev, (size_t)n * sizeof(x->ev[0]));
	/* argv, not a format string: hiredis parses a format on every call */
	if (rds_command_argv(m->rd, argv[1], argl[1], xadd_cb, x, argc, argv, argl) < 0) {
		free(x);
		return -1;
	}
	m->inflight += n;
	return 0;
}

/* Live counters for dashboards: per minute, per model and provider, the
 * requests and tokens (hash live:<unix minute>, fields r|model|provider and
 * t|model|provider). Summed here and sent every METER_LIVE_MS (two
 * HINCRBYs a model and provider, not two a request), pipelined with the
 * XADDs; best effort: counts made while Redis is away are dropped, and
 * billing's tables, not these, are the record. */
static void
live_flush(struct meter *m)
{
	int up = rds_is_connected(m->rd);

	for (int i = 0; up && i < m->nlive; i++) {
		struct live_slot *l = &m->live[i];
		char key[40], req[24], tok[24], rf[METER_LIVE_FIELD + 2], tf[METER_LIVE_FIELD + 2];
		const char *argv[4] = { "HINCRBY", key, rf, req };
		size_t argl[4] = { 7, 0, l->flen + 2, 0 };

		argl[1] = (size_t)snprintf(key, sizeof(key), "live:%lld", (long long)l->minute);
		memcpy(rf, "r|", 2);
		memcpy(rf + 2, l->field, l->flen);
		memcpy(tf, "t|", 2);
		memcpy(tf + 2, l->field, l->flen);
		argl[3] = (size_t)snprintf(req, sizeof(req), "%lld", (long long)l->requests);
		rds_command_argv(m->rd, key, argl[1], NULL, NULL, 4, argv, argl);
		argv[2] = tf;
		argv[3] = tok;
		argl[3] = (size_t)snprintf(tok, sizeof(tok), "%lld", (long long)l->tokens);
		rds_command_argv(m->rd, key, argl[1], NULL, NULL, 4, argv, argl);
		if (m->live_expired != l->minute) {
			m->live_expired = l->minute;
			rds_command(m->rd, key, argl[1], NULL, NULL, "EXPIRE %s " METER_LIVE_TTL, key);
		}
	}
	m->nlive = 0;
}

static void
live_flush_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	live_flush(arg);
}

static void
live_count(struct meter *m, const struct usage_event *ev)
{
	int64_t minute = ev->ts_ms / 60000;
	char field[METER_LIVE_FIELD];
	struct live_slot *l = NULL;
	size_t ml, pl, n;

	if (!rds_is_connected(m->rd) || !ev->model || !ev->provider || m->inflight >= m->max_inflight)
		return;
	ml = strlen(ev->model);
	pl = strlen(ev->provider);
	if ((n = ml + 1 + pl) >= sizeof(field))
		return;
	memcpy(field, ev->model, ml);		/* "model|provider" */
	field[ml] = '|';
	memcpy(field + ml + 1, ev->provider, pl);
	for (int i = 0; i < m->nlive && !l; i++)
		if (m->live[i].minute == minute && m->live[i].flen == (size_t)n &&
		    memcmp(m->live[i].field, field, (size_t)n) == 0)
			l = &m->live[i];
	if (!l) {
		if (m->nlive == METER_LIVE_SLOTS)
			live_flush(m);
		l = &m->live[m->nlive++];
		l->minute = minute;
		l->requests = l->tokens = 0;
		l->flen = (size_t)n;
		memcpy(l->field, field, (size_t)n);
	}
	l->requests++;
	l->tokens += ev->prompt_tokens + ev->completion_tokens;
	loop_timer_once(m->live_ev, METER_LIVE_MS);
}

/* Spools events that could not be sent, and frees them. -1: some lost
 * (the spool is full). */
static int
spool_or_lose(struct meter *m, char *const *ev, int n)
{
	int rc = spool_events(m, ev, n, "Redis away");

	for (int i = 0; i < n; i++)
		free(ev[i]);
	return rc;
}

/* Sends the events held (the end of the loop turn, the flush timer, a full
 * queue, a stop): per shard, up to RDS_ENTRY_EVENTS_MAX events a stream
 * entry, which costs Redis and billing about what one event did (an entry
 * to add, read, acknowledge and trim). Within a shard the queue's order is
 * kept, in Redis and in the spool. The events' text is not copied: each
 * entry's XADD takes it as its arguments. */
static void
queue_send(struct meter *m)
{
	for (int i = 0; i < m->nqueue; i++) {
		char *ev[RDS_ENTRY_EVENTS_MAX];
		size_t len[RDS_ENTRY_EVENTS_MAX];
		int shard = m->queue[i].shard, n = 0;

		if (!m->queue[i].json)
			continue;	/* sent with an earlier entry */
		for (int j = i; j < m->nqueue && n < RDS_ENTRY_EVENTS_MAX; j++) {
			struct queued *q = &m->queue[j];

			if (q->json && q->shard == shard) {
				ev[n] = q->json;
				len[n++] = q->len;
				q->json = NULL;		/* taken */
			}
		}
		if (xadd(m, ev, len, n, shard, 0) < 0)
			spool_or_lose(m, ev, n);
	}
	m->nqueue = 0;
}

static void
flush_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	queue_send(arg);
}

int
meter_emit(struct meter *m, const struct usage_event *ev)
{
	char *json = meter_event_json(ev);
	int shard = rds_shard_of(ev->account_id, m->nshards);
	struct queued *q;

	if (!json)
		return -1;
	live_count(m, ev);
	if (m->draining || !rds_is_connected(m->rd)) {
		size_t len = strlen(json);

		queue_send(m);		/* the older ones first: the spool keeps the order */
		return xadd(m, &json, &len, 1, shard, 0) == 0 ? 0 : spool_or_lose(m, &json, 1);
	}
	if (m->nqueue == METER_QUEUE_MAX)
		queue_send(m);
	q = &m->queue[m->nqueue++];
	q->json = json;
	q->len = strlen(json);
	q->shard = shard;
	if (m->flush_ms <= 0) {
		/* after the requests this turn finishes; already active: a no-op */
		event_active(m->flush_ev, EV_TIMEOUT, 0);
	} else {
		loop_timer_once(m->flush_ev, m->flush_ms);
	}
	return 0;
}

void
meter_set_flush(struct meter *m, int ms)
{
	m->flush_ms = ms;
	if (ms <= 0)
		queue_send(m);
}

void
meter_drain(struct meter *m)
{
	m->draining = 1;
	queue_send(m);
}

/* Sends the replay's lines from where it stopped, in their order: up to
 * RDS_ENTRY_EVENTS_MAX consecutive lines of one shard an entry, as
 * queue_send does, while Redis is connected and max_inflight leaves room.
 * The rest wait in memory (and in the file aside) for the next call: an
 * XADD settled, a reconnect, the retry timer. Every line sent: the
 * replay's guard goes, and with it, once all are answered, the file. */
static void
replay_pump(struct meter *m)
{
	int stop = 0;

	if (!m->replay_buf || m->pumping)
		return;
	m->pumping = 1;
	while (!stop && m->replay_off < m->replay_end && m->inflight < m->max_inflight) {
		char *ev[RDS_ENTRY_EVENTS_MAX];
		size_t len[RDS_ENTRY_EVENTS_MAX], off = m->replay_off;
		int n = 0, shard = -1;

		while (n < RDS_ENTRY_EVENTS_MAX && n < m->max_inflight - m->inflight && off < m->replay_end) {
			char *line = m->replay_buf + off, *nl = memchr(line, '\n', m->replay_end - off);
			size_t l;
			int s;

			if (!nl) {
				off = m->replay_end;	/* a torn last line (crash mid-write): dropped */
				break;
			}
			if ((l = (size_t)(nl - line)) > 0) {
				s = rds_shard_of(json_account(line, l), m->nshards);
				if (n > 0 && s != shard)
					break;		/* the next entry's */
				if (!(ev[n] = strndup(line, l))) {
					stop = 1;	/* out of memory: the retry timer comes back */
					break;
				}
				len[n++] = l;
				shard = s;
			}
			off = (size_t)(nl + 1 - m->replay_buf);
		}
		if (n > 0 && xadd(m, ev, len, n, shard, 1) < 0) {
			for (int i = 0; i < n; i++)
				free(ev[i]);
			break;			/* not sent: Redis away, or no room */
		}
		m->replay_left += n > 0;
		m->replay_off = off;
	}
	m->pumping = 0;
	if (m->replay_off < m->replay_end) {
		loop_timer_once(m->retry_ev, METER_RETRY_MS);
		return;
	}
	free(m->replay_buf);
	m->replay_buf = NULL;
	replay_release(m);
}

/* Loop side of a replay: the thread has read the spool aside. */
static void
replay_ready_cb(evutil_socket_t fd, short what, void *arg)
{
	struct meter *m = arg;
	uint64_t n;
	int failed, ready;

	(void)what;
	(void)!read(fd, &n, sizeof(n));
	pthread_mutex_lock(&m->mu);
	ready = m->replay_ready;
	m->replay_ready = 0;
	failed = m->replay_failed;
	if (ready && !failed) {
		m->replay_buf = m->replay_data;
		m->replay_end = m->replay_buf ? m->replay_len : 0;
	}
	m->replay_data = NULL;
	pthread_mutex_unlock(&m->mu);
	if (!ready)
		return;
	if (failed) {		/* the file stays: the next reconnect or retry reads it */
		m->replaying = 0;
		return;
	}
	m->replay_off = 0;
	m->replay_left = 1;	/* guard: released once every line is sent */
	if (m->replay_buf)
		replay_pump(m);
	else
		replay_release(m);	/* nothing to send */
}

void
meter_redis_up(struct meter *m)
{
	if (m->replaying) {
		replay_pump(m);		/* what a disconnect stopped, if any */
		return;
	}
	m->replaying = 1;
	pthread_mutex_lock(&m->mu);
	m->want_replay = 1;
	pthread_cond_signal(&m->cv);
	pthread_mutex_unlock(&m->mu);
}

/* Events spooled while Redis answered (an error reply, a WAIT short of
 * replicas, a cluster node away) are replayed without waiting for a
 * reconnect; a reconnect replays anyway. */
static void
retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct meter *m = arg;

	(void)fd;
	(void)what;
	if (m->replaying) {
		replay_pump(m);
		loop_timer_once(m->retry_ev, METER_RETRY_MS);	/* what is spooled meanwhile, after */
	} else if (rds_is_connected(m->rd))
		meter_redis_up(m);
}

/* ---- the writer thread ---- */

static void
thread_write(struct meter *m, const char *buf, size_t len)
{
	int fd = open(m->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	size_t off = 0;

	if (fd < 0) {
		log_error("meter: spool %s: %s", m->path, strerror(errno));
		return;
	}
	while (off < len) {
		ssize_t w = write(fd, buf + off, len - off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			log_error("meter: spool write: %s", strerror(errno));
			break;
		}
		off += (size_t)w;
	}
	fdatasync(fd);
	close(fd);
}

static char *
thread_read_replay(struct meter *m, size_t *len, int *failed)
{
	struct stat st;
	char *buf = NULL;
	size_t got = 0;
	int fd;

	*len = 0;
	*failed = 0;
	if (access(m->replay_path, F_OK) != 0 && rename(m->path, m->replay_path) != 0)
		return NULL;	/* nothing spooled */
	if ((fd = open(m->replay_path, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &st) < 0)
		goto fail;
	/* the whole file, even past a spool_max_bytes lowered since it was
	 * written: what is on disk was accepted and must be billed */
	if (st.st_size > 0 && !(buf = malloc((size_t)st.st_size)))
		goto fail;
	while (got < (size_t)st.st_size) {
		ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			goto fail;
		if (r == 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	*len = got;
	return buf;
fail:
	log_error("meter: cannot read the spool %s: %s (kept; tried again at the next replay)", m->replay_path,
		  strerror(errno));
	if (fd >= 0)
		close(fd);
	free(buf);
	*failed = 1;
	return NULL;
}

static void *
thread_main(void *arg)
{
	struct meter *m = arg;

	pthread_mutex_lock(&m->mu);
	for (;;) {
		while (!m->stop && !m->pending_len && !m->want_replay && !m->want_unlink)
			pthread_cond_wait(&m->cv, &m->mu);
		if (m->pending_len) {
			char *buf = m->pending;
			size_t len = m->pending_len;

			m->pending = NULL;
			m->pending_len = m->pending_cap = 0;
			pthread_mutex_unlock(&m->mu);
			thread_write(m, buf, len);
			free(buf);
			pthread_mutex_lock(&m->mu);
			continue;
		}
		if (m->want_unlink) {
			struct stat st;

			m->want_unlink = 0;
			unlink(m->replay_path);
			m->spool_bytes = m->pending_len + (stat(m->path, &st) == 0 ? st.st_size : 0);
			continue;
		}
		if (m->want_replay) {
			char *data;
			size_t len;

			m->want_replay = 0;
			pthread_mutex_unlock(&m->mu);
			int failed;

			data = thread_read_replay(m, &len, &failed);
			pthread_mutex_lock(&m->mu);
			m->replay_data = data;
			m->replay_len = len;
			m->replay_failed = failed;
			m->replay_ready = 1;
			(void)!write(m->wake_fd, &(uint64_t){ 1 }, sizeof(uint64_t));
			continue;
		}
		if (m->stop)
			break;
	}
	pthread_mutex_unlock(&m->mu);
	return NULL;
}

/* ---- lifecycle ---- */

static int64_t
file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? (int64_t)st.st_size : 0;
}

struct meter *
meter_new(struct event_base *base, struct rds *rd, int shards, const char *spool_path, int64_t spool_max,
	  int max_inflight, char *err, size_t errlen)
{
	struct meter *m = calloc(1, sizeof(*m));

	if (!m) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	m->base = base;
	m->rd = rd;
	m->max_inflight = max_inflight > 0 ? max_inflight : 1;
	m->nshards = shards < 1 ? 1 : shards > RDS_SHARDS_MAX ? RDS_SHARDS_MAX : shards;
	for (int i = 0; i < m->nshards; i++)
		m->shard_len[i] = rds_shard_key(i, m->nshards, m->shard_key[i], METER_KEY_LEN);
	m->spool_max = spool_max;
	snprintf(m->path, sizeof(m->path), "%s", spool_path);
	snprintf(m->replay_path, sizeof(m->replay_path), "%s.replay", spool_path);
	m->spool_bytes = file_size(m->path) + file_size(m->replay_path);
	pthread_mutex_init(&m->mu, NULL);
	pthread_cond_init(&m->cv, NULL);
	if ((m->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0 ||
	    !(m->replay_ev = event_new(base, m->wake_fd, EV_READ | EV_PERSIST, replay_ready_cb, m)) ||
	    event_add(m->replay_ev, NULL) < 0 ||
	    !(m->wait_ev = event_new(base, -1, 0, wait_ev_cb, m)) ||
	    !(m->rewait_ev = evtimer_new(base, rewait_cb, m)) ||
	    !(m->retry_ev = evtimer_new(base, retry_cb, m)) ||
	    !(m->live_ev = evtimer_new(base, live_flush_cb, m)) ||
	    !(m->flush_ev = evtimer_new(base, flush_cb, m)) ||
	    pthread_create(&m->thread, NULL, thread_main, m) != 0) {
		snprintf(err, errlen, "meter: cannot start the spool thread");
		if (m->replay_ev)
			event_free(m->replay_ev);
		if (m->wait_ev)
			event_free(m->wait_ev);
		if (m->rewait_ev)
			event_free(m->rewait_ev);
		if (m->retry_ev)
			event_free(m->retry_ev);
		if (m->live_ev)
			event_free(m->live_ev);
		if (m->flush_ev)
			event_free(m->flush_ev);
		if (m->wake_fd >= 0)
			close(m->wake_fd);
		free(m);
		return NULL;
	}
	if (m->spool_bytes)
		log_info("meter: %lld spooled bytes wait for Redis", (long long)m->spool_bytes);
	return m;
}

void
meter_free(struct meter *m)
{
	if (!m)
		return;
	for (int i = 0; i < m->nqueue; i++)	/* never sent: spooled */
		spool_or_lose(m, &m->queue[i].json, 1);
	m->nqueue = 0;
	for (int i = 0; i < m->nshards; i++) {	/* never confirmed: spooled */
		for (struct xadd_ctx *x = m->unsure[i], *nx; x; x = nx) {
			nx = x->next;
			xadd_done(m, x, 0);
		}
		m->unsure[i] = NULL;
	}
	pthread_mutex_lock(&m->mu);
	m->stop = 1;
	pthread_cond_signal(&m->cv);
	pthread_mutex_unlock(&m->mu);
	pthread_join(m->thread, NULL);	/* writes what is pending first */
	event_free(m->replay_ev);
	event_free(m->wait_ev);
	event_free(m->rewait_ev);
	event_free(m->retry_ev);
	event_free(m->live_ev);	/* unsent live counts go (the Redis link is gone) */
	event_free(m->flush_ev);
	close(m->wake_fd);
	free(m->replay_data);
	free(m->replay_buf);
	pthread_mutex_destroy(&m->mu);
	pthread_cond_destroy(&m->cv);
	free(m);
}

void
meter_set_wait(struct meter *m, int replicas)
{
	m->wait_replicas = replicas;
}

long long
meter_unsettled(const struct meter *m)
{
	return m->inflight + m->nqueue;
}

void
meter_stats(const struct meter *m, struct meter_stats *st)
{
	pthread_mutex_lock((pthread_mutex_t *)&m->mu);
	*st = m->st;
	st->spool_bytes = m->spool_bytes;
	pthread_mutex_unlock((pthread_mutex_t *)&m->mu);
}
