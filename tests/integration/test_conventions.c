/* ANAH conventions end to end: a real redis-server and the real
 * reservations binary on run-time ports, called over ZeroMQ with CURVE as
 * an operator. Goes through every lifecycle (signed then expired, signed
 * then terminated, abandoned), every forbidden transition with its code and
 * field, the energy rule on the signing date, and checks after every write
 * that exactly one event of the right type was appended, and none after a
 * refusal. */
#include "harness.h"

#include "envelope.pb-c.h"
#include "ids.h"
#include "reservations.pb-c.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* The stack comes first: harness_fixture_setup makes and starts it. */
typedef struct {
    harness_stack_t stack;
    char last_position[64]; /* stream position of the last event seen */
    char pertuis[ID_LEN], marseille[ID_LEN], social[ID_LEN], unknown[ID_LEN];
} fixture_t;

static int setup(void **state)
{
    return harness_fixture_setup(state, sizeof(fixture_t), "conventions", "operator");
}

/* The events appended since the last look: exactly one, of this type, on
 * units/<unit_id>, carrying the convention in `state` with its unit
 * (unit.registered carries the unit); or none when type is NULL. */
static void expect_event(fixture_t *f, const char *type, const char *unit_id, int state)
{
    harness_events_t events;
    harness_events_read(f->stack.client, f->last_position, &events);
    assert_int_equal(events.count, type ? 1 : 0);
    if (type) {
        const Passerelle__Event *event = events.entries[0]->event;
        assert_string_equal(event->type, type);
        assert_string_equal(event->source, "/passerelle/reservations");
        char subject[64];
        snprintf(subject, sizeof subject, "units/%s", unit_id);
        assert_string_equal(event->subject, subject);
        if (strcmp(type, "unit.registered") == 0) {
            assert_string_equal(event->dataschema, "passerelle.Unit");
        } else {
            assert_string_equal(event->dataschema, "passerelle.Convention");
            Passerelle__Convention *conv =
                passerelle__convention__unpack(NULL, event->data.len, event->data.data);
            assert_non_null(conv);
            assert_int_equal(conv->state, state);
            assert_non_null(conv->unit);
            assert_string_equal(conv->unit->id, unit_id);
            assert_int_equal(conv->unit->convention_state, state);
            assert_string_equal(conv->unit->convention_id, conv->id);
            assert_non_null(conv->unit->territory);
            passerelle__convention__free_unpacked(conv, NULL);
        }
    }
    snprintf(f->last_position, sizeof f->last_position, "%s", events.last_position);
    harness_events_free(&events);
}

static void register_unit(fixture_t *f, const char *ref, const char *commune,
                          const char *arrondissement, int stock, int energy_class, char id[ID_LEN])
{
    Passerelle__UnitRegisterRequest req;
    harness_unit_request(&req, ref);
    req.commune = (char *)commune;
    req.arrondissement = (char *)arrondissement;
    req.stock = stock;
    req.landlord = stock == PASSERELLE__STOCK__STOCK_SOCIAL ? "13 Habitat" : "OWNER-REF-9";
    req.has_energy_class = energy_class != 0;
    req.energy_class = energy_class;
    Passerelle__Reply *reply = harness_call(f->stack.client, "unit.register", &req.base,
                                            PASSERELLE__STATUS__STATUS_OK, NULL);
    Passerelle__Unit *unit = passerelle__unit__unpack(NULL, reply->body.len, reply->body.data);
    passerelle__reply__free_unpacked(reply, NULL);
    assert_non_null(unit);
    snprintf(id, ID_LEN, "%s", unit->id);
    passerelle__unit__free_unpacked(unit, NULL);
    expect_event(f, "unit.registered", id, 0);
}

static Passerelle__Convention *reply_convention(Passerelle__Reply *reply)
{
    assert_true(reply->has_body);
    Passerelle__Convention *conv =
        passerelle__convention__unpack(NULL, reply->body.len, reply->body.data);
    passerelle__reply__free_unpacked(reply, NULL);
    assert_non_null(conv);
    assert_non_null(conv->unit); /* replies carry the unit */
    return conv;
}

static Passerelle__Convention *envisage(fixture_t *f, const char *unit, bool with_works,
                                        const char *date)
{
    Passerelle__ConventionEnvisageRequest req = PASSERELLE__CONVENTION_ENVISAGE_REQUEST__INIT;
    req.unit = (char *)unit;
    req.has_level = true;
    req.level = PASSERELLE__CONVENTION_LEVEL__LEVEL_LOC2;
    req.has_with_works = true;
    req.with_works = with_works;
    req.has_intermediation = true;
    req.intermediation = PASSERELLE__INTERMEDIATION__INTERMEDIATION_MANAGEMENT_MANDATE;
    req.has_rent_ceiling_eur_m2 = true;
    req.rent_ceiling_eur_m2 = 10.5;
    req.envisaged_on = (char *)date;
    return reply_convention(harness_call(f->stack.client, "convention.envisage", &req.base,
                                         PASSERELLE__STATUS__STATUS_OK, NULL));
}

static void envisage_refused(fixture_t *f, const char *unit, int status, const char *field,
                             const char *needle)
{
    Passerelle__ConventionEnvisageRequest req = PASSERELLE__CONVENTION_ENVISAGE_REQUEST__INIT;
    req.unit = (char *)unit;
    req.has_level = true;
    req.level = PASSERELLE__CONVENTION_LEVEL__LEVEL_LOC1;
    Passerelle__Reply *reply =
        harness_call(f->stack.client, "convention.envisage", &req.base, status, field);
    if (needle)
        assert_non_null(strstr(reply->message, needle));
    passerelle__reply__free_unpacked(reply, NULL);
    expect_event(f, NULL, NULL, 0);
}

static Passerelle__Convention *step(fixture_t *f, const char *type, const char *id,
                                    const char *date, const char *reason)
{
    Passerelle__ConventionStepRequest req = PASSERELLE__CONVENTION_STEP_REQUEST__INIT;
    req.id = (char *)id;
    req.date = (char *)date;
    req.reason = (char *)reason;
    return reply_convention(
        harness_call(f->stack.client, type, &req.base, PASSERELLE__STATUS__STATUS_OK, NULL));
}

/* A refused step: its status and field, a message containing needle, and
 * no event. */
static void step_refused(fixture_t *f, const char *type, const char *id, const char *date,
                         const char *reason, int status, const char *field, const char *needle)
{
    Passerelle__ConventionStepRequest req = PASSERELLE__CONVENTION_STEP_REQUEST__INIT;
    req.id = (char *)id;
    req.date = (char *)date;
    req.reason = (char *)reason;
    Passerelle__Reply *reply = harness_call(f->stack.client, type, &req.base, status, field);
    if (needle) {
        if (!strstr(reply->message, needle))
            fprintf(stderr, "message '%s' lacks '%s'\n", reply->message, needle);
        assert_non_null(strstr(reply->message, needle));
    }
    passerelle__reply__free_unpacked(reply, NULL);
    expect_event(f, NULL, NULL, 0);
}

static int unit_state(fixture_t *f, const char *id)
{
    Passerelle__UnitGetRequest req = PASSERELLE__UNIT_GET_REQUEST__INIT;
    req.id = (char *)id;
    Passerelle__Reply *reply =
        harness_call(f->stack.client, "unit.get", &req.base, PASSERELLE__STATUS__STATUS_OK, NULL);
    Passerelle__Unit *unit = passerelle__unit__unpack(NULL, reply->body.len, reply->body.data);
    passerelle__reply__free_unpacked(reply, NULL);
    assert_non_null(unit);
    int state = unit->convention_state;
    passerelle__unit__free_unpacked(unit, NULL);
    return state;
}

#define FP         PASSERELLE__STATUS__STATUS_FAILED_PRECONDITION
#define IA         PASSERELLE__STATUS__STATUS_INVALID_ARGUMENT
#define ENVISAGED  PASSERELLE__CONVENTION_STATE__CONVENTION_ENVISAGED
#define SIGNED     PASSERELLE__CONVENTION_STATE__CONVENTION_SIGNED
#define IN_FORCE   PASSERELLE__CONVENTION_STATE__CONVENTION_IN_FORCE
#define EXPIRED    PASSERELLE__CONVENTION_STATE__CONVENTION_EXPIRED
#define TERMINATED PASSERELLE__CONVENTION_STATE__CONVENTION_TERMINATED
#define ABANDONED  PASSERELLE__CONVENTION_STATE__CONVENTION_ABANDONED

static void test_units(void **state)
{
    fixture_t *f = *state;
    register_unit(f, "ANAH-84089-0001", "Pertuis", NULL, PASSERELLE__STOCK__STOCK_PRIVATE,
                  PASSERELLE__ENERGY_CLASS__ENERGY_D, f->pertuis);
    register_unit(f, "OPAH-RU-13203-0007", "Marseille", "3", PASSERELLE__STOCK__STOCK_PRIVATE,
                  PASSERELLE__ENERGY_CLASS__ENERGY_E, f->marseille);
    register_unit(f, "HLM-13056-0001", "Martigues", NULL, PASSERELLE__STOCK__STOCK_SOCIAL,
                  PASSERELLE__ENERGY_CLASS__ENERGY_C, f->social);
    register_unit(f, "ANAH-13001-0099", "13001", NULL, PASSERELLE__STOCK__STOCK_PRIVATE, 0,
                  f->unknown);
}

static void test_envisage_refusals(void **state)
{
    fixture_t *f = *state;
    envisage_refused(f, f->social, FP, "unit", "SOCIAL");
    envisage_refused(f, "HLM-13056-0001", FP, "unit", "SOCIAL");
    char missing[ID_LEN];
    id_new('U', missing);
    envisage_refused(f, missing, PASSERELLE__STATUS__STATUS_NOT_FOUND, "unit", missing);
    envisage_refused(f, "NO-SUCH-REF", PASSERELLE__STATUS__STATUS_NOT_FOUND, "unit", "NO-SUCH-REF");
    Passerelle__ConventionEnvisageRequest req = PASSERELLE__CONVENTION_ENVISAGE_REQUEST__INIT;
    req.unit = f->pertuis;
    harness_call_refused(f->stack.client, "convention.envisage", &req.base, IA, "level");
    req.has_level = true;
    req.level = PASSERELLE__CONVENTION_LEVEL__LEVEL_LOC3;
    req.envisaged_on = "2026-02-30";
    harness_call_refused(f->stack.client, "convention.envisage", &req.base, IA, "envisaged_on");
    expect_event(f, NULL, NULL, 0);
}

/* ENVISAGED -> SIGNED -> IN_FORCE -> EXPIRED, by external reference, with
 * every step that is out of turn refused on the way. */
static void test_lifecycle_expired(void **state)
{
    fixture_t *f = *state;
    Passerelle__Convention *conv = envisage(f, "ANAH-84089-0001", false, "2026-01-10");
    char id[ID_LEN];
    snprintf(id, sizeof id, "%s", conv->id);
    assert_true(id_valid('C', id));
    assert_int_equal(conv->state, ENVISAGED);
    assert_string_equal(conv->unit_id, f->pertuis);
    assert_string_equal(conv->envisaged_on, "2026-01-10");
    assert_string_equal(conv->unit->convention_id, id);
    assert_int_equal(conv->unit->convention_state, ENVISAGED);
    assert_int_equal(conv->unit->version, 2);
    passerelle__convention__free_unpacked(conv, NULL);
    expect_event(f, "convention.envisaged", f->pertuis, ENVISAGED);

    /* One live convention per unit. */
    envisage_refused(f, f->pertuis, FP, "unit", id);
    step_refused(f, "convention.in_force", id, NULL, NULL, FP, "id",
                 "is ENVISAGED; convention.in_force needs SIGNED");
    step_refused(f, "convention.end", id, NULL, "terminated", FP, "id", "needs IN_FORCE");
    step_refused(f, "convention.sign", id, "2026-01-09", NULL, FP, "date", "2026-01-10");
    step_refused(f, "convention.sign", id, "not-a-date", NULL, IA, "date", NULL);

    conv = step(f, "convention.sign", id, "2026-02-01", NULL);
    assert_int_equal(conv->state, SIGNED);
    assert_string_equal(conv->signed_on, "2026-02-01");
    assert_string_equal(conv->end_date, "2032-02-01");
    assert_int_equal(conv->unit->convention_state, SIGNED);
    passerelle__convention__free_unpacked(conv, NULL);
    expect_event(f, "convention.signed", f->pertuis, SIGNED);

    char expected[160];
    snprintf(expected, sizeof expected,
             "convention %s is SIGNED; convention.abandon needs ENVISAGED", id);
    step_refused(f, "convention.abandon", id, NULL, NULL, FP, "id", expected);
    step_refused(f, "convention.sign", id, NULL, NULL, FP, "id", "is SIGNED");

    conv = step(f, "convention.in_force", id, "2026-03-01", NULL);
    assert_int_equal(conv->state, IN_FORCE);
    assert_string_equal(conv->in_force_on, "2026-03-01");
    passerelle__convention__free_unpacked(conv, NULL);
    expect_event(f, "convention.in_force", f->pertuis, IN_FORCE);

    step_refused(f, "convention.end", id, "2030-01-01", "expired", FP, "date", "2032-02-01");
    step_refused(f, "convention.end", id, "2032-02-01", "lapsed", IA, "reason", NULL);
    step_refused(f, "convention.end", id, "2032-02-01", NULL, IA, "reason", NULL);
    conv = step(f, "convention.end", id, "2032-02-01", "expired");
    assert_int_equal(conv->state, EXPIRED);
    assert_string_equal(conv->ended_on, "2032-02-01");
    assert_string_equal(conv->end_reason, "expired");
    passerelle__convention__free_unpacked(conv, NULL);
    expect_event(f, "convention.ended", f->pertuis, EXPIRED);
    assert_int_equal(unit_state(f, f->pertuis), EXPIRED);

    /* Over: every step is refused now. */
    step_refused(f, "convention.end", id, "2033-01-01", "terminated", FP, "id", "is EXPIRED");
    step_refused(f, "convention.abandon", id, NULL, NULL, FP, "id", "is EXPIRED");
    step_refused(f, "convention.sign", id, NULL, NULL, FP, "id", "is EXPIRED");
}

/* A second convention on the same unit, with works (nine years), ended
 * early. */
static void test_lifecycle_terminated(void **state)
{
    fixture_t *f = *state;
    Passerelle__Convention *conv = envisage(f, f->pertuis, true, "2032-03-01");
    char id[ID_LEN];
    snprintf(id, sizeof id, "%s", conv->id);
    assert_true(conv->with_works);
    passerelle__convention__free_unpacked(conv, NULL);
    expect_event(f, "convention.envisaged", f->pertuis, ENVISAGED);

    conv = step(f, "convention.sign", id, "2032-04-01", NULL);
    assert_string_equal(conv->end_date, "2041-04-01");
    passerelle__convention__free_unpacked(conv, NULL);
    expect_event(f, "convention.signed", f->pertuis, SIGNED);
    conv = step(f, "convention.in_force", id, "2032-05-01", NULL);
    passerelle__convention__free_unpacked(conv, NULL);
    expect_event(f, "convention.in_force", f->pertuis, IN_FORCE);
    step_refused(f, "convention.end", id, "2032-04-30", "terminated", FP, "date", NULL);
    conv = step(f, "convention.end", id, "2034-01-15", "terminated");
    assert_int_equal(conv->state, TERMINATED);
    assert_string_equal(conv->end_reason, "terminated");
    passerelle__convention__free_unpacked(conv, NULL);
    expect_event(f, "convention.ended", f->pertuis, TERMINATED);
    assert_int_equal(unit_state(f, f->pertuis), TERMINATED);
}

/* Class E in Marseille: refused from 2028, allowed before; abandoned. */
static void test_energy_and_abandon(void **state)
{
    fixture_t *f = *state;
    Passerelle__Convention *conv = envisage(f, "OPAH-RU-13203-0007", false, "2027-06-01");
    char id[ID_LEN];
    snprintf(id, sizeof id, "%s", conv->id);
    passerelle__convention__free_unpacked(conv, NULL);
    expect_event(f, "convention.envisaged", f->marseille, ENVISAGED);

    step_refused(f, "convention.sign", id, "2028-01-01", NULL, FP, "energy_class", "needs D");
    conv = step(f, "convention.abandon", id, "2028-01-05", NULL);
    assert_int_equal(conv->state, ABANDONED);
    assert_int_equal(conv->unit->convention_state, ABANDONED);
    passerelle__convention__free_unpacked(conv, NULL);
    expect_event(f, "convention.abandoned", f->marseille, ABANDONED);
    step_refused(f, "convention.sign", id, "2028-01-06", NULL, FP, "id", "is ABANDONED");

    /* A new attempt, signed in 2027 while E still qualifies. */
    conv = envisage(f, f->marseille, false, "2027-09-01");
    snprintf(id, sizeof id, "%s", conv->id);
    passerelle__convention__free_unpacked(conv, NULL);
    expect_event(f, "convention.envisaged", f->marseille, ENVISAGED);
    conv = step(f, "convention.sign", id, "2027-12-31", NULL);
    assert_string_equal(conv->end_date, "2033-12-31");
    passerelle__convention__free_unpacked(conv, NULL);
    expect_event(f, "convention.signed", f->marseille, SIGNED);

    /* No known class: refused whatever the date. */
    conv = envisage(f, f->unknown, false, "2026-01-01");
    snprintf(id, sizeof id, "%s", conv->id);
    passerelle__convention__free_unpacked(conv, NULL);
    expect_event(f, "convention.envisaged", f->unknown, ENVISAGED);
    step_refused(f, "convention.sign", id, "2026-02-01", NULL, FP, "energy_class", "energy class");
}

static void test_get_and_list(void **state)
{
    fixture_t *f = *state;
    /* The Marseille unit's current convention, with its unit. */
    Passerelle__UnitGetRequest unit_req = PASSERELLE__UNIT_GET_REQUEST__INIT;
    unit_req.id = f->marseille;
    Passerelle__Reply *reply = harness_call(f->stack.client, "unit.get", &unit_req.base,
                                            PASSERELLE__STATUS__STATUS_OK, NULL);
    Passerelle__Unit *unit = passerelle__unit__unpack(NULL, reply->body.len, reply->body.data);
    passerelle__reply__free_unpacked(reply, NULL);
    assert_non_null(unit);
    assert_int_equal(unit->convention_state, SIGNED);

    Passerelle__ConventionGetRequest req = PASSERELLE__CONVENTION_GET_REQUEST__INIT;
    req.id = unit->convention_id;
    Passerelle__Convention *conv = reply_convention(harness_call(
        f->stack.client, "convention.get", &req.base, PASSERELLE__STATUS__STATUS_OK, NULL));
    assert_int_equal(conv->state, SIGNED);
    assert_string_equal(conv->unit->id, f->marseille);
    assert_string_equal(conv->unit->arrondissement_insee, "13203");
    assert_int_equal(conv->level, PASSERELLE__CONVENTION_LEVEL__LEVEL_LOC2);
    assert_int_equal(conv->intermediation,
                     PASSERELLE__INTERMEDIATION__INTERMEDIATION_MANAGEMENT_MANDATE);
    assert_true(conv->rent_ceiling_eur_m2 == 10.5);
    passerelle__convention__free_unpacked(conv, NULL);
    passerelle__unit__free_unpacked(unit, NULL);

    /* Named by its unit instead: the unit's latest convention. */
    req.id = NULL;
    req.unit = f->marseille;
    conv = reply_convention(harness_call(f->stack.client, "convention.get", &req.base,
                                         PASSERELLE__STATUS__STATUS_OK, NULL));
    assert_int_equal(conv->state, SIGNED);
    assert_string_equal(conv->unit_id, f->marseille);
    passerelle__convention__free_unpacked(conv, NULL);
    req.unit = f->social; /* never had one */
    harness_call_refused(f->stack.client, "convention.get", &req.base,
                         PASSERELLE__STATUS__STATUS_NOT_FOUND, "unit");
    req.unit = "NO-SUCH-REF";
    harness_call_refused(f->stack.client, "convention.get", &req.base,
                         PASSERELLE__STATUS__STATUS_NOT_FOUND, "unit");
    req.id = "C123";
    req.unit = f->marseille;
    harness_call_refused(f->stack.client, "convention.get", &req.base, IA, "unit");
    req.unit = NULL;
    Passerelle__ConventionStepRequest by_unit = PASSERELLE__CONVENTION_STEP_REQUEST__INIT;
    by_unit.unit = f->marseille;
    reply = harness_call(f->stack.client, "convention.abandon", &by_unit.base,
                         PASSERELLE__STATUS__STATUS_FAILED_PRECONDITION, "id");
    assert_non_null(strstr(reply->message, "SIGNED"));
    passerelle__reply__free_unpacked(reply, NULL);
    expect_event(f, NULL, NULL, 0);

    char missing[ID_LEN];
    id_new('C', missing);
    req.id = missing;
    harness_call_refused(f->stack.client, "convention.get", &req.base,
                         PASSERELLE__STATUS__STATUS_NOT_FOUND, "id");
    req.id = "C123";
    harness_call_refused(f->stack.client, "convention.get", &req.base, IA, "id");
    step_refused(f, "convention.sign", missing, NULL, NULL, PASSERELLE__STATUS__STATUS_NOT_FOUND,
                 "id", missing);

    /* The convention-state index follows every transition. */
    const struct {
        int state;
        const char *unit;
    } expected[] = {
        {TERMINATED, f->pertuis}, {SIGNED, f->marseille},
        {ENVISAGED, f->unknown},  {PASSERELLE__CONVENTION_STATE__CONVENTION_NONE, f->social},
        {EXPIRED, NULL},          {ABANDONED, NULL},
        {IN_FORCE, NULL},
    };
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++) {
        Passerelle__UnitListRequest list_req = PASSERELLE__UNIT_LIST_REQUEST__INIT;
        list_req.has_convention_state = true;
        list_req.convention_state = expected[i].state;
        reply = harness_call(f->stack.client, "unit.list", &list_req.base,
                             PASSERELLE__STATUS__STATUS_OK, NULL);
        Passerelle__UnitList *list =
            passerelle__unit_list__unpack(NULL, reply->body.len, reply->body.data);
        passerelle__reply__free_unpacked(reply, NULL);
        assert_non_null(list);
        assert_int_equal(list->n_units, expected[i].unit ? 1 : 0);
        if (expected[i].unit)
            assert_string_equal(list->units[0]->id, expected[i].unit);
        passerelle__unit_list__free_unpacked(list, NULL);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_units),
        cmocka_unit_test(test_envisage_refusals),
        cmocka_unit_test(test_lifecycle_expired),
        cmocka_unit_test(test_lifecycle_terminated),
        cmocka_unit_test(test_energy_and_abandon),
        cmocka_unit_test(test_get_and_list),
    };
    return cmocka_run_group_tests(tests, setup, harness_fixture_teardown);
}
