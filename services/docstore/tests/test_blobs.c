/* The blob store on a real folder: round trips across block boundaries,
 * dedup, refused uploads, corruption found on read and by verify, the
 * quota and a really full filesystem, the sweep of abandoned uploads, and
 * memory that does not grow with a blob's size. The hashes made in one pass
 * (blobhash.h) against libsodium's, both ways; commits from the hashes made
 * as the bytes came, and the commits that must read the file instead (a
 * hasher that missed bytes, none, a file changed behind the store's back);
 * the progress record; whole small blobs in one call. */
#include "blobhash.h"
#include "blobs.h"
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#define MIB   (1024u * 1024u)
#define CHUNK (256u * 1024u)

static char *root; /* temporary folder of the whole group */

/* Formats a path, failing the test if it does not fit. */
static void pathf(char out[PATH_MAX], const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void pathf(char out[PATH_MAX], const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    int n = vsnprintf(out, PATH_MAX, fmt, args);
    va_end(args);
    assert_true(n > 0 && n < PATH_MAX);
}

static int group_setup(void **state)
{
    (void)state;
    if (sodium_init() < 0)
        return -1;
    root = harness_tempdir("blobs");
    return root ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    harness_rmtree(root);
    free(root);
    return 0;
}

/* A fresh store in <root>/<name> (path copied to dir_out if given). */
static blobstore_t *new_store(const char *name, uint64_t quota, char dir_out[PATH_MAX])
{
    char dir[PATH_MAX];
    pathf(dir, "%s/%s", root, name);
    char err[256] = "";
    blobstore_t *store = blobstore_new(dir, quota, err, sizeof err);
    if (!store)
        fail_msg("blobstore_new %s: %s", dir, err);
    if (dir_out)
        memcpy(dir_out, dir, PATH_MAX);
    return store;
}

static void sha_hex(const void *data, size_t len, char hex[BLOB_SHA_HEX])
{
    unsigned char raw[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(raw, data, len);
    sodium_bin2hex(hex, BLOB_SHA_HEX, raw, sizeof raw);
}

/* Uploads data in CHUNK pieces, last piece first (offsets, not order,
 * place the bytes), and commits it. Returns the commit's result. */
static blob_result_t put(blobstore_t *store, const char *id, const void *data, size_t len,
                         char sha[BLOB_SHA_HEX], bool *dedup)
{
    char err[256] = "";
    char expected[BLOB_SHA_HEX];
    sha_hex(data, len, expected);
    assert_int_equal(blobstore_upload_create(store, id, len, err, sizeof err), BLOB_OK);
    size_t pieces = (len + CHUNK - 1) / CHUNK;
    for (size_t i = pieces; i-- > 0;) {
        size_t off = i * CHUNK;
        size_t n = len - off < CHUNK ? len - off : CHUNK;
        assert_int_equal(
            blobstore_upload_write(store, id, off, (const char *)data + off, n, err, sizeof err),
            BLOB_OK);
    }
    blob_result_t rc =
        blobstore_upload_commit(store, id, len, expected, sha, dedup, err, sizeof err);
    if (rc == BLOB_OK)
        assert_string_equal(sha, expected);
    return rc;
}

/* Reads the whole blob back in reads of `step` bytes at `first` then
 * every step, and compares with data. */
static void read_back(blobstore_t *store, const char *sha, const unsigned char *data, size_t len,
                      size_t step)
{
    unsigned char *buf = malloc(BLOB_BLOCK_SIZE);
    assert_non_null(buf);
    char err[256] = "";
    size_t pos = 0;
    while (pos < len) {
        size_t got = 0;
        assert_int_equal(blobstore_read(store, sha, pos, buf, step, &got, err, sizeof err),
                         BLOB_OK);
        size_t want = len - pos < step ? len - pos : step;
        assert_int_equal(got, want);
        assert_memory_equal(buf, data + pos, got);
        pos += got;
    }
    size_t got = 99;
    assert_int_equal(blobstore_read(store, sha, len, buf, step, &got, err, sizeof err), BLOB_OK);
    assert_int_equal(got, 0);
    free(buf);
}

static unsigned count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    unsigned n = 0;
    struct dirent *entry;
    while ((entry = readdir(d)) != NULL)
        if (entry->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

static void path_in(char out[PATH_MAX], const char *dir, const char *sub, const char *sha,
                    const char *suffix)
{
    if (sha)
        pathf(out, "%s/%s/%.2s/%s%s", dir, sub, sha, sha, suffix);
    else
        pathf(out, "%s/%s", dir, sub);
}

/* --- memory ------------------------------------------------------------- */

static long max_rss_kb(void)
{
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    return usage.ru_maxrss;
}

/* Runs first, while the process's peak RSS is still low: a commit or a read
 * that held the blob would raise it by 64 MB. */
static void test_memory_bounded(void **state)
{
    (void)state;
    const size_t size = 64 * MIB;
    blobstore_t *store = new_store("memory", 0, NULL);
    unsigned char *chunk = malloc(MIB);
    assert_non_null(chunk);
    memset(chunk, 1, MIB);
    char err[256] = "";
    assert_int_equal(blobstore_upload_create(store, "Lmemory", size, err, sizeof err), BLOB_OK);
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    unsigned char seed[randombytes_SEEDBYTES] = {0};
    for (size_t off = 0; off < size; off += MIB) {
        seed[0] = (unsigned char)(off / MIB);
        randombytes_buf_deterministic(chunk, MIB, seed);
        crypto_hash_sha256_update(&st, chunk, MIB);
        assert_int_equal(blobstore_upload_write(store, "Lmemory", off, chunk, MIB, err, sizeof err),
                         BLOB_OK);
    }
    unsigned char raw[crypto_hash_sha256_BYTES];
    char expected[BLOB_SHA_HEX], sha[BLOB_SHA_HEX];
    crypto_hash_sha256_final(&st, raw);
    sodium_bin2hex(expected, sizeof expected, raw, sizeof raw);

    long before_kb = max_rss_kb();
    bool dedup = true;
    assert_int_equal(
        blobstore_upload_commit(store, "Lmemory", size, expected, sha, &dedup, err, sizeof err),
        BLOB_OK);
    assert_false(dedup);
    assert_string_equal(sha, expected);

    crypto_hash_sha256_init(&st);
    for (size_t off = 0; off < size; off += MIB) {
        size_t got = 0;
        assert_int_equal(blobstore_read(store, sha, off, chunk, MIB, &got, err, sizeof err),
                         BLOB_OK);
        assert_int_equal(got, MIB);
        crypto_hash_sha256_update(&st, chunk, got);
    }
    crypto_hash_sha256_final(&st, raw);
    char read_sha[BLOB_SHA_HEX];
    sodium_bin2hex(read_sha, sizeof read_sha, raw, sizeof raw);
    assert_string_equal(read_sha, expected);
    uint64_t verified = 0;
    assert_int_equal(blobstore_verify(store, sha, &verified, err, sizeof err), BLOB_OK);
    assert_int_equal(verified, size);
    long growth_kb = max_rss_kb() - before_kb;
    if (growth_kb >= 8 * 1024)
        fail_msg("peak RSS grew by %ld kB across commit and read of 64 MB", growth_kb);

    assert_int_equal(blobstore_remove(store, sha), BLOB_OK);
    free(chunk);
    blobstore_destroy(&store);
    assert_null(store);
}

/* --- round trips -------------------------------------------------------- */

static void test_round_trips(void **state)
{
    (void)state;
    char dir[PATH_MAX];
    blobstore_t *store = new_store("round", 0, dir);
    const size_t sizes[] = {0, 1, BLOB_BLOCK_SIZE, BLOB_BLOCK_SIZE + 1, 5 * MIB + 12345};
    uint64_t total = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t len = sizes[i];
        unsigned char *data = malloc(len ? len : 1);
        assert_non_null(data);
        randombytes_buf(data, len);
        char id[16], sha[BLOB_SHA_HEX], err[256] = "";
        snprintf(id, sizeof id, "Lround%zu", i);
        bool dedup = true;
        assert_int_equal(put(store, id, data, len, sha, &dedup), BLOB_OK);
        assert_false(dedup);
        total += len;
        assert_int_equal(blobstore_used_bytes(store), total);

        uint64_t size = 99;
        assert_int_equal(blobstore_size(store, sha, &size), BLOB_OK);
        assert_int_equal(size, len);
        assert_int_equal(blobstore_verify(store, sha, &size, err, sizeof err), BLOB_OK);
        assert_int_equal(size, len);

        /* Aligned reads, then reads that straddle block boundaries. */
        read_back(store, sha, data, len, BLOB_BLOCK_SIZE);
        read_back(store, sha, data, len, 300 * 1024 + 7);
        if (len > 10) {
            unsigned char buf[64];
            size_t got = 0;
            assert_int_equal(
                blobstore_read(store, sha, len - 5, buf, sizeof buf, &got, err, sizeof err),
                BLOB_OK);
            assert_int_equal(got, 5);
            assert_memory_equal(buf, data + len - 5, 5);
        }

        /* The blob is read-only and the upload is gone. */
        char path[PATH_MAX];
        struct stat st;
        path_in(path, dir, "blobs", sha, "");
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0444);
        /* A block list for a blob of more than one block only: that of
         * one block would be its name. */
        path_in(path, dir, "blobs", sha, ".blocks");
        if (len <= BLOB_BLOCK_SIZE) {
            assert_int_equal(stat(path, &st), -1);
            assert_int_equal(errno, ENOENT);
        } else {
            assert_int_equal(stat(path, &st), 0);
            assert_int_equal(st.st_size, ((len + BLOB_BLOCK_SIZE - 1) / BLOB_BLOCK_SIZE) * 65);
        }
        free(data);
    }
    char tmp[PATH_MAX];
    path_in(tmp, dir, "tmp", NULL, NULL);
    assert_int_equal(count_entries(tmp), 0);

    /* A read larger than a block is refused; an unknown blob is missing. */
    char err[256] = "";
    unsigned char byte;
    size_t got;
    char unknown[BLOB_SHA_HEX];
    memset(unknown, 'a', 64);
    unknown[64] = '\0';
    assert_int_equal(blobstore_read(store, unknown, 0, &byte, 1, &got, err, sizeof err),
                     BLOB_MISSING);
    assert_non_null(strstr(err, "not found"));
    assert_int_equal(blobstore_size(store, unknown, NULL), BLOB_MISSING);

    /* Reopening finds the same bytes in use. */
    blobstore_destroy(&store);
    store = new_store("round", 0, NULL);
    assert_int_equal(blobstore_used_bytes(store), total);
    assert_int_equal(blobstore_each(store, NULL, NULL), 5);
    blobstore_destroy(&store);
}

/* --- dedup and idempotence ---------------------------------------------- */

static void test_dedup_and_retries(void **state)
{
    (void)state;
    char dir[PATH_MAX];
    blobstore_t *store = new_store("dedup", 0, dir);
    size_t len = 2 * MIB + 3;
    unsigned char *data = malloc(len);
    assert_non_null(data);
    randombytes_buf(data, len);
    char sha1[BLOB_SHA_HEX], sha2[BLOB_SHA_HEX], err[256] = "";
    bool dedup = true;
    assert_int_equal(put(store, "Lfirst", data, len, sha1, &dedup), BLOB_OK);
    assert_false(dedup);
    assert_int_equal(put(store, "Lsecond", data, len, sha2, &dedup), BLOB_OK);
    assert_true(dedup);
    assert_string_equal(sha1, sha2);
    assert_int_equal(blobstore_each(store, NULL, NULL), 1);
    assert_int_equal(blobstore_used_bytes(store), len);

    /* A commit run again once its upload is gone answers the same blob. */
    char sha3[BLOB_SHA_HEX];
    assert_int_equal(
        blobstore_upload_commit(store, "Lsecond", len, sha1, sha3, &dedup, err, sizeof err),
        BLOB_OK);
    assert_true(dedup);
    assert_string_equal(sha3, sha1);
    /* ... but not for bytes that were never stored. */
    char other[BLOB_SHA_HEX];
    memset(other, 'b', 64);
    other[64] = '\0';
    assert_int_equal(
        blobstore_upload_commit(store, "Lnever", 10, other, sha3, &dedup, err, sizeof err),
        BLOB_MISSING);

    /* Create is idempotent: the same size keeps what was written. */
    assert_int_equal(blobstore_upload_create(store, "Lagain", 10, err, sizeof err), BLOB_OK);
    assert_int_equal(blobstore_upload_write(store, "Lagain", 0, "0123456789", 10, err, sizeof err),
                     BLOB_OK);
    assert_int_equal(blobstore_upload_create(store, "Lagain", 10, err, sizeof err), BLOB_OK);
    assert_int_equal(blobstore_used_bytes(store), len + 10);
    assert_int_equal(blobstore_upload_create(store, "Lagain", 5, err, sizeof err), BLOB_IO);
    assert_non_null(strstr(err, "Lagain"));
    /* Writing the same chunk twice is harmless; past the end is refused. */
    assert_int_equal(blobstore_upload_write(store, "Lagain", 5, "56789", 5, err, sizeof err),
                     BLOB_OK);
    assert_int_equal(blobstore_upload_write(store, "Lagain", 8, "89x", 3, err, sizeof err),
                     BLOB_MISMATCH);
    char expected[BLOB_SHA_HEX];
    sha_hex("0123456789", 10, expected);
    assert_int_equal(
        blobstore_upload_commit(store, "Lagain", 10, expected, sha3, &dedup, err, sizeof err),
        BLOB_OK);
    assert_false(dedup);
    assert_int_equal(blobstore_used_bytes(store), len + 10);
    assert_int_equal(blobstore_upload_write(store, "Lagain", 0, "x", 1, err, sizeof err),
                     BLOB_MISSING);

    /* Upload ids outside [A-Za-z0-9]{1,40} are refused. */
    const char *bad_ids[] = {"", "../etc", "a.b", "a/b",
                             "L12345678901234567890123456789012345678901"};
    for (size_t i = 0; i < sizeof bad_ids / sizeof bad_ids[0]; i++) {
        err[0] = '\0';
        assert_int_equal(blobstore_upload_create(store, bad_ids[i], 1, err, sizeof err), BLOB_IO);
        assert_non_null(strstr(err, "upload_id"));
    }
    char tmp[PATH_MAX];
    path_in(tmp, dir, "tmp", NULL, NULL);
    assert_int_equal(count_entries(tmp), 0);
    free(data);
    blobstore_destroy(&store);
}

/* --- refused uploads ---------------------------------------------------- */

static void test_mismatch(void **state)
{
    (void)state;
    char dir[PATH_MAX], tmp[PATH_MAX];
    blobstore_t *store = new_store("mismatch", 0, dir);
    path_in(tmp, dir, "tmp", NULL, NULL);
    unsigned char data[3000];
    randombytes_buf(data, sizeof data);
    char sha[BLOB_SHA_HEX], right[BLOB_SHA_HEX], err[256] = "";
    sha_hex(data, sizeof data, right);
    bool dedup;

    /* Size. */
    assert_int_equal(blobstore_upload_create(store, "Lsize", sizeof data, err, sizeof err),
                     BLOB_OK);
    assert_int_equal(blobstore_upload_write(store, "Lsize", 0, data, sizeof data, err, sizeof err),
                     BLOB_OK);
    assert_int_equal(blobstore_upload_commit(store, "Lsize", sizeof data + 1, right, sha, &dedup,
                                             err, sizeof err),
                     BLOB_MISMATCH);
    assert_non_null(strstr(err, "expected 3001"));
    assert_int_equal(count_entries(tmp), 0);

    /* SHA-256: one byte differs. */
    assert_int_equal(blobstore_upload_create(store, "Lsha", sizeof data, err, sizeof err), BLOB_OK);
    data[1500] ^= 1;
    assert_int_equal(blobstore_upload_write(store, "Lsha", 0, data, sizeof data, err, sizeof err),
                     BLOB_OK);
    assert_int_equal(
        blobstore_upload_commit(store, "Lsha", sizeof data, right, sha, &dedup, err, sizeof err),
        BLOB_MISMATCH);
    assert_non_null(strstr(err, "SHA-256"));
    assert_int_equal(count_entries(tmp), 0);
    assert_int_equal(blobstore_each(store, NULL, NULL), 0);
    assert_int_equal(blobstore_used_bytes(store), 0);
    blobstore_destroy(&store);
}

/* --- corruption --------------------------------------------------------- */

static void flip_byte(const char *path, off_t offset)
{
    assert_int_equal(chmod(path, 0644), 0);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    unsigned char byte;
    assert_int_equal(pread(fd, &byte, 1, offset), 1);
    byte ^= 0x40;
    assert_int_equal(pwrite(fd, &byte, 1, offset), 1);
    close(fd);
}

static void test_corruption(void **state)
{
    (void)state;
    char dir[PATH_MAX], path[PATH_MAX];
    blobstore_t *store = new_store("corrupt", 0, dir);
    size_t len = 2 * MIB + MIB / 2;
    unsigned char *data = malloc(len);
    unsigned char *buf = malloc(BLOB_BLOCK_SIZE);
    assert_non_null(data);
    assert_non_null(buf);
    randombytes_buf(data, len);
    char sha[BLOB_SHA_HEX], err[256] = "";
    bool dedup;
    assert_int_equal(put(store, "Lcorrupt", data, len, sha, &dedup), BLOB_OK);
    path_in(path, dir, "blobs", sha, "");
    flip_byte(path, BLOB_BLOCK_SIZE + 1000);

    size_t got = 7;
    assert_int_equal(blobstore_read(store, sha, 0, buf, BLOB_BLOCK_SIZE, &got, err, sizeof err),
                     BLOB_OK);
    assert_int_equal(got, BLOB_BLOCK_SIZE);
    err[0] = '\0';
    assert_int_equal(
        blobstore_read(store, sha, BLOB_BLOCK_SIZE, buf, BLOB_BLOCK_SIZE, &got, err, sizeof err),
        BLOB_CORRUPT);
    assert_int_equal(got, 0);
    assert_non_null(strstr(err, "block 1"));
    /* A partial range of the bad block, far from the flipped byte, and a
     * range straddling into it, are refused too. */
    assert_int_equal(
        blobstore_read(store, sha, BLOB_BLOCK_SIZE + 500000, buf, 10, &got, err, sizeof err),
        BLOB_CORRUPT);
    assert_int_equal(
        blobstore_read(store, sha, BLOB_BLOCK_SIZE - 10, buf, 20, &got, err, sizeof err),
        BLOB_CORRUPT);
    assert_int_equal(blobstore_read(store, sha, 2 * BLOB_BLOCK_SIZE, buf, BLOB_BLOCK_SIZE, &got,
                                    err, sizeof err),
                     BLOB_OK);
    assert_int_equal(got, MIB / 2);
    assert_memory_equal(buf, data + 2 * BLOB_BLOCK_SIZE, got);
    uint64_t size = 0;
    err[0] = '\0';
    assert_int_equal(blobstore_verify(store, sha, &size, err, sizeof err), BLOB_CORRUPT);
    assert_int_equal(size, len);
    assert_non_null(strstr(err, "block 1"));

    /* A truncated blob no longer matches its block list. */
    assert_int_equal(truncate(path, (off_t)len - 1), 0);
    assert_int_equal(blobstore_verify(store, sha, &size, err, sizeof err), BLOB_CORRUPT);
    assert_int_equal(
        blobstore_read(store, sha, 2 * BLOB_BLOCK_SIZE, buf, 10, &got, err, sizeof err),
        BLOB_CORRUPT);
    assert_non_null(strstr(err, "block 2"));

    /* Committing the same bytes again replaces a blob of the wrong size. */
    assert_int_equal(put(store, "Lrepair", data, len, sha, &dedup), BLOB_OK);
    assert_false(dedup);
    assert_int_equal(blobstore_verify(store, sha, &size, err, sizeof err), BLOB_OK);
    read_back(store, sha, data, len, BLOB_BLOCK_SIZE);

    /* Damaged at its right size, it is repaired as well by the same bytes
     * committed again (still counted as deduplicated: one copy), not kept
     * damaged under a new version. */
    flip_byte(path, 10);
    assert_int_equal(blobstore_verify(store, sha, &size, err, sizeof err), BLOB_CORRUPT);
    uint64_t used = blobstore_used_bytes(store);
    assert_int_equal(put(store, "Lrepair2", data, len, sha, &dedup), BLOB_OK);
    assert_true(dedup);
    assert_int_equal(blobstore_used_bytes(store), used);
    assert_int_equal(blobstore_verify(store, sha, &size, err, sizeof err), BLOB_OK);
    read_back(store, sha, data, len, BLOB_BLOCK_SIZE);
    free(data);
    free(buf);
    blobstore_destroy(&store);
}

static void test_missing_block_list(void **state)
{
    (void)state;
    char dir[PATH_MAX], path[PATH_MAX];
    blobstore_t *store = new_store("noblocks", 0, dir);
    /* More than one block: a blob of one has no list to miss. */
    const size_t len = BLOB_BLOCK_SIZE + 70000;
    unsigned char *data = malloc(len);
    assert_non_null(data);
    randombytes_buf(data, len);
    char sha[BLOB_SHA_HEX], err[256] = "";
    bool dedup;
    assert_int_equal(put(store, "Lnoblocks", data, len, sha, &dedup), BLOB_OK);
    path_in(path, dir, "blobs", sha, ".blocks");
    assert_int_equal(unlink(path), 0);

    unsigned char buf[100];
    size_t got;
    uint64_t size = 0;
    assert_int_equal(blobstore_read(store, sha, 0, buf, sizeof buf, &got, err, sizeof err),
                     BLOB_CORRUPT);
    assert_non_null(strstr(err, "block list"));
    assert_int_equal(blobstore_verify(store, sha, &size, err, sizeof err), BLOB_CORRUPT);
    assert_int_equal(size, len);
    /* The blob still counts as stored; committing it again rewrites the list. */
    assert_int_equal(blobstore_each(store, NULL, NULL), 1);
    assert_int_equal(put(store, "Lrelist", data, len, sha, &dedup), BLOB_OK);
    assert_true(dedup);
    assert_int_equal(blobstore_verify(store, sha, &size, err, sizeof err), BLOB_OK);
    read_back(store, sha, data, len, 4096);

    /* A damaged list is corruption as well. */
    flip_byte(path, 3);
    assert_int_equal(blobstore_read(store, sha, 0, buf, sizeof buf, &got, err, sizeof err),
                     BLOB_CORRUPT);
    assert_non_null(strstr(err, "block 0"));
    free(data);
    blobstore_destroy(&store);
}

/* --- space -------------------------------------------------------------- */

static void test_quota(void **state)
{
    (void)state;
    char dir[PATH_MAX], tmp[PATH_MAX];
    blobstore_t *store = new_store("quota", 3 * MIB, dir);
    path_in(tmp, dir, "tmp", NULL, NULL);
    char err[256] = "";
    assert_int_equal(blobstore_upload_create(store, "Lfits", 2 * MIB, err, sizeof err), BLOB_OK);
    assert_int_equal(blobstore_used_bytes(store), 2 * MIB);
    assert_int_equal(blobstore_upload_create(store, "Ltoobig", 2 * MIB, err, sizeof err),
                     BLOB_NO_SPACE);
    assert_non_null(strstr(err, "quota"));
    assert_int_equal(count_entries(tmp), 1);
    assert_int_equal(blobstore_used_bytes(store), 2 * MIB);

    /* The reservation becomes the blob: the quota still counts it. */
    unsigned char *data = calloc(1, 2 * MIB);
    assert_non_null(data);
    char sha[BLOB_SHA_HEX], expected[BLOB_SHA_HEX];
    sha_hex(data, 2 * MIB, expected);
    bool dedup;
    assert_int_equal(
        blobstore_upload_commit(store, "Lfits", 2 * MIB, expected, sha, &dedup, err, sizeof err),
        BLOB_OK);
    assert_int_equal(blobstore_used_bytes(store), 2 * MIB);
    assert_int_equal(blobstore_upload_create(store, "Ltoobig", 2 * MIB, err, sizeof err),
                     BLOB_NO_SPACE);
    assert_int_equal(blobstore_upload_create(store, "Lsmall", MIB, err, sizeof err), BLOB_OK);

    /* Reopened, the store counts blobs and uploads from the volume. */
    blobstore_destroy(&store);
    store = new_store("quota", 3 * MIB, NULL);
    assert_int_equal(blobstore_used_bytes(store), 3 * MIB);
    blobstore_upload_remove(store, "Lsmall");
    blobstore_upload_remove(store, "Lsmall");
    assert_int_equal(blobstore_remove(store, sha), BLOB_OK);
    assert_int_equal(blobstore_used_bytes(store), 0);
    assert_int_equal(blobstore_upload_create(store, "Ltoobig", 2 * MIB, err, sizeof err), BLOB_OK);
    blobstore_upload_remove(store, "Ltoobig");
    assert_int_equal(count_entries(tmp), 0);
    free(data);
    blobstore_destroy(&store);
}

static void test_full_filesystem(void **state)
{
    (void)state;
    char mnt[PATH_MAX];
    pathf(mnt, "%s/full", root);
    assert_int_equal(mkdir(mnt, 0755), 0);
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=4m") < 0) {
        fprintf(stderr,
                "[  SKIPPED ] full filesystem: cannot mount a 4 MB tmpfs (%s); "
                "the quota test stands for it\n",
                strerror(errno));
        rmdir(mnt);
        skip();
    }
    char err[256] = "";
    blobstore_t *store = blobstore_new(mnt, 0, err, sizeof err);
    if (!store) {
        umount(mnt);
        fail_msg("blobstore_new on tmpfs: %s", err);
    }
    char tmp[PATH_MAX];
    path_in(tmp, mnt, "tmp", NULL, NULL);
    blob_result_t big = blobstore_upload_create(store, "Lbig", 8 * MIB, err, sizeof err);
    unsigned left_big = count_entries(tmp);
    blob_result_t first = blobstore_upload_create(store, "Lfirst", 3 * MIB, err, sizeof err);
    err[0] = '\0';
    blob_result_t second = blobstore_upload_create(store, "Lsecond", 3 * MIB, err, sizeof err);
    unsigned left_second = count_entries(tmp);
    uint64_t used = blobstore_used_bytes(store);
    blobstore_destroy(&store);
    assert_int_equal(umount(mnt), 0);
    rmdir(mnt);

    assert_int_equal(big, BLOB_NO_SPACE);
    assert_int_equal(left_big, 0);
    assert_int_equal(first, BLOB_OK);
    assert_int_equal(second, BLOB_NO_SPACE);
    assert_non_null(strstr(err, "Lsecond"));
    assert_int_equal(left_second, 1);
    assert_int_equal(used, 3 * MIB);
}

/* --- sweep, each, remove ------------------------------------------------ */

static bool keep_kept(void *arg, const char *upload_id)
{
    (*(int *)arg)++;
    return strcmp(upload_id, "Lkept") == 0;
}

static void age(const char *tmp, const char *name, time_t seconds)
{
    char path[PATH_MAX];
    pathf(path, "%s/%s", tmp, name);
    struct timespec times[2];
    times[0].tv_sec = times[1].tv_sec = time(NULL) - seconds;
    times[0].tv_nsec = times[1].tv_nsec = 0;
    assert_int_equal(utimensat(AT_FDCWD, path, times, 0), 0);
}

static void test_sweep(void **state)
{
    (void)state;
    char dir[PATH_MAX], tmp[PATH_MAX];
    blobstore_t *store = new_store("sweep", 0, dir);
    path_in(tmp, dir, "tmp", NULL, NULL);
    char err[256] = "";
    assert_int_equal(blobstore_upload_create(store, "Lold", 100, err, sizeof err), BLOB_OK);
    assert_int_equal(blobstore_upload_create(store, "Lkept", 200, err, sizeof err), BLOB_OK);
    assert_int_equal(blobstore_upload_create(store, "Lfresh", 300, err, sizeof err), BLOB_OK);
    age(tmp, "Lold", 7200);
    age(tmp, "Lkept", 7200);
    /* A stranger's file in tmp/ is left alone. */
    char stranger[PATH_MAX];
    pathf(stranger, "%s/not-an-upload", tmp);
    FILE *f = fopen(stranger, "w");
    assert_non_null(f);
    fclose(f);
    age(tmp, "not-an-upload", 7200);

    int asked = 0;
    assert_int_equal(blobstore_sweep_uploads(store, 3600, keep_kept, &asked), 1);
    assert_int_equal(asked, 2);
    assert_int_equal(blobstore_used_bytes(store), 500);
    assert_int_equal(blobstore_upload_write(store, "Lold", 0, "x", 1, err, sizeof err),
                     BLOB_MISSING);
    assert_int_equal(blobstore_upload_write(store, "Lkept", 0, "x", 1, err, sizeof err), BLOB_OK);
    assert_int_equal(count_entries(tmp), 3);

    assert_int_equal(blobstore_sweep_uploads(store, 0, NULL, NULL), 2);
    assert_int_equal(blobstore_used_bytes(store), 0);
    assert_int_equal(count_entries(tmp), 1);
    assert_int_equal(unlink(stranger), 0);
    blobstore_destroy(&store);
}

typedef struct {
    unsigned count;
    uint64_t bytes;
    char seen[4][BLOB_SHA_HEX];
} each_t;

static void collect(void *arg, const char *sha256, uint64_t size)
{
    each_t *each = arg;
    if (each->count < 4)
        memcpy(each->seen[each->count], sha256, BLOB_SHA_HEX);
    each->count++;
    each->bytes += size;
}

static void test_each_and_remove(void **state)
{
    (void)state;
    blobstore_t *store = new_store("each", 0, NULL);
    char shas[3][BLOB_SHA_HEX];
    const size_t sizes[3] = {10, 20000, BLOB_BLOCK_SIZE + 5};
    for (int i = 0; i < 3; i++) {
        unsigned char *data = malloc(sizes[i]);
        assert_non_null(data);
        randombytes_buf(data, sizes[i]);
        char id[8];
        snprintf(id, sizeof id, "Leach%d", i);
        bool dedup;
        assert_int_equal(put(store, id, data, sizes[i], shas[i], &dedup), BLOB_OK);
        free(data);
    }
    each_t each = {0};
    assert_int_equal(blobstore_each(store, collect, &each), 3);
    assert_int_equal(each.count, 3);
    assert_int_equal(each.bytes, sizes[0] + sizes[1] + sizes[2]);
    for (int i = 0; i < 3; i++) {
        bool found = false;
        for (int j = 0; j < 3; j++)
            found = found || strcmp(each.seen[j], shas[i]) == 0;
        assert_true(found);
    }

    assert_int_equal(blobstore_remove(store, shas[1]), BLOB_OK);
    assert_int_equal(blobstore_remove(store, shas[1]), BLOB_MISSING);
    assert_int_equal(blobstore_size(store, shas[1], NULL), BLOB_MISSING);
    char err[256];
    uint64_t size;
    assert_int_equal(blobstore_verify(store, shas[1], &size, err, sizeof err), BLOB_MISSING);
    assert_int_equal(blobstore_each(store, NULL, NULL), 2);
    assert_int_equal(blobstore_used_bytes(store), sizes[0] + sizes[2]);
    blobstore_destroy(&store);
}

typedef struct {
    unsigned count;
    char seen[16][BLOB_SHA_HEX];
} walk_t;

static void walked_any(void *arg, const char *sha256, uint64_t size)
{
    (void)size;
    walk_t *walk = arg;
    assert_true(walk->count < 16);
    memcpy(walk->seen[walk->count++], sha256, BLOB_SHA_HEX);
}

static void walked(void *arg, const char *sha256, uint64_t size)
{
    assert_int_equal(size, 3);
    walked_any(arg, sha256, size);
}

/* The walk a slice at a time: every blob once per pass, in order, with
 * folders holding more than a slice resumed where they stopped. */
static void test_walk(void **state)
{
    (void)state;
    char dir[PATH_MAX], path[PATH_MAX];
    blobstore_t *store = new_store("walk", 0, dir);
    const char *prefixes[9] = {"00", "00", "00", "ab", "ab", "ab", "ab", "ab", "ff"};
    char names[9][BLOB_SHA_HEX];
    for (int i = 0; i < 9; i++) {
        snprintf(names[i], BLOB_SHA_HEX, "%s%062d", prefixes[i], 8 - i);
        pathf(path, "%s/blobs/%s", dir, prefixes[i]);
        mkdir(path, 0755);
        pathf(path, "%s/blobs/%s/%s", dir, prefixes[i], names[i]);
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs("abc", f);
        fclose(f);
    }
    /* Not blobs: a block list, a stray name. */
    pathf(path, "%s/blobs/ab/%s.blocks", dir, names[3]);
    fclose(fopen(path, "w"));
    pathf(path, "%s/blobs/ab/stray", dir);
    fclose(fopen(path, "w"));

    blob_cursor_t cursor;
    memset(&cursor, 0, sizeof cursor);
    walk_t walk = {0};
    for (int calls = 0; cursor.passes == 0; calls++) {
        assert_true(calls < 20);
        long n = blobstore_walk(store, &cursor, 2, walked, &walk);
        assert_true(n >= 0 && n <= 2);
    }
    assert_int_equal(walk.count, 9);
    for (unsigned i = 1; i < walk.count; i++)
        assert_true(strcmp(walk.seen[i - 1], walk.seen[i]) < 0);
    for (int i = 0; i < 9; i++) {
        bool found = false;
        for (unsigned j = 0; j < walk.count; j++)
            found = found || strcmp(walk.seen[j], names[i]) == 0;
        assert_true(found);
    }
    /* Next pass, from the start, all in one slice. */
    memset(&walk, 0, sizeof walk);
    assert_int_equal(blobstore_walk(store, &cursor, 100, walked, &walk), 9);
    assert_int_equal(cursor.passes, 2);
    assert_string_equal(walk.seen[0], names[2]);
    assert_int_equal(blobstore_walk(store, &cursor, 0, walked, &walk), 0);
    /* The block list of a blob that is there is left alone. */
    pathf(path, "%s/blobs/ab/%s.blocks", dir, names[3]);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    blobstore_destroy(&store);
}

static bool file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Removal takes the blob, then its block list; a block list left without
 * its blob (a removal or a commit cut short) is removed by blobstore_remove
 * and by the walk, and the same bytes committed again read fine. */
static void test_stray_block_lists(void **state)
{
    (void)state;
    char dir[PATH_MAX], blob[3][PATH_MAX], blocks[3][PATH_MAX], shas[3][BLOB_SHA_HEX];
    blobstore_t *store = new_store("stray", 0, dir);
    /* Blobs of two blocks: one of one block has no list (test_small_blobs). */
    enum { STRAY_LEN = BLOB_BLOCK_SIZE + 5000 };
    unsigned char(*data)[STRAY_LEN] = malloc(3 * sizeof *data);
    assert_non_null(data);
    for (int i = 0; i < 3; i++) {
        randombytes_buf(data[i], sizeof data[i]);
        char id[16];
        snprintf(id, sizeof id, "Lstray%d", i);
        bool dedup;
        assert_int_equal(put(store, id, data[i], sizeof data[i], shas[i], &dedup), BLOB_OK);
        path_in(blob[i], dir, "blobs", shas[i], "");
        path_in(blocks[i], dir, "blobs", shas[i], ".blocks");
        assert_true(file_exists(blob[i]));
        assert_true(file_exists(blocks[i]));
    }

    /* A whole removal: both files go. */
    assert_int_equal(blobstore_remove(store, shas[0]), BLOB_OK);
    assert_false(file_exists(blob[0]));
    assert_false(file_exists(blocks[0]));

    /* A removal cut short after the blob: removing again takes the list. */
    assert_int_equal(unlink(blob[1]), 0);
    assert_true(file_exists(blocks[1]));
    assert_int_equal(blobstore_remove(store, shas[1]), BLOB_MISSING);
    assert_false(file_exists(blocks[1]));

    /* The same left behind: a pass of the walk takes it, not the lists of
     * blobs that are there, and does not hand it out as a blob. */
    char keep_blocks[PATH_MAX];
    pathf(keep_blocks, "%s", blocks[2]);
    assert_int_equal(unlink(blob[2]), 0);
    bool dedup;
    char sha[BLOB_SHA_HEX];
    assert_int_equal(put(store, "Lstray3", data[0], sizeof data[0], sha, &dedup), BLOB_OK);
    assert_true(file_exists(blocks[0]));
    blob_cursor_t cursor;
    memset(&cursor, 0, sizeof cursor);
    walk_t walk = {0};
    while (cursor.passes == 0)
        assert_true(blobstore_walk(store, &cursor, 100, walked_any, &walk) >= 0);
    assert_int_equal(walk.count, 1);
    assert_string_equal(walk.seen[0], shas[0]);
    assert_false(file_exists(keep_blocks));
    assert_true(file_exists(blob[0]));
    assert_true(file_exists(blocks[0]));
    read_back(store, shas[0], data[0], sizeof data[0], 300 * 1024);

    /* Those bytes committed again: a new block list, read back whole. */
    assert_int_equal(put(store, "Lstray4", data[2], sizeof data[2], sha, &dedup), BLOB_OK);
    assert_false(dedup);
    assert_true(file_exists(blocks[2]));
    read_back(store, shas[2], data[2], sizeof data[2], 4096);
    char err[256];
    uint64_t size = 0;
    assert_int_equal(blobstore_verify(store, shas[2], &size, err, sizeof err), BLOB_OK);
    assert_int_equal(size, sizeof data[2]);
    free(data);
    blobstore_destroy(&store);
}

static void test_sha_valid(void **state)
{
    (void)state;
    char sha[BLOB_SHA_HEX + 1];
    memset(sha, '0', 64);
    sha[64] = '\0';
    assert_true(blob_sha_valid(sha));
    sha[10] = 'f';
    assert_true(blob_sha_valid(sha));
    sha[10] = 'F';
    assert_false(blob_sha_valid(sha));
    sha[10] = 'g';
    assert_false(blob_sha_valid(sha));
    sha[10] = '0';
    sha[63] = '\0';
    assert_false(blob_sha_valid(sha));
    sha[63] = '0';
    sha[64] = '0';
    sha[65] = '\0';
    assert_false(blob_sha_valid(sha));
    assert_false(blob_sha_valid(NULL));
    assert_false(blob_sha_valid(""));
    char err[64];
    assert_null(blobstore_new("", 0, err, sizeof err));
}

/* --- hashes made as the bytes come ----------------------------------------- */

typedef struct {
    unsigned char (*digests)[32];
    uint64_t count;
} block_digests_t;

static void note_block(void *arg, uint64_t block, const uint8_t digest[BLOBHASH_BYTES])
{
    block_digests_t *seen = arg;
    assert_true(block == seen->count);
    memcpy(seen->digests[block], digest, 32);
    seen->count++;
}

/* The whole digest and each block's, fed in pieces of `piece` bytes,
 * against libsodium's SHA-256 of the same bytes. */
static void blobhash_check(blobhash_t *hash, const unsigned char *data, size_t len, size_t piece)
{
    uint64_t blocks = (len + BLOB_BLOCK_SIZE - 1) / BLOB_BLOCK_SIZE;
    block_digests_t seen = {calloc(blocks + 1, 32), 0};
    assert_non_null(seen.digests);
    for (size_t at = 0; at < len; at += piece)
        blobhash_update(hash, data + at, len - at < piece ? len - at : piece, note_block, &seen);
    assert_int_equal(blobhash_length(hash), len);
    unsigned char whole[32], want[32];
    blobhash_final(hash, whole, note_block, &seen);
    crypto_hash_sha256(want, data, len);
    if (memcmp(whole, want, 32) != 0)
        fail_msg("whole digest of %zu bytes fed %zu at a time", len, piece);
    assert_int_equal(seen.count, blocks);
    for (uint64_t b = 0; b < blocks; b++) {
        size_t start = (size_t)b * BLOB_BLOCK_SIZE;
        size_t n = len - start < BLOB_BLOCK_SIZE ? len - start : BLOB_BLOCK_SIZE;
        crypto_hash_sha256(want, data + start, n);
        if (memcmp(seen.digests[b], want, 32) != 0)
            fail_msg("digest of block %llu of %zu bytes fed %zu at a time", (unsigned long long)b,
                     len, piece);
    }
    assert_int_equal(blobhash_length(hash), 0);
    free(seen.digests);
}

/* Both ways (SHA instructions where the CPU has them, and OpenSSL's two
 * digests), at the lengths where SHA-256's padding and the blocks
 * change. */
static void test_blobhash(void **state)
{
    (void)state;
    const size_t sizes[] = {0,
                            1,
                            55,
                            56,
                            63,
                            64,
                            65,
                            119,
                            120,
                            128,
                            1000,
                            4096,
                            BLOB_BLOCK_SIZE - 1,
                            BLOB_BLOCK_SIZE,
                            BLOB_BLOCK_SIZE + 1,
                            3 * BLOB_BLOCK_SIZE + 12345};
    const size_t pieces[] = {7, 64, 1000, 65536, BLOB_BLOCK_SIZE, BLOB_BLOCK_SIZE + 3};
    size_t max = 3 * BLOB_BLOCK_SIZE + 12345;
    unsigned char *data = malloc(max);
    assert_non_null(data);
    randombytes_buf(data, max);
    blobhash_t *hash = blobhash_new();
    assert_non_null(hash);
    printf("blobhash: SHA instructions %s\n", blobhash_accelerated() ? "used" : "absent");
    for (int accelerated = 1; accelerated >= 0; accelerated--) {
        blobhash_allow_accelerated(accelerated);
        blobhash_reset(hash); /* the way is chosen here */
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
            for (size_t j = 0; j < sizeof pieces / sizeof pieces[0]; j++)
                if (pieces[j] >= 64 || sizes[i] < 200000)
                    blobhash_check(hash, data, sizes[i], pieces[j]);
    }
    blobhash_allow_accelerated(true);
    /* A reset forgets what was fed. */
    blobhash_update(hash, data, 100, NULL, NULL);
    blobhash_reset(hash);
    blobhash_check(hash, data, 5000, 1000);
    blobhash_destroy(&hash);
    assert_null(hash);
    free(data);
}

/* Appends data in pieces of `piece` bytes from `from` on, with hasher. */
static void append_all(blobstore_t *store, const char *id, blob_hasher_t *hasher,
                       const unsigned char *data, size_t from, size_t len, size_t piece)
{
    char err[256] = "";
    for (size_t at = from; at < len; at += piece) {
        size_t n = len - at < piece ? len - at : piece;
        assert_int_equal(
            blobstore_upload_append(store, id, hasher, at, data + at, n, err, sizeof err), BLOB_OK);
    }
}

/* Changes one byte of a file, and makes sure its change time moves (the
 * clock of file times ticks a few milliseconds at a time): what anything
 * writing to an upload behind the service's back does. */
static void tamper(const char *path, off_t offset)
{
    struct stat before, after;
    assert_int_equal(stat(path, &before), 0);
    flip_byte(path, offset);
    for (int tries = 0; tries < 2000; tries++) {
        assert_int_equal(stat(path, &after), 0);
        if (after.st_ctim.tv_sec != before.st_ctim.tv_sec ||
            after.st_ctim.tv_nsec != before.st_ctim.tv_nsec)
            return;
        struct timespec pause = {0, 1000000L};
        nanosleep(&pause, NULL);
        assert_int_equal(chmod(path, 0600), 0); /* a change of its own */
    }
    fail_msg("the change time of %s does not move", path);
}

static void test_hashed_commit(void **state)
{
    (void)state;
    char dir[PATH_MAX], tmp[PATH_MAX], path[PATH_MAX], err[256] = "";
    blobstore_t *store = new_store("hashed", 0, dir);
    path_in(tmp, dir, "tmp", NULL, NULL);
    const size_t len = 5 * BLOB_BLOCK_SIZE + 12345;
    unsigned char *data = malloc(len);
    assert_non_null(data);
    randombytes_buf(data, len);
    char expected[BLOB_SHA_HEX], sha[BLOB_SHA_HEX];
    sha_hex(data, len, expected);
    bool dedup = true, hashed = false;

    /* In order, in pieces that do not fall on blocks: the commit reads
     * nothing back (hashed) and the blob is whole, its block list right. */
    const size_t pieces[] = {BLOB_BLOCK_SIZE, 300 * 1024 + 7};
    for (size_t i = 0; i < 2; i++) {
        char id[16];
        snprintf(id, sizeof id, "Lhashed%zu", i);
        blob_hasher_t *hasher = blob_hasher_new();
        assert_non_null(hasher);
        assert_int_equal(blobstore_upload_create(store, id, len, err, sizeof err), BLOB_OK);
        append_all(store, id, hasher, data, 0, len, pieces[i]);
        assert_true(blob_hasher_valid(hasher));
        assert_int_equal(blob_hasher_length(hasher), len);
        uint64_t progress = 0;
        assert_int_equal(blobstore_upload_progress(store, id, &progress), BLOB_OK);
        assert_int_equal(progress, len);
        assert_int_equal(blobstore_upload_commit_hashed(store, id, hasher, len, expected, sha,
                                                        &dedup, &hashed, err, sizeof err),
                         BLOB_OK);
        assert_true(hashed);
        assert_false(blob_hasher_valid(hasher)); /* spent */
        assert_string_equal(sha, expected);
        assert_int_equal(dedup, i == 1);
        blob_hasher_destroy(&hasher);
        uint64_t size = 0;
        assert_int_equal(blobstore_verify(store, sha, &size, err, sizeof err), BLOB_OK);
        assert_int_equal(size, len);
        read_back(store, sha, data, len, 700 * 1024 + 3);
        assert_int_equal(count_entries(tmp), 0); /* no progress, no block list left */
    }
    assert_int_equal(blobstore_remove(store, sha), BLOB_OK);

    /* A hasher that missed bytes (a piece written twice out of order, as
     * after a restart): the commit reads the file, and is right. */
    blob_hasher_t *hasher = blob_hasher_new();
    assert_int_equal(blobstore_upload_create(store, "Lgap", len, err, sizeof err), BLOB_OK);
    append_all(store, "Lgap", NULL, data, 0, BLOB_BLOCK_SIZE, BLOB_BLOCK_SIZE);
    append_all(store, "Lgap", hasher, data, BLOB_BLOCK_SIZE, len, BLOB_BLOCK_SIZE);
    assert_false(blob_hasher_valid(hasher));
    assert_int_equal(blobstore_upload_commit_hashed(store, "Lgap", hasher, len, expected, sha,
                                                    &dedup, &hashed, err, sizeof err),
                     BLOB_OK);
    assert_false(hashed);
    assert_string_equal(sha, expected);
    assert_int_equal(blobstore_verify(store, sha, NULL, err, sizeof err), BLOB_OK);
    blob_hasher_destroy(&hasher);
    assert_int_equal(blobstore_remove(store, sha), BLOB_OK);

    /* Without a hasher at all: the same, by reading. */
    assert_int_equal(blobstore_upload_create(store, "Lnohash", len, err, sizeof err), BLOB_OK);
    append_all(store, "Lnohash", NULL, data, 0, len, BLOB_BLOCK_SIZE);
    assert_int_equal(blobstore_upload_commit_hashed(store, "Lnohash", NULL, len, expected, sha,
                                                    &dedup, &hashed, err, sizeof err),
                     BLOB_OK);
    assert_false(hashed);
    assert_int_equal(blobstore_remove(store, sha), BLOB_OK);

    /* Bytes that are not the ones announced: refused from the running
     * hash, without a read, and the upload goes. */
    data[len / 2] ^= 1;
    hasher = blob_hasher_new();
    assert_int_equal(blobstore_upload_create(store, "Lwrong", len, err, sizeof err), BLOB_OK);
    append_all(store, "Lwrong", hasher, data, 0, len, BLOB_BLOCK_SIZE);
    assert_int_equal(blobstore_upload_commit_hashed(store, "Lwrong", hasher, len, expected, sha,
                                                    &dedup, &hashed, err, sizeof err),
                     BLOB_MISMATCH);
    assert_non_null(strstr(err, "SHA-256"));
    blob_hasher_destroy(&hasher);
    data[len / 2] ^= 1;
    assert_int_equal(count_entries(tmp), 0);

    /* The right bytes, changed on the volume after they were written: the
     * file is not what the hasher saw, so the commit reads it, and finds
     * it wrong. */
    hasher = blob_hasher_new();
    assert_int_equal(blobstore_upload_create(store, "Ltampered", len, err, sizeof err), BLOB_OK);
    append_all(store, "Ltampered", hasher, data, 0, len, BLOB_BLOCK_SIZE);
    assert_true(blob_hasher_valid(hasher));
    pathf(path, "%s/tmp/Ltampered", dir);
    tamper(path, 2 * BLOB_BLOCK_SIZE + 77);
    assert_int_equal(blobstore_upload_commit_hashed(store, "Ltampered", hasher, len, expected, sha,
                                                    &dedup, &hashed, err, sizeof err),
                     BLOB_MISMATCH);
    assert_false(hashed);
    blob_hasher_destroy(&hasher);
    assert_int_equal(count_entries(tmp), 0);

    /* Empty: a hasher of nothing, an empty block list. */
    char empty[BLOB_SHA_HEX];
    sha_hex("", 0, empty);
    hasher = blob_hasher_new();
    assert_int_equal(blobstore_upload_create(store, "Lempty", 0, err, sizeof err), BLOB_OK);
    assert_int_equal(blobstore_upload_append(store, "Lempty", hasher, 0, "", 0, err, sizeof err),
                     BLOB_OK);
    assert_int_equal(blobstore_upload_commit_hashed(store, "Lempty", hasher, 0, empty, sha, &dedup,
                                                    &hashed, err, sizeof err),
                     BLOB_OK);
    assert_true(hashed);
    assert_int_equal(blobstore_verify(store, empty, NULL, err, sizeof err), BLOB_OK);
    blob_hasher_destroy(&hasher);
    assert_int_equal(blobstore_used_bytes(store), 0);
    free(data);
    blobstore_destroy(&store);
}

/* Rewrites an upload's progress record as if written in another boot of
 * the machine. */
static void progress_from_another_boot(const char *dir, const char *id)
{
    char path[PATH_MAX];
    pathf(path, "%s/tmp/%s.progress", dir, id);
    FILE *f = fopen(path, "r+");
    assert_non_null(f);
    int c = fgetc(f);
    assert_true(c != EOF);
    rewind(f);
    fputc(c == '0' ? '1' : '0', f);
    fclose(f);
}

static void test_progress(void **state)
{
    (void)state;
    char dir[PATH_MAX], tmp[PATH_MAX], err[256] = "";
    blobstore_t *store = new_store("progress", 0, dir);
    path_in(tmp, dir, "tmp", NULL, NULL);
    unsigned char data[10000];
    randombytes_buf(data, sizeof data);
    uint64_t received = 99;
    assert_int_equal(blobstore_upload_progress(store, "Lprog", &received), BLOB_MISSING);
    assert_int_equal(received, 0);
    assert_int_equal(blobstore_upload_create(store, "Lprog", sizeof data, err, sizeof err),
                     BLOB_OK);
    assert_int_equal(blobstore_upload_progress(store, "Lprog", &received), BLOB_OK);
    assert_int_equal(received, 0);
    append_all(store, "Lprog", NULL, data, 0, 6000, 1500);
    assert_int_equal(blobstore_upload_progress(store, "Lprog", &received), BLOB_OK);
    assert_int_equal(received, 6000);
    /* A store opened again (a restart of the service) reads the same. */
    blobstore_destroy(&store);
    store = new_store("progress", 0, NULL);
    assert_int_equal(blobstore_upload_progress(store, "Lprog", &received), BLOB_OK);
    assert_int_equal(received, 6000);
    assert_int_equal(blobstore_upload_sync(store, "Lprog", err, sizeof err), BLOB_OK);
    /* Written in another boot: the page cache that held those bytes is
     * gone with it, so nothing is known. */
    progress_from_another_boot(dir, "Lprog");
    assert_int_equal(blobstore_upload_progress(store, "Lprog", &received), BLOB_OK);
    assert_int_equal(received, 0);
    /* The record goes with its upload, and an old one is swept with it. */
    assert_int_equal(count_entries(tmp), 2);
    blobstore_upload_remove(store, "Lprog");
    assert_int_equal(count_entries(tmp), 0);
    assert_int_equal(blobstore_upload_create(store, "Lswept", 10, err, sizeof err), BLOB_OK);
    append_all(store, "Lswept", NULL, data, 0, 10, 10);
    assert_int_equal(count_entries(tmp), 2);
    assert_int_equal(blobstore_sweep_uploads(store, 0, NULL, NULL), 1);
    assert_int_equal(count_entries(tmp), 0);
    assert_int_equal(blobstore_upload_sync(store, "Lswept", err, sizeof err), BLOB_MISSING);
    blobstore_destroy(&store);
}

static void test_put_whole(void **state)
{
    (void)state;
    char dir[PATH_MAX], tmp[PATH_MAX], path[PATH_MAX], err[256] = "";
    blobstore_t *store = new_store("whole", 0, dir);
    path_in(tmp, dir, "tmp", NULL, NULL);
    unsigned char data[50 * 1024];
    randombytes_buf(data, sizeof data);
    char expected[BLOB_SHA_HEX], sha[BLOB_SHA_HEX];
    sha_hex(data, sizeof data, expected);
    bool dedup = true;
    assert_int_equal(
        blobstore_put(store, "Lwhole", data, sizeof data, expected, sha, &dedup, err, sizeof err),
        BLOB_OK);
    assert_string_equal(sha, expected);
    assert_false(dedup);
    assert_int_equal(blobstore_verify(store, sha, NULL, err, sizeof err), BLOB_OK);
    read_back(store, sha, data, sizeof data, 4096);
    /* One block: one file, no block list. */
    path_in(path, dir, "blobs", sha, ".blocks");
    struct stat st;
    assert_int_equal(stat(path, &st), -1);
    assert_int_equal(count_entries(tmp), 0);
    assert_int_equal(blobstore_used_bytes(store), sizeof data);
    /* Again (a retry, or the same bytes in another document): one copy. */
    assert_int_equal(
        blobstore_put(store, "Lwhole", data, sizeof data, expected, sha, &dedup, err, sizeof err),
        BLOB_OK);
    assert_true(dedup);
    assert_int_equal(blobstore_used_bytes(store), sizeof data);
    assert_int_equal(blobstore_each(store, NULL, NULL), 1);

    /* Not the bytes announced: nothing written. */
    data[0] ^= 1;
    assert_int_equal(
        blobstore_put(store, "Lbad", data, sizeof data, expected, sha, &dedup, err, sizeof err),
        BLOB_MISMATCH);
    assert_int_equal(count_entries(tmp), 0);
    /* More than a block, or a quota too small: refused, nothing left. */
    unsigned char *big = calloc(1, BLOB_BLOCK_SIZE + 1);
    char big_sha[BLOB_SHA_HEX];
    sha_hex(big, BLOB_BLOCK_SIZE + 1, big_sha);
    assert_int_equal(blobstore_put(store, "Lbig", big, BLOB_BLOCK_SIZE + 1, big_sha, sha, &dedup,
                                   err, sizeof err),
                     BLOB_IO);
    free(big);
    blobstore_destroy(&store);
    store = new_store("whole-quota", 1000, NULL);
    sha_hex(data, sizeof data, expected);
    assert_int_equal(
        blobstore_put(store, "Lquota", data, sizeof data, expected, sha, &dedup, err, sizeof err),
        BLOB_NO_SPACE);
    assert_int_equal(blobstore_used_bytes(store), 0);
    assert_int_equal(blobstore_each(store, NULL, NULL), 0);
    char empty[BLOB_SHA_HEX];
    sha_hex("", 0, empty);
    assert_int_equal(blobstore_put(store, "Lnothing", "", 0, empty, sha, &dedup, err, sizeof err),
                     BLOB_OK);
    assert_int_equal(blobstore_verify(store, empty, NULL, err, sizeof err), BLOB_OK);
    blobstore_destroy(&store);
}

/* --- blobs of one block --------------------------------------------------- */

/* Writes a block list as an earlier version of the service did for a blob
 * of one block: one line, its name. */
static void plant_old_list(const char *dir, const char *sha, const char *line)
{
    char path[PATH_MAX];
    path_in(path, dir, "blobs", sha, ".blocks");
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "%s\n", line);
    fclose(f);
}

static void test_small_blobs(void **state)
{
    (void)state;
    char dir[PATH_MAX], tmp[PATH_MAX], path[PATH_MAX], err[256] = "";
    blobstore_t *store = new_store("small", 0, dir);
    path_in(tmp, dir, "tmp", NULL, NULL);
    unsigned char *data = malloc(BLOB_BLOCK_SIZE);
    assert_non_null(data);
    randombytes_buf(data, BLOB_BLOCK_SIZE);

    /* Uploaded in chunks and committed by reading: one file. */
    char sha[BLOB_SHA_HEX], expected[BLOB_SHA_HEX];
    bool dedup = true;
    assert_int_equal(put(store, "Lsmall", data, 70000, sha, &dedup), BLOB_OK);
    path_in(path, dir, "blobs", sha, ".blocks");
    assert_false(access(path, F_OK) == 0);
    assert_int_equal(count_entries(tmp), 0);
    read_back(store, sha, data, 70000, 4096);
    uint64_t size = 0;
    assert_int_equal(blobstore_verify(store, sha, &size, err, sizeof err), BLOB_OK);
    assert_int_equal(size, 70000);
    /* The commit run again once its file is gone: done before. */
    assert_int_equal(
        blobstore_upload_commit(store, "Lsmall", 70000, sha, expected, &dedup, err, sizeof err),
        BLOB_OK);
    assert_true(dedup);

    /* Exactly one block, hashed as it came: its line, written when the
     * block completed, is not kept. */
    sha_hex(data, BLOB_BLOCK_SIZE, expected);
    blob_hasher_t *hasher = blob_hasher_new();
    assert_non_null(hasher);
    assert_int_equal(blobstore_upload_create(store, "Lexact", BLOB_BLOCK_SIZE, err, sizeof err),
                     BLOB_OK);
    append_all(store, "Lexact", hasher, data, 0, BLOB_BLOCK_SIZE, CHUNK);
    bool hashed = false;
    assert_int_equal(blobstore_upload_commit_hashed(store, "Lexact", hasher, BLOB_BLOCK_SIZE,
                                                    expected, sha, &dedup, &hashed, err,
                                                    sizeof err),
                     BLOB_OK);
    assert_true(hashed);
    blob_hasher_destroy(&hasher);
    path_in(path, dir, "blobs", expected, ".blocks");
    assert_false(access(path, F_OK) == 0);
    assert_int_equal(count_entries(tmp), 0);
    read_back(store, expected, data, BLOB_BLOCK_SIZE, 300 * 1024);
    assert_int_equal(blobstore_verify(store, expected, &size, err, sizeof err), BLOB_OK);

    /* A damaged small blob is still found out, by read and by fsck. */
    char small_sha[BLOB_SHA_HEX];
    sha_hex(data, 70000, small_sha);
    path_in(path, dir, "blobs", small_sha, "");
    flip_byte(path, 69999);
    unsigned char buf[100];
    size_t got = 0;
    assert_int_equal(blobstore_read(store, small_sha, 0, buf, sizeof buf, &got, err, sizeof err),
                     BLOB_CORRUPT);
    assert_non_null(strstr(err, "block 0"));
    assert_int_equal(blobstore_verify(store, small_sha, &size, err, sizeof err), BLOB_CORRUPT);
    flip_byte(path, 69999);

    /* An old store's list beside a small blob: read, verified and walked
     * as ever; a wrong one is not believed over the blob's name; the blob
     * stored again drops it; removal takes it too. */
    plant_old_list(dir, small_sha, small_sha);
    read_back(store, small_sha, data, 70000, 4096);
    assert_int_equal(blobstore_verify(store, small_sha, &size, err, sizeof err), BLOB_OK);
    plant_old_list(dir, small_sha, expected);
    read_back(store, small_sha, data, 70000, 4096);
    assert_int_equal(blobstore_verify(store, small_sha, &size, err, sizeof err), BLOB_OK);
    blob_cursor_t cursor;
    memset(&cursor, 0, sizeof cursor);
    walk_t walk = {0};
    while (cursor.passes == 0)
        assert_true(blobstore_walk(store, &cursor, 100, walked_any, &walk) >= 0);
    assert_int_equal(walk.count, 2);
    path_in(path, dir, "blobs", small_sha, ".blocks");
    assert_true(access(path, F_OK) == 0);
    assert_int_equal(
        blobstore_put(store, "Lagain", data, 70000, small_sha, sha, &dedup, err, sizeof err),
        BLOB_OK);
    assert_true(dedup);
    assert_false(access(path, F_OK) == 0);
    plant_old_list(dir, small_sha, small_sha);
    assert_int_equal(blobstore_remove(store, small_sha), BLOB_OK);
    assert_false(access(path, F_OK) == 0);
    assert_int_equal(blobstore_each(store, NULL, NULL), 1);
    free(data);
    blobstore_destroy(&store);
}

/* --- several whole blobs at once ------------------------------------------ */

static void test_put_many(void **state)
{
    (void)state;
    char dir[PATH_MAX], tmp[PATH_MAX], path[PATH_MAX], err[256] = "";
    blobstore_t *store = new_store("many", 0, dir);
    path_in(tmp, dir, "tmp", NULL, NULL);
    enum { N = 6, LEN = 50 * 1024 };
    unsigned char(*data)[LEN] = malloc(N * sizeof *data);
    assert_non_null(data);
    char expected[N][BLOB_SHA_HEX], names[N][16];
    blob_put_t puts[N];
    memset(puts, 0, sizeof puts);
    /* Bytes of their own, each in a folder of its own (the folder of the
     * last is blocked below). */
    for (int i = 0; i < N; i++) {
        bool clash;
        do {
            randombytes_buf(data[i], LEN);
            sha_hex(data[i], LEN, expected[i]);
            clash = false;
            for (int j = 0; j < i; j++)
                clash = clash || memcmp(expected[i], expected[j], 2) == 0;
        } while (clash);
        snprintf(names[i], sizeof names[i], "Lmany%d", i);
        puts[i] = (blob_put_t){
            .name = names[i], .data = data[i], .len = LEN, .expected_sha256 = expected[i]};
    }
    /* 1 carries the same bytes as 0; 2 is not what it announces; 5 cannot
     * be renamed into place (its folder is a file). */
    puts[1].data = data[0];
    puts[1].expected_sha256 = expected[0];
    puts[2].expected_sha256 = expected[3];
    pathf(path, "%s/blobs/%.2s", dir, expected[5]);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);

    blobstore_put_many(store, puts, N);
    assert_int_equal(puts[0].result, BLOB_OK);
    assert_string_equal(puts[0].sha, expected[0]);
    assert_false(puts[0].deduplicated);
    assert_int_equal(puts[1].result, BLOB_OK);
    assert_true(puts[1].deduplicated);
    assert_int_equal(puts[2].result, BLOB_MISMATCH);
    assert_string_equal(puts[2].sha, "");
    assert_non_null(strstr(puts[2].err, expected[3]));
    assert_int_equal(puts[3].result, BLOB_OK);
    assert_int_equal(puts[4].result, BLOB_OK);
    assert_int_equal(puts[5].result, BLOB_IO);
    assert_non_null(strstr(puts[5].err, "install blob"));
    assert_non_null(strstr(puts[5].err, expected[5]));
    /* The stored ones read back; nothing is left in tmp/; the space
     * counted is theirs. */
    for (int i = 0; i < 5; i++) {
        if (i == 1 || i == 2)
            continue;
        read_back(store, expected[i], data[i], LEN, 4096);
        assert_int_equal(blobstore_verify(store, expected[i], NULL, err, sizeof err), BLOB_OK);
    }
    assert_int_equal(count_entries(tmp), 0);
    assert_int_equal(blobstore_each(store, NULL, NULL), 3);
    assert_int_equal(blobstore_used_bytes(store), 3 * LEN);

    /* The folder unblocked, the same put goes through. */
    pathf(path, "%s/blobs/%.2s", dir, expected[5]);
    assert_int_equal(unlink(path), 0);
    blobstore_put_many(store, &puts[5], 1);
    assert_int_equal(puts[5].result, BLOB_OK);
    read_back(store, expected[5], data[5], LEN, LEN);
    assert_int_equal(blobstore_used_bytes(store), 4 * LEN);
    blobstore_destroy(&store);

    /* A quota that holds two of three: the third alone is refused. */
    store = new_store("many-quota", 2 * LEN, NULL);
    blobstore_put_many(store, &puts[3], 3);
    assert_int_equal(puts[3].result, BLOB_OK);
    assert_int_equal(puts[4].result, BLOB_OK);
    assert_int_equal(puts[5].result, BLOB_NO_SPACE);
    assert_non_null(strstr(puts[5].err, "quota"));
    assert_int_equal(blobstore_used_bytes(store), 2 * LEN);
    assert_int_equal(blobstore_each(store, NULL, NULL), 2);
    free(data);
    blobstore_destroy(&store);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_memory_bounded), /* first: peak RSS still low */
        cmocka_unit_test(test_round_trips),        cmocka_unit_test(test_dedup_and_retries),
        cmocka_unit_test(test_mismatch),           cmocka_unit_test(test_corruption),
        cmocka_unit_test(test_missing_block_list), cmocka_unit_test(test_quota),
        cmocka_unit_test(test_full_filesystem),    cmocka_unit_test(test_sweep),
        cmocka_unit_test(test_each_and_remove),    cmocka_unit_test(test_walk),
        cmocka_unit_test(test_stray_block_lists),  cmocka_unit_test(test_sha_valid),
        cmocka_unit_test(test_blobhash),           cmocka_unit_test(test_hashed_commit),
        cmocka_unit_test(test_progress),           cmocka_unit_test(test_put_whole),
        cmocka_unit_test(test_small_blobs),        cmocka_unit_test(test_put_many),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
