/* Events as CloudEvents 1.0 structured JSON; see cloudevent.h.
 *
 * Everything here goes through the message descriptors: the registry maps
 * a dataschema to its descriptor, pbjson turns the unpacked data into JSON,
 * and the routing attributes (territory, private owner) are found by field
 * name, so an event type added later needs no code here, only its message
 * in the registry below. */
#include "cloudevent.h"

#include "docstore.pb-c.h"
#include "indicators.pb-c.h"
#include "notifications.pb-c.h"
#include "pbjson.h"
#include "reservations.pb-c.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --------------------------------------------------------------------------
 * The registry
 * -------------------------------------------------------------------------- */

/* Every message of the project's .proto files. Requests and replies are
 * listed too: a whole file's worth is easier to keep complete than a
 * guess of which messages events will carry. A lookup is a linear scan
 * of about a hundred and ten names, done once per event: cheaper than the
 * unpack that follows it. */
static const ProtobufCMessageDescriptor *const registry[] = {
    /* envelope.proto */
    &passerelle__request__descriptor,
    &passerelle__reply__descriptor,
    &passerelle__event__descriptor,
    &passerelle__health_request__descriptor,
    &passerelle__health_reply__descriptor,
    &passerelle__event_list_request__descriptor,
    &passerelle__stream_event__descriptor,
    &passerelle__event_list_reply__descriptor,
    /* reservations.proto */
    &passerelle__unit__descriptor,
    &passerelle__convention__descriptor,
    &passerelle__unit_register_request__descriptor,
    &passerelle__unit_get_request__descriptor,
    &passerelle__unit_list_request__descriptor,
    &passerelle__unit_list__descriptor,
    &passerelle__convention_envisage_request__descriptor,
    &passerelle__convention_step_request__descriptor,
    &passerelle__convention_get_request__descriptor,
    &passerelle__npnru_counterparts__descriptor,
    &passerelle__programme__descriptor,
    &passerelle__objective__descriptor,
    &passerelle__reservation__descriptor,
    &passerelle__proposal__descriptor,
    &passerelle__programme_create_request__descriptor,
    &passerelle__programme_get_request__descriptor,
    &passerelle__programme_list_request__descriptor,
    &passerelle__programme_list__descriptor,
    &passerelle__programme_attach_request__descriptor,
    &passerelle__objective_set_request__descriptor,
    &passerelle__progress_request__descriptor,
    &passerelle__progress_row__descriptor,
    &passerelle__progress__descriptor,
    &passerelle__reservation_create_request__descriptor,
    &passerelle__reservation_step_request__descriptor,
    &passerelle__reservation_get_request__descriptor,
    &passerelle__reservation_list_request__descriptor,
    &passerelle__reservation_list__descriptor,
    &passerelle__proposal_record_request__descriptor,
    &passerelle__attribution_decide_request__descriptor,
    &passerelle__proposal_get_request__descriptor,
    &passerelle__proposal_list_request__descriptor,
    &passerelle__proposal_list__descriptor,
    /* docstore.proto */
    &passerelle__document_version__descriptor,
    &passerelle__document__descriptor,
    &passerelle__upload_begin_request__descriptor,
    &passerelle__upload_session__descriptor,
    &passerelle__upload_chunk_request__descriptor,
    &passerelle__upload_commit_request__descriptor,
    &passerelle__document_get_request__descriptor,
    &passerelle__document_read_request__descriptor,
    &passerelle__document_read_reply__descriptor,
    &passerelle__document_list_request__descriptor,
    &passerelle__document_list__descriptor,
    &passerelle__document_withdraw_request__descriptor,
    &passerelle__fsck_request__descriptor,
    &passerelle__fsck_reply__descriptor,
    /* notifications.proto */
    &passerelle__subscription__descriptor,
    &passerelle__subscription_create_request__descriptor,
    &passerelle__subscription_get_request__descriptor,
    &passerelle__subscription_list_request__descriptor,
    &passerelle__subscription_list__descriptor,
    &passerelle__subscription_step_request__descriptor,
    &passerelle__delivery__descriptor,
    &passerelle__delivery_attempt__descriptor,
    &passerelle__attempt_list_request__descriptor,
    &passerelle__attempt_list__descriptor,
    &passerelle__dead_letter_list_request__descriptor,
    &passerelle__dead_letter_list__descriptor,
    &passerelle__dead_letter_replay_request__descriptor,
    &passerelle__dead_letter_replay_reply__descriptor,
    &passerelle__feed_replay_request__descriptor,
    &passerelle__digest_unit__descriptor,
    &passerelle__digest_change__descriptor,
    &passerelle__digest__descriptor,
    &passerelle__digest_send_request__descriptor,
    &passerelle__digest_send_reply__descriptor,
    &passerelle__latency_request__descriptor,
    &passerelle__latency_reply__descriptor,
    /* indicators.proto */
    &passerelle__housing_need__descriptor,
    &passerelle__economic_project__descriptor,
    &passerelle__project_create_request__descriptor,
    &passerelle__project_update_request__descriptor,
    &passerelle__project_get_request__descriptor,
    &passerelle__project_list_request__descriptor,
    &passerelle__project_list__descriptor,
    &passerelle__demand_row__descriptor,
    &passerelle__demand_period__descriptor,
    &passerelle__demand_import_request__descriptor,
    &passerelle__demand_import_reply__descriptor,
    &passerelle__demand_get_request__descriptor,
    &passerelle__indicator_def__descriptor,
    &passerelle__indicator_list_request__descriptor,
    &passerelle__indicator_list__descriptor,
    &passerelle__scope__descriptor,
    &passerelle__series_request__descriptor,
    &passerelle__point__descriptor,
    &passerelle__series__descriptor,
    &passerelle__snapshot_request__descriptor,
    &passerelle__snapshot_row__descriptor,
    &passerelle__snapshot__descriptor,
    &passerelle__export_request__descriptor,
    &passerelle__export_reply__descriptor,
    &passerelle__rebuild_request__descriptor,
    &passerelle__rebuild_status_request__descriptor,
    &passerelle__rebuild_status__descriptor,
};

const ProtobufCMessageDescriptor *cloudevent_schema(const char *full_name)
{
    if (!full_name)
        return NULL;
    if (*full_name == '.')
        full_name++;
    for (size_t i = 0; i < sizeof registry / sizeof registry[0]; i++)
        if (strcmp(registry[i]->name, full_name) == 0)
            return registry[i];
    return NULL;
}

/* True if the data is protobuf as far as its content type says: producers
 * write "application/protobuf"; an event without the attribute is taken
 * to be protobuf too, since that is all the project's producers write. */
static bool data_is_protobuf(const Passerelle__Event *event)
{
    const char *type = event->datacontenttype;
    return !type || !*type || strcmp(type, "application/protobuf") == 0 ||
           strcmp(type, "application/x-protobuf") == 0;
}

ProtobufCMessage *cloudevent_data(const Passerelle__Event *event)
{
    if (!event || !data_is_protobuf(event))
        return NULL;
    const ProtobufCMessageDescriptor *desc = cloudevent_schema(event->dataschema);
    if (!desc)
        return NULL;
    size_t len = event->has_data ? event->data.len : 0;
    const uint8_t *bytes = event->has_data ? event->data.data : NULL;
    return protobuf_c_message_unpack(desc, NULL, len, bytes);
}

/* --------------------------------------------------------------------------
 * Structured JSON
 * -------------------------------------------------------------------------- */

/* Copies attribute name from the JSON of the event to ce, if present and
 * not empty; required ones are written as "" rather than left out, so a
 * reader always finds them. Returns false if out of memory. */
static bool copy_attribute(json_t *ce, const json_t *event_json, const char *name, bool required)
{
    json_t *value = json_object_get(event_json, name);
    if (value && json_is_string(value) && json_string_length(value) > 0)
        return json_object_set(ce, name, value) == 0;
    if (required)
        return json_object_set_new(ce, name, json_string("")) == 0;
    return true;
}

char *cloudevent_json(const Passerelle__Event *event, size_t *len_out)
{
    if (len_out)
        *len_out = 0;
    if (!event)
        return NULL;
    /* The event's own JSON (pbjson) gives every attribute under its
     * CloudEvents name, with invalid UTF-8 already replaced. */
    json_t *event_json = pbjson_from_message(&event->base);
    json_t *ce = json_object();
    bool ok = event_json && ce;

    ok = ok && copy_attribute(ce, event_json, "specversion", false);
    if (ok && !json_object_get(ce, "specversion"))
        ok = json_object_set_new(ce, "specversion", json_string("1.0")) == 0;
    ok = ok && copy_attribute(ce, event_json, "id", true);
    ok = ok && copy_attribute(ce, event_json, "source", true);
    ok = ok && copy_attribute(ce, event_json, "type", true);
    ok = ok && copy_attribute(ce, event_json, "subject", false);
    ok = ok && copy_attribute(ce, event_json, "time", false);

    ProtobufCMessage *data = ok ? cloudevent_data(event) : NULL;
    json_t *data_json = data ? pbjson_from_message(data) : NULL;
    if (data)
        protobuf_c_message_free_unpacked(data, NULL);
    if (ok && data_json) {
        ok = json_object_set_new(ce, "datacontenttype", json_string("application/json")) == 0;
        ok = copy_attribute(ce, event_json, "dataschema", false) && ok;
        /* Called whatever happened before: it owns data_json from here. */
        ok = json_object_set_new(ce, "data", data_json) == 0 && ok;
    } else if (ok) {
        /* Not decodable here (unknown schema, foreign content type, bad
         * bytes): the reader still gets the bytes, as they came. */
        ok = copy_attribute(ce, event_json, "datacontenttype", false);
        ok = ok && copy_attribute(ce, event_json, "dataschema", false);
        json_t *b64 = json_object_get(event_json, "data");
        if (ok && b64)
            ok = json_object_set(ce, "data_base64", b64) == 0;
    }

    /* CloudEvents wants dataschema to be an absolute URI; the event
     * names a protobuf message, which becomes urn:passerelle:proto:<name>. */
    const char *schema = json_string_value(json_object_get(ce, "dataschema"));
    if (ok && schema && !strchr(schema, ':')) {
        char uri[256];
        snprintf(uri, sizeof uri, "urn:passerelle:proto:%s", schema);
        ok = json_object_set_new(ce, "dataschema", json_string(uri)) == 0;
    }

    char *text = ok ? json_dumps(ce, JSON_COMPACT) : NULL;
    json_decref(ce);
    json_decref(event_json);
    if (text && len_out)
        *len_out = strlen(text);
    return text;
}

/* --------------------------------------------------------------------------
 * Routing attributes
 * -------------------------------------------------------------------------- */

/* The descriptor of msg's singular field called name of the given type,
 * if it is set (a field of a oneof counts only when it is the chosen
 * one). NULL otherwise. */
static const ProtobufCFieldDescriptor *set_field(const ProtobufCMessage *msg, const char *name,
                                                 ProtobufCType type)
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(msg->descriptor, name);
    if (!f || f->type != type || f->label == PROTOBUF_C_LABEL_REPEATED)
        return NULL;
    const char *base = (const char *)msg;
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
        if (*(const uint32_t *)(base + f->quantifier_offset) != f->id)
            return NULL;
    } else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->quantifier_offset != 0 &&
               type != PROTOBUF_C_TYPE_STRING && type != PROTOBUF_C_TYPE_MESSAGE) {
        /* Optional scalars carry a has_ flag; strings and messages are
         * set when their pointer is. */
        if (!*(const protobuf_c_boolean *)(base + f->quantifier_offset))
            return NULL;
    }
    return f;
}

/* The value of msg's string field name, or NULL if unset or empty. */
static const char *string_field(const ProtobufCMessage *msg, const char *name)
{
    const ProtobufCFieldDescriptor *f = set_field(msg, name, PROTOBUF_C_TYPE_STRING);
    if (!f)
        return NULL;
    const char *value = *(char *const *)((const char *)msg + f->offset);
    return value && *value ? value : NULL;
}

static void copy_out(const char *value, char *out, size_t out_size)
{
    if (out_size == 0)
        return;
    snprintf(out, out_size, "%s", value ? value : "");
}

void cloudevent_territory(const Passerelle__Event *event, char *out, size_t out_size)
{
    copy_out(NULL, out, out_size);
    ProtobufCMessage *data = cloudevent_data(event);
    if (!data)
        return;
    const char *territory = string_field(data, "territory");
    /* One level down only: the messages an event carries hold their
     * territory themselves or in the record they are about (a convention's
     * unit); deeper would find territories of other things. */
    const ProtobufCMessageDescriptor *desc = data->descriptor;
    for (unsigned i = 0; !territory && i < desc->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &desc->fields[i];
        if (f->type != PROTOBUF_C_TYPE_MESSAGE || !set_field(data, f->name, f->type))
            continue;
        const ProtobufCMessage *child =
            *(ProtobufCMessage *const *)((const char *)data + f->offset);
        if (child)
            territory = string_field(child, "territory");
    }
    copy_out(territory, out, out_size);
    protobuf_c_message_free_unpacked(data, NULL);
}

/* True if the enum value's full name ends with "PRIVATE". */
static bool enum_is_private(const ProtobufCFieldDescriptor *f, int value)
{
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(f->descriptor, value);
    if (!v)
        return false;
    size_t len = strlen(v->name);
    size_t suffix = strlen("PRIVATE");
    return len >= suffix && strcmp(v->name + len - suffix, "PRIVATE") == 0;
}

void cloudevent_private_owner(const Passerelle__Event *event, char *out, size_t out_size)
{
    copy_out(NULL, out, out_size);
    ProtobufCMessage *data = cloudevent_data(event);
    if (!data)
        return;
    const ProtobufCFieldDescriptor *f = set_field(data, "visibility", PROTOBUF_C_TYPE_ENUM);
    if (f && enum_is_private(f, *(const int *)((const char *)data + f->offset)))
        copy_out(string_field(data, "owner"), out, out_size);
    protobuf_c_message_free_unpacked(data, NULL);
}
