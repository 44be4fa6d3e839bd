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
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#define REFS    40
#define WRITERS 4

typedef struct {
    char *dir;
    char keys[512];
    harness_redis_t redis;
    harness_service_t replica[2];
    bool replica_up[2];
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
    fx.dir = harness_tempdir("replicas");
    if (!fx.dir)
        return -1;
    snprintf(fx.keys, sizeof fx.keys, "%s/keys", fx.dir);
    if (harness_keys_make(fx.keys) != 0 || harness_redis_start(&fx.redis) != 0)
        return -1;
    harness_redis_setenv(&fx.redis);
    setenv("PASSERELLE_KEYS_DIR", fx.keys, 1);
    for (int i = 0; i < 2; i++) {
        /* Each replica logs into its own folder: the log names the port. */
        char log_dir[600];
        snprintf(log_dir, sizeof log_dir, "%s/replica%d", fx.dir, i);
        if (mkdir(log_dir, 0700) != 0 ||
            harness_service_start(&fx.replica[i], "reservations", log_dir, NULL) != 0)
            return -1;
        fx.replica_up[i] = true;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < 2; i++)
        if (fx.replica_up[i])
            harness_service_stop(&fx.replica[i], SIGTERM);
    harness_redis_stop(&fx.redis);
    harness_rmtree(fx.dir);
    free(fx.dir);
    return 0;
}

static void *writer_run(void *arg)
{
    writer_t *w = arg;
    for (int r = 0; r < REFS; r++) {
        char ref[64], address[64];
        snprintf(ref, sizeof ref, "%s-%03d", w->prefix, r);
        snprintf(address, sizeof address, "%d rue de la Course", w->same_content ? 1 : w->writer);
        Passerelle__UnitRegisterRequest req = PASSERELLE__UNIT_REGISTER_REQUEST__INIT;
        req.external_ref = ref;
        req.address = address;
        req.commune = "13001";
        req.has_stock = true;
        req.stock = PASSERELLE__STOCK__STOCK_PRIVATE;
        req.has_typology = true;
        req.typology = PASSERELLE__TYPOLOGY__TYPOLOGY_T2;
        req.has_surface_m2 = true;
        req.surface_m2 = 40;
        req.landlord = "OWNER-RACE";
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

/* How many unit.registered events carry this external reference. */
static int events_for(client_t *client, const char *ref)
{
    int count = 0;
    char after[64] = "0";
    for (;;) {
        Passerelle__EventListRequest req = PASSERELLE__EVENT_LIST_REQUEST__INIT;
        req.after = after;
        req.has_limit = true;
        req.limit = 1000;
        Passerelle__Reply *reply = NULL;
        assert_int_equal(client_call(client, "event.list", &req.base, NULL, &reply), 0);
        assert_int_equal(reply->status, ST_OK);
        Passerelle__EventListReply *list =
            passerelle__event_list_reply__unpack(NULL, reply->body.len, reply->body.data);
        passerelle__reply__free_unpacked(reply, NULL);
        assert_non_null(list);
        for (size_t i = 0; i < list->n_events; i++) {
            const Passerelle__Event *event = list->events[i]->event;
            if (strcmp(event->type, "unit.registered") != 0)
                continue;
            Passerelle__Unit *unit =
                passerelle__unit__unpack(NULL, event->data.len, event->data.data);
            assert_non_null(unit);
            if (strcmp(unit->external_ref, ref) == 0)
                count++;
            passerelle__unit__free_unpacked(unit, NULL);
        }
        bool done = list->n_events == 0;
        if (!done)
            snprintf(after, sizeof after, "%s", list->last_position);
        passerelle__event_list_reply__free_unpacked(list, NULL);
        if (done)
            return count;
    }
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
            harness_client(fx.replica[i % 2].endpoint, fx.keys, "operator", 5000, 2);
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

    client_t *reader = harness_client(fx.replica[0].endpoint, fx.keys, "admin", 5000, 2);
    assert_non_null(reader);
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
        assert_int_equal(events_for(reader, ref), 1);
    }
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
