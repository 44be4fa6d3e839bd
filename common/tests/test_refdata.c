/* Reference data: every commune of the table is found by code and by any
 * spelling of its name, and nothing else is. */
#include "refdata.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_count_and_territories(void **state)
{
    (void)state;
    assert_int_equal(refdata_commune_count(), 92);
    assert_null(refdata_commune_at(92));
    int per_territory[7] = {0};
    for (size_t i = 0; i < refdata_commune_count(); i++) {
        const commune_t *c = refdata_commune_at(i);
        assert_non_null(c);
        assert_true(refdata_is_territory(c->territory));
        assert_int_equal(strlen(c->territory), 3);
        per_territory[c->territory[2] - '0']++;
        if (i > 0)
            assert_true(strcmp(refdata_commune_at(i - 1)->insee, c->insee) < 0);
    }
    assert_int_equal(per_territory[1], 18);
    assert_int_equal(per_territory[2], 36);
    assert_int_equal(per_territory[3], 17);
    assert_int_equal(per_territory[4], 12);
    assert_int_equal(per_territory[5], 6);
    assert_int_equal(per_territory[6], 3);
}

/* Every row of the source table, read independently of the embedded copy. */
static void test_matches_source_table(void **state)
{
    (void)state;
    const char *source = getenv("PASSERELLE_TEST_SOURCE_DIR");
    if (!source)
        skip();
    char path[512];
    snprintf(path, sizeof path, "%s/data/communes-amp.csv", source);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[256];
    int rows = 0;
    assert_non_null(fgets(line, sizeof line, f)); /* header */
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (!line[0])
            continue;
        char *insee = strtok(line, ","), *name = strtok(NULL, ","), *territory = strtok(NULL, ",");
        assert_non_null(territory);
        const commune_t *by_code = refdata_commune(insee);
        assert_non_null(by_code);
        assert_string_equal(by_code->name, name);
        assert_string_equal(by_code->territory, territory);
        assert_ptr_equal(refdata_commune(name), by_code);
        rows++;
    }
    fclose(f);
    assert_int_equal(rows, 92);
}

/* Each commune is found by its name written in upper case, in lower case,
 * folded to ASCII, and with separators swapped for spaces. */
static void test_every_name_spelling(void **state)
{
    (void)state;
    for (size_t i = 0; i < refdata_commune_count(); i++) {
        const commune_t *c = refdata_commune_at(i);
        char folded[128], shouted[128], spaced[128];
        assert_ptr_equal(refdata_commune(c->insee), c);
        assert_ptr_equal(refdata_commune(c->name), c);
        refdata_fold_name(c->name, folded, sizeof folded);
        assert_ptr_equal(refdata_commune(folded), c);
        size_t k;
        for (k = 0; folded[k]; k++)
            shouted[k] = (char)(folded[k] >= 'a' && folded[k] <= 'z' ? folded[k] - 32 : folded[k]);
        shouted[k] = '\0';
        assert_ptr_equal(refdata_commune(shouted), c);
        snprintf(spaced, sizeof spaced, "  %s\t", c->name);
        for (k = 0; spaced[k]; k++)
            if (spaced[k] == '-')
                spaced[k] = ' ';
        assert_ptr_equal(refdata_commune(spaced), c);
    }
}

static void test_named_variants(void **state)
{
    (void)state;
    const char *berre[] = {"BERRE L ETANG",       "Berre-l'Étang",
                           "berre l'etang",       "BERRE-L\xE2\x80\x99\xC3\x89TANG",
                           "Berre  -  l ' Etang", "13014"};
    for (size_t i = 0; i < sizeof berre / sizeof berre[0]; i++) {
        const commune_t *c = refdata_commune(berre[i]);
        assert_non_null(c);
        assert_string_equal(c->insee, "13014");
        assert_string_equal(c->territory, "CT3");
    }
    const char *eguilles[] = {"eguilles", "Éguilles", "EGUILLES", "\xC3\xA9guilles", " Eguilles "};
    for (size_t i = 0; i < sizeof eguilles / sizeof eguilles[0]; i++) {
        const commune_t *c = refdata_commune(eguilles[i]);
        assert_non_null(c);
        assert_string_equal(c->insee, "13032");
    }
    const char *chamas[] = {"Saint Chamas", "Saint-Chamas", "SAINT-CHAMAS", "saint chamas",
                            "St Chamas",    "St-Chamas",    "saint--chamas"};
    const commune_t *expected = NULL;
    for (size_t i = 0; i < sizeof chamas / sizeof chamas[0]; i++) {
        const commune_t *c = refdata_commune(chamas[i]);
        assert_non_null(c);
        assert_string_equal(c->name, "Saint-Chamas");
        if (expected)
            assert_ptr_equal(c, expected);
        expected = c;
    }
    assert_string_equal(refdata_commune("Marseille")->insee, REFDATA_MARSEILLE_INSEE);
    assert_string_equal(refdata_commune("marseille")->territory, "CT1");
    assert_string_equal(refdata_commune("Aix en Provence")->territory, "CT2");
    assert_string_equal(refdata_commune("Martigues")->territory, "CT6");
    assert_string_equal(refdata_commune("Istres")->territory, "CT5");
    assert_string_equal(refdata_commune("84089")->territory, "CT2");
    assert_string_equal(refdata_commune("pertuis")->insee, "84089");
}

static void test_unknowns(void **state)
{
    (void)state;
    assert_null(refdata_commune(NULL));
    assert_null(refdata_commune(""));
    assert_null(refdata_commune("   "));
    assert_null(refdata_commune("-'-"));
    assert_null(refdata_commune("75056")); /* Paris */
    assert_null(refdata_commune("Paris"));
    assert_null(refdata_commune("13000"));
    assert_null(refdata_commune("1300"));
    assert_null(refdata_commune("130011"));
    assert_null(refdata_commune("13207")); /* an arrondissement, not a commune */
    assert_null(refdata_commune("Aix"));
    assert_null(refdata_commune("Aix-en-Provence x"));
    assert_null(refdata_commune("x\x01y"));
    assert_null(refdata_commune("Aix-en-Provenc\xC3")); /* truncated sequence */
    assert_null(refdata_commune("\xFF\xFE"));
    assert_null(refdata_commune("Aix\xC0\xA0"
                                "en-Provence")); /* overlong space */
    assert_null(refdata_commune("\xE2\x80\x99"));

    char long_name[4096];
    memset(long_name, 'a', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    assert_null(refdata_commune(long_name));
    /* A real name followed by a long tail must not match its prefix. */
    memcpy(long_name, "Marseille ", 10);
    assert_null(refdata_commune(long_name));
    memset(long_name, ' ', sizeof long_name - 1);
    memcpy(long_name, "Marseille", 9);
    assert_null(refdata_commune(long_name)); /* too long to consider at all */
}

static void test_arrondissements(void **state)
{
    (void)state;
    const char *seventh[] = {"13207",
                             "7",
                             "07",
                             "7e",
                             "7E",
                             "7eme",
                             "7ème",
                             " 7 ",
                             "Marseille 7e Arrondissement",
                             "marseille 7e arrondissement",
                             "MARSEILLE-7E-ARRONDISSEMENT",
                             "7e arrondissement"};
    for (size_t i = 0; i < sizeof seventh / sizeof seventh[0]; i++) {
        const commune_t *a = refdata_arrondissement(seventh[i]);
        assert_non_null(a);
        assert_string_equal(a->insee, "13207");
        assert_string_equal(a->name, "Marseille 7e Arrondissement");
        assert_string_equal(a->territory, "CT1");
    }
    const char *first[] = {"1er", "1", "01", "1e", "13201", "Marseille 1er Arrondissement"};
    for (size_t i = 0; i < sizeof first / sizeof first[0]; i++) {
        const commune_t *a = refdata_arrondissement(first[i]);
        assert_non_null(a);
        assert_string_equal(a->insee, "13201");
    }
    for (int n = 1; n <= 16; n++) {
        char text[8], code[8];
        snprintf(text, sizeof text, "%d", n);
        snprintf(code, sizeof code, "132%02d", n);
        const commune_t *a = refdata_arrondissement(text);
        assert_non_null(a);
        assert_string_equal(a->insee, code);
        assert_ptr_equal(refdata_arrondissement(code), a);
        assert_ptr_equal(refdata_arrondissement(a->name), a);
    }
    const char *bad[] = {NULL,    "",          "0",   "17",   "00",    "13200",
                         "13217", "7er",       "7x",  "7 8",  "1000",  "13055",
                         "Aix",   "Marseille", "7.5", "\xFF", "132O7", "   "};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_null(refdata_arrondissement(bad[i]));
}

static void test_territories(void **state)
{
    (void)state;
    assert_string_equal(refdata_territory_name("CT1"), "Marseille-Provence");
    assert_string_equal(refdata_territory_name("CT2"), "Pays d'Aix");
    assert_string_equal(refdata_territory_name("CT3"), "Pays Salonais");
    assert_string_equal(refdata_territory_name("ct4"), "Pays d'Aubagne et de l'\xC3\x89toile");
    assert_string_equal(refdata_territory_name("Ct5"), "Istres-Ouest Provence");
    assert_string_equal(refdata_territory_name("CT6"), "Pays de Martigues");
    assert_true(refdata_is_territory("ct6"));
    assert_false(refdata_is_territory("CT7"));
    assert_false(refdata_is_territory("CT0"));
    assert_false(refdata_is_territory("CT"));
    assert_false(refdata_is_territory("CT11"));
    assert_false(refdata_is_territory(""));
    assert_false(refdata_is_territory(NULL));
    assert_null(refdata_territory_name("Marseille-Provence"));
}

static void test_fold_name(void **state)
{
    (void)state;
    char out[64];
    refdata_fold_name("  Berre-l\xE2\x80\x99\xC3\x89tang  ", out, sizeof out);
    assert_string_equal(out, "berre l etang");
    refdata_fold_name("ÀÂÄÁÇÉÈÊËÍÎÏÔÖÓÙÛÜÚŸ", out, sizeof out);
    assert_string_equal(out, "aaaaceeeeiiiooouuuuy");
    refdata_fold_name("àâäáçéèêëíîïôöóùûüúÿ", out, sizeof out);
    assert_string_equal(out, "aaaaceeeeiiiooouuuuy");
    refdata_fold_name("Œuvre cœur Æ æ", out, sizeof out);
    assert_string_equal(out, "oeuvre coeur ae ae");
    refdata_fold_name("- ' -", out, sizeof out);
    assert_string_equal(out, "");
    refdata_fold_name(NULL, out, sizeof out);
    assert_string_equal(out, "");
    refdata_fold_name("a\xFF"
                      "b",
                      out, sizeof out);
    assert_string_equal(out, "a?b");
    refdata_fold_name("Ελλάδα", out, sizeof out); /* kept as it is */
    assert_string_equal(out, "Ελλάδα");

    /* Truncation keeps whole characters and the NUL within out_size. */
    char small[4];
    memset(small, 'X', sizeof small);
    refdata_fold_name("Aix-en-Provence", small, sizeof small);
    assert_string_equal(small, "aix");
    refdata_fold_name("ab\xC3\xA6", small, sizeof small); /* "abae" does not fit */
    assert_string_equal(small, "ab");
    refdata_fold_name("abc", small, 1);
    assert_string_equal(small, "");
    refdata_fold_name("abc", NULL, 0); /* must not crash */
}

static void *lookup_thread(void *arg)
{
    (void)arg;
    for (int i = 0; i < 200; i++)
        if (!refdata_commune("Eguilles") || refdata_commune_count() != 92)
            return (void *)1;
    return NULL;
}

/* First use from several threads at once sees one complete table. This runs
 * in its own process image only if it is the first test; it still checks
 * concurrent readers otherwise. */
static void test_concurrent_lookups(void **state)
{
    (void)state;
    pthread_t threads[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, lookup_thread, NULL), 0);
    for (int i = 0; i < 4; i++) {
        void *result;
        assert_int_equal(pthread_join(threads[i], &result), 0);
        assert_null(result);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_concurrent_lookups),
        cmocka_unit_test(test_count_and_territories),
        cmocka_unit_test(test_matches_source_table),
        cmocka_unit_test(test_every_name_spelling),
        cmocka_unit_test(test_named_variants),
        cmocka_unit_test(test_unknowns),
        cmocka_unit_test(test_arrondissements),
        cmocka_unit_test(test_territories),
        cmocka_unit_test(test_fold_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
