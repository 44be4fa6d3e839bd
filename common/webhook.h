/* Standard Webhooks signatures (https://www.standardwebhooks.com/).
 *
 * A webhook carries three headers: webhook-id (the message id, the same on
 * every attempt), webhook-timestamp (seconds since the epoch) and
 * webhook-signature: space-separated "v1,<base64 HMAC-SHA256>" values, each
 * over "<id>.<timestamp>.<body>" with the key that is the base64 part of a
 * "whsec_" secret. Two signatures are sent while a secret is rotated, so
 * the receiver may hold either. */
#ifndef PASSERELLE_WEBHOOK_H
#define PASSERELLE_WEBHOOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WEBHOOK_SECRET_PREFIX "whsec_"
#define WEBHOOK_SECRET_MAX    128 /* room for any secret this module makes or takes */
#define WEBHOOK_SIGNATURE_MAX 64  /* "v1," + base64 of 32 bytes + NUL */

/* A new secret: "whsec_" + base64 of 24 random bytes (libsodium). */
void webhook_secret_new(char out[WEBHOOK_SECRET_MAX]);

/* True if secret is "whsec_" + valid base64 of 16 to 64 bytes. */
bool webhook_secret_valid(const char *secret);

/* One signature, "v1,<base64>", of body for this id and timestamp. False
 * if the secret is not valid. */
bool webhook_sign(const char *secret, const char *msg_id, int64_t timestamp_s, const void *body,
                  size_t body_len, char out[WEBHOOK_SIGNATURE_MAX]);

/* The webhook-signature header value: the signatures by each of the count
 * secrets (NULL or "" entries skipped), space-separated, into out. False if
 * a secret is invalid, none is given or out is too small. */
bool webhook_signature_header(const char *const *secrets, size_t count, const char *msg_id,
                              int64_t timestamp_s, const void *body, size_t body_len, char *out,
                              size_t out_size);

typedef enum {
    WEBHOOK_VERIFIED = 0,
    WEBHOOK_NO_MATCH,  /* no v1 signature of the header matches */
    WEBHOOK_STALE,     /* timestamp further than tolerance_s from now_s */
    WEBHOOK_MALFORMED, /* missing or unparsable header, bad secret */
} webhook_verify_t;

/* Verifies a received webhook as a receiver must: the timestamp within
 * tolerance_s of now_s (replay protection; tolerance_s < 0 skips the
 * check), and any of the header's v1 signatures equal (constant time) to
 * the expected one. */
webhook_verify_t webhook_verify(const char *secret, const char *msg_id, const char *timestamp,
                                const void *body, size_t body_len, const char *signature_header,
                                int64_t now_s, int64_t tolerance_s);

/* "verified", "no matching signature", "timestamp out of tolerance",
 * "malformed". */
const char *webhook_verify_name(webhook_verify_t result);

#endif
