/*
 * rds_slot: where a key lives in a Redis Cluster. slot = CRC16-XMODEM of the
 * key, or of its hash tag (the bytes between the first '{' and the next '}'
 * when that is not empty), mod 16384; and the usage stream's shard keys,
 * chosen so that N shards spread evenly over the slot space.
 */
#ifndef AGORA_RDS_SLOT_H
#define AGORA_RDS_SLOT_H

#include <stddef.h>
#include <stdint.h>

#define RDS_SLOTS 16384
#define RDS_SHARDS_MAX 64
/* A usage stream entry holds one event (field `e`) or several (fields ev,
 * ev, ...: what a router's loop turn finished), at most this many. */
#define RDS_ENTRY_EVENTS_MAX 32

uint16_t rds_crc16(const char *buf, size_t len);
/* The cluster slot of a key (0..16383). */
int rds_slot(const char *key, size_t len);
/* The stream key of shard i of n (n == 1: "usage", as before sharding; else
 * "usage:{<tag>}" whose slot lies in the i-th n-th of the slot space).
 * Returns its length. */
size_t rds_shard_key(int i, int n, char *buf, size_t len);
/* The shard of an account (0..n-1). */
int rds_shard_of(int64_t account_id, int n);

#endif
