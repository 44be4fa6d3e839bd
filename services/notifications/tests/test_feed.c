/* The partner feed, end to end on loopback: the publisher in process (with a
 * request server answering feed.replay, both behind CURVE) over a real
 * Redis, read by a SUB socket of the test and by the reference subscriber
 * (tools/passerelle-feed) run as a process. The feed stream is written the
 * way the fan-out writes it (XADD type, event, origin).
 *
 * What is shown: the frames and the chain of positions; heartbeats; the
 * start at the stream's last entry; feed.replay and its limits; a Redis
 * outage that neither skips nor repeats; and the subscriber printing every
 * event once, in order, when it is killed and restarted, and when the
 * publisher is stopped and started again while events are added. */
#include "feed.h"
#include "harness.h"
#include "identity.h"
#include "ids.h"
#include "log.h"
#include "notifications.pb-c.h"
#include "notify.h"
#include "reservations.pb-c.h"
#include "server.h"
#include "store.h"

#include <czmq.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#define HEARTBEAT_MS  100
#define DEADLINE_MS   15000
#define POSITION_MAX  48
#define EVENTS_MAX    64
#define CLIENT_WAIT   3000
#define SUBSCRIBER_AS "partner"

typedef struct {
    char position[POSITION_MAX];
    char id[ID_LEN];
    char type[64];
} added_t;

typedef struct {
    char *dir;
    char keys[512];
    harness_redis_t redis;
    store_t *server_store; /* the request server's (its thread) */
    store_t *store;        /* the test's own writes */
    store_config_t store_cfg;
    notify_t notify;
    server_t *server;
    feed_t *feed;
    char feed_endpoint[256];
    added_t added[EVENTS_MAX];
    size_t added_count;
    int runs; /* subscriber runs, for file names */
} fixture_t;

static fixture_t fx;

static const route_t feed_routes[] = {
    {"feed.replay", &passerelle__feed_replay_request__descriptor, handle_feed_replay, false},
};

/* ------------------------------------------------------------------------
 * The feed stream, written as the fan-out writes it */

/* Appends one event of this type to the feed stream, remembered in
 * fx.added; returns it. */
static const added_t *feed_add(const char *type)
{
    assert_true(fx.added_count < EVENTS_MAX);
    added_t *added = &fx.added[fx.added_count];
    id_new('E', added->id);
    snprintf(added->type, sizeof added->type, "%s", type);

    char unit_id[ID_LEN], subject[64], ref[32], now[TIME_RFC3339_LEN];
    id_new('U', unit_id);
    snprintf(subject, sizeof subject, "units/%s", unit_id);
    snprintf(ref, sizeof ref, "ANAH-13-%04zu", fx.added_count);
    time_now_rfc3339(now);
    Passerelle__Unit unit = PASSERELLE__UNIT__INIT;
    unit.id = unit_id;
    unit.external_ref = ref;
    unit.territory = "CT2";
    uint8_t data[256];
    size_t data_len = passerelle__unit__pack(&unit, data);

    Passerelle__Event event = PASSERELLE__EVENT__INIT;
    event.id = added->id;
    event.source = "/passerelle/reservations";
    event.type = added->type;
    event.subject = subject;
    event.time = now;
    event.specversion = "1.0";
    event.datacontenttype = "application/protobuf";
    event.dataschema = "passerelle.Unit";
    event.has_data = true;
    event.data.data = data;
    event.data.len = data_len;
    uint8_t packed[1024];
    size_t packed_len = passerelle__event__pack(&event, packed);

    char origin[64];
    snprintf(origin, sizeof origin, "reservations:events %zu-0", fx.added_count + 1);
    const char *argv[] = {"XADD",  NOTIFY_FEED_STREAM,   "*",      "type", added->type,
                          "event", (const char *)packed, "origin", origin};
    size_t argv_len[] = {
        4, strlen(NOTIFY_FEED_STREAM), 1, 4, strlen(added->type), 5, packed_len, 6, strlen(origin)};
    redisReply *reply = NULL;
    assert_int_equal(store_command_argv(fx.store, &reply, 9, argv, argv_len), STORE_OK);
    assert_int_equal(reply->type, REDIS_REPLY_STRING);
    snprintf(added->position, sizeof added->position, "%s", reply->str);
    freeReplyObject(reply);
    fx.added_count++;
    return added;
}

static void feed_start(int heartbeat_ms, const char *endpoint)
{
    feed_config_t cfg = {
        .endpoint = endpoint ? endpoint : "tcp://127.0.0.1:*",
        .keys_dir = fx.keys,
        .store = &fx.store_cfg,
        .heartbeat_ms = heartbeat_ms,
    };
    /* Binding the port a stopped publisher held may fail for a moment. */
    int64_t deadline = zclock_mono() + DEADLINE_MS;
    while (!(fx.feed = feed_new(&cfg)) && zclock_mono() < deadline)
        zclock_sleep(50);
    assert_non_null(fx.feed);
    snprintf(fx.feed_endpoint, sizeof fx.feed_endpoint, "%s", feed_endpoint(fx.feed));
}

/* ------------------------------------------------------------------------
 * A SUB socket of the test */

static zsock_t *sub_open(const char *name)
{
    char server_public[600], client_cert[600];
    keydir_server_public_path(fx.keys, server_public, sizeof server_public);
    keydir_client_cert_path(fx.keys, name, client_cert, sizeof client_cert);
    zcert_t *mine = zcert_load(client_cert);
    zcert_t *server = zcert_load(server_public);
    assert_non_null(mine);
    assert_non_null(server);
    zsock_t *sub = zsock_new(ZMQ_SUB);
    assert_non_null(sub);
    zcert_apply(mine, sub);
    zsock_set_curve_serverkey(sub, zcert_public_txt(server));
    zsock_set_subscribe(sub, "");
    zsock_set_rcvtimeo(sub, 100);
    zcert_destroy(&mine);
    zcert_destroy(&server);
    assert_int_equal(zsock_connect(sub, "%s", fx.feed_endpoint), 0);
    return sub;
}

/* The next message until the deadline (NULL past it). */
static zmsg_t *sub_receive(zsock_t *sub, int64_t deadline)
{
    while (zclock_mono() < deadline) {
        zmsg_t *msg = zmsg_recv(sub);
        if (msg)
            return msg;
    }
    return NULL;
}

static char *frame_string(zmsg_t *msg, size_t index)
{
    zframe_t *frame = zmsg_first(msg);
    for (size_t i = 0; frame && i < index; i++)
        frame = zmsg_next(msg);
    assert_non_null(frame);
    return zframe_strdup(frame);
}

static bool is_heartbeat(zmsg_t *msg)
{
    char *topic = frame_string(msg, 0);
    bool heartbeat = strcmp(topic, FEED_HEARTBEAT_TOPIC) == 0;
    free(topic);
    return heartbeat;
}

/* Waits for a heartbeat naming position (any position if NULL): the SUB is
 * then connected and subscribed. */
static void sub_wait_heartbeat(zsock_t *sub, const char *position)
{
    int64_t deadline = zclock_mono() + DEADLINE_MS;
    char *seen = NULL;
    while (true) {
        zmsg_t *msg = sub_receive(sub, deadline);
        if (!msg)
            fail_msg("no heartbeat naming %s (last seen: %s)", position ? position : "anything",
                     seen ? seen : "none");
        if (is_heartbeat(msg)) {
            assert_int_equal(zmsg_size(msg), 2);
            free(seen);
            seen = frame_string(msg, 1);
            if (!position || strcmp(seen, position) == 0) {
                zmsg_destroy(&msg);
                break;
            }
        }
        zmsg_destroy(&msg);
    }
    free(seen);
}

/* The next event message (heartbeats skipped), checked against added and
 * the expected previous position. */
static void sub_expect_event(zsock_t *sub, const added_t *added, const char *previous)
{
    int64_t deadline = zclock_mono() + DEADLINE_MS;
    zmsg_t *msg = NULL;
    while ((msg = sub_receive(sub, deadline)) && is_heartbeat(msg))
        zmsg_destroy(&msg);
    if (!msg)
        fail_msg("event %s was not published", added->position);
    assert_int_equal(zmsg_size(msg), 4);
    char *topic = frame_string(msg, 0);
    char *position = frame_string(msg, 1);
    char *prev = frame_string(msg, 2);
    assert_string_equal(topic, added->type);
    assert_string_equal(position, added->position);
    assert_string_equal(prev, previous);
    zframe_t *body = zmsg_last(msg);
    Passerelle__Event *event =
        passerelle__event__unpack(NULL, zframe_size(body), zframe_data(body));
    assert_non_null(event);
    assert_string_equal(event->id, added->id);
    assert_string_equal(event->type, added->type);
    passerelle__event__free_unpacked(event, NULL);
    free(topic);
    free(position);
    free(prev);
    zmsg_destroy(&msg);
}

/* No event message arrives while a heartbeat naming position does. */
static void sub_expect_quiet_until_heartbeat(zsock_t *sub, const char *position)
{
    int64_t deadline = zclock_mono() + DEADLINE_MS;
    while (true) {
        zmsg_t *msg = sub_receive(sub, deadline);
        assert_non_null(msg);
        if (!is_heartbeat(msg)) {
            char *extra = frame_string(msg, 1);
            fail_msg("an event published twice or out of turn: %s", extra);
        }
        char *seen = frame_string(msg, 1);
        bool done = strcmp(seen, position) == 0;
        free(seen);
        zmsg_destroy(&msg);
        if (done)
            break;
    }
}

/* ------------------------------------------------------------------------
 * The reference subscriber as a process */

typedef struct {
    pid_t pid;
    char out[600];
    char err[600];
} subscriber_t;

/* Starts passerelle-feed with the fixture's endpoints and keys, then the
 * NULL-terminated extra arguments; stdout and stderr into files. */
static void subscriber_start(subscriber_t *sub, const char *first, ...)
{
    const char *argv[32];
    int argc = 0;
    argv[argc++] = harness_bin("tools/passerelle-feed");
    argv[argc++] = "--feed";
    argv[argc++] = fx.feed_endpoint;
    argv[argc++] = "--endpoint";
    argv[argc++] = server_endpoint(fx.server);
    argv[argc++] = "--keys";
    argv[argc++] = fx.keys;
    argv[argc++] = "--as";
    argv[argc++] = SUBSCRIBER_AS;
    va_list args;
    va_start(args, first);
    for (const char *arg = first; arg && argc < 31; arg = va_arg(args, const char *))
        argv[argc++] = arg;
    va_end(args);
    argv[argc] = NULL;

    fx.runs++;
    snprintf(sub->out, sizeof sub->out, "%s/feed-%d.out", fx.dir, fx.runs);
    snprintf(sub->err, sizeof sub->err, "%s/feed-%d.err", fx.dir, fx.runs);
    char binary[1024];
    snprintf(binary, sizeof binary, "%s", argv[0]);
    sub->pid = fork();
    assert_true(sub->pid >= 0);
    if (sub->pid == 0) {
        int out = open(sub->out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int err = open(sub->err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (out < 0 || err < 0)
            _exit(127);
        dup2(out, 1);
        dup2(err, 2);
        execv(binary, (char *const *)argv);
        _exit(127);
    }
}

/* The process's exit code once it ends before the deadline; fails the
 * test (after killing it) otherwise. */
static int subscriber_wait(subscriber_t *sub)
{
    int64_t deadline = zclock_mono() + DEADLINE_MS;
    int status = 0;
    while (true) {
        pid_t done = waitpid(sub->pid, &status, WNOHANG);
        if (done == sub->pid)
            break;
        if (zclock_mono() > deadline) {
            kill(sub->pid, SIGKILL);
            waitpid(sub->pid, &status, 0);
            char *err = harness_file_read(sub->err, NULL);
            fail_msg("passerelle-feed did not finish; its stderr:\n%s", err);
        }
        zclock_sleep(20);
    }
    sub->pid = 0;
    if (!WIFEXITED(status)) {
        char *err = harness_file_read(sub->err, NULL);
        fail_msg("passerelle-feed did not exit (status %d); its stderr:\n%s", status, err);
    }
    return WEXITSTATUS(status);
}

static void subscriber_kill(subscriber_t *sub, int sig)
{
    if (sub->pid > 0)
        kill(sub->pid, sig);
}

static size_t count_lines(const char *text)
{
    size_t lines = 0;
    for (; *text; text++)
        if (*text == '\n')
            lines++;
    return lines;
}

/* Waits until the subscriber printed lines lines, and its state file (if
 * any) holds position (if any): it is then idle, everything saved. */
static void subscriber_wait_printed(const subscriber_t *sub, size_t lines, const char *state,
                                    const char *position)
{
    int64_t deadline = zclock_mono() + DEADLINE_MS;
    while (true) {
        char *out = harness_file_read(sub->out, NULL);
        size_t printed = count_lines(out);
        free(out);
        bool saved = true;
        if (state && position) {
            char *text = harness_file_read(state, NULL);
            char expected[POSITION_MAX + 2];
            snprintf(expected, sizeof expected, "%s\n", position);
            saved = strcmp(text, expected) == 0;
            free(text);
        }
        if (printed >= lines && saved)
            return;
        if (zclock_mono() > deadline) {
            char *err = harness_file_read(sub->err, NULL);
            fail_msg("passerelle-feed printed %zu lines of %zu; its stderr:\n%s", printed, lines,
                     err);
        }
        zclock_sleep(20);
    }
}

/* The subscriber's --json output is exactly fx.added[first .. first+count),
 * in order, each once. */
static void expect_json_lines(const char *path, size_t first, size_t count)
{
    char *text = harness_file_read(path, NULL);
    size_t lines = count_lines(text);
    if (lines != count)
        fail_msg("expected %zu events, got %zu lines:\n%s", count, lines, text);
    char *line = text;
    for (size_t i = 0; i < count; i++) {
        char *end = strchr(line, '\n');
        *end = '\0';
        json_t *json = harness_parse_json(line);
        const added_t *added = &fx.added[first + i];
        assert_string_equal(json_string_value(json_object_get(json, "position")), added->position);
        assert_string_equal(json_string_value(json_object_get(json, "id")), added->id);
        assert_string_equal(json_string_value(json_object_get(json, "type")), added->type);
        assert_string_equal(json_string_value(json_object_get(json, "specversion")), "1.0");
        assert_string_equal(json_string_value(json_object_get(json, "source")),
                            "/passerelle/reservations");
        /* The data decoded from its schema, as a partner reads it. */
        char ref[32];
        snprintf(ref, sizeof ref, "ANAH-13-%04zu", first + i);
        json_t *data = json_object_get(json, "data");
        assert_true(json_is_object(data));
        assert_string_equal(json_string_value(json_object_get(data, "external_ref")), ref);
        json_decref(json);
        line = end + 1;
    }
    free(text);
}

static void state_path(char *out, size_t size, const char *name)
{
    snprintf(out, size, "%s/%s.state", fx.dir, name);
}

/* ------------------------------------------------------------------------
 * Fixture: one Redis, one request server for the whole file; each test
 * starts on an empty feed stream with a fresh publisher. */

static int group_setup(void **state)
{
    (void)state;
    log_set_level(LOG_LEVEL_ERROR);
    fx.dir = harness_tempdir("feed");
    if (!fx.dir)
        return -1;
    snprintf(fx.keys, sizeof fx.keys, "%s/keys", fx.dir);
    if (harness_keys_make(fx.keys) != 0)
        return -1;
    if (harness_store_start(&fx.redis, &fx.server_store) != 0)
        return -1;
    harness_redis_config(&fx.redis, &fx.store_cfg);
    fx.store = store_new(&fx.store_cfg);
    fx.notify.store = fx.server_store;
    server_config_t cfg = {
        .service = "notifications",
        .endpoint = "tcp://127.0.0.1:*",
        .keys_dir = fx.keys,
        .routes = feed_routes,
        .route_count = sizeof feed_routes / sizeof feed_routes[0],
        .ctx = &fx.notify,
        .store = fx.server_store,
    };
    fx.server = server_new(&cfg);
    return fx.store && fx.server ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    server_destroy(&fx.server);
    store_destroy(&fx.store);
    harness_store_stop(&fx.redis, &fx.server_store);
    if (fx.dir)
        harness_rmtree(fx.dir);
    free(fx.dir);
    return 0;
}

static int test_setup(void **state)
{
    (void)state;
    redisReply *reply = NULL;
    if (store_command(fx.store, &reply, "DEL %s", NOTIFY_FEED_STREAM) != STORE_OK)
        return -1;
    freeReplyObject(reply);
    memset(fx.added, 0, sizeof fx.added);
    fx.added_count = 0;
    return 0;
}

static int test_teardown(void **state)
{
    (void)state;
    feed_destroy(&fx.feed);
    return 0;
}

/* ------------------------------------------------------------------------
 * The publisher */

/* Four frames per event, each naming the one before; heartbeats name the
 * last position. */
static void test_frames_and_chain(void **state)
{
    (void)state;
    feed_start(HEARTBEAT_MS, NULL);
    zsock_t *sub = sub_open("partner");
    sub_wait_heartbeat(sub, "0-0");

    const char *types[] = {"unit.registered", "convention.envisaged", "convention.signed",
                           "reservation.created"};
    for (size_t i = 0; i < 4; i++)
        feed_add(types[i]);
    for (size_t i = 0; i < 4; i++)
        sub_expect_event(sub, &fx.added[i], i == 0 ? "0-0" : fx.added[i - 1].position);
    sub_expect_quiet_until_heartbeat(sub, fx.added[3].position);
    zsock_destroy(&sub);
}

/* A topic prefix gets only its events (and the chain still shows what the
 * subscriber did not ask for). */
static void test_topic_prefix(void **state)
{
    (void)state;
    feed_start(HEARTBEAT_MS, NULL);
    zsock_t *all = sub_open("partner");
    sub_wait_heartbeat(all, NULL);
    zsock_t *conventions = sub_open("action_logement");
    zsock_set_unsubscribe(conventions, "");
    zsock_set_subscribe(conventions, "convention.");
    /* The prefix subscription is in place once the publisher has it; a
     * first event is repeated until it comes through. */
    int64_t deadline = zclock_mono() + DEADLINE_MS;
    zmsg_t *msg = NULL;
    while (!msg && zclock_mono() < deadline) {
        feed_add("convention.envisaged");
        msg = sub_receive(conventions, zclock_mono() + 300);
    }
    assert_non_null(msg);
    zmsg_destroy(&msg);
    size_t before = fx.added_count;
    feed_add("unit.registered");
    const added_t *wanted = feed_add("convention.signed");
    msg = sub_receive(conventions, zclock_mono() + DEADLINE_MS);
    assert_non_null(msg);
    char *position = frame_string(msg, 1);
    char *previous = frame_string(msg, 2);
    assert_string_equal(position, wanted->position);
    assert_string_equal(previous, fx.added[before].position); /* the unit's */
    free(position);
    free(previous);
    zmsg_destroy(&msg);
    zsock_destroy(&conventions);
    zsock_destroy(&all);
}

/* The publisher starts after the stream's last entry: what came before is
 * for replay. */
static void test_starts_at_last_entry(void **state)
{
    (void)state;
    feed_add("unit.registered");
    const added_t *second = feed_add("convention.envisaged");
    feed_start(HEARTBEAT_MS, NULL);
    zsock_t *sub = sub_open("partner");
    sub_wait_heartbeat(sub, second->position);
    const added_t *third = feed_add("convention.signed");
    sub_expect_event(sub, third, second->position);
    zsock_destroy(&sub);
}

/* Without a client key the authorized folder knows, no feed. */
static void test_unknown_key_gets_nothing(void **state)
{
    (void)state;
    feed_start(HEARTBEAT_MS, NULL);
    char stranger[600];
    snprintf(stranger, sizeof stranger, "%s/stranger", fx.dir);
    char err[256];
    assert_int_equal(identity_keygen_server(stranger, err, sizeof err), 0);
    assert_int_equal(identity_keygen_client(stranger, "partner", PARTY_PARTNER, err, sizeof err),
                     0);
    char server_public[600], client_cert[600];
    keydir_server_public_path(fx.keys, server_public, sizeof server_public);
    keydir_client_cert_path(stranger, "partner", client_cert, sizeof client_cert);
    zcert_t *mine = zcert_load(client_cert);
    zcert_t *server = zcert_load(server_public);
    zsock_t *sub = zsock_new(ZMQ_SUB);
    zcert_apply(mine, sub);
    zsock_set_curve_serverkey(sub, zcert_public_txt(server));
    zsock_set_subscribe(sub, "");
    zsock_set_rcvtimeo(sub, 100);
    zsock_connect(sub, "%s", fx.feed_endpoint);
    zcert_destroy(&mine);
    zcert_destroy(&server);
    /* A known subscriber, connected after it, gets the event; the
     * stranger, sent it at the same moment if it were let in, has none. */
    zsock_t *known = sub_open("partner");
    sub_wait_heartbeat(known, NULL);
    const added_t *added = feed_add("unit.registered");
    sub_expect_event(known, added, "0-0");
    zmsg_t *msg = zmsg_recv(sub);
    assert_null(msg);
    zsock_destroy(&known);
    zsock_destroy(&sub);
}

/* Redis goes down under the publisher and comes back: the feed goes on
 * from where it was, nothing skipped, nothing repeated. */
static void test_redis_outage(void **state)
{
    (void)state;
    feed_start(HEARTBEAT_MS, NULL);
    zsock_t *sub = sub_open("partner");
    sub_wait_heartbeat(sub, NULL);
    const added_t *first = feed_add("unit.registered");
    sub_expect_event(sub, first, "0-0");

    harness_redis_kill(&fx.redis);
    /* Long enough for the publisher's read to fail (heartbeats go on);
     * nothing is measured. */
    sub_wait_heartbeat(sub, first->position);
    zclock_sleep(300);
    sub_wait_heartbeat(sub, first->position);
    assert_int_equal(harness_redis_restart(&fx.redis), 0);
    /* The test's own connection died with Redis: the first command after
     * finds that out, the next reconnects. */
    int64_t deadline = zclock_mono() + DEADLINE_MS;
    while (!store_ping(fx.store) && zclock_mono() < deadline)
        zclock_sleep(20);

    const added_t *second = feed_add("convention.envisaged");
    const added_t *third = feed_add("convention.signed");
    sub_expect_event(sub, second, first->position);
    sub_expect_event(sub, third, second->position);
    sub_expect_quiet_until_heartbeat(sub, third->position);
    zsock_destroy(&sub);
}

/* ------------------------------------------------------------------------
 * feed.replay */

static Passerelle__EventListReply *replay(client_t *client, const char *after, uint32_t limit)
{
    Passerelle__FeedReplayRequest req = PASSERELLE__FEED_REPLAY_REQUEST__INIT;
    req.after = (char *)after;
    req.has_limit = limit > 0;
    req.limit = limit;
    Passerelle__Reply *reply = harness_call(client, "feed.replay", &req.base, 0, NULL);
    Passerelle__EventListReply *list =
        passerelle__event_list_reply__unpack(NULL, reply->body.len, reply->body.data);
    assert_non_null(list);
    passerelle__reply__free_unpacked(reply, NULL);
    return list;
}

static void test_replay_request(void **state)
{
    (void)state;
    client_t *client =
        harness_client(server_endpoint(fx.server), fx.keys, "partner", CLIENT_WAIT, 1);
    assert_non_null(client);
    for (int i = 0; i < 5; i++)
        feed_add(i % 2 ? "convention.envisaged" : "unit.registered");
    /* An entry that is not an event is passed over, the position moving on. */
    redisReply *bad = NULL;
    assert_int_equal(store_command(fx.store, &bad, "XADD %s * type junk", NOTIFY_FEED_STREAM),
                     STORE_OK);
    char junk[POSITION_MAX];
    snprintf(junk, sizeof junk, "%s", bad->str);
    freeReplyObject(bad);

    Passerelle__EventListReply *page = replay(client, "", 2);
    assert_int_equal(page->n_events, 2);
    assert_string_equal(page->events[0]->position, fx.added[0].position);
    assert_string_equal(page->events[1]->event->id, fx.added[1].id);
    assert_string_equal(page->last_position, fx.added[1].position);
    passerelle__event_list_reply__free_unpacked(page, NULL);

    page = replay(client, fx.added[1].position, 0); /* the default limit */
    assert_int_equal(page->n_events, 3);
    assert_string_equal(page->events[0]->position, fx.added[2].position);
    assert_string_equal(page->events[2]->position, fx.added[4].position);
    assert_string_equal(page->last_position, junk);
    passerelle__event_list_reply__free_unpacked(page, NULL);

    page = replay(client, junk, 1000);
    assert_int_equal(page->n_events, 0);
    assert_string_equal(page->last_position, junk);
    passerelle__event_list_reply__free_unpacked(page, NULL);

    Passerelle__FeedReplayRequest req = PASSERELLE__FEED_REPLAY_REQUEST__INIT;
    req.has_limit = true;
    req.limit = 1001;
    harness_call_refused(client, "feed.replay", &req.base, ST_INVALID_ARGUMENT, "limit");
    req.limit = 10;
    req.after = "12-x";
    harness_call_refused(client, "feed.replay", &req.base, ST_INVALID_ARGUMENT, "after");
    client_destroy(&client);
}

/* ------------------------------------------------------------------------
 * The reference subscriber */

/* Replays what is there, then follows the live feed: every event once, in
 * order; --types filters what is printed only. */
static void test_subscriber_prints_each_once(void **state)
{
    (void)state;
    feed_start(HEARTBEAT_MS, NULL);
    for (int i = 0; i < 3; i++)
        feed_add("unit.registered");
    char state_file[700];
    state_path(state_file, sizeof state_file, "once");
    subscriber_t sub;
    subscriber_start(&sub, "--from", "0", "--count", "6", "--json", "--state", state_file, NULL);
    subscriber_wait_printed(&sub, 3, state_file, fx.added[2].position);
    for (int i = 0; i < 3; i++)
        feed_add("convention.envisaged");
    assert_int_equal(subscriber_wait(&sub), 0);
    expect_json_lines(sub.out, 0, 6);

    /* The readable form, filtered: the conventions only. */
    subscriber_t readable;
    subscriber_start(&readable, "--from", "0", "--count", "3", "--types", "convention.,programme.",
                     NULL);
    assert_int_equal(subscriber_wait(&readable), 0);
    char *text = harness_file_read(readable.out, NULL);
    char *line = text;
    for (size_t i = 3; i < 6; i++) {
        char prefix[POSITION_MAX + 2];
        snprintf(prefix, sizeof prefix, "%s ", fx.added[i].position);
        assert_memory_equal(line, prefix, strlen(prefix));
        char *end = strchr(line, '\n');
        assert_non_null(end);
        *end = '\0';
        assert_non_null(strstr(line, " convention.envisaged units/U"));
        line = end + 1;
    }
    assert_string_equal(line, "");
    free(text);
}

/* Killed (SIGKILL) and started again on its state file while events are
 * added: it prints exactly the ones it missed, then the new ones. SIGTERM
 * ends it with status 0, its state saved. */
static void test_subscriber_restart(void **state)
{
    (void)state;
    feed_start(HEARTBEAT_MS, NULL);
    char state_file[700];
    state_path(state_file, sizeof state_file, "restart");
    subscriber_t first;
    subscriber_start(&first, "--from", "0", "--json", "--state", state_file, NULL);
    for (int i = 0; i < 3; i++)
        feed_add("unit.registered");
    subscriber_wait_printed(&first, 3, state_file, fx.added[2].position);
    subscriber_kill(&first, SIGKILL);
    int status = 0;
    waitpid(first.pid, &status, 0);
    expect_json_lines(first.out, 0, 3);

    for (int i = 0; i < 3; i++)
        feed_add("convention.envisaged"); /* missed */
    subscriber_t second;
    subscriber_start(&second, "--from", "0", "--json", "--state", state_file, "--count", "5", NULL);
    subscriber_wait_printed(&second, 3, state_file, fx.added[5].position);
    feed_add("convention.signed");
    feed_add("convention.in_force");
    assert_int_equal(subscriber_wait(&second), 0);
    expect_json_lines(second.out, 3, 5);

    subscriber_t third;
    subscriber_start(&third, "--json", "--state", state_file, NULL);
    feed_add("reservation.created");
    subscriber_wait_printed(&third, 1, state_file, fx.added[8].position);
    subscriber_kill(&third, SIGTERM);
    assert_int_equal(subscriber_wait(&third), 0);
    expect_json_lines(third.out, 8, 1);
}

/* The publisher stops and starts again while events are added: the
 * subscriber sees the gap in `previous` and replays. The new publisher's
 * heartbeat is far off, so only the chain can tell. */
static void test_publisher_restart(void **state)
{
    (void)state;
    feed_start(HEARTBEAT_MS, NULL);
    char state_file[700];
    state_path(state_file, sizeof state_file, "publisher");
    subscriber_t sub;
    subscriber_start(&sub, "--from", "0", "--json", "--state", state_file, NULL);
    feed_add("unit.registered");
    feed_add("unit.registered");
    subscriber_wait_printed(&sub, 2, state_file, fx.added[1].position);

    char endpoint[256];
    snprintf(endpoint, sizeof endpoint, "%s", fx.feed_endpoint);
    feed_destroy(&fx.feed);
    for (int i = 0; i < 3; i++)
        feed_add("convention.envisaged"); /* while no one publishes */
    feed_start(60000, endpoint);

    /* One new event at a time until the subscriber is back on the feed and
     * has everything: each is printed once, in order, whichever came live. */
    int64_t deadline = zclock_mono() + DEADLINE_MS;
    bool complete = false;
    while (!complete && zclock_mono() < deadline) {
        feed_add("convention.signed");
        int64_t wait_until = zclock_mono() + 500;
        while (!complete && zclock_mono() < wait_until) {
            char *text = harness_file_read(sub.out, NULL);
            complete = count_lines(text) >= fx.added_count;
            free(text);
            if (!complete)
                zclock_sleep(20);
        }
    }
    assert_true(complete);
    subscriber_wait_printed(&sub, fx.added_count, state_file,
                            fx.added[fx.added_count - 1].position);
    subscriber_kill(&sub, SIGTERM);
    assert_int_equal(subscriber_wait(&sub), 0);
    expect_json_lines(sub.out, 0, fx.added_count);
}

/* Bad options are usage errors (2) before anything connects. */
static void test_subscriber_usage(void **state)
{
    (void)state;
    feed_start(HEARTBEAT_MS, NULL);
    subscriber_t sub;
    subscriber_start(&sub, "--count", "none", NULL);
    assert_int_equal(subscriber_wait(&sub), 2);
    subscriber_start(&sub, "--from", "yesterday", NULL);
    assert_int_equal(subscriber_wait(&sub), 2);
    subscriber_start(&sub, "--as", "../server", NULL);
    assert_int_equal(subscriber_wait(&sub), 2);
    subscriber_start(&sub, "--frobnicate", NULL);
    assert_int_equal(subscriber_wait(&sub), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_frames_and_chain, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_topic_prefix, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_starts_at_last_entry, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_unknown_key_gets_nothing, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_replay_request, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_subscriber_prints_each_once, test_setup,
                                        test_teardown),
        cmocka_unit_test_setup_teardown(test_subscriber_restart, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_publisher_restart, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_subscriber_usage, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_redis_outage, test_setup, test_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
