/* The request server in process, over CURVE on loopback, with a real Redis
 * and a small route table: the pipeline around the handlers, and every
 * error the server answers by itself. */
#include "envelope.h"
#include "harness.h"
#include "identity.h"
#include "log.h"
#include "server.h"
#include "store.h"
#include "txn.h"

#include <czmq.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define MAX_REQUEST   (64 * 1024)
#define TIMEOUT_MS    2000
#define SHORT_TIMEOUT 400

typedef struct {
    store_t *store;
    int put_runs;
    int contended_runs;
    int stale_once_runs;
    /* The gate (a read) holds the server while requests queue up, so that
     * the next batch is made of all of them. Shared with the test thread. */
    int gate_entered;
    int gate_open;
    /* Redis to kill from inside a batch (the killer write). */
    harness_redis_t *redis;
    /* Calls of the housekeeping tick (server thread), read by the test. */
    int ticks;
    int blind_runs;
    /* Deferred work (handle_deferred, prepare_deferred): pieces handed
     * over and released, calls of the hook, the replies it was given in
     * all and at most at once, the work it did, and whether it fails the
     * subjects beginning with "fail-". Server thread, read by the test
     * between calls. */
    int deferred_made, deferred_released, prepare_calls, prepare_replies, prepare_most,
        deferred_done;
    bool fail_marked;
} handlers_t;

typedef struct {
    char *dir;
    char keys[512];
    harness_redis_t redis;
    bool redis_up;
    store_t *store;
    handlers_t handlers;
    server_t *server;
} fixture_t;

static fixture_t fx;

/* ------------------------------------------------------------------------
 * Test handlers: a record written through txn, and read back. The request
 * and reply types are borrowed from envelope.proto. */

static void record_key(const char *subject, char *out, size_t size)
{
    snprintf(out, size, "svctest:rec:%s", subject);
}

static void handle_put(void *ctx, const call_t *call, const ProtobufCMessage *request,
                       reply_t *reply)
{
    handlers_t *h = ctx;
    const Passerelle__Event *ev = (const Passerelle__Event *)request;
    if (!ev->subject || !*ev->subject) {
        reply_error(reply, ST_INVALID_ARGUMENT, "subject", "subject is required");
        return;
    }
    char key[256];
    record_key(ev->subject, key, sizeof key);
    uint64_t version = 0;
    uint8_t *data = NULL;
    size_t len = 0;
    if (store_record_get(h->store, key, &version, &data, &len) != STORE_OK) {
        reply_error(reply, ST_UNAVAILABLE, NULL, "store unavailable");
        return;
    }
    /* Counted once its read went through: a run that missed its record in
     * the group's snapshot is thrown away and made again (server.h). */
    h->put_runs++;
    free(data);
    txn_t *txn = txn_new(call->idempotency_key, call->fingerprint, call->idempotency_ttl_s);
    txn_put(txn, key, version + 1, ev->data.data, ev->data.len);
    txn_event(txn, "svctest:events", "/passerelle/svctest", "record.put", key, request);
    Passerelle__HealthReply out = PASSERELLE__HEALTH_REPLY__INIT;
    out.service = ev->subject;
    out.has_uptime_s = 1;
    out.uptime_s = version + 1;
    reply_set_body(reply, &out.base);
    reply_commit(reply, call, h->store, txn);
    txn_destroy(&txn);
}

static void handle_get(void *ctx, const call_t *call, const ProtobufCMessage *request,
                       reply_t *reply)
{
    (void)call;
    handlers_t *h = ctx;
    const Passerelle__Event *ev = (const Passerelle__Event *)request;
    char key[256];
    record_key(ev->subject ? ev->subject : "", key, sizeof key);
    uint64_t version = 0;
    uint8_t *data = NULL;
    size_t len = 0;
    if (store_record_get(h->store, key, &version, &data, &len) != STORE_OK) {
        reply_error(reply, ST_UNAVAILABLE, NULL, "store unavailable");
        return;
    }
    if (version == 0) {
        reply_error(reply, ST_NOT_FOUND, "subject", "no record %s", key);
        return;
    }
    char *text = calloc(1, len + 1);
    if (len)
        memcpy(text, data, len);
    Passerelle__HealthReply out = PASSERELLE__HEALTH_REPLY__INIT;
    out.service = ev->subject;
    out.version = text;
    out.has_uptime_s = 1;
    out.uptime_s = version;
    reply_set_body(reply, &out.base);
    free(text);
    free(data);
}

/* Always loses the race: its guard can never hold. */
static void handle_contended(void *ctx, const call_t *call, const ProtobufCMessage *request,
                             reply_t *reply)
{
    (void)request;
    handlers_t *h = ctx;
    h->contended_runs++;
    txn_t *txn = txn_new(call->idempotency_key, call->fingerprint, call->idempotency_ttl_s);
    txn_guard(txn, "svctest:never", 99);
    txn_put(txn, "svctest:contended", 1, "x", 1);
    reply_commit(reply, call, h->store, txn);
    txn_destroy(&txn);
}

/* Loses the race once, then wins on fresh state. */
static void handle_stale_once(void *ctx, const call_t *call, const ProtobufCMessage *request,
                              reply_t *reply)
{
    (void)request;
    handlers_t *h = ctx;
    uint64_t version = 0;
    uint8_t *data = NULL;
    size_t len = 0;
    if (store_record_get(h->store, "svctest:once", &version, &data, &len) != STORE_OK) {
        reply_error(reply, ST_UNAVAILABLE, NULL, "store unavailable");
        return;
    }
    free(data);
    bool first = h->stale_once_runs++ == 0;
    txn_t *txn = txn_new(call->idempotency_key, call->fingerprint, call->idempotency_ttl_s);
    if (first)
        txn_guard(txn, "svctest:never", 77);
    txn_put(txn, "svctest:once", version + 1, "y", 1);
    reply_commit(reply, call, h->store, txn);
    txn_destroy(&txn);
}

/* A write that reads nothing: it runs through in the group's first pass,
 * before its idempotency lookup is known. Counts its commits in a hash. */
static void handle_blind(void *ctx, const call_t *call, const ProtobufCMessage *request,
                         reply_t *reply)
{
    (void)request;
    handlers_t *h = ctx;
    h->blind_runs++;
    txn_t *txn = txn_new(call->idempotency_key, call->fingerprint, call->idempotency_ttl_s);
    txn_counter_add(txn, "svctest:blind", "commits", 1);
    Passerelle__HealthReply out = PASSERELLE__HEALTH_REPLY__INIT;
    out.service = "blind";
    out.has_uptime_s = 1;
    out.uptime_s = (uint64_t)h->blind_runs;
    reply_set_body(reply, &out.base);
    reply_commit(reply, call, h->store, txn);
    txn_destroy(&txn);
}

/* Holds the server (up to 10 s) until the test opens the gate. */
static void handle_gate(void *ctx, const call_t *call, const ProtobufCMessage *request,
                        reply_t *reply)
{
    (void)call;
    (void)request;
    handlers_t *h = ctx;
    __atomic_store_n(&h->gate_entered, 1, __ATOMIC_SEQ_CST);
    for (int i = 0; i < 1000 && !__atomic_load_n(&h->gate_open, __ATOMIC_SEQ_CST); i++)
        zclock_sleep(10);
    Passerelle__HealthReply out = PASSERELLE__HEALTH_REPLY__INIT;
    out.service = "gate";
    reply_set_body(reply, &out.base);
}

/* A write whose handler kills Redis after the handlers before it in its
 * batch have handed over their transactions: the batch's pipeline then
 * finds the connection dead. */
static void handle_killer(void *ctx, const call_t *call, const ProtobufCMessage *request,
                          reply_t *reply)
{
    (void)request;
    handlers_t *h = ctx;
    harness_redis_kill(h->redis);
    txn_t *txn = txn_new(call->idempotency_key, call->fingerprint, call->idempotency_ttl_s);
    txn_put(txn, "svctest:killer", 1, "k", 1);
    reply_commit(reply, call, h->store, txn);
    txn_destroy(&txn);
}

/* Deferred work: the subject to "do" once the batch is prepared. */
typedef struct {
    handlers_t *h;
    char subject[64];
} deferred_t;

static void deferred_release(void *work)
{
    deferred_t *d = work;
    d->h->deferred_released++;
    free(d);
}

/* handle_put, whose work (here only counted) is deferred to the batch's
 * prepare_deferred. */
static void handle_deferred(void *ctx, const call_t *call, const ProtobufCMessage *request,
                            reply_t *reply)
{
    handlers_t *h = ctx;
    const Passerelle__Event *ev = (const Passerelle__Event *)request;
    /* Handed over before the read, so that the runs thrown away (a first
     * pass missing the record) hold work too: theirs must be released,
     * never done. */
    deferred_t *d = calloc(1, sizeof *d);
    assert_non_null(d);
    d->h = h;
    snprintf(d->subject, sizeof d->subject, "%s", ev->subject ? ev->subject : "");
    h->deferred_made++;
    if (!reply_defer(reply, d, deferred_release)) {
        reply_error(reply, ST_INTERNAL, NULL, "this server takes no deferred work");
        deferred_release(d);
        return;
    }
    char key[256];
    record_key(ev->subject ? ev->subject : "", key, sizeof key);
    uint64_t version = 0;
    uint8_t *data = NULL;
    size_t len = 0;
    if (store_record_get(h->store, key, &version, &data, &len) != STORE_OK) {
        reply_error(reply, ST_UNAVAILABLE, NULL, "store unavailable");
        return;
    }
    free(data);
    txn_t *txn = txn_new(call->idempotency_key, call->fingerprint, call->idempotency_ttl_s);
    txn_put(txn, key, version + 1, "d", 1);
    reply_commit(reply, call, h->store, txn);
    txn_destroy(&txn);
}

static void prepare_deferred(void *ctx, reply_t *const *replies, size_t count)
{
    handlers_t *h = ctx;
    h->prepare_calls++;
    h->prepare_replies += (int)count;
    if ((int)count > h->prepare_most)
        h->prepare_most = (int)count;
    for (size_t i = 0; i < count; i++) {
        const deferred_t *d = replies[i]->deferred;
        assert_non_null(d);
        if (h->fail_marked && strncmp(d->subject, "fail-", 5) == 0)
            reply_error(replies[i], ST_INTERNAL, NULL, "the work for %s failed", d->subject);
        else
            h->deferred_done++;
    }
}

static const route_t routes[] = {
    {"upload.begin", &passerelle__event__descriptor, handle_deferred, true},
    {"unit.list", &passerelle__health_request__descriptor, handle_gate, false},
    {"convention.envisage", &passerelle__health_request__descriptor, handle_killer, true},
    {"unit.register", &passerelle__event__descriptor, handle_put, true},
    {"unit.get", &passerelle__event__descriptor, handle_get, false},
    {"convention.sign", &passerelle__health_request__descriptor, handle_contended, true},
    {"convention.end", &passerelle__health_request__descriptor, handle_stale_once, true},
    {"convention.abandon", &passerelle__health_request__descriptor, handle_blind, true},
    /* a write the ACL table does not list: no party may send it */
    {"svctest.unlisted", &passerelle__health_request__descriptor, handle_contended, true},
};

static server_config_t server_config(bool insecure, store_t *store)
{
    server_config_t cfg = {
        .service = "svctest",
        .endpoint = "tcp://127.0.0.1:*",
        .keys_dir = fx.keys,
        .insecure = insecure,
        .max_request_bytes = MAX_REQUEST,
        .idempotency_ttl_s = 600,
        .routes = routes,
        .route_count = sizeof routes / sizeof routes[0],
        .ctx = &fx.handlers,
        .store = store,
        .stream = "svctest:events",
        .prepare_commit = prepare_deferred,
    };
    return cfg;
}

static int group_setup(void **state)
{
    (void)state;
    log_set_level(LOG_LEVEL_WARN);
    fx.dir = harness_tempdir("server");
    if (!fx.dir)
        return -1;
    snprintf(fx.keys, sizeof fx.keys, "%s/keys", fx.dir);
    if (harness_keys_make(fx.keys) != 0)
        return -1;
    if (harness_redis_start(&fx.redis) != 0)
        return -1;
    fx.redis_up = true;
    store_config_t scfg;
    harness_redis_config(&fx.redis, &scfg);
    fx.store = store_new(&scfg);
    fx.handlers.store = fx.store;
    fx.handlers.redis = &fx.redis;
    server_config_t cfg = server_config(false, fx.store);
    fx.server = server_new(&cfg);
    return fx.server ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    server_destroy(&fx.server);
    store_destroy(&fx.store);
    if (fx.redis_up)
        harness_redis_stop(&fx.redis);
    if (fx.dir) {
        harness_rmtree(fx.dir);
        free(fx.dir);
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Calling the server */

static client_t *client_as(const char *name, int timeout_ms, int retries)
{
    client_t *client =
        harness_client(server_endpoint(fx.server), fx.keys, name, timeout_ms, retries);
    assert_non_null(client);
    return client;
}

static Passerelle__Reply *call_ok(client_t *client, const char *type, const ProtobufCMessage *body,
                                  const char *key)
{
    Passerelle__Reply *reply = NULL;
    assert_int_equal(client_call(client, type, body, key, &reply), 0);
    assert_non_null(reply);
    return reply;
}

static void assert_status(const Passerelle__Reply *reply, status_t status, const char *field)
{
    if (!reply->has_status || (status_t)reply->status != status)
        fail_msg("expected %s, got %s: %s", status_name(status),
                 reply->has_status ? status_name(reply->status) : "no status",
                 reply->message ? reply->message : "");
    if (field) {
        assert_non_null(reply->field);
        assert_string_equal(reply->field, field);
    }
}

static Passerelle__HealthReply *health_of(const Passerelle__Reply *reply)
{
    Passerelle__HealthReply *health =
        passerelle__health_reply__unpack(NULL, reply->body.len, reply->body.data);
    assert_non_null(health);
    return health;
}

static void assert_health_ok(client_t *client, const char *party, const char *name)
{
    Passerelle__Reply *reply = call_ok(client, "health", NULL, NULL);
    assert_status(reply, ST_OK, NULL);
    Passerelle__HealthReply *health = health_of(reply);
    assert_string_equal(health->caller_party, party);
    assert_string_equal(health->caller_name, name);
    passerelle__health_reply__free_unpacked(health, NULL);
    passerelle__reply__free_unpacked(reply, NULL);
}

static Passerelle__Reply *call_raw(client_t *client, const void *frame, size_t len)
{
    Passerelle__Reply *reply = NULL;
    assert_int_equal(client_call_raw(client, frame, len, &reply), 0);
    return reply;
}

/* A bare DEALER with a client's certificate, to send frames the client
 * library never would. */
static zsock_t *dealer_as(const char *name)
{
    char path[600];
    keydir_client_cert_path(fx.keys, name, path, sizeof path);
    zcert_t *cert = zcert_load(path);
    assert_non_null(cert);
    keydir_server_public_path(fx.keys, path, sizeof path);
    zcert_t *server = zcert_load(path);
    assert_non_null(server);
    zsock_t *dealer = zsock_new(ZMQ_DEALER);
    zsock_set_linger(dealer, 0);
    zsock_set_rcvtimeo(dealer, TIMEOUT_MS);
    zcert_apply(cert, dealer);
    zsock_set_curve_serverkey(dealer, zcert_public_txt(server));
    assert_int_equal(zsock_connect(dealer, "%s", server_endpoint(fx.server)), 0);
    zcert_destroy(&cert);
    zcert_destroy(&server);
    return dealer;
}

/* ------------------------------------------------------------------------
 * Tests */

static void test_listening(void **state)
{
    (void)state;
    assert_true(server_port(fx.server) > 0);
    char expected[64];
    snprintf(expected, sizeof expected, "tcp://127.0.0.1:%d", server_port(fx.server));
    assert_string_equal(server_endpoint(fx.server), expected);
}

static void test_happy_path(void **state)
{
    (void)state;
    client_t *admin = client_as("admin", TIMEOUT_MS, 1);
    Passerelle__Reply *reply = call_ok(admin, "health", NULL, NULL);
    assert_status(reply, ST_OK, NULL);
    Passerelle__HealthReply *health = health_of(reply);
    assert_string_equal(health->service, "svctest");
    assert_string_equal(health->version, PASSERELLE_VERSION);
    assert_true(health->redis_ok);
    assert_string_equal(health->caller_party, "ADMIN");
    assert_string_equal(health->caller_name, "admin");
    passerelle__health_reply__free_unpacked(health, NULL);
    passerelle__reply__free_unpacked(reply, NULL);

    client_t *metropole = client_as("metropole", TIMEOUT_MS, 1);
    Passerelle__Event put = PASSERELLE__EVENT__INIT;
    put.subject = "happy";
    put.has_data = 1;
    put.data.data = (uint8_t *)"v1";
    put.data.len = 2;
    reply = call_ok(metropole, "unit.register", &put.base, NULL);
    assert_status(reply, ST_OK, NULL);
    assert_true(reply->request_id && reply->request_id[0] == 'Q');
    health = health_of(reply);
    assert_int_equal(health->uptime_s, 1); /* the record's version */
    passerelle__health_reply__free_unpacked(health, NULL);
    passerelle__reply__free_unpacked(reply, NULL);

    client_t *al = client_as("action_logement", TIMEOUT_MS, 1);
    Passerelle__Event get = PASSERELLE__EVENT__INIT;
    get.subject = "happy";
    reply = call_ok(al, "unit.get", &get.base, NULL);
    assert_status(reply, ST_OK, NULL);
    health = health_of(reply);
    assert_int_equal(health->uptime_s, 1);
    assert_string_equal(health->version, "v1");
    passerelle__health_reply__free_unpacked(health, NULL);
    passerelle__reply__free_unpacked(reply, NULL);

    /* a handler's own error goes through as it is */
    get.subject = "missing";
    reply = call_ok(al, "unit.get", &get.base, NULL);
    assert_status(reply, ST_NOT_FOUND, "subject");
    passerelle__reply__free_unpacked(reply, NULL);

    client_destroy(&admin);
    client_destroy(&metropole);
    client_destroy(&al);
}

static void test_event_list(void **state)
{
    (void)state;
    client_t *metropole = client_as("metropole", TIMEOUT_MS, 1);
    Passerelle__Event put = PASSERELLE__EVENT__INIT;
    put.subject = "listed";
    Passerelle__Reply *reply = call_ok(metropole, "unit.register", &put.base, NULL);
    assert_status(reply, ST_OK, NULL);
    passerelle__reply__free_unpacked(reply, NULL);

    Passerelle__EventListRequest list = PASSERELLE__EVENT_LIST_REQUEST__INIT;
    reply = call_ok(metropole, "event.list", &list.base, NULL);
    assert_status(reply, ST_OK, NULL);
    Passerelle__EventListReply *events =
        passerelle__event_list_reply__unpack(NULL, reply->body.len, reply->body.data);
    assert_non_null(events);
    assert_true(events->n_events >= 1);
    bool found = false;
    for (size_t i = 0; i < events->n_events; i++)
        if (events->events[i]->event && events->events[i]->event->subject &&
            strcmp(events->events[i]->event->subject, "svctest:rec:listed") == 0)
            found = true;
    assert_true(found);
    passerelle__event_list_reply__free_unpacked(events, NULL);
    passerelle__reply__free_unpacked(reply, NULL);

    list.after = "not-a-position";
    reply = call_ok(metropole, "event.list", &list.base, NULL);
    assert_status(reply, ST_INVALID_ARGUMENT, "after");
    passerelle__reply__free_unpacked(reply, NULL);

    /* partners read feeds through notifications, not the raw stream */
    client_t *partner = client_as("partner", TIMEOUT_MS, 1);
    list.after = NULL;
    reply = call_ok(partner, "event.list", &list.base, NULL);
    assert_status(reply, ST_PERMISSION_DENIED, NULL);
    passerelle__reply__free_unpacked(reply, NULL);
    client_destroy(&partner);
    client_destroy(&metropole);
}

static void test_invalid_arguments(void **state)
{
    (void)state;
    client_t *metropole = client_as("metropole", TIMEOUT_MS, 1);

    Passerelle__Reply *reply = call_ok(metropole, "no.such.type", NULL, NULL);
    assert_status(reply, ST_INVALID_ARGUMENT, "type");
    assert_non_null(strstr(reply->message, "no.such.type"));
    passerelle__reply__free_unpacked(reply, NULL);

    /* a write without an idempotency key */
    Passerelle__Event put = PASSERELLE__EVENT__INIT;
    put.subject = "nokey";
    size_t len = 0;
    uint8_t *frame = envelope_encode_request("Q-nokey", "unit.register", NULL, &put.base, &len);
    reply = call_raw(metropole, frame, len);
    assert_status(reply, ST_INVALID_ARGUMENT, "idempotency_key");
    assert_string_equal(reply->request_id, "Q-nokey");
    passerelle__reply__free_unpacked(reply, NULL);
    free(frame);

    /* a body that is not the route's message */
    Passerelle__Request raw = PASSERELLE__REQUEST__INIT;
    raw.request_id = "Q-body";
    raw.type = "unit.register";
    raw.idempotency_key = "K-body";
    raw.has_body = 1;
    uint8_t bad_body[] = {0xff, 0xff, 0xff};
    raw.body.data = bad_body;
    raw.body.len = sizeof bad_body;
    uint8_t buf[256];
    len = passerelle__request__pack(&raw, buf);
    reply = call_raw(metropole, buf, len);
    assert_status(reply, ST_INVALID_ARGUMENT, "body");
    passerelle__reply__free_unpacked(reply, NULL);

    /* no type */
    raw.type = NULL;
    len = passerelle__request__pack(&raw, buf);
    reply = call_raw(metropole, buf, len);
    assert_status(reply, ST_INVALID_ARGUMENT, "type");
    passerelle__reply__free_unpacked(reply, NULL);

    /* not an envelope at all */
    const char garbage[] = "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff";
    reply = call_raw(metropole, garbage, sizeof garbage - 1);
    assert_status(reply, ST_INVALID_ARGUMENT, "frame");
    passerelle__reply__free_unpacked(reply, NULL);

    /* the handler's own validation */
    put.subject = NULL;
    reply = call_ok(metropole, "unit.register", &put.base, NULL);
    assert_status(reply, ST_INVALID_ARGUMENT, "subject");
    passerelle__reply__free_unpacked(reply, NULL);

    assert_health_ok(metropole, "METROPOLE", "metropole");
    client_destroy(&metropole);
}

static void test_oversized_frames(void **state)
{
    (void)state;
    client_t *admin = client_as("admin", SHORT_TIMEOUT * 2, 0);
    /* over the request limit, under the socket's: a clear refusal */
    size_t big = MAX_REQUEST + 1000;
    uint8_t *frame = calloc(1, big);
    Passerelle__Reply *reply = call_raw(admin, frame, big);
    assert_status(reply, ST_INVALID_ARGUMENT, "frame");
    assert_non_null(strstr(reply->message, "limit"));
    passerelle__reply__free_unpacked(reply, NULL);
    free(frame);
    assert_health_ok(admin, "ADMIN", "admin");

    /* over the socket's hard limit: ZeroMQ drops it and the peer */
    size_t huge = MAX_REQUEST * 4 + 4096 + 1;
    frame = calloc(1, huge);
    reply = NULL;
    assert_int_equal(client_call_raw(admin, frame, huge, &reply), -1);
    assert_null(reply);
    free(frame);
    /* the client reopened its socket; the server still serves everyone */
    assert_health_ok(admin, "ADMIN", "admin");
    client_t *al = client_as("action_logement", TIMEOUT_MS, 0);
    assert_health_ok(al, "ACTION_LOGEMENT", "action_logement");
    client_destroy(&al);
    client_destroy(&admin);
}

static void test_frame_shapes(void **state)
{
    (void)state;
    zsock_t *dealer = dealer_as("operator");
    size_t len = 0;
    uint8_t *frame = envelope_encode_request("Q-shape", "health", NULL, NULL, &len);

    /* extra frames after the payload */
    zmsg_t *msg = zmsg_new();
    zmsg_addmem(msg, NULL, 0);
    zmsg_addmem(msg, frame, len);
    zmsg_addstr(msg, "extra");
    assert_int_equal(zmsg_send(&msg, dealer), 0);
    msg = zmsg_recv(dealer);
    assert_non_null(msg);
    assert_int_equal(zmsg_size(msg), 2);
    zframe_t *last = zmsg_last(msg);
    Passerelle__Reply *reply =
        passerelle__reply__unpack(NULL, zframe_size(last), zframe_data(last));
    assert_non_null(reply);
    assert_status(reply, ST_INVALID_ARGUMENT, "frame");
    passerelle__reply__free_unpacked(reply, NULL);
    zmsg_destroy(&msg);

    /* only the delimiter */
    msg = zmsg_new();
    zmsg_addmem(msg, NULL, 0);
    assert_int_equal(zmsg_send(&msg, dealer), 0);
    msg = zmsg_recv(dealer);
    assert_non_null(msg);
    last = zmsg_last(msg);
    reply = passerelle__reply__unpack(NULL, zframe_size(last), zframe_data(last));
    assert_non_null(reply);
    assert_status(reply, ST_INVALID_ARGUMENT, "frame");
    passerelle__reply__free_unpacked(reply, NULL);
    zmsg_destroy(&msg);

    /* no delimiter: tolerated, and answered the same way */
    assert_int_equal(zsock_send(dealer, "b", frame, len), 0);
    msg = zmsg_recv(dealer);
    assert_non_null(msg);
    assert_int_equal(zmsg_size(msg), 1);
    last = zmsg_last(msg);
    reply = passerelle__reply__unpack(NULL, zframe_size(last), zframe_data(last));
    assert_non_null(reply);
    assert_status(reply, ST_OK, NULL);
    assert_string_equal(reply->request_id, "Q-shape");
    passerelle__reply__free_unpacked(reply, NULL);
    zmsg_destroy(&msg);

    free(frame);
    zsock_destroy(&dealer);
}

static void test_permission_denied(void **state)
{
    (void)state;
    client_t *partner = client_as("partner", TIMEOUT_MS, 0);
    Passerelle__Event put = PASSERELLE__EVENT__INIT;
    put.subject = "denied";
    Passerelle__Reply *reply = call_ok(partner, "unit.register", &put.base, NULL);
    assert_status(reply, ST_PERMISSION_DENIED, NULL);
    assert_non_null(strstr(reply->message, "PARTNER"));
    assert_non_null(strstr(reply->message, "unit.register"));
    passerelle__reply__free_unpacked(reply, NULL);

    /* a route the ACL table does not list is refused even to admin */
    client_t *admin = client_as("admin", TIMEOUT_MS, 0);
    reply = call_ok(admin, "svctest.unlisted", NULL, NULL);
    assert_status(reply, ST_PERMISSION_DENIED, NULL);
    passerelle__reply__free_unpacked(reply, NULL);
    assert_int_equal(fx.handlers.contended_runs, 0);

    /* nothing was written by the refused request */
    client_t *al = client_as("action_logement", TIMEOUT_MS, 0);
    reply = call_ok(al, "unit.get", &put.base, NULL);
    assert_status(reply, ST_NOT_FOUND, NULL);
    passerelle__reply__free_unpacked(reply, NULL);
    client_destroy(&al);
    client_destroy(&admin);
    client_destroy(&partner);
}

static void test_unauthenticated(void **state)
{
    (void)state;
    /* zauth lets this key in (it is in authorized/), but its certificate
     * names no party we know */
    char path[600];
    zcert_t *cert = zcert_new();
    zcert_set_meta(cert, "name", "rogue");
    zcert_set_meta(cert, "party", "ROOT");
    snprintf(path, sizeof path, "%s/clients/rogue.key", fx.keys);
    assert_int_equal(zcert_save(cert, path), 0);
    snprintf(path, sizeof path, "%s/authorized/rogue.key", fx.keys);
    assert_int_equal(zcert_save_public(cert, path), 0);
    zcert_destroy(&cert);

    client_t *rogue = client_as("rogue", TIMEOUT_MS, 0);
    Passerelle__Reply *reply = call_ok(rogue, "health", NULL, NULL);
    assert_status(reply, ST_UNAUTHENTICATED, NULL);
    assert_false(reply->has_body);
    passerelle__reply__free_unpacked(reply, NULL);
    client_destroy(&rogue);
}

static void test_unknown_key_gets_no_answer(void **state)
{
    (void)state;
    /* a key pair of its own, not in authorized/ */
    char path[600];
    zcert_t *cert = zcert_new();
    zcert_set_meta(cert, "name", "stranger");
    zcert_set_meta(cert, "party", "ADMIN");
    snprintf(path, sizeof path, "%s/stranger.key", fx.dir);
    assert_int_equal(zcert_save(cert, path), 0);
    zcert_destroy(&cert);
    char server_public[600];
    keydir_server_public_path(fx.keys, server_public, sizeof server_public);
    char secret[620];
    snprintf(secret, sizeof secret, "%s_secret", path);
    client_config_t cfg = {.endpoint = server_endpoint(fx.server),
                           .server_public_path = server_public,
                           .client_cert_path = secret,
                           .timeout_ms = SHORT_TIMEOUT,
                           .retries = 1};
    char err[256];
    client_t *stranger = client_new(&cfg, err, sizeof err);
    assert_non_null(stranger);
    Passerelle__Reply *reply = NULL;
    assert_int_equal(client_call(stranger, "health", NULL, NULL, &reply), -1);
    assert_null(reply);
    client_destroy(&stranger);

    client_t *admin = client_as("admin", TIMEOUT_MS, 0);
    assert_health_ok(admin, "ADMIN", "admin");
    client_destroy(&admin);
}

static void test_idempotent_retry(void **state)
{
    (void)state;
    client_t *metropole = client_as("metropole", TIMEOUT_MS, 0);
    Passerelle__Event put = PASSERELLE__EVENT__INIT;
    put.subject = "idem";
    put.has_data = 1;
    put.data.data = (uint8_t *)"first";
    put.data.len = 5;
    int runs = fx.handlers.put_runs;
    Passerelle__Reply *first = call_ok(metropole, "unit.register", &put.base, "K-idem-1");
    assert_status(first, ST_OK, NULL);
    Passerelle__Reply *second = call_ok(metropole, "unit.register", &put.base, "K-idem-1");
    assert_status(second, ST_OK, NULL);
    /* the first reply, under the second request's id */
    assert_string_not_equal(first->request_id, second->request_id);
    assert_int_equal(first->body.len, second->body.len);
    assert_memory_equal(first->body.data, second->body.data, first->body.len);
    assert_int_equal(fx.handlers.put_runs, runs + 1);
    passerelle__reply__free_unpacked(first, NULL);
    passerelle__reply__free_unpacked(second, NULL);

    /* written once */
    Passerelle__Event get = PASSERELLE__EVENT__INIT;
    get.subject = "idem";
    Passerelle__Reply *reply = call_ok(metropole, "unit.get", &get.base, NULL);
    assert_status(reply, ST_OK, NULL);
    Passerelle__HealthReply *health = health_of(reply);
    assert_int_equal(health->uptime_s, 1);
    passerelle__health_reply__free_unpacked(health, NULL);
    passerelle__reply__free_unpacked(reply, NULL);

    /* the same key for another request */
    put.data.data = (uint8_t *)"other";
    reply = call_ok(metropole, "unit.register", &put.base, "K-idem-1");
    assert_status(reply, ST_INVALID_ARGUMENT, "idempotency_key");
    passerelle__reply__free_unpacked(reply, NULL);

    /* the same key from another caller is another key */
    client_t *op = client_as("operator", TIMEOUT_MS, 0);
    reply = call_ok(op, "unit.register", &put.base, "K-idem-1");
    assert_status(reply, ST_OK, NULL);
    health = health_of(reply);
    assert_int_equal(health->uptime_s, 2);
    passerelle__health_reply__free_unpacked(health, NULL);
    passerelle__reply__free_unpacked(reply, NULL);
    client_destroy(&op);
    client_destroy(&metropole);
}

static long long blind_commits(void)
{
    redisReply *r = NULL;
    assert_int_equal(store_command(fx.store, &r, "HGET svctest:blind commits"), STORE_OK);
    long long n = r->type == REDIS_REPLY_STRING ? atoll(r->str) : 0;
    freeReplyObject(r);
    return n;
}

/* A handler that reads nothing runs before its request's lookup is known:
 * a retry still gets the first reply, and nothing is written twice. */
static void test_duplicate_of_blind_write(void **state)
{
    (void)state;
    client_t *admin = client_as("admin", TIMEOUT_MS, 0);
    long long before = blind_commits();
    Passerelle__HealthRequest body = PASSERELLE__HEALTH_REQUEST__INIT;
    Passerelle__Reply *first = call_ok(admin, "convention.abandon", &body.base, "K-blind");
    assert_status(first, ST_OK, NULL);
    Passerelle__Reply *second = call_ok(admin, "convention.abandon", &body.base, "K-blind");
    assert_status(second, ST_OK, NULL);
    assert_int_equal(first->body.len, second->body.len);
    assert_memory_equal(first->body.data, second->body.data, first->body.len);
    assert_int_equal(blind_commits(), before + 1);
    passerelle__reply__free_unpacked(first, NULL);
    passerelle__reply__free_unpacked(second, NULL);

    /* a used key with a body that does not decode: the key's answer wins,
     * as it did when the lookup came first */
    Passerelle__Request raw = PASSERELLE__REQUEST__INIT;
    raw.request_id = "Q-blind-body";
    raw.type = "convention.abandon";
    raw.idempotency_key = "K-blind";
    raw.has_body = 1;
    uint8_t bad_body[] = {0xff, 0xff, 0xff};
    raw.body.data = bad_body;
    raw.body.len = sizeof bad_body;
    uint8_t buf[256];
    size_t len = passerelle__request__pack(&raw, buf);
    Passerelle__Reply *reply = call_raw(admin, buf, len);
    assert_status(reply, ST_INVALID_ARGUMENT, "idempotency_key");
    passerelle__reply__free_unpacked(reply, NULL);
    /* and with a new key, the body's */
    raw.idempotency_key = "K-blind-body";
    len = passerelle__request__pack(&raw, buf);
    reply = call_raw(admin, buf, len);
    assert_status(reply, ST_INVALID_ARGUMENT, "body");
    passerelle__reply__free_unpacked(reply, NULL);
    assert_int_equal(blind_commits(), before + 1);
    client_destroy(&admin);
}

static void test_stale_retry_loop(void **state)
{
    (void)state;
    client_t *admin = client_as("admin", TIMEOUT_MS * 2, 0);
    fx.handlers.contended_runs = 0;
    Passerelle__Reply *reply = call_ok(admin, "convention.sign", NULL, NULL);
    assert_status(reply, ST_UNAVAILABLE, NULL);
    assert_non_null(strstr(reply->message, "contention"));
    assert_int_equal(fx.handlers.contended_runs, 6); /* first run and 5 more */
    passerelle__reply__free_unpacked(reply, NULL);

    fx.handlers.stale_once_runs = 0;
    reply = call_ok(admin, "convention.end", NULL, NULL);
    assert_status(reply, ST_OK, NULL);
    assert_int_equal(fx.handlers.stale_once_runs, 2);
    passerelle__reply__free_unpacked(reply, NULL);
    client_destroy(&admin);
}

static void test_insecure_mode(void **state)
{
    (void)state;
    server_config_t cfg = server_config(true, NULL);
    server_t *plain = server_new(&cfg);
    assert_non_null(plain);
    client_config_t ccfg = {.endpoint = server_endpoint(plain),
                            .insecure = true,
                            .timeout_ms = TIMEOUT_MS,
                            .retries = 0};
    char err[256];
    client_t *client = client_new(&ccfg, err, sizeof err);
    assert_non_null(client);
    Passerelle__Reply *reply = call_ok(client, "health", NULL, NULL);
    assert_status(reply, ST_OK, NULL);
    Passerelle__HealthReply *health = health_of(reply);
    assert_string_equal(health->caller_party, "ADMIN");
    assert_string_equal(health->caller_name, "insecure");
    assert_false(health->redis_ok); /* this one has no store */
    passerelle__health_reply__free_unpacked(health, NULL);
    passerelle__reply__free_unpacked(reply, NULL);

    /* a write without a store is the server's own INTERNAL error */
    Passerelle__Event put = PASSERELLE__EVENT__INIT;
    put.subject = "plain";
    reply = call_ok(client, "unit.register", &put.base, NULL);
    assert_status(reply, ST_INTERNAL, NULL);
    passerelle__reply__free_unpacked(reply, NULL);
    client_destroy(&client);

    /* a CURVE client cannot talk to it, nor a plain client to the CURVE one */
    client_t *curve = harness_client(server_endpoint(plain), fx.keys, "admin", SHORT_TIMEOUT, 0);
    assert_non_null(curve);
    assert_int_equal(client_call(curve, "health", NULL, NULL, &reply), -1);
    client_destroy(&curve);
    ccfg.endpoint = server_endpoint(fx.server);
    ccfg.timeout_ms = SHORT_TIMEOUT;
    client = client_new(&ccfg, err, sizeof err);
    assert_int_equal(client_call(client, "health", NULL, NULL, &reply), -1);
    client_destroy(&client);
    server_destroy(&plain);
    assert_null(plain);
}

static void test_redis_down(void **state)
{
    (void)state;
    client_t *metropole = client_as("metropole", TIMEOUT_MS * 2, 1);
    harness_redis_kill(&fx.redis);
    Passerelle__Event put = PASSERELLE__EVENT__INIT;
    put.subject = "down";
    Passerelle__Reply *reply = call_ok(metropole, "unit.register", &put.base, NULL);
    assert_status(reply, ST_UNAVAILABLE, NULL);
    passerelle__reply__free_unpacked(reply, NULL);
    reply = call_ok(metropole, "health", NULL, NULL);
    assert_status(reply, ST_OK, NULL);
    Passerelle__HealthReply *health = health_of(reply);
    assert_false(health->redis_ok);
    passerelle__health_reply__free_unpacked(health, NULL);
    passerelle__reply__free_unpacked(reply, NULL);

    assert_int_equal(harness_redis_restart(&fx.redis), 0);
    if (!store_ping(fx.store)) /* the test's own connection died too */
        assert_true(store_ping(fx.store));
    reply = call_ok(metropole, "unit.register", &put.base, NULL);
    assert_status(reply, ST_OK, NULL);
    passerelle__reply__free_unpacked(reply, NULL);
    client_destroy(&metropole);
}

/* ------------------------------------------------------------------------
 * Group commit */

/* One call from its own thread and client; the main thread asserts. */
typedef struct {
    pthread_t thread;
    client_t *client;
    const char *type;
    Passerelle__Event body;
    char subject[64];
    const char *key; /* NULL: a fresh one */
    Passerelle__Reply *reply;
    int rc;
} async_call_t;

static void *async_call_run(void *arg)
{
    async_call_t *c = arg;
    c->rc = client_call(c->client, c->type, &c->body.base, c->key, &c->reply);
    return NULL;
}

static void async_call_start(async_call_t *c, const char *type, const char *subject,
                             const char *key)
{
    memset(c, 0, sizeof *c);
    c->client = client_as("admin", TIMEOUT_MS * 5, 0);
    c->type = type;
    Passerelle__Event init = PASSERELLE__EVENT__INIT;
    c->body = init;
    snprintf(c->subject, sizeof c->subject, "%s", subject);
    c->body.subject = c->subject;
    c->key = key;
    assert_int_equal(pthread_create(&c->thread, NULL, async_call_run, c), 0);
}

static Passerelle__Reply *async_call_join(async_call_t *c)
{
    pthread_join(c->thread, NULL);
    client_destroy(&c->client);
    assert_int_equal(c->rc, 0);
    assert_non_null(c->reply);
    return c->reply;
}

/* Closes the gate and waits until the server is held in it: what is sent
 * from now on queues up on the socket. */
static void gate_hold(async_call_t *gate)
{
    __atomic_store_n(&fx.handlers.gate_open, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&fx.handlers.gate_entered, 0, __ATOMIC_SEQ_CST);
    async_call_start(gate, "unit.list", "gate", NULL);
    for (int i = 0; i < 500 && !__atomic_load_n(&fx.handlers.gate_entered, __ATOMIC_SEQ_CST); i++)
        zclock_sleep(10);
    assert_true(__atomic_load_n(&fx.handlers.gate_entered, __ATOMIC_SEQ_CST));
}

/* Lets the queued requests reach the server's socket (the clients connect
 * and finish CURVE first), then opens the gate: they make one batch. */
static void gate_release(async_call_t *gate)
{
    zclock_sleep(400);
    __atomic_store_n(&fx.handlers.gate_open, 1, __ATOMIC_SEQ_CST);
    Passerelle__Reply *reply = async_call_join(gate);
    assert_status(reply, ST_OK, NULL);
    passerelle__reply__free_unpacked(reply, NULL);
}

static uint64_t record_version(const char *subject)
{
    char key[256];
    record_key(subject, key, sizeof key);
    uint64_t version = 0;
    uint8_t *data = NULL;
    size_t len = 0;
    /* After a Redis restart the test's own connection may still be the
     * dead one (a loaded machine can also time a read out): a lost read is
     * tried again, on a new connection, before it counts. */
    store_result_t result = STORE_LOST;
    for (int attempt = 0; attempt < 3 && result == STORE_LOST; attempt++)
        result = store_record_get(fx.store, key, &version, &data, &len);
    assert_int_equal(result, STORE_OK);
    free(data);
    return version;
}

/* Events in the test stream whose subject is the record of subject. */
static int events_about(const char *subject)
{
    char key[256];
    record_key(subject, key, sizeof key);
    redisReply *all = NULL;
    assert_int_equal(store_command(fx.store, &all, "XRANGE svctest:events - +"), STORE_OK);
    int count = 0;
    for (size_t i = 0; i < all->elements; i++) {
        const redisReply *fields = all->element[i]->element[1];
        for (size_t f = 0; f + 1 < fields->elements; f += 2) {
            if (strcmp(fields->element[f]->str, "event") != 0)
                continue;
            Passerelle__Event *ev = passerelle__event__unpack(
                NULL, fields->element[f + 1]->len, (const uint8_t *)fields->element[f + 1]->str);
            assert_non_null(ev);
            if (ev->subject && strcmp(ev->subject, key) == 0)
                count++;
            passerelle__event__free_unpacked(ev, NULL);
        }
    }
    freeReplyObject(all);
    return count;
}

#define WRITERS           8
#define WRITES_PER_WRITER 30

typedef struct {
    pthread_t thread;
    int index;
    int ok, failed;
} writer_t;

/* Each writer alternates a record of its own and one record they all
 * share: the shared one goes stale whenever two writes to it meet in a
 * batch, and must still count every acknowledged write exactly once. */
static void *writer_run(void *arg)
{
    writer_t *w = arg;
    client_t *client =
        harness_client(server_endpoint(fx.server), fx.keys, "metropole", TIMEOUT_MS * 5, 0);
    for (int i = 0; client && i < WRITES_PER_WRITER; i++) {
        char subject[64];
        if (i % 2)
            snprintf(subject, sizeof subject, "shared");
        else
            snprintf(subject, sizeof subject, "writer-%d-%d", w->index, i);
        Passerelle__Event put = PASSERELLE__EVENT__INIT;
        put.subject = subject;
        Passerelle__Reply *reply = NULL;
        if (client_call(client, "unit.register", &put.base, NULL, &reply) == 0 && reply &&
            reply->has_status && (status_t)reply->status == ST_OK)
            w->ok++;
        else
            w->failed++;
        if (reply)
            passerelle__reply__free_unpacked(reply, NULL);
    }
    client_destroy(&client);
    return NULL;
}

static void test_concurrent_writers(void **state)
{
    (void)state;
    uint64_t shared_before = record_version("shared");
    writer_t writers[WRITERS];
    memset(writers, 0, sizeof writers);
    for (int i = 0; i < WRITERS; i++) {
        writers[i].index = i;
        assert_int_equal(pthread_create(&writers[i].thread, NULL, writer_run, &writers[i]), 0);
    }
    int ok = 0, failed = 0;
    for (int i = 0; i < WRITERS; i++) {
        pthread_join(writers[i].thread, NULL);
        ok += writers[i].ok;
        failed += writers[i].failed;
    }
    assert_int_equal(failed, 0);
    assert_int_equal(ok, WRITERS * WRITES_PER_WRITER);
    /* Every acknowledged write is there once: one version per shared write,
     * each own record at version 1 with its one event. */
    assert_int_equal(record_version("shared") - shared_before, WRITERS * (WRITES_PER_WRITER / 2));
    for (int w = 0; w < WRITERS; w++)
        for (int i = 0; i < WRITES_PER_WRITER; i += 2) {
            char subject[64];
            snprintf(subject, sizeof subject, "writer-%d-%d", w, i);
            assert_int_equal(record_version(subject), 1);
            assert_int_equal(events_about(subject), 1);
        }
}

static void test_batch_same_record_and_duplicates(void **state)
{
    (void)state;
    int runs_before = fx.handlers.put_runs;
    async_call_t gate, first, second, dup_a, dup_b;
    gate_hold(&gate);
    /* two writes to one record, and one write sent twice with one key */
    async_call_start(&first, "unit.register", "batched", NULL);
    async_call_start(&second, "unit.register", "batched", NULL);
    async_call_start(&dup_a, "unit.register", "batched-dup", "same-key-in-one-batch");
    async_call_start(&dup_b, "unit.register", "batched-dup", "same-key-in-one-batch");
    gate_release(&gate);

    Passerelle__Reply *replies[4] = {async_call_join(&first), async_call_join(&second),
                                     async_call_join(&dup_a), async_call_join(&dup_b)};
    uint64_t versions[4];
    for (int i = 0; i < 4; i++) {
        assert_status(replies[i], ST_OK, NULL);
        Passerelle__HealthReply *h = health_of(replies[i]);
        versions[i] = h->uptime_s;
        passerelle__health_reply__free_unpacked(h, NULL);
    }
    /* One of the two writes went stale on the other's commit and ran
     * again on it: versions 1 and 2, both present. */
    assert_true((versions[0] == 1 && versions[1] == 2) || (versions[0] == 2 && versions[1] == 1));
    assert_int_equal(record_version("batched"), 2);
    assert_int_equal(events_about("batched"), 2);
    /* The duplicate committed once; both got the first's reply. */
    assert_int_equal(versions[2], 1);
    assert_int_equal(versions[3], 1);
    assert_int_equal(record_version("batched-dup"), 1);
    assert_int_equal(events_about("batched-dup"), 1);
    /* All four ran in one batch: 4 runs and one re-run. (Apart, the
     * duplicate would have been answered by the lookup, and nothing would
     * have gone stale: 3 runs.) */
    assert_int_equal(fx.handlers.put_runs - runs_before, 5);
    for (int i = 0; i < 4; i++)
        passerelle__reply__free_unpacked(replies[i], NULL);
}

static void test_redis_lost_mid_batch(void **state)
{
    (void)state;
    async_call_t gate, first, second, killer;
    gate_hold(&gate);
    async_call_start(&first, "unit.register", "lost-1", "lost-key-1");
    async_call_start(&second, "unit.register", "lost-2", "lost-key-2");
    /* after the two writes, so that their handlers have run when it kills */
    zclock_sleep(200);
    async_call_start(&killer, "convention.envisage", "killer", "lost-key-3");
    gate_release(&gate);
    Passerelle__Reply *replies[3] = {async_call_join(&first), async_call_join(&second),
                                     async_call_join(&killer)};
    for (int i = 0; i < 3; i++) {
        assert_status(replies[i], ST_UNAVAILABLE, NULL);
        passerelle__reply__free_unpacked(replies[i], NULL);
    }

    /* Back: the same requests, retried with their keys, commit once. */
    assert_int_equal(harness_redis_restart(&fx.redis), 0);
    /* The test's own store connection died with Redis: the first call
     * after it says so, the next reconnects. */
    if (!store_ping(fx.store))
        assert_true(store_ping(fx.store));
    client_t *admin = client_as("admin", TIMEOUT_MS, 0);
    Passerelle__Event put = PASSERELLE__EVENT__INIT;
    put.subject = "lost-1";
    Passerelle__Reply *reply = call_ok(admin, "unit.register", &put.base, "lost-key-1");
    assert_status(reply, ST_OK, NULL);
    passerelle__reply__free_unpacked(reply, NULL);
    reply = call_ok(admin, "unit.register", &put.base, "lost-key-1");
    assert_status(reply, ST_OK, NULL);
    passerelle__reply__free_unpacked(reply, NULL);
    client_destroy(&admin);
    assert_int_equal(record_version("lost-1"), 1);
    assert_int_equal(events_about("lost-1"), 1);
    assert_int_equal(record_version("lost-2"), 0);
}

/* Work deferred by the handlers of one batch is done in one call of the
 * hook, before the commit; what it fails is not committed and gets the
 * hook's error; runs thrown away leave their work undone and released. */
static void test_deferred_work(void **state)
{
    (void)state;
    handlers_t *h = &fx.handlers;
    h->deferred_made = h->deferred_released = h->prepare_calls = h->prepare_replies = 0;
    h->prepare_most = h->deferred_done = 0;
    h->fail_marked = true;
    async_call_t gate, first, second, failing, dup;
    gate_hold(&gate);
    async_call_start(&first, "upload.begin", "deferred-1", NULL);
    async_call_start(&second, "upload.begin", "deferred-2", "deferred-key");
    async_call_start(&failing, "upload.begin", "fail-deferred", "fail-key");
    async_call_start(&dup, "upload.begin", "deferred-2", "deferred-key");
    gate_release(&gate);
    Passerelle__Reply *replies[4] = {async_call_join(&first), async_call_join(&second),
                                     async_call_join(&failing), async_call_join(&dup)};
    assert_status(replies[0], ST_OK, NULL);
    assert_status(replies[1], ST_OK, NULL);
    assert_status(replies[2], ST_INTERNAL, NULL);
    assert_non_null(strstr(replies[2]->message, "the work for fail-deferred failed"));
    assert_status(replies[3], ST_OK, NULL);
    for (int i = 0; i < 4; i++)
        passerelle__reply__free_unpacked(replies[i], NULL);
    /* One call for the batch, with the four runs kept (the two of one key
     * included: the second commit answers it with the first's reply). */
    assert_int_equal(h->prepare_calls, 1);
    assert_int_equal(h->prepare_replies, 4);
    assert_int_equal(h->prepare_most, 4);
    assert_int_equal(h->deferred_done, 3);
    /* Each handler's first run missed its record in the snapshot and was
     * thrown away: more work made than done, all of it released by now
     * (a request answered after these means they are retired). */
    assert_true(h->deferred_made > 4);
    client_t *client = client_as("admin", TIMEOUT_MS, 0);
    Passerelle__Reply *reply = call_ok(client, "health", NULL, NULL);
    passerelle__reply__free_unpacked(reply, NULL);
    assert_int_equal(h->deferred_released, h->deferred_made);
    assert_int_equal(record_version("deferred-1"), 1);
    assert_int_equal(record_version("deferred-2"), 1);
    /* The failed one left no record and no idempotency record: sent again
     * with its key once the work can be done, it goes through. */
    assert_int_equal(record_version("fail-deferred"), 0);
    h->fail_marked = false;
    Passerelle__Event body = PASSERELLE__EVENT__INIT;
    body.subject = "fail-deferred";
    reply = call_ok(client, "upload.begin", &body.base, "fail-key");
    assert_status(reply, ST_OK, NULL);
    passerelle__reply__free_unpacked(reply, NULL);
    assert_int_equal(record_version("fail-deferred"), 1);
    client_destroy(&client);
}

/* ------------------------------------------------------------------------
 * Housekeeping tick */

static void tick_count(void *ctx)
{
    handlers_t *h = ctx;
    __atomic_add_fetch(&h->ticks, 1, __ATOMIC_SEQ_CST);
}

static int ticks_now(void)
{
    return __atomic_load_n(&fx.handlers.ticks, __ATOMIC_SEQ_CST);
}

/* Waits (up to 10 s) until the tick has been called more than since
 * times; true if it was. */
static bool ticks_pass(int since)
{
    for (int i = 0; i < 1000 && ticks_now() <= since; i++)
        zclock_sleep(10);
    return ticks_now() > since;
}

static client_t *plain_client(const server_t *server)
{
    client_config_t ccfg = {.endpoint = server_endpoint(server),
                            .insecure = true,
                            .timeout_ms = TIMEOUT_MS,
                            .retries = 0};
    char err[256];
    client_t *client = client_new(&ccfg, err, sizeof err);
    assert_non_null(client);
    return client;
}

static void call_health(client_t *client)
{
    Passerelle__Reply *reply = call_ok(client, "health", NULL, NULL);
    assert_status(reply, ST_OK, NULL);
    passerelle__reply__free_unpacked(reply, NULL);
}

typedef struct {
    pthread_t thread;
    const server_t *server;
    int stop;
    int calls, failed;
} streamer_t;

/* Back-to-back calls until told to stop: the server is never idle for a
 * whole tick period, so ticks that only came on a quiet socket would
 * never come. */
static void *streamer_run(void *arg)
{
    streamer_t *s = arg;
    client_config_t ccfg = {.endpoint = server_endpoint(s->server),
                            .insecure = true,
                            .timeout_ms = TIMEOUT_MS,
                            .retries = 0};
    char err[256];
    client_t *client = client_new(&ccfg, err, sizeof err);
    while (client && !__atomic_load_n(&s->stop, __ATOMIC_SEQ_CST)) {
        Passerelle__Reply *reply = NULL;
        if (client_call(client, "health", NULL, NULL, &reply) == 0 && reply && reply->has_status &&
            (status_t)reply->status == ST_OK)
            __atomic_add_fetch(&s->calls, 1, __ATOMIC_SEQ_CST);
        else
            s->failed++;
        if (reply)
            passerelle__reply__free_unpacked(reply, NULL);
    }
    if (!client)
        s->failed++;
    client_destroy(&client);
    return NULL;
}

static void test_tick_when_idle(void **state)
{
    (void)state;
    server_config_t cfg = server_config(true, NULL);
    cfg.tick = tick_count;
    cfg.tick_ms = 10;
    __atomic_store_n(&fx.handlers.ticks, 0, __ATOMIC_SEQ_CST);
    server_t *ticking = server_new(&cfg);
    assert_non_null(ticking);
    /* called again and again with nothing to serve */
    assert_true(ticks_pass(5));
    /* and still once requests came and went */
    client_t *client = plain_client(ticking);
    call_health(client);
    int after_call = ticks_now();
    assert_true(ticks_pass(after_call + 2));
    client_destroy(&client);
    server_destroy(&ticking);
    /* none once the server is gone */
    int stopped = ticks_now();
    zclock_sleep(50);
    assert_int_equal(ticks_now(), stopped);
}

static void test_tick_when_busy(void **state)
{
    (void)state;
    server_config_t cfg = server_config(true, NULL);
    cfg.tick = tick_count;
    cfg.tick_ms = 50;
    __atomic_store_n(&fx.handlers.ticks, 0, __ATOMIC_SEQ_CST);
    server_t *ticking = server_new(&cfg);
    assert_non_null(ticking);
    streamer_t streamers[4];
    memset(streamers, 0, sizeof streamers);
    for (int i = 0; i < 4; i++) {
        streamers[i].server = ticking;
        assert_int_equal(pthread_create(&streamers[i].thread, NULL, streamer_run, &streamers[i]),
                         0);
    }
    /* once the calls flow, the ticks go on among them */
    for (int i = 0; i < 1000 && __atomic_load_n(&streamers[0].calls, __ATOMIC_SEQ_CST) < 10; i++)
        zclock_sleep(10);
    int calls_before = __atomic_load_n(&streamers[0].calls, __ATOMIC_SEQ_CST);
    int before = ticks_now();
    bool ticked = ticks_pass(before + 3);
    int calls_after = __atomic_load_n(&streamers[0].calls, __ATOMIC_SEQ_CST);
    int failed = 0;
    for (int i = 0; i < 4; i++) {
        __atomic_store_n(&streamers[i].stop, 1, __ATOMIC_SEQ_CST);
        pthread_join(streamers[i].thread, NULL);
        failed += streamers[i].failed;
    }
    server_destroy(&ticking);
    assert_true(calls_before >= 10);
    assert_true(ticked);
    assert_true(calls_after > calls_before);
    assert_int_equal(failed, 0);
}

static void test_tick_unset(void **state)
{
    (void)state;
    /* a period without a function, and a function without a period */
    server_config_t cfg = server_config(true, NULL);
    cfg.tick = NULL;
    cfg.tick_ms = 5;
    server_t *plain = server_new(&cfg);
    assert_non_null(plain);
    cfg.tick = tick_count;
    cfg.tick_ms = 0;
    __atomic_store_n(&fx.handlers.ticks, 0, __ATOMIC_SEQ_CST);
    server_t *no_period = server_new(&cfg);
    assert_non_null(no_period);
    client_t *a = plain_client(plain);
    client_t *b = plain_client(no_period);
    for (int i = 0; i < 5; i++) {
        call_health(a);
        call_health(b);
        zclock_sleep(10);
    }
    client_destroy(&a);
    client_destroy(&b);
    server_destroy(&plain);
    server_destroy(&no_period);
    assert_int_equal(ticks_now(), 0);
}

static void test_config_from_env(void **state)
{
    (void)state;
    server_config_t cfg = {0};
    unsetenv("PASSERELLE_INSECURE");
    unsetenv("PASSERELLE_KEYS_DIR");
    unsetenv("PASSERELLE_MAX_REQUEST_BYTES");
    unsetenv("PASSERELLE_IDEMPOTENCY_TTL_S");
    assert_true(server_config_from_env(&cfg));
    assert_false(cfg.insecure);
    assert_string_equal(cfg.keys_dir, "./var/keys");
    assert_int_equal(cfg.max_request_bytes, 1048576);
    assert_int_equal(cfg.idempotency_ttl_s, 86400);

    setenv("PASSERELLE_INSECURE", "1", 1);
    setenv("PASSERELLE_KEYS_DIR", "/etc/passerelle/keys", 1);
    setenv("PASSERELLE_MAX_REQUEST_BYTES", "2048", 1);
    setenv("PASSERELLE_IDEMPOTENCY_TTL_S", "60", 1);
    assert_true(server_config_from_env(&cfg));
    assert_true(cfg.insecure);
    assert_string_equal(cfg.keys_dir, "/etc/passerelle/keys");
    assert_int_equal(cfg.max_request_bytes, 2048);
    assert_int_equal(cfg.idempotency_ttl_s, 60);

    setenv("PASSERELLE_MAX_REQUEST_BYTES", "lots", 1);
    assert_false(server_config_from_env(&cfg));
    setenv("PASSERELLE_MAX_REQUEST_BYTES", "2048", 1);
    setenv("PASSERELLE_INSECURE", "maybe", 1);
    assert_false(server_config_from_env(&cfg));
    unsetenv("PASSERELLE_INSECURE");
    unsetenv("PASSERELLE_KEYS_DIR");
    unsetenv("PASSERELLE_MAX_REQUEST_BYTES");
    unsetenv("PASSERELLE_IDEMPOTENCY_TTL_S");
}

static void test_missing_server_cert(void **state)
{
    (void)state;
    server_config_t cfg = server_config(false, NULL);
    char empty[600];
    snprintf(empty, sizeof empty, "%s/nokeys", fx.dir);
    cfg.keys_dir = empty;
    assert_null(server_new(&cfg));
    /* and a bind that cannot work */
    cfg = server_config(true, NULL);
    cfg.endpoint = "tcp://256.0.0.1:1";
    assert_null(server_new(&cfg));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_listening),
        cmocka_unit_test(test_happy_path),
        cmocka_unit_test(test_event_list),
        cmocka_unit_test(test_invalid_arguments),
        cmocka_unit_test(test_oversized_frames),
        cmocka_unit_test(test_frame_shapes),
        cmocka_unit_test(test_permission_denied),
        cmocka_unit_test(test_unauthenticated),
        cmocka_unit_test(test_unknown_key_gets_no_answer),
        cmocka_unit_test(test_idempotent_retry),
        cmocka_unit_test(test_stale_retry_loop),
        cmocka_unit_test(test_duplicate_of_blind_write),
        cmocka_unit_test(test_insecure_mode),
        cmocka_unit_test(test_tick_when_idle),
        cmocka_unit_test(test_tick_when_busy),
        cmocka_unit_test(test_tick_unset),
        cmocka_unit_test(test_config_from_env),
        cmocka_unit_test(test_missing_server_cert),
        cmocka_unit_test(test_redis_down),
        cmocka_unit_test(test_concurrent_writers),
        cmocka_unit_test(test_batch_same_record_and_duplicates),
        cmocka_unit_test(test_deferred_work),
        cmocka_unit_test(test_redis_lost_mid_batch),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
