/*
 * jscan: object members as text spans (see jscan.h).
 */
#include "jscan.h"

#include <stdint.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

static const char *
skip_ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

#define JSCAN_MAX_DEPTH 1024	/* deeper: refused (cJSON refuses past 1000) */

/* Bytes a JSON string may hold as they are: not a control character, a
 * quote or a backslash. Sixteen at a time (SSE2), or eight (SWAR): the lowest flagged byte of
 * a word is the first special one (a borrow only flags bytes above it), so
 * the run ends there without a byte loop; the text's last < 8 bytes one
 * by one. */
static const char *
plain_run(const char *p, const char *end)
{
	const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;

#ifdef __SSE2__
	/* sixteen at a time where SSE2 is (every x86-64): unsigned x < 0x20 is
	 * min(x, 0x1f) == x; a quote or a backslash compares equal */
	const __m128i ctl = _mm_set1_epi8(0x1f), quote = _mm_set1_epi8('"'), bsl = _mm_set1_epi8('\\');

	while (end - p >= 16) {
		__m128i x = _mm_loadu_si128((const __m128i *)(const void *)p);
		__m128i hit = _mm_or_si128(_mm_cmpeq_epi8(_mm_min_epu8(x, ctl), x),
					   _mm_or_si128(_mm_cmpeq_epi8(x, quote), _mm_cmpeq_epi8(x, bsl)));
		unsigned mask = (unsigned)_mm_movemask_epi8(hit);

		if (mask)
			return p + __builtin_ctz(mask);
		p += 16;
	}
#endif
	while (end - p >= 8) {
		uint64_t x, q, b, t;

		memcpy(&x, p, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
		x = __builtin_bswap64(x);	/* the first byte in memory lowest */
#endif
		q = x ^ (ones * '"');		/* a quote: a zero byte here */
		b = x ^ (ones * '\\');	/* a backslash: idem */
		t = (((x - ones * 0x20) & ~x) | ((q - ones) & ~q) | ((b - ones) & ~b)) & high;
		if (t)
			return p + (__builtin_ctzll(t) >> 3);
		p += 8;
	}
	while (p < end && (unsigned char)*p >= 0x20 && *p != '"' && *p != '\\')
		p++;
	return p;
}

static int
is_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Past the string starting at p (on its opening quote), checked as JSON
 * wants it (no raw control character, known escapes only: cJSON lets some
 * through that a stricter reader refuses); NULL if it is not. */
static const char *
skip_string(const char *p, const char *end)
{
	for (p++;;) {
		p = plain_run(p, end);
		if (p >= end || (unsigned char)*p < 0x20)
			return NULL;
		if (*p == '"')
			return p + 1;
		if (end - p < 2)	/* a backslash */
			return NULL;
		if (p[1] == 'u') {
			if (end - p < 6 || !is_hex(p[2]) || !is_hex(p[3]) || !is_hex(p[4]) || !is_hex(p[5]))
				return NULL;
			p += 6;
		} else if (strchr("\"\\/bfnrt", p[1]) && p[1]) {
			p += 2;
		} else {
			return NULL;
		}
	}
}

static const char *
skip_digits(const char *p, const char *end)
{
	while (p < end && *p >= '0' && *p <= '9')
		p++;
	return p;
}

/* Past the number at p as JSON writes numbers (cJSON also takes "+1",
 * ".5", "1."): NULL if it is not one. */
static const char *
skip_number(const char *p, const char *end)
{
	const char *q;

	if (p < end && *p == '-')
		p++;
	if (p >= end || *p < '0' || *p > '9')
		return NULL;
	p = *p == '0' ? p + 1 : skip_digits(p, end);
	if (p < end && *p == '.') {
		if ((q = skip_digits(p + 1, end)) == p + 1)
			return NULL;
		p = q;
	}
	if (p < end && (*p == 'e' || *p == 'E')) {
		p++;
		if (p < end && (*p == '+' || *p == '-'))
			p++;
		if ((q = skip_digits(p, end)) == p)
			return NULL;
		p = q;
	}
	return p;
}

static const char *
skip_literal(const char *p, const char *end, const char *lit, size_t n)
{
	return (size_t)(end - p) >= n && memcmp(p, lit, n) == 0 ? p + n : NULL;
}

/* Past the value starting at p, checked as strict JSON; NULL if the text
 * ends first or is not. Iterative: the depth is a counter and a stack of
 * container kinds, bounded. */
static const char *
skip_value(const char *p, const char *end)
{
	char stack[JSCAN_MAX_DEPTH];
	int depth = 0;

value:
	p = skip_ws(p, end);
	if (p >= end)
		return NULL;
	switch (*p) {
	case '"':
		p = skip_string(p, end);
		break;
	case '{':
	case '[':
		if (depth == JSCAN_MAX_DEPTH)
			return NULL;
		stack[depth++] = *p;
		p = skip_ws(p + 1, end);
		if (p < end && *p == (stack[depth - 1] == '{' ? '}' : ']')) {
			depth--;
			p++;
			break;
		}
		if (stack[depth - 1] == '[')
			goto value;
		goto key;
	case 't':
		p = skip_literal(p, end, "true", 4);
		break;
	case 'f':
		p = skip_literal(p, end, "false", 5);
		break;
	case 'n':
		p = skip_literal(p, end, "null", 4);
		break;
	default:
		p = skip_number(p, end);
	}
after:
	if (!p)
		return NULL;
	if (depth == 0)
		return p;
	p = skip_ws(p, end);
	if (p >= end)
		return NULL;
	if (*p == ',') {
		p++;
		if (stack[depth - 1] == '[')
			goto value;
		goto key;
	}
	if (*p != (stack[depth - 1] == '{' ? '}' : ']'))
		return NULL;
	depth--;
	p++;
	goto after;
key:
	p = skip_ws(p, end);
	if (p >= end || *p != '"' || !(p = skip_string(p, end)))
		return NULL;
	p = skip_ws(p, end);
	if (p >= end || *p != ':')
		return NULL;
	p++;
	goto value;
}

/* jscan_object, also saying where the object ends (*stop: past its '}'). */
static int
object_at(const char *text, size_t len, struct jmember *out, int max, const char **stop)
{
	const char *p = text, *end = text + len;
	int n = 0;

	p = skip_ws(p, end);
	if (p >= end || *p != '{')
		return -1;
	p = skip_ws(p + 1, end);
	if (p < end && *p == '}') {
		*stop = p + 1;
		return 0;
	}
	while (p < end) {
		const char *k, *v;

		if (*p != '"' || n >= max)
			return -1;
		k = p + 1;
		if (!(p = skip_string(p, end)) || memchr(k, '\\', (size_t)(p - 1 - k)))
			return -1;
		out[n].key = k;
		out[n].klen = (size_t)(p - 1 - k);
		p = skip_ws(p, end);
		if (p >= end || *p != ':')
			return -1;
		v = skip_ws(p + 1, end);
		if (!(p = skip_value(v, end)) || p == v)
			return -1;
		out[n].val = v;
		out[n].vlen = (size_t)(p - v);
		n++;
		p = skip_ws(p, end);
		if (p < end && *p == '}') {
			*stop = p + 1;
			return n;
		}
		if (p >= end || *p != ',')
			return -1;
		p = skip_ws(p + 1, end);
	}
	return -1;
}

int
jscan_object(const char *text, size_t len, struct jmember *out, int max)
{
	const char *stop;

	return object_at(text, len, out, max, &stop);
}

int
jscan_array_objects(const char *text, size_t len, struct jmember *out, int max,
		    int (*fn)(void *arg, const struct jmember *m, int n), void *arg)
{
	const char *p = skip_ws(text, text + len), *end = text + len;
	int n, count = 0;

	if (p >= end || *p != '[')
		return -1;
	p = skip_ws(p + 1, end);
	if (p < end && *p == ']')
		return 0;
	for (;;) {
		if ((n = object_at(p, (size_t)(end - p), out, max, &p)) < 0 || fn(arg, out, n) < 0)
			return -1;
		count++;
		p = skip_ws(p, end);
		if (p < end && *p == ']')
			return count;
		if (p >= end || *p != ',')
			return -1;
		p++;
	}
}

int
jscan_key_is(const struct jmember *m, const char *name)
{
	return strlen(name) == m->klen && memcmp(m->key, name, m->klen) == 0;
}
