/* Two replicas of the reservations service on one Redis, racing.
 *
 * A single service process handles one request at a time, so races between
 * writers only happen across replicas — which DESIGN.md allows ("several
 * replicas can run at once"). Here, for each of many external references,
 * four writers (two on each replica) register it at the same moment:
 *   - with the same content, every writer must get the same unit, and the
 *     stream must hold exactly one unit.registered for it;
 *   - with different addresses, exactly one content wins: every writer gets
 *     either the winner (OK) or ALREADY_EXISTS naming external_ref, and
 *     there is still exactly one unit and one event.
 * The version guards of the commit script decide the race; the loser's
 * handler runs again and sees the winner's record. */
#include "harness.h"

#include "envelope.pb-c.h"
#include "ids.h"
#include "reservations.pb-c.h"
#include "status.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define REFS    40
#define WRITERS 4

typedef struct {
    harness_stack_t stack; /* its service is the first replica */
    harness_service_t second;
    const harness_service_t *replica[2];
} fixture_t;

static fixture_t fx;

typedef struct {
    client_t *client;
    const char *prefix;
    bool same_content;
    int writer;
    pthread_barrier_t *barrier;
    /* Per reference: the status and, when OK, the unit id. */
    int status[REFS];
    char id[REFS][ID_LEN];
} writer_t;

static int setup(void **state)
{
    (void)state;
    if (harness_stack_start(&fx.stack, "replicas", NULL, NULL) != 0)
        return -1;
    /* Its own folder, for its own log: the log names the port. */
    if (harness_stack_service_start(&fx.stack, &fx.second, "replica1", NULL) != 0)
        return -1;
    fx.replica[0] = &fx.stack.service;
    fx.replica[1] = &fx.second;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    bool clean = fx.second.pid <= 0 || harness_service_stop_clean(&fx.second);
    return harness_stack_stop(&fx.stack) && clean ? 0 : -1;
}

static void *writer_run(void *arg)
{
    writer_t *w = arg;
    for (int r = 0; r < REFS; r++) {
        char ref[64], address[64];
        snprintf(ref, sizeof ref, "%s-%03d", w->prefix, r);
        snprintf(address, sizeof address, "%d rue de la Course", w->same_content ? 1 : w->writer);
        Passerelle__UnitRegisterRequest req;
        harness_unit_request(&req, ref);
        req.address = address;
        /* Start each reference together, so the four requests meet. */
        pthread_barrier_wait(w->barrier);
        Passerelle__Reply *reply = NULL;
        w->status[r] = -1;
        w->id[r][0] = '\0';
        if (client_call(w->client, "unit.register", &req.base, NULL, &reply) != 0)
            continue;
        w->status[r] = reply->status;
        if ((int)reply->status == ST_OK) {
            Passerelle__Unit *unit =
                passerelle__unit__unpack(NULL, reply->body.len, reply->body.data);
            if (unit) {
                snprintf(w->id[r], ID_LEN, "%.*s", ID_LEN - 1, unit->id ? unit->id : "");
                passerelle__unit__free_unpacked(unit, NULL);
            }
        } else if ((int)reply->status == ST_ALREADY_EXISTS &&
                   strcmp(reply->field ? reply->field : "", "external_ref") != 0) {
            w->status[r] = -2; /* the wrong field: fails below */
        }
        passerelle__reply__free_unpacked(reply, NULL);
    }
    return NULL;
}

static void race(const char *prefix, bool same_content)
{
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, WRITERS);
    writer_t *writers = calloc(WRITERS, sizeof *writers);
    assert_non_null(writers);
    pthread_t threads[WRITERS];
    for (int i = 0; i < WRITERS; i++) {
        writers[i].client =
            harness_client(fx.replica[i % 2]->endpoint, fx.stack.keys, "operator", 5000, 2);
        assert_non_null(writers[i].client);
        writers[i].prefix = prefix;
        writers[i].same_content = same_content;
        writers[i].writer = i;
        writers[i].barrier = &barrier;
        assert_int_equal(pthread_create(&threads[i], NULL, writer_run, &writers[i]), 0);
    }
    for (int i = 0; i < WRITERS; i++)
        pthread_join(threads[i], NULL);
    pthread_barrier_destroy(&barrier);

    client_t *reader = harness_stack_client(&fx.stack, "admin", 5000, 2);
    assert_non_null(reader);
    harness_events_t events;
    harness_events_read(reader, "0", &events);
    for (int r = 0; r < REFS; r++) {
        const char *winner = NULL;
        int ok = 0;
        for (int i = 0; i < WRITERS; i++) {
            int status = writers[i].status[r];
            if (status != ST_OK && status != ST_ALREADY_EXISTS)
                fail_msg("%s-%03d writer %d: status %d", prefix, r, i, status);
            if (same_content)
                assert_int_equal(status, ST_OK); /* a repeat is not a clash */
            if (status != ST_OK)
                continue;
            ok++;
            if (!winner)
                winner = writers[i].id[r];
            assert_string_equal(writers[i].id[r], winner); /* one unit */
        }
        assert_true(ok >= 1);
        char ref[64];
        snprintf(ref, sizeof ref, "%s-%03d", prefix, r);
        assert_int_equal(harness_events_count_units(&events, "unit.registered", ref), 1);
    }
    harness_events_free(&events);
    client_destroy(&reader);
    for (int i = 0; i < WRITERS; i++)
        client_destroy(&writers[i].client);
    free(writers);
}

static void test_same_content_race(void **state)
{
    (void)state;
    race("SAME", true);
}

static void test_different_content_race(void **state)
{
    (void)state;
    race("DIFF", false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_content_race),
        cmocka_unit_test(test_different_content_race),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
