/* The Redis store against a real redis-server: the REFUSED/LOST split,
 * reconnection after a crash, the process-wide counts of both and of
 * reconnects, authentication, timeouts, scripts surviving SCRIPT FLUSH,
 * batches of script calls, and records. */
#include "harness.h"
#include "log.h"
#include "store.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static harness_redis_t redis;

static int group_setup(void **state)
{
    (void)state;
    log_set_level(LOG_LEVEL_ERROR);
    return harness_redis_start(&redis);
}

static int group_teardown(void **state)
{
    (void)state;
    harness_redis_stop(&redis);
    return 0;
}

static store_t *new_store(void)
{
    store_config_t cfg;
    harness_redis_config(&redis, &cfg);
    store_t *store = store_new(&cfg);
    assert_non_null(store);
    return store;
}

static void test_commands_and_refusals(void **state)
{
    (void)state;
    store_t *store = new_store();
    assert_true(store_ping(store));

    /* Binary values go through argv untouched, NUL bytes included. */
    const char value[] = {'a', '\0', 'b', '\xff'};
    const char *set_argv[] = {"SET", "store:binary", value};
    size_t set_len[] = {3, 12, sizeof value};
    assert_int_equal(store_command_argv(store, NULL, 3, set_argv, set_len), STORE_OK);
    redisReply *reply = NULL;
    assert_int_equal(store_command(store, &reply, "GET %s", "store:binary"), STORE_OK);
    assert_int_equal(reply->type, REDIS_REPLY_STRING);
    assert_int_equal(reply->len, sizeof value);
    assert_memory_equal(reply->str, value, sizeof value);
    freeReplyObject(reply);

    /* An error reply is a refusal, and the connection stays up. */
    assert_int_equal(store_command(store, &reply, "INCR %s", "store:binary"), STORE_REFUSED);
    assert_non_null(reply);
    assert_int_equal(reply->type, REDIS_REPLY_ERROR);
    freeReplyObject(reply);
    assert_non_null(strstr(store_last_error(store), "not an integer"));
    assert_int_equal(store_command(store, NULL, "NOSUCHCOMMAND"), STORE_REFUSED);
    assert_true(store_ping(store));
    assert_int_equal(store_reconnects(store), 0);
    store_destroy(&store);
    assert_null(store);
}

static void test_lost_then_reconnected(void **state)
{
    (void)state;
    store_t *store = new_store();
    assert_int_equal(store_command(store, NULL, "SET %s %s", "store:durable", "kept"), STORE_OK);

    harness_redis_kill(&redis);
    redisReply *reply = (redisReply *)1;
    assert_int_equal(store_command(store, &reply, "GET %s", "store:durable"), STORE_LOST);
    assert_null(reply);
    assert_false(store_ping(store));
    assert_true(strlen(store_last_error(store)) > 0);

    assert_int_equal(harness_redis_restart(&redis), 0);
    /* The write acknowledged before the crash is still there (AOF). */
    assert_int_equal(store_command(store, &reply, "GET %s", "store:durable"), STORE_OK);
    assert_int_equal(reply->type, REDIS_REPLY_STRING);
    assert_string_equal(reply->str, "kept");
    freeReplyObject(reply);
    assert_int_equal(store_reconnects(store), 1);
    store_destroy(&store);
}

/* The process-wide counts (store_counts): every store of the process adds
 * to them; a refusal is one "refused" (BUSYGROUP aside), a command that gets
 * no answer and a connection that cannot be made are one "lost" each, and a
 * connection made again after a loss is one reconnect. */
static void test_process_counts(void **state)
{
    (void)state;
    store_t *first = new_store(), *second = new_store();
    assert_true(store_ping(first));
    assert_true(store_ping(second));
    store_counts_t before, after;
    store_counts(&before);

    assert_int_equal(store_command(first, NULL, "NOSUCHCOMMAND"), STORE_REFUSED);
    assert_int_equal(store_command(second, NULL, "INCR %s", "store:counts:text"), STORE_OK);
    assert_int_equal(store_command(second, NULL, "SET %s %s", "store:counts:text", "x"), STORE_OK);
    assert_int_equal(store_command(second, NULL, "INCR %s", "store:counts:text"), STORE_REFUSED);
    /* "The group exists already" is the answer a consumer expects. */
    assert_int_equal(
        store_command(first, NULL, "XGROUP CREATE %s %s 0 MKSTREAM", "store:counts:stream", "g"),
        STORE_OK);
    assert_int_equal(
        store_command(first, NULL, "XGROUP CREATE %s %s 0 MKSTREAM", "store:counts:stream", "g"),
        STORE_REFUSED);
    store_counts(&after);
    assert_int_equal(after.refused - before.refused, 2);
    assert_int_equal(after.lost, before.lost);
    assert_int_equal(after.reconnects, before.reconnects);

    harness_redis_kill(&redis);
    /* A command on a connection that was up: dropped, one lost. */
    assert_int_equal(store_command(first, NULL, "GET %s", "store:counts:text"), STORE_LOST);
    store_counts(&after);
    assert_int_equal(after.lost - before.lost, 1);
    /* Each call while Redis is away fails to connect: one lost each. */
    assert_false(store_ping(first));
    assert_int_equal(store_command(second, NULL, "GET %s", "store:counts:text"), STORE_LOST);
    assert_false(store_ping(second));
    store_counts(&after);
    assert_int_equal(after.lost - before.lost, 4);
    assert_int_equal(after.reconnects, before.reconnects);

    assert_int_equal(harness_redis_restart(&redis), 0);
    assert_true(store_ping(first));
    assert_true(store_ping(second));
    assert_true(store_ping(first));
    store_counts(&after);
    assert_int_equal(after.reconnects - before.reconnects, 2);
    assert_int_equal(after.lost - before.lost, 4);
    assert_int_equal(after.refused - before.refused, 2);
    store_destroy(&first);
    store_destroy(&second);
}

static void test_made_while_redis_is_down(void **state)
{
    (void)state;
    store_config_t cfg;
    harness_redis_config(&redis, &cfg);
    cfg.port = harness_free_port(); /* nobody listens there */
    store_t *store = store_new(&cfg);
    assert_non_null(store);
    assert_int_equal(store_command(store, NULL, "PING"), STORE_LOST);
    assert_int_equal(store_command(store, NULL, "PING"), STORE_LOST);
    assert_int_equal(store_reconnects(store), 0);
    store_destroy(&store);
}

static void test_authentication(void **state)
{
    (void)state;
    store_config_t cfg;
    harness_redis_config(&redis, &cfg);
    cfg.password = "not-the-password";
    store_t *store = store_new(&cfg);
    assert_int_equal(store_command(store, NULL, "PING"), STORE_REFUSED);
    assert_non_null(strstr(store_last_error(store), "WRONGPASS"));
    assert_false(store_ping(store));
    store_destroy(&store);

    /* Without a password every command is refused by Redis (NOAUTH). */
    cfg.password = NULL;
    store = store_new(&cfg);
    redisReply *reply = NULL;
    assert_int_equal(store_command(store, &reply, "GET %s", "x"), STORE_REFUSED);
    assert_non_null(reply);
    assert_non_null(strstr(reply->str, "NOAUTH"));
    freeReplyObject(reply);
    store_destroy(&store);
}

static void test_command_timeout_is_lost(void **state)
{
    (void)state;
    store_config_t cfg;
    harness_redis_config(&redis, &cfg);
    cfg.command_timeout_ms = 100;
    store_t *store = store_new(&cfg);
    assert_true(store_ping(store));
    /* Blocks longer than the command timeout: no answer in time. */
    assert_int_equal(store_command(store, NULL, "BLPOP %s 1", "store:never"), STORE_LOST);
    /* The next call makes a new connection. */
    assert_true(store_ping(store));
    assert_int_equal(store_reconnects(store), 1);
    store_destroy(&store);
}

static void test_scripts_survive_flush(void **state)
{
    (void)state;
    store_t *store = new_store();
    static const char echo_source[] = "return ARGV[1] .. ':' .. KEYS[1]";
    int echo = store_script_add(store, echo_source);
    assert_true(echo >= 0);
    /* The same source again is the same script. */
    assert_int_equal(store_script_add(store, echo_source), echo);
    int failing = store_script_add(store, "return redis.error_reply('BROKEN on purpose')");
    assert_true(failing >= 0 && failing != echo);

    const char *argv[] = {"k", "hello"};
    redisReply *reply = NULL;
    assert_int_equal(store_script_run(store, echo, &reply, 1, 2, argv, NULL), STORE_OK);
    assert_string_equal(reply->str, "hello:k");
    freeReplyObject(reply);

    assert_int_equal(store_command(store, NULL, "SCRIPT FLUSH"), STORE_OK);
    assert_int_equal(store_script_run(store, echo, &reply, 1, 2, argv, NULL), STORE_OK);
    assert_string_equal(reply->str, "hello:k");
    freeReplyObject(reply);

    assert_int_equal(store_script_run(store, failing, &reply, 0, 0, NULL, NULL), STORE_REFUSED);
    assert_non_null(strstr(reply->str, "BROKEN"));
    freeReplyObject(reply);
    assert_int_equal(store_script_run(store, 99, NULL, 0, 0, NULL, NULL), STORE_REFUSED);
    assert_int_equal(store_reconnects(store), 0);
    store_destroy(&store);
}

static void test_bad_script_is_contained(void **state)
{
    (void)state;
    store_t *store = new_store();
    int bad = store_script_add(store, "this is not lua");
    int good = store_script_add(store, "return 7");
    assert_true(bad >= 0 && good >= 0);
    /* Registered before the connection: loading it fails at connect, yet
     * commands and the other script still work. */
    assert_true(store_ping(store));
    redisReply *reply = NULL;
    assert_int_equal(store_script_run(store, good, &reply, 0, 0, NULL, NULL), STORE_OK);
    assert_int_equal(reply->integer, 7);
    freeReplyObject(reply);
    assert_int_equal(store_script_run(store, bad, &reply, 0, 0, NULL, NULL), STORE_REFUSED);
    assert_null(reply);
    assert_non_null(strstr(store_last_error(store), "SCRIPT LOAD"));
    store_destroy(&store);
}

/* Batches of script calls (store_script_run_many), between MULTI and EXEC
 * or as a plain pipeline: per-call results in order, a failing call kept
 * to itself, NOSCRIPT reloaded, and a batch far larger than Redis reads at
 * once (12 x 8 KB). */
static void check_batches(bool plain)
{
    store_config_t cfg;
    harness_redis_config(&redis, &cfg);
    cfg.plain_pipelines = plain;
    store_t *store = store_new(&cfg);
    assert_non_null(store);
    int push = store_script_add(store, "if ARGV[1] == 'fail' then "
                                       "return redis.error_reply('REFUSED on purpose') end "
                                       "return redis.call('RPUSH', KEYS[1], ARGV[1])");
    assert_true(push >= 0);
    const char *key = plain ? "batch:plain" : "batch:multi";
    assert_int_equal(store_command(store, NULL, "DEL %s", key), STORE_OK);

    enum { CALLS = 12, VALUE_BYTES = 8192 };
    static char values[CALLS][VALUE_BYTES + 1];
    const char *argv[CALLS][2];
    store_call_t calls[CALLS];
    redisReply *replies[CALLS];
    store_result_t results[CALLS];
    for (int flushed = 0; flushed < 2; flushed++) {
        for (int i = 0; i < CALLS; i++) {
            memset(values[i], 'a' + i, VALUE_BYTES);
            values[i][VALUE_BYTES] = '\0';
            argv[i][0] = key;
            argv[i][1] = i == 5 ? "fail" : values[i];
            calls[i] = (store_call_t){.nkeys = 1, .argc = 2, .argv = argv[i]};
        }
        if (flushed)
            assert_int_equal(store_command(store, NULL, "SCRIPT FLUSH"), STORE_OK);
        store_script_run_many(store, push, calls, CALLS, replies, results);
        for (int i = 0; i < CALLS; i++) {
            int pushed = flushed * (CALLS - 1) + (i < 5 ? i + 1 : i);
            if (i == 5) {
                assert_int_equal(results[i], STORE_REFUSED);
                assert_non_null(strstr(replies[i]->str, "REFUSED on purpose"));
            } else {
                assert_int_equal(results[i], STORE_OK);
                assert_int_equal(replies[i]->type, REDIS_REPLY_INTEGER);
                assert_int_equal(replies[i]->integer, pushed);
            }
            freeReplyObject(replies[i]);
        }
    }
    redisReply *length = NULL;
    assert_int_equal(store_command(store, &length, "LLEN %s", key), STORE_OK);
    assert_int_equal(length->integer, 2 * (CALLS - 1));
    freeReplyObject(length);
    assert_int_equal(store_reconnects(store), 0);
    store_destroy(&store);
}

static void test_script_batches(void **state)
{
    (void)state;
    check_batches(false);
    check_batches(true);
}

/* A batch Redis refuses as a whole at EXEC (out of memory when the calls
 * are queued): every call REFUSED with the reason, none ran, and the
 * connection still serves. */
static void test_script_batch_refused_whole(void **state)
{
    (void)state;
    store_t *store = new_store();
    int push = store_script_add(store, "return redis.call('RPUSH', KEYS[1], ARGV[1])");
    assert_true(push >= 0);
    assert_int_equal(store_command(store, NULL, "DEL batch:oom"), STORE_OK);
    assert_int_equal(store_command(store, NULL, "CONFIG SET maxmemory 1"), STORE_OK);
    const char *argv[] = {"batch:oom", "x"};
    store_call_t calls[3];
    for (int i = 0; i < 3; i++)
        calls[i] = (store_call_t){.nkeys = 1, .argc = 2, .argv = argv};
    redisReply *replies[3];
    store_result_t results[3];
    store_script_run_many(store, push, calls, 3, replies, results);
    assert_int_equal(store_command(store, NULL, "CONFIG SET maxmemory 0"), STORE_OK);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(results[i], STORE_REFUSED);
        assert_null(replies[i]);
    }
    assert_non_null(strstr(store_last_error(store), "OOM"));
    redisReply *length = NULL;
    assert_int_equal(store_command(store, &length, "LLEN batch:oom"), STORE_OK);
    assert_int_equal(length->integer, 0);
    freeReplyObject(length);
    assert_int_equal(store_reconnects(store), 0);
    store_destroy(&store);
}

static void test_records(void **state)
{
    (void)state;
    store_t *store = new_store();
    uint64_t version = 99;
    uint8_t *data = (uint8_t *)1;
    size_t len = 99;
    assert_int_equal(store_record_get(store, "store:record", &version, &data, &len), STORE_OK);
    assert_int_equal(version, 0);
    assert_null(data);
    assert_int_equal(len, 0);

    const char pb[] = {0x0a, 0x00, 0x12};
    assert_int_equal(store_command(store, NULL, "HSET %s v 3 pb %b", "store:record", pb, sizeof pb),
                     STORE_OK);
    assert_int_equal(store_record_get(store, "store:record", &version, &data, &len), STORE_OK);
    assert_int_equal(version, 3);
    assert_int_equal(len, sizeof pb);
    assert_memory_equal(data, pb, sizeof pb);
    free(data);

    assert_int_equal(store_command(store, NULL, "SET %s %s", "store:plain", "x"), STORE_OK);
    assert_int_equal(store_record_get(store, "store:plain", &version, &data, &len), STORE_REFUSED);
    assert_null(data);
    store_destroy(&store);
}

static void test_command_pipeline(void **state)
{
    (void)state;
    store_t *store = new_store();
    assert_int_equal(store_command(store, NULL, "SET %s %s", "store:pipe:a", "A"), STORE_OK);
    const char *get_a[] = {"GET", "store:pipe:a"};
    const char *incr_a[] = {"INCR", "store:pipe:a"};
    const char *get_b[] = {"GET", "store:pipe:b"};
    const char value[] = {'x', '\0', 'y'};
    const char *set_c[] = {"SET", "store:pipe:c", value};
    size_t set_c_len[] = {3, 12, sizeof value};
    store_cmd_t cmds[] = {
        {2, get_a, NULL}, {2, incr_a, NULL}, {2, get_b, NULL}, {3, set_c, set_c_len}};
    redisReply *replies[4];
    store_result_t results[4];
    store_command_many(store, cmds, 4, replies, results);
    /* In order, each with its own outcome: a refusal spoils nothing else. */
    assert_int_equal(results[0], STORE_OK);
    assert_string_equal(replies[0]->str, "A");
    assert_int_equal(results[1], STORE_REFUSED);
    assert_int_equal(replies[1]->type, REDIS_REPLY_ERROR);
    assert_int_equal(results[2], STORE_OK);
    assert_int_equal(replies[2]->type, REDIS_REPLY_NIL);
    assert_int_equal(results[3], STORE_OK);
    for (int i = 0; i < 4; i++)
        freeReplyObject(replies[i]);
    redisReply *reply = NULL;
    assert_int_equal(store_command(store, &reply, "GET %s", "store:pipe:c"), STORE_OK);
    assert_int_equal(reply->len, sizeof value);
    assert_memory_equal(reply->str, value, sizeof value);
    freeReplyObject(reply);
    store_command_many(store, cmds, 0, replies, results);

    /* Redis gone: every command is lost, none hangs; then back. */
    harness_redis_kill(&redis);
    store_command_many(store, cmds, 3, replies, results);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(results[i], STORE_LOST);
        assert_null(replies[i]);
    }
    assert_int_equal(harness_redis_restart(&redis), 0);
    store_command_many(store, cmds, 1, replies, results);
    assert_int_equal(results[0], STORE_OK);
    freeReplyObject(replies[0]);
    store_destroy(&store);
}

/* Reads a record and says how it went, freeing the data. */
static store_result_t record_version(store_t *store, const char *key, uint64_t *version)
{
    uint8_t *data = NULL;
    size_t len = 0;
    store_result_t result = store_record_get(store, key, version, &data, &len);
    free(data);
    return result;
}

static void test_snapshot(void **state)
{
    (void)state;
    store_t *store = new_store();
    assert_int_equal(store_command(store, NULL, "HSET %s v 4 pb %s", "store:snap:a", "aaa"),
                     STORE_OK);
    store_snapshot_begin(store);
    uint64_t version = 99;
    uint8_t *data = (uint8_t *)1;
    size_t len = 99;
    /* A key the snapshot does not hold: deferred, nothing returned. */
    assert_int_equal(store_record_get(store, "store:snap:a", &version, &data, &len), STORE_LOST);
    assert_int_equal(version, 0);
    assert_null(data);
    assert_int_equal(record_version(store, "store:snap:absent", &version), STORE_LOST);
    assert_int_equal(record_version(store, "store:snap:a", &version), STORE_LOST);
    assert_int_equal(store_snapshot_misses(store), 3);
    assert_int_equal(store_snapshot_fill(store), STORE_OK);

    /* Filled: answered from the snapshot, absent included... */
    assert_int_equal(store_record_get(store, "store:snap:a", &version, &data, &len), STORE_OK);
    assert_int_equal(version, 4);
    assert_int_equal(len, 3);
    assert_memory_equal(data, "aaa", 3);
    free(data);
    assert_int_equal(record_version(store, "store:snap:absent", &version), STORE_OK);
    assert_int_equal(version, 0);
    assert_int_equal(store_snapshot_misses(store), 3);
    /* ...even once Redis has moved on: what it said during the group. */
    assert_int_equal(store_command(store, NULL, "HSET %s v 5", "store:snap:a"), STORE_OK);
    assert_int_equal(record_version(store, "store:snap:a", &version), STORE_OK);
    assert_int_equal(version, 4);

    /* A record that is not one is refused by the fill, and stays missed. */
    assert_int_equal(store_command(store, NULL, "SET %s %s", "store:snap:plain", "x"), STORE_OK);
    assert_int_equal(record_version(store, "store:snap:plain", &version), STORE_LOST);
    assert_int_equal(store_snapshot_fill(store), STORE_REFUSED);
    assert_int_equal(record_version(store, "store:snap:plain", &version), STORE_LOST);

    /* Closed: Redis again. */
    store_snapshot_end(store);
    assert_int_equal(record_version(store, "store:snap:a", &version), STORE_OK);
    assert_int_equal(version, 5);

    /* Redis gone: the fill says so, and a new snapshot starts empty. */
    store_snapshot_begin(store);
    assert_int_equal(record_version(store, "store:snap:a", &version), STORE_LOST);
    harness_redis_kill(&redis);
    assert_int_equal(store_snapshot_fill(store), STORE_LOST);
    assert_int_equal(harness_redis_restart(&redis), 0);
    store_snapshot_begin(store);
    assert_int_equal(store_snapshot_misses(store), 0);
    assert_int_equal(record_version(store, "store:snap:a", &version), STORE_LOST);
    assert_int_equal(store_snapshot_fill(store), STORE_OK);
    assert_int_equal(record_version(store, "store:snap:a", &version), STORE_OK);
    assert_int_equal(version, 5);
    /* Left open: store_destroy frees it. */
    store_destroy(&store);
}

/* Other commands in the fill's pipeline: first, and answered on their own. */
static void test_snapshot_fill_with(void **state)
{
    (void)state;
    store_t *store = new_store();
    assert_int_equal(store_command(store, NULL, "HSET %s v 2 pb %s", "store:with:a", "bb"),
                     STORE_OK);
    assert_int_equal(store_command(store, NULL, "SET %s %s", "store:with:s", "hello"), STORE_OK);
    const char *get[] = {"GET", "store:with:s"};
    const char *bad[] = {"HGET", "store:with:s", "f"}; /* wrong type: refused */
    store_cmd_t cmds[] = {{.argc = 2, .argv = get}, {.argc = 3, .argv = bad}};
    redisReply *replies[2];
    store_result_t results[2];
    uint64_t version = 0;

    /* Nothing missed: the commands go alone. */
    store_snapshot_begin(store);
    assert_int_equal(store_snapshot_fill_with(store, cmds, 2, replies, results), STORE_OK);
    assert_int_equal(results[0], STORE_OK);
    assert_string_equal(replies[0]->str, "hello");
    assert_int_equal(results[1], STORE_REFUSED);
    freeReplyObject(replies[0]);
    freeReplyObject(replies[1]);

    /* With misses: both in one pipeline, the refusal staying the
     * command's. */
    assert_int_equal(record_version(store, "store:with:a", &version), STORE_LOST);
    assert_int_equal(record_version(store, "store:with:absent", &version), STORE_LOST);
    assert_int_equal(store_snapshot_fill_with(store, cmds, 2, replies, results), STORE_OK);
    assert_int_equal(results[0], STORE_OK);
    assert_string_equal(replies[0]->str, "hello");
    assert_int_equal(results[1], STORE_REFUSED);
    freeReplyObject(replies[0]);
    freeReplyObject(replies[1]);
    assert_int_equal(record_version(store, "store:with:a", &version), STORE_OK);
    assert_int_equal(version, 2);
    assert_int_equal(record_version(store, "store:with:absent", &version), STORE_OK);
    assert_int_equal(version, 0);
    /* and no commands at all is a plain fill */
    assert_int_equal(store_snapshot_fill_with(store, NULL, 0, NULL, NULL), STORE_OK);

    /* Redis gone: every command and the fill are lost. */
    assert_int_equal(record_version(store, "store:with:b", &version), STORE_LOST);
    harness_redis_kill(&redis);
    assert_int_equal(store_snapshot_fill_with(store, cmds, 2, replies, results), STORE_LOST);
    assert_int_equal(results[0], STORE_LOST);
    assert_null(replies[0]);
    assert_int_equal(results[1], STORE_LOST);
    assert_null(replies[1]);
    /* Nothing missed and Redis gone: the commands alone say so. */
    store_snapshot_begin(store);
    assert_int_equal(store_snapshot_fill_with(store, cmds, 1, replies, results), STORE_OK);
    assert_int_equal(results[0], STORE_LOST);
    assert_null(replies[0]);
    assert_int_equal(harness_redis_restart(&redis), 0);
    store_snapshot_end(store);
    store_destroy(&store);
}

static void test_config_from_env(void **state)
{
    (void)state;
    store_config_t cfg;
    unsetenv("PASSERELLE_REDIS_HOST");
    unsetenv("PASSERELLE_REDIS_PORT");
    unsetenv("PASSERELLE_REDIS_PASSWORD");
    unsetenv("PASSERELLE_REDIS_CONNECT_TIMEOUT_MS");
    unsetenv("PASSERELLE_REDIS_COMMAND_TIMEOUT_MS");
    assert_true(store_config_from_env(&cfg));
    assert_string_equal(cfg.host, "127.0.0.1");
    assert_int_equal(cfg.port, 6379);
    assert_null(cfg.password);
    assert_int_equal(cfg.connect_timeout_ms, 500);
    assert_int_equal(cfg.command_timeout_ms, 2000);

    harness_redis_setenv(&redis);
    setenv("PASSERELLE_REDIS_COMMAND_TIMEOUT_MS", "1500", 1);
    assert_true(store_config_from_env(&cfg));
    assert_int_equal(cfg.port, redis.port);
    assert_string_equal(cfg.password, redis.password);
    assert_int_equal(cfg.command_timeout_ms, 1500);
    store_t *store = store_new(&cfg);
    assert_true(store_ping(store));
    store_destroy(&store);

    setenv("PASSERELLE_REDIS_PORT", "not-a-port", 1);
    assert_false(store_config_from_env(&cfg));
    setenv("PASSERELLE_REDIS_PORT", "70000", 1);
    assert_false(store_config_from_env(&cfg));
    unsetenv("PASSERELLE_REDIS_PORT");
    unsetenv("PASSERELLE_REDIS_COMMAND_TIMEOUT_MS");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_commands_and_refusals),
        cmocka_unit_test(test_lost_then_reconnected),
        cmocka_unit_test(test_process_counts),
        cmocka_unit_test(test_made_while_redis_is_down),
        cmocka_unit_test(test_authentication),
        cmocka_unit_test(test_command_timeout_is_lost),
        cmocka_unit_test(test_scripts_survive_flush),
        cmocka_unit_test(test_bad_script_is_contained),
        cmocka_unit_test(test_script_batches),
        cmocka_unit_test(test_script_batch_refused_whole),
        cmocka_unit_test(test_records),
        cmocka_unit_test(test_command_pipeline),
        cmocka_unit_test(test_snapshot),
        cmocka_unit_test(test_snapshot_fill_with),
        cmocka_unit_test(test_config_from_env),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
