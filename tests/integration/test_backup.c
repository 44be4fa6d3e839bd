/* Backup and restore as an operator runs them: deploy/backup against a
 * running system, deploy/restore into fresh folders of a stopped one, and
 * the system started again on what was restored.
 *
 * Redis runs with the shipped configuration (deploy/redis.conf), the real
 * reservations and docstore services over CURVE. Units, a convention and
 * documents (two, one of them with a second version) are written; the
 * backup is taken; more is written (a unit, a document, a third version);
 * everything stops. Restored into new folders and started again on them,
 * the system must hold exactly what was written before the backup: the
 * units and the convention by id, the documents byte for byte in each
 * version, the event streams as they were, no blob missing or corrupt; and
 * it must go on: a new unit gets a later id, an idempotency key used before
 * the backup still gets its first answer. The restore must also refuse a
 * backup whose RDB no longer matches its checksum, and a folder that holds
 * data unless told --force, which then replaces that data only.
 *
 * The tests run in order and share one fixture, each building on the one
 * before. The scripts come from PASSERELLE_TEST_SOURCE_DIR/deploy. Most of
 * the time is Redis's own repl-diskless-sync-delay (5 s), which passes
 * before it sends the snapshot. */
#define _GNU_SOURCE
#include "harness.h"

#include "ids.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <sodium.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define SCRIPT_DEADLINE_MS 60000
#define REDIS_WAIT_MS      10000
#define IDEMPOTENCY_KEY    "backup-register-ANAH-84089-7003"

#define OK        PASSERELLE__STATUS__STATUS_OK
#define NOT_FOUND PASSERELLE__STATUS__STATUS_NOT_FOUND

/* A document file the test uploads: its path, size and the seed of its
 * bytes. */
typedef struct {
    const char *name;
    size_t size;
    unsigned seed;
    char path[700];
} doc_file_t;

enum { FILE_A1, FILE_A2, FILE_B, FILE_C, FILE_A3, FILE_D, N_FILES };

static doc_file_t files[N_FILES] = {
    {"etude-habitat-v1.pdf", 300000, 11, ""}, {"etude-habitat-v2.pdf", 250001, 12, ""},
    {"diagnostic-ct2.pdf", 200003, 13, ""},   {"after-backup.pdf", 150000, 14, ""},
    {"etude-habitat-v3.pdf", 120000, 15, ""}, {"after-restore.txt", 1000, 16, ""},
};

typedef struct {
    char *dir;          /* temporary folder: everything below */
    char keys[512];     /* one client per party */
    char source[512];   /* PASSERELLE_TEST_SOURCE_DIR */
    char backup[600];   /* the backup's folder, made by deploy/backup */
    char restored[600]; /* the folder the restore goes into */
    harness_redis_t redis;
    harness_service_t reservations, docstore;
    client_t *client;      /* of the reservations service, as an operator */
    harness_cli_t cli;     /* the passerelle CLI against the docstore */
    harness_cli_t scripts; /* deploy/backup and deploy/restore */
    int generation;        /* 0 before the restore, 1 after */

    /* written before the backup */
    char unit_pertuis[ID_LEN], unit_envisaged[ID_LEN], unit_keyed[ID_LEN];
    char doc_a[64], doc_b[64];
    size_t events_before; /* reservations:events, through event.list */
    char last_position[64];
    long long docstore_events, dbsize;
    /* written after it */
    char unit_after[ID_LEN], doc_c[64];
} fixture_t;

static fixture_t fx;

/* ==========================================================================
 * Helpers
 * ======================================================================== */

static void path_in(char *out, size_t size, const char *dir, const char *name)
{
    int n = snprintf(out, size, "%s/%s", dir, name);
    assert_true(n > 0 && (size_t)n < size);
}

/* A connection to the current Redis (caller destroys). */
static store_t *redis_store(void)
{
    store_config_t cfg;
    harness_redis_config(&fx.redis, &cfg);
    store_t *store = store_new(&cfg);
    assert_non_null(store);
    return store;
}

/* Redis's integer answer to the command, with key as its argument when
 * not NULL (DBSIZE, XLEN key). */
static long long redis_integer(const char *command, const char *key)
{
    store_t *store = redis_store();
    redisReply *reply = NULL;
    const char *argv[] = {command, key};
    assert_int_equal(store_command_argv(store, &reply, key ? 2 : 1, argv, NULL), STORE_OK);
    assert_int_equal(reply->type, REDIS_REPLY_INTEGER);
    long long value = reply->integer;
    freeReplyObject(reply);
    store_destroy(&store);
    return value;
}

/* True once Redis answers PING with the password. Plain hiredis rather
 * than a store_t, which would log every refused connection while Redis
 * starts. */
static bool redis_answers(const harness_redis_t *redis)
{
    struct timeval timeout = {0, 200000};
    redisContext *ctx = redisConnectWithTimeout("127.0.0.1", redis->port, timeout);
    bool ok = false;
    if (ctx && !ctx->err) {
        redisSetTimeout(ctx, timeout);
        redisReply *pong = redisCommand(ctx, "AUTH %s", redis->password);
        if (pong && pong->type == REDIS_REPLY_STATUS) {
            freeReplyObject(pong);
            pong = redisCommand(ctx, "PING");
            ok = pong && pong->type == REDIS_REPLY_STATUS && strcmp(pong->str, "PONG") == 0;
        }
        if (pong)
            freeReplyObject(pong);
    }
    if (ctx)
        redisFree(ctx);
    return ok;
}

/* Starts redis-server as deploy/redis.conf configures it, with this
 * folder, a free port and a new password, as ./dev and the passerelle-redis
 * image do; waits until it answers. 0 or -1. */
static int redis_start_shipped(harness_redis_t *redis, const char *data_dir, const char *log_name)
{
    memset(redis, 0, sizeof *redis);
    snprintf(redis->dir, sizeof redis->dir, "%s", data_dir);
    uint8_t random[16];
    randombytes_buf(random, sizeof random);
    sodium_bin2hex(redis->password, sizeof redis->password, random, sizeof random);
    char conf[600], log[600], port[16];
    snprintf(conf, sizeof conf, "%s/deploy/redis.conf", fx.source);
    snprintf(log, sizeof log, "%s/%s", fx.dir, log_name);
    if (mkdir(data_dir, 0700) != 0 && errno != EEXIST)
        return -1;

    /* The port is free when asked, and may be taken before Redis binds it:
     * then another one. */
    for (int attempt = 0; attempt < 5; attempt++) {
        redis->port = harness_free_port();
        snprintf(port, sizeof port, "%d", redis->port);
        pid_t pid = fork();
        if (pid == -1)
            return -1;
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            int null = open("/dev/null", O_RDWR);
            if (null != -1) {
                dup2(null, STDIN_FILENO);
                dup2(null, STDOUT_FILENO);
            }
            execlp("redis-server", "redis-server", conf, "--dir", data_dir, "--port", port,
                   "--bind", "127.0.0.1", "--requirepass", redis->password, "--daemonize", "no",
                   "--logfile", log, (char *)NULL);
            _exit(127);
        }
        redis->pid = pid;
        bool up = false, exited = false;
        for (int64_t deadline = time_now_ms() + REDIS_WAIT_MS; time_now_ms() < deadline;) {
            if (redis_answers(redis)) {
                up = true;
                break;
            }
            if (waitpid(pid, NULL, WNOHANG) == pid) {
                exited = true;
                break;
            }
            struct timespec pause = {0, 20 * 1000000L};
            nanosleep(&pause, NULL);
        }
        if (up)
            return 0;
        redis->pid = 0;
        if (!exited) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            break;
        }
    }
    fprintf(stderr, "redis-server did not start on %s (log: %s)\n", data_dir, log);
    return -1;
}

/* Starts both services on the current Redis, logging into log_dir, the
 * docstore on store_dir; the operator's client and the CLI point at them. */
static int services_start(const char *log_dir, const char *store_dir)
{
    harness_redis_setenv(&fx.redis);
    if (mkdir(log_dir, 0700) != 0 && errno != EEXIST)
        return -1;
    char store_env[700];
    snprintf(store_env, sizeof store_env, "PASSERELLE_DOCSTORE_DIR=%s", store_dir);
    char *env[] = {store_env, NULL};
    if (harness_service_start(&fx.reservations, "reservations", log_dir, NULL) != 0 ||
        harness_service_start(&fx.docstore, "docstore", log_dir, env) != 0)
        return -1;
    fx.client = harness_client(fx.reservations.endpoint, fx.keys, "operator",
                               HARNESS_STACK_CLIENT_TIMEOUT_MS, HARNESS_STACK_CLIENT_RETRIES);
    harness_cli_service(&fx.cli, NULL, fx.docstore.endpoint, fx.keys);
    return fx.client ? 0 : -1;
}

/* Stops both services (failing on an unclean stop or a sanitizer's
 * report) and the client. */
static bool services_stop(void)
{
    client_destroy(&fx.client);
    bool clean = harness_service_stop_checked(&fx.reservations);
    clean = harness_service_stop_checked(&fx.docstore) && clean;
    memset(&fx.reservations, 0, sizeof fx.reservations);
    memset(&fx.docstore, 0, sizeof fx.docstore);
    return clean;
}

/* Runs deploy/<script> with the NULL-terminated arguments, each
 * "NAME=value" of env (may be NULL) in its environment. */
#define run_script(script, env, ...)                                                               \
    (set_script(script), harness_run_cli(&fx.scripts, env, __VA_ARGS__, NULL))

static void set_script(const char *script)
{
    snprintf(fx.scripts.binary, sizeof fx.scripts.binary, "%s/deploy/%s", fx.source, script);
}

/* Runs the CLI against the docstore as the named party. */
#define run_docs(name, ...) harness_run_cli_as(&fx.cli, name, "docs", __VA_ARGS__, NULL)

/* Uploads a file as the Métropole, as a new document (document NULL) or a
 * new version of one; writes the new document's id into id when not
 * NULL. */
static void docs_put(const doc_file_t *file, const char *document, char id[64])
{
    harness_run_t run =
        document ? run_docs("metropole", "put", file->path, "--document", document, "--id-only")
                 : run_docs("metropole", "put", file->path, "--title", file->name, "--kind",
                            "study", "--theme", "1", "--territory", "CT2", "--id-only");
    harness_assert_exit(&run, 0);
    if (id) {
        size_t len = strcspn(run.out, "\n");
        assert_true(len > 1 && len < 64 && run.out[0] == 'F');
        memcpy(id, run.out, len);
        id[len] = '\0';
    }
    harness_run_free(&run);
}

/* Fails unless the document's version (0: the latest) reads back as the
 * file's bytes, through `passerelle docs get`. */
static void expect_document(const char *id, int version, const doc_file_t *file)
{
    char out[700], version_arg[16];
    path_in(out, sizeof out, fx.dir, "download.bin");
    unlink(out);
    snprintf(version_arg, sizeof version_arg, "%d", version);
    harness_run_t run = version
                            ? run_docs("metropole", "get", id, "--version", version_arg, "-o", out)
                            : run_docs("metropole", "get", id, "-o", out);
    harness_assert_exit(&run, 0);
    harness_run_free(&run);
    size_t got_len = 0, want_len = 0;
    char *got = harness_file_read(out, &got_len);
    char *want = harness_file_read(file->path, &want_len);
    assert_int_equal(want_len, file->size);
    assert_int_equal(got_len, want_len);
    assert_memory_equal(got, want, want_len);
    free(got);
    free(want);
}

/* The sizes of the document's versions, in order, from `docs show --json`;
 * returns how many there are (at most max). */
static size_t document_versions(const char *id, long long *sizes, size_t max)
{
    harness_run_t run = run_docs("metropole", "show", id, "--json");
    harness_assert_exit(&run, 0);
    json_t *doc = harness_parse_json(run.out);
    json_t *versions = json_object_get(doc, "versions");
    assert_true(json_is_array(versions));
    size_t n = json_array_size(versions);
    for (size_t i = 0; i < n && i < max; i++)
        sizes[i] = json_integer_value(json_object_get(json_array_get(versions, i), "size"));
    json_decref(doc);
    harness_run_free(&run);
    return n;
}

static Passerelle__Unit *unit_get(const char *id)
{
    Passerelle__UnitGetRequest req = PASSERELLE__UNIT_GET_REQUEST__INIT;
    req.id = (char *)id;
    return (Passerelle__Unit *)harness_call_ok(fx.client, "unit.get", &req.base,
                                               &passerelle__unit__descriptor);
}

/* unit.register of the keyed request, with its fixed idempotency key;
 * returns the unit's id in id. */
static void register_keyed(char id[ID_LEN])
{
    Passerelle__UnitRegisterRequest req;
    harness_unit_request(&req, "ANAH-84089-7003");
    Passerelle__Reply *reply =
        harness_call_keyed(fx.client, "unit.register", &req.base, IDEMPOTENCY_KEY, OK, NULL);
    Passerelle__Unit *unit = passerelle__unit__unpack(NULL, reply->body.len, reply->body.data);
    assert_non_null(unit);
    snprintf(id, ID_LEN, "%s", unit->id);
    passerelle__unit__free_unpacked(unit, NULL);
    passerelle__reply__free_unpacked(reply, NULL);
}

static size_t events_count(char last_position[64])
{
    harness_events_t events;
    harness_events_read(fx.client, NULL, &events);
    size_t count = events.count;
    if (last_position)
        snprintf(last_position, 64, "%s", events.last_position);
    harness_events_free(&events);
    return count;
}

/* Flips one byte of a file in place (twice puts it back). */
static void flip_byte(const char *path, off_t offset)
{
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    unsigned char byte;
    assert_int_equal(pread(fd, &byte, 1, offset), 1);
    byte ^= 0x5a;
    assert_int_equal(pwrite(fd, &byte, 1, offset), 1);
    close(fd);
}

static bool exists(const char *dir, const char *name)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    struct stat st;
    return stat(path, &st) == 0;
}

static void write_text(const char *dir, const char *name, const char *text)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *file = fopen(path, "w");
    assert_non_null(file);
    fputs(text, file);
    fclose(file);
}

/* ==========================================================================
 * Setup
 * ======================================================================== */

static int group_setup(void **state)
{
    (void)state;
    memset(&fx, 0, sizeof fx);
    if (sodium_init() < 0)
        return -1;
    const char *source = getenv("PASSERELLE_TEST_SOURCE_DIR");
    if (!source || !*source) {
        fprintf(stderr, "PASSERELLE_TEST_SOURCE_DIR is not set: where are deploy/backup and "
                        "deploy/restore?\n");
        return -1;
    }
    snprintf(fx.source, sizeof fx.source, "%s", source);
    fx.dir = harness_tempdir("backup");
    if (!fx.dir)
        return -1;
    snprintf(fx.keys, sizeof fx.keys, "%s/keys", fx.dir);
    snprintf(fx.backup, sizeof fx.backup, "%s/backups/first", fx.dir);
    snprintf(fx.restored, sizeof fx.restored, "%s/restored", fx.dir);
    harness_cli_init(&fx.cli, fx.dir, fx.dir, SCRIPT_DEADLINE_MS);
    harness_cli_init(&fx.scripts, fx.dir, fx.dir, SCRIPT_DEADLINE_MS);

    char files_dir[600], data_dir[600], store_dir[600], logs[600];
    path_in(files_dir, sizeof files_dir, fx.dir, "files");
    path_in(data_dir, sizeof data_dir, fx.dir, "redis");
    path_in(store_dir, sizeof store_dir, fx.dir, "docstore");
    path_in(logs, sizeof logs, fx.dir, "logs-before");
    if (mkdir(files_dir, 0700) != 0)
        return -1;
    for (int i = 0; i < N_FILES; i++) {
        path_in(files[i].path, sizeof files[i].path, files_dir, files[i].name);
        uint8_t *bytes = harness_pattern(files[i].size, files[i].seed, 7);
        FILE *file = fopen(files[i].path, "wb");
        size_t written = file ? fwrite(bytes, 1, files[i].size, file) : 0;
        free(bytes);
        if (!file || fclose(file) != 0 || written != files[i].size)
            return -1;
    }
    if (harness_keys_make(fx.keys) != 0 ||
        redis_start_shipped(&fx.redis, data_dir, "redis-before.log") != 0)
        return -1;
    setenv("PASSERELLE_KEYS_DIR", fx.keys, 1);
    return services_start(logs, store_dir);
}

static int group_teardown(void **state)
{
    (void)state;
    bool clean = services_stop();
    harness_redis_stop(&fx.redis);
    if (fx.dir) {
        harness_rmtree(fx.dir);
        free(fx.dir);
    }
    return clean ? 0 : -1;
}

/* ==========================================================================
 * Before the backup, the backup, after it
 * ======================================================================== */

static void test_write_before_backup(void **state)
{
    (void)state;
    Passerelle__UnitRegisterRequest req;
    harness_unit_request(&req, "ANAH-84089-7001");
    harness_unit_register(fx.client, &req, fx.unit_pertuis);
    harness_envisaged_unit(fx.client, "ANAH-84089-7002", "Pertuis", fx.unit_envisaged);
    register_keyed(fx.unit_keyed);

    docs_put(&files[FILE_A1], NULL, fx.doc_a);
    docs_put(&files[FILE_A2], fx.doc_a, NULL);
    docs_put(&files[FILE_B], NULL, fx.doc_b);

    fx.events_before = events_count(fx.last_position);
    assert_int_equal(fx.events_before, 4); /* three registered, one envisaged */
    fx.docstore_events = redis_integer("XLEN", "docstore:events");
    assert_int_equal(fx.docstore_events, 3); /* two published, one version added */
    fx.dbsize = redis_integer("DBSIZE", NULL);
}

static void test_backup(void **state)
{
    (void)state;
    char password_file[600], docstore[600], password_env[700], docstore_env[700], port_env[64];
    path_in(password_file, sizeof password_file, fx.dir, "redis-password");
    write_text(fx.dir, "redis-password", fx.redis.password);
    path_in(docstore, sizeof docstore, fx.dir, "docstore");
    /* The password from a file, as in a container; the variable itself
     * empty, so that the file is what counts. */
    snprintf(password_env, sizeof password_env, "PASSERELLE_REDIS_PASSWORD_FILE=%s", password_file);
    snprintf(docstore_env, sizeof docstore_env, "PASSERELLE_DOCSTORE_DIR=%s", docstore);
    snprintf(port_env, sizeof port_env, "PASSERELLE_REDIS_PORT=%d", fx.redis.port);
    const char *env[] = {"PASSERELLE_REDIS_HOST=127.0.0.1",
                         port_env,
                         "PASSERELLE_REDIS_PASSWORD=",
                         password_env,
                         docstore_env,
                         NULL};

    harness_run_t run = run_script("backup", env, fx.backup);
    harness_assert_exit(&run, 0);
    harness_assert_contains(run.out, fx.backup);
    harness_assert_contains(run.err, "taking a snapshot");
    harness_run_free(&run);
    assert_true(exists(fx.backup, "redis.rdb"));
    assert_true(exists(fx.backup, "blobs"));
    char partial[700];
    snprintf(partial, sizeof partial, "%s.partial", fx.backup);
    assert_int_equal(access(partial, F_OK), -1);

    char manifest_path[700], line[96];
    path_in(manifest_path, sizeof manifest_path, fx.backup, "manifest");
    char *manifest = harness_file_read(manifest_path, NULL);
    harness_assert_contains(manifest, "format: passerelle-backup 1\n");
    snprintf(line, sizeof line, "redis_keys: %lld\n", fx.dbsize);
    harness_assert_contains(manifest, line);
    harness_assert_contains(manifest, "blobs: 3\n");
    snprintf(line, sizeof line, "blob_bytes: %zu\n",
             files[FILE_A1].size + files[FILE_A2].size + files[FILE_B].size);
    harness_assert_contains(manifest, line);
    harness_assert_contains(manifest, "redis_rdb_sha256: ");
    free(manifest);

    /* A backup never overwrites one. */
    run = run_script("backup", env, fx.backup);
    harness_assert_exit(&run, 1);
    harness_assert_contains(run.err, "exists already");
    harness_run_free(&run);

    /* The blobs from a command's tar, as from another container, with an
     * orphan the collector is removing (its block list gone already; a
     * blob of more than one block, 1 MiB, since one of one block has no
     * list): the same three blobs, the orphan left out. */
    static const char orphan_name[] =
        "ff00000000000000000000000000000000000000000000000000000000000000";
    char orphan_dir[700], orphan[800], from[800], second[700];
    snprintf(orphan_dir, sizeof orphan_dir, "%s/blobs/ff", docstore);
    assert_true(mkdir(orphan_dir, 0755) == 0 || errno == EEXIST);
    snprintf(orphan, sizeof orphan, "%s/%s", orphan_dir, orphan_name);
    FILE *orphan_file = fopen(orphan, "w");
    assert_non_null(orphan_file);
    for (int i = 0; i <= 1024 * 1024; i++)
        fputc('o', orphan_file);
    assert_int_equal(fclose(orphan_file), 0);
    snprintf(from, sizeof from, "tar -C '%s' -cf - blobs", docstore);
    snprintf(second, sizeof second, "%s-tar", fx.backup);
    run = run_script("backup", env, "--blobs-from", from, second);
    unlink(orphan);
    rmdir(orphan_dir); /* if the orphan was alone there */
    harness_assert_exit(&run, 0);
    harness_run_free(&run);
    path_in(manifest_path, sizeof manifest_path, second, "manifest");
    manifest = harness_file_read(manifest_path, NULL);
    harness_assert_contains(manifest, "blobs: 3\n");
    free(manifest);
}

static void test_write_after_backup(void **state)
{
    (void)state;
    Passerelle__UnitRegisterRequest req;
    harness_unit_request(&req, "ANAH-84089-7004");
    harness_unit_register(fx.client, &req, fx.unit_after);
    docs_put(&files[FILE_C], NULL, fx.doc_c);
    docs_put(&files[FILE_A3], fx.doc_a, NULL);
    assert_int_equal(events_count(NULL), fx.events_before + 1);

    /* Everything stops; the old folders stay, unused. */
    assert_true(services_stop());
    harness_redis_t old = fx.redis;
    old.dir[0] = '\0';
    harness_redis_stop(&old);
    memset(&fx.redis, 0, sizeof fx.redis);
}

/* ==========================================================================
 * Restore
 * ======================================================================== */

static void test_restore_refuses_a_damaged_rdb(void **state)
{
    (void)state;
    char rdb[700], target[700];
    path_in(rdb, sizeof rdb, fx.backup, "redis.rdb");
    path_in(target, sizeof target, fx.dir, "damaged");
    flip_byte(rdb, 40);
    harness_run_t run = run_script("restore", NULL, fx.backup, "--redis-dir", target);
    flip_byte(rdb, 40);
    harness_assert_exit(&run, 1);
    harness_assert_contains(run.err, "does not match its checksum");
    harness_run_free(&run);
    assert_int_equal(access(target, F_OK), -1); /* nothing made */
}

/* Entries of dir whose names start with a dot. */
static int hidden_entries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] == '.' && strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

static void test_restore_refuses_folders_with_data(void **state)
{
    (void)state;
    char redis_dir[700], store_dir[700], aof_dir[800];
    path_in(redis_dir, sizeof redis_dir, fx.dir, "occupied-redis");
    path_in(store_dir, sizeof store_dir, fx.dir, "occupied-docstore");
    path_in(aof_dir, sizeof aof_dir, redis_dir, "appendonlydir");
    assert_int_equal(mkdir(redis_dir, 0700), 0);
    assert_int_equal(mkdir(aof_dir, 0700), 0);
    assert_int_equal(mkdir(store_dir, 0700), 0);
    write_text(aof_dir, "appendonly.aof.manifest", "old\n");
    write_text(redis_dir, "password", "kept\n");
    write_text(store_dir, "notes", "kept\n");

    harness_run_t run = run_script("restore", NULL, fx.backup, "--redis-dir", redis_dir);
    harness_assert_exit(&run, 1);
    harness_assert_contains(run.err, "is not empty");
    harness_assert_contains(run.err, "--force");
    harness_run_free(&run);
    run = run_script("restore", NULL, fx.backup, "--docstore-dir", store_dir);
    harness_assert_exit(&run, 1);
    harness_assert_contains(run.err, "is not empty");
    harness_run_free(&run);
    char aof_manifest[900];
    path_in(aof_manifest, sizeof aof_manifest, aof_dir, "appendonly.aof.manifest");
    char *old = harness_file_read(aof_manifest, NULL);
    assert_string_equal(old, "old\n");
    free(old);
    assert_false(exists(store_dir, "blobs"));

    /* --force replaces Redis's data and the blobs, and only them. */
    run = run_script("restore", NULL, fx.backup, "--redis-dir", redis_dir, "--docstore-dir",
                     store_dir, "--force");
    harness_assert_exit(&run, 0);
    harness_run_free(&run);
    char *manifest = harness_file_read(aof_manifest, NULL);
    harness_assert_contains(manifest, "type b");
    free(manifest);
    assert_true(exists(redis_dir, "password"));
    assert_true(exists(store_dir, "notes"));
    assert_true(exists(store_dir, "blobs"));
    /* The replaced data was set aside, then removed: nothing hidden left. */
    assert_int_equal(hidden_entries(redis_dir), 0);
    assert_int_equal(hidden_entries(store_dir), 0);

    /* What a restore killed while replacing would leave: the next one
     * refuses to run beside it, saying what it may hold. */
    char aside[800];
    path_in(aside, sizeof aside, store_dir, ".passerelle-restore.replaced.AbC123");
    assert_int_equal(mkdir(aside, 0700), 0);
    run = run_script("restore", NULL, fx.backup, "--docstore-dir", store_dir, "--force");
    harness_assert_exit(&run, 1);
    harness_assert_contains(run.err, "did not finish");
    harness_assert_contains(run.err, "replacing");
    harness_run_free(&run);
    assert_int_equal(rmdir(aside), 0);
}

static void test_restore_into_fresh_folders(void **state)
{
    (void)state;
    char redis_dir[700], store_dir[700];
    path_in(redis_dir, sizeof redis_dir, fx.restored, "redis");
    path_in(store_dir, sizeof store_dir, fx.restored, "docstore");
    harness_run_t run = run_script("restore", NULL, fx.backup, "--redis-dir", redis_dir,
                                   "--docstore-dir", store_dir);
    harness_assert_exit(&run, 0);
    char says[128];
    snprintf(says, sizeof says, "redis: %lld keys into ", fx.dbsize);
    harness_assert_contains(run.out, says);
    harness_assert_contains(run.out, "docstore: 3 blobs");
    harness_run_free(&run);
    /* The shipped layout, and nothing else. */
    assert_true(exists(redis_dir, "appendonlydir/appendonly.aof.manifest"));
    assert_false(exists(redis_dir, "redis.rdb"));

    char logs[700];
    path_in(logs, sizeof logs, fx.dir, "logs-after");
    assert_int_equal(redis_start_shipped(&fx.redis, redis_dir, "redis-after.log"), 0);
    assert_int_equal(redis_integer("DBSIZE", NULL), fx.dbsize);
    assert_int_equal(services_start(logs, store_dir), 0);
    fx.generation = 1;
}

static void test_restored_records_and_events(void **state)
{
    (void)state;
    assert_int_equal(fx.generation, 1);
    Passerelle__Unit *unit = unit_get(fx.unit_pertuis);
    assert_string_equal(unit->external_ref, "ANAH-84089-7001");
    assert_string_equal(unit->commune_name, "Pertuis");
    passerelle__unit__free_unpacked(unit, NULL);
    unit = unit_get(fx.unit_envisaged);
    assert_int_equal(unit->convention_state, PASSERELLE__CONVENTION_STATE__CONVENTION_ENVISAGED);
    passerelle__unit__free_unpacked(unit, NULL);

    Passerelle__ConventionGetRequest conv = PASSERELLE__CONVENTION_GET_REQUEST__INIT;
    conv.unit = fx.unit_envisaged;
    Passerelle__Convention *convention = (Passerelle__Convention *)harness_call_ok(
        fx.client, "convention.get", &conv.base, &passerelle__convention__descriptor);
    assert_int_equal(convention->state, PASSERELLE__CONVENTION_STATE__CONVENTION_ENVISAGED);
    assert_int_equal(convention->level, PASSERELLE__CONVENTION_LEVEL__LEVEL_LOC2);
    passerelle__convention__free_unpacked(convention, NULL);

    /* What came after the backup is not there. */
    Passerelle__UnitGetRequest after = PASSERELLE__UNIT_GET_REQUEST__INIT;
    after.id = fx.unit_after;
    harness_call_refused(fx.client, "unit.get", &after.base, NOT_FOUND, NULL);

    /* The streams as they were at the backup. */
    char last_position[64];
    assert_int_equal(events_count(last_position), fx.events_before);
    assert_string_equal(last_position, fx.last_position);
    assert_int_equal(redis_integer("XLEN", "docstore:events"), fx.docstore_events);
}

static void test_restored_documents(void **state)
{
    (void)state;
    assert_int_equal(fx.generation, 1);
    expect_document(fx.doc_a, 0, &files[FILE_A2]);
    expect_document(fx.doc_a, 1, &files[FILE_A1]);
    expect_document(fx.doc_a, 2, &files[FILE_A2]);
    expect_document(fx.doc_b, 0, &files[FILE_B]);
    long long sizes[4];
    assert_int_equal(document_versions(fx.doc_a, sizes, 4), 2); /* not the third */
    assert_int_equal(sizes[0], files[FILE_A1].size);
    assert_int_equal(sizes[1], files[FILE_A2].size);

    harness_run_t run = run_docs("metropole", "show", fx.doc_c);
    harness_assert_exit(&run, 1);
    harness_assert_contains(run.err, "NOT_FOUND");
    harness_run_free(&run);

    run = run_docs("admin", "fsck");
    harness_assert_exit(&run, 0);
    harness_assert_contains(run.out, "0 corrupt, 0 missing, 0 orphaned");
    harness_run_free(&run);
}

static void test_writes_after_restore(void **state)
{
    (void)state;
    assert_int_equal(fx.generation, 1);
    /* The idempotency key of a write before the backup: its first answer,
     * nothing new. */
    char again[ID_LEN];
    register_keyed(again);
    assert_string_equal(again, fx.unit_keyed);
    assert_int_equal(events_count(NULL), fx.events_before);

    /* A new unit: an id later than every one made before, the lost one
     * included, and one more event. */
    Passerelle__UnitRegisterRequest req;
    harness_unit_request(&req, "ANAH-84089-7005");
    char id[ID_LEN];
    harness_unit_register(fx.client, &req, id);
    assert_true(strcmp(id, fx.unit_keyed) > 0);
    assert_true(strcmp(id, fx.unit_after) > 0);
    assert_int_equal(events_count(NULL), fx.events_before + 1);

    /* A document, and a version of a restored one. */
    char doc_d[64];
    docs_put(&files[FILE_D], NULL, doc_d);
    expect_document(doc_d, 0, &files[FILE_D]);
    docs_put(&files[FILE_A3], fx.doc_a, NULL);
    long long sizes[4];
    assert_int_equal(document_versions(fx.doc_a, sizes, 4), 3);
    expect_document(fx.doc_a, 3, &files[FILE_A3]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_write_before_backup),
        cmocka_unit_test(test_backup),
        cmocka_unit_test(test_write_after_backup),
        cmocka_unit_test(test_restore_refuses_a_damaged_rdb),
        cmocka_unit_test(test_restore_refuses_folders_with_data),
        cmocka_unit_test(test_restore_into_fresh_folders),
        cmocka_unit_test(test_restored_records_and_events),
        cmocka_unit_test(test_restored_documents),
        cmocka_unit_test(test_writes_after_restore),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
