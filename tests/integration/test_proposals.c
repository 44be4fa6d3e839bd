/* Proposals and attributions end to end: a real redis-server and the real
 * reservations binary on run-time ports, called over ZeroMQ with CURVE.
 * Action Logement records candidates (eligible and not), the Métropole
 * records the allocation committee's decisions. Goes through every refusal
 * with its code and field, once-per-vacancy attribution (and a new vacancy
 * opened by reservation.vacancy), the three-candidates warning, FLOW
 * reservations, concurrent attributions of one vacancy (exactly one wins),
 * listing, and the eligibility thresholds as configuration; after every
 * write exactly one event of its type, none after a refusal. */
#include "harness.h"

#include "envelope.pb-c.h"
#include "ids.h"
#include "reservations.pb-c.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#define OK                  PASSERELLE__STATUS__STATUS_OK
#define INVALID_ARGUMENT    PASSERELLE__STATUS__STATUS_INVALID_ARGUMENT
#define NOT_FOUND           PASSERELLE__STATUS__STATUS_NOT_FOUND
#define ALREADY_EXISTS      PASSERELLE__STATUS__STATUS_ALREADY_EXISTS
#define FAILED_PRECONDITION PASSERELLE__STATUS__STATUS_FAILED_PRECONDITION
#define PERMISSION_DENIED   PASSERELLE__STATUS__STATUS_PERMISSION_DENIED

#define PRIVATE      PASSERELLE__EMPLOYER_SECTOR__SECTOR_PRIVATE_NON_AGRICULTURAL
#define AGRICULTURAL PASSERELLE__EMPLOYER_SECTOR__SECTOR_AGRICULTURAL
#define PUBLIC       PASSERELLE__EMPLOYER_SECTOR__SECTOR_PUBLIC

#define PENDING    PASSERELLE__DECISION__DECISION_PENDING
#define ATTRIBUTED PASSERELLE__DECISION__DECISION_ATTRIBUTED
#define RANKED     PASSERELLE__DECISION__DECISION_RANKED
#define REFUSED    PASSERELLE__DECISION__DECISION_REFUSED
#define WITHDRAWN  PASSERELLE__DECISION__DECISION_WITHDRAWN

#define SIREN_OK  "732829320"
#define SIREN_OK2 "552100554"

/* The stack comes first: harness_fixture_setup makes and starts it. The
 * stack's client is operations' (admin): it registers units and reserves. */
typedef struct {
    harness_stack_t stack;
    client_t *al;        /* Action Logement: proposes, withdraws */
    client_t *metropole; /* records the committee's decisions */
    char last_position[64];
    int next_ref;
} fixture_t;

static int setup(void **state)
{
    int rc = harness_fixture_setup(state, sizeof(fixture_t), "proposals", "admin");
    if (rc != 0)
        return rc;
    fixture_t *f = *state;
    f->al = harness_stack_client(&f->stack, "action_logement", HARNESS_STACK_CLIENT_TIMEOUT_MS,
                                 HARNESS_STACK_CLIENT_RETRIES);
    f->metropole = harness_stack_client(&f->stack, "metropole", HARNESS_STACK_CLIENT_TIMEOUT_MS,
                                        HARNESS_STACK_CLIENT_RETRIES);
    return f->al && f->metropole ? 0 : -1;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    if (f) {
        client_destroy(&f->al);
        client_destroy(&f->metropole);
    }
    return harness_fixture_teardown(state);
}

/* ---------------------------------------------------------------------- */
/* Events                                                                 */
/* ---------------------------------------------------------------------- */

/* Moves past whatever the setup of a test appended. */
static void skip_events(fixture_t *f)
{
    harness_events_t events;
    harness_events_read(f->stack.client, f->last_position, &events);
    snprintf(f->last_position, sizeof f->last_position, "%s", events.last_position);
    harness_events_free(&events);
}

/* The events appended since the last look: exactly one of this type on
 * units/<unit_id> carrying proposal_id with this decision, or none when
 * type is NULL. */
static void expect_event(fixture_t *f, const char *type, const char *unit_id,
                         const char *proposal_id, int decision)
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
        assert_string_equal(event->dataschema, "passerelle.Proposal");
        Passerelle__Proposal *p =
            passerelle__proposal__unpack(NULL, event->data.len, event->data.data);
        assert_non_null(p);
        assert_string_equal(p->id, proposal_id);
        assert_int_equal(p->decision, decision);
        passerelle__proposal__free_unpacked(p, NULL);
    }
    snprintf(f->last_position, sizeof f->last_position, "%s", events.last_position);
    harness_events_free(&events);
}

/* ---------------------------------------------------------------------- */
/* Setting the scene: units and reservations                              */
/* ---------------------------------------------------------------------- */

/* A social unit of this landlord in Marseille; its id into id. */
static void register_social(fixture_t *f, const char *landlord, char id[ID_LEN])
{
    char ref[32];
    snprintf(ref, sizeof ref, "HLM-13-%04d", ++f->next_ref);
    Passerelle__UnitRegisterRequest req;
    harness_unit_request(&req, ref);
    req.commune = "13055";
    req.arrondissement = "13203";
    req.stock = PASSERELLE__STOCK__STOCK_SOCIAL;
    req.landlord = (char *)landlord;
    req.has_financing = true;
    req.financing = PASSERELLE__FINANCING__FINANCING_PLUS;
    Passerelle__Reply *reply = harness_call(f->stack.client, "unit.register", &req.base, OK, NULL);
    Passerelle__Unit *unit = passerelle__unit__unpack(NULL, reply->body.len, reply->body.data);
    passerelle__reply__free_unpacked(reply, NULL);
    assert_non_null(unit);
    snprintf(id, ID_LEN, "%s", unit->id);
    passerelle__unit__free_unpacked(unit, NULL);
}

static Passerelle__Reservation *reply_reservation(Passerelle__Reply *reply)
{
    assert_true(reply->has_body);
    Passerelle__Reservation *r =
        passerelle__reservation__unpack(NULL, reply->body.len, reply->body.data);
    passerelle__reply__free_unpacked(reply, NULL);
    assert_non_null(r);
    return r;
}

/* An Action Logement STOCK reservation of the unit; its id into id. */
static void reserve_stock(fixture_t *f, const char *unit_id, char id[ID_LEN])
{
    Passerelle__ReservationCreateRequest req = PASSERELLE__RESERVATION_CREATE_REQUEST__INIT;
    req.has_mode = true;
    req.mode = PASSERELLE__RESERVATION_MODE__MODE_STOCK;
    req.unit = (char *)unit_id;
    req.end_date = "2031-12-31";
    Passerelle__Reservation *r =
        reply_reservation(harness_call(f->stack.client, "reservation.create", &req.base, OK, NULL));
    assert_int_equal(r->vacancy, 1);
    snprintf(id, ID_LEN, "%s", r->id);
    passerelle__reservation__free_unpacked(r, NULL);
}

/* An Action Logement FLOW reservation of `units` released units of a
 * landlord this year. */
static void reserve_flow(fixture_t *f, const char *landlord, uint32_t units, char id[ID_LEN])
{
    Passerelle__ReservationCreateRequest req = PASSERELLE__RESERVATION_CREATE_REQUEST__INIT;
    req.has_mode = true;
    req.mode = PASSERELLE__RESERVATION_MODE__MODE_FLOW;
    req.landlord = (char *)landlord;
    req.territory = "CT1";
    req.has_year = true;
    req.year = (uint32_t)date_today_paris().year;
    req.has_units = true;
    req.units = units;
    Passerelle__Reservation *r =
        reply_reservation(harness_call(f->stack.client, "reservation.create", &req.base, OK, NULL));
    snprintf(id, ID_LEN, "%s", r->id);
    passerelle__reservation__free_unpacked(r, NULL);
}

static Passerelle__Reservation *reservation_get(fixture_t *f, const char *id)
{
    Passerelle__ReservationGetRequest req = PASSERELLE__RESERVATION_GET_REQUEST__INIT;
    req.id = (char *)id;
    return reply_reservation(harness_call(f->stack.client, "reservation.get", &req.base, OK, NULL));
}

/* ---------------------------------------------------------------------- */
/* Proposals and decisions                                                */
/* ---------------------------------------------------------------------- */

/* A request proposing candidate_ref for the reservation (or unit); the
 * employer is eligible unless the test changes it. */
static Passerelle__ProposalRecordRequest candidate(const char *reservation, const char *ref)
{
    Passerelle__ProposalRecordRequest req = PASSERELLE__PROPOSAL_RECORD_REQUEST__INIT;
    req.reservation = (char *)reservation;
    req.candidate_ref = (char *)ref;
    req.employer_siren = SIREN_OK;
    req.has_employer_sector = true;
    req.employer_sector = PRIVATE;
    req.has_employer_headcount = true;
    req.employer_headcount = 250;
    return req;
}

static Passerelle__Proposal *reply_proposal(Passerelle__Reply *reply)
{
    assert_true(reply->has_body);
    Passerelle__Proposal *p = passerelle__proposal__unpack(NULL, reply->body.len, reply->body.data);
    passerelle__reply__free_unpacked(reply, NULL);
    assert_non_null(p);
    return p;
}

/* Records the proposal as Action Logement and checks its event. */
static Passerelle__Proposal *record(fixture_t *f, const Passerelle__ProposalRecordRequest *req)
{
    Passerelle__Proposal *p =
        reply_proposal(harness_call(f->al, "proposal.record", &req->base, OK, NULL));
    assert_true(id_valid('D', p->id));
    assert_int_equal(p->decision, PENDING);
    assert_int_equal(p->version, 1);
    expect_event(f, "proposal.recorded", p->unit_id, p->id, PENDING);
    return p;
}

/* Records and keeps only the id. */
static void record_id(fixture_t *f, const Passerelle__ProposalRecordRequest *req, char id[ID_LEN])
{
    Passerelle__Proposal *p = record(f, req);
    snprintf(id, ID_LEN, "%s", p->id);
    passerelle__proposal__free_unpacked(p, NULL);
}

/* A refusal with its code, field and a word of its message; no event. */
static void record_refused(fixture_t *f, client_t *client,
                           const Passerelle__ProposalRecordRequest *req, int status,
                           const char *field, const char *needle)
{
    Passerelle__Reply *reply = harness_call(client, "proposal.record", &req->base, status, field);
    if (needle && !strstr(reply->message, needle))
        fail_msg("message '%s' does not say '%s'", reply->message, needle);
    passerelle__reply__free_unpacked(reply, NULL);
    expect_event(f, NULL, NULL, NULL, 0);
}

static Passerelle__AttributionDecideRequest decision(const char *proposal, int d, uint32_t rank)
{
    Passerelle__AttributionDecideRequest req = PASSERELLE__ATTRIBUTION_DECIDE_REQUEST__INIT;
    req.proposal = (char *)proposal;
    req.has_decision = true;
    req.decision = d;
    req.has_rank = rank != 0;
    req.rank = rank;
    return req;
}

/* A decision that must pass, with its event; the caller frees the reply's
 * proposal. */
static Passerelle__Proposal *decide(fixture_t *f, client_t *client, const char *proposal, int d,
                                    uint32_t rank)
{
    Passerelle__AttributionDecideRequest req = decision(proposal, d, rank);
    Passerelle__Proposal *p =
        reply_proposal(harness_call(client, "attribution.decide", &req.base, OK, NULL));
    assert_string_equal(p->id, proposal);
    assert_int_equal(p->decision, d);
    assert_non_null(p->decided_on);
    expect_event(f, "attribution.decided", p->unit_id, p->id, d);
    return p;
}

static void decide_ok(fixture_t *f, client_t *client, const char *proposal, int d, uint32_t rank)
{
    passerelle__proposal__free_unpacked(decide(f, client, proposal, d, rank), NULL);
}

static void decide_refused(fixture_t *f, client_t *client, const char *proposal, int d,
                           uint32_t rank, int status, const char *field, const char *needle)
{
    Passerelle__AttributionDecideRequest req = decision(proposal, d, rank);
    Passerelle__Reply *reply = harness_call(client, "attribution.decide", &req.base, status, field);
    if (needle && !strstr(reply->message, needle))
        fail_msg("message '%s' does not say '%s'", reply->message, needle);
    passerelle__reply__free_unpacked(reply, NULL);
    expect_event(f, NULL, NULL, NULL, 0);
}

/* ====================================================================== */
/* Tests                                                                  */
/* ====================================================================== */

/* Eligible and ineligible candidates are both recorded; the reason names
 * the rule and the numbers. */
static void test_record(void **state)
{
    fixture_t *f = *state;
    char unit[ID_LEN], reservation[ID_LEN];
    register_social(f, "13 Habitat", unit);
    reserve_stock(f, unit, reservation);
    skip_events(f);

    Passerelle__ProposalRecordRequest req = candidate(reservation, "AL-2026-0001");
    Passerelle__PriorityPublic publics[] = {PASSERELLE__PRIORITY_PUBLIC__PUBLIC_UNDER_30,
                                            PASSERELLE__PRIORITY_PUBLIC__PUBLIC_MOBILITY};
    req.publics = publics;
    req.n_publics = 2;
    Passerelle__Proposal *p = record(f, &req);
    assert_string_equal(p->reservation_id, reservation);
    assert_string_equal(p->unit_id, unit);
    assert_int_equal(p->vacancy, 1);
    assert_true(p->eligible);
    assert_null(p->ineligibility_reason);
    assert_int_equal(p->n_publics, 2);
    assert_int_equal(p->publics[1], PASSERELLE__PRIORITY_PUBLIC__PUBLIC_MOBILITY);
    assert_string_equal(p->employer_siren, SIREN_OK);

    /* proposal.get answers the same record, to a reader. */
    Passerelle__ProposalGetRequest get = PASSERELLE__PROPOSAL_GET_REQUEST__INIT;
    get.id = p->id;
    Passerelle__Proposal *again =
        reply_proposal(harness_call(f->metropole, "proposal.get", &get.base, OK, NULL));
    assert_string_equal(again->candidate_ref, "AL-2026-0001");
    assert_int_equal(again->n_publics, 2);
    passerelle__proposal__free_unpacked(again, NULL);
    passerelle__proposal__free_unpacked(p, NULL);

    /* Ineligible: recorded, OK, with the reason. */
    struct {
        const char *ref;
        int sector;
        uint32_t headcount;
        const char *reason;
    } refused[] = {
        {"AL-2026-0002", PRIVATE, 8,
         "private non-agricultural employer of 8 employees: the convention requires 10 or more"},
        {"AL-2026-0003", AGRICULTURAL, 49,
         "agricultural employer of 49 employees: the convention requires 50 or more"},
        {"AL-2026-0004", PUBLIC, 3000,
         "public-sector employer: the convention covers private employers only"},
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        req = candidate(reservation, refused[i].ref);
        req.employer_sector = refused[i].sector;
        req.employer_headcount = refused[i].headcount;
        p = record(f, &req);
        assert_false(p->eligible);
        assert_string_equal(p->ineligibility_reason, refused[i].reason);
        passerelle__proposal__free_unpacked(p, NULL);
    }
    /* The edges are eligible. */
    req = candidate(reservation, "AL-2026-0005");
    req.employer_headcount = 10;
    p = record(f, &req);
    assert_true(p->eligible);
    passerelle__proposal__free_unpacked(p, NULL);
    req = candidate(reservation, "AL-2026-0006");
    req.employer_sector = AGRICULTURAL;
    req.employer_headcount = 50;
    req.employer_siren = SIREN_OK2;
    p = record(f, &req);
    assert_true(p->eligible);
    passerelle__proposal__free_unpacked(p, NULL);

    /* The reservation may be named by its unit (id or reference). */
    req = candidate(unit, "AL-2026-0007");
    p = record(f, &req);
    assert_string_equal(p->reservation_id, reservation);
    passerelle__proposal__free_unpacked(p, NULL);
}

/* Every refusal of proposal.record, with its code and field, and no
 * event. */
static void test_record_refusals(void **state)
{
    fixture_t *f = *state;
    char unit[ID_LEN], other_unit[ID_LEN], reservation[ID_LEN];
    register_social(f, "13 Habitat", unit);
    register_social(f, "13 Habitat", other_unit);
    reserve_stock(f, unit, reservation);
    skip_events(f);

    Passerelle__ProposalRecordRequest req = candidate(NULL, "AL-R-1");
    record_refused(f, f->al, &req, INVALID_ARGUMENT, "reservation", "required");

    req = candidate(reservation, "   ");
    record_refused(f, f->al, &req, INVALID_ARGUMENT, "candidate_ref", "spaces");
    req.candidate_ref = "AL\tR";
    record_refused(f, f->al, &req, INVALID_ARGUMENT, "candidate_ref", "control");
    req.candidate_ref = NULL;
    record_refused(f, f->al, &req, INVALID_ARGUMENT, "candidate_ref", "never a name");

    req = candidate(reservation, "AL-R-2");
    req.employer_siren = "732829321";
    record_refused(f, f->al, &req, INVALID_ARGUMENT, "employer_siren", "fails its Luhn check");
    req.employer_siren = "7328293";
    record_refused(f, f->al, &req, INVALID_ARGUMENT, "employer_siren", "9 digits");

    req = candidate(reservation, "AL-R-3");
    req.has_employer_sector = false;
    record_refused(f, f->al, &req, INVALID_ARGUMENT, "employer_sector", "required");
    req = candidate(reservation, "AL-R-3");
    req.employer_headcount = 0;
    record_refused(f, f->al, &req, INVALID_ARGUMENT, "employer_headcount", "1 or more");

    req = candidate(reservation, "AL-R-4");
    Passerelle__PriorityPublic twice[] = {PASSERELLE__PRIORITY_PUBLIC__PUBLIC_SEASONAL,
                                          PASSERELLE__PRIORITY_PUBLIC__PUBLIC_SEASONAL};
    req.publics = twice;
    req.n_publics = 2;
    record_refused(f, f->al, &req, INVALID_ARGUMENT, "publics", "twice");

    /* What the reservation field names must exist and be reserved. */
    char unknown[ID_LEN];
    id_new('R', unknown);
    req = candidate(unknown, "AL-R-5");
    record_refused(f, f->al, &req, NOT_FOUND, "reservation", unknown);
    req = candidate("NO-SUCH-REF", "AL-R-5");
    record_refused(f, f->al, &req, NOT_FOUND, "reservation", "NO-SUCH-REF");
    req = candidate(other_unit, "AL-R-5");
    record_refused(f, f->al, &req, FAILED_PRECONDITION, "reservation", "no active STOCK");

    /* A STOCK proposal is for the reserved unit. */
    req = candidate(reservation, "AL-R-6");
    req.unit = other_unit;
    record_refused(f, f->al, &req, INVALID_ARGUMENT, "unit", "not the unit of reservation");

    /* The same candidate twice for one vacancy counts once. */
    req = candidate(reservation, "AL-R-7");
    char first[ID_LEN];
    record_id(f, &req, first);
    record_refused(f, f->al, &req, ALREADY_EXISTS, "candidate_ref", first);

    /* Only Action Logement (or operations) proposes. */
    req = candidate(reservation, "AL-R-8");
    record_refused(f, f->metropole, &req, PERMISSION_DENIED, NULL, NULL);

    /* A released reservation takes no more candidates. */
    Passerelle__ReservationStepRequest release = PASSERELLE__RESERVATION_STEP_REQUEST__INIT;
    release.id = reservation;
    passerelle__reply__free_unpacked(
        harness_call(f->stack.client, "reservation.release", &release.base, OK, NULL), NULL);
    skip_events(f);
    req = candidate(reservation, "AL-R-9");
    record_refused(f, f->al, &req, FAILED_PRECONDITION, "reservation", "RELEASED");
}

/* The decisions on one vacancy: ranking, permissions, transitions,
 * ineligibility, attribution once, and idempotent retries. */
static void test_decisions(void **state)
{
    fixture_t *f = *state;
    char unit[ID_LEN], reservation[ID_LEN];
    register_social(f, "Logirem", unit);
    reserve_stock(f, unit, reservation);
    skip_events(f);

    char a[ID_LEN], b[ID_LEN], c[ID_LEN], d[ID_LEN], late[ID_LEN];
    Passerelle__ProposalRecordRequest req = candidate(reservation, "AL-D-A");
    record_id(f, &req, a);
    req.candidate_ref = "AL-D-B";
    record_id(f, &req, b);
    req.candidate_ref = "AL-D-C";
    record_id(f, &req, c);
    req.candidate_ref = "AL-D-D";
    req.employer_headcount = 4; /* ineligible */
    record_id(f, &req, d);

    /* Requests that are wrong on their own. */
    decide_refused(f, f->metropole, b, RANKED, 0, INVALID_ARGUMENT, "rank", "1 to 3");
    decide_refused(f, f->metropole, b, RANKED, 4, INVALID_ARGUMENT, "rank", "1 to 3");
    decide_refused(f, f->metropole, b, REFUSED, 2, INVALID_ARGUMENT, "rank", "RANKED only");
    decide_refused(f, f->metropole, b, PENDING, 0, INVALID_ARGUMENT, "decision", "required");
    decide_refused(f, f->metropole, "not-an-id", REFUSED, 0, INVALID_ARGUMENT, "proposal",
                   "not a proposal id");
    char unknown[ID_LEN];
    id_new('D', unknown);
    decide_refused(f, f->metropole, unknown, REFUSED, 0, NOT_FOUND, "proposal", unknown);
    /* Action Logement only withdraws; partners decide nothing. */
    decide_refused(f, f->al, a, ATTRIBUTED, 0, PERMISSION_DENIED, "decision", "only withdraw");
    decide_refused(f, f->al, a, RANKED, 1, PERMISSION_DENIED, "decision", "only withdraw");
    client_t *partner = harness_stack_client(&f->stack, "partner", HARNESS_STACK_CLIENT_TIMEOUT_MS,
                                             HARNESS_STACK_CLIENT_RETRIES);
    assert_non_null(partner);
    decide_refused(f, partner, a, REFUSED, 0, PERMISSION_DENIED, NULL, NULL);
    client_destroy(&partner);

    /* An ineligible candidate is neither ranked nor attributed. */
    decide_refused(f, f->metropole, d, ATTRIBUTED, 0, FAILED_PRECONDITION, "proposal",
                   "requires 10 or more");
    decide_refused(f, f->metropole, d, RANKED, 1, FAILED_PRECONDITION, "proposal", "not eligible");
    decide_ok(f, f->metropole, d, REFUSED, 0);

    /* Ranked candidates: once ranked, not ranked again. */
    Passerelle__Proposal *p = decide(f, f->metropole, b, RANKED, 1);
    assert_int_equal(p->rank, 1);
    assert_int_equal(p->version, 2);
    passerelle__proposal__free_unpacked(p, NULL);
    decide_refused(f, f->metropole, b, RANKED, 2, FAILED_PRECONDITION, "proposal", "is RANKED");
    decide_ok(f, f->metropole, c, RANKED, 2);

    /* The committee attributes A, with three eligible candidates examined
     * (A, B, C; D was not eligible): no warning. The retry of the same
     * request answers the same and writes nothing. */
    Passerelle__AttributionDecideRequest attribute = decision(a, ATTRIBUTED, 0);
    attribute.date = "2026-03-02";
    attribute.reason = "commission d'attribution";
    Passerelle__Reply *first = harness_call_keyed(f->metropole, "attribution.decide",
                                                  &attribute.base, "attribute-a-once", OK, NULL);
    Passerelle__Reply *retry = harness_call_keyed(f->metropole, "attribution.decide",
                                                  &attribute.base, "attribute-a-once", OK, NULL);
    assert_int_equal(first->body.len, retry->body.len);
    assert_memory_equal(first->body.data, retry->body.data, first->body.len);
    passerelle__reply__free_unpacked(retry, NULL);
    p = reply_proposal(first);
    assert_int_equal(p->decision, ATTRIBUTED);
    assert_string_equal(p->decided_on, "2026-03-02");
    assert_string_equal(p->decision_reason, "commission d'attribution");
    assert_int_equal(p->n_warnings, 0);
    passerelle__proposal__free_unpacked(p, NULL);
    expect_event(f, "attribution.decided", unit, a, ATTRIBUTED);

    Passerelle__Reservation *r = reservation_get(f, reservation);
    assert_int_equal(r->attributed, 1);
    assert_int_equal(r->vacancy, 1);
    passerelle__reservation__free_unpacked(r, NULL);

    /* Once per vacancy: the ranked B cannot be attributed too; the reply
     * names who holds the vacancy. */
    decide_refused(f, f->metropole, b, ATTRIBUTED, 0, FAILED_PRECONDITION, "proposal", a);
    /* A decided proposal stays decided. */
    decide_refused(f, f->metropole, a, WITHDRAWN, 0, FAILED_PRECONDITION, "proposal",
                   "is ATTRIBUTED");
    decide_refused(f, f->metropole, d, WITHDRAWN, 0, FAILED_PRECONDITION, "proposal", "is REFUSED");
    /* The ranked ones are then refused, or withdrawn by Action Logement. */
    p = decide(f, f->metropole, b, REFUSED, 0);
    assert_int_equal(p->rank, 1); /* where the committee had placed B */
    passerelle__proposal__free_unpacked(p, NULL);
    decide_ok(f, f->al, c, WITHDRAWN, 0);
    decide_refused(f, f->al, c, WITHDRAWN, 0, FAILED_PRECONDITION, "proposal", "is WITHDRAWN");

    /* A candidate recorded after the attribution cannot take it. */
    req = candidate(reservation, "AL-D-E");
    record_id(f, &req, late);
    decide_refused(f, f->metropole, late, ATTRIBUTED, 0, FAILED_PRECONDITION, "proposal", a);
}

/* reservation.vacancy opens a new vacancy: the old candidates stay with the
 * old one, the new are attributed afresh, and an attribution with fewer
 * than three candidates examined carries the warning. */
static void test_new_vacancy_and_warning(void **state)
{
    fixture_t *f = *state;
    char unit[ID_LEN], reservation[ID_LEN];
    register_social(f, "13 Habitat", unit);
    reserve_stock(f, unit, reservation);
    skip_events(f);

    char first[ID_LEN], old_pending[ID_LEN];
    Passerelle__ProposalRecordRequest req = candidate(reservation, "AL-V-1");
    record_id(f, &req, first);
    req.candidate_ref = "AL-V-2";
    record_id(f, &req, old_pending);
    /* Only one candidate for the first vacancy is still one: A and one
     * more eligible make two. */
    {
        Passerelle__Proposal *p = decide(f, f->metropole, first, ATTRIBUTED, 0);
        assert_int_equal(p->n_warnings, 1);
        assert_string_equal(p->warnings[0], "only 2 candidates examined for this vacancy; the "
                                            "convention expects at least three");
        passerelle__proposal__free_unpacked(p, NULL);
    }

    Passerelle__ReservationStepRequest vacancy = PASSERELLE__RESERVATION_STEP_REQUEST__INIT;
    vacancy.id = reservation;
    Passerelle__Reservation *r = reply_reservation(
        harness_call(f->stack.client, "reservation.vacancy", &vacancy.base, OK, NULL));
    assert_int_equal(r->vacancy, 2);
    assert_int_equal(r->attributed, 0);
    passerelle__reservation__free_unpacked(r, NULL);
    skip_events(f);

    /* The pending candidate of vacancy 1 is of a past vacancy. */
    decide_refused(f, f->metropole, old_pending, ATTRIBUTED, 0, FAILED_PRECONDITION, "proposal",
                   "now at vacancy 2");
    decide_ok(f, f->al, old_pending, WITHDRAWN, 0);

    /* Vacancy 2: the same candidate may be proposed again; one eligible,
     * one not, one withdrawn: one candidate examined. */
    char again[ID_LEN], ineligible[ID_LEN], withdrawn[ID_LEN];
    req = candidate(reservation, "AL-V-1");
    Passerelle__Proposal *p = record(f, &req);
    assert_int_equal(p->vacancy, 2);
    snprintf(again, sizeof again, "%s", p->id);
    passerelle__proposal__free_unpacked(p, NULL);
    req = candidate(reservation, "AL-V-3");
    req.employer_sector = PUBLIC;
    record_id(f, &req, ineligible);
    req = candidate(reservation, "AL-V-4");
    record_id(f, &req, withdrawn);
    decide_ok(f, f->al, withdrawn, WITHDRAWN, 0);

    p = decide(f, f->metropole, again, ATTRIBUTED, 0);
    assert_int_equal(p->n_warnings, 1);
    assert_string_equal(p->warnings[0], "only 1 candidate examined for this vacancy; the "
                                        "convention expects at least three");
    passerelle__proposal__free_unpacked(p, NULL);
    /* The warning is kept with the record. */
    Passerelle__ProposalGetRequest get = PASSERELLE__PROPOSAL_GET_REQUEST__INIT;
    get.id = again;
    p = reply_proposal(harness_call(f->metropole, "proposal.get", &get.base, OK, NULL));
    assert_int_equal(p->n_warnings, 1);
    passerelle__proposal__free_unpacked(p, NULL);

    /* Listing: the current vacancy by default, an earlier one on demand,
     * by decision, page by page. */
    Passerelle__ProposalListRequest list = PASSERELLE__PROPOSAL_LIST_REQUEST__INIT;
    list.reservation = reservation;
    Passerelle__Reply *reply = harness_call(f->metropole, "proposal.list", &list.base, OK, NULL);
    Passerelle__ProposalList *l =
        passerelle__proposal_list__unpack(NULL, reply->body.len, reply->body.data);
    passerelle__reply__free_unpacked(reply, NULL);
    assert_non_null(l);
    assert_int_equal(l->n_proposals, 3);
    assert_string_equal(l->proposals[0]->id, again);
    assert_string_equal(l->proposals[1]->id, ineligible);
    assert_string_equal(l->proposals[2]->id, withdrawn);
    passerelle__proposal_list__free_unpacked(l, NULL);

    list.has_vacancy = true;
    list.vacancy = 1;
    list.has_decision = true;
    list.decision = WITHDRAWN;
    reply = harness_call(f->metropole, "proposal.list", &list.base, OK, NULL);
    l = passerelle__proposal_list__unpack(NULL, reply->body.len, reply->body.data);
    passerelle__reply__free_unpacked(reply, NULL);
    assert_non_null(l);
    assert_int_equal(l->n_proposals, 1);
    assert_string_equal(l->proposals[0]->id, old_pending);
    passerelle__proposal_list__free_unpacked(l, NULL);

    /* The unit names the reservation too; pages of one. */
    list = (Passerelle__ProposalListRequest)PASSERELLE__PROPOSAL_LIST_REQUEST__INIT;
    list.reservation = unit;
    list.has_page_size = true;
    list.page_size = 1;
    char token[ID_LEN] = "";
    const char *expected[] = {again, ineligible, withdrawn};
    size_t seen = 0;
    do {
        list.page_token = token[0] ? token : NULL;
        reply = harness_call(f->metropole, "proposal.list", &list.base, OK, NULL);
        l = passerelle__proposal_list__unpack(NULL, reply->body.len, reply->body.data);
        passerelle__reply__free_unpacked(reply, NULL);
        assert_non_null(l);
        assert_int_equal(l->n_proposals, 1);
        assert_true(seen < 3);
        assert_string_equal(l->proposals[0]->id, expected[seen++]);
        snprintf(token, sizeof token, "%s", l->next_page_token ? l->next_page_token : "");
        passerelle__proposal_list__free_unpacked(l, NULL);
    } while (token[0]);
    assert_int_equal(seen, 3);

    /* Across reservations, by decision. */
    list = (Passerelle__ProposalListRequest)PASSERELLE__PROPOSAL_LIST_REQUEST__INIT;
    list.has_decision = true;
    list.decision = ATTRIBUTED;
    list.has_page_size = true;
    list.page_size = 500;
    reply = harness_call(f->metropole, "proposal.list", &list.base, OK, NULL);
    l = passerelle__proposal_list__unpack(NULL, reply->body.len, reply->body.data);
    passerelle__reply__free_unpacked(reply, NULL);
    assert_non_null(l);
    bool found_first = false, found_again = false;
    for (size_t i = 0; i < l->n_proposals; i++) {
        assert_int_equal(l->proposals[i]->decision, ATTRIBUTED);
        found_first |= strcmp(l->proposals[i]->id, first) == 0;
        found_again |= strcmp(l->proposals[i]->id, again) == 0;
    }
    assert_true(found_first && found_again);
    passerelle__proposal_list__free_unpacked(l, NULL);

    /* Refusals of the listing. */
    list = (Passerelle__ProposalListRequest)PASSERELLE__PROPOSAL_LIST_REQUEST__INIT;
    list.has_vacancy = true;
    list.vacancy = 1;
    harness_call_refused(f->metropole, "proposal.list", &list.base, INVALID_ARGUMENT, "vacancy");
    list = (Passerelle__ProposalListRequest)PASSERELLE__PROPOSAL_LIST_REQUEST__INIT;
    list.page_token = "garbage";
    harness_call_refused(f->metropole, "proposal.list", &list.base, INVALID_ARGUMENT, "page_token");
    Passerelle__ProposalGetRequest bad = PASSERELLE__PROPOSAL_GET_REQUEST__INIT;
    harness_call_refused(f->metropole, "proposal.get", &bad.base, INVALID_ARGUMENT, "id");
    char unknown[ID_LEN];
    id_new('D', unknown);
    bad.id = unknown;
    harness_call_refused(f->metropole, "proposal.get", &bad.base, NOT_FOUND, "id");
}

/* FLOW: each proposal names a released unit of the flow; attributions up
 * to the flow's units, each unit once. */
static void test_flow(void **state)
{
    fixture_t *f = *state;
    char unit1[ID_LEN], unit2[ID_LEN], stranger[ID_LEN], reservation[ID_LEN];
    register_social(f, "Erilia", unit1);
    register_social(f, "Erilia", unit2);
    register_social(f, "Unicil", stranger);
    reserve_flow(f, "Erilia", 1, reservation);
    skip_events(f);

    Passerelle__ProposalRecordRequest req = candidate(reservation, "AL-F-1");
    record_refused(f, f->al, &req, INVALID_ARGUMENT, "unit", "released unit");
    req.unit = stranger;
    record_refused(f, f->al, &req, FAILED_PRECONDITION, "unit", "landlord");

    char p1[ID_LEN], p1b[ID_LEN], p2[ID_LEN];
    req.unit = unit1;
    Passerelle__Proposal *p = record(f, &req);
    assert_string_equal(p->unit_id, unit1);
    snprintf(p1, sizeof p1, "%s", p->id);
    passerelle__proposal__free_unpacked(p, NULL);
    req.candidate_ref = "AL-F-2";
    record_id(f, &req, p1b);
    req.unit = unit2;
    req.candidate_ref = "AL-F-1"; /* the same candidate, for another unit */
    record_id(f, &req, p2);

    decide_ok(f, f->metropole, p1, ATTRIBUTED, 0);
    decide_refused(f, f->metropole, p1b, ATTRIBUTED, 0, FAILED_PRECONDITION, "proposal",
                   "attributed 1 of its 1 units");
    decide_refused(f, f->metropole, p2, ATTRIBUTED, 0, FAILED_PRECONDITION, "proposal",
                   "attributed 1 of its 1 units");
    Passerelle__Reservation *r = reservation_get(f, reservation);
    assert_int_equal(r->attributed, 1);
    passerelle__reservation__free_unpacked(r, NULL);
}

/* Many committees racing to attribute one vacancy, each its own candidate:
 * exactly one wins, the others are told which proposal holds it. */
#define RACERS 8

typedef struct {
    const char *endpoint;
    const char *keys;
    pthread_barrier_t *barrier;
    const char *proposal;
    int status;
    char message[512];
} racer_t;

static void *race(void *arg)
{
    racer_t *racer = arg;
    client_t *client = harness_client(racer->endpoint, racer->keys, "metropole", 10000, 2);
    racer->status = -1;
    pthread_barrier_wait(racer->barrier);
    if (!client)
        return NULL;
    Passerelle__AttributionDecideRequest req = decision(racer->proposal, ATTRIBUTED, 0);
    Passerelle__Reply *reply = NULL;
    if (client_call(client, "attribution.decide", &req.base, NULL, &reply) == 0) {
        racer->status = reply->status;
        snprintf(racer->message, sizeof racer->message, "%s", reply->message);
        passerelle__reply__free_unpacked(reply, NULL);
    }
    client_destroy(&client);
    return NULL;
}

static void test_concurrent_attributions(void **state)
{
    fixture_t *f = *state;
    char unit[ID_LEN], reservation[ID_LEN], ids[RACERS][ID_LEN];
    register_social(f, "13 Habitat", unit);
    reserve_stock(f, unit, reservation);
    skip_events(f);
    for (int i = 0; i < RACERS; i++) {
        char ref[32];
        snprintf(ref, sizeof ref, "AL-RACE-%d", i);
        Passerelle__ProposalRecordRequest req = candidate(reservation, ref);
        record_id(f, &req, ids[i]);
    }

    /* Half the committees on a second replica: the race is decided in
     * Redis, within one service's batch as across services. */
    harness_service_t replica;
    assert_int_equal(harness_stack_service_start(&f->stack, &replica, "replica", NULL), 0);
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, RACERS);
    racer_t racers[RACERS];
    pthread_t threads[RACERS];
    for (int i = 0; i < RACERS; i++) {
        racers[i] = (racer_t){.endpoint = i % 2 ? replica.endpoint : f->stack.service.endpoint,
                              .keys = f->stack.keys,
                              .barrier = &barrier,
                              .proposal = ids[i]};
        assert_int_equal(pthread_create(&threads[i], NULL, race, &racers[i]), 0);
    }
    for (int i = 0; i < RACERS; i++)
        pthread_join(threads[i], NULL);
    pthread_barrier_destroy(&barrier);
    assert_true(harness_service_stop_clean(&replica));

    int winner = -1;
    for (int i = 0; i < RACERS; i++) {
        if (racers[i].status == OK) {
            assert_int_equal(winner, -1);
            winner = i;
        }
    }
    assert_int_not_equal(winner, -1);
    for (int i = 0; i < RACERS; i++) {
        if (i == winner)
            continue;
        if (racers[i].status != FAILED_PRECONDITION || !strstr(racers[i].message, ids[winner]))
            fail_msg("racer %d: status %d, '%s'", i, racers[i].status, racers[i].message);
    }
    /* One attribution, one event. */
    expect_event(f, "attribution.decided", unit, ids[winner], ATTRIBUTED);
    Passerelle__Reservation *r = reservation_get(f, reservation);
    assert_int_equal(r->attributed, 1);
    passerelle__reservation__free_unpacked(r, NULL);
}

/* The thresholds are configuration: another service with other values
 * judges by them, and a value out of range stops the start. */
static void test_thresholds_configuration(void **state)
{
    fixture_t *f = *state;
    char unit[ID_LEN], reservation[ID_LEN];
    register_social(f, "13 Habitat", unit);
    reserve_stock(f, unit, reservation);
    skip_events(f);

    char *env[] = {"PASSERELLE_ELIGIBILITY_MIN_HEADCOUNT_PRIVATE=20",
                   "PASSERELLE_ELIGIBILITY_MIN_HEADCOUNT_AGRICULTURAL=30", NULL};
    harness_service_t other;
    assert_int_equal(harness_stack_service_start(&f->stack, &other, "thresholds", env), 0);
    client_t *al = harness_client(other.endpoint, f->stack.keys, "action_logement",
                                  HARNESS_STACK_CLIENT_TIMEOUT_MS, HARNESS_STACK_CLIENT_RETRIES);
    assert_non_null(al);
    Passerelle__ProposalRecordRequest req = candidate(reservation, "AL-T-1");
    req.employer_headcount = 19;
    Passerelle__Proposal *p =
        reply_proposal(harness_call(al, "proposal.record", &req.base, OK, NULL));
    assert_false(p->eligible);
    assert_string_equal(p->ineligibility_reason, "private non-agricultural employer of 19 "
                                                 "employees: the convention requires 20 or more");
    passerelle__proposal__free_unpacked(p, NULL);
    req = candidate(reservation, "AL-T-2");
    req.employer_sector = AGRICULTURAL;
    req.employer_headcount = 30;
    p = reply_proposal(harness_call(al, "proposal.record", &req.base, OK, NULL));
    assert_true(p->eligible);
    passerelle__proposal__free_unpacked(p, NULL);
    client_destroy(&al);
    assert_true(harness_service_stop_clean(&other));

    char *bad[][2] = {{"PASSERELLE_ELIGIBILITY_MIN_HEADCOUNT_PRIVATE=0", NULL},
                      {"PASSERELLE_ELIGIBILITY_MIN_HEADCOUNT_AGRICULTURAL=fifty", NULL}};
    for (size_t i = 0; i < 2; i++) {
        harness_service_t refused;
        assert_int_not_equal(harness_service_start(&refused, "reservations", f->stack.dir, bad[i]),
                             0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_record),
        cmocka_unit_test(test_record_refusals),
        cmocka_unit_test(test_decisions),
        cmocka_unit_test(test_new_vacancy_and_warning),
        cmocka_unit_test(test_flow),
        cmocka_unit_test(test_concurrent_attributions),
        cmocka_unit_test(test_thresholds_configuration),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
