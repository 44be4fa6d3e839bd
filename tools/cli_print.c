/* Readable output of the passerelle CLI (see cli_print.h).
 *
 * The printer walks the JSON object pbjson makes of a reply rather than the
 * message itself: pbjson already knows which fields are set and how each
 * value reads (enum short names, 64-bit integers), and jansson keeps the
 * fields in the descriptor's order. The descriptor is consulted only for
 * what JSON does not say: which nested object is a unit or a convention, and
 * which strings are base64 bytes. The two summary lines are the only
 * per-type code: a unit or a convention should be recognisable at a glance,
 * before its details. */
#include "cli_print.h"
#include "pbjson.h"
#include "reservations.pb-c.h"

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

typedef void summary_fn(FILE *out, const json_t *obj);

/* The summary line of a message type, NULL for the types that have none. */
static summary_fn *summary_for(const ProtobufCMessageDescriptor *desc)
{
    if (desc == &passerelle__unit__descriptor)
        return print_unit_summary;
    if (desc == &passerelle__convention__descriptor)
        return print_convention_summary;
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

void cli_print_message(FILE *out, const ProtobufCMessage *msg, int indent, const char *skip_field)
{
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
    print_object(out, msg->descriptor, json, indent, skip_field);
    json_decref(json);
}

/* --------------------------------------------------------------------------
 * Events
 * ------------------------------------------------------------------------ */

static const char *or_dash(const char *value)
{
    return value && *value ? value : "-";
}

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

/* The messages the project's events carry. A producer adding a record type
 * to its events adds its descriptor here. */
static const ProtobufCMessageDescriptor *const event_schemas[] = {
    &passerelle__unit__descriptor,
    &passerelle__convention__descriptor,
};

const ProtobufCMessageDescriptor *cli_event_schema(const char *dataschema)
{
    if (!dataschema)
        return NULL;
    /* Accept a URI-like schema ("https://.../passerelle.Unit") as well as the
     * bare full name, and protobuf's leading-dot form. */
    const char *name = strrchr(dataschema, '/');
    name = name ? name + 1 : dataschema;
    if (*name == '.')
        name++;
    for (size_t i = 0; i < sizeof event_schemas / sizeof event_schemas[0]; i++)
        if (strcmp(event_schemas[i]->name, name) == 0)
            return event_schemas[i];
    return NULL;
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
