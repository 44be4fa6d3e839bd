/* Readable output of the passerelle CLI: any reply message as "key: value"
 * lines, printed from pbjson's JSON form of it (so the fields and values
 * are the ones --json shows), with a one-line summary on top of the records
 * people look at most (units, conventions, programmes, objectives,
 * reservations, proposals, subscriptions, economic projects), progress,
 * delivery attempts, dead letters, demand figures, indicator series,
 * snapshots and the indicator catalog as tables, the latency as one line,
 * and the event list as one line per event. The --json output does not go through the printer:
 * it is pbjson's mapping, printed as is. */
#ifndef PASSERELLE_CLI_PRINT_H
#define PASSERELLE_CLI_PRINT_H

#include "envelope.pb-c.h"
#include "indicators.pb-c.h"
#include "notifications.pb-c.h"
#include "reservations.pb-c.h"

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* Prints msg's set fields in .proto order, indent spaces deep: scalars as
 * "name: value", nested messages as an indented block, repeated messages
 * as one block per item. A field named skip_field (may be NULL) is left
 * out. The records with a summary start with it; a subscription's secret
 * (only create and rotate_secret return one) comes last, with a line
 * saying it will not be shown again. A Progress, an AttemptList, a
 * DeadLetterList, a LatencyReply, a DemandPeriod (or DemandImportReply), a
 * Series, a Snapshot and an IndicatorList are printed as the functions
 * below do. */
void cli_print_message(FILE *out, const ProtobufCMessage *msg, int indent, const char *skip_field);

/* One line per progress row under a header: programme (or "(territory
 * total)"), territory, year, level or financing ("all" for the whole
 * programme), objective, achieved, ratio in percent ("-" without an
 * objective). */
void cli_print_progress(FILE *out, const Passerelle__Progress *progress, int indent);

/* Writes the one-line summary of a unit, a convention, a programme, an
 * objective, a reservation, a proposal or a subscription into out (at most
 * out_size bytes). Returns false, writing nothing, for other messages. */
bool cli_summary(const ProtobufCMessage *msg, char *out, size_t out_size);

/* One line per attempt, latest first as the service lists them, under a
 * header: time, attempt number, HTTP status ("-": no answer), duration,
 * outcome, event type, subject, then the error or the first bytes of the
 * answer on the same line, and when the next attempt is due.
 * "(no attempt yet)" for none. */
void cli_print_attempts(FILE *out, const Passerelle__AttemptList *list, int indent);

/* One line per dead delivery under a header: since when, its id (the
 * webhook-id a replay keeps), attempts, event type, territory, subject.
 * "(no dead letter)" for none. */
void cli_print_dead_letters(FILE *out, const Passerelle__DeadLetterList *list, int indent);

/* "CT1 convention.envisaged: 12 delivered, p50 40 ms, p99 95.5 ms, max 120
 * ms", or "...: no delivery yet" when nothing was delivered; "every
 * territory" for the whole. */
void cli_print_latency(FILE *out, const Passerelle__LatencyReply *latency, int indent);

/* A figure as people read it: "-" when not defined, else the value with
 * at most `decimals` decimals and no trailing zero ("12", "0.42"). */
void cli_format_value(double value, bool defined, int decimals, char *out, size_t out_size);

/* A period's demand figures: one line saying which period, how many rows,
 * the version and who imported them when, then one line per row:
 * territory, public ("(all)" for the total), requests, the four aids,
 * housed. A DemandImportReply prints each of its periods so. */
void cli_print_demand_period(FILE *out, const Passerelle__DemandPeriod *period, int indent);

/* "period value" lines ("2026-04 12"; "-" for an undefined value), for
 * scripts and eyes alike. */
void cli_print_series(FILE *out, const Passerelle__Series *series);

/* A title line (scope, date), then one line per indicator: name, value,
 * basis ("2026-01-01..2026-04-30", "at 2026-04-30"). */
void cli_print_snapshot(FILE *out, const Passerelle__Snapshot *snapshot, int indent);

/* One line per indicator (name, kind, unit, axes, per commune or not),
 * its definition on the next. */
void cli_print_indicator_list(FILE *out, const Passerelle__IndicatorList *list, int indent);

/* "position  time  type  subject", one line per event. */
void cli_print_events(FILE *out, const Passerelle__EventListReply *reply);

/* The descriptor of a message the project's events carry, by the full name
 * their dataschema gives ("passerelle.Convention"); NULL if unknown. */
const ProtobufCMessageDescriptor *cli_event_schema(const char *dataschema);

/* The event list as JSON, each event's data decoded into an object when its
 * dataschema is known (left as base64 otherwise). Caller owns the result. */
json_t *cli_events_to_json(const Passerelle__EventListReply *reply);

#endif
