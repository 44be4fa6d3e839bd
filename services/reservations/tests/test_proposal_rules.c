/* The rules of proposals and decisions, without Redis or sockets: the
 * SIREN's Luhn key on real-looking numbers, each field of a proposal, the
 * eligibility thresholds at their edges, the decision transition table,
 * who may decide what, once-per-vacancy attribution and the warning when
 * fewer than three candidates were examined. */
#include "proposal_rules.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#define PRIVATE      PASSERELLE__EMPLOYER_SECTOR__SECTOR_PRIVATE_NON_AGRICULTURAL
#define AGRICULTURAL PASSERELLE__EMPLOYER_SECTOR__SECTOR_AGRICULTURAL
#define PUBLIC       PASSERELLE__EMPLOYER_SECTOR__SECTOR_PUBLIC

#define PENDING    PASSERELLE__DECISION__DECISION_PENDING
#define ATTRIBUTED PASSERELLE__DECISION__DECISION_ATTRIBUTED
#define RANKED     PASSERELLE__DECISION__DECISION_RANKED
#define REFUSED    PASSERELLE__DECISION__DECISION_REFUSED
#define WITHDRAWN  PASSERELLE__DECISION__DECISION_WITHDRAWN

#define PROPOSAL_ID    "D01JDV00000000000000000000A"
#define OTHER_ID       "D01JDV00000000000000000000B"
#define RESERVATION_ID "R01JDV00000000000000000000A"
#define UNIT_ID        "U01JDV00000000000000000000A"
#define OTHER_UNIT_ID  "U01JDV00000000000000000000B"
#define PROGRAMME_ID   "P01JDV00000000000000000000A"

static const eligibility_rules_t convention_rules = {10, 50};

static date_t day(const char *text)
{
    date_t d;
    assert_true(date_parse(text, &d));
    return d;
}

/* --- SIREN ---------------------------------------------------------------- */

static void test_siren_luhn(void **state)
{
    (void)state;
    assert_true(siren_valid("732829320"));
    assert_false(siren_valid("732829321"));
    assert_true(siren_valid("552100554"));
    assert_true(siren_valid("000000000"));
    assert_false(siren_valid("552100555"));
    assert_false(siren_valid("73282932"));   /* 8 digits */
    assert_false(siren_valid("7328293200")); /* 10 digits */
    assert_false(siren_valid("73282932A"));
    assert_false(siren_valid(""));
    assert_false(siren_valid(NULL));
}

/* --- recording --------------------------------------------------------------- */

static Passerelle__ProposalRecordRequest valid_request(void)
{
    Passerelle__ProposalRecordRequest req = PASSERELLE__PROPOSAL_RECORD_REQUEST__INIT;
    req.reservation = RESERVATION_ID;
    req.candidate_ref = "AL-CAND-2041";
    req.employer_siren = "732829320";
    req.has_employer_sector = true;
    req.employer_sector = PRIVATE;
    req.has_employer_headcount = true;
    req.employer_headcount = 120;
    return req;
}

static void expect_record_invalid(const Passerelle__ProposalRecordRequest *req, const char *field,
                                  const char *needle)
{
    domain_error_t err;
    assert_false(proposal_record_validate(req, &err));
    assert_int_equal(err.status, ST_INVALID_ARGUMENT);
    assert_string_equal(err.field, field);
    if (needle && !strstr(err.message, needle))
        fail_msg("message '%s' does not say '%s'", err.message, needle);
}

static void test_record_validate(void **state)
{
    (void)state;
    domain_error_t err;
    Passerelle__ProposalRecordRequest req = valid_request();
    assert_true(proposal_record_validate(&req, &err));

    Passerelle__PriorityPublic publics[] = {PASSERELLE__PRIORITY_PUBLIC__PUBLIC_UNDER_30,
                                            PASSERELLE__PRIORITY_PUBLIC__PUBLIC_MOBILITY,
                                            PASSERELLE__PRIORITY_PUBLIC__PUBLIC_DISABILITY};
    req.publics = publics;
    req.n_publics = 3;
    assert_true(proposal_record_validate(&req, &err));

    req = valid_request();
    req.reservation = NULL;
    expect_record_invalid(&req, "reservation", "required");

    req = valid_request();
    req.candidate_ref = NULL;
    expect_record_invalid(&req, "candidate_ref", "required");
    req.candidate_ref = "";
    expect_record_invalid(&req, "candidate_ref", "required");
    req.candidate_ref = "   ";
    expect_record_invalid(&req, "candidate_ref", "spaces");
    req.candidate_ref = "AL\n2041";
    expect_record_invalid(&req, "candidate_ref", "control");
    char long_ref[CANDIDATE_REF_MAX + 2];
    memset(long_ref, 'X', sizeof long_ref - 1);
    long_ref[sizeof long_ref - 1] = '\0';
    req.candidate_ref = long_ref;
    expect_record_invalid(&req, "candidate_ref", "longer");
    long_ref[CANDIDATE_REF_MAX] = '\0'; /* exactly the limit */
    assert_true(proposal_record_validate(&req, &err));

    req = valid_request();
    req.employer_siren = NULL;
    expect_record_invalid(&req, "employer_siren", "required");
    req.employer_siren = "73282932";
    expect_record_invalid(&req, "employer_siren", "9 digits");
    req.employer_siren = "73282932O";
    expect_record_invalid(&req, "employer_siren", "9 digits");
    req.employer_siren = "732829321";
    expect_record_invalid(&req, "employer_siren", "fails its Luhn check");

    req = valid_request();
    req.has_employer_sector = false;
    expect_record_invalid(&req, "employer_sector", "required");
    req.has_employer_sector = true;
    req.employer_sector = PASSERELLE__EMPLOYER_SECTOR__SECTOR_UNSPECIFIED;
    expect_record_invalid(&req, "employer_sector", "required");
    req.employer_sector = 9;
    expect_record_invalid(&req, "employer_sector", "not a sector");

    req = valid_request();
    req.has_employer_headcount = false;
    expect_record_invalid(&req, "employer_headcount", "1 or more");
    req.has_employer_headcount = true;
    req.employer_headcount = 0;
    expect_record_invalid(&req, "employer_headcount", "1 or more");

    req = valid_request();
    Passerelle__PriorityPublic twice[] = {PASSERELLE__PRIORITY_PUBLIC__PUBLIC_APPRENTICE,
                                          PASSERELLE__PRIORITY_PUBLIC__PUBLIC_SEASONAL,
                                          PASSERELLE__PRIORITY_PUBLIC__PUBLIC_APPRENTICE};
    req.publics = twice;
    req.n_publics = 3;
    expect_record_invalid(&req, "publics", "PUBLIC_APPRENTICE twice");
    Passerelle__PriorityPublic unspecified[] = {PASSERELLE__PRIORITY_PUBLIC__PUBLIC_UNSPECIFIED};
    req.publics = unspecified;
    req.n_publics = 1;
    expect_record_invalid(&req, "publics", "priority public");
    Passerelle__PriorityPublic unknown[] = {7};
    req.publics = unknown;
    expect_record_invalid(&req, "publics", "priority public");
}

/* --- eligibility --------------------------------------------------------------- */

static void expect_ineligible(const eligibility_rules_t *rules, int sector, uint32_t headcount,
                              const char *reason)
{
    char out[ELIGIBILITY_REASON_MAX];
    assert_false(eligibility_decide(rules, sector, headcount, out, sizeof out));
    assert_string_equal(out, reason);
}

static void test_eligibility_edges(void **state)
{
    (void)state;
    char reason[ELIGIBILITY_REASON_MAX];
    expect_ineligible(&convention_rules, PRIVATE, 9,
                      "private non-agricultural employer of 9 employees: the convention "
                      "requires 10 or more");
    assert_true(eligibility_decide(&convention_rules, PRIVATE, 10, reason, sizeof reason));
    assert_string_equal(reason, "");
    assert_true(eligibility_decide(&convention_rules, PRIVATE, 5000, reason, sizeof reason));
    expect_ineligible(&convention_rules, PRIVATE, 1,
                      "private non-agricultural employer of 1 employee: the convention requires "
                      "10 or more");

    expect_ineligible(&convention_rules, AGRICULTURAL, 49,
                      "agricultural employer of 49 employees: the convention requires 50 or more");
    assert_true(eligibility_decide(&convention_rules, AGRICULTURAL, 50, reason, sizeof reason));
    /* An agricultural employer of 10 to 49 is not eligible, though a
     * private non-agricultural one of the same size would be. */
    expect_ineligible(&convention_rules, AGRICULTURAL, 10,
                      "agricultural employer of 10 employees: the convention requires 50 or more");

    expect_ineligible(&convention_rules, PUBLIC, 100000,
                      "public-sector employer: the convention covers private employers only");
    assert_false(eligibility_decide(&convention_rules, 0, 100, reason, sizeof reason));

    /* The thresholds are configuration. */
    const eligibility_rules_t other = {20, 11};
    expect_ineligible(&other, PRIVATE, 19,
                      "private non-agricultural employer of 19 employees: the convention "
                      "requires 20 or more");
    assert_true(eligibility_decide(&other, PRIVATE, 20, reason, sizeof reason));
    assert_true(eligibility_decide(&other, AGRICULTURAL, 11, reason, sizeof reason));
}

/* --- the reservation ------------------------------------------------------------ */

static Passerelle__Reservation stock_reservation(void)
{
    Passerelle__Reservation r = PASSERELLE__RESERVATION__INIT;
    r.id = RESERVATION_ID;
    r.has_mode = true;
    r.mode = PASSERELLE__RESERVATION_MODE__MODE_STOCK;
    r.unit_id = UNIT_ID;
    r.has_state = true;
    r.state = PASSERELLE__RESERVATION_STATE__RESERVATION_ACTIVE;
    r.has_units = true;
    r.units = 1;
    r.has_vacancy = true;
    r.vacancy = 1;
    return r;
}

static Passerelle__Reservation flow_reservation(void)
{
    Passerelle__Reservation r = stock_reservation();
    r.mode = PASSERELLE__RESERVATION_MODE__MODE_FLOW;
    r.unit_id = NULL;
    r.programme_id = PROGRAMME_ID;
    r.units = 2;
    return r;
}

static void expect_error(bool ok, const domain_error_t *err, status_t status, const char *field,
                         const char *needle)
{
    assert_false(ok);
    assert_int_equal(err->status, status);
    assert_string_equal(err->field, field);
    if (needle && !strstr(err->message, needle))
        fail_msg("message '%s' does not say '%s'", err->message, needle);
}

static void test_reservation_accepts(void **state)
{
    (void)state;
    domain_error_t err;
    Passerelle__Reservation r = stock_reservation();
    Passerelle__Unit unit = PASSERELLE__UNIT__INIT;
    unit.id = UNIT_ID;
    assert_true(proposal_reservation_accepts(&r, NULL, &err));
    assert_true(proposal_reservation_accepts(&r, &unit, &err));
    unit.id = OTHER_UNIT_ID;
    expect_error(proposal_reservation_accepts(&r, &unit, &err), &err, ST_INVALID_ARGUMENT, "unit",
                 "not the unit of reservation");

    r.state = PASSERELLE__RESERVATION_STATE__RESERVATION_RELEASED;
    expect_error(proposal_reservation_accepts(&r, NULL, &err), &err, ST_FAILED_PRECONDITION,
                 "reservation", "is RELEASED; proposal.record needs ACTIVE");
    r.state = PASSERELLE__RESERVATION_STATE__RESERVATION_CANCELLED;
    expect_error(proposal_reservation_accepts(&r, NULL, &err), &err, ST_FAILED_PRECONDITION,
                 "reservation", "CANCELLED");

    Passerelle__Reservation flow = flow_reservation();
    expect_error(proposal_reservation_accepts(&flow, NULL, &err), &err, ST_INVALID_ARGUMENT, "unit",
                 "released unit");
    unit.programme_id = PROGRAMME_ID;
    assert_true(proposal_reservation_accepts(&flow, &unit, &err));
    unit.programme_id = NULL;
    expect_error(proposal_reservation_accepts(&flow, &unit, &err), &err, ST_FAILED_PRECONDITION,
                 "unit", "in no programme");

    flow.programme_id = NULL;
    flow.landlord = "13 Habitat";
    unit.landlord = "Logirem";
    expect_error(proposal_reservation_accepts(&flow, &unit, &err), &err, ST_FAILED_PRECONDITION,
                 "unit", "landlord");
    unit.landlord = "13 Habitat";
    assert_true(proposal_reservation_accepts(&flow, &unit, &err));
}

/* --- decisions ----------------------------------------------------------------- */

static void test_transition_table(void **state)
{
    (void)state;
    /* from \ to:            PENDING ATTRIBUTED RANKED REFUSED WITHDRAWN */
    static const bool table[5][5] = {
        /* PENDING    */ {false, true, true, true, true},
        /* ATTRIBUTED */ {false, false, false, false, false},
        /* RANKED     */ {false, true, false, true, true},
        /* REFUSED    */ {false, false, false, false, false},
        /* WITHDRAWN  */ {false, false, false, false, false},
    };
    for (int from = 0; from < 5; from++)
        for (int to = 0; to < 5; to++)
            if (decision_transition_allowed(from, to) != table[from][to])
                fail_msg("%s -> %s should be %s", decision_name(from), decision_name(to),
                         table[from][to] ? "allowed" : "refused");
    assert_false(decision_transition_allowed(7, ATTRIBUTED));
    assert_false(decision_transition_allowed(PENDING, 7));
}

static Passerelle__AttributionDecideRequest decide_request(int decision)
{
    Passerelle__AttributionDecideRequest req = PASSERELLE__ATTRIBUTION_DECIDE_REQUEST__INIT;
    req.proposal = PROPOSAL_ID;
    req.has_decision = true;
    req.decision = decision;
    return req;
}

static void test_decide_request(void **state)
{
    (void)state;
    domain_error_t err;
    date_t today = day("2026-03-02"), on;
    Passerelle__AttributionDecideRequest req = decide_request(ATTRIBUTED);
    assert_true(decision_request_validate(&req, PARTY_METROPOLE, today, &on, &err));
    assert_int_equal(date_compare(on, today), 0);
    req.date = "2026-02-27";
    req.reason = "commission d'attribution du 27 février";
    assert_true(decision_request_validate(&req, PARTY_OPERATOR, today, &on, &err));
    assert_int_equal(date_compare(on, day("2026-02-27")), 0);
    req.date = "2026-02-30";
    expect_error(decision_request_validate(&req, PARTY_OPERATOR, today, &on, &err), &err,
                 ST_INVALID_ARGUMENT, "date", "not a date");
    req.date = NULL;
    req.reason = "line\nbreak";
    expect_error(decision_request_validate(&req, PARTY_OPERATOR, today, &on, &err), &err,
                 ST_INVALID_ARGUMENT, "reason", NULL);

    req = decide_request(ATTRIBUTED);
    req.proposal = NULL;
    expect_error(decision_request_validate(&req, PARTY_ADMIN, today, &on, &err), &err,
                 ST_INVALID_ARGUMENT, "proposal", "required");
    req.proposal = RESERVATION_ID;
    expect_error(decision_request_validate(&req, PARTY_ADMIN, today, &on, &err), &err,
                 ST_INVALID_ARGUMENT, "proposal", "not a proposal id");

    req = decide_request(PENDING);
    expect_error(decision_request_validate(&req, PARTY_ADMIN, today, &on, &err), &err,
                 ST_INVALID_ARGUMENT, "decision", "required");
    req.has_decision = false;
    expect_error(decision_request_validate(&req, PARTY_ADMIN, today, &on, &err), &err,
                 ST_INVALID_ARGUMENT, "decision", "required");
    req = decide_request(9);
    expect_error(decision_request_validate(&req, PARTY_ADMIN, today, &on, &err), &err,
                 ST_INVALID_ARGUMENT, "decision", "not a decision");

    /* RANKED needs a rank of 1 to 3; other decisions take none. */
    req = decide_request(RANKED);
    expect_error(decision_request_validate(&req, PARTY_ADMIN, today, &on, &err), &err,
                 ST_INVALID_ARGUMENT, "rank", "1 to 3");
    req.has_rank = true;
    req.rank = 0;
    expect_error(decision_request_validate(&req, PARTY_ADMIN, today, &on, &err), &err,
                 ST_INVALID_ARGUMENT, "rank", "1 to 3");
    req.rank = 4;
    expect_error(decision_request_validate(&req, PARTY_ADMIN, today, &on, &err), &err,
                 ST_INVALID_ARGUMENT, "rank", "1 to 3");
    for (uint32_t rank = 1; rank <= 3; rank++) {
        req.rank = rank;
        assert_true(decision_request_validate(&req, PARTY_ADMIN, today, &on, &err));
    }
    req = decide_request(REFUSED);
    req.has_rank = true;
    req.rank = 2;
    expect_error(decision_request_validate(&req, PARTY_ADMIN, today, &on, &err), &err,
                 ST_INVALID_ARGUMENT, "rank", "RANKED only");

    /* Action Logement only withdraws. */
    static const int others[] = {ATTRIBUTED, RANKED, REFUSED};
    for (size_t i = 0; i < 3; i++) {
        req = decide_request(others[i]);
        req.has_rank = others[i] == RANKED;
        req.rank = 1;
        expect_error(decision_request_validate(&req, PARTY_ACTION_LOGEMENT, today, &on, &err), &err,
                     ST_PERMISSION_DENIED, "decision", "only withdraw");
    }
    req = decide_request(WITHDRAWN);
    assert_true(decision_request_validate(&req, PARTY_ACTION_LOGEMENT, today, &on, &err));
}

static Passerelle__Proposal proposal_of(int decision, bool eligible)
{
    Passerelle__Proposal p = PASSERELLE__PROPOSAL__INIT;
    p.id = PROPOSAL_ID;
    p.reservation_id = RESERVATION_ID;
    p.unit_id = UNIT_ID;
    p.has_vacancy = true;
    p.vacancy = 1;
    p.has_eligible = true;
    p.eligible = eligible;
    p.ineligibility_reason =
        eligible ? NULL
                 : "agricultural employer of 12 employees: the convention requires 50 or more";
    p.has_decision = true;
    p.decision = decision;
    return p;
}

static void test_decision_may_apply(void **state)
{
    (void)state;
    domain_error_t err;
    Passerelle__Proposal p = proposal_of(PENDING, true);
    for (int to = ATTRIBUTED; to <= WITHDRAWN; to++)
        assert_true(decision_may_apply(&p, to, &err));

    p = proposal_of(ATTRIBUTED, true);
    expect_error(decision_may_apply(&p, WITHDRAWN, &err), &err, ST_FAILED_PRECONDITION, "proposal",
                 "is ATTRIBUTED");
    p = proposal_of(RANKED, true);
    expect_error(decision_may_apply(&p, RANKED, &err), &err, ST_FAILED_PRECONDITION, "proposal",
                 "is RANKED; RANKED needs PENDING");
    assert_true(decision_may_apply(&p, ATTRIBUTED, &err));

    /* An ineligible candidate is refused or withdrawn, never placed. */
    p = proposal_of(PENDING, false);
    expect_error(decision_may_apply(&p, ATTRIBUTED, &err), &err, ST_FAILED_PRECONDITION, "proposal",
                 "requires 50 or more");
    expect_error(decision_may_apply(&p, RANKED, &err), &err, ST_FAILED_PRECONDITION, "proposal",
                 "not eligible");
    assert_true(decision_may_apply(&p, REFUSED, &err));
    assert_true(decision_may_apply(&p, WITHDRAWN, &err));
}

static void test_attribution_once_per_vacancy(void **state)
{
    (void)state;
    domain_error_t err;
    Passerelle__Reservation r = stock_reservation();
    Passerelle__Proposal p = proposal_of(PENDING, true);
    assert_true(attribution_may(&r, &p, ATTRIBUTED, NULL, &err));
    expect_error(attribution_may(&r, &p, ATTRIBUTED, OTHER_ID, &err), &err, ST_FAILED_PRECONDITION,
                 "proposal", "already attributed to proposal " OTHER_ID);
    r.attributed = 1;
    expect_error(attribution_may(&r, &p, ATTRIBUTED, OTHER_ID, &err), &err, ST_FAILED_PRECONDITION,
                 "proposal", OTHER_ID);
    /* Ranking, refusing, withdrawing are not attributions. */
    assert_true(attribution_may(&r, &p, RANKED, OTHER_ID, &err));
    assert_true(attribution_may(&r, &p, REFUSED, OTHER_ID, &err));

    /* A new vacancy: proposals of the last one can no longer be placed. */
    r.vacancy = 2;
    r.attributed = 0;
    expect_error(attribution_may(&r, &p, ATTRIBUTED, NULL, &err), &err, ST_FAILED_PRECONDITION,
                 "proposal", "now at vacancy 2");
    expect_error(attribution_may(&r, &p, RANKED, NULL, &err), &err, ST_FAILED_PRECONDITION,
                 "proposal", "now at vacancy 2");
    assert_true(attribution_may(&r, &p, WITHDRAWN, NULL, &err));

    r = stock_reservation();
    r.state = PASSERELLE__RESERVATION_STATE__RESERVATION_CANCELLED;
    expect_error(attribution_may(&r, &p, ATTRIBUTED, NULL, &err), &err, ST_FAILED_PRECONDITION,
                 "proposal", "is CANCELLED");
    assert_true(attribution_may(&r, &p, REFUSED, NULL, &err));

    /* FLOW: up to its units, each unit once. */
    Passerelle__Reservation flow = flow_reservation();
    assert_true(attribution_may(&flow, &p, ATTRIBUTED, NULL, &err));
    expect_error(attribution_may(&flow, &p, ATTRIBUTED, OTHER_ID, &err), &err,
                 ST_FAILED_PRECONDITION, "proposal", "already attributed");
    flow.attributed = 2;
    expect_error(attribution_may(&flow, &p, ATTRIBUTED, NULL, &err), &err, ST_FAILED_PRECONDITION,
                 "proposal", "attributed 2 of its 2 units");
}

static void test_candidates_examined(void **state)
{
    (void)state;
    Passerelle__Proposal p = proposal_of(PENDING, true);
    Passerelle__Proposal other = proposal_of(REFUSED, true);
    other.id = OTHER_ID;
    assert_true(candidate_examined_with(&p, &p));
    assert_true(candidate_examined_with(&p, &other));
    other.eligible = false;
    assert_false(candidate_examined_with(&p, &other));
    other = proposal_of(WITHDRAWN, true);
    assert_false(candidate_examined_with(&p, &other));
    other = proposal_of(RANKED, true);
    other.vacancy = 2;
    assert_false(candidate_examined_with(&p, &other));
    other = proposal_of(PENDING, true);
    other.unit_id = OTHER_UNIT_ID; /* FLOW: another released unit */
    assert_false(candidate_examined_with(&p, &other));
    other = proposal_of(PENDING, true);
    other.reservation_id = "R01JDV00000000000000000000B";
    assert_false(candidate_examined_with(&p, &other));

    char warning[PROPOSAL_WARNING_MAX];
    assert_true(candidates_warning(1, warning, sizeof warning));
    assert_string_equal(warning, "only 1 candidate examined for this vacancy; the convention "
                                 "expects at least three");
    assert_true(candidates_warning(2, warning, sizeof warning));
    assert_string_equal(warning, "only 2 candidates examined for this vacancy; the convention "
                                 "expects at least three");
    assert_false(candidates_warning(3, warning, sizeof warning));
    assert_false(candidates_warning(8, warning, sizeof warning));
}

/* --- listing ------------------------------------------------------------------ */

static void test_list_filter(void **state)
{
    (void)state;
    domain_error_t err;
    proposal_filter_t filter;
    Passerelle__ProposalListRequest req = PASSERELLE__PROPOSAL_LIST_REQUEST__INIT;
    assert_true(proposal_filter_parse(&req, &filter, &err));
    assert_int_equal(filter.page_size, PROPOSAL_LIST_PAGE_DEFAULT);
    assert_false(filter.has_decision);
    assert_false(filter.has_vacancy);

    req.has_decision = true;
    req.decision = PENDING; /* 0 is a decision to filter on, when given */
    assert_true(proposal_filter_parse(&req, &filter, &err));
    assert_true(filter.has_decision);
    req.decision = 12;
    expect_error(proposal_filter_parse(&req, &filter, &err), &err, ST_INVALID_ARGUMENT, "decision",
                 NULL);

    req = (Passerelle__ProposalListRequest)PASSERELLE__PROPOSAL_LIST_REQUEST__INIT;
    req.has_vacancy = true;
    req.vacancy = 2;
    expect_error(proposal_filter_parse(&req, &filter, &err), &err, ST_INVALID_ARGUMENT, "vacancy",
                 "reservation");
    req.reservation = RESERVATION_ID;
    assert_true(proposal_filter_parse(&req, &filter, &err));
    assert_int_equal(filter.vacancy, 2);

    req.has_page_size = true;
    req.page_size = PROPOSAL_LIST_PAGE_MAX + 1;
    expect_error(proposal_filter_parse(&req, &filter, &err), &err, ST_INVALID_ARGUMENT, "page_size",
                 NULL);
    req.page_size = 2;
    req.page_token = "nonsense";
    expect_error(proposal_filter_parse(&req, &filter, &err), &err, ST_INVALID_ARGUMENT,
                 "page_token", NULL);
    req.page_token = PROPOSAL_ID;
    assert_true(proposal_filter_parse(&req, &filter, &err));
    assert_string_equal(filter.after, PROPOSAL_ID);

    char key[PROPOSAL_INDEX_KEY_MAX];
    proposal_index_vacancy(RESERVATION_ID, 3, key);
    assert_string_equal(key, "reservations:proposals:reservation:" RESERVATION_ID ":3");
    proposal_index_decision(RANKED, key);
    assert_string_equal(key, "reservations:proposals:decision:RANKED");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_siren_luhn),
        cmocka_unit_test(test_record_validate),
        cmocka_unit_test(test_eligibility_edges),
        cmocka_unit_test(test_reservation_accepts),
        cmocka_unit_test(test_transition_table),
        cmocka_unit_test(test_decide_request),
        cmocka_unit_test(test_decision_may_apply),
        cmocka_unit_test(test_attribution_once_per_vacancy),
        cmocka_unit_test(test_candidates_examined),
        cmocka_unit_test(test_list_filter),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
