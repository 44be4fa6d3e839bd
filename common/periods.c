/* Calendar periods in Europe/Paris local time (periods.h). */
#include "periods.h"

#include "ids.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static const char *const kind_names[PERIOD_KINDS] = {"day", "month", "quarter", "year"};

bool period_kind_parse(const char *text, period_kind_t *out)
{
    for (int i = 0; text && i < PERIOD_KINDS; i++)
        if (strcasecmp(text, kind_names[i]) == 0) {
            *out = (period_kind_t)i;
            return true;
        }
    return false;
}

const char *period_kind_name(period_kind_t kind)
{
    return kind >= 0 && kind < PERIOD_KINDS ? kind_names[kind] : "?";
}

/* A period read from its key: a year, and the month or quarter in it, or
 * the day. */
typedef struct {
    int year;
    int index; /* month 1-12, quarter 1-4; 0 for years */
    date_t day;
} period_t;

/* Writes the n last decimal digits of value at out, zero-padded. */
static void put_digits(char *out, unsigned value, int n)
{
    for (int i = n - 1; i >= 0; i--) {
        out[i] = (char)('0' + value % 10u);
        value /= 10u;
    }
}

/* Keys are written by hand, not with snprintf: a rebuild writes them for
 * every counter an event moves. */
static void period_format(period_kind_t kind, const period_t *p, char out[PERIOD_KEY_LEN])
{
    /* The ranges, for the compiler as for the reader: years 0-9999. */
    unsigned year = (unsigned)p->year % 10000u, index = (unsigned)p->index % 100u;
    put_digits(out, kind == PERIOD_DAY ? (unsigned)p->day.year % 10000u : year, 4);
    switch (kind) {
    case PERIOD_DAY:
        out[4] = '-';
        put_digits(out + 5, (unsigned)p->day.month % 100u, 2);
        out[7] = '-';
        put_digits(out + 8, (unsigned)p->day.day % 100u, 2);
        out[10] = '\0';
        break;
    case PERIOD_MONTH:
        out[4] = '-';
        put_digits(out + 5, index, 2);
        out[7] = '\0';
        break;
    case PERIOD_QUARTER:
        out[4] = '-';
        out[5] = 'Q';
        out[6] = (char)('0' + index % 10u);
        out[7] = '\0';
        break;
    default:
        out[4] = '\0';
        break;
    }
}

/* Floor division: instants before 1970 stay in their own second and day. */
static int64_t floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

int64_t period_local_day(int64_t utc_ms)
{
    /* The offset is the same all day long but on the two days a year the
     * clocks change: each thread keeps the last UTC day it met with one
     * offset throughout, since a rebuild asks for the events of one day
     * after another. */
    static _Thread_local int64_t steady_day = INT64_MIN;
    static _Thread_local int steady_offset_s;
    int64_t utc = floor_div(utc_ms, 1000), utc_day = floor_div(utc, 86400);
    int offset_s;
    if (utc_day == steady_day) {
        offset_s = steady_offset_s;
    } else {
        offset_s = time_paris_offset_s((time_t)utc);
        time_t first = (time_t)(utc_day * 86400), last = first + 86399;
        if (time_paris_offset_s(first) == offset_s && time_paris_offset_s(last) == offset_s) {
            steady_day = utc_day;
            steady_offset_s = offset_s;
        }
    }
    return floor_div(utc + offset_s, 86400);
}

void period_key(period_kind_t kind, int64_t utc_ms, char out[PERIOD_KEY_LEN])
{
    date_t day = date_from_days(period_local_day(utc_ms));
    period_t p = {
        .year = day.year,
        .index = kind == PERIOD_QUARTER ? (day.month - 1) / 3 + 1 : day.month,
        .day = day,
    };
    period_format(kind, &p, out);
}

/* The value of the n digits at s, or -1 if one is not a digit (a NUL
 * ends the reading there). */
static int key_digits(const char *s, int n)
{
    int value = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        value = value * 10 + (s[i] - '0');
    }
    return value;
}

/* Reads a key of the kind at its fixed positions, the whole key and
 * nothing more. */
static bool period_parse(period_kind_t kind, const char *key, period_t *out)
{
    if (!key)
        return false;
    int year = key_digits(key, 4), index = 0;
    if (year < 0)
        return false;
    switch (kind) {
    case PERIOD_DAY:
        if (!date_parse(key, &out->day))
            return false;
        out->year = out->day.year;
        return true;
    case PERIOD_MONTH:
        if (key[4] != '-' || (index = key_digits(key + 5, 2)) < 1 || index > 12 || key[7] != '\0')
            return false;
        break;
    case PERIOD_QUARTER:
        if (key[4] != '-' || key[5] != 'Q' || (index = key_digits(key + 6, 1)) < 1 || index > 4 ||
            key[7] != '\0')
            return false;
        break;
    case PERIOD_YEAR:
        if (key[4] != '\0')
            return false;
        break;
    default:
        return false;
    }
    if (year < 1900)
        return false;
    out->year = year;
    out->index = index;
    return true;
}

bool period_key_valid(period_kind_t kind, const char *key)
{
    period_t p;
    return period_parse(kind, key, &p);
}

bool period_next(period_kind_t kind, const char *key, char out[PERIOD_KEY_LEN])
{
    period_t p;
    if (!period_parse(kind, key, &p))
        return false;
    switch (kind) {
    case PERIOD_DAY:
        p.day = date_from_days(date_to_days(p.day) + 1);
        p.year = p.day.year;
        break;
    case PERIOD_MONTH:
    case PERIOD_QUARTER:
        if (++p.index > (kind == PERIOD_MONTH ? 12 : 4)) {
            p.index = 1;
            p.year++;
        }
        break;
    default:
        p.year++;
        break;
    }
    if (p.year > 9999)
        return false;
    period_format(kind, &p, out);
    return true;
}

long period_series(period_kind_t kind, const char *first, const char *last,
                   char (*keys)[PERIOD_KEY_LEN], size_t max)
{
    if (!period_key_valid(kind, first) || !period_key_valid(kind, last) || strcmp(first, last) > 0)
        return -1;
    char at[PERIOD_KEY_LEN];
    snprintf(at, sizeof at, "%s", first);
    size_t n = 0;
    while (true) {
        if (n == max)
            return -1;
        snprintf(keys[n++], PERIOD_KEY_LEN, "%s", at);
        if (strcmp(at, last) == 0)
            return (long)n;
        if (!period_next(kind, at, at))
            return -1;
    }
}
