/*
 * csvparse: a bounded RFC 4180 reader (see csvparse.h).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csvparse.h"

const struct csvp_limits csvp_default_limits = { 4096, 64, 200000 };

int
csvp_init(struct csvp *c, const char *data, size_t len, const struct csvp_limits *lim)
{
	memset(c, 0, sizeof(*c));
	c->lim = lim ? *lim : csvp_default_limits;
	if (c->lim.max_fields < 1)
		c->lim.max_fields = 1;
	c->p = data;
	c->end = data + len;
	c->line = 1;
	if (len >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0)
		c->p += 3;
	c->buf = malloc(c->lim.max_record_bytes + (size_t)c->lim.max_fields + 1);
	c->fields = malloc(sizeof(*c->fields) * (size_t)c->lim.max_fields);
	if (!c->buf || !c->fields) {
		csvp_free(c);
		return -1;
	}
	return 0;
}

void
csvp_free(struct csvp *c)
{
	free(c->buf);
	free(c->fields);
	c->buf = NULL;
	c->fields = NULL;
}

static int __attribute__((format(printf, 3, 4)))
fail(struct csvp *c, long line, const char *fmt, ...)
{
	va_list ap;
	int n = snprintf(c->err, sizeof(c->err), "line %ld: ", line);

	va_start(ap, fmt);
	vsnprintf(c->err + n, sizeof(c->err) - (size_t)n, fmt, ap);
	va_end(ap);
	c->p = c->end;	/* an error ends the input */
	return -1;
}

static int
too_long(struct csvp *c)
{
	return fail(c, c->record_line, "record longer than %zu bytes", c->lim.max_record_bytes);
}

/* Consumes one line break at p, if there is one. */
static void
eat_break(struct csvp *c)
{
	if (c->p < c->end && *c->p == '\r') {
		c->p++;
		if (c->p < c->end && *c->p == '\n')
			c->p++;
		c->line++;
	} else if (c->p < c->end && *c->p == '\n') {
		c->p++;
		c->line++;
	}
}

/* A quoted field, p on its opening quote; contents appended at *out. */
static int
quoted(struct csvp *c, const char *start, char **out)
{
	long open_line = c->line;

	for (c->p++;; c->p++) {
		char ch;

		if (c->p >= c->end)
			return fail(c, open_line, "unterminated quoted field");
		ch = *c->p;
		if (ch == '"') {
			if (c->p + 1 < c->end && c->p[1] == '"') {
				c->p++;
			} else {
				c->p++;
				break;
			}
		} else if (ch == '\0') {
			return fail(c, c->line, "NUL byte");
		} else if (ch == '\n' || (ch == '\r' && (c->p + 1 >= c->end || c->p[1] != '\n'))) {
			c->line++;
		}
		if ((size_t)(c->p - start) >= c->lim.max_record_bytes)
			return too_long(c);
		*(*out)++ = ch;
	}
	if (c->p < c->end && *c->p != ',' && *c->p != '\r' && *c->p != '\n')
		return fail(c, c->line, "unexpected character after a closing quote");
	return 0;
}

static int
unquoted(struct csvp *c, const char *start, char **out)
{
	for (; c->p < c->end && *c->p != ',' && *c->p != '\r' && *c->p != '\n'; c->p++) {
		if (*c->p == '"')
			return fail(c, c->line, "quote inside an unquoted field (quote the whole field)");
		if (*c->p == '\0')
			return fail(c, c->line, "NUL byte");
		if ((size_t)(c->p - start) >= c->lim.max_record_bytes)
			return too_long(c);
		*(*out)++ = *c->p;
	}
	return 0;
}

int
csvp_next(struct csvp *c, char *const **fields, int *nfields)
{
	const char *start;
	char *out = c->buf;
	int n = 0;

	while (c->p < c->end && (*c->p == '\r' || *c->p == '\n'))
		eat_break(c);
	if (c->p >= c->end || !c->buf)
		return 0;
	if (c->records >= c->lim.max_records)
		return fail(c, c->line, "more than %ld records", c->lim.max_records);
	c->record_line = c->line;
	start = c->p;
	for (;;) {
		if (n == c->lim.max_fields)
			return fail(c, c->record_line, "more than %d fields", c->lim.max_fields);
		c->fields[n++] = out;
		if ((c->p < c->end && *c->p == '"' ? quoted(c, start, &out) : unquoted(c, start, &out)) < 0)
			return -1;
		*out++ = '\0';
		if (c->p < c->end && *c->p == ',') {
			c->p++;
			continue;
		}
		eat_break(c);
		break;
	}
	c->records++;
	*fields = c->fields;
	*nfields = n;
	return 1;
}

long
csvp_line(const struct csvp *c)
{
	return c->record_line;
}

const char *
csvp_error(const struct csvp *c)
{
	return c->err;
}
