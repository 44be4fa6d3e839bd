/* The engine (engine.h): the projectors, one actor per stream, and the
 * rebuild, a thread of its own while it runs. Both put what events count
 * through a tally (tally.h) and write it with apply.lua; the rebuild
 * writes its sums directly, into a generation nobody reads yet.
 *
 * What makes the two safe side by side is in indicators.h: adds commute,
 * replacements keep the newest version, done markers stop a second count,
 * and the generation switch (switch.lua) only happens once the rebuild has
 * counted every stream to its end. A projector caches the current
 * generation and its rebuild cursor; apply.lua refuses a batch made for a
 * generation that is no longer current, and the projector reads both
 * again and redoes the batch, leaving out what the rebuild counted.
 *
 * An event is counted once per event id on both sides: a projector has its
 * done marker, the rebuild a set of the ids it counted (an entry appended
 * twice would otherwise count twice in a rebuild and once incrementally).
 *
 * The rebuild's cost is reading and counting, a million events in a row,
 * so counting takes no more than reading the entry from Redis does: the
 * event is read off the wire and its data decoded into an arena reused
 * from event to event (nothing freed field by field), what it counts goes
 * as increments (projection_count_each) into a tally that sums them as
 * they are, each distinct one expanded into its counters once, when the
 * sums are written. Redis never sees a command per event (pages of a
 * thousand entries, sums written once per field), and where the process
 * may use more than one core, worker threads count pages while the
 * rebuild's thread reads the next ones and counts its share. A
 * projector's batch counts the same way: increments, summed, expanded
 * once. */
#define _GNU_SOURCE /* sched_getaffinity */
#include "engine.h"

#include "eventlog.h"
#include "ids.h"
#include "indicators.pb-c.h"
#include "log.h"
#include "projection.h"
#include "tally.h"

#include <czmq.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

extern const char indicators_apply_lua[];
extern const char indicators_switch_lua[];

#define REBUILD_KEY       "indicators:rebuild"
#define REBUILD_LEASE_KEY "indicators:rebuild:lease"
#define GENERATIONS_KEY   "indicators:generations"

/* Short, so that $TERM is seen promptly; far below the store's command
 * timeout, which an XREADGROUP BLOCK must not reach. */
#define PROJECTOR_BLOCK_MS 200
#define PROJECTOR_BATCH    128
/* An entry left pending by a dead reader is taken over after this long.
 * Short, because taking over an entry a live reader still holds costs
 * nothing but the work: apply.lua checks the done markers atomically, so
 * an event is counted once whoever gets there first. */
#define PROJECTOR_CLAIM_IDLE_MS 3000
/* A batch is refused when the generation changed or another reader did
 * some of its events; each refusal makes progress, so a few suffice. */
#define PROJECTOR_ATTEMPTS 8
#define DONE_TTL_S         (7 * 24 * 3600)
/* The most arguments one apply.lua call gets: a batch that would need more
 * is split, a whole event per part, so each part is still all or nothing
 * for its events. */
#define APPLY_ARGS_MAX 16000

/* Entries per XRANGE of the rebuild. */
#define REBUILD_PAGE 1000
/* Sums held before the rebuild writes them out (about 100 bytes each). */
#define REBUILD_FLUSH_AT 500000
/* Commands per pipeline when writing sums. */
#define REBUILD_PIPELINE 4096
/* The lease lasts this long, renewed (with the progress) this often. */
#define REBUILD_LEASE_MS 15000
#define REBUILD_RENEW_MS 1000
/* How long a read of the rebuild may keep failing before it gives up. */
#define REBUILD_READ_RETRY_MS 10000
/* Most catch-up passes before the switch. Each pass reads what was
 * appended during the one before, so under a steady load passes shrink
 * and the switch succeeds within a few; a stream appended to faster than
 * the rebuild reads it would keep it catching up for ever (holding the
 * lease, so no other rebuild may start): it fails instead, naming the
 * stream, and can be started again when the load is lower. */
#define REBUILD_SWITCH_PASSES_MAX 100
/* Keys per SCAN slice when removing older generations. */
#define CLEANUP_SCAN_COUNT "1000"
/* Most worker threads counting beside the rebuild's own. */
#define REBUILD_WORKERS_MAX 3

#define STREAM_ID_LEN 48

/* ======================== argument lists =============================== */

/* Arguments of a command or a script being built: pointers to strings
 * that outlive the call (a tally's, a projection's) or to text made here,
 * in chunks that never move. */
typedef struct text_chunk_t {
    struct text_chunk_t *next;
    size_t used, size;
    char data[];
} text_chunk_t;

#define TEXT_CHUNK (64 * 1024)

typedef struct {
    const char **argv;
    size_t *lens;
    size_t argc, cap;
    text_chunk_t *text;
    bool failed; /* out of memory: the list is unusable */
} args_t;

static void args_reset(args_t *a)
{
    a->argc = 0;
    a->failed = false;
    /* Keep one ordinary chunk, emptied: most calls fit in it. */
    text_chunk_t *keep = NULL;
    for (text_chunk_t *chunk = a->text, *next; chunk; chunk = next) {
        next = chunk->next;
        if (!keep && chunk->size == TEXT_CHUNK) {
            keep = chunk;
            keep->next = NULL;
            keep->used = 0;
        } else {
            free(chunk);
        }
    }
    a->text = keep;
}

static void args_free(args_t *a)
{
    args_reset(a);
    free(a->text);
    free(a->argv);
    free(a->lens);
    memset(a, 0, sizeof *a);
}

static void args_add(args_t *a, const char *s, size_t len)
{
    if (a->failed)
        return;
    if (a->argc == a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 256;
        const char **argv = realloc(a->argv, cap * sizeof *argv);
        if (argv)
            a->argv = argv;
        size_t *lens = realloc(a->lens, cap * sizeof *lens);
        if (lens)
            a->lens = lens;
        if (!argv || !lens) {
            a->failed = true;
            return;
        }
        a->cap = cap;
    }
    a->argv[a->argc] = s;
    a->lens[a->argc] = len;
    a->argc++;
}

static void args_str(args_t *a, const char *s)
{
    args_add(a, s, strlen(s));
}

/* Room for len bytes of text that stays put until args_reset; NULL when
 * out of memory (the list is then marked failed). */
static char *args_room(args_t *a, size_t len)
{
    text_chunk_t *chunk = a->text;
    if (!chunk || chunk->size - chunk->used < len) {
        size_t size = len > TEXT_CHUNK ? len : TEXT_CHUNK;
        chunk = malloc(sizeof *chunk + size);
        if (!chunk) {
            a->failed = true;
            return NULL;
        }
        chunk->used = 0;
        chunk->size = size;
        chunk->next = a->text;
        a->text = chunk;
    }
    char *p = chunk->data + chunk->used;
    chunk->used += len;
    return p;
}

/* Adds the formatted text as an argument. */
static void args_fmt(args_t *a, const char *format, ...) __attribute__((format(printf, 2, 3)));
static void args_fmt(args_t *a, const char *format, ...)
{
    char buf[INDICATORS_KEY_MAX + 64];
    va_list ap;
    va_start(ap, format);
    int n = vsnprintf(buf, sizeof buf, format, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof buf) {
        a->failed = true;
        return;
    }
    char *p = args_room(a, (size_t)n + 1);
    if (!p)
        return;
    memcpy(p, buf, (size_t)n + 1);
    args_add(a, p, (size_t)n);
}

/* Adds n in decimal as an argument; by hand, as args_concat: a rebuild
 * writes a hundred thousand sums. */
static void args_int(args_t *a, int64_t n)
{
    char digits[24];
    size_t len = 0;
    uint64_t v = n < 0 ? 0 - (uint64_t)n : (uint64_t)n;
    do {
        digits[len++] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v);
    if (n < 0)
        digits[len++] = '-';
    char *p = args_room(a, len + 1);
    if (!p)
        return;
    for (size_t i = 0; i < len; i++)
        p[i] = digits[len - 1 - i];
    p[len] = '\0';
    args_add(a, p, len);
}

/* Adds the text of first then second as one argument. */
static void args_concat(args_t *a, const char *first, const char *second)
{
    size_t n1 = strlen(first), n2 = strlen(second);
    char *p = args_room(a, n1 + n2 + 1);
    if (!p)
        return;
    memcpy(p, first, n1);
    memcpy(p + n1, second, n2 + 1);
    args_add(a, p, n1 + n2);
}

/* A placeholder for a count known later (args_set_count). */
static size_t args_placeholder(args_t *a)
{
    args_add(a, "", 0);
    return a->argc - 1;
}

static void args_set_count(args_t *a, size_t index, size_t count)
{
    if (a->failed)
        return;
    char *p = args_room(a, 24);
    if (!p)
        return;
    int n = snprintf(p, 24, "%zu", count);
    a->argv[index] = p;
    a->lens[index] = (size_t)n;
}

/* ======================== stream positions ============================= */

typedef struct {
    uint64_t ms, seq;
} stream_pos_t;

/* "1700000000000-3" (or "1700000000000": sequence 0). */
static bool stream_pos_parse(const char *text, stream_pos_t *out)
{
    char *end;
    if (!text || !*text)
        return false;
    out->ms = strtoull(text, &end, 10);
    out->seq = 0;
    if (*end == '-')
        out->seq = strtoull(end + 1, &end, 10);
    return *end == '\0';
}

static bool stream_pos_after(stream_pos_t a, stream_pos_t b)
{
    return a.ms > b.ms || (a.ms == b.ms && a.seq > b.seq);
}

/* ======================== apply.lua calls ============================== */

/* The head of an apply.lua call: KEYS[1] and the first four arguments up
 * to (not including) the done markers' count. */
static void apply_args_head(args_t *a, const char *gen_text, bool check)
{
    args_str(a, INDICATORS_CURRENT);
    args_str(a, gen_text);
    args_str(a, check ? "1" : "0");
    args_fmt(a, "%d", DONE_TTL_S);
}

static void args_triple(args_t *a, const char *key, const char *field, int64_t delta)
{
    args_str(a, key);
    args_str(a, field);
    args_int(a, delta);
}

typedef struct {
    args_t *args;
    size_t count;
} args_counter_t;

static void apply_add_arg(void *arg, const char *key, const char *field, int64_t delta)
{
    args_counter_t *c = arg;
    args_triple(c->args, key, field, delta);
    c->count++;
}

static void apply_replacement_arg(args_t *a, const replacement_t *r)
{
    args_str(a, r->identity);
    args_fmt(a, "%" PRIu64, r->version);
    args_fmt(a, "%zu", r->triples.count);
    for (size_t i = 0; i < r->triples.count; i++) {
        const triple_t *t = &r->triples.items[i];
        args_triple(a, t->key, t->field, t->delta);
    }
}

static void apply_replacement_cb(void *arg, const replacement_t *r)
{
    args_counter_t *c = arg;
    apply_replacement_arg(c->args, r);
    c->count++;
}

/* What apply.lua answered. */
typedef enum {
    APPLY_DONE,    /* applied */
    APPLY_STALE,   /* the generation is no longer current */
    APPLY_ALREADY, /* some done markers were set: *already holds them */
    APPLY_FAILED,  /* the store failed or refused */
} apply_outcome_t;

/* Runs apply.lua with a's arguments (KEYS[1] first). On APPLY_ALREADY,
 * *reply_p keeps the reply (the keys from element 1 on; caller frees). */
static apply_outcome_t apply_run(store_t *store, int script, const args_t *a, redisReply **reply_p)
{
    *reply_p = NULL;
    if (a->failed) {
        log_error("out of memory building a batch's counts", NULL);
        return APPLY_FAILED;
    }
    redisReply *reply = NULL;
    store_result_t result =
        store_script_run(store, script, &reply, 1, (int)a->argc, a->argv, a->lens);
    if (result != STORE_OK) {
        if (result == STORE_REFUSED)
            log_error("apply.lua refused", "{s:s}", "error", store_last_error(store));
        if (reply)
            freeReplyObject(reply);
        return APPLY_FAILED;
    }
    apply_outcome_t outcome = APPLY_FAILED;
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements >= 1 &&
        reply->element[0]->type == REDIS_REPLY_INTEGER) {
        long long code = reply->element[0]->integer;
        if (code == 1)
            outcome = APPLY_DONE;
        else if (code == -1)
            outcome = APPLY_STALE;
        else if (code == -2)
            outcome = APPLY_ALREADY;
        else if (code == -3 && reply->elements >= 2 &&
                 reply->element[1]->type == REDIS_REPLY_STRING) {
            log_error("a record's stored counts do not read: the batch is refused", "{s:s}", "key",
                      reply->element[1]->str);
            freeReplyObject(reply);
            return APPLY_FAILED;
        }
    }
    if (outcome == APPLY_FAILED)
        log_error("apply.lua answered something unexpected", NULL);
    if (outcome == APPLY_ALREADY)
        *reply_p = reply;
    else
        freeReplyObject(reply);
    return outcome;
}

/* ======================== projectors =================================== */

struct projector_t {
    zactor_t *actor;
    store_config_t store_cfg;
    char stream[128];
    char consumer[128];
    bool started; /* set by the actor before it signals */
    /* owned by the actor thread */
    store_t *store;
    int apply_script;
    tally_t *tally;
    increments_t adds; /* a batch's, reused */
    args_t args;
    /* The generation written into and how far its rebuild counted this
     * stream (entries up to there are only marked done). */
    bool gen_known;
    uint64_t gen;
    char gen_text[24];
    bool has_cursor;
    stream_pos_t cursor;
};

/* Reads the current generation and its rebuild's cursor for this stream.
 * False when the store is unavailable or holds nonsense. */
static bool projector_load_generation(projector_t *self)
{
    redisReply *reply = NULL;
    if (store_command(self->store, &reply, "GET %s", INDICATORS_CURRENT) != STORE_OK) {
        if (reply)
            freeReplyObject(reply);
        return false;
    }
    uint64_t gen = 0;
    bool ok = true;
    if (reply->type == REDIS_REPLY_STRING) {
        char *end;
        gen = strtoull(reply->str, &end, 10);
        ok = *end == '\0' && reply->len > 0;
    }
    freeReplyObject(reply);
    if (!ok) {
        log_error("indicators:current is not a generation number", NULL);
        return false;
    }
    char prefix[48], key[64];
    indicators_generation_prefix(gen, prefix, sizeof prefix);
    snprintf(key, sizeof key, "%scursor", prefix);
    reply = NULL;
    if (store_command(self->store, &reply, "HGET %s %s", key, self->stream) != STORE_OK) {
        if (reply)
            freeReplyObject(reply);
        return false;
    }
    bool has_cursor = reply->type == REDIS_REPLY_STRING;
    stream_pos_t cursor = {0, 0};
    if (has_cursor && !stream_pos_parse(reply->str, &cursor)) {
        log_error("a rebuild cursor is not a stream position", "{s:s, s:s}", "key", key, "stream",
                  self->stream);
        freeReplyObject(reply);
        return false;
    }
    freeReplyObject(reply);
    if (!self->gen_known || self->gen != gen)
        log_info("projecting into a generation", "{s:s, s:I}", "stream", self->stream, "generation",
                 (json_int_t)gen);
    self->gen_known = true;
    self->gen = gen;
    snprintf(self->gen_text, sizeof self->gen_text, "%" PRIu64, gen);
    self->has_cursor = has_cursor;
    self->cursor = cursor;
    return true;
}

/* Where an entry of a batch stands. */
typedef enum {
    ENTRY_TODO,
    ENTRY_DONE,   /* its counts and done marker are written */
    ENTRY_LEFT,   /* left pending (it could not be projected) */
    ENTRY_REPEAT, /* the event of an earlier entry of the batch: done with it */
} entry_state_t;

/* A batch being applied: entry i counts the increments adds->items[from[i]]
 * to adds->items[from[i + 1]] (projection_count) and the replacements of
 * proj[i]; cost[i] bounds the arguments it adds to a call. */
typedef struct {
    const consumer_entry_t *entries;
    size_t count;
    const increments_t *adds;
    size_t *from; /* count + 1 */
    projection_t *proj;
    entry_state_t *state;
    size_t *cost;
    size_t *same; /* of an ENTRY_REPEAT: the entry it repeats */
} batch_t;

/* An upper bound of the arguments entry i adds to a call (its sums can
 * only merge with others'). */
static size_t entry_args(const batch_t *b, size_t i)
{
    size_t n = 1;
    for (size_t k = b->from[i]; k < b->from[i + 1]; k++)
        n += 3 * projection_triple_count(&b->adds->items[k]);
    const projection_t *p = &b->proj[i];
    for (size_t r = 0; r < p->replacement_count; r++)
        n += 3 + 3 * p->replacements[r].triples.count;
    return n;
}

/* What a part of a batch takes so far: its done markers, sums (bounded by
 * tally_size) and replacements. */
static size_t part_args(projector_t *self, size_t n_done, size_t repl_args)
{
    return 8 + n_done + 3 * tally_size(self->tally) + repl_args;
}

/* Applies the entries from first on that are still to do, as many as
 * their arguments allow, as one apply.lua call; those after the rebuild
 * cursor are counted, all are marked done. *end_p gets the entry it
 * stopped before. APPLY_DONE without a call when none was to do. */
static apply_outcome_t projector_apply_part(projector_t *self, const batch_t *b, size_t first,
                                            size_t *end_p, redisReply **already)
{
    tally_clear(self->tally);
    args_t *a = &self->args;
    args_reset(a);
    apply_args_head(a, self->gen_text, true);
    size_t done_count = args_placeholder(a);
    size_t n_done = 0, repl_args = 0, skipped = 0, end = first;
    for (; end < b->count; end++) {
        if (b->state[end] != ENTRY_TODO)
            continue;
        /* What the part takes so far, and at most what this entry adds.
         * tally_size counts each increment's triples on their own: when
         * that is too many, the increments are expanded, the entries'
         * sums merged, and the exact size decides. */
        if (n_done > 0 && part_args(self, n_done, repl_args) + b->cost[end] > APPLY_ARGS_MAX) {
            if (!tally_expand(self->tally))
                a->failed = true;
            if (part_args(self, n_done, repl_args) + b->cost[end] > APPLY_ARGS_MAX)
                break;
        }
        args_str(a, b->entries[end].done_key);
        n_done++;
        stream_pos_t pos;
        bool counted = !self->has_cursor || !stream_pos_parse(b->entries[end].position, &pos) ||
                       stream_pos_after(pos, self->cursor);
        if (!counted) {
            skipped++;
            continue;
        }
        const projection_t *p = &b->proj[end];
        if (!tally_add_increments(self->tally, &b->adds->items[b->from[end]],
                                  b->from[end + 1] - b->from[end]) ||
            !tally_add_projection(self->tally, p))
            a->failed = true;
        for (size_t r = 0; r < p->replacement_count; r++)
            repl_args += 3 + 3 * p->replacements[r].triples.count;
    }
    *end_p = end;
    if (n_done == 0)
        return APPLY_DONE;
    if (skipped > 0)
        log_debug("events the rebuild counted, only marked done", "{s:s, s:I, s:i}", "stream",
                  self->stream, "generation", (json_int_t)self->gen, "events", (int)skipped);
    args_set_count(a, done_count, n_done);
    size_t adds_count = args_placeholder(a);
    args_counter_t adds = {a, 0};
    if (!tally_each(self->tally, apply_add_arg, &adds))
        a->failed = true;
    args_set_count(a, adds_count, adds.count);
    size_t repl_count = args_placeholder(a);
    args_counter_t repl = {a, 0};
    tally_each_replacement(self->tally, apply_replacement_cb, &repl);
    args_set_count(a, repl_count, repl.count);
    return apply_run(self->store, self->apply_script, a, already);
}

/* The consumer's batch handler (eventlog.h): what the entries count, with
 * their done markers, in as few apply.lua calls as the argument bound
 * allows (one, nearly always: the entries of a batch share most of their
 * counters). */
static void projector_batch(void *arg, const consumer_entry_t *entries, size_t count, int *results)
{
    projector_t *self = arg;
    increments_reset(&self->adds);
    batch_t b = {
        .entries = entries,
        .count = count,
        .adds = &self->adds,
        .from = calloc(count + 1, sizeof *b.from),
        .proj = calloc(count, sizeof *b.proj),
        .state = calloc(count, sizeof *b.state),
        .cost = calloc(count, sizeof *b.cost),
        .same = calloc(count, sizeof *b.same),
    };
    if (!b.from || !b.proj || !b.state || !b.cost || !b.same)
        goto out;
    for (size_t i = 0; i < count; i++) {
        b.from[i] = self->adds.count;
        if (!projection_count(entries[i].event, NULL, &self->adds, &b.proj[i])) {
            log_error("out of memory projecting an event", "{s:s}", "event", entries[i].event->id);
            b.state[i] = ENTRY_LEFT;
        }
        b.from[i + 1] = self->adds.count;
    }
    for (size_t i = 0; i < count; i++)
        b.cost[i] = entry_args(&b, i);
    /* The same event twice in one batch (appended twice): its done marker
     * is not set yet for either, so only the first goes to the script and
     * the other follows it. */
    for (size_t i = 1; i < count; i++)
        for (size_t j = 0; j < i && b.state[i] == ENTRY_TODO; j++)
            if (b.state[j] == ENTRY_TODO && strcmp(entries[i].done_key, entries[j].done_key) == 0) {
                b.state[i] = ENTRY_REPEAT;
                b.same[i] = j;
            }

    for (int attempt = 0; attempt < PROJECTOR_ATTEMPTS; attempt++) {
        if (!self->gen_known && !projector_load_generation(self))
            break;
        bool again = false, failed = false;
        for (size_t first = 0, end; first < count && !again && !failed; first = end) {
            redisReply *already = NULL;
            switch (projector_apply_part(self, &b, first, &end, &already)) {
            case APPLY_DONE:
                for (size_t i = first; i < end; i++)
                    if (b.state[i] == ENTRY_TODO)
                        b.state[i] = ENTRY_DONE;
                break;
            case APPLY_STALE:
                /* Switched by a rebuild: read its cursor, and redo. */
                self->gen_known = false;
                again = true;
                break;
            case APPLY_ALREADY:
                /* Another reader counted these (it took them over, or
                 * we did from it): they are done; the rest go again. */
                for (size_t k = 1; k < already->elements; k++) {
                    const redisReply *key = already->element[k];
                    for (size_t i = first; key->type == REDIS_REPLY_STRING && i < end; i++)
                        if (b.state[i] == ENTRY_TODO && strcmp(entries[i].done_key, key->str) == 0)
                            b.state[i] = ENTRY_DONE;
                }
                freeReplyObject(already);
                again = true;
                break;
            case APPLY_FAILED:
                failed = true;
                break;
            }
        }
        if (failed || !again)
            break;
    }
    for (size_t i = 0; i < count; i++)
        if (b.state[i] == ENTRY_DONE ||
            (b.state[i] == ENTRY_REPEAT && b.state[b.same[i]] == ENTRY_DONE))
            results[i] = 0;
out:
    for (size_t i = 0; b.proj && i < count; i++)
        projection_free(&b.proj[i]);
    free(b.from);
    free(b.proj);
    free(b.state);
    free(b.cost);
    free(b.same);
    if (self->tally)
        tally_clear(self->tally);
}

static bool projector_stop_asked(zpoller_t *poller, zsock_t *pipe, int timeout_ms)
{
    if (zpoller_wait(poller, timeout_ms) != pipe)
        return false;
    char *command = zstr_recv(pipe);
    bool term = !command || streq(command, "$TERM");
    zstr_free(&command);
    return term;
}

static void projector_actor(zsock_t *pipe, void *arg)
{
    projector_t *self = arg;
    self->store = store_new(&self->store_cfg);
    self->tally = tally_new();
    self->apply_script = self->store ? store_script_add(self->store, indicators_apply_lua) : -1;
    consumer_config_t ccfg = {
        .stream = self->stream,
        .group = INDICATORS_GROUP,
        .consumer = self->consumer,
        .claim_idle_ms = PROJECTOR_CLAIM_IDLE_MS,
        .batch = PROJECTOR_BATCH,
        .done_ttl_s = DONE_TTL_S,
    };
    consumer_t *consumer = self->store ? consumer_new(self->store, &ccfg) : NULL;
    self->started = consumer && self->tally && self->apply_script >= 0;
    zsock_signal(pipe, 0);
    if (!self->started)
        goto out;

    zpoller_t *poller = zpoller_new(pipe, NULL);
    /* A SIGTERM must not stop the poller: $TERM is how this actor stops. */
    zpoller_set_nonstop(poller, true);
    bool down = false;
    while (true) {
        /* The pipe first, without waiting: the wait is XREADGROUP's. $TERM
         * is heard only here, between polls, so a poll's batch is always
         * counted and acknowledged before the actor stops: a clean stop
         * leaves nothing this reader took pending. */
        if (projector_stop_asked(poller, pipe, 0))
            break;
        int handled = consumer_poll_batch(consumer, PROJECTOR_BLOCK_MS, projector_batch, self);
        if (handled < 0) {
            if (!down)
                log_warn("event stream unreadable: waiting for the store", "{s:s, s:s}", "stream",
                         self->stream, "error", store_last_error(self->store));
            down = true;
            /* The generation may change while we cannot see it. */
            self->gen_known = false;
            if (projector_stop_asked(poller, pipe, 500))
                break;
        } else if (down) {
            log_info("event stream readable again", "{s:s}", "stream", self->stream);
            down = false;
        }
    }
    zpoller_destroy(&poller);
out:
    consumer_destroy(&consumer);
    args_free(&self->args);
    increments_free(&self->adds);
    tally_destroy(&self->tally);
    store_destroy(&self->store);
}

projector_t *projector_new(const projector_config_t *cfg)
{
    projector_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->store_cfg = *cfg->store;
    snprintf(self->stream, sizeof self->stream, "%s", cfg->stream);
    snprintf(self->consumer, sizeof self->consumer, "%s", cfg->consumer);
    self->actor = zactor_new(projector_actor, self);
    if (!self->actor) {
        free(self);
        return NULL;
    }
    /* zactor_new waited for the actor's signal. */
    if (!self->started) {
        log_error("the projector did not start", "{s:s}", "stream", self->stream);
        projector_destroy(&self);
    }
    return self;
}

void projector_destroy(projector_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    projector_t *self = *self_p;
    zactor_destroy(&self->actor);
    free(self);
    *self_p = NULL;
}

/* ======================== rebuild: scripts ============================= */

/* Takes the lease and starts a rebuild's status, all or nothing.
 * KEYS: 1 lease, 2 indicators:generations, 3 indicators:current,
 *       4 status, then the streams
 * ARGV: 1 holder, 2 lease (ms), 3 started_at
 * Returns {0, holder} when another holds the lease, else {1, generation,
 * events in the streams, current generation}. The generation is always
 * above the current one, even if indicators:generations was lost. */
static const char start_lua[] =
    "if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then\n"
    "  return {0, redis.call('GET', KEYS[1]) or ''}\n"
    "end\n"
    "local current = tonumber(redis.call('GET', KEYS[3]) or '0')\n"
    "local gen = redis.call('INCR', KEYS[2])\n"
    "if gen <= current then\n"
    "  gen = current + 1\n"
    "  redis.call('SET', KEYS[2], gen)\n"
    "end\n"
    "local total = 0\n"
    "for s = 5, #KEYS do total = total + redis.call('XLEN', KEYS[s]) end\n"
    "redis.call('DEL', KEYS[4])\n"
    "redis.call('HSET', KEYS[4], 'state', 'running', 'generation', gen, 'events_read', 0,\n"
    "  'events_total', total, 'started_at', ARGV[3], 'finished_at', '', 'message', '',\n"
    "  'holder', ARGV[1])\n"
    "return {1, gen, total, current}\n";

/* Keeps the lease and records the progress, if the lease is still ours.
 * KEYS: 1 lease, 2 status; ARGV: 1 holder, 2 lease (ms), 3 events read.
 * Returns 1, or 0 when the lease is lost. */
static const char renew_lua[] = "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end\n"
                                "redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
                                "redis.call('HSET', KEYS[2], 'events_read', ARGV[3])\n"
                                "return 1\n";

/* Gives the lease back and, when a state is given, ends the status with
 * it, if the lease is still ours (else another rebuild owns the status).
 * KEYS: 1 lease, 2 status; ARGV: 1 holder, 2 state or "", 3 message,
 * 4 finished_at, 5 events read. Returns 1 if it was ours. */
static const char release_lua[] =
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end\n"
    "redis.call('DEL', KEYS[1])\n"
    "if ARGV[2] ~= '' then\n"
    "  redis.call('HSET', KEYS[2], 'state', ARGV[2], 'message', ARGV[3], 'finished_at',\n"
    "    ARGV[4], 'events_read', ARGV[5])\n"
    "end\n"
    "return 1\n";

bool engine_scripts_add(store_t *store)
{
    return store_script_add(store, start_lua) >= 0 && store_script_add(store, release_lua) >= 0;
}

/* ======================== rebuild: the thread ========================== */

/* protobuf-c allocations of one event (the Event and its data), from a
 * buffer reused for every event: a rebuild decodes a million of them, and
 * a malloc and a free per field, with free_unpacked's walk over every
 * message, cost more than the decoding. Nothing is freed one by one:
 * pb_arena_reset drops everything at once, which is what stands for
 * free_unpacked here. What does not fit in the buffer is malloc'd and
 * chained, for the reset to free. */
typedef struct pb_spill_t {
    struct pb_spill_t *next;
    _Alignas(max_align_t) unsigned char data[];
} pb_spill_t;

typedef struct {
    _Alignas(max_align_t) unsigned char buf[16384];
    size_t used;
    pb_spill_t *spills;
} pb_arena_t;

static void *pb_arena_alloc(void *data, size_t size)
{
    pb_arena_t *arena = data;
    size = (size + _Alignof(max_align_t) - 1) & ~(_Alignof(max_align_t) - 1);
    if (sizeof arena->buf - arena->used >= size) {
        void *p = arena->buf + arena->used;
        arena->used += size;
        return p;
    }
    pb_spill_t *spill = malloc(sizeof *spill + size);
    if (!spill)
        return NULL;
    spill->next = arena->spills;
    arena->spills = spill;
    return spill->data;
}

static void pb_arena_free(void *data, void *p)
{
    /* Freed with the rest of the arena (pb_arena_reset), whatever
     * protobuf-c lets go of as it decodes (a field given twice, its
     * scratch space). */
    (void)data;
    (void)p;
}

static void pb_arena_reset(pb_arena_t *arena)
{
    arena->used = 0;
    while (arena->spills) {
        pb_spill_t *next = arena->spills->next;
        free(arena->spills);
        arena->spills = next;
    }
}

/* A set of event ids, each held as two independent 64-bit hashes (16
 * bytes, a million ids in 32 MB): two ids would have to agree on 128 bits
 * to be taken for one another.
 *
 * At that size nearly every lookup misses the caches, and the ids of a
 * page are looked up one after the other: so a page's ids are hashed
 * first and their slots prefetched a few ids ahead, which overlaps the
 * misses, and the table is made big enough for every event of the
 * streams when the rebuild starts, rather than grown (each growth moves
 * every id to a random place). */
typedef struct {
    uint64_t a, b;
} id_hash_t;

typedef struct {
    id_hash_t *slots; /* a == 0: empty */
    size_t cap, count;
} id_set_t;

#define ID_SET_MIN 65536
/* The most slots made ahead of need (256 MB); past it, the set grows. */
#define ID_SET_PRESIZE_MAX ((size_t)1 << 24)
/* How many ids ahead a page's slots are prefetched. */
#define ID_SET_PREFETCH 16

/* Two 64-bit hashes of the id, each a multiply-xor over 8-byte words
 * with its own constants, finished so that every bit depends on every
 * byte (the murmur3 finaliser). */
static uint64_t id_hash_finish(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

static id_hash_t id_hash(const char *id, size_t len)
{
    uint64_t a = 0xcbf29ce484222325ULL ^ len, b = 0x84222325cbf29ce4ULL + len;
    for (size_t i = 0; i < len; i += 8) {
        uint64_t w = 0;
        memcpy(&w, id + i, len - i < 8 ? len - i : 8);
        a = (a ^ w) * 0x9e3779b97f4a7c15ULL;
        a ^= a >> 29;
        b = (b + w) * 0xc2b2ae3d27d4eb4fULL;
        b ^= b >> 31;
    }
    a = id_hash_finish(a);
    b = id_hash_finish(b ^ 0x165667b19e3779f9ULL);
    return (id_hash_t){a ? a : 1, b};
}

static void id_set_free(id_set_t *set)
{
    free(set->slots);
    memset(set, 0, sizeof *set);
}

/* Makes room for more ids (at most half full after them). False when out
 * of memory: the set stays as it was. */
static bool id_set_reserve(id_set_t *set, size_t more)
{
    if ((set->count + more) * 2 <= set->cap)
        return true;
    size_t cap = set->cap ? set->cap : ID_SET_MIN;
    while ((set->count + more) * 2 > cap)
        cap *= 2;
    id_hash_t *slots = calloc(cap, sizeof *slots);
    if (!slots)
        return false;
    for (size_t i = 0; i < set->cap; i++) {
        if (!set->slots[i].a)
            continue;
        size_t j = set->slots[i].a & (cap - 1);
        while (slots[j].a)
            j = (j + 1) & (cap - 1);
        slots[j] = set->slots[i];
    }
    free(set->slots);
    set->slots = slots;
    set->cap = cap;
    return true;
}

/* Adds the id of hash h; false if it was there already. An id that cannot
 * be held (out of memory) counts as new: counting an event twice is better
 * than losing it. */
static bool id_set_add(id_set_t *set, id_hash_t h)
{
    if (!id_set_reserve(set, 1))
        return true;
    size_t i = h.a & (set->cap - 1);
    for (; set->slots[i].a; i = (i + 1) & (set->cap - 1))
        if (set->slots[i].a == h.a && set->slots[i].b == h.b)
            return false;
    set->slots[i] = h;
    set->count++;
    return true;
}

/* The id (field 1) of a packed Event, read off the wire without decoding
 * the rest; false if it has none. */
static bool packed_event_id(const uint8_t *p, size_t len, const char **id, size_t *id_len)
{
    size_t i = 0;
    while (i < len) {
        uint64_t tag = 0;
        for (int shift = 0; i < len && shift < 64; shift += 7) {
            tag |= (uint64_t)(p[i] & 0x7f) << shift;
            if (!(p[i++] & 0x80))
                break;
        }
        unsigned wire = (unsigned)(tag & 7);
        uint64_t field = tag >> 3, n = 0;
        if (wire == 0) { /* varint */
            while (i < len && (p[i++] & 0x80))
                ;
            continue;
        }
        if (wire == 1 || wire == 5) { /* fixed 64 or 32 bits */
            i += wire == 1 ? 8 : 4;
            continue;
        }
        if (wire != 2)
            return false;
        for (int shift = 0; i < len && shift < 64; shift += 7) {
            n |= (uint64_t)(p[i] & 0x7f) << shift;
            if (!(p[i++] & 0x80))
                break;
        }
        if (n > len - i)
            return false;
        if (field == 1) {
            *id = (const char *)p + i;
            *id_len = (size_t)n;
            return n > 0;
        }
        i += (size_t)n;
    }
    return false;
}

/* The "event" field of a stream entry, or NULL. */
static const redisReply *entry_event(const redisReply *entry)
{
    if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 2)
        return NULL;
    const redisReply *fields = entry->element[1];
    for (size_t f = 0; fields->type == REDIS_REPLY_ARRAY && f + 1 < fields->elements; f += 2)
        if (fields->element[f]->type == REDIS_REPLY_STRING && fields->element[f]->len == 5 &&
            memcmp(fields->element[f]->str, "event", 5) == 0 &&
            fields->element[f + 1]->type == REDIS_REPLY_STRING)
            return fields->element[f + 1];
    return NULL;
}

/* A counter of pages. Counting (decoding, projecting, tallying) is most
 * of a rebuild's work, and Redis sits idle meanwhile, so on a machine with
 * more than one core, worker threads count pages too, each into a tally of
 * its own, merged into the rebuild thread's before a write. */
typedef struct {
    tally_t *tally;
    pb_arena_t arena;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    redisReply *page; /* to count (owned); NULL when idle */
    bool quit;
    bool failed; /* ran out of memory on a page */
} counter_t;

typedef enum {
    REBUILD_SWITCHED,
    REBUILD_STOPPED, /* rebuild_stop asked */
    REBUILD_FAILED,  /* message says why */
} rebuild_outcome_t;

struct rebuild_t {
    pthread_t thread;
    atomic_bool stop;
    atomic_bool finished;
    store_config_t store_cfg;
    char holder[128];
    char **streams;
    size_t stream_count;
    uint64_t generation;
    /* owned by the thread */
    store_t *store;
    int apply_script, switch_script, renew_script, release_script;
    tally_t *tally;
    args_t args;
    char gen_text[24];
    char prefix[64]; /* "indicators:g<N>:" */
    char (*cursors)[STREAM_ID_LEN];
    uint64_t events_read;
    int64_t renew_at_ms;
    bool fresh; /* nothing written to the generation yet */
    char message[256];
    pb_arena_t arena;
    counter_t *workers;
    size_t worker_count;
    size_t turn; /* pages counted: whose turn the next one is */
    bool merge_failed;
    /* The events counted, by id: an event appended twice counts once, as
     * for the projectors, whose done markers are per event id. */
    id_set_t seen;
    id_hash_t page_hashes[REBUILD_PAGE]; /* rebuild_drop_repeats' */
    uint64_t events_total;               /* in the streams when it started */
    /* Where the time goes, for the log: reading pages, setting repeated
     * events aside, counting pages (in this thread; workers count beside
     * it), writing sums. */
    int64_t read_us, dedup_us, count_us, write_us;
};

/* Records why the rebuild ends; returns false, for the callers that end
 * with it. */
static bool rebuild_fail(rebuild_t *self, const char *format, ...)
    __attribute__((format(printf, 2, 3)));
static bool rebuild_fail(rebuild_t *self, const char *format, ...)
{
    va_list ap;
    va_start(ap, format);
    vsnprintf(self->message, sizeof self->message, format, ap);
    va_end(ap);
    return false;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Renews the lease and records the progress when due. False (message
 * set) when the lease is lost; a store that does not answer is tolerated
 * until the lease would have run out. */
static bool rebuild_renew(rebuild_t *self)
{
    int64_t t = time_now_ms();
    if (t < self->renew_at_ms)
        return true;
    char ms[16], read[24];
    snprintf(ms, sizeof ms, "%d", REBUILD_LEASE_MS);
    snprintf(read, sizeof read, "%" PRIu64, self->events_read);
    const char *argv[] = {REBUILD_LEASE_KEY, REBUILD_KEY, self->holder, ms, read};
    redisReply *reply = NULL;
    store_result_t result =
        store_script_run(self->store, self->renew_script, &reply, 2, 5, argv, NULL);
    bool ours = result == STORE_OK && reply->type == REDIS_REPLY_INTEGER && reply->integer == 1;
    if (reply)
        freeReplyObject(reply);
    if (result == STORE_OK && !ours) {
        rebuild_fail(self, "the rebuild lease was lost (another process took it over)");
        return false;
    }
    if (ours) {
        self->renew_at_ms = t + REBUILD_RENEW_MS;
    } else if (t > self->renew_at_ms - REBUILD_RENEW_MS + REBUILD_LEASE_MS) {
        rebuild_fail(self, "the store did not answer for longer than the lease (%s)",
                     store_last_error(self->store));
        return false;
    }
    return true;
}

/* --- writing sums ---------------------------------------------------- */

/* A pipeline of commands being built over an argument list: each command
 * is a range of arguments (indexes, since the list may move as it grows). */
typedef struct {
    rebuild_t *rb;
    size_t starts[REBUILD_PIPELINE];
    size_t count;
    store_cmd_t cmds[REBUILD_PIPELINE];
    redisReply *replies[REBUILD_PIPELINE];
    store_result_t results[REBUILD_PIPELINE];
    const char *open_key; /* the key the open HSET writes, or NULL */
    size_t open_fields;
    bool failed;
} pipeline_t;

/* Sends the commands built, checking every reply. */
static void pipeline_send(pipeline_t *p)
{
    args_t *a = &p->rb->args;
    if (p->failed || p->count == 0 || a->failed) {
        if (a->failed && !p->failed) {
            rebuild_fail(p->rb, "out of memory writing the sums");
            p->failed = true;
        }
        goto out;
    }
    store_cmd_t *cmds = p->cmds;
    redisReply **replies = p->replies;
    store_result_t *results = p->results;
    for (size_t i = 0; i < p->count; i++) {
        size_t end = i + 1 < p->count ? p->starts[i + 1] : a->argc;
        cmds[i] = (store_cmd_t){(int)(end - p->starts[i]), &a->argv[p->starts[i]],
                                &a->lens[p->starts[i]]};
    }
    store_command_many(p->rb->store, cmds, p->count, replies, results);
    for (size_t i = 0; i < p->count; i++) {
        if (results[i] != STORE_OK && !p->failed) {
            /* Sums are not idempotent: once a part of them may be written,
             * the generation cannot be trusted, and the rebuild ends. */
            rebuild_fail(p->rb, "writing the sums failed (%s)", store_last_error(p->rb->store));
            p->failed = true;
        }
        if (replies[i])
            freeReplyObject(replies[i]);
    }
out:
    p->count = 0;
    p->open_key = NULL;
    args_reset(a);
}

/* tally_each's callback: one HINCRBY per field, or, while the generation
 * is fresh (every key is new), one HSET per key with all its fields, which
 * saves most commands (tally.c hands a key's fields out together). */
static void pipeline_sum(void *arg, const char *key, const char *field, int64_t delta)
{
    pipeline_t *p = arg;
    if (p->failed)
        return;
    args_t *a = &p->rb->args;
    bool extend =
        p->rb->fresh && p->open_key && strcmp(p->open_key, key) == 0 && p->open_fields < 512;
    if (!extend) {
        if (p->count == REBUILD_PIPELINE)
            pipeline_send(p);
        p->starts[p->count++] = a->argc;
        args_str(a, p->rb->fresh ? "HSET" : "HINCRBY");
        args_concat(a, p->rb->prefix, key);
        p->open_key = p->rb->fresh ? key : NULL;
        p->open_fields = 0;
    }
    args_str(a, field);
    args_int(a, delta);
    p->open_fields++;
}

typedef struct {
    const replacement_t **items;
    size_t count;
} replacement_list_t;

static void collect_replacement(void *arg, const replacement_t *r)
{
    replacement_list_t *list = arg;
    list->items[list->count++] = r;
}

/* Writes the replacements held with apply.lua (the newest version wins
 * there too, whatever a previous flush wrote), in calls of bounded size. */
static bool rebuild_write_replacements(rebuild_t *self)
{
    size_t n = tally_replacement_count(self->tally);
    if (n == 0)
        return true;
    replacement_list_t list = {calloc(n, sizeof *list.items), 0};
    if (!list.items) {
        rebuild_fail(self, "out of memory writing the replacements");
        return false;
    }
    tally_each_replacement(self->tally, collect_replacement, &list);
    bool ok = true;
    size_t first = 0;
    while (ok && first < list.count) {
        args_t *a = &self->args;
        args_reset(a);
        apply_args_head(a, self->gen_text, false);
        args_str(a, "0"); /* no done markers */
        args_str(a, "0"); /* no adds */
        size_t count_at = args_placeholder(a);
        size_t end = first, args = 0;
        while (end < list.count) {
            size_t cost = 3 + 3 * list.items[end]->triples.count;
            if (end > first && args + cost > APPLY_ARGS_MAX)
                break;
            apply_replacement_arg(a, list.items[end]);
            args += cost;
            end++;
        }
        args_set_count(a, count_at, end - first);
        redisReply *already = NULL;
        if (apply_run(self->store, self->apply_script, a, &already) != APPLY_DONE) {
            if (already)
                freeReplyObject(already);
            rebuild_fail(self, "writing the replacements failed (%s)",
                         store_last_error(self->store));
            ok = false;
        }
        first = end;
    }
    args_reset(&self->args);
    free(list.items);
    return ok;
}

static bool rebuild_gather(rebuild_t *self);

/* Writes everything the tallies hold into the generation and empties
 * them. */
static bool rebuild_flush(rebuild_t *self)
{
    if (!rebuild_gather(self))
        return false;
    int64_t started = zclock_usecs();
    pipeline_t *p = calloc(1, sizeof *p);
    if (!p)
        return rebuild_fail(self, "out of memory writing the sums");
    p->rb = self;
    args_reset(&self->args);
    bool expanded = tally_each(self->tally, pipeline_sum, p);
    pipeline_send(p);
    bool ok = !p->failed;
    if (!expanded)
        ok = rebuild_fail(self, "out of memory writing the sums");
    free(p);
    bool wrote = tally_size(self->tally) > 0 || tally_replacement_count(self->tally) > 0;
    ok = ok && rebuild_write_replacements(self);
    if (wrote)
        self->fresh = false;
    tally_clear(self->tally);
    self->write_us += zclock_usecs() - started;
    return ok;
}

/* --- reading --------------------------------------------------------- */

/* projection_count_each's callback: an add straight into the tally. */
static bool tally_take(void *arg, const increment_t *inc)
{
    return tally_add_increments(arg, inc, 1);
}

/* One page of entries into tally: each event's adds as increments handed
 * straight to it (projection_count_each), the event and its data decoded
 * in arena. False when out of memory. */
static bool count_page(tally_t *tally, pb_arena_t *arena, const redisReply *page)
{
    ProtobufCAllocator allocator = {pb_arena_alloc, pb_arena_free, arena};
    bool ok = true;
    for (size_t i = 0; ok && i < page->elements; i++) {
        const redisReply *packed = entry_event(page->element[i]);
        if (!packed)
            continue; /* not an event: the projectors dead-letter it */
        /* The previous event's decoding goes: no free_unpacked (above). */
        pb_arena_reset(arena);
        Passerelle__Event *event = (Passerelle__Event *)projection_message_read(
            &passerelle__event__descriptor, (const uint8_t *)packed->str, packed->len, &allocator);
        if (!event || !event->id || !*event->id)
            continue;
        projection_t p;
        ok = projection_count_each(event, &allocator, tally_take, tally, &p) &&
             tally_add_projection(tally, &p);
        projection_free(&p);
    }
    pb_arena_reset(arena);
    return ok;
}

/* Takes out of page the entries whose event was seen before (in this
 * stream or another), so that it is counted once. */
static void rebuild_drop_repeats(rebuild_t *self, redisReply *page)
{
    id_set_t *seen = &self->seen;
    id_hash_t *hashes = self->page_hashes;
    /* A page holds REBUILD_PAGE entries at most (XRANGE ... COUNT). */
    size_t n = page->elements < REBUILD_PAGE ? page->elements : REBUILD_PAGE;
    for (size_t i = 0; i < n; i++) {
        const redisReply *packed = entry_event(page->element[i]);
        const char *id;
        size_t id_len;
        /* No id: kept, and counted as it comes (count_page skips it). */
        hashes[i] =
            packed && packed_event_id((const uint8_t *)packed->str, packed->len, &id, &id_len)
                ? id_hash(id, id_len)
                : (id_hash_t){0, 0};
    }
    /* Out of memory: id_set_add grows the set (or counts ids as new). */
    id_set_reserve(seen, n);
    for (size_t i = 0; i < n && i < ID_SET_PREFETCH; i++)
        __builtin_prefetch(&seen->slots[hashes[i].a & (seen->cap - 1)]);
    size_t kept = 0;
    for (size_t i = 0; i < page->elements; i++) {
        redisReply *entry = page->element[i];
        if (i + ID_SET_PREFETCH < n)
            __builtin_prefetch(&seen->slots[hashes[i + ID_SET_PREFETCH].a & (seen->cap - 1)]);
        if (i < n && hashes[i].a && !id_set_add(seen, hashes[i])) {
            freeReplyObject(entry);
            continue;
        }
        page->element[kept++] = entry;
    }
    page->elements = kept;
}

/* A worker's life: count the pages it is given into its own tally until
 * told to quit. */
static void *worker_main(void *arg)
{
    counter_t *c = arg;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!c->page && !c->quit)
            pthread_cond_wait(&c->cv, &c->mu);
        if (!c->page)
            break;
        redisReply *page = c->page;
        pthread_mutex_unlock(&c->mu);
        bool ok = count_page(c->tally, &c->arena, page);
        freeReplyObject(page);
        pthread_mutex_lock(&c->mu);
        c->failed = c->failed || !ok;
        c->page = NULL;
        pthread_cond_broadcast(&c->cv);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* Hands page (owned from now on) to worker c once it is idle. */
static void worker_give(counter_t *c, redisReply *page)
{
    pthread_mutex_lock(&c->mu);
    while (c->page)
        pthread_cond_wait(&c->cv, &c->mu);
    c->page = page;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

/* Waits until worker c is idle; false if a page failed it. */
static bool worker_wait(counter_t *c)
{
    pthread_mutex_lock(&c->mu);
    while (c->page)
        pthread_cond_wait(&c->cv, &c->mu);
    bool ok = !c->failed;
    pthread_mutex_unlock(&c->mu);
    return ok;
}

/* Starts the workers: one per core beyond the first (the rebuild thread
 * counts too), a few at most. A worker that cannot start is done without. */
static void workers_start(rebuild_t *self)
{
    /* The cores this process may run on, not the machine's: a service
     * pinned to one core gains nothing from a worker. */
    cpu_set_t set;
    long cores = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set)
                                                             : sysconf(_SC_NPROCESSORS_ONLN);
    size_t want = cores > 1 ? (size_t)(cores - 1) : 0;
    if (want > REBUILD_WORKERS_MAX)
        want = REBUILD_WORKERS_MAX;
    self->workers = want ? calloc(want, sizeof *self->workers) : NULL;
    for (size_t i = 0; self->workers && i < want; i++) {
        counter_t *c = &self->workers[self->worker_count];
        c->tally = tally_new();
        if (!c->tally)
            break;
        pthread_mutex_init(&c->mu, NULL);
        pthread_cond_init(&c->cv, NULL);
        if (pthread_create(&c->thread, NULL, worker_main, c) != 0) {
            pthread_mutex_destroy(&c->mu);
            pthread_cond_destroy(&c->cv);
            tally_destroy(&c->tally);
            break;
        }
        self->worker_count++;
    }
}

/* Lets the workers finish their page and quit, and frees them. */
static void workers_stop(rebuild_t *self)
{
    for (size_t i = 0; i < self->worker_count; i++) {
        counter_t *c = &self->workers[i];
        pthread_mutex_lock(&c->mu);
        c->quit = true;
        pthread_cond_broadcast(&c->cv);
        pthread_mutex_unlock(&c->mu);
        pthread_join(c->thread, NULL);
        pthread_mutex_destroy(&c->mu);
        pthread_cond_destroy(&c->cv);
        tally_destroy(&c->tally);
    }
    free(self->workers);
    self->workers = NULL;
    self->worker_count = 0;
}

static void merge_add(void *arg, const char *key, const char *field, int64_t delta)
{
    rebuild_t *self = arg;
    if (!tally_add(self->tally, key, field, delta))
        self->merge_failed = true;
}

static void merge_replacement(void *arg, const replacement_t *r)
{
    rebuild_t *self = arg;
    /* A projection of just this replacement: the tally keeps it if newer. */
    projection_t p;
    memset(&p, 0, sizeof p);
    p.replacements = (replacement_t *)r;
    p.replacement_count = 1;
    if (!tally_add_projection(self->tally, &p))
        self->merge_failed = true;
}

/* Waits for every worker and merges their tallies into the rebuild's.
 * False (message set) when one ran out of memory. */
static bool rebuild_gather(rebuild_t *self)
{
    self->merge_failed = false;
    for (size_t i = 0; i < self->worker_count; i++) {
        counter_t *c = &self->workers[i];
        if (!worker_wait(c)) {
            rebuild_fail(self, "out of memory counting the events");
            return false;
        }
        if (!tally_each(c->tally, merge_add, self))
            self->merge_failed = true;
        tally_each_replacement(c->tally, merge_replacement, self);
        tally_clear(c->tally);
        if (self->merge_failed) {
            rebuild_fail(self, "out of memory counting the events");
            return false;
        }
    }
    return true;
}

/* Counts a page (owned from now on): the pages go round the rebuild
 * thread and its workers. Writes what is held when it gets big. False
 * (message set) when the rebuild must stop. */
static bool rebuild_count(rebuild_t *self, redisReply *page)
{
    size_t turn = self->turn++ % (self->worker_count + 1);
    if (turn > 0) {
        worker_give(&self->workers[turn - 1], page);
        return true;
    }
    int64_t started = zclock_usecs();
    bool ok = count_page(self->tally, &self->arena, page);
    freeReplyObject(page);
    self->count_us += zclock_usecs() - started;
    if (!ok)
        return rebuild_fail(self, "out of memory counting the events");
    /* The workers' tallies grow as this one does. tally_size counts the
     * triples of every increment held as if none shared a key: when it
     * says full, the increments are expanded, and the exact size decides. */
    size_t tallies = self->worker_count + 1;
    if (tally_size(self->tally) * tallies >= REBUILD_FLUSH_AT && !tally_expand(self->tally))
        return rebuild_fail(self, "out of memory counting the events");
    if (tally_size(self->tally) * tallies >= REBUILD_FLUSH_AT)
        return rebuild_flush(self);
    return true;
}

/* Reads stream from its cursor to its end, into the tallies (written when
 * big). Returns how many entries were read, or -1 (message set) when it
 * must stop. */
static long rebuild_read_stream(rebuild_t *self, size_t s)
{
    const char *stream = self->streams[s];
    char *cursor = self->cursors[s];
    char count[16];
    snprintf(count, sizeof count, "%d", REBUILD_PAGE);
    long read = 0;
    for (;;) {
        if (atomic_load(&self->stop))
            return -1;
        if (!rebuild_renew(self))
            return -1;
        char start[STREAM_ID_LEN + 1];
        snprintf(start, sizeof start, "(%s", cursor);
        const char *argv[] = {"XRANGE", stream, start, "+", "COUNT", count};
        redisReply *page = NULL;
        int64_t give_up_ms = time_now_ms() + REBUILD_READ_RETRY_MS;
        int64_t started = zclock_usecs();
        store_result_t result;
        while ((result = store_command_argv(self->store, &page, 6, argv, NULL)) == STORE_LOST) {
            if (atomic_load(&self->stop))
                return -1;
            if (time_now_ms() > give_up_ms) {
                rebuild_fail(self, "the store did not answer (%s)", store_last_error(self->store));
                return -1;
            }
            sleep_ms(200);
        }
        if (result != STORE_OK || page->type != REDIS_REPLY_ARRAY) {
            rebuild_fail(self, "reading %s failed (%s)", stream,
                         page && page->type == REDIS_REPLY_ERROR ? page->str : "not a stream");
            if (page)
                freeReplyObject(page);
            return -1;
        }
        self->read_us += zclock_usecs() - started;
        size_t n = page->elements;
        if (n > 0) {
            const redisReply *last = page->element[n - 1];
            if (last->type != REDIS_REPLY_ARRAY || last->elements != 2 ||
                last->element[0]->type != REDIS_REPLY_STRING) {
                freeReplyObject(page);
                rebuild_fail(self, "reading %s: an entry without an id", stream);
                return -1;
            }
            snprintf(cursor, STREAM_ID_LEN, "%s", last->element[0]->str);
            self->events_read += n;
            int64_t dedup_started = zclock_usecs();
            rebuild_drop_repeats(self, page);
            self->dedup_us += zclock_usecs() - dedup_started;
            read += (long)n;
            if (!rebuild_count(self, page))
                return -1;
        } else {
            freeReplyObject(page);
        }
        if (n < REBUILD_PAGE)
            return read;
    }
}

/* True if this rebuild's generation is the current one: asked again when
 * the switch's answer was lost, since the script may have run. */
static bool rebuild_switched(rebuild_t *self)
{
    redisReply *reply = NULL;
    bool switched = store_command(self->store, &reply, "GET %s", INDICATORS_CURRENT) == STORE_OK &&
                    reply->type == REDIS_REPLY_STRING && strcmp(reply->str, self->gen_text) == 0;
    if (reply)
        freeReplyObject(reply);
    return switched;
}

/* switch.lua: 1 switched, 0 a stream moved on (*moved is its name, or
 * "?"), -1 failed (message set). */
static int rebuild_switch(rebuild_t *self, const char **moved)
{
    *moved = "?";
    size_t argc = 8 + 2 * self->stream_count;
    const char **argv = calloc(argc, sizeof *argv);
    if (!argv) {
        rebuild_fail(self, "out of memory");
        return -1;
    }
    char cursor_key[80], finished[TIME_RFC3339_LEN], read[24];
    snprintf(cursor_key, sizeof cursor_key, "%scursor", self->prefix);
    time_now_rfc3339(finished);
    snprintf(read, sizeof read, "%" PRIu64, self->events_read);
    size_t k = 0;
    argv[k++] = INDICATORS_CURRENT;
    argv[k++] = REBUILD_LEASE_KEY;
    argv[k++] = cursor_key;
    argv[k++] = REBUILD_KEY;
    for (size_t s = 0; s < self->stream_count; s++)
        argv[k++] = self->streams[s];
    size_t nkeys = k;
    argv[k++] = self->holder;
    argv[k++] = self->gen_text;
    argv[k++] = finished;
    argv[k++] = read;
    for (size_t s = 0; s < self->stream_count; s++)
        argv[k++] = self->cursors[s];
    redisReply *reply = NULL;
    store_result_t result =
        store_script_run(self->store, self->switch_script, &reply, (int)nkeys, (int)k, argv, NULL);
    free(argv);
    int rc = -1;
    if (result == STORE_LOST && rebuild_switched(self)) {
        /* The script ran and its answer was lost: the switch is done. */
        rc = 1;
    } else if (result != STORE_OK) {
        rebuild_fail(self, "the switch failed (%s)", store_last_error(self->store));
    } else if (reply->type == REDIS_REPLY_ARRAY && reply->elements >= 1 &&
               reply->element[0]->type == REDIS_REPLY_INTEGER) {
        long long code = reply->element[0]->integer;
        if (code == 1)
            rc = 1;
        else if (code == 0) {
            rc = 0;
            /* The name switch.lua gives is matched to ours, so that it
             * outlives the reply. */
            if (reply->elements > 1 && reply->element[1]->type == REDIS_REPLY_STRING)
                for (size_t s = 0; s < self->stream_count; s++)
                    if (strcmp(self->streams[s], reply->element[1]->str) == 0)
                        *moved = self->streams[s];
        } else if (code == -1)
            rebuild_fail(self, "the rebuild lease was lost before the switch");
        else
            rebuild_fail(self, "a newer generation (%s) is already current",
                         reply->elements > 1 && reply->element[1]->type == REDIS_REPLY_STRING
                             ? reply->element[1]->str
                             : "?");
    } else {
        rebuild_fail(self, "the switch answered something unexpected");
    }
    if (reply)
        freeReplyObject(reply);
    return rc;
}

/* Counts every stream from its start, then reads on until a pass can
 * switch: each pass reads what was appended during the previous one, so
 * passes get short, and the switch, which checks that no stream moved
 * since its pass, succeeds. At most REBUILD_SWITCH_PASSES_MAX passes. */
static rebuild_outcome_t rebuild_work(rebuild_t *self)
{
    rebuild_outcome_t outcome = REBUILD_FAILED;
    for (int pass = 0;; pass++) {
        for (size_t s = 0; s < self->stream_count; s++) {
            if (rebuild_read_stream(self, s) < 0)
                goto out;
        }
        if (!rebuild_flush(self))
            goto out;
        if (atomic_load(&self->stop))
            goto out;
        const char *moved;
        int switched = rebuild_switch(self, &moved);
        if (switched < 0)
            goto out;
        if (switched == 1) {
            log_info("rebuild switched", "{s:I, s:I, s:i}", "generation",
                     (json_int_t)self->generation, "events", (json_int_t)self->events_read,
                     "passes", pass + 1);
            outcome = REBUILD_SWITCHED;
            goto out;
        }
        if (pass + 1 >= REBUILD_SWITCH_PASSES_MAX) {
            rebuild_fail(self,
                         "stream %s kept moving: no switch after %d catch-up passes; "
                         "start the rebuild again under a lower load",
                         moved, REBUILD_SWITCH_PASSES_MAX);
            goto out;
        }
    }
out:
    if (outcome != REBUILD_SWITCHED && atomic_load(&self->stop))
        outcome = REBUILD_STOPPED;
    return outcome;
}

/* Removes the keys of the generations before this one, a SCAN slice at a
 * time (UNLINK frees them off Redis's main thread). A stop leaves the rest
 * to the next rebuild. */
static void rebuild_cleanup(rebuild_t *self)
{
    char cursor[32] = "0";
    size_t removed = 0;
    do {
        if (atomic_load(&self->stop))
            return;
        rebuild_renew(self);
        const char *argv[] = {"SCAN",          cursor,  "MATCH",
                              "indicators:g*", "COUNT", CLEANUP_SCAN_COUNT};
        redisReply *reply = NULL;
        if (store_command_argv(self->store, &reply, 6, argv, NULL) != STORE_OK ||
            reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
            reply->element[0]->type != REDIS_REPLY_STRING ||
            reply->element[1]->type != REDIS_REPLY_ARRAY) {
            log_warn("older generations not removed: the store failed", "{s:s}", "error",
                     store_last_error(self->store));
            if (reply)
                freeReplyObject(reply);
            return;
        }
        snprintf(cursor, sizeof cursor, "%s", reply->element[0]->str);
        const redisReply *keys = reply->element[1];
        const char **unlink = calloc(keys->elements + 1, sizeof *unlink);
        size_t n = 0;
        if (unlink)
            unlink[n++] = "UNLINK";
        for (size_t i = 0; unlink && i < keys->elements; i++) {
            const redisReply *key = keys->element[i];
            if (key->type != REDIS_REPLY_STRING || strncmp(key->str, "indicators:g", 12) != 0)
                continue;
            /* "indicators:g<N>:..." only: indicators:generations is not one. */
            char *end;
            const char *digits = key->str + 12;
            if (*digits < '0' || *digits > '9')
                continue;
            uint64_t gen = strtoull(digits, &end, 10);
            if (*end == ':' && gen < self->generation)
                unlink[n++] = key->str;
        }
        if (n > 1) {
            if (store_command_argv(self->store, NULL, (int)n, unlink, NULL) == STORE_OK)
                removed += n - 1;
        }
        free(unlink);
        freeReplyObject(reply);
    } while (strcmp(cursor, "0") != 0);
    log_info("older generations removed", "{s:I, s:I}", "generation", (json_int_t)self->generation,
             "keys", (json_int_t)removed);
}

/* Gives the lease back, ending the status with state unless state is "". */
static void rebuild_release(rebuild_t *self, const char *state, const char *message)
{
    char finished[TIME_RFC3339_LEN], read[24];
    time_now_rfc3339(finished);
    snprintf(read, sizeof read, "%" PRIu64, self->events_read);
    const char *argv[] = {REBUILD_LEASE_KEY, REBUILD_KEY, self->holder, state,
                          message,           finished,    read};
    redisReply *reply = NULL;
    if (store_script_run(self->store, self->release_script, &reply, 2, 7, argv, NULL) != STORE_OK)
        log_warn("the rebuild lease was not released: it runs out by itself", "{s:s}", "error",
                 store_last_error(self->store));
    if (reply)
        freeReplyObject(reply);
}

static void *rebuild_main(void *arg)
{
    rebuild_t *self = arg;
    int64_t started_ms = time_now_ms();
    self->store = store_new(&self->store_cfg);
    self->tally = tally_new();
    self->cursors = calloc(self->stream_count ? self->stream_count : 1, sizeof *self->cursors);
    rebuild_outcome_t outcome = REBUILD_FAILED;
    size_t workers = 0;
    if (!self->store || !self->tally || !self->cursors) {
        rebuild_fail(self, "out of memory starting the rebuild");
    } else {
        self->apply_script = store_script_add(self->store, indicators_apply_lua);
        self->switch_script = store_script_add(self->store, indicators_switch_lua);
        self->renew_script = store_script_add(self->store, renew_lua);
        self->release_script = store_script_add(self->store, release_lua);
        for (size_t s = 0; s < self->stream_count; s++)
            strcpy(self->cursors[s], "0-0");
        self->fresh = true;
        self->renew_at_ms = time_now_ms() + REBUILD_RENEW_MS;
        if (self->apply_script < 0 || self->switch_script < 0 || self->renew_script < 0 ||
            self->release_script < 0) {
            rebuild_fail(self, "cannot register the rebuild's scripts");
        } else {
            /* Room for every event the streams held at the start (not
             * more than ID_SET_PRESIZE_MAX slots); out of memory, the set
             * grows as it goes. */
            uint64_t presize = self->events_total < ID_SET_PRESIZE_MAX / 2 ? self->events_total
                                                                           : ID_SET_PRESIZE_MAX / 2;
            id_set_reserve(&self->seen, (size_t)presize);
            workers_start(self);
            workers = self->worker_count;
            outcome = rebuild_work(self);
            workers_stop(self);
        }
    }
    double seconds = (double)(time_now_ms() - started_ms) / 1000.0;
    if (outcome == REBUILD_SWITCHED) {
        log_info("rebuild done", "{s:I, s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:i}", "generation",
                 (json_int_t)self->generation, "events", (json_int_t)self->events_read, "seconds",
                 seconds, "events_per_s", seconds > 0 ? (double)self->events_read / seconds : 0.0,
                 "reading_s", (double)self->read_us / 1e6, "counting_s",
                 (double)self->count_us / 1e6, "writing_s", (double)self->write_us / 1e6, "dedup_s",
                 (double)self->dedup_us / 1e6, "workers", (int)workers);
        rebuild_cleanup(self);
        rebuild_release(self, "", "");
    } else if (self->store) {
        const char *message = outcome == REBUILD_STOPPED
                                  ? "stopped before the end: the service was stopping"
                                  : self->message;
        log_warn("rebuild abandoned", "{s:I, s:s}", "generation", (json_int_t)self->generation,
                 "reason", message);
        rebuild_release(self, "failed", message);
    }
    args_free(&self->args);
    tally_destroy(&self->tally);
    store_destroy(&self->store);
    free(self->cursors);
    self->cursors = NULL;
    id_set_free(&self->seen);
    atomic_store(&self->finished, true);
    return NULL;
}

static void rebuild_free(rebuild_t *self)
{
    for (size_t s = 0; self->streams && s < self->stream_count; s++)
        free(self->streams[s]);
    free(self->streams);
    free(self);
}

void rebuild_stop(rebuild_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    rebuild_t *self = *self_p;
    atomic_store(&self->stop, true);
    pthread_join(self->thread, NULL);
    rebuild_free(self);
    *self_p = NULL;
}

/* ======================== rebuild: requests ============================ */

/* The status from the reply of HGETALL indicators:rebuild into msg
 * (strings borrowed from the reply). */
static void status_from_hash(const redisReply *hash, Passerelle__RebuildStatus *msg)
{
    msg->state = "idle";
    for (size_t i = 0; hash->type == REDIS_REPLY_ARRAY && i + 1 < hash->elements; i += 2) {
        const redisReply *name = hash->element[i], *value = hash->element[i + 1];
        if (name->type != REDIS_REPLY_STRING || value->type != REDIS_REPLY_STRING)
            continue;
        const char *n = name->str;
        char *v = value->str;
        if (strcmp(n, "state") == 0) {
            msg->state = v;
        } else if (strcmp(n, "generation") == 0) {
            msg->has_generation = true;
            msg->generation = strtoull(v, NULL, 10);
        } else if (strcmp(n, "events_read") == 0) {
            msg->has_events_read = true;
            msg->events_read = strtoull(v, NULL, 10);
        } else if (strcmp(n, "events_total") == 0) {
            msg->has_events_total = true;
            msg->events_total = strtoull(v, NULL, 10);
        } else if (strcmp(n, "started_at") == 0) {
            msg->started_at = v;
        } else if (strcmp(n, "finished_at") == 0) {
            msg->finished_at = v;
        } else if (strcmp(n, "message") == 0) {
            msg->message = v;
        } else if (strcmp(n, "holder") == 0) {
            msg->holder = v;
        }
    }
}

INDICATORS_HANDLER(handle_indicator_rebuild)
{
    (void)request;
    indicators_t *ind = ctx;
    if (ind->rebuild && !atomic_load(&ind->rebuild->finished)) {
        reply_error(reply, ST_FAILED_PRECONDITION, NULL,
                    "a rebuild is running (generation %" PRIu64 ", holder %s)",
                    ind->rebuild->generation, ind->rebuild->holder);
        return;
    }
    /* The previous one ended: its thread is joined before another starts. */
    rebuild_stop(&ind->rebuild);

    int script = store_script_add(ind->store, start_lua);
    size_t argc = 7 + ind->stream_count;
    const char **argv = calloc(argc, sizeof *argv);
    if (script < 0 || !argv) {
        free(argv);
        reply_error(reply, ST_INTERNAL, NULL, "cannot start a rebuild (out of memory)");
        return;
    }
    char lease_ms[16], started[TIME_RFC3339_LEN];
    snprintf(lease_ms, sizeof lease_ms, "%d", REBUILD_LEASE_MS);
    time_now_rfc3339(started);
    size_t k = 0;
    argv[k++] = REBUILD_LEASE_KEY;
    argv[k++] = GENERATIONS_KEY;
    argv[k++] = INDICATORS_CURRENT;
    argv[k++] = REBUILD_KEY;
    for (size_t s = 0; s < ind->stream_count; s++)
        argv[k++] = ind->streams[s];
    size_t nkeys = k;
    argv[k++] = ind->process_name;
    argv[k++] = lease_ms;
    argv[k++] = started;
    redisReply *r = NULL;
    store_result_t result =
        store_script_run(ind->store, script, &r, (int)nkeys, (int)k, argv, NULL);
    free(argv);
    if (result != STORE_OK) {
        reply_store_failure(reply, ind->store, result);
        if (r)
            freeReplyObject(r);
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 2 ||
        r->element[0]->type != REDIS_REPLY_INTEGER) {
        reply_error(reply, ST_INTERNAL, NULL, "the rebuild's start answered something unexpected");
        freeReplyObject(r);
        return;
    }
    if (r->element[0]->integer == 0) {
        reply_error(reply, ST_FAILED_PRECONDITION, NULL, "a rebuild is running (holder %s)",
                    r->element[1]->type == REDIS_REPLY_STRING ? r->element[1]->str : "?");
        freeReplyObject(r);
        return;
    }
    uint64_t gen = r->elements > 1 ? (uint64_t)r->element[1]->integer : 0;
    uint64_t total = r->elements > 2 ? (uint64_t)r->element[2]->integer : 0;
    uint64_t current = r->elements > 3 ? (uint64_t)r->element[3]->integer : 0;
    freeReplyObject(r);

    rebuild_t *rb = calloc(1, sizeof *rb);
    bool ok = rb != NULL;
    if (ok) {
        rb->store_cfg = *ind->store_cfg;
        snprintf(rb->holder, sizeof rb->holder, "%s", ind->process_name);
        rb->generation = gen;
        rb->events_total = total;
        snprintf(rb->gen_text, sizeof rb->gen_text, "%" PRIu64, gen);
        indicators_generation_prefix(gen, rb->prefix, sizeof rb->prefix);
        rb->streams = calloc(ind->stream_count ? ind->stream_count : 1, sizeof *rb->streams);
        ok = rb->streams != NULL;
        for (size_t s = 0; ok && s < ind->stream_count; s++) {
            rb->streams[s] = strdup(ind->streams[s]);
            rb->stream_count++;
            ok = rb->streams[s] != NULL;
        }
        atomic_init(&rb->stop, false);
        atomic_init(&rb->finished, false);
    }
    if (ok && pthread_create(&rb->thread, NULL, rebuild_main, rb) != 0)
        ok = false;
    if (!ok) {
        if (rb)
            rebuild_free(rb);
        /* Hand the lease back with the reason, through a throwaway rebuild
         * record that only names the holder. */
        const char *rargv[] = {
            REBUILD_LEASE_KEY, REBUILD_KEY, ind->process_name, "failed", "could not start a thread",
            started,           "0"};
        int release = store_script_add(ind->store, release_lua);
        redisReply *rr = NULL;
        if (release >= 0 &&
            store_script_run(ind->store, release, &rr, 2, 7, rargv, NULL) == STORE_OK)
            freeReplyObject(rr);
        reply_error(reply, ST_INTERNAL, NULL, "cannot start the rebuild's thread");
        return;
    }
    ind->rebuild = rb;
    log_info("rebuild started", "{s:I, s:I, s:I, s:s}", "generation", (json_int_t)gen,
             "events_total", (json_int_t)total, "current", (json_int_t)current, "caller",
             call->caller ? call->caller->name : "");

    Passerelle__RebuildStatus msg = PASSERELLE__REBUILD_STATUS__INIT;
    msg.state = "running";
    msg.has_generation = true;
    msg.generation = gen;
    msg.has_current_generation = true;
    msg.current_generation = current;
    msg.has_events_read = true;
    msg.events_read = 0;
    msg.has_events_total = true;
    msg.events_total = total;
    msg.started_at = started;
    msg.holder = (char *)ind->process_name;
    reply_set_body(reply, &msg.base);
}

INDICATORS_HANDLER(handle_indicator_rebuild_status)
{
    (void)call;
    (void)request;
    indicators_t *ind = ctx;
    const char *hgetall[] = {"HGETALL", REBUILD_KEY};
    const char *get_current[] = {"GET", INDICATORS_CURRENT};
    const char *get_lease[] = {"GET", REBUILD_LEASE_KEY};
    store_cmd_t cmds[] = {{2, hgetall, NULL}, {2, get_current, NULL}, {2, get_lease, NULL}};
    redisReply *replies[3] = {NULL, NULL, NULL};
    store_result_t results[3];
    store_command_many(ind->store, cmds, 3, replies, results);
    for (size_t i = 0; i < 3; i++) {
        if (results[i] != STORE_OK) {
            reply_store_failure(reply, ind->store, results[i]);
            goto out;
        }
    }
    Passerelle__RebuildStatus msg = PASSERELLE__REBUILD_STATUS__INIT;
    status_from_hash(replies[0], &msg);
    msg.has_current_generation = true;
    msg.current_generation =
        replies[1]->type == REDIS_REPLY_STRING ? strtoull(replies[1]->str, NULL, 10) : 0;
    /* A rebuild whose process died says "running" until someone looks:
     * without its lease, it is over. */
    if (strcmp(msg.state, "running") == 0 && replies[2]->type != REDIS_REPLY_STRING) {
        msg.state = "failed";
        msg.message = "the rebuild's process stopped before the end; start another";
    }
    reply_set_body(reply, &msg.base);
out:
    for (size_t i = 0; i < 3; i++)
        if (replies[i])
            freeReplyObject(replies[i]);
}
