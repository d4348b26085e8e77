/*
 * keyhash: API keys. A key is "sk-ag-v1-" followed by 64 hex characters
 * (32 random bytes). It is stored only as HMAC-SHA256(secret, key); the secret
 * comes from configuration. Comparisons are constant time.
 */
#ifndef AGORA_KEYHASH_H
#define AGORA_KEYHASH_H

#include <stddef.h>

#define KEY_PREFIX "sk-ag-v1-"
#define KEY_LEN (sizeof(KEY_PREFIX) - 1 + 64)	/* without the NUL */
#define KEY_HASH_LEN 32
#define KEY_SHOWN_PREFIX_LEN 14		/* "sk-ag-v1-" + 5 hex, for people */

/* Writes a new random key (KEY_LEN chars + NUL) into out[KEY_LEN + 1].
 * Returns 0, or -1 if the system's random source fails. */
int keyhash_generate(char out[KEY_LEN + 1]);

/* HMAC-SHA256(secret, key) into out. Returns 0 or -1. */
int keyhash_hash(const char *secret, size_t secret_len, const char *key,
		 size_t key_len, unsigned char out[KEY_HASH_LEN]);

/* 1 if the string has the shape of an Agora key, else 0. */
int keyhash_well_formed(const char *key, size_t len);

/* Constant-time equality of two hashes: 1 equal, 0 not. */
int keyhash_equal(const unsigned char a[KEY_HASH_LEN], const unsigned char b[KEY_HASH_LEN]);

#endif
