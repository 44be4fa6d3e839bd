/* The Redis store: one hiredis connection with timeouts, reconnected by
 * itself, and Lua scripts loaded at connect and reloaded on NOSCRIPT.
 *
 * Every call tells apart the two ways a command can fail:
 *   STORE_REFUSED  Redis answered with an error (wrong type, script error,
 *                  NOAUTH...): the connection is fine, retrying won't help;
 *   STORE_LOST     no answer (Redis down, timeout, connection reset): the
 *                  connection is dropped and the next call reconnects. The
 *                  caller answers UNAVAILABLE; the client may retry.
 * A store_t is not thread-safe: one per thread (a blocking consumer needs its
 * own, since XREADGROUP BLOCK holds the connection). */
#ifndef PASSERELLE_STORE_H
#define PASSERELLE_STORE_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    STORE_OK = 0,
    STORE_REFUSED = 1,
    STORE_LOST = 2,
} store_result_t;

typedef struct {
    const char *host;       /* default "127.0.0.1" */
    int port;               /* default 6379 */
    const char *password;   /* NULL or "" for none */
    int connect_timeout_ms; /* default 500 */
    int command_timeout_ms; /* default 2000; XREADGROUP BLOCK must be shorter */
    /* store_script_run_many without MULTI/EXEC: a plain pipeline, which
     * Redis may run over several passes and fsyncs. For measuring that
     * difference only. */
    bool plain_pipelines;
} store_config_t;

typedef struct store_t store_t;

/* Reads PASSERELLE_REDIS_HOST, _PORT, _PASSWORD, _CONNECT_TIMEOUT_MS,
 * _COMMAND_TIMEOUT_MS into cfg (strings not owned). Returns false and logs
 * if one does not parse. */
bool store_config_from_env(store_config_t *cfg);

/* A store that connects on first use: it can be made while Redis is down.
 * Copies what it needs of cfg. */
store_t *store_new(const store_config_t *cfg);
void store_destroy(store_t **self_p);

/* Runs one command given as argv (binary-safe). On STORE_OK and
 * STORE_REFUSED, *reply_p is the reply (an error reply for REFUSED) and the
 * caller frees it with freeReplyObject; on STORE_LOST *reply_p is NULL.
 * reply_p may be NULL when the reply is not wanted. */
store_result_t store_command_argv(store_t *self, redisReply **reply_p, int argc, const char **argv,
                                  const size_t *argv_len);

/* The same with a hiredis format string ("GET %s", "%b" for binary). */
store_result_t store_command(store_t *self, redisReply **reply_p, const char *format, ...);

/* Registers a script, loaded (SCRIPT LOAD) at every connect, and run by
 * EVALSHA, reloaded and run again once on NOSCRIPT. Returns its handle, or
 * -1 if the table is full. Register before the first command. */
int store_script_add(store_t *self, const char *source);

/* EVALSHA of a registered script with nkeys keys among argv. Results as for
 * store_command_argv. */
store_result_t store_script_run(store_t *self, int script, redisReply **reply_p, int nkeys,
                                int argc, const char **argv, const size_t *argv_len);

/* One call of a script in a pipeline (store_script_run_many). */
typedef struct {
    int nkeys;
    int argc;
    const char **argv;
    const size_t *argv_len; /* NULL: every argument is a C string */
} store_call_t;

/* Group commit: runs count calls of a registered script as one pipeline,
 * between MULTI and EXEC, so that Redis runs them in one pass of its event
 * loop and, with appendfsync always, one fsync makes all of them durable
 * before any reply is sent. (A plain pipeline does not promise that: Redis
 * reads it a buffer at a time and fsyncs between reads.) The calls run
 * one after the other, each all or nothing as a script is, with nothing
 * of other clients in between.
 *
 * results[i] and replies[i] are per call, as for store_script_run (the
 * caller frees each non-NULL replies[i] with freeReplyObject). A NOSCRIPT
 * answer means that call did not run: the script is loaded again and those
 * calls are sent again, once. If the connection is lost before the
 * replies arrive, the calls are STORE_LOST (they all ran or none did; a
 * retry with the same idempotency key is safe). */
void store_script_run_many(store_t *self, int script, const store_call_t *calls, size_t count,
                           redisReply **replies, store_result_t *results);

/* One command of a pipeline (store_command_many). */
typedef struct {
    int argc;
    const char **argv;
    const size_t *argv_len; /* NULL: every argument is a C string */
} store_cmd_t;

/* Runs count commands as one pipeline: every command is written before the
 * first reply is read, so they cost one round trip instead of count. For
 * reads that do not depend on each other (the idempotency records of the
 * requests waiting together, records whose keys are all known).
 *
 * results[i] and replies[i] are per command, as for store_command_argv (the
 * caller frees each non-NULL replies[i] with freeReplyObject). If the
 * connection is lost partway, the commands whose replies arrived keep them
 * and the others are STORE_LOST. */
void store_command_many(store_t *self, const store_cmd_t *cmds, size_t count, redisReply **replies,
                        store_result_t *results);

/* True if a PING gets PONG (connecting first if needed). */
bool store_ping(store_t *self);

/* The last error, for logs and replies ("connection refused",
 * "NOSCRIPT ..."). Static storage in self; valid until the next call. */
const char *store_last_error(const store_t *self);

/* How many times the connection was re-established after a loss. */
uint64_t store_reconnects(const store_t *self);

/* What every store of the process (the server's, each consumer's, the
 * operations port's...) met, added up since the process started, for its
 * metrics (httpd.h reads them at each scrape):
 *   lost        a call found no Redis: a connection that could not be
 *               made, or one dropped because a command got no answer;
 *   refused     Redis answered an error (a refused password or script
 *               included; NOSCRIPT, which the store repairs by itself, and
 *               BUSYGROUP, which says a consumer group exists already, are
 *               answers rather than failures and not counted);
 *   reconnects  connections made again after a loss.
 * The counts are process-wide atomics, so any thread may read them while
 * the stores count; a store needs no registry to count into. */
typedef struct {
    uint64_t lost;
    uint64_t refused;
    uint64_t reconnects;
} store_counts_t;

void store_counts(store_counts_t *out);

/* --- records ---------------------------------------------------------
 * A record is a Redis hash {v: version, pb: packed protobuf}. Versions
 * start at 1; version 0 means "absent". txn.h writes them atomically. */

/* Reads a record. On STORE_OK: *version is 0 and *data NULL if absent,
 * else *data is a malloc'd copy of the bytes (caller frees) of *len bytes. */
store_result_t store_record_get(store_t *self, const char *key, uint64_t *version, uint8_t **data,
                                size_t *len);

/* --- snapshots (group reads) -----------------------------------------
 * The server runs the handlers of the requests waiting together in passes,
 * so that their record reads cost one round trip per pass instead of one
 * each (server.c). While a snapshot is open, store_record_get answers from
 * it; a key it does not hold is noted as missed and the call returns
 * STORE_LOST at once (the handler gives up, its run is thrown away).
 * store_snapshot_fill then reads every missed key in one pipeline, and the
 * handlers run again. A snapshot only ever holds what Redis said during
 * the group, before any of its writes: what the handlers would have read
 * one by one. */

/* Opens an empty snapshot (closing one left open). */
void store_snapshot_begin(store_t *self);

/* Keys missed since the snapshot was opened (a count that only grows). */
size_t store_snapshot_misses(const store_t *self);

/* Reads the keys missed since the last fill into the snapshot, in one
 * pipeline. STORE_OK, or the first failure (then close the snapshot and let
 * the handlers read by themselves). */
store_result_t store_snapshot_fill(store_t *self);

/* store_snapshot_fill with other commands in the same pipeline, sent before
 * the missed keys: reads that do not depend on the handlers (the group's
 * idempotency records) ride on the round trip the fill pays anyway, or
 * make it alone when nothing was missed. extra_replies[i] and
 * extra_results[i] are per command, as for store_command_many (the caller
 * frees each non-NULL reply); the result is the fill's, as for
 * store_snapshot_fill. */
store_result_t store_snapshot_fill_with(store_t *self, const store_cmd_t *extra, size_t extra_count,
                                        redisReply **extra_replies, store_result_t *extra_results);

/* Closes the snapshot: store_record_get reads Redis again. */
void store_snapshot_end(store_t *self);

#endif
