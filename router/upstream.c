/*
 * upstream: provider connections (see upstream.h). A connection (uconn) is
 * CONNECTING, ACTIVE (carrying one request) or IDLE (in its origin's pool).
 * A request that meets a closed keep-alive connection before any answer byte
 * is re-sent once on a fresh connection: servers close idle connections
 * whenever they like, and that is not a provider failure.
 */
#include "upstream.h"

#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <http_parser.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "log.h"
#include "loop.h"
#include "sockio.h"

#define UP_MAX_HEAD 65536

enum uconn_state { UC_CONNECTING, UC_ACTIVE, UC_IDLE };
enum up_phase { PH_CONNECT, PH_FIRST_BYTE, PH_BODY };

struct origin {
	char host[256];
	int port, tls;
	TAILQ_HEAD(, uconn) idle;	/* most recently used first */
	int nidle;
	LIST_ENTRY(origin) link;
};

struct uconn {
	struct upstream_pool *pool;
	struct origin *o;
	struct sockio *io;
	http_parser parser;
	enum uconn_state state;
	struct upstream_req *req;	/* ACTIVE: the request */
	struct event *idle_timer;
	struct event *resume;		/* parse buffered input after a pause */
	int in_parse;			/* inside http_parser_execute */
	int dead;			/* free once the parser returns */
	int complete;			/* whole answer parsed */
	int got_bytes;			/* any answer byte seen */
	int reused;			/* taken from the idle pool */
	int no_reuse;			/* never pool again (EOF seen) */
	size_t head_bytes;
	int last_was_value;
	char field[32];			/* current header name (truncated) */
	size_t field_len;
	char value[128];		/* current header value (truncated) */
	size_t value_len;
	char ctype[128];
	int retry_after;
	TAILQ_ENTRY(uconn) idle_link;
	LIST_ENTRY(uconn) all_link;
};

struct upstream_req {
	struct upstream_pool *pool;
	struct origin *o;
	struct uconn *conn;
	struct upstream_cbs cbs;
	void *arg;
	char *wire;			/* the request line and headers */
	size_t wire_len;
	char *body;			/* the body, ours (sent again on a retry) */
	size_t body_len;
	struct event *timer;
	struct timeval deadline_total;
	enum up_phase phase;
	int retried, paused;
	int total_armed;		/* the timer runs to deadline_total */
};

/* A provider URL taken apart: the endpoints' few URLs come back with every
 * request, and http_parser_parse_url plus a printf of host:port were 2% of
 * one. Direct-mapped by the URL's hash; a collision parses again. */
#define URL_CACHE 32
#define URL_PATH_MAX 2048

struct url_parts {
	char *url;		/* the key (a copy); NULL: an empty slot */
	int tls, port;
	size_t host_off, host_len;
	size_t path_off;	/* 0: no path ("/") */
	char hostport[300];
};

struct upstream_pool {
	struct url_parts urls[URL_CACHE];
	struct event_base *base;
	struct evdns_base *dns;
	SSL_CTX *ssl;
	struct upstream_limits lim;
	char ca_file[512];
	LIST_HEAD(, origin) origins;
	LIST_HEAD(, uconn) conns;
	struct upstream_stats st;
};

static http_parser_settings up_settings;
static void uconn_free(struct uconn *c);
static void uconn_process(struct uconn *c);
static int req_attach(struct upstream_req *r);

/* ---- deadlines ---- */

static void
req_arm(struct upstream_req *r)
{
	struct timeval now, left, phase;
	int ms = r->phase == PH_CONNECT ? r->pool->lim.connect_ms
		 : r->phase == PH_FIRST_BYTE ? r->pool->lim.first_byte_ms
					      : r->pool->lim.idle_ms;

	evutil_gettimeofday(&now, NULL);
	evutil_timersub(&r->deadline_total, &now, &left);
	if (left.tv_sec < 0)
		left.tv_sec = left.tv_usec = 0;
	phase.tv_sec = ms / 1000;
	phase.tv_usec = (ms % 1000) * 1000;
	r->total_armed = r->paused || evutil_timercmp(&left, &phase, <);
	if (r->total_armed)
		phase = left;
	evtimer_add(r->timer, &phase);
}

static void
req_free(struct upstream_req *r)
{
	event_free(r->timer);
	free(r->wire);
	free(r->body);
	free(r);
}

/* Ends the request with an error; its connection is already detached. */
static void
req_fail(struct upstream_req *r, enum upstream_err err, const char *msg)
{
	struct upstream_cbs cbs = r->cbs;
	void *arg = r->arg;

	req_free(r);
	cbs.on_error(arg, err, msg);
}

static void
req_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct upstream_req *r = arg;
	struct timeval now;
	const char *msg;

	(void)fd;
	(void)what;
	evutil_gettimeofday(&now, NULL);
	/* The timer may fire a little before the wall clock reaches the
	 * deadline (libevent's coarse monotonic clock): trust what was armed. */
	if (r->total_armed || !evutil_timercmp(&now, &r->deadline_total, <))
		msg = "total time-out";
	else if (r->phase == PH_CONNECT)
		msg = "connect time-out";
	else if (r->phase == PH_FIRST_BYTE)
		msg = "no answer before the first-byte time-out";
	else
		msg = "idle time-out between chunks";
	if (r->conn) {
		r->conn->req = NULL;
		uconn_free(r->conn);
		r->conn = NULL;
	}
	req_fail(r, UPSTREAM_ERR_TIMEOUT, msg);
}

/* ---- response parsing ---- */

static int
up_head_bytes(struct uconn *c, size_t n)
{
	c->head_bytes += n;
	return c->head_bytes > UP_MAX_HEAD ? -1 : 0;
}

static void
up_header_done(struct uconn *c)
{
	if (!c->field_len)
		return;
	c->field[c->field_len] = '\0';
	c->value[c->value_len] = '\0';
	if (strcasecmp(c->field, "content-type") == 0) {
		memcpy(c->ctype, c->value, c->value_len + 1);	/* value_len < sizeof(ctype) */
	} else if (strcasecmp(c->field, "retry-after") == 0) {
		char *end;
		long v = strtol(c->value, &end, 10);

		if (end != c->value && v >= 0 && v < INT_MAX)
			c->retry_after = (int)v;
	}
	c->field_len = c->value_len = 0;
}

static int
up_on_begin(http_parser *p)
{
	struct uconn *c = p->data;

	c->head_bytes = 0;
	c->ctype[0] = '\0';
	c->retry_after = -1;
	c->field_len = c->value_len = 0;
	c->last_was_value = 0;
	return 0;
}

static int
up_on_field(http_parser *p, const char *at, size_t n)
{
	struct uconn *c = p->data;
	size_t m;

	if (up_head_bytes(c, n) < 0)
		return -1;
	if (c->last_was_value) {
		up_header_done(c);
		c->last_was_value = 0;
	}
	m = sizeof(c->field) - 1 - c->field_len;
	m = n < m ? n : m;
	memcpy(c->field + c->field_len, at, m);
	c->field_len += m;
	return 0;
}

static int
up_on_value(http_parser *p, const char *at, size_t n)
{
	struct uconn *c = p->data;
	size_t m;

	if (up_head_bytes(c, n) < 0)
		return -1;
	c->last_was_value = 1;
	m = sizeof(c->value) - 1 - c->value_len;
	m = n < m ? n : m;
	memcpy(c->value + c->value_len, at, m);
	c->value_len += m;
	return 0;
}

static int
up_on_headers_complete(http_parser *p)
{
	struct uconn *c = p->data;
	struct upstream_req *r = c->req;

	up_header_done(c);
	if (p->status_code < 200)
		return 0;	/* 1xx: the real answer follows */
	if (!r)
		return -1;
	r->cbs.on_head(r->arg, p->status_code, c->ctype, c->retry_after);
	return c->dead ? -1 : 0;
}

static int
up_on_body(http_parser *p, const char *at, size_t n)
{
	struct uconn *c = p->data;
	struct upstream_req *r = c->req;

	if (!r)
		return -1;
	r->cbs.on_body(r->arg, at, n);
	if (c->dead)
		return -1;
	if (r->paused)
		http_parser_pause(p, 1);
	return 0;
}

static int
up_on_complete(http_parser *p)
{
	struct uconn *c = p->data;

	if (p->status_code < 200)
		return 0;
	c->complete = 1;
	http_parser_pause(p, 1);
	return 0;
}

/* ---- connections ---- */

static void
uconn_free(struct uconn *c)
{
	if (c->in_parse) {
		c->dead = 1;
		c->req = NULL;
		return;
	}
	if (c->state == UC_IDLE) {
		TAILQ_REMOVE(&c->o->idle, c, idle_link);
		c->o->nidle--;
		c->pool->st.idle--;
	}
	LIST_REMOVE(c, all_link);
	c->pool->st.open--;
	event_free(c->idle_timer);
	event_free(c->resume);
	sockio_free(c->io);
	free(c);
}

/* The answer is complete: pool the connection, tell the caller. */
static void
uconn_finish(struct uconn *c)
{
	struct upstream_req *r = c->req;
	struct evbuffer *in = sockio_input(c->io);
	struct upstream_pool *pool = c->pool;
	/* Pooled only when the request went out whole: an early answer (a 413
	 * before the body was read) leaves output that refers to the request's
	 * buffers, freed below. */
	int keep = !c->no_reuse && http_should_keep_alive(&c->parser) &&
		   evbuffer_get_length(in) == 0 && sockio_pending(c->io) == 0 &&
		   c->o->nidle < pool->lim.pool_idle;
	struct upstream_cbs cbs = r->cbs;
	void *arg = r->arg;

	c->req = NULL;
	r->conn = NULL;
	if (keep) {
		c->state = UC_IDLE;
		c->complete = c->got_bytes = 0;
		c->head_bytes = 0;
		http_parser_init(&c->parser, HTTP_RESPONSE);
		c->parser.data = c;
		TAILQ_INSERT_HEAD(&c->o->idle, c, idle_link);
		c->o->nidle++;
		pool->st.idle++;
		loop_timer_in(c->idle_timer, pool->lim.pool_idle_ms);
		sockio_read(c->io, 1);
	} else {
		uconn_free(c);
	}
	req_free(r);
	cbs.on_done(arg);
}

/* The connection broke while carrying a request. */
static void
uconn_broken(struct uconn *c, enum upstream_err err, const char *msg)
{
	struct upstream_req *r = c->req;
	/* A pooled connection the provider closed before answering. */
	int stale = c->reused && !c->got_bytes && err == UPSTREAM_ERR_RESET;

	c->req = NULL;
	if (r)
		r->conn = NULL;
	uconn_free(c);
	if (!r)
		return;
	if (stale && !r->retried) {
		r->retried = 1;
		if (req_attach(r) == 0)
			return;
	}
	req_fail(r, err, msg);
}

static void
uconn_process(struct uconn *c)
{
	struct evbuffer *in = sockio_input(c->io);

	while (c->req && !c->req->paused && evbuffer_get_length(in) > 0) {
		size_t avail = evbuffer_get_contiguous_space(in), n;
		const char *data = (const char *)evbuffer_pullup(in, (ev_ssize_t)avail);
		enum http_errno e;

		if (!c->got_bytes) {
			c->got_bytes = 1;
			c->req->phase = PH_BODY;
		}
		c->in_parse++;
		n = http_parser_execute(&c->parser, &up_settings, data, avail);
		c->in_parse--;
		if (c->dead) {
			uconn_free(c);
			return;
		}
		evbuffer_drain(in, n);
		if (c->complete) {
			uconn_finish(c);
			return;
		}
		e = HTTP_PARSER_ERRNO(&c->parser);
		if (e == HPE_PAUSED)
			break;
		if (e != HPE_OK) {
			uconn_broken(c, UPSTREAM_ERR_PROTOCOL, http_errno_description(e));
			return;
		}
	}
	if (c->req)
		req_arm(c->req);
}

static void
uconn_read_cb(struct sockio *io, void *arg)
{
	struct uconn *c = arg;

	(void)io;
	if (c->state == UC_IDLE) {	/* unexpected bytes on an idle conn */
		uconn_free(c);
		return;
	}
	uconn_process(c);
}

static void
uconn_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	uconn_process(arg);
}

static const char *
uconn_error_text(struct uconn *c, char *buf, size_t len)
{
	unsigned long e = sockio_plain(c->io) ? 0 : bufferevent_get_openssl_error(sockio_bev(c->io));
	int dns = bufferevent_socket_get_dns_error(sockio_bev(c->io));

	if (dns)
		snprintf(buf, len, "DNS: %s", evutil_gai_strerror(dns));
	else if (e)
		snprintf(buf, len, "TLS: %s", ERR_reason_error_string(e) ? ERR_reason_error_string(e) : "error");
	else
		snprintf(buf, len, "%s", evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	return buf;
}

static void
uconn_event_cb(struct sockio *io, short what, void *arg)
{
	struct uconn *c = arg;
	char buf[256];

	(void)io;
	if (what & BEV_EVENT_CONNECTED) {	/* sockio has set TCP_NODELAY */
		c->state = UC_ACTIVE;
		if (c->req) {
			c->req->phase = PH_FIRST_BYTE;
			req_arm(c->req);
		}
		return;
	}
	if (c->state == UC_IDLE) {
		uconn_free(c);
		return;
	}
	if (c->state == UC_CONNECTING) {
		uconn_broken(c, UPSTREAM_ERR_CONNECT, uconn_error_text(c, buf, sizeof(buf)));
		return;
	}
	if ((what & BEV_EVENT_EOF) && c->got_bytes) {
		/* EOF may end a close-delimited answer. */
		c->in_parse++;
		http_parser_execute(&c->parser, &up_settings, NULL, 0);
		c->in_parse--;
		if (c->dead) {
			uconn_free(c);
			return;
		}
		if (c->complete) {
			c->no_reuse = 1;
			uconn_finish(c);
			return;
		}
	}
	uconn_broken(c, UPSTREAM_ERR_RESET,
		     what & BEV_EVENT_EOF ? "connection closed by provider" : uconn_error_text(c, buf, sizeof(buf)));
}

static void
uconn_idle_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	uconn_free(arg);
}

static int
is_ip_literal(const char *host)
{
	unsigned char buf[16];

	return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

static const struct sockio_cbs uconn_io_cbs = { uconn_read_cb, NULL, uconn_event_cb };

static struct sockio *
uconn_io_new(struct upstream_pool *p, struct origin *o, struct uconn *c)
{
	struct bufferevent *bev;
	SSL *ssl;

	if (!o->tls) {
		if (!(bev = bufferevent_socket_new(p->base, -1, BEV_OPT_CLOSE_ON_FREE)))
			return NULL;
		return sockio_new(p->base, bev, 1, &uconn_io_cbs, c);
	}
	if (!(ssl = SSL_new(p->ssl)))
		return NULL;
	if (is_ip_literal(o->host)) {
		X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), o->host);
	} else {
		SSL_set_tlsext_host_name(ssl, o->host);
		SSL_set1_host(ssl, o->host);
	}
	bev = bufferevent_openssl_socket_new(p->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
					     BEV_OPT_CLOSE_ON_FREE);
	if (!bev) {
		SSL_free(ssl);
		return NULL;
	}
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	return sockio_new(p->base, bev, 0, &uconn_io_cbs, c);
}

static struct uconn *
uconn_new(struct upstream_pool *p, struct origin *o)
{
	struct uconn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->pool = p;
	c->o = o;
	c->io = uconn_io_new(p, o, c);
	c->idle_timer = evtimer_new(p->base, uconn_idle_cb, c);
	c->resume = event_new(p->base, -1, 0, uconn_resume_cb, c);
	if (!c->io || !c->idle_timer || !c->resume)
		goto fail;
	http_parser_init(&c->parser, HTTP_RESPONSE);
	c->parser.data = c;
	c->state = UC_CONNECTING;
	sockio_read(c->io, 1);
	LIST_INSERT_HEAD(&p->conns, c, all_link);
	p->st.open++;
	p->st.connects++;
	if (sockio_connect_hostname(c->io, p->dns, o->host, o->port) < 0) {
		LIST_REMOVE(c, all_link);
		p->st.open--;
		goto fail;
	}
	return c;
fail:
	if (c->io)
		sockio_free(c->io);
	if (c->idle_timer)
		event_free(c->idle_timer);
	if (c->resume)
		event_free(c->resume);
	free(c);
	return NULL;
}

/* Gives the request a connection (idle or new) and writes it. */
static int
req_attach(struct upstream_req *r)
{
	struct origin *o = r->o;
	struct uconn *c = TAILQ_FIRST(&o->idle);

	if (c && !r->retried) {
		TAILQ_REMOVE(&o->idle, c, idle_link);
		o->nidle--;
		r->pool->st.idle--;
		r->pool->st.reuses++;
		evtimer_del(c->idle_timer);
		c->state = UC_ACTIVE;
		c->reused = 1;
		r->phase = PH_FIRST_BYTE;
	} else {
		if (!(c = uconn_new(r->pool, o)))
			return -1;
		r->phase = PH_CONNECT;
	}
	c->req = r;
	r->conn = c;
	/* one writev for both, at the end of this loop turn (or once
	 * connected): no copy of the body */
	evbuffer_add_reference(sockio_output(c->io), r->wire, r->wire_len, NULL, NULL);
	if (r->body_len)
		evbuffer_add_reference(sockio_output(c->io), r->body, r->body_len, NULL, NULL);
	sockio_flush(c->io);
	sockio_read(c->io, 1);
	req_arm(r);
	return 0;
}

/* ---- public ---- */

static struct origin *
origin_get(struct upstream_pool *p, int tls, const char *host, size_t hlen, int port)
{
	struct origin *o;

	if (hlen == 0 || hlen >= sizeof(o->host))
		return NULL;
	LIST_FOREACH(o, &p->origins, link)
		if (o->tls == tls && o->port == port && strlen(o->host) == hlen &&
		    strncasecmp(o->host, host, hlen) == 0)
			return o;
	if (!(o = calloc(1, sizeof(*o))))
		return NULL;
	memcpy(o->host, host, hlen);
	o->port = port;
	o->tls = tls;
	TAILQ_INIT(&o->idle);
	LIST_INSERT_HEAD(&p->origins, o, link);
	return o;
}

/* The request's bytes, written once into one buffer (no printf: a
 * printf per header line showed in profiles). */
static int
req_serialize(struct upstream_req *r, const char *method, const char *path,
	      const char *hostport, const char *const *headers, size_t len)
{
	static const char tail[] = "\r\nConnection: keep-alive\r\n\r\n";
	char clen[24], *q = clen + sizeof(clen), *w;
	size_t n, ml = strlen(method), pl = strlen(path), hl = strlen(hostport), cl, u = len;

	do {
		*--q = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	cl = (size_t)(clen + sizeof(clen) - q);
	n = ml + 1 + pl + 17 + hl + 2;			/* "M P HTTP/1.1\r\nHost: H\r\n" */
	for (int i = 0; headers && headers[i]; i++)
		n += strlen(headers[i]) + 2;
	n += 16 + cl + sizeof(tail) - 1;		/* "Content-Length: N" tail */
	if (!(w = r->wire = malloc(n)))
		return -1;
#define PUT(s, l) (memcpy(w, (s), (l)), w += (l))
	PUT(method, ml);
	PUT(" ", 1);
	PUT(path, pl);
	PUT(" HTTP/1.1\r\nHost: ", 17);
	PUT(hostport, hl);
	PUT("\r\n", 2);
	for (int i = 0; headers && headers[i]; i++) {
		PUT(headers[i], strlen(headers[i]));
		PUT("\r\n", 2);
	}
	PUT("Content-Length: ", 16);
	PUT(q, cl);
	PUT(tail, sizeof(tail) - 1);
#undef PUT
	r->wire_len = (size_t)(w - r->wire);
	return 0;
}

/* Takes url apart into slot (its previous URL dropped); -1 when it is not
 * an http(s) URL with a host, or its path is too long. */
static int
url_parse(struct url_parts *slot, const char *url)
{
	struct http_parser_url u;
	size_t plen;

	free(slot->url);
	slot->url = NULL;
	http_parser_url_init(&u);
	if (http_parser_parse_url(url, strlen(url), 0, &u) != 0 || !(u.field_set & (1 << UF_HOST)) ||
	    !(u.field_set & (1 << UF_SCHEMA)))
		return -1;
	slot->tls = u.field_data[UF_SCHEMA].len == 5 && strncasecmp(url + u.field_data[UF_SCHEMA].off, "https", 5) == 0;
	if (!slot->tls &&
	    !(u.field_data[UF_SCHEMA].len == 4 && strncasecmp(url + u.field_data[UF_SCHEMA].off, "http", 4) == 0))
		return -1;
	slot->port = (u.field_set & (1 << UF_PORT)) ? u.port : (slot->tls ? 443 : 80);
	plen = (u.field_set & (1 << UF_PATH)) ? strlen(url + u.field_data[UF_PATH].off) : 0;
	if (plen >= URL_PATH_MAX)
		return -1;
	slot->path_off = plen ? u.field_data[UF_PATH].off : 0;
	slot->host_off = u.field_data[UF_HOST].off;
	slot->host_len = u.field_data[UF_HOST].len;
	snprintf(slot->hostport, sizeof(slot->hostport),
		 (slot->port == 80 && !slot->tls) || (slot->port == 443 && slot->tls) ? "%.*s" : "%.*s:%d",
		 (int)slot->host_len, url + slot->host_off, slot->port);
	return (slot->url = strdup(url)) ? 0 : -1;
}

static const struct url_parts *
url_parts(struct upstream_pool *p, const char *url)
{
	uint32_t h = 2166136261u;	/* FNV-1a */
	struct url_parts *slot;

	for (const char *s = url; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	slot = &p->urls[h % URL_CACHE];
	if (slot->url && strcmp(slot->url, url) == 0)
		return slot;
	return url_parse(slot, url) == 0 ? slot : NULL;
}

struct upstream_req *
upstream_send(struct upstream_pool *p, const char *method, const char *url,
	      const char *const *headers, char *body, size_t len,
	      const struct upstream_cbs *cbs, void *arg)
{
	const struct url_parts *u = url_parts(p, url);
	struct upstream_req *r;

	if (!u || !(r = calloc(1, sizeof(*r))))
		goto bad;
	r->body = body;		/* ours from here: freed with the request */
	r->body_len = len;
	r->pool = p;
	r->cbs = *cbs;
	r->arg = arg;
	r->o = origin_get(p, u->tls, u->url + u->host_off, u->host_len, u->port);
	r->timer = evtimer_new(p->base, req_timer_cb, r);
	if (!r->o || !r->timer ||
	    req_serialize(r, method, u->path_off ? u->url + u->path_off : "/", u->hostport, headers, len) < 0)
		goto fail;
	evutil_gettimeofday(&r->deadline_total, NULL);
	r->deadline_total.tv_sec += p->lim.total_ms / 1000;
	r->deadline_total.tv_usec += (p->lim.total_ms % 1000) * 1000;
	if (r->deadline_total.tv_usec >= 1000000) {
		r->deadline_total.tv_sec++;
		r->deadline_total.tv_usec -= 1000000;
	}
	if (req_attach(r) < 0)
		goto fail;
	return r;
fail:
	if (r->timer)
		event_free(r->timer);
	free(r->wire);
	free(r);
bad:
	free(body);
	return NULL;
}

void
upstream_cancel(struct upstream_req *r)
{
	if (r->conn) {
		r->conn->req = NULL;
		uconn_free(r->conn);	/* never reused: the answer is unread */
	}
	req_free(r);
}

void
upstream_pause(struct upstream_req *r, int paused)
{
	struct uconn *c = r->conn;

	if (r->paused == paused)
		return;
	r->paused = paused;
	if (!c)
		return;
	if (paused) {
		sockio_read(c->io, 0);
		if (c->in_parse)
			http_parser_pause(&c->parser, 1);
	} else {
		http_parser_pause(&c->parser, 0);
		sockio_read(c->io, 1);
		event_active(c->resume, EV_TIMEOUT, 0);
	}
	req_arm(r);
}

/* The client TLS context: peers verified against ca_file or the system CAs. */
static SSL_CTX *
up_ssl_ctx(const char *ca_file, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (!ctx) {
		snprintf(err, errlen, "TLS context: out of memory");
		return NULL;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	if (ca_file[0] ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1
		       : SSL_CTX_set_default_verify_paths(ctx) != 1) {
		snprintf(err, errlen, "TLS: cannot load CA certificates %s", ca_file);
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

int
upstream_pool_set_limits(struct upstream_pool *p, const struct upstream_limits *lim,
			 char *err, size_t errlen)
{
	SSL_CTX *ssl = up_ssl_ctx(lim->ca_file ? lim->ca_file : "", err, errlen);

	if (!ssl)
		return -1;
	SSL_CTX_free(p->ssl);	/* connections open hold their own reference */
	p->ssl = ssl;
	p->lim = *lim;
	snprintf(p->ca_file, sizeof(p->ca_file), "%s", lim->ca_file ? lim->ca_file : "");
	p->lim.ca_file = p->ca_file;
	return 0;
}

struct upstream_pool *
upstream_pool_new(struct event_base *base, const struct upstream_limits *lim, char *err,
		  size_t errlen)
{
	struct upstream_pool *p = calloc(1, sizeof(*p));

	if (!p) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	up_settings.on_message_begin = up_on_begin;
	up_settings.on_header_field = up_on_field;
	up_settings.on_header_value = up_on_value;
	up_settings.on_headers_complete = up_on_headers_complete;
	up_settings.on_body = up_on_body;
	up_settings.on_message_complete = up_on_complete;
	p->base = base;
	p->lim = *lim;
	LIST_INIT(&p->origins);
	LIST_INIT(&p->conns);
	if (lim->ca_file)
		snprintf(p->ca_file, sizeof(p->ca_file), "%s", lim->ca_file);
	p->lim.ca_file = p->ca_file;
	if (!(p->dns = evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS)))
		p->dns = evdns_base_new(base, 0);	/* no resolv.conf: IPs only */
	if (!(p->ssl = up_ssl_ctx(p->ca_file, err, errlen)))
		goto fail;
	return p;
fail:
	upstream_pool_free(p);
	return NULL;
}

void
upstream_pool_free(struct upstream_pool *p)
{
	struct origin *o;
	struct uconn *c;

	if (!p)
		return;
	while ((c = LIST_FIRST(&p->conns))) {
		if (c->req) {
			c->req->conn = NULL;
			c->req = NULL;
		}
		c->in_parse = 0;
		uconn_free(c);
	}
	while ((o = LIST_FIRST(&p->origins))) {
		LIST_REMOVE(o, link);
		free(o);
	}
	if (p->dns)
		evdns_base_free(p->dns, 0);
	if (p->ssl)
		SSL_CTX_free(p->ssl);
	for (int i = 0; i < URL_CACHE; i++)
		free(p->urls[i].url);
	free(p);
}

void
upstream_pool_stats(const struct upstream_pool *p, struct upstream_stats *st)
{
	*st = p->st;
}
