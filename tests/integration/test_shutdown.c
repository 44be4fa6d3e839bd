/* The clean stop: SIGTERM under load, within the grace period
 * (PASSERELLE_SHUTDOWN_GRACE_MS, server_drain in server.h).
 *
 * What operations rely on when they stop or roll a service: it stops
 * taking requests, answers those in flight, acknowledges what it finished
 * and exits 0 within the grace period. So:
 *   - in process, a draining server answers what comes "stopping"
 *     (UNAVAILABLE) and returns once its socket is quiet, well before the
 *     grace period ends; with a grace of 0 it returns at once;
 *   - the reservations service, SIGTERMed while writers register units
 *     as fast as it answers, exits 0 within grace and a margin; every
 *     request got a reply (OK, or UNAVAILABLE "stopping"); after a restart
 *     every acknowledged unit is there, and every refused request, sent
 *     again with its idempotency key, succeeds, once: the stream holds one
 *     unit.registered per unit;
 *   - the indicators service, SIGTERMed while it counts a backlog of
 *     events and more keep coming, exits 0 with nothing pending in its
 *     consumer group (what it took, it finished and acknowledged), and
 *     after a restart its count of units equals the number of events: none
 *     lost, none counted twice;
 *   - the notifications service, SIGTERMed while a webhook transfer is in
 *     flight (the endpoint holds it a second), lets it finish and records
 *     its outcome before it exits: the attempts log has it, delivered.
 *
 * The writers' clients do not retry (retries 0), so that the test sees
 * each reply, and wait far longer than the grace period, so that a
 * request the service left unanswered shows as "no reply" rather than as
 * a timeout hidden by the stop. Times are bounds polled with deadlines. */
#include "harness.h"

#include "ids.h"
#include "log.h"
#include "notifications.pb-c.h"
#include "reservations.pb-c.h"
#include "server.h"
#include "status.h"

#include <czmq.h>
#include <jansson.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#define GRACE_MS  3000
#define GRACE_ENV "PASSERELLE_SHUTDOWN_GRACE_MS=3000"
/* Far above the grace period: a request not answered by the stop waits
 * this long and comes back as no reply. */
#define CALL_TIMEOUT_MS 8000
/* The exit's allowance beyond the grace period (process teardown); a run
 * of the services under valgrind, whose exit checks for leaks, may set a
 * longer one in PASSERELLE_TEST_SHUTDOWN_MARGIN_MS. */
#define EXIT_MARGIN_MS_DEFAULT 2000
#define WRITERS                4
/* A writer's most requests: the stop comes long before. */
#define WRITES_MAX 4000
/* Acknowledged writes before the SIGTERM. */
#define ACKED_BEFORE_STOP 40
#define STOPPING_MESSAGE  "the service is stopping"

#define STREAM "reservations:events"
/* Events appended before the stop, and the most appended while it
 * stops, in chunks of APPEND_CHUNK. */
#define BACKLOG      20000
#define FLOW_MAX     100000
#define APPEND_CHUNK 500
#define CATCH_UP_MS  40000

static int exit_margin_ms(void)
{
    const char *text = getenv("PASSERELLE_TEST_SHUTDOWN_MARGIN_MS");
    int ms = text ? atoi(text) : 0;
    return ms > 0 ? ms : EXIT_MARGIN_MS_DEFAULT;
}

/* Waits for pid to exit, up to timeout_ms (polled); its wait status, or -1
 * if it still runs (it is then killed, so that the test does not hang). */
static int wait_exit(pid_t pid, int timeout_ms, int64_t *took_ms)
{
    int64_t start = zclock_mono();
    for (;;) {
        int status = 0;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            *took_ms = zclock_mono() - start;
            return status;
        }
        if (zclock_mono() - start > timeout_ms) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            *took_ms = zclock_mono() - start;
            return -1;
        }
        zclock_sleep(5);
    }
}

/* SIGTERM, and the service must exit 0 within the grace period and the
 * margin, leaving no sanitizer report. */
static void stop_within_grace(harness_service_t *service, int grace_ms)
{
    assert_true(service->pid > 0);
    assert_int_equal(kill(service->pid, SIGTERM), 0);
    int64_t took_ms = 0;
    int status = wait_exit(service->pid, grace_ms + exit_margin_ms(), &took_ms);
    service->pid = 0;
    fprintf(stderr, "%s stopped in %lld ms (wait status %d)\n", service->name, (long long)took_ms,
            status);
    if (status == -1)
        fail_msg("%s did not exit within %d ms of SIGTERM (see %s)", service->name,
                 grace_ms + exit_margin_ms(), service->log_path);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_false(harness_log_has_sanitizer_report(service->log_path));
}

/* ======================== in process =================================== */

typedef struct {
    char endpoint[256];
    atomic_bool stop;
    /* What the caller saw: OK replies, "stopping" replies, other replies,
     * calls without a reply. */
    atomic_int ok, stopping, other, no_reply;
} pinger_t;

static bool reply_is_stopping(const Passerelle__Reply *reply)
{
    return reply->has_status && (int)reply->status == ST_UNAVAILABLE && reply->message &&
           strstr(reply->message, STOPPING_MESSAGE) != NULL;
}

/* Health requests back to back until one is refused or unanswered. */
static void *pinger_run(void *arg)
{
    pinger_t *p = arg;
    client_config_t cfg = {.endpoint = p->endpoint, .insecure = true, .timeout_ms = 1000};
    char err[256];
    client_t *client = client_new(&cfg, err, sizeof err);
    if (!client) {
        p->other++;
        return NULL;
    }
    while (!atomic_load(&p->stop)) {
        Passerelle__Reply *reply = NULL;
        if (client_call(client, "health", NULL, NULL, &reply) != 0) {
            p->no_reply++;
            break;
        }
        bool stopping = reply_is_stopping(reply);
        if (stopping)
            p->stopping++;
        else if (reply->has_status && (int)reply->status == ST_OK)
            p->ok++;
        else
            p->other++;
        passerelle__reply__free_unpacked(reply, NULL);
        if (stopping)
            break;
    }
    client_destroy(&client);
    return NULL;
}

/* A server in this process, no store, no CURVE: the built-in health. */
static server_t *inproc_server(void)
{
    server_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.service = "shutdown-test";
    cfg.endpoint = "tcp://127.0.0.1:*";
    cfg.insecure = true;
    server_t *server = server_new(&cfg);
    assert_non_null(server);
    return server;
}

/* Starts a pinger on server and waits until min_ok of its requests were
 * answered (polled: the thread runs freely), so that a stop comes with
 * some work done before it. */
static pthread_t pinger_start(pinger_t *p, server_t *server, int min_ok)
{
    memset(p, 0, sizeof *p);
    snprintf(p->endpoint, sizeof p->endpoint, "%s", server_endpoint(server));
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, pinger_run, p), 0);
    for (int64_t until = zclock_mono() + 5000; zclock_mono() < until;) {
        if (atomic_load(&p->ok) >= min_ok)
            break;
        zclock_sleep(1);
    }
    return thread;
}

/* Drains while a caller sends requests back to back: the caller gets OK
 * until the drain, then one "stopping", and the drain returns once the
 * socket is quiet, long before its grace period. */
static void test_drain_in_process(void **state)
{
    (void)state;
    server_t *server = inproc_server();
    pinger_t p;
    pthread_t thread = pinger_start(&p, server, 20);
    int64_t start = zclock_mono();
    server_drain(server, 5000);
    int64_t took_ms = zclock_mono() - start;
    atomic_store(&p.stop, true);
    pthread_join(thread, NULL);
    server_drain(server, 5000); /* a second call returns at once */
    server_destroy(&server);
    fprintf(stderr, "drained in %lld ms: %d OK, %d stopping, %d other, %d no reply\n",
            (long long)took_ms, atomic_load(&p.ok), atomic_load(&p.stopping), atomic_load(&p.other),
            atomic_load(&p.no_reply));
    assert_true(p.ok >= 20);
    assert_int_equal(p.stopping, 1);
    assert_int_equal(p.other, 0);
    assert_int_equal(p.no_reply, 0);
    /* Quiet a tenth of a second after the refusal: far from the 5 s. */
    assert_true(took_ms < 2500);
}

/* A grace of 0: the server stops at once, whatever comes. */
static void test_drain_grace_zero(void **state)
{
    (void)state;
    server_t *server = inproc_server();
    pinger_t p;
    pthread_t thread = pinger_start(&p, server, 5);
    int64_t start = zclock_mono();
    server_drain(server, 0);
    int64_t took_ms = zclock_mono() - start;
    atomic_store(&p.stop, true);
    pthread_join(thread, NULL);
    server_destroy(&server);
    fprintf(stderr, "grace 0: stopped in %lld ms\n", (long long)took_ms);
    assert_true(p.ok >= 5);
    assert_int_equal(p.other, 0);
    assert_true(took_ms < 1000);
}

/* ======================== reservations under load ====================== */

enum { OUT_NONE = 0, OUT_OK, OUT_STOPPING, OUT_OTHER, OUT_NO_REPLY };

typedef struct {
    client_t *client;
    int thread;
    int sent;
    int outcome[WRITES_MAX];
    char unit_id[WRITES_MAX][ID_LEN];
    int other_status;
    char other_message[256];
} writer_t;

static atomic_int writes_acked;

static void write_ref(char *out, size_t size, int thread, int i)
{
    snprintf(out, size, "shutdown-%d-%04d", thread, i);
}

static void write_key(char *out, size_t size, int thread, int i)
{
    snprintf(out, size, "shutdown-key-%d-%04d", thread, i);
}

/* The unit id of an OK reply into id; false if it has none. */
static bool reply_unit_id(const Passerelle__Reply *reply, char *id)
{
    if (!reply->has_body)
        return false;
    Passerelle__Unit *unit = passerelle__unit__unpack(NULL, reply->body.len, reply->body.data);
    if (!unit)
        return false;
    snprintf(id, ID_LEN, "%s", unit->id ? unit->id : "");
    passerelle__unit__free_unpacked(unit, NULL);
    return id[0] != '\0';
}

/* Registers units, each with its own key, until refused or unanswered. */
static void *writer_run(void *arg)
{
    writer_t *w = arg;
    for (int i = 0; i < WRITES_MAX; i++) {
        char ref[64], key[64];
        write_ref(ref, sizeof ref, w->thread, i);
        write_key(key, sizeof key, w->thread, i);
        Passerelle__UnitRegisterRequest req;
        harness_unit_request(&req, ref);
        Passerelle__Reply *reply = NULL;
        w->sent = i + 1;
        if (client_call(w->client, "unit.register", &req.base, key, &reply) != 0) {
            w->outcome[i] = OUT_NO_REPLY;
            break;
        }
        if ((int)reply->status == ST_OK && reply_unit_id(reply, w->unit_id[i])) {
            w->outcome[i] = OUT_OK;
            atomic_fetch_add(&writes_acked, 1);
        } else if (reply_is_stopping(reply)) {
            w->outcome[i] = OUT_STOPPING;
        } else {
            w->outcome[i] = OUT_OTHER;
            w->other_status = (int)reply->status;
            snprintf(w->other_message, sizeof w->other_message, "%s",
                     reply->message ? reply->message : "");
        }
        passerelle__reply__free_unpacked(reply, NULL);
        if (w->outcome[i] != OUT_OK)
            break;
    }
    return NULL;
}

static int stack_setup(void **state)
{
    harness_stack_t *stack = calloc(1, sizeof *stack);
    *state = stack;
    char *env[] = {GRACE_ENV, NULL};
    return stack && harness_stack_start(stack, "shutdown", NULL, env) == 0 ? 0 : -1;
}

static int stack_teardown(void **state)
{
    harness_stack_t *stack = *state;
    int rc = 0;
    if (stack) {
        rc = harness_stack_stop(stack) ? 0 : -1;
        free(stack);
    }
    return rc;
}

/* The unit of id must be there, with its reference. */
static void expect_unit(client_t *reader, const char *id, const char *ref)
{
    Passerelle__UnitGetRequest get = PASSERELLE__UNIT_GET_REQUEST__INIT;
    get.id = (char *)id;
    Passerelle__Unit *unit = (Passerelle__Unit *)harness_call_ok(reader, "unit.get", &get.base,
                                                                 &passerelle__unit__descriptor);
    assert_non_null(unit);
    assert_string_equal(unit->external_ref ? unit->external_ref : "", ref);
    passerelle__unit__free_unpacked(unit, NULL);
}

static void test_reservations_sigterm_under_load(void **state)
{
    harness_stack_t *stack = *state;
    atomic_store(&writes_acked, 0);
    writer_t *writers = calloc(WRITERS, sizeof *writers);
    assert_non_null(writers);
    pthread_t threads[WRITERS];
    for (int t = 0; t < WRITERS; t++) {
        writers[t].thread = t;
        writers[t].client = harness_stack_client(stack, "metropole", CALL_TIMEOUT_MS, 0);
        assert_non_null(writers[t].client);
    }
    for (int t = 0; t < WRITERS; t++)
        assert_int_equal(pthread_create(&threads[t], NULL, writer_run, &writers[t]), 0);

    /* Under load: some writes acknowledged, the writers still going. */
    for (int64_t until = zclock_mono() + 20000;
         atomic_load(&writes_acked) < ACKED_BEFORE_STOP && zclock_mono() < until;)
        zclock_sleep(2);
    int acked_before = atomic_load(&writes_acked);
    assert_true(acked_before >= ACKED_BEFORE_STOP);
    stop_within_grace(&stack->service, GRACE_MS);
    for (int t = 0; t < WRITERS; t++)
        pthread_join(threads[t], NULL);

    /* Every request got its reply: OK, or refused because stopping. */
    int ok = 0, stopping = 0, other = 0, no_reply = 0;
    for (int t = 0; t < WRITERS; t++) {
        const writer_t *w = &writers[t];
        for (int i = 0; i < w->sent; i++) {
            ok += w->outcome[i] == OUT_OK;
            stopping += w->outcome[i] == OUT_STOPPING;
            no_reply += w->outcome[i] == OUT_NO_REPLY;
            if (w->outcome[i] == OUT_OTHER) {
                other++;
                fprintf(stderr, "writer %d request %d: status %d: %s\n", t, i, w->other_status,
                        w->other_message);
            }
        }
        /* Each stopped on a refusal, not on its cap. */
        assert_true(w->sent < WRITES_MAX);
    }
    fprintf(stderr,
            "under load: %d acknowledged (%d before the signal), %d refused stopping, "
            "%d other, %d without reply\n",
            ok, acked_before, stopping, other, no_reply);
    assert_int_equal(no_reply, 0);
    assert_int_equal(other, 0);
    assert_true(ok >= acked_before);
    assert_int_equal(stopping, WRITERS);
    char *log = harness_file_read(stack->service.log_path, NULL);
    harness_assert_contains(log, "\"msg\":\"stopped taking requests\"");
    harness_assert_contains(log, "\"msg\":\"drained\"");
    free(log);

    /* The restarted service has every acknowledged write, and takes every
     * refused one, sent again with its key, once. */
    assert_int_equal(harness_stack_restart(stack), 0);
    client_t *reader = harness_stack_client(stack, "metropole", 5000, 2);
    assert_non_null(reader);
    int retried = 0;
    for (int t = 0; t < WRITERS; t++) {
        writer_t *w = &writers[t];
        for (int i = 0; i < w->sent; i++) {
            char ref[64], key[64];
            write_ref(ref, sizeof ref, t, i);
            if (w->outcome[i] == OUT_OK) {
                expect_unit(reader, w->unit_id[i], ref);
                continue;
            }
            write_key(key, sizeof key, t, i);
            Passerelle__UnitRegisterRequest req;
            harness_unit_request(&req, ref);
            char first[ID_LEN], again[ID_LEN];
            for (int n = 0; n < 2; n++) {
                Passerelle__Reply *reply =
                    harness_call_keyed(reader, "unit.register", &req.base, key, ST_OK, NULL);
                assert_true(reply_unit_id(reply, n == 0 ? first : again));
                passerelle__reply__free_unpacked(reply, NULL);
            }
            /* The same key twice: the first reply again, not a second unit. */
            assert_string_equal(first, again);
            expect_unit(reader, first, ref);
            retried++;
        }
    }
    assert_int_equal(retried, stopping);
    harness_events_t events;
    harness_events_read(reader, "0", &events);
    int registered = harness_events_count_units(&events, "unit.registered", NULL);
    for (int t = 0; t < WRITERS; t++)
        for (int i = 0; i < writers[t].sent; i++) {
            char ref[64];
            write_ref(ref, sizeof ref, t, i);
            assert_int_equal(harness_events_count_units(&events, "unit.registered", ref), 1);
        }
    harness_events_free(&events);
    assert_int_equal(registered, ok + retried);

    client_destroy(&reader);
    for (int t = 0; t < WRITERS; t++)
        client_destroy(&writers[t].client);
    free(writers);
}

/* ======================== indicators' consumers ======================== */

static char *indicators_env[] = {GRACE_ENV, NULL};

static int indicators_setup(void **state)
{
    return harness_indicators_setup(state, sizeof(harness_indicators_t), "shutdown-ind",
                                    indicators_env);
}

/* A unit.registered event (synthetic, as the reservations service writes
 * them) packed into out (4096 bytes); its length. */
static size_t unit_event(uint8_t *out)
{
    char unit_id[ID_LEN], event_id[ID_LEN], when[TIME_RFC3339_LEN];
    id_new('U', unit_id);
    id_new('E', event_id);
    time_rfc3339(time_now_ms(), when);
    Passerelle__Unit unit = PASSERELLE__UNIT__INIT;
    unit.id = unit_id;
    unit.commune_insee = "13001";
    unit.territory = "CT2";
    unit.has_stock = true;
    unit.stock = PASSERELLE__STOCK__STOCK_PRIVATE;
    uint8_t data[1024];
    size_t len = passerelle__unit__pack(&unit, data);
    Passerelle__Event ev = PASSERELLE__EVENT__INIT;
    ev.id = event_id;
    ev.source = "/passerelle/reservations";
    ev.type = "unit.registered";
    ev.subject = "units/synthetic";
    ev.time = when;
    ev.datacontenttype = "application/protobuf";
    ev.dataschema = "passerelle.Unit";
    ev.has_data = true;
    ev.data.data = data;
    ev.data.len = len;
    ev.specversion = "1.0";
    return passerelle__event__pack(&ev, out);
}

/* Appends count events straight into the stream, APPEND_CHUNK per
 * pipeline. False if Redis did not take them all (no cmocka assertion:
 * it also runs in a thread of its own). */
static bool append_units(store_t *store, unsigned count)
{
    static _Thread_local uint8_t packed[APPEND_CHUNK][4096];
    const char *argv[APPEND_CHUNK][7];
    size_t lens[APPEND_CHUNK][7];
    store_cmd_t cmds[APPEND_CHUNK];
    redisReply *replies[APPEND_CHUNK];
    store_result_t results[APPEND_CHUNK];
    bool ok = true;
    for (unsigned i = 0; i < count; i += APPEND_CHUNK) {
        unsigned m = count - i < APPEND_CHUNK ? count - i : APPEND_CHUNK;
        for (unsigned j = 0; j < m; j++) {
            size_t len = unit_event(packed[j]);
            const char *a[7] = {"XADD",  STREAM,           "*", "type", "unit.registered",
                                "event", (char *)packed[j]};
            for (int k = 0; k < 7; k++) {
                argv[j][k] = a[k];
                lens[j][k] = strlen(a[k]);
            }
            lens[j][6] = len;
            cmds[j] = (store_cmd_t){7, argv[j], lens[j]};
        }
        store_command_many(store, cmds, m, replies, results);
        for (unsigned j = 0; j < m; j++) {
            ok &= results[j] == STORE_OK;
            if (replies[j])
                freeReplyObject(replies[j]);
        }
    }
    return ok;
}

/* Events keep coming while the service stops: a thread appends them, on
 * its own connection, until told to stop. */
typedef struct {
    store_t *store;
    atomic_bool stop;
    atomic_uint appended;
    atomic_bool failed;
} appender_t;

static void *appender_run(void *arg)
{
    appender_t *a = arg;
    while (!atomic_load(&a->stop) && atomic_load(&a->appended) < FLOW_MAX) {
        if (!append_units(a->store, APPEND_CHUNK)) {
            atomic_store(&a->failed, true);
            break;
        }
        atomic_fetch_add(&a->appended, APPEND_CHUNK);
    }
    return NULL;
}

/* The entries of stream the indicators group has read and not
 * acknowledged (0 when there is no such group), and into *lag those it has
 * yet to read. */
static long long group_pending(store_t *store, const char *stream, long long *lag)
{
    redisReply *groups = NULL;
    *lag = 0;
    if (store_command(store, &groups, "XINFO GROUPS %s", stream) != STORE_OK) {
        if (groups)
            freeReplyObject(groups);
        return 0; /* no stream, so no group */
    }
    long long pending = 0;
    for (size_t g = 0; groups->type == REDIS_REPLY_ARRAY && g < groups->elements; g++) {
        const redisReply *info = groups->element[g];
        bool ours = false;
        long long p = 0, l = 0;
        for (size_t i = 0; i + 1 < info->elements; i += 2) {
            const char *k = info->element[i]->str;
            const redisReply *v = info->element[i + 1];
            if (strcmp(k, "name") == 0)
                ours = strcmp(v->str, "indicators") == 0;
            else if (strcmp(k, "pending") == 0)
                p = v->integer;
            else if (strcmp(k, "lag") == 0)
                l = v->type == REDIS_REPLY_INTEGER ? v->integer : 0;
        }
        if (ours) {
            pending = p;
            *lag = l;
        }
    }
    freeReplyObject(groups);
    return pending;
}

static void test_indicators_sigterm_while_counting(void **state)
{
    harness_indicators_t *f = *state;
    assert_true(append_units(f->store, BACKLOG));
    store_config_t cfg;
    harness_redis_config(&f->stack.redis, &cfg);
    appender_t appender = {.store = store_new(&cfg)};
    assert_non_null(appender.store);
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, appender_run, &appender), 0);
    /* Stopped while it counts: some entries read, more coming. */
    long long lag = 0;
    for (int64_t until = zclock_mono() + 20000; zclock_mono() < until;) {
        group_pending(f->store, STREAM, &lag);
        if (lag < BACKLOG)
            break;
        zclock_sleep(1);
    }
    stop_within_grace(&f->indicators, GRACE_MS);
    atomic_store(&appender.stop, true);
    pthread_join(thread, NULL);
    store_destroy(&appender.store);
    assert_false(atomic_load(&appender.failed));
    long long total = BACKLOG + (long long)atomic_load(&appender.appended);

    long long pending = group_pending(f->store, STREAM, &lag);
    fprintf(stderr, "indicators stopped with %lld entries pending, %lld of %lld not read yet\n",
            pending, lag, total);
    /* What it took, it finished and acknowledged. */
    assert_int_equal(pending, 0);
    long long other_lag = 0;
    assert_int_equal(group_pending(f->store, "docstore:events", &other_lag), 0);
    assert_int_equal(group_pending(f->store, "indicators:events", &other_lag), 0);
    /* The pending list itself, as XPENDING gives it. */
    redisReply *r = NULL;
    assert_int_equal(store_command(f->store, &r, "XPENDING %s indicators", STREAM), STORE_OK);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_true(r->elements >= 1 && r->element[0]->type == REDIS_REPLY_INTEGER);
    assert_int_equal(r->element[0]->integer, 0);
    freeReplyObject(r);

    /* Restarted, it counts the rest: every event once. */
    assert_int_equal(harness_service_restart(&f->indicators, f->stack.dir, indicators_env), 0);
    harness_indicators_wait_caught_up(f->store, STREAM, CATCH_UP_MS);
    harness_indicators_expect_counter(f->store, "c:units.registered:all:all", "*", total,
                                      CATCH_UP_MS);
}

/* ======================== notifications' webhooks ====================== */

/* The sink holds each request this long before its 200: longer than the
 * service takes to stop its server and readers (a few tenths of a second:
 * each reader ends its XREADGROUP BLOCK first), so that the transfer is
 * still in flight when the delivery worker drains; shorter than the grace
 * period and the attempt timeout set below. */
#define SINK_HOLD_MS "2500"

typedef struct {
    harness_stack_t stack; /* Redis, reservations and its client */
    harness_service_t notify;
    harness_proc_t sink;
    char sink_out[512];
    client_t *al; /* Action Logement, of the notifications service */
} notify_fixture_t;

#define NOTIFY_GRACE_MS 5000
static char *notify_env[] = {"PASSERELLE_SHUTDOWN_GRACE_MS=5000",
                             "PASSERELLE_NOTIFY_TIMEOUT_MS=8000", NULL};

static int notify_setup(void **state)
{
    notify_fixture_t *f = calloc(1, sizeof *f);
    *state = f;
    if (!f || harness_stack_start(&f->stack, "shutdown-notify", "operator", NULL) != 0 ||
        harness_notify_start(&f->stack, &f->notify, notify_env) != 0)
        return -1;
    f->al = harness_notify_client(&f->stack, &f->notify, "action_logement");
    return f->al ? 0 : -1;
}

static int notify_teardown(void **state)
{
    notify_fixture_t *f = *state;
    if (!f)
        return 0;
    client_destroy(&f->al);
    harness_proc_stop(&f->sink, SIGTERM);
    bool clean = harness_service_stop_checked(&f->notify);
    clean &= harness_stack_stop(&f->stack);
    free(f);
    return clean ? 0 : -1;
}

/* The last log line named msg in a service's log (caller decrefs), or
 * NULL. */
static json_t *log_line(const char *log_path, const char *msg)
{
    json_t *lines = harness_jsonl_read(log_path);
    json_t *found = NULL;
    size_t i;
    json_t *line;
    json_array_foreach(lines, i, line)
    {
        const char *m = json_string_value(json_object_get(line, "msg"));
        if (m && strcmp(m, msg) == 0) {
            json_decref(found);
            found = json_incref(line);
        }
    }
    json_decref(lines);
    return found;
}

/* A webhook transfer in flight when the service is told to stop is let
 * finish, and its outcome recorded, before the service exits. */
static void test_notifications_sigterm_with_webhook_in_flight(void **state)
{
    notify_fixture_t *f = *state;
    snprintf(f->sink_out, sizeof f->sink_out, "%s/slow.jsonl", f->stack.dir);
    const char *args[] = {"--port",  "0",         "--out",      f->sink_out, "--mode",
                          "timeout", "--hold-ms", SINK_HOLD_MS, NULL};
    assert_int_equal(
        harness_proc_start(&f->sink, "tools/passerelle-sink", f->stack.dir, "slow", args, true), 0);
    char sub[ID_LEN], unit[ID_LEN];
    harness_notify_webhook(f->al, f->sink.url, "convention.*", "", sub, NULL);
    harness_envisaged_unit(f->stack.client, "ANAH-SHUTDOWN-1", "13001", unit);
    /* The sink tells of a request as it arrives, before it holds it. */
    json_t *seen = harness_jsonl_wait(f->sink_out, 1, 15000);
    assert_int_equal(json_array_size(seen), 1);
    json_decref(seen);

    stop_within_grace(&f->notify, NOTIFY_GRACE_MS);
    json_t *drained = log_line(f->notify.log_path, "deliveries drained");
    assert_non_null(drained);
    fprintf(stderr, "deliveries drained: %d finished, %d abandoned, in %d ms\n",
            (int)json_integer_value(json_object_get(drained, "finished")),
            (int)json_integer_value(json_object_get(drained, "abandoned")),
            (int)json_integer_value(json_object_get(drained, "took_ms")));
    assert_int_equal(json_integer_value(json_object_get(drained, "finished")), 1);
    assert_int_equal(json_integer_value(json_object_get(drained, "abandoned")), 0);
    json_decref(drained);

    /* Recorded before the exit: the restarted service's attempts log has
     * it, delivered. */
    assert_int_equal(harness_notify_restart(&f->stack, &f->notify, notify_env), 0);
    client_destroy(&f->al);
    f->al = harness_notify_client(&f->stack, &f->notify, "action_logement");
    assert_non_null(f->al);
    Passerelle__AttemptList *attempts = harness_notify_attempts(f->al, sub);
    assert_int_equal(attempts->n_attempts, 1);
    assert_int_equal(attempts->attempts[0]->http_status, 200);
    assert_string_equal(attempts->attempts[0]->outcome ? attempts->attempts[0]->outcome : "",
                        "delivered");
    passerelle__attempt_list__free_unpacked(attempts, NULL);
}

int main(void)
{
    log_init("test_shutdown");
    log_set_level(LOG_LEVEL_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_drain_in_process),
        cmocka_unit_test(test_drain_grace_zero),
        cmocka_unit_test_setup_teardown(test_reservations_sigterm_under_load, stack_setup,
                                        stack_teardown),
        cmocka_unit_test_setup_teardown(test_indicators_sigterm_while_counting, indicators_setup,
                                        harness_indicators_teardown),
        cmocka_unit_test_setup_teardown(test_notifications_sigterm_with_webhook_in_flight,
                                        notify_setup, notify_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
