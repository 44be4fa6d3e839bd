/* The request server: one ROUTER socket in an actor, and the pipeline every
 * request goes through before and after its handler (see server.h).
 *
 * Everything a request can get wrong is answered here, in one place, with
 * the field at fault: a frame of the wrong shape or size, an envelope that
 * does not decode, an unknown type, a party the ACL refuses, a write without
 * an idempotency key, a body that does not decode. Handlers therefore only
 * ever see a known caller allowed to send a well-formed request.
 *
 * The server is single-threaded by design: the actor owns the socket and
 * runs handlers inline. The store is used from the actor thread only.
 *
 * Writes are committed in groups (server.h): the actor drains the requests
 * waiting on its socket, runs their handlers, which hand their transactions
 * over instead of committing, then commits them all in one Redis pipeline
 * and only then sends their replies; the reads of the requests drained
 * together (idempotency records, then the handlers' records, in passes over
 * a snapshot) are grouped in pipelines too. With Redis fsyncing every write
 * (appendfsync always), one pipeline costs one fsync however many requests
 * it carries, which is how concurrent writers get more than one fsync's
 * worth of throughput from a single-threaded server. Reads and refusals are
 * answered as soon as their handler returns: they never wait for a commit. */
#define _GNU_SOURCE /* ppoll */
#include "server.h"
#include "acl.h"
#include "actor.h"
#include "config.h"
#include "envelope.h"
#include "eventlog.h"
#include "ids.h"
#include "log.h"
#include "sha256.h"

#include <czmq.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A handler whose commit finds stale reads runs again at most this many
 * times: beyond that the record is too hot and the client should back off. */
#define SERVER_MAX_RETRIES  5
#define SERVER_IDEM_KEY_MAX 128
#define EVENT_LIST_DEFAULT  100
#define EVENT_LIST_MAX      1000
/* Replies still queued when the server stops get this long to leave. */
#define SERVER_LINGER_MS 500
/* A draining server closes once no request has come for this long
 * (server_drain). Longer than a client takes from one reply to its next
 * request, so that a request sent as the stop began is answered rather
 * than cut off with its connection; shorter than the pause a client makes
 * before it retries an UNAVAILABLE reply (client.c, 200 ms), so that the
 * retries of the clients just refused do not keep the server open until
 * the end of the grace period. */
#define SERVER_DRAIN_QUIET_MS 100
/* Requests one batch drains from the socket: enough for every client of a
 * busy service to share one fsync, few enough that the first request of a
 * batch does not wait long for the handlers of the others. */
#define SERVER_BATCH_MAX 64
/* Passes of a group's handlers over its snapshot (server_serve_group):
 * one per step of a chain of dependent reads (unit reference, unit,
 * convention and holder), plus the pass that runs through. */
#define SERVER_SNAPSHOT_PASSES 5
/* How long a batch may wait for writers seen in the previous batch
 * (server_gather): about the time their replies take to leave and their
 * next requests to come back, a fraction of the fsync they then share. */
#define SERVER_GATHER_US 300

struct server_t {
    server_config_t cfg; /* strings below are our own copies */
    char *service;
    char *endpoint_cfg;
    char *keys_dir;
    char *stream;
    zactor_t *actor;
    keydir_t *keydir;
    zcert_t *cert;
    bool uses_auth;
    /* Written by the actor before it signals, read after zactor_new. */
    bool bound;
    int port;
    char endpoint[256];
    /* The endpoint as ZeroMQ names it once bound, the wildcard host as
     * 0.0.0.0 and the port resolved: what zsock_unbind wants. */
    char bound_endpoint[256];
    int64_t started_ms;
    sha256_t *hasher; /* request fingerprints, server thread only */
    /* Group commit: the requests of the batch in flight and their commits,
     * used by the actor only. */
    struct slot_t *slots;
    txn_batch_item_t *items;
    txn_lookup_item_t *lookups;
    size_t last_writes;       /* writes committed by the previous batch */
    metric_t *requests_total; /* NULL without a registry */
    metric_t *request_duration;
};

/* ------------------------------------------------------------------------
 * One zauth per process.
 *
 * ZAP is per ZeroMQ context and CZMQ has one context per process, so a
 * second zauth would fight the first over inproc://zeromq.zap.01. Servers in
 * the same process share it; it stops with the last of them. */

static pthread_mutex_t auth_lock = PTHREAD_MUTEX_INITIALIZER;
static zactor_t *auth_actor;
static int auth_users;
static char auth_dir[PATH_MAX];

static bool server_auth_acquire(const char *authorized_dir)
{
    pthread_mutex_lock(&auth_lock);
    if (!auth_actor) {
        auth_actor = zactor_new(zauth, NULL);
        if (!auth_actor) {
            pthread_mutex_unlock(&auth_lock);
            return false;
        }
        auth_dir[0] = '\0';
    }
    if (strcmp(auth_dir, authorized_dir) != 0) {
        if (auth_dir[0])
            log_warn("key folder of this process changed: every server now uses the new one",
                     "{s:s, s:s}", "previous", auth_dir, "authorized", authorized_dir);
        zstr_sendx(auth_actor, "CURVE", authorized_dir, NULL);
        zsock_wait(auth_actor);
        snprintf(auth_dir, sizeof auth_dir, "%s", authorized_dir);
    }
    auth_users++;
    pthread_mutex_unlock(&auth_lock);
    return true;
}

static void server_auth_release(void)
{
    pthread_mutex_lock(&auth_lock);
    if (auth_users > 0 && --auth_users == 0) {
        zactor_destroy(&auth_actor);
        auth_dir[0] = '\0';
    }
    pthread_mutex_unlock(&auth_lock);
}

/* ------------------------------------------------------------------------
 * Replies */

static void reply_reset(reply_t *reply)
{
    free(reply->body);
    free(reply->stored);
    free(reply->envelope);
    txn_destroy(&reply->txn);
    if (reply->deferred_release)
        reply->deferred_release(reply->deferred);
    memset(reply, 0, sizeof *reply);
}

bool reply_defer(reply_t *reply, void *work, void (*release)(void *work))
{
    if (!reply->defer_ok)
        return false;
    if (reply->deferred_release)
        reply->deferred_release(reply->deferred);
    reply->deferred = work;
    reply->deferred_release = release;
    return true;
}

void reply_error(reply_t *reply, status_t status, const char *field, const char *format, ...)
{
    reply->status = status;
    snprintf(reply->field, sizeof reply->field, "%s", field ? field : "");
    va_list ap;
    va_start(ap, format);
    vsnprintf(reply->message, sizeof reply->message, format, ap);
    va_end(ap);
    /* an error carries no body: a half-built one would only mislead */
    free(reply->body);
    reply->body = NULL;
    reply->body_len = 0;
}

void reply_set_body(reply_t *reply, const ProtobufCMessage *msg)
{
    free(reply->body);
    reply->body = NULL;
    reply->body_len = 0;
    if (!msg)
        return;
    size_t len = protobuf_c_message_get_packed_size(msg);
    reply->body = malloc(len ? len : 1);
    if (!reply->body) {
        reply_error(reply, ST_INTERNAL, NULL, "out of memory packing the reply");
        return;
    }
    protobuf_c_message_pack(msg, reply->body);
    reply->body_len = len;
}

void reply_log_commit(reply_t *reply, const char *what, const char *subject)
{
    snprintf(reply->log_what, sizeof reply->log_what, "%s", what ? what : "");
    snprintf(reply->log_subject, sizeof reply->log_subject, "%s", subject ? subject : "");
}

/* Maps a commit's outcome onto the reply; takes stored. True if the reply
 * is final as it stands (committed or duplicate). */
static bool reply_apply(reply_t *reply, txn_result_t result, uint8_t *stored, size_t stored_len,
                        store_t *store)
{
    switch (result) {
    case TXN_COMMITTED:
        free(stored);
        return true;
    case TXN_DUPLICATE:
        free(reply->stored);
        reply->stored = stored;
        reply->stored_len = stored_len;
        return true;
    case TXN_STALE:
        free(stored);
        reply->retry = true;
        return false;
    case TXN_LOST:
        free(stored);
        reply_error(reply, ST_UNAVAILABLE, NULL, "store unavailable (%s), retry",
                    store_last_error(store));
        return false;
    case TXN_KEY_REUSED:
        free(stored);
        reply_error(reply, ST_INVALID_ARGUMENT, "idempotency_key",
                    "idempotency key already used for another request");
        return false;
    case TXN_REFUSED:
    case TXN_NEW:
    default:
        free(stored);
        reply_error(reply, ST_INTERNAL, NULL, "store refused the write");
        return false;
    }
}

/* The write is durable: say so in the log, under the handler's label. */
static void reply_log_committed(const reply_t *reply, const call_t *call, const txn_t *txn)
{
    if (!reply->log_what[0] || reply->status != ST_OK || reply->stored)
        return;
    log_info(reply->log_what, "{s:s, s:s, s:s}", "subject", reply->log_subject, "event",
             txn ? txn_event_id(txn) : "", "request_id", call->request_id ? call->request_id : "");
}

bool reply_commit(reply_t *reply, const call_t *call, store_t *store, txn_t *txn)
{
    if (reply->txn) {
        log_error("a request commits one transaction", "{s:s}", "type", call->type);
        reply_error(reply, ST_INTERNAL, NULL, "the handler committed twice");
        return false;
    }
    size_t env_len = 0;
    uint8_t *env = envelope_encode_reply(call->request_id, reply->status, reply->message,
                                         reply->field, reply->body, reply->body_len, &env_len);
    if (!env) {
        reply_error(reply, ST_INTERNAL, NULL, "out of memory packing the reply");
        return false;
    }
    if (reply->group_store && reply->group_store == store) {
        /* Group commit: the server commits it with the rest of the batch. */
        txn_t *taken = txn_take(txn);
        if (!taken) {
            free(env);
            reply_error(reply, ST_INTERNAL, NULL, "out of memory taking the transaction");
            return false;
        }
        reply->txn = taken;
        free(reply->envelope);
        reply->envelope = env;
        reply->envelope_len = env_len;
        return true;
    }
    if (reply->deferred) {
        /* Work handed to prepare_commit is done only for group commits:
         * committing without it would answer OK with the work undone. */
        free(env);
        log_error("deferred work needs the server's group commit", "{s:s}", "type", call->type);
        reply_error(reply, ST_INTERNAL, NULL, "the handler deferred work it then committed alone");
        return false;
    }
    uint8_t *stored = NULL;
    size_t stored_len = 0;
    char position[64] = "";
    txn_result_t result = txn_commit(txn, store, env, env_len, &stored, &stored_len, position);
    free(env);
    bool final = reply_apply(reply, result, stored, stored_len, store);
    if (result == TXN_COMMITTED)
        reply_log_committed(reply, call, txn);
    return final;
}

/* ------------------------------------------------------------------------
 * Built-in routes. Their ctx is the server itself, not the service's. */

static void handle_health(void *ctx, const call_t *call, const ProtobufCMessage *request,
                          reply_t *reply)
{
    (void)request;
    server_t *self = ctx;
    Passerelle__HealthReply health = PASSERELLE__HEALTH_REPLY__INIT;
    health.service = self->service;
    health.version = (char *)PASSERELLE_VERSION;
    health.has_redis_ok = true;
    health.redis_ok = self->cfg.store ? store_ping(self->cfg.store) : false;
    health.has_uptime_s = true;
    health.uptime_s = (uint64_t)((time_now_ms() - self->started_ms) / 1000);
    health.caller_party = (char *)party_name(call->caller->party);
    health.caller_name = (char *)call->caller->name;
    reply_set_body(reply, &health.base);
}

/* Redis stream ids: "ms" or "ms-seq". Checked here so that a bad position is
 * the client's INVALID_ARGUMENT and not Redis's refusal. */
static bool stream_position_valid(const char *s)
{
    size_t i = 0, digits = 0;
    while (s[i] >= '0' && s[i] <= '9')
        i++, digits++;
    if (digits == 0 || digits > 20)
        return false;
    if (s[i] == '\0')
        return true;
    if (s[i++] != '-')
        return false;
    digits = 0;
    while (s[i] >= '0' && s[i] <= '9')
        i++, digits++;
    return digits > 0 && digits <= 20 && s[i] == '\0';
}

void reply_store_failure(reply_t *reply, store_t *store, store_result_t result)
{
    if (result == STORE_LOST)
        reply_error(reply, ST_UNAVAILABLE, NULL, "the store is unavailable (%s); retry",
                    store_last_error(store));
    else
        reply_error(reply, ST_INTERNAL, NULL, "the store refused a command (%s)",
                    store_last_error(store));
}

party_t caller_party(const call_t *call)
{
    return call->caller ? call->caller->party : PARTY_NONE;
}

/* ------------------------------------------------------------------------
 * Records: the reads every service makes of its {v, pb} hashes. */

read_result_t record_read(store_t *store, const char *key, const ProtobufCMessageDescriptor *desc,
                          ProtobufCMessage **msg_p, uint64_t *version, reply_t *reply)
{
    uint8_t *data = NULL;
    size_t len = 0;
    *msg_p = NULL;
    store_result_t result = store_record_get(store, key, version, &data, &len);
    if (result != STORE_OK) {
        reply_store_failure(reply, store, result);
        return READ_FAILED;
    }
    if (*version == 0) {
        free(data);
        return READ_ABSENT;
    }
    *msg_p = protobuf_c_message_unpack(desc, NULL, len, data);
    free(data);
    if (!*msg_p) {
        log_error("record does not decode", "{s:s, s:s, s:I}", "key", key, "type", desc->name,
                  "length", (json_int_t)len);
        reply_error(reply, ST_INTERNAL, NULL, "record %s does not decode", key);
        return READ_FAILED;
    }
    return READ_FOUND;
}

read_result_t record_read_ref(store_t *store, const char *key, char id_prefix, const char *noun,
                              char id[ID_LEN], reply_t *reply)
{
    uint8_t *data = NULL;
    size_t len = 0;
    uint64_t version = 0;
    id[0] = '\0';
    store_result_t result = store_record_get(store, key, &version, &data, &len);
    if (result != STORE_OK) {
        reply_store_failure(reply, store, result);
        return READ_FAILED;
    }
    if (version == 0) {
        free(data);
        return READ_ABSENT;
    }
    bool ok = len < ID_LEN;
    if (ok) {
        memcpy(id, data, len);
        id[len] = '\0';
        ok = id_valid(id_prefix, id);
    }
    free(data);
    if (!ok) {
        id[0] = '\0';
        reply_error(reply, ST_INTERNAL, NULL, "record %s does not hold a %s id", key, noun);
        return READ_FAILED;
    }
    return READ_FOUND;
}

listing_result_t record_list_read(void *arg, const char *id, ProtobufCMessage **msg_p)
{
    record_lister_t *lister = arg;
    char key[256];
    int n = snprintf(key, sizeof key, "%s%s", lister->key_prefix, id);
    if (n < 0 || (size_t)n >= sizeof key) {
        *msg_p = NULL;
        reply_error(lister->reply, ST_INTERNAL, NULL, "the key of %.40s is too long", id);
        return LISTING_READ_FAILED;
    }
    uint64_t version = 0;
    read_result_t found =
        record_read(lister->store, key, lister->descriptor, msg_p, &version, lister->reply);
    return found == READ_FAILED ? LISTING_READ_FAILED : LISTING_OK;
}

bool reply_listing_result(reply_t *reply, store_t *store, listing_result_t result)
{
    if (result == LISTING_LOST || result == LISTING_REFUSED)
        reply_store_failure(reply, store, result == LISTING_LOST ? STORE_LOST : STORE_REFUSED);
    else if (result == LISTING_NO_MEMORY)
        reply_error(reply, ST_INTERNAL, NULL, "out of memory");
    return result == LISTING_OK;
}

void reply_stream_entries(reply_t *reply, store_t *store, const char *stream, const char *after,
                          bool has_limit, uint32_t limit)
{
    after = after && *after ? after : "0";
    if (!stream_position_valid(after)) {
        reply_error(reply, ST_INVALID_ARGUMENT, "after",
                    "after must be a stream position such as 1700000000000-0");
        return;
    }
    if (!has_limit || limit == 0)
        limit = EVENT_LIST_DEFAULT;
    if (limit > EVENT_LIST_MAX) {
        reply_error(reply, ST_INVALID_ARGUMENT, "limit", "limit must be at most %d, not %u",
                    EVENT_LIST_MAX, limit);
        return;
    }
    if (!store) {
        reply_error(reply, ST_UNAVAILABLE, NULL, "no store configured");
        return;
    }
    Passerelle__EventListReply list = PASSERELLE__EVENT_LIST_REPLY__INIT;
    store_result_t rc = eventlog_list(store, stream, after, limit, &list);
    if (rc == STORE_OK)
        reply_set_body(reply, &list.base);
    else
        reply_store_failure(reply, store, rc);
    eventlog_list_free(&list);
}

static void handle_event_list(void *ctx, const call_t *call, const ProtobufCMessage *request,
                              reply_t *reply)
{
    (void)call;
    server_t *self = ctx;
    const Passerelle__EventListRequest *req = (const Passerelle__EventListRequest *)request;
    reply_stream_entries(reply, self->cfg.store, self->stream, req->after, req->has_limit,
                         req->limit);
}

static const route_t builtin_health = {"health", &passerelle__health_request__descriptor,
                                       handle_health, false};
static const route_t builtin_event_list = {
    "event.list", &passerelle__event_list_request__descriptor, handle_event_list, false};

/* The service's own routes win over the built-ins of the same name. Linear:
 * route tables are a few dozen entries, and a hash would cost more to set
 * up than it saves. */
static const route_t *server_route_find(const server_t *self, const char *type, void **ctx_p)
{
    for (size_t i = 0; i < self->cfg.route_count; i++)
        if (strcmp(self->cfg.routes[i].type, type) == 0) {
            *ctx_p = self->cfg.ctx;
            return &self->cfg.routes[i];
        }
    *ctx_p = (void *)self;
    if (strcmp(type, "health") == 0)
        return &builtin_health;
    if (self->stream && strcmp(type, "event.list") == 0)
        return &builtin_event_list;
    return NULL;
}

/* ------------------------------------------------------------------------
 * The request pipeline */

/* What a request turned into, for the log line and the reply. */
typedef struct {
    const char *request_id;
    const char *type;
    caller_t caller;
    bool caller_known;
    bool type_known; /* a route answers the type: counted under its name */
    reply_t reply;
} outcome_t;

static void outcome_error(outcome_t *out, status_t status, const char *field, const char *format,
                          ...) __attribute__((format(printf, 4, 5)));

static void outcome_error(outcome_t *out, status_t status, const char *field, const char *format,
                          ...)
{
    out->reply.status = status;
    snprintf(out->reply.field, sizeof out->reply.field, "%s", field ? field : "");
    va_list ap;
    va_start(ap, format);
    vsnprintf(out->reply.message, sizeof out->reply.message, format, ap);
    va_end(ap);
}

/* SHA-256 of type, a NUL, and the body, in hex: the same key sent with
 * another request is then told apart from a retry. */
/* Every write's body is hashed (a document chunk is a megabyte): the
 * server's own SHA-256 object, which uses the CPU's SHA instructions. */
static void server_fingerprint(server_t *self, const char *type, const uint8_t *body,
                               size_t body_len, char out[SHA256_HEX_LEN])
{
    sha256_reset(self->hasher);
    sha256_update(self->hasher, type, strlen(type) + 1);
    if (body_len)
        sha256_update(self->hasher, body, body_len);
    if (sha256_final_hex(self->hasher, out) != 0)
        out[0] = '\0'; /* no fingerprint: a reused key is then not told apart */
}

static bool idempotency_key_valid(const char *key)
{
    size_t len = strlen(key);
    if (len == 0 || len > SERVER_IDEM_KEY_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (key[i] <= 0x20 || key[i] >= 0x7f)
            return false;
    return true;
}

static bool server_identify(server_t *self, const char *user_id, caller_t *caller)
{
    memset(caller, 0, sizeof *caller);
    if (self->cfg.insecure) {
        caller->party = PARTY_ADMIN;
        snprintf(caller->name, sizeof caller->name, "insecure");
        return true;
    }
    /* server_serve_batch refreshed the cache: one stat per batch, not per
     * request. */
    return user_id && keydir_lookup_fresh(self->keydir, user_id, caller);
}

/* One request of a batch, from its frames to its reply. call points into
 * the slot (caller, idempotency key, fingerprint), so a slot never moves
 * while its request is in flight. */
typedef struct slot_t {
    zframe_t *routing;
    bool delimited;
    int64_t start_us;
    outcome_t out;
    Passerelle__Request *req;
    const route_t *route; /* set once the request may run its handler */
    void *ctx;
    call_t call;
    char idem_key[512];
    char fingerprint[SHA256_HEX_LEN];
    ProtobufCMessage *request; /* the unpacked body, kept for re-runs */
    int stale_runs;            /* stale commits not caused by its own batch */
} slot_t;

/* Counts one stale commit of the slot. False once there were too many: the
 * record is too hot and the client should back off (the reply says so). */
static bool server_count_stale(slot_t *slot)
{
    if (slot->stale_runs++ < SERVER_MAX_RETRIES)
        return true;
    reply_reset(&slot->out.reply);
    outcome_error(&slot->out, ST_UNAVAILABLE, NULL, "too much contention, retry");
    return false;
}

/* Runs the handler. True if it handed a transaction over (reply_commit):
 * the reply waits for the batch's commit. A handler that committed by
 * itself on another store and went stale runs again here. */
static bool server_run(server_t *self, slot_t *slot)
{
    for (;;) {
        reply_reset(&slot->out.reply);
        slot->out.reply.group_store = self->cfg.store;
        slot->out.reply.defer_ok = self->cfg.prepare_commit != NULL;
        slot->route->handler(slot->ctx, &slot->call, slot->request, &slot->out.reply);
        if (slot->out.reply.txn)
            return true;
        if (!slot->out.reply.retry || !server_count_stale(slot))
            return false;
    }
}

/* Everything that needs no Redis: decoding, caller, route, ACL, and for a
 * write its idempotency key and fingerprint. True if the request goes on
 * (server_serve_group, which looks its idempotency record up); else the
 * outcome holds the reply. */
static bool server_process(server_t *self, slot_t *slot, const uint8_t *data, size_t len,
                           const char *user_id)
{
    outcome_t *out = &slot->out;
    status_t status;
    char field[32], message[256];
    Passerelle__Request *req =
        envelope_decode_request(data, len, self->cfg.max_request_bytes, &status, field, message);
    if (!req) {
        outcome_error(out, status, field, "%s", message);
        return false;
    }
    slot->req = req;
    out->request_id = req->request_id;
    out->type = req->type;
    void *ctx = NULL;
    const route_t *route = server_route_find(self, req->type, &ctx);
    out->type_known = route != NULL;

    if (!server_identify(self, user_id, &out->caller)) {
        outcome_error(out, ST_UNAUTHENTICATED, NULL, "this key is not known to the service");
        return false;
    }
    out->caller_known = true;

    if (!route) {
        outcome_error(out, ST_INVALID_ARGUMENT, "type", "unknown request type \"%s\"", req->type);
        return false;
    }
    if (!acl_allows(req->type, out->caller.party)) {
        outcome_error(out, ST_PERMISSION_DENIED, NULL, "party %s may not send %s",
                      party_name(out->caller.party), req->type);
        return false;
    }

    call_t call = {.caller = &out->caller,
                   .type = req->type,
                   .request_id = req->request_id ? req->request_id : "",
                   .idempotency_ttl_s = self->cfg.idempotency_ttl_s};
    const uint8_t *body = req->has_body ? req->body.data : NULL;
    size_t body_len = req->has_body ? req->body.len : 0;
    char *idem_key = slot->idem_key;
    char *fingerprint = slot->fingerprint;
    if (route->write) {
        if (!req->idempotency_key || !*req->idempotency_key) {
            outcome_error(out, ST_INVALID_ARGUMENT, "idempotency_key",
                          "%s is a write and needs an idempotency key", req->type);
            return false;
        }
        if (!idempotency_key_valid(req->idempotency_key)) {
            outcome_error(out, ST_INVALID_ARGUMENT, "idempotency_key",
                          "idempotency key must be 1 to %d printable characters",
                          SERVER_IDEM_KEY_MAX);
            return false;
        }
        if (!self->cfg.store) {
            outcome_error(out, ST_INTERNAL, NULL, "no store configured for writes");
            return false;
        }
        /* Scoped by caller so that two callers choosing the same key never
         * see each other's replies. */
        snprintf(idem_key, sizeof slot->idem_key, "%s:idem:%s:%s", self->service,
                 out->caller.key[0] ? out->caller.key : out->caller.name, req->idempotency_key);
        server_fingerprint(self, req->type, body, body_len, fingerprint);
        call.idempotency_key = idem_key;
        call.fingerprint = fingerprint;
    }
    slot->call = call;
    slot->route = route;
    slot->ctx = ctx;
    return true;
}

/* The outcome of a write's idempotency lookup (seen: the request's item of
 * its group's lookup, whose stored reply this takes). True if the key is
 * new and the request goes on; else the reply is the lookup's (a run of
 * the handler made meanwhile is thrown away). */
static bool server_settle_lookup(server_t *self, slot_t *slot, txn_lookup_item_t *seen)
{
    outcome_t *out = &slot->out;
    uint8_t *stored = seen->stored;
    seen->stored = NULL;
    if (seen->result == TXN_NEW) {
        free(stored);
        return true;
    }
    reply_reset(&out->reply);
    switch (seen->result) {
    case TXN_DUPLICATE:
        out->reply.stored = stored;
        out->reply.stored_len = seen->stored_len;
        return false;
    case TXN_KEY_REUSED:
        free(stored);
        outcome_error(out, ST_INVALID_ARGUMENT, "idempotency_key",
                      "idempotency key already used for another request");
        return false;
    case TXN_LOST:
        free(stored);
        outcome_error(out, ST_UNAVAILABLE, NULL, "store unavailable (%s), retry",
                      store_last_error(self->cfg.store));
        return false;
    default:
        free(stored);
        outcome_error(out, ST_INTERNAL, NULL, "store refused the idempotency lookup");
        return false;
    }
}

/* Unpacks the body. True if the handler can run; else the outcome holds
 * the reply (for a write, unless its lookup answers first). */
static bool server_unpack(slot_t *slot)
{
    outcome_t *out = &slot->out;
    const Passerelle__Request *req = slot->req;
    const route_t *route = slot->route;
    const uint8_t *body = req->has_body ? req->body.data : NULL;
    size_t body_len = req->has_body ? req->body.len : 0;
    ProtobufCMessage *request = protobuf_c_message_unpack(route->request, NULL, body_len, body);
    if (!request) {
        log_debug("body does not decode", "{s:s, s:s, s:I}", "type", req->type, "expected",
                  route->request->name, "bytes", (json_int_t)body_len);
        outcome_error(out, ST_INVALID_ARGUMENT, "body", "body is not a %s",
                      route->request->short_name);
        return false;
    }
    slot->request = request;
    return true;
}

/* The reply envelope for an outcome; a stored reply keeps everything but
 * takes this request's id. NULL only when out of memory. */
static uint8_t *server_encode(const outcome_t *out, size_t *len_p)
{
    if (out->reply.stored) {
        uint8_t *rebranded = envelope_rebrand_reply(out->reply.stored, out->reply.stored_len,
                                                    out->request_id, len_p);
        if (rebranded)
            return rebranded;
        log_error("stored reply does not decode", "{s:s, s:I}", "type", out->type ? out->type : "",
                  "bytes", (json_int_t)out->reply.stored_len);
        return envelope_encode_reply(out->request_id, ST_INTERNAL,
                                     "the stored reply for this idempotency key is unreadable",
                                     NULL, NULL, 0, len_p);
    }
    return envelope_encode_reply(out->request_id, out->reply.status, out->reply.message,
                                 out->reply.field, out->reply.body, out->reply.body_len, len_p);
}

static status_t outcome_status(const outcome_t *out)
{
    if (!out->reply.stored)
        return out->reply.status;
    Passerelle__Reply *stored =
        passerelle__reply__unpack(NULL, out->reply.stored_len, out->reply.stored);
    status_t status = stored && stored->has_status ? (status_t)stored->status : ST_OK;
    passerelle__reply__free_unpacked(stored, NULL);
    return status;
}

static void server_log(const server_t *self, const outcome_t *out, int64_t duration_us)
{
    /* A replayed reply's status is inside it: decoding it is the cost of a
     * repeat only, paid when the debug line or the metrics need it. */
    status_t status = out->reply.status;
    if (out->reply.stored)
        status = self->requests_total || log_enabled(LOG_LEVEL_DEBUG) ? outcome_status(out) : ST_OK;
    const char *party = out->caller_known ? party_name(out->caller.party) : "NONE";
    const char *type = out->type ? out->type : "";
    if (status != ST_OK && !out->reply.stored)
        log_info("request failed", "{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "type", type, "status",
                 status_name(status), "message", out->reply.message, "field", out->reply.field,
                 "party", party, "caller", out->caller.name, "request_id",
                 out->request_id ? out->request_id : "");
    log_debug("request", "{s:s, s:s, s:I, s:s, s:b}", "type", type, "status", status_name(status),
              "duration_us", (json_int_t)duration_us, "party", party, "replayed",
              out->reply.stored != NULL);
    if (self->requests_total) {
        /* A type no route knows is counted as "unknown", so that callers
         * cannot grow the series without bound. */
        const char *known = out->type_known ? type : "unknown";
        metric_add(self->requests_total, (const char *[]){known, status_name(status)}, 1);
        metric_observe(self->request_duration, (const char *[]){known}, (double)duration_us / 1e6);
    }
}

/* One message from the ROUTER: [routing id][empty][payload], or without the
 * delimiter from a peer that does not send one. Any other shape is answered
 * INVALID_ARGUMENT, in the same framing the peer used. Fills the slot; true
 * if the request goes on (server_serve_group). */
static bool server_begin(server_t *self, slot_t *slot, zmsg_t *msg)
{
    memset(slot, 0, sizeof *slot);
    slot->start_us = zclock_usecs();
    slot->routing = zmsg_pop(msg);
    if (!slot->routing)
        return false;
    size_t frames = zmsg_size(msg);
    zframe_t *payload = NULL;
    zframe_t *first = zmsg_first(msg);
    if (first && zframe_size(first) == 0 && frames >= 1) {
        slot->delimited = true;
        payload = frames == 2 ? zmsg_next(msg) : NULL;
    } else if (frames == 1) {
        payload = first;
    }
    if (!payload) {
        outcome_error(&slot->out, ST_INVALID_ARGUMENT, "frame",
                      "a request is one frame after an empty delimiter, got %zu frames", frames);
        return false;
    }
    /* The routing frame is made by the ROUTER and has no metadata: the
     * peer's authenticated key is on the frames it sent. */
    const char *user_id = self->cfg.insecure ? NULL : zframe_meta(payload, "User-Id");
    return server_process(self, slot, zframe_data(payload), zframe_size(payload), user_id);
}

/* Sends the slot's reply (server_finish's first half). */
static void server_send(zsock_t *router, slot_t *slot)
{
    size_t len = 0;
    uint8_t *bytes = server_encode(&slot->out, &len);
    if (bytes) {
        zmsg_t *reply = zmsg_new();
        zmsg_append(reply, &slot->routing);
        if (slot->delimited)
            zmsg_addmem(reply, NULL, 0);
        zmsg_addmem(reply, bytes, len);
        free(bytes);
        /* ROUTER drops what it cannot route (peer gone): never blocks */
        zmsg_send(&reply, router);
    }
}

/* Logs and counts the slot's request, and frees the slot (server_finish's
 * second half, once its reply is sent). */
static void server_retire(server_t *self, slot_t *slot)
{
    server_log(self, &slot->out, zclock_usecs() - slot->start_us);
    reply_reset(&slot->out.reply);
    zframe_destroy(&slot->routing);
    if (slot->request)
        protobuf_c_message_free_unpacked(slot->request, NULL);
    if (slot->req)
        passerelle__request__free_unpacked(slot->req, NULL);
    memset(slot, 0, sizeof *slot);
}

/* Sends the slot's reply, logs it, and frees the slot. */
static void server_finish(server_t *self, zsock_t *router, slot_t *slot)
{
    if (!slot->routing)
        return;
    server_send(router, slot);
    server_retire(self, slot);
}

/* The round's deferred work (reply_defer), done by the service's
 * prepare_commit for all the pending replies that carry some; those it
 * fails are answered now, their transactions dropped. Returns how many
 * slots stay pending (compacted in order). */
static size_t server_prepare_round(server_t *self, zsock_t *router, slot_t **pending, size_t count)
{
    if (!self->cfg.prepare_commit)
        return count;
    reply_t *with_work[SERVER_BATCH_MAX];
    size_t n = 0;
    for (size_t i = 0; i < count; i++)
        if (pending[i]->out.reply.deferred)
            with_work[n++] = &pending[i]->out.reply;
    if (n == 0)
        return count;
    self->cfg.prepare_commit(self->cfg.ctx, with_work, n);
    /* A handler defers work only on its way to an OK reply (a refusal
     * committed with its transaction has none): an error now is the
     * hook's. */
    size_t kept = 0;
    for (size_t i = 0; i < count; i++) {
        const reply_t *reply = &pending[i]->out.reply;
        if (!reply->deferred || reply->status == ST_OK)
            pending[kept++] = pending[i];
        else
            server_finish(self, router, pending[i]); /* drops the transaction */
    }
    return kept;
}

/* Commits the transactions of the pending slots in rounds, one pipeline
 * each (see server.h), sending every reply once its outcome is known. */
static void server_commit_rounds(server_t *self, zsock_t *router, slot_t **pending, size_t count)
{
    typedef struct {
        slot_t *slot;
        bool committed;
    } finished_t;
    finished_t finished[SERVER_BATCH_MAX];
    txn_batch_item_t *items = self->items;
    while ((count = server_prepare_round(self, router, pending, count)) > 0) {
        for (size_t i = 0; i < count; i++) {
            memset(&items[i], 0, sizeof items[i]);
            items[i].txn = pending[i]->out.reply.txn;
            items[i].reply = pending[i]->out.reply.envelope;
            items[i].reply_len = pending[i]->out.reply.envelope_len;
        }
        txn_commit_batch(items, count, self->cfg.store);

        /* Outcomes first: what is final leaves now, being durable; the
         * log lines and the freeing wait until every reply is on its way,
         * so that no client's next request waits for them. */
        size_t stale = 0, done = 0;
        for (size_t i = 0; i < count; i++) {
            slot_t *slot = pending[i];
            reply_t *reply = &slot->out.reply;
            const txn_batch_item_t *item = &items[i];
            if (item->result == TXN_STALE) {
                free(item->stored);
                if (item->stale_in_batch || server_count_stale(slot)) {
                    pending[stale++] = slot;
                    continue;
                }
            } else {
                reply_apply(reply, item->result, item->stored, item->stored_len, self->cfg.store);
            }
            server_send(router, slot);
            finished[done++] = (finished_t){slot, item->result == TXN_COMMITTED};
        }
        /* The replies are queued for the ZeroMQ I/O thread, which sends
         * them. Sharing a vCPU with it, this thread would keep it waiting
         * through the log lines below: the clients would get their replies,
         * and send their next requests, that much later (measured with
         * eight writers on one vCPU: about 5% more writes per second when
         * it goes first). Elsewhere this costs a system call. */
        if (done > 0)
            sched_yield();
        for (size_t i = 0; i < done; i++) {
            slot_t *slot = finished[i].slot;
            if (finished[i].committed)
                reply_log_committed(&slot->out.reply, &slot->call, slot->out.reply.txn);
            server_retire(self, slot);
        }
        /* Then the stale ones run again, on what this round wrote. */
        count = 0;
        for (size_t i = 0; i < stale; i++) {
            if (server_run(self, pending[i]))
                pending[count++] = pending[i];
            else
                server_finish(self, router, pending[i]);
        }
    }
}

/* Runs the handler of a slot inside the group's snapshot (store.h). True
 * if it ran through; false if it missed a record, its run thrown away, to
 * run again once the snapshot holds what it read. */
static bool server_run_snapshot(server_t *self, slot_t *slot)
{
    size_t misses = store_snapshot_misses(self->cfg.store);
    reply_reset(&slot->out.reply);
    slot->out.reply.group_store = self->cfg.store;
    slot->out.reply.defer_ok = self->cfg.prepare_commit != NULL;
    slot->route->handler(slot->ctx, &slot->call, slot->request, &slot->out.reply);
    if (store_snapshot_misses(self->cfg.store) == misses)
        return true;
    reply_reset(&slot->out.reply);
    return false;
}

/* What to do with a slot whose handler ran through (and, for a write,
 * whose key is new): a handler that committed by itself and went stale
 * runs again later, outside the snapshot; one with a transaction joins
 * pending; the others are answered now. False if it runs again later. */
static bool server_ran(server_t *self, zsock_t *router, slot_t *slot, slot_t **pending,
                       size_t *count)
{
    if (slot->out.reply.retry && server_count_stale(slot))
        return false;
    if (slot->out.reply.txn)
        pending[(*count)++] = slot;
    else
        server_finish(self, router, slot);
    return true;
}

/* Per slot of a group, where its request stands (server_serve_group). */
typedef enum {
    GROUP_DONE = 0, /* answered, or pending its commit */
    GROUP_RUN,      /* its handler has yet to run through */
    GROUP_HELD,     /* ran through, waits for its idempotency lookup */
    GROUP_BAD_BODY, /* a write whose body does not decode: its lookup first */
    GROUP_LATER,    /* runs again outside the snapshot */
} group_state_t;

/* Once the lookups of a group (self->lookups, lookup_of[g] for its g-th
 * write) are known: answers the writes they settle, throwing away what
 * their handlers did meanwhile, and lets the others go on (a held one
 * joins pending). Returns how many of the settled writes had still to run
 * through. */
static size_t server_settle_group(server_t *self, zsock_t *router, size_t first, size_t end,
                                  group_state_t *state, const size_t *lookup_of, slot_t **pending,
                                  size_t *count)
{
    size_t dropped = 0;
    for (size_t i = first; i < end; i++) {
        slot_t *slot = &self->slots[i];
        size_t g = i - first;
        if (state[g] == GROUP_DONE || !slot->route->write)
            continue;
        bool fresh = server_settle_lookup(self, slot, &self->lookups[lookup_of[g]]);
        if (state[g] == GROUP_RUN && !fresh)
            dropped++;
        if (!fresh || state[g] == GROUP_BAD_BODY) {
            state[g] = GROUP_DONE;
            server_finish(self, router, slot);
        } else if (state[g] == GROUP_HELD) {
            state[g] = server_ran(self, router, slot, pending, count) ? GROUP_DONE : GROUP_LATER;
        }
    }
    return dropped;
}

/* One group of slots (first to end): the handlers run in passes over a
 * snapshot (store.h), each pass reading in one round trip every record the
 * previous one missed. The idempotency records of the group's writes ride
 * on the first of these round trips: the first pass needs no Redis (it
 * only notes misses), so a write pays no round trip of its own for its
 * lookup. A write answered by its lookup (a duplicate, a reused key, a
 * lost store) has any run of its handler made meanwhile thrown away; a
 * write whose handler ran through before its lookup is held until then.
 * A request reading records that depend on each other (a unit, then its
 * convention) takes a pass per step, whatever the number of requests.
 * Handlers still missing after SERVER_SNAPSHOT_PASSES, or when a pipeline
 * fails, run once more reading by themselves, which also gives them the
 * store's real error. Those with a transaction join pending; the others
 * are answered now. */
static void server_serve_group(server_t *self, zsock_t *router, size_t first, size_t end,
                               bool *goes_on, slot_t **pending, size_t *count)
{
    txn_lookup_item_t *lookups = self->lookups;
    group_state_t state[SERVER_BATCH_MAX];
    size_t lookup_of[SERVER_BATCH_MAX];
    size_t n = 0, waiting = 0;
    for (size_t i = first; i < end; i++) {
        slot_t *slot = &self->slots[i];
        size_t g = i - first;
        state[g] = GROUP_DONE;
        if (!goes_on[g])
            continue;
        bool write = slot->route->write;
        if (write) {
            memset(&lookups[n], 0, sizeof lookups[n]);
            lookups[n].idempotency_key = slot->call.idempotency_key;
            lookups[n].fingerprint = slot->call.fingerprint;
            lookup_of[g] = n++;
        }
        if (server_unpack(slot)) {
            state[g] = GROUP_RUN;
            waiting++;
        } else if (write) {
            state[g] = GROUP_BAD_BODY;
        } else {
            server_finish(self, router, slot);
        }
    }
    bool looked_up = n == 0;
    if (!self->cfg.store || (waiting == 0 && looked_up))
        goto alone;
    store_snapshot_begin(self->cfg.store);
    for (int pass = 0; (waiting > 0 || !looked_up) && pass < SERVER_SNAPSHOT_PASSES; pass++) {
        if (pass > 0) {
            store_result_t filled;
            if (looked_up) {
                filled = store_snapshot_fill(self->cfg.store);
            } else {
                filled = txn_lookup_many_fill(self->cfg.store, lookups, n);
                looked_up = true;
                waiting -=
                    server_settle_group(self, router, first, end, state, lookup_of, pending, count);
            }
            if (filled != STORE_OK)
                break;
        }
        for (size_t i = first; i < end; i++) {
            slot_t *slot = &self->slots[i];
            size_t g = i - first;
            if (state[g] != GROUP_RUN || !server_run_snapshot(self, slot))
                continue;
            waiting--;
            if (!looked_up && slot->route->write)
                state[g] = GROUP_HELD;
            else
                state[g] =
                    server_ran(self, router, slot, pending, count) ? GROUP_DONE : GROUP_LATER;
        }
    }
    store_snapshot_end(self->cfg.store);
    if (!looked_up) {
        /* Not reached with two passes or more; kept so that no write is
         * ever served without its lookup. */
        txn_lookup_many(self->cfg.store, lookups, n);
        server_settle_group(self, router, first, end, state, lookup_of, pending, count);
    }
alone:
    for (size_t i = first; i < end; i++) {
        slot_t *slot = &self->slots[i];
        if (state[i - first] != GROUP_RUN && state[i - first] != GROUP_LATER)
            continue;
        if (server_run(self, slot))
            pending[(*count)++] = slot;
        else
            server_finish(self, router, slot);
    }
}

/* Waits, until deadline_us at the latest, for a request on the ROUTER.
 * ZMQ_FD is edge-triggered: it wakes us when the socket's state changes,
 * and ZMQ_EVENTS, read again after each wake-up, says whether that was a
 * request. ppoll, for a timeout finer than poll's milliseconds. */
static bool server_gather(zsock_t *router, int64_t deadline_us)
{
    struct pollfd fd = {.fd = zsock_fd(router), .events = POLLIN};
    for (;;) {
        if (zsock_events(router) & ZMQ_POLLIN)
            return true;
        int64_t left_us = deadline_us - zclock_usecs();
        if (left_us <= 0)
            return false;
        struct timespec timeout = {.tv_sec = 0, .tv_nsec = (long)left_us * 1000};
        if (ppoll(&fd, 1, &timeout, NULL) < 0 && errno != EINTR)
            return false;
    }
}

/* One batch: drains what waits on the ROUTER (the first message is known
 * to be there), answers reads and refusals at once, and commits the writes
 * together.
 *
 * It works in groups: the requests waiting now are decoded, their writes'
 * idempotency records read in one round trip (not one each), and their
 * handlers run; those that arrived meanwhile make the next group, until
 * none is waiting or the batch is full. Then the writes of every group are
 * committed in one pipeline. */
static void server_serve_batch(server_t *self, zsock_t *router)
{
    slot_t *pending[SERVER_BATCH_MAX];
    bool goes_on[SERVER_BATCH_MAX];
    size_t count = 0, drained = 0;
    int64_t gather_until_us = zclock_usecs() + SERVER_GATHER_US;
    /* A key removed from the folder is refused from the next batch on. */
    keydir_refresh(self->keydir);
    while (drained < SERVER_BATCH_MAX) {
        size_t first = drained;
        for (; drained < SERVER_BATCH_MAX; drained++) {
            if (drained > 0 && !(zsock_events(router) & ZMQ_POLLIN) &&
                (drained >= self->last_writes || !server_gather(router, gather_until_us)))
                break;
            zmsg_t *msg = zmsg_recv(router);
            if (!msg)
                break;
            slot_t *slot = &self->slots[drained];
            goes_on[drained - first] = server_begin(self, slot, msg);
            zmsg_destroy(&msg);
            if (!goes_on[drained - first])
                server_finish(self, router, slot);
        }
        if (drained == first)
            break;
        server_serve_group(self, router, first, drained, goes_on, pending, &count);
    }
    self->last_writes = count;
    server_commit_rounds(self, router, pending, count);
}

/* ------------------------------------------------------------------------
 * Draining (server_drain) */

/* A request that came while stopping: answered UNAVAILABLE without its
 * handler or Redis. It is still decoded and its caller checked, so that
 * a malformed or unknown request gets the answer it always gets, and the
 * reply carries its request id (a client drops a reply it cannot match). */
static void server_refuse_stopping(server_t *self, zsock_t *router, zmsg_t *msg)
{
    slot_t *slot = &self->slots[0];
    if (server_begin(self, slot, msg))
        outcome_error(&slot->out, ST_UNAVAILABLE, NULL, "the service is stopping; retry");
    server_finish(self, router, slot);
}

/* Refuses what comes until the socket has been quiet SERVER_DRAIN_QUIET_MS
 * or deadline_ms (zclock_mono) passes, then unbinds and closes the socket,
 * lingering what is left of the grace period. */
static void server_drain_requests(server_t *self, zsock_t **router_p, int64_t deadline_ms)
{
    zsock_t *router = *router_p;
    int64_t began_ms = zclock_mono();
    log_info("stopped taking requests", "{s:s, s:I}", "endpoint", self->endpoint, "grace_ms",
             (json_int_t)(deadline_ms > began_ms ? deadline_ms - began_ms : 0));
    struct pollfd fd = {.fd = zsock_fd(router), .events = POLLIN};
    int64_t quiet_since_ms = began_ms;
    size_t refused = 0;
    bool deadline_passed = false;
    for (;;) {
        /* ZMQ_FD is edge-triggered: ZMQ_EVENTS says whether a request
         * waits, after every wake-up (see server_gather). */
        while (zsock_events(router) & ZMQ_POLLIN && zclock_mono() < deadline_ms) {
            zmsg_t *msg = zmsg_recv(router);
            if (!msg)
                break;
            server_refuse_stopping(self, router, msg);
            zmsg_destroy(&msg);
            refused++;
            quiet_since_ms = zclock_mono();
        }
        int64_t now_ms = zclock_mono();
        if (now_ms >= deadline_ms) {
            deadline_passed = true;
            break;
        }
        int64_t wait_ms = quiet_since_ms + SERVER_DRAIN_QUIET_MS - now_ms;
        if (wait_ms <= 0)
            break;
        if (wait_ms > deadline_ms - now_ms)
            wait_ms = deadline_ms - now_ms;
        if (poll(&fd, 1, (int)wait_ms) < 0 && errno != EINTR)
            break;
    }
    /* The linger first: it is the socket's value at the time of the unbind
     * that lets the replies just sent leave before their connections
     * close. */
    int64_t left_ms = deadline_ms - zclock_mono();
    zsock_set_linger(router, left_ms > 0 ? (int)left_ms : 0);
    if (self->bound_endpoint[0] && zsock_unbind(router, "%s", self->bound_endpoint) != 0)
        log_warn("cannot unbind", "{s:s, s:s}", "endpoint", self->bound_endpoint, "error",
                 zmq_strerror(zmq_errno()));
    zsock_destroy(router_p);
    log_info("drained", "{s:s, s:I, s:I, s:b}", "endpoint", self->endpoint, "refused",
             (json_int_t)refused, "took_ms", (json_int_t)(zclock_mono() - began_ms),
             "deadline_passed", deadline_passed);
}

/* ------------------------------------------------------------------------
 * The actor */

/* The address a local client can connect to: a wildcard bind is reachable
 * on loopback. */
static void server_connectable(const char *bound, int port, char *out, size_t out_size)
{
    if (strncmp(bound, "tcp://0.0.0.0:", 14) == 0 || strncmp(bound, "tcp://[::]:", 11) == 0 ||
        strncmp(bound, "tcp://*:", 8) == 0)
        snprintf(out, out_size, "tcp://127.0.0.1:%d", port);
    else
        snprintf(out, out_size, "%s", bound);
}

static zsock_t *server_bind(server_t *self)
{
    zsock_t *router = zsock_new(ZMQ_ROUTER);
    if (!router)
        return NULL;
    size_t hard = self->cfg.max_request_bytes * 4 + 4096;
    zsock_set_maxmsgsize(router, hard > INT_MAX ? INT_MAX : (int)hard);
    zsock_set_linger(router, SERVER_LINGER_MS);
    if (self->cfg.queue_per_peer > 0) {
        zsock_set_rcvhwm(router, self->cfg.queue_per_peer);
        zsock_set_sndhwm(router, self->cfg.queue_per_peer);
    }
    if (!self->cfg.insecure) {
        zcert_apply(self->cert, router);
        zsock_set_curve_server(router, 1);
        zsock_set_zap_domain(router, self->service);
    }
    int port = zsock_bind(router, "%s", self->endpoint_cfg);
    if (port < 0) {
        log_error("cannot bind", "{s:s, s:s}", "endpoint", self->endpoint_cfg, "error",
                  zmq_strerror(zmq_errno()));
        zsock_destroy(&router);
        return NULL;
    }
    self->port = port;
    char *last = zsock_last_endpoint(router);
    snprintf(self->bound_endpoint, sizeof self->bound_endpoint, "%s", last ? last : "");
    zstr_free(&last);
    const char *bound = zsock_endpoint(router);
    server_connectable(bound ? bound : self->endpoint_cfg, port, self->endpoint,
                       sizeof self->endpoint);
    return router;
}

static void server_actor(zsock_t *pipe, void *args)
{
    server_t *self = args;
    zsock_t *router = server_bind(self);
    self->bound = router != NULL;
    zsock_signal(pipe, 0);
    if (!router) {
        /* wait for $TERM so that zactor_destroy finds us */
        char *command = zstr_recv(pipe);
        zstr_free(&command);
        return;
    }
    zpoller_t *poller = zpoller_new(pipe, router, NULL);
    /* A signal ends the service through main (server_wait_for_signal and
     * server_destroy), never by the actor quitting on its own. */
    zpoller_set_nonstop(poller, true);
    /* Housekeeping: between batches, about every tick_ms, so that a busy
     * server still does it (a batch is bounded: SERVER_BATCH_MAX). */
    bool ticks = self->cfg.tick && self->cfg.tick_ms > 0;
    int64_t next_tick_ms = ticks ? zclock_mono() + self->cfg.tick_ms : 0;
    bool running = true;
    bool draining = false;
    int64_t drain_deadline_ms = 0;
    while (running) {
        int timeout_ms = -1;
        if (ticks) {
            int64_t left_ms = next_tick_ms - zclock_mono();
            timeout_ms = left_ms > 0 ? (int)left_ms : 0;
        }
        void *which = zpoller_wait(poller, timeout_ms);
        if (which == router) {
            server_serve_batch(self, router);
        } else if (which == pipe) {
            zmsg_t *msg = zmsg_recv(pipe);
            char *command = msg ? zmsg_popstr(msg) : NULL;
            if (command && streq(command, "DRAIN")) {
                char *deadline = zmsg_popstr(msg);
                drain_deadline_ms = deadline ? strtoll(deadline, NULL, 10) : 0;
                zstr_free(&deadline);
                draining = true;
                running = false;
            } else if (!command || streq(command, "$TERM")) {
                running = false;
            }
            zstr_free(&command);
            zmsg_destroy(&msg);
        } else if (!zpoller_expired(poller) && zmq_errno() == ETERM) {
            running = false;
        }
        if (running && ticks && zclock_mono() >= next_tick_ms) {
            self->cfg.tick(self->cfg.ctx);
            next_tick_ms = zclock_mono() + self->cfg.tick_ms;
        }
    }
    zpoller_destroy(&poller);
    if (draining) {
        server_drain_requests(self, &router, drain_deadline_ms);
        zsock_signal(pipe, 0);
        /* Drained: wait for $TERM (server_destroy). */
        actor_await_term(pipe);
        return;
    }
    /* Answer what already arrived before closing, then let linger flush. */
    while (zsock_events(router) & ZMQ_POLLIN)
        server_serve_batch(self, router);
    zsock_destroy(&router);
}

/* ------------------------------------------------------------------------
 * Public API */

bool server_config_from_env(server_config_t *cfg)
{
    bool ok = true;
    bool insecure = false;
    ok &= config_bool("PASSERELLE_INSECURE", false, &insecure);
    cfg->insecure = insecure;
    cfg->keys_dir = config_str("PASSERELLE_KEYS_DIR", "./var/keys");
    long max_bytes = 0, ttl_s = 0;
    ok &= config_int("PASSERELLE_MAX_REQUEST_BYTES", 1048576, 1024, 256L * 1024 * 1024, &max_bytes);
    ok &= config_int("PASSERELLE_IDEMPOTENCY_TTL_S", 86400, 1, 365L * 86400, &ttl_s);
    /* Ten seconds by default: within what `./dev down` and the compose
     * file give a process before they kill it. */
    long grace_ms = 0;
    ok &= config_int("PASSERELLE_SHUTDOWN_GRACE_MS", 10000, 0, 600000, &grace_ms);
    cfg->max_request_bytes = (size_t)max_bytes;
    cfg->idempotency_ttl_s = (uint32_t)ttl_s;
    cfg->shutdown_grace_ms = (int)grace_ms;
    return ok;
}

static char *server_strdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void server_free(server_t *self)
{
    free(self->slots);
    free(self->items);
    free(self->lookups);
    sha256_destroy(&self->hasher);
    keydir_destroy(&self->keydir);
    zcert_destroy(&self->cert);
    free(self->service);
    free(self->endpoint_cfg);
    free(self->keys_dir);
    free(self->stream);
    free(self);
}

server_t *server_new(const server_config_t *cfg)
{
    server_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->cfg = *cfg;
    self->service = server_strdup(cfg->service ? cfg->service : "passerelle");
    self->endpoint_cfg = server_strdup(cfg->endpoint ? cfg->endpoint : "tcp://127.0.0.1:*");
    self->keys_dir = server_strdup(cfg->keys_dir ? cfg->keys_dir : "./var/keys");
    self->stream = server_strdup(cfg->stream);
    if (!self->service || !self->endpoint_cfg || !self->keys_dir ||
        (cfg->stream && !self->stream)) {
        server_free(self);
        return NULL;
    }
    self->cfg.service = self->service;
    self->cfg.endpoint = self->endpoint_cfg;
    self->cfg.keys_dir = self->keys_dir;
    self->cfg.stream = self->stream;
    if (!self->cfg.max_request_bytes)
        self->cfg.max_request_bytes = 1048576;
    if (!self->cfg.idempotency_ttl_s)
        self->cfg.idempotency_ttl_s = 86400;
    self->started_ms = time_now_ms();
    if (cfg->metrics) {
        static const char *const by_type_status[] = {"type", "status"};
        static const char *const by_type[] = {"type"};
        static const double bounds_s[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                          0.05,   0.1,   0.25,   0.5,   1,    2.5};
        self->requests_total =
            metrics_counter(cfg->metrics, "passerelle_requests_total",
                            "Requests answered, by type and status.", by_type_status, 2);
        self->request_duration =
            metrics_histogram(cfg->metrics, "passerelle_request_duration_seconds",
                              "Time from a request's arrival to its reply, by type.", by_type, 1,
                              bounds_s, sizeof bounds_s / sizeof bounds_s[0]);
    }
    self->slots = calloc(SERVER_BATCH_MAX, sizeof *self->slots);
    self->items = calloc(SERVER_BATCH_MAX, sizeof *self->items);
    self->lookups = calloc(SERVER_BATCH_MAX, sizeof *self->lookups);
    self->hasher = sha256_new();
    if (!self->slots || !self->items || !self->lookups || !self->hasher) {
        server_free(self);
        return NULL;
    }

    if (self->cfg.insecure) {
        log_warn("INSECURE MODE: no encryption, no authentication, every caller is ADMIN; "
                 "never run this outside a developer machine",
                 "{s:s, s:b}", "endpoint", self->endpoint_cfg, "insecure", 1);
    } else {
        char path[PATH_MAX];
        keydir_server_cert_path(self->keys_dir, path, sizeof path);
        self->cert = zcert_load(path);
        if (!self->cert ||
            streq(zcert_secret_txt(self->cert), "0000000000000000000000000000000000000000")) {
            log_error("server certificate missing or without its secret key", "{s:s}", "path",
                      path);
            server_free(self);
            return NULL;
        }
        self->keydir = keydir_new(self->keys_dir);
        char authorized[PATH_MAX];
        keydir_authorized_dir(self->keys_dir, authorized, sizeof authorized);
        if (!self->keydir || !server_auth_acquire(authorized)) {
            log_error("cannot start authentication", "{s:s}", "authorized", authorized);
            server_free(self);
            return NULL;
        }
        self->uses_auth = true;
    }

    self->actor = zactor_new(server_actor, self);
    if (!self->actor || !self->bound) {
        zactor_destroy(&self->actor);
        if (self->uses_auth)
            server_auth_release();
        server_free(self);
        return NULL;
    }
    log_info("listening", "{s:s, s:b}", "endpoint", self->endpoint, "curve", !self->cfg.insecure);
    return self;
}

void server_drain(server_t *self, int grace_ms)
{
    if (self)
        actor_drain(self->actor, grace_ms);
}

void server_destroy(server_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    server_t *self = *self_p;
    zactor_destroy(&self->actor);
    if (self->uses_auth)
        server_auth_release();
    server_free(self);
    *self_p = NULL;
}

int server_port(const server_t *self)
{
    return self ? self->port : -1;
}

const char *server_endpoint(const server_t *self)
{
    return self ? self->endpoint : "";
}

void server_wait_for_signal(server_t *self)
{
    (void)self;
    while (!zsys_interrupted)
        zclock_sleep(100);
    log_info("stopping on signal", NULL);
}
