/* Events as the outside world reads them: CloudEvents 1.0 structured JSON
 * (application/cloudevents+json), with the data decoded from protobuf into
 * JSON through the message descriptors (pbjson.h), and the few attributes
 * routing needs, read from the data without knowing its type.
 *
 * The registry knows every message of the project's .proto files that an
 * event can carry, by full name ("passerelle.Convention"), which is what an
 * event's dataschema says. */
#ifndef PASSERELLE_CLOUDEVENT_H
#define PASSERELLE_CLOUDEVENT_H

#include "envelope.pb-c.h"

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

/* The descriptor of a message type by its full name, with or without a
 * leading '.'; NULL if unknown. */
const ProtobufCMessageDescriptor *cloudevent_schema(const char *full_name);

/* The event's data unpacked (caller frees with
 * protobuf_c_message_free_unpacked(msg, NULL)); NULL if the schema is
 * unknown or the bytes do not decode. */
ProtobufCMessage *cloudevent_data(const Passerelle__Event *event);

/* The structured JSON of the event, compact, NUL-terminated, malloc'd
 * (caller frees); its length in *len_out if not NULL. Attributes:
 * specversion, id, source, type, subject, time, datacontenttype
 * "application/json", dataschema, and data as JSON (pbjson) - or, if the
 * data cannot be decoded, data_base64 with the original datacontenttype.
 * NULL only if out of memory. */
char *cloudevent_json(const Passerelle__Event *event, size_t *len_out);

/* The territory (CT1..CT6) the event is about: the data's string field
 * "territory", else that of a message field of the data (a convention's
 * unit). "" if none. out_size >= 8. */
void cloudevent_territory(const Passerelle__Event *event, char *out, size_t out_size);

/* For data visible to one party only (a PRIVATE document), that party's name
 * ("METROPOLE"), else "". The data's enum field "visibility" at the value
 * named PRIVATE, and its string field "owner". */
void cloudevent_private_owner(const Passerelle__Event *event, char *out, size_t out_size);

#endif
