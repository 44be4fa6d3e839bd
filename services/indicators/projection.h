/* What an event counts: a pure function from an event to counter moves,
 * tested without Redis (tests/test_projection.c).
 *
 * A move is a triple (counter key without its generation prefix, field,
 * delta): indicators.h gives the key layout. Moves come in two sorts:
 *   - adds: counted once per event (the event's done marker makes sure);
 *   - replacements: what one record (an objective, an economic project, a
 *     period's demand figures) counts as of a version. A replacement
 *     undoes what the record counted before and counts anew, and only if
 *     its version is higher than the one counted: the newest version wins
 *     whatever order events are applied in.
 *
 * Every counter an increment touches is expanded here, in one place
 * (projection_expand): the scopes (the Métropole, the territory if known,
 * the commune if known and the counter is kept per commune), the periods
 * (an instant counts in its day - Métropole and territories only -,
 * month, quarter, year and "all", in Europe/Paris time; a stated period
 * counts in itself, the longer periods containing it, and "all"), and the
 * fields ("*" and one per axis value). */
#ifndef INDICATORS_PROJECTION_H
#define INDICATORS_PROJECTION_H

#include "envelope.pb-c.h"
#include "indicators.h"
#include "periods.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROJ_FIELD_MAX    64
#define PROJ_IDENTITY_MAX 160
#define PROJ_DIMS_MAX     12

typedef struct {
    char key[INDICATORS_KEY_MAX]; /* "c:conventions.signed:CT2:2026-04" */
    char field[PROJ_FIELD_MAX];   /* "*", "level=LOC2", "v=42" */
    int64_t delta;
} triple_t;

/* A growable array of triples (owned). */
typedef struct {
    triple_t *items;
    size_t count;
    size_t cap;
} triples_t;

void triples_init(triples_t *t);
/* False when out of memory (nothing added). */
bool triples_add(triples_t *t, const char *key, const char *field, int64_t delta);
void triples_free(triples_t *t);

typedef struct {
    char identity[PROJ_IDENTITY_MAX]; /* "objective:P01...:2026", "project:J01...", "demand:2026-04"
                                       */
    uint64_t version;                 /* the record's version */
    triples_t triples;                /* what it counts as of that version */
} replacement_t;

typedef struct {
    triples_t adds;
    replacement_t *replacements; /* owned */
    size_t replacement_count;
} projection_t;

/* One increment before expansion. */
typedef struct {
    const char *counter;   /* "conventions.signed" */
    const char *territory; /* "CT2", or NULL/"" if unknown */
    /* INSEE code, or NULL/""; used only if the catalog keeps the counter
     * per commune (catalog.h), which projection_expand checks. */
    const char *commune;
    /* "axis=VALUE" fields besides "*"; an axis may appear with several
     * values (a proposal for two publics counts in both). */
    const char *dims[PROJ_DIMS_MAX];
    size_t dim_count;
    int64_t amount;
    /* When: an instant (UTC ms), or a stated period key (kind given). */
    int64_t at_ms;
    const char *stated_period; /* NULL: use at_ms */
    period_kind_t stated_kind;
    bool days; /* count day periods too (event-time counters) */
    /* Count in the dims' fields only, not in "*": a part of a total that
     * is given on its own (demand figures of one public, aids of one
     * kind), which summing into "*" would count twice. */
    bool dims_only;
} increment_t;

/* Appends every triple of inc to out. False, with nothing appended, when
 * out of memory or inc is malformed (a stated period that is not a valid
 * key of its kind, a dim that is not "axis=VALUE"). */
bool projection_expand(const increment_t *inc, triples_t *out);

/* What event counts, into out (initialised here; projection_free after).
 * An event of a type nothing counts, or whose data does not decode, gives
 * an empty projection and returns true (it is acknowledged and logged);
 * false only when out of memory. */
bool projection_of(const Passerelle__Event *event, projection_t *out);
void projection_free(projection_t *p);

#endif
