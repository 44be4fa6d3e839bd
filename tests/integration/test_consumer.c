/* The consumer-group reader (eventlog.h) against a real redis-server, with
 * consumers that die.
 *
 * Events are appended with txn, as a service would. Each consumer runs in a
 * child process (fork) whose handler counts the event and sets its done
 * marker in one MULTI/EXEC, exactly as eventlog.h asks an effect living in
 * Redis to do. Consumers are killed with SIGKILL mid-stream, at a chosen
 * point (right after an effect, before its XACK) and at a random one (the
 * parent kills a slow consumer), then resumed under the same name (its own
 * pending entries) and under another name (XAUTOCLAIM of what the dead one
 * left). At the end every event was processed exactly once, nothing is
 * pending, nothing was dead-lettered, and the events appended while no
 * consumer ran were processed when one came back. */
#include "harness.h"
#include "eventlog.h"
#include "ids.h"
#include "reservations.pb-c.h"
#include "txn.h"

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#define STREAM     "reservations:events"
#define GROUP      "test-consumers"
#define COUNTS_KEY "test:consumer:counts" /* hash: event id -> times processed */
#define TOTAL_KEY  "test:consumer:total"  /* effects applied, all events */
#define STOP_KEY   "test:consumer:stop"   /* asks a child to return */

#define FIRST_FILL  120 /* before any consumer runs */
#define SECOND_FILL 40  /* while the first consumer is dead */
#define THIRD_FILL  20  /* while no consumer runs, before the takeover */
#define ALL_EVENTS  (FIRST_FILL + SECOND_FILL + THIRD_FILL)

typedef struct {
    char id[ID_LEN + 8];
    char position[64];
} appended_t;

typedef struct {
    harness_redis_t redis;
    store_t *store;
    consumer_t *keys; /* never polled: names the done markers */
    appended_t events[ALL_EVENTS];
    int appended;
} fixture_t;

static fixture_t fx;

/* --- the consumer child ------------------------------------------------ */

typedef struct {
    store_t *store;   /* the handler's own connection */
    long die_at;      /* SIGKILL itself once the total reaches it; 0: never */
    useconds_t delay; /* per event, so that the parent can kill mid-stream */
} child_ctx_t;

/* The effect and the done marker in one transaction: either both are
 * there, and the event is never counted again, or neither is. */
static int count_event(void *arg, const char *position, const Passerelle__Event *event,
                       const char *done_key)
{
    (void)position;
    child_ctx_t *ctx = arg;
    if (ctx->delay)
        usleep(ctx->delay);
    if (!event->id)
        return -1;
    redisReply *exec = NULL;
    if (store_command(ctx->store, NULL, "MULTI") != STORE_OK ||
        store_command(ctx->store, NULL, "HINCRBY %s %s 1", COUNTS_KEY, event->id) != STORE_OK ||
        store_command(ctx->store, NULL, "INCR %s", TOTAL_KEY) != STORE_OK ||
        store_command(ctx->store, NULL, "SET %s 1 EX 3600", done_key) != STORE_OK ||
        store_command(ctx->store, &exec, "EXEC") != STORE_OK) {
        if (exec)
            freeReplyObject(exec);
        store_command(ctx->store, NULL, "DISCARD");
        return -1;
    }
    long long total = -1;
    if (exec->type == REDIS_REPLY_ARRAY && exec->elements == 3 &&
        exec->element[1]->type == REDIS_REPLY_INTEGER)
        total = exec->element[1]->integer;
    freeReplyObject(exec);
    if (total < 0)
        return -1;
    /* Dies with the effect durable and the entry not yet acknowledged: the
     * worst moment for a double count. */
    if (ctx->die_at > 0 && total >= ctx->die_at)
        raise(SIGKILL);
    return 0;
}

static bool stop_requested(store_t *store)
{
    redisReply *reply = NULL;
    bool stop = store_command(store, &reply, "EXISTS %s", STOP_KEY) == STORE_OK &&
                reply->type == REDIS_REPLY_INTEGER && reply->integer == 1;
    if (reply)
        freeReplyObject(reply);
    return stop;
}

/* The child's whole life: poll until told to stop (exit 0), killed, or a
 * minute has passed (exit 3, so that a stuck test ends). */
static int consumer_child(const char *name, int claim_idle_ms, long die_at, useconds_t delay)
{
    /* The parent's connection is not ours to use; closing our copy of its
     * socket leaves the parent's connection open. */
    consumer_destroy(&fx.keys);
    store_destroy(&fx.store);
    store_config_t cfg;
    harness_redis_config(&fx.redis, &cfg);
    store_t *reader = store_new(&cfg);
    child_ctx_t ctx = {.store = store_new(&cfg), .die_at = die_at, .delay = delay};
    if (!reader || !ctx.store)
        return 2;
    consumer_config_t ccfg = {
        .stream = STREAM,
        .group = GROUP,
        .consumer = name,
        .claim_idle_ms = claim_idle_ms,
        .max_deliveries = 1000,
        .batch = 16,
        .done_ttl_s = 3600,
    };
    consumer_t *consumer = consumer_new(reader, &ccfg);
    if (!consumer)
        return 2;
    int rc = 3;
    time_t deadline = time(NULL) + 60;
    while (time(NULL) < deadline) {
        if (stop_requested(ctx.store)) {
            rc = 0;
            break;
        }
        if (consumer_poll(consumer, 100, count_event, &ctx) < 0)
            usleep(50 * 1000);
    }
    consumer_destroy(&consumer);
    store_destroy(&ctx.store);
    store_destroy(&reader);
    return rc;
}

static pid_t consumer_spawn(const char *name, int claim_idle_ms, long die_at, useconds_t delay)
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(consumer_child(name, claim_idle_ms, die_at, delay));
    return pid;
}

/* Waits (bounded) for the child; returns its wait status. */
static int consumer_wait(pid_t pid)
{
    int status = 0;
    for (int waited_ms = 0; waited_ms < 60000; waited_ms += 5) {
        pid_t done = waitpid(pid, &status, WNOHANG);
        assert_true(done >= 0);
        if (done == pid)
            return status;
        usleep(5000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    fail_msg("consumer %d did not end", (int)pid);
    return status;
}

static void expect_killed(int status)
{
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
        fail_msg("consumer was not killed: wait status %#x", status);
}

/* --- Redis probes ------------------------------------------------------ */

static long long redis_integer(const char *format, const char *arg)
{
    redisReply *reply = NULL;
    assert_int_equal(store_command(fx.store, &reply, format, arg), STORE_OK);
    long long value = -1;
    if (reply->type == REDIS_REPLY_INTEGER)
        value = reply->integer;
    else if (reply->type == REDIS_REPLY_STRING)
        value = strtoll(reply->str, NULL, 10);
    else if (reply->type == REDIS_REPLY_NIL)
        value = 0;
    freeReplyObject(reply);
    return value;
}

static long long total_processed(void)
{
    return redis_integer("GET %s", TOTAL_KEY);
}

/* Times the event was processed (0 if never). */
static long long times_processed(const char *event_id)
{
    redisReply *reply = NULL;
    assert_int_equal(store_command(fx.store, &reply, "HGET %s %s", COUNTS_KEY, event_id), STORE_OK);
    long long n = reply->type == REDIS_REPLY_STRING ? strtoll(reply->str, NULL, 10) : 0;
    freeReplyObject(reply);
    return n;
}

/* Entries pending in the group: all of them (consumer NULL) or one
 * consumer's. positions (may be NULL) receives up to max of their ids. */
static int pending(const char *consumer, char (*positions)[64], int max)
{
    redisReply *reply = NULL;
    store_result_t rc =
        consumer ? store_command(fx.store, &reply, "XPENDING %s %s - + 10000 %s", STREAM, GROUP,
                                 consumer)
                 : store_command(fx.store, &reply, "XPENDING %s %s - + 10000", STREAM, GROUP);
    assert_int_equal(rc, STORE_OK);
    assert_int_equal(reply->type, REDIS_REPLY_ARRAY);
    int n = (int)reply->elements;
    for (int i = 0; positions && i < n && i < max; i++) {
        const redisReply *entry = reply->element[i];
        assert_int_equal(entry->type, REDIS_REPLY_ARRAY);
        assert_true(entry->elements >= 1);
        snprintf(positions[i], 64, "%s", entry->element[0]->str);
    }
    freeReplyObject(reply);
    return n;
}

static const appended_t *event_at(const char *position)
{
    for (int i = 0; i < fx.appended; i++)
        if (strcmp(fx.events[i].position, position) == 0)
            return &fx.events[i];
    fail_msg("no event appended at %s", position);
    return NULL;
}

static bool done_marker_set(const char *event_id)
{
    char key[256];
    consumer_done_key(fx.keys, event_id, key, sizeof key);
    return redis_integer("EXISTS %s", key) == 1;
}

/* --- appending events -------------------------------------------------- */

static void append_events(int count)
{
    for (int n = 0; n < count; n++) {
        assert_true(fx.appended < ALL_EVENTS);
        appended_t *slot = &fx.events[fx.appended];
        char unit_id[ID_LEN], ref[32], subject[64];
        id_new('U', unit_id);
        snprintf(ref, sizeof ref, "CONS-%04d", fx.appended);
        snprintf(subject, sizeof subject, "units/%s", unit_id);
        Passerelle__Unit unit = PASSERELLE__UNIT__INIT;
        unit.id = unit_id;
        unit.external_ref = ref;

        txn_t *txn = txn_new(NULL, NULL, 0);
        assert_non_null(txn);
        txn_event(txn, STREAM, "/passerelle/reservations", "unit.registered", subject, &unit.base);
        assert_int_equal(txn_commit(txn, fx.store, "", 0, NULL, NULL, slot->position),
                         TXN_COMMITTED);
        snprintf(slot->id, sizeof slot->id, "%s", txn_event_id(txn));
        assert_true(id_valid('E', slot->id));
        assert_true(slot->position[0] != '\0');
        txn_destroy(&txn);
        fx.appended++;
    }
}

/* --- fixture ----------------------------------------------------------- */

static int setup(void **state)
{
    (void)state;
    memset(&fx, 0, sizeof fx);
    if (harness_store_start(&fx.redis, &fx.store) != 0)
        return -1;
    consumer_config_t ccfg = {.stream = STREAM, .group = GROUP, .consumer = "probe"};
    fx.keys = consumer_new(fx.store, &ccfg);
    return fx.keys ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    consumer_destroy(&fx.keys);
    harness_store_stop(&fx.redis, &fx.store);
    return 0;
}

/* --- the test ---------------------------------------------------------- */

static void test_killed_consumers_process_each_event_once(void **state)
{
    (void)state;
    append_events(FIRST_FILL);

    /* 1. c1 dies right after its 40th effect, before acknowledging it. */
    expect_killed(consumer_wait(consumer_spawn("c1", 30000, 40, 0)));
    assert_int_equal(total_processed(), 40);
    char stranded[64][64];
    int n_stranded = pending("c1", stranded, 64);
    assert_in_range(n_stranded, 1, 64);
    /* The 40th event, processed but unacknowledged, is among them, with its
     * done marker: the case the marker exists for. */
    const appended_t *fortieth = &fx.events[39];
    bool found = false;
    for (int i = 0; i < n_stranded; i++)
        found = found || strcmp(stranded[i], fortieth->position) == 0;
    assert_true(found);
    assert_true(done_marker_set(fortieth->id));
    assert_int_equal(times_processed(fortieth->id), 1);

    /* 2. Events arrive while no consumer runs. */
    append_events(SECOND_FILL);
    for (int i = FIRST_FILL; i < FIRST_FILL + SECOND_FILL; i++)
        assert_int_equal(times_processed(fx.events[i].id), 0);

    /* 3. c1 comes back (its own pending entries first), slowly, and is
     * killed from outside at whatever point it has reached. */
    pid_t pid = consumer_spawn("c1", 30000, 0, 2000);
    for (int waited_ms = 0; waited_ms < 30000 && total_processed() < 100; waited_ms++)
        usleep(1000);
    kill(pid, SIGKILL);
    expect_killed(consumer_wait(pid));
    long long after_random_kill = total_processed();
    assert_in_range(after_random_kill, 100, FIRST_FILL + SECOND_FILL - 8);
    for (int i = 0; i < n_stranded; i++)
        assert_int_equal(times_processed(event_at(stranded[i])->id), 1);

    /* 4. c1 once more, dying again after an effect, so that it leaves
     * entries that only another consumer can take over. */
    expect_killed(consumer_wait(consumer_spawn("c1", 30000, after_random_kill + 7, 0)));
    assert_int_equal(total_processed(), after_random_kill + 7);
    n_stranded = pending("c1", stranded, 64);
    assert_in_range(n_stranded, 1, 64);
    append_events(THIRD_FILL);

    /* 5. c2 takes over (XAUTOCLAIM) what c1 left, then reads the rest. */
    pid = consumer_spawn("c2", 200, 0, 0);
    for (int waited_ms = 0; waited_ms < 30000; waited_ms += 5) {
        if (total_processed() >= ALL_EVENTS && pending(NULL, NULL, 0) == 0)
            break;
        usleep(5000);
    }
    assert_int_equal(store_command(fx.store, NULL, "SET %s 1", STOP_KEY), STORE_OK);
    int status = consumer_wait(pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);

    /* Every event exactly once, nothing pending, nothing dead-lettered. */
    assert_int_equal(total_processed(), ALL_EVENTS);
    assert_int_equal(redis_integer("HLEN %s", COUNTS_KEY), ALL_EVENTS);
    for (int i = 0; i < fx.appended; i++)
        if (times_processed(fx.events[i].id) != 1)
            fail_msg("event %d (%s) processed %lld times", i, fx.events[i].id,
                     times_processed(fx.events[i].id));
    for (int i = 0; i < n_stranded; i++)
        assert_true(done_marker_set(event_at(stranded[i])->id));
    assert_int_equal(pending(NULL, NULL, 0), 0);
    assert_int_equal(pending("c1", NULL, 0), 0);
    assert_int_equal(redis_integer("XLEN %s", STREAM ":dead:" GROUP), 0);
    assert_int_equal(redis_integer("XLEN %s", STREAM), ALL_EVENTS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_killed_consumers_process_each_event_once, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
