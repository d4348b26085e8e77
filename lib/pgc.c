/*
 * pgc: asynchronous libpq on libevent (see pgc.h). States:
 *
 *   IDLE ─connect─▶ CONNECTING ─ok─▶ READY ─send─▶ BUSY ─result─▶ READY
 *                        │ fail                      │ fail / time-out
 *                        ▼                           ▼
 *                     WAITING (back-off timer) ◀─────┘ ─▶ CONNECTING
 */
#include "pgc.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "log.h"
#include "loop.h"

#define PGC_BACKOFF_MS 1000
#define PGC_PREPARED_MAX 8
#define PGC_NAME_LEN 40			/* "agora_" + 16 hex digits [+ "_" epoch] */

enum pgc_state { PGC_IDLE, PGC_CONNECTING, PGC_READY, PGC_BUSY, PGC_WAITING };

struct pgc_query {
	char *sql;
	int *lengths;			/* binary parameters' lengths, or NULL (text) */
	int *formats;
	char name[PGC_NAME_LEN];	/* prepared statement's name, or "" */
	int preparing;			/* its PREPARE is in flight */
	int retried;			/* sent again after its statement was lost */
	int nparams;
	char **params;
	pgc_result_fn fn;
	void *arg;
	STAILQ_ENTRY(pgc_query) link;
};

struct pgc {
	struct event_base *base;
	char *conninfo;
	int timeout_ms;
	int max_queue, nqueue;
	enum pgc_state state;
	PGconn *conn;
	struct event *io;		/* socket readiness */
	struct event *timer;		/* connect/query time-out, back-off */
	PGresult *last;			/* result of the query in flight */
	struct pgc_query *cur;		/* query in flight */
	STAILQ_HEAD(, pgc_query) queue;
	pgc_notify_fn notify_fn;
	void *notify_arg;
	pgc_connect_fn connect_fn;
	void *connect_arg;
	/* Statements prepared on this connection (forgotten when it drops). */
	char prepared[PGC_PREPARED_MAX][PGC_NAME_LEN];
	int nprepared;
	int unnamed;			/* behind a transaction pool: never prepare */
	unsigned epoch;			/* names made after a cached plan changed type */
};

static void pgc_io_cb(evutil_socket_t fd, short what, void *arg);
static void pgc_start_next(struct pgc *pg);
static int pgc_query_send(struct pgc *pg, int prepare, const char *sql, int nparams, const char *const *params,
			  const int *lengths, pgc_result_fn fn, void *arg);

static void
pgc_query_free(struct pgc_query *q)
{
	for (int i = 0; i < q->nparams; i++)
		free(q->params[i]);
	free(q->params);
	free(q->lengths);
	free(q->formats);
	free(q->sql);
	free(q);
}

static void
pgc_watch(struct pgc *pg, short what)
{
	if (pg->io) {
		event_free(pg->io);
		pg->io = NULL;
	}
	if (!pg->conn || PQsocket(pg->conn) < 0)
		return;
	pg->io = event_new(pg->base, PQsocket(pg->conn), what, pgc_io_cb, pg);
	if (pg->io)
		event_add(pg->io, NULL);
}

/* Fails the query in flight and every queued one. */
static void
pgc_fail_all(struct pgc *pg, const char *why)
{
	struct pgc_query *q;

	if (pg->last) {
		PQclear(pg->last);
		pg->last = NULL;
	}
	if ((q = pg->cur)) {
		pg->cur = NULL;
		q->fn(NULL, why, q->arg);
		pgc_query_free(q);
	}
	while ((q = STAILQ_FIRST(&pg->queue))) {
		STAILQ_REMOVE_HEAD(&pg->queue, link);
		pg->nqueue--;
		q->fn(NULL, why, q->arg);
		pgc_query_free(q);
	}
}

/* Drops the connection; retries after a back-off. why may point into the
 * connection (PQerrorMessage), which PQfinish frees: it is copied first. */
static void
pgc_reset(struct pgc *pg, const char *why_in)
{
	char why[512];

	snprintf(why, sizeof(why), "%s", why_in ? why_in : "connection lost");
	log_warn("postgresql: %s", why);
	if (pg->io) {
		event_free(pg->io);
		pg->io = NULL;
	}
	if (pg->conn) {
		PQfinish(pg->conn);
		pg->conn = NULL;
	}
	pg->state = PGC_WAITING;
	pg->nprepared = 0;		/* a new session has none */
	pgc_fail_all(pg, why);
	loop_timer_in(pg->timer, PGC_BACKOFF_MS);
}

static void
pgc_connect_step(struct pgc *pg)
{
	switch (PQconnectPoll(pg->conn)) {
	case PGRES_POLLING_READING:
		pgc_watch(pg, EV_READ);
		return;
	case PGRES_POLLING_WRITING:
		pgc_watch(pg, EV_WRITE);
		return;
	case PGRES_POLLING_OK:
		evtimer_del(pg->timer);
		PQsetnonblocking(pg->conn, 1);
		pg->state = PGC_READY;
		pgc_watch(pg, EV_READ | EV_PERSIST);
		log_info("postgresql: connected");
		if (pg->connect_fn)
			pg->connect_fn(pg, pg->connect_arg);
		pgc_start_next(pg);
		return;
	default:
		pgc_reset(pg, PQerrorMessage(pg->conn));
	}
}

void
pgc_connect(struct pgc *pg)
{
	if (pg->state != PGC_IDLE && pg->state != PGC_WAITING)
		return;
	pg->conn = PQconnectStart(pg->conninfo);
	if (!pg->conn || PQstatus(pg->conn) == CONNECTION_BAD) {
		pgc_reset(pg, pg->conn ? PQerrorMessage(pg->conn) : "out of memory");
		return;
	}
	pg->state = PGC_CONNECTING;
	loop_timer_in(pg->timer, pg->timeout_ms);
	pgc_connect_step(pg);
}

/* The statement's name: a hash of its text (64-bit FNV-1a), so that a text
 * never runs under a name prepared from another one (a server connection
 * of a pool that another version of the program prepared it on). */
static void
pgc_stmt_name(const struct pgc *pg, const char *sql, char *name, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (const unsigned char *p = (const unsigned char *)sql; *p; p++)
		h = (h ^ *p) * 0x100000001b3ULL;
	if (pg->epoch)
		snprintf(name, len, "agora_%016llx_%u", (unsigned long long)h, pg->epoch);
	else
		snprintf(name, len, "agora_%016llx", (unsigned long long)h);
}

static int
pgc_is_prepared(const struct pgc *pg, const char *name)
{
	for (int i = 0; i < pg->nprepared; i++)
		if (strcmp(pg->prepared[i], name) == 0)
			return 1;
	return 0;
}

/* Sends q: a plain query, its statement's PREPARE (the first time on this
 * connection), or the prepared statement. 0 when libpq refused. */
static int
pgc_send(struct pgc *pg, struct pgc_query *q)
{
	q->preparing = 0;
	if (q->name[0] && !pg->unnamed)
		pgc_stmt_name(pg, q->sql, q->name, sizeof(q->name));	/* the epoch may have changed */
	if (pg->unnamed || (q->name[0] && !pgc_is_prepared(pg, q->name) && pg->nprepared == PGC_PREPARED_MAX))
		q->name[0] = '\0';	/* no prepared statements, or no room to remember one: a plain query */
	if (!q->name[0])
		return PQsendQueryParams(pg->conn, q->sql, q->nparams, NULL, (const char *const *)q->params,
					 q->lengths, q->formats, 0);
	if (pgc_is_prepared(pg, q->name))
		return PQsendQueryPrepared(pg->conn, q->name, q->nparams, (const char *const *)q->params,
					   q->lengths, q->formats, 0);
	q->preparing = 1;
	return PQsendPrepare(pg->conn, q->name, q->sql, q->nparams, NULL);
}

/* Sends q and flushes what libpq could not write at once (the rest when
 * the socket takes it), its deadline armed when arm; a failure resets the
 * connection. */
static void
pgc_send_flush(struct pgc *pg, struct pgc_query *q, int arm)
{
	int r;

	if (!pgc_send(pg, q)) {
		pgc_reset(pg, PQerrorMessage(pg->conn));
		return;
	}
	if (arm)
		loop_timer_in(pg->timer, pg->timeout_ms);
	if ((r = PQflush(pg->conn)) < 0)
		pgc_reset(pg, PQerrorMessage(pg->conn));
	else if (r == 1)
		pgc_watch(pg, EV_READ | EV_WRITE | EV_PERSIST);
}

/* q's PREPARE answered: when it worked, q itself goes out now (1); when it
 * failed, 0 and the error result goes to q's callback. */
static int
pgc_prepared_step(struct pgc *pg, struct pgc_query *q)
{
	if (!pg->last || PQresultStatus(pg->last) != PGRES_COMMAND_OK)
		return 0;
	PQclear(pg->last);
	pg->last = NULL;
	memcpy(pg->prepared[pg->nprepared++], q->name, PGC_NAME_LEN);	/* room checked by pgc_send */
	pgc_send_flush(pg, q, 0);
	return 1;
}

/* Whether res says the prepared statement q used is not there, or not the
 * one it was: 26000 (no such name on this server connection), 42P05 (the
 * name is there already), 0A000 "cached plan must not change result type".
 * That 0A000 is told from the others by the server function that raised
 * it (plancache.c's RevalidateCachedQuery), which lc_messages does not
 * translate; the English text too, for a server that sends no function.
 * The statement ran nothing then (refused at Parse, Bind or planning, in
 * its own implicit transaction), so q can go again as it is. */
static int
pgc_stmt_lost(const struct pgc_query *q, const PGresult *res)
{
	const char *st = res && PQresultStatus(res) == PGRES_FATAL_ERROR
			 ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	const char *fn, *msg;

	if (!st || !q->name[0] || q->retried)
		return 0;
	if (strcmp(st, "26000") == 0 || strcmp(st, "42P05") == 0)
		return 1;
	if (strcmp(st, "0A000") != 0)
		return 0;
	fn = PQresultErrorField(res, PG_DIAG_SOURCE_FUNCTION);
	msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	return (fn && strcmp(fn, "RevalidateCachedQuery") == 0) ||
	       (msg && strstr(msg, "cached plan must not change result type"));
}

/* q's prepared statement was lost (pgc_stmt_lost): the connection's
 * prepared statements are forgotten and q is sent again at once. A name
 * missing, or there already, means the session is not ours alone (a
 * transaction pool such as PgBouncer gives each transaction any server
 * connection): from now on unnamed statements, as PQexecParams sends
 * them. A changed cached plan (a table altered under it) gets a new name.
 * 1 when q went again. */
static int
pgc_stmt_retry(struct pgc *pg, struct pgc_query *q)
{
	const char *st = PQresultErrorField(pg->last, PG_DIAG_SQLSTATE);

	if (strcmp(st, "0A000") == 0) {
		pg->epoch++;
		log_warn("postgresql: prepared statement %s: %s; prepared again under a new name", q->name,
			 PQresultErrorField(pg->last, PG_DIAG_MESSAGE_PRIMARY));
	} else if (!pg->unnamed) {
		pg->unnamed = 1;
		log_warn("postgresql: prepared statement %s: %s (SQLSTATE %s): the server connection changes"
			 " between transactions (a transaction pool such as PgBouncer); unnamed statements from now on",
			 q->name, PQresultErrorField(pg->last, PG_DIAG_MESSAGE_PRIMARY), st);
	}
	PQclear(pg->last);
	pg->last = NULL;
	pg->nprepared = 0;
	q->retried = 1;
	pgc_send_flush(pg, q, 1);
	return 1;
}

static void
pgc_deliver_notifies(struct pgc *pg)
{
	PGnotify *n;

	while (pg->conn && (n = PQnotifies(pg->conn))) {
		if (pg->notify_fn)
			pg->notify_fn(n->relname, n->extra, pg->notify_arg);
		PQfreemem(n);
	}
}

/* Reads what is available; completes the query in flight when it is done. */
static void
pgc_read(struct pgc *pg)
{
	PGresult *res;

	if (!PQconsumeInput(pg->conn)) {
		pgc_reset(pg, PQerrorMessage(pg->conn));
		return;
	}
	pgc_deliver_notifies(pg);
	while (pg->state == PGC_BUSY && !PQisBusy(pg->conn)) {
		struct pgc_query *q = pg->cur;

		if ((res = PQgetResult(pg->conn))) {
			/* Keep the last result; an error result wins. */
			if (pg->last && PQresultStatus(pg->last) == PGRES_FATAL_ERROR) {
				PQclear(res);
			} else {
				if (pg->last)
					PQclear(pg->last);
				pg->last = res;
			}
			continue;
		}
		if (q->preparing && pgc_prepared_step(pg, q))
			continue;
		if (pgc_stmt_lost(q, pg->last) && pgc_stmt_retry(pg, q))
			continue;
		evtimer_del(pg->timer);
		res = pg->last;
		pg->last = NULL;
		pg->cur = NULL;
		pg->state = PGC_READY;
		q->fn(res, res ? NULL : "no result", q->arg);
		if (res)
			PQclear(res);
		pgc_query_free(q);
		pgc_start_next(pg);
	}
}

static void
pgc_io_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pgc *pg = arg;

	(void)fd;
	if (pg->state == PGC_CONNECTING) {
		pgc_connect_step(pg);
		return;
	}
	if (what & EV_WRITE) {
		int r = PQflush(pg->conn);

		if (r < 0) {
			pgc_reset(pg, PQerrorMessage(pg->conn));
			return;
		}
		if (r == 0)
			pgc_watch(pg, EV_READ | EV_PERSIST);
	}
	if (what & EV_READ)
		pgc_read(pg);
}

static void
pgc_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pgc *pg = arg;

	(void)fd;
	(void)what;
	if (pg->state == PGC_WAITING) {
		pg->state = PGC_IDLE;
		pgc_connect(pg);
	} else if (pg->state == PGC_CONNECTING) {
		pgc_reset(pg, "connect timed out");
	} else if (pg->state == PGC_BUSY) {
		pgc_reset(pg, "query timed out");
	}
}

static void
pgc_start_next(struct pgc *pg)
{
	struct pgc_query *q;

	if (pg->state != PGC_READY || !(q = STAILQ_FIRST(&pg->queue)))
		return;
	STAILQ_REMOVE_HEAD(&pg->queue, link);
	pg->nqueue--;
	pg->cur = q;
	pg->state = PGC_BUSY;
	pgc_send_flush(pg, q, 1);
}

int
pgc_query(struct pgc *pg, const char *sql, int nparams, const char *const *params,
	  pgc_result_fn fn, void *arg)
{
	return pgc_query_send(pg, 0, sql, nparams, params, NULL, fn, arg);
}

/* Copies parameter i: text up to its NUL, binary of lengths[i] bytes. */
static int
pgc_param_copy(struct pgc_query *q, int i, const char *p, const int *lengths)
{
	if (!p)
		return 0;
	if (!lengths)
		return (q->params[i] = strdup(p)) ? 0 : -1;
	if (!(q->params[i] = malloc(lengths[i] ? (size_t)lengths[i] : 1)))
		return -1;
	memcpy(q->params[i], p, (size_t)lengths[i]);
	q->lengths[i] = lengths[i];
	q->formats[i] = 1;
	return 0;
}

int
pgc_query_prepared(struct pgc *pg, const char *sql, int nparams, const char *const *params,
		   const int *lengths, pgc_result_fn fn, void *arg)
{
	return pgc_query_send(pg, 1, sql, nparams, params, lengths, fn, arg);
}

/* Queues a query, through a prepared statement when prepare is 1. */
static int
pgc_query_send(struct pgc *pg, int prepare, const char *sql, int nparams, const char *const *params,
	       const int *lengths, pgc_result_fn fn, void *arg)
{
	struct pgc_query *q;

	if (pg->nqueue >= pg->max_queue || !(q = calloc(1, sizeof(*q))))
		return -1;
	if (prepare)
		pgc_stmt_name(pg, sql, q->name, sizeof(q->name));
	q->fn = fn;
	q->arg = arg;
	q->nparams = nparams;
	if (!(q->sql = strdup(sql)))
		goto fail;
	if (nparams && !(q->params = calloc((size_t)nparams, sizeof(char *))))
		goto fail;
	if (nparams && lengths && (!(q->lengths = calloc((size_t)nparams, sizeof(int))) ||
				   !(q->formats = calloc((size_t)nparams, sizeof(int)))))
		goto fail;
	for (int i = 0; i < nparams; i++)
		if (pgc_param_copy(q, i, params[i], lengths) < 0)
			goto fail;
	STAILQ_INSERT_TAIL(&pg->queue, q, link);
	pg->nqueue++;
	if (pg->state == PGC_IDLE)
		pgc_connect(pg);
	else
		pgc_start_next(pg);
	return 0;
fail:
	pgc_query_free(q);
	return -1;
}

struct pgc *
pgc_new(struct event_base *base, const char *conninfo, int timeout_ms, int max_queue)
{
	struct pgc *pg = calloc(1, sizeof(*pg));

	if (!pg)
		return NULL;
	pg->base = base;
	pg->timeout_ms = timeout_ms;
	pg->max_queue = max_queue;
	STAILQ_INIT(&pg->queue);
	pg->conninfo = strdup(conninfo);
	pg->timer = evtimer_new(base, pgc_timer_cb, pg);
	if (!pg->conninfo || !pg->timer) {
		pgc_free(pg);
		return NULL;
	}
	return pg;
}

void
pgc_set_notify_cb(struct pgc *pg, pgc_notify_fn fn, void *arg)
{
	pg->notify_fn = fn;
	pg->notify_arg = arg;
}

void
pgc_set_connect_cb(struct pgc *pg, pgc_connect_fn fn, void *arg)
{
	pg->connect_fn = fn;
	pg->connect_arg = arg;
}

int
pgc_is_connected(const struct pgc *pg)
{
	return pg->state == PGC_READY || pg->state == PGC_BUSY;
}

void
pgc_free(struct pgc *pg)
{
	if (!pg)
		return;
	pgc_fail_all(pg, "shutting down");
	if (pg->io)
		event_free(pg->io);
	if (pg->timer)
		event_free(pg->timer);
	if (pg->conn)
		PQfinish(pg->conn);
	free(pg->conninfo);
	free(pg);
}
