/*
 * log: the line's shape (time, process, level, message), access lines
 * written as given, buffered access lines held until another line, a flush
 * or log_unbuffer, in order.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "log.h"

static char out_path[] = "/tmp/agora-test-log-XXXXXX";
static int saved_stderr = -1;

static int
setup(void **state)
{
	int fd = mkstemp(out_path);

	(void)state;
	if (fd < 0)
		return -1;
	fflush(stderr);
	saved_stderr = dup(STDERR_FILENO);
	dup2(fd, STDERR_FILENO);
	close(fd);
	log_init("unit", LOG_INFO);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	dup2(saved_stderr, STDERR_FILENO);
	close(saved_stderr);
	unlink(out_path);
	return 0;
}

/* What was written since the last call. */
static char *
written(void)
{
	static long seen;
	FILE *f = fopen(out_path, "r");
	char *buf = calloc(1, 65536);
	size_t n;

	assert_non_null(f);
	fseek(f, seen, SEEK_SET);
	n = fread(buf, 1, 65535, f);
	seen += (long)n;
	fclose(f);
	return buf;
}

static void
test_shape(void **state)
{
	char want[512], *s;
	regex_t re;

	(void)state;
	log_access("gen-1 model=m status=200", 24);
	log_write(LOG_WARN, "x=%d", 7);
	log_debug("not at info");
	s = written();
	snprintf(want, sizeof(want),
		 "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z unit\\[%d\\] INFO: "
		 "gen-1 model=m status=200\n"
		 "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z unit\\[%d\\] WARN: x=7\n$",
		 (int)getpid(), (int)getpid());
	assert_int_equal(regcomp(&re, want, REG_EXTENDED), 0);
	if (regexec(&re, s, 0, NULL, 0) != 0)
		fail_msg("unexpected lines: %s", s);
	regfree(&re);
	free(s);
}

static void
test_buffered(void **state)
{
	struct event_base *base = event_base_new();
	char *s;

	(void)state;
	assert_int_equal(log_buffer(base, 1000), 0);
	log_access("one", 3);
	log_access("two", 3);
	s = written();
	assert_string_equal(s, "");		/* held */
	free(s);
	log_write(LOG_ERROR, "three");		/* writes what was held first */
	s = written();
	assert_non_null(strstr(s, "INFO: one\n"));
	assert_true(strstr(s, "INFO: one\n") < strstr(s, "INFO: two\n"));
	assert_true(strstr(s, "INFO: two\n") < strstr(s, "ERROR: three\n"));
	free(s);
	for (int i = 0; i < 2000; i++)		/* more than the buffer: written as it fills */
		log_access("a line of some length, over and over", 36);
	s = written();
	assert_true(strlen(s) > 16384);
	free(s);
	log_unbuffer();
	s = written();
	assert_non_null(strstr(s, "over and over\n"));
	free(s);
	log_access("four", 4);			/* unbuffered: at once */
	s = written();
	assert_non_null(strstr(s, "INFO: four\n"));
	free(s);
	log_init("unit", LOG_WARN);		/* access lines are INFO */
	log_access("five", 4);
	s = written();
	assert_string_equal(s, "");
	free(s);
	log_init("unit", LOG_INFO);
	event_base_free(base);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_shape),
		cmocka_unit_test(test_buffered),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
