/* Error replies of the reservations service, seen from outside: a real
 * redis-server and the real passerelle-reservations binary on run-time
 * ports, CURVE clients with the keys of each party.
 *
 * Every refusal must come back with its status code and, where the design
 * says so, the field at fault or the state that forbids it; a caller the
 * service does not know gets no answer at all; and after each refusal the
 * service keeps serving. The idempotency tests prove the promise the client's
 * retries rely on: a retry with the same key returns the first reply and
 * writes nothing, and a key reused for another request is refused. */
#include "harness.h"
#include "envelope.h"
#include "identity.h"
#include "ids.h"
#include "reservations.pb-c.h"
#include "status.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

/* Small enough that a request of a few kilobytes crosses it, large enough
 * for every ordinary request. */
#define MAX_REQUEST_BYTES 4096

typedef struct {
    harness_stack_t stack; /* its client is the operator's */
    char other[600];       /* another key directory, unknown to the service */
} fixture_t;

static fixture_t fx;

/* --- requests and checks ---------------------------------------------- */

static const char *str_or_empty(const char *s)
{
    return s ? s : "";
}

/* unit.register; returns the reply (caller frees). */
static Passerelle__Reply *register_unit(client_t *client,
                                        const Passerelle__UnitRegisterRequest *req,
                                        const char *idempotency_key)
{
    Passerelle__Reply *reply = NULL;
    assert_int_equal(client_call(client, "unit.register", &req->base, idempotency_key, &reply), 0);
    return reply;
}

/* The unit in an OK reply (caller frees). */
static Passerelle__Unit *reply_unit(const Passerelle__Reply *reply)
{
    harness_expect_status(reply, ST_OK, NULL);
    assert_true(reply->has_body);
    Passerelle__Unit *unit = passerelle__unit__unpack(NULL, reply->body.len, reply->body.data);
    assert_non_null(unit);
    return unit;
}

static Passerelle__Convention *reply_convention(const Passerelle__Reply *reply)
{
    harness_expect_status(reply, ST_OK, NULL);
    assert_true(reply->has_body);
    Passerelle__Convention *convention =
        passerelle__convention__unpack(NULL, reply->body.len, reply->body.data);
    assert_non_null(convention);
    return convention;
}

/* unit.get by external reference: the reply (caller frees). */
static Passerelle__Reply *get_unit_by_ref(client_t *client, const char *external_ref)
{
    Passerelle__UnitGetRequest req = PASSERELLE__UNIT_GET_REQUEST__INIT;
    req.external_ref = (char *)external_ref;
    Passerelle__Reply *reply = NULL;
    assert_int_equal(client_call(client, "unit.get", &req.base, NULL, &reply), 0);
    return reply;
}

/* How many events of this type in the whole stream describe a unit with
 * this external reference. */
static int count_unit_events(client_t *client, const char *type, const char *external_ref)
{
    harness_events_t events;
    harness_events_read(client, "0", &events);
    int count = harness_events_count_units(&events, type, external_ref);
    harness_events_free(&events);
    return count;
}

/* How many units unit.list returns with this external reference, over
 * every page. */
static int count_listed_units(client_t *client, const char *external_ref)
{
    int count = 0;
    char token[64] = "";
    for (int pages = 0; pages < 1000; pages++) {
        Passerelle__UnitListRequest req = PASSERELLE__UNIT_LIST_REQUEST__INIT;
        req.has_page_size = 1;
        req.page_size = 500;
        req.page_token = token;
        Passerelle__Reply *reply = NULL;
        assert_int_equal(client_call(client, "unit.list", &req.base, NULL, &reply), 0);
        harness_expect_status(reply, ST_OK, NULL);
        Passerelle__UnitList *list = passerelle__unit_list__unpack(
            NULL, reply->has_body ? reply->body.len : 0, reply->body.data);
        assert_non_null(list);
        for (size_t i = 0; i < list->n_units; i++)
            if (strcmp(str_or_empty(list->units[i]->external_ref), external_ref) == 0)
                count++;
        snprintf(token, sizeof token, "%s", str_or_empty(list->next_page_token));
        passerelle__unit_list__free_unpacked(list, NULL);
        passerelle__reply__free_unpacked(reply, NULL);
        if (token[0] == '\0')
            return count;
    }
    fail_msg("unit.list never reached its last page");
    return -1;
}

/* The service still answers an ordinary request. */
static void expect_still_serving(void)
{
    Passerelle__HealthRequest req = PASSERELLE__HEALTH_REQUEST__INIT;
    Passerelle__Reply *reply = NULL;
    assert_int_equal(client_call(fx.stack.client, "health", &req.base, NULL, &reply), 0);
    harness_expect_status(reply, ST_OK, NULL);
    passerelle__reply__free_unpacked(reply, NULL);
}

/* Sends raw bytes and expects an INVALID_ARGUMENT naming field (NULL: any). */
static void expect_raw_refused(const void *frame, size_t len, const char *field)
{
    Passerelle__Reply *reply = NULL;
    assert_int_equal(client_call_raw(fx.stack.client, frame, len, &reply), 0);
    harness_expect_status(reply, ST_INVALID_ARGUMENT, field);
    passerelle__reply__free_unpacked(reply, NULL);
}

/* --- fixture ----------------------------------------------------------- */

static int group_setup(void **state)
{
    *state = &fx.stack;
    char max_env[64];
    snprintf(max_env, sizeof max_env, "PASSERELLE_MAX_REQUEST_BYTES=%d", MAX_REQUEST_BYTES);
    char *const env[] = {max_env, NULL};
    if (harness_stack_start(&fx.stack, "errors", NULL, env) != 0)
        return -1;
    snprintf(fx.other, sizeof fx.other, "%s/other-keys", fx.stack.dir);
    if (harness_keys_make(fx.other) != 0)
        return -1;
    fx.stack.client = harness_stack_client(&fx.stack, "operator", 3000, 2);
    return fx.stack.client ? 0 : -1;
}

/* --- validation -------------------------------------------------------- */

static void test_unknown_commune(void **state)
{
    (void)state;
    const char *communes[] = {"Paris", "75056", "Marseile", "13000"};
    for (size_t i = 0; i < sizeof communes / sizeof communes[0]; i++) {
        Passerelle__UnitRegisterRequest req;
        harness_unit_request(&req, "ERR-COMMUNE-1");
        req.commune = (char *)communes[i];
        Passerelle__Reply *reply = register_unit(fx.stack.client, &req, NULL);
        harness_expect_status(reply, ST_INVALID_ARGUMENT, "commune");
        passerelle__reply__free_unpacked(reply, NULL);
    }
    Passerelle__Reply *reply = get_unit_by_ref(fx.stack.client, "ERR-COMMUNE-1");
    harness_expect_status(reply, ST_NOT_FOUND, NULL);
    passerelle__reply__free_unpacked(reply, NULL);
}

static void test_marseille_needs_arrondissement(void **state)
{
    (void)state;
    const char *spellings[] = {"Marseille", "13055", "MARSEILLE"};
    for (size_t i = 0; i < sizeof spellings / sizeof spellings[0]; i++) {
        Passerelle__UnitRegisterRequest req;
        harness_unit_request(&req, "ERR-MRS-1");
        req.commune = (char *)spellings[i];
        Passerelle__Reply *reply = register_unit(fx.stack.client, &req, NULL);
        harness_expect_status(reply, ST_INVALID_ARGUMENT, "arrondissement");
        passerelle__reply__free_unpacked(reply, NULL);
    }

    /* The same unit with its arrondissement is accepted, so the refusal
     * above was about the arrondissement and nothing else. */
    Passerelle__UnitRegisterRequest req;
    harness_unit_request(&req, "ERR-MRS-1");
    req.commune = (char *)"Marseille";
    req.arrondissement = (char *)"13207";
    Passerelle__Reply *reply = register_unit(fx.stack.client, &req, NULL);
    Passerelle__Unit *unit = reply_unit(reply);
    assert_string_equal(str_or_empty(unit->arrondissement_insee), "13207");
    assert_string_equal(str_or_empty(unit->territory), "CT1");
    passerelle__unit__free_unpacked(unit, NULL);
    passerelle__reply__free_unpacked(reply, NULL);
}

/* --- state machine ----------------------------------------------------- */

static Passerelle__Reply *convention_step(const char *type, const char *id)
{
    Passerelle__ConventionStepRequest req = PASSERELLE__CONVENTION_STEP_REQUEST__INIT;
    req.id = (char *)id;
    /* Only convention.end reads it; a valid one keeps the state as the
     * only reason for a refusal. */
    if (strcmp(type, "convention.end") == 0)
        req.reason = (char *)"terminated";
    Passerelle__Reply *reply = NULL;
    assert_int_equal(client_call(fx.stack.client, type, &req.base, NULL, &reply), 0);
    return reply;
}

static void expect_forbidden_step(const char *type, const char *id, const char *state_name)
{
    Passerelle__Reply *reply = convention_step(type, id);
    harness_expect_status(reply, ST_FAILED_PRECONDITION, NULL);
    if (!strstr(str_or_empty(reply->message), state_name))
        fail_msg("%s refused without naming state %s: '%s'", type, state_name,
                 str_or_empty(reply->message));
    passerelle__reply__free_unpacked(reply, NULL);
}

static void test_forbidden_transition(void **state)
{
    (void)state;
    Passerelle__UnitRegisterRequest unit_req;
    harness_unit_request(&unit_req, "ERR-STATE-1");
    Passerelle__Reply *reply = register_unit(fx.stack.client, &unit_req, NULL);
    Passerelle__Unit *unit = reply_unit(reply);
    passerelle__reply__free_unpacked(reply, NULL);

    Passerelle__ConventionEnvisageRequest envisage = PASSERELLE__CONVENTION_ENVISAGE_REQUEST__INIT;
    envisage.unit = unit->id;
    envisage.has_level = 1;
    envisage.level = PASSERELLE__CONVENTION_LEVEL__LEVEL_LOC2;
    assert_int_equal(
        client_call(fx.stack.client, "convention.envisage", &envisage.base, NULL, &reply), 0);
    Passerelle__Convention *convention = reply_convention(reply);
    passerelle__reply__free_unpacked(reply, NULL);
    char id[ID_LEN + 8];
    snprintf(id, sizeof id, "%s", str_or_empty(convention->id));
    assert_int_equal(convention->state, PASSERELLE__CONVENTION_STATE__CONVENTION_ENVISAGED);
    passerelle__convention__free_unpacked(convention, NULL);

    /* A lease cannot come before the signature; an envisaged convention
     * cannot be ended. */
    expect_forbidden_step("convention.in_force", id, "ENVISAGED");
    expect_forbidden_step("convention.end", id, "ENVISAGED");

    /* A second live convention on the same unit is refused as well. */
    assert_int_equal(
        client_call(fx.stack.client, "convention.envisage", &envisage.base, NULL, &reply), 0);
    harness_expect_status(reply, ST_FAILED_PRECONDITION, NULL);
    passerelle__reply__free_unpacked(reply, NULL);

    reply = convention_step("convention.abandon", id);
    convention = reply_convention(reply);
    assert_int_equal(convention->state, PASSERELLE__CONVENTION_STATE__CONVENTION_ABANDONED);
    passerelle__convention__free_unpacked(convention, NULL);
    passerelle__reply__free_unpacked(reply, NULL);

    /* Abandoned is final. */
    expect_forbidden_step("convention.sign", id, "ABANDONED");
    expect_forbidden_step("convention.abandon", id, "ABANDONED");

    /* Nothing the refusals touched changed the record. */
    Passerelle__ConventionGetRequest get = PASSERELLE__CONVENTION_GET_REQUEST__INIT;
    get.id = id;
    assert_int_equal(client_call(fx.stack.client, "convention.get", &get.base, NULL, &reply), 0);
    convention = reply_convention(reply);
    assert_int_equal(convention->state, PASSERELLE__CONVENTION_STATE__CONVENTION_ABANDONED);
    assert_null(convention->signed_on);
    passerelle__convention__free_unpacked(convention, NULL);
    passerelle__reply__free_unpacked(reply, NULL);
    passerelle__unit__free_unpacked(unit, NULL);
}

/* --- identity and roles ------------------------------------------------ */

static void test_unknown_curve_key(void **state)
{
    (void)state;
    /* The service's real public key, but a client certificate made in
     * another key directory: the handshake itself must fail. */
    char server_public[600], stranger_cert[600];
    keydir_server_public_path(fx.stack.keys, server_public, sizeof server_public);
    keydir_client_cert_path(fx.other, "metropole", stranger_cert, sizeof stranger_cert);
    client_config_t cfg = {
        .endpoint = fx.stack.service.endpoint,
        .server_public_path = server_public,
        .client_cert_path = stranger_cert,
        .timeout_ms = 500,
        .retries = 1,
    };
    char err[256] = "";
    client_t *stranger = client_new(&cfg, err, sizeof err);
    if (!stranger)
        fail_msg("client_new: %s", err);

    Passerelle__HealthRequest health = PASSERELLE__HEALTH_REQUEST__INIT;
    Passerelle__Reply *reply = NULL;
    assert_int_equal(client_call(stranger, "health", &health.base, NULL, &reply), -1);
    assert_null(reply);

    Passerelle__UnitRegisterRequest req;
    harness_unit_request(&req, "ERR-STRANGER-1");
    assert_int_equal(client_call(stranger, "unit.register", &req.base, NULL, &reply), -1);
    assert_null(reply);
    assert_int_equal(client_call_raw(stranger, "x", 1, &reply), -1);
    assert_null(reply);
    client_destroy(&stranger);
    assert_null(stranger);

    expect_still_serving();
    reply = get_unit_by_ref(fx.stack.client, "ERR-STRANGER-1");
    harness_expect_status(reply, ST_NOT_FOUND, NULL);
    passerelle__reply__free_unpacked(reply, NULL);
}

static void test_wrong_role(void **state)
{
    (void)state;
    client_t *partner = harness_stack_client(&fx.stack, "partner", 3000, 0);
    assert_non_null(partner);

    Passerelle__UnitRegisterRequest req;
    harness_unit_request(&req, "ERR-ROLE-1");
    Passerelle__Reply *reply = register_unit(partner, &req, NULL);
    harness_expect_status(reply, ST_PERMISSION_DENIED, NULL);
    passerelle__reply__free_unpacked(reply, NULL);

    /* Partners do not read the register either, but may ask for health,
     * which proves the key itself is known. */
    reply = get_unit_by_ref(partner, "ERR-ROLE-1");
    harness_expect_status(reply, ST_PERMISSION_DENIED, NULL);
    passerelle__reply__free_unpacked(reply, NULL);
    Passerelle__HealthRequest health = PASSERELLE__HEALTH_REQUEST__INIT;
    assert_int_equal(client_call(partner, "health", &health.base, NULL, &reply), 0);
    harness_expect_status(reply, ST_OK, NULL);
    Passerelle__HealthReply *who = passerelle__health_reply__unpack(
        NULL, reply->has_body ? reply->body.len : 0, reply->body.data);
    assert_non_null(who);
    assert_string_equal(str_or_empty(who->caller_party), "PARTNER");
    passerelle__health_reply__free_unpacked(who, NULL);
    passerelle__reply__free_unpacked(reply, NULL);
    client_destroy(&partner);

    /* Action Logement reads the register but does not keep it. */
    client_t *al = harness_stack_client(&fx.stack, "action_logement", 3000, 0);
    assert_non_null(al);
    reply = register_unit(al, &req, NULL);
    harness_expect_status(reply, ST_PERMISSION_DENIED, NULL);
    passerelle__reply__free_unpacked(reply, NULL);
    reply = get_unit_by_ref(al, "ERR-ROLE-1");
    harness_expect_status(reply, ST_NOT_FOUND, NULL);
    passerelle__reply__free_unpacked(reply, NULL);
    client_destroy(&al);
}

/* --- frames ------------------------------------------------------------ */

static void test_oversized_frame(void **state)
{
    (void)state;
    /* A well-formed request whose only fault is its size. */
    char address[3 * MAX_REQUEST_BYTES / 2];
    memset(address, 'a', sizeof address - 1);
    address[sizeof address - 1] = '\0';
    Passerelle__UnitRegisterRequest req;
    harness_unit_request(&req, "ERR-BIG-1");
    req.address = address;
    char key[ID_LEN];
    id_new('K', key);
    size_t len = 0;
    uint8_t *frame = envelope_encode_request("Q-oversized", "unit.register", key, &req.base, &len);
    assert_non_null(frame);
    assert_true(len > MAX_REQUEST_BYTES);
    expect_raw_refused(frame, len, "frame");
    free(frame);

    /* Garbage of that size is refused for its size before anything else. */
    uint8_t *junk = malloc(2 * MAX_REQUEST_BYTES);
    assert_non_null(junk);
    memset(junk, 0xff, 2 * MAX_REQUEST_BYTES);
    expect_raw_refused(junk, 2 * MAX_REQUEST_BYTES, "frame");
    free(junk);

    /* Nothing was written, and an ordinary request still works. */
    Passerelle__Reply *reply = get_unit_by_ref(fx.stack.client, "ERR-BIG-1");
    harness_expect_status(reply, ST_NOT_FOUND, NULL);
    passerelle__reply__free_unpacked(reply, NULL);
    harness_unit_request(&req, "ERR-BIG-2");
    reply = register_unit(fx.stack.client, &req, NULL);
    Passerelle__Unit *unit = reply_unit(reply);
    assert_string_equal(str_or_empty(unit->external_ref), "ERR-BIG-2");
    passerelle__unit__free_unpacked(unit, NULL);
    passerelle__reply__free_unpacked(reply, NULL);
}

static void test_malformed_frame(void **state)
{
    (void)state;
    /* A varint that never ends, a length beyond the end, a wire type that
     * does not exist, a string field that is not UTF-8. */
    static const uint8_t endless_varint[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                             0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    static const uint8_t truncated[] = {0x12, 0x40, 'u', 'n', 'i', 't'};
    static const uint8_t bad_wire_type[] = {0x17, 0x01, 0x02};
    static const uint8_t not_utf8[] = {0x12, 0x03, 0xc3, 0x28, 0xff};
    expect_raw_refused(endless_varint, sizeof endless_varint, NULL);
    expect_raw_refused(truncated, sizeof truncated, NULL);
    expect_raw_refused(bad_wire_type, sizeof bad_wire_type, NULL);
    expect_raw_refused(not_utf8, sizeof not_utf8, NULL);
    expect_still_serving();

    /* A sound envelope whose body is not the message its type names. */
    static uint8_t bad_body[] = {0x0a, 0x7f, 'x'};
    Passerelle__Request request = PASSERELLE__REQUEST__INIT;
    request.request_id = (char *)"Q-bad-body";
    request.type = (char *)"unit.register";
    request.idempotency_key = (char *)"K-bad-body";
    request.has_body = 1;
    request.body.data = bad_body;
    request.body.len = sizeof bad_body;
    uint8_t packed[256];
    size_t len = passerelle__request__pack(&request, packed);
    expect_raw_refused(packed, len, "body");

    /* An envelope without a type. */
    passerelle__request__init(&request);
    request.request_id = (char *)"Q-no-type";
    len = passerelle__request__pack(&request, packed);
    expect_raw_refused(packed, len, "type");
    expect_still_serving();
}

static void test_unknown_request_type(void **state)
{
    (void)state;
    const char *types[] = {"unit.delete", "UNIT.REGISTER", "unit.register.", "$TERM"};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        Passerelle__Reply *reply = NULL;
        assert_int_equal(client_call(fx.stack.client, types[i], NULL, NULL, &reply), 0);
        harness_expect_status(reply, ST_INVALID_ARGUMENT, "type");
        passerelle__reply__free_unpacked(reply, NULL);
    }
    expect_still_serving();
}

/* --- idempotency ------------------------------------------------------- */

static void test_write_without_idempotency_key(void **state)
{
    (void)state;
    Passerelle__UnitRegisterRequest req;
    harness_unit_request(&req, "ERR-NOKEY-1");
    size_t len = 0;
    uint8_t *frame = envelope_encode_request("Q-no-key", "unit.register", NULL, &req.base, &len);
    assert_non_null(frame);
    expect_raw_refused(frame, len, "idempotency_key");
    free(frame);

    /* An empty key is no key. */
    frame = envelope_encode_request("Q-empty-key", "unit.register", "", &req.base, &len);
    assert_non_null(frame);
    expect_raw_refused(frame, len, "idempotency_key");
    free(frame);

    Passerelle__Reply *reply = get_unit_by_ref(fx.stack.client, "ERR-NOKEY-1");
    harness_expect_status(reply, ST_NOT_FOUND, NULL);
    passerelle__reply__free_unpacked(reply, NULL);
    assert_int_equal(count_unit_events(fx.stack.client, "unit.registered", "ERR-NOKEY-1"), 0);
}

static void test_idempotent_retry(void **state)
{
    (void)state;
    char key[ID_LEN];
    id_new('K', key);
    Passerelle__UnitRegisterRequest req;
    harness_unit_request(&req, "ERR-IDEM-1");

    Passerelle__Reply *first = register_unit(fx.stack.client, &req, key);
    Passerelle__Unit *unit = reply_unit(first);
    char id[ID_LEN + 8];
    snprintf(id, sizeof id, "%s", str_or_empty(unit->id));
    assert_true(id_valid('U', id));
    passerelle__unit__free_unpacked(unit, NULL);

    /* The retry comes from a fresh client with the same certificate, as
     * when a CLI run is repeated. */
    client_t *again = harness_stack_client(&fx.stack, "operator", 3000, 0);
    assert_non_null(again);
    for (int i = 0; i < 3; i++) {
        Passerelle__Reply *retry = register_unit(i == 0 ? again : fx.stack.client, &req, key);
        unit = reply_unit(retry);
        assert_string_equal(str_or_empty(unit->id), id);
        assert_string_equal(str_or_empty(unit->external_ref), "ERR-IDEM-1");
        /* The first reply itself, not a new one. */
        assert_int_equal(retry->body.len, first->body.len);
        assert_memory_equal(retry->body.data, first->body.data, first->body.len);
        passerelle__unit__free_unpacked(unit, NULL);
        passerelle__reply__free_unpacked(retry, NULL);
    }
    client_destroy(&again);
    passerelle__reply__free_unpacked(first, NULL);

    assert_int_equal(count_unit_events(fx.stack.client, "unit.registered", "ERR-IDEM-1"), 1);
    assert_int_equal(count_listed_units(fx.stack.client, "ERR-IDEM-1"), 1);
    Passerelle__Reply *reply = get_unit_by_ref(fx.stack.client, "ERR-IDEM-1");
    unit = reply_unit(reply);
    assert_string_equal(str_or_empty(unit->id), id);
    assert_int_equal(unit->version, 1);
    passerelle__unit__free_unpacked(unit, NULL);
    passerelle__reply__free_unpacked(reply, NULL);
}

static void test_idempotency_key_reused(void **state)
{
    (void)state;
    char key[ID_LEN];
    id_new('K', key);
    Passerelle__UnitRegisterRequest req;
    harness_unit_request(&req, "ERR-REUSE-1");
    Passerelle__Reply *reply = register_unit(fx.stack.client, &req, key);
    Passerelle__Unit *unit = reply_unit(reply);
    passerelle__unit__free_unpacked(unit, NULL);
    passerelle__reply__free_unpacked(reply, NULL);

    /* The same key with another body: another unit, and a changed field
     * of the same unit. */
    harness_unit_request(&req, "ERR-REUSE-2");
    reply = register_unit(fx.stack.client, &req, key);
    harness_expect_status(reply, ST_INVALID_ARGUMENT, "idempotency_key");
    passerelle__reply__free_unpacked(reply, NULL);
    harness_unit_request(&req, "ERR-REUSE-1");
    req.surface_m2 = 80;
    reply = register_unit(fx.stack.client, &req, key);
    harness_expect_status(reply, ST_INVALID_ARGUMENT, "idempotency_key");
    passerelle__reply__free_unpacked(reply, NULL);

    /* The same key for another request type. */
    Passerelle__ConventionStepRequest step = PASSERELLE__CONVENTION_STEP_REQUEST__INIT;
    step.id = (char *)"C01JDV0000000000000000000";
    assert_int_equal(client_call(fx.stack.client, "convention.abandon", &step.base, key, &reply),
                     0);
    harness_expect_status(reply, ST_INVALID_ARGUMENT, "idempotency_key");
    passerelle__reply__free_unpacked(reply, NULL);

    reply = get_unit_by_ref(fx.stack.client, "ERR-REUSE-2");
    harness_expect_status(reply, ST_NOT_FOUND, NULL);
    passerelle__reply__free_unpacked(reply, NULL);
    reply = get_unit_by_ref(fx.stack.client, "ERR-REUSE-1");
    unit = reply_unit(reply);
    assert_true(unit->surface_m2 == 62.5);
    assert_int_equal(unit->version, 1);
    passerelle__unit__free_unpacked(unit, NULL);
    passerelle__reply__free_unpacked(reply, NULL);
    assert_int_equal(count_unit_events(fx.stack.client, "unit.registered", "ERR-REUSE-1"), 1);
    assert_int_equal(count_unit_events(fx.stack.client, "unit.registered", "ERR-REUSE-2"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unknown_commune),
        cmocka_unit_test(test_marseille_needs_arrondissement),
        cmocka_unit_test(test_forbidden_transition),
        cmocka_unit_test(test_unknown_curve_key),
        cmocka_unit_test(test_wrong_role),
        cmocka_unit_test(test_oversized_frame),
        cmocka_unit_test(test_malformed_frame),
        cmocka_unit_test(test_unknown_request_type),
        cmocka_unit_test(test_write_without_idempotency_key),
        cmocka_unit_test(test_idempotent_retry),
        cmocka_unit_test(test_idempotency_key_reused),
    };
    return cmocka_run_group_tests(tests, group_setup, harness_stack_teardown);
}
