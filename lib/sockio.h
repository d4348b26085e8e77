/*
 * sockio: one connection's byte I/O, for httpd's client connections and
 * upstream's provider connections, over a bufferevent that keeps owning the
 * buffers, the connect (with evdns) and TLS.
 *
 * A plain socket is read and written here, with the system calls a request
 * needs and no more:
 *  - output queued during a loop turn is written once, when the turn's other
 *    callbacks have run (a deferred event: no system call), with writev
 *    straight on the socket. Only what the kernel does not take arms the
 *    bufferevent's write event (and with it the write time-out), disarmed
 *    again once flushed. bufferevent_socket arms its write event for every
 *    answer and disarms it after: two epoll_ctl per answer and side;
 *  - input is read by our own persistent read event, registered once, with
 *    read(2) into 16 KiB on the stack, appended to the input buffer in a
 *    chain of the size read: evbuffer_read asks ioctl(FIONREAD) first,
 *    every time, for that size.
 * A TLS connection (bufferevent_openssl) is left to the bufferevent as it
 * is: everything here forwards to it. Every connection gets TCP_NODELAY
 * (accepted ones at once, others once connected).
 *
 * Callbacks run from the loop, never from inside a sockio_* call (a connect
 * that fails at once reports it from the loop too), and any of them may
 * free the sockio. on_drain may be NULL.
 */
#ifndef AGORA_SOCKIO_H
#define AGORA_SOCKIO_H

#include <stddef.h>

#include <event2/bufferevent.h>
#include <event2/event.h>

struct sockio;

struct sockio_cbs {
	void (*on_read)(struct sockio *s, void *arg);	/* input grew */
	void (*on_drain)(struct sockio *s, void *arg);	/* output written, all of it */
	/* BEV_EVENT_CONNECTED, or EOF, ERROR, TIMEOUT (with READING or
	 * WRITING): the bufferevent's vocabulary. */
	void (*on_event)(struct sockio *s, short what, void *arg);
};

/* Takes bev (freed with the sockio, fd or not yet). plain: a
 * bufferevent_socket (the fast path); 0: a TLS bufferevent. Reading starts
 * off. NULL when out of memory (bev freed too). */
struct sockio *sockio_new(struct event_base *base, struct bufferevent *bev, int plain,
			  const struct sockio_cbs *cbs, void *arg);
void sockio_free(struct sockio *s);
/* bufferevent_socket_connect_hostname: 0, and BEV_EVENT_CONNECTED or an
 * error follows from the loop; -1: nothing follows. Output queued before
 * is written once connected. */
int sockio_connect_hostname(struct sockio *s, struct evdns_base *dns, const char *host, int port);

struct evbuffer *sockio_input(struct sockio *s);
struct evbuffer *sockio_output(struct sockio *s);
/* Bytes not yet written. */
size_t sockio_pending(struct sockio *s);
/* The output grew: it is written before the loop waits again. */
void sockio_flush(struct sockio *s);
/* evbuffer_add to the output, then sockio_flush. */
void sockio_write(struct sockio *s, const void *data, size_t len);

/* Reading on (1) or off (0). */
void sockio_read(struct sockio *s, int on);
/* Reading pauses while the input holds max bytes or more (0: no bound);
 * checked after each read and by this call only: an owner that drains the
 * input below max calls this (or sockio_read) again, or reading stays
 * paused. */
void sockio_set_read_max(struct sockio *s, size_t max);
/* Output not taken by the peer for ms (armed only while some waits). */
void sockio_set_write_timeout(struct sockio *s, int ms);

int sockio_fd(struct sockio *s);
int sockio_plain(const struct sockio *s);
struct bufferevent *sockio_bev(struct sockio *s);	/* error details */

#endif
