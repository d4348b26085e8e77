/*
 * meter: usage events to Redis, with a local spool (see meter.h).
 *
 * Threads: the loop never touches the spool file. It appends spooled lines
 * to `pending` under a mutex; the writer thread writes them with O_APPEND and
 * fdatasync()s. For a replay, the thread renames the spool aside, reads it
 * and hands the bytes to the loop (event_active on a libevent event, which
 * needs evthread_use_pthreads()); the loop XADDs every line and then asks the
 * thread to delete the file. Lines that fail again are spooled again.
 */
#include "meter.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <hiredis/hiredis.h>

#include "log.h"

#define METER_MAX_INFLIGHT 100000	/* XADDs awaiting a reply */
#define METER_STREAM "usage"
#define METER_LIVE_TTL "7200"		/* live counters: two hours of minutes */

struct meter {
	struct event_base *base;
	struct rds *rd;
	char path[512], replay_path[520];
	int64_t spool_max;
	long long inflight;
	struct event *replay_ev;	/* thread -> loop: replay bytes ready */
	int replaying;			/* a replay is under way */
	long long replay_left;		/* its XADDs awaiting replies */
	int64_t live_expired;		/* last minute whose live key got its TTL */
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
};

/* ---- the event as JSON ---- */

static void
add_str(cJSON *o, const char *k, const char *v)
{
	if (v)
		cJSON_AddStringToObject(o, k, v);
}

char *
meter_event_json(const struct usage_event *e)
{
	cJSON *o = cJSON_CreateObject();
	char *s, *out = NULL;

	if (!o)
		return NULL;
	add_str(o, "id", e->id);
	cJSON_AddNumberToObject(o, "ts", (double)e->ts_ms);
	cJSON_AddNumberToObject(o, "account", (double)e->account_id);
	cJSON_AddNumberToObject(o, "key", (double)e->key_id);
	add_str(o, "app_url", e->app_url);
	add_str(o, "app_title", e->app_title);
	add_str(o, "model", e->model);
	add_str(o, "author", e->author);
	add_str(o, "provider", e->provider);
	cJSON_AddNumberToObject(o, "endpoint", (double)e->endpoint_id);
	cJSON_AddNumberToObject(o, "pt", (double)e->prompt_tokens);
	cJSON_AddNumberToObject(o, "ct", (double)e->completion_tokens);
	cJSON_AddNumberToObject(o, "cached", (double)e->cached_tokens);
	cJSON_AddNumberToObject(o, "reasoning", (double)e->reasoning_tokens);
	cJSON_AddNumberToObject(o, "cost", (double)e->cost_nusd);
	cJSON_AddNumberToObject(o, "pcost", (double)e->provider_cost_nusd);
	cJSON_AddNumberToObject(o, "latency_ms", e->latency_ms);
	cJSON_AddNumberToObject(o, "ttft_ms", e->ttft_ms);
	cJSON_AddNumberToObject(o, "tps_milli", (double)e->tps_milli);
	cJSON_AddBoolToObject(o, "stream", e->streamed);
	cJSON_AddBoolToObject(o, "estimated", e->estimated);
	cJSON_AddNumberToObject(o, "status", e->status);
	cJSON_AddNumberToObject(o, "attempts", e->attempts);
	add_str(o, "finish", e->finish_reason);
	if (e->provider_responses)
		cJSON_AddItemToObject(o, "tried", cJSON_CreateRaw(e->provider_responses));
	if ((s = cJSON_PrintUnformatted(o))) {
		out = strdup(s);
		cJSON_free(s);
	}
	cJSON_Delete(o);
	return out;
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

struct xadd_ctx {
	struct meter *m;
	int replay;
	char json[];
};

static void
xadd_cb(redisAsyncContext *ac, void *reply, void *arg)
{
	struct xadd_ctx *x = arg;
	struct meter *m = x->m;
	redisReply *r = reply;

	(void)ac;
	m->inflight--;
	if (!r || r->type == REDIS_REPLY_ERROR) {
		m->st.xadd_errors++;
		if (spool_append(m, x->json) < 0)
			log_error("meter: event %.40s lost: Redis failed and the spool is full", x->json);
	} else if (x->replay) {
		m->st.replayed++;
	} else {
		m->st.emitted++;
	}
	if (x->replay)
		replay_release(m);
	free(x);
}

static int
xadd(struct meter *m, const char *json, size_t len, int replay)
{
	redisAsyncContext *ac = rds_ctx(m->rd);
	struct xadd_ctx *x;

	if (!ac || m->inflight >= METER_MAX_INFLIGHT || !(x = malloc(sizeof(*x) + len + 1)))
		return -1;
	x->m = m;
	x->replay = replay;
	memcpy(x->json, json, len);
	x->json[len] = '\0';
	if (redisAsyncCommand(ac, xadd_cb, x, "XADD " METER_STREAM " * e %b", x->json, len) != REDIS_OK) {
		free(x);
		return -1;
	}
	m->inflight++;
	return 0;
}

/* Live counters for dashboards: per minute, per model and provider, the
 * requests and tokens (hash live:<unix minute>, fields r|model|provider and
 * t|model|provider). Best effort, fire and forget, pipelined with the XADDs;
 * billing's tables, not these, are the record. */
static void
live_count(struct meter *m, const struct usage_event *ev)
{
	redisAsyncContext *ac = rds_ctx(m->rd);
	int64_t minute = ev->ts_ms / 60000;
	char key[40];

	if (!ac || !ev->model || !ev->provider || m->inflight >= METER_MAX_INFLIGHT)
		return;
	snprintf(key, sizeof(key), "live:%lld", (long long)minute);
	redisAsyncCommand(ac, NULL, NULL, "HINCRBY %s r|%s|%s 1", key, ev->model, ev->provider);
	redisAsyncCommand(ac, NULL, NULL, "HINCRBY %s t|%s|%s %lld", key, ev->model, ev->provider,
			  (long long)(ev->prompt_tokens + ev->completion_tokens));
	if (m->live_expired != minute) {
		m->live_expired = minute;
		redisAsyncCommand(ac, NULL, NULL, "EXPIRE %s " METER_LIVE_TTL, key);
	}
}

int
meter_emit(struct meter *m, const struct usage_event *ev)
{
	char *json = meter_event_json(ev);
	int rc = 0;

	if (!json)
		return -1;
	live_count(m, ev);
	if (xadd(m, json, strlen(json), 0) < 0 && spool_append(m, json) < 0) {
		log_error("meter: event %s lost: Redis away and the spool is full", ev->id);
		rc = -1;
	}
	free(json);
	return rc;
}

/* Loop side of a replay: the thread has read the spool aside. */
static void
replay_ready_cb(evutil_socket_t fd, short what, void *arg)
{
	struct meter *m = arg;
	char *data, *line, *nl;
	size_t len;

	(void)fd;
	(void)what;
	pthread_mutex_lock(&m->mu);
	data = m->replay_data;
	len = m->replay_len;
	m->replay_data = NULL;
	pthread_mutex_unlock(&m->mu);
	m->replay_left = 1;	/* guard: released after the loop below */
	for (line = data; data && line < data + len; line = nl + 1) {
		if (!(nl = memchr(line, '\n', (size_t)(data + len - line))))
			break;	/* a torn last line (crash mid-write): dropped */
		if (nl == line)
			continue;
		if (xadd(m, line, (size_t)(nl - line), 1) == 0) {
			m->replay_left++;
		} else {
			*nl = '\0';
			spool_append(m, line);
		}
	}
	free(data);
	replay_release(m);
}

void
meter_redis_up(struct meter *m)
{
	if (m->replaying)
		return;
	m->replaying = 1;
	pthread_mutex_lock(&m->mu);
	m->want_replay = 1;
	pthread_cond_signal(&m->cv);
	pthread_mutex_unlock(&m->mu);
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
thread_read_replay(struct meter *m, size_t *len)
{
	struct stat st;
	char *buf = NULL;
	ssize_t r;
	int fd;

	*len = 0;
	if (access(m->replay_path, F_OK) != 0 && rename(m->path, m->replay_path) != 0)
		return NULL;	/* nothing spooled */
	if ((fd = open(m->replay_path, O_RDONLY | O_CLOEXEC)) < 0)
		return NULL;
	if (fstat(fd, &st) == 0 && st.st_size > 0 && st.st_size <= m->spool_max &&
	    (buf = malloc((size_t)st.st_size))) {
		r = read(fd, buf, (size_t)st.st_size);
		*len = r > 0 ? (size_t)r : 0;
	}
	close(fd);
	return buf;
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
			data = thread_read_replay(m, &len);
			pthread_mutex_lock(&m->mu);
			m->replay_data = data;
			m->replay_len = len;
			event_active(m->replay_ev, EV_TIMEOUT, 0);
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
meter_new(struct event_base *base, struct rds *rd, const char *spool_path, int64_t spool_max,
	  char *err, size_t errlen)
{
	struct meter *m = calloc(1, sizeof(*m));

	if (!m) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	m->base = base;
	m->rd = rd;
	m->spool_max = spool_max;
	snprintf(m->path, sizeof(m->path), "%s", spool_path);
	snprintf(m->replay_path, sizeof(m->replay_path), "%s.replay", spool_path);
	m->spool_bytes = file_size(m->path) + file_size(m->replay_path);
	pthread_mutex_init(&m->mu, NULL);
	pthread_cond_init(&m->cv, NULL);
	if (!(m->replay_ev = event_new(base, -1, 0, replay_ready_cb, m)) ||
	    pthread_create(&m->thread, NULL, thread_main, m) != 0) {
		snprintf(err, errlen, "meter: cannot start the spool thread");
		if (m->replay_ev)
			event_free(m->replay_ev);
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
	pthread_mutex_lock(&m->mu);
	m->stop = 1;
	pthread_cond_signal(&m->cv);
	pthread_mutex_unlock(&m->mu);
	pthread_join(m->thread, NULL);	/* writes what is pending first */
	event_free(m->replay_ev);
	free(m->replay_data);
	pthread_mutex_destroy(&m->mu);
	pthread_cond_destroy(&m->cv);
	free(m);
}

void
meter_stats(const struct meter *m, struct meter_stats *st)
{
	pthread_mutex_lock((pthread_mutex_t *)&m->mu);
	*st = m->st;
	st->spool_bytes = m->spool_bytes;
	pthread_mutex_unlock((pthread_mutex_t *)&m->mu);
}
