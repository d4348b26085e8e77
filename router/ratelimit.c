/*
 * ratelimit: local windows synced to Redis (see ratelimit.h). A bounded
 * open table of keys seen in the current or previous minute.
 */
#include "ratelimit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "clock.h"

#define RL_SLOTS 65536			/* keys tracked at once (power of two) */

struct rl_entry {
	int64_t key_id;			/* 0: free slot */
	int64_t minute;			/* window (unix minutes) */
	int64_t seen_req, seen_tok;	/* fleet totals last learnt from Redis */
	int64_t new_req, new_tok;	/* ours, not yet sent */
	int64_t sent_req, sent_tok;	/* ours, sent, reply pending */
	int listed;			/* its index is in `active` */
};

struct ratelimit {
	struct rds *rd;
	struct event *timer;
	struct rl_entry *slots;
	uint32_t *active;		/* indices of slots in use: what a sync visits */
	int nactive;
};

struct rl_reply {
	struct ratelimit *rl;
	int64_t key_id, minute;
	int tokens;			/* 0: requests counter, 1: tokens counter */
	int64_t delta;
};

static int64_t
now_minute(int *secs_left)
{
	int64_t sec = clock_loop_ms() / 1000;

	if (secs_left)
		*secs_left = 60 - (int)(sec % 60);
	return sec / 60;
}

/* The entry of a key for this minute (reset when the minute changed); with
 * create = 0, only an existing one. */
static struct rl_entry *
entry(struct ratelimit *rl, int64_t key_id, int64_t minute, int create)
{
	uint64_t h = (uint64_t)key_id * 0x9E3779B97F4A7C15ULL;

	for (int i = 0; i < 16; i++) {
		struct rl_entry *e = &rl->slots[(h + (uint64_t)i) & (RL_SLOTS - 1)];

		if (!create && e->key_id != key_id)
			continue;
		if (e->key_id == key_id || e->key_id == 0 || e->minute < minute - 1) {
			if (e->key_id != key_id || e->minute != minute) {
				int listed = e->listed;

				memset(e, 0, sizeof(*e));
				e->key_id = key_id;
				e->minute = minute;
				e->listed = listed;
				if (!listed && rl->nactive < RL_SLOTS) {
					e->listed = 1;
					rl->active[rl->nactive++] = (uint32_t)(e - rl->slots);
				}
			}
			return e;
		}
	}
	return NULL;	/* a crowded neighbourhood: do not limit rather than fail */
}

int
ratelimit_take(struct ratelimit *rl, int64_t key_id, int64_t rpm, int64_t tpm, int *retry_after)
{
	int left;
	int64_t minute = now_minute(&left);
	struct rl_entry *e;

	if ((rpm <= 0 && tpm <= 0) || !(e = entry(rl, key_id, minute, 1)))
		return 0;
	if ((rpm > 0 && e->seen_req + e->sent_req + e->new_req >= rpm) ||
	    (tpm > 0 && e->seen_tok + e->sent_tok + e->new_tok >= tpm)) {
		*retry_after = left;
		return -1;
	}
	e->new_req++;
	return 0;
}

void
ratelimit_tokens(struct ratelimit *rl, int64_t key_id, int64_t tokens)
{
	struct rl_entry *e = entry(rl, key_id, now_minute(NULL), 0);

	if (e && tokens > 0)
		e->new_tok += tokens;
}

static void
reply_cb(struct rds *rd, redisReply *r, void *arg)
{
	struct rl_reply *x = arg;
	struct rl_entry *e = entry(x->rl, x->key_id, now_minute(NULL), 0);

	(void)rd;
	if (e && e->minute == x->minute) {
		if (x->tokens)
			e->sent_tok -= x->delta;
		else
			e->sent_req -= x->delta;
		if (r && r->type == REDIS_REPLY_INTEGER) {
			/* the fleet's total now includes our delta */
			if (x->tokens)
				e->seen_tok = r->integer;
			else
				e->seen_req = r->integer;
		} else if (x->tokens) {
			e->new_tok += x->delta;	/* not counted remotely: keep it local */
		} else {
			e->new_req += x->delta;
		}
	}
	free(x);
}

static void
send_delta(struct ratelimit *rl, struct rl_entry *e, int tokens)
{
	int64_t *nw = tokens ? &e->new_tok : &e->new_req, *sent = tokens ? &e->sent_tok : &e->sent_req;
	struct rl_reply *x;
	char key[96];
	size_t kl;

	/* Nothing new: still read the fleet's count (INCRBY 0), unless a reply
	 * is on its way anyway. */
	if ((*nw == 0 && *sent != 0) || !(x = malloc(sizeof(*x))))
		return;
	x->rl = rl;
	x->key_id = e->key_id;
	x->minute = e->minute;
	x->tokens = tokens;
	x->delta = *nw;
	/* {key} hash tag: one key's counters live in one Redis Cluster slot */
	kl = (size_t)snprintf(key, sizeof(key), "rl:{%lld}:%lld:%c", (long long)e->key_id, (long long)e->minute,
			      tokens ? 't' : 'r');
	if (rds_command(rl->rd, key, kl, reply_cb, x, "INCRBY %s %lld", key, (long long)x->delta) < 0) {
		free(x);
		return;
	}
	rds_command(rl->rd, key, kl, NULL, NULL, "EXPIRE %s 180", key);
	*sent += *nw;
	*nw = 0;
}

static void
sync_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ratelimit *rl = arg;
	int64_t minute = now_minute(NULL);

	(void)fd;
	(void)what;
	if (!rds_is_connected(rl->rd))
		return;
	/* Only the slots in use (a scan of all RL_SLOTS, 4 MiB, five times a
	 * second showed in profiles); slots of past minutes leave the list. */
	for (int i = 0; i < rl->nactive;) {
		struct rl_entry *e = &rl->slots[rl->active[i]];

		if (e->key_id == 0 || e->minute < minute - 1) {
			e->listed = 0;
			rl->active[i] = rl->active[--rl->nactive];
			continue;
		}
		i++;
		if (e->minute != minute)
			continue;
		send_delta(rl, e, 0);
		send_delta(rl, e, 1);
	}
}

struct ratelimit *
ratelimit_new(struct event_base *base, struct rds *rd, int sync_ms)
{
	struct ratelimit *rl = calloc(1, sizeof(*rl));
	struct timeval tv = { sync_ms / 1000, (sync_ms % 1000) * 1000 };

	if (!rl || !(rl->slots = calloc(RL_SLOTS, sizeof(*rl->slots))) ||
	    !(rl->active = calloc(RL_SLOTS, sizeof(*rl->active))) ||
	    !(rl->timer = event_new(base, -1, EV_PERSIST, sync_cb, rl))) {
		if (rl) {
			free(rl->slots);
			free(rl->active);
		}
		free(rl);
		return NULL;
	}
	rl->rd = rd;
	evtimer_add(rl->timer, &tv);
	return rl;
}

void
ratelimit_free(struct ratelimit *rl)
{
	if (!rl)
		return;
	event_free(rl->timer);
	free(rl->slots);
	free(rl->active);
	free(rl);
}
