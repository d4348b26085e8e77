/*
 * rstats: outcomes per provider (bounded table, "other" past it), outcomes
 * derived from statuses, answers by class.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rstats.h"

static char *
render(const struct rstats *s)
{
	struct evbuffer *b = evbuffer_new();
	char *t;

	rstats_write(s, b);
	evbuffer_add(b, "", 1);
	t = strdup((const char *)evbuffer_pullup(b, -1));
	evbuffer_free(b);
	return t;
}

static void
test_outcomes(void **state)
{
	struct rstats *s = rstats_new();
	char *t;

	(void)state;
	rstats_attempt(s, "alpha", RS_NONE, 200);
	rstats_attempt(s, "alpha", RS_NONE, 429);
	rstats_attempt(s, "alpha", RS_NONE, 504);
	rstats_attempt(s, "alpha", RS_NONE, 499);
	rstats_attempt(s, "alpha", RS_NONE, 404);
	rstats_attempt(s, "alpha", RS_NONE, 502);
	rstats_attempt(s, "alpha", RS_CUT, 502);
	rstats_response(s, 200);
	rstats_response(s, 503);
	rstats_response(s, 42);
	rstats_completion(s, 1, 1500, 200);
	t = render(s);
	for (int o = RS_OK; o < RS_NOUTCOMES; o++) {
		char line[160];
		int want = o == RS_OK || o == RS_HTTP_429 || o == RS_TIMEOUT || o == RS_CANCELLED || o == RS_HTTP_4XX ||
			   o == RS_HTTP_5XX || o == RS_CUT;

		snprintf(line, sizeof(line), "agora_router_upstream_outcomes_total{provider=\"alpha\",outcome=\"%s\"} %d\n",
			 rstats_outcome_name((enum rstats_outcome)o), want);
		assert_non_null(strstr(t, line));
	}
	assert_non_null(strstr(t, "agora_router_responses_total{code=\"2xx\"} 1\n"));
	assert_non_null(strstr(t, "agora_router_responses_total{code=\"5xx\"} 1\n"));
	assert_non_null(strstr(t, "agora_router_request_duration_seconds_bucket{kind=\"stream\",le=\"2.5\"} 1\n"));
	assert_non_null(strstr(t, "agora_router_ttft_seconds_bucket{kind=\"stream\",le=\"0.1\"} 0\n"));
	assert_non_null(strstr(t, "agora_router_ttft_seconds_count{kind=\"json\"} 0\n"));
	assert_null(strstr(t, "provider=\"other\""));
	free(t);
	rstats_free(s);
}

/* Past three quarters of the table, new providers count as "other"; the
 * ones already in keep their own series. */
static void
test_provider_table_bounded(void **state)
{
	struct rstats *s = rstats_new();
	char id[32], line[160], *t;
	int own = 0;

	(void)state;
	for (int i = 0; i < 300; i++) {
		snprintf(id, sizeof(id), "p%d", i);
		rstats_attempt(s, id, RS_OK, 200);
		rstats_attempt(s, id, RS_OK, 200);
	}
	t = render(s);
	for (int i = 0; i < 300; i++) {
		snprintf(line, sizeof(line), "{provider=\"p%d\",outcome=\"ok\"} 2\n", i);
		own += strstr(t, line) != NULL;
	}
	assert_int_equal(own, RSTATS_PROVIDERS * 3 / 4);
	snprintf(line, sizeof(line), "{provider=\"other\",outcome=\"ok\"} %d\n", 2 * (300 - own));
	assert_non_null(strstr(t, line));
	free(t);
	rstats_free(s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_outcomes),
		cmocka_unit_test(test_provider_table_bounded),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
