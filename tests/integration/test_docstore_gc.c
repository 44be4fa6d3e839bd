/* The document store's housekeeping, with the real binary ticking every
 * 100 ms: the garbage collector keeps a blob no version refers to until its
 * grace has passed, then removes it (a blob planted on the volume, and one
 * left by taking a document's reference out of Redis by hand); it never
 * removes the blob of a withdrawn version. The sweep removes an abandoned
 * upload (session, index entry, temporary file) once its time to live has
 * passed, while the service runs, and leaves alone an upload that keeps
 * sending. The tick records a live upload's progress in its session, which
 * is where the upload resumes after a reboot.
 *
 * Waits are bounded polls, never assertions on durations: "kept before the
 * grace" is checked against the first-seen time the collector recorded. */
#include "harness.h"

#include "docstore.pb-c.h"
#include "envelope.pb-c.h"
#include "store.h"

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define OK        PASSERELLE__STATUS__STATUS_OK
#define NOT_FOUND PASSERELLE__STATUS__STATUS_NOT_FOUND
#define GRACE_S   2
#define TTL_S     3
#define WAIT_MS   30000
#define POLL_MS   100

typedef struct {
    char *dir;
    char keys[512];
    char volume[600];
    char volume_env[700];
    harness_redis_t redis;
    harness_service_t service;
    store_t *store; /* the test's own look at Redis */
    client_t *owner;
} fixture_t;

static fixture_t *F;

/* --- helpers ---------------------------------------------------------------- */

static uint8_t *pattern(size_t len, unsigned seed)
{
    return harness_pattern(len, seed, 11);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void blob_path(const char *sha, const char *suffix, char *out, size_t size)
{
    harness_doc_blob_path(F->volume, sha, suffix, out, size);
}

static bool blob_exists(const char *sha)
{
    char path[1024];
    blob_path(sha, "", path, sizeof path);
    return access(path, F_OK) == 0;
}

static bool tmp_exists(const char *upload)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/tmp/%s", F->volume, upload);
    return access(path, F_OK) == 0;
}

/* ZSCORE key member: the score, or -1 when not a member. */
static double zscore(const char *key, const char *member)
{
    redisReply *r = NULL;
    assert_int_equal(store_command(F->store, &r, "ZSCORE %s %s", key, member), STORE_OK);
    double score = r->type == REDIS_REPLY_STRING ? atof(r->str) : -1;
    assert_true(r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_NIL);
    freeReplyObject(r);
    return score;
}

static long long exists(const char *key)
{
    redisReply *r = NULL;
    assert_int_equal(store_command(F->store, &r, "EXISTS %s", key), STORE_OK);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    long long n = r->integer;
    freeReplyObject(r);
    return n;
}

/* Writes a well-formed blob (bytes and block list) no version refers to. */
static void plant_blob(const char *bytes, char sha[65])
{
    harness_doc_plant_blob(F->volume, bytes, strlen(bytes), sha);
}

/* --- calls -------------------------------------------------------------------- */

static char *begin(const char *title, size_t size, const char *sha)
{
    Passerelle__UploadBeginRequest req;
    harness_doc_begin_request(&req, title, size, sha, 1);
    return harness_doc_begin(F->owner, &req, NULL);
}

static Passerelle__UploadChunkRequest chunk_request(const char *upload, const uint8_t *data,
                                                    size_t offset, size_t len)
{
    Passerelle__UploadChunkRequest req = PASSERELLE__UPLOAD_CHUNK_REQUEST__INIT;
    req.upload_id = (char *)upload;
    req.has_offset = req.has_data = true;
    req.offset = offset;
    req.data.data = (uint8_t *)data + offset;
    req.data.len = len;
    return req;
}

static void chunk(const char *upload, const uint8_t *data, size_t offset, size_t len)
{
    assert_int_equal(harness_doc_chunk(F->owner, upload, offset, data + offset, len), offset + len);
}

static char *commit(const char *upload)
{
    return harness_doc_commit(F->owner, upload);
}

static char *put(const char *title, const uint8_t *data, size_t len, char sha[65])
{
    Passerelle__UploadBeginRequest req;
    harness_doc_begin_request(&req, title, len, NULL, 1);
    return harness_doc_put(F->owner, &req, data, len, sha);
}

static void read_back(const char *id, const uint8_t *data, size_t len)
{
    Passerelle__DocumentReadReply *r = harness_doc_read(F->owner, id, 0, 0, 0);
    assert_int_equal(r->data.len, len);
    assert_memory_equal(r->data.data, data, len);
    passerelle__document_read_reply__free_unpacked(r, NULL);
}

/* --- waiting -------------------------------------------------------------------- */

/* Polls until the collector has made the blob a candidate, then until it
 * is removed from the volume (blob and block list) and from the candidates;
 * it must not be gone before its grace. Fails after WAIT_MS. */
static void expect_collected_after_grace(const char *sha)
{
    double first_seen = -1;
    for (int waited = 0; first_seen < 0; waited += POLL_MS) {
        assert_true(waited < WAIT_MS);
        first_seen = zscore("docstore:gc:candidates", sha);
        if (first_seen < 0)
            sleep_ms(POLL_MS);
    }
    /* Kept meanwhile: gone only once the grace has passed. */
    for (int waited = 0; blob_exists(sha); waited += POLL_MS) {
        assert_true(waited < WAIT_MS);
        sleep_ms(POLL_MS);
    }
    assert_true((double)time(NULL) >= first_seen + GRACE_S);
    /* Its block list and its candidacy go with it, in the same tick. */
    char path[1024];
    blob_path(sha, ".blocks", path, sizeof path);
    for (int waited = 0; access(path, F_OK) == 0 || zscore("docstore:gc:candidates", sha) >= 0;
         waited += POLL_MS) {
        assert_true(waited < WAIT_MS);
        sleep_ms(POLL_MS);
    }
}

/* --- fixture ---------------------------------------------------------------------- */

static int teardown(void **state);

static int setup(void **state)
{
    F = calloc(1, sizeof *F);
    F->dir = harness_tempdir("docstore-gc");
    snprintf(F->keys, sizeof F->keys, "%s/keys", F->dir);
    snprintf(F->volume, sizeof F->volume, "%s/volume", F->dir);
    snprintf(F->volume_env, sizeof F->volume_env, "PASSERELLE_DOCSTORE_DIR=%s", F->volume);
    *state = F;
    if (harness_keys_make(F->keys) != 0 || harness_redis_start(&F->redis) != 0) {
        teardown(NULL);
        return -1;
    }
    harness_redis_setenv(&F->redis);
    setenv("PASSERELLE_KEYS_DIR", F->keys, 1);
    store_config_t cfg;
    harness_redis_config(&F->redis, &cfg);
    F->store = store_new(&cfg);
    char grace[64], ttl[64];
    snprintf(grace, sizeof grace, "PASSERELLE_DOCSTORE_GC_GRACE_S=%d", GRACE_S);
    snprintf(ttl, sizeof ttl, "PASSERELLE_DOCSTORE_UPLOAD_TTL_S=%d", TTL_S);
    char *env[] = {F->volume_env, "PASSERELLE_DOCSTORE_TICK_MS=100", grace, ttl, NULL};
    if (F->store && harness_service_start(&F->service, "docstore", F->dir, env) == 0)
        F->owner = harness_client(F->service.endpoint, F->keys, "metropole", 20000, 2);
    if (F->owner)
        return 0;
    teardown(NULL);
    return -1;
}

static int teardown(void **state)
{
    (void)state;
    client_destroy(&F->owner);
    bool clean = F->service.pid ? harness_service_stop_clean(&F->service) : true;
    store_destroy(&F->store);
    harness_redis_stop(&F->redis);
    harness_rmtree(F->dir);
    free(F->dir);
    free(F);
    F = NULL;
    return clean ? 0 : -1;
}

/* --- tests ------------------------------------------------------------------------- */

static void test_orphans_removed_after_grace(void **state)
{
    (void)state;
    /* Planted on the volume by hand. */
    char planted[65];
    plant_blob("octets que nulle version ne cite", planted);
    expect_collected_after_grace(planted);

    /* Left by a document whose reference was taken out of Redis. */
    uint8_t *data = pattern(5000, 1);
    char sha[65];
    char *id = put("Etude dont la référence se perd", data, 5000, sha);
    read_back(id, data, 5000);
    assert_true(blob_exists(sha));
    redisReply *r = NULL;
    assert_int_equal(store_command(F->store, &r, "ZREM docstore:blobs %s", sha), STORE_OK);
    assert_int_equal(r->integer, 1);
    freeReplyObject(r);
    expect_collected_after_grace(sha);
    free(id);
    free(data);
}

/* A candidate whose file was installed again lately (a commit renames its
 * bytes in, even over the same content) gets a whole grace from then,
 * however long ago it was first seen unreferred: its version may be on its
 * way, or its commit about to be sent again. */
static void test_recent_install_spared(void **state)
{
    (void)state;
    char sha[65];
    plant_blob("octets remis en place par un commit", sha);
    for (int waited = 0; zscore("docstore:gc:candidates", sha) < 0; waited += POLL_MS) {
        assert_true(waited < WAIT_MS);
        sleep_ms(POLL_MS);
    }
    /* First seen long ago, installed again now (a chmod changes its ctime
     * as a rename does). */
    char path[1024];
    blob_path(sha, "", path, sizeof path);
    assert_int_equal(chmod(path, 0444), 0);
    time_t installed = time(NULL);
    redisReply *r = NULL;
    assert_int_equal(store_command(F->store, &r, "ZADD docstore:gc:candidates %lld %s",
                                   (long long)installed - 100 * GRACE_S, sha),
                     STORE_OK);
    freeReplyObject(r);
    for (int waited = 0; blob_exists(sha); waited += POLL_MS) {
        assert_true(waited < WAIT_MS);
        sleep_ms(POLL_MS);
    }
    assert_true(time(NULL) >= installed + GRACE_S);
}

static void test_withdrawn_version_kept(void **state)
{
    (void)state;
    uint8_t *data = pattern(3000, 2);
    char sha[65];
    char *id = put("Etude retirée", data, 3000, sha);
    Passerelle__DocumentWithdrawRequest w = PASSERELLE__DOCUMENT_WITHDRAW_REQUEST__INIT;
    w.id = id;
    w.has_version = true;
    w.version = 1;
    w.reason = "remplacée";
    Passerelle__Reply *reply = harness_call(F->owner, "document.withdraw", &w.base, OK, NULL);
    passerelle__reply__free_unpacked(reply, NULL);

    /* An orphan planted after the withdrawal, collected: by then the
     * collector has walked the volume many times past the grace. */
    char planted[65];
    plant_blob("un autre orphelin", planted);
    expect_collected_after_grace(planted);
    /* And once more, so that a whole grace passed with both on disk. */
    plant_blob("un troisième orphelin", planted);
    expect_collected_after_grace(planted);

    assert_true(blob_exists(sha));
    assert_true(zscore("docstore:gc:candidates", sha) < 0);
    assert_true(zscore("docstore:blobs", sha) >= 0);
    free(id);
    free(data);
}

static void test_abandoned_upload_swept_live_one_kept(void **state)
{
    (void)state;
    enum { SIZE = 4000, PIECE = 10 };
    uint8_t *data = pattern(SIZE, 3);
    char sha[65], key[128];
    harness_sha256_hex(data, SIZE, sha);

    /* Abandoned: begin and one chunk, then nothing. */
    char *abandoned = begin("Etude abandonnée", SIZE, sha);
    chunk(abandoned, data, 0, 1000);
    snprintf(key, sizeof key, "docstore:upload:%s", abandoned);
    assert_int_equal(exists(key), 1);
    assert_true(zscore("docstore:uploads", abandoned) >= 0);
    assert_true(tmp_exists(abandoned));

    /* Live: the same bytes, a few at a time, each chunk pushing its expiry
     * on, until the abandoned one is gone. */
    char *live = begin("Etude en cours", SIZE, sha);
    size_t sent = 0;
    for (int waited = 0;; waited += POLL_MS) {
        assert_true(waited < WAIT_MS);
        assert_true(sent + PIECE <= SIZE);
        chunk(live, data, sent, PIECE);
        sent += PIECE;
        if (!exists(key) && zscore("docstore:uploads", abandoned) < 0 && !tmp_exists(abandoned))
            break;
        sleep_ms(POLL_MS);
    }
    /* The abandoned one is gone for good: its client is told to begin again. */
    Passerelle__UploadChunkRequest req = chunk_request(abandoned, data, 1000, 1000);
    Passerelle__Reply *reply =
        harness_call(F->owner, "upload.chunk", &req.base, NOT_FOUND, "upload_id");
    passerelle__reply__free_unpacked(reply, NULL);

    /* The live one was left alone, and completes. */
    snprintf(key, sizeof key, "docstore:upload:%s", live);
    assert_int_equal(exists(key), 1);
    assert_true(zscore("docstore:uploads", live) >= 0);
    assert_true(tmp_exists(live));
    chunk(live, data, sent, SIZE - sent);
    char *id = commit(live);
    read_back(id, data, SIZE);
    assert_false(tmp_exists(live));
    /* Committed: its session is gone too, record and index entry. */
    assert_int_equal(exists(key), 0);
    assert_true(zscore("docstore:uploads", live) < 0);
    free(id);
    free(live);
    free(abandoned);
    free(data);
}

/* The bytes an upload's session records as received (what a service
 * restarted after a reboot resumes from). */
static uint64_t recorded_received(const char *upload)
{
    char key[128];
    snprintf(key, sizeof key, "docstore:upload:%s", upload);
    uint64_t version = 0;
    uint8_t *bytes = NULL;
    size_t len = 0;
    assert_int_equal(store_record_get(F->store, key, &version, &bytes, &len), STORE_OK);
    assert_true(version > 0);
    Passerelle__Document *s = passerelle__document__unpack(NULL, len, bytes);
    free(bytes);
    assert_non_null(s);
    uint64_t received = s->version;
    passerelle__document__free_unpacked(s, NULL);
    return received;
}

/* Makes an upload's progress record look written in another boot of the
 * machine: after a reboot, the page cache that held its bytes is gone. */
static void as_if_rebooted(const char *upload)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/tmp/%s.progress", F->volume, upload);
    FILE *f = fopen(path, "r+");
    assert_non_null(f);
    int c = fgetc(f);
    rewind(f);
    fputc(c == '0' ? '1' : '0', f);
    fclose(f);
}

/* The housekeeping tick records what memory knows of a live upload in its
 * session (chunks themselves touch no Redis): after a reboot, where the
 * progress record on the volume means nothing any more, the upload resumes
 * from that record, not from its start, and comes out whole. */
static void test_progress_recorded_by_tick(void **state)
{
    (void)state;
    enum { SIZE = 3 * 1024 * 1024 + 5, PIECE = 256 * 1024 };
    uint8_t *data = pattern(SIZE, 7);
    char sha[65];
    harness_sha256_hex(data, SIZE, sha);
    char *upload = begin("Etude suivie", SIZE, sha);
    assert_int_equal(recorded_received(upload), 0);
    size_t sent = 0;
    for (; sent < 2 * 1024 * 1024; sent += PIECE)
        chunk(upload, data, sent, PIECE);
    for (int waited = 0; recorded_received(upload) != sent; waited += POLL_MS) {
        assert_true(waited < WAIT_MS);
        sleep_ms(POLL_MS);
    }
    chunk(upload, data, sent, PIECE);
    sent += PIECE;

    harness_service_stop(&F->service, SIGKILL);
    uint64_t recorded = recorded_received(upload);
    assert_true(recorded >= 2 * 1024 * 1024 && recorded <= sent);
    as_if_rebooted(upload);
    char grace[64], ttl[64];
    snprintf(grace, sizeof grace, "PASSERELLE_DOCSTORE_GC_GRACE_S=%d", GRACE_S);
    snprintf(ttl, sizeof ttl, "PASSERELLE_DOCSTORE_UPLOAD_TTL_S=%d", TTL_S);
    char *env[] = {F->volume_env, "PASSERELLE_DOCSTORE_TICK_MS=100", grace, ttl, NULL};
    assert_int_equal(harness_service_restart(&F->service, F->dir, env), 0);
    client_destroy(&F->owner);
    F->owner = harness_client(F->service.endpoint, F->keys, "metropole", 20000, 2);
    assert_non_null(F->owner);

    /* Where it stands: the recorded count (its first byte again tells). */
    assert_int_equal(harness_doc_chunk(F->owner, upload, 0, data, 1), recorded);
    for (sent = recorded; sent < SIZE; sent += PIECE)
        chunk(upload, data, sent, SIZE - sent < PIECE ? SIZE - sent : PIECE);
    char *id = commit(upload);
    Passerelle__DocumentReadReply *r = harness_doc_read(F->owner, id, 0, 0, 0);
    assert_int_equal(r->size, SIZE);
    assert_string_equal(r->sha256, sha);
    passerelle__document_read_reply__free_unpacked(r, NULL);
    free(id);
    free(upload);
    free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_orphans_removed_after_grace),
        cmocka_unit_test(test_recent_install_spared),
        cmocka_unit_test(test_withdrawn_version_kept),
        cmocka_unit_test(test_abandoned_upload_swept_live_one_kept),
        cmocka_unit_test(test_progress_recorded_by_tick),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
