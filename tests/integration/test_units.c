/* Units end to end: a real redis-server and the real reservations binary on
 * run-time ports, called over ZeroMQ with CURVE as an operator. Registers
 * units in Pertuis, in a Marseille arrondissement and in the social stock,
 * reads them back by id and reference, repeats and contradicts a
 * registration, lists with every filter and across pages, and checks that
 * each write appended exactly one event. */
#include "harness.h"

#include "envelope.pb-c.h"
#include "ids.h"
#include "reservations.pb-c.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* The stack comes first: harness_fixture_setup makes and starts it. */
typedef struct {
    harness_stack_t stack;
    char last_position[64]; /* stream position of the last event seen */
    char pertuis[ID_LEN], marseille[ID_LEN], social[ID_LEN];
} fixture_t;

static int setup(void **state)
{
    return harness_fixture_setup(state, sizeof(fixture_t), "units", "operator");
}

static Passerelle__Unit *call_unit(fixture_t *f, const char *type, const ProtobufCMessage *body)
{
    Passerelle__Reply *reply =
        harness_call(f->stack.client, type, body, PASSERELLE__STATUS__STATUS_OK, NULL);
    assert_true(reply->has_body);
    Passerelle__Unit *unit = passerelle__unit__unpack(NULL, reply->body.len, reply->body.data);
    passerelle__reply__free_unpacked(reply, NULL);
    assert_non_null(unit);
    return unit;
}

/* The events appended since the last look; must be exactly `count`, and
 * each of type "unit.registered" on subject units/<id> carrying the unit.
 * ids (if not NULL) gets the units' ids. */
static void expect_unit_events(fixture_t *f, size_t count, char ids[][ID_LEN])
{
    harness_events_t events;
    harness_events_read(f->stack.client, f->last_position, &events);
    assert_int_equal(events.count, count);
    for (size_t i = 0; i < events.count; i++) {
        const Passerelle__Event *event = events.entries[i]->event;
        assert_string_equal(event->type, "unit.registered");
        assert_string_equal(event->source, "/passerelle/reservations");
        assert_string_equal(event->dataschema, "passerelle.Unit");
        Passerelle__Unit *unit = passerelle__unit__unpack(NULL, event->data.len, event->data.data);
        assert_non_null(unit);
        char subject[64];
        snprintf(subject, sizeof subject, "units/%s", unit->id);
        assert_string_equal(event->subject, subject);
        if (ids)
            snprintf(ids[i], ID_LEN, "%s", unit->id);
        passerelle__unit__free_unpacked(unit, NULL);
    }
    snprintf(f->last_position, sizeof f->last_position, "%s", events.last_position);
    harness_events_free(&events);
}

static Passerelle__UnitRegisterRequest pertuis_request(void)
{
    Passerelle__UnitRegisterRequest req;
    harness_unit_request(&req, "ANAH-84089-0001");
    return req;
}

static void test_register(void **state)
{
    fixture_t *f = *state;

    Passerelle__UnitRegisterRequest req = pertuis_request();
    Passerelle__Unit *unit = call_unit(f, "unit.register", &req.base);
    assert_true(id_valid('U', unit->id));
    assert_string_equal(unit->external_ref, "ANAH-84089-0001");
    assert_string_equal(unit->commune_insee, "84089");
    assert_string_equal(unit->commune_name, "Pertuis");
    assert_string_equal(unit->territory, "CT2");
    assert_null(unit->arrondissement_insee);
    assert_int_equal(unit->convention_state, PASSERELLE__CONVENTION_STATE__CONVENTION_NONE);
    assert_int_equal(unit->version, 1);
    assert_non_null(unit->created_at);
    snprintf(f->pertuis, ID_LEN, "%s", unit->id);
    passerelle__unit__free_unpacked(unit, NULL);

    Passerelle__UnitRegisterRequest marseille = pertuis_request();
    marseille.external_ref = "OPAH-RU-13207-0042";
    marseille.address = "3 rue Sainte";
    marseille.commune = "Marseille";
    marseille.arrondissement = "7";
    marseille.typology = PASSERELLE__TYPOLOGY__TYPOLOGY_T2;
    marseille.surface_m2 = 41;
    marseille.energy_class = PASSERELLE__ENERGY_CLASS__ENERGY_E;
    marseille.has_in_qpv = true;
    marseille.in_qpv = true;
    unit = call_unit(f, "unit.register", &marseille.base);
    assert_string_equal(unit->commune_insee, "13055");
    assert_string_equal(unit->arrondissement_insee, "13207");
    assert_string_equal(unit->territory, "CT1");
    assert_true(unit->in_qpv);
    snprintf(f->marseille, ID_LEN, "%s", unit->id);
    passerelle__unit__free_unpacked(unit, NULL);

    Passerelle__UnitRegisterRequest social = pertuis_request();
    social.external_ref = "HLM-13001-0815";
    social.address = "Résidence Les Platanes, bât. B";
    social.commune = "aix en provence";
    social.stock = PASSERELLE__STOCK__STOCK_SOCIAL;
    social.landlord = "Pays d'Aix Habitat";
    social.has_financing = true;
    social.financing = PASSERELLE__FINANCING__FINANCING_PLUS;
    social.has_adapted_disability = true;
    social.adapted_disability = true;
    unit = call_unit(f, "unit.register", &social.base);
    assert_string_equal(unit->commune_insee, "13001");
    assert_string_equal(unit->territory, "CT2");
    assert_int_equal(unit->stock, PASSERELLE__STOCK__STOCK_SOCIAL);
    assert_int_equal(unit->financing, PASSERELLE__FINANCING__FINANCING_PLUS);
    snprintf(f->social, ID_LEN, "%s", unit->id);
    passerelle__unit__free_unpacked(unit, NULL);

    char ids[3][ID_LEN];
    expect_unit_events(f, 3, ids);
    assert_string_equal(ids[0], f->pertuis);
    assert_string_equal(ids[1], f->marseille);
    assert_string_equal(ids[2], f->social);
}

static void test_register_invalid(void **state)
{
    fixture_t *f = *state;
    Passerelle__UnitRegisterRequest req = pertuis_request();
    req.external_ref = "ANAH-X-1";
    req.commune = "13055";
    harness_call_refused(f->stack.client, "unit.register", &req.base,
                         PASSERELLE__STATUS__STATUS_INVALID_ARGUMENT, "arrondissement");
    req.commune = "Pertuis";
    req.arrondissement = "13201";
    harness_call_refused(f->stack.client, "unit.register", &req.base,
                         PASSERELLE__STATUS__STATUS_INVALID_ARGUMENT, "arrondissement");
    req.arrondissement = NULL;
    req.has_financing = true;
    req.financing = PASSERELLE__FINANCING__FINANCING_PLS;
    harness_call_refused(f->stack.client, "unit.register", &req.base,
                         PASSERELLE__STATUS__STATUS_INVALID_ARGUMENT, "financing");
    req.has_financing = false;
    req.surface_m2 = 0;
    harness_call_refused(f->stack.client, "unit.register", &req.base,
                         PASSERELLE__STATUS__STATUS_INVALID_ARGUMENT, "surface_m2");
    req.surface_m2 = 30;
    req.commune = "Lyon";
    harness_call_refused(f->stack.client, "unit.register", &req.base,
                         PASSERELLE__STATUS__STATUS_INVALID_ARGUMENT, "commune");
    expect_unit_events(f, 0, NULL);
}

static void test_get(void **state)
{
    fixture_t *f = *state;
    Passerelle__UnitGetRequest req = PASSERELLE__UNIT_GET_REQUEST__INIT;
    req.id = f->marseille;
    Passerelle__Unit *unit = call_unit(f, "unit.get", &req.base);
    assert_string_equal(unit->external_ref, "OPAH-RU-13207-0042");
    assert_string_equal(unit->arrondissement_insee, "13207");
    passerelle__unit__free_unpacked(unit, NULL);

    req.id = NULL;
    req.external_ref = "HLM-13001-0815";
    unit = call_unit(f, "unit.get", &req.base);
    assert_string_equal(unit->id, f->social);
    assert_string_equal(unit->landlord, "Pays d'Aix Habitat");
    passerelle__unit__free_unpacked(unit, NULL);

    req.external_ref = "NO-SUCH-REF";
    Passerelle__Reply *reply = harness_call(f->stack.client, "unit.get", &req.base,
                                            PASSERELLE__STATUS__STATUS_NOT_FOUND, "external_ref");
    assert_non_null(strstr(reply->message, "NO-SUCH-REF"));
    passerelle__reply__free_unpacked(reply, NULL);

    char missing[ID_LEN];
    id_new('U', missing);
    req.external_ref = NULL;
    req.id = missing;
    reply = harness_call(f->stack.client, "unit.get", &req.base,
                         PASSERELLE__STATUS__STATUS_NOT_FOUND, "id");
    assert_non_null(strstr(reply->message, missing));
    passerelle__reply__free_unpacked(reply, NULL);

    req.id = "U-not-an-id";
    harness_call_refused(f->stack.client, "unit.get", &req.base,
                         PASSERELLE__STATUS__STATUS_INVALID_ARGUMENT, "id");
    req.id = NULL;
    harness_call_refused(f->stack.client, "unit.get", &req.base,
                         PASSERELLE__STATUS__STATUS_INVALID_ARGUMENT, "id");
}

static void test_register_again(void **state)
{
    fixture_t *f = *state;
    /* The same content under a fresh idempotency key: the same unit,
     * nothing written. */
    Passerelle__UnitRegisterRequest req = pertuis_request();
    req.has_in_qpv = true; /* false, explicitly: still the same content */
    req.in_qpv = false;
    Passerelle__Unit *unit = call_unit(f, "unit.register", &req.base);
    assert_string_equal(unit->id, f->pertuis);
    assert_int_equal(unit->version, 1);
    passerelle__unit__free_unpacked(unit, NULL);

    /* Another content: refused, naming the unit that holds the reference. */
    req.surface_m2 = 70;
    Passerelle__Reply *reply =
        harness_call(f->stack.client, "unit.register", &req.base,
                     PASSERELLE__STATUS__STATUS_ALREADY_EXISTS, "external_ref");
    assert_non_null(strstr(reply->message, f->pertuis));
    assert_non_null(strstr(reply->message, "surface_m2"));
    passerelle__reply__free_unpacked(reply, NULL);
    expect_unit_events(f, 0, NULL);

    /* The same idempotency key twice: the second gets the first reply. */
    Passerelle__UnitRegisterRequest fresh = pertuis_request();
    fresh.external_ref = "ANAH-IDEM-1";
    Passerelle__Reply *first = NULL, *second = NULL;
    assert_int_equal(
        client_call(f->stack.client, "unit.register", &fresh.base, "idem-key-1", &first), 0);
    assert_int_equal(
        client_call(f->stack.client, "unit.register", &fresh.base, "idem-key-1", &second), 0);
    assert_int_equal(first->status, PASSERELLE__STATUS__STATUS_OK);
    assert_int_equal(second->status, PASSERELLE__STATUS__STATUS_OK);
    assert_int_equal(first->body.len, second->body.len);
    assert_memory_equal(first->body.data, second->body.data, first->body.len);
    passerelle__reply__free_unpacked(first, NULL);
    passerelle__reply__free_unpacked(second, NULL);
    expect_unit_events(f, 1, NULL);
}

/* Lists with the request and returns the ids, in order, into ids. */
static size_t list_ids(fixture_t *f, Passerelle__UnitListRequest *req, char ids[][ID_LEN],
                       size_t max, char *next_token, size_t token_size)
{
    Passerelle__Reply *reply =
        harness_call(f->stack.client, "unit.list", &req->base, PASSERELLE__STATUS__STATUS_OK, NULL);
    Passerelle__UnitList *list =
        passerelle__unit_list__unpack(NULL, reply->body.len, reply->body.data);
    passerelle__reply__free_unpacked(reply, NULL);
    assert_non_null(list);
    assert_true(list->n_units <= max);
    for (size_t i = 0; i < list->n_units; i++)
        snprintf(ids[i], ID_LEN, "%s", list->units[i]->id);
    if (next_token)
        snprintf(next_token, token_size, "%s", list->next_page_token ? list->next_page_token : "");
    size_t n = list->n_units;
    passerelle__unit_list__free_unpacked(list, NULL);
    return n;
}

static void test_list_filters(void **state)
{
    fixture_t *f = *state;
    char ids[64][ID_LEN];
    char token[64];
    Passerelle__UnitListRequest req = PASSERELLE__UNIT_LIST_REQUEST__INIT;
    /* pertuis, marseille, social, ANAH-IDEM-1 (Pertuis, private) */
    assert_int_equal(list_ids(f, &req, ids, 64, token, sizeof token), 4);
    assert_string_equal(token, "");
    assert_string_equal(ids[0], f->pertuis);

    req.territory = "CT1";
    assert_int_equal(list_ids(f, &req, ids, 64, NULL, 0), 1);
    assert_string_equal(ids[0], f->marseille);

    req.territory = "ct2";
    assert_int_equal(list_ids(f, &req, ids, 64, NULL, 0), 3);

    req.territory = NULL;
    req.commune = "13207";
    assert_int_equal(list_ids(f, &req, ids, 64, NULL, 0), 1);
    assert_string_equal(ids[0], f->marseille);
    req.commune = "13208";
    assert_int_equal(list_ids(f, &req, ids, 64, NULL, 0), 0);
    req.commune = "Marseille";
    assert_int_equal(list_ids(f, &req, ids, 64, NULL, 0), 1);
    req.commune = "Aix-en-Provence";
    assert_int_equal(list_ids(f, &req, ids, 64, NULL, 0), 1);
    assert_string_equal(ids[0], f->social);

    req.commune = NULL;
    req.has_stock = true;
    req.stock = PASSERELLE__STOCK__STOCK_SOCIAL;
    assert_int_equal(list_ids(f, &req, ids, 64, NULL, 0), 1);
    assert_string_equal(ids[0], f->social);
    req.stock = PASSERELLE__STOCK__STOCK_PRIVATE;
    req.territory = "CT2";
    assert_int_equal(list_ids(f, &req, ids, 64, NULL, 0), 2);

    req.territory = NULL;
    req.has_stock = false;
    req.has_convention_state = true;
    req.convention_state = PASSERELLE__CONVENTION_STATE__CONVENTION_NONE;
    assert_int_equal(list_ids(f, &req, ids, 64, NULL, 0), 4);
    req.convention_state = PASSERELLE__CONVENTION_STATE__CONVENTION_ENVISAGED;
    assert_int_equal(list_ids(f, &req, ids, 64, NULL, 0), 0);

    Passerelle__UnitListRequest bad = PASSERELLE__UNIT_LIST_REQUEST__INIT;
    bad.territory = "CT9";
    harness_call_refused(f->stack.client, "unit.list", &bad.base,
                         PASSERELLE__STATUS__STATUS_INVALID_ARGUMENT, "territory");
    bad.territory = NULL;
    bad.has_page_size = true;
    bad.page_size = 501;
    harness_call_refused(f->stack.client, "unit.list", &bad.base,
                         PASSERELLE__STATUS__STATUS_INVALID_ARGUMENT, "page_size");
    bad.page_size = 10;
    bad.page_token = "garbage";
    harness_call_refused(f->stack.client, "unit.list", &bad.base,
                         PASSERELLE__STATUS__STATUS_INVALID_ARGUMENT, "page_token");
}

static void test_list_pages(void **state)
{
    fixture_t *f = *state;
    /* Eleven more units, alternating Istres (CT5) and Martigues (CT6). */
    for (int i = 0; i < 11; i++) {
        char ref[32];
        snprintf(ref, sizeof ref, "PAGE-%02d", i);
        Passerelle__UnitRegisterRequest req = pertuis_request();
        req.external_ref = ref;
        req.commune = i % 2 ? "Martigues" : "Istres";
        Passerelle__Unit *unit = call_unit(f, "unit.register", &req.base);
        passerelle__unit__free_unpacked(unit, NULL);
    }
    expect_unit_events(f, 11, NULL);

    /* All 15 units, four at a time: every unit once, in id order. */
    char all[32][ID_LEN];
    size_t total = 0, pages = 0;
    char token[64] = "";
    do {
        Passerelle__UnitListRequest req = PASSERELLE__UNIT_LIST_REQUEST__INIT;
        req.has_page_size = true;
        req.page_size = 4;
        req.page_token = token[0] ? token : NULL;
        char ids[4][ID_LEN];
        size_t n = list_ids(f, &req, ids, 4, token, sizeof token);
        assert_true(n > 0);
        for (size_t i = 0; i < n; i++) {
            assert_true(total < 32);
            snprintf(all[total++], ID_LEN, "%.*s", ID_LEN - 1, ids[i]);
        }
        if (token[0])
            assert_string_equal(token, ids[n - 1]);
        pages++;
    } while (token[0]);
    assert_int_equal(total, 15);
    assert_int_equal(pages, 4);
    for (size_t i = 1; i < total; i++)
        assert_true(strcmp(all[i - 1], all[i]) < 0);

    /* Martigues only (CT6: five units), two at a time. */
    total = 0;
    token[0] = '\0';
    do {
        Passerelle__UnitListRequest req = PASSERELLE__UNIT_LIST_REQUEST__INIT;
        req.territory = "CT6";
        req.has_page_size = true;
        req.page_size = 2;
        req.page_token = token[0] ? token : NULL;
        char ids[2][ID_LEN];
        size_t n = list_ids(f, &req, ids, 2, token, sizeof token);
        total += n;
    } while (token[0]);
    assert_int_equal(total, 5);

    /* An exact fit: a page of 15 has no next page. */
    Passerelle__UnitListRequest req = PASSERELLE__UNIT_LIST_REQUEST__INIT;
    req.has_page_size = true;
    req.page_size = 15;
    char ids[15][ID_LEN];
    assert_int_equal(list_ids(f, &req, ids, 15, token, sizeof token), 15);
    assert_string_equal(token, "");
}

/* A bad energy rule is a configuration error: the service refuses to
 * start rather than sign on a guess. */
static void test_bad_configuration(void **state)
{
    fixture_t *f = *state;
    char *env[] = {"PASSERELLE_CONVENTION_ENERGY_RULES=E,2028-01-01:F", NULL};
    harness_service_t bad;
    assert_int_not_equal(harness_service_start(&bad, "reservations", f->stack.dir, env), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_register),
        cmocka_unit_test(test_register_invalid),
        cmocka_unit_test(test_get),
        cmocka_unit_test(test_register_again),
        cmocka_unit_test(test_list_filters),
        cmocka_unit_test(test_list_pages),
        cmocka_unit_test(test_bad_configuration),
    };
    return cmocka_run_group_tests(tests, setup, harness_fixture_teardown);
}
