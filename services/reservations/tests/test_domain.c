/* The reservations domain rules, without Redis or sockets: unit validation
 * field by field, the convention transition table, the energy rule around
 * its change of class, end dates (29 February included) and the listing
 * filters. */
#include "domain.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

static date_t day(const char *text)
{
    date_t d;
    assert_true(date_parse(text, &d));
    return d;
}

/* A valid registration of a private unit in Pertuis, edited by each test. */
static Passerelle__UnitRegisterRequest pertuis_request(void)
{
    Passerelle__UnitRegisterRequest req = PASSERELLE__UNIT_REGISTER_REQUEST__INIT;
    req.external_ref = "ANAH-84-0001";
    req.address = "12 rue Voltaire";
    req.commune = "Pertuis";
    req.has_stock = true;
    req.stock = PASSERELLE__STOCK__STOCK_PRIVATE;
    req.has_typology = true;
    req.typology = PASSERELLE__TYPOLOGY__TYPOLOGY_T3;
    req.has_surface_m2 = true;
    req.surface_m2 = 64.5;
    req.landlord = "OWNER-7F3A";
    req.has_energy_class = true;
    req.energy_class = PASSERELLE__ENERGY_CLASS__ENERGY_D;
    return req;
}

static void expect_invalid(const Passerelle__UnitRegisterRequest *req, const char *field)
{
    Passerelle__Unit unit = PASSERELLE__UNIT__INIT;
    domain_error_t err;
    assert_false(unit_validate(req, &unit, &err));
    assert_int_equal(err.status, ST_INVALID_ARGUMENT);
    assert_string_equal(err.field, field);
    assert_true(strlen(err.message) > 0);
}

/* --- units ------------------------------------------------------------ */

static void test_unit_valid_pertuis(void **state)
{
    (void)state;
    Passerelle__UnitRegisterRequest req = pertuis_request();
    Passerelle__Unit unit = PASSERELLE__UNIT__INIT;
    domain_error_t err;
    assert_true(unit_validate(&req, &unit, &err));
    assert_string_equal(unit.commune_insee, "84089");
    assert_string_equal(unit.commune_name, "Pertuis");
    assert_string_equal(unit.territory, "CT2");
    assert_null(unit.arrondissement_insee);
    assert_int_equal(unit.stock, PASSERELLE__STOCK__STOCK_PRIVATE);
    assert_int_equal(unit.typology, PASSERELLE__TYPOLOGY__TYPOLOGY_T3);
    assert_true(unit.surface_m2 == 64.5);
    assert_string_equal(unit.landlord, "OWNER-7F3A");
    assert_false(unit.has_financing);
    assert_int_equal(unit.energy_class, PASSERELLE__ENERGY_CLASS__ENERGY_D);
}

static void test_unit_commune_by_name_and_code(void **state)
{
    (void)state;
    Passerelle__UnitRegisterRequest req = pertuis_request();
    Passerelle__Unit unit = PASSERELLE__UNIT__INIT;
    domain_error_t err;
    req.commune = "BERRE L ETANG";
    assert_true(unit_validate(&req, &unit, &err));
    assert_string_equal(unit.commune_insee, "13014");
    assert_string_equal(unit.territory, "CT3");
    req.commune = "13056";
    assert_true(unit_validate(&req, &unit, &err));
    assert_string_equal(unit.territory, "CT6");
    req.commune = "Paris";
    expect_invalid(&req, "commune");
    req.commune = "";
    expect_invalid(&req, "commune");
    req.commune = NULL;
    expect_invalid(&req, "commune");
}

static void test_unit_marseille_arrondissement(void **state)
{
    (void)state;
    Passerelle__UnitRegisterRequest req = pertuis_request();
    Passerelle__Unit unit = PASSERELLE__UNIT__INIT;
    domain_error_t err;

    req.commune = "Marseille";
    expect_invalid(&req, "arrondissement"); /* Marseille needs one */

    const char *forms[] = {"13207", "7", "7e", "Marseille 7e Arrondissement"};
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        req.arrondissement = (char *)forms[i];
        Passerelle__Unit u = PASSERELLE__UNIT__INIT;
        assert_true(unit_validate(&req, &u, &err));
        assert_string_equal(u.commune_insee, "13055");
        assert_string_equal(u.arrondissement_insee, "13207");
        assert_string_equal(u.territory, "CT1");
    }
    req.arrondissement = "17";
    expect_invalid(&req, "arrondissement");

    /* The commune given directly as an arrondissement code. */
    req.commune = "13201";
    req.arrondissement = NULL;
    assert_true(unit_validate(&req, &unit, &err));
    assert_string_equal(unit.commune_insee, "13055");
    assert_string_equal(unit.arrondissement_insee, "13201");
    req.arrondissement = "1er";
    assert_true(unit_validate(&req, &unit, &err));
    req.arrondissement = "2";
    expect_invalid(&req, "arrondissement"); /* contradicts the commune */

    /* A bare number is not a commune. */
    req.commune = "7";
    req.arrondissement = NULL;
    expect_invalid(&req, "commune");

    /* Only Marseille has arrondissements. */
    req.commune = "Aix-en-Provence";
    req.arrondissement = "13207";
    expect_invalid(&req, "arrondissement");
}

static void test_unit_external_ref(void **state)
{
    (void)state;
    Passerelle__UnitRegisterRequest req = pertuis_request();
    char long_ref[80];
    memset(long_ref, 'A', sizeof long_ref);
    long_ref[64] = '\0';
    req.external_ref = long_ref;
    Passerelle__Unit unit = PASSERELLE__UNIT__INIT;
    domain_error_t err;
    assert_true(unit_validate(&req, &unit, &err)); /* 64 is the limit */
    long_ref[64] = 'A';
    long_ref[65] = '\0';
    expect_invalid(&req, "external_ref");
    req.external_ref = NULL;
    expect_invalid(&req, "external_ref");
    req.external_ref = "";
    expect_invalid(&req, "external_ref");
    req.external_ref = "ANAH\t12";
    expect_invalid(&req, "external_ref");
    req.external_ref = " ANAH-1";
    expect_invalid(&req, "external_ref");
    req.external_ref = "ANAH-\xc3\xa9";
    expect_invalid(&req, "external_ref");
    assert_true(unit_external_ref_valid("A"));
    assert_true(unit_external_ref_valid("OPAH RU 2025/17"));
}

static void test_unit_fields(void **state)
{
    (void)state;
    Passerelle__UnitRegisterRequest req;
    char text[300];
    memset(text, 'x', sizeof text);

    req = pertuis_request();
    req.address = NULL;
    expect_invalid(&req, "address");
    text[257] = '\0';
    req.address = text;
    expect_invalid(&req, "address");
    req.address = "1 rue\nX";
    expect_invalid(&req, "address");

    req = pertuis_request();
    req.has_stock = false;
    expect_invalid(&req, "stock");
    req.has_stock = true;
    req.stock = PASSERELLE__STOCK__STOCK_UNSPECIFIED;
    expect_invalid(&req, "stock");
    req.stock = (Passerelle__Stock)9;
    expect_invalid(&req, "stock");

    req = pertuis_request();
    req.has_typology = false;
    expect_invalid(&req, "typology");
    req.has_typology = true;
    req.typology = (Passerelle__Typology)8;
    expect_invalid(&req, "typology");

    req = pertuis_request();
    const double bad_surfaces[] = {0.0, -12.0, 1000.01, NAN};
    for (size_t i = 0; i < sizeof bad_surfaces / sizeof bad_surfaces[0]; i++) {
        req.surface_m2 = bad_surfaces[i];
        expect_invalid(&req, "surface_m2");
    }
    req.has_surface_m2 = false;
    req.surface_m2 = 50;
    expect_invalid(&req, "surface_m2");
    req.has_surface_m2 = true;
    req.surface_m2 = 1000.0;
    Passerelle__Unit unit = PASSERELLE__UNIT__INIT;
    domain_error_t err;
    assert_true(unit_validate(&req, &unit, &err));

    req = pertuis_request();
    req.landlord = "";
    expect_invalid(&req, "landlord");
    memset(text, 'x', sizeof text);
    text[129] = '\0';
    req.landlord = text;
    expect_invalid(&req, "landlord");
    text[128] = '\0';
    assert_true(unit_validate(&req, &unit, &err));

    req = pertuis_request();
    req.has_energy_class = true;
    req.energy_class = (Passerelle__EnergyClass)8;
    expect_invalid(&req, "energy_class");
    req.has_energy_class = false; /* optional at registration */
    Passerelle__Unit no_class = PASSERELLE__UNIT__INIT;
    assert_true(unit_validate(&req, &no_class, &err));
    assert_false(no_class.has_energy_class);

    req = pertuis_request();
    memset(text, 'p', sizeof text);
    text[65] = '\0';
    req.programme_id = text;
    expect_invalid(&req, "programme_id");
}

static void test_unit_financing(void **state)
{
    (void)state;
    Passerelle__UnitRegisterRequest req = pertuis_request();
    req.has_financing = true;
    req.financing = PASSERELLE__FINANCING__FINANCING_PLUS;
    expect_invalid(&req, "financing"); /* PRIVATE */

    req.stock = PASSERELLE__STOCK__STOCK_SOCIAL;
    Passerelle__Unit unit = PASSERELLE__UNIT__INIT;
    domain_error_t err;
    assert_true(unit_validate(&req, &unit, &err));
    assert_true(unit.has_financing);
    assert_int_equal(unit.financing, PASSERELLE__FINANCING__FINANCING_PLUS);
    req.financing = (Passerelle__Financing)6;
    expect_invalid(&req, "financing");
}

static void test_unit_registration_differs(void **state)
{
    (void)state;
    Passerelle__UnitRegisterRequest req = pertuis_request();
    Passerelle__Unit a = PASSERELLE__UNIT__INIT;
    Passerelle__Unit b = PASSERELLE__UNIT__INIT;
    domain_error_t err;
    assert_true(unit_validate(&req, &a, &err));
    req.has_in_qpv = true; /* false, given explicitly: the same */
    req.in_qpv = false;
    assert_true(unit_validate(&req, &b, &err));
    b.id = "U01";
    b.version = 4;
    assert_null(unit_registration_differs(&a, &b));
    req.address = "14 rue Voltaire";
    assert_true(unit_validate(&req, &b, &err));
    assert_string_equal(unit_registration_differs(&a, &b), "address");
    req = pertuis_request();
    req.surface_m2 = 64.6;
    assert_true(unit_validate(&req, &b, &err));
    assert_string_equal(unit_registration_differs(&a, &b), "surface_m2");
    /* Attached to a programme since: a repeat naming none is the same, one
     * naming another programme is not. */
    req = pertuis_request();
    assert_true(unit_validate(&req, &b, &err));
    a.programme_id = "P01";
    assert_null(unit_registration_differs(&a, &b));
    b.programme_id = "P02";
    assert_string_equal(unit_registration_differs(&a, &b), "programme_id");
}

/* --- energy rule ------------------------------------------------------ */

static void test_energy_rules_default(void **state)
{
    (void)state;
    energy_rules_t rules;
    char err[128];
    assert_true(energy_rules_parse(ENERGY_RULES_DEFAULT, &rules, err, sizeof err));
    assert_int_equal(rules.base_class, PASSERELLE__ENERGY_CLASS__ENERGY_E);
    assert_int_equal(rules.step_count, 1);
    assert_int_equal(energy_rules_max_class(&rules, day("2027-12-31")),
                     PASSERELLE__ENERGY_CLASS__ENERGY_E);
    assert_int_equal(energy_rules_max_class(&rules, day("2028-01-01")),
                     PASSERELLE__ENERGY_CLASS__ENERGY_D);
    assert_int_equal(energy_rules_max_class(&rules, day("2040-06-01")),
                     PASSERELLE__ENERGY_CLASS__ENERGY_D);

    assert_true(
        energy_rules_parse("g,2025-01-01:F,2028-01-01:e,2034-01-01:D", &rules, err, sizeof err));
    assert_int_equal(rules.step_count, 3);
    assert_int_equal(energy_rules_max_class(&rules, day("2024-12-31")), 7);
    assert_int_equal(energy_rules_max_class(&rules, day("2025-01-01")), 6);
    assert_int_equal(energy_rules_max_class(&rules, day("2033-12-31")), 5);
    assert_int_equal(energy_rules_max_class(&rules, day("2034-01-01")), 4);
}

static void test_energy_rules_bad(void **state)
{
    (void)state;
    const char *bad[] = {
        "",
        "H",
        "EE",
        "E,2028-01-01",
        "E,2028-13-01:D",
        "E,2028-01-01:F",
        "E;D",
        "E,",
        "E,:D",
        "E,2028-01-01:D,2027-01-01:C",
        "E,2028-01-01:D,2028-01-01:C",
        "E,2028-01-01:DD",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        energy_rules_t rules;
        char err[128] = "";
        assert_false(energy_rules_parse(bad[i], &rules, err, sizeof err));
        assert_true(strlen(err) > 0);
    }
    energy_rules_t rules;
    char err[128];
    assert_false(energy_rules_parse(NULL, &rules, err, sizeof err));
}

/* --- conventions ------------------------------------------------------ */

static void test_transition_table(void **state)
{
    (void)state;
    const int E = PASSERELLE__CONVENTION_STATE__CONVENTION_ENVISAGED;
    const int S = PASSERELLE__CONVENTION_STATE__CONVENTION_SIGNED;
    const int F = PASSERELLE__CONVENTION_STATE__CONVENTION_IN_FORCE;
    const int X = PASSERELLE__CONVENTION_STATE__CONVENTION_EXPIRED;
    const int T = PASSERELLE__CONVENTION_STATE__CONVENTION_TERMINATED;
    const int A = PASSERELLE__CONVENTION_STATE__CONVENTION_ABANDONED;
    /* expected[from][step], END as expired; -1 where refused */
    const int expected[7][4] = {
        /* NONE */ {-1, -1, -1, -1},
        /* ENVISAGED */ {S, -1, -1, A},
        /* SIGNED */ {-1, F, -1, -1},
        /* IN_FORCE */ {-1, -1, X, -1},
        /* EXPIRED */ {-1, -1, -1, -1},
        /* TERMINATED */ {-1, -1, -1, -1},
        /* ABANDONED */ {-1, -1, -1, -1},
    };
    for (int from = 0; from < 7; from++)
        for (int step = STEP_SIGN; step <= STEP_ABANDON; step++)
            assert_int_equal(convention_transition(from, (convention_step_t)step, false),
                             expected[from][step]);
    assert_int_equal(convention_transition(F, STEP_END, true), T);
    assert_int_equal(convention_transition(E, STEP_END, true), -1);
    assert_true(convention_state_live(E));
    assert_true(convention_state_live(S));
    assert_true(convention_state_live(F));
    assert_false(convention_state_live(X));
    assert_false(convention_state_live(T));
    assert_false(convention_state_live(A));
    assert_false(convention_state_live(0));
    assert_string_equal(convention_step_event(STEP_END), "convention.ended");
    assert_string_equal(convention_step_event(STEP_ABANDON), "convention.abandoned");
    assert_string_equal(convention_step_event(STEP_SIGN), "convention.signed");
    assert_string_equal(convention_step_event(STEP_IN_FORCE), "convention.in_force");
}

static void test_end_dates(void **state)
{
    (void)state;
    char out[DATE_LEN];
    date_format(convention_end_date(day("2025-03-15"), false), out);
    assert_string_equal(out, "2031-03-15");
    date_format(convention_end_date(day("2025-03-15"), true), out);
    assert_string_equal(out, "2034-03-15");
    date_format(convention_end_date(day("2024-02-29"), false), out);
    assert_string_equal(out, "2030-02-28");
    date_format(convention_end_date(day("2024-02-29"), true), out);
    assert_string_equal(out, "2033-02-28");
    date_format(convention_end_date(day("2026-12-31"), false), out);
    assert_string_equal(out, "2032-12-31");
}

typedef struct {
    Passerelle__Convention conv;
    Passerelle__Unit unit;
    energy_rules_t rules;
} fixture_t;

static void fixture_init(fixture_t *f, int state, int energy_class)
{
    Passerelle__Convention conv = PASSERELLE__CONVENTION__INIT;
    Passerelle__Unit unit = PASSERELLE__UNIT__INIT;
    f->conv = conv;
    f->unit = unit;
    f->conv.id = "C01TEST";
    f->conv.unit_id = "U01TEST";
    f->conv.has_state = true;
    f->conv.state = state;
    f->conv.envisaged_on = "2026-01-10";
    if (state >= PASSERELLE__CONVENTION_STATE__CONVENTION_SIGNED) {
        f->conv.signed_on = "2026-02-01";
        f->conv.end_date = "2032-02-01";
    }
    if (state >= PASSERELLE__CONVENTION_STATE__CONVENTION_IN_FORCE)
        f->conv.in_force_on = "2026-03-01";
    f->unit.id = "U01TEST";
    f->unit.has_stock = true;
    f->unit.stock = PASSERELLE__STOCK__STOCK_PRIVATE;
    f->unit.has_energy_class = energy_class != 0;
    f->unit.energy_class = energy_class;
    char err[64];
    assert_true(energy_rules_parse(ENERGY_RULES_DEFAULT, &f->rules, err, sizeof err));
}

static bool step(fixture_t *f, convention_step_t s, const char *date, const char *reason,
                 convention_step_result_t *out, domain_error_t *err)
{
    Passerelle__ConventionStepRequest req = PASSERELLE__CONVENTION_STEP_REQUEST__INIT;
    req.id = "C01TEST";
    req.date = (char *)date;
    req.reason = (char *)reason;
    return convention_step_decide(&f->conv, &f->unit, s, &req, day("2026-06-15"), &f->rules, out,
                                  err);
}

static void test_sign_energy_rule(void **state)
{
    (void)state;
    fixture_t f;
    convention_step_result_t r;
    domain_error_t err;

    fixture_init(&f, PASSERELLE__CONVENTION_STATE__CONVENTION_ENVISAGED,
                 PASSERELLE__ENERGY_CLASS__ENERGY_E);
    assert_true(step(&f, STEP_SIGN, "2027-12-31", NULL, &r, &err));
    assert_int_equal(r.state, PASSERELLE__CONVENTION_STATE__CONVENTION_SIGNED);
    assert_string_equal(r.end_date, "2033-12-31");
    assert_false(step(&f, STEP_SIGN, "2028-01-01", NULL, &r, &err));
    assert_int_equal(err.status, ST_FAILED_PRECONDITION);
    assert_string_equal(err.field, "energy_class");
    assert_non_null(strstr(err.message, "class E"));
    assert_non_null(strstr(err.message, "needs D"));

    fixture_init(&f, PASSERELLE__CONVENTION_STATE__CONVENTION_ENVISAGED,
                 PASSERELLE__ENERGY_CLASS__ENERGY_D);
    assert_true(step(&f, STEP_SIGN, "2028-01-01", NULL, &r, &err));

    fixture_init(&f, PASSERELLE__CONVENTION_STATE__CONVENTION_ENVISAGED,
                 PASSERELLE__ENERGY_CLASS__ENERGY_F);
    assert_false(step(&f, STEP_SIGN, "2027-01-01", NULL, &r, &err));
    assert_string_equal(err.field, "energy_class");

    fixture_init(&f, PASSERELLE__CONVENTION_STATE__CONVENTION_ENVISAGED, 0);
    assert_false(step(&f, STEP_SIGN, "2027-01-01", NULL, &r, &err));
    assert_string_equal(err.field, "energy_class");
    assert_non_null(strstr(err.message, "no known energy class"));

    /* The default date is today; with works the convention lasts 9 years. */
    fixture_init(&f, PASSERELLE__CONVENTION_STATE__CONVENTION_ENVISAGED,
                 PASSERELLE__ENERGY_CLASS__ENERGY_A);
    f.conv.with_works = true;
    assert_true(step(&f, STEP_SIGN, NULL, NULL, &r, &err));
    assert_string_equal(r.date, "2026-06-15");
    assert_string_equal(r.end_date, "2035-06-15");
    convention_step_apply(&f.conv, STEP_SIGN, &r);
    assert_string_equal(f.conv.signed_on, "2026-06-15");
    assert_string_equal(f.conv.end_date, "2035-06-15");
    assert_int_equal(f.conv.state, PASSERELLE__CONVENTION_STATE__CONVENTION_SIGNED);
}

static void test_step_wrong_state(void **state)
{
    (void)state;
    fixture_t f;
    convention_step_result_t r;
    domain_error_t err;
    fixture_init(&f, PASSERELLE__CONVENTION_STATE__CONVENTION_SIGNED,
                 PASSERELLE__ENERGY_CLASS__ENERGY_C);
    assert_false(step(&f, STEP_ABANDON, NULL, NULL, &r, &err));
    assert_int_equal(err.status, ST_FAILED_PRECONDITION);
    assert_string_equal(err.field, "id");
    assert_string_equal(err.message,
                        "convention C01TEST is SIGNED; convention.abandon needs ENVISAGED");
    assert_false(step(&f, STEP_SIGN, NULL, NULL, &r, &err));
    assert_string_equal(err.field, "id");
    assert_false(step(&f, STEP_END, NULL, "terminated", &r, &err));
    assert_non_null(strstr(err.message, "needs IN_FORCE"));

    fixture_init(&f, PASSERELLE__CONVENTION_STATE__CONVENTION_ABANDONED,
                 PASSERELLE__ENERGY_CLASS__ENERGY_C);
    assert_false(step(&f, STEP_IN_FORCE, NULL, NULL, &r, &err));
    assert_non_null(strstr(err.message, "is ABANDONED"));
}

static void test_step_dates_and_reasons(void **state)
{
    (void)state;
    fixture_t f;
    convention_step_result_t r;
    domain_error_t err;

    fixture_init(&f, PASSERELLE__CONVENTION_STATE__CONVENTION_ENVISAGED,
                 PASSERELLE__ENERGY_CLASS__ENERGY_C);
    assert_false(step(&f, STEP_SIGN, "2026-01-09", NULL, &r, &err));
    assert_int_equal(err.status, ST_FAILED_PRECONDITION);
    assert_string_equal(err.field, "date");
    assert_true(step(&f, STEP_SIGN, "2026-01-10", NULL, &r, &err)); /* same day is fine */
    assert_false(step(&f, STEP_SIGN, "2026-02-30", NULL, &r, &err));
    assert_int_equal(err.status, ST_INVALID_ARGUMENT);
    assert_string_equal(err.field, "date");
    assert_false(step(&f, STEP_SIGN, NULL, "expired", &r, &err));
    assert_string_equal(err.field, "reason");
    assert_false(step(&f, STEP_ABANDON, "2025-12-31", NULL, &r, &err));
    assert_string_equal(err.field, "date");
    assert_true(step(&f, STEP_ABANDON, "2026-01-11", NULL, &r, &err));
    assert_int_equal(r.state, PASSERELLE__CONVENTION_STATE__CONVENTION_ABANDONED);

    fixture_init(&f, PASSERELLE__CONVENTION_STATE__CONVENTION_SIGNED,
                 PASSERELLE__ENERGY_CLASS__ENERGY_C);
    assert_false(step(&f, STEP_IN_FORCE, "2026-01-31", NULL, &r, &err));
    assert_string_equal(err.field, "date");
    assert_true(step(&f, STEP_IN_FORCE, "2026-03-01", NULL, &r, &err));
    convention_step_apply(&f.conv, STEP_IN_FORCE, &r);
    assert_string_equal(f.conv.in_force_on, "2026-03-01");

    fixture_init(&f, PASSERELLE__CONVENTION_STATE__CONVENTION_IN_FORCE,
                 PASSERELLE__ENERGY_CLASS__ENERGY_C);
    assert_false(step(&f, STEP_END, NULL, NULL, &r, &err));
    assert_int_equal(err.status, ST_INVALID_ARGUMENT);
    assert_string_equal(err.field, "reason");
    assert_false(step(&f, STEP_END, NULL, "cancelled", &r, &err));
    assert_string_equal(err.field, "reason");
    /* Expiry: not before the end date (2032-02-01). */
    assert_false(step(&f, STEP_END, "2032-01-31", "expired", &r, &err));
    assert_int_equal(err.status, ST_FAILED_PRECONDITION);
    assert_string_equal(err.field, "date");
    assert_non_null(strstr(err.message, "2032-02-01"));
    assert_true(step(&f, STEP_END, "2032-02-01", "expired", &r, &err));
    assert_int_equal(r.state, PASSERELLE__CONVENTION_STATE__CONVENTION_EXPIRED);
    assert_string_equal(r.end_reason, "expired");
    /* Termination: any time after the first lease. */
    assert_false(step(&f, STEP_END, "2026-02-28", "terminated", &r, &err));
    assert_string_equal(err.field, "date");
    assert_true(step(&f, STEP_END, "2027-05-01", "TERMINATED", &r, &err));
    assert_int_equal(r.state, PASSERELLE__CONVENTION_STATE__CONVENTION_TERMINATED);
    convention_step_apply(&f.conv, STEP_END, &r);
    assert_string_equal(f.conv.ended_on, "2027-05-01");
    assert_string_equal(f.conv.end_reason, "terminated");
}

static void test_may_envisage(void **state)
{
    (void)state;
    Passerelle__Unit unit = PASSERELLE__UNIT__INIT;
    domain_error_t err;
    unit.id = "U01X";
    unit.has_stock = true;
    unit.stock = PASSERELLE__STOCK__STOCK_SOCIAL;
    assert_false(convention_may_envisage(&unit, &err));
    assert_int_equal(err.status, ST_FAILED_PRECONDITION);
    assert_string_equal(err.field, "unit");
    assert_non_null(strstr(err.message, "SOCIAL"));

    unit.stock = PASSERELLE__STOCK__STOCK_PRIVATE;
    assert_true(convention_may_envisage(&unit, &err));
    unit.convention_id = "C01LIVE";
    for (int s = 1; s <= 6; s++) {
        unit.has_convention_state = true;
        unit.convention_state = s;
        bool live = s <= PASSERELLE__CONVENTION_STATE__CONVENTION_IN_FORCE;
        assert_int_equal(convention_may_envisage(&unit, &err), !live);
        if (live) {
            assert_string_equal(err.field, "unit");
            assert_non_null(strstr(err.message, "C01LIVE"));
            assert_non_null(strstr(err.message, convention_state_name(s)));
        }
    }
}

static void test_envisage_validate(void **state)
{
    (void)state;
    Passerelle__ConventionEnvisageRequest req = PASSERELLE__CONVENTION_ENVISAGE_REQUEST__INIT;
    domain_error_t err;
    date_t on;
    assert_false(convention_envisage_validate(&req, day("2026-06-15"), &on, &err));
    assert_string_equal(err.field, "unit");
    req.unit = "ANAH-1";
    assert_false(convention_envisage_validate(&req, day("2026-06-15"), &on, &err));
    assert_string_equal(err.field, "level");
    req.has_level = true;
    req.level = (Passerelle__ConventionLevel)4;
    assert_false(convention_envisage_validate(&req, day("2026-06-15"), &on, &err));
    assert_string_equal(err.field, "level");
    req.level = PASSERELLE__CONVENTION_LEVEL__LEVEL_LOC2;
    assert_true(convention_envisage_validate(&req, day("2026-06-15"), &on, &err));
    assert_int_equal(date_compare(on, day("2026-06-15")), 0);
    req.has_intermediation = true;
    req.intermediation = (Passerelle__Intermediation)3;
    assert_false(convention_envisage_validate(&req, day("2026-06-15"), &on, &err));
    assert_string_equal(err.field, "intermediation");
    req.intermediation = PASSERELLE__INTERMEDIATION__INTERMEDIATION_SUBLEASE;
    req.has_rent_ceiling_eur_m2 = true;
    req.rent_ceiling_eur_m2 = 0;
    assert_false(convention_envisage_validate(&req, day("2026-06-15"), &on, &err));
    assert_string_equal(err.field, "rent_ceiling_eur_m2");
    req.rent_ceiling_eur_m2 = 11.5;
    req.envisaged_on = "2026/01/01";
    assert_false(convention_envisage_validate(&req, day("2026-06-15"), &on, &err));
    assert_int_equal(err.status, ST_INVALID_ARGUMENT);
    assert_string_equal(err.field, "envisaged_on");
    req.envisaged_on = "2026-01-01";
    assert_true(convention_envisage_validate(&req, day("2026-06-15"), &on, &err));
    assert_int_equal(date_compare(on, day("2026-01-01")), 0);
}

/* --- listing ---------------------------------------------------------- */

static void test_filter_parse(void **state)
{
    (void)state;
    Passerelle__UnitListRequest req = PASSERELLE__UNIT_LIST_REQUEST__INIT;
    unit_filter_t f;
    domain_error_t err;
    assert_true(unit_filter_parse(&req, &f, &err));
    assert_int_equal(f.page_size, UNIT_LIST_PAGE_DEFAULT);
    assert_false(f.has_convention_state);
    char keys[UNIT_INDEX_CANDIDATES][UNIT_INDEX_KEY_MAX];
    assert_int_equal(unit_filter_indexes(&f, keys), 1);
    assert_string_equal(keys[0], "reservations:units");

    req.territory = "ct2";
    req.commune = "aix en provence";
    req.has_stock = true;
    req.stock = PASSERELLE__STOCK__STOCK_PRIVATE;
    req.has_convention_state = true;
    req.convention_state = PASSERELLE__CONVENTION_STATE__CONVENTION_NONE;
    req.has_page_size = true;
    req.page_size = 500;
    assert_true(unit_filter_parse(&req, &f, &err));
    assert_string_equal(f.territory, "CT2");
    assert_string_equal(f.commune_insee, "13001");
    assert_int_equal(f.page_size, 500);
    assert_int_equal(unit_filter_indexes(&f, keys), 5);
    assert_string_equal(keys[0], "reservations:units:territory:CT2");
    assert_string_equal(keys[1], "reservations:units:commune:13001");
    assert_string_equal(keys[2], "reservations:units:stock:PRIVATE");
    assert_string_equal(keys[3], "reservations:units:convention:NONE");
    assert_string_equal(keys[4], "reservations:units");

    req.page_size = 501;
    assert_false(unit_filter_parse(&req, &f, &err));
    assert_string_equal(err.field, "page_size");
    req.page_size = 0;
    assert_true(unit_filter_parse(&req, &f, &err));
    assert_int_equal(f.page_size, UNIT_LIST_PAGE_DEFAULT);

    req.territory = "CT7";
    assert_false(unit_filter_parse(&req, &f, &err));
    assert_string_equal(err.field, "territory");
    req.territory = NULL;
    req.commune = "Lyon";
    assert_false(unit_filter_parse(&req, &f, &err));
    assert_string_equal(err.field, "commune");
    req.commune = "13207";
    assert_true(unit_filter_parse(&req, &f, &err));
    assert_string_equal(f.commune_insee, "13055");
    assert_string_equal(f.arrondissement_insee, "13207");
    req.commune = NULL;
    req.stock = (Passerelle__Stock)5;
    assert_false(unit_filter_parse(&req, &f, &err));
    assert_string_equal(err.field, "stock");
    req.stock = PASSERELLE__STOCK__STOCK_SOCIAL;
    req.convention_state = (Passerelle__ConventionState)9;
    assert_false(unit_filter_parse(&req, &f, &err));
    assert_string_equal(err.field, "convention_state");
    req.convention_state = PASSERELLE__CONVENTION_STATE__CONVENTION_SIGNED;
    req.page_token = "not-an-id";
    assert_false(unit_filter_parse(&req, &f, &err));
    assert_string_equal(err.field, "page_token");
    char id[ID_LEN];
    id_new('U', id);
    req.page_token = id;
    assert_true(unit_filter_parse(&req, &f, &err));
    assert_string_equal(f.after, id);
}

static void test_filter_match_and_index_keys(void **state)
{
    (void)state;
    Passerelle__UnitRegisterRequest reg = pertuis_request();
    reg.commune = "Marseille";
    reg.arrondissement = "3";
    Passerelle__Unit unit = PASSERELLE__UNIT__INIT;
    domain_error_t err;
    assert_true(unit_validate(&reg, &unit, &err));
    unit.has_convention_state = true;
    unit.convention_state = PASSERELLE__CONVENTION_STATE__CONVENTION_ENVISAGED;

    Passerelle__UnitListRequest req = PASSERELLE__UNIT_LIST_REQUEST__INIT;
    unit_filter_t f;
    assert_true(unit_filter_parse(&req, &f, &err));
    assert_true(unit_filter_match(&f, &unit));
    req.territory = "CT1";
    req.commune = "13203";
    req.has_stock = true;
    req.stock = PASSERELLE__STOCK__STOCK_PRIVATE;
    req.has_convention_state = true;
    req.convention_state = PASSERELLE__CONVENTION_STATE__CONVENTION_ENVISAGED;
    assert_true(unit_filter_parse(&req, &f, &err));
    assert_true(unit_filter_match(&f, &unit));
    req.commune = "13204";
    assert_true(unit_filter_parse(&req, &f, &err));
    assert_false(unit_filter_match(&f, &unit));
    req.commune = "Marseille";
    req.convention_state = PASSERELLE__CONVENTION_STATE__CONVENTION_NONE;
    assert_true(unit_filter_parse(&req, &f, &err));
    assert_false(unit_filter_match(&f, &unit));
    req.has_convention_state = false;
    req.stock = PASSERELLE__STOCK__STOCK_SOCIAL;
    assert_true(unit_filter_parse(&req, &f, &err));
    assert_false(unit_filter_match(&f, &unit));
    req.stock = PASSERELLE__STOCK__STOCK_PRIVATE;
    req.territory = "CT2";
    assert_true(unit_filter_parse(&req, &f, &err));
    assert_false(unit_filter_match(&f, &unit));

    char keys[UNIT_INDEX_CANDIDATES][UNIT_INDEX_KEY_MAX];
    unit_index_keys(&unit, keys);
    assert_string_equal(keys[0], "reservations:units");
    assert_string_equal(keys[1], "reservations:units:territory:CT1");
    assert_string_equal(keys[2], "reservations:units:commune:13055");
    assert_string_equal(keys[3], "reservations:units:stock:PRIVATE");
    assert_string_equal(keys[4], "reservations:units:convention:ENVISAGED");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unit_valid_pertuis),
        cmocka_unit_test(test_unit_commune_by_name_and_code),
        cmocka_unit_test(test_unit_marseille_arrondissement),
        cmocka_unit_test(test_unit_external_ref),
        cmocka_unit_test(test_unit_fields),
        cmocka_unit_test(test_unit_financing),
        cmocka_unit_test(test_unit_registration_differs),
        cmocka_unit_test(test_energy_rules_default),
        cmocka_unit_test(test_energy_rules_bad),
        cmocka_unit_test(test_transition_table),
        cmocka_unit_test(test_end_dates),
        cmocka_unit_test(test_sign_energy_rule),
        cmocka_unit_test(test_step_wrong_state),
        cmocka_unit_test(test_step_dates_and_reasons),
        cmocka_unit_test(test_may_envisage),
        cmocka_unit_test(test_envisage_validate),
        cmocka_unit_test(test_filter_parse),
        cmocka_unit_test(test_filter_match_and_index_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
