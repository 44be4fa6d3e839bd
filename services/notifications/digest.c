/* The territory digest (digest.h): a projection of the reservations
 * stream, a clock, and the "digest.send" request.
 *
 * The projection, per territory (keys under notifications:digest:, see
 * digest.lua): the units whose convention is envisaged and not yet signed
 * (a hash of packed DigestUnit), and the changes not yet cut into a digest
 * (a sorted set scored by the stream position's milliseconds).
 *
 * A digest covers the changes in (since, until]: since is the previous
 * digest's cut, kept in the state record notifications:digest:state:<CT>
 * (a Digest holding only territory and until) and written, version-guarded,
 * in the transaction that appends the digest.ready event. So two replicas,
 * or a request racing the clock, never both cut from the same state.
 *
 * A change must not fall between two digests because the projection had not
 * applied it yet when a digest was cut. Changes are scored by their stream
 * position, so the cut is held at the projection's watermark: just before
 * the oldest entry the digest's consumer group has not finished (pending,
 * or not yet delivered). Every change scored at or below the cut is then in
 * the projection, and any later one falls in the next digest. */
#define _GNU_SOURCE
#include "digest.h"
#include "eventlog.h"
#include "ids.h"
#include "log.h"
#include "notify.h"
#include "refdata.h"
#include "reservations.pb-c.h"
#include "txn.h"

#include <czmq.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The projection's script, embedded by the build (cmake/embed.cmake). */
extern const unsigned char notify_digest_lua[];
extern const size_t notify_digest_lua_len;

#define DIGEST_DEFAULT_STREAM     "reservations:events"
#define DIGEST_DEFAULT_INTERVAL_S 86400
/* Done markers and closed-convention markers live as long as eventlog's
 * done markers: an event is not redelivered after that long. */
#define DIGEST_MARKER_TTL_S (7 * 24 * 3600)
/* The consumer's XREADGROUP BLOCK: how late $TERM or a cut may be seen. */
#define DIGEST_BLOCK_MS 200
/* After Redis went away, and after it refused (a bug: no hurry, less log). */
#define DIGEST_RETRY_MS         1000
#define DIGEST_REFUSED_RETRY_MS 60000
/* Stale commits (another replica, a request) before giving up this round. */
#define DIGEST_COMMIT_TRIES 5
/* Entries handled before a cut, so that the cut finds our own work done. */
#define DIGEST_DRAIN_POLLS 64

#define DIGEST_KEY_MAX  256
#define DAY_MS          86400000LL
#define TERRITORY_COUNT 6
#define TERRITORY_MAX   4

static const char *const digest_territories[TERRITORY_COUNT] = {"CT1", "CT2", "CT3",
                                                                "CT4", "CT5", "CT6"};

struct digest_t {
    zactor_t *actor;
    store_t *read_store;  /* the consumer's, and the projection's script */
    store_t *write_store; /* the digests' reads and commits */
    consumer_t *consumer;
    int script;
    char *stream;
    char *consumer_name;
    int64_t interval_s;
    int at_minute;
    double clock_scale;
    int block_ms;
};

/* ======================== small helpers ================================ */

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    if (a % b != 0 && ((a < 0) != (b < 0)))
        q--;
    return q;
}

static void key_of(char *out, const char *what, const char *territory)
{
    snprintf(out, DIGEST_KEY_MAX, "notifications:digest:%s:%s", what, territory);
}

/* The territory code in upper case, into out (TERRITORY_MAX); false if it
 * is not CT1..CT6. */
static bool territory_code(const char *text, char *out)
{
    if (!text || !refdata_is_territory(text))
        return false;
    snprintf(out, TERRITORY_MAX, "CT%c", text[2]);
    return true;
}

/* The milliseconds of a stream entry id ("1700000000000-3"). */
static int64_t stream_id_ms(const char *id)
{
    return id ? strtoll(id, NULL, 10) : 0;
}

/* ======================== schedule ===================================== */

static int minute_of_day(int at_minute)
{
    return ((at_minute % 1440) + 1440) % 1440;
}

static int64_t schedule_step_ms(int64_t interval_s, double clock_scale)
{
    double step_ms = (double)(interval_s > 0 ? interval_s : DIGEST_DEFAULT_INTERVAL_S) * 1000.0;
    if (clock_scale > 1.0)
        step_ms /= clock_scale;
    return step_ms < 1.0 ? 1 : (int64_t)step_ms;
}

/* The local day (days since 1970-01-01 in Europe/Paris) of an instant. */
static int64_t paris_day_of(int64_t t_ms)
{
    int64_t offset_ms = (int64_t)time_paris_offset_s((time_t)floor_div(t_ms, 1000)) * 1000;
    return floor_div(t_ms + offset_ms, DAY_MS);
}

/* The instant of at_minute, local time, on a local day. The offset is the
 * one an hour before the guess, checked at the result: a local time the
 * spring change skips lands an hour later, one the autumn change repeats
 * on its second occurrence. */
static int64_t paris_anchor_ms(int64_t day, int at_minute)
{
    int64_t local_s = day * 86400 + (int64_t)at_minute * 60;
    int offset_s = time_paris_offset_s((time_t)(local_s - 3600));
    int64_t utc_s = local_s - offset_s;
    int checked_s = time_paris_offset_s((time_t)utc_s);
    if (checked_s != offset_s)
        utc_s = local_s - checked_s;
    return utc_s * 1000;
}

int64_t digest_next_cut_ms(int64_t after_ms, int64_t interval_s, int at_minute, double clock_scale)
{
    int64_t step = schedule_step_ms(interval_s, clock_scale);
    at_minute = minute_of_day(at_minute);
    int64_t day = paris_day_of(after_ms);
    if (step < DAY_MS) {
        for (int64_t g = day - 1; g <= day + 1; g++) {
            int64_t anchor = paris_anchor_ms(g, at_minute);
            if (anchor > after_ms)
                return anchor;
            int64_t cut = anchor + (floor_div(after_ms - anchor, step) + 1) * step;
            if (cut < paris_anchor_ms(g + 1, at_minute))
                return cut;
        }
        return paris_anchor_ms(day + 2, at_minute);
    }
    if (step % DAY_MS == 0) {
        int64_t days = step / DAY_MS;
        for (int64_t g = day - 1;; g++) {
            int64_t anchor = paris_anchor_ms(g, at_minute);
            if (g - floor_div(g, days) * days == 0 && anchor > after_ms)
                return anchor;
        }
    }
    int64_t origin = paris_anchor_ms(0, at_minute);
    return origin + (floor_div(after_ms - origin, step) + 1) * step;
}

int64_t digest_cut_at_or_before_ms(int64_t t_ms, int64_t interval_s, int at_minute,
                                   double clock_scale)
{
    int64_t step = schedule_step_ms(interval_s, clock_scale);
    at_minute = minute_of_day(at_minute);
    int64_t day = paris_day_of(t_ms);
    if (step < DAY_MS) {
        for (int64_t g = day; g >= day - 2; g--) {
            int64_t anchor = paris_anchor_ms(g, at_minute);
            if (anchor > t_ms)
                continue;
            int64_t last_of_day = paris_anchor_ms(g + 1, at_minute) - 1;
            int64_t upto = t_ms < last_of_day ? t_ms : last_of_day;
            return anchor + floor_div(upto - anchor, step) * step;
        }
        return paris_anchor_ms(day - 3, at_minute);
    }
    if (step % DAY_MS == 0) {
        int64_t days = step / DAY_MS;
        for (int64_t g = day;; g--) {
            int64_t anchor = paris_anchor_ms(g, at_minute);
            if (g - floor_div(g, days) * days == 0 && anchor <= t_ms)
                return anchor;
        }
    }
    int64_t origin = paris_anchor_ms(0, at_minute);
    return origin + floor_div(t_ms - origin, step) * step;
}

/* ======================== projection =================================== */

/* The commune as the correspondent knows it: Marseille's units by their
 * arrondissement. */
static const char *commune_label(const Passerelle__Unit *unit)
{
    if (unit->arrondissement_insee && *unit->arrondissement_insee) {
        const commune_t *arrondissement = refdata_arrondissement(unit->arrondissement_insee);
        if (arrondissement)
            return arrondissement->name;
    }
    return unit->commune_name ? unit->commune_name : "";
}

static uint8_t *pack_message(const ProtobufCMessage *msg, size_t *len_out)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    uint8_t *bytes = malloc(len ? len : 1);
    if (bytes)
        protobuf_c_message_pack(msg, bytes);
    *len_out = len;
    return bytes;
}

/* One convention event's call of digest.lua, with the buffers its
 * arguments point into, so that the calls of a batch can wait in one
 * pipeline. The event, its done key and its Convention must outlive the
 * call (the unit and convention ids are theirs). */
typedef struct {
    char envisaged_key[DIGEST_KEY_MAX], conventions_key[DIGEST_KEY_MAX];
    char changes_key[DIGEST_KEY_MAX], closed_key[DIGEST_KEY_MAX];
    char score[24], ttl[24];
    uint8_t *unit_bytes, *change_bytes;
    char *member;
    const char *argv[12];
    size_t lens[12];
} projection_t;

static void projection_free(projection_t *p)
{
    free(p->unit_bytes);
    free(p->change_bytes);
    free(p->member);
    memset(p, 0, sizeof *p);
}

/* Prepares the call that applies one convention event. 1 when prepared,
 * 0 when there is nothing to do, -1 (out of memory) to leave the entry
 * pending. */
static int project_convention(const Passerelle__Event *event, const Passerelle__Convention *conv,
                              const char *position, const char *done_key, projection_t *p)
{
    memset(p, 0, sizeof *p);
    const Passerelle__Unit *unit = conv->unit;
    char territory[TERRITORY_MAX];
    if (!conv->id || !unit || !unit->id || !territory_code(unit->territory, territory)) {
        /* Nothing to list it under: it can never succeed, so it is not
         * left pending. */
        log_warn("convention event without a unit in a territory", "{s:s, s:s}", "event", event->id,
                 "position", position);
        return 0;
    }
    bool envisaged = conv->state == PASSERELLE__CONVENTION_STATE__CONVENTION_ENVISAGED;
    const char *action = !envisaged                                         ? "remove"
                         : strcmp(event->type, "convention.envisaged") == 0 ? "add"
                                                                            : "none";
    const char *commune = commune_label(unit);

    Passerelle__DigestUnit listed = PASSERELLE__DIGEST_UNIT__INIT;
    listed.unit_id = unit->id;
    listed.external_ref = unit->external_ref;
    listed.commune_name = (char *)commune;
    listed.address = unit->address;
    listed.convention_id = conv->id;
    listed.has_level = conv->has_level;
    listed.level = conv->level;
    listed.envisaged_on = conv->envisaged_on;

    Passerelle__DigestChange change = PASSERELLE__DIGEST_CHANGE__INIT;
    change.time = event->time;
    change.type = event->type;
    change.unit_id = unit->id;
    change.external_ref = unit->external_ref;
    change.commune_name = (char *)commune;

    size_t unit_len = 0, change_len = 0;
    p->unit_bytes = pack_message(&listed.base, &unit_len);
    p->change_bytes = pack_message(&change.base, &change_len);
    size_t id_len = strlen(event->id);
    p->member = malloc(id_len + 1 + change_len + 1);
    if (!p->unit_bytes || !p->change_bytes || !p->member) {
        projection_free(p);
        return -1;
    }
    memcpy(p->member, event->id, id_len);
    p->member[id_len] = ':';
    if (change_len)
        memcpy(p->member + id_len + 1, p->change_bytes, change_len);

    key_of(p->envisaged_key, "envisaged", territory);
    key_of(p->conventions_key, "conventions", territory);
    key_of(p->changes_key, "changes", territory);
    key_of(p->closed_key, "closed", conv->id);
    snprintf(p->score, sizeof p->score, "%" PRId64, stream_id_ms(position));
    snprintf(p->ttl, sizeof p->ttl, "%d", DIGEST_MARKER_TTL_S);

    const char *argv[] = {p->envisaged_key, p->conventions_key, p->changes_key,
                          done_key,         p->closed_key,      action,
                          unit->id,         conv->id,           (const char *)p->unit_bytes,
                          p->score,         p->member,          p->ttl};
    size_t lens[] = {strlen(p->envisaged_key), strlen(p->conventions_key), strlen(p->changes_key),
                     strlen(done_key),         strlen(p->closed_key),      strlen(action),
                     strlen(unit->id),         strlen(conv->id),           unit_len,
                     strlen(p->score),         id_len + 1 + change_len,    strlen(p->ttl)};
    memcpy(p->argv, argv, sizeof argv);
    memcpy(p->lens, lens, sizeof lens);
    return 1;
}

/* Prepares the call that only sets an event's done marker: an event that
 * is not the digest's business, or that can never be applied, is marked
 * done like those applied. */
static void project_skip(const char *done_key, projection_t *p)
{
    memset(p, 0, sizeof *p);
    snprintf(p->ttl, sizeof p->ttl, "%d", DIGEST_MARKER_TTL_S);
    for (int i = 0; i < 5; i++)
        p->argv[i] = done_key;
    p->argv[5] = "skip";
    for (int i = 6; i < 11; i++)
        p->argv[i] = "";
    p->argv[11] = p->ttl;
    for (int i = 0; i < 12; i++)
        p->lens[i] = strlen(p->argv[i]);
}

/* The consumer's batch handler (eventlog.h): the convention events read
 * together applied in one pipeline (one round trip, one fsync for all),
 * each call all or nothing with its done marker. Other events than
 * conventions' are not the digest's business: only marked done. */
static void project_batch(void *arg, const consumer_entry_t *entries, size_t count, int *results)
{
    digest_t *self = arg;
    Passerelle__Convention **convs = calloc(count, sizeof *convs);
    projection_t *calls = calloc(count, sizeof *calls);
    store_call_t *run = calloc(count, sizeof *run);
    size_t *which = calloc(count, sizeof *which);
    redisReply **replies = calloc(count, sizeof *replies);
    store_result_t *got = calloc(count, sizeof *got);
    size_t n = 0;
    if (!convs || !calls || !run || !which || !replies || !got)
        goto out;
    for (size_t i = 0; i < count; i++) {
        const Passerelle__Event *event = entries[i].event;
        int prepared = 0;
        if (event->type && strncmp(event->type, "convention.", 11) == 0) {
            convs[i] = event->has_data
                           ? passerelle__convention__unpack(NULL, event->data.len, event->data.data)
                           : NULL;
            if (convs[i])
                prepared = project_convention(event, convs[i], entries[i].position,
                                              entries[i].done_key, &calls[i]);
            else
                log_error("convention event whose data is not a Convention", "{s:s, s:s, s:i}",
                          "event", event->id, "position", entries[i].position, "length",
                          (int)event->data.len);
        }
        if (prepared == 0) {
            project_skip(entries[i].done_key, &calls[i]);
            prepared = 1;
        }
        if (prepared == 1) {
            run[n] = (store_call_t){5, 12, calls[i].argv, calls[i].lens};
            which[n++] = i;
        }
    }
    if (n > 0)
        store_script_run_many(self->read_store, self->script, run, n, replies, got);
    for (size_t j = 0; j < n; j++) {
        if (got[j] == STORE_OK)
            results[which[j]] = 0;
        else if (got[j] == STORE_REFUSED)
            log_error("redis refused the digest projection", "{s:s, s:s}", "event",
                      entries[which[j]].event->id, "error", store_last_error(self->read_store));
        if (replies[j])
            freeReplyObject(replies[j]);
    }
out:
    for (size_t i = 0; convs && i < count; i++)
        if (convs[i])
            passerelle__convention__free_unpacked(convs[i], NULL);
    for (size_t i = 0; calls && i < count; i++)
        projection_free(&calls[i]);
    free(convs);
    free(calls);
    free(run);
    free(which);
    free(replies);
    free(got);
}

/* ======================== reading a digest ============================== */

/* A digest being made, and what owns its parts. */
typedef struct {
    Passerelle__Digest digest; /* points into the fields below */
    char territory[TERRITORY_MAX];
    char since[TIME_RFC3339_LEN];
    char until[TIME_RFC3339_LEN];
    bool has_state;
    uint64_t state_version;
    int64_t since_ms; /* meaningful with has_state */
    int64_t until_ms;
    Passerelle__DigestUnit **units;
    size_t n_units;
    Passerelle__DigestChange **changes;
    size_t n_changes;
} digest_parts_t;

static void digest_parts_free(digest_parts_t *parts)
{
    for (size_t i = 0; i < parts->n_units; i++)
        passerelle__digest_unit__free_unpacked(parts->units[i], NULL);
    for (size_t i = 0; i < parts->n_changes; i++)
        passerelle__digest_change__free_unpacked(parts->changes[i], NULL);
    free(parts->units);
    free(parts->changes);
    parts->units = NULL;
    parts->changes = NULL;
    parts->n_units = parts->n_changes = 0;
}

static store_result_t command_failed(store_t *store, store_result_t result, redisReply *reply,
                                     const char *what)
{
    if (result == STORE_REFUSED)
        log_error("redis refused a digest read", "{s:s, s:s}", "command", what, "error",
                  store_last_error(store));
    if (reply)
        freeReplyObject(reply);
    return result;
}

/* The previous cut, from the state record (read through store_record_get,
 * so that the request server's snapshot serves it). */
static store_result_t read_state(store_t *store, digest_parts_t *parts)
{
    char key[DIGEST_KEY_MAX];
    key_of(key, "state", parts->territory);
    uint8_t *data = NULL;
    size_t len = 0;
    store_result_t result = store_record_get(store, key, &parts->state_version, &data, &len);
    if (result != STORE_OK || parts->state_version == 0) {
        free(data);
        return result;
    }
    Passerelle__Digest *state = passerelle__digest__unpack(NULL, len, data);
    free(data);
    int64_t until_ms = 0;
    if (state && time_parse_rfc3339(state->until, &until_ms)) {
        parts->has_state = true;
        parts->since_ms = until_ms;
        snprintf(parts->since, sizeof parts->since, "%s", state->until);
    } else {
        /* Kept for its version (the guard); the digest then starts over. */
        log_error("digest state record unreadable", "{s:s, s:i}", "key", key, "length", (int)len);
    }
    if (state)
        passerelle__digest__free_unpacked(state, NULL);
    return STORE_OK;
}

/* The field of a flat [name, value, ...] reply, or NULL. */
static const redisReply *flat_field(const redisReply *fields, const char *name)
{
    if (!fields || fields->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (size_t i = 0; i + 1 < fields->elements; i += 2)
        if (fields->element[i]->type == REDIS_REPLY_STRING &&
            strcmp(fields->element[i]->str, name) == 0)
            return fields->element[i + 1];
    return NULL;
}

/* The projection's watermark: the last millisecond of which every entry of
 * the stream is applied (INT64_MAX when nothing is outstanding, or when the
 * group does not exist yet: then there is nothing to wait for). */
static store_result_t projection_watermark_ms(store_t *store, const char *stream, int64_t *out)
{
    *out = INT64_MAX;
    redisReply *reply = NULL;
    store_result_t result = store_command(store, &reply, "XINFO GROUPS %s", stream);
    if (result == STORE_REFUSED) {
        /* No such stream yet: nothing was ever projected, nothing waits. */
        freeReplyObject(reply);
        return STORE_OK;
    }
    if (result != STORE_OK)
        return command_failed(store, result, reply, "XINFO GROUPS");
    char last_delivered[64] = "";
    long long pending = 0;
    bool found = false;
    for (size_t i = 0; reply->type == REDIS_REPLY_ARRAY && i < reply->elements; i++) {
        const redisReply *name = flat_field(reply->element[i], "name");
        if (!name || strcmp(name->str, DIGEST_GROUP) != 0)
            continue;
        const redisReply *delivered = flat_field(reply->element[i], "last-delivered-id");
        const redisReply *count = flat_field(reply->element[i], "pending");
        if (delivered && delivered->type == REDIS_REPLY_STRING)
            snprintf(last_delivered, sizeof last_delivered, "%s", delivered->str);
        if (count && count->type == REDIS_REPLY_INTEGER)
            pending = count->integer;
        found = true;
    }
    freeReplyObject(reply);
    if (!found)
        return STORE_OK;

    if (pending > 0) {
        result = store_command(store, &reply, "XPENDING %s %s - + 1", stream, DIGEST_GROUP);
        if (result != STORE_OK)
            return command_failed(store, result, reply, "XPENDING");
        if (reply->type == REDIS_REPLY_ARRAY && reply->elements >= 1 &&
            reply->element[0]->type == REDIS_REPLY_ARRAY && reply->element[0]->elements >= 1 &&
            reply->element[0]->element[0]->type == REDIS_REPLY_STRING)
            *out = stream_id_ms(reply->element[0]->element[0]->str) - 1;
        freeReplyObject(reply);
    }
    result = store_command(store, &reply, "XRANGE %s (%s + COUNT 1", stream,
                           last_delivered[0] ? last_delivered : "0-0");
    if (result != STORE_OK)
        return command_failed(store, result, reply, "XRANGE");
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements >= 1 &&
        reply->element[0]->type == REDIS_REPLY_ARRAY && reply->element[0]->elements >= 1 &&
        reply->element[0]->element[0]->type == REDIS_REPLY_STRING) {
        int64_t undelivered = stream_id_ms(reply->element[0]->element[0]->str) - 1;
        if (undelivered < *out)
            *out = undelivered;
    }
    freeReplyObject(reply);
    return STORE_OK;
}

/* The units in the digest's order: by the date their convention was
 * envisaged, then by unit id. */
static int unit_order(const void *a, const void *b)
{
    const Passerelle__DigestUnit *x = *(Passerelle__DigestUnit *const *)a;
    const Passerelle__DigestUnit *y = *(Passerelle__DigestUnit *const *)b;
    int by_date =
        strcmp(x->envisaged_on ? x->envisaged_on : "", y->envisaged_on ? y->envisaged_on : "");
    if (by_date)
        return by_date;
    return strcmp(x->unit_id ? x->unit_id : "", y->unit_id ? y->unit_id : "");
}

/* Every listed unit (HVALS: O(N) in the territory's envisaged units, a
 * few hundred at most). */
static store_result_t read_units(store_t *store, digest_parts_t *parts)
{
    char key[DIGEST_KEY_MAX];
    key_of(key, "envisaged", parts->territory);
    redisReply *reply = NULL;
    store_result_t result = store_command(store, &reply, "HVALS %s", key);
    if (result != STORE_OK)
        return command_failed(store, result, reply, "HVALS");
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements > 0) {
        parts->units = calloc(reply->elements, sizeof *parts->units);
        if (!parts->units)
            return command_failed(store, STORE_REFUSED, reply, "HVALS (out of memory)");
    }
    for (size_t i = 0; reply->type == REDIS_REPLY_ARRAY && i < reply->elements; i++) {
        const redisReply *value = reply->element[i];
        Passerelle__DigestUnit *unit =
            value->type == REDIS_REPLY_STRING
                ? passerelle__digest_unit__unpack(NULL, value->len, (const uint8_t *)value->str)
                : NULL;
        if (!unit) {
            log_error("listed unit unreadable", "{s:s, s:i}", "key", key, "length",
                      (int)value->len);
            continue;
        }
        parts->units[parts->n_units++] = unit;
    }
    freeReplyObject(reply);
    if (parts->n_units > 1)
        qsort(parts->units, parts->n_units, sizeof *parts->units, unit_order);
    return STORE_OK;
}

/* The changes scored in (since, until], in stream order. */
static store_result_t read_changes(store_t *store, digest_parts_t *parts)
{
    char key[DIGEST_KEY_MAX], low[32], high[32];
    key_of(key, "changes", parts->territory);
    if (parts->has_state)
        snprintf(low, sizeof low, "(%" PRId64, parts->since_ms);
    else
        snprintf(low, sizeof low, "-inf");
    snprintf(high, sizeof high, "%" PRId64, parts->until_ms);
    redisReply *reply = NULL;
    store_result_t result = store_command(store, &reply, "ZRANGEBYSCORE %s %s %s", key, low, high);
    if (result != STORE_OK)
        return command_failed(store, result, reply, "ZRANGEBYSCORE");
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements > 0) {
        parts->changes = calloc(reply->elements, sizeof *parts->changes);
        if (!parts->changes)
            return command_failed(store, STORE_REFUSED, reply, "ZRANGEBYSCORE (out of memory)");
    }
    for (size_t i = 0; reply->type == REDIS_REPLY_ARRAY && i < reply->elements; i++) {
        const redisReply *member = reply->element[i];
        const char *colon =
            member->type == REDIS_REPLY_STRING ? memchr(member->str, ':', member->len) : NULL;
        size_t offset = colon ? (size_t)(colon - member->str) + 1 : 0;
        Passerelle__DigestChange *change =
            colon ? passerelle__digest_change__unpack(NULL, member->len - offset,
                                                      (const uint8_t *)member->str + offset)
                  : NULL;
        if (!change) {
            log_error("change unreadable", "{s:s, s:i}", "key", key, "length", (int)member->len);
            continue;
        }
        parts->changes[parts->n_changes++] = change;
    }
    freeReplyObject(reply);
    return STORE_OK;
}

/* Reads everything a digest of the territory cut at cut_ms holds. The
 * state record comes first: under the request server's snapshot, a run
 * that misses it stops there (store.h). On failure the parts still need
 * digest_parts_free. */
static store_result_t digest_read(store_t *store, const char *stream, const char *territory,
                                  int64_t cut_ms, digest_parts_t *parts)
{
    memset(parts, 0, sizeof *parts);
    snprintf(parts->territory, sizeof parts->territory, "%s", territory);
    store_result_t result = read_state(store, parts);
    if (result != STORE_OK)
        return result;
    int64_t watermark_ms = INT64_MAX;
    result = projection_watermark_ms(store, stream, &watermark_ms);
    if (result != STORE_OK)
        return result;
    parts->until_ms = cut_ms < watermark_ms ? cut_ms : watermark_ms;
    /* A cut never goes back: at worst this digest covers no change. */
    if (parts->has_state && parts->until_ms < parts->since_ms)
        parts->until_ms = parts->since_ms;
    time_rfc3339(parts->until_ms, parts->until);
    /* The changes after the watermark, then the list, so that the list is
     * at least as recent as the changes. */
    result = read_changes(store, parts);
    if (result == STORE_OK)
        result = read_units(store, parts);
    if (result != STORE_OK)
        return result;

    passerelle__digest__init(&parts->digest);
    parts->digest.territory = parts->territory;
    parts->digest.since = parts->since;
    parts->digest.until = parts->until;
    parts->digest.n_envisaged = parts->n_units;
    parts->digest.envisaged = parts->units;
    parts->digest.n_changes = parts->n_changes;
    parts->digest.changes = parts->changes;
    return STORE_OK;
}

/* The transaction of a digest: its digest.ready event and the new cut in
 * the state record, guarded at the version read. NULL when out of memory. */
static txn_t *digest_txn(const digest_parts_t *parts, const char *idempotency_key,
                         const char *fingerprint, uint32_t ttl_s)
{
    txn_t *txn = txn_new(idempotency_key, fingerprint, ttl_s);
    if (!txn)
        return NULL;
    char subject[32], key[DIGEST_KEY_MAX];
    snprintf(subject, sizeof subject, "territories/%s", parts->territory);
    txn_event(txn, NOTIFY_STREAM, NOTIFY_SOURCE, "digest.ready", subject, &parts->digest.base);
    Passerelle__Digest state = PASSERELLE__DIGEST__INIT;
    state.territory = (char *)parts->territory;
    state.until = (char *)parts->until;
    key_of(key, "state", parts->territory);
    txn_put_message(txn, key, parts->state_version + 1, &state.base);
    return txn;
}

/* Drops the changes a digest has cut (they are before every later
 * digest's range). */
static void trim_changes(store_t *store, const char *territory, int64_t until_ms)
{
    char key[DIGEST_KEY_MAX], high[24];
    key_of(key, "changes", territory);
    snprintf(high, sizeof high, "%" PRId64, until_ms);
    store_command(store, NULL, "ZREMRANGEBYSCORE %s -inf %s", key, high);
}

static void log_made(const digest_parts_t *parts, const char *event_id, const char *why)
{
    log_info("digest made", "{s:s, s:s, s:s, s:s, s:s, s:i, s:i}", "territory", parts->territory,
             "event", event_id, "since", parts->since, "until", parts->until, "by", why, "units",
             (int)parts->n_units, "changes", (int)parts->n_changes);
}

/* ======================== the clock ==================================== */

typedef enum {
    CUT_DONE,   /* made, made before (idempotency), or not owed */
    CUT_LOST,   /* Redis unavailable: try again soon */
    CUT_FAILED, /* refused, or stale too many times: try again later */
} cut_result_t;

/* The scheduled digest of a territory for the cut at cut_ms. A catch-up
 * cut (owed since before this process started) is made only if a digest
 * was made before: a new deployment starts at the next cut. Either way it
 * is not made if a digest already covers the cut (a request made one since).
 *
 * A territory with nothing envisaged and no change still gets its digest:
 * its correspondent is told there is nothing, rather than left to wonder
 * whether the digest was lost. */
static cut_result_t digest_cut(digest_t *self, const char *territory, int64_t cut_ms, bool catch_up)
{
    char idempotency_key[DIGEST_KEY_MAX];
    snprintf(idempotency_key, sizeof idempotency_key, "notifications:digest:idem:%s:%" PRId64,
             territory, cut_ms);
    /* Long enough to span the next cut and a restart's catch-up. */
    int64_t step_s = schedule_step_ms(self->interval_s, self->clock_scale) / 1000;
    uint32_t ttl_s = (uint32_t)(2 * step_s + 3600 > UINT32_MAX ? UINT32_MAX : 2 * step_s + 3600);

    for (int attempt = 0; attempt < DIGEST_COMMIT_TRIES; attempt++) {
        digest_parts_t parts;
        store_result_t read =
            digest_read(self->write_store, self->stream, territory, cut_ms, &parts);
        if (read != STORE_OK) {
            digest_parts_free(&parts);
            return read == STORE_LOST ? CUT_LOST : CUT_FAILED;
        }
        if (parts.has_state)
            trim_changes(self->write_store, territory, parts.since_ms);
        if ((catch_up && !parts.has_state) || (parts.has_state && parts.since_ms >= cut_ms)) {
            digest_parts_free(&parts);
            return CUT_DONE;
        }
        txn_t *txn = digest_txn(&parts, idempotency_key, "", ttl_s);
        txn_result_t result = TXN_REFUSED;
        if (txn) {
            const char *event_id = txn_event_id(txn);
            result =
                txn_commit(txn, self->write_store, event_id, strlen(event_id), NULL, NULL, NULL);
            if (result == TXN_COMMITTED) {
                log_made(&parts, event_id, catch_up ? "catch-up" : "schedule");
                trim_changes(self->write_store, territory, parts.until_ms);
            }
        }
        txn_destroy(&txn);
        digest_parts_free(&parts);
        switch (result) {
        case TXN_COMMITTED:
        case TXN_DUPLICATE: /* another replica made this cut */
            return CUT_DONE;
        case TXN_STALE: /* someone cut meanwhile: read again */
            continue;
        case TXN_LOST:
            return CUT_LOST;
        default:
            return CUT_FAILED;
        }
    }
    log_warn("digest not made: its state kept changing", "{s:s}", "territory", territory);
    return CUT_FAILED;
}

/* A cut a territory is owed, until its digest is made. */
typedef struct {
    int64_t cut_ms; /* 0: none */
    bool catch_up;
    int64_t retry_at_ms;
} owed_t;

/* Makes the owed digests that are due. */
static void digest_pay(digest_t *self, owed_t *owed, int64_t now_ms)
{
    bool due = false;
    for (int i = 0; i < TERRITORY_COUNT; i++)
        due |= owed[i].cut_ms && owed[i].retry_at_ms <= now_ms;
    if (!due)
        return;
    /* What this consumer already holds is applied before the cut, so that
     * the watermark does not hold the cut back for our own work. */
    for (int i = 0; i < DIGEST_DRAIN_POLLS; i++)
        if (consumer_poll_batch(self->consumer, 0, project_batch, self) <= 0)
            break;
    for (int i = 0; i < TERRITORY_COUNT; i++) {
        if (!owed[i].cut_ms || owed[i].retry_at_ms > now_ms)
            continue;
        cut_result_t result =
            digest_cut(self, digest_territories[i], owed[i].cut_ms, owed[i].catch_up);
        if (result == CUT_DONE)
            owed[i].cut_ms = 0;
        else
            owed[i].retry_at_ms =
                now_ms + (result == CUT_LOST ? DIGEST_RETRY_MS : DIGEST_REFUSED_RETRY_MS);
    }
}

/* True when the pipe says stop ($TERM, or the pipe is gone). */
static bool pipe_says_stop(zsock_t *pipe)
{
    if (!(zsock_events(pipe) & ZMQ_POLLIN))
        return false;
    zmsg_t *msg = zmsg_recv(pipe);
    char *command = msg ? zmsg_popstr(msg) : NULL;
    bool stop = !command || streq(command, "$TERM");
    zstr_free(&command);
    zmsg_destroy(&msg);
    return stop;
}

/* The actor: the projection (consumer_poll_batch, blocking briefly so that
 * $TERM and the clock are seen promptly) and the cuts. */
static void digest_actor(zsock_t *pipe, void *args)
{
    digest_t *self = args;
    zsock_signal(pipe, 0);
    zpoller_t *poller = zpoller_new(pipe, NULL);

    int64_t now_ms = time_now_ms();
    int64_t next_cut_ms =
        digest_next_cut_ms(now_ms, self->interval_s, self->at_minute, self->clock_scale);
    /* The cut before our start may have been missed while we were down. */
    int64_t missed_ms =
        digest_cut_at_or_before_ms(now_ms, self->interval_s, self->at_minute, self->clock_scale);
    owed_t owed[TERRITORY_COUNT];
    for (int i = 0; i < TERRITORY_COUNT; i++)
        owed[i] = (owed_t){.cut_ms = missed_ms, .catch_up = true, .retry_at_ms = 0};

    while (!pipe_says_stop(pipe)) {
        now_ms = time_now_ms();
        if (now_ms >= next_cut_ms) {
            for (int i = 0; i < TERRITORY_COUNT; i++)
                owed[i] = (owed_t){.cut_ms = next_cut_ms, .catch_up = false, .retry_at_ms = 0};
            next_cut_ms =
                digest_next_cut_ms(now_ms, self->interval_s, self->at_minute, self->clock_scale);
        }
        digest_pay(self, owed, now_ms);

        now_ms = time_now_ms();
        int64_t wait_ms = next_cut_ms - now_ms;
        for (int i = 0; i < TERRITORY_COUNT; i++)
            if (owed[i].cut_ms && owed[i].retry_at_ms - now_ms < wait_ms)
                wait_ms = owed[i].retry_at_ms - now_ms;
        if (wait_ms > self->block_ms)
            wait_ms = self->block_ms;
        if (wait_ms < 1)
            wait_ms = 1;
        if (consumer_poll_batch(self->consumer, (int)wait_ms, project_batch, self) < 0) {
            /* Redis is away: wait for it, or for $TERM. */
            zpoller_wait(poller, DIGEST_RETRY_MS);
        }
    }
    zpoller_destroy(&poller);
}

/* ======================== life cycle =================================== */

digest_t *digest_new(const digest_config_t *cfg)
{
    if (!cfg || !cfg->store || !cfg->consumer || !*cfg->consumer) {
        log_error("digest configuration incomplete", NULL);
        return NULL;
    }
    digest_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->stream = strdup(cfg->stream && *cfg->stream ? cfg->stream : DIGEST_DEFAULT_STREAM);
    self->consumer_name = strdup(cfg->consumer);
    self->interval_s = cfg->interval_s > 0 ? cfg->interval_s : DIGEST_DEFAULT_INTERVAL_S;
    self->at_minute = minute_of_day(cfg->at_minute);
    self->clock_scale = cfg->clock_scale;
    int command_timeout_ms =
        cfg->store->command_timeout_ms > 0 ? cfg->store->command_timeout_ms : 2000;
    /* The BLOCK must end well within the command timeout (store.h). */
    self->block_ms =
        command_timeout_ms / 2 < DIGEST_BLOCK_MS ? command_timeout_ms / 2 : DIGEST_BLOCK_MS;
    if (self->block_ms < 1)
        self->block_ms = 1;
    self->read_store = store_new(cfg->store);
    self->write_store = store_new(cfg->store);
    if (!self->stream || !self->consumer_name || !self->read_store || !self->write_store) {
        digest_destroy(&self);
        return NULL;
    }
    self->script = store_script_add(self->read_store, (const char *)notify_digest_lua);
    consumer_config_t consumer_cfg = {
        .stream = self->stream,
        .group = DIGEST_GROUP,
        .consumer = self->consumer_name,
        .done_ttl_s = DIGEST_MARKER_TTL_S,
    };
    self->consumer = consumer_new(self->read_store, &consumer_cfg);
    if (self->script < 0 || !self->consumer) {
        log_error("digest cannot start its consumer", "{s:s}", "stream", self->stream);
        digest_destroy(&self);
        return NULL;
    }
    self->actor = zactor_new(digest_actor, self);
    if (!self->actor) {
        log_error("digest cannot start its thread", NULL);
        digest_destroy(&self);
        return NULL;
    }
    char next[TIME_RFC3339_LEN];
    time_rfc3339(
        digest_next_cut_ms(time_now_ms(), self->interval_s, self->at_minute, self->clock_scale),
        next);
    log_info("digest started", "{s:s, s:s, s:I, s:i, s:s}", "stream", self->stream, "consumer",
             self->consumer_name, "interval_s", (json_int_t)self->interval_s, "at_minute",
             self->at_minute, "next_cut", next);
    return self;
}

void digest_destroy(digest_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    digest_t *self = *self_p;
    /* The actor first: it uses everything below. */
    zactor_destroy(&self->actor);
    consumer_destroy(&self->consumer);
    store_destroy(&self->read_store);
    store_destroy(&self->write_store);
    free(self->stream);
    free(self->consumer_name);
    free(self);
    *self_p = NULL;
}

/* ======================== the request ================================== */

/* One territory: a normal write, committed by the server with the others
 * of its batch; a retry with the same key gets the first reply. */
static void send_one(notify_t *notify, const call_t *call, const char *territory, reply_t *reply)
{
    digest_parts_t parts;
    store_result_t read =
        digest_read(notify->store, DIGEST_DEFAULT_STREAM, territory, time_now_ms(), &parts);
    if (read != STORE_OK) {
        reply_store_failure(reply, notify->store, read);
        digest_parts_free(&parts);
        return;
    }
    txn_t *txn =
        digest_txn(&parts, call->idempotency_key, call->fingerprint, call->idempotency_ttl_s);
    if (!txn) {
        reply_error(reply, ST_INTERNAL, NULL, "out of memory building the digest");
        digest_parts_free(&parts);
        return;
    }
    char *event_id = (char *)txn_event_id(txn);
    Passerelle__DigestSendReply body = PASSERELLE__DIGEST_SEND_REPLY__INIT;
    body.n_event_ids = 1;
    body.event_ids = &event_id;
    reply_set_body(reply, &body.base);
    char subject[32];
    snprintf(subject, sizeof subject, "territories/%s", territory);
    reply_log_commit(reply, "digest made", subject);
    reply_commit(reply, call, notify->store, txn);
    txn_destroy(&txn);
    digest_parts_free(&parts);
}

/* One territory of an all-territory request, committed now under its own
 * key (the request's and the territory's), so that a retry after a failure
 * halfway makes the rest and finds the first ones made. The event id goes
 * to event_id. False with the reply set, or with reply->retry when stale
 * inside the server (which runs the request again on fresh reads). */
static bool send_each(notify_t *notify, const call_t *call, const char *territory,
                      char event_id[ID_LEN], reply_t *reply)
{
    char idempotency_key[640];
    if (call->idempotency_key)
        snprintf(idempotency_key, sizeof idempotency_key, "%s:%s", call->idempotency_key,
                 territory);
    for (int attempt = 0; attempt < DIGEST_COMMIT_TRIES; attempt++) {
        digest_parts_t parts;
        store_result_t read =
            digest_read(notify->store, DIGEST_DEFAULT_STREAM, territory, time_now_ms(), &parts);
        if (read != STORE_OK) {
            reply_store_failure(reply, notify->store, read);
            digest_parts_free(&parts);
            return false;
        }
        txn_t *txn = digest_txn(&parts, call->idempotency_key ? idempotency_key : NULL,
                                call->fingerprint, call->idempotency_ttl_s);
        uint8_t *stored = NULL;
        size_t stored_len = 0;
        txn_result_t result = TXN_REFUSED;
        if (txn) {
            const char *made = txn_event_id(txn);
            result = txn_commit(txn, notify->store, made, strlen(made), &stored, &stored_len, NULL);
            if (result == TXN_COMMITTED) {
                snprintf(event_id, ID_LEN, "%s", made);
                log_made(&parts, made, "request");
            } else if (result == TXN_DUPLICATE) {
                snprintf(event_id, ID_LEN, "%.*s", (int)(stored_len < ID_LEN ? stored_len : 0),
                         stored ? (const char *)stored : "");
            }
        }
        free(stored);
        txn_destroy(&txn);
        digest_parts_free(&parts);
        switch (result) {
        case TXN_COMMITTED:
        case TXN_DUPLICATE:
            return true;
        case TXN_STALE:
            /* Inside the server, reads come from the batch's snapshot,
             * which would stay stale: let the server run us again. */
            if (reply->group_store) {
                reply->retry = true;
                return false;
            }
            continue;
        case TXN_LOST:
            reply_store_failure(reply, notify->store, STORE_LOST);
            return false;
        case TXN_KEY_REUSED:
            reply_error(reply, ST_INVALID_ARGUMENT, "idempotency_key",
                        "idempotency key already used for another request");
            return false;
        default:
            reply_error(reply, ST_INTERNAL, NULL, "store refused the digest of %s", territory);
            return false;
        }
    }
    reply->retry = true;
    return false;
}

/* Every territory in turn, then the reply, stored under the request's key
 * by a transaction of its own, so that a retry is answered from it. */
static void send_all(notify_t *notify, const call_t *call, reply_t *reply)
{
    /* Every state record is read before anything is committed: under the
     * server's snapshot, a first run only learns what to read (store.h)
     * and must stop before its first write. */
    for (int i = 0; i < TERRITORY_COUNT; i++) {
        char key[DIGEST_KEY_MAX];
        key_of(key, "state", digest_territories[i]);
        uint64_t version = 0;
        uint8_t *data = NULL;
        size_t len = 0;
        store_result_t read = store_record_get(notify->store, key, &version, &data, &len);
        free(data);
        if (read != STORE_OK) {
            reply_store_failure(reply, notify->store, read);
            return;
        }
    }
    /* The server looks the key up before it runs us; outside a server
     * nobody did, and the digests below must not be made for a key that
     * answered another request. */
    if (call->idempotency_key && !reply->group_store) {
        uint8_t *stored = NULL;
        size_t stored_len = 0;
        txn_result_t found = txn_lookup(notify->store, call->idempotency_key, call->fingerprint,
                                        &stored, &stored_len);
        if (found == TXN_DUPLICATE) {
            free(reply->stored);
            reply->stored = stored;
            reply->stored_len = stored_len;
            return;
        }
        free(stored);
        if (found == TXN_KEY_REUSED) {
            reply_error(reply, ST_INVALID_ARGUMENT, "idempotency_key",
                        "idempotency key already used for another request");
            return;
        }
        if (found != TXN_NEW) {
            reply_store_failure(reply, notify->store,
                                found == TXN_LOST ? STORE_LOST : STORE_REFUSED);
            return;
        }
    }
    char ids[TERRITORY_COUNT][ID_LEN];
    char *event_ids[TERRITORY_COUNT];
    for (int i = 0; i < TERRITORY_COUNT; i++) {
        if (!send_each(notify, call, digest_territories[i], ids[i], reply))
            return;
        event_ids[i] = ids[i];
    }
    Passerelle__DigestSendReply body = PASSERELLE__DIGEST_SEND_REPLY__INIT;
    body.n_event_ids = TERRITORY_COUNT;
    body.event_ids = event_ids;
    reply_set_body(reply, &body.base);
    if (!call->idempotency_key)
        return;
    txn_t *txn = txn_new(call->idempotency_key, call->fingerprint, call->idempotency_ttl_s);
    if (!txn) {
        reply_error(reply, ST_INTERNAL, NULL, "out of memory");
        return;
    }
    reply_commit(reply, call, notify->store, txn);
    txn_destroy(&txn);
}

void handle_digest_send(void *ctx, const call_t *call, const ProtobufCMessage *request,
                        reply_t *reply)
{
    notify_t *notify = ctx;
    const Passerelle__DigestSendRequest *req = (const Passerelle__DigestSendRequest *)request;
    if (req->territory && *req->territory) {
        char territory[TERRITORY_MAX];
        if (!territory_code(req->territory, territory)) {
            reply_error(reply, ST_INVALID_ARGUMENT, "territory",
                        "territory must be one of CT1 to CT6, not '%.16s'", req->territory);
            return;
        }
        send_one(notify, call, territory, reply);
    } else {
        send_all(notify, call, reply);
    }
}

/* ======================== the e-mail =================================== */

/* A growing text; after a failed allocation it stays failed. */
typedef struct {
    char *data;
    size_t len, capacity;
    bool failed;
} text_t;

static void text_add(text_t *text, const char *bytes, size_t len)
{
    if (text->failed)
        return;
    if (text->len + len + 1 > text->capacity) {
        size_t capacity = text->capacity ? text->capacity : 1024;
        while (text->len + len + 1 > capacity)
            capacity *= 2;
        char *grown = realloc(text->data, capacity);
        if (!grown) {
            text->failed = true;
            return;
        }
        text->data = grown;
        text->capacity = capacity;
    }
    memcpy(text->data + text->len, bytes, len);
    text->len += len;
    text->data[text->len] = '\0';
}

static void text_str(text_t *text, const char *s)
{
    text_add(text, s, strlen(s));
}

__attribute__((format(printf, 2, 3))) static void text_printf(text_t *text, const char *format, ...)
{
    char small[256];
    va_list args;
    va_start(args, format);
    int len = vsnprintf(small, sizeof small, format, args);
    va_end(args);
    if (len < 0) {
        text->failed = true;
        return;
    }
    if ((size_t)len < sizeof small) {
        text_add(text, small, (size_t)len);
        return;
    }
    char *large = malloc((size_t)len + 1);
    if (!large) {
        text->failed = true;
        return;
    }
    va_start(args, format);
    vsnprintf(large, (size_t)len + 1, format, args);
    va_end(args);
    text_add(text, large, (size_t)len);
    free(large);
}

/* A value of the data in the body, as one line: control characters (a
 * newline in an address) become spaces. Padded with spaces to width
 * characters (UTF-8 code points), and one more space after it. Returns
 * nothing: a value longer than its column pushes the rest along. */
static void text_cell(text_t *text, const char *value, int width)
{
    int shown = 0;
    for (const unsigned char *p = (const unsigned char *)(value ? value : ""); *p; p++) {
        char c = (*p < 0x20 || *p == 0x7f) ? ' ' : (char)*p;
        text_add(text, &c, 1);
        if ((*p & 0xC0) != 0x80)
            shown++;
    }
    for (; width > 0 && shown < width; shown++)
        text_add(text, " ", 1);
    if (width > 0)
        text_add(text, " ", 1);
}

/* "YYYY-MM-DD HH:MM" in Paris time of an instant. */
static void paris_local_text(int64_t utc_ms, char *out, size_t size)
{
    time_t utc_s = (time_t)floor_div(utc_ms, 1000);
    time_t local_s = utc_s + time_paris_offset_s(utc_s);
    struct tm tm;
    gmtime_r(&local_s, &tm);
    snprintf(out, size, "%04d-%02d-%02d %02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min);
}

/* The RFC 5322 date of an instant, in Paris time with its offset. */
static void rfc5322_date(int64_t utc_ms, char *out, size_t size)
{
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t utc_s = (time_t)floor_div(utc_ms, 1000);
    int offset_s = time_paris_offset_s(utc_s);
    time_t local_s = utc_s + offset_s;
    struct tm tm;
    gmtime_r(&local_s, &tm);
    snprintf(out, size, "%s, %02d %s %04d %02d:%02d:%02d +%02d%02d", days[tm.tm_wday % 7],
             tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
             tm.tm_sec, offset_s / 3600, offset_s % 3600 / 60);
}

static const char *level_text(const Passerelle__DigestUnit *unit)
{
    switch (unit->has_level ? unit->level : PASSERELLE__CONVENTION_LEVEL__LEVEL_UNSPECIFIED) {
    case PASSERELLE__CONVENTION_LEVEL__LEVEL_LOC1:
        return "LOC1";
    case PASSERELLE__CONVENTION_LEVEL__LEVEL_LOC2:
        return "LOC2";
    case PASSERELLE__CONVENTION_LEVEL__LEVEL_LOC3:
        return "LOC3";
    default:
        return "-";
    }
}

/* The body, as UTF-8 lines ending in '\n' (encoded afterwards). */
static void render_body(text_t *body, const Passerelle__Digest *digest)
{
    const char *territory = digest->territory ? digest->territory : "";
    const char *name = refdata_territory_name(territory);
    char since[64] = "", until[64] = "";
    int64_t since_ms = 0, until_ms = 0;
    bool has_since = time_parse_rfc3339(digest->since, &since_ms);
    if (has_since)
        paris_local_text(since_ms, since, sizeof since);
    if (time_parse_rfc3339(digest->until, &until_ms))
        paris_local_text(until_ms, until, sizeof until);

    text_str(body, "Passerelle - digest of the territory's ANAH conventions\n\n");
    text_str(body, "Territory: ");
    text_cell(body, territory, 0);
    if (name) {
        text_str(body, " - ");
        text_cell(body, name, 0);
    }
    text_str(body, "\n");
    if (has_since)
        text_printf(body, "Period: from %s to %s (Paris time)\n\n", since, until);
    else
        text_printf(body, "Period: up to %s (Paris time), the first digest\n\n", until);

    text_printf(body, "Units whose ANAH convention is envisaged, not yet signed: %zu\n\n",
                digest->n_envisaged);
    if (digest->n_envisaged == 0) {
        text_str(body, "None at the end of the period.\n");
    } else {
        text_cell(body, "Reference", 18);
        text_cell(body, "Commune", 27);
        text_cell(body, "Level", 6);
        text_str(body, "Envisaged on\n");
        text_cell(body, "Address", 47);
        text_str(body, "Unit\n");
        text_str(body, "------------------ --------------------------- ------ ------------\n");
        for (size_t i = 0; i < digest->n_envisaged; i++) {
            const Passerelle__DigestUnit *unit = digest->envisaged[i];
            if (i > 0)
                text_str(body, "\n");
            text_cell(body, unit->external_ref, 18);
            text_cell(body, unit->commune_name, 27);
            text_cell(body, level_text(unit), 6);
            text_cell(body, unit->envisaged_on, 0);
            text_str(body, "\n");
            text_cell(body, unit->address, 47);
            text_cell(body, unit->unit_id, 0);
            text_str(body, "\n");
        }
    }

    text_printf(body, "\nChanges during the period: %zu\n\n", digest->n_changes);
    if (digest->n_changes == 0) {
        text_str(body, "None.\n");
    } else {
        text_cell(body, "Time (Paris)", 16);
        text_cell(body, "Change", 10);
        text_cell(body, "Reference", 18);
        text_str(body, "Commune\n");
        text_str(body, "---------------- ---------- ------------------ ----------------\n");
        for (size_t i = 0; i < digest->n_changes; i++) {
            const Passerelle__DigestChange *change = digest->changes[i];
            char when[64] = "";
            int64_t when_ms = 0;
            if (time_parse_rfc3339(change->time, &when_ms))
                paris_local_text(when_ms, when, sizeof when);
            const char *type = change->type ? change->type : "";
            if (strncmp(type, "convention.", 11) == 0)
                type += 11;
            text_cell(body, when, 16);
            text_cell(body, type, 10);
            text_cell(body, change->external_ref, 18);
            text_cell(body, change->commune_name, 0);
            text_str(body, "\n");
        }
    }
    text_str(body, "\nSource: Passerelle, from the convention milestones recorded by the "
                   "Métropole Aix-Marseille-Provence and its PIG/OPAH operators.\n");
}

/* The length of the UTF-8 sequence starting at s (at most n bytes), or 1
 * when it is not one: such bytes are encoded one by one. */
static size_t utf8_sequence(const unsigned char *s, size_t n)
{
    size_t len = s[0] >= 0xF0 ? 4 : s[0] >= 0xE0 ? 3 : s[0] >= 0xC0 ? 2 : 1;
    if (len > n)
        return 1;
    for (size_t k = 1; k < len; k++)
        if ((s[k] & 0xC0) != 0x80)
            return 1;
    return len;
}

/* One line of text, quoted-printable (RFC 2045), ending in CRLF: lines of
 * at most 76 characters, soft breaks ("=") between characters, never
 * inside an escape or a UTF-8 sequence, so that each encoded line decodes
 * to whole characters. */
static void qp_line(text_t *out, const unsigned char *s, size_t n)
{
    size_t column = 0;
    for (size_t i = 0; i < n;) {
        size_t unit = utf8_sequence(s + i, n - i);
        char encoded[16];
        size_t encoded_len = 0;
        for (size_t k = 0; k < unit; k++) {
            unsigned char c = s[i + k];
            bool at_end = i + k + 1 == n;
            bool plain = (c >= 33 && c <= 126 && c != '=') || ((c == ' ' || c == '\t') && !at_end);
            if (plain) {
                encoded[encoded_len++] = (char)c;
            } else {
                static const char hex[] = "0123456789ABCDEF";
                encoded[encoded_len++] = '=';
                encoded[encoded_len++] = hex[c >> 4];
                encoded[encoded_len++] = hex[c & 15];
            }
        }
        /* The last character may take column 76; others leave it for '='. */
        size_t limit = i + unit == n ? 76 : 75;
        if (column + encoded_len > limit) {
            text_str(out, "=\r\n");
            column = 0;
        }
        text_add(out, encoded, encoded_len);
        column += encoded_len;
        i += unit;
    }
    text_str(out, "\r\n");
}

/* True if s can stand in a header as is: printable ASCII (no line break,
 * no 8-bit byte, which would need RFC 2047), and none of forbid. */
static bool header_safe(const char *s, const char *forbid)
{
    if (!s || !*s)
        return false;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p >= 0x7f || strchr(forbid, *p))
            return false;
    return true;
}

char *digest_render_email(const Passerelle__Digest *digest, const char *from, const char *to,
                          const char *message_id, size_t *len_out)
{
    if (len_out)
        *len_out = 0;
    /* A line break in an address would let data write headers. */
    if (!digest || !header_safe(from, "") || !header_safe(to, "") ||
        !header_safe(message_id, "<>@ \t")) {
        log_warn("digest e-mail not rendered: an address or the id is not usable", NULL);
        return NULL;
    }
    int64_t until_ms = 0;
    if (!time_parse_rfc3339(digest->until, &until_ms))
        until_ms = time_now_ms();
    char date[96];
    rfc5322_date(until_ms, date, sizeof date);
    const char *territory = digest->territory ? digest->territory : "";

    text_t mail = {0}, body = {0};
    text_printf(&mail, "From: %s\r\n", from);
    text_printf(&mail, "To: %s\r\n", to);
    text_str(&mail, "Subject: Passerelle - ");
    text_cell(&mail, territory, 0);
    text_printf(&mail, " - %zu %s with an envisaged ANAH convention\r\n", digest->n_envisaged,
                digest->n_envisaged == 1 ? "unit" : "units");
    text_printf(&mail, "Date: %s\r\n", date);
    text_printf(&mail, "Message-ID: <%s@passerelle>\r\n", message_id);
    text_str(&mail, "MIME-Version: 1.0\r\n");
    text_str(&mail, "Content-Type: text/plain; charset=UTF-8\r\n");
    text_str(&mail, "Content-Transfer-Encoding: quoted-printable\r\n");
    text_str(&mail, "\r\n");

    render_body(&body, digest);
    const unsigned char *start = (const unsigned char *)(body.data ? body.data : "");
    const unsigned char *end = start + body.len;
    while (start < end) {
        const unsigned char *newline = memchr(start, '\n', (size_t)(end - start));
        size_t line_len = newline ? (size_t)(newline - start) : (size_t)(end - start);
        qp_line(&mail, start, line_len);
        start += line_len + (newline ? 1 : 0);
    }
    bool failed = body.failed || mail.failed;
    free(body.data);
    if (failed) {
        free(mail.data);
        return NULL;
    }
    if (len_out)
        *len_out = mail.len;
    return mail.data;
}
