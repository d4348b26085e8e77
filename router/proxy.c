/*
 * proxy: one chat completion, from the client's request to the provider's
 * answer and back. A request is a small state machine:
 *
 *   AUTH ─key ok─▶ UPSTREAM ─200 + first event─▶ STREAMING ─▶ DONE
 *                     │ fails before a byte reached the client
 *                     └──▶ next candidate (cheapest first), or the error
 *
 * The client's key never goes upstream; the provider's own key does. Stream
 * events are parsed only to rewrite id/model/provider and to read usage.
 * Providers speaking Anthropic Messages get a translated body, and their
 * answers and events are translated back first (anthropic.c).
 * No prompt or completion text is logged or stored.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <openssl/rand.h>

#include "anthropic.h"
#include "chatscan.h"
#include "clock.h"
#include "jscan.h"
#include "jsonw.h"
#include "log.h"
#include "money.h"
#include "request.h"
#include "route.h"
#include "router.h"
#include "sse.h"
#include "utf8.h"

#define PROXY_MAX_CANDIDATES 16
#define PROXY_ERR_BODY_MAX (64 * 1024)
#define PROXY_SSE_EVENT_MAX (4 * 1024 * 1024)

enum proxy_state { PX_AUTH, PX_UPSTREAM, PX_STREAMING, PX_DONE };

/* One attempt: which endpoint, what came of it. */
struct proxy_try {
	struct rcat_endpoint *e;
	int status;			/* 200, or the status its failure maps to */
	int64_t t_ms;			/* started */
	int latency_ms;
};

struct proxy {
	struct router *rt;
	struct httpd_req *req;
	enum proxy_state state;
	int aborted;			/* client gone */
	struct rcat *cat;		/* snapshot held for the request */
	cJSON *body;			/* the client's JSON, edited per attempt */
	int shallow;			/* body's `messages` is raw text (request_parse) */
	cJSON *whole;			/* shallow: the whole tree, once an attempt needs it */
	int stream, want_usage;
	struct rcat_endpoint *cands[PROXY_MAX_CANDIDATES];
	int ncands, attempt;
	struct upstream_req *up;
	int up_status, retry_after;
	struct evbuffer *buf;		/* buffered answer or error body */
	struct jsonw out;		/* the stream event being written */
	struct jsonw ids;		/* a chunk's id/object and model/provider (chunk_ids) */
	size_t ids_split;		/* where created goes in ids */
	struct rcat_endpoint *ids_for;	/* the endpoint ids was written for */
	struct sse *sse;
	struct anthropic_stream *anth;	/* stream translation (anthropic endpoints) */
	int client_started;		/* a byte reached the client */
	int saw_done, saw_finish;
	char finish[CHATSCAN_FINISH];	/* finish_reason seen (chatscan's copy) */
	int64_t prompt_tokens, completion_tokens;
	int have_usage;
	int64_t t_start_ms, t_first_ms;	/* start; first byte to the client */
	int64_t account_id, key_id;
	int64_t key_limit, key_usage, balance;	/* from the key lookup (cached) */
	int64_t credits, billed;	/* the account's total credits, billed usage (idem) */
	struct budget_hold hold;	/* the worst case reserved from a credit lease */
	int64_t cost_nusd;		/* what the generation cost, once metered */
	char *app_url, *app_title;	/* attribution headers, copied */
	int64_t stream_chars;		/* completion text seen (estimates) */
	int estimated;			/* tokens counted by us, not the provider */
	int metered;
	struct route_prefs prefs;	/* the request's `provider` object */
	struct policy *policy;		/* the operator's, for this key (ref) */
	struct proxy_try tries[PROXY_MAX_CANDIDATES];	/* each attempt's outcome */
	int ntries;
	int fail_status;		/* status the last failure maps to */
	enum rstats_outcome outcome;	/* the current attempt's, for /metrics (RS_NONE: from its status) */
	char fail_msg[256];
	char gen_id[48];
};

static void proxy_attempt(struct proxy *p);
static int64_t proxy_cost(struct proxy *p);
static int64_t proxy_provider_cost(struct proxy *p);
static void proxy_next(struct proxy *p, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Random bytes for generation ids, drawn from OpenSSL 4 KiB at a time (one
 * RAND_bytes call for ~200 ids instead of one each: its lock, fork check and
 * DRBG set-up were 2.6% of a request); emptied in a forked child so that two
 * workers never hand out the same bytes. -1 when OpenSSL fails. */
static unsigned char gen_pool[4096];
static size_t gen_pool_left;

static void
gen_pool_forked(void)
{
	gen_pool_left = 0;
}

static int
gen_byte(void)
{
	static int atfork;

	if (!gen_pool_left) {
		if (!atfork++)
			pthread_atfork(NULL, NULL, gen_pool_forked);
		if (RAND_bytes(gen_pool, sizeof(gen_pool)) != 1)
			return -1;
		gen_pool_left = sizeof(gen_pool);
	}
	return gen_pool[--gen_pool_left];
}

/* gen-<unix seconds>-<20 letters or digits, uniform: bytes from 248 up
 * are drawn again> */
static void
gen_id_new(char *out, size_t len)
{
	static const char alnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
	char tail[21];

	for (int i = 0, b; i < 20; i++) {
		while ((b = gen_byte()) >= 248)
			;
		tail[i] = alnum[(b < 0 ? 0 : b) % 62];
	}
	tail[20] = '\0';
	snprintf(out, len, "gen-%lld-%s", (long long)(clock_loop_ms() / 1000), tail);
}

/* ---- lifetime ---- */

static void
proxy_free(struct proxy *p)
{
	int64_t now = clock_loop_ms();

	p->rt->inflight--;
	p->rt->streams_inflight -= p->client_started;
	rstats_completion(p->rt->rs, p->stream, now - p->t_start_ms, p->t_first_ms ? p->t_first_ms - p->t_start_ms : -1);
	budget_done(p->rt->budget, &p->hold, p->metered ? p->cost_nusd : 0);
	if (p->up)
		upstream_cancel(p->up);
	if (p->cat)
		rcat_unref(p->cat);
	policy_unref(p->policy);
	cJSON_Delete(p->body);
	cJSON_Delete(p->whole);
	free(p->app_url);
	free(p->app_title);
	if (p->buf)
		evbuffer_free(p->buf);
	free(p->out.p);
	free(p->ids.p);
	sse_free(p->sse);
	anthropic_stream_free(p->anth);
	free(p);
}

static void
proxy_log(struct proxy *p, int status)
{
	struct rcat_endpoint *e = p->attempt < p->ncands ? p->cands[p->attempt] : NULL;

	struct jsonw w = { NULL, 0, 0, 0 };
	const char *model = e ? e->model->id : "-", *prov = e ? e->prov->id : "-";

	if (log_get_level() < LOG_INFO)
		return;
	/* "<gen id> model=%s provider=%s status=%d attempts=%d stream=%d
	 * tokens=%lld+%lld ms=%lld", without printf (a tenth of a request) */
	jsonw_reserve(&w, 256);
	jsonw_add(&w, p->gen_id, strlen(p->gen_id));
	JSONW_LIT(&w, " model=");
	jsonw_add(&w, model, strlen(model));
	JSONW_LIT(&w, " provider=");
	jsonw_add(&w, prov, strlen(prov));
	JSONW_LIT(&w, " status=");
	jsonw_int(&w, status);
	JSONW_LIT(&w, " attempts=");
	jsonw_int(&w, p->attempt + (e ? 1 : 0));
	JSONW_LIT(&w, " stream=");
	jsonw_int(&w, p->stream);
	JSONW_LIT(&w, " tokens=");
	jsonw_int(&w, p->prompt_tokens);
	JSONW_LIT(&w, "+");
	jsonw_int(&w, p->completion_tokens);
	JSONW_LIT(&w, " ms=");
	jsonw_int(&w, clock_loop_ms() - p->t_start_ms);
	if (!w.oom)
		log_access(w.p, w.len);
	free(w.p);
}

/* The current attempt ended with status. */
static void
try_end(struct proxy *p, int status)
{
	struct proxy_try *t = &p->tries[p->attempt];

	if (p->attempt >= p->ntries || t->status)
		return;
	t->status = status;
	t->latency_ms = (int)(clock_loop_ms() - t->t_ms);
	rstats_attempt(p->rt->rs, t->e->prov->id, p->outcome, status);
}

/* The attempts as OpenRouter's generation `provider_responses`. */
static cJSON *
tries_json(const struct proxy *p)
{
	cJSON *a = cJSON_CreateArray();

	for (int i = 0; a && i < p->ntries; i++) {
		const struct proxy_try *t = &p->tries[i];
		cJSON *o = cJSON_CreateObject();

		cJSON_AddStringToObject(o, "provider", t->e->prov->id);
		cJSON_AddStringToObject(o, "provider_name", t->e->prov->name);
		cJSON_AddStringToObject(o, "model", t->e->model->id);
		cJSON_AddNumberToObject(o, "endpoint_id", (double)t->e->id);
		cJSON_AddNumberToObject(o, "status", t->status);
		cJSON_AddNumberToObject(o, "latency", t->latency_ms);
		cJSON_AddItemToArray(a, o);
	}
	return a;
}

/* X-Agora-Attempts: "provider=status, ..." for every attempt so far (the
 * current one, still going, as 200). */
static void
tries_header(struct proxy *p)
{
	struct jsonw w = { NULL, 0, 0, 0 };

	if (!p->ntries)
		return;
	jsonw_reserve(&w, 128);
	for (int i = 0; i < p->ntries; i++) {	/* "alpha=502, beta=200", at most 511 bytes */
		const struct proxy_try *t = &p->tries[i];

		if (w.len + strlen(t->e->prov->id) + 16 > 511)
			break;
		if (i)
			JSONW_LIT(&w, ", ");
		jsonw_add(&w, t->e->prov->id, strlen(t->e->prov->id));
		JSONW_LIT(&w, "=");
		jsonw_int(&w, t->status ? t->status : 200);
	}
	if (!w.oom && w.len)
		httpd_add_header(p->req, "X-Agora-Attempts", w.p);
	free(w.p);
}

/* Records the generation's usage, once. Only generations a provider served
 * (answered, or cut after bytes went out) are metered. */
static void
proxy_meter(struct proxy *p, int status)
{
	struct rcat_endpoint *e = p->cands[p->attempt];
	struct usage_event ev;
	int64_t now = clock_loop_ms(), gen_ms;

	if (p->metered)
		return;
	p->metered = 1;
	try_end(p, status);
	if (!p->have_usage) {
		size_t blen;

		httpd_req_body(p->req, &blen);
		p->prompt_tokens = (int64_t)(blen + 3) / 4;
		p->completion_tokens = (p->stream_chars + 3) / 4;
		p->estimated = 1;
	}
	memset(&ev, 0, sizeof(ev));
	ev.id = p->gen_id;
	ev.ts_ms = now;
	ev.account_id = p->account_id;
	ev.key_id = p->key_id;
	ev.app_url = p->app_url;
	ev.app_title = p->app_title;
	ev.model = e->model->id;
	ev.author = e->model->author;
	ev.provider = e->prov->id;
	ev.endpoint_id = e->id;
	ev.prompt_tokens = p->prompt_tokens;
	ev.completion_tokens = p->completion_tokens;
	ev.cost_nusd = p->cost_nusd = proxy_cost(p);
	ev.provider_cost_nusd = proxy_provider_cost(p);
	ev.latency_ms = (int)(now - p->t_start_ms);
	ev.ttft_ms = (int)((p->t_first_ms ? p->t_first_ms : now) - p->t_start_ms);
	gen_ms = now - (p->t_first_ms ? p->t_first_ms : p->t_start_ms);
	ev.tps_milli = gen_ms > 0 ? p->completion_tokens * 1000000 / gen_ms : 0;
	ev.streamed = p->stream;
	ev.estimated = p->estimated;
	ev.status = status;
	ev.attempts = p->attempt + 1;
	ev.finish_reason = p->finish[0] ? p->finish : NULL;	/* made UTF-8 by the meter */
	if (p->rt->metering) {		/* off: benchmarks only, nothing is billed */
		/* one attempt: the event says it all */
		cJSON *tried = p->ntries > 1 ? tries_json(p) : NULL;
		char *tried_s = tried ? cJSON_PrintUnformatted(tried) : NULL;

		ev.provider_responses = tried_s;
		meter_emit(p->rt->meter, &ev);
		cJSON_free(tried_s);
		cJSON_Delete(tried);
	}
	ratelimit_tokens(p->rt->ratelimit, p->key_id, p->prompt_tokens + p->completion_tokens);
}

/* Answers an error (before any byte went out) and ends the request. */
static void
proxy_fail(struct proxy *p, int status, const char *msg)
{
	if (status == 429 && p->retry_after > 0) {
		char ra[16];

		snprintf(ra, sizeof(ra), "%d", p->retry_after);
		httpd_add_header(p->req, "Retry-After", ra);
	}
	p->rt->st.completions_failed++;
	if (p->state != PX_AUTH)
		proxy_log(p, status);
	try_end(p, status);
	tries_header(p);
	httpd_reply_error(p->req, status, "%s", msg);
	p->state = PX_DONE;
	proxy_free(p);
}

static void
proxy_abort_cb(struct httpd_req *req, void *arg)
{
	struct proxy *p = arg;

	(void)req;
	p->aborted = 1;
	p->rt->st.client_aborts++;
	if (p->state == PX_AUTH)
		return;	/* the key lookup's callback finishes */
	if (p->up) {
		upstream_cancel(p->up);
		p->up = NULL;
	}
	if (p->state == PX_STREAMING) {
		proxy_meter(p, 499);
		httpd_stream_end(p->req);
	} else {
		if (p->state == PX_UPSTREAM)
			try_end(p, 499);
		httpd_reply_error(p->req, 499, "client closed request");
	}
	p->state = PX_DONE;
	proxy_free(p);
}

static void
proxy_drain_cb(struct httpd_req *req, void *arg)
{
	struct proxy *p = arg;

	(void)req;
	if (p->up)
		upstream_pause(p->up, 0);
}

/* ---- health ---- */

static void
health_failed(struct proxy *p, struct rcat_endpoint *e)
{
	long long opens = e->health.opens;

	route_failure(e, clock_loop_ms(), p->rt->conf.breaker_failures, p->rt->conf.failure_cooldown_ms,
		      p->retry_after > 0 ? (int64_t)p->retry_after * 1000 : 0);
	if (e->health.opens != opens) {
		p->rt->st.breaker_opens++;
		log_warn("breaker open: %s for %s after %d failures", e->prov->id, e->model->id, e->health.failures);
	}
}

/* A finished answer: closes the breaker, feeds the speed averages. */
static void
health_ok(struct proxy *p, struct rcat_endpoint *e)
{
	int64_t now = clock_loop_ms();
	int64_t start = p->tries[p->attempt].t_ms ? p->tries[p->attempt].t_ms : p->t_start_ms;	/* this attempt's */
	int64_t ttft = (p->t_first_ms ? p->t_first_ms : now) - start;
	int64_t gen_ms = now - (p->t_first_ms ? p->t_first_ms : start);
	double tps = gen_ms > 0 && p->completion_tokens > 0 ? (double)p->completion_tokens * 1000.0 / (double)gen_ms : 0;

	route_success(e, now, (double)(ttft > 0 ? ttft : 1), tps, (double)(now > start ? now - start : 1));
}

/* ---- usage and rewriting ---- */

static int64_t
json_int(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

	return cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < 9e15 ? (int64_t)v->valuedouble : 0;
}

/* The generation's cost at the given prices (uusd/Mtok), in nano-USD. */
static int64_t
cost_at(const struct proxy *p, int64_t prompt_price, int64_t completion_price)
{
	int64_t a = money_cost_nusd(p->prompt_tokens, prompt_price);
	int64_t b = money_cost_nusd(p->completion_tokens, completion_price);

	return a < 0 || b < 0 ? 0 : a + b;
}

/* What the account pays. */
static int64_t
proxy_cost(struct proxy *p)
{
	struct rcat_endpoint *e = p->cands[p->attempt];

	return cost_at(p, e->price_prompt, e->price_completion);
}

/* What the provider bills the marketplace. */
static int64_t
proxy_provider_cost(struct proxy *p)
{
	struct rcat_endpoint *e = p->cands[p->attempt];

	return cost_at(p, e->cost_prompt, e->cost_completion);
}

/* Reads usage from an answer or chunk and adds cost (USD, exact decimal). */
static void
usage_take(struct proxy *p, cJSON *usage)
{
	char buf[64];

	p->prompt_tokens = json_int(usage, "prompt_tokens");
	p->completion_tokens = json_int(usage, "completion_tokens");
	p->have_usage = 1;
	if (!cJSON_GetObjectItemCaseSensitive(usage, "total_tokens"))
		cJSON_AddNumberToObject(usage, "total_tokens",
					(double)(p->prompt_tokens + p->completion_tokens));
	money_format_usd(proxy_cost(p), buf, sizeof(buf));
	cJSON_DeleteItemFromObjectCaseSensitive(usage, "cost");
	cJSON_AddItemToObject(usage, "cost", cJSON_CreateRaw(buf));
}

/* Removes every member named k (JSON may repeat a key). */
static void
delete_all(cJSON *o, const char *k)
{
	while (cJSON_GetObjectItemCaseSensitive(o, k))
		cJSON_DeleteItemFromObjectCaseSensitive(o, k);
}

/* Puts our identity on an answer or chunk, in the order clients expect:
 * id, object, created, model, provider, then the provider's other fields.
 * Fields the OpenAI/OpenRouter schemas require are filled when missing
 * (created, object; system_fingerprint on whole answers). */
static cJSON *
rewrite_ids(struct proxy *p, cJSON *o, int chunk)
{
	struct rcat_endpoint *e = p->cands[p->attempt];
	cJSON *out = cJSON_CreateObject(), *created, *fp, *x;
	double now = (double)(clock_loop_ms() / 1000);

	if (!out)
		return o;
	created = cJSON_DetachItemFromObjectCaseSensitive(o, "created");
	delete_all(o, "created");
	delete_all(o, "id");
	delete_all(o, "object");
	delete_all(o, "model");
	delete_all(o, "provider");
	cJSON_AddStringToObject(out, "id", p->gen_id);
	cJSON_AddStringToObject(out, "object", chunk ? "chat.completion.chunk" : "chat.completion");
	if (cJSON_IsNumber(created) && created->valuedouble >= 0 && created->valuedouble < 1e15 &&
	    created->valuedouble == (double)(long long)created->valuedouble) {
		cJSON_AddItemToObject(out, "created", created);
	} else {
		cJSON_Delete(created);
		cJSON_AddNumberToObject(out, "created", now);
	}
	cJSON_AddStringToObject(out, "model", e->model->id);
	cJSON_AddStringToObject(out, "provider", e->prov->name);
	fp = cJSON_DetachItemFromObjectCaseSensitive(o, "system_fingerprint");
	delete_all(o, "system_fingerprint");
	if (fp && (cJSON_IsString(fp) || cJSON_IsNull(fp)))
		cJSON_AddItemToObject(out, "system_fingerprint", fp);
	else {
		cJSON_Delete(fp);
		if (!chunk)
			cJSON_AddNullToObject(out, "system_fingerprint");
	}
	while ((x = o->child)) {
		char *name = x->string;

		x = cJSON_DetachItemViaPointer(o, x);
		if (name)
			cJSON_AddItemToObject(out, name, x);
		else
			cJSON_Delete(x);
	}
	cJSON_Delete(o);
	return out;
}

/* ---- splicing: answers, chunks and upstream bodies rewritten as text ----
 *
 * What rewrite_ids() and request_prepare_upstream() do to a cJSON tree,
 * done on the text instead: the members we keep are copied as they are,
 * only ours are written, into one buffer. cJSON's printer formats every
 * number with sprintf("%1.15g") and checks it back with sscanf; printing
 * trees was most of a request's CPU time (README "Performance"). The tree
 * is still parsed, and read, as before. Text jscan refuses (an escaped
 * key, too many members) takes the tree path. */

#define PROXY_SPLICE_MAX 128	/* members of a spliced object */

enum usage_mode { USAGE_DROP, USAGE_PRINT, USAGE_RAW };

/* ,"key":value (first: without the comma) */
static void
sb_member(struct jsonw *b, const struct jmember *m, int first)
{
	jsonw_reserve(b, m->klen + m->vlen + 4);
	if (b->oom)
		return;
	{
		char *w = b->p + b->len;

		if (!first)
			*w++ = ',';
		*w++ = '"';
		memcpy(w, m->key, m->klen);
		w += m->klen;
		*w++ = '"';
		*w++ = ':';
		memcpy(w, m->val, m->vlen);
		w += m->vlen;
		*w = '\0';
		b->len = (size_t)(w - b->p);
	}
}

/* A member name and its length, compared without strlen. */
struct mname {
	const char *s;
	size_t n;
};
#define MNAME(lit) { lit, sizeof(lit) - 1 }

static int
is_name(const struct jmember *m, const struct mname *k)
{
	return m->klen == k->n && memcmp(m->key, k->s, k->n) == 0;
}

static int
member_in(const struct jmember *m, const struct mname *names)
{
	for (; names->s; names++)
		if (is_name(m, names))
			return 1;
	return 0;
}

static const struct mname N_USAGE = MNAME("usage"), N_COST = MNAME("cost"),
			  N_TOTAL = MNAME("total_tokens"), N_STREAM_OPTIONS = MNAME("stream_options"),
			  N_INCLUDE_USAGE = MNAME("include_usage");

/* ,"usage":{...} as usage_take() left the tree `usage`: the provider's
 * members as written (c->u), total_tokens added when missing, our cost
 * last; printed from the tree when jscan refused its text (c->nu < 0). */
static void
sb_usage(struct proxy *p, struct jsonw *b, const struct chatscan *c, const cJSON *usage)
{
	char cost[64];
	int first = 1, total = 0;
	char *s;

	money_format_usd(proxy_cost(p), cost, sizeof(cost));
	if (!c->usage_object) {	/* no usage from the provider: ours, estimated */
		JSONW_LIT(b, ",\"usage\":{\"prompt_tokens\":");
		jsonw_int(b, p->prompt_tokens);
		JSONW_LIT(b, ",\"completion_tokens\":");
		jsonw_int(b, p->completion_tokens);
		JSONW_LIT(b, ",\"total_tokens\":");
		jsonw_int(b, p->prompt_tokens + p->completion_tokens);
		JSONW_LIT(b, ",\"cost\":");
		jsonw_add(b, cost, strlen(cost));
		JSONW_LIT(b, "}");
		return;
	}
	if (c->nu < 0) {
		if ((s = cJSON_PrintUnformatted(usage))) {
			JSONW_LIT(b, ",\"usage\":");
			jsonw_add(b, s, strlen(s));
			cJSON_free(s);
		}
		return;
	}
	JSONW_LIT(b, ",\"usage\":{");
	for (int i = 0; i < c->nu; i++) {
		if (is_name(&c->u[i], &N_COST))
			continue;
		total |= is_name(&c->u[i], &N_TOTAL);
		sb_member(b, &c->u[i], first);
		first = 0;
	}
	if (!total) {
		jsonw_add(b, ",\"total_tokens\":" + first, 16 - (size_t)first);
		jsonw_int(b, p->prompt_tokens + p->completion_tokens);
		first = 0;
	}
	jsonw_add(b, ",\"cost\":" + first, 8 - (size_t)first);
	jsonw_add(b, cost, strlen(cost));
	JSONW_LIT(b, "}");
}

/* What a chunk starts with, escaped once per endpoint rather than once an
 * event: {"id":...,"object":"chat.completion.chunk","created": and, after
 * the created value, ,"model":...,"provider":... */
static int
chunk_ids(struct proxy *p, struct rcat_endpoint *e)
{
	if (p->ids_for == e)
		return 0;
	p->ids.len = 0;
	p->ids.oom = 0;
	JSONW_LIT(&p->ids, "{\"id\":");
	jsonw_string(&p->ids, p->gen_id);
	JSONW_LIT(&p->ids, ",\"object\":\"chat.completion.chunk\",\"created\":");
	p->ids_split = p->ids.len;
	JSONW_LIT(&p->ids, ",\"model\":");
	jsonw_string(&p->ids, e->model->id);
	JSONW_LIT(&p->ids, ",\"provider\":");
	jsonw_string(&p->ids, e->prov->name);
	p->ids_for = p->ids.oom ? NULL : e;
	return p->ids.oom ? -1 : 0;
}

/* rewrite_ids() on text: c holds the answer's or chunk's members and what
 * the splice needs of them (created, system_fingerprint, usage); usage is
 * dropped, printed (from c, or from the tree `usage`), or left as the
 * provider wrote it. */
static void
splice_ids(struct proxy *p, struct jsonw *b, const struct chatscan *c, int chunk, enum usage_mode umode,
	   const cJSON *usage)
{
	static const struct mname ours[] = { MNAME("id"), MNAME("object"), MNAME("created"), MNAME("model"),
					     MNAME("provider"), MNAME("system_fingerprint"), { NULL, 0 } };
	struct rcat_endpoint *e = p->cands[p->attempt];
	int cached = chunk && chunk_ids(p, e) == 0;

	if (cached) {
		jsonw_add(b, p->ids.p, p->ids_split);
	} else {
		JSONW_LIT(b, "{\"id\":");
		jsonw_string(b, p->gen_id);
		if (chunk)
			JSONW_LIT(b, ",\"object\":\"chat.completion.chunk\",\"created\":");
		else
			JSONW_LIT(b, ",\"object\":\"chat.completion\",\"created\":");
	}
	if (c->created && c->created_ok)
		jsonw_add(b, c->created->val, c->created->vlen);
	else
		jsonw_int(b, clock_loop_ms() / 1000);
	if (cached) {
		jsonw_add(b, p->ids.p + p->ids_split, p->ids.len - p->ids_split);
	} else {
		JSONW_LIT(b, ",\"model\":");
		jsonw_string(b, e->model->id);
		JSONW_LIT(b, ",\"provider\":");
		jsonw_string(b, e->prov->name);
	}
	if (c->fingerprint && c->fingerprint_ok)
		sb_member(b, c->fingerprint, 0);
	else if (!chunk)
		JSONW_LIT(b, ",\"system_fingerprint\":null");
	for (int i = 0; i < c->n; i++) {
		if (member_in(&c->m[i], ours) || (umode != USAGE_RAW && is_name(&c->m[i], &N_USAGE)))
			continue;
		sb_member(b, &c->m[i], 0);
	}
	if (umode == USAGE_PRINT)
		sb_usage(p, b, c, usage);
	JSONW_LIT(b, "}");
}

/* For the tree path: c (chatscan_members() of the same text) completed
 * from the tree o, which usage_take() may have edited. */
static void
chatscan_from_tree(struct chatscan *c, const cJSON *o)
{
	const cJSON *created = cJSON_GetObjectItemCaseSensitive(o, "created");
	const cJSON *fp = cJSON_GetObjectItemCaseSensitive(o, "system_fingerprint");

	c->created_ok = cJSON_IsNumber(created) && created->valuedouble >= 0 && created->valuedouble < 1e15 &&
			created->valuedouble == (double)(long long)created->valuedouble;
	c->fingerprint_ok = cJSON_IsString(fp) || cJSON_IsNull(fp);
	c->usage_object = c->usage && c->usage->val[0] == '{';
	c->nu = c->usage_object ? jscan_object(c->usage->val, c->usage->vlen, c->u, CHATSCAN_USAGE_MAX) : 0;
}

/* request_prepare_upstream() on the client's text: the body for an
 * OpenAI-compatible endpoint (malloc'd), or NULL for the tree path. */
static char *
splice_upstream_body(struct proxy *p, const char *upstream_model)
{
	static const struct mname drop[] = { MNAME("models"), MNAME("provider"), MNAME("transforms"),
					     MNAME("route"), MNAME("plugins"), MNAME("usage"), MNAME("model"),
					     { NULL, 0 } };
	struct jmember m[PROXY_SPLICE_MAX], so[PROXY_SPLICE_MAX];
	const cJSON *so_tree = cJSON_GetObjectItemCaseSensitive(p->body, "stream_options");
	const struct jmember *so_m = NULL;
	struct jsonw b = { NULL, 0, 0, 0 };
	size_t len;
	const char *raw = httpd_req_body(p->req, &len);
	int n = jscan_object(raw, len, m, PROXY_SPLICE_MAX), nso = 0, first = 1;

	if (n < 0)
		return NULL;
	jsonw_reserve(&b, len + strlen(upstream_model) + 64);	/* one allocation, no regrowth */
	for (int i = 0; i < n && !so_m; i++)
		if (is_name(&m[i], &N_STREAM_OPTIONS))
			so_m = &m[i];
	if (p->stream && cJSON_IsObject(so_tree) && so_m &&
	    (nso = jscan_object(so_m->val, so_m->vlen, so, PROXY_SPLICE_MAX)) < 0)
		return NULL;
	jsonw_add(&b, "{", 1);
	for (int i = 0; i < n; i++) {
		if (member_in(&m[i], drop) || (p->stream && is_name(&m[i], &N_STREAM_OPTIONS)))
			continue;
		sb_member(&b, &m[i], first);
		first = 0;
	}
	jsonw_add(&b, ",\"model\":" + first, 9 - (size_t)first);
	jsonw_string(&b, upstream_model);
	if (p->stream) {
		JSONW_LIT(&b, ",\"stream_options\":{\"include_usage\":true");
		for (int i = 0; cJSON_IsObject(so_tree) && i < nso; i++)
			if (!is_name(&so[i], &N_INCLUDE_USAGE))
				sb_member(&b, &so[i], 0);
		JSONW_LIT(&b, "}");
	}
	JSONW_LIT(&b, "}");
	if (b.oom) {
		free(b.p);
		return NULL;
	}
	return b.p;
}

/* Whether an endpoint speaks Anthropic Messages (translated both ways). */
static int
is_anthropic(const struct rcat_endpoint *e)
{
	return strcmp(e->prov->api, "anthropic") == 0;
}

/* ---- non-streamed answers ---- */

static void
answer_invalid(struct proxy *p, struct rcat_endpoint *e)
{
	p->retry_after = -1;
	p->outcome = RS_INVALID;
	health_failed(p, e);
	proxy_next(p, 502, "%s answered something that is not a chat completion", e->prov->name);
}

/* Token counts of an answer without usage: the request's and the answer's
 * text, ~4 bytes a token (taken as the provider's: not marked estimated). */
static void
answer_estimate(struct proxy *p, int64_t text_bytes)
{
	size_t blen;

	httpd_req_body(p->req, &blen);
	p->prompt_tokens = (int64_t)(blen + 3) / 4;
	p->completion_tokens = (text_bytes + 3) / 4;
}

/* The answer read: metered, logged and sent, spliced from c (the text's
 * members) or, without c, printed from the tree ans. */
static void
answer_send(struct proxy *p, const struct chatscan *c, const cJSON *ans, const cJSON *usage, size_t len)
{
	struct rcat_endpoint *e = p->cands[p->attempt];

	p->t_first_ms = clock_loop_ms();
	health_ok(p, e);
	proxy_meter(p, 200);
	p->rt->st.completions_ok++;
	proxy_log(p, 200);
	tries_header(p);
	if (c) {
		struct jsonw out = { NULL, 0, 0, 0 };

		jsonw_reserve(&out, len + 256);		/* the answer's size: one allocation */
		splice_ids(p, &out, c, 0, USAGE_PRINT, usage);
		if (!out.oom)
			httpd_reply(p->req, 200, "application/json", out.p, out.len);
		else
			httpd_reply_error(p->req, 500, "out of memory");
		free(out.p);
	} else {
		httpd_reply_json(p->req, 200, ans);
	}
	p->state = PX_DONE;
	proxy_free(p);
}

/* An OpenAI answer read through chatscan, no tree. -1: chatscan refused
 * its text (the caller parses it). */
static int
finish_json_scanned(struct proxy *p, const char *data, size_t len)
{
	struct chatscan c;

	if (chatscan_answer(&c, data, len) < 0)
		return -1;
	if (!c.choices_array) {
		answer_invalid(p, p->cands[p->attempt]);
		return 0;
	}
	if (c.usage_object) {
		p->prompt_tokens = c.prompt_tokens;
		p->completion_tokens = c.completion_tokens;
	} else {
		answer_estimate(p, c.text_bytes);
	}
	p->have_usage = 1;
	if (c.has_finish)
		memcpy(p->finish, c.finish, sizeof(c.finish));
	answer_send(p, &c, NULL, NULL, len);
	return 0;
}

static void
proxy_finish_json(struct proxy *p)
{
	size_t len = evbuffer_get_length(p->buf);
	const char *data = (const char *)evbuffer_pullup(p->buf, (ev_ssize_t)len);
	struct rcat_endpoint *e = p->cands[p->attempt];
	cJSON *ans, *usage, *choices;
	struct chatscan c;
	int spliced = 0;

	if (!is_anthropic(e) && finish_json_scanned(p, data, len) == 0)
		return;
	/* the tree path: text chatscan refuses, and Anthropic answers */
	ans = cJSON_ParseWithLength(data, len);
	if (ans && is_anthropic(e)) {	/* a Messages answer: now a chat.completion */
		cJSON *chat = anthropic_answer(ans);

		cJSON_Delete(ans);
		ans = chat;
	}
	choices = ans ? cJSON_GetObjectItemCaseSensitive(ans, "choices") : NULL;
	if (!cJSON_IsArray(choices)) {
		cJSON_Delete(ans);
		answer_invalid(p, e);
		return;
	}
	if (!is_anthropic(e))	/* the answer's text is spliced, not printed again */
		spliced = chatscan_members(&c, data, len) == 0;
	if (!spliced)
		ans = rewrite_ids(p, ans, 0);
	choices = cJSON_GetObjectItemCaseSensitive(ans, "choices");
	usage = cJSON_GetObjectItemCaseSensitive(ans, "usage");
	if (!cJSON_IsObject(usage)) {
		const cJSON *c0 = cJSON_GetArrayItem(choices, 0);
		const cJSON *msg = cJSON_GetObjectItemCaseSensitive(c0, "message");
		const cJSON *content = cJSON_GetObjectItemCaseSensitive(msg, "content");

		answer_estimate(p, cJSON_IsString(content) ? (int64_t)strlen(content->valuestring) : 0);
		cJSON_DeleteItemFromObjectCaseSensitive(ans, "usage");
		usage = cJSON_AddObjectToObject(ans, "usage");
		cJSON_AddNumberToObject(usage, "prompt_tokens", (double)p->prompt_tokens);
		cJSON_AddNumberToObject(usage, "completion_tokens", (double)p->completion_tokens);
	}
	usage_take(p, usage);
	{
		const cJSON *fin = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(choices, 0), "finish_reason");

		if (cJSON_IsString(fin))
			snprintf(p->finish, sizeof(p->finish), "%s", fin->valuestring);
	}
	if (spliced)
		chatscan_from_tree(&c, ans);
	answer_send(p, spliced ? &c : NULL, ans, usage, len);
	cJSON_Delete(ans);
}

/* ---- streamed answers ---- */

static void
stream_write_json(struct proxy *p, const cJSON *o)
{
	char *s = cJSON_PrintUnformatted(o);
	struct evbuffer *b;

	if (!s)
		return;
	if ((b = evbuffer_new())) {
		size_t len;

		evbuffer_add(b, "data: ", 6);
		evbuffer_add(b, s, strlen(s));
		evbuffer_add(b, "\n\n", 2);
		len = evbuffer_get_length(b);
		httpd_stream_write(p->req, evbuffer_pullup(b, (ev_ssize_t)len), len);
		evbuffer_free(b);
	}
	cJSON_free(s);
}

static void
stream_start(struct proxy *p)
{
	httpd_add_header(p->req, "Cache-Control", "no-cache");
	httpd_add_header(p->req, "X-Accel-Buffering", "no");
	httpd_add_header(p->req, "X-Generation-Id", p->gen_id);
	tries_header(p);
	httpd_stream_start(p->req, 200, "text/event-stream");
	p->client_started = 1;
	p->t_first_ms = clock_loop_ms();
	p->state = PX_STREAMING;
	p->rt->st.streams_total++;
	p->rt->streams_inflight++;
}

/* An error after bytes went out: say so in the stream, then end it. */
static void
stream_fail(struct proxy *p, int code, const char *msg)
{
	cJSON *o = cJSON_CreateObject(), *err, *choice, *delta;

	cJSON_AddStringToObject(o, "id", p->gen_id);
	cJSON_AddStringToObject(o, "object", "chat.completion.chunk");
	cJSON_AddNumberToObject(o, "created", (double)(clock_loop_ms() / 1000));
	cJSON_AddStringToObject(o, "model", p->cands[p->attempt]->model->id);
	cJSON_AddStringToObject(o, "provider", p->cands[p->attempt]->prov->name);
	choice = cJSON_CreateObject();
	cJSON_AddNumberToObject(choice, "index", 0);
	delta = cJSON_AddObjectToObject(choice, "delta");
	cJSON_AddStringToObject(delta, "content", "");
	cJSON_AddStringToObject(choice, "finish_reason", "error");
	cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "choices"), choice);
	err = cJSON_AddObjectToObject(o, "error");
	cJSON_AddNumberToObject(err, "code", code);
	cJSON_AddStringToObject(err, "message", msg);
	stream_write_json(p, o);
	cJSON_Delete(o);
	p->retry_after = -1;
	p->outcome = RS_CUT;
	health_failed(p, p->cands[p->attempt]);	/* a started answer broke */
	proxy_meter(p, code);
	p->rt->st.completions_failed++;
	proxy_log(p, code);
	httpd_stream_end(p->req);
	p->state = PX_DONE;
	proxy_free(p);
}

static void
stream_finish(struct proxy *p)
{
	if (!p->saw_done && !p->saw_finish) {
		stream_fail(p, 502, "the provider ended the stream early");
		return;
	}
	httpd_stream_write(p->req, "data: [DONE]\n\n", 14);
	health_ok(p, p->cands[p->attempt]);
	proxy_meter(p, 200);
	p->rt->st.completions_ok++;
	proxy_log(p, 200);
	httpd_stream_end(p->req);
	p->state = PX_DONE;
	proxy_free(p);
}

/* Completion text length seen in a chunk, for estimates. */
static void
count_delta(struct proxy *p, const cJSON *choices)
{
	const cJSON *c;

	cJSON_ArrayForEach(c, choices) {
		const cJSON *d = cJSON_GetObjectItemCaseSensitive(c, "delta");
		const cJSON *t = cJSON_GetObjectItemCaseSensitive(d, "content");
		const cJSON *r = cJSON_GetObjectItemCaseSensitive(d, "reasoning");

		if (cJSON_IsString(t))
			p->stream_chars += (int64_t)strlen(t->valuestring);
		if (cJSON_IsString(r))
			p->stream_chars += (int64_t)strlen(r->valuestring);
	}
}

/* A stream the provider broke before its end (an unreadable event or an
 * error event): said in the stream once started, else the next candidate.
 * Returns 1 (the request ended). */
static int
stream_upstream_error(struct proxy *p, int garbage, const char *detail)
{
	struct rcat_endpoint *e = p->cands[p->attempt];
	char msg[300];

	upstream_cancel(p->up);
	p->up = NULL;
	if (p->client_started) {
		snprintf(msg, sizeof(msg), "%s%s%s", garbage ? "the provider sent an unreadable event"
							     : "the provider reported an error mid-stream",
			 detail ? ": " : "", detail ? detail : "");
		stream_fail(p, 502, msg);
	} else {
		p->retry_after = -1;
		p->outcome = garbage ? RS_INVALID : RS_STREAM_ERROR;
		health_failed(p, e);
		proxy_next(p, 502, "%s sent %s%s%s", e->prov->name, garbage ? "an unreadable stream" : "an error event",
			   detail ? ": " : "", detail ? detail : "");
	}
	return 1;
}

static void
stream_backpressure(struct proxy *p)
{
	if (p->up && httpd_req_pending(p->req) > (size_t)p->rt->conf.stream_buffer_bytes) {
		p->rt->st.backpressure_pauses++;
		upstream_pause(p->up, 1);
	}
}

/* data: <the chunk spliced from c>\n\n to the client. */
static void
stream_write_spliced(struct proxy *p, const struct chatscan *c, enum usage_mode umode, const cJSON *usage)
{
	p->out.len = 0;
	p->out.oom = 0;
	JSONW_LIT(&p->out, "data: ");
	splice_ids(p, &p->out, c, 1, umode, usage);
	JSONW_LIT(&p->out, "\n\n");
	if (!p->out.oom)
		httpd_stream_write(p->req, p->out.p, p->out.len);
}

/* A chunk read through chatscan (no tree): stream_chunk()'s rules. */
static void
stream_chunk_scanned(struct proxy *p, const struct chatscan *c)
{
	enum usage_mode umode = USAGE_RAW;

	if (!p->client_started)
		stream_start(p);
	if (c->has_finish) {
		p->saw_finish = 1;
		memcpy(p->finish, c->finish, sizeof(c->finish));
	}
	p->stream_chars += c->text_bytes;
	if (c->usage_object) {
		p->prompt_tokens = c->prompt_tokens;
		p->completion_tokens = c->completion_tokens;
		p->have_usage = 1;
		umode = p->want_usage ? USAGE_PRINT : USAGE_DROP;
		if (!p->want_usage && c->nchoices == 0)
			goto backpressure;	/* a usage-only chunk nobody asked for */
	} else if (c->usage && c->usage->val[0] == 'n' && !p->want_usage) {
		umode = USAGE_DROP;
	}
	stream_write_spliced(p, c, umode, NULL);
backpressure:
	stream_backpressure(p);
}

/* A chunk whose text splices (c: chatscan_members() of the event's data,
 * o: its tree): rewrite_ids() and the usage rules of stream_chunk() on the
 * text. */
static void
stream_chunk_splice(struct proxy *p, cJSON *o, struct chatscan *c)
{
	cJSON *usage = cJSON_GetObjectItemCaseSensitive(o, "usage");
	enum usage_mode umode = USAGE_RAW;

	if (cJSON_IsObject(usage)) {
		usage_take(p, usage);
		umode = p->want_usage ? USAGE_PRINT : USAGE_DROP;
		if (!p->want_usage && cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(o, "choices")) == 0)
			return;		/* a usage-only chunk nobody asked for */
	} else if (cJSON_IsNull(usage) && !p->want_usage) {
		umode = USAGE_DROP;
	}
	chatscan_from_tree(c, o);
	stream_write_spliced(p, c, umode, usage);
}

/* One chat.completion.chunk (taken) on its way to the client, from its
 * tree: the stream starts with the first one; ids rewritten, usage read
 * (and sent only when the client asked for it). raw: the event's text when
 * there is one (not for translated Anthropic events), spliced rather than
 * printed again. */
static void
stream_chunk(struct proxy *p, cJSON *o, const char *raw, size_t rawlen)
{
	struct chatscan c;
	cJSON *usage, *choices, *fin;

	if (!p->client_started)
		stream_start(p);
	choices = cJSON_GetObjectItemCaseSensitive(o, "choices");
	fin = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(choices, 0), "finish_reason");
	if (cJSON_IsString(fin)) {
		p->saw_finish = 1;
		snprintf(p->finish, sizeof(p->finish), "%s", fin->valuestring);
	}
	count_delta(p, choices);
	if (raw && chatscan_members(&c, raw, rawlen) == 0) {
		stream_chunk_splice(p, o, &c);
		cJSON_Delete(o);
		goto backpressure;
	}
	o = rewrite_ids(p, o, 1);
	choices = cJSON_GetObjectItemCaseSensitive(o, "choices");
	usage = cJSON_GetObjectItemCaseSensitive(o, "usage");
	if (cJSON_IsObject(usage)) {
		usage_take(p, usage);
		if (!p->want_usage) {
			if (cJSON_GetArraySize(choices) == 0) {
				cJSON_Delete(o);
				return;
			}
			cJSON_DeleteItemFromObjectCaseSensitive(o, "usage");
		}
	} else if (cJSON_IsNull(usage) && !p->want_usage) {
		cJSON_DeleteItemFromObjectCaseSensitive(o, "usage");
	}
	stream_write_json(p, o);
	cJSON_Delete(o);
backpressure:
	stream_backpressure(p);
}

/* One event of an Anthropic Messages stream, translated into 0..n chunks
 * (a ping gives none: the stream starts with message_start). */
static int
stream_event_anthropic(struct proxy *p, const char *event, const char *data, size_t len)
{
	cJSON *o = cJSON_ParseWithLength(data, len), *chunks, *c;
	char msg[200];
	int rc;

	if (!cJSON_IsObject(o)) {
		cJSON_Delete(o);
		return stream_upstream_error(p, 1, NULL);
	}
	chunks = cJSON_CreateArray();
	rc = chunks ? anthropic_stream_feed(p->anth, event, o, chunks, msg, sizeof(msg)) : ANTHROPIC_NOMEM;
	cJSON_Delete(o);
	if (rc < 0) {
		cJSON_Delete(chunks);
		return stream_upstream_error(p, 0, rc == ANTHROPIC_NOMEM ? "out of memory" : msg);
	}
	if (rc == ANTHROPIC_DONE)
		p->saw_done = 1;
	while ((c = cJSON_DetachItemFromArray(chunks, 0)))
		stream_chunk(p, c, NULL, 0);
	cJSON_Delete(chunks);
	return 0;
}

/* One upstream SSE event. Returns non-zero when the request ended. */
static int
stream_event(void *arg, const char *event, const char *data, size_t len, int comment)
{
	struct proxy *p = arg;
	struct chatscan c;
	cJSON *o;

	if (comment)
		return 0;
	if (is_anthropic(p->cands[p->attempt]))
		return stream_event_anthropic(p, event, data, len);
	if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
		p->saw_done = 1;
		return 0;
	}
	if (chatscan_chunk(&c, data, len) == 0) {	/* no tree: the common case */
		if (c.error)
			return stream_upstream_error(p, 0, NULL);
		stream_chunk_scanned(p, &c);
		return 0;
	}
	o = cJSON_ParseWithLength(data, len);	/* what jscan refuses */
	if (!cJSON_IsObject(o) || cJSON_GetObjectItemCaseSensitive(o, "error")) {
		int garbage = !cJSON_IsObject(o);

		cJSON_Delete(o);
		return stream_upstream_error(p, garbage, NULL);
	}
	stream_chunk(p, o, data, len);
	return 0;
}

/* ---- upstream callbacks ---- */

static void
up_head(void *arg, int status, const char *ctype, int retry_after)
{
	struct proxy *p = arg;

	(void)ctype;
	p->up_status = status;
	p->retry_after = retry_after;
	if (status == 200 && p->stream && !p->sse)
		p->sse = sse_new(PROXY_SSE_EVENT_MAX, stream_event, p);
}

static void
up_body(void *arg, const char *data, size_t len)
{
	struct proxy *p = arg;
	struct rcat_endpoint *e = p->cands[p->attempt];

	if (p->up_status == 200 && p->stream) {
		if (sse_feed(p->sse, data, len) < 0) {
			upstream_cancel(p->up);
			p->up = NULL;
			if (p->client_started) {
				stream_fail(p, 502, "the provider sent an over-long event");
			} else {
				p->outcome = RS_TOO_LARGE;
				health_failed(p, e);
				proxy_next(p, 502, "%s sent an over-long event", e->prov->name);
			}
		}
		return;
	}
	if (p->up_status == 200) {
		if (evbuffer_get_length(p->buf) + len > (size_t)p->rt->conf.max_response_bytes) {
			upstream_cancel(p->up);
			p->up = NULL;
			p->outcome = RS_TOO_LARGE;
			health_failed(p, e);
			proxy_next(p, 502, "%s answered more than max_response_bytes", e->prov->name);
			return;
		}
		evbuffer_add(p->buf, data, len);
		return;
	}
	if (evbuffer_get_length(p->buf) < PROXY_ERR_BODY_MAX)
		evbuffer_add(p->buf, data, len);
}

/* The message of an upstream error body, if it has one. */
static void
upstream_error_text(struct proxy *p, char *out, size_t len)
{
	size_t n = evbuffer_get_length(p->buf);
	cJSON *o = cJSON_ParseWithLength((const char *)evbuffer_pullup(p->buf, (ev_ssize_t)n), n);
	const cJSON *err = cJSON_GetObjectItemCaseSensitive(o, "error");
	const cJSON *msg = cJSON_GetObjectItemCaseSensitive(err, "message");
	const char *text = cJSON_IsString(msg) ? msg->valuestring : NULL;

	if (is_anthropic(p->cands[p->attempt]))	/* {"type":"error","error":{"type","message"}} */
		text = anthropic_error_message(o);
	snprintf(out, len, "%s", text ? text : "no details");
	cJSON_Delete(o);
}

static void
up_done(void *arg)
{
	struct proxy *p = arg;
	struct rcat_endpoint *e = p->cands[p->attempt];
	char msg[200];

	p->up = NULL;
	if (p->up_status == 200 && p->stream) {
		if (p->client_started) {
			stream_finish(p);
		} else {
			p->outcome = RS_INVALID;
			health_failed(p, e);
			proxy_next(p, 502, "%s ended the stream before any event", e->prov->name);
		}
		return;
	}
	if (p->up_status == 200) {
		proxy_finish_json(p);
		return;
	}
	upstream_error_text(p, msg, sizeof(msg));
	p->outcome = p->up_status == 429 ? RS_HTTP_429 : p->up_status >= 500 ? RS_HTTP_5XX : RS_HTTP_4XX;
	if (p->up_status == 400 || p->up_status == 413 || p->up_status == 422) {
		/* The request itself is at fault: another provider would agree. */
		proxy_fail(p, p->up_status == 422 ? 400 : p->up_status, msg);
		return;
	}
	health_failed(p, e);
	if (p->up_status == 429)
		proxy_next(p, 429, "%s is rate limited: %s", e->prov->name, msg);
	else
		proxy_next(p, 502, "%s answered HTTP %d: %s", e->prov->name, p->up_status, msg);
}

static void
up_error(void *arg, enum upstream_err err, const char *msg)
{
	struct proxy *p = arg;
	struct rcat_endpoint *e = p->cands[p->attempt];
	int status = err == UPSTREAM_ERR_TIMEOUT ? 504 : err == UPSTREAM_ERR_PROTOCOL ? 502 : 503;

	p->up = NULL;
	if (err == UPSTREAM_ERR_TIMEOUT)
		p->rt->st.upstream_timeouts++;
	if (p->client_started) {
		/* After bytes went out the provider broke a started answer: 502. */
		stream_fail(p, err == UPSTREAM_ERR_TIMEOUT ? 504 : 502,
			    err == UPSTREAM_ERR_TIMEOUT ? "the provider timed out mid-stream"
							: "the provider connection broke mid-stream");
		return;
	}
	p->retry_after = -1;
	p->outcome = err == UPSTREAM_ERR_TIMEOUT ? RS_TIMEOUT : err == UPSTREAM_ERR_CONNECT ? RS_CONNECT
		   : err == UPSTREAM_ERR_RESET ? RS_RESET : RS_PROTOCOL;
	health_failed(p, e);
	proxy_next(p, status, "%s: %s", e->prov->name, msg);
}

static const struct upstream_cbs proxy_up_cbs = { up_head, up_body, up_done, up_error };

/* ---- attempts ---- */

static void
proxy_next(struct proxy *p, int status, const char *fmt, ...)
{
	va_list ap;

	p->rt->st.upstream_failures++;
	p->fail_status = status;
	try_end(p, status);
	va_start(ap, fmt);
	vsnprintf(p->fail_msg, sizeof(p->fail_msg), fmt, ap);
	va_end(ap);
	log_warn("%s attempt %d failed: %s", p->gen_id, p->attempt + 1, p->fail_msg);
	if (p->attempt + 1 < p->ncands) {
		p->attempt++;
		p->rt->st.upstream_failovers++;
		proxy_attempt(p);
		return;
	}
	if (p->ncands > 1) {
		char msg[400];

		snprintf(msg, sizeof(msg), "all %d providers failed; last: %s", p->ncands, p->fail_msg);
		proxy_fail(p, status, msg);
	} else {
		proxy_fail(p, status, p->fail_msg);
	}
}

/* The body sent to endpoint e: for OpenAI-compatible providers the client's
 * request, edited in place; for Anthropic ones a Messages body built from it
 * (which stays intact for a later OpenAI-compatible attempt), with a fresh
 * stream translator. NULL on failure, with the status and message to answer. */
static char *
attempt_body(struct proxy *p, struct rcat_endpoint *e, int *status, char *msg, size_t len)
{
	int max = e->max_output > 0 && e->max_output < ANTHROPIC_DEFAULT_MAX_TOKENS ? e->max_output
										  : ANTHROPIC_DEFAULT_MAX_TOKENS;
	cJSON *ab;
	char *s;
	int rc;

	*status = 500;
	snprintf(msg, len, "out of memory");
	if (!is_anthropic(e)) {
		if ((s = splice_upstream_body(p, e->upstream_model)))
			return s;
		return request_prepare_upstream(p->body, e->upstream_model, p->stream) < 0 ? NULL
										: cJSON_PrintUnformatted(p->body);
	}
	anthropic_stream_free(p->anth);
	p->anth = NULL;
	if (p->stream && !(p->anth = anthropic_stream_new()))
		return NULL;
	if (p->shallow && !p->whole) {		/* the translation reads every message */
		size_t blen;
		const char *raw = httpd_req_body(p->req, &blen);

		if (!(p->whole = request_parse_whole(raw, blen)))
			return NULL;
	}
	if ((rc = anthropic_request(p->shallow ? p->whole : p->body, e->upstream_model, max, &ab, msg,
				    len)) < 0) {
		*status = rc == ANTHROPIC_BAD ? 400 : 500;
		return NULL;
	}
	s = cJSON_PrintUnformatted(ab);
	cJSON_Delete(ab);
	return s;
}

static void
proxy_attempt(struct proxy *p)
{
	struct rcat_endpoint *e = p->cands[p->attempt];
	struct proxy_try *t = &p->tries[p->attempt];
	const char *headers[7];
	char *body, msg[300];
	int n = 0, status;

	t->e = e;
	t->status = 0;
	t->t_ms = clock_loop_ms();
	p->ntries = p->attempt + 1;
	p->outcome = RS_NONE;
	if (strcmp(e->prov->api, "openai") != 0 && !is_anthropic(e)) {
		p->retry_after = -1;
		p->outcome = RS_CONNECT;
		proxy_next(p, 503, "%s: the %s API adapter is not available", e->prov->name, e->prov->api);
		return;
	}
	if (!(body = attempt_body(p, e, &status, msg, sizeof(msg)))) {
		proxy_fail(p, status, msg);
		return;
	}
	if (is_anthropic(e)) {
		if (e->prov->anthropic_key_header)
			headers[n++] = e->prov->anthropic_key_header;
		headers[n++] = "anthropic-version: " ANTHROPIC_VERSION;
	} else if (e->prov->auth_header) {
		headers[n++] = e->prov->auth_header;
	}
	headers[n++] = "Content-Type: application/json";
	headers[n++] = p->stream ? "Accept: text/event-stream" : "Accept: application/json";
	headers[n++] = "User-Agent: agora-router/0.1";
	headers[n] = NULL;
	evbuffer_drain(p->buf, evbuffer_get_length(p->buf));
	if (p->sse)
		sse_reset(p->sse);
	p->up_status = 0;
	p->saw_done = p->saw_finish = 0;
	p->state = PX_UPSTREAM;
	p->rt->st.upstream_attempts++;
	if (route_state(e, clock_loop_ms()) == ROUTE_HALF_OPEN)
		e->health.probe_ms = clock_loop_ms();	/* this request is the probe */
	p->up = upstream_send(p->rt->up, "POST", e->url, headers, body, strlen(body), &proxy_up_cbs, p);
	if (!p->up) {
		p->retry_after = -1;
		p->outcome = RS_CONNECT;
		proxy_next(p, 503, "%s: cannot reach %s", e->prov->name, e->url);
	}
}

/* ---- request validation and candidates ---- */

/* Adds a model's endpoints allowed by the preferences, in their order;
 * healthy_pass 1 takes the healthy ones, 0 those that failed recently. */
static void
add_candidates(struct proxy *p, struct rcat_model *m, int healthy_pass)
{
	struct rcat_endpoint *sel[PROXY_MAX_CANDIDATES];
	int64_t now = clock_loop_ms();
	int n = route_select(&p->prefs, m->eps, m->neps, sel, PROXY_MAX_CANDIDATES);

	for (int i = 0; i < n && p->ncands < PROXY_MAX_CANDIDATES; i++) {
		int open = route_state(sel[i], now) == ROUTE_OPEN;

		if (open == healthy_pass)
			continue;
		p->cands[p->ncands++] = sel[i];
	}
}

/* A model id from the request, without its ":floor"/":nitro" suffix. */
static struct rcat_model *
lookup_model(struct proxy *p, const char *id)
{
	char buf[256];
	size_t n = strlen(id);

	n = n < sizeof(buf) - 1 ? n : sizeof(buf) - 1;	/* as snprintf would, without its cost */
	memcpy(buf, id, n);
	buf[n] = '\0';
	route_strip_suffix(buf, &p->prefs);
	return rcat_model(p->cat, buf);
}

/* A uniform number in [0, 1) for load balancing (xorshift64*, seeded
 * once from OpenSSL's generator; not for secrets). */
static double
proxy_random(void)
{
	static uint64_t x;

	if (x == 0 && (RAND_bytes((unsigned char *)&x, sizeof(x)) != 1 || x == 0))
		x = 0x9E3779B97F4A7C15ULL ^ (uint64_t)clock_loop_ms();
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	return (double)((x * 0x2545F4914F6CDD1DULL) >> 11) / 9007199254740992.0;
}

/* When the operator's policy alone allows no endpoint of any of the
 * request's models, says why (the cheapest endpoint's refusal). */
static int
policy_leaves_none(struct proxy *p, struct rcat_model *const *list, int n, char *msg, size_t len)
{
	char why[200] = "";

	if (!p->policy)
		return 0;
	for (int i = 0; i < n; i++)
		for (int j = 0; j < list[i]->neps; j++) {
			if (route_policy_allows(p->policy, list[i]->eps[j], why[0] ? NULL : why, sizeof(why)))
				return 0;
		}
	snprintf(msg, len, "no provider of model '%s' is allowed for this key: %s", list[0]->id,
		 why[0] ? why : "the operator's policy");
	return 1;
}

/* Candidates: each model in order (model, then `models`), in the order the
 * provider preferences give (cheapest first by default), endpoints that
 * failed recently after the healthy ones. */
static int
pick_candidates(struct proxy *p, char *msg, size_t len)
{
	const cJSON *model = cJSON_GetObjectItemCaseSensitive(p->body, "model");
	const cJSON *models = cJSON_GetObjectItemCaseSensitive(p->body, "models"), *x;
	struct rcat_model *list[PROXY_MAX_CANDIDATES];
	int n = 0, known = 0, first_healthy = 0;
	const char *first;

	first = cJSON_IsString(model) ? model->valuestring : cJSON_GetArrayItem(models, 0)->valuestring;
	if ((list[n] = lookup_model(p, first)))
		n++;
	cJSON_ArrayForEach(x, models) {
		struct rcat_model *m = lookup_model(p, x->valuestring);
		int dup = 0;

		for (int i = 0; i < n; i++)
			dup |= list[i] == m;
		if (m && !dup && n < PROXY_MAX_CANDIDATES)
			list[n++] = m;
	}
	for (int i = 0; i < n; i++)
		known += list[i]->neps > 0;
	if (n == 0 || (!lookup_model(p, first) && !cJSON_IsArray(models))) {
		snprintf(msg, len, "model '%s' not found", first);
		return 404;
	}
	for (int pass = 1; pass >= 0; pass--)
		for (int i = 0; i < n; i++) {
			add_candidates(p, list[i], pass);
			if (pass == 1 && i == 0)
				first_healthy = p->ncands;
		}
	if (p->prefs.sort == ROUTE_SORT_DEFAULT && p->prefs.norder == 0)
		route_balance(p->cands, first_healthy, proxy_random(), clock_loop_ms());
	if (p->ncands > p->rt->conf.max_attempts)
		p->ncands = p->rt->conf.max_attempts;
	if (!known) {
		snprintf(msg, len, "no provider available for model '%s'", first);
		return 503;
	}
	if (p->ncands == 0 && policy_leaves_none(p, list, n, msg, len))
		return 403;
	if (p->ncands == 0) {
		snprintf(msg, len, "no endpoint of model '%s' can take this request: its context or max_tokens "
			 "does not fit, or the provider preferences (only, ignore, order with allow_fallbacks, "
			 "require_parameters, data_collection, zdr, quantizations, max_price) leave none", first);
		return 404;
	}
	return 0;
}

/* The most this request can cost at the first candidate's prices: the
 * prompt (~4 bytes a token) plus max_tokens, or when absent the endpoint's
 * max output capped at CREDIT_DEFAULT_OUTPUT tokens. */
#define CREDIT_DEFAULT_OUTPUT 4096

static int64_t
worst_case_nusd(struct proxy *p)
{
	struct rcat_endpoint *e = p->cands[0];
	const cJSON *mt = cJSON_GetObjectItemCaseSensitive(p->body, "max_tokens");
	int64_t out, a, b;
	size_t blen;

	if (!cJSON_IsNumber(mt))
		mt = cJSON_GetObjectItemCaseSensitive(p->body, "max_completion_tokens");
	out = cJSON_IsNumber(mt) ? (int64_t)mt->valuedouble
				 : (e->max_output < CREDIT_DEFAULT_OUTPUT ? e->max_output : CREDIT_DEFAULT_OUTPUT);
	httpd_req_body(p->req, &blen);
	a = money_cost_nusd((int64_t)(blen + 3) / 4, e->price_prompt);
	b = money_cost_nusd(out, e->price_completion);
	return a < 0 || b < 0 ? INT64_MAX / 4 : a + b;
}

/* The 402 message when the account's credits cannot cover the worst case. */
static void
credits_msg(char *msg, size_t len, const char *what, int64_t left, int64_t worst)
{
	char a[64], b[64];

	money_format_usd(left > 0 ? left : 0, a, sizeof(a));
	money_format_usd(worst, b, sizeof(b));
	snprintf(msg, len, "insufficient credits: %s $%s, this request may cost up to $%s; "
		 "add credits or lower max_tokens", what, a, b);
}

/* Redis away: the check before leases, against the balance as billed so
 * far (cached for key_cache_ttl_ms). */
static int
balance_check(struct proxy *p, int64_t worst, char *msg, size_t len)
{
	p->rt->st.budget_fallbacks++;
	if (p->balance >= worst)
		return 0;
	credits_msg(msg, len, "balance", p->balance, worst);
	return -1;
}

/* A reservation that waited for a credit lease: go on, or 402. */
static void
proxy_budget_cb(struct budget_hold *h, enum budget_result r, int64_t available, void *arg)
{
	struct proxy *p = arg;
	char msg[300];

	if (r == BUDGET_OK || (r == BUDGET_FALLBACK && balance_check(p, h->amount, msg, sizeof(msg)) == 0)) {
		proxy_attempt(p);
		return;
	}
	if (r == BUDGET_REFUSED)
		credits_msg(msg, sizeof(msg), "available (after what requests in flight reserved)", available, h->amount);
	p->rt->st.credit_refusals++;
	proxy_fail(p, 402, msg);
}

/* Prepaid credits and key limits: 402 when the key's remaining limit or
 * the account's credits cannot cover the worst case, which is reserved
 * from the router's credit lease (budget.h) until the generation ends.
 * 0: go on; 1: waiting for a lease (proxy_budget_cb goes on); -1: 402 with
 * msg. See README "Credits" for the overspend bound. */
static int
credit_check(struct proxy *p, char *msg, size_t len)
{
	int64_t worst = worst_case_nusd(p), available;
	char a[64], b[64];

	if (p->key_limit >= 0 && p->key_usage + worst > p->key_limit) {
		money_format_usd(p->key_limit > p->key_usage ? p->key_limit - p->key_usage : 0, a, sizeof(a));
		money_format_usd(worst, b, sizeof(b));
		snprintf(msg, len, "this key's credit limit is reached: $%s left, this request may cost up to $%s", a, b);
		return -1;
	}
	switch (budget_reserve(p->rt->budget, &p->hold, p->account_id, p->credits, p->billed, worst,
			       proxy_budget_cb, p, &available)) {
	case BUDGET_OK:
		return 0;
	case BUDGET_WAIT:
		p->rt->st.budget_waits++;
		return 1;
	case BUDGET_FALLBACK:
		return balance_check(p, worst, msg, len);
	case BUDGET_REFUSED:
		break;
	}
	credits_msg(msg, len, "available (after what requests in flight reserved)", available, worst);
	return -1;
}

static void
proxy_start(struct proxy *p)
{
	size_t len;
	const char *body = httpd_req_body(p->req, &len);
	const cJSON *so;
	char msg[300];
	int status;

	if (!(p->cat = p->rt->cat ? rcat_ref(p->rt->cat) : NULL)) {
		proxy_fail(p, 503, "the catalog is not loaded yet");
		return;
	}
	if (!request_utf8_valid(body, len)) {
		proxy_fail(p, 400, "the request body is not valid UTF-8");
		return;
	}
	if (!(p->body = request_parse(body, len, &p->shallow))) {
		proxy_fail(p, 400, "the request body is not valid JSON");
		return;
	}
	if (request_validate(p->body, msg, sizeof(msg)) < 0) {
		proxy_fail(p, 400, msg);
		return;
	}
	if (route_parse(cJSON_GetObjectItemCaseSensitive(p->body, "provider"), &p->prefs, msg, sizeof(msg)) < 0) {
		proxy_fail(p, 400, msg);
		return;
	}
	p->prefs.policy = p->policy;
	route_from_request(&p->prefs, p->body, len);
	p->stream = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(p->body, "stream"));
	so = cJSON_GetObjectItemCaseSensitive(p->body, "stream_options");
	p->want_usage = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(so, "include_usage"));
	if ((status = pick_candidates(p, msg, sizeof(msg)))) {
		proxy_fail(p, status, msg);
		return;
	}
	if (!(p->buf = evbuffer_new())) {
		proxy_fail(p, 500, "out of memory");
		return;
	}
	if ((status = credit_check(p, msg, sizeof(msg))) < 0) {
		p->rt->st.credit_refusals++;
		proxy_fail(p, 402, msg);
		return;
	}
	if (status == 0)
		proxy_attempt(p);
}

/* Requests and tokens per minute of the key; answers 429 when over. */
static int
rate_check(struct proxy *p, const struct auth_key *k)
{
	int64_t rpm = k->rpm_limit >= 0 ? k->rpm_limit : p->rt->conf.key_rpm_default;
	int64_t tpm = k->tpm_limit >= 0 ? k->tpm_limit : p->rt->conf.key_tpm_default;
	char ra[16], lim[24];
	int retry = 0;

	if (ratelimit_take(p->rt->ratelimit, k->key_id, rpm, tpm, &retry) == 0)
		return 0;
	p->rt->st.rate_limited++;
	snprintf(ra, sizeof(ra), "%d", retry);
	httpd_add_header(p->req, "Retry-After", ra);
	snprintf(lim, sizeof(lim), "%lld", (long long)(rpm > 0 ? rpm : tpm));
	httpd_add_header(p->req, "X-RateLimit-Limit", lim);
	httpd_add_header(p->req, "X-RateLimit-Remaining", "0");
	p->retry_after = -1;	/* the header is already set */
	proxy_fail(p, 429, rpm > 0 ? "rate limit: too many requests for this key this minute"
				   : "rate limit: too many tokens for this key this minute");
	return -1;
}

static void
proxy_auth_cb(const struct auth_key *k, const char *err, void *arg)
{
	struct proxy *p = arg;

	if (p->aborted) {
		httpd_reply(p->req, 499, NULL, NULL, 0);	/* frees the request */
		proxy_free(p);
		return;
	}
	if (err) {
		proxy_fail(p, 503, err);
		return;
	}
	if (!k || !k->usable) {
		p->rt->st.auth_failures++;
		proxy_fail(p, 401, k ? "this API key is disabled or revoked" : "invalid API key");
		return;
	}
	if (k->operator_key) {
		p->rt->st.auth_failures++;
		proxy_fail(p, 403, "operator keys cannot be used for completions; create an inference key");
		return;
	}
	p->account_id = k->account_id;
	p->key_id = k->key_id;
	p->key_limit = k->limit_nusd;
	p->key_usage = k->usage_nusd;
	p->balance = k->balance_nusd;
	p->credits = k->credits_nusd;
	p->billed = k->billed_nusd;
	p->policy = policy_ref(k->policy);
	if (rate_check(p, k) < 0)
		return;
	if (meter_blocked(p->rt->meter)) {
		p->rt->st.meter_refusals++;
		proxy_fail(p, 503, "usage cannot be recorded right now; try again shortly");
		return;
	}
	p->state = PX_UPSTREAM;
	proxy_start(p);
}

#define ATTRIBUTION_MAX 200	/* bytes of an attribution header kept */

/* An attribution header, bounded and copied as valid UTF-8 (NULL when
 * absent): cut at a character boundary, each byte that starts no UTF-8
 * character (http_parser lets 0x80-0xFF through) as U+FFFD. It goes into
 * the usage event, and PostgreSQL's text holds nothing else. */
static char *
attribution(struct httpd_req *req, const char *name, const char *alt)
{
	const char *v = httpd_req_header(req, name);
	char *out;
	size_t n;

	if (!v && alt)
		v = httpd_req_header(req, alt);
	if (!v || !*v)
		return NULL;
	n = strnlen(v, 3 * ATTRIBUTION_MAX);	/* enough to fill the bound with U+FFFDs */
	if (!(out = malloc(ATTRIBUTION_MAX + 1)))
		return NULL;
	out[utf8_sanitize(out, ATTRIBUTION_MAX, v, n)] = '\0';
	return out;
}

void
proxy_chat(struct router *rt, struct httpd_req *req)
{
	struct proxy *p;
	const char *key;
	size_t klen;

	rt->st.completions_total++;
	if (!(key = api_bearer(req, &klen))) {
		rt->st.auth_failures++;
		rt->st.completions_failed++;
		httpd_reply_error(req, 401, "missing API key: send Authorization: Bearer <key>");
		return;
	}
	if (!(p = calloc(1, sizeof(*p)))) {
		httpd_reply_error(req, 503, "out of memory");
		return;
	}
	p->rt = rt;
	p->req = req;
	p->state = PX_AUTH;
	p->t_start_ms = clock_loop_ms();
	p->retry_after = -1;
	gen_id_new(p->gen_id, sizeof(p->gen_id));
	p->app_url = attribution(req, "HTTP-Referer", NULL);
	p->app_title = attribution(req, "X-Title", "X-OpenRouter-Title");
	rt->inflight++;
	httpd_req_set_abort_cb(req, proxy_abort_cb, p);
	httpd_req_set_drain_cb(req, proxy_drain_cb, p);
	if (auth_lookup(rt->auth, key, klen, 0, proxy_auth_cb, p) < 0)
		proxy_fail(p, 503, "authentication backend busy");
}
