/* Proposals and allocation decisions: the pure rules (see proposal_rules.h).
 *
 * The eligibility rule is the partnership convention's: Action Logement
 * houses employees of private non-agricultural employers of at least 10
 * employees and of agricultural employers of at least 50 (the thresholds
 * are configuration, since the convention's annual review may move them).
 * Public-sector employees are outside Action Logement's remit. A refused
 * candidate is still recorded, with the reason, so that the indicators can
 * count refusals by rule. */
#include "proposal_rules.h"
#include "booking_rules.h"

#include <stdio.h>
#include <string.h>

#define D_PENDING    PASSERELLE__DECISION__DECISION_PENDING
#define D_ATTRIBUTED PASSERELLE__DECISION__DECISION_ATTRIBUTED
#define D_RANKED     PASSERELLE__DECISION__DECISION_RANKED
#define D_REFUSED    PASSERELLE__DECISION__DECISION_REFUSED
#define D_WITHDRAWN  PASSERELLE__DECISION__DECISION_WITHDRAWN

#define SECTOR_PRIVATE      PASSERELLE__EMPLOYER_SECTOR__SECTOR_PRIVATE_NON_AGRICULTURAL
#define SECTOR_AGRICULTURAL PASSERELLE__EMPLOYER_SECTOR__SECTOR_AGRICULTURAL
#define SECTOR_PUBLIC       PASSERELLE__EMPLOYER_SECTOR__SECTOR_PUBLIC

/* ====================================================================== */
/* Names                                                                  */
/* ====================================================================== */

const char *decision_name(int decision)
{
    static const char *const names[] = {"PENDING", "ATTRIBUTED", "RANKED", "REFUSED", "WITHDRAWN"};
    if (decision < 0 || decision >= (int)(sizeof names / sizeof names[0]))
        return "UNKNOWN";
    return names[decision];
}

static const char *sector_name(int sector)
{
    switch (sector) {
    case SECTOR_PRIVATE:
        return "private non-agricultural";
    case SECTOR_AGRICULTURAL:
        return "agricultural";
    case SECTOR_PUBLIC:
        return "public-sector";
    default:
        return "unknown";
    }
}

/* ====================================================================== */
/* Recording a proposal                                                   */
/* ====================================================================== */

bool siren_valid(const char *siren)
{
    if (!siren || strlen(siren) != 9)
        return false;
    int sum = 0;
    for (int i = 0; i < 9; i++) {
        char c = siren[8 - i];
        if (c < '0' || c > '9')
            return false;
        int digit = c - '0';
        if (i % 2 == 1) {
            digit *= 2;
            if (digit > 9)
                digit -= 9;
        }
        sum += digit;
    }
    return sum % 10 == 0;
}

static bool siren_digits(const char *siren)
{
    if (strlen(siren) != 9)
        return false;
    for (const char *p = siren; *p; p++)
        if (*p < '0' || *p > '9')
            return false;
    return true;
}

bool proposal_record_validate(const Passerelle__ProposalRecordRequest *req, domain_error_t *err)
{
    if (text_blank(req->reservation))
        return domain_fail(err, ST_INVALID_ARGUMENT, "reservation",
                           "reservation is required (a reservation id, or a unit with an active "
                           "reservation)");
    if (strlen(req->reservation) > RESERVATION_ARG_MAX || !text_clean(req->reservation))
        return domain_fail(err, ST_INVALID_ARGUMENT, "reservation",
                           "reservation must be a reservation id or a unit id or reference");
    if (!text_blank(req->unit) &&
        (strlen(req->unit) > RESERVATION_ARG_MAX || !text_clean(req->unit)))
        return domain_fail(err, ST_INVALID_ARGUMENT, "unit", "unit must be a unit id or reference");

    /* The candidate is a pseudonymous reference: no name is asked for, and
     * the reference is kept as given. */
    if (text_blank(req->candidate_ref))
        return domain_fail(err, ST_INVALID_ARGUMENT, "candidate_ref",
                           "candidate_ref is required (a pseudonymous reference, never a name)");
    if (strlen(req->candidate_ref) > CANDIDATE_REF_MAX)
        return domain_fail(err, ST_INVALID_ARGUMENT, "candidate_ref",
                           "candidate_ref is longer than %d bytes", CANDIDATE_REF_MAX);
    if (!text_clean(req->candidate_ref))
        return domain_fail(err, ST_INVALID_ARGUMENT, "candidate_ref",
                           "candidate_ref holds control characters");
    if (text_only_spaces(req->candidate_ref))
        return domain_fail(err, ST_INVALID_ARGUMENT, "candidate_ref",
                           "candidate_ref is only spaces");

    if (text_blank(req->employer_siren))
        return domain_fail(err, ST_INVALID_ARGUMENT, "employer_siren",
                           "employer_siren is required (9 digits)");
    if (!siren_digits(req->employer_siren))
        return domain_fail(err, ST_INVALID_ARGUMENT, "employer_siren",
                           "employer_siren '%.16s' is not 9 digits", req->employer_siren);
    if (!siren_valid(req->employer_siren))
        return domain_fail(err, ST_INVALID_ARGUMENT, "employer_siren",
                           "employer_siren %s fails its Luhn check", req->employer_siren);

    if (!req->has_employer_sector ||
        req->employer_sector == PASSERELLE__EMPLOYER_SECTOR__SECTOR_UNSPECIFIED)
        return domain_fail(err, ST_INVALID_ARGUMENT, "employer_sector",
                           "employer_sector is required: PRIVATE_NON_AGRICULTURAL, AGRICULTURAL or "
                           "PUBLIC");
    if (req->employer_sector != SECTOR_PRIVATE && req->employer_sector != SECTOR_AGRICULTURAL &&
        req->employer_sector != SECTOR_PUBLIC)
        return domain_fail(err, ST_INVALID_ARGUMENT, "employer_sector",
                           "employer_sector %d is not a sector", (int)req->employer_sector);
    if (!req->has_employer_headcount || req->employer_headcount < 1)
        return domain_fail(err, ST_INVALID_ARGUMENT, "employer_headcount",
                           "employer_headcount is required: 1 or more employees");

    for (size_t i = 0; i < req->n_publics; i++) {
        int p = req->publics[i];
        if (p < PASSERELLE__PRIORITY_PUBLIC__PUBLIC_UNDER_30 ||
            p > PASSERELLE__PRIORITY_PUBLIC__PUBLIC_DISABILITY)
            return domain_fail(err, ST_INVALID_ARGUMENT, "publics",
                               "publics[%zu] = %d is not a priority public of the convention", i,
                               p);
        for (size_t j = 0; j < i; j++)
            if ((int)req->publics[j] == p)
                return domain_fail(err, ST_INVALID_ARGUMENT, "publics", "publics names %s twice",
                                   protobuf_c_enum_descriptor_get_value(
                                       &passerelle__priority_public__descriptor, p)
                                       ->name);
    }
    return true;
}

bool eligibility_decide(const eligibility_rules_t *rules, int sector, uint32_t headcount,
                        char *reason, size_t reason_size)
{
    uint32_t minimum;
    switch (sector) {
    case SECTOR_PRIVATE:
        minimum = rules->min_headcount_private;
        break;
    case SECTOR_AGRICULTURAL:
        minimum = rules->min_headcount_agricultural;
        break;
    case SECTOR_PUBLIC:
        snprintf(reason, reason_size,
                 "public-sector employer: the convention covers private employers only");
        return false;
    default:
        snprintf(reason, reason_size, "employer sector %d is not one the convention names", sector);
        return false;
    }
    if (headcount >= minimum) {
        if (reason_size > 0)
            reason[0] = '\0';
        return true;
    }
    snprintf(reason, reason_size,
             "%s employer of %u employee%s: the convention requires %u or more",
             sector_name(sector), headcount, headcount == 1 ? "" : "s", minimum);
    return false;
}

/* Both given and equal: an absent link never matches. */
static bool same_given(const char *a, const char *b)
{
    return !text_blank(a) && !text_blank(b) && strcmp(a, b) == 0;
}

bool proposal_reservation_accepts(const Passerelle__Reservation *reservation,
                                  const Passerelle__Unit *unit, domain_error_t *err)
{
    if (reservation->state != PASSERELLE__RESERVATION_STATE__RESERVATION_ACTIVE)
        return domain_fail(err, ST_FAILED_PRECONDITION, "reservation",
                           "reservation %s is %s; proposal.record needs ACTIVE", reservation->id,
                           reservation_state_name(reservation->state));
    if (reservation->mode == PASSERELLE__RESERVATION_MODE__MODE_FLOW) {
        if (!unit)
            return domain_fail(
                err, ST_INVALID_ARGUMENT, "unit",
                "unit is required for FLOW reservation %s: the released unit proposed",
                reservation->id);
        if (!text_blank(reservation->programme_id) &&
            !same_given(reservation->programme_id, unit->programme_id))
            return domain_fail(err, ST_FAILED_PRECONDITION, "unit",
                               "unit %s is %s%s; reservation %s is a flow of programme %s",
                               unit->id,
                               text_blank(unit->programme_id) ? "in no programme" : "in programme ",
                               text_blank(unit->programme_id) ? "" : unit->programme_id,
                               reservation->id, reservation->programme_id);
        if (text_blank(reservation->programme_id) && !text_blank(reservation->landlord) &&
            !same_given(reservation->landlord, unit->landlord))
            return domain_fail(err, ST_FAILED_PRECONDITION, "unit",
                               "unit %s is not let by landlord %.64s, whose flow reservation %s is",
                               unit->id, reservation->landlord, reservation->id);
        return true;
    }
    if (unit && !same_given(unit->id, reservation->unit_id))
        return domain_fail(err, ST_INVALID_ARGUMENT, "unit",
                           "unit %s is not the unit of reservation %s (%s)", unit->id,
                           reservation->id, reservation->unit_id ? reservation->unit_id : "");
    return true;
}

/* ====================================================================== */
/* Deciding                                                               */
/* ====================================================================== */

bool decision_transition_allowed(int from, int to)
{
    switch (from) {
    case D_PENDING:
        return to == D_ATTRIBUTED || to == D_RANKED || to == D_REFUSED || to == D_WITHDRAWN;
    case D_RANKED:
        return to == D_ATTRIBUTED || to == D_REFUSED || to == D_WITHDRAWN;
    default:
        return false;
    }
}

bool decision_request_validate(const Passerelle__AttributionDecideRequest *req, party_t party,
                               date_t today, date_t *decided_on, domain_error_t *err)
{
    if (text_blank(req->proposal))
        return domain_fail(err, ST_INVALID_ARGUMENT, "proposal",
                           "proposal is required (a proposal id)");
    if (!id_valid('D', req->proposal))
        return domain_fail(err, ST_INVALID_ARGUMENT, "proposal",
                           "proposal '%.40s' is not a proposal id", req->proposal);
    if (!req->has_decision || req->decision == D_PENDING)
        return domain_fail(err, ST_INVALID_ARGUMENT, "decision",
                           "decision is required: ATTRIBUTED, RANKED, REFUSED or WITHDRAWN");
    if (req->decision < D_ATTRIBUTED || req->decision > D_WITHDRAWN)
        return domain_fail(err, ST_INVALID_ARGUMENT, "decision", "decision %d is not a decision",
                           (int)req->decision);
    /* The allocation committee decides; Action Logement can only take its
     * candidate back. */
    if (party == PARTY_ACTION_LOGEMENT && req->decision != D_WITHDRAWN)
        return domain_fail(err, ST_PERMISSION_DENIED, "decision",
                           "Action Logement may only withdraw its candidate, not record %s",
                           decision_name(req->decision));
    if (req->decision == D_RANKED) {
        if (!req->has_rank || req->rank < 1 || req->rank > PROPOSAL_RANK_MAX)
            return domain_fail(err, ST_INVALID_ARGUMENT, "rank",
                               "rank is required with RANKED: 1 to %d", PROPOSAL_RANK_MAX);
    } else if (req->has_rank && req->rank != 0) {
        return domain_fail(err, ST_INVALID_ARGUMENT, "rank", "rank goes with RANKED only, not %s",
                           decision_name(req->decision));
    }
    if (!text_blank(req->reason) &&
        (strlen(req->reason) > DECISION_REASON_MAX || !text_clean(req->reason)))
        return domain_fail(err, ST_INVALID_ARGUMENT, "reason",
                           "reason must be at most %d bytes without control characters",
                           DECISION_REASON_MAX);
    return domain_date_or_today(req->date, "date", today, decided_on, err);
}

bool decision_may_apply(const Passerelle__Proposal *proposal, int to, domain_error_t *err)
{
    if (!decision_transition_allowed(proposal->decision, to))
        return domain_fail(err, ST_FAILED_PRECONDITION, "proposal",
                           "proposal %s is %s; %s needs PENDING%s", proposal->id,
                           decision_name(proposal->decision), decision_name(to),
                           to == D_RANKED ? "" : " or RANKED");
    if ((to == D_ATTRIBUTED || to == D_RANKED) && !proposal->eligible)
        return domain_fail(err, ST_FAILED_PRECONDITION, "proposal",
                           "proposal %s is not eligible (%s)", proposal->id,
                           text_blank(proposal->ineligibility_reason)
                               ? "no reason recorded"
                               : proposal->ineligibility_reason);
    return true;
}

bool attribution_may(const Passerelle__Reservation *reservation,
                     const Passerelle__Proposal *proposal, int to, const char *attributed_to,
                     domain_error_t *err)
{
    if (to != D_ATTRIBUTED && to != D_RANKED)
        return true;
    if (reservation->state != PASSERELLE__RESERVATION_STATE__RESERVATION_ACTIVE)
        return domain_fail(err, ST_FAILED_PRECONDITION, "proposal",
                           "reservation %s of proposal %s is %s; %s needs it ACTIVE",
                           reservation->id, proposal->id,
                           reservation_state_name(reservation->state), decision_name(to));
    if (proposal->vacancy != reservation->vacancy)
        return domain_fail(
            err, ST_FAILED_PRECONDITION, "proposal",
            "proposal %s is for vacancy %u of reservation %s, which is now at vacancy %u",
            proposal->id, proposal->vacancy, reservation->id, reservation->vacancy);
    if (to != D_ATTRIBUTED)
        return true;
    if (reservation->mode == PASSERELLE__RESERVATION_MODE__MODE_FLOW) {
        if (reservation->attributed >= reservation->units)
            return domain_fail(err, ST_FAILED_PRECONDITION, "proposal",
                               "FLOW reservation %s has attributed %u of its %u units",
                               reservation->id, reservation->attributed, reservation->units);
        if (attributed_to)
            return domain_fail(err, ST_FAILED_PRECONDITION, "proposal",
                               "unit %s is already attributed under reservation %s, to proposal %s",
                               proposal->unit_id ? proposal->unit_id : "", reservation->id,
                               attributed_to);
        return true;
    }
    if (reservation->attributed > 0 || attributed_to)
        return domain_fail(err, ST_FAILED_PRECONDITION, "proposal",
                           "vacancy %u of reservation %s is already attributed to proposal %s",
                           reservation->vacancy, reservation->id,
                           attributed_to ? attributed_to : "(not found)");
    return true;
}

bool candidate_examined_with(const Passerelle__Proposal *proposal,
                             const Passerelle__Proposal *other)
{
    if (!same_given(proposal->reservation_id, other->reservation_id) ||
        proposal->vacancy != other->vacancy)
        return false;
    if (!text_blank(proposal->unit_id) && !same_given(proposal->unit_id, other->unit_id))
        return false;
    return other->eligible && other->decision != D_WITHDRAWN;
}

bool candidates_warning(size_t examined, char *out, size_t out_size)
{
    if (examined >= CANDIDATES_EXPECTED)
        return false;
    snprintf(out, out_size,
             "only %zu candidate%s examined for this vacancy; the convention expects at least "
             "three",
             examined, examined == 1 ? "" : "s");
    return true;
}

/* ====================================================================== */
/* Listing                                                                */
/* ====================================================================== */

bool proposal_filter_parse(const Passerelle__ProposalListRequest *req, proposal_filter_t *filter,
                           domain_error_t *err)
{
    memset(filter, 0, sizeof *filter);
    if (req->has_vacancy && req->vacancy != 0) {
        if (text_blank(req->reservation))
            return domain_fail(err, ST_INVALID_ARGUMENT, "vacancy",
                               "vacancy goes with a reservation: name the reservation");
        filter->has_vacancy = true;
        filter->vacancy = req->vacancy;
    }
    if (!text_blank(req->reservation) &&
        (strlen(req->reservation) > RESERVATION_ARG_MAX || !text_clean(req->reservation)))
        return domain_fail(err, ST_INVALID_ARGUMENT, "reservation",
                           "reservation must be a reservation id or a unit id or reference");
    if (req->has_decision) {
        if (req->decision < D_PENDING || req->decision > D_WITHDRAWN)
            return domain_fail(err, ST_INVALID_ARGUMENT, "decision",
                               "decision %d is not a decision", (int)req->decision);
        filter->has_decision = true;
        filter->decision = req->decision;
    }
    return domain_page_parse(req->has_page_size, req->page_size, req->page_token, 'D',
                             PROPOSAL_LIST_PAGE_DEFAULT, PROPOSAL_LIST_PAGE_MAX, &filter->page_size,
                             filter->after, err);
}

void proposal_index_all(char out[PROPOSAL_INDEX_KEY_MAX])
{
    snprintf(out, PROPOSAL_INDEX_KEY_MAX, "reservations:proposals");
}

void proposal_index_vacancy(const char *reservation_id, uint32_t vacancy,
                            char out[PROPOSAL_INDEX_KEY_MAX])
{
    snprintf(out, PROPOSAL_INDEX_KEY_MAX, "reservations:proposals:reservation:%.40s:%u",
             reservation_id, vacancy);
}

void proposal_index_decision(int decision, char out[PROPOSAL_INDEX_KEY_MAX])
{
    snprintf(out, PROPOSAL_INDEX_KEY_MAX, "reservations:proposals:decision:%s",
             decision_name(decision));
}
