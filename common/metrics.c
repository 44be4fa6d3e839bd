/* Metrics registry and its Prometheus text rendering (metrics.h). */
#include "metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum {
    METRIC_COUNTER,
    METRIC_GAUGE,
    METRIC_HISTOGRAM,
} metric_kind_t;

typedef struct _series_t {
    struct _series_t *next;
    char *values[METRICS_LABELS_MAX];
    uint64_t count; /* the counter's value, or the histogram's observations */
    double sum;     /* the histogram's; the gauge's value */
    /* Per bucket, not cumulative: rendering adds them up. */
    uint64_t buckets[METRICS_BUCKETS_MAX];
} series_t;

struct _metric_t {
    struct _metric_t *next;
    metrics_t *registry;
    metric_kind_t kind;
    char *name;
    char *help;
    char *labels[METRICS_LABELS_MAX];
    size_t label_count;
    double bounds[METRICS_BUCKETS_MAX];
    size_t bound_count;
    series_t *series; /* in creation order */
    series_t *series_tail;
};

typedef struct {
    metrics_collect_fn *fn;
    void *arg;
} collector_t;

struct _metrics_t {
    pthread_mutex_t lock;
    metric_t *first; /* in declaration order */
    metric_t *last;
    collector_t collectors[METRICS_COLLECTORS_MAX];
    size_t collector_count;
};

metrics_t *metrics_new(void)
{
    metrics_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    pthread_mutex_init(&self->lock, NULL);
    return self;
}

static void series_free(series_t *series, size_t label_count)
{
    for (size_t i = 0; i < label_count; i++)
        free(series->values[i]);
    free(series);
}

static void metric_free(metric_t *metric)
{
    series_t *series = metric->series;
    while (series) {
        series_t *next = series->next;
        series_free(series, metric->label_count);
        series = next;
    }
    for (size_t i = 0; i < metric->label_count; i++)
        free(metric->labels[i]);
    free(metric->name);
    free(metric->help);
    free(metric);
}

void metrics_destroy(metrics_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    metrics_t *self = *self_p;
    metric_t *metric = self->first;
    while (metric) {
        metric_t *next = metric->next;
        metric_free(metric);
        metric = next;
    }
    pthread_mutex_destroy(&self->lock);
    free(self);
    *self_p = NULL;
}

/* ---- declaration ---- */

static metric_t *metric_declare(metrics_t *self, metric_kind_t kind, const char *name,
                                const char *help, const char *const *label_names,
                                size_t label_count)
{
    if (!self || !name || !*name || label_count > METRICS_LABELS_MAX ||
        (label_count > 0 && !label_names))
        return NULL;
    for (size_t i = 0; i < label_count; i++)
        if (!label_names[i] || !*label_names[i])
            return NULL;

    metric_t *metric = calloc(1, sizeof *metric);
    if (!metric)
        return NULL;
    metric->registry = self;
    metric->kind = kind;
    metric->name = strdup(name);
    metric->help = strdup(help ? help : "");
    bool ok = metric->name && metric->help;
    for (size_t i = 0; i < label_count; i++) {
        metric->labels[i] = strdup(label_names[i]);
        metric->label_count++;
        ok = ok && metric->labels[i];
    }
    if (!ok) {
        metric_free(metric);
        return NULL;
    }
    return metric;
}

/* Same kind, labels and bounds: a second declaration of the same metric. */
static bool metric_same(const metric_t *a, const metric_t *b)
{
    if (a->kind != b->kind || a->label_count != b->label_count || a->bound_count != b->bound_count)
        return false;
    for (size_t i = 0; i < a->label_count; i++)
        if (strcmp(a->labels[i], b->labels[i]) != 0)
            return false;
    for (size_t i = 0; i < a->bound_count; i++)
        if (a->bounds[i] != b->bounds[i])
            return false;
    return true;
}

/* Links metric into the registry; if its name is taken, frees it and
 * returns the metric already there when it is the same one, else NULL. */
static metric_t *metric_register(metrics_t *self, metric_t *metric)
{
    pthread_mutex_lock(&self->lock);
    for (metric_t *other = self->first; other; other = other->next) {
        if (strcmp(other->name, metric->name) == 0) {
            metric_t *same = metric_same(other, metric) ? other : NULL;
            pthread_mutex_unlock(&self->lock);
            metric_free(metric);
            return same;
        }
    }
    if (self->last)
        self->last->next = metric;
    else
        self->first = metric;
    self->last = metric;
    pthread_mutex_unlock(&self->lock);
    return metric;
}

metric_t *metrics_counter(metrics_t *self, const char *name, const char *help,
                          const char *const *label_names, size_t label_count)
{
    metric_t *metric = metric_declare(self, METRIC_COUNTER, name, help, label_names, label_count);
    return metric ? metric_register(self, metric) : NULL;
}

metric_t *metrics_gauge(metrics_t *self, const char *name, const char *help,
                        const char *const *label_names, size_t label_count)
{
    metric_t *metric = metric_declare(self, METRIC_GAUGE, name, help, label_names, label_count);
    return metric ? metric_register(self, metric) : NULL;
}

metric_t *metrics_histogram(metrics_t *self, const char *name, const char *help,
                            const char *const *label_names, size_t label_count,
                            const double *bounds, size_t bound_count)
{
    if (!bounds || bound_count == 0 || bound_count > METRICS_BUCKETS_MAX)
        return NULL;
    for (size_t i = 0; i < bound_count; i++) {
        if (!isfinite(bounds[i]) || (i > 0 && bounds[i] <= bounds[i - 1]))
            return NULL;
    }
    metric_t *metric = metric_declare(self, METRIC_HISTOGRAM, name, help, label_names, label_count);
    if (!metric)
        return NULL;
    memcpy(metric->bounds, bounds, bound_count * sizeof *bounds);
    metric->bound_count = bound_count;
    return metric_register(self, metric);
}

/* ---- updates ---- */

/* The series for values, created if new; NULL when out of memory. Called
 * with the registry locked. */
static series_t *series_find(metric_t *metric, const char *const *values)
{
    for (series_t *series = metric->series; series; series = series->next) {
        size_t i = 0;
        while (i < metric->label_count &&
               strcmp(series->values[i], values && values[i] ? values[i] : "") == 0)
            i++;
        if (i == metric->label_count)
            return series;
    }
    series_t *series = calloc(1, sizeof *series);
    if (!series)
        return NULL;
    for (size_t i = 0; i < metric->label_count; i++) {
        series->values[i] = strdup(values && values[i] ? values[i] : "");
        if (!series->values[i]) {
            series_free(series, i);
            return NULL;
        }
    }
    if (metric->series_tail)
        metric->series_tail->next = series;
    else
        metric->series = series;
    metric->series_tail = series;
    return series;
}

void metric_add(metric_t *metric, const char *const *label_values, uint64_t amount)
{
    if (!metric || metric->kind != METRIC_COUNTER)
        return;
    pthread_mutex_lock(&metric->registry->lock);
    series_t *series = series_find(metric, label_values);
    if (series)
        series->count += amount;
    pthread_mutex_unlock(&metric->registry->lock);
}

void metric_observe(metric_t *metric, const char *const *label_values, double value)
{
    if (!metric || metric->kind != METRIC_HISTOGRAM)
        return;
    /* The first bucket whose bound holds the value; bound_count is +Inf. */
    size_t bucket = 0;
    while (bucket < metric->bound_count && !(value <= metric->bounds[bucket]))
        bucket++;
    pthread_mutex_lock(&metric->registry->lock);
    series_t *series = series_find(metric, label_values);
    if (series) {
        series->count++;
        series->sum += value;
        if (bucket < metric->bound_count)
            series->buckets[bucket]++;
    }
    pthread_mutex_unlock(&metric->registry->lock);
}

void metric_set(metric_t *metric, const char *const *label_values, double value)
{
    if (!metric || metric->kind == METRIC_HISTOGRAM)
        return;
    pthread_mutex_lock(&metric->registry->lock);
    series_t *series = series_find(metric, label_values);
    if (series && metric->kind == METRIC_GAUGE)
        series->sum = value;
    else if (series && value >= 0) /* NaN compares false: the count stays */
        series->count = value >= 0x1p64 ? UINT64_MAX : (uint64_t)value;
    pthread_mutex_unlock(&metric->registry->lock);
}

bool metrics_collector(metrics_t *self, metrics_collect_fn *fn, void *arg)
{
    if (!self || !fn)
        return false;
    pthread_mutex_lock(&self->lock);
    bool room = self->collector_count < METRICS_COLLECTORS_MAX;
    if (room)
        self->collectors[self->collector_count++] = (collector_t){fn, arg};
    pthread_mutex_unlock(&self->lock);
    return room;
}

/* ---- rendering ---- */

/* Writes text escaped as the format wants: backslash and newline always,
 * the double quote inside label values only. */
static void write_escaped(FILE *out, const char *text, bool quote)
{
    for (const char *c = text; *c; c++) {
        if (*c == '\\')
            fputs("\\\\", out);
        else if (*c == '\n')
            fputs("\\n", out);
        else if (*c == '"' && quote)
            fputs("\\\"", out);
        else
            fputc(*c, out);
    }
}

/* A float as Go's ParseFloat reads it: shortest of %.15g that is exact
 * enough for seconds and byte counts, and +Inf/-Inf/NaN spelled its way. */
static void write_double(FILE *out, double value)
{
    if (isnan(value))
        fputs("NaN", out);
    else if (isinf(value))
        fputs(value > 0 ? "+Inf" : "-Inf", out);
    else
        fprintf(out, "%.15g", value);
}

/* name{label="value",...[,le="bound"]}, then a space. le is NULL for none. */
static void write_series_name(FILE *out, const metric_t *metric, const char *suffix,
                              const series_t *series, const char *le)
{
    fputs(metric->name, out);
    fputs(suffix, out);
    if (metric->label_count > 0 || le) {
        fputc('{', out);
        for (size_t i = 0; i < metric->label_count; i++) {
            fprintf(out, "%s%s=\"", i > 0 ? "," : "", metric->labels[i]);
            write_escaped(out, series->values[i], true);
            fputc('"', out);
        }
        if (le)
            fprintf(out, "%sle=\"%s\"", metric->label_count > 0 ? "," : "", le);
        fputc('}', out);
    }
    fputc(' ', out);
}

static void write_histogram(FILE *out, const metric_t *metric, const series_t *series)
{
    uint64_t cumulative = 0;
    for (size_t b = 0; b < metric->bound_count; b++) {
        char le[64];
        snprintf(le, sizeof le, "%.15g", metric->bounds[b]);
        cumulative += series->buckets[b];
        write_series_name(out, metric, "_bucket", series, le);
        fprintf(out, "%llu\n", (unsigned long long)cumulative);
    }
    write_series_name(out, metric, "_bucket", series, "+Inf");
    fprintf(out, "%llu\n", (unsigned long long)series->count);
    write_series_name(out, metric, "_sum", series, NULL);
    write_double(out, series->sum);
    fputc('\n', out);
    write_series_name(out, metric, "_count", series, NULL);
    fprintf(out, "%llu\n", (unsigned long long)series->count);
}

char *metrics_render(metrics_t *self)
{
    if (!self)
        return NULL;
    /* The collectors run unlocked, since they update the registry; a copy
     * of the list is taken under the lock because another thread may be
     * registering one meanwhile (the entries never change once added). */
    collector_t collectors[METRICS_COLLECTORS_MAX];
    pthread_mutex_lock(&self->lock);
    size_t collector_count = self->collector_count;
    memcpy(collectors, self->collectors, collector_count * sizeof *collectors);
    pthread_mutex_unlock(&self->lock);
    for (size_t i = 0; i < collector_count; i++)
        collectors[i].fn(collectors[i].arg);

    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);
    if (!out)
        return NULL;
    pthread_mutex_lock(&self->lock);
    for (const metric_t *metric = self->first; metric; metric = metric->next) {
        static const char *const kind_names[] = {"counter", "gauge", "histogram"};
        fprintf(out, "# HELP %s ", metric->name);
        write_escaped(out, metric->help, false);
        fprintf(out, "\n# TYPE %s %s\n", metric->name, kind_names[metric->kind]);
        for (const series_t *series = metric->series; series; series = series->next) {
            if (metric->kind == METRIC_COUNTER) {
                write_series_name(out, metric, "", series, NULL);
                fprintf(out, "%llu\n", (unsigned long long)series->count);
            } else if (metric->kind == METRIC_GAUGE) {
                write_series_name(out, metric, "", series, NULL);
                write_double(out, series->sum);
                fputc('\n', out);
            } else {
                write_histogram(out, metric, series);
            }
        }
    }
    pthread_mutex_unlock(&self->lock);
    /* A stream that hit out of memory says so at fclose. */
    bool failed = ferror(out) != 0;
    if (fclose(out) != 0)
        failed = true;
    if (failed) {
        free(text);
        return NULL;
    }
    return text;
}
