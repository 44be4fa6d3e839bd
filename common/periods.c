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

static void period_format(period_kind_t kind, const period_t *p, char out[PERIOD_KEY_LEN])
{
    /* The ranges, for the compiler as for the reader: years 0-9999. */
    unsigned year = (unsigned)p->year % 10000u, index = (unsigned)p->index % 100u;
    switch (kind) {
    case PERIOD_DAY:
        date_format(p->day, out);
        break;
    case PERIOD_MONTH:
        snprintf(out, PERIOD_KEY_LEN, "%04u-%02u", year, index);
        break;
    case PERIOD_QUARTER:
        snprintf(out, PERIOD_KEY_LEN, "%04u-Q%u", year, index % 10u);
        break;
    default:
        snprintf(out, PERIOD_KEY_LEN, "%04u", year);
        break;
    }
}

void period_key(period_kind_t kind, int64_t utc_ms, char out[PERIOD_KEY_LEN])
{
    /* Floor division: an instant before 1970 stays in its own second. */
    time_t utc = (time_t)(utc_ms >= 0 ? utc_ms / 1000 : -((-utc_ms + 999) / 1000));
    time_t local = utc + time_paris_offset_s(utc);
    struct tm tm;
    gmtime_r(&local, &tm);
    period_t p = {
        .year = tm.tm_year + 1900,
        .index = kind == PERIOD_QUARTER ? tm.tm_mon / 3 + 1 : tm.tm_mon + 1,
        .day = {tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday},
    };
    period_format(kind, &p, out);
}

static bool period_parse(period_kind_t kind, const char *key, period_t *out)
{
    if (!key)
        return false;
    int year = 0, index = 0, used = 0;
    switch (kind) {
    case PERIOD_DAY:
        if (!date_parse(key, &out->day))
            return false;
        out->year = out->day.year;
        return true;
    case PERIOD_MONTH:
        if (strlen(key) != 7 || sscanf(key, "%4d-%2d%n", &year, &index, &used) != 2 || used != 7 ||
            key[4] != '-' || index < 1 || index > 12)
            return false;
        break;
    case PERIOD_QUARTER:
        if (strlen(key) != 7 || sscanf(key, "%4d-Q%1d%n", &year, &index, &used) != 2 || used != 7 ||
            index < 1 || index > 4)
            return false;
        break;
    case PERIOD_YEAR:
        if (strlen(key) != 4 || sscanf(key, "%4d%n", &year, &used) != 1 || used != 4)
            return false;
        break;
    default:
        return false;
    }
    for (const char *p = key; *p; p++)
        if (!((*p >= '0' && *p <= '9') || *p == '-' || *p == 'Q'))
            return false;
    if (year < 1900 || year > 9999)
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
    case PERIOD_DAY: {
        /* Noon UTC of the day, plus a day: clear of any clock change. */
        struct tm tm = {.tm_year = p.day.year - 1900,
                        .tm_mon = p.day.month - 1,
                        .tm_mday = p.day.day + 1,
                        .tm_hour = 12};
        time_t t = timegm(&tm);
        struct tm next;
        gmtime_r(&t, &next);
        p.day = (date_t){next.tm_year + 1900, next.tm_mon + 1, next.tm_mday};
        p.year = p.day.year;
        break;
    }
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
