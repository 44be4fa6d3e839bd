/* Candidates Action Logement proposes for reserved units, their
 * eligibility under the partnership convention, and the allocation
 * decisions (ATTRIBUTED, RANKED, REFUSED, WITHDRAWN). */
#ifndef RESERVATIONS_PROPOSALS_H
#define RESERVATIONS_PROPOSALS_H

#include "server.h"

/* ProposalRecordRequest -> Proposal */
void handle_proposal_record(void *ctx, const call_t *call, const ProtobufCMessage *request,
                            reply_t *reply);
/* AttributionDecideRequest -> Proposal */
void handle_attribution_decide(void *ctx, const call_t *call, const ProtobufCMessage *request,
                               reply_t *reply);
/* ProposalGetRequest -> Proposal */
void handle_proposal_get(void *ctx, const call_t *call, const ProtobufCMessage *request,
                         reply_t *reply);
/* ProposalListRequest -> ProposalList */
void handle_proposal_list(void *ctx, const call_t *call, const ProtobufCMessage *request,
                          reply_t *reply);

#endif
