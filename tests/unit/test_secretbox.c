/*
 * secretbox: provider credentials sealed with AES-256-GCM.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "secretbox.h"

static const char hexkey[] = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
static const char hexkey2[] = "ff0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

static void
test_round_trip(void **state)
{
	uint8_t key[SBOX_KEY_LEN];
	char err[128], kid[9], *a, *b, *plain;

	(void)state;
	assert_int_equal(sbox_key_parse(hexkey, key, err, sizeof(err)), 0);
	a = sbox_seal(key, "deepinfra", "sk-live-123", 11);
	b = sbox_seal(key, "deepinfra", "sk-live-123", 11);
	assert_non_null(a);
	assert_string_not_equal(a, b);				/* a fresh nonce each time */
	assert_null(strstr(a, "sk-live"));
	sbox_key_id(key, kid);
	assert_int_equal(strncmp(a + 3, kid, 8), 0);
	plain = sbox_open(key, "deepinfra", a, err, sizeof(err));
	assert_string_equal(plain, "sk-live-123");
	free(plain);
	free(a);
	free(b);
}

static void
test_refusals(void **state)
{
	uint8_t key[SBOX_KEY_LEN], key2[SBOX_KEY_LEN];
	char err[128], *a;

	(void)state;
	sbox_key_parse(hexkey, key, err, sizeof(err));
	sbox_key_parse(hexkey2, key2, err, sizeof(err));
	a = sbox_seal(key, "together", "secret", 6);
	assert_null(sbox_open(key2, "together", a, err, sizeof(err)));	/* other master key */
	assert_non_null(strstr(err, "not with this one"));
	assert_null(sbox_open(key, "fireworks", a, err, sizeof(err)));	/* moved to another row */
	assert_non_null(strstr(err, "does not open"));
	a[strlen(a) - 5] = a[strlen(a) - 5] == '0' ? '1' : '0';			/* tampered tag */
	assert_null(sbox_open(key, "together", a, err, sizeof(err)));
	assert_null(sbox_open(key, "together", "v1:zz", err, sizeof(err)));
	assert_null(sbox_open(key, "together", "plain-text-key", err, sizeof(err)));
	free(a);
	assert_int_equal(sbox_key_parse("abc", key, err, sizeof(err)), -1);
	assert_int_equal(sbox_key_parse("zz0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", key, err,
					sizeof(err)), -1);
	assert_null(sbox_seal(key, "x", "y", SBOX_MAX_PLAIN + 1));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_refusals),
	};

	return cmocka_run_group_tests_name("secretbox", tests, NULL, NULL);
}
