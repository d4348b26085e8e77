/*
 * rds: one asynchronous Redis connection through hiredis's libevent adapter,
 * with connect time-out handling and reconnection after a back-off. The loop
 * never waits on Redis.
 */
#ifndef AGORA_RDS_H
#define AGORA_RDS_H

#include <event2/event.h>
#include <hiredis/async.h>

struct rds;

typedef void (*rds_connect_fn)(struct rds *r, void *arg);

struct rds *rds_new(struct event_base *base, const char *host, int port);
void rds_free(struct rds *r);
/* Called after each successful connect (e.g. to create consumer groups). */
void rds_set_connect_cb(struct rds *r, rds_connect_fn fn, void *arg);
void rds_connect(struct rds *r);
int rds_is_connected(const struct rds *r);
/* The live hiredis context, or NULL while disconnected. */
redisAsyncContext *rds_ctx(struct rds *r);

#endif
