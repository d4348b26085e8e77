/*
 * health: endpoint windows, and the fleet's view through Redis (see
 * health.h).
 */
#include "health.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <openssl/rand.h>

#include "clock.h"
#include "log.h"

/* ---- the window ---- */

void
health_record(struct rcat_health *h, int64_t now, int ok, double ttft_ms, double latency_ms, double tps)
{
	struct rcat_sample *s;

	if (h->win_next < 0 || h->win_next >= RCAT_WINDOW)
		h->win_next = 0;
	s = &h->win[h->win_next];
	h->win_next = (h->win_next + 1) % RCAT_WINDOW;
	s->at_ms = now > 0 ? now : 1;
	s->ok = ok != 0;
	s->ttft_ms = ok && ttft_ms > 0 ? (float)ttft_ms : 0;
	s->latency_ms = ok && latency_ms > 0 ? (float)latency_ms : 0;
	s->tps = ok && tps > 0 ? (float)tps : 0;
}

/* Shell sort (no allocation; n is at most RCAT_WINDOW). */
static void
sort_floats(float *v, int n, int descending)
{
	static const int gaps[] = { 57, 23, 10, 4, 1 };

	for (size_t g = 0; g < sizeof(gaps) / sizeof(gaps[0]); g++) {
		int gap = gaps[g];

		for (int i = gap; i < n; i++) {
			float x = v[i];
			int j = i;

			while (j >= gap && (descending ? v[j - gap] < x : v[j - gap] > x)) {
				v[j] = v[j - gap];
				j -= gap;
			}
			v[j] = x;
		}
	}
}

static double
rank(const float *v, int n, int pct)
{
	int i = (pct * n + 99) / 100 - 1;	/* nearest rank: ceil(p n) - 1 */

	return v[i < 0 ? 0 : i >= n ? n - 1 : i];
}

void
health_percentiles(float *v, int n, int high_is_good, struct health_pct *out)
{
	memset(out, 0, sizeof(*out));
	if (n <= 0)
		return;
	sort_floats(v, n, high_is_good);
	out->p50 = rank(v, n, 50);
	out->p75 = rank(v, n, 75);
	out->p90 = rank(v, n, 90);
	out->p99 = rank(v, n, 99);
}

void
health_stats(const struct rcat_health *h, int64_t now, int64_t span_ms, struct health_stats *st)
{
	float ttft[RCAT_WINDOW], lat[RCAT_WINDOW], tps[RCAT_WINDOW];

	memset(st, 0, sizeof(*st));
	for (int i = 0; i < RCAT_WINDOW; i++) {
		const struct rcat_sample *s = &h->win[i];

		if (s->at_ms == 0 || s->at_ms < now - span_ms)
			continue;
		if (!s->ok) {
			st->failed++;
			continue;
		}
		st->ok++;
		if (s->ttft_ms > 0)
			ttft[st->nttft++] = s->ttft_ms;
		if (s->latency_ms > 0)
			lat[st->nlatency++] = s->latency_ms;
		if (s->tps > 0)
			tps[st->ntps++] = s->tps;
	}
	health_percentiles(ttft, st->nttft, 0, &st->ttft);
	health_percentiles(lat, st->nlatency, 0, &st->latency);
	health_percentiles(tps, st->ntps, 1, &st->tps);
}

/* ---- the fleet ---- */

void
health_entry_own(const struct rcat_health *h, int64_t now, struct health_entry *e)
{
	long long ok = 0;

	for (int i = 0; i < RCAT_WINDOW; i++)
		if (h->win[i].at_ms && h->win[i].ok && h->win[i].at_ms >= now - HEALTH_SPAN_MS)
			ok++;
	e->ttft_ms = ok ? h->ttft_ms : 0;
	e->tps = ok ? h->tps : 0;
	e->samples = ok;
	e->until_ms = h->until_ms > now ? h->until_ms : 0;
	e->updated_ms = now;
}

int
health_entry_format(const struct health_entry *e, char *buf, size_t len)
{
	int n = snprintf(buf, len, "%.1f,%.2f,%lld,%lld,%lld", e->ttft_ms, e->tps, e->samples,
			 (long long)e->until_ms, (long long)e->updated_ms);

	return n < 0 || (size_t)n >= len ? -1 : n;
}

int
health_entry_parse(const char *s, size_t len, struct health_entry *e)
{
	char buf[128], *p, *end;
	double d[2];
	long long n[3];

	if (len == 0 || len >= sizeof(buf))
		return -1;
	memcpy(buf, s, len);
	buf[len] = '\0';
	p = buf;
	for (int i = 0; i < 5; i++) {
		errno = 0;
		if (i < 2)
			d[i] = strtod(p, &end);
		else
			n[i - 2] = strtoll(p, &end, 10);
		if (end == p || errno || (*end != ',' && *end != '\0') || (*end == '\0' && i < 4))
			return -1;
		p = end + (*end == ',');
	}
	if (!(d[0] >= 0 && d[0] < 1e9) || !(d[1] >= 0 && d[1] < 1e9) || n[0] < 0 || n[1] < 0 || n[2] <= 0)
		return -1;			/* NaN fails the comparisons too */
	e->ttft_ms = d[0];
	e->tps = d[1];
	e->samples = n[0];
	e->until_ms = n[1];
	e->updated_ms = n[2];
	return 0;
}

void
health_merge(const struct health_entry *own, const struct health_entry *others, int n, int64_t now,
	     struct health_fleet *out)
{
	double st = 0, wt = 0, sp = 0, wp = 0;
	long long samples = 0, other_samples = 0;

	memset(out, 0, sizeof(*out));
	for (int i = -1; i < n; i++) {
		const struct health_entry *e = i < 0 ? own : &others[i];
		long long w;

		if (!e)
			continue;
		if (i >= 0 && (e->updated_ms < now - HEALTH_FRESH_MS || e->updated_ms > now + HEALTH_FRESH_MS))
			continue;		/* stale, or a clock far off */
		w = e->samples < HEALTH_WEIGHT_CAP ? e->samples : HEALTH_WEIGHT_CAP;
		if (w > 0 && e->ttft_ms > 0) {
			st += (double)w * e->ttft_ms;
			wt += (double)w;
		}
		if (w > 0 && e->tps > 0) {
			sp += (double)w * e->tps;
			wp += (double)w;
		}
		if (w > 0) {
			samples += e->samples;
			if (i >= 0)
				other_samples += e->samples;
		}
		if (i >= 0 && e->until_ms > now) {
			int64_t u = e->until_ms < now + HEALTH_MAX_OPEN_MS ? e->until_ms : now + HEALTH_MAX_OPEN_MS;

			if (u > out->until_ms)
				out->until_ms = u;
		}
		if (w > 0 || e->until_ms > now)
			out->routers++;
	}
	if (other_samples > 0) {	/* only ours: the local values say it all */
		out->ttft_ms = wt > 0 ? st / wt : 0;
		out->tps = wp > 0 ? sp / wp : 0;
		out->samples = samples;
	}
}

void
health_apply(struct rcat_health *h, const struct health_fleet *f, int64_t now)
{
	h->fleet_ttft_ms = f->ttft_ms;
	h->fleet_tps = f->tps;
	h->fleet_samples = f->samples;
	h->fleet_routers = f->routers;
	h->fleet_until_ms = f->until_ms;
	h->fleet_at_ms = now;
}

double
health_ttft_ms(const struct rcat_health *h)
{
	if (h->fleet_samples > 0 && h->fleet_ttft_ms > 0)
		return h->fleet_ttft_ms;
	return h->samples ? h->ttft_ms : 0;
}

double
health_tps(const struct rcat_health *h)
{
	if (h->fleet_samples > 0 && h->fleet_tps > 0)
		return h->fleet_tps;
	return h->samples && h->tps > 0 ? h->tps : 0;
}

/* ---- the sync ---- */

struct health {
	struct rds *rd;
	struct rcat **cat;
	struct event *timer;
	int cursor;			/* next endpoint index of the snapshot */
	int pending;			/* HGETALL replies outstanding */
	char id[20];			/* instance id: 16 hex digits */
};

struct health_reply {
	struct health *hs;
	int64_t ep_id;
};

static size_t
key_of(int64_t ep_id, char *buf, size_t len)
{
	/* {id} hash tag: one endpoint's hash lives in one Redis Cluster slot */
	return (size_t)snprintf(buf, len, "eph:{%lld}", (long long)ep_id);
}

static void
hgetall_cb(struct rds *rd, redisReply *r, void *arg)
{
	struct health_reply *x = arg;
	struct health *hs = x->hs;
	struct health_entry others[HEALTH_MAX_ROUTERS], own;
	struct health_fleet f;
	struct rcat_endpoint *e;
	int64_t now = clock_wall_ms();
	int n = 0, gc = 0;
	char key[48];
	size_t kl;

	hs->pending--;
	if (!r || r->type != REDIS_REPLY_ARRAY || !*hs->cat ||
	    !(e = rcat_endpoint(*hs->cat, x->ep_id))) {
		free(x);
		return;
	}
	kl = key_of(x->ep_id, key, sizeof(key));
	for (size_t i = 0; i + 1 < r->elements; i += 2) {
		const redisReply *k = r->element[i], *v = r->element[i + 1];
		struct health_entry en;

		if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
			continue;
		if (k->len == strlen(hs->id) && memcmp(k->str, hs->id, k->len) == 0)
			continue;		/* ours: the live values are used instead */
		if (health_entry_parse(v->str, v->len, &en) < 0 || en.updated_ms < now - HEALTH_GC_MS) {
			/* a router gone for good (or garbage): tidy up, a few at a time */
			if (gc++ < 16)
				rds_command(rd, key, kl, NULL, NULL, "HDEL %s %b", key, k->str, k->len);
			continue;
		}
		if (n < HEALTH_MAX_ROUTERS)
			others[n++] = en;
	}
	health_entry_own(&e->health, now, &own);
	health_merge(&own, others, n, now, &f);
	health_apply(&e->health, &f, now);
	free(x);
}

static void
sync_endpoint(struct health *hs, const struct rcat_endpoint *e, int64_t now)
{
	struct health_entry own;
	struct health_reply *x;
	char key[48], val[128];
	size_t kl = key_of(e->id, key, sizeof(key));

	health_entry_own(&e->health, now, &own);
	if ((own.samples > 0 || own.until_ms > 0) && health_entry_format(&own, val, sizeof(val)) > 0) {
		rds_command(hs->rd, key, kl, NULL, NULL, "HSET %s %s %s", key, hs->id, val);
		rds_command(hs->rd, key, kl, NULL, NULL, "EXPIRE %s %d", key, HEALTH_KEY_TTL_S);
	}
	if (!(x = malloc(sizeof(*x))))
		return;
	x->hs = hs;
	x->ep_id = e->id;
	if (rds_command(hs->rd, key, kl, hgetall_cb, x, "HGETALL %s", key) < 0) {
		free(x);
		return;
	}
	hs->pending++;
}

static void
sync_cb(evutil_socket_t fd, short what, void *arg)
{
	struct health *hs = arg;
	struct rcat *c = *hs->cat;
	int64_t now = clock_wall_ms();

	(void)fd;
	(void)what;
	if (!c || c->neps == 0)
		return;
	/* What the fleet said long ago no longer speaks for it (Redis away). */
	for (int i = 0; i < c->neps; i++) {
		struct rcat_health *h = &c->eps[i].health;

		if (h->fleet_at_ms && now - h->fleet_at_ms > HEALTH_FRESH_MS) {
			h->fleet_ttft_ms = h->fleet_tps = 0;
			h->fleet_samples = 0;
			h->fleet_routers = 0;
			h->fleet_at_ms = 0;
		}
	}
	if (!rds_is_connected(hs->rd) || hs->pending > 0)
		return;			/* no Redis, or it is still answering the last tick */
	if (hs->cursor >= c->neps)
		hs->cursor = 0;
	for (int k = 0; k < HEALTH_BATCH && k < c->neps; k++) {
		sync_endpoint(hs, &c->eps[hs->cursor], now);
		hs->cursor = (hs->cursor + 1) % c->neps;
	}
}

struct health *
health_new(struct event_base *base, struct rds *rd, struct rcat **cat, int sync_ms)
{
	struct health *hs = calloc(1, sizeof(*hs));
	struct timeval tv = { sync_ms / 1000, (sync_ms % 1000) * 1000 };
	unsigned char rnd[8];

	if (!hs || !(hs->timer = event_new(base, -1, EV_PERSIST, sync_cb, hs))) {
		free(hs);
		return NULL;
	}
	if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
		uint64_t v = (uint64_t)clock_wall_ms() * 0x9E3779B97F4A7C15ULL ^ (uint64_t)getpid();

		memcpy(rnd, &v, sizeof(rnd));
	}
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(hs->id + 2 * i, 3, "%02x", rnd[i]);
	hs->rd = rd;
	hs->cat = cat;
	evtimer_add(hs->timer, &tv);
	log_info("health: instance %s, shared through Redis every %d ms", hs->id, sync_ms);
	return hs;
}

void
health_free(struct health *hs)
{
	if (!hs)
		return;
	event_free(hs->timer);
	free(hs);
}

const char *
health_instance(const struct health *hs)
{
	return hs->id;
}
