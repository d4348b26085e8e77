/*
 * jscan: the members of a JSON object as spans of its text, without
 * building a tree. The router rewrites bodies and stream events by copying
 * the members it keeps verbatim and printing only the few it changes
 * (cJSON's printer formats every number with sprintf and checks it back
 * with sscanf: most of a request's CPU time before; README "Performance").
 *
 * Values are checked as strict JSON while skipped, and whatever jscan
 * accepts cJSON accepts too (surrogates in pairs, nesting within cJSON's
 * limit): the stream path reads provider events through jscan alone and
 * takes its cJSON path only for what jscan refuses. A key holding a
 * backslash escape is refused, so that a caller comparing raw keys
 * ("mod\u0065l") can never disagree with cJSON, which compares decoded
 * keys: the caller then takes its cJSON path.
 */
#ifndef AGORA_JSCAN_H
#define AGORA_JSCAN_H

#include <stddef.h>

struct jmember {
	const char *key;	/* the key's text, without quotes */
	size_t klen;
	const char *val;	/* the value's text, as written */
	size_t vlen;
};

/* Fills out[] with the members of the object at text[0..len) (leading
 * whitespace allowed). Returns their number, or -1: not an object, more
 * than max members, a key with an escape, or malformed text. */
int jscan_object(const char *text, size_t len, struct jmember *out, int max);

/* 1 when a member's key is name. */
int jscan_key_is(const struct jmember *m, const char *name);

/* The elements of the array at text[0..len), one at a time, as spans. */
struct jarray {
	const char *p, *end;
	int done;		/* 1: past the last element; -1: malformed */
};

/* 0, or -1 when text is not an array. */
int jscan_array(struct jarray *a, const char *text, size_t len);
/* The next element's text: 1, 0 past the last one, -1 malformed text. */
int jscan_array_next(struct jarray *a, const char **val, size_t *vlen);
/* jscan_array_next(), and when the element is an object its members as
 * jscan_object() gives them, in one pass: *n their number, or -1 when the
 * element is not an object. -1 also past max members. */
int jscan_array_next_members(struct jarray *a, const char **val, size_t *vlen, struct jmember *out, int max,
			     int *n);
/* The number of elements of the array at text[0..len), or -1. */
int jscan_array_count(const char *text, size_t len);

/* The string value val[0..vlen) (with its quotes) decoded, as C reads
 * cJSON's valuestring: up to its first NUL (a \u0000). Writes at most
 * cap - 1 bytes and a NUL to out (nothing when cap is 0) and returns the
 * whole decoded length in bytes, or -1: not a string, a bad escape. */
long jscan_cstring(const char *val, size_t vlen, char *out, size_t cap);

/* Longest number jscan_number reads (cJSON reads any; the caller takes its
 * cJSON path past this). */
#define JSCAN_NUMBER_MAX 63

/* The number value val[0..vlen) as cJSON reads it (strtod); 0, or -1: not
 * a number, or longer than JSCAN_NUMBER_MAX. */
int jscan_number(const char *val, size_t vlen, double *out);

#endif
