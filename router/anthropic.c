/*
 * anthropic: chat completions <-> Anthropic Messages (see anthropic.h).
 *
 * Requests: system/developer messages are joined into `system`; user,
 * assistant and tool messages become alternating user/assistant turns of
 * content blocks (consecutive messages of one role are merged, tool results
 * go into user turns). Answers and stream events go the other way.
 */
#include "anthropic.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define jget cJSON_GetObjectItemCaseSensitive

/* ---- small helpers ---- */

/* A growable string (text joined from several blocks or messages). */
struct sbuf {
	char *s;
	size_t len;
};

/* Appends s, after sep when the buffer is not empty. -1: out of memory. */
static int
sbuf_add(struct sbuf *b, const char *s, const char *sep)
{
	size_t n = strlen(s), m = b->len ? strlen(sep) : 0;
	char *x;

	if (!n)
		return 0;
	if (!(x = realloc(b->s, b->len + m + n + 1)))
		return -1;
	memcpy(x + b->len, sep, m);
	memcpy(x + b->len + m, s, n + 1);
	b->s = x;
	b->len += m + n;
	return 0;
}

static int
is_type(const cJSON *o, const char *type)
{
	const cJSON *t = jget(o, "type");

	return cJSON_IsString(t) && strcmp(t->valuestring, type) == 0;
}

static const char *
str_of(const cJSON *o, const char *key)
{
	const cJSON *v = jget(o, key);

	return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int
absent(const cJSON *v)
{
	return !v || cJSON_IsNull(v);
}

static int64_t
int_of(const cJSON *o, const char *key, int64_t dflt)
{
	const cJSON *v = jget(o, key);

	return cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < 9e15 ? (int64_t)v->valuedouble : dflt;
}

/* Copies `cache_control` (prompt caching hints) from a part to a block. */
static int
copy_cache_control(const cJSON *from, cJSON *to)
{
	const cJSON *cc = jget(from, "cache_control");
	cJSON *dup;

	if (!cJSON_IsObject(cc))
		return 0;
	if (!(dup = cJSON_Duplicate(cc, 1)))
		return -1;
	cJSON_AddItemToObject(to, "cache_control", dup);
	return 0;
}

/* ---- request translation ---- */

/* A request translation in progress. */
struct conv {
	cJSON *msgs;		/* the Anthropic messages */
	cJSON *last;		/* the last message (its role in last_role) */
	const char *last_role;
	struct sbuf system;	/* system/developer texts, joined */
	char *msg;		/* error message for the client */
	size_t len;
};

static int bad(struct conv *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int
bad(struct conv *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->msg, c->len, fmt, ap);
	va_end(ap);
	return ANTHROPIC_BAD;
}

static int
nomem(struct conv *c)
{
	snprintf(c->msg, c->len, "out of memory");
	return ANTHROPIC_NOMEM;
}

/* A text part's text, or NULL when the part is something else. */
static const char *
part_text(const cJSON *part)
{
	return is_type(part, "text") ? str_of(part, "text") : NULL;
}

static int
add_system(struct conv *c, const cJSON *m)
{
	const cJSON *content = jget(m, "content"), *part;

	if (cJSON_IsString(content))
		return sbuf_add(&c->system, content->valuestring, "\n\n") < 0 ? nomem(c) : 0;
	if (absent(content))
		return 0;
	if (!cJSON_IsArray(content))
		return bad(c, "a system message's content must be a string or an array of text parts");
	cJSON_ArrayForEach(part, content) {
		const char *t = part_text(part);

		if (!t)
			return bad(c, "system messages may only hold text parts for this provider");
		if (sbuf_add(&c->system, t, "\n\n") < 0)
			return nomem(c);
	}
	return 0;
}

/* A text block (none for empty text: Anthropic refuses those). */
static int
add_text(struct conv *c, const char *text, const cJSON *part, cJSON *blocks)
{
	cJSON *b;

	if (!text[0])
		return 0;
	if (!(b = cJSON_CreateObject()))
		return nomem(c);
	cJSON_AddItemToArray(blocks, b);
	if (!cJSON_AddStringToObject(b, "type", "text") || !cJSON_AddStringToObject(b, "text", text) ||
	    copy_cache_control(part, b) < 0)
		return nomem(c);
	return 0;
}

/* An image source: data:<media type>;base64,<data> or an http(s) URL. */
static int
image_source(struct conv *c, const char *url, cJSON *src)
{
	const char *b64 = strstr(url, ";base64,"), *semi;
	char media[100];

	if (strncmp(url, "http://", 7) == 0 || strncmp(url, "https://", 8) == 0)
		return cJSON_AddStringToObject(src, "type", "url") && cJSON_AddStringToObject(src, "url", url)
		       ? 0 : nomem(c);
	if (strncmp(url, "data:", 5) != 0)
		return bad(c, "image URLs must be http(s) URLs or data: URLs");
	semi = strchr(url + 5, ';');
	if (!b64 || semi == url + 5 || (size_t)(semi - url - 5) >= sizeof(media))
		return bad(c, "image data URLs must look like data:<media type>;base64,<data>");
	snprintf(media, sizeof(media), "%.*s", (int)(semi - url - 5), url + 5);
	return cJSON_AddStringToObject(src, "type", "base64") && cJSON_AddStringToObject(src, "media_type", media) &&
	       cJSON_AddStringToObject(src, "data", b64 + 8) ? 0 : nomem(c);
}

static int
add_image(struct conv *c, const cJSON *part, cJSON *blocks)
{
	const cJSON *iu = jget(part, "image_url");
	const cJSON *url = cJSON_IsObject(iu) ? jget(iu, "url") : iu;
	cJSON *b, *src;

	if (!cJSON_IsString(url))
		return bad(c, "an image_url part needs image_url.url");
	if (!(b = cJSON_CreateObject()))
		return nomem(c);
	cJSON_AddItemToArray(blocks, b);
	if (!cJSON_AddStringToObject(b, "type", "image") || !(src = cJSON_AddObjectToObject(b, "source")) ||
	    copy_cache_control(part, b) < 0)
		return nomem(c);
	return image_source(c, url->valuestring, src);
}

/* Content (a string or content parts) as blocks; images where allowed. */
static int
add_parts(struct conv *c, const cJSON *content, int images, cJSON *blocks)
{
	const cJSON *part;
	int rc;

	if (cJSON_IsString(content))
		return add_text(c, content->valuestring, NULL, blocks);
	if (absent(content))
		return 0;
	if (!cJSON_IsArray(content))
		return bad(c, "message content must be a string or an array of content parts");
	cJSON_ArrayForEach(part, content) {
		const char *type = str_of(part, "type"), *text = part_text(part);

		if (text)
			rc = add_text(c, text, part, blocks);
		else if (type && strcmp(type, "image_url") == 0 && images)
			rc = add_image(c, part, blocks);
		else
			rc = bad(c, "content part type '%s' is not supported here by this provider",
				 type ? type : "(none)");
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* A tool call's arguments (a JSON object in a string) as an object. */
static cJSON *
tool_input(const cJSON *args)
{
	if (absent(args) || (cJSON_IsString(args) && !args->valuestring[strspn(args->valuestring, " \t\r\n")]))
		return cJSON_CreateObject();
	if (cJSON_IsObject(args))
		return cJSON_Duplicate(args, 1);
	return cJSON_IsString(args) ? cJSON_Parse(args->valuestring) : NULL;
}

static int
add_tool_use(struct conv *c, const cJSON *tc, cJSON *blocks)
{
	const cJSON *fn = jget(tc, "function");
	const char *id = str_of(tc, "id"), *name = str_of(fn, "name");
	cJSON *b, *input;

	if (!id || !name)
		return bad(c, "each tool call needs an 'id' and a 'function.name'");
	if (!cJSON_IsObject(input = tool_input(jget(fn, "arguments")))) {
		cJSON_Delete(input);
		return bad(c, "tool call '%s': function.arguments must be a JSON object", name);
	}
	if (!(b = cJSON_CreateObject())) {
		cJSON_Delete(input);
		return nomem(c);
	}
	cJSON_AddItemToArray(blocks, b);
	if (!cJSON_AddStringToObject(b, "type", "tool_use") || !cJSON_AddStringToObject(b, "id", id) ||
	    !cJSON_AddStringToObject(b, "name", name)) {
		cJSON_Delete(input);
		return nomem(c);
	}
	cJSON_AddItemToObject(b, "input", input);
	return 0;
}

static int
add_tool_uses(struct conv *c, const cJSON *m, cJSON *blocks)
{
	const cJSON *calls = jget(m, "tool_calls"), *tc;
	int rc;

	if (absent(calls))
		return 0;
	if (!cJSON_IsArray(calls))
		return bad(c, "'tool_calls' must be an array");
	cJSON_ArrayForEach(tc, calls)
		if ((rc = add_tool_use(c, tc, blocks)) < 0)
			return rc;
	return 0;
}

/* A `tool` message: a tool_result block (its content as a string or blocks). */
static int
add_tool_result(struct conv *c, const cJSON *m, cJSON *blocks)
{
	const cJSON *content = jget(m, "content");
	const char *id = str_of(m, "tool_call_id");
	cJSON *b, *sub;
	int rc;

	if (!id)
		return bad(c, "a tool message needs a string 'tool_call_id'");
	if (!(b = cJSON_CreateObject()))
		return nomem(c);
	cJSON_AddItemToArray(blocks, b);
	if (!cJSON_AddStringToObject(b, "type", "tool_result") || !cJSON_AddStringToObject(b, "tool_use_id", id))
		return nomem(c);
	if (cJSON_IsString(content))
		return !content->valuestring[0] || cJSON_AddStringToObject(b, "content", content->valuestring)
		       ? 0 : nomem(c);
	if (!(sub = cJSON_AddArrayToObject(b, "content")))
		return nomem(c);
	if ((rc = add_parts(c, content, 1, sub)) < 0)
		return rc;
	if (cJSON_GetArraySize(sub) == 0)
		cJSON_DeleteItemFromObjectCaseSensitive(b, "content");
	return 0;
}

/* Moves blocks into the last turn if it has this role, else into a new one;
 * a message without blocks adds nothing. Frees blocks. */
static int
push_turn(struct conv *c, const char *role, cJSON *blocks)
{
	cJSON *content, *b;

	if (cJSON_GetArraySize(blocks) == 0)
		goto done;
	if (!c->last || strcmp(c->last_role, role) != 0) {
		cJSON *m = cJSON_CreateObject();

		if (!m || !cJSON_AddStringToObject(m, "role", role) || !cJSON_AddArrayToObject(m, "content")) {
			cJSON_Delete(m);
			cJSON_Delete(blocks);
			return nomem(c);
		}
		cJSON_AddItemToArray(c->msgs, m);
		c->last = m;
		c->last_role = role;
	}
	content = jget(c->last, "content");
	while ((b = cJSON_DetachItemFromArray(blocks, 0)))
		cJSON_AddItemToArray(content, b);
done:
	cJSON_Delete(blocks);
	return 0;
}

static int
add_message(struct conv *c, const cJSON *m)
{
	const char *role = str_of(m, "role"), *turn;
	const cJSON *content = jget(m, "content");
	cJSON *blocks;
	int rc;

	if (!role)
		return bad(c, "each message must be an object with a string 'role'");
	if (strcmp(role, "system") == 0 || strcmp(role, "developer") == 0)
		return add_system(c, m);
	if (!(blocks = cJSON_CreateArray()))
		return nomem(c);
	if (strcmp(role, "user") == 0) {
		turn = "user";
		rc = add_parts(c, content, 1, blocks);
	} else if (strcmp(role, "assistant") == 0) {
		turn = "assistant";
		if ((rc = add_parts(c, content, 0, blocks)) == 0)
			rc = add_tool_uses(c, m, blocks);
	} else if (strcmp(role, "tool") == 0) {
		turn = "user";
		rc = add_tool_result(c, m, blocks);
	} else {
		turn = NULL;
		rc = bad(c, "message role '%s' is not supported by this provider", role);
	}
	if (rc < 0) {
		cJSON_Delete(blocks);
		return rc;
	}
	return push_turn(c, turn, blocks);
}

static int
add_tool(struct conv *c, const cJSON *t, cJSON *arr)
{
	const cJSON *fn = jget(t, "function"), *params = jget(fn, "parameters");
	const char *name = str_of(fn, "name"), *desc = str_of(fn, "description");
	cJSON *x, *schema;

	if (!is_type(t, "function") || !name)
		return bad(c, "each tool must be {\"type\":\"function\",\"function\":{\"name\":...}} "
			   "for this provider");
	if (!(x = cJSON_CreateObject()))
		return nomem(c);
	cJSON_AddItemToArray(arr, x);
	if (!cJSON_AddStringToObject(x, "name", name) || (desc && !cJSON_AddStringToObject(x, "description", desc)))
		return nomem(c);
	schema = cJSON_IsObject(params) ? cJSON_Duplicate(params, 1)
					: cJSON_Parse("{\"type\":\"object\",\"properties\":{}}");
	if (!schema)
		return nomem(c);
	cJSON_AddItemToObject(x, "input_schema", schema);
	return copy_cache_control(t, x) < 0 ? nomem(c) : 0;
}

static int
add_tools(struct conv *c, const cJSON *tools, cJSON *out)
{
	const cJSON *t;
	cJSON *arr;
	int rc;

	if (absent(tools))
		return 0;
	if (!cJSON_IsArray(tools))
		return bad(c, "'tools' must be an array");
	if (cJSON_GetArraySize(tools) == 0)
		return 0;
	if (!(arr = cJSON_AddArrayToObject(out, "tools")))
		return nomem(c);
	cJSON_ArrayForEach(t, tools)
		if ((rc = add_tool(c, t, arr)) < 0)
			return rc;
	return 0;
}

/* tool_choice (auto, none, required, or one function) and
 * parallel_tool_calls: false; only said when there are tools. */
static int
add_tool_choice(struct conv *c, const cJSON *chat, cJSON *out)
{
	const cJSON *tc = jget(chat, "tool_choice"), *ptc = jget(chat, "parallel_tool_calls");
	const char *type = "auto", *name = NULL;
	cJSON *o;

	if (!jget(out, "tools"))
		return 0;
	if (cJSON_IsString(tc) && strcmp(tc->valuestring, "auto") == 0)
		type = "auto";
	else if (cJSON_IsString(tc) && strcmp(tc->valuestring, "none") == 0)
		type = "none";
	else if (cJSON_IsString(tc) && strcmp(tc->valuestring, "required") == 0)
		type = "any";
	else if (cJSON_IsObject(tc) && (name = str_of(jget(tc, "function"), "name")))
		type = "tool";
	else if (!absent(tc))
		return bad(c, "'tool_choice' must be \"auto\", \"none\", \"required\" or "
			   "{\"type\":\"function\",\"function\":{\"name\":...}}");
	else if (!cJSON_IsFalse(ptc))
		return 0;	/* Anthropic's default is auto */
	if (!(o = cJSON_AddObjectToObject(out, "tool_choice")) || !cJSON_AddStringToObject(o, "type", type) ||
	    (name && !cJSON_AddStringToObject(o, "name", name)) ||
	    (cJSON_IsFalse(ptc) && strcmp(type, "none") != 0 && !cJSON_AddTrueToObject(o, "disable_parallel_tool_use")))
		return nomem(c);
	return 0;
}

static int
add_stop(struct conv *c, const cJSON *stop, cJSON *out)
{
	const cJSON *s;
	cJSON *arr;

	if (absent(stop))
		return 0;
	if (cJSON_IsArray(stop))
		cJSON_ArrayForEach(s, stop)
			if (!cJSON_IsString(s))
				return bad(c, "'stop' must be a string or an array of strings");
	if (!cJSON_IsString(stop) && !cJSON_IsArray(stop))
		return bad(c, "'stop' must be a string or an array of strings");
	if (!(arr = cJSON_AddArrayToObject(out, "stop_sequences")))
		return nomem(c);
	if (cJSON_IsString(stop))
		return cJSON_AddItemToArray(arr, cJSON_CreateString(stop->valuestring)) ? 0 : nomem(c);
	cJSON_ArrayForEach(s, stop)
		if (!cJSON_AddItemToArray(arr, cJSON_CreateString(s->valuestring)))
			return nomem(c);
	return 0;
}

/* Sampling numbers: temperature (Anthropic's range is 0..1: higher values
 * are capped), top_p, top_k. */
static int
add_sampling(struct conv *c, const cJSON *chat, cJSON *out)
{
	static const struct { const char *name; double max; } nums[] = {
		{ "temperature", 1.0 }, { "top_p", 1.0 }, { "top_k", 1e9 },
	};

	for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
		const cJSON *v = jget(chat, nums[i].name);
		double x;

		if (absent(v))
			continue;
		if (!cJSON_IsNumber(v) || v->valuedouble < 0)
			return bad(c, "'%s' must be a non-negative number", nums[i].name);
		x = v->valuedouble > nums[i].max ? nums[i].max : v->valuedouble;
		if (!cJSON_AddNumberToObject(out, nums[i].name, x))
			return nomem(c);
	}
	return 0;
}

static int
add_params(struct conv *c, const cJSON *chat, int default_max, cJSON *out)
{
	const cJSON *mt = jget(chat, "max_tokens"), *n = jget(chat, "n");
	const char *user = str_of(chat, "user");
	cJSON *meta;
	int rc;

	if (!cJSON_IsNumber(mt))
		mt = jget(chat, "max_completion_tokens");
	if (!cJSON_AddNumberToObject(out, "max_tokens", cJSON_IsNumber(mt) ? mt->valuedouble : (double)default_max))
		return nomem(c);
	if (cJSON_IsNumber(n) && n->valuedouble > 1)
		return bad(c, "'n' above 1 is not supported by this provider");
	if ((rc = add_sampling(c, chat, out)) < 0 || (rc = add_stop(c, jget(chat, "stop"), out)) < 0)
		return rc;
	if (cJSON_IsTrue(jget(chat, "stream")) && !cJSON_AddTrueToObject(out, "stream"))
		return nomem(c);
	if (user && (!(meta = cJSON_AddObjectToObject(out, "metadata")) ||
		     !cJSON_AddStringToObject(meta, "user_id", user)))
		return nomem(c);
	return 0;
}

int
anthropic_request(const cJSON *chat, const char *upstream_model, int default_max_tokens,
		  cJSON **out, char *msg, size_t len)
{
	struct conv c = { .msg = msg, .len = len };
	const cJSON *msgs = jget(chat, "messages"), *m;
	cJSON *o = NULL;
	int rc;

	*out = NULL;
	if (!cJSON_IsArray(msgs))
		return bad(&c, "'messages' must be a non-empty array");
	if (!(o = cJSON_CreateObject()) || !cJSON_AddStringToObject(o, "model", upstream_model) ||
	    !(c.msgs = cJSON_CreateArray()))
		goto nomem;
	cJSON_ArrayForEach(m, msgs)
		if ((rc = add_message(&c, m)) < 0)
			goto fail;
	if (cJSON_GetArraySize(c.msgs) == 0) {
		rc = bad(&c, "at least one user or assistant message with content is required");
		goto fail;
	}
	if (c.system.s && !cJSON_AddStringToObject(o, "system", c.system.s))
		goto nomem;
	cJSON_AddItemToObject(o, "messages", c.msgs);
	c.msgs = NULL;
	if ((rc = add_params(&c, chat, default_max_tokens, o)) < 0 ||
	    (rc = add_tools(&c, jget(chat, "tools"), o)) < 0 || (rc = add_tool_choice(&c, chat, o)) < 0)
		goto fail;
	free(c.system.s);
	*out = o;
	return ANTHROPIC_OK;
nomem:
	rc = nomem(&c);
fail:
	cJSON_Delete(c.msgs);
	cJSON_Delete(o);
	free(c.system.s);
	return rc;
}

/* ---- answers ---- */

/* Token counts as Anthropic reports them. */
struct an_usage {
	int64_t input, cache_read, cache_write, output;
};

/* Takes the counts present in a usage object (streams send them in parts). */
static void
usage_read(struct an_usage *u, const cJSON *o)
{
	u->input = int_of(o, "input_tokens", u->input);
	u->cache_read = int_of(o, "cache_read_input_tokens", u->cache_read);
	u->cache_write = int_of(o, "cache_creation_input_tokens", u->cache_write);
	u->output = int_of(o, "output_tokens", u->output);
}

/* The chat-completions usage: cached prompt tokens count as prompt tokens. */
static cJSON *
usage_json(const struct an_usage *u)
{
	int64_t prompt = u->input + u->cache_read + u->cache_write;
	cJSON *o = cJSON_CreateObject(), *d;

	if (!o || !cJSON_AddNumberToObject(o, "prompt_tokens", (double)prompt) ||
	    !cJSON_AddNumberToObject(o, "completion_tokens", (double)u->output) ||
	    !cJSON_AddNumberToObject(o, "total_tokens", (double)(prompt + u->output)) ||
	    !(d = cJSON_AddObjectToObject(o, "prompt_tokens_details")) ||
	    !cJSON_AddNumberToObject(d, "cached_tokens", (double)u->cache_read))
		goto fail;
	return o;
fail:
	cJSON_Delete(o);
	return NULL;
}

const char *
anthropic_finish_reason(const char *stop_reason)
{
	static const struct { const char *from, *to; } map[] = {
		{ "end_turn", "stop" }, { "stop_sequence", "stop" }, { "max_tokens", "length" },
		{ "tool_use", "tool_calls" }, { "refusal", "content_filter" },
		{ "model_context_window_exceeded", "length" },
	};

	for (size_t i = 0; stop_reason && i < sizeof(map) / sizeof(map[0]); i++)
		if (strcmp(stop_reason, map[i].from) == 0)
			return map[i].to;
	return "stop";
}

const char *
anthropic_error_message(const cJSON *body)
{
	return str_of(jget(body, "error"), "message");
}

/* A tool_use block as an OpenAI tool call (arguments as a JSON string). */
static cJSON *
tool_call(const cJSON *b)
{
	const cJSON *input = jget(b, "input");
	const char *id = str_of(b, "id"), *name = str_of(b, "name");
	cJSON *tc = cJSON_CreateObject(), *fn;
	char *args = cJSON_IsObject(input) ? cJSON_PrintUnformatted(input) : NULL;

	if (!tc || !cJSON_AddStringToObject(tc, "id", id ? id : "") ||
	    !cJSON_AddStringToObject(tc, "type", "function") || !(fn = cJSON_AddObjectToObject(tc, "function")) ||
	    !cJSON_AddStringToObject(fn, "name", name ? name : "") ||
	    !cJSON_AddStringToObject(fn, "arguments", args ? args : "{}"))
		goto fail;
	cJSON_free(args);
	return tc;
fail:
	cJSON_free(args);
	cJSON_Delete(tc);
	return NULL;
}

/* One content block of an answer: text, thinking or a tool call. */
static int
answer_block(const cJSON *b, struct sbuf *text, struct sbuf *thinking, cJSON *calls)
{
	const char *t;
	cJSON *tc;

	if (is_type(b, "text") && (t = str_of(b, "text")))
		return sbuf_add(text, t, "");
	if (is_type(b, "thinking") && (t = str_of(b, "thinking")))
		return sbuf_add(thinking, t, "");
	if (!is_type(b, "tool_use"))
		return 0;	/* redacted thinking, server tools: nothing to say */
	if (!(tc = tool_call(b)))
		return -1;
	cJSON_AddItemToArray(calls, tc);
	return 0;
}

/* choices[0].message of an answer; takes *calls when there are any. */
static cJSON *
answer_message(const struct sbuf *text, const struct sbuf *thinking, cJSON **calls)
{
	cJSON *m = cJSON_CreateObject();
	int ncalls = cJSON_GetArraySize(*calls);

	if (!m || !cJSON_AddStringToObject(m, "role", "assistant"))
		goto fail;
	if (!(text->s || !ncalls ? cJSON_AddStringToObject(m, "content", text->s ? text->s : "")
				 : cJSON_AddNullToObject(m, "content")))
		goto fail;
	if (thinking->s && !cJSON_AddStringToObject(m, "reasoning", thinking->s))
		goto fail;
	if (ncalls) {
		cJSON_AddItemToObject(m, "tool_calls", *calls);
		*calls = NULL;
	}
	return m;
fail:
	cJSON_Delete(m);
	return NULL;
}

/* choices: [{index 0, message (taken), finish_reason}] */
static int
answer_choice(cJSON *o, const cJSON *a, cJSON *message)
{
	cJSON *choices = cJSON_AddArrayToObject(o, "choices"), *c = cJSON_CreateObject();

	if (!choices || !c) {
		cJSON_Delete(c);
		cJSON_Delete(message);
		return -1;
	}
	cJSON_AddItemToArray(choices, c);
	cJSON_AddItemToObject(c, "message", message);
	if (!cJSON_AddNumberToObject(c, "index", 0))
		return -1;
	return cJSON_AddStringToObject(c, "finish_reason", anthropic_finish_reason(str_of(a, "stop_reason"))) ? 0 : -1;
}

cJSON *
anthropic_answer(const cJSON *a)
{
	const cJSON *content = jget(a, "content"), *b, *u = jget(a, "usage");
	struct sbuf text = { 0 }, thinking = { 0 };
	struct an_usage usage = { 0 };
	cJSON *o = NULL, *calls = cJSON_CreateArray(), *m, *uj;
	const char *id = str_of(a, "id"), *model = str_of(a, "model");

	if (!cJSON_IsArray(content) || !is_type(a, "message") || !calls)
		goto fail;
	cJSON_ArrayForEach(b, content)
		if (answer_block(b, &text, &thinking, calls) < 0)
			goto fail;
	if (!(o = cJSON_CreateObject()) || !cJSON_AddStringToObject(o, "id", id ? id : "") ||
	    !cJSON_AddStringToObject(o, "object", "chat.completion") ||
	    !cJSON_AddStringToObject(o, "model", model ? model : ""))
		goto fail;
	if (!(m = answer_message(&text, &thinking, &calls)) || answer_choice(o, a, m) < 0)
		goto fail;
	if (cJSON_IsObject(u)) {
		usage_read(&usage, u);
		if (!(uj = usage_json(&usage)))
			goto fail;
		cJSON_AddItemToObject(o, "usage", uj);
	}
	cJSON_Delete(calls);
	free(text.s);
	free(thinking.s);
	return o;
fail:
	cJSON_Delete(o);
	cJSON_Delete(calls);
	free(text.s);
	free(thinking.s);
	return NULL;
}

/* ---- streams ---- */

struct anthropic_stream {
	char id[128], model[256];
	struct an_usage usage;
	int ntools;		/* tool_use blocks seen */
	int tool;		/* OpenAI index of the open tool_use block, -1: none */
};

struct anthropic_stream *
anthropic_stream_new(void)
{
	struct anthropic_stream *s = calloc(1, sizeof(*s));

	if (s)
		s->tool = -1;
	return s;
}

void
anthropic_stream_free(struct anthropic_stream *s)
{
	free(s);
}

/* A chunk with one choice holding delta (taken), or with no choice. */
static cJSON *
chunk_new(const struct anthropic_stream *s, cJSON *delta, const char *finish)
{
	cJSON *o = cJSON_CreateObject(), *choices, *c;

	if (!o || !cJSON_AddStringToObject(o, "id", s->id) ||
	    !cJSON_AddStringToObject(o, "object", "chat.completion.chunk") ||
	    !cJSON_AddStringToObject(o, "model", s->model) || !(choices = cJSON_AddArrayToObject(o, "choices")))
		goto fail;
	if (!delta)
		return o;
	if (!(c = cJSON_CreateObject()))
		goto fail;
	cJSON_AddItemToArray(choices, c);
	if (!cJSON_AddNumberToObject(c, "index", 0))
		goto fail;
	cJSON_AddItemToObject(c, "delta", delta);
	delta = NULL;
	if (!(finish ? cJSON_AddStringToObject(c, "finish_reason", finish) : cJSON_AddNullToObject(c, "finish_reason")))
		goto fail;
	return o;
fail:
	cJSON_Delete(delta);
	cJSON_Delete(o);
	return NULL;
}

/* Appends a chunk of one delta field (key: value) to chunks. */
static int
emit(const struct anthropic_stream *s, cJSON *chunks, cJSON *delta, const char *finish)
{
	cJSON *o;

	if (!delta || !(o = chunk_new(s, delta, finish)))
		return ANTHROPIC_NOMEM;
	cJSON_AddItemToArray(chunks, o);
	return ANTHROPIC_OK;
}

static int
emit_text(const struct anthropic_stream *s, cJSON *chunks, const char *key, const char *text)
{
	cJSON *d;

	if (!text || !text[0])
		return ANTHROPIC_OK;
	if (!(d = cJSON_CreateObject()) || !cJSON_AddStringToObject(d, key, text)) {
		cJSON_Delete(d);
		return ANTHROPIC_NOMEM;
	}
	return emit(s, chunks, d, NULL);
}

/* A tool_calls delta: the call's start (id and name) or an arguments piece. */
static int
emit_tool(const struct anthropic_stream *s, cJSON *chunks, const char *id, const char *name, const char *args)
{
	cJSON *d = cJSON_CreateObject(), *arr, *tc, *fn;

	if (!d || !(arr = cJSON_AddArrayToObject(d, "tool_calls")) || !(tc = cJSON_CreateObject()))
		goto fail;
	cJSON_AddItemToArray(arr, tc);
	if (!cJSON_AddNumberToObject(tc, "index", s->tool) ||
	    (id && (!cJSON_AddStringToObject(tc, "id", id) || !cJSON_AddStringToObject(tc, "type", "function"))) ||
	    !(fn = cJSON_AddObjectToObject(tc, "function")) ||
	    (name && !cJSON_AddStringToObject(fn, "name", name)) || !cJSON_AddStringToObject(fn, "arguments", args))
		goto fail;
	return emit(s, chunks, d, NULL);
fail:
	cJSON_Delete(d);
	return ANTHROPIC_NOMEM;
}

static int
on_message_start(struct anthropic_stream *s, const cJSON *data, cJSON *chunks)
{
	const cJSON *m = jget(data, "message");
	cJSON *d = cJSON_CreateObject();

	snprintf(s->id, sizeof(s->id), "%s", str_of(m, "id") ? str_of(m, "id") : "");
	snprintf(s->model, sizeof(s->model), "%s", str_of(m, "model") ? str_of(m, "model") : "");
	usage_read(&s->usage, jget(m, "usage"));
	if (!d || !cJSON_AddStringToObject(d, "role", "assistant") || !cJSON_AddStringToObject(d, "content", "")) {
		cJSON_Delete(d);
		return ANTHROPIC_NOMEM;
	}
	return emit(s, chunks, d, NULL);
}

static int
on_block_start(struct anthropic_stream *s, const cJSON *data, cJSON *chunks)
{
	const cJSON *b = jget(data, "content_block");
	const char *id, *name;

	s->tool = -1;
	if (is_type(b, "text"))
		return emit_text(s, chunks, "content", str_of(b, "text"));
	if (is_type(b, "thinking"))
		return emit_text(s, chunks, "reasoning", str_of(b, "thinking"));
	if (!is_type(b, "tool_use"))
		return ANTHROPIC_OK;
	s->tool = s->ntools++;
	id = str_of(b, "id");
	name = str_of(b, "name");
	return emit_tool(s, chunks, id ? id : "", name ? name : "", "");
}

static int
on_block_delta(struct anthropic_stream *s, const cJSON *data, cJSON *chunks)
{
	const cJSON *d = jget(data, "delta");
	const char *json;

	if (is_type(d, "text_delta"))
		return emit_text(s, chunks, "content", str_of(d, "text"));
	if (is_type(d, "thinking_delta"))
		return emit_text(s, chunks, "reasoning", str_of(d, "thinking"));
	if (!is_type(d, "input_json_delta") || s->tool < 0 || !(json = str_of(d, "partial_json")) || !json[0])
		return ANTHROPIC_OK;	/* signatures, citations, ... */
	return emit_tool(s, chunks, NULL, NULL, json);
}

static int
on_message_delta(struct anthropic_stream *s, const cJSON *data, cJSON *chunks)
{
	const cJSON *stop = jget(jget(data, "delta"), "stop_reason");

	usage_read(&s->usage, jget(data, "usage"));
	if (!cJSON_IsString(stop))
		return ANTHROPIC_OK;
	return emit(s, chunks, cJSON_CreateObject(), anthropic_finish_reason(stop->valuestring));
}

static int
on_message_stop(struct anthropic_stream *s, cJSON *chunks)
{
	cJSON *o = chunk_new(s, NULL, NULL), *u = usage_json(&s->usage);

	if (!o || !u) {
		cJSON_Delete(o);
		cJSON_Delete(u);
		return ANTHROPIC_NOMEM;
	}
	cJSON_AddItemToObject(o, "usage", u);
	cJSON_AddItemToArray(chunks, o);
	return ANTHROPIC_DONE;
}

int
anthropic_stream_feed(struct anthropic_stream *s, const char *event, const cJSON *data,
		      cJSON *chunks, char *msg, size_t len)
{
	const char *type = str_of(data, "type");

	if (!cJSON_IsObject(data)) {
		snprintf(msg, len, "an unreadable event");
		return ANTHROPIC_BAD;
	}
	if (!type)
		type = event ? event : "";
	if (strcmp(type, "message_start") == 0)
		return on_message_start(s, data, chunks);
	if (strcmp(type, "content_block_start") == 0)
		return on_block_start(s, data, chunks);
	if (strcmp(type, "content_block_delta") == 0)
		return on_block_delta(s, data, chunks);
	if (strcmp(type, "content_block_stop") == 0)
		s->tool = -1;
	else if (strcmp(type, "message_delta") == 0)
		return on_message_delta(s, data, chunks);
	else if (strcmp(type, "message_stop") == 0)
		return on_message_stop(s, chunks);
	else if (strcmp(type, "error") == 0) {
		const char *m = anthropic_error_message(data);

		snprintf(msg, len, "%s", m ? m : "the provider reported an error");
		return ANTHROPIC_BAD;
	}
	return ANTHROPIC_OK;	/* ping, and events added later */
}
