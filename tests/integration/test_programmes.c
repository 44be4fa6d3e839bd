/* Programmes, objectives and progress end to end: a real redis-server and
 * the real reservations binary on run-time ports, called over ZeroMQ with
 * CURVE as the Métropole. Creates a programme of each kind and has every
 * refusal named by its code and field; reads, lists and pages; attaches
 * units (by reference, at registration, outside the programme, in another
 * programme, twice); sets and replaces objectives; and reads progress, first
 * with objectives only, then with counters moved by progress_count in a
 * transaction committed on the same Redis, which must also equal a recount
 * of the reservations they stand for. */
#include "harness.h"

#include "envelope.pb-c.h"
#include "ids.h"
#include "progress.h"
#include "reservations.pb-c.h"
#include "txn.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define OK              PASSERELLE__STATUS__STATUS_OK
#define INVALID         PASSERELLE__STATUS__STATUS_INVALID_ARGUMENT
#define NOT_FOUND       PASSERELLE__STATUS__STATUS_NOT_FOUND
#define CONFLICT        PASSERELLE__STATUS__STATUS_CONFLICT
#define PRECONDITION    PASSERELLE__STATUS__STATUS_FAILED_PRECONDITION
#define DENIED          PASSERELLE__STATUS__STATUS_PERMISSION_DENIED
#define KIND(k)         PASSERELLE__PROGRAMME_KIND__PROGRAMME_##k
#define PROGRESS_YEAR   2026
#define PROGRESS_YEAR_S "2026"

typedef struct {
    harness_stack_t stack;
    char last_position[64];
    char pig[ID_LEN];   /* PIG in Pertuis (CT2) */
    char opah[ID_LEN];  /* OPAH over CT2 */
    char npnru[ID_LEN]; /* NPNRU in Marseille (CT1) */
    char kinds[6][ID_LEN];
    char pertuis_unit[ID_LEN];
} fixture_t;

static int setup(void **state)
{
    return harness_fixture_setup(state, sizeof(fixture_t), "programmes", "metropole");
}

/* --- calls ----------------------------------------------------------------- */

static Passerelle__Programme *call_programme(fixture_t *f, const char *type,
                                             const ProtobufCMessage *body)
{
    Passerelle__Reply *reply = harness_call(f->stack.client, type, body, OK, NULL);
    Passerelle__Programme *prog =
        passerelle__programme__unpack(NULL, reply->body.len, reply->body.data);
    passerelle__reply__free_unpacked(reply, NULL);
    assert_non_null(prog);
    return prog;
}

static Passerelle__Unit *call_unit(fixture_t *f, const char *type, const ProtobufCMessage *body)
{
    Passerelle__Reply *reply = harness_call(f->stack.client, type, body, OK, NULL);
    Passerelle__Unit *unit = passerelle__unit__unpack(NULL, reply->body.len, reply->body.data);
    passerelle__reply__free_unpacked(reply, NULL);
    assert_non_null(unit);
    return unit;
}

static Passerelle__Programme *get_programme(fixture_t *f, const char *id)
{
    Passerelle__ProgrammeGetRequest req = PASSERELLE__PROGRAMME_GET_REQUEST__INIT;
    req.id = (char *)id;
    return call_programme(f, "programme.get", &req.base);
}

static Passerelle__Progress *get_progress(fixture_t *f, const char *programme,
                                          const char *territory)
{
    Passerelle__ProgressRequest req = PASSERELLE__PROGRESS_REQUEST__INIT;
    req.programme = (char *)programme;
    req.territory = (char *)territory;
    req.has_year = true;
    req.year = PROGRESS_YEAR;
    Passerelle__Reply *reply = harness_call(f->stack.client, "progress.get", &req.base, OK, NULL);
    Passerelle__Progress *progress =
        passerelle__progress__unpack(NULL, reply->body.len, reply->body.data);
    passerelle__reply__free_unpacked(reply, NULL);
    assert_non_null(progress);
    return progress;
}

/* The row of a programme (NULL: a territory total) for a level or a
 * financing (0: the total); NULL if there is none. */
static const Passerelle__ProgressRow *find_row(const Passerelle__Progress *progress,
                                               const char *programme, const char *territory,
                                               int level, int financing)
{
    for (size_t i = 0; i < progress->n_rows; i++) {
        const Passerelle__ProgressRow *row = progress->rows[i];
        const char *row_programme = row->programme_id ? row->programme_id : "";
        if (strcmp(row_programme, programme ? programme : "") != 0)
            continue;
        if (!programme && strcmp(row->territory ? row->territory : "", territory) != 0)
            continue;
        if ((row->has_level ? (int)row->level : 0) != level ||
            (row->has_financing ? (int)row->financing : 0) != financing)
            continue;
        assert_int_equal(row->year, PROGRESS_YEAR);
        return row;
    }
    return NULL;
}

static void expect_row(const Passerelle__Progress *progress, const char *programme,
                       const char *territory, int level, int financing, unsigned objective,
                       unsigned achieved)
{
    const Passerelle__ProgressRow *row = find_row(progress, programme, territory, level, financing);
    if (!row)
        fail_msg("no progress row for %s%s level %d financing %d", programme ? programme : "",
                 territory ? territory : "", level, financing);
    assert_int_equal(row->objective, objective);
    assert_int_equal(row->achieved, achieved);
    assert_int_equal(row->has_ratio, objective > 0);
    if (objective > 0) {
        double ratio = (double)achieved / objective;
        assert_true(row->ratio > ratio - 1e-9 && row->ratio < ratio + 1e-9);
    }
}

/* The events appended since the last look: exactly `count`, each of type
 * `type` on a subject starting with `subject_prefix`. */
static void expect_events(fixture_t *f, size_t count, const char *type, const char *subject_prefix)
{
    harness_events_t events;
    harness_events_read(f->stack.client, f->last_position, &events);
    assert_int_equal(events.count, count);
    for (size_t i = 0; i < events.count; i++) {
        const Passerelle__Event *event = events.entries[i]->event;
        assert_string_equal(event->type, type);
        assert_string_equal(event->source, "/passerelle/reservations");
        assert_true(strncmp(event->subject, subject_prefix, strlen(subject_prefix)) == 0);
    }
    snprintf(f->last_position, sizeof f->last_position, "%s", events.last_position);
    harness_events_free(&events);
}

static Passerelle__ProgrammeCreateRequest pig_request(void)
{
    static char *communes[] = {"Pertuis"};
    Passerelle__ProgrammeCreateRequest req = PASSERELLE__PROGRAMME_CREATE_REQUEST__INIT;
    req.name = "PIG Pertuis 2025-2028";
    req.has_kind = true;
    req.kind = KIND(PIG);
    req.communes = communes;
    req.n_communes = 1;
    req.start_date = "2025-01-01";
    req.end_date = "2028-12-31";
    req.operator_ = "Soliha Vaucluse";
    return req;
}

/* --- programme.create ----------------------------------------------------- */

static void test_create_each_kind(void **state)
{
    fixture_t *f = *state;
    Passerelle__ProgrammeCreateRequest req = pig_request();
    Passerelle__Programme *prog = call_programme(f, "programme.create", &req.base);
    assert_true(id_valid('P', prog->id));
    assert_string_equal(prog->territory, "CT2");
    assert_int_equal(prog->n_communes, 1);
    assert_string_equal(prog->communes[0], "84089");
    assert_string_equal(prog->operator_, "Soliha Vaucluse");
    assert_int_equal(prog->units_attached, 0);
    assert_int_equal(prog->version, 1);
    snprintf(f->pig, ID_LEN, "%s", prog->id);
    snprintf(f->kinds[0], ID_LEN, "%s", prog->id);
    passerelle__programme__free_unpacked(prog, NULL);

    /* An OPAH over the whole of CT2. */
    req = pig_request();
    req.name = "OPAH Pays d'Aix";
    req.kind = KIND(OPAH);
    req.n_communes = 0;
    req.territory = "ct2";
    prog = call_programme(f, "programme.create", &req.base);
    assert_string_equal(prog->territory, "CT2");
    assert_int_equal(prog->n_communes, 0);
    snprintf(f->opah, ID_LEN, "%s", prog->id);
    snprintf(f->kinds[1], ID_LEN, "%s", prog->id);
    passerelle__programme__free_unpacked(prog, NULL);

    /* An OPAH-RU in Martigues (CT6), the territory derived. */
    static char *martigues[] = {"13056"};
    req = pig_request();
    req.name = "OPAH-RU Martigues centre ancien";
    req.kind = KIND(OPAH_RU);
    req.communes = martigues;
    prog = call_programme(f, "programme.create", &req.base);
    assert_string_equal(prog->territory, "CT6");
    snprintf(f->kinds[2], ID_LEN, "%s", prog->id);
    passerelle__programme__free_unpacked(prog, NULL);

    /* An NPNRU in Marseille with Action Logement's counterparts. */
    static char *marseille[] = {"Marseille"};
    Passerelle__NpnruCounterparts npnru = PASSERELLE__NPNRU_COUNTERPARTS__INIT;
    npnru.has_rights_in_qpv = true;
    npnru.rights_in_qpv = 30;
    npnru.has_rights_outside_qpv = true;
    npnru.rights_outside_qpv = 12;
    npnru.has_land_rights = true;
    npnru.land_rights = 2;
    npnru.has_land_surface_m2 = true;
    npnru.land_surface_m2 = 4500;
    req = pig_request();
    req.name = "NPNRU Marseille Nord";
    req.kind = KIND(NPNRU);
    req.communes = marseille;
    req.operator_ = NULL;
    req.npnru = &npnru;
    prog = call_programme(f, "programme.create", &req.base);
    assert_string_equal(prog->territory, "CT1");
    assert_non_null(prog->npnru);
    assert_int_equal(prog->npnru->rights_in_qpv, 30);
    assert_int_equal(prog->npnru->rights_outside_qpv, 12);
    assert_int_equal(prog->npnru->land_rights, 2);
    assert_true(prog->npnru->has_used_in_qpv);
    assert_int_equal(prog->npnru->used_in_qpv, 0);
    snprintf(f->npnru, ID_LEN, "%s", prog->id);
    snprintf(f->kinds[3], ID_LEN, "%s", prog->id);
    passerelle__programme__free_unpacked(prog, NULL);

    static char *istres[] = {"Istres"};
    req = pig_request();
    req.name = "Résidence Les Salins";
    req.kind = KIND(SOCIAL_HOUSING);
    req.communes = istres;
    req.operator_ = NULL;
    prog = call_programme(f, "programme.create", &req.base);
    assert_string_equal(prog->territory, "CT5");
    assert_null(prog->operator_);
    snprintf(f->kinds[4], ID_LEN, "%s", prog->id);
    passerelle__programme__free_unpacked(prog, NULL);

    static char *aubagne[] = {"Aubagne"};
    req = pig_request();
    req.name = "BRS Les Défensions";
    req.kind = KIND(SOCIAL_OWNERSHIP);
    req.communes = aubagne;
    req.operator_ = NULL;
    req.has_ownership_scheme = true;
    req.ownership_scheme = PASSERELLE__OWNERSHIP_SCHEME__OWNERSHIP_BRS;
    prog = call_programme(f, "programme.create", &req.base);
    assert_string_equal(prog->territory, "CT4");
    assert_int_equal(prog->ownership_scheme, PASSERELLE__OWNERSHIP_SCHEME__OWNERSHIP_BRS);
    snprintf(f->kinds[5], ID_LEN, "%s", prog->id);
    passerelle__programme__free_unpacked(prog, NULL);

    expect_events(f, 6, "programme.created", "programmes/P");
}

static void test_create_refused(void **state)
{
    fixture_t *f = *state;
    client_t *c = f->stack.client;
    Passerelle__ProgrammeCreateRequest req = pig_request();
    req.name = NULL;
    harness_call_refused(c, "programme.create", &req.base, INVALID, "name");
    req = pig_request();
    req.has_kind = false;
    harness_call_refused(c, "programme.create", &req.base, INVALID, "kind");
    req = pig_request();
    static char *lyon[] = {"Lyon"};
    req.communes = lyon;
    harness_call_refused(c, "programme.create", &req.base, INVALID, "communes");
    static char *two[] = {"Pertuis", "Martigues"};
    req.communes = two;
    req.n_communes = 2;
    harness_call_refused(c, "programme.create", &req.base, INVALID, "communes");
    req = pig_request();
    req.territory = "CT3";
    harness_call_refused(c, "programme.create", &req.base, INVALID, "communes");
    req.n_communes = 0;
    req.territory = "CT8";
    harness_call_refused(c, "programme.create", &req.base, INVALID, "territory");
    req.territory = NULL;
    harness_call_refused(c, "programme.create", &req.base, INVALID, "territory");
    req = pig_request();
    req.start_date = "2025-13-01";
    harness_call_refused(c, "programme.create", &req.base, INVALID, "start_date");
    req.start_date = "2029-01-01";
    harness_call_refused(c, "programme.create", &req.base, INVALID, "end_date");
    req = pig_request();
    req.operator_ = NULL;
    harness_call_refused(c, "programme.create", &req.base, INVALID, "operator");
    req = pig_request();
    req.has_ownership_scheme = true;
    req.ownership_scheme = PASSERELLE__OWNERSHIP_SCHEME__OWNERSHIP_PSLA;
    harness_call_refused(c, "programme.create", &req.base, INVALID, "ownership_scheme");
    req.kind = KIND(SOCIAL_OWNERSHIP);
    req.has_ownership_scheme = false;
    harness_call_refused(c, "programme.create", &req.base, INVALID, "ownership_scheme");
    req = pig_request();
    Passerelle__NpnruCounterparts npnru = PASSERELLE__NPNRU_COUNTERPARTS__INIT;
    req.npnru = &npnru;
    harness_call_refused(c, "programme.create", &req.base, INVALID, "npnru");

    /* Programmes are the Métropole's: an operator may not create one. */
    client_t *operator= harness_stack_client(&f->stack, "operator", 5000, 1);
    assert_non_null(operator);
    req = pig_request();
    harness_call_refused(operator, "programme.create", &req.base, DENIED, NULL);
    client_destroy(&operator);

    expect_events(f, 0, "", "");
}

/* --- programme.get, programme.list ----------------------------------------- */

static size_t list_ids(fixture_t *f, Passerelle__ProgrammeListRequest *req, char ids[][ID_LEN],
                       size_t max, char *token, size_t token_size)
{
    Passerelle__Reply *reply =
        harness_call(f->stack.client, "programme.list", &req->base, OK, NULL);
    Passerelle__ProgrammeList *list =
        passerelle__programme_list__unpack(NULL, reply->body.len, reply->body.data);
    passerelle__reply__free_unpacked(reply, NULL);
    assert_non_null(list);
    assert_true(list->n_programmes <= max);
    for (size_t i = 0; i < list->n_programmes; i++) {
        snprintf(ids[i], ID_LEN, "%s", list->programmes[i]->id);
        assert_true(list->programmes[i]->has_units_attached);
    }
    if (token)
        snprintf(token, token_size, "%s", list->next_page_token ? list->next_page_token : "");
    size_t n = list->n_programmes;
    passerelle__programme_list__free_unpacked(list, NULL);
    return n;
}

static void test_get_and_list(void **state)
{
    fixture_t *f = *state;
    Passerelle__Programme *prog = get_programme(f, f->npnru);
    assert_string_equal(prog->name, "NPNRU Marseille Nord");
    assert_int_equal(prog->kind, KIND(NPNRU));
    assert_int_equal(prog->npnru->used_outside_qpv, 0);
    assert_true(prog->has_units_attached);
    passerelle__programme__free_unpacked(prog, NULL);

    Passerelle__ProgrammeGetRequest get = PASSERELLE__PROGRAMME_GET_REQUEST__INIT;
    char missing[ID_LEN];
    id_new('P', missing);
    get.id = missing;
    harness_call_refused(f->stack.client, "programme.get", &get.base, NOT_FOUND, "id");
    get.id = "PIG-2025";
    harness_call_refused(f->stack.client, "programme.get", &get.base, INVALID, "id");

    char ids[16][ID_LEN], token[64];
    Passerelle__ProgrammeListRequest req = PASSERELLE__PROGRAMME_LIST_REQUEST__INIT;
    assert_int_equal(list_ids(f, &req, ids, 16, token, sizeof token), 6);
    assert_string_equal(token, "");
    for (int i = 0; i < 6; i++)
        assert_string_equal(ids[i], f->kinds[i]);
    req.territory = "CT2";
    assert_int_equal(list_ids(f, &req, ids, 16, NULL, 0), 2);
    assert_string_equal(ids[0], f->pig);
    assert_string_equal(ids[1], f->opah);
    req.has_kind = true;
    req.kind = KIND(OPAH);
    assert_int_equal(list_ids(f, &req, ids, 16, NULL, 0), 1);
    assert_string_equal(ids[0], f->opah);
    req.territory = NULL;
    req.kind = KIND(NPNRU);
    assert_int_equal(list_ids(f, &req, ids, 16, NULL, 0), 1);
    assert_string_equal(ids[0], f->npnru);
    req.territory = "CT1";
    req.kind = KIND(PIG);
    assert_int_equal(list_ids(f, &req, ids, 16, NULL, 0), 0);

    /* Six programmes, four at a time, then two at a time. */
    size_t total = 0, pages = 0;
    token[0] = '\0';
    do {
        Passerelle__ProgrammeListRequest page = PASSERELLE__PROGRAMME_LIST_REQUEST__INIT;
        page.has_page_size = true;
        page.page_size = 4;
        page.page_token = token[0] ? token : NULL;
        char some[4][ID_LEN];
        size_t n = list_ids(f, &page, some, 4, token, sizeof token);
        for (size_t i = 0; i < n; i++)
            assert_string_equal(some[i], f->kinds[total + i]);
        total += n;
        pages++;
    } while (token[0]);
    assert_int_equal(total, 6);
    assert_int_equal(pages, 2);
    Passerelle__ProgrammeListRequest page = PASSERELLE__PROGRAMME_LIST_REQUEST__INIT;
    page.has_page_size = true;
    page.page_size = 2;
    page.page_token = f->kinds[3];
    assert_int_equal(list_ids(f, &page, ids, 2, token, sizeof token), 2);
    assert_string_equal(ids[0], f->kinds[4]);
    assert_string_equal(token, "");

    Passerelle__ProgrammeListRequest bad = PASSERELLE__PROGRAMME_LIST_REQUEST__INIT;
    bad.territory = "CT0";
    harness_call_refused(f->stack.client, "programme.list", &bad.base, INVALID, "territory");
    bad.territory = NULL;
    bad.has_page_size = true;
    bad.page_size = 501;
    harness_call_refused(f->stack.client, "programme.list", &bad.base, INVALID, "page_size");
    bad.page_size = 2;
    bad.page_token = "garbage";
    harness_call_refused(f->stack.client, "programme.list", &bad.base, INVALID, "page_token");
}

/* --- attaching units -------------------------------------------------------- */

static void test_attach(void **state)
{
    fixture_t *f = *state;
    Passerelle__UnitRegisterRequest reg;
    harness_unit_request(&reg, "ANAH-84089-PIG-1");
    Passerelle__Unit *unit = call_unit(f, "unit.register", &reg.base);
    snprintf(f->pertuis_unit, ID_LEN, "%s", unit->id);
    passerelle__unit__free_unpacked(unit, NULL);
    harness_unit_request(&reg, "ANAH-13001-1");
    reg.commune = "Aix-en-Provence";
    unit = call_unit(f, "unit.register", &reg.base);
    char aix_unit[ID_LEN];
    snprintf(aix_unit, ID_LEN, "%s", unit->id);
    passerelle__unit__free_unpacked(unit, NULL);
    expect_events(f, 2, "unit.registered", "units/U");

    /* By external reference: the unit joins, one event carries it. */
    Passerelle__ProgrammeAttachRequest req = PASSERELLE__PROGRAMME_ATTACH_REQUEST__INIT;
    req.programme = f->pig;
    req.unit = "ANAH-84089-PIG-1";
    unit = call_unit(f, "programme.attach_unit", &req.base);
    assert_string_equal(unit->id, f->pertuis_unit);
    assert_string_equal(unit->programme_id, f->pig);
    assert_int_equal(unit->version, 2);
    passerelle__unit__free_unpacked(unit, NULL);
    harness_events_t events;
    harness_events_read(f->stack.client, f->last_position, &events);
    assert_int_equal(events.count, 1);
    assert_int_equal(
        harness_events_count_units(&events, "programme.unit_attached", "ANAH-84089-PIG-1"), 1);
    char subject[64];
    snprintf(subject, sizeof subject, "units/%s", f->pertuis_unit);
    assert_string_equal(events.entries[0]->event->subject, subject);
    snprintf(f->last_position, sizeof f->last_position, "%s", events.last_position);
    harness_events_free(&events);

    /* Again, by id: the same unit, nothing written. */
    req.unit = f->pertuis_unit;
    unit = call_unit(f, "programme.attach_unit", &req.base);
    assert_int_equal(unit->version, 2);
    passerelle__unit__free_unpacked(unit, NULL);
    expect_events(f, 0, "", "");

    /* Aix is in CT2, not in the PIG's communes; the OPAH covers CT2 but
     * the Pertuis unit is already in the PIG, which the refusal names. */
    req.unit = aix_unit;
    harness_call_refused(f->stack.client, "programme.attach_unit", &req.base, PRECONDITION, "unit");
    req.programme = f->npnru;
    harness_call_refused(f->stack.client, "programme.attach_unit", &req.base, PRECONDITION, "unit");
    req.programme = f->opah;
    req.unit = f->pertuis_unit;
    Passerelle__Reply *reply =
        harness_call(f->stack.client, "programme.attach_unit", &req.base, CONFLICT, "unit");
    assert_non_null(strstr(reply->message, f->pig));
    passerelle__reply__free_unpacked(reply, NULL);
    req.unit = aix_unit;
    unit = call_unit(f, "programme.attach_unit", &req.base);
    assert_string_equal(unit->programme_id, f->opah);
    passerelle__unit__free_unpacked(unit, NULL);
    expect_events(f, 1, "programme.unit_attached", "units/U");

    char missing[ID_LEN];
    id_new('P', missing);
    req.programme = missing;
    harness_call_refused(f->stack.client, "programme.attach_unit", &req.base, NOT_FOUND,
                         "programme");
    req.programme = f->pig;
    req.unit = "NO-SUCH-UNIT";
    harness_call_refused(f->stack.client, "programme.attach_unit", &req.base, NOT_FOUND, "unit");
    req.unit = NULL;
    harness_call_refused(f->stack.client, "programme.attach_unit", &req.base, INVALID, "unit");
    req.unit = f->pertuis_unit;
    req.programme = "nope";
    harness_call_refused(f->stack.client, "programme.attach_unit", &req.base, INVALID, "programme");

    /* Registered in a programme: attached in the same write, one event. */
    harness_unit_request(&reg, "ANAH-84089-PIG-2");
    reg.programme_id = f->pig;
    unit = call_unit(f, "unit.register", &reg.base);
    assert_string_equal(unit->programme_id, f->pig);
    passerelle__unit__free_unpacked(unit, NULL);
    expect_events(f, 1, "unit.registered", "units/U");
    harness_unit_request(&reg, "ANAH-84089-PIG-3");
    reg.programme_id = missing;
    harness_call_refused(f->stack.client, "unit.register", &reg.base, NOT_FOUND, "programme_id");
    reg.programme_id = f->npnru;
    harness_call_refused(f->stack.client, "unit.register", &reg.base, PRECONDITION, "programme_id");
    expect_events(f, 0, "", "");

    Passerelle__Programme *prog = get_programme(f, f->pig);
    assert_int_equal(prog->units_attached, 2);
    passerelle__programme__free_unpacked(prog, NULL);
    prog = get_programme(f, f->opah);
    assert_int_equal(prog->units_attached, 1);
    passerelle__programme__free_unpacked(prog, NULL);
}

/* --- objectives and progress ---------------------------------------------- */

static Passerelle__Objective *set_objective(fixture_t *f, const char *programme, int level,
                                            int financing, unsigned units)
{
    Passerelle__ObjectiveSetRequest req = PASSERELLE__OBJECTIVE_SET_REQUEST__INIT;
    req.programme = (char *)programme;
    req.has_year = true;
    req.year = PROGRESS_YEAR;
    req.has_level = level != 0;
    req.level = level;
    req.has_financing = financing != 0;
    req.financing = financing;
    req.has_units = true;
    req.units = units;
    Passerelle__Reply *reply = harness_call(f->stack.client, "objective.set", &req.base, OK, NULL);
    Passerelle__Objective *objective =
        passerelle__objective__unpack(NULL, reply->body.len, reply->body.data);
    passerelle__reply__free_unpacked(reply, NULL);
    assert_non_null(objective);
    return objective;
}

static void test_objectives(void **state)
{
    fixture_t *f = *state;
    Passerelle__Objective *objective = set_objective(f, f->pig, 0, 0, 12);
    assert_string_equal(objective->programme_id, f->pig);
    assert_string_equal(objective->territory, "CT2");
    assert_int_equal(objective->units, 12);
    assert_int_equal(objective->version, 1);
    passerelle__objective__free_unpacked(objective, NULL);
    /* The same four again replace it. */
    objective = set_objective(f, f->pig, 0, 0, 15);
    assert_int_equal(objective->units, 15);
    assert_int_equal(objective->version, 2);
    passerelle__objective__free_unpacked(objective, NULL);
    objective = set_objective(f, f->pig, PASSERELLE__CONVENTION_LEVEL__LEVEL_LOC2, 0, 6);
    assert_int_equal(objective->version, 1);
    passerelle__objective__free_unpacked(objective, NULL);
    objective = set_objective(f, f->opah, 0, 0, 10);
    passerelle__objective__free_unpacked(objective, NULL);
    objective = set_objective(f, f->npnru, 0, PASSERELLE__FINANCING__FINANCING_PLUS, 8);
    passerelle__objective__free_unpacked(objective, NULL);
    expect_events(f, 5, "objective.set", "programmes/P");

    Passerelle__ObjectiveSetRequest bad = PASSERELLE__OBJECTIVE_SET_REQUEST__INIT;
    bad.programme = f->pig;
    bad.has_year = true;
    bad.year = 1999;
    bad.has_units = true;
    bad.units = 3;
    harness_call_refused(f->stack.client, "objective.set", &bad.base, INVALID, "year");
    bad.year = 2026;
    bad.has_level = true;
    bad.level = PASSERELLE__CONVENTION_LEVEL__LEVEL_LOC1;
    bad.has_financing = true;
    bad.financing = PASSERELLE__FINANCING__FINANCING_PLAI;
    harness_call_refused(f->stack.client, "objective.set", &bad.base, INVALID, "financing");
    bad.has_financing = false;
    bad.has_units = false;
    harness_call_refused(f->stack.client, "objective.set", &bad.base, INVALID, "units");
    bad.has_units = true;
    char missing[ID_LEN];
    id_new('P', missing);
    bad.programme = missing;
    harness_call_refused(f->stack.client, "objective.set", &bad.base, NOT_FOUND, "programme");
    expect_events(f, 0, "", "");

    /* Objectives only: nothing achieved yet. */
    Passerelle__Progress *progress = get_progress(f, f->pig, NULL);
    assert_int_equal(progress->n_rows, 2);
    expect_row(progress, f->pig, NULL, 0, 0, 15, 0);
    expect_row(progress, f->pig, NULL, PASSERELLE__CONVENTION_LEVEL__LEVEL_LOC2, 0, 6, 0);
    passerelle__progress__free_unpacked(progress, NULL);

    progress = get_progress(f, NULL, "CT2");
    expect_row(progress, f->pig, NULL, 0, 0, 15, 0);
    expect_row(progress, f->opah, NULL, 0, 0, 10, 0);
    expect_row(progress, NULL, "CT2", 0, 0, 25, 0);
    assert_null(find_row(progress, f->npnru, NULL, 0, 0));
    assert_null(find_row(progress, NULL, "CT1", 0, 0));
    passerelle__progress__free_unpacked(progress, NULL);

    progress = get_progress(f, NULL, NULL);
    expect_row(progress, f->npnru, NULL, 0, PASSERELLE__FINANCING__FINANCING_PLUS, 8, 0);
    expect_row(progress, f->npnru, NULL, 0, 0, 0, 0);
    expect_row(progress, NULL, "CT1", 0, 0, 0, 0);
    expect_row(progress, NULL, "CT2", 0, 0, 25, 0);
    expect_row(progress, NULL, "CT6", 0, 0, 0, 0);
    passerelle__progress__free_unpacked(progress, NULL);

    Passerelle__ProgressRequest req = PASSERELLE__PROGRESS_REQUEST__INIT;
    req.programme = f->pig;
    req.territory = "CT2";
    harness_call_refused(f->stack.client, "progress.get", &req.base, INVALID, "territory");
    req.territory = NULL;
    req.has_year = true;
    req.year = 3000;
    harness_call_refused(f->stack.client, "progress.get", &req.base, INVALID, "year");
    req.year = PROGRESS_YEAR;
    req.programme = missing;
    harness_call_refused(f->stack.client, "progress.get", &req.base, NOT_FOUND, "programme");
}

/* A reservation record as the bookings handlers make them, never stored:
 * only its counters are, through progress_count. */
static Passerelle__Reservation reservation(const char *programme, const char *territory, int level,
                                           int financing, bool in_qpv, int reservataire)
{
    Passerelle__Reservation r = PASSERELLE__RESERVATION__INIT;
    r.has_reservataire = true;
    r.reservataire = reservataire;
    r.has_mode = true;
    r.mode = PASSERELLE__RESERVATION_MODE__MODE_STOCK;
    r.programme_id = (char *)programme;
    r.territory = (char *)territory;
    r.has_year = true;
    r.year = PROGRESS_YEAR;
    r.has_units = true;
    r.units = 1;
    r.has_level = level != 0;
    r.level = level;
    r.has_financing = financing != 0;
    r.financing = financing;
    r.has_in_qpv = true;
    r.in_qpv = in_qpv;
    r.has_state = true;
    r.state = PASSERELLE__RESERVATION_STATE__RESERVATION_ACTIVE;
    return r;
}

static void commit_counts(store_t *store, Passerelle__Reservation *const *rs, size_t n, int sign)
{
    txn_t *txn = txn_new(NULL, NULL, 0);
    for (size_t i = 0; i < n; i++)
        progress_count(txn, rs[i], sign);
    assert_int_equal(txn_commit(txn, store, "", 0, NULL, NULL, NULL), TXN_COMMITTED);
    txn_destroy(&txn);
}

static void test_progress_counted(void **state)
{
    fixture_t *f = *state;
    store_config_t cfg;
    harness_redis_config(&f->stack.redis, &cfg);
    store_t *store = store_new(&cfg);
    assert_non_null(store);

    const int AL = PASSERELLE__RESERVATAIRE__RESERVATAIRE_ACTION_LOGEMENT;
    const int LOC2 = PASSERELLE__CONVENTION_LEVEL__LEVEL_LOC2;
    const int LOC3 = PASSERELLE__CONVENTION_LEVEL__LEVEL_LOC3;
    const int PLUS = PASSERELLE__FINANCING__FINANCING_PLUS;
    Passerelle__Reservation rs[] = {
        reservation(f->pig, "CT2", LOC2, 0, false, AL),
        reservation(f->pig, "CT2", LOC2, 0, false, AL),
        reservation(f->pig, "CT2", LOC3, 0, false, AL),
        reservation(f->opah, "CT2", 0, 0, false, AL),
        reservation(NULL, "CT2", 0, 0, false, AL), /* outside any programme */
        reservation(f->npnru, "CT1", 0, PLUS, true, AL),
        reservation(f->npnru, "CT1", 0, PLUS, true, AL),
        reservation(f->npnru, "CT1", 0, 0, false, AL),
        reservation(f->pig, "CT2", LOC2, 0, false, PASSERELLE__RESERVATAIRE__RESERVATAIRE_STATE),
    };
    size_t n = sizeof rs / sizeof rs[0];
    Passerelle__Reservation *ptrs[sizeof rs / sizeof rs[0]];
    for (size_t i = 0; i < n; i++)
        ptrs[i] = &rs[i];
    commit_counts(store, ptrs, n, +1);
    /* The LOC3 one is cancelled: its counters go down with it. */
    rs[2].state = PASSERELLE__RESERVATION_STATE__RESERVATION_CANCELLED;
    commit_counts(store, &ptrs[2], 1, -1);
    /* A released one still counts. */
    rs[1].state = PASSERELLE__RESERVATION_STATE__RESERVATION_RELEASED;

    Passerelle__Progress *progress = get_progress(f, f->pig, NULL);
    expect_row(progress, f->pig, NULL, 0, 0, 15, 2);
    expect_row(progress, f->pig, NULL, LOC2, 0, 6, 2);
    /* Cancelled to nothing, without an objective: no row. */
    assert_null(find_row(progress, f->pig, NULL, LOC3, 0));
    passerelle__progress__free_unpacked(progress, NULL);

    progress = get_progress(f, NULL, NULL);
    expect_row(progress, f->opah, NULL, 0, 0, 10, 1);
    expect_row(progress, f->npnru, NULL, 0, 0, 0, 3);
    expect_row(progress, f->npnru, NULL, 0, PLUS, 8, 2);
    expect_row(progress, NULL, "CT2", 0, 0, 25, 4);
    expect_row(progress, NULL, "CT1", 0, 0, 0, 3);
    passerelle__progress__free_unpacked(progress, NULL);

    Passerelle__Programme *prog = get_programme(f, f->npnru);
    assert_int_equal(prog->npnru->used_in_qpv, 2);
    assert_int_equal(prog->npnru->used_outside_qpv, 1);
    assert_int_equal(prog->npnru->rights_in_qpv, 30);
    passerelle__programme__free_unpacked(prog, NULL);

    /* What Redis holds equals a recount of the reservations' final states. */
    progress_tally_t *held = progress_tally_new(), *recounted = progress_tally_new();
    assert_int_equal(progress_tally_load(store, held), STORE_OK);
    progress_recount((const Passerelle__Reservation *const *)ptrs, n, recounted);
    char diff[256] = "";
    if (!progress_tally_equal(held, recounted, diff, sizeof diff))
        fail_msg("counters differ from the recount: %s", diff);
    assert_true(progress_tally_size(held) > 0);
    progress_tally_destroy(&held);
    progress_tally_destroy(&recounted);
    store_destroy(&store);
}

/* Once the bookings handlers count: a STOCK reservation of a social unit
 * registered in the PIG, and a FLOW reservation of the OPAH, move the same
 * counters through reservation.create; a cancellation takes them back, a
 * release does not. Starts from the figures test_progress_counted left. */
static Passerelle__Reservation *call_reservation(client_t *client, const char *type,
                                                 const ProtobufCMessage *body)
{
    Passerelle__Reply *reply = harness_call(client, type, body, OK, NULL);
    Passerelle__Reservation *r =
        passerelle__reservation__unpack(NULL, reply->body.len, reply->body.data);
    passerelle__reply__free_unpacked(reply, NULL);
    assert_non_null(r);
    return r;
}

static void test_progress_end_to_end(void **state)
{
    fixture_t *f = *state;
    const int PLUS = PASSERELLE__FINANCING__FINANCING_PLUS;
    Passerelle__UnitRegisterRequest reg;
    harness_unit_request(&reg, "HLM-84089-0007");
    reg.stock = PASSERELLE__STOCK__STOCK_SOCIAL;
    reg.landlord = "Grand Delta Habitat";
    reg.has_financing = true;
    reg.financing = PLUS;
    reg.programme_id = f->pig;
    Passerelle__Unit *unit = call_unit(f, "unit.register", &reg.base);
    passerelle__unit__free_unpacked(unit, NULL);

    client_t *al = harness_stack_client(&f->stack, "action_logement", 5000, 1);
    assert_non_null(al);
    Passerelle__ReservationCreateRequest stock = PASSERELLE__RESERVATION_CREATE_REQUEST__INIT;
    stock.has_mode = true;
    stock.mode = PASSERELLE__RESERVATION_MODE__MODE_STOCK;
    stock.unit = "HLM-84089-0007";
    stock.start_date = PROGRESS_YEAR_S "-06-01";
    stock.end_date = "2029-05-31";
    Passerelle__Reservation *r = call_reservation(al, "reservation.create", &stock.base);
    assert_string_equal(r->programme_id, f->pig);
    char stock_id[ID_LEN];
    snprintf(stock_id, sizeof stock_id, "%s", r->id);
    passerelle__reservation__free_unpacked(r, NULL);

    Passerelle__ReservationCreateRequest flow = PASSERELLE__RESERVATION_CREATE_REQUEST__INIT;
    flow.has_mode = true;
    flow.mode = PASSERELLE__RESERVATION_MODE__MODE_FLOW;
    flow.programme = f->opah;
    flow.has_year = true;
    flow.year = PROGRESS_YEAR;
    flow.has_units = true;
    flow.units = 4;
    r = call_reservation(al, "reservation.create", &flow.base);
    char flow_id[ID_LEN];
    snprintf(flow_id, sizeof flow_id, "%s", r->id);
    passerelle__reservation__free_unpacked(r, NULL);

    Passerelle__Progress *progress = get_progress(f, NULL, "CT2");
    expect_row(progress, f->pig, NULL, 0, 0, 15, 3);
    expect_row(progress, f->pig, NULL, 0, PLUS, 0, 1);
    expect_row(progress, f->opah, NULL, 0, 0, 10, 5);
    expect_row(progress, NULL, "CT2", 0, 0, 25, 9);
    passerelle__progress__free_unpacked(progress, NULL);

    Passerelle__ReservationStepRequest step = PASSERELLE__RESERVATION_STEP_REQUEST__INIT;
    step.id = stock_id;
    r = call_reservation(al, "reservation.cancel", &step.base);
    passerelle__reservation__free_unpacked(r, NULL);
    step.id = flow_id;
    r = call_reservation(al, "reservation.release", &step.base);
    passerelle__reservation__free_unpacked(r, NULL);
    client_destroy(&al);

    progress = get_progress(f, NULL, "CT2");
    expect_row(progress, f->pig, NULL, 0, 0, 15, 2);
    assert_null(find_row(progress, f->pig, NULL, 0, PLUS));
    expect_row(progress, f->opah, NULL, 0, 0, 10, 5);
    expect_row(progress, NULL, "CT2", 0, 0, 25, 8);
    passerelle__progress__free_unpacked(progress, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_each_kind),    cmocka_unit_test(test_create_refused),
        cmocka_unit_test(test_get_and_list),        cmocka_unit_test(test_attach),
        cmocka_unit_test(test_objectives),          cmocka_unit_test(test_progress_counted),
        cmocka_unit_test(test_progress_end_to_end),
    };
    return cmocka_run_group_tests(tests, setup, harness_fixture_teardown);
}
