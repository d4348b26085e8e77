/*
 * replica: where agora-analytics reads, and how far behind it is. Reads go
 * to analytics_pg_dsn (a streaming replica, or pg_dsn when empty); writes
 * (reconciliation imports) to pg_dsn; key lookups and LISTEN to
 * pg_listen_dsn (deploy/postgres.md). The lag of the read side is polled
 * every few seconds through the pool (the loop never waits) and shown in
 * /metrics as agora_analytics_pg_replica_lag_seconds.
 */
#ifndef AGORA_ANA_REPLICA_H
#define AGORA_ANA_REPLICA_H

#include <event2/buffer.h>

#include "ana.h"

/* The read connections' conninfo: the read DSN with the session settings
 * as startup options (no SET: nothing outlives a transaction behind a
 * transaction pool, which ignores them). Free with free(); NULL: no memory. */
char *replica_read_dsn(const struct agora_conf *c);

struct replica_lag;

struct replica_lag *replica_lag_new(struct ana *a, int every_ms);
void replica_lag_free(struct replica_lag *l);
/* The gauge (absent until measured once). */
void replica_lag_metrics(const struct replica_lag *l, struct evbuffer *b);

#endif
