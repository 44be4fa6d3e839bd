/* The document store's request handlers and their route table (server.h).
 *
 * Each handler validates, reads what it needs from Redis, then (reads
 * first: under group commit a handler may run more than once, server.h)
 * does its one side effect on the volume, which is harmless if repeated
 * (a pwrite of the same bytes at the same offset; a commit of an upload
 * whose blob is already in place), and commits one transaction. An
 * upload.begin carrying a whole document does not store its blob itself:
 * it hands it to docstore_prepare_commit, which stores the blobs of a
 * batch together before the batch's transactions are committed.
 *
 * upload.chunk is the exception that makes transfers fast: it is not a
 * write of the server's kind (no idempotency record, no transaction), being
 * idempotent by its offset instead. The service keeps in memory, per upload
 * in progress, the bytes received (the next offset), the running hashes of
 * those bytes (blobs.h) and the time of the last chunk, so a chunk costs a
 * pwrite and its hashing, and no Redis round trip. What is in memory is
 * rebuilt from the session record and the upload's progress record on the
 * volume by the first chunk or commit that finds it missing (a restart):
 * the count is exact within a boot of the machine, the hashes are not
 * (that commit reads the file). The housekeeping tick records each live
 * upload's progress in its session (after an fdatasync of the bytes) and
 * pushes its expiry on, so a session is swept only once its upload has
 * been idle for the time to live, and a reboot resumes from the last tick.
 *
 * Redis keys, each written only through commit.lua except the last two:
 *   docstore:document:<F id>          Document (record version = its version)
 *   docstore:upload:<L id>            an upload session, kept as a Document
 *                                     while the upload is in progress:
 *       id = the document it adds a version to ("" for a new one),
 *            title, kind, theme, territory,
 *            visibility, tags = a new document's metadata, owner = the
 *            caller's party, created_at = begin time, updated_at = when it
 *            expires, version = bytes received as last recorded (at begin,
 *            then by the housekeeping tick: the service's own count, in
 *            memory, is ahead of it); versions[0] = the version
 *            to come (sha256 expected, "" when the begin named none and
 *            the commit names it, size, media_type, filename, added_by
 *            = the caller's key name, number = 0)
 *       Deleted (txn_delete) with its docstore:uploads entry by the
 *       transaction of upload.commit that records the version (or refuses
 *       the upload for good), or by the sweep once expired. upload.commit
 *       sent again with its idempotency key is answered from that record
 *       (the document made); with a new key, or upload.chunk after the
 *       commit, finds no upload: NOT_FOUND on upload_id.
 *   docstore:uploads                  uploads in progress (sorted set, score 0)
 *   docstore:documents                every document
 *   docstore:documents:kind:<KIND>    docstore:documents:theme:<n>
 *   docstore:documents:territory:<CTn | ALL>
 *   docstore:documents:owner:<PARTY>  docstore:documents:tag:<folded tag>
 *   docstore:documents:word:<folded word of the title>
 *   docstore:blobs                    every SHA-256 a version refers to
 *   docstore:events                   the event stream; docstore:idem:* the
 *                                     idempotency records (server)
 *   docstore:corrupt                  (a set, SADD on a failed read or fsck)
 *                                     blobs found corrupt
 *   docstore:gc:candidates            blobs on the volume no version refers
 *                                     to (sorted set: SHA-256 -> Unix time
 *                                     first seen so), the garbage collector's
 *                                     (docstore_tick), written directly */
#ifndef DOCSTORE_DOCS_H
#define DOCSTORE_DOCS_H

#include "blobs.h"
#include "server.h"
#include "store.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DOCSTORE_STREAM "docstore:events"
#define DOCSTORE_SOURCE "/passerelle/docstore"

#define DOCSTORE_MAX_BYTES_DEFAULT   536870912ULL
#define DOCSTORE_MAX_UPLOADS_DEFAULT 16
#define DOCSTORE_UPLOAD_TTL_DEFAULT  3600
#define DOCSTORE_PAGE_DEFAULT        50
#define DOCSTORE_PAGE_MAX            200
#define DOCSTORE_TICK_MS_DEFAULT     10000
#define DOCSTORE_GC_GRACE_DEFAULT    86400
#define DOCSTORE_GC_SLICE            256 /* blobs examined per tick */
/* Chunks (or ranges) a client may have in flight: its credit. */
#define DOCSTORE_WINDOW_DEFAULT 4
#define DOCSTORE_WINDOW_MAX     64

/* An upload in progress as this process knows it (docs.c). */
typedef struct upload_state_t upload_state_t;

/* What every handler is handed as ctx; store and blobs are borrowed. */
typedef struct {
    store_t *store;
    blobstore_t *blobs;
    uint64_t max_bytes;    /* largest document accepted */
    unsigned max_uploads;  /* uploads in progress at once */
    unsigned upload_ttl_s; /* an upload idle that long is abandoned */
    unsigned gc_grace_s;   /* a blob unreferred to that long is removed */
    unsigned window;       /* chunks or ranges a client may have in flight */
    /* The housekeeping's own state (docstore_tick); zero to start. */
    blob_cursor_t gc_cursor;
    bool tick_failing; /* the last tick could not reach Redis (logged once) */
    /* The uploads in progress this process has seen a chunk of: at most
     * one per session (so max_uploads of them), dropped by their commit or
     * by the sweep. Owned; docstore_release frees them. */
    upload_state_t *uploads;
    /* Set by docstore_count_into, NULL for no counting. */
    metric_t *bytes_total;
    metric_t *uploads_open;
} docstore_t;

extern const route_t docstore_routes[];
extern const size_t docstore_route_count;

/* Frees what the store holds in memory (the uploads in progress). */
void docstore_release(docstore_t *self);

/* Declares the document store's metrics in metrics and counts into them:
 *   passerelle_docstore_bytes_total{direction="in"}  bytes written into
 *       uploads, by chunks and by the upload.begin that carries a whole
 *       document (a chunk sent again after it was acknowledged is not
 *       counted again; a whole document sent again is);
 *   passerelle_docstore_bytes_total{direction="out"} bytes read out to
 *       clients by document.read (fsck reads are not transfers);
 *   passerelle_docstore_uploads_in_progress (gauge) the uploads begun and
 *       neither committed nor swept, across replicas (docstore:uploads,
 *       the set PASSERELLE_DOCSTORE_MAX_UPLOADS is checked against), read
 *       at each scrape by docstore_collect.
 * Call before the server starts (the handles are then only read). */
void docstore_count_into(docstore_t *self, metrics_t *metrics);

/* The uploads gauge, for ops_collect (httpd.h): ctx is the docstore_t,
 * store the operations port's own connection, on the HTTP thread. */
void docstore_collect(void *ctx, store_t *store, metrics_t *metrics);

/* Removes abandoned uploads: sessions expired (and not live in this
 * process's memory) are taken out of the index of uploads in progress, and
 * temporary files older than the time to live that no live session claims
 * are deleted. Returns how many files were removed, or -1 if Redis could
 * not be read (nothing is removed then). */
int docstore_sweep(docstore_t *self);

/* Housekeeping, for server_config_t.tick (so in the server's thread,
 * between batches: no handler runs meanwhile). Records the progress of the
 * uploads that received chunks since the last tick in their sessions
 * (bytes fdatasynced first; the expiry pushed on from their last chunk),
 * sweeps the abandoned uploads as docstore_sweep does (an expired session,
 * its index entry, its temporary files and what memory held of it go),
 * then runs the garbage collector one slice:
 *   - the next DOCSTORE_GC_SLICE blobs of the volume (blobstore_walk) are
 *     looked up in docstore:blobs; one no version refers to enters
 *     docstore:gc:candidates with the time it was first seen so, one
 *     referred to again (the same bytes uploaded anew) leaves it;
 *   - candidates first seen more than gc_grace_s ago are removed from the
 *     volume (logged at info with their size), unless, checked right
 *     before, a version refers to them again, an upload in progress
 *     announced their SHA-256 in its begin, or the blob's file changed
 *     less than gc_grace_s ago: a commit renames its bytes in, even over
 *     the same content, and records its version in the same handler run;
 *     if that transaction fails, the commit sent again finds the blob,
 *     whatever its upload named in its begin.
 * A version's blob is never removed, withdrawn or not: docstore:blobs only
 * grows. Does nothing (logged once) while Redis is unreachable. */
void docstore_tick(void *ctx);

/* The server's prepare_commit (server_config_t): stores the blobs of the
 * whole documents (upload.begin carrying the bytes) of one round of the
 * batch together (blobstore_put_many: written, fsynced, renamed, each
 * folder fsynced once), before their versions are committed; a request
 * whose blob cannot be stored is failed as blobstore_put would have it
 * (INVALID_ARGUMENT on sha256, RESOURCE_EXHAUSTED, INTERNAL naming the
 * system error), its version not recorded. replies carry whole_blob_t
 * work (docs.c), the only work the docstore defers. */
void docstore_prepare_commit(void *ctx, reply_t *const *replies, size_t count);

void handle_upload_begin(void *ctx, const call_t *call, const ProtobufCMessage *request,
                         reply_t *reply);
void handle_upload_chunk(void *ctx, const call_t *call, const ProtobufCMessage *request,
                         reply_t *reply);
void handle_upload_commit(void *ctx, const call_t *call, const ProtobufCMessage *request,
                          reply_t *reply);
void handle_document_get(void *ctx, const call_t *call, const ProtobufCMessage *request,
                         reply_t *reply);
void handle_document_read(void *ctx, const call_t *call, const ProtobufCMessage *request,
                          reply_t *reply);
void handle_document_list(void *ctx, const call_t *call, const ProtobufCMessage *request,
                          reply_t *reply);
void handle_document_withdraw(void *ctx, const call_t *call, const ProtobufCMessage *request,
                              reply_t *reply);
void handle_docs_fsck(void *ctx, const call_t *call, const ProtobufCMessage *request,
                      reply_t *reply);

#endif
