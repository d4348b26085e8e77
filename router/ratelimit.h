/*
 * ratelimit: per-key requests and tokens per minute, shared by every router
 * through Redis without a round trip on the hot path. Each router counts in
 * fixed one-minute windows locally and, every sync interval, adds its new
 * counts to Redis (INCRBY rl:{key}:<minute>:r|t, pipelined) and learns the
 * fleet's totals from the replies. A request is refused when the fleet total
 * last seen plus this router's unsynced count reaches the limit. Overshoot is
 * bounded by (routers x sync interval x arrival rate). Without Redis each
 * router still limits on its own counts.
 */
#ifndef AGORA_RATELIMIT_H
#define AGORA_RATELIMIT_H

#include <stdint.h>

#include <event2/event.h>

#include "rds.h"

struct ratelimit;

struct ratelimit *ratelimit_new(struct event_base *base, struct rds *rd, int sync_ms);
void ratelimit_free(struct ratelimit *rl);
/* 0: allowed (and counted). -1: refused; *retry_after gets seconds to wait.
 * rpm/tpm of 0 mean unlimited. */
int ratelimit_take(struct ratelimit *rl, int64_t key_id, int64_t rpm, int64_t tpm, int *retry_after);
/* Counts tokens of a finished generation against its key's minute. */
void ratelimit_tokens(struct ratelimit *rl, int64_t key_id, int64_t tokens);

#endif
