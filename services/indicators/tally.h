/* Counts gathered in memory before they are written: the moves of many
 * events summed per (key, field), and the newest replacement per record
 * identity. A projector's batch and a rebuild's pages both go through one,
 * so Redis sees one HINCRBY per distinct counter field instead of one per
 * event.
 *
 * Events' adds come in as increments (projection_count), summed as they
 * are and expanded once each when the sums are handed out: a rebuild's
 * million events are a few tens of thousands of distinct increments, each
 * of which would otherwise be expanded into dozens of triples per event. */
#ifndef INDICATORS_TALLY_H
#define INDICATORS_TALLY_H

#include "projection.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tally_t tally_t;

tally_t *tally_new(void);
void tally_destroy(tally_t **self_p);

/* Adds every add of p and keeps each of its replacements if newer than
 * the one held for its identity. False when out of memory. */
bool tally_add_projection(tally_t *self, const projection_t *p);
bool tally_add(tally_t *self, const char *key, const char *field, int64_t delta);

/* Adds count increments: increments equal in all but their amount (an
 * instant counting as its Europe/Paris day) are summed into one, expanded
 * (projection_expand) when the sums are handed out. The strings are
 * copied. False when out of memory or an increment is malformed
 * (projection_check); those before it are added. */
bool tally_add_increments(tally_t *self, const increment_t *incs, size_t count);

/* At most how many distinct (key, field) sums tally_each hands out: the
 * sums held, plus the triples the increments held expand to (their keys
 * and fields may coincide). Exact after tally_expand. Replacements held. */
size_t tally_size(const tally_t *self);
size_t tally_replacement_count(const tally_t *self);

/* Expands the increments held into sums (tally_each does it first). False
 * when out of memory; the tally is then only good for tally_clear. */
bool tally_expand(tally_t *self);

/* Calls fn for every non-zero sum, the fields of a key one after the
 * other, keys in no particular order, once the increments held are
 * expanded; false, fn never called, if that ran out of memory. */
typedef void(tally_fn)(void *arg, const char *key, const char *field, int64_t delta);
bool tally_each(tally_t *self, tally_fn *fn, void *arg);

/* Calls fn for every replacement held. */
typedef void(tally_replacement_fn)(void *arg, const replacement_t *r);
void tally_each_replacement(const tally_t *self, tally_replacement_fn *fn, void *arg);

/* Forgets everything held. */
void tally_clear(tally_t *self);

#endif
