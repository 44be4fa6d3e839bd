/* The rules of proposals (candidats proposés par Action Logement) and of
 * allocation decisions: what a proposal must carry, whether the candidate
 * is eligible under the partnership convention, which decision may follow
 * which, and when a unit may be attributed.
 *
 * Everything here is pure: no sockets, no Redis, no clock (today is an
 * argument). proposals.c reads the records, asks these functions, and
 * writes what they decide; tests/test_proposal_rules.c proves them.
 *
 * Personal data: a candidate is a pseudonymous reference chosen by Action
 * Logement. Nothing here holds, or asks for, a person's name, and nothing
 * tries to guess whether a reference is one: the reference is refused only
 * when it is empty, blank, too long or carries control characters. */
#ifndef RESERVATIONS_PROPOSAL_RULES_H
#define RESERVATIONS_PROPOSAL_RULES_H

#include "domain.h"
#include "identity.h"
#include "ids.h"
#include "reservations.pb-c.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CANDIDATE_REF_MAX          64
#define DECISION_REASON_MAX        256
#define RESERVATION_ARG_MAX        64 /* a reservation id, or a unit id or reference */
#define ELIGIBILITY_REASON_MAX     160
#define PROPOSAL_WARNING_MAX       128
#define PROPOSAL_RANK_MAX          3
#define CANDIDATES_EXPECTED        3 /* before the allocation committee decides */
#define PROPOSAL_LIST_PAGE_DEFAULT 50
#define PROPOSAL_LIST_PAGE_MAX     500

/* Defaults of the eligibility thresholds (PASSERELLE_ELIGIBILITY_*). */
#define ELIGIBILITY_MIN_HEADCOUNT_PRIVATE_DEFAULT      10
#define ELIGIBILITY_MIN_HEADCOUNT_AGRICULTURAL_DEFAULT 50
#define ELIGIBILITY_MIN_HEADCOUNT_LIMIT                1000000

/* The convention's headcount thresholds, in employees. */
typedef struct {
    uint32_t min_headcount_private;      /* private non-agricultural employers */
    uint32_t min_headcount_agricultural; /* agricultural employers */
} eligibility_rules_t;

/* --- names ------------------------------------------------------------- */

/* "PENDING", "ATTRIBUTED", ...; "UNKNOWN" otherwise. */
const char *decision_name(int decision);

/* --- recording a proposal ------------------------------------------------ */

/* True if siren is 9 digits whose Luhn key is right (the INSEE rule:
 * from the right, every second digit doubled). */
bool siren_valid(const char *siren);

/* Checks everything a ProposalRecordRequest carries on its own (not the
 * reservation it names): reservation present, candidate_ref, SIREN,
 * sector, headcount, publics. False with err set (INVALID_ARGUMENT naming
 * the field). */
bool proposal_record_validate(const Passerelle__ProposalRecordRequest *req, domain_error_t *err);

/* Eligibility of an employer's employee under the convention. True if
 * eligible; otherwise false with the rule and the numbers in reason
 * (e.g. "private non-agricultural employer of 8 employees: the convention
 * requires 10 or more"). */
bool eligibility_decide(const eligibility_rules_t *rules, int sector, uint32_t headcount,
                        char *reason, size_t reason_size);

/* Whether the reservation takes proposals: it must be ACTIVE
 * (FAILED_PRECONDITION, field reservation, naming its state). For a FLOW
 * reservation, unit (the released unit proposed, resolved by the caller)
 * must be given (INVALID_ARGUMENT, field unit) and be one of the flow's:
 * of its programme, or of its landlord (FAILED_PRECONDITION, field unit).
 * For a STOCK reservation, unit may be NULL; if given it must be the
 * reserved unit (INVALID_ARGUMENT, field unit). */
bool proposal_reservation_accepts(const Passerelle__Reservation *reservation,
                                  const Passerelle__Unit *unit, domain_error_t *err);

/* --- deciding ---------------------------------------------------------- */

/* True if a proposal whose decision is `from` may be given decision `to`:
 * PENDING to anything else, RANKED to ATTRIBUTED, REFUSED or WITHDRAWN. */
bool decision_transition_allowed(int from, int to);

/* Checks an AttributionDecideRequest on its own and the caller's right to
 * it: proposal id, decision (not PENDING), rank 1-3 with RANKED only,
 * date (default today), reason. Action Logement may only withdraw its
 * candidate (PERMISSION_DENIED, field decision). */
bool decision_request_validate(const Passerelle__AttributionDecideRequest *req, party_t party,
                               date_t today, date_t *decided_on, domain_error_t *err);

/* Whether the proposal, as stored, may take this decision: the transition
 * (FAILED_PRECONDITION, field proposal, naming its decision) and, for
 * ATTRIBUTED or RANKED, its eligibility (FAILED_PRECONDITION with the
 * reason). */
bool decision_may_apply(const Passerelle__Proposal *proposal, int to, domain_error_t *err);

/* Whether the reservation may still attribute (or rank for) this
 * proposal: the reservation ACTIVE, the proposal of its current vacancy;
 * for ATTRIBUTED, STOCK: the vacancy not yet attributed (attributed_to is
 * the proposal that holds it, from the vacancy's proposals, or NULL if
 * none was found); FLOW: fewer attributed than units, and the proposal's
 * unit not already attributed under it (attributed_to likewise, for that
 * unit). FAILED_PRECONDITION, field proposal. */
bool attribution_may(const Passerelle__Reservation *reservation,
                     const Passerelle__Proposal *proposal, int to, const char *attributed_to,
                     domain_error_t *err);

/* True if other counts among the candidates examined together with
 * proposal: the same reservation and vacancy (and, for a FLOW, the same
 * unit), eligible, and not withdrawn. A proposal counts with itself. */
bool candidate_examined_with(const Passerelle__Proposal *proposal,
                             const Passerelle__Proposal *other);

/* The warning an attribution carries when fewer than CANDIDATES_EXPECTED
 * candidates were examined: true and the text in out, or false. */
bool candidates_warning(size_t examined, char *out, size_t out_size);

/* --- listing ----------------------------------------------------------- */

typedef struct {
    bool has_vacancy;
    uint32_t vacancy;
    bool has_decision;
    int decision;
    uint32_t page_size;
    char after[ID_LEN]; /* page token: list ids after this one; "" from the start */
} proposal_filter_t;

/* Parses what a ProposalListRequest says besides its reservation: vacancy
 * (only with a reservation), decision, page size and token. */
bool proposal_filter_parse(const Passerelle__ProposalListRequest *req, proposal_filter_t *filter,
                           domain_error_t *err);

/* The index sorted sets of proposals. */
#define PROPOSAL_INDEX_KEY_MAX 128
void proposal_index_all(char out[PROPOSAL_INDEX_KEY_MAX]);
void proposal_index_vacancy(const char *reservation_id, uint32_t vacancy,
                            char out[PROPOSAL_INDEX_KEY_MAX]);
void proposal_index_decision(int decision, char out[PROPOSAL_INDEX_KEY_MAX]);

#endif
