/* The notifications commands of the passerelle CLI as a user runs them:
 * the real binary against real Redis, reservations and notifications
 * services, and a webhook sink (tools/passerelle-sink) that checks the
 * signature with the secret the CLI printed. Judged by stdout, stderr and
 * the exit code. The endpoint comes from PASSERELLE_NOTIFICATIONS_ENDPOINT
 * alone, which is what makes these commands go to the notifications
 * service and not to the reservations one. */
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
    harness_stack_t stack; /* Redis + reservations, client "operator" */
    harness_service_t notify;
    harness_cli_t cli;
    harness_proc_t sink;
} fixture_t;

static fixture_t fx;

/* Runs the CLI with the named key, the notifications endpoint and the keys
 * given through the environment only. */
#define run_as(name, ...) harness_run_cli_as(&fx.cli, name, __VA_ARGS__, NULL)

/* The same without any environment: for what needs no service. */
#define run_bare(...) harness_run_cli(&fx.cli, NULL, __VA_ARGS__, NULL)

static void need_services(void)
{
    if (fx.stack.service.pid <= 0 || fx.notify.pid <= 0)
        fail_msg("a service did not start (see the logs in %s)", fx.stack.dir);
}

static const char *json_str(const json_t *object, const char *key)
{
    const char *value = json_string_value(json_object_get(object, key));
    return value ? value : "";
}

/* The value after "\n<label>" (or at the start of text) up to the end of
 * its line, into out; "" if absent. */
static void line_value(const char *text, const char *label, char *out, size_t out_size)
{
    out[0] = '\0';
    size_t label_len = strlen(label);
    for (const char *line = text; line && *line;) {
        if (strncmp(line, label, label_len) == 0) {
            const char *value = line + label_len;
            snprintf(out, out_size, "%.*s", (int)strcspn(value, "\n"), value);
            return;
        }
        line = strchr(line, '\n');
        if (line)
            line++;
    }
}

/* The id of the subscription whose summary line starts the output. */
static void summary_id(const char *text, char id[ID_LEN])
{
    id[0] = '\0';
    assert_int_equal(strncmp(text, "subscription S", 14), 0);
    snprintf(id, ID_LEN, "%.*s", (int)strcspn(text + 13, " \n"), text + 13);
    assert_true(id_valid('S', id));
}

/* Polls `attempts <sub> --json` until it lists at least count attempts;
 * returns the last listing (caller decrefs). */
static json_t *wait_attempts(const char *sub, size_t count)
{
    json_t *json = NULL;
    for (int waited = 0; waited <= WAIT_MS; waited += POLL_MS) {
        json_decref(json);
        harness_run_t run = run_as("action_logement", "attempts", sub, "--json");
        harness_assert_exit(&run, 0);
        json = harness_parse_json(run.out);
        harness_run_free(&run);
        if (json_array_size(json_object_get(json, "attempts")) >= count)
            return json;
        usleep(POLL_MS * 1000);
    }
    return json;
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
        "Notifications (endpoint: --endpoint, or PASSERELLE_NOTIFICATIONS_ENDPOINT",
        "default tcp://127.0.0.1:7402",
        "subscription create [flags]",
        "--channel webhook|feed|email",
        "--event-types TEXT (repeatable, or comma-separated)",
        "--territories TEXT (repeatable, or comma-separated)",
        "subscription get <id>",
        "subscription list [flags]",
        "--state active|paused|disabled",
        "subscription pause <id>",
        "subscription resume <id>",
        "subscription delete <id>",
        "subscription rotate-secret <id>",
        "--overlap-s N",
        "attempts <subscription>",
        "deadletters <subscription>",
        "deadletter replay <subscription>",
        "--delivery-id TEXT",
        "feed replay",
        "digest send",
        "latency",
        "--event-type TEXT",
        /* the reservations commands keep their own heading and default */
        "Reservations (endpoint: --endpoint, or PASSERELLE_RESERVATIONS_ENDPOINT",
    };
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++)
        harness_assert_contains(run.out, expected[i]);
    harness_run_free(&run);

    /* one command's help shows only the flags it takes */
    run = run_bare("subscription", "pause", "--help");
    harness_assert_exit(&run, 0);
    harness_assert_contains(run.out, "subscription pause <id>");
    harness_assert_contains(run.out, "--reason TEXT");
    assert_null(strstr(run.out, "--overlap-s"));
    assert_null(strstr(run.out, "subscription resume"));
    harness_run_free(&run);
    run = run_bare("help", "attempts");
    harness_assert_exit(&run, 0);
    harness_assert_contains(run.out, "attempts <subscription>");
    harness_assert_contains(run.out, "--limit N");
    harness_run_free(&run);

    /* ... and refuses the others before any call */
    run = run_bare("subscription", "resume", "S01ARZ3NDEKTSV4RRFFQ69G5FAV", "--overlap-s", "60");
    harness_assert_exit(&run, 2);
    harness_assert_contains(run.err, "--overlap-s");
    harness_run_free(&run);

    /* a bad enum value is a usage error, as everywhere in the CLI */
    run = run_bare("subscription", "create", "--channel", "pigeon", "--url", "http://127.0.0.1/");
    harness_assert_exit(&run, 2);
    harness_assert_contains(run.err, "channel");
    assert_string_equal(run.out, "");
    harness_run_free(&run);

    /* "subscription" alone names the commands that begin so */
    run = run_bare("subscription");
    harness_assert_exit(&run, 2);
    harness_assert_contains(run.err, "'subscription rotate-secret'");
    harness_run_free(&run);
}

/* The notifications commands go to PASSERELLE_NOTIFICATIONS_ENDPOINT, not to
 * the reservations service; --endpoint still wins. */
static void test_endpoint_default(void **state)
{
    (void)state;
    need_services();
    char nowhere[64], nowhere_env[128], reservations_env[128], keys_env[600];
    snprintf(nowhere, sizeof nowhere, "tcp://127.0.0.1:%d", harness_free_port());
    snprintf(nowhere_env, sizeof nowhere_env, "PASSERELLE_NOTIFICATIONS_ENDPOINT=%s", nowhere);
    snprintf(reservations_env, sizeof reservations_env, "PASSERELLE_RESERVATIONS_ENDPOINT=%s",
             fx.notify.endpoint);
    snprintf(keys_env, sizeof keys_env, "PASSERELLE_KEYS_DIR=%s", fx.stack.keys);
    const char *env[] = {nowhere_env, reservations_env, keys_env, NULL};
    harness_run_t run =
        harness_run_cli(&fx.cli, env, "--timeout-ms", "200", "--retries", "0", "latency", NULL);
    harness_assert_exit(&run, 3);
    harness_assert_contains(run.err, nowhere);
    harness_run_free(&run);

    run = harness_run_cli(&fx.cli, env, "--endpoint", fx.notify.endpoint, "latency", NULL);
    harness_assert_exit(&run, 0);
    harness_assert_contains(run.out, "every territory convention.envisaged: ");
    harness_run_free(&run);
}

/* ==========================================================================
 * A webhook subscription, from creation to deletion
 * ======================================================================== */

static void test_webhook_tour(void **state)
{
    (void)state;
    need_services();
    int port = harness_free_port();
    char url[64], port_text[16];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/hook", port);
    snprintf(port_text, sizeof port_text, "%d", port);

    /* Created readable: the secret once, and a word that it is the only
     * time; the repeated filters from one comma-separated flag each. */
    harness_run_t run =
        run_as("action_logement", "subscription", "create", "--channel", "webhook", "--url", url,
               "--event-types", "convention.*, unit.registered", "--territories", "CT2", "--ref",
               "cli-tour", "--description", "Pays d'Aix correspondent");
    harness_assert_exit(&run, 0);
    char id[ID_LEN], secret[160];
    summary_id(run.out, id);
    harness_assert_contains(run.out, "WEBHOOK");
    harness_assert_contains(run.out, url);
    harness_assert_contains(run.out, "ACTIVE, for convention.*, unit.registered in CT2");
    harness_assert_contains(run.out, "owner ACTION_LOGEMENT");
    line_value(run.out, "secret: ", secret, sizeof secret);
    assert_int_equal(strncmp(secret, "whsec_", 6), 0);
    harness_assert_contains(run.out, "will not be shown again");
    /* printed once, not also among the fields */
    assert_null(strstr(strstr(run.out, secret) + 1, secret));
    harness_run_free(&run);

    /* The same ref again answers with the same subscription; --id-only
     * prints its id and nothing else. */
    run = run_as("action_logement", "subscription", "create", "--channel", "webhook", "--url", url,
                 "--ref", "cli-tour", "--id-only");
    harness_assert_exit(&run, 0);
    char line[64];
    snprintf(line, sizeof line, "%s\n", id);
    assert_string_equal(run.out, line);
    harness_run_free(&run);

    /* The sink checks every signature with the secret the CLI printed. */
    char out_path[512];
    snprintf(out_path, sizeof out_path, "%s/sink.jsonl", fx.stack.dir);
    const char *sink_args[] = {"--port", port_text, "--secret", secret, "--out", out_path, NULL};
    assert_int_equal(harness_proc_start(&fx.sink, "tools/passerelle-sink", fx.stack.dir, "sink",
                                        sink_args, true),
                     0);

    /* get and list never show the secret */
    run = run_as("action_logement", "subscription", "get", id);
    harness_assert_exit(&run, 0);
    harness_assert_contains(run.out, id);
    harness_assert_contains(run.out, "description: Pays d'Aix correspondent");
    assert_null(strstr(run.out, "whsec_"));
    assert_null(strstr(run.out, "secret"));
    harness_run_free(&run);
    run = run_as("action_logement", "subscription", "list");
    harness_assert_exit(&run, 0);
    harness_assert_contains(run.out, id);
    harness_assert_contains(run.out, url);
    assert_null(strstr(run.out, "whsec_"));
    harness_run_free(&run);
    run = run_as("action_logement", "subscription", "list", "--channel", "webhook", "--json");
    harness_assert_exit(&run, 0);
    json_t *json = harness_parse_json(run.out);
    json_t *sub = json_array_get(json_object_get(json, "subscriptions"), 0);
    assert_string_equal(json_str(sub, "id"), id);
    json_t *types = json_object_get(sub, "event_types");
    assert_int_equal(json_array_size(types), 2);
    assert_string_equal(json_string_value(json_array_get(types, 0)), "convention.*");
    assert_string_equal(json_string_value(json_array_get(types, 1)), "unit.registered");
    assert_int_equal(json_array_size(json_object_get(sub, "territories")), 1);
    assert_null(json_object_get(sub, "secret"));
    json_decref(json);
    harness_run_free(&run);
    run = run_as("action_logement", "subscription", "list", "--state", "paused", "--id-only");
    harness_assert_exit(&run, 0);
    assert_string_equal(run.out, "");
    harness_run_free(&run);

    /* A partner's feed subscription, for the feed's replay below. */
    run = run_as("partner", "subscription", "create", "--channel", "feed", "--event-types",
                 "convention.envisaged", "--territories", "CT2", "--id-only");
    harness_assert_exit(&run, 0);
    assert_true(run.out[0] == 'S');
    harness_run_free(&run);

    /* A Pertuis unit (CT2): registered and envisaged, both delivered,
     * both signed with the printed secret. */
    char unit[ID_LEN];
    harness_envisaged_unit(fx.stack.client, "ANAH-84-CLI-0001", "Pertuis", unit);
    json_t *lines = harness_jsonl_wait(out_path, 2, WAIT_MS);
    assert_int_equal(json_array_size(lines), 2);
    size_t i;
    json_t *got;
    json_array_foreach(lines, i, got)
    {
        assert_string_equal(json_str(got, "signature"), "verified");
        assert_int_equal(json_integer_value(json_object_get(got, "answered")), 200);
    }
    json_decref(lines);

    /* attempts: one line each, latest first */
    json = wait_attempts(id, 2);
    assert_int_equal(json_array_size(json_object_get(json, "attempts")), 2);
    json_decref(json);
    run = run_as("action_logement", "attempts", id);
    harness_assert_exit(&run, 0);
    const char *first = strchr(run.out, '\n'); /* past the header */
    assert_non_null(first);
    first++;
    char envisaged_line[512];
    snprintf(envisaged_line, sizeof envisaged_line, "%.*s", (int)strcspn(first, "\n"), first);
    harness_assert_contains(envisaged_line, "#1");
    harness_assert_contains(envisaged_line, "200");
    harness_assert_contains(envisaged_line, " ms");
    harness_assert_contains(envisaged_line, "delivered");
    harness_assert_contains(envisaged_line, "convention.envisaged");
    harness_assert_contains(envisaged_line, unit);
    harness_assert_contains(envisaged_line, "answer: ");
    harness_assert_contains(run.out, "unit.registered");
    harness_run_free(&run);
    run = run_as("action_logement", "attempts", id, "--limit", "1", "--json");
    harness_assert_exit(&run, 0);
    json = harness_parse_json(run.out);
    assert_int_equal(json_array_size(json_object_get(json, "attempts")), 1);
    json_decref(json);
    harness_run_free(&run);

    /* the measured promise: one envisaged convention delivered in CT2 */
    run = run_as("action_logement", "latency", "--territory", "CT2");
    harness_assert_exit(&run, 0);
    harness_assert_contains(run.out, "CT2 convention.envisaged: 1 delivered, p50 ");
    harness_assert_contains(run.out, " ms, p99 ");
    harness_assert_contains(run.out, " ms, max ");
    harness_run_free(&run);
    run = run_as("action_logement", "latency", "--territory", "CT3");
    harness_assert_exit(&run, 0);
    assert_string_equal(run.out, "CT3 convention.envisaged: no delivery yet\n");
    harness_run_free(&run);

    /* the feed published the envisaged convention, which --json decodes */
    run = run_as("partner", "feed", "replay");
    harness_assert_exit(&run, 0);
    harness_assert_contains(run.out, "convention.envisaged");
    harness_run_free(&run);
    run = run_as("partner", "feed", "replay", "--json");
    harness_assert_exit(&run, 0);
    json = harness_parse_json(run.out);
    json_t *event = json_object_get(json_array_get(json_object_get(json, "events"), 0), "event");
    json_t *data_unit = json_object_get(json_object_get(event, "data"), "unit");
    assert_string_equal(json_str(data_unit, "id"), unit);
    assert_string_equal(json_str(data_unit, "territory"), "CT2");
    json_decref(json);
    harness_run_free(&run);

    /* pause and resume change the state, and say why */
    run = run_as("action_logement", "subscription", "pause", id, "--reason", "receiver upgrade");
    harness_assert_exit(&run, 0);
    harness_assert_contains(run.out, "PAUSED (receiver upgrade)");
    harness_run_free(&run);
    run = run_as("action_logement", "subscription", "get", id, "--json");
    harness_assert_exit(&run, 0);
    json = harness_parse_json(run.out);
    assert_string_equal(json_str(json, "state"), "PAUSED");
    json_decref(json);
    harness_run_free(&run);
    run = run_as("action_logement", "subscription", "list", "--state", "paused", "--id-only");
    harness_assert_exit(&run, 0);
    assert_string_equal(run.out, line);
    harness_run_free(&run);
    run = run_as("action_logement", "subscription", "pause", id);
    harness_assert_exit(&run, 1);
    harness_assert_contains(run.err, "FAILED_PRECONDITION");
    harness_assert_contains(run.err, "PAUSED");
    harness_run_free(&run);
    run = run_as("action_logement", "subscription", "resume", id);
    harness_assert_exit(&run, 0);
    harness_assert_contains(run.out, " ACTIVE, ");
    harness_run_free(&run);

    /* nothing died */
    run = run_as("action_logement", "deadletters", id);
    harness_assert_exit(&run, 0);
    assert_string_equal(run.out, "(no dead letter)\n");
    harness_run_free(&run);
    run = run_as("action_logement", "deadletter", "replay", id, "--delivery-id", "msg_nothing");
    harness_assert_exit(&run, 1);
    harness_assert_contains(run.err, "NOT_FOUND");
    harness_assert_contains(run.err, "(field: delivery_id)");
    harness_run_free(&run);
    run = run_as("action_logement", "deadletter", "replay", id);
    harness_assert_exit(&run, 1);
    harness_assert_contains(run.err, "INVALID_ARGUMENT");
    harness_run_free(&run);
    run = run_as("action_logement", "deadletter", "replay", id, "--since", "2020-01-01T00:00:00Z");
    harness_assert_exit(&run, 0);
    harness_assert_contains(run.out, "replayed: 0");
    harness_run_free(&run);

    /* a new secret, shown once too */
    run = run_as("action_logement", "subscription", "rotate-secret", id, "--overlap-s", "60");
    harness_assert_exit(&run, 0);
    char rotated[160];
    line_value(run.out, "secret: ", rotated, sizeof rotated);
    assert_int_equal(strncmp(rotated, "whsec_", 6), 0);
    assert_string_not_equal(rotated, secret);
    harness_assert_contains(run.out, "will not be shown again");
    harness_run_free(&run);

    /* deleted, it is gone */
    run = run_as("action_logement", "subscription", "delete", id);
    harness_assert_exit(&run, 0);
    harness_run_free(&run);
    run = run_as("action_logement", "subscription", "get", id);
    harness_assert_exit(&run, 1);
    harness_assert_contains(run.err, "NOT_FOUND");
    harness_run_free(&run);
}

/* The digest on demand prints the id of the event that carries it. */
static void test_digest_send(void **state)
{
    (void)state;
    need_services();
    harness_run_t run = run_as("admin", "digest", "send", "--territory", "CT1");
    harness_assert_exit(&run, 0);
    char event_id[64];
    line_value(run.out, "event_ids: ", event_id, sizeof event_id);
    assert_true(id_valid('E', event_id));
    harness_run_free(&run);

    run = run_as("metropole", "digest", "send", "--territory", "CT2", "--id-only");
    harness_assert_exit(&run, 0);
    assert_int_equal(strlen(run.out), ID_LEN); /* the id and its newline */
    run.out[ID_LEN - 1] = '\0';
    assert_true(id_valid('E', run.out));
    assert_string_not_equal(run.out, event_id);
    harness_run_free(&run);
}

/* ==========================================================================
 * Refusals
 * ======================================================================== */

static void test_refusals(void **state)
{
    (void)state;
    need_services();
    /* a URL off the allowlist: the service refuses it, naming the field */
    harness_run_t run = run_as("action_logement", "subscription", "create", "--channel", "webhook",
                               "--url", "http://192.0.2.10/hook");
    harness_assert_exit(&run, 1);
    harness_assert_contains(run.err, "INVALID_ARGUMENT");
    harness_assert_contains(run.err, "(field: url)");
    assert_string_equal(run.out, "");
    harness_run_free(&run);

    /* a territory that is none */
    run = run_as("action_logement", "subscription", "create", "--channel", "feed", "--territories",
                 "CT2,CT9");
    harness_assert_exit(&run, 1);
    harness_assert_contains(run.err, "(field: territories)");
    harness_run_free(&run);

    /* Action Logement's subscription is not the partner's to read */
    run = run_as("action_logement", "subscription", "create", "--channel", "feed", "--id-only");
    harness_assert_exit(&run, 0);
    char id[ID_LEN];
    snprintf(id, sizeof id, "%.*s", (int)strcspn(run.out, "\n"), run.out);
    assert_true(id_valid('S', id));
    harness_run_free(&run);
    run = run_as("partner", "subscription", "get", id);
    harness_assert_exit(&run, 1);
    harness_assert_contains(run.err, "PERMISSION_DENIED");
    harness_assert_contains(run.err, "ACTION_LOGEMENT");
    harness_run_free(&run);
    run = run_as("partner", "attempts", id);
    harness_assert_exit(&run, 1);
    harness_assert_contains(run.err, "PERMISSION_DENIED");
    harness_run_free(&run);
    run = run_as("partner", "subscription", "pause", id);
    harness_assert_exit(&run, 1);
    harness_assert_contains(run.err, "PERMISSION_DENIED");
    harness_run_free(&run);

    /* only the Métropole and ADMIN send the digest */
    run = run_as("partner", "digest", "send");
    harness_assert_exit(&run, 1);
    harness_assert_contains(run.err, "PERMISSION_DENIED");
    harness_run_free(&run);

    run = run_as("action_logement", "latency", "--territory", "CT9");
    harness_assert_exit(&run, 1);
    harness_assert_contains(run.err, "(field: territory)");
    harness_run_free(&run);
}

/* ==========================================================================
 * Setup
 * ======================================================================== */

static int group_setup(void **state)
{
    *state = &fx;
    if (harness_stack_start(&fx.stack, "notifycli", "operator", NULL) != 0) {
        if (!fx.stack.dir)
            return -1;
        fprintf(stderr, "the reservations service did not start\n");
    } else if (harness_notify_start(&fx.stack, &fx.notify, NULL) != 0) {
        fprintf(stderr, "the notifications service did not start\n");
    }
    harness_cli_init(&fx.cli, fx.stack.dir, NULL, CLI_DEADLINE_MS);
    harness_cli_service(&fx.cli, "PASSERELLE_NOTIFICATIONS_ENDPOINT", fx.notify.endpoint,
                        fx.stack.keys);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    bool clean = harness_service_stop_checked(&fx.notify);
    harness_proc_stop(&fx.sink, SIGTERM);
    bool stack_clean = harness_stack_stop(&fx.stack);
    return clean && stack_clean ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help_and_usage), cmocka_unit_test(test_endpoint_default),
        cmocka_unit_test(test_webhook_tour),   cmocka_unit_test(test_digest_send),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
