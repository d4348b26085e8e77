/*
 * Configuration: defaults, file, environment overrides, bounds, errors, and
 * the key secret and the Redis password from a file.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"

static char path[64];

static void
write_conf(const char *text)
{
	FILE *f = fopen(path, "w");

	fputs(text, f);
	fclose(f);
}

static int
setup(void **state)
{
	(void)state;
	snprintf(path, sizeof(path), "/tmp/agora-test-conf-%d", (int)getpid());
	unsetenv("AGORA_LISTEN");
	unsetenv("AGORA_MAX_ATTEMPTS");
	unsetenv("AGORA_KEY_SECRET_FILE");
	setenv("AGORA_KEY_SECRET", "s3cret", 1);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	unlink(path);
	return 0;
}

static void
test_defaults(void **state)
{
	struct agora_conf c;
	char err[256];

	(void)state;
	assert_int_equal(conf_load(&c, NULL, err, sizeof(err)), 0);
	assert_string_equal(c.listen, "127.0.0.1:8680");
	assert_int_equal(c.max_attempts, 3);
	assert_int_equal(c.max_body_bytes, 4194304);
	assert_string_equal(c.key_secret, "s3cret");
	assert_string_equal(c.metering, "on");
	assert_int_equal(c.workers, 1);
}

static void
test_file_then_env(void **state)
{
	struct agora_conf c;
	char err[256];

	(void)state;
	write_conf("# comment\n\nlisten = 0.0.0.0:9000\n  max_attempts=5  \nupstream_ca_file = /x/ca.pem\n");
	assert_int_equal(conf_load(&c, path, err, sizeof(err)), 0);
	assert_string_equal(c.listen, "0.0.0.0:9000");
	assert_int_equal(c.max_attempts, 5);
	assert_string_equal(c.upstream_ca_file, "/x/ca.pem");
	setenv("AGORA_MAX_ATTEMPTS", "7", 1);
	assert_int_equal(conf_load(&c, path, err, sizeof(err)), 0);
	assert_int_equal(c.max_attempts, 7);
	unsetenv("AGORA_MAX_ATTEMPTS");
}

static void
test_errors(void **state)
{
	static const struct { const char *text, *says; } bad[] = {
		{ "nonsense_key = 1\n", "unknown key" },
		{ "max_attempts = lots\n", "not an integer" },
		{ "max_attempts = 0\n", "not an integer in [1, 20]" },
		{ "max_attempts = 21\n", "[1, 20]" },
		{ "listen\n", "expected key = value" },
		{ "max_body_bytes = 12abc\n", "max_body_bytes" },
		{ "metering = maybe\n", "metering: 'maybe' is not on or off" },
		{ "workers = 0\n", "workers" },
	};
	struct agora_conf c;
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		write_conf(bad[i].text);
		err[0] = '\0';
		assert_int_equal(conf_load(&c, path, err, sizeof(err)), -1);
		if (!strstr(err, bad[i].says))
			fail_msg("'%s' gave '%s'", bad[i].text, err);
	}
	assert_int_equal(conf_load(&c, "/nonexistent/agora.conf", err, sizeof(err)), -1);
	setenv("AGORA_MAX_ATTEMPTS", "-2", 1);
	assert_int_equal(conf_load(&c, NULL, err, sizeof(err)), -1);
	unsetenv("AGORA_MAX_ATTEMPTS");
}

static void
test_secret_file(void **state)
{
	struct agora_conf c;
	char err[256];

	(void)state;
	unsetenv("AGORA_KEY_SECRET");
	assert_int_equal(conf_load(&c, NULL, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "key_secret"));
	write_conf("from-a-file\n");
	setenv("AGORA_KEY_SECRET_FILE", path, 1);
	assert_int_equal(conf_load(&c, NULL, err, sizeof(err)), 0);
	assert_string_equal(c.key_secret, "from-a-file");
	unsetenv("AGORA_KEY_SECRET_FILE");
	setenv("AGORA_KEY_SECRET", "s3cret", 1);

	/* redis_password the same way; a value given wins over the file */
	write_conf("redis pw with spaces\r\nsecond line\n");
	setenv("AGORA_REDIS_PASSWORD_FILE", path, 1);
	assert_int_equal(conf_load(&c, NULL, err, sizeof(err)), 0);
	assert_string_equal(c.redis_password, "redis pw with spaces");
	setenv("AGORA_REDIS_PASSWORD", "given", 1);
	assert_int_equal(conf_load(&c, NULL, err, sizeof(err)), 0);
	assert_string_equal(c.redis_password, "given");
	unsetenv("AGORA_REDIS_PASSWORD");
	setenv("AGORA_REDIS_PASSWORD_FILE", "/nonexistent/agora-redis-password", 1);
	assert_int_equal(conf_load(&c, NULL, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "redis_password_file"));
	unsetenv("AGORA_REDIS_PASSWORD_FILE");
}

/* pg_listen_dsn and analytics_pg_dsn fall back to pg_dsn when empty. */
static void
test_dsn_fallbacks(void **state)
{
	struct agora_conf c;
	char err[256];

	(void)state;
	unsetenv("AGORA_PG_DSN");
	unsetenv("AGORA_PG_LISTEN_DSN");
	unsetenv("AGORA_ANALYTICS_PG_DSN");
	write_conf("pg_dsn = host=10.0.0.1 port=6432\n");
	assert_int_equal(conf_load(&c, path, err, sizeof(err)), 0);
	assert_string_equal(conf_pg_listen_dsn(&c), "host=10.0.0.1 port=6432");
	assert_string_equal(conf_analytics_pg_dsn(&c), "host=10.0.0.1 port=6432");
	assert_int_equal(c.retention_months, 0);
	write_conf("pg_dsn = host=10.0.0.1 port=6432\npg_listen_dsn = host=10.0.0.1 port=5432\n"
		   "analytics_pg_dsn = host=10.0.0.2\nretention_months = 13\n");
	assert_int_equal(conf_load(&c, path, err, sizeof(err)), 0);
	assert_string_equal(conf_pg_listen_dsn(&c), "host=10.0.0.1 port=5432");
	assert_string_equal(conf_analytics_pg_dsn(&c), "host=10.0.0.2");
	assert_int_equal(c.retention_months, 13);
}

/* SIGHUP's reload: live keys applied, others kept, a broken file refused. */
static void
test_reload(void **state)
{
	struct agora_conf c, before;
	char err[256];

	(void)state;
	write_conf("max_attempts = 3\nlisten = 127.0.0.1:1\n");
	assert_int_equal(conf_load(&c, path, err, sizeof(err)), 0);
	write_conf("max_attempts = 5\nlisten = 127.0.0.1:2\nbilling_batch = 7\n");
	assert_int_equal(conf_reload(&c, path, "log_level max_attempts", "billing_batch"), 1);
	assert_int_equal(c.max_attempts, 5);			/* live */
	assert_string_equal(c.listen, "127.0.0.1:1");		/* needs a restart */
	assert_int_equal(c.billing_batch, 2000);		/* not this process's */
	before = c;
	write_conf("max_attempts = 9\nno_such_key = 1\n");
	assert_int_equal(conf_reload(&c, path, "max_attempts", ""), -1);
	assert_memory_equal(&c, &before, sizeof(c));		/* untouched */
	assert_true(conf_in_list("a max_attempts b", "max_attempts"));
	assert_false(conf_in_list("max_attempts_x attempts", "max_attempts"));
	assert_false(conf_in_list("", "max_attempts"));
	conf_copy_list(&before, &c, "listen");
	assert_string_equal(before.listen, c.listen);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
		cmocka_unit_test_setup_teardown(test_file_then_env, setup, teardown),
		cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_secret_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dsn_fallbacks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reload, setup, teardown),
	};

	return cmocka_run_group_tests_name("conf", tests, NULL, NULL);
}
