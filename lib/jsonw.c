/*
 * jsonw: hand-written JSON text (see jsonw.h).
 */
#include "jsonw.h"

#include <stdlib.h>
#include <string.h>

void
jsonw_reserve(struct jsonw *w, size_t n)
{
	size_t cap;
	char *q;

	if (w->oom || w->len + n + 1 <= w->cap)
		return;
	for (cap = w->cap ? w->cap : 512; cap < w->len + n + 1; cap *= 2)
		;
	if (!(q = realloc(w->p, cap))) {
		w->oom = 1;
		return;
	}
	w->p = q;
	w->cap = cap;
}

void
jsonw_add_grow(struct jsonw *w, const char *s, size_t n)
{
	jsonw_reserve(w, n);
	if (w->oom)
		return;
	memcpy(w->p + w->len, s, n);
	w->len += n;
	w->p[w->len] = '\0';
}

void
jsonw_int(struct jsonw *w, int64_t v)
{
	char tmp[24], *q = tmp + sizeof(tmp);
	uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;

	do {
		*--q = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (v < 0)
		*--q = '-';
	jsonw_add(w, q, (size_t)(tmp + sizeof(tmp) - q));
}

void
jsonw_string(struct jsonw *w, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	const char *run = s;

	JSONW_LIT(w, "\"");
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		char esc[6] = { '\\', 0, '0', '0', 0, 0 };
		size_t n = 2;

		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		jsonw_add(w, run, (size_t)(s - run));
		switch (c) {
		case '"': esc[1] = '"'; break;
		case '\\': esc[1] = '\\'; break;
		case '\b': esc[1] = 'b'; break;
		case '\f': esc[1] = 'f'; break;
		case '\n': esc[1] = 'n'; break;
		case '\r': esc[1] = 'r'; break;
		case '\t': esc[1] = 't'; break;
		default:
			esc[1] = 'u';
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 15];
			n = 6;
		}
		jsonw_add(w, esc, n);
		run = s + 1;
	}
	jsonw_add(w, run, (size_t)(s - run));
	JSONW_LIT(w, "\"");
}
