/* Records of the reservations service, shared by its handler files
 * (handlers.c: units and conventions; programmes.c; bookings.c:
 * reservations; proposals.c).
 *
 * A record is a Redis hash {v: version, pb: packed message} (store.h). The
 * readers below unpack it and, on failure, set the reply (UNAVAILABLE when
 * Redis is lost, INTERNAL when it refused or a record does not decode), so a
 * handler only has to return. Writers gather their changes in a txn (txn.h)
 * and commit once with commit().
 *
 * Every key the service writes, each only through commit.lua, in the
 * transaction of the request that changes it:
 *
 * Records (record_key, or the function named):
 *   reservations:unit:<id>                   Unit
 *   reservations:unit-ref:<external_ref>     bytes: the unit id
 *   reservations:convention:<id>             Convention (unit not filled)
 *   reservations:programme:<id>              Programme (units_attached and
 *                                            npnru.used_* not stored)
 *   reservations:objective:<programme>:<year>:<level>:<financing>
 *                                            Objective (objective_key)
 *   reservations:reservation:<id>            Reservation (unit not filled)
 *   reservations:proposal:<id>               Proposal
 *
 * Indexes: sorted sets, score 0, member = id, so that ULID order is
 * creation order and a page token is the last id returned.
 *   reservations:units                       every unit (unit_index_keys)
 *   reservations:units:territory:<CTn>
 *   reservations:units:commune:<insee>       (Marseille: 13055)
 *   reservations:units:stock:<PRIVATE|SOCIAL>
 *   reservations:units:convention:<state>    by the latest convention's state
 *   reservations:programmes                  every programme
 *                                            (programme_index_keys)
 *   reservations:programmes:territory:<CTn>
 *   reservations:programmes:kind:<KIND>
 *   reservations:programmes:units:<id>       the programme's units
 *                                            (programme_units_key)
 *   reservations:objectives:<year>           the year's objectives, members
 *                                            <programme>:<level>:<financing>
 *   reservations:reservations                every reservation
 *                                            (booking_index_keys)
 *   reservations:reservations:unit:<unit id> (STOCK)
 *   reservations:reservations:programme:<id>
 *   reservations:reservations:territory:<CTn>
 *   reservations:reservations:state:<ACTIVE|RELEASED|CANCELLED>
 *   reservations:reservations:year:<yyyy>
 *   reservations:reservations:reservataire:<name>
 *   reservations:reservations:mode:<STOCK|FLOW>
 *   reservations:proposals                   every proposal
 *                                            (proposal_index_all...)
 *   reservations:proposals:reservation:<id>:<vacancy>   a vacancy's
 *   reservations:proposals:decision:<DECISION>          by current decision
 *
 * Progress counters (hashes, HINCRBY in the reservation's transaction;
 * fields in progress.h):
 *   reservations:progress:<year>
 *   reservations:progress:rights
 *
 * Written by the server and txn.h for every service:
 *   reservations:events                      the event stream
 *                                            (RESERVATIONS_STREAM)
 *   reservations:idem:<caller>:<key>         idempotency records */
#ifndef RESERVATIONS_RECORDS_H
#define RESERVATIONS_RECORDS_H

#include "domain.h"
#include "handlers.h"
#include "ids.h"
#include "listing.h"
#include "reservations.pb-c.h"
#include "server.h"
#include "store.h"
#include "txn.h"

#include <stdbool.h>
#include <stdint.h>

#define KEY_MAX 160

/* The domain rule's refusal as the reply: its status, field and message. */
void reply_domain_error(reply_t *reply, const domain_error_t *err);

/* Records are read with server.h's record_read (read_result_t). */

/* A kind of record kept by id: the name in its key, the prefix of its ids
 * (ids.h) and its message. */
typedef struct {
    const char *name; /* "unit": reservations:unit:<id> */
    char id_prefix;   /* 'U' */
    const ProtobufCMessageDescriptor *descriptor;
} record_type_t;

extern const record_type_t RECORD_UNIT, RECORD_CONVENTION, RECORD_PROGRAMME, RECORD_RESERVATION,
    RECORD_PROPOSAL;

/* "reservations:<kind>:<id>" into out: the key of a record ("unit",
 * "unit-ref", "convention", "programme", "reservation", "proposal"). */
void record_key(char out[KEY_MAX], const char *kind, const char *id);

/* record_read of the record of that type and id. */
read_result_t record_read_id(store_t *store, const record_type_t *type, const char *id,
                             ProtobufCMessage **msg_p, uint64_t *version, reply_t *reply);

/* The record a request names by id in `field`: INVALID_ARGUMENT when the
 * id is blank or not of the type's prefix, NOT_FOUND ("<type> <id> not
 * found") when absent, both naming field. On success the caller frees
 * *msg_p; otherwise the reply says why. */
bool record_get(store_t *store, const record_type_t *type, const char *id, const char *field,
                ProtobufCMessage **msg_p, uint64_t *version, reply_t *reply);

/* Typed readers of the records by id, through record_read_id (the caller
 * frees on READ_FOUND). */
read_result_t unit_read(store_t *store, const char *id, Passerelle__Unit **unit_p,
                        uint64_t *version, reply_t *reply);
read_result_t convention_read(store_t *store, const char *id, Passerelle__Convention **conv_p,
                              uint64_t *version, reply_t *reply);
read_result_t programme_read(store_t *store, const char *id, Passerelle__Programme **prog_p,
                             uint64_t *version, reply_t *reply);
read_result_t reservation_read(store_t *store, const char *id, Passerelle__Reservation **r_p,
                               uint64_t *version, reply_t *reply);
read_result_t proposal_read(store_t *store, const char *id, Passerelle__Proposal **p_p,
                            uint64_t *version, reply_t *reply);

/* The unit id an external reference points to, written into id. */
read_result_t unit_ref_read(store_t *store, const char *external_ref, char id[ID_LEN],
                            reply_t *reply);

/* A unit by id, or else by external reference. READ_ABSENT for text that is
 * neither. */
read_result_t unit_find(store_t *store, const char *id_or_ref, Passerelle__Unit **unit_p,
                        uint64_t *version, reply_t *reply);

/* ---- listings ---- */

/* Listings walk the indexes above with listing.h; these bind it to the
 * service's records and replies (reply_listing_result, server.h). */

/* The size of a sorted set (ZCARD), or false with the reply set. */
bool records_count(store_t *store, const char *key, long long *out, reply_t *reply);

/* listing_smallest_index, or false with the reply set. */
bool records_smallest_index(store_t *store, const char *const *keys, size_t n, size_t *best,
                            reply_t *reply);

/* One page of the records of that type in the index after the page token
 * `after`, keeping those that match (every one when match is NULL), as
 * listing_page walks it (its cost is said there). False with the reply
 * set; the page is then empty. */
bool records_list_page(store_t *store, const char *index, const record_type_t *type,
                       const char *after, unsigned page_size, listing_match_fn match, void *arg,
                       listing_page_t *page, reply_t *reply);

/* Every record of the type in the index (listing_all), for the small
 * indexes a decision needs whole (a vacancy's proposals, a territory's
 * programmes). False with the reply set; the page is then empty. */
bool records_read_all(store_t *store, const char *index, const record_type_t *type,
                      listing_page_t *page, reply_t *reply);

/* ---- writing ---- */

/* A transaction for this write request (its idempotency key). */
txn_t *txn_for(const call_t *call);

/* "units/<id>": the subject of every event about a unit, so that consumers
 * can keep per-unit order. */
void subject_of(const char *unit_id, char out[KEY_MAX]);

/* Commits txn with the reply built so far (reply_commit) and logs the write
 * under the event type. */
void commit(reservations_t *self, const call_t *call, txn_t *txn, reply_t *reply,
            const char *event_type, const char *subject);

#endif
