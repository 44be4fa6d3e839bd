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
 * Keys (every one written only through commit.lua):
 *   reservations:unit:<id>, reservations:unit-ref:<external_ref> (-> id)
 *   reservations:convention:<id>
 *   reservations:programme:<id>, reservations:objective:<programme>:<year>:<level>:<financing>
 *   reservations:reservation:<id>
 *   reservations:proposal:<id>
 *   index sorted sets (score 0, member = id, so ULID order = creation order)
 *   under reservations:units..., reservations:programmes...,
 *   reservations:reservations..., reservations:proposals...
 *   progress counters: see progress.h */
#ifndef RESERVATIONS_RECORDS_H
#define RESERVATIONS_RECORDS_H

#include "domain.h"
#include "handlers.h"
#include "ids.h"
#include "reservations.pb-c.h"
#include "server.h"
#include "store.h"
#include "txn.h"

#include <stdbool.h>
#include <stdint.h>

#define KEY_MAX 160

typedef enum {
    READ_FOUND,
    READ_ABSENT,
    READ_FAILED, /* the reply says why */
} read_result_t;

/* UNAVAILABLE (lost) or INTERNAL (refused) for a failed store call. */
void reply_store_failure(reply_t *reply, store_t *store, store_result_t result);

/* The domain rule's refusal as the reply: its status, field and message. */
void reply_domain_error(reply_t *reply, const domain_error_t *err);

/* NULL or "". */
bool blank(const char *s);

/* Reads and unpacks the record at key. On READ_FOUND the caller owns *msg_p
 * (protobuf_c_message_free_unpacked) and *version is its version. */
read_result_t record_read(store_t *store, const char *key, const ProtobufCMessageDescriptor *desc,
                          ProtobufCMessage **msg_p, uint64_t *version, reply_t *reply);

/* Typed readers of the records by id (caller frees on READ_FOUND). */
read_result_t unit_read(store_t *store, const char *id, Passerelle__Unit **unit_p,
                        uint64_t *version, reply_t *reply);
read_result_t convention_read(store_t *store, const char *id, Passerelle__Convention **conv_p,
                              uint64_t *version, reply_t *reply);

/* The unit id an external reference points to, written into id. */
read_result_t unit_ref_read(store_t *store, const char *external_ref, char id[ID_LEN],
                            reply_t *reply);

/* A unit by id, or else by external reference. READ_ABSENT for text that is
 * neither. */
read_result_t unit_find(store_t *store, const char *id_or_ref, Passerelle__Unit **unit_p,
                        uint64_t *version, reply_t *reply);

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
