/* Identifiers, times and dates. The Europe/Paris rule is checked against
 * the system's time-zone database where there is one. */
#include "ids.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char crockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/* The 48-bit millisecond time of a ULID: its first ten base32 digits. */
static int64_t ulid_time_ms(const char *ulid)
{
    int64_t ms = 0;
    for (int i = 0; i < 10; i++) {
        const char *digit = strchr(crockford, ulid[i]);
        assert_non_null(digit);
        ms = ms * 32 + (digit - crockford);
    }
    return ms;
}

static void test_id_shape(void **state)
{
    (void)state;
    const char prefixes[] = {'U', 'C', 'R', 'E'};
    for (size_t p = 0; p < sizeof prefixes; p++) {
        char id[ID_LEN];
        int64_t before = time_now_ms();
        id_new(prefixes[p], id);
        int64_t after = time_now_ms();
        assert_int_equal(strlen(id), ID_LEN - 1);
        assert_int_equal(id[0], prefixes[p]);
        assert_true(id_valid(prefixes[p], id));
        for (size_t q = 0; q < sizeof prefixes; q++)
            if (q != p)
                assert_false(id_valid(prefixes[q], id));
        /* Created within the call, or at most a little after an earlier id
         * of the same millisecond (monotonic ordering). */
        int64_t t = ulid_time_ms(id + 1);
        assert_true(t >= before - 1000 && t <= after);
    }
}

static void test_ids_sort_in_creation_order(void **state)
{
    (void)state;
    enum { N = 20000 };
    char(*ids)[ID_LEN] = malloc(sizeof *ids * N);
    assert_non_null(ids);
    for (int i = 0; i < N; i++)
        id_new('U', ids[i]);
    for (int i = 1; i < N; i++)
        if (strcmp(ids[i - 1], ids[i]) >= 0)
            fail_msg("%s then %s", ids[i - 1], ids[i]);
    free(ids);
}

static void test_id_valid_refuses(void **state)
{
    (void)state;
    char id[ID_LEN];
    id_new('U', id);
    assert_false(id_valid('U', NULL));
    assert_false(id_valid('U', ""));
    assert_false(id_valid('U', "U"));
    assert_false(id_valid('U', id + 1)); /* no prefix */
    char longer[ID_LEN + 1];
    snprintf(longer, sizeof longer, "%sA", id);
    assert_false(id_valid('U', longer));
    id[ID_LEN - 2] = '\0';
    assert_false(id_valid('U', id)); /* one digit short */
    assert_true(id_valid('U', "U01JDV00000000000000000000A"));
    assert_true(id_valid('U', "U7ZZZZZZZZZZZZZZZZZZZZZZZZZ"));  /* the largest ULID */
    assert_false(id_valid('U', "U8ZZZZZZZZZZZZZZZZZZZZZZZZZ")); /* more than 128 bits */
    const char *letters = "ILOU";                               /* not in Crockford's set */
    for (int i = 0; letters[i]; i++) {
        char bad[ID_LEN] = "U01JDV00000000000000000000A";
        bad[10] = letters[i];
        assert_false(id_valid('U', bad));
    }
    assert_false(id_valid('U', "U01jdv00000000000000000000a"));
    assert_false(id_valid('U', "U01JDV000000000000000000 0A"));
}

static void test_rfc3339(void **state)
{
    (void)state;
    char out[TIME_RFC3339_LEN];
    time_rfc3339(0, out);
    assert_string_equal(out, "1970-01-01T00:00:00.000Z");
    time_rfc3339(1795860000123LL, out);
    assert_string_equal(out, "2026-11-28T10:00:00.123Z");
    time_rfc3339(951782400999LL, out); /* leap day */
    assert_string_equal(out, "2000-02-29T00:00:00.999Z");
    time_rfc3339(253402300799000LL, out);
    assert_string_equal(out, "9999-12-31T23:59:59.000Z");
    time_now_rfc3339(out);
    assert_int_equal(strlen(out), TIME_RFC3339_LEN - 1);
    assert_int_equal(out[10], 'T');
    assert_int_equal(out[TIME_RFC3339_LEN - 2], 'Z');
}

static time_t utc(int year, int month, int day, int hour, int minute, int second)
{
    struct tm tm = {.tm_year = year - 1900,
                    .tm_mon = month - 1,
                    .tm_mday = day,
                    .tm_hour = hour,
                    .tm_min = minute,
                    .tm_sec = second};
    return timegm(&tm);
}

static void test_paris_offset_transitions(void **state)
{
    (void)state;
    /* 2026: last Sundays are 29 March and 25 October, changes at 01:00 UTC. */
    assert_int_equal(time_paris_offset_s(utc(2026, 1, 15, 12, 0, 0)), 3600);
    assert_int_equal(time_paris_offset_s(utc(2026, 3, 29, 0, 59, 59)), 3600);
    assert_int_equal(time_paris_offset_s(utc(2026, 3, 29, 1, 0, 0)), 7200);
    assert_int_equal(time_paris_offset_s(utc(2026, 7, 14, 12, 0, 0)), 7200);
    assert_int_equal(time_paris_offset_s(utc(2026, 10, 25, 0, 59, 59)), 7200);
    assert_int_equal(time_paris_offset_s(utc(2026, 10, 25, 1, 0, 0)), 3600);
    assert_int_equal(time_paris_offset_s(utc(2026, 12, 31, 23, 59, 59)), 3600);
    /* 2027: 28 March and 31 October (a month ending on a Sunday). */
    assert_int_equal(time_paris_offset_s(utc(2027, 3, 28, 1, 0, 0)), 7200);
    assert_int_equal(time_paris_offset_s(utc(2027, 3, 21, 1, 0, 0)), 3600);
    assert_int_equal(time_paris_offset_s(utc(2027, 10, 31, 0, 59, 59)), 7200);
    assert_int_equal(time_paris_offset_s(utc(2027, 10, 31, 1, 0, 0)), 3600);
}

/* Hour by hour over 2000-2037, the rule agrees with the tz database. */
static void test_paris_offset_matches_tzdata(void **state)
{
    (void)state;
    if (access("/usr/share/zoneinfo/Europe/Paris", R_OK) != 0)
        skip();
    char *old_tz = getenv("TZ") ? strdup(getenv("TZ")) : NULL;
    setenv("TZ", "Europe/Paris", 1);
    tzset();
    for (time_t t = utc(2000, 1, 1, 0, 30, 0); t < utc(2037, 12, 31, 0, 0, 0); t += 3600) {
        struct tm local;
        localtime_r(&t, &local);
        if (time_paris_offset_s(t) != local.tm_gmtoff)
            fail_msg("at %lld: %d, tzdata says %ld", (long long)t, time_paris_offset_s(t),
                     local.tm_gmtoff);
    }
    if (old_tz) {
        setenv("TZ", old_tz, 1);
        free(old_tz);
    } else
        unsetenv("TZ");
    tzset();
}

static void test_date_parse(void **state)
{
    (void)state;
    date_t d;
    assert_true(date_parse("2026-11-29", &d));
    assert_int_equal(d.year, 2026);
    assert_int_equal(d.month, 11);
    assert_int_equal(d.day, 29);
    assert_true(date_parse("2024-02-29", &d));
    assert_true(date_parse("2000-02-29", &d));
    assert_true(date_parse("1900-01-01", &d));
    assert_true(date_parse("9999-12-31", &d));
    const char *bad[] = {
        NULL,          "",           "2025-02-29", "1900-02-29",       "2026-13-01",
        "2026-00-10",  "2026-04-31", "2026-01-00", "1899-12-31",       "2026-1-01",
        "2026-01-1",   "26-01-01",   "2026/01/01", "2026-01-01T00:00", " 2026-01-01",
        "2026-01-01 ", "2026-0a-01", "+026-01-01", "2026--1-01"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        d = (date_t){1, 2, 3};
        if (date_parse(bad[i], &d))
            fail_msg("accepted \"%s\"", bad[i]);
        assert_int_equal(d.year, 1); /* untouched on failure */
    }
}

static void test_date_format_and_arithmetic(void **state)
{
    (void)state;
    char out[DATE_LEN];
    date_format((date_t){2026, 3, 7}, out);
    assert_string_equal(out, "2026-03-07");
    date_t d;
    assert_true(date_parse("2031-12-05", &d));
    date_format(d, out);
    assert_string_equal(out, "2031-12-05");

    date_t leap = {2024, 2, 29};
    date_t next = date_add_years(leap, 1);
    assert_int_equal(next.year, 2025);
    assert_int_equal(next.month, 2);
    assert_int_equal(next.day, 28);
    next = date_add_years(leap, 4);
    assert_int_equal(next.day, 29);
    next = date_add_years((date_t){2026, 12, 15}, 9);
    date_format(next, out);
    assert_string_equal(out, "2035-12-15");
    next = date_add_years((date_t){2026, 6, 30}, -6);
    date_format(next, out);
    assert_string_equal(out, "2020-06-30");

    assert_int_equal(date_compare((date_t){2026, 1, 1}, (date_t){2026, 1, 1}), 0);
    assert_true(date_compare((date_t){2025, 12, 31}, (date_t){2026, 1, 1}) < 0);
    assert_true(date_compare((date_t){2026, 2, 1}, (date_t){2026, 1, 31}) > 0);
    assert_true(date_compare((date_t){2026, 1, 2}, (date_t){2026, 1, 1}) > 0);
    assert_true(date_compare((date_t){2026, 1, 1}, (date_t){2026, 1, 2}) < 0);
}

static void test_today_paris(void **state)
{
    (void)state;
    date_t today = date_today_paris();
    char out[DATE_LEN], again[DATE_LEN];
    date_format(today, out);
    assert_true(date_parse(out, &today));
    if (access("/usr/share/zoneinfo/Europe/Paris", R_OK) != 0)
        skip();
    char *old_tz = getenv("TZ") ? strdup(getenv("TZ")) : NULL;
    setenv("TZ", "Europe/Paris", 1);
    tzset();
    /* Twice, in case midnight passes between the two readings. */
    for (int attempt = 0; attempt < 2; attempt++) {
        date_format(date_today_paris(), out);
        time_t now = time(NULL);
        struct tm local;
        localtime_r(&now, &local);
        strftime(again, sizeof again, "%Y-%m-%d", &local);
        if (strcmp(out, again) == 0)
            break;
    }
    assert_string_equal(out, again);
    if (old_tz) {
        setenv("TZ", old_tz, 1);
        free(old_tz);
    } else
        unsetenv("TZ");
    tzset();
}

/* What time_rfc3339 writes parses back to the same millisecond; a missing
 * or longer fraction is accepted, anything but UTC is not. */
static void test_time_parse_rfc3339(void **state)
{
    (void)state;
    int64_t samples[] = {0, 1764410400123, 1711846800000, 253402300799999};
    for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++) {
        char text[TIME_RFC3339_LEN];
        time_rfc3339(samples[i], text);
        int64_t back = -1;
        assert_true(time_parse_rfc3339(text, &back));
        assert_int_equal(back, samples[i]);
    }
    int64_t ms = 0;
    assert_true(time_parse_rfc3339("2026-11-29T10:00:00Z", &ms));
    assert_int_equal(ms, 1795946400000);
    assert_true(time_parse_rfc3339("2026-11-29T10:00:00.5Z", &ms));
    assert_int_equal(ms, 1795946400500);
    assert_true(time_parse_rfc3339("2026-11-29T10:00:00.123456Z", &ms));
    assert_int_equal(ms, 1795946400123);
    /* A leap second is the next minute's first, as timegm reads it; a
     * time before 1970 is negative. */
    assert_true(time_parse_rfc3339("2016-12-31T23:59:60Z", &ms));
    assert_int_equal(ms, 1483228800000);
    assert_true(time_parse_rfc3339("1969-12-31T23:59:59.250Z", &ms));
    assert_int_equal(ms, -750);
    const char *bad[] = {NULL, "", "2026-11-29", "2026-11-29T10:00:00", "2026-11-29T10:00:00+01:00",
                         "2026-13-01T00:00:00Z", "2026-11-29T24:00:00Z", "2026-11-29T10:00:00Zjunk",
                         /* fixed positions, real days, a fraction with digits */
                         "2026-02-29T10:00:00Z", "2026-04-31T10:00:00Z", "2026-00-10T10:00:00Z",
                         "2026-11-00T10:00:00Z", "2026-1-29T10:00:00Z", "2026-11-29T1:00:00Z",
                         " 2026-11-29T10:00:00Z", "+026-11-29T10:00:00Z", "2026-11-29t10:00:00Z",
                         "2026-11-29T10:00:00z", "2026-11-29T10:00:00.Z", "2026-11-29T10:60:00Z",
                         "2026-11-29T10:00:61Z", "2026-11-29T10:00", "2026-11-29T10:00:0"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ms = 42;
        if (time_parse_rfc3339(bad[i], &ms))
            fail_msg("accepted \"%s\"", bad[i] ? bad[i] : "(null)");
        assert_int_equal(ms, 42); /* untouched on failure */
    }
}

/* Every six hours and a few seconds from 1901 to 2100, what strftime writes
 * parses back to the instant, as timegm would compute it. */
static void test_time_parse_matches_libc(void **state)
{
    (void)state;
    for (time_t t = -2177452800; t < 4102444800; t += 6 * 3600 + 7) {
        struct tm tm;
        gmtime_r(&t, &tm);
        char text[32];
        strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &tm);
        int64_t ms = 0;
        if (!time_parse_rfc3339(text, &ms) || ms != (int64_t)t * 1000)
            fail_msg("%s: %lld, not %lld", text, (long long)ms, (long long)t * 1000);
    }
}

/* Days since 1970 and back, for every day from 1600 to 2400 (leap
 * centuries both ways), against timegm. */
static void test_days_arithmetic(void **state)
{
    (void)state;
    assert_int_equal(date_to_days((date_t){1970, 1, 1}), 0);
    assert_int_equal(date_to_days((date_t){1969, 12, 31}), -1);
    assert_int_equal(date_to_days((date_t){2000, 3, 1}), 11017);
    int64_t expected = date_to_days((date_t){1600, 1, 1});
    for (int year = 1600; year <= 2400; year++)
        for (int month = 1; month <= 12; month++)
            for (int day = 1; day <= 31; day++) {
                struct tm tm = {.tm_year = year - 1900, .tm_mon = month - 1, .tm_mday = day};
                time_t t = timegm(&tm);
                if (tm.tm_mday != day) /* no such day: timegm moved on */
                    continue;
                int64_t days = date_to_days((date_t){year, month, day});
                if (days != (int64_t)t / 86400 || days != expected)
                    fail_msg("%04d-%02d-%02d: %lld", year, month, day, (long long)days);
                date_t back = date_from_days(days);
                if (back.year != year || back.month != month || back.day != day)
                    fail_msg("%lld: %04d-%02d-%02d", (long long)days, back.year, back.month,
                             back.day);
                expected++;
            }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_id_shape),
        cmocka_unit_test(test_ids_sort_in_creation_order),
        cmocka_unit_test(test_id_valid_refuses),
        cmocka_unit_test(test_rfc3339),
        cmocka_unit_test(test_paris_offset_transitions),
        cmocka_unit_test(test_paris_offset_matches_tzdata),
        cmocka_unit_test(test_date_parse),
        cmocka_unit_test(test_date_format_and_arithmetic),
        cmocka_unit_test(test_today_paris),
        cmocka_unit_test(test_time_parse_rfc3339),
        cmocka_unit_test(test_time_parse_matches_libc),
        cmocka_unit_test(test_days_arithmetic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
