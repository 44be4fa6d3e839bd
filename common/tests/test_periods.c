/* Periods in Europe/Paris local time: the boundaries of days, months,
 * quarters and years around both 2026 clock changes and the new year, the
 * keys' syntax, and series across year ends. */
#include "periods.h"

#include "ids.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

static int64_t at(const char *rfc3339)
{
    int64_t ms = 0;
    assert_true(time_parse_rfc3339(rfc3339, &ms));
    return ms;
}

static void expect_keys(const char *utc, const char *day, const char *month, const char *quarter,
                        const char *year)
{
    char key[PERIOD_KEY_LEN];
    int64_t ms = at(utc);
    period_key(PERIOD_DAY, ms, key);
    assert_string_equal(key, day);
    period_key(PERIOD_MONTH, ms, key);
    assert_string_equal(key, month);
    period_key(PERIOD_QUARTER, ms, key);
    assert_string_equal(key, quarter);
    period_key(PERIOD_YEAR, ms, key);
    assert_string_equal(key, year);
}

static void test_local_boundaries(void **state)
{
    (void)state;
    /* Summer time (UTC+2): 23:30 UTC on 31 March is 01:30 on 1 April. */
    expect_keys("2026-03-31T23:30:00Z", "2026-04-01", "2026-04", "2026-Q2", "2026");
    expect_keys("2026-03-31T21:59:59.999Z", "2026-03-31", "2026-03", "2026-Q1", "2026");
    expect_keys("2026-03-31T22:00:00Z", "2026-04-01", "2026-04", "2026-Q2", "2026");
    /* Winter time (UTC+1): the new year begins at 23:00 UTC. */
    expect_keys("2026-12-31T22:59:59Z", "2026-12-31", "2026-12", "2026-Q4", "2026");
    expect_keys("2026-12-31T23:00:00Z", "2027-01-01", "2027-01", "2027-Q1", "2027");
    /* The clock changes: 29 March 2026 at 01:00 UTC (02:00 -> 03:00 local)
     * and 25 October 2026 at 01:00 UTC (03:00 -> 02:00 local). */
    expect_keys("2026-03-28T23:00:00Z", "2026-03-29", "2026-03", "2026-Q1", "2026");
    expect_keys("2026-03-29T21:59:00Z", "2026-03-29", "2026-03", "2026-Q1", "2026");
    expect_keys("2026-03-29T22:00:00Z", "2026-03-30", "2026-03", "2026-Q1", "2026");
    expect_keys("2026-10-24T21:59:00Z", "2026-10-24", "2026-10", "2026-Q4", "2026");
    expect_keys("2026-10-24T22:00:00Z", "2026-10-25", "2026-10", "2026-Q4", "2026");
    expect_keys("2026-10-25T22:59:00Z", "2026-10-25", "2026-10", "2026-Q4", "2026");
    expect_keys("2026-10-25T23:00:00Z", "2026-10-26", "2026-10", "2026-Q4", "2026");
    /* The end of June in summer time: the third quarter starts at 22:00 UTC. */
    expect_keys("2026-06-30T22:00:00Z", "2026-07-01", "2026-07", "2026-Q3", "2026");
}

/* The local day of an instant is the day of its keys, asked in an order
 * that goes through a steady day, each clock change and back (each
 * thread remembers the last steady day it met), and before 1970. */
static void test_local_day(void **state)
{
    (void)state;
    const char *instants[] = {
        "2026-03-28T12:00:00Z", "2026-03-28T22:59:59Z", "2026-03-28T23:00:00Z",
        "2026-03-29T00:30:00Z", "2026-03-29T01:00:00Z", "2026-03-29T21:59:59Z",
        "2026-03-29T22:00:00Z", "2026-03-29T12:00:00Z", "2026-03-28T23:30:00Z",
        "2026-10-24T21:59:59Z", "2026-10-24T22:00:00Z", "2026-10-25T00:59:59Z",
        "2026-10-25T01:00:00Z", "2026-10-25T22:59:59Z", "2026-10-25T23:00:00Z",
        "2026-10-24T23:30:00Z", "2026-06-30T21:59:59Z", "2026-06-30T22:00:00Z",
        "1969-12-31T22:59:59Z", "1969-12-31T23:00:00Z", "1969-12-31T12:00:00Z",
    };
    const char *days[] = {
        "2026-03-28", "2026-03-28", "2026-03-29", "2026-03-29", "2026-03-29", "2026-03-29",
        "2026-03-30", "2026-03-29", "2026-03-29", "2026-10-24", "2026-10-25", "2026-10-25",
        "2026-10-25", "2026-10-25", "2026-10-26", "2026-10-25", "2026-06-30", "2026-07-01",
        "1969-12-31", "1970-01-01", "1969-12-31",
    };
    for (size_t i = 0; i < sizeof instants / sizeof instants[0]; i++) {
        int64_t ms = at(instants[i]);
        char key[PERIOD_KEY_LEN], from_day[DATE_LEN];
        period_key(PERIOD_DAY, ms, key);
        date_format(date_from_days(period_local_day(ms)), from_day);
        if (strcmp(key, days[i]) != 0 || strcmp(from_day, days[i]) != 0)
            fail_msg("%s: key %s, local day %s, not %s", instants[i], key, from_day, days[i]);
    }
    /* Hour by hour over two years, the day's number and its key agree. */
    for (int64_t ms = at("2025-12-31T00:30:00Z"); ms < at("2028-01-01T00:00:00Z");
         ms += 3600 * 1000) {
        char key[PERIOD_KEY_LEN], from_day[DATE_LEN];
        period_key(PERIOD_DAY, ms, key);
        date_format(date_from_days(period_local_day(ms)), from_day);
        assert_string_equal(key, from_day);
    }
}

static void test_kinds_and_keys(void **state)
{
    (void)state;
    period_kind_t kind;
    assert_true(period_kind_parse("Quarter", &kind));
    assert_int_equal(kind, PERIOD_QUARTER);
    assert_false(period_kind_parse("week", &kind));
    assert_false(period_kind_parse(NULL, &kind));
    assert_string_equal(period_kind_name(PERIOD_MONTH), "month");

    assert_true(period_key_valid(PERIOD_DAY, "2028-02-29"));
    assert_false(period_key_valid(PERIOD_DAY, "2026-02-29"));
    assert_true(period_key_valid(PERIOD_MONTH, "2026-12"));
    const char *bad_months[] = {"2026-13", "2026-00", "2026-1", "2026-011", "26-01", "2026/01", ""};
    for (size_t i = 0; i < sizeof bad_months / sizeof bad_months[0]; i++)
        assert_false(period_key_valid(PERIOD_MONTH, bad_months[i]));
    assert_true(period_key_valid(PERIOD_QUARTER, "2026-Q4"));
    assert_false(period_key_valid(PERIOD_QUARTER, "2026-Q5"));
    assert_false(period_key_valid(PERIOD_QUARTER, "2026-Q0"));
    assert_true(period_key_valid(PERIOD_YEAR, "2026"));
    assert_false(period_key_valid(PERIOD_YEAR, "1899"));
    assert_false(period_key_valid(PERIOD_YEAR, "20260"));
    assert_false(period_key_valid(PERIOD_YEAR, NULL));
    /* Fixed positions, nothing more, nothing less. */
    const char *bad_quarters[] = {"2026-Q", "2026-Q12", "2026-1Q", "2026Q1", "2026-q1", "2026-Qa"};
    for (size_t i = 0; i < sizeof bad_quarters / sizeof bad_quarters[0]; i++)
        assert_false(period_key_valid(PERIOD_QUARTER, bad_quarters[i]));
    const char *bad_years[] = {"202", "2026 ", " 2026", "+026", "20a6", "2026-01"};
    for (size_t i = 0; i < sizeof bad_years / sizeof bad_years[0]; i++)
        assert_false(period_key_valid(PERIOD_YEAR, bad_years[i]));
    assert_false(period_key_valid(PERIOD_MONTH, "2026-1a"));
    assert_false(period_key_valid(PERIOD_MONTH, "1899-12"));
    assert_true(period_key_valid(PERIOD_MONTH, "9999-12"));
    assert_false(period_key_valid(PERIOD_DAY, "2026-04-01 "));
}

static void test_next_and_series(void **state)
{
    (void)state;
    char key[PERIOD_KEY_LEN];
    assert_true(period_next(PERIOD_DAY, "2026-12-31", key));
    assert_string_equal(key, "2027-01-01");
    assert_true(period_next(PERIOD_DAY, "2028-02-28", key));
    assert_string_equal(key, "2028-02-29");
    assert_true(period_next(PERIOD_MONTH, "2026-12", key));
    assert_string_equal(key, "2027-01");
    assert_true(period_next(PERIOD_QUARTER, "2026-Q4", key));
    assert_string_equal(key, "2027-Q1");
    assert_true(period_next(PERIOD_YEAR, "2026", key));
    assert_string_equal(key, "2027");
    assert_false(period_next(PERIOD_YEAR, "9999", key));
    assert_false(period_next(PERIOD_MONTH, "bad", key));

    char keys[40][PERIOD_KEY_LEN];
    assert_int_equal(period_series(PERIOD_MONTH, "2025-11", "2028-10", keys, 40), 36);
    assert_string_equal(keys[0], "2025-11");
    assert_string_equal(keys[2], "2026-01");
    assert_string_equal(keys[35], "2028-10");
    assert_int_equal(period_series(PERIOD_QUARTER, "2026-Q3", "2027-Q2", keys, 40), 4);
    assert_string_equal(keys[2], "2027-Q1");
    assert_int_equal(period_series(PERIOD_DAY, "2026-03-28", "2026-03-31", keys, 40), 4);
    assert_string_equal(keys[3], "2026-03-31");
    assert_int_equal(period_series(PERIOD_YEAR, "2026", "2026", keys, 40), 1);
    /* Backwards, too long, or malformed. */
    assert_int_equal(period_series(PERIOD_MONTH, "2027-01", "2026-12", keys, 40), -1);
    assert_int_equal(period_series(PERIOD_MONTH, "2020-01", "2026-12", keys, 40), -1);
    assert_int_equal(period_series(PERIOD_MONTH, "2026-01", "2026-13", keys, 40), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_local_boundaries),
        cmocka_unit_test(test_local_day),
        cmocka_unit_test(test_kinds_and_keys),
        cmocka_unit_test(test_next_and_series),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
