/* Faults: the reservations service and Redis die while clients write.
 *
 * The promises under test (DESIGN.md, section 4): killing the service at
 * any moment loses no acknowledged write and duplicates nothing, because
 * clients retry with the same idempotency key; with Redis down a request is
 * answered UNAVAILABLE within the client's timeout and the same service
 * process recovers by itself when Redis returns; Redis killed and restarted
 * (AOF, appendfsync always) loses no acknowledged write.
 *
 * Each test starts its own redis-server and service, since it breaks them.
 * Writers are threads, each with its own client; the checks are made by the
 * main thread once every writer has its answer. */
#include "harness.h"
#include "ids.h"
#include "reservations.pb-c.h"
#include "status.h"

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#define BURST_THREADS    4
#define BURST_PER_THREAD 50
#define BURST_TOTAL      (BURST_THREADS * BURST_PER_THREAD)
#define NO_REPLY         (-1)

typedef struct {
    harness_stack_t stack; /* its client reads, for the checks */
} fixture_t;

static fixture_t fx;

/* --- fixture ----------------------------------------------------------- */

static int fault_setup(void **state)
{
    *state = &fx.stack;
    if (harness_stack_start(&fx.stack, "faults", NULL, NULL) != 0)
        return -1;
    fx.stack.client = harness_stack_client(&fx.stack, "metropole", 3000, 5);
    return fx.stack.client ? 0 : -1;
}

/* --- requests and checks ---------------------------------------------- */

static const char *str_or_empty(const char *s)
{
    return s ? s : "";
}

/* The unit id in an OK unit.register/unit.get reply, copied into id;
 * false if the reply is not OK. */
static bool reply_unit_id(const Passerelle__Reply *reply, char *id, size_t id_size)
{
    if (reply->status != PASSERELLE__STATUS__STATUS_OK || !reply->has_body)
        return false;
    Passerelle__Unit *unit = passerelle__unit__unpack(NULL, reply->body.len, reply->body.data);
    if (!unit)
        return false;
    snprintf(id, id_size, "%s", str_or_empty(unit->id));
    passerelle__unit__free_unpacked(unit, NULL);
    return true;
}

static bool process_alive(pid_t pid)
{
    return pid > 0 && waitpid(pid, NULL, WNOHANG) == 0 && kill(pid, 0) == 0;
}

/* --- concurrent writers ------------------------------------------------- */

typedef struct {
    client_t *client;
    char prefix[32];
    int thread;
    /* Per write: the unit id when acknowledged, else "" and the status
     * that came back (NO_REPLY when none did). */
    char ids[BURST_PER_THREAD][ID_LEN + 8];
    int status[BURST_PER_THREAD];
} writer_t;

static atomic_int burst_acked;

static void burst_ref(char *out, size_t size, const char *prefix, int thread, int i)
{
    snprintf(out, size, "%s-%d-%03d", prefix, thread, i);
}

static void *writer_run(void *arg)
{
    writer_t *self = arg;
    for (int i = 0; i < BURST_PER_THREAD; i++) {
        char ref[64];
        burst_ref(ref, sizeof ref, self->prefix, self->thread, i);
        Passerelle__UnitRegisterRequest req;
        harness_unit_request(&req, ref);
        Passerelle__Reply *reply = NULL;
        /* No key given: the client makes one and keeps it across its own
         * retries, which is what makes them safe. */
        if (client_call(self->client, "unit.register", &req.base, NULL, &reply) != 0) {
            self->status[i] = NO_REPLY;
            continue;
        }
        self->status[i] = (int)reply->status;
        if (reply_unit_id(reply, self->ids[i], sizeof self->ids[i]))
            atomic_fetch_add(&burst_acked, 1);
        passerelle__reply__free_unpacked(reply, NULL);
    }
    return NULL;
}

typedef int(fault_fn)(void);

/* Runs the writers; once a third of the writes are acknowledged, runs fault
 * (whose result goes to *fault_rc) and notes how many were acknowledged by
 * then in *acked_at_fault. Returns the writers (caller frees). */
static writer_t *burst_run(const char *prefix, int timeout_ms, int retries, fault_fn *fault,
                           int *fault_rc, int *acked_at_fault)
{
    writer_t *writers = calloc(BURST_THREADS, sizeof *writers);
    assert_non_null(writers);
    pthread_t threads[BURST_THREADS];
    atomic_store(&burst_acked, 0);
    for (int t = 0; t < BURST_THREADS; t++) {
        writers[t].thread = t;
        snprintf(writers[t].prefix, sizeof writers[t].prefix, "%s", prefix);
        writers[t].client = harness_stack_client(&fx.stack, "operator", timeout_ms, retries);
        assert_non_null(writers[t].client);
    }
    for (int t = 0; t < BURST_THREADS; t++)
        assert_int_equal(pthread_create(&threads[t], NULL, writer_run, &writers[t]), 0);

    /* Bounded: if the writers stall before a third, the fault still runs
     * and the checks below say what went wrong. */
    for (int waited_ms = 0; waited_ms < 30000; waited_ms++) {
        if (atomic_load(&burst_acked) >= BURST_TOTAL / 3)
            break;
        usleep(1000);
    }
    *acked_at_fault = atomic_load(&burst_acked);
    *fault_rc = fault();
    fprintf(stderr, "fault after %d of %d writes acknowledged, recovered at %d\n", *acked_at_fault,
            BURST_TOTAL, atomic_load(&burst_acked));

    for (int t = 0; t < BURST_THREADS; t++) {
        pthread_join(threads[t], NULL);
        client_destroy(&writers[t].client);
    }
    return writers;
}

/* Every acknowledged write is there exactly once: unit.get by its external
 * reference returns the acknowledged id, and the stream holds exactly one
 * unit.registered event for it. A write never acknowledged may or may not
 * have happened, but never twice. Returns how many were acknowledged. */
static int burst_verify(const writer_t *writers)
{
    harness_events_t events;
    harness_events_read(fx.stack.client, "0", &events);
    int acked = 0;
    for (int t = 0; t < BURST_THREADS; t++) {
        for (int i = 0; i < BURST_PER_THREAD; i++) {
            char ref[64];
            burst_ref(ref, sizeof ref, writers[t].prefix, t, i);
            int registered = harness_events_count_units(&events, "unit.registered", ref);
            if (writers[t].ids[i][0] == '\0') {
                fprintf(stderr, "%s not acknowledged: %s\n", ref,
                        writers[t].status[i] == NO_REPLY ? "no reply"
                                                         : status_name(writers[t].status[i]));
                assert_in_range(registered, 0, 1);
                continue;
            }
            acked++;
            if (registered != 1)
                fail_msg("%s: %d unit.registered events", ref, registered);

            Passerelle__UnitGetRequest req = PASSERELLE__UNIT_GET_REQUEST__INIT;
            req.external_ref = ref;
            Passerelle__Reply *reply = NULL;
            assert_int_equal(client_call(fx.stack.client, "unit.get", &req.base, NULL, &reply), 0);
            char id[ID_LEN + 8];
            if (!reply_unit_id(reply, id, sizeof id))
                fail_msg("%s acknowledged as %s but unit.get says %s: %s", ref, writers[t].ids[i],
                         status_name((int)reply->status), str_or_empty(reply->message));
            assert_string_equal(id, writers[t].ids[i]);
            passerelle__reply__free_unpacked(reply, NULL);
        }
    }
    harness_events_free(&events);
    return acked;
}

/* --- (1) SIGKILL of the service during a burst ------------------------- */

static int kill_and_restart_service(void)
{
    int status = harness_service_stop(&fx.stack.service, SIGKILL);
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
        return -1;
    return harness_stack_restart(&fx.stack);
}

static void test_service_killed_during_writes(void **state)
{
    (void)state;
    int port_before = fx.stack.service.port;
    int fault_rc = -1, acked_at_fault = 0;
    writer_t *writers =
        burst_run("KILL", 500, 20, kill_and_restart_service, &fault_rc, &acked_at_fault);
    assert_int_equal(fault_rc, 0);
    assert_int_equal(fx.stack.service.port, port_before);
    /* The kill fell in the middle of the burst, or nothing was tested. */
    assert_true(acked_at_fault < BURST_TOTAL);

    /* Twenty retries of half a second outlast a restart: every writer got
     * its answer, and every answer holds. */
    assert_int_equal(burst_verify(writers), BURST_TOTAL);
    harness_events_t events;
    harness_events_read(fx.stack.client, "0", &events);
    assert_int_equal(harness_events_count_units(&events, "unit.registered", NULL), BURST_TOTAL);
    harness_events_free(&events);
    free(writers);
}

/* --- (2) Redis down: UNAVAILABLE, then recovery by itself --------------- */

static void test_redis_down_unavailable_then_recovers(void **state)
{
    (void)state;
    /* No retries: the first answer is the one under test. */
    client_t *client = harness_stack_client(&fx.stack, "operator", 3000, 0);
    assert_non_null(client);
    Passerelle__UnitRegisterRequest req;
    Passerelle__Reply *reply = NULL;
    char id_before[ID_LEN + 8], id[ID_LEN + 8];

    harness_unit_request(&req, "DOWN-0");
    assert_int_equal(client_call(client, "unit.register", &req.base, NULL, &reply), 0);
    assert_true(reply_unit_id(reply, id_before, sizeof id_before));
    passerelle__reply__free_unpacked(reply, NULL);

    pid_t service_pid = fx.stack.service.pid;
    harness_redis_kill(&fx.stack.redis);

    char key[ID_LEN];
    id_new('K', key);
    harness_unit_request(&req, "DOWN-1");
    assert_int_equal(client_call(client, "unit.register", &req.base, key, &reply), 0);
    if (reply->status != PASSERELLE__STATUS__STATUS_UNAVAILABLE)
        fail_msg("write with Redis down: %s %s", status_name((int)reply->status),
                 str_or_empty(reply->message));
    passerelle__reply__free_unpacked(reply, NULL);

    Passerelle__UnitGetRequest get = PASSERELLE__UNIT_GET_REQUEST__INIT;
    get.external_ref = (char *)"DOWN-0";
    assert_int_equal(client_call(client, "unit.get", &get.base, NULL, &reply), 0);
    assert_int_equal(reply->status, ST_UNAVAILABLE);
    passerelle__reply__free_unpacked(reply, NULL);

    /* Health still answers, and says Redis is not there. */
    Passerelle__HealthRequest health = PASSERELLE__HEALTH_REQUEST__INIT;
    assert_int_equal(client_call(client, "health", &health.base, NULL, &reply), 0);
    if (reply->status == PASSERELLE__STATUS__STATUS_OK) {
        Passerelle__HealthReply *h = passerelle__health_reply__unpack(
            NULL, reply->has_body ? reply->body.len : 0, reply->body.data);
        assert_non_null(h);
        assert_false(h->redis_ok);
        passerelle__health_reply__free_unpacked(h, NULL);
    } else {
        assert_int_equal(reply->status, ST_UNAVAILABLE);
    }
    passerelle__reply__free_unpacked(reply, NULL);

    assert_int_equal(harness_redis_restart(&fx.stack.redis), 0);

    /* The same process, untouched, answers again once it has reconnected;
     * the key of the refused write is still free to use. */
    int status = NO_REPLY;
    for (int attempt = 0; attempt < 50; attempt++) {
        if (client_call(client, "unit.register", &req.base, key, &reply) == 0) {
            status = (int)reply->status;
            bool ok = reply_unit_id(reply, id, sizeof id);
            passerelle__reply__free_unpacked(reply, NULL);
            if (ok)
                break;
        }
        usleep(200 * 1000);
    }
    assert_int_equal(status, ST_OK);
    assert_int_equal(fx.stack.service.pid, service_pid);
    assert_true(process_alive(service_pid));

    /* What was written before the crash survived it (AOF). */
    assert_int_equal(client_call(client, "unit.get", &get.base, NULL, &reply), 0);
    char id_after[ID_LEN + 8];
    assert_true(reply_unit_id(reply, id_after, sizeof id_after));
    assert_string_equal(id_after, id_before);
    passerelle__reply__free_unpacked(reply, NULL);

    assert_int_equal(client_call(client, "health", &health.base, NULL, &reply), 0);
    assert_int_equal(reply->status, ST_OK);
    Passerelle__HealthReply *h = passerelle__health_reply__unpack(
        NULL, reply->has_body ? reply->body.len : 0, reply->body.data);
    assert_non_null(h);
    assert_true(h->redis_ok);
    passerelle__health_reply__free_unpacked(h, NULL);
    passerelle__reply__free_unpacked(reply, NULL);

    harness_events_t events;
    harness_events_read(fx.stack.client, "0", &events);
    assert_int_equal(harness_events_count_units(&events, "unit.registered", "DOWN-0"), 1);
    assert_int_equal(harness_events_count_units(&events, "unit.registered", "DOWN-1"), 1);
    harness_events_free(&events);
    client_destroy(&client);
}

/* --- (3) Redis killed during writes ------------------------------------- */

static int kill_and_restart_redis(void)
{
    harness_redis_kill(&fx.stack.redis);
    /* Long enough for writers to meet the outage, not to run out of
     * retries. */
    usleep(300 * 1000);
    return harness_redis_restart(&fx.stack.redis);
}

static void test_redis_killed_during_writes(void **state)
{
    (void)state;
    pid_t service_pid = fx.stack.service.pid;
    int fault_rc = -1, acked_at_fault = 0;
    writer_t *writers =
        burst_run("REDIS", 1000, 30, kill_and_restart_redis, &fault_rc, &acked_at_fault);
    assert_int_equal(fault_rc, 0);
    assert_true(acked_at_fault < BURST_TOTAL);
    assert_true(process_alive(service_pid));

    /* Every acknowledged write survived the crash, once. Retries with the
     * same key through the outage then got every write acknowledged. */
    int acked = burst_verify(writers);
    assert_true(acked >= acked_at_fault);
    assert_int_equal(acked, BURST_TOTAL);
    free(writers);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_service_killed_during_writes, fault_setup,
                                        harness_stack_teardown),
        cmocka_unit_test_setup_teardown(test_redis_down_unavailable_then_recovers, fault_setup,
                                        harness_stack_teardown),
        cmocka_unit_test_setup_teardown(test_redis_killed_during_writes, fault_setup,
                                        harness_stack_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
