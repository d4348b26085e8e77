/*
 * consumer: the billing loop (see consumer.h).
 *
 *   CLAIM (every claim_idle_ms, each shard) ─┐
 *   READ_PENDING ("0", each shard) ──────────┼─entries─▶ WRITE (one statement) ─commit─▶ ACK ─▶ next
 *   READ_NEW (">", shards in turn) ──────────┘   none: READ_PENDING → READ_NEW
 *
 * With usage_shards > 1 the shards' streams (and the old `usage`, so that
 * nothing queued before the change is stranded) are read one at a time, in
 * turn: in Redis Cluster a multi-stream XREADGROUP would span slots. A read
 * blocks (BLOCK) only when every other shard was found empty, so a quiet
 * shard never holds up a busy one. One batch is written at a time; the next
 * one is read ahead (from the next shard) while PostgreSQL works.
 *
 * A failed write leaves the batch pending; after a pause the consumer reads
 * its pending entries of every shard again, so nothing is skipped and
 * nothing is acked early.
 */
#include "consumer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <hiredis/hiredis.h>

#include "clock.h"
#include "evcols.h"
#include "log.h"
#include "loop.h"
#include "rds_slot.h"

#define GROUP "billing"
#define RETRY_MS 1000
#define BLOCK_ONE_MS "1000"		/* one stream: as before sharding */
#define BLOCK_MANY_MS "100"		/* several: the others wait at most this */
#define BLOCK_DRAIN_MS "20"		/* while a burst is trimmed: its commands wait behind a read */
#define KEY_LEN 40
#define RDS_ID_LEN 48			/* "<ms>-<seq>" */
#define TRIM_MS 1000			/* a shard is trimmed at most this often */
#define TRIM_AGAIN_MS 20		/* but again this soon while calls remove entries */
#define LINGER_MIN 32			/* batches this big: the flow is heavy */
#define DEAD_SUFFIX ":dead"		/* the dead-letter stream: "<stream>:dead" */
#define DEAD_MAXLEN "10000"		/* entries it keeps (about: MAXLEN ~) */
#define DEAD_WHY_LEN 240		/* a dead letter's reason, cut to this */
#define DEAD_HEAD 12			/* XADD's arguments before the entry's fields */

enum consumer_phase { CP_DOWN, CP_READ, CP_WRITE, CP_ACK, CP_PAUSE, CP_LINGER };

/* An entry of a batch that billing refused, with why (a literal). */
struct refused {
	char id[RDS_ID_LEN];
	const char *why;
};

/* A batch ready to write: its shard, stream ids and events as columns,
 * and the entries it refused, dead-lettered when it is sent (a read-ahead
 * batch dropped by a pause is read again: no second copy). */
struct batch {
	int shard;
	char **ids;
	int nids;
	long long events;
	struct evcols *cols;
	struct refused *refused;
	int nrefused;
	char *sample;			/* one event of it, as read (JSON) */
	int claimed;			/* taken over from a stopped consumer */
};

struct shard {
	struct consumer *c;
	char key[KEY_LEN];
	size_t len;
	int pending_mode;		/* re-reading our own pending entries */
	/* where the next pending read starts: "0", then past the last entry
	 * read, so that an entry left pending on purpose (its dead-letter copy
	 * failed) cannot hold the shard in pending mode for good */
	char pending_from[RDS_ID_LEN];
	/* Trimming: entries below both the newest one we acknowledged and the
	 * group's oldest pending one are billed (acknowledged, by someone) and
	 * go; nothing undelivered is that old. Without it the stream, and
	 * Redis's memory, grew with every event ever metered. */
	char acked_max[RDS_ID_LEN];	/* newest entry we acknowledged ("" none) */
	char trimmed_at[RDS_ID_LEN];	/* acked_max when the last trim was asked */
	int64_t trimmed_ms;		/* last trim asked (monotonic) */
	int trimming;			/* its XPENDING or XTRIM awaits the answer */
	char trim_min[RDS_ID_LEN];	/* the XTRIM's MINID (trim_pending_cb) */
	int draining;			/* that XTRIM removed some: sent again (trim_cb) */
	int booted;			/* its XINFO GROUPS sent (boot_info_cb) */
};

struct consumer {
	struct event_base *base;
	struct pgc *pg;
	struct rds *rd;
	char name[128];
	int batch, claim_idle_ms;
	enum consumer_phase phase;
	struct shard shards[RDS_SHARDS_MAX + 1];
	int nshards;
	int cur;			/* shard of the batch written and acked */
	int reading;			/* shard of the read on its way */
	int rr;				/* next shard to read new entries from */
	int empty_run;			/* new-entry reads in a row that found nothing */
	int claim_due, claim_left;
	int groups_left, groups_failed;	/* XGROUP CREATE replies awaited, failed */
	int prefetching, prefetch_stale, ack_waiting;
	char **ids;			/* the batch's stream ids, for XACK */
	int nids;
	int validate;			/* the last batch was refused: check each entry */
	/* A batch refused again once validated: its entries, re-read from
	 * "0", are written one at a time. When one is refused alone, billing
	 * asks PostgreSQL whether it takes an event it billed before (a
	 * probe: that event under a new id, in a transaction rolled back).
	 * Taken: the fault is the entry's, which goes to the dead-letter
	 * stream with PostgreSQL's reason. Refused too: the fault is
	 * PostgreSQL's (a schema changed under billing), nothing is set apart,
	 * and billing stalls and retries as for any other failure. Before,
	 * such a batch (a time before 4713 BC, an id too long for the index)
	 * was refused for good and its shard stalled. */
	int isolate;
	char *good;			/* an event of the last committed batch (JSON) */
	char *sample;			/* one of the batch being written */
	char probe_id[RDS_ID_LEN];	/* the entry refused alone, while probing */
	char probe_why[DEAD_WHY_LEN];
	int refusing_all;		/* the probe was refused: said once */
	unsigned probes;
	struct batch next;		/* read ahead while the current one is written */
	struct evcols *spare[2];	/* columns of batches done, for the next ones */
	struct event *timer;		/* pause after errors */
	struct event *linger;		/* a small batch: the next read waits */
	struct event *trim_timer;	/* trims what a burst left, TRIM_MS later */
	int last_events;		/* events of the last batch sent */
	int rate_events, rate_entries;	/* of the last batch with entries: read_count's ratio */
	/* A batch of LINGER_MIN events or more, but fewer than half `batch`,
	 * means a heavy flow read faster than it comes: the next read waits
	 * until linger_ms after that batch's statement was sent, so the flow
	 * is billed in batches of hundreds rather than dozens. Each
	 * transaction costs PostgreSQL a plan of the whole statement: at
	 * 14,000 events/s, batches of 40 spent more CPU on that than on the
	 * rows (README "Performance"). A light flow (smaller batches) is
	 * billed at once: there the overhead is cheap, and a burst of work
	 * every linger_ms showed up in single-connection latency instead.
	 * Billing lags up to linger_ms more a shard read in turn for it. */
	int linger_ms;
	struct event *claim_timer;
	struct consumer_stats st;
	int64_t t_write_us;		/* the batch's statement sent (monotonic) */
	/* The batch's columns while consumer_fast_sql writes it, to write it
	 * again with consumer_sql if it is refused for a conflict. */
	struct evcols *fast_cols;
	int dup_last;			/* the last batch committed had duplicates */
	consumer_batch_fn batch_fn;
	void *batch_arg;
};

/* The statement's data-modifying parts (CTEs), then what it answers.
 * conflict: what the events' INSERT does with a generation billed before
 * (see consumer_fast_sql). */
#define CONSUMER_WITH(conflict) \
	"WITH ev AS ("	/* the batch's columns (evcols.h), in enum evcol order */ \
	" SELECT x.*, timestamptz 'epoch' + x.ts * interval '1 millisecond' AS at" \
	" FROM unnest($1::text[], $2::int8[], $3::int8[], $4::int8[], $5::text[], $6::text[], $7::text[]," \
	"  $8::text[], $9::text[], $10::int8[], $11::int8[], $12::int8[], $13::int8[], $14::int8[], $15::int8[]," \
	"  $16::int8[], $17::int4[], $18::int4[], $19::int8[], $20::bool[], $21::bool[], $22::int4[], $23::int4[]," \
	"  $24::text[], $25::text[])" \
	"  AS x(id, ts, account, key, app_url, app_title, model, author, provider, endpoint, pt, ct, cached," \
	"  reasoning, cost, pcost, latency_ms, ttft_ms, tps_milli, stream, estimated, status, attempts, finish, tried)" \
	"), ins AS (" \
	" INSERT INTO usage_events (generation_id, created_at, account_id, key_id, app_url, app_title," \
	"  model_id, model_author, provider_id, endpoint_id, prompt_tokens, completion_tokens," \
	"  cached_tokens, reasoning_tokens, cost_nusd, provider_cost_nusd, latency_ms, ttft_ms," \
	"  tps_milli, streamed, estimated, status, attempts, finish_reason, provider_responses)" \
	" SELECT id, at, account, key, app_url, app_title, model, author, provider, endpoint, pt, ct," \
	"  coalesce(cached, 0), coalesce(reasoning, 0), cost, pcost, latency_ms, ttft_ms, tps_milli," \
	"  stream, estimated, status, attempts, finish, tried::jsonb FROM ev" \
	conflict \
	" RETURNING generation_id, created_at, account_id, key_id, model_id, model_author, provider_id," \
	"  coalesce(app_title, app_url, '') AS app, prompt_tokens, completion_tokens, cost_nusd," \
	"  provider_cost_nusd, endpoint_id, status, streamed, latency_ms, ttft_ms, tps_milli," \
	"  reasoning_tokens, provider_responses" \
	"), g AS ("	/* the batch's new events summed once, at the finest grain of every rollup */ \
	" SELECT date_trunc('hour', created_at) AS hour, (created_at AT TIME ZONE 'UTC')::date AS day, account_id," \
	"  key_id, model_id, model_author, provider_id, endpoint_id, app, count(*) AS n," \
	"  count(*) FILTER (WHERE status <> 200) AS failures, count(*) FILTER (WHERE streamed) AS streamed," \
	"  sum(prompt_tokens) AS pt, sum(completion_tokens) AS ct, sum(reasoning_tokens) AS rt, sum(cost_nusd) AS cost," \
	"  sum(provider_cost_nusd) AS pcost, sum(latency_ms) AS lat, sum(ttft_ms) AS ttft, sum(tps_milli) AS tps," \
	"  max(created_at) AS last" \
	" FROM ins GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9" \
	"), led AS (" \
	" INSERT INTO ledger (account_id, kind, amount_nusd, provider_cost_nusd, generations, note, created_at)" \
	" SELECT account_id, 'usage', -sum(cost), sum(pcost), sum(n)," \
	"  'usage: ' || sum(n) || ' generations of ' || day, max(last)" \
	" FROM g GROUP BY account_id, day RETURNING generations" \
	"), k AS (" \
	" UPDATE api_keys SET usage_nusd = usage_nusd + s.c" \
	" FROM (SELECT key_id, sum(cost) AS c FROM g GROUP BY key_id) s" \
	" WHERE api_keys.id = s.key_id RETURNING 1" \
	"), b AS (" \
	" UPDATE accounts SET balance_nusd = balance_nusd - s.c" \
	" FROM (SELECT account_id, sum(cost) AS c FROM g GROUP BY account_id) s" \
	" WHERE accounts.id = s.account_id RETURNING 1" \
	"), r AS (" \
	" INSERT INTO usage_daily AS d (day, account_id, key_id, model_id, model_author, provider_id, app," \
	"  requests, prompt_tokens, completion_tokens, reasoning_tokens, cost_nusd, provider_cost_nusd)" \
	" SELECT day, account_id, key_id, model_id, model_author, provider_id, app, sum(n), sum(pt), sum(ct)," \
	"  sum(rt), sum(cost), sum(pcost) FROM g GROUP BY 1, 2, 3, 4, 5, 6, 7" \
	" ON CONFLICT (day, account_id, key_id, model_id, provider_id, app) DO UPDATE SET" \
	"  requests = d.requests + excluded.requests," \
	"  prompt_tokens = d.prompt_tokens + excluded.prompt_tokens," \
	"  completion_tokens = d.completion_tokens + excluded.completion_tokens," \
	"  reasoning_tokens = d.reasoning_tokens + excluded.reasoning_tokens," \
	"  cost_nusd = d.cost_nusd + excluded.cost_nusd," \
	"  provider_cost_nusd = d.provider_cost_nusd + excluded.provider_cost_nusd" \
	" RETURNING 1" \
	"), h AS (" \
	" INSERT INTO usage_hourly AS h (hour, model_id, model_author, provider_id, endpoint_id, requests," \
	"  failures, streamed, prompt_tokens, completion_tokens, cost_nusd, provider_cost_nusd," \
	"  latency_ms_sum, ttft_ms_sum, tps_milli_sum)" \
	" SELECT hour, model_id, model_author, provider_id, endpoint_id, sum(n), sum(failures), sum(streamed)," \
	"  sum(pt), sum(ct), sum(cost), sum(pcost), sum(lat), sum(ttft), sum(tps) FROM g GROUP BY 1, 2, 3, 4, 5" \
	" ON CONFLICT (hour, model_id, provider_id, endpoint_id) DO UPDATE SET" \
	"  requests = h.requests + excluded.requests, failures = h.failures + excluded.failures," \
	"  streamed = h.streamed + excluded.streamed," \
	"  prompt_tokens = h.prompt_tokens + excluded.prompt_tokens," \
	"  completion_tokens = h.completion_tokens + excluded.completion_tokens," \
	"  cost_nusd = h.cost_nusd + excluded.cost_nusd," \
	"  provider_cost_nusd = h.provider_cost_nusd + excluded.provider_cost_nusd," \
	"  latency_ms_sum = h.latency_ms_sum + excluded.latency_ms_sum," \
	"  ttft_ms_sum = h.ttft_ms_sum + excluded.ttft_ms_sum," \
	"  tps_milli_sum = h.tps_milli_sum + excluded.tps_milli_sum" \
	" RETURNING 1" \
	"), de AS ("	/* per day and endpoint: market share and spend by model, provider, day */ \
	" INSERT INTO usage_daily_endpoints AS x (day, model_id, model_author, provider_id, endpoint_id, requests," \
	"  prompt_tokens, completion_tokens, cost_nusd, provider_cost_nusd)" \
	" SELECT day, model_id, model_author, provider_id, endpoint_id, sum(n), sum(pt), sum(ct), sum(cost), sum(pcost)" \
	" FROM g GROUP BY 1, 2, 3, 4, 5" \
	" ON CONFLICT (day, model_id, provider_id, endpoint_id) DO UPDATE SET" \
	"  requests = x.requests + excluded.requests," \
	"  prompt_tokens = x.prompt_tokens + excluded.prompt_tokens," \
	"  completion_tokens = x.completion_tokens + excluded.completion_tokens," \
	"  cost_nusd = x.cost_nusd + excluded.cost_nusd," \
	"  provider_cost_nusd = x.provider_cost_nusd + excluded.provider_cost_nusd" \
	" RETURNING 1" \
	"), dk AS ("	/* per day, account and key: spend by account and key, statements */ \
	" INSERT INTO usage_daily_keys AS y (day, account_id, key_id, requests, prompt_tokens, completion_tokens," \
	"  cost_nusd, provider_cost_nusd)" \
	" SELECT day, account_id, key_id, sum(n), sum(pt), sum(ct), sum(cost), sum(pcost) FROM g GROUP BY 1, 2, 3" \
	" ON CONFLICT (day, account_id, key_id) DO UPDATE SET" \
	"  requests = y.requests + excluded.requests," \
	"  prompt_tokens = y.prompt_tokens + excluded.prompt_tokens," \
	"  completion_tokens = y.completion_tokens + excluded.completion_tokens," \
	"  cost_nusd = y.cost_nusd + excluded.cost_nusd," \
	"  provider_cost_nusd = y.provider_cost_nusd + excluded.provider_cost_nusd" \
	" RETURNING 1" \
	"), mk AS ("	/* per month, account and key: a month's spend by account and key */ \
	" INSERT INTO usage_monthly_keys AS z (month, account_id, key_id, requests, prompt_tokens, completion_tokens," \
	"  cost_nusd, provider_cost_nusd)" \
	" SELECT date_trunc('month', day)::date, account_id, key_id, sum(n), sum(pt), sum(ct), sum(cost), sum(pcost)" \
	" FROM g GROUP BY 1, 2, 3" \
	" ON CONFLICT (month, account_id, key_id) DO UPDATE SET" \
	"  requests = z.requests + excluded.requests," \
	"  prompt_tokens = z.prompt_tokens + excluded.prompt_tokens," \
	"  completion_tokens = z.completion_tokens + excluded.completion_tokens," \
	"  cost_nusd = z.cost_nusd + excluded.cost_nusd," \
	"  provider_cost_nusd = z.provider_cost_nusd + excluded.provider_cost_nusd" \
	" RETURNING 1" \
	"), fo AS ("	/* attempts failed over (all but the last one of a generation) */ \
	" INSERT INTO attempts_hourly AS f (hour, model_id, provider_id, endpoint_id, failures)" \
	" SELECT date_trunc('hour', i.created_at), t.e ->> 'model', t.e ->> 'provider'," \
	"  (t.e ->> 'endpoint_id')::numeric::bigint, count(*)" \
	" FROM (SELECT * FROM ins WHERE provider_responses IS NOT NULL) i" \
	"  CROSS JOIN LATERAL jsonb_array_elements(CASE WHEN jsonb_typeof(i.provider_responses)" \
	"  = 'array' THEN i.provider_responses END) WITH ORDINALITY AS t(e, n)" \
	" WHERE t.n < jsonb_array_length(i.provider_responses) AND jsonb_typeof(t.e -> 'model') = 'string'" \
	"  AND jsonb_typeof(t.e -> 'provider') = 'string' AND jsonb_typeof(t.e -> 'endpoint_id') = 'number'" \
	" GROUP BY 1, 2, 3, 4" \
	" ON CONFLICT (hour, model_id, provider_id, endpoint_id) DO UPDATE SET" \
	"  failures = f.failures + excluded.failures" \
	" RETURNING 1" \
	")"

#define ON_CONFLICT " ON CONFLICT DO NOTHING"
#define CONSUMER_ANSWER \
	" SELECT (SELECT count(*) FROM ev)::text, (SELECT count(*) FROM ins)::text," \
	" (SELECT coalesce(sum(generations), 0) FROM led)::text, (SELECT count(*) FROM r)::text," \
	" (SELECT count(*) FROM b)::text, (SELECT max(ts) FROM ev)::text"

const char consumer_sql[] = CONSUMER_WITH(ON_CONFLICT) CONSUMER_ANSWER;

/* The same without ON CONFLICT, for a batch of new entries: the events'
 * primary key is checked by its index insertion anyway, and ON CONFLICT
 * pays a search of that index before each row, then a speculative
 * insertion (3 µs an event of PostgreSQL's 18, README "Performance").
 * A batch holding a generation billed before (a spool replayed after a
 * lost XADD reply, an entry split again) is refused whole, 23505, rolled
 * back with its implicit transaction, and written again with
 * consumer_sql, whose effect the fast one has when nothing conflicts. */
static const char consumer_fast_sql[] = CONSUMER_WITH("") CONSUMER_ANSWER;

/* The probe (see struct consumer): the same statement, which once every
 * part has run (each counted to its end) fails on purpose, casting
 * PROBE_MARK to an integer: PostgreSQL then rolls all of it back, in the
 * statement's own implicit transaction, with no session state to leave
 * behind. That error, its message naming PROBE_MARK, means PostgreSQL took
 * the event. */
#define PROBE_MARK "agora-billing-probe-ran"
static const char probe_sql[] =
	CONSUMER_WITH(ON_CONFLICT)
	" SELECT ('" PROBE_MARK ":' || ((SELECT count(*) FROM ev) + (SELECT count(*) FROM ins)"
	" + (SELECT count(*) FROM g) + (SELECT count(*) FROM led) + (SELECT count(*) FROM k)"
	" + (SELECT count(*) FROM b) + (SELECT count(*) FROM r) + (SELECT count(*) FROM h)"
	" + (SELECT count(*) FROM de) + (SELECT count(*) FROM dk) + (SELECT count(*) FROM mk)"
	" + (SELECT count(*) FROM fo)))::int::text";

static void consumer_next(struct consumer *c);
static void shard_trim(struct consumer *c, struct shard *sh);
static int batch_send(struct consumer *c, struct batch *b);
static void dead_letter(struct consumer *c, int shard, const char *id, const char *why);
static void write_cb(PGresult *res, const char *err, void *arg);

static void
batch_clear(struct consumer *c)
{
	for (int i = 0; i < c->nids; i++)
		free(c->ids[i]);
	free(c->ids);
	c->ids = NULL;
	c->nids = 0;
}

/* Columns done with: kept for a next batch when c is given and has room,
 * else freed. */
static void
cols_give(struct consumer *c, struct evcols *cols)
{
	for (int i = 0; c && cols && i < 2; i++)
		if (!c->spare[i]) {
			evcols_reset(cols);
			c->spare[i] = cols;
			return;
		}
	evcols_free(cols);
}

/* Frees a batch; its columns are kept for a next one when c is given. */
static void
batch_drop_into(struct consumer *c, struct batch *b)
{
	for (int i = 0; i < b->nids; i++)
		free(b->ids[i]);
	free(b->ids);
	free(b->refused);
	free(b->sample);
	cols_give(c, b->cols);
	memset(b, 0, sizeof(*b));
}

static void
batch_drop(struct batch *b)
{
	batch_drop_into(NULL, b);
}


/* Empty columns: a spare, or new. */
static struct evcols *
cols_take(struct consumer *c)
{
	for (int i = 0; i < 2; i++)
		if (c->spare[i]) {
			struct evcols *e = c->spare[i];

			c->spare[i] = NULL;
			return e;
		}
	return evcols_new();
}

/* The shard's pending entries are read again, from the first. */
static void
shard_repend(struct shard *sh)
{
	sh->pending_mode = 1;
	snprintf(sh->pending_from, sizeof(sh->pending_from), "0");
}

static void
consumer_pause(struct consumer *c)
{
	batch_clear(c);
	batch_drop_into(c, &c->next);	/* its entries are ours, pending: re-read below */
	c->phase = CP_PAUSE;
	for (int i = 0; i < c->nshards; i++)
		shard_repend(&c->shards[i]);	/* the unacked batches come back from "0" */
	c->prefetch_stale = c->prefetching;
	c->ack_waiting = 0;
	loop_timer_in(c->timer, RETRY_MS);
}

static int
any_pending(const struct consumer *c)
{
	for (int i = 0; i < c->nshards; i++)
		if (c->shards[i].pending_mode)
			return i;
	return -1;
}

/* Whether a batch of n events makes the next read wait: a heavy flow
 * (LINGER_MIN or more) that did not fill half a batch. */
static int
lingers(const struct consumer *c, int n)
{
	return c->linger_ms > 0 && n >= LINGER_MIN && n < c->batch / 2;
}

/* After a small batch: 0 to read now, 1 when the read waits (linger_ms). */
static int
consumer_linger(struct consumer *c)
{
	long long ms;

	if (!lingers(c, c->last_events))
		return 0;
	ms = (clock_mono_us() - c->t_write_us) / 1000;
	if (ms >= c->linger_ms)
		return 0;
	c->phase = CP_LINGER;
	loop_timer_in(c->linger, (int)(c->linger_ms - ms));
	return 1;
}

static void
linger_cb(evutil_socket_t fd, short what, void *arg)
{
	struct consumer *c = arg;

	(void)fd;
	(void)what;
	if (c->phase == CP_LINGER)
		consumer_next(c);
}

/* After the XACK and the read-ahead: the next batch, or the next read. */
static void
ack_continue(struct consumer *c)
{
	if (c->next.cols) {
		struct batch b = c->next;

		memset(&c->next, 0, sizeof(c->next));
		if (batch_send(c, &b) < 0)
			consumer_pause(c);
		return;
	}
	if (consumer_linger(c) == 0)
		consumer_next(c);
}

/* ---- trimming billed entries ---- */

/* Stream entry ids "<ms>-<seq>": -1, 0, 1 as a is older, the same, newer. */
static int
id_cmp(const char *a, const char *b)
{
	char *ea, *eb;
	unsigned long long ma = strtoull(a, &ea, 10), mb = strtoull(b, &eb, 10);
	unsigned long long sa = *ea == '-' ? strtoull(ea + 1, NULL, 10) : 0;
	unsigned long long sb = *eb == '-' ? strtoull(eb + 1, NULL, 10) : 0;

	if (ma != mb)
		return ma < mb ? -1 : 1;
	return sa < sb ? -1 : sa > sb;
}

static void trim_cb(struct rds *rd, redisReply *r, void *arg);

/* XTRIM MINID trim_min: entries older than it go; "~": whole nodes of
 * the stream only, and at most 100 nodes' worth a call (Redis's default
 * LIMIT: 10,000 entries), so that no call blocks Redis long: trim_cb
 * sends it again for the rest. */
static void
trim_send(struct shard *sh)
{
	sh->trimming = rds_command(sh->c->rd, sh->key, sh->len, trim_cb, sh, "XTRIM %b MINID ~ %s", sh->key,
				   sh->len, sh->trim_min) == 0;
	if (!sh->trimming)
		sh->draining = 0;	/* the next acknowledgement trims */
}

/* XTRIM's answer: entries it removed. Some: there may be more below the
 * same id than one call removes (a burst), so the same XTRIM goes again
 * TRIM_AGAIN_MS later (trim_timer_cb), until one removes none, with short
 * blocking reads meanwhile (read_block). make run's 250,000 billed entries
 * left in 5 s instead of 50: each step waits about 100 ms behind a read
 * (Redis times blocked reads out at its hz, 10 a second), and each call
 * takes a few milliseconds of Redis, other clients served between them.
 * trim_min stays right meanwhile: what the group delivers later is newer. */
static void
trim_cb(struct rds *rd, redisReply *r, void *arg)
{
	struct shard *sh = arg;

	(void)rd;
	sh->trimming = 0;
	sh->draining = r && r->type == REDIS_REPLY_INTEGER && r->integer > 0;
	if (sh->draining)
		loop_timer_in(sh->c->trim_timer, TRIM_AGAIN_MS);
	else
		shard_trim(sh->c, sh);	/* what was acknowledged during the drain */
}

/* XPENDING summary: [count, oldest id, newest id, consumers]. Trims below
 * the oldest pending entry and acked_max, whichever is older. */
static void
trim_pending_cb(struct rds *rd, redisReply *r, void *arg)
{
	struct shard *sh = arg;
	const char *min = sh->acked_max;

	(void)rd;
	sh->trimming = 0;
	if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 2 || r->element[0]->type != REDIS_REPLY_INTEGER)
		return;
	if (r->element[0]->integer > 0 && r->element[1]->type == REDIS_REPLY_STRING &&
	    id_cmp(r->element[1]->str, min) < 0)
		min = r->element[1]->str;
	if (strlen(min) >= sizeof(sh->trim_min))
		return;
	memcpy(sh->trim_min, min, strlen(min) + 1);
	trim_send(sh);
}

/* Asks the group's oldest pending entry, then trims below it: at most
 * every TRIM_MS a shard. A shard with acknowledgements it may not trim yet
 * (trimmed under TRIM_MS ago, its XPENDING still out, or not sendable)
 * comes back with the timer: a burst's last ones are trimmed too. */
static void
shard_trim(struct consumer *c, struct shard *sh)
{
	int64_t now = clock_mono_ms();

	if (!sh->acked_max[0] || strcmp(sh->acked_max, sh->trimmed_at) == 0)
		return;		/* nothing new to trim */
	if (sh->trimming || now - sh->trimmed_ms < TRIM_MS) {
		loop_timer_once(c->trim_timer, TRIM_MS);
		return;
	}
	sh->trimmed_ms = now;
	_Static_assert(sizeof(sh->trimmed_at) == sizeof(sh->acked_max), "ids of one size");
	memcpy(sh->trimmed_at, sh->acked_max, sizeof(sh->trimmed_at));
	if (rds_command(c->rd, sh->key, sh->len, trim_pending_cb, sh, "XPENDING %b %s", sh->key, sh->len, GROUP) < 0) {
		sh->trimmed_at[0] = '\0';
		loop_timer_once(c->trim_timer, TRIM_MS);
		return;
	}
	sh->trimming = 1;
}

/* Trims again every shard a burst is leaving, and every shard that
 * acknowledged entries since its last trim. */
static void
trim_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct consumer *c = arg;

	(void)fd;
	(void)what;
	for (int i = 0; i < c->nshards; i++) {
		struct shard *sh = &c->shards[i];

		if (sh->draining && !sh->trimming)
			trim_send(sh);
		else
			shard_trim(c, sh);
	}
}

/* After an XACK: what it acknowledged may go now, or when the last burst
 * ends (the timer: a stream left idle keeps nothing billed). */
static void
shard_acked(struct consumer *c, struct shard *sh)
{
	/* a batch is one reply's entries, in stream order: the last is newest */
	if (c->nids > 0 && (!sh->acked_max[0] || id_cmp(c->ids[c->nids - 1], sh->acked_max) > 0))
		snprintf(sh->acked_max, sizeof(sh->acked_max), "%s", c->ids[c->nids - 1]);
	shard_trim(c, sh);
}

/* The batch acknowledged (or had nothing to acknowledge): what next. */
static void
ack_done(struct consumer *c)
{
	batch_clear(c);
	if (c->prefetching) {
		c->ack_waiting = 1;	/* the read-ahead answers first */
		return;
	}
	ack_continue(c);
}

static void
ack_cb(struct rds *rd, redisReply *r, void *arg)
{
	struct consumer *c = arg;

	(void)rd;
	if (!r || r->type == REDIS_REPLY_ERROR) {
		c->st.redis_errors++;
		log_warn("billing: XACK failed: %s (the batch will be re-read; it is already billed)",
			 r ? r->str : "disconnected");
		consumer_pause(c);
		return;
	}
	c->st.acked += r->integer;
	shard_acked(c, &c->shards[c->cur]);
	ack_done(c);
}

static void
consumer_ack(struct consumer *c)
{
	const struct shard *sh = &c->shards[c->cur];
	const char **argv;
	size_t *argl;
	int argc = c->nids + 3;

	if (c->nids == 0) {	/* every entry was refused (each acknowledged with its dead-letter copy) */
		c->phase = CP_ACK;
		ack_done(c);
		return;
	}
	argv = calloc((size_t)argc, sizeof(*argv));
	argl = calloc((size_t)argc, sizeof(*argl));
	if (!argv || !argl)
		goto fail;
	argv[0] = "XACK";
	argv[1] = sh->key;
	argv[2] = GROUP;
	for (int i = 0; i < argc; i++) {
		if (i >= 3)
			argv[i] = c->ids[i - 3];
		argl[i] = strlen(argv[i]);
	}
	c->phase = CP_ACK;
	if (rds_command_argv(c->rd, sh->key, sh->len, ack_cb, c, argc, argv, argl) < 0)
		goto fail;
	free(argv);
	free(argl);
	return;
fail:
	free(argv);
	free(argl);
	consumer_pause(c);
}

/* Stats of a committed batch, and the metrics' callback. */
static void
batch_committed(struct consumer *c, PGresult *res)
{
	long long newest = strtoll(PQgetvalue(res, 0, 5), NULL, 10);
	if (newest > c->st.newest_ts_ms)
		c->st.newest_ts_ms = newest;
	if (!c->batch_fn)
		return;
	c->batch_fn(c->nids, strtoll(PQgetvalue(res, 0, 0), NULL, 10), clock_mono_us() - c->t_write_us, c->batch_arg);
}

/* Whether PostgreSQL refused a batch for what some entry holds: a data
 * exception (22), a constraint (23) or a limit such as an index row's size
 * (54); not a lost connection, a lock or a missing table. */
static int
refused_for_data(const PGresult *res)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

	return state && (strncmp(state, "22", 2) == 0 || strncmp(state, "23", 2) == 0 ||
			 strncmp(state, "54", 2) == 0);
}

/* Whether res is the probe's own failure: every part ran. */
static int
probe_ran(const PGresult *res)
{
	const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;

	return msg && strstr(msg, PROBE_MARK ":") != NULL;
}

/* The entry refused alone is dealt with (dead: set apart, or split, by
 * dead_letter, which acknowledges it; else left pending): billing goes on. */
static void
alone_settled(struct consumer *c, int dead)
{
	if (dead)
		dead_letter(c, c->cur, c->probe_id, c->probe_why);
	batch_clear(c);
	consumer_ack(c);
}

/* The probe's answer (see struct consumer). */
static void
probe_cb(PGresult *res, const char *err, void *arg)
{
	struct consumer *c = arg;
	int data = refused_for_data(res);

	if (probe_ran(res)) {
		c->refusing_all = 0;
		alone_settled(c, 1);
		return;
	}
	if (!data)
		log_warn("billing: probe not answered as it should be: %s", res ? PQresultErrorMessage(res) : err);
	else if (!c->refusing_all) {
		c->refusing_all = 1;
		log_error("billing: PostgreSQL refuses an event it billed before too (%s): the fault is not the"
			  " entries'; none is set apart, billing retries", PQresultErrorMessage(res));
	}
	consumer_pause(c);
}

/* An event billed before (c->good) under a new id, written by probe_sql.
 * The id is put last: evcols takes a member's last value. 0: probe_cb goes
 * on; -1: not sent. */
static int
probe_send(struct consumer *c)
{
	const char *end = strrchr(c->good, '}');
	size_t head = end ? (size_t)(end - c->good) : 0, n;
	struct evcols *cols = NULL;
	const char *params[EC_N];
	int lengths[EC_N], rc = -1;
	char *json;

	if (!end || !(json = malloc(head + 96)))
		return -1;
	memcpy(json, c->good, head);
	n = head + (size_t)snprintf(json + head, 96, ",\"id\":\"%s-%lld-%u\"}", PROBE_MARK,
				     (long long)clock_wall_ms(), c->probes++);
	if ((cols = cols_take(c)) && evcols_add(cols, json, n) == 0 && evcols_params(cols, params, lengths) == 0)
		rc = pgc_query_prepared(c->pg, probe_sql, EC_N, params, lengths, probe_cb, c);
	cols_give(c, cols);		/* pgc copied them */
	free(json);
	return rc;
}

/* A batch of one entry, refused alone. An entry of several events is
 * split (dead_letter): each is then tried alone. Of one event: with an
 * event billed before to probe with, the probe says whose fault it is
 * (probe_cb goes on); without one yet, the entry is left pending (read
 * again after the next pause) and billing goes on. -1: neither (the caller
 * pauses). */
static int
refused_alone(struct consumer *c, const PGresult *res)
{
	const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

	snprintf(c->probe_id, sizeof(c->probe_id), "%s", c->ids[0]);
	snprintf(c->probe_why, sizeof(c->probe_why), "refused by PostgreSQL: %s (SQLSTATE %s)", msg ? msg : "?",
		 PQresultErrorField(res, PG_DIAG_SQLSTATE));
	if (c->good)		/* the entry's fault: set apart, or split (dead_letter) */
		return probe_send(c);
	if (c->last_events > 1) {	/* nothing to probe with: split, each then tried alone */
		alone_settled(c, 1);
		return 0;
	}
	log_warn("billing: entry %s refused alone (%s); nothing billed yet to tell whose fault it is: left"
		 " pending", c->probe_id, c->probe_why);
	alone_settled(c, 0);
	return 0;
}

/* Whether consumer_fast_sql was refused for a generation billed before
 * (or twice in the batch): unique_violation. */
static int
refused_for_conflict(const PGresult *res)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

	return state && strcmp(state, "23505") == 0;
}

/* The batch again, with consumer_sql (its columns were kept). 0: write_cb
 * answers again; -1: not sent. */
static int
write_again(struct consumer *c, struct evcols *cols)
{
	const char *params[EC_N];
	int lengths[EC_N];

	if (evcols_params(cols, params, lengths) < 0 ||
	    pgc_query_prepared(c->pg, consumer_sql, EC_N, params, lengths, write_cb, c) < 0)
		return -1;
	c->st.conflict_retries++;
	log_debug("billing: batch of %d holds a generation billed before: written again with ON CONFLICT",
		  c->nids);
	return 0;
}

static void
write_cb(PGresult *res, const char *err, void *arg)
{
	struct consumer *c = arg;
	struct evcols *fast = c->fast_cols;
	int conflict = fast && refused_for_conflict(res), again;

	c->fast_cols = NULL;
	again = conflict && write_again(c, fast) == 0;
	cols_give(c, fast);		/* pgc copied them */
	if (again)
		return;
	if (conflict) {		/* not bad data: re-read, then written with ON CONFLICT (pending mode) */
		log_warn("billing: batch of %d holds a generation billed before and could not be sent again",
			 c->nids);
		consumer_pause(c);
		return;
	}
	if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
		int data = refused_for_data(res), alone;

		c->st.pg_errors++;
		log_warn("billing: batch of %d not written: %s", c->nids,
			 res ? PQresultErrorMessage(res) : err);
		/* one entry, re-read from the refused batch (its shard is still
		 * in pending mode: not a new entry after a stale isolate) */
		alone = data && c->isolate && c->nids == 1 && c->shards[c->cur].pending_mode;
		if (alone && refused_alone(c, res) == 0)
			return;
		/* some entry is malformed: check each on the re-read, and when
		 * the checked batch is refused too, write them one at a time */
		if (data && c->validate && !c->isolate) {
			c->isolate = 1;
			log_warn("billing: the batch was refused again once checked: its entries go one at a time");
		}
		if (data)
			c->validate = 1;
		consumer_pause(c);
		return;
	}
	if (c->nids > 0) {	/* an empty statement proves nothing */
		c->validate = 0;
		c->refusing_all = 0;
		if (c->sample) {	/* an event PostgreSQL takes, for probes */
			free(c->good);
			c->good = c->sample;
			c->sample = NULL;
		}
	}
	c->st.batches++;
	batch_committed(c, res);
	{
		long long events = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		long long inserted = strtoll(PQgetvalue(res, 0, 1), NULL, 10);

		c->st.inserted += inserted;
		c->st.duplicates += events - inserted;
		c->dup_last = events > inserted;	/* more may follow: the next batch with ON CONFLICT */
	}
	log_debug("billing: batch %d entries, %s events, %s new", c->nids, PQgetvalue(res, 0, 0),
		  PQgetvalue(res, 0, 1));
	consumer_ack(c);
}

/* Whether a usage event has the fields billing needs, with their types
 * (checked only after PostgreSQL refused a batch). */
static int
event_valid(const char *s, size_t len)
{
	static const char *const nums[] = { "ts", "account", "key", "endpoint", "pt", "ct", "cost", "pcost",
					    "latency_ms", "ttft_ms", "tps_milli", "status", "attempts" };
	cJSON *o = cJSON_ParseWithLength(s, len);
	const cJSON *v;
	int ok = cJSON_IsObject(o) && cJSON_IsString(cJSON_GetObjectItemCaseSensitive(o, "id"));

	for (size_t i = 0; ok && i < sizeof(nums) / sizeof(nums[0]); i++) {
		v = cJSON_GetObjectItemCaseSensitive(o, nums[i]);
		ok = cJSON_IsNumber(v) && v->valuedouble >= -9e15 && v->valuedouble <= 9e15 &&
		     v->valuedouble == (double)(long long)v->valuedouble;
	}
	if (ok && (v = cJSON_GetObjectItemCaseSensitive(o, "tried")))
		ok = cJSON_IsArray(v) || cJSON_IsNull(v);
	cJSON_Delete(o);
	return ok;
}

/* The events of an entry ([id, [field, value, ...]]): the values of its
 * fields `e` (one event) or `ev` (a router writes up to
 * RDS_ENTRY_EVENTS_MAX an entry so), from *j on; NULL after the last. */
static const redisReply *
entry_event(const redisReply *e, size_t *j)
{
	const redisReply *f = e->elements > 1 ? e->element[1] : NULL;

	for (; f && f->type == REDIS_REPLY_ARRAY && *j + 1 < f->elements; *j += 2)
		if (f->element[*j]->type == REDIS_REPLY_STRING &&
		    (strcmp(f->element[*j]->str, "e") == 0 || strcmp(f->element[*j]->str, "ev") == 0) &&
		    f->element[*j + 1]->type == REDIS_REPLY_STRING) {
			*j += 2;
			return f->element[*j - 1];
		}
	return NULL;
}

/* ---- dead letters ---- */

/* A refused entry on its way to the dead-letter stream (or split). */
struct dead {
	struct consumer *c;
	int shard;
	char id[RDS_ID_LEN];
	char key[KEY_LEN + 8];
	char why[DEAD_WHY_LEN];
	int split;			/* its events go back to the stream, not to :dead */
	int left, failed;		/* its XADDs awaiting their answer, failed */
};

/* One of the entry's XADDs (its copy, or a split's events) answered. After
 * the last one the entry is acknowledged, and only if all went in, so that
 * an entry is never gone from both streams: else it stays pending, taken
 * again by XAUTOCLAIM (billing_claim_idle_ms) or at the next pending read
 * (a split made twice: billing drops the events it billed already, by
 * generation id). */
static void
dead_done(struct dead *d)
{
	const struct shard *sh = &d->c->shards[d->shard];

	if (--d->left > 0)
		return;
	if (d->failed) {
		d->c->st.redis_errors++;
		log_error("billing: entry %s of %s could not be %s; left pending, tried again later", d->id, sh->key,
			  d->split ? "split" : "copied to its dead-letter stream");
	} else {
		if (!d->split)
			d->c->st.dead_letters++;
		rds_command(d->c->rd, sh->key, sh->len, NULL, NULL, "XACK %b %s %s", sh->key, sh->len, GROUP, d->id);
	}
	free(d);
}

static void
dead_xadd_cb(struct rds *rd, redisReply *r, void *arg)
{
	struct dead *d = arg;

	(void)rd;
	if (!r || r->type == REDIS_REPLY_ERROR) {
		d->failed = 1;
		log_warn("billing: entry %s: XADD refused (%s)", d->id, r ? r->str : "disconnected");
	}
	dead_done(d);
}

/* The entry as read again (XRANGE id id: its fields, or NULL when it is
 * gone from the stream), copied whole to `<stream>:dead` with where it came
 * from and why. */
static void
dead_copy(struct dead *d, const redisReply *f)
{
	struct consumer *c = d->c;
	size_t nf = f ? f->elements & ~(size_t)1 : 0;
	int argc = DEAD_HEAD + (int)nf;
	const char **argv = calloc((size_t)argc, sizeof(*argv));
	size_t *argl = calloc((size_t)argc, sizeof(*argl));
	const char *head[DEAD_HEAD] = { "XADD", d->key, "MAXLEN", "~", DEAD_MAXLEN, "*", "dead_stream",
					c->shards[d->shard].key, "dead_id", d->id, "dead_reason", d->why };

	if (!argv || !argl)
		goto fail;
	for (int i = 0; i < DEAD_HEAD; i++) {
		argv[i] = head[i];
		argl[i] = strlen(head[i]);
	}
	for (size_t j = 0; j < nf; j++) {	/* then the entry's own fields, as they were */
		const redisReply *x = f->element[j];
		int ok = x->type == REDIS_REPLY_STRING;

		argv[DEAD_HEAD + j] = ok ? x->str : "";
		argl[DEAD_HEAD + j] = ok ? x->len : 0;
	}
	d->left = 1;
	if (rds_command_argv(c->rd, d->key, strlen(d->key), dead_xadd_cb, d, argc, argv, argl) < 0)
		goto fail;
	free(argv);
	free(argl);
	return;
fail:
	log_error("billing: entry %s of %s could not be copied to %s; left pending, tried again later", d->id,
		  c->shards[d->shard].key, d->key);
	free(argv);
	free(argl);
	free(d);
}

/* An entry of several events (a router writes up to RDS_ENTRY_EVENTS_MAX an
 * entry), one of which is refused: its events are added back to the
 * stream one an entry (with `split_from` = its id), and it is
 * acknowledged once they are in. Each is then billed, or set apart,
 * alone: a bad event does not take the good ones beside it to the
 * dead-letter stream. */
static void
dead_split(struct dead *d, const redisReply *e)
{
	const struct shard *sh = &d->c->shards[d->shard];
	const redisReply *v;
	size_t j = 0;
	int n = 0;

	d->split = 1;
	d->left = 1;		/* held until every XADD is sent */
	while ((v = entry_event(e, &j))) {
		n++;
		if (rds_command(d->c->rd, sh->key, sh->len, dead_xadd_cb, d, "XADD %b * e %b split_from %s", sh->key,
				sh->len, v->str, v->len, d->id) == 0)
			d->left++;
		else
			d->failed = 1;
	}
	log_warn("billing: entry %s of %s refused (%s): its %d events go back to the stream one an entry", d->id,
		 sh->key, d->why, n);
	d->c->st.split_entries++;
	dead_done(d);
}

/* XRANGE reply: [[id, [field, value, ...]]], or [] for an entry deleted
 * from the stream while pending (copied with no fields). */
static void
dead_range_cb(struct rds *rd, redisReply *r, void *arg)
{
	struct dead *d = arg;
	const redisReply *e, *f = NULL;
	size_t j = 0;

	(void)rd;
	if (!r || r->type != REDIS_REPLY_ARRAY) {
		d->c->st.redis_errors++;
		log_error("billing: entry %s could not be read again (%s); left pending, tried again later", d->id,
			  r && r->type == REDIS_REPLY_ERROR ? r->str : "disconnected");
		free(d);
		return;
	}
	e = r->elements > 0 && r->element[0]->type == REDIS_REPLY_ARRAY ? r->element[0] : NULL;
	if (e && e->elements > 1 && e->element[1]->type == REDIS_REPLY_ARRAY)
		f = e->element[1];
	if (e && entry_event(e, &j) && entry_event(e, &j)) {	/* two events or more */
		dead_split(d, e);
		return;
	}
	log_error("billing: entry %s of %s refused (%s), NOT billed: copied to %s, then acknowledged", d->id,
		  d->c->shards[d->shard].key, d->why, d->key);
	dead_copy(d, f);
}

/* An entry billing cannot bill (not a usage event, a field missing or of
 * the wrong type, or one PostgreSQL refuses alone): read again, copied
 * whole to the dead-letter stream `<stream>:dead` (the same hash tag: the
 * same cluster slot) with why, then acknowledged (dead_done). Before, it was
 * acknowledged and skipped: a generation never billed, with only a log
 * line to say so. */
static void
dead_letter(struct consumer *c, int shard, const char *id, const char *why)
{
	const struct shard *sh = &c->shards[shard];
	struct dead *d = calloc(1, sizeof(*d));

	c->st.bad_entries++;
	if (!d || strlen(id) >= sizeof(d->id))
		goto fail;
	d->c = c;
	d->shard = shard;
	snprintf(d->id, sizeof(d->id), "%s", id);
	snprintf(d->key, sizeof(d->key), "%s" DEAD_SUFFIX, sh->key);
	snprintf(d->why, sizeof(d->why), "%s", why);
	if (rds_command(c->rd, sh->key, sh->len, dead_range_cb, d, "XRANGE %b %s %s", sh->key, sh->len, d->id,
			d->id) < 0)
		goto fail;
	return;
fail:
	log_error("billing: entry %s of %s refused (%s) and could not be copied to its dead-letter stream;"
		  " left pending, tried again later", id, sh->key, why);
	free(d);
}

/* An entry the batch will not carry, dead-lettered when it is sent. */
static int
batch_refuse(struct batch *b, const redisReply *id, const char *why, size_t max)
{
	if (id->len >= RDS_ID_LEN)
		return 0;	/* no stream id is this long: left pending */
	if (!b->refused && !(b->refused = calloc(max, sizeof(*b->refused))))
		return -1;
	memcpy(b->refused[b->nrefused].id, id->str, id->len + 1);
	b->refused[b->nrefused++].why = why;
	return 0;
}

/* An entry's events into the batch's columns, all or none. 0; -1 none (why
 * says which), -2 out of memory. */
static int
entry_add(struct consumer *c, struct batch *b, const redisReply *e, const char **why)
{
	const redisReply *ev, *first = NULL;
	struct evcols_mark mark;
	size_t j = 0;
	int rc = 0;

	*why = "no event (field e)";
	evcols_mark(b->cols, &mark);
	while (rc == 0 && (ev = entry_event(e, &j))) {
		int valid = !c->validate || event_valid(ev->str, ev->len);

		*why = valid ? "not a usage event the tables can hold" : "refused by validation";
		rc = valid ? evcols_add(b->cols, ev->str, ev->len) : -1;
		first = first ? first : ev;
	}
	if (rc == 0 && !first)
		rc = -1;
	if (rc < 0) {
		evcols_rollback(b->cols, &mark);
		return rc;
	}
	if (!b->sample && !(b->sample = strndup(first->str, first->len)))
		return -2;
	return 0;
}

/* entries: [[id, [field, value, ...]], ...] into a batch: each event read
 * once, into columns (evcols.h). An entry that is not a usage event is
 * acknowledged with the batch and skipped. After PostgreSQL refused a batch
 * (a `tried` that is not JSON: the only field evcols passes on unchecked),
 * each event is also checked whole with cJSON first. Returns 0 or -1. */
static int
batch_build(struct consumer *c, int shard, const redisReply *entries, struct batch *b)
{
	memset(b, 0, sizeof(*b));
	b->shard = shard;
	if (!(b->cols = cols_take(c)) || !(b->ids = calloc(entries->elements ? entries->elements : 1, sizeof(char *))))
		goto fail;
	for (size_t i = 0; i < entries->elements; i++) {
		const redisReply *e = entries->element[i];
		const char *why;
		int rc;

		if (e->type != REDIS_REPLY_ARRAY || e->elements < 1 || e->element[0]->type != REDIS_REPLY_STRING)
			continue;
		if ((rc = entry_add(c, b, e, &why)) == -2)
			goto fail;
		if (rc < 0) {
			if (batch_refuse(b, e->element[0], why, entries->elements) < 0)
				goto fail;
			continue;
		}
		if (!(b->ids[b->nids] = strdup(e->element[0]->str)))
			goto fail;
		b->nids++;
	}
	b->events = evcols_count(b->cols);
	return 0;
fail:
	batch_drop_into(c, b);
	return -1;
}

static void prefetch_cb(struct rds *rd, redisReply *reply, void *arg);

/* The entries of an XREADGROUP reply (nil, or [[stream, entries]]), or NULL. */
static const redisReply *
read_entries(const redisReply *r)
{
	if (r->type == REDIS_REPLY_ARRAY && r->elements > 0 && r->element[0]->type == REDIS_REPLY_ARRAY &&
	    r->element[0]->elements > 1 && r->element[0]->element[1]->type == REDIS_REPLY_ARRAY)
		return r->element[0]->element[1];
	return NULL;
}

/* Entries to read for a batch of `batch` events: a router writes several
 * events an entry under load (the last batch's mean says how many; the
 * first read assumes the most). A flow that grows from one event an entry
 * to many can make one batch up to RDS_ENTRY_EVENTS_MAX times `batch`. */
static int
read_count(const struct consumer *c)
{
	int64_t n = (int64_t)c->batch * c->rate_entries / c->rate_events;

	return n < 1 ? 1 : n > c->batch ? c->batch : (int)n;
}

/* XREADGROUP of shard s: from "0" (our pending entries) or ">" (new ones,
 * blocking for block_ms when not NULL). */
static int
read_shard(struct consumer *c, int s, const char *from, const char *block_ms, rds_reply_fn fn)
{
	const struct shard *sh = &c->shards[s];
	char count[16];

	/* isolating a refused batch: its entries come back one at a time */
	snprintf(count, sizeof(count), "%d", c->isolate && strcmp(from, ">") != 0 ? 1 : read_count(c));
	if (block_ms)
		return rds_command(c->rd, sh->key, sh->len, fn, c, "XREADGROUP GROUP %s %s COUNT %s BLOCK %s STREAMS %b %s",
				   GROUP, c->name, count, block_ms, sh->key, sh->len, from);
	return rds_command(c->rd, sh->key, sh->len, fn, c, "XREADGROUP GROUP %s %s COUNT %s STREAMS %b %s", GROUP,
			   c->name, count, sh->key, sh->len, from);
}

/* Writes a built batch (it becomes the current one). While PostgreSQL
 * works, the next shard's new entries are read ahead (without blocking: a
 * blocked read would hold up the XACK behind it on the connection). */
static int
batch_send(struct consumer *c, struct batch *b)
{
	const char *params[EC_N];
	int lengths[EC_N], rc;
	/* new entries after a batch without duplicates: the fast statement;
	 * entries read again or claimed were likely billed before */
	int fast = !c->dup_last && !c->validate && !c->isolate && !c->shards[b->shard].pending_mode && !b->claimed;

	c->cur = b->shard;
	c->ids = b->ids;
	c->nids = b->nids;
	c->last_events = b->events;
	if (b->nids > 0 && b->events > 0) {
		c->rate_events = (int)b->events;
		c->rate_entries = b->nids;
	}
	b->ids = NULL;
	b->nids = 0;
	c->st.events += b->events;
	free(c->sample);
	c->sample = b->sample;		/* promoted to c->good once committed */
	b->sample = NULL;
	for (int i = 0; i < b->nrefused; i++)
		dead_letter(c, b->shard, b->refused[i].id, b->refused[i].why);
	c->phase = CP_WRITE;
	c->t_write_us = clock_mono_us();
	rc = evcols_params(b->cols, params, lengths) < 0 ? -1
	     : pgc_query_prepared(c->pg, fast ? consumer_fast_sql : consumer_sql, EC_N, params, lengths, write_cb, c);
	if (rc >= 0 && fast) {
		c->fast_cols = b->cols;		/* for write_again */
		b->cols = NULL;
	}
	batch_drop_into(c, b);	/* pgc copied the parameters */
	if (rc < 0)
		return -1;
	if (any_pending(c) < 0 && !c->prefetching &&
	    !lingers(c, c->last_events)) {
		c->reading = c->rr;
		c->rr = (c->rr + 1) % c->nshards;
		if (read_shard(c, c->reading, ">", NULL, prefetch_cb) == 0)
			c->prefetching = 1;
	}
	return c->nids;
}

static int
batch_take(struct consumer *c, int shard, const redisReply *entries, int claimed)
{
	struct batch b;

	if (batch_build(c, shard, entries, &b) < 0)
		return -1;
	b.claimed = claimed;
	return batch_send(c, &b);
}

/* The read-ahead: kept until the current batch is acknowledged. */
static void
prefetch_cb(struct rds *rd, redisReply *r, void *arg)
{
	struct consumer *c = arg;
	const redisReply *entries;

	(void)rd;
	c->prefetching = 0;
	if (c->prefetch_stale || !r || r->type != REDIS_REPLY_ARRAY || c->phase == CP_PAUSE || c->phase == CP_DOWN) {
		c->prefetch_stale = 0;	/* anything read is pending for us: re-read from "0" */
		if (c->ack_waiting) {
			c->ack_waiting = 0;
			consumer_next(c);
		}
		return;
	}
	entries = read_entries(r);
	if (entries && entries->elements > 0) {
		c->empty_run = 0;
		if (batch_build(c, c->reading, entries, &c->next) < 0)
			shard_repend(&c->shards[c->reading]);	/* out of memory: back from "0" */
	} else {
		c->empty_run++;
	}
	if (c->ack_waiting) {
		c->ack_waiting = 0;
		ack_continue(c);
	}
}

/* The id of the last of entries (kept as it is when there is none). */
static void
entries_last_id(const redisReply *entries, char *id, size_t len)
{
	const redisReply *e = entries->element[entries->elements - 1];

	if (e->type == REDIS_REPLY_ARRAY && e->elements > 0 && e->element[0]->type == REDIS_REPLY_STRING &&
	    e->element[0]->len < len)
		snprintf(id, len, "%s", e->element[0]->str);
}

static void
read_cb(struct rds *rd, redisReply *r, void *arg)
{
	struct consumer *c = arg;
	struct shard *sh = &c->shards[c->reading];
	const redisReply *entries;

	(void)rd;
	if (!r || r->type == REDIS_REPLY_ERROR) {
		c->st.redis_errors++;
		if (r && strstr(r->str, "NOGROUP"))
			c->phase = CP_DOWN, consumer_redis_up(c);
		else
			consumer_pause(c);
		return;
	}
	entries = read_entries(r);
	if (!entries || entries->elements == 0) {
		if (sh->pending_mode) {
			sh->pending_mode = 0;
			if (c->isolate && any_pending(c) < 0) {
				c->isolate = 0;
				log_info("billing: the refused batch's entries are settled; batches again");
			}
		} else
			c->empty_run++;
		consumer_next(c);
		return;
	}
	if (!sh->pending_mode)
		c->empty_run = 0;
	else
		entries_last_id(entries, sh->pending_from, sizeof(sh->pending_from));
	if (batch_take(c, c->reading, entries, 0) < 0)
		consumer_pause(c);
}

/* XAUTOCLAIM reply: [next-id, entries, deleted-ids]. */
static void
claim_cb(struct rds *rd, redisReply *r, void *arg)
{
	struct consumer *c = arg;

	(void)rd;
	if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 2 || r->element[1]->type != REDIS_REPLY_ARRAY ||
	    r->element[1]->elements == 0) {
		consumer_next(c);
		return;
	}
	c->st.claimed += (long long)r->element[1]->elements;
	log_info("billing: claimed %zu entries of a stopped consumer from %s", r->element[1]->elements,
		 c->shards[c->reading].key);
	if (batch_take(c, c->reading, r->element[1], 1) < 0)
		consumer_pause(c);
}

static int
claim_shard(struct consumer *c, int s)
{
	const struct shard *sh = &c->shards[s];
	char count[16], idle[16];

	snprintf(count, sizeof(count), "%d", read_count(c));
	snprintf(idle, sizeof(idle), "%d", c->claim_idle_ms);
	return rds_command(c->rd, sh->key, sh->len, claim_cb, c, "XAUTOCLAIM %b %s %s %s 0-0 COUNT %s", sh->key,
			   sh->len, GROUP, c->name, idle, count);
}

/* How long an idle read of new entries blocks. */
static const char *
read_block(const struct consumer *c)
{
	for (int i = 0; i < c->nshards; i++)
		if (c->shards[i].draining)
			return BLOCK_DRAIN_MS;
	return c->nshards == 1 ? BLOCK_ONE_MS : BLOCK_MANY_MS;
}

/* Sends the next read: a claim, our pending entries, or new entries, of
 * one shard. -1 when that shard cannot be asked now (its cluster node is
 * away): it is passed over, so a lost node stalls only its own shards (its
 * pending entries come back through XAUTOCLAIM). */
static int
read_next(struct consumer *c)
{
	int s;

	if (c->claim_left > 0) {
		c->reading = --c->claim_left;
		return claim_shard(c, c->reading);
	}
	if ((s = any_pending(c)) >= 0) {
		c->reading = s;
		if (read_shard(c, s, c->shards[s].pending_from, NULL, read_cb) == 0)
			return 0;
		c->shards[s].pending_mode = 0;	/* its node is away: XAUTOCLAIM brings them back */
		if (any_pending(c) < 0)
			c->isolate = 0;
		return -1;
	}
	c->reading = c->rr;
	c->rr = (c->rr + 1) % c->nshards;
	/* block only when every other shard was just found empty; briefly
	 * while a burst is trimmed: a blocked read holds the link, and each
	 * trim (XPENDING, then XTRIM) would wait a whole block behind it */
	if (read_shard(c, c->reading, ">", c->empty_run + 1 >= c->nshards ? read_block(c) : NULL, read_cb) == 0)
		return 0;
	c->empty_run++;
	return -1;
}

static void
consumer_next(struct consumer *c)
{
	if (!rds_is_connected(c->rd)) {
		c->phase = CP_DOWN;
		return;
	}
	c->phase = CP_READ;
	if (c->claim_due) {
		c->claim_due = 0;
		c->claim_left = c->nshards;
	}
	for (int tries = 0; tries < 3 * c->nshards; tries++)	/* claims, pending, new */
		if (read_next(c) == 0)
			return;
	consumer_pause(c);
}

/* Every shard's XGROUP CREATE answered: start, from our pending entries
 * (a shard that could not be asked gets its group at the next start; until
 * then its reads fail and it is passed over). */
static void
groups_settle(struct consumer *c)
{
	if (c->groups_failed == c->nshards) {
		consumer_pause(c);
		return;
	}
	for (int i = 0; i < c->nshards; i++)
		shard_repend(&c->shards[i]);
	consumer_next(c);
}

static void
group_cb(struct rds *rd, redisReply *r, void *arg)
{
	struct consumer *c = arg;

	(void)rd;
	if (!r)
		c->groups_failed++;
	else if (r->type == REDIS_REPLY_ERROR && !strstr(r->str, "BUSYGROUP"))
		log_warn("billing: XGROUP CREATE: %s", r->str);
	if (--c->groups_left == 0)
		groups_settle(c);
}

/* XINFO GROUPS, asked at start: a worker that starts has acknowledged
 * nothing, so it would trim only once it bills something, and what was
 * billed before (by a worker gone, or by itself before a restart) would
 * stay in Redis until traffic came. The group's last delivered entry
 * stands in for the newest one acknowledged: trim_pending_cb still keeps
 * everything from the group's oldest pending entry on. */
static void
boot_info_cb(struct rds *rd, redisReply *r, void *arg)
{
	struct shard *sh = arg;
	const redisReply *last;

	(void)rd;
	if (!r)
		sh->booted = 0;		/* disconnected: asked again at the next connection */
	if (!r || sh->acked_max[0])
		return;
	last = rds_group_field(r, GROUP, "last-delivered-id");
	if (last && last->type == REDIS_REPLY_STRING && strcmp(last->str, "0-0") != 0 &&
	    last->len < sizeof(sh->acked_max)) {
		memcpy(sh->acked_max, last->str, last->len + 1);
		shard_trim(sh->c, sh);
	}
}

void
consumer_redis_up(struct consumer *c)
{
	if (!rds_is_connected(c->rd) || (c->phase != CP_DOWN && c->phase != CP_PAUSE))
		return;
	evtimer_del(c->timer);
	c->phase = CP_READ;
	c->groups_left = 1;	/* guard: released after the loop */
	c->groups_failed = 0;
	for (int i = 0; i < c->nshards; i++) {
		struct shard *sh = &c->shards[i];

		if (rds_command(c->rd, sh->key, sh->len, group_cb, c, "XGROUP CREATE %b %s 0 MKSTREAM", sh->key, sh->len,
				GROUP) < 0)
			c->groups_failed++;
		else
			c->groups_left++;
		if (!sh->acked_max[0] && !sh->booted)	/* once, not after every pause */
			sh->booted = rds_command(c->rd, sh->key, sh->len, boot_info_cb, sh, "XINFO GROUPS %b", sh->key,
						 sh->len) == 0;
	}
	if (--c->groups_left == 0)
		groups_settle(c);
}

static void
pause_cb(evutil_socket_t fd, short what, void *arg)
{
	struct consumer *c = arg;

	(void)fd;
	(void)what;
	c->phase = CP_DOWN;
	consumer_redis_up(c);
}

static void
claim_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	((struct consumer *)arg)->claim_due = 1;
}

/* Shards 0..n-1, and with n > 1 the stream `usage` of before sharding. */
static void
shards_init(struct consumer *c, int n)
{
	n = n < 1 ? 1 : n > RDS_SHARDS_MAX ? RDS_SHARDS_MAX : n;
	for (int i = 0; i < n; i++)
		c->shards[i].len = rds_shard_key(i, n, c->shards[i].key, KEY_LEN);
	c->nshards = n;
	if (n > 1)
		c->shards[c->nshards++].len = rds_shard_key(0, 1, c->shards[n].key, KEY_LEN);
	for (int i = 0; i < c->nshards; i++)
		c->shards[i].c = c;
}

struct consumer *
consumer_new(struct event_base *base, struct pgc *pg, struct rds *rd, const char *name, int shards)
{
	struct consumer *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->base = base;
	c->pg = pg;
	c->rd = rd;
	c->claim_due = 1;
	c->rate_events = RDS_ENTRY_EVENTS_MAX;	/* until a batch says how many */
	c->rate_entries = 1;
	shards_init(c, shards);
	snprintf(c->name, sizeof(c->name), "%s", name);
	c->timer = evtimer_new(base, pause_cb, c);
	c->linger = evtimer_new(base, linger_cb, c);
	c->trim_timer = evtimer_new(base, trim_timer_cb, c);
	c->claim_timer = event_new(base, -1, EV_PERSIST, claim_tick_cb, c);
	if (!c->timer || !c->linger || !c->trim_timer || !c->claim_timer) {
		consumer_free(c);
		return NULL;
	}
	return c;
}

int
consumer_busy(const struct consumer *c)
{
	return c->phase == CP_WRITE || c->phase == CP_ACK;
}

void
consumer_stats(const struct consumer *c, struct consumer_stats *st)
{
	*st = c->st;
}

void
consumer_set_batch_cb(struct consumer *c, consumer_batch_fn fn, void *arg)
{
	c->batch_fn = fn;
	c->batch_arg = arg;
}

void
consumer_set_batch(struct consumer *c, int batch, int claim_idle_ms, int linger_ms)
{
	c->batch = batch;
	c->claim_idle_ms = claim_idle_ms;
	c->linger_ms = linger_ms;
	loop_timer_in(c->claim_timer, claim_idle_ms);	/* (re)scheduled at the new period */
}

int
consumer_nshards(const struct consumer *c)
{
	return c->nshards;
}

const char *
consumer_shard(const struct consumer *c, int i, size_t *len)
{
	*len = c->shards[i].len;
	return c->shards[i].key;
}

void
consumer_free(struct consumer *c)
{
	if (!c)
		return;
	batch_clear(c);
	batch_drop(&c->next);
	free(c->good);
	free(c->sample);
	evcols_free(c->spare[0]);
	evcols_free(c->spare[1]);
	evcols_free(c->fast_cols);
	if (c->timer)
		event_free(c->timer);
	if (c->linger)
		event_free(c->linger);
	if (c->trim_timer)
		event_free(c->trim_timer);
	if (c->claim_timer)
		event_free(c->claim_timer);
	free(c);
}
