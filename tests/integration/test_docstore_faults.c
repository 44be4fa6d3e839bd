/* The document store under faults, with the real binary: the service
 * SIGKILLed during an upload (restarted, the upload resumed from the
 * session's `received` and committed whole), during an upload with chunks
 * in flight (resumed from where the service says it stands, committed by
 * reading the file) and during a download (read again after the restart);
 * an upload's file changed behind the service's back (refused at commit,
 * with the running hashes or after a restart); a blob corrupted on disk
 * (refused with DATA_LOSS, listed corrupt by docs.fsck), a blob removed
 * (missing), a file no version refers to (orphaned); a quota too small
 * (RESOURCE_EXHAUSTED at begin, nothing left in tmp/); an upload whose
 * commit names its SHA-256 (a trailing checksum) killed in the middle and
 * resumed by its begin sent again with its key; and whole documents
 * stored together in one batch, one of whose blobs cannot be put in place
 * (it fails alone). */
#include "harness.h"

#include "docstore.pb-c.h"
#include "envelope.pb-c.h"
#include "ids.h"

#include <dirent.h>
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
#define DATA_LOSS PASSERELLE__STATUS__STATUS_DATA_LOSS
#define EXHAUSTED PASSERELLE__STATUS__STATUS_RESOURCE_EXHAUSTED
#define CHUNK     (1024 * 1024)
#define DOC_BYTES (5 * CHUNK + 123)

typedef struct {
    char *dir;
    char keys[512];
    char volume[600];
    char volume_env[700];
    harness_redis_t redis;
    harness_service_t service;
    client_t *owner, *admin;
} fixture_t;

static fixture_t *F;

static uint8_t *pattern(size_t len, unsigned seed)
{
    return harness_pattern(len, seed, 13);
}

static void connect_clients(void)
{
    client_destroy(&F->owner);
    client_destroy(&F->admin);
    F->owner = harness_client(F->service.endpoint, F->keys, "metropole", 20000, 2);
    F->admin = harness_client(F->service.endpoint, F->keys, "admin", 20000, 2);
    assert_non_null(F->owner);
    assert_non_null(F->admin);
}

static void restart(char *const env[])
{
    harness_service_stop(&F->service, SIGKILL);
    assert_int_equal(harness_service_restart(&F->service, F->dir, env), 0);
    connect_clients();
}

static int teardown(void **state);

static int setup(void **state)
{
    F = calloc(1, sizeof *F);
    F->dir = harness_tempdir("docstore-faults");
    snprintf(F->keys, sizeof F->keys, "%s/keys", F->dir);
    snprintf(F->volume, sizeof F->volume, "%s/volume", F->dir);
    snprintf(F->volume_env, sizeof F->volume_env, "PASSERELLE_DOCSTORE_DIR=%s", F->volume);
    if (harness_keys_make(F->keys) != 0 || harness_redis_start(&F->redis) != 0)
        return -1;
    harness_redis_setenv(&F->redis);
    setenv("PASSERELLE_KEYS_DIR", F->keys, 1);
    char *env[] = {F->volume_env, NULL};
    if (harness_service_start(&F->service, "docstore", F->dir, env) == 0) {
        F->owner = harness_client(F->service.endpoint, F->keys, "metropole", 20000, 2);
        F->admin = harness_client(F->service.endpoint, F->keys, "admin", 20000, 2);
    }
    *state = F;
    if (F->owner && F->admin)
        return 0;
    teardown(NULL);
    return -1;
}

static int teardown(void **state)
{
    (void)state;
    client_destroy(&F->owner);
    client_destroy(&F->admin);
    bool clean = F->service.pid ? harness_service_stop_clean(&F->service) : true;
    harness_redis_stop(&F->redis);
    harness_rmtree(F->dir);
    free(F->dir);
    free(F);
    return clean ? 0 : -1;
}

/* --- calls ----------------------------------------------------------------- */

static char *begin(const char *title, size_t size, const char *sha)
{
    Passerelle__UploadBeginRequest req;
    harness_doc_begin_request(&req, title, size, sha, 2);
    return harness_doc_begin(F->owner, &req, NULL);
}

/* Sends [offset, offset + len) in chunks; returns the session's received. */
static uint64_t send_range(const char *upload, const uint8_t *data, size_t offset, size_t len)
{
    return harness_doc_send_range(F->owner, upload, data, offset, len, false);
}

static char *commit(const char *upload)
{
    return harness_doc_commit(F->owner, upload);
}

static char *put(const char *title, const uint8_t *data, size_t len)
{
    Passerelle__UploadBeginRequest req;
    harness_doc_begin_request(&req, title, len, NULL, 2);
    return harness_doc_put(F->owner, &req, data, len, NULL);
}

static Passerelle__Reply *read_call(const char *id, uint64_t offset, int status)
{
    return harness_doc_read_call(F->owner, id, 0, offset, CHUNK, status);
}

/* Reads the latest version (size bytes) from its start up to end into out. */
static void read_into(const char *id, uint8_t *out, size_t end, size_t size)
{
    size_t offset = 0;
    while (offset < end) {
        Passerelle__DocumentReadReply *r = harness_doc_read(F->owner, id, 0, offset, CHUNK);
        assert_int_equal(r->size, size);
        assert_true(r->data.len > 0);
        memcpy(out + offset, r->data.data, r->data.len);
        offset += r->data.len;
        passerelle__document_read_reply__free_unpacked(r, NULL);
    }
}

static Passerelle__FsckReply *fsck(void)
{
    return harness_doc_fsck(F->admin);
}

static bool listed(char **list, size_t n, const char *sha)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i], sha) == 0)
            return true;
    return false;
}

static void blob_path(const char *sha, const char *suffix, char *out, size_t size)
{
    harness_doc_blob_path(F->volume, sha, suffix, out, size);
}

static int count_files(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    if (d)
        closedir(d);
    return n;
}

/* --- tests ------------------------------------------------------------------ */

static void test_kill_during_upload_then_resume(void **state)
{
    (void)state;
    uint8_t *data = pattern(DOC_BYTES, 1);
    char sha[65];
    harness_sha256_hex(data, DOC_BYTES, sha);
    char *upload = begin("Etude interrompue", DOC_BYTES, sha);
    assert_int_equal(send_range(upload, data, 0, 2 * CHUNK), 2 * CHUNK);
    char *env[] = {F->volume_env, NULL};
    restart(env);
    /* The session says where to resume: a chunk already received is
     * acknowledged with it. */
    uint64_t received = send_range(upload, data, 0, CHUNK);
    assert_int_equal(received, 2 * CHUNK);
    assert_int_equal(send_range(upload, data, received, DOC_BYTES - received), DOC_BYTES);
    char *id = commit(upload);
    uint8_t *back = calloc(1, DOC_BYTES);
    read_into(id, back, DOC_BYTES, DOC_BYTES);
    assert_memory_equal(back, data, DOC_BYTES);

    /* Killed during the download: read again after the restart. */
    memset(back, 0, DOC_BYTES);
    read_into(id, back, CHUNK, DOC_BYTES);
    restart(env);
    read_into(id, back, DOC_BYTES, DOC_BYTES);
    assert_memory_equal(back, data, DOC_BYTES);
    free(back);
    free(id);
    free(upload);
    free(data);
}

static void test_corrupt_missing_orphaned(void **state)
{
    (void)state;
    uint8_t *a = pattern(3 * CHUNK, 7), *b = pattern(1000, 8);
    char sha_a[65], sha_b[65], path[1024];
    harness_sha256_hex(a, 3 * CHUNK, sha_a);
    harness_sha256_hex(b, 1000, sha_b);
    char *id_a = put("Etude corrompue", a, 3 * CHUNK);
    char *id_b = put("Etude perdue", b, 1000);

    Passerelle__FsckReply *r = fsck();
    assert_int_equal(r->n_corrupt + r->n_missing + r->n_orphaned, 0);
    assert_true(r->blobs_checked >= 2);
    passerelle__fsck_reply__free_unpacked(r, NULL);

    /* One byte flipped in the second block of a. */
    blob_path(sha_a, "", path, sizeof path);
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    fseek(f, CHUNK + 4321, SEEK_SET);
    int c = fgetc(f);
    fseek(f, CHUNK + 4321, SEEK_SET);
    fputc(c ^ 0x40, f);
    fclose(f);
    /* The first block is intact and still served; the second is refused. */
    Passerelle__Reply *reply = read_call(id_a, 0, OK);
    passerelle__reply__free_unpacked(reply, NULL);
    reply = read_call(id_a, CHUNK, DATA_LOSS);
    assert_non_null(strstr(reply->message, "corrupt"));
    passerelle__reply__free_unpacked(reply, NULL);

    /* b removed from the volume. */
    blob_path(sha_b, "", path, sizeof path);
    assert_int_equal(unlink(path), 0);
    blob_path(sha_b, ".blocks", path, sizeof path);
    unlink(path);
    reply = read_call(id_b, 0, DATA_LOSS);
    passerelle__reply__free_unpacked(reply, NULL);

    /* A well-formed blob no version refers to. */
    const char orphan[] = "orphelin";
    char sha_o[65];
    harness_doc_plant_blob(F->volume, orphan, sizeof orphan - 1, sha_o);

    r = fsck();
    assert_true(listed(r->corrupt, r->n_corrupt, sha_a));
    assert_int_equal(r->n_corrupt, 1);
    assert_true(listed(r->missing, r->n_missing, sha_b));
    assert_int_equal(r->n_missing, 1);
    assert_true(listed(r->orphaned, r->n_orphaned, sha_o));
    assert_int_equal(r->n_orphaned, 1);
    passerelle__fsck_reply__free_unpacked(r, NULL);
    free(id_a);
    free(id_b);
    free(a);
    free(b);
}

static void test_quota(void **state)
{
    (void)state;
    char *env[] = {F->volume_env, "PASSERELLE_DOCSTORE_QUOTA_BYTES=20000000", NULL};
    restart(env);
    uint8_t *data = pattern(64, 3);
    char sha[65], tmp[700];
    harness_sha256_hex(data, 64, sha);
    Passerelle__UploadBeginRequest req;
    harness_doc_begin_request(&req, "Etude trop lourde pour le volume", 64ULL * 1024 * 1024, sha,
                              1);
    Passerelle__Reply *reply = harness_call(F->owner, "upload.begin", &req.base, EXHAUSTED, "size");
    assert_non_null(strstr(reply->message, "no space"));
    passerelle__reply__free_unpacked(reply, NULL);
    snprintf(tmp, sizeof tmp, "%s/tmp", F->volume);
    assert_int_equal(count_files(tmp), 0);
    /* What fits still goes in. */
    free(put("Etude légère", data, 64));
    free(data);
    char *plain[] = {F->volume_env, NULL};
    restart(plain);
}

/* An upload.begin sent again with its idempotency key (a client retrying
 * after a lost reply) gets the same upload, and its run, thrown away by the
 * server's duplicate lookup, leaves no second reservation in tmp/. */
static void test_begin_retried_reserves_once(void **state)
{
    (void)state;
    uint8_t *data = pattern(3 * CHUNK, 11);
    char sha[65], tmp[700];
    harness_sha256_hex(data, 3 * CHUNK, sha);
    snprintf(tmp, sizeof tmp, "%s/tmp", F->volume);
    int before = count_files(tmp);
    Passerelle__UploadBeginRequest req;
    harness_doc_begin_request(&req, "Etude relancee", 3 * CHUNK, sha, 1);
    char *ids[3];
    for (int i = 0; i < 3; i++) {
        Passerelle__Reply *reply =
            harness_call_keyed(F->owner, "upload.begin", &req.base, "begin-retried-1", OK, NULL);
        Passerelle__UploadSession *s =
            passerelle__upload_session__unpack(NULL, reply->body.len, reply->body.data);
        passerelle__reply__free_unpacked(reply, NULL);
        assert_non_null(s);
        ids[i] = strdup(s->upload_id);
        passerelle__upload_session__free_unpacked(s, NULL);
    }
    assert_string_equal(ids[0], ids[1]);
    assert_string_equal(ids[0], ids[2]);
    assert_int_equal(count_files(tmp), before + 1);
    send_range(ids[0], data, 0, 3 * CHUNK);
    free(commit(ids[0]));
    assert_int_equal(count_files(tmp), before);
    for (int i = 0; i < 3; i++)
        free(ids[i]);
    free(data);
}

/* --- several chunks in flight ------------------------------------------------ */

#define WINDOW_MAX 16

typedef struct {
    bool used;
    char request_id[ID_LEN];
    uint64_t offset;
    size_t len;
} flight_t;

/* Posts chunk [offset, offset + len) of data without waiting. */
static void chunk_post(const char *upload, const uint8_t *data, flight_t *slot, uint64_t offset,
                       size_t len)
{
    slot->used = true;
    id_new('Q', slot->request_id);
    slot->offset = offset;
    slot->len = len;
    Passerelle__UploadChunkRequest req = PASSERELLE__UPLOAD_CHUNK_REQUEST__INIT;
    req.upload_id = (char *)upload;
    req.has_offset = req.has_data = true;
    req.offset = offset;
    req.data.data = (uint8_t *)data + offset;
    req.data.len = len;
    assert_int_equal(
        client_send_request(F->owner, slot->request_id, "upload.chunk", &req.base, NULL), 0);
}

/* Sends [from, end) of data with window chunks in flight, each reply OK
 * and in order. */
static void send_windowed(const char *upload, const uint8_t *data, uint64_t from, uint64_t end,
                          unsigned window)
{
    flight_t slots[WINDOW_MAX];
    memset(slots, 0, sizeof slots);
    uint64_t next = from, acked = from;
    while (acked < end) {
        for (unsigned i = 0; i < window && next < end; i++)
            if (!slots[i].used) {
                size_t len = end - next < CHUNK ? (size_t)(end - next) : CHUNK;
                chunk_post(upload, data, &slots[i], next, len);
                next += len;
            }
        Passerelle__Reply *reply = NULL;
        assert_int_equal(client_receive_reply(F->owner, 0, &reply), 0);
        harness_expect_status(reply, OK, NULL);
        flight_t *slot = NULL;
        for (unsigned i = 0; i < window; i++)
            if (slots[i].used && strcmp(slots[i].request_id, reply->request_id) == 0)
                slot = &slots[i];
        assert_non_null(slot);
        Passerelle__UploadSession *s =
            passerelle__upload_session__unpack(NULL, reply->body.len, reply->body.data);
        assert_int_equal(slot->offset, acked);
        assert_int_equal(s->received, slot->offset + slot->len);
        acked = s->received;
        slot->used = false;
        passerelle__upload_session__free_unpacked(s, NULL);
        passerelle__reply__free_unpacked(reply, NULL);
    }
}

/* Where the upload stands, asked the way a client that lost track asks:
 * its first byte again. */
static uint64_t where_it_stands(const char *upload, const uint8_t *data)
{
    return harness_doc_chunk(F->owner, upload, 0, data, 1);
}

/* Changes one byte of an upload's file on the volume, making sure its
 * change time moves (file times tick a few milliseconds at a time). */
static void tamper(const char *upload, off_t offset)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/tmp/%s", F->volume, upload);
    struct stat before, after;
    assert_int_equal(stat(path, &before), 0);
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    fseek(f, offset, SEEK_SET);
    int c = fgetc(f);
    fseek(f, offset, SEEK_SET);
    fputc(c ^ 0x40, f);
    fclose(f);
    for (int tries = 0; tries < 2000; tries++) {
        assert_int_equal(stat(path, &after), 0);
        if (after.st_ctim.tv_sec != before.st_ctim.tv_sec ||
            after.st_ctim.tv_nsec != before.st_ctim.tv_nsec)
            return;
        struct timespec pause = {0, 1000000L};
        nanosleep(&pause, NULL);
        assert_int_equal(chmod(path, 0600), 0);
    }
    fail_msg("the change time of %s does not move", path);
}

/* SIGKILL with chunks in flight: the service comes back knowing every
 * chunk it acknowledged (and those it wrote without a reply getting out),
 * the client asks where the upload stands and goes on from there, and the
 * commit, whose running hashes died with the process, reads the file: the
 * same bytes come back. */
static void test_kill_during_windowed_upload_then_resume(void **state)
{
    (void)state;
    const size_t size = 12 * CHUNK + 777;
    uint8_t *data = pattern(size, 5);
    char sha[65];
    harness_sha256_hex(data, size, sha);
    Passerelle__UploadBeginRequest req;
    harness_doc_begin_request(&req, "Etude interrompue en vol", size, sha, 2);
    Passerelle__UploadSession *s = harness_doc_session_call(F->owner, "upload.begin", &req.base);
    assert_true(s->has_window && s->window >= 2 && s->window <= WINDOW_MAX);
    unsigned window = s->window;
    char *upload = strdup(s->upload_id);
    passerelle__upload_session__free_unpacked(s, NULL);

    send_windowed(upload, data, 0, 5 * CHUNK, window);
    flight_t slots[WINDOW_MAX];
    for (unsigned i = 0; i < window; i++)
        chunk_post(upload, data, &slots[i], (5 + i) * (uint64_t)CHUNK, CHUNK);
    char *env[] = {F->volume_env, NULL};
    restart(env);

    uint64_t received = where_it_stands(upload, data);
    assert_true(received >= 5 * CHUNK);
    assert_true(received <= (5 + window) * (uint64_t)CHUNK);
    assert_int_equal(received % CHUNK, 0);
    send_windowed(upload, data, received, size, window);
    char *id = commit(upload);
    uint8_t *back = calloc(1, size);
    read_into(id, back, size, size);
    assert_memory_equal(back, data, size);
    free(back);
    free(id);
    free(upload);
    free(data);
}

/* An upload whose file is changed on the volume after its bytes came (by
 * anything but the service) is refused at its commit, whether the service
 * still holds the running hashes (the file's change time tells them
 * stale) or restarted since (the commit reads the file anyway). */
static void test_tampered_upload_refused_at_commit(void **state)
{
    (void)state;
    const size_t size = 4 * CHUNK + 10;
    uint8_t *data = pattern(size, 9);
    char sha[65];
    harness_sha256_hex(data, size, sha);
    char *env[] = {F->volume_env, NULL};
    for (int restarted = 0; restarted < 2; restarted++) {
        char *upload =
            begin(restarted ? "Etude modifiée, redémarrée" : "Etude modifiée", size, sha);
        send_windowed(upload, data, 0, size, 4);
        if (restarted)
            restart(env);
        tamper(upload, 2 * CHUNK + 3);
        Passerelle__UploadCommitRequest cr = PASSERELLE__UPLOAD_COMMIT_REQUEST__INIT;
        cr.upload_id = upload;
        Passerelle__Reply *reply =
            harness_call(F->owner, "upload.commit", &cr.base,
                         PASSERELLE__STATUS__STATUS_INVALID_ARGUMENT, "sha256");
        passerelle__reply__free_unpacked(reply, NULL);
        /* Over for good: begin again. */
        Passerelle__UploadChunkRequest again = PASSERELLE__UPLOAD_CHUNK_REQUEST__INIT;
        again.upload_id = upload;
        again.has_offset = again.has_data = true;
        again.data.data = data;
        again.data.len = 1;
        reply = harness_call(F->owner, "upload.chunk", &again.base,
                             PASSERELLE__STATUS__STATUS_NOT_FOUND, "upload_id");
        passerelle__reply__free_unpacked(reply, NULL);
        free(upload);
    }
    free(data);
}

/* An upload whose begin named no SHA-256 (its commit names it), the
 * service SIGKILLed in the middle: the begin sent again with its key
 * (its fingerprint has no SHA-256) resumes the same upload, the rest is
 * sent from where the service says it stands, and the commit, whose
 * running hashes died with the process, reads the file and checks it
 * against the SHA-256 the commit names. A wrong one would still be
 * refused: tried first on a second upload killed the same way. */
static void test_kill_during_trailing_upload_then_resume(void **state)
{
    (void)state;
    const size_t size = 6 * CHUNK + 999;
    uint8_t *data = pattern(size, 21);
    char sha[65], wrong[65];
    harness_sha256_hex(data, size, sha);
    harness_sha256_hex(data, size - 1, wrong);
    char *env[] = {F->volume_env, NULL};
    for (int wrong_first = 0; wrong_first < 2; wrong_first++) {
        Passerelle__UploadBeginRequest req;
        harness_doc_begin_request(&req, "Etude au hash en fin, interrompue", size, NULL, 2);
        const char *key = wrong_first ? "trailing-resume-2" : "trailing-resume-1";
        Passerelle__Reply *reply =
            harness_call_keyed(F->owner, "upload.begin", &req.base, key, OK, NULL);
        Passerelle__UploadSession *s =
            passerelle__upload_session__unpack(NULL, reply->body.len, reply->body.data);
        passerelle__reply__free_unpacked(reply, NULL);
        assert_non_null(s);
        char *upload = strdup(s->upload_id);
        passerelle__upload_session__free_unpacked(s, NULL);
        assert_int_equal(send_range(upload, data, 0, 3 * CHUNK), 3 * CHUNK);
        restart(env);

        reply = harness_call_keyed(F->owner, "upload.begin", &req.base, key, OK, NULL);
        s = passerelle__upload_session__unpack(NULL, reply->body.len, reply->body.data);
        passerelle__reply__free_unpacked(reply, NULL);
        assert_non_null(s);
        assert_string_equal(s->upload_id, upload);
        passerelle__upload_session__free_unpacked(s, NULL);
        uint64_t received = where_it_stands(upload, data);
        assert_int_equal(received, 3 * CHUNK);
        assert_int_equal(send_range(upload, data, received, size - received), size);

        Passerelle__UploadCommitRequest cr = PASSERELLE__UPLOAD_COMMIT_REQUEST__INIT;
        cr.upload_id = upload;
        if (wrong_first) {
            cr.sha256 = wrong;
            reply = harness_call(F->owner, "upload.commit", &cr.base,
                                 PASSERELLE__STATUS__STATUS_INVALID_ARGUMENT, "sha256");
            passerelle__reply__free_unpacked(reply, NULL);
            cr.sha256 = sha;
            reply = harness_call(F->owner, "upload.commit", &cr.base,
                                 PASSERELLE__STATUS__STATUS_NOT_FOUND, "upload_id");
            passerelle__reply__free_unpacked(reply, NULL);
        } else {
            cr.sha256 = sha;
            Passerelle__UploadSession *done =
                harness_doc_session_call(F->owner, "upload.commit", &cr.base);
            assert_true(id_valid('F', done->document));
            uint8_t *back = calloc(1, size);
            read_into(done->document, back, size, size);
            assert_memory_equal(back, data, size);
            free(back);
            Passerelle__DocumentGetRequest get = PASSERELLE__DOCUMENT_GET_REQUEST__INIT;
            get.id = done->document;
            reply = harness_call(F->owner, "document.get", &get.base, OK, NULL);
            Passerelle__Document *doc =
                passerelle__document__unpack(NULL, reply->body.len, reply->body.data);
            passerelle__reply__free_unpacked(reply, NULL);
            assert_non_null(doc);
            assert_string_equal(doc->versions[0]->sha256, sha);
            passerelle__document__free_unpacked(doc, NULL);
            passerelle__upload_session__free_unpacked(done, NULL);
        }
        free(upload);
    }
    free(data);
}

/* --- whole documents in one batch ---------------------------------------------- */

#define WHOLE_DOCS  6
#define WHOLE_BYTES (20 * 1024)
#define WHOLE_FAILS 3 /* the one whose blob folder is blocked */

/* Whole documents (each in its upload.begin) sent together, so that the
 * service drains them in one batch and stores their blobs together: each
 * stored as one file (no block list), readable, checked by fsck; the one
 * whose blob cannot be renamed into place (its folder blocked by a file)
 * fails alone, with the reason, recording nothing and leaving nothing in
 * tmp/, and goes through when sent again with its key once the folder is
 * free. A block list beside a small blob, as an earlier version wrote
 * them, is still read past. */
static void test_whole_documents_in_one_batch(void **state)
{
    (void)state;
    uint8_t *data[WHOLE_DOCS];
    char shas[WHOLE_DOCS][65], keys[WHOLE_DOCS][32], titles[WHOLE_DOCS][48];
    char request_ids[WHOLE_DOCS][ID_LEN], tmp[700], path[1024];
    snprintf(tmp, sizeof tmp, "%s/tmp", F->volume);
    int tmp_before = count_files(tmp);
    /* Bytes of their own, each blob in a folder of its own. */
    for (int i = 0; i < WHOLE_DOCS; i++) {
        bool clash = true;
        for (unsigned seed = 100 + 50 * (unsigned)i; clash; seed++) {
            data[i] = pattern(WHOLE_BYTES, seed);
            harness_sha256_hex(data[i], WHOLE_BYTES, shas[i]);
            clash = false;
            for (int j = 0; j < i; j++)
                clash = clash || memcmp(shas[i], shas[j], 2) == 0;
            if (clash)
                free(data[i]);
        }
        snprintf(keys[i], sizeof keys[i], "whole-batch-%d", i);
        snprintf(titles[i], sizeof titles[i], "Etude en lot %d", i);
    }
    char blocked[1024];
    snprintf(blocked, sizeof blocked, "%s/blobs/%.2s", F->volume, shas[WHOLE_FAILS]);
    FILE *f = fopen(blocked, "w");
    assert_non_null(f);
    fclose(f);

    /* A call first (client.h), then all of them without waiting. */
    Passerelle__FsckReply *r = fsck();
    passerelle__fsck_reply__free_unpacked(r, NULL);
    for (int i = 0; i < WHOLE_DOCS; i++) {
        Passerelle__UploadBeginRequest req;
        harness_doc_begin_request(&req, titles[i], WHOLE_BYTES, shas[i], 2);
        req.has_data = true;
        req.data.data = data[i];
        req.data.len = WHOLE_BYTES;
        id_new('Q', request_ids[i]);
        assert_int_equal(
            client_send_request(F->owner, request_ids[i], "upload.begin", &req.base, keys[i]), 0);
    }
    char *docs[WHOLE_DOCS] = {NULL};
    for (int n = 0; n < WHOLE_DOCS; n++) {
        Passerelle__Reply *reply = NULL;
        assert_int_equal(client_receive_reply(F->owner, 0, &reply), 0);
        int i = 0;
        while (i < WHOLE_DOCS && strcmp(request_ids[i], reply->request_id) != 0)
            i++;
        assert_true(i < WHOLE_DOCS);
        if (i == WHOLE_FAILS) {
            harness_expect_status(reply, PASSERELLE__STATUS__STATUS_INTERNAL, NULL);
            assert_non_null(strstr(reply->message, "cannot store the document"));
            assert_non_null(strstr(reply->message, "install blob"));
        } else {
            harness_expect_status(reply, OK, NULL);
            Passerelle__UploadSession *s =
                passerelle__upload_session__unpack(NULL, reply->body.len, reply->body.data);
            assert_non_null(s);
            assert_non_null(s->document);
            docs[i] = strdup(s->document);
            passerelle__upload_session__free_unpacked(s, NULL);
        }
        passerelle__reply__free_unpacked(reply, NULL);
    }

    /* Stored: one file each, read back whole. */
    for (int i = 0; i < WHOLE_DOCS; i++) {
        if (i == WHOLE_FAILS)
            continue;
        blob_path(shas[i], "", path, sizeof path);
        assert_int_equal(access(path, F_OK), 0);
        blob_path(shas[i], ".blocks", path, sizeof path);
        assert_int_not_equal(access(path, F_OK), 0);
        char got[65];
        assert_int_equal(harness_doc_read_all(F->owner, docs[i], 0, got, NULL, NULL), WHOLE_BYTES);
        assert_string_equal(got, shas[i]);
    }
    /* The failed one left nothing: no blob, nothing in tmp/. */
    assert_int_equal(count_files(tmp), tmp_before);
    r = fsck();
    for (int i = 0; i < WHOLE_DOCS; i++) {
        assert_false(listed(r->corrupt, r->n_corrupt, shas[i]));
        assert_false(listed(r->missing, r->n_missing, shas[i]));
    }
    passerelle__fsck_reply__free_unpacked(r, NULL);

    /* Its key was not used up: sent again once its folder is free, it is
     * stored. */
    assert_int_equal(unlink(blocked), 0);
    Passerelle__UploadBeginRequest req;
    harness_doc_begin_request(&req, titles[WHOLE_FAILS], WHOLE_BYTES, shas[WHOLE_FAILS], 2);
    req.has_data = true;
    req.data.data = data[WHOLE_FAILS];
    req.data.len = WHOLE_BYTES;
    Passerelle__Reply *reply =
        harness_call_keyed(F->owner, "upload.begin", &req.base, keys[WHOLE_FAILS], OK, NULL);
    Passerelle__UploadSession *s =
        passerelle__upload_session__unpack(NULL, reply->body.len, reply->body.data);
    assert_non_null(s);
    assert_non_null(s->document);
    docs[WHOLE_FAILS] = strdup(s->document);
    passerelle__upload_session__free_unpacked(s, NULL);
    passerelle__reply__free_unpacked(reply, NULL);
    char got[65];
    assert_int_equal(harness_doc_read_all(F->owner, docs[WHOLE_FAILS], 0, got, NULL, NULL),
                     WHOLE_BYTES);
    assert_string_equal(got, shas[WHOLE_FAILS]);

    /* A block list an earlier version wrote beside a small blob. */
    blob_path(shas[0], ".blocks", path, sizeof path);
    f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "%s\n", shas[0]);
    fclose(f);
    assert_int_equal(harness_doc_read_all(F->owner, docs[0], 0, got, NULL, NULL), WHOLE_BYTES);
    assert_string_equal(got, shas[0]);
    r = fsck();
    assert_false(listed(r->corrupt, r->n_corrupt, shas[0]));
    passerelle__fsck_reply__free_unpacked(r, NULL);

    for (int i = 0; i < WHOLE_DOCS; i++) {
        free(docs[i]);
        free(data[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kill_during_upload_then_resume),
        cmocka_unit_test(test_corrupt_missing_orphaned),
        cmocka_unit_test(test_quota),
        cmocka_unit_test(test_begin_retried_reserves_once),
        cmocka_unit_test(test_kill_during_windowed_upload_then_resume),
        cmocka_unit_test(test_tampered_upload_refused_at_commit),
        cmocka_unit_test(test_kill_during_trailing_upload_then_resume),
        cmocka_unit_test(test_whole_documents_in_one_batch),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
