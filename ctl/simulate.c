/*
 * agoractl simulate (see simulate.h).
 *
 * The catalog comes from PostgreSQL (active endpoints). Over [now - days,
 * now), hour by hour, the number of events follows a diurnal curve (peak at
 * 15:00 UTC, night at a third), quieter weekends and a volume growing over
 * the period. Each event picks a client (account, key, app: each with its
 * taste for a model origin), a model (weights that shift: the newest model
 * launches at 30% of the period and rises week by week, the oldest
 * declines), and an endpoint as the router balances them (1 / price²),
 * failing over cheapest first when an attempt fails. Scenarios:
 *   - outage: the provider with the most endpoints fails 80% of attempts
 *     for one UTC day (at 65% of the period): fail-overs, with the attempts
 *     recorded as the router records them (`tried`);
 *   - price cut: the dearest endpoint of the model with the most endpoints
 *     cost 8/5 of today's catalog price until mid-period; every cost is
 *     computed at the price of its time;
 *   - background noise: rare 429/500 fail-overs and cut streams (502).
 * Two passes over the same seeded generator: the first sums each
 * account's usage per month (top-ups are dated at each month's start, so a
 * balance never goes negative), the second XADDs the events, and adds the
 * last two hours to the live counters (live:<minute>) as the router does.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "days.h"
#include "keyhash.h"
#include "money.h"
#include "rds.h"
#include "rds_slot.h"
#include "simulate.h"

#define SIM_MAX_EPS 512
#define SIM_MAX_MODELS 256
#define SIM_MAX_MONTHS 16
#define SIM_PIPELINE 2000
#define SIM_LIVE_MS (120 * 60000LL)
#define HOUR_MS 3600000LL
#define DAY_MS 86400000LL

/* Who sends the traffic: account, key, app, weight, the model origin they
 * favour, and whether they are a coding tool. */
static const struct sim_client {
	const char *account, *key, *app_title, *app_url;
	double weight;
	const char *origin;
	double origin_mult;
	int coder;
} clients[] = {
	{ "sim-acme", "acme-prod", "Acme Support Bot", "https://support.acme.example", 4.0, "US", 2.0, 0 },
	{ "sim-acme", "acme-staging", "Acme Docs Search", "https://docs.acme.example", 1.0, "US", 2.0, 0 },
	{ "sim-lumen", "lumen-api", "Lumen Writer", "https://lumen.example", 2.5, "FR", 4.0, 0 },
	{ "sim-kirin", "kirin-lab", "Kirin Research Agent", NULL, 3.0, "CN", 2.5, 0 },
	{ "sim-indie", "indie", "CodeNest", "https://codenest.example", 2.0, NULL, 1.0, 1 },
	{ "sim-indie", "indie", NULL, NULL, 0.6, NULL, 1.0, 0 },
};
#define NCLIENTS ((int)(sizeof(clients) / sizeof(clients[0])))

struct sim_ep {
	int64_t id, pp, cp, cpp, ccp;	/* today's prices (uusd/Mtok): ours, the provider's */
	char provider[64], provider_name[128];
	int model;
	double ttft_ms, tps;		/* the provider's speed */
};

struct sim_model {
	char id[128], author[64], origin[16];
	int64_t created;
	int eps[16], neps;		/* cheapest first */
	double base;
	int coder, thinking;
};

struct sim {
	PGconn *db;
	struct event_base *base;	/* Redis through rds: any mode, pipelined */
	struct rds *rd;
	int up;
	const struct agora_conf *conf;
	uint64_t seed, rng;
	int days, rate, emit;
	int64_t start_ms, end_ms, now_ms;
	struct sim_ep eps[SIM_MAX_EPS];
	int neps;
	struct sim_model models[SIM_MAX_MODELS];
	int nmodels;
	int rising, declining, cut_ep, outage_eps;
	char outage[64];
	int64_t outage_from, outage_to, cut_ms;
	int64_t account_id[NCLIENTS], key_id[NCLIENTS];
	int32_t month0;			/* year * 12 + month of the start */
	int64_t month_cost[NCLIENTS][SIM_MAX_MONTHS];	/* by the client's account */
	long long events, failovers, skipped, seq;
	int pending;			/* replies owed by Redis */
	int failed;
	char prefix[48];		/* generation ids */
};

/* ---- deterministic randomness ---- */

static uint64_t
rnd(struct sim *s)
{
	uint64_t z = (s->rng += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static double
unif(struct sim *s)
{
	return (double)(rnd(s) >> 11) / 9007199254740992.0;
}

/* Exponential with the given mean. */
static double
expo(struct sim *s, double mean)
{
	return -log(1.0 - unif(s)) * mean;
}

/* A count around lambda (normal approximation past 30). */
static int
poisson(struct sim *s, double lambda)
{
	double l = exp(-lambda), p = 1.0, g;
	int k = 0;

	if (lambda > 30) {
		g = sqrt(-2.0 * log(1.0 - unif(s))) * cos(2.0 * M_PI * unif(s));
		k = (int)lround(lambda + g * sqrt(lambda));
		return k < 0 ? 0 : k;
	}
	do {
		k++;
		p *= unif(s);
	} while (p > l);
	return k - 1;
}

static double
hash01(const char *str)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *str; str++)
		h = (h ^ (unsigned char)*str) * 1099511628211ULL;
	return (double)(h % 10007) / 10007.0;
}

/* ---- database ---- */

static PGresult *
sq(struct sim *s, const char *sql, int n, const char *const *params)
{
	PGresult *r = PQexecParams(s->db, sql, n, NULL, params, NULL, NULL, 0);

	if (PQresultStatus(r) != PGRES_TUPLES_OK && PQresultStatus(r) != PGRES_COMMAND_OK) {
		fprintf(stderr, "agoractl: simulate: %s", PQresultErrorMessage(r));
		PQclear(r);
		return NULL;
	}
	return r;
}

static const char catalog_sql[] =
	"SELECT e.id::text, e.model_id, m.author, e.provider_id, p.name, coalesce(m.origin, ''), m.created::text,"
	" e.prompt_uusd_per_mtok::text, e.completion_uusd_per_mtok::text,"
	" coalesce(e.cost_prompt_uusd_per_mtok, e.prompt_uusd_per_mtok)::text,"
	" coalesce(e.cost_completion_uusd_per_mtok, e.completion_uusd_per_mtok)::text"
	" FROM endpoints e JOIN models m ON m.id = e.model_id JOIN providers p ON p.id = e.provider_id"
	" WHERE e.status = 'active' AND m.status = 'active' AND p.status = 'active'"
	" ORDER BY e.model_id, e.prompt_uusd_per_mtok + e.completion_uusd_per_mtok, e.provider_id";

static int
model_index(struct sim *s, const PGresult *r, int i)
{
	struct sim_model *m;

	for (int k = 0; k < s->nmodels; k++)
		if (strcmp(s->models[k].id, PQgetvalue(r, i, 1)) == 0)
			return k;
	if (s->nmodels >= SIM_MAX_MODELS)
		return -1;
	m = &s->models[s->nmodels];
	snprintf(m->id, sizeof(m->id), "%s", PQgetvalue(r, i, 1));
	snprintf(m->author, sizeof(m->author), "%s", PQgetvalue(r, i, 2));
	snprintf(m->origin, sizeof(m->origin), "%s", PQgetvalue(r, i, 5));
	m->created = strtoll(PQgetvalue(r, i, 6), NULL, 10);
	m->base = 0.6 + 0.8 * hash01(m->id);
	m->coder = strstr(m->id, "coder") != NULL;
	m->thinking = strstr(m->id, "thinking") != NULL || strstr(m->id, "reason") != NULL;
	return s->nmodels++;
}

static int
load_catalog(struct sim *s)
{
	PGresult *r = sq(s, catalog_sql, 0, NULL);

	if (!r)
		return -1;
	for (int i = 0; i < PQntuples(r) && s->neps < SIM_MAX_EPS; i++) {
		struct sim_ep *e = &s->eps[s->neps];
		int m = model_index(s, r, i);

		if (m < 0 || s->models[m].neps >= 16)
			continue;
		e->id = strtoll(PQgetvalue(r, i, 0), NULL, 10);
		snprintf(e->provider, sizeof(e->provider), "%s", PQgetvalue(r, i, 3));
		snprintf(e->provider_name, sizeof(e->provider_name), "%s", PQgetvalue(r, i, 4));
		e->pp = strtoll(PQgetvalue(r, i, 7), NULL, 10);
		e->cp = strtoll(PQgetvalue(r, i, 8), NULL, 10);
		e->cpp = strtoll(PQgetvalue(r, i, 9), NULL, 10);
		e->ccp = strtoll(PQgetvalue(r, i, 10), NULL, 10);
		e->model = m;
		e->ttft_ms = 120 + 280 * hash01(e->provider);
		e->tps = 45 + 95 * hash01(e->provider + 1);
		s->models[m].eps[s->models[m].neps++] = s->neps++;
	}
	PQclear(r);
	if (s->neps == 0) {
		fprintf(stderr, "agoractl: simulate: the catalog has no active endpoint (agoractl catalog import)\n");
		return -1;
	}
	return 0;
}

/* The newest model rises, the oldest declines; the dearest endpoint of the
 * model with the most endpoints gets a price cut; the provider with the most
 * endpoints has an outage. Ties go to the smallest id. */
static void
pick_scenarios(struct sim *s)
{
	int best = -1, most = 0;

	s->rising = s->declining = s->cut_ep = -1;
	for (int m = 0; m < s->nmodels; m++) {
		const struct sim_model *x = &s->models[m];

		if (s->rising < 0 || x->created > s->models[s->rising].created)
			s->rising = m;
		if (s->declining < 0 || x->created < s->models[s->declining].created)
			s->declining = m;
		if (x->neps > most) {
			most = x->neps;
			best = m;
		}
	}
	if (s->rising == s->declining)
		s->declining = -1;
	if (best >= 0 && most >= 2)
		s->cut_ep = s->models[best].eps[most - 1];
	for (int i = 0; i < s->neps; i++) {
		int n = 0;

		for (int j = 0; j < s->neps; j++)
			n += strcmp(s->eps[j].provider, s->eps[i].provider) == 0;
		if (n > s->outage_eps || (n == s->outage_eps && strcmp(s->eps[i].provider, s->outage) < 0)) {
			s->outage_eps = n;
			snprintf(s->outage, sizeof(s->outage), "%s", s->eps[i].provider);
		}
	}
	s->cut_ms = s->start_ms + (s->end_ms - s->start_ms) / 2;
	s->outage_from = (s->start_ms + (s->end_ms - s->start_ms) * 65 / 100) / DAY_MS * DAY_MS;
	s->outage_to = s->outage_from + DAY_MS;
}

/* The simulated accounts and keys (created when missing). */
static int
ensure_clients(struct sim *s)
{
	for (int c = 0; c < NCLIENTS; c++) {
		const char *p1[1] = { clients[c].account };
		char acct[24], key[KEY_LEN + 1], hexhash[2 * KEY_HASH_LEN + 3] = "\\x", prefix[KEY_SHOWN_PREFIX_LEN + 1];
		unsigned char hash[KEY_HASH_LEN];
		const char *p2[4] = { acct, clients[c].key, hexhash, prefix };
		PGresult *r = sq(s, "INSERT INTO accounts (name) VALUES ($1) ON CONFLICT (name) DO UPDATE SET name = "
				 "excluded.name RETURNING id::text", 1, p1);

		if (!r)
			return -1;
		snprintf(acct, sizeof(acct), "%s", PQgetvalue(r, 0, 0));
		s->account_id[c] = strtoll(acct, NULL, 10);
		PQclear(r);
		if (keyhash_generate(key) < 0 ||
		    keyhash_hash(s->conf->key_secret, strlen(s->conf->key_secret), key, KEY_LEN, hash) < 0)
			return -1;
		for (int i = 0; i < KEY_HASH_LEN; i++)
			snprintf(hexhash + 2 + 2 * i, 3, "%02x", hash[i]);
		snprintf(prefix, sizeof(prefix), "%.*s", KEY_SHOWN_PREFIX_LEN, key);
		r = sq(s, "WITH k AS (SELECT id FROM api_keys WHERE account_id = $1::bigint AND name = $2 LIMIT 1),"
		       " n AS (INSERT INTO api_keys (account_id, hash, prefix, name) SELECT $1::bigint, $3::bytea, $4, $2"
		       "  WHERE NOT EXISTS (SELECT 1 FROM k) RETURNING id)"
		       " SELECT id::text FROM k UNION ALL SELECT id::text FROM n", 4, p2);
		if (!r)
			return -1;
		s->key_id[c] = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
		PQclear(r);
	}
	return 0;
}

/* ---- the traffic model ---- */

static double
model_weight(const struct sim *s, int m, double f, const struct sim_client *c)
{
	const struct sim_model *x = &s->models[m];
	double w = x->base;

	if (m == s->rising)
		w *= f < 0.3 ? 0 : 0.3 + 8.0 * (f - 0.3);
	else if (m == s->declining)
		w *= 2.2 - 1.8 * f;
	if (c->origin && strcmp(c->origin, x->origin) == 0)
		w *= c->origin_mult;
	if (x->coder)
		w *= c->coder ? 6.0 : 0.25;
	return w;
}

static int
pick_client(struct sim *s)
{
	double total = 0, u;

	for (int c = 0; c < NCLIENTS; c++)
		total += clients[c].weight;
	u = unif(s) * total;
	for (int c = 0; c < NCLIENTS; c++)
		if ((u -= clients[c].weight) < 0)
			return c;
	return NCLIENTS - 1;
}

static int
pick_model(struct sim *s, double f, int client)
{
	double w[SIM_MAX_MODELS], total = 0, u;

	for (int m = 0; m < s->nmodels; m++)
		total += w[m] = model_weight(s, m, f, &clients[client]);
	u = unif(s) * total;
	for (int m = 0; m < s->nmodels; m++)
		if ((u -= w[m]) < 0)
			return m;
	return s->nmodels - 1;
}

/* An endpoint's prices at time ts (the cut endpoint was dearer before). */
static void
prices_at(const struct sim *s, int ep, int64_t ts, int64_t p[4])
{
	const struct sim_ep *e = &s->eps[ep];
	int before = ep == s->cut_ep && ts < s->cut_ms;

	p[0] = before ? e->pp * 8 / 5 : e->pp;
	p[1] = before ? e->cp * 8 / 5 : e->cp;
	p[2] = before ? e->cpp * 8 / 5 : e->cpp;
	p[3] = before ? e->ccp * 8 / 5 : e->ccp;
}

/* The router's order: one endpoint at random weighted 1 / price², then the
 * others cheapest first (at the prices of the time). */
static int
order_endpoints(struct sim *s, int m, int64_t ts, int *out)
{
	const struct sim_model *x = &s->models[m];
	double w[16], total = 0, u;
	int64_t price[16], p[4];
	int first = 0, n = 0;

	for (int i = 0; i < x->neps; i++) {
		prices_at(s, x->eps[i], ts, p);
		price[i] = p[0] + p[1] > 0 ? p[0] + p[1] : 1;
		total += w[i] = 1.0 / ((double)price[i] * (double)price[i]);
	}
	u = unif(s) * total;
	for (first = 0; first < x->neps - 1 && (u -= w[first]) >= 0; first++)
		;
	out[n++] = x->eps[first];
	for (int k = 0; k < x->neps; k++) {	/* the rest by price; ties keep catalog order */
		int best = -1;

		for (int i = 0; i < x->neps; i++) {
			int used = 0;

			for (int j = 0; j < n; j++)
				used |= out[j] == x->eps[i];
			if (!used && (best < 0 || price[i] < price[best]))
				best = i;
		}
		if (best >= 0)
			out[n++] = x->eps[best];
	}
	return n;
}

/* Whether an attempt on endpoint ep at ts fails, and with which status. */
static int
attempt_status(struct sim *s, int ep, int64_t ts)
{
	double u = unif(s);

	if (ts >= s->outage_from && ts < s->outage_to && strcmp(s->eps[ep].provider, s->outage) == 0 && u < 0.8)
		return u < 0.5 ? 502 : u < 0.7 ? 503 : 504;
	if (u > 0.996)
		return u > 0.998 ? 429 : 500;
	return 200;
}

/* ---- one event ---- */

struct sim_event {
	int client, model, ep, attempts, status, streamed;
	int tried[8], tried_status[8], tried_latency[8];
	int64_t ts, pt, ct, reasoning, cost, pcost;
	int latency_ms, ttft_ms;
	int64_t tps_milli;
	const char *finish;
};

static void
event_usage(struct sim *s, struct sim_event *e)
{
	const struct sim_ep *ep = &s->eps[e->ep];
	const struct sim_model *m = &s->models[e->model];
	int64_t p[4];
	double gen_ms, tps = ep->tps * (0.8 + 0.4 * unif(s)), u = unif(s);

	e->pt = 60 + (int64_t)expo(s, clients[e->client].coder ? 3000 : 900);
	e->ct = 20 + (int64_t)expo(s, 350);
	e->reasoning = m->thinking ? 100 + (int64_t)expo(s, 600) : 0;
	e->ct += e->reasoning;
	e->streamed = unif(s) < 0.65;
	e->finish = u < 0.94 ? "stop" : u < 0.99 ? "length" : "tool_calls";
	if (e->status != 200) {			/* a stream cut after bytes went out */
		e->ct = e->ct / 3 + 1;
		e->reasoning = e->reasoning < e->ct ? e->reasoning : 0;
		e->finish = NULL;
	}
	e->ttft_ms = (int)(ep->ttft_ms * (0.7 + 0.6 * unif(s)));
	if (e->ts >= s->outage_from && e->ts < s->outage_to && strcmp(ep->provider, s->outage) == 0)
		e->ttft_ms *= 3;
	gen_ms = (double)e->ct * 1000.0 / tps;
	e->latency_ms = e->ttft_ms + (int)gen_ms + e->tried_latency[0] * (e->attempts > 1);
	e->tps_milli = gen_ms > 0 ? (int64_t)((double)e->ct * 1e6 / gen_ms) : 0;
	prices_at(s, e->ep, e->ts, p);
	e->cost = money_cost_nusd(e->pt, p[0]) + money_cost_nusd(e->ct, p[1]);
	e->pcost = money_cost_nusd(e->pt, p[2]) + money_cost_nusd(e->ct, p[3]);
}

/* Picks who, what and where; 0 when the request was served (an event),
 * -1 when every attempt failed (no generation, nothing billed). */
static int
event_make(struct sim *s, int64_t ts, double f, struct sim_event *e)
{
	int order[16], n;

	memset(e, 0, sizeof(*e));
	e->ts = ts;
	e->client = pick_client(s);
	e->model = pick_model(s, f, e->client);
	n = order_endpoints(s, e->model, ts, order);
	for (int i = 0; i < n && i < 3; i++) {		/* max_attempts */
		int st = attempt_status(s, order[i], ts);

		e->tried[e->attempts] = order[i];
		e->tried_status[e->attempts] = st;
		e->tried_latency[e->attempts] = st == 504 ? 1500 : 20 + (int)expo(s, 80);
		e->attempts++;
		if (st == 200) {
			e->ep = order[i];
			e->status = unif(s) < 0.002 ? 502 : 200;
			event_usage(s, e);
			return 0;
		}
	}
	return -1;
}

static char *
event_json(struct sim *s, const struct sim_event *e)
{
	const struct sim_client *c = &clients[e->client];
	const struct sim_ep *ep = &s->eps[e->ep];
	cJSON *o = cJSON_CreateObject(), *tried;
	char id[96], *out;

	snprintf(id, sizeof(id), "%s-%07lld", s->prefix, s->seq);
	cJSON_AddStringToObject(o, "id", id);
	cJSON_AddNumberToObject(o, "ts", (double)e->ts);
	cJSON_AddNumberToObject(o, "account", (double)s->account_id[e->client]);
	cJSON_AddNumberToObject(o, "key", (double)s->key_id[e->client]);
	if (c->app_url)
		cJSON_AddStringToObject(o, "app_url", c->app_url);
	if (c->app_title)
		cJSON_AddStringToObject(o, "app_title", c->app_title);
	cJSON_AddStringToObject(o, "model", s->models[e->model].id);
	cJSON_AddStringToObject(o, "author", s->models[e->model].author);
	cJSON_AddStringToObject(o, "provider", ep->provider);
	cJSON_AddNumberToObject(o, "endpoint", (double)ep->id);
	cJSON_AddNumberToObject(o, "pt", (double)e->pt);
	cJSON_AddNumberToObject(o, "ct", (double)e->ct);
	cJSON_AddNumberToObject(o, "cached", 0);
	cJSON_AddNumberToObject(o, "reasoning", (double)e->reasoning);
	cJSON_AddNumberToObject(o, "cost", (double)e->cost);
	cJSON_AddNumberToObject(o, "pcost", (double)e->pcost);
	cJSON_AddNumberToObject(o, "latency_ms", e->latency_ms);
	cJSON_AddNumberToObject(o, "ttft_ms", e->ttft_ms);
	cJSON_AddNumberToObject(o, "tps_milli", (double)e->tps_milli);
	cJSON_AddBoolToObject(o, "stream", e->streamed);
	cJSON_AddBoolToObject(o, "estimated", 0);
	cJSON_AddNumberToObject(o, "status", e->status);
	cJSON_AddNumberToObject(o, "attempts", e->attempts);
	if (e->finish)
		cJSON_AddStringToObject(o, "finish", e->finish);
	if (e->attempts > 1) {
		tried = cJSON_AddArrayToObject(o, "tried");
		for (int i = 0; i < e->attempts; i++) {
			const struct sim_ep *t = &s->eps[e->tried[i]];
			cJSON *a = cJSON_CreateObject();

			cJSON_AddStringToObject(a, "provider", t->provider);
			cJSON_AddStringToObject(a, "provider_name", t->provider_name);
			cJSON_AddStringToObject(a, "model", s->models[t->model].id);
			cJSON_AddNumberToObject(a, "endpoint_id", (double)t->id);
			cJSON_AddNumberToObject(a, "status", e->tried_status[i]);
			cJSON_AddNumberToObject(a, "latency", i + 1 < e->attempts ? e->tried_latency[i] : e->latency_ms);
			cJSON_AddItemToArray(tried, a);
		}
	}
	out = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return out;
}

/* ---- Redis ---- */

static void
redis_reply_cb(struct rds *rd, redisReply *r, void *arg)
{
	struct sim *s = arg;

	(void)rd;
	s->pending--;
	if ((!r || r->type == REDIS_REPLY_ERROR) && !s->failed) {
		fprintf(stderr, "agoractl: simulate: Redis: %s\n", r ? r->str : "link lost");
		s->failed = 1;
	}
}

/* Runs the private loop until every reply is in. */
static int
redis_drain(struct sim *s)
{
	while (s->pending > 0 && event_base_loop(s->base, EVLOOP_ONCE) == 0)
		;
	return s->failed || s->pending > 0 ? -1 : 0;
}

/* One pipelined command (argv, NUL-terminated strings) routed by argv[1]. */
static int
redis_cmd(struct sim *s, int argc, const char **argv)
{
	if (rds_command_argv(s->rd, argv[1], strlen(argv[1]), redis_reply_cb, s, argc, argv, NULL) < 0) {
		fprintf(stderr, "agoractl: simulate: Redis: cannot send\n");
		return -1;
	}
	s->pending++;
	return 0;
}

static int
redis_send(struct sim *s, const struct sim_event *e, const char *json)
{
	int n = s->conf->usage_shards;
	char key[40], stream[40], f[160], v[24];
	const char *xadd[] = { "XADD", stream, "*", "e", json }, *incr[] = { "HINCRBY", key, f, "1" },
		   *expire[] = { "EXPIRE", key, "7200" };

	/* the stream of the account's shard, as the router does */
	rds_shard_key(rds_shard_of(s->account_id[e->client], n), n, stream, sizeof(stream));
	if (redis_cmd(s, 5, xadd) < 0)
		return -1;
	if (e->ts >= s->now_ms - SIM_LIVE_MS) {		/* the router's live counters */
		snprintf(key, sizeof(key), "live:%lld", (long long)(e->ts / 60000));
		snprintf(f, sizeof(f), "r|%s|%s", s->models[e->model].id, s->eps[e->ep].provider);
		if (redis_cmd(s, 4, incr) < 0)
			return -1;
		f[0] = 't';
		snprintf(v, sizeof(v), "%lld", (long long)(e->pt + e->ct));
		incr[3] = v;
		if (redis_cmd(s, 4, incr) < 0 || redis_cmd(s, 3, expire) < 0)
			return -1;
	}
	return s->pending >= SIM_PIPELINE ? redis_drain(s) : 0;
}

static void
redis_up_cb(struct rds *rd, void *arg)
{
	struct sim *s = arg;

	(void)rd;
	s->up = 1;
	event_base_loopbreak(s->base);
}

/* Connects (any mode: rds_new reads the configuration), waiting up to 5 s. */
static int
redis_open(struct sim *s)
{
	struct timeval tv = { 5, 0 };
	char err[256] = "out of memory";

	if (!(s->base = event_base_new()) || !(s->rd = rds_new(s->base, s->conf, err, sizeof(err)))) {
		fprintf(stderr, "agoractl: simulate: %s\n", err);
		return -1;
	}
	rds_set_connect_cb(s->rd, redis_up_cb, s);
	rds_connect(s->rd);
	event_base_loopexit(s->base, &tv);
	event_base_dispatch(s->base);
	if (!s->up) {
		fprintf(stderr, "agoractl: simulate: cannot reach Redis (%s mode)\n", rds_mode(s->rd));
		return -1;
	}
	return 0;
}

/* ---- the passes ---- */

static int
month_of(const struct sim *s, int64_t ts)
{
	int y, m, d;

	days_to_civil((int32_t)(ts / DAY_MS), &y, &m, &d);
	return y * 12 + m - 1 - s->month0;
}

static int
event_emit(struct sim *s, const struct sim_event *e)
{
	char *json;
	int rc;

	s->events++;
	s->failovers += e->attempts > 1;
	if (!s->emit) {
		int mo = month_of(s, e->ts);

		if (mo >= 0 && mo < SIM_MAX_MONTHS)
			s->month_cost[e->client][mo] += e->cost;
		return 0;
	}
	s->seq++;
	if (!(json = event_json(s, e)))
		return -1;
	rc = redis_send(s, e, json);
	cJSON_free(json);
	return rc;
}

/* Events per hour: diurnal (peak 15:00 UTC), weekends at 60%, volume
 * growing from 70% to 130% over the period; the mean is about `rate`. */
static double
hour_lambda(const struct sim *s, int64_t hour_ms, double f)
{
	int h = (int)((hour_ms / HOUR_MS) % 24);
	int wd = days_weekday((int32_t)(hour_ms / DAY_MS));
	double diurnal = (0.35 + 0.65 * (0.5 - 0.5 * cos(2.0 * M_PI * (h - 3) / 24.0))) / 0.675;
	double week = (wd >= 5 ? 0.6 : 1.0) / (6.2 / 7.0);

	return s->rate * diurnal * week * (0.7 + 0.6 * f);
}

static int
sim_pass(struct sim *s, int emit)
{
	struct sim_event e;

	s->emit = emit;
	s->rng = s->seed * 0x2545f4914f6cdd1dULL + 1;
	s->events = s->failovers = s->skipped = s->seq = 0;
	for (int64_t h = s->start_ms; h < s->end_ms; h += HOUR_MS) {
		double f = (double)(h - s->start_ms) / (double)(s->end_ms - s->start_ms);
		int n = poisson(s, hour_lambda(s, h, f));

		for (int i = 0; i < n; i++) {
			int64_t ts = h + (int64_t)(unif(s) * HOUR_MS);

			int served = event_make(s, ts, f + (double)(ts - h) / (double)(s->end_ms - s->start_ms), &e);

			if (ts >= s->end_ms)
				continue;
			if (served < 0)
				s->skipped++;
			else if (event_emit(s, &e) < 0)
				return -1;
		}
	}
	return emit ? redis_drain(s) : 0;
}

/* ---- credits, partitions, waiting ---- */

static void
ts_text(int64_t ms, char *buf, size_t len)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%d %H:%M:%S+00", &tm);
}

/* Each account's usage of a month, plus a fifth and $5, rounded up to whole
 * dollars, credited at the start of the month (the first one an hour
 * before the first event). */
static void
top_up(struct sim *s, sim_credit_fn credit)
{
	for (int c = 0; c < NCLIENTS; c++) {
		int first = 1;

		for (int k = 0; k < c; k++)
			first &= strcmp(clients[k].account, clients[c].account) != 0;
		if (!first)
			continue;
		for (int mo = 0; mo < SIM_MAX_MONTHS; mo++) {
			int64_t cost = 0, amount, at_ms;
			char acct[24], at[40];
			int y = (s->month0 + mo) / 12, m = (s->month0 + mo) % 12 + 1;

			for (int k = c; k < NCLIENTS; k++)
				if (strcmp(clients[k].account, clients[c].account) == 0)
					cost += s->month_cost[k][mo];
			if (cost == 0)
				continue;
			amount = (cost + cost / 5 + 5000000000LL + 999999999LL) / 1000000000LL * 1000000000LL;
			at_ms = (int64_t)days_from_civil(y, m, 1) * DAY_MS;
			if (at_ms < s->start_ms)
				at_ms = s->start_ms - HOUR_MS;
			snprintf(acct, sizeof(acct), "%lld", (long long)s->account_id[c]);
			ts_text(at_ms, at, sizeof(at));
			credit(acct, amount, "simulated top-up", at);
		}
	}
}

/* Monthly partitions for the simulated past (agora_event_partitions_between,
 * migration 0010), so old events do not pile up in the default partition. */
static int
make_partitions(struct sim *s)
{
	char lo[DAYS_DATE_LEN], hi[DAYS_DATE_LEN];
	const char *params[2] = { lo, hi };
	PGresult *r;

	days_format((int32_t)(s->start_ms / DAY_MS), lo);
	days_format((int32_t)(s->end_ms / DAY_MS), hi);
	if (!(r = sq(s, "SELECT agora_event_partitions_between($1::date, $2::date)", 2, params)))
		return -1;
	PQclear(r);
	return 0;
}

static long long
billed_count(struct sim *s)
{
	char ids[256] = "{", like[64];
	const char *params[2] = { ids, like };
	PGresult *r;
	long long n;

	for (int c = 0; c < NCLIENTS; c++)
		snprintf(ids + strlen(ids), sizeof(ids) - strlen(ids), "%s%lld", c ? "," : "",
			 (long long)s->account_id[c]);
	strcat(ids, "}");
	snprintf(like, sizeof(like), "%s-%%", s->prefix);
	if (!(r = sq(s, "SELECT count(*) FROM usage_events WHERE account_id = ANY($1::bigint[])"
		     " AND generation_id LIKE $2", 2, params)))
		return -1;
	n = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	return n;
}

static double
now_s(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (double)tv.tv_sec + tv.tv_usec / 1e6;
}

static int
wait_billed(struct sim *s, int seconds)
{
	double t0 = now_s();
	long long n = 0;

	while (now_s() - t0 < seconds) {
		if ((n = billed_count(s)) < 0)
			return -1;
		if (n >= s->seq) {
			printf("simulate: billing recorded the %lld events in %.1f s\n", n, now_s() - t0);
			return 0;
		}
		usleep(200000);
	}
	fprintf(stderr, "agoractl: simulate: after %d s billing has recorded %lld of %lld events (is agora-billing "
		"running?)\n", seconds, n, s->seq);
	return -1;
}

/* ---- command ---- */

static int
already_simulated(struct sim *s)
{
	PGresult *r = sq(s, "SELECT EXISTS (SELECT 1 FROM ledger l JOIN accounts a ON a.id = l.account_id"
			 " WHERE a.name LIKE 'sim-%' AND l.note = 'simulated top-up')", 0, NULL);
	int yes;

	if (!r)
		return -1;
	yes = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
	PQclear(r);
	return yes;
}

static int
parse_args(struct sim *s, int argc, char **argv, int *force, int *wait)
{
	for (int i = 1; i < argc; i++) {
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		int32_t day;
		long long n;
		char *end;

		if (strcmp(argv[i], "--force") == 0) {
			*force = 1;
			continue;
		}
		if (strcmp(argv[i], "--end") == 0 && v && days_parse(v, &day) == 0) {
			s->end_ms = (int64_t)day * DAY_MS;
			i++;
			continue;
		}
		if (!v || (n = strtoll(v, &end, 10), *end) || n < 0)
			return -1;
		if (strcmp(argv[i], "--days") == 0 && n >= 1 && n <= 400)
			s->days = (int)n;
		else if (strcmp(argv[i], "--seed") == 0)
			s->seed = (uint64_t)n;
		else if (strcmp(argv[i], "--rate") == 0 && n >= 1 && n <= 1000000)
			s->rate = (int)n;
		else if (strcmp(argv[i], "--wait") == 0 && n <= 3600)
			*wait = (int)n;
		else
			return -1;
		i++;
	}
	return 0;
}

static void
describe(const struct sim *s)
{
	char from[DAYS_DATE_LEN], to[DAYS_DATE_LEN], outage[DAYS_DATE_LEN], cut[DAYS_DATE_LEN];

	days_format((int32_t)(s->start_ms / DAY_MS), from);
	days_format((int32_t)((s->end_ms - 1) / DAY_MS), to);
	days_format((int32_t)(s->outage_from / DAY_MS), outage);
	days_format((int32_t)(s->cut_ms / DAY_MS), cut);
	printf("simulate: %d days (%s to %s), seed %llu, ~%d events/hour: %lld events (%lld with fail-overs, "
	       "%lld requests failed everywhere and were not billed)\n", s->days, from, to,
	       (unsigned long long)s->seed, s->rate, s->events, s->failovers, s->skipped);
	printf("simulate: rising: %s; declining: %s; outage: %s on %s; price cut: %s %s on %s (was 8/5 of today's)\n",
	       s->rising >= 0 ? s->models[s->rising].id : "-", s->declining >= 0 ? s->models[s->declining].id : "-",
	       s->outage, outage, s->cut_ep >= 0 ? s->eps[s->cut_ep].provider : "-",
	       s->cut_ep >= 0 ? s->models[s->eps[s->cut_ep].model].id : "-", cut);
}

static int
simulate(struct sim *s, sim_credit_fn credit, int wait)
{
	int y, m, d;

	if (load_catalog(s) < 0 || ensure_clients(s) < 0 || make_partitions(s) < 0)
		return 1;
	pick_scenarios(s);
	days_to_civil((int32_t)(s->start_ms / DAY_MS), &y, &m, &d);
	s->month0 = y * 12 + m - 1;
	sim_pass(s, 0);
	top_up(s, credit);
	if (redis_open(s) < 0)
		return 1;
	if (sim_pass(s, 1) < 0)
		return 1;
	describe(s);
	printf("simulate: %lld events queued on the stream `usage` for agora-billing\n", s->seq);
	return wait > 0 && wait_billed(s, wait) < 0 ? 1 : 0;
}

int
ctl_simulate(PGconn *db, const struct agora_conf *conf, sim_credit_fn credit, int argc, char **argv)
{
	struct sim *s = calloc(1, sizeof(*s));
	int force = 0, wait = 0, rc;

	if (!s)
		return 1;
	s->db = db;
	s->conf = conf;
	s->days = 90;
	s->rate = 200;
	s->seed = 1;
	if (parse_args(s, argc, argv, &force, &wait) < 0) {
		free(s);
		return 2;
	}
	if ((rc = force ? 0 : already_simulated(s)) != 0) {
		if (rc > 0)
			printf("simulate: simulated data is already there (accounts sim-*); nothing done (--force adds more)\n");
		free(s);
		return rc > 0 ? 0 : 1;
	}
	s->now_ms = (int64_t)(now_s() * 1000);
	if (!s->end_ms || s->end_ms > s->now_ms)
		s->end_ms = s->now_ms;
	s->start_ms = (s->end_ms - (int64_t)s->days * DAY_MS) / HOUR_MS * HOUR_MS;
	snprintf(s->prefix, sizeof(s->prefix), "gen-sim%llu-%lld", (unsigned long long)s->seed,
		 (long long)(s->start_ms / HOUR_MS));
	rc = simulate(s, credit, wait);
	rds_free(s->rd);	/* after the loop: every reply is in */
	if (s->base)
		event_base_free(s->base);
	free(s);
	return rc;
}
