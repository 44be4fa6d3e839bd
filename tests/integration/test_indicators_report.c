/* `passerelle report`, the yearly review, as a user makes it: a small fixed
 * history written through the real services (reservations, the document
 * store, the indicators' need side), counted by the real indicators
 * service, then the real CLI writing the report. The report must:
 *   - need nothing from the network (no script, no stylesheet or image
 *     fetched, links only inside the page);
 *   - render: headless Chromium (Debian's `chromium`) takes a screenshot,
 *     decoded here (zlib inflate, PNG unfiltering), which must not be
 *     blank and must show the charts' colours;
 *   - hold in its tables, cell for cell, what indicator.series answers for
 *     the indicator, scope, period and filter each cell names.
 * Chromium missing is a failure, not a skip: CI installs it. */
#define _GNU_SOURCE
#include "harness.h"
#include "ids.h"
#include "indicators.pb-c.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

#define OK                   PASSERELLE__STATUS__STATUS_OK
#define CLI_DEADLINE_MS      60000
#define CATCH_UP_MS          30000
#define CHROMIUM_DEADLINE_MS 120000
#define SHOT_WIDTH           1280
#define SHOT_HEIGHT          4000
#define SIREN_OK             "732829320"

typedef struct {
    harness_stack_t stack; /* Redis, reservations, keys; its client is admin's */
    harness_service_t docstore;
    harness_service_t indicators;
    client_t *docs; /* admin, of the document store */
    client_t *ind;  /* admin, of the indicators */
    harness_cli_t cli;
    int year; /* this year in Paris: the history's */
    char year_text[8];
    bool history_counted;
    char report[700]; /* the report of the whole history, once made */
    bool report_made;
} fixture_t;

static fixture_t fx;

#define run_cli(...) harness_run_cli(&fx.cli, NULL, __VA_ARGS__, NULL)

/* Runs the CLI against the indicators service as the housing observatory
 * would (a partner key: reading figures is open to every party). */
#define run_report(...) harness_run_cli_as(&fx.cli, "partner", "report", __VA_ARGS__, NULL)

static void path_in(char *out, size_t out_size, const char *name)
{
    int n = snprintf(out, out_size, "%s/%s", fx.stack.dir, name);
    assert_true(n > 0 && (size_t)n < out_size);
}

/* ==========================================================================
 * Setup
 * ======================================================================== */

static int group_setup(void **state)
{
    (void)state;
    memset(&fx, 0, sizeof fx);
    if (harness_stack_start(&fx.stack, "indreport", "admin", NULL) != 0)
        return -1;
    char blobs[600], blobs_env[700];
    path_in(blobs, sizeof blobs, "blobs");
    if (mkdir(blobs, 0700) != 0)
        return -1;
    snprintf(blobs_env, sizeof blobs_env, "PASSERELLE_DOCSTORE_DIR=%s", blobs);
    char *docstore_env[] = {blobs_env, NULL};
    if (harness_service_start(&fx.docstore, "docstore", fx.stack.dir, docstore_env) != 0)
        return -1;
    if (harness_indicators_start(&fx.stack, &fx.indicators, NULL) != 0)
        return -1;
    fx.docs = harness_notify_client(&fx.stack, &fx.docstore, "admin");
    fx.ind = harness_indicators_client(&fx.stack, &fx.indicators, "admin");
    if (!fx.docs || !fx.ind)
        return -1;
    harness_cli_init(&fx.cli, fx.stack.dir, NULL, CLI_DEADLINE_MS);
    harness_cli_service(&fx.cli, NULL, fx.indicators.endpoint, fx.stack.keys);
    fx.year = date_today_paris().year;
    snprintf(fx.year_text, sizeof fx.year_text, "%d", fx.year % 10000);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    client_destroy(&fx.docs);
    client_destroy(&fx.ind);
    /* a run under the sanitizers must leave no report in the services' logs */
    bool clean = harness_service_stop_checked(&fx.indicators);
    clean = harness_service_stop_checked(&fx.docstore) && clean;
    clean = harness_stack_stop(&fx.stack) && clean;
    return clean ? 0 : -1;
}

/* ==========================================================================
 * The history
 * ======================================================================== */

/* The day `days` before today (Paris), as YYYY-MM-DD. */
static void days_ago(int days, char out[DATE_LEN])
{
    date_t today = date_today_paris();
    struct tm tm = {.tm_year = today.year - 1900,
                    .tm_mon = today.month - 1,
                    .tm_mday = today.day,
                    .tm_hour = 12};
    time_t t = timegm(&tm) - (time_t)days * 86400;
    gmtime_r(&t, &tm);
    date_t d = {tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday};
    date_format(d, out);
}

/* Registers a unit (private, energy class D, unless social); its id. */
static void unit(const char *ref, const char *commune, const char *arrondissement, bool social,
                 char id[ID_LEN])
{
    Passerelle__UnitRegisterRequest req;
    harness_unit_request(&req, ref);
    req.commune = (char *)commune;
    req.arrondissement = (char *)arrondissement;
    if (social)
        harness_unit_social(&req, "Erilia");
    harness_unit_register(fx.stack.client, &req, id);
}

static void envisage(const char *unit_id, Passerelle__ConventionLevel level, int days_before)
{
    char on[DATE_LEN];
    days_ago(days_before, on);
    Passerelle__ConventionEnvisageRequest req = PASSERELLE__CONVENTION_ENVISAGE_REQUEST__INIT;
    req.unit = (char *)unit_id;
    req.has_level = true;
    req.level = level;
    req.envisaged_on = on;
    harness_call_ok(fx.stack.client, "convention.envisage", &req.base, NULL);
}

/* convention.sign, .in_force, .end or .abandon of the unit's convention,
 * today. */
static void step(const char *type, const char *unit_id, const char *reason)
{
    Passerelle__ConventionStepRequest req = PASSERELLE__CONVENTION_STEP_REQUEST__INIT;
    req.unit = (char *)unit_id;
    req.reason = (char *)reason;
    harness_call_ok(fx.stack.client, type, &req.base, NULL);
}

/* An Action Logement reservation; its id. */
static void reserve(Passerelle__ReservationCreateRequest *req, char id[ID_LEN])
{
    Passerelle__Reservation *r = (Passerelle__Reservation *)harness_call_ok(
        fx.stack.client, "reservation.create", &req->base, &passerelle__reservation__descriptor);
    snprintf(id, ID_LEN, "%s", r->id);
    passerelle__reservation__free_unpacked(r, NULL);
}

static void reserve_stock(const char *unit_id, char id[ID_LEN])
{
    Passerelle__ReservationCreateRequest req = PASSERELLE__RESERVATION_CREATE_REQUEST__INIT;
    req.has_mode = true;
    req.mode = PASSERELLE__RESERVATION_MODE__MODE_STOCK;
    req.unit = (char *)unit_id;
    req.end_date = "2031-12-31";
    reserve(&req, id);
}

/* A candidate proposed for the reservation, with these publics, then the
 * decision. */
static void propose_and_decide(const char *reservation, const char *candidate,
                               Passerelle__PriorityPublic *publics, size_t n_publics,
                               Passerelle__Decision decision)
{
    Passerelle__ProposalRecordRequest req = PASSERELLE__PROPOSAL_RECORD_REQUEST__INIT;
    req.reservation = (char *)reservation;
    req.candidate_ref = (char *)candidate;
    req.employer_siren = SIREN_OK;
    req.has_employer_sector = true;
    req.employer_sector = PASSERELLE__EMPLOYER_SECTOR__SECTOR_PRIVATE_NON_AGRICULTURAL;
    req.has_employer_headcount = true;
    req.employer_headcount = 250;
    req.publics = publics;
    req.n_publics = n_publics;
    Passerelle__Proposal *p = (Passerelle__Proposal *)harness_call_ok(
        fx.stack.client, "proposal.record", &req.base, &passerelle__proposal__descriptor);
    Passerelle__AttributionDecideRequest decide = PASSERELLE__ATTRIBUTION_DECIDE_REQUEST__INIT;
    decide.proposal = p->id;
    decide.has_decision = true;
    decide.decision = decision;
    harness_call_ok(fx.stack.client, "attribution.decide", &decide.base, NULL);
    passerelle__proposal__free_unpacked(p, NULL);
}

static void publish(const char *title, uint32_t theme, const char *territory)
{
    char text[256];
    int len = snprintf(text, sizeof text, "%s: figures and findings.\n", title);
    char sha[65];
    harness_sha256_hex(text, (size_t)len, sha);
    Passerelle__UploadBeginRequest req;
    harness_doc_begin_request(&req, title, (uint64_t)len, sha, theme);
    req.territory = (char *)territory;
    free(harness_doc_put(fx.docs, &req, text, (size_t)len, NULL));
}

/* Writes the history; what it counts is in `expected` below. */
static void write_history(void)
{
    char u1[ID_LEN], u2[ID_LEN], u3[ID_LEN], u4[ID_LEN], u5[ID_LEN];
    /* conventions: CT2 Pertuis LOC2 signed 30 days after envisaged; CT2
     * Aix LOC1 abandoned; CT1 Marseille LOC3 signed after 20 days, in
     * force, then terminated; CT4 Aubagne LOC2 signed after 45 days */
    unit("RPT-1", "Pertuis", NULL, false, u1);
    envisage(u1, PASSERELLE__CONVENTION_LEVEL__LEVEL_LOC2, 30);
    step("convention.sign", u1, NULL);
    unit("RPT-2", "Aix-en-Provence", NULL, false, u2);
    envisage(u2, PASSERELLE__CONVENTION_LEVEL__LEVEL_LOC1, 0);
    step("convention.abandon", u2, NULL);
    unit("RPT-3", "Marseille", "13201", false, u3);
    envisage(u3, PASSERELLE__CONVENTION_LEVEL__LEVEL_LOC3, 20);
    step("convention.sign", u3, NULL);
    step("convention.in_force", u3, NULL);
    step("convention.end", u3, "terminated");
    unit("RPT-4", "Aubagne", NULL, false, u4);
    envisage(u4, PASSERELLE__CONVENTION_LEVEL__LEVEL_LOC2, 45);
    step("convention.sign", u4, NULL);
    unit("RPT-5", "Martigues", NULL, true, u5);

    /* a CT2 programme with its objective of 4 units this year */
    Passerelle__ProgrammeCreateRequest prog = PASSERELLE__PROGRAMME_CREATE_REQUEST__INIT;
    prog.name = "PIG Pays d'Aix";
    prog.has_kind = true;
    prog.kind = PASSERELLE__PROGRAMME_KIND__PROGRAMME_PIG;
    prog.territory = "CT2";
    prog.start_date = "2024-01-01";
    prog.end_date = "2029-12-31";
    prog.operator_ = "Soliha";
    Passerelle__Programme *p = (Passerelle__Programme *)harness_call_ok(
        fx.stack.client, "programme.create", &prog.base, &passerelle__programme__descriptor);
    char programme[ID_LEN];
    snprintf(programme, sizeof programme, "%s", p->id);
    passerelle__programme__free_unpacked(p, NULL);
    Passerelle__ObjectiveSetRequest objective = PASSERELLE__OBJECTIVE_SET_REQUEST__INIT;
    objective.programme = programme;
    objective.has_year = objective.has_units = true;
    objective.year = (uint32_t)fx.year;
    objective.units = 4;
    harness_call_ok(fx.stack.client, "objective.set", &objective.base, NULL);

    /* reservations: U1 (CT2) and U5 (CT6) in stock, 3 units of the
     * programme in flow */
    char r1[ID_LEN], r5[ID_LEN], rf[ID_LEN];
    reserve_stock(u1, r1);
    reserve_stock(u5, r5);
    Passerelle__ReservationCreateRequest flow = PASSERELLE__RESERVATION_CREATE_REQUEST__INIT;
    flow.has_mode = flow.has_year = flow.has_units = true;
    flow.mode = PASSERELLE__RESERVATION_MODE__MODE_FLOW;
    flow.programme = programme;
    flow.year = (uint32_t)fx.year;
    flow.units = 3;
    reserve(&flow, rf);

    /* one candidate housed in CT2 (under 30, mobility), one refused in CT6
     * (apprentice) */
    Passerelle__PriorityPublic young[] = {PASSERELLE__PRIORITY_PUBLIC__PUBLIC_UNDER_30,
                                          PASSERELLE__PRIORITY_PUBLIC__PUBLIC_MOBILITY};
    propose_and_decide(r1, "AL-RPT-1", young, 2, PASSERELLE__DECISION__DECISION_ATTRIBUTED);
    Passerelle__PriorityPublic apprentice[] = {PASSERELLE__PRIORITY_PUBLIC__PUBLIC_APPRENTICE};
    propose_and_decide(r5, "AL-RPT-2", apprentice, 1, PASSERELLE__DECISION__DECISION_REFUSED);

    /* documents: a CT2 study on theme 1, a Métropole-wide one on theme 3 */
    publish("Diagnostic emploi logement, Pays d'Aix", 1, "CT2");
    publish("Parcours résidentiels des salariés", 3, NULL);

    /* the need side: a CT2 project of 120 jobs this year; Action
     * Logement's figures for CT2 this year: 40 requests, 6 housed */
    Passerelle__ProjectCreateRequest project = PASSERELLE__PROJECT_CREATE_REQUEST__INIT;
    project.ref = "AMP-ECO-RPT-1";
    project.company = "Aerotech Provence";
    project.sector = "aeronautics";
    project.commune = "Pertuis";
    project.has_expected_jobs = project.has_horizon_year = project.has_status = true;
    project.expected_jobs = 120;
    project.horizon_year = (uint32_t)fx.year;
    project.status = PASSERELLE__PROJECT_STATUS__PROJECT_CONFIRMED;
    harness_call_ok(fx.ind, "project.create", &project.base, NULL);
    Passerelle__DemandRow row = PASSERELLE__DEMAND_ROW__INIT;
    row.has_line = row.has_housing_requests = row.has_housed = true;
    row.line = 1;
    row.period = fx.year_text;
    row.territory = "CT2";
    row.housing_requests = 40;
    row.housed = 6;
    Passerelle__DemandRow *rows[] = {&row};
    Passerelle__DemandImportRequest import = PASSERELLE__DEMAND_IMPORT_REQUEST__INIT;
    import.rows = rows;
    import.n_rows = 1;
    harness_call_ok(fx.ind, "demand.import", &import.base, NULL);
}

/* ==========================================================================
 * Queries
 * ======================================================================== */

/* indicator.series, which must answer OK; caller frees. scope "all" (or
 * NULL) is the Métropole. */
static Passerelle__Series *series(const char *indicator, const char *scope, const char *kind,
                                  const char *from, const char *to, const char *filter)
{
    const char *territory = scope && strcmp(scope, "all") != 0 ? scope : NULL;
    return harness_indicators_series(fx.ind, indicator, territory, NULL, filter, kind, from, to);
}

/* What the history counts this year, by hand. */
typedef struct {
    const char *indicator;
    const char *scope;
    const char *filter;
    double value;
    bool defined;
} expected_t;

static const expected_t expected[] = {
    {"conventions.envisaged", "all", "", 4, true},
    {"conventions.envisaged", "CT2", "", 2, true},
    {"conventions.envisaged", "all", "level=LOC2", 2, true},
    {"conventions.signed", "all", "", 3, true},
    {"conventions.signed", "CT2", "", 1, true},
    {"conventions.in_force", "CT1", "level=LOC3", 1, true},
    {"conventions.ended", "CT1", "", 1, true},
    {"conventions.abandoned", "CT2", "level=LOC1", 1, true},
    {"conventions.active", "all", "", 2, true},
    {"conventions.active", "CT1", "", 0, true},
    {"conventions.delay_to_sign.median", "all", "", 30, true},
    {"conventions.delay_to_sign.p90", "all", "", 45, true},
    {"conventions.delay_to_sign.median", "CT6", "", 0, false},
    {"reservations.created", "all", "", 3, true},
    {"reservations.created", "all", "mode=STOCK", 2, true},
    {"reservations.created", "CT2", "mode=FLOW", 1, true},
    {"reservations.al_units", "all", "", 5, true},
    {"reservations.al_units", "CT2", "", 4, true},
    {"objectives.units", "CT2", "", 4, true},
    {"objectives.achievement", "CT2", "", 1, true},
    {"candidates.housed", "all", "", 1, true},
    {"candidates.housed", "CT2", "public=UNDER_30", 1, true},
    {"candidates.housed", "CT6", "", 0, true},
    {"attributions.decided", "all", "", 2, true},
    {"attributions.decided", "CT6", "public=APPRENTICE", 1, true},
    {"documents.published", "all", "", 2, true},
    {"documents.published", "CT2", "theme=1", 1, true},
    {"documents.published", "all", "theme=3", 1, true},
    {"projects.expected_jobs", "CT2", "", 120, true},
    {"demand.requests", "CT2", "", 40, true},
    {"need_supply.requests_per_reserved_unit", "CT2", "", 10, true},
    {"need_supply.jobs_per_reserved_unit", "CT2", "", 30, true},
    {"need_supply.housed_per_request", "CT2", "", 0.15, true},
};

#define EXPECTED_COUNT (sizeof expected / sizeof expected[0])

static bool close_to(double a, double b)
{
    double d = a - b;
    return d < 1e-9 && d > -1e-9;
}

/* How many expectations this year's figures miss; the first few said on
 * stderr when loud. */
static size_t misses(bool loud)
{
    size_t missed = 0;
    for (size_t i = 0; i < EXPECTED_COUNT; i++) {
        const expected_t *e = &expected[i];
        Passerelle__Series *s =
            series(e->indicator, e->scope, "year", fx.year_text, fx.year_text, e->filter);
        bool ok = s->n_points == 1;
        bool defined = ok && (!s->points[0]->has_defined || s->points[0]->defined);
        double value = ok ? s->points[0]->value : 0;
        ok = ok && defined == e->defined && (!defined || close_to(value, e->value));
        if (!ok) {
            missed++;
            if (loud)
                fprintf(stderr, "%s %s %s %s: expected %s%g, got %s%g\n", e->indicator, e->scope,
                        e->filter, fx.year_text, e->defined ? "" : "undefined ", e->value,
                        defined ? "" : "undefined ", value);
        }
        passerelle__series__free_unpacked(s, NULL);
    }
    return missed;
}

static void need_history(void)
{
    if (!fx.history_counted)
        fail_msg("the history was not counted (see the first test)");
}

/* ==========================================================================
 * The history, counted
 * ======================================================================== */

static void test_history_is_counted(void **state)
{
    (void)state;
    write_history();
    /* the projection runs behind the writes: poll until it caught up */
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        if (misses(false) == 0)
            break;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long elapsed_ms =
            (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
        if (elapsed_ms > CATCH_UP_MS) {
            misses(true);
            fail_msg("the indicators did not reach the history's figures within %d ms",
                     CATCH_UP_MS);
        }
        struct timespec pause = {0, 100 * 1000000};
        nanosleep(&pause, NULL);
    }
    fx.history_counted = true;
}

/* ==========================================================================
 * (1) The report, self-contained
 * ======================================================================== */

static void make_report(void)
{
    need_history();
    if (fx.report_made)
        return;
    path_in(fx.report, sizeof fx.report, "review.html");
    harness_run_t run = run_report("--year", fx.year_text, "-o", fx.report);
    harness_assert_exit(&run, 0);
    harness_assert_contains(run.out, "review.html");
    harness_run_free(&run);
    fx.report_made = true;
}

/* Fails unless every value of attribute `name` (src=, href=) in html
 * starts with '#' (a place in the page), or, with none_at_all, unless
 * there is no such attribute. */
static void check_references(const char *html, const char *name, bool none_at_all)
{
    size_t name_len = strlen(name);
    for (const char *p = strcasestr(html, name); p; p = strcasestr(p + 1, name)) {
        /* an attribute, not a word ending the same way: "data-src=" */
        if (p > html && p[-1] != ' ' && p[-1] != '\t' && p[-1] != '\n' && p[-1] != ':')
            continue;
        const char *value = p + name_len;
        if (*value == '"' || *value == '\'')
            value++;
        if (none_at_all || *value != '#')
            fail_msg("the report refers outside itself: %.80s", p);
    }
}

static void test_report_is_self_contained(void **state)
{
    (void)state;
    make_report();
    size_t len = 0;
    char *html = harness_file_read(fx.report, &len);
    assert_true(len > 1000);
    assert_true(strncmp(html, "<!DOCTYPE html>", 15) == 0);
    static const char *const forbidden[] = {"<script", "<link",           "@import", "url(",
                                            "<img",    "<iframe",         "<object", "<embed",
                                            "<base",   "<meta http-equiv"};
    for (size_t i = 0; i < sizeof forbidden / sizeof forbidden[0]; i++)
        if (strcasestr(html, forbidden[i]))
            fail_msg("the report holds %s: %.80s", forbidden[i], strcasestr(html, forbidden[i]));
    check_references(html, "src=", true);
    check_references(html, "href=", false);
    check_references(html, "srcset=", true);
    check_references(html, "action=", true);

    /* the header: the generation the figures came from, and when */
    Passerelle__Series *s =
        series("conventions.signed", "all", "year", fx.year_text, fx.year_text, NULL);
    char generation[96];
    snprintf(generation, sizeof generation, "generation <strong>%llu</strong>",
             (unsigned long long)s->generation);
    passerelle__series__free_unpacked(s, NULL);
    harness_assert_contains(html, generation);
    harness_assert_contains(html, "Made on ");
    char title[64];
    snprintf(title, sizeof title, "Yearly review of the partnership, %d", fx.year);
    harness_assert_contains(html, title);
    /* every scope has its section, the territory's name escaped */
    static const char *const sections[] = {"<section class=\"scope\" id=\"all\">",
                                           "id=\"CT1\"",
                                           "id=\"CT2\"",
                                           "id=\"CT3\"",
                                           "id=\"CT4\"",
                                           "id=\"CT5\"",
                                           "id=\"CT6\""};
    for (size_t i = 0; i < sizeof sections / sizeof sections[0]; i++)
        harness_assert_contains(html, sections[i]);
    harness_assert_contains(html, "Pays d&#39;Aix");
    free(html);
}

/* ==========================================================================
 * (2) Rendered by Chromium
 * ======================================================================== */

typedef struct {
    uint32_t width, height;
    uint8_t *rgb; /* width * height * 3 */
} image_t;

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint8_t paeth(uint8_t a, uint8_t b, uint8_t c)
{
    int p = (int)a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
    if (pa <= pb && pa <= pc)
        return a;
    return pb <= pc ? b : c;
}

/* Decodes a PNG of 8-bit RGB or RGBA, not interlaced (what Chromium
 * writes): the chunks checked against their CRC, the IDAT data inflated,
 * each row unfiltered against the one above. False with a reason in why. */
static bool png_decode(const uint8_t *data, size_t len, image_t *img, char *why, size_t why_size)
{
    static const uint8_t signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    memset(img, 0, sizeof *img);
    if (len < 8 || memcmp(data, signature, 8) != 0) {
        snprintf(why, why_size, "not a PNG");
        return false;
    }
    uint8_t colour_type = 0, *idat = NULL;
    size_t idat_len = 0, pos = 8;
    bool header = false, ended = false;
    while (pos + 12 <= len && !ended) {
        uint32_t n = be32(data + pos);
        if (n > len - pos - 12) {
            snprintf(why, why_size, "a chunk runs past the end");
            free(idat);
            return false;
        }
        const uint8_t *type = data + pos + 4, *body = data + pos + 8;
        uLong crc = crc32(0L, type, 4 + n);
        if (crc != be32(body + n)) {
            snprintf(why, why_size, "chunk %.4s: bad CRC", type);
            free(idat);
            return false;
        }
        if (memcmp(type, "IHDR", 4) == 0 && n >= 13) {
            img->width = be32(body);
            img->height = be32(body + 4);
            colour_type = body[9];
            if (body[8] != 8 || (colour_type != 2 && colour_type != 6) || body[12] != 0) {
                snprintf(why, why_size, "depth %u, colour type %u, interlace %u: not handled",
                         body[8], colour_type, body[12]);
                return false;
            }
            header = true;
        } else if (memcmp(type, "IDAT", 4) == 0) {
            uint8_t *grown = realloc(idat, idat_len + n);
            assert_non_null(grown);
            idat = grown;
            memcpy(idat + idat_len, body, n);
            idat_len += n;
        } else if (memcmp(type, "IEND", 4) == 0) {
            ended = true;
        }
        pos += 12 + n;
    }
    if (!header || !ended || !idat || img->width == 0 || img->height == 0 || img->width > 20000 ||
        img->height > 20000) {
        snprintf(why, why_size, "no header, data or end");
        free(idat);
        return false;
    }
    size_t bpp = colour_type == 6 ? 4 : 3;
    size_t stride = (size_t)img->width * bpp;
    uLongf raw_len = (uLongf)((stride + 1) * img->height);
    uint8_t *raw = malloc(raw_len);
    assert_non_null(raw);
    int zrc = uncompress(raw, &raw_len, idat, (uLong)idat_len);
    free(idat);
    if (zrc != Z_OK || raw_len != (uLongf)((stride + 1) * img->height)) {
        snprintf(why, why_size, "inflate: %d, %lu bytes", zrc, (unsigned long)raw_len);
        free(raw);
        return false;
    }
    uint8_t *pixels = malloc(stride * img->height);
    img->rgb = malloc((size_t)img->width * img->height * 3);
    assert_non_null(pixels);
    assert_non_null(img->rgb);
    for (size_t y = 0; y < img->height; y++) {
        const uint8_t *in = raw + y * (stride + 1);
        uint8_t filter = in[0];
        uint8_t *row = pixels + y * stride;
        const uint8_t *up = y ? row - stride : NULL;
        for (size_t i = 0; i < stride; i++) {
            uint8_t a = i >= bpp ? row[i - bpp] : 0, b = up ? up[i] : 0,
                    c = up && i >= bpp ? up[i - bpp] : 0, x = in[1 + i];
            switch (filter) {
            case 0:
                row[i] = x;
                break;
            case 1:
                row[i] = (uint8_t)(x + a);
                break;
            case 2:
                row[i] = (uint8_t)(x + b);
                break;
            case 3:
                row[i] = (uint8_t)(x + (a + b) / 2);
                break;
            case 4:
                row[i] = (uint8_t)(x + paeth(a, b, c));
                break;
            default:
                snprintf(why, why_size, "row %zu: filter %u", y, filter);
                free(raw);
                free(pixels);
                free(img->rgb);
                img->rgb = NULL;
                return false;
            }
        }
        for (size_t x = 0; x < img->width; x++)
            memcpy(img->rgb + (y * img->width + x) * 3, row + x * bpp, 3);
    }
    free(raw);
    free(pixels);
    return true;
}

/* The chromium program: PASSERELLE_TEST_CHROMIUM, or `chromium` on the
 * PATH. False if there is none. */
static bool find_chromium(char *out, size_t out_size)
{
    const char *named = getenv("PASSERELLE_TEST_CHROMIUM");
    if (named && *named) {
        snprintf(out, out_size, "%s", named);
        return access(out, X_OK) == 0;
    }
    const char *path = getenv("PATH");
    char dirs[4096];
    snprintf(dirs, sizeof dirs, "%s", path && *path ? path : "/usr/bin:/bin");
    char *save = NULL;
    for (char *dir = strtok_r(dirs, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
        int n = snprintf(out, out_size, "%s/chromium", dir);
        if (n > 0 && (size_t)n < out_size && access(out, X_OK) == 0)
            return true;
    }
    return false;
}

static long elapsed_ms(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - start->tv_sec) * 1000 + (now.tv_nsec - start->tv_nsec) / 1000000;
}

/* Runs chromium headless on the report into png; its exit status. Its
 * processes form a group of their own, all killed once it is done (or
 * past the deadline). */
static int screenshot(const char *chromium, const char *png)
{
    char profile[700], log[700], shot_arg[800], url[800], home_env[720];
    path_in(profile, sizeof profile, "chromium-profile");
    path_in(log, sizeof log, "chromium.log");
    snprintf(shot_arg, sizeof shot_arg, "--screenshot=%s", png);
    snprintf(url, sizeof url, "file://%s", fx.report);
    char user_data[760];
    snprintf(user_data, sizeof user_data, "--user-data-dir=%s", profile);
    char window[64];
    snprintf(window, sizeof window, "--window-size=%d,%d", SHOT_WIDTH, SHOT_HEIGHT);
    snprintf(home_env, sizeof home_env, "%s", fx.stack.dir);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        setpgid(0, 0);
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
            close(fd);
        }
        /* its profile and caches in the test's folder, not the user's */
        setenv("HOME", home_env, 1);
        setenv("XDG_CONFIG_HOME", home_env, 1);
        setenv("XDG_CACHE_HOME", home_env, 1);
        execl(chromium, chromium, "--headless", "--no-sandbox", "--disable-gpu",
              "--hide-scrollbars", "--no-first-run", user_data, window, shot_arg, url,
              (char *)NULL);
        _exit(127);
    }
    setpgid(pid, pid);
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    int status = -1;
    for (;;) {
        pid_t done = waitpid(pid, &status, WNOHANG);
        if (done == pid)
            break;
        if (elapsed_ms(&start) > CHROMIUM_DEADLINE_MS) {
            kill(-pid, SIGKILL);
            waitpid(pid, &status, 0);
            fail_msg("chromium took more than %d ms (log: %s)", CHROMIUM_DEADLINE_MS, log);
        }
        struct timespec pause = {0, 20 * 1000000};
        nanosleep(&pause, NULL);
    }
    kill(-pid, SIGKILL); /* helpers it may have left behind */
    return status;
}

static void test_report_renders_in_chromium(void **state)
{
    (void)state;
    make_report();
    char chromium[1024];
    if (!find_chromium(chromium, sizeof chromium))
        fail_msg("chromium is not installed (Debian package 'chromium'), or "
                 "PASSERELLE_TEST_CHROMIUM does not name it: the report cannot be rendered");
    char png[700];
    path_in(png, sizeof png, "review.png");
    unlink(png);
    int status = screenshot(chromium, png);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("chromium failed (status %d); see chromium.log in %s", status, fx.stack.dir);

    size_t len = 0;
    char *bytes = harness_file_read(png, &len);
    image_t img;
    char why[160] = "";
    if (!png_decode((const uint8_t *)bytes, len, &img, why, sizeof why))
        fail_msg("the screenshot does not decode: %s", why);
    free(bytes);
    assert_int_equal(img.width, SHOT_WIDTH);
    assert_int_equal(img.height, SHOT_HEIGHT);

    /* not blank: ink on a good share of the page, and the charts' fills:
     * saturated colours, each over a patch (a bar), grouped by 16 levels
     * a channel so that anti-aliased edges do not count */
    size_t total = (size_t)img.width * img.height, ink = 0;
    static uint32_t buckets[4096];
    memset(buckets, 0, sizeof buckets);
    for (size_t i = 0; i < total; i++) {
        const uint8_t *p = img.rgb + i * 3;
        uint8_t lo = p[0], hi = p[0];
        for (int c = 1; c < 3; c++) {
            lo = p[c] < lo ? p[c] : lo;
            hi = p[c] > hi ? p[c] : hi;
        }
        if (lo < 230)
            ink++;
        if (hi - lo >= 60)
            buckets[(p[0] >> 4) << 8 | (p[1] >> 4) << 4 | p[2] >> 4]++;
    }
    size_t colours = 0;
    for (size_t b = 0; b < 4096; b++)
        if (buckets[b] >= 300)
            colours++;
    free(img.rgb);
    double share = (double)ink / (double)total;
    fprintf(stderr, "screenshot: %.1f%% of the pixels inked, %zu chart colours\n", share * 100,
            colours);
    if (share < 0.03)
        fail_msg("the rendered report is nearly blank: %.2f%% of the pixels inked", share * 100);
    if (colours < 4)
        fail_msg("the rendered report shows %zu chart colours, fewer than 4", colours);
}

/* ==========================================================================
 * (3) The tables, read back
 * ======================================================================== */

typedef struct {
    char indicator[64];
    char scope[8];
    char period[16];
    char filter[48];
    char defined[8];
    char value[48];
    char text[32];
    bool has_value;
    size_t group;
} cell_t;

typedef struct {
    char indicator[64];
    char scope[8];
    char filter[48];
    bool year; /* period kind: year (else month) */
    char from[16], to[16];
} group_t;

/* Copies an attribute value (len bytes at value) into out, unescaping the
 * entities the report writes. */
static void unescape(const char *value, size_t len, char *out, size_t out_size)
{
    static const struct {
        const char *entity;
        char c;
    } entities[] = {{"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&#39;", '\''}};
    size_t o = 0;
    for (size_t i = 0; i < len && o + 1 < out_size;) {
        bool done = false;
        for (size_t e = 0; e < sizeof entities / sizeof entities[0] && !done; e++) {
            size_t n = strlen(entities[e].entity);
            if (i + n <= len && strncmp(value + i, entities[e].entity, n) == 0) {
                out[o++] = entities[e].c;
                i += n;
                done = true;
            }
        }
        if (!done)
            out[o++] = value[i++];
    }
    out[o] = '\0';
}

/* Every <td> carrying data-indicator, into a malloc'd array. */
static cell_t *read_cells(const char *html, size_t *count)
{
    size_t n = 0, cap = 1024;
    cell_t *cells = calloc(cap, sizeof *cells);
    assert_non_null(cells);
    for (const char *p = strstr(html, "<td"); p; p = strstr(p + 3, "<td")) {
        const char *end = strchr(p, '>');
        assert_non_null(end);
        cell_t cell;
        memset(&cell, 0, sizeof cell);
        bool figure = false;
        for (const char *a = p + 3; a < end;) {
            while (a < end && *a == ' ')
                a++;
            const char *eq = memchr(a, '=', (size_t)(end - a));
            if (!eq || eq[1] != '"')
                break;
            const char *v = eq + 2, *close = memchr(v, '"', (size_t)(end - v));
            assert_non_null(close);
            size_t name_len = (size_t)(eq - a), v_len = (size_t)(close - v);
#define ATTR(name, field)                                                                          \
    if (name_len == strlen(name) && strncmp(a, name, name_len) == 0)                               \
        unescape(v, v_len, cell.field, sizeof cell.field);
            ATTR("data-indicator", indicator)
            ATTR("data-scope", scope)
            ATTR("data-period", period)
            ATTR("data-filter", filter)
            ATTR("data-defined", defined)
            ATTR("data-value", value)
#undef ATTR
            if (name_len == 14 && strncmp(a, "data-indicator", 14) == 0)
                figure = true;
            if (name_len == 10 && strncmp(a, "data-value", 10) == 0)
                cell.has_value = true;
            a = close + 1;
        }
        if (!figure)
            continue;
        const char *text_end = strstr(end, "</td>");
        assert_non_null(text_end);
        unescape(end + 1, (size_t)(text_end - end - 1), cell.text, sizeof cell.text);
        if (n == cap) {
            cap *= 2;
            cells = realloc(cells, cap * sizeof *cells);
            assert_non_null(cells);
        }
        cells[n++] = cell;
    }
    *count = n;
    return cells;
}

/* The same series (indicator, scope, filter, kind) as the cell's, made if
 * new, its period range widened to the cell's. */
static size_t group_of(group_t **groups, size_t *n, size_t *cap, const cell_t *cell)
{
    bool year = strlen(cell->period) == 4;
    for (size_t g = 0; g < *n; g++) {
        group_t *gr = &(*groups)[g];
        if (gr->year == year && strcmp(gr->indicator, cell->indicator) == 0 &&
            strcmp(gr->scope, cell->scope) == 0 && strcmp(gr->filter, cell->filter) == 0) {
            if (strcmp(cell->period, gr->from) < 0)
                snprintf(gr->from, sizeof gr->from, "%s", cell->period);
            if (strcmp(cell->period, gr->to) > 0)
                snprintf(gr->to, sizeof gr->to, "%s", cell->period);
            return g;
        }
    }
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 256;
        *groups = realloc(*groups, *cap * sizeof **groups);
        assert_non_null(*groups);
    }
    group_t *gr = &(*groups)[*n];
    memset(gr, 0, sizeof *gr);
    snprintf(gr->indicator, sizeof gr->indicator, "%s", cell->indicator);
    snprintf(gr->scope, sizeof gr->scope, "%s", cell->scope);
    snprintf(gr->filter, sizeof gr->filter, "%s", cell->filter);
    gr->year = year;
    snprintf(gr->from, sizeof gr->from, "%s", cell->period);
    snprintf(gr->to, sizeof gr->to, "%s", cell->period);
    return (*n)++;
}

/* Whether a cell of the indicator and filter is there for the scope and
 * period. */
static bool has_cell(const cell_t *cells, size_t n, const char *indicator, const char *filter,
                     const char *scope, const char *period)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(cells[i].indicator, indicator) == 0 && strcmp(cells[i].filter, filter) == 0 &&
            strcmp(cells[i].scope, scope) == 0 && strcmp(cells[i].period, period) == 0)
            return true;
    return false;
}

static void test_tables_equal_the_queries(void **state)
{
    (void)state;
    make_report();
    char *html = harness_file_read(fx.report, NULL);
    size_t n_cells = 0, n_td = 0;
    cell_t *cells = read_cells(html, &n_cells);
    for (const char *p = strstr(html, "<td"); p; p = strstr(p + 3, "<td"))
        n_td++;
    free(html);
    /* every figure cell says what it shows */
    assert_int_equal(n_td, n_cells);

    /* what the review must show, for every scope: month by month with the
     * year, or (trend: objectives, need and supply) the year and the two
     * before */
    static const struct {
        const char *indicator;
        const char *filter;
        bool trend;
    } shown[] = {
        {"conventions.envisaged", "", false},
        {"conventions.signed", "level=LOC1", false},
        {"conventions.in_force", "level=LOC2", false},
        {"conventions.ended", "level=LOC3", false},
        {"conventions.abandoned", "", false},
        {"conventions.active", "", false},
        {"conventions.active", "level=LOC3", false},
        {"conventions.delay_to_sign.median", "", false},
        {"conventions.delay_to_sign.p90", "", false},
        {"reservations.created", "mode=STOCK", false},
        {"reservations.created", "mode=FLOW", false},
        {"candidates.housed", "public=UNDER_30", false},
        {"candidates.housed", "public=DISABILITY", false},
        {"attributions.decided", "public=SEASONAL", false},
        {"documents.published", "theme=2", false},
        {"reservations.al_units", "", true},
        {"objectives.units", "", true},
        {"objectives.achievement", "", true},
        {"projects.expected_jobs", "", true},
        {"demand.requests", "", true},
        {"need_supply.requests_per_reserved_unit", "", true},
        {"need_supply.jobs_per_reserved_unit", "", true},
        {"need_supply.housed_per_request", "", true},
    };
    static const char *const scopes[] = {"all", "CT1", "CT2", "CT3", "CT4", "CT5", "CT6"};
    for (size_t i = 0; i < sizeof shown / sizeof shown[0]; i++)
        for (size_t s = 0; s < sizeof scopes / sizeof scopes[0]; s++) {
            char periods[13][16];
            int count = 0;
            if (shown[i].trend) {
                for (int y = 0; y < 3; y++)
                    snprintf(periods[count++], sizeof periods[0], "%d", (fx.year - 2 + y) % 10000);
            } else {
                for (int m = 1; m <= 12; m++)
                    snprintf(periods[count++], sizeof periods[0], "%d-%02d", fx.year % 10000, m);
                snprintf(periods[count++], sizeof periods[0], "%d", fx.year % 10000);
            }
            for (int k = 0; k < count; k++)
                if (!has_cell(cells, n_cells, shown[i].indicator, shown[i].filter, scopes[s],
                              periods[k]))
                    fail_msg("the report has no cell of %s %s for %s, %s", shown[i].indicator,
                             shown[i].filter, scopes[s], periods[k]);
        }

    /* every cell against the service: one series per indicator, scope,
     * filter and period kind */
    group_t *groups = NULL;
    size_t n_groups = 0, cap = 0;
    for (size_t i = 0; i < n_cells; i++)
        cells[i].group = group_of(&groups, &n_groups, &cap, &cells[i]);
    size_t checked = 0, nonzero = 0, undefined = 0;
    for (size_t g = 0; g < n_groups; g++) {
        const group_t *gr = &groups[g];
        Passerelle__Series *s = series(gr->indicator, gr->scope, gr->year ? "year" : "month",
                                       gr->from, gr->to, gr->filter);
        for (size_t i = 0; i < n_cells; i++) {
            const cell_t *c = &cells[i];
            if (c->group != g)
                continue;
            const Passerelle__Point *point = NULL;
            for (size_t p = 0; p < s->n_points && !point; p++)
                if (s->points[p]->period && strcmp(s->points[p]->period, c->period) == 0)
                    point = s->points[p];
            if (!point)
                fail_msg("the service has no %s point of %s %s %s", c->period, c->indicator,
                         c->scope, c->filter);
            bool defined = !point->has_defined || point->defined;
            if (strcmp(c->defined, defined ? "true" : "false") != 0)
                fail_msg("%s %s %s %s: the report says defined=%s, the service %s", c->indicator,
                         c->scope, c->filter, c->period, c->defined, defined ? "true" : "false");
            if (defined) {
                if (!c->has_value)
                    fail_msg("%s %s %s %s: no data-value", c->indicator, c->scope, c->filter,
                             c->period);
                double value = strtod(c->value, NULL), shown_value = strtod(c->text, NULL);
                if (value != point->value)
                    fail_msg("%s %s %s %s: the report says %s, the service %.17g", c->indicator,
                             c->scope, c->filter, c->period, c->value, point->value);
                double gap = shown_value - point->value;
                if (gap > 0.0051 || gap < -0.0051 || !*c->text)
                    fail_msg("%s %s %s %s: the table shows '%s' for %.17g", c->indicator, c->scope,
                             c->filter, c->period, c->text, point->value);
                if (point->value != 0)
                    nonzero++;
            } else {
                if (c->has_value)
                    fail_msg("%s %s %s %s: a value for an undefined figure", c->indicator, c->scope,
                             c->filter, c->period);
                assert_string_equal(c->text, "\u2013");
                undefined++;
            }
            checked++;
        }
        passerelle__series__free_unpacked(s, NULL);
    }
    fprintf(stderr, "%zu cells checked against %zu series (%zu not zero, %zu undefined)\n", checked,
            n_groups, nonzero, undefined);
    assert_int_equal(checked, n_cells);
    /* the history shows: figures that are not zero, ratios over nothing */
    assert_true(nonzero >= 20);
    assert_true(undefined >= 1);
    free(groups);
    free(cells);
}

/* ==========================================================================
 * One territory, the default file name, refusals
 * ======================================================================== */

static void test_one_territory_default_name_and_refusals(void **state)
{
    (void)state;
    need_history();
    char cwd[700];
    path_in(cwd, sizeof cwd, "here");
    assert_int_equal(mkdir(cwd, 0700), 0);
    harness_cli_t cli;
    harness_cli_init(&cli, fx.stack.dir, cwd, CLI_DEADLINE_MS);
    harness_cli_service(&cli, NULL, fx.indicators.endpoint, fx.stack.keys);
    harness_run_t run = harness_run_cli_as(&cli, "partner", "report", "--year", fx.year_text,
                                           "--territory", "ct2", NULL);
    harness_assert_exit(&run, 0);
    char name[32], path[760];
    snprintf(name, sizeof name, "report-%d.html", fx.year % 10000);
    snprintf(path, sizeof path, "%s/%s", cwd, name);
    harness_assert_contains(run.out, name);
    harness_run_free(&run);
    char *html = harness_file_read(path, NULL);
    harness_assert_contains(html, "<section class=\"scope\" id=\"all\">");
    harness_assert_contains(html, "<section class=\"scope\" id=\"CT2\">");
    assert_null(strstr(html, "id=\"CT1\""));
    assert_null(strstr(html, "data-scope=\"CT6\""));
    free(html);

    /* refusals leave no file behind */
    char refused[760];
    path_in(refused, sizeof refused, "refused.html");
    run = run_report("--year", "nineteen", "-o", refused);
    harness_assert_exit(&run, 2);
    harness_assert_contains(run.err, "--year");
    harness_run_free(&run);
    run = run_report("--territory", "CT9", "-o", refused);
    harness_assert_exit(&run, 2);
    harness_assert_contains(run.err, "CT9");
    harness_run_free(&run);
    run = run_report("--year", fx.year_text, "--colour", "blue");
    harness_assert_exit(&run, 2);
    harness_run_free(&run);
    /* nobody answering: exit 3 */
    char nowhere[64];
    snprintf(nowhere, sizeof nowhere, "tcp://127.0.0.1:%d", harness_free_port());
    run = run_cli("--endpoint", nowhere, "--keys", fx.stack.keys, "--as", "partner", "--timeout-ms",
                  "300", "--retries", "0", "report", "-o", refused);
    harness_assert_exit(&run, 3);
    harness_run_free(&run);
    struct stat st;
    assert_int_equal(stat(refused, &st), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_history_is_counted),
        cmocka_unit_test(test_report_is_self_contained),
        cmocka_unit_test(test_report_renders_in_chromium),
        cmocka_unit_test(test_tables_equal_the_queries),
        cmocka_unit_test(test_one_territory_default_name_and_refusals),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
