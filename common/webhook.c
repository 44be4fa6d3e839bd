/* Standard Webhooks signatures over libsodium; see webhook.h.
 *
 * The key is the base64 part of the "whsec_" secret, decoded, used at its
 * real length: HMAC-SHA256 takes any key length, and libsodium's one-shot
 * crypto_auth_hmacsha256() would insist on 32 bytes, so the
 * _init/_update/_final API is used instead. The signed content is
 * "<id>.<timestamp>.<body>", fed in pieces so the body is never copied. */
#include "webhook.h"

#include <inttypes.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SECRET_KEY_MIN 16 /* bytes of key a secret must decode to */
#define SECRET_KEY_MAX 64
#define SECRET_NEW_KEY 24                          /* bytes of key in a new secret */
#define SIGNATURE_TAG  "v1,"                       /* the only scheme this module speaks */
#define TIMESTAMP_MAX  21                          /* "-9223372036854775808" + NUL */
#define SIGNATURE_B64  (WEBHOOK_SIGNATURE_MAX - 3) /* room for the base64 part + NUL */

/* --------------------------------------------------------------------------
 * libsodium
 * -------------------------------------------------------------------------- */

static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;

static void sodium_start(void)
{
    /* Without a working libsodium no signature can be trusted: stop rather
     * than send or accept unsigned webhooks. */
    if (sodium_init() < 0) {
        fputs("webhook: libsodium failed to initialise\n", stderr);
        abort();
    }
}

static void sodium_ready(void)
{
    pthread_once(&sodium_once, sodium_start);
}

/* --------------------------------------------------------------------------
 * Secrets
 * -------------------------------------------------------------------------- */

/* Decodes the key of a "whsec_" secret into key (SECRET_KEY_MAX bytes).
 * Returns its length, or 0 if the secret is not "whsec_" + the padded
 * base64 of 16 to 64 bytes and nothing else. */
static size_t secret_key(const char *secret, unsigned char key[SECRET_KEY_MAX])
{
    size_t prefix_len = strlen(WEBHOOK_SECRET_PREFIX);
    if (!secret || strncmp(secret, WEBHOOK_SECRET_PREFIX, prefix_len) != 0)
        return 0;
    const char *b64 = secret + prefix_len;
    size_t b64_len = strlen(b64);
    if (b64_len == 0 ||
        b64_len > sodium_base64_ENCODED_LEN(SECRET_KEY_MAX, sodium_base64_VARIANT_ORIGINAL) - 1)
        return 0;
    size_t key_len = 0;
    const char *end = NULL;
    if (sodium_base642bin(key, SECRET_KEY_MAX, b64, b64_len, NULL, &key_len, &end,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        end != b64 + b64_len || key_len < SECRET_KEY_MIN) {
        sodium_memzero(key, SECRET_KEY_MAX);
        return 0;
    }
    return key_len;
}

void webhook_secret_new(char out[WEBHOOK_SECRET_MAX])
{
    sodium_ready();
    unsigned char key[SECRET_NEW_KEY];
    randombytes_buf(key, sizeof key);
    size_t prefix_len = strlen(WEBHOOK_SECRET_PREFIX);
    memcpy(out, WEBHOOK_SECRET_PREFIX, prefix_len);
    sodium_bin2base64(out + prefix_len, WEBHOOK_SECRET_MAX - prefix_len, key, sizeof key,
                      sodium_base64_VARIANT_ORIGINAL);
    sodium_memzero(key, sizeof key);
}

bool webhook_secret_valid(const char *secret)
{
    sodium_ready();
    unsigned char key[SECRET_KEY_MAX];
    size_t key_len = secret_key(secret, key);
    sodium_memzero(key, sizeof key);
    return key_len > 0;
}

/* --------------------------------------------------------------------------
 * Signing
 * -------------------------------------------------------------------------- */

/* The raw HMAC-SHA256 of "<id>.<timestamp>.<body>" under key. */
static void signature_mac(const unsigned char *key, size_t key_len, const char *msg_id,
                          const char *timestamp, const void *body, size_t body_len,
                          unsigned char mac[crypto_auth_hmacsha256_BYTES])
{
    crypto_auth_hmacsha256_state state;
    crypto_auth_hmacsha256_init(&state, key, key_len);
    crypto_auth_hmacsha256_update(&state, (const unsigned char *)msg_id, strlen(msg_id));
    crypto_auth_hmacsha256_update(&state, (const unsigned char *)".", 1);
    crypto_auth_hmacsha256_update(&state, (const unsigned char *)timestamp, strlen(timestamp));
    crypto_auth_hmacsha256_update(&state, (const unsigned char *)".", 1);
    if (body_len > 0)
        crypto_auth_hmacsha256_update(&state, body, body_len);
    crypto_auth_hmacsha256_final(&state, mac);
    sodium_memzero(&state, sizeof state);
}

bool webhook_sign(const char *secret, const char *msg_id, int64_t timestamp_s, const void *body,
                  size_t body_len, char out[WEBHOOK_SIGNATURE_MAX])
{
    sodium_ready();
    if (!msg_id || (!body && body_len > 0))
        return false;
    unsigned char key[SECRET_KEY_MAX];
    size_t key_len = secret_key(secret, key);
    if (key_len == 0)
        return false;
    char timestamp[TIMESTAMP_MAX];
    snprintf(timestamp, sizeof timestamp, "%" PRId64, timestamp_s);
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    signature_mac(key, key_len, msg_id, timestamp, body, body_len, mac);
    sodium_memzero(key, sizeof key);

    size_t tag_len = strlen(SIGNATURE_TAG);
    memcpy(out, SIGNATURE_TAG, tag_len);
    sodium_bin2base64(out + tag_len, WEBHOOK_SIGNATURE_MAX - tag_len, mac, sizeof mac,
                      sodium_base64_VARIANT_ORIGINAL);
    return true;
}

bool webhook_signature_header(const char *const *secrets, size_t count, const char *msg_id,
                              int64_t timestamp_s, const void *body, size_t body_len, char *out,
                              size_t out_size)
{
    if (!out || out_size == 0)
        return false;
    out[0] = '\0';
    if (!secrets)
        return false;
    size_t used = 0;
    size_t signed_count = 0;
    for (size_t i = 0; i < count; i++) {
        if (!secrets[i] || !*secrets[i])
            continue;
        char signature[WEBHOOK_SIGNATURE_MAX];
        if (!webhook_sign(secrets[i], msg_id, timestamp_s, body, body_len, signature)) {
            out[0] = '\0';
            return false;
        }
        size_t sig_len = strlen(signature);
        size_t need = (signed_count > 0 ? 1 : 0) + sig_len;
        if (used + need + 1 > out_size) {
            out[0] = '\0';
            return false;
        }
        if (signed_count > 0)
            out[used++] = ' ';
        memcpy(out + used, signature, sig_len + 1);
        used += sig_len;
        signed_count++;
    }
    return signed_count > 0;
}

/* --------------------------------------------------------------------------
 * Verifying
 * -------------------------------------------------------------------------- */

/* Parses a decimal timestamp (digits only, as senders write it). */
static bool timestamp_parse(const char *text, int64_t *out)
{
    if (!text || !*text || strlen(text) >= TIMESTAMP_MAX)
        return false;
    int64_t value = 0;
    for (const char *p = text; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
        int digit = *p - '0';
        if (value > (INT64_MAX - digit) / 10)
            return false;
        value = value * 10 + digit;
    }
    *out = value;
    return true;
}

/* True if the base64 text of length len is a v1 signature equal to mac.
 * The comparison of the decoded bytes is constant time; whether the text
 * decodes at all says nothing about the expected value. */
static bool signature_matches(const char *b64, size_t len,
                              const unsigned char mac[crypto_auth_hmacsha256_BYTES])
{
    if (len == 0 || len >= SIGNATURE_B64)
        return false;
    unsigned char candidate[crypto_auth_hmacsha256_BYTES + 3];
    size_t candidate_len = 0;
    const char *end = NULL;
    if (sodium_base642bin(candidate, sizeof candidate, b64, len, NULL, &candidate_len, &end,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        end != b64 + len || candidate_len != crypto_auth_hmacsha256_BYTES)
        return false;
    return sodium_memcmp(candidate, mac, crypto_auth_hmacsha256_BYTES) == 0;
}

webhook_verify_t webhook_verify(const char *secret, const char *msg_id, const char *timestamp,
                                const void *body, size_t body_len, const char *signature_header,
                                int64_t now_s, int64_t tolerance_s)
{
    sodium_ready();
    int64_t sent_s = 0;
    if (!msg_id || !*msg_id || !timestamp_parse(timestamp, &sent_s) || !signature_header ||
        (!body && body_len > 0))
        return WEBHOOK_MALFORMED;

    /* The header must hold at least one "<version>,<signature>" entry;
     * versions other than v1 are skipped, as the specification asks. */
    bool any_entry = false;
    for (const char *p = signature_header; *p;) {
        while (*p == ' ')
            p++;
        const char *start = p;
        while (*p && *p != ' ')
            p++;
        const char *comma = memchr(start, ',', (size_t)(p - start));
        if (comma && comma > start && comma + 1 < p)
            any_entry = true;
    }
    if (!any_entry)
        return WEBHOOK_MALFORMED;

    unsigned char key[SECRET_KEY_MAX];
    size_t key_len = secret_key(secret, key);
    if (key_len == 0)
        return WEBHOOK_MALFORMED;

    /* Replay protection comes before the signature, as in the reference
     * libraries: an old message is refused whoever signed it. The
     * difference is computed without overflow for any int64 inputs. */
    if (tolerance_s >= 0) {
        uint64_t distance = sent_s >= now_s ? (uint64_t)sent_s - (uint64_t)now_s
                                            : (uint64_t)now_s - (uint64_t)sent_s;
        if (distance > (uint64_t)tolerance_s) {
            sodium_memzero(key, sizeof key);
            return WEBHOOK_STALE;
        }
    }

    /* Signed over the timestamp text as received: it is what the sender
     * signed, even written with leading zeros. */
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    signature_mac(key, key_len, msg_id, timestamp, body, body_len, mac);
    sodium_memzero(key, sizeof key);

    /* Every entry is compared, matched or not, so that the time taken does
     * not tell which of the signatures matched. */
    bool matched = false;
    size_t tag_len = strlen(SIGNATURE_TAG);
    for (const char *p = signature_header; *p;) {
        while (*p == ' ')
            p++;
        const char *start = p;
        while (*p && *p != ' ')
            p++;
        size_t entry_len = (size_t)(p - start);
        if (entry_len > tag_len && memcmp(start, SIGNATURE_TAG, tag_len) == 0 &&
            signature_matches(start + tag_len, entry_len - tag_len, mac))
            matched = true;
    }
    sodium_memzero(mac, sizeof mac);
    return matched ? WEBHOOK_VERIFIED : WEBHOOK_NO_MATCH;
}

const char *webhook_verify_name(webhook_verify_t result)
{
    switch (result) {
    case WEBHOOK_VERIFIED:
        return "verified";
    case WEBHOOK_NO_MATCH:
        return "no matching signature";
    case WEBHOOK_STALE:
        return "timestamp out of tolerance";
    case WEBHOOK_MALFORMED:
        return "malformed";
    }
    return "malformed";
}
