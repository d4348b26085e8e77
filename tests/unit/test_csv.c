/*
 * CSV writer: RFC 4180 quoting, CRLF rows, exact USD amounts from nano-USD,
 * the formula guard on text cells, numbers verbatim.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "csv.h"

static void
check(struct csv *c, const char *want)
{
	size_t len;
	const char *d = csv_data(c, &len);

	assert_non_null(d);
	assert_int_equal(len, strlen(want));
	assert_memory_equal(d, want, len);
}

static void
test_plain_rows(void **state)
{
	static const char *const cols[] = { "key", "requests", "cost_usd", NULL };
	struct csv c;

	(void)state;
	csv_init(&c);
	check(&c, "");
	csv_header(&c, cols);
	csv_text(&c, "z-ai/glm-5");
	csv_i64(&c, 42);
	csv_usd(&c, 1500000000);
	csv_end_row(&c);
	csv_text(&c, NULL);
	csv_i64(&c, -7);
	csv_usd(&c, 1);
	csv_end_row(&c);
	check(&c, "key,requests,cost_usd\r\nz-ai/glm-5,42,1.5\r\n,-7,0.000000001\r\n");
	csv_free(&c);
}

static void
test_quoting(void **state)
{
	struct csv c;

	(void)state;
	csv_init(&c);
	csv_text(&c, "a,b");
	csv_text(&c, "say \"hi\"");
	csv_text(&c, "two\r\nlines");
	csv_text(&c, "\"");
	csv_text(&c, "plain text");
	csv_end_row(&c);
	check(&c, "\"a,b\",\"say \"\"hi\"\"\",\"two\r\nlines\",\"\"\"\",plain text\r\n");
	csv_free(&c);
}

static void
test_formula_guard(void **state)
{
	struct csv c;

	(void)state;
	csv_init(&c);
	csv_text(&c, "=HYPERLINK(\"x\")");
	csv_text(&c, "+1");
	csv_text(&c, "-2");
	csv_text(&c, "@sum");
	csv_usd(&c, -2500000000LL);	/* amounts are numbers: no guard */
	csv_raw(&c, "-3");
	csv_end_row(&c);
	check(&c, "\"'=HYPERLINK(\"\"x\"\")\",'+1,'-2,'@sum,-2.5,-3\r\n");
	csv_free(&c);
}

static void
test_numbers(void **state)
{
	struct csv c;

	(void)state;
	csv_init(&c);
	csv_double(&c, 0.25);
	csv_double(&c, 0.1);
	csv_double(&c, 1.0 / 3.0);
	csv_double(&c, 0);
	csv_empty(&c);
	csv_i64(&c, INT64_MAX);
	csv_usd(&c, INT64_MIN);
	csv_end_row(&c);
	check(&c, "0.25,0.1,0.3333333333333333,0,,9223372036854775807,-9223372036.854775808\r\n");
	csv_free(&c);
}

static void
test_grows(void **state)
{
	struct csv c;
	size_t len;

	(void)state;
	csv_init(&c);
	for (int i = 0; i < 10000; i++) {
		csv_i64(&c, i);
		csv_end_row(&c);
	}
	assert_non_null(csv_data(&c, &len));
	assert_int_equal(len, 10 * 3 + 90 * 4 + 900 * 5 + 9000 * 6);
	assert_memory_equal(csv_data(&c, &len) + len - 6, "9999\r\n", 6);
	csv_free(&c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_rows),
		cmocka_unit_test(test_quoting),
		cmocka_unit_test(test_formula_guard),
		cmocka_unit_test(test_numbers),
		cmocka_unit_test(test_grows),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
