/* The indicators commands of the passerelle CLI as people run them: the
 * real binary against a real Redis and the real indicators service, judged
 * by stdout, stderr and the exit code. The endpoint comes from
 * PASSERELLE_INDICATORS_ENDPOINT alone, which is what sends these commands
 * to the indicators service rather than to the reservations one.
 *
 * Economic projects are created, listed, read and updated; a CSV of demand
 * figures is imported (quoted fields, CRLF, a byte order mark, an empty
 * public) and imported again, replacing its period; a file with bad lines
 * gets its line-by-line report and sends nothing; a file the service
 * refuses gets the service's own report. Then the figures: the catalog,
 * a series, an export to a file and to stdout, the snapshot table, once
 * the projection has counted the imported figures. */
#define _GNU_SOURCE
#include "harness.h"

#include "ids.h"

#include <jansson.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#define CLI_DEADLINE_MS 30000
#define WAIT_MS         20000
#define POLL_MS         100

typedef struct {
    harness_stack_t stack; /* Redis + reservations + keys */
    harness_service_t indicators;
    harness_cli_t cli;
} fixture_t;

static fixture_t fx;

/* Runs the CLI with the named key, the endpoint and the keys given through
 * the environment only. */
#define run_as(name, ...) harness_run_cli_as(&fx.cli, name, __VA_ARGS__, NULL)

/* The same without any environment: for what needs no service. */
#define run_bare(...) harness_run_cli(&fx.cli, NULL, __VA_ARGS__, NULL)

static void need_service(void)
{
    if (fx.indicators.pid <= 0)
        fail_msg("the indicators service did not start (see the logs in %s)",
                 fx.stack.dir ? fx.stack.dir : "?");
}

/* Writes text to <stack dir>/<name> and the path into path (1024 bytes). */
static void write_file(const char *name, const char *text, char *path)
{
    snprintf(path, 1024, "%s/%s", fx.stack.dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
}

/* True unless the source file of a piece someone is still writing holds
 * its placeholder line: the figures need the projection (engine.c) and
 * the queries (query.c). */
static bool piece_written(const char *relative)
{
    const char *source = getenv("PASSERELLE_TEST_SOURCE_DIR");
    if (!source)
        return true;
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", source, relative);
    char *text = harness_file_read(path, NULL);
    bool written = !strstr(text, "placeholder, being written");
    free(text);
    return written;
}

/* ==========================================================================
 * Without a service
 * ======================================================================== */

static void test_help_and_usage(void **state)
{
    (void)state;
    harness_run_t run = run_bare("help");
    harness_assert_exit(&run, 0);
    const char *expected[] = {
        "Indicators (endpoint: --endpoint, or PASSERELLE_INDICATORS_ENDPOINT",
        "default tcp://127.0.0.1:7403",
        "project create [flags]",
        "--expected-jobs N",
        "--needs JSON (repeatable)",
        "project update <id-or-ref> [flags]",
        "--status prospect|confirmed|settled|dropped",
        "project get <id-or-ref>",
        "project list [flags]",
        "demand get <period>",
        "indicator list",
        "indicators list",
        "indicator series <indicator>",
        "indicator snapshot",
        "indicator rebuild",
        "indicator rebuild status",
        "indicators [--territory CTn] [--date YYYY-MM-DD]",
        "indicators series NAME",
        "indicators export [--format csv|json] [-o FILE]",
        "demand import FILE.csv",
        "period,territory,public,housing_requests,aids_visale,aids_loca_pass,",
        /* the other services keep their headings */
        "Reservations (endpoint: --endpoint, or PASSERELLE_RESERVATIONS_ENDPOINT",
        "Notifications (endpoint: --endpoint, or PASSERELLE_NOTIFICATIONS_ENDPOINT",
    };
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++)
        harness_assert_contains(run.out, expected[i]);
    harness_run_free(&run);

    /* One command's help. */
    run = run_bare("help", "demand", "import");
    harness_assert_exit(&run, 0);
    harness_assert_contains(run.out, "demand import FILE.csv");
    harness_assert_contains(run.out, "aids_mobility,aids_other,housed");
    assert_null(strstr(run.out, "project create"));
    harness_run_free(&run);
    run = run_bare("indicators", "series", "--help");
    harness_assert_exit(&run, 0);
    harness_assert_contains(run.out, "--filter axis=value");
    harness_run_free(&run);
    run = run_bare("help", "indicators", "list");
    harness_assert_exit(&run, 0);
    harness_assert_contains(run.out, "The same as 'indicator list'");
    harness_run_free(&run);

    /* Usage errors, before any call. */
    run = run_bare("indicators", "series");
    harness_assert_exit(&run, 2);
    harness_assert_contains(run.err, "needs an indicator NAME");
    harness_run_free(&run);
    run = run_bare("indicators", "--colour", "red");
    harness_assert_exit(&run, 2);
    harness_assert_contains(run.err, "unknown flag --colour");
    harness_run_free(&run);
    run = run_bare("indicators", "series", "x", "--territory", "CT1", "--commune", "Pertuis");
    harness_assert_exit(&run, 2);
    harness_assert_contains(run.err, "not both");
    harness_run_free(&run);
    run = run_bare("indicators", "export", "--format", "xml");
    harness_assert_exit(&run, 2);
    harness_assert_contains(run.err, "--format");
    harness_run_free(&run);
    run = run_bare("demand", "import");
    harness_assert_exit(&run, 2);
    harness_assert_contains(run.err, "needs a FILE");
    harness_run_free(&run);
    run = run_bare("project", "create", "--status", "imaginary");
    harness_assert_exit(&run, 2);
    harness_assert_contains(run.err, "status");
    harness_run_free(&run);
}

/* ==========================================================================
 * Economic projects
 * ======================================================================== */

static void test_projects(void **state)
{
    (void)state;
    need_service();
    harness_run_t run =
        run_as("metropole", "project", "create", "--ref", "CLI-ECO-1", "--company",
               "Hélices du Luberon", "--sector", "aeronautics", "--commune", "Pertuis",
               "--expected-jobs", "120", "--horizon-year", "2027", "--needs",
               "{\"typology\":\"T2\",\"public\":\"under_30\",\"units\":20}", "--needs",
               "{\"typology\":\"t3\",\"units\":5}");
    harness_assert_exit(&run, 0);
    const char *summary[] = {"project J",
                             "[CLI-ECO-1]",
                             "Hélices du Luberon (aeronautics)",
                             "Pertuis 84089 (CT2)",
                             "120 jobs by 2027",
                             "25 units needed",
                             "PROSPECT"};
    for (size_t i = 0; i < sizeof summary / sizeof summary[0]; i++)
        harness_assert_contains(run.out, summary[i]);
    char id[ID_LEN];
    snprintf(id, sizeof id, "%.*s", (int)strcspn(run.out + 8, " \n"), run.out + 8);
    assert_true(id_valid('J', id));
    harness_run_free(&run);

    /* The same again: the project already made, same id. */
    run = run_as("metropole", "project", "create", "--ref", "CLI-ECO-1", "--company",
                 "Hélices du Luberon", "--sector", "aeronautics", "--commune", "Pertuis",
                 "--expected-jobs", "120", "--horizon-year", "2027", "--needs",
                 "{\"typology\":\"T2\",\"public\":\"under_30\",\"units\":20}", "--needs",
                 "{\"typology\":\"t3\",\"units\":5}", "--id-only");
    harness_assert_exit(&run, 0);
    harness_assert_contains(run.out, id);
    harness_run_free(&run);
    /* Other content under the same reference. */
    run = run_as("metropole", "project", "create", "--ref", "CLI-ECO-1", "--sector", "logistics",
                 "--commune", "Pertuis", "--horizon-year", "2027");
    harness_assert_exit(&run, 1);
    harness_assert_contains(run.err, "ALREADY_EXISTS");
    harness_assert_contains(run.err, "(field: ref)");
    harness_run_free(&run);

    run = run_as("metropole", "project", "create", "--ref", "CLI-ECO-2", "--sector", "logistics",
                 "--commune", "Miramas", "--horizon-year", "2028", "--expected-jobs", "60",
                 "--status", "confirmed", "--id-only");
    harness_assert_exit(&run, 0);
    harness_run_free(&run);

    /* Listing: by territory, every page. */
    run = run_as("action_logement", "project", "list", "--territory", "CT2", "--all");
    harness_assert_exit(&run, 0);
    harness_assert_contains(run.out, "[CLI-ECO-1]");
    assert_null(strstr(run.out, "[CLI-ECO-2]"));
    harness_run_free(&run);
    run = run_as("action_logement", "project", "list", "--status", "confirmed", "--json");
    harness_assert_exit(&run, 0);
    json_t *json = harness_parse_json(run.out);
    json_t *projects = json_object_get(json, "projects");
    assert_int_equal(json_array_size(projects), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(projects, 0), "ref")),
                        "CLI-ECO-2");
    json_decref(json);
    harness_run_free(&run);

    /* By reference; updated through its states. */
    run = run_as("operator", "project", "get", "CLI-ECO-1");
    harness_assert_exit(&run, 0);
    harness_assert_contains(run.out, id);
    harness_assert_contains(run.out, "needs (2):");
    harness_run_free(&run);
    run = run_as("metropole", "project", "update", "CLI-ECO-1", "--status", "confirmed",
                 "--expected-jobs", "150");
    harness_assert_exit(&run, 0);
    harness_assert_contains(run.out, "150 jobs by 2027");
    harness_assert_contains(run.out, "CONFIRMED");
    harness_assert_contains(run.out, "version: 2");
    harness_run_free(&run);
    run = run_as("metropole", "project", "update", id, "--status", "prospect");
    harness_assert_exit(&run, 1);
    harness_assert_contains(run.err, "FAILED_PRECONDITION");
    harness_assert_contains(run.err, "CONFIRMED");
    harness_assert_contains(run.err, "(field: status)");
    harness_run_free(&run);

    /* Refusals and rights. */
    run = run_as("metropole", "project", "create", "--ref", "CLI-ECO-3", "--sector", "port",
                 "--commune", "Lyon", "--horizon-year", "2027");
    harness_assert_exit(&run, 1);
    harness_assert_contains(run.err, "(field: commune)");
    harness_run_free(&run);
    run = run_as("partner", "project", "list");
    harness_assert_exit(&run, 1);
    harness_assert_contains(run.err, "PERMISSION_DENIED");
    harness_run_free(&run);
    run = run_as("action_logement", "project", "create", "--ref", "CLI-ECO-4", "--sector", "port",
                 "--commune", "Martigues", "--horizon-year", "2027");
    harness_assert_exit(&run, 1);
    harness_assert_contains(run.err, "PERMISSION_DENIED");
    harness_run_free(&run);
}

/* ==========================================================================
 * Demand figures
 * ======================================================================== */

/* A file as a spreadsheet writes it: a byte order mark, CRLF, a quoted
 * field with a doubled quote would be text; here quoted numbers and an
 * empty public (every public). April: CT1 120 + CT2 60 requests for every
 * public, 45 for CT1's under-30s. */
static const char good_csv[] =
    "\xEF\xBB\xBF"
    "period,territory,public,housing_requests,aids_visale,aids_loca_pass,aids_mobility,"
    "aids_other,housed\r\n"
    "2026-04,CT1,,120,30,12,5,1,15\r\n"
    "2026-04,CT1,under_30,45,20,8,3,0,4\r\n"
    "\r\n"
    "\"2026-04\",\"CT2\",\"\",\"60\",10,4,2,0,9\r\n"
    "2026-03, CT2 ,MOBILITY,7,1,0,6,0,1\r\n";

static void test_demand_import(void **state)
{
    (void)state;
    need_service();
    char path[1024];
    write_file("demand-good.csv", good_csv, path);
    harness_run_t run = run_as("action_logement", "demand", "import", path);
    harness_assert_exit(&run, 0);
    harness_assert_contains(run.out, "imported 4 lines into 2 periods");
    harness_assert_contains(run.out,
                            "demand 2026-03: 1 row, version 1, imported by action_logement");
    harness_assert_contains(run.out, "demand 2026-04: 3 rows, version 1");
    assert_string_equal(run.err, "");
    harness_run_free(&run);

    run = run_as("metropole", "demand", "get", "2026-04");
    harness_assert_exit(&run, 0);
    harness_assert_contains(run.out, "demand 2026-04: 3 rows, version 1");
    harness_assert_contains(run.out, "territory  public");
    harness_assert_contains(run.out, "CT1        (all)");
    harness_assert_contains(run.out, "CT1        UNDER_30");
    harness_assert_contains(run.out, "CT2        (all)");
    harness_run_free(&run);

    /* Imported again with a key: the same answer twice, one version. */
    run =
        run_as("action_logement", "demand", "import", path, "--idempotency-key", "csv-1", "--json");
    harness_assert_exit(&run, 0);
    json_t *first = harness_parse_json(run.out);
    harness_run_free(&run);
    run =
        run_as("action_logement", "demand", "import", path, "--idempotency-key", "csv-1", "--json");
    harness_assert_exit(&run, 0);
    json_t *second = harness_parse_json(run.out);
    harness_run_free(&run);
    assert_true(json_equal(first, second));
    json_t *periods = json_object_get(first, "periods");
    assert_int_equal(json_array_size(periods), 2);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(periods, 1), "version")), 2);
    json_decref(first);
    json_decref(second);

    /* From standard input is not testable through the harness; "-" is
     * documented. */
    run = run_as("metropole", "demand", "get", "2026-04", "--json");
    harness_assert_exit(&run, 0);
    json_t *got = harness_parse_json(run.out);
    assert_int_equal(json_integer_value(json_object_get(got, "version")), 2);
    assert_int_equal(json_array_size(json_object_get(got, "rows")), 3);
    json_decref(got);
    harness_run_free(&run);

    /* The Métropole does not import demand figures. */
    run = run_as("metropole", "demand", "import", path);
    harness_assert_exit(&run, 1);
    harness_assert_contains(run.err, "PERMISSION_DENIED");
    harness_run_free(&run);
}

static void test_demand_import_bad_file(void **state)
{
    (void)state;
    need_service();
    char path[1024];
    write_file("demand-bad.csv",
               "period,territory,public,housing_requests,aids_visale,aids_loca_pass,"
               "aids_mobility,aids_other,housed\n"
               "2026-05,CT1,,10,1,1,1,1,1\n"        /* 2: fine */
               "2026-05,CT2,,10,1,1,1,1\n"          /* 3: a column short */
               "2026-05,CT3,,ten,1,1,1,1,-2\n"      /* 4: two bad numbers */
               "2026-05,CT4,students,1,1,1,1,1,1\n" /* 5: no such public */
               "2026-05,CT5,,1,1,1,1,1,1\n"         /* 6: fine */
               "2026-05,\"CT6,1,1,1,1,1,1,1,1\n",   /* 7: a quote never closed */
               path);
    harness_run_t run = run_as("action_logement", "demand", "import", path);
    harness_assert_exit(&run, 1);
    assert_string_equal(run.out, "");
    const char *expected[] = {
        "line 3: 8 columns, expected 9\n",
        "line 4: housing_requests 'ten' is not a whole number (0 or more), housed '-2' is not a "
        "whole number (0 or more)\n",
        "line 5: public 'students' is not one of under_30",
        "line 7: a quoted field is not closed\n",
        "4 bad lines; nothing was sent",
    };
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++)
        harness_assert_contains(run.err, expected[i]);
    assert_null(strstr(run.err, "line 2:"));
    assert_null(strstr(run.err, "line 6:"));
    assert_true(strstr(run.err, "line 3:") < strstr(run.err, "line 4:"));
    assert_true(strstr(run.err, "line 5:") < strstr(run.err, "line 7:"));
    harness_run_free(&run);

    /* A header that is not the expected one. */
    write_file("demand-header.csv", "period,territory,requests\n2026-05,CT1,3\n", path);
    run = run_as("action_logement", "demand", "import", path);
    harness_assert_exit(&run, 1);
    harness_assert_contains(run.err, "line 1: unknown column 'requests' in the header");
    harness_assert_contains(run.err, "line 1: column 'housed' is missing from the header");
    harness_assert_contains(run.err, "1 bad line; nothing was sent");
    harness_run_free(&run);

    /* A missing file. */
    snprintf(path, sizeof path, "%s/no-such.csv", fx.stack.dir);
    run = run_as("action_logement", "demand", "import", path);
    harness_assert_exit(&run, 1);
    harness_assert_contains(run.err, "no-such.csv");
    harness_run_free(&run);

    /* Lines the CLI cannot fault but the service does: its own report, as
     * it is, and nothing stored. */
    write_file("demand-refused.csv",
               "period,territory,public,housing_requests,aids_visale,aids_loca_pass,"
               "aids_mobility,aids_other,housed\n"
               "2026-05,CT1,,10,1,1,1,1,1\n"
               "2026-05,CT9,,10,1,1,1,1,1\n"
               "2026-05,CT1,,11,1,1,1,1,1\n"
               "2026-13,CT2,,1,1,1,1,1,1\n",
               path);
    run = run_as("action_logement", "demand", "import", path);
    harness_assert_exit(&run, 1);
    harness_assert_contains(run.err,
                            "error: INVALID_ARGUMENT: line 3: territory 'CT9' is not one of "
                            "CT1..CT6; line 4: repeats line 2 (same period, territory and public); "
                            "line 5: period '2026-13' is not a month");
    harness_assert_contains(run.err, "(field: rows)");
    harness_run_free(&run);

    /* None of it was stored. */
    run = run_as("action_logement", "demand", "get", "2026-05");
    harness_assert_exit(&run, 1);
    harness_assert_contains(run.err, "NOT_FOUND");
    harness_run_free(&run);
}

/* ==========================================================================
 * The figures
 * ======================================================================== */

/* Polls the series of demand.requests for April 2026 (Métropole) until
 * it says want; false at the deadline. */
static bool wait_april_requests(const char *want)
{
    char line[64];
    snprintf(line, sizeof line, "2026-04 %s\n", want);
    for (int waited = 0; waited <= WAIT_MS; waited += POLL_MS) {
        harness_run_t run = run_as("partner", "indicators", "series", "demand.requests", "--from",
                                   "2026-04", "--to", "2026-04");
        bool done = run.exit_code == 0 && strstr(run.out, line) != NULL;
        harness_run_free(&run);
        if (done)
            return true;
        usleep(POLL_MS * 1000);
    }
    return false;
}

static void test_figures(void **state)
{
    (void)state;
    need_service();
    if (!piece_written("services/indicators/query.c") ||
        !piece_written("services/indicators/engine.c")) {
        fprintf(stderr, "the queries or the projection are not written yet: not run\n");
        skip();
    }

    /* The catalog, under both names. */
    harness_run_t run = run_as("partner", "indicators", "list");
    harness_assert_exit(&run, 0);
    const char *names[] = {"units.registered", "conventions.signed", "demand.requests",
                           "need_supply.requests_per_reserved_unit", "projects.expected_jobs"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        harness_assert_contains(run.out, names[i]);
    harness_run_free(&run);
    run = run_as("partner", "indicator", "list", "--json");
    harness_assert_exit(&run, 0);
    json_t *json = harness_parse_json(run.out);
    assert_true(json_array_size(json_object_get(json, "indicators")) >= 20);
    json_decref(json);
    harness_run_free(&run);

    /* The demand imported above, once counted: April's requests for every
     * public are CT1's 120 and CT2's 60; the under-30s' 45 are apart. */
    if (!wait_april_requests("180"))
        fail_msg("demand.requests for 2026-04 never reached 180");
    run = run_as("partner", "indicators", "series", "demand.requests", "--from", "2026-02", "--to",
                 "2026-05");
    harness_assert_exit(&run, 0);
    assert_string_equal(run.out, "2026-02 0\n2026-03 0\n2026-04 180\n2026-05 0\n");
    harness_run_free(&run);
    run = run_as("partner", "indicators", "series", "demand.requests", "--from", "2026-04", "--to",
                 "2026-04", "--territory", "CT1", "--filter", "public=under_30");
    harness_assert_exit(&run, 0);
    assert_string_equal(run.out, "2026-04 45\n");
    harness_run_free(&run);
    run = run_as("partner", "indicators", "series", "demand.requests", "--period-kind", "year",
                 "--from", "2026", "--to", "2026", "--territory", "CT2", "--json");
    harness_assert_exit(&run, 0);
    json = harness_parse_json(run.out);
    json_t *point = json_array_get(json_object_get(json, "points"), 0);
    assert_string_equal(json_string_value(json_object_get(point, "period")), "2026");
    assert_true(json_number_value(json_object_get(point, "value")) == 60.0);
    json_decref(json);
    harness_run_free(&run);
    run = run_as("partner", "indicators", "series", "no.such.indicator");
    harness_assert_exit(&run, 1);
    harness_assert_contains(run.err, "INVALID_ARGUMENT");
    harness_run_free(&run);

    /* The export: CSV to standard output, then to a file, and JSON. */
    run = run_as("partner", "indicators", "export", "--from", "2026-04", "--to", "2026-04",
                 "--indicators", "demand.requests");
    harness_assert_exit(&run, 0);
    harness_assert_contains(run.out, "demand.requests");
    harness_assert_contains(run.out, "180");
    harness_assert_contains(run.out, "\r\n"); /* RFC 4180 line ends */
    harness_run_free(&run);
    char path[1024];
    snprintf(path, sizeof path, "%s/export.csv", fx.stack.dir);
    run = run_as("partner", "indicators", "export", "--from", "2026-04", "--to", "2026-04",
                 "--indicators", "demand.requests,demand.housed", "-o", path);
    harness_assert_exit(&run, 0);
    harness_assert_contains(run.out, "rows (text/csv) to ");
    harness_run_free(&run);
    char *csv = harness_file_read(path, NULL);
    harness_assert_contains(csv, "demand.housed");
    harness_assert_contains(csv, "180");
    free(csv);
    run = run_as("partner", "indicators", "export", "--format", "json", "--from", "2026-04", "--to",
                 "2026-04", "--indicators", "demand.requests", "--territory", "CT1");
    harness_assert_exit(&run, 0);
    json = harness_parse_json(run.out);
    json_decref(json);
    harness_run_free(&run);

    /* The snapshot table: the Métropole and every territory. */
    run = run_as("partner", "indicators", "--date", "2026-04-30");
    harness_assert_exit(&run, 0);
    const char *table[] = {"Indicators at 2026-04-30", "Métropole", "CT1", "CT6",
                           "demand.requests",          "basis"};
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        harness_assert_contains(run.out, table[i]);
    const char *row = strstr(run.out, "\ndemand.requests ");
    assert_non_null(row);
    /* 2026's figures so far: April's 180 (March's 7 were the mobility
     * public's only). */
    char line[512];
    snprintf(line, sizeof line, "%.*s", (int)strcspn(row + 1, "\n"), row + 1);
    harness_assert_contains(line, " 180 ");
    harness_run_free(&run);
    run = run_as("partner", "indicators", "--territory", "CT2", "--date", "2026-04-30");
    harness_assert_exit(&run, 0);
    harness_assert_contains(run.out, "CT2");
    assert_null(strstr(run.out, "Métropole"));
    harness_run_free(&run);
    run = run_as("partner", "indicators", "--territory", "CT9");
    harness_assert_exit(&run, 1);
    harness_assert_contains(run.err, "INVALID_ARGUMENT");
    harness_run_free(&run);

    /* Only operations rebuild. */
    run = run_as("partner", "indicator", "rebuild");
    harness_assert_exit(&run, 1);
    harness_assert_contains(run.err, "PERMISSION_DENIED");
    harness_run_free(&run);
    run = run_as("partner", "indicator", "rebuild", "status");
    harness_assert_exit(&run, 0);
    harness_assert_contains(run.out, "state: ");
    harness_run_free(&run);
}

/* ==========================================================================
 * Setup
 * ======================================================================== */

static int group_setup(void **state)
{
    *state = &fx;
    if (harness_stack_start(&fx.stack, "indcli", NULL, NULL) != 0) {
        if (!fx.stack.dir)
            return -1;
        fprintf(stderr, "the reservations service did not start\n");
    } else if (harness_indicators_start(&fx.stack, &fx.indicators, NULL) != 0) {
        fprintf(stderr, "the indicators service did not start\n");
    }
    harness_cli_init(&fx.cli, fx.stack.dir, NULL, CLI_DEADLINE_MS);
    harness_cli_service(&fx.cli, "PASSERELLE_INDICATORS_ENDPOINT", fx.indicators.endpoint,
                        fx.stack.keys);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    bool clean = harness_service_stop_checked(&fx.indicators);
    bool stack_clean = harness_stack_stop(&fx.stack);
    return clean && stack_clean ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help_and_usage), cmocka_unit_test(test_projects),
        cmocka_unit_test(test_demand_import),  cmocka_unit_test(test_demand_import_bad_file),
        cmocka_unit_test(test_figures),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
