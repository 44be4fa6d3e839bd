/* The two hashes a blob needs, in one pass over its bytes: the SHA-256 of
 * the whole blob (its name) and the SHA-256 of each BLOB_BLOCK_SIZE block
 * (its block list, blobs.h).
 *
 * Why not two OpenSSL digests side by side: that costs two full hashes per
 * byte, the largest part of the service's work on an upload. Both hashes
 * here go through the same 64-byte message blocks (a block starts at a
 * multiple of BLOB_BLOCK_SIZE, itself a multiple of 64), so they share the
 * message schedule, and with the CPU's SHA instructions their two chains of
 * rounds interleave: the pair costs little more than one hash. Without SHA
 * instructions (or off x86-64) two OpenSSL digests run side by side.
 *
 *   blobhash_t *h = blobhash_new();
 *   blobhash_update(h, bytes, len, on_block, arg);   in order, any pieces
 *   blobhash_final(h, whole, on_block, arg);         h starts again after
 *
 * on_block(arg, index, digest) is called for every block as soon as it is
 * complete, the last (short) one by blobhash_final; a blob of 0 bytes has
 * no block. Not thread-safe: one object per thread. */
#ifndef DOCSTORE_BLOBHASH_H
#define DOCSTORE_BLOBHASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BLOBHASH_BYTES 32

typedef void(blobhash_block_fn)(void *arg, uint64_t block, const uint8_t digest[BLOBHASH_BYTES]);

typedef struct blobhash_t blobhash_t;

/* A hash at the start of a blob. NULL if out of memory (or no SHA-256 from
 * OpenSSL). */
blobhash_t *blobhash_new(void);
void blobhash_destroy(blobhash_t **self_p);

/* Forgets what it was fed: the start of a blob again (and the moment the
 * way of hashing is chosen, blobhash_allow_accelerated). */
void blobhash_reset(blobhash_t *self);

/* Feeds the next len bytes; on_block (may be NULL) hears of each block
 * completed by them. */
void blobhash_update(blobhash_t *self, const void *data, size_t len, blobhash_block_fn *on_block,
                     void *arg);

/* The digest of everything fed into whole, and of the last block when it
 * is short, through on_block; then resets. */
void blobhash_final(blobhash_t *self, uint8_t whole[BLOBHASH_BYTES], blobhash_block_fn *on_block,
                    void *arg);

/* Bytes fed since the start. */
uint64_t blobhash_length(const blobhash_t *self);

/* Whether this process uses the CPU's SHA instructions (for tests and
 * logs). */
bool blobhash_accelerated(void);

/* Test hook: false makes every hash reset from now on use OpenSSL's two
 * digests, so that both ways can be checked on a CPU that has the
 * instructions. */
void blobhash_allow_accelerated(bool allow);

#endif
