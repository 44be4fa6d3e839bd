/* Content-addressed blobs on the docstore's volume.
 *
 * Layout under the store's folder (PASSERELLE_DOCSTORE_DIR):
 *   blobs/<aa>/<sha256>          the bytes of one version, immutable, named
 *                                by their SHA-256 (hex); <aa> = its first two
 *                                hex digits, so no folder grows too large
 *   blobs/<aa>/<sha256>.blocks   the SHA-256 of each BLOB_BLOCK_SIZE block,
 *                                so a range can be verified without reading
 *                                the whole blob
 *   tmp/<upload id>              an upload in progress
 * A blob is written to tmp/, fsynced, hashed, its block list written and
 * fsynced, then renamed into blobs/ and the folder fsynced: only then may
 * its metadata be recorded (in Redis, by the caller). Identical content is
 * stored once: committing bytes whose blob exists just drops the upload.
 *
 * Memory: every operation streams through a buffer of at most one block;
 * no call holds a whole blob. */
#ifndef DOCSTORE_BLOBS_H
#define DOCSTORE_BLOBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BLOB_BLOCK_SIZE (1024 * 1024)
#define BLOB_SHA_HEX    65 /* 64 hex digits + NUL */

typedef enum {
    BLOB_OK = 0,
    BLOB_MISSING,  /* no such blob (or upload) */
    BLOB_CORRUPT,  /* bytes no longer match their hash */
    BLOB_MISMATCH, /* an upload's bytes are not the expected size/SHA-256 */
    BLOB_NO_SPACE, /* the volume (or the quota) is full: nothing was kept */
    BLOB_IO,       /* any other system error (message says which) */
} blob_result_t;

typedef struct blobstore_t blobstore_t;

/* Opens (creating its folders) the store in dir. quota_bytes = 0: no quota
 * but the volume's. NULL with a message in err on failure. */
blobstore_t *blobstore_new(const char *dir, uint64_t quota_bytes, char *err, size_t err_size);
void blobstore_destroy(blobstore_t **self_p);

/* --- uploads ------------------------------------------------------------ */

/* Creates tmp/<upload_id> with room for size bytes reserved up front
 * (posix_fallocate), so a full volume is found before any byte is sent:
 * BLOB_NO_SPACE, nothing left behind. Also BLOB_NO_SPACE when the quota
 * would be exceeded by the blobs plus the uploads in progress. */
blob_result_t blobstore_upload_create(blobstore_t *self, const char *upload_id, uint64_t size,
                                      char *err, size_t err_size);

/* Writes data at offset of the upload (pwrite: writing the same chunk
 * twice is harmless). */
blob_result_t blobstore_upload_write(blobstore_t *self, const char *upload_id, uint64_t offset,
                                     const void *data, size_t len, char *err, size_t err_size);

/* Finishes an upload: fsync, hash (streaming), compare with the expected
 * size and SHA-256 (BLOB_MISMATCH: the upload is removed), write the block
 * list, rename into blobs/ (or drop it if that blob exists: dedup), fsync
 * the folders. sha_out gets the hex SHA-256; *deduplicated says whether the
 * blob was there already. */
blob_result_t blobstore_upload_commit(blobstore_t *self, const char *upload_id,
                                      uint64_t expected_size, const char *expected_sha256,
                                      char sha_out[BLOB_SHA_HEX], bool *deduplicated, char *err,
                                      size_t err_size);

/* Removes an upload's temporary file (abandoned, refused). Idempotent. */
void blobstore_upload_remove(blobstore_t *self, const char *upload_id);

/* Removes temporary files older than max_age_s whose upload id keep() does
 * not claim (keep may be NULL: remove all old ones). Returns how many. */
unsigned blobstore_sweep_uploads(blobstore_t *self, unsigned max_age_s,
                                 bool (*keep)(void *arg, const char *upload_id), void *arg);

/* --- reading ------------------------------------------------------------ */

/* Reads up to len bytes at offset into buf (len at most BLOB_BLOCK_SIZE),
 * verifying every block the range touches against the block list before
 * any byte is returned: BLOB_CORRUPT if one does not match (nothing is
 * returned), BLOB_MISSING if the blob is not there. *got gets the number of
 * bytes read (less than len at the end). */
blob_result_t blobstore_read(blobstore_t *self, const char *sha256, uint64_t offset, void *buf,
                             size_t len, size_t *got, char *err, size_t err_size);

/* Size of a blob on disk; BLOB_MISSING if absent. */
blob_result_t blobstore_size(blobstore_t *self, const char *sha256, uint64_t *size);

/* --- integrity and space ------------------------------------------------ */

/* Re-hashes a whole blob (streaming) against its name and its block list. */
blob_result_t blobstore_verify(blobstore_t *self, const char *sha256, uint64_t *size, char *err,
                               size_t err_size);

/* Calls fn for every blob on disk (its SHA-256 and size). Returns the count,
 * or -1 on an I/O error. */
long blobstore_each(blobstore_t *self, void (*fn)(void *arg, const char *sha256, uint64_t size),
                    void *arg);

/* A place in a walk over the blobs a slice at a time (blobstore_walk), for
 * work that must not hold the service up for a whole scan (garbage
 * collection): the folder blobs/<aa> being walked and the last blob handed
 * out of it. All zero: the start. */
typedef struct {
    unsigned folder;          /* 0..255: the <aa> of the folder */
    char after[BLOB_SHA_HEX]; /* last blob handed out of it, "" for none */
    unsigned long passes;     /* full passes completed */
} blob_cursor_t;

/* Calls fn for at most max blobs, in order of their SHA-256, from where the
 * cursor stands, and moves the cursor past them. At the end of the last
 * folder the cursor goes back to the start (passes + 1) and the call
 * returns, even with fewer than max. Each folder visited is read once;
 * memory is max names, whatever the number of blobs. Returns how many
 * blobs were handed out, or -1 on an I/O error (the cursor stays at the
 * folder that failed). A block list whose blob is gone, met in a folder
 * visited, is removed (garbage). */
long blobstore_walk(blobstore_t *self, blob_cursor_t *cursor, size_t max,
                    void (*fn)(void *arg, const char *sha256, uint64_t size), void *arg);

/* Removes a blob, then its block list (garbage collection); BLOB_MISSING
 * if the blob is gone (a block list left of it is removed). */
blob_result_t blobstore_remove(blobstore_t *self, const char *sha256);

/* Bytes used by blobs and uploads in progress (for the quota and metrics). */
uint64_t blobstore_used_bytes(blobstore_t *self);

/* True for 64 lower-case hex digits. */
bool blob_sha_valid(const char *text);

#endif
