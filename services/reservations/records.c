/* Reading and writing the reservations service's records: the pieces every
 * handler file shares (see records.h). */
#include "records.h"

#include <stdio.h>

/* ====================================================================== */
/* Reading records                                                        */
/* ====================================================================== */

void reply_domain_error(reply_t *reply, const domain_error_t *err)
{
    reply_error(reply, err->status, err->field[0] ? err->field : NULL, "%s", err->message);
}

const record_type_t RECORD_UNIT = {"unit", 'U', &passerelle__unit__descriptor};
const record_type_t RECORD_CONVENTION = {"convention", 'C', &passerelle__convention__descriptor};
const record_type_t RECORD_PROGRAMME = {"programme", 'P', &passerelle__programme__descriptor};
const record_type_t RECORD_RESERVATION = {"reservation", 'R', &passerelle__reservation__descriptor};
const record_type_t RECORD_PROPOSAL = {"proposal", 'D', &passerelle__proposal__descriptor};

void record_key(char out[KEY_MAX], const char *kind, const char *id)
{
    snprintf(out, KEY_MAX, "reservations:%s:%s", kind, id);
}

read_result_t record_read_id(store_t *store, const record_type_t *type, const char *id,
                             ProtobufCMessage **msg_p, uint64_t *version, reply_t *reply)
{
    char key[KEY_MAX];
    record_key(key, type->name, id);
    return record_read(store, key, type->descriptor, msg_p, version, reply);
}

bool record_get(store_t *store, const record_type_t *type, const char *id, const char *field,
                ProtobufCMessage **msg_p, uint64_t *version, reply_t *reply)
{
    *msg_p = NULL;
    if (text_blank(id)) {
        reply_error(reply, ST_INVALID_ARGUMENT, field, "%s is required (a %s id)", field,
                    type->name);
        return false;
    }
    if (!id_valid(type->id_prefix, id)) {
        reply_error(reply, ST_INVALID_ARGUMENT, field, "%s '%.40s' is not a %s id", field, id,
                    type->name);
        return false;
    }
    read_result_t found = record_read_id(store, type, id, msg_p, version, reply);
    if (found == READ_ABSENT)
        reply_error(reply, ST_NOT_FOUND, field, "%s %s not found", type->name, id);
    return found == READ_FOUND;
}

read_result_t unit_read(store_t *store, const char *id, Passerelle__Unit **unit_p,
                        uint64_t *version, reply_t *reply)
{
    return record_read_id(store, &RECORD_UNIT, id, (ProtobufCMessage **)unit_p, version, reply);
}

read_result_t convention_read(store_t *store, const char *id, Passerelle__Convention **conv_p,
                              uint64_t *version, reply_t *reply)
{
    return record_read_id(store, &RECORD_CONVENTION, id, (ProtobufCMessage **)conv_p, version,
                          reply);
}

read_result_t programme_read(store_t *store, const char *id, Passerelle__Programme **prog_p,
                             uint64_t *version, reply_t *reply)
{
    return record_read_id(store, &RECORD_PROGRAMME, id, (ProtobufCMessage **)prog_p, version,
                          reply);
}

read_result_t reservation_read(store_t *store, const char *id, Passerelle__Reservation **r_p,
                               uint64_t *version, reply_t *reply)
{
    return record_read_id(store, &RECORD_RESERVATION, id, (ProtobufCMessage **)r_p, version, reply);
}

read_result_t proposal_read(store_t *store, const char *id, Passerelle__Proposal **p_p,
                            uint64_t *version, reply_t *reply)
{
    return record_read_id(store, &RECORD_PROPOSAL, id, (ProtobufCMessage **)p_p, version, reply);
}

/* The unit id an external reference points to, written into id. */
read_result_t unit_ref_read(store_t *store, const char *external_ref, char id[ID_LEN],
                            reply_t *reply)
{
    char key[KEY_MAX];
    record_key(key, "unit-ref", external_ref);
    return record_read_ref(store, key, 'U', "unit", id, reply);
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
/* Listings                                                               */
/* ====================================================================== */

bool records_count(store_t *store, const char *key, long long *out, reply_t *reply)
{
    return reply_listing_result(reply, store, listing_count(store, key, out));
}

bool records_smallest_index(store_t *store, const char *const *keys, size_t n, size_t *best,
                            reply_t *reply)
{
    return reply_listing_result(reply, store, listing_smallest_index(store, keys, n, best));
}

/* The lister of a type's records: reservations:<name>:<id>. */
static void record_lister(record_lister_t *lister, char prefix[KEY_MAX], store_t *store,
                          const record_type_t *type, reply_t *reply)
{
    snprintf(prefix, KEY_MAX, "reservations:%s:", type->name);
    *lister = (record_lister_t){store, prefix, type->descriptor, reply};
}

bool records_list_page(store_t *store, const char *index, const record_type_t *type,
                       const char *after, unsigned page_size, listing_match_fn match, void *arg,
                       listing_page_t *page, reply_t *reply)
{
    record_lister_t lister;
    char prefix[KEY_MAX];
    record_lister(&lister, prefix, store, type, reply);
    listing_t listing = {index, type->id_prefix, record_list_read, &lister, match, arg};
    return reply_listing_result(reply, store,
                                listing_page(store, &listing, after, page_size, page));
}

bool records_read_all(store_t *store, const char *index, const record_type_t *type,
                      listing_page_t *page, reply_t *reply)
{
    record_lister_t lister;
    char prefix[KEY_MAX];
    record_lister(&lister, prefix, store, type, reply);
    listing_t listing = {index, type->id_prefix, record_list_read, &lister, NULL, NULL};
    return reply_listing_result(reply, store, listing_all(store, &listing, page));
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
