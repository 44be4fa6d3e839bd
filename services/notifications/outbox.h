/* Outgoing transfers, many at once: HTTP POSTs (webhooks) and SMTP
 * messages (the digest), over one libcurl multi handle.
 *
 * The delivery worker submits transfers and runs outbox_run() in its loop;
 * each finished transfer is reported once, with what a log of attempts
 * needs. Bounds: at most per_key_max transfers in flight per key (a
 * subscription: one endpoint is not flooded and a slow one cannot take
 * every slot) and total_max in all; outbox_post refuses beyond them. Every
 * transfer has a whole-transfer timeout. HTTP: no redirects followed, only
 * http and https, the URL policy checked on every connection (url_policy.h),
 * connections kept alive and reused per host. Nothing is buffered beyond
 * the request body (copied) and the first response_keep bytes of the
 * answer. */
#ifndef NOTIFY_OUTBOX_H
#define NOTIFY_OUTBOX_H

#include "url_policy.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct outbox_t outbox_t;

typedef struct {
    long timeout_ms;            /* whole transfer; default 15000 */
    long connect_timeout_ms;    /* default 5000 (at most timeout_ms) */
    unsigned per_key_max;       /* default 4 */
    unsigned total_max;         /* default 64 */
    size_t response_keep;       /* bytes of the answer kept; default 256, at most 4096 */
    const url_policy_t *policy; /* borrowed; NULL: no check (tests of the outbox only) */
    const char *user_agent;     /* default "passerelle-notifications/<version>" */
} outbox_config_t;

typedef struct {
    const char *key; /* the bound's key (a subscription id) */
    const char *url;
    const char *const *headers; /* "Name: value" lines */
    size_t header_count;
    const void *body;
    size_t body_len;
    void *tag; /* handed back in the result */
} outbox_post_t;

typedef struct {
    const char *key;
    const char *url;     /* smtp://host:port (smtps:// too) */
    const char *from;    /* envelope sender: "passerelle@example.org" */
    const char *to;      /* one recipient */
    const char *message; /* the whole RFC 5322 message, CRLF lines */
    size_t message_len;
    void *tag;
} outbox_mail_t;

typedef struct {
    void *tag;
    const char *key;
    long status; /* HTTP status, or the SMTP reply code; 0 if no answer */
    uint32_t duration_ms;
    char response[4097]; /* the answer's first bytes, control characters as '.' */
    char error[256];     /* "" on an answer; curl's error, or the policy's refusal */
    bool refused;        /* the URL policy refused the connection */
    bool timed_out;
    int64_t retry_after_s; /* from a Retry-After header (seconds or HTTP date); -1 if none */
} outbox_result_t;

typedef void(outbox_done_fn)(void *arg, const outbox_result_t *result);

/* NULL if libcurl cannot be set up (logged). curl_global_init is done once
 * per process here. */
outbox_t *outbox_new(const outbox_config_t *cfg);
/* Aborts what is in flight (not reported) and frees. */
void outbox_destroy(outbox_t **self_p);

/* Start a transfer; everything is copied. 0, or -1 when a bound is reached
 * (nothing started) or the arguments are invalid. */
int outbox_post(outbox_t *self, const outbox_post_t *post);
int outbox_mail(outbox_t *self, const outbox_mail_t *mail);

/* Drives the transfers: waits up to timeout_ms for activity (or
 * outbox_wakeup), then reports each finished transfer to fn. Returns the
 * number reported. */
int outbox_run(outbox_t *self, int timeout_ms, outbox_done_fn *fn, void *arg);

/* Wakes outbox_run early. The one call safe from another thread. */
void outbox_wakeup(outbox_t *self);

unsigned outbox_in_flight(const outbox_t *self, const char *key);
unsigned outbox_total(const outbox_t *self);

/* Parses a Retry-After value, seconds or an HTTP date, relative to now_s;
 * -1 if unparsable. Never negative otherwise. */
int64_t outbox_parse_retry_after(const char *value, int64_t now_s);

#endif
