/* Reading and writing the reservations service's records: the pieces every
 * handler file shares (see records.h). */
#include "records.h"

#include "log.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ====================================================================== */
/* Reading records                                                        */
/* ====================================================================== */

void reply_store_failure(reply_t *reply, store_t *store, store_result_t result)
{
    if (result == STORE_LOST)
        reply_error(reply, ST_UNAVAILABLE, NULL, "the store is unavailable (%s); retry",
                    store_last_error(store));
    else
        reply_error(reply, ST_INTERNAL, NULL, "the store refused a read (%s)",
                    store_last_error(store));
}

void reply_domain_error(reply_t *reply, const domain_error_t *err)
{
    reply_error(reply, err->status, err->field[0] ? err->field : NULL, "%s", err->message);
}

bool blank(const char *s)
{
    return s == NULL || *s == '\0';
}

/* Reads and unpacks the record at key. On READ_FOUND the caller owns *msg_p
 * (protobuf_c_message_free_unpacked) and *version is its version. */
read_result_t record_read(store_t *store, const char *key, const ProtobufCMessageDescriptor *desc,
                          ProtobufCMessage **msg_p, uint64_t *version, reply_t *reply)
{
    uint8_t *data = NULL;
    size_t len = 0;
    *msg_p = NULL;
    store_result_t result = store_record_get(store, key, version, &data, &len);
    if (result != STORE_OK) {
        reply_store_failure(reply, store, result);
        return READ_FAILED;
    }
    if (*version == 0) {
        free(data);
        return READ_ABSENT;
    }
    *msg_p = protobuf_c_message_unpack(desc, NULL, len, data);
    free(data);
    if (!*msg_p) {
        log_error("record does not decode", "{s:s, s:s, s:I}", "key", key, "type", desc->name,
                  "length", (json_int_t)len);
        reply_error(reply, ST_INTERNAL, NULL, "record %s does not decode", key);
        return READ_FAILED;
    }
    return READ_FOUND;
}

read_result_t unit_read(store_t *store, const char *id, Passerelle__Unit **unit_p,
                        uint64_t *version, reply_t *reply)
{
    char key[KEY_MAX];
    snprintf(key, sizeof key, "reservations:unit:%s", id);
    return record_read(store, key, &passerelle__unit__descriptor, (ProtobufCMessage **)unit_p,
                       version, reply);
}

read_result_t convention_read(store_t *store, const char *id, Passerelle__Convention **conv_p,
                              uint64_t *version, reply_t *reply)
{
    char key[KEY_MAX];
    snprintf(key, sizeof key, "reservations:convention:%s", id);
    return record_read(store, key, &passerelle__convention__descriptor, (ProtobufCMessage **)conv_p,
                       version, reply);
}

/* The unit id an external reference points to, written into id. */
read_result_t unit_ref_read(store_t *store, const char *external_ref, char id[ID_LEN],
                            reply_t *reply)
{
    char key[KEY_MAX];
    snprintf(key, sizeof key, "reservations:unit-ref:%s", external_ref);
    uint8_t *data = NULL;
    size_t len = 0;
    uint64_t version = 0;
    store_result_t result = store_record_get(store, key, &version, &data, &len);
    if (result != STORE_OK) {
        reply_store_failure(reply, store, result);
        return READ_FAILED;
    }
    if (version == 0) {
        free(data);
        return READ_ABSENT;
    }
    bool ok = len < ID_LEN;
    if (ok) {
        memcpy(id, data, len);
        id[len] = '\0';
        ok = id_valid('U', id);
    }
    free(data);
    if (!ok) {
        reply_error(reply, ST_INTERNAL, NULL, "record %s does not hold a unit id", key);
        return READ_FAILED;
    }
    return READ_FOUND;
}

/* A unit by id, or else by external reference. */
read_result_t unit_find(store_t *store, const char *id_or_ref, Passerelle__Unit **unit_p,
                        uint64_t *version, reply_t *reply)
{
    *unit_p = NULL;
    if (id_valid('U', id_or_ref))
        return unit_read(store, id_or_ref, unit_p, version, reply);
    if (!unit_external_ref_valid(id_or_ref))
        return READ_ABSENT;
    char id[ID_LEN];
    read_result_t found = unit_ref_read(store, id_or_ref, id, reply);
    if (found != READ_FOUND)
        return found;
    return unit_read(store, id, unit_p, version, reply);
}

/* ====================================================================== */
/* Writing                                                                */
/* ====================================================================== */

txn_t *txn_for(const call_t *call)
{
    return txn_new(call->idempotency_key, call->fingerprint, call->idempotency_ttl_s);
}

void subject_of(const char *unit_id, char out[KEY_MAX])
{
    snprintf(out, KEY_MAX, "units/%s", unit_id);
}

/* Commits and logs what was written. The server commits the transaction
 * with the other requests of its batch (group commit, server.h), so the log
 * line is written by the server once the write is durable, not here. */
void commit(reservations_t *self, const call_t *call, txn_t *txn, reply_t *reply,
            const char *event_type, const char *subject)
{
    reply_log_commit(reply, event_type, subject);
    reply_commit(reply, call, self->store, txn);
}
