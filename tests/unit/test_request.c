/*
 * Request parsing: what the router accepts, what it refuses (and says), and
 * the body it sends upstream.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "request.h"

/* request_parse's tree is the whole parse's: printed and read back, the
 * same JSON (a raw `messages` prints as its text). */
static void
same_tree(const cJSON *tree, const cJSON *whole)
{
	char *s = cJSON_PrintUnformatted(tree), *t, *w = cJSON_PrintUnformatted(whole);
	cJSON *back = cJSON_Parse(s);

	assert_non_null(back);
	t = cJSON_PrintUnformatted(back);	/* member order and repeats kept */
	assert_string_equal(t, w);
	cJSON_Delete(back);
	free(s);
	free(t);
	free(w);
}

/* Validates json parsed whole and through request_parse: the same answer,
 * word for word. */
static int
check(const char *json, char *msg, size_t len)
{
	cJSON *b = cJSON_Parse(json), *s;
	char msg2[300] = "";
	int rc, shallow;

	assert_non_null(b);
	rc = request_validate(b, msg, len);
	s = request_parse(json, strlen(json), &shallow);
	assert_non_null(s);
	assert_int_equal(request_validate(s, msg2, sizeof(msg2)), rc);
	if (rc < 0)
		assert_string_equal(msg, msg2);
	same_tree(s, b);
	cJSON_Delete(s);
	cJSON_Delete(b);
	return rc;
}

/* Plain chat bodies keep `messages` as text; what jscan cannot read, or
 * reads otherwise than cJSON, is parsed whole. */
static void
test_parse(void **state)
{
	static const struct {
		const char *json;
		int shallow;
	} cases[] = {
		{ "{\"model\":\"a/b\",\"messages\":[{\"role\":\"user\",\"content\":\"h\\u00e9 \\\"x\\\"\"}],"
		  "\"temperature\":0.5,\"stream\":true}", 1 },
		{ " {\"messages\" : [ {\"role\":\"system\",\"content\":[{\"type\":\"text\"}]} , {\"role\":\"user\"} ] } ", 1 },
		{ "{\"model\":\"a/b\",\"messages\":[{\"r\\u006fle\":\"user\"}]}", 0 },	/* escaped key */
		{ "{\"m\\u006fdel\":\"a/b\",\"messages\":[{\"role\":\"user\"}]}", 0 },
		{ "{\"model\":\"a/b\",\"messages\":[{\"role\":1}]}", 0 },
		{ "{\"model\":\"a/b\",\"messages\":[{\"content\":\"x\"}]}", 0 },
		{ "{\"model\":\"a/b\",\"messages\":[]}", 0 },
		{ "{\"model\":\"a/b\",\"messages\":[\"x\"]}", 0 },
		{ "{\"model\":\"a/b\",\"messages\":{}}", 0 },
		{ "{\"model\":\"a/b\",\"messages\":[{\"role\":\"user\",\"content\":\"a\tb\"}]}", 0 },	/* cJSON only */
		{ "{\"model\":\"a/b\"}", 1 },
		{ "{}", 1 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cJSON *whole = cJSON_Parse(cases[i].json), *s;
		int shallow = -1;

		assert_non_null(whole);
		s = request_parse(cases[i].json, strlen(cases[i].json), &shallow);
		assert_non_null(s);
		if (shallow != cases[i].shallow)
			fail_msg("case %zu: shallow %d", i, shallow);
		same_tree(s, whole);
		cJSON_Delete(s);
		cJSON_Delete(whole);
	}
	assert_null(request_parse("{\"a\":", 5, &(int){ 0 }));
	int shallow = 1;
	cJSON *a = request_parse("[1]", 3, &shallow);	/* JSON, not an object: request_validate says so */

	assert_true(cJSON_IsArray(a) && !shallow);
	cJSON_Delete(a);
}

static void
test_valid(void **state)
{
	static const char *const ok[] = {
		"{\"model\":\"a/b\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
		"{\"models\":[\"a/b\",\"c/d\"],\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
		"{\"model\":\"a/b\",\"stream\":true,\"max_tokens\":5,\"messages\":[{\"role\":\"user\"}]}",
		"{\"model\":\"a/b\",\"max_tokens\":null,\"tools\":[{}],\"messages\":[{\"role\":\"system\",\"content\":[]}]}",
		"{\"model\":\"a/b\",\"temperature\":0,\"top_p\":1,\"frequency_penalty\":-2,\"seed\":-5,\"n\":1,"
		"\"messages\":[{\"role\":\"user\"}]}",
	};
	char msg[200];

	(void)state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		assert_int_equal(check(ok[i], msg, sizeof(msg)), 0);
}

static void
test_invalid(void **state)
{
	static const struct { const char *json, *says; } bad[] = {
		{ "[]", "JSON object" },
		{ "{\"messages\":[{\"role\":\"user\"}]}", "'model' is required" },
		{ "{\"model\":\"\",\"messages\":[{\"role\":\"user\"}]}", "'model'" },
		{ "{\"model\":5,\"messages\":[{\"role\":\"user\"}]}", "'model'" },
		{ "{\"model\":\"a/b\"}", "'messages'" },
		{ "{\"model\":\"a/b\",\"messages\":[]}", "'messages'" },
		{ "{\"model\":\"a/b\",\"messages\":\"hi\"}", "'messages'" },
		{ "{\"model\":\"a/b\",\"messages\":[\"hi\"]}", "'role'" },
		{ "{\"model\":\"a/b\",\"messages\":[{\"content\":\"x\"}]}", "'role'" },
		{ "{\"model\":\"a/b\",\"stream\":\"yes\",\"messages\":[{\"role\":\"user\"}]}", "'stream'" },
		{ "{\"model\":\"a/b\",\"max_tokens\":0,\"messages\":[{\"role\":\"user\"}]}", "'max_tokens'" },
		{ "{\"model\":\"a/b\",\"max_tokens\":-3,\"messages\":[{\"role\":\"user\"}]}", "'max_tokens'" },
		{ "{\"model\":\"a/b\",\"max_tokens\":1.5,\"messages\":[{\"role\":\"user\"}]}", "'max_tokens'" },
		{ "{\"model\":\"a/b\",\"max_tokens\":1e300,\"messages\":[{\"role\":\"user\"}]}", "'max_tokens'" },
		{ "{\"model\":\"a/b\",\"temperature\":-0.1,\"messages\":[{\"role\":\"user\"}]}", "'temperature'" },
		{ "{\"model\":\"a/b\",\"temperature\":\"hot\",\"messages\":[{\"role\":\"user\"}]}", "'temperature'" },
		{ "{\"model\":\"a/b\",\"top_p\":-1,\"messages\":[{\"role\":\"user\"}]}", "'top_p'" },
		{ "{\"model\":\"a/b\",\"top_k\":-1,\"messages\":[{\"role\":\"user\"}]}", "'top_k'" },
		{ "{\"model\":\"a/b\",\"frequency_penalty\":-3,\"messages\":[{\"role\":\"user\"}]}", "'frequency_penalty'" },
		{ "{\"model\":\"a/b\",\"presence_penalty\":2.5,\"messages\":[{\"role\":\"user\"}]}", "'presence_penalty'" },
		{ "{\"model\":\"a/b\",\"repetition_penalty\":-1,\"messages\":[{\"role\":\"user\"}]}", "'repetition_penalty'" },
		{ "{\"model\":\"a/b\",\"n\":-1,\"messages\":[{\"role\":\"user\"}]}", "'n'" },
		{ "{\"model\":\"a/b\",\"n\":0,\"messages\":[{\"role\":\"user\"}]}", "'n'" },
		{ "{\"model\":\"a/b\",\"top_logprobs\":-2,\"messages\":[{\"role\":\"user\"}]}", "'top_logprobs'" },
		{ "{\"model\":\"a/b\",\"min_p\":-0.5,\"messages\":[{\"role\":\"user\"}]}", "'min_p'" },
		{ "{\"model\":\"a/b\",\"seed\":1.5,\"messages\":[{\"role\":\"user\"}]}", "'seed'" },
		{ "{\"model\":\"a/b\",\"max_tokens\":16,\"messages\":[{\"role\":\"user\"}],\"max_tokens\":99999}",
		  "repeats the field 'max_tokens'" },
		{ "{\"model\":\"a/b\",\"messages\":[{\"role\":\"user\"}],\"provider\":{\"only\":[\"x\"],\"only\":[]}}",
		  "'provider' repeats the field 'only'" },
		{ "{\"model\":\"a/b\",\"max_completion_tokens\":\"9\",\"messages\":[{\"role\":\"user\"}]}", "'max_completion_tokens'" },
		{ "{\"models\":\"a/b\",\"messages\":[{\"role\":\"user\"}]}", "'models'" },
		{ "{\"models\":[1],\"messages\":[{\"role\":\"user\"}]}", "'models'" },
		{ "{\"models\":[],\"messages\":[{\"role\":\"user\"}]}", "'model' is required" },
	};
	char msg[200];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		msg[0] = '\0';
		assert_int_equal(check(bad[i].json, msg, sizeof(msg)), -1);
		if (!strstr(msg, bad[i].says))
			fail_msg("case %zu: '%s' does not mention %s", i, msg, bad[i].says);
	}
}

/* jfields answers what cJSON's lookup answers, hashed or not (more than
 * JFIELDS_SLOTS / 2 members), and names the first repeated member. */
static void
test_jfields(void **state)
{
	static const char *const names[] = { "model", "messages", "stream", "max_tokens", "top_p",
					     "temperature", "provider", "seed", "x", "absent", "" };
	char big[4096];
	size_t n = 0;

	(void)state;
	n += (size_t)snprintf(big + n, sizeof(big) - n, "{\"model\":\"m\",\"messages\":[],\"\":1");
	for (int i = 0; i < 40; i++)
		n += (size_t)snprintf(big + n, sizeof(big) - n, ",\"f%d\":%d", i, i);
	snprintf(big + n, sizeof(big) - n, "}");
	const char *bodies[] = {
		"{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"stream\":true,\"max_tokens\":5,"
		"\"top_p\":1,\"temperature\":0.5,\"provider\":{},\"seed\":3,\"x\":null,\"\":2}",
		"{}", big,
	};
	for (size_t b = 0; b < sizeof(bodies) / sizeof(bodies[0]); b++) {
		cJSON *o = cJSON_Parse(bodies[b]);
		struct jfields f;

		assert_non_null(o);
		jfields_init(&f, o);
		assert_int_equal(f.hashed, b != 2);
		assert_null(f.repeated);
		for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
			assert_ptr_equal(jfields_get(&f, names[i]), cJSON_GetObjectItemCaseSensitive(o, names[i]));
		assert_ptr_equal(jfields_get(&f, "f39"), cJSON_GetObjectItemCaseSensitive(o, "f39"));
		cJSON_Delete(o);
	}
	cJSON *o = cJSON_Parse("{\"a\":1,\"b\":2,\"a\":3,\"b\":4}");
	struct jfields f;

	jfields_init(&f, o);
	assert_true(f.hashed);
	assert_string_equal(f.repeated, "a");
	assert_int_equal(jfields_get(&f, "a")->valueint, 1);	/* the first, as cJSON */
	cJSON_Delete(o);
}

static void
test_prepare_plain(void **state)
{
	cJSON *b = cJSON_Parse("{\"model\":\"z-ai/glm-5\",\"models\":[\"x/y\"],\"provider\":{\"order\":[\"a\"]},"
			       "\"usage\":{\"include\":true},\"temperature\":0.3,\"tools\":[{\"type\":\"function\"}],"
			       "\"stop\":[\"END\"],\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}");
	char *out;

	(void)state;
	assert_int_equal(request_prepare_upstream(b, "zai-org/GLM-5", 0), 0);
	assert_string_equal(cJSON_GetObjectItem(b, "model")->valuestring, "zai-org/GLM-5");
	assert_null(cJSON_GetObjectItem(b, "models"));
	assert_null(cJSON_GetObjectItem(b, "provider"));
	assert_null(cJSON_GetObjectItem(b, "usage"));
	assert_null(cJSON_GetObjectItem(b, "stream_options"));
	assert_true(cJSON_GetObjectItem(b, "temperature")->valuedouble == 0.3);
	assert_non_null(cJSON_GetObjectItem(b, "tools"));
	assert_non_null(cJSON_GetObjectItem(b, "stop"));
	out = cJSON_PrintUnformatted(b);
	assert_null(strstr(out, "z-ai/glm-5"));
	cJSON_free(out);
	cJSON_Delete(b);
}

static void
test_prepare_stream_usage(void **state)
{
	static const char *const in[] = {
		"{\"model\":\"m\",\"stream\":true,\"messages\":[]}",
		"{\"model\":\"m\",\"stream\":true,\"stream_options\":{\"include_usage\":false},\"messages\":[]}",
		"{\"model\":\"m\",\"stream\":true,\"stream_options\":7,\"messages\":[]}",
	};

	(void)state;
	for (size_t i = 0; i < 3; i++) {
		cJSON *b = cJSON_Parse(in[i]), *so;

		assert_int_equal(request_prepare_upstream(b, "up", 1), 0);
		so = cJSON_GetObjectItem(b, "stream_options");
		assert_true(cJSON_IsObject(so));
		assert_true(cJSON_IsTrue(cJSON_GetObjectItem(so, "include_usage")));
		assert_int_equal(cJSON_GetArraySize(so), 1);
		cJSON_Delete(b);
	}
}

/* The router's check is lib/utf8.c's (tests/unit/test_utf8.c covers it). */
static void
test_request_utf8(void **state)
{
	(void)state;
	assert_int_equal(request_utf8_valid("caf\xc3\xa9", 5), 1);
	assert_int_equal(request_utf8_valid("\xf5\x80\x80", 3), 0);
	assert_int_equal(request_utf8_valid("a\0b", 3), 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid),
		cmocka_unit_test(test_request_utf8),
		cmocka_unit_test(test_invalid),
		cmocka_unit_test(test_jfields),
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_prepare_plain),
		cmocka_unit_test(test_prepare_stream_usage),
	};

	return cmocka_run_group_tests_name("request", tests, NULL, NULL);
}
