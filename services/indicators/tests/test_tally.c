/* The tally (tally.h), without Redis: sums per (key, field), zero sums
 * left out, a key's fields handed out together, the newest replacement per
 * identity whatever the order, deep copies, clearing and reuse, and a
 * large tally (growth of every table) against sums computed another way.
 * Increments: summed as they are and expanded once give the same sums as
 * every increment expanded on its own (the instants of one Europe/Paris
 * day, around the clock changes, summed into one), the size bound, and
 * the increments refused. */
#include "tally.h"

#include "ids.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* --- what the tests share ---------------------------------------------- */

/* What tally_each handed out, in order. */
typedef struct {
    char key[INDICATORS_KEY_MAX];
    char field[PROJ_FIELD_MAX];
    int64_t delta;
} seen_t;

typedef struct {
    seen_t *items;
    size_t count, cap;
} seen_list_t;

static void seen_add(void *arg, const char *key, const char *field, int64_t delta)
{
    seen_list_t *list = arg;
    if (list->count == list->cap) {
        list->cap = list->cap ? 2 * list->cap : 64;
        list->items = realloc(list->items, list->cap * sizeof *list->items);
        assert_non_null(list->items);
    }
    seen_t *s = &list->items[list->count++];
    snprintf(s->key, sizeof s->key, "%s", key);
    snprintf(s->field, sizeof s->field, "%s", field);
    s->delta = delta;
}

static const seen_t *seen_find(const seen_list_t *list, const char *key, const char *field)
{
    for (size_t i = 0; i < list->count; i++)
        if (strcmp(list->items[i].key, key) == 0 && strcmp(list->items[i].field, field) == 0)
            return &list->items[i];
    return NULL;
}

static void triple_set(triple_t *t, const char *key, const char *field, int64_t delta)
{
    snprintf(t->key, sizeof t->key, "%s", key);
    snprintf(t->field, sizeof t->field, "%s", field);
    t->delta = delta;
}

/* A replacement of identity at version whose triples are n copies of
 * (key, "*", delta + i). The triples are malloc'd: free with free(). */
static replacement_t replacement_of(const char *identity, uint64_t version, const char *key,
                                    size_t n, int64_t delta)
{
    replacement_t r;
    memset(&r, 0, sizeof r);
    snprintf(r.identity, sizeof r.identity, "%s", identity);
    r.version = version;
    r.triples.items = calloc(n ? n : 1, sizeof *r.triples.items);
    assert_non_null(r.triples.items);
    for (size_t i = 0; i < n; i++) {
        char field[32];
        snprintf(field, sizeof field, "f%zu", i);
        triple_set(&r.triples.items[i], key, field, delta + (int64_t)i);
    }
    r.triples.count = r.triples.cap = n;
    return r;
}

typedef struct {
    const replacement_t *items[16];
    size_t count;
} held_t;

static void held_add(void *arg, const replacement_t *r)
{
    held_t *held = arg;
    assert_true(held->count < 16);
    held->items[held->count++] = r;
}

static const replacement_t *held_find(const held_t *held, const char *identity)
{
    for (size_t i = 0; i < held->count; i++)
        if (strcmp(held->items[i]->identity, identity) == 0)
            return held->items[i];
    return NULL;
}

/* --- tests -------------------------------------------------------------- */

static void test_sums(void **state)
{
    (void)state;
    tally_t *t = tally_new();
    assert_non_null(t);
    assert_int_equal(tally_size(t), 0);
    assert_true(tally_add(t, "c:conventions.signed:all:2026", "*", 1));
    assert_true(tally_add(t, "c:conventions.signed:all:2026", "level=LOC2", 1));
    assert_true(tally_add(t, "c:conventions.signed:all:2026", "*", 2));
    assert_true(tally_add(t, "c:conventions.signed:CT2:2026", "*", 5));
    /* The same field name under another key is another sum. */
    assert_true(tally_add(t, "c:conventions.signed:CT2:2026", "level=LOC2", -4));
    /* A sum that comes back to zero is held but not handed out. */
    assert_true(tally_add(t, "c:conventions.active:all:all", "*", 1));
    assert_true(tally_add(t, "c:conventions.active:all:all", "*", -1));
    assert_int_equal(tally_size(t), 5);

    seen_list_t seen = {0};
    tally_each(t, seen_add, &seen);
    assert_int_equal(seen.count, 4);
    const seen_t *s = seen_find(&seen, "c:conventions.signed:all:2026", "*");
    assert_non_null(s);
    assert_int_equal(s->delta, 3);
    s = seen_find(&seen, "c:conventions.signed:all:2026", "level=LOC2");
    assert_non_null(s);
    assert_int_equal(s->delta, 1);
    s = seen_find(&seen, "c:conventions.signed:CT2:2026", "*");
    assert_non_null(s);
    assert_int_equal(s->delta, 5);
    s = seen_find(&seen, "c:conventions.signed:CT2:2026", "level=LOC2");
    assert_non_null(s);
    assert_int_equal(s->delta, -4);
    assert_null(seen_find(&seen, "c:conventions.active:all:all", "*"));
    free(seen.items);
    tally_destroy(&t);
    assert_null(t);
    tally_destroy(&t); /* a second destroy is harmless */
}

/* The rebuild writes a key's fields in one command: they come together,
 * whether a key has a few fields (chained to it) or many (a distribution,
 * whose fields move to the field table past a dozen). */
static void test_fields_of_a_key_together(void **state)
{
    (void)state;
    tally_t *t = tally_new();
    char key[64], field[32];
    /* Interleaved adds: every key gets a field in turn; key k has k % 40
     * + 1 fields. */
    for (int round = 0; round < 3; round++)
        for (int f = 0; f < 40; f++)
            for (int k = 0; k < 50; k++) {
                if (f > k % 40)
                    continue;
                snprintf(key, sizeof key, "c:x:all:k%d", k);
                snprintf(field, sizeof field, "v=%d", f);
                assert_true(tally_add(t, key, field, 1));
            }
    size_t fields = 0;
    for (int k = 0; k < 50; k++)
        fields += (size_t)(k % 40 + 1);
    assert_int_equal(tally_size(t), fields);
    seen_list_t seen = {0};
    tally_each(t, seen_add, &seen);
    assert_int_equal(seen.count, fields);
    size_t runs = 0;
    for (size_t i = 0; i < seen.count; i++) {
        assert_int_equal(seen.items[i].delta, 3);
        if (i == 0 || strcmp(seen.items[i].key, seen.items[i - 1].key) != 0)
            runs++;
    }
    assert_int_equal(runs, 50);
    /* Each field once. */
    for (int k = 0; k < 50; k++)
        for (int f = 0; f <= k % 40; f++) {
            snprintf(key, sizeof key, "c:x:all:k%d", k);
            snprintf(field, sizeof field, "v=%d", f);
            assert_non_null(seen_find(&seen, key, field));
        }
    free(seen.items);
    tally_destroy(&t);
}

static void test_projection_and_replacements(void **state)
{
    (void)state;
    tally_t *t = tally_new();
    triple_t adds[3];
    triple_set(&adds[0], "c:units.registered:all:2026", "*", 1);
    triple_set(&adds[1], "c:units.registered:all:2026", "stock=PRIVATE", 1);
    triple_set(&adds[2], "c:units.registered:CT2:2026", "*", 1);
    replacement_t repl[2];
    repl[0] = replacement_of("objective:P1:2026", 2, "c:objectives.units:all:2026", 2, 10);
    repl[1] = replacement_of("project:J1", 1, "c:projects.count:all:2027", 1, 1);
    projection_t p = {
        .adds = {adds, 3, 3},
        .replacements = repl,
        .replacement_count = 2,
    };
    assert_true(tally_add_projection(t, &p));
    assert_true(tally_add_projection(t, &p));
    assert_int_equal(tally_size(t), 3);
    assert_int_equal(tally_replacement_count(t), 2);
    seen_list_t seen = {0};
    tally_each(t, seen_add, &seen);
    assert_int_equal(seen_find(&seen, "c:units.registered:all:2026", "*")->delta, 2);
    assert_int_equal(seen_find(&seen, "c:units.registered:CT2:2026", "*")->delta, 2);
    free(seen.items);

    /* An older version of the objective, then a newer one, then the same
     * version with other triples: the newer one stays, whatever the order. */
    replacement_t older =
        replacement_of("objective:P1:2026", 1, "c:objectives.units:all:2026", 1, 99);
    replacement_t newer =
        replacement_of("objective:P1:2026", 5, "c:objectives.units:all:2026", 3, 20);
    replacement_t same =
        replacement_of("objective:P1:2026", 5, "c:objectives.units:all:2026", 1, 77);
    projection_t p_old = {.replacements = &older, .replacement_count = 1};
    projection_t p_new = {.replacements = &newer, .replacement_count = 1};
    projection_t p_same = {.replacements = &same, .replacement_count = 1};
    assert_true(tally_add_projection(t, &p_old));
    assert_true(tally_add_projection(t, &p_new));
    assert_true(tally_add_projection(t, &p_same));
    assert_true(tally_add_projection(t, &p_old));
    assert_int_equal(tally_replacement_count(t), 2);

    /* Deep copies: the sources can go. */
    for (size_t i = 0; i < newer.triples.count; i++)
        triple_set(&newer.triples.items[i], "scribbled", "over", -1);
    free(older.triples.items);
    free(newer.triples.items);
    free(same.triples.items);
    free(repl[0].triples.items);
    free(repl[1].triples.items);

    held_t held = {0};
    tally_each_replacement(t, held_add, &held);
    assert_int_equal(held.count, 2);
    const replacement_t *obj = held_find(&held, "objective:P1:2026");
    assert_non_null(obj);
    assert_int_equal(obj->version, 5);
    assert_int_equal(obj->triples.count, 3);
    assert_string_equal(obj->triples.items[0].key, "c:objectives.units:all:2026");
    assert_string_equal(obj->triples.items[2].field, "f2");
    assert_int_equal(obj->triples.items[2].delta, 22);
    const replacement_t *proj = held_find(&held, "project:J1");
    assert_non_null(proj);
    assert_int_equal(proj->version, 1);
    assert_int_equal(proj->triples.count, 1);

    /* Cleared, then used again. */
    tally_clear(t);
    assert_int_equal(tally_size(t), 0);
    assert_int_equal(tally_replacement_count(t), 0);
    held.count = 0;
    tally_each_replacement(t, held_add, &held);
    assert_int_equal(held.count, 0);
    seen_list_t after = {0};
    tally_each(t, seen_add, &after);
    assert_int_equal(after.count, 0);
    replacement_t again = replacement_of("objective:P1:2026", 1, "k", 0, 0);
    projection_t p_again = {.replacements = &again, .replacement_count = 1};
    assert_true(tally_add_projection(t, &p_again));
    assert_true(tally_add(t, "c:units.registered:all:2026", "*", 7));
    tally_each(t, seen_add, &after);
    assert_int_equal(after.count, 1);
    assert_int_equal(after.items[0].delta, 7);
    held.count = 0;
    tally_each_replacement(t, held_add, &held);
    assert_int_equal(held.count, 1);
    assert_int_equal(held.items[0]->version, 1);
    assert_int_equal(held.items[0]->triples.count, 0);
    free(again.triples.items);
    free(after.items);
    tally_destroy(&t);
}

/* Many keys and fields (every table grows several times, the arena takes
 * many chunks), twice with a clear between: every sum is the one computed
 * from the formula that made the adds. */
static void test_large(void **state)
{
    (void)state;
    enum { KEYS = 20000, FIELDS = 7, ROUNDS = 3 };
    tally_t *t = tally_new();
    for (int pass = 0; pass < 2; pass++) {
        char key[80], field[32];
        for (int round = 0; round < ROUNDS; round++)
            for (int k = 0; k < KEYS; k++)
                for (int f = 0; f < FIELDS; f++) {
                    snprintf(key, sizeof key, "c:counter.%d:CT%d:2026-%02d", k, k % 6 + 1,
                             k % 12 + 1);
                    snprintf(field, sizeof field, f ? "axis=V%d" : "*", f);
                    assert_true(tally_add(t, key, field, (int64_t)(k % 5 + f + pass)));
                }
        assert_int_equal(tally_size(t), KEYS * FIELDS);
        seen_list_t seen = {0};
        tally_each(t, seen_add, &seen);
        size_t expected = 0;
        for (int k = 0; k < KEYS; k++)
            for (int f = 0; f < FIELDS; f++)
                expected += (k % 5 + f + pass) != 0;
        assert_int_equal(seen.count, expected);
        for (size_t i = 0; i < seen.count; i++) {
            int k = atoi(seen.items[i].key + strlen("c:counter."));
            int f = strcmp(seen.items[i].field, "*") == 0 ? 0 : atoi(seen.items[i].field + 6);
            assert_int_equal(seen.items[i].delta, ROUNDS * (k % 5 + f + pass));
        }
        free(seen.items);
        tally_clear(t);
    }
    tally_destroy(&t);
}

/* --- increments --------------------------------------------------------- */

/* A small deterministic generator, so that a failure repeats. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

static uint32_t rng(uint32_t n)
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)((rng_state >> 33) % n);
}

static int64_t at_ms(const char *rfc3339)
{
    int64_t ms = 0;
    assert_true(time_parse_rfc3339(rfc3339, &ms));
    return ms;
}

/* Sums handed out, sorted, for comparing two tallies. */
static int seen_order(const void *a, const void *b)
{
    const seen_t *x = a, *y = b;
    int by_key = strcmp(x->key, y->key);
    return by_key ? by_key : strcmp(x->field, y->field);
}

static void expect_same_sums(tally_t *a, tally_t *b)
{
    seen_list_t sa = {0}, sb = {0};
    assert_true(tally_each(a, seen_add, &sa));
    assert_true(tally_each(b, seen_add, &sb));
    if (sa.count)
        qsort(sa.items, sa.count, sizeof *sa.items, seen_order);
    if (sb.count)
        qsort(sb.items, sb.count, sizeof *sb.items, seen_order);
    assert_int_equal(sa.count, sb.count);
    for (size_t i = 0; i < sa.count; i++) {
        if (seen_order(&sa.items[i], &sb.items[i]) != 0 || sa.items[i].delta != sb.items[i].delta)
            fail_msg("%s %s %lld against %s %s %lld", sa.items[i].key, sa.items[i].field,
                     (long long)sa.items[i].delta, sb.items[i].key, sb.items[i].field,
                     (long long)sb.items[i].delta);
    }
    free(sa.items);
    free(sb.items);
}

/* Every triple of inc into t, one tally_add each. */
static void add_expanded(tally_t *t, const increment_t *inc)
{
    triples_t triples;
    triples_init(&triples);
    assert_true(projection_expand(inc, &triples));
    for (size_t i = 0; i < triples.count; i++)
        assert_true(
            tally_add(t, triples.items[i].key, triples.items[i].field, triples.items[i].delta));
    triples_free(&triples);
}

/* Instants around midnight and both clock changes of 2026, and a new
 * year, so that days, months, quarters and years all differ. */
static const char *const instants[] = {
    "2026-03-28T22:59:59Z", "2026-03-28T23:00:00Z",     "2026-03-29T00:30:00Z",
    "2026-03-29T21:59:59Z", "2026-03-29T22:00:00Z",     "2026-03-31T21:59:59Z",
    "2026-03-31T22:00:00Z", "2026-10-24T21:59:00Z",     "2026-10-24T22:30:00Z",
    "2026-10-25T22:59:00Z", "2026-10-25T23:00:00Z",     "2026-12-31T22:59:59Z",
    "2026-12-31T23:00:00Z", "2027-06-30T21:59:59.999Z", "2027-06-30T22:00:00Z",
};

/* A random well-formed increment; its strings are static. */
static increment_t random_increment(void)
{
    static const char *const counters[] = {"units.registered", "conventions.signed",
                                           "proposals.recorded", "conventions.delay_to_sign",
                                           "projects.count"};
    static const char *const territories[] = {"CT1", "CT4", "", NULL, "CT9"};
    static const char *const communes[] = {"13001", "13055", "2A004", NULL, "130"};
    static const char *const dims[] = {
        "level=LOC1", "level=LOC2", "public=UNDER_30", "public=MOBILITY", "v=3", "v=12", ""};
    static const struct {
        const char *key;
        period_kind_t kind;
    } stated[] = {{"2026", PERIOD_YEAR},
                  {"2027-Q1", PERIOD_QUARTER},
                  {"2026-12", PERIOD_MONTH},
                  {"2026-03-29", PERIOD_DAY}};
    increment_t inc = {
        .counter = counters[rng(5)],
        .territory = territories[rng(5)],
        .commune = communes[rng(5)],
        .amount = (int64_t)rng(7) - 3,
        .days = rng(2),
        .dims_only = rng(5) == 0,
    };
    inc.dim_count = rng(4);
    for (size_t i = 0; i < inc.dim_count; i++)
        inc.dims[i] = dims[rng(7)];
    if (rng(4) == 0) {
        size_t k = rng(4);
        inc.stated_period = stated[k].key;
        inc.stated_kind = stated[k].kind;
    } else {
        inc.at_ms = at_ms(instants[rng(sizeof instants / sizeof instants[0])]);
    }
    return inc;
}

/* Expansion is linear in the amount: summing increments first, then
 * expanding each distinct one, gives the sums of expanding every one. */
static void test_increments_sum_like_their_triples(void **state)
{
    (void)state;
    tally_t *summed = tally_new(), *expanded = tally_new();
    enum { N = 4000 };
    increment_t *incs = calloc(N, sizeof *incs);
    assert_non_null(incs);
    for (size_t i = 0; i < N; i++) {
        incs[i] = random_increment();
        add_expanded(expanded, &incs[i]);
    }
    /* In runs of various lengths, as events give them. */
    for (size_t i = 0; i < N;) {
        size_t run = 1 + rng(5);
        if (run > N - i)
            run = N - i;
        assert_true(tally_add_increments(summed, &incs[i], run));
        i += run;
    }
    /* The bound holds before expanding, and is exact after. */
    size_t bound = tally_size(summed);
    assert_true(tally_expand(summed));
    assert_true(tally_size(summed) <= bound);
    assert_int_equal(tally_size(summed), tally_size(expanded));
    expect_same_sums(summed, expanded);

    /* Increments and sums side by side, expanded in two goes. */
    tally_clear(summed);
    tally_clear(expanded);
    for (size_t i = 0; i < N; i++) {
        add_expanded(expanded, &incs[i]);
        if (i % 3 == 0)
            add_expanded(summed, &incs[i]);
        else
            assert_true(tally_add_increments(summed, &incs[i], 1));
        if (i == N / 2)
            assert_true(tally_expand(summed));
    }
    expect_same_sums(summed, expanded);
    free(incs);
    tally_destroy(&summed);
    tally_destroy(&expanded);
}

/* The instants of one Europe/Paris day are one increment; the next day
 * is another. The day of 29 March 2026 runs from 23:00 UTC on the 28th
 * to 22:00 UTC on the 29th (the clocks go forward at 01:00 UTC). */
static void test_increments_of_a_day(void **state)
{
    (void)state;
    tally_t *t = tally_new();
    const char *same_day[] = {"2026-03-28T23:00:00Z", "2026-03-29T00:59:59Z",
                              "2026-03-29T01:00:00Z", "2026-03-29T12:00:00Z",
                              "2026-03-29T21:59:59.999Z"};
    increment_t inc = {
        .counter = "conventions.signed",
        .territory = "CT2",
        .commune = "13001",
        .dims = {"level=LOC2"},
        .dim_count = 1,
        .amount = 1,
        .days = true,
    };
    size_t one = projection_triple_count(&inc);
    assert_int_equal(one, 28);
    for (size_t i = 0; i < sizeof same_day / sizeof same_day[0]; i++) {
        inc.at_ms = at_ms(same_day[i]);
        assert_true(tally_add_increments(t, &inc, 1));
        assert_int_equal(tally_size(t), one);
    }
    inc.at_ms = at_ms("2026-03-29T22:00:00Z"); /* 00:00 on the 30th in Paris */
    assert_true(tally_add_increments(t, &inc, 1));
    assert_int_equal(tally_size(t), 2 * one);
    seen_list_t seen = {0};
    assert_true(tally_each(t, seen_add, &seen));
    assert_int_equal(seen_find(&seen, "c:conventions.signed:CT2:2026-03-29", "*")->delta, 5);
    assert_int_equal(seen_find(&seen, "c:conventions.signed:CT2:2026-03-30", "level=LOC2")->delta,
                     1);
    assert_int_equal(seen_find(&seen, "c:conventions.signed:13001:2026-03", "*")->delta, 6);
    assert_int_equal(seen_find(&seen, "c:conventions.signed:all:all", "level=LOC2")->delta, 6);
    assert_null(seen_find(&seen, "c:conventions.signed:13001:2026-03-29", "*"));
    /* Expanded: the day, month... of both days share their longer keys. */
    assert_int_equal(tally_size(t), seen.count);
    free(seen.items);

    /* Amounts that cancel out hand out nothing. */
    tally_clear(t);
    inc.amount = 2;
    assert_true(tally_add_increments(t, &inc, 1));
    inc.amount = -2;
    assert_true(tally_add_increments(t, &inc, 1));
    seen_list_t none = {0};
    assert_true(tally_each(t, seen_add, &none));
    assert_int_equal(none.count, 0);
    tally_destroy(&t);
}

/* Malformed increments are refused, the ones before them kept; the
 * strings are the tally's own copies. */
static void test_increments_refused_and_copied(void **state)
{
    (void)state;
    tally_t *t = tally_new();
    char *territory = strdup("CT3"), *dim = strdup("stock=SOCIAL");
    assert_non_null(territory);
    assert_non_null(dim);
    increment_t incs[2] = {
        {.counter = "units.registered",
         .territory = territory,
         .dims = {dim},
         .dim_count = 1,
         .amount = 1,
         .at_ms = at_ms("2026-05-12T08:00:00Z"),
         .days = true},
        {.counter = "units.registered", .dims = {"stock"}, .dim_count = 1, .amount = 1},
    };
    assert_false(tally_add_increments(t, incs, 2));
    incs[1].dims[0] = "stock=PRIVATE";
    incs[1].stated_period = "2026-13";
    incs[1].stated_kind = PERIOD_MONTH;
    assert_false(tally_add_increments(t, &incs[1], 1));
    incs[1].counter = NULL;
    assert_false(tally_add_increments(t, &incs[1], 1));
    incs[1].counter = "units.registered";
    incs[1].dim_count = PROJ_DIMS_MAX + 1;
    assert_false(tally_add_increments(t, &incs[1], 1));
    /* Nothing to count is no error. */
    incs[1].dim_count = 0;
    incs[1].amount = 0;
    assert_true(tally_add_increments(t, &incs[1], 1));

    memset(territory, 'x', 3);
    memset(dim, 'x', strlen(dim));
    free(territory);
    free(dim);
    seen_list_t seen = {0};
    assert_true(tally_each(t, seen_add, &seen));
    assert_int_equal(seen.count, 5 * 2 * 2);
    assert_int_equal(seen_find(&seen, "c:units.registered:CT3:2026-05-12", "stock=SOCIAL")->delta,
                     1);
    free(seen.items);
    tally_destroy(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sums),
        cmocka_unit_test(test_fields_of_a_key_together),
        cmocka_unit_test(test_projection_and_replacements),
        cmocka_unit_test(test_large),
        cmocka_unit_test(test_increments_sum_like_their_triples),
        cmocka_unit_test(test_increments_of_a_day),
        cmocka_unit_test(test_increments_refused_and_copied),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
