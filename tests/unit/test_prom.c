/*
 * prom: the text exposition format, byte for byte.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "prom.h"

/* The buffer's text (NUL-terminated; freed with the buffer). */
static const char *
text(struct evbuffer *b)
{
	evbuffer_add(b, "", 1);
	return (const char *)evbuffer_pullup(b, -1);
}

static void
test_counter_and_gauge(void **state)
{
	struct evbuffer *b = evbuffer_new();

	(void)state;
	prom_counter(b, "x_total", "things done", 42);
	prom_gauge(b, "x_depth", "queued\\now\nnext", 2.5);
	assert_string_equal(text(b), "# HELP x_total things done\n# TYPE x_total counter\nx_total 42\n"
				     "# HELP x_depth queued\\\\now\\nnext\n# TYPE x_depth gauge\nx_depth 2.5\n");
	evbuffer_free(b);
}

static void
test_labels_escaped(void **state)
{
	struct evbuffer *b = evbuffer_new();
	const char *const l[] = { "provider", "a\"b\\c\nd", "outcome", "ok", NULL };

	(void)state;
	prom_sample_int(b, "y_total", l, 7);
	prom_sample(b, "y", NULL, NAN);
	prom_sample(b, "y", NULL, INFINITY);
	prom_sample(b, "y", NULL, -INFINITY);
	prom_sample(b, "y", NULL, 1e300);
	assert_string_equal(text(b), "y_total{provider=\"a\\\"b\\\\c\\nd\",outcome=\"ok\"} 7\n"
				     "y NaN\ny +Inf\ny -Inf\ny 1e+300\n");
	evbuffer_free(b);
}

/* Buckets are cumulative, a value equal to a bound counts in it, values
 * above the last bound only in +Inf; _count is the +Inf bucket. */
static void
test_histogram(void **state)
{
	static const double le[] = { 0.1, 1, 10 };
	const char *const l[] = { "kind", "json", NULL };
	struct evbuffer *b = evbuffer_new();
	struct prom_hist h;

	(void)state;
	prom_hist_init(&h, le, 3);
	prom_hist_observe(&h, 0.05);
	prom_hist_observe(&h, 0.1);
	prom_hist_observe(&h, 5);
	prom_hist_observe(&h, 99);
	assert_int_equal(prom_hist_count(&h), 4);
	prom_hist_write(b, "z_seconds", l, &h);
	assert_string_equal(text(b), "z_seconds_bucket{kind=\"json\",le=\"0.1\"} 2\n"
				     "z_seconds_bucket{kind=\"json\",le=\"1\"} 2\n"
				     "z_seconds_bucket{kind=\"json\",le=\"10\"} 3\n"
				     "z_seconds_bucket{kind=\"json\",le=\"+Inf\"} 4\n"
				     "z_seconds_sum{kind=\"json\"} 104.15\n"
				     "z_seconds_count{kind=\"json\"} 4\n");
	evbuffer_free(b);
}

/* Unlabelled, and the shared seconds buckets: ascending, le printed short. */
static void
test_seconds_buckets(void **state)
{
	struct evbuffer *b = evbuffer_new();
	struct prom_hist h;
	const char *t;

	(void)state;
	for (int i = 1; i < PROM_SECONDS_N; i++)
		assert_true(prom_seconds_le[i] > prom_seconds_le[i - 1]);
	prom_hist_init(&h, prom_seconds_le, PROM_SECONDS_N);
	prom_hist_observe(&h, 0.0004);
	prom_hist_write(b, "s", NULL, &h);
	t = text(b);
	assert_non_null(strstr(t, "s_bucket{le=\"0.001\"} 1\n"));
	assert_non_null(strstr(t, "s_bucket{le=\"0.0025\"} 1\n"));
	assert_non_null(strstr(t, "s_bucket{le=\"300\"} 1\n"));
	assert_non_null(strstr(t, "s_bucket{le=\"+Inf\"} 1\ns_sum 0.0004\ns_count 1\n"));
	evbuffer_free(b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_counter_and_gauge),
		cmocka_unit_test(test_labels_escaped),
		cmocka_unit_test(test_histogram),
		cmocka_unit_test(test_seconds_buckets),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
