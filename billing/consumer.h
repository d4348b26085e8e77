/*
 * consumer: moves usage events from the Redis stream `usage` (or its shards,
 * usage_shards > 1: see rds_slot.h) into PostgreSQL.
 * Reads batches through the consumer group `billing` (its own pending
 * entries first, then new ones), writes each batch in ONE statement (events,
 * ledger charges, key usage and daily rollups: one transaction), and XACKs
 * only after the commit. Entries left pending by a consumer that died are
 * taken over with XAUTOCLAIM. Idempotent on the generation id, so a batch
 * written twice (crash between COMMIT and XACK) is billed once.
 */
#ifndef AGORA_CONSUMER_H
#define AGORA_CONSUMER_H

#include <event2/event.h>

#include "pgc.h"
#include "rds.h"

struct consumer;

struct consumer_stats {
	long long batches, events, inserted, duplicates, acked, claimed, pg_errors, bad_entries;
	long long split_entries;	/* entries of several events, one refused: split */
	long long redis_errors;		/* failed reads, XACKs and dead-letter copies */
	long long dead_letters;		/* refused entries copied to `<stream>:dead` */
	long long conflict_retries;	/* batches written again with ON CONFLICT (23505) */
	long long newest_ts_ms;		/* newest committed event's created_at (0: none yet) */
};

/* After each committed batch (for metrics): its entries, events, and the
 * time from sending the statement to its COMMIT, in microseconds. */
typedef void (*consumer_batch_fn)(int entries, long long events, long long commit_us, void *arg);

/* Reads nothing until consumer_set_batch() has given its batch size. */
struct consumer *consumer_new(struct event_base *base, struct pgc *pg, struct rds *rd,
			      const char *name, int shards);
void consumer_free(struct consumer *c);
/* SIGHUP: batch size and claim idle time for the batches to come. */
void consumer_set_batch(struct consumer *c, int batch, int claim_idle_ms, int linger_ms);
/* The stream keys it reads (the shards, and with several the old `usage`). */
int consumer_nshards(const struct consumer *c);
const char *consumer_shard(const struct consumer *c, int i, size_t *len);
/* Call after each Redis (re)connect. */
void consumer_redis_up(struct consumer *c);
void consumer_stats(const struct consumer *c, struct consumer_stats *st);
void consumer_set_batch_cb(struct consumer *c, consumer_batch_fn fn, void *arg);
/* 1 while a batch is between read and ack (for graceful stop). */
int consumer_busy(const struct consumer *c);

/* The statement that writes a batch: $1..$25 the events' columns as
 * binary arrays (evcols.h), run as a prepared statement (parsed once a
 * connection, planned once: a generic plan). A batch of new entries goes
 * first without its ON CONFLICT DO NOTHING, and with it only when that is
 * refused for a conflict (consumer.c, consumer_fast_sql). */
extern const char consumer_sql[];

#endif
