/*
 * qparam: reading one parameter of a URL query string ("a=1&b=x%20y"),
 * percent- and '+'-decoded. The analytics' request parsing builds on it.
 */
#ifndef AGORA_QPARAM_H
#define AGORA_QPARAM_H

#include <stddef.h>
#include <stdint.h>

/* Finds `name` in `query` (without the '?') and decodes its value into buf.
 * Returns 1 when present, 0 when absent, -1 when the value is malformed (a
 * bad %XX escape, a NUL byte, control characters) or longer than len - 1. */
int qparam_get(const char *query, const char *name, char *buf, size_t len);

/* A decimal integer in [min, max] (whole string). 0 or -1. */
int qparam_int(const char *s, int64_t min, int64_t max, int64_t *out);

#endif
