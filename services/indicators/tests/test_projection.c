/* What every event counts (projection.h), without Redis: the exact
 * counter keys, fields and deltas of each event type, written out by hand;
 * the Europe/Paris period boundaries (the end of March in summer time,
 * both 2026 clock changes, the new year); stated periods; day keys for
 * the Métropole and territories only; replacements (objectives, economic
 * projects, demand figures); and the events that count nothing. */
#include "projection.h"

#include "docstore.pb-c.h"
#include "ids.h"
#include "indicators.pb-c.h"
#include "log.h"
#include "reservations.pb-c.h"

#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* ====================================================================== */
/* Helpers                                                                */
/* ====================================================================== */

/* The periods of an instant at 2026-03-31T23:30:00Z (01:30 on 1 April in
 * Marseille), with and without its day, and of stated periods. */
#define APR1_DAYS "2026-04-01 2026-04 2026-Q2 2026 all"
#define APR_NODAY "2026-04 2026-Q2 2026 all"
#define T_APR1    "2026-03-31T23:30:00Z"

#define PROG "P01JTESTPROGRAMME000000000"

static int64_t at(const char *rfc3339)
{
    int64_t ms = 0;
    assert_true(time_parse_rfc3339(rfc3339, &ms));
    return ms;
}

/* Expected triples by blocks: one counter and scope, each period of a
 * space-separated list crossed with each field of another, one delta. */
typedef struct {
    const char *counter;
    const char *scope;
    const char *periods;
    const char *fields;
    int64_t delta;
} block_t;

#define LINE_MAX_LEN (INDICATORS_KEY_MAX + PROJ_FIELD_MAX + 32)

typedef struct {
    char (*lines)[LINE_MAX_LEN];
    size_t count, cap;
} lines_t;

static void lines_push(lines_t *l, const char *key, const char *field, int64_t delta)
{
    if (l->count == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->lines = realloc(l->lines, l->cap * sizeof *l->lines);
        assert_non_null(l->lines);
    }
    snprintf(l->lines[l->count++], LINE_MAX_LEN, "%s %s %" PRId64, key, field, delta);
}

static int line_order(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* Calls fn on every word of a space-separated list. */
static void each_word(const char *list, void (*fn)(void *arg, const char *word), void *arg)
{
    char copy[512];
    snprintf(copy, sizeof copy, "%s", list);
    char *save = NULL;
    for (char *w = strtok_r(copy, " ", &save); w; w = strtok_r(NULL, " ", &save))
        fn(arg, w);
}

typedef struct {
    lines_t *lines;
    const block_t *block;
    const char *period;
} expand_arg_t;

static void push_field(void *arg, const char *field)
{
    expand_arg_t *a = arg;
    char key[INDICATORS_KEY_MAX];
    snprintf(key, sizeof key, "c:%s:%s:%s", a->block->counter, a->block->scope, a->period);
    lines_push(a->lines, key, field, a->block->delta);
}

static void push_period(void *arg, const char *period)
{
    expand_arg_t *a = arg;
    a->period = period;
    each_word(a->block->fields, push_field, a);
}

/* Asserts that t holds exactly the triples of the blocks, in any order;
 * on a difference, prints both lists. */
static void expect_blocks(const triples_t *t, const block_t *blocks, size_t n)
{
    lines_t want = {NULL, 0, 0}, got = {NULL, 0, 0};
    for (size_t i = 0; i < n; i++) {
        expand_arg_t a = {&want, &blocks[i], NULL};
        each_word(blocks[i].periods, push_period, &a);
    }
    for (size_t i = 0; i < t->count; i++)
        lines_push(&got, t->items[i].key, t->items[i].field, t->items[i].delta);
    if (want.count)
        qsort(want.lines, want.count, sizeof *want.lines, line_order);
    if (got.count)
        qsort(got.lines, got.count, sizeof *got.lines, line_order);
    bool same = want.count == got.count;
    for (size_t i = 0; same && i < want.count; i++)
        same = strcmp(want.lines[i], got.lines[i]) == 0;
    if (!same) {
        print_error("expected %zu triples:\n", want.count);
        for (size_t i = 0; i < want.count; i++)
            print_error("  %s\n", want.lines[i]);
        print_error("got %zu:\n", got.count);
        for (size_t i = 0; i < got.count; i++)
            print_error("  %s\n", got.lines[i]);
    }
    free(want.lines);
    free(got.lines);
    assert_true(same);
}

#define EXPECT(t, ...)                                                                             \
    do {                                                                                           \
        const block_t blocks_[] = {__VA_ARGS__};                                                   \
        expect_blocks((t), blocks_, sizeof blocks_ / sizeof blocks_[0]);                           \
    } while (0)

/* Projects an event of that type, time and data into out. */
static void project(const char *type, const char *time, const ProtobufCMessage *msg,
                    projection_t *out)
{
    Passerelle__Event event = PASSERELLE__EVENT__INIT;
    event.id = "E01TESTEVENT00000000000000";
    event.source = "/passerelle/test";
    event.type = (char *)type;
    event.subject = "test/1";
    event.time = (char *)time;
    event.datacontenttype = "application/protobuf";
    event.dataschema = (char *)msg->descriptor->name;
    event.has_data = true;
    event.data.len = protobuf_c_message_get_packed_size(msg);
    event.data.data = malloc(event.data.len ? event.data.len : 1);
    assert_non_null(event.data.data);
    protobuf_c_message_pack(msg, event.data.data);
    bool ok = projection_of(&event, out);
    free(event.data.data);
    assert_true(ok);
}

static void expect_no_replacement(const projection_t *p)
{
    assert_int_equal(p->replacement_count, 0);
}

static void expect_nothing(const projection_t *p)
{
    assert_int_equal(p->adds.count, 0);
    assert_int_equal(p->replacement_count, 0);
}

/* A Marseille unit: the commune is 13055, the arrondissement 13201. */
static Passerelle__Unit marseille_unit(void)
{
    Passerelle__Unit unit = PASSERELLE__UNIT__INIT;
    unit.id = "U01JTESTUNIT00000000000000";
    unit.commune_insee = "13055";
    unit.commune_name = "Marseille";
    unit.arrondissement_insee = "13201";
    unit.territory = "CT1";
    unit.has_stock = true;
    unit.stock = PASSERELLE__STOCK__STOCK_PRIVATE;
    unit.has_in_qpv = true;
    unit.in_qpv = true;
    return unit;
}

/* An Aix-en-Provence unit (13001, CT2). */
static Passerelle__Unit aix_unit(void)
{
    Passerelle__Unit unit = PASSERELLE__UNIT__INIT;
    unit.id = "U01JTESTUNITAIX00000000000";
    unit.commune_insee = "13001";
    unit.commune_name = "Aix-en-Provence";
    unit.territory = "CT2";
    unit.has_stock = true;
    unit.stock = PASSERELLE__STOCK__STOCK_PRIVATE;
    return unit;
}

/* ====================================================================== */
/* Triples and expansion                                                  */
/* ====================================================================== */

static void test_triples(void **state)
{
    (void)state;
    triples_t t;
    triples_init(&t);
    for (int i = 0; i < 100; i++)
        assert_true(triples_add(&t, "c:x:all:all", "*", i));
    assert_int_equal(t.count, 100);
    assert_int_equal(t.items[99].delta, 99);
    assert_string_equal(t.items[42].key, "c:x:all:all");
    char too_long[INDICATORS_KEY_MAX + 4];
    memset(too_long, 'k', sizeof too_long - 1);
    too_long[sizeof too_long - 1] = '\0';
    assert_false(triples_add(&t, too_long, "*", 1));
    assert_int_equal(t.count, 100);
    triples_free(&t);
    assert_int_equal(t.count, 0);
    assert_null(t.items);
    triples_free(&t); /* twice is harmless */
}

static void test_expand_instant(void **state)
{
    (void)state;
    triples_t t;
    triples_init(&t);
    increment_t inc = {
        .counter = "conventions.signed",
        .territory = "CT2",
        .commune = "13001",
        .dims = {"level=LOC2"},
        .dim_count = 1,
        .amount = 1,
        .at_ms = at(T_APR1),
        .days = true,
    };
    assert_true(projection_expand(&inc, &t));
    /* 23:30 UTC on 31 March is 01:30 on 1 April in Marseille; the commune
     * has no day key. */
    EXPECT(&t, {"conventions.signed", "all", APR1_DAYS, "* level=LOC2", 1},
           {"conventions.signed", "CT2", APR1_DAYS, "* level=LOC2", 1},
           {"conventions.signed", "13001", APR_NODAY, "* level=LOC2", 1});
    assert_int_equal(t.count, 28);
    triples_free(&t);

    /* Without days: month and longer everywhere. */
    inc.days = false;
    inc.amount = -2;
    assert_true(projection_expand(&inc, &t));
    EXPECT(&t, {"conventions.signed", "all", APR_NODAY, "* level=LOC2", -2},
           {"conventions.signed", "CT2", APR_NODAY, "* level=LOC2", -2},
           {"conventions.signed", "13001", APR_NODAY, "* level=LOC2", -2});
    triples_free(&t);
}

/* An instant's day, month, quarter and year in Europe/Paris. */
static void expect_instant(const char *utc, const char *periods_with_day)
{
    triples_t t;
    triples_init(&t);
    increment_t inc = {.counter = "units.registered", .amount = 1, .at_ms = at(utc), .days = true};
    assert_true(projection_expand(&inc, &t));
    EXPECT(&t, {"units.registered", "all", periods_with_day, "*", 1});
    triples_free(&t);
}

static void test_expand_local_time(void **state)
{
    (void)state;
    /* The last hour of March in UTC is April in Marseille (UTC+2). */
    expect_instant("2026-03-31T21:59:59Z", "2026-03-31 2026-03 2026-Q1 2026 all");
    expect_instant("2026-03-31T22:00:00Z", "2026-04-01 2026-04 2026-Q2 2026 all");
    /* 29 March 2026: the clocks go forward at 01:00 UTC (02:00 -> 03:00).
     * 00:30 UTC is 01:30 CET, still the 29th; 22:30 UTC is 00:30 CEST on
     * the 30th. */
    expect_instant("2026-03-29T00:30:00Z", "2026-03-29 2026-03 2026-Q1 2026 all");
    expect_instant("2026-03-28T23:30:00Z", "2026-03-29 2026-03 2026-Q1 2026 all");
    expect_instant("2026-03-28T22:30:00Z", "2026-03-28 2026-03 2026-Q1 2026 all");
    expect_instant("2026-03-29T22:30:00Z", "2026-03-30 2026-03 2026-Q1 2026 all");
    /* 25 October 2026: the clocks go back at 01:00 UTC (03:00 -> 02:00).
     * 22:30 UTC on the 24th is 00:30 CEST on the 25th; 21:30 UTC is still
     * the 24th; on the 25th the day ends at 23:00 UTC (CET). */
    expect_instant("2026-10-24T22:30:00Z", "2026-10-25 2026-10 2026-Q4 2026 all");
    expect_instant("2026-10-24T21:30:00Z", "2026-10-24 2026-10 2026-Q4 2026 all");
    expect_instant("2026-10-25T22:30:00Z", "2026-10-25 2026-10 2026-Q4 2026 all");
    expect_instant("2026-10-25T23:30:00Z", "2026-10-26 2026-10 2026-Q4 2026 all");
    /* The new year in winter time begins at 23:00 UTC. */
    expect_instant("2026-12-31T22:59:59Z", "2026-12-31 2026-12 2026-Q4 2026 all");
    expect_instant("2026-12-31T23:00:00Z", "2027-01-01 2027-01 2027-Q1 2027 all");
    /* The end of June: the third quarter begins at 22:00 UTC. */
    expect_instant("2026-06-30T22:00:00Z", "2026-07-01 2026-07 2026-Q3 2026 all");
}

/* A stated period counts in itself, the longer periods containing it,
 * and "all"; never in a day, whatever days says. */
static void expect_stated(period_kind_t kind, const char *key, const char *periods)
{
    triples_t t;
    triples_init(&t);
    increment_t inc = {
        .counter = "projects.count",
        .territory = "CT3",
        .commune = "13103",
        .amount = 5,
        .stated_period = key,
        .stated_kind = kind,
        .days = true,
    };
    assert_true(projection_expand(&inc, &t));
    EXPECT(&t, {"projects.count", "all", periods, "*", 5},
           {"projects.count", "CT3", periods, "*", 5},
           {"projects.count", "13103", periods, "*", 5});
    triples_free(&t);
}

static void test_expand_stated(void **state)
{
    (void)state;
    expect_stated(PERIOD_YEAR, "2026", "2026 all");
    expect_stated(PERIOD_QUARTER, "2026-Q3", "2026-Q3 2026 all");
    expect_stated(PERIOD_MONTH, "2026-04", "2026-04 2026-Q2 2026 all");
    expect_stated(PERIOD_MONTH, "2026-12", "2026-12 2026-Q4 2026 all");
    expect_stated(PERIOD_MONTH, "2027-01", "2027-01 2027-Q1 2027 all");

    /* A key that is not one of its kind is refused, and adds nothing. */
    triples_t t;
    triples_init(&t);
    assert_true(triples_add(&t, "c:before:all:all", "*", 1));
    const char *bad[] = {"2026-13", "2026-Q5", "26", "2026-04-31", "", "2026-Q2"};
    period_kind_t kinds[] = {PERIOD_MONTH, PERIOD_QUARTER, PERIOD_YEAR,
                             PERIOD_DAY,   PERIOD_YEAR,    PERIOD_MONTH};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        increment_t inc = {.counter = "projects.count",
                           .amount = 1,
                           .stated_period = bad[i],
                           .stated_kind = kinds[i]};
        assert_false(projection_expand(&inc, &t));
    }
    assert_int_equal(t.count, 1);
    triples_free(&t);
}

static void test_expand_scopes_and_fields(void **state)
{
    (void)state;
    triples_t t;
    triples_init(&t);
    /* A counter not kept per commune ignores the commune; a territory or
     * commune not of the reference data's shape is ignored too. */
    increment_t inc = {
        .counter = "proposals.recorded",
        .territory = "CT4",
        .commune = "13005",
        .dims = {"public=UNDER_30", "public=MOBILITY", "public=UNDER_30", ""},
        .dim_count = 4,
        .amount = 1,
        .at_ms = at(T_APR1),
        .days = true,
    };
    assert_true(projection_expand(&inc, &t));
    EXPECT(&t, {"proposals.recorded", "all", APR1_DAYS, "* public=UNDER_30 public=MOBILITY", 1},
           {"proposals.recorded", "CT4", APR1_DAYS, "* public=UNDER_30 public=MOBILITY", 1});
    triples_free(&t);

    const char *odd_territories[] = {"ct2", "CT7", "CT", "CT22", "all", ""};
    for (size_t i = 0; i < sizeof odd_territories / sizeof odd_territories[0]; i++) {
        increment_t odd = {.counter = "units.registered",
                           .territory = odd_territories[i],
                           .commune = "1300",
                           .amount = 1,
                           .at_ms = at(T_APR1)};
        assert_true(projection_expand(&odd, &t));
        EXPECT(&t, {"units.registered", "all", APR_NODAY, "*", 1});
        triples_free(&t);
    }
    increment_t corsica = {
        .counter = "units.registered", .commune = "2A004", .amount = 1, .at_ms = at(T_APR1)};
    assert_true(projection_expand(&corsica, &t));
    EXPECT(&t, {"units.registered", "all", APR_NODAY, "*", 1},
           {"units.registered", "2A004", APR_NODAY, "*", 1});
    triples_free(&t);

    /* dims_only: the dims' fields without "*". */
    increment_t part = {.counter = "demand.aids_granted",
                        .territory = "CT1",
                        .dims = {"aid=VISALE"},
                        .dim_count = 1,
                        .amount = 7,
                        .stated_period = "2026",
                        .stated_kind = PERIOD_YEAR,
                        .dims_only = true};
    assert_true(projection_expand(&part, &t));
    EXPECT(&t, {"demand.aids_granted", "all", "2026 all", "aid=VISALE", 7},
           {"demand.aids_granted", "CT1", "2026 all", "aid=VISALE", 7});
    triples_free(&t);

    /* Nothing to count: an amount of 0, or dims_only without dims. */
    part.amount = 0;
    assert_true(projection_expand(&part, &t));
    part.amount = 1;
    part.dim_count = 0;
    assert_true(projection_expand(&part, &t));
    assert_int_equal(t.count, 0);

    /* Malformed: no counter, a dim that is not axis=value, too many dims. */
    increment_t bad = {.counter = NULL, .amount = 1};
    assert_false(projection_expand(&bad, &t));
    bad.counter = "units.registered";
    bad.dims[0] = "stock";
    bad.dim_count = 1;
    assert_false(projection_expand(&bad, &t));
    bad.dim_count = PROJ_DIMS_MAX + 1;
    assert_false(projection_expand(&bad, &t));
    assert_int_equal(t.count, 0);
    triples_free(&t);
}

/* ====================================================================== */
/* The reservations stream                                                */
/* ====================================================================== */

static void test_unit_registered(void **state)
{
    (void)state;
    Passerelle__Unit unit = marseille_unit();
    projection_t p;
    project("unit.registered", T_APR1, &unit.base, &p);
    /* Marseille counts as its commune 13055, not its arrondissement. */
    EXPECT(&p.adds, {"units.registered", "all", APR1_DAYS, "* stock=PRIVATE", 1},
           {"units.registered", "CT1", APR1_DAYS, "* stock=PRIVATE", 1},
           {"units.registered", "13055", APR_NODAY, "* stock=PRIVATE", 1});
    expect_no_replacement(&p);
    projection_free(&p);

    /* The clock changes: 01:30 CET on 29 March; 00:30 CEST on 25 October. */
    Passerelle__Unit social = aix_unit();
    social.stock = PASSERELLE__STOCK__STOCK_SOCIAL;
    project("unit.registered", "2026-03-29T00:30:00Z", &social.base, &p);
    EXPECT(&p.adds,
           {"units.registered", "all", "2026-03-29 2026-03 2026-Q1 2026 all", "* stock=SOCIAL", 1},
           {"units.registered", "CT2", "2026-03-29 2026-03 2026-Q1 2026 all", "* stock=SOCIAL", 1},
           {"units.registered", "13001", "2026-03 2026-Q1 2026 all", "* stock=SOCIAL", 1});
    projection_free(&p);
    project("unit.registered", "2026-10-24T22:30:00Z", &social.base, &p);
    EXPECT(&p.adds,
           {"units.registered", "all", "2026-10-25 2026-10 2026-Q4 2026 all", "* stock=SOCIAL", 1},
           {"units.registered", "CT2", "2026-10-25 2026-10 2026-Q4 2026 all", "* stock=SOCIAL", 1},
           {"units.registered", "13001", "2026-10 2026-Q4 2026 all", "* stock=SOCIAL", 1});
    projection_free(&p);

    /* No stock: "*" only. */
    social.has_stock = false;
    project("unit.registered", T_APR1, &social.base, &p);
    EXPECT(&p.adds, {"units.registered", "all", APR1_DAYS, "*", 1},
           {"units.registered", "CT2", APR1_DAYS, "*", 1},
           {"units.registered", "13001", APR_NODAY, "*", 1});
    projection_free(&p);
}

static Passerelle__Convention convention_of(Passerelle__Unit *unit,
                                            Passerelle__ConventionLevel level)
{
    Passerelle__Convention conv = PASSERELLE__CONVENTION__INIT;
    conv.id = "C01JTESTCONVENTION00000000";
    conv.unit_id = unit->id;
    conv.has_level = true;
    conv.level = level;
    conv.envisaged_on = "2026-01-10";
    conv.unit = unit;
    return conv;
}

static void test_convention_steps(void **state)
{
    (void)state;
    Passerelle__Unit unit = aix_unit();
    Passerelle__Convention conv = convention_of(&unit, PASSERELLE__CONVENTION_LEVEL__LEVEL_LOC2);
    projection_t p;

    project("convention.envisaged", T_APR1, &conv.base, &p);
    EXPECT(&p.adds, {"conventions.envisaged", "all", APR1_DAYS, "* level=LOC2", 1},
           {"conventions.envisaged", "CT2", APR1_DAYS, "* level=LOC2", 1},
           {"conventions.envisaged", "13001", APR_NODAY, "* level=LOC2", 1});
    expect_no_replacement(&p);
    projection_free(&p);

    /* Signed: 81 days after envisaged (21 + 28 + 31 + 1), counted where
     * it was signed; active from now on. */
    conv.signed_on = "2026-04-01";
    project("convention.signed", T_APR1, &conv.base, &p);
    EXPECT(&p.adds, {"conventions.signed", "all", APR1_DAYS, "* level=LOC2", 1},
           {"conventions.signed", "CT2", APR1_DAYS, "* level=LOC2", 1},
           {"conventions.signed", "13001", APR_NODAY, "* level=LOC2", 1},
           {"conventions.active", "all", APR1_DAYS, "* level=LOC2", 1},
           {"conventions.active", "CT2", APR1_DAYS, "* level=LOC2", 1},
           {"conventions.active", "13001", APR_NODAY, "* level=LOC2", 1},
           {"conventions.delay_to_sign", "all", APR1_DAYS, "* v=81", 1},
           {"conventions.delay_to_sign", "CT2", APR1_DAYS, "* v=81", 1});
    projection_free(&p);

    /* Signed the day it was envisaged: a delay of 0. */
    conv.envisaged_on = "2026-04-01";
    project("convention.signed", T_APR1, &conv.base, &p);
    size_t zero = 0;
    for (size_t i = 0; i < p.adds.count; i++)
        if (strcmp(p.adds.items[i].field, "v=0") == 0)
            zero++;
    assert_int_equal(zero, 5 + 5);
    projection_free(&p);

    /* Without its dates (or with signed before envisaged) the signature
     * still counts; the delay has no observation. */
    conv.envisaged_on = NULL;
    project("convention.signed", T_APR1, &conv.base, &p);
    EXPECT(&p.adds, {"conventions.signed", "all", APR1_DAYS, "* level=LOC2", 1},
           {"conventions.signed", "CT2", APR1_DAYS, "* level=LOC2", 1},
           {"conventions.signed", "13001", APR_NODAY, "* level=LOC2", 1},
           {"conventions.active", "all", APR1_DAYS, "* level=LOC2", 1},
           {"conventions.active", "CT2", APR1_DAYS, "* level=LOC2", 1},
           {"conventions.active", "13001", APR_NODAY, "* level=LOC2", 1});
    projection_free(&p);
    conv.envisaged_on = "2026-04-02";
    project("convention.signed", T_APR1, &conv.base, &p);
    assert_int_equal(p.adds.count, 28 + 28);
    projection_free(&p);

    conv.level = PASSERELLE__CONVENTION_LEVEL__LEVEL_LOC3;
    project("convention.in_force", T_APR1, &conv.base, &p);
    EXPECT(&p.adds, {"conventions.in_force", "all", APR1_DAYS, "* level=LOC3", 1},
           {"conventions.in_force", "CT2", APR1_DAYS, "* level=LOC3", 1},
           {"conventions.in_force", "13001", APR_NODAY, "* level=LOC3", 1});
    projection_free(&p);

    project("convention.ended", T_APR1, &conv.base, &p);
    EXPECT(&p.adds, {"conventions.ended", "all", APR1_DAYS, "* level=LOC3", 1},
           {"conventions.ended", "CT2", APR1_DAYS, "* level=LOC3", 1},
           {"conventions.ended", "13001", APR_NODAY, "* level=LOC3", 1},
           {"conventions.active", "all", APR1_DAYS, "* level=LOC3", -1},
           {"conventions.active", "CT2", APR1_DAYS, "* level=LOC3", -1},
           {"conventions.active", "13001", APR_NODAY, "* level=LOC3", -1});
    projection_free(&p);

    /* Abandoned: never signed, so never active. No unit in the data:
     * counted for the Métropole only. */
    conv.level = PASSERELLE__CONVENTION_LEVEL__LEVEL_LOC1;
    conv.unit = NULL;
    project("convention.abandoned", T_APR1, &conv.base, &p);
    EXPECT(&p.adds, {"conventions.abandoned", "all", APR1_DAYS, "* level=LOC1", 1});
    projection_free(&p);
}

static Passerelle__Reservation stock_reservation(Passerelle__Unit *unit)
{
    Passerelle__Reservation r = PASSERELLE__RESERVATION__INIT;
    r.id = "R01JTESTRESERVATION0000000";
    r.has_reservataire = true;
    r.reservataire = PASSERELLE__RESERVATAIRE__RESERVATAIRE_ACTION_LOGEMENT;
    r.has_mode = true;
    r.mode = PASSERELLE__RESERVATION_MODE__MODE_STOCK;
    r.unit_id = unit->id;
    r.programme_id = PROG;
    r.has_year = true;
    r.year = 2026;
    r.has_units = true;
    r.units = 1;
    r.start_date = "2026-04-01";
    r.territory = unit->territory;
    r.has_in_qpv = true;
    r.in_qpv = unit->in_qpv;
    r.unit = unit;
    return r;
}

static Passerelle__Reservation flow_reservation(void)
{
    Passerelle__Reservation r = PASSERELLE__RESERVATION__INIT;
    r.id = "R01JTESTRESERVATIONFLOW000";
    r.has_reservataire = true;
    r.reservataire = PASSERELLE__RESERVATAIRE__RESERVATAIRE_ACTION_LOGEMENT;
    r.has_mode = true;
    r.mode = PASSERELLE__RESERVATION_MODE__MODE_FLOW;
    r.programme_id = PROG;
    r.has_year = true;
    r.year = 2027;
    r.has_units = true;
    r.units = 12;
    r.start_date = "2027-01-01";
    r.territory = "CT3";
    return r;
}

#define STOCK_AL_IN "* mode=STOCK reservataire=ACTION_LOGEMENT qpv=IN"
#define STOCK_AL    "* mode=STOCK reservataire=ACTION_LOGEMENT"
#define FLOW_AL     "* mode=FLOW reservataire=ACTION_LOGEMENT"

static void test_reservation_stock(void **state)
{
    (void)state;
    Passerelle__Unit unit = marseille_unit();
    Passerelle__Reservation r = stock_reservation(&unit);
    projection_t p;

    /* Created: per commune (the unit's); active (not per commune); the
     * unit for Action Logement in the year the reservation states. */
    project("reservation.created", T_APR1, &r.base, &p);
    EXPECT(&p.adds, {"reservations.created", "all", APR1_DAYS, STOCK_AL_IN, 1},
           {"reservations.created", "CT1", APR1_DAYS, STOCK_AL_IN, 1},
           {"reservations.created", "13055", APR_NODAY, STOCK_AL_IN, 1},
           {"reservations.active", "all", APR1_DAYS, STOCK_AL_IN, 1},
           {"reservations.active", "CT1", APR1_DAYS, STOCK_AL_IN, 1},
           {"reservations.al_units", "all", "2026 all", "* programme=" PROG " mode=STOCK", 1},
           {"reservations.al_units", "CT1", "2026 all", "* programme=" PROG " mode=STOCK", 1});
    expect_no_replacement(&p);
    projection_free(&p);

    /* Released: no longer active, still achieved. */
    r.has_state = true;
    r.state = PASSERELLE__RESERVATION_STATE__RESERVATION_RELEASED;
    project("reservation.released", "2026-10-24T22:30:00Z", &r.base, &p);
    EXPECT(&p.adds,
           {"reservations.released", "all", "2026-10-25 2026-10 2026-Q4 2026 all", STOCK_AL, 1},
           {"reservations.released", "CT1", "2026-10-25 2026-10 2026-Q4 2026 all", STOCK_AL, 1},
           {"reservations.active", "all", "2026-10-25 2026-10 2026-Q4 2026 all", STOCK_AL_IN, -1},
           {"reservations.active", "CT1", "2026-10-25 2026-10 2026-Q4 2026 all", STOCK_AL_IN, -1});
    projection_free(&p);

    /* A STOCK reservation is one unit whatever `units` says; with no
     * programme, no programme field; with no year, its start's year. */
    r.units = 5;
    r.programme_id = NULL;
    r.has_year = false;
    r.start_date = "2028-02-01";
    r.in_qpv = false;
    project("reservation.cancelled", T_APR1, &r.base, &p);
    EXPECT(&p.adds, {"reservations.cancelled", "all", APR1_DAYS, STOCK_AL, 1},
           {"reservations.cancelled", "CT1", APR1_DAYS, STOCK_AL, 1},
           {"reservations.active", "all", APR1_DAYS, STOCK_AL " qpv=OUT", -1},
           {"reservations.active", "CT1", APR1_DAYS, STOCK_AL " qpv=OUT", -1},
           {"reservations.al_units", "all", "2028 all", "* mode=STOCK", -1},
           {"reservations.al_units", "CT1", "2028 all", "* mode=STOCK", -1});
    projection_free(&p);
}

static void test_reservation_flow(void **state)
{
    (void)state;
    Passerelle__Reservation r = flow_reservation();
    projection_t p;

    /* No unit: no commune and no neighbourhood; its units count. */
    project("reservation.created", T_APR1, &r.base, &p);
    EXPECT(&p.adds, {"reservations.created", "all", APR1_DAYS, FLOW_AL, 1},
           {"reservations.created", "CT3", APR1_DAYS, FLOW_AL, 1},
           {"reservations.active", "all", APR1_DAYS, FLOW_AL, 1},
           {"reservations.active", "CT3", APR1_DAYS, FLOW_AL, 1},
           {"reservations.al_units", "all", "2027 all", "* programme=" PROG " mode=FLOW", 12},
           {"reservations.al_units", "CT3", "2027 all", "* programme=" PROG " mode=FLOW", 12});
    projection_free(&p);

    project("reservation.cancelled", T_APR1, &r.base, &p);
    EXPECT(&p.adds, {"reservations.cancelled", "all", APR1_DAYS, FLOW_AL, 1},
           {"reservations.cancelled", "CT3", APR1_DAYS, FLOW_AL, 1},
           {"reservations.active", "all", APR1_DAYS, FLOW_AL, -1},
           {"reservations.active", "CT3", APR1_DAYS, FLOW_AL, -1},
           {"reservations.al_units", "all", "2027 all", "* programme=" PROG " mode=FLOW", -12},
           {"reservations.al_units", "CT3", "2027 all", "* programme=" PROG " mode=FLOW", -12});
    projection_free(&p);

    /* Another reservataire's rights are counted, but not as Action
     * Logement's units; unspecified means Action Logement. */
    r.reservataire = PASSERELLE__RESERVATAIRE__RESERVATAIRE_STATE;
    project("reservation.created", T_APR1, &r.base, &p);
    EXPECT(&p.adds, {"reservations.created", "all", APR1_DAYS, "* mode=FLOW reservataire=STATE", 1},
           {"reservations.created", "CT3", APR1_DAYS, "* mode=FLOW reservataire=STATE", 1},
           {"reservations.active", "all", APR1_DAYS, "* mode=FLOW reservataire=STATE", 1},
           {"reservations.active", "CT3", APR1_DAYS, "* mode=FLOW reservataire=STATE", 1});
    projection_free(&p);
    r.has_reservataire = false;
    project("reservation.released", T_APR1, &r.base, &p);
    EXPECT(&p.adds, {"reservations.released", "all", APR1_DAYS, FLOW_AL, 1},
           {"reservations.released", "CT3", APR1_DAYS, FLOW_AL, 1},
           {"reservations.active", "all", APR1_DAYS, FLOW_AL, -1},
           {"reservations.active", "CT3", APR1_DAYS, FLOW_AL, -1});
    projection_free(&p);
}

static void test_objective_set(void **state)
{
    (void)state;
    Passerelle__Objective o = PASSERELLE__OBJECTIVE__INIT;
    o.programme_id = PROG;
    o.has_year = true;
    o.year = 2026;
    o.has_units = true;
    o.units = 40;
    o.territory = "CT2";
    o.has_version = true;
    o.version = 3;
    projection_t p;
    project("objective.set", T_APR1, &o.base, &p);
    assert_int_equal(p.adds.count, 0);
    assert_int_equal(p.replacement_count, 1);
    assert_string_equal(p.replacements[0].identity, "objective:" PROG ":2026");
    assert_int_equal(p.replacements[0].version, 3);
    EXPECT(&p.replacements[0].triples,
           {"objectives.units", "all", "2026 all", "* programme=" PROG, 40},
           {"objectives.units", "CT2", "2026 all", "* programme=" PROG, 40});
    projection_free(&p);
    assert_int_equal(p.replacement_count, 0);
    assert_null(p.replacements);

    /* Set to 0: the replacement still comes, empty, to undo the 40. */
    o.units = 0;
    o.version = 4;
    project("objective.set", T_APR1, &o.base, &p);
    assert_int_equal(p.replacement_count, 1);
    assert_int_equal(p.replacements[0].version, 4);
    assert_int_equal(p.replacements[0].triples.count, 0);
    projection_free(&p);

    /* An objective for one level or financing is not the total: nothing,
     * not even an empty replacement of the total. */
    o.units = 10;
    o.has_level = true;
    o.level = PASSERELLE__CONVENTION_LEVEL__LEVEL_LOC2;
    project("objective.set", T_APR1, &o.base, &p);
    expect_nothing(&p);
    projection_free(&p);
    o.has_level = false;
    o.has_financing = true;
    o.financing = PASSERELLE__FINANCING__FINANCING_PLAI;
    project("objective.set", T_APR1, &o.base, &p);
    expect_nothing(&p);
    projection_free(&p);
}

static Passerelle__Proposal proposal_of(Passerelle__PriorityPublic *publics, size_t n)
{
    Passerelle__Proposal prop = PASSERELLE__PROPOSAL__INIT;
    prop.id = "D01JTESTPROPOSAL0000000000";
    prop.has_employer_sector = true;
    prop.employer_sector = PASSERELLE__EMPLOYER_SECTOR__SECTOR_PRIVATE_NON_AGRICULTURAL;
    prop.has_employer_headcount = true;
    prop.employer_headcount = 40;
    prop.publics = publics;
    prop.n_publics = n;
    prop.has_eligible = true;
    prop.eligible = true;
    prop.has_decision = true;
    prop.decision = PASSERELLE__DECISION__DECISION_PENDING;
    prop.territory = "CT4";
    prop.has_in_qpv = true;
    prop.in_qpv = false;
    return prop;
}

static void test_proposal_recorded(void **state)
{
    (void)state;
    Passerelle__PriorityPublic two[] = {PASSERELLE__PRIORITY_PUBLIC__PUBLIC_UNDER_30,
                                        PASSERELLE__PRIORITY_PUBLIC__PUBLIC_MOBILITY};
    Passerelle__Proposal prop = proposal_of(two, 2);
    projection_t p;
    /* Two publics: the proposal counts once in each, once in "*". */
    project("proposal.recorded", T_APR1, &prop.base, &p);
    EXPECT(&p.adds,
           {"proposals.recorded", "all", APR1_DAYS,
            "* public=UNDER_30 public=MOBILITY eligible=YES", 1},
           {"proposals.recorded", "CT4", APR1_DAYS,
            "* public=UNDER_30 public=MOBILITY eligible=YES", 1});
    expect_no_replacement(&p);
    projection_free(&p);

    /* Not eligible: recorded, and refused for its employer's reason. */
    const struct {
        Passerelle__EmployerSector sector;
        bool has_sector;
        const char *reason;
    } cases[] = {
        {PASSERELLE__EMPLOYER_SECTOR__SECTOR_PRIVATE_NON_AGRICULTURAL, true, "HEADCOUNT_PRIVATE"},
        {PASSERELLE__EMPLOYER_SECTOR__SECTOR_AGRICULTURAL, true, "HEADCOUNT_AGRICULTURAL"},
        {PASSERELLE__EMPLOYER_SECTOR__SECTOR_PUBLIC, true, "PUBLIC_EMPLOYER"},
        {PASSERELLE__EMPLOYER_SECTOR__SECTOR_UNSPECIFIED, true, "SECTOR_UNKNOWN"},
        {PASSERELLE__EMPLOYER_SECTOR__SECTOR_UNSPECIFIED, false, "SECTOR_UNKNOWN"},
    };
    Passerelle__PriorityPublic one[] = {PASSERELLE__PRIORITY_PUBLIC__PUBLIC_APPRENTICE};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Passerelle__Proposal refused = proposal_of(one, 1);
        refused.has_employer_sector = cases[i].has_sector;
        refused.employer_sector = cases[i].sector;
        refused.eligible = false;
        refused.ineligibility_reason = "whatever the reservations service wrote";
        char reason_field[64];
        snprintf(reason_field, sizeof reason_field, "* reason=%s", cases[i].reason);
        project("proposal.recorded", T_APR1, &refused.base, &p);
        EXPECT(&p.adds,
               {"proposals.recorded", "all", APR1_DAYS, "* public=APPRENTICE eligible=NO", 1},
               {"proposals.recorded", "CT4", APR1_DAYS, "* public=APPRENTICE eligible=NO", 1},
               {"proposals.ineligible", "all", APR1_DAYS, reason_field, 1},
               {"proposals.ineligible", "CT4", APR1_DAYS, reason_field, 1});
        projection_free(&p);
    }

    /* No publics, no territory: "*" and eligibility, the Métropole only. */
    Passerelle__Proposal plain = proposal_of(NULL, 0);
    plain.territory = NULL;
    project("proposal.recorded", T_APR1, &plain.base, &p);
    EXPECT(&p.adds, {"proposals.recorded", "all", APR1_DAYS, "* eligible=YES", 1});
    projection_free(&p);
}

static void test_attribution_decided(void **state)
{
    (void)state;
    Passerelle__PriorityPublic publics[] = {PASSERELLE__PRIORITY_PUBLIC__PUBLIC_UNDER_30,
                                            PASSERELLE__PRIORITY_PUBLIC__PUBLIC_DISABILITY};
    Passerelle__Proposal prop = proposal_of(publics, 2);
    prop.decision = PASSERELLE__DECISION__DECISION_ATTRIBUTED;
    prop.decided_on = "2026-04-01";
    projection_t p;
    project("attribution.decided", T_APR1, &prop.base, &p);
    EXPECT(&p.adds,
           {"attributions.decided", "all", APR1_DAYS,
            "* public=UNDER_30 public=DISABILITY decision=ATTRIBUTED", 1},
           {"attributions.decided", "CT4", APR1_DAYS,
            "* public=UNDER_30 public=DISABILITY decision=ATTRIBUTED", 1},
           {"candidates.housed", "all", APR1_DAYS, "* public=UNDER_30 public=DISABILITY", 1},
           {"candidates.housed", "CT4", APR1_DAYS, "* public=UNDER_30 public=DISABILITY", 1});
    projection_free(&p);

    const struct {
        Passerelle__Decision decision;
        const char *fields;
    } others[] = {
        {PASSERELLE__DECISION__DECISION_RANKED,
         "* public=UNDER_30 public=DISABILITY decision=RANKED"},
        {PASSERELLE__DECISION__DECISION_REFUSED,
         "* public=UNDER_30 public=DISABILITY decision=REFUSED"},
        {PASSERELLE__DECISION__DECISION_WITHDRAWN,
         "* public=UNDER_30 public=DISABILITY decision=WITHDRAWN"},
    };
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        prop.decision = others[i].decision;
        project("attribution.decided", T_APR1, &prop.base, &p);
        EXPECT(&p.adds, {"attributions.decided", "all", APR1_DAYS, others[i].fields, 1},
               {"attributions.decided", "CT4", APR1_DAYS, others[i].fields, 1});
        projection_free(&p);
    }
}

/* ====================================================================== */
/* The document store's stream                                            */
/* ====================================================================== */

static void test_document_published(void **state)
{
    (void)state;
    Passerelle__Document doc = PASSERELLE__DOCUMENT__INIT;
    doc.id = "F01JTESTDOCUMENT0000000000";
    doc.title = "Diagnostic Emploi Logement 2026";
    doc.has_kind = true;
    doc.kind = PASSERELLE__DOCUMENT_KIND__DOCUMENT_EMPLOYMENT_HOUSING_DIAGNOSTIC;
    doc.has_theme = true;
    doc.theme = 1;
    doc.territory = "";
    projection_t p;
    /* No territory: a document of the whole Métropole. */
    project("document.published", T_APR1, &doc.base, &p);
    EXPECT(&p.adds, {"documents.published", "all", APR1_DAYS,
                     "* theme=1 kind=EMPLOYMENT_HOUSING_DIAGNOSTIC", 1});
    projection_free(&p);

    doc.territory = "CT5";
    doc.kind = PASSERELLE__DOCUMENT_KIND__DOCUMENT_STUDY;
    doc.theme = 3;
    project("document.published", T_APR1, &doc.base, &p);
    EXPECT(&p.adds, {"documents.published", "all", APR1_DAYS, "* theme=3 kind=STUDY", 1},
           {"documents.published", "CT5", APR1_DAYS, "* theme=3 kind=STUDY", 1});
    projection_free(&p);

    /* A theme the convention does not have is no theme. */
    doc.theme = 9;
    project("document.published", T_APR1, &doc.base, &p);
    EXPECT(&p.adds, {"documents.published", "all", APR1_DAYS, "* kind=STUDY", 1},
           {"documents.published", "CT5", APR1_DAYS, "* kind=STUDY", 1});
    projection_free(&p);
}

/* ====================================================================== */
/* This service's own stream                                              */
/* ====================================================================== */

static void test_economic_project(void **state)
{
    (void)state;
    Passerelle__HousingNeed needs[3] = {PASSERELLE__HOUSING_NEED__INIT,
                                        PASSERELLE__HOUSING_NEED__INIT,
                                        PASSERELLE__HOUSING_NEED__INIT};
    needs[0].has_typology = true;
    needs[0].typology = PASSERELLE__TYPOLOGY__TYPOLOGY_T2;
    needs[0].has_public_ = true;
    needs[0].public_ = PASSERELLE__PRIORITY_PUBLIC__PUBLIC_UNDER_30;
    needs[0].has_units = true;
    needs[0].units = 10;
    needs[1].has_typology = true;
    needs[1].typology = PASSERELLE__TYPOLOGY__TYPOLOGY_T3;
    needs[1].has_units = true;
    needs[1].units = 5;
    needs[2].has_public_ = true;
    needs[2].public_ = PASSERELLE__PRIORITY_PUBLIC__PUBLIC_MOBILITY;
    needs[2].has_units = true;
    needs[2].units = 4;
    Passerelle__HousingNeed *need_ptrs[3] = {&needs[0], &needs[1], &needs[2]};

    Passerelle__EconomicProject project_msg = PASSERELLE__ECONOMIC_PROJECT__INIT;
    project_msg.id = "J01JTESTPROJECT00000000000";
    project_msg.ref = "AMP-2026-001";
    project_msg.sector = "aeronautics";
    project_msg.commune_insee = "13001";
    project_msg.territory = "CT2";
    project_msg.has_expected_jobs = true;
    project_msg.expected_jobs = 120;
    project_msg.has_horizon_year = true;
    project_msg.horizon_year = 2028;
    project_msg.needs = need_ptrs;
    project_msg.n_needs = 3;
    project_msg.has_status = true;
    project_msg.status = PASSERELLE__PROJECT_STATUS__PROJECT_CONFIRMED;
    project_msg.has_version = true;
    project_msg.version = 2;

    projection_t p;
    project("economic_project.created", T_APR1, &project_msg.base, &p);
    assert_int_equal(p.adds.count, 0);
    assert_int_equal(p.replacement_count, 1);
    assert_string_equal(p.replacements[0].identity, "project:J01JTESTPROJECT00000000000");
    assert_int_equal(p.replacements[0].version, 2);
    /* Its horizon year, per commune too; the needs summed in "*". */
    EXPECT(&p.replacements[0].triples,
           {"projects.count", "all", "2028 all", "* status=CONFIRMED", 1},
           {"projects.count", "CT2", "2028 all", "* status=CONFIRMED", 1},
           {"projects.count", "13001", "2028 all", "* status=CONFIRMED", 1},
           {"projects.expected_jobs", "all", "2028 all", "* status=CONFIRMED", 120},
           {"projects.expected_jobs", "CT2", "2028 all", "* status=CONFIRMED", 120},
           {"projects.expected_jobs", "13001", "2028 all", "* status=CONFIRMED", 120},
           {"projects.housing_need", "all", "2028 all", "*", 19},
           {"projects.housing_need", "CT2", "2028 all", "*", 19},
           {"projects.housing_need", "13001", "2028 all", "*", 19},
           {"projects.housing_need", "all", "2028 all", "typology=T2 public=UNDER_30", 10},
           {"projects.housing_need", "CT2", "2028 all", "typology=T2 public=UNDER_30", 10},
           {"projects.housing_need", "13001", "2028 all", "typology=T2 public=UNDER_30", 10},
           {"projects.housing_need", "all", "2028 all", "typology=T3", 5},
           {"projects.housing_need", "CT2", "2028 all", "typology=T3", 5},
           {"projects.housing_need", "13001", "2028 all", "typology=T3", 5},
           {"projects.housing_need", "all", "2028 all", "public=MOBILITY", 4},
           {"projects.housing_need", "CT2", "2028 all", "public=MOBILITY", 4},
           {"projects.housing_need", "13001", "2028 all", "public=MOBILITY", 4});
    projection_free(&p);

    /* Unspecified status is a prospect. */
    project_msg.has_status = false;
    project_msg.n_needs = 0;
    project("economic_project.updated", T_APR1, &project_msg.base, &p);
    EXPECT(&p.replacements[0].triples,
           {"projects.count", "all", "2028 all", "* status=PROSPECT", 1},
           {"projects.count", "CT2", "2028 all", "* status=PROSPECT", 1},
           {"projects.count", "13001", "2028 all", "* status=PROSPECT", 1},
           {"projects.expected_jobs", "all", "2028 all", "* status=PROSPECT", 120},
           {"projects.expected_jobs", "CT2", "2028 all", "* status=PROSPECT", 120},
           {"projects.expected_jobs", "13001", "2028 all", "* status=PROSPECT", 120});
    projection_free(&p);

    /* Dropped: the same identity at a newer version, counting nothing
     * (which undoes what it counted). */
    project_msg.has_status = true;
    project_msg.status = PASSERELLE__PROJECT_STATUS__PROJECT_DROPPED;
    project_msg.n_needs = 3;
    project_msg.version = 3;
    project("economic_project.updated", T_APR1, &project_msg.base, &p);
    assert_int_equal(p.adds.count, 0);
    assert_int_equal(p.replacement_count, 1);
    assert_string_equal(p.replacements[0].identity, "project:J01JTESTPROJECT00000000000");
    assert_int_equal(p.replacements[0].version, 3);
    assert_int_equal(p.replacements[0].triples.count, 0);
    projection_free(&p);

    /* No id: nothing to replace. */
    project_msg.id = NULL;
    project_msg.status = PASSERELLE__PROJECT_STATUS__PROJECT_SETTLED;
    project("economic_project.updated", T_APR1, &project_msg.base, &p);
    expect_nothing(&p);
    projection_free(&p);
}

static Passerelle__DemandRow demand_row(const char *territory, Passerelle__PriorityPublic pub,
                                        uint32_t requests, uint32_t visale, uint32_t loca_pass,
                                        uint32_t mobility, uint32_t other, uint32_t housed)
{
    Passerelle__DemandRow row = PASSERELLE__DEMAND_ROW__INIT;
    row.period = "2026-Q2";
    row.territory = (char *)territory;
    row.has_public_ = pub != PASSERELLE__PRIORITY_PUBLIC__PUBLIC_UNSPECIFIED;
    row.public_ = pub;
    row.has_housing_requests = true;
    row.housing_requests = requests;
    row.has_aids_visale = true;
    row.aids_visale = visale;
    row.has_aids_loca_pass = true;
    row.aids_loca_pass = loca_pass;
    row.has_aids_mobility = true;
    row.aids_mobility = mobility;
    row.has_aids_other = true;
    row.aids_other = other;
    row.has_housed = true;
    row.housed = housed;
    return row;
}

static void test_demand_figures(void **state)
{
    (void)state;
    const Passerelle__PriorityPublic none = PASSERELLE__PRIORITY_PUBLIC__PUBLIC_UNSPECIFIED;
    const Passerelle__PriorityPublic under_30 = PASSERELLE__PRIORITY_PUBLIC__PUBLIC_UNDER_30;
    Passerelle__DemandRow rows[4] = {
        demand_row("CT1", none, 100, 20, 10, 5, 0, 30),
        demand_row("CT1", under_30, 40, 8, 0, 0, 0, 12),
        demand_row("CT2", none, 50, 0, 0, 0, 0, 10),
        demand_row("CT3", none, 999, 0, 0, 0, 0, 999),
    };
    rows[3].period = "2026-Q3"; /* not the batch's period: left out */
    Passerelle__DemandRow *row_ptrs[4] = {&rows[0], &rows[1], &rows[2], &rows[3]};
    Passerelle__DemandPeriod period = PASSERELLE__DEMAND_PERIOD__INIT;
    period.period = "2026-Q2";
    period.rows = row_ptrs;
    period.n_rows = 4;
    period.has_version = true;
    period.version = 4;

    projection_t p;
    project("demand.figures_replaced", T_APR1, &period.base, &p);
    assert_int_equal(p.adds.count, 0);
    assert_int_equal(p.replacement_count, 1);
    assert_string_equal(p.replacements[0].identity, "demand:2026-Q2");
    assert_int_equal(p.replacements[0].version, 4);
    /* The totals in "*" (aids by kind in "aid=X"), one public's figures
     * in "public=X" only; a quarter counts in itself, its year and all. */
#define Q2 "2026-Q2 2026 all"
    EXPECT(
        &p.replacements[0].triples, {"demand.requests", "all", Q2, "*", 150},
        {"demand.requests", "all", Q2, "public=UNDER_30", 40},
        {"demand.requests", "CT1", Q2, "*", 100},
        {"demand.requests", "CT1", Q2, "public=UNDER_30", 40},
        {"demand.requests", "CT2", Q2, "*", 50}, {"demand.aids_granted", "all", Q2, "*", 35},
        {"demand.aids_granted", "all", Q2, "aid=VISALE", 20},
        {"demand.aids_granted", "all", Q2, "aid=LOCA_PASS", 10},
        {"demand.aids_granted", "all", Q2, "aid=MOBILITY", 5},
        {"demand.aids_granted", "all", Q2, "public=UNDER_30", 8},
        {"demand.aids_granted", "CT1", Q2, "*", 35},
        {"demand.aids_granted", "CT1", Q2, "aid=VISALE", 20},
        {"demand.aids_granted", "CT1", Q2, "aid=LOCA_PASS", 10},
        {"demand.aids_granted", "CT1", Q2, "aid=MOBILITY", 5},
        {"demand.aids_granted", "CT1", Q2, "public=UNDER_30", 8},
        {"demand.housed", "all", Q2, "*", 40}, {"demand.housed", "all", Q2, "public=UNDER_30", 12},
        {"demand.housed", "CT1", Q2, "*", 30}, {"demand.housed", "CT1", Q2, "public=UNDER_30", 12},
        {"demand.housed", "CT2", Q2, "*", 10});
#undef Q2
    projection_free(&p);

    /* A month's figures count in the month, its quarter, year and all;
     * a row without its own period is the batch's. */
    Passerelle__DemandRow month_row = demand_row("CT6", none, 7, 0, 0, 0, 1, 0);
    month_row.period = NULL;
    Passerelle__DemandRow *month_ptrs[1] = {&month_row};
    period.period = "2026-11";
    period.rows = month_ptrs;
    period.n_rows = 1;
    project("demand.figures_replaced", T_APR1, &period.base, &p);
    assert_string_equal(p.replacements[0].identity, "demand:2026-11");
#define NOV "2026-11 2026-Q4 2026 all"
    EXPECT(&p.replacements[0].triples, {"demand.requests", "all", NOV, "*", 7},
           {"demand.requests", "CT6", NOV, "*", 7}, {"demand.aids_granted", "all", NOV, "*", 1},
           {"demand.aids_granted", "all", NOV, "aid=OTHER", 1},
           {"demand.aids_granted", "CT6", NOV, "*", 1},
           {"demand.aids_granted", "CT6", NOV, "aid=OTHER", 1});
#undef NOV
    projection_free(&p);

    /* A period emptied by its import: an empty replacement undoes it. */
    period.period = "2026";
    period.n_rows = 0;
    period.rows = NULL;
    project("demand.figures_replaced", T_APR1, &period.base, &p);
    assert_int_equal(p.replacement_count, 1);
    assert_string_equal(p.replacements[0].identity, "demand:2026");
    assert_int_equal(p.replacements[0].triples.count, 0);
    projection_free(&p);

    /* A period that is not a month, quarter or year: nothing. */
    period.period = "2026-04-01";
    project("demand.figures_replaced", T_APR1, &period.base, &p);
    expect_nothing(&p);
    projection_free(&p);
}

/* ====================================================================== */
/* Events that count nothing                                              */
/* ====================================================================== */

static void test_nothing_counted(void **state)
{
    (void)state;
    Passerelle__Unit unit = marseille_unit();
    projection_t p;

    /* Types nothing counts. */
    const char *types[] = {"programme.created", "document.version_added", "unit.registered.x",
                           "convention", ""};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        project(types[i], T_APR1, &unit.base, &p);
        expect_nothing(&p);
        projection_free(&p);
    }

    Passerelle__Event event = PASSERELLE__EVENT__INIT;
    event.id = "E01TESTBROKEN0000000000000";
    event.time = T_APR1;
    assert_true(projection_of(&event, &p)); /* no type */
    expect_nothing(&p);
    projection_free(&p);
    assert_true(projection_of(NULL, &p));
    expect_nothing(&p);
    projection_free(&p);

    /* Data that does not decode: a field 1 of 5 bytes with 1 present. */
    uint8_t broken[] = {0x0a, 0x05, 'a'};
    event.type = "unit.registered";
    event.dataschema = "passerelle.Unit";
    event.has_data = true;
    event.data.data = broken;
    event.data.len = sizeof broken;
    assert_true(projection_of(&event, &p));
    expect_nothing(&p);
    projection_free(&p);

    /* Data of another message than the type carries. */
    size_t len = protobuf_c_message_get_packed_size(&unit.base);
    uint8_t *bytes = malloc(len);
    assert_non_null(bytes);
    protobuf_c_message_pack(&unit.base, bytes);
    event.data.data = bytes;
    event.data.len = len;
    event.dataschema = "passerelle.Reservation";
    assert_true(projection_of(&event, &p));
    expect_nothing(&p);
    projection_free(&p);

    /* A time that does not parse, for an event-time type. */
    event.dataschema = "passerelle.Unit";
    event.time = "yesterday";
    assert_true(projection_of(&event, &p));
    expect_nothing(&p);
    projection_free(&p);
    event.time = NULL;
    assert_true(projection_of(&event, &p));
    expect_nothing(&p);
    projection_free(&p);

    /* The same event, well-formed, does count; a dataschema with a
     * leading '.' or none at all is the type's own message. */
    event.time = T_APR1;
    event.dataschema = ".passerelle.Unit";
    assert_true(projection_of(&event, &p));
    assert_int_equal(p.adds.count, 28);
    projection_free(&p);
    event.dataschema = NULL;
    assert_true(projection_of(&event, &p));
    assert_int_equal(p.adds.count, 28);
    projection_free(&p);
    free(bytes);
}

int main(void)
{
    /* Data that cannot be counted is logged as a warning: expected here. */
    log_set_level(LOG_LEVEL_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_triples),
        cmocka_unit_test(test_expand_instant),
        cmocka_unit_test(test_expand_local_time),
        cmocka_unit_test(test_expand_stated),
        cmocka_unit_test(test_expand_scopes_and_fields),
        cmocka_unit_test(test_unit_registered),
        cmocka_unit_test(test_convention_steps),
        cmocka_unit_test(test_reservation_stock),
        cmocka_unit_test(test_reservation_flow),
        cmocka_unit_test(test_objective_set),
        cmocka_unit_test(test_proposal_recorded),
        cmocka_unit_test(test_attribution_decided),
        cmocka_unit_test(test_document_published),
        cmocka_unit_test(test_economic_project),
        cmocka_unit_test(test_demand_figures),
        cmocka_unit_test(test_nothing_counted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
