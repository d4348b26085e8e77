/*
 * keyhash: generation, hashing and comparison of API keys (see keyhash.h).
 */
#include "keyhash.h"

#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

int
keyhash_generate(char out[KEY_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char raw[32];
	size_t p = sizeof(KEY_PREFIX) - 1;

	if (RAND_bytes(raw, sizeof(raw)) != 1)
		return -1;
	memcpy(out, KEY_PREFIX, p);
	for (size_t i = 0; i < sizeof(raw); i++) {
		out[p++] = hex[raw[i] >> 4];
		out[p++] = hex[raw[i] & 15];
	}
	out[p] = '\0';
	OPENSSL_cleanse(raw, sizeof(raw));
	return 0;
}

int
keyhash_hash(const char *secret, size_t secret_len, const char *key, size_t key_len,
	     unsigned char out[KEY_HASH_LEN])
{
	unsigned int olen = 0;

	if (!HMAC(EVP_sha256(), secret, (int)secret_len, (const unsigned char *)key,
		  key_len, out, &olen) || olen != KEY_HASH_LEN)
		return -1;
	return 0;
}

int
keyhash_well_formed(const char *key, size_t len)
{
	size_t p = sizeof(KEY_PREFIX) - 1;

	if (len != KEY_LEN || memcmp(key, KEY_PREFIX, p) != 0)
		return 0;
	for (; p < len; p++)
		if (!((key[p] >= '0' && key[p] <= '9') || (key[p] >= 'a' && key[p] <= 'f')))
			return 0;
	return 1;
}

int
keyhash_equal(const unsigned char a[KEY_HASH_LEN], const unsigned char b[KEY_HASH_LEN])
{
	return CRYPTO_memcmp(a, b, KEY_HASH_LEN) == 0;
}
