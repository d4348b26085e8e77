/*
 * rds_format_argv: byte for byte what hiredis's redisFormatCommandArgv
 * writes (the RESP array of bulk strings Redis reads), for empty, binary,
 * long and many arguments.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "rds.h"

static void
same_as_hiredis(int argc, const char **argv, const size_t *lens)
{
	char *ours = NULL, *theirs = NULL;
	int n = rds_format_argv(&ours, argc, argv, lens);
	int m = redisFormatCommandArgv(&theirs, argc, argv, lens);

	assert_true(n > 0);
	assert_int_equal(n, m);
	assert_memory_equal(ours, theirs, (size_t)n);
	free(ours);
	redisFreeCommand(theirs);
}

static void
test_xadd(void **state)
{
	const char *argv[] = { "XADD", "usage:{3}", "MAXLEN", "~", "1000000", "*", "e",
			       "{\"id\":\"gen-1\",\"tokens\":12}" };

	(void)state;
	same_as_hiredis(8, argv, NULL);
}

static void
test_binary_and_empty(void **state)
{
	const char *argv[] = { "SET", "k\r\n", "", "a\0b" };
	const size_t lens[] = { 3, 3, 0, 3 };
	char *ours = NULL;

	(void)state;
	same_as_hiredis(4, argv, lens);
	assert_int_equal(rds_format_argv(&ours, 1, (const char *[]){ "" }, (const size_t[]){ 0 }), 10);
	assert_memory_equal(ours, "*1\r\n$0\r\n\r\n", 10);
	free(ours);
}

static void
test_long_and_many(void **state)
{
	static char big[123457];
	const char *argv[1000];
	size_t lens[1000];

	(void)state;
	memset(big, 'x', sizeof(big));
	for (int i = 0; i < 1000; i++) {
		argv[i] = i % 2 ? big : "HINCRBY";
		lens[i] = i % 2 ? (size_t)(i * 123) % sizeof(big) : 7;
	}
	same_as_hiredis(1000, argv, lens);
	lens[1] = sizeof(big);
	same_as_hiredis(2, argv, lens);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_xadd),
		cmocka_unit_test(test_binary_and_empty),
		cmocka_unit_test(test_long_and_many),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
