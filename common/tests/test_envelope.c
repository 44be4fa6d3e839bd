/* Envelope codec: round trips, and every way a request frame can be bad. */
#include "envelope.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static Passerelle__Request *decode(const uint8_t *data, size_t len, size_t max, status_t *status,
                                   char *field, char *message)
{
    return envelope_decode_request(data, len, max, status, field, message);
}

static void test_request_round_trip(void **state)
{
    (void)state;
    Passerelle__HealthReply body = PASSERELLE__HEALTH_REPLY__INIT;
    body.service = "reservations";
    body.has_uptime_s = 1;
    body.uptime_s = 42;
    size_t len = 0;
    uint8_t *frame = envelope_encode_request("Q1", "unit.register", "K1", &body.base, &len);
    assert_non_null(frame);

    status_t status;
    char field[32], message[256];
    Passerelle__Request *req = decode(frame, len, 1024, &status, field, message);
    assert_non_null(req);
    assert_int_equal(status, ST_OK);
    assert_string_equal(req->request_id, "Q1");
    assert_string_equal(req->type, "unit.register");
    assert_string_equal(req->idempotency_key, "K1");
    assert_true(req->has_body);
    Passerelle__HealthReply *inner =
        passerelle__health_reply__unpack(NULL, req->body.len, req->body.data);
    assert_non_null(inner);
    assert_string_equal(inner->service, "reservations");
    assert_int_equal(inner->uptime_s, 42);
    passerelle__health_reply__free_unpacked(inner, NULL);
    passerelle__request__free_unpacked(req, NULL);
    free(frame);
}

static void test_request_without_body_or_key(void **state)
{
    (void)state;
    size_t len = 0;
    uint8_t *frame = envelope_encode_request("Q2", "health", NULL, NULL, &len);
    assert_non_null(frame);
    status_t status;
    char field[32], message[256];
    Passerelle__Request *req = decode(frame, len, 1024, &status, field, message);
    assert_non_null(req);
    assert_null(req->idempotency_key);
    assert_false(req->has_body);
    passerelle__request__free_unpacked(req, NULL);
    free(frame);
}

static void test_reply_round_trip_and_rebrand(void **state)
{
    (void)state;
    const uint8_t body[] = {1, 2, 3, 0, 255};
    size_t len = 0;
    uint8_t *frame = envelope_encode_reply("Q1", ST_CONFLICT, "held by reservation R1", "unit_id",
                                           body, sizeof body, &len);
    assert_non_null(frame);
    Passerelle__Reply *reply = passerelle__reply__unpack(NULL, len, frame);
    assert_non_null(reply);
    assert_string_equal(reply->request_id, "Q1");
    assert_true(reply->has_status);
    assert_int_equal(reply->status, ST_CONFLICT);
    assert_string_equal(reply->message, "held by reservation R1");
    assert_string_equal(reply->field, "unit_id");
    assert_int_equal(reply->body.len, sizeof body);
    assert_memory_equal(reply->body.data, body, sizeof body);
    passerelle__reply__free_unpacked(reply, NULL);

    size_t len2 = 0;
    uint8_t *again = envelope_rebrand_reply(frame, len, "Q9", &len2);
    assert_non_null(again);
    reply = passerelle__reply__unpack(NULL, len2, again);
    assert_non_null(reply);
    assert_string_equal(reply->request_id, "Q9");
    assert_int_equal(reply->status, ST_CONFLICT);
    assert_string_equal(reply->message, "held by reservation R1");
    assert_memory_equal(reply->body.data, body, sizeof body);
    passerelle__reply__free_unpacked(reply, NULL);
    free(again);
    free(frame);
}

static void test_reply_ok_is_explicit(void **state)
{
    (void)state;
    size_t len = 0;
    uint8_t *frame = envelope_encode_reply("Q1", ST_OK, NULL, NULL, NULL, 0, &len);
    Passerelle__Reply *reply = passerelle__reply__unpack(NULL, len, frame);
    assert_non_null(reply);
    assert_true(reply->has_status);
    assert_int_equal(reply->status, ST_OK);
    assert_null(reply->message);
    assert_null(reply->field);
    assert_false(reply->has_body);
    passerelle__reply__free_unpacked(reply, NULL);
    free(frame);
}

static void test_rebrand_garbage(void **state)
{
    (void)state;
    const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
    size_t len = 0;
    assert_null(envelope_rebrand_reply(garbage, sizeof garbage, "Q1", &len));
}

static void test_garbage_bytes(void **state)
{
    (void)state;
    status_t status;
    char field[32], message[256];
    const uint8_t samples[][6] = {
        {0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, /* varint never ends */
        {0x12, 0x7f, 'a', 'b', 0, 0},         /* type longer than the frame */
        {0x0f, 0x01, 0x02, 0x03, 0x04, 0x05}, /* wire type 7 does not exist */
    };
    for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++) {
        Passerelle__Request *req = decode(samples[i], 6, 1024, &status, field, message);
        assert_null(req);
        assert_int_equal(status, ST_INVALID_ARGUMENT);
        assert_string_equal(field, "frame");
        assert_true(strlen(message) > 0);
    }
    /* random bytes: never a crash, and a result always says something */
    srand(7);
    uint8_t buf[64];
    for (int round = 0; round < 2000; round++) {
        size_t len = (size_t)(rand() % (int)sizeof buf);
        for (size_t i = 0; i < len; i++)
            buf[i] = (uint8_t)rand();
        Passerelle__Request *req = decode(buf, len, 1024, &status, field, message);
        if (req) {
            assert_int_equal(status, ST_OK);
            assert_non_null(req->type);
            passerelle__request__free_unpacked(req, NULL);
        } else {
            assert_int_equal(status, ST_INVALID_ARGUMENT);
            assert_true(strcmp(field, "frame") == 0 || strcmp(field, "type") == 0);
        }
    }
}

static void test_oversized(void **state)
{
    (void)state;
    size_t len = 0;
    uint8_t *frame = envelope_encode_request("Q1", "health", NULL, NULL, &len);
    status_t status;
    char field[32], message[256];
    Passerelle__Request *req = decode(frame, len, len - 1, &status, field, message);
    assert_null(req);
    assert_int_equal(status, ST_INVALID_ARGUMENT);
    assert_string_equal(field, "frame");
    assert_non_null(strstr(message, "limit"));
    req = decode(frame, len, len, &status, field, message);
    assert_non_null(req);
    passerelle__request__free_unpacked(req, NULL);
    free(frame);
}

static void test_missing_or_bad_type(void **state)
{
    (void)state;
    status_t status;
    char field[32], message[256];
    Passerelle__Request raw = PASSERELLE__REQUEST__INIT;
    raw.request_id = "Q1";
    uint8_t buf[256];
    size_t len = passerelle__request__pack(&raw, buf);
    assert_null(decode(buf, len, sizeof buf, &status, field, message));
    assert_int_equal(status, ST_INVALID_ARGUMENT);
    assert_string_equal(field, "type");

    raw.type = "";
    len = passerelle__request__pack(&raw, buf);
    assert_null(decode(buf, len, sizeof buf, &status, field, message));
    assert_string_equal(field, "type");

    raw.type = "unit register";
    len = passerelle__request__pack(&raw, buf);
    assert_null(decode(buf, len, sizeof buf, &status, field, message));
    assert_string_equal(field, "type");

    raw.type = "unit.\x01";
    len = passerelle__request__pack(&raw, buf);
    assert_null(decode(buf, len, sizeof buf, &status, field, message));
    assert_string_equal(field, "type");

    /* empty frame: decodes to an envelope with nothing, so no type */
    assert_null(decode(buf, 0, sizeof buf, &status, field, message));
    assert_string_equal(field, "type");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_round_trip),
        cmocka_unit_test(test_request_without_body_or_key),
        cmocka_unit_test(test_reply_round_trip_and_rebrand),
        cmocka_unit_test(test_reply_ok_is_explicit),
        cmocka_unit_test(test_rebrand_garbage),
        cmocka_unit_test(test_garbage_bytes),
        cmocka_unit_test(test_oversized),
        cmocka_unit_test(test_missing_or_bad_type),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
