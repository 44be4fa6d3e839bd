/* The Lazy Pirate client against a real server started late, no server at
 * all, and a scripted server that misbehaves on purpose. */
#include "envelope.h"
#include "harness.h"
#include "ids.h"
#include "log.h"
#include "server.h"

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

static char *tmp_dir;
static char keys[512];

static int group_setup(void **state)
{
    (void)state;
    log_set_level(LOG_LEVEL_ERROR);
    tmp_dir = harness_tempdir("client");
    if (!tmp_dir)
        return -1;
    snprintf(keys, sizeof keys, "%s/keys", tmp_dir);
    return harness_keys_make(keys);
}

static int group_teardown(void **state)
{
    (void)state;
    harness_rmtree(tmp_dir);
    free(tmp_dir);
    return 0;
}

/* ------------------------------------------------------------------------
 * A real server, started after the client's first attempt */

typedef struct {
    char endpoint[64];
    int delay_ms;
    server_t *server;
} late_start_t;

static void *start_late(void *arg)
{
    late_start_t *late = arg;
    zclock_sleep(late->delay_ms);
    server_config_t cfg = {.service = "late",
                           .endpoint = late->endpoint,
                           .keys_dir = keys,
                           .max_request_bytes = 4096,
                           .idempotency_ttl_s = 60};
    late->server = server_new(&cfg);
    return NULL;
}

static void test_server_started_late(void **state)
{
    (void)state;
    late_start_t late = {.delay_ms = 600};
    snprintf(late.endpoint, sizeof late.endpoint, "tcp://127.0.0.1:%d", harness_free_port());
    client_t *client = harness_client(late.endpoint, keys, "operator", 400, 6);
    assert_non_null(client);
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, start_late, &late), 0);
    Passerelle__Reply *reply = NULL;
    int rc = client_call(client, "health", NULL, NULL, &reply);
    pthread_join(thread, NULL);
    assert_non_null(late.server);
    assert_int_equal(rc, 0);
    assert_non_null(reply);
    assert_int_equal(reply->status, ST_OK);
    Passerelle__HealthReply *health =
        passerelle__health_reply__unpack(NULL, reply->body.len, reply->body.data);
    assert_non_null(health);
    assert_string_equal(health->caller_party, "OPERATOR");
    passerelle__health_reply__free_unpacked(health, NULL);
    passerelle__reply__free_unpacked(reply, NULL);
    client_destroy(&client);
    server_destroy(&late.server);
}

static void test_server_never_up(void **state)
{
    (void)state;
    char endpoint[64];
    snprintf(endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", harness_free_port());
    client_t *client = harness_client(endpoint, keys, "admin", 200, 2);
    assert_non_null(client);
    int64_t start = zclock_mono();
    Passerelle__Reply *reply = NULL;
    assert_int_equal(client_call(client, "health", NULL, NULL, &reply), -1);
    assert_null(reply);
    /* it did wait for every attempt before giving up */
    assert_true(zclock_mono() - start >= 3 * 200 - 20);
    client_destroy(&client);
}

/* ------------------------------------------------------------------------
 * A scripted plain-text server */

typedef enum {
    SCRIPT_NOISE_FIRST,      /* a foreign reply and garbage, then the reply */
    SCRIPT_UNAVAILABLE_ONCE, /* UNAVAILABLE to the first request */
    SCRIPT_UNAVAILABLE,      /* UNAVAILABLE to every request */
    SCRIPT_SILENT_ONCE,      /* no answer to the first request */
} script_t;

typedef struct {
    script_t script;
    int port;
    int requests;
    bool same_bytes; /* every attempt carried the bytes of the first */
    uint8_t first[1024];
    size_t first_len;
} scripted_t;

static void scripted_reply(zsock_t *router, zframe_t *routing, const char *request_id,
                           status_t status)
{
    size_t len = 0;
    uint8_t *bytes = envelope_encode_reply(request_id, status, "scripted", NULL, NULL, 0, &len);
    zsock_send(router, "fzb", routing, bytes, len);
    free(bytes);
}

static void scripted_actor(zsock_t *pipe, void *args)
{
    scripted_t *self = args;
    zsock_t *router = zsock_new(ZMQ_ROUTER);
    self->port = zsock_bind(router, "tcp://127.0.0.1:*");
    self->same_bytes = true;
    zsock_signal(pipe, 0);
    zpoller_t *poller = zpoller_new(pipe, router, NULL);
    while (true) {
        void *which = zpoller_wait(poller, -1);
        if (which != router)
            break; /* $TERM or interrupted */
        zmsg_t *msg = zmsg_recv(router);
        zframe_t *routing = zmsg_pop(msg);
        zframe_t *payload = zmsg_last(msg);
        int n = ++self->requests;
        if (n == 1) {
            self->first_len = zframe_size(payload) < sizeof self->first ? zframe_size(payload)
                                                                        : sizeof self->first;
            memcpy(self->first, zframe_data(payload), self->first_len);
        } else if (zframe_size(payload) != self->first_len ||
                   memcmp(zframe_data(payload), self->first, self->first_len) != 0) {
            self->same_bytes = false;
        }
        Passerelle__Request *req =
            passerelle__request__unpack(NULL, zframe_size(payload), zframe_data(payload));
        const char *id = req && req->request_id ? req->request_id : "";
        switch (self->script) {
        case SCRIPT_NOISE_FIRST:
            scripted_reply(router, routing, "Q-someone-else", ST_INTERNAL);
            zsock_send(router, "fzs", routing, "not a reply envelope \xff\xff\xff");
            scripted_reply(router, routing, id, ST_OK);
            break;
        case SCRIPT_UNAVAILABLE_ONCE:
            scripted_reply(router, routing, id, n == 1 ? ST_UNAVAILABLE : ST_OK);
            break;
        case SCRIPT_UNAVAILABLE:
            scripted_reply(router, routing, id, ST_UNAVAILABLE);
            break;
        case SCRIPT_SILENT_ONCE:
            if (n > 1)
                scripted_reply(router, routing, id, ST_OK);
            break;
        }
        passerelle__request__free_unpacked(req, NULL);
        zframe_destroy(&routing);
        zmsg_destroy(&msg);
    }
    zpoller_destroy(&poller);
    zsock_destroy(&router);
}

static client_t *plain_client(int port, int timeout_ms, int retries)
{
    char endpoint[64];
    snprintf(endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", port);
    client_config_t cfg = {
        .endpoint = endpoint, .insecure = true, .timeout_ms = timeout_ms, .retries = retries};
    char err[256];
    client_t *client = client_new(&cfg, err, sizeof err);
    assert_non_null(client);
    return client;
}

static void test_foreign_replies_dropped(void **state)
{
    (void)state;
    scripted_t script = {.script = SCRIPT_NOISE_FIRST};
    zactor_t *actor = zactor_new(scripted_actor, &script);
    client_t *client = plain_client(script.port, 1000, 0);
    Passerelle__Reply *reply = NULL;
    assert_int_equal(client_call(client, "health", NULL, NULL, &reply), 0);
    assert_int_equal(reply->status, ST_OK);
    assert_true(id_valid('Q', reply->request_id));
    passerelle__reply__free_unpacked(reply, NULL);
    /* the noise of the first call does not leak into the second */
    assert_int_equal(client_call(client, "health", NULL, NULL, &reply), 0);
    assert_int_equal(reply->status, ST_OK);
    passerelle__reply__free_unpacked(reply, NULL);
    assert_int_equal(script.requests, 2);
    client_destroy(&client);
    zactor_destroy(&actor);
}

static void test_unavailable_retried(void **state)
{
    (void)state;
    scripted_t script = {.script = SCRIPT_UNAVAILABLE_ONCE};
    zactor_t *actor = zactor_new(scripted_actor, &script);
    client_t *client = plain_client(script.port, 1000, 2);
    Passerelle__Reply *reply = NULL;
    assert_int_equal(client_call(client, "unit.register", NULL, NULL, &reply), 0);
    assert_int_equal(reply->status, ST_OK);
    passerelle__reply__free_unpacked(reply, NULL);
    assert_int_equal(script.requests, 2);
    assert_true(script.same_bytes); /* same request id, same idempotency key */
    Passerelle__Request *first = passerelle__request__unpack(NULL, script.first_len, script.first);
    assert_non_null(first);
    assert_true(id_valid('K', first->idempotency_key));
    passerelle__request__free_unpacked(first, NULL);
    client_destroy(&client);
    zactor_destroy(&actor);
}

static void test_unavailable_until_budget_spent(void **state)
{
    (void)state;
    scripted_t script = {.script = SCRIPT_UNAVAILABLE};
    zactor_t *actor = zactor_new(scripted_actor, &script);
    client_t *client = plain_client(script.port, 1000, 2);
    Passerelle__Reply *reply = NULL;
    /* the service did answer: the caller gets the UNAVAILABLE reply */
    assert_int_equal(client_call(client, "unit.register", NULL, "K-mine", &reply), 0);
    assert_int_equal(reply->status, ST_UNAVAILABLE);
    passerelle__reply__free_unpacked(reply, NULL);
    assert_int_equal(script.requests, 3);
    assert_true(script.same_bytes);
    Passerelle__Request *first = passerelle__request__unpack(NULL, script.first_len, script.first);
    assert_string_equal(first->idempotency_key, "K-mine");
    passerelle__request__free_unpacked(first, NULL);
    client_destroy(&client);
    zactor_destroy(&actor);
}

static void test_lost_reply_resent(void **state)
{
    (void)state;
    scripted_t script = {.script = SCRIPT_SILENT_ONCE};
    zactor_t *actor = zactor_new(scripted_actor, &script);
    client_t *client = plain_client(script.port, 300, 2);
    Passerelle__Reply *reply = NULL;
    assert_int_equal(client_call(client, "health", NULL, NULL, &reply), 0);
    assert_int_equal(reply->status, ST_OK);
    passerelle__reply__free_unpacked(reply, NULL);
    assert_int_equal(script.requests, 2);
    assert_true(script.same_bytes);

    /* raw calls do not retry */
    script.requests = 0;
    size_t len = 0;
    uint8_t *frame = envelope_encode_request("Q-raw", "health", NULL, NULL, &len);
    assert_int_equal(client_call_raw(client, frame, len, &reply), -1);
    assert_null(reply);
    assert_int_equal(client_call_raw(client, frame, len, &reply), 0);
    assert_string_equal(reply->request_id, "Q-raw");
    passerelle__reply__free_unpacked(reply, NULL);
    free(frame);
    client_destroy(&client);
    zactor_destroy(&actor);
}

static void test_client_new_errors(void **state)
{
    (void)state;
    char err[256] = "";
    client_config_t cfg = {.endpoint = "tcp://127.0.0.1:1"};
    assert_null(client_new(&cfg, err, sizeof err));
    assert_true(strlen(err) > 0);

    char server_public[600], missing[600];
    keydir_server_public_path(keys, server_public, sizeof server_public);
    keydir_client_cert_path(keys, "nobody", missing, sizeof missing);
    cfg.server_public_path = server_public;
    cfg.client_cert_path = missing;
    err[0] = '\0';
    assert_null(client_new(&cfg, err, sizeof err));
    assert_non_null(strstr(err, "nobody"));

    /* a public certificate is not enough to be a client */
    cfg.client_cert_path = server_public;
    char public_only[600];
    snprintf(public_only, sizeof public_only, "%s/authorized/admin.key", keys);
    cfg.client_cert_path = public_only;
    assert_null(client_new(&cfg, err, sizeof err));

    cfg.client_cert_path = NULL;
    cfg.server_public_path = NULL;
    cfg.insecure = true;
    client_t *client = client_new(&cfg, err, sizeof err);
    assert_non_null(client);
    client_destroy(&client);
    assert_null(client);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_server_started_late),
        cmocka_unit_test(test_server_never_up),
        cmocka_unit_test(test_foreign_replies_dropped),
        cmocka_unit_test(test_unavailable_retried),
        cmocka_unit_test(test_unavailable_until_budget_spent),
        cmocka_unit_test(test_lost_reply_resent),
        cmocka_unit_test(test_client_new_errors),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
