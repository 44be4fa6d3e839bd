/* Atomic writes through commit.lua; see txn.h.
 *
 * A transaction is only a list of operations kept in C until txn_commit
 * turns it into one EVALSHA (the encoding is documented at the top of
 * commit.lua). Nothing touches Redis before the commit, so a handler can
 * build a transaction, find a reason to refuse, and drop it at no cost. */
#include "txn.h"
#include "envelope.pb-c.h"
#include "ids.h"
#include "log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The script's bytes, embedded by the build (cmake/embed.cmake), with a
 * terminating NUL. */
extern const unsigned char store_commit_lua[];
extern const size_t store_commit_lua_len;

#define VERSION_TEXT_LEN 24

typedef struct {
    char *key;
    char version[VERSION_TEXT_LEN];
    uint8_t *data; /* puts only */
    size_t len;
} txn_write_t;

typedef struct {
    char *key;
    char *member;
} txn_index_t;

typedef struct {
    char *key;
    char *field;
    char delta[VERSION_TEXT_LEN];
} txn_counter_t;

typedef struct {
    char *stream_key;
    char *type;
    uint8_t *bytes; /* the packed Event */
    size_t len;
    char id[ID_LEN];
} txn_event_t;

/* A growable array of fixed-size items. */
typedef struct {
    void *items;
    size_t count, capacity;
} txn_list_t;

struct txn_t {
    char *idempotency_key;
    char *fingerprint;
    uint32_t ttl_s;

    txn_list_t guards;   /* txn_write_t, no data */
    txn_list_t puts;     /* txn_write_t */
    txn_list_t deletes;  /* txn_write_t, no data */
    txn_list_t adds;     /* txn_index_t */
    txn_list_t removes;  /* txn_index_t */
    txn_list_t counters; /* txn_counter_t */

    txn_list_t events; /* txn_event_t, in the order they are appended */
    size_t events_max; /* 1 unless txn_allow_events says more */

    /* Set when a step could not be recorded (out of memory, an event more
     * than allowed): committing half a transaction would be worse than
     * refusing it. */
    bool broken;
};

/* ======================== building ===================================== */

static void *list_push(txn_list_t *list, size_t item_size)
{
    if (list->count == list->capacity) {
        size_t capacity = list->capacity ? list->capacity * 2 : 4;
        void *grown = realloc(list->items, capacity * item_size);
        if (!grown)
            return NULL;
        list->items = grown;
        list->capacity = capacity;
    }
    void *item = (char *)list->items + list->count * item_size;
    list->count++;
    memset(item, 0, item_size);
    return item;
}

txn_t *txn_new(const char *idempotency_key, const char *fingerprint, uint32_t ttl_s)
{
    txn_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->ttl_s = ttl_s;
    self->events_max = 1;
    if (idempotency_key && *idempotency_key) {
        self->idempotency_key = strdup(idempotency_key);
        self->fingerprint = strdup(fingerprint ? fingerprint : "");
        if (!self->idempotency_key || !self->fingerprint)
            txn_destroy(&self);
    }
    return self;
}

void txn_destroy(txn_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    txn_t *self = *self_p;
    txn_write_t *writes = self->guards.items;
    for (size_t i = 0; i < self->guards.count; i++)
        free(writes[i].key);
    writes = self->deletes.items;
    for (size_t i = 0; i < self->deletes.count; i++)
        free(writes[i].key);
    writes = self->puts.items;
    for (size_t i = 0; i < self->puts.count; i++) {
        free(writes[i].key);
        free(writes[i].data);
    }
    txn_list_t *index_lists[] = {&self->adds, &self->removes};
    for (size_t l = 0; l < 2; l++) {
        txn_index_t *entries = index_lists[l]->items;
        for (size_t i = 0; i < index_lists[l]->count; i++) {
            free(entries[i].key);
            free(entries[i].member);
        }
        free(index_lists[l]->items);
    }
    txn_counter_t *counters = self->counters.items;
    for (size_t i = 0; i < self->counters.count; i++) {
        free(counters[i].key);
        free(counters[i].field);
    }
    free(self->counters.items);
    free(self->guards.items);
    free(self->puts.items);
    free(self->deletes.items);
    txn_event_t *events = self->events.items;
    for (size_t i = 0; i < self->events.count; i++) {
        free(events[i].stream_key);
        free(events[i].type);
        free(events[i].bytes);
    }
    free(self->events.items);
    free(self->idempotency_key);
    free(self->fingerprint);
    free(self);
    *self_p = NULL;
}

void txn_guard(txn_t *self, const char *key, uint64_t version)
{
    txn_write_t *guard = list_push(&self->guards, sizeof *guard);
    if (!guard || !(guard->key = strdup(key))) {
        self->broken = true;
        return;
    }
    snprintf(guard->version, sizeof guard->version, "%" PRIu64, version);
}

void txn_put(txn_t *self, const char *key, uint64_t version, const void *data, size_t len)
{
    if (version == 0) {
        log_error("txn_put of version 0", "{s:s}", "key", key);
        self->broken = true;
        return;
    }
    txn_write_t *put = list_push(&self->puts, sizeof *put);
    if (!put) {
        self->broken = true;
        return;
    }
    put->key = strdup(key);
    put->data = malloc(len ? len : 1);
    if (!put->key || !put->data) {
        self->broken = true;
        return;
    }
    if (len)
        memcpy(put->data, data, len);
    put->len = len;
    snprintf(put->version, sizeof put->version, "%" PRIu64, version);
}

void txn_delete(txn_t *self, const char *key, uint64_t version)
{
    if (version == 0) {
        log_error("txn_delete of version 0", "{s:s}", "key", key);
        self->broken = true;
        return;
    }
    txn_write_t *deleted = list_push(&self->deletes, sizeof *deleted);
    if (!deleted || !(deleted->key = strdup(key))) {
        self->broken = true;
        return;
    }
    snprintf(deleted->version, sizeof deleted->version, "%" PRIu64, version);
}

void txn_put_message(txn_t *self, const char *key, uint64_t version, const ProtobufCMessage *msg)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    uint8_t *packed = malloc(len ? len : 1);
    if (!packed) {
        self->broken = true;
        return;
    }
    protobuf_c_message_pack(msg, packed);
    txn_put(self, key, version, packed, len);
    free(packed);
}

static void index_push(txn_t *self, txn_list_t *list, const char *zset_key, const char *member)
{
    txn_index_t *entry = list_push(list, sizeof *entry);
    if (!entry) {
        self->broken = true;
        return;
    }
    entry->key = strdup(zset_key);
    entry->member = strdup(member);
    if (!entry->key || !entry->member)
        self->broken = true;
}

void txn_index_add(txn_t *self, const char *zset_key, const char *member)
{
    index_push(self, &self->adds, zset_key, member);
}

void txn_index_remove(txn_t *self, const char *zset_key, const char *member)
{
    index_push(self, &self->removes, zset_key, member);
}

void txn_counter_add(txn_t *self, const char *hash_key, const char *field, int64_t delta)
{
    txn_counter_t *counter = list_push(&self->counters, sizeof *counter);
    if (!counter) {
        self->broken = true;
        return;
    }
    counter->key = strdup(hash_key);
    counter->field = strdup(field);
    snprintf(counter->delta, sizeof counter->delta, "%" PRId64, delta);
    if (!counter->key || !counter->field)
        self->broken = true;
}

void txn_allow_events(txn_t *self, size_t max)
{
    self->events_max = max;
}

void txn_event(txn_t *self, const char *stream_key, const char *source, const char *type,
               const char *subject, const ProtobufCMessage *data)
{
    if (self->events.count >= self->events_max) {
        const txn_event_t *first = self->events.items;
        log_error("a transaction carries no more events than it allows", "{s:s, s:s, s:i}", "type",
                  type, "first", first ? first[0].type : "", "allowed", (int)self->events_max);
        self->broken = true;
        return;
    }
    txn_event_t *added = list_push(&self->events, sizeof *added);
    if (!added) {
        self->broken = true;
        return;
    }
    char event_time[TIME_RFC3339_LEN];
    id_new('E', added->id);
    time_now_rfc3339(event_time);

    size_t data_len = protobuf_c_message_get_packed_size(data);
    uint8_t *data_bytes = malloc(data_len ? data_len : 1);
    if (!data_bytes) {
        self->broken = true;
        return;
    }
    protobuf_c_message_pack(data, data_bytes);

    Passerelle__Event event = PASSERELLE__EVENT__INIT;
    event.id = added->id;
    event.source = (char *)source;
    event.type = (char *)type;
    event.subject = (char *)subject;
    event.time = event_time;
    event.datacontenttype = "application/protobuf";
    event.dataschema = (char *)data->descriptor->name;
    event.specversion = "1.0";
    event.has_data = true;
    event.data.data = data_bytes;
    event.data.len = data_len;

    added->len = passerelle__event__get_packed_size(&event);
    added->bytes = malloc(added->len ? added->len : 1);
    added->stream_key = strdup(stream_key);
    added->type = strdup(type);
    if (!added->bytes || !added->stream_key || !added->type)
        self->broken = true;
    else
        passerelle__event__pack(&event, added->bytes);
    free(data_bytes);
}

const char *txn_event_id(const txn_t *self)
{
    const txn_event_t *events = self->events.items;
    return self->events.count ? events[0].id : "";
}

txn_t *txn_take(txn_t *self)
{
    txn_t *taken = malloc(sizeof *taken);
    if (!taken)
        return NULL;
    *taken = *self;
    memset(self, 0, sizeof *self);
    return taken;
}

/* ======================== committing =================================== */

static uint8_t *copy_bytes(const char *bytes, size_t len)
{
    uint8_t *copy = malloc(len ? len : 1);
    if (copy && len)
        memcpy(copy, bytes, len);
    return copy;
}

/* Hands the stored reply of a duplicate to the caller. */
static void give_stored(const redisReply *stored, uint8_t **stored_p, size_t *stored_len)
{
    if (stored_p) {
        *stored_p = copy_bytes(stored ? stored->str : NULL, stored ? stored->len : 0);
        if (stored_len)
            *stored_len = *stored_p && stored ? stored->len : 0;
    } else if (stored_len) {
        *stored_len = stored ? stored->len : 0;
    }
}

static txn_result_t from_store(store_t *store, store_result_t result, const char *what)
{
    if (result == STORE_LOST)
        return TXN_LOST;
    log_error("redis refused the commit script", "{s:s, s:s}", "operation", what, "error",
              store_last_error(store));
    return TXN_REFUSED;
}

/* The EVALSHA arguments of one transaction (the encoding is documented at
 * the top of commit.lua). argv points into the transaction and into the
 * texts below, so neither may move or change until the call is made. */
typedef struct {
    const char **argv;
    size_t *lens;
    size_t nkeys, argc;
    char counts[7][24];
    char ttl_text[24];
} txn_args_t;

static void txn_args_free(txn_args_t *args)
{
    free(args->argv);
    free(args->lens);
    args->argv = NULL;
    args->lens = NULL;
}

static bool txn_args_build(const txn_t *self, const void *reply, size_t reply_len, txn_args_t *args)
{
    bool has_idem = self->idempotency_key != NULL;
    size_t nkeys = (has_idem ? 1 : 0) + self->guards.count + self->puts.count +
                   self->deletes.count + self->adds.count + self->removes.count +
                   self->counters.count + self->events.count;
    size_t nargs = 11 + self->guards.count + 2 * self->puts.count + self->deletes.count +
                   self->adds.count + self->removes.count + 2 * self->counters.count +
                   2 * self->events.count;
    size_t argc = nkeys + nargs;
    const char **argv = malloc(sizeof *argv * argc);
    size_t *lens = malloc(sizeof *lens * argc);
    if (!argv || !lens) {
        free(argv);
        free(lens);
        return false;
    }
    args->argv = argv;
    args->lens = lens;
    args->nkeys = nkeys;
    args->argc = argc;

    size_t k = 0, a = nkeys;
#define ARG(at, ptr, size)                                                                         \
    do {                                                                                           \
        argv[at] = (const char *)(ptr);                                                            \
        lens[at] = (size);                                                                         \
        at++;                                                                                      \
    } while (0)
#define ARG_TEXT(at, text) ARG(at, text, strlen(text))

    snprintf(args->ttl_text, sizeof args->ttl_text, "%" PRIu32, self->ttl_s);
    snprintf(args->counts[0], sizeof args->counts[0], "%zu", self->guards.count);
    snprintf(args->counts[1], sizeof args->counts[1], "%zu", self->puts.count);
    snprintf(args->counts[2], sizeof args->counts[2], "%zu", self->adds.count);
    snprintf(args->counts[3], sizeof args->counts[3], "%zu", self->removes.count);
    snprintf(args->counts[4], sizeof args->counts[4], "%zu", self->counters.count);
    snprintf(args->counts[5], sizeof args->counts[5], "%zu", self->deletes.count);
    snprintf(args->counts[6], sizeof args->counts[6], "%zu", self->events.count);

    if (has_idem)
        ARG_TEXT(k, self->idempotency_key);
    ARG_TEXT(a, has_idem ? "1" : "0");
    ARG_TEXT(a, has_idem ? self->fingerprint : "");
    ARG_TEXT(a, args->ttl_text);
    for (int i = 0; i < 4; i++)
        ARG_TEXT(a, args->counts[i]);
    ARG_TEXT(a, args->counts[6]);
    ARG(a, reply ? (const char *)reply : "", reply ? reply_len : 0);
    ARG_TEXT(a, args->counts[4]);
    ARG_TEXT(a, args->counts[5]);

    const txn_write_t *guards = self->guards.items;
    for (size_t i = 0; i < self->guards.count; i++) {
        ARG_TEXT(k, guards[i].key);
        ARG_TEXT(a, guards[i].version);
    }
    const txn_write_t *puts = self->puts.items;
    for (size_t i = 0; i < self->puts.count; i++) {
        ARG_TEXT(k, puts[i].key);
        ARG_TEXT(a, puts[i].version);
        ARG(a, puts[i].data, puts[i].len);
    }
    const txn_write_t *deletes = self->deletes.items;
    for (size_t i = 0; i < self->deletes.count; i++) {
        ARG_TEXT(k, deletes[i].key);
        ARG_TEXT(a, deletes[i].version);
    }
    const txn_index_t *adds = self->adds.items;
    for (size_t i = 0; i < self->adds.count; i++) {
        ARG_TEXT(k, adds[i].key);
        ARG_TEXT(a, adds[i].member);
    }
    const txn_index_t *removes = self->removes.items;
    for (size_t i = 0; i < self->removes.count; i++) {
        ARG_TEXT(k, removes[i].key);
        ARG_TEXT(a, removes[i].member);
    }
    const txn_counter_t *counters = self->counters.items;
    for (size_t i = 0; i < self->counters.count; i++) {
        ARG_TEXT(k, counters[i].key);
        ARG_TEXT(a, counters[i].field);
        ARG_TEXT(a, counters[i].delta);
    }
    const txn_event_t *events = self->events.items;
    for (size_t i = 0; i < self->events.count; i++) {
        ARG_TEXT(k, events[i].stream_key);
        ARG_TEXT(a, events[i].type);
        ARG(a, events[i].bytes, events[i].len);
    }
#undef ARG
#undef ARG_TEXT
    return true;
}

/* Reads the script's answer. stale_key (may be NULL, TXN_STALE_KEY_MAX
 * bytes) gets the key whose guard failed. */
static txn_result_t txn_answer(const redisReply *answer, uint8_t **stored_p, size_t *stored_len,
                               char *position, char *stale_key)
{
    txn_result_t outcome = TXN_REFUSED;
    const char *kind = answer->type == REDIS_REPLY_ARRAY && answer->elements >= 1 &&
                               answer->element[0]->type == REDIS_REPLY_STRING
                           ? answer->element[0]->str
                           : "";
    const redisReply *second = answer->type == REDIS_REPLY_ARRAY && answer->elements >= 2 &&
                                       answer->element[1]->type == REDIS_REPLY_STRING
                                   ? answer->element[1]
                                   : NULL;
    if (strcmp(kind, "COMMITTED") == 0) {
        outcome = TXN_COMMITTED;
        if (position && second)
            snprintf(position, 32, "%s", second->str);
    } else if (strcmp(kind, "DUPLICATE") == 0) {
        outcome = TXN_DUPLICATE;
        give_stored(second, stored_p, stored_len);
    } else if (strcmp(kind, "KEY_REUSED") == 0) {
        outcome = TXN_KEY_REUSED;
    } else if (strcmp(kind, "STALE") == 0) {
        outcome = TXN_STALE;
        if (stale_key)
            snprintf(stale_key, TXN_STALE_KEY_MAX, "%s", second ? second->str : "");
        log_debug("transaction stale", "{s:s}", "key", second ? second->str : "");
    } else {
        log_error("unexpected answer from the commit script", NULL);
    }
    return outcome;
}

txn_result_t txn_commit(txn_t *self, store_t *store, const void *reply, size_t reply_len,
                        uint8_t **stored_p, size_t *stored_len, char *position)
{
    if (stored_p)
        *stored_p = NULL;
    if (stored_len)
        *stored_len = 0;
    if (position)
        position[0] = '\0';
    if (self->broken) {
        log_error("transaction not committed: it could not be built", NULL);
        return TXN_REFUSED;
    }
    int script = store_script_add(store, (const char *)store_commit_lua);
    if (script < 0) {
        log_error("no room for the commit script", NULL);
        return TXN_REFUSED;
    }
    txn_args_t args;
    if (!txn_args_build(self, reply, reply_len, &args))
        return TXN_REFUSED;
    redisReply *answer = NULL;
    store_result_t result = store_script_run(store, script, &answer, (int)args.nkeys,
                                             (int)args.argc, args.argv, args.lens);
    txn_args_free(&args);
    if (result != STORE_OK) {
        if (answer)
            freeReplyObject(answer);
        return from_store(store, result, "commit");
    }
    txn_result_t outcome = txn_answer(answer, stored_p, stored_len, position, NULL);
    freeReplyObject(answer);
    return outcome;
}

/* ======================== group commit ================================= */

bool txn_writes(const txn_t *self, const char *key)
{
    const txn_write_t *puts = self->puts.items;
    for (size_t i = 0; i < self->puts.count; i++)
        if (strcmp(puts[i].key, key) == 0)
            return true;
    const txn_write_t *deletes = self->deletes.items;
    for (size_t i = 0; i < self->deletes.count; i++)
        if (strcmp(deletes[i].key, key) == 0)
            return true;
    return false;
}

/* A stale commit caused by an earlier commit of the same pipeline (two
 * requests of one batch on one record) is the batch's doing, not a race
 * with another writer. O(N^2) in the batch size in the worst case, which
 * is bounded (a few dozen) and only paid on stale answers. */
static bool stale_in_batch(const txn_batch_item_t *items, size_t upto, const char *key)
{
    for (size_t j = 0; j < upto; j++)
        if (items[j].result == TXN_COMMITTED && items[j].txn && txn_writes(items[j].txn, key))
            return true;
    return false;
}

void txn_commit_batch(txn_batch_item_t *items, size_t count, store_t *store)
{
    if (count == 0)
        return;
    txn_args_t *args = calloc(count, sizeof *args);
    store_call_t *calls = calloc(count, sizeof *calls);
    redisReply **answers = calloc(count, sizeof *answers);
    store_result_t *results = calloc(count, sizeof *results);
    size_t *sent = calloc(count, sizeof *sent); /* item index of each call */
    int script = store_script_add(store, (const char *)store_commit_lua);
    size_t ncalls = 0;
    for (size_t i = 0; i < count; i++) {
        txn_batch_item_t *item = &items[i];
        item->result = TXN_REFUSED;
        item->stored = NULL;
        item->stored_len = 0;
        item->position[0] = '\0';
        item->stale_key[0] = '\0';
        item->stale_in_batch = false;
        if (!args || !calls || !answers || !results || !sent || script < 0 || !item->txn)
            continue;
        if (item->txn->broken) {
            log_error("transaction not committed: it could not be built", NULL);
            continue;
        }
        if (!txn_args_build(item->txn, item->reply, item->reply_len, &args[ncalls]))
            continue;
        calls[ncalls].nkeys = (int)args[ncalls].nkeys;
        calls[ncalls].argc = (int)args[ncalls].argc;
        calls[ncalls].argv = args[ncalls].argv;
        calls[ncalls].argv_len = args[ncalls].lens;
        sent[ncalls++] = i;
    }
    if (ncalls > 0)
        store_script_run_many(store, script, calls, ncalls, answers, results);
    for (size_t c = 0; c < ncalls; c++) {
        txn_batch_item_t *item = &items[sent[c]];
        if (results[c] != STORE_OK)
            item->result = from_store(store, results[c], "commit");
        else
            item->result = txn_answer(answers[c], &item->stored, &item->stored_len, item->position,
                                      item->stale_key);
        if (item->result == TXN_STALE)
            item->stale_in_batch = stale_in_batch(items, sent[c], item->stale_key);
        if (answers[c])
            freeReplyObject(answers[c]);
        txn_args_free(&args[c]);
    }
    free(args);
    free(calls);
    free(answers);
    free(results);
    free(sent);
}

/* What an idempotency record's HMGET req reply says. */
static txn_result_t lookup_answer(const redisReply *answer, const char *idempotency_key,
                                  const char *fingerprint, uint8_t **stored_p, size_t *stored_len)
{
    if (answer->type != REDIS_REPLY_ARRAY || answer->elements != 2) {
        log_error("unexpected answer to an idempotency lookup", "{s:s}", "key", idempotency_key);
        return TXN_REFUSED;
    }
    const redisReply *req = answer->element[0], *stored = answer->element[1];
    bool has_req = req->type == REDIS_REPLY_STRING;
    bool has_stored = stored->type == REDIS_REPLY_STRING;
    if (!has_req && !has_stored)
        return TXN_NEW;
    if (strcmp(has_req ? req->str : "", fingerprint ? fingerprint : "") == 0) {
        give_stored(has_stored ? stored : NULL, stored_p, stored_len);
        return TXN_DUPLICATE;
    }
    return TXN_KEY_REUSED;
}

txn_result_t txn_lookup(store_t *store, const char *idempotency_key, const char *fingerprint,
                        uint8_t **stored_p, size_t *stored_len)
{
    if (stored_p)
        *stored_p = NULL;
    if (stored_len)
        *stored_len = 0;
    if (!idempotency_key || !*idempotency_key)
        return TXN_NEW;
    redisReply *answer = NULL;
    store_result_t result = store_command(store, &answer, "HMGET %s req reply", idempotency_key);
    if (result != STORE_OK) {
        if (answer)
            freeReplyObject(answer);
        return from_store(store, result, "lookup");
    }
    txn_result_t outcome =
        lookup_answer(answer, idempotency_key, fingerprint, stored_p, stored_len);
    freeReplyObject(answer);
    return outcome;
}

/* The lookups of items as one pipeline: on their own, or (fill) in the
 * pipeline of the store's next snapshot fill, whose outcome is returned. */
static store_result_t lookup_many(store_t *store, txn_lookup_item_t *items, size_t count, bool fill)
{
    store_cmd_t *cmds = calloc(count ? count : 1, sizeof *cmds);
    const char **argv = calloc(count ? count * 4 : 1, sizeof *argv);
    redisReply **answers = calloc(count ? count : 1, sizeof *answers);
    store_result_t *results = calloc(count ? count : 1, sizeof *results);
    size_t *sent = calloc(count ? count : 1, sizeof *sent); /* item index of each command */
    bool ready = cmds && argv && answers && results && sent;
    size_t ncmds = 0;
    for (size_t i = 0; i < count; i++) {
        txn_lookup_item_t *item = &items[i];
        item->stored = NULL;
        item->stored_len = 0;
        item->result = TXN_NEW;
        if (!item->idempotency_key || !*item->idempotency_key)
            continue;
        if (!ready) {
            log_error("out of memory for the idempotency lookups", NULL);
            item->result = TXN_REFUSED;
            continue;
        }
        const char **args = &argv[ncmds * 4];
        args[0] = "HMGET";
        args[1] = item->idempotency_key;
        args[2] = "req";
        args[3] = "reply";
        cmds[ncmds].argc = 4;
        cmds[ncmds].argv = args;
        sent[ncmds++] = i;
    }
    store_result_t outcome = STORE_OK;
    if (fill && ready)
        outcome = store_snapshot_fill_with(store, cmds, ncmds, answers, results);
    else if (fill)
        outcome = store_snapshot_fill(store);
    else if (ncmds > 0)
        store_command_many(store, cmds, ncmds, answers, results);
    for (size_t c = 0; c < ncmds; c++) {
        txn_lookup_item_t *item = &items[sent[c]];
        if (results[c] != STORE_OK)
            item->result = from_store(store, results[c], "lookup");
        else
            item->result = lookup_answer(answers[c], item->idempotency_key, item->fingerprint,
                                         &item->stored, &item->stored_len);
        if (answers[c])
            freeReplyObject(answers[c]);
    }
    free(cmds);
    free(argv);
    free(answers);
    free(results);
    free(sent);
    return outcome;
}

void txn_lookup_many(store_t *store, txn_lookup_item_t *items, size_t count)
{
    if (count > 0)
        lookup_many(store, items, count, false);
}

store_result_t txn_lookup_many_fill(store_t *store, txn_lookup_item_t *items, size_t count)
{
    return lookup_many(store, items, count, true);
}
