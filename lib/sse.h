/*
 * sse: incremental Server-Sent Events parser. Feed it bytes as they arrive in
 * any split; it calls back once per complete event with its `event:` name
 * (or "") and its data (the `data:` lines joined by '\n'). Comment lines
 * (starting with ':') are reported with comment = 1. Bounded: an event
 * larger than max_event bytes is an error.
 */
#ifndef AGORA_SSE_H
#define AGORA_SSE_H

#include <stddef.h>

struct sse;

/* Return 0 to go on, non-zero to stop sse_feed (which then returns that). */
typedef int (*sse_event_fn)(void *arg, const char *event, const char *data,
			    size_t len, int comment);

struct sse *sse_new(size_t max_event, sse_event_fn fn, void *arg);
void sse_free(struct sse *s);
void sse_reset(struct sse *s);
/* Returns 0, -1 when an event exceeds the bound, or the callback's value. */
int sse_feed(struct sse *s, const char *data, size_t len);
/* Bytes of an unfinished event held (0 at a clean event boundary). */
size_t sse_pending(const struct sse *s);

#endif
