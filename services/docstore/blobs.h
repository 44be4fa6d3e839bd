/* Content-addressed blobs on the docstore's volume.
 *
 * Layout under the store's folder (PASSERELLE_DOCSTORE_DIR):
 *   blobs/<aa>/<sha256>          the bytes of one version, immutable, named
 *                                by their SHA-256 (hex); <aa> = its first two
 *                                hex digits, so no folder grows too large
 *   blobs/<aa>/<sha256>.blocks   the SHA-256 of each BLOB_BLOCK_SIZE block,
 *                                so a range can be verified without reading
 *                                the whole blob; none for a blob of one
 *                                block (at most BLOB_BLOCK_SIZE bytes), whose
 *                                one line would be its name (one left by an
 *                                earlier version is ignored)
 *   tmp/<upload id>              an upload in progress
 *   tmp/<upload id>.blocks       its block list, as it is made
 *   tmp/<upload id>.progress     how many bytes of it were written, and in
 *                                which boot of the machine (see
 *                                blobstore_upload_progress)
 * A blob is written to tmp/, fsynced, hashed, its block list (if it has
 * one) written and fsynced, then renamed into blobs/ and the folder
 * fsynced: only then may
 * its metadata be recorded (in Redis, by the caller). Identical content is
 * stored once: committing bytes whose blob exists just drops the upload.
 * The hashes are made as the bytes are written when they come in order
 * (blob_hasher_t), so a commit need not read the file back; otherwise (a
 * restart of the service in the middle) the commit reads it.
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

/* The running hash of an upload (one per upload in progress, owned by the
 * caller): the SHA-256 of its bytes in order and of each block, whose line
 * goes to tmp/<id>.blocks as soon as the block is complete. It stays valid
 * while every byte it is fed is written right after the previous one and
 * nothing else touches the file; otherwise the commit reads the file. */
typedef struct blob_hasher_t blob_hasher_t;

/* A hasher at offset 0. NULL if out of memory (or no SHA-256). */
blob_hasher_t *blob_hasher_new(void);
void blob_hasher_destroy(blob_hasher_t **self_p);

/* Whether it still describes the upload from its first byte, and up to
 * where. */
bool blob_hasher_valid(const blob_hasher_t *self);
uint64_t blob_hasher_length(const blob_hasher_t *self);

/* Writes data at offset of the upload, as blobstore_upload_write, then
 * records offset + len as the bytes received (tmp/<id>.progress) and, when
 * hasher (may be NULL) stands at offset, feeds it; a hasher elsewhere is
 * made invalid. The caller writes in order: offset is the bytes received
 * so far. */
blob_result_t blobstore_upload_append(blobstore_t *self, const char *upload_id,
                                      blob_hasher_t *hasher, uint64_t offset, const void *data,
                                      size_t len, char *err, size_t err_size);

/* The bytes an upload is known to hold, for a service that lost its own
 * count (a restart): what its last append recorded, if that was in this
 * boot of the machine (the kernel still holds what was written, whatever
 * became of the process), else 0. BLOB_MISSING if the upload's file is
 * gone. */
blob_result_t blobstore_upload_progress(blobstore_t *self, const char *upload_id,
                                        uint64_t *received);

/* Makes the bytes written so far durable (fdatasync), for a caller about to
 * record how many there are where they must survive a crash. */
blob_result_t blobstore_upload_sync(blobstore_t *self, const char *upload_id, char *err,
                                    size_t err_size);

/* Finishes an upload: fsync, hash (streaming), compare with the expected
 * size and SHA-256 (BLOB_MISMATCH: the upload is removed), write the block
 * list, rename into blobs/ (or drop it if that blob exists: dedup), fsync
 * the blob's folder. sha_out gets the hex SHA-256; *deduplicated says whether the
 * blob was there already. */
blob_result_t blobstore_upload_commit(blobstore_t *self, const char *upload_id,
                                      uint64_t expected_size, const char *expected_sha256,
                                      char sha_out[BLOB_SHA_HEX], bool *deduplicated, char *err,
                                      size_t err_size);

/* The same, without reading the file when hasher (may be NULL) is valid,
 * covers expected_size and the file was not changed since its last append
 * (same inode, change time and size): its digest is compared instead, and
 * the block list it wrote is installed. Otherwise exactly
 * blobstore_upload_commit. *hashed (may be NULL) says which was done. The
 * hasher is spent either way (invalid after). */
blob_result_t blobstore_upload_commit_hashed(blobstore_t *self, const char *upload_id,
                                             blob_hasher_t *hasher, uint64_t expected_size,
                                             const char *expected_sha256,
                                             char sha_out[BLOB_SHA_HEX], bool *deduplicated,
                                             bool *hashed, char *err, size_t err_size);

/* A whole blob of len bytes (at most BLOB_BLOCK_SIZE) in one call: checked
 * against expected_sha256 first (BLOB_MISMATCH, nothing written), then
 * written under tmp/<name> (whatever an earlier run left there goes
 * first), fsynced and renamed into blobs/ as a commit does (the same
 * dedup, the same quota: BLOB_NO_SPACE, nothing left behind). Running it
 * again is harmless. blobstore_put_many of one. */
blob_result_t blobstore_put(blobstore_t *self, const char *name, const void *data, size_t len,
                            const char *expected_sha256, char sha_out[BLOB_SHA_HEX],
                            bool *deduplicated, char *err, size_t err_size);

/* One whole blob of a blobstore_put_many call. */
typedef struct {
    /* In: the temporary name under tmp/ (an upload id: 1 to 40 letters or
     * digits, each distinct within the call), the bytes (at most
     * BLOB_BLOCK_SIZE, borrowed for the call) and their SHA-256. */
    const char *name;
    const void *data;
    size_t len;
    const char *expected_sha256;
    /* Out: as blobstore_put says, each put on its own. */
    blob_result_t result;
    char sha[BLOB_SHA_HEX]; /* "" unless BLOB_OK */
    bool deduplicated;
    char err[256]; /* why, unless BLOB_OK */
} blob_put_t;

/* Stores count whole blobs, each as blobstore_put would, but together:
 * every one checked and written first (with its write-back started), then
 * every one fsynced, then renamed into blobs/, then each folder that
 * received one fsynced once. On a journaling file system the first fsync
 * commits the journal for all of them, so the batch costs about two
 * journal commits instead of two per blob. Each put's outcome is its own:
 * a failure (mismatch, quota, a write, fsync or rename refused) fails that
 * put alone, nothing of it left in tmp/, except that a folder whose fsync
 * fails fails every put renamed into it (their blobs stay in place, no
 * version naming them: garbage for the collector). Two puts of the same
 * bytes store them once (the second deduplicated). */
void blobstore_put_many(blobstore_t *self, blob_put_t *puts, size_t count);

/* Removes an upload's temporary files (abandoned, refused). Idempotent. */
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

/* Its size and when its file last changed (ctime, seconds since the
 * epoch: an install, which renames new bytes in, sets it); either may be
 * NULL. */
blob_result_t blobstore_stat(blobstore_t *self, const char *sha256, uint64_t *size,
                             int64_t *changed_s);

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
