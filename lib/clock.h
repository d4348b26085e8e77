/*
 * clock: the two times every process reads. Wall-clock milliseconds for
 * what is shared or stored (Redis keys and TTL-like stamps, event times,
 * cache expiries compared across processes); monotonic time for durations
 * measured within one process (latencies, lingers, time-outs).
 */
#ifndef AGORA_CLOCK_H
#define AGORA_CLOCK_H

#include <stdint.h>

int64_t clock_wall_ms(void);
int64_t clock_mono_ms(void);
int64_t clock_mono_us(void);

#endif
