/*
 * Fuzz regressions: every seed (tests/fuzz/corpus/<target>/) and every input
 * that once crashed a fuzz target (tests/fuzz/regressions/<target>/) replayed
 * through the same target bodies libFuzzer runs (tests/fuzz/targets.h), with
 * their invariants, without clang or libFuzzer. Inputs of bugs not fixed yet
 * live in tests/fuzz/known-bugs/ and are not replayed here (see its
 * README.md). Paths are relative to the repository root, where
 * tests/run-all.sh runs the tests; AGORA_FUZZ_DIR overrides tests/fuzz.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char replay_current[600];

/* A broken invariant fails the test case, naming the input. */
#define FUZZ_FAIL(...) \
	do { \
		print_error("input %s: ", replay_current); \
		print_error(__VA_ARGS__); \
		print_error("\n"); \
		fail(); \
	} while (0)

#include "../fuzz/targets.h"

typedef void (*target_fn)(const uint8_t *data, size_t size);

static const char *
fuzz_dir(void)
{
	const char *d = getenv("AGORA_FUZZ_DIR");

	return d && *d ? d : "tests/fuzz";
}

static int
cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Replays every file of dir (sorted; README files skipped); how many. */
static int
replay_dir(const char *dir, target_fn fn)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char **names = NULL;
	int n = 0, cap = 0;

	if (!d)
		return 0;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.' || strstr(e->d_name, ".md"))
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			names = realloc(names, sizeof(*names) * (size_t)cap);
			assert_non_null(names);
		}
		names[n] = strdup(e->d_name);
		assert_non_null(names[n]);
		n++;
	}
	closedir(d);
	qsort(names, (size_t)n, sizeof(*names), cmp_names);
	for (int i = 0; i < n; i++) {
		struct stat st;
		FILE *f;
		uint8_t *buf;

		snprintf(replay_current, sizeof(replay_current), "%s/%s", dir, names[i]);
		if (stat(replay_current, &st) < 0 || !S_ISREG(st.st_mode))
			continue;
		assert_non_null(f = fopen(replay_current, "rb"));
		assert_non_null(buf = malloc((size_t)st.st_size + 1));
		assert_int_equal(fread(buf, 1, (size_t)st.st_size, f), (size_t)st.st_size);
		fclose(f);
		fn(buf, (size_t)st.st_size);
		free(buf);
		free(names[i]);
	}
	free(names);
	return n;
}

/* The target's seed corpus (must not be empty: a wrong working directory
 * would otherwise pass silently) and its regressions. */
static void
replay(const char *target, target_fn fn)
{
	char dir[400];
	int seeds, regs;

	snprintf(dir, sizeof(dir), "%s/corpus/%s", fuzz_dir(), target);
	seeds = replay_dir(dir, fn);
	if (seeds == 0)
		fail_msg("no seed corpus in %s (run from the repository root or set AGORA_FUZZ_DIR)", dir);
	snprintf(dir, sizeof(dir), "%s/regressions/%s", fuzz_dir(), target);
	regs = replay_dir(dir, fn);
	print_message("fuzz_%s: %d seeds, %d regressions replayed\n", target, seeds, regs);
}

static void
test_request(void **state)
{
	(void)state;
	replay("request", fuzz_request_one);
}

static void
test_sse(void **state)
{
	(void)state;
	replay("sse", fuzz_sse_one);
}

static void
test_anthropic(void **state)
{
	(void)state;
	replay("anthropic", fuzz_anthropic_one);
}

static void
test_catalog(void **state)
{
	(void)state;
	replay("catalog", fuzz_catalog_one);
}

static void
test_csv(void **state)
{
	(void)state;
	replay("csv", fuzz_csv_one);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_request),
		cmocka_unit_test(test_sse),
		cmocka_unit_test(test_anthropic),
		cmocka_unit_test(test_catalog),
		cmocka_unit_test(test_csv),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
