/* Candidates Action Logement proposes for reserved units, their
 * eligibility under the partnership convention, and the allocation
 * decisions (ATTRIBUTED, RANKED, REFUSED, WITHDRAWN).
 *
 * A proposal belongs to one vacancy of one reservation: a STOCK unit is
 * let again and again, and each time it falls vacant (reservation.vacancy)
 * Action Logement proposes candidates anew and the unit is attributed once.
 * A FLOW reservation is attributed up to its `units`, each released unit
 * once. The attribution writes the reservation (its `attributed` count) in
 * the same transaction as the proposal, guarded at the version read, so of
 * two concurrent attributions exactly one commits; the other runs again,
 * finds the unit taken, and is told by whom.
 *
 * Recording and deciding also guard the reservation, so a proposal never
 * lands on a vacancy that closed while it was being checked, and the count
 * of candidates examined is the count at the moment of the attribution.
 *
 * Keys: see records.h.
 *
 * Personal data: the candidate is the pseudonymous reference Action
 * Logement chose; no name is asked for or stored. */
#include "proposals.h"
#include "proposal_rules.h"
#include "records.h"

#include "log.h"
#include "txn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The reservation a request names in `field`: a reservation id, or a unit
 * (id or external reference) meaning its active STOCK reservation. On
 * success the caller frees *r; otherwise the reply says why. */
static bool reservation_named(reservations_t *self, const char *text, const char *field,
                              Passerelle__Reservation **r, uint64_t *version, reply_t *reply)
{
    *r = NULL;
    char id[ID_LEN];
    if (id_valid('R', text)) {
        snprintf(id, sizeof id, "%s", text);
    } else {
        Passerelle__Unit *unit = NULL;
        uint64_t unit_version = 0;
        read_result_t found = unit_find(self->store, text, &unit, &unit_version, reply);
        if (found == READ_ABSENT)
            reply_error(reply, ST_NOT_FOUND, field, "no reservation or unit is named '%.64s'",
                        text);
        if (found != READ_FOUND)
            return false;
        bool has = !text_blank(unit->reservation_id) && id_valid('R', unit->reservation_id);
        if (has)
            snprintf(id, sizeof id, "%s", unit->reservation_id);
        else
            reply_error(reply, ST_FAILED_PRECONDITION, field,
                        "unit %s has no active STOCK reservation", unit->id);
        protobuf_c_message_free_unpacked(&unit->base, NULL);
        if (!has)
            return false;
    }
    return record_get(self->store, &RECORD_RESERVATION, id, field, (ProtobufCMessage **)r, version,
                      reply);
}

typedef struct {
    Passerelle__Proposal **items;
    size_t count;
} proposal_set_t;

static void proposal_set_free(proposal_set_t *set)
{
    for (size_t i = 0; i < set->count; i++)
        protobuf_c_message_free_unpacked(&set->items[i]->base, NULL);
    free(set->items);
    set->items = NULL;
    set->count = 0;
}

/* Every proposal of one vacancy of a reservation. The caller frees the set
 * with proposal_set_free. O(proposals of the vacancy): a handful, since the
 * convention asks for three candidates per vacancy. */
static bool vacancy_proposals_read(reservations_t *self, const char *reservation_id,
                                   uint32_t vacancy, proposal_set_t *set, reply_t *reply)
{
    char index[PROPOSAL_INDEX_KEY_MAX];
    proposal_index_vacancy(reservation_id, vacancy, index);
    listing_page_t page;
    if (!records_read_all(self->store, index, &RECORD_PROPOSAL, &page, reply)) {
        set->items = NULL;
        set->count = 0;
        return false;
    }
    set->items = (Passerelle__Proposal **)page.items;
    set->count = page.count;
    return true;
}

/* The thresholds in force: the configured ones, or the convention's. */
static eligibility_rules_t eligibility_rules(const reservations_t *self)
{
    eligibility_rules_t rules = {
        .min_headcount_private = self->eligibility_min_headcount_private
                                     ? self->eligibility_min_headcount_private
                                     : ELIGIBILITY_MIN_HEADCOUNT_PRIVATE_DEFAULT,
        .min_headcount_agricultural = self->eligibility_min_headcount_agricultural
                                          ? self->eligibility_min_headcount_agricultural
                                          : ELIGIBILITY_MIN_HEADCOUNT_AGRICULTURAL_DEFAULT,
    };
    return rules;
}

/* ====================================================================== */
/* proposal.record                                                        */
/* ====================================================================== */

/* Refuses the same candidate twice for one vacancy (and, for a FLOW, one
 * unit): a second proposal would count twice among those examined. A
 * withdrawn candidate may be proposed again. */
static bool candidate_already_proposed(const proposal_set_t *set, const char *unit_id,
                                       const char *candidate_ref, reply_t *reply)
{
    for (size_t i = 0; i < set->count; i++) {
        const Passerelle__Proposal *p = set->items[i];
        if (p->decision == PASSERELLE__DECISION__DECISION_WITHDRAWN ||
            text_blank(p->candidate_ref) || strcmp(p->candidate_ref, candidate_ref) != 0)
            continue;
        if (!text_blank(unit_id) && (text_blank(p->unit_id) || strcmp(p->unit_id, unit_id) != 0))
            continue;
        reply_error(reply, ST_ALREADY_EXISTS, "candidate_ref",
                    "candidate %.64s is already proposal %s for vacancy %u of reservation %s",
                    candidate_ref, p->id, p->vacancy, p->reservation_id);
        return true;
    }
    return false;
}

void handle_proposal_record(void *ctx, const call_t *call, const ProtobufCMessage *request,
                            reply_t *reply)
{
    reservations_t *self = ctx;
    const Passerelle__ProposalRecordRequest *req =
        (const Passerelle__ProposalRecordRequest *)request;
    domain_error_t err;
    if (!proposal_record_validate(req, &err)) {
        reply_domain_error(reply, &err);
        return;
    }

    Passerelle__Reservation *reservation = NULL;
    Passerelle__Unit *unit = NULL;
    uint64_t reservation_version = 0, unit_version = 0;
    proposal_set_t set = {NULL, 0};
    if (!reservation_named(self, req->reservation, "reservation", &reservation,
                           &reservation_version, reply))
        return;
    if (!text_blank(req->unit)) {
        read_result_t found = unit_find(self->store, req->unit, &unit, &unit_version, reply);
        if (found == READ_ABSENT)
            reply_error(reply, ST_NOT_FOUND, "unit", "unit '%.64s' not found", req->unit);
        if (found != READ_FOUND)
            goto done;
    }
    if (!proposal_reservation_accepts(reservation, unit, &err)) {
        reply_domain_error(reply, &err);
        goto done;
    }
    const char *unit_id = unit ? unit->id : reservation->unit_id;
    if (text_blank(unit_id)) {
        reply_error(reply, ST_INTERNAL, "reservation", "reservation %s names no unit",
                    reservation->id);
        goto done;
    }
    if (!vacancy_proposals_read(self, reservation->id, reservation->vacancy, &set, reply))
        goto done;
    bool flow = reservation->mode == PASSERELLE__RESERVATION_MODE__MODE_FLOW;
    if (candidate_already_proposed(&set, flow ? unit_id : NULL, req->candidate_ref, reply))
        goto done;

    eligibility_rules_t rules = eligibility_rules(self);
    char reason[ELIGIBILITY_REASON_MAX];
    bool eligible = eligibility_decide(&rules, req->employer_sector, req->employer_headcount,
                                       reason, sizeof reason);

    char id[ID_LEN], now[TIME_RFC3339_LEN], key[KEY_MAX], reservation_key[KEY_MAX],
        subject[KEY_MAX];
    id_new('D', id);
    time_now_rfc3339(now);

    Passerelle__Proposal proposal = PASSERELLE__PROPOSAL__INIT;
    proposal.id = id;
    proposal.reservation_id = reservation->id;
    proposal.unit_id = (char *)unit_id;
    proposal.has_vacancy = true;
    proposal.vacancy = reservation->vacancy;
    proposal.candidate_ref = req->candidate_ref;
    proposal.employer_siren = req->employer_siren;
    proposal.has_employer_sector = true;
    proposal.employer_sector = req->employer_sector;
    proposal.has_employer_headcount = true;
    proposal.employer_headcount = req->employer_headcount;
    proposal.n_publics = req->n_publics;
    proposal.publics = req->publics;
    proposal.has_eligible = true;
    proposal.eligible = eligible;
    proposal.ineligibility_reason = eligible ? NULL : reason;
    proposal.has_decision = true;
    proposal.decision = PASSERELLE__DECISION__DECISION_PENDING;
    proposal.created_at = now;
    proposal.updated_at = now;
    proposal.has_version = true;
    proposal.version = 1;
    proposal.territory = reservation->territory;
    proposal.has_in_qpv = reservation->has_in_qpv;
    proposal.in_qpv = reservation->in_qpv;

    record_key(key, "proposal", id);
    record_key(reservation_key, "reservation", reservation->id);
    subject_of(unit_id, subject);
    char index[PROPOSAL_INDEX_KEY_MAX];

    txn_t *txn = txn_for(call);
    txn_put_message(txn, key, 1, &proposal.base);
    /* The vacancy must still be the reservation's current one at commit. */
    txn_guard(txn, reservation_key, reservation_version);
    proposal_index_all(index);
    txn_index_add(txn, index, id);
    proposal_index_vacancy(reservation->id, reservation->vacancy, index);
    txn_index_add(txn, index, id);
    proposal_index_decision(proposal.decision, index);
    txn_index_add(txn, index, id);
    txn_event(txn, RESERVATIONS_STREAM, RESERVATIONS_SOURCE, "proposal.recorded", subject,
              &proposal.base);
    reply_set_body(reply, &proposal.base);
    commit(self, call, txn, reply, "proposal.recorded", subject);
    txn_destroy(&txn);

done:
    proposal_set_free(&set);
    if (unit)
        protobuf_c_message_free_unpacked(&unit->base, NULL);
    protobuf_c_message_free_unpacked(&reservation->base, NULL);
}

/* ====================================================================== */
/* attribution.decide                                                     */
/* ====================================================================== */

/* Among the vacancy's proposals: the one already attributed for the same
 * unit as p (NULL if none), and how many candidates were examined with p. */
static const char *vacancy_survey(const proposal_set_t *set, const Passerelle__Proposal *p,
                                  size_t *examined)
{
    const char *attributed_to = NULL;
    *examined = 0;
    for (size_t i = 0; i < set->count; i++) {
        const Passerelle__Proposal *other = set->items[i];
        if (candidate_examined_with(p, other))
            (*examined)++;
        if (other->decision == PASSERELLE__DECISION__DECISION_ATTRIBUTED &&
            strcmp(other->id, p->id) != 0 && !text_blank(other->unit_id) &&
            !text_blank(p->unit_id) && strcmp(other->unit_id, p->unit_id) == 0)
            attributed_to = other->id;
    }
    return attributed_to;
}

void handle_attribution_decide(void *ctx, const call_t *call, const ProtobufCMessage *request,
                               reply_t *reply)
{
    reservations_t *self = ctx;
    const Passerelle__AttributionDecideRequest *req =
        (const Passerelle__AttributionDecideRequest *)request;
    domain_error_t err;
    date_t decided_on;
    if (!decision_request_validate(req, caller_party(call), date_today_paris(), &decided_on,
                                   &err)) {
        reply_domain_error(reply, &err);
        return;
    }
    int to = req->decision;

    Passerelle__Proposal *proposal = NULL;
    uint64_t proposal_version = 0;
    if (!record_get(self->store, &RECORD_PROPOSAL, req->proposal, "proposal",
                    (ProtobufCMessage **)&proposal, &proposal_version, reply))
        return;
    read_result_t found;

    Passerelle__Reservation *reservation = NULL;
    uint64_t reservation_version = 0;
    proposal_set_t set = {NULL, 0};
    if (!decision_may_apply(proposal, to, &err)) {
        reply_domain_error(reply, &err);
        goto done;
    }
    found = text_blank(proposal->reservation_id)
                ? READ_ABSENT
                : reservation_read(self->store, proposal->reservation_id, &reservation,
                                   &reservation_version, reply);
    if (found == READ_ABSENT)
        reply_error(reply, ST_INTERNAL, "proposal", "the reservation of proposal %s is missing",
                    proposal->id);
    if (found != READ_FOUND)
        goto done;

    size_t examined = 0;
    const char *attributed_to = NULL;
    if (to == PASSERELLE__DECISION__DECISION_ATTRIBUTED) {
        if (!vacancy_proposals_read(self, reservation->id, proposal->vacancy, &set, reply))
            goto done;
        attributed_to = vacancy_survey(&set, proposal, &examined);
    }
    if (!attribution_may(reservation, proposal, to, attributed_to, &err)) {
        reply_domain_error(reply, &err);
        goto done;
    }

    char now[TIME_RFC3339_LEN], date[DATE_LEN], warning[PROPOSAL_WARNING_MAX];
    char key[KEY_MAX], reservation_key[KEY_MAX], subject[KEY_MAX], index[PROPOSAL_INDEX_KEY_MAX];
    time_now_rfc3339(now);
    date_format(decided_on, date);

    Passerelle__Proposal changed = *proposal;
    changed.has_decision = true;
    changed.decision = to;
    /* A ranked candidate keeps its rank once decided: where the committee
     * placed them is part of the record. */
    if (to == PASSERELLE__DECISION__DECISION_RANKED) {
        changed.has_rank = true;
        changed.rank = req->rank;
    }
    changed.decided_on = date;
    changed.decision_reason = text_blank(req->reason) ? NULL : req->reason;
    /* The warning is kept with the attribution, so that the event and any
     * later read say the convention's three candidates were not met. */
    char *warnings[1] = {warning};
    changed.n_warnings = 0;
    changed.warnings = NULL;
    if (to == PASSERELLE__DECISION__DECISION_ATTRIBUTED &&
        candidates_warning(examined, warning, sizeof warning)) {
        changed.n_warnings = 1;
        changed.warnings = warnings;
    }
    changed.updated_at = now;
    changed.has_version = true;
    changed.version = proposal_version + 1;

    record_key(key, "proposal", proposal->id);
    record_key(reservation_key, "reservation", reservation->id);
    subject_of(text_blank(proposal->unit_id) ? reservation->unit_id : proposal->unit_id, subject);

    txn_t *txn = txn_for(call);
    txn_put_message(txn, key, changed.version, &changed.base);
    Passerelle__Reservation changed_reservation = *reservation;
    if (to == PASSERELLE__DECISION__DECISION_ATTRIBUTED) {
        /* Guarded at the version read: of concurrent attributions, one
         * commits; the others run again and find the vacancy taken. */
        changed_reservation.has_attributed = true;
        changed_reservation.attributed = reservation->attributed + 1;
        changed_reservation.updated_at = now;
        changed_reservation.has_version = true;
        changed_reservation.version = reservation_version + 1;
        changed_reservation.unit = NULL; /* replies and events carry it; records don't */
        txn_put_message(txn, reservation_key, changed_reservation.version,
                        &changed_reservation.base);
    } else {
        txn_guard(txn, reservation_key, reservation_version);
    }
    proposal_index_decision(proposal->decision, index);
    txn_index_remove(txn, index, proposal->id);
    proposal_index_decision(to, index);
    txn_index_add(txn, index, proposal->id);
    txn_event(txn, RESERVATIONS_STREAM, RESERVATIONS_SOURCE, "attribution.decided", subject,
              &changed.base);
    reply_set_body(reply, &changed.base);
    commit(self, call, txn, reply, "attribution.decided", subject);
    txn_destroy(&txn);

done:
    proposal_set_free(&set);
    if (reservation)
        protobuf_c_message_free_unpacked(&reservation->base, NULL);
    protobuf_c_message_free_unpacked(&proposal->base, NULL);
}

/* ====================================================================== */
/* proposal.get, proposal.list                                            */
/* ====================================================================== */

void handle_proposal_get(void *ctx, const call_t *call, const ProtobufCMessage *request,
                         reply_t *reply)
{
    (void)call;
    reservations_t *self = ctx;
    const Passerelle__ProposalGetRequest *req = (const Passerelle__ProposalGetRequest *)request;
    Passerelle__Proposal *proposal = NULL;
    uint64_t version = 0;
    if (!record_get(self->store, &RECORD_PROPOSAL, req->id, "id", (ProtobufCMessage **)&proposal,
                    &version, reply))
        return;
    reply_set_body(reply, &proposal->base);
    protobuf_c_message_free_unpacked(&proposal->base, NULL);
}

static bool proposal_list_match(const ProtobufCMessage *msg, void *filter)
{
    const proposal_filter_t *f = filter;
    return !f->has_decision || (int)((const Passerelle__Proposal *)msg)->decision == f->decision;
}

/* Walks one index (records_list_page), keeping the proposals of the wanted
 * decision. A decision filter over a vacancy's index walks a handful, over
 * the decision index none are rejected, so a page costs O(page) but for
 * the first case. */
void handle_proposal_list(void *ctx, const call_t *call, const ProtobufCMessage *request,
                          reply_t *reply)
{
    (void)call;
    reservations_t *self = ctx;
    const Passerelle__ProposalListRequest *req = (const Passerelle__ProposalListRequest *)request;
    proposal_filter_t filter;
    domain_error_t err;
    if (!proposal_filter_parse(req, &filter, &err)) {
        reply_domain_error(reply, &err);
        return;
    }
    char index[PROPOSAL_INDEX_KEY_MAX];
    if (!text_blank(req->reservation)) {
        Passerelle__Reservation *reservation = NULL;
        uint64_t version = 0;
        if (!reservation_named(self, req->reservation, "reservation", &reservation, &version,
                               reply))
            return;
        proposal_index_vacancy(reservation->id,
                               filter.has_vacancy ? filter.vacancy : reservation->vacancy, index);
        protobuf_c_message_free_unpacked(&reservation->base, NULL);
    } else if (filter.has_decision) {
        proposal_index_decision(filter.decision, index);
    } else {
        proposal_index_all(index);
    }

    listing_page_t page;
    if (!records_list_page(self->store, index, &RECORD_PROPOSAL, filter.after, filter.page_size,
                           proposal_list_match, &filter, &page, reply))
        return;
    Passerelle__ProposalList list = PASSERELLE__PROPOSAL_LIST__INIT;
    list.proposals = (Passerelle__Proposal **)page.items;
    list.n_proposals = page.count;
    list.next_page_token = listing_page_token(&page);
    reply_set_body(reply, &list.base);
    listing_page_free(&page);
}
