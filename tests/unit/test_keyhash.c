/*
 * Keys: generation, shape checks, HMAC-SHA256 hashing (RFC 4231 vector) and
 * constant-time comparison.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "keyhash.h"

static void
test_generate(void **state)
{
	char a[KEY_LEN + 1], b[KEY_LEN + 1];

	(void)state;
	assert_int_equal(keyhash_generate(a), 0);
	assert_int_equal(keyhash_generate(b), 0);
	assert_int_equal(strlen(a), KEY_LEN);
	assert_true(strncmp(a, KEY_PREFIX, strlen(KEY_PREFIX)) == 0);
	assert_true(keyhash_well_formed(a, strlen(a)));
	assert_string_not_equal(a, b);
}

static void
test_well_formed(void **state)
{
	char k[KEY_LEN + 2];

	(void)state;
	keyhash_generate(k);
	assert_false(keyhash_well_formed(k, KEY_LEN - 1));
	k[KEY_LEN - 1] = 'G';
	assert_false(keyhash_well_formed(k, KEY_LEN));
	keyhash_generate(k);
	k[0] = 'x';
	assert_false(keyhash_well_formed(k, KEY_LEN));
	assert_false(keyhash_well_formed("", 0));
	assert_false(keyhash_well_formed("sk-or-v1-abc", 12));
}

static void
test_rfc4231(void **state)
{
	static const unsigned char want[32] = {
		0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e, 0x6a, 0x04, 0x24, 0x26, 0x08, 0x95, 0x75, 0xc7,
		0x5a, 0x00, 0x3f, 0x08, 0x9d, 0x27, 0x39, 0x83, 0x9d, 0xec, 0x58, 0xb9, 0x64, 0xec, 0x38, 0x43 };
	const char *data = "what do ya want for nothing?";
	unsigned char out[KEY_HASH_LEN];

	(void)state;
	assert_int_equal(keyhash_hash("Jefe", 4, data, strlen(data), out), 0);
	assert_memory_equal(out, want, 32);
}

static void
test_secret_matters(void **state)
{
	unsigned char a[KEY_HASH_LEN], b[KEY_HASH_LEN], c[KEY_HASH_LEN];
	char k[KEY_LEN + 1];

	(void)state;
	keyhash_generate(k);
	keyhash_hash("s1", 2, k, KEY_LEN, a);
	keyhash_hash("s1", 2, k, KEY_LEN, b);
	keyhash_hash("s2", 2, k, KEY_LEN, c);
	assert_true(keyhash_equal(a, b));
	assert_false(keyhash_equal(a, c));
	b[31] ^= 1;
	assert_false(keyhash_equal(a, b));
}

/* The cached pad states give HMAC()'s answer for short, block-sized,
 * long and over-long secrets, and follow a change of secret. */
static void
test_matches_openssl(void **state)
{
	static const size_t lens[] = { 0, 1, 4, 63, 64, 65, 200, 256, 257, 300 };
	char secret[300], key[KEY_LEN + 1];
	unsigned char got[KEY_HASH_LEN], want[KEY_HASH_LEN];
	unsigned int wlen;

	(void)state;
	for (size_t i = 0; i < sizeof(secret); i++)
		secret[i] = (char)('a' + i % 26);
	for (int round = 0; round < 2; round++)
		for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
			keyhash_generate(key);
			assert_int_equal(keyhash_hash(secret, lens[i], key, KEY_LEN, got), 0);
			assert_non_null(HMAC(EVP_sha256(), secret, (int)lens[i], (unsigned char *)key,
					     KEY_LEN, want, &wlen));
			assert_memory_equal(got, want, KEY_HASH_LEN);
		}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_generate),
		cmocka_unit_test(test_well_formed),
		cmocka_unit_test(test_rfc4231),
		cmocka_unit_test(test_secret_matters),
		cmocka_unit_test(test_matches_openssl),
	};

	return cmocka_run_group_tests_name("keyhash", tests, NULL, NULL);
}
