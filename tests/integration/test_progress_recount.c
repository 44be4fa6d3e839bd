/* Progress always equals a recount of the reservations.
 *
 * Several threads send a random (seeded) sequence of thousands of writes:
 * programmes, objectives, units with their conventions, STOCK and FLOW
 * reservations for every kind of reservataire, releases and cancellations.
 * A quarter of the writes are sent again at once with the same idempotency
 * key, and some again much later, after other writes (a client retrying
 * after a lost reply): a repeat of an acknowledged write must return the
 * first reply, byte for byte, and change nothing. Meanwhile the service is SIGKILLed twice and
 * restarted; the clients retry on their own (Lazy Pirate).
 *
 * At the end, the test lists every reservation and counts by itself what
 * progress.get must say: Action Logement's reservations that were not
 * cancelled, by year, per programme and per territory, in total, per
 * convention level and per financing. Every row progress.get returns, for
 * all programmes, for each territory and for each programme, in each year
 * used, must equal that recount; every programme with reservations must
 * have its row; every objective the test knows must be the one it set.
 *
 * The seed is printed; PASSERELLE_TEST_SEED replays the same choices
 * (thread interleaving aside). */
#include "harness.h"
#include "ids.h"
#include "reservations.pb-c.h"
#include "status.h"

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
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define THREADS        6
#define OPS_PER_THREAD 1000
#define OPS_TOTAL      (THREADS * OPS_PER_THREAD)
#define YEARS          3 /* last year, this year, next year */
#define MAX_PROGRAMMES 256
#define MAX_UNITS      2048
#define MAX_RESERVED   8192
#define LATE_RETRIES   32 /* writes kept to be sent again later, per thread */
#define MAX_PROBLEMS   64 /* problems kept for the report */
/* Each attempt waits half a second; forty outlast a restart by far. */
#define CLIENT_TIMEOUT_MS 500
#define CLIENT_RETRIES    40

static const char *str_or_empty(const char *s)
{
    return s ? s : "";
}

/* ==========================================================================
 * What the writers share
 * ======================================================================== */

static const struct {
    const char *commune; /* INSEE code */
    const char *territory;
} places[] = {
    {"13207", "CT1"}, {"13001", "CT2"}, {"84089", "CT2"}, {"13103", "CT3"},
    {"13005", "CT4"}, {"13047", "CT5"}, {"13056", "CT6"},
};
#define PLACE_COUNT (sizeof places / sizeof places[0])

static const char *const territories[] = {"CT1", "CT2", "CT3", "CT4", "CT5", "CT6"};
#define TERRITORY_COUNT 6

typedef struct {
    char id[ID_LEN];
    char territory[8];
    Passerelle__ProgrammeKind kind;
    int owner; /* the only thread that sets its objectives */
    /* The objective last set per year and scope (0 whole, 1-3 level,
     * 4-8 financing), -1 when unknown (never set, or no reply). */
    int objective[YEARS][9];
} programme_t;

typedef struct {
    char id[ID_LEN];
} unit_ref_t;

typedef struct {
    pthread_mutex_t lock;
    programme_t programmes[MAX_PROGRAMMES];
    int programme_count;
    unit_ref_t units[MAX_UNITS]; /* reservable: social, or private with a signed convention */
    int unit_count;
    char reservations[MAX_RESERVED][ID_LEN];
    int reservation_count;
    char problems[MAX_PROBLEMS][320];
    int problem_count;
} pool_t;

static pool_t pool = {.lock = PTHREAD_MUTEX_INITIALIZER};
static atomic_int ops_done;
static atomic_int writes_sent, repeats_sent, no_reply_count;
static unsigned base_seed;
static int this_year;
/* STOCK reservations run two years, well within their unit's convention. */
static char stock_end[DATE_LEN];

static void problem(const char *format, ...) __attribute__((format(printf, 1, 2)));

/* Notes something the service got wrong; the test fails on any, after the
 * writers are done (cmocka cannot fail from a thread). */
static void problem(const char *format, ...)
{
    pthread_mutex_lock(&pool.lock);
    if (pool.problem_count < MAX_PROBLEMS) {
        va_list args;
        va_start(args, format);
        vsnprintf(pool.problems[pool.problem_count], sizeof pool.problems[0], format, args);
        va_end(args);
    }
    pool.problem_count++;
    pthread_mutex_unlock(&pool.lock);
}

/* ==========================================================================
 * One writer
 * ======================================================================== */

typedef struct {
    const ProtobufCMessageDescriptor *desc;
    char type[32];
    char key[64];
    uint8_t *packed; /* the request */
    size_t packed_len;
    int status; /* of the first reply */
    uint8_t *body;
    size_t body_len;
} late_t;

typedef struct {
    int thread;
    unsigned seed;
    client_t *client;
    int serial; /* idempotency keys and external references */
    late_t late[LATE_RETRIES];
} writer_t;

static int pick(writer_t *self, int n)
{
    return n > 0 ? (int)(rand_r(&self->seed) % (unsigned)n) : 0;
}

/* Whether a repeat's reply is right. A write that committed answers every
 * repeat of its key with its first reply, byte for byte. A refusal commits
 * nothing and is not kept, so a repeat runs again on the state of the
 * moment and may meet another answer (the unit released meanwhile): it
 * must only be one this write may meet. */
static bool repeat_right(int status, const uint8_t *body, size_t body_len,
                         const Passerelle__Reply *reply)
{
    if (status != PASSERELLE__STATUS__STATUS_OK)
        return reply->status == PASSERELLE__STATUS__STATUS_OK ||
               reply->status == PASSERELLE__STATUS__STATUS_CONFLICT ||
               reply->status == PASSERELLE__STATUS__STATUS_FAILED_PRECONDITION;
    size_t len = reply->has_body ? reply->body.len : 0;
    return (int)reply->status == status && len == body_len &&
           (len == 0 || memcmp(reply->body.data, body, len) == 0);
}

static void late_clear(late_t *late)
{
    free(late->packed);
    free(late->body);
    memset(late, 0, sizeof *late);
}

/* Sends a late retry of an earlier write: the first reply, unchanged. */
static void late_retry(writer_t *self, late_t *late)
{
    ProtobufCMessage *request =
        protobuf_c_message_unpack(late->desc, NULL, late->packed_len, late->packed);
    if (!request) {
        problem("cannot unpack a kept %s request", late->type);
        return;
    }
    Passerelle__Reply *reply = NULL;
    atomic_fetch_add(&repeats_sent, 1);
    if (client_call(self->client, late->type, request, late->key, &reply) != 0) {
        atomic_fetch_add(&no_reply_count, 1);
    } else {
        if (!repeat_right(late->status, late->body, late->body_len, reply))
            problem("late retry of %s (key %s): %s '%s', first answered %s", late->type, late->key,
                    status_name((int)reply->status), str_or_empty(reply->message),
                    status_name(late->status));
        passerelle__reply__free_unpacked(reply, NULL);
    }
    protobuf_c_message_free_unpacked(request, NULL);
}

/* One write with its own idempotency key, sent again at once now and then,
 * and kept for a late retry now and then. Returns the first reply (caller
 * frees), or NULL if none came after every attempt. */
static Passerelle__Reply *write_call(writer_t *self, const char *type,
                                     const ProtobufCMessage *request)
{
    char key[64];
    snprintf(key, sizeof key, "recount-%u-%d-%d", base_seed, self->thread, self->serial++);
    Passerelle__Reply *reply = NULL;
    atomic_fetch_add(&writes_sent, 1);
    if (client_call(self->client, type, request, key, &reply) != 0) {
        atomic_fetch_add(&no_reply_count, 1);
        return NULL;
    }
    size_t body_len = reply->has_body ? reply->body.len : 0;
    int repeats = pick(self, 4) == 0 ? 1 + pick(self, 2) : 0;
    for (int i = 0; i < repeats; i++) {
        Passerelle__Reply *again = NULL;
        atomic_fetch_add(&repeats_sent, 1);
        if (client_call(self->client, type, request, key, &again) != 0) {
            atomic_fetch_add(&no_reply_count, 1);
            continue;
        }
        if (!repeat_right((int)reply->status, reply->body.data, body_len, again))
            problem("%s repeated with key %s: %s '%s', first answered %s '%s'", type, key,
                    status_name((int)again->status), str_or_empty(again->message),
                    status_name((int)reply->status), str_or_empty(reply->message));
        passerelle__reply__free_unpacked(again, NULL);
    }
    if (pick(self, 10) == 0) {
        late_t *late = &self->late[pick(self, LATE_RETRIES)];
        if (late->packed)
            late_retry(self, late);
        late_clear(late);
        late->desc = request->descriptor;
        snprintf(late->type, sizeof late->type, "%s", type);
        snprintf(late->key, sizeof late->key, "%s", key);
        late->packed_len = protobuf_c_message_get_packed_size(request);
        late->packed = malloc(late->packed_len ? late->packed_len : 1);
        protobuf_c_message_pack(request, late->packed);
        late->status = (int)reply->status;
        late->body_len = body_len;
        late->body = malloc(body_len ? body_len : 1);
        if (body_len)
            memcpy(late->body, reply->body.data, body_len);
    }
    return reply;
}

/* The reply's status must be OK or one of the refusals this write may meet
 * in a random sequence (up to two, 0 for none); anything else is noted. */
static bool expect(const char *type, const Passerelle__Reply *reply, int allowed1, int allowed2)
{
    if (!reply)
        return false;
    int status = (int)reply->status;
    if (status == PASSERELLE__STATUS__STATUS_OK)
        return true;
    if ((allowed1 && status == allowed1) || (allowed2 && status == allowed2))
        return false;
    problem("%s: %s '%s' (field %s)", type, status_name(status), str_or_empty(reply->message),
            str_or_empty(reply->field));
    return false;
}

/* The id of the record in an OK reply of this type, into id. */
static bool reply_id(const Passerelle__Reply *reply, const ProtobufCMessageDescriptor *desc,
                     char id[ID_LEN])
{
    ProtobufCMessage *msg =
        protobuf_c_message_unpack(desc, NULL, reply->body.len, reply->body.data);
    if (!msg)
        return false;
    const ProtobufCFieldDescriptor *field =
        protobuf_c_message_descriptor_get_field_by_name(desc, "id");
    const char *value = *(const char *const *)((const char *)msg + field->offset);
    snprintf(id, ID_LEN, "%s", str_or_empty(value));
    protobuf_c_message_free_unpacked(msg, NULL);
    return id[0] != '\0';
}

static const Passerelle__ProgrammeKind kinds[] = {
    PASSERELLE__PROGRAMME_KIND__PROGRAMME_PIG,
    PASSERELLE__PROGRAMME_KIND__PROGRAMME_OPAH,
    PASSERELLE__PROGRAMME_KIND__PROGRAMME_OPAH_RU,
    PASSERELLE__PROGRAMME_KIND__PROGRAMME_NPNRU,
    PASSERELLE__PROGRAMME_KIND__PROGRAMME_SOCIAL_HOUSING,
};

static bool kind_private(Passerelle__ProgrammeKind kind)
{
    return kind != PASSERELLE__PROGRAMME_KIND__PROGRAMME_SOCIAL_HOUSING;
}

static bool kind_social(Passerelle__ProgrammeKind kind)
{
    return kind == PASSERELLE__PROGRAMME_KIND__PROGRAMME_SOCIAL_HOUSING ||
           kind == PASSERELLE__PROGRAMME_KIND__PROGRAMME_NPNRU;
}

static void op_programme_create(writer_t *self)
{
    Passerelle__ProgrammeCreateRequest req = PASSERELLE__PROGRAMME_CREATE_REQUEST__INIT;
    char name[64], start[24], end[24];
    snprintf(name, sizeof name, "Recount programme %d-%d", self->thread, self->serial);
    snprintf(start, sizeof start, "%d-01-01", this_year - 1);
    snprintf(end, sizeof end, "%d-12-31", this_year + 2);
    Passerelle__ProgrammeKind kind = kinds[pick(self, (int)(sizeof kinds / sizeof kinds[0]))];
    req.name = name;
    req.has_kind = true;
    req.kind = kind;
    req.territory = (char *)territories[pick(self, TERRITORY_COUNT)];
    req.start_date = start;
    req.end_date = end;
    req.operator_ = "Operator of the recount";
    Passerelle__NpnruCounterparts npnru = PASSERELLE__NPNRU_COUNTERPARTS__INIT;
    if (kind == PASSERELLE__PROGRAMME_KIND__PROGRAMME_NPNRU) {
        npnru.has_rights_in_qpv = npnru.has_rights_outside_qpv = true;
        npnru.rights_in_qpv = 40;
        npnru.rights_outside_qpv = 20;
        req.npnru = &npnru;
    }
    Passerelle__Reply *reply = write_call(self, "programme.create", &req.base);
    char id[ID_LEN];
    if (expect("programme.create", reply, 0, 0) &&
        reply_id(reply, &passerelle__programme__descriptor, id)) {
        pthread_mutex_lock(&pool.lock);
        if (pool.programme_count < MAX_PROGRAMMES) {
            programme_t *prog = &pool.programmes[pool.programme_count++];
            snprintf(prog->id, sizeof prog->id, "%s", id);
            snprintf(prog->territory, sizeof prog->territory, "%s", req.territory);
            prog->kind = kind;
            prog->owner = self->thread;
            memset(prog->objective, 0xff, sizeof prog->objective); /* -1: unknown */
        }
        pthread_mutex_unlock(&pool.lock);
    }
    if (reply)
        passerelle__reply__free_unpacked(reply, NULL);
}

/* A random programme (a copy), or false if there is none yet. */
static bool random_programme(writer_t *self, programme_t *out, int *index)
{
    pthread_mutex_lock(&pool.lock);
    bool found = pool.programme_count > 0;
    if (found) {
        *index = pick(self, pool.programme_count);
        *out = pool.programmes[*index];
    }
    pthread_mutex_unlock(&pool.lock);
    return found;
}

static void op_objective_set(writer_t *self)
{
    /* Only the programme's owner sets its objectives, so the last value
     * this thread saw acknowledged is the one in force. */
    programme_t prog;
    int index = -1;
    bool found = false;
    for (int tries = 0; tries < 8 && !found; tries++)
        found = random_programme(self, &prog, &index) && prog.owner == self->thread;
    if (!found) {
        op_programme_create(self);
        return;
    }
    Passerelle__ObjectiveSetRequest req = PASSERELLE__OBJECTIVE_SET_REQUEST__INIT;
    int year = pick(self, YEARS);
    int scope = pick(self, 5) < 3 ? 0 : 1 + pick(self, 8);
    req.programme = prog.id;
    req.has_year = true;
    req.year = (uint32_t)(this_year - 1 + year);
    if (scope >= 1 && scope <= 3) {
        req.has_level = true;
        req.level = (Passerelle__ConventionLevel)scope;
    } else if (scope >= 4) {
        req.has_financing = true;
        req.financing = (Passerelle__Financing)(scope - 3);
    }
    req.has_units = true;
    req.units = (uint32_t)(1 + pick(self, 30));
    Passerelle__Reply *reply = write_call(self, "objective.set", &req.base);
    bool ok = expect("objective.set", reply, 0, 0);
    pthread_mutex_lock(&pool.lock);
    pool.programmes[index].objective[year][scope] = ok ? (int)req.units : -1;
    pthread_mutex_unlock(&pool.lock);
    if (reply)
        passerelle__reply__free_unpacked(reply, NULL);
}

static const char *place_in(writer_t *self, const char *territory)
{
    int candidates[PLACE_COUNT], n = 0;
    for (size_t i = 0; i < PLACE_COUNT; i++)
        if (strcmp(places[i].territory, territory) == 0)
            candidates[n++] = (int)i;
    return places[candidates[pick(self, n)]].commune;
}

/* A unit, in a programme or not, private with a convention envisaged and
 * signed, or social with a financing: then reservable. */
static void op_unit_register(writer_t *self)
{
    programme_t prog;
    int index;
    bool in_programme = pick(self, 10) < 7 && random_programme(self, &prog, &index);
    bool private_stock = pick(self, 2) == 0;
    if (in_programme && private_stock && !kind_private(prog.kind))
        private_stock = false;
    if (in_programme && !private_stock && !kind_social(prog.kind))
        private_stock = true;

    char ref[64], landlord[32];
    snprintf(ref, sizeof ref, "REC-%u-%d-%d", base_seed, self->thread, self->serial);
    Passerelle__UnitRegisterRequest req;
    harness_unit_request(&req, ref);
    req.commune = (char *)(in_programme ? place_in(self, prog.territory)
                                        : places[pick(self, (int)PLACE_COUNT)].commune);
    if (in_programme)
        req.programme_id = prog.id;
    req.has_in_qpv = true;
    req.in_qpv = pick(self, 3) == 0;
    if (!private_stock) {
        req.stock = PASSERELLE__STOCK__STOCK_SOCIAL;
        req.has_financing = true;
        req.financing = (Passerelle__Financing)(1 + pick(self, 5));
        snprintf(landlord, sizeof landlord, "LANDLORD-%d", pick(self, 4));
        req.landlord = landlord;
    }
    Passerelle__Reply *reply = write_call(self, "unit.register", &req.base);
    char unit_id[ID_LEN];
    bool ok = expect("unit.register", reply, 0, 0) &&
              reply_id(reply, &passerelle__unit__descriptor, unit_id);
    if (reply)
        passerelle__reply__free_unpacked(reply, NULL);
    if (!ok)
        return;

    if (private_stock) {
        Passerelle__ConventionEnvisageRequest envisage =
            PASSERELLE__CONVENTION_ENVISAGE_REQUEST__INIT;
        envisage.unit = unit_id;
        envisage.has_level = true;
        envisage.level = (Passerelle__ConventionLevel)(1 + pick(self, 3));
        envisage.has_rent_ceiling_eur_m2 = true;
        envisage.rent_ceiling_eur_m2 = 9.5;
        reply = write_call(self, "convention.envisage", &envisage.base);
        ok = expect("convention.envisage", reply, 0, 0);
        if (reply)
            passerelle__reply__free_unpacked(reply, NULL);
        if (!ok)
            return;
        Passerelle__ConventionStepRequest sign = PASSERELLE__CONVENTION_STEP_REQUEST__INIT;
        sign.unit = unit_id;
        reply = write_call(self, "convention.sign", &sign.base);
        ok = expect("convention.sign", reply, 0, 0);
        if (reply)
            passerelle__reply__free_unpacked(reply, NULL);
        if (!ok)
            return;
    }
    pthread_mutex_lock(&pool.lock);
    if (pool.unit_count < MAX_UNITS)
        snprintf(pool.units[pool.unit_count++].id, ID_LEN, "%s", unit_id);
    pthread_mutex_unlock(&pool.lock);
}

/* Action Logement most of the time, so that most reservations count. */
static Passerelle__Reservataire random_reservataire(writer_t *self)
{
    if (pick(self, 10) < 6)
        return PASSERELLE__RESERVATAIRE__RESERVATAIRE_ACTION_LOGEMENT;
    return (Passerelle__Reservataire)(2 + pick(self, 4));
}

static void reservation_created(const Passerelle__Reply *reply)
{
    char id[ID_LEN];
    if (!reply_id(reply, &passerelle__reservation__descriptor, id))
        return;
    pthread_mutex_lock(&pool.lock);
    if (pool.reservation_count < MAX_RESERVED)
        snprintf(pool.reservations[pool.reservation_count++], ID_LEN, "%s", id);
    pthread_mutex_unlock(&pool.lock);
}

static void op_reserve_stock(writer_t *self)
{
    char unit_id[ID_LEN];
    pthread_mutex_lock(&pool.lock);
    int count = pool.unit_count;
    if (count)
        snprintf(unit_id, sizeof unit_id, "%s", pool.units[pick(self, count)].id);
    pthread_mutex_unlock(&pool.lock);
    if (!count) {
        op_unit_register(self);
        return;
    }
    Passerelle__ReservationCreateRequest req = PASSERELLE__RESERVATION_CREATE_REQUEST__INIT;
    Passerelle__PriorityPublic publics[2];
    req.has_mode = true;
    req.mode = PASSERELLE__RESERVATION_MODE__MODE_STOCK;
    /* Unset now and then: ACTION_LOGEMENT by default. */
    req.reservataire = random_reservataire(self);
    req.has_reservataire =
        req.reservataire != PASSERELLE__RESERVATAIRE__RESERVATAIRE_ACTION_LOGEMENT ||
        pick(self, 2) == 0;
    req.unit = unit_id;
    req.end_date = stock_end;
    /* None, one, or two different publics. */
    req.n_target_publics = (size_t)pick(self, 3);
    publics[0] = (Passerelle__PriorityPublic)(1 + pick(self, 6));
    publics[1] = (Passerelle__PriorityPublic)(1 + (publics[0] % 6));
    req.target_publics = publics;
    Passerelle__Reply *reply = write_call(self, "reservation.create", &req.base);
    /* Another thread may hold the unit: the one active reservation. */
    if (expect("reservation.create stock", reply, PASSERELLE__STATUS__STATUS_CONFLICT, 0))
        reservation_created(reply);
    if (reply)
        passerelle__reply__free_unpacked(reply, NULL);
}

static void op_reserve_flow(writer_t *self)
{
    Passerelle__ReservationCreateRequest req = PASSERELLE__RESERVATION_CREATE_REQUEST__INIT;
    programme_t prog;
    int index;
    char landlord[32];
    req.has_mode = true;
    req.mode = PASSERELLE__RESERVATION_MODE__MODE_FLOW;
    req.has_reservataire = true;
    req.reservataire = random_reservataire(self);
    if (pick(self, 4) > 0 && random_programme(self, &prog, &index)) {
        req.programme = prog.id;
    } else {
        snprintf(landlord, sizeof landlord, "LANDLORD-%d", pick(self, 4));
        req.landlord = landlord;
        req.territory = (char *)territories[pick(self, TERRITORY_COUNT)];
    }
    req.has_year = true;
    req.year = (uint32_t)(this_year - 1 + pick(self, YEARS));
    req.has_units = true;
    req.units = (uint32_t)(1 + pick(self, 5));
    Passerelle__Reply *reply = write_call(self, "reservation.create", &req.base);
    if (expect("reservation.create flow", reply, 0, 0))
        reservation_created(reply);
    if (reply)
        passerelle__reply__free_unpacked(reply, NULL);
}

/* Release or cancel a random reservation; one already ended is refused. */
static void op_reservation_end(writer_t *self, const char *type)
{
    char id[ID_LEN];
    pthread_mutex_lock(&pool.lock);
    int count = pool.reservation_count;
    if (count)
        snprintf(id, sizeof id, "%s", pool.reservations[pick(self, count)]);
    pthread_mutex_unlock(&pool.lock);
    if (!count)
        return;
    Passerelle__ReservationStepRequest req = PASSERELLE__RESERVATION_STEP_REQUEST__INIT;
    req.id = id;
    Passerelle__Reply *reply = write_call(self, type, &req.base);
    expect(type, reply, PASSERELLE__STATUS__STATUS_FAILED_PRECONDITION, 0);
    if (reply)
        passerelle__reply__free_unpacked(reply, NULL);
}

static void *writer_run(void *arg)
{
    writer_t *self = arg;
    op_programme_create(self);
    for (int i = 0; i < OPS_PER_THREAD; i++) {
        int roll = pick(self, 100);
        if (roll < 3)
            op_programme_create(self);
        else if (roll < 10)
            op_objective_set(self);
        else if (roll < 25)
            op_unit_register(self);
        else if (roll < 55)
            op_reserve_stock(self);
        else if (roll < 75)
            op_reserve_flow(self);
        else if (roll < 88)
            op_reservation_end(self, "reservation.release");
        else
            op_reservation_end(self, "reservation.cancel");
        atomic_fetch_add(&ops_done, 1);
    }
    /* The writes kept for a late retry get it now, after everything. */
    for (int i = 0; i < LATE_RETRIES; i++) {
        if (self->late[i].packed)
            late_retry(self, &self->late[i]);
        late_clear(&self->late[i]);
    }
    return NULL;
}

/* ==========================================================================
 * The recount
 * ======================================================================== */

typedef struct {
    char programme[ID_LEN]; /* "" for a territory row */
    char territory[8];      /* "" for a programme row */
    uint32_t year;
    int level;
    int financing;
    uint64_t achieved;
} tally_t;

typedef struct {
    tally_t *items;
    size_t count, capacity;
} tallies_t;

static tally_t *tally_find(tallies_t *tallies, const char *programme, const char *territory,
                           uint32_t year, int level, int financing, bool create)
{
    for (size_t i = 0; i < tallies->count; i++) {
        tally_t *t = &tallies->items[i];
        if (t->year == year && t->level == level && t->financing == financing &&
            strcmp(t->programme, programme) == 0 && strcmp(t->territory, territory) == 0)
            return t;
    }
    if (!create)
        return NULL;
    if (tallies->count == tallies->capacity) {
        tallies->capacity = tallies->capacity ? tallies->capacity * 2 : 256;
        tallies->items = realloc(tallies->items, tallies->capacity * sizeof *tallies->items);
        assert_non_null(tallies->items);
    }
    tally_t *t = &tallies->items[tallies->count++];
    memset(t, 0, sizeof *t);
    snprintf(t->programme, sizeof t->programme, "%s", programme);
    snprintf(t->territory, sizeof t->territory, "%s", territory);
    t->year = year;
    t->level = level;
    t->financing = financing;
    return t;
}

/* The counters one reservation moves: per programme (if it has one) and
 * per territory, in total, for its level and for its financing. */
static void tally_add(tallies_t *tallies, const Passerelle__Reservation *res)
{
    const char *programme = str_or_empty(res->programme_id);
    const char *territory = str_or_empty(res->territory);
    int level = res->has_level ? (int)res->level : 0;
    int financing = res->has_financing ? (int)res->financing : 0;
    for (int side = 0; side < 2; side++) {
        const char *p = side == 0 ? programme : "";
        const char *t = side == 0 ? "" : territory;
        if (side == 0 && !*programme)
            continue;
        tally_find(tallies, p, t, res->year, 0, 0, true)->achieved += res->units;
        if (level)
            tally_find(tallies, p, t, res->year, level, 0, true)->achieved += res->units;
        if (financing)
            tally_find(tallies, p, t, res->year, 0, financing, true)->achieved += res->units;
    }
}

typedef struct {
    harness_stack_t stack;
} fixture_t;

static Passerelle__Reply *call_ok(client_t *client, const char *type, const ProtobufCMessage *req)
{
    return harness_call(client, type, req, PASSERELLE__STATUS__STATUS_OK, NULL);
}

/* Lists every reservation, page by page, into the recount; checks that no
 * unit has two active STOCK reservations. Returns how many were listed. */
static size_t recount(client_t *client, tallies_t *tallies, size_t *counted)
{
    Passerelle__ReservationListRequest req = PASSERELLE__RESERVATION_LIST_REQUEST__INIT;
    req.has_page_size = true;
    req.page_size = 500;
    char token[512] = "";
    size_t listed = 0;
    char(*active_units)[ID_LEN] = calloc(MAX_RESERVED, ID_LEN);
    size_t active_count = 0;
    assert_non_null(active_units);
    for (int page = 0; page < 1000; page++) {
        req.page_token = token[0] ? token : NULL;
        Passerelle__Reply *reply = call_ok(client, "reservation.list", &req.base);
        Passerelle__ReservationList *list =
            passerelle__reservation_list__unpack(NULL, reply->body.len, reply->body.data);
        assert_non_null(list);
        for (size_t i = 0; i < list->n_reservations; i++) {
            const Passerelle__Reservation *res = list->reservations[i];
            listed++;
            if (res->mode == PASSERELLE__RESERVATION_MODE__MODE_STOCK &&
                res->state == PASSERELLE__RESERVATION_STATE__RESERVATION_ACTIVE) {
                for (size_t k = 0; k < active_count; k++)
                    if (strcmp(active_units[k], str_or_empty(res->unit_id)) == 0)
                        fail_msg("unit %s has two active STOCK reservations", res->unit_id);
                if (active_count < MAX_RESERVED)
                    snprintf(active_units[active_count++], ID_LEN, "%s",
                             str_or_empty(res->unit_id));
            }
            bool counts =
                res->reservataire == PASSERELLE__RESERVATAIRE__RESERVATAIRE_ACTION_LOGEMENT &&
                res->state != PASSERELLE__RESERVATION_STATE__RESERVATION_CANCELLED;
            if (counts) {
                tally_add(tallies, res);
                (*counted)++;
            }
        }
        snprintf(token, sizeof token, "%s", str_or_empty(list->next_page_token));
        passerelle__reservation_list__free_unpacked(list, NULL);
        passerelle__reply__free_unpacked(reply, NULL);
        if (!token[0])
            break;
    }
    assert_true(token[0] == '\0');
    free(active_units);
    return listed;
}

/* Compares every row of one progress.get with the recount; marks the
 * tallies seen. Returns the number of mismatches (printed). */
static int progress_compare(client_t *client, const Passerelle__ProgressRequest *req,
                            tallies_t *tallies, bool *seen, int *rows_total)
{
    Passerelle__Reply *reply = call_ok(client, "progress.get", &req->base);
    Passerelle__Progress *progress =
        passerelle__progress__unpack(NULL, reply->body.len, reply->body.data);
    assert_non_null(progress);
    int mismatches = 0;
    for (size_t i = 0; i < progress->n_rows; i++) {
        const Passerelle__ProgressRow *row = progress->rows[i];
        const char *programme = str_or_empty(row->programme_id);
        int level = row->has_level ? (int)row->level : 0;
        int financing = row->has_financing ? (int)row->financing : 0;
        tally_t *t = tally_find(tallies, programme, *programme ? "" : str_or_empty(row->territory),
                                row->year, level, financing, false);
        uint64_t expected = t ? t->achieved : 0;
        (*rows_total)++;
        if (t)
            seen[t - tallies->items] = true;
        if (row->year != req->year) {
            fprintf(stderr, "row for year %u in the answer for %u\n", row->year, req->year);
            mismatches++;
        }
        if (row->achieved != expected) {
            fprintf(stderr,
                    "progress %s%s %u level %d financing %d: achieved %u, the reservations "
                    "say %llu\n",
                    programme, *programme ? "" : str_or_empty(row->territory), row->year, level,
                    financing, row->achieved, (unsigned long long)expected);
            mismatches++;
        }
    }
    passerelle__progress__free_unpacked(progress, NULL);
    passerelle__reply__free_unpacked(reply, NULL);
    return mismatches;
}

/* An objective the test knows must be in the programme's row of its year
 * and scope. Returns the number of mismatches. */
static int objectives_compare(client_t *client, const programme_t *prog, int year_index)
{
    Passerelle__ProgressRequest req = PASSERELLE__PROGRESS_REQUEST__INIT;
    req.programme = (char *)prog->id;
    req.has_year = true;
    req.year = (uint32_t)(this_year - 1 + year_index);
    Passerelle__Reply *reply = call_ok(client, "progress.get", &req.base);
    Passerelle__Progress *progress =
        passerelle__progress__unpack(NULL, reply->body.len, reply->body.data);
    assert_non_null(progress);
    int mismatches = 0;
    for (int scope = 0; scope < 9; scope++) {
        int wanted = prog->objective[year_index][scope];
        if (wanted < 0)
            continue;
        bool found = false;
        for (size_t i = 0; i < progress->n_rows && !found; i++) {
            const Passerelle__ProgressRow *row = progress->rows[i];
            int level = row->has_level ? (int)row->level : 0;
            int financing = row->has_financing ? (int)row->financing : 0;
            int row_scope = level ? level : financing ? 3 + financing : 0;
            if (strcmp(str_or_empty(row->programme_id), prog->id) != 0 || row_scope != scope)
                continue;
            found = true;
            if ((int)row->objective != wanted) {
                fprintf(stderr, "objective of %s %u scope %d: %u, set to %d\n", prog->id, req.year,
                        scope, row->objective, wanted);
                mismatches++;
            }
        }
        if (!found) {
            fprintf(stderr, "objective of %s %u scope %d (%d units) has no row\n", prog->id,
                    req.year, scope, wanted);
            mismatches++;
        }
    }
    passerelle__progress__free_unpacked(progress, NULL);
    passerelle__reply__free_unpacked(reply, NULL);
    return mismatches;
}

static int kill_and_restart(harness_stack_t *stack)
{
    int status = harness_service_stop(&stack->service, SIGKILL);
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
        return -1;
    return harness_stack_restart(stack);
}

static void wait_for_ops(int target)
{
    /* Bounded: if the writers stall, the kill still happens and the
     * checks say what went wrong. */
    for (int waited_ms = 0; waited_ms < 60000 && atomic_load(&ops_done) < target; waited_ms += 2)
        usleep(2000);
}

static void test_progress_equals_recount(void **state)
{
    fixture_t *fx = *state;
    harness_stack_t *stack = &fx->stack;

    writer_t *writers = calloc(THREADS, sizeof *writers);
    assert_non_null(writers);
    pthread_t threads[THREADS];
    for (int t = 0; t < THREADS; t++) {
        writers[t].thread = t;
        writers[t].seed = base_seed * 7919u + (unsigned)t;
        writers[t].client = harness_stack_client(stack, "admin", CLIENT_TIMEOUT_MS, CLIENT_RETRIES);
        assert_non_null(writers[t].client);
    }
    for (int t = 0; t < THREADS; t++)
        assert_int_equal(pthread_create(&threads[t], NULL, writer_run, &writers[t]), 0);

    /* Two crashes, in the middle of the writes. */
    int killed_at[2];
    const int fractions[2] = {35, 70};
    for (int k = 0; k < 2; k++) {
        wait_for_ops(OPS_TOTAL * fractions[k] / 100);
        killed_at[k] = atomic_load(&ops_done);
        int rc = kill_and_restart(stack);
        if (rc != 0) {
            for (int t = 0; t < THREADS; t++)
                pthread_join(threads[t], NULL);
            fail_msg("the service did not restart after SIGKILL (log in %s)", stack->dir);
        }
    }
    for (int t = 0; t < THREADS; t++) {
        pthread_join(threads[t], NULL);
        client_destroy(&writers[t].client);
    }
    free(writers);
    fprintf(stderr,
            "%d operations, %d writes, %d repeats with the same key, %d without reply; "
            "SIGKILL after %d and %d operations\n",
            OPS_TOTAL, atomic_load(&writes_sent), atomic_load(&repeats_sent),
            atomic_load(&no_reply_count), killed_at[0], killed_at[1]);
    /* The crashes fell in the middle, or nothing was tested. */
    assert_true(killed_at[1] < OPS_TOTAL);

    for (int i = 0; i < pool.problem_count && i < MAX_PROBLEMS; i++)
        fprintf(stderr, "problem: %s\n", pool.problems[i]);
    if (pool.problem_count)
        fail_msg("%d unexpected answers (seed %u)", pool.problem_count, base_seed);

    tallies_t tallies = {0};
    size_t counted = 0;
    size_t listed = recount(stack->client, &tallies, &counted);
    fprintf(stderr, "%zu reservations listed, %zu counting for Action Logement, %zu counters\n",
            listed, counted, tallies.count);
    assert_true(counted > 0);
    assert_true(listed > counted); /* other reservataires and cancellations exist too */

    bool *seen = calloc(tallies.count + 1, sizeof *seen);
    assert_non_null(seen);
    int mismatches = 0, rows = 0;
    for (int y = 0; y < YEARS; y++) {
        Passerelle__ProgressRequest req = PASSERELLE__PROGRESS_REQUEST__INIT;
        req.has_year = true;
        req.year = (uint32_t)(this_year - 1 + y);
        mismatches += progress_compare(stack->client, &req, &tallies, seen, &rows);
        for (int t = 0; t < TERRITORY_COUNT; t++) {
            req.territory = (char *)territories[t];
            mismatches += progress_compare(stack->client, &req, &tallies, seen, &rows);
        }
        req.territory = NULL;
        for (int p = 0; p < pool.programme_count; p++) {
            req.programme = pool.programmes[p].id;
            mismatches += progress_compare(stack->client, &req, &tallies, seen, &rows);
            mismatches += objectives_compare(stack->client, &pool.programmes[p], y);
        }
        req.programme = NULL;
    }
    /* Every programme with reservations has its total row; so has every
     * territory. */
    for (size_t i = 0; i < tallies.count; i++) {
        const tally_t *t = &tallies.items[i];
        if (seen[i] || t->level || t->financing || t->achieved == 0)
            continue;
        fprintf(stderr, "no progress row for %s%s %u, which has %llu reserved\n", t->programme,
                t->territory, t->year, (unsigned long long)t->achieved);
        mismatches++;
    }
    fprintf(stderr, "%d progress rows compared, %d mismatches (seed %u)\n", rows, mismatches,
            base_seed);
    free(seen);
    free(tallies.items);
    assert_int_equal(mismatches, 0);
    assert_true(rows > 0);
}

/* ==========================================================================
 * Setup
 * ======================================================================== */

static int setup(void **state)
{
    static fixture_t fx;
    memset(&fx, 0, sizeof fx);
    const char *seed = getenv("PASSERELLE_TEST_SEED");
    base_seed = seed && *seed ? (unsigned)strtoul(seed, NULL, 10)
                              : (unsigned)time(NULL) ^ (unsigned)getpid();
    fprintf(stderr, "seed %u (PASSERELLE_TEST_SEED=%u replays it)\n", base_seed, base_seed);
    date_t today = date_today_paris();
    this_year = today.year;
    date_format(date_add_years(today, 2), stock_end);
    *state = &fx;
    return harness_stack_start(&fx.stack, "recount", "admin", NULL);
}

static int teardown(void **state)
{
    return harness_stack_teardown(state);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_progress_equals_recount),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
