/*
 * jsonw: a growable text buffer for writing JSON by hand on the hot path
 * (usage events, spliced answers and stream events), where cJSON's printer
 * (sprintf/sscanf per number) costs too much. Strings are escaped exactly as
 * cJSON escapes them, so text written here and text cJSON prints agree.
 * A failed allocation sets oom; the text is then unusable.
 */
#ifndef AGORA_JSONW_H
#define AGORA_JSONW_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct jsonw {
	char *p;		/* NUL-terminated; free() it */
	size_t len, cap;
	int oom;
};

/* Makes room for n more bytes (and the NUL). */
void jsonw_reserve(struct jsonw *w, size_t n);
/* jsonw_add when the room has to grow (or the buffer is unusable). */
void jsonw_add_grow(struct jsonw *w, const char *s, size_t n);

/* Appends n bytes. Inline: the hot paths call it a few dozen times an
 * answer, mostly for a few bytes into room reserved up front. Once oom is
 * set the text is unusable; bytes may still land in the room it has. */
static inline void
jsonw_add(struct jsonw *w, const char *s, size_t n)
{
	if (w->len + n + 1 > w->cap) {
		jsonw_add_grow(w, s, n);
		return;
	}
	memcpy(w->p + w->len, s, n);
	w->len += n;
	w->p[w->len] = '\0';
}

#define JSONW_LIT(w, lit) jsonw_add((w), (lit), sizeof(lit) - 1)
/* A decimal integer. */
void jsonw_int(struct jsonw *w, int64_t v);
/* s as a JSON string with its quotes (quote, backslash and control
 * characters escaped; other bytes as they are). */
void jsonw_string(struct jsonw *w, const char *s);

#endif
