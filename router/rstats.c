/*
 * rstats: the router's histograms and labelled counters (see rstats.h).
 */
#include "rstats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prom.h"

static const char *const outcome_names[RS_NOUTCOMES] = {
	"none", "ok", "http_4xx", "http_429", "http_5xx", "timeout", "connect", "reset", "protocol",
	"invalid", "stream_error", "too_large", "cut", "cancelled",
};

struct rs_provider {
	char id[64];			/* "" : free slot */
	long long n[RS_NOUTCOMES];
};

struct rstats {
	long long responses[6];		/* by status / 100; [0]: other */
	struct prom_hist latency[2];	/* [stream] */
	struct prom_hist ttft[2];
	struct rs_provider provs[RSTATS_PROVIDERS];
	struct rs_provider other;	/* when the table is full */
	int nprovs;
};

struct rstats *
rstats_new(void)
{
	struct rstats *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	for (int i = 0; i < 2; i++) {
		prom_hist_init(&s->latency[i], prom_seconds_le, PROM_SECONDS_N);
		prom_hist_init(&s->ttft[i], prom_seconds_le, PROM_SECONDS_N);
	}
	snprintf(s->other.id, sizeof(s->other.id), "other");
	return s;
}

void
rstats_free(struct rstats *s)
{
	free(s);
}

void
rstats_response(struct rstats *s, int status)
{
	s->responses[status >= 100 && status < 600 ? status / 100 : 0]++;
}

void
rstats_completion(struct rstats *s, int stream, int64_t total_ms, int64_t ttft_ms)
{
	stream = stream != 0;
	prom_hist_observe(&s->latency[stream], (double)(total_ms > 0 ? total_ms : 0) / 1000.0);
	if (ttft_ms >= 0)
		prom_hist_observe(&s->ttft[stream], (double)ttft_ms / 1000.0);
}

/* The provider's slot: open addressing on an FNV-1a hash of its id. */
static struct rs_provider *
provider_slot(struct rstats *s, const char *id)
{
	uint32_t h = 2166136261u;
	size_t len = strlen(id);

	if (len >= sizeof(s->other.id))
		len = sizeof(s->other.id) - 1;
	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)id[i]) * 16777619u;
	for (int i = 0; i < RSTATS_PROVIDERS; i++) {
		struct rs_provider *p = &s->provs[(h + (uint32_t)i) % RSTATS_PROVIDERS];

		if (!p->id[0]) {
			if (s->nprovs >= RSTATS_PROVIDERS * 3 / 4)
				return &s->other;	/* keep probes short */
			memcpy(p->id, id, len);
			p->id[len] = '\0';
			s->nprovs++;
			return p;
		}
		if (strncmp(p->id, id, len) == 0 && p->id[len] == '\0')
			return p;
	}
	return &s->other;
}

static enum rstats_outcome
outcome_of(int status)
{
	if (status == 200)
		return RS_OK;
	if (status == 429)
		return RS_HTTP_429;
	if (status == 499)
		return RS_CANCELLED;
	if (status == 504)
		return RS_TIMEOUT;
	return status >= 400 && status < 500 ? RS_HTTP_4XX : RS_HTTP_5XX;
}

void
rstats_attempt(struct rstats *s, const char *provider, enum rstats_outcome o, int status)
{
	if (o <= RS_NONE || o >= RS_NOUTCOMES)
		o = outcome_of(status);
	provider_slot(s, provider)->n[o]++;
}

const char *
rstats_outcome_name(enum rstats_outcome o)
{
	return o >= RS_NONE && o < RS_NOUTCOMES ? outcome_names[o] : "none";
}

static void
write_provider(struct evbuffer *b, const struct rs_provider *p)
{
	for (int o = RS_OK; o < RS_NOUTCOMES; o++) {
		const char *const l[] = { "provider", p->id, "outcome", outcome_names[o], NULL };

		prom_sample_int(b, "agora_router_upstream_outcomes_total", l, p->n[o]);
	}
}

void
rstats_write(const struct rstats *s, struct evbuffer *b)
{
	static const char *const classes[6] = { "other", "1xx", "2xx", "3xx", "4xx", "5xx" };
	static const char *const kinds[2] = { "json", "stream" };

	prom_head(b, "agora_router_responses_total", "counter", "HTTP answers by status class");
	for (int i = 1; i < 6; i++) {
		const char *const l[] = { "code", classes[i], NULL };

		prom_sample_int(b, "agora_router_responses_total", l, s->responses[i]);
	}
	prom_head(b, "agora_router_request_duration_seconds", "histogram",
		  "chat completion time, request to last byte (kind: json or stream)");
	for (int i = 0; i < 2; i++) {
		const char *const l[] = { "kind", kinds[i], NULL };

		prom_hist_write(b, "agora_router_request_duration_seconds", l, &s->latency[i]);
	}
	prom_head(b, "agora_router_ttft_seconds", "histogram",
		  "chat completion time to first byte to the client (a stream's first event)");
	for (int i = 0; i < 2; i++) {
		const char *const l[] = { "kind", kinds[i], NULL };

		prom_hist_write(b, "agora_router_ttft_seconds", l, &s->ttft[i]);
	}
	prom_head(b, "agora_router_upstream_outcomes_total", "counter",
		  "upstream attempts by provider and outcome");
	for (int i = 0; i < RSTATS_PROVIDERS; i++)
		if (s->provs[i].id[0])
			write_provider(b, &s->provs[i]);
	for (int o = RS_OK; o < RS_NOUTCOMES; o++)
		if (s->other.n[o]) {
			write_provider(b, &s->other);
			break;
		}
}
