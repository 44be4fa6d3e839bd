/* Identifiers, times and calendar dates.
 *
 * Identifiers are ULIDs (48-bit millisecond time + 80 random bits, Crockford
 * base32, 26 characters) behind a one-letter kind prefix: "U01JDV...". They
 * sort by creation time, which is what listings and pagination rely on.
 *
 * Dates are civil dates "YYYY-MM-DD". "Today" is today in Europe/Paris,
 * computed from the EU summer-time rule (last Sunday of March to last Sunday
 * of October, changes at 01:00 UTC) so no time-zone database is needed. */
#ifndef PASSERELLE_IDS_H
#define PASSERELLE_IDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define ULID_LEN         26
#define ID_LEN           (1 + ULID_LEN + 1) /* prefix + ULID + NUL */
#define TIME_RFC3339_LEN 25                 /* 2026-11-29T10:00:00.123Z + NUL */
#define DATE_LEN         11                 /* 2026-11-29 + NUL */

/* Writes prefix + a new ULID + NUL into out (ID_LEN bytes). Identifiers made
 * in the same millisecond by one process still sort in creation order. */
void id_new(char prefix, char out[ID_LEN]);

/* True if s is prefix followed by a well-formed ULID. */
bool id_valid(char prefix, const char *s);

int64_t time_now_ms(void);

/* UTC time with milliseconds, e.g. "2026-11-29T10:00:00.123Z". */
void time_rfc3339(int64_t epoch_ms, char out[TIME_RFC3339_LEN]);
void time_now_rfc3339(char out[TIME_RFC3339_LEN]);
/* Parses what time_rfc3339 writes ("2026-11-29T10:00:00.123Z"; the
 * fraction may be absent or of any length); UTC ("Z") only. */
bool time_parse_rfc3339(const char *text, int64_t *epoch_ms);

/* Offset of Europe/Paris from UTC at that instant: 3600 or 7200. */
int time_paris_offset_s(time_t utc);

typedef struct {
    int year, month, day; /* month 1-12, day 1-31 */
} date_t;

/* Parses "YYYY-MM-DD" (a real calendar date, years 1900-9999). */
bool date_parse(const char *s, date_t *out);
void date_format(date_t d, char out[DATE_LEN]);
/* Today in Europe/Paris. */
date_t date_today_paris(void);
/* The same day n years later; 29 February becomes 28 February. */
date_t date_add_years(date_t d, int years);
/* How many days month (1-12) of year has, leap years counted; 0 for a
 * month out of range. */
int date_days_in_month(int year, int month);
/* <0, 0, >0 as a is before, equal to, after b. */
int date_compare(date_t a, date_t b);
/* Days from 1970-01-01 to d (proleptic Gregorian; negative before), and
 * back: plain arithmetic, for callers that must not take the C library's
 * time-zone lock (gmtime_r, timegm) once per event. */
int64_t date_to_days(date_t d);
date_t date_from_days(int64_t days);

#endif
