/*
 * request: what the router checks and changes in a chat completion body.
 * Pure functions on cJSON trees, unit-tested on their own.
 */
#ifndef AGORA_REQUEST_H
#define AGORA_REQUEST_H

#include <stddef.h>

#include <cjson/cJSON.h>

/* Checks the shape the router relies on: an object with `model` (non-empty
 * string) and/or `models` (array of strings), `messages` (non-empty array of
 * objects with a string `role`), boolean `stream`, positive integer
 * `max_tokens` / `max_completion_tokens`, and sampling numbers in OpenAI's
 * ranges (temperature, top_p, penalties, n, ...). Everything else passes through
 * untouched. Returns 0, or -1 with a message for the client. */
int request_validate(const cJSON *body, char *msg, size_t len);

/* 1 when s[0..n) is well-formed UTF-8 (no overlong forms, surrogates or
 * code points beyond U+10FFFF). */
int request_utf8_valid(const char *s, size_t n);

/* Turns the client's body into the provider's: `model` becomes the
 * endpoint's upstream model, OpenRouter-only fields (models, provider,
 * transforms, route, plugins, usage) are dropped, and streams always ask for
 * usage (stream_options.include_usage) so every generation can be metered.
 * Edits body in place; returns 0 or -1 (out of memory). */
int request_prepare_upstream(cJSON *body, const char *upstream_model, int stream);

#endif
