/*
 * upstream: the router's HTTP/1.1 client to providers. Keep-alive pools per
 * origin (scheme, host, port), HTTPS through bufferevent_openssl with peer
 * verification against the configured or system CAs and SNI, names resolved
 * with evdns, and one deadline per request for each phase: connect, first
 * byte, idle between chunks, total. Answers stream to the caller as they
 * arrive (chunked encoding decoded); nothing is buffered whole here.
 *
 * Callbacks: on_head once, on_body zero or more times, then exactly one of
 * on_done / on_error — unless the caller cancels, after which none run. A
 * callback may call upstream_cancel() or upstream_pause() on its request.
 */
#ifndef AGORA_UPSTREAM_H
#define AGORA_UPSTREAM_H

#include <stddef.h>

#include <event2/event.h>

struct upstream_pool;
struct upstream_req;

enum upstream_err {
	UPSTREAM_ERR_CONNECT,	/* could not connect (refused, DNS, TLS) */
	UPSTREAM_ERR_RESET,	/* closed or reset before a whole answer */
	UPSTREAM_ERR_TIMEOUT,	/* a phase deadline passed */
	UPSTREAM_ERR_PROTOCOL,	/* not HTTP, or an over-long head */
};

struct upstream_limits {
	int connect_ms, first_byte_ms, idle_ms, total_ms;
	int pool_idle;			/* idle connections kept per origin */
	int pool_idle_ms;		/* idle connection lifetime */
	const char *ca_file;		/* NULL or "": system CAs */
};

struct upstream_cbs {
	/* retry_after: seconds from a Retry-After header, or -1. */
	void (*on_head)(void *arg, int status, const char *content_type, int retry_after);
	void (*on_body)(void *arg, const char *data, size_t len);
	void (*on_done)(void *arg);
	void (*on_error)(void *arg, enum upstream_err err, const char *msg);
};

struct upstream_pool *upstream_pool_new(struct event_base *base,
					const struct upstream_limits *lim,
					char *err, size_t errlen);
void upstream_pool_free(struct upstream_pool *p);
/* SIGHUP: new time-outs and pool bounds for requests from now on, and a new
 * CA bundle for new connections (-1 and nothing changed when it does not
 * load; connections open keep theirs). */
int upstream_pool_set_limits(struct upstream_pool *p, const struct upstream_limits *lim,
			     char *err, size_t errlen);

/* Sends a request to url ("http[s]://host[:port]/path"). headers is a
 * NULL-terminated list of "Name: value" lines (Host, Content-Length and
 * Connection are added here). body (malloc'd, len bytes) is taken: written
 * as it is, kept for a retry and freed here, also when NULL is returned (a
 * bad URL, no memory). */
struct upstream_req *upstream_send(struct upstream_pool *p, const char *method,
				   const char *url, const char *const *headers,
				   char *body, size_t len,
				   const struct upstream_cbs *cbs, void *arg);
/* Abandons the request: closes its connection, no more callbacks. */
void upstream_cancel(struct upstream_req *r);
/* Stops (1) or resumes (0) reading the answer: backpressure. */
void upstream_pause(struct upstream_req *r, int paused);

/* Counters for /metrics and tests. */
struct upstream_stats {
	long long connects, reuses, open, idle;
};
void upstream_pool_stats(const struct upstream_pool *p, struct upstream_stats *st);

#endif
