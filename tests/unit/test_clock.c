/*
 * Clock: clock_loop_ms is the time a loop turn began, read once a turn,
 * and the time now outside the loop's callbacks.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <time.h>

#include <event2/event.h>

#include "clock.h"
#include "loop.h"

struct turn {
	int64_t loop_before, loop_after;	/* clock_loop_ms around the sleep */
	int64_t wall_before, wall_after;
};

static void
sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* A callback that takes 30 ms: its stamps stay the turn's. */
static void
slow_cb(evutil_socket_t fd, short what, void *arg)
{
	struct turn *t = arg;

	(void)fd;
	(void)what;
	t->loop_before = clock_loop_ms();
	t->wall_before = clock_wall_ms();
	sleep_ms(30);
	t->loop_after = clock_loop_ms();
	t->wall_after = clock_wall_ms();
}

static void
test_a_turn_reads_the_clock_once(void **state)
{
	struct event_base *base = loop_base_new();
	struct turn t = { 0, 0, 0, 0 };
	struct event *ev;

	(void)state;
	assert_non_null(base);
	clock_loop_set(base);
	ev = evtimer_new(base, slow_cb, &t);
	loop_timer_in(ev, 1);
	assert_int_equal(event_base_dispatch(base), 1);	/* no events left */
	assert_true(t.wall_after - t.wall_before >= 29);
	assert_int_equal(t.loop_after, t.loop_before);	/* the turn's time */
	assert_true(t.loop_before <= t.wall_before + 1);
	assert_true(t.loop_before >= t.wall_before - 5000);	/* a wall clock, not a monotonic one */
	/* outside the callbacks: the time now */
	sleep_ms(20);
	assert_true(clock_loop_ms() >= t.wall_after + 19);
	event_free(ev);
	clock_loop_set(NULL);
	event_base_free(base);
}

static void
test_without_a_loop_the_time_now(void **state)
{
	int64_t a, b;

	(void)state;
	clock_loop_set(NULL);
	a = clock_loop_ms();
	sleep_ms(15);
	b = clock_loop_ms();
	assert_true(b - a >= 14);
	assert_true(b <= clock_wall_ms());
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_turn_reads_the_clock_once),
		cmocka_unit_test(test_without_a_loop_the_time_now),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
