/*
 * anthropic: the Anthropic Messages adapter. Pure functions on cJSON trees
 * (no I/O) that translate a chat-completions request into a Messages request,
 * a Messages answer into a chat.completion, and a Messages event stream into
 * chat.completion.chunk objects, so that a client never sees which API the
 * provider speaks. Unit-tested on their own (tests/unit/test_anthropic.c).
 */
#ifndef AGORA_ANTHROPIC_H
#define AGORA_ANTHROPIC_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#define ANTHROPIC_VERSION "2023-06-01"
#define ANTHROPIC_DEFAULT_MAX_TOKENS 4096

/* Return values of anthropic_request() and anthropic_stream_feed(). */
#define ANTHROPIC_OK 0
#define ANTHROPIC_DONE 1	/* stream: message_stop, the last event */
#define ANTHROPIC_BAD (-1)	/* request: a shape Anthropic cannot express; stream: error event */
#define ANTHROPIC_NOMEM (-2)

/* Builds the Messages body of a chat-completions body (left untouched):
 * system/developer messages become `system`, user/assistant/tool messages
 * become alternating turns of content blocks (text, image, tool_use,
 * tool_result), tools/tool_choice/stop/max_tokens/sampling/user are mapped,
 * `model` is upstream_model, `max_tokens` defaults to default_max_tokens.
 * Returns ANTHROPIC_OK with *out set (caller frees), ANTHROPIC_BAD with a
 * message for the client, or ANTHROPIC_NOMEM. */
int anthropic_request(const cJSON *chat, const char *upstream_model, int default_max_tokens,
		      cJSON **out, char *msg, size_t len);

/* The chat.completion of a Messages answer (caller frees), or NULL when it
 * is not one. */
cJSON *anthropic_answer(const cJSON *message);

/* finish_reason of a Messages stop_reason (NULL gives "stop"). */
const char *anthropic_finish_reason(const char *stop_reason);

/* The message of an error body {"type":"error","error":{"type","message"}},
 * or NULL. Points into body. */
const char *anthropic_error_message(const cJSON *body);

/* A Messages stream being translated (one per upstream stream). */
struct anthropic_stream;

struct anthropic_stream *anthropic_stream_new(void);
void anthropic_stream_free(struct anthropic_stream *s);

/* Feeds one SSE event: its name (may be "" or NULL: data's `type` decides)
 * and its data. Appends 0..n chat.completion.chunk objects to the array
 * `chunks`. Returns ANTHROPIC_OK, ANTHROPIC_DONE after message_stop (whose
 * chunk carries `usage` with choices []), ANTHROPIC_BAD for an `error` event
 * or an event that is not an object (message in msg), or ANTHROPIC_NOMEM. */
int anthropic_stream_feed(struct anthropic_stream *s, const char *event, const cJSON *data,
			  cJSON *chunks, char *msg, size_t len);

#endif
