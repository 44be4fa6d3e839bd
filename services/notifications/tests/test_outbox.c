/* The outbox against real servers on the loopback: an HTTP server in this
 * process (libmicrohttpd, on a port the system picks) and the SMTP sink
 * binary of the build tree. Every wait is a loop on outbox_run with a
 * deadline; nothing sleeps to let time pass. */
#define _GNU_SOURCE

#include "harness.h"
#include "outbox.h"
#include "url_policy.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ======================== the HTTP server =============================== */

#define HELD_MAX 8
#define BIG_LEN  10000

typedef struct {
    struct MHD_Daemon *daemon;
    int port;
    pthread_mutex_t lock;
    int requests;    /* requests whose headers arrived */
    int connections; /* connections accepted */
    char method[16];
    char path[128];
    char content_type[128];
    char custom[128]; /* X-Passerelle-Test */
    char user_agent[128];
    bool had_expect;
    uint8_t body[8192];
    size_t body_len;
    struct MHD_Connection *held[HELD_MAX];
    int held_count;
} http_server_t;

typedef struct {
    uint8_t *body;
    size_t len, cap;
    bool held;
} http_request_t;

static void copy_header(struct MHD_Connection *c, const char *name, char *out, size_t size)
{
    const char *value = MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
    snprintf(out, size, "%s", value ? value : "");
}

static enum MHD_Result respond(struct MHD_Connection *c, unsigned status, const void *body,
                               size_t len, const char *retry_after)
{
    struct MHD_Response *response =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!response)
        return MHD_NO;
    if (retry_after)
        MHD_add_response_header(response, "Retry-After", retry_after);
    enum MHD_Result result = MHD_queue_response(c, status, response);
    MHD_destroy_response(response);
    return result;
}

/* Paths: /ok (200), /status/503 (503 with Retry-After: 120), /date (429
 * with Retry-After two minutes ahead as an HTTP date), /big (200 with
 * BIG_LEN bytes), /ctrl (200 with control characters), /hold (no answer
 * until the server stops). */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
    (void)version;
    http_server_t *server = cls;
    http_request_t *request = *con_cls;
    if (!request) {
        request = calloc(1, sizeof *request);
        if (!request)
            return MHD_NO;
        *con_cls = request;
        pthread_mutex_lock(&server->lock);
        server->requests++;
        snprintf(server->method, sizeof server->method, "%s", method);
        snprintf(server->path, sizeof server->path, "%s", url);
        copy_header(c, "Content-Type", server->content_type, sizeof server->content_type);
        copy_header(c, "X-Passerelle-Test", server->custom, sizeof server->custom);
        copy_header(c, "User-Agent", server->user_agent, sizeof server->user_agent);
        server->had_expect = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Expect") != NULL;
        pthread_mutex_unlock(&server->lock);
        return MHD_YES;
    }
    if (*upload_size) {
        if (request->len + *upload_size > request->cap) {
            size_t cap = (request->len + *upload_size) * 2;
            uint8_t *body = realloc(request->body, cap);
            if (!body)
                return MHD_NO;
            request->body = body;
            request->cap = cap;
        }
        memcpy(request->body + request->len, upload, *upload_size);
        request->len += *upload_size;
        *upload_size = 0;
        return MHD_YES;
    }

    pthread_mutex_lock(&server->lock);
    server->body_len = request->len < sizeof server->body ? request->len : sizeof server->body;
    if (request->len)
        memcpy(server->body, request->body, server->body_len);
    bool hold = strcmp(url, "/hold") == 0 && !request->held && server->held_count < HELD_MAX;
    if (hold) {
        request->held = true;
        server->held[server->held_count++] = c;
        MHD_suspend_connection(c);
    }
    pthread_mutex_unlock(&server->lock);
    if (hold)
        return MHD_YES;

    if (strcmp(url, "/status/503") == 0)
        return respond(c, 503, "busy", 4, "120");
    if (strcmp(url, "/date") == 0) {
        time_t when = time(NULL) + 120;
        struct tm tm;
        gmtime_r(&when, &tm);
        char date[64];
        strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        return respond(c, 429, "slow down", 9, date);
    }
    if (strcmp(url, "/big") == 0) {
        static char big[BIG_LEN];
        for (size_t i = 0; i < BIG_LEN; i++)
            big[i] = (char)('a' + i % 26);
        return respond(c, 200, big, BIG_LEN, NULL);
    }
    if (strcmp(url, "/ctrl") == 0) {
        static const char ctrl[] = "line1\r\nline2\tend\x01\x7f caf\xc3\xa9 \xff\xc3";
        return respond(c, 200, ctrl, sizeof ctrl - 1, NULL);
    }
    return respond(c, 200, "accepted", 8, NULL);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode code)
{
    (void)cls;
    (void)c;
    (void)code;
    http_request_t *request = *con_cls;
    if (request) {
        free(request->body);
        free(request);
        *con_cls = NULL;
    }
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    (void)c;
    (void)socket_context;
    http_server_t *server = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        pthread_mutex_lock(&server->lock);
        server->connections++;
        pthread_mutex_unlock(&server->lock);
    }
}

static void server_start(http_server_t *server)
{
    memset(server, 0, sizeof *server);
    pthread_mutex_init(&server->lock, NULL);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    server->daemon = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG, 0, NULL,
        NULL, on_request, server, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, server, MHD_OPTION_NOTIFY_CONNECTION,
        on_connection, server, MHD_OPTION_END);
    assert_non_null(server->daemon);
    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info(server->daemon, MHD_DAEMON_INFO_BIND_PORT);
    assert_non_null(info);
    server->port = info->port;
    assert_true(server->port > 0);
}

static void server_stop(http_server_t *server)
{
    pthread_mutex_lock(&server->lock);
    for (int i = 0; i < server->held_count; i++)
        MHD_resume_connection(server->held[i]);
    server->held_count = 0;
    pthread_mutex_unlock(&server->lock);
    MHD_stop_daemon(server->daemon);
    pthread_mutex_destroy(&server->lock);
}

static int server_requests(http_server_t *server)
{
    pthread_mutex_lock(&server->lock);
    int n = server->requests;
    pthread_mutex_unlock(&server->lock);
    return n;
}

static int server_connections(http_server_t *server)
{
    pthread_mutex_lock(&server->lock);
    int n = server->connections;
    pthread_mutex_unlock(&server->lock);
    return n;
}

static int server_held(http_server_t *server)
{
    pthread_mutex_lock(&server->lock);
    int n = server->held_count;
    pthread_mutex_unlock(&server->lock);
    return n;
}

/* ======================== collecting results ============================ */

#define COLLECT_MAX 64

typedef struct {
    outbox_result_t results[COLLECT_MAX];
    char keys[COLLECT_MAX][64];
    int count;
} collected_t;

static void collect(void *arg, const outbox_result_t *result)
{
    collected_t *collected = arg;
    assert_true(collected->count < COLLECT_MAX);
    collected->results[collected->count] = *result;
    /* The key is the outbox's until the callback returns. */
    snprintf(collected->keys[collected->count], sizeof collected->keys[0], "%s",
             result->key ? result->key : "");
    collected->results[collected->count].key = collected->keys[collected->count];
    collected->count++;
}

/* Runs the outbox until `want` results in all are collected, failing the
 * test past deadline_ms. */
static void drive(outbox_t *outbox, collected_t *collected, int want, int deadline_ms)
{
    int64_t deadline = now_ms() + deadline_ms;
    while (collected->count < want) {
        if (now_ms() > deadline)
            fail_msg("%d of %d transfers reported within %d ms", collected->count, want,
                     deadline_ms);
        outbox_run(outbox, 100, collect, collected);
    }
}

static collected_t *collected_new(void)
{
    collected_t *collected = calloc(1, sizeof *collected);
    assert_non_null(collected);
    return collected;
}

static outbox_t *outbox_for_test(const url_policy_t *policy, size_t keep)
{
    outbox_config_t cfg = {.timeout_ms = 5000, .policy = policy, .response_keep = keep};
    outbox_t *outbox = outbox_new(&cfg);
    assert_non_null(outbox);
    return outbox;
}

static void post_to(outbox_t *outbox, const char *key, int port, const char *path, void *tag)
{
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    outbox_post_t post = {.key = key, .url = url, .body = "{}", .body_len = 2, .tag = tag};
    assert_int_equal(outbox_post(outbox, &post), 0);
}

/* ======================== HTTP ========================================== */

static void test_post_body_and_headers(void **state)
{
    (void)state;
    http_server_t server;
    server_start(&server);
    outbox_t *outbox = outbox_for_test(NULL, 0);

    uint8_t body[3000];
    for (size_t i = 0; i < sizeof body; i++)
        body[i] = (uint8_t)(i * 7); /* NUL bytes and all */
    const char *headers[] = {"Content-Type: application/cloudevents+json",
                             "X-Passerelle-Test: value with spaces"};
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/ok", server.port);
    int tag;
    outbox_post_t post = {.key = "S1",
                          .url = url,
                          .headers = headers,
                          .header_count = 2,
                          .body = body,
                          .body_len = sizeof body,
                          .tag = &tag};
    assert_int_equal(outbox_post(outbox, &post), 0);
    /* Everything was copied: the caller's buffers can change at once. */
    memset(body, 0, sizeof body);
    snprintf(url, sizeof url, "http://127.0.0.1:1/changed");
    assert_int_equal(outbox_in_flight(outbox, "S1"), 1);
    assert_int_equal(outbox_total(outbox), 1);

    collected_t *got = collected_new();
    drive(outbox, got, 1, 10000);
    const outbox_result_t *r = &got->results[0];
    assert_ptr_equal(r->tag, &tag);
    assert_string_equal(r->key, "S1");
    assert_int_equal(r->status, 200);
    assert_string_equal(r->response, "accepted");
    assert_string_equal(r->error, "");
    assert_false(r->refused);
    assert_false(r->timed_out);
    assert_int_equal(r->retry_after_s, -1);
    assert_true(r->duration_ms < 10000);
    assert_int_equal(outbox_in_flight(outbox, "S1"), 0);
    assert_int_equal(outbox_total(outbox), 0);

    assert_string_equal(server.method, "POST");
    assert_string_equal(server.path, "/ok");
    assert_string_equal(server.content_type, "application/cloudevents+json");
    assert_string_equal(server.custom, "value with spaces");
    assert_non_null(strstr(server.user_agent, "passerelle-notifications/"));
    assert_false(server.had_expect);
    assert_int_equal(server.body_len, 3000);
    for (size_t i = 0; i < 3000; i++)
        assert_int_equal(server.body[i], (uint8_t)(i * 7));

    /* An empty body, no headers: a POST still, and no made-up type. */
    outbox_post_t empty = {.key = "S1", .url = url};
    snprintf(url, sizeof url, "http://127.0.0.1:%d/ok", server.port);
    assert_int_equal(outbox_post(outbox, &empty), 0);
    drive(outbox, got, 2, 10000);
    assert_int_equal(got->results[1].status, 200);
    assert_int_equal(server.body_len, 0);
    assert_string_equal(server.content_type, "");
    assert_string_equal(server.method, "POST");

    free(got);
    outbox_destroy(&outbox);
    assert_null(outbox);
    outbox_destroy(NULL);
    server_stop(&server);
}

static void test_invalid_arguments(void **state)
{
    (void)state;
    outbox_t *outbox = outbox_for_test(NULL, 0);
    const char *bad_header[] = {"X-Injected: a\r\nX-Other: b"};
    const char *no_colon[] = {"NoColon"};
    outbox_post_t posts[] = {
        {.key = NULL, .url = "http://127.0.0.1/"},
        {.key = "", .url = "http://127.0.0.1/"},
        {.key = "S", .url = NULL},
        {.key = "S", .url = "http://127.0.0.1/", .body_len = 3},
        {.key = "S", .url = "http://127.0.0.1/", .header_count = 1},
        {.key = "S", .url = "http://127.0.0.1/", .headers = bad_header, .header_count = 1},
        {.key = "S", .url = "http://127.0.0.1/", .headers = no_colon, .header_count = 1},
    };
    for (size_t i = 0; i < sizeof posts / sizeof posts[0]; i++)
        assert_int_equal(outbox_post(outbox, &posts[i]), -1);
    assert_int_equal(outbox_post(outbox, NULL), -1);

    outbox_mail_t mails[] = {
        {.key = "D",
         .url = "smtp://127.0.0.1/",
         .from = "a@x",
         .to = "",
         .message = "m",
         .message_len = 1},
        {.key = "D",
         .url = "smtp://127.0.0.1/",
         .from = "a@x\r\nRCPT TO:<c@y>",
         .to = "b@y",
         .message = "m",
         .message_len = 1},
        {.key = "D", .url = "smtp://127.0.0.1/", .from = "a@x", .to = "b@y", .message = NULL},
    };
    for (size_t i = 0; i < sizeof mails / sizeof mails[0]; i++)
        assert_int_equal(outbox_mail(outbox, &mails[i]), -1);
    assert_int_equal(outbox_total(outbox), 0);
    assert_int_equal(outbox_run(outbox, 0, collect, NULL), 0);
    outbox_destroy(&outbox);
}

static void test_status_response_and_retry_after(void **state)
{
    (void)state;
    http_server_t server;
    server_start(&server);
    outbox_t *outbox = outbox_for_test(NULL, 100);
    collected_t *got = collected_new();
    const char *paths[] = {"/status/503", "/date", "/big", "/ctrl"};
    for (int i = 0; i < 4; i++)
        post_to(outbox, "S", server.port, paths[i], (void *)(intptr_t)(i + 1));
    drive(outbox, got, 4, 10000);

    for (int i = 0; i < 4; i++) {
        const outbox_result_t *r = &got->results[i];
        assert_string_equal(r->error, "");
        switch ((intptr_t)r->tag) {
        case 1:
            assert_int_equal(r->status, 503);
            assert_string_equal(r->response, "busy");
            assert_int_equal(r->retry_after_s, 120);
            break;
        case 2:
            assert_int_equal(r->status, 429);
            /* Two minutes ahead, give or take the second boundaries. */
            if (r->retry_after_s < 117 || r->retry_after_s > 121)
                fail_msg("Retry-After date read as %lld s", (long long)r->retry_after_s);
            break;
        case 3: {
            assert_int_equal(r->status, 200);
            assert_int_equal(strlen(r->response), 100);
            for (size_t k = 0; k < 100; k++)
                assert_int_equal(r->response[k], 'a' + k % 26);
            assert_int_equal(r->retry_after_s, -1);
            break;
        }
        case 4:
            assert_int_equal(r->status, 200);
            assert_string_equal(r->response, "line1..line2.end.. caf\xc3\xa9 ..");
            break;
        default:
            fail_msg("unknown tag");
        }
    }
    outbox_destroy(&outbox);

    /* The bound on what is kept: 256 by default, 4096 at most. */
    size_t keeps[] = {0, 10000};
    size_t expect[] = {256, 4096};
    for (int i = 0; i < 2; i++) {
        outbox = outbox_for_test(NULL, keeps[i]);
        collected_t *big = collected_new();
        post_to(outbox, "S", server.port, "/big", NULL);
        drive(outbox, big, 1, 10000);
        assert_int_equal(big->results[0].status, 200);
        assert_int_equal(strlen(big->results[0].response), expect[i]);
        free(big);
        outbox_destroy(&outbox);
    }
    free(got);
    server_stop(&server);
}

static void test_parse_retry_after(void **state)
{
    (void)state;
    /* Wed, 21 Oct 2015 07:28:00 GMT */
    const int64_t when = 1445412480;
    assert_int_equal(outbox_parse_retry_after("120", when), 120);
    assert_int_equal(outbox_parse_retry_after(" 0 ", when), 0);
    assert_int_equal(outbox_parse_retry_after("3600\r\n", when), 3600);
    assert_int_equal(outbox_parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", when - 60), 60);
    assert_int_equal(outbox_parse_retry_after("Wednesday, 21-Oct-15 07:28:00 GMT", when - 90), 90);
    assert_int_equal(outbox_parse_retry_after("Wed Oct 21 07:28:00 2015", when - 5), 5);
    /* A date gone by means now, never a negative delay. */
    assert_int_equal(outbox_parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", when + 600), 0);
    /* Absurd delays are capped, not wrapped. */
    assert_int_equal(outbox_parse_retry_after("99999999999999999999999", when), INT32_MAX);
    const char *bad[] = {NULL,  "",      "  ",   "-5",       "+5",
                         "1.5", "12abc", "soon", "tomorrow", "Wed, 99 Foo 2015"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (outbox_parse_retry_after(bad[i], when) != -1)
            fail_msg("\"%s\" read as a Retry-After", bad[i] ? bad[i] : "(null)");
}

static void test_timeout(void **state)
{
    (void)state;
    http_server_t server;
    server_start(&server);
    outbox_config_t cfg = {.timeout_ms = 400, .connect_timeout_ms = 10000};
    outbox_t *outbox = outbox_new(&cfg);
    assert_non_null(outbox);
    collected_t *got = collected_new();
    post_to(outbox, "S", server.port, "/hold", NULL);
    int64_t start = now_ms();
    drive(outbox, got, 1, 10000);
    int64_t took = now_ms() - start;
    const outbox_result_t *r = &got->results[0];
    assert_int_equal(server_held(&server), 1); /* the request did arrive */
    assert_true(r->timed_out);
    assert_false(r->refused);
    assert_int_equal(r->status, 0);
    assert_true(strlen(r->error) > 0);
    /* Reported at the bound, not long after (the slack is for a loaded
     * machine), and never before. */
    if (r->duration_ms < 390 || r->duration_ms > 2400 || took > 3000)
        fail_msg("timed out after %u ms (%lld ms in the loop) for a 400 ms bound", r->duration_ms,
                 (long long)took);
    free(got);
    outbox_destroy(&outbox);
    server_stop(&server);
}

static void test_connection_refused(void **state)
{
    (void)state;
    int port = harness_free_port();
    assert_true(port > 0);
    outbox_t *outbox = outbox_for_test(NULL, 0);
    collected_t *got = collected_new();
    post_to(outbox, "S", port, "/ok", NULL);
    drive(outbox, got, 1, 10000);
    const outbox_result_t *r = &got->results[0];
    assert_int_equal(r->status, 0);
    assert_false(r->refused);
    assert_false(r->timed_out);
    if (strlen(r->error) == 0)
        fail_msg("no error for a refused connection");
    assert_string_equal(r->response, "");
    free(got);
    outbox_destroy(&outbox);
}

static void test_bounds(void **state)
{
    (void)state;
    http_server_t server;
    server_start(&server);
    outbox_config_t cfg = {.per_key_max = 2, .total_max = 3};
    outbox_t *outbox = outbox_new(&cfg);
    assert_non_null(outbox);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/ok", server.port);
    outbox_post_t a = {.key = "A", .url = url};
    outbox_post_t b = {.key = "B", .url = url};
    outbox_post_t c = {.key = "C", .url = url};
    assert_int_equal(outbox_post(outbox, &a), 0);
    assert_int_equal(outbox_post(outbox, &a), 0);
    assert_int_equal(outbox_post(outbox, &a), -1); /* the third for one key */
    assert_int_equal(outbox_in_flight(outbox, "A"), 2);
    assert_int_equal(outbox_post(outbox, &b), 0);
    assert_int_equal(outbox_post(outbox, &c), -1); /* the fourth in all */
    outbox_mail_t mail = {.key = "C",
                          .url = "smtp://127.0.0.1:1/",
                          .from = "a@x",
                          .to = "b@y",
                          .message = "m\r\n",
                          .message_len = 3};
    assert_int_equal(outbox_mail(outbox, &mail), -1);
    assert_int_equal(outbox_in_flight(outbox, "B"), 1);
    assert_int_equal(outbox_in_flight(outbox, "C"), 0);
    assert_int_equal(outbox_in_flight(outbox, NULL), 0);
    assert_int_equal(outbox_total(outbox), 3);

    collected_t *got = collected_new();
    drive(outbox, got, 3, 10000);
    for (int i = 0; i < 3; i++)
        assert_int_equal(got->results[i].status, 200);
    assert_int_equal(outbox_total(outbox), 0);
    assert_int_equal(outbox_in_flight(outbox, "A"), 0);
    assert_int_equal(server_requests(&server), 3);
    /* Room again. */
    assert_int_equal(outbox_post(outbox, &a), 0);
    assert_int_equal(outbox_post(outbox, &c), 0);
    drive(outbox, got, 5, 10000);
    free(got);
    outbox_destroy(&outbox);
    server_stop(&server);
}

static void test_policy(void **state)
{
    (void)state;
    http_server_t server;
    server_start(&server);
    char err[256];
    collected_t *got = collected_new();
    char url[128];

    /* The URL is not on the allowlist: refused before any connection. */
    url_policy_t *elsewhere = url_policy_new("partner.example.org", err, sizeof err);
    assert_non_null(elsewhere);
    outbox_t *outbox = outbox_for_test(elsewhere, 0);
    post_to(outbox, "S", server.port, "/ok", NULL);
    assert_int_equal(outbox_in_flight(outbox, "S"), 1);
    drive(outbox, got, 1, 10000);
    assert_true(got->results[0].refused);
    assert_int_equal(got->results[0].status, 0);
    assert_non_null(strstr(got->results[0].error, "not on the allowlist"));
    assert_int_equal(outbox_total(outbox), 0);
    outbox_destroy(&outbox);
    url_policy_destroy(&elsewhere);

    /* The name is allowed, but it resolves to the loopback: refused when
     * connecting, whatever the name. */
    url_policy_t *by_name = url_policy_new("localhost", err, sizeof err);
    assert_non_null(by_name);
    outbox = outbox_for_test(by_name, 0);
    snprintf(url, sizeof url, "http://localhost:%d/ok", server.port);
    outbox_post_t post = {.key = "S", .url = url};
    assert_int_equal(outbox_post(outbox, &post), 0);
    drive(outbox, got, 2, 10000);
    const outbox_result_t *r = &got->results[1];
    assert_true(r->refused);
    assert_int_equal(r->status, 0);
    assert_non_null(strstr(r->error, "internal (loopback)"));
    outbox_destroy(&outbox);
    url_policy_destroy(&by_name);
    assert_int_equal(server_requests(&server), 0);
    assert_int_equal(server_connections(&server), 0);

    /* The address is on the allowlist: it goes through, by address, and
     * by a name whose addresses include it. */
    url_policy_t *listed = url_policy_new("127.0.0.1, localhost", err, sizeof err);
    assert_non_null(listed);
    outbox = outbox_for_test(listed, 0);
    post_to(outbox, "S", server.port, "/ok", NULL);
    assert_int_equal(outbox_post(outbox, &post), 0);
    drive(outbox, got, 4, 10000);
    for (int i = 2; i < 4; i++) {
        assert_false(got->results[i].refused);
        assert_int_equal(got->results[i].status, 200);
        assert_string_equal(got->results[i].error, "");
    }
    assert_int_equal(server_requests(&server), 2);
    outbox_destroy(&outbox);
    url_policy_destroy(&listed);

    /* Only http and https, whatever the allowlist. */
    outbox = outbox_for_test(NULL, 0);
    outbox_post_t ftp = {.key = "S", .url = "ftp://127.0.0.1:1/x"};
    assert_int_equal(outbox_post(outbox, &ftp), 0);
    drive(outbox, got, 5, 10000);
    assert_int_equal(got->results[4].status, 0);
    assert_true(strlen(got->results[4].error) > 0);
    outbox_destroy(&outbox);

    free(got);
    server_stop(&server);
}

static void test_keep_alive(void **state)
{
    (void)state;
    http_server_t server;
    server_start(&server);
    outbox_t *outbox = outbox_for_test(NULL, 0);
    collected_t *got = collected_new();
    for (int i = 0; i < 3; i++) {
        post_to(outbox, "S", server.port, "/ok", NULL);
        drive(outbox, got, i + 1, 10000);
        assert_int_equal(got->results[i].status, 200);
    }
    assert_int_equal(server_requests(&server), 3);
    /* One after the other to one host: one connection for all. */
    assert_int_equal(server_connections(&server), 1);
    free(got);
    outbox_destroy(&outbox);
    server_stop(&server);
}

static void test_many_concurrent(void **state)
{
    (void)state;
    http_server_t server;
    server_start(&server);
    outbox_t *outbox = outbox_for_test(NULL, 0);
    collected_t *got = collected_new();
    enum { KEYS = 10, EACH = 4 };
    int seen[KEYS * EACH] = {0};
    for (int k = 0; k < KEYS; k++) {
        char key[16];
        snprintf(key, sizeof key, "S%d", k);
        for (int i = 0; i < EACH; i++)
            post_to(outbox, key, server.port, "/ok", (void *)(intptr_t)(k * EACH + i + 1));
    }
    assert_int_equal(outbox_total(outbox), KEYS * EACH);
    drive(outbox, got, KEYS * EACH, 20000);
    for (int i = 0; i < KEYS * EACH; i++) {
        assert_int_equal(got->results[i].status, 200);
        intptr_t tag = (intptr_t)got->results[i].tag;
        assert_true(tag >= 1 && tag <= KEYS * EACH);
        seen[tag - 1]++;
    }
    for (int i = 0; i < KEYS * EACH; i++)
        assert_int_equal(seen[i], 1);
    assert_int_equal(server_requests(&server), KEYS * EACH);
    assert_int_equal(outbox_total(outbox), 0);
    free(got);
    outbox_destroy(&outbox);
    server_stop(&server);
}

/* Destroying with transfers in flight frees them and reports none. */
static void test_destroy_in_flight(void **state)
{
    (void)state;
    http_server_t server;
    server_start(&server);
    char err[256];
    url_policy_t *policy = url_policy_new("127.0.0.1", err, sizeof err);
    outbox_t *outbox = outbox_for_test(policy, 0);
    collected_t *got = collected_new();
    post_to(outbox, "S", server.port, "/hold", NULL);
    outbox_post_t refused = {.key = "T", .url = "http://10.0.0.1/"};
    assert_int_equal(outbox_post(outbox, &refused), 0);
    int64_t deadline = now_ms() + 10000;
    while (server_held(&server) == 0 && now_ms() < deadline)
        outbox_run(outbox, 50, collect, got);
    assert_int_equal(server_held(&server), 1);
    assert_int_equal(got->count, 1); /* the refused one */
    assert_true(got->results[0].refused);
    outbox_destroy(&outbox);
    assert_int_equal(got->count, 1);
    url_policy_destroy(&policy);
    free(got);
    server_stop(&server);
}

typedef struct {
    outbox_t *outbox;
} waker_t;

static void *waker(void *arg)
{
    waker_t *w = arg;
    /* Give the main thread time to be inside its wait, so that the wake
     * usually interrupts a wait under way; woken earlier, the wait ends at
     * once all the same, and the test holds either way. */
    struct timespec pause = {.tv_nsec = 100 * 1000000};
    nanosleep(&pause, NULL);
    outbox_wakeup(w->outbox);
    return NULL;
}

static void test_wakeup(void **state)
{
    (void)state;
    outbox_t *outbox = outbox_for_test(NULL, 0);
    waker_t w = {.outbox = outbox};
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, waker, &w), 0);
    int64_t start = now_ms();
    assert_int_equal(outbox_run(outbox, 30000, collect, NULL), 0);
    int64_t took = now_ms() - start;
    pthread_join(thread, NULL);
    if (took > 10000)
        fail_msg("outbox_run waited %lld ms after a wakeup", (long long)took);
    outbox_wakeup(NULL);
    outbox_destroy(&outbox);
}

/* ======================== SMTP ========================================== */

typedef struct {
    pid_t pid;
    int out_fd; /* its stdout */
    char buf[4096];
    size_t len;
    int port;
} sink_t;

/* The next line of the sink's stdout (without its end), within
 * deadline_ms; fails the test otherwise. */
static void sink_line(sink_t *sink, char *line, size_t size, int deadline_ms)
{
    int64_t deadline = now_ms() + deadline_ms;
    while (true) {
        char *eol = memchr(sink->buf, '\n', sink->len);
        if (eol) {
            size_t n = (size_t)(eol - sink->buf);
            snprintf(line, size, "%.*s", (int)n, sink->buf);
            memmove(sink->buf, eol + 1, sink->len - n - 1);
            sink->len -= n + 1;
            return;
        }
        int64_t left = deadline - now_ms();
        if (left <= 0 || sink->len == sizeof sink->buf)
            fail_msg("no line from the SMTP sink (have \"%.*s\")", (int)sink->len, sink->buf);
        struct pollfd pfd = {.fd = sink->out_fd, .events = POLLIN};
        if (poll(&pfd, 1, (int)left) <= 0)
            continue;
        ssize_t n = read(sink->out_fd, sink->buf + sink->len, sizeof sink->buf - sink->len);
        if (n <= 0)
            fail_msg("the SMTP sink closed its output");
        sink->len += (size_t)n;
    }
}

static void sink_start(sink_t *sink, const char *dir, const char *reject_first)
{
    memset(sink, 0, sizeof *sink);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    const char *binary = harness_bin("tools/passerelle-smtp-sink");
    char path[1024];
    snprintf(path, sizeof path, "%s", binary);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* A test that fails part way must not leave the sink behind. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]);
        close(fds[1]);
        char *argv[] = {
            path, "--port", "0", "--out", (char *)dir, "--reject-first", (char *)reject_first,
            NULL};
        execv(path, argv);
        _exit(127);
    }
    close(fds[1]);
    sink->pid = pid;
    sink->out_fd = fds[0];
    char line[256];
    sink_line(sink, line, sizeof line, 10000);
    if (sscanf(line, "listening on smtp://127.0.0.1:%d", &sink->port) != 1 || sink->port <= 0)
        fail_msg("unexpected first line from the sink: %s", line);
    char expect[64];
    snprintf(expect, sizeof expect, "listening on smtp://127.0.0.1:%d", sink->port);
    assert_string_equal(line, expect);
}

static void sink_stop(sink_t *sink)
{
    kill(sink->pid, SIGTERM);
    int status = 0;
    assert_int_equal(waitpid(sink->pid, &status, 0), sink->pid);
    close(sink->out_fd);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("the SMTP sink did not exit cleanly on SIGTERM (status %d)", status);
}

/* A raw SMTP conversation: reads until a final reply line (code and a
 * space), returns the whole reply. */
static void smtp_expect(int fd, const char *send_text, const char *code, char *reply, size_t size)
{
    if (send_text)
        assert_int_equal(send(fd, send_text, strlen(send_text), MSG_NOSIGNAL),
                         (ssize_t)strlen(send_text));
    size_t len = 0;
    int64_t deadline = now_ms() + 5000;
    reply[0] = '\0';
    while (true) {
        /* Complete when the last line received is a final one. */
        if (len >= 2 && reply[len - 1] == '\n') {
            char *last = reply + len - 2;
            while (last > reply && last[-1] != '\n')
                last--;
            if (strlen(last) >= 4 && last[3] == ' ')
                break;
        }
        int64_t left = deadline - now_ms();
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
            fail_msg("no reply to %s (have \"%s\")", send_text ? send_text : "(connect)", reply);
        ssize_t n = recv(fd, reply + len, size - len - 1, 0);
        if (n <= 0)
            fail_msg("connection closed waiting for a reply to %s", send_text);
        len += (size_t)n;
        reply[len] = '\0';
    }
    if (strncmp(reply, code, 3) != 0)
        fail_msg("%s: expected %s, got \"%s\"", send_text ? send_text : "(connect)", code, reply);
}

static const char digest_message[] = "From: Passerelle <passerelle@example.org>\r\n"
                                     "To: correspondant@example.org\r\n"
                                     "Subject: =?UTF-8?Q?R=C3=A9capitulatif?= du jour\r\n"
                                     "MIME-Version: 1.0\r\n"
                                     "Content-Type: text/plain; charset=utf-8\r\n"
                                     "Content-Transfer-Encoding: 8bit\r\n"
                                     "\r\n"
                                     "Conventions envisag\xc3\xa9"
                                     "es aujourd'hui : 2\r\n"
                                     ".a line that starts with a dot\r\n"
                                     ".\r\n"
                                     "..\r\n"
                                     "the line above was a lone dot, and two dots\r\n";

static void test_mail_to_sink(void **state)
{
    (void)state;
    char *dir = harness_tempdir("smtp");
    assert_non_null(dir);
    char out[512];
    snprintf(out, sizeof out, "%s/mail", dir);
    sink_t sink;
    sink_start(&sink, out, "1");

    outbox_t *outbox = outbox_for_test(NULL, 0);
    collected_t *got = collected_new();
    char url[128];
    snprintf(url, sizeof url, "smtp://127.0.0.1:%d/passerelle.test", sink.port);
    outbox_mail_t mail = {.key = "digest",
                          .url = url,
                          .from = "passerelle@example.org",
                          .to = "correspondant@example.org",
                          .message = digest_message,
                          .message_len = sizeof digest_message - 1,
                          .tag = &sink};

    /* The first message is refused for a while (--reject-first 1). */
    assert_int_equal(outbox_mail(outbox, &mail), 0);
    assert_int_equal(outbox_in_flight(outbox, "digest"), 1);
    drive(outbox, got, 1, 10000);
    assert_int_equal(got->results[0].status, 451);
    assert_true(strlen(got->results[0].error) > 0);
    assert_non_null(strstr(got->results[0].response, "451"));
    assert_false(got->results[0].refused);

    /* The retry arrives, intact. */
    assert_int_equal(outbox_mail(outbox, &mail), 0);
    drive(outbox, got, 2, 10000);
    const outbox_result_t *r = &got->results[1];
    assert_ptr_equal(r->tag, &sink);
    assert_int_equal(r->status, 250);
    assert_string_equal(r->error, "");
    assert_non_null(strstr(r->response, "queued as 000001"));
    assert_int_equal(r->retry_after_s, -1);

    char path[600];
    snprintf(path, sizeof path, "%s/000001.eml", out);
    size_t len = 0;
    char *saved = harness_file_read(path, &len);
    const char envelope[] = "X-Sink-Envelope-From: passerelle@example.org\r\n"
                            "X-Sink-Envelope-To: correspondant@example.org\r\n";
    assert_int_equal(len, sizeof envelope - 1 + sizeof digest_message - 1);
    assert_memory_equal(saved, envelope, sizeof envelope - 1);
    assert_memory_equal(saved + sizeof envelope - 1, digest_message, sizeof digest_message - 1);
    free(saved);

    char line[512], expect[512];
    sink_line(&sink, line, sizeof line, 5000);
    snprintf(expect, sizeof expect,
             "mail from passerelle@example.org to correspondant@example.org, %zu bytes, "
             "Subject: =?UTF-8?Q?R=C3=A9capitulatif?= du jour",
             sizeof digest_message - 1);
    assert_string_equal(line, expect);

    /* The commands curl does not use, spoken by hand. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)sink.port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&addr, sizeof addr), 0);
    char reply[2048];
    smtp_expect(fd, NULL, "220", reply, sizeof reply);
    smtp_expect(fd, "MAIL FROM:<a@example.org>\r\n", "503", reply, sizeof reply);
    smtp_expect(fd, "EHLO test.example\r\n", "250", reply, sizeof reply);
    assert_non_null(strstr(reply, "250-8BITMIME"));
    assert_non_null(strstr(reply, "SIZE "));
    smtp_expect(fd, "NOOP\r\n", "250", reply, sizeof reply);
    smtp_expect(fd, "BOGUS\r\n", "500", reply, sizeof reply);
    smtp_expect(fd, "DATA\r\n", "503", reply, sizeof reply);
    smtp_expect(fd, "MAIL FROM:<a@example.org>\r\n", "250", reply, sizeof reply);
    smtp_expect(fd, "RCPT TO:<dropped@example.org>\r\n", "250", reply, sizeof reply);
    smtp_expect(fd, "RSET\r\n", "250", reply, sizeof reply);
    smtp_expect(fd, "RCPT TO:<b@example.org>\r\n", "503", reply, sizeof reply);
    smtp_expect(fd, "MAIL FROM:<a@example.org> SIZE=99999999999\r\n", "552", reply, sizeof reply);
    smtp_expect(fd, "mail from:<a@example.org>\r\n", "250", reply, sizeof reply);
    smtp_expect(fd, "RCPT TO:<b@example.org>\r\n", "250", reply, sizeof reply);
    smtp_expect(fd, "RCPT TO:<c@example.org>\r\n", "250", reply, sizeof reply);
    smtp_expect(fd, "DATA\r\n", "354", reply, sizeof reply);
    smtp_expect(fd, "Subject: by hand\r\n\r\n..stuffed\r\nplain\r\n.\r\n", "250", reply,
                sizeof reply);
    char long_line[9000];
    memset(long_line, 'x', sizeof long_line - 3);
    memcpy(long_line + sizeof long_line - 3, "\r\n", 3);
    smtp_expect(fd, long_line, "500", reply, sizeof reply);
    smtp_expect(fd, "NOOP\r\n", "250", reply, sizeof reply);
    smtp_expect(fd, "QUIT\r\n", "221", reply, sizeof reply);
    close(fd);

    snprintf(path, sizeof path, "%s/000002.eml", out);
    saved = harness_file_read(path, &len);
    assert_string_equal(saved, "X-Sink-Envelope-From: a@example.org\r\n"
                               "X-Sink-Envelope-To: b@example.org, c@example.org\r\n"
                               "Subject: by hand\r\n\r\n.stuffed\r\nplain\r\n");
    free(saved);
    sink_line(&sink, line, sizeof line, 5000);
    snprintf(expect, sizeof expect,
             "mail from a@example.org to b@example.org, c@example.org, %zu bytes, "
             "Subject: by hand",
             strlen("Subject: by hand\r\n\r\n.stuffed\r\nplain\r\n"));
    assert_string_equal(line, expect);

    sink_stop(&sink);

    /* A sink started again on the folder numbers after what is there. */
    sink_start(&sink, out, "0");
    outbox_mail_t again = mail;
    again.url = url;
    snprintf(url, sizeof url, "smtp://127.0.0.1:%d/", sink.port);
    assert_int_equal(outbox_mail(outbox, &again), 0);
    drive(outbox, got, 3, 10000);
    assert_int_equal(got->results[2].status, 250);
    assert_non_null(strstr(got->results[2].response, "queued as 000003"));
    snprintf(path, sizeof path, "%s/000003.eml", out);
    saved = harness_file_read(path, &len);
    assert_int_equal(len, sizeof envelope - 1 + sizeof digest_message - 1);
    free(saved);
    sink_stop(&sink);

    free(got);
    outbox_destroy(&outbox);
    harness_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_post_body_and_headers),
        cmocka_unit_test(test_invalid_arguments),
        cmocka_unit_test(test_status_response_and_retry_after),
        cmocka_unit_test(test_parse_retry_after),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_connection_refused),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_policy),
        cmocka_unit_test(test_keep_alive),
        cmocka_unit_test(test_many_concurrent),
        cmocka_unit_test(test_destroy_in_flight),
        cmocka_unit_test(test_wakeup),
        cmocka_unit_test(test_mail_to_sink),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
