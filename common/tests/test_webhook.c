/* Webhook signatures: the Standard Webhooks specification's published test
 * vector (standard-webhooks/standard-webhooks, libraries/go/webhook_test.go,
 * TestWebhookSign), agreement with OpenSSL's HMAC for every key length a
 * secret may have, signing with two secrets while one is rotated, and every
 * refusal a receiver must make. */
#include "webhook.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The specification's vector; its key is 24 bytes. (HMAC pads a short key
 * with zeros, so it is the longer keys below, cut to 32 bytes by a careless
 * signer, that prove keys are used at their real length.) */
#define SPEC_SECRET    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define SPEC_ID        "msg_p5jXN8AQM9LWM0D4loKWxJek"
#define SPEC_TIMESTAMP 1614265330
#define SPEC_BODY      "{\"test\": 2432232314}"
#define SPEC_SIGNATURE "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
/* A well-formed v1 signature of something else, from the same test file. */
#define OTHER_SIGNATURE "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="

#define TOLERANCE_S 300

static webhook_verify_t verify_spec(const char *secret, const char *header, int64_t now_s)
{
    return webhook_verify(secret, SPEC_ID, "1614265330", SPEC_BODY, strlen(SPEC_BODY), header,
                          now_s, TOLERANCE_S);
}

/* "whsec_" + base64 of len bytes of value fill. */
static void secret_of(size_t len, unsigned char fill, char out[WEBHOOK_SECRET_MAX])
{
    unsigned char key[80];
    assert_true(len <= sizeof key);
    memset(key, fill, len);
    strcpy(out, WEBHOOK_SECRET_PREFIX);
    sodium_bin2base64(out + strlen(out), WEBHOOK_SECRET_MAX - strlen(out), key, len,
                      sodium_base64_VARIANT_ORIGINAL);
}

/* --------------------------------------------------------------------------
 * Signing
 * -------------------------------------------------------------------------- */

static void test_specification_vector(void **state)
{
    (void)state;
    char signature[WEBHOOK_SIGNATURE_MAX];
    assert_true(webhook_sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY, strlen(SPEC_BODY),
                             signature));
    assert_string_equal(signature, SPEC_SIGNATURE);

    assert_int_equal(verify_spec(SPEC_SECRET, SPEC_SIGNATURE, SPEC_TIMESTAMP), WEBHOOK_VERIFIED);
    assert_int_equal(verify_spec(SPEC_SECRET, OTHER_SIGNATURE, SPEC_TIMESTAMP), WEBHOOK_NO_MATCH);
    /* The specification's multi-signature case: other versions and other
     * signatures around the right one. */
    assert_int_equal(verify_spec(SPEC_SECRET,
                                 OTHER_SIGNATURE
                                 " v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= " SPEC_SIGNATURE
                                 " " OTHER_SIGNATURE,
                                 SPEC_TIMESTAMP),
                     WEBHOOK_VERIFIED);
    /* The right base64 under another version is not a v1 signature. */
    assert_int_equal(
        verify_spec(SPEC_SECRET, "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", SPEC_TIMESTAMP),
        WEBHOOK_NO_MATCH);
}

/* An independent HMAC-SHA256 (OpenSSL) agrees for every key length a secret
 * may have, so keys are used at their real length, whatever it is. */
static void test_agrees_with_openssl_for_every_key_length(void **state)
{
    (void)state;
    const char *body = "{\"type\":\"convention.envisaged\"}";
    for (size_t key_len = 16; key_len <= 64; key_len++) {
        unsigned char key[64];
        randombytes_buf(key, key_len);
        char secret[WEBHOOK_SECRET_MAX] = WEBHOOK_SECRET_PREFIX;
        sodium_bin2base64(secret + strlen(secret), sizeof secret - strlen(secret), key, key_len,
                          sodium_base64_VARIANT_ORIGINAL);
        assert_true(webhook_secret_valid(secret));

        char signed_text[128];
        int n = snprintf(signed_text, sizeof signed_text, "msg_%zu.1700000000.%s", key_len, body);
        assert_true(n > 0 && (size_t)n < sizeof signed_text);
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned int mac_len = 0;
        assert_non_null(HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)signed_text,
                             (size_t)n, mac, &mac_len));
        assert_int_equal(mac_len, 32);
        char want[WEBHOOK_SIGNATURE_MAX] = "v1,";
        sodium_bin2base64(want + 3, sizeof want - 3, mac, mac_len, sodium_base64_VARIANT_ORIGINAL);

        char id[32];
        snprintf(id, sizeof id, "msg_%zu", key_len);
        char got[WEBHOOK_SIGNATURE_MAX];
        assert_true(webhook_sign(secret, id, 1700000000, body, strlen(body), got));
        assert_string_equal(got, want);
        assert_int_equal(webhook_verify(secret, id, "1700000000", body, strlen(body), got,
                                        1700000000, TOLERANCE_S),
                         WEBHOOK_VERIFIED);
    }
}

static void test_empty_body(void **state)
{
    (void)state;
    char a[WEBHOOK_SIGNATURE_MAX], b[WEBHOOK_SIGNATURE_MAX];
    assert_true(webhook_sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, NULL, 0, a));
    assert_true(webhook_sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, "", 0, b));
    assert_string_equal(a, b);
    assert_int_equal(
        webhook_verify(SPEC_SECRET, SPEC_ID, "1614265330", NULL, 0, a, SPEC_TIMESTAMP, TOLERANCE_S),
        WEBHOOK_VERIFIED);
    assert_false(webhook_sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, NULL, 3, a));
    assert_false(webhook_sign(SPEC_SECRET, NULL, SPEC_TIMESTAMP, "", 0, a));
}

/* --------------------------------------------------------------------------
 * Rotation: two secrets, two signatures
 * -------------------------------------------------------------------------- */

static void test_two_secrets_two_signatures(void **state)
{
    (void)state;
    char old_secret[WEBHOOK_SECRET_MAX], new_secret[WEBHOOK_SECRET_MAX];
    char stranger[WEBHOOK_SECRET_MAX];
    webhook_secret_new(old_secret);
    webhook_secret_new(new_secret);
    webhook_secret_new(stranger);
    const char *body = "{\"id\":\"E1\"}";
    const char *secrets[] = {old_secret, NULL, "", new_secret};

    char header[256];
    assert_true(webhook_signature_header(secrets, 4, "msg_1", 1700000000, body, strlen(body),
                                         header, sizeof header));
    char old_sig[WEBHOOK_SIGNATURE_MAX], new_sig[WEBHOOK_SIGNATURE_MAX];
    assert_true(webhook_sign(old_secret, "msg_1", 1700000000, body, strlen(body), old_sig));
    assert_true(webhook_sign(new_secret, "msg_1", 1700000000, body, strlen(body), new_sig));
    assert_string_not_equal(old_sig, new_sig);
    char want[256];
    snprintf(want, sizeof want, "%s %s", old_sig, new_sig);
    assert_string_equal(header, want);

    /* A receiver holding either secret accepts; one holding neither does
     * not. */
    assert_int_equal(webhook_verify(old_secret, "msg_1", "1700000000", body, strlen(body), header,
                                    1700000000, TOLERANCE_S),
                     WEBHOOK_VERIFIED);
    assert_int_equal(webhook_verify(new_secret, "msg_1", "1700000000", body, strlen(body), header,
                                    1700000000, TOLERANCE_S),
                     WEBHOOK_VERIFIED);
    assert_int_equal(webhook_verify(stranger, "msg_1", "1700000000", body, strlen(body), header,
                                    1700000000, TOLERANCE_S),
                     WEBHOOK_NO_MATCH);

    /* Exactly the room needed is enough; one byte less is not, and then
     * nothing half-written is left. */
    size_t need = strlen(want) + 1;
    char tight[256];
    assert_true(
        webhook_signature_header(secrets, 4, "msg_1", 1700000000, body, strlen(body), tight, need));
    assert_string_equal(tight, want);
    assert_false(webhook_signature_header(secrets, 4, "msg_1", 1700000000, body, strlen(body),
                                          tight, need - 1));
    assert_string_equal(tight, "");

    /* No secret, or an invalid one among good ones: refused. */
    const char *none[] = {NULL, ""};
    assert_false(webhook_signature_header(none, 2, "msg_1", 1700000000, body, strlen(body), header,
                                          sizeof header));
    assert_false(webhook_signature_header(secrets, 0, "msg_1", 1700000000, body, strlen(body),
                                          header, sizeof header));
    const char *bad[] = {old_secret, "whsec_notbase64!"};
    assert_false(webhook_signature_header(bad, 2, "msg_1", 1700000000, body, strlen(body), header,
                                          sizeof header));
    assert_false(webhook_signature_header(NULL, 1, "msg_1", 1700000000, body, strlen(body), header,
                                          sizeof header));
}

/* --------------------------------------------------------------------------
 * Refusals
 * -------------------------------------------------------------------------- */

static void test_tampering_refused(void **state)
{
    (void)state;
    const char *body = SPEC_BODY;
    size_t len = strlen(body);
    /* A changed body, id or timestamp each breaks the signature (the
     * timestamp stays within tolerance, so it is the signature that
     * refuses it). */
    assert_int_equal(webhook_verify(SPEC_SECRET, SPEC_ID, "1614265330", "{\"test\": 2432232315}",
                                    len, SPEC_SIGNATURE, SPEC_TIMESTAMP, TOLERANCE_S),
                     WEBHOOK_NO_MATCH);
    assert_int_equal(webhook_verify(SPEC_SECRET, SPEC_ID, "1614265330", body, len - 1,
                                    SPEC_SIGNATURE, SPEC_TIMESTAMP, TOLERANCE_S),
                     WEBHOOK_NO_MATCH);
    assert_int_equal(webhook_verify(SPEC_SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJel", "1614265330", body,
                                    len, SPEC_SIGNATURE, SPEC_TIMESTAMP, TOLERANCE_S),
                     WEBHOOK_NO_MATCH);
    assert_int_equal(webhook_verify(SPEC_SECRET, SPEC_ID, "1614265331", body, len, SPEC_SIGNATURE,
                                    SPEC_TIMESTAMP, TOLERANCE_S),
                     WEBHOOK_NO_MATCH);
    /* A signature one character off, or cut short. */
    assert_int_equal(
        verify_spec(SPEC_SECRET, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OF=", SPEC_TIMESTAMP),
        WEBHOOK_NO_MATCH);
    assert_int_equal(
        verify_spec(SPEC_SECRET, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ", SPEC_TIMESTAMP),
        WEBHOOK_NO_MATCH);
    /* Undecodable entries are skipped, not fatal, when a good one is there. */
    assert_int_equal(verify_spec(SPEC_SECRET, "v1,!!!! v1,==== " SPEC_SIGNATURE, SPEC_TIMESTAMP),
                     WEBHOOK_VERIFIED);
    /* The wrong secret. */
    char other[WEBHOOK_SECRET_MAX];
    secret_of(24, 7, other);
    assert_int_equal(verify_spec(other, SPEC_SIGNATURE, SPEC_TIMESTAMP), WEBHOOK_NO_MATCH);
}

static void test_stale_timestamp_refused(void **state)
{
    (void)state;
    /* Five minutes either side is accepted, a second more is not. */
    assert_int_equal(verify_spec(SPEC_SECRET, SPEC_SIGNATURE, SPEC_TIMESTAMP + TOLERANCE_S),
                     WEBHOOK_VERIFIED);
    assert_int_equal(verify_spec(SPEC_SECRET, SPEC_SIGNATURE, SPEC_TIMESTAMP - TOLERANCE_S),
                     WEBHOOK_VERIFIED);
    assert_int_equal(verify_spec(SPEC_SECRET, SPEC_SIGNATURE, SPEC_TIMESTAMP + TOLERANCE_S + 1),
                     WEBHOOK_STALE);
    assert_int_equal(verify_spec(SPEC_SECRET, SPEC_SIGNATURE, SPEC_TIMESTAMP - TOLERANCE_S - 1),
                     WEBHOOK_STALE);
    /* Today's clock against the 2021 vector. */
    assert_int_equal(verify_spec(SPEC_SECRET, SPEC_SIGNATURE, 1770000000), WEBHOOK_STALE);
    /* A stale message is refused even with a wrong signature: replay
     * protection does not depend on who signed. */
    assert_int_equal(verify_spec(SPEC_SECRET, OTHER_SIGNATURE, 1770000000), WEBHOOK_STALE);
    /* A negative tolerance skips the check; the signature still counts. */
    assert_int_equal(webhook_verify(SPEC_SECRET, SPEC_ID, "1614265330", SPEC_BODY,
                                    strlen(SPEC_BODY), SPEC_SIGNATURE, 1770000000, -1),
                     WEBHOOK_VERIFIED);
    assert_int_equal(webhook_verify(SPEC_SECRET, SPEC_ID, "1614265330", SPEC_BODY,
                                    strlen(SPEC_BODY), OTHER_SIGNATURE, 1770000000, -1),
                     WEBHOOK_NO_MATCH);
    /* Extreme clocks do not overflow the distance. */
    assert_int_equal(verify_spec(SPEC_SECRET, SPEC_SIGNATURE, INT64_MIN), WEBHOOK_STALE);
    assert_int_equal(verify_spec(SPEC_SECRET, SPEC_SIGNATURE, INT64_MAX), WEBHOOK_STALE);
}

static void test_malformed_headers_refused(void **state)
{
    (void)state;
    const char *body = SPEC_BODY;
    size_t len = strlen(body);
    const char *bad_headers[] = {NULL, "", " ", "garbage", "v1", "v1,", ",abc", "   v1   "};
    for (size_t i = 0; i < sizeof bad_headers / sizeof bad_headers[0]; i++)
        assert_int_equal(verify_spec(SPEC_SECRET, bad_headers[i], SPEC_TIMESTAMP),
                         WEBHOOK_MALFORMED);

    const char *bad_timestamps[] = {NULL,           "",      "abc",   "-1614265330",
                                    "1614265330 ",  "+1614", "16.14", "99999999999999999999",
                                    "1614265330abc"};
    for (size_t i = 0; i < sizeof bad_timestamps / sizeof bad_timestamps[0]; i++)
        assert_int_equal(webhook_verify(SPEC_SECRET, SPEC_ID, bad_timestamps[i], body, len,
                                        SPEC_SIGNATURE, SPEC_TIMESTAMP, TOLERANCE_S),
                         WEBHOOK_MALFORMED);

    assert_int_equal(webhook_verify(SPEC_SECRET, NULL, "1614265330", body, len, SPEC_SIGNATURE,
                                    SPEC_TIMESTAMP, TOLERANCE_S),
                     WEBHOOK_MALFORMED);
    assert_int_equal(webhook_verify(SPEC_SECRET, "", "1614265330", body, len, SPEC_SIGNATURE,
                                    SPEC_TIMESTAMP, TOLERANCE_S),
                     WEBHOOK_MALFORMED);
    assert_int_equal(webhook_verify(SPEC_SECRET, SPEC_ID, "1614265330", NULL, 5, SPEC_SIGNATURE,
                                    SPEC_TIMESTAMP, TOLERANCE_S),
                     WEBHOOK_MALFORMED);
    /* A receiver with a bad secret cannot verify anything. */
    assert_int_equal(
        verify_spec("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", SPEC_SIGNATURE, SPEC_TIMESTAMP),
        WEBHOOK_MALFORMED);
    assert_int_equal(verify_spec(NULL, SPEC_SIGNATURE, SPEC_TIMESTAMP), WEBHOOK_MALFORMED);
}

static void test_malformed_secrets_refused(void **state)
{
    (void)state;
    char short_key[WEBHOOK_SECRET_MAX], long_key[WEBHOOK_SECRET_MAX];
    char min_key[WEBHOOK_SECRET_MAX], max_key[WEBHOOK_SECRET_MAX];
    secret_of(15, 1, short_key);
    secret_of(65, 2, long_key);
    secret_of(16, 3, min_key);
    secret_of(64, 4, max_key);
    assert_true(webhook_secret_valid(min_key));
    assert_true(webhook_secret_valid(max_key));
    assert_true(webhook_secret_valid(SPEC_SECRET));

    const char *bad[] = {
        NULL,
        "",
        "whsec_",
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",        /* no prefix */
        "WHSEC_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",  /* prefix in the wrong case */
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS",   /* not a whole base64 group */
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw!", /* trailing garbage */
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw ", /* trailing space */
        "whsec_ MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", /* inner space */
        "whsec_MfKQ9r8GKYqrTwjUPD8I-PZIo2LaLaSw",  /* URL-safe alphabet */
        "whsec_AAECAwQFBgcICQoLDA0ODxA",           /* 17 bytes, unpadded */
        short_key,
        long_key,
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_false(webhook_secret_valid(bad[i]));
        char signature[WEBHOOK_SIGNATURE_MAX];
        assert_false(
            webhook_sign(bad[i], SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY, strlen(SPEC_BODY), signature));
        assert_int_equal(verify_spec(bad[i], SPEC_SIGNATURE, SPEC_TIMESTAMP), WEBHOOK_MALFORMED);
    }
}

/* --------------------------------------------------------------------------
 * New secrets, names
 * -------------------------------------------------------------------------- */

static void test_secret_new_valid_and_distinct(void **state)
{
    (void)state;
    enum { COUNT = 64 };
    static char secrets[COUNT][WEBHOOK_SECRET_MAX];
    for (int i = 0; i < COUNT; i++) {
        webhook_secret_new(secrets[i]);
        assert_true(webhook_secret_valid(secrets[i]));
        assert_int_equal(strncmp(secrets[i], WEBHOOK_SECRET_PREFIX, 6), 0);
        /* 24 bytes: 32 base64 characters. */
        assert_int_equal(strlen(secrets[i]), 6 + 32);
        for (int j = 0; j < i; j++)
            assert_string_not_equal(secrets[i], secrets[j]);
    }
    /* Different secrets sign the same message differently. */
    char a[WEBHOOK_SIGNATURE_MAX], b[WEBHOOK_SIGNATURE_MAX];
    assert_true(webhook_sign(secrets[0], "msg", 1, "x", 1, a));
    assert_true(webhook_sign(secrets[1], "msg", 1, "x", 1, b));
    assert_string_not_equal(a, b);
}

static void test_verify_names(void **state)
{
    (void)state;
    assert_string_equal(webhook_verify_name(WEBHOOK_VERIFIED), "verified");
    assert_string_equal(webhook_verify_name(WEBHOOK_NO_MATCH), "no matching signature");
    assert_string_equal(webhook_verify_name(WEBHOOK_STALE), "timestamp out of tolerance");
    assert_string_equal(webhook_verify_name(WEBHOOK_MALFORMED), "malformed");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_specification_vector),
        cmocka_unit_test(test_agrees_with_openssl_for_every_key_length),
        cmocka_unit_test(test_empty_body),
        cmocka_unit_test(test_two_secrets_two_signatures),
        cmocka_unit_test(test_tampering_refused),
        cmocka_unit_test(test_stale_timestamp_refused),
        cmocka_unit_test(test_malformed_headers_refused),
        cmocka_unit_test(test_malformed_secrets_refused),
        cmocka_unit_test(test_secret_new_valid_and_distinct),
        cmocka_unit_test(test_verify_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
