/* The operations port of the reservations service, end to end: the real
 * binary on a port chosen at run time (read from its "http listening" log
 * line), /healthz and /readyz, the requests it answered counted in
 * /metrics with their status, and /readyz turning 503 once Redis is gone
 * while /healthz stays 200. */
#include "harness.h"
#include "ids.h"
#include "reservations.pb-c.h"

#include <curl/curl.h>
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define WAIT_MS 10000

typedef struct {
    long status; /* 0: no answer */
    char body[65536];
    size_t body_len;
} answer_t;

static char http_endpoint_env[] = "PASSERELLE_RESERVATIONS_HTTP_ENDPOINT=127.0.0.1:0";

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

/* The port of the service's "http listening" line; 0 if there is none. */
static int http_port_from_log(const char *log_path)
{
    FILE *log = fopen(log_path, "r");
    if (!log)
        return 0;
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
    return port;
}

static int setup(void **state)
{
    harness_stack_t *stack = calloc(1, sizeof *stack);
    if (!stack)
        return -1;
    *state = stack;
    char *env[] = {http_endpoint_env, NULL};
    curl_global_init(CURL_GLOBAL_DEFAULT);
    return harness_stack_start(stack, "health", "operator", env);
}

static int teardown(void **state)
{
    int rc = harness_stack_teardown(state);
    free(*state);
    *state = NULL;
    curl_global_cleanup();
    return rc;
}

static void test_health_ready_metrics(void **state)
{
    harness_stack_t *stack = *state;
    int port = 0;
    for (int64_t deadline = now_ms() + WAIT_MS; !port && now_ms() < deadline; usleep(20000))
        port = http_port_from_log(stack->service.log_path);
    if (!port)
        fail_msg("no \"http listening\" line with a port in %s", stack->service.log_path);
    assert_true(port > 0 && port < 65536);

    answer_t *answer = calloc(1, sizeof *answer);
    assert_non_null(answer);
    fetch(port, "/healthz", answer);
    assert_int_equal(answer->status, 200);
    assert_string_equal(answer->body, "ok\n");
    fetch(port, "/readyz", answer);
    assert_int_equal(answer->status, 200);

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
    const char *unit_get = "passerelle_requests_total{type=\"unit.get\",status=\"NOT_FOUND\"} 1\n";
    for (int64_t deadline = now_ms() + WAIT_MS; now_ms() < deadline; usleep(20000)) {
        fetch(port, "/metrics", answer);
        if (answer->status == 200 && strstr(answer->body, unit_get))
            break;
    }
    assert_int_equal(answer->status, 200);
    if (!strstr(answer->body, unit_get))
        fail_msg("no unit.get NOT_FOUND counted in:\n%s", answer->body);
    assert_non_null(strstr(answer->body, "# TYPE passerelle_requests_total counter\n"));
    assert_non_null(
        strstr(answer->body, "passerelle_requests_total{type=\"health\",status=\"OK\"} "));
    assert_non_null(
        strstr(answer->body, "passerelle_request_duration_seconds_count{type=\"unit.get\"} 1\n"));
    assert_non_null(strstr(answer->body, "passerelle_request_duration_seconds_bucket{type="
                                         "\"unit.get\",le=\"+Inf\"} 1\n"));

    /* Redis gone: not ready, with the reason; still alive. */
    harness_redis_kill(&stack->redis);
    for (int64_t deadline = now_ms() + WAIT_MS; now_ms() < deadline; usleep(20000)) {
        fetch(port, "/readyz", answer);
        if (answer->status == 503)
            break;
    }
    assert_int_equal(answer->status, 503);
    assert_non_null(strstr(answer->body, "redis"));
    fetch(port, "/healthz", answer);
    assert_int_equal(answer->status, 200);
    free(answer);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_health_ready_metrics, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
