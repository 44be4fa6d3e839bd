/* Programmes (PIG, OPAH, OPAH-RU, NPNRU, social housing and social
 * ownership operations), Action Logement's objectives in them, and the
 * progress of reservations against those objectives.
 *
 * The handlers follow handlers.c: validate (programme_rules.c), read,
 * decide, build the reply, commit one transaction with its one event.
 *
 * Keys: see records.h.
 * Events: programme.created (subject programmes/<id>, data Programme),
 * programme.unit_attached (units/<unit id>, Unit), objective.set
 * (programmes/<id>, Objective). */
#include "programmes.h"

#include "programme_rules.h"
#include "progress.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void programme_subject(const char *programme_id, char out[KEY_MAX])
{
    snprintf(out, KEY_MAX, "programmes/%s", programme_id);
}

/* A hash field read as a count (0 when absent). */
static bool store_hash_count(store_t *store, const char *key, const char *field, uint32_t *out,
                             reply_t *reply)
{
    redisReply *r = NULL;
    store_result_t result = store_command(store, &r, "HGET %s %s", key, field);
    if (result != STORE_OK || (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_NIL)) {
        if (r)
            freeReplyObject(r);
        reply_store_failure(reply, store, result == STORE_OK ? STORE_REFUSED : result);
        return false;
    }
    long long value = r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10) : 0;
    *out = value > 0 ? (uint32_t)value : 0;
    freeReplyObject(r);
    return true;
}

/* Fills what replies show but records don't keep: the units attached (the
 * index's size) and, for an NPNRU, the rights used (progress counters). An
 * NPNRU without its counterparts gets `spare`, which the caller detaches
 * before freeing prog. */
static bool programme_fill(store_t *store, Passerelle__Programme *prog,
                           Passerelle__NpnruCounterparts *spare, reply_t *reply)
{
    char key[PROGRAMME_INDEX_KEY_MAX], field[PROGRESS_FIELD_MAX];
    long long units = 0;
    programme_units_key(prog->id, key);
    if (!records_count(store, key, &units, reply))
        return false;
    prog->has_units_attached = true;
    prog->units_attached = (uint32_t)units;
    if (prog->kind != PASSERELLE__PROGRAMME_KIND__PROGRAMME_NPNRU)
        return true;
    if (!prog->npnru)
        prog->npnru = spare;
    Passerelle__NpnruCounterparts *npnru = prog->npnru;
    snprintf(field, sizeof field, "programme:%s:in_qpv", prog->id);
    if (!store_hash_count(store, PROGRESS_RIGHTS_KEY, field, &npnru->used_in_qpv, reply))
        return false;
    snprintf(field, sizeof field, "programme:%s:outside_qpv", prog->id);
    if (!store_hash_count(store, PROGRESS_RIGHTS_KEY, field, &npnru->used_outside_qpv, reply))
        return false;
    npnru->has_used_in_qpv = true;
    npnru->has_used_outside_qpv = true;
    return true;
}

static void programme_free(Passerelle__Programme *prog, const Passerelle__NpnruCounterparts *spare)
{
    if (!prog)
        return;
    if (prog->npnru == spare)
        prog->npnru = NULL;
    protobuf_c_message_free_unpacked(&prog->base, NULL);
}

/* ====================================================================== */
/* programme.create                                                       */
/* ====================================================================== */

void handle_programme_create(void *ctx, const call_t *call, const ProtobufCMessage *request,
                             reply_t *reply)
{
    reservations_t *self = ctx;
    const Passerelle__ProgrammeCreateRequest *req =
        (const Passerelle__ProgrammeCreateRequest *)request;
    Passerelle__Programme prog = PASSERELLE__PROGRAMME__INIT;
    programme_scratch_t scratch;
    domain_error_t err;
    if (!programme_validate(req, &prog, &scratch, &err)) {
        reply_domain_error(reply, &err);
        return;
    }

    char id[ID_LEN], now[TIME_RFC3339_LEN], key[KEY_MAX], subject[KEY_MAX];
    id_new('P', id);
    time_now_rfc3339(now);
    prog.id = id;
    prog.created_at = now;
    prog.updated_at = now;
    prog.has_version = true;
    prog.version = 1;
    record_key(key, "programme", id);
    programme_subject(id, subject);

    txn_t *txn = txn_for(call);
    txn_put_message(txn, key, 1, &prog.base);
    char indexes[PROGRAMME_INDEX_COUNT][PROGRAMME_INDEX_KEY_MAX];
    programme_index_keys(&prog, indexes);
    for (size_t i = 0; i < PROGRAMME_INDEX_COUNT; i++)
        txn_index_add(txn, indexes[i], id);
    /* A new programme has no unit and has used no right yet. */
    prog.has_units_attached = true;
    prog.units_attached = 0;
    if (prog.npnru) {
        prog.npnru->has_used_in_qpv = true;
        prog.npnru->has_used_outside_qpv = true;
    }
    txn_event(txn, RESERVATIONS_STREAM, RESERVATIONS_SOURCE, "programme.created", subject,
              &prog.base);
    reply_set_body(reply, &prog.base);
    commit(self, call, txn, reply, "programme.created", subject);
    txn_destroy(&txn);
}

/* ====================================================================== */
/* programme.get, programme.list                                          */
/* ====================================================================== */

void handle_programme_get(void *ctx, const call_t *call, const ProtobufCMessage *request,
                          reply_t *reply)
{
    (void)call;
    reservations_t *self = ctx;
    const Passerelle__ProgrammeGetRequest *req = (const Passerelle__ProgrammeGetRequest *)request;
    Passerelle__Programme *prog = NULL;
    uint64_t version = 0;
    if (!record_get(self->store, &RECORD_PROGRAMME, req->id, "id", (ProtobufCMessage **)&prog,
                    &version, reply))
        return;
    Passerelle__NpnruCounterparts spare = PASSERELLE__NPNRU_COUNTERPARTS__INIT;
    if (programme_fill(self->store, prog, &spare, reply))
        reply_set_body(reply, &prog->base);
    programme_free(prog, &spare);
}

static bool programme_list_match(const ProtobufCMessage *msg, void *filter)
{
    return programme_filter_match(filter, (const Passerelle__Programme *)msg);
}

/* Walks the index the filter names (records_list_page), keeping the
 * programmes that pass the other filter, then fills each. A page costs
 * O(members walked), at worst the rest of the index when the second filter
 * rejects most of it, which the partnership's few hundred programmes make
 * cheap. */
void handle_programme_list(void *ctx, const call_t *call, const ProtobufCMessage *request,
                           reply_t *reply)
{
    (void)call;
    reservations_t *self = ctx;
    const Passerelle__ProgrammeListRequest *req = (const Passerelle__ProgrammeListRequest *)request;
    programme_filter_t filter;
    domain_error_t err;
    if (!programme_filter_parse(req, &filter, &err)) {
        reply_domain_error(reply, &err);
        return;
    }
    char index[PROGRAMME_INDEX_KEY_MAX];
    programme_filter_index(&filter, index);
    listing_page_t page;
    if (!records_list_page(self->store, index, &RECORD_PROGRAMME, filter.after, filter.page_size,
                           programme_list_match, &filter, &page, reply))
        return;
    Passerelle__Programme **progs = (Passerelle__Programme **)page.items;
    Passerelle__NpnruCounterparts *spares = calloc(page.count ? page.count : 1, sizeof *spares);
    bool ok = spares != NULL;
    if (!ok)
        reply_error(reply, ST_INTERNAL, NULL, "out of memory");
    for (size_t i = 0; ok && i < page.count; i++) {
        Passerelle__NpnruCounterparts init = PASSERELLE__NPNRU_COUNTERPARTS__INIT;
        spares[i] = init;
        ok = programme_fill(self->store, progs[i], &spares[i], reply);
    }
    if (ok) {
        Passerelle__ProgrammeList list = PASSERELLE__PROGRAMME_LIST__INIT;
        list.programmes = progs;
        list.n_programmes = page.count;
        list.next_page_token = listing_page_token(&page);
        reply_set_body(reply, &list.base);
    }
    /* The spares are not the records': detach them before freeing. */
    for (size_t i = 0; spares && i < page.count; i++)
        if (progs[i]->npnru == &spares[i])
            progs[i]->npnru = NULL;
    listing_page_free(&page);
    free(spares);
}

/* ====================================================================== */
/* Attaching units                                                        */
/* ====================================================================== */

void programme_txn_attach(txn_t *txn, const char *programme_id, const char *unit_id)
{
    char key[PROGRAMME_INDEX_KEY_MAX];
    programme_units_key(programme_id, key);
    txn_index_add(txn, key, unit_id);
}

bool programme_check_new_unit(reservations_t *self, const Passerelle__Unit *unit, reply_t *reply)
{
    if (!id_valid('P', unit->programme_id)) {
        reply_error(reply, ST_NOT_FOUND, "programme_id", "programme '%.64s' not found",
                    unit->programme_id);
        return false;
    }
    Passerelle__Programme *prog = NULL;
    uint64_t version = 0;
    if (!record_get(self->store, &RECORD_PROGRAMME, unit->programme_id, "programme_id",
                    (ProtobufCMessage **)&prog, &version, reply))
        return false;
    bool covered = programme_covers(prog, unit);
    if (!covered)
        reply_error(reply, ST_FAILED_PRECONDITION, "programme_id",
                    "the unit is in %s (%s), outside programme %s (%s)",
                    unit->commune_name ? unit->commune_name : "?",
                    unit->territory ? unit->territory : "?", prog->id, prog->territory);
    protobuf_c_message_free_unpacked(&prog->base, NULL);
    return covered;
}

void handle_programme_attach_unit(void *ctx, const call_t *call, const ProtobufCMessage *request,
                                  reply_t *reply)
{
    reservations_t *self = ctx;
    const Passerelle__ProgrammeAttachRequest *req =
        (const Passerelle__ProgrammeAttachRequest *)request;
    if (text_blank(req->programme) || !id_valid('P', req->programme)) {
        reply_error(reply, ST_INVALID_ARGUMENT, "programme",
                    "programme is required: a programme id");
        return;
    }
    if (text_blank(req->unit)) {
        reply_error(reply, ST_INVALID_ARGUMENT, "unit",
                    "unit is required: a unit id or external reference");
        return;
    }
    Passerelle__Programme *prog = NULL;
    uint64_t prog_version = 0;
    if (!record_get(self->store, &RECORD_PROGRAMME, req->programme, "programme",
                    (ProtobufCMessage **)&prog, &prog_version, reply))
        return;
    read_result_t found;
    Passerelle__Unit *unit = NULL;
    uint64_t unit_version = 0;
    found = unit_find(self->store, req->unit, &unit, &unit_version, reply);
    if (found == READ_ABSENT)
        reply_error(reply, ST_NOT_FOUND, "unit", "unit %.64s not found", req->unit);
    if (found != READ_FOUND) {
        protobuf_c_message_free_unpacked(&prog->base, NULL);
        return;
    }

    domain_error_t err;
    switch (programme_attach_decide(prog, unit, &err)) {
    case ATTACH_REFUSED:
        reply_domain_error(reply, &err);
        break;
    case ATTACH_ALREADY:
        /* A repeat: the unit as it is, nothing written. */
        reply_set_body(reply, &unit->base);
        break;
    case ATTACH_NEW: {
        char now[TIME_RFC3339_LEN], unit_key[KEY_MAX], subject[KEY_MAX];
        time_now_rfc3339(now);
        Passerelle__Unit changed = *unit;
        changed.programme_id = prog->id;
        changed.updated_at = now;
        changed.has_version = true;
        changed.version = unit_version + 1;
        record_key(unit_key, "unit", unit->id);
        subject_of(unit->id, subject);

        /* The unit's version guards the race: of two attaches of one unit
         * to two programmes, the second goes stale, runs again and finds
         * the first (CONFLICT). */
        txn_t *txn = txn_for(call);
        txn_put_message(txn, unit_key, changed.version, &changed.base);
        programme_txn_attach(txn, prog->id, unit->id);
        txn_event(txn, RESERVATIONS_STREAM, RESERVATIONS_SOURCE, "programme.unit_attached", subject,
                  &changed.base);
        reply_set_body(reply, &changed.base);
        commit(self, call, txn, reply, "programme.unit_attached", subject);
        txn_destroy(&txn);
        break;
    }
    }
    protobuf_c_message_free_unpacked(&unit->base, NULL);
    protobuf_c_message_free_unpacked(&prog->base, NULL);
}

/* ====================================================================== */
/* objective.set                                                          */
/* ====================================================================== */

void handle_objective_set(void *ctx, const call_t *call, const ProtobufCMessage *request,
                          reply_t *reply)
{
    reservations_t *self = ctx;
    const Passerelle__ObjectiveSetRequest *req = (const Passerelle__ObjectiveSetRequest *)request;
    domain_error_t err;
    if (!objective_validate(req, &err)) {
        reply_domain_error(reply, &err);
        return;
    }
    Passerelle__Programme *prog = NULL;
    uint64_t prog_version = 0;
    if (!record_get(self->store, &RECORD_PROGRAMME, req->programme, "programme",
                    (ProtobufCMessage **)&prog, &prog_version, reply))
        return;
    read_result_t found;

    int level = req->has_level ? (int)req->level : 0;
    int financing = req->has_financing ? (int)req->financing : 0;
    char key[OBJECTIVE_KEY_MAX], index[OBJECTIVE_KEY_MAX], member[OBJECTIVE_KEY_MAX];
    objective_key(prog->id, req->year, level, financing, key);
    objective_year_index_key(req->year, index);
    objective_member(prog->id, level, financing, member);

    /* The previous objective for the same four is replaced: its version,
     * read here, guards the put against a concurrent objective.set. */
    Passerelle__Objective *previous = NULL;
    uint64_t version = 0;
    found = record_read(self->store, key, &passerelle__objective__descriptor,
                        (ProtobufCMessage **)&previous, &version, reply);
    if (found == READ_FAILED) {
        protobuf_c_message_free_unpacked(&prog->base, NULL);
        return;
    }
    if (previous)
        protobuf_c_message_free_unpacked(&previous->base, NULL);

    char now[TIME_RFC3339_LEN], subject[KEY_MAX];
    time_now_rfc3339(now);
    Passerelle__Objective objective = PASSERELLE__OBJECTIVE__INIT;
    objective.programme_id = prog->id;
    objective.has_year = true;
    objective.year = req->year;
    objective.has_level = level != 0;
    objective.level = level;
    objective.has_financing = financing != 0;
    objective.financing = financing;
    objective.has_units = true;
    objective.units = req->units;
    objective.territory = prog->territory;
    objective.updated_at = now;
    objective.has_version = true;
    objective.version = version + 1;
    programme_subject(prog->id, subject);

    txn_t *txn = txn_for(call);
    txn_put_message(txn, key, objective.version, &objective.base);
    txn_index_add(txn, index, member);
    txn_event(txn, RESERVATIONS_STREAM, RESERVATIONS_SOURCE, "objective.set", subject,
              &objective.base);
    reply_set_body(reply, &objective.base);
    commit(self, call, txn, reply, "objective.set", subject);
    txn_destroy(&txn);
    protobuf_c_message_free_unpacked(&prog->base, NULL);
}

/* ====================================================================== */
/* progress.get                                                           */
/* ====================================================================== */

static const char *const ALL_TERRITORIES[] = {"CT1", "CT2", "CT3", "CT4", "CT5", "CT6"};

/* Everything a report reads, freed together. */
typedef struct {
    Passerelle__Programme **records;
    progress_programme_t *programmes;
    size_t count;
    progress_objective_t *objectives;
    size_t objective_count;
    progress_tally_t *counters;
} progress_inputs_t;

static void progress_inputs_free(progress_inputs_t *in)
{
    for (size_t i = 0; i < in->count; i++)
        protobuf_c_message_free_unpacked(&in->records[i]->base, NULL);
    free(in->records);
    free(in->programmes);
    free(in->objectives);
    progress_tally_destroy(&in->counters);
}

static unsigned year_of(const char *date)
{
    date_t d;
    return date && date_parse(date, &d) ? (unsigned)d.year : 0;
}

/* Adds a programme record to the inputs (taking it). */
static void progress_add_programme(progress_inputs_t *in, Passerelle__Programme *prog)
{
    in->records[in->count] = prog;
    progress_programme_t *p = &in->programmes[in->count++];
    p->id = prog->id;
    p->territory = prog->territory;
    p->start_year = year_of(prog->start_date);
    p->end_year = year_of(prog->end_date);
}

/* The programmes in scope: one, those of a territory, or all. Cost: one
 * record read per programme in scope. */
static bool progress_read_programmes(reservations_t *self, const progress_scope_t *scope,
                                     progress_inputs_t *in, reply_t *reply)
{
    if (scope->programme_id[0]) {
        in->records = calloc(1, sizeof *in->records);
        in->programmes = calloc(1, sizeof *in->programmes);
        if (!in->records || !in->programmes) {
            reply_error(reply, ST_INTERNAL, NULL, "out of memory");
            return false;
        }
        Passerelle__Programme *prog = NULL;
        uint64_t version = 0;
        if (!record_get(self->store, &RECORD_PROGRAMME, scope->programme_id, "programme",
                        (ProtobufCMessage **)&prog, &version, reply))
            return false;
        progress_add_programme(in, prog);
        return true;
    }
    char index[PROGRAMME_INDEX_KEY_MAX];
    programme_filter_t all = {0};
    memcpy(all.territory, scope->territory, sizeof all.territory);
    programme_filter_index(&all, index);
    listing_page_t page;
    if (!records_read_all(self->store, index, &RECORD_PROGRAMME, &page, reply))
        return false;
    /* The records are taken one by one by progress_add_programme, into the
     * same array. */
    in->records = (Passerelle__Programme **)page.items;
    in->programmes = calloc(page.count ? page.count : 1, sizeof *in->programmes);
    if (!in->programmes) {
        /* in->count is 0: free the records here, the array with the rest. */
        for (size_t i = 0; i < page.count; i++)
            protobuf_c_message_free_unpacked(page.items[i], NULL);
        reply_error(reply, ST_INTERNAL, NULL, "out of memory");
        return false;
    }
    for (size_t i = 0; i < page.count; i++)
        progress_add_programme(in, (Passerelle__Programme *)page.items[i]);
    return true;
}

static bool progress_in_scope(const progress_inputs_t *in, const char *programme_id)
{
    for (size_t i = 0; i < in->count; i++)
        if (strcmp(in->programmes[i].id, programme_id) == 0)
            return true;
    return false;
}

/* The year's objectives of the programmes in scope: the year's index, then
 * one record read per objective in scope. */
static bool progress_read_objectives(reservations_t *self, unsigned year, progress_inputs_t *in,
                                     reply_t *reply)
{
    char index[OBJECTIVE_KEY_MAX];
    objective_year_index_key(year, index);
    redisReply *r = NULL;
    store_result_t result = store_command(self->store, &r, "ZRANGE %s 0 -1", index);
    if (result != STORE_OK || r->type != REDIS_REPLY_ARRAY) {
        if (r)
            freeReplyObject(r);
        reply_store_failure(reply, self->store, result == STORE_OK ? STORE_REFUSED : result);
        return false;
    }
    in->objectives = calloc(r->elements ? r->elements : 1, sizeof *in->objectives);
    bool ok = in->objectives != NULL;
    if (!ok)
        reply_error(reply, ST_INTERNAL, NULL, "out of memory");
    for (size_t i = 0; ok && i < r->elements; i++) {
        char programme_id[ID_LEN], key[OBJECTIVE_KEY_MAX];
        int level = 0, financing = 0;
        if (r->element[i]->type != REDIS_REPLY_STRING ||
            !objective_member_parse(r->element[i]->str, programme_id, &level, &financing) ||
            !progress_in_scope(in, programme_id))
            continue;
        objective_key(programme_id, year, level, financing, key);
        Passerelle__Objective *objective = NULL;
        uint64_t version = 0;
        read_result_t found = record_read(self->store, key, &passerelle__objective__descriptor,
                                          (ProtobufCMessage **)&objective, &version, reply);
        if (found == READ_FAILED) {
            ok = false;
        } else if (found == READ_FOUND) {
            progress_objective_t *o = &in->objectives[in->objective_count++];
            snprintf(o->programme_id, sizeof o->programme_id, "%s", programme_id);
            o->level = level;
            o->financing = financing;
            o->units = objective->units;
            protobuf_c_message_free_unpacked(&objective->base, NULL);
        }
    }
    freeReplyObject(r);
    return ok;
}

/* Achieved figures come from the counters only (progress.h), never from a
 * walk over reservations: a report costs the programmes and objectives in
 * scope plus one HGETALL. */
void handle_progress_get(void *ctx, const call_t *call, const ProtobufCMessage *request,
                         reply_t *reply)
{
    (void)call;
    reservations_t *self = ctx;
    const Passerelle__ProgressRequest *req = (const Passerelle__ProgressRequest *)request;
    progress_scope_t scope;
    domain_error_t err;
    if (!progress_scope_parse(req, date_today_paris(), &scope, &err)) {
        reply_domain_error(reply, &err);
        return;
    }
    progress_inputs_t in = {0};
    in.counters = progress_tally_new();
    if (!in.counters) {
        reply_error(reply, ST_INTERNAL, NULL, "out of memory");
        return;
    }
    char counters_key[PROGRESS_KEY_MAX];
    snprintf(counters_key, sizeof counters_key, PROGRESS_KEY_PREFIX "%u", scope.year);
    if (progress_read_programmes(self, &scope, &in, reply) &&
        progress_read_objectives(self, scope.year, &in, reply)) {
        store_result_t result = progress_tally_load_hash(self->store, counters_key, in.counters);
        if (result != STORE_OK) {
            reply_store_failure(reply, self->store, result);
        } else {
            const char *const *territories = NULL;
            size_t territory_count = 0;
            const char *one[1] = {scope.territory};
            if (scope.territory[0]) {
                territories = one;
                territory_count = 1;
            } else if (!scope.programme_id[0]) {
                territories = ALL_TERRITORIES;
                territory_count = sizeof ALL_TERRITORIES / sizeof ALL_TERRITORIES[0];
            }
            progress_report_t report;
            if (!progress_report_build(scope.year, in.programmes, in.count, in.objectives,
                                       in.objective_count, in.counters, territories,
                                       territory_count, &report)) {
                reply_error(reply, ST_INTERNAL, NULL, "out of memory");
            } else {
                Passerelle__Progress progress = PASSERELLE__PROGRESS__INIT;
                progress.rows = report.row_ptrs;
                progress.n_rows = report.count;
                reply_set_body(reply, &progress.base);
                progress_report_free(&report);
            }
        }
    }
    progress_inputs_free(&in);
}
