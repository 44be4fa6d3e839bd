/* Rotating the services' CURVE key without downtime, seen from outside: a
 * real redis-server and the real passerelle-reservations binary, the real
 * passerelle CLI making and promoting the keys, clients of common/client.c,
 * and the passerelle-feed subscriber.
 *
 * The rotation, as the README tells an operator to run it:
 *   1. `keygen --server --next` in the services' folder;
 *   2. server.next.key handed to the clients, which then know both keys;
 *   3. `keygen --server --promote` in the services' folder, and a restart;
 *   4. `keygen --server --promote` in each client's folder.
 * The tests run in that order and share one stack. What they prove: a
 * client that holds both keys gets every call answered while the service
 * restarts on the new key, at the cost of at most one extra attempt (and,
 * as the handshake failure is seen at once, usually none); a client with
 * only the old key gets no answer after the switch, one with only the new
 * key got none before; after the client's own promotion a fresh client
 * starts with the new key; the feed subscriber's socket moves to the key
 * its publisher takes. Timeouts are short (300 ms): a wrong key costs one
 * of them at most. */
#include "harness.h"
#include "identity.h"
#include "ids.h"
#include "reservations.pb-c.h"
#include "status.h"

#include <czmq.h>
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#define TIMEOUT_MS 300
/* The writer's calls must outlast a restart of the service, whatever the
 * key: retries enough for a few seconds of it. */
#define WRITER_RETRIES 30
#define WAIT_MS        20000

typedef struct {
    harness_stack_t stack; /* the services' key folder is stack.keys */
    char client_keys[600]; /* a client's key folder: public halves only */
    char old_public[600];  /* copies of the two public certificates */
    char new_public[600];
    char old_key[KEY_Z85_LEN + 1];
    char new_key[KEY_Z85_LEN + 1];
    harness_cli_t cli;
    client_t *both; /* knows both keys; used before the switch */
} fixture_t;

static fixture_t fx;

/* ==========================================================================
 * Files and keys
 * ======================================================================== */

static void copy_file(const char *from, const char *to, mode_t mode)
{
    size_t len = 0;
    char *data = harness_file_read(from, &len);
    assert_non_null(data);
    if (len == 0)
        fail_msg("cannot read %s", from);
    FILE *file = fopen(to, "w");
    if (!file)
        fail_msg("cannot write %s: %s", to, strerror(errno));
    assert_int_equal(fwrite(data, 1, len, file), len);
    assert_int_equal(fclose(file), 0);
    assert_int_equal(chmod(to, mode), 0);
    free(data);
}

static bool exists(const char *dir, const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

/* The public key of a certificate file (its own, or read from its
 * _secret when path names that). */
static void key_of(const char *dir, const char *name, char *key)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    zcert_t *cert = zcert_load(path);
    if (!cert)
        fail_msg("%s is not a certificate", path);
    snprintf(key, KEY_Z85_LEN + 1, "%s", zcert_public_txt(cert));
    zcert_destroy(&cert);
}

static void expect_key(const char *dir, const char *name, const char *want)
{
    char key[KEY_Z85_LEN + 1];
    key_of(dir, name, key);
    if (strcmp(key, want) != 0)
        fail_msg("%s/%s holds %s, expected %s", dir, name, key, want);
}

static mode_t mode_of(const char *dir, const char *name)
{
    char path[1024];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    assert_int_equal(stat(path, &st), 0);
    return st.st_mode & 0777;
}

/* ==========================================================================
 * Clients
 * ======================================================================== */

/* A client of the service with the admin key, trusting server_public, and
 * next_public (NULL: none) as the services' next key. */
static client_t *client_with(const char *server_public, const char *next_public, int timeout_ms,
                             int retries)
{
    char cert[700], err[256] = "";
    keydir_client_cert_path(fx.stack.keys, "admin", cert, sizeof cert);
    client_config_t cfg = {
        .endpoint = fx.stack.service.endpoint,
        .server_public_path = server_public,
        .server_next_public_path = next_public,
        .client_cert_path = cert,
        .timeout_ms = timeout_ms,
        .retries = retries,
    };
    client_t *client = client_new(&cfg, err, sizeof err);
    if (!client)
        fail_msg("client_new: %s", err);
    return client;
}

/* health; 0 answered OK, -1 no answer. */
static int health(client_t *client)
{
    Passerelle__HealthRequest req = PASSERELLE__HEALTH_REQUEST__INIT;
    Passerelle__Reply *reply = NULL;
    if (client_call(client, "health", &req.base, NULL, &reply) != 0)
        return -1;
    harness_expect_status(reply, ST_OK, NULL);
    passerelle__reply__free_unpacked(reply, NULL);
    return 0;
}

/* A CLI run as admin against the service with a key folder. */
static harness_run_t cli_health(const char *keys)
{
    return harness_run_cli(&fx.cli, NULL, "--endpoint", fx.stack.service.endpoint, "--keys", keys,
                           "--as", "admin", "--timeout-ms", "300", "--retries", "1", "health",
                           NULL);
}

/* ==========================================================================
 * The writer: calls without a pause while the service restarts
 * ======================================================================== */

#define WRITER_MAX 4096

typedef struct {
    client_t *client;
    volatile int stop; /* set by the test */
    int ok;            /* calls answered OK (their references are ref-<i>) */
    int failed;        /* calls that got no answer or not OK */
    int max_attempts;
    char failure[256];
    pthread_mutex_t lock;
} writer_t;

static int writer_count(writer_t *w)
{
    pthread_mutex_lock(&w->lock);
    int n = w->ok + w->failed;
    pthread_mutex_unlock(&w->lock);
    return n;
}

static void writer_ref(int i, char *out, size_t size)
{
    snprintf(out, size, "ROT-%04d", i);
}

static void *writer_run(void *arg)
{
    writer_t *w = arg;
    for (int i = 0; i < WRITER_MAX && !w->stop; i++) {
        char ref[32];
        writer_ref(i, ref, sizeof ref);
        Passerelle__UnitRegisterRequest req;
        harness_unit_request(&req, ref);
        Passerelle__Reply *reply = NULL;
        int rc = client_call(w->client, "unit.register", &req.base, NULL, &reply);
        pthread_mutex_lock(&w->lock);
        if (client_last_attempts(w->client) > w->max_attempts)
            w->max_attempts = client_last_attempts(w->client);
        if (rc == 0 && reply->status == PASSERELLE__STATUS__STATUS_OK) {
            w->ok++;
        } else {
            w->failed++;
            if (!w->failure[0])
                snprintf(w->failure, sizeof w->failure, "%s: %s", ref,
                         rc != 0 ? "no reply" : status_name(reply->status));
        }
        pthread_mutex_unlock(&w->lock);
        if (reply)
            passerelle__reply__free_unpacked(reply, NULL);
        if (rc != 0 || w->failed)
            break;
    }
    return NULL;
}

/* Waits until the writer has made at least n calls; fails past WAIT_MS. */
static void writer_wait(writer_t *w, int n)
{
    int64_t deadline = zclock_mono() + WAIT_MS;
    while (writer_count(w) < n) {
        if (zclock_mono() > deadline)
            fail_msg("the writer made %d calls of %d in %d ms", writer_count(w), n, WAIT_MS);
        zclock_sleep(10);
    }
}

/* ==========================================================================
 * Setup
 * ======================================================================== */

static int group_setup(void **state)
{
    (void)state;
    memset(&fx, 0, sizeof fx);
    if (harness_stack_start(&fx.stack, "key-rotation", NULL, NULL) != 0)
        return -1;
    harness_cli_init(&fx.cli, fx.stack.dir, NULL, 20000);
    snprintf(fx.client_keys, sizeof fx.client_keys, "%s/client-keys", fx.stack.dir);
    snprintf(fx.old_public, sizeof fx.old_public, "%s/old-server.key", fx.stack.dir);
    snprintf(fx.new_public, sizeof fx.new_public, "%s/new-server.key", fx.stack.dir);
    char path[700], from[700];
    if (mkdir(fx.client_keys, 0700) != 0)
        return -1;
    snprintf(path, sizeof path, "%s/clients", fx.client_keys);
    if (mkdir(path, 0700) != 0)
        return -1;
    /* A client's folder holds the services' public certificate and its own
     * secret one, nothing else. */
    keydir_client_cert_path(fx.stack.keys, "admin", from, sizeof from);
    keydir_client_cert_path(fx.client_keys, "admin", path, sizeof path);
    copy_file(from, path, 0600);
    keydir_server_public_path(fx.stack.keys, from, sizeof from);
    keydir_server_public_path(fx.client_keys, path, sizeof path);
    copy_file(from, path, 0644);
    copy_file(from, fx.old_public, 0644);
    key_of(fx.stack.keys, "server.key", fx.old_key);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    client_destroy(&fx.both);
    void *stack = &fx.stack;
    return harness_stack_teardown(&stack);
}

/* ==========================================================================
 * 1. The next key
 * ======================================================================== */

static void test_next_key_is_made(void **state)
{
    (void)state;
    harness_run_t run = harness_run_cli(&fx.cli, NULL, "--keys", fx.stack.keys, "keygen",
                                        "--server", "--next", NULL);
    harness_assert_exit(&run, 0);
    harness_assert_contains(run.out, "server.next.key_secret");
    harness_assert_contains(run.out, "public key: ");
    harness_run_free(&run);
    assert_true(exists(fx.stack.keys, "server.next.key"));
    assert_true(exists(fx.stack.keys, "server.next.key_secret"));
    assert_int_equal(mode_of(fx.stack.keys, "server.next.key_secret"), 0600);
    key_of(fx.stack.keys, "server.next.key", fx.new_key);
    expect_key(fx.stack.keys, "server.next.key_secret", fx.new_key);
    assert_string_not_equal(fx.new_key, fx.old_key);
    /* the current one is untouched */
    expect_key(fx.stack.keys, "server.key", fx.old_key);
    expect_key(fx.stack.keys, "server.key_secret", fx.old_key);

    /* made once: a second one would leave clients with the wrong next */
    run = harness_run_cli(&fx.cli, NULL, "--keys", fx.stack.keys, "keygen", "--server", "--next",
                          NULL);
    harness_assert_exit(&run, 1);
    harness_assert_contains(run.err, "already holds a next server certificate");
    harness_run_free(&run);
    expect_key(fx.stack.keys, "server.next.key", fx.new_key);

    /* only beside a current certificate; only with --server */
    run = harness_run_cli(&fx.cli, NULL, "--keys", fx.client_keys, "keygen", "--server", "--next",
                          NULL);
    harness_assert_exit(&run, 1);
    harness_assert_contains(run.err, "no server certificate");
    harness_run_free(&run);
    run = harness_run_cli(&fx.cli, NULL, "--keys", fx.stack.keys, "keygen", "--next", NULL);
    harness_assert_exit(&run, 2);
    harness_run_free(&run);
    run = harness_run_cli(&fx.cli, NULL, "--keys", fx.client_keys, "keygen", "--server",
                          "--promote", NULL);
    harness_assert_exit(&run, 1);
    harness_assert_contains(run.err, "nothing to promote");
    harness_run_free(&run);

    /* handed out: the client's folder gets the public half */
    char from[700], to[700];
    keydir_server_next_public_path(fx.stack.keys, from, sizeof from);
    keydir_server_next_public_path(fx.client_keys, to, sizeof to);
    copy_file(from, to, 0644);
    copy_file(from, fx.new_public, 0644);
}

/* ==========================================================================
 * 2. Before the switch: the service runs on the old key
 * ======================================================================== */

static void test_before_the_switch(void **state)
{
    (void)state;
    fx.both = client_with(fx.old_public, fx.new_public, TIMEOUT_MS, 1);
    assert_int_equal(health(fx.both), 0);
    assert_int_equal(client_last_attempts(fx.both), 1);
    assert_false(client_uses_next_key(fx.both));

    client_t *old_only = client_with(fx.old_public, NULL, TIMEOUT_MS, 0);
    assert_int_equal(health(old_only), 0);
    client_destroy(&old_only);

    /* A next key that does not exist is none. */
    char missing[700];
    snprintf(missing, sizeof missing, "%s/no-such.key", fx.stack.dir);
    client_t *no_next = client_with(fx.old_public, missing, TIMEOUT_MS, 0);
    assert_int_equal(health(no_next), 0);
    client_destroy(&no_next);

    /* The new key alone is not taken yet: no answer at all. */
    client_t *new_only = client_with(fx.new_public, NULL, TIMEOUT_MS, 0);
    assert_int_equal(health(new_only), -1);
    client_destroy(&new_only);

    /* The new key first and the old as the other: the client moves to the
     * old one and stays there. */
    client_t *reversed = client_with(fx.new_public, fx.old_public, TIMEOUT_MS, 1);
    assert_int_equal(health(reversed), 0);
    assert_true(client_uses_next_key(reversed));
    assert_true(client_last_attempts(reversed) <= 2);
    assert_int_equal(health(reversed), 0);
    assert_int_equal(client_last_attempts(reversed), 1);
    client_destroy(&reversed);

    /* The CLI finds server.next.key in its key folder by itself. */
    harness_run_t run = cli_health(fx.client_keys);
    harness_assert_exit(&run, 0);
    harness_run_free(&run);
}

/* ==========================================================================
 * 3. The switch: promotion in the services' folder and a restart
 * ======================================================================== */

static void test_service_moves_to_the_next_key(void **state)
{
    (void)state;
    client_t *old_only = client_with(fx.old_public, NULL, TIMEOUT_MS, 0);
    assert_int_equal(health(old_only), 0);

    writer_t writer = {.client =
                           client_with(fx.old_public, fx.new_public, TIMEOUT_MS, WRITER_RETRIES)};
    pthread_mutex_init(&writer.lock, NULL);
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, writer_run, &writer), 0);
    writer_wait(&writer, 5);

    /* Stopping first, as one replica of a rolling restart is; the writer's
     * calls meanwhile are retried (UNAVAILABLE while it drains, no answer
     * while it is down). */
    assert_true(harness_service_stop_clean(&fx.stack.service));
    harness_run_t run = harness_run_cli(&fx.cli, NULL, "--keys", fx.stack.keys, "keygen",
                                        "--server", "--promote", NULL);
    harness_assert_exit(&run, 0);
    harness_assert_contains(run.out, fx.new_key);
    harness_assert_contains(run.out, "restart the services");
    harness_run_free(&run);
    expect_key(fx.stack.keys, "server.key", fx.new_key);
    expect_key(fx.stack.keys, "server.key_secret", fx.new_key);
    expect_key(fx.stack.keys, "server.previous.key", fx.old_key);
    expect_key(fx.stack.keys, "server.previous.key_secret", fx.old_key);
    assert_int_equal(mode_of(fx.stack.keys, "server.key_secret"), 0600);
    assert_int_equal(mode_of(fx.stack.keys, "server.previous.key_secret"), 0600);
    assert_false(exists(fx.stack.keys, "server.next.key"));
    assert_false(exists(fx.stack.keys, "server.next.key_secret"));
    assert_int_equal(harness_stack_restart(&fx.stack), 0);

    int before = writer_count(&writer);
    writer_wait(&writer, before + 5);
    writer.stop = 1;
    pthread_join(thread, NULL);
    pthread_mutex_destroy(&writer.lock);
    print_message("writer: %d calls answered, at most %d attempts for one\n", writer.ok,
                  writer.max_attempts);
    if (writer.failed)
        fail_msg("a call of the writer failed: %s", writer.failure);
    assert_true(client_uses_next_key(writer.client));
    client_destroy(&writer.client);

    /* None lost: every unit the writer was told about is there, once. */
    client_t *reader = client_with(fx.new_public, NULL, TIMEOUT_MS, 2);
    harness_events_t events;
    harness_events_read(reader, NULL, &events);
    for (int i = 0; i < writer.ok; i++) {
        char ref[32];
        writer_ref(i, ref, sizeof ref);
        if (harness_events_count_units(&events, "unit.registered", ref) != 1)
            fail_msg("unit %s: %d unit.registered events", ref,
                     harness_events_count_units(&events, "unit.registered", ref));
    }
    harness_events_free(&events);
    client_destroy(&reader);

    /* A client that knew both keys and last worked with the old one: one
     * retry is enough, and it stays on the new key. */
    assert_false(client_uses_next_key(fx.both));
    assert_int_equal(health(fx.both), 0);
    assert_true(client_last_attempts(fx.both) <= 2);
    assert_true(client_uses_next_key(fx.both));
    assert_int_equal(health(fx.both), 0);
    assert_int_equal(client_last_attempts(fx.both), 1);

    /* The failed handshake is seen at once: without a single retry, the
     * switch happens within the attempt. */
    client_t *no_retry = client_with(fx.old_public, fx.new_public, 2000, 0);
    int64_t started = zclock_mono();
    assert_int_equal(health(no_retry), 0);
    assert_true(zclock_mono() - started < 2000);
    assert_true(client_uses_next_key(no_retry));
    client_destroy(&no_retry);

    /* The old key alone gets nothing any more; the new one alone works. */
    assert_int_equal(health(old_only), -1);
    client_destroy(&old_only);
    client_t *new_only = client_with(fx.new_public, NULL, TIMEOUT_MS, 0);
    assert_int_equal(health(new_only), 0);
    client_destroy(&new_only);

    /* So does the CLI from a client's folder that still has both. */
    run = cli_health(fx.client_keys);
    harness_assert_exit(&run, 0);
    harness_run_free(&run);
}

/* ==========================================================================
 * 4. Clients drop the old key
 * ======================================================================== */

static void test_client_promotes(void **state)
{
    (void)state;
    harness_run_t run = harness_run_cli(&fx.cli, NULL, "--keys", fx.client_keys, "keygen",
                                        "--server", "--promote", NULL);
    harness_assert_exit(&run, 0);
    harness_assert_contains(run.out, fx.new_key);
    harness_run_free(&run);
    expect_key(fx.client_keys, "server.key", fx.new_key);
    expect_key(fx.client_keys, "server.previous.key", fx.old_key);
    assert_false(exists(fx.client_keys, "server.next.key"));
    assert_false(exists(fx.client_keys, "server.key_secret"));
    assert_false(exists(fx.client_keys, "server.previous.key_secret"));

    /* A fresh client of that folder starts with the new key: no timeout. */
    char server_public[700], server_next[700];
    keydir_server_public_path(fx.client_keys, server_public, sizeof server_public);
    keydir_server_next_public_path(fx.client_keys, server_next, sizeof server_next);
    client_t *fresh = client_with(server_public, server_next, TIMEOUT_MS, 0);
    int64_t started = zclock_mono();
    assert_int_equal(health(fresh), 0);
    assert_true(zclock_mono() - started < TIMEOUT_MS);
    assert_int_equal(client_last_attempts(fresh), 1);
    assert_false(client_uses_next_key(fresh));
    client_destroy(&fresh);

    run = cli_health(fx.client_keys);
    harness_assert_exit(&run, 0);
    harness_run_free(&run);

    /* done once */
    run = harness_run_cli(&fx.cli, NULL, "--keys", fx.client_keys, "keygen", "--server",
                          "--promote", NULL);
    harness_assert_exit(&run, 1);
    harness_assert_contains(run.err, "nothing to promote");
    harness_run_free(&run);
}

/* ==========================================================================
 * Promotion's corner cases (no service)
 * ======================================================================== */

static void make_folder(const char *name, char *out, size_t size)
{
    snprintf(out, size, "%s/%s", fx.stack.dir, name);
    assert_int_equal(mkdir(out, 0700), 0);
}

static void test_promotion_corners(void **state)
{
    (void)state;
    char err[512] = "", dir[700], path[1024], old_key[KEY_Z85_LEN + 1], new_key[KEY_Z85_LEN + 1];
    bool with_secret = true;

    /* A services' folder with only the public half of the next key is a
     * mistake (its secret was not copied there), refused as such. */
    make_folder("half-copied", dir, sizeof dir);
    assert_int_equal(identity_keygen_server(dir, err, sizeof err), 0);
    assert_int_equal(identity_keygen_server_next(dir, err, sizeof err), 0);
    key_of(dir, "server.key", old_key);
    key_of(dir, "server.next.key", new_key);
    keydir_server_next_cert_path(dir, path, sizeof path);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(identity_promote_server_next(dir, &with_secret, err, sizeof err), -1);
    assert_non_null(strstr(err, "server.next.key_secret"));
    expect_key(dir, "server.key", old_key);

    /* A promotion stopped between its two renames (the secret moved, the
     * public half not yet) is finished by running it again. */
    make_folder("interrupted", dir, sizeof dir);
    assert_int_equal(identity_keygen_server(dir, err, sizeof err), 0);
    assert_int_equal(identity_keygen_server_next(dir, err, sizeof err), 0);
    key_of(dir, "server.key", old_key);
    key_of(dir, "server.next.key", new_key);
    char from[1024];
    keydir_server_next_cert_path(dir, from, sizeof from);
    keydir_server_cert_path(dir, path, sizeof path);
    assert_int_equal(rename(from, path), 0);
    with_secret = false;
    assert_int_equal(identity_promote_server_next(dir, &with_secret, err, sizeof err), 0);
    assert_true(with_secret);
    expect_key(dir, "server.key", new_key);
    expect_key(dir, "server.key_secret", new_key);
    assert_false(exists(dir, "server.next.key"));

    /* Only the secret half of the next key: the public one is made. */
    make_folder("secret-only", dir, sizeof dir);
    assert_int_equal(identity_keygen_server(dir, err, sizeof err), 0);
    assert_int_equal(identity_keygen_server_next(dir, err, sizeof err), 0);
    key_of(dir, "server.key", old_key);
    key_of(dir, "server.next.key", new_key);
    keydir_server_next_public_path(dir, path, sizeof path);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(identity_promote_server_next(dir, &with_secret, err, sizeof err), 0);
    assert_true(with_secret);
    expect_key(dir, "server.key", new_key);
    expect_key(dir, "server.key_secret", new_key);
    expect_key(dir, "server.previous.key_secret", old_key);
    assert_int_equal(mode_of(dir, "server.key_secret"), 0600);

    /* A next certificate that does not parse is refused before anything
     * moves, and a client will not start on it either. */
    make_folder("garbage", dir, sizeof dir);
    assert_int_equal(identity_keygen_server(dir, err, sizeof err), 0);
    key_of(dir, "server.key", old_key);
    keydir_server_next_public_path(dir, path, sizeof path);
    FILE *file = fopen(path, "w");
    assert_non_null(file);
    fputs("not a certificate\n", file);
    fclose(file);
    keydir_server_cert_path(dir, from, sizeof from);
    assert_int_equal(unlink(from), 0); /* a client's folder */
    assert_int_equal(identity_promote_server_next(dir, &with_secret, err, sizeof err), -1);
    expect_key(dir, "server.key", old_key);
    char server_public[1024], cert[700];
    keydir_server_public_path(dir, server_public, sizeof server_public);
    keydir_client_cert_path(fx.stack.keys, "admin", cert, sizeof cert);
    client_config_t cfg = {.endpoint = fx.stack.service.endpoint,
                           .server_public_path = server_public,
                           .server_next_public_path = path,
                           .client_cert_path = cert};
    client_t *client = client_new(&cfg, err, sizeof err);
    assert_null(client);
    assert_non_null(strstr(err, "next certificate"));
}

/* ==========================================================================
 * The feed subscriber
 * ======================================================================== */

/* passerelle-feed with a folder holding the old key as server.key and the
 * new one as server.next.key, against a publisher on the new key: its feed
 * socket must move to the new key and print what is published. The
 * publisher is this test's own PUB socket (no ZAP handler runs here, so
 * any client key is let in), sending a heartbeat and the event after it
 * until the subscriber has printed the event and exited. */
static void test_feed_subscriber_moves_to_the_next_key(void **state)
{
    (void)state;
    char keys[700], path[1024], from[1024];
    make_folder("feed-keys", keys, sizeof keys);
    snprintf(path, sizeof path, "%s/clients", keys);
    assert_int_equal(mkdir(path, 0700), 0);
    keydir_client_cert_path(fx.stack.keys, "admin", from, sizeof from);
    keydir_client_cert_path(keys, "admin", path, sizeof path);
    copy_file(from, path, 0600);
    keydir_server_public_path(keys, path, sizeof path);
    copy_file(fx.old_public, path, 0644);
    keydir_server_next_public_path(keys, path, sizeof path);
    copy_file(fx.new_public, path, 0644);

    keydir_server_cert_path(fx.stack.keys, path, sizeof path);
    zcert_t *server = zcert_load(path);
    assert_non_null(server);
    assert_string_equal(zcert_public_txt(server), fx.new_key);
    zsock_t *pub = zsock_new(ZMQ_PUB);
    assert_non_null(pub);
    zcert_apply(server, pub);
    zsock_set_curve_server(pub, 1);
    int port = zsock_bind(pub, "tcp://127.0.0.1:*");
    assert_true(port > 0);
    zcert_destroy(&server);

    char feed[64], replay[64];
    snprintf(feed, sizeof feed, "tcp://127.0.0.1:%d", port);
    /* not asked: the heartbeat and the event form an unbroken chain */
    snprintf(replay, sizeof replay, "tcp://127.0.0.1:%d", harness_free_port());
    const char *args[] = {"--feed", feed,    "--endpoint", replay, "--keys", keys,
                          "--as",   "admin", "--count",    "1",    NULL};
    harness_proc_t sub;
    assert_int_equal(
        harness_proc_start(&sub, "tools/passerelle-feed", fx.stack.dir, "feed", args, false), 0);

    Passerelle__Event event = PASSERELLE__EVENT__INIT;
    event.id = "E01-ROTATION";
    event.type = "unit.registered";
    event.subject = "units/U01-ROTATION";
    event.time = "2026-03-01T10:00:00Z";
    size_t len = passerelle__event__get_packed_size(&event);
    uint8_t *packed = malloc(len ? len : 1);
    assert_non_null(packed);
    passerelle__event__pack(&event, packed);

    int status = -1;
    int64_t deadline = zclock_mono() + WAIT_MS;
    while (zclock_mono() < deadline) {
        zsock_send(pub, "sss", "~heartbeat", "1700000000000-5", "");
        zmsg_t *msg = zmsg_new();
        zmsg_addstr(msg, "unit.registered");
        zmsg_addstr(msg, "1700000000000-6");
        zmsg_addstr(msg, "1700000000000-5");
        zmsg_addmem(msg, packed, len);
        zmsg_send(&msg, pub);
        if (waitpid(sub.pid, &status, WNOHANG) == sub.pid) {
            sub.pid = 0;
            break;
        }
        zclock_sleep(50); /* the publishing pace, not a timing assertion */
    }
    free(packed);
    zsock_destroy(&pub);
    if (sub.pid > 0) {
        harness_proc_stop(&sub, SIGKILL);
        fail_msg("passerelle-feed printed nothing in %d ms (see %s)", WAIT_MS, sub.stdout_path);
    }
    char *out = harness_file_read(sub.stdout_path, NULL);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("passerelle-feed ended with status %d:\n%s", status, out);
    harness_assert_contains(out, "1700000000000-6 2026-03-01T10:00:00Z unit.registered");
    harness_assert_contains(out, "server key not taken");
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_next_key_is_made),
        cmocka_unit_test(test_before_the_switch),
        cmocka_unit_test(test_service_moves_to_the_next_key),
        cmocka_unit_test(test_client_promotes),
        cmocka_unit_test(test_promotion_corners),
        cmocka_unit_test(test_feed_subscriber_moves_to_the_next_key),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
