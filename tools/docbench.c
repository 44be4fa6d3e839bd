/* passerelle-docbench: how far the document store is from the disk it is
 * built on.
 *
 * Every figure is set against a bare limit measured in the same run, on the
 * same volume, with the same bytes:
 *   - put: the bare limit writes the bytes to a new file in chunks of the
 *     service's chunk size (BLOB_BLOCK_SIZE), hashing them (SHA-256 of
 *     common/sha256.c, as the service and the client hash) in the same
 *     pass, then fsync, close, rename to its SHA-256 name and fsync of the
 *     destination folder: the least a durable, content-addressed write
 *     costs. Passerelle's put is what `passerelle docs put` does: for a
 *     file of at most one chunk, its SHA-256 and an upload.begin that
 *     carries the bytes and names it (one request); otherwise
 *     upload.begin without a SHA-256, upload.chunk of chunk_max bytes with
 *     the session's window of them in flight, each hashed as it is sent,
 *     and upload.commit naming the SHA-256 (a trailing checksum; with
 *     --hash-first, as `docs put --hash-first`: the SHA-256 of the whole
 *     file first, named by the begin). The small files are also put
 *     a second time, other bytes of the same size, with the window of
 *     upload.begins in flight (a client sending several documents at once;
 *     the same bare limit).
 *   - get: the bare limit is a plain read(2), in chunks of the same size, of
 *     the blob file the service itself stored for those bytes. Passerelle's
 *     get is what `passerelle docs get` does, document.read by 1 MiB ranges,
 *     the first alone, then the window of them in flight, hashed in order
 *     as they come and checked against the reply's SHA-256 and size, except
 *     that the bytes are not written to a local file.
 * Page cache: both reads of a file find it in the same state. By default it
 * is warm (the file was just written and fsynced, so its pages are clean and
 * cached); with --cold, every blob file (and its block list, for a blob of
 * more than one block) is dropped from the cache (posix_fadvise DONTNEED)
 * before each of the two reads.
 *
 * The sizes: one large file (64 MiB by default, one new file per round) and
 * many small ones (1,000 x 50 KiB), every file with bytes of its own so that
 * nothing is deduplicated. The figures are measured in interleaved rounds
 * (bare put, service put, for small files the service put with a window
 * of files, bare get, service get), so that a drift of this shared
 * machine's disk weighs on the limits and on Passerelle alike.
 *
 * Pinning, as passerelle-bench does: the bench (the client) on the first
 * allowed vCPU; redis-server and the service on the second, where the bare
 * limits run too, since that is where the service does its disk work.
 * Children inherit the affinity of the thread that forks them.
 *
 * Output: a table, the ratios against the aims (put >= 0.60 and get >= 0.70
 * of the limit), and one JSON line (the last line of stdout). The exit code
 * says whether every call succeeded and every byte came back; the aims
 * never fail it. */
#define _GNU_SOURCE
#include "bench_util.h"
#include "harness.h"
#include "inflight.h"
#include "memtune.h"

#include "docstore.pb-c.h"
#include "envelope.pb-c.h"
#include "ids.h"
#include "sha256.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The service's chunk size (BLOB_BLOCK_SIZE in services/docstore/blobs.h)
 * and the range `passerelle docs get` asks for (READ_LENGTH in
 * tools/docs.c). */
#define CHUNK_BYTES (1024u * 1024u)
#define READ_LENGTH (1024u * 1024u)
/* What `passerelle docs put` sends whole in its upload.begin (WHOLE_MAX in
 * tools/docs.c): one chunk. */
#define WHOLE_MAX CHUNK_BYTES

#define DEFAULT_LARGE_MIB   64
#define DEFAULT_LARGE_ROUND 3
#define DEFAULT_SMALL_FILES 1000
#define DEFAULT_SMALL_KIB   50
/* Rounds the small files are measured in (fewer when there are fewer). */
#define SMALL_ROUNDS 10
/* Generous, so that a run under valgrind does not time out; a call that
 * gets no reply is a failure, never a silent retry. */
#define CALL_TIMEOUT_MS   60000
#define DEFAULT_MAX_BYTES (512ull * 1024 * 1024)

#define AIM_PUT 0.60
#define AIM_GET 0.70

/* ====================================================================== */
/* Options and pinning                                                    */
/* ====================================================================== */

typedef struct {
    int large_mib;
    int large_rounds;
    int small_files;
    int small_kib;
    bool cold;
    bool pin;
    bool hash_first; /* large puts: SHA-256 before the begin, not trailing */
    int cpu_bench, cpu_service;
} options_t;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: passerelle-docbench [--large-mib M] [--large-rounds R] [--small-files N]\n"
            "                           [--small-kib K] [--cold] [--hash-first]\n"
            "                           [--cpus B,S | --no-pin]\n"
            "  --large-mib M     size of the large file, MiB (default %d)\n"
            "  --large-rounds R  large files put and got, each new (default %d)\n"
            "  --small-files N   small files put and got (default %d)\n"
            "  --small-kib K     size of a small file, KiB (default %d)\n"
            "  --cold            drop each file from the page cache before each read\n"
            "                    (default: warm, both reads find it cached)\n"
            "  --hash-first      large puts hash the file before upload.begin names its\n"
            "                    SHA-256 (default: hashed as it is sent, named by the commit)\n"
            "  --cpus B,S        vCPUs of the bench and of the service, redis-server and\n"
            "                    bare limits (default: first allowed vCPU, second)\n"
            "  --no-pin          leave scheduling to the kernel\n"
            "The service binary is looked for under $PASSERELLE_TEST_BIN_DIR\n"
            "(default: the build tree this was built in); files go under $TMPDIR.\n",
            DEFAULT_LARGE_MIB, DEFAULT_LARGE_ROUND, DEFAULT_SMALL_FILES, DEFAULT_SMALL_KIB);
}

static int parse_options(int argc, char *argv[], options_t *opt)
{
    opt->large_mib = DEFAULT_LARGE_MIB;
    opt->large_rounds = DEFAULT_LARGE_ROUND;
    opt->small_files = DEFAULT_SMALL_FILES;
    opt->small_kib = DEFAULT_SMALL_KIB;
    opt->cold = false;
    opt->pin = true;
    opt->hash_first = false;
    bench_default_cpus(&opt->cpu_bench, &opt->cpu_service);
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            usage(stdout);
            exit(0);
        } else if (strcmp(arg, "--no-pin") == 0) {
            opt->pin = false;
        } else if (strcmp(arg, "--cold") == 0) {
            opt->cold = true;
        } else if (strcmp(arg, "--hash-first") == 0) {
            opt->hash_first = true;
        } else if (strcmp(arg, "--large-mib") == 0 && value) {
            if (!bench_parse_int(value, 1, 4096, &opt->large_mib))
                return -1;
            i++;
        } else if (strcmp(arg, "--large-rounds") == 0 && value) {
            if (!bench_parse_int(value, 1, 100, &opt->large_rounds))
                return -1;
            i++;
        } else if (strcmp(arg, "--small-files") == 0 && value) {
            if (!bench_parse_int(value, 1, 1000000, &opt->small_files))
                return -1;
            i++;
        } else if (strcmp(arg, "--small-kib") == 0 && value) {
            if (!bench_parse_int(value, 1, 1024 * 1024, &opt->small_kib))
                return -1;
            i++;
        } else if (strcmp(arg, "--cpus") == 0 && value) {
            int *const cpus[] = {&opt->cpu_bench, &opt->cpu_service};
            if (!bench_parse_cpus(value, cpus, 2))
                return -1;
            i++;
        } else {
            return -1;
        }
    }
    return 0;
}

/* ====================================================================== */
/* Figures                                                                */
/* ====================================================================== */

enum {
    FIG_LARGE_PUT_BARE,
    FIG_LARGE_PUT,
    FIG_LARGE_GET_BARE,
    FIG_LARGE_GET,
    FIG_SMALL_PUT_BARE,
    FIG_SMALL_PUT,
    FIG_SMALL_GET_BARE,
    FIG_SMALL_GET,
    FIG_SMALL_PUT_MANY, /* the small files again, several in flight */
    FIG_COUNT,
};

typedef struct {
    const char *name;  /* JSON key */
    const char *label; /* table row */
    uint64_t bytes;
    uint64_t files;
    double seconds;
} figure_t;

static double mib_per_s(const figure_t *fig)
{
    return fig->seconds > 0 ? (double)fig->bytes / (1024.0 * 1024.0) / fig->seconds : 0;
}

static double files_per_s(const figure_t *fig)
{
    return fig->seconds > 0 ? (double)fig->files / fig->seconds : 0;
}

static void figure_add(figure_t *fig, uint64_t bytes, uint64_t files, double seconds)
{
    fig->bytes += bytes;
    fig->files += files;
    fig->seconds += seconds;
}

/* ====================================================================== */
/* Bytes                                                                  */
/* ====================================================================== */

/* A seeded sequence (splitmix64), eight bytes at a time: each file gets a
 * seed of its own, so no two files of a run are alike. */
static void bytes_fill(uint64_t seed, uint8_t *buf, size_t len)
{
    uint64_t state = seed;
    for (size_t i = 0; i < len; i += 8) {
        uint64_t z = (state += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        memcpy(buf + i, &z, len - i < 8 ? len - i : 8);
    }
}

static void sha_hex(const uint8_t *data, size_t len, char hex[65])
{
    if (sha256_hex(data, len, hex) < 0)
        snprintf(hex, 65, "(SHA-256 failed)");
}

/* ====================================================================== */
/* The bare limits                                                        */
/* ====================================================================== */

typedef struct {
    char tmp_dir[1100];
    char blobs_dir[1100];
    int blobs_fd; /* the destination folder, for its fsync */
    uint8_t *buf; /* one chunk, for reads */
} bare_t;

static int bare_open(bare_t *bare, const char *dir)
{
    memset(bare, 0, sizeof *bare);
    bare->blobs_fd = -1;
    snprintf(bare->tmp_dir, sizeof bare->tmp_dir, "%s/tmp", dir);
    snprintf(bare->blobs_dir, sizeof bare->blobs_dir, "%s/blobs", dir);
    if (mkdir(dir, 0700) != 0 || mkdir(bare->tmp_dir, 0700) != 0 ||
        mkdir(bare->blobs_dir, 0700) != 0) {
        fprintf(stderr, "passerelle-docbench: cannot make %s: %s\n", dir, strerror(errno));
        return -1;
    }
    bare->blobs_fd = open(bare->blobs_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    bare->buf = malloc(CHUNK_BYTES);
    if (bare->blobs_fd < 0 || !bare->buf) {
        fprintf(stderr, "passerelle-docbench: cannot open %s: %s\n", bare->blobs_dir,
                strerror(errno));
        return -1;
    }
    return 0;
}

static void bare_close(bare_t *bare)
{
    if (bare->blobs_fd >= 0)
        close(bare->blobs_fd);
    bare->blobs_fd = -1;
    free(bare->buf);
    bare->buf = NULL;
}

/* Writes data as a durable, content-addressed file: chunks written and
 * hashed in one pass, fsync, rename to its SHA-256, fsync of the folder.
 * 0 or -1 (message on stderr). */
static int bare_put(bare_t *bare, const char *name, const uint8_t *data, size_t size)
{
    char tmp[PATH_MAX], final[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s/%s", bare->tmp_dir, name);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "passerelle-docbench: bare put: cannot create %s: %s\n", tmp,
                strerror(errno));
        return -1;
    }
    sha256_t *hash = sha256_new();
    if (!hash) {
        fprintf(stderr, "passerelle-docbench: bare put: SHA-256 unavailable\n");
        close(fd);
        return -1;
    }
    for (size_t offset = 0; offset < size;) {
        size_t len = size - offset < CHUNK_BYTES ? size - offset : CHUNK_BYTES;
        ssize_t wrote = write(fd, data + offset, len);
        if (wrote <= 0) {
            fprintf(stderr, "passerelle-docbench: bare put: write %s: %s\n", tmp,
                    wrote < 0 ? strerror(errno) : "nothing written");
            sha256_destroy(&hash);
            close(fd);
            return -1;
        }
        sha256_update(hash, data + offset, (size_t)wrote);
        offset += (size_t)wrote;
    }
    char hex[SHA256_HEX_LEN];
    int hashed = sha256_final_hex(hash, hex);
    sha256_destroy(&hash);
    if (hashed < 0) {
        fprintf(stderr, "passerelle-docbench: bare put: SHA-256 of %s failed\n", tmp);
        close(fd);
        return -1;
    }
    snprintf(final, sizeof final, "%s/%s", bare->blobs_dir, hex);
    if (fsync(fd) != 0 || close(fd) != 0 || rename(tmp, final) != 0 || fsync(bare->blobs_fd) != 0) {
        fprintf(stderr, "passerelle-docbench: bare put: %s: %s\n", final, strerror(errno));
        return -1;
    }
    return 0;
}

/* Drops a file's pages from the page cache (clean pages only, which these
 * are: every file here was fsynced). */
static void cache_drop(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        close(fd);
    }
}

/* Reads the whole file at path, chunk by chunk; it must hold size bytes.
 * 0 or -1. */
static int bare_get(bare_t *bare, const char *path, uint64_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "passerelle-docbench: bare get: cannot open %s: %s\n", path,
                strerror(errno));
        return -1;
    }
    uint64_t total = 0;
    for (;;) {
        ssize_t got = read(fd, bare->buf, CHUNK_BYTES);
        if (got < 0) {
            fprintf(stderr, "passerelle-docbench: bare get: read %s: %s\n", path, strerror(errno));
            close(fd);
            return -1;
        }
        if (got == 0)
            break;
        total += (uint64_t)got;
    }
    close(fd);
    if (total != size) {
        fprintf(stderr, "passerelle-docbench: bare get: %s holds %llu bytes, not %llu\n", path,
                (unsigned long long)total, (unsigned long long)size);
        return -1;
    }
    return 0;
}

/* ====================================================================== */
/* Passerelle: the calls `passerelle docs put` and `get` make             */
/* ====================================================================== */

/* A reply that must be OK (and, expected false, answer a request in
 * flight): its body unpacked as desc (caller frees with
 * protobuf_c_message_free_unpacked), or NULL after saying why. Takes
 * reply. */
static ProtobufCMessage *reply_body(const char *type, Passerelle__Reply *reply,
                                    const ProtobufCMessageDescriptor *desc, bool expected)
{
    if (!expected || reply->status != PASSERELLE__STATUS__STATUS_OK) {
        fprintf(stderr, "passerelle-docbench: %s: status %d: %s (field: %s)%s\n", type,
                reply->status, reply->message ? reply->message : "",
                reply->field ? reply->field : "", expected ? "" : ", to no request in flight");
        passerelle__reply__free_unpacked(reply, NULL);
        return NULL;
    }
    ProtobufCMessage *body = protobuf_c_message_unpack(
        desc, NULL, reply->has_body ? reply->body.len : 0, reply->body.data);
    passerelle__reply__free_unpacked(reply, NULL);
    if (!body)
        fprintf(stderr, "passerelle-docbench: %s: the reply does not decode as %s\n", type,
                desc->name);
    return body;
}

/* One request that must succeed: the reply's body unpacked as desc (caller
 * frees with protobuf_c_message_free_unpacked), or NULL after saying why. */
static ProtobufCMessage *call_ok(client_t *client, const char *type,
                                 const ProtobufCMessage *request,
                                 const ProtobufCMessageDescriptor *desc)
{
    Passerelle__Reply *reply = NULL;
    if (client_call(client, type, request, NULL, &reply) != 0) {
        fprintf(stderr, "passerelle-docbench: %s: no reply\n", type);
        return NULL;
    }
    return reply_body(type, reply, desc, true);
}

/* A stored version: the document that holds it and its SHA-256. */
typedef struct {
    char id[64];
    char sha[65];
    uint64_t size;
} stored_t;

/* The next reply of a transfer, which must be OK: its body unpacked as
 * desc (caller frees) and its slot, or NULL after saying why. A reply to
 * no slot is a failure too: nothing here is ever given up on. */
static ProtobufCMessage *flight_reply(client_t *client, const char *type, inflight_t *slots,
                                      unsigned window, const ProtobufCMessageDescriptor *desc,
                                      inflight_t **slot_p)
{
    Passerelle__Reply *reply = NULL;
    if (client_receive_reply(client, CALL_TIMEOUT_MS, &reply) != 0) {
        fprintf(stderr, "passerelle-docbench: %s: no reply\n", type);
        return NULL;
    }
    *slot_p = inflight_find(slots, window, reply->request_id);
    return reply_body(type, reply, desc, *slot_p != NULL);
}

/* Sends size bytes of data from session->received on, up to the session's
 * window of chunks in flight, each reply the credit for the next; each
 * chunk is fed to trailing (may be NULL) as it is sent, in order, as the
 * CLI hashes what it reads to send (nothing is ever sent twice here). 0 or
 * -1. */
static int service_chunks(client_t *client, const uint8_t *data, uint64_t size,
                          const Passerelle__UploadSession *session, sha256_t *trailing)
{
    unsigned window = inflight_window(session->has_window, session->window);
    inflight_t slots[INFLIGHT_MAX];
    memset(slots, 0, sizeof slots);
    uint64_t next = session->received, acked = session->received;
    int rc = 0;
    while (rc == 0 && acked < size) {
        inflight_t *slot;
        while ((slot = inflight_take(slots, window, &next, size, session->chunk_max))) {
            Passerelle__UploadChunkRequest chunk = PASSERELLE__UPLOAD_CHUNK_REQUEST__INIT;
            chunk.upload_id = session->upload_id;
            chunk.has_offset = chunk.has_data = true;
            chunk.offset = slot->offset;
            chunk.data.data = (uint8_t *)data + slot->offset;
            chunk.data.len = slot->len;
            if (trailing)
                sha256_update(trailing, chunk.data.data, chunk.data.len);
            if (client_send_request(client, slot->request_id, "upload.chunk", &chunk.base, NULL) !=
                0) {
                fprintf(stderr, "passerelle-docbench: upload.chunk: cannot send\n");
                return -1;
            }
        }
        Passerelle__UploadSession *ack = (Passerelle__UploadSession *)flight_reply(
            client, "upload.chunk", slots, window, &passerelle__upload_session__descriptor, &slot);
        if (!ack)
            return -1;
        if (ack->received != slot->offset + slot->len) {
            fprintf(stderr,
                    "passerelle-docbench: upload.chunk at offset %llu: received %llu of %llu\n",
                    (unsigned long long)slot->offset, (unsigned long long)ack->received,
                    (unsigned long long)size);
            rc = -1;
        }
        if (ack->received > acked)
            acked = ack->received;
        inflight_clear(slot);
        protobuf_c_message_free_unpacked(&ack->base, NULL);
    }
    return rc;
}

/* Puts data as a new document, as `passerelle docs put` does: for at most
 * one chunk, its SHA-256 and an upload.begin that carries the bytes (one
 * request stores and commits them); otherwise upload.begin, the chunks
 * with the session's window in flight, hashed as they go, upload.commit
 * naming the SHA-256 (hash_first: the SHA-256 first, named by the begin).
 * 0 or -1. */
static int service_put(client_t *client, const char *name, const uint8_t *data, size_t size,
                       bool hash_first, stored_t *out, unsigned *window_out)
{
    char sha[65] = "";
    bool trailing = size > WHOLE_MAX && !hash_first;
    if (!trailing)
        sha_hex(data, size, sha);

    Passerelle__UploadBeginRequest begin = PASSERELLE__UPLOAD_BEGIN_REQUEST__INIT;
    begin.title = (char *)name;
    begin.has_kind = true;
    begin.kind = PASSERELLE__DOCUMENT_KIND__DOCUMENT_STUDY;
    begin.has_theme = true;
    begin.theme = 1;
    begin.has_size = true;
    begin.size = size;
    begin.sha256 = trailing ? NULL : sha;
    begin.filename = (char *)name;
    begin.media_type = "application/octet-stream";
    if (size <= WHOLE_MAX) {
        begin.has_data = true;
        begin.data.data = (uint8_t *)data;
        begin.data.len = size;
    }
    Passerelle__UploadSession *session = (Passerelle__UploadSession *)call_ok(
        client, "upload.begin", &begin.base, &passerelle__upload_session__descriptor);
    if (!session)
        return -1;
    if (window_out)
        *window_out = inflight_window(session->has_window, session->window);
    int rc = 0;
    const char *document = session->document;
    Passerelle__UploadSession *done = NULL;
    if (!document || !*document) {
        if (!session->upload_id || (size > 0 && session->chunk_max == 0)) {
            fprintf(stderr, "passerelle-docbench: upload.begin: no upload_id or chunk_max\n");
            rc = -1;
        }
        sha256_t *hash = NULL;
        if (rc == 0 && trailing && !(hash = sha256_new())) {
            fprintf(stderr, "passerelle-docbench: out of memory for a SHA-256\n");
            rc = -1;
        }
        if (rc == 0 && size > 0)
            rc = service_chunks(client, data, size, session, hash);
        if (rc == 0 && hash && sha256_final_hex(hash, sha) < 0) {
            fprintf(stderr, "passerelle-docbench: SHA-256 of %s failed\n", name);
            rc = -1;
        }
        sha256_destroy(&hash);
        if (rc == 0) {
            Passerelle__UploadCommitRequest commit = PASSERELLE__UPLOAD_COMMIT_REQUEST__INIT;
            commit.upload_id = session->upload_id;
            commit.sha256 = trailing ? sha : NULL;
            done = (Passerelle__UploadSession *)call_ok(client, "upload.commit", &commit.base,
                                                        &passerelle__upload_session__descriptor);
            document = done ? done->document : NULL;
        }
    }
    if (rc == 0 && (!document || !*document)) {
        fprintf(stderr, "passerelle-docbench: %s: no document\n",
                session->document ? "upload.begin" : "upload.commit");
        rc = -1;
    } else if (rc == 0) {
        snprintf(out->id, sizeof out->id, "%s", document);
        memcpy(out->sha, sha, sizeof out->sha);
        out->size = size;
    }
    if (done)
        protobuf_c_message_free_unpacked(&done->base, NULL);
    protobuf_c_message_free_unpacked(&session->base, NULL);
    return rc;
}

/* Puts count files of size bytes (at most one chunk each) as new
 * documents, each whole in its upload.begin, with up to window of them in
 * flight on the one connection: a client sending several documents at
 * once, whose writes the service then commits together (one Redis fsync
 * for the group, server.h). Each begin carries its own idempotency key. 0
 * or -1. */
static int service_put_many(client_t *client, const char *tag, const uint8_t *data, int count,
                            size_t size, unsigned window)
{
    inflight_t slots[INFLIGHT_MAX];
    memset(slots, 0, sizeof slots);
    char(*shas)[65] = calloc((size_t)window, sizeof *shas);
    char(*names)[64] = calloc((size_t)window, sizeof *names);
    if (!shas || !names) {
        free(shas);
        free(names);
        return -1;
    }
    int next = 0, done = 0, rc = 0;
    while (rc == 0 && done < count) {
        inflight_t *slot;
        while (next < count && (slot = inflight_free_slot(slots, window))) {
            size_t at = (size_t)(slot - slots);
            const uint8_t *bytes = data + (size_t)next * size;
            sha_hex(bytes, size, shas[at]);
            snprintf(names[at], sizeof names[at], "%s-%d.many", tag, next);
            Passerelle__UploadBeginRequest begin = PASSERELLE__UPLOAD_BEGIN_REQUEST__INIT;
            begin.title = names[at];
            begin.has_kind = begin.has_theme = begin.has_size = begin.has_data = true;
            begin.kind = PASSERELLE__DOCUMENT_KIND__DOCUMENT_STUDY;
            begin.theme = 1;
            begin.size = size;
            begin.sha256 = shas[at];
            begin.filename = names[at];
            begin.media_type = "application/octet-stream";
            begin.data.data = (uint8_t *)bytes;
            begin.data.len = size;
            char key[ID_LEN];
            id_new('K', key);
            slot->used = true;
            id_new('Q', slot->request_id);
            slot->offset = (uint64_t)next++;
            if (client_send_request(client, slot->request_id, "upload.begin", &begin.base, key) !=
                0) {
                fprintf(stderr, "passerelle-docbench: upload.begin: cannot send\n");
                rc = -1;
                break;
            }
        }
        if (rc)
            break;
        Passerelle__UploadSession *made = (Passerelle__UploadSession *)flight_reply(
            client, "upload.begin", slots, window, &passerelle__upload_session__descriptor, &slot);
        if (!made)
            break;
        if (!made->document || !*made->document) {
            fprintf(stderr, "passerelle-docbench: upload.begin of file %llu: no document\n",
                    (unsigned long long)slot->offset);
            rc = -1;
        }
        protobuf_c_message_free_unpacked(&made->base, NULL);
        inflight_clear(slot);
        done++;
    }
    free(shas);
    free(names);
    return rc == 0 && done == count ? 0 : -1;
}

/* Gets the latest version of a document, as `passerelle docs get` does:
 * document.read by ranges, the first one alone (it says which version, its
 * size, its SHA-256 and the window), then up to the window in flight, the
 * bytes hashed in order as they come and checked at the end. The bytes are
 * not kept. 0 or -1. */
static int service_get(client_t *client, const stored_t *doc)
{
    Passerelle__DocumentReadRequest req = PASSERELLE__DOCUMENT_READ_REQUEST__INIT;
    req.id = (char *)doc->id;
    req.has_offset = req.has_length = true;
    req.offset = 0;
    req.length = READ_LENGTH;
    Passerelle__DocumentReadReply *first = (Passerelle__DocumentReadReply *)call_ok(
        client, "document.read", &req.base, &passerelle__document_read_reply__descriptor);
    if (!first)
        return -1;
    sha256_t *hash = sha256_new();
    if (!hash) {
        fprintf(stderr, "passerelle-docbench: document.read %s: SHA-256 unavailable\n", doc->id);
        protobuf_c_message_free_unpacked(&first->base, NULL);
        return -1;
    }
    uint32_t version = first->version;
    uint64_t size = first->size, done = first->data.len;
    unsigned window = inflight_window(first->has_window, first->window);
    char expected[65];
    snprintf(expected, sizeof expected, "%s", first->sha256 ? first->sha256 : "");
    sha256_update(hash, first->data.data, first->data.len);
    int rc = first->offset == 0 && (done > 0 || size == 0) ? 0 : -1;
    protobuf_c_message_free_unpacked(&first->base, NULL);

    inflight_t slots[INFLIGHT_MAX];
    memset(slots, 0, sizeof slots);
    uint64_t next = done;
    while (rc == 0 && done < size) {
        inflight_t *slot;
        while ((slot = inflight_take(slots, window, &next, size, READ_LENGTH))) {
            req.has_version = true;
            req.version = version;
            req.offset = slot->offset;
            req.length = (uint32_t)slot->len;
            if (client_send_request(client, slot->request_id, "document.read", &req.base, NULL) !=
                0) {
                fprintf(stderr, "passerelle-docbench: document.read: cannot send\n");
                rc = -1;
                break;
            }
        }
        if (rc)
            break;
        Passerelle__DocumentReadReply *range = (Passerelle__DocumentReadReply *)flight_reply(
            client, "document.read", slots, window, &passerelle__document_read_reply__descriptor,
            &slot);
        if (!range) {
            rc = -1;
            break;
        }
        if (range->offset != slot->offset || range->version != version ||
            range->data.len != slot->len) {
            fprintf(stderr,
                    "passerelle-docbench: document.read %s: asked for %zu bytes at %llu of "
                    "version %u, got %zu at %llu of %u\n",
                    doc->id, slot->len, (unsigned long long)slot->offset, version, range->data.len,
                    (unsigned long long)range->offset, range->version);
            protobuf_c_message_free_unpacked(&range->base, NULL);
            rc = -1;
            break;
        }
        slot->range = range;
        for (bool hashed = true; hashed;) {
            hashed = false;
            for (unsigned i = 0; i < window; i++)
                if (slots[i].used && slots[i].range && slots[i].offset == done) {
                    sha256_update(hash, slots[i].range->data.data, slots[i].range->data.len);
                    done += slots[i].range->data.len;
                    inflight_clear(&slots[i]);
                    hashed = true;
                }
        }
    }
    for (unsigned i = 0; i < window; i++)
        inflight_clear(&slots[i]);
    char got[SHA256_HEX_LEN];
    if (rc == 0 && sha256_final_hex(hash, got) < 0)
        snprintf(got, sizeof got, "(SHA-256 failed)");
    sha256_destroy(&hash);
    if (rc != 0)
        return rc;
    if (done != doc->size || size != doc->size || strcmp(got, expected) != 0 ||
        strcmp(got, doc->sha) != 0) {
        fprintf(stderr,
                "passerelle-docbench: document.read %s: %llu bytes with SHA-256 %s, expected "
                "%llu with %s\n",
                doc->id, (unsigned long long)done, got, (unsigned long long)doc->size, doc->sha);
        return -1;
    }
    return 0;
}

/* ====================================================================== */
/* Measuring                                                              */
/* ====================================================================== */

typedef struct {
    const options_t *opt;
    client_t *client;
    bare_t bare;
    const char *volume; /* the service's PASSERELLE_DOCSTORE_DIR */
    figure_t figs[FIG_COUNT];
    uint64_t next_seed;
    unsigned window; /* the service's, as its upload.begin replies say */
} run_t;

/* Where the service keeps the blob of this SHA-256 (blobs.h's layout). */
static void blob_path(const run_t *run, const char *sha, char *out, size_t out_size)
{
    snprintf(out, out_size, "%s/blobs/%.2s/%s", run->volume, sha, sha);
}

static void blob_drop(const run_t *run, const char *sha)
{
    char path[PATH_MAX], blocks[PATH_MAX + 8];
    blob_path(run, sha, path, sizeof path);
    snprintf(blocks, sizeof blocks, "%s.blocks", path);
    cache_drop(path);
    cache_drop(blocks);
}

/* One round over count files of size bytes each, all in data (count *
 * size bytes, freshly filled): the four figures from `fig` on (bare put,
 * put, bare get, get), and when many is not NULL (count other files of the
 * same size), FIG_SMALL_PUT_MANY: those put with the service's window of
 * them in flight. 0 or -1. */
static int measure_round(run_t *run, int fig, const char *tag, const uint8_t *data, int count,
                         size_t size, const uint8_t *many)
{
    const options_t *opt = run->opt;
    stored_t *docs = calloc((size_t)count, sizeof *docs);
    if (!docs)
        return -1;
    int rc = -1;
    char name[64];
    uint64_t bytes = (uint64_t)count * size;

    /* bare put, on the service's vCPU */
    if (bench_pin(opt->pin, opt->cpu_service) != 0)
        goto done;
    double start = bench_now_s();
    for (int i = 0; i < count; i++) {
        snprintf(name, sizeof name, "%s-%d", tag, i);
        if (bare_put(&run->bare, name, data + (size_t)i * size, size) != 0)
            goto done;
    }
    figure_add(&run->figs[fig], bytes, (uint64_t)count, bench_now_s() - start);

    /* put through the service, from the bench's vCPU */
    if (bench_pin(opt->pin, opt->cpu_bench) != 0)
        goto done;
    start = bench_now_s();
    for (int i = 0; i < count; i++) {
        snprintf(name, sizeof name, "%s-%d.bin", tag, i);
        if (service_put(run->client, name, data + (size_t)i * size, size, opt->hash_first, &docs[i],
                        &run->window) != 0)
            goto done;
    }
    figure_add(&run->figs[fig + 1], bytes, (uint64_t)count, bench_now_s() - start);
    if (many) {
        start = bench_now_s();
        if (service_put_many(run->client, tag, many, count, size, run->window) != 0)
            goto done;
        figure_add(&run->figs[FIG_SMALL_PUT_MANY], bytes, (uint64_t)count, bench_now_s() - start);
    }

    /* bare get of the service's own blob files */
    if (bench_pin(opt->pin, opt->cpu_service) != 0)
        goto done;
    if (opt->cold)
        for (int i = 0; i < count; i++)
            blob_drop(run, docs[i].sha);
    start = bench_now_s();
    for (int i = 0; i < count; i++) {
        char path[PATH_MAX];
        blob_path(run, docs[i].sha, path, sizeof path);
        if (bare_get(&run->bare, path, size) != 0)
            goto done;
    }
    figure_add(&run->figs[fig + 2], bytes, (uint64_t)count, bench_now_s() - start);

    /* get through the service */
    if (opt->cold)
        for (int i = 0; i < count; i++)
            blob_drop(run, docs[i].sha);
    if (bench_pin(opt->pin, opt->cpu_bench) != 0)
        goto done;
    start = bench_now_s();
    for (int i = 0; i < count; i++)
        if (service_get(run->client, &docs[i]) != 0)
            goto done;
    figure_add(&run->figs[fig + 3], bytes, (uint64_t)count, bench_now_s() - start);
    rc = 0;
done:
    free(docs);
    return rc;
}

/* Fills count files of size bytes, each from a seed of its own. */
static void fill_files(run_t *run, uint8_t *data, int count, size_t size)
{
    for (int i = 0; i < count; i++)
        bytes_fill(++run->next_seed, data + (size_t)i * size, size);
}

static int measure(run_t *run)
{
    const options_t *opt = run->opt;
    size_t large = (size_t)opt->large_mib * 1024 * 1024;
    size_t small = (size_t)opt->small_kib * 1024;
    int small_rounds = opt->small_files < SMALL_ROUNDS ? opt->small_files : SMALL_ROUNDS;
    int per_round = (opt->small_files + small_rounds - 1) / small_rounds;
    size_t buffer = large > (size_t)per_round * small ? large : (size_t)per_round * small;
    uint8_t *data = malloc(buffer);
    uint8_t *many = malloc((size_t)per_round * small);
    if (!data || !many) {
        fprintf(stderr, "passerelle-docbench: out of memory for %zu bytes\n", buffer);
        free(data);
        free(many);
        return -1;
    }
    int rc = 0;
    char tag[32];
    /* One warm-up file of each size, unmeasured: connections, the CURVE
     * handshake, the service's first Redis calls and folders. */
    fill_files(run, data, 1, small);
    run_t warm = *run;
    if (measure_round(&warm, 0, "warm", data, 1, small, NULL) != 0)
        rc = -1;
    run->next_seed = warm.next_seed;
    run->window = warm.window;

    for (int r = 0; rc == 0 && r < opt->large_rounds; r++) {
        fill_files(run, data, 1, large);
        snprintf(tag, sizeof tag, "large%d", r);
        rc = measure_round(run, FIG_LARGE_PUT_BARE, tag, data, 1, large, NULL);
    }
    for (int r = 0, done = 0; rc == 0 && r < small_rounds; r++) {
        int count = (int)((int64_t)opt->small_files * (r + 1) / small_rounds) - done;
        fill_files(run, data, count, small);
        fill_files(run, many, count, small);
        snprintf(tag, sizeof tag, "small%d", r);
        rc = measure_round(run, FIG_SMALL_PUT_BARE, tag, data, count, small, many);
        done += count;
    }
    free(data);
    free(many);
    return rc;
}

/* ====================================================================== */
/* Report                                                                 */
/* ====================================================================== */

static void report(const run_t *run)
{
    const options_t *opt = run->opt;
    const figure_t *f = run->figs;
    struct {
        const char *name, *what;
        int fig, bare;
        double aim;
    } ratios[] = {
        {"large_put", "put, large", FIG_LARGE_PUT, FIG_LARGE_PUT_BARE, AIM_PUT},
        {"large_get", "get, large", FIG_LARGE_GET, FIG_LARGE_GET_BARE, AIM_GET},
        {"small_put", "put, small", FIG_SMALL_PUT, FIG_SMALL_PUT_BARE, AIM_PUT},
        {"small_get", "get, small", FIG_SMALL_GET, FIG_SMALL_GET_BARE, AIM_GET},
        {"small_put_many", "put, small, window in flight", FIG_SMALL_PUT_MANY, FIG_SMALL_PUT_BARE,
         AIM_PUT},
    };
    const size_t n_ratios = sizeof ratios / sizeof ratios[0];

    printf("passerelle-docbench: %d x %d MiB, %d x %d KiB; window %u; large put's SHA-256 %s; "
           "page cache %s",
           opt->large_rounds, opt->large_mib, opt->small_files, opt->small_kib, run->window,
           opt->hash_first ? "first" : "trailing",
           opt->cold ? "cold (dropped before each read)" : "warm (files just written)");
    if (opt->pin)
        printf("; vCPUs: bench %d, service, redis-server and bare limits %d\n", opt->cpu_bench,
               opt->cpu_service);
    else
        printf("; not pinned\n");
    printf("%-46s %9s %9s %9s %9s\n", "", "MiB", "seconds", "MiB/s", "files/s");
    for (int i = 0; i < FIG_COUNT; i++)
        printf("%-46s %9.1f %9.3f %9.1f %9.1f\n", f[i].label,
               (double)f[i].bytes / (1024.0 * 1024.0), f[i].seconds, mib_per_s(&f[i]),
               files_per_s(&f[i]));
    json_t *json_ratios = json_object();
    for (size_t i = 0; i < n_ratios; i++) {
        double value = bench_ratio(mib_per_s(&f[ratios[i].fig]), mib_per_s(&f[ratios[i].bare]));
        printf("%-29s passerelle / bare limit: %5.2f  (aim >= %.2f: %s)\n", ratios[i].what, value,
               ratios[i].aim, bench_verdict(value >= ratios[i].aim));
        json_object_set_new(json_ratios, ratios[i].name, json_real(value));
    }

    json_t *results = json_object();
    for (int i = 0; i < FIG_COUNT; i++)
        json_object_set_new(results, f[i].name,
                            json_pack("{s:f, s:f, s:f, s:I, s:I}", "mib_per_s", mib_per_s(&f[i]),
                                      "files_per_s", files_per_s(&f[i]), "seconds", f[i].seconds,
                                      "bytes", (json_int_t)f[i].bytes, "files",
                                      (json_int_t)f[i].files));
    /* "o" hands results and ratios over to root, even if packing fails. */
    json_t *root = json_pack(
        "{s:s, s:i, s:i, s:i, s:i, s:i, s:s, s:s, s:b, s:{s:i, s:i}, s:{s:f, s:f}, s:o, "
        "s:o}",
        "bench", "docstore", "large_mib", opt->large_mib, "large_rounds", opt->large_rounds,
        "small_files", opt->small_files, "small_kib", opt->small_kib, "window", (int)run->window,
        "large_put_sha256", opt->hash_first ? "first" : "trailing", "page_cache",
        opt->cold ? "cold" : "warm", "pinned", opt->pin, "cpus", "bench", opt->cpu_bench, "service",
        opt->cpu_service, "aims", "put", AIM_PUT, "get", AIM_GET, "results", results, "ratios",
        json_ratios);
    bench_print_json(root);
}

/* ====================================================================== */
/* main                                                                   */
/* ====================================================================== */

int main(int argc, char *argv[])
{
    options_t opt;
    if (parse_options(argc, argv, &opt) != 0) {
        usage(stderr);
        return 2;
    }
    bench_init("passerelle-docbench", "docbench");
    /* The client side as `passerelle docs` runs it. */
    memtune_for_chunks();
    if (sodium_init() < 0) {
        fprintf(stderr, "passerelle-docbench: libsodium cannot start\n");
        return 1;
    }

    run_t run;
    memset(&run, 0, sizeof run);
    run.opt = &opt;
    run.bare.blobs_fd = -1;
    const struct {
        const char *name, *label;
    } names[FIG_COUNT] = {
        [FIG_LARGE_PUT_BARE] = {"large_put_bare", "large put, bare (write+sha+fsync+rename)"},
        [FIG_LARGE_PUT] = {"large_put", "large put, passerelle (chunks in flight)"},
        [FIG_LARGE_GET_BARE] = {"large_get_bare", "large get, bare (read of the blob)"},
        [FIG_LARGE_GET] = {"large_get", "large get, passerelle (ranges in flight)"},
        [FIG_SMALL_PUT_BARE] = {"small_put_bare", "small put, bare (write+sha+fsync+rename)"},
        [FIG_SMALL_PUT] = {"small_put", "small put, passerelle (whole in begin)"},
        [FIG_SMALL_GET_BARE] = {"small_get_bare", "small get, bare (read of the blob)"},
        [FIG_SMALL_GET] = {"small_get", "small get, passerelle (document.read)"},
        [FIG_SMALL_PUT_MANY] = {"small_put_many", "small put, passerelle, window of files"},
    };
    for (int i = 0; i < FIG_COUNT; i++) {
        run.figs[i].name = names[i].name;
        run.figs[i].label = names[i].label;
    }

    int rc = 1;
    bench_stack_t stack;
    if (bench_stack_init(&stack, "docbench") != 0)
        return 1;
    char volume[1024], bare_dir[1024];
    snprintf(volume, sizeof volume, "%s/volume", stack.dir);
    snprintf(bare_dir, sizeof bare_dir, "%s/bare", stack.dir);
    run.volume = volume;

    char volume_env[1100], max_env[64];
    snprintf(volume_env, sizeof volume_env, "PASSERELLE_DOCSTORE_DIR=%s", volume);
    uint64_t large = (uint64_t)opt.large_mib * 1024 * 1024;
    snprintf(max_env, sizeof max_env, "PASSERELLE_DOCSTORE_MAX_BYTES=%llu",
             (unsigned long long)(large > DEFAULT_MAX_BYTES ? large : DEFAULT_MAX_BYTES));
    char *env[] = {volume_env, max_env, NULL};
    if (bare_open(&run.bare, bare_dir) != 0 ||
        bench_stack_start(&stack, "docstore", opt.pin, opt.cpu_service, opt.cpu_service, env) != 0)
        goto done;

    /* The client, and so the ZeroMQ I/O thread, on the bench's vCPU. */
    if (bench_pin(opt.pin, opt.cpu_bench) != 0)
        goto done;
    run.client =
        harness_client(stack.service.endpoint, stack.keys, "metropole", CALL_TIMEOUT_MS, 0);
    if (!run.client || measure(&run) != 0)
        goto done;
    report(&run);
    rc = 0;
done:
    client_destroy(&run.client);
    bool service_started = stack.service_up;
    if (bench_stack_stop(&stack) != 0)
        rc = 1;
    bare_close(&run.bare);
    if (rc != 0 && service_started)
        fprintf(stderr,
                "passerelle-docbench: failed; the service's log is %s (kept with "
                "PASSERELLE_TEST_KEEP=1)\n",
                stack.service.log_path);
    bench_stack_remove(&stack);
    return rc;
}
