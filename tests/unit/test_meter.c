/*
 * meter_event_json: the usage event as billing reads it; every string
 * well-formed UTF-8 (a provider's finish_reason or a client's title with a
 * bad byte gets U+FFFD, so PostgreSQL's text takes the event), the rest as
 * given.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "meter.h"
#include "utf8.h"

static cJSON *
event(const char *finish, const char *title)
{
	struct usage_event ev = {
		.id = "gen-1-abc", .ts_ms = 1764120000000, .account_id = 7, .key_id = 9,
		.app_title = title, .model = "m/x", .author = "m", .provider = "p", .endpoint_id = 3,
		.prompt_tokens = 5, .completion_tokens = 12, .cost_nusd = 1234, .status = 200, .attempts = 1,
		.finish_reason = finish,
	};
	char *s = meter_event_json(&ev);
	cJSON *o;

	assert_non_null(s);
	assert_true(utf8_valid(s, strlen(s)));
	o = cJSON_Parse(s);
	free(s);
	assert_non_null(o);
	return o;
}

static const char *
str(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

	return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void
test_valid_strings_as_given(void **state)
{
	cJSON *o = event("stop", "Caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac");

	(void)state;
	assert_string_equal(str(o, "finish"), "stop");
	assert_string_equal(str(o, "app_title"), "Caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac");
	assert_int_equal(cJSON_GetObjectItemCaseSensitive(o, "cost")->valuedouble, 1234);
	cJSON_Delete(o);
}

static void
test_bad_bytes_replaced(void **state)
{
	/* a lead byte Unicode never uses, a character cut short, a lone
	 * continuation byte */
	cJSON *o = event("st\xf5op", "ti\xe6\x97tle\x80");

	(void)state;
	assert_string_equal(str(o, "finish"), "st\xef\xbf\xbdop");
	assert_string_equal(str(o, "app_title"), "ti\xef\xbf\xbd\xef\xbf\xbdtle\xef\xbf\xbd");
	cJSON_Delete(o);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_strings_as_given),
		cmocka_unit_test(test_bad_bytes_replaced),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
