/* The reservation rules without Redis or sockets: every refusal of a
 * creation request with its code and field, who may reserve for whom, when
 * a unit may be reserved (stock, convention state and end date, the active
 * holder), the snapshots, the lifecycle and the listing filters. */
#include "booking_rules.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#define AL      PASSERELLE__RESERVATAIRE__RESERVATAIRE_ACTION_LOGEMENT
#define STATE   PASSERELLE__RESERVATAIRE__RESERVATAIRE_STATE
#define STOCK   PASSERELLE__RESERVATION_MODE__MODE_STOCK
#define FLOW    PASSERELLE__RESERVATION_MODE__MODE_FLOW
#define ACTIVE  PASSERELLE__RESERVATION_STATE__RESERVATION_ACTIVE
#define RELEAS  PASSERELLE__RESERVATION_STATE__RESERVATION_RELEASED
#define CANCEL  PASSERELLE__RESERVATION_STATE__RESERVATION_CANCELLED
#define UNIT_ID "U01JDV00000000000000000000A"
#define PROG_ID "P01JDV00000000000000000000B"
#define RES_ID  "R01JDV00000000000000000000C"
#define CONV_ID "C01JDV00000000000000000000D"

static const date_t today = {2026, 3, 10};

static Passerelle__ReservationCreateRequest stock_request(void)
{
    Passerelle__ReservationCreateRequest req = PASSERELLE__RESERVATION_CREATE_REQUEST__INIT;
    req.has_mode = true;
    req.mode = STOCK;
    req.unit = "ANAH-84-0001";
    req.end_date = "2029-12-31";
    return req;
}

static Passerelle__ReservationCreateRequest flow_request(void)
{
    Passerelle__ReservationCreateRequest req = PASSERELLE__RESERVATION_CREATE_REQUEST__INIT;
    req.has_mode = true;
    req.mode = FLOW;
    req.programme = PROG_ID;
    req.has_year = true;
    req.year = 2026;
    req.has_units = true;
    req.units = 12;
    return req;
}

static void expect_refused(const Passerelle__ReservationCreateRequest *req, party_t party,
                           status_t status, const char *field)
{
    booking_request_t out;
    domain_error_t err;
    assert_false(booking_create_validate(req, party, today, &out, &err));
    if (err.status != status || strcmp(err.field, field) != 0)
        fail_msg("expected %d/%s, got %d/%s: %s", status, field, err.status, err.field,
                 err.message);
    assert_true(strlen(err.message) > 0);
}

/* --- creation ---------------------------------------------------------- */

static void test_stock_valid_defaults(void **state)
{
    (void)state;
    Passerelle__ReservationCreateRequest req = stock_request();
    booking_request_t out;
    domain_error_t err;
    assert_true(booking_create_validate(&req, PARTY_ACTION_LOGEMENT, today, &out, &err));
    assert_int_equal(out.reservataire, AL); /* the default */
    assert_int_equal(out.mode, STOCK);
    assert_string_equal(out.start_text, "2026-03-10"); /* today */
    assert_string_equal(out.end_text, "2029-12-31");
    assert_int_equal(out.year, 2026); /* the start's */
    assert_int_equal(out.units, 1);
    assert_string_equal(out.unit, "ANAH-84-0001");

    req.start_date = "2027-01-01";
    req.has_year = true;
    req.year = 2027;
    assert_true(booking_create_validate(&req, PARTY_METROPOLE, today, &out, &err));
    assert_int_equal(out.year, 2027);
}

static void test_reservataire_rules(void **state)
{
    (void)state;
    Passerelle__ReservationCreateRequest req = stock_request();
    req.has_reservataire = true;
    req.reservataire = STATE;
    expect_refused(&req, PARTY_ACTION_LOGEMENT, ST_PERMISSION_DENIED, "reservataire");
    booking_request_t out;
    domain_error_t err;
    assert_true(booking_create_validate(&req, PARTY_METROPOLE, today, &out, &err));
    assert_int_equal(out.reservataire, STATE);
    assert_true(booking_create_validate(&req, PARTY_ADMIN, today, &out, &err));
    req.reservataire = AL;
    assert_true(booking_create_validate(&req, PARTY_ACTION_LOGEMENT, today, &out, &err));
    req.reservataire = 42;
    expect_refused(&req, PARTY_METROPOLE, ST_INVALID_ARGUMENT, "reservataire");
    assert_true(booking_reservataire_allowed(PARTY_ACTION_LOGEMENT, 0, &err));
    assert_false(booking_reservataire_allowed(
        PARTY_ACTION_LOGEMENT, PASSERELLE__RESERVATAIRE__RESERVATAIRE_LANDLORD, &err));
    assert_string_equal(err.field, "reservataire");
}

static void test_stock_refusals(void **state)
{
    (void)state;
    Passerelle__ReservationCreateRequest req = stock_request();
    req.has_mode = false;
    expect_refused(&req, PARTY_METROPOLE, ST_INVALID_ARGUMENT, "mode");
    req.has_mode = true;
    req.mode = 9;
    expect_refused(&req, PARTY_METROPOLE, ST_INVALID_ARGUMENT, "mode");

    req = stock_request();
    req.unit = NULL;
    expect_refused(&req, PARTY_METROPOLE, ST_INVALID_ARGUMENT, "unit");
    req = stock_request();
    req.end_date = NULL;
    expect_refused(&req, PARTY_METROPOLE, ST_INVALID_ARGUMENT, "end_date");
    req = stock_request();
    req.end_date = "2029-02-30";
    expect_refused(&req, PARTY_METROPOLE, ST_INVALID_ARGUMENT, "end_date");
    req = stock_request();
    req.start_date = "tomorrow";
    expect_refused(&req, PARTY_METROPOLE, ST_INVALID_ARGUMENT, "start_date");
    req = stock_request();
    req.start_date = "2029-12-31"; /* end must be after start */
    expect_refused(&req, PARTY_METROPOLE, ST_INVALID_ARGUMENT, "end_date");
    req.start_date = "2030-01-01";
    expect_refused(&req, PARTY_METROPOLE, ST_INVALID_ARGUMENT, "end_date");

    req = stock_request();
    req.programme = PROG_ID;
    expect_refused(&req, PARTY_METROPOLE, ST_INVALID_ARGUMENT, "programme");
    req = stock_request();
    req.landlord = "13 Habitat";
    expect_refused(&req, PARTY_METROPOLE, ST_INVALID_ARGUMENT, "landlord");
    req = stock_request();
    req.territory = "CT2";
    expect_refused(&req, PARTY_METROPOLE, ST_INVALID_ARGUMENT, "territory");
    req = stock_request();
    req.has_units = true;
    req.units = 3;
    expect_refused(&req, PARTY_METROPOLE, ST_INVALID_ARGUMENT, "units");
    req = stock_request();
    req.has_year = true;
    req.year = 2027; /* start is today, 2026 */
    expect_refused(&req, PARTY_METROPOLE, ST_INVALID_ARGUMENT, "year");
}

static void test_target_publics(void **state)
{
    (void)state;
    Passerelle__ReservationCreateRequest req = stock_request();
    Passerelle__PriorityPublic good[] = {PASSERELLE__PRIORITY_PUBLIC__PUBLIC_UNDER_30,
                                         PASSERELLE__PRIORITY_PUBLIC__PUBLIC_DISABILITY};
    req.target_publics = good;
    req.n_target_publics = 2;
    booking_request_t out;
    domain_error_t err;
    assert_true(booking_create_validate(&req, PARTY_METROPOLE, today, &out, &err));
    Passerelle__PriorityPublic twice[] = {PASSERELLE__PRIORITY_PUBLIC__PUBLIC_MOBILITY,
                                          PASSERELLE__PRIORITY_PUBLIC__PUBLIC_MOBILITY};
    req.target_publics = twice;
    expect_refused(&req, PARTY_METROPOLE, ST_INVALID_ARGUMENT, "target_publics");
    Passerelle__PriorityPublic unknown[] = {(Passerelle__PriorityPublic)0};
    req.target_publics = unknown;
    req.n_target_publics = 1;
    expect_refused(&req, PARTY_METROPOLE, ST_INVALID_ARGUMENT, "target_publics");
    unknown[0] = (Passerelle__PriorityPublic)7;
    expect_refused(&req, PARTY_METROPOLE, ST_INVALID_ARGUMENT, "target_publics");
}

static void test_flow_valid(void **state)
{
    (void)state;
    Passerelle__ReservationCreateRequest req = flow_request();
    booking_request_t out;
    domain_error_t err;
    assert_true(booking_create_validate(&req, PARTY_ACTION_LOGEMENT, today, &out, &err));
    assert_int_equal(out.mode, FLOW);
    assert_string_equal(out.programme, PROG_ID);
    assert_int_equal(out.year, 2026);
    assert_int_equal(out.units, 12);
    assert_string_equal(out.start_text, "2026-01-01"); /* the year's */
    assert_string_equal(out.end_text, "2026-12-31");

    req.programme = NULL;
    req.landlord = "13 Habitat";
    req.territory = "ct1";
    req.start_date = "2026-06-01";
    assert_true(booking_create_validate(&req, PARTY_METROPOLE, today, &out, &err));
    assert_string_equal(out.landlord, "13 Habitat");
    assert_string_equal(out.territory, "CT1");
    assert_string_equal(out.start_text, "2026-06-01");
}

static void test_flow_refusals(void **state)
{
    (void)state;
    Passerelle__ReservationCreateRequest req = flow_request();
    req.landlord = "13 Habitat"; /* both */
    expect_refused(&req, PARTY_METROPOLE, ST_INVALID_ARGUMENT, "programme");
    req.programme = NULL;
    req.landlord = NULL; /* neither */
    expect_refused(&req, PARTY_METROPOLE, ST_INVALID_ARGUMENT, "programme");
    req.programme = "PIG-2026";
    expect_refused(&req, PARTY_METROPOLE, ST_INVALID_ARGUMENT, "programme");
    req = flow_request();
    req.territory = "CT2";
    expect_refused(&req, PARTY_METROPOLE, ST_INVALID_ARGUMENT, "territory");
    req.programme = NULL;
    req.landlord = "13 Habitat";
    req.territory = NULL; /* a landlord needs its territory */
    expect_refused(&req, PARTY_METROPOLE, ST_INVALID_ARGUMENT, "territory");
    req.territory = "CT9";
    expect_refused(&req, PARTY_METROPOLE, ST_INVALID_ARGUMENT, "territory");
    char long_landlord[BOOKING_LANDLORD_MAX + 2];
    memset(long_landlord, 'x', sizeof long_landlord - 1);
    long_landlord[sizeof long_landlord - 1] = '\0';
    req.territory = "CT1";
    req.landlord = long_landlord;
    expect_refused(&req, PARTY_METROPOLE, ST_INVALID_ARGUMENT, "landlord");

    req = flow_request();
    req.has_year = false;
    expect_refused(&req, PARTY_METROPOLE, ST_INVALID_ARGUMENT, "year");
    req.has_year = true;
    req.year = 1999;
    expect_refused(&req, PARTY_METROPOLE, ST_INVALID_ARGUMENT, "year");
    req = flow_request();
    req.has_units = false;
    expect_refused(&req, PARTY_METROPOLE, ST_INVALID_ARGUMENT, "units");
    req.has_units = true;
    req.units = 0;
    expect_refused(&req, PARTY_METROPOLE, ST_INVALID_ARGUMENT, "units");
    req.units = BOOKING_FLOW_UNITS_MAX + 1;
    expect_refused(&req, PARTY_METROPOLE, ST_INVALID_ARGUMENT, "units");
    req = flow_request();
    req.unit = UNIT_ID;
    expect_refused(&req, PARTY_METROPOLE, ST_INVALID_ARGUMENT, "unit");
    req = flow_request();
    req.end_date = "2025-12-31";
    expect_refused(&req, PARTY_METROPOLE, ST_INVALID_ARGUMENT, "end_date");
}

/* --- availability of a unit ---------------------------------------------- */

static Passerelle__Unit private_unit(void)
{
    Passerelle__Unit unit = PASSERELLE__UNIT__INIT;
    unit.id = UNIT_ID;
    unit.territory = "CT2";
    unit.has_stock = true;
    unit.stock = PASSERELLE__STOCK__STOCK_PRIVATE;
    unit.convention_id = CONV_ID;
    unit.has_in_qpv = true;
    unit.in_qpv = true;
    unit.programme_id = PROG_ID;
    return unit;
}

static Passerelle__Convention convention(int state)
{
    Passerelle__Convention conv = PASSERELLE__CONVENTION__INIT;
    conv.id = CONV_ID;
    conv.has_state = true;
    conv.state = state;
    conv.has_level = true;
    conv.level = PASSERELLE__CONVENTION_LEVEL__LEVEL_LOC2;
    conv.end_date = "2031-03-01";
    return conv;
}

static booking_request_t validated_stock(const char *end)
{
    Passerelle__ReservationCreateRequest req = stock_request();
    req.end_date = (char *)end;
    booking_request_t out;
    domain_error_t err;
    assert_true(booking_create_validate(&req, PARTY_ACTION_LOGEMENT, today, &out, &err));
    return out;
}

static void test_private_unit_needs_live_convention(void **state)
{
    (void)state;
    booking_request_t request = validated_stock("2029-12-31");
    Passerelle__Unit unit = private_unit();
    domain_error_t err;
    int refused[] = {PASSERELLE__CONVENTION_STATE__CONVENTION_ENVISAGED,
                     PASSERELLE__CONVENTION_STATE__CONVENTION_EXPIRED,
                     PASSERELLE__CONVENTION_STATE__CONVENTION_TERMINATED,
                     PASSERELLE__CONVENTION_STATE__CONVENTION_ABANDONED};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        Passerelle__Convention conv = convention(refused[i]);
        assert_false(booking_unit_available(&request, &unit, &conv, NULL, &err));
        assert_int_equal(err.status, ST_FAILED_PRECONDITION);
        assert_string_equal(err.field, "unit");
        assert_non_null(strstr(err.message, convention_state_name(refused[i])));
        assert_non_null(strstr(err.message, CONV_ID));
    }
    assert_false(booking_unit_available(&request, &unit, NULL, NULL, &err));
    assert_int_equal(err.status, ST_FAILED_PRECONDITION);
    assert_string_equal(err.field, "unit");

    Passerelle__Convention conv = convention(PASSERELLE__CONVENTION_STATE__CONVENTION_SIGNED);
    assert_true(booking_unit_available(&request, &unit, &conv, NULL, &err));
    conv.state = PASSERELLE__CONVENTION_STATE__CONVENTION_IN_FORCE;
    assert_true(booking_unit_available(&request, &unit, &conv, NULL, &err));

    /* The convention's end date is the last day a right may run to. */
    request = validated_stock("2031-03-01");
    assert_true(booking_unit_available(&request, &unit, &conv, NULL, &err));
    request = validated_stock("2031-03-02");
    assert_false(booking_unit_available(&request, &unit, &conv, NULL, &err));
    assert_int_equal(err.status, ST_FAILED_PRECONDITION);
    assert_string_equal(err.field, "end_date");
    assert_non_null(strstr(err.message, "2031-03-01"));
}

static void test_social_unit_and_holder(void **state)
{
    (void)state;
    booking_request_t request = validated_stock("2040-12-31");
    Passerelle__Unit unit = private_unit();
    unit.stock = PASSERELLE__STOCK__STOCK_SOCIAL;
    unit.convention_id = NULL;
    domain_error_t err;
    assert_true(booking_unit_available(&request, &unit, NULL, NULL, &err));

    Passerelle__Reservation holder = PASSERELLE__RESERVATION__INIT;
    holder.id = RES_ID;
    holder.has_reservataire = true;
    holder.reservataire = STATE;
    holder.has_state = true;
    holder.state = ACTIVE;
    holder.end_date = "2030-01-01";
    assert_false(booking_unit_available(&request, &unit, NULL, &holder, &err));
    assert_int_equal(err.status, ST_CONFLICT);
    assert_string_equal(err.field, "unit");
    assert_non_null(strstr(err.message, RES_ID));
    assert_non_null(strstr(err.message, "STATE"));
    /* A holder no longer active holds nothing. */
    holder.state = RELEAS;
    assert_true(booking_unit_available(&request, &unit, NULL, &holder, &err));
}

static void test_build_snapshots(void **state)
{
    (void)state;
    booking_request_t request = validated_stock("2029-12-31");
    Passerelle__ReservationCreateRequest req = stock_request();
    Passerelle__Unit unit = private_unit();
    Passerelle__Convention conv = convention(PASSERELLE__CONVENTION_STATE__CONVENTION_SIGNED);
    Passerelle__PriorityPublic publics[BOOKING_PUBLICS_MAX];
    Passerelle__Reservation r = PASSERELLE__RESERVATION__INIT;
    booking_build(&request, &req, &unit, &conv, NULL, publics, &r);
    assert_int_equal(r.reservataire, AL);
    assert_int_equal(r.mode, STOCK);
    assert_string_equal(r.unit_id, UNIT_ID);
    assert_string_equal(r.programme_id, PROG_ID);
    assert_string_equal(r.territory, "CT2");
    assert_true(r.has_level);
    assert_int_equal(r.level, PASSERELLE__CONVENTION_LEVEL__LEVEL_LOC2);
    assert_false(r.has_financing);
    assert_true(r.in_qpv);
    assert_int_equal(r.year, 2026);
    assert_int_equal(r.units, 1);
    assert_int_equal(r.vacancy, 1);
    assert_int_equal(r.attributed, 0);
    assert_int_equal(r.state, ACTIVE);

    /* Social: the financing, no level. */
    unit.stock = PASSERELLE__STOCK__STOCK_SOCIAL;
    unit.has_financing = true;
    unit.financing = PASSERELLE__FINANCING__FINANCING_PLUS;
    Passerelle__Reservation s = PASSERELLE__RESERVATION__INIT;
    booking_build(&request, &req, &unit, NULL, NULL, publics, &s);
    assert_true(s.has_financing);
    assert_int_equal(s.financing, PASSERELLE__FINANCING__FINANCING_PLUS);
    assert_false(s.has_level);

    /* FLOW of a programme: its territory; no unit, no vacancy. */
    Passerelle__ReservationCreateRequest freq = flow_request();
    booking_request_t flow;
    domain_error_t err;
    assert_true(booking_create_validate(&freq, PARTY_METROPOLE, today, &flow, &err));
    Passerelle__Reservation f = PASSERELLE__RESERVATION__INIT;
    booking_build(&flow, &freq, NULL, NULL, "CT4", publics, &f);
    assert_string_equal(f.programme_id, PROG_ID);
    assert_string_equal(f.territory, "CT4");
    assert_null(f.unit_id);
    assert_false(f.has_vacancy);
    assert_int_equal(f.units, 12);
}

static void test_programme_covers(void **state)
{
    (void)state;
    Passerelle__Programme p = PASSERELLE__PROGRAMME__INIT;
    p.id = PROG_ID;
    domain_error_t err;
    assert_true(booking_programme_covers(&p, 2026, &err)); /* no period: any year */
    p.start_date = "2025-04-01";
    p.end_date = "2028-03-31";
    assert_true(booking_programme_covers(&p, 2025, &err));
    assert_true(booking_programme_covers(&p, 2028, &err));
    assert_false(booking_programme_covers(&p, 2029, &err));
    assert_int_equal(err.status, ST_FAILED_PRECONDITION);
    assert_string_equal(err.field, "year");
    assert_false(booking_programme_covers(&p, 2024, &err));
}

/* --- lifecycle ----------------------------------------------------------- */

static Passerelle__Reservation active(int mode)
{
    Passerelle__Reservation r = PASSERELLE__RESERVATION__INIT;
    r.id = RES_ID;
    r.has_reservataire = true;
    r.reservataire = AL;
    r.has_mode = true;
    r.mode = mode;
    r.has_state = true;
    r.state = ACTIVE;
    r.start_date = "2026-02-01";
    r.has_vacancy = mode == STOCK;
    r.vacancy = mode == STOCK ? 1 : 0;
    return r;
}

static void expect_step_refused(const Passerelle__Reservation *r, booking_step_t step,
                                const Passerelle__ReservationStepRequest *req, party_t party,
                                status_t status, const char *field, const char *needle)
{
    booking_step_result_t out;
    domain_error_t err;
    assert_false(booking_step_decide(r, step, req, party, today, &out, &err));
    if (err.status != status || strcmp(err.field, field) != 0)
        fail_msg("expected %d/%s, got %d/%s: %s", status, field, err.status, err.field,
                 err.message);
    if (needle)
        assert_non_null(strstr(err.message, needle));
}

static void test_release_and_cancel(void **state)
{
    (void)state;
    Passerelle__Reservation r = active(STOCK);
    Passerelle__ReservationStepRequest req = PASSERELLE__RESERVATION_STEP_REQUEST__INIT;
    booking_step_result_t out;
    domain_error_t err;
    req.reason = "end of the lease";
    assert_true(
        booking_step_decide(&r, BOOKING_RELEASE, &req, PARTY_ACTION_LOGEMENT, today, &out, &err));
    assert_int_equal(out.state, RELEAS);
    assert_string_equal(out.date, "2026-03-10"); /* today */
    Passerelle__Reservation changed = r;
    booking_step_apply(&changed, BOOKING_RELEASE, &out);
    assert_int_equal(changed.state, RELEAS);
    assert_string_equal(changed.ended_on, "2026-03-10");
    assert_string_equal(changed.end_reason, "end of the lease");

    /* From RELEASED, nothing more: the state is named. */
    expect_step_refused(&changed, BOOKING_CANCEL, &req, PARTY_METROPOLE, ST_FAILED_PRECONDITION,
                        "id", "RELEASED");
    expect_step_refused(&changed, BOOKING_RELEASE, &req, PARTY_METROPOLE, ST_FAILED_PRECONDITION,
                        "id", "RELEASED");
    expect_step_refused(&changed, BOOKING_VACANCY, &req, PARTY_METROPOLE, ST_FAILED_PRECONDITION,
                        "id", "RELEASED");

    req.date = "2026-01-15"; /* before the start */
    expect_step_refused(&r, BOOKING_RELEASE, &req, PARTY_METROPOLE, ST_FAILED_PRECONDITION, "date",
                        "2026-02-01");
    /* ...which a cancellation (recorded in error) may be. */
    assert_true(booking_step_decide(&r, BOOKING_CANCEL, &req, PARTY_METROPOLE, today, &out, &err));
    assert_int_equal(out.state, CANCEL);
    assert_string_equal(out.date, "2026-01-15");
    changed = r;
    booking_step_apply(&changed, BOOKING_CANCEL, &out);
    expect_step_refused(&changed, BOOKING_RELEASE, &req, PARTY_METROPOLE, ST_FAILED_PRECONDITION,
                        "id", "CANCELLED");

    req.date = "15/01/2026";
    expect_step_refused(&r, BOOKING_CANCEL, &req, PARTY_METROPOLE, ST_INVALID_ARGUMENT, "date",
                        NULL);
    req.date = NULL;
    char long_reason[BOOKING_REASON_MAX + 2];
    memset(long_reason, 'r', sizeof long_reason - 1);
    long_reason[sizeof long_reason - 1] = '\0';
    req.reason = long_reason;
    expect_step_refused(&r, BOOKING_CANCEL, &req, PARTY_METROPOLE, ST_INVALID_ARGUMENT, "reason",
                        NULL);
}

static void test_only_own_reservations_for_action_logement(void **state)
{
    (void)state;
    Passerelle__Reservation r = active(STOCK);
    r.reservataire = PASSERELLE__RESERVATAIRE__RESERVATAIRE_COMMUNE;
    Passerelle__ReservationStepRequest req = PASSERELLE__RESERVATION_STEP_REQUEST__INIT;
    expect_step_refused(&r, BOOKING_RELEASE, &req, PARTY_ACTION_LOGEMENT, ST_PERMISSION_DENIED,
                        "reservataire", "COMMUNE");
    booking_step_result_t out;
    domain_error_t err;
    assert_true(booking_step_decide(&r, BOOKING_RELEASE, &req, PARTY_METROPOLE, today, &out, &err));
}

static void test_vacancy(void **state)
{
    (void)state;
    Passerelle__Reservation r = active(STOCK);
    r.has_attributed = true;
    r.attributed = 1;
    Passerelle__ReservationStepRequest req = PASSERELLE__RESERVATION_STEP_REQUEST__INIT;
    booking_step_result_t out;
    domain_error_t err;
    assert_true(
        booking_step_decide(&r, BOOKING_VACANCY, &req, PARTY_ACTION_LOGEMENT, today, &out, &err));
    assert_int_equal(out.state, ACTIVE);
    booking_step_apply(&r, BOOKING_VACANCY, &out);
    assert_int_equal(r.vacancy, 2);
    assert_int_equal(r.attributed, 0);
    assert_int_equal(r.state, ACTIVE);
    assert_null(r.ended_on);
    booking_step_apply(&r, BOOKING_VACANCY, &out);
    assert_int_equal(r.vacancy, 3);

    Passerelle__Reservation flow = active(FLOW);
    expect_step_refused(&flow, BOOKING_VACANCY, &req, PARTY_METROPOLE, ST_FAILED_PRECONDITION, "id",
                        "FLOW");
    assert_string_equal(booking_step_event(BOOKING_VACANCY), "reservation.vacancy_opened");
    assert_string_equal(booking_step_event(BOOKING_RELEASE), "reservation.released");
    assert_string_equal(booking_step_event(BOOKING_CANCEL), "reservation.cancelled");
}

/* --- listing ------------------------------------------------------------- */

static void expect_filter_refused(const Passerelle__ReservationListRequest *req, const char *field)
{
    booking_filter_t filter;
    domain_error_t err;
    assert_false(booking_filter_parse(req, &filter, &err));
    assert_int_equal(err.status, ST_INVALID_ARGUMENT);
    assert_string_equal(err.field, field);
}

static void test_filters(void **state)
{
    (void)state;
    Passerelle__ReservationListRequest req = PASSERELLE__RESERVATION_LIST_REQUEST__INIT;
    booking_filter_t filter;
    domain_error_t err;
    assert_true(booking_filter_parse(&req, &filter, &err));
    assert_int_equal(filter.page_size, BOOKING_LIST_PAGE_DEF);
    char keys[BOOKING_INDEX_CANDIDATES][BOOKING_INDEX_KEY_MAX];
    assert_int_equal(booking_filter_indexes(&filter, keys), 1);
    assert_string_equal(keys[0], "reservations:reservations");

    req.unit = UNIT_ID;
    req.programme = PROG_ID;
    req.has_reservataire = true;
    req.reservataire = AL;
    req.has_mode = true;
    req.mode = STOCK;
    req.has_state = true;
    req.state = ACTIVE;
    req.has_year = true;
    req.year = 2026;
    req.territory = "ct2";
    assert_true(booking_filter_parse(&req, &filter, &err));
    assert_int_equal(booking_filter_indexes(&filter, keys), BOOKING_INDEX_CANDIDATES);
    assert_string_equal(keys[0], "reservations:reservations:unit:" UNIT_ID);
    assert_string_equal(keys[7], "reservations:reservations");

    Passerelle__Reservation r = active(STOCK);
    r.unit_id = UNIT_ID;
    r.programme_id = PROG_ID;
    r.has_year = true;
    r.year = 2026;
    r.territory = "CT2";
    assert_true(booking_filter_match(&filter, &r));
    char own[BOOKING_INDEX_CANDIDATES][BOOKING_INDEX_KEY_MAX];
    booking_index_keys(&r, own);
    /* Every index a filter names is one the reservation is in. */
    for (size_t i = 0; i < BOOKING_INDEX_CANDIDATES; i++) {
        bool found = false;
        for (size_t j = 0; j < BOOKING_INDEX_CANDIDATES; j++)
            found = found || strcmp(keys[i], own[j]) == 0;
        if (!found)
            fail_msg("index %s is not one of the reservation's", keys[i]);
    }
    r.state = CANCEL;
    assert_false(booking_filter_match(&filter, &r));
    r.state = ACTIVE;
    r.year = 2027;
    assert_false(booking_filter_match(&filter, &r));
    r.year = 2026;
    r.territory = "CT1";
    assert_false(booking_filter_match(&filter, &r));

    /* An external reference is left for the handler to resolve. */
    Passerelle__ReservationListRequest by_ref = PASSERELLE__RESERVATION_LIST_REQUEST__INIT;
    by_ref.unit = "ANAH-84-0001";
    assert_true(booking_filter_parse(&by_ref, &filter, &err));
    assert_string_equal(filter.unit, "ANAH-84-0001");
    assert_string_equal(filter.unit_id, "");

    Passerelle__ReservationListRequest bad = PASSERELLE__RESERVATION_LIST_REQUEST__INIT;
    bad.unit = " spaced ";
    expect_filter_refused(&bad, "unit");
    bad = (Passerelle__ReservationListRequest)PASSERELLE__RESERVATION_LIST_REQUEST__INIT;
    bad.programme = "PIG";
    expect_filter_refused(&bad, "programme");
    bad = (Passerelle__ReservationListRequest)PASSERELLE__RESERVATION_LIST_REQUEST__INIT;
    bad.has_reservataire = true;
    bad.reservataire = 6;
    expect_filter_refused(&bad, "reservataire");
    bad = (Passerelle__ReservationListRequest)PASSERELLE__RESERVATION_LIST_REQUEST__INIT;
    bad.has_mode = true;
    bad.mode = 3;
    expect_filter_refused(&bad, "mode");
    bad = (Passerelle__ReservationListRequest)PASSERELLE__RESERVATION_LIST_REQUEST__INIT;
    bad.has_state = true;
    bad.state = 4;
    expect_filter_refused(&bad, "state");
    bad = (Passerelle__ReservationListRequest)PASSERELLE__RESERVATION_LIST_REQUEST__INIT;
    bad.has_year = true;
    bad.year = 3000;
    expect_filter_refused(&bad, "year");
    bad = (Passerelle__ReservationListRequest)PASSERELLE__RESERVATION_LIST_REQUEST__INIT;
    bad.territory = "CT7";
    expect_filter_refused(&bad, "territory");
    bad = (Passerelle__ReservationListRequest)PASSERELLE__RESERVATION_LIST_REQUEST__INIT;
    bad.has_page_size = true;
    bad.page_size = BOOKING_LIST_PAGE_MAX + 1;
    expect_filter_refused(&bad, "page_size");
    bad = (Passerelle__ReservationListRequest)PASSERELLE__RESERVATION_LIST_REQUEST__INIT;
    bad.page_token = UNIT_ID; /* not a reservation id */
    expect_filter_refused(&bad, "page_token");
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(reservataire_name(AL), "ACTION_LOGEMENT");
    assert_string_equal(reservataire_name(99), "UNKNOWN");
    assert_string_equal(reservation_mode_name(FLOW), "FLOW");
    assert_string_equal(reservation_state_name(CANCEL), "CANCELLED");
    assert_string_equal(reservation_state_name(-1), "UNKNOWN");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stock_valid_defaults),
        cmocka_unit_test(test_reservataire_rules),
        cmocka_unit_test(test_stock_refusals),
        cmocka_unit_test(test_target_publics),
        cmocka_unit_test(test_flow_valid),
        cmocka_unit_test(test_flow_refusals),
        cmocka_unit_test(test_private_unit_needs_live_convention),
        cmocka_unit_test(test_social_unit_and_holder),
        cmocka_unit_test(test_build_snapshots),
        cmocka_unit_test(test_programme_covers),
        cmocka_unit_test(test_release_and_cancel),
        cmocka_unit_test(test_only_own_reservations_for_action_logement),
        cmocka_unit_test(test_vacancy),
        cmocka_unit_test(test_filters),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
