/*
 * evcols: usage events read into PostgreSQL binary arrays; what is not a
 * usage event the tables can hold is refused whole.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "evcols.h"

#define EV_HEAD "{\"id\":\"gen-1-abc\",\"ts\":1764120000000,\"account\":7,\"key\":9,"
#define EV_TAIL "\"model\":\"m/x\",\"author\":\"m\",\"provider\":\"p\",\"endpoint\":3,\"pt\":100,\"ct\":-2," \
	"\"cost\":9223372036854775807,\"pcost\":800,\"latency_ms\":900,\"ttft_ms\":200,\"tps_milli\":55000," \
	"\"stream\":true,\"estimated\":false,\"status\":200,\"attempts\":1,\"finish\":\"stop\"}"

static uint32_t
u32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Column i's element e (0-based): its bytes and length (-1: NULL). */
static const unsigned char *
element(const char *arr, int e, int32_t *len)
{
	const unsigned char *p = (const unsigned char *)arr + ARRAY_HEADER;

	for (int i = 0;; i++) {
		*len = (int32_t)u32(p);
		if (i == e)
			return p + 4;
		p += 4 + (*len < 0 ? 0 : *len);
	}
}

static int
add(struct evcols *c, const char *s)
{
	return evcols_add(c, s, strlen(s));
}

static void
test_columns(void **state)
{
	struct evcols *c = evcols_new();
	const char *v[EC_N];
	int len[EC_N];
	int32_t n;
	const unsigned char *p;

	(void)state;
	assert_int_equal(add(c, EV_HEAD "\"app_title\":\"caf\\u00e9 \\ud83d\\ude00\\n\",\"x\":{\"a\":[1,\"]\"]},"
			     "\"tried\":[{\"model\":\"m\",\"endpoint_id\":2}]," EV_TAIL), 0);
	assert_int_equal(add(c, "{\"cached\":null," EV_TAIL), -1);	/* no id */
	assert_int_equal(add(c, EV_HEAD EV_TAIL), 0);
	assert_int_equal(evcols_count(c), 2);
	assert_int_equal(evcols_params(c, v, len), 0);

	assert_int_equal(u32((const unsigned char *)v[EC_TS]), 1);		/* ndim */
	assert_int_equal(u32((const unsigned char *)v[EC_TS] + 8), OID_INT8);
	assert_int_equal(u32((const unsigned char *)v[EC_TS] + 12), 2);	/* elements */
	p = element(v[EC_TS], 1, &n);
	assert_int_equal(n, 8);
	assert_memory_equal(p, "\x00\x00\x01\x9a\xbd\xbe\xf6\x00", 8);	/* 1764120000000 */
	p = element(v[EC_COST], 0, &n);
	assert_memory_equal(p, "\x7f\xff\xff\xff\xff\xff\xff\xff", 8);
	p = element(v[EC_CT], 0, &n);
	assert_memory_equal(p, "\xff\xff\xff\xff\xff\xff\xff\xfe", 8);	/* -2 */
	p = element(v[EC_LATENCY], 0, &n);
	assert_int_equal(n, 4);
	assert_int_equal(u32(p), 900);
	p = element(v[EC_STREAM], 0, &n);
	assert_int_equal(n, 1);
	assert_int_equal(p[0], 1);
	p = element(v[EC_APP_TITLE], 0, &n);
	assert_int_equal(n, 11);
	assert_memory_equal(p, "caf\xc3\xa9 \xf0\x9f\x98\x80\n", 11);
	element(v[EC_APP_TITLE], 1, &n);
	assert_int_equal(n, -1);
	assert_int_equal(u32((const unsigned char *)v[EC_APP_TITLE] + 4), 1);	/* has NULLs */
	assert_int_equal(u32((const unsigned char *)v[EC_ID] + 4), 0);
	p = element(v[EC_TRIED], 0, &n);
	assert_int_equal(n, (int)strlen("[{\"model\":\"m\",\"endpoint_id\":2}]"));
	assert_memory_equal(p, "[{\"model\":\"m\",\"endpoint_id\":2}]", (size_t)n);
	p = element(v[EC_ID], 1, &n);
	assert_memory_equal(p, "gen-1-abc", 9);
	evcols_free(c);
}

/* A stream entry's events go in all or none: a rollback to a mark drops
 * what was added since, NULL flags included, and the arrays stay whole. */
static void
test_mark_rollback(void **state)
{
	struct evcols *c = evcols_new();
	struct evcols_mark m;
	const char *v[EC_N];
	int len[EC_N];
	int32_t n;
	const unsigned char *p;

	(void)state;
	assert_int_equal(add(c, EV_HEAD "\"app_title\":\"kept\"," EV_TAIL), 0);
	evcols_mark(c, &m);
	assert_int_equal(add(c, EV_HEAD EV_TAIL), 0);		/* app_title NULL */
	assert_int_equal(add(c, "{\"id\":\"no-fields\"}"), -1);
	evcols_rollback(c, &m);
	assert_int_equal(evcols_count(c), 1);
	assert_int_equal(add(c, "{\"id\":\"gen-2\",\"ts\":1,\"account\":7,\"key\":9,\"app_title\":\"t2\"," EV_TAIL), 0);
	assert_int_equal(evcols_count(c), 2);
	assert_int_equal(evcols_params(c, v, len), 0);
	assert_int_equal(u32((const unsigned char *)v[EC_APP_TITLE] + 4), 0);	/* no NULL left */
	assert_int_equal(u32((const unsigned char *)v[EC_ID] + 12), 2);
	p = element(v[EC_ID], 1, &n);
	assert_int_equal(n, 5);
	assert_memory_equal(p, "gen-2", 5);
	p = element(v[EC_APP_TITLE], 1, &n);
	assert_int_equal(n, 2);
	assert_memory_equal(p, "t2", 2);
	evcols_free(c);
}

/* The app_title evcols passes on for an event whose title is t. */
static void
title_is(const char *t, const char *want, size_t wlen)
{
	struct evcols *c = evcols_new();
	const char *v[EC_N];
	int len[EC_N];
	int32_t n;
	const unsigned char *p;
	char ev[512];

	snprintf(ev, sizeof(ev), EV_HEAD "\"app_title\":\"%s\"," EV_TAIL, t);
	assert_int_equal(add(c, ev), 0);
	assert_int_equal(evcols_params(c, v, len), 0);
	p = element(v[EC_APP_TITLE], 0, &n);
	assert_int_equal(n, (int32_t)wlen);
	assert_memory_equal(p, want, wlen);
	p = element(v[EC_ID], 0, &n);		/* the columns after it are whole */
	assert_memory_equal(p, "gen-1-abc", 9);
	evcols_free(c);
}

#define R "\xef\xbf\xbd"		/* U+FFFD */

/* Text that is not UTF-8 never costs an event its bill: each byte that
 * starts no well-formed character becomes U+FFFD (PostgreSQL would refuse
 * the batch for it: 22021). */
static void
test_invalid_utf8_replaced(void **state)
{
	(void)state;
	title_is("\xf5\x80\x80", R R R, 9);				/* lead 0xF5: was taken for 3 bytes */
	title_is("x\xf7\xbf\xbf\xbfy", "x" R R R R "y", 14);
	title_is("\xff\xfe", R R, 6);
	title_is("\xe4\xb8\xad\xe6\x96", "\xe4\xb8\xad" R R, 9);	/* a title cut mid-character */
	title_is("\xc3", R, 3);
	title_is("\xc0\xaf\xe0\x80\xaf\xf0\x80\x80\xaf", R R R R R R R R R, 27);	/* overlong forms */
	title_is("\xed\xa0\x80", R R R, 9);				/* an encoded surrogate */
	title_is("\xf4\x90\x80\x80", R R R R, 12);			/* beyond U+10FFFF */
	title_is("\xc3\x28", R "(", 4);
	title_is("a\\u0000b", "a" R "b", 5);				/* text cannot hold NUL */
	title_is("\\ud83d!", R "!", 4);				/* a lone surrogate */
	title_is("\\n\xff\\u00e9\xc3\xa9", "\n" R "\xc3\xa9\xc3\xa9", 8);	/* escapes and bad bytes */
	title_is("\xe4\xb8\xad\xe6\x96\x87", "\xe4\xb8\xad\xe6\x96\x87", 6);	/* valid: as it is */
}

/* tried goes on as JSON text: its bad bytes become U+FFFD too. */
static void
test_tried_invalid_utf8(void **state)
{
	struct evcols *c = evcols_new();
	const char *v[EC_N];
	int len[EC_N];
	int32_t n;
	const unsigned char *p;
	static const char want[] = "[{\"provider\":\"p" R "\",\"endpoint_id\":2}]";

	(void)state;
	assert_int_equal(add(c, EV_HEAD "\"tried\":[{\"provider\":\"p\xf5\",\"endpoint_id\":2}]," EV_TAIL), 0);
	assert_int_equal(evcols_params(c, v, len), 0);
	p = element(v[EC_TRIED], 0, &n);
	assert_int_equal(n, (int32_t)strlen(want));
	assert_memory_equal(p, want, strlen(want));
	evcols_free(c);
}

/* Each of these is refused, and leaves nothing behind. */
static void
test_refused(void **state)
{
	static const char *const bad[] = {
		EV_HEAD "\"tried\":[\"a\\u0000b\"]," EV_TAIL,		/* jsonb refuses NUL */
		EV_HEAD "\"tried\":[\"\\ud83d\"]," EV_TAIL,		/* and a lone surrogate */
		EV_HEAD "\"app_url\":\"a\tb\"," EV_TAIL,		/* raw control character */
		EV_HEAD "\"cached\":1.5," EV_TAIL,			/* not an integer */
		EV_HEAD "\"cached\":1e3," EV_TAIL,
		EV_HEAD "\"cached\":01," EV_TAIL,
		EV_HEAD "\"cached\":9223372036854775808," EV_TAIL,	/* int8 overflow */
		EV_HEAD "\"status\":2147483648," EV_TAIL,		/* int4 overflow */
		EV_HEAD "\"cached\":\"1\"," EV_TAIL,			/* a string */
		EV_HEAD "\"tried\":{\"a\":1}," EV_TAIL,			/* not an array */
		EV_HEAD "\"model\":null," EV_TAIL "x",			/* trailing text */
		EV_HEAD "\"tried\":[1," EV_TAIL,			/* unterminated */
		"[]", "", "{", "{\"id\":\"x\"}",
	};
	struct evcols *c = evcols_new();
	const char *v[EC_N];
	int len[EC_N];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(add(c, bad[i]), -1);
	assert_int_equal(evcols_count(c), 0);
	assert_int_equal(evcols_params(c, v, len), 0);
	assert_int_equal(len[EC_ID], 12);		/* an empty array: ndim 0 */
	assert_int_equal(u32((const unsigned char *)v[EC_ID]), 0);
	assert_int_equal(u32((const unsigned char *)v[EC_ID] + 8), OID_TEXT);
	evcols_reset(c);
	assert_int_equal(add(c, EV_HEAD EV_TAIL), 0);
	assert_int_equal(evcols_params(c, v, len), 0);
	assert_int_equal(u32((const unsigned char *)v[EC_ID] + 12), 1);
	evcols_free(c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_columns),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_mark_rollback),
		cmocka_unit_test(test_invalid_utf8_replaced),
		cmocka_unit_test(test_tried_invalid_utf8),
	};

	return cmocka_run_group_tests_name("evcols", tests, NULL, NULL);
}
