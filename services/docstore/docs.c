/* The document store's handlers (docs.h): uploads in chunks, reads by
 * range verified against the blobs' hashes, listings, withdrawal and the
 * integrity check. */
#include "docs.h"

#include "doc_rules.h"
#include "docstore.pb-c.h"
#include "ids.h"
#include "listing.h"
#include "log.h"
#include "refdata.h"
#include "sha256.h"
#include "txn.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KEY_MAX             192
#define DOCUMENT_KEY_PREFIX "docstore:document:"

/* ====================================================================== */
/* Records                                                                */
/* ====================================================================== */

static void reply_doc_error(reply_t *reply, const doc_error_t *err)
{
    reply_error(reply, err->status, err->field[0] ? err->field : NULL, "%s", err->message);
}

/* Reads the Document kept at key (record_read). On READ_FOUND the caller
 * frees *doc_p. */
static read_result_t document_at(store_t *store, const char *key, Passerelle__Document **doc_p,
                                 uint64_t *version, reply_t *reply)
{
    return record_read(store, key, &passerelle__document__descriptor, (ProtobufCMessage **)doc_p,
                       version, reply);
}

static void document_key(char out[KEY_MAX], const char *id)
{
    snprintf(out, KEY_MAX, DOCUMENT_KEY_PREFIX "%s", id);
}

static void upload_key(char out[KEY_MAX], const char *id)
{
    snprintf(out, KEY_MAX, "docstore:upload:%s", id);
}

static const char *caller_name(const call_t *call)
{
    return call->caller ? call->caller->name : "";
}

/* The document a request names in `field`, if the caller may see it:
 * INVALID_ARGUMENT for a malformed id, NOT_FOUND when absent or hidden from
 * the caller (a PRIVATE document of another party is not revealed). */
static bool document_get(docstore_t *self, const call_t *call, const char *id, const char *field,
                         Passerelle__Document **doc_p, uint64_t *version, reply_t *reply)
{
    *doc_p = NULL;
    if (!id || !id[0]) {
        reply_error(reply, ST_INVALID_ARGUMENT, field, "%s is required (a document id)", field);
        return false;
    }
    if (!id_valid('F', id)) {
        reply_error(reply, ST_INVALID_ARGUMENT, field, "%s '%.40s' is not a document id", field,
                    id);
        return false;
    }
    char key[KEY_MAX];
    document_key(key, id);
    read_result_t found = document_at(self->store, key, doc_p, version, reply);
    if (found == READ_FAILED)
        return false;
    if (found == READ_ABSENT || !doc_may_see(*doc_p, caller_party(call))) {
        if (*doc_p)
            passerelle__document__free_unpacked(*doc_p, NULL);
        *doc_p = NULL;
        reply_error(reply, ST_NOT_FOUND, field, "document %s not found", id);
        return false;
    }
    return true;
}

/* ====================================================================== */
/* Uploads in progress, in memory                                         */
/* ====================================================================== */

/* What the service keeps of an upload between its chunks (docs.h): enough
 * to take the next chunk without asking Redis. */
struct upload_state_t {
    upload_state_t *next;
    char id[ID_LEN];
    char added_by[64]; /* the key name of the caller that began it */
    uint64_t size;
    uint64_t received;          /* bytes written in order: the next offset */
    uint64_t recorded;          /* bytes the session record says */
    int64_t active_ms;          /* the last chunk, or when this was made */
    int64_t recorded_active_ms; /* what the session's expiry counts from */
    blob_hasher_t *hasher;      /* NULL when it cannot describe the upload */
};

static int64_t ttl_ms(const docstore_t *self)
{
    return (int64_t)self->upload_ttl_s * 1000;
}

static upload_state_t *upload_find(docstore_t *self, const char *id)
{
    for (upload_state_t *u = self->uploads; u; u = u->next)
        if (strcmp(u->id, id) == 0)
            return u;
    return NULL;
}

static void upload_free(upload_state_t *u)
{
    blob_hasher_destroy(&u->hasher);
    free(u);
}

/* Drops what memory holds of an upload (committed, refused or swept). */
static void upload_forget(docstore_t *self, const char *id)
{
    for (upload_state_t **at = &self->uploads; *at; at = &(*at)->next)
        if (strcmp((*at)->id, id) == 0) {
            upload_state_t *gone = *at;
            *at = gone->next;
            upload_free(gone);
            return;
        }
}

/* Whether an upload had a chunk within its time to live. */
static bool upload_alive(const docstore_t *self, const upload_state_t *u, int64_t now_ms)
{
    return now_ms < u->active_ms + ttl_ms(self);
}

void docstore_release(docstore_t *self)
{
    while (self->uploads) {
        upload_state_t *u = self->uploads;
        self->uploads = u->next;
        upload_free(u);
    }
}

/* Makes the memory of an upload from its session record s (just read) and
 * its progress record on the volume: the bytes received are the more of
 * the two (the session's are durable; the progress record's are exact
 * within a boot). The hashes start only from byte 0: an upload that holds
 * bytes already is read at its commit. NULL with the reply set when the
 * upload's file is gone or memory is short. */
static upload_state_t *upload_adopt(docstore_t *self, const char *id, const Passerelle__Document *s,
                                    reply_t *reply)
{
    uint64_t progress = 0;
    if (blobstore_upload_progress(self->blobs, id, &progress) == BLOB_MISSING) {
        reply_error(reply, ST_NOT_FOUND, "upload_id",
                    "upload %s has no temporary file any more: begin again", id);
        return NULL;
    }
    upload_state_t *u = calloc(1, sizeof *u);
    if (!u) {
        reply_error(reply, ST_INTERNAL, NULL, "out of memory");
        return NULL;
    }
    snprintf(u->id, sizeof u->id, "%s", id);
    snprintf(u->added_by, sizeof u->added_by, "%s", s->versions[0]->added_by);
    u->size = s->versions[0]->size;
    u->recorded = s->version;
    u->received = progress > s->version ? progress : s->version;
    if (u->received > u->size)
        u->received = u->size;
    u->active_ms = time_now_ms();
    u->hasher = u->received == 0 ? blob_hasher_new() : NULL;
    u->next = self->uploads;
    self->uploads = u;
    return u;
}

/* ====================================================================== */
/* Sessions                                                               */
/* ====================================================================== */

/* An upload session of this caller that is still open: INVALID_ARGUMENT
 * for a malformed id, NOT_FOUND when unknown, another caller's, or expired
 * (by its record, unless a chunk came within the time to live: the record's
 * expiry is pushed on only at each housekeeping tick). */
static bool session_get(docstore_t *self, const call_t *call, const char *id,
                        Passerelle__Document **session_p, uint64_t *version, reply_t *reply)
{
    *session_p = NULL;
    if (!id || !id_valid('L', id)) {
        reply_error(reply, ST_INVALID_ARGUMENT, "upload_id",
                    "upload_id '%.40s' is not an upload id", id ? id : "");
        return false;
    }
    char key[KEY_MAX];
    upload_key(key, id);
    read_result_t found = document_at(self->store, key, session_p, version, reply);
    if (found == READ_FAILED)
        return false;
    Passerelle__Document *s = *session_p;
    bool visible = found == READ_FOUND && s->n_versions == 1 && s->versions[0]->added_by &&
                   strcmp(s->versions[0]->added_by, caller_name(call)) == 0;
    if (!visible) {
        reply_error(reply, ST_NOT_FOUND, "upload_id",
                    "upload %s not found (never begun, committed or abandoned)", id);
    } else if (s->versions[0]->number == 0) {
        char now[TIME_RFC3339_LEN];
        time_now_rfc3339(now);
        const upload_state_t *u = upload_find(self, id);
        bool alive = u && upload_alive(self, u, time_now_ms());
        if (!alive && s->updated_at && strcmp(s->updated_at, now) < 0) {
            reply_error(reply, ST_NOT_FOUND, "upload_id",
                        "upload %s expired at %s (abandoned): begin again", id, s->updated_at);
            visible = false;
        }
    }
    if (!visible) {
        if (s)
            passerelle__document__free_unpacked(s, NULL);
        *session_p = NULL;
    }
    return visible;
}

/* The UploadSession a reply carries; expires_at and document may be NULL. */
static void session_reply(const docstore_t *self, reply_t *reply, const char *upload_id,
                          uint64_t size, uint64_t received, const char *expires_at,
                          const char *document)
{
    Passerelle__UploadSession out = PASSERELLE__UPLOAD_SESSION__INIT;
    out.upload_id = (char *)upload_id;
    out.has_size = out.has_received = out.has_chunk_max = true;
    out.size = size;
    out.received = received;
    out.chunk_max = BLOB_BLOCK_SIZE;
    out.has_window = self->window > 0;
    out.window = self->window;
    out.expires_at = (char *)expires_at;
    out.document = (char *)document;
    reply_set_body(reply, &out.base);
}

/* Where an upload in memory stands. */
static void upload_reply(const docstore_t *self, reply_t *reply, const upload_state_t *u)
{
    char expires[TIME_RFC3339_LEN];
    time_rfc3339(u->active_ms + ttl_ms(self), expires);
    session_reply(self, reply, u->id, u->size, u->received, expires, NULL);
}

static void expiry_after(unsigned ttl_s, char out[TIME_RFC3339_LEN])
{
    time_rfc3339(time_now_ms() + (int64_t)ttl_s * 1000, out);
}

/* ====================================================================== */
/* Indexes                                                                */
/* ====================================================================== */

static void index_key(char out[KEY_MAX], const char *what, const char *value)
{
    if (what)
        snprintf(out, KEY_MAX, "docstore:documents:%s:%s", what, value);
    else
        snprintf(out, KEY_MAX, "docstore:documents");
}

static void tag_key(char out[KEY_MAX], const char *tag)
{
    char folded[4 * DOC_TAG_MAX + 8];
    refdata_fold_name(tag, folded, sizeof folded);
    index_key(out, "tag", folded);
}

typedef struct {
    txn_t *txn;
    const char *id;
} word_index_t;

static void add_word(void *arg, const char *word)
{
    word_index_t *w = arg;
    char key[KEY_MAX];
    index_key(key, "word", word);
    txn_index_add(w->txn, key, w->id);
}

/* Every index a new document enters (its metadata never changes). */
static void document_index(txn_t *txn, const Passerelle__Document *doc)
{
    char key[KEY_MAX], value[16];
    index_key(key, NULL, NULL);
    txn_index_add(txn, key, doc->id);
    index_key(key, "kind", doc_kind_name(doc->kind));
    txn_index_add(txn, key, doc->id);
    snprintf(value, sizeof value, "%u", doc->theme);
    index_key(key, "theme", value);
    txn_index_add(txn, key, doc->id);
    index_key(key, "territory", doc->territory && doc->territory[0] ? doc->territory : "ALL");
    txn_index_add(txn, key, doc->id);
    index_key(key, "owner", doc->owner);
    txn_index_add(txn, key, doc->id);
    for (size_t i = 0; i < doc->n_tags; i++) {
        tag_key(key, doc->tags[i]);
        txn_index_add(txn, key, doc->id);
    }
    word_index_t w = {txn, doc->id};
    doc_words(doc->title, add_word, &w);
}

/* ====================================================================== */
/* Upload                                                                 */
/* ====================================================================== */

/* The id of the upload a begin request makes: derived from the request's
 * idempotency key (scoped by caller), so that a run of the handler thrown
 * away (a retried request answered from its idempotency record, server.h)
 * names, and reserves, the same temporary file as the run kept, instead of
 * leaving one more reservation behind until the sweep. The shape is an
 * upload id's (id_valid('L')): 128 bits of the key's SHA-256 in Crockford
 * base32, the first digit 0-7. Without a key (not a write), a new id. */
static void upload_id_for(const call_t *call, char out[ID_LEN])
{
    static const char digits[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    uint8_t digest[SHA256_BYTES];
    if (!call->idempotency_key || !call->idempotency_key[0] ||
        sha256_digest(call->idempotency_key, strlen(call->idempotency_key), digest) < 0) {
        id_new('L', out);
        return;
    }
    out[0] = 'L';
    out[1] = digits[digest[0] >> 5];
    for (unsigned i = 0; i < ULID_LEN - 1; i++) {
        unsigned bit = 3 + 5 * i; /* 3 + 5 * 25 = 128 bits: digest[0..15] */
        unsigned pair = ((unsigned)digest[bit / 8] << 8) | digest[bit / 8 + 1];
        out[2 + i] = digits[(pair >> (11 - bit % 8)) & 0x1f];
    }
    out[ID_LEN - 1] = '\0';
}

/* Records a new version of bytes stored as blob sha: the document (new,
 * from the session's metadata, or existing at doc_version with the version
 * appended), its indexes, the blob's reference and the event, added to txn
 * (which may hold more: the session's removal), then commits it with the
 * reply, the session as it ends naming the document. s is the session
 * (versions[0] the version to come), left as it was. */
static void version_commit(docstore_t *self, const call_t *call, reply_t *reply, txn_t *txn,
                           Passerelle__Document *s, Passerelle__Document *existing,
                           uint64_t doc_version, const char *sha, const char *upload_id,
                           const char *expires_at)
{
    const Passerelle__DocumentVersion *next = s->versions[0];
    bool new_document = existing == NULL;
    char now[TIME_RFC3339_LEN], id[ID_LEN];
    time_now_rfc3339(now);
    Passerelle__DocumentVersion added = PASSERELLE__DOCUMENT_VERSION__INIT;
    added.has_number = added.has_size = true;
    added.sha256 = (char *)sha;
    added.size = next->size;
    added.media_type = next->media_type;
    added.filename = next->filename;
    added.added_at = now;
    added.added_by = next->added_by;

    Passerelle__Document fresh = PASSERELLE__DOCUMENT__INIT;
    Passerelle__Document *doc = existing;
    Passerelle__DocumentVersion **versions = NULL;
    Passerelle__DocumentVersion **old_versions = NULL;
    size_t old_n = 0;
    char *old_updated = NULL;
    uint64_t old_version = 0;
    bool old_has_version = false;
    if (new_document) {
        id_new('F', id);
        fresh = *s;
        fresh.id = id;
        fresh.created_at = now;
        fresh.updated_at = now;
        fresh.has_version = true;
        fresh.version = 1;
        added.number = 1;
        doc = &fresh;
        versions = calloc(1, sizeof *versions);
    } else {
        versions = calloc(existing->n_versions + 1, sizeof *versions);
        if (versions)
            memcpy(versions, existing->versions, existing->n_versions * sizeof *versions);
        added.number =
            existing->n_versions ? existing->versions[existing->n_versions - 1]->number + 1 : 1;
        old_versions = existing->versions;
        old_n = existing->n_versions;
        old_updated = existing->updated_at;
        old_version = existing->version;
        old_has_version = existing->has_version;
        existing->has_version = true;
        existing->version = doc_version + 1;
        existing->updated_at = now;
    }
    if (!versions) {
        reply_error(reply, ST_INTERNAL, NULL, "out of memory");
        return;
    }
    versions[new_document ? 0 : old_n] = &added;
    doc->versions = versions;
    doc->n_versions = new_document ? 1 : old_n + 1;

    char doc_key[KEY_MAX], subject[KEY_MAX];
    document_key(doc_key, doc->id);
    snprintf(subject, sizeof subject, "documents/%s", doc->id);
    txn_put_message(txn, doc_key, doc->version, &doc->base);
    if (new_document)
        document_index(txn, doc);
    txn_index_add(txn, "docstore:blobs", sha);
    const char *event = new_document ? "document.published" : "document.version_added";
    txn_event(txn, DOCSTORE_STREAM, DOCSTORE_SOURCE, event, subject, &doc->base);
    session_reply(self, reply, upload_id, next->size, next->size, expires_at, doc->id);
    reply_log_commit(reply, event, subject);
    reply_commit(reply, call, self->store, txn);

    if (existing) {
        existing->versions = old_versions;
        existing->n_versions = old_n;
        existing->updated_at = old_updated;
        existing->version = old_version;
        existing->has_version = old_has_version;
    }
    free(versions);
}

/* Opens an upload: the temporary file with its room reserved, the session
 * and its entry in the index of uploads in progress. */
static void upload_open(docstore_t *self, const call_t *call, reply_t *reply,
                        Passerelle__Document *session, const char *upload_id)
{
    redisReply *r = NULL;
    store_result_t result = store_command(self->store, &r, "ZCARD docstore:uploads");
    if (result != STORE_OK || r->type != REDIS_REPLY_INTEGER) {
        if (r)
            freeReplyObject(r);
        reply_store_failure(reply, self->store, result == STORE_OK ? STORE_REFUSED : result);
        return;
    }
    long long open = r->integer;
    freeReplyObject(r);
    if (open >= (long long)self->max_uploads) {
        reply_error(reply, ST_RESOURCE_EXHAUSTED, NULL,
                    "%lld uploads are in progress, the most allowed: retry later", open);
        return;
    }

    /* The temporary file, with the room reserved: a full volume is found
     * now, before any byte travels. A run thrown away made the same file
     * (upload_id_for), so creating it again is harmless; a file no session
     * claims (a retry after the upload ended) is left to the sweep. */
    uint64_t size = session->versions[0]->size;
    char blob_err[256] = "";
    blob_result_t created =
        blobstore_upload_create(self->blobs, upload_id, size, blob_err, sizeof blob_err);
    if (created == BLOB_NO_SPACE) {
        reply_error(reply, ST_RESOURCE_EXHAUSTED, "size",
                    "no space left for %llu bytes on the document volume (%s)",
                    (unsigned long long)size, blob_err);
        return;
    }
    if (created != BLOB_OK) {
        log_error("cannot create an upload", "{s:s, s:s}", "upload", upload_id, "error", blob_err);
        reply_error(reply, ST_INTERNAL, NULL, "cannot create the upload: %s", blob_err);
        return;
    }
    txn_t *txn = txn_new(call->idempotency_key, call->fingerprint, call->idempotency_ttl_s);
    char key[KEY_MAX];
    upload_key(key, upload_id);
    txn_put_message(txn, key, 1, &session->base);
    txn_index_add(txn, "docstore:uploads", upload_id);
    session_reply(self, reply, upload_id, size, 0, session->updated_at, NULL);
    reply_log_commit(reply, "upload.begun", upload_id);
    reply_commit(reply, call, self->store, txn);
    txn_destroy(&txn);
}

/* A whole document's blob, deferred to docstore_prepare_commit (reply_defer)
 * to be stored with the other whole documents of the server's batch. The
 * bytes are the request's (valid until the reply is reset). */
typedef struct {
    const uint8_t *data;
    size_t len;
    char sha[BLOB_SHA_HEX]; /* expected */
    char upload_id[ID_LEN]; /* for the log */
} whole_blob_t;

/* A whole blob's outcome as the reply: the refusals blobstore_put makes. */
static bool whole_blob_reply(reply_t *reply, blob_result_t stored, size_t len,
                             const char *upload_id, const char *blob_err)
{
    if (stored == BLOB_OK)
        return true;
    if (stored == BLOB_MISMATCH) {
        reply_error(reply, ST_INVALID_ARGUMENT, "sha256",
                    "the bytes sent do not match the sha256 announced (%s): nothing was stored",
                    blob_err);
    } else if (stored == BLOB_NO_SPACE) {
        reply_error(reply, ST_RESOURCE_EXHAUSTED, "size",
                    "no space left for %zu bytes on the document volume (%s)", len, blob_err);
    } else {
        log_error("cannot store a document", "{s:s, s:s}", "upload", upload_id, "error", blob_err);
        reply_error(reply, ST_INTERNAL, NULL, "cannot store the document: %s", blob_err);
    }
    return false;
}

/* A whole document in its upload.begin: its version recorded in one
 * transaction, no session ever made, and its blob stored before that
 * transaction is committed.
 *
 * In the server, the blob is not stored here but handed to
 * docstore_prepare_commit (reply_defer), which stores the blobs of all the
 * whole documents of a batch at once, sharing their fsyncs, before the
 * batch's transactions go to Redis; a blob it fails to store fails its
 * request alone, its transaction dropped. A run of this handler thrown
 * away (a pass that missed a record, a duplicate answered from its
 * idempotency record) therefore touches nothing on the volume.
 *
 * Elsewhere (no server to defer to) the blob is stored right here
 * (blobstore_put, under the upload's id in tmp/ until renamed): run again,
 * it stores the same bytes again, which replaces the blob by itself. The
 * upload's record is read first then (whatever it holds), so that under a
 * snapshot a first pass gives up before touching the disk. */
static void upload_put_whole(docstore_t *self, const call_t *call, reply_t *reply,
                             Passerelle__Document *session, Passerelle__Document *existing,
                             uint64_t doc_version, const char *upload_id,
                             const ProtobufCBinaryData *data)
{
    whole_blob_t *work = malloc(sizeof *work);
    if (work) {
        work->data = data->data;
        work->len = data->len;
        snprintf(work->sha, sizeof work->sha, "%s", session->versions[0]->sha256);
        snprintf(work->upload_id, sizeof work->upload_id, "%s", upload_id);
    }
    if (work && reply_defer(reply, work, free)) {
        txn_t *txn = txn_new(call->idempotency_key, call->fingerprint, call->idempotency_ttl_s);
        version_commit(self, call, reply, txn, session, existing, doc_version, work->sha, upload_id,
                       NULL);
        txn_destroy(&txn);
        return;
    }
    free(work);

    char key[KEY_MAX];
    upload_key(key, upload_id);
    Passerelle__Document *earlier = NULL;
    uint64_t earlier_version = 0;
    read_result_t read = document_at(self->store, key, &earlier, &earlier_version, reply);
    if (earlier)
        passerelle__document__free_unpacked(earlier, NULL);
    if (read == READ_FAILED)
        return;

    char sha[BLOB_SHA_HEX] = "", blob_err[256] = "";
    bool dedup = false;
    blob_result_t stored =
        blobstore_put(self->blobs, upload_id, data->data, data->len, session->versions[0]->sha256,
                      sha, &dedup, blob_err, sizeof blob_err);
    if (!whole_blob_reply(reply, stored, data->len, upload_id, blob_err))
        return;
    metric_add(self->bytes_total, (const char *[]){"in"}, data->len);
    txn_t *txn = txn_new(call->idempotency_key, call->fingerprint, call->idempotency_ttl_s);
    version_commit(self, call, reply, txn, session, existing, doc_version, sha, upload_id, NULL);
    txn_destroy(&txn);
    log_debug("document stored whole", "{s:s, s:s, s:b}", "upload", upload_id, "sha256", sha,
              "deduplicated", dedup);
}

void docstore_prepare_commit(void *ctx, reply_t *const *replies, size_t count)
{
    docstore_t *self = ctx;
    blob_put_t *puts = calloc(count, sizeof *puts);
    char(*names)[ID_LEN] = calloc(count, sizeof *names);
    if (!puts || !names) {
        for (size_t i = 0; i < count; i++)
            reply_error(replies[i], ST_INTERNAL, NULL, "out of memory storing the document");
        free(puts);
        free(names);
        return;
    }
    for (size_t i = 0; i < count; i++) {
        const whole_blob_t *work = replies[i]->deferred;
        /* A temporary name of its own, not the upload's id: two requests
         * of one batch may carry one idempotency key (so one upload id),
         * and the names of one call must differ. One a crash leaves
         * behind is swept as any abandoned upload. */
        id_new('L', names[i]);
        puts[i].name = names[i];
        puts[i].data = work->data;
        puts[i].len = work->len;
        puts[i].expected_sha256 = work->sha;
    }
    blobstore_put_many(self->blobs, puts, count);
    for (size_t i = 0; i < count; i++) {
        const whole_blob_t *work = replies[i]->deferred;
        if (!whole_blob_reply(replies[i], puts[i].result, work->len, work->upload_id, puts[i].err))
            continue;
        metric_add(self->bytes_total, (const char *[]){"in"}, work->len);
        log_debug("document stored whole", "{s:s, s:s, s:b, s:i}", "upload", work->upload_id,
                  "sha256", puts[i].sha, "deduplicated", puts[i].deduplicated, "batch", (int)count);
    }
    free(puts);
    free(names);
}

void handle_upload_begin(void *ctx, const call_t *call, const ProtobufCMessage *request,
                         reply_t *reply)
{
    docstore_t *self = ctx;
    const Passerelle__UploadBeginRequest *req = (const Passerelle__UploadBeginRequest *)request;
    doc_error_t err;
    bool new_document = !req->document || !req->document[0];
    if ((new_document && !doc_metadata_valid(req, &err)) ||
        !doc_upload_valid(req, self->max_bytes, &err)) {
        reply_doc_error(reply, &err);
        return;
    }
    if (req->has_data && req->data.len != req->size) {
        reply_error(reply, ST_INVALID_ARGUMENT, "data",
                    "data holds %zu bytes, size says %llu: a whole document in upload.begin is "
                    "all of it",
                    req->data.len, (unsigned long long)req->size);
        return;
    }
    if (req->has_data && req->data.len > BLOB_BLOCK_SIZE) {
        reply_error(reply, ST_INVALID_ARGUMENT, "data",
                    "%zu bytes is more than one chunk (%d): send them with upload.chunk",
                    req->data.len, BLOB_BLOCK_SIZE);
        return;
    }
    /* "" when the begin names none: its commit will (docs.h). */
    char sha[BLOB_SHA_HEX];
    if (!req->sha256 || !doc_sha_normalize(req->sha256, sha))
        sha[0] = '\0';

    /* Reads first: the document a new version goes to (and, to open an
     * upload, the uploads in progress). */
    Passerelle__Document *existing = NULL;
    uint64_t doc_version = 0;
    if (!new_document) {
        if (!document_get(self, call, req->document, "document", &existing, &doc_version, reply))
            return;
        if (!doc_may_change(existing, caller_party(call))) {
            reply_error(reply, ST_PERMISSION_DENIED, "document",
                        "only the owner party adds versions to document %s", req->document);
            passerelle__document__free_unpacked(existing, NULL);
            return;
        }
    }

    char upload_id[ID_LEN];
    upload_id_for(call, upload_id);
    char now[TIME_RFC3339_LEN], expires[TIME_RFC3339_LEN];
    time_now_rfc3339(now);
    expiry_after(self->upload_ttl_s, expires);
    Passerelle__DocumentVersion next = PASSERELLE__DOCUMENT_VERSION__INIT;
    Passerelle__DocumentVersion *versions[1] = {&next};
    next.sha256 = sha;
    next.has_size = true;
    next.size = req->size;
    next.media_type = req->media_type;
    next.filename = req->filename;
    next.added_by = (char *)caller_name(call);
    next.added_at = now;
    next.has_number = true;
    Passerelle__Document session = PASSERELLE__DOCUMENT__INIT;
    session.id = new_document ? (char *)"" : req->document;
    if (new_document) {
        session.title = req->title;
        session.has_kind = session.has_theme = session.has_visibility = true;
        session.kind = req->kind;
        session.theme = req->theme;
        session.territory = req->territory ? req->territory : (char *)"";
        session.visibility = doc_visibility(req->visibility);
        session.n_tags = req->n_tags;
        session.tags = req->tags;
    }
    session.owner = (char *)party_name(caller_party(call));
    session.n_versions = 1;
    session.versions = versions;
    session.created_at = now;
    session.updated_at = expires;
    session.has_version = true;
    session.version = 0;

    if (req->has_data)
        upload_put_whole(self, call, reply, &session, existing, doc_version, upload_id, &req->data);
    else
        upload_open(self, call, reply, &session, upload_id);
    if (existing)
        passerelle__document__free_unpacked(existing, NULL);
}

/* A chunk: checked against, and written after, what memory holds of the
 * upload; a Redis read only for an upload this process does not hold yet
 * (its first chunk, or the first after a restart: upload_adopt). Not a
 * write of the server's kind: under group commit it runs through at once
 * when the upload is in memory, and when it is not, a run that gives up on
 * the session record (not in the snapshot yet) does so before touching
 * anything, so what it changes it changes once. */
void handle_upload_chunk(void *ctx, const call_t *call, const ProtobufCMessage *request,
                         reply_t *reply)
{
    docstore_t *self = ctx;
    const Passerelle__UploadChunkRequest *req = (const Passerelle__UploadChunkRequest *)request;
    if (!req->upload_id || !id_valid('L', req->upload_id)) {
        reply_error(reply, ST_INVALID_ARGUMENT, "upload_id",
                    "upload_id '%.40s' is not an upload id", req->upload_id ? req->upload_id : "");
        return;
    }
    int64_t now_ms = time_now_ms();
    upload_state_t *u = upload_find(self, req->upload_id);
    if (u && strcmp(u->added_by, caller_name(call)) != 0) {
        reply_error(reply, ST_NOT_FOUND, "upload_id",
                    "upload %s not found (never begun, committed or abandoned)", req->upload_id);
        return;
    }
    if (u && !upload_alive(self, u, now_ms)) {
        reply_error(reply, ST_NOT_FOUND, "upload_id",
                    "upload %s was idle for more than %u s (abandoned): begin again",
                    req->upload_id, self->upload_ttl_s);
        return;
    }
    if (!u) {
        Passerelle__Document *s = NULL;
        uint64_t version = 0;
        if (!session_get(self, call, req->upload_id, &s, &version, reply))
            return;
        u = upload_adopt(self, req->upload_id, s, reply);
        passerelle__document__free_unpacked(s, NULL);
        if (!u)
            return;
    }
    doc_error_t err;
    chunk_verdict_t verdict =
        doc_chunk_check(u->size, u->received, req->offset, req->data.len, BLOB_BLOCK_SIZE, &err);
    if (verdict == CHUNK_REFUSED) {
        reply_doc_error(reply, &err);
        return;
    }
    if (verdict == CHUNK_REPEAT) {
        u->active_ms = now_ms;
        upload_reply(self, reply, u);
        return;
    }
    char blob_err[256] = "";
    blob_result_t written =
        blobstore_upload_append(self->blobs, req->upload_id, u->hasher, req->offset, req->data.data,
                                req->data.len, blob_err, sizeof blob_err);
    if (written == BLOB_MISSING) {
        reply_error(reply, ST_NOT_FOUND, "upload_id",
                    "upload %s has no temporary file any more: begin again", req->upload_id);
        upload_forget(self, req->upload_id);
    } else if (written == BLOB_NO_SPACE) {
        /* The upload's file went with the room it held (blobs.h). */
        reply_error(reply, ST_RESOURCE_EXHAUSTED, "data",
                    "no space left on the document volume (%s)", blob_err);
        upload_forget(self, req->upload_id);
    } else if (written != BLOB_OK) {
        log_error("cannot write a chunk", "{s:s, s:s}", "upload", req->upload_id, "error",
                  blob_err);
        reply_error(reply, ST_INTERNAL, NULL, "cannot write the chunk: %s", blob_err);
    } else {
        metric_add(self->bytes_total, (const char *[]){"in"}, req->data.len);
        u->received += req->data.len;
        u->active_ms = now_ms;
        upload_reply(self, reply, u);
    }
}

/* Commits an upload: the blob into place (from the running hashes when
 * memory holds them whole, else by reading the file), checked against the
 * SHA-256 its begin named or, when that named none, the one this request
 * names (doc_commit_sha: a trailing checksum, which the idempotency
 * record's fingerprint covers with the rest of the request), then in one
 * transaction the document (new, or the existing one with the version
 * appended), its indexes, the session deleted (with its index entry), and
 * the event. The reply still names the document made; the same request
 * sent again is answered from its idempotency record, another one finds no
 * upload any more (NOT_FOUND). */
void handle_upload_commit(void *ctx, const call_t *call, const ProtobufCMessage *request,
                          reply_t *reply)
{
    docstore_t *self = ctx;
    const Passerelle__UploadCommitRequest *req = (const Passerelle__UploadCommitRequest *)request;
    Passerelle__Document *s = NULL, *existing = NULL;
    uint64_t session_version = 0, doc_version = 0;
    if (!session_get(self, call, req->upload_id, &s, &session_version, reply))
        return;
    Passerelle__DocumentVersion *next = s->versions[0];
    /* What the bytes must hash to: the begin's SHA-256 or this request's
     * (a trailing checksum). Refused before anything is touched: the
     * upload stays, to be committed again with the right one. */
    char expected[BLOB_SHA_HEX];
    doc_error_t err;
    if (!doc_commit_sha(next->sha256, req->sha256, expected, &err)) {
        reply_doc_error(reply, &err);
        goto done;
    }
    /* How many bytes there are: memory's count, else (a restart) what the
     * upload's records say. A file gone is the blob's business below: a
     * commit run again after its blob went into place finds it so. */
    upload_state_t *u = upload_find(self, req->upload_id);
    uint64_t received = s->version;
    bool file_gone = false;
    if (u) {
        received = u->received;
    } else {
        uint64_t progress = 0;
        file_gone =
            blobstore_upload_progress(self->blobs, req->upload_id, &progress) == BLOB_MISSING;
        if (progress > received)
            received = progress;
    }
    if (!file_gone && received != next->size) {
        reply_error(reply, ST_FAILED_PRECONDITION, "upload_id",
                    "upload %s has %llu of its %llu bytes: send the rest first", req->upload_id,
                    (unsigned long long)received, (unsigned long long)next->size);
        goto done;
    }
    bool new_document = !s->id || !s->id[0];
    if (!new_document) {
        if (!document_get(self, call, s->id, "document", &existing, &doc_version, reply))
            goto done;
        if (!doc_may_change(existing, caller_party(call))) {
            reply_error(reply, ST_PERMISSION_DENIED, "document",
                        "only the owner party adds versions to document %s", s->id);
            goto done;
        }
    }

    /* The bytes into their blob. Run again after it succeeded, the upload
     * file is gone but the blob is there: the same outcome. Whatever comes
     * of it, what memory held of the upload is spent. */
    char sha[BLOB_SHA_HEX] = "", blob_err[256] = "";
    bool dedup = false, hashed = false;
    blob_result_t committed = blobstore_upload_commit_hashed(
        self->blobs, req->upload_id, u ? u->hasher : NULL, next->size, expected, sha, &dedup,
        &hashed, blob_err, sizeof blob_err);
    upload_forget(self, req->upload_id);
    txn_t *txn = txn_new(call->idempotency_key, call->fingerprint, call->idempotency_ttl_s);
    char key[KEY_MAX];
    upload_key(key, req->upload_id);
    if (committed != BLOB_OK) {
        if (committed == BLOB_MISMATCH)
            reply_error(reply, ST_INVALID_ARGUMENT, "sha256",
                        "the bytes received do not match the sha256 expected (%s): the upload "
                        "is removed, begin again",
                        blob_err);
        else if (committed == BLOB_MISSING)
            /* As a chunk is told when its upload's file is gone: not the
             * "send the rest first" of a short upload, which a client
             * answers by sending more. */
            reply_error(reply, ST_NOT_FOUND, "upload_id",
                        "upload %s has no bytes any more: begin again", req->upload_id);
        else if (committed == BLOB_NO_SPACE)
            reply_error(reply, ST_RESOURCE_EXHAUSTED, NULL,
                        "no space left on the document volume (%s): the upload is removed",
                        blob_err);
        else {
            /* The blob store has dropped the upload's bytes on its way out
             * (commit_abort): a commit sent again could only be told they
             * are gone, so it is over now, and said so. */
            log_error("cannot commit an upload", "{s:s, s:s}", "upload", req->upload_id, "error",
                      blob_err);
            reply_error(reply, ST_INTERNAL, NULL,
                        "cannot store the upload (%s): the upload is removed, begin again",
                        blob_err);
        }
        /* Refused for good: the upload is over, its session goes. */
        blobstore_upload_remove(self->blobs, req->upload_id);
        txn_delete(txn, key, session_version);
        txn_index_remove(txn, "docstore:uploads", req->upload_id);
        reply_commit(reply, call, self->store, txn);
        txn_destroy(&txn);
        goto done;
    }
    /* The session goes with the version it made. */
    txn_delete(txn, key, session_version);
    txn_index_remove(txn, "docstore:uploads", req->upload_id);
    version_commit(self, call, reply, txn, s, existing, doc_version, sha, req->upload_id,
                   s->updated_at);
    txn_destroy(&txn);
    log_debug("upload committed", "{s:s, s:s, s:b, s:b, s:b}", "upload", req->upload_id, "sha256",
              sha, "deduplicated", dedup, "hashed_as_received", hashed, "trailing_sha256",
              !next->sha256 || !next->sha256[0]);
done:
    if (existing)
        passerelle__document__free_unpacked(existing, NULL);
    passerelle__document__free_unpacked(s, NULL);
}

/* ====================================================================== */
/* Reading                                                                */
/* ====================================================================== */

void handle_document_get(void *ctx, const call_t *call, const ProtobufCMessage *request,
                         reply_t *reply)
{
    docstore_t *self = ctx;
    const Passerelle__DocumentGetRequest *req = (const Passerelle__DocumentGetRequest *)request;
    Passerelle__Document *doc = NULL;
    uint64_t version = 0;
    if (!document_get(self, call, req->id, "id", &doc, &version, reply))
        return;
    reply_set_body(reply, &doc->base);
    passerelle__document__free_unpacked(doc, NULL);
}

/* A blob that failed its check: logged, remembered for operations. */
static void blob_report_corrupt(docstore_t *self, const char *sha, const char *why)
{
    log_error("blob corrupt", "{s:s, s:s}", "sha256", sha, "error", why);
    redisReply *r = NULL;
    if (store_command(self->store, &r, "SADD docstore:corrupt %s", sha) != STORE_LOST && r)
        freeReplyObject(r);
}

void handle_document_read(void *ctx, const call_t *call, const ProtobufCMessage *request,
                          reply_t *reply)
{
    docstore_t *self = ctx;
    const Passerelle__DocumentReadRequest *req = (const Passerelle__DocumentReadRequest *)request;
    Passerelle__Document *doc = NULL;
    uint64_t version = 0;
    if (!document_get(self, call, req->id, "id", &doc, &version, reply))
        return;
    doc_error_t err;
    size_t index = 0;
    uint8_t *buf = NULL;
    if (!doc_version_pick(doc, req->version, false, &index, &err)) {
        reply_doc_error(reply, &err);
        goto done;
    }
    const Passerelle__DocumentVersion *v = doc->versions[index];
    size_t length = req->has_length && req->length ? req->length : BLOB_BLOCK_SIZE;
    if (length > BLOB_BLOCK_SIZE) {
        reply_error(reply, ST_INVALID_ARGUMENT, "length", "length %zu is over the largest, %d",
                    length, BLOB_BLOCK_SIZE);
        goto done;
    }
    if (req->offset > v->size) {
        reply_error(reply, ST_INVALID_ARGUMENT, "offset",
                    "offset %llu is beyond the end of version %u (%llu bytes)",
                    (unsigned long long)req->offset, v->number, (unsigned long long)v->size);
        goto done;
    }
    if (length > v->size - req->offset)
        length = (size_t)(v->size - req->offset);
    buf = malloc(length ? length : 1);
    if (!buf) {
        reply_error(reply, ST_INTERNAL, NULL, "out of memory");
        goto done;
    }
    size_t got = 0;
    char blob_err[256] = "";
    blob_result_t result = length == 0 ? BLOB_OK
                                       : blobstore_read(self->blobs, v->sha256, req->offset, buf,
                                                        length, &got, blob_err, sizeof blob_err);
    if (result == BLOB_CORRUPT) {
        blob_report_corrupt(self, v->sha256, blob_err);
        reply_error(reply, ST_DATA_LOSS, NULL,
                    "version %u of document %s is corrupt on disk: its bytes no longer match "
                    "their SHA-256 %s; nothing was sent, operations are told",
                    v->number, doc->id, v->sha256);
    } else if (result == BLOB_MISSING) {
        log_error("blob missing", "{s:s, s:s}", "sha256", v->sha256, "document", doc->id);
        reply_error(reply, ST_DATA_LOSS, NULL,
                    "version %u of document %s is missing from the volume (blob %s)", v->number,
                    doc->id, v->sha256);
    } else if (result != BLOB_OK) {
        log_error("cannot read a blob", "{s:s, s:s}", "sha256", v->sha256, "error", blob_err);
        reply_error(reply, ST_INTERNAL, NULL, "cannot read version %u: %s", v->number, blob_err);
    } else {
        Passerelle__DocumentReadReply out = PASSERELLE__DOCUMENT_READ_REPLY__INIT;
        out.has_version = out.has_offset = out.has_data = out.has_size = true;
        out.version = v->number;
        out.offset = req->offset;
        out.data.data = buf;
        out.data.len = got;
        out.size = v->size;
        out.sha256 = v->sha256;
        out.has_window = self->window > 0;
        out.window = self->window;
        reply_set_body(reply, &out.base);
        metric_add(self->bytes_total, (const char *[]){"out"}, got);
    }
done:
    free(buf);
    passerelle__document__free_unpacked(doc, NULL);
}

/* ====================================================================== */
/* Listing                                                                */
/* ====================================================================== */

typedef struct {
    const Passerelle__DocumentListRequest *req;
    party_t party;
    char words[DOC_TITLE_MAX][DOC_WORD_MAX];
    size_t n_words;
} list_filter_t;

static void collect_word(void *arg, const char *word)
{
    list_filter_t *f = arg;
    if (f->n_words < DOC_TITLE_MAX)
        snprintf(f->words[f->n_words++], DOC_WORD_MAX, "%s", word);
}

typedef struct {
    const char *wanted;
    bool found;
} word_seek_t;

static void seek_word(void *arg, const char *word)
{
    word_seek_t *w = arg;
    if (strcmp(w->wanted, word) == 0)
        w->found = true;
}

static bool list_match(const Passerelle__Document *doc, const list_filter_t *f)
{
    const Passerelle__DocumentListRequest *req = f->req;
    if (!doc_may_see(doc, f->party))
        return false;
    if (req->has_kind && req->kind && doc->kind != req->kind)
        return false;
    if (req->has_theme && req->theme && doc->theme != req->theme)
        return false;
    if (req->territory && req->territory[0] &&
        strcmp(doc->territory ? doc->territory : "", req->territory) != 0)
        return false;
    if (req->owner && req->owner[0] && strcasecmp(doc->owner ? doc->owner : "", req->owner) != 0)
        return false;
    if (req->tag && req->tag[0]) {
        char wanted[4 * DOC_TAG_MAX + 8], have[4 * DOC_TAG_MAX + 8];
        refdata_fold_name(req->tag, wanted, sizeof wanted);
        bool found = false;
        for (size_t i = 0; i < doc->n_tags && !found; i++) {
            refdata_fold_name(doc->tags[i], have, sizeof have);
            found = strcmp(have, wanted) == 0;
        }
        if (!found)
            return false;
    }
    for (size_t i = 0; i < f->n_words; i++) {
        word_seek_t w = {f->words[i], false};
        doc_words(doc->title, seek_word, &w);
        if (!w.found)
            return false;
    }
    return true;
}

/* The narrowest index the filters name (listing_smallest_index); the index
 * of every document when none. */
static bool list_index(docstore_t *self, const list_filter_t *f, char out[KEY_MAX], reply_t *reply)
{
    const Passerelle__DocumentListRequest *req = f->req;
    char keys[9][KEY_MAX];
    size_t n = 0;
    char value[16];
    if (req->has_kind && req->kind && doc_kind_name(req->kind))
        index_key(keys[n++], "kind", doc_kind_name(req->kind));
    if (req->has_theme && req->theme) {
        snprintf(value, sizeof value, "%u", req->theme);
        index_key(keys[n++], "theme", value);
    }
    if (req->territory && req->territory[0])
        index_key(keys[n++], "territory", req->territory);
    if (req->owner && req->owner[0])
        index_key(keys[n++], "owner", party_name(party_parse(req->owner)));
    if (req->tag && req->tag[0])
        tag_key(keys[n++], req->tag);
    for (size_t i = 0; i < f->n_words && n < 8; i++)
        index_key(keys[n++], "word", f->words[i]);
    index_key(keys[n++], NULL, NULL); /* the catch-all, last */
    const char *names[9];
    for (size_t i = 0; i < n; i++)
        names[i] = keys[i];
    size_t best = 0;
    if (!reply_listing_result(reply, self->store,
                              listing_smallest_index(self->store, names, n, &best)))
        return false;
    memcpy(out, keys[best], KEY_MAX);
    return true;
}

static bool list_keep(const ProtobufCMessage *msg, void *arg)
{
    return list_match((const Passerelle__Document *)msg, arg);
}

/* Walks the narrowest index in id (creation) order (listing_page); the
 * documents the other filters reject cost a read each. */
void handle_document_list(void *ctx, const call_t *call, const ProtobufCMessage *request,
                          reply_t *reply)
{
    docstore_t *self = ctx;
    const Passerelle__DocumentListRequest *req = (const Passerelle__DocumentListRequest *)request;
    unsigned page_size =
        req->has_page_size && req->page_size ? req->page_size : DOCSTORE_PAGE_DEFAULT;
    if (page_size > DOCSTORE_PAGE_MAX) {
        reply_error(reply, ST_INVALID_ARGUMENT, "page_size", "page_size is at most %d",
                    DOCSTORE_PAGE_MAX);
        return;
    }
    if (req->page_token && req->page_token[0] && !id_valid('F', req->page_token)) {
        reply_error(reply, ST_INVALID_ARGUMENT, "page_token",
                    "page_token is not one this "
                    "service gave");
        return;
    }
    if (req->has_kind && req->kind && !doc_kind_name(req->kind)) {
        reply_error(reply, ST_INVALID_ARGUMENT, "kind", "kind %d is not a document kind",
                    (int)req->kind);
        return;
    }
    if (req->owner && req->owner[0] && party_parse(req->owner) == PARTY_NONE) {
        reply_error(reply, ST_INVALID_ARGUMENT, "owner", "owner '%.40s' is not a party",
                    req->owner);
        return;
    }
    list_filter_t *f = calloc(1, sizeof *f);
    if (!f) {
        reply_error(reply, ST_INTERNAL, NULL, "out of memory");
        return;
    }
    f->req = req;
    f->party = caller_party(call);
    if (req->words && req->words[0])
        doc_words(req->words, collect_word, f);

    char index[KEY_MAX];
    if (list_index(self, f, index, reply)) {
        record_lister_t lister = {self->store, DOCUMENT_KEY_PREFIX,
                                  &passerelle__document__descriptor, reply};
        listing_t listing = {index, 'F', record_list_read, &lister, list_keep, f};
        listing_page_t page;
        if (reply_listing_result(
                reply, self->store,
                listing_page(self->store, &listing, req->page_token, page_size, &page))) {
            Passerelle__DocumentList out = PASSERELLE__DOCUMENT_LIST__INIT;
            out.documents = (Passerelle__Document **)page.items;
            out.n_documents = page.count;
            out.next_page_token = listing_page_token(&page);
            reply_set_body(reply, &out.base);
            listing_page_free(&page);
        }
    }
    free(f);
}

/* ====================================================================== */
/* Withdrawal                                                             */
/* ====================================================================== */

void handle_document_withdraw(void *ctx, const call_t *call, const ProtobufCMessage *request,
                              reply_t *reply)
{
    docstore_t *self = ctx;
    const Passerelle__DocumentWithdrawRequest *req =
        (const Passerelle__DocumentWithdrawRequest *)request;
    Passerelle__Document *doc = NULL;
    uint64_t version = 0;
    if (!document_get(self, call, req->id, "id", &doc, &version, reply))
        return;
    doc_error_t err;
    size_t index = 0;
    if (!doc_may_change(doc, caller_party(call))) {
        reply_error(reply, ST_PERMISSION_DENIED, "id",
                    "only the owner party (%s) withdraws versions of document %s", doc->owner,
                    doc->id);
    } else if (req->reason && strlen(req->reason) > DOC_REASON_MAX) {
        reply_error(reply, ST_INVALID_ARGUMENT, "reason", "reason is longer than %d bytes",
                    DOC_REASON_MAX);
    } else if (!doc_version_pick(doc, req->version, true, &index, &err)) {
        if (req->version == 0)
            err.status = ST_FAILED_PRECONDITION;
        reply_doc_error(reply, &err);
    } else if (doc->versions[index]->withdrawn) {
        reply_error(reply, ST_FAILED_PRECONDITION, "version",
                    "version %u of document %s is withdrawn already", doc->versions[index]->number,
                    doc->id);
    } else {
        char now[TIME_RFC3339_LEN], key[KEY_MAX], subject[KEY_MAX];
        time_now_rfc3339(now);
        Passerelle__DocumentVersion *v = doc->versions[index];
        char *old_at = v->withdrawn_at, *old_reason = v->withdrawal_reason,
             *old_updated = doc->updated_at;
        v->has_withdrawn = true;
        v->withdrawn = true;
        v->withdrawn_at = now;
        v->withdrawal_reason = req->reason;
        doc->updated_at = now;
        doc->has_version = true;
        doc->version = version + 1;
        document_key(key, doc->id);
        snprintf(subject, sizeof subject, "documents/%s", doc->id);
        txn_t *txn = txn_new(call->idempotency_key, call->fingerprint, call->idempotency_ttl_s);
        txn_put_message(txn, key, version + 1, &doc->base);
        txn_event(txn, DOCSTORE_STREAM, DOCSTORE_SOURCE, "document.withdrawn", subject, &doc->base);
        reply_set_body(reply, &doc->base);
        reply_log_commit(reply, "document.withdrawn", subject);
        reply_commit(reply, call, self->store, txn);
        txn_destroy(&txn);
        v->withdrawn_at = old_at;
        v->withdrawal_reason = old_reason;
        doc->updated_at = old_updated;
    }
    passerelle__document__free_unpacked(doc, NULL);
}

/* ====================================================================== */
/* Integrity                                                              */
/* ====================================================================== */

typedef struct {
    char (*shas)[BLOB_SHA_HEX];
    size_t count, capacity;
    bool failed;
} sha_list_t;

static void sha_list_add(void *arg, const char *sha, uint64_t size)
{
    (void)size;
    sha_list_t *list = arg;
    if (list->count == list->capacity) {
        size_t capacity = list->capacity ? 2 * list->capacity : 64;
        void *grown = realloc(list->shas, capacity * sizeof *list->shas);
        if (!grown) {
            list->failed = true;
            return;
        }
        list->shas = grown;
        list->capacity = capacity;
    }
    snprintf(list->shas[list->count++], BLOB_SHA_HEX, "%s", sha);
}

static int sha_compare(const void *a, const void *b)
{
    return strcmp(a, b);
}

static bool sha_listed(const sha_list_t *list, const char *sha)
{
    return list->count &&
           bsearch(sha, list->shas, list->count, sizeof *list->shas, sha_compare) != NULL;
}

/* Cost: every blob is read whole (streaming), in the server's thread: the
 * service answers nothing else meanwhile. Meant for operations, not for
 * every minute. */
void handle_docs_fsck(void *ctx, const call_t *call, const ProtobufCMessage *request,
                      reply_t *reply)
{
    (void)call;
    (void)request;
    docstore_t *self = ctx;
    redisReply *r = NULL;
    store_result_t result = store_command(self->store, &r, "ZRANGE docstore:blobs 0 -1");
    if (result != STORE_OK || r->type != REDIS_REPLY_ARRAY) {
        if (r)
            freeReplyObject(r);
        reply_store_failure(reply, self->store, result == STORE_OK ? STORE_REFUSED : result);
        return;
    }
    sha_list_t referred = {0}, on_disk = {0};
    for (size_t i = 0; i < r->elements; i++)
        if (r->element[i]->type == REDIS_REPLY_STRING)
            sha_list_add(&referred, r->element[i]->str, 0);
    freeReplyObject(r);
    long listed = blobstore_each(self->blobs, sha_list_add, &on_disk);
    char **corrupt = calloc(on_disk.count + 1, sizeof *corrupt);
    char **missing = calloc(referred.count + 1, sizeof *missing);
    char **orphaned = calloc(on_disk.count + 1, sizeof *orphaned);
    if (listed < 0 || referred.failed || on_disk.failed || !corrupt || !missing || !orphaned) {
        reply_error(reply, ST_INTERNAL, NULL,
                    listed < 0 ? "cannot list the blobs on the volume" : "out of memory");
        goto done;
    }
    if (referred.count)
        qsort(referred.shas, referred.count, sizeof *referred.shas, sha_compare);
    if (on_disk.count)
        qsort(on_disk.shas, on_disk.count, sizeof *on_disk.shas, sha_compare);
    Passerelle__FsckReply out = PASSERELLE__FSCK_REPLY__INIT;
    out.has_blobs_checked = out.has_bytes_checked = true;
    out.corrupt = corrupt;
    out.missing = missing;
    out.orphaned = orphaned;
    for (size_t i = 0; i < on_disk.count; i++) {
        const char *sha = on_disk.shas[i];
        uint64_t size = 0;
        char err[256] = "";
        blob_result_t verdict = blobstore_verify(self->blobs, sha, &size, err, sizeof err);
        out.blobs_checked++;
        out.bytes_checked += size;
        if (verdict == BLOB_CORRUPT) {
            blob_report_corrupt(self, sha, err);
            corrupt[out.n_corrupt++] = on_disk.shas[i];
        } else if (verdict != BLOB_OK && verdict != BLOB_MISSING) {
            log_error("cannot verify a blob", "{s:s, s:s}", "sha256", sha, "error", err);
            corrupt[out.n_corrupt++] = on_disk.shas[i];
        }
        if (!sha_listed(&referred, sha))
            orphaned[out.n_orphaned++] = on_disk.shas[i];
    }
    for (size_t i = 0; i < referred.count; i++)
        if (!sha_listed(&on_disk, referred.shas[i]))
            missing[out.n_missing++] = referred.shas[i];
    log_info("fsck", "{s:i, s:i, s:i, s:i}", "blobs", (int)out.blobs_checked, "corrupt",
             (int)out.n_corrupt, "missing", (int)out.n_missing, "orphaned", (int)out.n_orphaned);
    reply_set_body(reply, &out.base);
done:
    free(corrupt);
    free(missing);
    free(orphaned);
    free(referred.shas);
    free(on_disk.shas);
}

/* ====================================================================== */
/* Abandoned uploads                                                      */
/* ====================================================================== */

static bool upload_live(void *arg, const char *upload_id)
{
    const sha_list_t *live = arg; /* upload ids, sorted */
    return sha_listed(live, upload_id);
}

/* Deletes an expired session and its index entry in one transaction, if
 * the session is still at the version read (0: the record is gone already,
 * only the index entry is left). False when not done: the session changed
 * meanwhile (a chunk arrived), or Redis could not be written. */
static bool session_drop(docstore_t *self, const char *key, uint64_t version, const char *id)
{
    txn_t *txn = txn_new(NULL, NULL, 0);
    if (!txn)
        return false;
    if (version > 0)
        txn_delete(txn, key, version);
    else
        txn_guard(txn, key, 0);
    txn_index_remove(txn, "docstore:uploads", id);
    txn_result_t result = txn_commit(txn, self->store, NULL, 0, NULL, NULL, NULL);
    txn_destroy(&txn);
    return result == TXN_COMMITTED;
}

typedef struct {
    unsigned expired; /* sessions removed */
    int files;        /* temporary files removed */
    size_t live;      /* sessions still open */
} sweep_counts_t;

/* Records in its session (read just now, at version) what memory knows of
 * a live upload: the bytes received, once made durable (an fdatasync: the
 * count is what a reboot resumes from), and the expiry counted from its
 * last chunk. Nothing to do when neither moved since the last time. False
 * if Redis could not be written (tried again next tick). */
static bool upload_record(docstore_t *self, upload_state_t *u, const char *key,
                          Passerelle__Document *s, uint64_t version)
{
    if (u->received == u->recorded && u->active_ms == u->recorded_active_ms)
        return true;
    uint64_t received = s->version;
    if (u->received > s->version) {
        char err[256] = "";
        if (blobstore_upload_sync(self->blobs, u->id, err, sizeof err) == BLOB_OK)
            received = u->received;
        else
            log_warn("cannot sync an upload's bytes: its recorded progress waits", "{s:s, s:s}",
                     "upload", u->id, "error", err);
    }
    char expires[TIME_RFC3339_LEN];
    time_rfc3339(u->active_ms + ttl_ms(self), expires);
    char *old_expiry = s->updated_at;
    uint64_t old_received = s->version;
    s->updated_at = expires;
    s->version = received;
    txn_t *txn = txn_new(NULL, NULL, 0);
    txn_result_t result = TXN_LOST;
    if (txn) {
        txn_put_message(txn, key, version + 1, &s->base);
        result = txn_commit(txn, self->store, NULL, 0, NULL, NULL, NULL);
        txn_destroy(&txn);
    }
    s->updated_at = old_expiry;
    s->version = old_received;
    if (result == TXN_COMMITTED) {
        u->recorded = received;
        u->recorded_active_ms = u->active_ms;
    }
    /* Stale: the session changed under us (its commit is on its way);
     * the next tick sees. */
    return result == TXN_COMMITTED || result == TXN_STALE;
}

/* The sweep: every session of docstore:uploads is read; an expired one
 * whose upload memory does not hold as live goes (record, index entry,
 * temporary files, memory), a live one held in memory gets its progress
 * recorded (upload_record), and the temporary files older than the time
 * to live that no open session claims go too, as does memory of uploads
 * whose session is gone. uploading (sorted, may be NULL) gets the SHA-256
 * each open session announced. False if Redis could not be read or written
 * (nothing more is removed). */
static bool sweep_uploads(docstore_t *self, sweep_counts_t *counts, sha_list_t *uploading)
{
    memset(counts, 0, sizeof *counts);
    redisReply *r = NULL;
    store_result_t result = store_command(self->store, &r, "ZRANGE docstore:uploads 0 -1");
    if (result != STORE_OK || r->type != REDIS_REPLY_ARRAY) {
        if (r)
            freeReplyObject(r);
        return false;
    }
    sha_list_t live = {0};
    char now[TIME_RFC3339_LEN];
    time_now_rfc3339(now);
    int64_t now_ms = time_now_ms();
    bool failed = false;
    for (size_t i = 0; i < r->elements && !failed; i++) {
        const char *id = r->element[i]->str;
        if (r->element[i]->type != REDIS_REPLY_STRING)
            continue;
        char key[KEY_MAX];
        upload_key(key, id);
        Passerelle__Document *s = NULL;
        uint64_t version = 0;
        reply_t scratch;
        memset(&scratch, 0, sizeof scratch);
        read_result_t found = document_at(self->store, key, &s, &version, &scratch);
        upload_state_t *u = upload_find(self, id);
        bool held_alive = u && upload_alive(self, u, now_ms);
        if (found == READ_FAILED) {
            failed = true;
        } else if (found == READ_FOUND &&
                   (held_alive || (s->updated_at && strcmp(s->updated_at, now) >= 0))) {
            sha_list_add(&live, id, 0);
            if (uploading && s->n_versions == 1 && blob_sha_valid(s->versions[0]->sha256))
                sha_list_add(uploading, s->versions[0]->sha256, 0);
            if (u && s->n_versions == 1 && !upload_record(self, u, key, s, version))
                failed = true;
        } else if (session_drop(self, key, version, id)) {
            /* Its bytes go with it: no one can send the rest any more. */
            blobstore_upload_remove(self->blobs, id);
            upload_forget(self, id);
            counts->expired++;
            log_info("abandoned upload removed", "{s:s, s:s}", "upload", id, "expired_at",
                     s && s->updated_at ? s->updated_at : "");
        }
        if (s)
            passerelle__document__free_unpacked(s, NULL);
        free(scratch.body);
    }
    freeReplyObject(r);
    if (!failed && !live.failed && (!uploading || !uploading->failed)) {
        if (live.count)
            qsort(live.shas, live.count, sizeof *live.shas, sha_compare);
        if (uploading && uploading->count)
            qsort(uploading->shas, uploading->count, sizeof *uploading->shas, sha_compare);
        counts->files =
            (int)blobstore_sweep_uploads(self->blobs, self->upload_ttl_s, upload_live, &live);
        counts->live = live.count;
        /* Memory of an upload whose session is gone (removed by hand, or
         * by another process) would only refuse its chunks wrongly. */
        for (upload_state_t *u = self->uploads, *next; u; u = next) {
            next = u->next;
            if (!sha_listed(&live, u->id))
                upload_forget(self, u->id);
        }
    } else {
        failed = true;
    }
    free(live.shas);
    return !failed;
}

int docstore_sweep(docstore_t *self)
{
    sweep_counts_t counts;
    if (!sweep_uploads(self, &counts, NULL)) {
        log_warn("cannot sweep the abandoned uploads", "{s:s}", "error",
                 store_last_error(self->store));
        return -1;
    }
    log_info("abandoned uploads swept", "{s:i, s:i, s:i}", "expired", (int)counts.expired, "files",
             counts.files, "live", (int)counts.live);
    return counts.files;
}

/* ====================================================================== */
/* Garbage collection                                                     */
/* ====================================================================== */

typedef struct {
    char shas[DOCSTORE_GC_SLICE][BLOB_SHA_HEX];
    size_t count;
} gc_slice_t;

static void gc_collect(void *arg, const char *sha, uint64_t size)
{
    (void)size;
    gc_slice_t *slice = arg;
    if (slice->count < DOCSTORE_GC_SLICE)
        memcpy(slice->shas[slice->count++], sha, BLOB_SHA_HEX);
}

/* Runs count commands of argc arguments each (argv: count * argc strings)
 * as one pipeline; each reply's kind in kinds (REDIS_REPLY_* or -1 on a
 * failure). False if any failed. */
static bool gc_pipeline(docstore_t *self, const char **argv, int argc, size_t count, int *kinds)
{
    store_cmd_t cmds[DOCSTORE_GC_SLICE];
    redisReply *replies[DOCSTORE_GC_SLICE];
    store_result_t results[DOCSTORE_GC_SLICE];
    memset(cmds, 0, sizeof cmds);
    memset(replies, 0, sizeof replies);
    for (size_t i = 0; i < count; i++) {
        cmds[i].argc = argc;
        cmds[i].argv = argv + i * (size_t)argc;
        cmds[i].argv_len = NULL;
    }
    store_command_many(self->store, cmds, count, replies, results);
    bool ok = true;
    for (size_t i = 0; i < count; i++) {
        kinds[i] = results[i] == STORE_OK && replies[i] ? replies[i]->type : -1;
        if (kinds[i] < 0 || kinds[i] == REDIS_REPLY_ERROR)
            ok = false;
        if (replies[i])
            freeReplyObject(replies[i]);
    }
    return ok;
}

/* The next slice of the volume: unreferred blobs become candidates (first
 * seen now, unless already), referred ones stop being candidates. */
static bool gc_examine(docstore_t *self, long long now)
{
    gc_slice_t *slice = calloc(1, sizeof *slice);
    if (!slice)
        return false;
    bool ok = false;
    long walked =
        blobstore_walk(self->blobs, &self->gc_cursor, DOCSTORE_GC_SLICE, gc_collect, slice);
    if (walked < 0) {
        log_warn("cannot walk the blobs of the volume", "{s:i}", "folder",
                 (int)self->gc_cursor.folder);
        free(slice);
        return true; /* the volume's trouble, not Redis's: candidates still go */
    }
    if (slice->count == 0) {
        free(slice);
        return true;
    }
    const char *lookups[DOCSTORE_GC_SLICE * 3];
    int kinds[DOCSTORE_GC_SLICE];
    for (size_t i = 0; i < slice->count; i++) {
        lookups[3 * i] = "ZSCORE";
        lookups[3 * i + 1] = "docstore:blobs";
        lookups[3 * i + 2] = slice->shas[i];
    }
    if (gc_pipeline(self, lookups, 3, slice->count, kinds)) {
        char first_seen[24];
        snprintf(first_seen, sizeof first_seen, "%lld", now);
        const char *changes[DOCSTORE_GC_SLICE * 5];
        for (size_t i = 0; i < slice->count; i++) {
            const char **c = changes + 5 * i;
            if (kinds[i] == REDIS_REPLY_NIL) {
                c[0] = "ZADD";
                c[1] = "docstore:gc:candidates";
                c[2] = "NX";
                c[3] = first_seen;
                c[4] = slice->shas[i];
            } else {
                /* ZREM with a member twice: harmless, keeps one arity. */
                c[0] = "ZREM";
                c[1] = "docstore:gc:candidates";
                c[2] = slice->shas[i];
                c[3] = slice->shas[i];
                c[4] = slice->shas[i];
            }
        }
        ok = gc_pipeline(self, changes, 5, slice->count, kinds);
    }
    free(slice);
    return ok;
}

/* Removes the candidates past their grace that are still unreferred. */
static bool gc_collect_due(docstore_t *self, long long now, const sha_list_t *uploading)
{
    redisReply *r = NULL;
    store_result_t result =
        store_command(self->store, &r, "ZRANGEBYSCORE docstore:gc:candidates -inf %lld LIMIT 0 %d",
                      now - (long long)self->gc_grace_s, DOCSTORE_GC_SLICE);
    if (result != STORE_OK || r->type != REDIS_REPLY_ARRAY) {
        if (r)
            freeReplyObject(r);
        return false;
    }
    bool ok = true;
    for (size_t i = 0; i < r->elements && ok; i++) {
        const char *sha = r->element[i]->str;
        if (r->element[i]->type != REDIS_REPLY_STRING)
            continue;
        if (!blob_sha_valid(sha)) {
            redisReply *z = NULL;
            if (store_command(self->store, &z, "ZREM docstore:gc:candidates %s", sha) != STORE_OK)
                ok = false;
            if (z)
                freeReplyObject(z);
            continue;
        }
        /* Right before removal: referred to again, or about to be? */
        redisReply *z = NULL;
        result = store_command(self->store, &z, "ZSCORE docstore:blobs %s", sha);
        bool referred = z && z->type != REDIS_REPLY_NIL;
        if (result != STORE_OK || (z && z->type == REDIS_REPLY_ERROR)) {
            if (z)
                freeReplyObject(z);
            ok = false;
            break;
        }
        freeReplyObject(z);
        if (sha_listed(uploading, sha))
            continue; /* an upload of these bytes is open: wait for its end */
        if (!referred) {
            uint64_t size = 0;
            int64_t changed_s = 0;
            blob_result_t present = blobstore_stat(self->blobs, sha, &size, &changed_s);
            if (present != BLOB_OK && present != BLOB_MISSING)
                continue; /* cannot tell: kept as a candidate */
            /* Installed again lately (a commit renames its bytes in, even
             * over the same content): its version may be on its way to
             * Redis, or its commit lost and about to be sent again, which
             * finds the blob if it is still there. It gets a whole grace
             * from then, whatever its upload named in its begin. */
            if (present == BLOB_OK && now - changed_s < (long long)self->gc_grace_s)
                continue;
            if (present == BLOB_OK && blobstore_remove(self->blobs, sha) != BLOB_OK) {
                log_warn("cannot remove an unreferred blob", "{s:s}", "sha256", sha);
                continue; /* kept as a candidate: tried again next tick */
            }
            if (present == BLOB_OK)
                log_info("unreferred blob removed", "{s:s, s:I, s:i}", "sha256", sha, "size",
                         (json_int_t)size, "grace_s", (int)self->gc_grace_s);
        }
        z = NULL;
        if (store_command(self->store, &z, "ZREM docstore:gc:candidates %s", sha) != STORE_OK)
            ok = false;
        if (z)
            freeReplyObject(z);
    }
    freeReplyObject(r);
    return ok;
}

void docstore_tick(void *ctx)
{
    docstore_t *self = ctx;
    sweep_counts_t counts;
    sha_list_t uploading = {0};
    long long now = (long long)time(NULL);
    bool ok = sweep_uploads(self, &counts, &uploading) && gc_examine(self, now) &&
              gc_collect_due(self, now, &uploading);
    free(uploading.shas);
    if (!ok && !self->tick_failing)
        log_warn("housekeeping cannot reach the store: retried every tick", "{s:s}", "error",
                 store_last_error(self->store));
    else if (ok && self->tick_failing)
        log_info("housekeeping reaches the store again", NULL);
    self->tick_failing = !ok;
    if (ok && counts.files > 0)
        log_info("temporary files of abandoned uploads removed", "{s:i}", "files", counts.files);
}

/* ====================================================================== */
/* Metrics                                                                */
/* ====================================================================== */

void docstore_count_into(docstore_t *self, metrics_t *metrics)
{
    static const char *const by_direction[] = {"direction"};
    self->bytes_total = metrics_counter(
        metrics, "passerelle_docstore_bytes_total",
        "Document bytes transferred: in, chunks written into uploads; out, read to clients.",
        by_direction, 1);
    self->uploads_open = metrics_gauge(
        metrics, "passerelle_docstore_uploads_in_progress",
        "Uploads begun and neither committed nor abandoned, across replicas.", NULL, 0);
    /* Both directions from the first scrape, so that a rate is defined
     * before the first transfer. */
    metric_add(self->bytes_total, (const char *[]){"in"}, 0);
    metric_add(self->bytes_total, (const char *[]){"out"}, 0);
}

void docstore_collect(void *ctx, store_t *store, metrics_t *metrics)
{
    (void)metrics;
    docstore_t *self = ctx;
    redisReply *r = NULL;
    store_result_t result = store_command(store, &r, "ZCARD docstore:uploads");
    /* Unknown while Redis cannot be asked: NaN, not a stale count. */
    double open = result == STORE_OK && r->type == REDIS_REPLY_INTEGER ? (double)r->integer : NAN;
    if (r)
        freeReplyObject(r);
    metric_set(self->uploads_open, NULL, open);
}

/* ====================================================================== */
/* Routes                                                                 */
/* ====================================================================== */

const route_t docstore_routes[] = {
    {"upload.begin", &passerelle__upload_begin_request__descriptor, handle_upload_begin, true},
    /* Idempotent by its offset, not by a key: no record, no transaction. */
    {"upload.chunk", &passerelle__upload_chunk_request__descriptor, handle_upload_chunk, false},
    {"upload.commit", &passerelle__upload_commit_request__descriptor, handle_upload_commit, true},
    {"document.get", &passerelle__document_get_request__descriptor, handle_document_get, false},
    {"document.read", &passerelle__document_read_request__descriptor, handle_document_read, false},
    {"document.list", &passerelle__document_list_request__descriptor, handle_document_list, false},
    {"document.withdraw", &passerelle__document_withdraw_request__descriptor,
     handle_document_withdraw, true},
    {"docs.fsck", &passerelle__fsck_request__descriptor, handle_docs_fsck, false},
};

const size_t docstore_route_count = sizeof docstore_routes / sizeof docstore_routes[0];
