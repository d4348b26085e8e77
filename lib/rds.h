/*
 * rds: the Redis of an Agora process, through hiredis's libevent adapter;
 * the loop never waits on Redis. Three modes, chosen by configuration:
 *
 *   standalone  one server (redis_host:redis_port), reconnected after a
 *               back-off;
 *   sentinel    the master named redis_master_name, asked of the sentinels
 *               (SENTINEL get-master-addr-by-name, asynchronously, one after
 *               the other) and checked with ROLE; resolved again when the
 *               link drops, a reply says READONLY or NOREPLICAS, or a
 *               sentinel announces +switch-master;
 *   cluster     Redis Cluster from seed nodes: the slot map from CLUSTER
 *               SLOTS, one connection per master, a command goes to the
 *               master of its key's slot; MOVED updates the map and retries
 *               there, ASK retries once with ASKING, a lost node is
 *               reconnected and the map refreshed. Redirects are bounded.
 *
 * Every command names the key that routes it (every command Agora sends
 * touches one slot). A command's callback is called exactly once: with the
 * reply, an error reply, or NULL when the link failed or rds_free() ran.
 */
#ifndef AGORA_RDS_H
#define AGORA_RDS_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "conf.h"

struct rds;

typedef void (*rds_connect_fn)(struct rds *r, void *arg);
/* reply: NULL when the command got no answer (link lost, rds freed). */
typedef void (*rds_reply_fn)(struct rds *r, redisReply *reply, void *priv);

/* The mode from the configuration: redis_cluster, else redis_sentinels,
 * else redis_host:redis_port. NULL with a message in err. */
struct rds *rds_new(struct event_base *base, const struct agora_conf *c, char *err, size_t errlen);
/* Standalone, for tests and tools. */
struct rds *rds_new_standalone(struct event_base *base, const char *host, int port);
/* Pending callbacks are called (reply NULL) before it returns. */
void rds_free(struct rds *r);
/* Called each time Redis becomes usable (connect, fail-over, new slot map). */
void rds_set_connect_cb(struct rds *r, rds_connect_fn fn, void *arg);
void rds_connect(struct rds *r);
int rds_is_connected(const struct rds *r);
/* "standalone", "sentinel" or "cluster". */
const char *rds_mode(const struct rds *r);

/* Sends a command routed by key (NULL: any node). fn may be NULL (fire and
 * forget). 0, or -1 when it cannot be sent now (no link to the key's node,
 * too many commands in flight): fn is then not called. */
int rds_command(struct rds *r, const char *key, size_t keylen, rds_reply_fn fn, void *priv,
		const char *fmt, ...);
int rds_command_argv(struct rds *r, const char *key, size_t keylen, rds_reply_fn fn, void *priv,
		     int argc, const char **argv, const size_t *argvlen);
/* The RESP encoding of a command (what redisFormatCommandArgv writes) in
 * *out, malloc'd; its length, or -1. argvlen NULL: the arguments are strings. */
int rds_format_argv(char **out, int argc, const char **argv, const size_t *argvlen);

/* Which link a command for key would go to now: the value changes when
 * that link is replaced (a reconnect, a new master, the slot now on another
 * node); 0 when there is none. With WAIT, which covers the writes made on
 * its own link only, it tells whether an earlier write can still be
 * confirmed there. */
uint64_t rds_link(struct rds *r, const char *key, size_t keylen);

struct rds_stats {
	long long sent, moved, ask, refreshes, resolves, failed;
};
void rds_stats(const struct rds *r, struct rds_stats *st);

/* In an XINFO GROUPS reply ([[name, <group>, <field>, <value>, ...], ...]),
 * the value of field for the group named group; NULL when absent. */
const redisReply *rds_group_field(const redisReply *groups, const char *group, const char *field);

#endif
