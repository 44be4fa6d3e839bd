/* Identity: key generation, lookup by public key, reload of the folder. */
#include "harness.h"
#include "identity.h"

#include <czmq.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

static int setup(void **state)
{
    char *dir = harness_tempdir("identity");
    if (!dir)
        return -1;
    *state = dir;
    return 0;
}

static int teardown(void **state)
{
    harness_rmtree(*state);
    free(*state);
    return 0;
}

static void keys_subdir(const char *base, char *out, size_t size)
{
    /* a folder that does not exist yet: keygen must make it */
    snprintf(out, size, "%s/keys", base);
}

static void public_key_of(const char *path, char out[KEY_Z85_LEN + 1])
{
    zcert_t *cert = zcert_load(path);
    assert_non_null(cert);
    snprintf(out, KEY_Z85_LEN + 1, "%s", zcert_public_txt(cert));
    zcert_destroy(&cert);
}

static mode_t mode_of(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_mode & 0777;
}

static void test_party_names(void **state)
{
    (void)state;
    assert_string_equal(party_name(PARTY_ACTION_LOGEMENT), "ACTION_LOGEMENT");
    assert_string_equal(party_name(PARTY_NONE), "NONE");
    assert_string_equal(party_name(PARTY_METROPOLE | PARTY_ADMIN), "NONE");
    assert_int_equal(party_parse("metropole"), PARTY_METROPOLE);
    assert_int_equal(party_parse("Service"), PARTY_SERVICE);
    assert_int_equal(party_parse("root"), PARTY_NONE);
    assert_int_equal(party_parse(""), PARTY_NONE);
    assert_int_equal(party_parse(NULL), PARTY_NONE);
    party_t all[] = {PARTY_METROPOLE, PARTY_ACTION_LOGEMENT, PARTY_OPERATOR,
                     PARTY_PARTNER,   PARTY_ADMIN,           PARTY_SERVICE};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        assert_int_equal(party_parse(party_name(all[i])), all[i]);
}

static void test_name_valid(void **state)
{
    (void)state;
    assert_true(identity_name_valid("operator-ct1_2.a"));
    assert_true(identity_name_valid("A"));
    assert_false(identity_name_valid(""));
    assert_false(identity_name_valid(NULL));
    assert_false(identity_name_valid(".hidden"));
    assert_false(identity_name_valid("../etc"));
    assert_false(identity_name_valid("a/b"));
    assert_false(identity_name_valid("a b"));
    assert_false(identity_name_valid("é"));
    char long_name[65];
    memset(long_name, 'a', 64);
    long_name[64] = '\0';
    assert_false(identity_name_valid(long_name));
    long_name[63] = '\0';
    assert_true(identity_name_valid(long_name));
}

static void test_keygen_and_lookup(void **state)
{
    char dir[512], err[256], path[600];
    keys_subdir(*state, dir, sizeof dir);
    assert_int_equal(identity_keygen_server(dir, err, sizeof err), 0);
    assert_int_equal(identity_keygen_client(dir, "al-ct1", PARTY_ACTION_LOGEMENT, err, sizeof err),
                     0);

    assert_int_equal(mode_of(dir), 0700);
    snprintf(path, sizeof path, "%s/clients", dir);
    assert_int_equal(mode_of(path), 0700);
    keydir_client_cert_path(dir, "al-ct1", path, sizeof path);
    assert_int_equal(mode_of(path), 0600);
    keydir_server_cert_path(dir, path, sizeof path);
    assert_int_equal(mode_of(path), 0600);

    /* the server certificate names itself */
    zcert_t *server = zcert_load(path);
    assert_non_null(server);
    assert_string_equal(zcert_meta(server, "name"), "server");
    assert_string_equal(zcert_meta(server, "party"), "SERVICE");
    assert_string_not_equal(zcert_secret_txt(server), "0000000000000000000000000000000000000000");
    zcert_destroy(&server);

    char key[KEY_Z85_LEN + 1];
    keydir_client_cert_path(dir, "al-ct1", path, sizeof path);
    public_key_of(path, key);
    snprintf(path, sizeof path, "%s/authorized/al-ct1.key", dir);
    char authorized_key[KEY_Z85_LEN + 1];
    public_key_of(path, authorized_key);
    assert_string_equal(key, authorized_key);

    keydir_t *keydir = keydir_new(dir);
    caller_t caller;
    assert_true(keydir_lookup(keydir, key, &caller));
    assert_int_equal(caller.party, PARTY_ACTION_LOGEMENT);
    assert_string_equal(caller.name, "al-ct1");
    assert_string_equal(caller.key, key);

    /* the server key is not a caller: it is not in authorized/ */
    char server_key[KEY_Z85_LEN + 1];
    keydir_server_public_path(dir, path, sizeof path);
    public_key_of(path, server_key);
    assert_false(keydir_lookup(keydir, server_key, &caller));
    assert_false(keydir_lookup(keydir, "short", &caller));
    assert_false(keydir_lookup(keydir, NULL, &caller));
    keydir_destroy(&keydir);
    assert_null(keydir);
}

static void test_server_keygen_keeps_existing(void **state)
{
    char dir[512], err[256], path[600];
    keys_subdir(*state, dir, sizeof dir);
    assert_int_equal(identity_keygen_server(dir, err, sizeof err), 0);
    char first[KEY_Z85_LEN + 1], second[KEY_Z85_LEN + 1];
    keydir_server_public_path(dir, path, sizeof path);
    public_key_of(path, first);
    unlink(path); /* public half lost: restored from the secret */
    assert_int_equal(identity_keygen_server(dir, err, sizeof err), 0);
    public_key_of(path, second);
    assert_string_equal(first, second);
}

static void test_reload_when_key_added(void **state)
{
    char dir[512], err[256], path[600];
    keys_subdir(*state, dir, sizeof dir);
    assert_int_equal(identity_keygen_client(dir, "first", PARTY_METROPOLE, err, sizeof err), 0);
    keydir_t *keydir = keydir_new(dir);
    char key[KEY_Z85_LEN + 1];
    keydir_client_cert_path(dir, "first", path, sizeof path);
    public_key_of(path, key);
    caller_t caller;
    assert_true(keydir_lookup(keydir, key, &caller));

    assert_int_equal(identity_keygen_client(dir, "second", PARTY_PARTNER, err, sizeof err), 0);
    keydir_client_cert_path(dir, "second", path, sizeof path);
    public_key_of(path, key);
    assert_true(keydir_lookup(keydir, key, &caller));
    assert_int_equal(caller.party, PARTY_PARTNER);
    assert_string_equal(caller.name, "second");

    /* removing the public certificate revokes the key */
    snprintf(path, sizeof path, "%s/authorized/second.key", dir);
    assert_int_equal(unlink(path), 0);
    assert_false(keydir_lookup(keydir, key, &caller));
    keydir_destroy(&keydir);
}

/* The server's two-step lookup: the cache answers between refreshes, a
 * refresh sees a revocation, and a new key is found without one. */
static void test_lookup_fresh_between_refreshes(void **state)
{
    char dir[512], err[256], path[600];
    keys_subdir(*state, dir, sizeof dir);
    assert_int_equal(identity_keygen_client(dir, "kept", PARTY_METROPOLE, err, sizeof err), 0);
    assert_int_equal(identity_keygen_client(dir, "gone", PARTY_OPERATOR, err, sizeof err), 0);
    char kept[KEY_Z85_LEN + 1], gone[KEY_Z85_LEN + 1];
    keydir_client_cert_path(dir, "kept", path, sizeof path);
    public_key_of(path, kept);
    keydir_client_cert_path(dir, "gone", path, sizeof path);
    public_key_of(path, gone);

    keydir_t *keydir = keydir_new(dir);
    caller_t caller;
    /* never refreshed: the first lookup loads the folder */
    assert_true(keydir_lookup_fresh(keydir, gone, &caller));
    assert_int_equal(caller.party, PARTY_OPERATOR);
    assert_string_equal(caller.name, "gone");

    snprintf(path, sizeof path, "%s/authorized/gone.key", dir);
    assert_int_equal(unlink(path), 0);
    /* until the next refresh the cache still names it... */
    assert_true(keydir_lookup_fresh(keydir, gone, &caller));
    /* ...and not after */
    keydir_refresh(keydir);
    assert_false(keydir_lookup_fresh(keydir, gone, &caller));
    assert_true(keydir_lookup_fresh(keydir, kept, &caller));
    assert_int_equal(caller.party, PARTY_METROPOLE);

    assert_false(keydir_lookup_fresh(keydir, "short", &caller));
    assert_false(keydir_lookup_fresh(NULL, kept, &caller));
    keydir_refresh(NULL);
    keydir_destroy(&keydir);
}

static void test_invalid_party_metadata(void **state)
{
    char dir[512], err[256], path[600];
    keys_subdir(*state, dir, sizeof dir);
    assert_int_equal(identity_keygen_client(dir, "seed", PARTY_METROPOLE, err, sizeof err), 0);
    /* a certificate put in authorized/ by hand, with a party we don't know */
    zcert_t *cert = zcert_new();
    zcert_set_meta(cert, "name", "rogue");
    zcert_set_meta(cert, "party", "ROOT");
    snprintf(path, sizeof path, "%s/authorized/rogue.key", dir);
    assert_int_equal(zcert_save_public(cert, path), 0);
    char key[KEY_Z85_LEN + 1];
    snprintf(key, sizeof key, "%s", zcert_public_txt(cert));
    zcert_destroy(&cert);

    cert = zcert_new();
    zcert_set_meta(cert, "name", "nobody");
    snprintf(path, sizeof path, "%s/authorized/nobody.key", dir);
    assert_int_equal(zcert_save_public(cert, path), 0);
    char key2[KEY_Z85_LEN + 1];
    snprintf(key2, sizeof key2, "%s", zcert_public_txt(cert));
    zcert_destroy(&cert);

    /* and a file that is not a certificate at all */
    snprintf(path, sizeof path, "%s/authorized/junk.key", dir);
    FILE *junk = fopen(path, "w");
    assert_non_null(junk);
    fputs("this is not a certificate\n", junk);
    fclose(junk);

    keydir_t *keydir = keydir_new(dir);
    caller_t caller;
    assert_false(keydir_lookup(keydir, key, &caller));
    assert_false(keydir_lookup(keydir, key2, &caller));
    keydir_client_cert_path(dir, "seed", path, sizeof path);
    public_key_of(path, key);
    assert_true(keydir_lookup(keydir, key, &caller));
    keydir_destroy(&keydir);
}

static void test_keygen_refusals(void **state)
{
    char dir[512], err[256];
    keys_subdir(*state, dir, sizeof dir);
    assert_int_equal(identity_keygen_client(dir, "dup", PARTY_OPERATOR, err, sizeof err), 0);
    err[0] = '\0';
    assert_int_equal(identity_keygen_client(dir, "dup", PARTY_OPERATOR, err, sizeof err), -1);
    assert_non_null(strstr(err, "already exists"));
    assert_int_equal(identity_keygen_client(dir, "../escape", PARTY_OPERATOR, err, sizeof err), -1);
    assert_int_equal(identity_keygen_client(dir, ".hidden", PARTY_OPERATOR, err, sizeof err), -1);
    assert_int_equal(identity_keygen_client(dir, "", PARTY_OPERATOR, err, sizeof err), -1);
    assert_int_equal(identity_keygen_client(dir, "ok", PARTY_NONE, err, sizeof err), -1);
    assert_int_equal(
        identity_keygen_client(dir, "ok", PARTY_OPERATOR | PARTY_ADMIN, err, sizeof err), -1);
    char path[600];
    snprintf(path, sizeof path, "%s/../escape.key", dir);
    assert_int_not_equal(access(path, F_OK), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_party_names),
        cmocka_unit_test(test_name_valid),
        cmocka_unit_test_setup_teardown(test_keygen_and_lookup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_keygen_keeps_existing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reload_when_key_added, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lookup_fresh_between_refreshes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_party_metadata, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keygen_refusals, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
