/*
 * loop: the event base every Agora process runs on (see loop.h).
 */
#include "loop.h"

struct event_base *
loop_base_new(void)
{
	struct event_config *cfg = event_config_new();
	struct event_base *base;

	if (!cfg)
		return NULL;
	event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
	base = event_base_new_with_config(cfg);
	event_config_free(cfg);
	return base;
}

void
loop_timer_in(struct event *ev, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	evtimer_add(ev, &tv);
}

void
loop_timer_once(struct event *ev, int ms)
{
	if (!evtimer_pending(ev, NULL))
		loop_timer_in(ev, ms);
}
