/* The request server: an actor (CZMQ style) owning one ROUTER socket and a
 * poller. For each request it: decodes the envelope (envelope.h), finds the
 * route, names the caller from its CURVE key (identity.h), checks the party
 * against the ACL (acl.h), for writes returns the stored reply if the
 * idempotency key was seen, unpacks the body with the route's descriptor,
 * runs the handler, and sends the reply. A malformed request gets a reply,
 * never a crash or silence.
 *
 * Handlers are `void handle_x(void *ctx, const call_t *call, const
 * ProtobufCMessage *request, reply_t *reply)`: validate, read, decide, build
 * the reply body, and commit with reply_commit(). If the commit finds its
 * reads were stale (someone wrote in between) the server runs the handler
 * again, a bounded number of times, on fresh state.
 *
 * Group commit. Redis runs with appendfsync always, so a write costs an
 * fsync; committing each request on its own would make every writer wait
 * for its own, whatever the number of clients. Instead, the server works in
 * batches:
 *   1. it drains the requests already waiting on its socket (at most
 *      SERVER_BATCH_MAX, without blocking; if the previous batch carried
 *      more writes than are waiting, it waits up to SERVER_GATHER_US for
 *      those writers to come back, so that they share this batch rather
 *      than each paying one more fsync; a lone client never waits) and
 *      runs each one's pipeline up to and including its handler;
 *      reply_commit() does not commit but hands the transaction and the
 *      reply to store with it to the server (txn_take). A request without
 *      a transaction (a read, a refusal, a repeat answered from state) is
 *      answered at once;
 *   2. it commits every pending transaction as one Redis pipeline
 *      (txn_commit_batch): one event-loop pass, one fsync for all; just
 *      before, the service's prepare_commit does, once for all, the work
 *      handlers deferred (reply_defer: the docstore's blob fsyncs, which
 *      the batch's blobs then share), failing the requests whose work
 *      failed, their transactions not committed;
 *   3. it maps each outcome onto its reply (committed, duplicate -> the
 *      stored reply, key reused, lost -> UNAVAILABLE, refused -> INTERNAL),
 *      sends the replies whose write is now durable, and runs again the
 *      handlers whose commit was stale, on fresh state, to commit them in a
 *      following round. A stale commit caused by an earlier request of the
 *      same batch (same record) is not counted against the request's
 *      retries: every round commits or counts something, so rounds end.
 * Reads of a batch are grouped too. The handlers of the requests drained
 * together run in passes over a snapshot of the records they read
 * (store_snapshot_*): a handler that reads a record the snapshot does not
 * hold yet gives up, its run thrown away; the records missed by a pass are
 * read in one pipeline, and the handlers run again. The first pass needs
 * no Redis, so the group's idempotency records are read in the pipeline of
 * the first fill (txn_lookup_many_fill) rather than in a round trip of
 * their own: a handler may therefore run for a request its lookup then
 * answers (a duplicate gets the stored reply, a reused key or a lost store
 * its error), that run being thrown away. A request costs a round trip per
 * step of its chain of dependent reads (a unit, then its convention),
 * shared by every request of the group, instead of one per read. The
 * snapshot holds what Redis said during the group, before any of the
 * batch's commits, which is what each handler would have read on its own;
 * commits are guarded as ever. So a handler may run more than once per
 * request: it must act only through its reply and its transaction (the
 * house rule already: validate, read, decide, reply, commit).
 * A reply to a write never leaves before its write is durable. Requests of
 * one batch that touch one record are ordered by the pipeline: the later
 * one goes stale and is run again on what the earlier one wrote; two
 * requests with one idempotency key in one batch commit once, the second
 * getting the first's stored reply.
 *
 * Every server also answers "health" (HealthRequest -> HealthReply) and, if
 * it has an event stream, "event.list" (EventListRequest ->
 * EventListReply). */
#ifndef PASSERELLE_SERVER_H
#define PASSERELLE_SERVER_H

#include "identity.h"
#include "ids.h"
#include "listing.h"
#include "metrics.h"
#include "status.h"
#include "store.h"
#include "txn.h"

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PASSERELLE_VERSION "0.1.0"

typedef struct {
    const caller_t *caller;
    const char *type;
    const char *request_id;
    /* Writes only (NULL for reads): the Redis key of this request's
     * idempotency record (scoped by service, caller key and the client's
     * idempotency key) and the request's fingerprint (SHA-256 of type and
     * body, hex). Pass both to txn_new(). */
    const char *idempotency_key;
    const char *fingerprint;
    uint32_t idempotency_ttl_s;
} call_t;

typedef struct {
    status_t status;
    char message[512];
    char field[64];
    uint8_t *body; /* packed reply message, owned (malloc) */
    size_t body_len;
    /* Set by reply_commit: a whole stored envelope to send as is (a
     * duplicate), or the request to run again (stale reads). */
    uint8_t *stored;
    size_t stored_len;
    bool retry;
    /* Group commit, managed by the server (handlers leave these alone): the
     * store whose commits the server groups (NULL outside a server: then
     * reply_commit commits at once), the transaction reply_commit took, the
     * reply envelope to store with it, and what to log once it is durable. */
    store_t *group_store;
    txn_t *txn;
    uint8_t *envelope;
    size_t envelope_len;
    char log_what[64];
    char log_subject[192];
    /* Work deferred to the batch's prepare_commit (reply_defer): whether
     * the server takes any, the work and how to release it. */
    bool defer_ok;
    void *deferred;
    void (*deferred_release)(void *work);
} reply_t;

/* Sets an error status with the field at fault (NULL if none) and a
 * printf-style message. */
void reply_error(reply_t *reply, status_t status, const char *field, const char *format, ...)
    __attribute__((format(printf, 4, 5)));

/* A failed store call as the reply: UNAVAILABLE (lost: retry) or INTERNAL
 * (Redis refused the command), with the store's last error. */
void reply_store_failure(reply_t *reply, store_t *store, store_result_t result);

/* The party of the caller (PARTY_NONE when unauthenticated). */
party_t caller_party(const call_t *call);

/* ---- records ----
 * A record is a Redis hash {v: version, pb: packed message} (store.h). The
 * readers below unpack it and, on failure, set the reply (UNAVAILABLE when
 * Redis is lost, INTERNAL when it refused or a record does not decode), so
 * that a handler only has to return. */

typedef enum {
    READ_FOUND,
    READ_ABSENT,
    READ_FAILED, /* the reply says why */
} read_result_t;

/* Reads and unpacks the record at key as a desc message. On READ_FOUND the
 * caller owns *msg_p (protobuf_c_message_free_unpacked) and *version is its
 * version; otherwise *msg_p is NULL. A record that does not decode is
 * logged with its key and type. */
read_result_t record_read(store_t *store, const char *key, const ProtobufCMessageDescriptor *desc,
                          ProtobufCMessage **msg_p, uint64_t *version, reply_t *reply);

/* Reads a reference record at key, whose value is the id of another record
 * (an external reference pointing to its unit): the id, of prefix
 * id_prefix (ids.h), into id. A value that is not such an id is INTERNAL
 * ("record <key> does not hold a <noun> id"). */
read_result_t record_read_ref(store_t *store, const char *key, char id_prefix, const char *noun,
                              char id[ID_LEN], reply_t *reply);

/* A listing's read callback (listing.h) for records kept at key_prefix
 * followed by the member id: pass a record_lister_t as read_arg. A record
 * that cannot be read stops the listing with LISTING_READ_FAILED, the reply
 * saying why. */
typedef struct {
    store_t *store;
    const char *key_prefix; /* "docstore:document:" */
    const ProtobufCMessageDescriptor *descriptor;
    reply_t *reply;
} record_lister_t;

listing_result_t record_list_read(void *arg, const char *id, ProtobufCMessage **msg_p);

/* The reply for a listing that failed: UNAVAILABLE or INTERNAL as for a
 * store call, INTERNAL when out of memory, and nothing for
 * LISTING_READ_FAILED (the read has set the reply). True on LISTING_OK. */
bool reply_listing_result(reply_t *reply, store_t *store, listing_result_t result);

/* Packs msg as the reply body (status stays OK). */
void reply_set_body(reply_t *reply, const ProtobufCMessage *msg);

/* Commits txn for this write with the reply built so far (stored under the
 * idempotency key). Maps the outcome onto the reply: committed -> as is;
 * duplicate -> the first reply; stale -> retry; lost -> UNAVAILABLE;
 * refused -> INTERNAL; key reused -> INVALID_ARGUMENT (idempotency_key).
 *
 * Inside a server (group commit, above) the transaction's contents are
 * taken (txn is left empty: the handler still txn_destroy()s it) and
 * committed by the server with the rest of the batch, which then maps the
 * outcome the same way; returns true (the reply is sent once the write is
 * durable). One transaction per handler run. Outside a server, commits at
 * once and returns true if the reply should now be sent as it stands
 * (committed or duplicate). */
bool reply_commit(reply_t *reply, const call_t *call, store_t *store, txn_t *txn);

/* Hands work over to the service's prepare_commit (server_config_t), to be
 * done for the whole batch at once just before its transactions are
 * committed, instead of by this run of the handler: the docstore's blob
 * fsyncs, which the blobs of a batch share. The reply owns work from now
 * on: release(work) (may be NULL) is called whenever the reply is reset,
 * i.e. when this run of the handler is thrown away (a pass that missed a
 * record, a request its idempotency record answers, a run again after a
 * stale commit) or once the reply is sent; so a run thrown away leaves
 * nothing done. One piece of work per run (a second call releases the
 * first). Defer only on the way to an OK reply and its reply_commit. The
 * request the handler was given stays valid until then, so work may point
 * into it. False, nothing taken, when the server has no
 * prepare_commit or outside a server (reply_commit commits at once): then
 * do the work now. Work deferred must be committed with the server's store
 * (reply_commit refuses, INTERNAL, a transaction for another store that
 * would go through with the work undone). */
bool reply_defer(reply_t *reply, void *work, void (*release)(void *work));

/* What to log (at info, with the subject, the event id and the request id)
 * once this request's write is committed: the log line of a write says it
 * is durable. Call before reply_commit; strings are copied. */
void reply_log_commit(reply_t *reply, const char *what, const char *subject);

/* The answer to a request for a stream's entries after a position
 * (event.list, feed.replay): INVALID_ARGUMENT naming "after" for a
 * malformed position or "limit" above 1000 (default 100), otherwise an
 * EventListReply. */
void reply_stream_entries(reply_t *reply, store_t *store, const char *stream, const char *after,
                          bool has_limit, uint32_t limit);

typedef void(handler_fn)(void *ctx, const call_t *call, const ProtobufCMessage *request,
                         reply_t *reply);

typedef struct {
    const char *type;                          /* "unit.register" */
    const ProtobufCMessageDescriptor *request; /* body type */
    handler_fn *handler;
    bool write; /* needs an idempotency key */
} route_t;

typedef struct {
    const char *service;      /* "reservations": logs, health, key scoping */
    const char *endpoint;     /* "tcp://127.0.0.1:7401"; ":*" picks a port */
    const char *keys_dir;     /* key directory (identity.h) */
    bool insecure;            /* no CURVE: every caller is PARTY_ADMIN "insecure" */
    size_t max_request_bytes; /* default 1 MiB; socket hard limit is 4x */
    /* Messages ZeroMQ queues per connection each way (ROUTER high-water
     * marks): past it a client is held back by TCP, and replies to one
     * that does not read them are dropped. 0: ZeroMQ's default (1000). */
    int queue_per_peer;
    uint32_t idempotency_ttl_s; /* default 86400 */
    const route_t *routes;
    size_t route_count;
    void *ctx;          /* handed to every handler */
    store_t *store;     /* borrowed; used by the server thread only */
    const char *stream; /* the service's event stream, or NULL */
    /* Housekeeping (sweeps, garbage collection), called with ctx in the
     * server thread about every tick_ms, between batches, busy or not;
     * NULL for none. It holds up requests while it runs: keep each call
     * short and do long work a slice at a time. */
    void (*tick)(void *ctx);
    int tick_ms;
    /* Deferred work (reply_defer), done once per round of group commit:
     * called with ctx and the replies of the round that carry work (each
     * with its transaction taken, in commit order), before any of their
     * transactions goes to Redis. It does the work of all of them at once;
     * a reply it sets an error on (reply_error, any status but OK) is not
     * committed: its transaction is dropped and that error sent, the
     * others going on as ever. So a reply never says OK before its work is
     * done. NULL: reply_defer refuses, handlers do their work themselves. */
    void (*prepare_commit)(void *ctx, reply_t *const *replies, size_t count);
    /* Where to count requests (passerelle_requests_total by type and
     * status, passerelle_request_duration_seconds by type); NULL for
     * nowhere. Borrowed: it must outlive the server. */
    metrics_t *metrics;
    /* PASSERELLE_SHUTDOWN_GRACE_MS: how long a service may take to stop
     * once told to (SIGTERM), for its main to hand to server_drain and to
     * what it stops after the server. Not used by the server itself. */
    int shutdown_grace_ms;
} server_config_t;

typedef struct server_t server_t;

/* Reads PASSERELLE_INSECURE, PASSERELLE_KEYS_DIR, PASSERELLE_MAX_REQUEST_BYTES,
 * PASSERELLE_IDEMPOTENCY_TTL_S and PASSERELLE_SHUTDOWN_GRACE_MS (0 to
 * 600000, default 10000) into cfg. False (logged) on a bad value. */
bool server_config_from_env(server_config_t *cfg);

/* Starts the server actor: binds, and with CURVE starts zauth on the
 * key directory first. Returns NULL (logged) if it cannot bind or the server
 * certificate is missing. The configuration is copied, except the routes,
 * ctx and store, which must outlive the server. */
server_t *server_new(const server_config_t *cfg);

/* The clean stop of a service (SIGTERM), within grace_ms from this call.
 * Blocks until done:
 *   1. the batch in hand completes as ever: its replies leave once its
 *      commit is durable;
 *   2. every request still queued, or arriving on a connection already
 *      open, is answered at once UNAVAILABLE "the service is stopping;
 *      retry", with no handler run and no Redis call (client.h retries
 *      UNAVAILABLE after a pause, and writes are idempotent, so the retry
 *      lands on the restarted service or on another replica);
 *   3. once no request has come for SERVER_DRAIN_QUIET_MS (server.c), or
 *      when grace_ms has passed, whichever comes first, the endpoint is
 *      unbound and the socket closed, lingering at most what is left of
 *      grace_ms for the last replies to leave. Requests still queued at the
 *      deadline get no reply: their clients time out and retry.
 * The endpoint stays bound while it drains, not unbound first: unbinding
 * a ZeroMQ endpoint also drops the connections it accepted, and with them
 * the replies to the requests in flight on them. A client connecting
 * meanwhile is answered like the others. Logs "stopped taking requests"
 * and "drained" (requests refused, time taken). grace_ms 0 stops at once
 * after the batch in hand. Then server_destroy; a second call returns at
 * once. */
void server_drain(server_t *self, int grace_ms);

/* Joins the actor. Without server_drain before, the server stops at once,
 * answering normally the requests already queued. */
void server_destroy(server_t **self_p);

/* The bound TCP port and endpoint ("tcp://127.0.0.1:41234"). */
int server_port(const server_t *self);
const char *server_endpoint(const server_t *self);

/* Runs until SIGINT/SIGTERM (zsys_interrupted), for a service's main. */
void server_wait_for_signal(server_t *self);

#endif
