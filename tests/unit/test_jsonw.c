/*
 * jsonw: hand-written JSON text agrees with cJSON's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "jsonw.h"

/* Every byte 1..255 in a string escapes as cJSON escapes it. */
static void
test_strings_match_cjson(void **state)
{
	char s[4];

	(void)state;
	for (int c = 1; c < 256; c++) {
		struct jsonw w = { 0 };
		cJSON *o = NULL;
		char *want;

		s[0] = 'a';
		s[1] = (char)c;
		s[2] = 'z';
		s[3] = '\0';
		o = cJSON_CreateString(s);
		want = cJSON_PrintUnformatted(o);
		jsonw_string(&w, s);
		assert_false(w.oom);
		assert_string_equal(w.p, want);
		free(w.p);
		cJSON_free(want);
		cJSON_Delete(o);
	}
}

static void
test_ints_and_growth(void **state)
{
	static const int64_t v[] = { 0, 7, -7, 1234567890123LL, INT64_MAX, INT64_MIN };
	static const char *const want[] = { "0", "7", "-7", "1234567890123", "9223372036854775807",
					    "-9223372036854775808" };
	struct jsonw w = { 0 };

	(void)state;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		w.len = 0;
		jsonw_int(&w, v[i]);
		assert_string_equal(w.p, want[i]);
	}
	w.len = 0;
	for (int i = 0; i < 10000; i++)
		JSONW_LIT(&w, "0123456789");
	assert_int_equal(w.len, 100000);
	assert_int_equal(strlen(w.p), 100000);
	free(w.p);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_strings_match_cjson),
		cmocka_unit_test(test_ints_and_growth),
	};

	return cmocka_run_group_tests_name("jsonw", tests, NULL, NULL);
}
