/*
 * rstats: what the router's /metrics adds to its plain counters: answers by
 * status class, completion latency and time-to-first-token histograms
 * (JSON and streamed apart), and each upstream attempt's outcome per
 * provider. Recording is O(1) and allocates nothing (fixed tables: past
 * RSTATS_PROVIDERS providers, attempts count under provider "other").
 */
#ifndef AGORA_RSTATS_H
#define AGORA_RSTATS_H

#include <stdint.h>

#include <event2/buffer.h>

#define RSTATS_PROVIDERS 128

/* How an upstream attempt ended. RS_NONE: derive it from the status. */
enum rstats_outcome {
	RS_NONE,
	RS_OK,		/* answered (or streamed to its end) */
	RS_HTTP_4XX,	/* the provider answered 4xx (not 429) */
	RS_HTTP_429,	/* rate limited */
	RS_HTTP_5XX,	/* the provider answered 5xx */
	RS_TIMEOUT,	/* a phase deadline passed before the first event */
	RS_CONNECT,	/* could not connect (refused, DNS, TLS, no adapter) */
	RS_RESET,	/* connection closed or reset before a whole answer */
	RS_PROTOCOL,	/* not HTTP */
	RS_INVALID,	/* not a chat completion, unreadable or empty stream */
	RS_STREAM_ERROR,	/* an error event before the stream started */
	RS_TOO_LARGE,	/* over max_response_bytes */
	RS_CUT,		/* a started stream broke (any cause) */
	RS_CANCELLED,	/* the client went away */
	RS_NOUTCOMES
};

struct rstats;

struct rstats *rstats_new(void);
void rstats_free(struct rstats *s);

/* An answer of any request, by its status. */
void rstats_response(struct rstats *s, int status);
/* A chat completion ended: total time, and time to its first byte to the
 * client (< 0: none went out). */
void rstats_completion(struct rstats *s, int stream, int64_t total_ms, int64_t ttft_ms);
/* An upstream attempt ended (outcome RS_NONE: from the status it maps to). */
void rstats_attempt(struct rstats *s, const char *provider, enum rstats_outcome o, int status);
/* The outcome's label value ("ok", "http_5xx", ...). */
const char *rstats_outcome_name(enum rstats_outcome o);
/* The metrics, in the Prometheus text format. */
void rstats_write(const struct rstats *s, struct evbuffer *b);

#endif
