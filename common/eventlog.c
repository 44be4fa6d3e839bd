/* Reading event streams with a consumer group; see eventlog.h.
 *
 * A poll works through three sources, in this order, and stops at the first
 * that had something, so that recovery work is never starved by new events
 * and a poll never blocks while there is work at hand:
 *   1. this consumer's own pending entries (only until they are all seen
 *      once after start: later failures come back through 2);
 *   2. entries idle longer than claim_idle_ms, taken with XAUTOCLAIM, which
 *      are also how an entry whose handler failed comes back;
 *   3. new entries, with XREADGROUP ... BLOCK.
 * Entries from 1 and 2 have been delivered before, so their delivery count
 * is read (XPENDING, one round trip each: these paths are rare) and checked
 * against max_deliveries; new entries are at their first delivery. */
#define _GNU_SOURCE
#include "eventlog.h"
#include "log.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STREAM_ID_LEN 48 /* "<ms>-<seq>": two 20-digit numbers and a dash */

/* Consumers one process may have at once and be watched (eventlog.h,
 * health): a service has one per stream it reads, a test a few more. */
#define BEAT_SLOTS      64
#define BEAT_STREAM_MAX 192
#define BEAT_GROUP_MAX  128

typedef struct beat_slot_t beat_slot_t;

struct consumer_t {
    store_t *store; /* borrowed */
    char *stream;
    char *group;
    char *consumer;
    char *dead_stream;
    int claim_idle_ms;
    int max_deliveries;
    int batch;
    int done_ttl_s;
    bool ordered;

    beat_slot_t *beat; /* NULL: not watched (the table was full) */

    bool group_ready;
    bool own_pending_seen;
    char own_cursor[STREAM_ID_LEN];   /* where the own-pending pass is */
    char claim_cursor[STREAM_ID_LEN]; /* where XAUTOCLAIM resumes */
};

typedef enum {
    SOURCE_OWN,
    SOURCE_CLAIMED,
    SOURCE_NEW,
} entry_source_t;

/* ======================== health ======================================= */

/* One consumer's slot. The names, live and used change only under
 * beat_lock; the beat and the counts are atomics that the consumer's own
 * thread writes without the lock and a reader (the HTTP thread) loads
 * under it. A slot is never freed: a live consumer's pointer stays valid,
 * and only a slot whose consumer is gone is given to another. */
struct beat_slot_t {
    char stream[BEAT_STREAM_MAX];
    char group[BEAT_GROUP_MAX];
    bool used; /* named: a consumer of them was made */
    bool live; /* its consumer exists */
    atomic_int_fast64_t beat_ms;
    atomic_uint_fast64_t handled;
    atomic_uint_fast64_t dead_lettered;
};

static beat_slot_t beat_slots[BEAT_SLOTS];
static pthread_mutex_t beat_lock = PTHREAD_MUTEX_INITIALIZER;

/* Monotonic: a wall clock set back would make a consumer look stuck. */
static int64_t beat_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool beat_names(const beat_slot_t *slot, const char *stream, const char *group)
{
    return slot->used && strcmp(slot->stream, stream) == 0 && strcmp(slot->group, group) == 0;
}

/* A slot for a new consumer of stream and group: preferably one its
 * predecessor of the same names left (its counts go on), else one never
 * used, else any whose consumer is gone. NULL when every slot is live or
 * a name is too long to keep (the consumer works all the same, unwatched:
 * readiness then says it is absent, which an operator can see). */
static beat_slot_t *beat_claim(const char *stream, const char *group)
{
    if (strlen(stream) >= BEAT_STREAM_MAX || strlen(group) >= BEAT_GROUP_MAX)
        return NULL;
    pthread_mutex_lock(&beat_lock);
    beat_slot_t *slot = NULL;
    for (size_t i = 0; !slot && i < BEAT_SLOTS; i++)
        if (!beat_slots[i].live && beat_names(&beat_slots[i], stream, group))
            slot = &beat_slots[i];
    for (size_t i = 0; !slot && i < BEAT_SLOTS; i++)
        if (!beat_slots[i].used)
            slot = &beat_slots[i];
    for (size_t i = 0; !slot && i < BEAT_SLOTS; i++)
        if (!beat_slots[i].live)
            slot = &beat_slots[i];
    if (slot) {
        if (!beat_names(slot, stream, group)) {
            snprintf(slot->stream, sizeof slot->stream, "%s", stream);
            snprintf(slot->group, sizeof slot->group, "%s", group);
            atomic_store(&slot->handled, 0);
            atomic_store(&slot->dead_lettered, 0);
        }
        slot->used = true;
        slot->live = true;
        /* Made is a beat: a consumer is not stuck before its first poll. */
        atomic_store(&slot->beat_ms, beat_now_ms());
    }
    pthread_mutex_unlock(&beat_lock);
    return slot;
}

static void beat_release(beat_slot_t *slot)
{
    if (!slot)
        return;
    pthread_mutex_lock(&beat_lock);
    slot->live = false;
    pthread_mutex_unlock(&beat_lock);
}

void consumer_beat(consumer_t *self)
{
    if (self && self->beat)
        atomic_store_explicit(&self->beat->beat_ms, beat_now_ms(), memory_order_relaxed);
}

void consumer_health(const char *stream, const char *group, consumer_health_t *out)
{
    memset(out, 0, sizeof *out);
    out->state = CONSUMER_ABSENT;
    if (!stream || !group)
        return;
    int64_t now = beat_now_ms(), oldest = now;
    pthread_mutex_lock(&beat_lock);
    for (size_t i = 0; i < BEAT_SLOTS; i++) {
        beat_slot_t *slot = &beat_slots[i];
        if (!beat_names(slot, stream, group))
            continue;
        out->handled += atomic_load_explicit(&slot->handled, memory_order_relaxed);
        out->dead_lettered += atomic_load_explicit(&slot->dead_lettered, memory_order_relaxed);
        if (slot->live) {
            int64_t beat = atomic_load_explicit(&slot->beat_ms, memory_order_relaxed);
            if (beat < oldest)
                oldest = beat;
            out->state = CONSUMER_RUNNING;
        } else if (out->state == CONSUMER_ABSENT) {
            out->state = CONSUMER_STOPPED;
        }
    }
    pthread_mutex_unlock(&beat_lock);
    if (out->state == CONSUMER_RUNNING)
        out->idle_ms = now - oldest;
}

/* ======================== life cycle =================================== */

consumer_t *consumer_new(store_t *store, const consumer_config_t *cfg)
{
    if (!store || !cfg->stream || !cfg->group || !cfg->consumer)
        return NULL;
    consumer_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->store = store;
    self->stream = strdup(cfg->stream);
    self->group = strdup(cfg->group);
    self->consumer = strdup(cfg->consumer);
    if (asprintf(&self->dead_stream, "%s:dead:%s", cfg->stream, cfg->group) == -1)
        self->dead_stream = NULL;
    if (!self->stream || !self->group || !self->consumer || !self->dead_stream) {
        consumer_destroy(&self);
        return NULL;
    }
    self->claim_idle_ms = cfg->claim_idle_ms > 0 ? cfg->claim_idle_ms : 30000;
    self->max_deliveries = cfg->max_deliveries > 0 ? cfg->max_deliveries : 10;
    self->batch = cfg->batch > 0 ? cfg->batch : 64;
    self->done_ttl_s = cfg->done_ttl_s > 0 ? cfg->done_ttl_s : 7 * 24 * 3600;
    self->ordered = cfg->ordered;
    strcpy(self->own_cursor, "0");
    strcpy(self->claim_cursor, "0-0");
    self->beat = beat_claim(self->stream, self->group);
    if (!self->beat)
        log_warn("consumer not watched: readiness will call it absent", "{s:s, s:s, s:i}", "stream",
                 self->stream, "group", self->group, "watched_most", BEAT_SLOTS);
    return self;
}

void consumer_destroy(consumer_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    consumer_t *self = *self_p;
    beat_release(self->beat);
    free(self->stream);
    free(self->group);
    free(self->consumer);
    free(self->dead_stream);
    free(self);
    *self_p = NULL;
}

void consumer_done_key(const consumer_t *self, const char *event_id, char *out, size_t out_size)
{
    snprintf(out, out_size, "%s:done:%s:%s", self->stream, self->group, event_id);
}

/* ======================== group ======================================== */

static bool is_error(const redisReply *reply, const char *code)
{
    return reply && reply->type == REDIS_REPLY_ERROR &&
           strncmp(reply->str, code, strlen(code)) == 0;
}

/* Creates the group from the start of the stream; an existing one is fine.
 * Returns 0, or -1 when Redis is unavailable or refuses. */
static int ensure_group(consumer_t *self)
{
    if (self->group_ready)
        return 0;
    redisReply *reply = NULL;
    store_result_t result = store_command(self->store, &reply, "XGROUP CREATE %s %s 0 MKSTREAM",
                                          self->stream, self->group);
    int ok = result == STORE_OK || is_error(reply, "BUSYGROUP") ? 0 : -1;
    if (result == STORE_REFUSED && ok != 0)
        log_error("cannot create the consumer group", "{s:s, s:s, s:s}", "stream", self->stream,
                  "group", self->group, "error", reply->str);
    if (reply)
        freeReplyObject(reply);
    if (ok == 0) {
        self->group_ready = true;
        /* A group made afresh (it may have been deleted) has no pending
         * entries of ours: start the scans over. */
        self->own_pending_seen = false;
        strcpy(self->own_cursor, "0");
        strcpy(self->claim_cursor, "0-0");
    }
    return ok;
}

/* Interprets a failed group command: NOGROUP means the stream or the group
 * was deleted under us, to be created again at the next poll. */
static void group_command_failed(consumer_t *self, const redisReply *reply, const char *what)
{
    if (is_error(reply, "NOGROUP")) {
        log_warn("consumer group vanished, creating it again", "{s:s, s:s}", "stream", self->stream,
                 "group", self->group);
        self->group_ready = false;
    } else if (reply && reply->type == REDIS_REPLY_ERROR) {
        log_error("redis refused a consumer command", "{s:s, s:s, s:s}", "command", what, "stream",
                  self->stream, "error", reply->str);
    }
}

/* ======================== one entry ==================================== */

static int ack(consumer_t *self, const char *id)
{
    store_result_t result =
        store_command(self->store, NULL, "XACK %s %s %s", self->stream, self->group, id);
    return result == STORE_LOST ? -1 : 0;
}

/* How many times the group delivered id (0 if no longer pending), or -1
 * when Redis is unavailable. */
static long long delivery_count(consumer_t *self, const char *id)
{
    redisReply *reply = NULL;
    store_result_t result = store_command(self->store, &reply, "XPENDING %s %s %s %s 1",
                                          self->stream, self->group, id, id);
    long long count = 0;
    if (result == STORE_LOST)
        count = -1;
    else if (result == STORE_OK && reply->type == REDIS_REPLY_ARRAY && reply->elements == 1) {
        const redisReply *row = reply->element[0];
        if (row->type == REDIS_REPLY_ARRAY && row->elements == 4 &&
            row->element[3]->type == REDIS_REPLY_INTEGER)
            count = row->element[3]->integer;
    }
    if (reply)
        freeReplyObject(reply);
    return count;
}

/* Copies the entry to the dead-letter stream with the reason, then XACKs
 * it. Two commands, not one script: a crash between them dead-letters the
 * entry twice, which is harmless for a stream read by people. */
static int dead_letter(consumer_t *self, const char *id, const redisReply *fields,
                       const char *reason, long long deliveries)
{
    size_t field_count = fields && fields->type == REDIS_REPLY_ARRAY ? fields->elements : 0;
    size_t argc = 11 + field_count;
    const char **argv = malloc(sizeof *argv * argc);
    size_t *lens = malloc(sizeof *lens * argc);
    if (!argv || !lens) {
        free(argv);
        free(lens);
        return -1;
    }
    char deliveries_text[24];
    snprintf(deliveries_text, sizeof deliveries_text, "%lld", deliveries);
    const char *head[] = {
        "XADD",     self->dead_stream, "*",          "position",     id, "reason", reason,
        "consumer", self->consumer,    "deliveries", deliveries_text};
    size_t n = 0;
    for (; n < 11; n++) {
        argv[n] = head[n];
        lens[n] = strlen(head[n]);
    }
    for (size_t i = 0; i < field_count; i++, n++) {
        const redisReply *field = fields->element[i];
        bool text = field->type == REDIS_REPLY_STRING;
        argv[n] = text ? field->str : "";
        lens[n] = text ? field->len : 0;
    }
    /* Stream fields come in pairs; an odd count would make XADD fail. */
    if ((n - 11) % 2)
        n--;
    store_result_t result = store_command_argv(self->store, NULL, (int)n, argv, lens);
    free(argv);
    free(lens);
    if (result == STORE_LOST)
        return -1;
    if (result == STORE_REFUSED) {
        log_error("cannot write to the dead-letter stream", "{s:s, s:s}", "stream",
                  self->dead_stream, "error", store_last_error(self->store));
        return 0; /* left pending: it will be tried again */
    }
    if (self->beat)
        atomic_fetch_add_explicit(&self->beat->dead_lettered, 1, memory_order_relaxed);
    log_error("event dead-lettered", "{s:s, s:s, s:s, s:s, s:I}", "stream", self->stream, "group",
              self->group, "position", id, "reason", reason, "deliveries", (json_int_t)deliveries);
    return ack(self, id);
}

/* The value of field name in a stream entry's field list, or NULL. */
static const redisReply *entry_field(const redisReply *fields, const char *name)
{
    if (!fields || fields->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (size_t i = 0; i + 1 < fields->elements; i += 2) {
        const redisReply *key = fields->element[i];
        if (key->type == REDIS_REPLY_STRING && strcmp(key->str, name) == 0 &&
            fields->element[i + 1]->type == REDIS_REPLY_STRING)
            return fields->element[i + 1];
    }
    return NULL;
}

/* One entry of a batch on its way to the handler. */
typedef struct {
    const char *id;
    Passerelle__Event *event; /* owned */
    char done_key[512];
} pending_t;

/* Sets the done markers of the handled entries and acknowledges them, in
 * one pipeline: a SET per entry (unless the handler sets its own) and one
 * XACK for all. Returns 0, or -1 when Redis went away. */
static int finish_handled(consumer_t *self, const pending_t *items, const int *results,
                          size_t count, bool set_done)
{
    size_t handled = 0;
    for (size_t i = 0; i < count; i++)
        handled += results[i] == 0;
    if (handled == 0)
        return 0;
    size_t n_cmds = (set_done ? handled : 0) + 1;
    store_cmd_t *cmds = calloc(n_cmds, sizeof *cmds);
    const char **argv = calloc(5 * handled + 3 + handled, sizeof *argv);
    redisReply **replies = calloc(n_cmds, sizeof *replies);
    store_result_t *results_cmd = calloc(n_cmds, sizeof *results_cmd);
    char ttl[16];
    snprintf(ttl, sizeof ttl, "%d", self->done_ttl_s);
    int rc = 0;
    if (!cmds || !argv || !replies || !results_cmd) {
        rc = -1;
        goto out;
    }
    size_t a = 0, c = 0;
    for (size_t i = 0; set_done && i < count; i++) {
        if (results[i] != 0)
            continue;
        cmds[c].argc = 5;
        cmds[c].argv = &argv[a];
        argv[a++] = "SET";
        argv[a++] = items[i].done_key;
        argv[a++] = "1";
        argv[a++] = "EX";
        argv[a++] = ttl;
        c++;
    }
    cmds[c].argv = &argv[a];
    argv[a++] = "XACK";
    argv[a++] = self->stream;
    argv[a++] = self->group;
    int xack_argc = 3;
    for (size_t i = 0; i < count; i++)
        if (results[i] == 0) {
            argv[a++] = items[i].id;
            xack_argc++;
        }
    cmds[c].argc = xack_argc;
    c++;
    store_command_many(self->store, cmds, c, replies, results_cmd);
    for (size_t i = 0; i < c; i++) {
        if (results_cmd[i] == STORE_LOST)
            rc = -1;
        if (replies[i])
            freeReplyObject(replies[i]);
    }
out:
    free(cmds);
    free(argv);
    free(replies);
    free(results_cmd);
    return rc;
}

/* Handles an array of entries [id, fields] as one batch: the entries that
 * are not events, or were delivered too often, go to the dead letters; the
 * done markers of the others are read in one pipeline; those not done go to
 * the handler together; what it handled is marked done and acknowledged in
 * one more pipeline. So a batch costs a few round trips, not a few per
 * entry. *count is increased by the number read, *last gets the last id.
 * Returns 0, or -1 when Redis went away. */
static int handle_entries(consumer_t *self, const redisReply *entries, entry_source_t source,
                          consumer_batch_fn *fn, void *arg, bool set_done, int *count, char *last)
{
    if (!entries || entries->type != REDIS_REPLY_ARRAY || entries->elements == 0)
        return 0;
    size_t n = entries->elements;
    pending_t *items = calloc(n, sizeof *items);
    int rc = 0;
    size_t m = 0;
    if (!items) {
        rc = -1;
        goto out;
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        const redisReply *entry = entries->element[i];
        (*count)++;
        if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 2 ||
            entry->element[0]->type != REDIS_REPLY_STRING)
            continue;
        const char *id = entry->element[0]->str;
        if (last)
            snprintf(last, STREAM_ID_LEN, "%s", id);
        const redisReply *fields = entry->element[1];
        /* Deleted from the stream while pending: nothing left to process. */
        if (fields->type != REDIS_REPLY_ARRAY) {
            rc = ack(self, id);
            continue;
        }
        if (source != SOURCE_NEW) {
            long long deliveries = delivery_count(self, id);
            if (deliveries < 0) {
                rc = -1;
                break;
            }
            if (deliveries > self->max_deliveries) {
                rc = dead_letter(self, id, fields, "too many deliveries", deliveries);
                continue;
            }
        }
        const redisReply *packed = entry_field(fields, "event");
        Passerelle__Event *event =
            packed ? passerelle__event__unpack(NULL, packed->len, (const uint8_t *)packed->str)
                   : NULL;
        if (!event || !event->id || !*event->id) {
            log_warn("stream entry is not an event", "{s:s, s:s, s:i}", "stream", self->stream,
                     "position", id, "length", packed ? (int)packed->len : -1);
            if (event)
                passerelle__event__free_unpacked(event, NULL);
            rc = dead_letter(self, id, fields, "not an event", 1);
            continue;
        }
        items[m].id = id;
        items[m].event = event;
        consumer_done_key(self, event->id, items[m].done_key, sizeof items[m].done_key);
        m++;
    }
    if (rc != 0 || m == 0)
        goto out;

    /* The done markers, read together: an entry processed before a crash
     * is only acknowledged. */
    store_cmd_t *cmds = calloc(m, sizeof *cmds);
    const char **argv = calloc(2 * m, sizeof *argv);
    redisReply **replies = calloc(m, sizeof *replies);
    store_result_t *got = calloc(m, sizeof *got);
    if (cmds && argv && replies && got) {
        for (size_t i = 0; i < m; i++) {
            argv[2 * i] = "EXISTS";
            argv[2 * i + 1] = items[i].done_key;
            cmds[i].argc = 2;
            cmds[i].argv = &argv[2 * i];
        }
        store_command_many(self->store, cmds, m, replies, got);
    } else {
        rc = -1;
    }
    pending_t *todo = calloc(m, sizeof *todo);
    int *todo_results = calloc(m, sizeof *todo_results);
    pending_t *done = calloc(m, sizeof *done);
    int *done_results = calloc(m, sizeof *done_results);
    size_t n_todo = 0, n_done = 0;
    for (size_t i = 0; rc == 0 && i < m; i++) {
        if (got[i] == STORE_LOST || !todo || !done || !todo_results || !done_results) {
            rc = -1;
            break;
        }
        if (got[i] == STORE_OK && replies[i]->type == REDIS_REPLY_INTEGER &&
            replies[i]->integer == 1)
            done[n_done++] = items[i];
        else
            todo[n_todo++] = items[i];
    }
    for (size_t i = 0; replies && i < m; i++)
        if (replies[i])
            freeReplyObject(replies[i]);
    free(cmds);
    free(argv);
    free(replies);
    free(got);

    if (rc == 0 && n_todo > 0) {
        consumer_entry_t *batch = calloc(n_todo, sizeof *batch);
        if (!batch) {
            rc = -1;
        } else {
            for (size_t i = 0; i < n_todo; i++)
                batch[i] = (consumer_entry_t){todo[i].id, todo[i].event, todo[i].done_key};
            /* Anything the handler does not report as done stays pending. */
            for (size_t i = 0; i < n_todo; i++)
                todo_results[i] = -1;
            fn(arg, batch, n_todo, todo_results);
            free(batch);
        }
    }
    if (rc == 0)
        rc = finish_handled(self, todo, todo_results, n_todo, set_done);
    if (rc == 0)
        rc = finish_handled(self, done, done_results, n_done, false);
    free(todo);
    free(todo_results);
    free(done);
    free(done_results);
out:
    for (size_t i = 0; items && i < m; i++)
        passerelle__event__free_unpacked(items[i].event, NULL);
    free(items);
    return rc;
}

/* ======================== reading ====================================== */

/* XREADGROUP from start ("0"-style id for own pending, ">" for new).
 * Returns the number of entries read, or -1 when Redis is unavailable or
 * refused. */
static int read_group(consumer_t *self, const char *start, int block_ms, entry_source_t source,
                      consumer_batch_fn *fn, void *arg, bool set_done, char *last)
{
    char count_text[16], block_text[16];
    snprintf(count_text, sizeof count_text, "%d", self->batch);
    snprintf(block_text, sizeof block_text, "%d", block_ms);
    const char *argv[12];
    int argc = 0;
    argv[argc++] = "XREADGROUP";
    argv[argc++] = "GROUP";
    argv[argc++] = self->group;
    argv[argc++] = self->consumer;
    argv[argc++] = "COUNT";
    argv[argc++] = count_text;
    if (block_ms > 0) {
        argv[argc++] = "BLOCK";
        argv[argc++] = block_text;
    }
    argv[argc++] = "STREAMS";
    argv[argc++] = self->stream;
    argv[argc++] = start;

    redisReply *reply = NULL;
    store_result_t result = store_command_argv(self->store, &reply, argc, argv, NULL);
    if (result != STORE_OK) {
        group_command_failed(self, reply, "XREADGROUP");
        if (reply)
            freeReplyObject(reply);
        return -1;
    }
    int count = 0, rc = 0;
    /* [[stream, [[id, fields], ...]]], or nil when BLOCK timed out. */
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements >= 1) {
        const redisReply *stream = reply->element[0];
        if (stream->type == REDIS_REPLY_ARRAY && stream->elements == 2)
            rc = handle_entries(self, stream->element[1], source, fn, arg, set_done, &count, last);
    }
    freeReplyObject(reply);
    return rc == 0 ? count : -1;
}

/* One XAUTOCLAIM step from claim_cursor. Returns entries read or -1. */
static int claim_abandoned(consumer_t *self, consumer_batch_fn *fn, void *arg, bool set_done)
{
    char idle_text[16], count_text[16];
    snprintf(idle_text, sizeof idle_text, "%d", self->claim_idle_ms);
    snprintf(count_text, sizeof count_text, "%d", self->batch);
    const char *argv[] = {"XAUTOCLAIM", self->stream,       self->group, self->consumer,
                          idle_text,    self->claim_cursor, "COUNT",     count_text};
    redisReply *reply = NULL;
    store_result_t result = store_command_argv(self->store, &reply, 8, argv, NULL);
    if (result != STORE_OK) {
        group_command_failed(self, reply, "XAUTOCLAIM");
        if (reply)
            freeReplyObject(reply);
        return -1;
    }
    int count = 0, rc = 0;
    /* Redis 7: [next cursor, [[id, fields], ...], [deleted ids]]. Deleted
     * ids are dropped from the pending list by Redis itself. */
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements >= 2) {
        const redisReply *cursor = reply->element[0];
        if (cursor->type == REDIS_REPLY_STRING)
            snprintf(self->claim_cursor, sizeof self->claim_cursor, "%s", cursor->str);
        rc = handle_entries(self, reply->element[1], SOURCE_CLAIMED, fn, arg, set_done, &count,
                            NULL);
    }
    freeReplyObject(reply);
    return rc == 0 ? count : -1;
}

static int poll_batches(consumer_t *self, int block_ms, consumer_batch_fn *fn, void *arg,
                        bool set_done)
{
    if (ensure_group(self) != 0)
        return -1;

    if (self->ordered) {
        /* Every pending entry, whoever holds it, from the oldest, before
         * any new one: so nothing is processed ahead of an entry read
         * earlier and not finished (left by a crash, or by a failure of
         * the handler). */
        strcpy(self->claim_cursor, "0-0");
        int saved = self->claim_idle_ms;
        self->claim_idle_ms = 0;
        int claimed = claim_abandoned(self, fn, arg, set_done);
        self->claim_idle_ms = saved;
        if (claimed != 0)
            return claimed;
        return read_group(self, ">", block_ms, SOURCE_NEW, fn, arg, set_done, NULL);
    }

    if (!self->own_pending_seen) {
        char last[STREAM_ID_LEN] = "";
        int read = read_group(self, self->own_cursor, 0, SOURCE_OWN, fn, arg, set_done, last);
        if (read < 0)
            return -1;
        if (read > 0) {
            /* Entries left pending by the handler stay in the list: move
             * past them rather than read them again at once. */
            snprintf(self->own_cursor, sizeof self->own_cursor, "%s", last);
            return read;
        }
        self->own_pending_seen = true;
    }

    int claimed = claim_abandoned(self, fn, arg, set_done);
    if (claimed != 0)
        return claimed;

    return read_group(self, ">", block_ms, SOURCE_NEW, fn, arg, set_done, NULL);
}

/* poll_batches, and the beat when Redis answered (eventlog.h, health). */
static int poll_and_beat(consumer_t *self, int block_ms, consumer_batch_fn *fn, void *arg,
                         bool set_done)
{
    int handled = poll_batches(self, block_ms, fn, arg, set_done);
    if (handled >= 0 && self->beat) {
        atomic_fetch_add_explicit(&self->beat->handled, (uint_fast64_t)handled,
                                  memory_order_relaxed);
        consumer_beat(self);
    }
    return handled;
}

int consumer_poll_batch(consumer_t *self, int block_ms, consumer_batch_fn *fn, void *arg)
{
    return poll_and_beat(self, block_ms, fn, arg, false);
}

/* consumer_poll's handler, called once per entry of a batch. */
typedef struct {
    consumer_fn *fn;
    void *arg;
} one_by_one_t;

static void one_by_one(void *arg, const consumer_entry_t *entries, size_t count, int *results)
{
    one_by_one_t *one = arg;
    for (size_t i = 0; i < count; i++)
        results[i] = one->fn(one->arg, entries[i].position, entries[i].event, entries[i].done_key);
}

int consumer_poll(consumer_t *self, int block_ms, consumer_fn *fn, void *arg)
{
    one_by_one_t one = {fn, arg};
    return poll_and_beat(self, block_ms, one_by_one, &one, true);
}

/* ======================== listing ====================================== */

store_result_t eventlog_list(store_t *store, const char *stream, const char *after, unsigned limit,
                             Passerelle__EventListReply *reply)
{
    reply->n_events = 0;
    reply->events = NULL;
    reply->last_position = NULL;
    if (limit == 0)
        limit = 100;
    if (limit > 1000)
        limit = 1000;

    char start[STREAM_ID_LEN + 1], count_text[16];
    bool from_start = !after || !*after || strcmp(after, "0") == 0;
    if (from_start)
        snprintf(start, sizeof start, "-");
    else
        snprintf(start, sizeof start, "(%s", after);
    snprintf(count_text, sizeof count_text, "%u", limit);
    const char *argv[] = {"XRANGE", stream, start, "+", "COUNT", count_text};
    redisReply *range = NULL;
    store_result_t result = store_command_argv(store, &range, 6, argv, NULL);
    if (result != STORE_OK) {
        if (range)
            freeReplyObject(range);
        return result;
    }
    if (range->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(range);
        return STORE_REFUSED;
    }

    const char *last = from_start ? "" : after;
    if (range->elements)
        reply->events = calloc(range->elements, sizeof *reply->events);
    if (range->elements && !reply->events) {
        freeReplyObject(range);
        return STORE_REFUSED;
    }
    for (size_t i = 0; i < range->elements; i++) {
        const redisReply *entry = range->element[i];
        if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 2 ||
            entry->element[0]->type != REDIS_REPLY_STRING)
            continue;
        last = entry->element[0]->str;
        const redisReply *packed = entry_field(entry->element[1], "event");
        Passerelle__Event *event =
            packed ? passerelle__event__unpack(NULL, packed->len, (const uint8_t *)packed->str)
                   : NULL;
        if (!event) {
            /* Not an event (the consumers dead-letter it): left out, but
             * the position still moves past it. */
            log_warn("stream entry is not an event", "{s:s, s:s}", "stream", stream, "position",
                     last);
            continue;
        }
        Passerelle__StreamEvent *item = malloc(sizeof *item);
        char *position = strdup(last);
        if (!item || !position) {
            free(item);
            free(position);
            passerelle__event__free_unpacked(event, NULL);
            break;
        }
        passerelle__stream_event__init(item);
        item->position = position;
        item->event = event;
        reply->events[reply->n_events++] = item;
    }
    reply->last_position = strdup(last);
    freeReplyObject(range);
    return STORE_OK;
}

void eventlog_list_free(Passerelle__EventListReply *reply)
{
    for (size_t i = 0; i < reply->n_events; i++) {
        Passerelle__StreamEvent *item = reply->events[i];
        free(item->position);
        if (item->event)
            passerelle__event__free_unpacked(item->event, NULL);
        free(item);
    }
    free(reply->events);
    free(reply->last_position);
    reply->events = NULL;
    reply->n_events = 0;
    reply->last_position = NULL;
}
