/* The operations HTTP server against libcurl on a port the system picks:
 * health, readiness both ways, the metrics page and its content type, 404
 * and 405, and endpoints it refuses. */
#include "httpd.h"
#include "metrics.h"

#include <curl/curl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* One request; method NULL is GET. */
static answer_t fetch(const httpd_t *server, const char *method, const char *path)
{
    answer_t answer;
    memset(&answer, 0, sizeof answer);
    char url[128];
    snprintf(url, sizeof url, "http://%s%s", httpd_address(server), path);
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

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_endpoints),
        cmocka_unit_test(test_without_registry_or_readiness),
        cmocka_unit_test(test_refused_endpoints),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return failed;
}
