/*
 * sockio: plain sockets read and written without the bufferevent's per-answer
 * epoll_ctl and per-read ioctl (see sockio.h). On a plain connection the
 * bufferevent's read side stays disabled for good, and its write side is
 * enabled only while output waits for the peer: then it writes (and times
 * out) as usual, and we disable it again when it reports the output flushed.
 */
#include "sockio.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>

/* One read's room: a chat request or a stream's burst in one call. */
#define SOCKIO_READ_BYTES 16384

struct sockio {
	struct event_base *base;
	struct bufferevent *bev;
	struct sockio_cbs cbs;
	void *arg;
	int plain;
	int connected;		/* plain: the fd is there and connected */
	int reading;		/* wanted by the owner */
	size_t read_max;	/* pause reading at this much input (0: none) */
	int rd_armed;		/* plain: rd added */
	int wr_armed;		/* plain: the bufferevent's write side enabled */
	struct event *rd;	/* plain: our read event, once the fd is known */
	struct event *flush;	/* plain: deferred write, end of this turn */
	int in_connect;		/* inside sockio_connect_hostname */
	short later_what;	/* an event met there, delivered from the loop */
	int later_errno;	/* and the errno that came with it */
	struct event *later;	/* made for the first such event only */
};

/* Plain: rd added iff connected, wanted and the input under its bound. */
static void
rd_update(struct sockio *s)
{
	int want = s->rd && s->reading &&
		   !(s->read_max && evbuffer_get_length(bufferevent_get_input(s->bev)) >= s->read_max);

	if (want == s->rd_armed)
		return;
	if (want) {
		/* a failed add leaves it unarmed: the next update tries again */
		if (event_add(s->rd, NULL) < 0)
			return;
	} else {
		event_del(s->rd);
	}
	s->rd_armed = want;
}

/*
 * Reads into a buffer on the stack and appends what came: the input gets a
 * chain the size of the bytes read, as evbuffer_read's FIONREAD sized it.
 * Reading straight into reserved space would need the room reserved before
 * the size is known: evbuffer_reserve_space(16 KiB) makes a 32 KiB chain
 * (the size and the chain's header, rounded up to a power of two) for
 * every read, a 300-byte request's too, and with two vectors it does not
 * trim them to the size asked. The copy is cheap next to the parse that
 * reads every byte anyway.
 */
static void
rd_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sockio *s = arg;
	struct evbuffer *in = bufferevent_get_input(s->bev);
	char buf[SOCKIO_READ_BYTES];
	size_t room = sizeof(buf);
	ssize_t n;
	int err, rc;

	(void)what;
	if (s->read_max) {
		size_t have = evbuffer_get_length(in);

		if (have >= s->read_max) {	/* full: rd_update disarms */
			rd_update(s);
			return;
		}
		if (s->read_max - have < room)	/* never past read_max */
			room = s->read_max - have;
	}
	n = read(fd, buf, room);
	err = errno;
	if (n > 0) {
		/* bufferevent_socket keeps its input's end frozen against
		 * writers other than itself: we are its reader now. */
		evbuffer_unfreeze(in, 0);
		rc = evbuffer_add(in, buf, (size_t)n);
		evbuffer_freeze(in, 0);
		if (rc < 0) {
			s->reading = 0;
			rd_update(s);
			errno = ENOMEM;
			s->cbs.on_event(s, BEV_EVENT_READING | BEV_EVENT_ERROR, s->arg);
			return;
		}
		rd_update(s);
		s->cbs.on_read(s, s->arg);
		return;
	}
	if (n < 0 && (err == EAGAIN || err == EWOULDBLOCK || err == EINTR))
		return;
	s->reading = 0;		/* no more from this one */
	rd_update(s);
	errno = err;		/* for the owner's error text */
	s->cbs.on_event(s, BEV_EVENT_READING | (n == 0 ? BEV_EVENT_EOF : BEV_EVENT_ERROR), s->arg);
}

/* Writes what the output holds; what the kernel does not take (or an
 * error, which the bufferevent meets again and reports) is left to the
 * bufferevent's write event. */
static void
flush_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sockio *s = arg;
	struct evbuffer *out = bufferevent_get_output(s->bev);
	int n;

	(void)fd;
	(void)what;
	if (s->wr_armed || !s->connected || evbuffer_get_length(out) == 0)
		return;
	/* bufferevent_socket freezes its output's start: only it drains. */
	evbuffer_unfreeze(out, 1);
	n = evbuffer_write(out, bufferevent_getfd(s->bev));
	evbuffer_freeze(out, 1);
	if (n > 0 && evbuffer_get_length(out) == 0) {
		if (s->cbs.on_drain)
			s->cbs.on_drain(s, s->arg);
		return;
	}
	s->wr_armed = 1;
	bufferevent_enable(s->bev, EV_WRITE);
}

static void
bev_read_cb(struct bufferevent *bev, void *arg)
{
	struct sockio *s = arg;

	(void)bev;
	s->cbs.on_read(s, s->arg);
}

static void
bev_write_cb(struct bufferevent *bev, void *arg)
{
	struct sockio *s = arg;

	if (s->plain) {
		/* flushed: nothing waits, so the next answer is written by
		 * flush_cb, not through the write event again */
		s->wr_armed = 0;
		bufferevent_disable(bev, EV_WRITE);
	}
	if (s->cbs.on_drain)
		s->cbs.on_drain(s, s->arg);
}

/* Every connection, client or provider, plain or TLS: without Nagle, a
 * small write (an SSE event; over TLS the body's record after the head's)
 * never waits for the peer's delayed ACK of the one before. */
static void
nodelay(evutil_socket_t fd)
{
	int one = 1;

	if (fd >= 0)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void
event_deliver(struct sockio *s, short what)
{
	if (what & BEV_EVENT_CONNECTED)
		nodelay(bufferevent_getfd(s->bev));
	if (s->plain && (what & BEV_EVENT_CONNECTED)) {
		s->connected = 1;
		if (!s->rd && !(s->rd = event_new(s->base, bufferevent_getfd(s->bev), EV_READ | EV_PERSIST, rd_cb, s))) {
			s->cbs.on_event(s, BEV_EVENT_ERROR, s->arg);
			return;
		}
		rd_update(s);
		if (evbuffer_get_length(bufferevent_get_output(s->bev)) > 0)
			event_active(s->flush, EV_WRITE, 0);
	}
	s->cbs.on_event(s, what, s->arg);
}

static void
later_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct sockio *s = arg;
	short what = s->later_what;

	(void)fd;
	(void)ev;
	s->later_what = 0;
	errno = s->later_errno;		/* for the owner's error text */
	event_deliver(s, what);
}

/*
 * A connect that fails at once (evdns answers an IP literal or a hosts-file
 * name on the spot, and connect(2) says EMFILE, ENETUNREACH...) reports its
 * error from inside bufferevent_socket_connect_hostname: the owner, which
 * may free us from on_event, has not even got our return value yet. Such an
 * event waits for the loop. Not BEV_OPT_DEFER_CALLBACKS: a deferred write
 * callback could disable the write event after new output was queued.
 */
static void
bev_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct sockio *s = arg;

	(void)bev;
	if (s->in_connect) {
		s->later_what |= what;
		s->later_errno = errno;
		if (!s->later)
			s->later = event_new(s->base, -1, 0, later_cb, s);
		if (s->later)	/* else sockio_connect_hostname fails */
			event_active(s->later, EV_TIMEOUT, 0);
		return;
	}
	event_deliver(s, what);
}

struct sockio *
sockio_new(struct event_base *base, struct bufferevent *bev, int plain,
	   const struct sockio_cbs *cbs, void *arg)
{
	struct sockio *s = calloc(1, sizeof(*s));
	evutil_socket_t fd = bufferevent_getfd(bev);

	if (!s)
		goto fail;
	s->base = base;
	s->bev = bev;
	s->cbs = *cbs;
	s->arg = arg;
	s->plain = plain;
	bufferevent_setcb(bev, plain ? NULL : bev_read_cb, bev_write_cb, bev_event_cb, s);
	nodelay(fd);		/* accepted (a connect's: once connected) */
	if (!plain) {
		bufferevent_enable(bev, EV_WRITE);
		return s;
	}
	bufferevent_disable(bev, EV_READ | EV_WRITE);
	if (!(s->flush = event_new(base, -1, 0, flush_cb, s)))
		goto fail;
	if (fd >= 0) {	/* accepted: connected already */
		s->connected = 1;
		if (!(s->rd = event_new(base, fd, EV_READ | EV_PERSIST, rd_cb, s)))
			goto fail;
	}
	return s;
fail:
	if (s && s->flush)
		event_free(s->flush);
	free(s);
	bufferevent_free(bev);
	return NULL;
}

void
sockio_free(struct sockio *s)
{
	if (!s)
		return;
	if (s->rd)
		event_free(s->rd);	/* before the bufferevent closes the fd */
	if (s->flush)
		event_free(s->flush);
	if (s->later)
		event_free(s->later);
	bufferevent_free(s->bev);
	free(s);
}

int
sockio_connect_hostname(struct sockio *s, struct evdns_base *dns, const char *host, int port)
{
	int rc;

	s->in_connect = 1;
	rc = bufferevent_socket_connect_hostname(s->bev, dns, AF_UNSPEC, host, port);
	s->in_connect = 0;
	if (rc == 0 && s->later_what && !s->later)
		return -1;	/* failed at once, and no memory to say it later */
	return rc;
}

struct evbuffer *
sockio_input(struct sockio *s)
{
	return bufferevent_get_input(s->bev);
}

struct evbuffer *
sockio_output(struct sockio *s)
{
	return bufferevent_get_output(s->bev);
}

size_t
sockio_pending(struct sockio *s)
{
	return evbuffer_get_length(bufferevent_get_output(s->bev));
}

void
sockio_flush(struct sockio *s)
{
	/* TLS: the bufferevent writes on its own; plain, armed: it does too */
	if (s->plain && !s->wr_armed && s->connected)
		event_active(s->flush, EV_WRITE, 0);
}

void
sockio_write(struct sockio *s, const void *data, size_t len)
{
	evbuffer_add(bufferevent_get_output(s->bev), data, len);
	sockio_flush(s);
}

void
sockio_read(struct sockio *s, int on)
{
	if (!s->plain) {
		if (on)
			bufferevent_enable(s->bev, EV_READ);
		else
			bufferevent_disable(s->bev, EV_READ);
		return;
	}
	s->reading = on;
	rd_update(s);
}

void
sockio_set_read_max(struct sockio *s, size_t max)
{
	if (!s->plain) {
		bufferevent_setwatermark(s->bev, EV_READ, 0, max);
		return;
	}
	s->read_max = max;
	rd_update(s);
}

void
sockio_set_write_timeout(struct sockio *s, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	bufferevent_set_timeouts(s->bev, NULL, ms > 0 ? &tv : NULL);
}

int
sockio_fd(struct sockio *s)
{
	return bufferevent_getfd(s->bev);
}

int
sockio_plain(const struct sockio *s)
{
	return s->plain;
}

struct bufferevent *
sockio_bev(struct sockio *s)
{
	return s->bev;
}
