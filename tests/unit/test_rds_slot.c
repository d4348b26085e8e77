/*
 * rds_slot: CRC16-XMODEM and key slots against the Redis Cluster
 * specification's values and hash-tag rules; the usage stream's shard keys.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "rds_slot.h"

static int
S(const char *k)
{
	return rds_slot(k, strlen(k));
}

static void
test_crc16(void **state)
{
	(void)state;
	assert_int_equal(rds_crc16("123456789", 9), 0x31C3);	/* the spec's check value */
	assert_int_equal(rds_crc16("", 0), 0);
	/* values CLUSTER KEYSLOT answers (Redis 7) */
	assert_int_equal(S("foo"), 12182);
	assert_int_equal(S("bar"), 5061);
	assert_int_equal(S("123456789"), 0x31C3 % 16384);
}

static void
test_hash_tags(void **state)
{
	(void)state;
	/* the spec's examples */
	assert_int_equal(S("{user1000}.following"), S("user1000"));
	assert_int_equal(S("{user1000}.followers"), S("user1000"));
	assert_int_equal(S("foo{}{bar}"), S("foo{}{bar}"));	/* empty first tag: the whole key */
	assert_int_not_equal(S("foo{}{bar}"), S("bar"));
	assert_int_equal(S("foo{{bar}}zap"), S("{bar"));	/* the tag is "{bar" */
	assert_int_equal(S("foo{bar}{zap}"), S("bar"));	/* only the first tag counts */
	assert_int_equal(S("{}"), rds_crc16("{}", 2) % 16384);
	assert_int_equal(S("no{close"), rds_crc16("no{close", 8) % 16384);
	/* ours: one account's counters in one slot */
	assert_int_equal(S("budget:{42}"), S("42"));
	assert_int_equal(S("rl:{42}:29000000:r"), S("rl:{42}:29000000:t"));
}

static void
test_shards(void **state)
{
	char k[64];
	int n, seen[8];

	(void)state;
	assert_int_equal(rds_shard_key(0, 1, k, sizeof(k)), 5);
	assert_string_equal(k, "usage");
	for (n = 2; n <= 8; n++) {
		memset(seen, 0, sizeof(seen));
		for (int i = 0; i < n; i++) {
			rds_shard_key(i, n, k, sizeof(k));
			assert_int_equal(strncmp(k, "usage:{", 7), 0);
			/* shard i sits in the i-th n-th of the slot space */
			assert_int_equal(S(k) * n / 16384, i);
			seen[i] = 1;
		}
	}
	memset(seen, 0, sizeof(seen));
	for (int64_t a = 1; a <= 3000; a++) {
		int s = rds_shard_of(a, 4);

		assert_true(s >= 0 && s < 4);
		seen[s]++;
	}
	for (int i = 0; i < 4; i++)
		assert_true(seen[i] > 600);	/* accounts spread */
	assert_int_equal(rds_shard_of(12345, 1), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crc16),
		cmocka_unit_test(test_hash_tags),
		cmocka_unit_test(test_shards),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
