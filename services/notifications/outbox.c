/* Outgoing transfers over one libcurl multi handle; see outbox.h.
 *
 * Each transfer owns a copy of what it sends and an easy handle; easy
 * handles go back to a small pool when a transfer ends, and the multi
 * handle keeps the connections (and the resolver cache), so the next POST
 * to the same host reuses a kept-alive connection whichever easy handle
 * carries it.
 *
 * The URL policy is applied twice for HTTP: the URL before the transfer
 * starts (a subscription made under an older, wider allowlist is held to
 * the current one) and the resolved address in the open-socket callback,
 * on every new connection. A reused connection was checked when it was
 * opened. Mail goes to the operator's own relay, from configuration, never
 * to an address a subscriber gave: it is not held to the webhook
 * allowlist (a relay on the loopback or a private network is the usual
 * case).
 *
 * A transfer refused before it starts is reported by the next
 * outbox_run(), like any other, so the caller has one path for outcomes. */
#include "outbox.h"
#include "log.h"
#include "server.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#define OUTBOX_KEEP_MAX 4096
/* A Retry-After further than this (68 years) is taken as this. */
#define OUTBOX_RETRY_AFTER_MAX INT32_MAX

typedef struct xfer_t xfer_t;

struct xfer_t {
    outbox_t *owner;
    xfer_t *prev, *next; /* in the outbox's list: running, or refused and not yet reported */
    CURL *easy;          /* NULL when refused before starting */
    bool mail;
    char *key;
    char *url;
    void *tag;
    struct curl_slist *list; /* HTTP headers, or the SMTP recipient */
    char *mail_from;
    uint8_t *body; /* the request body or the message (copied) */
    size_t body_len;
    size_t body_sent; /* SMTP: how much the read callback has handed out */
    struct timespec started;
    int64_t retry_after_s;
    bool refused;
    char refusal[256];
    char errbuf[CURL_ERROR_SIZE];
    size_t response_len;
    uint8_t response[]; /* owner->keep bytes */
};

typedef struct {
    char *key;
    unsigned count;
} key_count_t;

struct outbox_t {
    CURLM *multi;
    long timeout_ms;
    long connect_timeout_ms;
    unsigned per_key_max;
    unsigned total_max;
    size_t keep;
    const url_policy_t *policy;
    char *user_agent;

    xfer_t *running; /* transfers in the multi handle */
    xfer_t *refused; /* refused before starting, to report */
    unsigned total;

    /* Transfers in flight per key. Keys are subscriptions with something
     * in flight, at most total_max of them: a linear scan is enough. */
    key_count_t *keys;
    size_t key_count;

    CURL **pool; /* easy handles kept for reuse, at most total_max */
    size_t pool_count;
};

/* ======================== helpers ======================================= */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result = CURLE_FAILED_INIT;

static void curl_init(void)
{
    curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static uint32_t elapsed_ms(const struct timespec *since)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t ms =
        (int64_t)(now.tv_sec - since->tv_sec) * 1000 + (now.tv_nsec - since->tv_nsec) / 1000000;
    return ms < 0 ? 0 : ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
}

/* The length of the valid UTF-8 sequence at s (at most len bytes), or 0. */
static size_t utf8_sequence(const uint8_t *s, size_t len)
{
    uint8_t c = s[0];
    size_t n;
    uint8_t low = 0x80, high = 0xbf; /* bounds of the second byte */
    if (c >= 0xc2 && c <= 0xdf)
        n = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        if (c == 0xe0)
            low = 0xa0;
        else if (c == 0xed)
            high = 0x9f; /* no surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        if (c == 0xf0)
            low = 0x90;
        else if (c == 0xf4)
            high = 0x8f;
    } else
        return 0;
    if (len < n || s[1] < low || s[1] > high)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return n;
}

/* Copies len bytes into out (len + 1 bytes) as printable text: control
 * characters and bytes that are not UTF-8 (a sequence cut at the end of
 * what was kept among them) become '.', so the result can go into JSON
 * and logs as it is. */
static void printable(const uint8_t *in, size_t len, char *out)
{
    size_t i = 0, o = 0;
    while (i < len) {
        uint8_t c = in[i];
        if (c < 0x80) {
            out[o++] = c < 0x20 || c == 0x7f ? '.' : (char)c;
            i++;
            continue;
        }
        size_t n = utf8_sequence(in + i, len - i);
        if (n == 0 || (n == 2 && c == 0xc2 && in[i + 1] < 0xa0)) {
            /* not UTF-8, or a C1 control character */
            out[o++] = '.';
            i += n ? n : 1;
            continue;
        }
        memcpy(out + o, in + i, n);
        o += n;
        i += n;
    }
    out[o] = '\0';
}

static bool has_line_break(const char *s)
{
    return strpbrk(s, "\r\n") != NULL;
}

/* ======================== per-key counts ================================ */

static key_count_t *key_find(const outbox_t *self, const char *key)
{
    for (size_t i = 0; i < self->key_count; i++)
        if (strcmp(self->keys[i].key, key) == 0)
            return &self->keys[i];
    return NULL;
}

unsigned outbox_in_flight(const outbox_t *self, const char *key)
{
    if (!self || !key)
        return 0;
    const key_count_t *entry = key_find(self, key);
    return entry ? entry->count : 0;
}

unsigned outbox_total(const outbox_t *self)
{
    return self ? self->total : 0;
}

/* Counts a transfer in; false when out of memory. The table has room for
 * total_max keys (made in outbox_new), and the total bound is checked
 * first, so it never grows. */
static bool key_add(outbox_t *self, const char *key)
{
    key_count_t *entry = key_find(self, key);
    if (!entry) {
        char *copy = strdup(key);
        if (!copy)
            return false;
        entry = &self->keys[self->key_count++];
        entry->key = copy;
        entry->count = 0;
    }
    entry->count++;
    self->total++;
    return true;
}

static void key_remove(outbox_t *self, const char *key)
{
    key_count_t *entry = key_find(self, key);
    if (!entry)
        return;
    self->total--;
    if (--entry->count == 0) {
        free(entry->key);
        *entry = self->keys[--self->key_count];
    }
}

/* ======================== life cycle ==================================== */

outbox_t *outbox_new(const outbox_config_t *cfg)
{
    pthread_once(&curl_once, curl_init);
    if (curl_init_result != CURLE_OK) {
        log_error("libcurl cannot be initialised", "{s:s}", "error",
                  curl_easy_strerror(curl_init_result));
        return NULL;
    }
    outbox_config_t defaults = {0};
    if (!cfg)
        cfg = &defaults;
    outbox_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : 15000;
    self->connect_timeout_ms = cfg->connect_timeout_ms > 0 ? cfg->connect_timeout_ms : 5000;
    if (self->connect_timeout_ms > self->timeout_ms)
        self->connect_timeout_ms = self->timeout_ms;
    self->per_key_max = cfg->per_key_max > 0 ? cfg->per_key_max : 4;
    self->total_max = cfg->total_max > 0 ? cfg->total_max : 64;
    self->keep = cfg->response_keep > 0 ? cfg->response_keep : 256;
    if (self->keep > OUTBOX_KEEP_MAX)
        self->keep = OUTBOX_KEEP_MAX;
    self->policy = cfg->policy;
    self->user_agent = strdup(cfg->user_agent && *cfg->user_agent
                                  ? cfg->user_agent
                                  : "passerelle-notifications/" PASSERELLE_VERSION);
    self->keys = calloc(self->total_max, sizeof *self->keys);
    self->pool = calloc(self->total_max, sizeof *self->pool);
    self->multi = curl_multi_init();
    if (!self->user_agent || !self->keys || !self->pool || !self->multi) {
        log_error("outbox cannot be set up", NULL);
        outbox_destroy(&self);
        return NULL;
    }
    /* The connections kept for reuse: enough for every transfer in
     * flight, each to its own host. */
    curl_multi_setopt(self->multi, CURLMOPT_MAXCONNECTS, (long)self->total_max);
    return self;
}

static void xfer_free(xfer_t *xfer)
{
    if (!xfer)
        return;
    curl_slist_free_all(xfer->list);
    free(xfer->key);
    free(xfer->url);
    free(xfer->mail_from);
    free(xfer->body);
    free(xfer);
}

void outbox_destroy(outbox_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    outbox_t *self = *self_p;
    xfer_t *lists[] = {self->running, self->refused};
    for (size_t l = 0; l < 2; l++) {
        xfer_t *xfer = lists[l];
        while (xfer) {
            xfer_t *next = xfer->next;
            if (xfer->easy) {
                curl_multi_remove_handle(self->multi, xfer->easy);
                curl_easy_cleanup(xfer->easy);
            }
            xfer_free(xfer);
            xfer = next;
        }
    }
    for (size_t i = 0; i < self->pool_count; i++)
        curl_easy_cleanup(self->pool[i]);
    for (size_t i = 0; i < self->key_count; i++)
        free(self->keys[i].key);
    if (self->multi)
        curl_multi_cleanup(self->multi);
    free(self->pool);
    free(self->keys);
    free(self->user_agent);
    free(self);
    *self_p = NULL;
}

/* ======================== curl callbacks ================================ */

/* Keeps the first bytes of the answer; the rest is read and dropped, so
 * the connection stays usable for the next transfer. */
static size_t on_write(char *data, size_t size, size_t count, void *arg)
{
    xfer_t *xfer = arg;
    size_t len = size * count;
    size_t room = xfer->owner->keep - xfer->response_len;
    size_t take = len < room ? len : room;
    memcpy(xfer->response + xfer->response_len, data, take);
    xfer->response_len += take;
    return len;
}

/* HTTP: Retry-After of the final answer (a status line starts a new
 * answer: a 100 Continue's headers are not the final ones). SMTP: curl
 * hands over the server's reply lines here; the last one is kept as the
 * answer, since an SMTP upload has no body to keep. */
static size_t on_header(char *data, size_t size, size_t count, void *arg)
{
    xfer_t *xfer = arg;
    size_t len = size * count;
    size_t line_len = len;
    while (line_len && (data[line_len - 1] == '\n' || data[line_len - 1] == '\r'))
        line_len--;
    if (xfer->mail) {
        if (line_len == 0)
            return len;
        size_t take = line_len < xfer->owner->keep ? line_len : xfer->owner->keep;
        memcpy(xfer->response, data, take);
        xfer->response_len = take;
        return len;
    }
    static const char name[] = "retry-after:";
    if (line_len >= 5 && strncasecmp(data, "HTTP/", 5) == 0)
        xfer->retry_after_s = -1;
    else if (line_len > sizeof name - 1 && strncasecmp(data, name, sizeof name - 1) == 0) {
        char value[128];
        size_t value_len = line_len - (sizeof name - 1);
        if (value_len >= sizeof value)
            value_len = sizeof value - 1;
        memcpy(value, data + sizeof name - 1, value_len);
        value[value_len] = '\0';
        xfer->retry_after_s = outbox_parse_retry_after(value, (int64_t)time(NULL));
    }
    return len;
}

/* SMTP: hands out the copied message. */
static size_t on_read(char *buffer, size_t size, size_t count, void *arg)
{
    xfer_t *xfer = arg;
    size_t room = size * count;
    size_t left = xfer->body_len - xfer->body_sent;
    size_t take = left < room ? left : room;
    memcpy(buffer, xfer->body + xfer->body_sent, take);
    xfer->body_sent += take;
    return take;
}

/* Every new connection: the address curl resolved must pass the policy,
 * whatever name led to it. */
static curl_socket_t on_open_socket(void *arg, curlsocktype purpose, struct curl_sockaddr *address)
{
    xfer_t *xfer = arg;
    if (purpose == CURLSOCKTYPE_IPCXN && xfer->owner->policy) {
        char why[sizeof xfer->refusal];
        if (!url_policy_check_address(xfer->owner->policy, &address->addr, address->addrlen, why,
                                      sizeof why)) {
            xfer->refused = true;
            memcpy(xfer->refusal, why, sizeof why);
            return CURL_SOCKET_BAD;
        }
    }
    return socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
}

/* ======================== starting ====================================== */

static void list_push(xfer_t **head, xfer_t *xfer)
{
    xfer->prev = NULL;
    xfer->next = *head;
    if (*head)
        (*head)->prev = xfer;
    *head = xfer;
}

static void list_unlink(xfer_t **head, xfer_t *xfer)
{
    if (xfer->prev)
        xfer->prev->next = xfer->next;
    else
        *head = xfer->next;
    if (xfer->next)
        xfer->next->prev = xfer->prev;
    xfer->prev = xfer->next = NULL;
}

/* A new transfer with its copies, or NULL (out of memory). */
static xfer_t *xfer_new(outbox_t *self, const char *key, const char *url, const void *body,
                        size_t body_len, void *tag)
{
    xfer_t *xfer = calloc(1, sizeof *xfer + self->keep);
    if (!xfer)
        return NULL;
    xfer->owner = self;
    xfer->tag = tag;
    xfer->retry_after_s = -1;
    xfer->key = strdup(key);
    xfer->url = strdup(url);
    /* One byte more, so that an empty body is a valid pointer too. */
    xfer->body = malloc(body_len + 1);
    if (!xfer->key || !xfer->url || !xfer->body) {
        xfer_free(xfer);
        return NULL;
    }
    if (body_len)
        memcpy(xfer->body, body, body_len);
    xfer->body_len = body_len;
    clock_gettime(CLOCK_MONOTONIC, &xfer->started);
    return xfer;
}

/* The options every transfer has; false if curl refuses one. */
static bool set_common(outbox_t *self, xfer_t *xfer, const char *protocols)
{
    CURL *e = xfer->easy;
    bool ok = true;
    ok = ok && curl_easy_setopt(e, CURLOPT_URL, xfer->url) == CURLE_OK;
    ok = ok && curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, protocols) == CURLE_OK;
    ok = ok && curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, protocols) == CURLE_OK;
    ok = ok && curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L) == CURLE_OK;
    ok = ok && curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, self->timeout_ms) == CURLE_OK;
    ok = ok && curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, self->connect_timeout_ms) == CURLE_OK;
    ok = ok && curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) == CURLE_OK;
    /* Straight to the endpoint: a proxy from the environment would both
     * hide the address the policy must see and carry our traffic
     * elsewhere. */
    ok = ok && curl_easy_setopt(e, CURLOPT_PROXY, "") == CURLE_OK;
    ok = ok && curl_easy_setopt(e, CURLOPT_PRIVATE, xfer) == CURLE_OK;
    ok = ok && curl_easy_setopt(e, CURLOPT_ERRORBUFFER, xfer->errbuf) == CURLE_OK;
    ok = ok && curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header) == CURLE_OK;
    ok = ok && curl_easy_setopt(e, CURLOPT_HEADERDATA, xfer) == CURLE_OK;
    ok = ok && curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write) == CURLE_OK;
    ok = ok && curl_easy_setopt(e, CURLOPT_WRITEDATA, xfer) == CURLE_OK;
    return ok;
}

/* Counts the transfer in and hands it to curl (or, refused, to the list
 * the next outbox_run reports). 0, or -1 with the transfer freed. */
static int xfer_start(outbox_t *self, xfer_t *xfer)
{
    if (!key_add(self, xfer->key)) {
        xfer_free(xfer);
        return -1;
    }
    if (!xfer->easy) {
        list_push(&self->refused, xfer);
        return 0;
    }
    CURLMcode rc = curl_multi_add_handle(self->multi, xfer->easy);
    if (rc != CURLM_OK) {
        log_warn("outbox cannot start a transfer", "{s:s}", "error", curl_multi_strerror(rc));
        key_remove(self, xfer->key);
        curl_easy_cleanup(xfer->easy);
        xfer_free(xfer);
        return -1;
    }
    list_push(&self->running, xfer);
    return 0;
}

static CURL *easy_take(outbox_t *self)
{
    if (self->pool_count)
        return self->pool[--self->pool_count];
    return curl_easy_init();
}

/* Back to the pool with its options cleared, or freed if the pool is
 * full. */
static void easy_give_back(outbox_t *self, CURL *easy)
{
    if (self->pool_count < self->total_max) {
        curl_easy_reset(easy);
        self->pool[self->pool_count++] = easy;
    } else
        curl_easy_cleanup(easy);
}

static bool bounded(const outbox_t *self, const char *key)
{
    return self->total >= self->total_max || outbox_in_flight(self, key) >= self->per_key_max;
}

int outbox_post(outbox_t *self, const outbox_post_t *post)
{
    if (!self || !post || !post->key || !*post->key || !post->url || !*post->url ||
        (post->body_len && !post->body) || (post->header_count && !post->headers))
        return -1;
    if (bounded(self, post->key))
        return -1;
    bool has_expect = false, has_type = false;
    for (size_t i = 0; i < post->header_count; i++) {
        const char *header = post->headers[i];
        /* A line break would let a header value write headers of its own. */
        if (!header || !strchr(header, ':') || header[0] == ':' || has_line_break(header))
            return -1;
        has_expect = has_expect || strncasecmp(header, "expect:", 7) == 0;
        has_type = has_type || strncasecmp(header, "content-type:", 13) == 0;
    }

    xfer_t *xfer = xfer_new(self, post->key, post->url, post->body, post->body_len, post->tag);
    if (!xfer)
        return -1;
    bool ok = true;
    for (size_t i = 0; ok && i < post->header_count; i++) {
        struct curl_slist *list = curl_slist_append(xfer->list, post->headers[i]);
        ok = list != NULL;
        xfer->list = list ? list : xfer->list;
    }
    /* No "Expect: 100-continue" round trip before the body, and no form
     * content type made up by curl when the caller names none. */
    const char *extra[] = {has_expect ? NULL : "Expect:", has_type ? NULL : "Content-Type:"};
    for (size_t i = 0; ok && i < 2; i++) {
        if (!extra[i])
            continue;
        struct curl_slist *list = curl_slist_append(xfer->list, extra[i]);
        ok = list != NULL;
        xfer->list = list ? list : xfer->list;
    }
    if (!ok) {
        xfer_free(xfer);
        return -1;
    }

    char why[sizeof xfer->refusal];
    if (self->policy && !url_policy_check_url(self->policy, post->url, why, sizeof why)) {
        xfer->refused = true;
        memcpy(xfer->refusal, why, sizeof why);
        return xfer_start(self, xfer);
    }

    xfer->easy = easy_take(self);
    ok = xfer->easy && set_common(self, xfer, "http,https");
    CURL *e = xfer->easy;
    ok = ok && curl_easy_setopt(e, CURLOPT_POST, 1L) == CURLE_OK;
    ok = ok && curl_easy_setopt(e, CURLOPT_POSTFIELDS, xfer->body) == CURLE_OK;
    ok = ok &&
         curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)xfer->body_len) == CURLE_OK;
    ok = ok && curl_easy_setopt(e, CURLOPT_HTTPHEADER, xfer->list) == CURLE_OK;
    ok = ok && curl_easy_setopt(e, CURLOPT_USERAGENT, self->user_agent) == CURLE_OK;
    if (ok && self->policy) {
        ok = curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, on_open_socket) == CURLE_OK &&
             curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, xfer) == CURLE_OK;
    }
    if (!ok) {
        log_warn("outbox cannot set up a transfer", "{s:s}", "key", post->key);
        if (xfer->easy)
            curl_easy_cleanup(xfer->easy);
        xfer_free(xfer);
        return -1;
    }
    return xfer_start(self, xfer);
}

int outbox_mail(outbox_t *self, const outbox_mail_t *mail)
{
    if (!self || !mail || !mail->key || !*mail->key || !mail->url || !*mail->url || !mail->from ||
        !*mail->from || !mail->to || !*mail->to || !mail->message || mail->message_len == 0)
        return -1;
    /* The envelope addresses go into SMTP command lines as they are. */
    if (has_line_break(mail->from) || has_line_break(mail->to))
        return -1;
    if (bounded(self, mail->key))
        return -1;

    xfer_t *xfer =
        xfer_new(self, mail->key, mail->url, mail->message, mail->message_len, mail->tag);
    if (!xfer)
        return -1;
    xfer->mail = true;
    xfer->mail_from = strdup(mail->from);
    xfer->list = curl_slist_append(NULL, mail->to);
    xfer->easy = xfer->mail_from && xfer->list ? easy_take(self) : NULL;
    bool ok = xfer->easy && set_common(self, xfer, "smtp,smtps");
    CURL *e = xfer->easy;
    ok = ok && curl_easy_setopt(e, CURLOPT_MAIL_FROM, xfer->mail_from) == CURLE_OK;
    ok = ok && curl_easy_setopt(e, CURLOPT_MAIL_RCPT, xfer->list) == CURLE_OK;
    ok = ok && curl_easy_setopt(e, CURLOPT_UPLOAD, 1L) == CURLE_OK;
    ok = ok && curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read) == CURLE_OK;
    ok = ok && curl_easy_setopt(e, CURLOPT_READDATA, xfer) == CURLE_OK;
    ok =
        ok && curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)xfer->body_len) == CURLE_OK;
    if (!ok) {
        log_warn("outbox cannot set up a mail", "{s:s}", "key", mail->key);
        if (xfer->easy)
            curl_easy_cleanup(xfer->easy);
        xfer_free(xfer);
        return -1;
    }
    return xfer_start(self, xfer);
}

/* ======================== running ======================================= */

/* Reports a transfer that ended (curl's code, or refused before it
 * started) and frees it; it is out of every list and count before fn
 * runs, so fn may start others. */
static void xfer_report(outbox_t *self, xfer_t *xfer, CURLcode code, outbox_done_fn *fn, void *arg)
{
    outbox_result_t *result = calloc(1, sizeof *result);
    if (result) {
        result->tag = xfer->tag;
        result->key = xfer->key;
        result->retry_after_s = -1;
        result->duration_ms = elapsed_ms(&xfer->started);
    }
    if (xfer->easy) {
        if (result) {
            long status = 0;
            curl_easy_getinfo(xfer->easy, CURLINFO_RESPONSE_CODE, &status);
            result->status = status;
            result->timed_out = code == CURLE_OPERATION_TIMEDOUT;
            result->refused = xfer->refused && code != CURLE_OK;
            if (result->refused)
                snprintf(result->error, sizeof result->error, "%s", xfer->refusal);
            else if (code != CURLE_OK)
                snprintf(result->error, sizeof result->error, "%s",
                         xfer->errbuf[0] ? xfer->errbuf : curl_easy_strerror(code));
            if (!xfer->mail)
                result->retry_after_s = xfer->retry_after_s;
        }
        curl_multi_remove_handle(self->multi, xfer->easy);
        list_unlink(&self->running, xfer);
        easy_give_back(self, xfer->easy);
        xfer->easy = NULL;
    } else if (result) {
        result->refused = true;
        snprintf(result->error, sizeof result->error, "%s", xfer->refusal);
    }
    if (result)
        printable(xfer->response, xfer->response_len, result->response);
    key_remove(self, xfer->key);
    if (fn && result)
        fn(arg, result);
    else if (!result)
        log_error("outbox: out of memory, a transfer's outcome is lost", "{s:s}", "key", xfer->key);
    free(result);
    xfer_free(xfer);
}

int outbox_run(outbox_t *self, int timeout_ms, outbox_done_fn *fn, void *arg)
{
    if (!self)
        return 0;
    int reported = 0;
    /* Refusals first, without waiting: only those present now, so that a
     * callback refusing again does not keep this loop going. */
    xfer_t *refused = self->refused;
    self->refused = NULL;
    while (refused) {
        xfer_t *next = refused->next;
        xfer_report(self, refused, CURLE_OK, fn, arg);
        reported++;
        refused = next;
    }

    CURLMcode rc = curl_multi_poll(
        self->multi, NULL, 0, reported || self->refused || timeout_ms < 0 ? 0 : timeout_ms, NULL);
    if (rc != CURLM_OK)
        log_warn("curl_multi_poll failed", "{s:s}", "error", curl_multi_strerror(rc));
    int still_running = 0;
    rc = curl_multi_perform(self->multi, &still_running);
    if (rc != CURLM_OK)
        log_warn("curl_multi_perform failed", "{s:s}", "error", curl_multi_strerror(rc));

    CURLMsg *msg;
    int queued;
    while ((msg = curl_multi_info_read(self->multi, &queued))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        char *private = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &private);
        if (!private)
            continue;
        xfer_report(self, (xfer_t *)private, msg->data.result, fn, arg);
        reported++;
    }
    return reported;
}

void outbox_wakeup(outbox_t *self)
{
    if (self)
        curl_multi_wakeup(self->multi);
}

/* ======================== Retry-After =================================== */

int64_t outbox_parse_retry_after(const char *value, int64_t now_s)
{
    if (!value)
        return -1;
    while (*value == ' ' || *value == '\t')
        value++;
    size_t len = strlen(value);
    while (len && (value[len - 1] == ' ' || value[len - 1] == '\t' || value[len - 1] == '\r' ||
                   value[len - 1] == '\n'))
        len--;
    if (len == 0 || len > 64)
        return -1;
    char text[65];
    memcpy(text, value, len);
    text[len] = '\0';

    if (text[0] >= '0' && text[0] <= '9') {
        int64_t seconds = 0;
        size_t i = 0;
        for (; text[i] >= '0' && text[i] <= '9'; i++)
            if (seconds < OUTBOX_RETRY_AFTER_MAX)
                seconds = seconds * 10 + (text[i] - '0');
        /* Digits only is delay-seconds; digits and more is a date in
         * asctime() form at best, which starts with a day name. */
        if (text[i] == '\0')
            return seconds > OUTBOX_RETRY_AFTER_MAX ? OUTBOX_RETRY_AFTER_MAX : seconds;
        return -1;
    }
    /* An HTTP-date: IMF-fixdate, or the obsolete RFC 850 and asctime()
     * forms a server may still send; curl_getdate reads all three. A
     * date requires a weekday name first, so that curl's looser reading
     * does not turn other text into a time. */
    if (!((text[0] >= 'A' && text[0] <= 'Z') || (text[0] >= 'a' && text[0] <= 'z')))
        return -1;
    time_t when = curl_getdate(text, NULL);
    if (when == (time_t)-1)
        return -1;
    int64_t delta = (int64_t)when - now_s;
    if (delta < 0)
        return 0;
    return delta > OUTBOX_RETRY_AFTER_MAX ? OUTBOX_RETRY_AFTER_MAX : delta;
}
