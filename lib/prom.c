/*
 * prom: Prometheus text exposition (see prom.h).
 */
#include "prom.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

const double prom_seconds_le[PROM_SECONDS_N] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
						 1, 2.5, 5, 10, 30, 60, 120, 300 };

void
prom_hist_init(struct prom_hist *h, const double *le, int n)
{
	memset(h, 0, sizeof(*h));
	h->le = le;
	h->n = n < PROM_BUCKETS_MAX ? n : PROM_BUCKETS_MAX;
}

void
prom_hist_observe(struct prom_hist *h, double v)
{
	int i = 0;

	while (i < h->n && v > h->le[i])
		i++;
	h->counts[i]++;
	h->sum += v;
}

unsigned long long
prom_hist_count(const struct prom_hist *h)
{
	unsigned long long n = 0;

	for (int i = 0; i <= h->n; i++)
		n += h->counts[i];
	return n;
}

/* Escapes backslash and newline, and the double quote when quote is set. */
static void
escape(struct evbuffer *b, const char *s, int quote)
{
	const char *run = s;

	for (; *s; s++) {
		const char *esc = *s == '\\' ? "\\\\" : *s == '\n' ? "\\n" : quote && *s == '"' ? "\\\"" : NULL;

		if (!esc)
			continue;
		evbuffer_add(b, run, (size_t)(s - run));
		evbuffer_add(b, esc, 2);
		run = s + 1;
	}
	evbuffer_add(b, run, (size_t)(s - run));
}

static void
prom_escape(struct evbuffer *b, const char *s)
{
	escape(b, s, 1);
}

void
prom_head(struct evbuffer *b, const char *name, const char *type, const char *help)
{
	evbuffer_add_printf(b, "# HELP %s ", name);
	escape(b, help, 0);
	evbuffer_add_printf(b, "\n# TYPE %s %s\n", name, type);
}

/* name{l1="v1",...,extra="xv"} with what labels there are. */
static void
series(struct evbuffer *b, const char *name, const char *suffix, const char *const *labels,
       const char *extra, const char *xv)
{
	int n = 0;

	evbuffer_add(b, name, strlen(name));
	if (suffix)
		evbuffer_add(b, suffix, strlen(suffix));
	for (; labels && labels[0] && labels[1]; labels += 2, n++) {
		evbuffer_add_printf(b, "%c%s=\"", n ? ',' : '{', labels[0]);
		prom_escape(b, labels[1]);
		evbuffer_add(b, "\"", 1);
	}
	if (extra) {
		evbuffer_add_printf(b, "%c%s=\"%s\"", n ? ',' : '{', extra, xv);
		n++;
	}
	if (n)
		evbuffer_add(b, "}", 1);
}

static void
value(struct evbuffer *b, double v)
{
	if (isnan(v))
		evbuffer_add(b, " NaN\n", 5);
	else if (isinf(v))
		evbuffer_add_printf(b, " %cInf\n", v > 0 ? '+' : '-');
	else
		evbuffer_add_printf(b, " %.15g\n", v);
}

void
prom_sample(struct evbuffer *b, const char *name, const char *const *labels, double v)
{
	series(b, name, NULL, labels, NULL, NULL);
	value(b, v);
}

void
prom_sample_int(struct evbuffer *b, const char *name, const char *const *labels, long long v)
{
	series(b, name, NULL, labels, NULL, NULL);
	evbuffer_add_printf(b, " %lld\n", v);
}

void
prom_hist_write(struct evbuffer *b, const char *name, const char *const *labels, const struct prom_hist *h)
{
	unsigned long long cum = 0;
	char le[32];

	for (int i = 0; i <= h->n; i++) {
		cum += h->counts[i];
		if (i < h->n)
			snprintf(le, sizeof(le), "%g", h->le[i]);
		series(b, name, "_bucket", labels, "le", i < h->n ? le : "+Inf");
		evbuffer_add_printf(b, " %llu\n", cum);
	}
	series(b, name, "_sum", labels, NULL, NULL);
	value(b, h->sum);
	series(b, name, "_count", labels, NULL, NULL);
	evbuffer_add_printf(b, " %llu\n", cum);
}

void
prom_counter(struct evbuffer *b, const char *name, const char *help, long long v)
{
	prom_head(b, name, "counter", help);
	prom_sample_int(b, name, NULL, v);
}

void
prom_gauge(struct evbuffer *b, const char *name, const char *help, double v)
{
	prom_head(b, name, "gauge", help);
	prom_sample(b, name, NULL, v);
}
