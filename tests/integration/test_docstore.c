/* The document store end to end: a real redis-server and the real
 * passerelle-docstore binary on run-time ports, called over ZeroMQ with
 * CURVE by several parties. Round trips of an empty, a small and a 200 MB
 * document (generated from a seeded sequence, hashed as it is sent, read
 * back in chunks and hashed again) with the service's resident memory
 * sampled during the transfer; dedup; versions by the owner only; every
 * access rule; withdrawal; listing filters and title words; every chunk
 * refusal; a commit with the wrong SHA-256; one event per write; the
 * upload session deleted by its commit. Then several requests in flight:
 * an upload and a download with the window the service grants, chunks
 * sent again (or too far) among others in flight, a client that ignores
 * its credit (the service's memory stays bounded), and a whole document in
 * its upload.begin (dedup, a retry with its key, versions and access, one
 * event each, the refusals). */
#include "harness.h"

#include "docstore.pb-c.h"
#include "envelope.pb-c.h"
#include "ids.h"
#include "store.h"

#include <ctype.h>
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#define OK           PASSERELLE__STATUS__STATUS_OK
#define INVALID      PASSERELLE__STATUS__STATUS_INVALID_ARGUMENT
#define NOT_FOUND    PASSERELLE__STATUS__STATUS_NOT_FOUND
#define DENIED       PASSERELLE__STATUS__STATUS_PERMISSION_DENIED
#define EXHAUSTED    PASSERELLE__STATUS__STATUS_RESOURCE_EXHAUSTED
#define PRECONDITION PASSERELLE__STATUS__STATUS_FAILED_PRECONDITION
#define CHUNK        (1024 * 1024)
#define LARGE_BYTES  (200ULL * 1024 * 1024)
#define RSS_BOUND_KB (64 * 1024)
/* A client sending 96 MB of chunks at once: what may wait in the service
 * (a window's worth per connection in ZeroMQ's queue, and the requests of
 * a batch) is a few dozen megabytes, not the 96. */
#define FLOOD_RSS_BOUND_KB (48 * 1024)
#define KIND(k)            PASSERELLE__DOCUMENT_KIND__DOCUMENT_##k

enum { METROPOLE, ACTION_LOGEMENT, PARTNER, ADMIN, N_CLIENTS };
static const char *const CLIENT_NAMES[N_CLIENTS] = {"metropole", "action_logement", "partner",
                                                    "admin"};

typedef struct {
    char *dir;
    char keys[512];
    char volume[600];
    harness_redis_t redis;
    store_t *store; /* the test's own look at Redis */
    harness_service_t service;
    client_t *clients[N_CLIENTS];
} fixture_t;

static fixture_t *F;

/* --- bytes from a seeded sequence ---------------------------------------- */

typedef struct {
    uint64_t state;
} prng_t;

static void prng_fill(prng_t *p, uint8_t *buf, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        p->state ^= p->state << 13;
        p->state ^= p->state >> 7;
        p->state ^= p->state << 17;
        buf[i] = (uint8_t)(p->state >> 24);
    }
}

/* The SHA-256 of `size` bytes of the sequence seeded with seed. */
static void sha_of_sequence(uint64_t seed, uint64_t size, char out[65])
{
    prng_t p = {seed};
    uint8_t *buf = malloc(CHUNK);
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    for (uint64_t done = 0; done < size;) {
        size_t n = size - done < CHUNK ? (size_t)(size - done) : CHUNK;
        prng_fill(&p, buf, n);
        crypto_hash_sha256_update(&st, buf, n);
        done += n;
    }
    unsigned char digest[32];
    crypto_hash_sha256_final(&st, digest);
    harness_hex32(digest, out);
    free(buf);
}

/* --- the service's memory -------------------------------------------------- */

static long rss_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb;
}

/* --- calls ----------------------------------------------------------------- */

static void begin_request(Passerelle__UploadBeginRequest *req, const char *title, uint64_t size,
                          const char *sha)
{
    harness_doc_begin_request(req, title, size, sha, 1);
    req->media_type = "application/pdf";
    req->filename = "etude.pdf";
}

static char *begin(client_t *c, const Passerelle__UploadBeginRequest *req)
{
    uint32_t chunk_max = 0;
    char *id = harness_doc_begin(c, req, &chunk_max);
    assert_int_equal(chunk_max, CHUNK);
    return id;
}

static void send_chunk(client_t *c, const char *upload_id, uint64_t offset, const void *data,
                       size_t len, uint64_t expect_received)
{
    assert_int_equal(harness_doc_chunk(c, upload_id, offset, data, len), expect_received);
}

static void chunk_refused(client_t *c, const char *upload_id, uint64_t offset, const void *data,
                          size_t len, int status, const char *field)
{
    Passerelle__UploadChunkRequest req = PASSERELLE__UPLOAD_CHUNK_REQUEST__INIT;
    req.upload_id = (char *)upload_id;
    req.has_offset = req.has_data = true;
    req.offset = offset;
    req.data.data = (uint8_t *)data;
    req.data.len = len;
    harness_call_refused(c, "upload.chunk", &req.base, status, field);
}

/* Commits; returns the document id (malloc'd). */
static char *commit(client_t *c, const char *upload_id)
{
    return harness_doc_commit(c, upload_id);
}

/* A whole upload of bytes in memory; returns the document id. */
static char *put_bytes(client_t *c, Passerelle__UploadBeginRequest *req, const void *data,
                       size_t len)
{
    return harness_doc_put(c, req, data, len, NULL);
}

static Passerelle__Document *get_document(client_t *c, const char *id)
{
    Passerelle__DocumentGetRequest req = PASSERELLE__DOCUMENT_GET_REQUEST__INIT;
    req.id = (char *)id;
    Passerelle__Reply *reply = harness_call(c, "document.get", &req.base, OK, NULL);
    Passerelle__Document *doc =
        passerelle__document__unpack(NULL, reply->body.len, reply->body.data);
    passerelle__reply__free_unpacked(reply, NULL);
    assert_non_null(doc);
    return doc;
}

static Passerelle__DocumentReadReply *read_range(client_t *c, const char *id, uint32_t version,
                                                 uint64_t offset, uint32_t length)
{
    return harness_doc_read(c, id, version, offset, length);
}

typedef struct {
    pid_t pid;
    long *rss_max;
    unsigned chunks;
} rss_sampler_t;

/* Every 8 chunks, the service's resident memory, its largest kept. */
static void sample_rss(void *arg)
{
    rss_sampler_t *s = arg;
    if (++s->chunks % 8 == 0) {
        long kb = rss_kb(s->pid);
        if (kb > *s->rss_max)
            *s->rss_max = kb;
    }
}

/* Reads a version whole, chunk by chunk, hashing as it comes; returns its
 * size and writes its SHA-256 (as computed here) into sha. */
static uint64_t read_all(client_t *c, const char *id, uint32_t version, char sha[65],
                         pid_t sample_pid, long *rss_max)
{
    rss_sampler_t sampler = {sample_pid, rss_max, 0};
    return harness_doc_read_all(c, id, version, sha, sample_pid ? sample_rss : NULL, &sampler);
}

/* --- setup ----------------------------------------------------------------- */

static int teardown(void **state);

static int setup(void **state)
{
    F = calloc(1, sizeof *F);
    F->dir = harness_tempdir("docstore");
    snprintf(F->keys, sizeof F->keys, "%s/keys", F->dir);
    snprintf(F->volume, sizeof F->volume, "%s/volume", F->dir);
    if (harness_keys_make(F->keys) != 0 || harness_redis_start(&F->redis) != 0)
        return -1;
    harness_redis_setenv(&F->redis);
    setenv("PASSERELLE_KEYS_DIR", F->keys, 1);
    store_config_t cfg;
    harness_redis_config(&F->redis, &cfg);
    F->store = store_new(&cfg);
    if (!F->store) {
        teardown(NULL);
        return -1;
    }
    char volume_env[700];
    snprintf(volume_env, sizeof volume_env, "PASSERELLE_DOCSTORE_DIR=%s", F->volume);
    /* Under AddressSanitizer, freed blocks wait in a quarantine (256 MB by
     * default) and stay resident: keep it small so that the memory bound
     * measures the service, not the sanitizer. */
    char *env[] = {
        volume_env,
        "PASSERELLE_DOCSTORE_MAX_UPLOADS=4",
#if defined(__SANITIZE_ADDRESS__)
        "ASAN_OPTIONS=quarantine_size_mb=4:detect_leaks=1",
#endif
        NULL
    };
    bool started = harness_service_start(&F->service, "docstore", F->dir, env) == 0;
    for (int i = 0; started && i < N_CLIENTS; i++) {
        F->clients[i] = harness_client(F->service.endpoint, F->keys, CLIENT_NAMES[i], 60000, 0);
        started = F->clients[i] != NULL;
    }
    if (!started) {
        teardown(NULL);
        return -1;
    }
    *state = F;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < N_CLIENTS; i++)
        client_destroy(&F->clients[i]);
    bool clean = F->service.pid ? harness_service_stop_clean(&F->service) : true;
    store_destroy(&F->store);
    harness_redis_stop(&F->redis);
    harness_rmtree(F->dir);
    free(F->dir);
    free(F);
    F = NULL;
    return clean ? 0 : -1;
}

/* Whether the upload's session record is in Redis, and its entry in the
 * index of uploads in progress. */
static bool session_exists(const char *upload_id)
{
    char key[128];
    snprintf(key, sizeof key, "docstore:upload:%s", upload_id);
    redisReply *r = NULL;
    assert_int_equal(store_command(F->store, &r, "EXISTS %s", key), STORE_OK);
    bool found = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);
    r = NULL;
    assert_int_equal(store_command(F->store, &r, "ZSCORE docstore:uploads %s", upload_id),
                     STORE_OK);
    bool indexed = r->type == REDIS_REPLY_STRING;
    freeReplyObject(r);
    assert_true(found == indexed);
    return found;
}

/* Regular files under dir (recursively) whose name has no '.'. */
static int count_blobs(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (e->d_type == DT_DIR)
            n += count_blobs(path);
        else if (!strchr(e->d_name, '.'))
            n++;
    }
    closedir(d);
    return n;
}

/* --- tests ------------------------------------------------------------------ */

static void test_small_and_empty_round_trips(void **state)
{
    (void)state;
    client_t *al = F->clients[ACTION_LOGEMENT];
    Passerelle__UploadBeginRequest req;
    begin_request(&req, "Plaquette Action Logement", 0, NULL);
    req.kind = KIND(BROCHURE);
    char *empty = put_bytes(al, &req, "", 0);
    char sha[65], want[65];
    assert_int_equal(read_all(al, empty, 0, sha, 0, NULL), 0);
    harness_sha256_hex("", 0, want);
    assert_string_equal(sha, want);

    const char text[] = "Diagnostic Emploi Logement: premiers résultats.\n";
    begin_request(&req, "Diagnostic Emploi Logement", 0, NULL);
    req.kind = KIND(EMPLOYMENT_HOUSING_DIAGNOSTIC);
    char *small = put_bytes(al, &req, text, sizeof text - 1);
    assert_int_equal(read_all(F->clients[METROPOLE], small, 0, sha, 0, NULL), sizeof text - 1);
    harness_sha256_hex(text, sizeof text - 1, want);
    assert_string_equal(sha, want);
    /* A range inside it. */
    Passerelle__DocumentReadReply *r = read_range(al, small, 1, 12, 6);
    assert_int_equal(r->data.len, 6);
    assert_memory_equal(r->data.data, text + 12, 6);
    assert_string_equal(r->sha256, want);
    passerelle__document_read_reply__free_unpacked(r, NULL);

    Passerelle__Document *doc = get_document(F->clients[PARTNER], small);
    assert_string_equal(doc->owner, "ACTION_LOGEMENT");
    assert_int_equal(doc->n_versions, 1);
    assert_int_equal(doc->versions[0]->number, 1);
    assert_int_equal(doc->versions[0]->size, sizeof text - 1);
    assert_string_equal(doc->versions[0]->filename, "etude.pdf");
    assert_string_equal(doc->versions[0]->added_by, "action_logement");
    passerelle__document__free_unpacked(doc, NULL);
    free(empty);
    free(small);
}

static void test_large_round_trip_memory_bounded(void **state)
{
    (void)state;
    client_t *c = F->clients[METROPOLE];
    const uint64_t seed = 20260401;
    char sha[65];
    sha_of_sequence(seed, LARGE_BYTES, sha);
    Passerelle__UploadBeginRequest req;
    begin_request(&req, "Étude habitat privé 2026", LARGE_BYTES, sha);
    char *upload = begin(c, &req);

    long start_kb = rss_kb(F->service.pid), max_kb = start_kb;
    assert_true(start_kb > 0);
    prng_t p = {seed};
    uint8_t *buf = malloc(CHUNK);
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    unsigned n = 0;
    for (uint64_t off = 0; off < LARGE_BYTES; off += CHUNK) {
        prng_fill(&p, buf, CHUNK);
        crypto_hash_sha256_update(&st, buf, CHUNK);
        send_chunk(c, upload, off, buf, CHUNK, off + CHUNK);
        if (++n % 8 == 0) {
            long kb = rss_kb(F->service.pid);
            if (kb > max_kb)
                max_kb = kb;
        }
    }
    free(buf);
    unsigned char digest[32];
    char sent[65];
    crypto_hash_sha256_final(&st, digest);
    harness_hex32(digest, sent);
    assert_string_equal(sent, sha);
    char *id = commit(c, upload);

    char got[65];
    assert_int_equal(read_all(F->clients[ADMIN], id, 0, got, F->service.pid, &max_kb), LARGE_BYTES);
    assert_string_equal(got, sha);
    printf("docstore RSS: %ld kB at start, %ld kB at most during 200 MB up and down\n", start_kb,
           max_kb);
    free(upload);
    free(id);
    assert_true(max_kb - start_kb < RSS_BOUND_KB);
}

static void test_dedup(void **state)
{
    (void)state;
    char blobs[700];
    snprintf(blobs, sizeof blobs, "%s/blobs", F->volume);
    int before = count_blobs(blobs);
    const char text[] = "Compte rendu du groupe de travail, séance du 3 mars.";
    Passerelle__UploadBeginRequest req;
    begin_request(&req, "Compte rendu mars", 0, NULL);
    req.kind = KIND(MINUTES);
    char *a = put_bytes(F->clients[METROPOLE], &req, text, sizeof text - 1);
    begin_request(&req, "Compte rendu mars (copie)", 0, NULL);
    req.kind = KIND(MINUTES);
    char *b = put_bytes(F->clients[ACTION_LOGEMENT], &req, text, sizeof text - 1);
    assert_string_not_equal(a, b);
    assert_int_equal(count_blobs(blobs), before + 1);
    Passerelle__Document *da = get_document(F->clients[ADMIN], a);
    Passerelle__Document *db = get_document(F->clients[ADMIN], b);
    assert_string_equal(da->versions[0]->sha256, db->versions[0]->sha256);
    passerelle__document__free_unpacked(da, NULL);
    passerelle__document__free_unpacked(db, NULL);
    free(a);
    free(b);
}

static void test_versions_and_withdrawal(void **state)
{
    (void)state;
    client_t *owner = F->clients[METROPOLE], *other = F->clients[ACTION_LOGEMENT];
    Passerelle__UploadBeginRequest req;
    begin_request(&req, "Convention de partenariat", 0, NULL);
    req.kind = KIND(CONVENTION);
    char *id = put_bytes(owner, &req, "v1", 2);

    /* A new version: the owner party only. */
    char sha[65];
    harness_sha256_hex("v2!", 3, sha);
    Passerelle__UploadBeginRequest next = PASSERELLE__UPLOAD_BEGIN_REQUEST__INIT;
    next.document = id;
    next.has_size = true;
    next.size = 3;
    next.sha256 = sha;
    harness_call_refused(other, "upload.begin", &next.base, DENIED, "document");
    char *v2 = put_bytes(owner, &next, "v2!", 3);
    assert_string_equal(v2, id);
    Passerelle__Document *doc = get_document(other, id);
    assert_int_equal(doc->n_versions, 2);
    assert_int_equal(doc->versions[1]->number, 2);
    assert_string_equal(doc->title, "Convention de partenariat");
    passerelle__document__free_unpacked(doc, NULL);
    Passerelle__DocumentReadReply *r = read_range(other, id, 0, 0, 100);
    assert_int_equal(r->version, 2);
    assert_memory_equal(r->data.data, "v2!", 3);
    passerelle__document_read_reply__free_unpacked(r, NULL);

    /* Withdrawal: the owner only; the history stays, the bytes are not
     * served any more, the latest one left is. */
    Passerelle__DocumentWithdrawRequest w = PASSERELLE__DOCUMENT_WITHDRAW_REQUEST__INIT;
    w.id = id;
    w.reason = "remplacée par l'avenant";
    harness_call_refused(other, "document.withdraw", &w.base, DENIED, "id");
    Passerelle__Reply *reply = harness_call(owner, "document.withdraw", &w.base, OK, NULL);
    passerelle__reply__free_unpacked(reply, NULL);
    doc = get_document(other, id);
    assert_int_equal(doc->n_versions, 2);
    assert_true(doc->versions[1]->withdrawn);
    assert_string_equal(doc->versions[1]->withdrawal_reason, "remplacée par l'avenant");
    passerelle__document__free_unpacked(doc, NULL);
    Passerelle__DocumentReadRequest rr = PASSERELLE__DOCUMENT_READ_REQUEST__INIT;
    rr.id = id;
    rr.has_version = true;
    rr.version = 2;
    harness_call_refused(other, "document.read", &rr.base, PRECONDITION, "version");
    r = read_range(other, id, 0, 0, 100);
    assert_int_equal(r->version, 1);
    passerelle__document_read_reply__free_unpacked(r, NULL);
    w.has_version = true;
    w.version = 2;
    harness_call_refused(owner, "document.withdraw", &w.base, PRECONDITION, "version");
    free(id);
    free(v2);
}

static void test_access_rules(void **state)
{
    (void)state;
    client_t *al = F->clients[ACTION_LOGEMENT];
    Passerelle__UploadBeginRequest req;
    begin_request(&req, "Note interne confidentielle", 0, NULL);
    req.has_visibility = true;
    req.visibility = PASSERELLE__VISIBILITY__VISIBILITY_PRIVATE;
    char *id = put_bytes(al, &req, "secret", 6);

    Passerelle__DocumentGetRequest get = PASSERELLE__DOCUMENT_GET_REQUEST__INIT;
    get.id = id;
    harness_call_refused(F->clients[METROPOLE], "document.get", &get.base, NOT_FOUND, "id");
    harness_call_refused(F->clients[PARTNER], "document.get", &get.base, NOT_FOUND, "id");
    Passerelle__DocumentReadRequest rr = PASSERELLE__DOCUMENT_READ_REQUEST__INIT;
    rr.id = id;
    harness_call_refused(F->clients[METROPOLE], "document.read", &rr.base, NOT_FOUND, "id");
    Passerelle__DocumentWithdrawRequest w = PASSERELLE__DOCUMENT_WITHDRAW_REQUEST__INIT;
    w.id = id;
    harness_call_refused(F->clients[METROPOLE], "document.withdraw", &w.base, NOT_FOUND, "id");
    Passerelle__Document *doc = get_document(F->clients[ADMIN], id);
    passerelle__document__free_unpacked(doc, NULL);
    doc = get_document(al, id);
    passerelle__document__free_unpacked(doc, NULL);

    /* Unknown and malformed ids. */
    char unknown[ID_LEN];
    id_new('F', unknown);
    get.id = unknown;
    harness_call_refused(al, "document.get", &get.base, NOT_FOUND, "id");
    get.id = "nonsense";
    harness_call_refused(al, "document.get", &get.base, INVALID, "id");

    /* The fsck is the operations' (the ACL). */
    Passerelle__FsckRequest fsck = PASSERELLE__FSCK_REQUEST__INIT;
    harness_call_refused(al, "docs.fsck", &fsck.base, DENIED, NULL);
    free(id);
}

static size_t list_count(client_t *c, Passerelle__DocumentListRequest *req, const char *must_hold)
{
    size_t total = 0;
    bool held = must_hold == NULL;
    char token[64] = "";
    do {
        req->page_token = token;
        Passerelle__Reply *reply = harness_call(c, "document.list", &req->base, OK, NULL);
        Passerelle__DocumentList *list =
            passerelle__document_list__unpack(NULL, reply->body.len, reply->body.data);
        passerelle__reply__free_unpacked(reply, NULL);
        assert_non_null(list);
        total += list->n_documents;
        for (size_t i = 0; i < list->n_documents; i++)
            if (must_hold && strcmp(list->documents[i]->id, must_hold) == 0)
                held = true;
        snprintf(token, sizeof token, "%s", list->next_page_token ? list->next_page_token : "");
        passerelle__document_list__free_unpacked(list, NULL);
    } while (token[0]);
    req->page_token = NULL;
    assert_true(held);
    return total;
}

static void test_list_filters(void **state)
{
    (void)state;
    client_t *m = F->clients[METROPOLE];
    Passerelle__UploadBeginRequest req;
    static char *tags[] = {"Parc social", "CT3"};
    begin_request(&req, "Bilan annuel du logement des salariés", 0, NULL);
    req.kind = KIND(ANNUAL_REVIEW);
    req.theme = 3;
    req.territory = "CT3";
    req.tags = tags;
    req.n_tags = 2;
    char *review = put_bytes(m, &req, "bilan", 5);
    begin_request(&req, "Bilan privé", 0, NULL);
    req.kind = KIND(ANNUAL_REVIEW);
    req.has_visibility = true;
    req.visibility = PASSERELLE__VISIBILITY__VISIBILITY_PRIVATE;
    char *hidden = put_bytes(F->clients[ACTION_LOGEMENT], &req, "prive", 5);

    Passerelle__DocumentListRequest l = PASSERELLE__DOCUMENT_LIST_REQUEST__INIT;
    l.has_kind = true;
    l.kind = KIND(ANNUAL_REVIEW);
    assert_int_equal(list_count(m, &l, review), 1); /* the private one hidden */
    assert_int_equal(list_count(F->clients[ADMIN], &l, hidden), 2);
    assert_int_equal(list_count(F->clients[ACTION_LOGEMENT], &l, hidden), 2);
    l.has_kind = false;
    l.has_theme = true;
    l.theme = 3;
    assert_int_equal(list_count(m, &l, review), 1);
    l.has_theme = false;
    l.territory = "CT3";
    assert_int_equal(list_count(m, &l, review), 1);
    l.territory = NULL;
    l.tag = "parc SOCIAL";
    assert_int_equal(list_count(m, &l, review), 1);
    l.tag = NULL;
    l.owner = "metropole";
    l.words = "SALARIES bilan";
    assert_int_equal(list_count(m, &l, review), 1);
    l.words = "bilan inexistant";
    assert_int_equal(list_count(m, &l, NULL), 0);
    l.words = NULL;
    l.owner = NULL;
    /* Every document, one by one. */
    l.has_page_size = true;
    l.page_size = 1;
    size_t all = list_count(F->clients[ADMIN], &l, hidden);
    l.page_size = 200;
    assert_int_equal(list_count(F->clients[ADMIN], &l, hidden), all);
    assert_true(all >= 8);
    l.page_size = 1000;
    harness_call_refused(m, "document.list", &l.base, INVALID, "page_size");
    l.page_size = 0;
    l.owner = "nobody";
    harness_call_refused(m, "document.list", &l.base, INVALID, "owner");
    free(review);
    free(hidden);
}

static void test_upload_refusals(void **state)
{
    (void)state;
    client_t *c = F->clients[PARTNER];
    uint8_t *big = calloc(1, CHUNK + 1);
    char sha[65];
    harness_sha256_hex(big, 3000, sha);
    Passerelle__UploadBeginRequest req;
    begin_request(&req, "Etude refusée", 3000, sha);
    req.theme = 9;
    harness_call_refused(c, "upload.begin", &req.base, INVALID, "theme");
    begin_request(&req, "Etude refusée", 3000, "abc");
    harness_call_refused(c, "upload.begin", &req.base, INVALID, "sha256");
    begin_request(&req, "Etude trop grande", 600ULL * 1024 * 1024, sha);
    harness_call_refused(c, "upload.begin", &req.base, EXHAUSTED, "size");

    begin_request(&req, "Etude en morceaux", 3000, sha);
    char *upload = begin(c, &req);
    chunk_refused(c, upload, 10, big, 100, INVALID, "offset");    /* not the next */
    chunk_refused(c, upload, 0, big, CHUNK + 1, INVALID, "data"); /* too large */
    chunk_refused(c, upload, 0, big, 3001, INVALID, "offset");    /* beyond the size */
    chunk_refused(F->clients[METROPOLE], upload, 0, big, 100, NOT_FOUND, "upload_id");
    char unknown[ID_LEN];
    id_new('L', unknown);
    chunk_refused(c, unknown, 0, big, 100, NOT_FOUND, "upload_id");
    chunk_refused(c, "L-bad", 0, big, 100, INVALID, "upload_id");
    send_chunk(c, upload, 0, big, 1000, 1000);
    send_chunk(c, upload, 0, big, 1000, 1000); /* sent again: acknowledged */
    Passerelle__UploadCommitRequest cr = PASSERELLE__UPLOAD_COMMIT_REQUEST__INIT;
    cr.upload_id = upload;
    harness_call_refused(c, "upload.commit", &cr.base, PRECONDITION, "upload_id");
    send_chunk(c, upload, 1000, big, 2000, 3000);
    assert_true(session_exists(upload));
    char idem[ID_LEN];
    id_new('K', idem);
    Passerelle__Reply *first = harness_call_keyed(c, "upload.commit", &cr.base, idem, OK, NULL);
    Passerelle__UploadSession *done =
        passerelle__upload_session__unpack(NULL, first->body.len, first->body.data);
    assert_non_null(done);
    assert_true(id_valid('F', done->document));
    assert_int_equal(done->received, 3000);
    /* The session went with the commit, record and index entry. */
    assert_false(session_exists(upload));
    /* Sent again with its idempotency key (a lost reply): the same answer. */
    Passerelle__Reply *again = harness_call_keyed(c, "upload.commit", &cr.base, idem, OK, NULL);
    assert_int_equal(again->body.len, first->body.len);
    assert_memory_equal(again->body.data, first->body.data, first->body.len);
    /* As a new request: the upload is over. */
    harness_call_refused(c, "upload.commit", &cr.base, NOT_FOUND, "upload_id");
    chunk_refused(c, upload, 3000, big, 0, NOT_FOUND, "upload_id");
    Passerelle__Document *doc = get_document(c, done->document);
    assert_int_equal(doc->n_versions, 1);
    passerelle__document__free_unpacked(doc, NULL);
    passerelle__upload_session__free_unpacked(done, NULL);
    passerelle__reply__free_unpacked(first, NULL);
    passerelle__reply__free_unpacked(again, NULL);
    free(upload);

    /* The wrong SHA-256: refused, the upload is gone. */
    char tmp[700];
    snprintf(tmp, sizeof tmp, "%s/tmp", F->volume);
    harness_sha256_hex("other", 5, sha);
    begin_request(&req, "Etude faussée", 100, sha);
    upload = begin(c, &req);
    send_chunk(c, upload, 0, big, 100, 100);
    cr.upload_id = upload;
    harness_call_refused(c, "upload.commit", &cr.base, INVALID, "sha256");
    assert_int_equal(count_blobs(tmp), 0);
    assert_false(session_exists(upload));
    chunk_refused(c, upload, 100, big, 0, NOT_FOUND, "upload_id");
    free(upload);

    /* No more uploads at once than configured (4 here). */
    char *open[4];
    harness_sha256_hex(big, 10, sha);
    for (int i = 0; i < 4; i++) {
        begin_request(&req, "Etude en attente", 10, sha);
        open[i] = begin(c, &req);
    }
    harness_call_refused(c, "upload.begin", &req.base, EXHAUSTED, NULL);
    for (int i = 0; i < 4; i++) {
        send_chunk(c, open[i], 0, big, 10, 10);
        free(commit(c, open[i]));
        assert_false(session_exists(open[i]));
        free(open[i]);
    }
    free(big);
}

static int count_type(const harness_events_t *events, const char *type)
{
    int n = 0;
    for (size_t i = 0; i < events->count; i++)
        if (strcmp(events->entries[i]->event->type, type) == 0)
            n++;
    return n;
}

static void test_events(void **state)
{
    (void)state;
    harness_events_t before;
    harness_events_read(F->clients[ADMIN], NULL, &before);
    client_t *c = F->clients[METROPOLE];
    Passerelle__UploadBeginRequest req;
    begin_request(&req, "Etude pour les événements", 0, NULL);
    char *id = put_bytes(c, &req, "e1", 2);
    Passerelle__UploadBeginRequest next = PASSERELLE__UPLOAD_BEGIN_REQUEST__INIT;
    next.document = id;
    free(put_bytes(c, &next, "e2", 2));
    Passerelle__DocumentWithdrawRequest w = PASSERELLE__DOCUMENT_WITHDRAW_REQUEST__INIT;
    w.id = id;
    Passerelle__Reply *reply = harness_call(c, "document.withdraw", &w.base, OK, NULL);
    passerelle__reply__free_unpacked(reply, NULL);

    harness_events_t after;
    harness_events_read(F->clients[ADMIN], before.last_position, &after);
    assert_int_equal(after.count, 3);
    assert_int_equal(count_type(&after, "document.published"), 1);
    assert_int_equal(count_type(&after, "document.version_added"), 1);
    assert_int_equal(count_type(&after, "document.withdrawn"), 1);
    char subject[64];
    snprintf(subject, sizeof subject, "documents/%s", id);
    for (size_t i = 0; i < after.count; i++) {
        const Passerelle__Event *e = after.entries[i]->event;
        assert_string_equal(e->subject, subject);
        assert_string_equal(e->source, "/passerelle/docstore");
        Passerelle__Document *doc = passerelle__document__unpack(NULL, e->data.len, e->data.data);
        assert_non_null(doc);
        assert_string_equal(doc->id, id);
        assert_int_equal(doc->n_versions, i == 0 ? 1 : 2);
        passerelle__document__free_unpacked(doc, NULL);
    }
    /* Every write so far made exactly its event: none for chunks. */
    assert_int_equal(count_type(&before, "document.published") +
                         count_type(&before, "document.version_added") +
                         count_type(&before, "document.withdrawn"),
                     (int)before.count);
    harness_events_free(&before);
    harness_events_free(&after);
    free(id);
}

/* --- several requests in flight ------------------------------------------- */

#define WINDOW_MAX 16

typedef struct {
    bool used;
    char request_id[ID_LEN];
    uint64_t offset;
    size_t len;
} flight_t;

static flight_t *flight_take(flight_t *slots, unsigned window)
{
    for (unsigned i = 0; i < window; i++)
        if (!slots[i].used) {
            slots[i].used = true;
            id_new('Q', slots[i].request_id);
            return &slots[i];
        }
    return NULL;
}

static flight_t *flight_of(flight_t *slots, unsigned window, const Passerelle__Reply *reply)
{
    for (unsigned i = 0; i < window; i++)
        if (slots[i].used && reply->request_id &&
            strcmp(slots[i].request_id, reply->request_id) == 0)
            return &slots[i];
    fail_msg("a reply to no request in flight");
    return NULL;
}

static void chunk_post(client_t *c, const char *upload, const uint8_t *data, const flight_t *slot)
{
    Passerelle__UploadChunkRequest req = PASSERELLE__UPLOAD_CHUNK_REQUEST__INIT;
    req.upload_id = (char *)upload;
    req.has_offset = req.has_data = true;
    req.offset = slot->offset;
    req.data.data = (uint8_t *)data + slot->offset;
    req.data.len = slot->len;
    /* No idempotency key: a chunk is idempotent by its offset. */
    assert_int_equal(client_send_request(c, slot->request_id, "upload.chunk", &req.base, NULL), 0);
}

/* The next reply of a transfer, expected OK: its slot, its body in *body. */
static flight_t *flight_next(client_t *c, flight_t *slots, unsigned window,
                             const ProtobufCMessageDescriptor *desc, ProtobufCMessage **body)
{
    Passerelle__Reply *reply = NULL;
    assert_int_equal(client_receive_reply(c, 0, &reply), 0);
    harness_expect_status(reply, OK, NULL);
    flight_t *slot = flight_of(slots, window, reply);
    *body = protobuf_c_message_unpack(desc, NULL, reply->body.len, reply->body.data);
    assert_non_null(*body);
    passerelle__reply__free_unpacked(reply, NULL);
    return slot;
}

/* Sends bytes [from, end) of data in chunks of CHUNK, window of them in
 * flight: each reply, in order, says the upload holds up to its chunk's
 * end. */
static void send_windowed(client_t *c, const char *upload, const uint8_t *data, uint64_t from,
                          uint64_t end, unsigned window)
{
    assert_true(window > 0 && window <= WINDOW_MAX);
    flight_t slots[WINDOW_MAX];
    memset(slots, 0, sizeof slots);
    uint64_t next = from, acked = from;
    while (acked < end) {
        flight_t *slot;
        while (next < end && (slot = flight_take(slots, window))) {
            slot->offset = next;
            slot->len = end - next < CHUNK ? (size_t)(end - next) : CHUNK;
            next += slot->len;
            chunk_post(c, upload, data, slot);
        }
        ProtobufCMessage *body = NULL;
        slot = flight_next(c, slots, window, &passerelle__upload_session__descriptor, &body);
        Passerelle__UploadSession *s = (Passerelle__UploadSession *)body;
        assert_int_equal(slot->offset, acked);
        assert_int_equal(s->received, slot->offset + slot->len);
        acked = s->received;
        slot->used = false;
        passerelle__upload_session__free_unpacked(s, NULL);
    }
}

/* Reads a version whole with window ranges in flight after the first,
 * into a buffer of its size (malloc'd, its size in *size). */
static uint8_t *read_windowed(client_t *c, const char *id, uint64_t *size)
{
    Passerelle__DocumentReadReply *first = read_range(c, id, 0, 0, CHUNK);
    assert_true(first->has_window);
    unsigned window = first->window;
    assert_true(window > 1 && window <= WINDOW_MAX);
    uint32_t version = first->version;
    *size = first->size;
    uint8_t *out = malloc(first->size ? first->size : 1);
    memcpy(out, first->data.data, first->data.len);
    uint64_t next = first->data.len, done = first->data.len;
    passerelle__document_read_reply__free_unpacked(first, NULL);
    flight_t slots[WINDOW_MAX];
    memset(slots, 0, sizeof slots);
    while (done < *size) {
        flight_t *slot;
        while (next < *size && (slot = flight_take(slots, window))) {
            slot->offset = next;
            slot->len = *size - next < CHUNK ? (size_t)(*size - next) : CHUNK;
            next += slot->len;
            Passerelle__DocumentReadRequest req = PASSERELLE__DOCUMENT_READ_REQUEST__INIT;
            req.id = (char *)id;
            req.has_version = req.has_offset = req.has_length = true;
            req.version = version;
            req.offset = slot->offset;
            req.length = (uint32_t)slot->len;
            assert_int_equal(
                client_send_request(c, slot->request_id, "document.read", &req.base, NULL), 0);
        }
        ProtobufCMessage *body = NULL;
        slot = flight_next(c, slots, window, &passerelle__document_read_reply__descriptor, &body);
        Passerelle__DocumentReadReply *r = (Passerelle__DocumentReadReply *)body;
        assert_int_equal(r->offset, slot->offset);
        assert_int_equal(r->data.len, slot->len);
        memcpy(out + r->offset, r->data.data, r->data.len);
        done += r->data.len;
        slot->used = false;
        passerelle__document_read_reply__free_unpacked(r, NULL);
    }
    return out;
}

/* begin, and the window the session grants. */
static char *begin_windowed(client_t *c, Passerelle__UploadBeginRequest *req, unsigned *window)
{
    Passerelle__UploadSession *s = harness_doc_session_call(c, "upload.begin", &req->base);
    assert_true(id_valid('L', s->upload_id));
    assert_int_equal(s->received, 0);
    assert_true(s->has_window);
    *window = s->window;
    char *id = strdup(s->upload_id);
    passerelle__upload_session__free_unpacked(s, NULL);
    return id;
}

static void test_windowed_round_trip(void **state)
{
    (void)state;
    client_t *c = F->clients[METROPOLE];
    const size_t size = 9 * CHUNK + 54321;
    uint8_t *data = harness_pattern(size, 17, 9);
    char sha[65];
    harness_sha256_hex(data, size, sha);
    Passerelle__UploadBeginRequest req;
    begin_request(&req, "Etude envoyée à plusieurs morceaux", size, sha);
    unsigned window = 0;
    char *upload = begin_windowed(c, &req, &window);
    assert_int_equal(window, 4); /* the default credit */
    send_windowed(c, upload, data, 0, size, window);
    char *id = commit(c, upload);
    uint64_t got_size = 0;
    uint8_t *back = read_windowed(F->clients[PARTNER], id, &got_size);
    assert_int_equal(got_size, size);
    assert_memory_equal(back, data, size);
    free(back);
    free(id);
    free(upload);
    free(data);
}

/* A chunk sent again after its reply was lost is answered with where the
 * upload stands and changes nothing, even with later chunks in flight; a
 * chunk past the next offset is refused and changes nothing either. */
static void test_chunk_repeated_in_window(void **state)
{
    (void)state;
    client_t *c = F->clients[ACTION_LOGEMENT];
    const size_t size = 6 * CHUNK + 99;
    uint8_t *data = harness_pattern(size, 23, 7);
    char sha[65];
    harness_sha256_hex(data, size, sha);
    Passerelle__UploadBeginRequest req;
    begin_request(&req, "Etude aux morceaux répétés", size, sha);
    unsigned window = 0;
    char *upload = begin_windowed(c, &req, &window);
    send_windowed(c, upload, data, 0, 3 * CHUNK, window);
    /* Chunks 0 and 1 again, and chunk 4 (one too far), in flight with 3. */
    flight_t slots[WINDOW_MAX];
    memset(slots, 0, sizeof slots);
    const uint64_t offsets[] = {0, CHUNK, 4 * CHUNK, 3 * CHUNK};
    for (int i = 0; i < 4; i++) {
        flight_t *slot = flight_take(slots, WINDOW_MAX);
        slot->offset = offsets[i];
        slot->len = CHUNK;
        chunk_post(c, upload, data, slot);
    }
    for (int i = 0; i < 4; i++) {
        Passerelle__Reply *reply = NULL;
        assert_int_equal(client_receive_reply(c, 0, &reply), 0);
        flight_t *slot = flight_of(slots, WINDOW_MAX, reply);
        if (slot->offset == 4 * CHUNK) {
            harness_expect_status(reply, INVALID, "offset");
        } else {
            harness_expect_status(reply, OK, NULL);
            Passerelle__UploadSession *s =
                passerelle__upload_session__unpack(NULL, reply->body.len, reply->body.data);
            assert_int_equal(s->received, slot->offset == 3 * CHUNK ? 4 * CHUNK : 3 * CHUNK);
            passerelle__upload_session__free_unpacked(s, NULL);
        }
        slot->used = false;
        passerelle__reply__free_unpacked(reply, NULL);
    }
    send_windowed(c, upload, data, 4 * CHUNK, size, window);
    char *id = commit(c, upload);
    char got[65];
    assert_int_equal(read_all(c, id, 0, got, 0, NULL), size);
    assert_string_equal(got, sha);
    free(id);
    free(upload);
    free(data);
}

/* A client that ignores its credit and sends a whole file of chunks at
 * once: each is still taken in order, and what waits for the service sits
 * in bounded queues (the ROUTER's high-water mark per connection), not in
 * the service's memory. */
static void test_credit_ignored_memory_bounded(void **state)
{
    (void)state;
    client_t *c = F->clients[PARTNER];
    const unsigned chunks = 96;
    const size_t size = (size_t)chunks * CHUNK;
    uint8_t *data = harness_pattern(size, 31, 5);
    char sha[65];
    harness_sha256_hex(data, size, sha);
    Passerelle__UploadBeginRequest req;
    begin_request(&req, "Etude envoyée sans attendre", size, sha);
    unsigned window = 0;
    char *upload = begin_windowed(c, &req, &window);
    long start_kb = rss_kb(F->service.pid), max_kb = start_kb;
    flight_t *slots = calloc(chunks, sizeof *slots);
    for (unsigned i = 0; i < chunks; i++) {
        flight_t *slot = flight_take(slots, chunks);
        slot->offset = (uint64_t)i * CHUNK;
        slot->len = CHUNK;
        chunk_post(c, upload, data, slot);
    }
    uint64_t acked = 0;
    for (unsigned i = 0; i < chunks; i++) {
        ProtobufCMessage *body = NULL;
        flight_t *slot =
            flight_next(c, slots, chunks, &passerelle__upload_session__descriptor, &body);
        Passerelle__UploadSession *s = (Passerelle__UploadSession *)body;
        assert_int_equal(s->received, slot->offset + CHUNK);
        assert_int_equal(slot->offset, acked);
        acked = s->received;
        slot->used = false;
        passerelle__upload_session__free_unpacked(s, NULL);
        long kb = rss_kb(F->service.pid);
        if (kb > max_kb)
            max_kb = kb;
    }
    char *id = commit(c, upload);
    char got[65];
    assert_int_equal(read_all(c, id, 0, got, 0, NULL), size);
    assert_string_equal(got, sha);
    printf("docstore RSS: %ld kB at start, %ld kB at most while %u MB came at once\n", start_kb,
           max_kb, chunks);
    assert_true(max_kb - start_kb < FLOOD_RSS_BOUND_KB);
    free(slots);
    free(id);
    free(upload);
    free(data);
}

/* --- a whole document in its upload.begin ----------------------------------- */

static size_t uploads_open(void)
{
    redisReply *r = NULL;
    assert_int_equal(store_command(F->store, &r, "ZCARD docstore:uploads"), STORE_OK);
    size_t n = (size_t)r->integer;
    freeReplyObject(r);
    return n;
}

/* upload.begin carrying all of data under key; returns the session. */
static Passerelle__UploadSession *put_whole(client_t *c, Passerelle__UploadBeginRequest *req,
                                            const void *data, size_t len, const char *key,
                                            int status, const char *field)
{
    char sha[65];
    harness_sha256_hex(data, len, sha);
    req->has_size = req->has_data = true;
    req->size = len;
    if (!req->sha256)
        req->sha256 = sha;
    req->data.data = (uint8_t *)data;
    req->data.len = len;
    Passerelle__Reply *reply =
        harness_call_keyed(c, "upload.begin", &req->base, key, status, field);
    req->sha256 = req->sha256 == sha ? NULL : req->sha256;
    Passerelle__UploadSession *s =
        status == OK ? passerelle__upload_session__unpack(NULL, reply->body.len, reply->body.data)
                     : NULL;
    passerelle__reply__free_unpacked(reply, NULL);
    if (status == OK) {
        assert_non_null(s);
        assert_true(id_valid('F', s->document));
        assert_int_equal(s->received, len);
    }
    return s;
}

static void test_whole_document_in_begin(void **state)
{
    (void)state;
    client_t *owner = F->clients[METROPOLE], *other = F->clients[ACTION_LOGEMENT];
    char blobs[700], tmp[700];
    snprintf(blobs, sizeof blobs, "%s/blobs", F->volume);
    snprintf(tmp, sizeof tmp, "%s/tmp", F->volume);
    harness_events_t before;
    harness_events_read(F->clients[ADMIN], NULL, &before);
    int blobs_before = count_blobs(blobs);
    size_t open_before = uploads_open();
    const size_t len = 50 * 1024;
    uint8_t *data = harness_pattern(len, 41, 3);

    /* One request: stored, recorded, no session left behind. */
    Passerelle__UploadBeginRequest req;
    begin_request(&req, "Compte rendu en une fois", 0, NULL);
    req.kind = KIND(MINUTES);
    Passerelle__UploadSession *first = put_whole(owner, &req, data, len, "whole-1", OK, NULL);
    assert_int_equal(count_blobs(blobs), blobs_before + 1);
    assert_int_equal(uploads_open(), open_before);
    assert_int_equal(count_blobs(tmp), 0);
    char got[65], sha[65];
    harness_sha256_hex(data, len, sha);
    assert_int_equal(read_all(other, first->document, 0, got, 0, NULL), len);
    assert_string_equal(got, sha);

    /* Sent again with its key (a lost reply): the same document, nothing
     * new. */
    Passerelle__UploadSession *again = put_whole(owner, &req, data, len, "whole-1", OK, NULL);
    assert_string_equal(again->document, first->document);
    passerelle__upload_session__free_unpacked(again, NULL);

    /* The same bytes as another document: stored once. */
    begin_request(&req, "Compte rendu en une fois (copie)", 0, NULL);
    Passerelle__UploadSession *copy = put_whole(other, &req, data, len, "whole-2", OK, NULL);
    assert_string_not_equal(copy->document, first->document);
    assert_int_equal(count_blobs(blobs), blobs_before + 1);

    /* A new version: the owner party's only; a private document is not
     * even seen by another party. */
    Passerelle__UploadBeginRequest next = PASSERELLE__UPLOAD_BEGIN_REQUEST__INIT;
    next.document = first->document;
    put_whole(other, &next, "v2", 2, "whole-3", DENIED, "document");
    Passerelle__UploadSession *v2 = put_whole(owner, &next, "v2", 2, "whole-4", OK, NULL);
    assert_string_equal(v2->document, first->document);
    Passerelle__Document *doc = get_document(other, first->document);
    assert_int_equal(doc->n_versions, 2);
    assert_int_equal(doc->versions[1]->size, 2);
    passerelle__document__free_unpacked(doc, NULL);
    begin_request(&req, "Note privée en une fois", 0, NULL);
    req.has_visibility = true;
    req.visibility = PASSERELLE__VISIBILITY__VISIBILITY_PRIVATE;
    Passerelle__UploadSession *hidden = put_whole(other, &req, "prive", 5, "whole-5", OK, NULL);
    next.document = hidden->document;
    put_whole(owner, &next, "x", 1, "whole-6", NOT_FOUND, "document");

    /* Refusals, nothing stored: bytes that are not the size announced, nor
     * the SHA-256 announced, or more than one chunk. */
    begin_request(&req, "Compte rendu refusé", 0, NULL);
    req.has_size = req.has_data = true;
    req.size = 10;
    req.sha256 = sha;
    req.data.data = data;
    req.data.len = 9;
    harness_call_refused(owner, "upload.begin", &req.base, INVALID, "data");
    put_whole(owner, &req, data, 100, NULL, INVALID, "sha256");
    req.sha256 = NULL;
    uint8_t *big = calloc(1, CHUNK + 1);
    put_whole(owner, &req, big, CHUNK + 1, NULL, INVALID, "data");
    free(big);
    assert_int_equal(count_blobs(tmp), 0);
    assert_int_equal(uploads_open(), open_before);

    /* Exactly one event per document made or extended. */
    harness_events_t after;
    harness_events_read(F->clients[ADMIN], before.last_position, &after);
    assert_int_equal(after.count, 4);
    assert_int_equal(count_type(&after, "document.published"), 3);
    assert_int_equal(count_type(&after, "document.version_added"), 1);
    harness_events_free(&before);
    harness_events_free(&after);
    passerelle__upload_session__free_unpacked(first, NULL);
    passerelle__upload_session__free_unpacked(copy, NULL);
    passerelle__upload_session__free_unpacked(v2, NULL);
    passerelle__upload_session__free_unpacked(hidden, NULL);
    free(data);
}

/* --- a trailing SHA-256 ------------------------------------------------------ */

/* upload.commit naming sha (NULL: none), under key (NULL: a fresh one);
 * the reply, which must have this status and field. */
static Passerelle__Reply *commit_naming(client_t *c, const char *upload, const char *sha,
                                        const char *key, int status, const char *field)
{
    Passerelle__UploadCommitRequest cr = PASSERELLE__UPLOAD_COMMIT_REQUEST__INIT;
    cr.upload_id = (char *)upload;
    cr.sha256 = (char *)sha;
    return key ? harness_call_keyed(c, "upload.commit", &cr.base, key, status, field)
               : harness_call(c, "upload.commit", &cr.base, status, field);
}

/* The document a commit naming sha made (malloc'd). */
static char *commit_trailing(client_t *c, const char *upload, const char *sha)
{
    Passerelle__Reply *reply = commit_naming(c, upload, sha, NULL, OK, NULL);
    Passerelle__UploadSession *done =
        passerelle__upload_session__unpack(NULL, reply->body.len, reply->body.data);
    passerelle__reply__free_unpacked(reply, NULL);
    assert_non_null(done);
    assert_true(id_valid('F', done->document));
    char *id = strdup(done->document);
    passerelle__upload_session__free_unpacked(done, NULL);
    return id;
}

/* A begin naming no SHA-256 (req's title, len bytes) and all of data sent
 * in chunks; returns the upload id. */
static char *begin_and_send(client_t *c, const char *title, const uint8_t *data, size_t len)
{
    Passerelle__UploadBeginRequest req;
    begin_request(&req, title, len, NULL);
    char *upload = begin(c, &req);
    assert_int_equal(harness_doc_send_range(c, upload, data, 0, len, false), len);
    return upload;
}

/* Reads the latest version of id whole (len bytes) and compares it. */
static void expect_bytes(client_t *c, const char *id, const uint8_t *data, size_t len)
{
    uint8_t *back = calloc(1, len);
    for (size_t offset = 0; offset < len;) {
        Passerelle__DocumentReadReply *r = read_range(c, id, 0, offset, CHUNK);
        assert_int_equal(r->size, len);
        assert_true(r->data.len > 0 && offset + r->data.len <= len);
        memcpy(back + offset, r->data.data, r->data.len);
        offset += r->data.len;
        passerelle__document_read_reply__free_unpacked(r, NULL);
    }
    assert_memory_equal(back, data, len);
    free(back);
}

/* A begin that names no SHA-256, chunks, and a commit that names it: the
 * version, its bytes and its event carry it; the commit sent again with
 * its key gets the same answer, the key with another SHA-256 is a reused
 * key (the idempotency record covers the commit's SHA-256). */
static void test_trailing_sha256_round_trip(void **state)
{
    (void)state;
    client_t *c = F->clients[METROPOLE];
    harness_events_t before;
    harness_events_read(F->clients[ADMIN], NULL, &before);
    const size_t len = 2 * CHUNK + 345;
    uint8_t *data = harness_pattern(len, 61, 5);
    char sha[65], other[65];
    harness_sha256_hex(data, len, sha);
    harness_sha256_hex("other", 5, other);

    char *upload = begin_and_send(c, "Etude au hash en fin", data, len);
    Passerelle__Reply *first = commit_naming(c, upload, sha, "trailing-commit-1", OK, NULL);
    Passerelle__UploadSession *done =
        passerelle__upload_session__unpack(NULL, first->body.len, first->body.data);
    assert_non_null(done);
    assert_true(id_valid('F', done->document));
    assert_false(session_exists(upload));
    Passerelle__Reply *again = commit_naming(c, upload, sha, "trailing-commit-1", OK, NULL);
    assert_int_equal(again->body.len, first->body.len);
    assert_memory_equal(again->body.data, first->body.data, first->body.len);
    passerelle__reply__free_unpacked(again, NULL);
    passerelle__reply__free_unpacked(
        commit_naming(c, upload, other, "trailing-commit-1", INVALID, "idempotency_key"), NULL);

    Passerelle__Document *doc = get_document(F->clients[PARTNER], done->document);
    assert_int_equal(doc->n_versions, 1);
    assert_string_equal(doc->versions[0]->sha256, sha);
    assert_int_equal(doc->versions[0]->size, len);
    passerelle__document__free_unpacked(doc, NULL);
    char got[65];
    assert_int_equal(read_all(F->clients[ACTION_LOGEMENT], done->document, 0, got, 0, NULL), len);
    assert_string_equal(got, sha);
    expect_bytes(c, done->document, data, len);

    /* A new version the same way: document.version_added carries it. */
    Passerelle__UploadBeginRequest next = PASSERELLE__UPLOAD_BEGIN_REQUEST__INIT;
    next.document = done->document;
    next.has_size = true;
    next.size = CHUNK + 1;
    char *upload2 = begin(c, &next);
    assert_int_equal(harness_doc_send_range(c, upload2, data, 0, CHUNK + 1, false), CHUNK + 1);
    char sha2[65];
    harness_sha256_hex(data, CHUNK + 1, sha2);
    char *same = commit_trailing(c, upload2, sha2);
    assert_string_equal(same, done->document);

    harness_events_t after;
    harness_events_read(F->clients[ADMIN], before.last_position, &after);
    assert_int_equal(after.count, 2);
    for (size_t i = 0; i < after.count; i++) {
        const Passerelle__Event *e = after.entries[i]->event;
        assert_string_equal(e->type, i == 0 ? "document.published" : "document.version_added");
        Passerelle__Document *d = passerelle__document__unpack(NULL, e->data.len, e->data.data);
        assert_non_null(d);
        assert_int_equal(d->n_versions, i + 1);
        assert_string_equal(d->versions[i]->sha256, i == 0 ? sha : sha2);
        passerelle__document__free_unpacked(d, NULL);
    }
    harness_events_free(&before);
    harness_events_free(&after);
    passerelle__upload_session__free_unpacked(done, NULL);
    passerelle__reply__free_unpacked(first, NULL);
    free(same);
    free(upload2);
    free(upload);
    free(data);
}

/* Every refusal a trailing SHA-256 adds, with what each leaves: a commit
 * naming none after a begin naming none, or a malformed one, or one that
 * is not the begin's, is refused and leaves the upload to be committed
 * again; bytes that do not match it end the upload, nothing visible, and
 * the same bytes sent again in a new upload go through; a whole document
 * still names its SHA-256 in its begin. */
static void test_trailing_sha256_refusals(void **state)
{
    (void)state;
    client_t *c = F->clients[ACTION_LOGEMENT];
    char blobs[700], tmp[700];
    snprintf(blobs, sizeof blobs, "%s/blobs", F->volume);
    snprintf(tmp, sizeof tmp, "%s/tmp", F->volume);
    harness_events_t before;
    harness_events_read(F->clients[ADMIN], NULL, &before);
    int blobs_before = count_blobs(blobs);
    size_t open_before = uploads_open();
    const size_t len = CHUNK + 4321;
    uint8_t *data = harness_pattern(len, 62, 7);
    char sha[65], wrong[65];
    harness_sha256_hex(data, len, sha);
    harness_sha256_hex(data, len - 1, wrong);

    /* Named by neither, or malformed: refused, the upload stays. */
    char *upload = begin_and_send(c, "Etude sans hash", data, len);
    passerelle__reply__free_unpacked(commit_naming(c, upload, NULL, NULL, INVALID, "sha256"), NULL);
    passerelle__reply__free_unpacked(commit_naming(c, upload, "", NULL, INVALID, "sha256"), NULL);
    passerelle__reply__free_unpacked(commit_naming(c, upload, "12ab", NULL, INVALID, "sha256"),
                                     NULL);
    assert_true(session_exists(upload));

    /* Not the bytes': refused, the upload is over, nothing visible. */
    passerelle__reply__free_unpacked(commit_naming(c, upload, wrong, NULL, INVALID, "sha256"),
                                     NULL);
    assert_false(session_exists(upload));
    assert_int_equal(count_blobs(tmp), 0);
    assert_int_equal(count_blobs(blobs), blobs_before);
    chunk_refused(c, upload, 0, data, 1, NOT_FOUND, "upload_id");
    passerelle__reply__free_unpacked(commit_naming(c, upload, sha, NULL, NOT_FOUND, "upload_id"),
                                     NULL);
    harness_events_t after;
    harness_events_read(F->clients[ADMIN], before.last_position, &after);
    assert_int_equal(after.count, 0);
    harness_events_free(&after);
    free(upload);

    /* Sent again, committed with the right one: through. */
    upload = begin_and_send(c, "Etude sans hash, renvoyée", data, len);
    char *id = commit_trailing(c, upload, sha);
    expect_bytes(c, id, data, len);
    assert_int_equal(count_blobs(blobs), blobs_before + 1);
    free(id);
    free(upload);

    /* Named by the begin, another named by the commit: refused, the
     * upload stays; the begin's repeated (any case) goes through. */
    Passerelle__UploadBeginRequest req;
    begin_request(&req, "Etude au hash double", len, sha);
    upload = begin(c, &req);
    send_chunk(c, upload, 0, data, CHUNK, CHUNK);
    send_chunk(c, upload, CHUNK, data + CHUNK, len - CHUNK, len);
    passerelle__reply__free_unpacked(commit_naming(c, upload, wrong, NULL, INVALID, "sha256"),
                                     NULL);
    assert_true(session_exists(upload));
    char upper[65];
    for (int i = 0; i < 65; i++)
        upper[i] = (char)toupper((unsigned char)sha[i]);
    id = commit_trailing(c, upload, upper);
    Passerelle__Document *doc = get_document(c, id);
    assert_string_equal(doc->versions[0]->sha256, sha);
    passerelle__document__free_unpacked(doc, NULL);
    free(id);
    free(upload);

    /* A whole document names its SHA-256 in its begin. */
    begin_request(&req, "Note sans hash", 0, NULL);
    req.has_size = req.has_data = true;
    req.size = 10;
    req.data.data = data;
    req.data.len = 10;
    harness_call_refused(c, "upload.begin", &req.base, INVALID, "sha256");
    assert_int_equal(uploads_open(), open_before);
    assert_int_equal(count_blobs(tmp), 0);
    harness_events_free(&before);
    free(data);
}

/* The same bytes uploaded with a trailing SHA-256 by two documents, then
 * with the SHA-256 in the begin by a third: one blob. */
static void test_trailing_sha256_dedup(void **state)
{
    (void)state;
    char blobs[700];
    snprintf(blobs, sizeof blobs, "%s/blobs", F->volume);
    int before = count_blobs(blobs);
    const size_t len = CHUNK + 77;
    uint8_t *data = harness_pattern(len, 63, 11);
    char sha[65];
    harness_sha256_hex(data, len, sha);
    char *ids[3];
    for (int i = 0; i < 2; i++) {
        char *upload =
            begin_and_send(F->clients[i ? METROPOLE : PARTNER], "Etude en double", data, len);
        ids[i] = commit_trailing(F->clients[i ? METROPOLE : PARTNER], upload, sha);
        free(upload);
        assert_int_equal(count_blobs(blobs), before + 1);
    }
    Passerelle__UploadBeginRequest req;
    begin_request(&req, "Etude en triple", len, NULL);
    ids[2] = put_bytes(F->clients[ACTION_LOGEMENT], &req, data, len);
    assert_int_equal(count_blobs(blobs), before + 1);
    for (int i = 0; i < 3; i++) {
        Passerelle__Document *doc = get_document(F->clients[ADMIN], ids[i]);
        assert_string_equal(doc->versions[0]->sha256, sha);
        passerelle__document__free_unpacked(doc, NULL);
        expect_bytes(F->clients[ADMIN], ids[i], data, len);
        free(ids[i]);
    }
    free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small_and_empty_round_trips),
        cmocka_unit_test(test_large_round_trip_memory_bounded),
        cmocka_unit_test(test_dedup),
        cmocka_unit_test(test_versions_and_withdrawal),
        cmocka_unit_test(test_access_rules),
        cmocka_unit_test(test_list_filters),
        cmocka_unit_test(test_upload_refusals),
        cmocka_unit_test(test_events),
        cmocka_unit_test(test_windowed_round_trip),
        cmocka_unit_test(test_chunk_repeated_in_window),
        cmocka_unit_test(test_credit_ignored_memory_bounded),
        cmocka_unit_test(test_whole_document_in_begin),
        cmocka_unit_test(test_trailing_sha256_round_trip),
        cmocka_unit_test(test_trailing_sha256_refusals),
        cmocka_unit_test(test_trailing_sha256_dedup),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
