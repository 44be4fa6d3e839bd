/* SHA-256 over OpenSSL's EVP interface (see sha256.h for why not
 * libsodium's). The EVP_MD is fetched once per process: with OpenSSL 3,
 * EVP_sha256() in each init would look the algorithm up in the provider
 * again, which costs more than hashing a small block. */
#include "sha256.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

struct sha256_t {
    EVP_MD_CTX *ctx;
    bool failed; /* a step failed since the last final or reset */
};

static EVP_MD *fetched_md;
static pthread_once_t fetch_once = PTHREAD_ONCE_INIT;

static void fetch_md(void)
{
    fetched_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

/* The process's SHA-256 implementation, or NULL if OpenSSL has none. It
 * lives until exit: OpenSSL frees its providers at exit itself. */
static const EVP_MD *sha256_md(void)
{
    pthread_once(&fetch_once, fetch_md);
    return fetched_md;
}

sha256_t *sha256_new(void)
{
    const EVP_MD *md = sha256_md();
    if (!md)
        return NULL;
    sha256_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->ctx = EVP_MD_CTX_new();
    if (!self->ctx || EVP_DigestInit_ex(self->ctx, md, NULL) != 1) {
        sha256_destroy(&self);
        return NULL;
    }
    return self;
}

void sha256_destroy(sha256_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sha256_t *self = *self_p;
    EVP_MD_CTX_free(self->ctx);
    free(self);
    *self_p = NULL;
}

void sha256_reset(sha256_t *self)
{
    self->failed = EVP_DigestInit_ex(self->ctx, sha256_md(), NULL) != 1;
}

void sha256_update(sha256_t *self, const void *data, size_t len)
{
    if (len == 0)
        return;
    if (EVP_DigestUpdate(self->ctx, data, len) != 1)
        self->failed = true;
}

int sha256_final(sha256_t *self, uint8_t out[SHA256_BYTES])
{
    unsigned int out_len = 0;
    bool ok = !self->failed && EVP_DigestFinal_ex(self->ctx, out, &out_len) == 1 &&
              out_len == SHA256_BYTES;
    sha256_reset(self);
    if (!ok) {
        memset(out, 0, SHA256_BYTES);
        return -1;
    }
    return 0;
}

int sha256_final_hex(sha256_t *self, char out[SHA256_HEX_LEN])
{
    uint8_t raw[SHA256_BYTES];
    int rc = sha256_final(self, raw);
    sha256_to_hex(raw, out);
    return rc;
}

int sha256_digest(const void *data, size_t len, uint8_t out[SHA256_BYTES])
{
    const EVP_MD *md = sha256_md();
    unsigned int out_len = 0;
    /* EVP_Digest reads nothing when len is 0, but wants a pointer. */
    if (!md || EVP_Digest(len ? data : "", len, out, &out_len, md, NULL) != 1 ||
        out_len != SHA256_BYTES) {
        memset(out, 0, SHA256_BYTES);
        return -1;
    }
    return 0;
}

int sha256_hex(const void *data, size_t len, char out[SHA256_HEX_LEN])
{
    uint8_t raw[SHA256_BYTES];
    int rc = sha256_digest(data, len, raw);
    sha256_to_hex(raw, out);
    return rc;
}

void sha256_to_hex(const uint8_t raw[SHA256_BYTES], char out[SHA256_HEX_LEN])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < SHA256_BYTES; i++) {
        out[2 * i] = digits[raw[i] >> 4];
        out[2 * i + 1] = digits[raw[i] & 0x0f];
    }
    out[2 * SHA256_BYTES] = '\0';
}
