/* The operations ports of the services, end to end: the real binaries,
 * each with its HTTP port chosen at run time (read from its "http
 * listening" log line), and what operations alert on.
 *   reservations  /healthz, /readyz, the requests it answered counted in
 *                 /metrics with their status; Redis gone: /readyz 503
 *                 naming it while /healthz stays 200, the loss counted;
 *                 Redis back: 200 again, the reconnects counted;
 *   docstore      the transfer bytes equal to the sizes put and got, the
 *                 uploads in progress;
 *   notifications a webhook delivery to a sink counted delivered, the
 *                 measured promise observed, its consumer groups caught up;
 *   indicators    its consumer stopped (SIGSTOP, then held by a Redis
 *                 CLIENT PAUSE of writes): the lag equal to the events
 *                 written meanwhile, /readyz 503 naming the stalled
 *                 consumer; released: caught up, 200 again. */
#include "harness.h"
#include "ids.h"
#include "reservations.pb-c.h"

#include <curl/curl.h>
#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define WAIT_MS 20000

typedef struct {
    long status; /* 0: no answer */
    char body[65536];
    size_t body_len;
} answer_t;

static char reservations_http_env[] = "PASSERELLE_RESERVATIONS_HTTP_ENDPOINT=127.0.0.1:0";
static char docstore_http_env[] = "PASSERELLE_DOCSTORE_HTTP_ENDPOINT=127.0.0.1:0";
static char notifications_http_env[] = "PASSERELLE_NOTIFICATIONS_HTTP_ENDPOINT=127.0.0.1:0";
static char indicators_http_env[] = "PASSERELLE_INDICATORS_HTTP_ENDPOINT=127.0.0.1:0";
/* A consumer that has not passed for a second is stalled: the test need
 * not wait the default 30 s to see it. */
static char stall_env[] = "PASSERELLE_CONSUMER_STALL_S=1";

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static size_t on_body(char *data, size_t size, size_t count, void *arg)
{
    answer_t *answer = arg;
    size_t len = size * count;
    size_t room = sizeof answer->body - 1 - answer->body_len;
    size_t kept = len < room ? len : room;
    memcpy(answer->body + answer->body_len, data, kept);
    answer->body_len += kept;
    answer->body[answer->body_len] = '\0';
    return len;
}

static void fetch(int port, const char *path, answer_t *answer)
{
    memset(answer, 0, sizeof *answer);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    CURL *curl = curl_easy_init();
    assert_non_null(curl);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, answer);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");
    if (curl_easy_perform(curl) == CURLE_OK)
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &answer->status);
    curl_easy_cleanup(curl);
}

/* The port of the service's "http listening" line, waited for; fails the
 * test if none comes. */
static int http_port(const harness_service_t *service)
{
    for (int64_t deadline = now_ms() + WAIT_MS; now_ms() < deadline; usleep(20000)) {
        FILE *log = fopen(service->log_path, "r");
        if (!log)
            continue;
        int port = 0;
        char *line = NULL;
        size_t cap = 0;
        while (!port && getline(&line, &cap, log) != -1) {
            json_t *obj = json_loads(line, 0, NULL);
            const char *msg = obj ? json_string_value(json_object_get(obj, "msg")) : NULL;
            if (msg && strcmp(msg, "http listening") == 0)
                port = (int)json_integer_value(json_object_get(obj, "port"));
            json_decref(obj);
        }
        free(line);
        fclose(log);
        if (port > 0 && port < 65536)
            return port;
    }
    fail_msg("no \"http listening\" line with a port in %s", service->log_path);
    return 0;
}

/* The value of the sample `series` (name and labels, as rendered) in a
 * metrics page; NAN when the page has no such line. */
static double sample(const char *page, const char *series)
{
    size_t len = strlen(series);
    for (const char *line = page; *line;) {
        if (strncmp(line, series, len) == 0 && line[len] == ' ')
            return strtod(line + len + 1, NULL);
        const char *next = strchr(line, '\n');
        if (!next)
            break;
        line = next + 1;
    }
    return NAN;
}

/* Scrapes until the sample equals want; fails, showing the page, past the
 * deadline. The page it saw last stays in answer. */
static void expect_sample(int port, const char *series, double want, answer_t *answer)
{
    double got = NAN;
    for (int64_t deadline = now_ms() + WAIT_MS; now_ms() < deadline; usleep(20000)) {
        fetch(port, "/metrics", answer);
        got = answer->status == 200 ? sample(answer->body, series) : NAN;
        if (got == want)
            return;
    }
    fail_msg("%s is %g, not %g, in:\n%s", series, got, want, answer->body);
}

/* Probes /readyz until it is 200 (needle NULL) or 503 with needle in its
 * body; fails past the deadline. */
static void expect_ready(int port, const char *needle, answer_t *answer)
{
    for (int64_t deadline = now_ms() + WAIT_MS; now_ms() < deadline; usleep(20000)) {
        fetch(port, "/readyz", answer);
        if (needle ? answer->status == 503 && strstr(answer->body, needle) != NULL
                   : answer->status == 200)
            return;
    }
    fail_msg("/readyz is %ld \"%s\", waiting for %s", answer->status, answer->body,
             needle ? needle : "200");
}

static int setup_stack(void **state)
{
    harness_stack_t *stack = calloc(1, sizeof *stack);
    if (!stack)
        return -1;
    *state = stack;
    char *env[] = {reservations_http_env, NULL};
    return harness_stack_start(stack, "health", "operator", env);
}

static int teardown_stack(void **state)
{
    int rc = harness_stack_teardown(state);
    free(*state);
    *state = NULL;
    return rc;
}

/* ======================== reservations ================================= */

static void test_reservations(void **state)
{
    harness_stack_t *stack = *state;
    int port = http_port(&stack->service);

    answer_t *answer = calloc(1, sizeof *answer);
    assert_non_null(answer);
    fetch(port, "/healthz", answer);
    assert_int_equal(answer->status, 200);
    assert_string_equal(answer->body, "ok\n");
    expect_ready(port, NULL, answer);
    assert_string_equal(answer->body, "ready\n");

    Passerelle__HealthRequest health = PASSERELLE__HEALTH_REQUEST__INIT;
    Passerelle__Reply *reply =
        harness_call(stack->client, "health", &health.base, PASSERELLE__STATUS__STATUS_OK, NULL);
    passerelle__reply__free_unpacked(reply, NULL);
    char missing[ID_LEN];
    id_new('U', missing);
    Passerelle__UnitGetRequest get = PASSERELLE__UNIT_GET_REQUEST__INIT;
    get.id = missing;
    reply = harness_call(stack->client, "unit.get", &get.base, PASSERELLE__STATUS__STATUS_NOT_FOUND,
                         "id");
    passerelle__reply__free_unpacked(reply, NULL);

    /* The reply leaves before the count is made: poll for it. */
    expect_sample(port, "passerelle_requests_total{type=\"unit.get\",status=\"NOT_FOUND\"}", 1,
                  answer);
    assert_non_null(strstr(answer->body, "# TYPE passerelle_requests_total counter\n"));
    assert_true(sample(answer->body, "passerelle_requests_total{type=\"health\",status=\"OK\"}") >=
                1);
    assert_true(
        sample(answer->body, "passerelle_request_duration_seconds_count{type=\"unit.get\"}") == 1);
    assert_true(sample(answer->body, "passerelle_request_duration_seconds_bucket{type="
                                     "\"unit.get\",le=\"+Inf\"}") == 1);
    assert_non_null(strstr(answer->body, "# TYPE passerelle_redis_errors_total counter\n"));
    double lost = sample(answer->body, "passerelle_redis_errors_total{kind=\"lost\"}");
    double reconnects = sample(answer->body, "passerelle_redis_reconnects_total");
    assert_true(lost >= 0 && reconnects >= 0);
    /* It reads no stream: no consumer families have a sample. */
    assert_null(strstr(answer->body, "passerelle_consumer_lag{"));

    /* Redis gone: not ready, with the reason; still alive; the loss seen. */
    harness_redis_kill(&stack->redis);
    expect_ready(port, "redis: ", answer);
    assert_non_null(strstr(answer->body, "not ready: redis: "));
    fetch(port, "/healthz", answer);
    assert_int_equal(answer->status, 200);
    fetch(port, "/metrics", answer);
    assert_int_equal(answer->status, 200);
    assert_true(sample(answer->body, "passerelle_redis_errors_total{kind=\"lost\"}") > lost);

    /* Back: ready again by itself, and the connection made again counted. */
    assert_int_equal(harness_redis_restart(&stack->redis), 0);
    expect_ready(port, NULL, answer);
    fetch(port, "/metrics", answer);
    assert_true(sample(answer->body, "passerelle_redis_reconnects_total") > reconnects);
    free(answer);
}

/* ======================== docstore ===================================== */

static void test_docstore_bytes(void **state)
{
    harness_stack_t *stack = *state;
    char volume[600], volume_env[700];
    snprintf(volume, sizeof volume, "%s/volume", stack->dir);
    snprintf(volume_env, sizeof volume_env, "PASSERELLE_DOCSTORE_DIR=%s", volume);
    char *env[] = {docstore_http_env, volume_env, NULL};
    harness_service_t docstore;
    memset(&docstore, 0, sizeof docstore);
    assert_int_equal(harness_service_start(&docstore, "docstore", stack->dir, env), 0);
    int port = http_port(&docstore);
    client_t *client = harness_client(docstore.endpoint, stack->keys, "metropole", 10000, 0);
    assert_non_null(client);
    answer_t *answer = calloc(1, sizeof *answer);
    assert_non_null(answer);
    expect_ready(port, NULL, answer);
    expect_sample(port, "passerelle_docstore_bytes_total{direction=\"in\"}", 0, answer);
    assert_true(sample(answer->body, "passerelle_docstore_bytes_total{direction=\"out\"}") == 0);
    assert_true(sample(answer->body, "passerelle_docstore_uploads_in_progress") == 0);
    assert_non_null(strstr(answer->body, "# TYPE passerelle_docstore_uploads_in_progress gauge\n"));

    /* Two chunks, the second short; then read back whole. */
    size_t size = HARNESS_DOC_CHUNK + HARNESS_DOC_CHUNK / 2 + 123;
    uint8_t *bytes = harness_pattern(size, 7, 3);
    Passerelle__UploadBeginRequest begin = PASSERELLE__UPLOAD_BEGIN_REQUEST__INIT;
    harness_doc_begin_request(&begin, "Diagnostic emploi logement CT2", size, NULL, 1);
    char sha[65], read_sha[65];
    char *doc = harness_doc_put(client, &begin, bytes, size, sha);
    expect_sample(port, "passerelle_docstore_bytes_total{direction=\"in\"}", (double)size, answer);
    assert_int_equal(harness_doc_read_all(client, doc, 0, read_sha, NULL, NULL), size);
    assert_string_equal(read_sha, sha);
    expect_sample(port, "passerelle_docstore_bytes_total{direction=\"out\"}", (double)size, answer);
    assert_true(sample(answer->body, "passerelle_docstore_bytes_total{direction=\"in\"}") ==
                (double)size);
    assert_true(sample(answer->body, "passerelle_docstore_uploads_in_progress") == 0);

    /* An upload begun and not finished is in progress; a part of it sent
     * counts in. */
    char small_sha[65];
    harness_sha256_hex(bytes, 1000, small_sha);
    harness_doc_begin_request(&begin, "Compte rendu", 1000, small_sha, 2);
    char *upload = harness_doc_begin(client, &begin, NULL);
    harness_doc_chunk(client, upload, 0, bytes, 400);
    expect_sample(port, "passerelle_docstore_uploads_in_progress", 1, answer);
    assert_true(sample(answer->body, "passerelle_docstore_bytes_total{direction=\"in\"}") ==
                (double)size + 400);

    free(upload);
    free(doc);
    free(bytes);
    free(answer);
    client_destroy(&client);
    assert_true(harness_service_stop_checked(&docstore));
}

/* ======================== notifications ================================ */

static void test_notifications_delivered(void **state)
{
    harness_stack_t *stack = *state;
    char *env[] = {notifications_http_env, NULL};
    harness_service_t notify;
    memset(&notify, 0, sizeof notify);
    assert_int_equal(harness_notify_start(stack, &notify, env), 0);
    int port = http_port(&notify);
    client_t *al = harness_notify_client(stack, &notify, "action_logement");
    assert_non_null(al);
    harness_proc_t sink;
    memset(&sink, 0, sizeof sink);
    char sink_out[512];
    assert_int_equal(harness_sink_start(&sink, stack->dir, "health-sink", NULL, "ok", sink_out), 0);
    answer_t *answer = calloc(1, sizeof *answer);
    assert_non_null(answer);
    /* Its readers, the digest's among them, run. */
    expect_ready(port, NULL, answer);

    harness_notify_webhook(al, sink.url, "convention.envisaged", "", NULL, NULL);
    char unit[ID_LEN];
    harness_envisaged_unit(stack->client, "ANAH-HEALTH-1", "Pertuis", unit);
    json_t *lines = harness_jsonl_wait(sink_out, 1, WAIT_MS);
    assert_int_equal(json_array_size(lines), 1);
    json_decref(lines);

    expect_sample(port, "passerelle_deliveries_total{channel=\"webhook\",outcome=\"delivered\"}", 1,
                  answer);
    assert_true(sample(answer->body, "passerelle_envisaged_delivery_seconds_count") == 1);
    assert_true(sample(answer->body, "passerelle_envisaged_delivery_seconds_bucket{le=\"+Inf\"}") ==
                1);
    assert_true(sample(answer->body,
                       "passerelle_delivery_attempt_seconds_count{channel=\"webhook\"}") == 1);
    assert_true(isnan(sample(
        answer->body, "passerelle_deliveries_total{channel=\"webhook\",outcome=\"retry\"}")));
    /* The fan-out read both events (the unit's and its convention's) and
     * acknowledged them: nothing left, nothing pending. */
    expect_sample(port,
                  "passerelle_consumer_lag{stream=\"reservations:events\",group=\"notifications\"}",
                  0, answer);
    assert_true(sample(answer->body, "passerelle_consumer_pending{stream=\"reservations:events\","
                                     "group=\"notifications\"}") == 0);
    assert_true(sample(answer->body, "passerelle_events_handled_total{stream=\"reservations:"
                                     "events\",group=\"notifications\"}") >= 2);
    assert_false(
        isnan(sample(answer->body, "passerelle_consumer_lag{stream=\"reservations:events\","
                                   "group=\"notifications.digest\"}")));

    free(answer);
    client_destroy(&al);
    harness_proc_stop(&sink, SIGTERM);
    assert_true(harness_service_stop_checked(&notify));
}

/* ======================== indicators =================================== */

typedef struct {
    harness_indicators_t ind; /* first, as the fixture wants */
} ind_fixture_t;

static int setup_indicators(void **state)
{
    char *env[] = {indicators_http_env, stall_env, NULL};
    return harness_indicators_setup(state, sizeof(ind_fixture_t), "health-ind", env);
}

/* Whatever the test left: the service running again (a stopped process
 * would not hear SIGTERM), Redis taking writes. */
static int teardown_indicators(void **state)
{
    ind_fixture_t *f = *state;
    if (f && f->ind.indicators.pid > 0)
        kill(f->ind.indicators.pid, SIGCONT);
    if (f && f->ind.store)
        store_command(f->ind.store, NULL, "CLIENT UNPAUSE");
    return harness_indicators_teardown(state);
}

/* True when every thread of pid is stopped (state T). */
static bool all_stopped(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *dir = opendir(path);
    if (!dir)
        return false;
    bool stopped = true;
    struct dirent *entry;
    while (stopped && (entry = readdir(dir)) != NULL) {
        if (entry->d_name[0] == '.')
            continue;
        char stat_path[400], text[512] = "";
        snprintf(stat_path, sizeof stat_path, "%s/%s/stat", path, entry->d_name);
        FILE *f = fopen(stat_path, "r");
        if (f) {
            size_t n = fread(text, 1, sizeof text - 1, f);
            text[n] = '\0';
            fclose(f);
        }
        /* "pid (comm) S ...": the state follows the last ')'. */
        const char *paren = strrchr(text, ')');
        stopped = paren && (paren[2] == 'T' || paren[2] == 't');
    }
    closedir(dir);
    return stopped;
}

/* True when no client of Redis is blocked (an XREADGROUP BLOCK waiting):
 * no line of CLIENT LIST has a 'b' among its flags. */
static bool none_blocked(store_t *store)
{
    redisReply *reply = NULL;
    assert_int_equal(store_command(store, &reply, "CLIENT LIST"), STORE_OK);
    bool none = true;
    char *save = NULL;
    for (char *line = strtok_r(reply->str, "\n", &save); none && line;
         line = strtok_r(NULL, "\n", &save)) {
        const char *flags = strstr(line, " flags=");
        if (!flags)
            continue;
        flags += strlen(" flags=");
        none = memchr(flags, 'b', strcspn(flags, " ")) == NULL;
    }
    freeReplyObject(reply);
    return none;
}

static long long stream_length(store_t *store, const char *stream)
{
    redisReply *reply = NULL;
    assert_int_equal(store_command(store, &reply, "XLEN %s", stream), STORE_OK);
    long long length = reply->integer;
    freeReplyObject(reply);
    return length;
}

static void test_indicators_lag_and_stall(void **state)
{
    ind_fixture_t *f = *state;
    pid_t pid = f->ind.indicators.pid;
    int port = http_port(&f->ind.indicators);
    answer_t *answer = calloc(1, sizeof *answer);
    assert_non_null(answer);
    const char *lag =
        "passerelle_consumer_lag{stream=\"reservations:events\",group=\"indicators\"}";
    const char *pending =
        "passerelle_consumer_pending{stream=\"reservations:events\",group=\"indicators\"}";
    const char *handled =
        "passerelle_events_handled_total{stream=\"reservations:events\",group=\"indicators\"}";

    /* A quiet moment: everything read and counted. */
    char unit[ID_LEN];
    harness_envisaged_unit(f->ind.stack.client, "ANAH-LAG-0", "Pertuis", unit);
    expect_ready(port, NULL, answer);
    expect_sample(port, lag, 0, answer);
    expect_sample(port, pending, 0, answer);
    double handled_before = sample(answer->body, handled);
    assert_true(handled_before >= 2);

    /* The reader stopped, and no read of it left waiting in Redis (a
     * BLOCK it sent before the stop ends within 200 ms, empty). */
    assert_int_equal(kill(pid, SIGSTOP), 0);
    for (int64_t deadline = now_ms() + WAIT_MS; !all_stopped(pid); usleep(5000))
        if (now_ms() > deadline)
            fail_msg("the indicators service did not stop");
    for (int64_t deadline = now_ms() + WAIT_MS; !none_blocked(f->ind.store); usleep(20000))
        if (now_ms() > deadline)
            fail_msg("a Redis client stays blocked");
    long long before = stream_length(f->ind.store, "reservations:events");
    harness_envisaged_unit(f->ind.stack.client, "ANAH-LAG-1", "Pertuis", unit);
    harness_envisaged_unit(f->ind.stack.client, "ANAH-LAG-2", "Aubagne", unit);
    long long written = stream_length(f->ind.store, "reservations:events") - before;
    assert_int_equal(written, 4);

    /* Writes held: the reader runs again but cannot read (XREADGROUP
     * writes to the group), while the operations port still answers
     * (PING, XINFO read). */
    assert_int_equal(store_command(f->ind.store, NULL, "CLIENT PAUSE 60000 WRITE"), STORE_OK);
    assert_int_equal(kill(pid, SIGCONT), 0);
    expect_sample(port, lag, (double)written, answer);
    assert_true(sample(answer->body, pending) == 0);
    expect_ready(port, "consumer indicators@reservations:events stalled ", answer);
    assert_non_null(strstr(answer->body, "not ready: "));
    fetch(port, "/healthz", answer);
    assert_int_equal(answer->status, 200);

    /* Released: it catches up, and is ready again. */
    assert_int_equal(store_command(f->ind.store, NULL, "CLIENT UNPAUSE"), STORE_OK);
    expect_ready(port, NULL, answer);
    expect_sample(port, lag, 0, answer);
    expect_sample(port, pending, 0, answer);
    assert_true(sample(answer->body, handled) >= handled_before + (double)written);
    harness_indicators_expect_counter(f->ind.store, "c:conventions.envisaged:all:all", "*", 3,
                                      WAIT_MS);
    free(answer);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_reservations, setup_stack, teardown_stack),
        cmocka_unit_test_setup_teardown(test_docstore_bytes, setup_stack, teardown_stack),
        cmocka_unit_test_setup_teardown(test_notifications_delivered, setup_stack, teardown_stack),
        cmocka_unit_test_setup_teardown(test_indicators_lag_and_stall, setup_indicators,
                                        teardown_indicators),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return failed;
}
