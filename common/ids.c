/* Identifiers, times and dates; see ids.h. */
#include "ids.h"

#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>

static const char crockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/* Monotonic ULIDs: within one millisecond the random part is incremented, so
 * two ids made by this process in the same millisecond keep their order. */
static pthread_mutex_t id_lock = PTHREAD_MUTEX_INITIALIZER;
static int64_t id_last_ms;
static uint8_t id_last_random[10];

void id_new(char prefix, char out[ID_LEN])
{
    int64_t now = time_now_ms();
    uint8_t random[10];
    pthread_mutex_lock(&id_lock);
    if (now <= id_last_ms) {
        now = id_last_ms;
        for (int i = 9; i >= 0; i--)
            if (++id_last_random[i] != 0)
                break;
    } else {
        id_last_ms = now;
        randombytes_buf(id_last_random, sizeof id_last_random);
        id_last_random[0] &= 0x7f; /* room to increment */
    }
    memcpy(random, id_last_random, sizeof random);
    pthread_mutex_unlock(&id_lock);

    /* 128 bits: 48 of time then 80 of randomness, as 26 base32 digits
     * (the first digit carries only 3 bits). */
    uint8_t bytes[16];
    for (int i = 0; i < 6; i++)
        bytes[i] = (uint8_t)((uint64_t)now >> (8 * (5 - i)));
    memcpy(bytes + 6, random, 10);
    out[0] = prefix;
    for (int digit = 0; digit < ULID_LEN; digit++) {
        int bit = 128 - 5 * (ULID_LEN - digit); /* may be negative for digit 0 */
        int value = 0;
        for (int b = 0; b < 5; b++) {
            int pos = bit + b;
            value <<= 1;
            if (pos >= 0)
                value |= (bytes[pos / 8] >> (7 - pos % 8)) & 1;
        }
        out[1 + digit] = crockford[value];
    }
    out[1 + ULID_LEN] = '\0';
}

bool id_valid(char prefix, const char *s)
{
    if (!s || s[0] != prefix || strlen(s) != 1 + ULID_LEN)
        return false;
    if (s[1] > '7')
        return false;
    for (int i = 1; i <= ULID_LEN; i++)
        if (!strchr(crockford, s[i]))
            return false;
    return true;
}

int64_t time_now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

void time_rfc3339(int64_t epoch_ms, char out[TIME_RFC3339_LEN])
{
    if (epoch_ms < 0) /* before 1970: not a time this system records */
        epoch_ms = 0;
    time_t secs = (time_t)(epoch_ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char text[64]; /* roomy enough for any int, which the compiler cannot rule out */
    snprintf(text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(epoch_ms % 1000));
    memcpy(out, text, TIME_RFC3339_LEN - 1);
    out[TIME_RFC3339_LEN - 1] = '\0';
}

void time_now_rfc3339(char out[TIME_RFC3339_LEN])
{
    time_rfc3339(time_now_ms(), out);
}

static bool is_leap(int year)
{
    return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
}

static int days_in_month(int year, int month)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return month == 2 && is_leap(year) ? 29 : days[month - 1];
}

/* Day of the week, 0 = Sunday (Sakamoto's method). */
static int weekday(int year, int month, int day)
{
    static const int t[] = {0, 3, 2, 5, 0, 3, 5, 1, 4, 6, 2, 4};
    if (month < 3)
        year--;
    return (year + year / 4 - year / 100 + year / 400 + t[month - 1] + day) % 7;
}

static int last_sunday(int year, int month)
{
    int day = days_in_month(year, month);
    return day - weekday(year, month, day);
}

int time_paris_offset_s(time_t utc)
{
    struct tm tm;
    gmtime_r(&utc, &tm);
    int year = tm.tm_year + 1900;
    struct tm start = {
        .tm_year = year - 1900, .tm_mon = 2, .tm_mday = last_sunday(year, 3), .tm_hour = 1};
    struct tm end = {
        .tm_year = year - 1900, .tm_mon = 9, .tm_mday = last_sunday(year, 10), .tm_hour = 1};
    time_t summer_from = timegm(&start), summer_until = timegm(&end);
    return utc >= summer_from && utc < summer_until ? 7200 : 3600;
}

bool date_parse(const char *s, date_t *out)
{
    if (!s || strlen(s) != 10 || s[4] != '-' || s[7] != '-')
        return false;
    for (int i = 0; i < 10; i++)
        if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9'))
            return false;
    date_t d;
    d.year = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
    d.month = (s[5] - '0') * 10 + (s[6] - '0');
    d.day = (s[8] - '0') * 10 + (s[9] - '0');
    if (d.year < 1900 || d.month < 1 || d.month > 12 || d.day < 1 ||
        d.day > days_in_month(d.year, d.month))
        return false;
    *out = d;
    return true;
}

void date_format(date_t d, char out[DATE_LEN])
{
    snprintf(out, DATE_LEN, "%04u-%02u-%02u", (unsigned)d.year % 10000u, (unsigned)d.month % 100u,
             (unsigned)d.day % 100u);
}

date_t date_today_paris(void)
{
    time_t now = time(NULL);
    time_t local = now + time_paris_offset_s(now);
    struct tm tm;
    gmtime_r(&local, &tm);
    return (date_t){tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday};
}

date_t date_add_years(date_t d, int years)
{
    d.year += years;
    if (d.month == 2 && d.day == 29 && !is_leap(d.year))
        d.day = 28;
    return d;
}

int date_compare(date_t a, date_t b)
{
    if (a.year != b.year)
        return a.year < b.year ? -1 : 1;
    if (a.month != b.month)
        return a.month < b.month ? -1 : 1;
    if (a.day != b.day)
        return a.day < b.day ? -1 : 1;
    return 0;
}

bool time_parse_rfc3339(const char *text, int64_t *epoch_ms)
{
    int year, month, day, hour, minute, second, used = 0;
    if (!text || sscanf(text, "%4d-%2d-%2dT%2d:%2d:%2d%n", &year, &month, &day, &hour, &minute,
                        &second, &used) != 6)
        return false;
    const char *rest = text + used;
    int64_t fraction_ms = 0;
    if (*rest == '.') {
        int digits = 0;
        for (rest++; *rest >= '0' && *rest <= '9'; rest++, digits++)
            if (digits < 3)
                fraction_ms = fraction_ms * 10 + (*rest - '0');
        for (; digits < 3; digits++)
            fraction_ms *= 10;
    }
    if (strcmp(rest, "Z") != 0 || month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 ||
        minute > 59 || second > 60)
        return false;
    struct tm tm = {.tm_year = year - 1900,
                    .tm_mon = month - 1,
                    .tm_mday = day,
                    .tm_hour = hour,
                    .tm_min = minute,
                    .tm_sec = second};
    *epoch_ms = (int64_t)timegm(&tm) * 1000 + fraction_ms;
    return true;
}
