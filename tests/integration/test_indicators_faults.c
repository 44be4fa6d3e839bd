/* The indicators engine under faults: a real redis-server, the real
 * reservations and indicators services.
 *
 * A long random history: a backlog of synthetic events appended straight
 * into the reservations stream (so the projector is mid-stream whenever it
 * is killed), then a driver writing units, conventions, reservations,
 * objectives and proposals through the reservations service, with a client
 * that retries, while the indicators service is SIGKILLed and restarted
 * several times, and events keep coming while it is down. Once the
 * projectors have caught up, every counter field of the current generation
 * equals what the test computes from the stream itself (projection_of and
 * a tally, as a reader that never failed would): nothing was lost, nothing
 * counted twice.
 *
 * Then a rebuild: while it runs, a second one is refused and the service
 * keeps answering (rebuild status, series); once it has switched, its
 * generation holds the same counters, field for field. PARTNER may not
 * rebuild. */
#include "harness.h"

#include "ids.h"
#include "indicators.pb-c.h"
#include "projection.h"
#include "reservations.pb-c.h"
#include "store.h"
#include "tally.h"

#include <inttypes.h>
#include <jansson.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define OK                  PASSERELLE__STATUS__STATUS_OK
#define PERMISSION_DENIED   PASSERELLE__STATUS__STATUS_PERMISSION_DENIED
#define FAILED_PRECONDITION PASSERELLE__STATUS__STATUS_FAILED_PRECONDITION

#define STREAM      "reservations:events"
#define CATCH_UP_MS 40000

/* The backlog appended straight into the stream, and the driver's writes. */
#define BACKLOG 20000
/* More of it before the rebuild that the service's stop abandons. */
#define STOP_BACKLOG 60000
#define OPERATIONS   1500
/* The indicators service is killed after these operations, and restarted
 * DOWN_OPS operations later. */
static const int KILL_AT[] = {150, 500, 850, 1200};
#define DOWN_OPS 40

#define SIREN_A "732829320"
#define SIREN_B "552100554"

typedef struct {
    char id[ID_LEN];
    bool social;
    int convention;           /* 0 none, 1 envisaged, 2 signed, 3 in force, 4 over */
    char reservation[ID_LEN]; /* its active STOCK reservation, or "" */
} unit_t;

typedef struct {
    harness_indicators_t ind; /* Redis, reservations, indicators, clients, store */
    char endpoint_env[96];
    char *indicators_env[2];
    client_t *driver; /* of the reservations service, with retries */
    int year;
    unit_t units[OPERATIONS];
    size_t unit_count;
    char programmes[2][ID_LEN];
    char flows[OPERATIONS][ID_LEN];
    size_t flow_count;
    int refused; /* operations the service refused (the model guessed wrong) */
} fixture_t;

/* ======================== Redis ======================================== */

/* What the indicators group has yet to finish on the stream: entries not
 * delivered (lag) plus entries delivered and not acknowledged. */
static long long group_backlog(fixture_t *f)
{
    redisReply *groups = NULL;
    assert_int_equal(store_command(f->ind.store, &groups, "XINFO GROUPS %s", STREAM), STORE_OK);
    long long backlog = 0;
    for (size_t g = 0; groups->type == REDIS_REPLY_ARRAY && g < groups->elements; g++) {
        const redisReply *info = groups->element[g];
        bool ours = false;
        long long lag = 0, pending = 0;
        for (size_t i = 0; i + 1 < info->elements; i += 2) {
            const char *k = info->element[i]->str;
            const redisReply *v = info->element[i + 1];
            if (strcmp(k, "name") == 0)
                ours = strcmp(v->str, "indicators") == 0;
            else if (strcmp(k, "lag") == 0)
                lag = v->type == REDIS_REPLY_INTEGER ? v->integer : 1;
            else if (strcmp(k, "pending") == 0)
                pending = v->integer;
        }
        if (ours)
            backlog = lag + pending;
    }
    freeReplyObject(groups);
    return backlog;
}

/* ======================== what the stream says ========================= */

static void expected_add(json_t *all, const char *key, const char *field, int64_t delta)
{
    json_t *fields = json_object_get(all, key);
    if (!fields) {
        fields = json_object();
        json_object_set_new(all, key, fields);
    }
    json_t *v = json_object_get(fields, field);
    json_object_set_new(fields, field, json_integer((v ? json_integer_value(v) : 0) + delta));
}

static void expected_add_cb(void *arg, const char *key, const char *field, int64_t delta)
{
    expected_add(arg, key, field, delta);
}

static void expected_replacement_cb(void *arg, const replacement_t *r)
{
    for (size_t i = 0; i < r->triples.count; i++)
        expected_add(arg, r->triples.items[i].key, r->triples.items[i].field,
                     r->triples.items[i].delta);
}

/* The counters every event of the stream makes, each event once,
 * computed here with projection_of and a tally. */
static json_t *counters_from_stream(fixture_t *f, const char *stream)
{
    tally_t *tally = tally_new();
    json_t *seen = json_object();
    char start[80] = "-";
    for (;;) {
        redisReply *page = NULL;
        assert_int_equal(
            store_command(f->ind.store, &page, "XRANGE %s %s + COUNT 1000", stream, start),
            STORE_OK);
        for (size_t i = 0; i < page->elements; i++) {
            const redisReply *entry = page->element[i];
            snprintf(start, sizeof start, "(%s", entry->element[0]->str);
            const redisReply *fields = entry->element[1];
            for (size_t k = 0; k + 1 < fields->elements; k += 2) {
                if (strcmp(fields->element[k]->str, "event") != 0)
                    continue;
                Passerelle__Event *event =
                    passerelle__event__unpack(NULL, fields->element[k + 1]->len,
                                              (const uint8_t *)fields->element[k + 1]->str);
                assert_non_null(event);
                if (!json_object_get(seen, event->id)) {
                    json_object_set_new(seen, event->id, json_true());
                    projection_t p;
                    assert_true(projection_of(event, &p));
                    assert_true(tally_add_projection(tally, &p));
                    projection_free(&p);
                }
                passerelle__event__free_unpacked(event, NULL);
            }
        }
        size_t n = page->elements;
        freeReplyObject(page);
        if (n < 1000)
            break;
    }
    json_t *all = json_object();
    tally_each(tally, expected_add_cb, all);
    tally_each_replacement(tally, expected_replacement_cb, all);
    tally_destroy(&tally);
    json_decref(seen);
    /* Zeros left out, as harness_indicators_counters does. */
    const char *key;
    json_t *fields;
    void *tmp;
    json_object_foreach_safe(all, tmp, key, fields)
    {
        const char *field;
        json_t *v;
        void *tmp2;
        json_object_foreach_safe(fields, tmp2, field, v)
        {
            if (json_integer_value(v) == 0)
                json_object_del(fields, field);
        }
        if (json_object_size(fields) == 0)
            json_object_del(all, key);
    }
    return all;
}

/* ======================== the backlog ================================== */

static const char *const COMMUNES[][2] = {
    {"13001", "CT2"}, {"13002", "CT1"}, {"84089", "CT2"}, {"13056", "CT6"},
    {"13005", "CT4"}, {"13047", "CT5"}, {"13103", "CT3"},
};

/* A synthetic event of the reservations stream, packed into out (at
 * least 4096 bytes): units, conventions, reservations and proposals over
 * the last two years. Returns its length; its type into type. */
static size_t backlog_event(unsigned i, uint8_t *out, const char **type)
{
    unsigned r = (i * 2654435761u) >> 7;
    int64_t at = time_now_ms() - (int64_t)(r % (730u * 86400u)) * 1000;
    char when[TIME_RFC3339_LEN];
    time_rfc3339(at, when);
    const char *const *place = COMMUNES[r % 7];
    char unit_id[ID_LEN], event_id[ID_LEN], other_id[ID_LEN];
    id_new('U', unit_id);
    id_new('E', event_id);
    id_new('R', other_id);
    Passerelle__Unit unit = PASSERELLE__UNIT__INIT;
    unit.id = unit_id;
    unit.commune_insee = (char *)place[0];
    unit.territory = (char *)place[1];
    unit.has_stock = true;
    unit.stock = (r >> 3) & 1 ? PASSERELLE__STOCK__STOCK_PRIVATE : PASSERELLE__STOCK__STOCK_SOCIAL;
    uint8_t data[2048];
    size_t len;
    const char *schema;
    switch (r % 10) {
    case 0:
    case 1:
    case 2: {
        Passerelle__Reservation res = PASSERELLE__RESERVATION__INIT;
        res.id = other_id;
        res.has_mode = true;
        res.mode = PASSERELLE__RESERVATION_MODE__MODE_STOCK;
        res.unit = &unit;
        res.unit_id = unit_id;
        res.territory = (char *)place[1];
        res.has_year = true;
        res.year = (uint32_t)date_today_paris().year - (r >> 5) % 2;
        res.has_in_qpv = true;
        res.in_qpv = (r >> 9) & 1;
        *type = (r >> 11) % 4 ? "reservation.created" : "reservation.released";
        len = passerelle__reservation__pack(&res, data);
        schema = "passerelle.Reservation";
        break;
    }
    case 3:
    case 4:
    case 5: {
        Passerelle__Convention c = PASSERELLE__CONVENTION__INIT;
        c.id = other_id;
        c.unit = &unit;
        c.has_level = true;
        c.level = (Passerelle__ConventionLevel)(1 + (r >> 4) % 3);
        c.envisaged_on = "2025-02-01";
        c.signed_on = (r >> 6) % 2 ? "2025-03-03" : "2025-05-20";
        *type = (r >> 8) % 3 == 0   ? "convention.envisaged"
                : (r >> 8) % 3 == 1 ? "convention.signed"
                                    : "convention.ended";
        len = passerelle__convention__pack(&c, data);
        schema = "passerelle.Convention";
        break;
    }
    case 6:
    case 7:
    case 8:
        *type = "unit.registered";
        len = passerelle__unit__pack(&unit, data);
        schema = "passerelle.Unit";
        break;
    default: {
        Passerelle__Proposal p = PASSERELLE__PROPOSAL__INIT;
        p.id = other_id;
        p.territory = (char *)place[1];
        Passerelle__PriorityPublic publics[2] = {PASSERELLE__PRIORITY_PUBLIC__PUBLIC_UNDER_30,
                                                 PASSERELLE__PRIORITY_PUBLIC__PUBLIC_MOBILITY};
        p.publics = publics;
        p.n_publics = 1 + (r >> 3) % 2;
        p.has_eligible = true;
        p.eligible = (r >> 5) % 3 != 0;
        p.has_employer_sector = true;
        p.employer_sector = PASSERELLE__EMPLOYER_SECTOR__SECTOR_PRIVATE_NON_AGRICULTURAL;
        *type = "proposal.recorded";
        len = passerelle__proposal__pack(&p, data);
        schema = "passerelle.Proposal";
        break;
    }
    }
    Passerelle__Event ev = PASSERELLE__EVENT__INIT;
    ev.id = event_id;
    ev.source = "/passerelle/reservations";
    ev.type = (char *)*type;
    ev.subject = "units/synthetic";
    ev.time = when;
    ev.datacontenttype = "application/protobuf";
    ev.dataschema = (char *)schema;
    ev.has_data = true;
    ev.data.data = data;
    ev.data.len = len;
    ev.specversion = "1.0";
    return passerelle__event__pack(&ev, out);
}

static void append_backlog(fixture_t *f, unsigned count)
{
    enum { CHUNK = 500 };
    static uint8_t packed[CHUNK][4096];
    static const char *argv[CHUNK][7];
    static size_t lens[CHUNK][7];
    store_cmd_t cmds[CHUNK];
    redisReply *replies[CHUNK];
    store_result_t results[CHUNK];
    for (unsigned i = 0; i < count; i += CHUNK) {
        unsigned m = count - i < CHUNK ? count - i : CHUNK;
        for (unsigned j = 0; j < m; j++) {
            const char *type;
            size_t len = backlog_event(i + j, packed[j], &type);
            const char *a[7] = {"XADD", STREAM, "*", "type", type, "event", (char *)packed[j]};
            for (int k = 0; k < 7; k++) {
                argv[j][k] = a[k];
                lens[j][k] = strlen(a[k]);
            }
            lens[j][6] = len;
            cmds[j] = (store_cmd_t){7, argv[j], lens[j]};
        }
        store_command_many(f->ind.store, cmds, m, replies, results);
        for (unsigned j = 0; j < m; j++) {
            assert_int_equal(results[j], STORE_OK);
            freeReplyObject(replies[j]);
        }
    }
}

/* ======================== the driver =================================== */

/* Sends one write; a refusal of the service (the model below guessed
 * the state wrong) is counted, not fatal; anything else fails the test.
 * Returns the reply body as desc when OK (caller frees), else NULL. */
static ProtobufCMessage *drive(fixture_t *f, const char *type, const ProtobufCMessage *body,
                               const ProtobufCMessageDescriptor *desc)
{
    Passerelle__Reply *reply = NULL;
    assert_int_equal(client_call(f->driver, type, body, NULL, &reply), 0);
    ProtobufCMessage *msg = NULL;
    int status = reply->has_status ? (int)reply->status : 0;
    if (status == OK) {
        if (desc) {
            msg = protobuf_c_message_unpack(desc, NULL, reply->body.len, reply->body.data);
            assert_non_null(msg);
        }
    } else if (status == FAILED_PRECONDITION || status == PASSERELLE__STATUS__STATUS_CONFLICT ||
               status == PASSERELLE__STATUS__STATUS_INVALID_ARGUMENT) {
        f->refused++;
        if (f->refused <= 5)
            fprintf(stderr, "driver: %s refused: %s\n", type, reply->message);
    } else {
        fail_msg("%s: status %d (%s)", type, status, reply->message ? reply->message : "");
    }
    passerelle__reply__free_unpacked(reply, NULL);
    return msg;
}

static void op_register(fixture_t *f, unsigned r)
{
    unit_t *u = &f->units[f->unit_count];
    char ref[32];
    snprintf(ref, sizeof ref, "IF-%zu", f->unit_count);
    Passerelle__UnitRegisterRequest req;
    harness_unit_request(&req, ref);
    req.commune = (char *)COMMUNES[r % 7][0];
    u->social = r % 3 == 0;
    if (u->social) {
        harness_unit_social(&req, "Logirem");
        req.has_in_qpv = true;
        req.in_qpv = (r >> 4) & 1;
    }
    Passerelle__Unit *unit =
        (Passerelle__Unit *)drive(f, "unit.register", &req.base, &passerelle__unit__descriptor);
    if (!unit)
        return;
    snprintf(u->id, ID_LEN, "%s", unit->id);
    passerelle__unit__free_unpacked(unit, NULL);
    f->unit_count++;
}

static void op_convention(fixture_t *f, unit_t *u, unsigned r)
{
    if (u->convention == 0) {
        Passerelle__ConventionEnvisageRequest req = PASSERELLE__CONVENTION_ENVISAGE_REQUEST__INIT;
        req.unit = u->id;
        req.has_level = true;
        req.level = (Passerelle__ConventionLevel)(1 + r % 3);
        ProtobufCMessage *m = drive(f, "convention.envisage", &req.base, NULL);
        (void)m;
        u->convention = 1;
        return;
    }
    Passerelle__ConventionStepRequest req = PASSERELLE__CONVENTION_STEP_REQUEST__INIT;
    req.unit = u->id;
    const char *type;
    switch (u->convention) {
    case 1:
        type = r % 4 ? "convention.sign" : "convention.abandon";
        u->convention = r % 4 ? 2 : 4;
        break;
    case 2:
        type = "convention.in_force";
        u->convention = 3;
        break;
    default:
        type = "convention.end";
        u->convention = 4;
        break;
    }
    if (strcmp(type, "convention.end") == 0)
        req.reason = "terminated";
    drive(f, type, &req.base, NULL);
}

static void op_stock(fixture_t *f, unit_t *u, unsigned r)
{
    if (u->reservation[0]) {
        Passerelle__ReservationStepRequest req = PASSERELLE__RESERVATION_STEP_REQUEST__INIT;
        req.id = u->reservation;
        drive(f, r % 2 ? "reservation.release" : "reservation.cancel", &req.base, NULL);
        u->reservation[0] = '\0';
        return;
    }
    Passerelle__ReservationCreateRequest req = PASSERELLE__RESERVATION_CREATE_REQUEST__INIT;
    req.has_mode = true;
    req.mode = PASSERELLE__RESERVATION_MODE__MODE_STOCK;
    req.has_reservataire = true;
    req.reservataire = r % 4 ? PASSERELLE__RESERVATAIRE__RESERVATAIRE_ACTION_LOGEMENT
                             : PASSERELLE__RESERVATAIRE__RESERVATAIRE_STATE;
    req.unit = u->id;
    char end[DATE_LEN];
    snprintf(end, sizeof end, "%04u-12-31", (unsigned)(f->year + 1) % 10000u);
    req.end_date = end;
    Passerelle__Reservation *res = (Passerelle__Reservation *)drive(
        f, "reservation.create", &req.base, &passerelle__reservation__descriptor);
    if (!res)
        return;
    snprintf(u->reservation, ID_LEN, "%s", res->id);
    passerelle__reservation__free_unpacked(res, NULL);
}

static void op_flow(fixture_t *f, unsigned r)
{
    if (f->flow_count > 0 && r % 3 == 0) {
        Passerelle__ReservationStepRequest req = PASSERELLE__RESERVATION_STEP_REQUEST__INIT;
        req.id = f->flows[--f->flow_count];
        drive(f, "reservation.cancel", &req.base, NULL);
        return;
    }
    Passerelle__ReservationCreateRequest req = PASSERELLE__RESERVATION_CREATE_REQUEST__INIT;
    req.has_mode = true;
    req.mode = PASSERELLE__RESERVATION_MODE__MODE_FLOW;
    req.has_reservataire = true;
    req.reservataire = PASSERELLE__RESERVATAIRE__RESERVATAIRE_ACTION_LOGEMENT;
    if (r % 2) {
        req.programme = f->programmes[r % 4 / 2];
    } else {
        req.landlord = "Logirem";
        req.territory = (char *)COMMUNES[r % 7][1];
    }
    req.has_year = true;
    req.year = (uint32_t)f->year;
    req.has_units = true;
    req.units = 1 + r % 5;
    Passerelle__Reservation *res = (Passerelle__Reservation *)drive(
        f, "reservation.create", &req.base, &passerelle__reservation__descriptor);
    if (!res)
        return;
    snprintf(f->flows[f->flow_count++], ID_LEN, "%s", res->id);
    passerelle__reservation__free_unpacked(res, NULL);
}

static void op_objective(fixture_t *f, unsigned r)
{
    Passerelle__ObjectiveSetRequest req = PASSERELLE__OBJECTIVE_SET_REQUEST__INIT;
    req.programme = f->programmes[r % 2];
    req.has_year = true;
    req.year = (uint32_t)f->year + (r >> 2) % 2;
    req.has_units = true;
    req.units = 5 + r % 40;
    drive(f, "objective.set", &req.base, NULL);
}

static void op_proposal(fixture_t *f, unit_t *u, unsigned r)
{
    Passerelle__ProposalRecordRequest req = PASSERELLE__PROPOSAL_RECORD_REQUEST__INIT;
    req.reservation = u->reservation;
    char candidate[32];
    snprintf(candidate, sizeof candidate, "cand-%u", r);
    req.candidate_ref = candidate;
    req.employer_siren = r % 2 ? SIREN_A : SIREN_B;
    req.has_employer_sector = true;
    req.employer_sector = r % 3 ? PASSERELLE__EMPLOYER_SECTOR__SECTOR_PRIVATE_NON_AGRICULTURAL
                                : PASSERELLE__EMPLOYER_SECTOR__SECTOR_AGRICULTURAL;
    req.has_employer_headcount = true;
    req.employer_headcount = 5 + r % 100;
    Passerelle__PriorityPublic publics[] = {PASSERELLE__PRIORITY_PUBLIC__PUBLIC_UNDER_30,
                                            PASSERELLE__PRIORITY_PUBLIC__PUBLIC_DISABILITY};
    req.publics = publics;
    req.n_publics = r % 3;
    Passerelle__Proposal *p = (Passerelle__Proposal *)drive(f, "proposal.record", &req.base,
                                                            &passerelle__proposal__descriptor);
    if (!p)
        return;
    Passerelle__AttributionDecideRequest dec = PASSERELLE__ATTRIBUTION_DECIDE_REQUEST__INIT;
    dec.proposal = p->id;
    dec.has_decision = true;
    dec.decision =
        r % 2 ? PASSERELLE__DECISION__DECISION_REFUSED : PASSERELLE__DECISION__DECISION_WITHDRAWN;
    drive(f, "attribution.decide", &dec.base, NULL);
    passerelle__proposal__free_unpacked(p, NULL);
}

/* One random operation the model believes valid. */
static void operate(fixture_t *f, unsigned r)
{
    unsigned kind = r % 20;
    unit_t *u = f->unit_count ? &f->units[(r >> 5) % f->unit_count] : NULL;
    if (!u || kind < 5 || f->unit_count < 5)
        op_register(f, r >> 3);
    else if (kind < 11 && !u->social && u->convention < 4)
        op_convention(f, u, r >> 7);
    else if (kind < 14 && u->social)
        op_stock(f, u, r >> 7);
    else if (kind < 16)
        op_flow(f, r >> 7);
    else if (kind < 18)
        op_objective(f, r >> 7);
    else if (u->social && u->reservation[0])
        op_proposal(f, u, r >> 7);
    else
        op_register(f, r >> 3);
}

static void create_programmes(fixture_t *f)
{
    harness_pig_programme(f->driver, "PIG Pays d'Aix", "Aix-en-Provence", f->year - 1, f->year + 2,
                          f->programmes[0]);
    harness_pig_programme(f->driver, "PIG Martigues", "Martigues", f->year - 1, f->year + 2,
                          f->programmes[1]);
}

/* ======================== fixture ====================================== */

static int setup(void **state)
{
    /* The indicators service on a port of its own, kept across restarts. */
    char endpoint_env[96];
    snprintf(endpoint_env, sizeof endpoint_env, "PASSERELLE_INDICATORS_ENDPOINT=tcp://127.0.0.1:%d",
             harness_free_port());
    char *env[] = {endpoint_env, NULL};
    if (harness_indicators_setup(state, sizeof(fixture_t), "ind-faults", env) != 0)
        return -1;
    fixture_t *f = *state;
    snprintf(f->endpoint_env, sizeof f->endpoint_env, "%s", endpoint_env);
    f->indicators_env[0] = f->endpoint_env;
    f->indicators_env[1] = NULL;
    f->driver = harness_stack_client(&f->ind.stack, "admin", 3000, 3);
    f->year = date_today_paris().year;
    return f->driver ? 0 : -1;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    if (f)
        client_destroy(&f->driver);
    return harness_indicators_teardown(state);
}

/* ======================== tests ======================================== */

/* The history, with the indicators service killed and restarted in the
 * middle: the counters are what the stream says. */
static void test_history_with_kills(void **state)
{
    fixture_t *f = *state;
    append_backlog(f, BACKLOG);
    create_programmes(f);
    unsigned seed = (unsigned)time_now_ms();
    fprintf(stderr, "driver seed %u\n", seed);
    size_t next_kill = 0;
    int restart_at = -1, killed_mid_stream = 0;
    for (int op = 0; op < OPERATIONS; op++) {
        if (next_kill < sizeof KILL_AT / sizeof KILL_AT[0] && op == KILL_AT[next_kill]) {
            /* Mid-stream: the backlog is still being read. */
            long long backlog = group_backlog(f);
            int status = harness_service_stop(&f->ind.indicators, SIGKILL);
            fprintf(stderr, "killed after %d operations, %lld entries to go\n", op, backlog);
            killed_mid_stream += backlog > 0;
            assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
            restart_at = op + DOWN_OPS;
            next_kill++;
        }
        if (op == restart_at) {
            assert_int_equal(
                harness_service_restart(&f->ind.indicators, f->ind.stack.dir, f->indicators_env),
                0);
            restart_at = -1;
        }
        operate(f, (unsigned)rand_r(&seed));
    }
    if (restart_at >= 0)
        assert_int_equal(
            harness_service_restart(&f->ind.indicators, f->ind.stack.dir, f->indicators_env), 0);
    fprintf(stderr, "driver: %d operations, %d refused, %zu units\n", OPERATIONS, f->refused,
            f->unit_count);
    assert_true(f->refused < OPERATIONS / 10);
    assert_true(killed_mid_stream > 0);

    harness_indicators_wait_caught_up(f->ind.store, STREAM, CATCH_UP_MS);
    json_t *expected = counters_from_stream(f, STREAM);
    json_t *counted =
        harness_indicators_counters(f->ind.store, harness_indicators_generation(f->ind.store));
    assert_true(json_object_size(expected) > 1000);
    harness_indicators_expect_same_counters(expected, counted, "from the stream vs counted");
    json_decref(expected);
    json_decref(counted);
}

/* A rebuild beside the service: a second is refused, the service keeps
 * answering, events keep coming (the projectors count them in the old
 * generation, then, once switched, in the new one, leaving out what the
 * rebuild counted), and in the end the new generation holds what the
 * stream says. */
static void test_rebuild_beside_traffic(void **state)
{
    fixture_t *f = *state;
    harness_indicators_rebuild_call(f->ind.partner, "indicator.rebuild", PERMISSION_DENIED, NULL,
                                    0);

    harness_indicators_wait_caught_up(f->ind.store, STREAM, CATCH_UP_MS);
    uint64_t gen = harness_indicators_generation(f->ind.store);
    Passerelle__RebuildStatus *s =
        harness_indicators_rebuild_call(f->ind.admin, "indicator.rebuild", OK, NULL, 0);
    assert_string_equal(s->state, "running");
    assert_int_equal(s->current_generation, gen);
    assert_true(s->generation > gen);
    uint64_t next = s->generation;
    char holder[128];
    snprintf(holder, sizeof holder, "%s", s->holder);
    passerelle__rebuild_status__free_unpacked(s, NULL);

    /* At once, while it reads the backlog: refused, naming the holder. */
    char message[512];
    harness_indicators_rebuild_call(f->ind.admin, "indicator.rebuild", FAILED_PRECONDITION, message,
                                    sizeof message);
    if (!strstr(message, holder))
        fail_msg("'%s' does not name the holder %s", message, holder);

    /* The service keeps answering (the status, the figures) while writes
     * go on. */
    unsigned seed = (unsigned)time_now_ms() ^ 0x5bd1e995u;
    int running_reads = 0, writes = 0;
    int64_t deadline = time_now_ms() + CATCH_UP_MS;
    for (;;) {
        Passerelle__RebuildStatus *st = harness_indicators_rebuild_call(
            f->ind.partner, "indicator.rebuild_status", OK, NULL, 0);
        bool running = strcmp(st->state, "running") == 0;
        if (running) {
            assert_int_equal(st->current_generation, gen);
        } else {
            assert_string_equal(st->state, "done");
            assert_int_equal(st->current_generation, next);
        }
        passerelle__rebuild_status__free_unpacked(st, NULL);
        Passerelle__SeriesRequest series = PASSERELLE__SERIES_REQUEST__INIT;
        series.indicator = "units.registered";
        series.period_kind = "year";
        Passerelle__Reply *reply =
            harness_call(f->ind.partner, "indicator.series", &series.base, OK, NULL);
        Passerelle__Series *sr =
            passerelle__series__unpack(NULL, reply->body.len, reply->body.data);
        assert_non_null(sr);
        assert_true(sr->generation == gen || sr->generation == next);
        passerelle__series__free_unpacked(sr, NULL);
        passerelle__reply__free_unpacked(reply, NULL);
        if (!running)
            break;
        running_reads++;
        for (int i = 0; i < 3; i++, writes++)
            operate(f, (unsigned)rand_r(&seed));
        assert_true(time_now_ms() < deadline);
    }
    fprintf(stderr, "while the rebuild ran: %d reads answered, %d writes\n", running_reads, writes);
    assert_true(running_reads > 0);
    assert_int_equal(harness_indicators_generation(f->ind.store), next);
    /* And a few more after the switch. */
    for (int i = 0; i < 30; i++)
        operate(f, (unsigned)rand_r(&seed));

    harness_indicators_wait_caught_up(f->ind.store, STREAM, CATCH_UP_MS);
    json_t *after = harness_indicators_counters(f->ind.store, next);
    json_t *expected = counters_from_stream(f, STREAM);
    harness_indicators_expect_same_counters(expected, after,
                                            "from the stream vs rebuilt and counted on");
    json_decref(after);
    json_decref(expected);
}

/* The service stopped (SIGTERM) while a rebuild runs: it exits cleanly,
 * the rebuild is abandoned (its status says so, its lease is free, the
 * figures stay where they were), and the next rebuild removes what it
 * left and makes the counted figures again. (Should the rebuild win the
 * race and switch first, the rest holds as well.) */
static void test_rebuild_stopped(void **state)
{
    fixture_t *f = *state;
    /* A longer stream, so that the rebuild is still reading when the
     * service, having stopped its projectors and its server, stops it. */
    append_backlog(f, STOP_BACKLOG);
    harness_indicators_wait_caught_up(f->ind.store, STREAM, CATCH_UP_MS);
    uint64_t gen = harness_indicators_generation(f->ind.store);
    json_t *before = harness_indicators_counters(f->ind.store, gen);
    Passerelle__RebuildStatus *s =
        harness_indicators_rebuild_call(f->ind.admin, "indicator.rebuild", OK, NULL, 0);
    uint64_t abandoned = s->generation;
    passerelle__rebuild_status__free_unpacked(s, NULL);
    assert_true(harness_service_stop_clean(&f->ind.indicators));

    redisReply *r = NULL;
    assert_int_equal(store_command(f->ind.store, &r, "HGET indicators:rebuild state"), STORE_OK);
    char state_text[32];
    snprintf(state_text, sizeof state_text, "%s", r->str);
    freeReplyObject(r);
    fprintf(stderr, "rebuild stopped by the service's stop: %s\n", state_text);
    if (strcmp(state_text, "done") == 0) {
        /* It was fast enough to finish first. */
        gen = abandoned;
    } else {
        assert_string_equal(state_text, "failed");
        assert_int_equal(store_command(f->ind.store, &r, "HGET indicators:rebuild message"),
                         STORE_OK);
        assert_non_null(strstr(r->str, "stopped"));
        freeReplyObject(r);
    }
    assert_int_equal(harness_indicators_generation(f->ind.store), gen);
    assert_int_equal(store_command(f->ind.store, &r, "EXISTS indicators:rebuild:lease"), STORE_OK);
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);

    assert_int_equal(
        harness_service_restart(&f->ind.indicators, f->ind.stack.dir, f->indicators_env), 0);
    s = harness_indicators_rebuild_call(f->ind.admin, "indicator.rebuild", OK, NULL, 0);
    uint64_t next = s->generation;
    assert_true(next > abandoned);
    passerelle__rebuild_status__free_unpacked(s, NULL);
    s = harness_indicators_rebuild_wait(f->ind.admin, CATCH_UP_MS);
    assert_string_equal(s->state, "done");
    passerelle__rebuild_status__free_unpacked(s, NULL);
    assert_int_equal(harness_indicators_generation(f->ind.store), next);
    char pattern[64];
    snprintf(pattern, sizeof pattern, "indicators:g%" PRIu64 ":*", abandoned);
    harness_store_expect_no_keys(f->ind.store, pattern, CATCH_UP_MS);
    json_t *after = harness_indicators_counters(f->ind.store, next);
    harness_indicators_expect_same_counters(before, after, "counted vs rebuilt after a stop");
    json_decref(after);
    json_decref(before);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_history_with_kills),
        cmocka_unit_test(test_rebuild_beside_traffic),
        cmocka_unit_test(test_rebuild_stopped),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
