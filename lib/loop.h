/*
 * loop: the event base every Agora process runs on.
 */
#ifndef AGORA_LOOP_H
#define AGORA_LOOP_H

#include <event2/event.h>

/* An event base whose epoll changes are applied once a loop turn (the
 * changelist): an event added and deleted in the same turn, as a write
 * event armed and flushed at once, costs no epoll_ctl. Nothing of ours
 * watches a dup()'d descriptor, the changelist's one caveat. Its clock is
 * CLOCK_MONOTONIC, not libevent's default CLOCK_MONOTONIC_COARSE, which
 * moves in ticks (4 ms at HZ=250): timers fire when due, and the time it
 * caches for a turn (clock_loop_ms) is exact. NULL on failure. */
struct event_base *loop_base_new(void);

/* Arms the timer ev to fire in ms (again, if it was). */
void loop_timer_in(struct event *ev, int ms);
/* The same unless ev is pending or active already: the earlier time wins. */
void loop_timer_once(struct event *ev, int ms);

#endif
