/* Atomic commits through commit.lua against a real redis-server: creation,
 * version guards, deletes, idempotency (duplicate, reused key),
 * all-or-nothing, and the event written with the state. */
#include "envelope.pb-c.h"
#include "harness.h"
#include "ids.h"
#include "txn.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static harness_redis_t redis;
static store_t *store;

static long long integer_of(const char *format, const char *key)
{
    redisReply *reply = NULL;
    assert_int_equal(store_command(store, &reply, format, key), STORE_OK);
    assert_int_equal(reply->type, REDIS_REPLY_INTEGER);
    long long value = reply->integer;
    freeReplyObject(reply);
    return value;
}

static bool exists(const char *key)
{
    return integer_of("EXISTS %s", key) == 1;
}

static bool indexed(const char *zset, const char *member)
{
    redisReply *reply = NULL;
    assert_int_equal(store_command(store, &reply, "ZSCORE %s %s", zset, member), STORE_OK);
    bool found = reply->type == REDIS_REPLY_STRING && strcmp(reply->str, "0") == 0;
    freeReplyObject(reply);
    return found;
}

/* A message to store: any protobuf type does. */
static Passerelle__HealthReply sample(const char *service)
{
    Passerelle__HealthReply msg = PASSERELLE__HEALTH_REPLY__INIT;
    msg.service = (char *)service;
    msg.version = "1";
    msg.has_uptime_s = true;
    msg.uptime_s = 42;
    return msg;
}

static void assert_record(const char *key, uint64_t expected_version, const char *service)
{
    uint64_t version;
    uint8_t *data;
    size_t len;
    assert_int_equal(store_record_get(store, key, &version, &data, &len), STORE_OK);
    assert_int_equal(version, expected_version);
    assert_non_null(data);
    Passerelle__HealthReply *msg = passerelle__health_reply__unpack(NULL, len, data);
    assert_non_null(msg);
    assert_string_equal(msg->service, service);
    passerelle__health_reply__free_unpacked(msg, NULL);
    free(data);
}

static void test_create_with_event(void **state)
{
    (void)state;
    Passerelle__HealthReply msg = sample("first");
    txn_t *txn = txn_new("idem:create", "fp-create", 60);
    assert_non_null(txn);
    txn_put_message(txn, "rec:create", 1, &msg.base);
    txn_index_add(txn, "idx:create", "U1");
    txn_event(txn, "stream:create", "/passerelle/test", "unit.registered", "units/U1", &msg.base);
    char event_id[ID_LEN];
    strcpy(event_id, txn_event_id(txn));
    assert_true(id_valid('E', event_id));

    char position[32] = "unset";
    assert_int_equal(txn_commit(txn, store, "R1", 2, NULL, NULL, position), TXN_COMMITTED);
    txn_destroy(&txn);
    assert_null(txn);
    assert_non_null(strchr(position, '-'));

    assert_record("rec:create", 1, "first");
    assert_true(indexed("idx:create", "U1"));
    assert_int_equal(integer_of("XLEN %s", "stream:create"), 1);
    long long ttl = integer_of("TTL %s", "idem:create");
    assert_true(ttl > 0 && ttl <= 60);

    /* The stream entry: type and the packed CloudEvent. */
    redisReply *range = NULL;
    assert_int_equal(store_command(store, &range, "XRANGE %s - +", "stream:create"), STORE_OK);
    assert_int_equal(range->elements, 1);
    redisReply *entry = range->element[0];
    assert_string_equal(entry->element[0]->str, position);
    redisReply *fields = entry->element[1];
    assert_int_equal(fields->elements, 4);
    assert_string_equal(fields->element[0]->str, "type");
    assert_string_equal(fields->element[1]->str, "unit.registered");
    assert_string_equal(fields->element[2]->str, "event");
    Passerelle__Event *event = passerelle__event__unpack(NULL, fields->element[3]->len,
                                                         (const uint8_t *)fields->element[3]->str);
    assert_non_null(event);
    assert_string_equal(event->id, event_id);
    assert_string_equal(event->source, "/passerelle/test");
    assert_string_equal(event->type, "unit.registered");
    assert_string_equal(event->subject, "units/U1");
    assert_string_equal(event->specversion, "1.0");
    assert_string_equal(event->datacontenttype, "application/protobuf");
    assert_string_equal(event->dataschema, "passerelle.HealthReply");
    assert_int_equal(strlen(event->time), TIME_RFC3339_LEN - 1);
    assert_int_equal(event->time[TIME_RFC3339_LEN - 2], 'Z');
    assert_true(event->has_data);
    Passerelle__HealthReply *data =
        passerelle__health_reply__unpack(NULL, event->data.len, event->data.data);
    assert_non_null(data);
    assert_string_equal(data->service, "first");
    assert_int_equal(data->uptime_s, 42);
    passerelle__health_reply__free_unpacked(data, NULL);
    passerelle__event__free_unpacked(event, NULL);
    freeReplyObject(range);
}

static void test_duplicate_and_reused_key(void **state)
{
    (void)state;
    Passerelle__HealthReply msg = sample("dup");
    txn_t *txn = txn_new("idem:dup", "fp-dup", 60);
    txn_put_message(txn, "rec:dup", 1, &msg.base);
    txn_event(txn, "stream:dup", "/passerelle/test", "unit.registered", NULL, &msg.base);
    assert_int_equal(txn_commit(txn, store, "first reply", 11, NULL, NULL, NULL), TXN_COMMITTED);
    txn_destroy(&txn);

    /* The same request again (a client retry): built afresh, as a handler
     * would, yet nothing is written and the first reply comes back. */
    txn = txn_new("idem:dup", "fp-dup", 60);
    txn_put_message(txn, "rec:dup-other", 1, &msg.base);
    txn_index_add(txn, "idx:dup", "X");
    txn_event(txn, "stream:dup", "/passerelle/test", "unit.registered", NULL, &msg.base);
    uint8_t *stored = NULL;
    size_t stored_len = 0;
    char position[32] = "unset";
    assert_int_equal(txn_commit(txn, store, "second reply", 12, &stored, &stored_len, position),
                     TXN_DUPLICATE);
    txn_destroy(&txn);
    assert_int_equal(stored_len, 11);
    assert_memory_equal(stored, "first reply", 11);
    free(stored);
    assert_false(exists("rec:dup-other"));
    assert_false(exists("idx:dup"));
    assert_int_equal(integer_of("XLEN %s", "stream:dup"), 1);

    /* The same key for another request. */
    txn = txn_new("idem:dup", "fp-something-else", 60);
    txn_put_message(txn, "rec:dup-other", 1, &msg.base);
    stored = (uint8_t *)1;
    assert_int_equal(txn_commit(txn, store, "third", 5, &stored, &stored_len, NULL),
                     TXN_KEY_REUSED);
    assert_null(stored);
    txn_destroy(&txn);
    assert_false(exists("rec:dup-other"));

    /* The lookup that runs before any work says the same. */
    assert_int_equal(txn_lookup(store, "idem:dup", "fp-dup", &stored, &stored_len), TXN_DUPLICATE);
    assert_int_equal(stored_len, 11);
    assert_memory_equal(stored, "first reply", 11);
    free(stored);
    assert_int_equal(txn_lookup(store, "idem:dup", "other", NULL, NULL), TXN_KEY_REUSED);
    assert_int_equal(txn_lookup(store, "idem:never", "fp", &stored, &stored_len), TXN_NEW);
    assert_null(stored);

    /* The same lookups for many requests at once, in one pipeline. */
    txn_lookup_item_t items[] = {{.idempotency_key = "idem:never", .fingerprint = "fp"},
                                 {.idempotency_key = "idem:dup", .fingerprint = "fp-dup"},
                                 {.idempotency_key = NULL, .fingerprint = NULL},
                                 {.idempotency_key = "idem:dup", .fingerprint = "other"}};
    txn_lookup_many(store, items, 4);
    assert_int_equal(items[0].result, TXN_NEW);
    assert_null(items[0].stored);
    assert_int_equal(items[1].result, TXN_DUPLICATE);
    assert_int_equal(items[1].stored_len, 11);
    assert_memory_equal(items[1].stored, "first reply", 11);
    free(items[1].stored);
    assert_int_equal(items[2].result, TXN_NEW);
    assert_int_equal(items[3].result, TXN_KEY_REUSED);
    assert_null(items[3].stored);
    txn_lookup_many(store, items, 0);

    /* The same in the pipeline of a snapshot's fill, with a record. */
    store_snapshot_begin(store);
    uint64_t version = 0;
    uint8_t *data = NULL;
    size_t len = 0;
    assert_int_equal(store_record_get(store, "rec:dup", &version, &data, &len), STORE_LOST);
    assert_int_equal(txn_lookup_many_fill(store, items, 4), STORE_OK);
    assert_int_equal(items[0].result, TXN_NEW);
    assert_int_equal(items[1].result, TXN_DUPLICATE);
    assert_int_equal(items[1].stored_len, 11);
    assert_memory_equal(items[1].stored, "first reply", 11);
    free(items[1].stored);
    assert_int_equal(items[2].result, TXN_NEW);
    assert_int_equal(items[3].result, TXN_KEY_REUSED);
    assert_int_equal(store_record_get(store, "rec:dup", &version, &data, &len), STORE_OK);
    assert_int_equal(version, 1);
    free(data);
    /* nothing missed: the lookups alone */
    assert_int_equal(txn_lookup_many_fill(store, items, 2), STORE_OK);
    assert_int_equal(items[0].result, TXN_NEW);
    assert_int_equal(items[1].result, TXN_DUPLICATE);
    free(items[1].stored);
    store_snapshot_end(store);
}

static void test_guards(void **state)
{
    (void)state;
    Passerelle__HealthReply v1 = sample("v1"), v2 = sample("v2");
    txn_t *txn = txn_new(NULL, NULL, 0);
    txn_put_message(txn, "rec:guard", 1, &v1.base);
    char position[32] = "unset";
    assert_int_equal(txn_commit(txn, store, NULL, 0, NULL, NULL, position), TXN_COMMITTED);
    assert_string_equal(position, "");
    txn_destroy(&txn);

    /* Creating it again: it exists, so the implicit guard at 0 fails. */
    txn = txn_new(NULL, NULL, 0);
    txn_put_message(txn, "rec:guard", 1, &v2.base);
    assert_int_equal(txn_commit(txn, store, NULL, 0, NULL, NULL, NULL), TXN_STALE);
    txn_destroy(&txn);
    assert_record("rec:guard", 1, "v1");

    /* An update from the version read. */
    txn = txn_new(NULL, NULL, 0);
    txn_put_message(txn, "rec:guard", 2, &v2.base);
    assert_int_equal(txn_commit(txn, store, NULL, 0, NULL, NULL, NULL), TXN_COMMITTED);
    txn_destroy(&txn);
    assert_record("rec:guard", 2, "v2");

    /* Explicit guards on records that are not written. */
    txn = txn_new(NULL, NULL, 0);
    txn_guard(txn, "rec:guard", 2);
    txn_guard(txn, "rec:absent", 0);
    txn_index_add(txn, "idx:guard", "A");
    assert_int_equal(txn_commit(txn, store, NULL, 0, NULL, NULL, NULL), TXN_COMMITTED);
    txn_destroy(&txn);
    assert_true(indexed("idx:guard", "A"));

    txn = txn_new(NULL, NULL, 0);
    txn_guard(txn, "rec:guard", 1); /* was read before the update */
    txn_index_remove(txn, "idx:guard", "A");
    assert_int_equal(txn_commit(txn, store, NULL, 0, NULL, NULL, NULL), TXN_STALE);
    txn_destroy(&txn);
    assert_true(indexed("idx:guard", "A"));

    txn = txn_new(NULL, NULL, 0);
    txn_guard(txn, "rec:guard", 2);
    txn_index_remove(txn, "idx:guard", "A");
    assert_int_equal(txn_commit(txn, store, NULL, 0, NULL, NULL, NULL), TXN_COMMITTED);
    txn_destroy(&txn);
    assert_false(indexed("idx:guard", "A"));
}

static void test_stale_writes_nothing(void **state)
{
    (void)state;
    Passerelle__HealthReply msg = sample("atomic");
    /* The last check fails after several that pass: still nothing at all
     * is written, not even the idempotency record. */
    txn_t *txn = txn_new("idem:atomic", "fp", 60);
    txn_guard(txn, "rec:atomic-absent", 0);
    txn_put_message(txn, "rec:atomic-new", 1, &msg.base);
    txn_put_message(txn, "rec:guard", 3, &msg.base);          /* it is at 2: fine */
    txn_put_message(txn, "rec:atomic-missing", 2, &msg.base); /* absent, not at 1 */
    txn_index_add(txn, "idx:atomic", "M");
    txn_event(txn, "stream:atomic", "/passerelle/test", "unit.registered", NULL, &msg.base);
    assert_int_equal(txn_commit(txn, store, "reply", 5, NULL, NULL, NULL), TXN_STALE);
    txn_destroy(&txn);

    assert_false(exists("rec:atomic-new"));
    assert_false(exists("rec:atomic-missing"));
    assert_record("rec:guard", 2, "v2");
    assert_false(exists("idx:atomic"));
    assert_false(exists("stream:atomic"));
    assert_false(exists("idem:atomic"));
    /* Being stale did not burn the key: the retry on fresh state works. */
    assert_int_equal(txn_lookup(store, "idem:atomic", "fp", NULL, NULL), TXN_NEW);
}

/* Counters move with the records: once per commit, never on a duplicate
 * or a stale commit. */
static void test_counters(void **state)
{
    (void)state;
    Passerelle__HealthReply msg = sample("counted");
    txn_t *txn = txn_new("idem:count", "fp-count", 60);
    txn_put_message(txn, "rec:count", 1, &msg.base);
    txn_counter_add(txn, "progress:count", "all", 3);
    txn_counter_add(txn, "progress:count", "level:LOC2", 1);
    txn_counter_add(txn, "progress:other", "all", -2);
    assert_int_equal(txn_commit(txn, store, "r", 1, NULL, NULL, NULL), TXN_COMMITTED);
    /* The same request again: nothing counted twice. */
    assert_int_equal(txn_commit(txn, store, "r", 1, NULL, NULL, NULL), TXN_DUPLICATE);
    txn_destroy(&txn);

    /* Stale (the record exists now): nothing counted. */
    txn = txn_new("idem:count-stale", "fp", 60);
    txn_put_message(txn, "rec:count", 1, &msg.base);
    txn_counter_add(txn, "progress:count", "all", 100);
    assert_int_equal(txn_commit(txn, store, "r", 1, NULL, NULL, NULL), TXN_STALE);
    txn_destroy(&txn);

    redisReply *reply = NULL;
    assert_int_equal(store_command(store, &reply, "HMGET progress:count all level:LOC2"), STORE_OK);
    assert_int_equal(reply->elements, 2);
    assert_string_equal(reply->element[0]->str, "3");
    assert_string_equal(reply->element[1]->str, "1");
    freeReplyObject(reply);
    assert_int_equal(store_command(store, &reply, "HGET progress:other all"), STORE_OK);
    assert_string_equal(reply->str, "-2");
    freeReplyObject(reply);
}

static void test_broken_transaction_refused(void **state)
{
    (void)state;
    Passerelle__HealthReply msg = sample("two events");
    txn_t *txn = txn_new("idem:two", "fp", 60);
    txn_put_message(txn, "rec:two", 1, &msg.base);
    txn_event(txn, "stream:two", "/passerelle/test", "a", NULL, &msg.base);
    txn_event(txn, "stream:two", "/passerelle/test", "b", NULL, &msg.base);
    assert_int_equal(txn_commit(txn, store, NULL, 0, NULL, NULL, NULL), TXN_REFUSED);
    txn_destroy(&txn);
    assert_false(exists("rec:two"));

    /* A key that is not a record makes Redis refuse the script. */
    assert_int_equal(store_command(store, NULL, "SET %s %s", "rec:string", "x"), STORE_OK);
    txn = txn_new(NULL, NULL, 0);
    txn_guard(txn, "rec:string", 0);
    assert_int_equal(txn_commit(txn, store, NULL, 0, NULL, NULL, NULL), TXN_REFUSED);
    txn_destroy(&txn);
}

/* A transaction allowed several events appends them in order, all with
 * the records or none; a third one past the allowance breaks it. */
static void test_several_events(void **state)
{
    (void)state;
    Passerelle__HealthReply msg = sample("periods");
    txn_t *txn = txn_new("idem:several", "fp", 60);
    txn_allow_events(txn, 2);
    txn_put_message(txn, "rec:several", 1, &msg.base);
    txn_event(txn, "stream:several", "/passerelle/test", "first", "s/1", &msg.base);
    char first_id[ID_LEN];
    strcpy(first_id, txn_event_id(txn));
    txn_event(txn, "stream:several", "/passerelle/test", "second", "s/2", &msg.base);
    char position[32] = "";
    assert_int_equal(txn_commit(txn, store, "R", 1, NULL, NULL, position), TXN_COMMITTED);
    txn_destroy(&txn);
    assert_record("rec:several", 1, "periods");

    redisReply *range = NULL;
    assert_int_equal(store_command(store, &range, "XRANGE %s - +", "stream:several"), STORE_OK);
    assert_int_equal(range->elements, 2);
    assert_string_equal(range->element[0]->element[0]->str, position);
    assert_string_equal(range->element[0]->element[1]->element[1]->str, "first");
    assert_string_equal(range->element[1]->element[1]->element[1]->str, "second");
    Passerelle__Event *event =
        passerelle__event__unpack(NULL, range->element[0]->element[1]->element[3]->len,
                                  (const uint8_t *)range->element[0]->element[1]->element[3]->str);
    assert_non_null(event);
    assert_string_equal(event->id, first_id);
    passerelle__event__free_unpacked(event, NULL);
    freeReplyObject(range);

    txn = txn_new("idem:three", "fp", 60);
    txn_allow_events(txn, 2);
    txn_put_message(txn, "rec:three", 1, &msg.base);
    for (int i = 0; i < 3; i++)
        txn_event(txn, "stream:three", "/passerelle/test", "e", NULL, &msg.base);
    assert_int_equal(txn_commit(txn, store, NULL, 0, NULL, NULL, NULL), TXN_REFUSED);
    txn_destroy(&txn);
    assert_false(exists("rec:three"));
    assert_false(exists("stream:three"));
}

static void test_lost_and_back(void **state)
{
    (void)state;
    Passerelle__HealthReply msg = sample("lost");
    txn_t *txn = txn_new("idem:lost", "fp", 60);
    txn_put_message(txn, "rec:lost", 1, &msg.base);
    txn_event(txn, "stream:lost", "/passerelle/test", "unit.registered", NULL, &msg.base);

    harness_redis_kill(&redis);
    assert_int_equal(txn_commit(txn, store, "r", 1, NULL, NULL, NULL), TXN_LOST);
    assert_int_equal(txn_lookup(store, "idem:lost", "fp", NULL, NULL), TXN_LOST);
    txn_lookup_item_t items[] = {{.idempotency_key = "idem:lost", .fingerprint = "fp"},
                                 {.idempotency_key = "idem:lost-2", .fingerprint = "fp"}};
    txn_lookup_many(store, items, 2);
    assert_int_equal(items[0].result, TXN_LOST);
    assert_int_equal(items[1].result, TXN_LOST);
    store_snapshot_begin(store);
    uint64_t version = 0;
    uint8_t *data = NULL;
    size_t len = 0;
    assert_int_equal(store_record_get(store, "rec:lost", &version, &data, &len), STORE_LOST);
    assert_int_equal(txn_lookup_many_fill(store, items, 2), STORE_LOST);
    assert_int_equal(items[0].result, TXN_LOST);
    assert_int_equal(items[1].result, TXN_LOST);
    store_snapshot_end(store);
    assert_int_equal(harness_redis_restart(&redis), 0);

    /* The restarted Redis has no scripts: the reconnect loads them. */
    char position[32];
    assert_int_equal(txn_commit(txn, store, "r", 1, NULL, NULL, position), TXN_COMMITTED);
    txn_destroy(&txn);
    assert_true(position[0] != '\0');
    assert_record("rec:lost", 1, "lost");
    /* Earlier commits survived the crash. */
    assert_record("rec:create", 1, "first");

    /* And a flush between two commits is repaired by NOSCRIPT handling. */
    assert_int_equal(store_command(store, NULL, "SCRIPT FLUSH"), STORE_OK);
    txn = txn_new(NULL, NULL, 0);
    txn_put_message(txn, "rec:lost", 2, &msg.base);
    assert_int_equal(txn_commit(txn, store, NULL, 0, NULL, NULL, NULL), TXN_COMMITTED);
    txn_destroy(&txn);
    assert_record("rec:lost", 2, "lost");
}

static void test_batch(void **state)
{
    (void)state;
    Passerelle__HealthReply msg = sample("batch");
    txn_t *txns[5];
    txns[0] = txn_new(NULL, NULL, 0);
    txn_put_message(txns[0], "rec:batch1", 1, &msg.base);
    txn_event(txns[0], "stream:batch", "/passerelle/test", "unit.registered", "b", &msg.base);
    /* the same record again: stale because of the first */
    txns[1] = txn_new(NULL, NULL, 0);
    txn_put_message(txns[1], "rec:batch1", 1, &msg.base);
    /* one idempotency key twice: the second is a duplicate of the first */
    txns[2] = txn_new("idem:batch", "fp-batch", 60);
    txn_put_message(txns[2], "rec:batch2", 1, &msg.base);
    txns[3] = txn_new("idem:batch", "fp-batch", 60);
    txn_put_message(txns[3], "rec:batch3", 1, &msg.base);
    /* stale on its own: nobody in the batch wrote that key */
    txns[4] = txn_new(NULL, NULL, 0);
    txn_guard(txns[4], "rec:batch-never", 5);
    txn_put_message(txns[4], "rec:batch4", 1, &msg.base);

    /* moved out: the emptied original is still safe to destroy */
    txn_t *taken = txn_take(txns[0]);
    assert_non_null(taken);
    assert_false(txn_writes(txns[0], "rec:batch1"));
    assert_true(txn_writes(taken, "rec:batch1"));
    txn_destroy(&txns[0]);
    txns[0] = taken;

    txn_batch_item_t items[5];
    memset(items, 0, sizeof items);
    for (int i = 0; i < 5; i++) {
        items[i].txn = txns[i];
        items[i].reply = i == 2 ? "reply two" : "other";
        items[i].reply_len = strlen(items[i].reply);
    }
    txn_commit_batch(items, 5, store);
    assert_int_equal(items[0].result, TXN_COMMITTED);
    assert_true(items[0].position[0] != '\0');
    assert_int_equal(items[1].result, TXN_STALE);
    assert_string_equal(items[1].stale_key, "rec:batch1");
    assert_true(items[1].stale_in_batch);
    assert_int_equal(items[2].result, TXN_COMMITTED);
    assert_int_equal(items[3].result, TXN_DUPLICATE);
    assert_int_equal(items[3].stored_len, 9);
    assert_memory_equal(items[3].stored, "reply two", 9);
    assert_int_equal(items[4].result, TXN_STALE);
    assert_false(items[4].stale_in_batch);
    free(items[3].stored);
    assert_record("rec:batch1", 1, "batch");
    assert_record("rec:batch2", 1, "batch");
    assert_false(exists("rec:batch3"));
    assert_false(exists("rec:batch4"));

    /* A flushed script: the whole pipeline answers NOSCRIPT, is loaded
     * again and sent again. */
    assert_int_equal(store_command(store, NULL, "SCRIPT FLUSH"), STORE_OK);
    for (int i = 0; i < 5; i++)
        txn_destroy(&txns[i]);
    txns[0] = txn_new(NULL, NULL, 0);
    txn_put_message(txns[0], "rec:batch1", 2, &msg.base);
    txns[1] = txn_new(NULL, NULL, 0);
    txn_put_message(txns[1], "rec:batch4", 1, &msg.base);
    memset(items, 0, sizeof items);
    items[0].txn = txns[0];
    items[1].txn = txns[1];
    txn_commit_batch(items, 2, store);
    assert_int_equal(items[0].result, TXN_COMMITTED);
    assert_int_equal(items[1].result, TXN_COMMITTED);
    assert_record("rec:batch1", 2, "batch");
    assert_record("rec:batch4", 1, "batch");

    /* Redis gone: every item is lost, none committed. */
    harness_redis_kill(&redis);
    txn_destroy(&txns[0]);
    txns[0] = txn_new(NULL, NULL, 0);
    txn_put_message(txns[0], "rec:batch1", 3, &msg.base);
    memset(items, 0, sizeof items);
    items[0].txn = txns[0];
    items[1].txn = txns[1];
    txn_commit_batch(items, 2, store);
    assert_int_equal(items[0].result, TXN_LOST);
    assert_int_equal(items[1].result, TXN_LOST);
    assert_int_equal(harness_redis_restart(&redis), 0);
    assert_record("rec:batch1", 2, "batch");
    txn_destroy(&txns[0]);
    txn_destroy(&txns[1]);
}

/* Deletes: guarded at the version read, all or nothing with the rest of
 * the transaction, never repeated by a duplicate commit. */
static void test_delete(void **state)
{
    (void)state;
    Passerelle__HealthReply msg = sample("deleted");
    txn_t *txn = txn_new(NULL, NULL, 0);
    txn_put_message(txn, "rec:del", 1, &msg.base);
    txn_index_add(txn, "idx:del", "D");
    txn_index_add(txn, "idx:del", "E");
    assert_int_equal(txn_commit(txn, store, NULL, 0, NULL, NULL, NULL), TXN_COMMITTED);
    txn_destroy(&txn);
    txn = txn_new(NULL, NULL, 0);
    txn_put_message(txn, "rec:del", 2, &msg.base);
    assert_int_equal(txn_commit(txn, store, NULL, 0, NULL, NULL, NULL), TXN_COMMITTED);
    txn_destroy(&txn);

    /* Guarded: at an older version, or absent, it is stale. */
    txn = txn_new(NULL, NULL, 0);
    txn_delete(txn, "rec:del", 1);
    assert_true(txn_writes(txn, "rec:del"));
    assert_int_equal(txn_commit(txn, store, NULL, 0, NULL, NULL, NULL), TXN_STALE);
    txn_destroy(&txn);
    assert_record("rec:del", 2, "deleted");
    txn = txn_new(NULL, NULL, 0);
    txn_delete(txn, "rec:del-never", 1);
    assert_int_equal(txn_commit(txn, store, NULL, 0, NULL, NULL, NULL), TXN_STALE);
    txn_destroy(&txn);

    /* Atomic: a later check failing keeps the record and its index entry. */
    txn = txn_new("idem:del-atomic", "fp", 60);
    txn_delete(txn, "rec:del", 2);
    txn_index_remove(txn, "idx:del", "D");
    txn_put_message(txn, "rec:del-missing", 3, &msg.base); /* absent, not at 2 */
    assert_int_equal(txn_commit(txn, store, NULL, 0, NULL, NULL, NULL), TXN_STALE);
    txn_destroy(&txn);
    assert_record("rec:del", 2, "deleted");
    assert_true(indexed("idx:del", "D"));
    assert_false(exists("idem:del-atomic"));

    /* Applied with a put, an index removal and the event, together. */
    txn = txn_new("idem:del", "fp-del", 60);
    txn_delete(txn, "rec:del", 2);
    txn_index_remove(txn, "idx:del", "D");
    txn_put_message(txn, "rec:del-other", 1, &msg.base);
    txn_event(txn, "stream:del", "/passerelle/test", "unit.deleted", "d", &msg.base);
    assert_int_equal(txn_commit(txn, store, "gone", 4, NULL, NULL, NULL), TXN_COMMITTED);
    assert_false(exists("rec:del"));
    assert_false(indexed("idx:del", "D"));
    assert_true(indexed("idx:del", "E"));
    assert_record("rec:del-other", 1, "deleted");
    assert_int_equal(integer_of("XLEN %s", "stream:del"), 1);

    /* The record made anew: the same commit again is a duplicate and
     * deletes nothing more. */
    txn_t *again = txn_new(NULL, NULL, 0);
    txn_put_message(again, "rec:del", 1, &msg.base);
    txn_index_add(again, "idx:del", "D");
    assert_int_equal(txn_commit(again, store, NULL, 0, NULL, NULL, NULL), TXN_COMMITTED);
    txn_destroy(&again);
    uint8_t *stored = NULL;
    size_t stored_len = 0;
    assert_int_equal(txn_commit(txn, store, "gone", 4, &stored, &stored_len, NULL), TXN_DUPLICATE);
    assert_int_equal(stored_len, 4);
    assert_memory_equal(stored, "gone", 4);
    free(stored);
    txn_destroy(&txn);
    assert_record("rec:del", 1, "deleted");
    assert_true(indexed("idx:del", "D"));
    assert_int_equal(integer_of("XLEN %s", "stream:del"), 1);

    /* Version 0 is a bug: the transaction is refused, nothing written. */
    txn = txn_new(NULL, NULL, 0);
    txn_put_message(txn, "rec:del-zero", 1, &msg.base);
    txn_delete(txn, "rec:del", 0);
    assert_int_equal(txn_commit(txn, store, NULL, 0, NULL, NULL, NULL), TXN_REFUSED);
    txn_destroy(&txn);
    assert_false(exists("rec:del-zero"));
    assert_record("rec:del", 1, "deleted");
}

/* Deletes in a group commit: a later item on a record an earlier one
 * deleted is stale because of the batch; one that creates it anew is not. */
static void test_delete_batch(void **state)
{
    (void)state;
    Passerelle__HealthReply msg = sample("batch-del");
    txn_t *txn = txn_new(NULL, NULL, 0);
    txn_put_message(txn, "rec:bdel", 1, &msg.base);
    txn_put_message(txn, "rec:bdel2", 1, &msg.base);
    txn_index_add(txn, "idx:bdel", "B");
    assert_int_equal(txn_commit(txn, store, NULL, 0, NULL, NULL, NULL), TXN_COMMITTED);
    txn_destroy(&txn);

    txn_t *txns[4];
    txns[0] = txn_new("idem:bdel", "fp-bdel", 60);
    txn_delete(txns[0], "rec:bdel", 1);
    txn_index_remove(txns[0], "idx:bdel", "B");
    /* read before the first deleted it: stale, because of the batch */
    txns[1] = txn_new(NULL, NULL, 0);
    txn_put_message(txns[1], "rec:bdel", 2, &msg.base);
    /* the same request again: a duplicate, nothing more deleted */
    txns[2] = txn_new("idem:bdel", "fp-bdel", 60);
    txn_delete(txns[2], "rec:bdel2", 1);
    /* made anew after the delete: committed */
    txns[3] = txn_new(NULL, NULL, 0);
    txn_put_message(txns[3], "rec:bdel", 1, &msg.base);

    txn_batch_item_t items[4];
    memset(items, 0, sizeof items);
    for (int i = 0; i < 4; i++) {
        items[i].txn = txns[i];
        items[i].reply = "deleted";
        items[i].reply_len = 7;
    }
    txn_commit_batch(items, 4, store);
    assert_int_equal(items[0].result, TXN_COMMITTED);
    assert_int_equal(items[1].result, TXN_STALE);
    assert_string_equal(items[1].stale_key, "rec:bdel");
    assert_true(items[1].stale_in_batch);
    assert_int_equal(items[2].result, TXN_DUPLICATE);
    free(items[2].stored);
    assert_int_equal(items[3].result, TXN_COMMITTED);
    for (int i = 0; i < 4; i++)
        txn_destroy(&txns[i]);

    assert_record("rec:bdel", 1, "batch-del");
    assert_record("rec:bdel2", 1, "batch-del");
    assert_false(exists("idx:bdel"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_with_event),
        cmocka_unit_test(test_duplicate_and_reused_key),
        cmocka_unit_test(test_guards),
        cmocka_unit_test(test_stale_writes_nothing),
        cmocka_unit_test(test_counters),
        cmocka_unit_test(test_broken_transaction_refused),
        cmocka_unit_test(test_several_events),
        cmocka_unit_test(test_lost_and_back),
        cmocka_unit_test(test_batch),
        cmocka_unit_test(test_delete),
        cmocka_unit_test(test_delete_batch),
    };
    return harness_store_tests(tests, &redis, &store);
}
