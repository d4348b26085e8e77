/*
 * jscan: object members as text spans, for the router's splicing of bodies,
 * answers and stream events (escaped quotes, nesting, whitespace, refusals).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "jscan.h"

static void
assert_member(const struct jmember *m, const char *key, const char *val)
{
	char k[256], v[1024];

	snprintf(k, sizeof(k), "%.*s", (int)m->klen, m->key);
	snprintf(v, sizeof(v), "%.*s", (int)m->vlen, m->val);
	assert_string_equal(k, key);
	assert_string_equal(v, val);
}

static void
test_members(void **state)
{
	static const char t[] =
		" {\"model\" : \"a/b\", \"n\":-1.5e3,\"ok\":true,\"no\":null,"
		"\"messages\":[{\"role\":\"user\",\"content\":\"say \\\"}]{\\\" \\\\\"}],"
		"\"o\":{\"x\":[1,{\"y\":\"}\"}]}, \"e\":{} ,\"a\":[]}";
	struct jmember m[16];
	int n = jscan_object(t, strlen(t), m, 16);

	(void)state;
	assert_int_equal(n, 8);
	assert_member(&m[0], "model", "\"a/b\"");
	assert_member(&m[1], "n", "-1.5e3");
	assert_member(&m[2], "ok", "true");
	assert_member(&m[3], "no", "null");
	assert_member(&m[4], "messages", "[{\"role\":\"user\",\"content\":\"say \\\"}]{\\\" \\\\\"}]");
	assert_member(&m[5], "o", "{\"x\":[1,{\"y\":\"}\"}]}");
	assert_member(&m[6], "e", "{}");
	assert_member(&m[7], "a", "[]");
	assert_true(jscan_key_is(&m[0], "model"));
	assert_false(jscan_key_is(&m[0], "mode"));
	assert_false(jscan_key_is(&m[0], "models"));
}

static void
test_whitespace_and_empty(void **state)
{
	struct jmember m[4];

	(void)state;
	assert_int_equal(jscan_object("{}", 2, m, 4), 0);
	assert_int_equal(jscan_object(" \r\n\t{ \n } ", 10, m, 4), 0);
	assert_int_equal(jscan_object("{\n \"a\"\t:\r\n1 \n}", 14, m, 4), 1);
	assert_member(&m[0], "a", "1");
	/* what follows the object is not looked at (cJSON's ParseWithLength neither) */
	assert_int_equal(jscan_object("{\"a\":\"x\"} trailing", 18, m, 4), 1);
}

static void
test_backslash_runs(void **state)
{
	/* "a\\" ends at its quote (an even run); "b\\\"" does not (odd) */
	static const char t[] = "{\"a\":\"x\\\\\",\"b\":\"y\\\\\\\"z\"}";
	struct jmember m[4];

	(void)state;
	assert_int_equal(jscan_object(t, strlen(t), m, 4), 2);
	assert_member(&m[0], "a", "\"x\\\\\"");
	assert_member(&m[1], "b", "\"y\\\\\\\"z\"");
}

static void
test_refusals(void **state)
{
	struct jmember m[2];
	static const char *const bad[] = {
		"", "[1,2]", "\"s\"", "42", "{", "{\"a\"", "{\"a\":", "{\"a\":1", "{\"a\":1,", "{\"a\" 1}",
		"{a:1}", "{\"a\":\"unended}", "{\"a\":[1,2}", "{\"a\":{\"b\":1}", "{\"a\":1 \"b\":2}",
		"{\"mod\\u0065l\":\"x\"}",	/* an escaped key: the caller takes the cJSON path */
		"{\"a\":1,\"b\":2,\"c\":3}",	/* more members than asked for */
		/* what cJSON lets through and strict JSON readers do not: the tree
		 * path prints it again, correctly */
		"{\"a\":+1}", "{\"a\":.5}", "{\"a\":1.}", "{\"a\":01}", "{\"a\":1e}", "{\"a\":-}",
		"{\"a\":\"tab\there\"}", "{\"a\":\"nl\nhere\"}", "{\"a\":[\"\x01\"]}",
		"{\"a\":\"\\x\"}", "{\"a\":\"\\u12\"}", "{\"a\":\"\\u12g4\"}", "{\"a\":tru}",
		"{\"a\":nul}", "{\"a\":[1,]}", "{\"a\":{\"b\":1,}}", "{\"a\":{\"b\" 1}}", "{\"a\":[1\f]}",
		"{\"a\":{1:2}}", "{\"a\":1,}",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int n = jscan_object(bad[i], strlen(bad[i]), m, 2);

		if (n != -1)
			fail_msg("accepted: %s", bad[i]);
	}
}

static void
test_strict_values(void **state)
{
	static const char t[] =
		"{\"n\":[0,-0,10,-1.25,3e10,2E-3,1.5e+2],\"s\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00E9\\ud83d\\ude00\","
		"\"u\":\"h\xc3\xa9llo \xf0\x9f\x98\x80 long enough to take the eight-byte path\","
		"\"l\":[true,false,null,{},[],[[{\"x\":[]}]]]}";
	struct jmember m[4];
	char deep[4200];
	size_t n = 0;

	(void)state;
	assert_int_equal(jscan_object(t, strlen(t), m, 4), 4);
	assert_member(&m[3], "l", "[true,false,null,{},[],[[{\"x\":[]}]]]");
	/* nesting: 1000 levels pass, past the bound is refused */
	n += (size_t)sprintf(deep, "{\"a\":");
	for (int i = 0; i < 1000; i++)
		deep[n++] = '[';
	for (int i = 0; i < 1000; i++)
		deep[n++] = ']';
	deep[n++] = '}';
	assert_int_equal(jscan_object(deep, n, m, 4), 1);
	n = (size_t)sprintf(deep, "{\"a\":");
	for (int i = 0; i < 2000; i++)
		deep[n++] = '[';
	for (int i = 0; i < 2000; i++)
		deep[n++] = ']';
	deep[n++] = '}';
	assert_int_equal(jscan_object(deep, n, m, 4), -1);
}

static void
test_length_bound(void **state)
{
	static const char t[] = "{\"a\":\"xyz\",\"b\":2}";
	struct jmember m[4];

	(void)state;
	/* the text ends where len says, whatever follows in memory */
	for (size_t len = 0; len < strlen(t); len++)
		assert_int_equal(jscan_object(t, len, m, 4), -1);
	assert_int_equal(jscan_object(t, strlen(t), m, 4), 2);
}

/* A special byte (quote, backslash escape, control character, a byte
 * above 0x7f) at every offset of strings of every length up to 24: the
 * eight-at-a-time scan ends at the right byte. */
static void
test_special_at_every_offset(void **state)
{
	struct jmember m[2];
	char text[64], val[32];

	(void)state;
	for (int len = 0; len <= 24; len++) {
		for (int at = 0; at <= len; at++) {
			memset(val, 'a', (size_t)len);
			val[len] = '\0';
			snprintf(text, sizeof(text), "{\"k\":\"%s\",\"z\":1}", val);
			assert_int_equal(jscan_object(text, strlen(text), m, 2), 2);
			assert_int_equal(m[0].vlen, (size_t)len + 2);
			if (at == len)
				continue;
			text[6 + at] = '\x01';				/* a raw control character */
			assert_int_equal(jscan_object(text, strlen(text), m, 2), -1);
			text[6 + at] = (char)0xc3;			/* not special */
			assert_int_equal(jscan_object(text, strlen(text), m, 2), 2);
			assert_int_equal(m[0].vlen, (size_t)len + 2);
			text[6 + at] = '"';				/* ends the string early */
			assert_int_equal(jscan_object(text, strlen(text), m, 2), -1);
			if (at + 1 < len) {
				text[6 + at] = '\\';			/* an escape inside */
				text[7 + at] = 'n';
				assert_int_equal(jscan_object(text, strlen(text), m, 2), 2);
				assert_int_equal(m[0].vlen, (size_t)len + 2);
			}
		}
	}
}

/* Objects of an array in one pass: each one's members, the count, and
 * what is refused (not an array, not objects, malformed, the callback). */
static int
count_members(void *arg, const struct jmember *m, int n)
{
	int *total = arg;

	if (n > 0 && jscan_key_is(&m[0], "stop"))
		return -1;
	*total += n;
	return 0;
}

static int
objects(const char *text, int *total)
{
	struct jmember m[4];

	*total = 0;
	return jscan_array_objects(text, strlen(text), m, 4, count_members, total);
}

static void
test_array_objects(void **state)
{
	int total;

	(void)state;
	assert_int_equal(objects(" [ {\"a\":[1,{\"b\":2}]} , {} ,{\"c\":\"]}\",\"d\":null} ] ", &total), 3);
	assert_int_equal(total, 3);
	assert_int_equal(objects("[]", &total), 0);
	assert_int_equal(objects(" [ ] ", &total), 0);
	assert_int_equal(objects("[{},]", &total), -1);
	assert_int_equal(objects("[,{}]", &total), -1);
	assert_int_equal(objects("[{} {}]", &total), -1);
	assert_int_equal(objects("[{}", &total), -1);
	assert_int_equal(objects("[1]", &total), -1);
	assert_int_equal(objects("{}", &total), -1);
	assert_int_equal(objects("[{\"a\":+1}]", &total), -1);		/* strict, as jscan_object */
	assert_int_equal(objects("[{\"a\":1,\"b\":2,\"c\":3,\"d\":4,\"e\":5}]", &total), -1);	/* > max */
	assert_int_equal(objects("[{},{\"stop\":1},{}]", &total), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_members),
		cmocka_unit_test(test_whitespace_and_empty),
		cmocka_unit_test(test_backslash_runs),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_strict_values),
		cmocka_unit_test(test_length_bound),
		cmocka_unit_test(test_array_objects),
		cmocka_unit_test(test_special_at_every_offset),
	};

	return cmocka_run_group_tests_name("jscan", tests, NULL, NULL);
}
