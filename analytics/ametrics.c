/*
 * ametrics: analytics requests by endpoint class (see ametrics.h).
 */
#include "ametrics.h"

#include <stdlib.h>
#include <string.h>

#include "prom.h"

/* Endpoint classes: API paths under /api/v1/analytics/ by name, then the rest. */
static const char *const api_names[] = { "overview", "share", "share/series", "providers", "live",
					 "check", "spend", "statement", "reconciliation" };
#define NAPI (sizeof(api_names) / sizeof(api_names[0]))
enum { C_ACTIVITY = NAPI, C_API_OTHER, C_HEALTH, C_METRICS, C_PAGES, NCLASSES };
static const char *const class_names[NCLASSES] = { "overview", "share", "share_series", "providers", "live",
						   "check", "spend", "statement", "reconciliation", "activity",
						   "api_other", "health", "metrics", "pages" };

struct ametrics {
	long long answers[NCLASSES][6];		/* by status / 100; [0]: other */
	struct prom_hist latency[NCLASSES];
};

struct ametrics *
ametrics_new(void)
{
	struct ametrics *m = calloc(1, sizeof(*m));

	for (int i = 0; m && i < NCLASSES; i++)
		prom_hist_init(&m->latency[i], prom_seconds_le, PROM_SECONDS_N);
	return m;
}

void
ametrics_free(struct ametrics *m)
{
	free(m);
}

static int
class_of(const char *path)
{
	if (strncmp(path, "/api/v1/analytics/", 18) == 0) {
		const char *p = path + 18;

		for (size_t i = 0; i < NAPI; i++) {
			size_t n = strlen(api_names[i]);

			if (strncmp(p, api_names[i], n) == 0 && (p[n] == '\0' || (p[n] == '/' && (p[n + 1] == '\0' ||
							       strcmp(api_names[i], "reconciliation") == 0))))
				return (int)i;
		}
		return C_API_OTHER;
	}
	if (strcmp(path, "/api/v1/activity") == 0 || strcmp(path, "/api/v1/activity/") == 0)
		return C_ACTIVITY;
	if (strncmp(path, "/api/", 5) == 0)
		return C_API_OTHER;
	if (strcmp(path, "/health") == 0)
		return C_HEALTH;
	if (strcmp(path, "/metrics") == 0)
		return C_METRICS;
	return C_PAGES;
}

const char *
ametrics_class(const char *path)
{
	return class_names[class_of(path)];
}

void
ametrics_done(const struct httpd_req *r, int status, long long usec, void *arg)
{
	struct ametrics *m = arg;
	int c = class_of(httpd_req_path(r));

	m->answers[c][status >= 100 && status < 600 ? status / 100 : 0]++;
	prom_hist_observe(&m->latency[c], (double)usec / 1e6);
}

void
ametrics_write(const struct ametrics *m, struct evbuffer *b)
{
	static const char *const codes[6] = { "other", "1xx", "2xx", "3xx", "4xx", "5xx" };

	prom_head(b, "agora_analytics_responses_total", "counter", "HTTP answers by endpoint class and status class");
	for (int c = 0; c < NCLASSES; c++)
		for (int k = 2; k < 6; k++) {
			const char *const l[] = { "endpoint", class_names[c], "code", codes[k], NULL };

			if (m->answers[c][k] || k != 3)
				prom_sample_int(b, "agora_analytics_responses_total", l, m->answers[c][k]);
		}
	prom_head(b, "agora_analytics_request_duration_seconds", "histogram",
		  "request reaching the handler to its answer, by endpoint class");
	for (int c = 0; c < NCLASSES; c++) {
		const char *const l[] = { "endpoint", class_names[c], NULL };

		prom_hist_write(b, "agora_analytics_request_duration_seconds", l, &m->latency[c]);
	}
}
