/* The reservations domain rules: validation of units (logements), the ANAH
 * convention (conventionnement) lifecycle, the energy rule for signing, end
 * dates and the filters of a unit listing.
 *
 * Everything here is pure: no sockets, no Redis, no clock (today is an
 * argument). The handlers read state, ask these functions for a decision,
 * and write what they decide; the rules are tested on their own
 * (tests/test_domain.c).
 *
 * Personal data: a unit names its landlord by an organisation (social stock)
 * or by a pseudonymous reference chosen by the operator (private owners).
 * Nothing here holds, or asks for, a person's name. */
#ifndef RESERVATIONS_DOMAIN_H
#define RESERVATIONS_DOMAIN_H

#include "ids.h"
#include "reservations.pb-c.h"
#include "status.h"

#include <stdbool.h>
#include <stddef.h>

/* Limits of the free-text fields, in bytes. */
#define UNIT_EXTERNAL_REF_MAX              64
#define UNIT_ADDRESS_MAX                   256
#define UNIT_LANDLORD_MAX                  128
#define UNIT_PROGRAMME_ID_MAX              64
#define UNIT_SURFACE_MAX_M2                1000.0
#define CONVENTION_RENT_CEILING_MAX_EUR_M2 100.0

/* Years a convention lasts after signing (ANAH: 6, 9 with works). */
#define CONVENTION_YEARS       6
#define CONVENTION_YEARS_WORKS 9

/* Listing page sizes. */
#define UNIT_LIST_PAGE_DEFAULT 50
#define UNIT_LIST_PAGE_MAX     500

/* Why a rule said no: the reply's status, field and message. */
typedef struct {
    status_t status;
    char field[64];
    char message[256];
} domain_error_t;

/* --- helpers of every rules file -------------------------------------- */

/* Fills err with the status, the field at fault (NULL for none) and the
 * message, and returns false, so that a rule reads
 * `return domain_fail(err, ST_INVALID_ARGUMENT, "field", ...)`. */
bool domain_fail(domain_error_t *err, status_t status, const char *field, const char *format, ...)
    __attribute__((format(printf, 4, 5)));

/* NULL or "". */
bool text_blank(const char *s);

/* No control characters: free text may be UTF-8 (addresses, names of
 * organisations) but a control character would corrupt logs and exports. */
bool text_clean(const char *s);

/* The same text, NULL counting as "". */
bool text_same(const char *a, const char *b);

/* True for "" and for text made of spaces only. */
bool text_only_spaces(const char *s);

/* Characters of a UTF-8 string: every byte that does not continue a
 * sequence starts one. */
size_t text_utf8_length(const char *s);

/* A date field of a request: today when blank, else YYYY-MM-DD.
 * INVALID_ARGUMENT naming the field when it does not parse. */
bool domain_date_or_today(const char *text, const char *field, date_t today, date_t *out,
                          domain_error_t *err);

/* A date field the request must give: INVALID_ARGUMENT naming the field
 * when blank or not a date YYYY-MM-DD. */
bool domain_date_required(const char *text, const char *field, date_t *out, domain_error_t *err);

/* The page of a listing request: page_size (absent or 0: default_size; at
 * most max_size) into *size, and page_token (the last id of the previous
 * page, an id with id_prefix; "" from the start) into after.
 * INVALID_ARGUMENT naming page_size or page_token. */
bool domain_page_parse(bool has_page_size, uint32_t page_size, const char *page_token,
                       char id_prefix, unsigned default_size, unsigned max_size, unsigned *size,
                       char after[ID_LEN], domain_error_t *err);

/* --- energy rule ------------------------------------------------------- */

#define ENERGY_RULES_DEFAULT "E,2028-01-01:D"
#define ENERGY_RULES_MAX     8

/* The worst energy class a unit may have to be conventioned, over time:
 * base_class until the first step's date, then each step's class from its
 * date on (dates strictly increasing, classes never looser). */
typedef struct {
    int base_class; /* Passerelle__EnergyClass, A=1 .. G=7 */
    size_t step_count;
    struct {
        date_t from;
        int max_class;
    } steps[ENERGY_RULES_MAX];
} energy_rules_t;

/* Parses "E,2028-01-01:D" (a class, then date:class pairs). Returns false
 * with a message in err (at most err_size bytes) if the text is malformed,
 * a date goes backwards, or a later class is looser. */
bool energy_rules_parse(const char *text, energy_rules_t *out, char *err, size_t err_size);

/* The worst class allowed on that date. */
int energy_rules_max_class(const energy_rules_t *rules, date_t on);

/* "A".."G"; "unknown" for anything else. Static string. */
const char *energy_class_letter(int energy_class);

/* --- names ------------------------------------------------------------- */

/* "ENVISAGED", "PRIVATE"...; "UNKNOWN" for a value out of the enum. Static. */
const char *convention_state_name(int state);
const char *stock_name(int stock);

/* True for ENVISAGED, SIGNED and IN_FORCE: a unit has at most one. */
bool convention_state_live(int state);

/* --- units ------------------------------------------------------------- */

/* Validates a registration and fills unit with what is registered: the
 * commune is resolved (by code or name, Marseille through its
 * arrondissement), the territory derived. Strings in unit point into req or
 * into the reference tables: unit is valid while req lives. Identity,
 * timestamps, version and convention fields are left to the caller.
 * Returns false with INVALID_ARGUMENT and the field at fault. */
bool unit_validate(const Passerelle__UnitRegisterRequest *req, Passerelle__Unit *unit,
                   domain_error_t *err);

/* The first registered field in which two units differ (by the request's
 * field names: "address", "commune"...), or NULL if they carry the same
 * registration. Decides whether registering an external_ref again is an
 * idempotent repeat or a clash. a is the registered unit, b the repeat; a
 * repeat without a programme_id matches a unit attached since. */
const char *unit_registration_differs(const Passerelle__Unit *a, const Passerelle__Unit *b);

/* True if text is a usable external reference: 1-64 printable ASCII
 * characters, no leading or trailing space. */
bool unit_external_ref_valid(const char *text);

/* --- listing ----------------------------------------------------------- */

typedef struct {
    char territory[8];            /* "CT1".."CT6", or "" */
    char commune_insee[8];        /* "13055", or "" */
    char arrondissement_insee[8]; /* "13207" when the filter named one */
    int stock;                    /* 0: any */
    bool has_convention_state;    /* NONE (0) is a valid filter */
    int convention_state;
    unsigned page_size;
    char after[ID_LEN]; /* page token: the last id of the previous page */
} unit_filter_t;

/* Validates a listing request into filter. INVALID_ARGUMENT naming the
 * field on a bad filter, page size or token. */
bool unit_filter_parse(const Passerelle__UnitListRequest *req, unit_filter_t *filter,
                       domain_error_t *err);

/* True if the unit passes every filter. */
bool unit_filter_match(const unit_filter_t *filter, const Passerelle__Unit *unit);

#define UNIT_INDEX_KEY_MAX    96
#define UNIT_INDEX_CANDIDATES 5

/* The index sorted sets that could serve the filter, written into keys
 * (the catch-all "reservations:units" last). Returns how many. The caller
 * walks the smallest. */
size_t unit_filter_indexes(const unit_filter_t *filter,
                           char keys[UNIT_INDEX_CANDIDATES][UNIT_INDEX_KEY_MAX]);

/* The index keys a unit belongs to, as for unit_filter_indexes; "" for a
 * key the unit lacks. The order: all, territory, commune, stock,
 * convention state. */
void unit_index_keys(const Passerelle__Unit *unit,
                     char keys[UNIT_INDEX_CANDIDATES][UNIT_INDEX_KEY_MAX]);

/* The convention-state index key of a state. */
void unit_state_index_key(int state, char out[UNIT_INDEX_KEY_MAX]);

/* --- conventions ------------------------------------------------------- */

/* Validates an envisage request: unit given, level LOC1-3, intermediation
 * known, rent ceiling in (0, 100] if given, the date (default today).
 * INVALID_ARGUMENT naming the field. */
bool convention_envisage_validate(const Passerelle__ConventionEnvisageRequest *req, date_t today,
                                  date_t *envisaged_on, domain_error_t *err);

/* May a convention be envisaged on this unit? Only PRIVATE units without a
 * live convention: FAILED_PRECONDITION field "unit" otherwise, naming the
 * stock, or the live convention and its state. */
bool convention_may_envisage(const Passerelle__Unit *unit, domain_error_t *err);

typedef enum {
    STEP_SIGN = 0,
    STEP_IN_FORCE,
    STEP_END,
    STEP_ABANDON,
} convention_step_t;

/* "convention.sign" etc. */
const char *convention_step_request(convention_step_t step);
/* The event a step appends: "convention.signed" etc. */
const char *convention_step_event(convention_step_t step);

/* The transition table: the state a step leads to from `from`, or -1 if the
 * step is not allowed there. For STEP_END, terminated selects TERMINATED
 * rather than EXPIRED. */
int convention_transition(int from, convention_step_t step, bool terminated);

/* The state a step needs ("ENVISAGED" for sign and abandon...). */
int convention_step_needs(convention_step_t step);

/* The end date of a convention signed on that date. */
date_t convention_end_date(date_t signed_on, bool with_works);

/* A decided step, whose strings Passerelle__Convention fields may point to. */
typedef struct {
    int state;
    char date[DATE_LEN];
    char end_date[DATE_LEN]; /* sign only */
    const char *end_reason;  /* end only: "expired" or "terminated" */
} convention_step_result_t;

/* Decides a lifecycle step on conv (whose unit is unit) on the request's
 * date (default today) and reason (end only). Errors:
 *   INVALID_ARGUMENT    "date" unparsable, "reason" not expired/terminated;
 *   FAILED_PRECONDITION "id" the step is not allowed in the current state
 *                       (the message names it and the state needed);
 *                       "date" before the previous step's date, or an
 *                       expiry before the end date;
 *                       "energy_class" the unit's class is unknown or
 *                       worse than the rule allows on the signing date. */
bool convention_step_decide(const Passerelle__Convention *conv, const Passerelle__Unit *unit,
                            convention_step_t step, const Passerelle__ConventionStepRequest *req,
                            date_t today, const energy_rules_t *rules,
                            convention_step_result_t *out, domain_error_t *err);

/* Applies a decided step to conv: state and dates (pointing into result). */
void convention_step_apply(Passerelle__Convention *conv, convention_step_t step,
                           const convention_step_result_t *result);

#endif
