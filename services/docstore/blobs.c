/* The docstore's blob store: content-addressed files on a volume.
 *
 * Every write goes through tmp/ and reaches blobs/ by rename, after fsync,
 * so a crash leaves either no blob or a complete one. A blob's block list
 * (blobs/<aa>/<sha>.blocks) holds one line "<sha256 hex>\n" per
 * BLOB_BLOCK_SIZE block, fixed width, so block i's hash sits at offset
 * i * BLOCK_LINE and a range is verified by reading the blocks it touches.
 * The list is renamed into place before the blob, so a blob never appears
 * without one unless something outside removed it (verify calls that
 * corrupt; the next commit of the same bytes rewrites it). Removal goes the
 * other way round: the blob, then its list. A list left without its blob
 * (a commit or a removal cut short between its two steps) is garbage: the
 * walk removes it, and a commit of those bytes run again writes a new one.
 * A blob of one block (at most BLOB_BLOCK_SIZE bytes) has no list: its one
 * line would be its own name (blob_one_block).
 *
 * Several whole blobs can be stored together (blobstore_put_many): all
 * written, then all fsynced, renamed, and each folder fsynced once, so that
 * they share their journal commits instead of paying them one by one.
 *
 * The store keeps one block-sized scratch buffer: every operation streams
 * through it, so memory does not grow with a blob's size. It is not
 * thread-safe (one store per thread), like the service around it.
 *
 * used_bytes is a running total (blob sizes + reserved upload sizes),
 * computed by scanning the volume at open. Another process writing to the
 * same folder is not seen until the next open: the quota is per process.
 *
 * An upload's hashes can be made as its bytes arrive (blob_hasher_t): the
 * whole SHA-256 and each block's in one pass (blobhash.h), each block's
 * line written to tmp/<id>.blocks once the block is complete, and the bytes
 * handed to the disk as they come (sync_file_range, not waited for), so
 * that the commit only fsyncs what is left and renames. The hasher
 * remembers the file's inode, change time and size after its last write:
 * a file changed by anything else since (or a hasher that missed bytes) is
 * read and hashed at commit, as an upload without a hasher is.
 *
 * tmp/<id>.progress says how many bytes of the upload were written, and the
 * boot of the machine they were written in (/proc's boot_id), rewritten at
 * each append and never fsynced: within one boot the page cache holds
 * whatever a killed process wrote, so the count is exact for a service
 * that restarts; after a reboot it is ignored. */
#define _GNU_SOURCE /* sync_file_range */
#include "blobs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "blobhash.h"
#include "sha256.h"

#define BLOCK_LINE    65 /* 64 hex digits + '\n' */
#define UPLOAD_ID_MAX 40
#define BOOT_ID_LEN   36 /* a UUID, as /proc/sys/kernel/random/boot_id says it */
/* tmp/<id>.progress: "<boot id> <bytes, 20 digits>\n", one fixed-size
 * record rewritten in place. */
#define PROGRESS_LEN (BOOT_ID_LEN + 1 + 20 + 1)

struct blobstore_t {
    char *dir;
    char *blobs_dir; /* <dir>/blobs */
    char *tmp_dir;   /* <dir>/tmp */
    uint64_t quota_bytes;
    uint64_t used_bytes;
    unsigned char *scratch; /* BLOB_BLOCK_SIZE bytes */
    sha256_t *whole_hash;   /* a whole blob's, for one that is one block */
    sha256_t *block_hash;   /* one block's, on a read */
    blobhash_t *pass_hash;  /* a whole blob's and its blocks', in one pass */
    /* This boot of the machine ("" when /proc does not say: progress
     * records are then neither written nor trusted). */
    char boot_id[BOOT_ID_LEN + 1];
};

struct blob_hasher_t {
    blobhash_t *hash; /* of the bytes fed, and of their blocks */
    bool valid;       /* fed from the first byte, in order, without a gap */
    bool file_known;  /* the fields below describe the upload's file */
    dev_t dev;        /* ... after the last write fed */
    ino_t ino;
    struct timespec ctime;
    off_t size;
};

/* =========================================================================
 * Helpers
 * ========================================================================= */

static void set_err(char *err, size_t err_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t err_size, const char *fmt, ...)
{
    if (!err || err_size == 0)
        return;
    va_list args;
    va_start(args, fmt);
    int n = vsnprintf(err, err_size, fmt, args);
    va_end(args);
    if (n < 0)
        err[0] = '\0';
}

static bool is_no_space(int err)
{
    return err == ENOSPC || err == EDQUOT || err == EFBIG;
}

/* Maps a failed system call's errno to a result, with a message naming
 * what was being done. */
static blob_result_t sys_fail(int saved, char *err, size_t err_size, const char *what,
                              const char *name)
{
    set_err(err, err_size, "%s %s: %s", what, name, strerror(saved));
    return is_no_space(saved) ? BLOB_NO_SPACE : BLOB_IO;
}

bool blob_sha_valid(const char *text)
{
    if (!text)
        return false;
    for (int i = 0; i < 64; i++) {
        char c = text[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
    }
    return text[64] == '\0';
}

/* Whether a blob of size bytes is one block at most (none at 0 bytes). Its
 * block list would then be one line, its own SHA-256, which its name
 * already says: none is written for it (one file created and fsynced per
 * small blob, not two: the larger part of a small document's cost), the
 * line being derived from the name where a range or fsck needs it. A list
 * an earlier version of the service wrote for one is ignored, and dropped
 * when the blob is stored again. */
static bool blob_one_block(uint64_t size)
{
    return size <= BLOB_BLOCK_SIZE;
}

static bool upload_id_valid(const char *id)
{
    if (!id || !id[0])
        return false;
    size_t n = 0;
    for (; id[n]; n++) {
        char c = id[n];
        if (n >= UPLOAD_ID_MAX)
            return false;
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')))
            return false;
    }
    return true;
}

/* path = <base>/<name>[suffix]; false if it does not fit. */
static bool join_path(char path[PATH_MAX], const char *base, const char *name, const char *suffix)
{
    int n = snprintf(path, PATH_MAX, "%s/%s%s", base, name, suffix ? suffix : "");
    return n > 0 && n < PATH_MAX;
}

static bool blob_dir_path(blobstore_t *self, const char *sha, char path[PATH_MAX])
{
    char prefix[3] = {sha[0], sha[1], '\0'};
    return join_path(path, self->blobs_dir, prefix, NULL);
}

static bool blob_path(blobstore_t *self, const char *sha, const char *suffix, char path[PATH_MAX])
{
    char sub[PATH_MAX];
    if (!blob_dir_path(self, sha, sub))
        return false;
    return join_path(path, sub, sha, suffix);
}

/* The number of a blob's folder blobs/<aa>: its first two hex digits. */
static unsigned sha_folder(const char *sha)
{
    unsigned value = 0;
    for (int i = 0; i < 2; i++) {
        char c = sha[i];
        value = value * 16 + (unsigned)(c >= 'a' ? c - 'a' + 10 : c - '0');
    }
    return value & 0xffu;
}

static int make_dir(const char *path)
{
    if (mkdir(path, 0755) == 0 || errno == EEXIST)
        return 0;
    return -1;
}

static int fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

/* Reads exactly len bytes at offset unless the file ends first; returns the
 * count or -1 (errno set). */
static ssize_t pread_full(int fd, void *buf, size_t len, uint64_t offset)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, (char *)buf + done, len - done, (off_t)(offset + done));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (n == 0)
            break;
        done += (size_t)n;
    }
    return (ssize_t)done;
}

static int pwrite_full(int fd, const void *buf, size_t len, uint64_t offset)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pwrite(fd, (const char *)buf + done, len - done, (off_t)(offset + done));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        done += (size_t)n;
    }
    return 0;
}

static void used_sub(blobstore_t *self, uint64_t bytes)
{
    self->used_bytes = self->used_bytes > bytes ? self->used_bytes - bytes : 0;
}

/* =========================================================================
 * Open and close
 * ========================================================================= */

static void add_blob_size(void *arg, const char *sha256, uint64_t size)
{
    (void)sha256;
    *(uint64_t *)arg += size;
}

/* The machine's boot id into out ("" if it cannot be read). */
static void read_boot_id(char out[BOOT_ID_LEN + 1])
{
    out[0] = '\0';
    int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    char buf[BOOT_ID_LEN + 8];
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    if (n < BOOT_ID_LEN)
        return;
    for (int i = 0; i < BOOT_ID_LEN; i++)
        if (buf[i] == ' ' || buf[i] == '\n' || buf[i] == '\0')
            return;
    memcpy(out, buf, BOOT_ID_LEN);
    out[BOOT_ID_LEN] = '\0';
}

/* Sum of the sizes of the uploads in tmp/ (their reservations). */
static int scan_uploads(blobstore_t *self, uint64_t *total)
{
    DIR *dir = opendir(self->tmp_dir);
    if (!dir)
        return -1;
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        if (!upload_id_valid(entry->d_name))
            continue;
        struct stat st;
        if (fstatat(dirfd(dir), entry->d_name, &st, 0) == 0 && S_ISREG(st.st_mode))
            *total += (uint64_t)st.st_size;
    }
    closedir(dir);
    return 0;
}

blobstore_t *blobstore_new(const char *dir, uint64_t quota_bytes, char *err, size_t err_size)
{
    if (!dir || !dir[0]) {
        set_err(err, err_size, "docstore folder is empty");
        return NULL;
    }
    blobstore_t *self = calloc(1, sizeof *self);
    if (!self) {
        set_err(err, err_size, "out of memory");
        return NULL;
    }
    self->quota_bytes = quota_bytes;
    self->dir = strdup(dir);
    self->scratch = malloc(BLOB_BLOCK_SIZE);
    char path[PATH_MAX];
    if (!self->dir || !self->scratch) {
        set_err(err, err_size, "out of memory");
        goto fail;
    }
    self->whole_hash = sha256_new();
    self->block_hash = sha256_new();
    self->pass_hash = blobhash_new();
    if (!self->whole_hash || !self->block_hash || !self->pass_hash) {
        set_err(err, err_size, "SHA-256 unavailable: out of memory or no OpenSSL provider");
        goto fail;
    }
    if (make_dir(dir) < 0) {
        set_err(err, err_size, "docstore folder %s: %s", dir, strerror(errno));
        goto fail;
    }
    if (!join_path(path, dir, "blobs", NULL) || !(self->blobs_dir = strdup(path))) {
        set_err(err, err_size, "docstore folder %s: path too long", dir);
        goto fail;
    }
    if (!join_path(path, dir, "tmp", NULL) || !(self->tmp_dir = strdup(path))) {
        set_err(err, err_size, "docstore folder %s: path too long", dir);
        goto fail;
    }
    if (make_dir(self->blobs_dir) < 0 || make_dir(self->tmp_dir) < 0) {
        set_err(err, err_size, "docstore folder %s: cannot create blobs/ or tmp/: %s", dir,
                strerror(errno));
        goto fail;
    }
    uint64_t used = 0;
    if (blobstore_each(self, add_blob_size, &used) < 0 || scan_uploads(self, &used) < 0) {
        set_err(err, err_size, "docstore folder %s: cannot scan: %s", dir, strerror(errno));
        goto fail;
    }
    self->used_bytes = used;
    read_boot_id(self->boot_id);
    return self;

fail:
    blobstore_destroy(&self);
    return NULL;
}

void blobstore_destroy(blobstore_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    blobstore_t *self = *self_p;
    free(self->dir);
    free(self->blobs_dir);
    free(self->tmp_dir);
    free(self->scratch);
    sha256_destroy(&self->whole_hash);
    sha256_destroy(&self->block_hash);
    blobhash_destroy(&self->pass_hash);
    free(self);
    *self_p = NULL;
}

uint64_t blobstore_used_bytes(blobstore_t *self)
{
    return self ? self->used_bytes : 0;
}

/* =========================================================================
 * Uploads
 * ========================================================================= */

static blob_result_t upload_path(blobstore_t *self, const char *upload_id, const char *suffix,
                                 char path[PATH_MAX], char *err, size_t err_size)
{
    if (!upload_id_valid(upload_id)) {
        set_err(err, err_size, "upload_id must be 1 to %d letters or digits", UPLOAD_ID_MAX);
        return BLOB_IO;
    }
    if (!join_path(path, self->tmp_dir, upload_id, suffix)) {
        set_err(err, err_size, "upload %s: path too long", upload_id);
        return BLOB_IO;
    }
    return BLOB_OK;
}

/* Opens upload_id's temporary file with flags into *fd_out. BLOB_MISSING
 * when there is no such upload (any more). */
static blob_result_t upload_open(blobstore_t *self, const char *upload_id, int flags, int *fd_out,
                                 char *err, size_t err_size)
{
    *fd_out = -1;
    char path[PATH_MAX];
    blob_result_t rc = upload_path(self, upload_id, NULL, path, err, err_size);
    if (rc != BLOB_OK)
        return rc;
    *fd_out = open(path, flags | O_CLOEXEC);
    if (*fd_out >= 0)
        return BLOB_OK;
    if (errno == ENOENT) {
        set_err(err, err_size, "upload %s not found", upload_id);
        return BLOB_MISSING;
    }
    return sys_fail(errno, err, err_size, "open upload", upload_id);
}

blob_result_t blobstore_upload_create(blobstore_t *self, const char *upload_id, uint64_t size,
                                      char *err, size_t err_size)
{
    char path[PATH_MAX];
    blob_result_t rc = upload_path(self, upload_id, NULL, path, err, err_size);
    if (rc != BLOB_OK)
        return rc;
    if (size > (uint64_t)INT64_MAX) {
        set_err(err, err_size, "upload %s: size %llu too large", upload_id,
                (unsigned long long)size);
        return BLOB_NO_SPACE;
    }

    /* Idempotent: a second create of the same upload (a retried or re-run
     * request) keeps what was written; an interrupted one is completed. */
    bool created = false;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
        created = true;
    } else if (errno == EEXIST) {
        fd = open(path, O_WRONLY | O_CLOEXEC);
    }
    if (fd < 0)
        return sys_fail(errno, err, err_size, "create upload", upload_id);

    struct stat st;
    if (fstat(fd, &st) < 0) {
        rc = sys_fail(errno, err, err_size, "stat upload", upload_id);
        close(fd);
        return rc;
    }
    uint64_t have = (uint64_t)st.st_size;
    if (have > size) {
        set_err(err, err_size, "upload %s exists with size %llu, not %llu", upload_id,
                (unsigned long long)have, (unsigned long long)size);
        close(fd);
        return BLOB_IO;
    }
    uint64_t more = size - have;
    if (more > 0 && self->quota_bytes > 0 && self->used_bytes + more > self->quota_bytes) {
        set_err(err, err_size,
                "upload %s: %llu bytes would exceed the quota (%llu of %llu bytes used)", upload_id,
                (unsigned long long)size, (unsigned long long)self->used_bytes,
                (unsigned long long)self->quota_bytes);
        close(fd);
        if (created)
            unlink(path);
        return BLOB_NO_SPACE;
    }
    if (more > 0) {
        int fr = posix_fallocate(fd, 0, (off_t)size);
        if (fr != 0) {
            rc = sys_fail(fr, err, err_size, "reserve space for upload", upload_id);
            close(fd);
            /* Nothing half-written: the whole upload goes, and with it
             * whatever part of the reservation it held. */
            unlink(path);
            used_sub(self, have);
            return rc;
        }
    }
    close(fd);
    self->used_bytes += more;
    return BLOB_OK;
}

/* Opens the upload's file for writing, checking that [offset, offset + len)
 * lies within its reservation (its size: writing past it would grow the
 * file beyond what the quota counted). */
static blob_result_t upload_open_range(blobstore_t *self, const char *upload_id, uint64_t offset,
                                       size_t len, int *fd_out, char *err, size_t err_size)
{
    *fd_out = -1;
    int fd = -1;
    blob_result_t rc = upload_open(self, upload_id, O_WRONLY, &fd, err, err_size);
    if (rc != BLOB_OK)
        return rc;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        rc = sys_fail(errno, err, err_size, "stat upload", upload_id);
        close(fd);
        return rc;
    }
    uint64_t size = (uint64_t)st.st_size;
    if (offset > size || len > size - offset) {
        set_err(err, err_size,
                "upload %s: chunk at offset %llu of %zu bytes ends past its size %llu", upload_id,
                (unsigned long long)offset, len, (unsigned long long)size);
        close(fd);
        return BLOB_MISMATCH;
    }
    *fd_out = fd;
    return BLOB_OK;
}

/* Writes the bytes; a full volume removes the whole upload. */
static blob_result_t upload_pwrite(blobstore_t *self, const char *upload_id, int fd,
                                   uint64_t offset, const void *data, size_t len, char *err,
                                   size_t err_size)
{
    if (len == 0 || pwrite_full(fd, data, len, offset) == 0)
        return BLOB_OK;
    blob_result_t rc = sys_fail(errno, err, err_size, "write upload", upload_id);
    if (rc == BLOB_NO_SPACE)
        blobstore_upload_remove(self, upload_id);
    return rc;
}

blob_result_t blobstore_upload_write(blobstore_t *self, const char *upload_id, uint64_t offset,
                                     const void *data, size_t len, char *err, size_t err_size)
{
    int fd = -1;
    blob_result_t rc = upload_open_range(self, upload_id, offset, len, &fd, err, err_size);
    if (rc != BLOB_OK)
        return rc;
    rc = upload_pwrite(self, upload_id, fd, offset, data, len, err, err_size);
    close(fd);
    return rc;
}

/* --- running hashes ------------------------------------------------------- */

blob_hasher_t *blob_hasher_new(void)
{
    blob_hasher_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->hash = blobhash_new();
    if (!self->hash) {
        blob_hasher_destroy(&self);
        return NULL;
    }
    self->valid = true;
    return self;
}

void blob_hasher_destroy(blob_hasher_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    blob_hasher_t *self = *self_p;
    blobhash_destroy(&self->hash);
    free(self);
    *self_p = NULL;
}

bool blob_hasher_valid(const blob_hasher_t *self)
{
    return self && self->valid;
}

uint64_t blob_hasher_length(const blob_hasher_t *self)
{
    return self ? blobhash_length(self->hash) : 0;
}

/* Where the block lines of a pass go: the block list being made, opened on
 * the first line when fd is -1. */
typedef struct {
    const char *path;
    int fd;
    bool ok;
} block_lines_t;

static void block_line_write(void *arg, uint64_t block, const uint8_t digest[BLOBHASH_BYTES])
{
    block_lines_t *lines = arg;
    char line[BLOCK_LINE + 1];
    sha256_to_hex(digest, line);
    line[64] = '\n';
    if (lines->fd < 0)
        lines->fd = open(lines->path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (lines->fd < 0 || pwrite_full(lines->fd, line, BLOCK_LINE, block * BLOCK_LINE) != 0)
        lines->ok = false;
}

/* Feeds the bytes that follow those fed so far, each block's line going to
 * the upload's block list once the block is complete. False on a failure
 * (the caller then makes the hasher invalid). */
static bool hasher_feed(blobstore_t *self, blob_hasher_t *hasher, const char *upload_id,
                        const unsigned char *data, size_t len)
{
    char blocks_path[PATH_MAX];
    if (upload_path(self, upload_id, ".blocks", blocks_path, NULL, 0) != BLOB_OK)
        return false;
    block_lines_t lines = {blocks_path, -1, true};
    blobhash_update(hasher->hash, data, len, block_line_write, &lines);
    if (lines.fd >= 0 && close(lines.fd) != 0)
        lines.ok = false;
    return lines.ok;
}

/* Remembers what the upload's file looks like after a write fed to the
 * hasher: anything that changes it afterwards changes its change time. */
static bool hasher_note_file(blob_hasher_t *hasher, int fd)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return false;
    hasher->dev = st.st_dev;
    hasher->ino = st.st_ino;
    hasher->ctime = st.st_ctim;
    hasher->size = st.st_size;
    hasher->file_known = true;
    return true;
}

static bool hasher_file_unchanged(const blob_hasher_t *hasher, const struct stat *st)
{
    return hasher->file_known && st->st_dev == hasher->dev && st->st_ino == hasher->ino &&
           st->st_size == hasher->size && st->st_ctim.tv_sec == hasher->ctime.tv_sec &&
           st->st_ctim.tv_nsec == hasher->ctime.tv_nsec;
}

/* --- progress --------------------------------------------------------------- */

static void progress_write(blobstore_t *self, const char *upload_id, uint64_t received)
{
    char path[PATH_MAX], record[PROGRESS_LEN + 1];
    if (!self->boot_id[0] || upload_path(self, upload_id, ".progress", path, NULL, 0) != BLOB_OK)
        return;
    snprintf(record, sizeof record, "%s %020llu\n", self->boot_id, (unsigned long long)received);
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return; /* the count stays behind: a restart resumes earlier, no harm */
    (void)pwrite_full(fd, record, PROGRESS_LEN, 0);
    close(fd);
}

blob_result_t blobstore_upload_append(blobstore_t *self, const char *upload_id,
                                      blob_hasher_t *hasher, uint64_t offset, const void *data,
                                      size_t len, char *err, size_t err_size)
{
    int fd = -1;
    blob_result_t rc = upload_open_range(self, upload_id, offset, len, &fd, err, err_size);
    if (rc != BLOB_OK)
        return rc;
    rc = upload_pwrite(self, upload_id, fd, offset, data, len, err, err_size);
    /* Write-behind: the disk starts on these bytes now, while the next
     * chunks travel, instead of all of them at the commit's fsync. Only
     * started, not waited for; a failure here is the fsync's to report. */
    if (rc == BLOB_OK && len > 0)
        (void)sync_file_range(fd, (off_t)offset, (off_t)len, SYNC_FILE_RANGE_WRITE);
    if (hasher) {
        bool fed = rc == BLOB_OK && hasher->valid && blobhash_length(hasher->hash) == offset &&
                   hasher_feed(self, hasher, upload_id, data, len) && hasher_note_file(hasher, fd);
        if (!fed)
            hasher->valid = false;
    }
    close(fd);
    if (rc == BLOB_OK)
        progress_write(self, upload_id, offset + len);
    return rc;
}

blob_result_t blobstore_upload_progress(blobstore_t *self, const char *upload_id,
                                        uint64_t *received)
{
    *received = 0;
    char path[PATH_MAX];
    if (upload_path(self, upload_id, NULL, path, NULL, 0) != BLOB_OK)
        return BLOB_IO;
    struct stat st;
    if (stat(path, &st) != 0)
        return errno == ENOENT ? BLOB_MISSING : BLOB_IO;
    if (!self->boot_id[0] || upload_path(self, upload_id, ".progress", path, NULL, 0) != BLOB_OK)
        return BLOB_OK;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return BLOB_OK;
    char record[PROGRESS_LEN + 1];
    ssize_t got = pread_full(fd, record, PROGRESS_LEN, 0);
    close(fd);
    /* Another boot's count, or a record cut short: nothing known. */
    if (got != PROGRESS_LEN || memcmp(record, self->boot_id, BOOT_ID_LEN) != 0 ||
        record[BOOT_ID_LEN] != ' ' || record[PROGRESS_LEN - 1] != '\n')
        return BLOB_OK;
    uint64_t value = 0;
    for (int i = BOOT_ID_LEN + 1; i < PROGRESS_LEN - 1; i++) {
        if (record[i] < '0' || record[i] > '9')
            return BLOB_OK;
        value = value * 10 + (uint64_t)(record[i] - '0');
    }
    if (value <= (uint64_t)st.st_size)
        *received = value;
    return BLOB_OK;
}

blob_result_t blobstore_upload_sync(blobstore_t *self, const char *upload_id, char *err,
                                    size_t err_size)
{
    int fd = -1;
    blob_result_t rc = upload_open(self, upload_id, O_RDONLY, &fd, err, err_size);
    if (rc != BLOB_OK)
        return rc;
    rc = fdatasync(fd) == 0 ? BLOB_OK : sys_fail(errno, err, err_size, "sync upload", upload_id);
    close(fd);
    return rc;
}

void blobstore_upload_remove(blobstore_t *self, const char *upload_id)
{
    char path[PATH_MAX];
    if (upload_path(self, upload_id, NULL, path, NULL, 0) != BLOB_OK)
        return;
    struct stat st;
    if (stat(path, &st) == 0 && unlink(path) == 0)
        used_sub(self, (uint64_t)st.st_size);
    if (join_path(path, self->tmp_dir, upload_id, ".blocks"))
        unlink(path);
    if (join_path(path, self->tmp_dir, upload_id, ".progress"))
        unlink(path);
}

/* --- commit ----------------------------------------------------------------- */

/* Drops a refused or failed commit's files. */
static void commit_abort(blobstore_t *self, const char *upload_id, int fd, int blocks_fd)
{
    if (fd >= 0)
        close(fd);
    if (blocks_fd >= 0)
        close(blocks_fd);
    blobstore_upload_remove(self, upload_id);
}

/* The temp file is gone: the commit already happened (a re-run request) if
 * the blob is there with the expected size and its block list. */
static blob_result_t commit_done_before(blobstore_t *self, const char *upload_id,
                                        uint64_t expected_size, const char *expected_sha256,
                                        char sha_out[BLOB_SHA_HEX], bool *deduplicated, char *err,
                                        size_t err_size)
{
    uint64_t size = 0;
    char path[PATH_MAX];
    if (blobstore_size(self, expected_sha256, &size) == BLOB_OK && size == expected_size &&
        (blob_one_block(size) ||
         (blob_path(self, expected_sha256, ".blocks", path) && access(path, F_OK) == 0))) {
        memcpy(sha_out, expected_sha256, BLOB_SHA_HEX);
        if (deduplicated)
            *deduplicated = true;
        return BLOB_OK;
    }
    set_err(err, err_size, "upload %s not found", upload_id);
    return BLOB_MISSING;
}

/* Installs an upload of size bytes whose file (fd, fsynced, at path) and
 * block list (blocks_tmp, complete, fsynced and closed; for a blob of one
 * block, none is needed: whatever is there is dropped) were checked to
 * hash to sha: the list, then the blob, renamed into blobs/, but their
 * folder not fsynced (the caller's, once for all the blobs it installs).
 * Closes fd; on a failure the upload's files go. */
static blob_result_t install_rename(blobstore_t *self, const char *upload_id, int fd,
                                    const char *path, const char *blocks_tmp, const char *sha,
                                    uint64_t size, bool *deduplicated, char *err, size_t err_size)
{
    blob_result_t rc;
    char sub[PATH_MAX], final_path[PATH_MAX], final_blocks[PATH_MAX];
    if (!blob_dir_path(self, sha, sub) || !blob_path(self, sha, NULL, final_path) ||
        !blob_path(self, sha, ".blocks", final_blocks)) {
        set_err(err, err_size, "blob %s: path too long", sha);
        commit_abort(self, upload_id, fd, -1);
        return BLOB_IO;
    }
    if (make_dir(sub) < 0) {
        rc = sys_fail(errno, err, err_size, "create blob folder for", sha);
        commit_abort(self, upload_id, fd, -1);
        return rc;
    }

    /* These bytes were just verified against their SHA-256; a blob of that
     * name already there was not (it may have been damaged on disk since,
     * even at its right size). So they always take its place, by rename:
     * still one copy of the content (deduplicated: it was there already),
     * and a damaged one is repaired rather than handed to a new version.
     * The block list is rewritten from this pass likewise. */
    struct stat existing;
    bool exists = stat(final_path, &existing) == 0 && S_ISREG(existing.st_mode);
    bool one_block = blob_one_block(size);
    if (one_block) {
        unlink(blocks_tmp); /* a line the running hash wrote: not kept */
    } else if (rename(blocks_tmp, final_blocks) < 0) {
        rc = sys_fail(errno, err, err_size, "install block list of", sha);
        commit_abort(self, upload_id, fd, -1);
        return rc;
    }
    if (fchmod(fd, 0444) < 0 || rename(path, final_path) < 0) {
        rc = sys_fail(errno, err, err_size, "install blob", sha);
        commit_abort(self, upload_id, fd, -1);
        return rc;
    }
    close(fd);
    if (exists)
        used_sub(self, (uint64_t)existing.st_size);
    /* A list an earlier version of the service wrote for this small blob
     * says nothing its name does not: it goes, after the blob (a crash in
     * between leaves it, still harmless). */
    if (one_block)
        unlink(final_blocks);
    /* Its progress record goes with the upload; left behind (a crash right
     * here), the sweep takes it. */
    char progress[PATH_MAX];
    if (join_path(progress, self->tmp_dir, upload_id, ".progress"))
        unlink(progress);
    if (deduplicated)
        *deduplicated = exists && (uint64_t)existing.st_size == size;
    return BLOB_OK;
}

/* Makes the blobs renamed into blobs/<aa> durable: the destination folder
 * only. A journaling file system (ext4, XFS) writes a rename as one
 * transaction, which this fsync commits, so the names' leaving tmp/ is
 * durable with it. Elsewhere a crash could at worst leave a name in tmp/ as
 * well, which the sweep removes. */
static blob_result_t install_sync(blobstore_t *self, const char *sha, char *err, size_t err_size)
{
    char sub[PATH_MAX];
    if (!blob_dir_path(self, sha, sub)) {
        set_err(err, err_size, "blob %s: path too long", sha);
        return BLOB_IO;
    }
    if (fsync_dir(sub) < 0) {
        int saved = errno;
        set_err(err, err_size, "sync the folder of blob %s: %s", sha, strerror(saved));
        return is_no_space(saved) ? BLOB_NO_SPACE : BLOB_IO;
    }
    return BLOB_OK;
}

/* install_rename, then install_sync: one blob installed on its own. */
static blob_result_t commit_install(blobstore_t *self, const char *upload_id, int fd,
                                    const char *path, const char *blocks_tmp, const char *sha,
                                    uint64_t size, char sha_out[BLOB_SHA_HEX], bool *deduplicated,
                                    char *err, size_t err_size)
{
    blob_result_t rc = install_rename(self, upload_id, fd, path, blocks_tmp, sha, size,
                                      deduplicated, err, err_size);
    if (rc == BLOB_OK)
        rc = install_sync(self, sha, err, err_size);
    if (rc == BLOB_OK)
        memcpy(sha_out, sha, BLOB_SHA_HEX);
    return rc;
}

/* The paths of an upload's file and of its block list in the making. */
static blob_result_t commit_paths(blobstore_t *self, const char *upload_id,
                                  const char *expected_sha256, char path[PATH_MAX],
                                  char blocks_tmp[PATH_MAX], char *err, size_t err_size)
{
    blob_result_t rc = upload_path(self, upload_id, NULL, path, err, err_size);
    if (rc != BLOB_OK)
        return rc;
    if (!join_path(blocks_tmp, self->tmp_dir, upload_id, ".blocks")) {
        set_err(err, err_size, "upload %s: path too long", upload_id);
        return BLOB_IO;
    }
    if (!blob_sha_valid(expected_sha256)) {
        set_err(err, err_size, "expected_sha256 must be 64 lower-case hex digits");
        return BLOB_IO;
    }
    return BLOB_OK;
}

blob_result_t blobstore_upload_commit(blobstore_t *self, const char *upload_id,
                                      uint64_t expected_size, const char *expected_sha256,
                                      char sha_out[BLOB_SHA_HEX], bool *deduplicated, char *err,
                                      size_t err_size)
{
    char path[PATH_MAX], blocks_tmp[PATH_MAX];
    blob_result_t rc =
        commit_paths(self, upload_id, expected_sha256, path, blocks_tmp, err, err_size);
    if (rc != BLOB_OK)
        return rc;
    if (deduplicated)
        *deduplicated = false;

    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return commit_done_before(self, upload_id, expected_size, expected_sha256, sha_out,
                                      deduplicated, err, err_size);
        return sys_fail(errno, err, err_size, "open upload", upload_id);
    }
    int blocks_fd = -1;
    struct stat st;
    if (fsync(fd) < 0 || fstat(fd, &st) < 0) {
        rc = sys_fail(errno, err, err_size, "sync upload", upload_id);
        commit_abort(self, upload_id, fd, blocks_fd);
        return rc;
    }
    uint64_t size = (uint64_t)st.st_size;
    if (size != expected_size) {
        set_err(err, err_size, "upload %s holds %llu bytes, expected %llu", upload_id,
                (unsigned long long)size, (unsigned long long)expected_size);
        commit_abort(self, upload_id, fd, blocks_fd);
        return BLOB_MISMATCH;
    }

    /* A blob of one block gets no list (blob_one_block). */
    bool listed = !blob_one_block(size);
    if (listed) {
        blocks_fd = open(blocks_tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (blocks_fd < 0) {
            rc = sys_fail(errno, err, err_size, "create block list for upload", upload_id);
            commit_abort(self, upload_id, fd, blocks_fd);
            return rc;
        }
    }

    /* One pass: the whole file's hash and each block's, side by side. */
    blobhash_reset(self->pass_hash);
    block_lines_t lines = {blocks_tmp, blocks_fd, true};
    blobhash_block_fn *on_block = listed ? block_line_write : NULL;
    uint64_t offset = 0;
    while (offset < size && lines.ok) {
        size_t want = size - offset < BLOB_BLOCK_SIZE ? (size_t)(size - offset) : BLOB_BLOCK_SIZE;
        ssize_t got = pread_full(fd, self->scratch, want, offset);
        if (got != (ssize_t)want) {
            rc = got < 0 ? sys_fail(errno, err, err_size, "read upload", upload_id) : BLOB_IO;
            if (got >= 0)
                set_err(err, err_size, "upload %s shrank while committed", upload_id);
            commit_abort(self, upload_id, fd, blocks_fd);
            return rc;
        }
        blobhash_update(self->pass_hash, self->scratch, want, on_block, &lines);
        offset += want;
    }
    uint8_t digest[BLOBHASH_BYTES];
    blobhash_final(self->pass_hash, digest, on_block, &lines);
    if (!lines.ok) {
        rc = sys_fail(errno, err, err_size, "write block list for upload", upload_id);
        commit_abort(self, upload_id, fd, blocks_fd);
        return rc;
    }
    char sha[BLOB_SHA_HEX];
    sha256_to_hex(digest, sha);
    if (strcmp(sha, expected_sha256) != 0) {
        set_err(err, err_size, "upload %s has SHA-256 %s, expected %s", upload_id, sha,
                expected_sha256);
        commit_abort(self, upload_id, fd, blocks_fd);
        return BLOB_MISMATCH;
    }
    if (listed && fsync(blocks_fd) < 0) {
        rc = sys_fail(errno, err, err_size, "sync block list for upload", upload_id);
        commit_abort(self, upload_id, fd, blocks_fd);
        return rc;
    }
    if (blocks_fd >= 0)
        close(blocks_fd);
    return commit_install(self, upload_id, fd, path, blocks_tmp, sha, size, sha_out, deduplicated,
                          err, err_size);
}

/* The hashed commit's own part: the last block's line, the digest, the
 * block list cut to its length. BLOB_OK with *fd_out and *blocks_fd_out
 * open (the latter -1 for a blob of one block: no list) and *whole set; BLOB_MISSING for an upload
 * whose file is gone; otherwise (the file changed, a list that cannot be completed) -1 cast: the
 * caller reads the file instead. */
static int commit_from_hasher(blob_hasher_t *hasher, const char *path, const char *blocks_tmp,
                              uint64_t expected_size, int *fd_out, int *blocks_fd_out,
                              char whole[BLOB_SHA_HEX])
{
    *fd_out = *blocks_fd_out = -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? BLOB_MISSING : -1;
    struct stat st;
    if (fstat(fd, &st) != 0 || !hasher_file_unchanged(hasher, &st) ||
        (uint64_t)st.st_size != expected_size) {
        close(fd);
        return -1;
    }
    uint8_t digest[BLOBHASH_BYTES];
    if (blob_one_block(expected_size)) {
        /* No list to complete (blob_one_block): the digest is all. */
        blobhash_final(hasher->hash, digest, NULL, NULL);
        sha256_to_hex(digest, whole);
        *fd_out = fd;
        return BLOB_OK;
    }
    int blocks_fd = open(blocks_tmp, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (blocks_fd < 0) {
        close(fd);
        return -1;
    }
    uint64_t blocks = (expected_size + BLOB_BLOCK_SIZE - 1) / BLOB_BLOCK_SIZE;
    block_lines_t lines = {blocks_tmp, blocks_fd, true};
    blobhash_final(hasher->hash, digest, block_line_write, &lines);
    sha256_to_hex(digest, whole);
    bool ok = lines.ok;
    /* Lines past the end would be an earlier attempt's: the list is cut to
     * the blocks there are, each of which this hasher wrote. */
    struct stat bst;
    ok = ok && ftruncate(blocks_fd, (off_t)(blocks * BLOCK_LINE)) == 0 &&
         fstat(blocks_fd, &bst) == 0 && (uint64_t)bst.st_size == blocks * BLOCK_LINE;
    if (!ok) {
        close(fd);
        close(blocks_fd);
        return -1;
    }
    *fd_out = fd;
    *blocks_fd_out = blocks_fd;
    return BLOB_OK;
}

blob_result_t blobstore_upload_commit_hashed(blobstore_t *self, const char *upload_id,
                                             blob_hasher_t *hasher, uint64_t expected_size,
                                             const char *expected_sha256,
                                             char sha_out[BLOB_SHA_HEX], bool *deduplicated,
                                             bool *hashed, char *err, size_t err_size)
{
    if (hashed)
        *hashed = false;
    bool usable = hasher && hasher->valid && blobhash_length(hasher->hash) == expected_size;
    if (hasher)
        hasher->valid = false; /* spent, whatever comes */
    if (!usable)
        return blobstore_upload_commit(self, upload_id, expected_size, expected_sha256, sha_out,
                                       deduplicated, err, err_size);
    char path[PATH_MAX], blocks_tmp[PATH_MAX];
    blob_result_t rc =
        commit_paths(self, upload_id, expected_sha256, path, blocks_tmp, err, err_size);
    if (rc != BLOB_OK)
        return rc;
    if (deduplicated)
        *deduplicated = false;
    int fd = -1, blocks_fd = -1;
    char sha[BLOB_SHA_HEX];
    int prepared =
        commit_from_hasher(hasher, path, blocks_tmp, expected_size, &fd, &blocks_fd, sha);
    if (prepared == BLOB_MISSING)
        return commit_done_before(self, upload_id, expected_size, expected_sha256, sha_out,
                                  deduplicated, err, err_size);
    if (prepared != BLOB_OK)
        return blobstore_upload_commit(self, upload_id, expected_size, expected_sha256, sha_out,
                                       deduplicated, err, err_size);
    if (strcmp(sha, expected_sha256) != 0) {
        set_err(err, err_size, "upload %s has SHA-256 %s, expected %s", upload_id, sha,
                expected_sha256);
        commit_abort(self, upload_id, fd, blocks_fd);
        return BLOB_MISMATCH;
    }
    if (fsync(fd) < 0 || (blocks_fd >= 0 && fsync(blocks_fd) < 0)) {
        rc = sys_fail(errno, err, err_size, "sync upload", upload_id);
        commit_abort(self, upload_id, fd, blocks_fd);
        return rc;
    }
    if (blocks_fd >= 0)
        close(blocks_fd);
    if (hashed)
        *hashed = true;
    return commit_install(self, upload_id, fd, path, blocks_tmp, sha, expected_size, sha_out,
                          deduplicated, err, err_size);
}

blob_result_t blobstore_put(blobstore_t *self, const char *name, const void *data, size_t len,
                            const char *expected_sha256, char sha_out[BLOB_SHA_HEX],
                            bool *deduplicated, char *err, size_t err_size)
{
    blob_put_t put = {.name = name, .data = data, .len = len, .expected_sha256 = expected_sha256};
    blobstore_put_many(self, &put, 1);
    if (put.result == BLOB_OK)
        memcpy(sha_out, put.sha, BLOB_SHA_HEX);
    if (deduplicated)
        *deduplicated = put.deduplicated;
    set_err(err, err_size, "%s", put.err);
    return put.result;
}

/* A put's first steps: checked (a mismatch leaves no trace), then written
 * to its temporary file, whose fd is returned (-1 with put->result set on a
 * failure, nothing left behind). */
static int put_write(blobstore_t *self, blob_put_t *put)
{
    char *err = put->err;
    size_t err_size = sizeof put->err;
    if (put->len > BLOB_BLOCK_SIZE) {
        set_err(err, err_size, "%zu bytes is more than one block (%d): upload in chunks", put->len,
                BLOB_BLOCK_SIZE);
        put->result = BLOB_IO;
        return -1;
    }
    char path[PATH_MAX], blocks_tmp[PATH_MAX];
    put->result =
        commit_paths(self, put->name, put->expected_sha256, path, blocks_tmp, err, err_size);
    if (put->result != BLOB_OK)
        return -1;
    sha256_reset(self->whole_hash);
    sha256_update(self->whole_hash, put->data, put->len);
    if (sha256_final_hex(self->whole_hash, put->sha) < 0) {
        set_err(err, err_size, "%s: SHA-256 failed", put->name);
        put->result = BLOB_IO;
        return -1;
    }
    if (strcmp(put->sha, put->expected_sha256) != 0) {
        set_err(err, err_size, "%zu bytes with SHA-256 %s, expected %s", put->len, put->sha,
                put->expected_sha256);
        put->result = BLOB_MISMATCH;
        return -1;
    }
    /* Whatever an earlier run left under this name goes first, so that the
     * space it held is counted once. */
    blobstore_upload_remove(self, put->name);
    if (self->quota_bytes > 0 && self->used_bytes + put->len > self->quota_bytes) {
        set_err(err, err_size, "%zu bytes would exceed the quota (%llu of %llu bytes used)",
                put->len, (unsigned long long)self->used_bytes,
                (unsigned long long)self->quota_bytes);
        put->result = BLOB_NO_SPACE;
        return -1;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        put->result = sys_fail(errno, err, err_size, "create upload", put->name);
        return -1;
    }
    if (put->len > 0 && pwrite_full(fd, put->data, put->len, 0) < 0) {
        put->result = sys_fail(errno, err, err_size, "write upload", put->name);
        close(fd);
        unlink(path);
        return -1;
    }
    self->used_bytes += put->len;
    /* The disk starts on these bytes now (the file's blocks allocated and
     * its pages sent), so that the first put's fsync, whose journal commit
     * carries every allocation made before it, leaves little for the
     * others' to do. Without it (ext4's delayed allocation) each fsync
     * allocates its own file's blocks and commits the journal again.
     * Measured on this machine's ext4 (50 KiB files, 4 written, then each
     * fsynced): the first fsync 180-250 us, each later one 175 us without
     * this, 38 us with it. Only started; a failure is the fsync's to
     * report. */
    if (put->len > 0)
        (void)sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
    return fd;
}

void blobstore_put_many(blobstore_t *self, blob_put_t *puts, size_t count)
{
    if (count == 0)
        return;
    int *fds = malloc(count * sizeof *fds);
    for (size_t i = 0; i < count; i++) {
        blob_put_t *put = &puts[i];
        put->result = BLOB_OK;
        put->sha[0] = put->err[0] = '\0';
        put->deduplicated = false;
        if (!fds) {
            set_err(put->err, sizeof put->err, "out of memory");
            put->result = BLOB_IO;
        }
    }
    if (!fds)
        return;

    /* Every blob written first, then every fsync: one journal commit for
     * the batch rather than one each (see put_write). */
    for (size_t i = 0; i < count; i++)
        fds[i] = put_write(self, &puts[i]);
    for (size_t i = 0; i < count; i++) {
        if (fds[i] >= 0 && fsync(fds[i]) < 0) {
            puts[i].result =
                sys_fail(errno, puts[i].err, sizeof puts[i].err, "sync upload", puts[i].name);
            commit_abort(self, puts[i].name, fds[i], -1);
            fds[i] = -1;
        }
    }

    /* Then into blobs/ (install_rename closes each fd), and each folder
     * renamed into fsynced once, for all the blobs it received. */
    bool renamed_into[256] = {false};
    for (size_t i = 0; i < count; i++) {
        blob_put_t *put = &puts[i];
        if (fds[i] < 0)
            continue;
        char path[PATH_MAX], blocks_tmp[PATH_MAX];
        if (commit_paths(self, put->name, put->sha, path, blocks_tmp, put->err, sizeof put->err) !=
            BLOB_OK) {
            put->result = BLOB_IO;
            commit_abort(self, put->name, fds[i], -1);
            continue;
        }
        put->result = install_rename(self, put->name, fds[i], path, blocks_tmp, put->sha, put->len,
                                     &put->deduplicated, put->err, sizeof put->err);
        if (put->result == BLOB_OK)
            renamed_into[sha_folder(put->sha)] = true;
    }
    /* One fsync per folder; its failure fails every blob renamed into it
     * (left in place, they are garbage no version names: the collector's). */
    for (unsigned folder = 0; folder < 256; folder++) {
        if (!renamed_into[folder])
            continue;
        size_t first = 0;
        while (puts[first].result != BLOB_OK || sha_folder(puts[first].sha) != folder)
            first++;
        char why[256] = "";
        blob_result_t synced = install_sync(self, puts[first].sha, why, sizeof why);
        for (size_t i = first; i < count && synced != BLOB_OK; i++) {
            if (puts[i].result == BLOB_OK && sha_folder(puts[i].sha) == folder) {
                puts[i].result = synced;
                set_err(puts[i].err, sizeof puts[i].err, "%s", why);
            }
        }
    }
    for (size_t i = 0; i < count; i++)
        if (puts[i].result != BLOB_OK)
            puts[i].sha[0] = '\0';
    free(fds);
}

unsigned blobstore_sweep_uploads(blobstore_t *self, unsigned max_age_s,
                                 bool (*keep)(void *arg, const char *upload_id), void *arg)
{
    DIR *dir = opendir(self->tmp_dir);
    if (!dir)
        return 0;
    time_t now = time(NULL);
    unsigned removed = 0;
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        /* Uploads and their companions (<id>.blocks, <id>.progress) are
         * judged by the upload id; anything else in tmp/ is not ours to
         * remove. */
        char id[UPLOAD_ID_MAX + 1];
        const char *dot = strchr(entry->d_name, '.');
        size_t id_len = dot ? (size_t)(dot - entry->d_name) : strlen(entry->d_name);
        if (id_len == 0 || id_len > UPLOAD_ID_MAX ||
            (dot && strcmp(dot, ".blocks") != 0 && strcmp(dot, ".progress") != 0))
            continue;
        memcpy(id, entry->d_name, id_len);
        id[id_len] = '\0';
        if (!upload_id_valid(id))
            continue;
        struct stat st;
        if (fstatat(dirfd(dir), entry->d_name, &st, 0) < 0 || !S_ISREG(st.st_mode))
            continue;
        if (now - st.st_mtime < (time_t)max_age_s)
            continue;
        if (keep && keep(arg, id))
            continue;
        if (unlinkat(dirfd(dir), entry->d_name, 0) == 0 && !dot) {
            used_sub(self, (uint64_t)st.st_size);
            removed++;
        }
    }
    closedir(dir);
    return removed;
}

/* =========================================================================
 * Reading
 * ========================================================================= */

/* Opens a blob and its block list; checks the list covers the blob. A blob
 * of one block has none (blob_one_block): *blocks_fd_out is then -1, its
 * one line being its name, and a list left there by an earlier version of
 * the service is not read. */
static blob_result_t open_blob(blobstore_t *self, const char *sha256, int *fd_out,
                               int *blocks_fd_out, uint64_t *size_out, char *err, size_t err_size)
{
    *fd_out = *blocks_fd_out = -1;
    char path[PATH_MAX], blocks[PATH_MAX];
    if (!blob_sha_valid(sha256)) {
        set_err(err, err_size, "sha256 must be 64 lower-case hex digits");
        return BLOB_MISSING;
    }
    if (!blob_path(self, sha256, NULL, path) || !blob_path(self, sha256, ".blocks", blocks)) {
        set_err(err, err_size, "blob %s: path too long", sha256);
        return BLOB_IO;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) {
            set_err(err, err_size, "blob %s not found", sha256);
            return BLOB_MISSING;
        }
        return sys_fail(errno, err, err_size, "open blob", sha256);
    }
    struct stat st, bst;
    if (fstat(fd, &st) < 0) {
        blob_result_t rc = sys_fail(errno, err, err_size, "stat blob", sha256);
        close(fd);
        return rc;
    }
    uint64_t size = (uint64_t)st.st_size;
    if (blob_one_block(size)) {
        *fd_out = fd;
        *size_out = size;
        return BLOB_OK;
    }
    int blocks_fd = open(blocks, O_RDONLY | O_CLOEXEC);
    if (blocks_fd < 0) {
        int saved = errno;
        close(fd);
        if (saved == ENOENT) {
            set_err(err, err_size, "blob %s: block list missing", sha256);
            return BLOB_CORRUPT;
        }
        return sys_fail(saved, err, err_size, "open block list of blob", sha256);
    }
    uint64_t nblocks = (size + BLOB_BLOCK_SIZE - 1) / BLOB_BLOCK_SIZE;
    if (fstat(blocks_fd, &bst) < 0 || (uint64_t)bst.st_size != nblocks * BLOCK_LINE) {
        set_err(err, err_size, "blob %s: block list does not match its size of %llu bytes", sha256,
                (unsigned long long)size);
        close(fd);
        close(blocks_fd);
        return BLOB_CORRUPT;
    }
    *fd_out = fd;
    *blocks_fd_out = blocks_fd;
    *size_out = size;
    return BLOB_OK;
}

/* Block `block`'s line of a blob's block list into line (BLOCK_LINE
 * bytes): read from the list, or for a blob without one (blocks_fd -1, one
 * block) its name. The count of bytes had, or -1 (errno set). */
static ssize_t block_line_read(int blocks_fd, const char *sha256, uint64_t block,
                               char line[BLOCK_LINE + 1])
{
    if (blocks_fd >= 0)
        return pread_full(blocks_fd, line, BLOCK_LINE, block * BLOCK_LINE);
    if (block > 0)
        return 0;
    memcpy(line, sha256, 64);
    line[64] = '\n';
    return BLOCK_LINE;
}

/* Checks len bytes of block `block` (in data) against the block list. */
static blob_result_t check_block(blobstore_t *self, int blocks_fd, const char *sha256,
                                 uint64_t block, const unsigned char *data, size_t len, char *err,
                                 size_t err_size)
{
    char line[BLOCK_LINE + 1];
    ssize_t got = block_line_read(blocks_fd, sha256, block, line);
    if (got < 0)
        return sys_fail(errno, err, err_size, "read block list of blob", sha256);
    char hex[BLOB_SHA_HEX];
    sha256_update(self->block_hash, data, len);
    if (sha256_final_hex(self->block_hash, hex) < 0) {
        set_err(err, err_size, "blob %s: SHA-256 of block %llu failed", sha256,
                (unsigned long long)block);
        return BLOB_IO;
    }
    if (got != BLOCK_LINE || memcmp(line, hex, 64) != 0) {
        set_err(err, err_size, "blob %s: block %llu (bytes %llu-%llu) does not match its hash",
                sha256, (unsigned long long)block, (unsigned long long)(block * BLOB_BLOCK_SIZE),
                (unsigned long long)(block * BLOB_BLOCK_SIZE + len - 1));
        return BLOB_CORRUPT;
    }
    return BLOB_OK;
}

blob_result_t blobstore_read(blobstore_t *self, const char *sha256, uint64_t offset, void *buf,
                             size_t len, size_t *got, char *err, size_t err_size)
{
    *got = 0;
    if (len > BLOB_BLOCK_SIZE) {
        set_err(err, err_size, "read of %zu bytes exceeds the block size %d", len, BLOB_BLOCK_SIZE);
        return BLOB_IO;
    }
    int fd, blocks_fd;
    uint64_t size;
    blob_result_t rc = open_blob(self, sha256, &fd, &blocks_fd, &size, err, err_size);
    if (rc != BLOB_OK)
        return rc;
    if (offset >= size || len == 0) {
        close(fd);
        if (blocks_fd >= 0)
            close(blocks_fd);
        return BLOB_OK;
    }
    uint64_t end = size - offset < len ? size : offset + len;
    size_t copied = 0;
    /* A range touches at most two blocks. Each is read whole (into buf when
     * the range covers it exactly, else into the scratch buffer) and checked
     * before any of its bytes is handed out. */
    for (uint64_t block = offset / BLOB_BLOCK_SIZE; block * BLOB_BLOCK_SIZE < end; block++) {
        uint64_t start = block * BLOB_BLOCK_SIZE;
        size_t block_len =
            size - start < BLOB_BLOCK_SIZE ? (size_t)(size - start) : BLOB_BLOCK_SIZE;
        uint64_t from = offset > start ? offset : start;
        uint64_t to = end < start + block_len ? end : start + block_len;
        bool whole = from == start && to == start + block_len;
        unsigned char *dst = whole ? (unsigned char *)buf + copied : self->scratch;
        ssize_t n = pread_full(fd, dst, block_len, start);
        if (n < 0) {
            rc = sys_fail(errno, err, err_size, "read blob", sha256);
            break;
        }
        if ((size_t)n != block_len) {
            set_err(err, err_size, "blob %s: block %llu is short", sha256,
                    (unsigned long long)block);
            rc = BLOB_CORRUPT;
            break;
        }
        rc = check_block(self, blocks_fd, sha256, block, dst, block_len, err, err_size);
        if (rc != BLOB_OK)
            break;
        if (!whole)
            memcpy((unsigned char *)buf + copied, self->scratch + (from - start), to - from);
        copied += (size_t)(to - from);
    }
    close(fd);
    if (blocks_fd >= 0)
        close(blocks_fd);
    if (rc == BLOB_OK)
        *got = copied;
    return rc;
}

blob_result_t blobstore_size(blobstore_t *self, const char *sha256, uint64_t *size)
{
    return blobstore_stat(self, sha256, size, NULL);
}

blob_result_t blobstore_stat(blobstore_t *self, const char *sha256, uint64_t *size,
                             int64_t *changed_s)
{
    char path[PATH_MAX];
    struct stat st;
    if (!blob_sha_valid(sha256) || !blob_path(self, sha256, NULL, path))
        return BLOB_MISSING;
    if (stat(path, &st) < 0)
        return errno == ENOENT ? BLOB_MISSING : BLOB_IO;
    if (size)
        *size = (uint64_t)st.st_size;
    if (changed_s)
        *changed_s = (int64_t)st.st_ctim.tv_sec;
    return BLOB_OK;
}

/* =========================================================================
 * Integrity and space
 * ========================================================================= */

/* A verify's pass: each block's digest as it completes, against its line
 * in the block list. */
typedef struct {
    int blocks_fd;
    const char *sha256;
    uint64_t size;
    blob_result_t rc;
    char *err;
    size_t err_size;
} block_check_t;

static void block_line_check(void *arg, uint64_t block, const uint8_t digest[BLOBHASH_BYTES])
{
    block_check_t *check = arg;
    if (check->rc != BLOB_OK)
        return;
    char line[BLOCK_LINE + 1], hex[BLOB_SHA_HEX];
    ssize_t got = block_line_read(check->blocks_fd, check->sha256, block, line);
    if (got < 0) {
        check->rc =
            sys_fail(errno, check->err, check->err_size, "read block list of blob", check->sha256);
        return;
    }
    sha256_to_hex(digest, hex);
    if (got != BLOCK_LINE || memcmp(line, hex, 64) != 0) {
        uint64_t start = block * BLOB_BLOCK_SIZE;
        uint64_t end =
            check->size - start < BLOB_BLOCK_SIZE ? check->size : start + BLOB_BLOCK_SIZE;
        set_err(check->err, check->err_size,
                "blob %s: block %llu (bytes %llu-%llu) does not match its hash", check->sha256,
                (unsigned long long)block, (unsigned long long)start,
                (unsigned long long)(end - 1));
        check->rc = BLOB_CORRUPT;
    }
}

blob_result_t blobstore_verify(blobstore_t *self, const char *sha256, uint64_t *size, char *err,
                               size_t err_size)
{
    int fd, blocks_fd;
    uint64_t blob_size = 0;
    if (size)
        *size = 0;
    if (blobstore_size(self, sha256, &blob_size) == BLOB_OK && size)
        *size = blob_size;
    blob_result_t rc = open_blob(self, sha256, &fd, &blocks_fd, &blob_size, err, err_size);
    if (rc != BLOB_OK)
        return rc;
    /* The whole hash and the blocks' in one pass (blobhash.h). */
    block_check_t check = {blocks_fd, sha256, blob_size, BLOB_OK, err, err_size};
    blobhash_reset(self->pass_hash);
    for (uint64_t offset = 0, block = 0; offset < blob_size && check.rc == BLOB_OK;
         offset += BLOB_BLOCK_SIZE, block++) {
        size_t want =
            blob_size - offset < BLOB_BLOCK_SIZE ? (size_t)(blob_size - offset) : BLOB_BLOCK_SIZE;
        ssize_t n = pread_full(fd, self->scratch, want, offset);
        if (n < 0) {
            check.rc = sys_fail(errno, err, err_size, "read blob", sha256);
            break;
        }
        if ((size_t)n != want) {
            set_err(err, err_size, "blob %s: block %llu is short", sha256,
                    (unsigned long long)block);
            check.rc = BLOB_CORRUPT;
            break;
        }
        blobhash_update(self->pass_hash, self->scratch, want, block_line_check, &check);
    }
    uint8_t digest[BLOBHASH_BYTES];
    blobhash_final(self->pass_hash, digest, block_line_check, &check);
    close(fd);
    if (blocks_fd >= 0)
        close(blocks_fd);
    if (check.rc != BLOB_OK)
        return check.rc;
    char hex[BLOB_SHA_HEX];
    sha256_to_hex(digest, hex);
    if (strcmp(hex, sha256) != 0) {
        set_err(err, err_size, "blob %s: content hashes to %s", sha256, hex);
        return BLOB_CORRUPT;
    }
    return BLOB_OK;
}

long blobstore_each(blobstore_t *self, void (*fn)(void *arg, const char *sha256, uint64_t size),
                    void *arg)
{
    DIR *top = opendir(self->blobs_dir);
    if (!top)
        return -1;
    long count = 0;
    struct dirent *sub_entry;
    while ((sub_entry = readdir(top)) != NULL) {
        const char *prefix = sub_entry->d_name;
        if (strlen(prefix) != 2 || !strchr("0123456789abcdef", prefix[0]) ||
            !strchr("0123456789abcdef", prefix[1]))
            continue;
        int sub_fd = openat(dirfd(top), prefix, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR *sub = sub_fd >= 0 ? fdopendir(sub_fd) : NULL;
        if (!sub) {
            if (sub_fd >= 0)
                close(sub_fd);
            if (errno == ENOTDIR)
                continue;
            count = -1;
            break;
        }
        struct dirent *entry;
        while ((entry = readdir(sub)) != NULL) {
            if (!blob_sha_valid(entry->d_name) || memcmp(entry->d_name, prefix, 2) != 0)
                continue;
            struct stat st;
            if (fstatat(dirfd(sub), entry->d_name, &st, 0) < 0 || !S_ISREG(st.st_mode))
                continue;
            if (fn)
                fn(arg, entry->d_name, (uint64_t)st.st_size);
            count++;
        }
        closedir(sub);
    }
    closedir(top);
    return count;
}

typedef struct {
    char sha[BLOB_SHA_HEX];
} walk_name_t;

/* Keeps in names[0..*got) the `want` smallest names seen, sorted; true if
 * one was dropped (the folder has more than want). */
static bool walk_keep(walk_name_t *names, size_t want, size_t *got, const char *name)
{
    bool dropped = false;
    if (*got == want) {
        if (strcmp(name, names[want - 1].sha) >= 0)
            return true;
        (*got)--;
        dropped = true;
    }
    size_t i = *got;
    while (i > 0 && strcmp(names[i - 1].sha, name) > 0) {
        names[i] = names[i - 1];
        i--;
    }
    memcpy(names[i].sha, name, BLOB_SHA_HEX);
    (*got)++;
    return dropped;
}

/* True if name, in the blob folder dir of this prefix, is a block list
 * "<sha>.blocks" whose blob is gone; then removes it (garbage: see the top
 * of this file). Store operations never overlap (one thread), so no commit
 * is between its two renames meanwhile. */
static bool stray_block_list(DIR *dir, const char *prefix, const char *name)
{
    size_t len = strlen(name);
    if (len != BLOB_SHA_HEX - 1 + strlen(".blocks") ||
        strcmp(name + BLOB_SHA_HEX - 1, ".blocks") != 0 || memcmp(name, prefix, 2) != 0)
        return false;
    char sha[BLOB_SHA_HEX];
    memcpy(sha, name, BLOB_SHA_HEX - 1);
    sha[BLOB_SHA_HEX - 1] = '\0';
    struct stat st;
    if (!blob_sha_valid(sha) || fstatat(dirfd(dir), sha, &st, AT_SYMLINK_NOFOLLOW) == 0 ||
        errno != ENOENT)
        return false;
    return unlinkat(dirfd(dir), name, 0) == 0;
}

long blobstore_walk(blobstore_t *self, blob_cursor_t *cursor, size_t max,
                    void (*fn)(void *arg, const char *sha256, uint64_t size), void *arg)
{
    if (max == 0)
        return 0;
    walk_name_t *names = malloc(max * sizeof *names);
    if (!names)
        return -1;
    long count = 0;
    while ((size_t)count < max) {
        if (cursor->folder > 255) {
            cursor->folder = 0;
            cursor->after[0] = '\0';
            cursor->passes++;
            break;
        }
        char prefix[3], path[PATH_MAX];
        snprintf(prefix, sizeof prefix, "%02x", cursor->folder & 0xffu);
        if (!join_path(path, self->blobs_dir, prefix, NULL)) {
            count = -1;
            break;
        }
        DIR *dir = opendir(path);
        if (!dir) {
            if (errno != ENOENT && errno != ENOTDIR) {
                count = -1;
                break;
            }
            cursor->folder++;
            cursor->after[0] = '\0';
            continue;
        }
        size_t want = max - (size_t)count, got = 0;
        bool more = false;
        struct dirent *entry;
        while ((entry = readdir(dir)) != NULL) {
            if (stray_block_list(dir, prefix, entry->d_name))
                continue;
            if (!blob_sha_valid(entry->d_name) || memcmp(entry->d_name, prefix, 2) != 0)
                continue;
            if (cursor->after[0] && strcmp(entry->d_name, cursor->after) <= 0)
                continue;
            if (walk_keep(names, want, &got, entry->d_name))
                more = true;
        }
        for (size_t i = 0; i < got; i++) {
            struct stat st;
            if (fstatat(dirfd(dir), names[i].sha, &st, 0) < 0 || !S_ISREG(st.st_mode))
                continue;
            if (fn)
                fn(arg, names[i].sha, (uint64_t)st.st_size);
            count++;
        }
        closedir(dir);
        if (more && got > 0) {
            /* The folder holds more: the next call resumes after these. */
            memcpy(cursor->after, names[got - 1].sha, BLOB_SHA_HEX);
            break;
        } else {
            cursor->folder++;
            cursor->after[0] = '\0';
        }
    }
    free(names);
    return count;
}

blob_result_t blobstore_remove(blobstore_t *self, const char *sha256)
{
    char path[PATH_MAX], blocks[PATH_MAX];
    if (!blob_sha_valid(sha256) || !blob_path(self, sha256, NULL, path) ||
        !blob_path(self, sha256, ".blocks", blocks))
        return BLOB_MISSING;
    /* The blob first: a blob without its block list would read as
     * corrupt, a block list without its blob is only garbage. */
    struct stat st;
    if (stat(path, &st) < 0 || unlink(path) < 0) {
        if (errno != ENOENT)
            return BLOB_IO;
        unlink(blocks); /* a stray left by an earlier removal cut short */
        return BLOB_MISSING;
    }
    used_sub(self, (uint64_t)st.st_size);
    unlink(blocks);
    return BLOB_OK;
}
