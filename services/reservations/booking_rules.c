/* Reservation rules: validation, who may reserve for whom, when a unit may
 * be reserved, the lifecycle and the listing filters (booking_rules.h).
 *
 * Nothing here reads a clock, Redis or a socket: the handlers in bookings.c
 * pass today, the caller's party and the records they read, and commit what
 * these functions decide. */
#include "booking_rules.h"

#include "refdata.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#define AL       PASSERELLE__RESERVATAIRE__RESERVATAIRE_ACTION_LOGEMENT
#define STOCK    PASSERELLE__RESERVATION_MODE__MODE_STOCK
#define FLOW     PASSERELLE__RESERVATION_MODE__MODE_FLOW
#define ACTIVE   PASSERELLE__RESERVATION_STATE__RESERVATION_ACTIVE
#define RELEASED PASSERELLE__RESERVATION_STATE__RESERVATION_RELEASED
#define CANCELED PASSERELLE__RESERVATION_STATE__RESERVATION_CANCELLED

/* ====================================================================== */
/* Names                                                                  */
/* ====================================================================== */

const char *reservataire_name(int reservataire)
{
    static const char *const names[] = {"UNSPECIFIED", "ACTION_LOGEMENT", "STATE", "COMMUNE",
                                        "EPCI",        "LANDLORD"};
    if (reservataire < 0 || (size_t)reservataire >= sizeof names / sizeof names[0])
        return "UNKNOWN";
    return names[reservataire];
}

const char *reservation_mode_name(int mode)
{
    static const char *const names[] = {"UNSPECIFIED", "STOCK", "FLOW"};
    if (mode < 0 || (size_t)mode >= sizeof names / sizeof names[0])
        return "UNKNOWN";
    return names[mode];
}

const char *reservation_state_name(int state)
{
    static const char *const names[] = {"UNSPECIFIED", "ACTIVE", "RELEASED", "CANCELLED"};
    if (state < 0 || (size_t)state >= sizeof names / sizeof names[0])
        return "UNKNOWN";
    return names[state];
}

/* ====================================================================== */
/* Creation                                                               */
/* ====================================================================== */

bool booking_reservataire_allowed(party_t party, int reservataire, domain_error_t *err)
{
    if (reservataire == PASSERELLE__RESERVATAIRE__RESERVATAIRE_UNSPECIFIED)
        reservataire = AL;
    /* Action Logement holds its own rights; the other reservataires' are
     * recorded by the Métropole, which keeps the whole contingent. */
    if (party == PARTY_ACTION_LOGEMENT && reservataire != AL)
        return domain_fail(err, ST_PERMISSION_DENIED, "reservataire",
                           "Action Logement may only reserve for ACTION_LOGEMENT, not %s",
                           reservataire_name(reservataire));
    return true;
}

static bool validate_publics(const Passerelle__ReservationCreateRequest *req, domain_error_t *err)
{
    unsigned seen = 0;
    for (size_t i = 0; i < req->n_target_publics; i++) {
        int p = req->target_publics[i];
        if (p < PASSERELLE__PRIORITY_PUBLIC__PUBLIC_UNDER_30 ||
            p > PASSERELLE__PRIORITY_PUBLIC__PUBLIC_DISABILITY)
            return domain_fail(err, ST_INVALID_ARGUMENT, "target_publics",
                               "target_publics[%zu] = %d is not a priority public", i, p);
        if (seen & (1u << p))
            return domain_fail(err, ST_INVALID_ARGUMENT, "target_publics",
                               "target_publics names public %d twice", p);
        seen |= 1u << p;
    }
    return true;
}

/* STOCK: a unit, a period; nothing of FLOW's. */
static bool validate_stock(const Passerelle__ReservationCreateRequest *req, booking_request_t *out,
                           domain_error_t *err)
{
    if (text_blank(req->unit))
        return domain_fail(err, ST_INVALID_ARGUMENT, "unit",
                           "unit is required for a STOCK reservation (id or external reference)");
    if (!text_blank(req->programme))
        return domain_fail(err, ST_INVALID_ARGUMENT, "programme",
                           "programme is for FLOW reservations; a STOCK one takes the unit's");
    if (!text_blank(req->landlord))
        return domain_fail(err, ST_INVALID_ARGUMENT, "landlord",
                           "landlord is for FLOW reservations");
    if (!text_blank(req->territory))
        return domain_fail(err, ST_INVALID_ARGUMENT, "territory",
                           "territory is for FLOW reservations; a STOCK one takes the unit's");
    if (req->has_units && req->units != 1 && req->units != 0)
        return domain_fail(err, ST_INVALID_ARGUMENT, "units", "a STOCK reservation is of one unit");
    if (!out->has_end)
        return domain_fail(err, ST_INVALID_ARGUMENT, "end_date",
                           "end_date is required for a STOCK reservation");
    if (req->has_year && req->year != 0 && req->year != (unsigned)out->start.year)
        return domain_fail(
            err, ST_INVALID_ARGUMENT, "year",
            "year %u is not the year of start_date %s (a STOCK reservation counts in "
            "the year it starts)",
            req->year, out->start_text);
    out->unit = req->unit;
    out->year = (unsigned)out->start.year;
    out->units = 1;
    return true;
}

/* FLOW: a programme or a landlord (with its territory), a year, a number
 * of released units. */
static bool validate_flow(const Passerelle__ReservationCreateRequest *req, booking_request_t *out,
                          domain_error_t *err)
{
    if (!text_blank(req->unit))
        return domain_fail(err, ST_INVALID_ARGUMENT, "unit", "unit is for STOCK reservations");
    bool has_programme = !text_blank(req->programme), has_landlord = !text_blank(req->landlord);
    if (has_programme == has_landlord)
        return domain_fail(err, ST_INVALID_ARGUMENT, "programme",
                           "a FLOW reservation names a programme or a landlord, %s",
                           has_programme ? "not both" : "and none was given");
    if (has_programme) {
        if (!id_valid('P', req->programme))
            return domain_fail(err, ST_INVALID_ARGUMENT, "programme",
                               "programme '%.40s' is not a "
                               "programme id",
                               req->programme);
        if (!text_blank(req->territory))
            return domain_fail(err, ST_INVALID_ARGUMENT, "territory",
                               "territory is the programme's; give it only with a landlord");
        out->programme = req->programme;
    } else {
        if (strlen(req->landlord) > BOOKING_LANDLORD_MAX)
            return domain_fail(err, ST_INVALID_ARGUMENT, "landlord", "landlord is at most %d bytes",
                               BOOKING_LANDLORD_MAX);
        if (text_blank(req->territory))
            return domain_fail(err, ST_INVALID_ARGUMENT, "territory",
                               "territory is required for a FLOW reservation of a landlord");
        if (!refdata_is_territory(req->territory))
            return domain_fail(err, ST_INVALID_ARGUMENT, "territory",
                               "territory '%.16s' is not one of CT1..CT6", req->territory);
        for (size_t i = 0; i < 3; i++)
            out->territory[i] = (char)toupper((unsigned char)req->territory[i]);
        out->territory[3] = '\0';
        out->landlord = req->landlord;
    }
    if (!req->has_year || req->year == 0)
        return domain_fail(err, ST_INVALID_ARGUMENT, "year",
                           "year is required for a FLOW reservation");
    if (req->year < BOOKING_YEAR_MIN || req->year > BOOKING_YEAR_MAX)
        return domain_fail(err, ST_INVALID_ARGUMENT, "year", "year %u is not in %d-%d", req->year,
                           BOOKING_YEAR_MIN, BOOKING_YEAR_MAX);
    if (!req->has_units || req->units == 0)
        return domain_fail(err, ST_INVALID_ARGUMENT, "units",
                           "units (at least 1) is required for a FLOW reservation");
    if (req->units > BOOKING_FLOW_UNITS_MAX)
        return domain_fail(err, ST_INVALID_ARGUMENT, "units", "units is at most %d",
                           BOOKING_FLOW_UNITS_MAX);
    out->year = req->year;
    out->units = req->units;
    return true;
}

bool booking_create_validate(const Passerelle__ReservationCreateRequest *req, party_t party,
                             date_t today, booking_request_t *out, domain_error_t *err)
{
    memset(out, 0, sizeof *out);
    int reservataire = req->has_reservataire ? (int)req->reservataire : 0;
    if (reservataire < 0 || reservataire > PASSERELLE__RESERVATAIRE__RESERVATAIRE_LANDLORD)
        return domain_fail(err, ST_INVALID_ARGUMENT, "reservataire",
                           "reservataire %d is not a reservataire", reservataire);
    if (!booking_reservataire_allowed(party, reservataire, err))
        return false;
    out->reservataire = reservataire ? reservataire : AL;

    int mode = req->has_mode ? (int)req->mode : 0;
    if (mode != STOCK && mode != FLOW)
        return domain_fail(err, ST_INVALID_ARGUMENT, "mode", "mode must be STOCK or FLOW");
    out->mode = mode;
    if (!validate_publics(req, err))
        return false;

    /* The period: FLOW defaults to its year, STOCK starts today unless
     * told otherwise and must say when it ends. */
    bool has_start = !text_blank(req->start_date);
    out->has_end = !text_blank(req->end_date);
    if (!domain_date_or_today(req->start_date, "start_date", today, &out->start, err))
        return false;
    if (out->has_end && !domain_date_required(req->end_date, "end_date", &out->end, err))
        return false;
    if (mode == FLOW && req->has_year && req->year >= BOOKING_YEAR_MIN &&
        req->year <= BOOKING_YEAR_MAX) {
        if (!has_start)
            out->start = (date_t){(int)req->year, 1, 1};
        if (!out->has_end) {
            out->end = (date_t){(int)req->year, 12, 31};
            out->has_end = true;
        }
    }
    date_format(out->start, out->start_text);
    if (out->has_end) {
        date_format(out->end, out->end_text);
        if (date_compare(out->end, out->start) <= 0)
            return domain_fail(err, ST_INVALID_ARGUMENT, "end_date",
                               "end_date %s is not after start_date %s", out->end_text,
                               out->start_text);
    }
    return mode == STOCK ? validate_stock(req, out, err) : validate_flow(req, out, err);
}

bool booking_unit_available(const booking_request_t *request, const Passerelle__Unit *unit,
                            const Passerelle__Convention *conv,
                            const Passerelle__Reservation *holder, domain_error_t *err)
{
    if (holder && holder->state == ACTIVE)
        return domain_fail(err, ST_CONFLICT, "unit",
                           "unit %s is already reserved: %s holds reservation %s until %s",
                           unit->id, reservataire_name(holder->reservataire), holder->id,
                           holder->end_date ? holder->end_date : "?");
    if (unit->stock != PASSERELLE__STOCK__STOCK_PRIVATE)
        return true;
    /* A private unit is open to reservation only through its ANAH
     * convention, and only for as long as the convention binds it. */
    if (!conv || text_blank(unit->convention_id))
        return domain_fail(
            err, ST_FAILED_PRECONDITION, "unit",
            "private unit %s has no ANAH convention; it may be reserved only while its "
            "convention is SIGNED or IN_FORCE",
            unit->id);
    if (conv->state != PASSERELLE__CONVENTION_STATE__CONVENTION_SIGNED &&
        conv->state != PASSERELLE__CONVENTION_STATE__CONVENTION_IN_FORCE)
        return domain_fail(
            err, ST_FAILED_PRECONDITION, "unit",
            "convention %s of unit %s is %s; a private unit may be reserved only while "
            "its convention is SIGNED or IN_FORCE",
            conv->id, unit->id, convention_state_name(conv->state));
    date_t conv_end;
    if (!text_blank(conv->end_date) && date_parse(conv->end_date, &conv_end) &&
        date_compare(request->end, conv_end) > 0)
        return domain_fail(err, ST_FAILED_PRECONDITION, "end_date",
                           "end_date %s is beyond %s, the end of convention %s", request->end_text,
                           conv->end_date, conv->id);
    return true;
}

void booking_build(const booking_request_t *request,
                   const Passerelle__ReservationCreateRequest *req, const Passerelle__Unit *unit,
                   const Passerelle__Convention *conv, const char *programme_territory,
                   Passerelle__PriorityPublic publics[BOOKING_PUBLICS_MAX],
                   Passerelle__Reservation *r)
{
    r->has_reservataire = true;
    r->reservataire = request->reservataire;
    r->has_mode = true;
    r->mode = request->mode;
    r->has_year = true;
    r->year = request->year;
    r->has_units = true;
    r->units = request->units;
    r->start_date = (char *)request->start_text;
    r->end_date = request->has_end ? (char *)request->end_text : NULL;
    r->has_state = true;
    r->state = ACTIVE;
    r->has_attributed = true;
    r->attributed = 0;
    size_t n =
        req->n_target_publics < BOOKING_PUBLICS_MAX ? req->n_target_publics : BOOKING_PUBLICS_MAX;
    for (size_t i = 0; i < n; i++)
        publics[i] = req->target_publics[i];
    r->target_publics = n ? publics : NULL;
    r->n_target_publics = n;

    if (request->mode == STOCK && unit) {
        r->unit_id = unit->id;
        r->programme_id = text_blank(unit->programme_id) ? NULL : unit->programme_id;
        r->territory = unit->territory;
        r->has_in_qpv = true;
        r->in_qpv = unit->has_in_qpv && unit->in_qpv;
        if (unit->has_financing &&
            unit->financing != PASSERELLE__FINANCING__FINANCING_UNSPECIFIED) {
            r->has_financing = true;
            r->financing = unit->financing;
        }
        if (unit->stock == PASSERELLE__STOCK__STOCK_PRIVATE && conv && conv->has_level) {
            r->has_level = true;
            r->level = conv->level;
        }
        r->has_vacancy = true;
        r->vacancy = 1;
    } else if (request->programme) {
        r->programme_id = (char *)request->programme;
        r->territory = (char *)programme_territory;
    } else {
        r->landlord = (char *)request->landlord;
        r->territory = (char *)request->territory;
    }
}

bool booking_programme_covers(const Passerelle__Programme *programme, unsigned year,
                              domain_error_t *err)
{
    date_t start, end;
    bool has_start =
        !text_blank(programme->start_date) && date_parse(programme->start_date, &start);
    bool has_end = !text_blank(programme->end_date) && date_parse(programme->end_date, &end);
    if ((has_start && (int)year < start.year) || (has_end && (int)year > end.year))
        return domain_fail(err, ST_FAILED_PRECONDITION, "year",
                           "year %u is outside programme %s, which runs from %s to %s", year,
                           programme->id ? programme->id : "?",
                           has_start ? programme->start_date : "?",
                           has_end ? programme->end_date : "?");
    return true;
}

/* ====================================================================== */
/* Lifecycle                                                              */
/* ====================================================================== */

const char *booking_step_request(booking_step_t step)
{
    switch (step) {
    case BOOKING_RELEASE:
        return "reservation.release";
    case BOOKING_CANCEL:
        return "reservation.cancel";
    case BOOKING_VACANCY:
        return "reservation.vacancy";
    }
    return "reservation.unknown";
}

const char *booking_step_event(booking_step_t step)
{
    switch (step) {
    case BOOKING_RELEASE:
        return "reservation.released";
    case BOOKING_CANCEL:
        return "reservation.cancelled";
    case BOOKING_VACANCY:
        return "reservation.vacancy_opened";
    }
    return "reservation.unknown";
}

bool booking_step_decide(const Passerelle__Reservation *r, booking_step_t step,
                         const Passerelle__ReservationStepRequest *req, party_t party, date_t today,
                         booking_step_result_t *out, domain_error_t *err)
{
    memset(out, 0, sizeof *out);
    if (party == PARTY_ACTION_LOGEMENT && r->reservataire != AL)
        return domain_fail(err, ST_PERMISSION_DENIED, "reservataire",
                           "reservation %s is held by %s; Action Logement may only change its own",
                           r->id, reservataire_name(r->reservataire));
    if (r->state != ACTIVE)
        return domain_fail(err, ST_FAILED_PRECONDITION, "id",
                           "reservation %s is %s; %s needs ACTIVE", r->id,
                           reservation_state_name(r->state), booking_step_request(step));
    if (step == BOOKING_VACANCY && r->mode != STOCK)
        return domain_fail(err, ST_FAILED_PRECONDITION, "id",
                           "reservation %s is %s; reservation.vacancy needs a STOCK reservation",
                           r->id, reservation_mode_name(r->mode));
    date_t on = today;
    if (!domain_date_or_today(req->date, "date", today, &on, err))
        return false;
    if (req->reason && strlen(req->reason) > BOOKING_REASON_MAX)
        return domain_fail(err, ST_INVALID_ARGUMENT, "reason", "reason is at most %d bytes",
                           BOOKING_REASON_MAX);
    /* A right cannot return before it began; a reservation recorded in
     * error can be cancelled whatever its dates. */
    date_t start;
    if (step == BOOKING_RELEASE && !text_blank(r->start_date) &&
        date_parse(r->start_date, &start) && date_compare(on, start) < 0)
        return domain_fail(err, ST_FAILED_PRECONDITION, "date",
                           "date %04d-%02d-%02d is before %s, the start of reservation %s", on.year,
                           on.month, on.day, r->start_date, r->id);
    date_format(on, out->date);
    out->reason = text_blank(req->reason) ? NULL : req->reason;
    out->state = step == BOOKING_RELEASE ? RELEASED : step == BOOKING_CANCEL ? CANCELED : ACTIVE;
    return true;
}

void booking_step_apply(Passerelle__Reservation *r, booking_step_t step,
                        const booking_step_result_t *result)
{
    r->has_state = true;
    r->state = result->state;
    if (step == BOOKING_VACANCY) {
        r->vacancy = (r->has_vacancy && r->vacancy > 0 ? r->vacancy : 1) + 1;
        r->has_vacancy = true;
        r->has_attributed = true;
        r->attributed = 0;
        return;
    }
    r->ended_on = (char *)result->date;
    r->end_reason = (char *)result->reason;
}

/* ====================================================================== */
/* Listing                                                                */
/* ====================================================================== */

bool booking_filter_parse(const Passerelle__ReservationListRequest *req, booking_filter_t *filter,
                          domain_error_t *err)
{
    memset(filter, 0, sizeof *filter);
    if (!text_blank(req->unit)) {
        if (id_valid('U', req->unit))
            snprintf(filter->unit_id, sizeof filter->unit_id, "%s", req->unit);
        else if (!unit_external_ref_valid(req->unit))
            return domain_fail(err, ST_INVALID_ARGUMENT, "unit",
                               "unit '%.40s' is neither a unit id nor an external reference",
                               req->unit);
        filter->unit = req->unit;
    }
    if (!text_blank(req->programme)) {
        if (!id_valid('P', req->programme))
            return domain_fail(err, ST_INVALID_ARGUMENT, "programme",
                               "programme '%.40s' is not a programme id", req->programme);
        snprintf(filter->programme, sizeof filter->programme, "%s", req->programme);
    }
    if (req->has_reservataire && req->reservataire != 0) {
        if (req->reservataire < AL ||
            req->reservataire > PASSERELLE__RESERVATAIRE__RESERVATAIRE_LANDLORD)
            return domain_fail(err, ST_INVALID_ARGUMENT, "reservataire",
                               "reservataire %d is not a reservataire", req->reservataire);
        filter->reservataire = req->reservataire;
    }
    if (req->has_mode && req->mode != 0) {
        if (req->mode != STOCK && req->mode != FLOW)
            return domain_fail(err, ST_INVALID_ARGUMENT, "mode", "mode must be STOCK or FLOW");
        filter->mode = req->mode;
    }
    if (req->has_state && req->state != 0) {
        if (req->state < ACTIVE || req->state > CANCELED)
            return domain_fail(err, ST_INVALID_ARGUMENT, "state",
                               "state must be ACTIVE, RELEASED or CANCELLED");
        filter->state = req->state;
    }
    if (req->has_year && req->year != 0) {
        if (req->year < BOOKING_YEAR_MIN || req->year > BOOKING_YEAR_MAX)
            return domain_fail(err, ST_INVALID_ARGUMENT, "year", "year %u is not in %d-%d",
                               req->year, BOOKING_YEAR_MIN, BOOKING_YEAR_MAX);
        filter->year = req->year;
    }
    if (!text_blank(req->territory)) {
        if (!refdata_is_territory(req->territory))
            return domain_fail(err, ST_INVALID_ARGUMENT, "territory",
                               "territory '%.16s' is not one of CT1..CT6", req->territory);
        for (size_t i = 0; i < 3; i++)
            filter->territory[i] = (char)toupper((unsigned char)req->territory[i]);
    }
    return domain_page_parse(req->has_page_size, req->page_size, req->page_token, 'R',
                             BOOKING_LIST_PAGE_DEF, BOOKING_LIST_PAGE_MAX, &filter->page_size,
                             filter->after, err);
}

bool booking_filter_match(const booking_filter_t *filter, const Passerelle__Reservation *r)
{
    if (filter->unit_id[0] && !text_same(filter->unit_id, r->unit_id))
        return false;
    if (filter->programme[0] && !text_same(filter->programme, r->programme_id))
        return false;
    if (filter->reservataire && filter->reservataire != (int)r->reservataire)
        return false;
    if (filter->mode && filter->mode != (int)r->mode)
        return false;
    if (filter->state && filter->state != (int)r->state)
        return false;
    if (filter->year && filter->year != r->year)
        return false;
    if (filter->territory[0] && !text_same(filter->territory, r->territory))
        return false;
    return true;
}

#define INDEX_ALL "reservations:reservations"

void booking_state_index_key(int state, char out[BOOKING_INDEX_KEY_MAX])
{
    snprintf(out, BOOKING_INDEX_KEY_MAX, INDEX_ALL ":state:%s", reservation_state_name(state));
}

void booking_index_keys(const Passerelle__Reservation *r,
                        char keys[BOOKING_INDEX_CANDIDATES][BOOKING_INDEX_KEY_MAX])
{
    for (size_t i = 0; i < BOOKING_INDEX_CANDIDATES; i++)
        keys[i][0] = '\0';
    snprintf(keys[0], BOOKING_INDEX_KEY_MAX, INDEX_ALL);
    if (!text_blank(r->unit_id))
        snprintf(keys[1], BOOKING_INDEX_KEY_MAX, INDEX_ALL ":unit:%.40s", r->unit_id);
    if (!text_blank(r->programme_id))
        snprintf(keys[2], BOOKING_INDEX_KEY_MAX, INDEX_ALL ":programme:%.40s", r->programme_id);
    if (!text_blank(r->territory))
        snprintf(keys[3], BOOKING_INDEX_KEY_MAX, INDEX_ALL ":territory:%.8s", r->territory);
    booking_state_index_key(r->state, keys[4]);
    snprintf(keys[5], BOOKING_INDEX_KEY_MAX, INDEX_ALL ":year:%u", r->year);
    snprintf(keys[6], BOOKING_INDEX_KEY_MAX, INDEX_ALL ":reservataire:%s",
             reservataire_name(r->reservataire));
    snprintf(keys[7], BOOKING_INDEX_KEY_MAX, INDEX_ALL ":mode:%s", reservation_mode_name(r->mode));
}

size_t booking_filter_indexes(const booking_filter_t *filter,
                              char keys[BOOKING_INDEX_CANDIDATES][BOOKING_INDEX_KEY_MAX])
{
    size_t n = 0;
    if (filter->unit_id[0])
        snprintf(keys[n++], BOOKING_INDEX_KEY_MAX, INDEX_ALL ":unit:%s", filter->unit_id);
    if (filter->programme[0])
        snprintf(keys[n++], BOOKING_INDEX_KEY_MAX, INDEX_ALL ":programme:%s", filter->programme);
    if (filter->territory[0])
        snprintf(keys[n++], BOOKING_INDEX_KEY_MAX, INDEX_ALL ":territory:%s", filter->territory);
    if (filter->state)
        booking_state_index_key(filter->state, keys[n++]);
    if (filter->year)
        snprintf(keys[n++], BOOKING_INDEX_KEY_MAX, INDEX_ALL ":year:%u", filter->year);
    if (filter->reservataire)
        snprintf(keys[n++], BOOKING_INDEX_KEY_MAX, INDEX_ALL ":reservataire:%s",
                 reservataire_name(filter->reservataire));
    if (filter->mode)
        snprintf(keys[n++], BOOKING_INDEX_KEY_MAX, INDEX_ALL ":mode:%s",
                 reservation_mode_name(filter->mode));
    snprintf(keys[n++], BOOKING_INDEX_KEY_MAX, INDEX_ALL);
    return n;
}
