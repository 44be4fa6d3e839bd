/* Readable output of the passerelle CLI (see cli_print.h).
 *
 * The printer walks the JSON object pbjson makes of a reply rather than the
 * message itself: pbjson already knows which fields are set and how each
 * value reads (enum short names, 64-bit integers), and jansson keeps the
 * fields in the descriptor's order. The descriptor is consulted only for
 * what JSON does not say: which nested object is a unit or a convention, and
 * which strings are base64 bytes. The summary lines are the only per-type
 * code: a unit, a convention, a programme, an objective, a reservation, a
 * proposal or a subscription should be recognisable at a glance, before its
 * details. Progress, delivery attempts, dead letters, demand figures,
 * indicator series and snapshots are the exception: their rows are meant
 * to be compared or scanned down a column, so they are tables, printed
 * from the message itself. */
#include "cli_print.h"
#include "cloudevent.h"
#include "indicators.pb-c.h"
#include "pbjson.h"
#include "reservations.pb-c.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* One scalar as a reader wants it: yes/no for booleans, and bytes by their
 * size, which the length of pbjson's padded base64 gives. */
static void print_scalar(FILE *out, const json_t *value, bool is_bytes)
{
    if (json_is_boolean(value))
        fputs(json_is_true(value) ? "yes" : "no", out);
    else if (json_is_integer(value))
        fprintf(out, "%" JSON_INTEGER_FORMAT, json_integer_value(value));
    else if (json_is_real(value))
        fprintf(out, "%g", json_real_value(value));
    else if (is_bytes) {
        const char *b64 = json_string_value(value);
        size_t len = strlen(b64), padding = 0;
        while (padding < len && padding < 2 && b64[len - 1 - padding] == '=')
            padding++;
        fprintf(out, "<%zu bytes>", len / 4 * 3 - padding);
    } else
        fputs(json_string_value(value), out);
}

/* --------------------------------------------------------------------------
 * Summaries
 * ------------------------------------------------------------------------ */

/* The string member key of obj, NULL if absent or not a string. */
static const char *text(const json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

/* The same, NULL also when empty: an empty string says nothing to a reader. */
static const char *nonempty(const json_t *obj, const char *key)
{
    const char *value = text(obj, key);
    return value && *value ? value : NULL;
}

/* An enum member by its short name; pbjson writes a value the enum does not
 * know as a number, which reads "?" here. NULL if the field is unset. */
static const char *enum_word(const json_t *obj, const char *key)
{
    const json_t *value = json_object_get(obj, key);
    if (!value)
        return NULL;
    return json_is_string(value) ? json_string_value(value) : "?";
}

/* "Pertuis 13075 (CT2)", or "Marseille 13207 (CT1)" with the arrondissement. */
static void print_place(FILE *out, const json_t *unit)
{
    const char *name = nonempty(unit, "commune_name"), *insee, *territory;
    fputs(name ? name : "", out);
    if ((insee = nonempty(unit, "arrondissement_insee")) ||
        (insee = nonempty(unit, "commune_insee")))
        fprintf(out, "%s%s", name ? " " : "", insee);
    if ((territory = nonempty(unit, "territory")))
        fprintf(out, " (%s)", territory);
}

static void print_unit_summary(FILE *out, const json_t *unit)
{
    const char *id = text(unit, "id"), *value;
    fprintf(out, "unit %s", id ? id : "?");
    if ((value = nonempty(unit, "external_ref")))
        fprintf(out, " [%s]", value);
    if ((value = enum_word(unit, "typology")))
        fprintf(out, " %s", value);
    if ((value = enum_word(unit, "stock")))
        fprintf(out, " %s", value);
    const json_t *surface = json_object_get(unit, "surface_m2");
    if (surface) {
        fputc(' ', out);
        print_scalar(out, surface, false);
        fputs(" m2", out);
    }
    fputs(", ", out);
    print_place(out, unit);
    const char *none = pbjson_enum_name(&passerelle__convention_state__descriptor,
                                        PASSERELLE__CONVENTION_STATE__CONVENTION_NONE);
    if ((value = enum_word(unit, "convention_state")) && strcmp(value, none) != 0)
        fprintf(out, ", convention %s", value);
}

static void print_convention_summary(FILE *out, const json_t *conv)
{
    const char *id = text(conv, "id"), *unit_id = text(conv, "unit_id"), *value;
    fprintf(out, "convention %s", id ? id : "?");
    if ((value = enum_word(conv, "level")))
        fprintf(out, " %s", value);
    if ((value = enum_word(conv, "state")))
        fprintf(out, " %s", value);
    if (json_is_true(json_object_get(conv, "with_works")))
        fputs(" with works", out);
    fprintf(out, ", unit %s", unit_id ? unit_id : "?");
    const json_t *unit = json_object_get(conv, "unit");
    if (unit) {
        fputc(' ', out);
        print_place(out, unit);
    }
    if ((value = nonempty(conv, "signed_on")))
        fprintf(out, ", signed %s", value);
    else if ((value = nonempty(conv, "envisaged_on")))
        fprintf(out, ", envisaged %s", value);
    if ((value = nonempty(conv, "end_date")))
        fprintf(out, ", until %s", value);
}

/* A JSON integer member, or fallback when it is absent. */
static json_int_t integer(const json_t *obj, const char *key, json_int_t fallback)
{
    const json_t *value = json_object_get(obj, key);
    return json_is_integer(value) ? json_integer_value(value) : fallback;
}

/* ", a, b, c" for the items of a JSON array of strings; nothing if empty. */
static void print_string_list(FILE *out, const json_t *array, const char *lead)
{
    size_t i;
    const json_t *item;
    json_array_foreach(array, i, item)
    {
        fputs(i ? ", " : lead, out);
        print_scalar(out, item, false);
    }
}

/* "programme P01.. PIG 'PIG Pays d'Aix', CT2 (84089, 84074), 2025-01-01 to
 * 2027-12-31, operator X, 3 units attached". */
static void print_programme_summary(FILE *out, const json_t *prog)
{
    const char *id = text(prog, "id"), *value;
    fprintf(out, "programme %s", id ? id : "?");
    if ((value = enum_word(prog, "kind")))
        fprintf(out, " %s", value);
    if ((value = enum_word(prog, "ownership_scheme")))
        fprintf(out, " %s", value);
    if ((value = nonempty(prog, "name")))
        fprintf(out, " '%s'", value);
    if ((value = nonempty(prog, "territory")))
        fprintf(out, ", %s", value);
    const json_t *communes = json_object_get(prog, "communes");
    if (json_array_size(communes)) {
        print_string_list(out, communes, " (");
        fputc(')', out);
    }
    const char *start = nonempty(prog, "start_date"), *end = nonempty(prog, "end_date");
    if (start || end)
        fprintf(out, ", %s to %s", start ? start : "?", end ? end : "?");
    if ((value = nonempty(prog, "operator")))
        fprintf(out, ", operator %s", value);
    json_int_t attached = integer(prog, "units_attached", -1);
    if (attached >= 0)
        fprintf(out, ", %" JSON_INTEGER_FORMAT " unit%s attached", attached,
                attached == 1 ? "" : "s");
}

/* "level LOC2" or "financing PLUS", or nothing for the whole programme. */
static void print_scope(FILE *out, const json_t *obj)
{
    const char *value;
    if ((value = enum_word(obj, "level")))
        fprintf(out, " %s", value);
    if ((value = enum_word(obj, "financing")))
        fprintf(out, " %s", value);
}

/* "objective P01.. 2025: 12 units for Action Logement (CT2)". */
static void print_objective_summary(FILE *out, const json_t *obj)
{
    const char *programme = text(obj, "programme_id"), *territory = nonempty(obj, "territory");
    fprintf(out, "objective %s %" JSON_INTEGER_FORMAT ":", programme ? programme : "?",
            integer(obj, "year", 0));
    print_scope(out, obj);
    json_int_t units = integer(obj, "units", 0);
    fprintf(out, " %" JSON_INTEGER_FORMAT " unit%s for Action Logement", units,
            units == 1 ? "" : "s");
    if (territory)
        fprintf(out, " (%s)", territory);
}

/* STOCK: "reservation R01.. STOCK ACTIVE for ACTION_LOGEMENT, unit U01..
 * [ANAH-84-0001] Pertuis 84089 (CT2), LOC2, 2025-03-01 to 2031-03-01,
 * vacancy 1 not attributed"; FLOW: "reservation R01.. FLOW ACTIVE for
 * ACTION_LOGEMENT, 5 units of programme P01.. in 2025 (CT2), 2 attributed". */
static void print_reservation_summary(FILE *out, const json_t *res)
{
    const char *id = text(res, "id"), *value;
    fprintf(out, "reservation %s", id ? id : "?");
    const char *mode = enum_word(res, "mode");
    if (mode)
        fprintf(out, " %s", mode);
    if ((value = enum_word(res, "state")))
        fprintf(out, " %s", value);
    if ((value = enum_word(res, "reservataire")))
        fprintf(out, " for %s", value);
    const char *unit_id = nonempty(res, "unit_id");
    const json_t *unit = json_object_get(res, "unit");
    if (unit_id) {
        fprintf(out, ", unit %s", unit_id);
        if (unit && (value = nonempty(unit, "external_ref")))
            fprintf(out, " [%s]", value);
        if (unit) {
            fputc(' ', out);
            print_place(out, unit);
        } else if ((value = nonempty(res, "territory")))
            fprintf(out, " (%s)", value);
    } else {
        json_int_t units = integer(res, "units", 0);
        fprintf(out, ", %" JSON_INTEGER_FORMAT " unit%s", units, units == 1 ? "" : "s");
        if ((value = nonempty(res, "programme_id")))
            fprintf(out, " of programme %s", value);
        else if ((value = nonempty(res, "landlord")))
            fprintf(out, " of landlord %s", value);
        json_int_t year = integer(res, "year", 0);
        if (year)
            fprintf(out, " in %" JSON_INTEGER_FORMAT, year);
        if ((value = nonempty(res, "territory")))
            fprintf(out, " (%s)", value);
    }
    if ((value = enum_word(res, "level")))
        fprintf(out, ", %s", value);
    if ((value = enum_word(res, "financing")))
        fprintf(out, ", %s", value);
    const char *start = nonempty(res, "start_date"), *end = nonempty(res, "end_date");
    if (start || end)
        fprintf(out, ", %s to %s", start ? start : "?", end ? end : "?");
    json_int_t attributed = integer(res, "attributed", 0);
    if (unit_id) {
        json_int_t vacancy = integer(res, "vacancy", 0);
        if (vacancy)
            fprintf(out, ", vacancy %" JSON_INTEGER_FORMAT " %s", vacancy,
                    attributed ? "attributed" : "not attributed");
    } else if (attributed) {
        fprintf(out, ", %" JSON_INTEGER_FORMAT " attributed", attributed);
    }
}

/* "proposal D01.. candidate CAND-1, employer 732829320
 * PRIVATE_NON_AGRICULTURAL 250 employees, eligible, ATTRIBUTED", or "not
 * eligible: <reason>". */
static void print_proposal_summary(FILE *out, const json_t *prop)
{
    const char *id = text(prop, "id"), *value;
    fprintf(out, "proposal %s", id ? id : "?");
    if ((value = nonempty(prop, "candidate_ref")))
        fprintf(out, " candidate %s", value);
    if ((value = nonempty(prop, "employer_siren")))
        fprintf(out, ", employer %s", value);
    if ((value = enum_word(prop, "employer_sector")))
        fprintf(out, " %s", value);
    json_int_t headcount = integer(prop, "employer_headcount", -1);
    if (headcount >= 0)
        fprintf(out, " %" JSON_INTEGER_FORMAT " employee%s", headcount, headcount == 1 ? "" : "s");
    if (json_is_true(json_object_get(prop, "eligible")))
        fputs(", eligible", out);
    else if ((value = nonempty(prop, "ineligibility_reason")))
        fprintf(out, ", not eligible: %s", value);
    else
        fputs(", not eligible", out);
    /* pbjson leaves a decision at its zero value (PENDING) out. */
    const char *decision = enum_word(prop, "decision");
    if (!decision)
        decision = pbjson_enum_name(&passerelle__decision__descriptor,
                                    PASSERELLE__DECISION__DECISION_PENDING);
    fprintf(out, ", %s", decision);
    json_int_t rank = integer(prop, "rank", 0);
    if (rank)
        fprintf(out, " %" JSON_INTEGER_FORMAT, rank);
}

/* "subscription S01.. WEBHOOK https://partner.example.org/hook ACTIVE,
 * convention.*, unit.registered in CT1, CT2, ref R, owner ACTION_LOGEMENT";
 * "every event" and "every territory" when its filters are empty. */
static void print_subscription_summary(FILE *out, const json_t *sub)
{
    const char *id = text(sub, "id"), *value;
    fprintf(out, "subscription %s", id ? id : "?");
    if ((value = enum_word(sub, "channel")))
        fprintf(out, " %s", value);
    if ((value = nonempty(sub, "url")) || (value = nonempty(sub, "email")))
        fprintf(out, " %s", value);
    if ((value = enum_word(sub, "state")))
        fprintf(out, " %s", value);
    if ((value = nonempty(sub, "state_reason")))
        fprintf(out, " (%s)", value);
    const json_t *types = json_object_get(sub, "event_types");
    if (json_array_size(types))
        print_string_list(out, types, ", for ");
    else
        fputs(", for every event", out);
    const json_t *territories = json_object_get(sub, "territories");
    if (json_array_size(territories))
        print_string_list(out, territories, " in ");
    else
        fputs(" in every territory", out);
    if ((value = nonempty(sub, "ref")))
        fprintf(out, ", ref %s", value);
    if ((value = nonempty(sub, "owner_party")))
        fprintf(out, ", owner %s", value);
}

/* "project J01.. [AMP-ECO-1] Hélices du Luberon (aeronautics), Pertuis
 * 84089 (CT2), 250 jobs by 2028, 42 units needed, PROSPECT". */
static void print_project_summary(FILE *out, const json_t *project)
{
    const char *id = text(project, "id"), *value, *company = nonempty(project, "company"),
               *sector = nonempty(project, "sector");
    fprintf(out, "project %s", id ? id : "?");
    if ((value = nonempty(project, "ref")))
        fprintf(out, " [%s]", value);
    if (company && sector)
        fprintf(out, " %s (%s)", company, sector);
    else if (company || sector)
        fprintf(out, " %s", company ? company : sector);
    fputs(", ", out);
    print_place(out, project);
    fprintf(out, ", %" JSON_INTEGER_FORMAT " jobs by %" JSON_INTEGER_FORMAT,
            integer(project, "expected_jobs", 0), integer(project, "horizon_year", 0));
    json_int_t units = 0;
    size_t i;
    const json_t *need;
    json_array_foreach(json_object_get(project, "needs"), i, need) units +=
        integer(need, "units", 0);
    if (units)
        fprintf(out, ", %" JSON_INTEGER_FORMAT " unit%s needed", units, units == 1 ? "" : "s");
    if ((value = enum_word(project, "status")))
        fprintf(out, ", %s", value);
}

typedef void summary_fn(FILE *out, const json_t *obj);

/* The summary line of a message type, NULL for the types that have none. */
static summary_fn *summary_for(const ProtobufCMessageDescriptor *desc)
{
    if (desc == &passerelle__unit__descriptor)
        return print_unit_summary;
    if (desc == &passerelle__convention__descriptor)
        return print_convention_summary;
    if (desc == &passerelle__programme__descriptor)
        return print_programme_summary;
    if (desc == &passerelle__objective__descriptor)
        return print_objective_summary;
    if (desc == &passerelle__reservation__descriptor)
        return print_reservation_summary;
    if (desc == &passerelle__proposal__descriptor)
        return print_proposal_summary;
    if (desc == &passerelle__subscription__descriptor)
        return print_subscription_summary;
    if (desc == &passerelle__economic_project__descriptor)
        return print_project_summary;
    return NULL;
}

bool cli_summary(const ProtobufCMessage *msg, char *out, size_t out_size)
{
    summary_fn *summarize = msg ? summary_for(msg->descriptor) : NULL;
    if (!summarize || out_size == 0)
        return false;
    char *summary = NULL;
    size_t length = 0;
    json_t *json = pbjson_from_message(msg);
    FILE *mem = json ? open_memstream(&summary, &length) : NULL;
    if (mem) {
        summarize(mem, json);
        fclose(mem);
    }
    bool done = summary != NULL;
    snprintf(out, out_size, "%s", done ? summary : "");
    free(summary);
    json_decref(json);
    return done;
}

/* --------------------------------------------------------------------------
 * Generic printer
 * ------------------------------------------------------------------------ */

static void print_object(FILE *out, const ProtobufCMessageDescriptor *desc, const json_t *obj,
                         int indent, const char *skip_field);

/* A message field: one block, or a block per item for a repeated field,
 * each headed by the item's summary when its type has one. */
static void print_nested(FILE *out, const ProtobufCFieldDescriptor *field, const json_t *value,
                         int indent)
{
    const ProtobufCMessageDescriptor *desc = field->descriptor;
    summary_fn *summarize = summary_for(desc);
    if (!json_is_array(value)) {
        fprintf(out, "%*s%s:%s", indent, "", field->name, summarize ? " " : "");
        if (summarize)
            summarize(out, value);
        fputc('\n', out);
        print_object(out, desc, value, indent + 2, NULL);
        return;
    }
    fprintf(out, "%*s%s (%zu):\n", indent, "", field->name, json_array_size(value));
    size_t i;
    const json_t *item;
    json_array_foreach(value, i, item)
    {
        fprintf(out, "%*s- ", indent + 2, "");
        if (summarize)
            summarize(out, item);
        else
            fprintf(out, "#%zu", i + 1);
        fputc('\n', out);
        print_object(out, desc, item, indent + 4, NULL);
    }
}

/* pbjson leaves unset fields out; an empty string is left out here too. */
static void print_object(FILE *out, const ProtobufCMessageDescriptor *desc, const json_t *obj,
                         int indent, const char *skip_field)
{
    const char *name;
    const json_t *value;
    json_object_foreach((json_t *)obj, name, value)
    {
        const ProtobufCFieldDescriptor *field =
            protobuf_c_message_descriptor_get_field_by_name(desc, name);
        if (!field || (skip_field && strcmp(name, skip_field) == 0) ||
            (field->type == PROTOBUF_C_TYPE_STRING && json_is_string(value) &&
             json_string_length(value) == 0))
            continue;
        if (field->type == PROTOBUF_C_TYPE_MESSAGE) {
            print_nested(out, field, value, indent);
            continue;
        }
        fprintf(out, "%*s%s: ", indent, "", name);
        if (json_is_array(value)) {
            size_t i;
            const json_t *item;
            json_array_foreach(value, i, item)
            {
                fputs(i ? ", " : "", out);
                print_scalar(out, item, field->type == PROTOBUF_C_TYPE_BYTES);
            }
        } else
            print_scalar(out, value, field->type == PROTOBUF_C_TYPE_BYTES);
        fputc('\n', out);
    }
}

/* --------------------------------------------------------------------------
 * Progress table
 * ------------------------------------------------------------------------ */

#define PROGRESS_PROGRAMME_WIDTH 27 /* "P" + a 26-character ULID */

void cli_print_progress(FILE *out, const Passerelle__Progress *progress, int indent)
{
    if (progress->n_rows == 0) {
        fprintf(out, "%*s(no objective and no reservation)\n", indent, "");
        return;
    }
    fprintf(out, "%*s%-*s  %-9s  %-4s  %-15s  %9s  %8s  %6s\n", indent, "",
            PROGRESS_PROGRAMME_WIDTH, "programme", "territory", "year", "level/financing",
            "objective", "achieved", "ratio");
    for (size_t i = 0; i < progress->n_rows; i++) {
        const Passerelle__ProgressRow *row = progress->rows[i];
        const char *programme =
            row->programme_id && *row->programme_id ? row->programme_id : "(territory total)";
        const char *scope = "all";
        if (row->has_level && row->level != PASSERELLE__CONVENTION_LEVEL__LEVEL_UNSPECIFIED)
            scope = pbjson_enum_name(&passerelle__convention_level__descriptor, (int)row->level);
        else if (row->has_financing &&
                 row->financing != PASSERELLE__FINANCING__FINANCING_UNSPECIFIED)
            scope = pbjson_enum_name(&passerelle__financing__descriptor, (int)row->financing);
        char year[16] = "-", objective[16] = "-", ratio[16] = "-";
        if (row->has_year)
            snprintf(year, sizeof year, "%u", row->year);
        if (row->has_objective)
            snprintf(objective, sizeof objective, "%u", row->objective);
        /* The ratio is meaningless without an objective; the service leaves
         * it unset then. */
        if (row->has_ratio && row->has_objective && row->objective > 0)
            snprintf(ratio, sizeof ratio, "%.0f%%", row->ratio * 100.0);
        fprintf(out, "%*s%-*s  %-9s  %-4s  %-15s  %9s  %8u  %6s\n", indent, "",
                PROGRESS_PROGRAMME_WIDTH, programme,
                row->territory && *row->territory ? row->territory : "-", year, scope ? scope : "?",
                objective, row->achieved, ratio);
    }
}

/* --------------------------------------------------------------------------
 * Deliveries: attempts, dead letters, latency
 * ------------------------------------------------------------------------ */

static const char *or_dash(const char *value)
{
    return value && *value ? value : "-";
}

/* At most max_bytes of text on one line: control characters (an answer's
 * line breaks) become spaces, and a cut never splits a UTF-8 sequence. */
static void print_one_line(FILE *out, const char *text, size_t max_bytes)
{
    size_t len = strlen(text);
    size_t cut = len <= max_bytes ? len : max_bytes;
    while (cut < len && cut > 0 && ((unsigned char)text[cut] & 0xC0) == 0x80)
        cut--;
    for (size_t i = 0; i < cut; i++) {
        unsigned char c = (unsigned char)text[i];
        fputc(c < ' ' || c == 0x7F ? ' ' : (int)c, out);
    }
    if (cut < len)
        fputs("...", out);
}

#define ATTEMPT_ANSWER_MAX 80 /* bytes of an answer worth a look on one line */

void cli_print_attempts(FILE *out, const Passerelle__AttemptList *list, int indent)
{
    if (list->n_attempts == 0) {
        fprintf(out, "%*s(no attempt yet)\n", indent, "");
        return;
    }
    fprintf(out, "%*s%-24s  %7s  %6s  %8s  %-9s  %-22s  %s\n", indent, "", "time", "attempt",
            "status", "duration", "outcome", "type", "subject, error or answer");
    for (size_t i = 0; i < list->n_attempts; i++) {
        const Passerelle__DeliveryAttempt *at = list->attempts[i];
        char attempt[16] = "-", status[16] = "-", duration[24] = "-";
        if (at->has_attempt)
            snprintf(attempt, sizeof attempt, "#%u", at->attempt);
        /* 0: nothing answered; the error says why. */
        if (at->has_http_status && at->http_status > 0)
            snprintf(status, sizeof status, "%d", at->http_status);
        if (at->has_duration_ms)
            snprintf(duration, sizeof duration, "%u ms", at->duration_ms);
        fprintf(out, "%*s%-24s  %7s  %6s  %8s  %-9s  %-22s  %s", indent, "", or_dash(at->at),
                attempt, status, duration, or_dash(at->outcome), or_dash(at->event_type),
                or_dash(at->subject));
        if (at->error && *at->error) {
            fputs("  error: ", out);
            print_one_line(out, at->error, ATTEMPT_ANSWER_MAX);
        } else if (at->response && *at->response) {
            fputs("  answer: ", out);
            print_one_line(out, at->response, ATTEMPT_ANSWER_MAX);
        }
        if (at->next_attempt_at && *at->next_attempt_at)
            fprintf(out, "  (next attempt %s)", at->next_attempt_at);
        fputc('\n', out);
    }
}

void cli_print_dead_letters(FILE *out, const Passerelle__DeadLetterList *list, int indent)
{
    if (list->n_deliveries == 0) {
        fprintf(out, "%*s(no dead letter)\n", indent, "");
        return;
    }
    fprintf(out, "%*s%-24s  %-32s  %8s  %-22s  %-9s  %s\n", indent, "", "dead since", "delivery",
            "attempts", "type", "territory", "subject");
    for (size_t i = 0; i < list->n_deliveries; i++) {
        const Passerelle__Delivery *d = list->deliveries[i];
        const Passerelle__Event *event = d->event;
        fprintf(out, "%*s%-24s  %-32s  %8u  %-22s  %-9s  %s\n", indent, "", or_dash(d->dead_at),
                or_dash(d->id), d->attempts, or_dash(event ? event->type : NULL),
                or_dash(d->territory), or_dash(event ? event->subject : NULL));
    }
}

/* Milliseconds with one decimal, without a useless ".0". */
static void print_ms(FILE *out, const char *label, double ms)
{
    char text[48];
    snprintf(text, sizeof text, "%.1f", ms);
    size_t len = strlen(text);
    if (len > 2 && strcmp(text + len - 2, ".0") == 0)
        text[len - 2] = '\0';
    fprintf(out, ", %s %s ms", label, text);
}

void cli_print_latency(FILE *out, const Passerelle__LatencyReply *latency, int indent)
{
    fprintf(out, "%*s%s %s: ", indent, "",
            latency->territory && *latency->territory ? latency->territory : "every territory",
            or_dash(latency->event_type));
    if (latency->count == 0) {
        fputs("no delivery yet\n", out);
        return;
    }
    fprintf(out, "%" PRIu64 " delivered", latency->count);
    print_ms(out, "p50", latency->p50_ms);
    print_ms(out, "p99", latency->p99_ms);
    print_ms(out, "max", latency->max_ms);
    fputc('\n', out);
}

/* --------------------------------------------------------------------------
 * Indicators: demand figures, series, snapshots, the catalog
 * ------------------------------------------------------------------------ */

void cli_format_value(double value, bool defined, int decimals, char *out, size_t out_size)
{
    if (!defined) {
        snprintf(out, out_size, "-");
        return;
    }
    snprintf(out, out_size, "%.*f", decimals, value);
    /* "12", "0.42", "45.5": trailing zeros say nothing. */
    if (strchr(out, '.')) {
        size_t len = strlen(out);
        while (len > 0 && out[len - 1] == '0')
            out[--len] = '\0';
        if (len > 0 && out[len - 1] == '.')
            out[--len] = '\0';
    }
    if (strcmp(out, "-0") == 0)
        snprintf(out, out_size, "0");
}

/* The short name of a priority public ("UNDER_30"), "(all)" when unset. */
static const char *public_word(bool has, int value)
{
    const char *name =
        has && value ? pbjson_enum_name(&passerelle__priority_public__descriptor, value) : NULL;
    return name ? name : "(all)";
}

void cli_print_demand_period(FILE *out, const Passerelle__DemandPeriod *period, int indent)
{
    fprintf(out, "%*sdemand %s: %zu row%s, version %" PRIu64, indent, "", or_dash(period->period),
            period->n_rows, period->n_rows == 1 ? "" : "s", period->version);
    if (period->imported_by && *period->imported_by)
        fprintf(out, ", imported by %s", period->imported_by);
    if (period->imported_at && *period->imported_at)
        fprintf(out, " at %s", period->imported_at);
    fputc('\n', out);
    if (period->n_rows == 0)
        return;
    fprintf(out, "%*s  %-9s  %-13s  %8s  %6s  %9s  %8s  %5s  %6s\n", indent, "", "territory",
            "public", "requests", "visale", "loca_pass", "mobility", "other", "housed");
    for (size_t i = 0; i < period->n_rows; i++) {
        const Passerelle__DemandRow *row = period->rows[i];
        fprintf(out,
                "%*s  %-9s  %-13s  %8" PRIu32 "  %6" PRIu32 "  %9" PRIu32 "  %8" PRIu32
                "  %5" PRIu32 "  %6" PRIu32 "\n",
                indent, "", or_dash(row->territory), public_word(row->has_public_, row->public_),
                row->housing_requests, row->aids_visale, row->aids_loca_pass, row->aids_mobility,
                row->aids_other, row->housed);
    }
}

void cli_print_series(FILE *out, const Passerelle__Series *series)
{
    for (size_t i = 0; i < series->n_points; i++) {
        const Passerelle__Point *point = series->points[i];
        char value[48];
        cli_format_value(point->value, point->has_defined ? point->defined : true, 4, value,
                         sizeof value);
        fprintf(out, "%s %s\n", or_dash(point->period), value);
    }
}

void cli_print_snapshot(FILE *out, const Passerelle__Snapshot *snapshot, int indent)
{
    const Passerelle__Scope *scope = snapshot->scope;
    const char *where = scope && scope->commune && *scope->commune       ? scope->commune
                        : scope && scope->territory && *scope->territory ? scope->territory
                                                                         : "the Métropole";
    fprintf(out, "%*sindicators of %s at %s\n", indent, "", where, or_dash(snapshot->date));
    int width = 9;
    for (size_t i = 0; i < snapshot->n_rows; i++) {
        int len = (int)strlen(or_dash(snapshot->rows[i]->indicator));
        if (len > width)
            width = len;
    }
    for (size_t i = 0; i < snapshot->n_rows; i++) {
        const Passerelle__SnapshotRow *row = snapshot->rows[i];
        char value[48];
        cli_format_value(row->value, row->has_defined ? row->defined : true, 2, value,
                         sizeof value);
        fprintf(out, "%*s  %-*s  %12s  %s\n", indent, "", width, or_dash(row->indicator), value,
                row->basis ? row->basis : "");
    }
}

void cli_print_indicator_list(FILE *out, const Passerelle__IndicatorList *list, int indent)
{
    int width = 9;
    for (size_t i = 0; i < list->n_indicators; i++) {
        int len = (int)strlen(or_dash(list->indicators[i]->name));
        if (len > width)
            width = len;
    }
    for (size_t i = 0; i < list->n_indicators; i++) {
        const Passerelle__IndicatorDef *def = list->indicators[i];
        const char *kind = pbjson_enum_name(&passerelle__indicator_kind__descriptor, def->kind);
        fprintf(out, "%*s%-*s  %-6s  %s", indent, "", width, or_dash(def->name), kind ? kind : "?",
                or_dash(def->unit));
        for (size_t a = 0; a < def->n_axes; a++)
            fprintf(out, "%s%s", a ? "," : ", by ", def->axes[a]);
        if (def->communes)
            fputs(", per commune too", out);
        fputc('\n', out);
        if (def->definition && *def->definition)
            fprintf(out, "%*s  %s\n", indent + width, "", def->definition);
    }
}

/* --------------------------------------------------------------------------
 * Any message
 * ------------------------------------------------------------------------ */

void cli_print_message(FILE *out, const ProtobufCMessage *msg, int indent, const char *skip_field)
{
    const ProtobufCMessageDescriptor *desc = msg->descriptor;
    if (desc == &passerelle__progress__descriptor) {
        cli_print_progress(out, (const Passerelle__Progress *)msg, indent);
        return;
    }
    if (desc == &passerelle__attempt_list__descriptor) {
        cli_print_attempts(out, (const Passerelle__AttemptList *)msg, indent);
        return;
    }
    if (desc == &passerelle__dead_letter_list__descriptor) {
        cli_print_dead_letters(out, (const Passerelle__DeadLetterList *)msg, indent);
        return;
    }
    if (desc == &passerelle__latency_reply__descriptor) {
        cli_print_latency(out, (const Passerelle__LatencyReply *)msg, indent);
        return;
    }
    if (desc == &passerelle__demand_period__descriptor) {
        cli_print_demand_period(out, (const Passerelle__DemandPeriod *)msg, indent);
        return;
    }
    if (desc == &passerelle__demand_import_reply__descriptor) {
        const Passerelle__DemandImportReply *imported = (const Passerelle__DemandImportReply *)msg;
        for (size_t i = 0; i < imported->n_periods; i++)
            cli_print_demand_period(out, imported->periods[i], indent);
        return;
    }
    if (desc == &passerelle__series__descriptor) {
        cli_print_series(out, (const Passerelle__Series *)msg);
        return;
    }
    if (desc == &passerelle__snapshot__descriptor) {
        cli_print_snapshot(out, (const Passerelle__Snapshot *)msg, indent);
        return;
    }
    if (desc == &passerelle__indicator_list__descriptor) {
        cli_print_indicator_list(out, (const Passerelle__IndicatorList *)msg, indent);
        return;
    }
    json_t *json = pbjson_from_message(msg);
    if (!json) {
        fprintf(stderr, "error: out of memory\n");
        return;
    }
    summary_fn *summarize = summary_for(msg->descriptor);
    if (summarize) {
        fprintf(out, "%*s", indent, "");
        summarize(out, json);
        fputc('\n', out);
    }
    /* A webhook's secret comes in two replies only (create, rotate_secret):
     * it goes last, where it cannot be missed, with a word that there is no
     * second chance to copy it. */
    char *secret = NULL;
    if (desc == &passerelle__subscription__descriptor && nonempty(json, "secret")) {
        secret = strdup(text(json, "secret"));
        if (secret)
            json_object_del(json, "secret");
    }
    print_object(out, msg->descriptor, json, indent, skip_field);
    if (secret) {
        fprintf(out, "%*ssecret: %s\n", indent, "", secret);
        fprintf(out, "%*s(keep this secret now: it will not be shown again)\n", indent, "");
        free(secret);
    }
    /* pbjson leaves an empty list out; a listing that found nothing says
     * so rather than printing nothing at all. */
    for (unsigned i = 0; i < msg->descriptor->n_fields; i++) {
        const ProtobufCFieldDescriptor *field = &msg->descriptor->fields[i];
        if (field->label == PROTOBUF_C_LABEL_REPEATED && field->type == PROTOBUF_C_TYPE_MESSAGE &&
            !json_object_get(json, field->name))
            fprintf(out, "%*s%s (0)\n", indent, "", field->name);
    }
    json_decref(json);
}

/* --------------------------------------------------------------------------
 * Events
 * ------------------------------------------------------------------------ */

void cli_print_events(FILE *out, const Passerelle__EventListReply *reply)
{
    for (size_t i = 0; i < reply->n_events; i++) {
        const Passerelle__StreamEvent *entry = reply->events[i];
        const Passerelle__Event *event = entry->event;
        fprintf(out, "%s  %s  %-20s  %s\n", or_dash(entry->position),
                or_dash(event ? event->time : NULL), or_dash(event ? event->type : NULL),
                or_dash(event ? event->subject : NULL));
    }
}

const ProtobufCMessageDescriptor *cli_event_schema(const char *dataschema)
{
    if (!dataschema)
        return NULL;
    /* Accept a URI-like schema ("https://.../passerelle.Unit") as well as the
     * bare full name; the registry of what events carry is cloudevent's,
     * so the notifications' events (subscriptions, digests) decode too. */
    const char *name = strrchr(dataschema, '/');
    return cloudevent_schema(name ? name + 1 : dataschema);
}

json_t *cli_events_to_json(const Passerelle__EventListReply *reply)
{
    json_t *json = pbjson_from_message(&reply->base);
    if (!json)
        return NULL;
    json_t *events = json_object_get(json, "events");
    for (size_t i = 0; i < reply->n_events; i++) {
        const Passerelle__Event *event = reply->events[i]->event;
        if (!event || !event->has_data)
            continue;
        const ProtobufCMessageDescriptor *schema = cli_event_schema(event->dataschema);
        json_t *event_json = json_object_get(json_array_get(events, i), "event");
        if (!schema || !event_json)
            continue;
        ProtobufCMessage *data =
            protobuf_c_message_unpack(schema, NULL, event->data.len, event->data.data);
        if (!data)
            continue; /* left as base64: the reader still sees the bytes */
        json_t *data_json = pbjson_from_message(data);
        protobuf_c_message_free_unpacked(data, NULL);
        if (data_json)
            json_object_set_new(event_json, "data", data_json);
    }
    return json;
}
