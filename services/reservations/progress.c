/* Progress counters, their recount, and the rows of a progress report; see
 * progress.h for what counts and under which keys.
 *
 * progress_count and progress_recount share progress_entries, so the
 * counters kept write by write and a recount from the records can only
 * differ if a write was lost or doubled - which is what the recount test
 * looks for. */
#include "progress.h"

#include "programme_rules.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RESERVATAIRE_AL          PASSERELLE__RESERVATAIRE__RESERVATAIRE_ACTION_LOGEMENT
#define RESERVATAIRE_UNSPECIFIED PASSERELLE__RESERVATAIRE__RESERVATAIRE_UNSPECIFIED

/* ====================================================================== */
/* Counting                                                               */
/* ====================================================================== */

bool progress_counts(const Passerelle__Reservation *reservation)
{
    return !reservation->has_reservataire || reservation->reservataire == RESERVATAIRE_AL ||
           reservation->reservataire == RESERVATAIRE_UNSPECIFIED;
}

unsigned progress_year(const Passerelle__Reservation *reservation)
{
    if (reservation->has_year && reservation->year != 0)
        return reservation->year;
    date_t start;
    if (reservation->start_date && date_parse(reservation->start_date, &start))
        return (unsigned)start.year;
    return 0;
}

/* A STOCK reservation is one unit whatever its `units` says. */
static int64_t reservation_units(const Passerelle__Reservation *reservation)
{
    if (reservation->mode == PASSERELLE__RESERVATION_MODE__MODE_STOCK)
        return 1;
    return reservation->units;
}

static size_t entry_set(progress_entry_t *out, size_t n, const char *key, int64_t delta,
                        const char *format, ...) __attribute__((format(printf, 5, 6)));

static size_t entry_set(progress_entry_t *out, size_t n, const char *key, int64_t delta,
                        const char *format, ...)
{
    snprintf(out[n].key, sizeof out[n].key, "%s", key);
    va_list args;
    va_start(args, format);
    vsnprintf(out[n].field, sizeof out[n].field, format, args);
    va_end(args);
    out[n].delta = delta;
    return n + 1;
}

size_t progress_entries(const Passerelle__Reservation *reservation, int sign,
                        progress_entry_t out[PROGRESS_ENTRIES_MAX])
{
    if (!progress_counts(reservation))
        return 0;
    int64_t delta = (int64_t)sign * reservation_units(reservation);
    if (delta == 0)
        return 0;
    const char *programme = reservation->programme_id;
    bool in_programme = programme && *programme;
    size_t n = 0;
    unsigned year = progress_year(reservation);
    if (year) {
        char key[PROGRESS_KEY_MAX];
        snprintf(key, sizeof key, PROGRESS_KEY_PREFIX "%u", year);
        if (in_programme) {
            n = entry_set(out, n, key, delta, "programme:%.40s", programme);
            if (reservation->has_level &&
                reservation->level != PASSERELLE__CONVENTION_LEVEL__LEVEL_UNSPECIFIED)
                n = entry_set(out, n, key, delta, "programme:%.40s:level:%s", programme,
                              convention_level_name(reservation->level));
            if (reservation->has_financing &&
                reservation->financing != PASSERELLE__FINANCING__FINANCING_UNSPECIFIED)
                n = entry_set(out, n, key, delta, "programme:%.40s:financing:%s", programme,
                              financing_name(reservation->financing));
        }
        if (reservation->territory && *reservation->territory)
            n = entry_set(out, n, key, delta, "territory:%.8s", reservation->territory);
    }
    if (in_programme)
        n = entry_set(out, n, PROGRESS_RIGHTS_KEY, delta, "programme:%.40s:%s", programme,
                      reservation->in_qpv ? "in_qpv" : "outside_qpv");
    return n;
}

void progress_count(txn_t *txn, const Passerelle__Reservation *reservation, int sign)
{
    progress_entry_t entries[PROGRESS_ENTRIES_MAX];
    size_t n = progress_entries(reservation, sign, entries);
    for (size_t i = 0; i < n; i++)
        txn_counter_add(txn, entries[i].key, entries[i].field, entries[i].delta);
}

/* ====================================================================== */
/* Tallies                                                                */
/* ====================================================================== */

typedef struct {
    char key[PROGRESS_KEY_MAX];
    char field[PROGRESS_FIELD_MAX];
    int64_t value;
} tally_item_t;

/* A plain array searched linearly: a tally holds a few counters per
 * programme, hundreds at most, and is built only by reports and tests. */
struct progress_tally_t {
    tally_item_t *items;
    size_t count, capacity;
};

progress_tally_t *progress_tally_new(void)
{
    return calloc(1, sizeof(progress_tally_t));
}

void progress_tally_destroy(progress_tally_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free((*self_p)->items);
    free(*self_p);
    *self_p = NULL;
}

static tally_item_t *tally_find(const progress_tally_t *self, const char *key, const char *field)
{
    for (size_t i = 0; i < self->count; i++)
        if (strcmp(self->items[i].key, key) == 0 && strcmp(self->items[i].field, field) == 0)
            return &self->items[i];
    return NULL;
}

bool progress_tally_add(progress_tally_t *self, const char *key, const char *field, int64_t delta)
{
    tally_item_t *item = tally_find(self, key, field);
    if (!item) {
        if (self->count == self->capacity) {
            size_t capacity = self->capacity ? self->capacity * 2 : 32;
            tally_item_t *items = realloc(self->items, capacity * sizeof *items);
            if (!items)
                return false;
            self->items = items;
            self->capacity = capacity;
        }
        item = &self->items[self->count++];
        snprintf(item->key, sizeof item->key, "%s", key);
        snprintf(item->field, sizeof item->field, "%s", field);
        item->value = 0;
    }
    item->value += delta;
    return true;
}

int64_t progress_tally_get(const progress_tally_t *self, const char *key, const char *field)
{
    const tally_item_t *item = tally_find(self, key, field);
    return item ? item->value : 0;
}

size_t progress_tally_size(const progress_tally_t *self)
{
    return self->count;
}

void progress_recount(const Passerelle__Reservation *const *reservations, size_t count,
                      progress_tally_t *tally)
{
    for (size_t i = 0; i < count; i++) {
        const Passerelle__Reservation *r = reservations[i];
        if (r->state == PASSERELLE__RESERVATION_STATE__RESERVATION_CANCELLED)
            continue;
        progress_entry_t entries[PROGRESS_ENTRIES_MAX];
        size_t n = progress_entries(r, +1, entries);
        for (size_t j = 0; j < n; j++)
            progress_tally_add(tally, entries[j].key, entries[j].field, entries[j].delta);
    }
}

store_result_t progress_tally_load_hash(store_t *store, const char *key, progress_tally_t *tally)
{
    redisReply *r = NULL;
    store_result_t result = store_command(store, &r, "HGETALL %s", key);
    if (result != STORE_OK) {
        if (r)
            freeReplyObject(r);
        return result;
    }
    if (r->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(r);
        return STORE_REFUSED;
    }
    for (size_t i = 0; i + 1 < r->elements; i += 2)
        if (r->element[i]->type == REDIS_REPLY_STRING &&
            r->element[i + 1]->type == REDIS_REPLY_STRING)
            progress_tally_add(tally, key, r->element[i]->str,
                               strtoll(r->element[i + 1]->str, NULL, 10));
    freeReplyObject(r);
    return STORE_OK;
}

/* SCAN, not KEYS: it does not block Redis on a large keyspace. */
store_result_t progress_tally_load(store_t *store, progress_tally_t *tally)
{
    char cursor[32] = "0";
    do {
        redisReply *r = NULL;
        store_result_t result =
            store_command(store, &r, "SCAN %s MATCH %s* COUNT 500", cursor, PROGRESS_KEY_PREFIX);
        if (result != STORE_OK) {
            if (r)
                freeReplyObject(r);
            return result;
        }
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(r);
            return STORE_REFUSED;
        }
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        const redisReply *keys = r->element[1];
        for (size_t i = 0; i < keys->elements; i++) {
            if (keys->element[i]->type != REDIS_REPLY_STRING)
                continue;
            result = progress_tally_load_hash(store, keys->element[i]->str, tally);
            if (result != STORE_OK) {
                freeReplyObject(r);
                return result;
            }
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    return STORE_OK;
}

/* Every non-zero counter of a has the same value in b. */
static bool tally_included(const progress_tally_t *a, const progress_tally_t *b, char *diff,
                           size_t diff_size)
{
    for (size_t i = 0; i < a->count; i++) {
        const tally_item_t *item = &a->items[i];
        int64_t other = progress_tally_get(b, item->key, item->field);
        if (item->value != other) {
            if (diff && diff_size)
                snprintf(diff, diff_size, "%s %s: %lld != %lld", item->key, item->field,
                         (long long)item->value, (long long)other);
            return false;
        }
    }
    return true;
}

bool progress_tally_equal(const progress_tally_t *a, const progress_tally_t *b, char *diff,
                          size_t diff_size)
{
    /* Zero and absent are the same counter: a cancellation leaves a 0. */
    return tally_included(a, b, diff, diff_size) && tally_included(b, a, diff, diff_size);
}

/* ====================================================================== */
/* Reports                                                                */
/* ====================================================================== */

static const char *const LEVEL_FIELDS[] = {NULL, "LOC1", "LOC2", "LOC3"};
#define LEVEL_COUNT     3
#define FINANCING_COUNT 5

/* The objective (programme, level, financing) of the year, or NULL. */
static const progress_objective_t *objective_of(const progress_objective_t *objectives,
                                                size_t count, const char *programme_id, int level,
                                                int financing)
{
    for (size_t i = 0; i < count; i++)
        if (objectives[i].level == level && objectives[i].financing == financing &&
            strcmp(objectives[i].programme_id, programme_id) == 0)
            return &objectives[i];
    return NULL;
}

static Passerelle__ProgressRow *row_add(progress_report_t *report, size_t capacity, unsigned year,
                                        const char *programme_id, const char *territory,
                                        const progress_objective_t *objective, int64_t achieved)
{
    if (report->count == capacity)
        return NULL;
    Passerelle__ProgressRow *row = &report->rows[report->count];
    Passerelle__ProgressRow init = PASSERELLE__PROGRESS_ROW__INIT;
    *row = init;
    row->programme_id = (char *)programme_id;
    row->territory = (char *)territory;
    row->has_year = true;
    row->year = year;
    row->has_objective = true;
    row->objective = objective ? objective->units : 0;
    row->has_achieved = true;
    /* A counter below zero would be a bug; a report shows 0, the recount
     * test finds it. */
    row->achieved = achieved > 0 ? (uint32_t)achieved : 0;
    if (row->objective > 0) {
        row->has_ratio = true;
        row->ratio = (double)row->achieved / (double)row->objective;
    }
    report->row_ptrs[report->count++] = row;
    return row;
}

bool progress_report_build(unsigned year, const progress_programme_t *programmes,
                           size_t programme_count, const progress_objective_t *objectives,
                           size_t objective_count, const progress_tally_t *counters,
                           const char *const *territories, size_t territory_count,
                           progress_report_t *report)
{
    memset(report, 0, sizeof *report);
    size_t capacity = programme_count * (1 + LEVEL_COUNT + FINANCING_COUNT) + territory_count;
    if (capacity == 0)
        return true;
    report->rows = calloc(capacity, sizeof *report->rows);
    report->row_ptrs = calloc(capacity, sizeof *report->row_ptrs);
    if (!report->rows || !report->row_ptrs) {
        progress_report_free(report);
        return false;
    }
    char key[PROGRESS_KEY_MAX], field[PROGRESS_FIELD_MAX];
    snprintf(key, sizeof key, PROGRESS_KEY_PREFIX "%u", year);

    for (size_t p = 0; p < programme_count; p++) {
        const progress_programme_t *prog = &programmes[p];
        const progress_objective_t *objective =
            objective_of(objectives, objective_count, prog->id, 0, 0);
        snprintf(field, sizeof field, "programme:%s", prog->id);
        int64_t achieved = progress_tally_get(counters, key, field);
        bool in_period = prog->start_year && prog->end_year && prog->start_year <= year &&
                         year <= prog->end_year;
        bool has_detail = false;
        for (size_t i = 0; i < objective_count && !has_detail; i++)
            has_detail = strcmp(objectives[i].programme_id, prog->id) == 0;
        if (!in_period && !objective && achieved == 0 && !has_detail)
            continue;
        row_add(report, capacity, year, prog->id, prog->territory, objective, achieved);

        for (int level = 1; level <= LEVEL_COUNT; level++) {
            objective = objective_of(objectives, objective_count, prog->id, level, 0);
            snprintf(field, sizeof field, "programme:%s:level:%s", prog->id, LEVEL_FIELDS[level]);
            achieved = progress_tally_get(counters, key, field);
            if (!objective && achieved == 0)
                continue;
            Passerelle__ProgressRow *row =
                row_add(report, capacity, year, prog->id, prog->territory, objective, achieved);
            row->has_level = true;
            row->level = level;
        }
        for (int financing = 1; financing <= FINANCING_COUNT; financing++) {
            objective = objective_of(objectives, objective_count, prog->id, 0, financing);
            snprintf(field, sizeof field, "programme:%s:financing:%s", prog->id,
                     financing_name(financing));
            achieved = progress_tally_get(counters, key, field);
            if (!objective && achieved == 0)
                continue;
            Passerelle__ProgressRow *row =
                row_add(report, capacity, year, prog->id, prog->territory, objective, achieved);
            row->has_financing = true;
            row->financing = financing;
        }
    }

    for (size_t t = 0; t < territory_count; t++) {
        progress_objective_t sum = {.units = 0};
        for (size_t p = 0; p < programme_count; p++) {
            if (!programmes[p].territory || strcmp(programmes[p].territory, territories[t]) != 0)
                continue;
            const progress_objective_t *objective =
                objective_of(objectives, objective_count, programmes[p].id, 0, 0);
            if (objective)
                sum.units += objective->units;
        }
        snprintf(field, sizeof field, "territory:%s", territories[t]);
        row_add(report, capacity, year, NULL, territories[t], &sum,
                progress_tally_get(counters, key, field));
    }
    return true;
}

void progress_report_free(progress_report_t *report)
{
    free(report->rows);
    free(report->row_ptrs);
    memset(report, 0, sizeof *report);
}
