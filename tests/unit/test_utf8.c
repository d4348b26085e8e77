/*
 * utf8: the one validator (lib/utf8.c) and the repair the router and
 * billing make of text that is not UTF-8.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "utf8.h"

static const struct { const char *s; int ok; } cases[] = {
	{ "plain ascii", 1 },
	{ "caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80", 1 },	/* é, 中文, an emoji */
	{ "\xef\xbf\xbd \xf4\x8f\xbf\xbf \xed\x9f\xbf \xee\x80\x80", 1 },	/* U+FFFD, U+10FFFF, U+D7FF, U+E000 */
	{ "\xc3", 0 },						/* truncated */
	{ "\xe4\xb8", 0 },					/* a 3-byte character cut */
	{ "\xc3\x28", 0 },					/* bad continuation */
	{ "\xc0\xaf", 0 },					/* overlong '/' */
	{ "\xc1\xbf", 0 },					/* overlong */
	{ "\xe0\x80\xaf", 0 },					/* overlong */
	{ "\xe0\x9f\xbf", 0 },					/* overlong U+07FF */
	{ "\xf0\x80\x80\xaf", 0 },				/* overlong */
	{ "\xf0\x8f\xbf\xbf", 0 },				/* overlong U+FFFF */
	{ "\xed\xa0\x80", 0 },					/* a surrogate */
	{ "\xed\xbf\xbf", 0 },
	{ "\xf4\x90\x80\x80", 0 },				/* beyond U+10FFFF */
	{ "\xf5\x80\x80", 0 },					/* lead 0xF5: no character */
	{ "\xf5\x80\x80\x80", 0 },
	{ "\xf7\xbf\xbf\xbf", 0 },
	{ "\xf8\x88\x80\x80\x80", 0 },
	{ "\xfe", 0 },
	{ "\xff", 0 },
	{ "abc\x80", 0 },
	{ "abcdefgh\x80 long ascii first", 0 },		/* after the 8-byte run */
};

static void
test_valid(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *s = cases[i].s;

		assert_int_equal(utf8_valid(s, strlen(s)), cases[i].ok);
		/* what it says of the first character agrees */
		if (!cases[i].ok && strlen(s) < 6)
			assert_int_equal(utf8_char_len((const unsigned char *)s, strlen(s)) == strlen(s), 0);
	}
	assert_int_equal(utf8_valid("a\0b", 3), 1);
	assert_int_equal(utf8_valid("", 0), 1);
}

/* Every invalid byte becomes U+FFFD; the result is always valid. */
static void
test_sanitize(void **state)
{
	char out[64];
	size_t n;

	(void)state;
	n = utf8_sanitize(out, sizeof(out), "\xf5\x80\x80", 3);
	assert_int_equal(n, 9);
	assert_memory_equal(out, UTF8_REPLACEMENT UTF8_REPLACEMENT UTF8_REPLACEMENT, 9);
	n = utf8_sanitize(out, sizeof(out), "a\xc0\xafz", 4);	/* overlong: two bytes replaced */
	assert_int_equal(n, 8);
	assert_memory_equal(out, "a" UTF8_REPLACEMENT UTF8_REPLACEMENT "z", 8);
	n = utf8_sanitize(out, sizeof(out), "\xe4\xb8\xad\xe4\xb8", 5);	/* 中 and a cut one */
	assert_int_equal(n, 9);
	assert_memory_equal(out, "\xe4\xb8\xad" UTF8_REPLACEMENT UTF8_REPLACEMENT, 9);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		n = utf8_sanitize(out, sizeof(out), cases[i].s, strlen(cases[i].s));
		assert_int_equal(utf8_valid(out, n), 1);
		if (cases[i].ok)
			assert_memory_equal(out, cases[i].s, strlen(cases[i].s));
	}
}

/* Bounded: whole characters only (the router's 200-byte X-Title). */
static void
test_cut(void **state)
{
	char out[16];

	(void)state;
	/* 中文中文 is 12 bytes: 10 hold three characters, not three and a third */
	assert_int_equal(utf8_sanitize(out, 10, "\xe4\xb8\xad\xe6\x96\x87\xe4\xb8\xad\xe6\x96\x87", 12), 9);
	assert_int_equal(utf8_sanitize(out, 2, "\xff", 1), 0);		/* U+FFFD does not fit */
	assert_int_equal(utf8_sanitize(out, 3, "\xffz", 2), 3);
	assert_int_equal(utf8_sanitize(out, 0, "a", 1), 0);
}

static void
test_put_hex(void **state)
{
	char out[4];
	unsigned v;

	(void)state;
	assert_int_equal(utf8_put(out, 0x1F600) - out, 4);
	assert_memory_equal(out, "\xf0\x9f\x98\x80", 4);
	assert_int_equal(utf8_put(out, 0xE9) - out, 2);
	assert_memory_equal(out, "\xc3\xa9", 2);
	assert_int_equal(utf8_hex4("00aF", &v), 0);
	assert_int_equal(v, 0xAF);
	assert_int_equal(utf8_hex4("00g0", &v), -1);
}

/* \u escapes as JSON reads them: a code point, a surrogate pair whole,
 * lone surrogates told apart from malformed escapes. */
static long
esc(const char *s, int *len)
{
	*len = 0;
	return utf8_u_escape(s, s + strlen(s), len);
}

static void
test_u_escape(void **state)
{
	int len;

	(void)state;
	assert_int_equal(esc("\\u00e9x", &len), 0xE9);
	assert_int_equal(len, 6);
	assert_int_equal(esc("\\u0000", &len), 0);
	assert_int_equal(esc("\\uD83D\\uDE00", &len), 0x1F600);
	assert_int_equal(len, 12);
	assert_int_equal(esc("\\ud83d\\ude00", &len), 0x1F600);
	assert_int_equal(esc("\\uDE00\\uD83D", &len), UTF8_LONE_SURROGATE);	/* low first */
	assert_int_equal(len, 6);
	assert_int_equal(esc("\\uD83Dx", &len), UTF8_LONE_SURROGATE);		/* high alone */
	assert_int_equal(esc("\\uD83D\\u0041", &len), UTF8_LONE_SURROGATE);	/* high, not low */
	assert_int_equal(len, 6);
	assert_int_equal(esc("\\uD83D\\uDE0", &len), UTF8_LONE_SURROGATE);	/* pair cut short */
	assert_int_equal(esc("\\u00g9", &len), -1);
	assert_int_equal(esc("\\u00e", &len), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_u_escape),
		cmocka_unit_test(test_valid),
		cmocka_unit_test(test_sanitize),
		cmocka_unit_test(test_cut),
		cmocka_unit_test(test_put_hex),
	};

	return cmocka_run_group_tests_name("utf8", tests, NULL, NULL);
}
