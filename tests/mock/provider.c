/*
 * agora-mock-provider: our one fake. A libevent (evhttp) server that speaks
 * OpenAI Chat Completions (JSON and SSE) and Anthropic Messages (JSON and SSE
 * events) with usage, at a configurable time to first token and speed, and
 * fails on demand: 500, 429 with Retry-After, 400, connection reset, stream
 * cut mid-way, one byte a second, garbage, a hang, a stream whose only
 * event is an error (Anthropic's `event: error`; a 500 when not streamed),
 * a 20 MB answer (`huge`: one 20 MB JSON answer, or a stream with one 20 MB
 * event), or JSON that breaks off (`invalid_json`: a whole HTTP answer whose
 * JSON is cut; streamed, a valid first chunk then a cut one). GET /mock/stats and
 * POST /mock/config let tests watch and steer it at run time (active_requests
 * counts answers still being produced, aborted_streams the streams whose
 * client went away first).
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/ssl.h>

enum fail_mode { F_NONE, F_500, F_429, F_400, F_RESET, F_CUT, F_DRIP, F_GARBAGE, F_HANG, F_ERROR_EVENT,
		 F_HUGE, F_INVALID_JSON };
static const char *const fail_names[] = { "none", "500", "429", "400", "reset", "cut", "drip",
					  "garbage", "hang", "error_event", "huge", "invalid_json" };

struct mock_conf {
	char name[64];
	char api_key[256];
	int ttft_ms, tps, retry_after, fail_count, words;
	enum fail_mode fail;
	char say[64];			/* a word the answer carries (privacy tests); "" none */
};

struct stats {
	long long requests, active_streams, completed_streams, aborted_streams;
};

/* One answer being produced (delayed, streamed or dripped). */
struct job {
	struct evhttp_request *req;
	struct evhttp_connection *conn;
	struct event *timer;
	int anthropic, stream, tools, cut, drip, hang, include_usage;
	int started, step, nwords, prompt_tokens;
	char model[256], tool_name[128], finish[16];
	char *drip_buf;			/* whole answer, sent byte by byte */
	size_t drip_len, drip_off;
	LIST_ENTRY(job) link;
};

static struct event_base *base;
static struct evhttp *http;
/* libevent 2.1: back-to-back chunked writes on an openssl bufferevent with
 * no loop turn between them can stall the last ones; TLS streams are paced
 * by at least 1 ms. */
static SSL_CTX *ssl_ctx;
static struct mock_conf conf = { .name = "mock", .retry_after = 1, .words = 12 };
static struct stats st;
static cJSON *last_request, *last_headers;
static char last_path[512];
static long long counter;
static LIST_HEAD(, job) jobs = LIST_HEAD_INITIALIZER(jobs);

static const char *const filler[] = { "alpha", "beta", "gamma", "delta", "epsilon", "zeta",
				      "eta", "theta", "iota", "kappa", "lambda", "mu" };

static void job_step(evutil_socket_t fd, short what, void *arg);

/* ---- helpers ---- */

static void
send_json(struct evhttp_request *req, int code, cJSON *o)
{
	struct evbuffer *b = evbuffer_new();
	char *s = cJSON_PrintUnformatted(o);

	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
	evbuffer_add(b, s, strlen(s));
	evhttp_send_reply(req, code, code == 200 ? "OK" : "Error", b);
	evbuffer_free(b);
	cJSON_free(s);
	cJSON_Delete(o);
}

static void
send_error(struct evhttp_request *req, int anthropic, int code, const char *msg)
{
	cJSON *o = cJSON_CreateObject(), *e;

	if (anthropic) {
		cJSON_AddStringToObject(o, "type", "error");
		e = cJSON_AddObjectToObject(o, "error");
		cJSON_AddStringToObject(e, "type", code == 429 ? "rate_limit_error"
						  : code == 401 ? "authentication_error"
						  : code == 400 ? "invalid_request_error" : "api_error");
	} else {
		e = cJSON_AddObjectToObject(o, "error");
		cJSON_AddNumberToObject(e, "code", code);
		cJSON_AddStringToObject(e, "type", code >= 500 ? "server_error" : "invalid_request_error");
	}
	cJSON_AddStringToObject(e, "message", msg);
	send_json(req, code, o);
}

static int
count_words(const char *s)
{
	int n = 0, in = 0;

	for (; s && *s; s++) {
		int sp = *s == ' ' || *s == '\n' || *s == '\t' || *s == '\r';

		n += !sp && !in;
		in = !sp;
	}
	return n;
}

static int
content_words(const cJSON *content)
{
	const cJSON *part;
	int n = 0;

	if (cJSON_IsString(content))
		return count_words(content->valuestring);
	cJSON_ArrayForEach(part, content) {
		const cJSON *t = cJSON_GetObjectItem(part, "text");

		if (cJSON_IsString(t))
			n += count_words(t->valuestring);
	}
	return n;
}

static int
prompt_tokens(const cJSON *body)
{
	const cJSON *m, *msgs = cJSON_GetObjectItem(body, "messages");
	int n = content_words(cJSON_GetObjectItem(body, "system"));

	cJSON_ArrayForEach(m, msgs)
		n += 4 + content_words(cJSON_GetObjectItem(m, "content"));
	return n;
}

static void
word_text(const struct job *j, int i, char *out, size_t len)
{
	if (i == 0)
		snprintf(out, len, "Hello from %s:%s", conf.name, j->nwords > 1 ? " " : "");
	else if (i == 1 && conf.say[0])
		snprintf(out, len, "%s%s", conf.say, i + 1 < j->nwords ? " " : "");
	else
		snprintf(out, len, "%s%s", filler[i % 12], i + 1 < j->nwords ? " " : "");
}

/* ---- OpenAI shapes ---- */

static cJSON *
oa_chunk(const struct job *j, cJSON *delta, const char *finish)
{
	cJSON *o = cJSON_CreateObject(), *choices = cJSON_CreateArray(), *c;
	char id[64];

	snprintf(id, sizeof(id), "chatcmpl-mock-%lld", counter);
	cJSON_AddStringToObject(o, "id", id);
	cJSON_AddStringToObject(o, "object", "chat.completion.chunk");
	cJSON_AddNumberToObject(o, "created", (double)time(NULL));
	cJSON_AddStringToObject(o, "model", j->model);
	if (delta) {
		c = cJSON_CreateObject();
		cJSON_AddNumberToObject(c, "index", 0);
		cJSON_AddItemToObject(c, "delta", delta);
		if (finish)
			cJSON_AddStringToObject(c, "finish_reason", finish);
		else
			cJSON_AddNullToObject(c, "finish_reason");
		cJSON_AddItemToArray(choices, c);
	}
	cJSON_AddItemToObject(o, "choices", choices);
	return o;
}

static cJSON *
oa_tool_calls(const struct job *j)
{
	cJSON *arr = cJSON_CreateArray(), *tc = cJSON_CreateObject(), *fn;

	cJSON_AddNumberToObject(tc, "index", 0);
	cJSON_AddStringToObject(tc, "id", "call_mock1");
	cJSON_AddStringToObject(tc, "type", "function");
	fn = cJSON_AddObjectToObject(tc, "function");
	cJSON_AddStringToObject(fn, "name", j->tool_name);
	cJSON_AddStringToObject(fn, "arguments", "{\"mock\":true}");
	cJSON_AddItemToArray(arr, tc);
	return arr;
}

static cJSON *
usage_json(const struct job *j, int anthropic)
{
	cJSON *u = cJSON_CreateObject();

	if (anthropic) {
		cJSON_AddNumberToObject(u, "input_tokens", j->prompt_tokens);
		cJSON_AddNumberToObject(u, "output_tokens", j->nwords);
	} else {
		cJSON_AddNumberToObject(u, "prompt_tokens", j->prompt_tokens);
		cJSON_AddNumberToObject(u, "completion_tokens", j->nwords);
		cJSON_AddNumberToObject(u, "total_tokens", j->prompt_tokens + j->nwords);
	}
	return u;
}

static char *
full_text(const struct job *j)
{
	size_t cap = 160 + (size_t)j->nwords * 16, off = 0;
	char *s = malloc(cap), w[128];

	s[0] = '\0';
	for (int i = 0; i < j->nwords; i++) {
		word_text(j, i, w, sizeof(w));
		off += (size_t)snprintf(s + off, cap - off, "%s", w);
	}
	return s;
}

static cJSON *
oa_answer(const struct job *j)
{
	cJSON *o = cJSON_CreateObject(), *choices = cJSON_AddArrayToObject(o, "choices");
	cJSON *c = cJSON_CreateObject(), *msg;
	char id[64], *text;

	snprintf(id, sizeof(id), "chatcmpl-mock-%lld", counter);
	cJSON_AddStringToObject(o, "id", id);
	cJSON_AddStringToObject(o, "object", "chat.completion");
	cJSON_AddNumberToObject(o, "created", (double)time(NULL));
	cJSON_AddStringToObject(o, "model", j->model);
	cJSON_AddNumberToObject(c, "index", 0);
	msg = cJSON_AddObjectToObject(c, "message");
	cJSON_AddStringToObject(msg, "role", "assistant");
	if (j->tools) {
		cJSON_AddNullToObject(msg, "content");
		cJSON_AddItemToObject(msg, "tool_calls", oa_tool_calls(j));
	} else {
		text = full_text(j);
		cJSON_AddStringToObject(msg, "content", text);
		free(text);
	}
	cJSON_AddStringToObject(c, "finish_reason", j->finish);
	cJSON_AddItemToArray(choices, c);
	cJSON_AddItemToObject(o, "usage", usage_json(j, 0));
	return o;
}

/* ---- Anthropic shapes ---- */

static cJSON *
an_answer(const struct job *j)
{
	cJSON *o = cJSON_CreateObject(), *content = cJSON_CreateArray(), *b = cJSON_CreateObject();
	char id[64], *text;

	snprintf(id, sizeof(id), "msg_mock_%lld", counter);
	cJSON_AddStringToObject(o, "id", id);
	cJSON_AddStringToObject(o, "type", "message");
	cJSON_AddStringToObject(o, "role", "assistant");
	cJSON_AddStringToObject(o, "model", j->model);
	if (j->tools) {
		cJSON_AddStringToObject(b, "type", "tool_use");
		cJSON_AddStringToObject(b, "id", "toolu_mock1");
		cJSON_AddStringToObject(b, "name", j->tool_name);
		cJSON_AddTrueToObject(cJSON_AddObjectToObject(b, "input"), "mock");
	} else {
		text = full_text(j);
		cJSON_AddStringToObject(b, "type", "text");
		cJSON_AddStringToObject(b, "text", text);
		free(text);
	}
	cJSON_AddItemToArray(content, b);
	cJSON_AddItemToObject(o, "content", content);
	cJSON_AddStringToObject(o, "stop_reason", j->finish);
	cJSON_AddNullToObject(o, "stop_sequence");
	cJSON_AddItemToObject(o, "usage", usage_json(j, 1));
	return o;
}

/* ---- streaming ---- */

static void
sse_send(struct job *j, const char *event, cJSON *o)
{
	struct evbuffer *b = evbuffer_new();
	char *s = cJSON_PrintUnformatted(o);

	if (event)
		evbuffer_add_printf(b, "event: %s\n", event);
	evbuffer_add_printf(b, "data: %s\n\n", s);
	evhttp_send_reply_chunk(j->req, b);
	evbuffer_free(b);
	cJSON_free(s);
	cJSON_Delete(o);
}

static void
job_free(struct job *j)
{
	LIST_REMOVE(j, link);
	if (j->timer)
		event_free(j->timer);
	free(j->drip_buf);
	free(j);
}

static void
job_close_cb(struct evhttp_connection *conn, void *arg)
{
	struct job *j = arg, *x;

	(void)conn;
	LIST_FOREACH(x, &jobs, link)
		if (x == j)
			break;
	if (!x)
		return;
	if (j->started && j->stream) {
		st.active_streams--;
		st.aborted_streams++;
	}
	/* evhttp detached the unfinished request from the dead connection and
	 * leaves it to us: ending it frees it. */
	evhttp_send_reply_end(j->req);
	job_free(j);
}

static void
job_done(struct job *j, int completed)
{
	if (j->stream) {
		st.active_streams--;
		if (completed)
			st.completed_streams++;
		else
			st.aborted_streams++;
	}
	evhttp_connection_set_closecb(j->conn, NULL, NULL);
	job_free(j);
}

static void
job_later(struct job *j, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	evtimer_add(j->timer, &tv);
}

/* Closes the connection abruptly (the request is abandoned). */
static void
job_cut(struct job *j)
{
	struct evhttp_connection *conn = j->conn;

	job_done(j, 0);
	evhttp_connection_free(conn);
}

static void
oa_stream_step(struct job *j)
{
	cJSON *d;
	char w[128];

	if (j->step == 0) {
		d = cJSON_CreateObject();
		cJSON_AddStringToObject(d, "role", "assistant");
		cJSON_AddStringToObject(d, "content", "");
		sse_send(j, NULL, oa_chunk(j, d, NULL));
	} else if (j->tools && j->step == 1) {
		d = cJSON_CreateObject();
		cJSON_AddItemToObject(d, "tool_calls", oa_tool_calls(j));
		sse_send(j, NULL, oa_chunk(j, d, NULL));
		j->step = j->nwords;
	} else if (j->step <= j->nwords) {
		word_text(j, j->step - 1, w, sizeof(w));
		d = cJSON_CreateObject();
		cJSON_AddStringToObject(d, "content", w);
		sse_send(j, NULL, oa_chunk(j, d, NULL));
	} else {
		sse_send(j, NULL, oa_chunk(j, cJSON_CreateObject(), j->finish));
		if (j->include_usage) {
			cJSON *o = oa_chunk(j, NULL, NULL);

			cJSON_AddItemToObject(o, "usage", usage_json(j, 0));
			sse_send(j, NULL, o);
		}
		{
			struct evbuffer *b = evbuffer_new();

			evbuffer_add_printf(b, "data: [DONE]\n\n");
			evhttp_send_reply_chunk(j->req, b);
			evbuffer_free(b);
		}
		evhttp_send_reply_end(j->req);
		job_done(j, 1);
		return;
	}
	j->step++;
}

static cJSON *
an_event(const char *type)
{
	cJSON *o = cJSON_CreateObject();

	cJSON_AddStringToObject(o, "type", type);
	return o;
}

static void
an_stream_step(struct job *j)
{
	cJSON *o, *x;
	char w[128];

	if (j->step == 0) {
		o = an_event("message_start");
		x = an_answer(j);
		cJSON_ReplaceItemInObject(x, "content", cJSON_CreateArray());
		cJSON_ReplaceItemInObject(x, "stop_reason", cJSON_CreateNull());
		cJSON_ReplaceItemInObject(cJSON_GetObjectItem(x, "usage"), "output_tokens", cJSON_CreateNumber(1));
		cJSON_AddItemToObject(o, "message", x);
		sse_send(j, "message_start", o);
		o = an_event("content_block_start");
		cJSON_AddNumberToObject(o, "index", 0);
		x = cJSON_AddObjectToObject(o, "content_block");
		if (j->tools) {
			cJSON_AddStringToObject(x, "type", "tool_use");
			cJSON_AddStringToObject(x, "id", "toolu_mock1");
			cJSON_AddStringToObject(x, "name", j->tool_name);
			cJSON_AddObjectToObject(x, "input");
		} else {
			cJSON_AddStringToObject(x, "type", "text");
			cJSON_AddStringToObject(x, "text", "");
		}
		sse_send(j, "content_block_start", o);
		sse_send(j, "ping", an_event("ping"));
	} else if (j->step <= j->nwords && !(j->tools && j->step > 1)) {
		o = an_event("content_block_delta");
		cJSON_AddNumberToObject(o, "index", 0);
		x = cJSON_AddObjectToObject(o, "delta");
		if (j->tools) {
			cJSON_AddStringToObject(x, "type", "input_json_delta");
			cJSON_AddStringToObject(x, "partial_json", "{\"mock\":true}");
		} else {
			word_text(j, j->step - 1, w, sizeof(w));
			cJSON_AddStringToObject(x, "type", "text_delta");
			cJSON_AddStringToObject(x, "text", w);
		}
		sse_send(j, "content_block_delta", o);
	} else {
		o = an_event("content_block_stop");
		cJSON_AddNumberToObject(o, "index", 0);
		sse_send(j, "content_block_stop", o);
		o = an_event("message_delta");
		x = cJSON_AddObjectToObject(o, "delta");
		cJSON_AddStringToObject(x, "stop_reason", j->finish);
		cJSON_AddNullToObject(x, "stop_sequence");
		cJSON_AddNumberToObject(cJSON_AddObjectToObject(o, "usage"), "output_tokens", j->nwords);
		sse_send(j, "message_delta", o);
		sse_send(j, "message_stop", an_event("message_stop"));
		evhttp_send_reply_end(j->req);
		job_done(j, 1);
		return;
	}
	j->step++;
}

static void
drip_step(struct job *j)
{
	struct evbuffer *b;

	if (j->drip_off >= j->drip_len) {
		evhttp_send_reply_end(j->req);
		job_done(j, 1);
		return;
	}
	b = evbuffer_new();
	evbuffer_add(b, j->drip_buf + j->drip_off++, 1);
	evhttp_send_reply_chunk(j->req, b);
	evbuffer_free(b);
	job_later(j, 1000);
}

static void
job_start_reply(struct job *j)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(j->req);

	j->started = 1;
	if (j->stream) {
		st.active_streams++;
		evhttp_add_header(h, "Content-Type", "text/event-stream");
		evhttp_add_header(h, "Cache-Control", "no-cache");
	} else {
		evhttp_add_header(h, "Content-Type", "application/json");
	}
	evhttp_send_reply_start(j->req, 200, "OK");
}

static void
job_step(evutil_socket_t fd, short what, void *arg)
{
	struct job *j = arg;
	int half = (j->nwords + 2) / 2;

	(void)fd;
	(void)what;
	if (!j->started) {
		job_start_reply(j);
		if (j->drip) {
			cJSON *o = j->anthropic ? an_answer(j) : oa_answer(j);

			j->drip_buf = cJSON_PrintUnformatted(o);
			j->drip_len = strlen(j->drip_buf);
			cJSON_Delete(o);
			drip_step(j);
			return;
		}
		if (!j->stream) {
			cJSON *o = j->anthropic ? an_answer(j) : oa_answer(j);
			char *s = cJSON_PrintUnformatted(o);
			struct evbuffer *b = evbuffer_new();

			evbuffer_add(b, s, j->cut ? strlen(s) / 2 : strlen(s));
			evhttp_send_reply_chunk(j->req, b);
			evbuffer_free(b);
			cJSON_free(s);
			cJSON_Delete(o);
			if (j->cut) {
				job_cut(j);
				return;
			}
			evhttp_send_reply_end(j->req);
			job_done(j, 1);
			return;
		}
	} else if (j->drip) {
		drip_step(j);
		return;
	}
	if (j->cut && j->step >= half) {
		job_cut(j);
		return;
	}
	if (j->anthropic)
		an_stream_step(j);
	else
		oa_stream_step(j);
	if (LIST_EMPTY(&jobs))
		return;
	{
		struct job *x;

		LIST_FOREACH(x, &jobs, link)
			if (x == j)
				break;
		if (x)
			job_later(j, conf.tps > 0 ? 1000 / conf.tps : ssl_ctx ? 1 : 0);
	}
}

/* ---- requests ---- */

static const char *
hdr(struct evhttp_request *req, const char *name)
{
	return evhttp_find_header(evhttp_request_get_input_headers(req), name);
}

static void
remember(struct evhttp_request *req, const cJSON *body)
{
	static const char *const names[] = { "authorization", "x-api-key", "anthropic-version",
					     "content-type", "http-referer", "x-title", "user-agent" };

	cJSON_Delete(last_request);
	last_request = body ? cJSON_Duplicate(body, 1) : NULL;
	cJSON_Delete(last_headers);
	last_headers = cJSON_CreateObject();
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		const char *v = hdr(req, names[i]);

		if (v)
			cJSON_AddStringToObject(last_headers, names[i], v);
		else
			cJSON_AddNullToObject(last_headers, names[i]);
	}
	snprintf(last_path, sizeof(last_path), "%s", evhttp_request_get_uri(req));
}

static int
authorized(struct evhttp_request *req, int anthropic)
{
	const char *v;
	char want[300];

	if (!conf.api_key[0])
		return 1;
	if (anthropic)
		return (v = hdr(req, "x-api-key")) && strcmp(v, conf.api_key) == 0;
	snprintf(want, sizeof(want), "Bearer %s", conf.api_key);
	return (v = hdr(req, "Authorization")) && strcmp(v, want) == 0;
}

static void
reset_later(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	evhttp_connection_free(arg);	/* frees the unanswered request too */
}

/* An RST instead of an answer. Freed one loop turn later: freeing an evhttp
 * connection inside its own request callback leaks the request. */
static void
reset_connection(struct evhttp_request *req)
{
	struct evhttp_connection *conn = evhttp_request_get_connection(req);
	struct bufferevent *bev = evhttp_connection_get_bufferevent(conn);
	struct linger lg = { 1, 0 };
	struct timeval now = { 0, 0 };

	setsockopt(bufferevent_getfd(bev), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	bufferevent_disable(bev, EV_READ | EV_WRITE);
	event_base_once(base, -1, EV_TIMEOUT, reset_later, conn, &now);
}

/* A 20 MB answer: a valid chat completion (or Messages answer) whose text
 * is 20 MB of 'a'; streamed, a first chunk then one 20 MB event. The bytes
 * are referenced from one static block, not copied. */
#define HUGE_BYTES (20 << 20)

static void
send_huge(struct evhttp_request *req, int anthropic, int stream)
{
	static char block[65536];
	struct evbuffer *b = evbuffer_new();

	memset(block, 'a', sizeof(block));
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
			  stream ? "text/event-stream" : "application/json");
	if (stream && !anthropic)
		evbuffer_add_printf(b, "data: {\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion.chunk\","
				       "\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":"
				       "{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n"
				       "data: {\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion.chunk\","
				       "\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"");
	else if (stream)
		evbuffer_add_printf(b, "event: ping\ndata: {\"type\":\"ping\",\"pad\":\"");
	else if (anthropic)
		evbuffer_add_printf(b, "{\"id\":\"msg_mock\",\"type\":\"message\",\"role\":\"assistant\","
				       "\"model\":\"m\",\"content\":[{\"type\":\"text\",\"text\":\"");
	else
		evbuffer_add_printf(b, "{\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion\",\"created\":1,"
				       "\"model\":\"m\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
				       "\"content\":\"");
	for (int i = 0; i < HUGE_BYTES / (int)sizeof(block); i++)
		evbuffer_add_reference(b, block, sizeof(block), NULL, NULL);
	if (stream && !anthropic)
		evbuffer_add_printf(b, "\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n");
	else if (stream)
		evbuffer_add_printf(b, "\"}\n\n");
	else if (anthropic)
		evbuffer_add_printf(b, "\"}],\"stop_reason\":\"end_turn\",\"usage\":{\"input_tokens\":1,"
				       "\"output_tokens\":1}}");
	else
		evbuffer_add_printf(b, "\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":1,"
				       "\"completion_tokens\":1,\"total_tokens\":2}}");
	evhttp_send_reply(req, 200, "OK", b);
	evbuffer_free(b);
}

/* Failure modes answered before any normal answer. Returns 1 if handled. */
static int
fail_now(struct evhttp_request *req, int anthropic, int stream)
{
	enum fail_mode f = conf.fail;
	char ra[16];

	if (f == F_NONE || f == F_CUT || f == F_DRIP || f == F_HANG)
		return 0;
	switch (f) {
	case F_500:
		send_error(req, anthropic, 500, "mock internal error");
		break;
	case F_400:
		send_error(req, anthropic, 400, "mock bad request");
		break;
	case F_429:
		snprintf(ra, sizeof(ra), "%d", conf.retry_after);
		evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", ra);
		send_error(req, anthropic, 429, "mock rate limit");
		break;
	case F_RESET:
		reset_connection(req);
		break;
	case F_ERROR_EVENT: {
		struct evbuffer *b = evbuffer_new();

		if (!stream) {
			evbuffer_free(b);
			send_error(req, anthropic, 500, "mock internal error");
			break;
		}
		evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "text/event-stream");
		if (anthropic)
			evbuffer_add_printf(b, "event: error\ndata: {\"type\":\"error\",\"error\":"
					       "{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n");
		else
			evbuffer_add_printf(b, "data: {\"error\":{\"code\":500,\"message\":\"mock stream error\"}}\n\n");
		evhttp_send_reply(req, 200, "OK", b);
		evbuffer_free(b);
		break;
	}
	case F_HUGE:
		send_huge(req, anthropic, stream);
		break;
	case F_INVALID_JSON: {
		struct evbuffer *b = evbuffer_new();

		evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
				  stream ? "text/event-stream" : "application/json");
		if (stream && !anthropic)
			evbuffer_add_printf(b, "data: {\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion.chunk\","
					       "\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":"
					       "{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n"
					       "data: {\"id\":\"chatcmpl-mock\",\"choices\":[{\"index\":0,\"delta\":"
					       "{\"content\":\"Hel\n\ndata: [DONE]\n\n");
		else if (stream)
			evbuffer_add_printf(b, "event: message_start\ndata: {\"type\":\"message_start\","
					       "\"message\":{\"id\":\"msg_mock\",\"content\":[\n\n");
		else
			evbuffer_add_printf(b, anthropic ? "{\"id\":\"msg_mock\",\"type\":\"message\",\"content\":"
							   "[{\"type\":\"text\",\"text\":\"Hello\"}],\"usage\":{\"input_tokens\":1,"
							 : "{\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion\",\"choices\":"
							   "[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"Hello\"},"
							   "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":1,");
		evhttp_send_reply(req, 200, "OK", b);
		evbuffer_free(b);
		break;
	}
	case F_GARBAGE: {
		struct evbuffer *b = evbuffer_new();

		evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
				  stream ? "text/event-stream" : "application/json");
		evbuffer_add_printf(b, stream ? "data: {not json\n\n" : "this is not json <html>");
		evhttp_send_reply(req, 200, "OK", b);
		evbuffer_free(b);
		break;
	}
	default:
		return 0;
	}
	return 1;
}

static void
completion(struct evhttp_request *req, int anthropic)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	cJSON *body = cJSON_ParseWithLength((const char *)evbuffer_pullup(in, (ev_ssize_t)len), len);
	const cJSON *model = cJSON_GetObjectItem(body, "model"), *tools, *tc, *mt, *so;
	struct job *j;
	int max = 0, consume_fail;

	st.requests++;
	counter++;
	remember(req, body);
	if (!authorized(req, anthropic)) {
		cJSON_Delete(body);
		send_error(req, anthropic, 401, "mock: invalid API key");
		return;
	}
	if (!cJSON_IsString(model) || !cJSON_IsArray(cJSON_GetObjectItem(body, "messages")) ||
	    (anthropic && (!hdr(req, "anthropic-version") || !cJSON_IsNumber(cJSON_GetObjectItem(body, "max_tokens"))))) {
		cJSON_Delete(body);
		send_error(req, anthropic, 400, "mock: model, messages (and for Anthropic max_tokens and anthropic-version) are required");
		return;
	}
	consume_fail = conf.fail != F_NONE;
	if (fail_now(req, anthropic, cJSON_IsTrue(cJSON_GetObjectItem(body, "stream")))) {
		if (consume_fail && conf.fail_count > 0 && --conf.fail_count == 0)
			conf.fail = F_NONE;
		cJSON_Delete(body);
		return;
	}
	j = calloc(1, sizeof(*j));
	j->req = req;
	j->conn = evhttp_request_get_connection(req);
	j->anthropic = anthropic;
	j->stream = cJSON_IsTrue(cJSON_GetObjectItem(body, "stream"));
	j->cut = conf.fail == F_CUT;
	j->drip = conf.fail == F_DRIP;
	j->hang = conf.fail == F_HANG;
	if (consume_fail && conf.fail_count > 0 && --conf.fail_count == 0)
		conf.fail = F_NONE;
	so = cJSON_GetObjectItem(body, "stream_options");
	j->include_usage = cJSON_IsTrue(cJSON_GetObjectItem(so, "include_usage"));
	snprintf(j->model, sizeof(j->model), "%s", model->valuestring);
	j->prompt_tokens = prompt_tokens(body);
	mt = cJSON_GetObjectItem(body, "max_tokens");
	if (!cJSON_IsNumber(mt))
		mt = cJSON_GetObjectItem(body, "max_completion_tokens");
	if (cJSON_IsNumber(mt))
		max = mt->valueint;
	j->nwords = max > 0 ? (max < conf.words ? max : conf.words) : conf.words;
	if (j->nwords > 1000)
		j->nwords = 1000;
	if (j->nwords < 1)
		j->nwords = 1;
	tools = cJSON_GetObjectItem(body, "tools");
	tc = cJSON_GetObjectItem(body, "tool_choice");
	if (cJSON_GetArraySize(tools) > 0 && !(cJSON_IsString(tc) && strcmp(tc->valuestring, "none") == 0)) {
		const cJSON *t0 = cJSON_GetArrayItem(tools, 0);
		const cJSON *fn = cJSON_GetObjectItem(t0, "function");
		const cJSON *name = cJSON_GetObjectItem(fn ? fn : t0, "name");

		j->tools = 1;
		snprintf(j->tool_name, sizeof(j->tool_name), "%s", cJSON_IsString(name) ? name->valuestring : "tool");
	}
	if (j->tools)
		snprintf(j->finish, sizeof(j->finish), anthropic ? "tool_use" : "tool_calls");
	else if (max > 0 && max < conf.words)
		snprintf(j->finish, sizeof(j->finish), anthropic ? "max_tokens" : "length");
	else
		snprintf(j->finish, sizeof(j->finish), anthropic ? "end_turn" : "stop");
	cJSON_Delete(body);
	j->timer = evtimer_new(base, job_step, j);
	LIST_INSERT_HEAD(&jobs, j, link);
	evhttp_connection_set_closecb(j->conn, job_close_cb, j);
	if (!j->hang)
		job_later(j, conf.ttft_ms);
}

static cJSON *
conf_json(void)
{
	cJSON *o = cJSON_CreateObject();

	cJSON_AddStringToObject(o, "name", conf.name);
	cJSON_AddNumberToObject(o, "ttft_ms", conf.ttft_ms);
	cJSON_AddNumberToObject(o, "tps", conf.tps);
	cJSON_AddStringToObject(o, "fail", fail_names[conf.fail]);
	cJSON_AddNumberToObject(o, "retry_after", conf.retry_after);
	cJSON_AddNumberToObject(o, "fail_count", conf.fail_count);
	cJSON_AddNumberToObject(o, "words", conf.words);
	return o;
}

static int
parse_fail(const char *s, enum fail_mode *out)
{
	for (size_t i = 0; i < sizeof(fail_names) / sizeof(fail_names[0]); i++) {
		if (strcmp(s, fail_names[i]) == 0) {
			*out = (enum fail_mode)i;
			return 0;
		}
	}
	return -1;
}

static void
control_config(struct evhttp_request *req)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	cJSON *b = cJSON_ParseWithLength((const char *)evbuffer_pullup(in, (ev_ssize_t)len), len), *v;

	if ((v = cJSON_GetObjectItem(b, "ttft_ms")) && cJSON_IsNumber(v))
		conf.ttft_ms = v->valueint;
	if ((v = cJSON_GetObjectItem(b, "tps")) && cJSON_IsNumber(v))
		conf.tps = v->valueint;
	if ((v = cJSON_GetObjectItem(b, "retry_after")) && cJSON_IsNumber(v))
		conf.retry_after = v->valueint;
	if ((v = cJSON_GetObjectItem(b, "fail_count")) && cJSON_IsNumber(v))
		conf.fail_count = v->valueint;
	if ((v = cJSON_GetObjectItem(b, "words")) && cJSON_IsNumber(v) && v->valueint > 0)
		conf.words = v->valueint;
	if ((v = cJSON_GetObjectItem(b, "say")) && cJSON_IsString(v))
		snprintf(conf.say, sizeof(conf.say), "%s", v->valuestring);
	if ((v = cJSON_GetObjectItem(b, "fail")) && cJSON_IsString(v) && parse_fail(v->valuestring, &conf.fail) < 0) {
		cJSON_Delete(b);
		send_error(req, 0, 400, "unknown fail mode");
		return;
	}
	cJSON_Delete(b);
	send_json(req, 200, conf_json());
}

static int
active_jobs(void)
{
	struct job *j;
	int n = 0;

	LIST_FOREACH(j, &jobs, link)
		n++;
	return n;
}

static void
control_stats(struct evhttp_request *req)
{
	cJSON *o = cJSON_CreateObject();

	cJSON_AddStringToObject(o, "name", conf.name);
	cJSON_AddNumberToObject(o, "requests", (double)st.requests);
	cJSON_AddNumberToObject(o, "active_requests", (double)active_jobs());
	cJSON_AddNumberToObject(o, "active_streams", (double)st.active_streams);
	cJSON_AddNumberToObject(o, "completed_streams", (double)st.completed_streams);
	cJSON_AddNumberToObject(o, "aborted_streams", (double)st.aborted_streams);
	cJSON_AddItemToObject(o, "last_request", last_request ? cJSON_Duplicate(last_request, 1) : cJSON_CreateNull());
	cJSON_AddItemToObject(o, "last_headers", last_headers ? cJSON_Duplicate(last_headers, 1) : cJSON_CreateObject());
	cJSON_AddStringToObject(o, "last_path", last_path);
	cJSON_AddItemToObject(o, "config", conf_json());
	send_json(req, 200, o);
}

static int
ends_with(const char *path, const char *suffix)
{
	size_t a = strlen(path), b = strlen(suffix);

	return a >= b && strcmp(path + a - b, suffix) == 0;
}

static void
handle(struct evhttp_request *req, void *arg)
{
	const char *uri = evhttp_request_get_uri(req);
	char path[512];
	int post = evhttp_request_get_command(req) == EVHTTP_REQ_POST;

	(void)arg;
	snprintf(path, sizeof(path), "%.*s", (int)strcspn(uri, "?"), uri);
	if (post && ends_with(path, "/chat/completions"))
		completion(req, 0);
	else if (post && ends_with(path, "/messages"))
		completion(req, 1);
	else if (strcmp(path, "/mock/stats") == 0)
		control_stats(req);
	else if (post && strcmp(path, "/mock/config") == 0)
		control_config(req);
	else if (post && strcmp(path, "/mock/reset_stats") == 0) {
		memset(&st.requests, 0, sizeof(st.requests));
		st.completed_streams = st.aborted_streams = 0;
		cJSON_Delete(last_request);
		last_request = NULL;
		send_json(req, 200, conf_json());
	} else
		send_error(req, 0, 404, "mock: no such path");
}

/* ---- connections, TLS, main ---- */

static struct bufferevent *
make_bev(struct event_base *b, void *arg)
{
	(void)arg;
	if (!ssl_ctx)
		return bufferevent_socket_new(b, -1, BEV_OPT_CLOSE_ON_FREE);
	return bufferevent_openssl_socket_new(b, -1, SSL_new(ssl_ctx), BUFFEREVENT_SSL_ACCEPTING,
					      BEV_OPT_CLOSE_ON_FREE);
}

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	(void)arg;
	event_base_loopexit(base, NULL);
}

static void
usage(void)
{
	fprintf(stderr, "usage: agora-mock-provider --listen HOST:PORT [--name N] [--api-key K]\n"
			"  [--tls-cert F --tls-key F] [--ttft-ms N] [--tps N] [--words N]\n"
			"  [--fail none|500|429|400|reset|cut|drip|garbage|hang|error_event|huge|invalid_json]\n"
			"  [--retry-after S]\n"
			"  [--fail-count N] [--pidfile F]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "listen", 1, 0, 'l' }, { "name", 1, 0, 'n' }, { "api-key", 1, 0, 'k' },
		{ "tls-cert", 1, 0, 'c' }, { "tls-key", 1, 0, 'K' }, { "ttft-ms", 1, 0, 't' },
		{ "tps", 1, 0, 's' }, { "fail", 1, 0, 'f' }, { "retry-after", 1, 0, 'r' },
		{ "fail-count", 1, 0, 'C' }, { "words", 1, 0, 'w' }, { "pidfile", 1, 0, 'p' },
		{ 0, 0, 0, 0 }
	};
	const char *listen = NULL, *cert = NULL, *key = NULL, *pidfile = NULL;
	struct evhttp_bound_socket *bs;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct event *s1, *s2;
	char host[128];
	int port, o;

	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'l': listen = optarg; break;
		case 'n': snprintf(conf.name, sizeof(conf.name), "%s", optarg); break;
		case 'k': snprintf(conf.api_key, sizeof(conf.api_key), "%s", optarg); break;
		case 'c': cert = optarg; break;
		case 'K': key = optarg; break;
		case 't': conf.ttft_ms = atoi(optarg); break;
		case 's': conf.tps = atoi(optarg); break;
		case 'f': if (parse_fail(optarg, &conf.fail) < 0) usage(); break;
		case 'r': conf.retry_after = atoi(optarg); break;
		case 'C': conf.fail_count = atoi(optarg); break;
		case 'w': conf.words = atoi(optarg) > 0 ? atoi(optarg) : 12; break;
		case 'p': pidfile = optarg; break;
		default: usage();
		}
	}
	if (!listen || sscanf(listen, "%127[^:]:%d", host, &port) != 2)
		usage();
	signal(SIGPIPE, SIG_IGN);
	base = event_base_new();
	http = evhttp_new(base);
	if (cert && key) {
		ssl_ctx = SSL_CTX_new(TLS_server_method());
		if (SSL_CTX_use_certificate_chain_file(ssl_ctx, cert) != 1 ||
		    SSL_CTX_use_PrivateKey_file(ssl_ctx, key, SSL_FILETYPE_PEM) != 1) {
			fprintf(stderr, "mock: cannot load %s / %s\n", cert, key);
			return 1;
		}
		evhttp_set_bevcb(http, make_bev, NULL);
	}
	evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
	evhttp_set_gencb(http, handle, NULL);
	evhttp_set_max_body_size(http, 64 << 20);
	if (!(bs = evhttp_bind_socket_with_handle(http, host, (ev_uint16_t)port))) {
		fprintf(stderr, "mock: cannot listen on %s\n", listen);
		return 1;
	}
	getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&ss, &sl);
	port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	if (pidfile) {
		FILE *f = fopen(pidfile, "w");

		if (f) {
			fprintf(f, "%d\n", (int)getpid());
			fclose(f);
		}
	}
	s1 = evsignal_new(base, SIGTERM, on_signal, NULL);
	s2 = evsignal_new(base, SIGINT, on_signal, NULL);
	event_add(s1, NULL);
	event_add(s2, NULL);
	printf("mock %s listening on %s:%d\n", conf.name, host, port);
	fflush(stdout);
	event_base_dispatch(base);
	while (!LIST_EMPTY(&jobs)) {	/* e.g. hung answers: drop their connections */
		struct job *j = LIST_FIRST(&jobs);
		struct evhttp_connection *conn = j->conn;

		evhttp_connection_set_closecb(conn, NULL, NULL);
		job_free(j);
		evhttp_connection_free(conn);
	}
	evhttp_free(http);
	event_free(s1);
	event_free(s2);
	cJSON_Delete(last_request);
	cJSON_Delete(last_headers);
	if (ssl_ctx)
		SSL_CTX_free(ssl_ctx);
	event_base_free(base);
	return 0;
}
