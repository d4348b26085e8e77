/*
 * httpd: HTTP/1.1 server connections as small state machines (see httpd.h).
 *
 *   READING ──request complete──▶ HANDLING ──reply──▶ READING (keep-alive)
 *      │                             │ └─stream_start─▶ STREAMING ──end──┘
 *      └──protocol error / close─────┴──────────────▶ CLOSING (lingering)
 *
 * A connection parses one request at a time; pipelined bytes wait in the
 * input buffer (bounded by a read high-water mark) until the answer is out.
 */
#include "httpd.h"

#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <http_parser.h>
#include <openssl/ssl.h>

#include "log.h"
#include "loop.h"
#include "sockio.h"

#define HTTPD_PIPELINE_BYTES (64 * 1024)	/* input kept while handling */
#define HTTPD_LINGER_MS 2000			/* drain after an error reply */
#define HTTPD_DRAIN_IDLE_MS 200			/* draining: idle connections close */
#define HTTPD_MAX_LISTENERS 64
#define HTTPD_SWEEP_MAX 4096			/* accepted at drain (> any backlog) */
#define HTTPD_STRS_INLINE 1024			/* a usual request's URL and headers */
#define HTTPD_HDRS_INLINE 16			/* a usual request's header count */
#define HTTPD_NONE UINT32_MAX			/* no string (yet) */

enum conn_state { CS_READING, CS_HANDLING, CS_STREAMING, CS_CLOSING };

/* Offsets into the request's strings (they move while the head grows). */
struct httpd_hdr {
	uint32_t name;
	uint32_t value;			/* HTTPD_NONE: not seen yet */
};

/*
 * The URL and every header name and value are NUL-terminated strings laid
 * one after another in one arena (strs), inline up to HTTPD_STRS_INLINE
 * bytes, and so is the header table up to HTTPD_HDRS_INLINE: a usual
 * request is one allocation, not three per header. The head is bounded by
 * max_header_bytes, so is the arena. Fragments (a header split across two
 * reads) extend the last string, the only one still open.
 */
struct httpd_req {
	struct httpd_conn *conn;	/* NULL once the client is gone */
	const char *method;		/* NULL until the head is read */
	char *url;			/* path, NUL, query (set at dispatch or error) */
	uint32_t url_off;		/* HTTPD_NONE: no URL yet */
	const char *query;
	struct httpd_hdr *hdrs;		/* hdrs_inl, or malloc'd when more */
	int nhdrs, hdrs_cap;
	char *strs;			/* strs_inl, or malloc'd when longer */
	size_t strs_len, strs_cap;
	char *body;
	size_t body_len, body_cap;
	char *resp_hdrs;		/* header lines added by the handler */
	size_t resp_len, resp_cap;
	int keep_alive;			/* client allows keep-alive */
	int http10;			/* HTTP/1.0 client: no chunked */
	httpd_req_fn abort_cb, drain_cb;
	void *abort_arg, *drain_arg;
	int status;			/* answered with (for done_fn) */
	struct timespec t0;		/* reached the handler */
	struct httpd_hdr hdrs_inl[HTTPD_HDRS_INLINE];
	char strs_inl[HTTPD_STRS_INLINE];
};

struct httpd_conn {
	struct httpd *h;
	struct sockio *io;
	http_parser parser;
	enum conn_state state;
	struct httpd_req *req;		/* being read or handled */
	struct event *timer;		/* header / idle / linger deadline */
	struct event *resume;		/* parse pipelined input later */
	size_t head_bytes;		/* request line + headers so far */
	int last_was_value;		/* header callback bookkeeping */
	int err_status;			/* set by a parser callback */
	const char *err_msg;
	int shut_wr;			/* lingering: our side is done */
	TAILQ_ENTRY(httpd_conn) link;
};

struct httpd {
	struct event_base *base;
	struct evconnlistener *ls[HTTPD_MAX_LISTENERS];
	int nls;
	int draining;			/* answers say Connection: close */
	struct httpd_limits lim;
	httpd_handler_fn fn;
	void *arg;
	int port;
	int nconns;
	SSL_CTX *tls;			/* NULL: plain HTTP */
	httpd_done_fn done_fn;		/* metrics */
	void *done_arg;
	TAILQ_HEAD(, httpd_conn) conns;
};

static http_parser_settings httpd_settings;
static void conn_close(struct httpd_conn *c);
static void conn_process(struct httpd_conn *c);

/* ---- requests ---- */

static struct httpd_req *
req_new(void)
{
	struct httpd_req *r = malloc(sizeof(*r));

	if (!r)
		return NULL;
	/* the inline arrays need no zeroing */
	memset(r, 0, offsetof(struct httpd_req, hdrs_inl));
	r->url_off = HTTPD_NONE;
	r->hdrs = r->hdrs_inl;
	r->hdrs_cap = HTTPD_HDRS_INLINE;
	r->strs = r->strs_inl;
	r->strs_cap = HTTPD_STRS_INLINE;
	return r;
}

static void
req_free(struct httpd_req *r)
{
	if (!r)
		return;
	if (r->hdrs != r->hdrs_inl)
		free(r->hdrs);
	if (r->strs != r->strs_inl)
		free(r->strs);
	free(r->body);
	free(r->resp_hdrs);
	free(r);
}

/* Adds n bytes to the arena: a new string (start), or the end of the last
 * one. Its offset in *off (start), -1 when out of memory. */
static int
strs_add(struct httpd_req *r, const char *at, size_t n, int start, uint32_t *off)
{
	size_t len = start || !r->strs_len ? r->strs_len : r->strs_len - 1;	/* over the NUL */

	if (len + n + 1 > r->strs_cap) {
		size_t cap = r->strs_cap * 2;
		char *p;

		while (cap < len + n + 1)
			cap *= 2;
		if (cap > UINT32_MAX)
			return -1;
		if (r->strs == r->strs_inl) {
			if (!(p = malloc(cap)))
				return -1;
			memcpy(p, r->strs, r->strs_len);
		} else if (!(p = realloc(r->strs, cap))) {
			return -1;
		}
		r->strs = p;
		r->strs_cap = cap;
	}
	if (start)
		*off = (uint32_t)len;
	memcpy(r->strs + len, at, n);
	r->strs[len + n] = '\0';
	r->strs_len = len + n + 1;
	return 0;
}

const char *
httpd_req_method(const struct httpd_req *r)
{
	return r->method ? r->method : "";
}

const char *
httpd_req_path(const struct httpd_req *r)
{
	return r->url ? r->url : "/";
}

const char *
httpd_req_query(const struct httpd_req *r)
{
	return r->query ? r->query : "";
}

const char *
httpd_req_header(const struct httpd_req *r, const char *name)
{
	for (int i = 0; i < r->nhdrs; i++)
		if (strcasecmp(r->strs + r->hdrs[i].name, name) == 0)
			return r->hdrs[i].value != HTTPD_NONE ? r->strs + r->hdrs[i].value : "";
	return NULL;
}

const char *
httpd_req_body(const struct httpd_req *r, size_t *len)
{
	*len = r->body_len;
	return r->body ? r->body : "";
}

int
httpd_req_connected(const struct httpd_req *r)
{
	return r->conn != NULL;
}

void
httpd_req_set_abort_cb(struct httpd_req *r, httpd_req_fn fn, void *arg)
{
	r->abort_cb = fn;
	r->abort_arg = arg;
}

void
httpd_req_set_drain_cb(struct httpd_req *r, httpd_req_fn fn, void *arg)
{
	r->drain_cb = fn;
	r->drain_arg = arg;
}

size_t
httpd_req_pending(const struct httpd_req *r)
{
	if (!r->conn)
		return 0;
	return sockio_pending(r->conn->io);
}

/* ---- parser callbacks ---- */

static int
cb_fail(struct httpd_conn *c, int status, const char *msg)
{
	c->err_status = status;
	c->err_msg = msg;
	return -1;
}

static int
cb_head_bytes(struct httpd_conn *c, size_t n)
{
	c->head_bytes += n;
	if (c->head_bytes > c->h->lim.max_header_bytes)
		return cb_fail(c, 431, "request header fields too large");
	return 0;
}

static int
cb_message_begin(http_parser *p)
{
	struct httpd_conn *c = p->data;

	if (!c->req && !(c->req = req_new()))
		return cb_fail(c, 503, "out of memory");
	c->req->conn = c;
	c->head_bytes = 0;
	c->last_was_value = 0;
	if (c->h->lim.header_timeout_ms > 0)
		loop_timer_in(c->timer, c->h->lim.header_timeout_ms);
	return 0;
}

static int
cb_url(http_parser *p, const char *at, size_t n)
{
	struct httpd_conn *c = p->data;

	if (cb_head_bytes(c, n) < 0)
		return -1;
	if (strs_add(c->req, at, n, c->req->url_off == HTTPD_NONE, &c->req->url_off) < 0)
		return cb_fail(c, 503, "out of memory");
	return 0;
}

static int
cb_header_field(http_parser *p, const char *at, size_t n)
{
	struct httpd_conn *c = p->data;
	struct httpd_req *r = c->req;
	int start = r->nhdrs == 0 || c->last_was_value;

	if (cb_head_bytes(c, n) < 0)
		return -1;
	if (start) {
		uint32_t name;

		if (r->nhdrs >= c->h->lim.max_headers)
			return cb_fail(c, 431, "too many request header fields");
		if (r->nhdrs == r->hdrs_cap) {
			struct httpd_hdr *h = malloc(sizeof(*h) * (size_t)r->hdrs_cap * 2);

			if (!h)
				return cb_fail(c, 503, "out of memory");
			memcpy(h, r->hdrs, sizeof(*h) * (size_t)r->nhdrs);
			if (r->hdrs != r->hdrs_inl)
				free(r->hdrs);
			r->hdrs = h;
			r->hdrs_cap *= 2;
		}
		/* the slot counts once its name is in: httpd_req_header
		 * reads every counted name, on the error path too */
		if (strs_add(r, at, n, 1, &name) < 0)
			return cb_fail(c, 503, "out of memory");
		r->hdrs[r->nhdrs].name = name;
		r->hdrs[r->nhdrs].value = HTTPD_NONE;
		r->nhdrs++;
		c->last_was_value = 0;
		return 0;
	}
	if (strs_add(r, at, n, 0, NULL) < 0)	/* the name's next fragment */
		return cb_fail(c, 503, "out of memory");
	return 0;
}

static int
cb_header_value(http_parser *p, const char *at, size_t n)
{
	struct httpd_conn *c = p->data;
	struct httpd_req *r = c->req;
	struct httpd_hdr *h;

	if (cb_head_bytes(c, n) < 0)
		return -1;
	if (r->nhdrs == 0)
		return cb_fail(c, 400, "malformed header");
	c->last_was_value = 1;
	h = &r->hdrs[r->nhdrs - 1];
	if (strs_add(r, at, n, h->value == HTTPD_NONE, &h->value) < 0)
		return cb_fail(c, 503, "out of memory");
	return 0;
}

static int
cb_headers_complete(http_parser *p)
{
	struct httpd_conn *c = p->data;
	struct httpd_req *r = c->req;
	const char *expect;

	r->method = http_method_str(p->method);	/* a static string */
	r->keep_alive = http_should_keep_alive(p);
	r->http10 = p->http_major == 1 && p->http_minor == 0;
	if (r->url_off == HTTPD_NONE)
		return cb_fail(c, 400, "missing request target");
	if (p->content_length != ULLONG_MAX && p->content_length > c->h->lim.max_body_bytes)
		return cb_fail(c, 413, "request body too large");
	expect = httpd_req_header(r, "Expect");
	if (expect && strcasecmp(expect, "100-continue") == 0 && !r->http10)
		sockio_write(c->io, "HTTP/1.1 100 Continue\r\n\r\n", 25);
	return 0;
}

static int
cb_body(http_parser *p, const char *at, size_t n)
{
	struct httpd_conn *c = p->data;
	struct httpd_req *r = c->req;

	if (r->body_len + n > c->h->lim.max_body_bytes)
		return cb_fail(c, 413, "request body too large");
	if (r->body_len + n + 1 > r->body_cap) {
		size_t cap = r->body_cap ? r->body_cap : 4096;
		char *b;

		while (cap < r->body_len + n + 1)
			cap *= 2;
		if (!(b = realloc(r->body, cap)))
			return cb_fail(c, 503, "out of memory");
		r->body = b;
		r->body_cap = cap;
	}
	memcpy(r->body + r->body_len, at, n);
	r->body_len += n;
	r->body[r->body_len] = '\0';
	return 0;
}

static int
cb_message_complete(http_parser *p)
{
	http_parser_pause(p, 1);
	return 0;
}

/* ---- responses ---- */

const char *
httpd_status_text(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 201: return "Created";
	case 204: return "No Content";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 304: return "Not Modified";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 402: return "Payment Required";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 413: return "Payload Too Large";
	case 415: return "Unsupported Media Type";
	case 422: return "Unprocessable Entity";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	default: return "Unknown";
	}
}

char *
httpd_error_body(int status, const char *msg)
{
	cJSON *root = cJSON_CreateObject(), *err;
	char *s = NULL;

	if (!root)
		return NULL;
	err = cJSON_AddObjectToObject(root, "error");
	if (err && cJSON_AddNumberToObject(err, "code", status) &&
	    cJSON_AddStringToObject(err, "message", msg))
		s = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	return s;
}

void
httpd_add_header(struct httpd_req *r, const char *name, const char *value)
{
	size_t nl = strlen(name), vl = strlen(value), need;
	char *w;

	/* Header injection guard: values never carry CR or LF. */
	if (strpbrk(name, "\r\n:") || strpbrk(value, "\r\n"))
		return;
	need = r->resp_len + nl + vl + 4;
	if (need > r->resp_cap) {
		size_t cap = r->resp_cap ? r->resp_cap * 2 : 256;

		while (cap < need)
			cap *= 2;
		if (!(w = realloc(r->resp_hdrs, cap)))
			return;
		r->resp_hdrs = w;
		r->resp_cap = cap;
	}
	w = r->resp_hdrs + r->resp_len;
	memcpy(w, name, nl);
	memcpy(w + nl, ": ", 2);
	memcpy(w + nl + 2, value, vl);
	memcpy(w + nl + 2 + vl, "\r\n", 2);
	r->resp_len = need;
}

static void
conn_set_timer(struct httpd_conn *c, int ms)
{
	if (ms > 0)
		loop_timer_in(c->timer, ms);
	else
		evtimer_del(c->timer);
}

/* Writes the status line and headers. len < 0: chunked (or close-delimited). */
static void
resp_head(struct httpd_req *r, int status, const char *ctype, long long len)
{
	struct httpd_conn *c = r->conn;
	struct evbuffer *out = sockio_output(c->io);
	int keep = r->keep_alive && c->state != CS_CLOSING && !c->h->draining && !(len < 0 && r->http10);

	/* Pieces, not evbuffer_add_printf: a printf per header line showed in
	 * profiles (README "Performance"). */
	const char *text = httpd_status_text(status);
	char num[24], *q = num + sizeof(num);
	unsigned long long u = len >= 0 ? (unsigned long long)len : 0;

	if (!keep)
		r->keep_alive = 0;
	if (status < 100 || status > 999)
		status = 500;
	r->status = status;
	{
		char line[16] = "HTTP/1.1 ";

		line[9] = (char)('0' + status / 100);
		line[10] = (char)('0' + status / 10 % 10);
		line[11] = (char)('0' + status % 10);
		line[12] = ' ';
		evbuffer_add(out, line, 13);
	}
	evbuffer_add(out, text, strlen(text));
	evbuffer_add(out, "\r\n", 2);
	if (ctype) {
		evbuffer_add(out, "Content-Type: ", 14);
		evbuffer_add(out, ctype, strlen(ctype));
		evbuffer_add(out, "\r\n", 2);
	}
	if (len >= 0) {
		do {
			*--q = (char)('0' + u % 10);
			u /= 10;
		} while (u);
		evbuffer_add(out, "Content-Length: ", 16);
		evbuffer_add(out, q, (size_t)(num + sizeof(num) - q));
		evbuffer_add(out, "\r\n", 2);
	} else if (!r->http10) {
		evbuffer_add(out, "Transfer-Encoding: chunked\r\n", 28);
	}
	if (r->resp_len)
		evbuffer_add(out, r->resp_hdrs, r->resp_len);
	if (keep)
		evbuffer_add(out, "Connection: keep-alive\r\n\r\n", 26);
	else
		evbuffer_add(out, "Connection: close\r\n\r\n", 21);
	sockio_flush(c->io);
}

/* Reports an answered request to the done callback. */
static void
req_report(struct httpd *h, const struct httpd_req *r)
{
	struct timespec t;
	long long usec = 0;

	if (!h->done_fn || !r)
		return;
	if (r->t0.tv_sec && clock_gettime(CLOCK_MONOTONIC, &t) == 0)
		usec = (t.tv_sec - r->t0.tv_sec) * 1000000LL + (t.tv_nsec - r->t0.tv_nsec) / 1000;
	h->done_fn(r, r->status, usec, h->done_arg);
}

/* The arena moves no more (dispatch: trailers came before message_complete;
 * an error: nothing more is read into it): the path and query, split. */
static void
req_set_url(struct httpd_req *r)
{
	char *q;

	if (r->url || r->url_off == HTTPD_NONE)
		return;
	r->url = r->strs + r->url_off;
	if ((q = strchr(r->url, '?'))) {
		*q = '\0';
		r->query = q + 1;
	}
}

/*
 * CLOSING, and everything queued is written: our side ends (FIN) and the
 * peer's bytes are read and dropped for HTTPD_LINGER_MS at most. Closing
 * with unread input would send a RST, which can take the answer's tail
 * with it at the client.
 */
static void
conn_linger(struct httpd_conn *c)
{
	if (c->shut_wr)
		return;
	c->shut_wr = 1;
	if (!c->h->tls)	/* TLS: the close_notify comes with the free */
		shutdown(sockio_fd(c->io), SHUT_WR);
	if (!evtimer_pending(c->timer, NULL))
		conn_set_timer(c, HTTPD_LINGER_MS);
}

/* The current request is answered: next request, or close. */
static void
conn_request_done(struct httpd_conn *c)
{
	struct httpd_req *r = c->req;
	int keep = r && r->keep_alive;

	req_report(c->h, r);
	c->req = NULL;
	req_free(r);
	/* reading paused at HTTPD_PIPELINE_BYTES while handling; only a read or
	 * this call starts it again, whichever state follows */
	sockio_set_read_max(c->io, 0);
	if (!keep) {
		struct evbuffer *in = sockio_input(c->io);

		c->state = CS_CLOSING;
		evbuffer_drain(in, evbuffer_get_length(in));	/* pipelined requests: not answered */
		/* lingers once flushed (the write callback); with nothing
		 * queued (an HTTP/1.0 stream's end) no write callback comes */
		if (sockio_pending(c->io) == 0)
			conn_linger(c);
		return;
	}
	c->state = CS_READING;
	http_parser_init(&c->parser, HTTP_REQUEST);
	c->parser.data = c;
	sockio_read(c->io, 1);
	conn_set_timer(c, c->h->draining ? HTTPD_DRAIN_IDLE_MS : c->h->lim.idle_timeout_ms);
	if (evbuffer_get_length(sockio_input(c->io)) > 0)
		event_active(c->resume, EV_TIMEOUT, 0);
}

void
httpd_reply(struct httpd_req *r, int status, const char *ctype, const void *body, size_t len)
{
	struct httpd_conn *c = r->conn;

	if (!c) {
		req_free(r);
		return;
	}
	resp_head(r, status, ctype, (long long)len);
	if (len && strcmp(httpd_req_method(r), "HEAD") != 0)
		sockio_write(c->io, body, len);
	conn_request_done(c);
}

void
httpd_reply_json(struct httpd_req *r, int status, const cJSON *json)
{
	char *s = cJSON_PrintUnformatted(json);

	if (!s) {
		httpd_reply_error(r, 500, "out of memory");
		return;
	}
	httpd_reply(r, status, "application/json", s, strlen(s));
	cJSON_free(s);
}

void
httpd_reply_error(struct httpd_req *r, int status, const char *fmt, ...)
{
	char msg[512], *body;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	body = httpd_error_body(status, msg);
	if (!body) {
		httpd_reply(r, status, "application/json", "{}", 2);
		return;
	}
	httpd_reply(r, status, "application/json", body, strlen(body));
	cJSON_free(body);
}

void
httpd_stream_start(struct httpd_req *r, int status, const char *ctype)
{
	if (!r->conn)
		return;
	resp_head(r, status, ctype, -1);
	r->conn->state = CS_STREAMING;
}

void
httpd_stream_write(struct httpd_req *r, const void *data, size_t len)
{
	struct evbuffer *out;
	char hdr[24];
	int n;

	if (!r->conn || len == 0)
		return;
	out = sockio_output(r->conn->io);
	if (r->http10) {
		sockio_write(r->conn->io, data, len);
		return;
	}
	{	/* the chunk size in hex, without snprintf (one per event) */
		static const char hex[] = "0123456789abcdef";
		size_t v = len;
		char *q = hdr + sizeof(hdr);

		*--q = '\n';
		*--q = '\r';
		do {
			*--q = hex[v & 15];
			v >>= 4;
		} while (v);
		n = (int)(hdr + sizeof(hdr) - q);
		evbuffer_add(out, q, (size_t)n);
	}
	evbuffer_add(out, data, len);
	evbuffer_add(out, "\r\n", 2);
	sockio_flush(r->conn->io);
}

void
httpd_stream_end(struct httpd_req *r)
{
	struct httpd_conn *c = r->conn;

	if (!c) {
		req_free(r);
		return;
	}
	if (!r->http10)
		sockio_write(c->io, "0\r\n\r\n", 5);
	conn_request_done(c);
}

/* ---- connections ---- */

/* Answers a protocol error and closes (after a lingering drain). */
static void
conn_fail(struct httpd_conn *c, int status, const char *msg)
{
	char *body;

	if (c->state != CS_READING) {
		conn_close(c);
		return;
	}
	if (!c->req && !(c->req = req_new())) {
		conn_close(c);
		return;
	}
	c->req->conn = c;
	c->req->keep_alive = 0;
	req_set_url(c->req);	/* for the done callback: the path, if it came */
	c->state = CS_CLOSING;
	body = httpd_error_body(status, msg);
	resp_head(c->req, status, "application/json", body ? (long long)strlen(body) : 0);
	if (body) {
		sockio_write(c->io, body, strlen(body));
		cJSON_free(body);
	}
	req_report(c->h, c->req);
	req_free(c->req);
	c->req = NULL;
	conn_set_timer(c, HTTPD_LINGER_MS);
}

static void
conn_dispatch(struct httpd_conn *c)
{
	struct httpd_req *r = c->req;

	c->state = CS_HANDLING;
	evtimer_del(c->timer);
	clock_gettime(CLOCK_MONOTONIC, &r->t0);
	req_set_url(r);
	/* Keep watching for EOF, but bound pipelined input while we work. */
	sockio_set_read_max(c->io, HTTPD_PIPELINE_BYTES);
	c->h->fn(r, c->h->arg);
}

static void
conn_process(struct httpd_conn *c)
{
	struct evbuffer *in = sockio_input(c->io);

	while (c->state == CS_READING && evbuffer_get_length(in) > 0) {
		size_t avail = evbuffer_get_contiguous_space(in), n;
		const char *data = (const char *)evbuffer_pullup(in, (ev_ssize_t)avail);
		enum http_errno e;

		n = http_parser_execute(&c->parser, &httpd_settings, data, avail);
		evbuffer_drain(in, n);
		e = HTTP_PARSER_ERRNO(&c->parser);
		if (c->err_status) {
			conn_fail(c, c->err_status, c->err_msg);
			return;
		}
		if (e == HPE_PAUSED) {
			http_parser_pause(&c->parser, 0);
			conn_dispatch(c);
			return;
		}
		if (e != HPE_OK) {
			conn_fail(c, 400, http_errno_description(e));
			return;
		}
	}
}

static void
conn_read_cb(struct sockio *io, void *arg)
{
	struct httpd_conn *c = arg;

	if (c->state == CS_CLOSING) {
		evbuffer_drain(sockio_input(io), evbuffer_get_length(sockio_input(io)));
		return;
	}
	conn_process(c);
}

/* Everything queued is written. */
static void
conn_write_cb(struct sockio *io, void *arg)
{
	struct httpd_conn *c = arg;

	(void)io;
	if (c->state == CS_CLOSING) {
		conn_linger(c);
		return;
	}
	if (c->req && c->req->drain_cb && c->state == CS_STREAMING)
		c->req->drain_cb(c->req, c->req->drain_arg);
}

static void
conn_event_cb(struct sockio *io, short what, void *arg)
{
	struct httpd_conn *c = arg;

	(void)io;
	if (what == BEV_EVENT_CONNECTED)
		return;		/* TLS: the handshake is done */
	if (what & BEV_EVENT_EOF && c->state == CS_READING && c->req) {
		/* EOF may end a close-delimited request; otherwise it's truncated. */
		http_parser_execute(&c->parser, &httpd_settings, NULL, 0);
	}
	conn_close(c);
}

static void
conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct httpd_conn *c = arg;

	(void)fd;
	(void)what;
	if (c->state == CS_READING && c->req) {
		conn_fail(c, 408, "request timed out");
		return;
	}
	conn_close(c);
}

static void
conn_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	conn_process(arg);
}

static void
conn_close(struct httpd_conn *c)
{
	struct httpd_req *r = c->req;

	c->req = NULL;
	if (r) {
		if (c->state == CS_HANDLING || c->state == CS_STREAMING) {
			r->conn = NULL;
			if (r->abort_cb)
				r->abort_cb(r, r->abort_arg);
		} else {
			req_free(r);
		}
	}
	TAILQ_REMOVE(&c->h->conns, c, link);
	c->h->nconns--;
	event_free(c->timer);
	event_free(c->resume);
	sockio_free(c->io);
	free(c);
}

static const struct sockio_cbs conn_io_cbs = { conn_read_cb, conn_write_cb, conn_event_cb };

/* A plain or TLS connection for an accepted socket (NULL: fd closed). */
static struct sockio *
conn_io(struct httpd *h, evutil_socket_t fd, struct httpd_conn *c)
{
	struct bufferevent *bev;
	SSL *ssl;

	if (!h->tls) {
		if (!(bev = bufferevent_socket_new(h->base, fd, BEV_OPT_CLOSE_ON_FREE))) {
			evutil_closesocket(fd);
			return NULL;
		}
		return sockio_new(h->base, bev, 1, &conn_io_cbs, c);
	}
	if (!(ssl = SSL_new(h->tls))) {
		evutil_closesocket(fd);
		return NULL;
	}
	bev = bufferevent_openssl_socket_new(h->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
					     BEV_OPT_CLOSE_ON_FREE);
	if (!bev) {
		SSL_free(ssl);
		evutil_closesocket(fd);
		return NULL;
	}
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	return sockio_new(h->base, bev, 0, &conn_io_cbs, c);
}

void
httpd_set_tls(struct httpd *h, SSL_CTX *ctx)
{
	h->tls = ctx;
}

static void
httpd_accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
		int salen, void *arg)
{
	struct httpd *h = arg;
	struct httpd_conn *c;

	(void)l;
	(void)sa;
	(void)salen;
	if (!(c = calloc(1, sizeof(*c)))) {
		evutil_closesocket(fd);
		return;
	}
	c->h = h;
	c->io = conn_io(h, fd, c);
	c->timer = evtimer_new(h->base, conn_timer_cb, c);
	c->resume = event_new(h->base, -1, 0, conn_resume_cb, c);
	if (!c->io || !c->timer || !c->resume) {
		if (c->io)
			sockio_free(c->io);	/* conn_io closed fd otherwise */
		if (c->timer)
			event_free(c->timer);
		if (c->resume)
			event_free(c->resume);
		free(c);
		return;
	}
	http_parser_init(&c->parser, HTTP_REQUEST);
	c->parser.data = c;
	TAILQ_INSERT_TAIL(&h->conns, c, link);
	h->nconns++;
	sockio_set_write_timeout(c->io, h->lim.write_timeout_ms);
	sockio_read(c->io, 1);
	if (h->nconns > h->lim.max_connections) {
		conn_fail(c, 503, "server busy: too many connections");
		return;
	}
	conn_set_timer(c, h->lim.idle_timeout_ms);
}

static void
httpd_init_parser(void)
{
	httpd_settings.on_message_begin = cb_message_begin;
	httpd_settings.on_url = cb_url;
	httpd_settings.on_header_field = cb_header_field;
	httpd_settings.on_header_value = cb_header_value;
	httpd_settings.on_headers_complete = cb_headers_complete;
	httpd_settings.on_body = cb_body;
	httpd_settings.on_message_complete = cb_message_complete;
}

static struct httpd *
httpd_alloc(struct event_base *base, const struct httpd_limits *lim, httpd_handler_fn fn,
	    void *arg, char *err, size_t errlen)
{
	struct httpd *h = calloc(1, sizeof(*h));

	httpd_init_parser();
	if (!h) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	h->base = base;
	h->lim = *lim;
	h->fn = fn;
	h->arg = arg;
	TAILQ_INIT(&h->conns);
	return h;
}

static int
httpd_fd_port(evutil_socket_t fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return 0;
	return ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
					: ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

struct httpd *
httpd_new(struct event_base *base, const char *addr, const struct httpd_limits *lim,
	  httpd_handler_fn fn, void *arg, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	int sslen = sizeof(ss);
	struct httpd *h;

	memset(&ss, 0, sizeof(ss));
	if (evutil_parse_sockaddr_port(addr, (struct sockaddr *)&ss, &sslen) < 0) {
		snprintf(err, errlen, "bad listen address '%s'", addr);
		return NULL;
	}
	if (!(h = httpd_alloc(base, lim, fn, arg, err, errlen)))
		return NULL;
	h->ls[0] = evconnlistener_new_bind(base, httpd_accept_cb, h,
		LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 1024,
		(struct sockaddr *)&ss, sslen);
	if (!h->ls[0]) {
		snprintf(err, errlen, "listen on %s: %s", addr, strerror(errno));
		free(h);
		return NULL;
	}
	h->nls = 1;
	h->port = httpd_fd_port(evconnlistener_get_fd(h->ls[0]));
	return h;
}

struct httpd *
httpd_new_fds(struct event_base *base, const int *fds, int n, const struct httpd_limits *lim,
	      httpd_handler_fn fn, void *arg, char *err, size_t errlen)
{
	struct httpd *h;

	if (n < 1 || n > HTTPD_MAX_LISTENERS) {
		snprintf(err, errlen, "%d listening sockets (1 to %d)", n, HTTPD_MAX_LISTENERS);
		return NULL;
	}
	if (!(h = httpd_alloc(base, lim, fn, arg, err, errlen)))
		return NULL;
	for (; h->nls < n; h->nls++) {
		/* backlog 0: listen() was called by whoever made the socket */
		h->ls[h->nls] = evconnlistener_new(base, httpd_accept_cb, h, LEV_OPT_DISABLED, 0, fds[h->nls]);
		if (!h->ls[h->nls]) {
			snprintf(err, errlen, "listener: out of memory");
			httpd_free(h);
			return NULL;
		}
	}
	h->port = httpd_fd_port(fds[0]);
	return h;
}

void
httpd_set_limits(struct httpd *h, const struct httpd_limits *lim)
{
	h->lim = *lim;
}

int
httpd_port(const struct httpd *h)
{
	return h->port;
}

int
httpd_connections(const struct httpd *h)
{
	return h->nconns;
}

void
httpd_set_done_cb(struct httpd *h, httpd_done_fn fn, void *arg)
{
	h->done_fn = fn;
	h->done_arg = arg;
}

void
httpd_start_accepting(struct httpd *h)
{
	for (int i = 0; i < h->nls; i++)
		evconnlistener_enable(h->ls[i]);
}

void
httpd_stop_accepting(struct httpd *h)
{
	for (int i = 0; i < h->nls; i++)
		evconnlistener_disable(h->ls[i]);
}

/* What the kernel already accepted for us is served, not reset. */
static void
httpd_sweep(struct httpd *h, struct evconnlistener *l)
{
	evutil_socket_t lfd = evconnlistener_get_fd(l), fd;

	for (int i = 0; i < HTTPD_SWEEP_MAX; i++) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);

		if ((fd = accept4(lfd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC)) < 0)
			break;
		httpd_accept_cb(l, fd, (struct sockaddr *)&ss, (int)len, h);
	}
}

void
httpd_drain(struct httpd *h)
{
	struct httpd_conn *c, *next;

	if (h->draining)
		return;
	h->draining = 1;
	/* idle keep-alive connections first: those swept from the accept
	 * queue below keep their header time-out (a TLS handshake, a slow
	 * first request is served, not cut) */
	for (c = TAILQ_FIRST(&h->conns); c; c = next) {
		next = TAILQ_NEXT(c, link);
		if (c->state == CS_READING && !c->req)
			conn_set_timer(c, HTTPD_DRAIN_IDLE_MS);
	}
	for (int i = 0; i < h->nls; i++) {
		httpd_sweep(h, h->ls[i]);
		evconnlistener_free(h->ls[i]);
	}
	h->nls = 0;
}

int
httpd_busy(const struct httpd *h)
{
	const struct httpd_conn *c;
	int n = 0;

	TAILQ_FOREACH(c, &h->conns, link)
		n += c->state == CS_HANDLING || c->state == CS_STREAMING ||
		     (c->state == CS_READING && c->req) ||
		     sockio_pending(c->io) > 0;
	return n;
}

void
httpd_abort_requests(struct httpd *h)
{
	struct httpd_conn *c, *next;

	for (c = TAILQ_FIRST(&h->conns); c; c = next) {
		next = TAILQ_NEXT(c, link);
		if (c->state == CS_HANDLING || c->state == CS_STREAMING)
			conn_close(c);
	}
}

void
httpd_free(struct httpd *h)
{
	if (!h)
		return;
	for (int i = 0; i < h->nls; i++)
		evconnlistener_free(h->ls[i]);
	while (!TAILQ_EMPTY(&h->conns))
		conn_close(TAILQ_FIRST(&h->conns));
	free(h);
}
