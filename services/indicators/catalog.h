/* The indicators: one table saying, for every indicator, what it is,
 * which counter it reads and how (indicators.h: counters; projection.h:
 * what feeds them). Queries, exports, the report and the README's
 * definitions all come from this table. */
#ifndef INDICATORS_CATALOG_H
#define INDICATORS_CATALOG_H

#include "indicators.pb-c.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    const char *name;               /* "conventions.signed" */
    Passerelle__IndicatorKind kind; /* FLOW, LEVEL, MEDIAN, P90, RATIO, VALUE */
    const char *counter;            /* the counter read (all but RATIO) */
    const char *numerator;          /* RATIO: indicator names */
    const char *denominator;
    const char *unit;       /* "conventions", "days", "units", "ratio" */
    const char *axes;       /* comma-separated axis names ("level"), "" for none */
    bool communes;          /* kept per commune too */
    bool stated_period;     /* counted in the period a record states, not at event time */
    const char *source;     /* "convention.signed events" */
    const char *definition; /* one sentence */
} indicator_def_t;

extern const indicator_def_t catalog[];
extern const size_t catalog_count;

/* The indicator of that name (exact), or NULL. */
const indicator_def_t *catalog_find(const char *name);

/* True if axis is one of def's axes. */
bool catalog_has_axis(const indicator_def_t *def, const char *axis);

/* Fills def into msg (strings borrowed from the table; the axes array is
 * malloc'd into *axes_p, which the caller frees). */
bool catalog_to_message(const indicator_def_t *def, Passerelle__IndicatorDef *msg, char ***axes_p);

#endif
