/* The reservations request handlers and their route table (server.h).
 *
 * Each handler validates, reads what it needs from Redis, asks the domain
 * rules (domain.h) for a decision, builds the reply body and commits one
 * transaction (txn.h): records, index entries and the event together.
 *
 * Redis keys: every key the service writes is listed in records.h. */
#ifndef RESERVATIONS_HANDLERS_H
#define RESERVATIONS_HANDLERS_H

#include "domain.h"
#include "server.h"
#include "store.h"

#include <stddef.h>

#define RESERVATIONS_STREAM "reservations:events"
#define RESERVATIONS_SOURCE "/passerelle/reservations"

/* What every handler is handed as ctx. store is borrowed. */
typedef struct {
    store_t *store;
    energy_rules_t energy_rules;
    /* Eligibility of candidates (proposals.c): headcount thresholds, in
     * employees; 0 means the convention's default. */
    unsigned eligibility_min_headcount_private;
    unsigned eligibility_min_headcount_agricultural;
} reservations_t;

/* The route table: every request type this service answers besides the
 * built-in health and event.list. */
extern const route_t reservations_routes[];
extern const size_t reservations_route_count;

void handle_unit_register(void *ctx, const call_t *call, const ProtobufCMessage *request,
                          reply_t *reply);
void handle_unit_get(void *ctx, const call_t *call, const ProtobufCMessage *request,
                     reply_t *reply);
void handle_unit_list(void *ctx, const call_t *call, const ProtobufCMessage *request,
                      reply_t *reply);
void handle_convention_envisage(void *ctx, const call_t *call, const ProtobufCMessage *request,
                                reply_t *reply);
void handle_convention_sign(void *ctx, const call_t *call, const ProtobufCMessage *request,
                            reply_t *reply);
void handle_convention_in_force(void *ctx, const call_t *call, const ProtobufCMessage *request,
                                reply_t *reply);
void handle_convention_end(void *ctx, const call_t *call, const ProtobufCMessage *request,
                           reply_t *reply);
void handle_convention_abandon(void *ctx, const call_t *call, const ProtobufCMessage *request,
                               reply_t *reply);
void handle_convention_get(void *ctx, const call_t *call, const ProtobufCMessage *request,
                           reply_t *reply);

#endif
