/*
 * utf8: one UTF-8 validator for every process. What PostgreSQL's text (and
 * the clients' JSON) accepts: no overlong forms, no surrogates, nothing
 * beyond U+10FFFF, no lead byte 0xC0, 0xC1 or 0xF5-0xFF.
 */
#ifndef AGORA_UTF8_H
#define AGORA_UTF8_H

#include <stddef.h>

/* U+FFFD REPLACEMENT CHARACTER, what an invalid byte becomes. */
#define UTF8_REPLACEMENT "\xEF\xBF\xBD"

/* Length (1-4) of the well-formed character at p, of which avail (> 0)
 * bytes are readable; 0 when p starts none (or it is cut short). */
size_t utf8_char_len(const unsigned char *p, size_t avail);
/* 1 when s[0..n) is well-formed UTF-8. */
int utf8_valid(const char *s, size_t n);
/* Copies s[0..n) to dst as well-formed UTF-8: each byte that starts no
 * well-formed character becomes U+FFFD; whole characters only, at most cap
 * bytes (cap >= 3 * n takes all of s). No NUL is added. Returns the bytes
 * written. */
size_t utf8_sanitize(char *dst, size_t cap, const char *s, size_t n);
/* Code point cp (below 0x110000, no surrogate) as UTF-8 at o (room for 4);
 * returns the byte after it. */
char *utf8_put(char *o, unsigned cp);
/* The four hex digits at p (which has 4 readable bytes) into *v; 0, or -1. */
int utf8_hex4(const char *p, unsigned *v);
/* The JSON \u escape at p (its backslash; end: the text's end): its code
 * point, a UTF-16 surrogate pair taken whole, *len its bytes (6 or 12).
 * UTF8_LONE_SURROGATE (*len 6): a low surrogate, or a high one not followed
 * by a low one (cJSON refuses the text; a reader may substitute U+FFFD);
 * -1: not four hex digits. */
#define UTF8_LONE_SURROGATE (-2L)
long utf8_u_escape(const char *p, const char *end, int *len);

#endif
