/*
 * httpd: a small HTTP/1.1 server on libevent bufferevents, parsing with
 * http_parser. Every limit is explicit (head size, header count, body size,
 * connections, read/idle/write time-outs) and every protocol error answers in
 * the JSON error shape {"error":{"code":N,"message":"..."}}.
 *
 * Ownership: a request (struct httpd_req) is handed to the handler and stays
 * valid until the handler completes it with httpd_reply*() or
 * httpd_stream_end(). If the client goes away first, the abort callback runs
 * (the connection is gone, the request is not): the handler still completes
 * the request, which then only frees it.
 */
#ifndef AGORA_HTTPD_H
#define AGORA_HTTPD_H

#include <stddef.h>

#include <cjson/cJSON.h>
#include <event2/event.h>

struct httpd;
struct httpd_req;

struct httpd_limits {
	size_t max_header_bytes;	/* request line + headers (431 above) */
	size_t max_body_bytes;		/* request body (413 above) */
	int max_headers;		/* header count (431 above) */
	int max_connections;		/* open connections (503 above) */
	int header_timeout_ms;		/* to receive a whole request (408) */
	int idle_timeout_ms;		/* keep-alive idle before close */
	int write_timeout_ms;		/* peer not reading our output */
};

typedef void (*httpd_handler_fn)(struct httpd_req *req, void *arg);
typedef void (*httpd_req_fn)(struct httpd_req *req, void *arg);

/* Listens on addr ("host:port"; port 0 picks one). NULL on error (in err). */
struct httpd *httpd_new(struct event_base *base, const char *addr,
			const struct httpd_limits *lim, httpd_handler_fn fn,
			void *arg, char *err, size_t errlen);
/* Serves n listening sockets made elsewhere (lsock.h; not closed here),
 * not accepting until httpd_start_accepting(). */
struct httpd *httpd_new_fds(struct event_base *base, const int *fds, int n,
			    const struct httpd_limits *lim, httpd_handler_fn fn,
			    void *arg, char *err, size_t errlen);
/* New limits: connections accepted and requests started from now on. */
void httpd_set_limits(struct httpd *h, const struct httpd_limits *lim);
/* Closes the listener and every connection. Requests held by handlers are
 * aborted (abort callbacks run) and freed when the handler completes them. */
void httpd_free(struct httpd *h);
/* Serves TLS on every connection accepted from now on (ctx: a server
 * SSL_CTX, referenced, not owned; it must outlive the httpd). */
struct ssl_ctx_st;
void httpd_set_tls(struct httpd *h, struct ssl_ctx_st *ctx);
int httpd_port(const struct httpd *h);
int httpd_connections(const struct httpd *h);
/* Accepting new connections on (httpd_new: from the start) or off. */
void httpd_start_accepting(struct httpd *h);
void httpd_stop_accepting(struct httpd *h);
/* For metrics: fn runs as each answer ends (its last byte queued) with its
 * status and the microseconds since the request reached the handler (0 for
 * protocol errors httpd answers itself). Requests whose client went away
 * first are not reported. It must not touch the request beyond reading it. */
typedef void (*httpd_done_fn)(const struct httpd_req *r, int status, long long usec, void *arg);
void httpd_set_done_cb(struct httpd *h, httpd_done_fn fn, void *arg);
/* Graceful stop: accepts what already waits in the accept queue, then closes
 * the listeners (a socket nobody else holds then refuses connections); every
 * answer from now on says Connection: close; connections idle (no request
 * begun) for 200 ms are closed, a request arriving before is served. */
void httpd_drain(struct httpd *h);
/* Requests being read, handled or streamed, and answers not yet flushed:
 * 0 when stopping loses nothing. */
int httpd_busy(const struct httpd *h);
/* Cuts every request being handled or streamed (their abort callbacks run). */
void httpd_abort_requests(struct httpd *h);

const char *httpd_req_method(const struct httpd_req *r);
const char *httpd_req_path(const struct httpd_req *r);	/* without query */
const char *httpd_req_query(const struct httpd_req *r);	/* after '?', or "" */
/* Case-insensitive; NULL when absent. */
const char *httpd_req_header(const struct httpd_req *r, const char *name);
/* NUL-terminated body (len excludes the NUL). */
const char *httpd_req_body(const struct httpd_req *r, size_t *len);
/* 1 while the client connection is still there. */
int httpd_req_connected(const struct httpd_req *r);
/* The client went away while the handler owned the request. */
void httpd_req_set_abort_cb(struct httpd_req *r, httpd_req_fn fn, void *arg);
/* The connection's output queue drained (for streaming backpressure). */
void httpd_req_set_drain_cb(struct httpd_req *r, httpd_req_fn fn, void *arg);
/* Bytes queued towards the client. */
size_t httpd_req_pending(const struct httpd_req *r);

/* Adds a response header (before httpd_reply / httpd_stream_start). */
void httpd_add_header(struct httpd_req *r, const char *name, const char *value);
/* Complete replies: each one finishes the request. */
void httpd_reply(struct httpd_req *r, int status, const char *ctype,
		 const void *body, size_t len);
void httpd_reply_json(struct httpd_req *r, int status, const cJSON *json);
void httpd_reply_error(struct httpd_req *r, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Streamed replies (chunked transfer encoding). */
void httpd_stream_start(struct httpd_req *r, int status, const char *ctype);
void httpd_stream_write(struct httpd_req *r, const void *data, size_t len);
void httpd_stream_end(struct httpd_req *r);

/* The JSON error body {"error":{"code":status,"message":msg}} (caller frees). */
char *httpd_error_body(int status, const char *msg);
const char *httpd_status_text(int status);

#endif
