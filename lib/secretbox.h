/*
 * secretbox: provider credentials encrypted at rest. AES-256-GCM with a
 * 32-byte master key (from a file or the environment, never from the
 * database), a random 96-bit nonce per seal, and the owner's id (e.g. the
 * provider id) as associated data, so a sealed value cannot be moved to
 * another row. Sealed layout: "v1:" + key id (8 hex) + ":" + hex(nonce |
 * ciphertext | tag). The key id (first 4 bytes of SHA-256 of the key) says
 * which master key sealed a value, for rotation.
 */
#ifndef AGORA_SECRETBOX_H
#define AGORA_SECRETBOX_H

#include <stddef.h>
#include <stdint.h>

#define SBOX_KEY_LEN 32
#define SBOX_MAX_PLAIN 4096

/* Reads a master key: 64 hex characters (first line of a file, or the
 * string itself). 0, or -1 with a message. */
int sbox_key_parse(const char *hex, uint8_t key[SBOX_KEY_LEN], char *err, size_t len);
int sbox_key_file(const char *path, uint8_t key[SBOX_KEY_LEN], char *err, size_t len);
/* The configured master key: from hex if set, else from file if set.
 * Returns 1 (loaded), 0 (none configured) or -1 (with a message). */
int sbox_key_load(const char *hex, const char *file, uint8_t key[SBOX_KEY_LEN], char *err, size_t len);
/* The key's id: 8 hex characters + NUL. */
void sbox_key_id(const uint8_t key[SBOX_KEY_LEN], char out[9]);

/* Seals plain (at most SBOX_MAX_PLAIN bytes) for owner; returns a malloc'd
 * string or NULL. */
char *sbox_seal(const uint8_t key[SBOX_KEY_LEN], const char *owner, const char *plain, size_t len);
/* Opens a sealed string; returns the malloc'd plain text (NUL-terminated)
 * or NULL with a message (wrong key, tampered, other owner, bad format).
 * The caller should wipe it (OPENSSL_cleanse) before freeing. */
char *sbox_open(const uint8_t key[SBOX_KEY_LEN], const char *owner, const char *sealed, char *err, size_t len);

#endif
