/* The rules of reservations (droits de réservation), without Redis or
 * sockets: what a valid reservation request is, who may reserve for whom,
 * when a unit may be reserved (its stock, its ANAH convention, the holder of
 * its active reservation), the ACTIVE -> RELEASED | CANCELLED lifecycle and
 * the vacancies of a STOCK reservation, and the filters and index keys of a
 * listing.
 *
 * Pure functions: today and the caller's party are arguments. The handlers
 * (bookings.c) read, ask these for a decision, and commit what they decide;
 * services/reservations/tests/test_booking_rules.c proves every rule. */
#ifndef RESERVATIONS_BOOKING_RULES_H
#define RESERVATIONS_BOOKING_RULES_H

#include "domain.h"
#include "identity.h"
#include "ids.h"
#include "reservations.pb-c.h"

#include <stdbool.h>
#include <stddef.h>

/* Limits. FLOW years are those a partnership could plausibly plan. */
#define BOOKING_YEAR_MIN       2000
#define BOOKING_YEAR_MAX       2100
#define BOOKING_FLOW_UNITS_MAX 100000
#define BOOKING_LANDLORD_MAX   128
#define BOOKING_REASON_MAX     256
#define BOOKING_LIST_PAGE_DEF  50
#define BOOKING_LIST_PAGE_MAX  500
#define BOOKING_PUBLICS_MAX    6

/* --- names ------------------------------------------------------------- */

/* "ACTION_LOGEMENT", "STOCK", "ACTIVE"...; "UNKNOWN" out of the enum. */
const char *reservataire_name(int reservataire);
const char *reservation_mode_name(int mode);
const char *reservation_state_name(int state);

/* --- creation ---------------------------------------------------------- */

/* A creation request, validated. Strings point into the request. */
typedef struct {
    int reservataire; /* never UNSPECIFIED */
    int mode;
    const char *unit;      /* STOCK: unit id or external reference */
    const char *programme; /* FLOW of a programme: its id */
    const char *landlord;  /* FLOW of a landlord */
    char territory[4];     /* FLOW of a landlord: "CT1".."CT6" */
    unsigned year;         /* FLOW: as asked; STOCK: the start's year */
    unsigned units;        /* FLOW: as asked; STOCK: 1 */
    date_t start, end;
    bool has_end;
    char start_text[DATE_LEN], end_text[DATE_LEN];
} booking_request_t;

/* May a caller of this party reserve for this reservataire (UNSPECIFIED
 * meaning ACTION_LOGEMENT)? Action Logement only for itself; the Métropole
 * and operations for anyone. PERMISSION_DENIED field "reservataire". */
bool booking_reservataire_allowed(party_t party, int reservataire, domain_error_t *err);

/* Validates a creation request of a caller of `party` on `today` into out.
 * Errors (field named):
 *   PERMISSION_DENIED "reservataire" as booking_reservataire_allowed;
 *   INVALID_ARGUMENT  "reservataire" out of the enum; "mode" missing or out
 *                     of the enum; "unit" missing (STOCK); "programme",
 *                     "landlord", "territory", "year", "units" given to a
 *                     STOCK reservation, or for FLOW: programme and landlord
 *                     both or neither, programme not a programme id,
 *                     landlord too long, territory missing or unknown for a
 *                     landlord, given for a programme, year missing or out
 *                     of range, units missing or 0 or too many;
 *                     "start_date", "end_date" unparsable; "end_date"
 *                     missing (STOCK) or not after the start;
 *                     "target_publics" unknown or repeated.
 * FLOW dates default to the year's first and last day. */
bool booking_create_validate(const Passerelle__ReservationCreateRequest *req, party_t party,
                             date_t today, booking_request_t *out, domain_error_t *err);

/* May this unit be reserved (STOCK) from the request's start to its end?
 *   conv      the unit's latest convention, or NULL (none, or not read);
 *   holder    the reservation unit->reservation_id names, or NULL.
 * A PRIVATE unit needs its convention SIGNED or IN_FORCE (FAILED_PRECONDITION
 * "unit", naming the convention and its state) and the end not beyond the
 * convention's end date (FAILED_PRECONDITION "end_date"); an ACTIVE holder
 * is a CONFLICT "unit" naming its reservataire and id. */
bool booking_unit_available(const booking_request_t *request, const Passerelle__Unit *unit,
                            const Passerelle__Convention *conv,
                            const Passerelle__Reservation *holder, domain_error_t *err);

/* Fills reservation (id, timestamps and version left to the caller) from a
 * validated request and, for STOCK, the unit and its convention: the
 * snapshots progress counts by (territory, level, financing, in_qpv,
 * programme), vacancy 1 and attributed 0. For FLOW of a programme,
 * programme_territory is its territory. Strings point into request, unit,
 * conv or programme_territory. publics (BOOKING_PUBLICS_MAX) is storage for
 * the target publics. */
void booking_build(const booking_request_t *request,
                   const Passerelle__ReservationCreateRequest *req, const Passerelle__Unit *unit,
                   const Passerelle__Convention *conv, const char *programme_territory,
                   Passerelle__PriorityPublic publics[BOOKING_PUBLICS_MAX],
                   Passerelle__Reservation *reservation);

/* FLOW of a programme: its period must hold the year (FAILED_PRECONDITION
 * "year", naming the period). Programmes without dates hold any year. */
bool booking_programme_covers(const Passerelle__Programme *programme, unsigned year,
                              domain_error_t *err);

/* --- lifecycle --------------------------------------------------------- */

typedef enum {
    BOOKING_RELEASE = 0, /* the right returns to the landlord at the end */
    BOOKING_CANCEL,      /* recorded in error or withdrawn: counts no more */
    BOOKING_VACANCY,     /* the STOCK unit is vacant again: next vacancy */
} booking_step_t;

/* "reservation.release"... and the events "reservation.released"... */
const char *booking_step_request(booking_step_t step);
const char *booking_step_event(booking_step_t step);

typedef struct {
    int state;
    char date[DATE_LEN];
    const char *reason; /* points into the request, NULL if none */
} booking_step_result_t;

/* Decides a step on reservation for a caller of `party`:
 *   PERMISSION_DENIED   "reservataire" Action Logement on another's;
 *   INVALID_ARGUMENT    "date" unparsable, "reason" too long;
 *   FAILED_PRECONDITION "id" the reservation is not ACTIVE (its state
 *                       named), or vacancy on a FLOW reservation;
 *                       "date" a release before the start date. */
bool booking_step_decide(const Passerelle__Reservation *reservation, booking_step_t step,
                         const Passerelle__ReservationStepRequest *req, party_t party, date_t today,
                         booking_step_result_t *out, domain_error_t *err);

/* Applies a decided step to reservation (strings point into result). */
void booking_step_apply(Passerelle__Reservation *reservation, booking_step_t step,
                        const booking_step_result_t *result);

/* --- listing ----------------------------------------------------------- */

typedef struct {
    const char *unit; /* id or external reference, resolved by the handler */
    char unit_id[ID_LEN];
    char programme[ID_LEN];
    int reservataire, mode, state; /* 0: any */
    unsigned year;                 /* 0: any */
    char territory[4];
    unsigned page_size;
    char after[ID_LEN];
} booking_filter_t;

/* Validates a listing request. INVALID_ARGUMENT naming the field. The unit,
 * when an external reference, is left for the handler to resolve into
 * unit_id. */
bool booking_filter_parse(const Passerelle__ReservationListRequest *req, booking_filter_t *filter,
                          domain_error_t *err);

bool booking_filter_match(const booking_filter_t *filter, const Passerelle__Reservation *r);

#define BOOKING_INDEX_KEY_MAX    96
#define BOOKING_INDEX_CANDIDATES 8

/* The index sorted sets a reservation belongs to, in this order: all,
 * unit, programme, territory, state, year, reservataire, mode ("" for one it
 * lacks). */
void booking_index_keys(const Passerelle__Reservation *r,
                        char keys[BOOKING_INDEX_CANDIDATES][BOOKING_INDEX_KEY_MAX]);

/* The state index key of a state. */
void booking_state_index_key(int state, char out[BOOKING_INDEX_KEY_MAX]);

/* The indexes that could serve the filter (the catch-all last); returns how
 * many. The handler walks the smallest. */
size_t booking_filter_indexes(const booking_filter_t *filter,
                              char keys[BOOKING_INDEX_CANDIDATES][BOOKING_INDEX_KEY_MAX]);

#endif
