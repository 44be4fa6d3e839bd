/* Queries of the figures (query.h): one indicator as a series, every
 * indicator at a date, and exports for the observatory.
 *
 * Every query is computed twice by the same code: a first pass that only
 * notes which counter fields it would read (a plan), then one call of the
 * read script that fetches them all and names the generation they come
 * from, then a second pass that computes the figures from what was read.
 * Keeping one code path for both passes means the reads can never drift
 * from the arithmetic that uses them, and a series of 36 points costs one
 * round trip whatever its kind.
 *
 * The arithmetic (indicators.h and projection.h say what the counters
 * hold):
 *   - FLOW and VALUE: the period's counter field;
 *   - LEVEL at the end of a period: the field of period "all" (everything
 *     ever counted) minus what was counted after the period - the years
 *     after it up to next year, then the quarters, months or days after it
 *     within its year and month. Walking a series forward then only adds
 *     each period's own count. Reading "all" and subtracting the recent
 *     past costs a few dozen fields, where summing from the first event
 *     would cost one per period since the start;
 *   - MEDIAN and P90: the nearest-rank percentile of the period's
 *     distribution (field "v=<n>": observations of value n);
 *   - RATIO: numerator over denominator, each computed as its own kind,
 *     with the same scope, period and filter; undefined over 0. */
#include "query.h"

#include "catalog.h"
#include "ids.h"
#include "indicators.h"
#include "indicators.pb-c.h"
#include "log.h"
#include "periods.h"
#include "projection.h"
#include "refdata.h"

#include <ctype.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

extern const unsigned char indicators_read_lua[];

/* A series answers at most this many points: enough for a year of days
 * or 33 years of months, and a bounded read. */
#define SERIES_POINTS_MAX 400
/* Points of a series when the request names no range. */
#define SERIES_DEFAULT_POINTS 12
/* An export answers at most this many rows (indicator x scope x period). */
#define EXPORT_ROWS_MAX 200000
/* Pairs per call of the read script: an export may need hundreds of
 * thousands, which go in a few calls rather than one huge one that would
 * hold Redis for long. A series or a snapshot fits in one. */
#define READ_PAIRS_PER_CALL 4096
/* Reads split over several calls are redone when a rebuild switched the
 * generation between two of them; this many times at most. */
#define READ_ATTEMPTS 3
/* A RATIO of RATIOs is allowed this deep (the catalog has none). */
#define RATIO_DEPTH_MAX 3

#define KIND_FLOW   PASSERELLE__INDICATOR_KIND__INDICATOR_FLOW
#define KIND_LEVEL  PASSERELLE__INDICATOR_KIND__INDICATOR_LEVEL
#define KIND_MEDIAN PASSERELLE__INDICATOR_KIND__INDICATOR_MEDIAN
#define KIND_P90    PASSERELLE__INDICATOR_KIND__INDICATOR_P90
#define KIND_RATIO  PASSERELLE__INDICATOR_KIND__INDICATOR_RATIO
#define KIND_VALUE  PASSERELLE__INDICATOR_KIND__INDICATOR_VALUE

int query_scripts_add(store_t *store)
{
    return store_script_add(store, (const char *)indicators_read_lua);
}

/* ====================================================================== */
/* What a query reads                                                     */
/* ====================================================================== */

/* One (key, field) a query reads; field "" is the whole hash. */
typedef struct {
    char *key; /* counter key without its generation prefix */
    char *field;
    int64_t value;   /* a field: its value, 0 when absent */
    size_t n_fields; /* the whole hash: its fields and their values */
    char **names;
    int64_t *values;
} read_t;

/* The reads of one query, deduplicated (a LEVEL series and a FLOW series
 * of one counter share most of theirs), in an open-addressing table. */
typedef struct {
    read_t *items;
    size_t count, cap;
    uint32_t *slots;   /* index + 1 into items; 0 = free */
    size_t slot_count; /* a power of two, at least twice count */
    bool planning;     /* first pass: note what is asked, answer 0 */
    bool whole;        /* ask for whole hashes (every axis value at hand) */
    bool oom;
    uint64_t generation;
} reads_t;

static uint64_t read_hash(const char *key, const char *field)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (const char *p = key; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    h = (h ^ 0xffu) * 1099511628211ull;
    for (const char *p = field; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    return h;
}

static void read_clear(read_t *r)
{
    for (size_t i = 0; i < r->n_fields; i++)
        free(r->names[i]);
    free(r->names);
    free(r->values);
    r->names = NULL;
    r->values = NULL;
    r->n_fields = 0;
    r->value = 0;
}

static void reads_free(reads_t *self)
{
    for (size_t i = 0; i < self->count; i++) {
        read_clear(&self->items[i]);
        free(self->items[i].key);
        free(self->items[i].field);
    }
    free(self->items);
    free(self->slots);
    memset(self, 0, sizeof *self);
}

static read_t *reads_find(const reads_t *self, const char *key, const char *field)
{
    if (!self->slot_count)
        return NULL;
    size_t mask = self->slot_count - 1;
    for (size_t at = read_hash(key, field) & mask;; at = (at + 1) & mask) {
        uint32_t slot = self->slots[at];
        if (!slot)
            return NULL;
        read_t *r = &self->items[slot - 1];
        if (strcmp(r->key, key) == 0 && strcmp(r->field, field) == 0)
            return r;
    }
}

static bool reads_grow(reads_t *self)
{
    if (self->count < self->cap && (self->count + 1) * 2 <= self->slot_count)
        return true;
    size_t cap = self->cap ? self->cap * 2 : 64;
    read_t *items = realloc(self->items, cap * sizeof *items);
    if (!items)
        return false;
    self->items = items;
    self->cap = cap;
    size_t slot_count = cap * 2;
    uint32_t *slots = calloc(slot_count, sizeof *slots);
    if (!slots)
        return false;
    free(self->slots);
    self->slots = slots;
    self->slot_count = slot_count;
    for (size_t i = 0; i < self->count; i++) {
        size_t at = read_hash(items[i].key, items[i].field) & (slot_count - 1);
        while (slots[at])
            at = (at + 1) & (slot_count - 1);
        slots[at] = (uint32_t)(i + 1);
    }
    return true;
}

/* Notes that the query reads (key, field). */
static void reads_note(reads_t *self, const char *key, const char *field)
{
    if (self->oom || reads_find(self, key, field))
        return;
    if (!reads_grow(self)) {
        self->oom = true;
        return;
    }
    read_t *r = &self->items[self->count];
    memset(r, 0, sizeof *r);
    r->key = strdup(key);
    r->field = strdup(field);
    if (!r->key || !r->field) {
        free(r->key);
        free(r->field);
        self->oom = true;
        return;
    }
    size_t at = read_hash(key, field) & (self->slot_count - 1);
    while (self->slots[at])
        at = (at + 1) & (self->slot_count - 1);
    self->slots[at] = (uint32_t)(++self->count);
}

/* A counter field: noted while planning (0), read afterwards (0 when
 * absent), from the field's own read or from its whole hash. */
static int64_t reads_field(reads_t *self, const char *key, const char *field)
{
    if (self->planning) {
        reads_note(self, key, self->whole ? "" : field);
        return 0;
    }
    const read_t *r = reads_find(self, key, field);
    if (r)
        return r->value;
    r = reads_find(self, key, "");
    for (size_t i = 0; r && i < r->n_fields; i++)
        if (strcmp(r->names[i], field) == 0)
            return r->values[i];
    return 0;
}

/* A whole hash: noted while planning (NULL), read afterwards (NULL when
 * it was not read). */
static const read_t *reads_hash(reads_t *self, const char *key)
{
    if (self->planning) {
        reads_note(self, key, "");
        return NULL;
    }
    return reads_find(self, key, "");
}

static int64_t parse_int64(const char *text, size_t len)
{
    char buf[32];
    if (!text || len == 0 || len >= sizeof buf)
        return 0;
    memcpy(buf, text, len);
    buf[len] = '\0';
    return strtoll(buf, NULL, 10);
}

/* Stores the answer to one pair; false if it has not the shape asked. */
static bool read_answer(read_t *r, const redisReply *answer)
{
    read_clear(r);
    if (r->field[0]) {
        if (answer->type == REDIS_REPLY_NIL)
            return true;
        if (answer->type == REDIS_REPLY_INTEGER) {
            r->value = answer->integer;
            return true;
        }
        if (answer->type != REDIS_REPLY_STRING)
            return false;
        r->value = parse_int64(answer->str, answer->len);
        return true;
    }
    if (answer->type != REDIS_REPLY_ARRAY || answer->elements % 2)
        return false;
    size_t n = answer->elements / 2;
    if (n == 0)
        return true;
    r->names = calloc(n, sizeof *r->names);
    r->values = calloc(n, sizeof *r->values);
    if (!r->names || !r->values) {
        read_clear(r);
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        const redisReply *name = answer->element[2 * i], *value = answer->element[2 * i + 1];
        if (name->type != REDIS_REPLY_STRING || value->type != REDIS_REPLY_STRING)
            break;
        r->names[i] = strndup(name->str, name->len);
        if (!r->names[i])
            break;
        r->values[i] = parse_int64(value->str, value->len);
        r->n_fields = i + 1;
    }
    return r->n_fields == n;
}

/* One call of the read script for items [first, first + count); the
 * generation it read from into *generation. False with the reply set. */
static bool reads_call(reads_t *self, indicators_t *ind, size_t first, size_t count,
                       uint64_t *generation, reply_t *reply)
{
    int argc = (int)(1 + 2 * count);
    const char **argv = malloc((size_t)argc * sizeof *argv);
    if (!argv) {
        reply_error(reply, ST_INTERNAL, NULL, "out of memory");
        return false;
    }
    argv[0] = INDICATORS_CURRENT;
    for (size_t i = 0; i < count; i++) {
        argv[1 + 2 * i] = self->items[first + i].key;
        argv[2 + 2 * i] = self->items[first + i].field;
    }
    redisReply *answer = NULL;
    store_result_t result =
        store_script_run(ind->store, ind->read_script, &answer, 1, argc, argv, NULL);
    free(argv);
    if (result != STORE_OK) {
        reply_store_failure(reply, ind->store, result);
        if (answer)
            freeReplyObject(answer);
        return false;
    }
    bool ok = answer->type == REDIS_REPLY_ARRAY && answer->elements == count + 1;
    if (ok) {
        const redisReply *gen = answer->element[0];
        if (gen->type == REDIS_REPLY_STRING)
            *generation = strtoull(gen->str, NULL, 10);
        else if (gen->type == REDIS_REPLY_INTEGER)
            *generation = (uint64_t)gen->integer;
        else
            ok = false;
    }
    for (size_t i = 0; ok && i < count; i++)
        ok = read_answer(&self->items[first + i], answer->element[1 + i]);
    freeReplyObject(answer);
    if (!ok) {
        log_error("the read script answered in an unexpected shape", "{s:i}", "pairs", (int)count);
        reply_error(reply, ST_INTERNAL, NULL, "unexpected answer from the figures' store");
    }
    return ok;
}

/* Reads everything the plan noted, all from one generation. False with
 * the reply set. */
static bool reads_fetch(reads_t *self, indicators_t *ind, reply_t *reply)
{
    if (self->oom) {
        reply_error(reply, ST_INTERNAL, NULL, "out of memory");
        return false;
    }
    for (int attempt = 0; attempt < READ_ATTEMPTS; attempt++) {
        bool switched = false;
        size_t first = 0;
        /* At least one call, even with nothing to read: it names the
         * generation the (empty) answer stands for. */
        do {
            size_t count = self->count - first;
            if (count > READ_PAIRS_PER_CALL)
                count = READ_PAIRS_PER_CALL;
            uint64_t generation = 0;
            if (!reads_call(self, ind, first, count, &generation, reply))
                return false;
            if (first == 0)
                self->generation = generation;
            else if (generation != self->generation)
                switched = true;
            first += count;
        } while (first < self->count && !switched);
        if (!switched) {
            self->planning = false;
            return true;
        }
    }
    reply_error(reply, ST_UNAVAILABLE, NULL,
                "the figures were switched to a rebuilt generation while being read; try again");
    return false;
}

/* ====================================================================== */
/* Calendar                                                               */
/* ====================================================================== */

/* The year, and the month, quarter or day, of a valid key of its kind. */
typedef struct {
    int year, quarter, month, day;
} key_parts_t;

static key_parts_t key_parts(period_kind_t kind, const char *key)
{
    key_parts_t p = {atoi(key), 0, 0, 0};
    if (kind == PERIOD_QUARTER)
        p.quarter = key[6] - '0';
    if (kind == PERIOD_MONTH || kind == PERIOD_DAY)
        p.month = atoi(key + 5);
    if (kind == PERIOD_DAY)
        p.day = atoi(key + 8);
    return p;
}

/* The key n periods before key (same kind), not before 1900. */
static void period_back(period_kind_t kind, const char *key, int n, char out[PERIOD_KEY_LEN])
{
    key_parts_t p = key_parts(kind, key);
    unsigned year = 1900, index = 1;
    long at;
    switch (kind) {
    case PERIOD_DAY: {
        int64_t days = date_to_days((date_t){p.year, p.month, p.day}) - n;
        int64_t earliest = date_to_days((date_t){1900, 1, 1});
        date_format(date_from_days(days < earliest ? earliest : days), out);
        return;
    }
    case PERIOD_MONTH:
        at = (long)p.year * 12 + (p.month - 1) - n;
        if (at >= 1900L * 12) {
            year = (unsigned)(at / 12);
            index = (unsigned)(at % 12) + 1;
        }
        snprintf(out, PERIOD_KEY_LEN, "%04u-%02u", year % 10000u, index % 100u);
        return;
    case PERIOD_QUARTER:
        at = (long)p.year * 4 + (p.quarter - 1) - n;
        if (at >= 1900L * 4) {
            year = (unsigned)(at / 4);
            index = (unsigned)(at % 4) + 1;
        }
        snprintf(out, PERIOD_KEY_LEN, "%04u-Q%u", year % 10000u, index % 10u);
        return;
    default:
        at = (long)p.year - n;
        if (at >= 1900)
            year = (unsigned)at;
        snprintf(out, PERIOD_KEY_LEN, "%04u", year % 10000u);
        return;
    }
}

/* ====================================================================== */
/* Figures                                                                */
/* ====================================================================== */

typedef struct {
    double value;
    uint64_t observations; /* MEDIAN/P90: how many values */
    bool defined;
} figure_t;

/* What a figure is computed from. */
typedef struct {
    reads_t *reads;
    int this_year; /* Europe/Paris: a LEVEL looks for counts up to the next */
} eval_t;

static int64_t counter_field(const eval_t *ev, const char *counter, const char *scope,
                             const char *period, const char *field)
{
    char key[INDICATORS_KEY_MAX];
    indicators_counter_key(counter, scope, period, key);
    return reads_field(ev->reads, key, field);
}

/* What was counted after the end of the period key (of its kind): the
 * years after its year up to next year, then the quarters or months after
 * it in its year, then (a day) the days after it in its month. Day keys
 * exist for the Métropole and the territories only, which is why a commune
 * is never asked a day. */
static int64_t counted_after(const eval_t *ev, const char *counter, const char *scope,
                             const char *field, period_kind_t kind, const char *key)
{
    key_parts_t p = key_parts(kind, key);
    char period[32];
    int64_t sum = 0;
    for (int year = p.year + 1; year <= ev->this_year + 1; year++) {
        snprintf(period, sizeof period, "%04d", year);
        sum += counter_field(ev, counter, scope, period, field);
    }
    if (kind == PERIOD_QUARTER)
        for (int q = p.quarter + 1; q <= 4; q++) {
            snprintf(period, sizeof period, "%04d-Q%d", p.year, q);
            sum += counter_field(ev, counter, scope, period, field);
        }
    if (kind == PERIOD_MONTH || kind == PERIOD_DAY)
        for (int m = p.month + 1; m <= 12; m++) {
            snprintf(period, sizeof period, "%04d-%02d", p.year, m);
            sum += counter_field(ev, counter, scope, period, field);
        }
    if (kind == PERIOD_DAY)
        for (int d = p.day + 1; d <= date_days_in_month(p.year, p.month); d++) {
            snprintf(period, sizeof period, "%04d-%02d-%02d", p.year, p.month, d);
            sum += counter_field(ev, counter, scope, period, field);
        }
    return sum;
}

static int64_t level_at_end(const eval_t *ev, const char *counter, const char *scope,
                            const char *field, period_kind_t kind, const char *key)
{
    return counter_field(ev, counter, scope, PERIOD_ALL, field) -
           counted_after(ev, counter, scope, field, kind, key);
}

/* --- distributions ---------------------------------------------------- */

typedef struct {
    int64_t value, count;
} obs_t;

typedef struct {
    obs_t *items;
    size_t count, cap;
} dist_t;

/* Adds the observations of one distribution hash ("v=<n>" -> count). */
static void dist_add_key(const eval_t *ev, dist_t *dist, const char *counter, const char *scope,
                         const char *period)
{
    char key[INDICATORS_KEY_MAX];
    indicators_counter_key(counter, scope, period, key);
    const read_t *hash = reads_hash(ev->reads, key);
    for (size_t i = 0; hash && i < hash->n_fields; i++) {
        const char *name = hash->names[i];
        if (strncmp(name, "v=", 2) != 0 || hash->values[i] <= 0)
            continue;
        char *end;
        long long value = strtoll(name + 2, &end, 10);
        if (end == name + 2 || *end)
            continue;
        if (dist->count == dist->cap) {
            size_t cap = dist->cap ? dist->cap * 2 : 32;
            obs_t *items = realloc(dist->items, cap * sizeof *items);
            if (!items) {
                ev->reads->oom = true;
                return;
            }
            dist->items = items;
            dist->cap = cap;
        }
        dist->items[dist->count++] = (obs_t){value, hash->values[i]};
    }
}

static int obs_compare(const void *a, const void *b)
{
    int64_t x = ((const obs_t *)a)->value, y = ((const obs_t *)b)->value;
    return (x > y) - (x < y);
}

/* The nearest-rank percentile: the smallest value with at least
 * ceil(percent% of N) observations at or below it. Undefined with none.
 * Empties dist. */
static figure_t dist_percentile(dist_t *dist, int percent)
{
    figure_t f = {0, 0, false};
    uint64_t total = 0;
    for (size_t i = 0; i < dist->count; i++)
        total += (uint64_t)dist->items[i].count;
    f.observations = total;
    if (total > 0) {
        qsort(dist->items, dist->count, sizeof *dist->items, obs_compare);
        uint64_t rank = (total * (uint64_t)percent + 99) / 100;
        if (rank == 0)
            rank = 1;
        uint64_t seen = 0;
        for (size_t i = 0; i < dist->count; i++) {
            seen += (uint64_t)dist->items[i].count;
            if (seen >= rank) {
                f.value = (double)dist->items[i].value;
                f.defined = true;
                break;
            }
        }
    }
    dist->count = 0;
    return f;
}

static int kind_percent(Passerelle__IndicatorKind kind)
{
    return kind == KIND_P90 ? 90 : 50;
}

/* --- ratios ------------------------------------------------------------ */

/* The field a part of a ratio is read with: the ratio's filter if the
 * part has that axis, else its total. objectives.achievement filtered by
 * programme filters both parts; a filter that only one part knows
 * compares that part's share with the other's whole. */
static const char *part_field(const indicator_def_t *part, const char *field)
{
    if (strcmp(field, "*") == 0)
        return field;
    char axis[PROJ_FIELD_MAX];
    snprintf(axis, sizeof axis, "%s", field);
    char *eq = strchr(axis, '=');
    if (eq)
        *eq = '\0';
    return catalog_has_axis(part, axis) ? field : "*";
}

static figure_t ratio_of(figure_t num, figure_t den)
{
    figure_t f = {0, 0, false};
    if (num.defined && den.defined && den.value != 0) {
        f.value = num.value / den.value;
        f.defined = true;
    }
    return f;
}

/* The parts of a ratio, or false (a catalog that names no such indicator
 * is a bug; the figure is then undefined rather than wrong). */
static bool ratio_parts(const indicator_def_t *def, const indicator_def_t **num,
                        const indicator_def_t **den)
{
    *num = def->numerator ? catalog_find(def->numerator) : NULL;
    *den = def->denominator ? catalog_find(def->denominator) : NULL;
    return *num && *den;
}

/* True if def's figures exist per commune (a ratio: both parts). */
static bool kept_per_commune(const indicator_def_t *def, int depth)
{
    if (def->kind != KIND_RATIO)
        return def->communes;
    const indicator_def_t *num, *den;
    return depth < RATIO_DEPTH_MAX && ratio_parts(def, &num, &den) &&
           kept_per_commune(num, depth + 1) && kept_per_commune(den, depth + 1);
}

/* --- a series ---------------------------------------------------------- */

/* The figures of def for scope and field over n consecutive periods of
 * kind, into out. */
static void eval_series(const eval_t *ev, const indicator_def_t *def, const char *scope,
                        const char *field, period_kind_t kind, char (*keys)[PERIOD_KEY_LEN],
                        size_t n, figure_t *out, int depth)
{
    for (size_t i = 0; i < n; i++)
        out[i] = (figure_t){0, 0, true};
    switch (def->kind) {
    case KIND_FLOW:
    case KIND_VALUE:
        for (size_t i = 0; i < n; i++)
            out[i].value = (double)counter_field(ev, def->counter, scope, keys[i], field);
        return;
    case KIND_LEVEL: {
        if (n == 0)
            return;
        int64_t level = level_at_end(ev, def->counter, scope, field, kind, keys[0]);
        out[0].value = (double)level;
        for (size_t i = 1; i < n; i++) {
            level += counter_field(ev, def->counter, scope, keys[i], field);
            out[i].value = (double)level;
        }
        return;
    }
    case KIND_MEDIAN:
    case KIND_P90: {
        dist_t dist = {0};
        for (size_t i = 0; i < n; i++) {
            dist_add_key(ev, &dist, def->counter, scope, keys[i]);
            out[i] = dist_percentile(&dist, kind_percent(def->kind));
        }
        free(dist.items);
        return;
    }
    case KIND_RATIO: {
        const indicator_def_t *num, *den;
        figure_t *nums = calloc(n ? n : 1, sizeof *nums);
        figure_t *dens = calloc(n ? n : 1, sizeof *dens);
        bool ok = nums && dens && depth < RATIO_DEPTH_MAX && ratio_parts(def, &num, &den);
        if (!nums || !dens)
            ev->reads->oom = true;
        if (ok) {
            eval_series(ev, num, scope, part_field(num, field), kind, keys, n, nums, depth + 1);
            eval_series(ev, den, scope, part_field(den, field), kind, keys, n, dens, depth + 1);
        }
        for (size_t i = 0; i < n; i++)
            out[i] = ok ? ratio_of(nums[i], dens[i]) : (figure_t){0, 0, false};
        free(nums);
        free(dens);
        return;
    }
    default:
        for (size_t i = 0; i < n; i++)
            out[i].defined = false;
        return;
    }
}

/* --- at a date ----------------------------------------------------------- */

/* The periods that make up the year of d up to and including d: the
 * months before d's month, then the days of its month up to d. */
#define YEAR_TO_DATE_MAX (11 + 31)

static size_t year_to_date(date_t d, char keys[YEAR_TO_DATE_MAX][PERIOD_KEY_LEN])
{
    size_t n = 0;
    unsigned year = (unsigned)d.year % 10000u;
    for (int m = 1; m < d.month && m <= 12; m++)
        snprintf(keys[n++], PERIOD_KEY_LEN, "%04u-%02u", year, (unsigned)m % 100u);
    for (int day = 1; day <= d.day && day <= 31; day++)
        snprintf(keys[n++], PERIOD_KEY_LEN, "%04u-%02u-%02u", year, (unsigned)d.month % 100u,
                 (unsigned)day % 100u);
    return n;
}

/* def's figure for a snapshot at d: a LEVEL at the end of d, a VALUE for
 * d's year, the others over the year up to and including d. */
static figure_t eval_at_date(const eval_t *ev, const indicator_def_t *def, const char *scope,
                             date_t d, int depth)
{
    figure_t f = {0, 0, true};
    char keys[YEAR_TO_DATE_MAX][PERIOD_KEY_LEN];
    char period[PERIOD_KEY_LEN];
    switch (def->kind) {
    case KIND_LEVEL:
        date_format(d, period);
        f.value = (double)level_at_end(ev, def->counter, scope, "*", PERIOD_DAY, period);
        return f;
    case KIND_VALUE:
        snprintf(period, sizeof period, "%04u", (unsigned)d.year % 10000u);
        f.value = (double)counter_field(ev, def->counter, scope, period, "*");
        return f;
    case KIND_FLOW: {
        size_t n = year_to_date(d, keys);
        int64_t sum = 0;
        for (size_t i = 0; i < n; i++)
            sum += counter_field(ev, def->counter, scope, keys[i], "*");
        f.value = (double)sum;
        return f;
    }
    case KIND_MEDIAN:
    case KIND_P90: {
        size_t n = year_to_date(d, keys);
        dist_t dist = {0};
        for (size_t i = 0; i < n; i++)
            dist_add_key(ev, &dist, def->counter, scope, keys[i]);
        f = dist_percentile(&dist, kind_percent(def->kind));
        free(dist.items);
        return f;
    }
    case KIND_RATIO: {
        const indicator_def_t *num, *den;
        if (depth >= RATIO_DEPTH_MAX || !ratio_parts(def, &num, &den))
            return (figure_t){0, 0, false};
        return ratio_of(eval_at_date(ev, num, scope, d, depth + 1),
                        eval_at_date(ev, den, scope, d, depth + 1));
    }
    default:
        return (figure_t){0, 0, false};
    }
}

/* True if def's snapshot figure is a VALUE for the year (a ratio: both
 * parts), which its basis says. */
static bool is_yearly_value(const indicator_def_t *def, int depth)
{
    if (def->kind == KIND_VALUE)
        return true;
    const indicator_def_t *num, *den;
    return def->kind == KIND_RATIO && depth < RATIO_DEPTH_MAX && ratio_parts(def, &num, &den) &&
           is_yearly_value(num, depth + 1) && is_yearly_value(den, depth + 1);
}

static void snapshot_basis(const indicator_def_t *def, date_t d, char *out, size_t out_size)
{
    char date[DATE_LEN];
    date_format(d, date);
    if (def->kind == KIND_LEVEL)
        snprintf(out, out_size, "at %s", date);
    else if (is_yearly_value(def, 0))
        snprintf(out, out_size, "%04u", (unsigned)d.year % 10000u);
    else
        snprintf(out, out_size, "%04u-01-01..%s", (unsigned)d.year % 10000u, date);
}

/* ====================================================================== */
/* What a request asks                                                    */
/* ====================================================================== */

static bool given(const char *s)
{
    return s && *s;
}

/* A scope as counter keys name it. */
typedef struct {
    char key[16];      /* "all", "CT2", "13001" */
    char territory[8]; /* for the reply: "" for the Métropole */
    char commune[8];   /* INSEE code, "" unless a commune */
} scope_t;

static bool scope_parse(const Passerelle__Scope *in, scope_t *out, reply_t *reply)
{
    memset(out, 0, sizeof *out);
    snprintf(out->key, sizeof out->key, "%s", SCOPE_ALL);
    const char *territory = in ? in->territory : NULL;
    const char *commune = in ? in->commune : NULL;
    if (given(territory)) {
        if (!refdata_is_territory(territory)) {
            reply_error(reply, ST_INVALID_ARGUMENT, "scope.territory",
                        "territory '%.40s' is not one of CT1..CT6", territory);
            return false;
        }
        for (size_t i = 0; i < 3; i++)
            out->territory[i] = (char)toupper((unsigned char)territory[i]);
        snprintf(out->key, sizeof out->key, "%s", out->territory);
    }
    if (given(commune)) {
        const commune_t *c = refdata_commune(commune);
        if (!c) {
            reply_error(reply, ST_INVALID_ARGUMENT, "scope.commune",
                        "'%.60s' is not one of the 92 communes of the Métropole (INSEE code or "
                        "name)",
                        commune);
            return false;
        }
        if (out->territory[0] && strcmp(out->territory, c->territory) != 0) {
            reply_error(reply, ST_INVALID_ARGUMENT, "scope.commune", "%s is in %s, not in %s",
                        c->name, c->territory, out->territory);
            return false;
        }
        snprintf(out->territory, sizeof out->territory, "%s", c->territory);
        snprintf(out->commune, sizeof out->commune, "%s", c->insee);
        snprintf(out->key, sizeof out->key, "%s", c->insee);
    }
    return true;
}

/* The scope of a reply (strings borrowed from s). */
static void scope_message(scope_t *s, Passerelle__Scope *msg)
{
    passerelle__scope__init(msg);
    msg->territory = s->territory[0] ? s->territory : NULL;
    msg->commune = s->commune[0] ? s->commune : NULL;
}

/* A filter "axis=value" of def into field ("*" when none): the axis one of
 * def's (its name in lower case), the value upper-cased, as counters are
 * kept. */
static bool filter_parse(const indicator_def_t *def, const char *text, char field[PROJ_FIELD_MAX],
                         reply_t *reply)
{
    snprintf(field, PROJ_FIELD_MAX, "*");
    if (!given(text))
        return true;
    const char *eq = strchr(text, '=');
    size_t axis_len = eq ? (size_t)(eq - text) : 0;
    if (!eq || axis_len == 0 || !eq[1] || strlen(text) >= PROJ_FIELD_MAX) {
        reply_error(reply, ST_INVALID_ARGUMENT, "filter",
                    "a filter is axis=value, e.g. level=LOC2; not '%.60s'", text);
        return false;
    }
    char axis[PROJ_FIELD_MAX];
    for (size_t i = 0; i < axis_len; i++)
        axis[i] = (char)tolower((unsigned char)text[i]);
    axis[axis_len] = '\0';
    if (!catalog_has_axis(def, axis)) {
        reply_error(reply, ST_INVALID_ARGUMENT, "filter",
                    "%s is not broken down by '%.40s' (axes: %s)", def->name, axis,
                    given(def->axes) ? def->axes : "none");
        return false;
    }
    size_t n = snprintf(field, PROJ_FIELD_MAX, "%s=", axis);
    for (const char *p = eq + 1; *p && n + 1 < PROJ_FIELD_MAX; p++)
        field[n++] = (char)toupper((unsigned char)*p);
    field[n] = '\0';
    return true;
}

/* A range of periods of one kind. */
typedef struct {
    period_kind_t kind;
    char from[PERIOD_KEY_LEN], to[PERIOD_KEY_LEN];
    char (*keys)[PERIOD_KEY_LEN]; /* owned */
    size_t count;
} range_t;

/* The periods a request asks: its kind (default month) and its keys from
 * `from` to `to`, by default the last SERIES_DEFAULT_POINTS up to the
 * current period (only `to`: those ending there; only `from`: from there
 * to the current period). More than max periods is refused with
 * too_many naming "to". False with the reply set. */
static bool range_parse(const char *kind_text, const char *from, const char *to, size_t max,
                        status_t too_many, reply_t *reply, range_t *out)
{
    memset(out, 0, sizeof *out);
    out->kind = PERIOD_MONTH;
    if (given(kind_text) && !period_kind_parse(kind_text, &out->kind)) {
        reply_error(reply, ST_INVALID_ARGUMENT, "period_kind",
                    "period_kind is day, month, quarter or year; not '%.40s'", kind_text);
        return false;
    }
    const char *noun = period_kind_name(out->kind);
    if (given(from) && !period_key_valid(out->kind, from)) {
        reply_error(reply, ST_INVALID_ARGUMENT, "from", "'%.40s' is not a %s (e.g. %s)", from, noun,
                    out->kind == PERIOD_DAY       ? "2026-04-30"
                    : out->kind == PERIOD_MONTH   ? "2026-04"
                    : out->kind == PERIOD_QUARTER ? "2026-Q2"
                                                  : "2026");
        return false;
    }
    if (given(to) && !period_key_valid(out->kind, to)) {
        reply_error(reply, ST_INVALID_ARGUMENT, "to", "'%.40s' is not a %s", to, noun);
        return false;
    }
    char current[PERIOD_KEY_LEN];
    period_key(out->kind, time_now_ms(), current);
    if (given(to))
        snprintf(out->to, sizeof out->to, "%s", to);
    else if (given(from) && strcmp(from, current) > 0)
        snprintf(out->to, sizeof out->to, "%s", from);
    else
        snprintf(out->to, sizeof out->to, "%s", current);
    if (given(from))
        snprintf(out->from, sizeof out->from, "%s", from);
    else
        period_back(out->kind, out->to, SERIES_DEFAULT_POINTS - 1, out->from);
    if (strcmp(out->to, out->from) < 0) {
        reply_error(reply, ST_INVALID_ARGUMENT, "to", "to (%s) is before from (%s)", out->to,
                    out->from);
        return false;
    }
    out->keys = calloc(max ? max : 1, sizeof *out->keys);
    if (!out->keys) {
        reply_error(reply, ST_INTERNAL, NULL, "out of memory");
        return false;
    }
    long n = period_series(out->kind, out->from, out->to, out->keys, max);
    if (n < 0) {
        free(out->keys);
        out->keys = NULL;
        if (too_many == ST_INVALID_ARGUMENT)
            reply_error(reply, too_many, "to", "%s..%s is more than %zu %ss", out->from, out->to,
                        max, noun);
        else
            reply_error(reply, too_many, "to",
                        "%s..%s makes more than %d rows: export a shorter range", out->from,
                        out->to, EXPORT_ROWS_MAX);
        return false;
    }
    out->count = (size_t)n;
    return true;
}

/* An indicator's kind as exports write it: the enum name without its prefix. */
static const char *kind_name(Passerelle__IndicatorKind kind)
{
    switch (kind) {
    case KIND_FLOW:
        return "FLOW";
    case KIND_LEVEL:
        return "LEVEL";
    case KIND_MEDIAN:
        return "MEDIAN";
    case KIND_P90:
        return "P90";
    case KIND_RATIO:
        return "RATIO";
    case KIND_VALUE:
        return "VALUE";
    default:
        return "UNSPECIFIED";
    }
}

static void point_set(Passerelle__Point *point, const char *period, figure_t f,
                      Passerelle__IndicatorKind kind)
{
    passerelle__point__init(point);
    point->period = (char *)period;
    point->has_defined = true;
    point->defined = f.defined;
    if (f.defined) {
        point->has_value = true;
        point->value = f.value;
    }
    if (kind == KIND_MEDIAN || kind == KIND_P90 || kind == KIND_RATIO) {
        point->has_observations = true;
        point->observations = kind == KIND_RATIO ? 0 : f.observations;
    }
}

/* ====================================================================== */
/* indicator.list                                                         */
/* ====================================================================== */

INDICATORS_HANDLER(handle_indicator_list)
{
    (void)ctx;
    (void)call;
    (void)request;
    size_t n = catalog_count;
    Passerelle__IndicatorDef *defs = calloc(n ? n : 1, sizeof *defs);
    Passerelle__IndicatorDef **ptrs = calloc(n ? n : 1, sizeof *ptrs);
    char ***axes = calloc(n ? n : 1, sizeof *axes);
    bool ok = defs && ptrs && axes;
    for (size_t i = 0; ok && i < n; i++) {
        passerelle__indicator_def__init(&defs[i]);
        ok = catalog_to_message(&catalog[i], &defs[i], &axes[i]);
        ptrs[i] = &defs[i];
    }
    if (ok) {
        Passerelle__IndicatorList list = PASSERELLE__INDICATOR_LIST__INIT;
        list.n_indicators = n;
        list.indicators = ptrs;
        reply_set_body(reply, &list.base);
    } else {
        reply_error(reply, ST_INTERNAL, NULL, "out of memory");
    }
    for (size_t i = 0; axes && i < n; i++)
        free(axes[i]);
    free(axes);
    free(ptrs);
    free(defs);
}

/* ====================================================================== */
/* indicator.series                                                       */
/* ====================================================================== */

INDICATORS_HANDLER(handle_indicator_series)
{
    (void)call;
    indicators_t *ind = ctx;
    const Passerelle__SeriesRequest *req = (const Passerelle__SeriesRequest *)request;
    const indicator_def_t *def = given(req->indicator) ? catalog_find(req->indicator) : NULL;
    if (!given(req->indicator)) {
        reply_error(reply, ST_INVALID_ARGUMENT, "indicator", "indicator is required");
        return;
    }
    if (!def) {
        reply_error(reply, ST_INVALID_ARGUMENT, "indicator",
                    "no indicator is named '%.60s' (indicator.list names them)", req->indicator);
        return;
    }
    range_t range;
    if (!range_parse(req->period_kind, req->from, req->to, SERIES_POINTS_MAX, ST_INVALID_ARGUMENT,
                     reply, &range))
        return;
    scope_t scope;
    char field[PROJ_FIELD_MAX];
    figure_t *figures = NULL;
    Passerelle__Point *points = NULL;
    Passerelle__Point **point_ptrs = NULL;
    reads_t reads = {.planning = true};
    if (!scope_parse(req->scope, &scope, reply) || !filter_parse(def, req->filter, field, reply))
        goto done;
    if (scope.commune[0] && !kept_per_commune(def, 0)) {
        reply_error(reply, ST_INVALID_ARGUMENT, "scope.commune",
                    "%s is not kept per commune: ask for a territory", def->name);
        goto done;
    }
    if (scope.commune[0] && range.kind == PERIOD_DAY) {
        reply_error(reply, ST_INVALID_ARGUMENT, "period_kind",
                    "figures of a commune are kept by month and longer periods, not by day");
        goto done;
    }
    figures = calloc(range.count, sizeof *figures);
    points = calloc(range.count, sizeof *points);
    point_ptrs = calloc(range.count, sizeof *point_ptrs);
    if (!figures || !points || !point_ptrs) {
        reply_error(reply, ST_INTERNAL, NULL, "out of memory");
        goto done;
    }
    eval_t ev = {.reads = &reads, .this_year = date_today_paris().year};
    eval_series(&ev, def, scope.key, field, range.kind, range.keys, range.count, figures, 0);
    if (!reads_fetch(&reads, ind, reply))
        goto done;
    eval_series(&ev, def, scope.key, field, range.kind, range.keys, range.count, figures, 0);
    if (reads.oom) {
        reply_error(reply, ST_INTERNAL, NULL, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < range.count; i++) {
        point_set(&points[i], range.keys[i], figures[i], def->kind);
        point_ptrs[i] = &points[i];
    }
    Passerelle__Scope scope_msg;
    scope_message(&scope, &scope_msg);
    Passerelle__Series series = PASSERELLE__SERIES__INIT;
    series.indicator = (char *)def->name;
    series.period_kind = (char *)period_kind_name(range.kind);
    series.scope = &scope_msg;
    series.filter = strcmp(field, "*") == 0 ? NULL : field;
    series.n_points = range.count;
    series.points = point_ptrs;
    series.has_generation = true;
    series.generation = reads.generation;
    reply_set_body(reply, &series.base);
done:
    reads_free(&reads);
    free(point_ptrs);
    free(points);
    free(figures);
    free(range.keys);
}

/* ====================================================================== */
/* indicator.snapshot                                                     */
/* ====================================================================== */

INDICATORS_HANDLER(handle_indicator_snapshot)
{
    (void)call;
    indicators_t *ind = ctx;
    const Passerelle__SnapshotRequest *req = (const Passerelle__SnapshotRequest *)request;
    scope_t scope;
    if (!scope_parse(req->scope, &scope, reply))
        return;
    if (scope.commune[0]) {
        reply_error(reply, ST_INVALID_ARGUMENT, "scope.commune",
                    "a snapshot is for the Métropole or a territory: figures of a commune are "
                    "not kept by day");
        return;
    }
    date_t date = date_today_paris();
    if (given(req->date) && !date_parse(req->date, &date)) {
        reply_error(reply, ST_INVALID_ARGUMENT, "date", "'%.40s' is not a date YYYY-MM-DD",
                    req->date);
        return;
    }
    size_t n = catalog_count;
    figure_t *figures = calloc(n ? n : 1, sizeof *figures);
    Passerelle__SnapshotRow *rows = calloc(n ? n : 1, sizeof *rows);
    Passerelle__SnapshotRow **row_ptrs = calloc(n ? n : 1, sizeof *row_ptrs);
    char(*bases)[48] = calloc(n ? n : 1, sizeof *bases);
    reads_t reads = {.planning = true};
    if (!figures || !rows || !row_ptrs || !bases) {
        reply_error(reply, ST_INTERNAL, NULL, "out of memory");
        goto done;
    }
    eval_t ev = {.reads = &reads, .this_year = date_today_paris().year};
    for (size_t i = 0; i < n; i++)
        eval_at_date(&ev, &catalog[i], scope.key, date, 0);
    if (!reads_fetch(&reads, ind, reply))
        goto done;
    for (size_t i = 0; i < n; i++)
        figures[i] = eval_at_date(&ev, &catalog[i], scope.key, date, 0);
    if (reads.oom) {
        reply_error(reply, ST_INTERNAL, NULL, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        passerelle__snapshot_row__init(&rows[i]);
        rows[i].indicator = (char *)catalog[i].name;
        rows[i].has_defined = true;
        rows[i].defined = figures[i].defined;
        if (figures[i].defined) {
            rows[i].has_value = true;
            rows[i].value = figures[i].value;
        }
        snapshot_basis(&catalog[i], date, bases[i], sizeof bases[i]);
        rows[i].basis = bases[i];
        row_ptrs[i] = &rows[i];
    }
    char date_text[DATE_LEN];
    date_format(date, date_text);
    Passerelle__Scope scope_msg;
    scope_message(&scope, &scope_msg);
    Passerelle__Snapshot snapshot = PASSERELLE__SNAPSHOT__INIT;
    snapshot.date = date_text;
    snapshot.scope = &scope_msg;
    snapshot.n_rows = n;
    snapshot.rows = row_ptrs;
    snapshot.has_generation = true;
    snapshot.generation = reads.generation;
    reply_set_body(reply, &snapshot.base);
done:
    reads_free(&reads);
    free(bases);
    free(row_ptrs);
    free(rows);
    free(figures);
}

/* ====================================================================== */
/* indicator.export                                                       */
/* ====================================================================== */

/* A growable text (the CSV). */
typedef struct {
    char *data;
    size_t len, cap;
    bool oom;
} text_t;

static void text_add(text_t *t, const char *s, size_t len)
{
    if (t->oom)
        return;
    if (t->len + len + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 4096;
        while (t->len + len + 1 > cap)
            cap *= 2;
        char *data = realloc(t->data, cap);
        if (!data) {
            t->oom = true;
            return;
        }
        t->data = data;
        t->cap = cap;
    }
    memcpy(t->data + t->len, s, len);
    t->len += len;
    t->data[t->len] = '\0';
}

/* One CSV field, quoted when RFC 4180 says it must be (a comma, a quote,
 * a line break), quotes doubled. */
static void csv_field(text_t *t, const char *s)
{
    if (!strpbrk(s, ",\"\r\n")) {
        text_add(t, s, strlen(s));
        return;
    }
    text_add(t, "\"", 1);
    for (const char *p = s; *p; p++) {
        if (*p == '"')
            text_add(t, "\"\"", 2);
        else
            text_add(t, p, 1);
    }
    text_add(t, "\"", 1);
}

/* A figure as text: counts as integers, ratios to six significant
 * digits; "" when undefined. */
static void value_text(figure_t f, char out[32])
{
    if (!f.defined)
        out[0] = '\0';
    else if (f.value == floor(f.value) && fabs(f.value) < 1e15)
        snprintf(out, 32, "%.0f", f.value);
    else
        snprintf(out, 32, "%.6g", f.value);
}

static json_t *value_json(figure_t f)
{
    if (!f.defined)
        return json_null();
    if (f.value == floor(f.value) && fabs(f.value) < 9007199254740992.0)
        return json_integer((json_int_t)f.value);
    return json_real(f.value);
}

/* What an export covers. */
typedef struct {
    const indicator_def_t **defs;
    size_t n_defs;
    scope_t scopes[7];
    size_t n_scopes;
    range_t range;
    bool json;
} export_t;

/* The axis values present in the counters a series of def reads (its
 * periods' hashes, and "all" for a LEVEL), as counter fields, sorted.
 * Only axes of top (the indicator exported) count. */
typedef struct {
    char **items;
    size_t count, cap;
} names_t;

static void names_add(names_t *names, const char *name, reads_t *reads)
{
    for (size_t i = 0; i < names->count; i++)
        if (strcmp(names->items[i], name) == 0)
            return;
    if (names->count == names->cap) {
        size_t cap = names->cap ? names->cap * 2 : 16;
        char **items = realloc(names->items, cap * sizeof *items);
        if (!items) {
            reads->oom = true;
            return;
        }
        names->items = items;
        names->cap = cap;
    }
    names->items[names->count] = strdup(name);
    if (names->items[names->count])
        names->count++;
    else
        reads->oom = true;
}

static void names_free(names_t *names)
{
    for (size_t i = 0; i < names->count; i++)
        free(names->items[i]);
    free(names->items);
    memset(names, 0, sizeof *names);
}

static int name_compare(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void names_of_key(reads_t *reads, const indicator_def_t *top, const char *counter,
                         const char *scope, const char *period, names_t *names)
{
    char key[INDICATORS_KEY_MAX];
    indicators_counter_key(counter, scope, period, key);
    const read_t *hash = reads_find(reads, key, "");
    for (size_t i = 0; hash && i < hash->n_fields; i++) {
        const char *name = hash->names[i];
        const char *eq = strchr(name, '=');
        if (!eq || (size_t)(eq - name) >= PROJ_FIELD_MAX)
            continue;
        char axis[PROJ_FIELD_MAX];
        memcpy(axis, name, (size_t)(eq - name));
        axis[eq - name] = '\0';
        if (catalog_has_axis(top, axis))
            names_add(names, name, reads);
    }
}

static void collect_names(reads_t *reads, const indicator_def_t *top, const indicator_def_t *def,
                          const char *scope, const range_t *range, names_t *names, int depth)
{
    switch (def->kind) {
    case KIND_LEVEL:
    case KIND_FLOW:
    case KIND_VALUE:
        /* A level holds every value it ever counted, even if none moved
         * in the range. */
        if (def->kind == KIND_LEVEL)
            names_of_key(reads, top, def->counter, scope, PERIOD_ALL, names);
        for (size_t i = 0; i < range->count; i++)
            names_of_key(reads, top, def->counter, scope, range->keys[i], names);
        return;
    case KIND_RATIO: {
        const indicator_def_t *num, *den;
        if (depth < RATIO_DEPTH_MAX && ratio_parts(def, &num, &den)) {
            collect_names(reads, top, num, scope, range, names, depth + 1);
            collect_names(reads, top, den, scope, range, names, depth + 1);
        }
        return;
    }
    default: /* a distribution has no axes */
        return;
    }
}

static json_t *points_json(const range_t *range, const figure_t *figures)
{
    json_t *points = json_array();
    for (size_t i = 0; points && i < range->count; i++)
        json_array_append_new(points, json_pack("{s:s, s:o}", "period", range->keys[i], "value",
                                                value_json(figures[i])));
    return points;
}

/* The JSON of one indicator for one scope: its points and, per axis
 * value present, the same series for that value alone. */
/* The points a JSON export may hold, breakdowns included: the totals are
 * bounded by EXPORT_ROWS_MAX before anything is read, but how many axis
 * values the figures hold (one series each) is known only here. */
#define EXPORT_JSON_POINTS_MAX (4 * EXPORT_ROWS_MAX)

static json_t *series_json(const eval_t *ev, const indicator_def_t *def, const scope_t *scope,
                           const range_t *range, figure_t *figures, size_t *points)
{
    json_t *by = json_object();
    names_t names = {0};
    collect_names(ev->reads, def, def, scope->key, range, &names, 0);
    if (names.count)
        qsort(names.items, names.count, sizeof *names.items, name_compare);
    for (size_t i = 0; by && i < names.count; i++) {
        *points += range->count;
        if (*points > EXPORT_JSON_POINTS_MAX)
            break;
        eval_series(ev, def, scope->key, names.items[i], range->kind, range->keys, range->count,
                    figures, 0);
        json_object_set_new(by, names.items[i], points_json(range, figures));
    }
    names_free(&names);
    eval_series(ev, def, scope->key, "*", range->kind, range->keys, range->count, figures, 0);
    return json_pack("{s:s, s:o, s:o}", "scope", scope->key, "points", points_json(range, figures),
                     "by", by ? by : json_object());
}

/* The export's content: CSV text or JSON, each row computed from reads. */
static bool export_render(const export_t *ex, const eval_t *ev, text_t *csv, json_t **json_p,
                          uint32_t *rows, bool *too_big)
{
    size_t points = 0;
    figure_t *figures = calloc(ex->range.count, sizeof *figures);
    if (!figures)
        return false;
    *rows = 0;
    if (ev->reads->planning) {
        /* The plan: every series' totals. The JSON breakdowns read the
         * same hashes (whole), so they need no plan of their own. */
        for (size_t d = 0; d < ex->n_defs; d++)
            for (size_t s = 0; s < ex->n_scopes; s++)
                eval_series(ev, ex->defs[d], ex->scopes[s].key, "*", ex->range.kind, ex->range.keys,
                            ex->range.count, figures, 0);
        free(figures);
        return true;
    }
    json_t *indicators = NULL;
    if (ex->json)
        indicators = json_array();
    else
        text_add(csv, "indicator,kind,scope,period,value\r\n", 35);
    for (size_t d = 0; d < ex->n_defs; d++) {
        const indicator_def_t *def = ex->defs[d];
        json_t *series = ex->json ? json_array() : NULL;
        for (size_t s = 0; s < ex->n_scopes; s++) {
            const scope_t *scope = &ex->scopes[s];
            if (ex->json) {
                points += ex->range.count;
                json_array_append_new(series,
                                      series_json(ev, def, scope, &ex->range, figures, &points));
                *rows += (uint32_t)ex->range.count;
                if (points > EXPORT_JSON_POINTS_MAX) {
                    *too_big = true;
                    json_decref(series);
                    json_decref(indicators);
                    free(figures);
                    return false;
                }
                continue;
            }
            eval_series(ev, def, scope->key, "*", ex->range.kind, ex->range.keys, ex->range.count,
                        figures, 0);
            for (size_t p = 0; p < ex->range.count; p++) {
                char value[32];
                value_text(figures[p], value);
                csv_field(csv, def->name);
                text_add(csv, ",", 1);
                csv_field(csv, kind_name(def->kind));
                text_add(csv, ",", 1);
                csv_field(csv, scope->key);
                text_add(csv, ",", 1);
                csv_field(csv, ex->range.keys[p]);
                text_add(csv, ",", 1);
                csv_field(csv, value);
                text_add(csv, "\r\n", 2);
                (*rows)++;
            }
        }
        if (ex->json)
            json_array_append_new(
                indicators, json_pack("{s:s, s:s, s:s, s:s, s:o}", "name", def->name, "kind",
                                      kind_name(def->kind), "unit", def->unit ? def->unit : "",
                                      "definition", def->definition ? def->definition : "",
                                      "series", series ? series : json_array()));
    }
    free(figures);
    if (ex->json) {
        char generated[TIME_RFC3339_LEN];
        time_now_rfc3339(generated);
        *json_p = json_pack("{s:s, s:s, s:s, s:s, s:o}", "generated_at", generated, "period_kind",
                            period_kind_name(ex->range.kind), "from", ex->range.from, "to",
                            ex->range.to, "indicators", indicators ? indicators : json_array());
        return *json_p != NULL;
    }
    return !csv->oom;
}

/* Which indicators an export covers: those named (each once), or every
 * one; with a commune scope, those kept per commune (a named one that is
 * not is refused). False with the reply set. */
static bool export_indicators(const Passerelle__ExportRequest *req, bool commune, export_t *ex,
                              reply_t *reply)
{
    ex->defs = calloc(catalog_count ? catalog_count : 1, sizeof *ex->defs);
    if (!ex->defs) {
        reply_error(reply, ST_INTERNAL, NULL, "out of memory");
        return false;
    }
    if (req->n_indicators == 0) {
        for (size_t i = 0; i < catalog_count; i++)
            if (!commune || kept_per_commune(&catalog[i], 0))
                ex->defs[ex->n_defs++] = &catalog[i];
        return true;
    }
    for (size_t i = 0; i < req->n_indicators; i++) {
        const indicator_def_t *def =
            given(req->indicators[i]) ? catalog_find(req->indicators[i]) : NULL;
        if (!def) {
            reply_error(reply, ST_INVALID_ARGUMENT, "indicators",
                        "no indicator is named '%.60s' (indicator.list names them)",
                        req->indicators[i] ? req->indicators[i] : "");
            return false;
        }
        if (commune && !kept_per_commune(def, 0)) {
            reply_error(reply, ST_INVALID_ARGUMENT, "scope.commune",
                        "%s is not kept per commune: ask for a territory", def->name);
            return false;
        }
        bool seen = false;
        for (size_t j = 0; j < ex->n_defs; j++)
            seen = seen || ex->defs[j] == def;
        if (!seen)
            ex->defs[ex->n_defs++] = def;
    }
    return true;
}

INDICATORS_HANDLER(handle_indicator_export)
{
    (void)call;
    indicators_t *ind = ctx;
    const Passerelle__ExportRequest *req = (const Passerelle__ExportRequest *)request;
    export_t ex;
    memset(&ex, 0, sizeof ex);
    reads_t reads = {.planning = true};
    text_t csv = {0};
    json_t *json = NULL;
    char *json_text = NULL;

    if (given(req->format) && strcasecmp(req->format, "json") == 0)
        ex.json = true;
    else if (given(req->format) && strcasecmp(req->format, "csv") != 0) {
        reply_error(reply, ST_INVALID_ARGUMENT, "format", "format is csv or json; not '%.40s'",
                    req->format);
        return;
    }
    scope_t asked;
    if (!scope_parse(req->scope, &asked, reply))
        return;
    bool commune = asked.commune[0] != '\0';
    if (req->scope && (given(req->scope->territory) || given(req->scope->commune))) {
        ex.scopes[ex.n_scopes++] = asked;
    } else {
        scope_parse(NULL, &ex.scopes[ex.n_scopes++], reply);
        for (int t = 1; t <= 6; t++) {
            scope_t *s = &ex.scopes[ex.n_scopes++];
            memset(s, 0, sizeof *s);
            snprintf(s->territory, sizeof s->territory, "CT%d", t);
            snprintf(s->key, sizeof s->key, "CT%d", t);
        }
    }
    if (!export_indicators(req, commune, &ex, reply))
        goto done;
    if (given(req->period_kind)) {
        period_kind_t kind;
        if (period_kind_parse(req->period_kind, &kind) && kind == PERIOD_DAY && commune) {
            reply_error(reply, ST_INVALID_ARGUMENT, "period_kind",
                        "figures of a commune are kept by month and longer periods, not by day");
            goto done;
        }
    }
    size_t per_period = ex.n_defs * ex.n_scopes;
    size_t max_periods = per_period ? EXPORT_ROWS_MAX / per_period : EXPORT_ROWS_MAX;
    if (!range_parse(req->period_kind, req->from, req->to, max_periods, ST_RESOURCE_EXHAUSTED,
                     reply, &ex.range))
        goto done;

    /* The JSON form breaks each series down by every axis value present,
     * which only whole hashes tell; the CSV needs the totals alone. */
    reads.whole = ex.json;
    eval_t ev = {.reads = &reads, .this_year = date_today_paris().year};
    uint32_t rows = 0;
    bool too_big = false;
    export_render(&ex, &ev, &csv, &json, &rows, &too_big);
    if (!reads_fetch(&reads, ind, reply))
        goto done;
    if (!export_render(&ex, &ev, &csv, &json, &rows, &too_big) || reads.oom) {
        if (too_big)
            reply_error(reply, ST_RESOURCE_EXHAUSTED, "to",
                        "the JSON export would hold more than %d points with its breakdowns: "
                        "ask for fewer periods, indicators or scopes",
                        EXPORT_JSON_POINTS_MAX);
        else
            reply_error(reply, ST_INTERNAL, NULL, "out of memory");
        goto done;
    }
    Passerelle__ExportReply out = PASSERELLE__EXPORT_REPLY__INIT;
    out.has_content = true;
    out.has_rows = true;
    out.rows = rows;
    if (ex.json) {
        json_text = json_dumps(json, JSON_COMPACT);
        if (!json_text) {
            reply_error(reply, ST_INTERNAL, NULL, "out of memory");
            goto done;
        }
        out.media_type = "application/json";
        out.content.data = (uint8_t *)json_text;
        out.content.len = strlen(json_text);
    } else {
        out.media_type = "text/csv";
        out.content.data = (uint8_t *)csv.data;
        out.content.len = csv.len;
    }
    reply_set_body(reply, &out.base);
done:
    free(json_text);
    json_decref(json);
    free(csv.data);
    reads_free(&reads);
    free(ex.range.keys);
    free(ex.defs);
}
