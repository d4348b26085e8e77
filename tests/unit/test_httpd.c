/*
 * httpd over a loopback socket, the client in the same loop: the edges of a
 * connection's end that the router's handlers do not reach on their own.
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
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "httpd.h"

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

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_http10_stream_end_closes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
