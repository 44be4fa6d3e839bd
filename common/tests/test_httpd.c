/* The operations HTTP server against libcurl on a port the system picks:
 * health, readiness both ways, the metrics page and its content type, 404
 * and 405, and endpoints it refuses; then a service's operations port
 * (ops_*) against a real redis-server: every readiness check, a consumer
 * group's lag and pending count, the stores' counts, collectors. */
#include "eventlog.h"
#include "harness.h"
#include "httpd.h"
#include "log.h"
#include "metrics.h"

#include <curl/curl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

typedef struct {
    long status;
    char body[8192];
    size_t body_len;
    char content_type[128];
    char allow[64];
} answer_t;

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

static size_t on_header(char *data, size_t size, size_t count, void *arg)
{
    answer_t *answer = arg;
    size_t len = size * count;
    char line[256];
    size_t kept = len < sizeof line - 1 ? len : sizeof line - 1;
    memcpy(line, data, kept);
    line[kept] = '\0';
    line[strcspn(line, "\r\n")] = '\0';
    if (strncasecmp(line, "Content-Type: ", 14) == 0)
        snprintf(answer->content_type, sizeof answer->content_type, "%.*s",
                 (int)sizeof answer->content_type - 1, line + 14);
    if (strncasecmp(line, "Allow: ", 7) == 0)
        snprintf(answer->allow, sizeof answer->allow, "%.*s", (int)sizeof answer->allow - 1,
                 line + 7);
    return len;
}

/* One request to address ("127.0.0.1:port"); method NULL is GET. */
static answer_t fetch_at(const char *address, const char *method, const char *path)
{
    answer_t answer;
    memset(&answer, 0, sizeof answer);
    char url[128];
    snprintf(url, sizeof url, "http://%s%s", address, path);
    CURL *curl = curl_easy_init();
    assert_non_null(curl);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &answer);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, &answer);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");
    if (method && strcmp(method, "POST") == 0)
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, "x=1");
    else if (method)
        curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    assert_int_equal(curl_easy_perform(curl), CURLE_OK);
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &answer.status);
    curl_easy_cleanup(curl);
    return answer;
}

static answer_t fetch(const httpd_t *server, const char *method, const char *path)
{
    return fetch_at(httpd_address(server), method, path);
}

typedef struct {
    bool ready;
    int calls;
} readiness_t;

static bool check_ready(void *arg, char *why, size_t why_size)
{
    readiness_t *readiness = arg;
    readiness->calls++;
    if (!readiness->ready)
        snprintf(why, why_size, "redis: connection refused");
    return readiness->ready;
}

static void test_endpoints(void **state)
{
    (void)state;
    metrics_t *metrics = metrics_new();
    const char *labels[] = {"type"};
    metric_t *counter = metrics_counter(metrics, "t_requests_total", "Requests.", labels, 1);
    metric_add(counter, (const char *[]){"health"}, 2);
    readiness_t readiness = {.ready = true};
    httpd_t *server = httpd_new("127.0.0.1:0", metrics, check_ready, &readiness);
    assert_non_null(server);
    assert_true(httpd_port(server) > 0);
    char expected[64];
    snprintf(expected, sizeof expected, "127.0.0.1:%u", (unsigned)httpd_port(server));
    assert_string_equal(httpd_address(server), expected);

    answer_t answer = fetch(server, NULL, "/healthz");
    assert_int_equal(answer.status, 200);
    assert_string_equal(answer.body, "ok\n");

    answer = fetch(server, NULL, "/readyz");
    assert_int_equal(answer.status, 200);
    assert_string_equal(answer.body, "ready\n");
    readiness.ready = false;
    answer = fetch(server, NULL, "/readyz");
    assert_int_equal(answer.status, 503);
    assert_string_equal(answer.body, "not ready: redis: connection refused\n");
    assert_int_equal(readiness.calls, 2);

    answer = fetch(server, NULL, "/metrics");
    assert_int_equal(answer.status, 200);
    assert_non_null(strstr(answer.content_type, "text/plain; version=0.0.4"));
    assert_string_equal(answer.body, "# HELP t_requests_total Requests.\n"
                                     "# TYPE t_requests_total counter\n"
                                     "t_requests_total{type=\"health\"} 2\n");
    /* The page is rendered per scrape: a later count shows. */
    metric_add(counter, (const char *[]){"health"}, 1);
    answer = fetch(server, NULL, "/metrics");
    assert_non_null(strstr(answer.body, "t_requests_total{type=\"health\"} 3\n"));

    answer = fetch(server, NULL, "/nowhere");
    assert_int_equal(answer.status, 404);
    answer = fetch(server, NULL, "/");
    assert_int_equal(answer.status, 404);
    answer = fetch(server, "POST", "/metrics");
    assert_int_equal(answer.status, 405);
    assert_string_equal(answer.allow, "GET, HEAD");
    answer = fetch(server, "DELETE", "/healthz");
    assert_int_equal(answer.status, 405);

    httpd_destroy(&server);
    assert_null(server);
    httpd_destroy(&server);
    metrics_destroy(&metrics);
}

static void test_without_registry_or_readiness(void **state)
{
    (void)state;
    httpd_t *server = httpd_new("127.0.0.1:0", NULL, NULL, NULL);
    assert_non_null(server);
    answer_t answer = fetch(server, NULL, "/readyz");
    assert_int_equal(answer.status, 200);
    answer = fetch(server, NULL, "/metrics");
    assert_int_equal(answer.status, 200);
    assert_string_equal(answer.body, "");
    httpd_destroy(&server);
}

static void test_refused_endpoints(void **state)
{
    (void)state;
    const char *bad[] = {"",
                         "127.0.0.1",
                         ":80",
                         "127.0.0.1:",
                         "127.0.0.1:x",
                         "127.0.0.1:65536",
                         "localhost:0",
                         "127.0.0.1:-1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_null(httpd_new(bad[i], NULL, NULL, NULL));
    assert_null(httpd_new(NULL, NULL, NULL, NULL));
    /* A port in use is refused, not shared. */
    httpd_t *first = httpd_new("127.0.0.1:0", NULL, NULL, NULL);
    assert_non_null(first);
    assert_null(httpd_new(httpd_address(first), NULL, NULL, NULL));
    httpd_destroy(&first);
}

/* ======================== the operations port ========================== */

static harness_redis_t redis;

/* A GET of the operations port's path. */
static answer_t ops_fetch(const ops_t *ops, const char *path)
{
    char address[32];
    snprintf(address, sizeof address, "127.0.0.1:%u", (unsigned)ops_port(ops));
    return fetch_at(address, NULL, path);
}

/* Polls /readyz until its body holds needle (status 503) or, needle NULL,
 * until it is 200; fails past 10 s. Returns the last answer. */
static answer_t ready_wait(const ops_t *ops, const char *needle)
{
    answer_t answer;
    for (int i = 0; i < 1000; i++) {
        answer = ops_fetch(ops, "/readyz");
        if (needle ? answer.status == 503 && strstr(answer.body, needle) : answer.status == 200)
            return answer;
        usleep(10000);
    }
    fail_msg("/readyz never %s%s; last: %ld %s", needle ? "said " : "ready", needle ? needle : "",
             answer.status, answer.body);
    return answer;
}

static ops_t *ops_up(void)
{
    setenv("OPS_TEST_HTTP_ENDPOINT", "127.0.0.1:0", 1);
    setenv("PASSERELLE_CONSUMER_STALL_S", "1", 1);
    store_config_t cfg;
    harness_redis_config(&redis, &cfg);
    ops_t *ops = ops_start("OPS_TEST_HTTP_ENDPOINT", "127.0.0.1:9", &cfg);
    assert_non_null(ops);
    assert_true(ops_port(ops) > 0);
    return ops;
}

static store_t *test_store(void)
{
    store_config_t cfg;
    harness_redis_config(&redis, &cfg);
    store_t *store = store_new(&cfg);
    assert_non_null(store);
    return store;
}

/* The test's flags and counts are atomics: the HTTP thread reads them
 * while this one sets them (the request's round trip orders them, but
 * through a socket no race detector sees). */
static bool custom_check(void *arg, char *why, size_t why_size)
{
    atomic_bool *ok = arg;
    bool now = atomic_load(ok);
    if (!now)
        snprintf(why, why_size, "broken on purpose");
    return now;
}

/* A batch handler that leaves every entry pending. */
static void leave_pending(void *arg, const consumer_entry_t *entries, size_t count, int *results)
{
    (void)arg;
    (void)entries;
    (void)count;
    (void)results;
}

/* /readyz through every check: keys until loaded and while the folder has
 * no authorized key, a watched consumer not started, running, stalled (no
 * beat for PASSERELLE_CONSUMER_STALL_S), running again, stopped; a check
 * of the main's; Redis gone; every failure named at once. */
static void test_ops_readiness(void **state)
{
    (void)state;
    ops_t *ops = ops_up();
    answer_t answer = ready_wait(ops, "keys: not loaded yet");
    assert_string_equal(answer.body, "not ready: keys: not loaded yet\n");

    char *dir = harness_tempdir("ops-keys");
    ops_keys_loaded(ops, dir, false);
    answer = ready_wait(ops, "keys: cannot read");
    char keys[600];
    snprintf(keys, sizeof keys, "%s/keys", dir);
    assert_int_equal(harness_keys_make(keys), 0);
    ops_keys_loaded(ops, keys, false);
    ready_wait(ops, NULL);
    ops_keys_loaded(ops, "/nonexistent", true); /* insecure: nothing to read */
    answer = ready_wait(ops, NULL);
    assert_string_equal(answer.body, "ready\n");

    assert_true(ops_watch_consumer(ops, "ops:ready", "g"));
    answer = ready_wait(ops, "consumer g@ops:ready not started");
    store_t *store = test_store();
    consumer_config_t cfg = {.stream = "ops:ready", .group = "g", .consumer = "c"};
    consumer_t *consumer = consumer_new(store, &cfg);
    assert_non_null(consumer);
    ready_wait(ops, NULL);
    /* No pass for a second: stalled, then a poll brings it back. */
    answer = ready_wait(ops, "consumer g@ops:ready stalled ");
    long seconds = 0;
    char tail[8] = "";
    assert_int_equal(
        sscanf(answer.body, "not ready: consumer g@ops:ready stalled %ld %7s", &seconds, tail), 2);
    assert_true(seconds >= 1);
    assert_string_equal(tail, "s");
    assert_int_equal(consumer_poll_batch(consumer, 1, leave_pending, NULL), 0);
    ready_wait(ops, NULL);
    consumer_destroy(&consumer);
    ready_wait(ops, "consumer g@ops:ready stopped");

    atomic_bool ok = false;
    assert_true(ops_ready_check(ops, "custom", custom_check, &ok));
    harness_redis_kill(&redis);
    answer = ready_wait(ops, "custom: broken on purpose");
    assert_non_null(strstr(answer.body, "not ready: redis: "));
    assert_non_null(
        strstr(answer.body, "; consumer g@ops:ready stopped; custom: broken on purpose\n"));
    assert_int_equal(harness_redis_restart(&redis), 0);
    atomic_store(&ok, true);
    consumer = consumer_new(store, &cfg);
    ready_wait(ops, NULL);
    answer = ops_fetch(ops, "/healthz");
    assert_int_equal(answer.status, 200);

    /* Stopping: not ready any more, alive all the same. */
    ops_stopping(ops);
    answer = ready_wait(ops, "stopping: the service is draining");
    assert_int_equal(answer.status, 503);
    answer = ops_fetch(ops, "/healthz");
    assert_int_equal(answer.status, 200);

    consumer_destroy(&consumer);
    store_destroy(&store);
    ops_destroy(&ops);
    assert_null(ops);
    harness_rmtree(dir);
    free(dir);
}

static void count_scrapes(void *arg, store_t *store, metrics_t *metrics)
{
    atomic_int *scrapes = arg;
    int now = atomic_fetch_add(scrapes, 1) + 1;
    assert_non_null(store);
    metric_set(metrics_gauge(metrics, "ops_test_scrapes", "Scrapes.", NULL, 0), NULL, now);
}

/* The value of the line that starts with series in text, or -2 when there
 * is none (NaN reads as NaN). */
static double series_value(const char *text, const char *series)
{
    size_t len = strlen(series);
    for (const char *line = text; line && *line; line = strchr(line, '\n')) {
        if (*line == '\n')
            line++;
        if (strncmp(line, series, len) == 0 && line[len] == ' ')
            return strtod(line + len + 1, NULL);
    }
    return -2;
}

/* /metrics: a watched group's lag and pending count exactly as Redis
 * holds them, what its consumer handled, NaN when Redis cannot tell the
 * lag or cannot be asked, the stores' counts, and a main's collector. */
static void test_ops_metrics(void **state)
{
    (void)state;
    ops_t *ops = ops_up();
    atomic_int scrapes = 0;
    assert_true(ops_collect(ops, count_scrapes, &scrapes));
    store_t *store = test_store();
    assert_true(ops_watch_consumer(ops, "ops:lag", "g"));
    consumer_config_t cfg = {.stream = "ops:lag", .group = "g", .consumer = "c", .batch = 2};
    consumer_t *consumer = consumer_new(store, &cfg);
    assert_int_equal(consumer_poll_batch(consumer, 0, leave_pending, NULL), 0);
    char ids[5][64];
    for (int i = 0; i < 5; i++) {
        redisReply *reply = NULL;
        char junk[] = "junk";
        const char *argv[] = {"XADD", "ops:lag", "*", "x", junk};
        assert_int_equal(store_command_argv(store, &reply, 5, argv, NULL), STORE_OK);
        snprintf(ids[i], sizeof ids[i], "%s", reply->str);
        freeReplyObject(reply);
    }
    /* Two of the five are delivered (the batch); not being events, they
     * are dead-lettered and acknowledged: three wait, none pending. */
    assert_int_equal(consumer_poll_batch(consumer, 0, leave_pending, NULL), 2);

    answer_t answer = ops_fetch(ops, "/metrics");
    assert_int_equal(answer.status, 200);
    const char *lag = "passerelle_consumer_lag{stream=\"ops:lag\",group=\"g\"}";
    const char *pending = "passerelle_consumer_pending{stream=\"ops:lag\",group=\"g\"}";
    assert_true(series_value(answer.body, lag) == 3);
    assert_true(series_value(answer.body, pending) == 0);
    assert_true(series_value(answer.body,
                             "passerelle_events_handled_total{stream=\"ops:lag\",group=\"g\"}") ==
                2);
    assert_true(
        series_value(answer.body,
                     "passerelle_events_dead_lettered_total{stream=\"ops:lag\",group=\"g\"}") == 2);
    assert_true(series_value(answer.body,
                             "passerelle_consumer_idle_seconds{stream=\"ops:lag\",group=\"g\"}") <
                1);
    assert_non_null(strstr(answer.body, "# TYPE passerelle_consumer_lag gauge\n"));
    assert_non_null(strstr(answer.body, "# TYPE passerelle_redis_errors_total counter\n"));
    assert_true(series_value(answer.body, "passerelle_redis_errors_total{kind=\"lost\"}") >= 0);
    assert_true(series_value(answer.body, "passerelle_redis_errors_total{kind=\"refused\"}") >= 0);
    assert_true(series_value(answer.body, "passerelle_redis_reconnects_total") >= 0);
    assert_int_equal(atomic_load(&scrapes), 1);
    assert_true(series_value(answer.body, "ops_test_scrapes") == 1);

    /* Pending: read under another name, never acknowledged. */
    redisReply *reply = NULL;
    assert_int_equal(
        store_command(store, &reply, "XREADGROUP GROUP g other COUNT 1 STREAMS ops:lag >"),
        STORE_OK);
    freeReplyObject(reply);
    answer = ops_fetch(ops, "/metrics");
    assert_true(series_value(answer.body, lag) == 2);
    assert_true(series_value(answer.body, pending) == 1);

    /* An undelivered entry deleted: Redis can no longer tell the lag. */
    assert_int_equal(store_command(store, NULL, "XDEL ops:lag %s", ids[4]), STORE_OK);
    answer = ops_fetch(ops, "/metrics");
    assert_non_null(
        strstr(answer.body, "passerelle_consumer_lag{stream=\"ops:lag\",group=\"g\"} NaN\n"));
    assert_true(series_value(answer.body, pending) == 1);

    /* Redis gone: both unknown, the loss counted. */
    double lost = series_value(answer.body, "passerelle_redis_errors_total{kind=\"lost\"}");
    double reconnects = series_value(answer.body, "passerelle_redis_reconnects_total");
    harness_redis_kill(&redis);
    answer = ops_fetch(ops, "/metrics");
    assert_int_equal(answer.status, 200);
    assert_non_null(
        strstr(answer.body, "passerelle_consumer_lag{stream=\"ops:lag\",group=\"g\"} NaN\n"));
    assert_non_null(
        strstr(answer.body, "passerelle_consumer_pending{stream=\"ops:lag\",group=\"g\"} NaN\n"));
    assert_true(series_value(answer.body, "passerelle_redis_errors_total{kind=\"lost\"}") > lost);
    assert_int_equal(harness_redis_restart(&redis), 0);
    answer = ops_fetch(ops, "/metrics");
    assert_true(series_value(answer.body, pending) == 1);
    assert_true(series_value(answer.body, "passerelle_redis_reconnects_total") > reconnects);

    consumer_destroy(&consumer);
    store_destroy(&store);
    ops_destroy(&ops);
}

/* "off": no port, the registry still counts; a bad endpoint or stall
 * setting is refused. */
static void test_ops_off_and_refused(void **state)
{
    (void)state;
    store_config_t cfg;
    harness_redis_config(&redis, &cfg);
    setenv("OPS_TEST_HTTP_ENDPOINT", "off", 1);
    ops_t *ops = ops_start("OPS_TEST_HTTP_ENDPOINT", "127.0.0.1:9", &cfg);
    assert_non_null(ops);
    assert_int_equal(ops_port(ops), 0);
    assert_non_null(ops_metrics(ops));
    assert_true(ops_watch_consumer(ops, "s", "g"));
    ops_keys_loaded(ops, "x", true);
    ops_destroy(&ops);
    setenv("OPS_TEST_HTTP_ENDPOINT", "localhost:1", 1);
    assert_null(ops_start("OPS_TEST_HTTP_ENDPOINT", "127.0.0.1:9", &cfg));
    setenv("OPS_TEST_HTTP_ENDPOINT", "127.0.0.1:0", 1);
    setenv("PASSERELLE_CONSUMER_STALL_S", "0", 1);
    assert_null(ops_start("OPS_TEST_HTTP_ENDPOINT", "127.0.0.1:9", &cfg));
    setenv("PASSERELLE_CONSUMER_STALL_S", "1", 1);
}

static int redis_up(void **state)
{
    (void)state;
    log_set_level(LOG_LEVEL_ERROR);
    return harness_redis_start(&redis);
}

static int redis_down(void **state)
{
    (void)state;
    harness_redis_stop(&redis);
    return 0;
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_endpoints),
        cmocka_unit_test(test_without_registry_or_readiness),
        cmocka_unit_test(test_refused_endpoints),
        cmocka_unit_test_setup_teardown(test_ops_readiness, redis_up, redis_down),
        cmocka_unit_test_setup_teardown(test_ops_metrics, redis_up, redis_down),
        cmocka_unit_test_setup_teardown(test_ops_off_and_refused, redis_up, redis_down),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return failed;
}
