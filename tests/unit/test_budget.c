/*
 * Budget leases: the arithmetic of a lease request (how much to ask, what
 * to keep, what to give back), and a router's local lease with Redis away
 * (reservations then fall back, and their costs are kept for later).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "budget.h"

#define USD 1000000000LL

static void
test_want(void **state)
{
	(void)state;
	/* plenty left: a whole lease */
	assert_int_equal(budget_want(USD / 2, 0, 100 * USD), USD / 2);
	/* near the end: half of what is left, so other routers keep a share */
	assert_int_equal(budget_want(USD / 2, 0, USD / 2), USD / 4);
	assert_int_equal(budget_want(USD / 2, 0, 1), 0);
	/* never less than what the waiting requests lack */
	assert_int_equal(budget_want(USD / 2, USD, 100 * USD), USD);
	assert_int_equal(budget_want(USD / 2, 1000, 0), 1000);
	assert_int_equal(budget_want(USD / 2, 1000, -5 * USD), 1000);	/* overspent: only the need */
	assert_int_equal(budget_want(USD / 2, 0, -5 * USD), 0);		/* nothing to prefetch */
}

static void
test_grant(void **state)
{
	int64_t give = -1;

	(void)state;
	/* credits 10, counter 2 before: asking 5 gets 5 */
	assert_int_equal(budget_grant(10 * USD, 7 * USD, 5 * USD, USD, &give), 5 * USD);
	assert_int_equal(give, 0);
	/* exactly what is left */
	assert_int_equal(budget_grant(10 * USD, 10 * USD, 8 * USD, USD, &give), 8 * USD);
	assert_int_equal(give, 0);
	/* 3 left, asking 5 with 1 needed: keep 3, give 2 back */
	assert_int_equal(budget_grant(10 * USD, 12 * USD, 5 * USD, USD, &give), 3 * USD);
	assert_int_equal(give, 2 * USD);
	/* 3 left, 4 needed: keep nothing, give all back */
	assert_int_equal(budget_grant(10 * USD, 12 * USD, 5 * USD, 4 * USD, &give), 0);
	assert_int_equal(give, 5 * USD);
	/* a prefetch keeps whatever is left */
	assert_int_equal(budget_grant(10 * USD, 14 * USD, 5 * USD, 0, &give), USD);
	assert_int_equal(give, 4 * USD);
	/* nothing left, or overspent already */
	assert_int_equal(budget_grant(10 * USD, 15 * USD, 5 * USD, 0, &give), 0);
	assert_int_equal(give, 5 * USD);
	assert_int_equal(budget_grant(10 * USD, 20 * USD, 5 * USD, 0, &give), 0);
	assert_int_equal(give, 5 * USD);
	/* a counter far off does not overflow into a grant */
	assert_int_equal(budget_grant(INT64_MAX, INT64_MIN + 5, 10, 0, &give), 0);
	assert_int_equal(give, 10);
}

static void
test_grant_never_passes_credits(void **state)
{
	(void)state;
	/* Whatever the order of lease requests, counter (spent + leased) never
	 * ends above the credits: each keeps at most what was left. */
	for (int64_t credits = 0; credits < 40; credits += 3)
		for (int64_t start = 0; start < 45; start += 4)
			for (int64_t asked = 1; asked < 20; asked += 2)
				for (int64_t need = 0; need <= asked; need += 3) {
					int64_t give, value = start + asked;
					int64_t got = budget_grant(credits, value, asked, need, &give);

					assert_int_equal(got + give, asked);
					assert_true(got >= 0 && give >= 0);
					if (got > 0) {
						assert_true(value - give <= credits);
						assert_true(got >= need);
					}
				}
}

static void
test_add_saturates(void **state)
{
	(void)state;
	assert_int_equal(budget_add(1, 2), 3);
	assert_int_equal(budget_add(-1, 2), 2);
	assert_int_equal(budget_add(BUDGET_MAX, 1), BUDGET_MAX);
	assert_int_equal(budget_add(INT64_MAX, INT64_MAX), BUDGET_MAX);
}

static void
never_called(struct budget_hold *h, enum budget_result r, int64_t available, void *arg)
{
	(void)h;
	(void)r;
	(void)available;
	(void)arg;
	fail();
}

static void
test_redis_away_falls_back(void **state)
{
	struct event_base *base = event_base_new();
	struct rds *rd = rds_new_standalone(base, "127.0.0.1", 1);	/* never connected */
	struct budget *b = budget_new(base, rd, USD / 2, 1000);
	struct budget_hold h1, h2;
	int64_t avail;

	(void)state;
	assert_non_null(b);
	assert_int_equal(budget_reserve(b, &h1, 7, 10 * USD, 0, USD, never_called, NULL, &avail), BUDGET_FALLBACK);
	assert_int_equal(budget_reserve(b, &h2, 7, 10 * USD, 0, USD, never_called, NULL, &avail), BUDGET_FALLBACK);
	budget_done(b, &h1, USD / 10);
	budget_done(b, &h1, USD / 10);	/* twice: harmless */
	budget_done(b, &h2, 0);
	budget_free(b);
	rds_free(rd);
	event_base_free(base);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_want),
		cmocka_unit_test(test_grant),
		cmocka_unit_test(test_grant_never_passes_credits),
		cmocka_unit_test(test_add_saturates),
		cmocka_unit_test(test_redis_away_falls_back),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
