/*
 * secretbox: AES-256-GCM sealing of small secrets (see secretbox.h).
 */
#include "secretbox.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#define NONCE_LEN 12
#define TAG_LEN 16

static int
unhex(const char *s, size_t n, uint8_t *out)
{
	for (size_t i = 0; i < n; i++) {
		unsigned v;

		if (sscanf(s + 2 * i, "%2x", &v) != 1)
			return -1;
		out[i] = (uint8_t)v;
	}
	return 0;
}

static void
tohex(const uint8_t *in, size_t n, char *out)
{
	static const char d[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = d[in[i] >> 4];
		out[2 * i + 1] = d[in[i] & 15];
	}
	out[2 * n] = '\0';
}

int
sbox_key_parse(const char *hex, uint8_t key[SBOX_KEY_LEN], char *err, size_t len)
{
	size_t n = strcspn(hex, "\r\n");

	if (n != 2 * SBOX_KEY_LEN || strspn(hex, "0123456789abcdefABCDEF") < n || unhex(hex, SBOX_KEY_LEN, key) < 0) {
		snprintf(err, len, "a master key is 64 hex characters (openssl rand -hex 32)");
		return -1;
	}
	return 0;
}

int
sbox_key_file(const char *path, uint8_t key[SBOX_KEY_LEN], char *err, size_t len)
{
	char line[160] = "";
	FILE *f = fopen(path, "r");
	int rc;

	if (!f) {
		snprintf(err, len, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (!fgets(line, sizeof(line), f))
		line[0] = '\0';
	fclose(f);
	rc = sbox_key_parse(line, key, err, len);
	OPENSSL_cleanse(line, sizeof(line));
	return rc;
}

int
sbox_key_load(const char *hex, const char *file, uint8_t key[SBOX_KEY_LEN], char *err, size_t len)
{
	if (hex && *hex)
		return sbox_key_parse(hex, key, err, len) < 0 ? -1 : 1;
	if (file && *file)
		return sbox_key_file(file, key, err, len) < 0 ? -1 : 1;
	return 0;
}

void
sbox_key_id(const uint8_t key[SBOX_KEY_LEN], char out[9])
{
	uint8_t h[SHA256_DIGEST_LENGTH];

	SHA256(key, SBOX_KEY_LEN, h);
	tohex(h, 4, out);
}

/* One AES-256-GCM pass; enc = 1 seals, 0 opens (tag checked). */
static int
gcm(int enc, const uint8_t *key, const uint8_t *nonce, const char *aad, const uint8_t *in, int n,
    uint8_t *out, uint8_t *tag)
{
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int len = 0, fin = 0, ok = 0;

	if (!ctx)
		return -1;
	if (EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL, enc) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) != 1 ||
	    EVP_CipherInit_ex(ctx, NULL, NULL, key, nonce, enc) != 1 ||
	    EVP_CipherUpdate(ctx, NULL, &len, (const uint8_t *)aad, (int)strlen(aad)) != 1 ||
	    EVP_CipherUpdate(ctx, out, &len, in, n) != 1)
		goto fail;
	if (!enc && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_LEN, tag) != 1)
		goto fail;
	if (EVP_CipherFinal_ex(ctx, out + len, &fin) != 1)
		goto fail;
	if (enc && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN, tag) != 1)
		goto fail;
	ok = 1;
fail:
	EVP_CIPHER_CTX_free(ctx);
	return ok ? len + fin : -1;
}

char *
sbox_seal(const uint8_t key[SBOX_KEY_LEN], const char *owner, const char *plain, size_t n)
{
	uint8_t buf[NONCE_LEN + SBOX_MAX_PLAIN + TAG_LEN];
	char kid[9], *out = NULL;
	size_t total = NONCE_LEN + n + TAG_LEN;

	if (n > SBOX_MAX_PLAIN || RAND_bytes(buf, NONCE_LEN) != 1)
		return NULL;
	if (gcm(1, key, buf, owner, (const uint8_t *)plain, (int)n, buf + NONCE_LEN, buf + NONCE_LEN + n) < 0)
		goto done;
	sbox_key_id(key, kid);
	if ((out = malloc(3 + 8 + 1 + 2 * total + 1))) {
		snprintf(out, 13, "v1:%s:", kid);
		tohex(buf, total, out + 12);
	}
done:
	OPENSSL_cleanse(buf, sizeof(buf));
	return out;
}

char *
sbox_open(const uint8_t key[SBOX_KEY_LEN], const char *owner, const char *sealed, char *err, size_t len)
{
	uint8_t buf[NONCE_LEN + SBOX_MAX_PLAIN + TAG_LEN];
	char kid[9], *plain;
	size_t hexlen = strlen(sealed), n;

	sbox_key_id(key, kid);
	if (hexlen < 12 || strncmp(sealed, "v1:", 3) != 0 || sealed[11] != ':' || (hexlen - 12) % 2 ||
	    (hexlen - 12) / 2 < NONCE_LEN + TAG_LEN || (hexlen - 12) / 2 > sizeof(buf) ||
	    unhex(sealed + 12, (hexlen - 12) / 2, buf) < 0) {
		snprintf(err, len, "not a sealed value");
		return NULL;
	}
	if (strncmp(sealed + 3, kid, 8) != 0) {
		snprintf(err, len, "sealed with master key %.8s, not with this one (%s)", sealed + 3, kid);
		return NULL;
	}
	n = (hexlen - 12) / 2 - NONCE_LEN - TAG_LEN;
	if (!(plain = malloc(n + 1))) {
		snprintf(err, len, "out of memory");
		return NULL;
	}
	if (gcm(0, key, buf, owner, buf + NONCE_LEN, (int)n, (uint8_t *)plain, buf + NONCE_LEN + n) < 0) {
		OPENSSL_cleanse(plain, n);
		free(plain);
		snprintf(err, len, "does not open: tampered, or sealed for another owner");
		return NULL;
	}
	plain[n] = '\0';
	return plain;
}
