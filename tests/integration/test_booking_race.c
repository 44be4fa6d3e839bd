/* Many clients racing to reserve the same units, on two replicas of the
 * reservations service sharing one Redis.
 *
 * Eight writers, each with its own client, half on each replica, reserve
 * each of twenty units at the same moment (a barrier per unit; social units
 * and private units under a signed convention). For every unit:
 *   - exactly one writer gets OK, and all who got OK got the same
 *     reservation;
 *   - every other writer gets CONFLICT on field unit, with the winner's
 *     reservation id in its message;
 *   - the unit names the winner as its active reservation, the listing
 *     holds exactly one ACTIVE reservation for it, and the stream exactly
 *     one reservation.created on its subject.
 * What decides is the unit record's version guard in the commit script:
 * the losers' commits go stale, the server runs them again, and they find
 * the winner in the unit. */
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

#define UNITS   20
#define WRITERS 8

typedef struct {
    harness_stack_t stack; /* its service is the first replica */
    harness_service_t second;
    const harness_service_t *replica[2];
    char unit[UNITS][ID_LEN];
    char end_date[DATE_LEN];
} fixture_t;

static fixture_t fx;

typedef struct {
    client_t *client;
    pthread_barrier_t *barrier;
    int status[UNITS];
    char id[UNITS][ID_LEN];
    char message[UNITS][512];
    char field[UNITS][64];
} writer_t;

/* --- setup: the units, registered before the race --------------------------- */

static void register_unit(client_t *client, int i, char id[ID_LEN])
{
    char ref[32];
    snprintf(ref, sizeof ref, "RACE-%03d", i);
    Passerelle__UnitRegisterRequest req;
    harness_unit_request(&req, ref);
    bool social = i % 2 == 0;
    if (social) {
        req.commune = "Aubagne";
        req.stock = PASSERELLE__STOCK__STOCK_SOCIAL;
        req.landlord = "Logirem";
        req.has_financing = true;
        req.financing = PASSERELLE__FINANCING__FINANCING_PLAI;
    }
    Passerelle__Reply *reply =
        harness_call(client, "unit.register", &req.base, PASSERELLE__STATUS__STATUS_OK, NULL);
    Passerelle__Unit *unit = passerelle__unit__unpack(NULL, reply->body.len, reply->body.data);
    passerelle__reply__free_unpacked(reply, NULL);
    assert_non_null(unit);
    snprintf(id, ID_LEN, "%s", unit->id);
    passerelle__unit__free_unpacked(unit, NULL);
    if (social)
        return;
    Passerelle__ConventionEnvisageRequest envisage = PASSERELLE__CONVENTION_ENVISAGE_REQUEST__INIT;
    envisage.unit = id;
    envisage.has_level = true;
    envisage.level = PASSERELLE__CONVENTION_LEVEL__LEVEL_LOC1;
    reply = harness_call(client, "convention.envisage", &envisage.base,
                         PASSERELLE__STATUS__STATUS_OK, NULL);
    passerelle__reply__free_unpacked(reply, NULL);
    Passerelle__ConventionStepRequest sign = PASSERELLE__CONVENTION_STEP_REQUEST__INIT;
    sign.unit = id;
    reply =
        harness_call(client, "convention.sign", &sign.base, PASSERELLE__STATUS__STATUS_OK, NULL);
    passerelle__reply__free_unpacked(reply, NULL);
}

static int setup(void **state)
{
    (void)state;
    if (harness_stack_start(&fx.stack, "booking-race", "metropole", NULL) != 0)
        return -1;
    if (harness_stack_service_start(&fx.stack, &fx.second, "replica1", NULL) != 0)
        return -1;
    fx.replica[0] = &fx.stack.service;
    fx.replica[1] = &fx.second;
    date_format(date_add_years(date_today_paris(), 3), fx.end_date);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    bool clean = fx.second.pid <= 0 || harness_service_stop_clean(&fx.second);
    return harness_stack_stop(&fx.stack) && clean ? 0 : -1;
}

/* --- the race ------------------------------------------------------------------ */

static void *writer_run(void *arg)
{
    writer_t *w = arg;
    for (int u = 0; u < UNITS; u++) {
        Passerelle__ReservationCreateRequest req = PASSERELLE__RESERVATION_CREATE_REQUEST__INIT;
        req.has_mode = true;
        req.mode = PASSERELLE__RESERVATION_MODE__MODE_STOCK;
        req.unit = fx.unit[u];
        req.end_date = fx.end_date;
        /* Start each unit together, so that the eight requests meet. */
        pthread_barrier_wait(w->barrier);
        Passerelle__Reply *reply = NULL;
        w->status[u] = -1;
        if (client_call(w->client, "reservation.create", &req.base, NULL, &reply) != 0)
            continue;
        w->status[u] = reply->status;
        snprintf(w->message[u], sizeof w->message[u], "%s", reply->message ? reply->message : "");
        snprintf(w->field[u], sizeof w->field[u], "%s", reply->field ? reply->field : "");
        if ((int)reply->status == ST_OK) {
            Passerelle__Reservation *r =
                passerelle__reservation__unpack(NULL, reply->body.len, reply->body.data);
            if (r) {
                snprintf(w->id[u], ID_LEN, "%s", r->id ? r->id : "");
                passerelle__reservation__free_unpacked(r, NULL);
            }
        }
        passerelle__reply__free_unpacked(reply, NULL);
    }
    return NULL;
}

/* How many ACTIVE reservations the listing holds for the unit. */
static size_t active_count(client_t *client, const char *unit_id)
{
    Passerelle__ReservationListRequest req = PASSERELLE__RESERVATION_LIST_REQUEST__INIT;
    req.unit = (char *)unit_id;
    req.has_state = true;
    req.state = PASSERELLE__RESERVATION_STATE__RESERVATION_ACTIVE;
    Passerelle__Reply *reply =
        harness_call(client, "reservation.list", &req.base, PASSERELLE__STATUS__STATUS_OK, NULL);
    Passerelle__ReservationList *list =
        passerelle__reservation_list__unpack(NULL, reply->body.len, reply->body.data);
    passerelle__reply__free_unpacked(reply, NULL);
    assert_non_null(list);
    size_t n = list->n_reservations;
    passerelle__reservation_list__free_unpacked(list, NULL);
    return n;
}

static void unit_holder(client_t *client, const char *unit_id, char out[ID_LEN])
{
    Passerelle__UnitGetRequest req = PASSERELLE__UNIT_GET_REQUEST__INIT;
    req.id = (char *)unit_id;
    Passerelle__Reply *reply =
        harness_call(client, "unit.get", &req.base, PASSERELLE__STATUS__STATUS_OK, NULL);
    Passerelle__Unit *unit = passerelle__unit__unpack(NULL, reply->body.len, reply->body.data);
    passerelle__reply__free_unpacked(reply, NULL);
    assert_non_null(unit);
    snprintf(out, ID_LEN, "%s", unit->reservation_id ? unit->reservation_id : "");
    passerelle__unit__free_unpacked(unit, NULL);
}

static int created_events(const harness_events_t *events, const char *unit_id)
{
    char subject[64];
    snprintf(subject, sizeof subject, "units/%s", unit_id);
    int n = 0;
    for (size_t i = 0; i < events->count; i++) {
        const Passerelle__Event *e = events->entries[i]->event;
        if (strcmp(e->type, "reservation.created") == 0 && strcmp(e->subject, subject) == 0)
            n++;
    }
    return n;
}

static void test_one_winner_per_unit(void **state)
{
    (void)state;
    client_t *admin = fx.stack.client;
    for (int u = 0; u < UNITS; u++)
        register_unit(admin, u, fx.unit[u]);

    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, WRITERS);
    writer_t *writers = calloc(WRITERS, sizeof *writers);
    assert_non_null(writers);
    pthread_t threads[WRITERS];
    for (int i = 0; i < WRITERS; i++) {
        /* Action Logement on both replicas; no retries, so that a reply is
         * the first answer to the first attempt. */
        writers[i].client = harness_client(fx.replica[i % 2]->endpoint, fx.stack.keys,
                                           i % 4 == 3 ? "metropole" : "action_logement", 10000, 0);
        assert_non_null(writers[i].client);
        writers[i].barrier = &barrier;
        assert_int_equal(pthread_create(&threads[i], NULL, writer_run, &writers[i]), 0);
    }
    for (int i = 0; i < WRITERS; i++)
        pthread_join(threads[i], NULL);
    pthread_barrier_destroy(&barrier);

    harness_events_t events;
    harness_events_read(admin, "0", &events);
    for (int u = 0; u < UNITS; u++) {
        const char *winner = NULL;
        int ok = 0;
        for (int i = 0; i < WRITERS; i++)
            if (writers[i].status[u] == ST_OK) {
                ok++;
                winner = writers[i].id[u];
            }
        if (ok != 1)
            fail_msg("unit %d (%s): %d winners", u, fx.unit[u], ok);
        assert_true(id_valid('R', winner));
        for (int i = 0; i < WRITERS; i++) {
            if (writers[i].status[u] == ST_OK)
                continue;
            if (writers[i].status[u] != ST_CONFLICT)
                fail_msg("unit %d writer %d: status %d (%s)", u, i, writers[i].status[u],
                         writers[i].message[u]);
            assert_string_equal(writers[i].field[u], "unit");
            if (!strstr(writers[i].message[u], winner))
                fail_msg("unit %d writer %d: '%s' does not name %s", u, i, writers[i].message[u],
                         winner);
        }
        char holder[ID_LEN];
        unit_holder(admin, fx.unit[u], holder);
        assert_string_equal(holder, winner);
        assert_int_equal(active_count(admin, fx.unit[u]), 1);
        assert_int_equal(created_events(&events, fx.unit[u]), 1);
    }
    harness_events_free(&events);
    for (int i = 0; i < WRITERS; i++)
        client_destroy(&writers[i].client);
    free(writers);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_winner_per_unit),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
