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
 *     costs. Passerelle's put is what `passerelle docs put` does: SHA-256
 *     of the file on the client, upload.begin, one upload.chunk at a time
 *     of chunk_max bytes, upload.commit.
 *   - get: the bare limit is a plain read(2), in chunks of the same size, of
 *     the blob file the service itself stored for those bytes. Passerelle's
 *     get is what `passerelle docs get` does, document.read by 1 MiB ranges,
 *     hashed as they come and checked against the reply's SHA-256 and size,
 *     except that the bytes are not written to a local file.
 * Page cache: both reads of a file find it in the same state. By default it
 * is warm (the file was just written and fsynced, so its pages are clean and
 * cached); with --cold, every blob file (and its block list) is dropped from
 * the cache (posix_fadvise DONTNEED) before each of the two reads.
 *
 * The sizes: one large file (64 MiB by default, one new file per round) and
 * many small ones (1,000 x 50 KiB), every file with bytes of its own so that
 * nothing is deduplicated. The figures are measured in interleaved rounds
 * (bare put, service put, bare get, service get), so that a drift of this
 * shared machine's disk weighs on the limits and on Passerelle alike.
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
#include "memtune.h"

#include "docstore.pb-c.h"
#include "envelope.pb-c.h"
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
    int cpu_bench, cpu_service;
} options_t;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: passerelle-docbench [--large-mib M] [--large-rounds R] [--small-files N]\n"
            "                           [--small-kib K] [--cold] [--cpus B,S | --no-pin]\n"
            "  --large-mib M     size of the large file, MiB (default %d)\n"
            "  --large-rounds R  large files put and got, each new (default %d)\n"
            "  --small-files N   small files put and got (default %d)\n"
            "  --small-kib K     size of a small file, KiB (default %d)\n"
            "  --cold            drop each file from the page cache before each read\n"
            "                    (default: warm, both reads find it cached)\n"
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
    if (reply->status != PASSERELLE__STATUS__STATUS_OK) {
        fprintf(stderr, "passerelle-docbench: %s: status %d: %s (field: %s)\n", type, reply->status,
                reply->message ? reply->message : "", reply->field ? reply->field : "");
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

/* A stored version: the document that holds it and its SHA-256. */
typedef struct {
    char id[64];
    char sha[65];
    uint64_t size;
} stored_t;

/* Puts data as a new document, as `passerelle docs put` does: SHA-256 on
 * the client, upload.begin, one chunk in flight (the reply is the credit
 * for the next), upload.commit. 0 or -1. */
static int service_put(client_t *client, const char *name, const uint8_t *data, size_t size,
                       stored_t *out)
{
    char sha[65];
    sha_hex(data, size, sha);

    Passerelle__UploadBeginRequest begin = PASSERELLE__UPLOAD_BEGIN_REQUEST__INIT;
    begin.title = (char *)name;
    begin.has_kind = true;
    begin.kind = PASSERELLE__DOCUMENT_KIND__DOCUMENT_STUDY;
    begin.has_theme = true;
    begin.theme = 1;
    begin.has_size = true;
    begin.size = size;
    begin.sha256 = sha;
    begin.filename = (char *)name;
    begin.media_type = "application/octet-stream";
    Passerelle__UploadSession *session = (Passerelle__UploadSession *)call_ok(
        client, "upload.begin", &begin.base, &passerelle__upload_session__descriptor);
    if (!session)
        return -1;
    int rc = 0;
    if (!session->upload_id || (size > 0 && session->chunk_max == 0)) {
        fprintf(stderr, "passerelle-docbench: upload.begin: no upload_id or chunk_max\n");
        rc = -1;
    }
    uint64_t offset = session->received;
    while (rc == 0 && offset < size) {
        size_t len = size - offset < session->chunk_max ? (size_t)(size - offset)
                                                        : (size_t)session->chunk_max;
        Passerelle__UploadChunkRequest chunk = PASSERELLE__UPLOAD_CHUNK_REQUEST__INIT;
        chunk.upload_id = session->upload_id;
        chunk.has_offset = true;
        chunk.offset = offset;
        chunk.has_data = true;
        chunk.data.data = (uint8_t *)data + offset;
        chunk.data.len = len;
        Passerelle__UploadSession *ack = (Passerelle__UploadSession *)call_ok(
            client, "upload.chunk", &chunk.base, &passerelle__upload_session__descriptor);
        if (!ack) {
            rc = -1;
            break;
        }
        if (ack->received <= offset || ack->received > size) {
            fprintf(stderr,
                    "passerelle-docbench: upload.chunk at offset %llu: received %llu of %llu\n",
                    (unsigned long long)offset, (unsigned long long)ack->received,
                    (unsigned long long)size);
            rc = -1;
        }
        offset = ack->received;
        protobuf_c_message_free_unpacked(&ack->base, NULL);
    }
    if (rc == 0) {
        Passerelle__UploadCommitRequest commit = PASSERELLE__UPLOAD_COMMIT_REQUEST__INIT;
        commit.upload_id = session->upload_id;
        Passerelle__UploadSession *done = (Passerelle__UploadSession *)call_ok(
            client, "upload.commit", &commit.base, &passerelle__upload_session__descriptor);
        if (!done || !done->document || !*done->document) {
            fprintf(stderr, "passerelle-docbench: upload.commit: no document\n");
            rc = -1;
        } else {
            snprintf(out->id, sizeof out->id, "%s", done->document);
            memcpy(out->sha, sha, sizeof out->sha);
            out->size = size;
        }
        if (done)
            protobuf_c_message_free_unpacked(&done->base, NULL);
    }
    protobuf_c_message_free_unpacked(&session->base, NULL);
    return rc;
}

/* Gets the latest version of a document, as `passerelle docs get` does:
 * document.read by ranges, the first one saying which version and its
 * SHA-256, the bytes hashed as they come and checked at the end. The bytes
 * are not kept. 0 or -1. */
static int service_get(client_t *client, const stored_t *doc)
{
    sha256_t *hash = sha256_new();
    if (!hash) {
        fprintf(stderr, "passerelle-docbench: document.read %s: SHA-256 unavailable\n", doc->id);
        return -1;
    }
    uint64_t done = 0, size = 0;
    uint32_t version = 0;
    char expected[65] = "";
    int rc = 0;
    for (bool first = true; rc == 0 && (first || done < size); first = false) {
        Passerelle__DocumentReadRequest req = PASSERELLE__DOCUMENT_READ_REQUEST__INIT;
        req.id = (char *)doc->id;
        if (!first) {
            req.has_version = true;
            req.version = version;
        }
        req.has_offset = true;
        req.offset = done;
        req.has_length = true;
        req.length = READ_LENGTH;
        Passerelle__DocumentReadReply *reply = (Passerelle__DocumentReadReply *)call_ok(
            client, "document.read", &req.base, &passerelle__document_read_reply__descriptor);
        if (!reply) {
            rc = -1;
            break;
        }
        if (first) {
            version = reply->version;
            size = reply->size;
            snprintf(expected, sizeof expected, "%s", reply->sha256 ? reply->sha256 : "");
        }
        if (reply->offset != done || reply->version != version ||
            (done + reply->data.len < size && reply->data.len == 0)) {
            fprintf(stderr,
                    "passerelle-docbench: document.read %s: asked for offset %llu of "
                    "version %u, got %zu bytes at %llu of %u\n",
                    doc->id, (unsigned long long)done, version, reply->data.len,
                    (unsigned long long)reply->offset, reply->version);
            rc = -1;
        } else {
            sha256_update(hash, reply->data.data, reply->data.len);
            done += reply->data.len;
        }
        protobuf_c_message_free_unpacked(&reply->base, NULL);
    }
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
 * put, bare get, get). 0 or -1. */
static int measure_round(run_t *run, int fig, const char *tag, const uint8_t *data, int count,
                         size_t size)
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
        if (service_put(run->client, name, data + (size_t)i * size, size, &docs[i]) != 0)
            goto done;
    }
    figure_add(&run->figs[fig + 1], bytes, (uint64_t)count, bench_now_s() - start);

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
    if (!data) {
        fprintf(stderr, "passerelle-docbench: out of memory for %zu bytes\n", buffer);
        return -1;
    }
    int rc = 0;
    char tag[32];
    /* One warm-up file of each size, unmeasured: connections, the CURVE
     * handshake, the service's first Redis calls and folders. */
    fill_files(run, data, 1, small);
    run_t warm = *run;
    if (measure_round(&warm, 0, "warm", data, 1, small) != 0)
        rc = -1;
    run->next_seed = warm.next_seed;

    for (int r = 0; rc == 0 && r < opt->large_rounds; r++) {
        fill_files(run, data, 1, large);
        snprintf(tag, sizeof tag, "large%d", r);
        rc = measure_round(run, FIG_LARGE_PUT_BARE, tag, data, 1, large);
    }
    for (int r = 0, done = 0; rc == 0 && r < small_rounds; r++) {
        int count = (int)((int64_t)opt->small_files * (r + 1) / small_rounds) - done;
        fill_files(run, data, count, small);
        snprintf(tag, sizeof tag, "small%d", r);
        rc = measure_round(run, FIG_SMALL_PUT_BARE, tag, data, count, small);
        done += count;
    }
    free(data);
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
        int fig;
        double aim;
    } ratios[] = {
        {"large_put", "put, large", FIG_LARGE_PUT, AIM_PUT},
        {"large_get", "get, large", FIG_LARGE_GET, AIM_GET},
        {"small_put", "put, small", FIG_SMALL_PUT, AIM_PUT},
        {"small_get", "get, small", FIG_SMALL_GET, AIM_GET},
    };
    const size_t n_ratios = sizeof ratios / sizeof ratios[0];

    printf("passerelle-docbench: %d x %d MiB, %d x %d KiB; page cache %s", opt->large_rounds,
           opt->large_mib, opt->small_files, opt->small_kib,
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
        double value = bench_ratio(mib_per_s(&f[ratios[i].fig]), mib_per_s(&f[ratios[i].fig - 1]));
        printf("%-10s passerelle / bare limit: %5.2f  (aim >= %.2f: %s)\n", ratios[i].what, value,
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
        "{s:s, s:i, s:i, s:i, s:i, s:s, s:b, s:{s:i, s:i}, s:{s:f, s:f}, s:o, s:o}", "bench",
        "docstore", "large_mib", opt->large_mib, "large_rounds", opt->large_rounds, "small_files",
        opt->small_files, "small_kib", opt->small_kib, "page_cache", opt->cold ? "cold" : "warm",
        "pinned", opt->pin, "cpus", "bench", opt->cpu_bench, "service", opt->cpu_service, "aims",
        "put", AIM_PUT, "get", AIM_GET, "results", results, "ratios", json_ratios);
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
        [FIG_LARGE_PUT] = {"large_put", "large put, passerelle (begin/chunk/commit)"},
        [FIG_LARGE_GET_BARE] = {"large_get_bare", "large get, bare (read of the blob)"},
        [FIG_LARGE_GET] = {"large_get", "large get, passerelle (document.read)"},
        [FIG_SMALL_PUT_BARE] = {"small_put_bare", "small put, bare (write+sha+fsync+rename)"},
        [FIG_SMALL_PUT] = {"small_put", "small put, passerelle (begin/chunk/commit)"},
        [FIG_SMALL_GET_BARE] = {"small_get_bare", "small get, bare (read of the blob)"},
        [FIG_SMALL_GET] = {"small_get", "small get, passerelle (document.read)"},
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
