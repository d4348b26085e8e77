/*
 * csv: RFC 4180 writer (see csv.h).
 */
#include "csv.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "money.h"

void
csv_init(struct csv *c)
{
	memset(c, 0, sizeof(*c));
}

void
csv_free(struct csv *c)
{
	free(c->buf);
	memset(c, 0, sizeof(*c));
}

static int
csv_reserve(struct csv *c, size_t more)
{
	size_t cap;
	char *p;

	if (c->failed)
		return -1;
	if (c->len + more <= c->cap)
		return 0;
	cap = c->cap ? c->cap : 1024;
	while (cap < c->len + more)
		cap *= 2;
	if (!(p = realloc(c->buf, cap))) {
		c->failed = 1;
		return -1;
	}
	c->buf = p;
	c->cap = cap;
	return 0;
}

static void
csv_put(struct csv *c, const char *s, size_t n)
{
	if (csv_reserve(c, n) < 0)
		return;
	memcpy(c->buf + c->len, s, n);
	c->len += n;
}

static void
csv_sep(struct csv *c)
{
	if (c->col++ > 0)
		csv_put(c, ",", 1);
}

/* Writes s as one field, quoted when it must be; prefix is put inside the
 * field before s (the formula guard), or NULL. */
static void
csv_field(struct csv *c, const char *prefix, const char *s)
{
	size_t n = strlen(s);

	csv_sep(c);
	if (strpbrk(s, ",\"\r\n") == NULL) {
		if (prefix)
			csv_put(c, prefix, strlen(prefix));
		csv_put(c, s, n);
		return;
	}
	csv_put(c, "\"", 1);
	if (prefix)
		csv_put(c, prefix, strlen(prefix));
	for (const char *p = s, *q; *p; p = q + 1) {
		if (!(q = strchr(p, '"'))) {
			csv_put(c, p, strlen(p));
			break;
		}
		csv_put(c, p, (size_t)(q - p) + 1);
		csv_put(c, "\"", 1);
	}
	csv_put(c, "\"", 1);
}

void
csv_text(struct csv *c, const char *s)
{
	if (!s || !*s) {
		csv_empty(c);
		return;
	}
	csv_field(c, strchr("=+-@\t\r", s[0]) ? "'" : NULL, s);
}

void
csv_raw(struct csv *c, const char *s)
{
	csv_field(c, NULL, s ? s : "");
}

void
csv_i64(struct csv *c, int64_t v)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%" PRId64, v);
	csv_field(c, NULL, buf);
}

void
csv_usd(struct csv *c, int64_t nusd)
{
	char buf[64];

	if (money_format_usd(nusd, buf, sizeof(buf)) < 0)
		buf[0] = '\0';
	csv_field(c, NULL, buf);
}

void
csv_double(struct csv *c, double v)
{
	char buf[40];

	for (int prec = 15; prec <= 17; prec++) {
		snprintf(buf, sizeof(buf), "%.*g", prec, v);
		if (strtod(buf, NULL) == v)
			break;
	}
	csv_field(c, NULL, buf);
}

void
csv_empty(struct csv *c)
{
	csv_sep(c);
}

void
csv_end_row(struct csv *c)
{
	csv_put(c, "\r\n", 2);
	c->col = 0;
}

void
csv_header(struct csv *c, const char *const *names)
{
	for (; *names; names++)
		csv_raw(c, *names);
	csv_end_row(c);
}

const char *
csv_data(const struct csv *c, size_t *len)
{
	if (c->failed)
		return NULL;
	*len = c->len;
	return c->buf ? c->buf : "";
}
