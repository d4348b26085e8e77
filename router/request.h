/*
 * request: what the router checks and changes in a chat completion body.
 * Pure functions on cJSON trees, unit-tested on their own.
 */
#ifndef AGORA_REQUEST_H
#define AGORA_REQUEST_H

#include <stddef.h>

#include <cjson/cJSON.h>

/* The client's body as a cJSON tree, or NULL when it is not JSON. A chat
 * body's bytes are mostly `messages` (the conversation), which the router
 * only checks and forwards: when router/jscan reads the body as strict JSON
 * and every message as an object with a string `role` (the first one, as
 * cJSON), the top-level members are parsed one by one and `messages` is
 * kept as a raw node holding its text (cJSON prints it as it is). Anything
 * else (an escaped key, an odd message, more members than jscan takes) is
 * parsed whole, as cJSON_ParseWithLength would, so the checks and their
 * messages do not change. *shallow: 1 for the raw form, whose `messages`
 * only request_parse_whole() gives as a tree. */
cJSON *request_parse(const char *body, size_t len, int *shallow);
cJSON *request_parse_whole(const char *body, size_t len);

/* Checks the shape the router relies on: an object with `model` (non-empty
 * string) and/or `models` (array of strings), `messages` (non-empty array of
 * objects with a string `role`), boolean `stream`, positive integer
 * `max_tokens` / `max_completion_tokens`, and sampling numbers in OpenAI's
 * ranges (temperature, top_p, penalties, n, ...). Everything else passes through
 * untouched. Returns 0, or -1 with a message for the client. */
int request_validate(const cJSON *body, char *msg, size_t len);

/* An object's members by name, hashed once: the body is asked for ~40 known
 * fields a request (validation, routing), each a linear strcmp walk through
 * cJSON otherwise (7% of a request's instructions). Objects with more
 * members than fit are looked up linearly. The object must outlive it. */
#define JFIELDS_SLOTS 64
struct jfields {
	const cJSON *obj;
	int hashed;				/* 0: linear lookups */
	const char *repeated;			/* a name seen twice, or NULL */
	const cJSON *slot[JFIELDS_SLOTS];
};

void jfields_init(struct jfields *f, const cJSON *obj);
/* The first member named name, or NULL (what cJSON_GetObjectItemCaseSensitive
 * returns). */
const cJSON *jfields_get(const struct jfields *f, const char *name);

/* 1 when s[0..n) is well-formed UTF-8 (no overlong forms, surrogates or
 * code points beyond U+10FFFF): lib/utf8.c's utf8_valid. */
int request_utf8_valid(const char *s, size_t n);

/* Turns the client's body into the provider's: `model` becomes the
 * endpoint's upstream model, OpenRouter-only fields (models, provider,
 * transforms, route, plugins, usage) are dropped, and streams always ask for
 * usage (stream_options.include_usage) so every generation can be metered.
 * Edits body in place; returns 0 or -1 (out of memory). */
int request_prepare_upstream(cJSON *body, const char *upstream_model, int stream);

#endif
