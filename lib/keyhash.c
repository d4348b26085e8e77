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

/*
 * HMAC-SHA256 (RFC 2104) with the secret's padded-key states computed once:
 * HMAC() fetches the algorithm and hashes both pads on every call, which
 * was a tenth of a request's instructions. A router checks every request
 * against the same secret, so each thread keeps the two states for the
 * last secret it saw and starts each hash from a copy of them.
 */
#define HMAC_BLOCK 64
#define HMAC_SECRET_MAX 256	/* longer secrets take the one-shot path */

struct hmac_cache {
	EVP_MD_CTX *inner, *outer, *work;
	size_t secret_len;
	char secret[HMAC_SECRET_MAX];
};

static _Thread_local struct hmac_cache hc;

static int
hmac_prepare(const char *secret, size_t len)
{
	unsigned char k[HMAC_BLOCK] = { 0 }, pad[HMAC_BLOCK];
	unsigned int klen = 0;
	int ok;

	if (!hc.work && (!(hc.inner = EVP_MD_CTX_new()) || !(hc.outer = EVP_MD_CTX_new()) ||
			 !(hc.work = EVP_MD_CTX_new())))
		goto fail;
	if (len > HMAC_BLOCK) {
		if (EVP_Digest(secret, len, k, &klen, EVP_sha256(), NULL) != 1)
			goto fail;
	} else {
		memcpy(k, secret, len);
	}
	for (int i = 0; i < HMAC_BLOCK; i++)
		pad[i] = k[i] ^ 0x36;
	ok = EVP_DigestInit_ex(hc.inner, EVP_sha256(), NULL) == 1 &&
	     EVP_DigestUpdate(hc.inner, pad, HMAC_BLOCK) == 1;
	for (int i = 0; i < HMAC_BLOCK; i++)
		pad[i] = k[i] ^ 0x5c;
	ok = ok && EVP_DigestInit_ex(hc.outer, EVP_sha256(), NULL) == 1 &&
	     EVP_DigestUpdate(hc.outer, pad, HMAC_BLOCK) == 1;
	OPENSSL_cleanse(k, sizeof(k));
	OPENSSL_cleanse(pad, sizeof(pad));
	if (!ok)
		goto fail;
	memcpy(hc.secret, secret, len);
	hc.secret_len = len;
	return 0;
fail:
	hc.secret_len = (size_t)-1;	/* no valid states */
	return -1;
}

int
keyhash_hash(const char *secret, size_t secret_len, const char *key, size_t key_len,
	     unsigned char out[KEY_HASH_LEN])
{
	unsigned char inner[KEY_HASH_LEN];
	unsigned int olen = 0;

	if (secret_len > HMAC_SECRET_MAX) {
		if (!HMAC(EVP_sha256(), secret, (int)secret_len, (const unsigned char *)key,
			  key_len, out, &olen) || olen != KEY_HASH_LEN)
			return -1;
		return 0;
	}
	if ((!hc.work || hc.secret_len != secret_len || memcmp(hc.secret, secret, secret_len) != 0) &&
	    hmac_prepare(secret, secret_len) < 0)
		return -1;
	if (EVP_MD_CTX_copy_ex(hc.work, hc.inner) != 1 || EVP_DigestUpdate(hc.work, key, key_len) != 1 ||
	    EVP_DigestFinal_ex(hc.work, inner, &olen) != 1 || olen != KEY_HASH_LEN ||
	    EVP_MD_CTX_copy_ex(hc.work, hc.outer) != 1 || EVP_DigestUpdate(hc.work, inner, olen) != 1 ||
	    EVP_DigestFinal_ex(hc.work, out, &olen) != 1 || olen != KEY_HASH_LEN)
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
