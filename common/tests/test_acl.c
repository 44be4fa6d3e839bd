/* The ACL table: who may send each request type, and nothing for a type
 * the table does not know. The expectations are written out here on
 * purpose: a change to who may write the register must change this file
 * too, in the same review. */
#include "acl.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#define KEEPERS (PARTY_METROPOLE | PARTY_OPERATOR | PARTY_ADMIN)
#define READERS (KEEPERS | PARTY_ACTION_LOGEMENT | PARTY_SERVICE)

static const struct {
    const char *type;
    unsigned parties;
} expected[] = {
    {"health", PARTY_ANY},        {"event.list", READERS},
    {"unit.register", KEEPERS},   {"unit.get", READERS},
    {"unit.list", READERS},       {"convention.envisage", KEEPERS},
    {"convention.sign", KEEPERS}, {"convention.in_force", KEEPERS},
    {"convention.end", KEEPERS},  {"convention.abandon", KEEPERS},
    {"convention.get", READERS},
};

static const party_t parties[] = {PARTY_METROPOLE, PARTY_ACTION_LOGEMENT, PARTY_OPERATOR,
                                  PARTY_PARTNER,   PARTY_ADMIN,           PARTY_SERVICE};

static void test_every_type(void **state)
{
    (void)state;
    for (size_t t = 0; t < sizeof expected / sizeof expected[0]; t++) {
        assert_int_equal(acl_parties(expected[t].type), expected[t].parties);
        for (size_t p = 0; p < sizeof parties / sizeof parties[0]; p++) {
            bool want = (expected[t].parties & (unsigned)parties[p]) != 0;
            if (acl_allows(expected[t].type, parties[p]) != want)
                fail_msg("%s for %s: expected %s", expected[t].type, party_name(parties[p]),
                         want ? "allowed" : "denied");
        }
        assert_false(acl_allows(expected[t].type, PARTY_NONE));
    }
}

static void test_partners_never_write(void **state)
{
    (void)state;
    /* partner systems read published feeds only: no register write */
    const char *writes[] = {"unit.register",       "convention.envisage", "convention.sign",
                            "convention.in_force", "convention.end",      "convention.abandon"};
    for (size_t i = 0; i < sizeof writes / sizeof writes[0]; i++) {
        assert_false(acl_allows(writes[i], PARTY_PARTNER));
        assert_false(acl_allows(writes[i], PARTY_ACTION_LOGEMENT));
        assert_false(acl_allows(writes[i], PARTY_SERVICE));
    }
}

static void test_unknown_types_refused_to_all(void **state)
{
    (void)state;
    const char *unknown[] = {"",
                             "unit",
                             "unit.registe",
                             "UNIT.REGISTER",
                             "health ",
                             "unit.register.x",
                             "admin.everything",
                             "*"};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        assert_int_equal(acl_parties(unknown[i]), 0);
        for (size_t p = 0; p < sizeof parties / sizeof parties[0]; p++)
            assert_false(acl_allows(unknown[i], parties[p]));
        assert_false(acl_allows(unknown[i], (party_t)PARTY_ANY));
    }
    assert_int_equal(acl_parties(NULL), 0);
    assert_false(acl_allows(NULL, PARTY_ADMIN));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_type),
        cmocka_unit_test(test_partners_never_write),
        cmocka_unit_test(test_unknown_types_refused_to_all),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
