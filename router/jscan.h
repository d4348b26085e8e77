/*
 * jscan: the members of a JSON object as spans of its text, without
 * building a tree. The router rewrites bodies and stream events by copying
 * the members it keeps verbatim and printing only the few it changes
 * (cJSON's printer formats every number with sprintf and checks it back
 * with sscanf: most of a request's CPU time before; README "Performance").
 *
 * Only for text that cJSON already parsed (valid JSON): values are skipped,
 * not validated. A key holding a backslash escape is refused, so that a
 * caller comparing raw keys ("mod\u0065l") can never disagree with cJSON,
 * which compares decoded keys: the caller then takes its cJSON path.
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

/* Calls fn with the members of each element of the array at text[0..len),
 * in one pass: every element must be an object jscan_object would read
 * (out: room for max members). Returns the number of elements, or -1: not
 * such an array, malformed, or fn returned -1. */
int jscan_array_objects(const char *text, size_t len, struct jmember *out, int max,
			int (*fn)(void *arg, const struct jmember *m, int n), void *arg);

/* 1 when a member's key is name. */
int jscan_key_is(const struct jmember *m, const char *name);

#endif
