/* The figures end to end: a small fixed history written through the real
 * reservations service (units, ANAH conventions with stated dates, a
 * programme and its objective, reservations created, released and
 * cancelled, proposals and decisions) and the real indicators service
 * (economic projects, demand figures), projected by the indicators
 * service's own projectors, then read back by a PARTNER over ZeroMQ: every
 * indicator of the catalog as a series, per territory, commune and filter,
 * and the snapshot, against figures computed by hand below.
 *
 * Events are counted at the time they are written (today, Europe/Paris),
 * except what states its period (objectives, reservations' years,
 * projects' horizons, demand figures): so the expectations are for this
 * year Y. The conventions' stated dates (last year) give known delays from
 * envisaged to signed: 10, 30 and 60 days. */
#include "harness.h"

#include "catalog.h"
#include "ids.h"
#include "indicators.pb-c.h"
#include "periods.h"
#include "reservations.pb-c.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#define OK                PASSERELLE__STATUS__STATUS_OK
#define INVALID_ARGUMENT  PASSERELLE__STATUS__STATUS_INVALID_ARGUMENT
#define PERMISSION_DENIED PASSERELLE__STATUS__STATUS_PERMISSION_DENIED

/* How long the projectors may take to count the history. */
#define CATCH_UP_MS 30000

#define SIREN_A "732829320"
#define SIREN_B "552100554"

/* The indicators fixture comes first (harness_indicators_setup): Redis,
 * the reservations service and its client (operations', which may write
 * everything), the indicators service, its ADMIN client (writes the need
 * side) and its PARTNER client (reads the figures). */
typedef struct {
    harness_indicators_t ind;
    int year; /* Y: this year in Europe/Paris when the history was written */
    char today[DATE_LEN];
    bool same_day; /* the history was written within one day */
    bool written;  /* and all of it was */
    char programme[ID_LEN];
} fixture_t;

static int setup(void **state)
{
    return harness_indicators_setup(state, sizeof(fixture_t), "ind-queries", NULL);
}

/* ====================================================================== */
/* Writing the history                                                    */
/* ====================================================================== */

static void register_unit(fixture_t *f, const char *ref, const char *commune, bool social,
                          bool in_qpv, char id[ID_LEN])
{
    Passerelle__UnitRegisterRequest req;
    harness_unit_request(&req, ref);
    req.commune = (char *)commune;
    if (social)
        harness_unit_social(&req, "Logirem");
    req.has_in_qpv = true;
    req.in_qpv = in_qpv;
    harness_unit_register(f->ind.stack.client, &req, id);
}

static void envisage(fixture_t *f, const char *unit, int level, const char *on)
{
    Passerelle__ConventionEnvisageRequest req = PASSERELLE__CONVENTION_ENVISAGE_REQUEST__INIT;
    req.unit = (char *)unit;
    req.has_level = true;
    req.level = level;
    req.envisaged_on = (char *)on;
    harness_call_ok(f->ind.stack.client, "convention.envisage", &req.base, NULL);
}

/* A later step of the unit's convention (convention.sign, ...). */
static void step(fixture_t *f, const char *type, const char *unit, const char *on,
                 const char *reason)
{
    Passerelle__ConventionStepRequest req = PASSERELLE__CONVENTION_STEP_REQUEST__INIT;
    req.unit = (char *)unit;
    req.date = (char *)on;
    req.reason = (char *)reason;
    harness_call_ok(f->ind.stack.client, type, &req.base, NULL);
}

/* A date of last year. */
static const char *last_year(const fixture_t *f, const char *month_day, char out[DATE_LEN])
{
    snprintf(out, DATE_LEN, "%04u-%.5s", (unsigned)(f->year - 1) % 10000u, month_day);
    return out;
}

/* Makes a reservation; its id into id (may be NULL). */
static void reserve(fixture_t *f, int mode, int reservataire, const char *unit,
                    const char *programme, const char *landlord, const char *territory,
                    unsigned units, char id[ID_LEN])
{
    Passerelle__ReservationCreateRequest req = PASSERELLE__RESERVATION_CREATE_REQUEST__INIT;
    req.has_mode = true;
    req.mode = mode;
    req.has_reservataire = true;
    req.reservataire = reservataire;
    req.unit = (char *)unit;
    req.programme = (char *)programme;
    req.landlord = (char *)landlord;
    req.territory = (char *)territory;
    char end[DATE_LEN];
    if (mode == PASSERELLE__RESERVATION_MODE__MODE_STOCK) {
        snprintf(end, sizeof end, "%04u-12-31", (unsigned)(f->year + 1) % 10000u);
        req.end_date = end;
    } else {
        req.has_year = true;
        req.year = (uint32_t)f->year;
        req.has_units = true;
        req.units = units;
    }
    Passerelle__Reservation *r = (Passerelle__Reservation *)harness_call_ok(
        f->ind.stack.client, "reservation.create", &req.base, &passerelle__reservation__descriptor);
    if (id)
        snprintf(id, ID_LEN, "%s", r->id);
    passerelle__reservation__free_unpacked(r, NULL);
}

static void reservation_step(fixture_t *f, const char *type, const char *id)
{
    Passerelle__ReservationStepRequest req = PASSERELLE__RESERVATION_STEP_REQUEST__INIT;
    req.id = (char *)id;
    harness_call_ok(f->ind.stack.client, type, &req.base, NULL);
}

static void propose(fixture_t *f, const char *reservation, const char *candidate, const char *siren,
                    int sector, unsigned headcount, const Passerelle__PriorityPublic *publics,
                    size_t n_publics, char id[ID_LEN])
{
    Passerelle__ProposalRecordRequest req = PASSERELLE__PROPOSAL_RECORD_REQUEST__INIT;
    req.reservation = (char *)reservation;
    req.candidate_ref = (char *)candidate;
    req.employer_siren = (char *)siren;
    req.has_employer_sector = true;
    req.employer_sector = sector;
    req.has_employer_headcount = true;
    req.employer_headcount = headcount;
    req.n_publics = n_publics;
    req.publics = (Passerelle__PriorityPublic *)publics;
    Passerelle__Proposal *p = (Passerelle__Proposal *)harness_call_ok(
        f->ind.stack.client, "proposal.record", &req.base, &passerelle__proposal__descriptor);
    snprintf(id, ID_LEN, "%s", p->id);
    passerelle__proposal__free_unpacked(p, NULL);
}

static void decide(fixture_t *f, const char *proposal, int decision, unsigned rank)
{
    Passerelle__AttributionDecideRequest req = PASSERELLE__ATTRIBUTION_DECIDE_REQUEST__INIT;
    req.proposal = (char *)proposal;
    req.has_decision = true;
    req.decision = decision;
    req.has_rank = rank > 0;
    req.rank = rank;
    harness_call_ok(f->ind.stack.client, "attribution.decide", &req.base, NULL);
}

static void project(fixture_t *f, const char *ref, const char *commune, unsigned jobs,
                    unsigned horizon, int status, Passerelle__HousingNeed **needs, size_t n_needs,
                    char id[ID_LEN])
{
    Passerelle__ProjectCreateRequest req = PASSERELLE__PROJECT_CREATE_REQUEST__INIT;
    req.ref = (char *)ref;
    req.company = "Aerotec";
    req.sector = "aeronautics";
    req.commune = (char *)commune;
    req.has_expected_jobs = true;
    req.expected_jobs = jobs;
    req.has_horizon_year = true;
    req.horizon_year = horizon;
    req.has_status = true;
    req.status = status;
    req.n_needs = n_needs;
    req.needs = needs;
    Passerelle__EconomicProject *p = (Passerelle__EconomicProject *)harness_call_ok(
        f->ind.admin, "project.create", &req.base, &passerelle__economic_project__descriptor);
    snprintf(id, ID_LEN, "%s", p->id);
    passerelle__economic_project__free_unpacked(p, NULL);
}

#define LOC1 PASSERELLE__CONVENTION_LEVEL__LEVEL_LOC1
#define LOC2 PASSERELLE__CONVENTION_LEVEL__LEVEL_LOC2
#define LOC3 PASSERELLE__CONVENTION_LEVEL__LEVEL_LOC3

#define STOCK       PASSERELLE__RESERVATION_MODE__MODE_STOCK
#define FLOW        PASSERELLE__RESERVATION_MODE__MODE_FLOW
#define AL          PASSERELLE__RESERVATAIRE__RESERVATAIRE_ACTION_LOGEMENT
#define STATE       PASSERELLE__RESERVATAIRE__RESERVATAIRE_STATE
#define UNDER_30    PASSERELLE__PRIORITY_PUBLIC__PUBLIC_UNDER_30
#define APPRENTICE  PASSERELLE__PRIORITY_PUBLIC__PUBLIC_APPRENTICE
#define MOBILITY    PASSERELLE__PRIORITY_PUBLIC__PUBLIC_MOBILITY
#define DISABILITY  PASSERELLE__PRIORITY_PUBLIC__PUBLIC_DISABILITY
#define PRIVATE_NA  PASSERELLE__EMPLOYER_SECTOR__SECTOR_PRIVATE_NON_AGRICULTURAL
#define AGRICULTURE PASSERELLE__EMPLOYER_SECTOR__SECTOR_AGRICULTURAL

/* The history. Territories: CT2 (Aix-en-Provence 13001, Pertuis 84089)
 * and CT1 (Allauch 13002). */
static void write_history(fixture_t *f)
{
    char u1[ID_LEN], u2[ID_LEN], u3[ID_LEN], u4[ID_LEN], u5[ID_LEN], day[DATE_LEN];

    /* Units: 4 private, 1 social (in a QPV); CT2 3, CT1 2. */
    register_unit(f, "IQ-1", "Aix-en-Provence", false, false, u1);
    register_unit(f, "IQ-2", "13001", false, false, u2);
    register_unit(f, "IQ-3", "Allauch", false, false, u3);
    register_unit(f, "IQ-4", "Allauch", true, true, u4);
    register_unit(f, "IQ-5", "Pertuis", false, false, u5);

    /* Conventions, dated last year: U1 LOC2 30 days to sign, in force;
     * U2 LOC1 10 days, in force then terminated; U3 LOC3 60 days; U5
     * LOC2 abandoned. */
    envisage(f, u1, LOC2, last_year(f, "01-10", day));
    step(f, "convention.sign", u1, last_year(f, "02-09", day), NULL);
    step(f, "convention.in_force", u1, last_year(f, "03-01", day), NULL);
    envisage(f, u2, LOC1, last_year(f, "01-10", day));
    step(f, "convention.sign", u2, last_year(f, "01-20", day), NULL);
    step(f, "convention.in_force", u2, last_year(f, "02-01", day), NULL);
    step(f, "convention.end", u2, last_year(f, "06-01", day), "terminated");
    envisage(f, u3, LOC3, last_year(f, "02-01", day));
    step(f, "convention.sign", u3, last_year(f, "04-02", day), NULL);
    envisage(f, u5, LOC2, last_year(f, "03-01", day));
    step(f, "convention.abandon", u5, last_year(f, "03-15", day), NULL);

    /* A programme in Aix (CT2) over three years; its objective for Y set
     * twice (the second replaces the first), and a per-level one, which
     * the figures do not count. */
    harness_pig_programme(f->ind.stack.client, "PIG Pays d'Aix", "Aix-en-Provence", f->year - 1,
                          f->year + 1, f->programme);
    const unsigned objectives[3][2] = {{0, 8}, {0, 10}, {LOC2, 4}};
    for (int i = 0; i < 3; i++) {
        Passerelle__ObjectiveSetRequest obj = PASSERELLE__OBJECTIVE_SET_REQUEST__INIT;
        obj.programme = f->programme;
        obj.has_year = true;
        obj.year = (uint32_t)f->year;
        obj.has_level = objectives[i][0] != 0;
        obj.level = (Passerelle__ConventionLevel)objectives[i][0];
        obj.has_units = true;
        obj.units = objectives[i][1];
        harness_call_ok(f->ind.stack.client, "objective.set", &obj.base, NULL);
    }

    /* Reservations: R1 STOCK on the social unit in a QPV (CT1); R2 STOCK
     * on U1, released; R3 FLOW of the programme, 5 units; R4 FLOW of a
     * landlord for the State (CT1), cancelled; R5 FLOW of the programme,
     * 3 units, cancelled. */
    char r1[ID_LEN], r2[ID_LEN], r4[ID_LEN], r5[ID_LEN];
    reserve(f, STOCK, AL, u4, NULL, NULL, NULL, 0, r1);
    reserve(f, STOCK, AL, u1, NULL, NULL, NULL, 0, r2);
    reservation_step(f, "reservation.release", r2);
    reserve(f, FLOW, AL, NULL, f->programme, NULL, NULL, 5, NULL);
    reserve(f, FLOW, STATE, NULL, NULL, "Logirem", "CT1", 2, r4);
    reservation_step(f, "reservation.cancel", r4);
    reserve(f, FLOW, AL, NULL, f->programme, NULL, NULL, 3, r5);
    reservation_step(f, "reservation.cancel", r5);

    /* Proposals on R1: P1 eligible (under 30, mobility), P2 not (a
     * private employer of 5), P3 eligible (agricultural, 60; disability).
     * Decisions: P3 ranked, P2 refused, P1 attributed. */
    char p1[ID_LEN], p2[ID_LEN], p3[ID_LEN];
    const Passerelle__PriorityPublic young_mobile[] = {UNDER_30, MOBILITY};
    const Passerelle__PriorityPublic apprentice[] = {APPRENTICE};
    const Passerelle__PriorityPublic disability[] = {DISABILITY};
    propose(f, r1, "cand-iq-1", SIREN_A, PRIVATE_NA, 50, young_mobile, 2, p1);
    propose(f, r1, "cand-iq-2", SIREN_B, PRIVATE_NA, 5, apprentice, 1, p2);
    propose(f, r1, "cand-iq-3", SIREN_B, AGRICULTURE, 60, disability, 1, p3);
    decide(f, p3, PASSERELLE__DECISION__DECISION_RANKED, 1);
    decide(f, p2, PASSERELLE__DECISION__DECISION_REFUSED, 0);
    decide(f, p1, PASSERELLE__DECISION__DECISION_ATTRIBUTED, 0);

    /* Economic projects: J1 in Aix for Y, confirmed, 120 jobs, needing 10
     * T2 for the under-30s and 5 T3; J2 in Allauch for Y, dropped after;
     * J3 in Aix for next year, 30 jobs. */
    Passerelle__HousingNeed t2 = PASSERELLE__HOUSING_NEED__INIT,
                            t3 = PASSERELLE__HOUSING_NEED__INIT,
                            t1 = PASSERELLE__HOUSING_NEED__INIT;
    t2.has_typology = t3.has_typology = t1.has_typology = true;
    t2.typology = PASSERELLE__TYPOLOGY__TYPOLOGY_T2;
    t3.typology = PASSERELLE__TYPOLOGY__TYPOLOGY_T3;
    t1.typology = PASSERELLE__TYPOLOGY__TYPOLOGY_T1;
    t2.has_public_ = t1.has_public_ = true;
    t2.public_ = UNDER_30;
    t1.public_ = MOBILITY;
    t2.has_units = t3.has_units = t1.has_units = true;
    t2.units = 10;
    t3.units = 5;
    t1.units = 4;
    Passerelle__HousingNeed *j1_needs[] = {&t2, &t3}, *j2_needs[] = {&t1};
    char j1[ID_LEN], j2[ID_LEN], j3[ID_LEN];
    project(f, "IQ-J1", "Aix-en-Provence", 120, (unsigned)f->year,
            PASSERELLE__PROJECT_STATUS__PROJECT_CONFIRMED, j1_needs, 2, j1);
    project(f, "IQ-J2", "Allauch", 40, (unsigned)f->year,
            PASSERELLE__PROJECT_STATUS__PROJECT_PROSPECT, j2_needs, 1, j2);
    project(f, "IQ-J3", "Aix-en-Provence", 30, (unsigned)f->year + 1,
            PASSERELLE__PROJECT_STATUS__PROJECT_PROSPECT, NULL, 0, j3);
    Passerelle__ProjectUpdateRequest drop = PASSERELLE__PROJECT_UPDATE_REQUEST__INIT;
    drop.id = j2;
    drop.has_status = true;
    drop.status = PASSERELLE__PROJECT_STATUS__PROJECT_DROPPED;
    harness_call_ok(f->ind.admin, "project.update", &drop.base, NULL);

    /* Demand figures: Y for CT2 (all publics, and the under-30s), March
     * of Y for CT1. */
    char year[8], march[16];
    snprintf(year, sizeof year, "%04d", f->year % 10000);
    snprintf(march, sizeof march, "%04d-03", f->year % 10000);
    Passerelle__DemandRow rows[3] = {
        harness_demand_row(1, year, "CT2", 0, 200, 10, 5, 3, 2, 20),
        harness_demand_row(2, year, "CT2", UNDER_30, 80, 4, 0, 0, 0, 12),
        harness_demand_row(3, march, "CT1", 0, 50, 1, 0, 0, 0, 5),
    };
    Passerelle__DemandRow *row_ptrs[3] = {&rows[0], &rows[1], &rows[2]};
    Passerelle__DemandImportRequest import = PASSERELLE__DEMAND_IMPORT_REQUEST__INIT;
    import.n_rows = 3;
    import.rows = row_ptrs;
    harness_call_ok(f->ind.admin, "demand.import", &import.base, NULL);
}

/* ====================================================================== */
/* Reading the figures                                                    */
/* ====================================================================== */

#define UNDEFINED (-1.0)

/* One figure expected for year Y: indicator, scope and filter. */
typedef struct {
    const char *indicator;
    const char *territory;
    const char *commune;
    const char *filter;
    double value; /* UNDEFINED: no value */
} expect_t;

/* Every indicator of the catalog, hand-computed from the history. */
static const expect_t expected[] = {
    {"units.registered", NULL, NULL, NULL, 5},
    {"units.registered", NULL, NULL, "stock=PRIVATE", 4},
    {"units.registered", NULL, NULL, "stock=social", 1},
    {"units.registered", "CT2", NULL, NULL, 3},
    {"units.registered", "CT1", NULL, NULL, 2},
    {"units.registered", NULL, "13001", NULL, 2},
    {"units.registered", NULL, "Allauch", NULL, 2},
    {"units.registered", NULL, "Pertuis", NULL, 1},
    {"units.total", NULL, NULL, NULL, 5},
    {"units.total", "CT1", NULL, "stock=SOCIAL", 1},
    {"conventions.envisaged", NULL, NULL, NULL, 4},
    {"conventions.envisaged", NULL, NULL, "level=LOC2", 2},
    {"conventions.envisaged", "CT2", NULL, NULL, 3},
    {"conventions.envisaged", NULL, "13001", NULL, 2},
    {"conventions.signed", NULL, NULL, NULL, 3},
    {"conventions.signed", NULL, NULL, "level=LOC1", 1},
    {"conventions.signed", "CT1", NULL, NULL, 1},
    {"conventions.in_force", NULL, NULL, NULL, 2},
    {"conventions.in_force", NULL, NULL, "level=LOC3", 0},
    {"conventions.ended", NULL, NULL, NULL, 1},
    {"conventions.ended", NULL, NULL, "level=LOC1", 1},
    {"conventions.abandoned", NULL, NULL, NULL, 1},
    {"conventions.abandoned", NULL, "Pertuis", NULL, 1},
    {"conventions.active", NULL, NULL, NULL, 2},
    {"conventions.active", "CT2", NULL, NULL, 1},
    {"conventions.active", "CT1", NULL, NULL, 1},
    {"conventions.active", NULL, NULL, "level=LOC1", 0},
    {"conventions.active", NULL, NULL, "level=LOC3", 1},
    {"conventions.active", NULL, "13001", NULL, 1},
    {"conventions.delay_to_sign.median", NULL, NULL, NULL, 30},
    {"conventions.delay_to_sign.median", "CT2", NULL, NULL, 10},
    {"conventions.delay_to_sign.median", "CT3", NULL, NULL, UNDEFINED},
    {"conventions.delay_to_sign.p90", NULL, NULL, NULL, 60},
    {"conventions.delay_to_sign.p90", "CT2", NULL, NULL, 30},
    {"reservations.created", NULL, NULL, NULL, 5},
    {"reservations.created", NULL, NULL, "mode=FLOW", 3},
    {"reservations.created", NULL, NULL, "reservataire=STATE", 1},
    {"reservations.created", NULL, NULL, "reservataire=ACTION_LOGEMENT", 4},
    {"reservations.created", NULL, NULL, "qpv=IN", 1},
    {"reservations.created", "CT1", NULL, NULL, 2},
    {"reservations.created", NULL, "Allauch", NULL, 1},
    {"reservations.released", NULL, NULL, NULL, 1},
    {"reservations.released", NULL, NULL, "mode=STOCK", 1},
    {"reservations.cancelled", NULL, NULL, NULL, 2},
    {"reservations.cancelled", NULL, NULL, "reservataire=ACTION_LOGEMENT", 1},
    {"reservations.active", NULL, NULL, NULL, 2},
    {"reservations.active", "CT2", NULL, NULL, 1},
    {"reservations.active", NULL, NULL, "mode=STOCK", 1},
    {"reservations.al_units", NULL, NULL, NULL, 7},
    {"reservations.al_units", "CT2", NULL, NULL, 6},
    {"reservations.al_units", NULL, NULL, "mode=STOCK", 2},
    {"objectives.units", NULL, NULL, NULL, 10},
    {"objectives.units", "CT2", NULL, NULL, 10},
    {"objectives.units", "CT1", NULL, NULL, 0},
    {"objectives.achievement", NULL, NULL, NULL, 0.7},
    {"objectives.achievement", "CT2", NULL, NULL, 0.6},
    {"objectives.achievement", "CT1", NULL, NULL, UNDEFINED},
    {"proposals.recorded", NULL, NULL, NULL, 3},
    {"proposals.recorded", NULL, NULL, "public=UNDER_30", 1},
    {"proposals.recorded", NULL, NULL, "public=MOBILITY", 1},
    {"proposals.recorded", NULL, NULL, "eligible=NO", 1},
    {"proposals.recorded", NULL, NULL, "eligible=YES", 2},
    {"proposals.recorded", "CT1", NULL, NULL, 3},
    {"proposals.recorded", "CT2", NULL, NULL, 0},
    {"proposals.ineligible", NULL, NULL, NULL, 1},
    {"proposals.ineligible", NULL, NULL, "reason=HEADCOUNT_PRIVATE", 1},
    {"attributions.decided", NULL, NULL, NULL, 3},
    {"attributions.decided", NULL, NULL, "decision=RANKED", 1},
    {"attributions.decided", NULL, NULL, "decision=ATTRIBUTED", 1},
    {"attributions.decided", NULL, NULL, "public=DISABILITY", 1},
    {"candidates.housed", NULL, NULL, NULL, 1},
    {"candidates.housed", NULL, NULL, "public=MOBILITY", 1},
    {"candidates.housed", NULL, NULL, "public=APPRENTICE", 0},
    {"documents.published", NULL, NULL, NULL, 0},
    {"projects.count", NULL, NULL, NULL, 1},
    {"projects.count", NULL, NULL, "status=CONFIRMED", 1},
    {"projects.count", "CT1", NULL, NULL, 0},
    {"projects.count", NULL, "13001", NULL, 1},
    {"projects.expected_jobs", NULL, NULL, NULL, 120},
    {"projects.housing_need", NULL, NULL, NULL, 15},
    {"projects.housing_need", NULL, NULL, "typology=T2", 10},
    {"projects.housing_need", NULL, NULL, "public=UNDER_30", 10},
    {"demand.requests", NULL, NULL, NULL, 250},
    {"demand.requests", "CT2", NULL, NULL, 200},
    {"demand.requests", NULL, NULL, "public=UNDER_30", 80},
    {"demand.aids_granted", NULL, NULL, NULL, 21},
    {"demand.aids_granted", NULL, NULL, "aid=VISALE", 11},
    {"demand.aids_granted", NULL, NULL, "public=UNDER_30", 4},
    {"demand.housed", NULL, NULL, NULL, 25},
    {"demand.housed", "CT2", NULL, NULL, 20},
    {"need_supply.requests_per_reserved_unit", NULL, NULL, NULL, 250.0 / 7},
    {"need_supply.requests_per_reserved_unit", "CT1", NULL, NULL, 50},
    {"need_supply.jobs_per_reserved_unit", NULL, NULL, NULL, 120.0 / 7},
    {"need_supply.jobs_per_reserved_unit", "CT2", NULL, NULL, 20},
    {"need_supply.jobs_per_reserved_unit", "CT1", NULL, NULL, 0},
    {"need_supply.housed_per_request", NULL, NULL, NULL, 0.1},
    {"need_supply.housed_per_request", "CT2", NULL, "public=UNDER_30", 0.15},
};

static bool same_value(const Passerelle__Point *point, double value)
{
    if (value == UNDEFINED)
        return point->has_defined && !point->defined;
    return point->defined && point->value > value - 1e-9 && point->value < value + 1e-9;
}

/* How many expectations the figures of year Y miss; the first into why. */
static size_t misses(fixture_t *f, char *why, size_t why_size)
{
    char year[8];
    snprintf(year, sizeof year, "%04d", f->year % 10000);
    size_t missed = 0;
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++) {
        const expect_t *e = &expected[i];
        Passerelle__Series *s = harness_indicators_series(
            f->ind.partner, e->indicator, e->territory, e->commune, e->filter, "year", year, year);
        assert_int_equal(s->n_points, 1);
        const Passerelle__Point *point = s->points[0];
        if (!same_value(point, e->value)) {
            if (missed++ == 0)
                snprintf(why, why_size, "%s (%s%s%s) in %s: %s%g, expected %g", e->indicator,
                         e->territory ? e->territory : (e->commune ? e->commune : "all"),
                         e->filter ? ", " : "", e->filter ? e->filter : "", year,
                         point->defined ? "" : "no value ", point->value, e->value);
        }
        passerelle__series__free_unpacked(s, NULL);
    }
    return missed;
}

/* ====================================================================== */
/* Tests                                                                  */
/* ====================================================================== */

static void test_every_indicator(void **state)
{
    fixture_t *f = *state;
    date_t first = date_today_paris();
    f->year = first.year;
    write_history(f);
    date_t last = date_today_paris();
    if (last.year != first.year)
        skip(); /* written across the new year: the expectations are per year */
    f->same_day = date_compare(first, last) == 0;
    date_format(last, f->today);
    f->written = true;

    /* The projectors count asynchronously: poll until every figure is
     * there, then (or at the deadline) say which one is not. */
    char why[512] = "";
    int64_t deadline = time_now_ms() + CATCH_UP_MS;
    size_t missed;
    while ((missed = misses(f, why, sizeof why)) > 0 && time_now_ms() < deadline) {
        struct timespec pause = {0, 100 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    if (missed)
        fail_msg("%zu figures differ after %d ms; first: %s", missed, CATCH_UP_MS, why);

    /* Every indicator of the catalog was checked at least once. */
    for (size_t i = 0; i < catalog_count; i++) {
        bool seen = false;
        for (size_t j = 0; j < sizeof expected / sizeof expected[0] && !seen; j++)
            seen = strcmp(expected[j].indicator, catalog[i].name) == 0;
        if (!seen)
            fail_msg("no expectation for %s", catalog[i].name);
    }
}

static void test_series(void **state)
{
    fixture_t *f = *state;
    if (!f->written)
        skip();
    char from[16], to[16];

    /* A level by year: nothing at the end of last year (the history was
     * counted this year), then what is active now. */
    snprintf(from, sizeof from, "%04d", (f->year - 1) % 10000);
    snprintf(to, sizeof to, "%04d", f->year % 10000);
    Passerelle__Series *s = harness_indicators_series(f->ind.partner, "conventions.active", NULL,
                                                      NULL, NULL, "year", from, to);
    assert_int_equal(s->n_points, 2);
    assert_true(same_value(s->points[0], 0));
    assert_true(same_value(s->points[1], 2));
    passerelle__series__free_unpacked(s, NULL);

    /* Stated months: CT1's demand counted in March of Y. */
    snprintf(from, sizeof from, "%04d-01", f->year % 10000);
    snprintf(to, sizeof to, "%04d-04", f->year % 10000);
    s = harness_indicators_series(f->ind.partner, "demand.requests", "CT1", NULL, NULL, "month",
                                  from, to);
    assert_int_equal(s->n_points, 4);
    assert_true(same_value(s->points[0], 0));
    assert_true(same_value(s->points[2], 50));
    assert_true(same_value(s->points[3], 0));
    passerelle__series__free_unpacked(s, NULL);

    /* One programme's progress: 5 of 10; next year's jobs. */
    char filter[64];
    snprintf(filter, sizeof filter, "programme=%s", f->programme);
    snprintf(from, sizeof from, "%04d", f->year % 10000);
    snprintf(to, sizeof to, "%04d", (f->year + 1) % 10000);
    s = harness_indicators_series(f->ind.partner, "objectives.achievement", NULL, NULL, filter,
                                  "year", from, to);
    assert_true(same_value(s->points[0], 0.5));
    assert_true(same_value(s->points[1], UNDEFINED));
    passerelle__series__free_unpacked(s, NULL);
    s = harness_indicators_series(f->ind.partner, "projects.expected_jobs", "CT2", NULL, NULL,
                                  "year", from, to);
    assert_true(same_value(s->points[0], 120));
    assert_true(same_value(s->points[1], 30));
    passerelle__series__free_unpacked(s, NULL);

    /* Today, by day, for a territory (when the history fits in one day). */
    if (f->same_day) {
        s = harness_indicators_series(f->ind.partner, "units.registered", "CT2", NULL, NULL, "day",
                                      f->today, f->today);
        assert_true(same_value(s->points[0], 3));
        passerelle__series__free_unpacked(s, NULL);
        s = harness_indicators_series(f->ind.partner, "conventions.active", NULL, NULL, NULL, "day",
                                      f->today, f->today);
        assert_true(same_value(s->points[0], 2));
        passerelle__series__free_unpacked(s, NULL);
    }
}

static const Passerelle__SnapshotRow *row_of(const Passerelle__Snapshot *snap, const char *name)
{
    for (size_t i = 0; i < snap->n_rows; i++)
        if (strcmp(snap->rows[i]->indicator, name) == 0)
            return snap->rows[i];
    fail_msg("no row %s", name);
    return NULL;
}

static void expect_row(const Passerelle__Snapshot *snap, const char *name, double value)
{
    const Passerelle__SnapshotRow *row = row_of(snap, name);
    bool ok = value == UNDEFINED
                  ? row->has_defined && !row->defined
                  : row->defined && row->value > value - 1e-9 && row->value < value + 1e-9;
    if (!ok)
        fail_msg("snapshot %s: %s%g, expected %g", name, row->defined ? "" : "no value ",
                 row->value, value);
}

static void test_snapshot(void **state)
{
    fixture_t *f = *state;
    if (!f->written)
        skip();
    Passerelle__SnapshotRequest req = PASSERELLE__SNAPSHOT_REQUEST__INIT;
    Passerelle__Scope scope = PASSERELLE__SCOPE__INIT;
    scope.territory = "CT2";
    req.scope = &scope;
    req.date = f->today;
    Passerelle__Snapshot *snap = (Passerelle__Snapshot *)harness_call_ok(
        f->ind.partner, "indicator.snapshot", &req.base, &passerelle__snapshot__descriptor);
    assert_string_equal(snap->date, f->today);
    assert_int_equal(snap->n_rows, catalog_count);
    char at[32], year[8];
    snprintf(at, sizeof at, "at %s", f->today);
    snprintf(year, sizeof year, "%04d", f->year % 10000);
    assert_string_equal(row_of(snap, "conventions.active")->basis, at);
    assert_string_equal(row_of(snap, "objectives.units")->basis, year);
    expect_row(snap, "units.registered", 3);
    expect_row(snap, "units.total", 3);
    expect_row(snap, "conventions.envisaged", 3);
    expect_row(snap, "conventions.signed", 2);
    expect_row(snap, "conventions.in_force", 2);
    expect_row(snap, "conventions.ended", 1);
    expect_row(snap, "conventions.abandoned", 1);
    expect_row(snap, "conventions.active", 1);
    expect_row(snap, "conventions.delay_to_sign.median", 10);
    expect_row(snap, "conventions.delay_to_sign.p90", 30);
    expect_row(snap, "reservations.created", 3);
    expect_row(snap, "reservations.released", 1);
    expect_row(snap, "reservations.cancelled", 1);
    expect_row(snap, "reservations.active", 1);
    expect_row(snap, "reservations.al_units", 6);
    expect_row(snap, "objectives.units", 10);
    expect_row(snap, "objectives.achievement", 0.6);
    expect_row(snap, "proposals.recorded", 0);
    expect_row(snap, "projects.count", 1);
    expect_row(snap, "projects.expected_jobs", 120);
    expect_row(snap, "demand.requests", 200);
    expect_row(snap, "demand.aids_granted", 20);
    expect_row(snap, "need_supply.jobs_per_reserved_unit", 20);
    expect_row(snap, "need_supply.housed_per_request", 0.1);
    passerelle__snapshot__free_unpacked(snap, NULL);

    /* The Métropole. */
    scope.territory = NULL;
    snap = (Passerelle__Snapshot *)harness_call_ok(f->ind.partner, "indicator.snapshot", &req.base,
                                                   &passerelle__snapshot__descriptor);
    expect_row(snap, "units.total", 5);
    expect_row(snap, "conventions.active", 2);
    expect_row(snap, "conventions.delay_to_sign.median", 30);
    expect_row(snap, "conventions.delay_to_sign.p90", 60);
    expect_row(snap, "reservations.active", 2);
    expect_row(snap, "proposals.recorded", 3);
    expect_row(snap, "candidates.housed", 1);
    expect_row(snap, "objectives.achievement", 0.7);
    passerelle__snapshot__free_unpacked(snap, NULL);
}

static void test_partner_reads(void **state)
{
    fixture_t *f = *state;
    if (!f->written)
        skip();
    Passerelle__IndicatorListRequest list_req = PASSERELLE__INDICATOR_LIST_REQUEST__INIT;
    Passerelle__IndicatorList *list = (Passerelle__IndicatorList *)harness_call_ok(
        f->ind.partner, "indicator.list", &list_req.base, &passerelle__indicator_list__descriptor);
    assert_int_equal(list->n_indicators, catalog_count);
    passerelle__indicator_list__free_unpacked(list, NULL);

    char year[8];
    snprintf(year, sizeof year, "%04d", f->year % 10000);
    char *names[] = {"units.registered"};
    Passerelle__ExportRequest req = PASSERELLE__EXPORT_REQUEST__INIT;
    req.n_indicators = 1;
    req.indicators = names;
    req.period_kind = "year";
    req.from = year;
    req.to = year;
    Passerelle__ExportReply *out = (Passerelle__ExportReply *)harness_call_ok(
        f->ind.partner, "indicator.export", &req.base, &passerelle__export_reply__descriptor);
    assert_string_equal(out->media_type, "text/csv");
    assert_int_equal(out->rows, 7);
    char *text = strndup((const char *)out->content.data, out->content.len);
    char line[96];
    snprintf(line, sizeof line, "\r\nunits.registered,FLOW,all,%s,5\r\n", year);
    harness_assert_contains(text, line);
    snprintf(line, sizeof line, "\r\nunits.registered,FLOW,CT2,%s,3\r\n", year);
    harness_assert_contains(text, line);
    free(text);
    passerelle__export_reply__free_unpacked(out, NULL);

    req.format = "json";
    out = (Passerelle__ExportReply *)harness_call_ok(f->ind.partner, "indicator.export", &req.base,
                                                     &passerelle__export_reply__descriptor);
    assert_string_equal(out->media_type, "application/json");
    text = strndup((const char *)out->content.data, out->content.len);
    json_t *doc = harness_parse_json(text);
    free(text);
    json_t *all = json_array_get(
        json_object_get(json_array_get(json_object_get(doc, "indicators"), 0), "series"), 0);
    json_t *by = json_object_get(all, "by");
    assert_int_equal(json_integer_value(json_object_get(
                         json_array_get(json_object_get(by, "stock=PRIVATE"), 0), "value")),
                     4);
    json_decref(doc);
    passerelle__export_reply__free_unpacked(out, NULL);

    /* A refusal over the wire names its field; the partner may not
     * rebuild. */
    Passerelle__SeriesRequest bad = PASSERELLE__SERIES_REQUEST__INIT;
    bad.indicator = "conventions.signed";
    bad.filter = "stock=PRIVATE";
    harness_call_refused(f->ind.partner, "indicator.series", &bad.base, INVALID_ARGUMENT, "filter");
    Passerelle__RebuildRequest rebuild = PASSERELLE__REBUILD_REQUEST__INIT;
    harness_call_refused(f->ind.partner, "indicator.rebuild", &rebuild.base, PERMISSION_DENIED,
                         NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_indicator),
        cmocka_unit_test(test_series),
        cmocka_unit_test(test_snapshot),
        cmocka_unit_test(test_partner_reads),
    };
    return cmocka_run_group_tests(tests, setup, harness_indicators_teardown);
}
