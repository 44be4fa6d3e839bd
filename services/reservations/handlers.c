/* Reservations request handlers: units and ANAH conventions.
 *
 * Every handler has the same shape: validate the request, read the records
 * it needs, let the domain rules (domain.c) decide, build the reply body,
 * and commit one transaction holding the records, their index entries and
 * the event. The transaction guards every record it rewrites at the version
 * that was read, so a concurrent writer makes the commit stale and the
 * server runs the handler again on fresh state: the rules live in C, the
 * race is still decided atomically by Redis.
 *
 * Records read from Redis are unpacked messages owned by the handler that
 * read them. To change one, a handler edits a shallow copy whose new string
 * fields point at its own buffers, and frees only the unpacked original. */
#include "handlers.h"
#include "bookings.h"
#include "programmes.h"
#include "proposals.h"
#include "records.h"

#include "log.h"
#include "txn.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ====================================================================== */
/* Units                                                                  */
/* ====================================================================== */

void handle_unit_register(void *ctx, const call_t *call, const ProtobufCMessage *request,
                          reply_t *reply)
{
    reservations_t *self = ctx;
    const Passerelle__UnitRegisterRequest *req = (const Passerelle__UnitRegisterRequest *)request;
    Passerelle__Unit unit = PASSERELLE__UNIT__INIT;
    domain_error_t err;
    if (!unit_validate(req, &unit, &err)) {
        reply_domain_error(reply, &err);
        return;
    }

    /* A known reference is a repeat (answer the unit, write nothing) or a
     * clash (another unit under the same reference). */
    char existing_id[ID_LEN];
    read_result_t found = unit_ref_read(self->store, unit.external_ref, existing_id, reply);
    if (found == READ_FAILED)
        return;
    if (found == READ_FOUND) {
        Passerelle__Unit *existing = NULL;
        uint64_t version = 0;
        found = unit_read(self->store, existing_id, &existing, &version, reply);
        if (found == READ_ABSENT)
            reply_error(reply, ST_INTERNAL, "external_ref",
                        "external_ref %s points to unit %s, which is missing", unit.external_ref,
                        existing_id);
        if (found != READ_FOUND)
            return;
        const char *differs = unit_registration_differs(existing, &unit);
        if (differs)
            reply_error(reply, ST_ALREADY_EXISTS, "external_ref",
                        "external_ref %s is already unit %s, registered with another %s",
                        unit.external_ref, existing_id, differs);
        else
            reply_set_body(reply, &existing->base);
        protobuf_c_message_free_unpacked(&existing->base, NULL);
        return;
    }

    /* A unit registered in a programme joins it as programme.attach_unit
     * would have it: the programme must exist and cover its commune. */
    if (!text_blank(unit.programme_id) && !programme_check_new_unit(self, &unit, reply))
        return;

    char id[ID_LEN], now[TIME_RFC3339_LEN], key[KEY_MAX], ref_key[KEY_MAX], subject[KEY_MAX];
    id_new('U', id);
    time_now_rfc3339(now);
    unit.id = id;
    unit.created_at = now;
    unit.updated_at = now;
    unit.has_version = true;
    unit.version = 1;
    unit.has_convention_state = true;
    unit.convention_state = PASSERELLE__CONVENTION_STATE__CONVENTION_NONE;

    record_key(key, "unit", id);
    record_key(ref_key, "unit-ref", unit.external_ref);
    subject_of(id, subject);

    txn_t *txn = txn_for(call);
    txn_put_message(txn, key, 1, &unit.base);
    /* Version 1 guards absence: of two concurrent registrations of one
     * reference, the second goes stale and, run again, finds the first. */
    txn_put(txn, ref_key, 1, id, strlen(id));
    char indexes[UNIT_INDEX_CANDIDATES][UNIT_INDEX_KEY_MAX];
    unit_index_keys(&unit, indexes);
    for (size_t i = 0; i < UNIT_INDEX_CANDIDATES; i++)
        if (indexes[i][0])
            txn_index_add(txn, indexes[i], id);
    if (!text_blank(unit.programme_id))
        programme_txn_attach(txn, unit.programme_id, id);
    txn_event(txn, RESERVATIONS_STREAM, RESERVATIONS_SOURCE, "unit.registered", subject,
              &unit.base);
    reply_set_body(reply, &unit.base);
    commit(self, call, txn, reply, "unit.registered", subject);
    txn_destroy(&txn);
}

void handle_unit_get(void *ctx, const call_t *call, const ProtobufCMessage *request, reply_t *reply)
{
    (void)call;
    reservations_t *self = ctx;
    const Passerelle__UnitGetRequest *req = (const Passerelle__UnitGetRequest *)request;
    Passerelle__Unit *unit = NULL;
    uint64_t version = 0;
    read_result_t found;
    if (!text_blank(req->id)) {
        found = record_get(self->store, &RECORD_UNIT, req->id, "id", (ProtobufCMessage **)&unit,
                           &version, reply)
                    ? READ_FOUND
                    : READ_FAILED;
    } else if (!text_blank(req->external_ref)) {
        found = unit_find(self->store, req->external_ref, &unit, &version, reply);
        if (found == READ_ABSENT)
            reply_error(reply, ST_NOT_FOUND, "external_ref", "no unit has external_ref %.64s",
                        req->external_ref);
    } else {
        reply_error(reply, ST_INVALID_ARGUMENT, "id", "id or external_ref is required");
        return;
    }
    if (found != READ_FOUND)
        return;
    reply_set_body(reply, &unit->base);
    protobuf_c_message_free_unpacked(&unit->base, NULL);
}

static bool unit_list_match(const ProtobufCMessage *msg, void *filter)
{
    return unit_filter_match(filter, (const Passerelle__Unit *)msg);
}

/* Walks the smallest index the filter names (records_list_page), keeping
 * the units that pass the other filters. A page costs O(members walked), at
 * worst the rest of that index: fine for the thousands of units of the
 * partnership; a combined filter used at scale would deserve its own
 * index. */
void handle_unit_list(void *ctx, const call_t *call, const ProtobufCMessage *request,
                      reply_t *reply)
{
    (void)call;
    reservations_t *self = ctx;
    const Passerelle__UnitListRequest *req = (const Passerelle__UnitListRequest *)request;
    unit_filter_t filter;
    domain_error_t err;
    if (!unit_filter_parse(req, &filter, &err)) {
        reply_domain_error(reply, &err);
        return;
    }
    char keys[UNIT_INDEX_CANDIDATES][UNIT_INDEX_KEY_MAX];
    const char *names[UNIT_INDEX_CANDIDATES];
    size_t n = unit_filter_indexes(&filter, keys), best = 0;
    for (size_t i = 0; i < n; i++)
        names[i] = keys[i];
    if (!records_smallest_index(self->store, names, n, &best, reply))
        return;
    listing_page_t page;
    if (!records_list_page(self->store, keys[best], &RECORD_UNIT, filter.after, filter.page_size,
                           unit_list_match, &filter, &page, reply))
        return;
    Passerelle__UnitList list = PASSERELLE__UNIT_LIST__INIT;
    list.units = (Passerelle__Unit **)page.items;
    list.n_units = page.count;
    list.next_page_token = listing_page_token(&page);
    reply_set_body(reply, &list.base);
    listing_page_free(&page);
}

/* ====================================================================== */
/* Conventions                                                            */
/* ====================================================================== */

/* The unit's index entry under its convention state moves with it. */
static void txn_move_state_index(txn_t *txn, const char *unit_id, int from, int to)
{
    char key[UNIT_INDEX_KEY_MAX];
    if (from == to)
        return;
    unit_state_index_key(from, key);
    txn_index_remove(txn, key, unit_id);
    unit_state_index_key(to, key);
    txn_index_add(txn, key, unit_id);
}

void handle_convention_envisage(void *ctx, const call_t *call, const ProtobufCMessage *request,
                                reply_t *reply)
{
    reservations_t *self = ctx;
    const Passerelle__ConventionEnvisageRequest *req =
        (const Passerelle__ConventionEnvisageRequest *)request;
    domain_error_t err;
    date_t envisaged_on;
    if (!convention_envisage_validate(req, date_today_paris(), &envisaged_on, &err)) {
        reply_domain_error(reply, &err);
        return;
    }
    Passerelle__Unit *unit = NULL;
    uint64_t unit_version = 0;
    read_result_t found = unit_find(self->store, req->unit, &unit, &unit_version, reply);
    if (found == READ_ABSENT)
        reply_error(reply, ST_NOT_FOUND, "unit", "unit %.64s not found", req->unit);
    if (found != READ_FOUND)
        return;
    if (!convention_may_envisage(unit, &err)) {
        reply_domain_error(reply, &err);
        protobuf_c_message_free_unpacked(&unit->base, NULL);
        return;
    }

    char id[ID_LEN], now[TIME_RFC3339_LEN], date[DATE_LEN];
    char conv_key[KEY_MAX], unit_key[KEY_MAX], subject[KEY_MAX];
    id_new('C', id);
    time_now_rfc3339(now);
    date_format(envisaged_on, date);

    Passerelle__Convention conv = PASSERELLE__CONVENTION__INIT;
    conv.id = id;
    conv.unit_id = unit->id;
    conv.has_level = true;
    conv.level = req->level;
    conv.has_with_works = true;
    conv.with_works = req->has_with_works && req->with_works;
    conv.has_intermediation = true;
    conv.intermediation = req->has_intermediation ? req->intermediation
                                                  : PASSERELLE__INTERMEDIATION__INTERMEDIATION_NONE;
    conv.has_rent_ceiling_eur_m2 = req->has_rent_ceiling_eur_m2;
    conv.rent_ceiling_eur_m2 = req->rent_ceiling_eur_m2;
    conv.has_state = true;
    conv.state = PASSERELLE__CONVENTION_STATE__CONVENTION_ENVISAGED;
    conv.envisaged_on = date;
    conv.created_at = now;
    conv.updated_at = now;
    conv.has_version = true;
    conv.version = 1;

    Passerelle__Unit changed = *unit;
    changed.convention_id = id;
    changed.has_convention_state = true;
    changed.convention_state = PASSERELLE__CONVENTION_STATE__CONVENTION_ENVISAGED;
    changed.has_convention_level = true;
    changed.convention_level = conv.level;
    changed.convention_end_date = NULL;
    changed.updated_at = now;
    changed.has_version = true;
    changed.version = unit_version + 1;

    record_key(conv_key, "convention", id);
    record_key(unit_key, "unit", unit->id);
    subject_of(unit->id, subject);

    txn_t *txn = txn_for(call);
    txn_put_message(txn, conv_key, 1, &conv.base);
    txn_put_message(txn, unit_key, changed.version, &changed.base);
    txn_move_state_index(txn, unit->id, unit->convention_state, changed.convention_state);
    conv.unit = &changed; /* replies and events carry the unit; records don't */
    txn_event(txn, RESERVATIONS_STREAM, RESERVATIONS_SOURCE, "convention.envisaged", subject,
              &conv.base);
    reply_set_body(reply, &conv.base);
    commit(self, call, txn, reply, "convention.envisaged", subject);
    txn_destroy(&txn);
    protobuf_c_message_free_unpacked(&unit->base, NULL);
}

/* Resolves a request naming a unit instead of a convention id: writes the
 * unit's latest convention id into id_out. False with the reply set if the
 * unit is unknown or has never had a convention. */
static bool convention_id_of_unit(reservations_t *self, const char *unit_ref, char id_out[ID_LEN],
                                  reply_t *reply)
{
    Passerelle__Unit *unit = NULL;
    uint64_t version = 0;
    read_result_t found = unit_find(self->store, unit_ref, &unit, &version, reply);
    if (found == READ_ABSENT)
        reply_error(reply, ST_NOT_FOUND, "unit", "unit '%.64s' not found", unit_ref);
    if (found != READ_FOUND)
        return false;
    bool has = !text_blank(unit->convention_id) && id_valid('C', unit->convention_id);
    if (has)
        snprintf(id_out, ID_LEN, "%s", unit->convention_id);
    else
        reply_error(reply, ST_NOT_FOUND, "unit", "unit %s has no convention", unit->id);
    protobuf_c_message_free_unpacked(&unit->base, NULL);
    return has;
}

/* Reads a convention named by a request's id (or, when unit_ref is given
 * instead, its unit's latest), and its unit. On success the caller frees
 * both. */
static bool convention_and_unit_read(reservations_t *self, const char *id, const char *unit_ref,
                                     Passerelle__Convention **conv_p, uint64_t *conv_version,
                                     Passerelle__Unit **unit_p, uint64_t *unit_version,
                                     reply_t *reply)
{
    *conv_p = NULL;
    *unit_p = NULL;
    char resolved[ID_LEN];
    if (!text_blank(id) && !text_blank(unit_ref)) {
        reply_error(reply, ST_INVALID_ARGUMENT, "unit", "give a convention id or a unit, not both");
        return false;
    }
    if (text_blank(id) && !text_blank(unit_ref)) {
        if (!convention_id_of_unit(self, unit_ref, resolved, reply))
            return false;
        id = resolved;
    }
    if (text_blank(id)) {
        reply_error(reply, ST_INVALID_ARGUMENT, "id",
                    "id is required (a convention id), or unit (its unit)");
        return false;
    }
    if (!record_get(self->store, &RECORD_CONVENTION, id, "id", (ProtobufCMessage **)conv_p,
                    conv_version, reply))
        return false;
    read_result_t found =
        text_blank((*conv_p)->unit_id)
            ? READ_ABSENT
            : unit_read(self->store, (*conv_p)->unit_id, unit_p, unit_version, reply);
    if (found == READ_ABSENT)
        reply_error(reply, ST_INTERNAL, "id", "the unit of convention %s is missing", id);
    if (found != READ_FOUND) {
        protobuf_c_message_free_unpacked(&(*conv_p)->base, NULL);
        *conv_p = NULL;
        return false;
    }
    return true;
}

/* The later steps of the lifecycle share everything but the rule. */
static void convention_step(reservations_t *self, const call_t *call,
                            const ProtobufCMessage *request, convention_step_t step, reply_t *reply)
{
    const Passerelle__ConventionStepRequest *req =
        (const Passerelle__ConventionStepRequest *)request;
    Passerelle__Convention *conv = NULL;
    Passerelle__Unit *unit = NULL;
    uint64_t conv_version = 0, unit_version = 0;
    if (!convention_and_unit_read(self, req->id, req->unit, &conv, &conv_version, &unit,
                                  &unit_version, reply))
        return;

    domain_error_t err;
    convention_step_result_t decided;
    if (!convention_step_decide(conv, unit, step, req, date_today_paris(), &self->energy_rules,
                                &decided, &err)) {
        reply_domain_error(reply, &err);
    } else if (step == STEP_END && !text_blank(unit->reservation_id)) {
        /* A reservation on a conventioned unit lives within its convention:
         * it is released first, explicitly, so progress and partners see it. */
        reply_error(reply, ST_FAILED_PRECONDITION, "id",
                    "unit %s has the active reservation %s; release it before ending convention %s",
                    unit->id, unit->reservation_id, conv->id);
    } else if (text_blank(unit->convention_id) || strcmp(unit->convention_id, conv->id) != 0) {
        /* A live convention is always its unit's latest; anything else is
         * a damaged store, not a request to honour. */
        reply_error(reply, ST_INTERNAL, "id", "unit %s does not point back to convention %s",
                    unit->id, conv->id);
    } else {
        char now[TIME_RFC3339_LEN], conv_key[KEY_MAX], unit_key[KEY_MAX], subject[KEY_MAX];
        time_now_rfc3339(now);

        Passerelle__Convention changed_conv = *conv;
        convention_step_apply(&changed_conv, step, &decided);
        changed_conv.updated_at = now;
        changed_conv.has_version = true;
        changed_conv.version = conv_version + 1;
        changed_conv.unit = NULL;

        Passerelle__Unit changed_unit = *unit;
        changed_unit.has_convention_state = true;
        changed_unit.convention_state = decided.state;
        changed_unit.has_convention_level = changed_conv.has_level;
        changed_unit.convention_level = changed_conv.level;
        changed_unit.convention_end_date = changed_conv.end_date;
        changed_unit.updated_at = now;
        changed_unit.has_version = true;
        changed_unit.version = unit_version + 1;

        record_key(conv_key, "convention", conv->id);
        record_key(unit_key, "unit", unit->id);
        subject_of(unit->id, subject);

        txn_t *txn = txn_for(call);
        txn_put_message(txn, conv_key, changed_conv.version, &changed_conv.base);
        txn_put_message(txn, unit_key, changed_unit.version, &changed_unit.base);
        txn_move_state_index(txn, unit->id, unit->convention_state, decided.state);
        changed_conv.unit = &changed_unit;
        txn_event(txn, RESERVATIONS_STREAM, RESERVATIONS_SOURCE, convention_step_event(step),
                  subject, &changed_conv.base);
        reply_set_body(reply, &changed_conv.base);
        commit(self, call, txn, reply, convention_step_event(step), subject);
        txn_destroy(&txn);
    }
    protobuf_c_message_free_unpacked(&conv->base, NULL);
    protobuf_c_message_free_unpacked(&unit->base, NULL);
}

void handle_convention_sign(void *ctx, const call_t *call, const ProtobufCMessage *request,
                            reply_t *reply)
{
    convention_step(ctx, call, request, STEP_SIGN, reply);
}

void handle_convention_in_force(void *ctx, const call_t *call, const ProtobufCMessage *request,
                                reply_t *reply)
{
    convention_step(ctx, call, request, STEP_IN_FORCE, reply);
}

void handle_convention_end(void *ctx, const call_t *call, const ProtobufCMessage *request,
                           reply_t *reply)
{
    convention_step(ctx, call, request, STEP_END, reply);
}

void handle_convention_abandon(void *ctx, const call_t *call, const ProtobufCMessage *request,
                               reply_t *reply)
{
    convention_step(ctx, call, request, STEP_ABANDON, reply);
}

void handle_convention_get(void *ctx, const call_t *call, const ProtobufCMessage *request,
                           reply_t *reply)
{
    (void)call;
    reservations_t *self = ctx;
    const Passerelle__ConventionGetRequest *req = (const Passerelle__ConventionGetRequest *)request;
    Passerelle__Convention *conv = NULL;
    Passerelle__Unit *unit = NULL;
    uint64_t conv_version = 0, unit_version = 0;
    if (!convention_and_unit_read(self, req->id, req->unit, &conv, &conv_version, &unit,
                                  &unit_version, reply))
        return;
    Passerelle__Convention filled = *conv;
    filled.unit = unit;
    reply_set_body(reply, &filled.base);
    protobuf_c_message_free_unpacked(&conv->base, NULL);
    protobuf_c_message_free_unpacked(&unit->base, NULL);
}

/* ====================================================================== */
/* Route table                                                            */
/* ====================================================================== */

const route_t reservations_routes[] = {
    {"unit.register", &passerelle__unit_register_request__descriptor, handle_unit_register, true},
    {"unit.get", &passerelle__unit_get_request__descriptor, handle_unit_get, false},
    {"unit.list", &passerelle__unit_list_request__descriptor, handle_unit_list, false},
    {"convention.envisage", &passerelle__convention_envisage_request__descriptor,
     handle_convention_envisage, true},
    {"convention.sign", &passerelle__convention_step_request__descriptor, handle_convention_sign,
     true},
    {"convention.in_force", &passerelle__convention_step_request__descriptor,
     handle_convention_in_force, true},
    {"convention.end", &passerelle__convention_step_request__descriptor, handle_convention_end,
     true},
    {"convention.abandon", &passerelle__convention_step_request__descriptor,
     handle_convention_abandon, true},
    {"convention.get", &passerelle__convention_get_request__descriptor, handle_convention_get,
     false},

    {"programme.create", &passerelle__programme_create_request__descriptor, handle_programme_create,
     true},
    {"programme.get", &passerelle__programme_get_request__descriptor, handle_programme_get, false},
    {"programme.list", &passerelle__programme_list_request__descriptor, handle_programme_list,
     false},
    {"programme.attach_unit", &passerelle__programme_attach_request__descriptor,
     handle_programme_attach_unit, true},
    {"objective.set", &passerelle__objective_set_request__descriptor, handle_objective_set, true},
    {"progress.get", &passerelle__progress_request__descriptor, handle_progress_get, false},

    {"reservation.create", &passerelle__reservation_create_request__descriptor,
     handle_reservation_create, true},
    {"reservation.release", &passerelle__reservation_step_request__descriptor,
     handle_reservation_release, true},
    {"reservation.cancel", &passerelle__reservation_step_request__descriptor,
     handle_reservation_cancel, true},
    {"reservation.vacancy", &passerelle__reservation_step_request__descriptor,
     handle_reservation_vacancy, true},
    {"reservation.get", &passerelle__reservation_get_request__descriptor, handle_reservation_get,
     false},
    {"reservation.list", &passerelle__reservation_list_request__descriptor, handle_reservation_list,
     false},

    {"proposal.record", &passerelle__proposal_record_request__descriptor, handle_proposal_record,
     true},
    {"attribution.decide", &passerelle__attribution_decide_request__descriptor,
     handle_attribution_decide, true},
    {"proposal.get", &passerelle__proposal_get_request__descriptor, handle_proposal_get, false},
    {"proposal.list", &passerelle__proposal_list_request__descriptor, handle_proposal_list, false},
};

const size_t reservations_route_count = sizeof reservations_routes / sizeof reservations_routes[0];
