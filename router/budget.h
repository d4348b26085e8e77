/*
 * budget: prepaid credits shared by every router through Redis leases, with
 * no round trip on the hot path.
 *
 * Redis holds, per account, the account's committed spend in nano-USD:
 *
 *   budget:{<account id>}   integer, EXPIRE 1 day (refreshed while in use)
 *     = metered costs of generations served under leases
 *     + the leases routers currently hold, not yet spent nor given back
 *
 * The account's total credits (top-ups, adjustments, refunds: balance +
 * billed usage) come from the key lookup (auth.h). A router takes a lease
 * of L nusd with one pipelined round trip (SET NX seeds a missing key with
 * the billed usage from PostgreSQL, then INCRBY L, EXPIRE); when the new
 * total passes the credits it keeps what was left if that covers the
 * request that asked, gives the rest back (DECRBY) and otherwise refuses.
 * Integer Redis commands only: no Lua number (a double) touches money.
 *
 * Requests reserve their worst case from the local lease with no round
 * trip; when a generation ends its unused reservation returns to the lease
 * (a generation that cost more than reserved leaves a debt on it). Leases
 * unused for idle_ms go back to Redis (DECRBY the unused part, or add the
 * debt). Only the first request of an account on a router, or one its
 * lease cannot cover, waits for Redis; a new lease is prefetched when the
 * local one falls below half of lease_nusd, unless the account is close to
 * its credits (then leases shrink to half of what is left, so that other
 * routers keep a share). Requests that queue behind a lease request are
 * answered in order when it comes back.
 *
 * When Redis is away (or the table is full) the caller falls back to the
 * cached balance; the cost of what it serves then is still added to the
 * account's counter when Redis returns. README "Credits" states the
 * overspend bound.
 */
#ifndef AGORA_BUDGET_H
#define AGORA_BUDGET_H

#include <stdint.h>

#include <event2/event.h>

#include "rds.h"

#define BUDGET_KEY_TTL_S 86400		/* a counter nobody touched for a day is re-seeded */
#define BUDGET_REFRESH_MS 600000	/* held leases refresh their key's TTL this often */

struct budget;

enum budget_result {
	BUDGET_OK,		/* reserved (now, or when fn is called) */
	BUDGET_WAIT,		/* a lease is on its way: fn will be called */
	BUDGET_REFUSED,		/* the credits cannot cover it: answer 402 */
	BUDGET_FALLBACK,	/* Redis is away: check the cached balance */
};

struct budget_hold;
/* The outcome of a reservation that waited (never BUDGET_WAIT). available:
 * what the account could still reserve when refused. */
typedef void (*budget_fn)(struct budget_hold *h, enum budget_result r, int64_t available, void *arg);

/* One request's reservation, owned by the caller (zeroed before use). */
struct budget_hold {
	int64_t account_id;
	int64_t amount;			/* reserved */
	int state;			/* internal */
	struct budget_hold *next;	/* waiting queue */
	budget_fn fn;
	void *arg;
};

struct budget *budget_new(struct event_base *base, struct rds *rd, int64_t lease_nusd, int idle_ms);
/* After rds_free: replies still pending refer to it. */
void budget_free(struct budget *b);
/* Gives every lease back now (a router stopping). Returns how many Redis
 * replies are still awaited: call again until 0 before leaving the loop. */
int budget_flush(struct budget *b);

/* Reserves amount nusd of the account's credits for one request. credits:
 * the account's total credits, billed: its usage billed so far (both from
 * the key lookup). BUDGET_OK / BUDGET_REFUSED / BUDGET_FALLBACK answer now
 * (fn is not called); BUDGET_WAIT calls fn later, never from within this
 * call. *available gets what the account can still reserve when refused. */
enum budget_result budget_reserve(struct budget *b, struct budget_hold *h, int64_t account_id,
				  int64_t credits, int64_t billed, int64_t amount,
				  budget_fn fn, void *arg, int64_t *available);
/* The request ended having cost `cost` (0 if nothing was served): returns
 * the unused reservation to the lease, or leaves the queue (fn is then
 * never called). Harmless on a hold never reserved, and twice. */
void budget_done(struct budget *b, struct budget_hold *h, int64_t cost);

/* ---- the lease arithmetic (pure, exposed for tests) ---- */

/* How much to ask Redis for: at least need (what the waiting requests lack),
 * else lease_nusd, but no more than half of what the account has left
 * (room; < 0: unknown), so that near the end other routers keep a share. */
int64_t budget_want(int64_t lease_nusd, int64_t need, int64_t room);
/* After INCRBY asked returned value: the part of the lease kept (0: none)
 * and *give_back, what must be given back at once. min_need: the least
 * worth keeping (what the first waiting request lacks; 0 for a prefetch). */
int64_t budget_grant(int64_t credits, int64_t value, int64_t asked, int64_t min_need, int64_t *give_back);
/* a + b, saturating at BUDGET_MAX (amounts are never negative here). */
int64_t budget_add(int64_t a, int64_t b);
#define BUDGET_MAX (INT64_MAX / 4)

#endif
