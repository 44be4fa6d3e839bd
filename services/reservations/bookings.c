/* Reservations (droits de réservation): STOCK reservations of one unit
 * for a period, FLOW reservations of a number of released units of a
 * programme or a landlord in a year; ACTIVE -> RELEASED | CANCELLED, and
 * the vacancies of a STOCK unit that proposals are made for.
 *
 * The handlers follow handlers.c: validate, read, decide with the pure
 * rules (booking_rules.c), build the reply, and commit one transaction with
 * the records, their index entries, the progress counters and one event.
 *
 * One active STOCK reservation per unit is kept by the unit record itself:
 * it names its active reservation (Unit.reservation_id), and creating one
 * rewrites the unit at its version + 1, guarded. Of concurrent attempts on a
 * unit, the first commit wins; the others go stale, are run again by the
 * server, find the winner in the unit, and answer CONFLICT naming it.
 *
 * Keys: see records.h. */
#include "bookings.h"
#include "booking_rules.h"
#include "progress.h"
#include "records.h"

#include "log.h"
#include "txn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STOCK  PASSERELLE__RESERVATION_MODE__MODE_STOCK
#define ACTIVE PASSERELLE__RESERVATION_STATE__RESERVATION_ACTIVE

/* ====================================================================== */
/* Records                                                                */
/* ====================================================================== */

void reservation_subject(const Passerelle__Reservation *r, char out[KEY_MAX])
{
    if (r->mode == STOCK && !text_blank(r->unit_id))
        subject_of(r->unit_id, out);
    else
        snprintf(out, KEY_MAX, "reservations/%s", r->id ? r->id : "");
}

/* ====================================================================== */
/* reservation.create                                                     */
/* ====================================================================== */

/* Everything create reads, owned here and freed by create_reads_free. */
typedef struct {
    Passerelle__Unit *unit;
    uint64_t unit_version;
    /* The unit's convention: read (conv_read, owned), or as the unit
     * carries it (conv_view, pointing into unit). */
    Passerelle__Convention *conv;
    Passerelle__Convention *conv_read;
    Passerelle__Convention conv_view;
    Passerelle__Reservation *holder;
    Passerelle__Programme *programme;
    uint64_t programme_version;
} create_reads_t;

static void create_reads_free(create_reads_t *reads)
{
    if (reads->unit)
        protobuf_c_message_free_unpacked(&reads->unit->base, NULL);
    if (reads->conv_read)
        protobuf_c_message_free_unpacked(&reads->conv_read->base, NULL);
    if (reads->holder)
        protobuf_c_message_free_unpacked(&reads->holder->base, NULL);
    if (reads->programme)
        protobuf_c_message_free_unpacked(&reads->programme->base, NULL);
}

/* STOCK: the unit, its latest convention (private units), and the
 * reservation it names as active, if any. False with the reply set.
 *
 * What a reservation checks of the convention (state, end date, level)
 * the unit carries, rewritten with it at every step of the convention
 * (the unit's version therefore moves with the convention's, and guards
 * both): read from there, that saves the service a dependent read, a
 * round trip per batch. A unit written before it carried them has its
 * convention read. */
static bool create_read_stock(reservations_t *self, const booking_request_t *request,
                              create_reads_t *reads, reply_t *reply)
{
    read_result_t found =
        unit_find(self->store, request->unit, &reads->unit, &reads->unit_version, reply);
    if (found == READ_ABSENT)
        reply_error(reply, ST_NOT_FOUND, "unit", "unit '%.64s' not found", request->unit);
    if (found != READ_FOUND)
        return false;
    const Passerelle__Unit *unit = reads->unit;
    uint64_t version = 0;
    if (unit->stock == PASSERELLE__STOCK__STOCK_PRIVATE && id_valid('C', unit->convention_id)) {
        if (unit->has_convention_level) {
            Passerelle__Convention *view = &reads->conv_view;
            passerelle__convention__init(view);
            view->id = unit->convention_id;
            view->unit_id = unit->id;
            view->has_state = unit->has_convention_state;
            view->state = unit->convention_state;
            view->has_level = true;
            view->level = unit->convention_level;
            view->end_date = unit->convention_end_date;
            reads->conv = view;
        } else {
            found = convention_read(self->store, unit->convention_id, &reads->conv_read, &version,
                                    reply);
            if (found == READ_FAILED)
                return false;
            reads->conv = reads->conv_read;
        }
    }
    if (id_valid('R', unit->reservation_id)) {
        found =
            reservation_read(self->store, unit->reservation_id, &reads->holder, &version, reply);
        if (found == READ_FAILED)
            return false;
    }
    return true;
}

static bool create_read_programme(reservations_t *self, const booking_request_t *request,
                                  create_reads_t *reads, reply_t *reply)
{
    if (!record_get(self->store, &RECORD_PROGRAMME, request->programme, "programme",
                    (ProtobufCMessage **)&reads->programme, &reads->programme_version, reply))
        return false;
    domain_error_t err;
    if (!booking_programme_covers(reads->programme, request->year, &err)) {
        reply_domain_error(reply, &err);
        return false;
    }
    return true;
}

void handle_reservation_create(void *ctx, const call_t *call, const ProtobufCMessage *request,
                               reply_t *reply)
{
    reservations_t *self = ctx;
    const Passerelle__ReservationCreateRequest *req =
        (const Passerelle__ReservationCreateRequest *)request;
    booking_request_t br;
    domain_error_t err;
    if (!booking_create_validate(req, caller_party(call), date_today_paris(), &br, &err)) {
        reply_domain_error(reply, &err);
        return;
    }

    create_reads_t reads = {0};
    bool ok = br.mode == STOCK ? create_read_stock(self, &br, &reads, reply)
              : br.programme   ? create_read_programme(self, &br, &reads, reply)
                               : true;
    if (ok && br.mode == STOCK &&
        !booking_unit_available(&br, reads.unit, reads.conv, reads.holder, &err)) {
        reply_domain_error(reply, &err);
        ok = false;
    }
    if (!ok) {
        create_reads_free(&reads);
        return;
    }

    char id[ID_LEN], now[TIME_RFC3339_LEN], key[KEY_MAX], unit_key[KEY_MAX], subject[KEY_MAX];
    id_new('R', id);
    time_now_rfc3339(now);
    Passerelle__PriorityPublic publics[BOOKING_PUBLICS_MAX];
    Passerelle__Reservation r = PASSERELLE__RESERVATION__INIT;
    booking_build(&br, req, reads.unit, reads.conv,
                  reads.programme ? reads.programme->territory : NULL, publics, &r);
    r.id = id;
    r.created_at = now;
    r.updated_at = now;
    r.has_version = true;
    r.version = 1;
    record_key(key, "reservation", id);
    reservation_subject(&r, subject);

    txn_t *txn = txn_for(call);
    txn_put_message(txn, key, 1, &r.base);
    char indexes[BOOKING_INDEX_CANDIDATES][BOOKING_INDEX_KEY_MAX];
    booking_index_keys(&r, indexes);
    for (size_t i = 0; i < BOOKING_INDEX_CANDIDATES; i++)
        if (indexes[i][0])
            txn_index_add(txn, indexes[i], id);
    progress_count(txn, &r, +1);

    Passerelle__Unit changed_unit;
    if (br.mode == STOCK) {
        /* The guard that decides races: the unit at the version read. */
        changed_unit = *reads.unit;
        changed_unit.reservation_id = id;
        changed_unit.updated_at = now;
        changed_unit.has_version = true;
        changed_unit.version = reads.unit_version + 1;
        record_key(unit_key, "unit", reads.unit->id);
        txn_put_message(txn, unit_key, changed_unit.version, &changed_unit.base);
        r.unit = &changed_unit; /* replies and events carry the unit; records don't */
    } else if (reads.programme) {
        /* A programme rewritten meanwhile (its period) is read again. */
        record_key(unit_key, "programme", br.programme);
        txn_guard(txn, unit_key, reads.programme_version);
    }
    txn_event(txn, RESERVATIONS_STREAM, RESERVATIONS_SOURCE, "reservation.created", subject,
              &r.base);
    reply_set_body(reply, &r.base);
    commit(self, call, txn, reply, "reservation.created", subject);
    txn_destroy(&txn);
    create_reads_free(&reads);
}

/* ====================================================================== */
/* Finding a reservation: by id, or a unit's active one                   */
/* ====================================================================== */

/* Resolves id or unit into the reservation (*r_p, caller frees) at
 * *version. False with the reply set. */
static bool reservation_find(reservations_t *self, const char *id, const char *unit_ref,
                             Passerelle__Reservation **r_p, uint64_t *version, reply_t *reply)
{
    char unit_reservation[ID_LEN];
    *r_p = NULL;
    if (text_blank(id) && !text_blank(unit_ref)) {
        Passerelle__Unit *unit = NULL;
        uint64_t unit_version = 0;
        read_result_t found = unit_find(self->store, unit_ref, &unit, &unit_version, reply);
        if (found == READ_ABSENT)
            reply_error(reply, ST_NOT_FOUND, "unit", "unit '%.64s' not found", unit_ref);
        if (found != READ_FOUND)
            return false;
        bool has = id_valid('R', unit->reservation_id);
        if (has)
            snprintf(unit_reservation, sizeof unit_reservation, "%s", unit->reservation_id);
        else
            reply_error(reply, ST_NOT_FOUND, "unit", "unit %s has no active reservation", unit->id);
        protobuf_c_message_free_unpacked(&unit->base, NULL);
        if (!has)
            return false;
        id = unit_reservation;
    } else if (text_blank(id)) {
        reply_error(reply, ST_INVALID_ARGUMENT, "id",
                    "id is required (a reservation id), or unit (its active reservation)");
        return false;
    }
    return record_get(self->store, &RECORD_RESERVATION, id, "id", (ProtobufCMessage **)r_p, version,
                      reply);
}

/* ====================================================================== */
/* Lifecycle: release, cancel, vacancy                                    */
/* ====================================================================== */

static void reservation_step(reservations_t *self, const call_t *call,
                             const ProtobufCMessage *request, booking_step_t step, reply_t *reply)
{
    const Passerelle__ReservationStepRequest *req =
        (const Passerelle__ReservationStepRequest *)request;
    Passerelle__Reservation *r = NULL;
    uint64_t version = 0;
    if (!reservation_find(self, req->id, req->unit, &r, &version, reply))
        return;
    domain_error_t err;
    booking_step_result_t decided;
    if (!booking_step_decide(r, step, req, caller_party(call), date_today_paris(), &decided,
                             &err)) {
        reply_domain_error(reply, &err);
        protobuf_c_message_free_unpacked(&r->base, NULL);
        return;
    }

    /* A STOCK reservation's unit travels with its events; it is rewritten
     * when the right ends, so that the unit is free to reserve again. */
    Passerelle__Unit *unit = NULL;
    uint64_t unit_version = 0;
    if (r->mode == STOCK && id_valid('U', r->unit_id)) {
        read_result_t found = unit_read(self->store, r->unit_id, &unit, &unit_version, reply);
        if (found == READ_ABSENT)
            reply_error(reply, ST_INTERNAL, "id", "the unit of reservation %s is missing", r->id);
        if (found != READ_FOUND) {
            protobuf_c_message_free_unpacked(&r->base, NULL);
            return;
        }
    }

    char now[TIME_RFC3339_LEN], key[KEY_MAX], unit_key[KEY_MAX], subject[KEY_MAX];
    time_now_rfc3339(now);
    Passerelle__Reservation changed = *r;
    booking_step_apply(&changed, step, &decided);
    changed.updated_at = now;
    changed.has_version = true;
    changed.version = version + 1;
    changed.unit = NULL;
    record_key(key, "reservation", r->id);
    reservation_subject(r, subject);

    txn_t *txn = txn_for(call);
    txn_put_message(txn, key, changed.version, &changed.base);
    if (changed.state != r->state) {
        char index[BOOKING_INDEX_KEY_MAX];
        booking_state_index_key(r->state, index);
        txn_index_remove(txn, index, r->id);
        booking_state_index_key(changed.state, index);
        txn_index_add(txn, index, r->id);
    }
    if (step == BOOKING_CANCEL)
        progress_count(txn, r, -1);
    Passerelle__Unit changed_unit;
    if (unit) {
        changed_unit = *unit;
        if (step != BOOKING_VACANCY && unit->reservation_id &&
            strcmp(unit->reservation_id, r->id) == 0) {
            changed_unit.reservation_id = NULL;
            changed_unit.updated_at = now;
            changed_unit.has_version = true;
            changed_unit.version = unit_version + 1;
            record_key(unit_key, "unit", unit->id);
            txn_put_message(txn, unit_key, changed_unit.version, &changed_unit.base);
        }
        changed.unit = &changed_unit;
    }
    txn_event(txn, RESERVATIONS_STREAM, RESERVATIONS_SOURCE, booking_step_event(step), subject,
              &changed.base);
    reply_set_body(reply, &changed.base);
    commit(self, call, txn, reply, booking_step_event(step), subject);
    txn_destroy(&txn);
    if (unit)
        protobuf_c_message_free_unpacked(&unit->base, NULL);
    protobuf_c_message_free_unpacked(&r->base, NULL);
}

void handle_reservation_release(void *ctx, const call_t *call, const ProtobufCMessage *request,
                                reply_t *reply)
{
    reservation_step(ctx, call, request, BOOKING_RELEASE, reply);
}

void handle_reservation_cancel(void *ctx, const call_t *call, const ProtobufCMessage *request,
                               reply_t *reply)
{
    reservation_step(ctx, call, request, BOOKING_CANCEL, reply);
}

void handle_reservation_vacancy(void *ctx, const call_t *call, const ProtobufCMessage *request,
                                reply_t *reply)
{
    reservation_step(ctx, call, request, BOOKING_VACANCY, reply);
}

/* ====================================================================== */
/* Reading                                                                */
/* ====================================================================== */

void handle_reservation_get(void *ctx, const call_t *call, const ProtobufCMessage *request,
                            reply_t *reply)
{
    (void)call;
    reservations_t *self = ctx;
    const Passerelle__ReservationGetRequest *req =
        (const Passerelle__ReservationGetRequest *)request;
    Passerelle__Reservation *r = NULL;
    uint64_t version = 0;
    if (!reservation_find(self, req->id, req->unit, &r, &version, reply))
        return;
    Passerelle__Unit *unit = NULL;
    if (r->mode == STOCK && id_valid('U', r->unit_id)) {
        uint64_t unit_version = 0;
        if (unit_read(self->store, r->unit_id, &unit, &unit_version, reply) == READ_FAILED) {
            protobuf_c_message_free_unpacked(&r->base, NULL);
            return;
        }
    }
    Passerelle__Reservation filled = *r;
    filled.unit = unit;
    reply_set_body(reply, &filled.base);
    if (unit)
        protobuf_c_message_free_unpacked(&unit->base, NULL);
    protobuf_c_message_free_unpacked(&r->base, NULL);
}

static bool reservation_list_match(const ProtobufCMessage *msg, void *filter)
{
    return booking_filter_match(filter, (const Passerelle__Reservation *)msg);
}

/* Walks the smallest index the filter names in id order from the page
 * token, reading each member's record and keeping those that pass every
 * filter.
 *
 * Cost: n ZCARDs to choose, one ZRANGEBYLEX per batch, one record read per
 * member walked. Members the other filters reject are walked too, so a page
 * costs O(members walked), at worst the rest of the smallest named index;
 * each index holds every reservation ever made under its value (released
 * and cancelled ones too), which is thousands a year for the partnership.
 * The replies do not carry the units: reservation.get does. */
void handle_reservation_list(void *ctx, const call_t *call, const ProtobufCMessage *request,
                             reply_t *reply)
{
    (void)call;
    reservations_t *self = ctx;
    const Passerelle__ReservationListRequest *req =
        (const Passerelle__ReservationListRequest *)request;
    booking_filter_t filter;
    domain_error_t err;
    if (!booking_filter_parse(req, &filter, &err)) {
        reply_domain_error(reply, &err);
        return;
    }
    if (filter.unit && !filter.unit_id[0]) {
        read_result_t found = unit_ref_read(self->store, filter.unit, filter.unit_id, reply);
        if (found == READ_ABSENT)
            reply_error(reply, ST_NOT_FOUND, "unit", "no unit has external_ref %.64s", filter.unit);
        if (found != READ_FOUND)
            return;
    }
    char keys[BOOKING_INDEX_CANDIDATES][BOOKING_INDEX_KEY_MAX];
    const char *names[BOOKING_INDEX_CANDIDATES];
    size_t n = booking_filter_indexes(&filter, keys), best = 0;
    for (size_t i = 0; i < n; i++)
        names[i] = keys[i];
    if (!records_smallest_index(self->store, names, n, &best, reply))
        return;
    listing_page_t page;
    if (!records_list_page(self->store, keys[best], &RECORD_RESERVATION, filter.after,
                           filter.page_size, reservation_list_match, &filter, &page, reply))
        return;
    Passerelle__ReservationList list = PASSERELLE__RESERVATION_LIST__INIT;
    list.reservations = (Passerelle__Reservation **)page.items;
    list.n_reservations = page.count;
    list.next_page_token = listing_page_token(&page);
    reply_set_body(reply, &list.base);
    listing_page_free(&page);
}
