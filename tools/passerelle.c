/* passerelle: the command-line client of the Passerelle services.
 *
 * Every service command is one row of the command table below: the words
 * that name it, the request type, the request and reply descriptors, and the
 * fields positional arguments fill (at most two). Flags are not declared
 * anywhere: a flag --some-name is the request field some_name, the flags
 * are gathered into a JSON object, and pbjson turns that object into the
 * request with the same lenient rules it applies to any JSON input. A new
 * request is therefore one new row, and `passerelle help` describes it from
 * its descriptor. A repeated field takes repeated flags or one
 * comma-separated list. A row may narrow its flags to some of the request's
 * fields, and names the service it goes to when --endpoint does not (the
 * reservations service unless it says otherwise).
 *
 * Exit codes are part of the interface for scripts: 0 OK, 1 the service
 * answered with an error (or keygen refused), 2 usage or configuration
 * error, 3 no reply after the retries. */
#include "cli_common.h"
#include "cli_print.h"
#include "config.h"
#include "docs.h"
#include "envelope.pb-c.h"
#include "identity.h"
#include "ids.h"
#include "indicators.h"
#include "indicators.pb-c.h"
#include "log.h"
#include "memtune.h"
#include "notifications.pb-c.h"
#include "pbjson.h"
#include "reservations.pb-c.h"
#include "report.h"
#include "status.h"

#include <ctype.h>
#include <czmq.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* ==========================================================================
 * The command table
 * ======================================================================== */

#define CMD_PAGED  (1u << 0) /* --all follows next_page_token to the end */
#define CMD_EVENTS (1u << 1) /* one line per event; --json decodes the data */

/* The service a command goes to when --endpoint does not say: each has its
 * own variable and local default, so that one shell can talk to all. */
typedef enum {
    SERVICE_RESERVATIONS = 0, /* the zero value: the rows that do not say */
    SERVICE_NOTIFICATIONS,
    SERVICE_INDICATORS,
} service_id_t;

static const struct {
    const char *heading; /* of its commands in the help */
    const char *env;
    const char *fallback;
} services[] = {
    [SERVICE_RESERVATIONS] = {"Reservations", "PASSERELLE_RESERVATIONS_ENDPOINT",
                              "tcp://127.0.0.1:7401"},
    [SERVICE_NOTIFICATIONS] = {"Notifications", "PASSERELLE_NOTIFICATIONS_ENDPOINT",
                               "tcp://127.0.0.1:7402"},
    [SERVICE_INDICATORS] = {"Indicators", "PASSERELLE_INDICATORS_ENDPOINT", "tcp://127.0.0.1:7403"},
};

typedef struct {
    const char *words;                         /* "unit register" */
    const char *type;                          /* "unit.register"; NULL: local */
    const ProtobufCMessageDescriptor *request; /* body sent */
    const ProtobufCMessageDescriptor *reply;   /* body expected back */
    /* A positional argument fills this field, or positional_alt when it is
     * not an identifier with id_prefix (ids.h): "unit get U01.." vs
     * "unit get ANAH-13-0042". */
    const char *positional;
    const char *positional_alt;
    char id_prefix;
    const char *argument; /* how help shows the positional argument */
    unsigned flags;
    const char *summary;
    /* A second positional argument fills this field: "programme attach
     * P01.. ANAH-84-0001". */
    const char *positional2;
    service_id_t service;
    /* The request fields this command takes, comma-separated; NULL: all of
     * them. Commands sharing a request message ("subscription pause" and
     * "resume") take only what means something to each. */
    const char *fields;
} command_t;

static const command_t commands[] = {
    {"health", "health", &passerelle__health_request__descriptor,
     &passerelle__health_reply__descriptor, NULL, NULL, 0, NULL, 0,
     "Ask the service whether it is up, and who it takes you for.", NULL, SERVICE_RESERVATIONS,
     NULL},
    {"keygen", NULL, NULL, NULL, NULL, NULL, 0, NULL, 0,
     "Make a client key pair (--name NAME --party PARTY), authorized at once,\n"
     "or the services' certificate if there is none (--server). To rotate the\n"
     "services' certificate: --server --next makes server.next.key[_secret]\n"
     "beside it, to hand server.next.key to every client; --server --promote\n"
     "then makes the next certificate the current one (the old one is kept as\n"
     "server.previous.key), in the services' folder before a rolling restart,\n"
     "and in each client's folder once every service runs on it.",
     NULL, SERVICE_RESERVATIONS, NULL},
    {"unit register", "unit.register", &passerelle__unit_register_request__descriptor,
     &passerelle__unit__descriptor, NULL, NULL, 0, NULL, 0,
     "Register a housing unit (logement). Registering the same --external-ref\n"
     "again returns the unit already registered.",
     NULL, SERVICE_RESERVATIONS, NULL},
    {"unit get", "unit.get", &passerelle__unit_get_request__descriptor,
     &passerelle__unit__descriptor, "id", "external_ref", 'U', "<id-or-ref>", 0,
     "Show a unit, by id or by external reference.", NULL, SERVICE_RESERVATIONS, NULL},
    {"unit list", "unit.list", &passerelle__unit_list_request__descriptor,
     &passerelle__unit_list__descriptor, NULL, NULL, 0, NULL, CMD_PAGED,
     "List units, one page at a time; --all follows the pages to the end.", NULL,
     SERVICE_RESERVATIONS, NULL},
    {"convention envisage", "convention.envisage",
     &passerelle__convention_envisage_request__descriptor, &passerelle__convention__descriptor,
     "unit", NULL, 0, "<unit>", 0,
     "Record that an ANAH convention is envisaged on a private unit (by id or\n"
     "external reference); Action Logement's correspondent is told.",
     NULL, SERVICE_RESERVATIONS, NULL},
    {"convention sign", "convention.sign", &passerelle__convention_step_request__descriptor,
     &passerelle__convention__descriptor, "id", "unit", 'C', "<id-or-unit>", 0,
     "Sign an envisaged convention (the unit needs energy class E or better).", NULL,
     SERVICE_RESERVATIONS, NULL},
    {"convention in-force", "convention.in_force", &passerelle__convention_step_request__descriptor,
     &passerelle__convention__descriptor, "id", "unit", 'C', "<id-or-unit>", 0,
     "Put a signed convention in force (its first lease).", NULL, SERVICE_RESERVATIONS, NULL},
    {"convention end", "convention.end", &passerelle__convention_step_request__descriptor,
     &passerelle__convention__descriptor, "id", "unit", 'C', "<id-or-unit>", 0,
     "End a convention: --reason expired or terminated.", NULL, SERVICE_RESERVATIONS, NULL},
    {"convention abandon", "convention.abandon", &passerelle__convention_step_request__descriptor,
     &passerelle__convention__descriptor, "id", "unit", 'C', "<id-or-unit>", 0,
     "Abandon an envisaged convention.", NULL, SERVICE_RESERVATIONS, NULL},
    {"convention get", "convention.get", &passerelle__convention_get_request__descriptor,
     &passerelle__convention__descriptor, "id", "unit", 'C', "<id-or-unit>", 0,
     "Show a convention, with its unit.", NULL, SERVICE_RESERVATIONS, NULL},
    {"programme create", "programme.create", &passerelle__programme_create_request__descriptor,
     &passerelle__programme__descriptor, NULL, NULL, 0, NULL, 0,
     "Create a programme (PIG, OPAH, OPAH-RU, NPNRU, social housing or social\n"
     "ownership operation) in a territory, or in some of its communes\n"
     "(--communes Pertuis,Meyrargues).",
     NULL, SERVICE_RESERVATIONS, NULL},
    {"programme get", "programme.get", &passerelle__programme_get_request__descriptor,
     &passerelle__programme__descriptor, "id", NULL, 0, "<id>", 0, "Show a programme.", NULL,
     SERVICE_RESERVATIONS, NULL},
    {"programme list", "programme.list", &passerelle__programme_list_request__descriptor,
     &passerelle__programme_list__descriptor, NULL, NULL, 0, NULL, CMD_PAGED,
     "List programmes, by territory or kind; --all follows the pages to the end.", NULL,
     SERVICE_RESERVATIONS, NULL},
    {"programme attach", "programme.attach_unit", &passerelle__programme_attach_request__descriptor,
     &passerelle__unit__descriptor, "programme", NULL, 0, "<programme> <unit>", 0,
     "Attach a unit (by id or external reference) to a programme.", "unit", SERVICE_RESERVATIONS,
     NULL},
    {"objective set", "objective.set", &passerelle__objective_set_request__descriptor,
     &passerelle__objective__descriptor, "programme", NULL, 0, "<programme>", 0,
     "Set the number of units to reserve for Action Logement in a programme\n"
     "and a year (--year, --units), optionally for one --level or --financing.",
     NULL, SERVICE_RESERVATIONS, NULL},
    {"progress", "progress.get", &passerelle__progress_request__descriptor,
     &passerelle__progress__descriptor, "programme", "territory", 'P', "[<programme-or-territory>]",
     0,
     "Show what was reserved for Action Logement against the objectives, for\n"
     "one programme, the programmes of a territory (CT1..CT6), or all; this\n"
     "year unless --year.",
     NULL, SERVICE_RESERVATIONS, NULL},
    {"reservation create", "reservation.create",
     &passerelle__reservation_create_request__descriptor, &passerelle__reservation__descriptor,
     "unit", NULL, 0, "[<unit>]", 0,
     "Reserve a unit (--mode stock, the unit by id or external reference) or a\n"
     "number of released units of a programme or a landlord in a year\n"
     "(--mode flow); for Action Logement unless --reservataire. Target publics:\n"
     "--target-publics under_30,mobility.",
     NULL, SERVICE_RESERVATIONS, NULL},
    {"reservation release", "reservation.release",
     &passerelle__reservation_step_request__descriptor, &passerelle__reservation__descriptor, "id",
     "unit", 'R', "<id-or-unit>", 0,
     "Release a reservation (it still counts as achieved); a unit names its\n"
     "active reservation.",
     NULL, SERVICE_RESERVATIONS, NULL},
    {"reservation cancel", "reservation.cancel", &passerelle__reservation_step_request__descriptor,
     &passerelle__reservation__descriptor, "id", "unit", 'R', "<id-or-unit>", 0,
     "Cancel a reservation (it no longer counts).", NULL, SERVICE_RESERVATIONS, NULL},
    {"reservation vacancy", "reservation.vacancy",
     &passerelle__reservation_step_request__descriptor, &passerelle__reservation__descriptor, "id",
     "unit", 'R', "<id-or-unit>", 0,
     "Record a new vacancy of a reserved unit: its candidates start afresh.", NULL,
     SERVICE_RESERVATIONS, NULL},
    {"reservation get", "reservation.get", &passerelle__reservation_get_request__descriptor,
     &passerelle__reservation__descriptor, "id", "unit", 'R', "<id-or-unit>", 0,
     "Show a reservation, by id or by its unit's active reservation.", NULL, SERVICE_RESERVATIONS,
     NULL},
    {"reservation list", "reservation.list", &passerelle__reservation_list_request__descriptor,
     &passerelle__reservation_list__descriptor, NULL, NULL, 0, NULL, CMD_PAGED,
     "List reservations, filtered by unit, programme, reservataire, mode, state,\n"
     "year or territory; --all follows the pages to the end.",
     NULL, SERVICE_RESERVATIONS, NULL},
    {"proposal record", "proposal.record", &passerelle__proposal_record_request__descriptor,
     &passerelle__proposal__descriptor, "reservation", NULL, 0, "<reservation-or-unit>", 0,
     "Propose a candidate (a pseudonymous --candidate-ref, never a name) for a\n"
     "reserved unit, with the employer's --employer-siren, --employer-sector\n"
     "and --employer-headcount and the --publics it belongs to\n"
     "(under_30,apprentice,...). The reply says whether the candidate is\n"
     "eligible, and why not.",
     NULL, SERVICE_RESERVATIONS, NULL},
    {"proposal get", "proposal.get", &passerelle__proposal_get_request__descriptor,
     &passerelle__proposal__descriptor, "id", NULL, 0, "<id>", 0, "Show a proposal.", NULL,
     SERVICE_RESERVATIONS, NULL},
    {"proposal list", "proposal.list", &passerelle__proposal_list_request__descriptor,
     &passerelle__proposal_list__descriptor, "reservation", NULL, 0, "[<reservation>]", CMD_PAGED,
     "List the candidates proposed for a reservation (its current vacancy\n"
     "unless --vacancy); --all follows the pages to the end.",
     NULL, SERVICE_RESERVATIONS, NULL},
    {"attribution decide", "attribution.decide",
     &passerelle__attribution_decide_request__descriptor, &passerelle__proposal__descriptor,
     "proposal", NULL, 0, "<proposal>", 0,
     "Record the allocation committee's decision on a proposal: --decision\n"
     "attributed, ranked (with --rank 1-3), refused or withdrawn. A unit is\n"
     "attributed once per vacancy; fewer than three candidates examined is\n"
     "a warning.",
     NULL, SERVICE_RESERVATIONS, NULL},
    {"proposal decide", "attribution.decide", &passerelle__attribution_decide_request__descriptor,
     &passerelle__proposal__descriptor, "proposal", NULL, 0, "<proposal>", 0,
     "The same as 'attribution decide'.", NULL, SERVICE_RESERVATIONS, NULL},
    {"events", "event.list", &passerelle__event_list_request__descriptor,
     &passerelle__event_list_reply__descriptor, NULL, NULL, 0, NULL, CMD_EVENTS,
     "List the service's events after a stream position (--after), one line\n"
     "each: position, time, type, subject. --json decodes each event's data.",
     NULL, SERVICE_RESERVATIONS, NULL},

    /* The notifications service's commands, after the reservations' so that
     * the help shows them under their own heading. */
    {"subscription create", "subscription.create",
     &passerelle__subscription_create_request__descriptor, &passerelle__subscription__descriptor,
     NULL, NULL, 0, NULL, 0,
     "Subscribe to events: --channel webhook (signed POSTs to a --url on the\n"
     "allowlist), feed (the partner feed) or email (the territory digest, to\n"
     "--email). --event-types 'convention.*,unit.registered' and --territories\n"
     "CT1,CT2 narrow what comes (none: everything). A webhook's signing secret\n"
     "is shown once, here. ADMIN may give a secret agreed beforehand (--secret\n"
     "whsec_...) and subscribe for another --owner-party. Creating the same\n"
     "--ref again returns the subscription already made.",
     NULL, SERVICE_NOTIFICATIONS, NULL},
    {"subscription get", "subscription.get", &passerelle__subscription_get_request__descriptor,
     &passerelle__subscription__descriptor, "id", NULL, 0, "<id>", 0,
     "Show a subscription (its secret is never shown again).", NULL, SERVICE_NOTIFICATIONS, NULL},
    {"subscription list", "subscription.list", &passerelle__subscription_list_request__descriptor,
     &passerelle__subscription_list__descriptor, NULL, NULL, 0, NULL, CMD_PAGED,
     "List your party's subscriptions (ADMIN: everyone's, or one --owner-party's),\n"
     "by --channel or --state; --all follows the pages to the end.",
     NULL, SERVICE_NOTIFICATIONS, NULL},
    {"subscription pause", "subscription.pause", &passerelle__subscription_step_request__descriptor,
     &passerelle__subscription__descriptor, "id", NULL, 0, "<id>", 0,
     "Pause a subscription: its deliveries wait, and nothing is lost, until it\n"
     "is resumed.",
     NULL, SERVICE_NOTIFICATIONS, "id,reason"},
    {"subscription resume", "subscription.resume",
     &passerelle__subscription_step_request__descriptor, &passerelle__subscription__descriptor,
     "id", NULL, 0, "<id>", 0,
     "Resume a paused (or disabled) subscription: what waited is delivered.", NULL,
     SERVICE_NOTIFICATIONS, "id"},
    {"subscription delete", "subscription.delete",
     &passerelle__subscription_step_request__descriptor, &passerelle__subscription__descriptor,
     "id", NULL, 0, "<id>", 0, "Delete a subscription: nothing more is delivered to it.", NULL,
     SERVICE_NOTIFICATIONS, "id"},
    {"subscription rotate-secret", "subscription.rotate_secret",
     &passerelle__subscription_step_request__descriptor, &passerelle__subscription__descriptor,
     "id", NULL, 0, "<id>", 0,
     "Give a webhook a new signing secret, shown once. The previous one keeps\n"
     "signing too for --overlap-s seconds (default a day, at most 7 days), so\n"
     "that the receiver can switch without refusing a message.",
     NULL, SERVICE_NOTIFICATIONS, "id,overlap_s"},
    {"attempts", "attempt.list", &passerelle__attempt_list_request__descriptor,
     &passerelle__attempt_list__descriptor, "subscription_id", NULL, 0, "<subscription>", 0,
     "Show a subscription's delivery attempts, latest first (--limit, default\n"
     "50), one line each: time, attempt number, HTTP status, duration, outcome,\n"
     "event type, subject, and the error or the first bytes of the answer.",
     NULL, SERVICE_NOTIFICATIONS, NULL},
    {"deadletters", "deadletter.list", &passerelle__dead_letter_list_request__descriptor,
     &passerelle__dead_letter_list__descriptor, "subscription_id", NULL, 0, "<subscription>", 0,
     "List a subscription's dead letters, oldest first (--limit, default 100):\n"
     "the deliveries whose every attempt failed.",
     NULL, SERVICE_NOTIFICATIONS, NULL},
    {"deadletter replay", "deadletter.replay", &passerelle__dead_letter_replay_request__descriptor,
     &passerelle__dead_letter_replay_reply__descriptor, "subscription_id", NULL, 0,
     "<subscription>", 0,
     "Deliver dead letters again, under their first webhook-id: one\n"
     "(--delivery-id), or every one dead since a time (--since\n"
     "2026-11-29T10:00:00Z).",
     NULL, SERVICE_NOTIFICATIONS, NULL},
    {"feed replay", "feed.replay", &passerelle__feed_replay_request__descriptor,
     &passerelle__event_list_reply__descriptor, NULL, NULL, 0, NULL, CMD_EVENTS,
     "List what the partner feed published after a position (--after; --limit,\n"
     "default 100), one line each: position, time, type, subject. --json\n"
     "decodes each event's data.",
     NULL, SERVICE_NOTIFICATIONS, NULL},
    {"digest send", "digest.send", &passerelle__digest_send_request__descriptor,
     &passerelle__digest_send_reply__descriptor, NULL, NULL, 0, NULL, 0,
     "Make the territory digest now, for one --territory or every one, and\n"
     "deliver it to its subscribers; prints the digest.ready event ids.",
     NULL, SERVICE_NOTIFICATIONS, NULL},
    {"latency", "latency.get", &passerelle__latency_request__descriptor,
     &passerelle__latency_reply__descriptor, NULL, NULL, 0, NULL, 0,
     "Show how long events took from their commit to their delivery, for one\n"
     "--territory or all, and one --event-type (default convention.envisaged):\n"
     "how many were delivered, p50, p99 and max.",
     NULL, SERVICE_NOTIFICATIONS, NULL},

    /* The indicators service: the need side (economic projects, demand
     * figures) and the figures. "indicators", "indicators series",
     * "indicators export" and "demand import" are indicators.c's. */
    {"project create", "project.create", &passerelle__project_create_request__descriptor,
     &passerelle__economic_project__descriptor, NULL, NULL, 0, NULL, 0,
     "Share an economic project (projet économique): a --company or --sector\n"
     "settling or growing in a --commune, its --expected-jobs by --horizon-year,\n"
     "its --status (prospect, confirmed or settled; default prospect) and the\n"
     "housing it will need, one --needs '{\"typology\":\"T2\",\"public\":\"under_30\",\n"
     "\"units\":20}' per kind. --ref is the Métropole's reference: creating the\n"
     "same --ref again returns the project already made.",
     NULL, SERVICE_INDICATORS, NULL},
    {"project update", "project.update", &passerelle__project_update_request__descriptor,
     &passerelle__economic_project__descriptor, "id", NULL, 0, "<id-or-ref>", 0,
     "Change a project: --status (forward only, prospect -> confirmed ->\n"
     "settled, or dropped from anywhere; a dropped project is final),\n"
     "--expected-jobs, --horizon-year, --commune, or its needs as a whole\n"
     "(--replace-needs with the new --needs, none to clear them).",
     NULL, SERVICE_INDICATORS, NULL},
    {"project get", "project.get", &passerelle__project_get_request__descriptor,
     &passerelle__economic_project__descriptor, "id", NULL, 0, "<id-or-ref>", 0,
     "Show an economic project, by id or by reference.", NULL, SERVICE_INDICATORS, NULL},
    {"project list", "project.list", &passerelle__project_list_request__descriptor,
     &passerelle__project_list__descriptor, NULL, NULL, 0, NULL, CMD_PAGED,
     "List economic projects, by --territory, --status or --horizon-year; --all\n"
     "follows the pages to the end.",
     NULL, SERVICE_INDICATORS, NULL},
    {"demand get", "demand.get", &passerelle__demand_get_request__descriptor,
     &passerelle__demand_period__descriptor, "period", NULL, 0, "<period>", 0,
     "Show Action Logement's demand figures of a period (2026-04, 2026-Q2 or\n"
     "2026) as last imported: one line per territory and public.",
     NULL, SERVICE_INDICATORS, NULL},
    {"indicator list", "indicator.list", &passerelle__indicator_list_request__descriptor,
     &passerelle__indicator_list__descriptor, NULL, NULL, 0, NULL, 0,
     "List the indicators: name, kind, unit, the axes a --filter may name, and\n"
     "the definition of each.",
     NULL, SERVICE_INDICATORS, NULL},
    {"indicators list", "indicator.list", &passerelle__indicator_list_request__descriptor,
     &passerelle__indicator_list__descriptor, NULL, NULL, 0, NULL, 0,
     "The same as 'indicator list'.", NULL, SERVICE_INDICATORS, NULL},
    {"indicator series", "indicator.series", &passerelle__series_request__descriptor,
     &passerelle__series__descriptor, "indicator", NULL, 0, "<indicator>", 0,
     "One indicator over periods, the request as it is (--scope as JSON:\n"
     "'{\"territory\":\"CT2\"}'); 'indicators series' takes --territory and\n"
     "--commune instead.",
     NULL, SERVICE_INDICATORS, NULL},
    {"indicator snapshot", "indicator.snapshot", &passerelle__snapshot_request__descriptor,
     &passerelle__snapshot__descriptor, NULL, NULL, 0, NULL, 0,
     "Every indicator for one scope (--scope as JSON, default the Métropole) at a\n"
     "--date; 'indicators' shows every territory side by side.",
     NULL, SERVICE_INDICATORS, NULL},
    {"indicator rebuild", "indicator.rebuild", &passerelle__rebuild_request__descriptor,
     &passerelle__rebuild_status__descriptor, NULL, NULL, 0, NULL, 0,
     "Recompute every figure from the start of the event streams into a fresh\n"
     "key space, then switch to it; queries keep answering meanwhile (ADMIN).",
     NULL, SERVICE_INDICATORS, NULL},
    {"indicator rebuild status", "indicator.rebuild_status",
     &passerelle__rebuild_status_request__descriptor, &passerelle__rebuild_status__descriptor, NULL,
     NULL, 0, NULL, 0, "Show how the last (or the running) rebuild went.", NULL, SERVICE_INDICATORS,
     NULL},
};

#define COMMAND_COUNT (sizeof commands / sizeof commands[0])

/* ==========================================================================
 * Global options: read here into a cli_options_t (cli_common.h), which the
 * modules with commands of their own take as it is.
 * ======================================================================== */

typedef enum {
    OPT_ENDPOINT,
    OPT_KEYS,
    OPT_AS,
    OPT_TIMEOUT_MS,
    OPT_RETRIES,
    OPT_IDEMPOTENCY_KEY,
    OPT_JSON,
    OPT_ID_ONLY,
    OPT_HELP,
} option_id_t;

static const struct {
    option_id_t id;
    const char *name;
    const char *value; /* NULL: takes no value */
    const char *env;
    const char *help;
} global_options[] = {
    {OPT_ENDPOINT, "endpoint", "URL", NULL,
     "the service to ask, whatever the command (default: the\n"
     "command's service, at the variable its heading names)"},
    {OPT_KEYS, "keys", "DIR", "PASSERELLE_KEYS_DIR", "the key directory (default ./var/keys)"},
    {OPT_AS, "as", "NAME", "PASSERELLE_CLIENT",
     "whose key to use: <keys>/clients/NAME.key_secret (default admin)"},
    {OPT_TIMEOUT_MS, "timeout-ms", "MS", "PASSERELLE_TIMEOUT_MS",
     "how long to wait for each attempt (default 3000)"},
    {OPT_RETRIES, "retries", "N", "PASSERELLE_RETRIES",
     "attempts after the first before giving up (default 2)"},
    {OPT_IDEMPOTENCY_KEY, "idempotency-key", "KEY", NULL,
     "makes a scripted write safe to repeat: the same key returns the\n"
     "first reply and changes nothing (default: a fresh key per run)"},
    {OPT_JSON, "json", NULL, NULL, "print the reply body as JSON"},
    {OPT_ID_ONLY, "id-only", NULL, NULL,
     "print only the id of the record in the reply, or of each listed one,\n"
     "for scripts: P=$(passerelle programme create ... --id-only)"},
    {OPT_HELP, "help", NULL, NULL, "show help (for a command, after its words)"},
};

#define GLOBAL_OPTION_COUNT (sizeof global_options / sizeof global_options[0])

static int usage_error(const char *format, ...) __attribute__((format(printf, 1, 2)));

/* The command being parsed, so that a usage error can point at its help. */
static const command_t *current_command;

static int usage_error(const char *format, ...)
{
    va_list args;
    va_start(args, format);
    int rc = cli_usage_verror(current_command ? current_command->words : NULL, format, args);
    va_end(args);
    return rc;
}

/* Reads an integer option value; false if it is not one in [min, max]. */
static bool parse_long(const char *text, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno || end == text || *end || value < min || value > max)
        return false;
    *out = value;
    return true;
}

/* Defaults from the environment. Returns 0 or CLI_EXIT_USAGE. */
static int options_from_env(cli_options_t *opts)
{
    memset(opts, 0, sizeof *opts);
    opts->keys_dir = config_str("PASSERELLE_KEYS_DIR", "./var/keys");
    opts->as = config_str("PASSERELLE_CLIENT", "admin");
    if (!config_int("PASSERELLE_TIMEOUT_MS", 3000, 1, 3600000, &opts->timeout_ms))
        return usage_error("PASSERELLE_TIMEOUT_MS must be milliseconds in 1..3600000");
    if (!config_int("PASSERELLE_RETRIES", 2, 0, 100, &opts->retries))
        return usage_error("PASSERELLE_RETRIES must be an integer in 0..100");
    if (!config_bool("PASSERELLE_INSECURE", false, &opts->insecure))
        return usage_error("PASSERELLE_INSECURE must be true or false");
    return 0;
}

static int option_set(cli_options_t *opts, option_id_t id, const char *value)
{
    switch (id) {
    case OPT_ENDPOINT:
        opts->endpoint = value;
        break;
    case OPT_KEYS:
        opts->keys_dir = value;
        break;
    case OPT_AS:
        opts->as = value;
        break;
    case OPT_TIMEOUT_MS:
        if (!parse_long(value, 1, 3600000, &opts->timeout_ms))
            return usage_error("--timeout-ms: '%s' is not milliseconds in 1..3600000", value);
        break;
    case OPT_RETRIES:
        if (!parse_long(value, 0, 100, &opts->retries))
            return usage_error("--retries: '%s' is not an integer in 0..100", value);
        break;
    case OPT_IDEMPOTENCY_KEY:
        opts->idempotency_key = value;
        break;
    case OPT_JSON:
        opts->json = true;
        break;
    case OPT_ID_ONLY:
        opts->id_only = true;
        break;
    case OPT_HELP:
        opts->help = true;
        break;
    }
    return 0;
}

/* Takes the global options out of argv, wherever they are, and leaves the
 * rest (command words, positional arguments, command flags) in order in
 * rest. Returns 0 or CLI_EXIT_USAGE. */
static int options_parse(cli_options_t *opts, int argc, char **argv, char **rest, int *rest_count)
{
    *rest_count = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "-h") == 0) {
            opts->help = true;
            continue;
        }
        size_t name_len = 0;
        const char *inline_value = NULL;
        if (strncmp(arg, "--", 2) == 0) {
            const char *eq = strchr(arg + 2, '=');
            name_len = eq ? (size_t)(eq - (arg + 2)) : strlen(arg + 2);
            inline_value = eq ? eq + 1 : NULL;
        }
        size_t k = GLOBAL_OPTION_COUNT;
        if (name_len)
            for (k = 0; k < GLOBAL_OPTION_COUNT; k++)
                if (strlen(global_options[k].name) == name_len &&
                    strncmp(global_options[k].name, arg + 2, name_len) == 0)
                    break;
        if (k == GLOBAL_OPTION_COUNT) {
            rest[(*rest_count)++] = argv[i];
            continue;
        }
        const char *value = NULL;
        if (global_options[k].value) {
            if (inline_value)
                value = inline_value;
            else if (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0)
                value = argv[++i];
            else
                return usage_error("--%s needs a value (%s)", global_options[k].name,
                                   global_options[k].value);
        } else if (inline_value) {
            return usage_error("--%s takes no value", global_options[k].name);
        }
        int rc = option_set(opts, global_options[k].id, value);
        if (rc)
            return rc;
    }
    return 0;
}

/* The command whose words begin tokens (the longest such), with the number
 * of tokens its words took; NULL if none. */
static const command_t *command_match(char **tokens, int count, int *used)
{
    const command_t *best = NULL;
    int best_words = 0;
    for (size_t c = 0; c < COMMAND_COUNT; c++) {
        const char *words = commands[c].words;
        int n = 0;
        bool match = true;
        while (*words) {
            size_t len = strcspn(words, " ");
            if (n >= count || strlen(tokens[n]) != len || strncmp(tokens[n], words, len) != 0) {
                match = false;
                break;
            }
            n++;
            words += len;
            while (*words == ' ')
                words++;
        }
        if (match && n > best_words) {
            best = &commands[c];
            best_words = n;
        }
    }
    *used = best_words;
    return best;
}

/* True if the command takes the request field name (its fields list, or
 * every field of its request when it has none). */
static bool command_takes(const command_t *cmd, const char *name)
{
    if (!cmd->fields)
        return true;
    size_t len = strlen(name);
    for (const char *item = cmd->fields; *item;) {
        size_t item_len = strcspn(item, ",");
        if (item_len == len && strncmp(item, name, len) == 0)
            return true;
        item += item_len;
        if (*item == ',')
            item++;
    }
    return false;
}

/* ==========================================================================
 * Help, generated from the descriptors
 * ======================================================================== */

static void flag_name(const char *field_name, char *out, size_t out_size)
{
    size_t i = 0;
    for (; field_name[i] && i + 1 < out_size; i++)
        out[i] = field_name[i] == '_' ? '-' : field_name[i];
    out[i] = '\0';
}

/* What a flag's value looks like: "TEXT", "NUMBER", or an enum's values. */
static void flag_hint(const ProtobufCFieldDescriptor *field, char *out, size_t out_size)
{
    out[0] = '\0';
    switch (field->type) {
    case PROTOBUF_C_TYPE_BOOL:
        return; /* a flag alone means true */
    case PROTOBUF_C_TYPE_STRING:
        snprintf(out, out_size, " TEXT");
        return;
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_DOUBLE:
        snprintf(out, out_size, " NUMBER");
        return;
    case PROTOBUF_C_TYPE_BYTES:
        snprintf(out, out_size, " BASE64");
        return;
    case PROTOBUF_C_TYPE_MESSAGE:
        snprintf(out, out_size, " JSON");
        return;
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumDescriptor *desc = field->descriptor;
        size_t len = 0;
        for (unsigned i = 0; i < desc->n_values && len + 1 < out_size; i++) {
            const char *name = pbjson_enum_name(desc, desc->values[i].value);
            /* "unspecified" is never worth typing, whatever prefix the enum's
             * other values left on it ("KIND_UNSPECIFIED"). */
            size_t name_len = name ? strlen(name) : 0;
            if (!name || (name_len >= 11 && strcasecmp(name + name_len - 11, "UNSPECIFIED") == 0))
                continue;
            out[len] = len == 0 ? ' ' : '|';
            len++;
            for (const char *p = name; *p && len + 1 < out_size; p++)
                out[len++] = (char)tolower((unsigned char)*p);
        }
        out[len] = '\0';
        return;
    }
    default:
        snprintf(out, out_size, " N");
        return;
    }
}

static void print_command_help(FILE *out, const command_t *cmd)
{
    fprintf(out, "  %s%s%s%s\n", cmd->words, cmd->argument ? " " : "",
            cmd->argument ? cmd->argument : "",
            cmd->request && cmd->request->n_fields ? " [flags]" : "");
    cli_print_indented(out, cmd->summary);
    if (!cmd->type) {
        fprintf(out, "      --name NAME  --party "
                     "metropole|action_logement|operator|partner|admin|service\n"
                     "      --server  [--next | --promote]\n");
        return;
    }
    for (unsigned i = 0; i < cmd->request->n_fields; i++) {
        const ProtobufCFieldDescriptor *field = &cmd->request->fields[i];
        if (!command_takes(cmd, field->name))
            continue;
        char name[64], hint[256];
        flag_name(field->name, name, sizeof name);
        flag_hint(field, hint, sizeof hint);
        bool positional = (cmd->positional && strcmp(cmd->positional, field->name) == 0) ||
                          (cmd->positional_alt && strcmp(cmd->positional_alt, field->name) == 0) ||
                          (cmd->positional2 && strcmp(cmd->positional2, field->name) == 0);
        bool repeated = field->label == PROTOBUF_C_LABEL_REPEATED;
        fprintf(out, "      --%s%s%s%s\n", name, hint,
                !repeated                                ? ""
                : field->type == PROTOBUF_C_TYPE_MESSAGE ? " (repeatable)"
                                                         : " (repeatable, or comma-separated)",
                positional
                    ? (cmd->positional_alt ? "  (or as the argument)" : "  (or the argument)")
                    : "");
    }
    if (cmd->flags & CMD_PAGED)
        fprintf(out, "      --all  (every page)\n");
}

static void print_help(FILE *out)
{
    fprintf(out, "passerelle - the command-line client of the Passerelle services\n"
                 "\n"
                 "usage: passerelle [options] <command> [argument] [flags] [options]\n"
                 "       passerelle help [<command>]\n"
                 "\n"
                 "A flag --some-name sets the request field some_name; a flag without a\n"
                 "value sets a yes/no field to yes. Enum values are case-insensitive.\n"
                 "\n"
                 "Commands:\n");
    for (size_t c = 0; c < COMMAND_COUNT; c++) {
        service_id_t service = commands[c].service;
        if (c == 0 || service != commands[c - 1].service)
            fprintf(out, "%s (endpoint: --endpoint, or %s,\ndefault %s):\n",
                    services[service].heading, services[service].env, services[service].fallback);
        print_command_help(out, &commands[c]);
        fputc('\n', out);
        if (service == SERVICE_INDICATORS &&
            (c + 1 == COMMAND_COUNT || commands[c + 1].service != service)) {
            indicators_print_help(out);
            fputc('\n', out);
        }
    }
    docs_print_help(out);
    fputc('\n', out);
    report_print_help(out);
    fputc('\n', out);
    fprintf(out, "Options (before or after the command):\n");
    for (size_t k = 0; k < GLOBAL_OPTION_COUNT; k++) {
        char left[64];
        snprintf(left, sizeof left, "--%s%s%s", global_options[k].name,
                 global_options[k].value ? " " : "",
                 global_options[k].value ? global_options[k].value : "");
        const char *help = global_options[k].help;
        size_t len = strcspn(help, "\n");
        fprintf(out, "  %-24s %.*s\n", left, (int)len, help);
        for (help += len; *help == '\n';) {
            help++;
            len = strcspn(help, "\n");
            fprintf(out, "  %-24s %.*s\n", "", (int)len, help);
            help += len;
        }
        if (global_options[k].env)
            fprintf(out, "  %-24s (environment: %s)\n", "", global_options[k].env);
    }
    fprintf(out, "\n"
                 "Environment:\n"
                 "  PASSERELLE_INSECURE=1    plain text, no CURVE keys (local development only)\n"
                 "\n"
                 "Exit codes:\n"
                 "  0  OK\n"
                 "  1  the service answered with an error (or keygen refused):\n"
                 "     \"error: <STATUS>: <message> (field: <field>)\" on stderr\n"
                 "  2  usage or configuration error (bad flag or value, missing key files)\n"
                 "  3  the service did not answer after the retries (unreachable)\n");
}

/* ==========================================================================
 * Command line to request
 * ======================================================================== */

static bool bool_word(const char *text, bool *out)
{
    static const char *yes[] = {"true", "yes", "on", "1"};
    static const char *no[] = {"false", "no", "off", "0"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(text, yes[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcasecmp(text, no[i]) == 0) {
            *out = false;
            return true;
        }
    }
    return false;
}

/* Adds one field value to the request object. Returns 0 or CLI_EXIT_USAGE. */
static int set_field(json_t *request, const ProtobufCFieldDescriptor *field, json_t *value,
                     const char *shown_as)
{
    if (field->label == PROTOBUF_C_LABEL_REPEATED) {
        json_t *array = json_object_get(request, field->name);
        if (!array) {
            array = json_array();
            json_object_set_new(request, field->name, array);
        }
        json_array_append_new(array, value);
        return 0;
    }
    if (json_object_get(request, field->name)) {
        json_decref(value);
        return usage_error("%s: field %s given twice", shown_as, field->name);
    }
    json_object_set_new(request, field->name, value);
    return 0;
}

/* A repeated scalar field takes a comma-separated list as well as repeated
 * flags ("--publics under_30,mobility" or "--publics under_30 --publics
 * mobility"): each item, trimmed, is one more array element, which is how
 * pbjson reads a repeated field. No commune or enum value has a comma in its
 * name, so none is split wrongly. Returns 0 or CLI_EXIT_USAGE. */
static int add_list_items(json_t *request, const ProtobufCFieldDescriptor *field, const char *text,
                          const char *shown_as)
{
    const char *item = text;
    for (;;) {
        size_t len = strcspn(item, ",");
        const char *end = item + len;
        while (item < end && isspace((unsigned char)*item))
            item++;
        while (end > item && isspace((unsigned char)end[-1]))
            end--;
        if (end == item)
            return usage_error("%s: an empty item in '%s'", shown_as, text);
        json_t *value = json_stringn(item, (size_t)(end - item));
        if (!value)
            return usage_error("%s: '%s' is not UTF-8 text", shown_as, text);
        int rc = set_field(request, field, value, shown_as);
        if (rc)
            return rc;
        item += strcspn(item, ",");
        if (*item != ',')
            return 0;
        item++;
    }
}

typedef struct {
    bool all; /* --all on a paged command */
} command_flags_t;

/* Turns the command's arguments into the request object. Returns 0 or
 * CLI_EXIT_USAGE. */
static int request_from_args(const command_t *cmd, char **args, int count, json_t *request,
                             command_flags_t *extra)
{
    const ProtobufCMessageDescriptor *desc = cmd->request;
    int positionals_taken = 0;

    for (int i = 0; i < count; i++) {
        const char *arg = args[i];
        if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0') {
            const char *name = positionals_taken == 0   ? cmd->positional
                               : positionals_taken == 1 ? cmd->positional2
                                                        : NULL;
            if (!name)
                return usage_error("unexpected argument '%s' for '%s'", arg, cmd->words);
            if (positionals_taken == 0 && cmd->positional_alt && !id_valid(cmd->id_prefix, arg))
                name = cmd->positional_alt;
            positionals_taken++;
            const ProtobufCFieldDescriptor *field =
                protobuf_c_message_descriptor_get_field_by_name(desc, name);
            json_t *value = json_string(arg);
            if (!value)
                return usage_error("'%s' is not UTF-8 text", arg);
            int rc = set_field(request, field, value, arg);
            if (rc)
                return rc;
            continue;
        }

        const char *eq = strchr(arg + 2, '=');
        char name[128];
        size_t name_len = eq ? (size_t)(eq - (arg + 2)) : strlen(arg + 2);
        if (name_len >= sizeof name)
            return usage_error("unknown flag %.40s... for '%s'", arg, cmd->words);
        for (size_t k = 0; k < name_len; k++)
            name[k] = arg[2 + k] == '-' ? '_' : arg[2 + k];
        name[name_len] = '\0';

        if ((cmd->flags & CMD_PAGED) && strcmp(name, "all") == 0 && !eq) {
            extra->all = true;
            continue;
        }
        const ProtobufCFieldDescriptor *field =
            protobuf_c_message_descriptor_get_field_by_name(desc, name);
        if (!field || !command_takes(cmd, name))
            return usage_error("unknown flag --%.*s for '%s'", (int)name_len, arg + 2, cmd->words);

        const char *text = eq ? eq + 1 : NULL;
        json_t *value = NULL;
        if (field->type == PROTOBUF_C_TYPE_BOOL) {
            bool flag = true;
            if (text) {
                if (!bool_word(text, &flag))
                    return usage_error("--%.*s: '%s' is not yes or no", (int)name_len, arg + 2,
                                       text);
            } else if (i + 1 < count && bool_word(args[i + 1], &flag)) {
                i++;
            }
            value = json_boolean(flag);
        } else {
            if (!text) {
                if (i + 1 >= count || strncmp(args[i + 1], "--", 2) == 0)
                    return usage_error("--%.*s needs a value", (int)name_len, arg + 2);
                text = args[++i];
            }
            if (field->type == PROTOBUF_C_TYPE_MESSAGE) {
                json_error_t error;
                value = json_loads(text, JSON_DECODE_ANY, &error);
                if (!value)
                    return usage_error("--%.*s: not JSON: %s", (int)name_len, arg + 2, error.text);
            } else if (field->label == PROTOBUF_C_LABEL_REPEATED) {
                int rc = add_list_items(request, field, text, arg);
                if (rc)
                    return rc;
                continue;
            } else {
                value = json_string(text);
                if (!value)
                    return usage_error("--%.*s: '%s' is not UTF-8 text", (int)name_len, arg + 2,
                                       text);
            }
        }
        int rc = set_field(request, field, value, arg);
        if (rc)
            return rc;
    }
    return 0;
}

/* ==========================================================================
 * Calling the service
 * ======================================================================== */

static const char *string_field(const ProtobufCMessage *msg, const char *name);
static const ProtobufCFieldDescriptor *list_field(const ProtobufCMessageDescriptor *desc);

/* The first repeated string field named "..._ids" (a digest's event_ids). */
static const ProtobufCFieldDescriptor *ids_field(const ProtobufCMessageDescriptor *desc)
{
    for (unsigned i = 0; i < desc->n_fields; i++) {
        const ProtobufCFieldDescriptor *field = &desc->fields[i];
        size_t len = strlen(field->name);
        if (field->label == PROTOBUF_C_LABEL_REPEATED && field->type == PROTOBUF_C_TYPE_STRING &&
            len > 4 && strcmp(field->name + len - 4, "_ids") == 0)
            return field;
    }
    return NULL;
}

/* --id-only: the record's id, one line per listed record, or one line per
 * id a reply lists as such. A reply with none of these (progress, health)
 * prints nothing, which a script notices. */
static void print_ids(const ProtobufCMessage *msg)
{
    const char *id = string_field(msg, "id");
    if (*id) {
        printf("%s\n", id);
        return;
    }
    const ProtobufCFieldDescriptor *items = list_field(msg->descriptor);
    if (!items) {
        const ProtobufCFieldDescriptor *ids = ids_field(msg->descriptor);
        if (!ids)
            return;
        size_t count = *(const size_t *)((const char *)msg + ids->quantifier_offset);
        const char *const *list = *(const char *const *const *)((const char *)msg + ids->offset);
        for (size_t i = 0; i < count; i++)
            printf("%s\n", list[i]);
        return;
    }
    size_t count = *(const size_t *)((const char *)msg + items->quantifier_offset);
    const ProtobufCMessage *const *list =
        *(const ProtobufCMessage *const *const *)((const char *)msg + items->offset);
    for (size_t i = 0; i < count; i++) {
        id = string_field(list[i], "id");
        if (*id)
            printf("%s\n", id);
    }
}

static void print_result(const cli_options_t *opts, const command_t *cmd,
                         const ProtobufCMessage *msg)
{
    if (opts->id_only) {
        print_ids(msg);
    } else if (opts->json) {
        json_t *json = (cmd->flags & CMD_EVENTS)
                           ? cli_events_to_json((const Passerelle__EventListReply *)msg)
                           : pbjson_from_message(msg);
        cli_print_json(json);
        json_decref(json);
    } else if (cmd->flags & CMD_EVENTS) {
        cli_print_events(stdout, (const Passerelle__EventListReply *)msg);
    } else {
        cli_print_message(stdout, msg, 0, NULL);
    }
}

/* The string value of a singular string field of msg ("" if unset). */
static const char *string_field(const ProtobufCMessage *msg, const char *name)
{
    const ProtobufCFieldDescriptor *field =
        protobuf_c_message_descriptor_get_field_by_name(msg->descriptor, name);
    if (!field || field->type != PROTOBUF_C_TYPE_STRING)
        return "";
    const char *value = *(const char *const *)((const char *)msg + field->offset);
    return value ? value : "";
}

/* The first repeated message field of a list reply: the items. */
static const ProtobufCFieldDescriptor *list_field(const ProtobufCMessageDescriptor *desc)
{
    for (unsigned i = 0; i < desc->n_fields; i++)
        if (desc->fields[i].label == PROTOBUF_C_LABEL_REPEATED &&
            desc->fields[i].type == PROTOBUF_C_TYPE_MESSAGE)
            return &desc->fields[i];
    return NULL;
}

static ProtobufCMessage *make_request(const command_t *cmd, const json_t *json, int *rc)
{
    char err[256] = "", field[64] = "";
    ProtobufCMessage *request =
        pbjson_to_message(cmd->request, json, err, sizeof err, field, sizeof field);
    if (!request) {
        fprintf(stderr, "error: %s: %s", status_name(ST_INVALID_ARGUMENT),
                *err ? err : "the flags do not make a request");
        if (*field)
            fprintf(stderr, " (field: %s)", field);
        fputc('\n', stderr);
        *rc = CLI_EXIT_USAGE;
    }
    return request;
}

/* Sends the request, following next_page_token to the end when all is set:
 * pages are printed as they come, or gathered into one JSON list. */
static int run_request(cli_service_t *svc, const command_t *cmd, json_t *request_json, bool all)
{
    const cli_options_t *opts = svc->opts;
    const ProtobufCFieldDescriptor *items = all ? list_field(cmd->reply) : NULL;
    json_t *gathered = items ? json_array() : NULL;
    char *previous_token = NULL;
    int rc = 0;

    for (;;) {
        ProtobufCMessage *request = make_request(cmd, request_json, &rc);
        if (!request)
            break;
        ProtobufCMessage *result = NULL;
        rc = cli_service_call(svc, cmd->type, request, opts->idempotency_key, cmd->reply, &result,
                              NULL);
        protobuf_c_message_free_unpacked(request, NULL);
        if (rc)
            break;
        if (!items) {
            print_result(opts, cmd, result);
            protobuf_c_message_free_unpacked(result, NULL);
            break;
        }
        if (opts->id_only) {
            print_ids(result);
        } else if (opts->json) {
            json_t *page = pbjson_from_message(result);
            json_t *page_items = json_object_get(page, items->name);
            if (page_items)
                json_array_extend(gathered, page_items);
            json_decref(page);
        } else {
            cli_print_message(stdout, result, 0, "next_page_token");
        }
        const char *token = string_field(result, "next_page_token");
        /* A service handing back the token it was given would loop us
         * forever; stop rather than trust it. */
        bool done = !*token || (previous_token && strcmp(previous_token, token) == 0);
        free(previous_token);
        previous_token = done ? NULL : strdup(token);
        if (!done)
            json_object_set_new(request_json, "page_token", json_string(token));
        protobuf_c_message_free_unpacked(result, NULL);
        if (done)
            break;
    }
    free(previous_token);
    if (gathered && rc == 0 && opts->json && !opts->id_only) {
        json_t *out = json_object();
        json_object_set(out, items->name, gathered);
        cli_print_json(out);
        json_decref(out);
    }
    json_decref(gathered);
    return rc;
}

static int run_service_command(const cli_options_t *opts, const command_t *cmd, char **args,
                               int count)
{
    json_t *request_json = json_object();
    command_flags_t extra = {false};
    int rc = request_from_args(cmd, args, count, request_json, &extra);
    if (rc) {
        json_decref(request_json);
        return rc;
    }
    /* Fail on the command line before touching the network. */
    ProtobufCMessage *check = make_request(cmd, request_json, &rc);
    if (!check) {
        json_decref(request_json);
        return rc;
    }
    protobuf_c_message_free_unpacked(check, NULL);

    /* The endpoint is the command's service's unless --endpoint says, so
     * that the messages name the one asked. */
    cli_service_t svc;
    cli_service_init(&svc, opts, services[cmd->service].env, services[cmd->service].fallback);
    rc = cli_service_connect(&svc, cmd->words);
    if (rc == 0)
        rc = run_request(&svc, cmd, request_json, extra.all);
    cli_service_close(&svc);
    json_decref(request_json);
    return rc;
}

/* ==========================================================================
 * keygen
 * ======================================================================== */

/* Prints the public key of a certificate file (its public half). */
static void print_public_key(const char *public_path)
{
    zcert_t *cert = zcert_load(public_path);
    if (cert) {
        printf("public key: %s\n", zcert_public_txt(cert));
        zcert_destroy(&cert);
    }
}

/* keygen --server --next: the services' next certificate. */
static int run_keygen_next(const cli_options_t *opts)
{
    char err[512] = "", path[1024];
    if (identity_keygen_server_next(opts->keys_dir, err, sizeof err) != 0) {
        fprintf(stderr, "error: %s\n", err);
        return CLI_EXIT_REPLY_ERROR;
    }
    keydir_server_next_cert_path(opts->keys_dir, path, sizeof path);
    printf("next server certificate: %s\n", path);
    keydir_server_next_public_path(opts->keys_dir, path, sizeof path);
    printf("next server public certificate: %s\n", path);
    print_public_key(path);
    printf("next: copy server.next.key into every client's key folder (and the secret\n"
           "beside server.key_secret on every service host), then run\n"
           "'passerelle keygen --server --promote' there and restart the services one\n"
           "at a time\n");
    return 0;
}

/* keygen --server --promote: the next certificate becomes the current one. */
static int run_keygen_promote(const cli_options_t *opts)
{
    char err[512] = "", path[1024];
    bool with_secret = false;
    if (identity_promote_server_next(opts->keys_dir, &with_secret, err, sizeof err) != 0) {
        fprintf(stderr, "error: %s\n", err);
        return CLI_EXIT_REPLY_ERROR;
    }
    keydir_server_public_path(opts->keys_dir, path, sizeof path);
    printf("promoted: %s is the next certificate now%s\n", path,
           with_secret ? " (with its secret)" : "");
    print_public_key(path);
    snprintf(path, sizeof path, "%s/server.previous.key", opts->keys_dir);
    if (access(path, F_OK) == 0)
        printf("previous: %s%s\n", path, with_secret ? " (and _secret)" : "");
    if (with_secret)
        printf("next: restart the services, one replica at a time\n");
    return 0;
}

static int run_keygen(const cli_options_t *opts, char **args, int count)
{
    const char *name = NULL, *party_text = NULL;
    bool server = false, next = false, promote = false;
    for (int i = 0; i < count; i++) {
        const char **target = NULL;
        if (strcmp(args[i], "--server") == 0) {
            server = true;
            continue;
        }
        if (strcmp(args[i], "--next") == 0) {
            next = true;
            continue;
        }
        if (strcmp(args[i], "--promote") == 0) {
            promote = true;
            continue;
        }
        if (strcmp(args[i], "--name") == 0)
            target = &name;
        else if (strcmp(args[i], "--party") == 0)
            target = &party_text;
        else if (strncmp(args[i], "--", 2) == 0)
            return usage_error("unknown flag %s for 'keygen'", args[i]);
        else
            return usage_error("unexpected argument '%s' for 'keygen'", args[i]);
        if (i + 1 >= count || strncmp(args[i + 1], "--", 2) == 0)
            return usage_error("%s needs a value", args[i]);
        *target = args[++i];
    }

    char err[512] = "", path[1024];
    if ((next || promote) && !server)
        return usage_error("%s goes with --server", next ? "--next" : "--promote");
    if (next && promote)
        return usage_error("--next and --promote are two steps: one at a time");
    if (server && (name || party_text))
        return usage_error("keygen --server takes neither --name nor --party");
    if (next)
        return run_keygen_next(opts);
    if (promote)
        return run_keygen_promote(opts);
    if (server) {
        if (identity_keygen_server(opts->keys_dir, err, sizeof err) != 0) {
            fprintf(stderr, "error: %s\n", err);
            return CLI_EXIT_REPLY_ERROR;
        }
        keydir_server_cert_path(opts->keys_dir, path, sizeof path);
        printf("server certificate: %s\n", path);
        keydir_server_public_path(opts->keys_dir, path, sizeof path);
        printf("server public certificate: %s\n", path);
        print_public_key(path);
        return 0;
    }

    if (!name || !party_text)
        return usage_error("keygen needs --name NAME and --party PARTY (or --server)");
    if (!identity_name_valid(name))
        return usage_error("--name: '%s' is not a key name ([A-Za-z0-9._-], at most 63)", name);
    party_t party = party_parse(party_text);
    if (party == PARTY_NONE)
        return usage_error("--party: '%s' is not one of metropole, action_logement, operator, "
                           "partner, admin, service",
                           party_text);
    if (identity_keygen_client(opts->keys_dir, name, party, err, sizeof err) != 0) {
        fprintf(stderr, "error: %s\n", err);
        return CLI_EXIT_REPLY_ERROR;
    }
    keydir_client_cert_path(opts->keys_dir, name, path, sizeof path);
    printf("client key: %s\n", path);
    char authorized[900];
    keydir_authorized_dir(opts->keys_dir, authorized, sizeof authorized);
    snprintf(path, sizeof path, "%s/%s.key", authorized, name);
    printf("authorized: %s\n", path);
    printf("party: %s\n", party_name(party));
    print_public_key(path);
    return 0;
}

/* ==========================================================================
 * main
 * ======================================================================== */

int main(int argc, char **argv)
{
    /* A command-line tool should die on Ctrl-C, not finish its retries. */
    zsys_handler_set(NULL);
    log_init("passerelle");
    /* docs put and get move megabyte chunks (memtune.h); the other commands
     * lose nothing by it. */
    memtune_for_chunks();
    if (!getenv("PASSERELLE_LOG_LEVEL"))
        log_set_level(LOG_LEVEL_WARN);

    cli_options_t opts;
    int rc = options_from_env(&opts);
    if (rc)
        return rc;
    char **rest = calloc((size_t)argc + 1, sizeof *rest);
    if (!rest)
        return CLI_EXIT_USAGE;
    int rest_count = 0;
    rc = options_parse(&opts, argc, argv, rest, &rest_count);
    if (rc)
        goto done;

    bool help_command = rest_count > 0 && strcmp(rest[0], "help") == 0;
    char **words = help_command ? rest + 1 : rest;
    int word_count = help_command ? rest_count - 1 : rest_count;
    if (word_count == 0) {
        if (help_command || opts.help) {
            print_help(stdout);
            rc = 0;
        } else {
            print_help(stderr);
            rc = CLI_EXIT_USAGE;
        }
        goto done;
    }

    /* The modules below take the global options as they are, with help
     * asked either way. */
    opts.help = help_command || opts.help;
    if (strcmp(words[0], "docs") == 0) {
        /* The document store's commands are transfers, not one request
         * each: docs.c runs them. */
        rc = docs_main(&opts, words + 1, word_count - 1);
        goto done;
    }
    if (strcmp(words[0], "report") == 0) {
        /* The yearly review reads many series and writes a file: report.c. */
        rc = report_main(&opts, words + 1, word_count - 1);
        goto done;
    }
    if (indicators_command(words, word_count)) {
        /* Several requests to one table, a file to check before sending:
         * indicators.c runs them. */
        rc = indicators_main(&opts, words, word_count);
        goto done;
    }

    int used = 0;
    const command_t *cmd = command_match(words, word_count, &used);
    if (!cmd) {
        /* "passerelle unit" alone: say which commands begin that way. */
        char known[512] = "";
        size_t first_len = strlen(words[0]);
        for (size_t c = 0; c < COMMAND_COUNT; c++) {
            if (strncmp(commands[c].words, words[0], first_len) != 0 ||
                commands[c].words[first_len] != ' ')
                continue;
            size_t len = strlen(known);
            snprintf(known + len, sizeof known - len, "%s'%s'", len ? ", " : "; try ",
                     commands[c].words);
        }
        rc = usage_error("unknown command '%s'%s", words[0], known);
        goto done;
    }
    current_command = cmd;
    if (opts.help) {
        print_command_help(stdout, cmd);
        rc = 0;
        goto done;
    }
    if (!cmd->type)
        rc = run_keygen(&opts, words + used, word_count - used);
    else
        rc = run_service_command(&opts, cmd, words + used, word_count - used);
done:
    free(rest);
    return rc;
}
