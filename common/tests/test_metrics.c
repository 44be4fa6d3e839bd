/* The metrics registry: exact exposition text for a small registry, label
 * value escaping, cumulative histogram buckets, and the declarations it
 * refuses. */
#include "metrics.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void test_empty_registry(void **state)
{
    (void)state;
    metrics_t *metrics = metrics_new();
    char *text = metrics_render(metrics);
    assert_non_null(text);
    assert_string_equal(text, "");
    free(text);
    metrics_destroy(&metrics);
    assert_null(metrics);
    metrics_destroy(&metrics);
}

static void test_small_registry_exact_text(void **state)
{
    (void)state;
    metrics_t *metrics = metrics_new();
    const char *labels[] = {"type", "status"};
    metric_t *requests = metrics_counter(metrics, "passerelle_requests_total",
                                         "Requests answered, by type and status.", labels, 2);
    assert_non_null(requests);
    const char *type_label[] = {"type"};
    const double bounds[] = {0.01, 0.1, 1};
    metric_t *durations = metrics_histogram(metrics, "passerelle_request_duration_seconds",
                                            "Time to answer a request.", type_label, 1, bounds, 3);
    assert_non_null(durations);
    metric_t *plain = metrics_counter(metrics, "passerelle_restarts_total", "Restarts.", NULL, 0);
    assert_non_null(plain);

    metric_add(requests, (const char *[]){"unit.get", "OK"}, 1);
    metric_add(requests, (const char *[]){"unit.get", "NOT_FOUND"}, 1);
    metric_add(requests, (const char *[]){"unit.get", "OK"}, 2);
    metric_observe(durations, (const char *[]){"unit.get"}, 0.005);
    metric_observe(durations, (const char *[]){"unit.get"}, 0.5);
    metric_observe(durations, (const char *[]){"unit.get"}, 0.25);
    metric_add(plain, NULL, 1);

    char *text = metrics_render(metrics);
    assert_non_null(text);
    assert_string_equal(
        text, "# HELP passerelle_requests_total Requests answered, by type and status.\n"
              "# TYPE passerelle_requests_total counter\n"
              "passerelle_requests_total{type=\"unit.get\",status=\"OK\"} 3\n"
              "passerelle_requests_total{type=\"unit.get\",status=\"NOT_FOUND\"} 1\n"
              "# HELP passerelle_request_duration_seconds Time to answer a request.\n"
              "# TYPE passerelle_request_duration_seconds histogram\n"
              "passerelle_request_duration_seconds_bucket{type=\"unit.get\",le=\"0.01\"} 1\n"
              "passerelle_request_duration_seconds_bucket{type=\"unit.get\",le=\"0.1\"} 1\n"
              "passerelle_request_duration_seconds_bucket{type=\"unit.get\",le=\"1\"} 3\n"
              "passerelle_request_duration_seconds_bucket{type=\"unit.get\",le=\"+Inf\"} 3\n"
              "passerelle_request_duration_seconds_sum{type=\"unit.get\"} 0.755\n"
              "passerelle_request_duration_seconds_count{type=\"unit.get\"} 3\n"
              "# HELP passerelle_restarts_total Restarts.\n"
              "# TYPE passerelle_restarts_total counter\n"
              "passerelle_restarts_total 1\n");
    free(text);
    metrics_destroy(&metrics);
}

static void test_escaping(void **state)
{
    (void)state;
    metrics_t *metrics = metrics_new();
    const char *labels[] = {"path"};
    metric_t *counter =
        metrics_counter(metrics, "odd_total", "A help with \\ and\nnewline \"kept\".", labels, 1);
    metric_add(counter, (const char *[]){"a\"b\\c\nd"}, 1);
    metric_add(counter, (const char *[]){NULL}, 1);
    char *text = metrics_render(metrics);
    assert_non_null(text);
    assert_string_equal(text, "# HELP odd_total A help with \\\\ and\\nnewline \"kept\".\n"
                              "# TYPE odd_total counter\n"
                              "odd_total{path=\"a\\\"b\\\\c\\nd\"} 1\n"
                              "odd_total{path=\"\"} 1\n");
    free(text);
    metrics_destroy(&metrics);
}

static void test_histogram_buckets_cumulative(void **state)
{
    (void)state;
    metrics_t *metrics = metrics_new();
    const double bounds[] = {1, 2, 4};
    metric_t *sizes = metrics_histogram(metrics, "sizes", "Sizes.", NULL, 0, bounds, 3);
    assert_non_null(sizes);
    /* On a bound counts in that bucket (le is "less or equal"). */
    const double values[] = {0.5, 1, 1.5, 2, 3, 4, 100, 3};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++)
        metric_observe(sizes, NULL, values[i]);
    char *text = metrics_render(metrics);
    assert_non_null(text);
    assert_string_equal(text, "# HELP sizes Sizes.\n"
                              "# TYPE sizes histogram\n"
                              "sizes_bucket{le=\"1\"} 2\n"
                              "sizes_bucket{le=\"2\"} 4\n"
                              "sizes_bucket{le=\"4\"} 7\n"
                              "sizes_bucket{le=\"+Inf\"} 8\n"
                              "sizes_sum 115\n"
                              "sizes_count 8\n");
    free(text);
    metrics_destroy(&metrics);
}

static void test_refused_declarations(void **state)
{
    (void)state;
    metrics_t *metrics = metrics_new();
    const double bounds[] = {1, 2};
    const double unordered[] = {2, 1};
    const char *five[] = {"a", "b", "c", "d", "e"};
    metric_t *taken = metrics_counter(metrics, "taken", "x", NULL, 0);
    assert_non_null(taken);
    /* The same declaration again is the same metric; another is refused. */
    assert_ptr_equal(metrics_counter(metrics, "taken", "x", NULL, 0), taken);
    assert_null(metrics_counter(metrics, "taken", "x", five, 1));
    assert_null(metrics_histogram(metrics, "taken", "x", NULL, 0, bounds, 2));
    assert_null(metrics_counter(metrics, "", "x", NULL, 0));
    assert_null(metrics_counter(metrics, "many", "x", five, 5));
    assert_null(metrics_histogram(metrics, "unordered", "x", NULL, 0, unordered, 2));
    assert_null(metrics_histogram(metrics, "none", "x", NULL, 0, bounds, 0));
    /* Updates of the wrong kind or of no metric are ignored. */
    metric_t *counter = metrics_counter(metrics, "c", "x", NULL, 0);
    metric_observe(counter, NULL, 1);
    metric_add(NULL, NULL, 1);
    metric_observe(NULL, NULL, 1);
    char *text = metrics_render(metrics);
    assert_string_equal(text, "# HELP taken x\n# TYPE taken counter\n"
                              "# HELP c x\n# TYPE c counter\n");
    free(text);
    metrics_destroy(&metrics);
}

/* One thread counts while this one renders: the totals end exact. */
static void *count_many(void *arg)
{
    metric_t *counter = arg;
    for (int i = 0; i < 20000; i++)
        metric_add(counter, (const char *[]){i % 2 ? "odd" : "even"}, 1);
    return NULL;
}

static void test_update_while_rendering(void **state)
{
    (void)state;
    metrics_t *metrics = metrics_new();
    const char *labels[] = {"parity"};
    metric_t *counter = metrics_counter(metrics, "n_total", "N.", labels, 1);
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, count_many, counter), 0);
    for (int i = 0; i < 50; i++) {
        char *text = metrics_render(metrics);
        assert_non_null(text);
        free(text);
    }
    pthread_join(thread, NULL);
    char *text = metrics_render(metrics);
    assert_non_null(strstr(text, "n_total{parity=\"even\"} 10000\n"));
    assert_non_null(strstr(text, "n_total{parity=\"odd\"} 10000\n"));
    free(text);
    metrics_destroy(&metrics);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_registry),
        cmocka_unit_test(test_small_registry_exact_text),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_histogram_buckets_cumulative),
        cmocka_unit_test(test_refused_declarations),
        cmocka_unit_test(test_update_while_rendering),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
