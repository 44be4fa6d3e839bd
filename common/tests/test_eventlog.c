/* Consumer groups over a real redis-server: every event once per group,
 * done markers, recovery of one's own pending entries after a crash,
 * takeover of a dead consumer's entries, dead-lettering, the health table
 * readiness reads, and listing. */
#include "envelope.pb-c.h"
#include "eventlog.h"
#include "harness.h"
#include "ids.h"
#include "txn.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

static harness_redis_t redis;
static store_t *store;

#define MAX_SEEN 64

typedef struct {
    int calls;
    bool fail; /* leave every entry pending */
    char ids[MAX_SEEN][ID_LEN];
    char positions[MAX_SEEN][48];
    char done_keys[MAX_SEEN][256];
} seen_t;

static int record_event(void *arg, const char *position, const Passerelle__Event *event,
                        const char *done_key)
{
    seen_t *seen = arg;
    if (seen->calls < MAX_SEEN) {
        snprintf(seen->ids[seen->calls], ID_LEN, "%s", event->id);
        snprintf(seen->positions[seen->calls], sizeof seen->positions[0], "%s", position);
        snprintf(seen->done_keys[seen->calls], sizeof seen->done_keys[0], "%s", done_key);
    }
    seen->calls++;
    return seen->fail ? -1 : 0;
}

/* Appends an event as a producer does; its id goes to id_out. */
static void append_event(const char *stream, const char *type, char id_out[ID_LEN])
{
    Passerelle__HealthReply data = PASSERELLE__HEALTH_REPLY__INIT;
    data.service = (char *)type;
    txn_t *txn = txn_new(NULL, NULL, 0);
    txn_event(txn, stream, "/passerelle/test", type, "things/1", &data.base);
    if (id_out)
        snprintf(id_out, ID_LEN, "%s", txn_event_id(txn));
    assert_int_equal(txn_commit(txn, store, NULL, 0, NULL, NULL, NULL), TXN_COMMITTED);
    txn_destroy(&txn);
}

static consumer_t *new_consumer(store_t *own_store, const char *stream, const char *group,
                                const char *name, int claim_idle_ms, int max_deliveries)
{
    consumer_config_t cfg = {
        .stream = stream,
        .group = group,
        .consumer = name,
        .claim_idle_ms = claim_idle_ms,
        .max_deliveries = max_deliveries,
        .batch = 4,
    };
    consumer_t *consumer = consumer_new(own_store, &cfg);
    assert_non_null(consumer);
    return consumer;
}

/* Polls until a poll finds nothing; returns the total handled. */
static int drain(consumer_t *consumer, seen_t *seen)
{
    int total = 0;
    for (int i = 0; i < 100; i++) {
        int handled = consumer_poll(consumer, 5, record_event, seen);
        assert_true(handled >= 0);
        if (handled == 0)
            return total;
        total += handled;
    }
    fail_msg("the consumer never ran dry");
    return total;
}

static long long pending_count(const char *stream, const char *group)
{
    redisReply *reply = NULL;
    assert_int_equal(store_command(store, &reply, "XPENDING %s %s", stream, group), STORE_OK);
    assert_int_equal(reply->type, REDIS_REPLY_ARRAY);
    long long count = reply->element[0]->integer;
    freeReplyObject(reply);
    return count;
}

static long long stream_length(const char *stream)
{
    redisReply *reply = NULL;
    assert_int_equal(store_command(store, &reply, "XLEN %s", stream), STORE_OK);
    long long length = reply->integer;
    freeReplyObject(reply);
    return length;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A crashed consumer: reads new entries under its name and never acks. */
static void read_without_ack(const char *stream, const char *group, const char *name)
{
    redisReply *reply = NULL;
    assert_int_equal(store_command(store, &reply, "XREADGROUP GROUP %s %s COUNT 100 STREAMS %s >",
                                   group, name, stream),
                     STORE_OK);
    assert_int_equal(reply->type, REDIS_REPLY_ARRAY);
    freeReplyObject(reply);
}

static void test_every_event_once_per_group(void **state)
{
    (void)state;
    const char *stream = "ev:once";
    char ids[6][ID_LEN];
    for (int i = 0; i < 6; i++)
        append_event(stream, "thing.happened", ids[i]);

    /* Two consumers of one group share the events... */
    consumer_t *a = new_consumer(store, stream, "g1", "a", 60000, 10);
    store_config_t cfg;
    harness_redis_config(&redis, &cfg);
    store_t *store_b = store_new(&cfg);
    consumer_t *b = new_consumer(store_b, stream, "g1", "b", 60000, 10);
    seen_t seen = {0};
    assert_int_equal(consumer_poll(a, 5, record_event, &seen), 4); /* one batch */
    assert_int_equal(consumer_poll(b, 5, record_event, &seen), 2);
    assert_int_equal(consumer_poll(a, 5, record_event, &seen), 0);
    assert_int_equal(consumer_poll(b, 5, record_event, &seen), 0);
    assert_int_equal(seen.calls, 6);
    for (int i = 0; i < 6; i++) {
        assert_string_equal(seen.ids[i], ids[i]);
        char expected[256];
        consumer_done_key(a, ids[i], expected, sizeof expected);
        assert_string_equal(seen.done_keys[i], expected);
    }
    assert_int_equal(pending_count(stream, "g1"), 0);

    /* ...and another group sees all of them again, in order. */
    consumer_t *other = new_consumer(store, stream, "g2", "a", 60000, 10);
    seen_t seen_other = {0};
    assert_int_equal(drain(other, &seen_other), 6);
    for (int i = 0; i < 6; i++)
        assert_string_equal(seen_other.ids[i], ids[i]);

    /* New events arrive to both groups. */
    char late[ID_LEN];
    append_event(stream, "thing.happened", late);
    seen_t seen_late = {0};
    assert_int_equal(drain(b, &seen_late), 1);
    assert_int_equal(drain(other, &seen_late), 1);
    assert_string_equal(seen_late.ids[0], late);
    assert_string_equal(seen_late.ids[1], late);

    consumer_destroy(&a);
    consumer_destroy(&b);
    consumer_destroy(&other);
    assert_null(a);
    store_destroy(&store_b);
}

static void test_done_marker_skips(void **state)
{
    (void)state;
    const char *stream = "ev:done";
    char done_id[ID_LEN], fresh_id[ID_LEN];
    append_event(stream, "thing.happened", done_id);
    append_event(stream, "thing.happened", fresh_id);

    consumer_t *consumer = new_consumer(store, stream, "g", "c", 60000, 10);
    char done_key[256];
    consumer_done_key(consumer, done_id, done_key, sizeof done_key);
    assert_int_equal(store_command(store, NULL, "SET %s 1", done_key), STORE_OK);

    seen_t seen = {0};
    assert_int_equal(drain(consumer, &seen), 2); /* the skipped one counts */
    assert_int_equal(seen.calls, 1);
    assert_string_equal(seen.ids[0], fresh_id);
    assert_int_equal(pending_count(stream, "g"), 0);

    /* The handled event got its marker, with an expiry. */
    redisReply *reply = NULL;
    consumer_done_key(consumer, fresh_id, done_key, sizeof done_key);
    assert_int_equal(store_command(store, &reply, "TTL %s", done_key), STORE_OK);
    assert_true(reply->integer > 0);
    freeReplyObject(reply);
    consumer_destroy(&consumer);
}

static void test_own_pending_after_crash(void **state)
{
    (void)state;
    const char *stream = "ev:crash";
    consumer_t *consumer = new_consumer(store, stream, "g", "worker-1", 60000, 10);
    seen_t seen = {0};
    assert_int_equal(consumer_poll(consumer, 5, record_event, &seen), 0); /* makes the group */
    consumer_destroy(&consumer);

    char id[ID_LEN];
    append_event(stream, "thing.happened", id);
    read_without_ack(stream, "g", "worker-1");
    assert_int_equal(pending_count(stream, "g"), 1);

    /* The same consumer name, restarted: its pending entry comes first,
     * long before anyone could claim it as abandoned. */
    consumer = new_consumer(store, stream, "g", "worker-1", 60000, 10);
    assert_int_equal(consumer_poll(consumer, 5, record_event, &seen), 1);
    assert_int_equal(seen.calls, 1);
    assert_string_equal(seen.ids[0], id);
    assert_int_equal(pending_count(stream, "g"), 0);
    assert_int_equal(drain(consumer, &seen), 0);
    consumer_destroy(&consumer);
}

static void test_claim_from_dead_consumer(void **state)
{
    (void)state;
    const char *stream = "ev:claim";
    consumer_t *survivor = new_consumer(store, stream, "g", "survivor", 100, 10);
    seen_t seen = {0};
    assert_int_equal(consumer_poll(survivor, 5, record_event, &seen), 0);

    char id[ID_LEN];
    append_event(stream, "thing.happened", id);
    read_without_ack(stream, "g", "dead");
    assert_int_equal(pending_count(stream, "g"), 1);

    sleep_ms(200); /* longer than claim_idle_ms */
    assert_int_equal(drain(survivor, &seen), 1);
    assert_int_equal(seen.calls, 1);
    assert_string_equal(seen.ids[0], id);
    assert_int_equal(pending_count(stream, "g"), 0);
    consumer_destroy(&survivor);
}

static void test_dead_letter_after_max_deliveries(void **state)
{
    (void)state;
    const char *stream = "ev:poison";
    char id[ID_LEN];
    append_event(stream, "thing.happened", id);
    consumer_t *consumer = new_consumer(store, stream, "g", "c", 1, 3);
    seen_t seen = {.fail = true};

    for (int i = 0; i < 50 && stream_length("ev:poison:dead:g") == 0; i++) {
        assert_true(consumer_poll(consumer, 5, record_event, &seen) >= 0);
        sleep_ms(5);
    }
    /* Handled at each delivery up to the limit, then moved aside. */
    assert_int_equal(seen.calls, 3);
    assert_int_equal(stream_length("ev:poison:dead:g"), 1);
    assert_int_equal(pending_count(stream, "g"), 0);

    redisReply *range = NULL;
    assert_int_equal(store_command(store, &range, "XRANGE %s - +", "ev:poison:dead:g"), STORE_OK);
    redisReply *fields = range->element[0]->element[1];
    bool has_event = false, has_position = false;
    for (size_t i = 0; i + 1 < fields->elements; i += 2) {
        if (strcmp(fields->element[i]->str, "event") == 0)
            has_event = true;
        if (strcmp(fields->element[i]->str, "position") == 0)
            has_position = true;
    }
    assert_true(has_event);
    assert_true(has_position);
    freeReplyObject(range);

    /* The group moves on. */
    seen.fail = false;
    char next[ID_LEN];
    append_event(stream, "thing.happened", next);
    assert_int_equal(drain(consumer, &seen), 1);
    assert_string_equal(seen.ids[3], next);
    consumer_destroy(&consumer);
}

static void test_crash_loop_dead_lettered(void **state)
{
    (void)state;
    /* An event that kills its consumer each time: every restart re-reads
     * it as its own pending entry, which counts as a delivery. */
    const char *stream = "ev:crashloop";
    append_event(stream, "thing.happened", NULL);
    seen_t seen = {.fail = true};
    for (int restart = 0; restart < 5; restart++) {
        consumer_t *consumer = new_consumer(store, stream, "g", "c", 60000, 2);
        assert_int_equal(consumer_poll(consumer, 5, record_event, &seen), 1);
        consumer_destroy(&consumer);
        if (stream_length("ev:crashloop:dead:g") == 1)
            break;
    }
    assert_int_equal(seen.calls, 2);
    assert_int_equal(stream_length("ev:crashloop:dead:g"), 1);
    assert_int_equal(pending_count(stream, "g"), 0);
}

static void test_garbage_dead_lettered(void **state)
{
    (void)state;
    const char *stream = "ev:garbage";
    char before[ID_LEN], after[ID_LEN];
    append_event(stream, "thing.happened", before);
    assert_int_equal(
        store_command(store, NULL, "XADD %s * type x event %s", stream, "not a protobuf \xff\xff"),
        STORE_OK);
    assert_int_equal(store_command(store, NULL, "XADD %s * something else", stream), STORE_OK);
    append_event(stream, "thing.happened", after);

    consumer_t *consumer = new_consumer(store, stream, "g", "c", 60000, 10);
    seen_t seen = {0};
    assert_int_equal(drain(consumer, &seen), 4);
    assert_int_equal(seen.calls, 2);
    assert_string_equal(seen.ids[0], before);
    assert_string_equal(seen.ids[1], after);
    assert_int_equal(stream_length("ev:garbage:dead:g"), 2);
    assert_int_equal(pending_count(stream, "g"), 0);
    consumer_destroy(&consumer);
}

static void test_group_deleted_and_redis_down(void **state)
{
    (void)state;
    const char *stream = "ev:vanish";
    char first[ID_LEN], second[ID_LEN];
    append_event(stream, "thing.happened", first);
    consumer_t *consumer = new_consumer(store, stream, "g", "c", 60000, 10);
    seen_t seen = {0};
    assert_int_equal(drain(consumer, &seen), 1);

    assert_int_equal(store_command(store, NULL, "XGROUP DESTROY %s g", stream), STORE_OK);
    append_event(stream, "thing.happened", second);
    /* The group is made again from the start; the done marker keeps the
     * first event from being handled twice. */
    for (int i = 0; i < 10 && seen.calls < 2; i++)
        consumer_poll(consumer, 5, record_event, &seen);
    assert_int_equal(seen.calls, 2);
    assert_string_equal(seen.ids[1], second);

    harness_redis_kill(&redis);
    assert_int_equal(consumer_poll(consumer, 5, record_event, &seen), -1);
    assert_int_equal(harness_redis_restart(&redis), 0);
    assert_int_equal(drain(consumer, &seen), 0);
    assert_int_equal(seen.calls, 2);
    consumer_destroy(&consumer);
}

/* Polls the health of stream and group until its idle time reaches at
 * least ms (time passing, not a sleep that hopes for it); returns it. */
static int64_t idle_at_least(const char *stream, const char *group, int64_t ms)
{
    consumer_health_t health;
    for (int i = 0; i < 2000; i++) {
        consumer_health(stream, group, &health);
        assert_int_equal(health.state, CONSUMER_RUNNING);
        if (health.idle_ms >= ms)
            return health.idle_ms;
        sleep_ms(1);
    }
    fail_msg("idle stayed under %lld ms", (long long)ms);
    return 0;
}

/* The health table: absent until made, running and beating at each poll
 * Redis answers (not at one it does not), stalled-looking between polls,
 * counting what it handled and dead-lettered, stopped once destroyed; a
 * laggard among two consumers of one group shows. */
static void test_health_beats(void **state)
{
    (void)state;
    const char *stream = "ev:health";
    consumer_health_t health;
    consumer_health(stream, "g", &health);
    assert_int_equal(health.state, CONSUMER_ABSENT);

    consumer_t *consumer = new_consumer(store, stream, "g", "c", 60000, 10);
    consumer_health(stream, "g", &health);
    assert_int_equal(health.state, CONSUMER_RUNNING);
    assert_true(health.idle_ms < 1000);
    assert_int_equal(health.handled, 0);
    consumer_health(stream, "other", &health);
    assert_int_equal(health.state, CONSUMER_ABSENT);

    append_event(stream, "thing.happened", NULL);
    append_event(stream, "thing.happened", NULL);
    assert_int_equal(store_command(store, NULL, "XADD %s * junk 1", stream), STORE_OK);
    seen_t seen = {0};
    int64_t idle = idle_at_least(stream, "g", 20);
    assert_int_equal(drain(consumer, &seen), 3);
    consumer_health(stream, "g", &health);
    assert_true(health.idle_ms < idle);
    assert_int_equal(health.handled, 3);
    assert_int_equal(health.dead_lettered, 1);
    assert_int_equal(seen.calls, 2);

    /* Redis away: the poll fails and does not beat. */
    idle = idle_at_least(stream, "g", 20);
    harness_redis_kill(&redis);
    assert_int_equal(consumer_poll(consumer, 5, record_event, &seen), -1);
    consumer_health(stream, "g", &health);
    assert_true(health.idle_ms >= idle);
    assert_int_equal(harness_redis_restart(&redis), 0);
    idle = health.idle_ms;
    assert_int_equal(consumer_poll(consumer, 5, record_event, &seen), 0);
    consumer_health(stream, "g", &health);
    assert_true(health.idle_ms < idle);

    /* A beat without a poll (a replica standing by). */
    idle = idle_at_least(stream, "g", 20);
    consumer_beat(consumer);
    consumer_health(stream, "g", &health);
    assert_true(health.idle_ms < idle);

    /* Two of one group: the one that has not passed shows. */
    consumer_t *laggard = new_consumer(store, stream, "g", "d", 60000, 10);
    idle = idle_at_least(stream, "g", 20);
    assert_int_equal(consumer_poll(consumer, 5, record_event, &seen), 0);
    consumer_health(stream, "g", &health);
    assert_true(health.idle_ms >= idle);
    consumer_destroy(&laggard);
    consumer_health(stream, "g", &health);
    assert_true(health.idle_ms < idle);

    consumer_destroy(&consumer);
    consumer_health(stream, "g", &health);
    assert_int_equal(health.state, CONSUMER_STOPPED);
    assert_int_equal(health.handled, 3);
    /* Made again: running, and its counts go on. */
    consumer = new_consumer(store, stream, "g", "c", 60000, 10);
    consumer_health(stream, "g", &health);
    assert_int_equal(health.state, CONSUMER_RUNNING);
    assert_int_equal(health.handled, 3);
    assert_int_equal(health.dead_lettered, 1);
    consumer_destroy(&consumer);
}

static void test_list_pages(void **state)
{
    (void)state;
    const char *stream = "ev:list";
    char ids[5][ID_LEN];
    for (int i = 0; i < 3; i++)
        append_event(stream, "thing.happened", ids[i]);
    assert_int_equal(store_command(store, NULL, "XADD %s * junk 1", stream), STORE_OK);
    for (int i = 3; i < 5; i++)
        append_event(stream, "thing.happened", ids[i]);

    Passerelle__EventListReply reply = PASSERELLE__EVENT_LIST_REPLY__INIT;
    assert_int_equal(eventlog_list(store, stream, "", 2, &reply), STORE_OK);
    assert_int_equal(reply.n_events, 2);
    assert_string_equal(reply.events[0]->event->id, ids[0]);
    assert_string_equal(reply.events[1]->event->id, ids[1]);
    assert_string_equal(reply.last_position, reply.events[1]->position);
    char after[64];
    snprintf(after, sizeof after, "%s", reply.last_position);
    eventlog_list_free(&reply);

    /* The junk entry takes a place in the page but is left out. */
    assert_int_equal(eventlog_list(store, stream, after, 2, &reply), STORE_OK);
    assert_int_equal(reply.n_events, 1);
    assert_string_equal(reply.events[0]->event->id, ids[2]);
    assert_string_equal(reply.events[0]->event->type, "thing.happened");
    assert_string_not_equal(reply.last_position, reply.events[0]->position);
    snprintf(after, sizeof after, "%s", reply.last_position);
    eventlog_list_free(&reply);

    assert_int_equal(eventlog_list(store, stream, after, 10, &reply), STORE_OK);
    assert_int_equal(reply.n_events, 2);
    assert_string_equal(reply.events[0]->event->id, ids[3]);
    assert_string_equal(reply.events[1]->event->id, ids[4]);
    snprintf(after, sizeof after, "%s", reply.last_position);
    eventlog_list_free(&reply);

    /* At the end: nothing, and the position stays. */
    assert_int_equal(eventlog_list(store, stream, after, 10, &reply), STORE_OK);
    assert_int_equal(reply.n_events, 0);
    assert_string_equal(reply.last_position, after);
    eventlog_list_free(&reply);

    assert_int_equal(eventlog_list(store, "ev:nothing", "0", 0, &reply), STORE_OK);
    assert_int_equal(reply.n_events, 0);
    assert_string_equal(reply.last_position, "");
    eventlog_list_free(&reply);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_event_once_per_group),
        cmocka_unit_test(test_done_marker_skips),
        cmocka_unit_test(test_own_pending_after_crash),
        cmocka_unit_test(test_claim_from_dead_consumer),
        cmocka_unit_test(test_dead_letter_after_max_deliveries),
        cmocka_unit_test(test_crash_loop_dead_lettered),
        cmocka_unit_test(test_garbage_dead_lettered),
        cmocka_unit_test(test_group_deleted_and_redis_down),
        cmocka_unit_test(test_health_beats),
        cmocka_unit_test(test_list_pages),
    };
    return harness_store_tests(tests, &redis, &store);
}
