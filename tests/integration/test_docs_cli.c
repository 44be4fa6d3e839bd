/* `passerelle docs` as a user runs it: the real CLI against a real Redis and
 * document store, judged by its exit code, its output and the files it
 * leaves. The tests without a service (help, usage errors, an unreachable
 * endpoint) come first; then round trips of a small and a ~20 MB file, the
 * listings, a withdrawal, files around the size sent whole in one request,
 * a file in chunks whose SHA-256 goes with the commit (by default) or with
 * the begin (--hash-first), fsck, and last a blob damaged on disk (which leaves the store dirty, so
 * nothing runs after it). */
#define _GNU_SOURCE
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <setjmp.h>
#include <signal.h>
#include <sodium.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define CLI_DEADLINE_MS 60000
#define LARGE_BYTES     (20u * 1024 * 1024 + 12345) /* not a multiple of a chunk */

typedef struct {
    char *dir;         /* temporary folder: keys, logs, files, the store */
    char keys[512];    /* one client per party */
    char store[512];   /* PASSERELLE_DOCSTORE_DIR */
    char files[512];   /* what is uploaded */
    char downs[512];   /* where downloads go (the CLI's working folder) */
    char small[600];   /* the small file */
    char large[600];   /* the large file */
    harness_cli_t cli; /* the binary, run in downs, its output in dir */
    harness_redis_t redis;
    harness_service_t service;
    char small_id[64];
    char large_id[64];
} fixture_t;

static fixture_t fx;

/* Runs the CLI in the downloads folder with the arguments, each
 * "NAME=value" of env (may be NULL) set in its environment
 * (harness_run_cli). */
#define run_cli_env(env, ...) harness_run_cli(&fx.cli, env, __VA_ARGS__)

#define run_cli(...) run_cli_env(NULL, __VA_ARGS__, NULL)

/* Runs the CLI against the test's service with the named key, given as
 * --endpoint, --keys and --as. */
#define run_as(name, ...) harness_run_cli_as(&fx.cli, name, __VA_ARGS__, NULL)

static void need_service(void)
{
    if (fx.service.pid <= 0)
        fail_msg("the docstore service did not start (see its log in %s)", fx.dir);
}

/* Fails unless the two files hold the same bytes. */
static void assert_same_file(const char *expected_path, const char *actual_path)
{
    FILE *a = fopen(expected_path, "rb"), *b = fopen(actual_path, "rb");
    if (!a || !b)
        fail_msg("cannot open %s or %s", expected_path, actual_path);
    static char buf_a[65536], buf_b[65536];
    uint64_t offset = 0;
    for (;;) {
        size_t got_a = fread(buf_a, 1, sizeof buf_a, a);
        size_t got_b = fread(buf_b, 1, sizeof buf_b, b);
        if (got_a != got_b || memcmp(buf_a, buf_b, got_a) != 0)
            fail_msg("%s differs from %s near byte %llu", actual_path, expected_path,
                     (unsigned long long)offset);
        if (got_a == 0)
            break;
        offset += got_a;
    }
    fclose(a);
    fclose(b);
}

/* How many entries the downloads folder holds (temporary files included). */
static int downloads_count(void)
{
    DIR *dir = opendir(fx.downs);
    assert_non_null(dir);
    int count = 0;
    for (struct dirent *e; (e = readdir(dir));)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            count++;
    closedir(dir);
    return count;
}

static void downloads_clear(void)
{
    harness_rmtree(fx.downs);
    assert_int_equal(mkdir(fx.downs, 0700), 0);
}

static void path_in(char *out, size_t out_size, const char *dir, const char *name)
{
    int n = snprintf(out, out_size, "%s/%s", dir, name);
    assert_true(n > 0 && (size_t)n < out_size);
}

/* Writes size pseudo-random bytes (xorshift, fixed seed): incompressible
 * and the same on every run. */
static int write_file(const char *path, size_t size, uint64_t seed)
{
    FILE *file = fopen(path, "wb");
    if (!file)
        return -1;
    uint64_t x = seed;
    unsigned char buf[8192];
    for (size_t done = 0; done < size;) {
        size_t n = size - done < sizeof buf ? size - done : sizeof buf;
        for (size_t i = 0; i < n; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            buf[i] = (unsigned char)x;
        }
        if (fwrite(buf, 1, n, file) != n) {
            fclose(file);
            return -1;
        }
        done += n;
    }
    return fclose(file);
}

static void file_sha256(const char *path, char hex[65])
{
    size_t len = 0;
    char *bytes = harness_file_read(path, &len);
    unsigned char digest[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(digest, (const unsigned char *)bytes, len);
    sodium_bin2hex(hex, 65, digest, sizeof digest);
    free(bytes);
}

/* ==========================================================================
 * Setup
 * ======================================================================== */

static int group_setup(void **state)
{
    (void)state;
    memset(&fx, 0, sizeof fx);
    fx.dir = harness_tempdir("docs-cli");
    if (!fx.dir)
        return -1;
    snprintf(fx.keys, sizeof fx.keys, "%s/keys", fx.dir);
    snprintf(fx.store, sizeof fx.store, "%s/store", fx.dir);
    snprintf(fx.files, sizeof fx.files, "%s/files", fx.dir);
    snprintf(fx.downs, sizeof fx.downs, "%s/downloads", fx.dir);
    snprintf(fx.small, sizeof fx.small, "%s/diagnostic-emploi-logement.txt", fx.files);
    snprintf(fx.large, sizeof fx.large, "%s/etude-habitat.pdf", fx.files);
    if (mkdir(fx.store, 0700) != 0 || mkdir(fx.files, 0700) != 0 || mkdir(fx.downs, 0700) != 0)
        return -1;
    harness_cli_init(&fx.cli, fx.dir, fx.downs, CLI_DEADLINE_MS);

    FILE *small = fopen(fx.small, "w");
    if (!small)
        return -1;
    for (int i = 0; i < 200; i++)
        fprintf(small, "Diagnostic Emploi Logement, ligne %d: Pertuis, Meyrargues.\n", i);
    fclose(small);
    if (write_file(fx.large, LARGE_BYTES, 0x9e3779b97f4a7c15ull) != 0)
        return -1;

    if (harness_keys_make(fx.keys) != 0 || harness_redis_start(&fx.redis) != 0)
        return -1;
    harness_redis_setenv(&fx.redis);
    setenv("PASSERELLE_KEYS_DIR", fx.keys, 1);
    char store_env[600];
    snprintf(store_env, sizeof store_env, "PASSERELLE_DOCSTORE_DIR=%s", fx.store);
    /* At debug, the service logs whether each commit named the SHA-256
     * (a trailing checksum) or its begin did. */
    char *env[] = {store_env, "PASSERELLE_LOG_LEVEL=debug", NULL};
    /* The tests without a service still run if it does not start; the
     * others then fail, saying so. */
    if (harness_service_start(&fx.service, "docstore", fx.dir, env) != 0)
        fx.service.pid = 0;
    harness_cli_service(&fx.cli, NULL, fx.service.endpoint, fx.keys);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    bool clean = true;
    if (fx.service.pid > 0)
        clean = harness_service_stop_clean(&fx.service);
    harness_redis_stop(&fx.redis);
    if (fx.dir) {
        harness_rmtree(fx.dir);
        free(fx.dir);
    }
    return clean ? 0 : -1;
}

/* ==========================================================================
 * Without a service
 * ======================================================================== */

static void test_help_lists_docs_commands(void **state)
{
    (void)state;
    harness_run_t run = run_cli("--help");
    harness_assert_exit(&run, 0);
    const char *expected[] = {"docs put FILE",
                              "docs get ID",
                              "docs list",
                              "docs show ID",
                              "docs versions ID",
                              "docs withdraw ID",
                              "docs fsck",
                              "PASSERELLE_DOCSTORE_ENDPOINT",
                              "--visibility shared|private",
                              "unit register"};
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++)
        harness_assert_contains(run.out, expected[i]);
    harness_run_free(&run);

    run = run_cli("help", "docs", "get");
    harness_assert_exit(&run, 0);
    harness_assert_contains(run.out, "docs get ID [--version N] [-o FILE]");
    assert_null(strstr(run.out, "docs put"));
    harness_run_free(&run);

    run = run_cli("docs", "put", "--help");
    harness_assert_exit(&run, 0);
    harness_assert_contains(run.out, "--tag (repeatable)");
    harness_run_free(&run);
}

static void test_usage_errors_exit_2(void **state)
{
    (void)state;
    const char *k = fx.keys;
    struct {
        const char *args[12];
        const char *says;
    } cases[] = {
        {{"docs", NULL}, "needs a command"},
        {{"docs", "frobnicate", NULL}, "unknown command 'docs frobnicate'"},
        {{"docs", "put", "--keys", k, NULL}, "needs a FILE"},
        {{"docs", "put", fx.small, "--keys", k, "--kind", "study", "--theme", "1", NULL},
         "--title"},
        {{"docs", "put", fx.small, "--keys", k, "--title", "T", "--kind", "poem", "--theme", "1",
          NULL},
         "--kind: 'poem'"},
        {{"docs", "put", fx.small, "--keys", k, "--title", "T", "--kind", "study", "--theme", "4",
          NULL},
         "--theme: '4'"},
        {{"docs", "put", "/nonexistent/file.pdf", "--keys", k, "--title", "T", "--kind", "study",
          "--theme", "1", NULL},
         "cannot open"},
        {{"docs", "put", fx.files, "--keys", k, "--title", "T", "--kind", "study", "--theme", "1",
          NULL},
         "not a regular file"},
        {{"docs", "get", "--keys", k, NULL}, "needs a document ID"},
        {{"docs", "get", "F01", "--keys", k, "--version", "two", NULL}, "--version: 'two'"},
        {{"docs", "get", "F01", "-o", NULL}, "-o needs a value"},
        {{"docs", "list", "--colour", "red", NULL}, "unknown flag --colour"},
        {{"docs", "show", "F01", "F02", NULL}, "unexpected argument 'F02'"},
        {{"docs", "list", "--keys", "/nonexistent/keys", NULL}, "cannot read"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const char **a = cases[c].args;
        harness_run_t run =
            run_cli(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10]);
        harness_assert_exit(&run, 2);
        harness_assert_contains(run.err, cases[c].says);
        assert_string_equal(run.out, "");
        harness_run_free(&run);
    }
}

static void test_unreachable_exits_3(void **state)
{
    (void)state;
    char endpoint[64], env_endpoint[96];
    snprintf(endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", harness_free_port());
    harness_run_t run = run_cli("docs", "list", "--endpoint", endpoint, "--keys", fx.keys,
                                "--timeout-ms", "200", "--retries", "1");
    harness_assert_exit(&run, 3);
    harness_assert_contains(run.err, "UNAVAILABLE");
    harness_assert_contains(run.err, endpoint);
    harness_run_free(&run);

    /* Without --endpoint, the docs commands ask PASSERELLE_DOCSTORE_ENDPOINT
     * (and not the reservations service's variable). */
    snprintf(env_endpoint, sizeof env_endpoint, "PASSERELLE_DOCSTORE_ENDPOINT=%s", endpoint);
    const char *env[] = {env_endpoint, "PASSERELLE_RESERVATIONS_ENDPOINT=tcp://127.0.0.1:9", NULL};
    run = run_cli_env(env, "docs", "put", fx.small, "--keys", fx.keys, "--title", "T", "--kind",
                      "study", "--theme", "1", "--timeout-ms", "200", "--retries", "0", NULL);
    harness_assert_exit(&run, 3);
    harness_assert_contains(run.err, endpoint);
    harness_run_free(&run);
}

/* ==========================================================================
 * With the service
 * ======================================================================== */

static void test_put_and_get_round_trips(void **state)
{
    (void)state;
    need_service();
    harness_run_t run = run_as("metropole", "docs", "put", fx.small, "--title",
                               "Diagnostic emploi logement du pays d'Aix", "--kind",
                               "employment_housing_diagnostic", "--theme", "1", "--territory",
                               "CT2", "--tag", "emploi,diagnostic", "--id-only");
    harness_assert_exit(&run, 0);
    size_t id_len = strcspn(run.out, "\n");
    assert_true(id_len > 1 && id_len < sizeof fx.small_id && run.out[0] == 'F');
    memcpy(fx.small_id, run.out, id_len);
    harness_run_free(&run);

    /* The large one through --json: the service's record of it. */
    run = run_as("metropole", "docs", "put", fx.large, "--title", "Étude habitat 2024", "--kind",
                 "study", "--theme", "2", "--visibility", "private", "--json");
    harness_assert_exit(&run, 0);
    assert_null(strchr(run.err, '\r')); /* no progress bar: stderr is a file */
    json_t *doc = harness_parse_json(run.out);
    snprintf(fx.large_id, sizeof fx.large_id, "%s",
             json_string_value(json_object_get(doc, "id"))
                 ? json_string_value(json_object_get(doc, "id"))
                 : "");
    assert_true(fx.large_id[0] == 'F');
    json_t *v1 = json_array_get(json_object_get(doc, "versions"), 0);
    assert_non_null(v1);
    assert_int_equal(json_integer_value(json_object_get(v1, "size")), LARGE_BYTES);
    char sha[65];
    file_sha256(fx.large, sha);
    assert_string_equal(json_string_value(json_object_get(v1, "sha256")), sha);
    assert_string_equal(json_string_value(json_object_get(v1, "filename")), "etude-habitat.pdf");
    assert_string_equal(json_string_value(json_object_get(v1, "media_type")), "application/pdf");
    json_decref(doc);
    harness_run_free(&run);

    /* Back again, byte for byte, to a named file and to the default name. */
    char out[1024];
    path_in(out, sizeof out, fx.downs, "large.bin");
    run = run_as("metropole", "docs", "get", fx.large_id, "-o", out);
    harness_assert_exit(&run, 0);
    assert_null(strchr(run.err, '\r'));
    harness_run_free(&run);
    assert_same_file(fx.large, out);

    run = run_as("partner", "docs", "get", fx.small_id);
    harness_assert_exit(&run, 0);
    harness_run_free(&run);
    path_in(out, sizeof out, fx.downs, "diagnostic-emploi-logement.txt");
    assert_same_file(fx.small, out);
    assert_int_equal(downloads_count(), 2); /* no temporary file left */

    /* "-o -": standard output, nothing written in the folder */
    run = run_as("partner", "docs", "get", fx.small_id, "-o", "-");
    harness_assert_exit(&run, 0);
    char *expected = harness_file_read(fx.small, NULL);
    assert_string_equal(run.out, expected);
    free(expected);
    harness_run_free(&run);
    assert_int_equal(downloads_count(), 2);

    /* A private document is its owner's: another party gets an error and
     * no file. */
    run = run_as("partner", "docs", "get", fx.large_id, "-o", "private.bin");
    harness_assert_exit(&run, 1);
    harness_assert_contains(run.err, "error: ");
    harness_run_free(&run);
    assert_int_equal(downloads_count(), 2);
    downloads_clear();
}

static void test_list_show_versions(void **state)
{
    (void)state;
    need_service();
    assert_true(fx.small_id[0] && fx.large_id[0]);

    harness_run_t run = run_as("metropole", "docs", "list");
    harness_assert_exit(&run, 0);
    harness_assert_contains(run.out, fx.small_id);
    harness_assert_contains(run.out, fx.large_id);
    harness_assert_contains(run.out, "employment_housing_diagnostic  theme 1  CT2  ");
    harness_assert_contains(run.out, "\"Diagnostic emploi logement du pays d'Aix\"");
    harness_assert_contains(run.out, "private");
    harness_run_free(&run);

    run = run_as("partner", "docs", "list", "--all", "--id-only");
    harness_assert_exit(&run, 0);
    harness_assert_contains(run.out, fx.small_id);
    assert_null(strstr(run.out, fx.large_id)); /* private to the Métropole */
    harness_run_free(&run);

    run = run_as("admin", "docs", "list", "--tag", "emploi", "--json");
    harness_assert_exit(&run, 0);
    json_t *list = harness_parse_json(run.out);
    json_t *docs = json_object_get(list, "documents");
    assert_int_equal(json_array_size(docs), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(docs, 0), "id")),
                        fx.small_id);
    json_decref(list);
    harness_run_free(&run);

    run = run_as("admin", "docs", "list", "--kind", "study", "--id-only");
    harness_assert_exit(&run, 0);
    harness_assert_contains(run.out, fx.large_id);
    assert_null(strstr(run.out, fx.small_id));
    harness_run_free(&run);

    /* A second version of the small one, then its history. */
    run = run_as("metropole", "docs", "put", fx.large, "--document", fx.small_id);
    harness_assert_exit(&run, 0);
    harness_assert_contains(run.out, fx.small_id);
    harness_assert_contains(run.out, "v2 20.0 MiB");
    harness_run_free(&run);

    run = run_as("metropole", "docs", "show", fx.small_id);
    harness_assert_exit(&run, 0);
    harness_assert_contains(run.out, "tags: emploi, diagnostic");
    harness_assert_contains(run.out, "v1  ");
    harness_assert_contains(run.out, "v2  ");
    harness_run_free(&run);

    run = run_as("metropole", "docs", "versions", fx.small_id);
    harness_assert_exit(&run, 0);
    harness_assert_contains(run.out, "diagnostic-emploi-logement.txt  text/plain");
    harness_assert_contains(run.out, "etude-habitat.pdf  application/pdf");
    harness_run_free(&run);

    /* Only the owner party adds versions. */
    run = run_as("partner", "docs", "put", fx.small, "--document", fx.small_id);
    harness_assert_exit(&run, 1);
    harness_run_free(&run);

    run = run_as("metropole", "docs", "show", "F01ARZ3NDEKTSV4RRFFQ69G5FAV");
    harness_assert_exit(&run, 1);
    harness_run_free(&run);
}

static void test_withdraw_then_get_fails(void **state)
{
    (void)state;
    need_service();
    harness_run_t run =
        run_as("metropole", "docs", "withdraw", fx.large_id, "--reason", "superseded");
    harness_assert_exit(&run, 0);
    harness_assert_contains(run.out, "(withdrawn)");
    harness_run_free(&run);

    run = run_as("metropole", "docs", "versions", fx.large_id);
    harness_assert_exit(&run, 0);
    harness_assert_contains(run.out, "WITHDRAWN");
    harness_assert_contains(run.out, "superseded");
    harness_run_free(&run);

    run = run_as("metropole", "docs", "get", fx.large_id, "-o", "large.bin");
    harness_assert_exit(&run, 1);
    harness_run_free(&run);
    run = run_as("metropole", "docs", "get", fx.large_id, "--version", "1", "-o", "large.bin");
    harness_assert_exit(&run, 1);
    harness_run_free(&run);
    assert_int_equal(downloads_count(), 0);
}

/* Around the size that goes whole in upload.begin (one chunk, 1 MiB): an
 * empty file and one of exactly a chunk go in one request, one byte more
 * goes in chunks; all come back byte for byte. */
static void test_put_whole_and_chunked_sizes(void **state)
{
    (void)state;
    need_service();
    const size_t sizes[] = {0, 1024 * 1024, 1024 * 1024 + 1};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        char name[32], path[1024], back[1024];
        snprintf(name, sizeof name, "taille-%zu.bin", sizes[i]);
        path_in(path, sizeof path, fx.files, name);
        assert_int_equal(write_file(path, sizes[i], 0x51ed27 + i), 0);
        harness_run_t run = run_as("operator", "docs", "put", path, "--title", name, "--kind",
                                   "other", "--theme", "3", "--id-only");
        harness_assert_exit(&run, 0);
        char id[64];
        size_t id_len = strcspn(run.out, "\n");
        assert_true(id_len > 1 && id_len < sizeof id && run.out[0] == 'F');
        memcpy(id, run.out, id_len);
        id[id_len] = '\0';
        harness_run_free(&run);
        path_in(back, sizeof back, fx.downs, name);
        run = run_as("partner", "docs", "get", id, "-o", back);
        harness_assert_exit(&run, 0);
        harness_run_free(&run);
        assert_same_file(path, back);
    }
    downloads_clear();
}

/* How many commits the service logged whose SHA-256 came with the commit
 * (trailing) or, trailing false, with the begin. */
static int commits_logged(bool trailing)
{
    char *log = harness_file_read(fx.service.log_path, NULL);
    assert_non_null(log);
    const char *needle = trailing ? "\"trailing_sha256\":true" : "\"trailing_sha256\":false";
    int n = 0;
    for (const char *at = log; (at = strstr(at, needle)); at++)
        n++;
    free(log);
    return n;
}

/* A file of several chunks: by default hashed as it is sent, its SHA-256
 * named by the commit; with --hash-first, hashed before and named by the
 * begin. Either way the version's SHA-256 is the file's, its bytes come
 * back, and the same bytes are one blob. --hash-first takes no value. */
static void test_put_trailing_and_hash_first(void **state)
{
    (void)state;
    need_service();
    char path[1024], back[1024], sha[65];
    path_in(path, sizeof path, fx.files, "plusieurs-morceaux.bin");
    assert_int_equal(write_file(path, 3 * 1024 * 1024 + 4321, 0x7ab1e5), 0);
    file_sha256(path, sha);
    const char *modes[] = {NULL, "--hash-first"};
    char ids[2][64];
    for (int i = 0; i < 2; i++) {
        int trailing_before = commits_logged(true), first_before = commits_logged(false);
        harness_run_t run =
            modes[i] ? run_as("metropole", "docs", "put", path, "--title", "Plusieurs morceaux",
                              "--kind", "study", "--theme", "2", modes[i], "--json")
                     : run_as("metropole", "docs", "put", path, "--title", "Plusieurs morceaux",
                              "--kind", "study", "--theme", "2", "--json");
        harness_assert_exit(&run, 0);
        json_t *doc = harness_parse_json(run.out);
        json_t *v1 = json_array_get(json_object_get(doc, "versions"), 0);
        assert_non_null(v1);
        assert_string_equal(json_string_value(json_object_get(v1, "sha256")), sha);
        snprintf(ids[i], sizeof ids[i], "%s", json_string_value(json_object_get(doc, "id")));
        json_decref(doc);
        harness_run_free(&run);
        assert_int_equal(commits_logged(true), trailing_before + (i == 0));
        assert_int_equal(commits_logged(false), first_before + (i == 1));

        path_in(back, sizeof back, fx.downs, "retour.bin");
        run = run_as("partner", "docs", "get", ids[i], "-o", back);
        harness_assert_exit(&run, 0);
        harness_run_free(&run);
        assert_same_file(path, back);
        downloads_clear();
    }
    assert_string_not_equal(ids[0], ids[1]);
    char blob[1024];
    harness_doc_blob_path(fx.store, sha, "", blob, sizeof blob);
    struct stat st;
    assert_int_equal(stat(blob, &st), 0);

    harness_run_t run = run_as("metropole", "docs", "put", path, "--title", "x", "--kind", "study",
                               "--theme", "2", "--hash-first=yes");
    harness_assert_exit(&run, 2);
    harness_assert_contains(run.err, "--hash-first takes no value");
    harness_run_free(&run);
}

static void test_fsck_clean(void **state)
{
    (void)state;
    need_service();
    harness_run_t run = run_as("admin", "docs", "fsck");
    harness_assert_exit(&run, 0);
    harness_assert_contains(run.out, "0 corrupt, 0 missing, 0 orphaned");
    harness_run_free(&run);

    run = run_as("admin", "docs", "fsck", "--json");
    harness_assert_exit(&run, 0);
    json_t *json = harness_parse_json(run.out);
    assert_true(json_integer_value(json_object_get(json, "blobs_checked")) >= 2);
    json_decref(json);
    harness_run_free(&run);

    run = run_as("metropole", "docs", "fsck");
    harness_assert_exit(&run, 1);
    harness_assert_contains(run.err, "PERMISSION_DENIED");
    harness_run_free(&run);
}

/* Last: a byte of the small file's blob flipped on disk. */
static void test_corrupt_blob_refused_and_reported(void **state)
{
    (void)state;
    need_service();
    char sha[65], blob[1200], sub[1024];
    file_sha256(fx.small, sha);
    char shard[3] = {sha[0], sha[1], '\0'};
    path_in(sub, sizeof sub, fx.store, "blobs");
    char shard_dir[1100];
    path_in(shard_dir, sizeof shard_dir, sub, shard);
    path_in(blob, sizeof blob, shard_dir, sha);
    /* the blob may be kept read-only */
    assert_int_equal(chmod(blob, 0600), 0);
    int fd = open(blob, O_RDWR);
    assert_true(fd >= 0);
    unsigned char byte;
    assert_int_equal(pread(fd, &byte, 1, 100), 1);
    byte ^= 0xff;
    assert_int_equal(pwrite(fd, &byte, 1, 100), 1);
    close(fd);

    harness_run_t run =
        run_as("metropole", "docs", "get", fx.small_id, "--version", "1", "-o", "v1.txt");
    harness_assert_exit(&run, 1);
    harness_assert_contains(run.err, "DATA_LOSS");
    harness_run_free(&run);
    assert_int_equal(downloads_count(), 0);

    run = run_as("admin", "docs", "fsck");
    harness_assert_exit(&run, 1);
    harness_assert_contains(run.out, "corrupt");
    harness_assert_contains(run.out, sha);
    harness_run_free(&run);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help_lists_docs_commands),
        cmocka_unit_test(test_usage_errors_exit_2),
        cmocka_unit_test(test_unreachable_exits_3),
        cmocka_unit_test(test_put_and_get_round_trips),
        cmocka_unit_test(test_list_show_versions),
        cmocka_unit_test(test_withdraw_then_get_fails),
        cmocka_unit_test(test_put_whole_and_chunked_sizes),
        cmocka_unit_test(test_put_trailing_and_hash_first),
        cmocka_unit_test(test_fsck_clean),
        cmocka_unit_test(test_corrupt_blob_refused_and_reported),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
