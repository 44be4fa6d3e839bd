/* The queries of the figures (query.c) against a real redis-server: the
 * counters of a small fixed history are written straight into a
 * generation's keys, as the projectors would leave them (indicators.h:
 * the key layout), and the handlers are called directly.
 *
 * What is checked against hand-computed figures: a FLOW series by month,
 * quarter and year, per territory and commune and with a filter; a LEVEL
 * series by month, year and day, and at dates on both sides of a new
 * year; a median and a 90th percentile from a distribution; a ratio over
 * zero; a snapshot; the exact text of a small CSV export; a JSON export's
 * shape; every refusal, each naming its field; one read per series; and a
 * lost Redis. */
#include "catalog.h"
#include "harness.h"
#include "ids.h"
#include "indicators.h"
#include "indicators.pb-c.h"
#include "log.h"
#include "periods.h"
#include "query.h"

#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define OK  ST_OK
#define BAD ST_INVALID_ARGUMENT

/* The generation the history is written to: not 0, so that a query that
 * ignored indicators:current would read nothing. */
#define GEN 3

static harness_redis_t redis;
static store_t *store;
static indicators_t ind;
static int this_year; /* Europe/Paris, as query.c sees it */

/* ====================================================================== */
/* Writing counters                                                       */
/* ====================================================================== */

static void command(const char *format, ...)
{
    va_list args;
    va_start(args, format);
    char text[512];
    vsnprintf(text, sizeof text, format, args);
    va_end(args);
    /* Words split on spaces: the commands here have no other. */
    const char *argv[8];
    int argc = 0;
    char *save = NULL;
    for (char *word = strtok_r(text, " ", &save); word && argc < 8;
         word = strtok_r(NULL, " ", &save))
        argv[argc++] = word;
    redisReply *reply = NULL;
    if (store_command_argv(store, &reply, argc, argv, NULL) != STORE_OK)
        fail_msg("redis refused or lost: %s", argv[0]);
    freeReplyObject(reply);
}

static void hincr(int gen, const char *counter, const char *scope, const char *period,
                  const char *field, long long delta)
{
    char key[INDICATORS_KEY_MAX];
    indicators_counter_key(counter, scope, period, key);
    redisReply *reply = NULL;
    assert_int_equal(
        store_command(store, &reply, "HINCRBY indicators:g%d:%s %s %lld", gen, key, field, delta),
        STORE_OK);
    assert_int_equal(reply->type, REDIS_REPLY_INTEGER);
    freeReplyObject(reply);
}

/* Adds delta to "*" and each comma-separated dim of (counter, scope,
 * period). */
static void add_fields(const char *counter, const char *scope, const char *period, const char *dims,
                       long long delta)
{
    hincr(GEN, counter, scope, period, "*", delta);
    char copy[256];
    snprintf(copy, sizeof copy, "%s", dims ? dims : "");
    char *save = NULL;
    for (char *dim = strtok_r(copy, ",", &save); dim; dim = strtok_r(NULL, ",", &save))
        hincr(GEN, counter, scope, period, dim, delta);
}

/* What an event of day (YYYY-MM-DD, Europe/Paris) counts: its day (the
 * Métropole and the territory only), month, quarter, year and "all", for
 * the Métropole, the territory and the commune (when given). */
static void count_at(const char *counter, const char *territory, const char *commune,
                     const char *day, const char *dims, long long delta)
{
    char month[16], quarter[32], year[8];
    snprintf(month, sizeof month, "%.7s", day);
    snprintf(year, sizeof year, "%.4s", day);
    snprintf(quarter, sizeof quarter, "%.4s-Q%d", day, (atoi(day + 5) - 1) / 3 + 1);
    const char *scopes[3] = {"all", territory, commune};
    for (int s = 0; s < 3; s++) {
        if (!scopes[s])
            continue;
        if (s < 2)
            add_fields(counter, scopes[s], day, dims, delta);
        add_fields(counter, scopes[s], month, dims, delta);
        add_fields(counter, scopes[s], quarter, dims, delta);
        add_fields(counter, scopes[s], year, dims, delta);
        add_fields(counter, scopes[s], "all", dims, delta);
    }
}

/* What a record stating a year counts: that year and "all". */
static void count_year(const char *counter, const char *territory, const char *year,
                       const char *dims, long long delta)
{
    const char *scopes[2] = {"all", territory};
    for (int s = 0; s < 2; s++) {
        add_fields(counter, scopes[s], year, dims, delta);
        add_fields(counter, scopes[s], "all", dims, delta);
    }
}

/* The fixed history. Territories: CT2 (Aix-en-Provence, 13001) and CT1
 * (Marseille, 13055). */
static int seed(void **state)
{
    (void)state;
    command("FLUSHALL");
    command("SET indicators:current %d", GEN);
    /* Another generation, which no query may read. */
    hincr(GEN - 1, "conventions.signed", "all", "2025-01", "*", 1000);
    hincr(GEN - 1, "conventions.signed", "all", "all", "*", 1000);

    /* units.registered: FLOW by stock, kept per commune. */
    count_at("units.registered", "CT2", "13001", "2024-12-31", "stock=PRIVATE", 1);
    count_at("units.registered", "CT2", "13001", "2025-01-10", "stock=PRIVATE", 1);
    count_at("units.registered", "CT2", "13001", "2025-01-20", "stock=SOCIAL", 1);
    count_at("units.registered", "CT1", "13055", "2025-02-05", "stock=PRIVATE", 1);

    /* conventions.signed: FLOW by level. */
    count_at("conventions.signed", "CT2", "13001", "2024-11-10", "level=LOC2", 1);
    count_at("conventions.signed", "CT2", "13001", "2024-12-20", "level=LOC1", 1);
    count_at("conventions.signed", "CT2", "13001", "2025-01-15", "level=LOC2", 1);
    count_at("conventions.signed", "CT1", "13055", "2025-03-31", "level=LOC3", 1);

    /* conventions.active: LEVEL by level; one ends on 2025-02-03, one is
     * signed this year and one (a clock ahead) next year. */
    count_at("conventions.active", "CT2", "13001", "2024-11-10", "level=LOC2", 1);
    count_at("conventions.active", "CT2", "13001", "2024-12-20", "level=LOC1", 1);
    count_at("conventions.active", "CT2", "13001", "2025-01-15", "level=LOC2", 1);
    count_at("conventions.active", "CT2", "13001", "2025-02-03", "level=LOC2", -1);
    count_at("conventions.active", "CT1", "13055", "2025-03-31", "level=LOC3", 1);
    char day[32];
    snprintf(day, sizeof day, "%04d-01-01", this_year);
    count_at("conventions.active", "CT1", "13055", day, "level=LOC1", 1);
    snprintf(day, sizeof day, "%04d-06-30", this_year + 1);
    count_at("conventions.active", "CT1", "13055", day, "level=LOC1", 1);

    /* conventions.delay_to_sign: a distribution (not per commune). */
    count_at("conventions.delay_to_sign", "CT2", NULL, "2025-01-15", "v=5", 1);
    count_at("conventions.delay_to_sign", "CT2", NULL, "2025-03-02", "v=10", 3);
    count_at("conventions.delay_to_sign", "CT2", NULL, "2025-03-10", "v=20", 1);
    count_at("conventions.delay_to_sign", "CT2", NULL, "2025-03-20", "v=40", 1);
    count_at("conventions.delay_to_sign", "CT2", NULL, "2025-03-28", "v=100", 1);

    /* Units reserved for Action Logement against objectives, stated year. */
    count_year("reservations.al_units", "CT2", "2025", "programme=P01AAA,mode=FLOW", 3);
    count_year("reservations.al_units", "CT2", "2025", "programme=P02BBB,mode=STOCK", 2);
    count_year("objectives.units", "CT2", "2025", "programme=P01AAA", 4);
    return 0;
}

/* ====================================================================== */
/* Calling the handlers                                                   */
/* ====================================================================== */

typedef struct {
    caller_t caller;
    call_t call;
    reply_t reply;
} request_t;

/* Runs a handler as a PARTNER would call it; fails unless the reply has
 * this status and (when not NULL) field. The caller frees the body. */
static void run(handler_fn *handler, const char *type, const ProtobufCMessage *body, request_t *r,
                int status, const char *field)
{
    memset(r, 0, sizeof *r);
    r->caller.party = PARTY_PARTNER;
    snprintf(r->caller.name, sizeof r->caller.name, "partner");
    r->call.caller = &r->caller;
    r->call.type = type;
    r->call.request_id = "req-1";
    handler(&ind, &r->call, body, &r->reply);
    if ((int)r->reply.status != status)
        fail_msg("%s: status %d (%s: %s), expected %d", type, r->reply.status, r->reply.field,
                 r->reply.message, status);
    if (field)
        assert_string_equal(r->reply.field, field);
    if (status != OK) {
        assert_true(strlen(r->reply.message) > 0);
        assert_null(r->reply.body);
    }
    assert_false(r->reply.retry);
    assert_null(r->reply.txn);
}

typedef struct {
    const char *indicator, *kind, *from, *to, *territory, *commune, *filter;
} series_ask_t;

static Passerelle__Series *series_call(series_ask_t ask, int status, const char *field)
{
    Passerelle__SeriesRequest req = PASSERELLE__SERIES_REQUEST__INIT;
    Passerelle__Scope scope = PASSERELLE__SCOPE__INIT;
    req.indicator = (char *)ask.indicator;
    req.period_kind = (char *)ask.kind;
    req.from = (char *)ask.from;
    req.to = (char *)ask.to;
    req.filter = (char *)ask.filter;
    if (ask.territory || ask.commune) {
        scope.territory = (char *)ask.territory;
        scope.commune = (char *)ask.commune;
        req.scope = &scope;
    }
    request_t r;
    run(handle_indicator_series, "indicator.series", &req.base, &r, status, field);
    if (status != OK)
        return NULL;
    Passerelle__Series *series = passerelle__series__unpack(NULL, r.reply.body_len, r.reply.body);
    free(r.reply.body);
    assert_non_null(series);
    assert_string_equal(series->indicator, ask.indicator);
    assert_true(series->has_generation);
    assert_int_equal(series->generation, GEN);
    return series;
}

/* The series' values, -1 standing for an undefined point. */
static void expect_values(const Passerelle__Series *series, const double *values, size_t n)
{
    if (series->n_points != n)
        fail_msg("%s: %zu points, expected %zu", series->indicator, series->n_points, n);
    for (size_t i = 0; i < n; i++) {
        const Passerelle__Point *p = series->points[i];
        assert_true(p->has_defined);
        if (values[i] < 0) {
            if (p->defined)
                fail_msg("%s %s: %g, expected no value", series->indicator, p->period, p->value);
            continue;
        }
        if (!p->defined || p->value != values[i])
            fail_msg("%s %s: %s%g, expected %g", series->indicator, p->period,
                     p->defined ? "" : "undefined ", p->value, values[i]);
    }
}

#define EXPECT(series, ...)                                                                        \
    do {                                                                                           \
        const double expected_[] = {__VA_ARGS__};                                                  \
        expect_values(series, expected_, sizeof expected_ / sizeof expected_[0]);                  \
    } while (0)

/* Asks a series and checks its values. */
#define SERIES(ask, ...)                                                                           \
    do {                                                                                           \
        Passerelle__Series *s_ = series_call(ask, OK, NULL);                                       \
        EXPECT(s_, __VA_ARGS__);                                                                   \
        passerelle__series__free_unpacked(s_, NULL);                                               \
    } while (0)

/* A request from its leading fields (the others NULL), in the order of
 * series_ask_t. */
static series_ask_t ask_make(const char *const f[7])
{
    return (series_ask_t){f[0], f[1], f[2], f[3], f[4], f[5], f[6]};
}
#define ASK(...) ask_make((const char *const[7]){__VA_ARGS__})

static void series_refused(series_ask_t ask, const char *field)
{
    series_call(ask, BAD, field);
}

static Passerelle__Snapshot *snapshot_call(const char *territory, const char *commune,
                                           const char *date, int status, const char *field)
{
    Passerelle__SnapshotRequest req = PASSERELLE__SNAPSHOT_REQUEST__INIT;
    Passerelle__Scope scope = PASSERELLE__SCOPE__INIT;
    scope.territory = (char *)territory;
    scope.commune = (char *)commune;
    req.scope = &scope;
    req.date = (char *)date;
    request_t r;
    run(handle_indicator_snapshot, "indicator.snapshot", &req.base, &r, status, field);
    if (status != OK)
        return NULL;
    Passerelle__Snapshot *snap = passerelle__snapshot__unpack(NULL, r.reply.body_len, r.reply.body);
    free(r.reply.body);
    assert_non_null(snap);
    assert_int_equal(snap->n_rows, catalog_count);
    assert_int_equal(snap->generation, GEN);
    return snap;
}

static const Passerelle__SnapshotRow *snapshot_row(const Passerelle__Snapshot *snap,
                                                   const char *indicator)
{
    for (size_t i = 0; i < snap->n_rows; i++)
        if (strcmp(snap->rows[i]->indicator, indicator) == 0)
            return snap->rows[i];
    fail_msg("no snapshot row for %s", indicator);
    return NULL;
}

/* value < 0: undefined. */
static void expect_row(const Passerelle__Snapshot *snap, const char *indicator, double value,
                       const char *basis)
{
    const Passerelle__SnapshotRow *row = snapshot_row(snap, indicator);
    assert_true(row->has_defined);
    if (value < 0)
        assert_false(row->defined);
    else if (!row->defined || row->value != value)
        fail_msg("%s at %s: %s%g, expected %g", indicator, snap->date,
                 row->defined ? "" : "undefined ", row->value, value);
    assert_string_equal(row->basis, basis);
}

static Passerelle__ExportReply *export_call(Passerelle__ExportRequest *req, int status,
                                            const char *field)
{
    request_t r;
    run(handle_indicator_export, "indicator.export", &req->base, &r, status, field);
    if (status != OK)
        return NULL;
    Passerelle__ExportReply *out =
        passerelle__export_reply__unpack(NULL, r.reply.body_len, r.reply.body);
    free(r.reply.body);
    assert_non_null(out);
    return out;
}

/* ====================================================================== */
/* Tests                                                                  */
/* ====================================================================== */

static void test_list(void **state)
{
    (void)state;
    Passerelle__IndicatorListRequest req = PASSERELLE__INDICATOR_LIST_REQUEST__INIT;
    request_t r;
    run(handle_indicator_list, "indicator.list", &req.base, &r, OK, NULL);
    Passerelle__IndicatorList *list =
        passerelle__indicator_list__unpack(NULL, r.reply.body_len, r.reply.body);
    free(r.reply.body);
    assert_non_null(list);
    assert_int_equal(list->n_indicators, catalog_count);
    bool found = false;
    for (size_t i = 0; i < list->n_indicators; i++) {
        const Passerelle__IndicatorDef *def = list->indicators[i];
        assert_string_equal(def->name, catalog[i].name);
        assert_true(def->definition && *def->definition);
        if (strcmp(def->name, "conventions.signed") == 0) {
            found = true;
            assert_int_equal(def->kind, PASSERELLE__INDICATOR_KIND__INDICATOR_FLOW);
            assert_int_equal(def->n_axes, 1);
            assert_string_equal(def->axes[0], "level");
            assert_true(def->communes);
        }
    }
    assert_true(found);
    passerelle__indicator_list__free_unpacked(list, NULL);
}

static void test_flow(void **state)
{
    (void)state;
    /* By month, the Métropole: generation 2's 1000 is not read. */
    Passerelle__Series *s =
        series_call(ASK("conventions.signed", "month", "2024-10", "2025-04"), OK, NULL);
    EXPECT(s, 0, 1, 1, 1, 0, 1, 0);
    assert_string_equal(s->period_kind, "month");
    assert_string_equal(s->points[0]->period, "2024-10");
    assert_string_equal(s->points[6]->period, "2025-04");
    assert_false(s->points[0]->has_observations);
    assert_null(s->filter);
    passerelle__series__free_unpacked(s, NULL);

    /* Per territory, by quarter and year; the kind in any case. */
    SERIES(ASK("conventions.signed", "QUARTER", "2024-Q4", "2025-Q2", "CT2"), 2, 1, 0);
    SERIES(ASK("conventions.signed", "quarter", "2024-Q4", "2025-Q2", "ct1"), 0, 1, 0);
    SERIES(ASK("conventions.signed", "year", "2024", "2025"), 2, 2);

    /* A filter, its value in any case; the reply names it as counted. */
    s = series_call(ASK("conventions.signed", "year", "2024", "2025", NULL, NULL, "level=loc2"), OK,
                    NULL);
    EXPECT(s, 1, 1);
    assert_string_equal(s->filter, "level=LOC2");
    passerelle__series__free_unpacked(s, NULL);
    SERIES(ASK("units.registered", "month", "2024-12", "2025-02", NULL, NULL, "stock=PRIVATE"), 1,
           1, 1);

    /* A commune, by INSEE code or by name, and its territory with it. */
    s = series_call(ASK("units.registered", "month", "2024-12", "2025-02", NULL, "13001"), OK,
                    NULL);
    EXPECT(s, 1, 2, 0);
    assert_string_equal(s->scope->commune, "13001");
    assert_string_equal(s->scope->territory, "CT2");
    passerelle__series__free_unpacked(s, NULL);
    SERIES(ASK("units.registered", "month", "2024-12", "2025-02", "CT2", "aix en provence"), 1, 2,
           0);
    SERIES(ASK("units.registered", "month", "2024-12", "2025-02", NULL, "Marseille"), 0, 0, 1);

    /* Day figures of a territory. */
    SERIES(ASK("units.registered", "day", "2025-01-09", "2025-01-11", "CT2"), 0, 1, 0);
}

static void test_level(void **state)
{
    (void)state;
    /* By month, across a new year; the end in February is counted on
     * its day. */
    SERIES(ASK("conventions.active", "month", "2024-10", "2025-04"), 0, 1, 2, 3, 2, 3, 3);
    SERIES(ASK("conventions.active", "month", "2024-10", "2025-04", "CT2"), 0, 1, 2, 3, 2, 2, 2);
    SERIES(ASK("conventions.active", "month", "2024-10", "2025-04", NULL, NULL, "level=LOC2"), 0, 1,
           1, 2, 1, 1, 1);
    SERIES(ASK("conventions.active", "month", "2024-12", "2025-02", NULL, "13001"), 2, 3, 2);
    SERIES(ASK("units.total", "month", "2024-12", "2025-02"), 1, 3, 4);

    /* By year, up to next year (a count stamped in the future). */
    char last[16];
    snprintf(last, sizeof last, "%04d", this_year + 1);
    Passerelle__Series *s = series_call(ASK("conventions.active", "year", "2024", last), OK, NULL);
    assert_int_equal(s->n_points, (size_t)(this_year + 1 - 2024 + 1));
    assert_int_equal(s->points[0]->value, 2);
    assert_int_equal(s->points[1]->value, 3);
    for (size_t i = 2; i + 2 < s->n_points; i++)
        assert_int_equal(s->points[i]->value, 3);
    assert_int_equal(s->points[s->n_points - 2]->value, 4);
    assert_int_equal(s->points[s->n_points - 1]->value, 5);
    passerelle__series__free_unpacked(s, NULL);

    /* By quarter and by day, across the new year. */
    SERIES(ASK("conventions.active", "quarter", "2024-Q3", "2025-Q2"), 0, 2, 3, 3);
    s = series_call(ASK("conventions.active", "day", "2024-12-30", "2025-01-16", "CT2"), OK, NULL);
    assert_int_equal(s->n_points, 18);
    for (size_t i = 0; i < 18; i++)
        assert_int_equal(s->points[i]->value, i < 16 ? 2 : 3);
    passerelle__series__free_unpacked(s, NULL);
    SERIES(ASK("conventions.active", "day", "2025-02-02", "2025-02-04", "CT2"), 3, 2, 2);
}

static void test_distribution(void **state)
{
    (void)state;
    /* March: 10, 10, 10, 20, 40, 100: the median is the 3rd, the 90th
     * percentile the 6th (ceil(5.4)). A month without observations has no
     * value. */
    Passerelle__Series *s = series_call(
        ASK("conventions.delay_to_sign.median", "month", "2025-01", "2025-04", "CT2"), OK, NULL);
    EXPECT(s, 5, -1, 10, -1);
    assert_true(s->points[0]->has_observations);
    assert_int_equal(s->points[0]->observations, 1);
    assert_int_equal(s->points[1]->observations, 0);
    assert_int_equal(s->points[2]->observations, 6);
    passerelle__series__free_unpacked(s, NULL);
    SERIES(ASK("conventions.delay_to_sign.p90", "month", "2025-01", "2025-04", "CT2"), 5, -1, 100,
           -1);
    /* Over the quarter: 5 joins them (7 values: 4th and 7th). */
    SERIES(ASK("conventions.delay_to_sign.median", "quarter", "2025-Q1", "2025-Q1"), 10);
    SERIES(ASK("conventions.delay_to_sign.p90", "year", "2025", "2025", "CT2"), 100);
    SERIES(ASK("conventions.delay_to_sign.median", "day", "2025-03-09", "2025-03-10", "CT2"), -1,
           20);
}

static void test_ratio(void **state)
{
    (void)state;
    /* 2025: 5 reserved for 4 objectives; 2024: 0 over 0. */
    Passerelle__Series *s =
        series_call(ASK("objectives.achievement", "year", "2024", "2025", "CT2"), OK, NULL);
    EXPECT(s, -1, 1.25);
    assert_true(s->points[1]->has_observations);
    assert_int_equal(s->points[1]->observations, 0);
    passerelle__series__free_unpacked(s, NULL);
    /* One programme: 3 of 4; the other has no objective. */
    SERIES(ASK("objectives.achievement", "year", "2024", "2025", NULL, NULL, "programme=p01aaa"),
           -1, 0.75);
    SERIES(ASK("objectives.achievement", "year", "2025", "2025", NULL, NULL, "programme=P02BBB"),
           -1);
    /* A month of a stated-year figure holds nothing. */
    SERIES(ASK("objectives.achievement", "month", "2025-01", "2025-01"), -1);
    SERIES(ASK("reservations.al_units", "year", "2025", "2025", "CT2", NULL, "mode=stock"), 2);
}

static void test_defaults(void **state)
{
    (void)state;
    char current[PERIOD_KEY_LEN], back[PERIOD_KEY_LEN];
    period_key(PERIOD_MONTH, time_now_ms(), current);
    Passerelle__Series *s = series_call(ASK("units.registered"), OK, NULL);
    assert_string_equal(s->period_kind, "month");
    assert_int_equal(s->n_points, 12);
    assert_string_equal(s->points[11]->period, current);
    assert_null(s->scope->territory);
    assert_null(s->scope->commune);
    passerelle__series__free_unpacked(s, NULL);

    /* Only `to`: the 12 periods ending there. */
    s = series_call(ASK("units.registered", "month", NULL, "2025-02"), OK, NULL);
    assert_int_equal(s->n_points, 12);
    assert_string_equal(s->points[0]->period, "2024-03");
    passerelle__series__free_unpacked(s, NULL);
    s = series_call(ASK("units.registered", "day", NULL, "2025-01-05", "CT2"), OK, NULL);
    assert_int_equal(s->n_points, 12);
    assert_string_equal(s->points[0]->period, "2024-12-25");
    passerelle__series__free_unpacked(s, NULL);

    /* Only `from`: up to the current period. */
    s = series_call(ASK("units.registered", "year", "2024"), OK, NULL);
    period_key(PERIOD_YEAR, time_now_ms(), back);
    assert_int_equal(s->n_points, (size_t)(atoi(back) - 2024 + 1));
    assert_string_equal(s->points[s->n_points - 1]->period, back);
    passerelle__series__free_unpacked(s, NULL);

    /* 400 points are allowed. */
    s = series_call(ASK("conventions.active", "day", "2024-01-01", "2025-02-03", "CT2"), OK, NULL);
    assert_int_equal(s->n_points, 400);
    assert_int_equal(s->points[399]->value, 2);
    passerelle__series__free_unpacked(s, NULL);
}

static void test_series_refusals(void **state)
{
    (void)state;
    series_refused(ASK(NULL), "indicator");
    series_refused(ASK("conventions.nope"), "indicator");
    series_refused(ASK("conventions.signed", "week"), "period_kind");
    series_refused(ASK("conventions.signed", "month", "2025-13"), "from");
    series_refused(ASK("conventions.signed", "month", "2025-01-01"), "from");
    series_refused(ASK("conventions.signed", "quarter", "2025-Q1", "2025-Q5"), "to");
    series_refused(ASK("conventions.signed", "month", "2025-04", "2025-03"), "to");
    series_refused(ASK("conventions.signed", "day", "2024-01-01", "2025-02-04", "CT2"), "to");
    series_refused(ASK("conventions.signed", "month", NULL, NULL, "CT9"), "scope.territory");
    series_refused(ASK("conventions.signed", "month", NULL, NULL, NULL, "Paris"), "scope.commune");
    series_refused(ASK("conventions.signed", "month", NULL, NULL, NULL, "13201"), "scope.commune");
    /* A commune of another territory than the one named. */
    series_refused(ASK("conventions.signed", "month", NULL, NULL, "CT1", "13001"), "scope.commune");
    /* Counters not kept per commune, and no day figures for a commune. */
    series_refused(ASK("reservations.active", "month", NULL, NULL, NULL, "13001"), "scope.commune");
    series_refused(ASK("objectives.achievement", "year", NULL, NULL, NULL, "13001"),
                   "scope.commune");
    series_refused(ASK("conventions.signed", "day", NULL, NULL, NULL, "13001"), "period_kind");
    /* Filters. */
    series_refused(ASK("conventions.signed", "month", NULL, NULL, NULL, NULL, "level"), "filter");
    series_refused(ASK("conventions.signed", "month", NULL, NULL, NULL, NULL, "=LOC2"), "filter");
    series_refused(ASK("conventions.signed", "month", NULL, NULL, NULL, NULL, "level="), "filter");
    series_refused(ASK("conventions.signed", "month", NULL, NULL, NULL, NULL, "stock=PRIVATE"),
                   "filter");
    series_refused(ASK("conventions.delay_to_sign.median", "month", NULL, NULL, NULL, NULL, "v=10"),
                   "filter");
}

static void test_snapshot(void **state)
{
    (void)state;
    /* The last day of 2024, then two days around the end in February. */
    Passerelle__Snapshot *snap = snapshot_call(NULL, NULL, "2024-12-31", OK, NULL);
    assert_string_equal(snap->date, "2024-12-31");
    expect_row(snap, "conventions.active", 2, "at 2024-12-31");
    expect_row(snap, "units.total", 1, "at 2024-12-31");
    expect_row(snap, "conventions.signed", 2, "2024-01-01..2024-12-31");
    expect_row(snap, "units.registered", 1, "2024-01-01..2024-12-31");
    passerelle__snapshot__free_unpacked(snap, NULL);

    snap = snapshot_call(NULL, NULL, "2025-02-02", OK, NULL);
    expect_row(snap, "conventions.active", 3, "at 2025-02-02");
    passerelle__snapshot__free_unpacked(snap, NULL);
    snap = snapshot_call(NULL, NULL, "2025-02-03", OK, NULL);
    expect_row(snap, "conventions.active", 2, "at 2025-02-03");
    passerelle__snapshot__free_unpacked(snap, NULL);

    /* A territory in mid-March: the year up to the 15th. */
    snap = snapshot_call("CT2", NULL, "2025-03-15", OK, NULL);
    assert_string_equal(snap->scope->territory, "CT2");
    expect_row(snap, "conventions.active", 2, "at 2025-03-15");
    expect_row(snap, "conventions.signed", 1, "2025-01-01..2025-03-15");
    expect_row(snap, "units.registered", 2, "2025-01-01..2025-03-15");
    /* 5, 10, 10, 10, 20: the 3rd and the 5th. */
    expect_row(snap, "conventions.delay_to_sign.median", 10, "2025-01-01..2025-03-15");
    expect_row(snap, "conventions.delay_to_sign.p90", 20, "2025-01-01..2025-03-15");
    expect_row(snap, "reservations.al_units", 5, "2025");
    expect_row(snap, "objectives.units", 4, "2025");
    expect_row(snap, "objectives.achievement", 1.25, "2025");
    expect_row(snap, "need_supply.requests_per_reserved_unit", 0, "2025");
    expect_row(snap, "need_supply.housed_per_request", -1, "2025");
    expect_row(snap, "proposals.recorded", 0, "2025-01-01..2025-03-15");
    passerelle__snapshot__free_unpacked(snap, NULL);

    /* The Métropole on the last day of March. */
    snap = snapshot_call(NULL, NULL, "2025-03-31", OK, NULL);
    expect_row(snap, "conventions.signed", 2, "2025-01-01..2025-03-31");
    expect_row(snap, "conventions.active", 3, "at 2025-03-31");
    expect_row(snap, "conventions.delay_to_sign.p90", 100, "2025-01-01..2025-03-31");
    passerelle__snapshot__free_unpacked(snap, NULL);

    /* Today by default. */
    snap = snapshot_call(NULL, NULL, NULL, OK, NULL);
    char today[DATE_LEN];
    date_format(date_today_paris(), today);
    assert_string_equal(snap->date, today);
    passerelle__snapshot__free_unpacked(snap, NULL);

    snapshot_call(NULL, NULL, "2025-02-30", BAD, "date");
    snapshot_call(NULL, NULL, "yesterday", BAD, "date");
    snapshot_call(NULL, "13001", "2025-02-03", BAD, "scope.commune");
    snapshot_call("CT7", NULL, "2025-02-03", BAD, "scope.territory");
}

static void test_export_csv(void **state)
{
    (void)state;
    Passerelle__ExportRequest req = PASSERELLE__EXPORT_REQUEST__INIT;
    Passerelle__Scope scope = PASSERELLE__SCOPE__INIT;
    char *names[] = {"conventions.signed", "objectives.achievement", "conventions.signed"};
    scope.territory = "CT2";
    req.scope = &scope;
    req.n_indicators = 3;
    req.indicators = names;
    req.period_kind = "year";
    req.from = "2024";
    req.to = "2025";
    Passerelle__ExportReply *out = export_call(&req, OK, NULL);
    assert_string_equal(out->media_type, "text/csv");
    assert_int_equal(out->rows, 4);
    const char *expected = "indicator,kind,scope,period,value\r\n"
                           "conventions.signed,FLOW,CT2,2024,2\r\n"
                           "conventions.signed,FLOW,CT2,2025,1\r\n"
                           "objectives.achievement,RATIO,CT2,2024,\r\n"
                           "objectives.achievement,RATIO,CT2,2025,1.25\r\n";
    assert_int_equal(out->content.len, strlen(expected));
    assert_memory_equal(out->content.data, expected, strlen(expected));
    passerelle__export_reply__free_unpacked(out, NULL);

    /* Every scope by default: the Métropole, then CT1..CT6. */
    Passerelle__ExportRequest all = PASSERELLE__EXPORT_REQUEST__INIT;
    char *units[] = {"units.registered"};
    all.format = "CSV";
    all.n_indicators = 1;
    all.indicators = units;
    all.period_kind = "year";
    all.from = "2025";
    all.to = "2025";
    out = export_call(&all, OK, NULL);
    assert_int_equal(out->rows, 7);
    const char *by_scope = "indicator,kind,scope,period,value\r\n"
                           "units.registered,FLOW,all,2025,3\r\n"
                           "units.registered,FLOW,CT1,2025,1\r\n"
                           "units.registered,FLOW,CT2,2025,2\r\n"
                           "units.registered,FLOW,CT3,2025,0\r\n"
                           "units.registered,FLOW,CT4,2025,0\r\n"
                           "units.registered,FLOW,CT5,2025,0\r\n"
                           "units.registered,FLOW,CT6,2025,0\r\n";
    assert_int_equal(out->content.len, strlen(by_scope));
    assert_memory_equal(out->content.data, by_scope, strlen(by_scope));
    passerelle__export_reply__free_unpacked(out, NULL);

    /* Everything, for a commune: only what is kept per commune. */
    Passerelle__ExportRequest commune = PASSERELLE__EXPORT_REQUEST__INIT;
    Passerelle__Scope aix = PASSERELLE__SCOPE__INIT;
    aix.commune = "13001";
    commune.scope = &aix;
    commune.period_kind = "year";
    commune.from = "2025";
    commune.to = "2025";
    out = export_call(&commune, OK, NULL);
    size_t per_commune = 0;
    for (size_t i = 0; i < catalog_count; i++)
        per_commune +=
            catalog[i].kind != PASSERELLE__INDICATOR_KIND__INDICATOR_RATIO && catalog[i].communes;
    assert_int_equal(out->rows, per_commune);
    char *text = strndup((const char *)out->content.data, out->content.len);
    harness_assert_contains(text, "\r\nunits.registered,FLOW,13001,2025,2\r\n");
    harness_assert_contains(text, "\r\nconventions.active,LEVEL,13001,2025,2\r\n");
    free(text);
    passerelle__export_reply__free_unpacked(out, NULL);
}

static void test_export_json(void **state)
{
    (void)state;
    Passerelle__ExportRequest req = PASSERELLE__EXPORT_REQUEST__INIT;
    char *names[] = {"conventions.signed", "conventions.active", "objectives.achievement",
                     "conventions.delay_to_sign.median"};
    req.format = "json";
    req.n_indicators = 4;
    req.indicators = names;
    req.from = "2025-01";
    req.to = "2025-03";
    Passerelle__ExportReply *out = export_call(&req, OK, NULL);
    assert_string_equal(out->media_type, "application/json");
    assert_int_equal(out->rows, 4 * 7 * 3);
    char *text = strndup((const char *)out->content.data, out->content.len);
    json_t *doc = harness_parse_json(text);
    free(text);
    assert_string_equal(json_string_value(json_object_get(doc, "period_kind")), "month");
    assert_string_equal(json_string_value(json_object_get(doc, "from")), "2025-01");
    assert_string_equal(json_string_value(json_object_get(doc, "to")), "2025-03");
    int64_t generated_ms;
    assert_true(
        time_parse_rfc3339(json_string_value(json_object_get(doc, "generated_at")), &generated_ms));
    json_t *indicators = json_object_get(doc, "indicators");
    assert_int_equal(json_array_size(indicators), 4);

    json_t *signed_ = json_array_get(indicators, 0);
    assert_string_equal(json_string_value(json_object_get(signed_, "name")), "conventions.signed");
    assert_string_equal(json_string_value(json_object_get(signed_, "kind")), "FLOW");
    assert_string_equal(json_string_value(json_object_get(signed_, "unit")), "conventions");
    assert_true(json_string_length(json_object_get(signed_, "definition")) > 0);
    json_t *series = json_object_get(signed_, "series");
    assert_int_equal(json_array_size(series), 7);
    json_t *all = json_array_get(series, 0);
    assert_string_equal(json_string_value(json_object_get(all, "scope")), "all");
    json_t *points = json_object_get(all, "points");
    assert_int_equal(json_array_size(points), 3);
    const int totals[3] = {1, 0, 1};
    for (size_t i = 0; i < 3; i++) {
        json_t *point = json_array_get(points, i);
        char period[8];
        snprintf(period, sizeof period, "2025-%02zu", i + 1);
        assert_string_equal(json_string_value(json_object_get(point, "period")), period);
        assert_int_equal(json_integer_value(json_object_get(point, "value")), totals[i]);
    }
    /* Every level present in the range, each its own series. */
    json_t *by = json_object_get(all, "by");
    assert_int_equal(json_object_size(by), 2);
    json_t *loc2 = json_object_get(by, "level=LOC2");
    json_t *loc3 = json_object_get(by, "level=LOC3");
    assert_int_equal(json_array_size(loc2), 3);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(loc2, 0), "value")), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(loc2, 2), "value")), 0);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(loc3, 2), "value")), 1);
    /* CT3 counted nothing: its points are 0, with no breakdown. */
    json_t *ct3 = json_array_get(series, 3);
    assert_string_equal(json_string_value(json_object_get(ct3, "scope")), "CT3");
    assert_int_equal(json_object_size(json_object_get(ct3, "by")), 0);
    assert_int_equal(json_integer_value(json_object_get(
                         json_array_get(json_object_get(ct3, "points"), 0), "value")),
                     0);

    /* A level breaks down by every value it ever counted. */
    json_t *active = json_array_get(indicators, 1);
    json_t *active_all = json_array_get(json_object_get(active, "series"), 0);
    json_t *active_by = json_object_get(active_all, "by");
    assert_non_null(json_object_get(active_by, "level=LOC1"));
    assert_int_equal(json_integer_value(json_object_get(
                         json_array_get(json_object_get(active_by, "level=LOC2"), 1), "value")),
                     1);
    assert_int_equal(json_integer_value(json_object_get(
                         json_array_get(json_object_get(active_all, "points"), 2), "value")),
                     3);

    /* A ratio without a value is null; a percentile too. */
    json_t *achievement = json_array_get(indicators, 2);
    json_t *achievement_ct2 = json_array_get(json_object_get(achievement, "series"), 2);
    assert_string_equal(json_string_value(json_object_get(achievement_ct2, "scope")), "CT2");
    assert_true(json_is_null(
        json_object_get(json_array_get(json_object_get(achievement_ct2, "points"), 0), "value")));
    json_t *median = json_array_get(indicators, 3);
    json_t *median_ct2 = json_array_get(json_object_get(median, "series"), 2);
    json_t *median_points = json_object_get(median_ct2, "points");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(median_points, 2), "value")),
                     10);
    assert_true(json_is_null(json_object_get(json_array_get(median_points, 1), "value")));
    json_decref(doc);
    passerelle__export_reply__free_unpacked(out, NULL);

    /* The year's ratio as a real number. */
    Passerelle__ExportRequest ratio = PASSERELLE__EXPORT_REQUEST__INIT;
    Passerelle__Scope ct2 = PASSERELLE__SCOPE__INIT;
    char *achievement_name[] = {"objectives.achievement"};
    ct2.territory = "CT2";
    ratio.scope = &ct2;
    ratio.format = "json";
    ratio.n_indicators = 1;
    ratio.indicators = achievement_name;
    ratio.period_kind = "year";
    ratio.from = "2025";
    ratio.to = "2025";
    out = export_call(&ratio, OK, NULL);
    text = strndup((const char *)out->content.data, out->content.len);
    doc = harness_parse_json(text);
    free(text);
    json_t *only = json_array_get(
        json_object_get(json_array_get(json_object_get(doc, "indicators"), 0), "series"), 0);
    assert_string_equal(json_string_value(json_object_get(only, "scope")), "CT2");
    assert_true(json_number_value(json_object_get(
                    json_array_get(json_object_get(only, "points"), 0), "value")) == 1.25);
    json_t *p01 = json_object_get(json_object_get(only, "by"), "programme=P01AAA");
    assert_true(json_number_value(json_object_get(json_array_get(p01, 0), "value")) == 0.75);
    json_t *p02 = json_object_get(json_object_get(only, "by"), "programme=P02BBB");
    assert_true(json_is_null(json_object_get(json_array_get(p02, 0), "value")));
    json_decref(doc);
    passerelle__export_reply__free_unpacked(out, NULL);
}

static void test_export_refusals(void **state)
{
    (void)state;
    Passerelle__ExportRequest req = PASSERELLE__EXPORT_REQUEST__INIT;
    req.format = "xml";
    export_call(&req, BAD, "format");

    Passerelle__ExportRequest unknown = PASSERELLE__EXPORT_REQUEST__INIT;
    char *names[] = {"conventions.signed", "conventions.nope"};
    unknown.n_indicators = 2;
    unknown.indicators = names;
    export_call(&unknown, BAD, "indicators");

    /* More than 200 000 rows. */
    Passerelle__ExportRequest huge = PASSERELLE__EXPORT_REQUEST__INIT;
    huge.period_kind = "day";
    huge.from = "1990-01-01";
    huge.to = "2025-12-31";
    export_call(&huge, ST_RESOURCE_EXHAUSTED, "to");

    Passerelle__ExportRequest bad_range = PASSERELLE__EXPORT_REQUEST__INIT;
    bad_range.from = "2025-05";
    bad_range.to = "2025-04";
    export_call(&bad_range, BAD, "to");
    bad_range.from = "2025";
    export_call(&bad_range, BAD, "from");
    bad_range.from = NULL;
    bad_range.period_kind = "fortnight";
    export_call(&bad_range, BAD, "period_kind");

    Passerelle__ExportRequest commune = PASSERELLE__EXPORT_REQUEST__INIT;
    Passerelle__Scope scope = PASSERELLE__SCOPE__INIT;
    scope.commune = "13001";
    commune.scope = &scope;
    commune.period_kind = "day";
    export_call(&commune, BAD, "period_kind");
    commune.period_kind = NULL;
    char *not_per_commune[] = {"reservations.active"};
    commune.n_indicators = 1;
    commune.indicators = not_per_commune;
    export_call(&commune, BAD, "scope.commune");
    scope.commune = "Lyon";
    export_call(&commune, BAD, "scope.commune");
    scope.commune = NULL;
    scope.territory = "CT0";
    export_call(&commune, BAD, "scope.territory");
}

/* Evaluations of the read script since the last reset. */
static long long script_calls(void)
{
    redisReply *reply = NULL;
    assert_int_equal(store_command(store, &reply, "INFO commandstats"), STORE_OK);
    long long calls = 0;
    const char *at = reply->str ? strstr(reply->str, "cmdstat_evalsha:calls=") : NULL;
    if (at)
        calls = atoll(at + strlen("cmdstat_evalsha:calls="));
    freeReplyObject(reply);
    return calls;
}

static void test_one_read_per_query(void **state)
{
    (void)state;
    const char *asks[][4] = {
        {"conventions.active", "month", "2022-01", "2024-12"},
        {"conventions.signed", "month", "2022-01", "2024-12"},
        {"conventions.delay_to_sign.p90", "month", "2022-01", "2024-12"},
        {"objectives.achievement", "month", "2022-01", "2024-12"},
        {"conventions.active", "day", "2024-01-01", "2025-02-03"},
    };
    for (size_t i = 0; i < sizeof asks / sizeof asks[0]; i++) {
        command("CONFIG RESETSTAT");
        Passerelle__Series *s =
            series_call(ASK(asks[i][0], asks[i][1], asks[i][2], asks[i][3]), OK, NULL);
        passerelle__series__free_unpacked(s, NULL);
        if (script_calls() != 1)
            fail_msg("%s by %s: %lld reads", asks[i][0], asks[i][1], script_calls());
    }
    command("CONFIG RESETSTAT");
    Passerelle__Snapshot *snap = snapshot_call(NULL, NULL, "2025-12-31", OK, NULL);
    passerelle__snapshot__free_unpacked(snap, NULL);
    assert_int_equal(script_calls(), 1);
}

static void test_generation_switch(void **state)
{
    (void)state;
    /* Queries follow indicators:current: a fresh generation with nothing
     * in it answers zeros and says so. */
    command("SET indicators:current %d", GEN + 1);
    Passerelle__SeriesRequest req = PASSERELLE__SERIES_REQUEST__INIT;
    req.indicator = "conventions.signed";
    req.period_kind = "year";
    req.from = "2025";
    req.to = "2025";
    request_t r;
    run(handle_indicator_series, "indicator.series", &req.base, &r, OK, NULL);
    Passerelle__Series *s = passerelle__series__unpack(NULL, r.reply.body_len, r.reply.body);
    free(r.reply.body);
    assert_int_equal(s->generation, GEN + 1);
    assert_int_equal(s->points[0]->value, 0);
    passerelle__series__free_unpacked(s, NULL);
    command("DEL indicators:current");
    run(handle_indicator_series, "indicator.series", &req.base, &r, OK, NULL);
    s = passerelle__series__unpack(NULL, r.reply.body_len, r.reply.body);
    free(r.reply.body);
    assert_int_equal(s->generation, 0);
    passerelle__series__free_unpacked(s, NULL);
}

static void test_redis_lost(void **state)
{
    (void)state;
    harness_redis_kill(&redis);
    series_call(ASK("conventions.signed"), ST_UNAVAILABLE, NULL);
    snapshot_call(NULL, NULL, NULL, ST_UNAVAILABLE, NULL);
    Passerelle__ExportRequest req = PASSERELLE__EXPORT_REQUEST__INIT;
    export_call(&req, ST_UNAVAILABLE, NULL);
    assert_int_equal(harness_redis_restart(&redis), 0);
    /* Back by itself, with what was written (AOF). */
    SERIES(ASK("conventions.signed", "year", "2024", "2025"), 2, 2);
}

static int group_setup(void **state)
{
    (void)state;
    this_year = date_today_paris().year;
    if (harness_store_start(&redis, &store) != 0)
        return -1;
    memset(&ind, 0, sizeof ind);
    ind.store = store;
    ind.read_script = query_scripts_add(store);
    return ind.read_script < 0 ? -1 : 0;
}

static int group_teardown(void **state)
{
    (void)state;
    harness_store_stop(&redis, &store);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_list, seed),
        cmocka_unit_test_setup(test_flow, seed),
        cmocka_unit_test_setup(test_level, seed),
        cmocka_unit_test_setup(test_distribution, seed),
        cmocka_unit_test_setup(test_ratio, seed),
        cmocka_unit_test_setup(test_defaults, seed),
        cmocka_unit_test_setup(test_series_refusals, seed),
        cmocka_unit_test_setup(test_snapshot, seed),
        cmocka_unit_test_setup(test_export_csv, seed),
        cmocka_unit_test_setup(test_export_json, seed),
        cmocka_unit_test_setup(test_export_refusals, seed),
        cmocka_unit_test_setup(test_one_read_per_query, seed),
        cmocka_unit_test_setup(test_generation_switch, seed),
        cmocka_unit_test_setup(test_redis_lost, seed),
    };
    log_set_level(LOG_LEVEL_ERROR);
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
