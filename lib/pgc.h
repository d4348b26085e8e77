/*
 * pgc: one asynchronous PostgreSQL connection on a libevent loop. Queries are
 * queued (bounded), sent one at a time with PQsendQueryParams and completed
 * through callbacks; the loop never waits. Connects with PQconnectStart /
 * PQconnectPoll (use numeric hosts: libpq would resolve names synchronously),
 * reconnects with back-off, and delivers LISTEN notifications.
 *
 * Ownership: a result handed to a callback is borrowed; it is PQclear'ed
 * after the callback returns. Parameters are copied at pgc_query().
 */
#ifndef AGORA_PGC_H
#define AGORA_PGC_H

#include <event2/event.h>
#include <libpq-fe.h>

struct pgc;

/* res is NULL on failure (connection lost, time-out, queue flushed), with
 * err saying why; a result with an error status is passed as it is. */
typedef void (*pgc_result_fn)(PGresult *res, const char *err, void *arg);
typedef void (*pgc_notify_fn)(const char *channel, const char *payload, void *arg);
/* Called after every successful (re)connect, e.g. to LISTEN again. */
typedef void (*pgc_connect_fn)(struct pgc *pg, void *arg);

struct pgc *pgc_new(struct event_base *base, const char *conninfo, int timeout_ms,
		    int max_queue);
void pgc_free(struct pgc *pg);		/* pending callbacks get res NULL */
void pgc_set_notify_cb(struct pgc *pg, pgc_notify_fn fn, void *arg);
void pgc_set_connect_cb(struct pgc *pg, pgc_connect_fn fn, void *arg);
/* Starts connecting (asynchronously). */
void pgc_connect(struct pgc *pg);
int pgc_is_connected(const struct pgc *pg);

/* Queues a query with text parameters (NULL entries are SQL NULLs). Returns
 * 0, or -1 when the queue is full or memory is short (fn is not called). */
int pgc_query(struct pgc *pg, const char *sql, int nparams,
	      const char *const *params, pgc_result_fn fn, void *arg);
/* The same through a prepared statement, prepared from sql on each
 * connection the first time it is used: a statement run again and again is
 * then parsed once a session, and after five runs PostgreSQL plans it once
 * (a generic plan) instead of at every run. Its name is "agora_" + a 64-bit
 * hash of sql, so that no text runs under a name prepared from another (a
 * pooled server connection prepared by another version). At most 8
 * statements a connection (others go unnamed). Behind a transaction pool
 * (PgBouncer pool_mode = transaction), where a PREPARE and the next
 * Bind/Execute can land on different server connections, the first
 * 26000 / 42P05 makes this pgc send unnamed statements for good (one
 * warning) and the query goes again at once: nothing ran the first time.
 * With lengths (not NULL) every parameter is binary, lengths[i] bytes (NULL
 * entries are SQL NULLs); else text. */
int pgc_query_prepared(struct pgc *pg, const char *sql, int nparams, const char *const *params,
		       const int *lengths, pgc_result_fn fn, void *arg);

#endif
