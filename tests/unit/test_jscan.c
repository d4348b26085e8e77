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

#include <cjson/cJSON.h>

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
	/* nesting: what cJSON takes (1000 containers, the object's included)
	 * passes, one more is refused, as cJSON refuses it */
	for (int levels = 998; levels <= 1001; levels++) {
		cJSON *o;

		n = (size_t)sprintf(deep, "{\"a\":");
		for (int i = 0; i < levels; i++)
			deep[n++] = '[';
		for (int i = 0; i < levels; i++)
			deep[n++] = ']';
		deep[n++] = '}';
		o = cJSON_ParseWithLength(deep, n);
		assert_int_equal(jscan_object(deep, n, m, 4), levels <= 999 ? 1 : -1);
		assert_int_equal(o != NULL, levels <= 999);
		cJSON_Delete(o);
	}
}

/* Surrogates: in pairs, as cJSON wants them (it refuses the whole text
 * otherwise, so jscan must too). */
static void
test_surrogates(void **state)
{
	static const char *const cases[] = {
		"{\"a\":\"\\ud83d\\ude00\"}", "{\"a\":\"\\uD83D\\uDE00x\"}", "{\"a\":\"\\uffff\\u0000\"}",
		"{\"a\":\"\\ud800\"}", "{\"a\":\"\\udc00\"}", "{\"a\":\"\\ud800\\u0041\"}",
		"{\"a\":\"\\ud800x\"}", "{\"a\":\"\\ud800\\n\"}", "{\"a\":\"\\ud800\\udbff\"}",
		"{\"a\":[{\"k\\udfff\":1}]}", "{\"a\":\"\\ud800\\ud",
	};
	struct jmember m[2];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cJSON *o = cJSON_ParseWithLength(cases[i], strlen(cases[i]));
		int n = jscan_object(cases[i], strlen(cases[i]), m, 2);

		if ((n == 1) != (o != NULL))
			fail_msg("jscan %d, cJSON %s: %s", n, o ? "took it" : "refused it", cases[i]);
		cJSON_Delete(o);
	}
	assert_int_equal(jscan_object(cases[0], strlen(cases[0]), m, 2), 1);
	assert_int_equal(jscan_object(cases[3], strlen(cases[3]), m, 2), -1);
}

static void
test_arrays(void **state)
{
	static const char t[] = " [ 1 ,\"a,]\", {\"x\":[2,3]} ,[],null ] tail";
	static const char *const want[] = { "1", "\"a,]\"", "{\"x\":[2,3]}", "[]", "null" };
	static const char *const bad[] = { "", "{}", "1", "[", "[1", "[1,", "[1,]", "[,1]", "[1 2]", "[1}", "[\"x]" };
	struct jarray a;
	const char *v;
	size_t vlen;
	int i = 0, rc;

	(void)state;
	assert_int_equal(jscan_array(&a, t, strlen(t)), 0);
	while ((rc = jscan_array_next(&a, &v, &vlen)) > 0) {
		assert_true(i < 5);
		assert_int_equal(vlen, strlen(want[i]));
		assert_memory_equal(v, want[i], vlen);
		i++;
	}
	assert_int_equal(rc, 0);
	assert_int_equal(i, 5);
	assert_int_equal(jscan_array_next(&a, &v, &vlen), 0);	/* stays at the end */
	assert_int_equal(jscan_array_count(t, strlen(t)), 5);
	assert_int_equal(jscan_array_count("[]", 2), 0);
	assert_int_equal(jscan_array_count(" [\n] ", 5), 0);
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++)
		if (jscan_array_count(bad[k], strlen(bad[k])) != -1)
			fail_msg("counted: %s", bad[k]);
	/* objects read with their members in the same pass; others not */
	{
		static const char o[] = "[{\"a\":1,\"b\":[2]},7,{},{\"x\\u0041\":1}]";
		struct jmember m[4];
		int n;

		assert_int_equal(jscan_array(&a, o, strlen(o)), 0);
		assert_int_equal(jscan_array_next_members(&a, &v, &vlen, m, 4, &n), 1);
		assert_int_equal(n, 2);
		assert_int_equal(vlen, 15);
		assert_member(&m[1], "b", "[2]");
		assert_int_equal(jscan_array_next_members(&a, &v, &vlen, m, 4, &n), 1);
		assert_int_equal(n, -1);
		assert_memory_equal(v, "7", vlen);
		assert_int_equal(jscan_array_next_members(&a, &v, &vlen, m, 4, &n), 1);
		assert_int_equal(n, 0);
		/* an escaped key (or more than max members) is refused */
		assert_int_equal(jscan_array_next_members(&a, &v, &vlen, m, 4, &n), -1);
		assert_int_equal(jscan_array(&a, o, strlen(o)), 0);
		assert_int_equal(jscan_array_next_members(&a, &v, &vlen, m, 1, &n), -1);
	}
	/* an error is sticky */
	assert_int_equal(jscan_array(&a, "[1 2]", 5), 0);
	assert_int_equal(jscan_array_next(&a, &v, &vlen), -1);
	assert_int_equal(jscan_array_next(&a, &v, &vlen), -1);
}

/* jscan_cstring against cJSON's valuestring, as C reads it. */
static void
test_cstring(void **state)
{
	static const char *const cases[] = {
		"\"\"", "\"plain text, long enough for the eight-byte path\"",
		"\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\u00e9\\u00E9\\u20ac\\u0041\\u007f\\u0080\\u07ff\\u0800\"",
		"\"x\\ud83d\\ude00y\"", "\"h\xc3\xa9llo \xf0\x9f\x98\x80\"", "\"cut\\u0000here\"", "\"\\u0000\"",
	};
	char out[64], tiny[4], json[128];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cJSON *o;
		long n;

		snprintf(json, sizeof(json), "{\"s\":%s}", cases[i]);
		o = cJSON_Parse(json);
		assert_non_null(o);
		n = jscan_cstring(cases[i], strlen(cases[i]), out, sizeof(out));
		assert_int_equal(n, (long)strlen(cJSON_GetObjectItem(o, "s")->valuestring));
		assert_string_equal(out, cJSON_GetObjectItem(o, "s")->valuestring);
		assert_int_equal(jscan_cstring(cases[i], strlen(cases[i]), NULL, 0), n);
		/* truncated to what fits, NUL-terminated, the length whole */
		assert_int_equal(jscan_cstring(cases[i], strlen(cases[i]), tiny, sizeof(tiny)), n);
		assert_int_equal(strlen(tiny), n < 3 ? (size_t)n : 3);
		assert_memory_equal(tiny, out, strlen(tiny));
		cJSON_Delete(o);
	}
	assert_int_equal(jscan_cstring("null", 4, out, sizeof(out)), -1);
	assert_int_equal(jscan_cstring("\"open", 5, out, sizeof(out)), -1);
	assert_int_equal(jscan_cstring("\"\\x\"", 4, out, sizeof(out)), -1);
	assert_int_equal(jscan_cstring("\"\\ud800\"", 8, out, sizeof(out)), -1);
	assert_int_equal(jscan_cstring("\"", 1, out, sizeof(out)), -1);
}

/* jscan_number against cJSON's valuedouble. */
static void
test_numbers(void **state)
{
	static const char *const cases[] = {
		"0", "-0", "7", "-12", "123456789012345", "1234567890123456", "-999999999999999999",
		"1.5", "-0.25", "1e3", "2E-3", "1.5e+2", "9e15", "1e400", "0.1",
		"1.000000000000000000000000000000000000000000000000000000000001",
	};
	static const char *const bad[] = { "", "-", "+1", ".5", "1.", "01", "1e", "1 ", "x", "\"1\"", "1,2", "null" };
	char json[128];
	double d;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cJSON *o;

		snprintf(json, sizeof(json), "{\"n\":%s}", cases[i]);
		assert_non_null(o = cJSON_Parse(json));
		assert_int_equal(jscan_number(cases[i], strlen(cases[i]), &d), 0);
		if (memcmp(&d, &cJSON_GetObjectItem(o, "n")->valuedouble, sizeof(d)) != 0)
			fail_msg("%s: %.17g, cJSON %.17g", cases[i], d, cJSON_GetObjectItem(o, "n")->valuedouble);
		cJSON_Delete(o);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (jscan_number(bad[i], strlen(bad[i]), &d) != -1)
			fail_msg("read: %s", bad[i]);
	/* longer than JSCAN_NUMBER_MAX: left to cJSON */
	memset(json, '1', JSCAN_NUMBER_MAX + 1);
	json[0] = '0';
	json[1] = '.';
	assert_int_equal(jscan_number(json, JSCAN_NUMBER_MAX, &d), 0);
	assert_int_equal(jscan_number(json, JSCAN_NUMBER_MAX + 1, &d), -1);
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
		cmocka_unit_test(test_special_at_every_offset),
		cmocka_unit_test(test_surrogates),
		cmocka_unit_test(test_arrays),
		cmocka_unit_test(test_cstring),
		cmocka_unit_test(test_numbers),
	};

	return cmocka_run_group_tests_name("jscan", tests, NULL, NULL);
}
