/* Calendar periods in Europe/Paris local time: the day, month, quarter and
 * year an instant falls in, as the keys figures are counted under, and the
 * series of keys between two of them.
 *
 * Figures follow the Métropole's calendar, not UTC: an event at 23:30 UTC
 * on 31 March 2026 happened at 01:30 on 1 April in Marseille, and counts in
 * April and in the second quarter. Local time comes from ids.h's EU
 * summer-time rule, so no time-zone database is needed.
 *
 * Keys sort as text in time order within a kind:
 *   day "2026-04-01", month "2026-04", quarter "2026-Q2", year "2026". */
#ifndef PASSERELLE_PERIODS_H
#define PASSERELLE_PERIODS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    PERIOD_DAY,
    PERIOD_MONTH,
    PERIOD_QUARTER,
    PERIOD_YEAR,
} period_kind_t;

#define PERIOD_KINDS   4
#define PERIOD_KEY_LEN 11 /* "2026-04-01" + NUL */

/* "day", "month", "quarter", "year" (any case); false for anything else. */
bool period_kind_parse(const char *text, period_kind_t *out);
const char *period_kind_name(period_kind_t kind);

/* The key of the period of this kind that the instant (UTC, ms since the
 * epoch) falls in, in Europe/Paris local time. */
void period_key(period_kind_t kind, int64_t utc_ms, char out[PERIOD_KEY_LEN]);

/* The Europe/Paris day the instant (UTC, ms since the epoch) falls in, as
 * days since 1970-01-01 (date_from_days, ids.h, gives its date): the day
 * period_key reads every key of the instant from. */
int64_t period_local_day(int64_t utc_ms);

/* True if key is a well-formed key of the kind (a real calendar day for
 * days; years 1900-9999). */
bool period_key_valid(period_kind_t kind, const char *key);

/* The key after key (same kind): "2026-12" -> "2027-01", "2026-Q4" ->
 * "2027-Q1". False if key is not valid or the next is past 9999. */
bool period_next(period_kind_t kind, const char *key, char out[PERIOD_KEY_LEN]);

/* The keys from first to last inclusive, in order, into keys (at most max);
 * returns how many, or -1 if a key is invalid, last is before first, or
 * there would be more than max. */
long period_series(period_kind_t kind, const char *first, const char *last,
                   char (*keys)[PERIOD_KEY_LEN], size_t max);

#endif
