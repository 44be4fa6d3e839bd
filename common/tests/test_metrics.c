/* The metrics registry: exact exposition text for a small registry, label
 * value escaping, cumulative histogram buckets, the declarations it
 * refuses, gauges and the collectors run at each render. */
#include "metrics.h"

#include <math.h>
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

/* Gauges: declared, set, set again (the last value wins), NaN for
 * unknown, labels as counters have them; metric_set on a counter copies a
 * count kept elsewhere and ignores what cannot be a count. */
static void test_gauges_render_and_update(void **state)
{
    (void)state;
    metrics_t *metrics = metrics_new();
    const char *labels[] = {"stream", "group"};
    metric_t *lag = metrics_gauge(metrics, "passerelle_consumer_lag", "Lag.", labels, 2);
    assert_non_null(lag);
    assert_ptr_equal(metrics_gauge(metrics, "passerelle_consumer_lag", "Lag.", labels, 2), lag);
    assert_null(metrics_counter(metrics, "passerelle_consumer_lag", "Lag.", labels, 2));
    metric_t *open = metrics_gauge(metrics, "open", "Open.", NULL, 0);
    metric_t *copied = metrics_counter(metrics, "copied_total", "Copied.", NULL, 0);

    metric_set(lag, (const char *[]){"a:events", "g"}, 7);
    metric_set(lag, (const char *[]){"b:events", "g"}, 0.5);
    metric_set(open, NULL, 3);
    metric_set(copied, NULL, 41);
    char *text = metrics_render(metrics);
    assert_string_equal(text, "# HELP passerelle_consumer_lag Lag.\n"
                              "# TYPE passerelle_consumer_lag gauge\n"
                              "passerelle_consumer_lag{stream=\"a:events\",group=\"g\"} 7\n"
                              "passerelle_consumer_lag{stream=\"b:events\",group=\"g\"} 0.5\n"
                              "# HELP open Open.\n"
                              "# TYPE open gauge\n"
                              "open 3\n"
                              "# HELP copied_total Copied.\n"
                              "# TYPE copied_total counter\n"
                              "copied_total 41\n");
    free(text);

    /* Down, unknown, and a count that cannot go back. */
    metric_set(lag, (const char *[]){"a:events", "g"}, 2);
    metric_set(lag, (const char *[]){"b:events", "g"}, NAN);
    metric_set(open, NULL, -1);
    metric_set(copied, NULL, NAN);
    metric_set(copied, NULL, -5);
    metric_add(open, NULL, 1);     /* a gauge is set, not added to */
    metric_observe(open, NULL, 1); /* nor observed */
    metric_set(NULL, NULL, 1);     /* no metric: nothing */
    text = metrics_render(metrics);
    assert_non_null(strstr(text, "passerelle_consumer_lag{stream=\"a:events\",group=\"g\"} 2\n"));
    assert_non_null(strstr(text, "passerelle_consumer_lag{stream=\"b:events\",group=\"g\"} NaN\n"));
    assert_non_null(strstr(text, "\nopen -1\n"));
    assert_non_null(strstr(text, "\ncopied_total 41\n"));
    free(text);
    metric_set(copied, NULL, 1e30);
    text = metrics_render(metrics);
    assert_non_null(strstr(text, "\ncopied_total 18446744073709551615\n"));
    free(text);
    metrics_destroy(&metrics);
}

/* A histogram ignores metric_set. */
static void test_set_ignored_on_histogram(void **state)
{
    (void)state;
    metrics_t *metrics = metrics_new();
    const double bounds[] = {1};
    metric_t *h = metrics_histogram(metrics, "h", "H.", NULL, 0, bounds, 1);
    metric_set(h, NULL, 5);
    char *text = metrics_render(metrics);
    assert_string_equal(text, "# HELP h H.\n# TYPE h histogram\n");
    free(text);
    metrics_destroy(&metrics);
}

typedef struct {
    metric_t *gauge;
    int calls;
} scrape_t;

/* A collector sets the value it reads at scrape time. */
static void collect_calls(void *arg)
{
    scrape_t *scrape = arg;
    scrape->calls++;
    metric_set(scrape->gauge, NULL, scrape->calls * 10);
}

static void test_collectors_run_before_render(void **state)
{
    (void)state;
    metrics_t *metrics = metrics_new();
    scrape_t scrape = {metrics_gauge(metrics, "scraped", "Scraped.", NULL, 0), 0};
    assert_true(metrics_collector(metrics, collect_calls, &scrape));
    assert_false(metrics_collector(metrics, NULL, &scrape));
    char *text = metrics_render(metrics);
    assert_int_equal(scrape.calls, 1);
    assert_string_equal(text, "# HELP scraped Scraped.\n# TYPE scraped gauge\nscraped 10\n");
    free(text);
    text = metrics_render(metrics);
    assert_int_equal(scrape.calls, 2);
    assert_non_null(strstr(text, "scraped 20\n"));
    free(text);
    /* The table has a bound. */
    for (int i = 1; i < METRICS_COLLECTORS_MAX; i++)
        assert_true(metrics_collector(metrics, collect_calls, &scrape));
    assert_false(metrics_collector(metrics, collect_calls, &scrape));
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
        cmocka_unit_test(test_gauges_render_and_update),
        cmocka_unit_test(test_set_ignored_on_histogram),
        cmocka_unit_test(test_collectors_run_before_render),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
