/* SHA-256 of content: blobs, uploads, downloads.
 *
 * A thin class over OpenSSL's EVP digest, which uses the CPU's SHA
 * instructions where there are some (SHA-NI here: about 1.8 GB/s, five
 * times libsodium's portable code). libsodium stays for everything else
 * (random ids, base64, request fingerprints).
 *
 *   sha256_t *h = sha256_new();
 *   sha256_update(h, chunk, len);   ... as many times as needed
 *   sha256_final_hex(h, hex);       h is reset and can hash again
 *   sha256_destroy(&h);
 *
 * An object is not thread-safe; use one per thread. */
#ifndef PASSERELLE_SHA256_H
#define PASSERELLE_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_BYTES   32
#define SHA256_HEX_LEN 65 /* 64 lower-case hex digits + NUL */

typedef struct sha256_t sha256_t;

/* A new hash, ready for data. NULL if out of memory or if OpenSSL cannot
 * provide SHA-256 (a broken provider configuration). */
sha256_t *sha256_new(void);

/* Frees the hash and sets *self_p to NULL; NULL-safe. */
void sha256_destroy(sha256_t **self_p);

/* Forgets the data seen so far. */
void sha256_reset(sha256_t *self);

/* Adds len bytes (len may be 0, data then may be NULL). */
void sha256_update(sha256_t *self, const void *data, size_t len);

/* Writes the digest of everything added since the last final or reset and
 * resets the hash. Returns 0, or -1 if OpenSSL reported a failure at any
 * step (out is then zeroed and must not be trusted). */
int sha256_final(sha256_t *self, uint8_t out[SHA256_BYTES]);

/* The same as sha256_final, as 64 lower-case hex digits. */
int sha256_final_hex(sha256_t *self, char out[SHA256_HEX_LEN]);

/* One-shot digest of a buffer. Returns 0 or -1 as sha256_final. */
int sha256_digest(const void *data, size_t len, uint8_t out[SHA256_BYTES]);
int sha256_hex(const void *data, size_t len, char out[SHA256_HEX_LEN]);

/* 32 raw bytes as 64 lower-case hex digits. */
void sha256_to_hex(const uint8_t raw[SHA256_BYTES], char out[SHA256_HEX_LEN]);

#endif
