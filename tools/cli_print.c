/* Readable output of the passerelle CLI (see cli_print.h).
 *
 * Everything is driven by the message descriptors, like pbjson, so that a
 * field added to a .proto shows up here without a change. The two summary
 * lines are the only per-type code: a unit or a convention should be
 * recognisable at a glance, before its details. */
#include "cli_print.h"
#include "pbjson.h"
#include "reservations.pb-c.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>

/* --------------------------------------------------------------------------
 * Field access
 * ------------------------------------------------------------------------ */

/* How many values the field holds in msg: the length of a repeated field,
 * else 1 if it is set, 0 if not. Empty strings count as unset: for a
 * reader, "next_page_token: " says nothing. */
static size_t field_count(const ProtobufCMessage *msg, const ProtobufCFieldDescriptor *field)
{
    const char *base = (const char *)msg;
    const void *member = base + field->offset;

    if (field->label == PROTOBUF_C_LABEL_REPEATED)
        return *(const size_t *)(base + field->quantifier_offset);
    if (field->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
        if (*(const uint32_t *)(base + field->quantifier_offset) != field->id)
            return 0;
    } else if (field->label == PROTOBUF_C_LABEL_OPTIONAL && field->type != PROTOBUF_C_TYPE_STRING &&
               field->type != PROTOBUF_C_TYPE_MESSAGE) {
        if (!*(const protobuf_c_boolean *)(base + field->quantifier_offset))
            return 0;
    }
    if (field->type == PROTOBUF_C_TYPE_STRING) {
        const char *text = *(const char *const *)member;
        return text && *text ? 1 : 0;
    }
    if (field->type == PROTOBUF_C_TYPE_MESSAGE)
        return *(const void *const *)member ? 1 : 0;
    return 1;
}

static size_t value_size(ProtobufCType type)
{
    switch (type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        return 4;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return 8;
    case PROTOBUF_C_TYPE_FLOAT:
        return sizeof(float);
    case PROTOBUF_C_TYPE_DOUBLE:
        return sizeof(double);
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_ENUM:
        return sizeof(int);
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(ProtobufCMessage *);
    }
    return 0;
}

/* The address of value `index` of the field (0 for a singular field). */
static const void *field_value(const ProtobufCMessage *msg, const ProtobufCFieldDescriptor *field,
                               size_t index)
{
    const char *member = (const char *)msg + field->offset;
    if (field->label != PROTOBUF_C_LABEL_REPEATED)
        return member;
    const char *array = *(const char *const *)member;
    return array + index * value_size(field->type);
}

/* Formats one scalar value (anything but a message) for a reader. */
static void format_scalar(const ProtobufCFieldDescriptor *field, const void *value, char *out,
                          size_t out_size)
{
    switch (field->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        snprintf(out, out_size, "%" PRId32, *(const int32_t *)value);
        break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        snprintf(out, out_size, "%" PRIu32, *(const uint32_t *)value);
        break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        snprintf(out, out_size, "%" PRId64, *(const int64_t *)value);
        break;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        snprintf(out, out_size, "%" PRIu64, *(const uint64_t *)value);
        break;
    case PROTOBUF_C_TYPE_FLOAT:
        snprintf(out, out_size, "%g", (double)*(const float *)value);
        break;
    case PROTOBUF_C_TYPE_DOUBLE:
        snprintf(out, out_size, "%g", *(const double *)value);
        break;
    case PROTOBUF_C_TYPE_BOOL:
        snprintf(out, out_size, "%s", *(const protobuf_c_boolean *)value ? "yes" : "no");
        break;
    case PROTOBUF_C_TYPE_ENUM: {
        int number = *(const int *)value;
        const char *name = pbjson_enum_name(field->descriptor, number);
        if (name)
            snprintf(out, out_size, "%s", name);
        else
            snprintf(out, out_size, "%d", number);
        break;
    }
    case PROTOBUF_C_TYPE_STRING:
        snprintf(out, out_size, "%s", *(const char *const *)value);
        break;
    case PROTOBUF_C_TYPE_BYTES:
        snprintf(out, out_size, "<%zu bytes>", ((const ProtobufCBinaryData *)value)->len);
        break;
    case PROTOBUF_C_TYPE_MESSAGE:
        snprintf(out, out_size, "<message>");
        break;
    }
}

/* --------------------------------------------------------------------------
 * Summaries
 * ------------------------------------------------------------------------ */

typedef struct {
    char *buf;
    size_t size;
    size_t len;
} strbuf_t;

static void strbuf_add(strbuf_t *sb, const char *format, ...) __attribute__((format(printf, 2, 3)));

static void strbuf_add(strbuf_t *sb, const char *format, ...)
{
    if (sb->len + 1 >= sb->size)
        return;
    va_list args;
    va_start(args, format);
    int n = vsnprintf(sb->buf + sb->len, sb->size - sb->len, format, args);
    va_end(args);
    if (n > 0)
        sb->len = sb->len + (size_t)n < sb->size ? sb->len + (size_t)n : sb->size - 1;
}

static const char *enum_text(const ProtobufCEnumDescriptor *desc, int value)
{
    const char *name = pbjson_enum_name(desc, value);
    return name ? name : "?";
}

/* "Pertuis 13075 (CT2)", or "Marseille 13207 (CT1)" with the arrondissement. */
static void add_place(strbuf_t *sb, const Passerelle__Unit *unit)
{
    const char *name = unit->commune_name ? unit->commune_name : "";
    const char *insee = unit->arrondissement_insee && *unit->arrondissement_insee
                            ? unit->arrondissement_insee
                            : unit->commune_insee;
    strbuf_add(sb, "%s", name);
    if (insee && *insee)
        strbuf_add(sb, "%s%s", *name ? " " : "", insee);
    if (unit->territory && *unit->territory)
        strbuf_add(sb, " (%s)", unit->territory);
}

static void summarize_unit(strbuf_t *sb, const Passerelle__Unit *unit)
{
    strbuf_add(sb, "unit %s", unit->id ? unit->id : "?");
    if (unit->external_ref && *unit->external_ref)
        strbuf_add(sb, " [%s]", unit->external_ref);
    if (unit->has_typology)
        strbuf_add(sb, " %s", enum_text(&passerelle__typology__descriptor, unit->typology));
    if (unit->has_stock)
        strbuf_add(sb, " %s", enum_text(&passerelle__stock__descriptor, unit->stock));
    if (unit->has_surface_m2)
        strbuf_add(sb, " %g m2", unit->surface_m2);
    strbuf_add(sb, ", ");
    add_place(sb, unit);
    if (unit->has_convention_state &&
        unit->convention_state != PASSERELLE__CONVENTION_STATE__CONVENTION_NONE)
        strbuf_add(sb, ", convention %s",
                   enum_text(&passerelle__convention_state__descriptor, unit->convention_state));
}

static void summarize_convention(strbuf_t *sb, const Passerelle__Convention *conv)
{
    strbuf_add(sb, "convention %s", conv->id ? conv->id : "?");
    if (conv->has_level)
        strbuf_add(sb, " %s", enum_text(&passerelle__convention_level__descriptor, conv->level));
    if (conv->has_state)
        strbuf_add(sb, " %s", enum_text(&passerelle__convention_state__descriptor, conv->state));
    if (conv->has_with_works && conv->with_works)
        strbuf_add(sb, " with works");
    strbuf_add(sb, ", unit %s", conv->unit_id ? conv->unit_id : "?");
    if (conv->unit) {
        strbuf_add(sb, " ");
        add_place(sb, conv->unit);
    }
    if (conv->signed_on && *conv->signed_on)
        strbuf_add(sb, ", signed %s", conv->signed_on);
    else if (conv->envisaged_on && *conv->envisaged_on)
        strbuf_add(sb, ", envisaged %s", conv->envisaged_on);
    if (conv->end_date && *conv->end_date)
        strbuf_add(sb, ", until %s", conv->end_date);
}

bool cli_summary(const ProtobufCMessage *msg, char *out, size_t out_size)
{
    if (!msg || out_size == 0)
        return false;
    strbuf_t sb = {out, out_size, 0};
    out[0] = '\0';
    if (msg->descriptor == &passerelle__unit__descriptor)
        summarize_unit(&sb, (const Passerelle__Unit *)msg);
    else if (msg->descriptor == &passerelle__convention__descriptor)
        summarize_convention(&sb, (const Passerelle__Convention *)msg);
    else
        return false;
    return true;
}

/* --------------------------------------------------------------------------
 * Generic printer
 * ------------------------------------------------------------------------ */

static void print_fields(FILE *out, const ProtobufCMessage *msg, int indent,
                         const char *skip_field);

static void print_field(FILE *out, const ProtobufCMessage *msg,
                        const ProtobufCFieldDescriptor *field, size_t count, int indent)
{
    char text[1024];

    if (field->type == PROTOBUF_C_TYPE_MESSAGE) {
        if (field->label == PROTOBUF_C_LABEL_REPEATED) {
            fprintf(out, "%*s%s (%zu):\n", indent, "", field->name, count);
            for (size_t i = 0; i < count; i++) {
                const ProtobufCMessage *item =
                    *(const ProtobufCMessage *const *)field_value(msg, field, i);
                if (cli_summary(item, text, sizeof text))
                    fprintf(out, "%*s- %s\n", indent + 2, "", text);
                else
                    fprintf(out, "%*s- #%zu\n", indent + 2, "", i + 1);
                print_fields(out, item, indent + 4, NULL);
            }
        } else {
            const ProtobufCMessage *item =
                *(const ProtobufCMessage *const *)field_value(msg, field, 0);
            if (cli_summary(item, text, sizeof text))
                fprintf(out, "%*s%s: %s\n", indent, "", field->name, text);
            else
                fprintf(out, "%*s%s:\n", indent, "", field->name);
            print_fields(out, item, indent + 2, NULL);
        }
        return;
    }

    fprintf(out, "%*s%s: ", indent, "", field->name);
    for (size_t i = 0; i < count; i++) {
        format_scalar(field, field_value(msg, field, i), text, sizeof text);
        fprintf(out, "%s%s", i ? ", " : "", text);
    }
    fputc('\n', out);
}

static void print_fields(FILE *out, const ProtobufCMessage *msg, int indent, const char *skip_field)
{
    const ProtobufCMessageDescriptor *desc = msg->descriptor;
    /* desc->fields is sorted by field number, which is the .proto order
     * the authors chose to read in. */
    for (unsigned i = 0; i < desc->n_fields; i++) {
        const ProtobufCFieldDescriptor *field = &desc->fields[i];
        if (skip_field && strcmp(field->name, skip_field) == 0)
            continue;
        size_t count = field_count(msg, field);
        if (count)
            print_field(out, msg, field, count, indent);
    }
}

void cli_print_message(FILE *out, const ProtobufCMessage *msg, int indent, const char *skip_field)
{
    char summary[1024];
    if (cli_summary(msg, summary, sizeof summary))
        fprintf(out, "%*s%s\n", indent, "", summary);
    print_fields(out, msg, indent, skip_field);
}

/* --------------------------------------------------------------------------
 * Events
 * ------------------------------------------------------------------------ */

static const char *or_dash(const char *text)
{
    return text && *text ? text : "-";
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
