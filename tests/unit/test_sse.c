/*
 * SSE framing: events split at every possible byte boundary, CRLF/CR/LF,
 * multi-line data, comments, event names, and the size bound.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "sse.h"

struct seen {
	char log[4096];
	int events, comments, stop_after;
};

static int
on_event(void *arg, const char *event, const char *data, size_t len, int comment)
{
	struct seen *s = arg;
	size_t n = strlen(s->log);

	if (comment) {
		s->comments++;
		return 0;
	}
	s->events++;
	snprintf(s->log + n, sizeof(s->log) - n, "[%s|%.*s]", event, (int)len, data);
	return s->stop_after && s->events >= s->stop_after ? 7 : 0;
}

static const char transcript[] =
	": keep-alive\n\n"
	"data: {\"a\":1}\n\n"
	"event: message_start\r\ndata: {\"b\":2}\r\n\r\n"
	"data:line1\ndata: line2\n\n"
	"id: 5\nretry: 10\ndata: [DONE]\n\n";

static const char expected[] = "[|{\"a\":1}][message_start|{\"b\":2}][|line1\nline2][|[DONE]]";

static void
test_whole(void **state)
{
	struct seen s = { 0 };
	struct sse *p = sse_new(1024, on_event, &s);

	(void)state;
	assert_int_equal(sse_feed(p, transcript, strlen(transcript)), 0);
	assert_string_equal(s.log, expected);
	assert_int_equal(s.comments, 1);
	assert_int_equal(sse_pending(p), 0);
	sse_free(p);
}

static void
test_every_split(void **state)
{
	size_t len = strlen(transcript);

	(void)state;
	for (size_t cut = 0; cut <= len; cut++) {
		struct seen s = { 0 };
		struct sse *p = sse_new(1024, on_event, &s);

		assert_int_equal(sse_feed(p, transcript, cut), 0);
		assert_int_equal(sse_feed(p, transcript + cut, len - cut), 0);
		assert_string_equal(s.log, expected);
		sse_free(p);
	}
}

static void
test_byte_at_a_time(void **state)
{
	struct seen s = { 0 };
	struct sse *p = sse_new(1024, on_event, &s);

	(void)state;
	for (size_t i = 0; transcript[i]; i++)
		assert_int_equal(sse_feed(p, transcript + i, 1), 0);
	assert_string_equal(s.log, expected);
	sse_free(p);
}

static void
test_cr_only(void **state)
{
	struct seen s = { 0 };
	struct sse *p = sse_new(1024, on_event, &s);
	const char in[] = "data: x\r\rdata: y\r\r";

	(void)state;
	assert_int_equal(sse_feed(p, in, strlen(in)), 0);
	assert_string_equal(s.log, "[|x][|y]");
	sse_free(p);
}

static void
test_bound(void **state)
{
	struct seen s = { 0 };
	struct sse *p = sse_new(16, on_event, &s);
	const char in[] = "data: 0123456789abcdefghij\n\n";

	(void)state;
	assert_int_equal(sse_feed(p, in, strlen(in)), -1);
	assert_int_equal(s.events, 0);
	sse_free(p);
}

static void
test_stop_and_reset(void **state)
{
	struct seen s = { .stop_after = 1 };
	struct sse *p = sse_new(1024, on_event, &s);
	const char in[] = "data: a\n\ndata: b\n\n";

	(void)state;
	assert_int_equal(sse_feed(p, in, strlen(in)), 7);
	assert_int_equal(s.events, 1);
	sse_reset(p);
	s.stop_after = 0;
	s.log[0] = '\0';
	assert_int_equal(sse_feed(p, "data: c\n\n", 9), 0);
	assert_string_equal(s.log, "[|c]");
	sse_free(p);
}

static void
test_no_data_no_event(void **state)
{
	struct seen s = { 0 };
	struct sse *p = sse_new(1024, on_event, &s);

	(void)state;
	assert_int_equal(sse_feed(p, "event: ping\n\n\n\n", 15), 0);
	assert_int_equal(s.events, 0);
	assert_int_equal(sse_feed(p, "data\n\n", 6), 0);	/* field without colon */
	assert_string_equal(s.log, "[|]");
	sse_free(p);
}

/* A callback may free the parser (its owner ended: the router's proxy frees
 * its parser when a provider's event breaks a started stream) and stop: the
 * parser must not be touched after (AddressSanitizer, under make asan). */
static struct sse *freed_parser;

static int
on_event_free(void *arg, const char *event, const char *data, size_t len, int comment)
{
	(void)arg;
	(void)event;
	(void)data;
	(void)len;
	sse_free(freed_parser);
	return comment ? 2 : 1;
}

static void
test_callback_frees_parser(void **state)
{
	(void)state;
	freed_parser = sse_new(1024, on_event_free, NULL);
	assert_int_equal(sse_feed(freed_parser, "data: a\n\ndata: b\n\n", 18), 1);
	freed_parser = sse_new(1024, on_event_free, NULL);
	assert_int_equal(sse_feed(freed_parser, ": hi\ndata: b\n\n", 15), 2);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_whole),
		cmocka_unit_test(test_every_split),
		cmocka_unit_test(test_byte_at_a_time),
		cmocka_unit_test(test_cr_only),
		cmocka_unit_test(test_bound),
		cmocka_unit_test(test_stop_and_reset),
		cmocka_unit_test(test_no_data_no_event),
		cmocka_unit_test(test_callback_frees_parser),
	};

	return cmocka_run_group_tests_name("sse", tests, NULL, NULL);
}
