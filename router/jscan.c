/*
 * jscan: object members as text spans (see jscan.h).
 */
#include "jscan.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "utf8.h"

static const char *
skip_ws(const char *p, const char *end)
{
	if (p < end && (unsigned char)*p > ' ')
		return p;	/* compact JSON: no whitespace at all */
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

/* Containers a member's value may nest: with the object holding it, cJSON's
 * CJSON_NESTING_LIMIT (1000), so that jscan never accepts what cJSON refuses
 * (the stream path reads events through jscan alone). */
#define JSCAN_MAX_DEPTH 999

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

/* Past the string starting at p (on its opening quote), checked as JSON
 * wants it (no raw control character, known escapes only, surrogates in
 * pairs: cJSON lets some through that a stricter reader refuses, and
 * refuses unpaired surrogates); NULL if it is not. */
static const char *
skip_string(const char *p, const char *end)
{
	int n;

	for (p++;;) {
		p = plain_run(p, end);
		if (p >= end || (unsigned char)*p < 0x20)
			return NULL;
		if (*p == '"')
			return p + 1;
		if (end - p < 2)	/* a backslash */
			return NULL;
		if (p[1] == 'u') {
			if (utf8_u_escape(p, end, &n) < 0)	/* a lone surrogate too: cJSON refuses it */
				return NULL;
			p += n;
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

/* skip_value(), with strings, numbers and null (most members) skipped
 * directly. */
static const char *
skip_scalar_or_value(const char *v, const char *end)
{
	if (*v == '"')
		return skip_string(v, end);
	if (*v == '-' || (*v >= '0' && *v <= '9'))
		return skip_number(v, end);
	if (*v == 'n')
		return skip_literal(v, end, "null", 4);
	return skip_value(v, end);
}

/* The members of the object at p (leading whitespace allowed); *after:
 * past its closing brace. */
static int
scan_object(const char *p, const char *end, struct jmember *out, int max, const char **after)
{
	int n = 0;

	p = skip_ws(p, end);
	if (p >= end || *p != '{')
		return -1;
	p = skip_ws(p + 1, end);
	if (p < end && *p == '}') {
		*after = p + 1;
		return 0;
	}
	while (p < end) {
		const char *k, *v;

		if (*p != '"' || n >= max)
			return -1;
		k = p + 1;
		p = plain_run(k, end);	/* a key: plain bytes to its quote, no escape */
		if (p >= end || *p != '"')
			return -1;
		out[n].key = k;
		out[n].klen = (size_t)(p - k);
		p = skip_ws(p + 1, end);
		if (p >= end || *p != ':')
			return -1;
		v = skip_ws(p + 1, end);
		if (v >= end)
			return -1;
		p = skip_scalar_or_value(v, end);
		if (!p || p == v)
			return -1;
		out[n].val = v;
		out[n].vlen = (size_t)(p - v);
		n++;
		p = skip_ws(p, end);
		if (p < end && *p == '}') {
			*after = p + 1;
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
	const char *after;

	return scan_object(text, text + len, out, max, &after);
}

int
jscan_key_is(const struct jmember *m, const char *name)
{
	return strlen(name) == m->klen && memcmp(m->key, name, m->klen) == 0;
}

int
jscan_array(struct jarray *a, const char *text, size_t len)
{
	const char *end = text + len, *p = skip_ws(text, end);

	if (p >= end || *p != '[')
		return -1;
	a->end = end;
	a->p = skip_ws(p + 1, end);
	a->done = a->p < end && *a->p == ']';
	return 0;
}

/* The next element: *val, *vlen; an object's members too when out is
 * given (*n: their number, -1 when not an object). */
static int
array_next(struct jarray *a, const char **val, size_t *vlen, struct jmember *out, int max, int *n)
{
	const char *v = a->p, *q;

	if (a->done)
		return a->done > 0 ? 0 : -1;
	a->done = -1;		/* until this element proves well formed */
	if (v >= a->end)
		return -1;
	if (out && *v == '{') {
		if ((*n = scan_object(v, a->end, out, max, &q)) < 0)
			return -1;
	} else {
		if (n)
			*n = -1;
		if (!(q = skip_scalar_or_value(v, a->end)) || q == v)
			return -1;
	}
	*val = v;
	*vlen = (size_t)(q - v);
	q = skip_ws(q, a->end);
	if (q >= a->end || (*q != ',' && *q != ']'))
		return -1;
	a->done = *q == ']';
	a->p = skip_ws(q + 1, a->end);
	return 1;
}

int
jscan_array_next(struct jarray *a, const char **val, size_t *vlen)
{
	return array_next(a, val, vlen, NULL, 0, NULL);
}

int
jscan_array_next_members(struct jarray *a, const char **val, size_t *vlen, struct jmember *out, int max, int *n)
{
	return array_next(a, val, vlen, out, max, n);
}

int
jscan_array_count(const char *text, size_t len)
{
	struct jarray a;
	const char *v;
	size_t vlen;
	int n = 0, rc;

	if (jscan_array(&a, text, len) < 0)
		return -1;
	while ((rc = jscan_array_next(&a, &v, &vlen)) > 0)
		n++;
	return rc < 0 ? -1 : n;
}

/* Appends the UTF-8 bytes of code point cp (below 0x110000) at out[*n]
 * while they fit under cap - 1; counts them all. */
static void
put_utf8(char *out, size_t cap, size_t *n, long cp)
{
	char u[4];
	size_t k = (size_t)(utf8_put(u, (unsigned)cp) - u);

	for (size_t i = 0; i < k; i++, (*n)++)
		if (*n + 1 < cap)
			out[*n] = u[i];
}

long
jscan_cstring(const char *val, size_t vlen, char *out, size_t cap)
{
	const char *p = val, *end = val + vlen;
	size_t n = 0;
	long cp;
	int elen;

	if (vlen < 2 || *p != '"')
		return -1;
	for (p++;;) {
		const char *r = plain_run(p, end);

		if (n + 1 < cap)
			memcpy(out + n, p, (size_t)(r - p) < cap - 1 - n ? (size_t)(r - p) : cap - 1 - n);
		n += (size_t)(r - p);
		p = r;
		if (p >= end || (unsigned char)*p < 0x20)
			return -1;
		if (*p == '"')
			break;
		if (end - p < 2)
			return -1;
		if (p[1] == 'u') {
			if ((cp = utf8_u_escape(p, end, &elen)) < 0)
				return -1;
			if (cp == 0)
				break;	/* where C's view of the string ends */
			put_utf8(out, cap, &n, cp);
			p += elen;
			continue;
		}
		switch (p[1]) {
		case '"': case '\\': case '/': cp = p[1]; break;
		case 'b': cp = '\b'; break;
		case 'f': cp = '\f'; break;
		case 'n': cp = '\n'; break;
		case 'r': cp = '\r'; break;
		case 't': cp = '\t'; break;
		default: return -1;
		}
		put_utf8(out, cap, &n, cp);
		p += 2;
	}
	if (cap)
		out[n < cap ? n : cap - 1] = '\0';
	return (long)n;
}

int
jscan_number(const char *val, size_t vlen, double *out)
{
	const char *p = val, *end = val + vlen;
	char buf[JSCAN_NUMBER_MAX + 1];
	int64_t v = 0;

	if (skip_number(val, end) != end)
		return -1;
	p += *p == '-';
	if (end - p <= 15 && skip_digits(p, end) == end) {	/* an integer, exact in a double */
		for (; p < end; p++)
			v = v * 10 + (*p - '0');
		*out = *val == '-' ? -(double)v : (double)v;
		return 0;
	}
	if (vlen > JSCAN_NUMBER_MAX)
		return -1;
	memcpy(buf, val, vlen);
	buf[vlen] = '\0';
	*out = strtod(buf, NULL);	/* as cJSON reads numbers */
	return 0;
}
