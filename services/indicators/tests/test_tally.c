/* The tally (tally.h), without Redis: sums per (key, field), zero sums
 * left out, a key's fields handed out together, the newest replacement per
 * identity whatever the order, deep copies, clearing and reuse, and a
 * large tally (growth of every table) against sums computed another way. */
#include "tally.h"

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sums),
        cmocka_unit_test(test_fields_of_a_key_together),
        cmocka_unit_test(test_projection_and_replacements),
        cmocka_unit_test(test_large),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
