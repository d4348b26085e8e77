/*
 * clock: the two times every process reads. Wall-clock milliseconds for
 * what is shared or stored (Redis keys and TTL-like stamps, event times,
 * cache expiries compared across processes); monotonic time for durations
 * measured within one process (latencies, lingers, time-outs).
 */
#ifndef AGORA_CLOCK_H
#define AGORA_CLOCK_H

#include <stdint.h>

struct event_base;

int64_t clock_wall_ms(void);
int64_t clock_mono_ms(void);
int64_t clock_mono_us(void);

/* The loop's time: wall-clock milliseconds as of when the current turn of
 * the process's loop began (libevent's cached time, read once a turn), for
 * the stamps a request takes a dozen of; outside the loop's callbacks, or
 * before clock_loop_set, the time now. As nginx's cached time: a stamp is
 * late by what the turn has run before it, and libevent adjusts the cache
 * to a stepped wall clock within 5 s. */
void clock_loop_set(struct event_base *base);
int64_t clock_loop_ms(void);

#endif
