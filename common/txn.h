/* Atomic writes: a transaction gathers, in C, everything one request changes
 * - records, index entries, the event - and commits it with one Lua script
 * (commit.lua), so the state change and its event are written together or
 * not at all.
 *
 * Preconditions are version guards: the handler reads what it needs, decides
 * with the pure domain rules, and the script applies the writes only if every
 * guarded record is still at the version that was read (0 = must not exist).
 * If not, the commit reports TXN_STALE and the request is run again on fresh
 * state. This keeps every rule in C, testable without Redis, while Redis
 * still decides atomically who wins a race.
 *
 * The same script records the reply under the request's idempotency key: a
 * second commit with that key changes nothing and returns the first reply; a
 * commit with that key but another fingerprint changes nothing and says
 * TXN_KEY_REUSED. */
#ifndef PASSERELLE_TXN_H
#define PASSERELLE_TXN_H

#include "store.h"

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct txn_t txn_t;

typedef enum {
    TXN_COMMITTED = 0, /* applied; the event is in the stream */
    TXN_DUPLICATE,     /* the idempotency key was used: nothing changed */
    TXN_STALE,         /* a guard failed: reread and run again */
    TXN_REFUSED,       /* Redis refused the script (a bug: logged) */
    TXN_LOST,          /* connection lost: outcome unknown, retry is safe */
    TXN_KEY_REUSED,    /* the idempotency key was used for another request */
    TXN_NEW,           /* txn_lookup only: the key was never used */
} txn_result_t;

/* A new, empty transaction. idempotency_key is the full Redis key of the
 * idempotency record, or NULL for none; fingerprint (NULL allowed) is kept
 * with it so a reused key with a different request can be told apart;
 * ttl_s is how long the record is kept. Strings are copied. */
txn_t *txn_new(const char *idempotency_key, const char *fingerprint, uint32_t ttl_s);
void txn_destroy(txn_t **self_p);

/* The commit fails (TXN_STALE) unless key's record is at version
 * (0: absent). */
void txn_guard(txn_t *self, const char *key, uint64_t version);

/* Writes the record key = {v: version, pb: data}; guarded at version - 1,
 * so a put of version 1 creates and fails if the record exists. data is
 * copied. */
void txn_put(txn_t *self, const char *key, uint64_t version, const void *data, size_t len);

/* Deletes the record key; guarded at version (the version the handler
 * read; 0 is a bug and the commit is refused), so the commit is TXN_STALE
 * if the record changed or is gone. Applied with the other writes, all or
 * nothing; a key is not both put and deleted in one transaction. */
void txn_delete(txn_t *self, const char *key, uint64_t version);

/* Packs msg and puts it (the same as txn_put with its packed bytes). */
void txn_put_message(txn_t *self, const char *key, uint64_t version, const ProtobufCMessage *msg);

/* Index entries: members of a sorted set, all with score 0 so that they sort
 * by member (ids are ULIDs: creation order). */
void txn_index_add(txn_t *self, const char *zset_key, const char *member);
void txn_index_remove(txn_t *self, const char *zset_key, const char *member);

/* Adds delta to the integer field of a hash (HINCRBY): counters that must
 * stay equal to what the records say, such as progress against objectives,
 * change in the same transaction as the records. */
void txn_counter_add(txn_t *self, const char *hash_key, const char *field, int64_t delta);

/* Appends an event to stream_key, built here: a new event id (ULID, prefix
 * 'E'), the current time, the given source ("/passerelle/reservations"),
 * type, subject, and data = the packed msg with dataschema = its full type
 * name. The stream entry has the fields "type" and "event". A transaction
 * carries one event (a second one is a bug: the commit is refused) unless
 * txn_allow_events said more; its events are appended in order. */
void txn_event(txn_t *self, const char *stream_key, const char *source, const char *type,
               const char *subject, const ProtobufCMessage *data);

/* Lets the transaction carry up to max events: for a write that changes
 * several records, each with its own event (an import replacing the
 * figures of several periods). */
void txn_allow_events(txn_t *self, size_t max);

/* Runs the commit script. reply/reply_len are stored under the idempotency
 * key when committed. On TXN_DUPLICATE, *stored_p (if not NULL) receives a
 * malloc'd copy of the reply stored by the first commit and *stored_len its
 * length. On TXN_COMMITTED, position (if not NULL, at least 32 bytes) gets
 * the stream entry id of the (first) event ("" if no event). */
txn_result_t txn_commit(txn_t *self, store_t *store, const void *reply, size_t reply_len,
                        uint8_t **stored_p, size_t *stored_len, char *position);

/* Looks the idempotency record up before any work is done (the commit
 * checks again, atomically): TXN_NEW if the key was never used,
 * TXN_DUPLICATE with the stored reply (as in txn_commit) if it was used for
 * the same fingerprint, TXN_KEY_REUSED if for another, TXN_LOST/TXN_REFUSED
 * on store errors. */
txn_result_t txn_lookup(store_t *store, const char *idempotency_key, const char *fingerprint,
                        uint8_t **stored_p, size_t *stored_len);

/* The lookups of many requests as one pipeline (store_command_many): one
 * round trip for every write waiting on a server instead of one each.
 * Results per item as for txn_lookup; an item without an idempotency key is
 * TXN_NEW. */
typedef struct {
    /* in (borrowed) */
    const char *idempotency_key;
    const char *fingerprint;
    /* out */
    txn_result_t result;
    uint8_t *stored; /* TXN_DUPLICATE: the stored reply, malloc'd, caller frees */
    size_t stored_len;
} txn_lookup_item_t;

void txn_lookup_many(store_t *store, txn_lookup_item_t *items, size_t count);

/* txn_lookup_many in the pipeline of the store's next snapshot fill
 * (store_snapshot_fill_with, with a snapshot open): the group's idempotency
 * records and the records its handlers missed cost one round trip, not
 * two. Results per item as for txn_lookup_many; returns the fill's
 * outcome, as store_snapshot_fill. */
store_result_t txn_lookup_many_fill(store_t *store, txn_lookup_item_t *items, size_t count);

/* The (first) event id made by txn_event, for logs; "" if none. */
const char *txn_event_id(const txn_t *self);

/* ------------------------------------------------------------------------
 * Group commit (server.h): a handler's transaction is handed to the server,
 * which commits the transactions of every request waiting on it in one
 * pipeline. */

/* Moves every operation of self into a new transaction and leaves self
 * empty (its txn_destroy then frees only the shell). The caller owns the
 * result; NULL when out of memory (self is then unchanged). */
txn_t *txn_take(txn_t *self);

/* True if the transaction puts or deletes key. */
bool txn_writes(const txn_t *self, const char *key);

#define TXN_STALE_KEY_MAX 256

typedef struct {
    /* in (borrowed) */
    txn_t *txn;
    const void *reply; /* stored under the idempotency key when committed */
    size_t reply_len;
    /* out */
    txn_result_t result;
    uint8_t *stored; /* TXN_DUPLICATE: the first reply, malloc'd, caller frees */
    size_t stored_len;
    char position[32];                 /* TXN_COMMITTED: the event's stream id */
    char stale_key[TXN_STALE_KEY_MAX]; /* TXN_STALE: the key whose guard failed */
    bool stale_in_batch; /* TXN_STALE because an earlier item of this batch wrote it */
} txn_batch_item_t;

/* Commits count transactions, in order, as one pipeline of commit.lua calls
 * (store_script_run_many): each is still all or nothing and guarded on its
 * own, and a later one sees what the earlier ones wrote, so two items on one
 * record make the later one TXN_STALE with stale_in_batch set. Results per
 * item as for txn_commit; if the connection is lost partway, items answered
 * before the loss keep their outcome and the rest are TXN_LOST. */
void txn_commit_batch(txn_batch_item_t *items, size_t count, store_t *store);

#endif
