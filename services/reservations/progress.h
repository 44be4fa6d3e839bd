/* Progress of reservations for Action Logement against the objectives of
 * the programmes: counters kept in Redis hashes and changed in the same
 * transaction as the reservation that moves them (txn_counter_add), so that
 * they always equal what the reservations say. A recount from the
 * reservation records must give the same figures (a test checks it).
 *
 * What counts: reservations whose reservataire is ACTION_LOGEMENT (or left
 * unspecified, which means the same) and that were not cancelled (a
 * released reservation was achieved), by the year of the reservation
 * (Reservation.year, else the year of its start_date), its `units` (always
 * 1 for STOCK), per programme and per territory, in total and per
 * convention level and per financing (the snapshots taken at creation);
 * and, over the whole life of a programme, the rights used inside and
 * outside priority neighbourhoods (in_qpv), which NPNRU programmes report.
 *
 * Keys and fields:
 *   reservations:progress:<year>   (hash)
 *     programme:<id>                    units reserved in the programme
 *     programme:<id>:level:<LOCn>       ... on units conventioned at LOCn
 *     programme:<id>:financing:<F>      ... on units financed by F (PLAI...)
 *     territory:<CTn>                   units reserved in the territory, in
 *                                       a programme or not
 *   reservations:progress:rights   (hash, every year)
 *     programme:<id>:in_qpv             units reserved in a QPV
 *     programme:<id>:outside_qpv        units reserved outside
 *
 * Every counter moves only with a reservation's creation (+) or
 * cancellation (-), in the same commit.lua call, so a retried or duplicate
 * request (the idempotency key) cannot count twice. */
#ifndef RESERVATIONS_PROGRESS_H
#define RESERVATIONS_PROGRESS_H

#include "reservations.pb-c.h"
#include "store.h"
#include "txn.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROGRESS_KEY_PREFIX  "reservations:progress:"
#define PROGRESS_RIGHTS_KEY  "reservations:progress:rights"
#define PROGRESS_KEY_MAX     48
#define PROGRESS_FIELD_MAX   96
#define PROGRESS_ENTRIES_MAX 6

/* Adds sign (+1 at creation, -1 at cancellation) times the reservation's
 * units to every counter it belongs to. A reservation that does not count
 * (another reservataire) adds nothing. The state is not looked at: the
 * caller says when a reservation starts or stops counting, so it may pass
 * the reservation as it is after its cancellation. */
void progress_count(txn_t *txn, const Passerelle__Reservation *reservation, int sign);

/* True if the reservation counts for Action Logement (its reservataire). */
bool progress_counts(const Passerelle__Reservation *reservation);

/* The year a reservation counts in (0 if it has none). */
unsigned progress_year(const Passerelle__Reservation *reservation);

/* One counter change. */
typedef struct {
    char key[PROGRESS_KEY_MAX];
    char field[PROGRESS_FIELD_MAX];
    int64_t delta;
} progress_entry_t;

/* The counter changes progress_count makes, written into out; returns how
 * many (0 when the reservation does not count). */
size_t progress_entries(const Passerelle__Reservation *reservation, int sign,
                        progress_entry_t out[PROGRESS_ENTRIES_MAX]);

/* --- tallies: counters in memory ------------------------------------------ */

/* A table (key, field) -> value, to hold counters read from Redis or
 * recounted from records, and to compare the two. */
typedef struct progress_tally_t progress_tally_t;

progress_tally_t *progress_tally_new(void);
void progress_tally_destroy(progress_tally_t **self_p);
/* Adds delta to (key, field), creating it at 0. False if out of memory. */
bool progress_tally_add(progress_tally_t *self, const char *key, const char *field, int64_t delta);
/* The value of (key, field); 0 if absent. */
int64_t progress_tally_get(const progress_tally_t *self, const char *key, const char *field);
size_t progress_tally_size(const progress_tally_t *self);

/* Recounts the counters from reservation records (all of them, any state:
 * cancelled ones are skipped here) into tally. */
void progress_recount(const Passerelle__Reservation *const *reservations, size_t count,
                      progress_tally_t *tally);

/* Loads every progress hash of the store (SCAN reservations:progress:*,
 * then HGETALL each) into tally. */
store_result_t progress_tally_load(store_t *store, progress_tally_t *tally);

/* Loads one progress hash (HGETALL key) into tally, under key. */
store_result_t progress_tally_load_hash(store_t *store, const char *key, progress_tally_t *tally);

/* True if both hold the same non-zero counters; otherwise, the first
 * difference is written into diff ("key field: 3 != 2"). */
bool progress_tally_equal(const progress_tally_t *a, const progress_tally_t *b, char *diff,
                          size_t diff_size);

/* --- rows of a progress report ------------------------------------------- */

/* A programme in the report's scope. Strings are borrowed. */
typedef struct {
    const char *id;
    const char *territory;
    unsigned start_year, end_year; /* its period; 0 if unknown */
} progress_programme_t;

/* An objective of the report's year. */
typedef struct {
    char programme_id[32];
    int level, financing; /* 0: none */
    uint32_t units;
} progress_objective_t;

/* The report: rows owned here, strings borrowed from the inputs. */
typedef struct {
    Passerelle__ProgressRow *rows;
    Passerelle__ProgressRow **row_ptrs;
    size_t count;
} progress_report_t;

/* Builds the rows of the year from the programmes in scope, the year's
 * objectives (those of other programmes are ignored) and the counters
 * (`counters` holds at least the hash reservations:progress:<year>): for each programme, one total
 * row when its period covers the year or it has an objective or an achievement that year, then one
 * row per level and per financing that has an objective or an achievement; then one total row per
 * territory in `territories`, whose objective is the sum of its programmes' total objectives and
 * whose achievement is every unit reserved in the territory. ratio = achieved / objective when the
 * objective is not 0. False if out of memory. */
bool progress_report_build(unsigned year, const progress_programme_t *programmes,
                           size_t programme_count, const progress_objective_t *objectives,
                           size_t objective_count, const progress_tally_t *counters,
                           const char *const *territories, size_t territory_count,
                           progress_report_t *report);
void progress_report_free(progress_report_t *report);

#endif
