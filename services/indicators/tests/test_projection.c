/* What every event counts (projection.h), without Redis: the exact
 * counter keys, fields and deltas of each event type, written out by hand;
 * the Europe/Paris period boundaries (the end of March in summer time,
 * both 2026 clock changes, the new year); stated periods; day keys for
 * the Métropole and territories only; replacements (objectives, economic
 * projects, demand figures); and the events that count nothing.
 * Increments (what a tally sums before expanding): expanding one key at a
 * time and counting the triples agree with projection_expand; the
 * increments an event gives, their strings held in the list, decoded with
 * malloc or an arena, expand to what projection_of gives. Reading a
 * message off the wire gives what protobuf-c's decoder gives, for every
 * message an event carries, whole, with fields it does not know, repeated,
 * at the edges of their encodings, cut short or damaged. */
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

/* An event of that type, time and data (its data malloc'd: free it). */
static Passerelle__Event event_of(const char *type, const char *time, const ProtobufCMessage *msg)
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
    return event;
}

/* Projects an event of that type, time and data into out. */
static void project(const char *type, const char *time, const ProtobufCMessage *msg,
                    projection_t *out)
{
    Passerelle__Event event = event_of(type, time, msg);
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

/* ====================================================================== */
/* Increments: what a tally sums                                          */
/* ====================================================================== */

/* projection_expand_each's callback: the triples of each key into a
 * triples_t. */
static bool collect_key(void *arg, const char *key, const char *const *fields, size_t field_count,
                        int64_t amount)
{
    triples_t *t = arg;
    for (size_t f = 0; f < field_count; f++)
        assert_true(triples_add(t, key, fields[f], amount));
    return true;
}

static bool stop_at_second_key(void *arg, const char *key, const char *const *fields,
                               size_t field_count, int64_t amount)
{
    (void)key;
    (void)fields;
    (void)field_count;
    (void)amount;
    size_t *calls = arg;
    return ++*calls < 2;
}

static void expect_same_triples(const triples_t *a, const triples_t *b)
{
    assert_int_equal(a->count, b->count);
    for (size_t i = 0; i < a->count; i++) {
        assert_string_equal(a->items[i].key, b->items[i].key);
        assert_string_equal(a->items[i].field, b->items[i].field);
        assert_int_equal(a->items[i].delta, b->items[i].delta);
    }
}

/* One key at a time, the same triples in the same order; the count of
 * triples without making them; malformed increments refused alike. */
static void test_expand_each_and_count(void **state)
{
    (void)state;
    const increment_t incs[] = {
        {.counter = "conventions.signed",
         .territory = "CT2",
         .commune = "13001",
         .dims = {"level=LOC2", "public=UNDER_30", "level=LOC2"},
         .dim_count = 3,
         .amount = 3,
         .at_ms = at(T_APR1),
         .days = true},
        {.counter = "conventions.signed", .territory = "CT2", .amount = -1, .at_ms = at(T_APR1)},
        {.counter = "projects.count",
         .territory = "CT3",
         .commune = "13103",
         .amount = 5,
         .stated_period = "2026-03-29",
         .stated_kind = PERIOD_DAY,
         .days = true},
        {.counter = "projects.count",
         .commune = "13103",
         .amount = 5,
         .stated_period = "2026-Q3",
         .stated_kind = PERIOD_QUARTER},
        {.counter = "demand.aids_granted",
         .territory = "CT1",
         .dims = {"aid=VISALE", ""},
         .dim_count = 2,
         .amount = 7,
         .stated_period = "2026-04",
         .stated_kind = PERIOD_MONTH,
         .dims_only = true},
        {.counter = "units.registered", .territory = "ct2", .commune = "1300", .amount = 1},
        /* Nothing to count: no field, or an amount of 0. */
        {.counter = "demand.aids_granted", .amount = 7, .dims_only = true},
        {.counter = "units.registered", .territory = "CT1", .amount = 0, .at_ms = at(T_APR1)},
    };
    for (size_t i = 0; i < sizeof incs / sizeof incs[0]; i++) {
        triples_t whole, by_key;
        triples_init(&whole);
        triples_init(&by_key);
        assert_true(projection_check(&incs[i]));
        assert_true(projection_expand(&incs[i], &whole));
        assert_true(projection_expand_each(&incs[i], collect_key, &by_key));
        expect_same_triples(&whole, &by_key);
        assert_int_equal(projection_triple_count(&incs[i]), whole.count);
        triples_free(&whole);
        triples_free(&by_key);
    }
    assert_int_equal(projection_triple_count(&incs[0]), 5 * 3 + 5 * 3 + 4 * 3);
    assert_int_equal(projection_triple_count(&incs[2]), 5 + 5 + 4);

    /* A callback that says stop stops the expansion. */
    size_t calls = 0;
    assert_false(projection_expand_each(&incs[0], stop_at_second_key, &calls));
    assert_int_equal(calls, 2);

    increment_t bad[] = {
        {.counter = NULL, .amount = 1},
        {.counter = "", .amount = 1},
        {.counter = "units.registered", .dims = {"stock"}, .dim_count = 1, .amount = 1},
        {.counter = "units.registered", .dim_count = PROJ_DIMS_MAX + 1, .amount = 1},
        {.counter = "projects.count",
         .amount = 1,
         .stated_period = "2026-13",
         .stated_kind = PERIOD_MONTH},
        {.counter = "projects.count", .amount = 1, .stated_period = "2026", .stated_kind = 7},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        calls = 0;
        assert_false(projection_check(&bad[i]));
        assert_int_equal(projection_triple_count(&bad[i]), 0);
        assert_false(projection_expand_each(&bad[i], stop_at_second_key, &calls));
        assert_int_equal(calls, 0);
    }
    char long_counter[INDICATORS_KEY_MAX];
    memset(long_counter, 'c', sizeof long_counter - 1);
    long_counter[sizeof long_counter - 1] = '\0';
    increment_t too_long = {.counter = long_counter, .amount = 1};
    assert_false(projection_check(&too_long));
}

/* Every add of the event's, expanded in order: what projection_of gives. */
static void expect_expands_to_projection(const increments_t *l, size_t from,
                                         const Passerelle__Event *event)
{
    triples_t expanded;
    triples_init(&expanded);
    for (size_t i = from; i < l->count; i++)
        assert_true(projection_expand(&l->items[i], &expanded));
    projection_t p;
    assert_true(projection_of(event, &p));
    expect_same_triples(&expanded, &p.adds);
    projection_free(&p);
    triples_free(&expanded);
}

static void test_count_gives_increments(void **state)
{
    (void)state;
    Passerelle__Unit unit = aix_unit();
    Passerelle__Convention conv = convention_of(&unit, PASSERELLE__CONVENTION_LEVEL__LEVEL_LOC2);
    conv.signed_on = "2026-04-01";
    Passerelle__Event signed_event = event_of("convention.signed", T_APR1, &conv.base);
    Passerelle__Unit marseille = marseille_unit();
    Passerelle__Reservation r = stock_reservation(&marseille);
    Passerelle__Event created = event_of("reservation.created", T_APR1, &r.base);

    increments_t l;
    increments_init(&l);
    projection_t p;
    assert_true(projection_count(&signed_event, NULL, &l, &p));
    assert_int_equal(p.adds.count, 0);
    assert_int_equal(p.replacement_count, 0);
    projection_free(&p);
    assert_int_equal(l.count, 3);
    const char *counters[] = {"conventions.signed", "conventions.active",
                              "conventions.delay_to_sign"};
    const char *dims[] = {"level=LOC2", "level=LOC2", "v=81"};
    for (size_t i = 0; i < 3; i++) {
        const increment_t *inc = &l.items[i];
        assert_string_equal(inc->counter, counters[i]);
        assert_string_equal(inc->territory, "CT2");
        assert_string_equal(inc->commune, "13001");
        assert_int_equal(inc->dim_count, 1);
        assert_string_equal(inc->dims[0], dims[i]);
        assert_int_equal(inc->amount, 1);
        assert_int_equal(inc->at_ms, at(T_APR1));
        assert_true(inc->days);
        assert_false(inc->dims_only);
        assert_null(inc->stated_period);
    }
    expect_expands_to_projection(&l, 0, &signed_event);

    /* Appended after them: the reservation's Action Logement units count
     * in its stated year. */
    assert_true(projection_count(&created, NULL, &l, &p));
    projection_free(&p);
    assert_int_equal(l.count, 6);
    assert_string_equal(l.items[2].dims[0], "v=81");
    assert_string_equal(l.items[5].counter, "reservations.al_units");
    assert_string_equal(l.items[5].stated_period, "2026");
    assert_int_equal(l.items[5].stated_kind, PERIOD_YEAR);
    assert_string_equal(l.items[5].dims[0], "programme=" PROG);
    assert_string_equal(l.items[5].dims[1], "mode=STOCK");
    expect_expands_to_projection(&l, 3, &created);

    /* Many events into one list: the text grows in chunks that stay put. */
    increments_reset(&l);
    assert_int_equal(l.count, 0);
    for (int i = 0; i < 500; i++) {
        assert_true(projection_count(i % 2 ? &created : &signed_event, NULL, &l, &p));
        projection_free(&p);
    }
    assert_int_equal(l.count, 1500);
    for (size_t i = 0; i < l.count; i++) {
        bool convention = (i / 3) % 2 == 0;
        assert_string_equal(l.items[i].territory, convention ? "CT2" : "CT1");
        assert_string_equal(l.items[i].dims[0], convention   ? dims[i % 3]
                                                : i % 3 == 2 ? "programme=" PROG
                                                             : "mode=STOCK");
    }
    /* An event that counts nothing appends nothing. */
    Passerelle__Event other = event_of("programme.created", T_APR1, &conv.base);
    assert_true(projection_count(&other, NULL, &l, &p));
    assert_int_equal(l.count, 1500);
    projection_free(&p);
    increments_free(&l);
    assert_int_equal(l.count, 0);
    increments_free(&l); /* twice is harmless */
    free(other.data.data);
    free(signed_event.data.data);
    free(created.data.data);
}

/* A sink that takes increments until it has had `left` of them. */
typedef struct {
    size_t taken, left;
    const char *counters[8];
} sink_t;

static bool sink_take(void *arg, const increment_t *inc)
{
    sink_t *sink = arg;
    if (sink->left == 0)
        return false;
    sink->left--;
    sink->counters[sink->taken++] = inc->counter;
    return true;
}

/* Adds handed out one at a time, in the order of the list; a sink that
 * says stop ends the counting, which reports it. */
static void test_count_each(void **state)
{
    (void)state;
    Passerelle__Unit unit = aix_unit();
    Passerelle__Convention conv = convention_of(&unit, PASSERELLE__CONVENTION_LEVEL__LEVEL_LOC2);
    conv.signed_on = "2026-04-01";
    Passerelle__Event event = event_of("convention.signed", T_APR1, &conv.base);
    projection_t p;
    sink_t sink = {.taken = 0, .left = 8};
    assert_true(projection_count_each(&event, NULL, sink_take, &sink, &p));
    projection_free(&p);
    assert_int_equal(sink.taken, 3);
    assert_string_equal(sink.counters[0], "conventions.signed");
    assert_string_equal(sink.counters[2], "conventions.delay_to_sign");

    sink = (sink_t){.taken = 0, .left = 1};
    assert_false(projection_count_each(&event, NULL, sink_take, &sink, &p));
    assert_int_equal(sink.taken, 1);
    assert_int_equal(p.replacement_count, 0);
    assert_int_equal(p.adds.count, 0);
    projection_free(&p);
    free(event.data.data);
}

/* An allocator that hands out malloc'd blocks and remembers them, and
 * counts the frees asked of it. */
typedef struct {
    void *blocks[64];
    size_t count;
    size_t frees;
} recording_arena_t;

static void *recording_alloc(void *data, size_t size)
{
    recording_arena_t *arena = data;
    assert_true(arena->count < 64);
    void *p = malloc(size);
    assert_non_null(p);
    arena->blocks[arena->count++] = p;
    return p;
}

static void recording_free(void *data, void *p)
{
    (void)p;
    recording_arena_t *arena = data;
    arena->frees++;
}

/* With an arena, the data is decoded into it and left there: nothing is
 * freed one by one, and the increments are the same. */
static void test_count_with_an_arena(void **state)
{
    (void)state;
    Passerelle__Unit unit = aix_unit();
    Passerelle__Reservation r = stock_reservation(&unit);
    Passerelle__Event event = event_of("reservation.cancelled", T_APR1, &r.base);
    recording_arena_t arena = {.count = 0, .frees = 0};
    ProtobufCAllocator allocator = {recording_alloc, recording_free, &arena};
    increments_t with_arena, with_malloc;
    increments_init(&with_arena);
    increments_init(&with_malloc);
    projection_t p;
    assert_true(projection_count(&event, &allocator, &with_arena, &p));
    projection_free(&p);
    assert_true(arena.count > 0);
    assert_int_equal(arena.frees, 0);
    for (size_t i = 0; i < arena.count; i++)
        free(arena.blocks[i]);
    assert_true(projection_count(&event, NULL, &with_malloc, &p));
    projection_free(&p);
    assert_int_equal(with_arena.count, 3);
    assert_int_equal(with_malloc.count, 3);
    for (size_t i = 0; i < with_arena.count; i++) {
        triples_t a, b;
        triples_init(&a);
        triples_init(&b);
        assert_true(projection_expand(&with_arena.items[i], &a));
        assert_true(projection_expand(&with_malloc.items[i], &b));
        expect_same_triples(&a, &b);
        triples_free(&a);
        triples_free(&b);
    }
    assert_int_equal(with_arena.items[2].amount, -1); /* al_units, cancelled */
    increments_free(&with_arena);
    increments_free(&with_malloc);
    free(event.data.data);
}

/* ====================================================================== */
/* Reading messages off the wire                                          */
/* ====================================================================== */

static void expect_same_text(const char *a, const char *b)
{
    if (!a || !b)
        assert_true(a == b);
    else
        assert_string_equal(a, b);
}

static void expect_same_message(const ProtobufCMessage *a, const ProtobufCMessage *b);

/* The size of one value of a field of that type, as protobuf-c lays it
 * out. */
static size_t value_size(ProtobufCType type)
{
    switch (type) {
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(void *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return 8;
    default:
        return 4;
    }
}

static void expect_same_value(const ProtobufCFieldDescriptor *f, const void *a, const void *b)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING:
        expect_same_text(*(char *const *)a, *(char *const *)b);
        break;
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *x = a, *y = b;
        assert_int_equal(x->len, y->len);
        assert_true((x->data == NULL) == (y->data == NULL));
        if (x->len)
            assert_memory_equal(x->data, y->data, x->len);
        break;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *x = *(ProtobufCMessage *const *)a;
        const ProtobufCMessage *y = *(ProtobufCMessage *const *)b;
        assert_true((x == NULL) == (y == NULL));
        if (x)
            expect_same_message(x, y);
        break;
    }
    default:
        assert_memory_equal(a, b, value_size(f->type));
        break;
    }
}

/* Every field of a and b the same, by their descriptor. */
static void expect_same_message(const ProtobufCMessage *a, const ProtobufCMessage *b)
{
    assert_ptr_equal(a->descriptor, b->descriptor);
    const ProtobufCMessageDescriptor *d = a->descriptor;
    for (unsigned k = 0; k < d->n_fields; k++) {
        const ProtobufCFieldDescriptor *f = &d->fields[k];
        const char *fa = (const char *)a + f->offset, *fb = (const char *)b + f->offset;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t na = *(const size_t *)((const char *)a + f->quantifier_offset);
            size_t nb = *(const size_t *)((const char *)b + f->quantifier_offset);
            assert_int_equal(na, nb);
            const char *va = *(char *const *)fa, *vb = *(char *const *)fb;
            for (size_t i = 0; i < na; i++)
                expect_same_value(f, va + i * value_size(f->type), vb + i * value_size(f->type));
            continue;
        }
        if (f->quantifier_offset)
            assert_memory_equal((const char *)a + f->quantifier_offset,
                                (const char *)b + f->quantifier_offset, sizeof(protobuf_c_boolean));
        expect_same_value(f, fa, fb);
    }
}

/* The message read equals the one protobuf-c decodes, or both are NULL;
 * returns whether an Event was read directly: its data points into packed
 * (protobuf-c copies it). */
static bool expect_read_as_decoded(const ProtobufCMessageDescriptor *desc, const uint8_t *packed,
                                   size_t len)
{
    recording_arena_t arena = {.count = 0, .frees = 0};
    ProtobufCAllocator allocator = {recording_alloc, recording_free, &arena};
    ProtobufCMessage *read = projection_message_read(desc, packed, len, &allocator);
    ProtobufCMessage *decoded = protobuf_c_message_unpack(desc, NULL, len, packed);
    assert_true((read == NULL) == (decoded == NULL));
    bool direct = false;
    if (read) {
        expect_same_message(read, decoded);
        if (desc == &passerelle__event__descriptor) {
            const Passerelle__Event *event = (const Passerelle__Event *)read;
            direct = event->data.len > 0 && event->data.data >= packed &&
                     event->data.data < packed + len;
        }
    }
    protobuf_c_message_free_unpacked(decoded, NULL);
    for (size_t i = 0; i < arena.count; i++)
        free(arena.blocks[i]);
    return direct;
}

/* A varint at out; its length. */
static size_t put_varint(uint8_t *out, uint64_t v)
{
    size_t n = 0;
    do {
        out[n] = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v)
            out[n] |= 0x80;
        n++;
    } while (v);
    return n;
}

/* msg packed, cut short at every length and damaged a few bytes at a
 * time: read as decoded every time. */
static void expect_read_as_decoded_damaged(const ProtobufCMessage *msg, uint64_t seed)
{
    uint8_t packed[2048], odd[2048];
    size_t len = protobuf_c_message_get_packed_size(msg);
    assert_true(len <= sizeof packed);
    protobuf_c_message_pack(msg, packed);
    expect_read_as_decoded(msg->descriptor, packed, len);
    for (size_t cut = 0; cut < len; cut++)
        expect_read_as_decoded(msg->descriptor, packed, cut);
    for (int round = 0; round < 1500; round++) {
        memcpy(odd, packed, len);
        for (int k = 0; k < 1 + round % 3; k++) {
            seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
            odd[(seed >> 33) % len] = (uint8_t)(seed >> 17);
        }
        expect_read_as_decoded(msg->descriptor, odd, len);
    }
}

static void test_message_read(void **state)
{
    (void)state;
    Passerelle__Unit unit = marseille_unit();
    Passerelle__Event event = event_of("unit.registered", T_APR1, &unit.base);
    uint8_t packed[1024];
    size_t len = protobuf_c_message_get_packed_size(&event.base);
    assert_true(len < sizeof packed - 64);
    protobuf_c_message_pack(&event.base, packed);

    /* The envelope as written, and empty: read directly. */
    assert_true(expect_read_as_decoded(&passerelle__event__descriptor, packed, len));
    expect_read_as_decoded(&passerelle__event__descriptor, packed, 0);

    /* Empty data: no bytes to point to, as protobuf-c has it. */
    const uint8_t empty_data[] = {8 << 3 | 2, 0x00};
    expect_read_as_decoded(&passerelle__event__descriptor, empty_data, sizeof empty_data);

    /* Fields this build does not know, of every wire type, are skipped;
     * a field given twice is the last one. */
    uint8_t more[1200];
    memcpy(more, packed, len);
    size_t n = len;
    n += put_varint(more + n, (uint64_t)100 << 3 | 0); /* varint */
    n += put_varint(more + n, 300);
    n += put_varint(more + n, (uint64_t)101 << 3 | 1); /* fixed 64 */
    memset(more + n, 0xab, 8);
    n += 8;
    n += put_varint(more + n, (uint64_t)102 << 3 | 5); /* fixed 32 */
    memset(more + n, 0xcd, 4);
    n += 4;
    n += put_varint(more + n, (uint64_t)100000 << 3 | 2); /* bytes */
    n += put_varint(more + n, 3);
    memcpy(more + n, "abc", 3);
    n += 3;
    n += put_varint(more + n, 3 << 3 | 2); /* type again */
    n += put_varint(more + n, 17);
    memcpy(more + n, "convention.signed", 17);
    n += 17;
    assert_true(expect_read_as_decoded(&passerelle__event__descriptor, more, n));
    /* A string with a NUL inside reads as C reads it. */
    more[n - 5] = '\0';
    assert_true(expect_read_as_decoded(&passerelle__event__descriptor, more, n));

    /* What it does not take goes to the decoder, which decides: a known
     * field with another wire type, a group, field number 0. */
    uint8_t odd[1200];
    const uint64_t tags[] = {3 << 3 | 0, 100 << 3 | 3, 0 << 3 | 2};
    for (size_t t = 0; t < sizeof tags / sizeof tags[0]; t++) {
        memcpy(odd, packed, len);
        size_t m = len + put_varint(odd + len, tags[t]);
        odd[m++] = 0;
        assert_false(expect_read_as_decoded(&passerelle__event__descriptor, odd, m));
    }

    /* Scalars at the edges of their encodings (Unit: 8 stock, an enum; 10
     * surface_m2, a double; 13 and 15 bools; 21 version, a uint64): a bool
     * whose only bit set is past the 64th, a negative enum in ten bytes, a
     * number in more bytes than it needs, the largest uint64, a bool in
     * other wire types. */
    const uint8_t edges[][16] = {
        {15 << 3 | 0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02},
        {8 << 3 | 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
        {8 << 3 | 0, 0x82, 0x80, 0x80, 0x00},
        {0xa8, 0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
        {10 << 3 | 1, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 13 << 3 | 0, 0x01},
        {13 << 3 | 2, 0x01, 0x00},
        {13 << 3 | 5, 0x80, 0x00, 0x00, 0x00},
    };
    const size_t edge_len[] = {11, 11, 5, 12, 11, 3, 5};
    for (size_t e = 0; e < sizeof edges / sizeof edges[0]; e++)
        expect_read_as_decoded(&passerelle__unit__descriptor, edges[e], edge_len[e]);

    /* A message field given twice: protobuf-c merges the two, so the
     * commune name of the first stays. */
    Passerelle__Convention conv = convention_of(&unit, PASSERELLE__CONVENTION_LEVEL__LEVEL_LOC2);
    size_t first = protobuf_c_message_get_packed_size(&conv.base);
    protobuf_c_message_pack(&conv.base, odd);
    Passerelle__Unit other = aix_unit();
    other.commune_name = NULL;
    Passerelle__Convention second = PASSERELLE__CONVENTION__INIT;
    second.unit = &other;
    size_t second_len = protobuf_c_message_get_packed_size(&second.base);
    assert_true(first + second_len < sizeof odd);
    protobuf_c_message_pack(&second.base, odd + first);
    expect_read_as_decoded(&passerelle__convention__descriptor, odd, first + second_len);
    Passerelle__Convention *merged = passerelle__convention__unpack(NULL, first + second_len, odd);
    assert_non_null(merged);
    assert_string_equal(merged->unit->commune_name, "Marseille");
    assert_string_equal(merged->unit->territory, "CT2");
    passerelle__convention__free_unpacked(merged, NULL);

    /* Every message an event carries, whole, cut short and damaged. */
    expect_read_as_decoded_damaged(&event.base, 1);
    expect_read_as_decoded_damaged(&unit.base, 2);
    conv.signed_on = "2026-04-01";
    expect_read_as_decoded_damaged(&conv.base, 3);
    Passerelle__Reservation stock = stock_reservation(&unit);
    expect_read_as_decoded_damaged(&stock.base, 4);
    Passerelle__Reservation flow = flow_reservation();
    expect_read_as_decoded_damaged(&flow.base, 5);
    Passerelle__PriorityPublic publics[] = {PASSERELLE__PRIORITY_PUBLIC__PUBLIC_UNDER_30,
                                            PASSERELLE__PRIORITY_PUBLIC__PUBLIC_MOBILITY};
    Passerelle__Proposal prop = proposal_of(publics, 2);
    expect_read_as_decoded_damaged(&prop.base, 6);
    Passerelle__Document doc = PASSERELLE__DOCUMENT__INIT;
    doc.id = "F01JTESTDOCUMENT0000000000";
    doc.title = "Diagnostic";
    doc.has_kind = true;
    doc.kind = PASSERELLE__DOCUMENT_KIND__DOCUMENT_EMPLOYMENT_HOUSING_DIAGNOSTIC;
    doc.has_theme = true;
    doc.theme = 2;
    expect_read_as_decoded_damaged(&doc.base, 7);
    Passerelle__DemandRow row =
        demand_row("CT1", PASSERELLE__PRIORITY_PUBLIC__PUBLIC_UNDER_30, 5, 1, 2, 3, 4, 6);
    Passerelle__DemandRow *rows[] = {&row, &row};
    Passerelle__DemandPeriod period = PASSERELLE__DEMAND_PERIOD__INIT;
    period.period = "2026-Q2";
    period.has_version = true;
    period.version = 3;
    period.rows = rows;
    period.n_rows = 2;
    expect_read_as_decoded_damaged(&period.base, 8);
    free(event.data.data);
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
        cmocka_unit_test(test_expand_each_and_count),
        cmocka_unit_test(test_count_gives_increments),
        cmocka_unit_test(test_count_each),
        cmocka_unit_test(test_count_with_an_arena),
        cmocka_unit_test(test_message_read),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
