/*
 * prom: Prometheus text exposition (format 0.0.4) written into an evbuffer:
 * counters, gauges and histograms with fixed buckets (_bucket{le=...},
 * _sum, _count). Label values and help texts are escaped as the format
 * says. Recording into a histogram is a bounded scan of its buckets: no
 * allocation, no locking (one loop per process).
 *
 * Labels are passed as a NULL-terminated list of name, value pairs:
 *   const char *const l[] = { "provider", id, "outcome", "ok", NULL };
 */
#ifndef AGORA_PROM_H
#define AGORA_PROM_H

#include <event2/buffer.h>

#define PROM_BUCKETS_MAX 24

struct prom_hist {
	const double *le;		/* upper bounds, ascending (+Inf implied) */
	int n;
	unsigned long long counts[PROM_BUCKETS_MAX + 1];	/* per bucket; [n]: above le[n-1] */
	double sum;
};

/* Seconds, 1 ms to 5 min: request latencies and times to first token. */
extern const double prom_seconds_le[];
#define PROM_SECONDS_N 17

void prom_hist_init(struct prom_hist *h, const double *le, int n);
void prom_hist_observe(struct prom_hist *h, double v);
unsigned long long prom_hist_count(const struct prom_hist *h);

/* "# HELP name help" and "# TYPE name type" (type: counter, gauge, histogram). */
void prom_head(struct evbuffer *b, const char *name, const char *type, const char *help);
/* One sample: name{labels} value. labels may be NULL. */
void prom_sample(struct evbuffer *b, const char *name, const char *const *labels, double v);
void prom_sample_int(struct evbuffer *b, const char *name, const char *const *labels, long long v);
/* A histogram's samples: cumulative _bucket lines, _sum and _count. */
void prom_hist_write(struct evbuffer *b, const char *name, const char *const *labels,
		     const struct prom_hist *h);
/* A whole unlabelled counter or gauge: head and one sample. */
void prom_counter(struct evbuffer *b, const char *name, const char *help, long long v);
void prom_gauge(struct evbuffer *b, const char *name, const char *help, double v);

/* The Content-Type of the text format. */
#define PROM_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

#endif
