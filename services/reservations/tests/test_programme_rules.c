/* Programme rules without Redis or sockets: every refusal of a programme,
 * an objective, a listing and a progress request with its field; the
 * place rules of attaching a unit; the progress counters a reservation
 * moves, their recount, and the rows of a report. */
#include "programme_rules.h"
#include "progress.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#define KIND(k) PASSERELLE__PROGRAMME_KIND__PROGRAMME_##k

/* A valid PIG in Pertuis and Aix (CT2), edited by each test. */
static Passerelle__ProgrammeCreateRequest pig_request(void)
{
    static char *communes[] = {"Pertuis", "13001"};
    Passerelle__ProgrammeCreateRequest req = PASSERELLE__PROGRAMME_CREATE_REQUEST__INIT;
    req.name = "PIG Pays d'Aix 2025-2027";
    req.has_kind = true;
    req.kind = KIND(PIG);
    req.n_communes = 2;
    req.communes = communes;
    req.start_date = "2025-01-01";
    req.end_date = "2027-12-31";
    req.operator_ = "Soliha Provence";
    return req;
}

static void expect_invalid(const Passerelle__ProgrammeCreateRequest *req, const char *field)
{
    Passerelle__Programme prog = PASSERELLE__PROGRAMME__INIT;
    programme_scratch_t scratch;
    domain_error_t err;
    assert_false(programme_validate(req, &prog, &scratch, &err));
    assert_int_equal(err.status, ST_INVALID_ARGUMENT);
    assert_string_equal(err.field, field);
    assert_true(strlen(err.message) > 0);
}

/* --- programme.create --------------------------------------------------- */

static void test_programme_valid(void **state)
{
    (void)state;
    Passerelle__ProgrammeCreateRequest req = pig_request();
    Passerelle__Programme prog = PASSERELLE__PROGRAMME__INIT;
    programme_scratch_t scratch;
    domain_error_t err;
    assert_true(programme_validate(&req, &prog, &scratch, &err));
    assert_string_equal(prog.territory, "CT2");
    assert_int_equal(prog.n_communes, 2);
    assert_string_equal(prog.communes[0], "84089");
    assert_string_equal(prog.communes[1], "13001");
    assert_string_equal(prog.operator_, "Soliha Provence");
    assert_null(prog.npnru);
    assert_false(prog.has_ownership_scheme);

    /* A whole territory, given in lower case; duplicates folded. */
    char *twice[] = {"Pertuis", "84089", "PERTUIS"};
    req.communes = twice;
    req.n_communes = 3;
    req.territory = "ct2";
    assert_true(programme_validate(&req, &prog, &scratch, &err));
    assert_int_equal(prog.n_communes, 1);
    assert_string_equal(prog.territory, "CT2");
    req.n_communes = 0;
    req.communes = NULL;
    assert_true(programme_validate(&req, &prog, &scratch, &err));
    assert_int_equal(prog.n_communes, 0);

    /* A social ownership operation needs no operator but a scheme. */
    req.kind = KIND(SOCIAL_OWNERSHIP);
    req.operator_ = NULL;
    req.has_ownership_scheme = true;
    req.ownership_scheme = PASSERELLE__OWNERSHIP_SCHEME__OWNERSHIP_BRS;
    assert_true(programme_validate(&req, &prog, &scratch, &err));
    assert_int_equal(prog.ownership_scheme, PASSERELLE__OWNERSHIP_SCHEME__OWNERSHIP_BRS);

    /* An NPNRU keeps its counterparts, without the reply-only counts. */
    Passerelle__NpnruCounterparts npnru = PASSERELLE__NPNRU_COUNTERPARTS__INIT;
    npnru.has_rights_in_qpv = true;
    npnru.rights_in_qpv = 40;
    npnru.has_used_in_qpv = true;
    npnru.used_in_qpv = 7;
    req.kind = KIND(NPNRU);
    req.has_ownership_scheme = false;
    req.npnru = &npnru;
    assert_true(programme_validate(&req, &prog, &scratch, &err));
    assert_non_null(prog.npnru);
    assert_int_equal(prog.npnru->rights_in_qpv, 40);
    assert_false(prog.npnru->has_used_in_qpv);
    req.npnru = NULL;
    assert_true(programme_validate(&req, &prog, &scratch, &err));
    assert_non_null(prog.npnru);
}

static void test_programme_invalid(void **state)
{
    (void)state;
    Passerelle__ProgrammeCreateRequest req = pig_request();
    req.name = "";
    expect_invalid(&req, "name");
    char long_name[420];
    memset(long_name, 'a', 201);
    long_name[201] = '\0';
    req.name = long_name;
    expect_invalid(&req, "name");
    /* 200 characters of two bytes each are still 200 characters. */
    for (int i = 0; i < 200; i++)
        memcpy(long_name + 2 * i, "\xc3\xa9", 2);
    long_name[400] = '\0';
    Passerelle__Programme prog = PASSERELLE__PROGRAMME__INIT;
    programme_scratch_t scratch;
    domain_error_t err;
    assert_true(programme_validate(&req, &prog, &scratch, &err));
    memcpy(long_name + 400, "\xc3\xa9", 3);
    expect_invalid(&req, "name");
    req.name = "Op\x01ration";
    expect_invalid(&req, "name");
    req = pig_request();

    req.has_kind = false;
    expect_invalid(&req, "kind");
    req.has_kind = true;
    req.kind = 9;
    expect_invalid(&req, "kind");
    req = pig_request();

    char *outside[] = {"Lyon"};
    req.communes = outside;
    req.n_communes = 1;
    expect_invalid(&req, "communes");
    char *two_territories[] = {"Pertuis", "Martigues"};
    req.communes = two_territories;
    req.n_communes = 2;
    expect_invalid(&req, "communes");
    char *aix[] = {"Aix-en-Provence"};
    req.communes = aix;
    req.n_communes = 1;
    req.territory = "CT1";
    expect_invalid(&req, "communes");
    req.territory = "CT7";
    expect_invalid(&req, "territory");
    req.territory = NULL;
    req.n_communes = 0;
    expect_invalid(&req, "territory");
    req = pig_request();

    req.start_date = NULL;
    expect_invalid(&req, "start_date");
    req.start_date = "2025-02-30";
    expect_invalid(&req, "start_date");
    req.start_date = "2025-01-01";
    req.end_date = "2025-01-01";
    expect_invalid(&req, "end_date");
    req.end_date = "2024-12-31";
    expect_invalid(&req, "end_date");
    req.end_date = NULL;
    expect_invalid(&req, "end_date");
    req = pig_request();

    req.operator_ = NULL;
    expect_invalid(&req, "operator");
    req.kind = KIND(OPAH);
    expect_invalid(&req, "operator");
    req.kind = KIND(OPAH_RU);
    expect_invalid(&req, "operator");
    req.operator_ = "bad\noperator";
    expect_invalid(&req, "operator");
    req = pig_request();

    req.has_ownership_scheme = true;
    req.ownership_scheme = PASSERELLE__OWNERSHIP_SCHEME__OWNERSHIP_PSLA;
    expect_invalid(&req, "ownership_scheme");
    req.kind = KIND(SOCIAL_OWNERSHIP);
    req.ownership_scheme = PASSERELLE__OWNERSHIP_SCHEME__OWNERSHIP_UNSPECIFIED;
    expect_invalid(&req, "ownership_scheme");
    req.has_ownership_scheme = false;
    expect_invalid(&req, "ownership_scheme");
    req = pig_request();

    Passerelle__NpnruCounterparts npnru = PASSERELLE__NPNRU_COUNTERPARTS__INIT;
    req.npnru = &npnru;
    expect_invalid(&req, "npnru");
    req.kind = KIND(NPNRU);
    npnru.has_land_surface_m2 = true;
    npnru.land_surface_m2 = -1;
    expect_invalid(&req, "npnru");
}

/* --- attaching units ----------------------------------------------------- */

static void test_attach_decide(void **state)
{
    (void)state;
    char *communes[] = {"84089"};
    Passerelle__Programme prog = PASSERELLE__PROGRAMME__INIT;
    prog.id = "P01JDV000000000000000000000";
    prog.territory = "CT2";
    prog.communes = communes;
    prog.n_communes = 1;

    Passerelle__Unit unit = PASSERELLE__UNIT__INIT;
    unit.id = "U01JDV000000000000000000001";
    unit.commune_insee = "84089";
    unit.commune_name = "Pertuis";
    unit.territory = "CT2";
    domain_error_t err;
    assert_int_equal(programme_attach_decide(&prog, &unit, &err), ATTACH_NEW);

    /* Aix is in CT2 but not one of the programme's communes. */
    unit.commune_insee = "13001";
    unit.commune_name = "Aix-en-Provence";
    assert_int_equal(programme_attach_decide(&prog, &unit, &err), ATTACH_REFUSED);
    assert_int_equal(err.status, ST_FAILED_PRECONDITION);
    assert_string_equal(err.field, "unit");
    /* A programme over the whole territory takes it. */
    prog.n_communes = 0;
    assert_int_equal(programme_attach_decide(&prog, &unit, &err), ATTACH_NEW);
    unit.territory = "CT1";
    assert_int_equal(programme_attach_decide(&prog, &unit, &err), ATTACH_REFUSED);
    assert_int_equal(err.status, ST_FAILED_PRECONDITION);
    unit.territory = "CT2";

    unit.programme_id = prog.id;
    assert_int_equal(programme_attach_decide(&prog, &unit, &err), ATTACH_ALREADY);
    unit.programme_id = "P01JDV000000000000000000009";
    assert_int_equal(programme_attach_decide(&prog, &unit, &err), ATTACH_REFUSED);
    assert_int_equal(err.status, ST_CONFLICT);
    assert_string_equal(err.field, "unit");
    assert_non_null(strstr(err.message, "P01JDV000000000000000000009"));
}

/* --- listing, objectives, progress requests ---------------------------- */

static void test_filter(void **state)
{
    (void)state;
    Passerelle__ProgrammeListRequest req = PASSERELLE__PROGRAMME_LIST_REQUEST__INIT;
    programme_filter_t filter;
    domain_error_t err;
    assert_true(programme_filter_parse(&req, &filter, &err));
    assert_int_equal(filter.page_size, PROGRAMME_LIST_PAGE_DEFAULT);
    char key[PROGRAMME_INDEX_KEY_MAX];
    programme_filter_index(&filter, key);
    assert_string_equal(key, "reservations:programmes");

    req.territory = "ct5";
    req.has_kind = true;
    req.kind = KIND(NPNRU);
    assert_true(programme_filter_parse(&req, &filter, &err));
    programme_filter_index(&filter, key);
    assert_string_equal(key, "reservations:programmes:territory:CT5");
    Passerelle__Programme prog = PASSERELLE__PROGRAMME__INIT;
    prog.territory = "CT5";
    prog.kind = KIND(NPNRU);
    assert_true(programme_filter_match(&filter, &prog));
    prog.kind = KIND(PIG);
    assert_false(programme_filter_match(&filter, &prog));

    req.territory = "CT0";
    assert_false(programme_filter_parse(&req, &filter, &err));
    assert_string_equal(err.field, "territory");
    req.territory = NULL;
    req.kind = 42;
    assert_false(programme_filter_parse(&req, &filter, &err));
    assert_string_equal(err.field, "kind");
    req.has_kind = false;
    req.has_page_size = true;
    req.page_size = PROGRAMME_LIST_PAGE_MAX + 1;
    assert_false(programme_filter_parse(&req, &filter, &err));
    assert_string_equal(err.field, "page_size");
    req.page_size = 5;
    req.page_token = "U01JDV000000000000000000001";
    assert_false(programme_filter_parse(&req, &filter, &err));
    assert_string_equal(err.field, "page_token");
}

static void expect_objective_invalid(const Passerelle__ObjectiveSetRequest *req, const char *field)
{
    domain_error_t err;
    assert_false(objective_validate(req, &err));
    assert_int_equal(err.status, ST_INVALID_ARGUMENT);
    assert_string_equal(err.field, field);
}

static void test_objective(void **state)
{
    (void)state;
    Passerelle__ObjectiveSetRequest req = PASSERELLE__OBJECTIVE_SET_REQUEST__INIT;
    req.programme = "P01JDV000000000000000000000";
    req.has_year = true;
    req.year = 2026;
    req.has_units = true;
    req.units = 12;
    domain_error_t err;
    assert_true(objective_validate(&req, &err));
    req.units = 0; /* clears */
    assert_true(objective_validate(&req, &err));
    req.units = OBJECTIVE_UNITS_MAX + 1;
    expect_objective_invalid(&req, "units");
    req.has_units = false;
    expect_objective_invalid(&req, "units");
    req.has_units = true;
    req.units = 3;

    req.year = 1999;
    expect_objective_invalid(&req, "year");
    req.year = 2101;
    expect_objective_invalid(&req, "year");
    req.has_year = false;
    expect_objective_invalid(&req, "year");
    req.has_year = true;
    req.year = 2100;
    assert_true(objective_validate(&req, &err));

    req.has_level = true;
    req.level = PASSERELLE__CONVENTION_LEVEL__LEVEL_LOC2;
    assert_true(objective_validate(&req, &err));
    req.has_financing = true;
    req.financing = PASSERELLE__FINANCING__FINANCING_PLUS;
    expect_objective_invalid(&req, "financing");
    req.has_level = false;
    assert_true(objective_validate(&req, &err));
    req.financing = 6;
    expect_objective_invalid(&req, "financing");
    req.has_financing = false;
    req.has_level = true;
    req.level = 4;
    expect_objective_invalid(&req, "level");
    req.has_level = false;

    req.programme = NULL;
    expect_objective_invalid(&req, "programme");
    req.programme = "U01JDV000000000000000000001";
    expect_objective_invalid(&req, "programme");

    char member[OBJECTIVE_KEY_MAX], id[ID_LEN];
    int level = -1, financing = -1;
    objective_member("P01JDV000000000000000000000", 2, 0, member);
    assert_true(objective_member_parse(member, id, &level, &financing));
    assert_string_equal(id, "P01JDV000000000000000000000");
    assert_int_equal(level, 2);
    assert_int_equal(financing, 0);
    assert_false(
        objective_member_parse("P01JDV0000000000000000000000:9:0", id, &level, &financing));
    assert_false(objective_member_parse("garbage", id, &level, &financing));
}

static void test_progress_scope(void **state)
{
    (void)state;
    date_t today = {2026, 3, 15};
    Passerelle__ProgressRequest req = PASSERELLE__PROGRESS_REQUEST__INIT;
    progress_scope_t scope;
    domain_error_t err;
    assert_true(progress_scope_parse(&req, today, &scope, &err));
    assert_int_equal(scope.year, 2026);
    assert_string_equal(scope.programme_id, "");
    req.territory = "ct1";
    req.has_year = true;
    req.year = 2025;
    assert_true(progress_scope_parse(&req, today, &scope, &err));
    assert_string_equal(scope.territory, "CT1");
    assert_int_equal(scope.year, 2025);
    req.programme = "P01JDV000000000000000000000";
    assert_false(progress_scope_parse(&req, today, &scope, &err));
    assert_string_equal(err.field, "territory");
    req.territory = NULL;
    req.programme = "nope";
    assert_false(progress_scope_parse(&req, today, &scope, &err));
    assert_string_equal(err.field, "programme");
    req.programme = NULL;
    req.territory = "CT9";
    assert_false(progress_scope_parse(&req, today, &scope, &err));
    assert_string_equal(err.field, "territory");
    req.territory = NULL;
    req.year = 1850;
    assert_false(progress_scope_parse(&req, today, &scope, &err));
    assert_string_equal(err.field, "year");
}

/* --- progress counters ---------------------------------------------------- */

#define PROG_A "P01JDV00000000000000000000A"
#define PROG_B "P01JDV00000000000000000000B"

static Passerelle__Reservation stock(const char *programme, const char *territory, int level,
                                     int financing, bool in_qpv)
{
    Passerelle__Reservation r = PASSERELLE__RESERVATION__INIT;
    r.has_reservataire = true;
    r.reservataire = PASSERELLE__RESERVATAIRE__RESERVATAIRE_ACTION_LOGEMENT;
    r.has_mode = true;
    r.mode = PASSERELLE__RESERVATION_MODE__MODE_STOCK;
    r.programme_id = (char *)programme;
    r.territory = (char *)territory;
    r.has_year = true;
    r.year = 2026;
    r.has_units = true;
    r.units = 1;
    r.has_level = level != 0;
    r.level = level;
    r.has_financing = financing != 0;
    r.financing = financing;
    r.has_in_qpv = true;
    r.in_qpv = in_qpv;
    r.has_state = true;
    r.state = PASSERELLE__RESERVATION_STATE__RESERVATION_ACTIVE;
    return r;
}

static void test_progress_entries(void **state)
{
    (void)state;
    progress_entry_t e[PROGRESS_ENTRIES_MAX];
    Passerelle__Reservation r = stock(PROG_A, "CT2", 2, 0, false);
    size_t n = progress_entries(&r, +1, e);
    assert_int_equal(n, 4);
    assert_string_equal(e[0].key, "reservations:progress:2026");
    assert_string_equal(e[0].field, "programme:" PROG_A);
    assert_string_equal(e[1].field, "programme:" PROG_A ":level:LOC2");
    assert_string_equal(e[2].field, "territory:CT2");
    assert_string_equal(e[3].key, PROGRESS_RIGHTS_KEY);
    assert_string_equal(e[3].field, "programme:" PROG_A ":outside_qpv");
    for (size_t i = 0; i < n; i++)
        assert_int_equal(e[i].delta, 1);

    /* A cancellation takes the same counters down. */
    r.state = PASSERELLE__RESERVATION_STATE__RESERVATION_CANCELLED;
    n = progress_entries(&r, -1, e);
    assert_int_equal(n, 4);
    assert_int_equal(e[0].delta, -1);

    /* STOCK counts one unit whatever `units` says; FLOW its units. */
    r = stock(NULL, "CT1", 0, PASSERELLE__FINANCING__FINANCING_PLUS, true);
    r.units = 5;
    n = progress_entries(&r, +1, e);
    assert_int_equal(n, 1);
    assert_string_equal(e[0].field, "territory:CT1");
    assert_int_equal(e[0].delta, 1);
    r = stock(PROG_B, "CT1", 0, PASSERELLE__FINANCING__FINANCING_PLUS, true);
    r.mode = PASSERELLE__RESERVATION_MODE__MODE_FLOW;
    r.units = 5;
    n = progress_entries(&r, +1, e);
    assert_int_equal(n, 4);
    assert_string_equal(e[1].field, "programme:" PROG_B ":financing:PLUS");
    assert_string_equal(e[3].field, "programme:" PROG_B ":in_qpv");
    assert_int_equal(e[0].delta, 5);

    /* Other reservataires do not count; the year falls back on the start. */
    r.reservataire = PASSERELLE__RESERVATAIRE__RESERVATAIRE_COMMUNE;
    assert_int_equal(progress_entries(&r, +1, e), 0);
    r.reservataire = PASSERELLE__RESERVATAIRE__RESERVATAIRE_ACTION_LOGEMENT;
    r.has_year = false;
    r.start_date = "2027-04-01";
    assert_int_equal(progress_year(&r), 2027);
    n = progress_entries(&r, +1, e);
    assert_string_equal(e[0].key, "reservations:progress:2027");
}

static void test_recount(void **state)
{
    (void)state;
    Passerelle__Reservation rs[6];
    rs[0] = stock(PROG_A, "CT2", 1, 0, false);
    rs[1] = stock(PROG_A, "CT2", 1, 0, true);
    rs[2] = stock(PROG_A, "CT2", 3, 0, false);
    rs[3] = stock(PROG_A, "CT2", 3, 0, false);
    rs[3].state = PASSERELLE__RESERVATION_STATE__RESERVATION_CANCELLED;
    rs[4] = stock(PROG_A, "CT2", 2, 0, false);
    rs[4].state = PASSERELLE__RESERVATION_STATE__RESERVATION_RELEASED;
    rs[5] = stock(NULL, "CT2", 0, 0, false);
    rs[5].reservataire = PASSERELLE__RESERVATAIRE__RESERVATAIRE_STATE;
    const Passerelle__Reservation *ptrs[6];
    for (size_t i = 0; i < 6; i++)
        ptrs[i] = &rs[i];

    progress_tally_t *recount = progress_tally_new();
    progress_recount(ptrs, 6, recount);
    const char *year = "reservations:progress:2026";
    assert_int_equal(progress_tally_get(recount, year, "programme:" PROG_A), 4);
    assert_int_equal(progress_tally_get(recount, year, "programme:" PROG_A ":level:LOC1"), 2);
    assert_int_equal(progress_tally_get(recount, year, "programme:" PROG_A ":level:LOC2"), 1);
    assert_int_equal(progress_tally_get(recount, year, "programme:" PROG_A ":level:LOC3"), 1);
    assert_int_equal(progress_tally_get(recount, year, "territory:CT2"), 4);
    assert_int_equal(
        progress_tally_get(recount, PROGRESS_RIGHTS_KEY, "programme:" PROG_A ":in_qpv"), 1);
    assert_int_equal(
        progress_tally_get(recount, PROGRESS_RIGHTS_KEY, "programme:" PROG_A ":outside_qpv"), 3);

    /* Counting write by write - every creation, then the cancellation -
     * gives the recount; a doubled write is told apart. */
    progress_tally_t *counters = progress_tally_new();
    for (size_t i = 0; i < 6; i++) {
        progress_entry_t e[PROGRESS_ENTRIES_MAX];
        size_t n = progress_entries(&rs[i], +1, e);
        for (size_t j = 0; j < n; j++)
            progress_tally_add(counters, e[j].key, e[j].field, e[j].delta);
    }
    char diff[256] = "";
    assert_false(progress_tally_equal(counters, recount, diff, sizeof diff));
    assert_non_null(strstr(diff, " != "));
    progress_entry_t e[PROGRESS_ENTRIES_MAX];
    size_t n = progress_entries(&rs[3], -1, e);
    for (size_t j = 0; j < n; j++)
        progress_tally_add(counters, e[j].key, e[j].field, e[j].delta);
    assert_true(progress_tally_equal(counters, recount, diff, sizeof diff));
    progress_tally_add(counters, year, "territory:CT2", 1);
    assert_false(progress_tally_equal(counters, recount, diff, sizeof diff));
    assert_non_null(strstr(diff, "territory:CT2"));

    progress_tally_destroy(&counters);
    progress_tally_destroy(&recount);
    assert_null(recount);
}

static void test_report(void **state)
{
    (void)state;
    progress_programme_t programmes[] = {
        {PROG_A, "CT2", 2025, 2027}, {PROG_B, "CT2", 2020, 2021}, /* over, and nothing this year */
    };
    progress_objective_t objectives[] = {
        {PROG_A, 0, 0, 12},
        {PROG_A, 2, 0, 4},
        {PROG_A, 0, PASSERELLE__FINANCING__FINANCING_PLAI, 2},
    };
    progress_tally_t *counters = progress_tally_new();
    const char *year = "reservations:progress:2026";
    progress_tally_add(counters, year, "programme:" PROG_A, 3);
    progress_tally_add(counters, year, "programme:" PROG_A ":level:LOC1", 3);
    progress_tally_add(counters, year, "territory:CT2", 5);
    const char *territories[] = {"CT2", "CT3"};
    progress_report_t report;
    assert_true(progress_report_build(2026, programmes, 2, objectives, 3, counters, territories, 2,
                                      &report));
    /* A total, LOC1 (achieved only), LOC2 (objective only), PLAI, then the
     * two territories. */
    assert_int_equal(report.count, 6);
    Passerelle__ProgressRow **rows = report.row_ptrs;
    assert_string_equal(rows[0]->programme_id, PROG_A);
    assert_false(rows[0]->has_level);
    assert_int_equal(rows[0]->objective, 12);
    assert_int_equal(rows[0]->achieved, 3);
    assert_true(rows[0]->has_ratio);
    assert_true(rows[0]->ratio > 0.249 && rows[0]->ratio < 0.251);
    assert_int_equal(rows[1]->level, 1);
    assert_int_equal(rows[1]->objective, 0);
    assert_int_equal(rows[1]->achieved, 3);
    assert_false(rows[1]->has_ratio);
    assert_int_equal(rows[2]->level, 2);
    assert_int_equal(rows[2]->objective, 4);
    assert_int_equal(rows[2]->achieved, 0);
    assert_true(rows[2]->has_ratio);
    assert_true(rows[3]->has_financing);
    assert_int_equal(rows[3]->financing, PASSERELLE__FINANCING__FINANCING_PLAI);
    assert_null(rows[4]->programme_id);
    assert_string_equal(rows[4]->territory, "CT2");
    assert_int_equal(rows[4]->objective, 12);
    assert_int_equal(rows[4]->achieved, 5);
    assert_string_equal(rows[5]->territory, "CT3");
    assert_int_equal(rows[5]->objective, 0);
    assert_int_equal(rows[5]->achieved, 0);
    progress_report_free(&report);

    /* The old programme shows once it has an achievement that year. */
    progress_tally_add(counters, year, "programme:" PROG_B, 1);
    assert_true(
        progress_report_build(2026, programmes, 2, objectives, 3, counters, NULL, 0, &report));
    assert_int_equal(report.count, 5);
    assert_string_equal(report.row_ptrs[4]->programme_id, PROG_B);
    progress_report_free(&report);
    progress_tally_destroy(&counters);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_programme_valid),  cmocka_unit_test(test_programme_invalid),
        cmocka_unit_test(test_attach_decide),    cmocka_unit_test(test_filter),
        cmocka_unit_test(test_objective),        cmocka_unit_test(test_progress_scope),
        cmocka_unit_test(test_progress_entries), cmocka_unit_test(test_recount),
        cmocka_unit_test(test_report),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
