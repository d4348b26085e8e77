/*
 * sse: line-oriented SSE framing (see sse.h). Handles LF, CRLF and CR line
 * ends split across feeds, "data:" with or without the space, multi-line
 * data, "event:" names, comments, and ignores "id:"/"retry:" fields.
 */
#include "sse.h"

#include <stdlib.h>
#include <string.h>

struct sse {
	size_t max_event;
	sse_event_fn fn;
	void *arg;
	char *line;		/* current partial line */
	size_t line_len, line_cap;
	char *data;		/* data of the event being built */
	size_t data_len, data_cap;
	int has_data;
	char event[64];
	int last_cr;		/* previous byte was CR (swallow a following LF) */
};

struct sse *
sse_new(size_t max_event, sse_event_fn fn, void *arg)
{
	struct sse *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->max_event = max_event;
	s->fn = fn;
	s->arg = arg;
	return s;
}

void
sse_free(struct sse *s)
{
	if (!s)
		return;
	free(s->line);
	free(s->data);
	free(s);
}

void
sse_reset(struct sse *s)
{
	s->line_len = 0;
	s->data_len = 0;
	s->has_data = 0;
	s->event[0] = '\0';
	s->last_cr = 0;
}

size_t
sse_pending(const struct sse *s)
{
	return s->line_len + s->data_len;
}

static int
buf_add(char **buf, size_t *len, size_t *cap, const char *p, size_t n, size_t max)
{
	if (*len + n + 1 > max)
		return -1;
	if (*len + n + 1 > *cap) {
		size_t c = *cap ? *cap : 256;
		char *b;

		while (c < *len + n + 1)
			c *= 2;
		if (!(b = realloc(*buf, c)))
			return -1;
		*buf = b;
		*cap = c;
	}
	memcpy(*buf + *len, p, n);
	*len += n;
	(*buf)[*len] = '\0';
	return 0;
}

/* The parser is left ready for the next event BEFORE the callback: a
 * callback may free it (its owner ended) and then it must not be touched. */
static int
sse_dispatch(struct sse *s)
{
	char event[sizeof(s->event)];
	size_t len = s->data_len;
	int has = s->has_data;

	memcpy(event, s->event, sizeof(event));
	s->data_len = 0;
	s->has_data = 0;
	s->event[0] = '\0';
	return has ? s->fn(s->arg, event, s->data ? s->data : "", len, 0) : 0;
}

static int
sse_line(struct sse *s)
{
	char *line = s->line ? s->line : "", *val;
	size_t n = s->line_len, vlen;

	s->line_len = 0;	/* the line stays readable below (see sse_dispatch) */
	if (n == 0)
		return sse_dispatch(s);
	if (line[0] == ':')
		return s->fn(s->arg, "", line + 1, n - 1, 1);
	val = memchr(line, ':', n);
	if (val) {
		*val++ = '\0';
		if (*val == ' ')
			val++;
		vlen = n - (size_t)(val - line);
	} else {
		val = line + n;
		vlen = 0;
	}
	if (strcmp(line, "data") == 0) {
		if (s->has_data && buf_add(&s->data, &s->data_len, &s->data_cap, "\n", 1, s->max_event) < 0)
			return -1;
		if (buf_add(&s->data, &s->data_len, &s->data_cap, val, vlen, s->max_event) < 0)
			return -1;
		s->has_data = 1;
	} else if (strcmp(line, "event") == 0) {
		size_t m = vlen < sizeof(s->event) - 1 ? vlen : sizeof(s->event) - 1;

		memcpy(s->event, val, m);
		s->event[m] = '\0';
	}
	return 0;
}

/* The first CR or LF in [p, end), or end: memchr, not a loop over every
 * byte (the stream path's hottest loop in profiles). */
static const char *
eol(const char *p, const char *end)
{
	const char *lf = memchr(p, '\n', (size_t)(end - p));
	const char *cr = memchr(p, '\r', (size_t)((lf ? lf : end) - p));

	return cr ? cr : lf ? lf : end;
}

int
sse_feed(struct sse *s, const char *p, size_t len)
{
	const char *end = p + len;
	int r;

	while (p < end) {
		const char *nl = p;

		if (s->last_cr && *p == '\n') {
			s->last_cr = 0;
			p++;
			continue;
		}
		s->last_cr = 0;
		nl = eol(p, end);
		if (buf_add(&s->line, &s->line_len, &s->line_cap, p, (size_t)(nl - p), s->max_event) < 0)
			return -1;
		if (nl == end)
			return 0;
		s->last_cr = *nl == '\r';
		p = nl + 1;
		if ((r = sse_line(s)))
			return r;	/* s may be gone (the callback's return) */
	}
	return 0;
}
