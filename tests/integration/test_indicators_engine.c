/* The indicators engine end to end: a real redis-server, the real
 * reservations and indicators services. Events are written through the
 * services (units, conventions, a reservation, a programme's objective set
 * twice, an economic project updated), and the counter hashes in Redis are
 * read back: they reach the figures the history says, in the generation
 * indicators:current names.
 *
 * Then the ways an event could be counted twice: an event appended to the
 * stream a second time (its done marker makes the projector only
 * acknowledge it), and apply.lua called directly with a done marker
 * already set, with a generation that is not current, and with
 * replacements in every order (the newest version wins, a field back to
 * zero is removed).
 *
 * Last, the rebuild: ADMIN only, refused while another process holds the
 * lease; it fills a new generation equal, counter by counter, to what the
 * projectors counted, switches to it, removes the old one, and the
 * projectors go on counting into the new one. */
#include "harness.h"

#include "ids.h"
#include "indicators.pb-c.h"
#include "periods.h"
#include "reservations.pb-c.h"
#include "store.h"

#include <inttypes.h>
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define OK                  PASSERELLE__STATUS__STATUS_OK
#define PERMISSION_DENIED   PASSERELLE__STATUS__STATUS_PERMISSION_DENIED
#define FAILED_PRECONDITION PASSERELLE__STATUS__STATUS_FAILED_PRECONDITION

#define STREAM      "reservations:events"
#define CATCH_UP_MS 20000

extern const char indicators_apply_lua[];

typedef struct {
    harness_indicators_t ind; /* Redis, reservations, indicators, clients, store */
    int year;
    char programme[ID_LEN];
    char social_unit[ID_LEN];
    char reservation[ID_LEN];
} fixture_t;

/* ======================== Redis ======================================== */

/* harness_indicators_expect_counter with the test's deadline. */
static void expect_counter(fixture_t *f, const char *suffix, const char *field, long long want)
{
    harness_indicators_expect_counter(f->ind.store, suffix, field, want, CATCH_UP_MS);
}

/* ======================== the services ================================= */

static void register_unit(fixture_t *f, const char *ref, const char *commune, bool social,
                          char id[ID_LEN])
{
    Passerelle__UnitRegisterRequest req;
    harness_unit_request(&req, ref);
    req.commune = (char *)commune;
    if (social)
        harness_unit_social(&req, "Logirem");
    harness_unit_register(f->ind.stack.client, &req, id);
}

static void convention_step(fixture_t *f, const char *type, const char *unit)
{
    if (strcmp(type, "convention.envisage") == 0) {
        Passerelle__ConventionEnvisageRequest req = PASSERELLE__CONVENTION_ENVISAGE_REQUEST__INIT;
        req.unit = (char *)unit;
        req.has_level = true;
        req.level = PASSERELLE__CONVENTION_LEVEL__LEVEL_LOC2;
        harness_call_ok(f->ind.stack.client, type, &req.base, NULL);
    } else {
        Passerelle__ConventionStepRequest req = PASSERELLE__CONVENTION_STEP_REQUEST__INIT;
        req.unit = (char *)unit;
        harness_call_ok(f->ind.stack.client, type, &req.base, NULL);
    }
}

static void set_objective(fixture_t *f, unsigned units)
{
    Passerelle__ObjectiveSetRequest obj = PASSERELLE__OBJECTIVE_SET_REQUEST__INIT;
    obj.programme = f->programme;
    obj.has_year = true;
    obj.year = (uint32_t)f->year;
    obj.has_units = true;
    obj.units = units;
    harness_call_ok(f->ind.stack.client, "objective.set", &obj.base, NULL);
}

/* ======================== fixture ====================================== */

static int setup(void **state)
{
    if (harness_indicators_setup(state, sizeof(fixture_t), "ind-engine", NULL) != 0)
        return -1;
    fixture_t *f = *state;
    f->year = date_today_paris().year;
    return 0;
}

/* ======================== tests ======================================== */

/* Events written through the services reach the counters. */
static void test_counts(void **state)
{
    fixture_t *f = *state;
    char u1[ID_LEN], u2[ID_LEN], y[8], month[PERIOD_KEY_LEN];
    snprintf(y, sizeof y, "%04u", (unsigned)f->year % 10000u);
    period_key(PERIOD_MONTH, time_now_ms(), month);

    /* Units: three private in Aix-en-Provence (13001, CT2), one social in
     * Allauch (13002, CT1). */
    register_unit(f, "IE-1", "Aix-en-Provence", false, u1);
    register_unit(f, "IE-2", "Aix-en-Provence", false, u2);
    register_unit(f, "IE-3", "13001", false, NULL);
    register_unit(f, "IE-4", "Allauch", true, f->social_unit);
    /* Conventions: two envisaged at LOC2, one of them signed. */
    convention_step(f, "convention.envisage", u1);
    convention_step(f, "convention.envisage", u2);
    convention_step(f, "convention.sign", u1);
    /* A STOCK reservation of the social unit for Action Logement. */
    Passerelle__ReservationCreateRequest res = PASSERELLE__RESERVATION_CREATE_REQUEST__INIT;
    res.has_mode = true;
    res.mode = PASSERELLE__RESERVATION_MODE__MODE_STOCK;
    res.unit = f->social_unit;
    char end[DATE_LEN];
    snprintf(end, sizeof end, "%04u-12-31", (unsigned)(f->year + 1) % 10000u);
    res.end_date = end;
    Passerelle__Reservation *r = (Passerelle__Reservation *)harness_call_ok(
        f->ind.stack.client, "reservation.create", &res.base, &passerelle__reservation__descriptor);
    snprintf(f->reservation, ID_LEN, "%s", r->id);
    passerelle__reservation__free_unpacked(r, NULL);
    /* A programme in Aix and its objective for this year, set twice: the
     * second replaces the first. */
    harness_pig_programme(f->ind.stack.client, "PIG Pays d'Aix", "Aix-en-Provence", f->year,
                          f->year + 1, f->programme);
    set_objective(f, 10);
    set_objective(f, 12);
    /* An economic project of this service, updated: its replacement moves
     * the expected jobs from 40 to 55. */
    Passerelle__ProjectCreateRequest proj = PASSERELLE__PROJECT_CREATE_REQUEST__INIT;
    proj.ref = "IE-J1";
    proj.company = "Aerotec";
    proj.commune = "Aix-en-Provence";
    proj.has_expected_jobs = true;
    proj.expected_jobs = 40;
    proj.has_horizon_year = true;
    proj.horizon_year = (uint32_t)f->year;
    Passerelle__EconomicProject *j = (Passerelle__EconomicProject *)harness_call_ok(
        f->ind.admin, "project.create", &proj.base, &passerelle__economic_project__descriptor);
    Passerelle__ProjectUpdateRequest upd = PASSERELLE__PROJECT_UPDATE_REQUEST__INIT;
    upd.id = j->id;
    upd.has_expected_jobs = true;
    upd.expected_jobs = 55;
    harness_call_ok(f->ind.admin, "project.update", &upd.base, NULL);
    passerelle__economic_project__free_unpacked(j, NULL);

    harness_indicators_wait_caught_up(f->ind.store, STREAM, CATCH_UP_MS);
    harness_indicators_wait_caught_up(f->ind.store, "indicators:events", CATCH_UP_MS);
    assert_int_equal(harness_indicators_generation(f->ind.store), 0);
    expect_counter(f, "c:units.registered:all:all", "*", 4);
    expect_counter(f, "c:units.registered:all:all", "stock=PRIVATE", 3);
    expect_counter(f, "c:units.registered:all:all", "stock=SOCIAL", 1);
    expect_counter(f, "c:units.registered:CT2:all", "*", 3);
    expect_counter(f, "c:units.registered:13001:all", "*", 3);
    expect_counter(f, "c:units.registered:CT1:all", "*", 1);
    /* And in this month (Europe/Paris), unless the month turned meanwhile. */
    char month_after[PERIOD_KEY_LEN];
    period_key(PERIOD_MONTH, time_now_ms(), month_after);
    if (strcmp(month, month_after) == 0) {
        char key[64];
        snprintf(key, sizeof key, "c:units.registered:CT2:%s", month);
        expect_counter(f, key, "*", 3);
        snprintf(key, sizeof key, "c:units.registered:13001:%s", month);
        expect_counter(f, key, "stock=PRIVATE", 3);
    }
    expect_counter(f, "c:conventions.envisaged:all:all", "*", 2);
    expect_counter(f, "c:conventions.envisaged:CT2:all", "level=LOC2", 2);
    expect_counter(f, "c:conventions.signed:all:all", "*", 1);
    expect_counter(f, "c:conventions.active:13001:all", "level=LOC2", 1);
    expect_counter(f, "c:reservations.created:all:all", "*", 1);
    expect_counter(f, "c:reservations.created:CT1:all", "mode=STOCK", 1);
    expect_counter(f, "c:reservations.created:all:all", "reservataire=ACTION_LOGEMENT", 1);
    expect_counter(f, "c:reservations.active:all:all", "*", 1);
    char suffix[128], field[64];
    snprintf(suffix, sizeof suffix, "c:objectives.units:all:%s", y);
    expect_counter(f, suffix, "*", 12);
    snprintf(field, sizeof field, "programme=%s", f->programme);
    expect_counter(f, suffix, field, 12);
    expect_counter(f, "c:objectives.units:CT2:all", "*", 12);
    snprintf(suffix, sizeof suffix, "c:projects.expected_jobs:CT2:%s", y);
    expect_counter(f, suffix, "*", 55);
    expect_counter(f, "c:projects.count:13001:all", "status=PROSPECT", 1);

    /* Released: no longer active, and a field back to zero is removed. */
    Passerelle__ReservationStepRequest rel = PASSERELLE__RESERVATION_STEP_REQUEST__INIT;
    rel.id = f->reservation;
    harness_call_ok(f->ind.stack.client, "reservation.release", &rel.base, NULL);
    expect_counter(f, "c:reservations.released:all:all", "*", 1);
    expect_counter(f, "c:reservations.active:all:all", "*", 0);
    redisReply *exists = NULL;
    assert_int_equal(store_command(f->ind.store, &exists,
                                   "HEXISTS indicators:g0:c:reservations.active:all:all *"),
                     STORE_OK);
    assert_int_equal(exists->integer, 0);
    freeReplyObject(exists);
}

/* Appends a stream entry with these fields (the reply's field list). */
static void append_entry(fixture_t *f, const redisReply *fields, const char *event,
                         size_t event_len)
{
    const char *argv[16] = {"XADD", STREAM, "*"};
    size_t lens[16] = {4, strlen(STREAM), 1};
    size_t argc = 3;
    for (size_t i = 0; i + 1 < fields->elements && argc + 2 <= 16; i += 2) {
        bool is_event = strcmp(fields->element[i]->str, "event") == 0;
        argv[argc] = fields->element[i]->str;
        lens[argc++] = fields->element[i]->len;
        argv[argc] = is_event && event ? event : fields->element[i + 1]->str;
        lens[argc++] = is_event && event ? event_len : fields->element[i + 1]->len;
    }
    assert_int_equal(store_command_argv(f->ind.store, NULL, (int)argc, argv, lens), STORE_OK);
}

/* An event in the stream twice counts once: appended again after it was
 * counted (its done marker is set: only acknowledged), and appended twice
 * before either copy was read (the two may come in one batch). */
static void test_event_twice(void **state)
{
    fixture_t *f = *state;
    long long units = harness_indicators_counter(f->ind.store, "c:units.registered:all:all", "*");
    assert_true(units > 0);
    /* The first entry (IE-1 registered, in Aix), appended a second time. */
    redisReply *first = NULL;
    assert_int_equal(store_command(f->ind.store, &first, "XRANGE %s - + COUNT 1", STREAM),
                     STORE_OK);
    assert_int_equal(first->elements, 1);
    const redisReply *fields = first->element[0]->element[1];
    append_entry(f, fields, NULL, 0);
    /* The same unit.registered as a new event (a new id), appended twice in
     * a row. */
    Passerelle__Event *event = NULL;
    for (size_t i = 0; i + 1 < fields->elements; i += 2)
        if (strcmp(fields->element[i]->str, "event") == 0)
            event = passerelle__event__unpack(NULL, fields->element[i + 1]->len,
                                              (const uint8_t *)fields->element[i + 1]->str);
    assert_non_null(event);
    char id[ID_LEN];
    id_new('E', id);
    char *old_id = event->id;
    event->id = id;
    size_t len = passerelle__event__get_packed_size(event);
    uint8_t *packed = malloc(len);
    passerelle__event__pack(event, packed);
    event->id = old_id;
    passerelle__event__free_unpacked(event, NULL);
    assert_int_equal(store_command(f->ind.store, NULL, "MULTI"), STORE_OK);
    append_entry(f, fields, (const char *)packed, len);
    append_entry(f, fields, (const char *)packed, len);
    assert_int_equal(store_command(f->ind.store, NULL, "EXEC"), STORE_OK);
    free(packed);
    freeReplyObject(first);
    /* A unit registered after them: once it is counted, they were seen. */
    register_unit(f, "IE-5", "Allauch", true, NULL);
    harness_indicators_wait_caught_up(f->ind.store, STREAM, CATCH_UP_MS);
    expect_counter(f, "c:units.registered:all:all", "*", units + 2);
    expect_counter(f, "c:units.registered:13001:all", "*", 4);
    expect_counter(f, "c:units.registered:CT1:all", "*", 2);
}

/* apply.lua itself: all or nothing, once per done marker, in the current
 * generation only; replacements keep the newest version. */
static void test_apply_script(void **state)
{
    fixture_t *f = *state;
    int script = store_script_add(f->ind.store, indicators_apply_lua);
    assert_true(script >= 0);
    char gen[24];
    snprintf(gen, sizeof gen, "%" PRIu64, harness_indicators_generation(f->ind.store));
    char done[128], fresh[128];
    /* A done marker the projector set: the first event's. */
    redisReply *first = NULL;
    assert_int_equal(store_command(f->ind.store, &first, "XRANGE %s - + COUNT 1", STREAM),
                     STORE_OK);
    const redisReply *fields = first->element[0]->element[1];
    Passerelle__Event *event = NULL;
    for (size_t i = 0; i + 1 < fields->elements; i += 2)
        if (strcmp(fields->element[i]->str, "event") == 0)
            event = passerelle__event__unpack(NULL, fields->element[i + 1]->len,
                                              (const uint8_t *)fields->element[i + 1]->str);
    assert_non_null(event);
    snprintf(done, sizeof done, "%s:done:indicators:%s", STREAM, event->id);
    passerelle__event__free_unpacked(event, NULL);
    freeReplyObject(first);
    char id[ID_LEN];
    id_new('E', id);
    snprintf(fresh, sizeof fresh, "%s:done:indicators:%s", STREAM, id);

    /* One add of a test counter with a done marker. */
#define APPLY(generation, marker, expect_code)                                                     \
    do {                                                                                           \
        const char *a[] = {"indicators:current",   generation, "1", "60", "1", marker, "1",        \
                           "c:test.apply:all:all", "*",        "1", "0"};                          \
        redisReply *r = NULL;                                                                      \
        assert_int_equal(store_script_run(f->ind.store, script, &r, 1, 11, a, NULL), STORE_OK);    \
        assert_int_equal(r->type, REDIS_REPLY_ARRAY);                                              \
        assert_int_equal(r->element[0]->integer, expect_code);                                     \
        freeReplyObject(r);                                                                        \
    } while (0)
    APPLY(gen, done, -2); /* counted before: nothing written */
    assert_int_equal(harness_indicators_counter(f->ind.store, "c:test.apply:all:all", "*"), 0);
    APPLY("999", fresh, -1); /* not the current generation: nothing */
    assert_int_equal(harness_indicators_counter(f->ind.store, "c:test.apply:all:all", "*"), 0);
    APPLY(gen, fresh, 1);
    assert_int_equal(harness_indicators_counter(f->ind.store, "c:test.apply:all:all", "*"), 1);
    APPLY(gen, fresh, -2); /* the same event again: once */
    assert_int_equal(harness_indicators_counter(f->ind.store, "c:test.apply:all:all", "*"), 1);
    redisReply *ttl = NULL;
    assert_int_equal(store_command(f->ind.store, &ttl, "TTL %s", fresh), STORE_OK);
    assert_true(ttl->integer > 0 && ttl->integer <= 60);
    freeReplyObject(ttl);
#undef APPLY

    /* Replacements of one record in any order: version 2, then 1 (older:
     * ignored), then 3 (moves the count to another field), then 3 again. */
    struct {
        const char *version, *field, *delta;
        long long star, other;
    } steps[] = {
        {"2", "*", "5", 5, 0},
        {"1", "*", "7", 5, 0},
        {"3", "x=Y", "2", 0, 2},
        {"3", "*", "9", 0, 2},
    };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        const char *a[] = {"indicators:current",
                           gen,
                           "1",
                           "60",
                           "0",
                           "0",
                           "1",
                           "test:record",
                           steps[i].version,
                           "1",
                           "c:test.repl:all:all",
                           steps[i].field,
                           steps[i].delta};
        redisReply *r = NULL;
        assert_int_equal(store_script_run(f->ind.store, script, &r, 1, 13, a, NULL), STORE_OK);
        assert_int_equal(r->element[0]->integer, 1);
        freeReplyObject(r);
        assert_int_equal(harness_indicators_counter(f->ind.store, "c:test.repl:all:all", "*"),
                         steps[i].star);
        assert_int_equal(harness_indicators_counter(f->ind.store, "c:test.repl:all:all", "x=Y"),
                         steps[i].other);
    }
    redisReply *exists = NULL;
    assert_int_equal(
        store_command(f->ind.store, &exists, "HEXISTS indicators:g%s:c:test.repl:all:all *", gen),
        STORE_OK);
    assert_int_equal(exists->integer, 0);
    freeReplyObject(exists);

    /* A record whose stored counts do not read refuses the whole batch
     * before anything is written: the add beside it is not counted, its
     * done marker not set. */
    assert_int_equal(store_command(f->ind.store, NULL, "HSET indicators:g%s:r:test:record t %s",
                                   gen, "not json"),
                     STORE_OK);
    char other[128];
    id_new('E', id);
    snprintf(other, sizeof other, "%s:done:indicators:%s", STREAM, id);
    const char *bad[] = {"indicators:current",   gen, "1", "60", "1",           other, "1",
                         "c:test.apply:all:all", "*", "1", "1",  "test:record", "4",   "1",
                         "c:test.repl:all:all",  "*", "1"};
    redisReply *refused = NULL;
    assert_int_equal(store_script_run(f->ind.store, script, &refused, 1, 17, bad, NULL), STORE_OK);
    assert_int_equal(refused->element[0]->integer, -3);
    freeReplyObject(refused);
    assert_int_equal(harness_indicators_counter(f->ind.store, "c:test.apply:all:all", "*"), 1);
    assert_int_equal(harness_indicators_counter(f->ind.store, "c:test.repl:all:all", "*"), 0);
    assert_int_equal(harness_indicators_counter(f->ind.store, "c:test.repl:all:all", "x=Y"), 2);
    redisReply *marker = NULL;
    assert_int_equal(store_command(f->ind.store, &marker, "EXISTS %s", other), STORE_OK);
    assert_int_equal(marker->integer, 0);
    freeReplyObject(marker);
    /* The test's keys go: the rebuild below compares every counter. */
    assert_int_equal(
        store_command(f->ind.store, NULL,
                      "DEL indicators:g%s:c:test.apply:all:all "
                      "indicators:g%s:c:test.repl:all:all indicators:g%s:r:test:record",
                      gen, gen, gen),
        STORE_OK);
}

/* Who may rebuild, and one at a time across processes. */
static void test_rebuild_refusals(void **state)
{
    fixture_t *f = *state;
    harness_indicators_rebuild_call(f->ind.partner, "indicator.rebuild", PERMISSION_DENIED, NULL,
                                    0);
    /* Anyone may read the status. */
    Passerelle__RebuildStatus *s =
        harness_indicators_rebuild_call(f->ind.partner, "indicator.rebuild_status", OK, NULL, 0);
    assert_string_equal(s->state, "idle");
    assert_int_equal(s->current_generation, 0);
    passerelle__rebuild_status__free_unpacked(s, NULL);

    /* Another process holds the lease: refused, naming it. */
    assert_int_equal(
        store_command(f->ind.store, NULL, "SET indicators:rebuild:lease elsewhere:42 PX 60000"),
        STORE_OK);
    Passerelle__RebuildRequest req = PASSERELLE__REBUILD_REQUEST__INIT;
    Passerelle__Reply *reply =
        harness_call(f->ind.admin, "indicator.rebuild", &req.base, FAILED_PRECONDITION, NULL);
    assert_non_null(strstr(reply->message, "elsewhere:42"));
    passerelle__reply__free_unpacked(reply, NULL);
    assert_int_equal(store_command(f->ind.store, NULL, "DEL indicators:rebuild:lease"), STORE_OK);
    assert_int_equal(harness_indicators_generation(f->ind.store), 0);
}

/* The rebuild makes the same counters in a new generation and switches;
 * the projectors then count there. */
static void test_rebuild(void **state)
{
    fixture_t *f = *state;
    harness_indicators_wait_caught_up(f->ind.store, STREAM, CATCH_UP_MS);
    harness_indicators_wait_caught_up(f->ind.store, "indicators:events", CATCH_UP_MS);
    json_t *before = harness_indicators_counters(f->ind.store, 0);
    assert_true(json_object_size(before) > 50);

    Passerelle__RebuildStatus *s =
        harness_indicators_rebuild_call(f->ind.admin, "indicator.rebuild", OK, NULL, 0);
    assert_string_equal(s->state, "running");
    assert_int_equal(s->generation, 1);
    assert_int_equal(s->current_generation, 0);
    assert_non_null(s->holder);
    assert_true(strlen(s->holder) > 0);
    redisReply *len = NULL;
    long long total = 0;
    const char *streams[] = {STREAM, "docstore:events", "indicators:events"};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(store_command(f->ind.store, &len, "XLEN %s", streams[i]), STORE_OK);
        total += len->integer;
        freeReplyObject(len);
    }
    assert_int_equal(s->events_total, total);
    passerelle__rebuild_status__free_unpacked(s, NULL);

    s = harness_indicators_rebuild_wait(f->ind.admin, CATCH_UP_MS);
    assert_string_equal(s->state, "done");
    assert_int_equal(s->generation, 1);
    assert_int_equal(s->current_generation, 1);
    assert_int_equal(s->events_read, total);
    assert_true(strlen(s->finished_at) > 0);
    passerelle__rebuild_status__free_unpacked(s, NULL);
    assert_int_equal(harness_indicators_generation(f->ind.store), 1);

    json_t *after = harness_indicators_counters(f->ind.store, 1);
    harness_indicators_expect_same_counters(before, after, "incremental vs rebuilt");
    json_decref(before);
    json_decref(after);

    /* The cursor says how far the rebuild counted each stream. */
    redisReply *cursor = NULL, *last = NULL;
    assert_int_equal(store_command(f->ind.store, &cursor, "HGET indicators:g1:cursor %s", STREAM),
                     STORE_OK);
    assert_int_equal(store_command(f->ind.store, &last, "XREVRANGE %s + - COUNT 1", STREAM),
                     STORE_OK);
    assert_string_equal(cursor->str, last->element[0]->element[0]->str);
    freeReplyObject(cursor);
    freeReplyObject(last);

    /* The old generation goes. */
    harness_store_expect_no_keys(f->ind.store, "indicators:g0:*", CATCH_UP_MS);

    /* New events count in the new generation, once. */
    long long units = harness_indicators_counter(f->ind.store, "c:units.registered:all:all", "*");
    register_unit(f, "IE-6", "Aix-en-Provence", false, NULL);
    harness_indicators_wait_caught_up(f->ind.store, STREAM, CATCH_UP_MS);
    expect_counter(f, "c:units.registered:all:all", "*", units + 1);
    expect_counter(f, "c:units.registered:13001:all", "*", 5);

    /* A rebuild after that one: the next generation, equal again. */
    before = harness_indicators_counters(f->ind.store, 1);
    s = harness_indicators_rebuild_call(f->ind.admin, "indicator.rebuild", OK, NULL, 0);
    assert_int_equal(s->generation, 2);
    passerelle__rebuild_status__free_unpacked(s, NULL);
    s = harness_indicators_rebuild_wait(f->ind.admin, CATCH_UP_MS);
    assert_string_equal(s->state, "done");
    passerelle__rebuild_status__free_unpacked(s, NULL);
    after = harness_indicators_counters(f->ind.store, 2);
    harness_indicators_expect_same_counters(before, after, "generation 1 vs 2");
    json_decref(before);
    json_decref(after);
}

/* A rebuild whose process died says so, once its lease has run out. */
static void test_status_of_a_dead_rebuild(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(store_command(f->ind.store, NULL,
                                   "HSET indicators:rebuild state running generation 9 "
                                   "holder gone:1"),
                     STORE_OK);
    Passerelle__RebuildStatus *s =
        harness_indicators_rebuild_call(f->ind.partner, "indicator.rebuild_status", OK, NULL, 0);
    assert_string_equal(s->state, "failed");
    assert_string_equal(s->holder, "gone:1");
    assert_int_equal(s->current_generation, 2);
    passerelle__rebuild_status__free_unpacked(s, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counts),       cmocka_unit_test(test_event_twice),
        cmocka_unit_test(test_apply_script), cmocka_unit_test(test_rebuild_refusals),
        cmocka_unit_test(test_rebuild),      cmocka_unit_test(test_status_of_a_dead_rebuild),
    };
    return cmocka_run_group_tests(tests, setup, harness_indicators_teardown);
}
