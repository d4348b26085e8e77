/*
 * utf8: validation and repair (see utf8.h). Before, router/request.c,
 * billing/evcols.c and router/jscan.c each had a copy, and billing's took
 * the lead bytes 0xF5-0xFF for 3-byte starts: PostgreSQL then refused the
 * whole batch (22021) again and again.
 */
#include "utf8.h"

#include <stdint.h>
#include <string.h>

size_t
utf8_char_len(const unsigned char *p, size_t avail)
{
	unsigned c = p[0];
	size_t n;

	if (c < 0x80)
		return 1;
	if (c < 0xC2 || c > 0xF4)	/* a continuation, an overlong 2-byte lead, beyond U+10FFFF */
		return 0;
	n = c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
	if (avail < n || (p[1] & 0xC0) != 0x80)
		return 0;
	/* the second byte's range rules out overlong forms, surrogates and
	 * code points beyond U+10FFFF (RFC 3629, section 4) */
	if ((c == 0xE0 && p[1] < 0xA0) || (c == 0xED && p[1] > 0x9F) || (c == 0xF0 && p[1] < 0x90) ||
	    (c == 0xF4 && p[1] > 0x8F))
		return 0;
	for (size_t i = 2; i < n; i++)
		if ((p[i] & 0xC0) != 0x80)
			return 0;
	return n;
}

int
utf8_valid(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + n;

	while (p < end) {
		uint64_t w;
		size_t k;

		/* ASCII eight bytes at a time: request bodies are mostly ASCII */
		if ((size_t)(end - p) >= 8 && (memcpy(&w, p, 8), (w & 0x8080808080808080ULL) == 0)) {
			p += 8;
			continue;
		}
		if (!(k = utf8_char_len(p, (size_t)(end - p))))
			return 0;
		p += k;
	}
	return 1;
}

size_t
utf8_sanitize(char *dst, size_t cap, const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + n;
	size_t o = 0;

	while (p < end) {
		size_t k = utf8_char_len(p, (size_t)(end - p));
		const void *src = k ? (const void *)p : UTF8_REPLACEMENT;
		size_t w = k ? k : 3;

		if (cap - o < w)
			break;		/* whole characters only */
		memcpy(dst + o, src, w);
		o += w;
		p += k ? k : 1;
	}
	return o;
}

char *
utf8_put(char *o, unsigned cp)
{
	if (cp < 0x80) {
		*o++ = (char)cp;
	} else if (cp < 0x800) {
		*o++ = (char)(0xC0 | cp >> 6);
		*o++ = (char)(0x80 | (cp & 0x3F));
	} else if (cp < 0x10000) {
		*o++ = (char)(0xE0 | cp >> 12);
		*o++ = (char)(0x80 | (cp >> 6 & 0x3F));
		*o++ = (char)(0x80 | (cp & 0x3F));
	} else {
		*o++ = (char)(0xF0 | cp >> 18);
		*o++ = (char)(0x80 | (cp >> 12 & 0x3F));
		*o++ = (char)(0x80 | (cp >> 6 & 0x3F));
		*o++ = (char)(0x80 | (cp & 0x3F));
	}
	return o;
}

long
utf8_u_escape(const char *p, const char *end, int *len)
{
	unsigned hi, lo;

	if (end - p < 6 || utf8_hex4(p + 2, &hi) < 0)
		return -1;
	*len = 6;
	if (hi < 0xD800 || hi > 0xDFFF)
		return (long)hi;
	if (hi >= 0xDC00 || end - p < 12 || p[6] != '\\' || p[7] != 'u' || utf8_hex4(p + 8, &lo) < 0 ||
	    lo < 0xDC00 || lo > 0xDFFF)
		return UTF8_LONE_SURROGATE;
	*len = 12;
	return 0x10000 + (long)(((hi & 0x3FF) << 10) | (lo & 0x3FF));
}

int
utf8_hex4(const char *p, unsigned *v)
{
	*v = 0;
	for (int i = 0; i < 4; i++) {
		char c = p[i];
		unsigned d = c >= '0' && c <= '9' ? (unsigned)(c - '0') : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
			   : c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10) : 16;

		if (d > 15)
			return -1;
		*v = *v << 4 | d;
	}
	return 0;
}
