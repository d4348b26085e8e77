/*
 * budget: per-account leases of prepaid credits from Redis (see budget.h).
 * A bounded open table of the accounts this router holds a lease for, has
 * requests in flight for, or is asking Redis about; entries in use live on
 * an active list that a timer walks to give idle leases back.
 */
#include "budget.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "clock.h"
#include "log.h"

#define BUDGET_SLOTS 65536		/* accounts tracked at once (power of two) */
#define BUDGET_PROBES 16

enum { H_NONE, H_WAIT, H_HELD, H_FALLBACK, H_UNTRACKED };

struct budget_entry {
	int64_t account_id;		/* 0: free slot */
	int64_t avail;			/* leased here, not reserved: < 0 is a debt */
	int64_t credits, billed;	/* from the latest key lookup */
	int64_t seen;			/* the Redis counter as last seen (-1: never) */
	int64_t last_use_ms;		/* last reservation */
	int64_t touched_ms;		/* last write of ours to the key */
	int inflight;			/* holds reserved or served on the fallback */
	int fetching;			/* a lease request is on its way */
	int lean;			/* little left in Redis: no prefetch */
	int next;			/* active list: next slot, -1: end */
	struct budget_hold *head, *tail;	/* waiting for the lease on its way */
};

struct budget {
	struct rds *rd;
	struct event *timer;
	int64_t lease_nusd;
	int idle_ms;
	struct budget_entry *slots;
	int active_head;		/* -1: empty */
	int nactive;
	int pending;			/* replies awaited (lease requests, give-backs) */
};

struct budget_reply {
	struct budget *b;
	int64_t account_id;
	int64_t asked, min_need, credits;
};

/* Gives the unused part of a lease back (a negative amount adds a debt),
 * only while the counter exists: a counter re-seeded since must not lose
 * what it never held. No arithmetic in Lua: the amount stays a string. */
static const char giveback_lua[] =
	"if redis.call('EXISTS', KEYS[1]) == 1 then "
	"redis.call('DECRBY', KEYS[1], ARGV[1]) redis.call('EXPIRE', KEYS[1], ARGV[2]) end return 0";

/* ---- pure arithmetic ---- */

int64_t
budget_add(int64_t a, int64_t b)
{
	int64_t s;

	if (a < 0)
		a = 0;
	if (b < 0)
		b = 0;
	if (__builtin_add_overflow(a, b, &s) || s > BUDGET_MAX)
		return BUDGET_MAX;
	return s;
}

int64_t
budget_want(int64_t lease_nusd, int64_t need, int64_t room)
{
	int64_t w = lease_nusd;

	if (room < 0)
		room = 0;
	if (room / 2 < w)
		w = room / 2;
	return w > need ? w : need;
}

int64_t
budget_grant(int64_t credits, int64_t value, int64_t asked, int64_t min_need, int64_t *give_back)
{
	int64_t before, room;

	if (__builtin_sub_overflow(value, asked, &before) || __builtin_sub_overflow(credits, before, &room))
		room = -1;	/* a counter that far off: keep nothing */
	if (room >= asked) {
		*give_back = 0;
		return asked;
	}
	if (room > 0 && room >= min_need) {
		*give_back = asked - room;
		return room;
	}
	*give_back = asked;
	return 0;
}

/* ---- the table ---- */

static size_t
key_of(int64_t account_id, char *out, size_t len)
{
	/* {id} hash tag: an account's counter lives in one Redis Cluster slot */
	return (size_t)snprintf(out, len, "budget:{%lld}", (long long)account_id);
}

static struct budget_entry *
entry_find(struct budget *b, int64_t account_id, int create)
{
	uint64_t h = (uint64_t)account_id * 0x9E3779B97F4A7C15ULL;
	struct budget_entry *e, *free_e = NULL;
	size_t free_i = 0;

	for (int i = 0; i < BUDGET_PROBES; i++) {
		size_t at = (size_t)((h + (uint64_t)i) & (BUDGET_SLOTS - 1));

		e = &b->slots[at];
		if (e->account_id == account_id)
			return e;
		if (e->account_id == 0 && !free_e) {
			free_e = e;
			free_i = at;
		}
	}
	if (!create || !free_e)
		return NULL;	/* a crowded neighbourhood: the caller falls back */
	memset(free_e, 0, sizeof(*free_e));
	free_e->account_id = account_id;
	free_e->seen = -1;
	free_e->next = b->active_head;
	b->active_head = (int)free_i;
	b->nactive++;
	return free_e;
}

/* What the account has left in Redis, as far as this router knows. */
static int64_t
entry_room(const struct budget_entry *e)
{
	return e->seen >= 0 ? e->credits - e->seen : e->credits - e->billed;
}

static void fetch_cb(struct rds *rd, redisReply *r, void *arg);

/* Asks Redis for a lease: SET NX seeds a missing counter with the billed
 * usage, INCRBY takes, EXPIRE keeps it; one round trip. */
static int
fetch(struct budget *b, struct budget_entry *e, int64_t min_need, int64_t need_all)
{
	struct budget_reply *x;
	int64_t want = budget_want(b->lease_nusd, need_all, entry_room(e));
	char key[64];
	size_t kl;

	if (!rds_is_connected(b->rd) || want <= 0 || !(x = malloc(sizeof(*x))))
		return -1;
	x->b = b;
	x->account_id = e->account_id;
	x->asked = want;
	x->min_need = min_need;
	x->credits = e->credits;
	kl = key_of(e->account_id, key, sizeof(key));
	/* one key: the three go to one node, in order (a redirect keeps it) */
	if (rds_command(b->rd, key, kl, NULL, NULL, "SET %s %lld NX EX %d", key,
			(long long)(e->billed > 0 ? e->billed : 0), BUDGET_KEY_TTL_S) < 0 ||
	    rds_command(b->rd, key, kl, fetch_cb, x, "INCRBY %s %lld", key, (long long)want) < 0) {
		free(x);
		return -1;
	}
	rds_command(b->rd, key, kl, NULL, NULL, "EXPIRE %s %d", key, BUDGET_KEY_TTL_S);
	e->fetching = 1;
	e->touched_ms = clock_loop_ms();
	b->pending++;
	return 0;
}

static void
maybe_prefetch(struct budget *b, struct budget_entry *e)
{
	if (!e->fetching && !e->lean && e->avail < b->lease_nusd / 2)
		fetch(b, e, 0, 0);
}

/* Moves the waiting holds the lease now covers, in order, to *served. */
static void
serve_waiting(struct budget_entry *e, struct budget_hold **served)
{
	struct budget_hold **tail = served;

	while (e->head && e->head->amount <= e->avail) {
		struct budget_hold *h = e->head;

		e->head = h->next;
		if (!e->head)
			e->tail = NULL;
		e->avail -= h->amount;
		e->inflight++;
		h->state = H_HELD;
		h->next = NULL;
		*tail = h;
		tail = &h->next;
	}
}

/* Moves the waiting holds that neither the lease nor what Redis has left
 * (room) can cover to *refused. */
static void
refuse_waiting(struct budget_entry *e, int64_t room, struct budget_hold **refused)
{
	struct budget_hold **pp = &e->head, *h, **tail = refused;
	int64_t can = e->avail + (room > 0 ? room : 0);

	e->tail = NULL;
	while ((h = *pp)) {
		if (h->amount > can) {
			*pp = h->next;
			h->state = H_NONE;
			h->next = NULL;
			*tail = h;
			tail = &h->next;
		} else {
			e->tail = h;
			pp = &h->next;
		}
	}
}

/* Every waiting hold falls back to the cached balance. */
static void
fallback_waiting(struct budget_entry *e, struct budget_hold **out)
{
	struct budget_hold *h;

	*out = e->head;
	for (h = e->head; h; h = h->next) {
		h->state = H_FALLBACK;
		e->inflight++;
	}
	e->head = e->tail = NULL;
}

static void
call_all(struct budget_hold *list, enum budget_result r, int64_t available)
{
	struct budget_hold *h;

	while ((h = list)) {
		list = h->next;
		h->next = NULL;
		h->fn(h, r, available, h->arg);
	}
}

static void
fetch_cb(struct rds *rd, redisReply *r, void *arg)
{
	struct budget_reply *x = arg;
	struct budget *b = x->b;
	struct budget_entry *e = entry_find(b, x->account_id, 0);
	struct budget_hold *served = NULL, *refused = NULL, *fell = NULL;
	int64_t give = 0, got = 0, room = 0;
	char key[64];
	size_t kl;

	b->pending--;
	kl = key_of(x->account_id, key, sizeof(key));
	if (!e) {	/* cannot happen: a lease request keeps its entry */
		if (r && r->type == REDIS_REPLY_INTEGER)
			rds_command(rd, key, kl, NULL, NULL, "DECRBY %s %lld", key, (long long)x->asked);
		free(x);
		return;
	}
	if (r && r->type == REDIS_REPLY_INTEGER) {
		got = budget_grant(x->credits, r->integer, x->asked, x->min_need, &give);
		if (give > 0 && rds_command(rd, key, kl, NULL, NULL, "DECRBY %s %lld", key, (long long)give) < 0)
			log_warn("budget: account %lld: %lld nusd could not be given back", (long long)x->account_id,
				 (long long)give);
		e->seen = r->integer - give;
		e->avail += got;
		room = x->credits - e->seen;
		e->lean = room < b->lease_nusd;
	} else {
		if (r && r->type == REDIS_REPLY_ERROR)
			log_warn("budget: account %lld: %s", (long long)x->account_id, r->str);
		r = NULL;	/* lost or failed: if it was applied, the lease stays counted */
	}
	if (r) {
		serve_waiting(e, &served);
		/* Nothing granted: Redis has less than the first waiting request
		 * lacks. Refuse what cannot fit, unless the credits changed since
		 * the question was asked (then ask again). */
		if (e->head && got == 0 && x->credits >= e->credits)
			refuse_waiting(e, room, &refused);
		e->fetching = 0;
		if (e->head) {
			int64_t all = 0;

			for (struct budget_hold *h = e->head; h; h = h->next)
				all = budget_add(all, h->amount);
			if (fetch(b, e, e->head->amount - e->avail, all - e->avail) < 0)
				fallback_waiting(e, &fell);
		} else {
			maybe_prefetch(b, e);
		}
	} else {
		e->fetching = 0;
		fallback_waiting(e, &fell);
	}
	room = e->avail + (room > 0 ? room : 0);
	free(x);
	call_all(served, BUDGET_OK, 0);
	call_all(refused, BUDGET_REFUSED, room > 0 ? room : 0);
	call_all(fell, BUDGET_FALLBACK, 0);
}

enum budget_result
budget_reserve(struct budget *b, struct budget_hold *h, int64_t account_id, int64_t credits, int64_t billed,
	       int64_t amount, budget_fn fn, void *arg, int64_t *available)
{
	struct budget_entry *e = entry_find(b, account_id, 1);

	*available = 0;
	memset(h, 0, sizeof(*h));
	h->account_id = account_id;
	h->amount = amount < 0 ? 0 : amount > BUDGET_MAX ? BUDGET_MAX : amount;
	h->fn = fn;
	h->arg = arg;
	if (!e) {
		h->state = H_UNTRACKED;	/* no entry: its cost is not tracked */
		return BUDGET_FALLBACK;
	}
	if (credits > e->credits)
		e->lean = 0;	/* a top-up: prefetching may pay again */
	e->credits = credits;
	e->billed = billed;
	e->last_use_ms = clock_loop_ms();
	if (!e->head && e->avail >= h->amount) {
		e->avail -= h->amount;
		e->inflight++;
		h->state = H_HELD;
		maybe_prefetch(b, e);
		return BUDGET_OK;
	}
	/* Waiting requests exist only while a lease request is on its way. */
	if (!e->fetching && fetch(b, e, h->amount - e->avail, h->amount - e->avail) < 0) {
		e->inflight++;
		h->state = H_FALLBACK;
		return BUDGET_FALLBACK;
	}
	h->state = H_WAIT;
	if (e->tail)
		e->tail->next = h;
	else
		e->head = h;
	e->tail = h;
	return BUDGET_WAIT;
}

void
budget_done(struct budget *b, struct budget_hold *h, int64_t cost)
{
	struct budget_entry *e;

	if (h->state == H_NONE || h->state == H_UNTRACKED || !(e = entry_find(b, h->account_id, 0))) {
		h->state = H_NONE;
		return;
	}
	if (cost < 0)
		cost = 0;
	if (h->state == H_WAIT) {
		struct budget_hold **pp = &e->head, *prev = NULL;

		for (; *pp; prev = *pp, pp = &(*pp)->next) {
			if (*pp == h) {
				*pp = h->next;
				if (e->tail == h)
					e->tail = prev;
				break;
			}
		}
		h->next = NULL;
	} else if (h->state == H_HELD) {
		e->inflight--;
		e->avail += h->amount - cost;	/* spent more than reserved: a debt */
	} else {			/* H_FALLBACK: still counted when Redis returns */
		e->inflight--;
		e->avail -= cost;
	}
	h->state = H_NONE;
}

/* ---- giving idle leases back ---- */

static void
given_back_cb(struct rds *rd, redisReply *reply, void *arg)
{
	struct budget *b = arg;

	(void)rd;
	(void)reply;
	b->pending--;
}

static void
give_back(struct budget *b, struct budget_entry *e, int64_t now)
{
	char key[64], amount[24], ttl[16];
	size_t kl = key_of(e->account_id, key, sizeof(key));

	snprintf(amount, sizeof(amount), "%lld", (long long)e->avail);
	snprintf(ttl, sizeof(ttl), "%d", BUDGET_KEY_TTL_S);
	/* KEYS: the one counter (single slot); -1 while Redis is away: the
	 * lease is kept (and usable) until Redis returns */
	if (rds_command(b->rd, key, kl, given_back_cb, b, "EVAL %s 1 %s %s %s", giveback_lua, key, amount, ttl) < 0)
		return;
	b->pending++;
	/* A reply lost on the way is taken as applied: at worst the lease
	 * stays counted, which makes the account spend less, never more. */
	e->avail = 0;
	e->touched_ms = now;
}

static void
sweep_cb(evutil_socket_t fd, short what, void *arg)
{
	struct budget *b = arg;
	int64_t now = clock_wall_ms();
	int *pp = &b->active_head;

	(void)fd;
	(void)what;
	while (*pp >= 0) {
		struct budget_entry *e = &b->slots[*pp];
		int idle = now - e->last_use_ms >= b->idle_ms;

		if (!e->fetching && !e->head) {
			if (idle && e->avail != 0) {
				give_back(b, e, now);
			} else if ((e->avail != 0 || e->inflight) && now - e->touched_ms >= BUDGET_REFRESH_MS) {
				char key[64];
				size_t kl = key_of(e->account_id, key, sizeof(key));

				if (rds_command(b->rd, key, kl, NULL, NULL, "EXPIRE %s %d", key, BUDGET_KEY_TTL_S) == 0)
					e->touched_ms = now;
			}
			if (idle && e->avail == 0 && e->inflight == 0) {
				int next = e->next;

				memset(e, 0, sizeof(*e));
				*pp = next;
				b->nactive--;
				continue;
			}
		}
		pp = &e->next;
	}
}

int
budget_flush(struct budget *b)
{
	int64_t now = clock_wall_ms();

	for (int i = b->active_head; i >= 0; i = b->slots[i].next) {
		struct budget_entry *e = &b->slots[i];

		if (!e->fetching && !e->head && e->avail != 0)
			give_back(b, e, now);
	}
	return b->pending;
}

struct budget *
budget_new(struct event_base *base, struct rds *rd, int64_t lease_nusd, int idle_ms)
{
	struct budget *b = calloc(1, sizeof(*b));
	int tick = idle_ms / 4;
	struct timeval tv;

	if (tick < 10)
		tick = 10;
	if (tick > 1000)
		tick = 1000;
	tv.tv_sec = tick / 1000;
	tv.tv_usec = (tick % 1000) * 1000;
	if (!b || !(b->slots = calloc(BUDGET_SLOTS, sizeof(*b->slots))) ||
	    !(b->timer = event_new(base, -1, EV_PERSIST, sweep_cb, b))) {
		if (b)
			free(b->slots);
		free(b);
		return NULL;
	}
	b->rd = rd;
	b->lease_nusd = lease_nusd;
	b->idle_ms = idle_ms;
	b->active_head = -1;
	evtimer_add(b->timer, &tv);
	return b;
}

void
budget_free(struct budget *b)
{
	if (!b)
		return;
	event_free(b->timer);
	free(b->slots);
	free(b);
}
