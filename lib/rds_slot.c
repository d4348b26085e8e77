/*
 * rds_slot: Redis Cluster key slots (see rds_slot.h). CRC16 as the cluster
 * specification defines it: XMODEM (poly 0x1021, init 0, no reflection).
 */
#include "rds_slot.h"

#include <stdio.h>
#include <string.h>

uint16_t
rds_crc16(const char *buf, size_t len)
{
	uint16_t crc = 0;

	for (size_t i = 0; i < len; i++) {
		crc ^= (uint16_t)((unsigned char)buf[i] << 8);
		for (int b = 0; b < 8; b++)
			crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
	}
	return crc;
}

int
rds_slot(const char *key, size_t len)
{
	const char *open = memchr(key, '{', len), *close;

	if (open) {
		size_t rest = len - (size_t)(open - key) - 1;

		close = memchr(open + 1, '}', rest);
		if (close && close > open + 1)
			return rds_crc16(open + 1, (size_t)(close - open - 1)) & (RDS_SLOTS - 1);
	}
	return rds_crc16(key, len) & (RDS_SLOTS - 1);
}

size_t
rds_shard_key(int i, int n, char *buf, size_t len)
{
	char tag[16];

	if (n <= 1)
		return (size_t)snprintf(buf, len, "usage");
	/* the first tag "s<i>-<k>" whose slot falls in shard i's share of the
	 * slot space: deterministic, so every router and billing worker agrees */
	for (int k = 0;; k++) {
		int tl = snprintf(tag, sizeof(tag), "s%d-%d", i, k);

		if ((long)rds_crc16(tag, (size_t)tl) % RDS_SLOTS * n / RDS_SLOTS == i)
			break;
	}
	return (size_t)snprintf(buf, len, "usage:{%s}", tag);
}

int
rds_shard_of(int64_t account_id, int n)
{
	uint64_t h = (uint64_t)account_id * 0x9E3779B97F4A7C15ULL;

	return n <= 1 ? 0 : (int)((h >> 32) % (uint64_t)n);
}
