/*
 * Money: integer cost arithmetic (nano-USD from micro-USD per Mtok), exact
 * decimal formatting and parsing, overflow and sign handling.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "money.h"

static void
test_cost(void **state)
{
	(void)state;
	assert_int_equal(money_cost_nusd(1000000, 800000), 800000000);	/* 1 Mtok at $0.80 = $0.80 */
	assert_int_equal(money_cost_nusd(1, 800000), 800);
	assert_int_equal(money_cost_nusd(10, 2560000), 25600);
	assert_int_equal(money_cost_nusd(0, 123), 0);
	assert_int_equal(money_cost_nusd(1, 999), 0);				/* rounds down */
	assert_int_equal(money_cost_nusd(3, 333), 0);
	assert_int_equal(money_cost_nusd(3, 334), 1);
	assert_int_equal(money_cost_nusd(-1, 5), -1);
	assert_int_equal(money_cost_nusd(5, -1), -1);
	assert_int_equal(money_cost_nusd(INT64_MAX, 1000), INT64_MAX);
	assert_int_equal(money_cost_nusd(INT64_MAX, 1001), -1);			/* overflow refused */
	assert_int_equal(money_cost_nusd(1LL << 40, 1000000000LL), (int64_t)((1LL << 40) * 1000000LL));
}

static void
check_fmt(int64_t v, int scale, const char *want)
{
	char buf[64];
	int n = money_format_scaled(v, scale, buf, sizeof(buf));

	assert_int_equal(n, (int)strlen(want));
	assert_string_equal(buf, want);
}

static void
test_format(void **state)
{
	char small[8];

	(void)state;
	check_fmt(0, 9, "0");
	check_fmt(1, 9, "0.000000001");
	check_fmt(1234, 9, "0.000001234");
	check_fmt(1000000000, 9, "1");
	check_fmt(1500000000, 9, "1.5");
	check_fmt(-1500000000, 9, "-1.5");
	check_fmt(-1, 9, "-0.000000001");
	check_fmt(INT64_MAX, 9, "9223372036.854775807");
	check_fmt(INT64_MIN, 9, "-9223372036.854775808");
	check_fmt(42, 0, "42");
	check_fmt(800000, 12, "0.0000008");
	check_fmt(2560000, 12, "0.00000256");
	assert_int_equal(money_format_scaled(1, 9, small, sizeof(small)), -1);
	assert_int_equal(money_format_scaled(1, 19, small, sizeof(small)), -1);
}

static void
test_price_per_token(void **state)
{
	char buf[64];

	(void)state;
	money_format_price_per_token(800000, buf, sizeof(buf));
	assert_string_equal(buf, "0.0000008");
	money_format_price_per_token(15000000, buf, sizeof(buf));
	assert_string_equal(buf, "0.000015");
	money_format_price_per_token(0, buf, sizeof(buf));
	assert_string_equal(buf, "0");
	money_format_usd(20800, buf, sizeof(buf));
	assert_string_equal(buf, "0.0000208");
}

static void
test_parse(void **state)
{
	static const struct { const char *in; int64_t want; } ok[] = {
		{ "12.5", 12500000000LL }, { "0.000000001", 1 }, { "100", 100000000000LL },
		{ "-3", -3000000000LL }, { "0", 0 }, { ".5", 500000000 }, { "7.", 7000000000LL },
		{ "9223372036.854775807", INT64_MAX },
	};
	static const char *const bad[] = { "", "-", ".", "1.0000000001", "abc", "1e3", "+5", "1.2.3",
					   "9223372036.854775808", "99999999999999999999", " 1", "1 " };
	int64_t v;

	(void)state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		assert_int_equal(money_parse_usd(ok[i].in, &v), 0);
		assert_int_equal(v, ok[i].want);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (money_parse_usd(bad[i], &v) != -1)
			fail_msg("'%s' was accepted", bad[i]);
}

static void
test_round_trip(void **state)
{
	char buf[64];
	int64_t v, back;

	(void)state;
	for (v = -2000000; v <= 2000000; v += 997) {
		money_format_usd(v * 1009, buf, sizeof(buf));
		assert_int_equal(money_parse_usd(buf, &back), 0);
		assert_int_equal(back, v * 1009);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cost),
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_price_per_token),
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_round_trip),
	};

	return cmocka_run_group_tests_name("money", tests, NULL, NULL);
}
