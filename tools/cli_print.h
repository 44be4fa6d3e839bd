/* Readable output of the passerelle CLI: any reply message as "key: value"
 * lines, printed from pbjson's JSON form of it (so the fields and values
 * are the ones --json shows), with a one-line summary on top of the records
 * people look at most (units, conventions, programmes, objectives,
 * reservations, proposals), progress as a table, and the event list as one
 * line per event. The --json output does not go through the printer: it is
 * pbjson's mapping, printed as is. */
#ifndef PASSERELLE_CLI_PRINT_H
#define PASSERELLE_CLI_PRINT_H

#include "envelope.pb-c.h"
#include "reservations.pb-c.h"

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* Prints msg's set fields in .proto order, indent spaces deep: scalars as
 * "name: value", nested messages as an indented block, repeated messages
 * as one block per item. A field named skip_field (may be NULL) is left
 * out. The records with a summary start with it; a Progress is printed as
 * cli_print_progress does. */
void cli_print_message(FILE *out, const ProtobufCMessage *msg, int indent, const char *skip_field);

/* One line per progress row under a header: programme (or "(territory
 * total)"), territory, year, level or financing ("all" for the whole
 * programme), objective, achieved, ratio in percent ("-" without an
 * objective). */
void cli_print_progress(FILE *out, const Passerelle__Progress *progress, int indent);

/* Writes the one-line summary of a unit, a convention, a programme, an
 * objective, a reservation or a proposal into out (at most out_size
 * bytes). Returns false, writing nothing, for other messages. */
bool cli_summary(const ProtobufCMessage *msg, char *out, size_t out_size);

/* "position  time  type  subject", one line per event. */
void cli_print_events(FILE *out, const Passerelle__EventListReply *reply);

/* The descriptor of a message the project's events carry, by the full name
 * their dataschema gives ("passerelle.Convention"); NULL if unknown. */
const ProtobufCMessageDescriptor *cli_event_schema(const char *dataschema);

/* The event list as JSON, each event's data decoded into an object when its
 * dataschema is known (left as base64 otherwise). Caller owns the result. */
json_t *cli_events_to_json(const Passerelle__EventListReply *reply);

#endif
