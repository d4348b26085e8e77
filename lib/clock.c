/*
 * clock: wall and monotonic time in integer units (see clock.h).
 */
#include "clock.h"

#include <sys/time.h>
#include <time.h>

#include <event2/event.h>

static struct event_base *loop_base;	/* clock_loop_ms's (one loop a process) */

int64_t
clock_wall_ms(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

int64_t
clock_mono_us(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

int64_t
clock_mono_ms(void)
{
	return clock_mono_us() / 1000;
}

void
clock_loop_set(struct event_base *base)
{
	loop_base = base;
}

int64_t
clock_loop_ms(void)
{
	struct timeval tv;

	if (!loop_base || event_base_gettimeofday_cached(loop_base, &tv) != 0)
		return clock_wall_ms();
	return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}
