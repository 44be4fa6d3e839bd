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
 * Keys:
 *   reservations:reservation:<id>                   Reservation record
 *   reservations:reservations                       index of every reservation
 *   reservations:reservations:unit:<unit id>        ... of a unit (STOCK)
 *   reservations:reservations:programme:<id>        ... of a programme
 *   reservations:reservations:territory:<CTn>
 *   reservations:reservations:state:<ACTIVE|RELEASED|CANCELLED>
 *   reservations:reservations:year:<yyyy>
 *   reservations:reservations:reservataire:<name>
 *   reservations:reservations:mode:<STOCK|FLOW>
 * (sorted sets, score 0, member = id: ULID order is creation order). */
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

void reservation_record_key(const char *id, char out[KEY_MAX])
{
    snprintf(out, KEY_MAX, "reservations:reservation:%s", id);
}

read_result_t reservation_read(store_t *store, const char *id, Passerelle__Reservation **r_p,
                               uint64_t *version, reply_t *reply)
{
    char key[KEY_MAX];
    reservation_record_key(id, key);
    return record_read(store, key, &passerelle__reservation__descriptor, (ProtobufCMessage **)r_p,
                       version, reply);
}

void reservation_subject(const Passerelle__Reservation *r, char out[KEY_MAX])
{
    if (r->mode == STOCK && !blank(r->unit_id))
        subject_of(r->unit_id, out);
    else
        snprintf(out, KEY_MAX, "reservations/%s", r->id ? r->id : "");
}

static party_t caller_party(const call_t *call)
{
    return call->caller ? call->caller->party : PARTY_NONE;
}

/* ====================================================================== */
/* reservation.create                                                     */
/* ====================================================================== */

/* Everything create reads, owned here and freed by create_reads_free. */
typedef struct {
    Passerelle__Unit *unit;
    uint64_t unit_version;
    Passerelle__Convention *conv;
    Passerelle__Reservation *holder;
    Passerelle__Programme *programme;
    uint64_t programme_version;
} create_reads_t;

static void create_reads_free(create_reads_t *reads)
{
    if (reads->unit)
        protobuf_c_message_free_unpacked(&reads->unit->base, NULL);
    if (reads->conv)
        protobuf_c_message_free_unpacked(&reads->conv->base, NULL);
    if (reads->holder)
        protobuf_c_message_free_unpacked(&reads->holder->base, NULL);
    if (reads->programme)
        protobuf_c_message_free_unpacked(&reads->programme->base, NULL);
}

/* STOCK: the unit, its latest convention (private units), and the
 * reservation it names as active, if any. False with the reply set. */
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
        found = convention_read(self->store, unit->convention_id, &reads->conv, &version, reply);
        if (found == READ_FAILED)
            return false;
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
    char key[KEY_MAX];
    snprintf(key, sizeof key, "reservations:programme:%s", request->programme);
    read_result_t found =
        record_read(self->store, key, &passerelle__programme__descriptor,
                    (ProtobufCMessage **)&reads->programme, &reads->programme_version, reply);
    if (found == READ_ABSENT)
        reply_error(reply, ST_NOT_FOUND, "programme", "programme %s not found", request->programme);
    if (found != READ_FOUND)
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
    reservation_record_key(id, key);
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
        snprintf(unit_key, sizeof unit_key, "reservations:unit:%s", reads.unit->id);
        txn_put_message(txn, unit_key, changed_unit.version, &changed_unit.base);
        r.unit = &changed_unit; /* replies and events carry the unit; records don't */
    } else if (reads.programme) {
        /* A programme rewritten meanwhile (its period) is read again. */
        snprintf(unit_key, sizeof unit_key, "reservations:programme:%s", br.programme);
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
    if (blank(id) && !blank(unit_ref)) {
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
    } else if (blank(id)) {
        reply_error(reply, ST_INVALID_ARGUMENT, "id",
                    "id is required (a reservation id), or unit (its active reservation)");
        return false;
    } else if (!id_valid('R', id)) {
        reply_error(reply, ST_INVALID_ARGUMENT, "id", "id '%.40s' is not a reservation id", id);
        return false;
    }
    read_result_t found = reservation_read(self->store, id, r_p, version, reply);
    if (found == READ_ABSENT)
        reply_error(reply, ST_NOT_FOUND, "id", "reservation %s not found", id);
    return found == READ_FOUND;
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
    reservation_record_key(r->id, key);
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
            snprintf(unit_key, sizeof unit_key, "reservations:unit:%s", unit->id);
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

/* The smallest index the filter names, measured with ZCARD (O(1) each). */
static bool list_choose_index(reservations_t *self, const booking_filter_t *filter, char *out,
                              size_t out_size, reply_t *reply)
{
    char keys[BOOKING_INDEX_CANDIDATES][BOOKING_INDEX_KEY_MAX];
    size_t n = booking_filter_indexes(filter, keys);
    size_t best = n - 1;
    long long best_size = -1;
    for (size_t i = 0; i + 1 < n; i++) {
        redisReply *rr = NULL;
        store_result_t result = store_command(self->store, &rr, "ZCARD %s", keys[i]);
        if (result != STORE_OK || rr->type != REDIS_REPLY_INTEGER) {
            if (rr)
                freeReplyObject(rr);
            reply_store_failure(reply, self->store, result == STORE_OK ? STORE_REFUSED : result);
            return false;
        }
        if (best_size < 0 || rr->integer < best_size) {
            best_size = rr->integer;
            best = i;
        }
        freeReplyObject(rr);
    }
    snprintf(out, out_size, "%s", keys[best]);
    return true;
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
    char index[BOOKING_INDEX_KEY_MAX];
    if (!list_choose_index(self, &filter, index, sizeof index, reply))
        return;

    Passerelle__Reservation **items = calloc(filter.page_size, sizeof *items);
    if (!items) {
        reply_error(reply, ST_INTERNAL, NULL, "out of memory");
        return;
    }
    size_t count = 0;
    bool more = false, failed = false;
    char start[ID_LEN + 1];
    if (filter.after[0])
        snprintf(start, sizeof start, "(%s", filter.after);
    else
        snprintf(start, sizeof start, "-");
    long batch = (long)filter.page_size + 1;

    while (!more && !failed) {
        redisReply *rr = NULL;
        store_result_t result =
            store_command(self->store, &rr, "ZRANGEBYLEX %s %s + LIMIT 0 %ld", index, start, batch);
        if (result != STORE_OK || rr->type != REDIS_REPLY_ARRAY) {
            if (rr)
                freeReplyObject(rr);
            reply_store_failure(reply, self->store, result == STORE_OK ? STORE_REFUSED : result);
            failed = true;
            break;
        }
        for (size_t i = 0; i < rr->elements && !failed; i++) {
            const char *member = rr->element[i]->str;
            if (rr->element[i]->type != REDIS_REPLY_STRING || !id_valid('R', member))
                continue;
            if (count == filter.page_size) {
                more = true;
                break;
            }
            Passerelle__Reservation *r = NULL;
            uint64_t version = 0;
            read_result_t found = reservation_read(self->store, member, &r, &version, reply);
            if (found == READ_FAILED)
                failed = true;
            else if (found == READ_FOUND && booking_filter_match(&filter, r))
                items[count++] = r;
            else if (r)
                protobuf_c_message_free_unpacked(&r->base, NULL);
        }
        bool last_batch = rr->elements < (size_t)batch;
        if (rr->elements > 0 && rr->element[rr->elements - 1]->type == REDIS_REPLY_STRING)
            snprintf(start, sizeof start, "(%s", rr->element[rr->elements - 1]->str);
        freeReplyObject(rr);
        if (last_batch)
            break;
    }

    if (!failed) {
        Passerelle__ReservationList list = PASSERELLE__RESERVATION_LIST__INIT;
        list.reservations = items;
        list.n_reservations = count;
        if (more && count > 0)
            list.next_page_token = items[count - 1]->id;
        reply_set_body(reply, &list.base);
    }
    for (size_t i = 0; i < count; i++)
        protobuf_c_message_free_unpacked(&items[i]->base, NULL);
    free(items);
}
