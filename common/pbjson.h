/* Any protobuf-c message to JSON and back, driven by the message
 * descriptors: written once, used by the CLI (--json and readable output,
 * flags to requests), the tests, and later the webhooks.
 *
 * Mapping: field names as in the .proto; enums by value name without the
 * prefix the enum's values share ("STOCK_PRIVATE" -> "PRIVATE"); bytes as
 * base64; 64-bit integers as JSON integers; unset optional fields omitted;
 * repeated fields as arrays; nested messages as objects.
 *
 * From JSON, scalars are accepted leniently so that command-line text can go
 * through the same path: a number may be given as a string ("45.5"), a bool
 * as true/false/yes/no/1/0, an enum by its short or full name in any case
 * ("private", "STOCK_PRIVATE") or its number. */
#ifndef PASSERELLE_PBJSON_H
#define PASSERELLE_PBJSON_H

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>

/* A new JSON object for msg; caller owns it (json_decref). NULL only if
 * out of memory. */
json_t *pbjson_from_message(const ProtobufCMessage *msg);

/* A new message of type desc filled from the JSON object, allocated so that
 * protobuf_c_message_free_unpacked(msg, NULL) frees it. On failure returns
 * NULL and writes into err (at most err_size bytes) a message that names
 * the field, and into field (at most field_size bytes) the field's name, for
 * the INVALID_ARGUMENT reply. Unknown fields are errors too. */
ProtobufCMessage *pbjson_to_message(const ProtobufCMessageDescriptor *desc, const json_t *json,
                                    char *err, size_t err_size, char *field, size_t field_size);

/* The short name of an enum value (without the shared prefix), or NULL if
 * the value is not in the enum. Static string. */
const char *pbjson_enum_name(const ProtobufCEnumDescriptor *desc, int value);

/* The enum value text names: its short name ("private") or its full name
 * ("STOCK_PRIVATE"), in any case, as the JSON mapping reads enums (numbers
 * aside). Returns true with *out set, false (*out untouched) when no value
 * has that name. The unspecified value (0) is a name like any other: a
 * caller that refuses it checks *out. */
bool pbjson_enum_value(const ProtobufCEnumDescriptor *desc, const char *text, int *out);

#endif
