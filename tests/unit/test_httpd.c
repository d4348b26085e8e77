/*
 * httpd over a loopback socket, the client in the same loop: the edges that
 * the router's handlers and clients do not reach on their own (a stream
 * ending with nothing queued, an allocation failing mid-head).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "httpd.h"

#ifndef __SANITIZE_ADDRESS__
/* Allocations as ASan makes them, not zeroed (0xbe), and one that fails on
 * demand: the next of fail_size bytes. */
extern void *__libc_malloc(size_t n);
static size_t fail_size;

void *
malloc(size_t n)
{
	void *p;

	if (fail_size && n == fail_size) {
		fail_size = 0;
		return NULL;
	}
	if ((p = __libc_malloc(n)))
		memset(p, 0xbe, n);
	return p;
}
#endif

struct t {
	struct event_base *base;
	struct httpd_req *req;		/* the stream being answered */
	struct event *end;		/* ends it, a loop turn later */
	char got[4096];
	size_t got_len;
	int eof;
};

static void
end_cb(evutil_socket_t fd, short what, void *arg)
{
	struct t *t = arg;

	(void)fd;
	(void)what;
	httpd_stream_end(t->req);	/* HTTP/1.0: no bytes of its own */
}

static void
stream_handler(struct httpd_req *req, void *arg)
{
	struct t *t = arg;
	struct timeval tv = { 0, 50000 };	/* "hello" is written by then */

	t->req = req;
	httpd_stream_start(req, 200, "text/plain");
	httpd_stream_write(req, "hello", 5);
	evtimer_add(t->end, &tv);
}

static void
client_cb(evutil_socket_t fd, short what, void *arg)
{
	struct t *t = arg;
	ssize_t n;

	(void)what;
	n = recv(fd, t->got + t->got_len, sizeof(t->got) - 1 - t->got_len, 0);
	if (n > 0) {
		t->got_len += (size_t)n;
		return;
	}
	if (n < 0 && errno == EAGAIN)
		return;
	t->eof = 1;
	event_base_loopbreak(t->base);
}

static int
client_connect(int port)
{
	struct sockaddr_in sin;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);	/* the backlog takes it */
	return fd;
}

/* The stream's end queues nothing and what came before is written: no write
 * callback follows, and the connection (close-delimited) must end anyway. */
static void
test_http10_stream_end_closes(void **state)
{
	const struct httpd_limits lim = { 8192, 8192, 32, 16, 2000, 5000, 2000 };
	const char rq[] = "GET /s HTTP/1.0\r\n\r\n";
	struct timeval deadline = { 3, 0 };
	struct t t;
	struct httpd *h;
	struct event *rd;
	char err[256];
	int fd;

	(void)state;
	memset(&t, 0, sizeof(t));
	assert_non_null(t.base = event_base_new());
	assert_non_null(t.end = evtimer_new(t.base, end_cb, &t));
	h = httpd_new(t.base, "127.0.0.1", &lim, stream_handler, &t, err, sizeof(err));
	if (!h)
		fail_msg("httpd_new: %s", err);
	fd = client_connect(httpd_port(h));
	assert_int_equal(send(fd, rq, sizeof(rq) - 1, 0), (ssize_t)(sizeof(rq) - 1));
	assert_int_equal(fcntl(fd, F_SETFL, O_NONBLOCK), 0);
	assert_non_null(rd = event_new(t.base, fd, EV_READ | EV_PERSIST, client_cb, &t));
	event_add(rd, NULL);
	event_base_loopexit(t.base, &deadline);
	event_base_dispatch(t.base);
	t.got[t.got_len] = '\0';
	assert_true(t.eof);	/* not the 3 s deadline */
	assert_non_null(strstr(t.got, "HTTP/1.1 200 OK\r\n"));
	assert_non_null(strstr(t.got, "Connection: close\r\n"));
	assert_non_null(strstr(t.got, "\r\n\r\nhello"));
	event_free(rd);
	close(fd);
	httpd_free(h);
	event_free(t.end);
	event_base_free(t.base);
}

#ifndef __SANITIZE_ADDRESS__
struct oom {
	struct event_base *base;
	int fd;
	int status;			/* the done callback's */
	const char *absent;		/* its look-up of a header never sent */
	char got[1024];
	size_t got_len;
	int eof;
};

static void
oom_handler(struct httpd_req *req, void *arg)
{
	(void)arg;
	httpd_reply(req, 200, "text/plain", "no", 2);	/* not reached */
}

static void
oom_done(const struct httpd_req *r, int status, long long usec, void *arg)
{
	struct oom *o = arg;

	(void)usec;
	o->status = status;
	o->absent = httpd_req_header(r, "X-Absent");	/* reads every counted name */
}

/* The head so far is in the arena (1,000 of its 1,024 inline bytes): the
 * next header's name makes it grow, and that allocation fails. */
static void
oom_part2_cb(evutil_socket_t fd, short what, void *arg)
{
	static const char part2[] = "X-A-Header-Name-Long-Enough-To-Grow: 1\r\n\r\n";
	struct oom *o = arg;

	(void)fd;
	(void)what;
	fail_size = 2048;	/* the arena's first growth */
	assert_int_equal(send(o->fd, part2, sizeof(part2) - 1, 0), (ssize_t)(sizeof(part2) - 1));
}

static void
oom_client_cb(evutil_socket_t fd, short what, void *arg)
{
	struct oom *o = arg;
	ssize_t n;

	(void)what;
	n = recv(fd, o->got + o->got_len, sizeof(o->got) - 1 - o->got_len, 0);
	if (n > 0) {
		o->got_len += (size_t)n;
		return;
	}
	if (n < 0 && errno == EAGAIN)
		return;
	o->eof = 1;
	event_base_loopbreak(o->base);
}

/* A header slot whose name could not be stored is not counted: the done
 * callback's httpd_req_header read an offset never written. */
static void
test_header_name_out_of_memory(void **state)
{
	const struct httpd_limits lim = { 8192, 8192, 32, 16, 2000, 5000, 2000 };
	struct timeval later = { 0, 100000 }, deadline = { 3, 0 };
	char part1[1100], pad[991], err[256];
	struct event *rd, *tm;
	struct httpd *h;
	struct oom o;
	int n;

	(void)state;
	memset(&o, 0, sizeof(o));
	o.status = -1;
	memset(pad, 'p', sizeof(pad) - 1);
	pad[sizeof(pad) - 1] = '\0';
	/* strings: "/s" 3, "X-Pad" 6, the value 991: 1,000 bytes */
	n = snprintf(part1, sizeof(part1), "GET /s HTTP/1.1\r\nX-Pad: %s\r\n", pad);
	assert_true(n > 0 && (size_t)n < sizeof(part1));
	assert_non_null(o.base = event_base_new());
	h = httpd_new(o.base, "127.0.0.1", &lim, oom_handler, &o, err, sizeof(err));
	if (!h)
		fail_msg("httpd_new: %s", err);
	httpd_set_done_cb(h, oom_done, &o);
	o.fd = client_connect(httpd_port(h));
	assert_int_equal(send(o.fd, part1, (size_t)n, 0), (ssize_t)n);
	assert_int_equal(fcntl(o.fd, F_SETFL, O_NONBLOCK), 0);
	assert_non_null(rd = event_new(o.base, o.fd, EV_READ | EV_PERSIST, oom_client_cb, &o));
	assert_non_null(tm = evtimer_new(o.base, oom_part2_cb, &o));
	event_add(rd, NULL);
	evtimer_add(tm, &later);
	event_base_loopexit(o.base, &deadline);
	event_base_dispatch(o.base);
	fail_size = 0;
	o.got[o.got_len] = '\0';
	assert_int_equal(o.status, 503);
	assert_null(o.absent);
	assert_non_null(strstr(o.got, "HTTP/1.1 503 "));
	event_free(rd);
	event_free(tm);
	close(o.fd);
	httpd_free(h);
	event_base_free(o.base);
}
#else
static void
test_header_name_out_of_memory(void **state)
{
	(void)state;
	skip();		/* our malloc would not be ASan's */
}
#endif

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_http10_stream_end_closes),
		cmocka_unit_test(test_header_name_out_of_memory),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
