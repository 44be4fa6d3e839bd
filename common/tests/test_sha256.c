/* SHA-256 over OpenSSL: the FIPS 180-2 examples, the empty message,
 * incremental hashing against one-shot hashing, and agreement with
 * libsodium's independent implementation on random data. */
#include "sha256.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#define EMPTY_SHA "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

/* Hashes text with every entry point and checks each gives want. */
static void expect_all_ways(const void *data, size_t len, const char *want)
{
    char hex[SHA256_HEX_LEN];
    assert_int_equal(sha256_hex(data, len, hex), 0);
    assert_string_equal(hex, want);

    uint8_t raw[SHA256_BYTES];
    assert_int_equal(sha256_digest(data, len, raw), 0);
    sha256_to_hex(raw, hex);
    assert_string_equal(hex, want);

    sha256_t *h = sha256_new();
    assert_non_null(h);
    sha256_update(h, data, len);
    assert_int_equal(sha256_final_hex(h, hex), 0);
    assert_string_equal(hex, want);
    sha256_destroy(&h);
    assert_null(h);
}

static void test_fips_180_2_examples(void **state)
{
    (void)state;
    expect_all_ways("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    assert_int_equal(strlen(m448) * 8, 448);
    expect_all_ways(m448, strlen(m448),
                    "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    const char *m896 = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
                       "ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
    assert_int_equal(strlen(m896) * 8, 896);
    expect_all_ways(m896, strlen(m896),
                    "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
}

static void test_one_million_a(void **state)
{
    (void)state;
    const char *want = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";
    size_t len = 1000000;
    char *data = malloc(len);
    assert_non_null(data);
    memset(data, 'a', len);
    expect_all_ways(data, len, want);

    /* Fed in pieces of 1,000 bytes as the example in FIPS 180-2 suggests. */
    sha256_t *h = sha256_new();
    assert_non_null(h);
    for (size_t i = 0; i < len / 1000; i++)
        sha256_update(h, data, 1000);
    char hex[SHA256_HEX_LEN];
    assert_int_equal(sha256_final_hex(h, hex), 0);
    assert_string_equal(hex, want);
    sha256_destroy(&h);
    free(data);
}

static void test_empty_input(void **state)
{
    (void)state;
    expect_all_ways("", 0, EMPTY_SHA);
    char hex[SHA256_HEX_LEN];
    assert_int_equal(sha256_hex(NULL, 0, hex), 0);
    assert_string_equal(hex, EMPTY_SHA);

    sha256_t *h = sha256_new();
    assert_non_null(h);
    assert_int_equal(sha256_final_hex(h, hex), 0); /* nothing added at all */
    assert_string_equal(hex, EMPTY_SHA);
    sha256_update(h, NULL, 0);
    sha256_update(h, "", 0);
    assert_int_equal(sha256_final_hex(h, hex), 0);
    assert_string_equal(hex, EMPTY_SHA);
    sha256_destroy(&h);
}

static void test_final_and_reset_start_over(void **state)
{
    (void)state;
    sha256_t *h = sha256_new();
    assert_non_null(h);
    char hex[SHA256_HEX_LEN];
    sha256_update(h, "abc", 3);
    assert_int_equal(sha256_final_hex(h, hex), 0);
    sha256_update(h, "abc", 3); /* final reset the hash: same answer again */
    assert_int_equal(sha256_final_hex(h, hex), 0);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

    sha256_update(h, "something else", 14);
    sha256_reset(h);
    sha256_update(h, "abc", 3);
    assert_int_equal(sha256_final_hex(h, hex), 0);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    sha256_destroy(&h);
    sha256_destroy(&h); /* NULL-safe */
    sha256_destroy(NULL);
}

static void test_incremental_matches_one_shot(void **state)
{
    (void)state;
    size_t max = 3 * 1024 * 1024 + 17;
    unsigned char *data = malloc(max);
    assert_non_null(data);
    randombytes_buf(data, max);
    sha256_t *h = sha256_new();
    assert_non_null(h);

    for (int round = 0; round < 40; round++) {
        /* Lengths around the 64-byte block boundary, then larger ones. */
        size_t len = round < 20 ? (size_t)randombytes_uniform(200)
                                : (size_t)randombytes_uniform((uint32_t)max + 1);
        char one_shot[SHA256_HEX_LEN], pieces[SHA256_HEX_LEN], reference[SHA256_HEX_LEN];
        assert_int_equal(sha256_hex(data, len, one_shot), 0);

        size_t offset = 0;
        while (offset < len) {
            size_t left = len - offset;
            size_t piece =
                randombytes_uniform(3) == 0
                    ? (size_t)randombytes_uniform(65) /* 0 to 64 bytes */
                    : (size_t)randombytes_uniform((uint32_t)(left < 300000 ? left : 300000) + 1);
            if (piece > left)
                piece = left;
            sha256_update(h, data + offset, piece);
            offset += piece;
        }
        assert_int_equal(sha256_final_hex(h, pieces), 0);

        unsigned char raw[crypto_hash_sha256_BYTES];
        crypto_hash_sha256(raw, data, len);
        sodium_bin2hex(reference, sizeof reference, raw, sizeof raw);

        if (strcmp(one_shot, pieces) != 0 || strcmp(one_shot, reference) != 0)
            fail_msg("length %zu: one-shot %s, in pieces %s, libsodium %s", len, one_shot, pieces,
                     reference);
    }
    sha256_destroy(&h);
    free(data);
}

static void test_to_hex(void **state)
{
    (void)state;
    uint8_t raw[SHA256_BYTES];
    for (int i = 0; i < SHA256_BYTES; i++)
        raw[i] = (uint8_t)(i * 8 + 7);
    char hex[SHA256_HEX_LEN];
    sha256_to_hex(raw, hex);
    assert_string_equal(hex, "070f171f272f373f474f575f676f777f878f979fa7afb7bfc7cfd7dfe7eff7ff");
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fips_180_2_examples),
        cmocka_unit_test(test_one_million_a),
        cmocka_unit_test(test_empty_input),
        cmocka_unit_test(test_final_and_reset_start_over),
        cmocka_unit_test(test_incremental_matches_one_shot),
        cmocka_unit_test(test_to_hex),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
