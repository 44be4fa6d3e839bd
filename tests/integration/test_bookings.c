/* Reservations end to end: a real redis-server and the real reservations
 * binary on run-time ports, called over ZeroMQ with CURVE by the Métropole
 * and by Action Logement. Goes through every lifecycle (STOCK released,
 * STOCK cancelled then reserved again, vacancies, FLOW of a programme and of
 * a landlord), every refusal with its code and field, the one active STOCK
 * reservation per unit, the listing filters and pages, an idempotent
 * retry, and a unit's copies of its convention (with the read of the
 * convention for a unit written without them); after every write exactly
 * one event of the right type on the right subject, and none after a
 * refusal. */
#include "harness.h"

#include "envelope.pb-c.h"
#include "ids.h"
#include "reservations.pb-c.h"
#include "store.h"
#include "txn.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define OK        PASSERELLE__STATUS__STATUS_OK
#define IA        PASSERELLE__STATUS__STATUS_INVALID_ARGUMENT
#define FP        PASSERELLE__STATUS__STATUS_FAILED_PRECONDITION
#define NF        PASSERELLE__STATUS__STATUS_NOT_FOUND
#define CONFLICT  PASSERELLE__STATUS__STATUS_CONFLICT
#define DENIED    PASSERELLE__STATUS__STATUS_PERMISSION_DENIED
#define STOCK     PASSERELLE__RESERVATION_MODE__MODE_STOCK
#define FLOW      PASSERELLE__RESERVATION_MODE__MODE_FLOW
#define ACTIVE    PASSERELLE__RESERVATION_STATE__RESERVATION_ACTIVE
#define RELEASED  PASSERELLE__RESERVATION_STATE__RESERVATION_RELEASED
#define CANCELLED PASSERELLE__RESERVATION_STATE__RESERVATION_CANCELLED
#define AL        PASSERELLE__RESERVATAIRE__RESERVATAIRE_ACTION_LOGEMENT

/* The stack comes first: harness_fixture_setup makes and starts it. */
typedef struct {
    harness_stack_t stack; /* its client is the Métropole's */
    client_t *al;          /* Action Logement's */
    char last_position[64];
    char signed_unit[ID_LEN], envisaged_unit[ID_LEN], bare_unit[ID_LEN], social_unit[ID_LEN];
    char programme[ID_LEN];
    char in_two_years[DATE_LEN], in_seven_years[DATE_LEN];
    int year;
} fixture_t;

/* --- events ---------------------------------------------------------------- */

/* The events appended since the last look: exactly one, of this type, on
 * this subject, carrying a Reservation in `state` (with its unit for
 * STOCK); or none when type is NULL. Returns nothing: fails the test. */
static void expect_event(fixture_t *f, const char *type, const char *subject, int state)
{
    harness_events_t events;
    harness_events_read(f->stack.client, f->last_position, &events);
    if (events.count != (type ? 1u : 0u)) {
        for (size_t i = 0; i < events.count; i++)
            fprintf(stderr, "unexpected event %s\n", events.entries[i]->event->type);
        fail_msg("%zu events, expected %d (%s)", events.count, type ? 1 : 0, type ? type : "-");
    }
    if (type) {
        const Passerelle__Event *event = events.entries[0]->event;
        assert_string_equal(event->type, type);
        assert_string_equal(event->source, "/passerelle/reservations");
        if (subject)
            assert_string_equal(event->subject, subject);
        if (strncmp(type, "reservation.", 12) == 0) {
            assert_string_equal(event->dataschema, "passerelle.Reservation");
            Passerelle__Reservation *r =
                passerelle__reservation__unpack(NULL, event->data.len, event->data.data);
            assert_non_null(r);
            assert_int_equal(r->state, state);
            if (r->mode == STOCK) {
                assert_non_null(r->unit);
                assert_string_equal(r->unit->id, r->unit_id);
            } else {
                assert_null(r->unit);
            }
            passerelle__reservation__free_unpacked(r, NULL);
        }
    }
    snprintf(f->last_position, sizeof f->last_position, "%s", events.last_position);
    harness_events_free(&events);
}

static void subject_unit(const char *unit_id, char out[64])
{
    snprintf(out, 64, "units/%s", unit_id);
}

/* --- calls ----------------------------------------------------------------- */

static Passerelle__Reservation *reply_reservation(Passerelle__Reply *reply)
{
    assert_true(reply->has_body);
    Passerelle__Reservation *r =
        passerelle__reservation__unpack(NULL, reply->body.len, reply->body.data);
    passerelle__reply__free_unpacked(reply, NULL);
    assert_non_null(r);
    return r;
}

static Passerelle__ReservationCreateRequest stock_request(const char *unit, const char *end)
{
    Passerelle__ReservationCreateRequest req = PASSERELLE__RESERVATION_CREATE_REQUEST__INIT;
    req.has_mode = true;
    req.mode = STOCK;
    req.unit = (char *)unit;
    req.end_date = (char *)end;
    return req;
}

static Passerelle__Reservation *create(client_t *client, Passerelle__ReservationCreateRequest *req)
{
    return reply_reservation(harness_call(client, "reservation.create", &req->base, OK, NULL));
}

/* A refusal: its status and field, the needle in its message, no event. */
static void refused(fixture_t *f, client_t *client, const char *type, const ProtobufCMessage *body,
                    int status, const char *field, const char *needle)
{
    Passerelle__Reply *reply = harness_call(client, type, body, status, field);
    if (needle && !strstr(reply->message, needle))
        fail_msg("message '%s' lacks '%s'", reply->message, needle);
    passerelle__reply__free_unpacked(reply, NULL);
    expect_event(f, NULL, NULL, 0);
}

static Passerelle__Reservation *step(client_t *client, const char *type, const char *id,
                                     const char *unit, const char *reason)
{
    Passerelle__ReservationStepRequest req = PASSERELLE__RESERVATION_STEP_REQUEST__INIT;
    req.id = (char *)id;
    req.unit = (char *)unit;
    req.reason = (char *)reason;
    return reply_reservation(harness_call(client, type, &req.base, OK, NULL));
}

static void step_refused(fixture_t *f, client_t *client, const char *type, const char *id,
                         const char *unit, const char *date, int status, const char *field,
                         const char *needle)
{
    Passerelle__ReservationStepRequest req = PASSERELLE__RESERVATION_STEP_REQUEST__INIT;
    req.id = (char *)id;
    req.unit = (char *)unit;
    req.date = (char *)date;
    refused(f, client, type, &req.base, status, field, needle);
}

static Passerelle__Reservation *get(fixture_t *f, const char *id, const char *unit, int status,
                                    const char *field)
{
    Passerelle__ReservationGetRequest req = PASSERELLE__RESERVATION_GET_REQUEST__INIT;
    req.id = (char *)id;
    req.unit = (char *)unit;
    Passerelle__Reply *reply =
        harness_call(f->stack.client, "reservation.get", &req.base, status, field);
    if (status != OK) {
        passerelle__reply__free_unpacked(reply, NULL);
        return NULL;
    }
    return reply_reservation(reply);
}

/* The unit's active reservation id, "" if none. */
static void unit_reservation(fixture_t *f, const char *unit_id, char out[ID_LEN])
{
    Passerelle__UnitGetRequest req = PASSERELLE__UNIT_GET_REQUEST__INIT;
    req.id = (char *)unit_id;
    Passerelle__Reply *reply = harness_call(f->stack.client, "unit.get", &req.base, OK, NULL);
    Passerelle__Unit *unit = passerelle__unit__unpack(NULL, reply->body.len, reply->body.data);
    passerelle__reply__free_unpacked(reply, NULL);
    assert_non_null(unit);
    snprintf(out, ID_LEN, "%s", unit->reservation_id ? unit->reservation_id : "");
    passerelle__unit__free_unpacked(unit, NULL);
}

/* --- the fixture ------------------------------------------------------------ */

static void register_unit(fixture_t *f, const char *ref, int stock, char id[ID_LEN])
{
    Passerelle__UnitRegisterRequest req;
    harness_unit_request(&req, ref);
    if (stock == PASSERELLE__STOCK__STOCK_SOCIAL) {
        req.commune = "Martigues";
        req.stock = stock;
        req.landlord = "13 Habitat";
        req.has_financing = true;
        req.financing = PASSERELLE__FINANCING__FINANCING_PLUS;
        req.has_in_qpv = true;
        req.in_qpv = true;
    }
    Passerelle__Reply *reply = harness_call(f->stack.client, "unit.register", &req.base, OK, NULL);
    Passerelle__Unit *unit = passerelle__unit__unpack(NULL, reply->body.len, reply->body.data);
    passerelle__reply__free_unpacked(reply, NULL);
    assert_non_null(unit);
    snprintf(id, ID_LEN, "%s", unit->id);
    passerelle__unit__free_unpacked(unit, NULL);
}

static void convention_call(fixture_t *f, const char *type, const ProtobufCMessage *body)
{
    Passerelle__Reply *reply = harness_call(f->stack.client, type, body, OK, NULL);
    passerelle__reply__free_unpacked(reply, NULL);
}

static void envisage(fixture_t *f, const char *unit)
{
    Passerelle__ConventionEnvisageRequest req = PASSERELLE__CONVENTION_ENVISAGE_REQUEST__INIT;
    req.unit = (char *)unit;
    req.has_level = true;
    req.level = PASSERELLE__CONVENTION_LEVEL__LEVEL_LOC2;
    convention_call(f, "convention.envisage", &req.base);
}

/* A programme record as programme.create stores it, written straight into
 * Redis so that these tests prove reservations alone. */
static void put_programme(fixture_t *f, const char *territory, const char *start, const char *end)
{
    store_config_t cfg;
    harness_redis_config(&f->stack.redis, &cfg);
    store_t *store = store_new(&cfg);
    assert_non_null(store);
    id_new('P', f->programme);
    Passerelle__Programme prog = PASSERELLE__PROGRAMME__INIT;
    prog.id = f->programme;
    prog.name = "PIG Pays de Martigues";
    prog.has_kind = true;
    prog.kind = PASSERELLE__PROGRAMME_KIND__PROGRAMME_PIG;
    prog.territory = (char *)territory;
    prog.start_date = (char *)start;
    prog.end_date = (char *)end;
    prog.has_version = true;
    prog.version = 1;
    char key[96];
    snprintf(key, sizeof key, "reservations:programme:%s", f->programme);
    txn_t *txn = txn_new(NULL, NULL, 0);
    txn_put_message(txn, key, 1, &prog.base);
    assert_int_equal(txn_commit(txn, store, NULL, 0, NULL, NULL, NULL), TXN_COMMITTED);
    txn_destroy(&txn);
    store_destroy(&store);
}

static int setup(void **state)
{
    if (harness_fixture_setup(state, sizeof(fixture_t), "bookings", "metropole") != 0)
        return -1;
    fixture_t *f = *state;
    f->al = harness_stack_client(&f->stack, "action_logement", 5000, 1);
    if (!f->al)
        return -1;
    date_t today = date_today_paris();
    f->year = today.year;
    date_format(date_add_years(today, 2), f->in_two_years);
    date_format(date_add_years(today, 7), f->in_seven_years);

    register_unit(f, "ANAH-84089-0101", PASSERELLE__STOCK__STOCK_PRIVATE, f->signed_unit);
    envisage(f, f->signed_unit);
    Passerelle__ConventionStepRequest sign = PASSERELLE__CONVENTION_STEP_REQUEST__INIT;
    sign.unit = f->signed_unit;
    convention_call(f, "convention.sign", &sign.base);
    register_unit(f, "ANAH-84089-0102", PASSERELLE__STOCK__STOCK_PRIVATE, f->envisaged_unit);
    envisage(f, f->envisaged_unit);
    register_unit(f, "ANAH-84089-0103", PASSERELLE__STOCK__STOCK_PRIVATE, f->bare_unit);
    register_unit(f, "HLM-13056-0101", PASSERELLE__STOCK__STOCK_SOCIAL, f->social_unit);
    /* The programme runs from last year to two years on. */
    char start[DATE_LEN], end[DATE_LEN];
    date_format((date_t){f->year - 1, 1, 1}, start);
    date_format((date_t){f->year + 2, 12, 31}, end);
    put_programme(f, "CT6", start, end);

    /* Start the event checks after the fixture's own events. */
    harness_events_t events;
    harness_events_read(f->stack.client, "0", &events);
    snprintf(f->last_position, sizeof f->last_position, "%s", events.last_position);
    harness_events_free(&events);
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    if (f)
        client_destroy(&f->al);
    return harness_fixture_teardown(state);
}

/* --- STOCK -------------------------------------------------------------- */

static void test_stock_release(void **state)
{
    fixture_t *f = *state;
    char subject[64], held[ID_LEN];
    subject_unit(f->signed_unit, subject);

    /* Action Logement reserves the conventioned unit by its reference. */
    Passerelle__ReservationCreateRequest req = stock_request("ANAH-84089-0101", f->in_two_years);
    Passerelle__PriorityPublic publics[] = {PASSERELLE__PRIORITY_PUBLIC__PUBLIC_UNDER_30};
    req.target_publics = publics;
    req.n_target_publics = 1;
    Passerelle__Reservation *r = create(f->al, &req);
    expect_event(f, "reservation.created", subject, ACTIVE);
    assert_true(id_valid('R', r->id));
    assert_int_equal(r->reservataire, AL);
    assert_int_equal(r->mode, STOCK);
    assert_int_equal(r->state, ACTIVE);
    assert_string_equal(r->unit_id, f->signed_unit);
    assert_string_equal(r->territory, "CT2");
    assert_int_equal(r->level, PASSERELLE__CONVENTION_LEVEL__LEVEL_LOC2);
    assert_int_equal(r->year, (unsigned)f->year);
    assert_int_equal(r->units, 1);
    assert_int_equal(r->vacancy, 1);
    assert_int_equal(r->attributed, 0);
    assert_string_equal(r->end_date, f->in_two_years);
    assert_int_equal(r->n_target_publics, 1);
    assert_non_null(r->unit);
    assert_string_equal(r->unit->reservation_id, r->id);
    char id[ID_LEN];
    snprintf(id, sizeof id, "%s", r->id);
    passerelle__reservation__free_unpacked(r, NULL);
    unit_reservation(f, f->signed_unit, held);
    assert_string_equal(held, id);

    /* A second reservation of the unit: CONFLICT naming the holder. */
    Passerelle__ReservationCreateRequest again = stock_request(f->signed_unit, f->in_two_years);
    again.has_reservataire = true;
    again.reservataire = PASSERELLE__RESERVATAIRE__RESERVATAIRE_STATE;
    refused(f, f->stack.client, "reservation.create", &again.base, CONFLICT, "unit", id);
    refused(f, f->stack.client, "reservation.create", &again.base, CONFLICT, "unit",
            "ACTION_LOGEMENT");

    /* Read by id and by the unit, with the unit. */
    r = get(f, NULL, "ANAH-84089-0101", OK, NULL);
    assert_string_equal(r->id, id);
    assert_non_null(r->unit);
    passerelle__reservation__free_unpacked(r, NULL);
    r = get(f, id, NULL, OK, NULL);
    assert_int_equal(r->state, ACTIVE);
    passerelle__reservation__free_unpacked(r, NULL);

    /* The next vacancy. */
    r = step(f->al, "reservation.vacancy", NULL, f->signed_unit, NULL);
    expect_event(f, "reservation.vacancy_opened", subject, ACTIVE);
    assert_int_equal(r->vacancy, 2);
    assert_int_equal(r->attributed, 0);
    passerelle__reservation__free_unpacked(r, NULL);

    /* The convention cannot end under an active reservation: it is
     * released first. */
    Passerelle__ConventionStepRequest conv_step = PASSERELLE__CONVENTION_STEP_REQUEST__INIT;
    conv_step.unit = f->signed_unit;
    convention_call(f, "convention.in_force", &conv_step.base);
    expect_event(f, "convention.in_force", subject, -1);
    conv_step.reason = "terminated";
    Passerelle__Reply *ended =
        harness_call(f->stack.client, "convention.end", &conv_step.base, FP, "id");
    assert_non_null(strstr(ended->message, id));
    passerelle__reply__free_unpacked(ended, NULL);
    expect_event(f, NULL, NULL, 0);

    /* The right returns to the landlord: the unit is free again. */
    r = step(f->al, "reservation.release", id, NULL, "end of the right");
    expect_event(f, "reservation.released", subject, RELEASED);
    assert_int_equal(r->state, RELEASED);
    assert_non_null(r->ended_on);
    assert_string_equal(r->end_reason, "end of the right");
    assert_non_null(r->unit);
    assert_true(r->unit->reservation_id == NULL || r->unit->reservation_id[0] == '\0');
    passerelle__reservation__free_unpacked(r, NULL);
    unit_reservation(f, f->signed_unit, held);
    assert_string_equal(held, "");

    /* Nothing more from RELEASED, the state named. */
    step_refused(f, f->al, "reservation.release", id, NULL, NULL, FP, "id", "RELEASED");
    step_refused(f, f->al, "reservation.cancel", id, NULL, NULL, FP, "id", "RELEASED");
    step_refused(f, f->al, "reservation.vacancy", id, NULL, NULL, FP, "id", "RELEASED");
    step_refused(f, f->al, "reservation.release", NULL, f->signed_unit, NULL, NF, "unit", NULL);
    get(f, NULL, f->signed_unit, NF, "unit");

    /* Reserved again, then cancelled (recorded in error). */
    req = stock_request(f->signed_unit, f->in_two_years);
    r = create(f->stack.client, &req);
    expect_event(f, "reservation.created", subject, ACTIVE);
    assert_string_not_equal(r->id, id);
    snprintf(id, sizeof id, "%s", r->id);
    passerelle__reservation__free_unpacked(r, NULL);
    r = step(f->stack.client, "reservation.cancel", NULL, f->signed_unit, "recorded in error");
    expect_event(f, "reservation.cancelled", subject, CANCELLED);
    assert_int_equal(r->state, CANCELLED);
    passerelle__reservation__free_unpacked(r, NULL);
    unit_reservation(f, f->signed_unit, held);
    assert_string_equal(held, "");
    step_refused(f, f->al, "reservation.release", id, NULL, NULL, FP, "id", "CANCELLED");
}

static void test_stock_refusals(void **state)
{
    fixture_t *f = *state;
    Passerelle__ReservationCreateRequest req = stock_request(f->envisaged_unit, f->in_two_years);
    refused(f, f->al, "reservation.create", &req.base, FP, "unit", "ENVISAGED");
    req.unit = f->bare_unit;
    refused(f, f->al, "reservation.create", &req.base, FP, "unit", "no ANAH convention");
    req.unit = f->signed_unit;
    req.end_date = f->in_seven_years; /* beyond the convention's 6 years */
    refused(f, f->al, "reservation.create", &req.base, FP, "end_date", NULL);
    req.end_date = NULL;
    refused(f, f->al, "reservation.create", &req.base, IA, "end_date", NULL);
    req.end_date = f->in_two_years;
    req.unit = "ANAH-NOWHERE";
    refused(f, f->al, "reservation.create", &req.base, NF, "unit", NULL);
    req.unit = NULL;
    refused(f, f->al, "reservation.create", &req.base, IA, "unit", NULL);
    req.unit = f->signed_unit;
    req.has_mode = false;
    refused(f, f->al, "reservation.create", &req.base, IA, "mode", NULL);
    req.has_mode = true;
    req.has_reservataire = true;
    req.reservataire = PASSERELLE__RESERVATAIRE__RESERVATAIRE_COMMUNE;
    refused(f, f->al, "reservation.create", &req.base, DENIED, "reservataire", NULL);
    req.start_date = "2026-13-01";
    refused(f, f->stack.client, "reservation.create", &req.base, IA, "start_date", NULL);

    step_refused(f, f->al, "reservation.release", "R-nope", NULL, NULL, IA, "id", NULL);
    step_refused(f, f->al, "reservation.release", NULL, NULL, NULL, IA, "id", NULL);
    char unknown[ID_LEN];
    id_new('R', unknown);
    step_refused(f, f->al, "reservation.cancel", unknown, NULL, NULL, NF, "id", NULL);
    get(f, unknown, NULL, NF, "id");
    get(f, "U-nope", NULL, IA, "id");

    /* Partner systems read, but do not reserve. */
    client_t *partner = harness_stack_client(&f->stack, "partner", 5000, 1);
    assert_non_null(partner);
    req = stock_request(f->signed_unit, f->in_two_years);
    refused(f, partner, "reservation.create", &req.base, DENIED, NULL, NULL);
    client_destroy(&partner);
}

/* The record at key, as stored; fails the test if it is not there. */
static ProtobufCMessage *stored_record(store_t *store, const char *key,
                                       const ProtobufCMessageDescriptor *desc)
{
    uint8_t *data = NULL;
    size_t len = 0;
    uint64_t version = 0;
    assert_int_equal(store_record_get(store, key, &version, &data, &len), STORE_OK);
    assert_true(version > 0);
    ProtobufCMessage *msg = protobuf_c_message_unpack(desc, NULL, len, data);
    free(data);
    assert_non_null(msg);
    return msg;
}

/* A unit carries its convention's level and end date, so that a
 * reservation need not read the convention; a unit record written before
 * it carried them (rewritten here without them) has the convention read,
 * with the same rules and the same level on the reservation. */
static void test_stock_unit_copies_of_convention(void **state)
{
    fixture_t *f = *state;
    char unit_id[ID_LEN];
    register_unit(f, "ANAH-84089-0104", PASSERELLE__STOCK__STOCK_PRIVATE, unit_id);
    envisage(f, unit_id);
    Passerelle__ConventionStepRequest sign = PASSERELLE__CONVENTION_STEP_REQUEST__INIT;
    sign.unit = unit_id;
    convention_call(f, "convention.sign", &sign.base);
    harness_events_t events; /* registered, envisaged, signed */
    harness_events_read(f->stack.client, f->last_position, &events);
    assert_int_equal(events.count, 3);
    snprintf(f->last_position, sizeof f->last_position, "%s", events.last_position);
    harness_events_free(&events);

    store_config_t cfg;
    harness_redis_config(&f->stack.redis, &cfg);
    store_t *store = store_new(&cfg);
    assert_non_null(store);
    char unit_key[96], conv_key[96];
    snprintf(unit_key, sizeof unit_key, "reservations:unit:%s", unit_id);
    Passerelle__Unit *unit =
        (Passerelle__Unit *)stored_record(store, unit_key, &passerelle__unit__descriptor);
    snprintf(conv_key, sizeof conv_key, "reservations:convention:%s", unit->convention_id);
    Passerelle__Convention *conv = (Passerelle__Convention *)stored_record(
        store, conv_key, &passerelle__convention__descriptor);
    assert_true(unit->has_convention_level);
    assert_int_equal(unit->convention_level, conv->level);
    assert_non_null(conv->end_date);
    assert_string_equal(unit->convention_end_date, conv->end_date);

    /* As a unit written before: without the copies, at the same version. */
    Passerelle__Unit before = *unit;
    before.has_convention_level = false;
    before.convention_end_date = NULL;
    size_t len = passerelle__unit__get_packed_size(&before);
    uint8_t *packed = malloc(len);
    assert_non_null(packed);
    passerelle__unit__pack(&before, packed);
    assert_int_equal(store_command(store, NULL, "HSET %s pb %b", unit_key, packed, len), STORE_OK);
    free(packed);

    Passerelle__ReservationCreateRequest req = stock_request(unit_id, f->in_seven_years);
    refused(f, f->al, "reservation.create", &req.base, FP, "end_date", conv->end_date);
    req.end_date = f->in_two_years;
    Passerelle__Reservation *r = create(f->al, &req);
    assert_true(r->has_level);
    assert_int_equal(r->level, conv->level);
    passerelle__reservation__free_unpacked(r, NULL);
    char subject[64];
    subject_unit(unit_id, subject);
    expect_event(f, "reservation.created", subject, ACTIVE);

    passerelle__convention__free_unpacked(conv, NULL);
    passerelle__unit__free_unpacked(unit, NULL);
    store_destroy(&store);
}

static void test_social_other_reservataire(void **state)
{
    fixture_t *f = *state;
    char subject[64];
    subject_unit(f->social_unit, subject);
    /* The Métropole records a commune's reservation of a social unit. */
    Passerelle__ReservationCreateRequest req = stock_request("HLM-13056-0101", "2040-12-31");
    req.has_reservataire = true;
    req.reservataire = PASSERELLE__RESERVATAIRE__RESERVATAIRE_COMMUNE;
    Passerelle__Reservation *r = create(f->stack.client, &req);
    expect_event(f, "reservation.created", subject, ACTIVE);
    assert_int_equal(r->reservataire, PASSERELLE__RESERVATAIRE__RESERVATAIRE_COMMUNE);
    assert_string_equal(r->territory, "CT6");
    assert_true(r->has_financing);
    assert_int_equal(r->financing, PASSERELLE__FINANCING__FINANCING_PLUS);
    assert_false(r->has_level);
    assert_true(r->in_qpv);
    char id[ID_LEN];
    snprintf(id, sizeof id, "%s", r->id);
    passerelle__reservation__free_unpacked(r, NULL);

    /* Action Logement cannot end another reservataire's right, nor take
     * the unit while it is held. */
    step_refused(f, f->al, "reservation.release", id, NULL, NULL, DENIED, "reservataire",
                 "COMMUNE");
    Passerelle__ReservationCreateRequest mine = stock_request(f->social_unit, "2030-12-31");
    refused(f, f->al, "reservation.create", &mine.base, CONFLICT, "unit", id);
    /* A release before the start is refused with the date named. */
    step_refused(f, f->stack.client, "reservation.release", id, NULL, "2000-01-01", FP, "date",
                 NULL);
    step_refused(f, f->stack.client, "reservation.release", id, NULL, "yesterday", IA, "date",
                 NULL);
    r = step(f->stack.client, "reservation.release", id, NULL, NULL);
    expect_event(f, "reservation.released", subject, RELEASED);
    passerelle__reservation__free_unpacked(r, NULL);
}

/* --- FLOW --------------------------------------------------------------- */

static void test_flow(void **state)
{
    fixture_t *f = *state;
    Passerelle__ReservationCreateRequest req = PASSERELLE__RESERVATION_CREATE_REQUEST__INIT;
    req.has_mode = true;
    req.mode = FLOW;
    req.programme = f->programme;
    req.has_year = true;
    req.year = (uint32_t)f->year;
    req.has_units = true;
    req.units = 5;
    Passerelle__Reservation *r = create(f->al, &req);
    char subject[64];
    snprintf(subject, sizeof subject, "reservations/%s", r->id);
    expect_event(f, "reservation.created", subject, ACTIVE);
    assert_int_equal(r->mode, FLOW);
    assert_string_equal(r->programme_id, f->programme);
    assert_string_equal(r->territory, "CT6"); /* the programme's */
    assert_int_equal(r->units, 5);
    assert_null(r->unit);
    char id[ID_LEN];
    snprintf(id, sizeof id, "%s", r->id);
    passerelle__reservation__free_unpacked(r, NULL);

    step_refused(f, f->al, "reservation.vacancy", id, NULL, NULL, FP, "id", "FLOW");

    req.year = (uint32_t)f->year + 5; /* outside the programme */
    refused(f, f->al, "reservation.create", &req.base, FP, "year", NULL);
    req.year = (uint32_t)f->year;
    char unknown[ID_LEN];
    id_new('P', unknown);
    req.programme = unknown;
    refused(f, f->al, "reservation.create", &req.base, NF, "programme", NULL);
    req.landlord = "13 Habitat";
    refused(f, f->al, "reservation.create", &req.base, IA, "programme", NULL);
    req.programme = NULL;
    refused(f, f->al, "reservation.create", &req.base, IA, "territory", NULL);
    req.territory = "CT1";
    req.units = 0;
    refused(f, f->al, "reservation.create", &req.base, IA, "units", NULL);
    req.units = 3;
    req.has_year = false;
    refused(f, f->al, "reservation.create", &req.base, IA, "year", NULL);
    req.has_year = true;

    r = create(f->al, &req);
    char landlord_id[ID_LEN];
    snprintf(landlord_id, sizeof landlord_id, "%s", r->id);
    snprintf(subject, sizeof subject, "reservations/%s", r->id);
    expect_event(f, "reservation.created", subject, ACTIVE);
    assert_string_equal(r->landlord, "13 Habitat");
    assert_string_equal(r->territory, "CT1");
    passerelle__reservation__free_unpacked(r, NULL);

    r = step(f->al, "reservation.cancel", landlord_id, NULL, "withdrawn");
    expect_event(f, "reservation.cancelled", subject, CANCELLED);
    passerelle__reservation__free_unpacked(r, NULL);
}

/* --- idempotency ------------------------------------------------------------ */

static void test_retry_is_idempotent(void **state)
{
    fixture_t *f = *state;
    Passerelle__ReservationCreateRequest req = PASSERELLE__RESERVATION_CREATE_REQUEST__INIT;
    req.has_mode = true;
    req.mode = FLOW;
    req.programme = f->programme;
    req.has_year = true;
    req.year = (uint32_t)f->year;
    req.has_units = true;
    req.units = 2;
    Passerelle__Reservation *first = reply_reservation(
        harness_call_keyed(f->al, "reservation.create", &req.base, "flow-retry-1", OK, NULL));
    Passerelle__Reservation *second = reply_reservation(
        harness_call_keyed(f->al, "reservation.create", &req.base, "flow-retry-1", OK, NULL));
    assert_string_equal(first->id, second->id);
    char subject[64];
    snprintf(subject, sizeof subject, "reservations/%s", first->id);
    expect_event(f, "reservation.created", subject, ACTIVE);
    passerelle__reservation__free_unpacked(first, NULL);
    passerelle__reservation__free_unpacked(second, NULL);
}

/* --- listing ---------------------------------------------------------------- */

/* The ids a listing returns, page by page of page_size, into ids. */
static size_t list_all(fixture_t *f, Passerelle__ReservationListRequest *req, unsigned page_size,
                       char ids[][ID_LEN], size_t max)
{
    size_t n = 0;
    char token[ID_LEN] = "";
    req->has_page_size = true;
    req->page_size = page_size;
    for (int pages = 0; pages < 100; pages++) {
        req->page_token = token[0] ? token : NULL;
        Passerelle__Reply *reply =
            harness_call(f->stack.client, "reservation.list", &req->base, OK, NULL);
        Passerelle__ReservationList *list =
            passerelle__reservation_list__unpack(NULL, reply->body.len, reply->body.data);
        passerelle__reply__free_unpacked(reply, NULL);
        assert_non_null(list);
        assert_true(list->n_reservations <= page_size);
        for (size_t i = 0; i < list->n_reservations && n < max; i++)
            snprintf(ids[n++], ID_LEN, "%s", list->reservations[i]->id);
        bool more = list->next_page_token && list->next_page_token[0];
        if (more)
            snprintf(token, sizeof token, "%s", list->next_page_token);
        passerelle__reservation_list__free_unpacked(list, NULL);
        if (!more)
            return n;
    }
    fail_msg("listing never ends");
    return n;
}

static void test_list(void **state)
{
    fixture_t *f = *state;
    char ids[64][ID_LEN], paged[64][ID_LEN];
    Passerelle__ReservationListRequest req = PASSERELLE__RESERVATION_LIST_REQUEST__INIT;
    size_t all = list_all(f, &req, 500, ids, 64);
    /* stock: 2 on the signed unit, 1 social; flow: 1 programme, 1 landlord,
     * 1 retried */
    assert_int_equal(all, 6);
    for (size_t i = 1; i < all; i++)
        assert_true(strcmp(ids[i - 1], ids[i]) < 0); /* creation order */
    assert_int_equal(list_all(f, &req, 1, paged, 64), all);
    for (size_t i = 0; i < all; i++)
        assert_string_equal(paged[i], ids[i]);
    assert_int_equal(list_all(f, &req, 4, paged, 64), all);

    Passerelle__ReservationListRequest by = PASSERELLE__RESERVATION_LIST_REQUEST__INIT;
    by.unit = "ANAH-84089-0101";
    assert_int_equal(list_all(f, &by, 50, paged, 64), 2);
    by.unit = NULL;
    by.programme = f->programme;
    assert_int_equal(list_all(f, &by, 50, paged, 64), 2);
    by.programme = NULL;
    by.territory = "CT6";
    assert_int_equal(list_all(f, &by, 50, paged, 64), 3);
    by.has_mode = true;
    by.mode = STOCK;
    assert_int_equal(list_all(f, &by, 50, paged, 64), 1);
    by.territory = NULL;
    by.has_state = true;
    by.state = CANCELLED;
    assert_int_equal(list_all(f, &by, 50, paged, 64), 1);
    by.mode = FLOW;
    assert_int_equal(list_all(f, &by, 50, paged, 64), 1);
    by.has_mode = false;
    by.state = ACTIVE;
    assert_int_equal(list_all(f, &by, 50, paged, 64), 2); /* the two programme flows */
    by.has_state = false;
    by.has_reservataire = true;
    by.reservataire = PASSERELLE__RESERVATAIRE__RESERVATAIRE_COMMUNE;
    assert_int_equal(list_all(f, &by, 50, paged, 64), 1);
    by.has_reservataire = false;
    by.has_year = true;
    by.year = (uint32_t)f->year;
    assert_int_equal(list_all(f, &by, 50, paged, 64), all);
    by.year = (uint32_t)f->year + 1;
    assert_int_equal(list_all(f, &by, 50, paged, 64), 0);

    Passerelle__ReservationListRequest bad = PASSERELLE__RESERVATION_LIST_REQUEST__INIT;
    bad.territory = "CT9";
    refused(f, f->stack.client, "reservation.list", &bad.base, IA, "territory", NULL);
    bad.territory = NULL;
    bad.page_token = "garbage";
    refused(f, f->stack.client, "reservation.list", &bad.base, IA, "page_token", NULL);
    bad.page_token = NULL;
    bad.unit = "ANAH-NOWHERE";
    refused(f, f->stack.client, "reservation.list", &bad.base, NF, "unit", NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stock_release),
        cmocka_unit_test(test_stock_refusals),
        cmocka_unit_test(test_social_other_reservataire),
        cmocka_unit_test(test_flow),
        cmocka_unit_test(test_retry_is_idempotent),
        cmocka_unit_test(test_list),
        /* Last: its reservation would change the counts of test_list. */
        cmocka_unit_test(test_stock_unit_copies_of_convention),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
