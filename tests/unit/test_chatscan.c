/*
 * chatscan against cJSON: for every event or answer chatscan reads, cJSON
 * must parse the same text and the router's cJSON reads of it (proxy.c's
 * tree path, restated below) must give the same values. Known events, the
 * edge cases each read has, then thousands of deterministic mutations.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "chatscan.h"

/* What proxy.c's tree path reads, from a cJSON tree. */
struct ref {
	int error, choices_array, nchoices, has_finish, usage_object, has_total, created_ok, fingerprint_ok;
	char finish[24];
	int64_t text_bytes, prompt_tokens, completion_tokens;
};

static int64_t
json_int(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

	return cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < 9e15 ? (int64_t)v->valuedouble : 0;
}

static void
ref_read(const cJSON *o, int chunk, struct ref *r)
{
	const cJSON *choices = cJSON_GetObjectItemCaseSensitive(o, "choices");
	const cJSON *usage = cJSON_GetObjectItemCaseSensitive(o, "usage");
	const cJSON *created = cJSON_GetObjectItemCaseSensitive(o, "created");
	const cJSON *fp = cJSON_GetObjectItemCaseSensitive(o, "system_fingerprint");
	const cJSON *fin = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(choices, 0), "finish_reason");
	const cJSON *c;

	memset(r, 0, sizeof(*r));
	r->error = cJSON_GetObjectItemCaseSensitive(o, "error") != NULL;
	r->choices_array = cJSON_IsArray(choices);
	r->nchoices = cJSON_GetArraySize(choices);
	if ((r->has_finish = cJSON_IsString(fin)))
		snprintf(r->finish, sizeof(r->finish), "%s", fin->valuestring);
	if ((r->usage_object = cJSON_IsObject(usage))) {
		r->prompt_tokens = json_int(usage, "prompt_tokens");
		r->completion_tokens = json_int(usage, "completion_tokens");
		r->has_total = cJSON_GetObjectItemCaseSensitive(usage, "total_tokens") != NULL;
	}
	r->created_ok = cJSON_IsNumber(created) && created->valuedouble >= 0 && created->valuedouble < 1e15 &&
			created->valuedouble == (double)(long long)created->valuedouble;
	r->fingerprint_ok = cJSON_IsString(fp) || cJSON_IsNull(fp);
	if (chunk) {		/* count_delta() */
		cJSON_ArrayForEach(c, choices) {
			const cJSON *d = cJSON_GetObjectItemCaseSensitive(c, "delta");
			const cJSON *t = cJSON_GetObjectItemCaseSensitive(d, "content");
			const cJSON *rs = cJSON_GetObjectItemCaseSensitive(d, "reasoning");

			if (cJSON_IsString(t))
				r->text_bytes += (int64_t)strlen(t->valuestring);
			if (cJSON_IsString(rs))
				r->text_bytes += (int64_t)strlen(rs->valuestring);
		}
	} else if (!r->usage_object) {	/* proxy_finish_json()'s estimate */
		const cJSON *msg = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(choices, 0), "message");
		const cJSON *content = cJSON_GetObjectItemCaseSensitive(msg, "content");

		r->text_bytes = cJSON_IsString(content) ? (int64_t)strlen(content->valuestring) : 0;
	}
}

/* 1 when chatscan read text; then cJSON must have parsed it and agree. */
static int
check(const char *text, size_t len, int chunk)
{
	struct chatscan c;
	struct ref r;
	cJSON *o;
	int rc = chunk ? chatscan_chunk(&c, text, len) : chatscan_answer(&c, text, len);

	if (rc < 0)
		return 0;
	o = cJSON_ParseWithLength(text, len);
	if (!cJSON_IsObject(o))
		fail_msg("chatscan read what cJSON refuses: %.*s", (int)len, text);
	ref_read(o, chunk, &r);
	cJSON_Delete(o);
#define SAME(field, ours) \
	do { \
		if ((int64_t)(ours) != (int64_t)r.field) \
			fail_msg("%s: chatscan %lld, cJSON %lld: %.*s", #field, (long long)(ours), \
				 (long long)r.field, (int)len, text); \
	} while (0)
	SAME(error, c.error != NULL);
	SAME(choices_array, c.choices_array);
	SAME(has_finish, c.has_finish);
	SAME(usage_object, c.usage_object);
	SAME(created_ok, c.created && c.created_ok);
	SAME(fingerprint_ok, c.fingerprint && c.fingerprint_ok);
	if (chunk || c.choices_array)
		SAME(nchoices, c.nchoices);
	if (chunk || !c.usage_object)
		SAME(text_bytes, c.text_bytes);
	if (c.usage_object) {
		SAME(prompt_tokens, c.prompt_tokens);
		SAME(completion_tokens, c.completion_tokens);
		SAME(has_total, c.has_total);
	}
	if (c.has_finish && strcmp(c.finish, r.finish) != 0)
		fail_msg("finish: chatscan '%s', cJSON '%s'", c.finish, r.finish);
	return 1;
}

static const char *const events[] = {
	"{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"m\","
	"\"system_fingerprint\":\"fp\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
	"\"logprobs\":null,\"finish_reason\":null}]}",
	"{\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"h\\u00e9llo \\ud83d\\ude00\\n\"},"
	"\"finish_reason\":null}],\"usage\":null}",
	"{\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}",
	"{\"choices\":[],\"usage\":{\"prompt_tokens\":212,\"completion_tokens\":24,\"total_tokens\":236}}",
	"{\"choices\":[{\"delta\":{\"reasoning\":\"think\",\"content\":\"a\"}},{\"delta\":{\"content\":\"bb\"},"
	"\"finish_reason\":\"length\"},7,null,[1]],\"created\":1.7e9}",
	"{\"error\":{\"message\":\"overloaded\",\"code\":529}}",
	"{\"error\":null,\"choices\":[]}",
	"{\"choices\":[{\"finish_reason\":\"a finish reason longer than the buffer holds\"}],"
	"\"usage\":{\"prompt_tokens\":-3,\"completion_tokens\":1.9,\"cost\":1}}",
	"{\"choices\":[{\"finish_reason\":\"st\\u0000op\",\"delta\":{\"content\":\"a\\u0000bc\"}}],"
	"\"usage\":{\"prompt_tokens\":9e15,\"completion_tokens\":8999999999999999}}",
	"{\"choices\":[{\"delta\":{\"content\":\"x\",\"content\":\"yyy\"},\"delta\":{\"content\":\"zz\"}}],"
	"\"usage\":{\"prompt_tokens\":1,\"prompt_tokens\":2},\"usage\":{\"prompt_tokens\":3},"
	"\"created\":\"now\",\"created\":5}",
	"{\"choices\":[{\"delta\":{\"content\":7,\"reasoning\":null},\"finish_reason\":7}],\"created\":-1,"
	"\"system_fingerprint\":7}",
	"{\"choices\":\"none\",\"usage\":[1],\"created\":1e15,\"system_fingerprint\":null}",
	"{\"choices\":null,\"created\":999999999999999.5}",
	"{\"choices\":[{\"delta\":\"text\",\"finish_reason\":\"stop\"}],\"usage\":{}}",
	"{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"created\":1700000000,\"model\":\"m\","
	"\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"Hello there\"},"
	"\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7}}",
	"{\"choices\":[{\"message\":{\"content\":\"no usage: estimated \\\"here\\\"\"},\"finish_reason\":\"stop\"},"
	"{\"message\":{\"content\":\"second\"}}]}",
	"{\"choices\":[{\"message\":{\"content\":null,\"tool_calls\":[{\"id\":\"t\"}]}}],\"usage\":\"x\"}",
	"{\"choices\":[1,{\"finish_reason\":\"stop\"}]}",
	"{}",
};

/* What chatscan must leave to cJSON (which reads each differently or
 * refuses it): as a chunk, and (all but the delta's escaped key, which an
 * answer does not read) as an answer. */
static const char *const refused[] = {
	"{\"choices\":[{\"message\":{\"c\\u006fntent\":\"x\"}}]}",	/* an answer's escaped key */
	"{\"choices\":{\"a\":{\"finish_reason\":\"stop\"}}}",	/* an object read as an array */
	"{\"ch\\u006fices\":[]}",				/* an escaped key */
	"{\"choices\":[{\"fin\\u0069sh_reason\":\"stop\"}]}",
	"{\"choices\":[{\"delta\":{\"c\\u006fntent\":\"x\"}}]}",
	"{\"usage\":{\"prompt_t\\u006fkens\":3}}",
	"{\"choices\":[{\"delta\":{\"content\":\"\\ud800\"}}]}",	/* cJSON refuses it */
	"{\"choices\":[{\"delta\":{\"content\":\"tab\there\"}}]}",	/* cJSON takes it, strict JSON does not */
	"{\"created\":1.00000000000000000000000000000000000000000000000000000000000000001}",
	"\xef\xbb\xbf{}", "[]", "", "{", "{\"a\":1,}",
};

static void
test_known(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(events) / sizeof(events[0]); i++) {
		if (!check(events[i], strlen(events[i]), 1))
			fail_msg("chunk refused: %s", events[i]);
		if (!check(events[i], strlen(events[i]), 0))
			fail_msg("answer refused: %s", events[i]);
	}
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		const char *t = refused[i];

		if (i > 0 && check(t, strlen(t), 1))
			fail_msg("chunk read: %s", t);
		if (!strstr(t, "delta") && check(t, strlen(t), 0))
			fail_msg("answer read: %s", t);
	}
	/* and each reads once its refused part is gone */
	{
		static const char ok[] = "{\"choices\":[{\"delta\":{\"content\":\"x\"}}]}";

		assert_int_equal(check(ok, strlen(ok), 1), 1);
	}
}

static void
test_values(void **state)
{
	static const char t[] =
		"{\"id\":\"x\",\"created\":1700000000,\"system_fingerprint\":null,\"choices\":[{\"delta\":"
		"{\"content\":\"caf\\u00e9\"},\"finish_reason\":\"stop\"},{\"delta\":{\"reasoning\":\"ab\"}}],"
		"\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":4,\"cost\":0.5}}";
	struct chatscan c;

	(void)state;
	assert_int_equal(chatscan_chunk(&c, t, strlen(t)), 0);
	assert_int_equal(c.n, 5);
	assert_null(c.error);
	assert_non_null(c.created);
	assert_true(c.created_ok);
	assert_true(c.fingerprint_ok);
	assert_true(c.choices_array);
	assert_int_equal(c.nchoices, 2);
	assert_true(c.has_finish);
	assert_string_equal(c.finish, "stop");
	assert_int_equal(c.text_bytes, 5 + 2);	/* é is two bytes */
	assert_true(c.usage_object);
	assert_int_equal(c.nu, 3);
	assert_int_equal(c.prompt_tokens, 10);
	assert_int_equal(c.completion_tokens, 4);
	assert_false(c.has_total);
	/* an answer reads the first choice's message, only without usage */
	assert_int_equal(chatscan_answer(&c, t, strlen(t)), 0);
	assert_int_equal(c.text_bytes, 0);
}

#define MUTANTS 200000

static uint64_t rng = 0x9E3779B97F4A7C15ULL;

static unsigned
next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (unsigned)(rng >> 32);
}

/* Each known text mutated a few bytes at a time (JSON's punctuation,
 * escapes, digits and the names chatscan looks for); whatever chatscan
 * still reads must read as cJSON reads it. */
static void
test_mutations(void **state)
{
	static const char *const bits[] = {
		"{", "}", "[", "]", "\"", ",", ":", "\\", "\\u0000", "\\ud83d", "\\ude00", "\\n", "0", "-", ".",
		"e", "9", " ", "null", "true", "\"error\":1", "\"choices\"", "\"usage\"", "\"created\"",
		"\"finish_reason\"", "\"delta\"", "\"content\"", "\"message\"", "\"prompt_tokens\"", "1e15",
		"\x01", "\xc3\xa9",
	};
	char buf[1024];
	int readable = 0;

	(void)state;
	for (int round = 0; round < MUTANTS; round++) {
		const char *src = events[next_rand() % (sizeof(events) / sizeof(events[0]))];
		size_t len = strlen(src);
		int edits = 1 + (int)(next_rand() % 3);

		memcpy(buf, src, len);
		for (int e = 0; e < edits; e++) {
			const char *b = bits[next_rand() % (sizeof(bits) / sizeof(bits[0]))];
			size_t at = len ? next_rand() % len : 0, blen = strlen(b);
			size_t cut = next_rand() % 3;	/* bytes replaced */

			if (cut > len - at)
				cut = len - at;
			if (len - cut + blen >= sizeof(buf))
				continue;
			memmove(buf + at + blen, buf + at + cut, len - at - cut);
			memcpy(buf + at, b, blen);
			len = len - cut + blen;
		}
		readable += check(buf, len, (int)(round & 1));
	}
	/* the test means something only if many mutants were read */
	print_message("%d of %d mutants read\n", readable, MUTANTS);
	assert_true(readable > MUTANTS / 10);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_known),
		cmocka_unit_test(test_values),
		cmocka_unit_test(test_mutations),
	};

	return cmocka_run_group_tests_name("chatscan", tests, NULL, NULL);
}
