/* The passerelle CLI as a user runs it: the real binary against a real Redis
 * and reservations service, judged by its stdout, stderr and exit code. The
 * tests without a service (help, usage errors, keygen, an unreachable
 * endpoint) come first; the tour follows the README's walk-through. */
#define _GNU_SOURCE
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define CLI_DEADLINE_MS 30000

typedef struct {
    harness_stack_t stack; /* no client: the CLI is the client */
    harness_cli_t cli;     /* the binary, its output in the stack's folder */
} fixture_t;

static fixture_t fx;

/* Runs the CLI with the arguments, each "NAME=value" of env (may be NULL)
 * set in its environment (harness_run_cli). */
#define run_cli_env(env, ...) harness_run_cli(&fx.cli, env, __VA_ARGS__)

#define run_cli(...) run_cli_env(NULL, __VA_ARGS__, NULL)

/* Runs the CLI against the test's service with the named key, given as
 * --endpoint, --keys and --as. */
#define run_as(name, ...) harness_run_cli_as(&fx.cli, name, __VA_ARGS__, NULL)

static const char *json_str(const json_t *object, const char *key)
{
    const char *value = json_string_value(json_object_get(object, key));
    return value ? value : "";
}

static bool file_exists(const char *dir, const char *relative)
{
    char path[1024];
    int n = snprintf(path, sizeof path, "%s/%s", dir, relative);
    struct stat st;
    return n > 0 && (size_t)n < sizeof path && stat(path, &st) == 0;
}

static void need_service(void)
{
    if (fx.stack.service.pid <= 0)
        fail_msg("the reservations service did not start (see its log in %s)", fx.stack.dir);
}

/* ==========================================================================
 * Without a service
 * ======================================================================== */

static void test_help_lists_commands_and_flags(void **state)
{
    (void)state;
    harness_run_t run = run_cli("--help");
    assert_int_equal(run.exit_code, 0);
    const char *expected[] = {
        "health",
        "keygen",
        "unit register",
        "unit get <id-or-ref>",
        "unit list",
        "--all",
        "convention envisage",
        "convention sign",
        "convention in-force",
        "convention end",
        "convention abandon",
        "convention get",
        "events",
        "programme create",
        "programme get <id>",
        "programme list",
        "programme attach <programme> <unit>",
        "objective set <programme>",
        "progress [<programme-or-territory>]",
        "reservation create [<unit>]",
        "reservation release <id-or-unit>",
        "reservation cancel <id-or-unit>",
        "reservation vacancy <id-or-unit>",
        "reservation get <id-or-unit>",
        "reservation list",
        "proposal record <reservation-or-unit>",
        "proposal get <id>",
        "proposal list [<reservation>]",
        "attribution decide <proposal>",
        "proposal decide <proposal>",
        "--kind pig|opah|opah_ru|npnru|social_housing|social_ownership",
        "--publics under_30|apprentice|seasonal|mobility|in_difficulty|disability (repeatable, "
        "or comma-separated)",
        "--decision pending|attributed|ranked|refused|withdrawn",
        "--id-only",
        "--external-ref TEXT",
        "--surface-m2 NUMBER",
        "private|social",
        "loc1|loc2|loc3",
        "--with-works",
        "--after TEXT",
        "--endpoint URL",
        "PASSERELLE_RESERVATIONS_ENDPOINT",
        "--timeout-ms",
        "--idempotency-key",
        "PASSERELLE_INSECURE",
        "Exit codes",
    };
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++)
        harness_assert_contains(run.out, expected[i]);
    harness_run_free(&run);

    /* help for one command, both ways */
    run = run_cli("help", "convention", "envisage");
    assert_int_equal(run.exit_code, 0);
    harness_assert_contains(run.out, "convention envisage <unit>");
    harness_assert_contains(run.out, "--intermediation none|management_mandate|sublease");
    assert_null(strstr(run.out, "unit register"));
    harness_run_free(&run);

    run = run_cli("unit", "get", "--help");
    assert_int_equal(run.exit_code, 0);
    harness_assert_contains(run.out, "unit get <id-or-ref>");
    harness_run_free(&run);
}

static void test_usage_errors_exit_2(void **state)
{
    (void)state;
    harness_run_t run = run_cli("unit", "register", "--colour", "blue");
    assert_int_equal(run.exit_code, 2);
    harness_assert_contains(run.err, "--colour");
    assert_string_equal(run.out, "");
    harness_run_free(&run);

    run = run_cli("unit", "demolish");
    assert_int_equal(run.exit_code, 2);
    harness_assert_contains(run.err, "'unit register'");
    harness_run_free(&run);

    run = run_cli("frobnicate");
    assert_int_equal(run.exit_code, 2);
    harness_assert_contains(run.err, "frobnicate");
    harness_run_free(&run);

    run = run_cli("unit", "register", "--commune");
    assert_int_equal(run.exit_code, 2);
    harness_assert_contains(run.err, "--commune");
    harness_run_free(&run);

    run = run_cli("unit", "register", "--stock", "castle");
    assert_int_equal(run.exit_code, 2);
    harness_assert_contains(run.err, "stock");
    harness_run_free(&run);

    run = run_cli("convention", "sign", "C1", "C2");
    assert_int_equal(run.exit_code, 2);
    harness_assert_contains(run.err, "C2");
    harness_run_free(&run);

    /* two arguments where two are natural, not three */
    run = run_cli("programme", "attach", "P1", "U1", "U2");
    assert_int_equal(run.exit_code, 2);
    harness_assert_contains(run.err, "'U2'");
    harness_run_free(&run);

    /* a comma-separated list is checked item by item before any call */
    run = run_cli("proposal", "record", "R1", "--publics", "under_30,astronauts");
    assert_int_equal(run.exit_code, 2);
    harness_assert_contains(run.err, "publics[1]");
    harness_run_free(&run);
    run = run_cli("reservation", "create", "U1", "--target-publics", "under_30,,mobility");
    assert_int_equal(run.exit_code, 2);
    harness_assert_contains(run.err, "empty item");
    harness_run_free(&run);

    run = run_cli("--timeout-ms", "soon", "health");
    assert_int_equal(run.exit_code, 2);
    harness_assert_contains(run.err, "--timeout-ms");
    harness_run_free(&run);

    run = run_cli("keygen", "--name", "x", "--party", "landlord");
    assert_int_equal(run.exit_code, 2);
    harness_assert_contains(run.err, "landlord");
    harness_run_free(&run);

    /* no command at all: the help, on stderr, as a usage error */
    run = run_cli_env(NULL, NULL);
    assert_int_equal(run.exit_code, 2);
    harness_assert_contains(run.err, "Commands:");
    harness_run_free(&run);
}

static void test_keygen_makes_files(void **state)
{
    (void)state;
    char keys[1024];
    snprintf(keys, sizeof keys, "%s/fresh-keys", fx.stack.dir);

    harness_run_t run = run_cli("keygen", "--server", "--keys", keys);
    assert_int_equal(run.exit_code, 0);
    harness_assert_contains(run.out, "public key: ");
    assert_true(file_exists(keys, "server.key"));
    assert_true(file_exists(keys, "server.key_secret"));
    harness_run_free(&run);

    run = run_cli("--keys", keys, "keygen", "--name", "alice", "--party", "action_logement");
    assert_int_equal(run.exit_code, 0);
    harness_assert_contains(run.out, "ACTION_LOGEMENT");
    const char *line = strstr(run.out, "public key: ");
    assert_non_null(line);
    /* A Z85 CURVE public key is 40 characters. */
    assert_int_equal(strcspn(line + strlen("public key: "), "\n"), 40);
    assert_true(file_exists(keys, "authorized/alice.key"));
    assert_true(file_exists(keys, "clients/alice.key_secret"));
    harness_run_free(&run);

    /* a name is made once */
    run = run_cli("--keys", keys, "keygen", "--name", "alice", "--party", "operator");
    assert_int_equal(run.exit_code, 1);
    harness_assert_contains(run.err, "error: ");
    harness_run_free(&run);

    run = run_cli("--keys", keys, "keygen", "--name", "../escape", "--party", "operator");
    assert_int_equal(run.exit_code, 2);
    harness_run_free(&run);
}

static void test_unreachable_exits_3(void **state)
{
    (void)state;
    char endpoint[64];
    snprintf(endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", harness_free_port());
    harness_run_t run = run_cli("--endpoint", endpoint, "--keys", fx.stack.keys, "--timeout-ms",
                                "200", "--retries", "1", "health");
    assert_int_equal(run.exit_code, 3);
    harness_assert_contains(run.err, "error: ");
    harness_assert_contains(run.err, endpoint);
    harness_run_free(&run);

    /* the same through the environment */
    char env_endpoint[128], env_keys[1200];
    snprintf(env_endpoint, sizeof env_endpoint, "PASSERELLE_RESERVATIONS_ENDPOINT=%s", endpoint);
    snprintf(env_keys, sizeof env_keys, "PASSERELLE_KEYS_DIR=%s", fx.stack.keys);
    const char *env[] = {env_endpoint, env_keys, "PASSERELLE_TIMEOUT_MS=150",
                         "PASSERELLE_RETRIES=0", NULL};
    run = run_cli_env(env, "unit", "list", NULL);
    assert_int_equal(run.exit_code, 3);
    harness_run_free(&run);

    /* a missing client key is a configuration error, not an outage */
    run = run_cli("--endpoint", endpoint, "--keys", fx.stack.keys, "--as", "nobody", "health");
    assert_int_equal(run.exit_code, 2);
    harness_run_free(&run);
}

/* ==========================================================================
 * Against the service
 * ======================================================================== */

static void test_health(void **state)
{
    (void)state;
    need_service();
    harness_run_t run = run_as("operator", "health", "--json");
    assert_int_equal(run.exit_code, 0);
    json_t *json = harness_parse_json(run.out);
    assert_string_equal(json_str(json, "service"), "reservations");
    assert_string_equal(json_str(json, "caller_party"), "OPERATOR");
    json_decref(json);
    harness_run_free(&run);

    run = run_as("admin", "health");
    assert_int_equal(run.exit_code, 0);
    harness_assert_contains(run.out, "service: reservations");
    harness_run_free(&run);
}

/* The README's tour: a unit in Pertuis, a LOC2 convention envisaged and
 * signed, and the events that say so. */
static void test_tour(void **state)
{
    (void)state;
    need_service();

    harness_run_t run =
        run_as("operator", "unit", "register", "--external-ref", "ANAH-84-TOUR-1", "--address",
               "3 rue Voltaire", "--commune", "pertuis", "--stock", "private", "--typology", "t3",
               "--surface-m2", "61.5", "--energy-class", "d", "--landlord", "OWNER-7F3A",
               "--adapted-disability", "--json");
    assert_int_equal(run.exit_code, 0);
    json_t *unit = harness_parse_json(run.out);
    char unit_id[64];
    snprintf(unit_id, sizeof unit_id, "%s", json_str(unit, "id"));
    assert_int_equal(unit_id[0], 'U');
    assert_string_equal(json_str(unit, "external_ref"), "ANAH-84-TOUR-1");
    assert_string_equal(json_str(unit, "commune_insee"), "84089");
    assert_string_equal(json_str(unit, "commune_name"), "Pertuis");
    assert_string_equal(json_str(unit, "territory"), "CT2");
    assert_string_equal(json_str(unit, "stock"), "PRIVATE");
    assert_string_equal(json_str(unit, "typology"), "T3");
    assert_true(json_is_true(json_object_get(unit, "adapted_disability")));
    assert_true(json_real_value(json_object_get(unit, "surface_m2")) == 61.5);
    json_decref(unit);
    harness_run_free(&run);

    /* readable, by id and by external reference */
    run = run_as("operator", "unit", "get", unit_id);
    assert_int_equal(run.exit_code, 0);
    harness_assert_contains(run.out, unit_id);
    harness_assert_contains(run.out, "Pertuis");
    harness_assert_contains(run.out, "commune_insee: 84089");
    harness_run_free(&run);
    run = run_as("action_logement", "unit", "get", "ANAH-84-TOUR-1", "--json");
    assert_int_equal(run.exit_code, 0);
    unit = harness_parse_json(run.out);
    assert_string_equal(json_str(unit, "id"), unit_id);
    json_decref(unit);
    harness_run_free(&run);

    /* by the unit's external reference, as the README does */
    run = run_as("operator", "convention", "envisage", "--unit", "ANAH-84-TOUR-1", "--level",
                 "loc2", "--rent-ceiling-eur-m2", "9.5", "--json");
    assert_int_equal(run.exit_code, 0);
    json_t *conv = harness_parse_json(run.out);
    char conv_id[64];
    snprintf(conv_id, sizeof conv_id, "%s", json_str(conv, "id"));
    assert_true(conv_id[0] != '\0');
    assert_string_equal(json_str(conv, "unit_id"), unit_id);
    assert_string_equal(json_str(conv, "level"), "LOC2");
    assert_string_equal(json_str(conv, "state"), "ENVISAGED");
    assert_true(json_real_value(json_object_get(conv, "rent_ceiling_eur_m2")) == 9.5);
    json_decref(conv);
    harness_run_free(&run);

    run = run_as("operator", "convention", "sign", conv_id);
    assert_int_equal(run.exit_code, 0);
    harness_assert_contains(run.out, conv_id);
    harness_assert_contains(run.out, "state: SIGNED");
    harness_assert_contains(run.out, "LOC2");
    harness_run_free(&run);

    /* abandoning a signed convention: the state forbids it, and is named */
    run = run_as("operator", "convention", "abandon", conv_id);
    assert_int_equal(run.exit_code, 1);
    harness_assert_contains(run.err, "error: FAILED_PRECONDITION: ");
    assert_non_null(strcasestr(run.err, "signed"));
    assert_string_equal(run.out, "");
    harness_run_free(&run);

    /* six years without works */
    run = run_as("action_logement", "convention", "get", conv_id, "--json");
    assert_int_equal(run.exit_code, 0);
    conv = harness_parse_json(run.out);
    assert_string_equal(json_str(conv, "state"), "SIGNED");
    const char *signed_on = json_str(conv, "signed_on");
    const char *end_date = json_str(conv, "end_date");
    assert_int_equal(strlen(signed_on), 10);
    assert_int_equal(strlen(end_date), 10);
    assert_int_equal(atoi(end_date), atoi(signed_on) + 6);
    assert_string_equal(json_str(json_object_get(conv, "unit"), "commune_name"), "Pertuis");
    json_decref(conv);
    harness_run_free(&run);

    /* the events: one line each, and decoded data in JSON */
    run = run_as("action_logement", "events");
    assert_int_equal(run.exit_code, 0);
    harness_assert_contains(run.out, "unit.registered");
    harness_assert_contains(run.out, "convention.envisaged");
    harness_assert_contains(run.out, "convention.signed");
    harness_run_free(&run);

    run = run_as("action_logement", "events", "--json", "--limit", "1000");
    assert_int_equal(run.exit_code, 0);
    json_t *json = harness_parse_json(run.out);
    json_t *events = json_object_get(json, "events");
    assert_true(json_array_size(events) >= 3);
    bool envisaged = false, signed_seen = false;
    size_t i;
    json_t *entry;
    json_array_foreach(events, i, entry)
    {
        json_t *event = json_object_get(entry, "event");
        assert_true(json_str(entry, "position")[0] != '\0');
        json_t *data = json_object_get(event, "data");
        if (strcmp(json_str(event, "type"), "convention.envisaged") == 0 &&
            strcmp(json_str(data, "id"), conv_id) == 0) {
            assert_true(json_is_object(data));
            assert_string_equal(json_str(data, "level"), "LOC2");
            assert_string_equal(json_str(data, "state"), "ENVISAGED");
            envisaged = true;
        }
        if (strcmp(json_str(event, "type"), "convention.signed") == 0 &&
            strcmp(json_str(data, "id"), conv_id) == 0)
            signed_seen = true;
    }
    assert_true(envisaged);
    assert_true(signed_seen);
    char last[64];
    snprintf(last, sizeof last, "%s", json_str(json, "last_position"));
    assert_true(last[0] != '\0');
    json_decref(json);
    harness_run_free(&run);

    /* nothing after the last position */
    run = run_as("action_logement", "events", "--after", last, "--json");
    assert_int_equal(run.exit_code, 0);
    json = harness_parse_json(run.out);
    assert_int_equal(json_array_size(json_object_get(json, "events")), 0);
    json_decref(json);
    harness_run_free(&run);
}

/* The first line of a run's stdout (--id-only), without its newline. */
static void first_line(const harness_run_t *run, char *out, size_t out_size)
{
    snprintf(out, out_size, "%.*s", (int)strcspn(run->out, "\n"), run->out);
}

/* The README's second tour: a PIG programme in CT2 with an objective of 12
 * units for this year, a private unit of it conventioned and reserved for
 * Action Logement, two candidates (one whose employer is too small), the
 * committee's decision, and the progress: 1 of 12. As the admin, as the
 * README runs it. */
static void test_tour_reservations(void **state)
{
    (void)state;
    need_service();
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    int year = tm.tm_year + 1900;
    char y[16], start[24], end[24], stock_end[24];
    snprintf(y, sizeof y, "%d", year);
    snprintf(start, sizeof start, "%d-01-01", year);
    snprintf(end, sizeof end, "%d-12-31", year + 2);
    snprintf(stock_end, sizeof stock_end, "%d-12-31", year + 3);

    /* Y=$(date +%Y)
     * P=$(passerelle programme create --name "PIG Pays d'Aix" --kind pig --territory CT2 \
     *     --start-date $Y-01-01 --end-date $((Y + 2))-12-31 --operator "Soliha Provence" \
     *     --id-only) */
    harness_run_t run = run_as("admin", "programme", "create", "--name", "PIG Pays d'Aix", "--kind",
                               "pig", "--territory", "CT2", "--start-date", start, "--end-date",
                               end, "--operator", "Soliha Provence", "--id-only");
    assert_int_equal(run.exit_code, 0);
    char programme[64];
    first_line(&run, programme, sizeof programme);
    assert_int_equal(programme[0], 'P');
    assert_int_equal(strlen(programme), 27);
    harness_run_free(&run);

    /* passerelle objective set $P --year $Y --units 12 */
    run = run_as("admin", "objective", "set", programme, "--year", y, "--units", "12");
    assert_int_equal(run.exit_code, 0);
    char line[256];
    snprintf(line, sizeof line, "objective %s %d: 12 units for Action Logement (CT2)", programme,
             year);
    harness_assert_contains(run.out, line);
    harness_run_free(&run);

    /* passerelle unit register --external-ref ANAH-84-0002 ... --programme-id $P */
    run = run_as("admin", "unit", "register", "--external-ref", "ANAH-84-TOUR-2", "--address",
                 "4 rue Ledru-Rollin", "--commune", "Pertuis", "--stock", "private", "--typology",
                 "t2", "--surface-m2", "48", "--landlord", "OWNER-91C2", "--energy-class", "c",
                 "--programme-id", programme);
    assert_int_equal(run.exit_code, 0);
    harness_assert_contains(run.out, "[ANAH-84-TOUR-2] T2 PRIVATE 48 m2, Pertuis 84089 (CT2)");
    snprintf(line, sizeof line, "programme_id: %s", programme);
    harness_assert_contains(run.out, line);
    harness_run_free(&run);

    run = run_as("admin", "convention", "envisage", "--unit", "ANAH-84-TOUR-2", "--level", "loc2",
                 "--rent-ceiling-eur-m2", "9.5");
    assert_int_equal(run.exit_code, 0);
    harness_run_free(&run);
    run = run_as("admin", "convention", "sign", "ANAH-84-TOUR-2");
    assert_int_equal(run.exit_code, 0);
    harness_assert_contains(run.out, "state: SIGNED");
    harness_run_free(&run);

    /* the programme counts its unit */
    run = run_as("admin", "programme", "get", programme);
    assert_int_equal(run.exit_code, 0);
    snprintf(line, sizeof line,
             "programme %s PIG 'PIG Pays d'Aix', CT2, %s to %s, operator Soliha Provence, 1 unit "
             "attached",
             programme, start, end);
    harness_assert_contains(run.out, line);
    harness_run_free(&run);

    /* passerelle reservation create ANAH-84-0002 --mode stock \
     *     --end-date $((Y + 3))-12-31 --target-publics under_30,mobility */
    run = run_as("admin", "reservation", "create", "ANAH-84-TOUR-2", "--mode", "stock",
                 "--end-date", stock_end, "--target-publics", "under_30,mobility");
    assert_int_equal(run.exit_code, 0);
    harness_assert_contains(run.out, "reservation R");
    harness_assert_contains(run.out, " STOCK ACTIVE for ACTION_LOGEMENT, unit U");
    harness_assert_contains(run.out, "[ANAH-84-TOUR-2] Pertuis 84089 (CT2), LOC2, ");
    harness_assert_contains(run.out, "vacancy 1 not attributed");
    harness_assert_contains(run.out, "target_publics: UNDER_30, MOBILITY");
    char reservation[64];
    snprintf(reservation, sizeof reservation, "%.27s", strstr(run.out, "reservation R") + 12);
    harness_run_free(&run);

    /* a second one on the same unit names the holder */
    run = run_as("admin", "reservation", "create", "ANAH-84-TOUR-2", "--mode", "stock",
                 "--end-date", stock_end, "--reservataire", "commune");
    assert_int_equal(run.exit_code, 1);
    harness_assert_contains(run.err, "error: CONFLICT: ");
    harness_assert_contains(run.err, reservation);
    harness_assert_contains(run.err, "ACTION_LOGEMENT");
    harness_assert_contains(run.err, "(field: unit)");
    harness_run_free(&run);

    /* D1=$(passerelle proposal record ANAH-84-0002 --candidate-ref CAND-0117 \
     *     --employer-siren 123456782 --employer-sector private_non_agricultural \
     *     --employer-headcount 250 --publics under_30,mobility --id-only) */
    run = run_as("admin", "proposal", "record", "ANAH-84-TOUR-2", "--candidate-ref", "CAND-0117",
                 "--employer-siren", "123456782", "--employer-sector", "private_non_agricultural",
                 "--employer-headcount", "250", "--publics", "under_30,mobility", "--id-only");
    assert_int_equal(run.exit_code, 0);
    char proposal[64];
    first_line(&run, proposal, sizeof proposal);
    assert_int_equal(proposal[0], 'D');
    harness_run_free(&run);

    /* passerelle proposal record ANAH-84-0002 --candidate-ref CAND-0118 \
     *     --employer-siren 987654324 --employer-sector private_non_agricultural \
     *     --employer-headcount 6 */
    run = run_as("admin", "proposal", "record", "ANAH-84-TOUR-2", "--candidate-ref", "CAND-0118",
                 "--employer-siren", "987654324", "--employer-sector", "private_non_agricultural",
                 "--employer-headcount", "6");
    assert_int_equal(run.exit_code, 0);
    harness_assert_contains(run.out,
                            "candidate CAND-0118, employer 987654324 PRIVATE_NON_AGRICULTURAL 6 "
                            "employees, not eligible: ");
    harness_assert_contains(run.out, "10 or more");
    harness_assert_contains(run.out, "PENDING");
    harness_run_free(&run);

    /* the eligible one, readable */
    run = run_as("admin", "proposal", "get", proposal);
    assert_int_equal(run.exit_code, 0);
    snprintf(line, sizeof line,
             "proposal %s candidate CAND-0117, employer 123456782 PRIVATE_NON_AGRICULTURAL 250 "
             "employees, eligible, PENDING",
             proposal);
    harness_assert_contains(run.out, line);
    harness_assert_contains(run.out, "publics: UNDER_30, MOBILITY");
    harness_run_free(&run);

    /* passerelle attribution decide $D1 --decision attributed */
    run = run_as("admin", "attribution", "decide", proposal, "--decision", "attributed");
    assert_int_equal(run.exit_code, 0);
    harness_assert_contains(run.out, "eligible, ATTRIBUTED");
    harness_assert_contains(run.out, "warnings: ");
    harness_assert_contains(run.out, "three");
    harness_run_free(&run);

    /* the unit is attributed once per vacancy */
    run = run_as("admin", "reservation", "get", "ANAH-84-TOUR-2");
    assert_int_equal(run.exit_code, 0);
    harness_assert_contains(run.out, "vacancy 1 attributed");
    harness_run_free(&run);

    /* both candidates of the vacancy, one line each */
    run = run_as("admin", "proposal", "list", "ANAH-84-TOUR-2", "--all");
    assert_int_equal(run.exit_code, 0);
    harness_assert_contains(run.out, "proposals (2):");
    harness_assert_contains(run.out, "candidate CAND-0117");
    harness_assert_contains(run.out, "candidate CAND-0118");
    harness_run_free(&run);

    /* passerelle progress $P: 1 of 12 */
    run = run_as("admin", "progress", programme);
    assert_int_equal(run.exit_code, 0);
    harness_assert_contains(run.out, "programme");
    harness_assert_contains(run.out, "level/financing");
    harness_assert_contains(run.out, "objective");
    harness_assert_contains(run.out, "achieved");
    const char *row = strstr(run.out, programme);
    assert_non_null(row);
    char row_programme[64], territory[16], scope[32], ratio[16];
    unsigned row_year = 0, objective = 0, achieved = 0;
    assert_int_equal(sscanf(row, "%63s %15s %u %31s %u %u %15s", row_programme, territory,
                            &row_year, scope, &objective, &achieved, ratio),
                     7);
    assert_string_equal(territory, "CT2");
    assert_int_equal(row_year, (unsigned)year);
    assert_string_equal(scope, "all");
    assert_int_equal(objective, 12);
    assert_int_equal(achieved, 1);
    assert_string_equal(ratio, "8%");
    harness_run_free(&run);

    /* the same for the territory, and as JSON */
    run = run_as("admin", "progress", "CT2", "--json");
    assert_int_equal(run.exit_code, 0);
    json_t *json = harness_parse_json(run.out);
    bool found = false;
    size_t i;
    json_t *item;
    json_array_foreach(json_object_get(json, "rows"), i, item)
    {
        if (strcmp(json_str(item, "programme_id"), programme) != 0 ||
            json_object_get(item, "level") || json_object_get(item, "financing"))
            continue;
        found = true;
        assert_int_equal(json_integer_value(json_object_get(item, "objective")), 12);
        assert_int_equal(json_integer_value(json_object_get(item, "achieved")), 1);
    }
    assert_true(found);
    json_decref(json);
    harness_run_free(&run);

    /* the events say all of it, with their data decoded */
    run = run_as("admin", "events", "--json", "--limit", "1000");
    assert_int_equal(run.exit_code, 0);
    json = harness_parse_json(run.out);
    const char *types[] = {"programme.created", "objective.set", "reservation.created",
                           "proposal.recorded", "attribution.decided"};
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        found = false;
        json_array_foreach(json_object_get(json, "events"), i, item)
        {
            json_t *event = json_object_get(item, "event");
            if (strcmp(json_str(event, "type"), types[t]) == 0 &&
                json_is_object(json_object_get(event, "data")))
                found = true;
        }
        if (!found)
            fail_msg("no %s event with decoded data", types[t]);
    }
    json_decref(json);
    harness_run_free(&run);
}

static void test_error_reply_names_the_field(void **state)
{
    (void)state;
    need_service();
    harness_run_t run =
        run_as("operator", "unit", "register", "--external-ref", "ANAH-ATLANTIS", "--address",
               "1 quai des Abysses", "--commune", "Atlantis", "--stock", "private", "--typology",
               "t2", "--surface-m2", "40", "--landlord", "OWNER-1");
    assert_int_equal(run.exit_code, 1);
    harness_assert_contains(run.err, "error: INVALID_ARGUMENT: ");
    harness_assert_contains(run.err, "(field: commune)");
    assert_string_equal(run.out, "");
    harness_run_free(&run);

    run = run_as("operator", "convention", "get", "C01JAAAAAAAAAAAAAAAAAAAAAA");
    assert_true(run.exit_code == 1);
    harness_assert_contains(run.err, "error: ");
    harness_run_free(&run);
}

static void test_list_all_follows_pages(void **state)
{
    (void)state;
    need_service();
    char ref[64];
    for (int i = 0; i < 5; i++) {
        snprintf(ref, sizeof ref, "ANAH-13-PAGE-%d", i);
        harness_run_t run = run_as(
            "metropole", "unit", "register", "--external-ref", ref, "--address", "5 cours Mirabeau",
            "--surface-m2", "48", "--commune", "13001", "--stock", "social", "--typology", "t2",
            "--financing", "plus", "--landlord", "Pays d'Aix Habitat", "--in-qpv");
        assert_int_equal(run.exit_code, 0);
        harness_run_free(&run);
    }
    harness_run_t run = run_as("metropole", "unit", "list", "--territory", "CT2", "--stock",
                               "social", "--page-size", "2", "--all", "--json");
    assert_int_equal(run.exit_code, 0);
    json_t *json = harness_parse_json(run.out);
    json_t *units = json_object_get(json, "units");
    int found = 0;
    size_t i;
    json_t *unit;
    json_array_foreach(units, i, unit)
    {
        if (strncmp(json_str(unit, "external_ref"), "ANAH-13-PAGE-", 13) == 0)
            found++;
        assert_string_equal(json_str(unit, "stock"), "SOCIAL");
    }
    assert_int_equal(found, 5);
    json_decref(json);
    harness_run_free(&run);

    /* readable: one block per unit */
    run = run_as("metropole", "unit", "list", "--territory", "ct2", "--stock", "social", "--all");
    assert_int_equal(run.exit_code, 0);
    harness_assert_contains(run.out, "ANAH-13-PAGE-0");
    harness_assert_contains(run.out, "ANAH-13-PAGE-4");
    assert_null(strstr(run.out, "next_page_token"));
    harness_run_free(&run);

    /* a listing that finds nothing says so */
    run = run_as("metropole", "unit", "list", "--territory", "CT5", "--stock", "social");
    assert_int_equal(run.exit_code, 0);
    assert_string_equal(run.out, "units (0)\n");
    harness_run_free(&run);
}

static void test_idempotency_key_repeats_safely(void **state)
{
    (void)state;
    need_service();
    char ids[2][64];
    for (int i = 0; i < 2; i++) {
        harness_run_t run =
            run_as("operator", "--idempotency-key", "script-42", "unit", "register",
                   "--external-ref", "ANAH-IDEM-1", "--address", "20 rue Sainte", "--commune",
                   "Marseille", "--arrondissement", "7", "--stock", "private", "--typology", "t1",
                   "--surface-m2", "22", "--landlord", "OWNER-2", "--json");
        assert_int_equal(run.exit_code, 0);
        json_t *json = harness_parse_json(run.out);
        snprintf(ids[i], sizeof ids[i], "%s", json_str(json, "id"));
        assert_string_equal(json_str(json, "arrondissement_insee"), "13207");
        json_decref(json);
        harness_run_free(&run);
    }
    assert_string_equal(ids[0], ids[1]);
}

static void test_new_keys_and_roles(void **state)
{
    (void)state;
    need_service();
    harness_run_t run =
        run_cli("--keys", fx.stack.keys, "keygen", "--name", "opah-ct2", "--party", "operator");
    assert_int_equal(run.exit_code, 0);
    harness_run_free(&run);
    run = run_cli("--keys", fx.stack.keys, "keygen", "--name", "adil", "--party", "partner");
    assert_int_equal(run.exit_code, 0);
    harness_run_free(&run);

    run = run_as("opah-ct2", "unit", "register", "--external-ref", "ANAH-NEWKEY-1", "--address",
                 "8 place Crousillat", "--commune", "Salon-de-Provence", "--stock", "private",
                 "--typology", "t4", "--surface-m2", "85", "--landlord", "OWNER-3", "--json");
    assert_int_equal(run.exit_code, 0);
    json_t *json = harness_parse_json(run.out);
    assert_string_equal(json_str(json, "territory"), "CT3");
    json_decref(json);
    harness_run_free(&run);

    run = run_as("adil", "unit", "register", "--external-ref", "ANAH-NEWKEY-2", "--address",
                 "9 place Crousillat", "--commune", "Salon-de-Provence", "--stock", "private",
                 "--typology", "t4", "--surface-m2", "85", "--landlord", "OWNER-3");
    assert_int_equal(run.exit_code, 1);
    harness_assert_contains(run.err, "error: PERMISSION_DENIED");
    harness_run_free(&run);
}

/* PASSERELLE_INSECURE=1 on both sides: no keys at all, and the caller is
 * the admin the service makes of everyone. */
static void test_insecure_mode(void **state)
{
    (void)state;
    need_service();
    char *const service_env[] = {"PASSERELLE_INSECURE=1", NULL};
    harness_service_t plain;
    assert_int_equal(harness_stack_service_start(&fx.stack, &plain, "insecure", service_env), 0);

    const char *env[] = {"PASSERELLE_INSECURE=1", NULL};
    harness_run_t run = run_cli_env(env, "--endpoint", plain.endpoint, "--keys", "/nonexistent",
                                    "health", "--json", NULL);
    harness_service_stop(&plain, SIGTERM);
    assert_int_equal(run.exit_code, 0);
    json_t *json = harness_parse_json(run.out);
    assert_string_equal(json_str(json, "caller_party"), "ADMIN");
    json_decref(json);
    harness_run_free(&run);
}

/* ==========================================================================
 * Setup
 * ======================================================================== */

static int setup(void **state)
{
    *state = &fx.stack;
    /* The tests without a service still run when it does not start: those
     * that need it fail on their own. */
    if (harness_stack_start(&fx.stack, "cli", NULL, NULL) != 0) {
        if (!fx.stack.dir || !file_exists(fx.stack.keys, "server.key"))
            return -1;
        fprintf(stderr, "the reservations service did not start\n");
    }
    harness_cli_init(&fx.cli, fx.stack.dir, NULL, CLI_DEADLINE_MS);
    harness_cli_service(&fx.cli, NULL, fx.stack.service.endpoint, fx.stack.keys);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help_lists_commands_and_flags),
        cmocka_unit_test(test_usage_errors_exit_2),
        cmocka_unit_test(test_keygen_makes_files),
        cmocka_unit_test(test_unreachable_exits_3),
        cmocka_unit_test(test_health),
        cmocka_unit_test(test_tour),
        cmocka_unit_test(test_tour_reservations),
        cmocka_unit_test(test_error_reply_names_the_field),
        cmocka_unit_test(test_list_all_follows_pages),
        cmocka_unit_test(test_idempotency_key_repeats_safely),
        cmocka_unit_test(test_new_keys_and_roles),
        cmocka_unit_test(test_insecure_mode),
    };
    return cmocka_run_group_tests(tests, setup, harness_stack_teardown);
}
