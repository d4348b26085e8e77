/*
 * qparam: query string parameters (see qparam.h).
 */
#include "qparam.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decodes s[0..n) into buf. */
static int
decode(const char *s, size_t n, char *buf, size_t len)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		int c = (unsigned char)s[i];

		if (c == '+') {
			c = ' ';
		} else if (c == '%') {
			int hi, lo;

			if (i + 2 >= n || (hi = hexval(s[i + 1])) < 0 || (lo = hexval(s[i + 2])) < 0)
				return -1;
			c = hi * 16 + lo;
			i += 2;
		}
		if (c < 0x20 || c == 0x7f || o + 1 >= len)
			return -1;
		buf[o++] = (char)c;
	}
	buf[o] = '\0';
	return 1;
}

int
qparam_get(const char *query, const char *name, char *buf, size_t len)
{
	size_t nl = strlen(name);

	if (!len)
		return -1;
	for (const char *p = query; p && *p;) {
		const char *end = strchr(p, '&');
		size_t seg = end ? (size_t)(end - p) : strlen(p);

		if (seg >= nl && strncmp(p, name, nl) == 0 && (seg == nl || p[nl] == '=')) {
			if (seg == nl) {
				buf[0] = '\0';
				return 1;
			}
			return decode(p + nl + 1, seg - nl - 1, buf, len);
		}
		p = end ? end + 1 : NULL;
	}
	return 0;
}

int
qparam_int(const char *s, int64_t min, int64_t max, int64_t *out)
{
	char *end;
	long long v;

	if (!s || !*s || (*s != '-' && (*s < '0' || *s > '9')))
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}
