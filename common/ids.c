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

int date_days_in_month(int year, int month)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (month < 1 || month > 12)
        return 0;
    return month == 2 && is_leap(year) ? 29 : days[month - 1];
}

/* Floor division: instants before 1970 stay in their own day. */
static int64_t floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

int64_t date_to_days(date_t d)
{
    /* Years counted from March, so that the leap day ends a year; eras of
     * 400 years (146097 days) repeat the calendar exactly. */
    int64_t y = (int64_t)d.year - (d.month <= 2);
    int64_t era = floor_div(y, 400);
    int64_t year_of_era = y - era * 400;
    int64_t month_from_march = (d.month + 9) % 12;
    int64_t day_of_year = (153 * month_from_march + 2) / 5 + d.day - 1;
    int64_t day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    return era * 146097 + day_of_era - 719468; /* 719468: 0000-03-01 to 1970-01-01 */
}

date_t date_from_days(int64_t days)
{
    int64_t z = days + 719468;
    int64_t era = floor_div(z, 146097);
    int64_t day_of_era = z - era * 146097;
    int64_t year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36524 - day_of_era / 146096) / 365;
    int64_t day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    int64_t month_from_march = (5 * day_of_year + 2) / 153;
    int day = (int)(day_of_year - (153 * month_from_march + 2) / 5 + 1);
    int month = (int)(month_from_march < 10 ? month_from_march + 3 : month_from_march - 9);
    return (date_t){(int)(year_of_era + era * 400 + (month <= 2)), month, day};
}

/* The instant (UTC seconds) summer time starts (month 3) or ends (month
 * 10) in year: the month's last Sunday at 01:00 UTC. 1970-01-01 was a
 * Thursday, so day n is a Sunday when (n + 4) % 7 is 0. */
static int64_t summer_change_s(int year, int month)
{
    int64_t last = date_to_days((date_t){year, month, 31});
    int64_t sunday = last - (last + 4 - floor_div(last + 4, 7) * 7);
    return sunday * 86400 + 3600;
}

int time_paris_offset_s(time_t utc)
{
    /* Plain arithmetic rather than gmtime_r and timegm: a rebuild asks this
     * for a million events, and glibc takes a process-wide lock in both. */
    int year = date_from_days(floor_div((int64_t)utc, 86400)).year;
    return utc >= summer_change_s(year, 3) && utc < summer_change_s(year, 10) ? 7200 : 3600;
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
        d.day > date_days_in_month(d.year, d.month))
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
    return date_from_days(floor_div((int64_t)now + time_paris_offset_s(now), 86400));
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

/* The value of the n digits at s, or -1 if one is not a digit (the NUL
 * ending a short text is not, so nothing past it is read). */
static int fixed_digits(const char *s, int n)
{
    int value = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        value = value * 10 + (s[i] - '0');
    }
    return value;
}

bool time_parse_rfc3339(const char *text, int64_t *epoch_ms)
{
    /* Fixed positions, read by hand: events carry their time as text and a
     * rebuild parses a million of them (sscanf and timegm cost more than
     * the rest of an event's counting). "YYYY-MM-DDTHH:MM:SS". */
    if (!text)
        return false;
    int year = fixed_digits(text, 4);
    if (year < 0 || text[4] != '-')
        return false;
    int month = fixed_digits(text + 5, 2);
    if (month < 0 || text[7] != '-')
        return false;
    int day = fixed_digits(text + 8, 2);
    if (day < 0 || text[10] != 'T')
        return false;
    int hour = fixed_digits(text + 11, 2);
    if (hour < 0 || text[13] != ':')
        return false;
    int minute = fixed_digits(text + 14, 2);
    if (minute < 0 || text[16] != ':')
        return false;
    int second = fixed_digits(text + 17, 2);
    if (second < 0)
        return false;
    const char *rest = text + 19;
    int64_t fraction_ms = 0;
    if (*rest == '.') {
        int digits = 0;
        for (rest++; *rest >= '0' && *rest <= '9'; rest++, digits++)
            if (digits < 3)
                fraction_ms = fraction_ms * 10 + (*rest - '0');
        if (digits == 0)
            return false;
        for (; digits < 3; digits++)
            fraction_ms *= 10;
    }
    /* A real calendar day; second 60 is a leap second, the next minute's
     * first, as timegm reads it. */
    if (strcmp(rest, "Z") != 0 || month < 1 || month > 12 || day < 1 ||
        day > date_days_in_month(year, month) || hour > 23 || minute > 59 || second > 60)
        return false;
    int64_t seconds =
        date_to_days((date_t){year, month, day}) * 86400 + hour * 3600 + minute * 60 + second;
    *epoch_ms = seconds * 1000 + fraction_ms;
    return true;
}
