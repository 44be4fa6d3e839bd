/* The need side of the indicators service end to end: a real redis-server
 * and the real passerelle-indicators binary on run-time ports, called over
 * ZeroMQ with CURVE as each party.
 *
 * Economic projects: created, read by id and by reference, repeated (the
 * same content answers the project already made, other content is
 * ALREADY_EXISTS), refused for every rule with its code and field,
 * updated through the status machine (PROSPECT -> CONFIRMED -> SETTLED,
 * anything -> DROPPED, DROPPED final), listed and paged with filters.
 * Demand figures: imported as a batch, every bad line reported in the
 * refusal (and nothing stored), a second import of a period replacing it,
 * read back by period. Each write's events are read back from the
 * service's own stream (event.list) and decoded through the CloudEvents
 * registry; retries with one idempotency key answer the first reply and
 * write nothing; and the parties' rights are checked. */
#include "harness.h"

#include "cloudevent.h"
#include "envelope.pb-c.h"
#include "ids.h"
#include "indicators.pb-c.h"
#include "reservations.pb-c.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define OK           PASSERELLE__STATUS__STATUS_OK
#define INVALID      PASSERELLE__STATUS__STATUS_INVALID_ARGUMENT
#define NOT_FOUND    PASSERELLE__STATUS__STATUS_NOT_FOUND
#define EXISTS       PASSERELLE__STATUS__STATUS_ALREADY_EXISTS
#define PRECONDITION PASSERELLE__STATUS__STATUS_FAILED_PRECONDITION
#define DENIED       PASSERELLE__STATUS__STATUS_PERMISSION_DENIED

#define STATUS(s) PASSERELLE__PROJECT_STATUS__PROJECT_##s
#define TYPO(t)   PASSERELLE__TYPOLOGY__TYPOLOGY_##t
#define PUBLIC(p) PASSERELLE__PRIORITY_PUBLIC__PUBLIC_##p

typedef struct {
    harness_stack_t stack; /* Redis + reservations (unused) + keys */
    harness_service_t indicators;
    client_t *metropole, *action_logement, *partner, *admin, *operator_;
    char last_position[64]; /* of the indicators stream, as last read */
} fixture_t;

static fixture_t fx;

/* ==========================================================================
 * Helpers
 * ======================================================================== */

static void need_service(void)
{
    if (fx.indicators.pid <= 0 || !fx.metropole)
        fail_msg("the indicators service did not start (see the logs in %s)",
                 fx.stack.dir ? fx.stack.dir : "?");
}

static Passerelle__EconomicProject *project_call(client_t *client, const char *type,
                                                 const ProtobufCMessage *body)
{
    return (Passerelle__EconomicProject *)harness_call_ok(
        client, type, body, &passerelle__economic_project__descriptor);
}

/* A valid project of an aeronautics company in Pertuis (CT2), 2028, with
 * two needs; the strings and needs are static, the test changes what it
 * is about. */
static Passerelle__HousingNeed need_t2_young = PASSERELLE__HOUSING_NEED__INIT;
static Passerelle__HousingNeed need_t3_any = PASSERELLE__HOUSING_NEED__INIT;
static Passerelle__HousingNeed *default_needs[2];

static void create_request(Passerelle__ProjectCreateRequest *req, const char *ref)
{
    passerelle__project_create_request__init(req);
    need_t2_young.has_typology = true;
    need_t2_young.typology = TYPO(T2);
    need_t2_young.has_public_ = true;
    need_t2_young.public_ = PUBLIC(UNDER_30);
    need_t2_young.has_units = true;
    need_t2_young.units = 30;
    need_t3_any.has_typology = true;
    need_t3_any.typology = TYPO(T3);
    need_t3_any.has_units = true;
    need_t3_any.units = 12;
    default_needs[0] = &need_t2_young;
    default_needs[1] = &need_t3_any;
    req->ref = (char *)ref;
    req->company = "Hélices du Luberon";
    req->sector = "aeronautics";
    req->commune = "Pertuis";
    req->has_expected_jobs = true;
    req->expected_jobs = 250;
    req->has_horizon_year = true;
    req->horizon_year = 2028;
    req->needs = default_needs;
    req->n_needs = 2;
}

static Passerelle__EconomicProject *project_get(const char *id_or_ref)
{
    Passerelle__ProjectGetRequest req = PASSERELLE__PROJECT_GET_REQUEST__INIT;
    req.id = (char *)id_or_ref;
    return project_call(fx.metropole, "project.get", &req.base);
}

/* The events appended to the indicators stream since the last look. */
static void events_since(harness_events_t *events)
{
    harness_events_read(fx.admin, fx.last_position, events);
    snprintf(fx.last_position, sizeof fx.last_position, "%s", events->last_position);
}

/* Exactly count new events, each of this type, subject subjects[i] (when
 * subjects is not NULL); returns their data decoded through the
 * CloudEvents registry into data[i] (caller frees each). */
static void expect_events(size_t count, const char *type, const char *const *subjects,
                          ProtobufCMessage **data)
{
    harness_events_t events;
    events_since(&events);
    if (events.count != count) {
        for (size_t i = 0; i < events.count; i++)
            fprintf(stderr, "event %s %s\n", events.entries[i]->event->type,
                    events.entries[i]->event->subject);
        fail_msg("expected %zu new %s events, found %zu", count, type, events.count);
    }
    for (size_t i = 0; i < count; i++) {
        const Passerelle__Event *event = events.entries[i]->event;
        assert_string_equal(event->type, type);
        assert_string_equal(event->source, "/passerelle/indicators");
        if (subjects)
            assert_string_equal(event->subject, subjects[i]);
        ProtobufCMessage *msg = cloudevent_data(event);
        assert_non_null(msg);
        if (data)
            data[i] = msg;
        else
            protobuf_c_message_free_unpacked(msg, NULL);
    }
    harness_events_free(&events);
}

static void expect_no_event(void)
{
    expect_events(0, "", NULL, NULL);
}

/* ==========================================================================
 * Economic projects
 * ======================================================================== */

static void test_project_create_and_get(void **state)
{
    (void)state;
    need_service();
    expect_no_event();

    Passerelle__ProjectCreateRequest req;
    create_request(&req, "AMP-ECO-2026-001");
    Passerelle__Reply *first =
        harness_call_keyed(fx.metropole, "project.create", &req.base, "create-001", OK, NULL);
    Passerelle__EconomicProject *project =
        passerelle__economic_project__unpack(NULL, first->body.len, first->body.data);
    assert_non_null(project);
    assert_true(id_valid('J', project->id));
    assert_string_equal(project->ref, "AMP-ECO-2026-001");
    assert_string_equal(project->company, "Hélices du Luberon");
    assert_string_equal(project->sector, "aeronautics");
    assert_string_equal(project->commune_insee, "84089");
    assert_string_equal(project->commune_name, "Pertuis");
    assert_string_equal(project->territory, "CT2"); /* derived */
    assert_int_equal(project->expected_jobs, 250);
    assert_int_equal(project->horizon_year, 2028);
    assert_int_equal(project->status, STATUS(PROSPECT)); /* unspecified means PROSPECT */
    assert_int_equal(project->version, 1);
    assert_int_equal(project->n_needs, 2);
    assert_int_equal(project->needs[0]->typology, TYPO(T2));
    assert_int_equal(project->needs[0]->public_, PUBLIC(UNDER_30));
    assert_int_equal(project->needs[0]->units, 30);
    assert_int_equal(project->needs[1]->units, 12);
    assert_non_null(project->created_at);
    char subject[64];
    snprintf(subject, sizeof subject, "projects/%s", project->id);
    const char *subjects[] = {subject};
    ProtobufCMessage *data[1];
    expect_events(1, "economic_project.created", subjects, data);
    const Passerelle__EconomicProject *in_event = (const Passerelle__EconomicProject *)data[0];
    assert_ptr_equal(data[0]->descriptor, &passerelle__economic_project__descriptor);
    assert_string_equal(in_event->id, project->id);
    assert_int_equal(in_event->version, 1);
    assert_int_equal(in_event->expected_jobs, 250);
    protobuf_c_message_free_unpacked(data[0], NULL);

    /* The same key again: the first reply, byte for byte, nothing written. */
    Passerelle__Reply *again =
        harness_call_keyed(fx.metropole, "project.create", &req.base, "create-001", OK, NULL);
    assert_int_equal(again->body.len, first->body.len);
    assert_memory_equal(again->body.data, first->body.data, first->body.len);
    passerelle__reply__free_unpacked(again, NULL);
    /* The same key with another request is refused. */
    Passerelle__ProjectCreateRequest other;
    create_request(&other, "AMP-ECO-2026-999");
    Passerelle__Reply *reused = harness_call_keyed(fx.metropole, "project.create", &other.base,
                                                   "create-001", INVALID, "idempotency_key");
    passerelle__reply__free_unpacked(reused, NULL);
    passerelle__reply__free_unpacked(first, NULL);

    /* By id and by reference. */
    Passerelle__EconomicProject *got = project_get(project->id);
    assert_string_equal(got->ref, "AMP-ECO-2026-001");
    passerelle__economic_project__free_unpacked(got, NULL);
    got = project_get("AMP-ECO-2026-001");
    assert_string_equal(got->id, project->id);
    passerelle__economic_project__free_unpacked(got, NULL);

    /* The same content under a fresh key: the project already made. */
    Passerelle__EconomicProject *repeat = project_call(fx.metropole, "project.create", &req.base);
    assert_string_equal(repeat->id, project->id);
    assert_int_equal(repeat->version, 1);
    passerelle__economic_project__free_unpacked(repeat, NULL);
    /* Other content under that reference: it already exists. */
    req.expected_jobs = 300;
    Passerelle__Reply *clash =
        harness_call(fx.metropole, "project.create", &req.base, EXISTS, "ref");
    harness_assert_contains(clash->message, project->id);
    harness_assert_contains(clash->message, "expected_jobs");
    passerelle__reply__free_unpacked(clash, NULL);
    expect_no_event();

    /* Absent ones. */
    Passerelle__ProjectGetRequest get = PASSERELLE__PROJECT_GET_REQUEST__INIT;
    get.id = "J01ARZ3NDEKTSV4RRFFQ69G5FAV";
    harness_call_refused(fx.metropole, "project.get", &get.base, NOT_FOUND, "id");
    get.id = "NO-SUCH-REF";
    harness_call_refused(fx.metropole, "project.get", &get.base, NOT_FOUND, "id");
    get.id = "";
    harness_call_refused(fx.metropole, "project.get", &get.base, INVALID, "id");
    passerelle__economic_project__free_unpacked(project, NULL);
}

static void test_project_create_refusals(void **state)
{
    (void)state;
    need_service();
    Passerelle__ProjectCreateRequest req;
    Passerelle__HousingNeed bad_need = PASSERELLE__HOUSING_NEED__INIT;
    Passerelle__HousingNeed *bad_needs[] = {&need_t3_any, &bad_need};

#define REFUSED(field)                                                                             \
    do {                                                                                           \
        harness_call_refused(fx.metropole, "project.create", &req.base, INVALID, field);           \
        create_request(&req, "AMP-REFUSED");                                                       \
    } while (0)

    create_request(&req, "AMP-REFUSED");
    req.ref = NULL;
    REFUSED("ref");
    req.ref = "AMP-REFUSED ";
    REFUSED("ref");
    req.ref = "J01ARZ3NDEKTSV4RRFFQ69G5FAV"; /* reads as a project id */
    REFUSED("ref");
    req.ref = "AMP\tTAB";
    REFUSED("ref");
    req.company = NULL;
    req.sector = "";
    REFUSED("company");
    req.company = "Line\nbreak";
    REFUSED("company");
    req.sector = "bad\x01sector";
    REFUSED("sector");
    req.commune = NULL;
    REFUSED("commune");
    req.commune = "Paris";
    REFUSED("commune");
    req.commune = "7"; /* a bare arrondissement number is no commune */
    REFUSED("commune");
    req.expected_jobs = 1000001;
    REFUSED("expected_jobs");
    req.has_horizon_year = false;
    REFUSED("horizon_year");
    req.horizon_year = 1999;
    REFUSED("horizon_year");
    req.horizon_year = 2101;
    REFUSED("horizon_year");
    req.has_status = true;
    req.status = STATUS(DROPPED);
    REFUSED("status");
    req.has_status = true;
    req.status = 17;
    REFUSED("status");

    bad_need.has_units = true;
    bad_need.units = 0;
    req.needs = bad_needs;
    REFUSED("needs");
    bad_need.units = 100001;
    req.needs = bad_needs;
    REFUSED("needs");
    bad_need.units = 5;
    bad_need.has_typology = true;
    bad_need.typology = 9;
    req.needs = bad_needs;
    REFUSED("needs");
    bad_need.has_typology = false;
    bad_need.has_public_ = true;
    bad_need.public_ = 42;
    req.needs = bad_needs;
    REFUSED("needs");
#undef REFUSED
    expect_no_event();

    /* The bounds themselves are fine; a commune by name without case or
     * accents, an arrondissement as Marseille. */
    create_request(&req, "AMP-BOUNDS");
    req.commune = "aix en provence";
    req.company = NULL; /* a sector alone is enough */
    req.expected_jobs = 1000000;
    req.horizon_year = 2100;
    bad_need.has_typology = false;
    bad_need.has_public_ = false;
    bad_need.units = 100000;
    Passerelle__HousingNeed *bound_needs[] = {&bad_need};
    req.needs = bound_needs;
    req.n_needs = 1;
    req.has_status = true;
    req.status = STATUS(SETTLED);
    Passerelle__EconomicProject *p = project_call(fx.metropole, "project.create", &req.base);
    assert_string_equal(p->commune_insee, "13001");
    assert_string_equal(p->territory, "CT2");
    assert_int_equal(p->status, STATUS(SETTLED));
    assert_null(p->company);
    passerelle__economic_project__free_unpacked(p, NULL);
    create_request(&req, "AMP-ARRONDISSEMENT");
    req.commune = "13207";
    req.horizon_year = 2000;
    p = project_call(fx.metropole, "project.create", &req.base);
    assert_string_equal(p->commune_insee, "13055");
    assert_string_equal(p->territory, "CT1");
    passerelle__economic_project__free_unpacked(p, NULL);
    expect_events(2, "economic_project.created", NULL, NULL);
}

static void update_status(const char *id, int status, int expected, const char *message_part)
{
    Passerelle__ProjectUpdateRequest req = PASSERELLE__PROJECT_UPDATE_REQUEST__INIT;
    req.id = (char *)id;
    req.has_status = true;
    req.status = status;
    Passerelle__Reply *reply = harness_call(fx.metropole, "project.update", &req.base, expected,
                                            expected == OK ? NULL : "status");
    if (message_part)
        harness_assert_contains(reply->message, message_part);
    passerelle__reply__free_unpacked(reply, NULL);
}

static void test_project_update(void **state)
{
    (void)state;
    need_service();
    Passerelle__ProjectCreateRequest create;
    create_request(&create, "AMP-UPDATE");
    Passerelle__EconomicProject *p = project_call(fx.metropole, "project.create", &create.base);
    char id[ID_LEN], subject[64];
    snprintf(id, sizeof id, "%s", p->id);
    snprintf(subject, sizeof subject, "projects/%s", id);
    passerelle__economic_project__free_unpacked(p, NULL);
    expect_events(1, "economic_project.created", NULL, NULL);
    const char *subjects[] = {subject};

    /* By reference: more jobs, a later horizon, another commune (so another
     * territory), all in one version. */
    Passerelle__ProjectUpdateRequest req = PASSERELLE__PROJECT_UPDATE_REQUEST__INIT;
    req.id = "AMP-UPDATE";
    req.has_expected_jobs = true;
    req.expected_jobs = 400;
    req.has_horizon_year = true;
    req.horizon_year = 2029;
    req.commune = "Istres";
    Passerelle__Reply *first =
        harness_call_keyed(fx.metropole, "project.update", &req.base, "update-1", OK, NULL);
    p = passerelle__economic_project__unpack(NULL, first->body.len, first->body.data);
    assert_non_null(p);
    assert_int_equal(p->version, 2);
    assert_int_equal(p->expected_jobs, 400);
    assert_int_equal(p->horizon_year, 2029);
    assert_string_equal(p->territory, "CT5");
    assert_string_equal(p->commune_insee, "13047");
    assert_int_equal(p->n_needs, 2); /* needs stay unless replaced */
    passerelle__economic_project__free_unpacked(p, NULL);
    ProtobufCMessage *data[1];
    expect_events(1, "economic_project.updated", subjects, data);
    assert_int_equal(((Passerelle__EconomicProject *)data[0])->version, 2);
    assert_string_equal(((Passerelle__EconomicProject *)data[0])->territory, "CT5");
    protobuf_c_message_free_unpacked(data[0], NULL);
    /* A retry with the key: the first reply, no second version. */
    Passerelle__Reply *again =
        harness_call_keyed(fx.metropole, "project.update", &req.base, "update-1", OK, NULL);
    assert_int_equal(again->body.len, first->body.len);
    assert_memory_equal(again->body.data, first->body.data, first->body.len);
    passerelle__reply__free_unpacked(again, NULL);
    passerelle__reply__free_unpacked(first, NULL);
    /* The same change under a new key changes nothing: no version, no event. */
    p = project_call(fx.metropole, "project.update", &req.base);
    assert_int_equal(p->version, 2);
    passerelle__economic_project__free_unpacked(p, NULL);
    expect_no_event();

    /* The territory index followed the commune. */
    Passerelle__ProjectListRequest list = PASSERELLE__PROJECT_LIST_REQUEST__INIT;
    list.territory = "CT5";
    Passerelle__ProjectList *listed = (Passerelle__ProjectList *)harness_call_ok(
        fx.metropole, "project.list", &list.base, &passerelle__project_list__descriptor);
    bool in_ct5 = false;
    for (size_t i = 0; i < listed->n_projects; i++)
        in_ct5 = in_ct5 || strcmp(listed->projects[i]->id, id) == 0;
    assert_true(in_ct5);
    passerelle__project_list__free_unpacked(listed, NULL);
    list.territory = "CT2";
    listed = (Passerelle__ProjectList *)harness_call_ok(fx.metropole, "project.list", &list.base,
                                                        &passerelle__project_list__descriptor);
    for (size_t i = 0; i < listed->n_projects; i++)
        assert_string_not_equal(listed->projects[i]->id, id);
    passerelle__project_list__free_unpacked(listed, NULL);

    /* Needs: replaced as a whole, only when asked. */
    Passerelle__HousingNeed need = PASSERELLE__HOUSING_NEED__INIT;
    need.has_units = true;
    need.units = 8;
    need.has_public_ = true;
    need.public_ = PUBLIC(APPRENTICE);
    Passerelle__HousingNeed *needs[] = {&need};
    Passerelle__ProjectUpdateRequest n = PASSERELLE__PROJECT_UPDATE_REQUEST__INIT;
    n.id = id;
    n.needs = needs;
    n.n_needs = 1;
    harness_call_refused(fx.metropole, "project.update", &n.base, INVALID, "replace_needs");
    n.has_replace_needs = true;
    n.replace_needs = true;
    need.units = 0;
    harness_call_refused(fx.metropole, "project.update", &n.base, INVALID, "needs");
    need.units = 8;
    p = project_call(fx.metropole, "project.update", &n.base);
    assert_int_equal(p->version, 3);
    assert_int_equal(p->n_needs, 1);
    assert_int_equal(p->needs[0]->public_, PUBLIC(APPRENTICE));
    passerelle__economic_project__free_unpacked(p, NULL);
    expect_events(1, "economic_project.updated", subjects, NULL);

    /* Other bad values. */
    Passerelle__ProjectUpdateRequest bad = PASSERELLE__PROJECT_UPDATE_REQUEST__INIT;
    bad.id = id;
    bad.has_expected_jobs = true;
    bad.expected_jobs = 2000000;
    harness_call_refused(fx.metropole, "project.update", &bad.base, INVALID, "expected_jobs");
    bad.has_expected_jobs = false;
    bad.has_horizon_year = true;
    bad.horizon_year = 1990;
    harness_call_refused(fx.metropole, "project.update", &bad.base, INVALID, "horizon_year");
    bad.has_horizon_year = false;
    bad.commune = "Lyon";
    harness_call_refused(fx.metropole, "project.update", &bad.base, INVALID, "commune");
    bad.commune = NULL;
    bad.has_status = true;
    bad.status = 9;
    harness_call_refused(fx.metropole, "project.update", &bad.base, INVALID, "status");
    bad.id = "J01ARZ3NDEKTSV4RRFFQ69G5FAV";
    bad.status = STATUS(CONFIRMED);
    harness_call_refused(fx.metropole, "project.update", &bad.base, NOT_FOUND, "id");
    bad.id = NULL;
    harness_call_refused(fx.metropole, "project.update", &bad.base, INVALID, "id");
    expect_no_event();

    /* The status machine: forward, never back, DROPPED from anywhere and
     * final. */
    update_status(id, STATUS(CONFIRMED), OK, NULL);
    update_status(id, STATUS(PROSPECT), PRECONDITION, "CONFIRMED");
    update_status(id, STATUS(SETTLED), OK, NULL);
    update_status(id, STATUS(CONFIRMED), PRECONDITION, "SETTLED");
    update_status(id, STATUS(DROPPED), OK, NULL);
    expect_events(3, "economic_project.updated", NULL, NULL);
    p = project_get(id);
    assert_int_equal(p->status, STATUS(DROPPED));
    assert_int_equal(p->version, 6);
    passerelle__economic_project__free_unpacked(p, NULL);
    update_status(id, STATUS(PROSPECT), PRECONDITION, "DROPPED");
    update_status(id, STATUS(DROPPED), PRECONDITION, "DROPPED");
    Passerelle__ProjectUpdateRequest jobs = PASSERELLE__PROJECT_UPDATE_REQUEST__INIT;
    jobs.id = id;
    jobs.has_expected_jobs = true;
    jobs.expected_jobs = 1;
    Passerelle__Reply *reply =
        harness_call(fx.metropole, "project.update", &jobs.base, PRECONDITION, "status");
    harness_assert_contains(reply->message, "DROPPED");
    passerelle__reply__free_unpacked(reply, NULL);
    expect_no_event();

    /* A prospect may settle at once, skipping CONFIRMED. */
    create_request(&create, "AMP-SKIP");
    p = project_call(fx.metropole, "project.create", &create.base);
    snprintf(id, sizeof id, "%s", p->id);
    passerelle__economic_project__free_unpacked(p, NULL);
    expect_events(1, "economic_project.created", NULL, NULL);
    update_status(id, STATUS(SETTLED), OK, NULL);
    expect_events(1, "economic_project.updated", NULL, NULL);
}

static Passerelle__ProjectList *list_call(const Passerelle__ProjectListRequest *req)
{
    return (Passerelle__ProjectList *)harness_call_ok(fx.metropole, "project.list", &req->base,
                                                      &passerelle__project_list__descriptor);
}

static void test_project_list(void **state)
{
    (void)state;
    need_service();
    /* Five projects in CT6 (Martigues), two confirmed, horizons 2030/2031. */
    char ids[5][ID_LEN];
    for (int i = 0; i < 5; i++) {
        char ref[32];
        snprintf(ref, sizeof ref, "AMP-LIST-%d", i);
        Passerelle__ProjectCreateRequest req;
        create_request(&req, ref);
        req.commune = "Martigues";
        req.horizon_year = i < 3 ? 2030 : 2031;
        if (i % 2) {
            req.has_status = true;
            req.status = STATUS(CONFIRMED);
        }
        Passerelle__EconomicProject *p = project_call(fx.metropole, "project.create", &req.base);
        snprintf(ids[i], ID_LEN, "%s", p->id);
        passerelle__economic_project__free_unpacked(p, NULL);
    }
    expect_events(5, "economic_project.created", NULL, NULL);

    Passerelle__ProjectListRequest req = PASSERELLE__PROJECT_LIST_REQUEST__INIT;
    req.territory = "ct6"; /* any case */
    Passerelle__ProjectList *list = list_call(&req);
    assert_int_equal(list->n_projects, 5);
    for (int i = 0; i < 5; i++)
        assert_string_equal(list->projects[i]->id, ids[i]); /* creation order */
    assert_true(list->next_page_token == NULL || !*list->next_page_token);
    passerelle__project_list__free_unpacked(list, NULL);

    req.has_status = true;
    req.status = STATUS(CONFIRMED);
    list = list_call(&req);
    assert_int_equal(list->n_projects, 2);
    assert_string_equal(list->projects[0]->id, ids[1]);
    assert_string_equal(list->projects[1]->id, ids[3]);
    passerelle__project_list__free_unpacked(list, NULL);

    req.has_status = false;
    req.has_horizon_year = true;
    req.horizon_year = 2031;
    list = list_call(&req);
    assert_int_equal(list->n_projects, 2);
    passerelle__project_list__free_unpacked(list, NULL);

    /* Pages of two: 2, 2, 1. */
    req.has_horizon_year = false;
    req.has_page_size = true;
    req.page_size = 2;
    size_t seen = 0;
    char token[ID_LEN] = "";
    for (int page = 0; page < 3; page++) {
        req.page_token = token[0] ? token : NULL;
        list = list_call(&req);
        for (size_t i = 0; i < list->n_projects; i++)
            assert_string_equal(list->projects[i]->id, ids[seen++]);
        bool more = list->next_page_token && *list->next_page_token;
        assert_int_equal(more, page < 2);
        if (more)
            snprintf(token, sizeof token, "%s", list->next_page_token);
        passerelle__project_list__free_unpacked(list, NULL);
    }
    assert_int_equal(seen, 5);

    /* Every project, whatever its territory. */
    Passerelle__ProjectListRequest all = PASSERELLE__PROJECT_LIST_REQUEST__INIT;
    all.has_page_size = true;
    all.page_size = 500;
    list = list_call(&all);
    assert_true(list->n_projects >= 5);
    passerelle__project_list__free_unpacked(list, NULL);

    Passerelle__ProjectListRequest bad = PASSERELLE__PROJECT_LIST_REQUEST__INIT;
    bad.territory = "CT7";
    harness_call_refused(fx.metropole, "project.list", &bad.base, INVALID, "territory");
    bad.territory = NULL;
    bad.has_page_size = true;
    bad.page_size = 501;
    harness_call_refused(fx.metropole, "project.list", &bad.base, INVALID, "page_size");
    bad.has_page_size = false;
    bad.page_token = "not-a-token";
    harness_call_refused(fx.metropole, "project.list", &bad.base, INVALID, "page_token");
    bad.page_token = NULL;
    bad.has_status = true;
    bad.status = 12;
    harness_call_refused(fx.metropole, "project.list", &bad.base, INVALID, "status");
    bad.has_status = false;
    bad.has_horizon_year = true;
    bad.horizon_year = 3000;
    harness_call_refused(fx.metropole, "project.list", &bad.base, INVALID, "horizon_year");
}

/* ==========================================================================
 * Demand figures
 * ======================================================================== */

typedef struct {
    Passerelle__DemandRow rows[64];
    Passerelle__DemandRow *ptrs[64];
    size_t count;
} rows_t;

static Passerelle__DemandRow *row_add(rows_t *rows, const char *period, const char *territory,
                                      int public_, uint32_t requests, uint32_t housed)
{
    assert_true(rows->count < 64);
    Passerelle__DemandRow *row = &rows->rows[rows->count];
    passerelle__demand_row__init(row);
    row->has_line = true;
    row->line = (uint32_t)rows->count + 2; /* as a CSV file with a header */
    row->period = (char *)period;
    row->territory = (char *)territory;
    row->has_public_ = public_ != 0;
    row->public_ = public_;
    row->has_housing_requests = true;
    row->housing_requests = requests;
    row->has_aids_visale = true;
    row->aids_visale = requests / 2;
    row->has_aids_loca_pass = true;
    row->aids_loca_pass = requests / 4;
    row->has_housed = true;
    row->housed = housed;
    rows->ptrs[rows->count] = row;
    rows->count++;
    return row;
}

static void import_request(Passerelle__DemandImportRequest *req, rows_t *rows)
{
    passerelle__demand_import_request__init(req);
    req->rows = rows->ptrs;
    req->n_rows = rows->count;
}

static Passerelle__DemandImportReply *import_call(client_t *client, rows_t *rows, const char *key,
                                                  Passerelle__Reply **raw)
{
    Passerelle__DemandImportRequest req;
    import_request(&req, rows);
    Passerelle__Reply *reply =
        harness_call_keyed(client, "demand.import", &req.base, key, OK, NULL);
    Passerelle__DemandImportReply *answer =
        passerelle__demand_import_reply__unpack(NULL, reply->body.len, reply->body.data);
    assert_non_null(answer);
    if (raw)
        *raw = reply;
    else
        passerelle__reply__free_unpacked(reply, NULL);
    return answer;
}

static Passerelle__DemandPeriod *demand_get(const char *period)
{
    Passerelle__DemandGetRequest req = PASSERELLE__DEMAND_GET_REQUEST__INIT;
    req.period = (char *)period;
    return (Passerelle__DemandPeriod *)harness_call_ok(fx.metropole, "demand.get", &req.base,
                                                       &passerelle__demand_period__descriptor);
}

static void test_demand_import_and_replace(void **state)
{
    (void)state;
    need_service();
    rows_t rows = {0};
    row_add(&rows, "2026-Q2", "CT2", 0, 40, 6);
    row_add(&rows, "2026-04", "ct1", 0, 120, 15); /* territory in any case */
    row_add(&rows, "2026-04", "CT1", PUBLIC(UNDER_30), 45, 4);
    row_add(&rows, "2026-04", "CT2", 0, 60, 9);

    Passerelle__Reply *first = NULL;
    Passerelle__DemandImportReply *answer =
        import_call(fx.action_logement, &rows, "demand-1", &first);
    assert_int_equal(answer->n_periods, 2);
    const Passerelle__DemandPeriod *april = answer->periods[0], *q2 = answer->periods[1];
    assert_string_equal(april->period, "2026-04");
    assert_string_equal(q2->period, "2026-Q2");
    assert_int_equal(april->version, 1);
    assert_int_equal(q2->version, 1);
    assert_string_equal(april->imported_by, "action_logement");
    assert_non_null(april->imported_at);
    assert_int_equal(april->n_rows, 3);
    assert_string_equal(april->rows[0]->territory, "CT1"); /* batch order, upper case */
    assert_int_equal(april->rows[0]->housing_requests, 120);
    assert_false(april->rows[0]->has_public_);
    assert_int_equal(april->rows[1]->public_, PUBLIC(UNDER_30));
    assert_false(april->rows[0]->has_line); /* a file's line means nothing once stored */
    assert_int_equal(q2->n_rows, 1);
    passerelle__demand_import_reply__free_unpacked(answer, NULL);

    /* One event per period, in one write. */
    const char *subjects[] = {"demand/2026-04", "demand/2026-Q2"};
    ProtobufCMessage *data[2];
    expect_events(2, "demand.figures_replaced", subjects, data);
    for (int i = 0; i < 2; i++) {
        assert_ptr_equal(data[i]->descriptor, &passerelle__demand_period__descriptor);
        const Passerelle__DemandPeriod *d = (const Passerelle__DemandPeriod *)data[i];
        assert_int_equal(d->version, 1);
        assert_int_equal(d->n_rows, i == 0 ? 3 : 1);
        protobuf_c_message_free_unpacked(data[i], NULL);
    }

    /* The same key again: the first reply, nothing written. */
    Passerelle__Reply *again = NULL;
    answer = import_call(fx.action_logement, &rows, "demand-1", &again);
    assert_int_equal(again->body.len, first->body.len);
    assert_memory_equal(again->body.data, first->body.data, first->body.len);
    passerelle__demand_import_reply__free_unpacked(answer, NULL);
    passerelle__reply__free_unpacked(again, NULL);
    passerelle__reply__free_unpacked(first, NULL);
    expect_no_event();

    Passerelle__DemandPeriod *got = demand_get("2026-04");
    assert_int_equal(got->version, 1);
    assert_int_equal(got->n_rows, 3);
    passerelle__demand_period__free_unpacked(got, NULL);

    /* A second import of April replaces it: only its rows remain; the
     * quarter it does not name stays. */
    rows_t second = {0};
    row_add(&second, "2026-04", "CT3", PUBLIC(MOBILITY), 7, 1);
    answer = import_call(fx.admin, &second, NULL, NULL);
    assert_int_equal(answer->n_periods, 1);
    assert_int_equal(answer->periods[0]->version, 2);
    assert_string_equal(answer->periods[0]->imported_by, "admin");
    passerelle__demand_import_reply__free_unpacked(answer, NULL);
    const char *april_subject[] = {"demand/2026-04"};
    expect_events(1, "demand.figures_replaced", april_subject, data);
    assert_int_equal(((Passerelle__DemandPeriod *)data[0])->version, 2);
    assert_int_equal(((Passerelle__DemandPeriod *)data[0])->n_rows, 1);
    protobuf_c_message_free_unpacked(data[0], NULL);

    got = demand_get("2026-04");
    assert_int_equal(got->version, 2);
    assert_int_equal(got->n_rows, 1);
    assert_string_equal(got->rows[0]->territory, "CT3");
    assert_int_equal(got->rows[0]->public_, PUBLIC(MOBILITY));
    assert_int_equal(got->rows[0]->housing_requests, 7);
    passerelle__demand_period__free_unpacked(got, NULL);
    got = demand_get("2026-Q2");
    assert_int_equal(got->version, 1);
    assert_int_equal(got->n_rows, 1);
    passerelle__demand_period__free_unpacked(got, NULL);

    /* A year is a period too; the figures' bounds are inclusive. */
    rows_t year = {0};
    Passerelle__DemandRow *big = row_add(&year, "2025", "CT6", PUBLIC(DISABILITY), 10000000, 0);
    big->has_aids_other = true;
    big->aids_other = 10000000;
    answer = import_call(fx.action_logement, &year, NULL, NULL);
    assert_string_equal(answer->periods[0]->period, "2025");
    passerelle__demand_import_reply__free_unpacked(answer, NULL);
    expect_events(1, "demand.figures_replaced", NULL, NULL);

    /* demand.get's own refusals. */
    Passerelle__DemandGetRequest get = PASSERELLE__DEMAND_GET_REQUEST__INIT;
    get.period = "2019-01";
    harness_call_refused(fx.action_logement, "demand.get", &get.base, NOT_FOUND, "period");
    get.period = "2026-04-01";
    harness_call_refused(fx.action_logement, "demand.get", &get.base, INVALID, "period");
    get.period = NULL;
    harness_call_refused(fx.action_logement, "demand.get", &get.base, INVALID, "period");
}

/* Sends rows expecting a refusal naming "rows"; returns the message
 * (malloc'd). */
static char *import_refused(rows_t *rows)
{
    Passerelle__DemandImportRequest req;
    import_request(&req, rows);
    Passerelle__Reply *reply =
        harness_call(fx.action_logement, "demand.import", &req.base, INVALID, "rows");
    char *message = strdup(reply->message ? reply->message : "");
    passerelle__reply__free_unpacked(reply, NULL);
    assert_non_null(message);
    assert_true(strlen(message) <= 500);
    return message;
}

static void test_demand_refusals(void **state)
{
    (void)state;
    need_service();
    /* One batch, several bad lines among good ones: each bad line is
     * reported, in order, with what is wrong with it; nothing is stored. */
    rows_t rows = {0};
    row_add(&rows, "2027-01", "CT1", 0, 10, 1);                       /* line 2: fine */
    row_add(&rows, "2027-13", "CT1", 0, 10, 1);                       /* line 3 */
    row_add(&rows, "2027-01", "CT9", 0, 10, 1);                       /* line 4 */
    row_add(&rows, "2027-01", "CT2", 99, 10, 1);                      /* line 5 */
    row_add(&rows, "2027-01", "CT3", 0, 10000001, 1);                 /* line 6 */
    row_add(&rows, "2027-01", "CT1", 0, 11, 2);                       /* line 7: repeats 2 */
    row_add(&rows, "2027-01-15", "", 0, 10, 1);                       /* line 8: two problems */
    row_add(&rows, "2027-Q1", "CT4", PUBLIC(SEASONAL), 10, 1);        /* line 9: fine */
    row_add(&rows, "2027-Q1", "ct4", PUBLIC(SEASONAL), 10, 20000000); /* line 10 */
    char *message = import_refused(&rows);
    const char *expected[] = {
        "line 3: period '2027-13' is not a month (2026-04), quarter (2026-Q2) or year (2026)",
        "; line 4: territory 'CT9' is not one of CT1..CT6",
        "; line 5: public 99 is not a priority public",
        "; line 6: housing_requests 10000001 is above 10000000",
        "; line 7: repeats line 2 (same period, territory and public)",
        "; line 8: period '2027-01-15' is not a month",
    };
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++)
        harness_assert_contains(message, expected[i]);
    /* In line order. */
    assert_true(strstr(message, "line 3:") < strstr(message, "line 4:"));
    assert_true(strstr(message, "line 7:") < strstr(message, "line 8:"));
    assert_null(strstr(message, "line 2:"));
    assert_null(strstr(message, "line 9:"));
    /* Line 8 says both of its problems; line 10 repeats line 9 and has a
     * figure too large: both said. The whole list does not fit: the tail
     * says how many more. */
    harness_assert_contains(message, "territory is missing");
    if (strstr(message, "line 10:")) {
        harness_assert_contains(message, "housed 20000000 is above 10000000");
        harness_assert_contains(message, "repeats line 9");
    } else {
        harness_assert_contains(message, "... and 1 more");
    }
    free(message);

    /* Forty bad lines: the message is cut, and says how many were left out. */
    rows_t many = {0};
    for (int i = 0; i < 40; i++)
        row_add(&many, "2027-02", "CT8", 0, 1, 0);
    message = import_refused(&many);
    assert_int_equal(strncmp(message, "line 2: territory 'CT8' is not one of CT1..CT6", 46), 0);
    const char *tail = strstr(message, "; ... and ");
    assert_non_null(tail);
    unsigned hidden = 0;
    assert_int_equal(sscanf(tail, "; ... and %u more", &hidden), 1);
    /* The lines shown plus those left out are the forty. */
    unsigned shown = 0;
    for (const char *p = message; (p = strstr(p, "line ")); p++)
        shown++;
    assert_int_equal(shown + hidden, 40);
    assert_true(hidden > 0);
    free(message);

    /* Lines without a number are counted from 1 in the batch. */
    rows_t unnumbered = {0};
    row_add(&unnumbered, "2027-03", "CT1", 0, 1, 0);
    row_add(&unnumbered, "2027-03", "CT0", 0, 1, 0)->has_line = false;
    message = import_refused(&unnumbered);
    harness_assert_contains(message, "line 2: territory 'CT0'");
    free(message);

    /* An empty batch. */
    rows_t empty = {0};
    message = import_refused(&empty);
    harness_assert_contains(message, "empty");
    free(message);

    /* Nothing of any of these was stored. */
    expect_no_event();
    Passerelle__DemandGetRequest get = PASSERELLE__DEMAND_GET_REQUEST__INIT;
    const char *periods[] = {"2027-01", "2027-Q1", "2027-02", "2027-03"};
    for (size_t i = 0; i < sizeof periods / sizeof periods[0]; i++) {
        get.period = (char *)periods[i];
        harness_call_refused(fx.action_logement, "demand.get", &get.base, NOT_FOUND, "period");
    }
}

/* ==========================================================================
 * Access
 * ======================================================================== */

static void test_access(void **state)
{
    (void)state;
    need_service();
    Passerelle__ProjectCreateRequest create;
    create_request(&create, "AMP-ACCESS");
    Passerelle__ProjectGetRequest get = PASSERELLE__PROJECT_GET_REQUEST__INIT;
    get.id = "AMP-ECO-2026-001";
    Passerelle__ProjectListRequest list = PASSERELLE__PROJECT_LIST_REQUEST__INIT;
    Passerelle__ProjectUpdateRequest upd = PASSERELLE__PROJECT_UPDATE_REQUEST__INIT;
    upd.id = "AMP-ECO-2026-001";
    upd.has_expected_jobs = true;
    upd.expected_jobs = 1;
    Passerelle__DemandGetRequest dget = PASSERELLE__DEMAND_GET_REQUEST__INIT;
    dget.period = "2026-04";
    rows_t rows = {0};
    row_add(&rows, "2028-01", "CT1", 0, 1, 0);
    Passerelle__DemandImportRequest import;
    import_request(&import, &rows);

    /* Partners read the figures, not the parties' plans. */
    harness_call_refused(fx.partner, "project.create", &create.base, DENIED, NULL);
    harness_call_refused(fx.partner, "project.update", &upd.base, DENIED, NULL);
    harness_call_refused(fx.partner, "project.get", &get.base, DENIED, NULL);
    harness_call_refused(fx.partner, "project.list", &list.base, DENIED, NULL);
    harness_call_refused(fx.partner, "demand.get", &dget.base, DENIED, NULL);
    harness_call_refused(fx.partner, "demand.import", &import.base, DENIED, NULL);
    /* Projects are the Métropole's to write, demand figures Action
     * Logement's. */
    harness_call_refused(fx.action_logement, "project.create", &create.base, DENIED, NULL);
    harness_call_refused(fx.action_logement, "project.update", &upd.base, DENIED, NULL);
    harness_call_refused(fx.metropole, "demand.import", &import.base, DENIED, NULL);
    harness_call_refused(fx.operator_, "demand.import", &import.base, DENIED, NULL);
    harness_call_refused(fx.operator_, "project.create", &create.base, DENIED, NULL);
    expect_no_event();

    /* Both parties (and the operators) read both. */
    Passerelle__EconomicProject *p = project_call(fx.action_logement, "project.get", &get.base);
    passerelle__economic_project__free_unpacked(p, NULL);
    Passerelle__Reply *reply = harness_call(fx.operator_, "project.list", &list.base, OK, NULL);
    passerelle__reply__free_unpacked(reply, NULL);
    reply = harness_call(fx.metropole, "demand.get", &dget.base, OK, NULL);
    passerelle__reply__free_unpacked(reply, NULL);
    /* ADMIN writes both. */
    p = project_call(fx.admin, "project.create", &create.base);
    passerelle__economic_project__free_unpacked(p, NULL);
    expect_events(1, "economic_project.created", NULL, NULL);
}

/* ==========================================================================
 * Damaged records
 * ======================================================================== */

/* What the service's records hold is read by the server's record readers
 * (server.h): a record that does not decode, and a reference that does not
 * hold a project id, are INTERNAL replies naming the key, whether read by
 * id, by reference or in a listing; nothing crashes, and the record read
 * again once whole. */
static void test_damaged_records(void **state)
{
    (void)state;
    need_service();
    Passerelle__ProjectCreateRequest create;
    create_request(&create, "AMP-DAMAGED");
    create.commune = "Martigues"; /* CT6: the listing below walks CT6 */
    Passerelle__EconomicProject *p = project_call(fx.admin, "project.create", &create.base);
    char id[ID_LEN], key[64];
    snprintf(id, sizeof id, "%s", p->id);
    passerelle__economic_project__free_unpacked(p, NULL);
    expect_events(1, "economic_project.created", NULL, NULL);

    store_config_t cfg;
    harness_redis_config(&fx.stack.redis, &cfg);
    store_t *store = store_new(&cfg);
    assert_non_null(store);
    snprintf(key, sizeof key, "indicators:project:%s", id);
    redisReply *whole = NULL;
    assert_int_equal(store_command(store, &whole, "HGET %s pb", key), STORE_OK);
    assert_int_equal(whole->type, REDIS_REPLY_STRING);
    assert_int_equal(store_command(store, NULL, "HSET %s pb %b", key, "\xff\xff\xff", (size_t)3),
                     STORE_OK);

    Passerelle__ProjectGetRequest get = PASSERELLE__PROJECT_GET_REQUEST__INIT;
    get.id = id;
    Passerelle__Reply *reply = harness_call(fx.metropole, "project.get", &get.base,
                                            PASSERELLE__STATUS__STATUS_INTERNAL, NULL);
    harness_assert_contains(reply->message, key);
    harness_assert_contains(reply->message, "does not decode");
    passerelle__reply__free_unpacked(reply, NULL);
    get.id = "AMP-DAMAGED";
    harness_call_refused(fx.metropole, "project.get", &get.base,
                         PASSERELLE__STATUS__STATUS_INTERNAL, NULL);
    Passerelle__ProjectListRequest list = PASSERELLE__PROJECT_LIST_REQUEST__INIT;
    list.territory = "CT6";
    harness_call_refused(fx.metropole, "project.list", &list.base,
                         PASSERELLE__STATUS__STATUS_INTERNAL, NULL);

    /* A reference whose value is not a project id. */
    assert_int_equal(
        store_command(store, NULL, "HSET indicators:project-ref:AMP-NOWHERE v 1 pb not-an-id"),
        STORE_OK);
    get.id = "AMP-NOWHERE";
    reply = harness_call(fx.metropole, "project.get", &get.base,
                         PASSERELLE__STATUS__STATUS_INTERNAL, NULL);
    harness_assert_contains(reply->message, "does not hold a project id");
    passerelle__reply__free_unpacked(reply, NULL);

    /* Whole again: read again. */
    assert_int_equal(store_command(store, NULL, "HSET %s pb %b", key, whole->str, whole->len),
                     STORE_OK);
    assert_int_equal(store_command(store, NULL, "DEL indicators:project-ref:AMP-NOWHERE"),
                     STORE_OK);
    freeReplyObject(whole);
    store_destroy(&store);
    get.id = id;
    p = project_call(fx.metropole, "project.get", &get.base);
    assert_string_equal(p->ref, "AMP-DAMAGED");
    passerelle__economic_project__free_unpacked(p, NULL);
    reply = harness_call(fx.metropole, "project.list", &list.base, OK, NULL);
    passerelle__reply__free_unpacked(reply, NULL);
}

/* ==========================================================================
 * Setup
 * ======================================================================== */

static client_t *client_of(const char *name)
{
    return harness_indicators_client(&fx.stack, &fx.indicators, name);
}

static int group_setup(void **state)
{
    *state = &fx;
    if (harness_stack_start(&fx.stack, "indneed", NULL, NULL) != 0) {
        if (!fx.stack.dir)
            return -1;
        fprintf(stderr, "the reservations service did not start\n");
        return 0;
    }
    if (harness_indicators_start(&fx.stack, &fx.indicators, NULL) != 0) {
        fprintf(stderr, "the indicators service did not start\n");
        return 0;
    }
    fx.metropole = client_of("metropole");
    fx.action_logement = client_of("action_logement");
    fx.partner = client_of("partner");
    fx.admin = client_of("admin");
    fx.operator_ = client_of("operator");
    snprintf(fx.last_position, sizeof fx.last_position, "0");
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    client_t **clients[] = {&fx.metropole, &fx.action_logement, &fx.partner, &fx.admin,
                            &fx.operator_};
    for (size_t i = 0; i < sizeof clients / sizeof clients[0]; i++)
        client_destroy(clients[i]);
    bool clean = harness_service_stop_checked(&fx.indicators);
    bool stack_clean = harness_stack_stop(&fx.stack);
    return clean && stack_clean ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_project_create_and_get),
        cmocka_unit_test(test_project_create_refusals),
        cmocka_unit_test(test_project_update),
        cmocka_unit_test(test_project_list),
        cmocka_unit_test(test_demand_import_and_replace),
        cmocka_unit_test(test_demand_refusals),
        cmocka_unit_test(test_access),
        cmocka_unit_test(test_damaged_records),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
