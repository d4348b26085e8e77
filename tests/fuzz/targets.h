/*
 * Fuzz target bodies, shared by the libFuzzer mains (tests/fuzz/fuzz_*.c,
 * built by `make fuzz` with clang, ASan and UBSan) and by the cmocka replay
 * of every corpus and regression file (tests/unit/test_fuzz_regressions.c,
 * built by `make test`). Each fuzz_<target>_one() takes any bytes, drives the
 * real module code the way the router, agoractl or analytics drive it, and
 * checks cheap invariants with FUZZ_CHECK. Header-only (static inline) so
 * that the unit test needs no Makefile rule of its own.
 *
 * FUZZ_FAIL(fmt, ...) reports a broken invariant: abort() by default (a crash
 * for libFuzzer); the unit test defines it as cmocka's fail_msg().
 */
#ifndef AGORA_FUZZ_TARGETS_H
#define AGORA_FUZZ_TARGETS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "anthropic.h"
#include "catimport.h"
#include "csvparse.h"
#include "days.h"
#include "policy.h"
#include "reconcile.h"
#include "request.h"
#include "route.h"
#include "sse.h"

#ifndef FUZZ_FAIL
#define FUZZ_FAIL(...) do { fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); abort(); } while (0)
#endif
#define FUZZ_CHECK(cond, what) \
	do { if (!(cond)) FUZZ_FAIL("%s:%d: invariant broken: %s", __FILE__, __LINE__, what); } while (0)

/* ---- known bugs ---- */

/* Bugs found by fuzzing in code owned elsewhere and not fixed yet
 * (tests/fuzz/known-bugs/README.md) are tolerated, so that fuzzing goes on
 * past them, unless AGORA_FUZZ_STRICT is set: tests/fuzz/run.sh replays
 * tests/fuzz/known-bugs/ strictly and says which still reproduce. */
static inline int
fz_tolerate(void)
{
	static int t = -1;

	if (t < 0) {
		const char *e = getenv("AGORA_FUZZ_STRICT");

		t = !(e && *e && strcmp(e, "0") != 0);
	}
	return t;
}

/* ---- small helpers ---- */

/* A growable byte log (events seen, in a canonical form). */
struct fz_log {
	char *s;
	size_t len, cap;
};

static inline void
fz_log_add(struct fz_log *l, const void *p, size_t n)
{
	if (l->len + n > l->cap) {
		size_t c = l->cap ? l->cap : 256;
		char *x;

		while (c < l->len + n)
			c *= 2;
		if (!(x = realloc(l->s, c)))
			abort();
		l->s = x;
		l->cap = c;
	}
	if (n)
		memcpy(l->s + l->len, p, n);
	l->len += n;
}

/* A length-prefixed field: no two different logs read the same. */
static inline void
fz_log_field(struct fz_log *l, const char *p, size_t n)
{
	uint32_t k = (uint32_t)n;

	fz_log_add(l, &k, sizeof(k));
	fz_log_add(l, p, n);
}

static inline int
fz_log_equal(const struct fz_log *a, const struct fz_log *b)
{
	return a->len == b->len && (a->len == 0 || memcmp(a->s, b->s, a->len) == 0);
}

/* FNV-1a of the first n bytes: split points and knobs derived from input. */
static inline uint32_t
fz_hash(const uint8_t *d, size_t n)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < n; i++)
		h = (h ^ d[i]) * 16777619u;
	return h;
}

static inline int
fz_str_is(const cJSON *o, const char *key, const char *want)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	return cJSON_IsString(v) && strcmp(v->valuestring, want) == 0;
}

/* A cJSON tree prints, and what it prints parses again. */
static inline void
fz_check_prints(const cJSON *o, const char *what)
{
	char *s = cJSON_PrintUnformatted(o);
	cJSON *back;

	FUZZ_CHECK(s != NULL, what);
	back = cJSON_Parse(s);
	FUZZ_CHECK(back != NULL, what);
	cJSON_Delete(back);
	cJSON_free(s);
}

/* ================================================================== */
/* SSE: lib/sse.c fed the same bytes whole, in a few chunks and one byte
 * at a time must report the same events and return the same value. */

struct fz_sse {
	struct fz_log log;
	int events, stop_after;
	size_t max_event;
};

static inline int
fz_sse_cb(void *arg, const char *event, const char *data, size_t len, int comment)
{
	struct fz_sse *x = arg;
	size_t elen = strlen(event);

	FUZZ_CHECK(elen < 64, "sse: event names are cut at 63 bytes");
	FUZZ_CHECK(comment || len < x->max_event, "sse: an event's data stays within max_event");
	FUZZ_CHECK(!comment || elen == 0, "sse: comments have no event name");
	fz_log_add(&x->log, comment ? "C" : "E", 1);
	fz_log_field(&x->log, event, elen);
	fz_log_field(&x->log, data, len);
	x->events++;
	return x->stop_after && x->events >= x->stop_after ? 7 : 0;
}

/* Feeds data[0..size) cut at cuts[0..ncuts) (increasing offsets) into s,
 * stopping at the first non-zero return, which it returns. */
static inline int
fz_sse_feed_cuts(struct sse *s, const char *data, size_t size, const size_t *cuts, int ncuts)
{
	size_t at = 0;
	int rc = 0;

	for (int i = 0; i <= ncuts && rc == 0; i++) {
		size_t to = i < ncuts ? cuts[i] : size;

		rc = sse_feed(s, data + at, to - at);
		at = to;
	}
	return rc;
}

/* One run over a fresh parser; *pending: what it holds at the end. */
static inline int
fz_sse_run(const char *data, size_t size, const size_t *cuts, int ncuts, struct fz_sse *x,
	   size_t *pending)
{
	struct sse *s = sse_new(x->max_event, fz_sse_cb, x);
	int rc;

	if (!s)
		abort();
	rc = fz_sse_feed_cuts(s, data, size, cuts, ncuts);
	*pending = sse_pending(s);
	sse_free(s);
	return rc;
}

static inline void
fz_sse_expect_same(const struct fz_sse *a, int rca, size_t pa, const struct fz_sse *b, int rcb, size_t pb,
		   const char *what)
{
	FUZZ_CHECK(rca == rcb, what);
	FUZZ_CHECK(fz_log_equal(&a->log, &b->log), what);
	FUZZ_CHECK(rca != 0 || pa == pb, what);
}

static inline void
fuzz_sse_one(const uint8_t *d, size_t size)
{
	static const size_t bounds[] = { 8, 64, 300, 1 << 16 };
	const char *data = (const char *)d;
	uint32_t h = fz_hash(d, size < 8 ? size : 8) ^ (uint32_t)size;
	struct fz_sse whole = { 0 }, split = { 0 }, bytes = { 0 };
	size_t cuts[4], pw, ps, pb, pa;
	int ncuts = size ? 1 + (int)(h % 4) : 0, rcw, rcs, rcb, rca;
	struct sse *s;

	whole.max_event = bounds[(h >> 4) % 4];
	whole.stop_after = (h >> 8) % 5 == 0 ? 1 + (int)((h >> 12) % 4) : 0;
	split.max_event = bytes.max_event = whole.max_event;
	split.stop_after = bytes.stop_after = whole.stop_after;

	/* whole, then the same parser reset and fed again */
	if (!(s = sse_new(whole.max_event, fz_sse_cb, &whole)))
		abort();
	rcw = sse_feed(s, data, size);
	pw = sse_pending(s);
	FUZZ_CHECK(rcw == 0 || rcw == -1 || rcw == 7, "sse: sse_feed returns 0, -1 or the callback's value");
	FUZZ_CHECK(rcw != 0 || pw <= size, "sse: pending bytes come from the input");
	sse_reset(s);
	FUZZ_CHECK(sse_pending(s) == 0, "sse: a reset parser holds nothing");
	{
		size_t first = whole.log.len;

		whole.events = 0;
		rca = sse_feed(s, data, size);
		pa = sse_pending(s);
		FUZZ_CHECK(rca == rcw && (rcw != 0 || pa == pw), "sse: a reset parser reads the stream again the same");
		FUZZ_CHECK(whole.log.len == 2 * first && (first == 0 || memcmp(whole.log.s, whole.log.s + first, first) == 0),
			   "sse: a reset parser reads the stream again the same");
		whole.log.len = first;
	}
	sse_free(s);

	/* a few cuts derived from the input */
	for (int i = 0; i < ncuts; i++) {
		h = h * 1103515245u + 12345u;
		cuts[i] = (size_t)(h >> 8) % (size + 1);
	}
	for (int i = 1; i < ncuts; i++)	/* sort the cuts (insertion) */
		for (int j = i; j > 0 && cuts[j - 1] > cuts[j]; j--) {
			size_t t = cuts[j];

			cuts[j] = cuts[j - 1];
			cuts[j - 1] = t;
		}
	rcs = fz_sse_run(data, size, cuts, ncuts, &split, &ps);
	fz_sse_expect_same(&whole, rcw, pw, &split, rcs, ps, "sse: events do not depend on how the stream is split");

	/* one byte at a time (bounded: short inputs only) */
	if (size <= 2048) {
		struct sse *b = sse_new(bytes.max_event, fz_sse_cb, &bytes);

		if (!b)
			abort();
		rcb = 0;
		for (size_t i = 0; i < size && rcb == 0; i++)
			rcb = sse_feed(b, data + i, 1);
		pb = sse_pending(b);
		sse_free(b);
		fz_sse_expect_same(&whole, rcw, pw, &bytes, rcb, pb, "sse: byte-at-a-time reads the same");
	}
	free(whole.log.s);
	free(split.log.s);
	free(bytes.log.s);
}

/* ================================================================== */
/* Anthropic: router/anthropic.c. Request translation of any JSON, answer
 * translation of any JSON, and any byte stream framed by lib/sse.c into
 * events, each translated into chat.completion.chunk objects. */

/* A translated request: alternating user/assistant turns, none empty. */
static inline void
fz_check_anthropic_request(const cJSON *chat)
{
	char msg[200] = "";
	cJSON *out = NULL;
	int rc = anthropic_request(chat, "claude-up", ANTHROPIC_DEFAULT_MAX_TOKENS, &out, msg, sizeof(msg));

	FUZZ_CHECK(rc == ANTHROPIC_OK || rc == ANTHROPIC_BAD || rc == ANTHROPIC_NOMEM,
		   "anthropic_request: returns OK, BAD or NOMEM");
	if (rc != ANTHROPIC_OK) {
		FUZZ_CHECK(out == NULL, "anthropic_request: no body on failure");
		FUZZ_CHECK(msg[0] != '\0', "anthropic_request: a failure says why");
		return;
	}
	FUZZ_CHECK(cJSON_IsObject(out), "anthropic_request: the body is an object");
	FUZZ_CHECK(fz_str_is(out, "model", "claude-up"), "anthropic_request: model is the upstream model");
	FUZZ_CHECK(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(out, "max_tokens")),
		   "anthropic_request: max_tokens is always set");
	{
		const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(out, "messages"), *m, *b;
		const char *prev = NULL;

		FUZZ_CHECK(cJSON_IsArray(msgs) && cJSON_GetArraySize(msgs) > 0,
			   "anthropic_request: at least one message");
		cJSON_ArrayForEach(m, msgs) {
			const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
			const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");

			FUZZ_CHECK(cJSON_IsString(role) && (strcmp(role->valuestring, "user") == 0 ||
							  strcmp(role->valuestring, "assistant") == 0),
				   "anthropic_request: roles are user or assistant");
			FUZZ_CHECK(!prev || strcmp(prev, role->valuestring) != 0,
				   "anthropic_request: turns alternate");
			prev = role->valuestring;
			FUZZ_CHECK(cJSON_IsArray(content) && cJSON_GetArraySize(content) > 0,
				   "anthropic_request: every turn has content blocks");
			cJSON_ArrayForEach(b, content) {
				const cJSON *t = cJSON_GetObjectItemCaseSensitive(b, "type"), *x;

				FUZZ_CHECK(cJSON_IsString(t), "anthropic_request: every block has a type");
				if (strcmp(t->valuestring, "text") == 0) {
					x = cJSON_GetObjectItemCaseSensitive(b, "text");
					FUZZ_CHECK(cJSON_IsString(x) && x->valuestring[0],
						   "anthropic_request: no empty text block");
				}
				if (strcmp(t->valuestring, "tool_use") == 0)
					FUZZ_CHECK(cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(b, "input")),
						   "anthropic_request: tool_use input is an object");
			}
		}
	}
	fz_check_prints(out, "anthropic_request: the body prints as JSON");
	cJSON_Delete(out);
}

static inline int
fz_finish_known(const char *f)
{
	static const char *const ok[] = { "stop", "length", "tool_calls", "content_filter" };

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		if (strcmp(f, ok[i]) == 0)
			return 1;
	return 0;
}

/* usage: non-negative counts that add up. */
static inline void
fz_check_usage(const cJSON *u, const char *what)
{
	const cJSON *p = cJSON_GetObjectItemCaseSensitive(u, "prompt_tokens");
	const cJSON *c = cJSON_GetObjectItemCaseSensitive(u, "completion_tokens");
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(u, "total_tokens");

	FUZZ_CHECK(cJSON_IsNumber(p) && cJSON_IsNumber(c) && cJSON_IsNumber(t), what);
	FUZZ_CHECK(p->valuedouble >= 0 && c->valuedouble >= 0, what);
	FUZZ_CHECK(t->valuedouble == p->valuedouble + c->valuedouble, what);
}

static inline void
fz_check_anthropic_answer(const cJSON *a)
{
	cJSON *o = anthropic_answer(a);
	const cJSON *choices, *c0, *m, *f, *u;

	(void)anthropic_error_message(a);
	if (!o)
		return;
	choices = cJSON_GetObjectItemCaseSensitive(o, "choices");
	FUZZ_CHECK(fz_str_is(o, "object", "chat.completion"), "anthropic_answer: a chat.completion");
	FUZZ_CHECK(cJSON_IsArray(choices) && cJSON_GetArraySize(choices) == 1, "anthropic_answer: one choice");
	c0 = cJSON_GetArrayItem(choices, 0);
	m = cJSON_GetObjectItemCaseSensitive(c0, "message");
	f = cJSON_GetObjectItemCaseSensitive(c0, "finish_reason");
	FUZZ_CHECK(fz_str_is(m, "role", "assistant"), "anthropic_answer: the message is the assistant's");
	FUZZ_CHECK(cJSON_IsString(f) && fz_finish_known(f->valuestring), "anthropic_answer: a known finish_reason");
	if ((u = cJSON_GetObjectItemCaseSensitive(o, "usage")))
		fz_check_usage(u, "anthropic_answer: usage adds up");
	fz_check_prints(o, "anthropic_answer: prints as JSON");
	cJSON_Delete(o);
}

struct fz_anth {
	struct anthropic_stream *st;
	int events, done, stopped;
};

/* One SSE event of an upstream Messages stream, as the router handles it
 * (router/proxy.c, stream_event_anthropic). */
static inline int
fz_anth_event(void *arg, const char *event, const char *data, size_t len, int comment)
{
	struct fz_anth *x = arg;
	cJSON *o, *chunks, *c;
	char msg[200] = "";
	int rc;

	if (comment)
		return 0;
	o = cJSON_ParseWithLength(data, len);
	if (!cJSON_IsObject(o)) {
		cJSON_Delete(o);
		x->stopped = 1;
		return 1;
	}
	if (!(chunks = cJSON_CreateArray()))
		abort();
	/* every other event without its name: data's `type` decides */
	rc = anthropic_stream_feed(x->st, x->events++ % 2 ? NULL : event, o, chunks, msg, sizeof(msg));
	cJSON_Delete(o);
	FUZZ_CHECK(rc == ANTHROPIC_OK || rc == ANTHROPIC_DONE || rc == ANTHROPIC_BAD || rc == ANTHROPIC_NOMEM,
		   "anthropic_stream_feed: a known return value");
	if (rc < 0) {
		FUZZ_CHECK(msg[0] != '\0', "anthropic_stream_feed: a failure says why");
		cJSON_Delete(chunks);
		x->stopped = 1;
		return 1;
	}
	cJSON_ArrayForEach(c, chunks) {
		const cJSON *choices = cJSON_GetObjectItemCaseSensitive(c, "choices"), *c0;

		FUZZ_CHECK(fz_str_is(c, "object", "chat.completion.chunk"), "anthropic stream: chunks only");
		FUZZ_CHECK(cJSON_IsArray(choices) && cJSON_GetArraySize(choices) <= 1,
			   "anthropic stream: at most one choice a chunk");
		if ((c0 = cJSON_GetArrayItem(choices, 0))) {
			const cJSON *f = cJSON_GetObjectItemCaseSensitive(c0, "finish_reason");

			FUZZ_CHECK(cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(c0, "delta")),
				   "anthropic stream: a choice has a delta");
			FUZZ_CHECK(cJSON_IsNull(f) || (cJSON_IsString(f) && fz_finish_known(f->valuestring)),
				   "anthropic stream: a known finish_reason");
		}
		fz_check_prints(c, "anthropic stream: chunks print as JSON");
	}
	if (rc == ANTHROPIC_DONE) {
		const cJSON *last = cJSON_GetArrayItem(chunks, cJSON_GetArraySize(chunks) - 1);

		FUZZ_CHECK(last && cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(last, "choices")) == 0,
			   "anthropic stream: message_stop ends with a usage chunk without choices");
		fz_check_usage(cJSON_GetObjectItemCaseSensitive(last, "usage"), "anthropic stream: usage adds up");
		x->done++;
	}
	cJSON_Delete(chunks);
	return 0;
}

static inline void
fuzz_anthropic_one(const uint8_t *d, size_t size)
{
	cJSON *j = cJSON_ParseWithLength((const char *)d, size);
	struct fz_anth x = { 0 };
	struct sse *s;

	if (j) {	/* the same JSON as a request, an answer and one event */
		cJSON *chunks = cJSON_CreateArray();
		char msg[200];

		fz_check_anthropic_request(j);
		fz_check_anthropic_answer(j);
		if (!chunks || !(x.st = anthropic_stream_new()))
			abort();
		(void)anthropic_stream_feed(x.st, "", j, chunks, msg, sizeof(msg));
		anthropic_stream_free(x.st);
		cJSON_Delete(chunks);
		cJSON_Delete(j);
	}
	/* the bytes as an SSE stream (events bounded as router/proxy.c does) */
	if (!(x.st = anthropic_stream_new()) || !(s = sse_new(4 * 1024 * 1024, fz_anth_event, &x)))
		abort();
	(void)sse_feed(s, (const char *)d, size);
	sse_free(s);
	anthropic_stream_free(x.st);
}

/* ================================================================== */
/* Request bodies: router/request.c and router/route.c as router/proxy.c
 * uses them (proxy_start, lookup_model, add_candidates, attempt_body),
 * over a fixed catalog of four endpoints and a few operator policies. */

#define FZ_NEPS 4
#define FZ_NOW_MS 1700000000000LL

struct fz_catalog {
	struct rcat_provider prov[FZ_NEPS];
	struct rcat_model model;
	struct rcat_endpoint ep[FZ_NEPS];
	struct policy *policy[4];	/* [0]: none */
};

static inline struct fz_catalog *
fz_catalog(void)
{
	static struct fz_catalog c;
	static int ready;
	static const char *const policies[] = {
		NULL,
		"{\"regions\":[\"EU\",\"DE\"]}",
		"{\"providers_deny\":[\"a\"],\"data_policy\":\"zdr\"}",
		"{\"open_weights_only\":true,\"max_prompt_uusd_per_mtok\":500000,\"licenses\":[\"mit\"]}",
	};
	/*                       id   name     region training retention quant   prompt   completion ctx     max_out */
	static const struct { const char *id, *name, *region; int training, retention; const char *quant;
			      int64_t prompt, completion; int ctx, max_out; } eps[FZ_NEPS] = {
		{ "a", "Alpha", "US", 0, 0, "fp8", 100000, 200000, 131072, 8192 },
		{ "b", "Beta", "EU", 0, 30, "fp4", 300000, 600000, 32768, 4096 },
		{ "c", "Gamma", "DE", 1, 0, "bf16", 900000, 1800000, 0, 100000 },
		{ "d", "Delta", "US", 0, 0, "fp8", 2000000, 8000000, 200000, 1000 },
	};

	if (ready)
		return &c;
	c.model.id = "z-ai/glm-5";
	c.model.origin = "CN";
	c.model.license = "MIT";
	c.model.open_weights = 1;
	c.model.supported = cJSON_Parse("[\"tools\",\"tool_choice\",\"temperature\",\"response_format\"]");
	for (int i = 0; i < FZ_NEPS; i++) {
		struct rcat_provider *p = &c.prov[i];
		struct rcat_endpoint *e = &c.ep[i];

		p->id = (char *)eps[i].id;
		p->name = (char *)eps[i].name;
		p->api = (char *)(i == 3 ? "anthropic" : "openai");
		p->region = (char *)eps[i].region;
		p->training = eps[i].training;
		p->retention_days = eps[i].retention;
		e->id = i + 1;
		e->prov = p;
		e->model = &c.model;
		e->upstream_model = (char *)"up/model";
		e->quantization = (char *)eps[i].quant;
		e->price_prompt = eps[i].prompt;
		e->price_completion = eps[i].completion;
		e->context_length = eps[i].ctx;
		e->max_output = eps[i].max_out;
	}
	c.ep[1].supported = cJSON_Parse("[\"tools\",\"seed\"]");
	/* health: b's breaker open, c failed recently, d has samples */
	c.ep[1].health.until_ms = FZ_NOW_MS + 10000;
	c.ep[1].health.failures = 3;
	c.ep[2].health.failures = 1;
	c.ep[2].health.last_fail_ms = FZ_NOW_MS - 1000;
	c.ep[3].health.samples = 5;
	c.ep[3].health.ttft_ms = 120;
	c.ep[3].health.tps = 150;
	c.ep[0].health.fleet_samples = 9;
	c.ep[0].health.fleet_ttft_ms = 900;
	c.ep[0].health.fleet_tps = 30;
	for (int i = 1; i < 4; i++)
		c.policy[i] = policy_new(policies[i], NULL);
	ready = 1;
	return &c;
}

static inline int
fz_named(const struct rcat_endpoint *e, const char *const *list, int n)
{
	for (int i = 0; i < n; i++)
		if (strcasecmp(list[i], e->prov->id) == 0 || strcasecmp(list[i], e->prov->name) == 0)
			return 1;
	return 0;
}

/* route_select's answer obeys the policy and the request's preferences. */
static inline void
fz_check_selection(const struct route_prefs *rp, struct rcat_endpoint *const *in, int n,
		   struct rcat_endpoint *const *out, int k, int max)
{
	FUZZ_CHECK(k >= 0 && k <= max && k <= n * (rp->norder + 1), "route_select: a bounded count");
	if (!rp->allow_fallbacks && rp->norder == 0)
		FUZZ_CHECK(k <= 1, "route_select: no fallbacks and no order: the primary only");
	for (int i = 0; i < k; i++) {
		const struct rcat_endpoint *e = out[i];
		int known = 0;

		for (int j = 0; j < n; j++)
			known |= in[j] == e;
		FUZZ_CHECK(known, "route_select: only endpoints it was given");
		FUZZ_CHECK(route_policy_allows(rp->policy, e, NULL, 0), "route_select: the operator policy holds");
		FUZZ_CHECK(!rp->nonly || fz_named(e, rp->only, rp->nonly), "route_select: provider.only holds");
		FUZZ_CHECK(!fz_named(e, rp->ignore, rp->nignore), "route_select: provider.ignore holds");
		FUZZ_CHECK(rp->allow_fallbacks || fz_named(e, rp->order, rp->norder) || rp->norder == 0,
			   "route_select: allow_fallbacks false keeps to provider.order");
		FUZZ_CHECK(!rp->data_deny || (!e->prov->training && e->prov->retention_days == 0),
			   "route_select: data_collection deny holds");
		FUZZ_CHECK(!rp->zdr || e->prov->retention_days == 0, "route_select: zdr holds");
		FUZZ_CHECK(rp->max_prompt < 0 || e->price_prompt <= rp->max_prompt, "route_select: max_price.prompt holds");
		FUZZ_CHECK(rp->max_completion < 0 || e->price_completion <= rp->max_completion,
			   "route_select: max_price.completion holds");
		FUZZ_CHECK(rp->need_output <= 0 || e->max_output >= rp->need_output,
			   "route_select: max output holds the request");
		for (int j = 0; j < i; j++)
			FUZZ_CHECK(out[j] != e, "route_select: no endpoint twice");
	}
}

/* 1 when an object has a member name twice (cJSON keeps both; lookups
 * find the first, a provider's parser often keeps the last). */
static inline int
fz_dup_keys(const cJSON *o)
{
	const cJSON *x, *y;

	if (!cJSON_IsObject(o))
		return 0;
	for (x = o->child; x; x = x->next)
		for (y = x->next; y; y = y->next)
			if (x->string && y->string && strcmp(x->string, y->string) == 0)
				return 1;
	return 0;
}

/* The body sent to an OpenAI-compatible provider (on a copy): what the
 * router decided (model, usage in streams) and nothing it dropped, each
 * member once, so that the provider cannot read another request than the
 * one routed and billed (request_validate refuses a body repeating a
 * member: formerly bug json-dup-keys, tests/fuzz/regressions/request/). */
static inline void
fz_check_upstream(const cJSON *body, int stream)
{
	static const char *const dropped[] = { "models", "provider", "transforms", "route", "plugins", "usage" };
	cJSON *b = cJSON_Duplicate(body, 1);

	if (!b)
		abort();
	FUZZ_CHECK(request_prepare_upstream(b, "up/model", stream) == 0, "request_prepare_upstream: succeeds");
	FUZZ_CHECK(!fz_dup_keys(b) && !fz_dup_keys(cJSON_GetObjectItemCaseSensitive(b, "stream_options")),
		   "request_prepare_upstream: the provider's body has each member once");
	FUZZ_CHECK(fz_str_is(b, "model", "up/model"), "request_prepare_upstream: model is the upstream model");
	for (size_t i = 0; i < sizeof(dropped) / sizeof(dropped[0]); i++)
		FUZZ_CHECK(!cJSON_GetObjectItemCaseSensitive(b, dropped[i]),
			   "request_prepare_upstream: OpenRouter-only fields are dropped");
	if (stream)
		FUZZ_CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(
				   cJSON_GetObjectItemCaseSensitive(b, "stream_options"), "include_usage")),
			   "request_prepare_upstream: streams ask for usage");
	/* a second attempt edits the same body again (router/proxy.c) */
	FUZZ_CHECK(request_prepare_upstream(b, "other/model", stream) == 0 && fz_str_is(b, "model", "other/model"),
		   "request_prepare_upstream: a second attempt re-targets the body");
	fz_check_prints(b, "request_prepare_upstream: the body prints as JSON");
	cJSON_Delete(b);
}

/* Well-formed UTF-8 after Unicode's table 3-7, written independently of
 * router/request.c to check request_utf8_valid against. */
static inline int
fz_utf8_ref(const uint8_t *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		uint8_t c = s[i], lo = 0x80, hi = 0xBF;
		size_t k;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xC2 && c <= 0xDF)
			k = 1;
		else if (c >= 0xE0 && c <= 0xEF)
			k = 2, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
		else if (c >= 0xF0 && c <= 0xF4)
			k = 3, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
		else
			return 0;
		if (n - i <= k || s[i + 1] < lo || s[i + 1] > hi)
			return 0;
		for (size_t j = 2; j <= k; j++)
			if ((s[i + j] & 0xC0) != 0x80)
				return 0;
		i += k + 1;
	}
	return 1;
}

/* request_parse (the router's parse: `messages` kept as text when jscan
 * reads it plainly) against the whole parse: what cJSON takes it takes,
 * printed and read back it is the same JSON, and validation answers alike,
 * word for word. */
static inline void
fz_check_request_parse(const uint8_t *d, size_t size, const cJSON *whole)
{
	char m1[300] = "", m2[300] = "", *s = NULL, *t = NULL, *w = NULL;
	int shallow = 0, r1, r2;
	cJSON *tree = request_parse((const char *)d, size, &shallow), *back = NULL;

	FUZZ_CHECK(tree != NULL, "request_parse: takes what cJSON takes");
	if (!tree)
		return;
	r1 = request_validate(whole, m1, sizeof(m1));
	r2 = request_validate(tree, m2, sizeof(m2));
	FUZZ_CHECK(r1 == r2 && strcmp(m1, m2) == 0, "request_parse: validated as the whole parse");
	if ((s = cJSON_PrintUnformatted(tree)) && (back = cJSON_Parse(s)) &&
	    (t = cJSON_PrintUnformatted(back)) && (w = cJSON_PrintUnformatted(whole)))
		FUZZ_CHECK(strcmp(t, w) == 0, "request_parse: the same JSON as the whole parse");
	free(s);
	free(t);
	free(w);
	cJSON_Delete(back);
	cJSON_Delete(tree);
}

static inline void
fuzz_request_one(const uint8_t *d, size_t size)
{
	struct fz_catalog *cat = fz_catalog();
	struct rcat_endpoint *in[FZ_NEPS], *out[16];
	struct route_prefs rp;
	cJSON *body = cJSON_ParseWithLength((const char *)d, size);
	const cJSON *model, *models, *x;
	char msg[300] = "", buf[256];
	uint32_t h = fz_hash(d, size);
	int k, stream;

	/* router/proxy.c refuses a body that is not UTF-8 before parsing it */
	FUZZ_CHECK(request_utf8_valid((const char *)d, size) == fz_utf8_ref(d, size),
		   "request_utf8_valid: agrees with Unicode's table 3-7");
	if (!body || !fz_utf8_ref(d, size))
		goto done;
	fz_check_request_parse(d, size, body);
	if (request_validate(body, msg, sizeof(msg)) < 0) {
		FUZZ_CHECK(msg[0] != '\0', "request_validate: a refusal says why");
		goto done;
	}
	msg[0] = '\0';
	if (route_parse(cJSON_GetObjectItemCaseSensitive(body, "provider"), &rp, msg, sizeof(msg)) < 0) {
		FUZZ_CHECK(strncmp(msg, "provider", 8) == 0, "route_parse: a refusal names the provider field");
		goto done;
	}
	route_from_request(&rp, body, size);
	FUZZ_CHECK(rp.need_output >= 0 && rp.need_output <= 2147483647LL, "route_from_request: max_tokens bounded");
	FUZZ_CHECK(rp.need_context >= rp.need_output, "route_from_request: context holds the output");
	FUZZ_CHECK(rp.nparams >= 0 && rp.nparams <= ROUTE_MAX_LIST, "route_from_request: bounded parameters");
	stream = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(body, "stream"));

	/* the model ids as lookup_model reads them */
	model = cJSON_GetObjectItemCaseSensitive(body, "model");
	models = cJSON_GetObjectItemCaseSensitive(body, "models");
	if (cJSON_IsString(model)) {
		snprintf(buf, sizeof(buf), "%s", model->valuestring);
		route_strip_suffix(buf, &rp);
	}
	cJSON_ArrayForEach(x, models) {
		snprintf(buf, sizeof(buf), "%s", x->valuestring);
		route_strip_suffix(buf, &rp);
	}
	for (int i = 0; i < FZ_NEPS; i++)
		in[i] = &cat->ep[i];
	for (int p = 0; p < 4; p++) {	/* no policy, then each operator policy */
		rp.policy = cat->policy[p];
		for (int max = 16; max >= 1; max -= 15) {	/* room for all, and for one */
			k = route_select(&rp, in, FZ_NEPS, out, max);
			fz_check_selection(&rp, in, FZ_NEPS, out, k, max);
		}
	}
	rp.policy = cat->policy[h % 4];
	k = route_select(&rp, in, FZ_NEPS, out, 16);
	{
		struct rcat_endpoint *bal[16];
		int pick;

		memcpy(bal, out, sizeof(out[0]) * (size_t)k);
		pick = route_balance(bal, k, (double)(h >> 8) / 16777216.0, FZ_NOW_MS);
		FUZZ_CHECK(pick >= -1 && pick < k, "route_balance: picks one of them or none");
		for (int i = 0; i < k; i++) {
			int seen = 0, want = 0;

			for (int j = 0; j < k; j++) {
				seen += bal[j] == out[i];
				want += out[j] == out[i];
			}
			FUZZ_CHECK(seen == want, "route_balance: a permutation of its input");
		}
	}
	/* the body for each kind of provider */
	fz_check_upstream(body, stream);
	fz_check_anthropic_request(body);
done:
	cJSON_Delete(body);
}

/* ================================================================== */
/* Catalog files: lib/catimport.c (what `agoractl catalog import` checks
 * before it writes anything), with a fixed environment for ${NAME}. */

static inline const char *
fz_env(const char *name, void *arg)
{
	static char longval[5000];

	(void)arg;
	if (strcmp(name, "MOCK_PORT") == 0)
		return "8701";
	if (strcmp(name, "KEY") == 0)
		return "sk-test-key";
	if (strcmp(name, "EMPTY") == 0)
		return "";
	if (strcmp(name, "LONG") == 0) {
		if (!longval[0])
			memset(longval, 'x', sizeof(longval) - 1);
		return longval;
	}
	return NULL;
}

static inline int
fz_has_id(const cJSON *arr, const char *key, const char *id)
{
	const cJSON *x;

	cJSON_ArrayForEach(x, arr)
		if (fz_str_is(x, key, id))
			return 1;
	return 0;
}

static inline int
fz_int_in(const cJSON *o, const char *key, double lo, double hi)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	return cJSON_IsNumber(v) && v->valuedouble >= lo && v->valuedouble <= hi &&
	       v->valuedouble == (double)(long long)v->valuedouble;
}

static inline void
fuzz_catalog_one(const uint8_t *d, size_t size)
{
	char err[400] = "";
	cJSON *c = catimport_parse((const char *)d, size, fz_env, NULL, err, sizeof(err));
	const cJSON *provs, *models, *eps, *x, *y;

	if (!c) {
		FUZZ_CHECK(err[0] != '\0' && strstr(err, ": "), "catimport_parse: an error names its path");
		return;
	}
	provs = cJSON_GetObjectItemCaseSensitive(c, "providers");
	models = cJSON_GetObjectItemCaseSensitive(c, "models");
	eps = cJSON_GetObjectItemCaseSensitive(c, "endpoints");
	FUZZ_CHECK(cJSON_IsArray(provs) && cJSON_IsArray(models) && cJSON_IsArray(eps),
		   "catimport_parse: providers, models and endpoints");
	cJSON_ArrayForEach(x, provs) {
		const cJSON *id = cJSON_GetObjectItemCaseSensitive(x, "id");

		FUZZ_CHECK(cJSON_IsString(id) && id->valuestring[0], "catimport_parse: providers have ids");
		for (y = provs->child; y != x; y = y->next)
			FUZZ_CHECK(!fz_str_is(y, "id", id->valuestring), "catimport_parse: provider ids are unique");
		FUZZ_CHECK(fz_str_is(x, "api", "openai") || fz_str_is(x, "api", "anthropic"),
			   "catimport_parse: a known api");
		FUZZ_CHECK(fz_int_in(x, "retention_days", 0, 36500), "catimport_parse: retention_days bounded");
	}
	cJSON_ArrayForEach(x, models) {
		const cJSON *id = cJSON_GetObjectItemCaseSensitive(x, "id");

		FUZZ_CHECK(cJSON_IsString(id) && strchr(id->valuestring, '/'), "catimport_parse: models are author/slug");
		for (y = models->child; y != x; y = y->next)
			FUZZ_CHECK(!fz_str_is(y, "id", id->valuestring), "catimport_parse: model ids are unique");
		FUZZ_CHECK(fz_int_in(x, "context_length", 1, 100000000), "catimport_parse: context_length bounded");
	}
	cJSON_ArrayForEach(x, eps) {
		const cJSON *mid = cJSON_GetObjectItemCaseSensitive(x, "model_id");
		const cJSON *pid = cJSON_GetObjectItemCaseSensitive(x, "provider_id");

		FUZZ_CHECK(cJSON_IsString(mid) && fz_has_id(models, "id", mid->valuestring),
			   "catimport_parse: endpoints belong to a model");
		FUZZ_CHECK(cJSON_IsString(pid) && fz_has_id(provs, "id", pid->valuestring),
			   "catimport_parse: endpoints name a known provider");
		for (y = eps->child; y != x; y = y->next)
			FUZZ_CHECK(!(fz_str_is(y, "model_id", mid->valuestring) &&
				     fz_str_is(y, "provider_id", pid->valuestring)),
				   "catimport_parse: one endpoint per model and provider");
		FUZZ_CHECK(fz_int_in(x, "prompt", 0, 1e15) && fz_int_in(x, "completion", 0, 1e15),
			   "catimport_parse: prices are bounded integers");
		FUZZ_CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(x, "cost_prompt")) ||
			   (fz_int_in(x, "cost_prompt", 0, 1e15) && fz_int_in(x, "cost_completion", 0, 1e15)),
			   "catimport_parse: provider costs are bounded integers or null");
		FUZZ_CHECK(fz_int_in(x, "context_length", 1, 100000000) && fz_int_in(x, "max_output", 1, 100000000),
			   "catimport_parse: endpoint sizes bounded");
	}
	fz_check_prints(c, "catimport_parse: the result prints as JSON");
	cJSON_Delete(c);
}

/* ================================================================== */
/* CSV: lib/csvparse.c (the reconciliation importer's reader), with the
 * default limits and with small limits derived from the input; whatever
 * it reads, written back fully quoted, reads back the same. */

struct fz_csv_rec {
	struct fz_log log;	/* fields, length-prefixed, one record after another */
	long records;
};

/* Reads everything; returns 1 at a clean end, -1 after an error. */
static inline int
fz_csv_read(const char *data, size_t size, const struct csvp_limits *lim, struct fz_csv_rec *r,
	    struct fz_log *requoted)
{
	struct csvp c;
	char *const *f;
	long last_line = 0;
	int n, rc;

	if (csvp_init(&c, data, size, lim) < 0)
		abort();
	while ((rc = csvp_next(&c, &f, &n)) == 1) {
		size_t total = 0;

		FUZZ_CHECK(n >= 1 && n <= (lim ? lim->max_fields : csvp_default_limits.max_fields),
			   "csvp_next: 1 to max_fields fields");
		FUZZ_CHECK(csvp_line(&c) >= 1 && csvp_line(&c) > last_line, "csvp_next: records start on later lines");
		last_line = csvp_line(&c);
		r->records++;
		FUZZ_CHECK(r->records <= (lim ? lim->max_records : csvp_default_limits.max_records),
			   "csvp_next: at most max_records");
		fz_log_field(&r->log, "R", 1);
		for (int i = 0; i < n; i++) {
			size_t len = strlen(f[i]);

			total += len;
			fz_log_field(&r->log, f[i], len);
			if (requoted) {
				fz_log_add(requoted, i ? ",\"" : "\"", i ? 2 : 1);
				for (size_t j = 0; j < len; j++)	/* a quote doubled */
					fz_log_add(requoted, f[i][j] == '"' ? "\"\"" : f[i] + j, f[i][j] == '"' ? 2 : 1);
				fz_log_add(requoted, "\"", 1);
			}
		}
		if (requoted)
			fz_log_add(requoted, "\r\n", 2);
		FUZZ_CHECK(total <= (lim ? lim->max_record_bytes : csvp_default_limits.max_record_bytes),
			   "csvp_next: a record's fields fit in max_record_bytes");
	}
	FUZZ_CHECK(rc == 0 || rc == -1, "csvp_next: 1, 0 or -1");
	if (rc < 0) {
		FUZZ_CHECK(strncmp(csvp_error(&c), "line ", 5) == 0, "csvp_error: names the line");
		FUZZ_CHECK(csvp_next(&c, &f, &n) == 0, "csvp_next: an error ends the input");
	}
	csvp_free(&c);
	return rc < 0 ? -1 : 1;
}

/* A decimal string of digits (exact numbers travel as strings). */
static inline int
fz_digits(const cJSON *v, long long *out)
{
	char *end;

	if (!cJSON_IsString(v) || !v->valuestring[0] || strspn(v->valuestring, "0123456789") != strlen(v->valuestring))
		return 0;
	*out = strtoll(v->valuestring, &end, 10);
	return 1;
}

/* lib/reconcile.c: a provider's usage CSV as agoractl and the analytics
 * API import it. What it accepts adds up to the totals it reports. */
static inline void
fz_check_reconcile(const uint8_t *d, size_t size)
{
	struct reconcile_totals t;
	char err[300] = "", *rows_json = NULL;
	cJSON *rows, *r;
	long long in = 0, out = 0, nusd = 0;
	long last_line = 0;

	if (reconcile_parse_csv((const char *)d, size, &rows_json, &t, err, sizeof(err)) < 0) {
		FUZZ_CHECK(rows_json == NULL, "reconcile_parse_csv: no rows on failure");
		FUZZ_CHECK(strncmp(err, "line ", 5) == 0, "reconcile_parse_csv: an error names its line");
		return;
	}
	FUZZ_CHECK(rows_json && (rows = cJSON_Parse(rows_json)), "reconcile_parse_csv: rows are JSON");
	FUZZ_CHECK(cJSON_IsArray(rows) && cJSON_GetArraySize(rows) == t.rows && t.rows > 0 &&
		   t.rows <= RECONCILE_MAX_ROWS, "reconcile_parse_csv: one row per data record");
	cJSON_ArrayForEach(r, rows) {
		const cJSON *line = cJSON_GetArrayItem(r, 0), *day = cJSON_GetArrayItem(r, 1);
		const cJSON *model = cJSON_GetArrayItem(r, 2);
		long long a = 0, b = 0, c = 0;
		char back[DAYS_DATE_LEN];
		int32_t dn;

		FUZZ_CHECK(cJSON_GetArraySize(r) == 6 && cJSON_IsNumber(line) && line->valuedouble > last_line,
			   "reconcile_parse_csv: rows carry increasing line numbers");
		last_line = (long)line->valuedouble;
		FUZZ_CHECK(cJSON_IsString(day) && days_parse(day->valuestring, &dn) == 0,
			   "reconcile_parse_csv: dates are dates");
		days_format(dn, back);
		FUZZ_CHECK(strcmp(back, day->valuestring) == 0, "reconcile_parse_csv: dates are canonical YYYY-MM-DD");
		FUZZ_CHECK(strcmp(day->valuestring, t.first_day) >= 0 && strcmp(day->valuestring, t.last_day) <= 0,
			   "reconcile_parse_csv: dates within first_day..last_day");
		FUZZ_CHECK(cJSON_IsString(model) && model->valuestring[0] &&
			   strlen(model->valuestring) <= RECONCILE_MAX_MODEL, "reconcile_parse_csv: a model name");
		FUZZ_CHECK(fz_digits(cJSON_GetArrayItem(r, 3), &a) && fz_digits(cJSON_GetArrayItem(r, 4), &b) &&
			   fz_digits(cJSON_GetArrayItem(r, 5), &c), "reconcile_parse_csv: counts are digit strings");
		in += a;
		out += b;
		nusd += c;
	}
	FUZZ_CHECK(in == t.input_tokens && out == t.output_tokens && nusd == t.amount_nusd,
		   "reconcile_parse_csv: rows add up to the totals");
	cJSON_Delete(rows);
	cJSON_free(rows_json);
}

static inline void
fuzz_csv_one(const uint8_t *d, size_t size)
{
	struct fz_csv_rec a = { 0 }, b = { 0 }, small = { 0 };
	struct fz_log requoted = { 0 };
	struct csvp_limits lim = { 1 + size % 61, 1 + (int)(size % 7), 1 + (long)(size % 13) };

	if (fz_csv_read((const char *)d, size, NULL, &a, &requoted) > 0) {
		struct csvp_limits big = { 1 << 20, csvp_default_limits.max_fields, csvp_default_limits.max_records };

		FUZZ_CHECK(fz_csv_read(requoted.s ? requoted.s : "", requoted.len, &big, &b, NULL) > 0,
			   "csv: what was read, written back quoted, reads again");
		FUZZ_CHECK(a.records == b.records && fz_log_equal(&a.log, &b.log),
			   "csv: what was read, written back quoted, reads the same");
	}
	(void)fz_csv_read((const char *)d, size, &lim, &small, NULL);
	fz_check_reconcile(d, size);
	free(a.log.s);
	free(b.log.s);
	free(small.log.s);
	free(requoted.s);
}

#endif
