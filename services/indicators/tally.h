/* Counts gathered in memory before they are written: the moves of many
 * events summed per (key, field), and the newest replacement per record
 * identity. A projector's batch and a rebuild's pages both go through one,
 * so Redis sees one HINCRBY per distinct counter field instead of one per
 * event. */
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

/* Distinct (key, field) sums held, replacements held. */
size_t tally_size(const tally_t *self);
size_t tally_replacement_count(const tally_t *self);

/* Calls fn for every non-zero sum, in no particular order. */
typedef void(tally_fn)(void *arg, const char *key, const char *field, int64_t delta);
void tally_each(const tally_t *self, tally_fn *fn, void *arg);

/* Calls fn for every replacement held. */
typedef void(tally_replacement_fn)(void *arg, const replacement_t *r);
void tally_each_replacement(const tally_t *self, tally_replacement_fn *fn, void *arg);

/* Forgets everything held. */
void tally_clear(tally_t *self);

#endif
