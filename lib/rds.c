/*
 * rds: hiredis async connection lifecycle (see rds.h). hiredis frees its
 * context after the disconnect callback; we only forget our pointer there.
 */
#include "rds.h"

#include <stdlib.h>
#include <string.h>

#include <hiredis/adapters/libevent.h>
#include <hiredis/hiredis.h>

#include "log.h"

#define RDS_BACKOFF_MS 1000

struct rds {
	struct event_base *base;
	char host[128];
	int port;
	redisAsyncContext *ac;
	int connected;
	struct event *retry;
	rds_connect_fn fn;
	void *arg;
};

static void
rds_schedule(struct rds *r)
{
	struct timeval tv = { RDS_BACKOFF_MS / 1000, (RDS_BACKOFF_MS % 1000) * 1000 };

	evtimer_add(r->retry, &tv);
}

static void
rds_on_connect(const redisAsyncContext *ac, int status)
{
	struct rds *r = ac->data;

	if (status != REDIS_OK) {
		log_warn("redis: connect to %s:%d failed: %s", r->host, r->port, ac->errstr);
		r->ac = NULL;	/* hiredis frees it */
		rds_schedule(r);
		return;
	}
	r->connected = 1;
	log_info("redis: connected to %s:%d", r->host, r->port);
	if (r->fn)
		r->fn(r, r->arg);
}

static void
rds_on_disconnect(const redisAsyncContext *ac, int status)
{
	struct rds *r = ac->data;

	if (!r)
		return;
	r->ac = NULL;
	r->connected = 0;
	if (status != REDIS_OK) {
		log_warn("redis: connection lost: %s", ac->errstr);
		rds_schedule(r);
	}
}

void
rds_connect(struct rds *r)
{
	if (r->ac)
		return;
	r->ac = redisAsyncConnect(r->host, r->port);
	if (!r->ac || r->ac->err) {
		log_warn("redis: %s", r->ac ? r->ac->errstr : "out of memory");
		if (r->ac)
			redisAsyncFree(r->ac);
		r->ac = NULL;
		rds_schedule(r);
		return;
	}
	r->ac->data = r;
	redisLibeventAttach(r->ac, r->base);
	redisAsyncSetConnectCallback(r->ac, rds_on_connect);
	redisAsyncSetDisconnectCallback(r->ac, rds_on_disconnect);
}

static void
rds_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	rds_connect(arg);
}

struct rds *
rds_new(struct event_base *base, const char *host, int port)
{
	struct rds *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->base = base;
	strncpy(r->host, host, sizeof(r->host) - 1);
	r->port = port;
	if (!(r->retry = evtimer_new(base, rds_retry_cb, r))) {
		free(r);
		return NULL;
	}
	return r;
}

void
rds_set_connect_cb(struct rds *r, rds_connect_fn fn, void *arg)
{
	r->fn = fn;
	r->arg = arg;
}

int
rds_is_connected(const struct rds *r)
{
	return r->connected;
}

redisAsyncContext *
rds_ctx(struct rds *r)
{
	return r->connected ? r->ac : NULL;
}

void
rds_free(struct rds *r)
{
	if (!r)
		return;
	if (r->ac) {
		r->ac->data = NULL;
		redisAsyncFree(r->ac);
	}
	event_free(r->retry);
	free(r);
}
