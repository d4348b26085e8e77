/*
 * Dates and buckets of the analytics: strict YYYY-MM-DD parsing (real
 * calendar dates only), formatting, Monday weeks, months, bucket lists and
 * lookups, ISO minutes; and query-string parameters (decoding, bounds).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "days.h"
#include "qparam.h"

static int32_t
D(const char *s)
{
	int32_t d = -999999;

	assert_int_equal(days_parse(s, &d), 0);
	return d;
}

static void
test_parse_format(void **state)
{
	static const char *const bad[] = { "", "2025-1-01", "2025-01-1", "2025-13-01", "2025-00-10",
					   "2025-02-29", "2023-04-31", "2025-01-01x", " 2025-01-01",
					   "2025/01/01", "0999-12-31", "abcd-ef-gh", "2025-01-+1" };
	char buf[DAYS_DATE_LEN];
	int32_t d;

	(void)state;
	assert_int_equal(D("1970-01-01"), 0);
	assert_int_equal(D("1970-01-02"), 1);
	assert_int_equal(D("1969-12-31"), -1);
	assert_int_equal(D("2000-03-01") - D("2000-02-28"), 2);	/* 2000 is a leap year */
	assert_int_equal(D("1900-03-01") - D("1900-02-28"), 1);	/* 1900 is not */
	assert_int_equal(D("2024-02-29") + 1, D("2024-03-01"));
	assert_int_equal(D("2025-01-01"), 20089);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(days_parse(bad[i], &d), -1);
	assert_int_equal(days_parse(NULL, &d), -1);
	for (d = D("1999-12-25"); d < D("2001-01-10"); d++) {
		int32_t back;

		days_format(d, buf);
		assert_int_equal(days_parse(buf, &back), 0);
		assert_int_equal(back, d);
	}
	days_format(D("2024-02-29"), buf);
	assert_string_equal(buf, "2024-02-29");
	assert_true(days_today() > D("2024-01-01"));
}

static void
test_weeks_months(void **state)
{
	(void)state;
	assert_int_equal(days_weekday(D("1970-01-01")), 3);		/* Thursday */
	assert_int_equal(days_weekday(D("2025-01-06")), 0);		/* Monday */
	assert_int_equal(days_weekday(D("2025-01-05")), 6);		/* Sunday */
	assert_int_equal(days_weekday(D("1969-12-29")), 0);
	assert_int_equal(days_bucket(D("2025-01-05"), DAYS_WEEK), D("2024-12-30"));
	assert_int_equal(days_bucket(D("2025-01-06"), DAYS_WEEK), D("2025-01-06"));
	assert_int_equal(days_bucket(D("2025-01-12"), DAYS_WEEK), D("2025-01-06"));
	assert_int_equal(days_bucket(D("2025-02-28"), DAYS_MONTH), D("2025-02-01"));
	assert_int_equal(days_bucket(D("2025-02-28"), DAYS_DAY), D("2025-02-28"));
	assert_int_equal(days_bucket_next(D("2024-12-01"), DAYS_MONTH), D("2025-01-01"));
	assert_int_equal(days_bucket_next(D("2024-02-01"), DAYS_MONTH), D("2024-03-01"));
	assert_int_equal(days_bucket_next(D("2024-12-30"), DAYS_WEEK), D("2025-01-06"));
	assert_int_equal(days_interval_parse("week"), DAYS_WEEK);
	assert_int_equal(days_interval_parse("month"), DAYS_MONTH);
	assert_int_equal(days_interval_parse("day"), DAYS_DAY);
	assert_int_equal(days_interval_parse("Week"), -1);
	assert_int_equal(days_interval_parse(NULL), -1);
	assert_string_equal(days_interval_name(DAYS_MONTH), "month");
}

static void
test_bucket_lists(void **state)
{
	int32_t b[64];

	(void)state;
	/* a Wednesday to a Wednesday two weeks on: three Monday weeks */
	assert_int_equal(days_buckets(D("2025-01-01"), D("2025-01-15"), DAYS_WEEK, b, 64), 3);
	assert_int_equal(b[0], D("2024-12-30"));
	assert_int_equal(b[2], D("2025-01-13"));
	assert_int_equal(days_buckets(D("2025-01-15"), D("2025-04-01"), DAYS_MONTH, b, 64), 3);
	assert_int_equal(b[1], D("2025-02-01"));
	assert_int_equal(days_buckets(D("2025-01-01"), D("2025-01-31"), DAYS_DAY, b, 64), 30);
	assert_int_equal(days_buckets(D("2025-01-01"), D("2025-03-31"), DAYS_DAY, b, 64), -1);	/* too many */
	assert_int_equal(days_buckets(D("2025-01-02"), D("2025-01-02"), DAYS_DAY, b, 64), -1);	/* empty */
	assert_int_equal(days_buckets(D("2025-01-15"), D("2025-04-01"), DAYS_MONTH, b, 64), 3);
	assert_int_equal(days_bucket_index(b, 3, D("2025-01-15")), 0);
	assert_int_equal(days_bucket_index(b, 3, D("2025-02-01")), 1);
	assert_int_equal(days_bucket_index(b, 3, D("2025-03-31")), 2);
	assert_int_equal(days_bucket_index(b, 3, D("2024-12-31")), -1);
}

static void
test_whole_months(void **state)
{
	int32_t a, b;

	(void)state;
	days_whole_months(D("2025-01-01"), D("2025-02-01"), &a, &b);	/* exactly January */
	assert_int_equal(a, D("2025-01-01"));
	assert_int_equal(b, D("2025-02-01"));
	days_whole_months(D("2024-12-15"), D("2025-03-10"), &a, &b);	/* January and February */
	assert_int_equal(a, D("2025-01-01"));
	assert_int_equal(b, D("2025-03-01"));
	days_whole_months(D("2025-01-02"), D("2025-02-01"), &a, &b);	/* none: a day short */
	assert_int_equal(a, D("2025-01-02"));
	assert_int_equal(b, D("2025-01-02"));
	days_whole_months(D("2025-01-01"), D("2025-01-31"), &a, &b);
	assert_int_equal(a, b);
	days_whole_months(D("2025-01-20"), D("2025-02-10"), &a, &b);	/* spans a month start only */
	assert_int_equal(a, b);
	days_whole_months(D("2024-11-01"), D("2025-01-01"), &a, &b);	/* across a year */
	assert_int_equal(a, D("2024-11-01"));
	assert_int_equal(b, D("2025-01-01"));
}

static void
test_month_cover(void **state)
{
	int32_t a, b;

	(void)state;
	days_month_cover(D("2025-01-01"), D("2025-02-01"), &a, &b);	/* exactly January */
	assert_int_equal(a, D("2025-01-01"));
	assert_int_equal(b, D("2025-02-01"));
	/* the last 30 days on Nov 26: Oct 27-31 by day, November minus Nov 26-30 */
	days_month_cover(D("2025-10-27"), D("2025-11-26"), &a, &b);
	assert_int_equal(a, D("2025-11-01"));
	assert_int_equal(b, D("2025-12-01"));
	/* Oct 5 - Nov 3: October minus Oct 1-4, Nov 1-2 by day */
	days_month_cover(D("2025-10-05"), D("2025-11-03"), &a, &b);
	assert_int_equal(a, D("2025-10-01"));
	assert_int_equal(b, D("2025-11-01"));
	/* a few days inside a month: by day */
	days_month_cover(D("2025-10-10"), D("2025-10-15"), &a, &b);
	assert_int_equal(a, b);
	/* most of one month: the month minus its edges */
	days_month_cover(D("2025-10-02"), D("2025-10-30"), &a, &b);
	assert_int_equal(a, D("2025-10-01"));
	assert_int_equal(b, D("2025-11-01"));
	/* half and half is done by day (no saving) */
	days_month_cover(D("2025-01-16"), D("2025-01-31"), &a, &b);
	assert_int_equal(a, b);
	/* a quarter with ragged ends */
	days_month_cover(D("2024-12-20"), D("2025-03-10"), &a, &b);
	assert_int_equal(a, D("2025-01-01"));
	assert_int_equal(b, D("2025-03-01"));
}

static void
test_iso_minute(void **state)
{
	char buf[DAYS_MINUTE_LEN];

	(void)state;
	days_iso_minute(0, buf);
	assert_string_equal(buf, "1970-01-01T00:00:00Z");
	days_iso_minute(29000000, buf);		/* 1,740,000,000 s */
	assert_string_equal(buf, "2025-02-19T21:20:00Z");
	days_iso_minute((int64_t)D("2024-02-29") * 1440 + 1439, buf);
	assert_string_equal(buf, "2024-02-29T23:59:00Z");
}

static void
test_qparam(void **state)
{
	const char *q = "by=model&metric=spend&from=2025-01-01&label=a%20b+c%2Fd&empty=&flag&bad=%zz&ctl=%0a";
	char buf[32];
	int64_t v;

	(void)state;
	assert_int_equal(qparam_get(q, "by", buf, sizeof(buf)), 1);
	assert_string_equal(buf, "model");
	assert_int_equal(qparam_get(q, "from", buf, sizeof(buf)), 1);
	assert_string_equal(buf, "2025-01-01");
	assert_int_equal(qparam_get(q, "label", buf, sizeof(buf)), 1);
	assert_string_equal(buf, "a b c/d");
	assert_int_equal(qparam_get(q, "empty", buf, sizeof(buf)), 1);
	assert_string_equal(buf, "");
	assert_int_equal(qparam_get(q, "flag", buf, sizeof(buf)), 1);
	assert_int_equal(qparam_get(q, "b", buf, sizeof(buf)), 0);	/* a prefix of "by" and "bad" */
	assert_int_equal(qparam_get(q, "metr", buf, sizeof(buf)), 0);
	assert_int_equal(qparam_get(q, "bad", buf, sizeof(buf)), -1);
	assert_int_equal(qparam_get(q, "ctl", buf, sizeof(buf)), -1);
	assert_int_equal(qparam_get("x=%4", "x", buf, sizeof(buf)), -1);
	assert_int_equal(qparam_get("x=%41", "x", buf, sizeof(buf)), 1);
	assert_string_equal(buf, "A");
	assert_int_equal(qparam_get("x=123456", "x", buf, 6), -1);	/* too long */
	assert_int_equal(qparam_get("x=12345", "x", buf, 6), 1);
	assert_int_equal(qparam_get("", "x", buf, sizeof(buf)), 0);
	assert_int_equal(qparam_int("10", 1, 100, &v), 0);
	assert_int_equal(v, 10);
	assert_int_equal(qparam_int("0", 1, 100, &v), -1);
	assert_int_equal(qparam_int("101", 1, 100, &v), -1);
	assert_int_equal(qparam_int("1x", 1, 100, &v), -1);
	assert_int_equal(qparam_int(" 1", 1, 100, &v), -1);
	assert_int_equal(qparam_int("", 1, 100, &v), -1);
	assert_int_equal(qparam_int("99999999999999999999", 1, INT64_MAX, &v), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_format),
		cmocka_unit_test(test_weeks_months),
		cmocka_unit_test(test_bucket_lists),
		cmocka_unit_test(test_whole_months),
		cmocka_unit_test(test_month_cover),
		cmocka_unit_test(test_iso_minute),
		cmocka_unit_test(test_qparam),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
