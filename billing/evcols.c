/*
 * evcols: usage events as PostgreSQL binary arrays (see evcols.h).
 *
 * Array format (array_recv): int32 ndim, int32 has-nulls, oid element type,
 * per dimension int32 length and int32 lower bound, then per element int32
 * byte length (-1: NULL) and the element's binary form (int8/int4 big
 * endian, bool one byte, text its UTF-8 bytes).
 */
#include "evcols.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"

enum kind { K_TEXT, K_INT8, K_INT4, K_BOOL, K_JSON };

/* The event's members, in enum evcol order; required ones may not be
 * missing or null (their columns are NOT NULL). */
static const struct field {
	const char *name;
	enum kind kind;
	int required;
} fields[EC_N] = {
	{ "id", K_TEXT, 1 },		{ "ts", K_INT8, 1 },		{ "account", K_INT8, 1 },
	{ "key", K_INT8, 1 },		{ "app_url", K_TEXT, 0 },	{ "app_title", K_TEXT, 0 },
	{ "model", K_TEXT, 1 },		{ "author", K_TEXT, 1 },	{ "provider", K_TEXT, 1 },
	{ "endpoint", K_INT8, 1 },	{ "pt", K_INT8, 1 },		{ "ct", K_INT8, 1 },
	{ "cached", K_INT8, 0 },	{ "reasoning", K_INT8, 0 },	{ "cost", K_INT8, 1 },
	{ "pcost", K_INT8, 1 },		{ "latency_ms", K_INT4, 1 },	{ "ttft_ms", K_INT4, 1 },
	{ "tps_milli", K_INT8, 1 },	{ "stream", K_BOOL, 1 },	{ "estimated", K_BOOL, 1 },
	{ "status", K_INT4, 1 },	{ "attempts", K_INT4, 1 },	{ "finish", K_TEXT, 0 },
	{ "tried", K_JSON, 0 },
};

/* One column: ARRAY_HEADER bytes left free, filled by evcols_params, then
 * the elements. (Plain buffers: an evbuffer_add per element cost billing
 * more than the parse.) */
struct colbuf {
	unsigned char *p;
	size_t len, cap;
};

struct evcols {
	struct colbuf col[EC_N];
	int hasnull[EC_N];
	int n;
	int hint;			/* the field expected next (the router's order) */
	char *scratch;			/* decoded strings of the event being read */
	size_t scap;
};

/* One member's value once read: a text span (decoded), or an integer. */
struct val {
	int present;			/* 0: missing or null */
	const char *p;
	size_t len;
	int64_t i;
};

struct scan {
	const char *s, *end;
	char *out;			/* next free byte of the scratch */
	int raw;			/* in a value passed on as JSON (tried) */
};

static void
ws(struct scan *sc)
{
	while (sc->s < sc->end && (*sc->s == ' ' || *sc->s == '\t' || *sc->s == '\n' || *sc->s == '\r'))
		sc->s++;
}

/* The \u escape at sc->s, past it: its code point; U+FFFD for a lone
 * surrogate or \u0000 (PostgreSQL's text holds neither) unless raw (then
 * -1, as for a malformed escape). */
static long
u_escape(struct scan *sc)
{
	int len;
	long cp = utf8_u_escape(sc->s, sc->end, &len);

	if (cp == -1)
		return -1;
	sc->s += len;
	if (cp == 0 || cp == UTF8_LONE_SURROGATE)
		return sc->raw ? -1 : 0xFFFD;
	return cp;
}

/* An escape after the backslash at sc->s: appended decoded. -1 when bad. */
static int
unescape(struct scan *sc)
{
	static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
	const char *e;
	long cp;

	if (sc->end - sc->s < 2)
		return -1;
	if (sc->s[1] != 'u') {
		if (!sc->s[1] || !(e = strchr(from, sc->s[1])))
			return -1;
		*sc->out++ = to[e - from];
		sc->s += 2;
		return 0;
	}
	if ((cp = u_escape(sc)) < 0)
		return -1;
	sc->out = utf8_put(sc->out, (unsigned)cp);
	return 0;
}

/* Starts copying the string begun at start into the scratch (at o): from
 * its first escape or invalid byte on, its text is decoded there. */
static void
decode_from(struct scan *sc, const char *start, char *o, int *decoding)
{
	if (*decoding)
		return;
	memcpy(o, start, (size_t)(sc->s - start));
	sc->out = o + (sc->s - start);
	*decoding = 1;
}

/* A string at sc->s (its opening quote): v spans its decoded text in the
 * scratch, or its raw text when it has no escape. A byte that starts no
 * well-formed UTF-8 character becomes U+FFFD: an event is never refused
 * for its text's encoding (a client's X-Title, cut or not UTF-8 at all,
 * would otherwise cost a generation its bill, or, passed on, make
 * PostgreSQL refuse the whole batch). */
static int
string(struct scan *sc, struct val *v)
{
	const char *start = ++sc->s;
	char *o = sc->out;
	int decoding = 0;

	while (sc->s < sc->end && *sc->s != '"') {
		unsigned char c = (unsigned char)*sc->s;
		size_t n = 1;

		if (c < 0x20)
			return -1;
		if (c == '\\') {
			decode_from(sc, start, o, &decoding);
			if (unescape(sc) < 0)
				return -1;
			continue;
		}
		if (c >= 0x80 && !(n = utf8_char_len((const unsigned char *)sc->s, (size_t)(sc->end - sc->s)))) {
			decode_from(sc, start, o, &decoding);
			memcpy(sc->out, UTF8_REPLACEMENT, 3);
			sc->out += 3;
			sc->s++;
			continue;
		}
		if (decoding) {
			memcpy(sc->out, sc->s, n);
			sc->out += n;
		}
		sc->s += n;
	}
	if (sc->s >= sc->end)
		return -1;
	v->p = decoding ? o : start;
	v->len = decoding ? (size_t)(sc->out - o) : (size_t)(sc->s - start);
	if (!decoding)
		sc->out = o;
	sc->s++;
	v->present = 1;
	return 0;
}

/* An integer (JSON number without fraction or exponent) within [lo, hi]. */
static int
integer(struct scan *sc, struct val *v, int64_t lo, int64_t hi)
{
	int neg = sc->s < sc->end && *sc->s == '-';
	const char *d = sc->s + neg;
	uint64_t x = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;

	if (d >= sc->end || *d < '0' || *d > '9' || (*d == '0' && d + 1 < sc->end && d[1] >= '0' && d[1] <= '9'))
		return -1;
	for (; d < sc->end && *d >= '0' && *d <= '9'; d++) {
		if (x > (lim - (uint64_t)(*d - '0')) / 10)
			return -1;
		x = x * 10 + (uint64_t)(*d - '0');
	}
	if (d < sc->end && (*d == '.' || *d == 'e' || *d == 'E'))
		return -1;
	v->i = neg ? (int64_t)(0 - x) : (int64_t)x;
	if (v->i < lo || v->i > hi)
		return -1;
	sc->s = d;
	v->present = 1;
	return 0;
}

static int
word(struct scan *sc, const char *w)
{
	size_t n = strlen(w);

	if ((size_t)(sc->end - sc->s) < n || memcmp(sc->s, w, n) != 0)
		return -1;
	sc->s += n;
	return 0;
}

/* Skips any value (nested arrays and objects too); strict enough for a
 * value PostgreSQL checks again (tried, cast to jsonb) or ignores. */
static int
skip_value(struct scan *sc)
{
	int depth = 0;
	struct val v;
	char *keep = sc->out;

	do {
		ws(sc);
		if (sc->s >= sc->end)
			return -1;
		switch (*sc->s) {
		case '[': case '{':
			depth++;
			sc->s++;
			continue;
		case ']': case '}':
			if (--depth < 0)
				return -1;
			sc->s++;
			break;
		case ',': case ':':
			if (depth == 0)
				return -1;
			sc->s++;
			continue;
		case '"':
			if (string(sc, &v) < 0)
				return -1;
			sc->out = keep;	/* nothing of it is kept */
			break;
		case 't':
			if (word(sc, "true") < 0)
				return -1;
			break;
		case 'f':
			if (word(sc, "false") < 0)
				return -1;
			break;
		case 'n':
			if (word(sc, "null") < 0)
				return -1;
			break;
		default: {	/* a number */
			const char *st = sc->s;

			while (sc->s < sc->end && *sc->s && strchr("0123456789+-.eE", *sc->s))
				sc->s++;
			if (sc->s == st)
				return -1;
			break;
		}
		}
	} while (depth > 0);
	return 0;
}

/* A value passed on as JSON text (tried, cast to jsonb): its raw span, or
 * when it holds bytes that are not UTF-8, a copy with U+FFFD for them (in
 * its strings: JSON's structure is ASCII). */
static int
json_value(struct scan *sc, struct val *v)
{
	const char *start = sc->s;
	int rc;

	sc->raw = 1;
	rc = skip_value(sc);
	sc->raw = 0;
	if (rc < 0)
		return -1;
	v->p = start;
	v->len = (size_t)(sc->s - start);
	if (!utf8_valid(start, v->len)) {
		v->len = utf8_sanitize(sc->out, 3 * v->len, start, v->len);
		v->p = sc->out;
		sc->out += v->len;
	}
	v->present = 1;
	return 0;
}

/* One member's value into v, as its field wants it. */
static int
value(struct scan *sc, const struct field *f, struct val *v)
{
	v->present = 0;
	if (word(sc, "null") == 0)
		return 0;
	switch (f->kind) {
	case K_TEXT:
		return sc->s < sc->end && *sc->s == '"' ? string(sc, v) : -1;
	case K_INT8:
		return integer(sc, v, INT64_MIN, INT64_MAX);
	case K_INT4:
		return integer(sc, v, INT32_MIN, INT32_MAX);
	case K_BOOL:
		v->i = word(sc, "true") == 0;
		if (!v->i && word(sc, "false") < 0)
			return -1;
		v->present = 1;
		return 0;
	case K_JSON:	/* an array or null (jsonb_array_elements reads it) */
		return sc->s < sc->end && *sc->s == '[' ? json_value(sc, v) : -1;
	}
	return -1;
}

static int
field_is(int i, const char *k, size_t len)
{
	return strncmp(fields[i].name, k, len) == 0 && fields[i].name[len] == '\0';
}

/* The field named k: the one after the last found first (the router writes
 * them in order), else a search. */
static int
field_of(struct evcols *c, const char *k, size_t len)
{
	int i = c->hint;

	if (i >= EC_N || !field_is(i, k, len))
		for (i = 0; i < EC_N && !field_is(i, k, len); i++)
			;
	if (i == EC_N)
		return -1;
	c->hint = i + 1;
	return i;
}

/* The object's members into vals[] (the last one wins when a key repeats,
 * as json_to_recordset did). */
static int
parse(struct evcols *c, struct scan *sc, struct val vals[EC_N])
{
	struct val k;

	ws(sc);
	if (sc->s >= sc->end || *sc->s++ != '{')
		return -1;
	ws(sc);
	if (sc->s < sc->end && *sc->s == '}') {
		sc->s++;
		goto done;
	}
	for (;;) {
		char *keep = sc->out;
		int f;

		ws(sc);
		if (sc->s >= sc->end || *sc->s != '"' || string(sc, &k) < 0)
			return -1;
		f = field_of(c, k.p, k.len);
		sc->out = keep;		/* a decoded key is not kept */
		ws(sc);
		if (sc->s >= sc->end || *sc->s++ != ':')
			return -1;
		ws(sc);
		if ((f >= 0 ? value(sc, &fields[f], &vals[f]) : skip_value(sc)) < 0)
			return -1;
		ws(sc);
		if (sc->s < sc->end && *sc->s == ',') {
			sc->s++;
			continue;
		}
		if (sc->s < sc->end && *sc->s == '}') {
			sc->s++;
			break;
		}
		return -1;
	}
done:
	ws(sc);
	return sc->s == sc->end ? 0 : -1;
}

/* Room for n more bytes in b. */
static int
col_reserve(struct colbuf *b, size_t n)
{
	size_t cap = b->cap ? b->cap : 4096;
	unsigned char *p;

	if (b->len + n <= b->cap)
		return 0;
	while (cap < b->len + n)
		cap *= 2;
	if (!(p = realloc(b->p, cap)))
		return -1;
	b->p = p;
	b->cap = cap;
	return 0;
}

static void
be(unsigned char *o, uint64_t v, int width)
{
	for (int i = 0; i < width; i++)
		o[i] = (unsigned char)(v >> (8 * (width - 1 - i)));
}

/* One element of column i (room reserved by the caller). */
static void
put(struct evcols *c, int i, const struct val *v)
{
	struct colbuf *b = &c->col[i];
	enum kind k = fields[i].kind;
	int width = k == K_INT8 ? 8 : k == K_INT4 ? 4 : k == K_BOOL ? 1 : -1;

	if (!v->present) {
		c->hasnull[i] = 1;
		be(b->p + b->len, UINT32_MAX, 4);	/* -1: NULL */
		b->len += 4;
	} else if (width > 0) {
		be(b->p + b->len, (uint32_t)width, 4);
		be(b->p + b->len + 4, (uint64_t)v->i, width);
		b->len += 4 + (size_t)width;
	} else {
		be(b->p + b->len, (uint32_t)v->len, 4);
		memcpy(b->p + b->len + 4, v->p, v->len);
		b->len += 4 + v->len;
	}
}

int
evcols_add(struct evcols *c, const char *json, size_t len)
{
	struct val vals[EC_N];
	struct scan sc = { json, json + len, NULL, 0 };
	/* decoded text is never longer than its JSON, but for U+FFFD (3 bytes)
	 * in place of an invalid byte */
	size_t need = 3 * len + 1;

	if (len > INT32_MAX)
		return -1;
	if (need > c->scap) {
		char *p = realloc(c->scratch, need);

		if (!p)
			return -2;
		c->scratch = p;
		c->scap = need;
	}
	sc.out = c->scratch;
	memset(vals, 0, sizeof(vals));
	c->hint = 0;
	if (parse(c, &sc, vals) < 0)
		return -1;
	for (int i = 0; i < EC_N; i++)
		if (fields[i].required && !vals[i].present)
			return -1;
	for (int i = 0; i < EC_N; i++)	/* the event whole or not at all */
		if (col_reserve(&c->col[i], 12 + vals[i].len) < 0)
			return -2;
	for (int i = 0; i < EC_N; i++)
		put(c, i, &vals[i]);
	c->n++;
	return 0;
}

int
evcols_count(const struct evcols *c)
{
	return c->n;
}

void
evcols_mark(const struct evcols *c, struct evcols_mark *m)
{
	m->n = c->n;
	for (int i = 0; i < EC_N; i++) {
		m->len[i] = c->col[i].len;
		m->hasnull[i] = c->hasnull[i];
	}
}

void
evcols_rollback(struct evcols *c, const struct evcols_mark *m)
{
	c->n = m->n;
	for (int i = 0; i < EC_N; i++) {
		c->col[i].len = m->len[i];
		c->hasnull[i] = m->hasnull[i];
	}
}

int
evcols_params(struct evcols *c, const char *values[EC_N], int lengths[EC_N])
{
	for (int i = 0; i < EC_N; i++) {
		struct colbuf *b = &c->col[i];
		enum kind k = fields[i].kind;
		uint32_t oid = k == K_INT8 ? OID_INT8 : k == K_INT4 ? OID_INT4 : k == K_BOOL ? OID_BOOL : OID_TEXT;
		/* no elements: ndim 0 and no dimension, the header's last 8 bytes unused */
		size_t off = c->n ? 0 : 8;

		if (b->len > INT32_MAX)
			return -1;
		be(b->p + off, c->n ? 1 : 0, 4);
		be(b->p + off + 4, (uint32_t)c->hasnull[i], 4);
		be(b->p + off + 8, oid, 4);
		if (c->n) {
			be(b->p + 12, (uint32_t)c->n, 4);
			be(b->p + 16, 1, 4);		/* lower bound */
		}
		values[i] = (const char *)b->p + off;
		lengths[i] = (int)(b->len - off);
	}
	return 0;
}

void
evcols_reset(struct evcols *c)
{
	for (int i = 0; i < EC_N; i++) {
		c->col[i].len = ARRAY_HEADER;
		c->hasnull[i] = 0;
	}
	c->n = 0;
}

struct evcols *
evcols_new(void)
{
	struct evcols *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	for (int i = 0; i < EC_N; i++) {
		if (col_reserve(&c->col[i], ARRAY_HEADER) < 0) {
			evcols_free(c);
			return NULL;
		}
		c->col[i].len = ARRAY_HEADER;
	}
	return c;
}

void
evcols_free(struct evcols *c)
{
	if (!c)
		return;
	for (int i = 0; i < EC_N; i++)
		free(c->col[i].p);
	free(c->scratch);
	free(c);
}
