/* The Redis store: one hiredis connection, reconnected lazily, with the
 * project's Lua scripts; see store.h.
 *
 * The connection is made on the first call and dropped as soon as a command
 * gets no answer (hiredis returns NULL and the context is unusable after
 * that); the next call connects again. Nothing waits or retries inside a
 * call: a call either gets an answer within the command timeout or reports
 * STORE_LOST at once, so the caller can answer UNAVAILABLE within its own
 * deadline.
 *
 * Scripts are kept as source and loaded at every connect, because a Redis
 * restart (or SCRIPT FLUSH, or a failover to a replica) forgets them; a
 * NOSCRIPT answer in between is repaired by one reload and retry. */
#include "store.h"
#include "config.h"
#include "log.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#define STORE_MAX_SCRIPTS 16
#define STORE_SHA_LEN     40

typedef struct {
    char *source;
    char sha[STORE_SHA_LEN + 1]; /* "" until loaded on this connection */
} store_script_t;

/* A record as read into a snapshot: version 0 = absent. */
typedef struct {
    char *key;
    uint64_t version;
    uint8_t *data;
    size_t len;
    bool filled; /* false: missed, to read at the next fill */
} store_snap_entry_t;

struct store_t {
    char *host;
    int port;
    char *password; /* NULL for none */
    int connect_timeout_ms;
    int command_timeout_ms;
    bool plain_pipelines;

    redisContext *ctx;   /* NULL while disconnected */
    bool ever_connected; /* a later connect counts as a reconnect */
    bool down_logged;    /* one log line per outage, not one per call */
    uint64_t reconnects;
    char last_error[256];

    store_script_t scripts[STORE_MAX_SCRIPTS];
    int script_count;

    /* The open snapshot (store_snapshot_begin), or none. */
    bool snapshot;
    store_snap_entry_t *snap;
    size_t snap_count, snap_capacity, snap_misses;
};

/* ======================== configuration ================================ */

bool store_config_from_env(store_config_t *cfg)
{
    long port, connect_ms, command_ms;
    memset(cfg, 0, sizeof *cfg);
    cfg->host = config_str("PASSERELLE_REDIS_HOST", "127.0.0.1");
    if (!config_secret("PASSERELLE_REDIS_PASSWORD", &cfg->password) ||
        !config_int("PASSERELLE_REDIS_PORT", 6379, 1, 65535, &port) ||
        !config_int("PASSERELLE_REDIS_CONNECT_TIMEOUT_MS", 500, 1, 600000, &connect_ms) ||
        !config_int("PASSERELLE_REDIS_COMMAND_TIMEOUT_MS", 2000, 1, 600000, &command_ms))
        return false;
    cfg->port = (int)port;
    cfg->connect_timeout_ms = (int)connect_ms;
    cfg->command_timeout_ms = (int)command_ms;
    return true;
}

/* ======================== life cycle =================================== */

store_t *store_new(const store_config_t *cfg)
{
    store_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->host = strdup(cfg->host && *cfg->host ? cfg->host : "127.0.0.1");
    self->port = cfg->port > 0 ? cfg->port : 6379;
    self->password = cfg->password && *cfg->password ? strdup(cfg->password) : NULL;
    self->connect_timeout_ms = cfg->connect_timeout_ms > 0 ? cfg->connect_timeout_ms : 500;
    self->command_timeout_ms = cfg->command_timeout_ms > 0 ? cfg->command_timeout_ms : 2000;
    self->plain_pipelines = cfg->plain_pipelines;
    if (!self->host || (cfg->password && *cfg->password && !self->password)) {
        store_destroy(&self);
        return NULL;
    }
    return self;
}

void store_destroy(store_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    store_t *self = *self_p;
    store_snapshot_end(self);
    free(self->snap);
    if (self->ctx)
        redisFree(self->ctx);
    for (int i = 0; i < self->script_count; i++)
        free(self->scripts[i].source);
    free(self->host);
    free(self->password);
    free(self);
    *self_p = NULL;
}

/* ======================== process-wide counts ========================== */

/* Relaxed: each count is a tally read on its own by a scrape; nothing
 * else is ordered by it. */
static atomic_uint_fast64_t counted_lost, counted_refused, counted_reconnects;

static void tally(atomic_uint_fast64_t *what)
{
    atomic_fetch_add_explicit(what, 1, memory_order_relaxed);
}

void store_counts(store_counts_t *out)
{
    out->lost = atomic_load_explicit(&counted_lost, memory_order_relaxed);
    out->refused = atomic_load_explicit(&counted_refused, memory_order_relaxed);
    out->reconnects = atomic_load_explicit(&counted_reconnects, memory_order_relaxed);
}

/* ======================== connection =================================== */

static struct timeval timeval_ms(int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    return tv;
}

static void set_error(store_t *self, const char *prefix, const char *detail)
{
    bool both = *prefix && detail && *detail;
    snprintf(self->last_error, sizeof self->last_error, "%s%s%s", prefix, both ? ": " : "",
             detail ? detail : "");
}

/* Forgets the connection after a command got no answer. */
static void drop_connection(store_t *self)
{
    if (!self->ctx)
        return;
    tally(&counted_lost);
    set_error(self, "connection lost", self->ctx->errstr);
    log_warn("redis connection lost", "{s:s, s:i, s:s}", "host", self->host, "port", self->port,
             "error", self->last_error);
    self->down_logged = true;
    redisFree(self->ctx);
    self->ctx = NULL;
}

/* Loads one script on the current connection. */
static store_result_t load_script(store_t *self, store_script_t *script)
{
    redisReply *reply = redisCommand(self->ctx, "SCRIPT LOAD %s", script->source);
    if (!reply) {
        drop_connection(self);
        return STORE_LOST;
    }
    store_result_t result = STORE_OK;
    if (reply->type == REDIS_REPLY_STRING && reply->len == STORE_SHA_LEN) {
        memcpy(script->sha, reply->str, STORE_SHA_LEN + 1);
    } else {
        set_error(self, "SCRIPT LOAD failed",
                  reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
        log_error("redis refused a script", "{s:s}", "error", self->last_error);
        tally(&counted_refused);
        result = STORE_REFUSED;
    }
    freeReplyObject(reply);
    return result;
}

/* Connects, authenticates and loads the scripts. STORE_REFUSED when Redis
 * answers but will not have us (wrong password): the connection is dropped
 * all the same, so the next call tries again from scratch. */
static store_result_t connect_now(store_t *self)
{
    redisContext *ctx =
        redisConnectWithTimeout(self->host, self->port, timeval_ms(self->connect_timeout_ms));
    if (!ctx || ctx->err) {
        tally(&counted_lost);
        set_error(self, "cannot connect", ctx ? ctx->errstr : "out of memory");
        if (!self->down_logged)
            log_warn("redis unavailable", "{s:s, s:i, s:s}", "host", self->host, "port", self->port,
                     "error", self->last_error);
        self->down_logged = true;
        if (ctx)
            redisFree(ctx);
        return STORE_LOST;
    }
    redisSetTimeout(ctx, timeval_ms(self->command_timeout_ms));
    redisEnableKeepAlive(ctx);
    self->ctx = ctx;

    if (self->password) {
        redisReply *reply = redisCommand(ctx, "AUTH %s", self->password);
        if (!reply) {
            drop_connection(self);
            return STORE_LOST;
        }
        if (reply->type == REDIS_REPLY_ERROR) {
            tally(&counted_refused);
            set_error(self, "authentication refused", reply->str);
            log_error("redis refused the password", "{s:s, s:i, s:s}", "host", self->host, "port",
                      self->port, "error", reply->str);
            freeReplyObject(reply);
            redisFree(self->ctx);
            self->ctx = NULL;
            return STORE_REFUSED;
        }
        freeReplyObject(reply);
    }
    /* A script Redis will not load is reported when it is run; the other
     * scripts and plain commands keep working. */
    for (int i = 0; i < self->script_count; i++) {
        self->scripts[i].sha[0] = '\0';
        if (load_script(self, &self->scripts[i]) == STORE_LOST)
            return STORE_LOST;
    }

    if (self->ever_connected) {
        self->reconnects++;
        tally(&counted_reconnects);
        log_info("redis reconnected", "{s:s, s:i, s:I}", "host", self->host, "port", self->port,
                 "reconnects", (json_int_t)self->reconnects);
    } else if (self->down_logged) {
        log_info("redis connected", "{s:s, s:i}", "host", self->host, "port", self->port);
    }
    self->ever_connected = true;
    self->down_logged = false;
    return STORE_OK;
}

static store_result_t ensure_connected(store_t *self)
{
    return self->ctx ? STORE_OK : connect_now(self);
}

/* Sorts a reply into the three outcomes, keeping or freeing it as the
 * caller asked. */
static store_result_t finish(store_t *self, redisReply *reply, redisReply **reply_p)
{
    if (!reply) {
        drop_connection(self);
        return STORE_LOST;
    }
    store_result_t result = STORE_OK;
    if (reply->type == REDIS_REPLY_ERROR) {
        set_error(self, "", reply->str);
        /* A consumer creates its group at every start: "it exists
         * already" is the answer it expects, not a failure worth an alert. */
        if (strncmp(reply->str, "BUSYGROUP", 9) != 0)
            tally(&counted_refused);
        result = STORE_REFUSED;
    }
    if (reply_p)
        *reply_p = reply;
    else
        freeReplyObject(reply);
    return result;
}

/* ======================== commands ===================================== */

store_result_t store_command_argv(store_t *self, redisReply **reply_p, int argc, const char **argv,
                                  const size_t *argv_len)
{
    if (reply_p)
        *reply_p = NULL;
    store_result_t connected = ensure_connected(self);
    if (connected != STORE_OK)
        return connected;
    redisReply *reply = redisCommandArgv(self->ctx, argc, argv, argv_len);
    return finish(self, reply, reply_p);
}

store_result_t store_command(store_t *self, redisReply **reply_p, const char *format, ...)
{
    if (reply_p)
        *reply_p = NULL;
    store_result_t connected = ensure_connected(self);
    if (connected != STORE_OK)
        return connected;
    va_list ap;
    va_start(ap, format);
    redisReply *reply = redisvCommand(self->ctx, format, ap);
    va_end(ap);
    return finish(self, reply, reply_p);
}

/* ======================== scripts ====================================== */

int store_script_add(store_t *self, const char *source)
{
    /* Registering the same source again gives back its handle, so a module
     * can make sure of its script on each use without a setup step. */
    for (int i = 0; i < self->script_count; i++)
        if (self->scripts[i].source == source || strcmp(self->scripts[i].source, source) == 0)
            return i;
    if (self->script_count == STORE_MAX_SCRIPTS)
        return -1;
    char *copy = strdup(source);
    if (!copy)
        return -1;
    store_script_t *script = &self->scripts[self->script_count];
    script->source = copy;
    script->sha[0] = '\0';
    return self->script_count++;
}

/* Sends (append) or runs an EVALSHA. Appending only queues it in hiredis's
 * output buffer; the first redisGetReply writes the whole pipeline. */
static int evalsha_append(store_t *self, const store_script_t *script, int nkeys, int argc,
                          const char **argv, const size_t *argv_len, redisReply **run_reply)
{
    int total = argc + 3;
    const char **args = malloc(sizeof *args * (size_t)total);
    size_t *lens = malloc(sizeof *lens * (size_t)total);
    int rc = REDIS_ERR;
    if (run_reply)
        *run_reply = NULL;
    if (args && lens) {
        char nkeys_text[16];
        snprintf(nkeys_text, sizeof nkeys_text, "%d", nkeys);
        args[0] = "EVALSHA";
        args[1] = script->sha;
        args[2] = nkeys_text;
        lens[0] = 7;
        lens[1] = strlen(script->sha);
        lens[2] = strlen(nkeys_text);
        for (int i = 0; i < argc; i++) {
            args[i + 3] = argv[i];
            lens[i + 3] = argv_len ? argv_len[i] : strlen(argv[i]);
        }
        if (run_reply) {
            *run_reply = redisCommandArgv(self->ctx, total, args, lens);
            rc = *run_reply ? REDIS_OK : REDIS_ERR;
        } else {
            rc = redisAppendCommandArgv(self->ctx, total, args, lens);
        }
    }
    free(args);
    free(lens);
    return rc;
}

static redisReply *evalsha(store_t *self, const store_script_t *script, int nkeys, int argc,
                           const char **argv, const size_t *argv_len)
{
    redisReply *reply = NULL;
    evalsha_append(self, script, nkeys, argc, argv, argv_len, &reply);
    return reply;
}

store_result_t store_script_run(store_t *self, int script, redisReply **reply_p, int nkeys,
                                int argc, const char **argv, const size_t *argv_len)
{
    if (reply_p)
        *reply_p = NULL;
    if (script < 0 || script >= self->script_count || nkeys < 0 || nkeys > argc) {
        set_error(self, "bad script call", NULL);
        return STORE_REFUSED;
    }
    store_result_t connected = ensure_connected(self);
    if (connected != STORE_OK)
        return connected;
    store_script_t *entry = &self->scripts[script];
    if (!entry->sha[0]) {
        store_result_t loaded = load_script(self, entry);
        if (loaded != STORE_OK)
            return loaded;
    }
    redisReply *reply = evalsha(self, entry, nkeys, argc, argv, argv_len);
    if (reply && reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "NOSCRIPT", 8) == 0) {
        log_info("redis forgot a script, loading it again", "{s:s}", "sha", entry->sha);
        freeReplyObject(reply);
        store_result_t loaded = load_script(self, entry);
        if (loaded != STORE_OK)
            return loaded;
        reply = evalsha(self, entry, nkeys, argc, argv, argv_len);
    }
    return finish(self, reply, reply_p);
}

/* What one call's reply says, once read: NOSCRIPT puts the call back in
 * todo (at *noscript), anything else is its result. Takes reply. */
static void pipeline_answer(store_t *self, redisReply *reply, size_t i, size_t *todo,
                            size_t *noscript, redisReply **replies, store_result_t *results)
{
    if (reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "NOSCRIPT", 8) == 0) {
        freeReplyObject(reply);
        todo[(*noscript)++] = i;
        return;
    }
    results[i] = finish(self, reply, &replies[i]);
}

/* Reads one reply of a pipeline; NULL when the connection is lost (it is
 * then dropped). */
static redisReply *pipeline_reply(store_t *self)
{
    void *answer = NULL;
    if (redisGetReply(self->ctx, &answer) != REDIS_OK || !answer) {
        if (answer)
            freeReplyObject(answer);
        drop_connection(self);
        return NULL;
    }
    return answer;
}

/* One pass of a pipeline: appends the calls listed in todo, reads their
 * replies, and leaves in todo (count in *todo_count) those that answered
 * NOSCRIPT. False if the connection was lost (the unanswered calls are
 * STORE_LOST, the connection dropped).
 *
 * Several calls go between MULTI and EXEC. Redis reads a pipeline only as
 * far as its query buffer holds at a time (about 20 KB was seen), runs the
 * calls that buffer holds whole, and writes and fsyncs the AOF before it
 * reads on: a batch of a few kilobytes per call paid one fsync per read,
 * and a batch cut in two paid two. Queued calls run only at EXEC, in the
 * pass that reads it, so a batch pays one fsync whatever its size. If the
 * connection is lost before EXEC is answered, either every call ran or
 * none did; all are STORE_LOST, which callers already retry safely. */
static bool pipeline_pass(store_t *self, store_script_t *entry, const store_call_t *calls,
                          size_t *todo, size_t *todo_count, redisReply **replies,
                          store_result_t *results)
{
    bool multi = *todo_count > 1 && !self->plain_pipelines;
    bool queued = !multi || redisAppendCommand(self->ctx, "MULTI") == REDIS_OK;
    size_t appended = 0;
    for (; queued && appended < *todo_count; appended++) {
        const store_call_t *call = &calls[todo[appended]];
        if (evalsha_append(self, entry, call->nkeys, call->argc, call->argv, call->argv_len,
                           NULL) != REDIS_OK)
            break;
    }
    if (multi && queued && appended == *todo_count)
        queued = redisAppendCommand(self->ctx, "EXEC") == REDIS_OK;
    if (multi && (!queued || appended < *todo_count)) {
        /* A MULTI that would not end: nothing has been sent yet, and the
         * connection, with what hiredis buffered, goes. */
        for (size_t j = 0; j < *todo_count; j++)
            results[todo[j]] = STORE_REFUSED;
        set_error(self, "out of memory queueing a pipeline", NULL);
        drop_connection(self);
        *todo_count = 0;
        return false;
    }
    /* A call hiredis could not queue (out of memory) was never sent. */
    for (size_t j = appended; j < *todo_count; j++) {
        results[todo[j]] = STORE_REFUSED;
        set_error(self, "out of memory queueing a pipeline", NULL);
    }

    size_t noscript = 0;
    bool in_multi = false;
    if (multi) {
        redisReply *ok = pipeline_reply(self);
        if (!ok)
            goto lost;
        /* Not OK: the calls were not queued but run, and answer for
         * themselves; EXEC then fails and is passed over. */
        in_multi = ok->type == REDIS_REPLY_STATUS && strcmp(ok->str, "OK") == 0;
        freeReplyObject(ok);
    }
    if (!in_multi) {
        for (size_t j = 0; j < appended; j++) {
            redisReply *reply = pipeline_reply(self);
            if (!reply)
                goto lost;
            pipeline_answer(self, reply, todo[j], todo, &noscript, replies, results);
        }
        if (multi) {
            redisReply *exec = pipeline_reply(self);
            if (!exec)
                goto lost;
            freeReplyObject(exec);
        }
        *todo_count = noscript;
        return true;
    }
    /* +QUEUED for each call, or an error that makes EXEC refuse them all. */
    char refused[256] = "";
    for (size_t j = 0; j < appended; j++) {
        redisReply *reply = pipeline_reply(self);
        if (!reply)
            goto lost;
        if (reply->type == REDIS_REPLY_ERROR && !refused[0])
            snprintf(refused, sizeof refused, "%s", reply->str);
        freeReplyObject(reply);
    }
    redisReply *exec = pipeline_reply(self);
    if (!exec)
        goto lost;
    if (exec->type == REDIS_REPLY_ARRAY && exec->elements == appended) {
        for (size_t j = 0; j < appended; j++) {
            redisReply *reply = exec->element[j];
            exec->element[j] = NULL; /* now ours: freeReplyObject skips NULL */
            pipeline_answer(self, reply, todo[j], todo, &noscript, replies, results);
        }
    } else {
        /* EXECABORT, or an answer of another shape: nothing ran. Why a
         * call was refused when queued says more than EXECABORT. */
        const char *why = refused[0]                        ? refused
                          : exec->type == REDIS_REPLY_ERROR ? exec->str
                                                            : "EXEC answered unexpectedly";
        set_error(self, "", why);
        tally(&counted_refused);
        for (size_t j = 0; j < appended; j++)
            results[todo[j]] = STORE_REFUSED;
    }
    freeReplyObject(exec);
    *todo_count = noscript;
    return true;

lost:
    /* The calls whose replies were not read keep STORE_LOST. */
    *todo_count = 0;
    return false;
}

void store_script_run_many(store_t *self, int script, const store_call_t *calls, size_t count,
                           redisReply **replies, store_result_t *results)
{
    for (size_t i = 0; i < count; i++) {
        replies[i] = NULL;
        results[i] = STORE_LOST;
    }
    if (count == 0)
        return;
    store_result_t ready = STORE_OK;
    if (script < 0 || script >= self->script_count) {
        set_error(self, "bad script call", NULL);
        ready = STORE_REFUSED;
    }
    for (size_t i = 0; ready == STORE_OK && i < count; i++)
        if (calls[i].nkeys < 0 || calls[i].nkeys > calls[i].argc) {
            set_error(self, "bad script call", NULL);
            ready = STORE_REFUSED;
        }
    if (ready == STORE_OK)
        ready = ensure_connected(self);
    store_script_t *entry = ready == STORE_OK ? &self->scripts[script] : NULL;
    if (ready == STORE_OK && !entry->sha[0])
        ready = load_script(self, entry);
    size_t *todo = ready == STORE_OK ? malloc(sizeof *todo * count) : NULL;
    if (ready == STORE_OK && !todo) {
        set_error(self, "out of memory", NULL);
        ready = STORE_REFUSED;
    }
    if (ready != STORE_OK) {
        for (size_t i = 0; i < count; i++)
            results[i] = ready;
        return;
    }
    size_t todo_count = count;
    for (size_t i = 0; i < count; i++)
        todo[i] = i;
    /* A NOSCRIPT (Redis restarted between our connect and this pipeline, or
     * SCRIPT FLUSH) means those calls did not run: load and send them once
     * more. */
    for (int pass = 0; pass < 2 && todo_count > 0; pass++) {
        if (pass > 0) {
            log_info("redis forgot a script, loading it again", "{s:s, s:I}", "sha", entry->sha,
                     "calls", (json_int_t)todo_count);
            store_result_t loaded = load_script(self, entry);
            if (loaded != STORE_OK) {
                for (size_t j = 0; j < todo_count; j++)
                    results[todo[j]] = loaded;
                todo_count = 0;
                break;
            }
        }
        if (!pipeline_pass(self, entry, calls, todo, &todo_count, replies, results))
            break;
    }
    /* Still NOSCRIPT after a reload: Redis will not keep the script. */
    for (size_t j = 0; j < todo_count; j++) {
        set_error(self, "NOSCRIPT after reloading the script", NULL);
        tally(&counted_refused);
        results[todo[j]] = STORE_REFUSED;
    }
    free(todo);
}

/* ======================== plain pipelines ============================== */

void store_command_many(store_t *self, const store_cmd_t *cmds, size_t count, redisReply **replies,
                        store_result_t *results)
{
    for (size_t i = 0; i < count; i++) {
        replies[i] = NULL;
        results[i] = STORE_LOST;
    }
    if (count == 0)
        return;
    store_result_t connected = ensure_connected(self);
    if (connected != STORE_OK) {
        for (size_t i = 0; i < count; i++)
            results[i] = connected;
        return;
    }
    /* Appending only fills hiredis's output buffer; the first
     * redisGetReply writes all of it. A command hiredis could not queue
     * (out of memory) was never sent, and gets no reply to wait for. */
    bool *queued = calloc(count, sizeof *queued);
    if (!queued) {
        set_error(self, "out of memory queueing a pipeline", NULL);
        for (size_t i = 0; i < count; i++)
            results[i] = STORE_REFUSED;
        return;
    }
    for (size_t i = 0; i < count; i++) {
        queued[i] = redisAppendCommandArgv(self->ctx, cmds[i].argc, cmds[i].argv,
                                           cmds[i].argv_len) == REDIS_OK;
        if (!queued[i]) {
            set_error(self, "out of memory queueing a pipeline", NULL);
            results[i] = STORE_REFUSED;
        }
    }
    for (size_t i = 0; i < count; i++) {
        if (!queued[i])
            continue;
        void *answer = NULL;
        if (redisGetReply(self->ctx, &answer) != REDIS_OK || !answer) {
            /* Every reply from here on is lost with the connection. */
            drop_connection(self);
            break;
        }
        results[i] = finish(self, answer, &replies[i]);
    }
    free(queued);
}

/* ======================== helpers ====================================== */

bool store_ping(store_t *self)
{
    redisReply *reply = NULL;
    store_result_t result = store_command(self, &reply, "PING");
    bool pong =
        result == STORE_OK && reply->type == REDIS_REPLY_STATUS && strcmp(reply->str, "PONG") == 0;
    if (reply)
        freeReplyObject(reply);
    return pong;
}

const char *store_last_error(const store_t *self)
{
    return self->last_error;
}

uint64_t store_reconnects(const store_t *self)
{
    return self->reconnects;
}

/* Parses an HMGET key v pb reply into a record (see store_record_get). */
static store_result_t record_from_reply(store_t *self, const char *key, const redisReply *reply,
                                        uint64_t *version, uint8_t **data, size_t *len)
{
    *version = 0;
    *data = NULL;
    *len = 0;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
        set_error(self, "unexpected reply to HMGET", key);
        return STORE_REFUSED;
    }
    const redisReply *v = reply->element[0], *pb = reply->element[1];
    if (v->type != REDIS_REPLY_STRING)
        return STORE_OK;
    char *end;
    unsigned long long parsed = strtoull(v->str, &end, 10);
    if (*end || end == v->str || parsed == 0) {
        set_error(self, "record with a bad version", key);
        return STORE_REFUSED;
    }
    /* One byte more than needed so that an empty record still gets a
     * non-NULL pointer: NULL means absent. */
    size_t size = pb->type == REDIS_REPLY_STRING ? pb->len : 0;
    uint8_t *copy = malloc(size + 1);
    if (!copy) {
        set_error(self, "out of memory", NULL);
        return STORE_REFUSED;
    }
    if (size)
        memcpy(copy, pb->str, size);
    *version = parsed;
    *data = copy;
    *len = size;
    return STORE_OK;
}

/* The snapshot's entry for key, or NULL. Linear: a snapshot holds the few
 * records the handlers of one group read (a few per request). */
static store_snap_entry_t *snapshot_find(store_t *self, const char *key)
{
    for (size_t i = 0; i < self->snap_count; i++)
        if (strcmp(self->snap[i].key, key) == 0)
            return &self->snap[i];
    return NULL;
}

/* store_record_get inside a snapshot. */
static store_result_t snapshot_get(store_t *self, const char *key, uint64_t *version,
                                   uint8_t **data, size_t *len)
{
    store_snap_entry_t *entry = snapshot_find(self, key);
    if (entry && entry->filled) {
        if (entry->version == 0)
            return STORE_OK;
        uint8_t *copy = malloc(entry->len + 1);
        if (!copy) {
            set_error(self, "out of memory", NULL);
            return STORE_REFUSED;
        }
        if (entry->len)
            memcpy(copy, entry->data, entry->len);
        *version = entry->version;
        *data = copy;
        *len = entry->len;
        return STORE_OK;
    }
    self->snap_misses++;
    if (!entry) {
        if (self->snap_count == self->snap_capacity) {
            size_t capacity = self->snap_capacity ? self->snap_capacity * 2 : 32;
            store_snap_entry_t *grown = realloc(self->snap, capacity * sizeof *grown);
            if (!grown)
                goto deferred;
            self->snap = grown;
            self->snap_capacity = capacity;
        }
        entry = &self->snap[self->snap_count];
        memset(entry, 0, sizeof *entry);
        entry->key = strdup(key);
        if (!entry->key)
            goto deferred;
        self->snap_count++;
    }
deferred:
    /* Not an outage: the caller's run is thrown away and made again once
     * the key is read (or, out of memory, without the snapshot). */
    set_error(self, "read deferred to the group's pipeline", NULL);
    return STORE_LOST;
}

void store_snapshot_begin(store_t *self)
{
    store_snapshot_end(self);
    self->snapshot = true;
}

size_t store_snapshot_misses(const store_t *self)
{
    return self->snap_misses;
}

store_result_t store_snapshot_fill(store_t *self)
{
    return store_snapshot_fill_with(self, NULL, 0, NULL, NULL);
}

store_result_t store_snapshot_fill_with(store_t *self, const store_cmd_t *extra, size_t extra_count,
                                        redisReply **extra_replies, store_result_t *extra_results)
{
    size_t missed = 0;
    for (size_t i = 0; i < self->snap_count; i++)
        missed += !self->snap[i].filled;
    if (missed == 0 && extra_count == 0)
        return STORE_OK;
    size_t total = extra_count + missed;
    store_cmd_t *cmds = calloc(total, sizeof *cmds);
    const char **argv = calloc(missed ? missed * 4 : 1, sizeof *argv);
    size_t *which = calloc(missed ? missed : 1, sizeof *which);
    redisReply **replies = calloc(total, sizeof *replies);
    store_result_t *results = calloc(total, sizeof *results);
    store_result_t outcome = STORE_OK;
    if (!cmds || !argv || !which || !replies || !results) {
        set_error(self, "out of memory", NULL);
        for (size_t e = 0; e < extra_count; e++) {
            extra_replies[e] = NULL;
            extra_results[e] = STORE_REFUSED;
        }
        outcome = STORE_REFUSED;
        goto done;
    }
    /* The caller's commands first, then the records missed. */
    for (size_t e = 0; e < extra_count; e++)
        cmds[e] = extra[e];
    size_t n = 0;
    for (size_t i = 0; i < self->snap_count; i++) {
        if (self->snap[i].filled)
            continue;
        const char **args = &argv[n * 4];
        args[0] = "HMGET";
        args[1] = self->snap[i].key;
        args[2] = "v";
        args[3] = "pb";
        cmds[extra_count + n].argc = 4;
        cmds[extra_count + n].argv = args;
        which[n++] = i;
    }
    store_command_many(self, cmds, extra_count + n, replies, results);
    for (size_t e = 0; e < extra_count; e++) {
        extra_replies[e] = replies[e];
        extra_results[e] = results[e];
    }
    for (size_t c = 0; c < n; c++) {
        store_snap_entry_t *entry = &self->snap[which[c]];
        store_result_t result = results[extra_count + c];
        redisReply *reply = replies[extra_count + c];
        if (result == STORE_OK)
            result = record_from_reply(self, entry->key, reply, &entry->version, &entry->data,
                                       &entry->len);
        entry->filled = result == STORE_OK;
        if (result != STORE_OK && outcome == STORE_OK)
            outcome = result;
        if (reply)
            freeReplyObject(reply);
    }
done:
    free(cmds);
    free(argv);
    free(which);
    free(replies);
    free(results);
    return outcome;
}

void store_snapshot_end(store_t *self)
{
    for (size_t i = 0; i < self->snap_count; i++) {
        free(self->snap[i].key);
        free(self->snap[i].data);
    }
    self->snap_count = 0;
    self->snap_misses = 0;
    self->snapshot = false;
}

store_result_t store_record_get(store_t *self, const char *key, uint64_t *version, uint8_t **data,
                                size_t *len)
{
    *version = 0;
    *data = NULL;
    *len = 0;
    if (self->snapshot)
        return snapshot_get(self, key, version, data, len);
    redisReply *reply;
    store_result_t result = store_command(self, &reply, "HMGET %s v pb", key);
    if (result != STORE_OK) {
        if (reply)
            freeReplyObject(reply);
        return result;
    }
    result = record_from_reply(self, key, reply, version, data, len);
    freeReplyObject(reply);
    return result;
}
