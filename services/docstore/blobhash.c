/* The whole-blob and per-block SHA-256 in one pass (blobhash.h).
 *
 * SHA-256 (FIPS 180-4) processes 64-byte message blocks: each one's
 * message schedule (64 words) is computed from its bytes alone, then 64
 * rounds fold it into the state. The two hashes here see the same message
 * blocks, so with the x86 SHA extensions the schedule is computed once and
 * the rounds run for both states side by side: a chain of rounds waits on
 * the latency of sha256rnds2 more than on its throughput, so two chains
 * cost little more than one (64 MiB: 43 ms for both here, against 37 ms
 * for one OpenSSL digest and 74 ms for two). Without the extensions, two
 * OpenSSL digests do the work, as before this file existed. Both ways are
 * checked against libsodium by tests/test_blobs.c, at every split of the
 * input. */
#include "blobhash.h"

#include "blobs.h"
#include "sha256.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#define BLOBHASH_X86 1
#endif

struct blobhash_t {
    bool extensions; /* the SHA instructions' way, or OpenSSL's */
    /* With the SHA instructions: */
    uint32_t whole[8];   /* the whole blob's state */
    uint32_t block[8];   /* the current block's */
    uint8_t buf[64];     /* bytes of a message block not complete yet */
    size_t buffered;     /* how many */
    uint64_t compressed; /* bytes folded into the states (a multiple of 64) */
    /* Without: */
    sha256_t *whole_digest, *block_digest;
    uint64_t fed;
};

static const uint32_t IV[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                               0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

/* ====================================================================== */
/* SHA extensions                                                         */
/* ====================================================================== */

#ifdef BLOBHASH_X86

#define SHA_TARGET __attribute__((target("sha,sse4.1,ssse3")))

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

/* The state as sha256rnds2 wants it: (A, B, E, F) and (C, D, G, H). */
SHA_TARGET static void ni_load(const uint32_t s[8], __m128i *abef, __m128i *cdgh)
{
    __m128i dcba = _mm_loadu_si128((const __m128i *)&s[0]);
    __m128i hgfe = _mm_loadu_si128((const __m128i *)&s[4]);
    __m128i cdab = _mm_shuffle_epi32(dcba, 0xB1);
    __m128i efgh = _mm_shuffle_epi32(hgfe, 0x1B);
    *abef = _mm_alignr_epi8(cdab, efgh, 8);
    *cdgh = _mm_blend_epi16(efgh, cdab, 0xF0);
}

SHA_TARGET static void ni_store(uint32_t s[8], __m128i abef, __m128i cdgh)
{
    __m128i feba = _mm_shuffle_epi32(abef, 0x1B);
    __m128i dchg = _mm_shuffle_epi32(cdgh, 0xB1);
    __m128i dcba = _mm_blend_epi16(feba, dchg, 0xF0);
    __m128i hgfe = _mm_alignr_epi8(dchg, feba, 8);
    _mm_storeu_si128((__m128i *)&s[0], dcba);
    _mm_storeu_si128((__m128i *)&s[4], hgfe);
}

SHA_TARGET static void compress_pair_ni(uint32_t sa[8], uint32_t sb[8], const uint8_t *p,
                                        size_t blocks)
{
    const __m128i byteswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    __m128i a_abef, a_cdgh, b_abef, b_cdgh;
    ni_load(sa, &a_abef, &a_cdgh);
    ni_load(sb, &b_abef, &b_cdgh);
    for (size_t n = 0; n < blocks; n++, p += 64) {
        /* The schedule once, four words at a time, with the constants
         * added: what both chains of rounds take. */
        __m128i w[16], wk[16];
        for (int g = 0; g < 4; g++)
            w[g] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * g)), byteswap);
        for (int g = 4; g < 16; g++)
            w[g] = _mm_sha256msg2_epu32(_mm_add_epi32(_mm_sha256msg1_epu32(w[g - 4], w[g - 3]),
                                                      _mm_alignr_epi8(w[g - 1], w[g - 2], 4)),
                                        w[g - 1]);
        for (int g = 0; g < 16; g++)
            wk[g] = _mm_add_epi32(w[g], _mm_loadu_si128((const __m128i *)&K[4 * g]));
        __m128i a_abef0 = a_abef, a_cdgh0 = a_cdgh, b_abef0 = b_abef, b_cdgh0 = b_cdgh;
        for (int g = 0; g < 16; g++) {
            __m128i high = _mm_shuffle_epi32(wk[g], 0x0E);
            a_cdgh = _mm_sha256rnds2_epu32(a_cdgh, a_abef, wk[g]);
            b_cdgh = _mm_sha256rnds2_epu32(b_cdgh, b_abef, wk[g]);
            a_abef = _mm_sha256rnds2_epu32(a_abef, a_cdgh, high);
            b_abef = _mm_sha256rnds2_epu32(b_abef, b_cdgh, high);
        }
        a_abef = _mm_add_epi32(a_abef, a_abef0);
        a_cdgh = _mm_add_epi32(a_cdgh, a_cdgh0);
        b_abef = _mm_add_epi32(b_abef, b_abef0);
        b_cdgh = _mm_add_epi32(b_cdgh, b_cdgh0);
    }
    ni_store(sa, a_abef, a_cdgh);
    ni_store(sb, b_abef, b_cdgh);
}

static bool cpu_has_sha(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_SSSE3) || !(c & bit_SSE4_1))
        return false;
    return __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & bit_SHA);
}

#endif

/* -1: not looked at yet; 0: no SHA extensions; 1: they are there. A race
 * between threads asking at once only sets the same answer twice. */
static int accelerated = -1;
static bool accelerated_allowed = true;

bool blobhash_accelerated(void)
{
    if (accelerated < 0) {
#ifdef BLOBHASH_X86
        accelerated = cpu_has_sha() ? 1 : 0;
#else
        accelerated = 0;
#endif
    }
    return accelerated == 1 && accelerated_allowed;
}

void blobhash_allow_accelerated(bool allow)
{
    accelerated_allowed = allow;
}

/* Folds `blocks` message blocks at p into both states (SHA extensions
 * only: blobhash_reset chose them). */
static void compress_pair(uint32_t sa[8], uint32_t sb[8], const uint8_t *p, size_t blocks)
{
#ifdef BLOBHASH_X86
    compress_pair_ni(sa, sb, p, blocks);
#else
    (void)sa;
    (void)sb;
    (void)p;
    (void)blocks;
#endif
}

/* ====================================================================== */
/* Streaming                                                              */
/* ====================================================================== */

blobhash_t *blobhash_new(void)
{
    blobhash_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->whole_digest = sha256_new();
    self->block_digest = sha256_new();
    if (!self->whole_digest || !self->block_digest) {
        blobhash_destroy(&self);
        return NULL;
    }
    blobhash_reset(self);
    return self;
}

void blobhash_destroy(blobhash_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    blobhash_t *self = *self_p;
    sha256_destroy(&self->whole_digest);
    sha256_destroy(&self->block_digest);
    free(self);
    *self_p = NULL;
}

void blobhash_reset(blobhash_t *self)
{
    self->extensions = blobhash_accelerated();
    memcpy(self->whole, IV, sizeof IV);
    memcpy(self->block, IV, sizeof IV);
    self->buffered = 0;
    self->compressed = 0;
    sha256_reset(self->whole_digest);
    sha256_reset(self->block_digest);
    self->fed = 0;
}

uint64_t blobhash_length(const blobhash_t *self)
{
    return self->extensions ? self->compressed + self->buffered : self->fed;
}

/* --- with the SHA extensions ---------------------------------------------- */

/* The digest of a state that has folded `folded` bytes and has tail_len
 * (< 64) more in tail: the padding (0x80, zeros, the length in bits) in one
 * or two message blocks, on a copy of the state. */
static void digest_of(const uint32_t state[8], const uint8_t *tail, size_t tail_len,
                      uint64_t folded, uint8_t out[BLOBHASH_BYTES])
{
    uint32_t s[8], spare[8];
    memcpy(s, state, sizeof s);
    memcpy(spare, state, sizeof spare);
    uint8_t pad[128];
    memset(pad, 0, sizeof pad);
    if (tail_len > 0)
        memcpy(pad, tail, tail_len);
    pad[tail_len] = 0x80;
    size_t blocks = tail_len < 56 ? 1 : 2;
    uint64_t bits = (folded + tail_len) * 8;
    for (int i = 0; i < 8; i++)
        pad[64 * blocks - 1 - i] = (uint8_t)(bits >> (8 * i));
    compress_pair(s, spare, pad, blocks);
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(s[i] >> 24);
        out[4 * i + 1] = (uint8_t)(s[i] >> 16);
        out[4 * i + 2] = (uint8_t)(s[i] >> 8);
        out[4 * i + 3] = (uint8_t)s[i];
    }
}

/* After folding: a blob block that is complete has its digest told, and
 * the next one starts. */
static void block_boundary(blobhash_t *self, blobhash_block_fn *on_block, void *arg)
{
    if (self->compressed % BLOB_BLOCK_SIZE != 0)
        return;
    uint8_t digest[BLOBHASH_BYTES];
    digest_of(self->block, NULL, 0, BLOB_BLOCK_SIZE, digest);
    if (on_block)
        on_block(arg, self->compressed / BLOB_BLOCK_SIZE - 1, digest);
    memcpy(self->block, IV, sizeof IV);
}

static void update_extensions(blobhash_t *self, const uint8_t *p, size_t len,
                              blobhash_block_fn *on_block, void *arg)
{
    while (len > 0) {
        if (self->buffered > 0 || len < 64) {
            size_t take = 64 - self->buffered < len ? 64 - self->buffered : len;
            memcpy(self->buf + self->buffered, p, take);
            self->buffered += take;
            p += take;
            len -= take;
            if (self->buffered == 64) {
                compress_pair(self->whole, self->block, self->buf, 1);
                self->buffered = 0;
                self->compressed += 64;
                block_boundary(self, on_block, arg);
            }
            continue;
        }
        /* Straight from the caller's bytes, up to the end of the blob
         * block (whose digest must be taken there). */
        size_t room = (size_t)(BLOB_BLOCK_SIZE - self->compressed % BLOB_BLOCK_SIZE) / 64;
        size_t blocks = len / 64 < room ? len / 64 : room;
        compress_pair(self->whole, self->block, p, blocks);
        self->compressed += 64 * (uint64_t)blocks;
        p += 64 * blocks;
        len -= 64 * blocks;
        block_boundary(self, on_block, arg);
    }
}

static void final_extensions(blobhash_t *self, uint8_t whole[BLOBHASH_BYTES],
                             blobhash_block_fn *on_block, void *arg)
{
    uint64_t in_block = self->compressed % BLOB_BLOCK_SIZE;
    if (in_block > 0 || self->buffered > 0) {
        uint8_t digest[BLOBHASH_BYTES];
        digest_of(self->block, self->buf, self->buffered, in_block, digest);
        if (on_block)
            on_block(arg, self->compressed / BLOB_BLOCK_SIZE, digest);
    }
    digest_of(self->whole, self->buf, self->buffered, self->compressed, whole);
}

/* --- without: two OpenSSL digests ------------------------------------------- */

/* The digest of the block that ends here. */
static void block_done_openssl(blobhash_t *self, uint64_t block, blobhash_block_fn *on_block,
                               void *arg)
{
    uint8_t digest[BLOBHASH_BYTES];
    if (sha256_final(self->block_digest, digest) != 0)
        memset(digest, 0, sizeof digest); /* a failure: the block never matches */
    if (on_block)
        on_block(arg, block, digest);
}

static void update_openssl(blobhash_t *self, const uint8_t *p, size_t len,
                           blobhash_block_fn *on_block, void *arg)
{
    sha256_update(self->whole_digest, p, len);
    while (len > 0) {
        size_t room = BLOB_BLOCK_SIZE - (size_t)(self->fed % BLOB_BLOCK_SIZE);
        size_t take = len < room ? len : room;
        sha256_update(self->block_digest, p, take);
        self->fed += take;
        p += take;
        len -= take;
        if (self->fed % BLOB_BLOCK_SIZE == 0)
            block_done_openssl(self, self->fed / BLOB_BLOCK_SIZE - 1, on_block, arg);
    }
}

static void final_openssl(blobhash_t *self, uint8_t whole[BLOBHASH_BYTES],
                          blobhash_block_fn *on_block, void *arg)
{
    if (self->fed % BLOB_BLOCK_SIZE != 0)
        block_done_openssl(self, self->fed / BLOB_BLOCK_SIZE, on_block, arg);
    if (sha256_final(self->whole_digest, whole) != 0)
        memset(whole, 0, BLOBHASH_BYTES); /* a failure: no blob is named so */
}

/* --- either --------------------------------------------------------------- */

void blobhash_update(blobhash_t *self, const void *data, size_t len, blobhash_block_fn *on_block,
                     void *arg)
{
    if (len == 0)
        return;
    if (self->extensions)
        update_extensions(self, data, len, on_block, arg);
    else
        update_openssl(self, data, len, on_block, arg);
}

void blobhash_final(blobhash_t *self, uint8_t whole[BLOBHASH_BYTES], blobhash_block_fn *on_block,
                    void *arg)
{
    if (self->extensions)
        final_extensions(self, whole, on_block, arg);
    else
        final_openssl(self, whole, on_block, arg);
    blobhash_reset(self);
}
