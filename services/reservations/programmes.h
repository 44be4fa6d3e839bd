/* Programmes (PIG, OPAH, OPAH-RU, NPNRU, social housing and social
 * ownership operations), Action Logement's objectives in them, and the
 * progress of reservations against those objectives. */
#ifndef RESERVATIONS_PROGRAMMES_H
#define RESERVATIONS_PROGRAMMES_H

#include "records.h"
#include "server.h"

/* ProgrammeCreateRequest -> Programme */
void handle_programme_create(void *ctx, const call_t *call, const ProtobufCMessage *request,
                             reply_t *reply);
/* ProgrammeGetRequest -> Programme */
void handle_programme_get(void *ctx, const call_t *call, const ProtobufCMessage *request,
                          reply_t *reply);
/* ProgrammeListRequest -> ProgrammeList */
void handle_programme_list(void *ctx, const call_t *call, const ProtobufCMessage *request,
                           reply_t *reply);
/* ProgrammeAttachRequest -> Unit */
void handle_programme_attach_unit(void *ctx, const call_t *call, const ProtobufCMessage *request,
                                  reply_t *reply);
/* ObjectiveSetRequest -> Objective */
void handle_objective_set(void *ctx, const call_t *call, const ProtobufCMessage *request,
                          reply_t *reply);
/* ProgressRequest -> Progress */
void handle_progress_get(void *ctx, const call_t *call, const ProtobufCMessage *request,
                         reply_t *reply);

/* unit.register with a programme_id: the programme must exist (NOT_FOUND,
 * field programme_id) and cover the unit's commune or territory
 * (FAILED_PRECONDITION, field programme_id). False with the reply set. */
bool programme_check_new_unit(reservations_t *self, const Passerelle__Unit *unit, reply_t *reply);

/* The index entry that attaches a unit to a programme, in the unit's
 * transaction (programme.attach_unit and unit.register). */
void programme_txn_attach(txn_t *txn, const char *programme_id, const char *unit_id);

#endif
