/* Metrics: a registry of counters, gauges and histograms with labels, rendered in
 * the Prometheus text exposition format (version 0.0.4) for an HTTP scrape
 * (httpd.h), e.g.
 *   # HELP passerelle_requests_total Requests answered, by type and status.
 *   # TYPE passerelle_requests_total counter
 *   passerelle_requests_total{type="unit.get",status="OK"} 3
 *
 * A metric is a family (a name, a help text, label names); each distinct
 * tuple of label values is a series, created on its first update. Updates
 * and rendering take one mutex per registry, so the server's thread may
 * count while the HTTP thread renders: an update is a lookup among the
 * family's series (linear: a family holds tens of series, not thousands)
 * and an addition, cheap next to the Redis round trip of a request. Only
 * the first update of a series allocates.
 *
 * Series are rendered in the order they were created, families in the
 * order they were declared. */
#ifndef PASSERELLE_METRICS_H
#define PASSERELLE_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define METRICS_LABELS_MAX  4
#define METRICS_BUCKETS_MAX 16

typedef struct _metrics_t metrics_t;
typedef struct _metric_t metric_t;

/* A new, empty registry; NULL when out of memory. */
metrics_t *metrics_new(void);

/* Frees the registry and all its metrics; NULLs *self_p. */
void metrics_destroy(metrics_t **self_p);

/* Declares a counter named name (help: one line of text) with label_count
 * (at most METRICS_LABELS_MAX) label names, copied. The metric belongs to
 * the registry. Declaring again a name with the same kind, labels (and
 * bounds) returns the metric already declared, so that two servers of one
 * process may share a registry. NULL on a bad argument (no name, too many
 * labels, a name declared otherwise) or out of memory. */
metric_t *metrics_counter(metrics_t *self, const char *name, const char *help,
                          const char *const *label_names, size_t label_count);

/* Declares a histogram, as metrics_counter, with bound_count (1 to
 * METRICS_BUCKETS_MAX) upper bounds, strictly increasing and finite; the
 * +Inf bucket is implied. NULL on bad bounds too. */
metric_t *metrics_histogram(metrics_t *self, const char *name, const char *help,
                            const char *const *label_names, size_t label_count,
                            const double *bounds, size_t bound_count);

/* Adds amount to the counter's series for label_values (label_count
 * strings, in the order of the label names; NULL counts as ""). A no-op on
 * a NULL metric, on a histogram, or when the new series cannot be
 * allocated (a metric is not worth failing a request for). */
void metric_add(metric_t *metric, const char *const *label_values, uint64_t amount);

/* Records one observation of value in the histogram's series for
 * label_values; a no-op as metric_add on a NULL metric or a counter. */
void metric_observe(metric_t *metric, const char *const *label_values, double value);

/* Declares a gauge, as metrics_counter: a value that goes up and down (an
 * upload count, a consumer's lag), rendered "# TYPE name gauge". */
metric_t *metrics_gauge(metrics_t *self, const char *name, const char *help,
                        const char *const *label_names, size_t label_count);

/* Sets the series for label_values of a gauge to value; NaN says the
 * value is unknown right now (rendered "NaN"). On a counter, sets its
 * count (value rounded down; NaN or a negative leaves it): for a count kept elsewhere
 * and copied in at scrape time (a collector), which must only grow. A
 * no-op on a NULL metric or a histogram. */
void metric_set(metric_t *metric, const char *const *label_values, double value);

/* A collector: called by metrics_render before it writes, on the
 * rendering thread and without the registry's lock (it may declare, set
 * and add), so that values read at scrape time (from Redis, from counts
 * kept by another module) are fresh in the text. */
typedef void(metrics_collect_fn)(void *arg);

#define METRICS_COLLECTORS_MAX 8

/* Registers fn (with arg, which must outlive the registry's renders) to
 * run at every render, in registration order. False when
 * METRICS_COLLECTORS_MAX are registered already or fn is NULL. */
bool metrics_collector(metrics_t *self, metrics_collect_fn *fn, void *arg);

/* The registry's text (exposition format 0.0.4), NUL-terminated, owned by
 * the caller (free); NULL when out of memory. Runs the collectors first. */
char *metrics_render(metrics_t *self);

#endif
