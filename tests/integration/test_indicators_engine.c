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
    harness_stack_t stack; /* Redis, reservations, its client (operations') */
    harness_service_t indicators;
    bool indicators_up;
    client_t *admin;   /* of the indicators service */
    client_t *partner; /* of the indicators service */
    store_t *store;    /* the test's own connection */
    int year;
    char programme[ID_LEN];
    char social_unit[ID_LEN];
    char reservation[ID_LEN];
} fixture_t;

/* ======================== Redis ======================================== */

static uint64_t current_generation(fixture_t *f)
{
    redisReply *r = NULL;
    assert_int_equal(store_command(f->store, &r, "GET indicators:current"), STORE_OK);
    uint64_t gen = r->type == REDIS_REPLY_STRING ? strtoull(r->str, NULL, 10) : 0;
    freeReplyObject(r);
    return gen;
}

/* A counter field of the current generation (0 when absent). */
static long long counter(fixture_t *f, const char *suffix, const char *field)
{
    redisReply *r = NULL;
    assert_int_equal(store_command(f->store, &r, "HGET indicators:g%" PRIu64 ":%s %s",
                                   current_generation(f), suffix, field),
                     STORE_OK);
    long long v = r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10) : 0;
    freeReplyObject(r);
    return v;
}

/* Polls until the counter field has the value; fails the test otherwise. */
static void expect_counter(fixture_t *f, const char *suffix, const char *field, long long want)
{
    int64_t deadline = time_now_ms() + CATCH_UP_MS;
    long long got;
    while ((got = counter(f, suffix, field)) != want && time_now_ms() < deadline)
        usleep(20000);
    if (got != want)
        fail_msg("%s %s is %lld, expected %lld", suffix, field, got, want);
}

/* Polls until the group has read the stream to its end and holds nothing
 * pending. */
static void wait_caught_up(fixture_t *f, const char *stream)
{
    int64_t deadline = time_now_ms() + CATCH_UP_MS;
    for (;;) {
        redisReply *last = NULL, *groups = NULL;
        assert_int_equal(store_command(f->store, &last, "XREVRANGE %s + - COUNT 1", stream),
                         STORE_OK);
        const char *end = last->elements ? last->element[0]->element[0]->str : "0-0";
        bool caught_up = last->elements == 0;
        if (store_command(f->store, &groups, "XINFO GROUPS %s", stream) == STORE_OK &&
            groups->type == REDIS_REPLY_ARRAY) {
            for (size_t g = 0; g < groups->elements; g++) {
                const redisReply *info = groups->element[g];
                const char *name = NULL, *delivered = NULL;
                long long pending = -1;
                for (size_t i = 0; i + 1 < info->elements; i += 2) {
                    const char *k = info->element[i]->str;
                    const redisReply *v = info->element[i + 1];
                    if (strcmp(k, "name") == 0)
                        name = v->str;
                    else if (strcmp(k, "last-delivered-id") == 0)
                        delivered = v->str;
                    else if (strcmp(k, "pending") == 0)
                        pending = v->integer;
                }
                if (name && strcmp(name, "indicators") == 0)
                    caught_up = delivered && strcmp(delivered, end) == 0 && pending == 0;
            }
        }
        freeReplyObject(last);
        if (groups)
            freeReplyObject(groups);
        if (caught_up)
            return;
        if (time_now_ms() > deadline)
            fail_msg("the indicators group did not catch up with %s", stream);
        usleep(20000);
    }
}

/* Every counter field of generation gen, zeros left out, as
 * {suffix: {field: value}} (caller decrefs). */
static json_t *counters_of(fixture_t *f, uint64_t gen)
{
    json_t *all = json_object();
    char pattern[64], cursor[32] = "0";
    snprintf(pattern, sizeof pattern, "indicators:g%" PRIu64 ":c:*", gen);
    size_t prefix_len = strlen(pattern) - 3; /* up to "c:" */
    do {
        redisReply *scan = NULL;
        assert_int_equal(
            store_command(f->store, &scan, "SCAN %s MATCH %s COUNT 1000", cursor, pattern),
            STORE_OK);
        snprintf(cursor, sizeof cursor, "%s", scan->element[0]->str);
        const redisReply *keys = scan->element[1];
        for (size_t i = 0; i < keys->elements; i++) {
            redisReply *hash = NULL;
            assert_int_equal(store_command(f->store, &hash, "HGETALL %s", keys->element[i]->str),
                             STORE_OK);
            json_t *fields = json_object();
            for (size_t k = 0; k + 1 < hash->elements; k += 2) {
                long long v = strtoll(hash->element[k + 1]->str, NULL, 10);
                if (v != 0)
                    json_object_set_new(fields, hash->element[k]->str, json_integer(v));
            }
            if (json_object_size(fields) > 0)
                json_object_set_new(all, keys->element[i]->str + prefix_len, fields);
            else
                json_decref(fields);
            freeReplyObject(hash);
        }
        freeReplyObject(scan);
    } while (strcmp(cursor, "0") != 0);
    return all;
}

static size_t keys_matching(fixture_t *f, const char *pattern)
{
    size_t n = 0;
    char cursor[32] = "0";
    do {
        redisReply *scan = NULL;
        assert_int_equal(
            store_command(f->store, &scan, "SCAN %s MATCH %s COUNT 1000", cursor, pattern),
            STORE_OK);
        snprintf(cursor, sizeof cursor, "%s", scan->element[0]->str);
        n += scan->element[1]->elements;
        freeReplyObject(scan);
    } while (strcmp(cursor, "0") != 0);
    return n;
}

/* Fails, naming the first differences, unless the two are equal. */
static void expect_same_counters(json_t *a, json_t *b, const char *what)
{
    if (json_equal(a, b))
        return;
    int shown = 0;
    const char *key;
    json_t *fields;
    json_object_foreach(a, key, fields)
    {
        json_t *other = json_object_get(b, key);
        if (!json_equal(fields, other) && shown++ < 10) {
            char *x = json_dumps(fields, JSON_COMPACT | JSON_SORT_KEYS);
            char *y = other ? json_dumps(other, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
            fprintf(stderr, "%s: %s: %s vs %s\n", what, key, x, y ? y : "(absent)");
            free(x);
            free(y);
        }
    }
    json_object_foreach(b, key, fields)
    {
        if (!json_object_get(a, key) && shown++ < 10)
            fprintf(stderr, "%s: %s only in the second\n", what, key);
    }
    fail_msg("%s: the counters differ (%zu keys vs %zu)", what, json_object_size(a),
             json_object_size(b));
}

/* ======================== the services ================================= */

static ProtobufCMessage *call_ok(client_t *client, const char *type, const ProtobufCMessage *body,
                                 const ProtobufCMessageDescriptor *reply_desc)
{
    Passerelle__Reply *reply = harness_call(client, type, body, OK, NULL);
    ProtobufCMessage *msg = NULL;
    if (reply_desc) {
        msg = protobuf_c_message_unpack(reply_desc, NULL, reply->body.len, reply->body.data);
        assert_non_null(msg);
    }
    passerelle__reply__free_unpacked(reply, NULL);
    return msg;
}

static void register_unit(fixture_t *f, const char *ref, const char *commune, bool social,
                          char id[ID_LEN])
{
    Passerelle__UnitRegisterRequest req;
    harness_unit_request(&req, ref);
    req.commune = (char *)commune;
    if (social) {
        req.stock = PASSERELLE__STOCK__STOCK_SOCIAL;
        req.landlord = "Logirem";
        req.has_financing = true;
        req.financing = PASSERELLE__FINANCING__FINANCING_PLUS;
    }
    Passerelle__Unit *unit = (Passerelle__Unit *)call_ok(f->stack.client, "unit.register",
                                                         &req.base, &passerelle__unit__descriptor);
    if (id)
        snprintf(id, ID_LEN, "%s", unit->id);
    passerelle__unit__free_unpacked(unit, NULL);
}

static void convention_step(fixture_t *f, const char *type, const char *unit)
{
    if (strcmp(type, "convention.envisage") == 0) {
        Passerelle__ConventionEnvisageRequest req = PASSERELLE__CONVENTION_ENVISAGE_REQUEST__INIT;
        req.unit = (char *)unit;
        req.has_level = true;
        req.level = PASSERELLE__CONVENTION_LEVEL__LEVEL_LOC2;
        call_ok(f->stack.client, type, &req.base, NULL);
    } else {
        Passerelle__ConventionStepRequest req = PASSERELLE__CONVENTION_STEP_REQUEST__INIT;
        req.unit = (char *)unit;
        call_ok(f->stack.client, type, &req.base, NULL);
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
    call_ok(f->stack.client, "objective.set", &obj.base, NULL);
}

static Passerelle__RebuildStatus *rebuild_call(client_t *client, const char *type, int status)
{
    Passerelle__RebuildRequest req = PASSERELLE__REBUILD_REQUEST__INIT;
    Passerelle__Reply *reply = harness_call(client, type, &req.base, status, NULL);
    Passerelle__RebuildStatus *s = NULL;
    if (status == OK) {
        s = passerelle__rebuild_status__unpack(NULL, reply->body.len, reply->body.data);
        assert_non_null(s);
    }
    passerelle__reply__free_unpacked(reply, NULL);
    return s;
}

/* Polls the rebuild's status until it is no longer running. */
static Passerelle__RebuildStatus *rebuild_wait(fixture_t *f)
{
    int64_t deadline = time_now_ms() + CATCH_UP_MS;
    for (;;) {
        Passerelle__RebuildStatus *s = rebuild_call(f->admin, "indicator.rebuild_status", OK);
        if (strcmp(s->state, "running") != 0)
            return s;
        passerelle__rebuild_status__free_unpacked(s, NULL);
        if (time_now_ms() > deadline)
            fail_msg("the rebuild did not end");
        usleep(20000);
    }
}

/* ======================== fixture ====================================== */

static int setup(void **state)
{
    if (harness_fixture_setup(state, sizeof(fixture_t), "ind-engine", "admin") != 0)
        return -1;
    fixture_t *f = *state;
    if (harness_service_start(&f->indicators, "indicators", f->stack.dir, NULL) != 0)
        return -1;
    f->indicators_up = true;
    f->admin = harness_notify_client(&f->stack, &f->indicators, "admin");
    f->partner = harness_notify_client(&f->stack, &f->indicators, "partner");
    store_config_t cfg;
    harness_redis_config(&f->stack.redis, &cfg);
    f->store = store_new(&cfg);
    f->year = date_today_paris().year;
    return f->admin && f->partner && f->store ? 0 : -1;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    bool clean = true;
    if (f) {
        client_destroy(&f->admin);
        client_destroy(&f->partner);
        store_destroy(&f->store);
        if (f->indicators_up) {
            clean = harness_service_stop_clean(&f->indicators);
            if (harness_log_has_sanitizer_report(f->indicators.log_path))
                clean = false;
        }
    }
    int rc = harness_fixture_teardown(state);
    return clean ? rc : -1;
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
    Passerelle__Reservation *r = (Passerelle__Reservation *)call_ok(
        f->stack.client, "reservation.create", &res.base, &passerelle__reservation__descriptor);
    snprintf(f->reservation, ID_LEN, "%s", r->id);
    passerelle__reservation__free_unpacked(r, NULL);
    /* A programme in Aix and its objective for this year, set twice: the
     * second replaces the first. */
    static char *aix[] = {"Aix-en-Provence"};
    Passerelle__ProgrammeCreateRequest prog = PASSERELLE__PROGRAMME_CREATE_REQUEST__INIT;
    char start[DATE_LEN], until[DATE_LEN];
    snprintf(start, sizeof start, "%04u-01-01", (unsigned)f->year % 10000u);
    snprintf(until, sizeof until, "%04u-12-31", (unsigned)(f->year + 1) % 10000u);
    prog.name = "PIG Pays d'Aix";
    prog.has_kind = true;
    prog.kind = PASSERELLE__PROGRAMME_KIND__PROGRAMME_PIG;
    prog.communes = aix;
    prog.n_communes = 1;
    prog.start_date = start;
    prog.end_date = until;
    prog.operator_ = "Soliha";
    Passerelle__Programme *p = (Passerelle__Programme *)call_ok(
        f->stack.client, "programme.create", &prog.base, &passerelle__programme__descriptor);
    snprintf(f->programme, ID_LEN, "%s", p->id);
    passerelle__programme__free_unpacked(p, NULL);
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
    Passerelle__EconomicProject *j = (Passerelle__EconomicProject *)call_ok(
        f->admin, "project.create", &proj.base, &passerelle__economic_project__descriptor);
    Passerelle__ProjectUpdateRequest upd = PASSERELLE__PROJECT_UPDATE_REQUEST__INIT;
    upd.id = j->id;
    upd.has_expected_jobs = true;
    upd.expected_jobs = 55;
    call_ok(f->admin, "project.update", &upd.base, NULL);
    passerelle__economic_project__free_unpacked(j, NULL);

    wait_caught_up(f, STREAM);
    wait_caught_up(f, "indicators:events");
    assert_int_equal(current_generation(f), 0);
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
    call_ok(f->stack.client, "reservation.release", &rel.base, NULL);
    expect_counter(f, "c:reservations.released:all:all", "*", 1);
    expect_counter(f, "c:reservations.active:all:all", "*", 0);
    redisReply *exists = NULL;
    assert_int_equal(
        store_command(f->store, &exists, "HEXISTS indicators:g0:c:reservations.active:all:all *"),
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
    assert_int_equal(store_command_argv(f->store, NULL, (int)argc, argv, lens), STORE_OK);
}

/* An event in the stream twice counts once: appended again after it was
 * counted (its done marker is set: only acknowledged), and appended twice
 * before either copy was read (the two may come in one batch). */
static void test_event_twice(void **state)
{
    fixture_t *f = *state;
    long long units = counter(f, "c:units.registered:all:all", "*");
    assert_true(units > 0);
    /* The first entry (IE-1 registered, in Aix), appended a second time. */
    redisReply *first = NULL;
    assert_int_equal(store_command(f->store, &first, "XRANGE %s - + COUNT 1", STREAM), STORE_OK);
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
    assert_int_equal(store_command(f->store, NULL, "MULTI"), STORE_OK);
    append_entry(f, fields, (const char *)packed, len);
    append_entry(f, fields, (const char *)packed, len);
    assert_int_equal(store_command(f->store, NULL, "EXEC"), STORE_OK);
    free(packed);
    freeReplyObject(first);
    /* A unit registered after them: once it is counted, they were seen. */
    register_unit(f, "IE-5", "Allauch", true, NULL);
    wait_caught_up(f, STREAM);
    expect_counter(f, "c:units.registered:all:all", "*", units + 2);
    expect_counter(f, "c:units.registered:13001:all", "*", 4);
    expect_counter(f, "c:units.registered:CT1:all", "*", 2);
}

/* apply.lua itself: all or nothing, once per done marker, in the current
 * generation only; replacements keep the newest version. */
static void test_apply_script(void **state)
{
    fixture_t *f = *state;
    int script = store_script_add(f->store, indicators_apply_lua);
    assert_true(script >= 0);
    char gen[24];
    snprintf(gen, sizeof gen, "%" PRIu64, current_generation(f));
    char done[128], fresh[128];
    /* A done marker the projector set: the first event's. */
    redisReply *first = NULL;
    assert_int_equal(store_command(f->store, &first, "XRANGE %s - + COUNT 1", STREAM), STORE_OK);
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
        assert_int_equal(store_script_run(f->store, script, &r, 1, 11, a, NULL), STORE_OK);        \
        assert_int_equal(r->type, REDIS_REPLY_ARRAY);                                              \
        assert_int_equal(r->element[0]->integer, expect_code);                                     \
        freeReplyObject(r);                                                                        \
    } while (0)
    APPLY(gen, done, -2); /* counted before: nothing written */
    assert_int_equal(counter(f, "c:test.apply:all:all", "*"), 0);
    APPLY("999", fresh, -1); /* not the current generation: nothing */
    assert_int_equal(counter(f, "c:test.apply:all:all", "*"), 0);
    APPLY(gen, fresh, 1);
    assert_int_equal(counter(f, "c:test.apply:all:all", "*"), 1);
    APPLY(gen, fresh, -2); /* the same event again: once */
    assert_int_equal(counter(f, "c:test.apply:all:all", "*"), 1);
    redisReply *ttl = NULL;
    assert_int_equal(store_command(f->store, &ttl, "TTL %s", fresh), STORE_OK);
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
        assert_int_equal(store_script_run(f->store, script, &r, 1, 13, a, NULL), STORE_OK);
        assert_int_equal(r->element[0]->integer, 1);
        freeReplyObject(r);
        assert_int_equal(counter(f, "c:test.repl:all:all", "*"), steps[i].star);
        assert_int_equal(counter(f, "c:test.repl:all:all", "x=Y"), steps[i].other);
    }
    redisReply *exists = NULL;
    assert_int_equal(
        store_command(f->store, &exists, "HEXISTS indicators:g%s:c:test.repl:all:all *", gen),
        STORE_OK);
    assert_int_equal(exists->integer, 0);
    freeReplyObject(exists);
    /* The test's keys go: the rebuild below compares every counter. */
    assert_int_equal(
        store_command(f->store, NULL,
                      "DEL indicators:g%s:c:test.apply:all:all "
                      "indicators:g%s:c:test.repl:all:all indicators:g%s:r:test:record",
                      gen, gen, gen),
        STORE_OK);
}

/* Who may rebuild, and one at a time across processes. */
static void test_rebuild_refusals(void **state)
{
    fixture_t *f = *state;
    rebuild_call(f->partner, "indicator.rebuild", PERMISSION_DENIED);
    /* Anyone may read the status. */
    Passerelle__RebuildStatus *s = rebuild_call(f->partner, "indicator.rebuild_status", OK);
    assert_string_equal(s->state, "idle");
    assert_int_equal(s->current_generation, 0);
    passerelle__rebuild_status__free_unpacked(s, NULL);

    /* Another process holds the lease: refused, naming it. */
    assert_int_equal(
        store_command(f->store, NULL, "SET indicators:rebuild:lease elsewhere:42 PX 60000"),
        STORE_OK);
    Passerelle__RebuildRequest req = PASSERELLE__REBUILD_REQUEST__INIT;
    Passerelle__Reply *reply =
        harness_call(f->admin, "indicator.rebuild", &req.base, FAILED_PRECONDITION, NULL);
    assert_non_null(strstr(reply->message, "elsewhere:42"));
    passerelle__reply__free_unpacked(reply, NULL);
    assert_int_equal(store_command(f->store, NULL, "DEL indicators:rebuild:lease"), STORE_OK);
    assert_int_equal(current_generation(f), 0);
}

/* The rebuild makes the same counters in a new generation and switches;
 * the projectors then count there. */
static void test_rebuild(void **state)
{
    fixture_t *f = *state;
    wait_caught_up(f, STREAM);
    wait_caught_up(f, "indicators:events");
    json_t *before = counters_of(f, 0);
    assert_true(json_object_size(before) > 50);

    Passerelle__RebuildStatus *s = rebuild_call(f->admin, "indicator.rebuild", OK);
    assert_string_equal(s->state, "running");
    assert_int_equal(s->generation, 1);
    assert_int_equal(s->current_generation, 0);
    assert_non_null(s->holder);
    assert_true(strlen(s->holder) > 0);
    redisReply *len = NULL;
    long long total = 0;
    const char *streams[] = {STREAM, "docstore:events", "indicators:events"};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(store_command(f->store, &len, "XLEN %s", streams[i]), STORE_OK);
        total += len->integer;
        freeReplyObject(len);
    }
    assert_int_equal(s->events_total, total);
    passerelle__rebuild_status__free_unpacked(s, NULL);

    s = rebuild_wait(f);
    assert_string_equal(s->state, "done");
    assert_int_equal(s->generation, 1);
    assert_int_equal(s->current_generation, 1);
    assert_int_equal(s->events_read, total);
    assert_true(strlen(s->finished_at) > 0);
    passerelle__rebuild_status__free_unpacked(s, NULL);
    assert_int_equal(current_generation(f), 1);

    json_t *after = counters_of(f, 1);
    expect_same_counters(before, after, "incremental vs rebuilt");
    json_decref(before);
    json_decref(after);

    /* The cursor says how far the rebuild counted each stream. */
    redisReply *cursor = NULL, *last = NULL;
    assert_int_equal(store_command(f->store, &cursor, "HGET indicators:g1:cursor %s", STREAM),
                     STORE_OK);
    assert_int_equal(store_command(f->store, &last, "XREVRANGE %s + - COUNT 1", STREAM), STORE_OK);
    assert_string_equal(cursor->str, last->element[0]->element[0]->str);
    freeReplyObject(cursor);
    freeReplyObject(last);

    /* The old generation goes. */
    int64_t deadline = time_now_ms() + CATCH_UP_MS;
    while (keys_matching(f, "indicators:g0:*") > 0 && time_now_ms() < deadline)
        usleep(20000);
    assert_int_equal(keys_matching(f, "indicators:g0:*"), 0);

    /* New events count in the new generation, once. */
    long long units = counter(f, "c:units.registered:all:all", "*");
    register_unit(f, "IE-6", "Aix-en-Provence", false, NULL);
    wait_caught_up(f, STREAM);
    expect_counter(f, "c:units.registered:all:all", "*", units + 1);
    expect_counter(f, "c:units.registered:13001:all", "*", 5);

    /* A rebuild after that one: the next generation, equal again. */
    before = counters_of(f, 1);
    s = rebuild_call(f->admin, "indicator.rebuild", OK);
    assert_int_equal(s->generation, 2);
    passerelle__rebuild_status__free_unpacked(s, NULL);
    s = rebuild_wait(f);
    assert_string_equal(s->state, "done");
    passerelle__rebuild_status__free_unpacked(s, NULL);
    after = counters_of(f, 2);
    expect_same_counters(before, after, "generation 1 vs 2");
    json_decref(before);
    json_decref(after);
}

/* A rebuild whose process died says so, once its lease has run out. */
static void test_status_of_a_dead_rebuild(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(store_command(f->store, NULL,
                                   "HSET indicators:rebuild state running generation 9 "
                                   "holder gone:1"),
                     STORE_OK);
    Passerelle__RebuildStatus *s = rebuild_call(f->partner, "indicator.rebuild_status", OK);
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
    return cmocka_run_group_tests(tests, setup, teardown);
}
