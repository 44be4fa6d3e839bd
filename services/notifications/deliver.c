/* The delivery worker (deliver.h): an actor around the outbox. */
#include "deliver.h"

#include "actor.h"
#include "cloudevent.h"
#include "digest.h"
#include "ids.h"
#include "log.h"
#include "match.h"
#include "notify.h"
#include "outbox.h"
#include "txn.h"
#include "webhook.h"

#include <czmq.h>
#include <math.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

extern const char notify_deliver_lua[];

/* The longest wait between two looks at the due set. */
#define IDLE_WAIT_MS 1000
/* The worker takes up to this many times what it may have in flight, so
 * that a transfer that ends is followed at once by the next, without a
 * Redis round trip in between. What it takes waits at most CLAIM_AHEAD - 1
 * transfers' time before it starts, then takes one: hence the lease,
 * CLAIM_AHEAD transfers' time and a margin (65 s by default). */
#define CLAIM_AHEAD     4
#define LEASE_MARGIN_MS 5000
/* The most that Retry-After may put off an attempt. */
#define RETRY_AFTER_MAX_S (24 * 3600)

typedef struct flight_t flight_t;
struct flight_t {
    flight_t *prev, *next; /* every flight held, to free at the end */
    flight_t *ready_next;  /* in the ready list: taken, not started yet */
    bool ready;
    char member[NOTIFY_KEY_MAX];
    char sub_id[ID_LEN];
    Passerelle__Delivery *delivery; /* unpacked, owned */
    int64_t started_ms;
    char at[TIME_RFC3339_LEN];
};

typedef struct {
    flight_t *flight;
    outbox_result_t result;
} finished_t;

struct deliver_t {
    zactor_t *actor;
    deliver_config_t cfg;
    store_config_t store_cfg;
    char smtp_url[256];
    char smtp_from[256];
    outbox_t *outbox;  /* made before the actor, so deliver_wake works at once */
    atomic_bool woken; /* deliver_wake: something was queued, claim at once */
    bool started;
    /* owned by the actor thread */
    store_t *store;
    int script;            /* deliver.lua */
    int64_t next_claim_ms; /* zclock_mono: when to look at the due sets unasked */
    subcache_t *subs;
    flight_t *flights;
    flight_t *ready_head, *ready_tail; /* taken, waiting for room, oldest first */
    size_t ready_count;
    finished_t *finished;
    size_t finished_count, finished_size;
    /* Declared by deliver_new before the actor starts, then only read;
     * NULL without a registry (metric_add and metric_observe skip them). */
    metric_t *deliveries_total;
    metric_t *attempt_seconds;
    metric_t *envisaged_seconds;
};

/* ====================================================================== */
/* Times and histograms                                                   */
/* ====================================================================== */

/* 10% wide buckets: bucket i holds [1.1^i - 1, 1.1^(i+1) - 1) ms. */
static int latency_bucket(double ms)
{
    return (int)floor(log1p(ms < 0 ? 0 : ms) / log(1.1));
}

static double bucket_upper_ms(int i)
{
    return pow(1.1, i + 1) - 1.0;
}

store_result_t deliver_latency_read(store_t *store, const char *event_type, const char *territory,
                                    deliver_latency_t *out)
{
    memset(out, 0, sizeof *out);
    char key[NOTIFY_KEY_MAX];
    notify_key_latency(event_type, territory, key);
    redisReply *r = NULL;
    store_result_t res = store_command(store, &r, "HGETALL %s", key);
    if (res != STORE_OK)
        return res;
    enum { BUCKETS = 400 };
    uint64_t counts[BUCKETS] = {0};
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
        const char *field = r->element[i]->str;
        long long value = strtoll(r->element[i + 1]->str, NULL, 10);
        if (strcmp(field, "count") == 0)
            out->count = (uint64_t)value;
        else if (strcmp(field, "max") == 0)
            out->max_ms = (double)value;
        else if (field[0] == 'b') {
            long b = strtol(field + 1, NULL, 10);
            if (b >= 0 && b < BUCKETS)
                counts[b] += (uint64_t)value;
        }
    }
    freeReplyObject(r);
    uint64_t total = 0;
    for (int i = 0; i < BUCKETS; i++)
        total += counts[i];
    if (total == 0)
        return STORE_OK;
    uint64_t seen = 0;
    bool p50 = false;
    for (int i = 0; i < BUCKETS; i++) {
        seen += counts[i];
        if (!p50 && seen * 100 >= total * 50) {
            out->p50_ms = fmin(bucket_upper_ms(i), out->max_ms);
            p50 = true;
        }
        if (seen * 100 >= total * 99) {
            out->p99_ms = fmin(bucket_upper_ms(i), out->max_ms);
            break;
        }
    }
    return STORE_OK;
}

/* ====================================================================== */
/* Dead letters                                                           */
/* ====================================================================== */

int deliver_scripts_add(store_t *store)
{
    return store_script_add(store, notify_deliver_lua);
}

void deliver_list_free(Passerelle__Delivery **items, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (items[i])
            protobuf_c_message_free_unpacked(&items[i]->base, NULL);
    free(items);
}

store_result_t deliver_dead_list(store_t *store, const char *sub_id, int64_t since_ms,
                                 unsigned limit, Passerelle__Delivery ***items, size_t *count)
{
    *items = NULL;
    *count = 0;
    char dead[NOTIFY_KEY_MAX];
    notify_key_dead(sub_id, dead);
    redisReply *r = NULL;
    store_result_t res = store_command(store, &r, "ZRANGEBYSCORE %s %lld +inf LIMIT 0 %u", dead,
                                       (long long)since_ms, limit);
    if (res != STORE_OK)
        return res;
    size_t n = r->type == REDIS_REPLY_ARRAY ? r->elements : 0;
    Passerelle__Delivery **out = calloc(n ? n : 1, sizeof *out);
    if (!out) {
        freeReplyObject(r);
        return STORE_REFUSED;
    }
    size_t got = 0;
    for (size_t i = 0; i < n; i++) {
        char key[NOTIFY_KEY_MAX];
        notify_key_delivery(r->element[i]->str, sub_id, key);
        redisReply *d = NULL;
        res = store_command(store, &d, "GET %s", key);
        if (res != STORE_OK) {
            freeReplyObject(r);
            deliver_list_free(out, got);
            return res;
        }
        if (d->type == REDIS_REPLY_STRING) {
            out[got] = passerelle__delivery__unpack(NULL, d->len, (const uint8_t *)d->str);
            if (out[got])
                got++;
        }
        freeReplyObject(d);
    }
    freeReplyObject(r);
    *items = out;
    *count = got;
    return STORE_OK;
}

static const char *delivery_subject(const Passerelle__Delivery *d)
{
    if (d->event && d->event->subject && *d->event->subject)
        return d->event->subject;
    return d->event && d->event->id ? d->event->id : "";
}

/* One outcome's fields among deliver.lua's arguments. The strings are
 * borrowed from the delivery, which must outlive the call, but for the
 * delivery packed again (retry, dead, replay), which is owned. */
#define OUTCOME_FIELDS 11
typedef struct {
    const char *op, *sub, *subject, *id, *type, *territory;
    char next[24], bucket[16], latency[24];
    uint8_t *packed; /* owned; NULL when the op does not store the delivery */
    size_t packed_len;
    const uint8_t *attempt; /* borrowed; NULL for none */
    size_t attempt_len;
} outcome_args_t;

/* Fills a; false if out of memory. attempt (packed, may be NULL) is
 * borrowed and must outlive the call. */
static bool outcome_args(outcome_args_t *a, const char *op, const Passerelle__Delivery *d,
                         int64_t next_ms, const uint8_t *attempt, size_t attempt_len,
                         int64_t latency_ms)
{
    memset(a, 0, sizeof *a);
    a->op = op;
    a->sub = d->subscription_id;
    a->subject = delivery_subject(d);
    a->id = d->id;
    a->type = d->event && d->event->type ? d->event->type : "";
    a->territory = d->territory ? d->territory : "";
    snprintf(a->next, sizeof a->next, "%lld", (long long)next_ms);
    if (latency_ms >= 0)
        snprintf(a->bucket, sizeof a->bucket, "b%d", latency_bucket((double)latency_ms));
    snprintf(a->latency, sizeof a->latency, "%lld", (long long)latency_ms);
    a->attempt = attempt;
    a->attempt_len = attempt ? attempt_len : 0;
    /* Only a delivery that stays (a retry, a dead letter, a replay) is
     * written back: the others would copy it for nothing. */
    if (strcmp(op, "retry") == 0 || strcmp(op, "dead") == 0 || strcmp(op, "replay") == 0) {
        a->packed_len = passerelle__delivery__get_packed_size(d);
        a->packed = malloc(a->packed_len ? a->packed_len : 1);
        if (!a->packed)
            return false;
        passerelle__delivery__pack(d, a->packed);
    }
    return true;
}

/* The arguments of one call of deliver.lua: outcomes, then a claim. */
typedef struct {
    const char **argv;
    size_t *lens;
    int argc;
    char now[24], kept[16], count[16], lease[24], most[16], room[16];
} call_args_t;

#define CALL_KEYS 4

/* Builds c; most 0 for no claim. The room of some subscriptions (subs,
 * rooms: n_rooms each) is given, the others have default_room. Everything
 * given is borrowed and must outlive the call. False if out of memory. */
static bool call_args_make(call_args_t *c, int64_t now_ms, uint32_t kept,
                           const outcome_args_t *outs, size_t n, long lease_ms, unsigned most,
                           unsigned default_room, const char *const *subs, char (*rooms)[12],
                           size_t n_rooms)
{
    memset(c, 0, sizeof *c);
    size_t max = CALL_KEYS + 3 + OUTCOME_FIELDS * n + 3 + 2 * n_rooms;
    c->argv = calloc(max, sizeof *c->argv);
    c->lens = calloc(max, sizeof *c->lens);
    if (!c->argv || !c->lens) {
        free(c->argv);
        free(c->lens);
        return false;
    }
    snprintf(c->now, sizeof c->now, "%lld", (long long)now_ms);
    snprintf(c->kept, sizeof c->kept, "%u", kept);
    snprintf(c->count, sizeof c->count, "%zu", n);
    snprintf(c->lease, sizeof c->lease, "%ld", lease_ms);
    snprintf(c->most, sizeof c->most, "%u", most);
    snprintf(c->room, sizeof c->room, "%u", default_room);
    size_t k = 0;
#define ARG(s)     (c->argv[k] = (s), c->lens[k] = strlen(c->argv[k]), k++)
#define ARGB(p, l) (c->argv[k] = (const char *)(p), c->lens[k] = (l), k++)
    ARG(NOTIFY_DUE_SUBS);
    ARG(NOTIFY_INACTIVE);
    ARG(NOTIFY_META_KEY);
    ARG(NOTIFY_DUE_LEGACY);
    ARG(c->now);
    ARG(c->kept);
    ARG(c->count);
    for (size_t i = 0; i < n; i++) {
        const outcome_args_t *a = &outs[i];
        ARG(a->op);
        ARG(a->sub);
        ARG(a->subject);
        ARG(a->id);
        ARG(a->type);
        ARG(a->territory);
        ARG(a->next);
        ARGB(a->packed ? (const char *)a->packed : "", a->packed ? a->packed_len : 0);
        ARGB(a->attempt ? (const char *)a->attempt : "", a->attempt_len);
        ARG(a->bucket);
        ARG(a->latency);
    }
    ARG(c->lease);
    ARG(c->most);
    ARG(c->room);
    for (size_t i = 0; i < n_rooms; i++) {
        ARG(subs[i]);
        ARG(rooms[i]);
    }
#undef ARG
#undef ARGB
    c->argc = (int)k;
    return true;
}

static void call_args_free(call_args_t *c)
{
    free(c->argv);
    free(c->lens);
    c->argv = NULL;
    c->lens = NULL;
}

/* The fields of a deliver.lua answer: its header, and outcome i's. */
static bool call_reply_ok(const redisReply *r, size_t n_outcomes)
{
    return r && r->type == REDIS_REPLY_ARRAY && r->elements >= 3 + 2 * n_outcomes &&
           r->element[0]->type == REDIS_REPLY_INTEGER && r->element[1]->type == REDIS_REPLY_INTEGER;
}

static long long call_reply_int(const redisReply *r, size_t i)
{
    return r->element[i]->type == REDIS_REPLY_INTEGER ? r->element[i]->integer : 0;
}

/* Outcomes alone (no claim), in one call: a replay, releases. *applied
 * (may be NULL) counts those applied. */
static store_result_t outcomes_run(store_t *store, int script, const outcome_args_t *outs, size_t n,
                                   uint32_t kept, unsigned *applied)
{
    call_args_t c;
    if (!call_args_make(&c, time_now_ms(), kept, outs, n, 0, 0, 0, NULL, NULL, 0))
        return STORE_REFUSED;
    redisReply *r = NULL;
    store_result_t res = store_script_run(store, script, &r, CALL_KEYS, c.argc, c.argv, c.lens);
    call_args_free(&c);
    if (res != STORE_OK)
        return res;
    for (size_t i = 0; applied && call_reply_ok(r, n) && i < n; i++)
        *applied += call_reply_int(r, 3 + 2 * i) == 1;
    freeReplyObject(r);
    return STORE_OK;
}

store_result_t deliver_replay(store_t *store, int script, const char *sub_id,
                              const char *delivery_id, int64_t since_ms, unsigned *replayed,
                              bool *found)
{
    *replayed = 0;
    *found = false;
    Passerelle__Delivery **items = NULL;
    size_t count = 0;
    store_result_t res;
    if (delivery_id) {
        char key[NOTIFY_KEY_MAX];
        notify_key_delivery(delivery_id, sub_id, key);
        redisReply *d = NULL;
        res = store_command(store, &d, "GET %s", key);
        if (res != STORE_OK)
            return res;
        items = calloc(1, sizeof *items);
        if (items && d->type == REDIS_REPLY_STRING) {
            items[0] = passerelle__delivery__unpack(NULL, d->len, (const uint8_t *)d->str);
            count = items[0] ? 1 : 0;
        }
        freeReplyObject(d);
    } else {
        res = deliver_dead_list(store, sub_id, since_ms, 100000, &items, &count);
        if (res != STORE_OK)
            return res;
    }
    /* In calls of up to REPLAY_BATCH: one round trip for many, and no
     * call long enough to hold Redis up. */
    enum { REPLAY_BATCH = 256 };
    Passerelle__Delivery *copies = calloc(REPLAY_BATCH, sizeof *copies);
    outcome_args_t *args = calloc(REPLAY_BATCH, sizeof *args);
    if (!copies || !args)
        res = STORE_REFUSED;
    for (size_t from = 0; res == STORE_OK && from < count; from += REPLAY_BATCH) {
        size_t n = 0;
        for (size_t i = from; i < count && n < REPLAY_BATCH; i++) {
            Passerelle__Delivery *d = &copies[n];
            *d = *items[i];
            d->has_state = true;
            d->state = PASSERELLE__DELIVERY_STATE__DELIVERY_PENDING;
            d->has_attempts = true;
            d->attempts = 0;
            d->dead_at = NULL;
            d->next_attempt_at = NULL;
            if (!outcome_args(&args[n], "replay", d, 0, NULL, 0, -1)) {
                res = STORE_REFUSED;
                break;
            }
            n++;
        }
        if (res == STORE_OK)
            res = outcomes_run(store, script, args, n, 0, replayed);
        for (size_t i = 0; i < n; i++)
            free(args[i].packed);
    }
    *found = *replayed > 0;
    free(copies);
    free(args);
    deliver_list_free(items, count);
    return res;
}

/* ====================================================================== */
/* Sending                                                                */
/* ====================================================================== */

static flight_t *flight_new(deliver_t *self)
{
    flight_t *flight = calloc(1, sizeof *flight);
    if (!flight)
        return NULL;
    flight->next = self->flights;
    if (self->flights)
        self->flights->prev = flight;
    self->flights = flight;
    return flight;
}

static void ready_remove(deliver_t *self, flight_t *flight)
{
    flight_t **link = &self->ready_head;
    flight_t *before = NULL;
    while (*link && *link != flight) {
        before = *link;
        link = &(*link)->ready_next;
    }
    if (!*link)
        return;
    *link = flight->ready_next;
    if (self->ready_tail == flight)
        self->ready_tail = before;
    flight->ready = false;
    flight->ready_next = NULL;
    self->ready_count--;
}

static void flight_free(deliver_t *self, flight_t *flight)
{
    if (!flight)
        return;
    if (flight->ready)
        ready_remove(self, flight);
    if (flight->prev)
        flight->prev->next = flight->next;
    else
        self->flights = flight->next;
    if (flight->next)
        flight->next->prev = flight->prev;
    if (flight->delivery)
        protobuf_c_message_free_unpacked(&flight->delivery->base, NULL);
    free(flight);
}

/* The secrets that sign now: the current one, and the previous one while
 * its overlap lasts. */
static size_t signing_secrets(const Passerelle__Subscription *sub, int64_t now_ms,
                              const char *secrets[2])
{
    size_t n = 0;
    if (sub->secret && *sub->secret)
        secrets[n++] = sub->secret;
    int64_t until = 0;
    if (sub->previous_secret && *sub->previous_secret &&
        time_parse_rfc3339(sub->previous_secret_until, &until) && until > now_ms)
        secrets[n++] = sub->previous_secret;
    return n;
}

static bool send_webhook(deliver_t *self, const Passerelle__Subscription *sub, flight_t *flight,
                         char *why, size_t why_size)
{
    size_t body_len = 0;
    char *body = cloudevent_json(flight->delivery->event, &body_len);
    if (!body) {
        snprintf(why, why_size, "out of memory");
        return false;
    }
    int64_t now_s = time_now_ms() / 1000;
    const char *secrets[2];
    size_t n_secrets = signing_secrets(sub, time_now_ms(), secrets);
    char signature[2 * WEBHOOK_SIGNATURE_MAX + 16] = "";
    if (!webhook_signature_header(secrets, n_secrets, flight->delivery->id, now_s, body, body_len,
                                  signature, sizeof signature)) {
        snprintf(why, why_size, "the subscription has no valid secret");
        free(body);
        return false;
    }
    char h_id[128], h_ts[64], h_sig[sizeof signature + 32];
    snprintf(h_id, sizeof h_id, "webhook-id: %s", flight->delivery->id);
    snprintf(h_ts, sizeof h_ts, "webhook-timestamp: %lld", (long long)now_s);
    snprintf(h_sig, sizeof h_sig, "webhook-signature: %s", signature);
    const char *headers[] = {"Content-Type: application/cloudevents+json", h_id, h_ts, h_sig};
    outbox_post_t post = {
        .key = sub->id,
        .url = sub->url,
        .headers = headers,
        .header_count = 4,
        .body = body,
        .body_len = body_len,
        .tag = flight,
    };
    int rc = outbox_post(self->outbox, &post);
    free(body);
    if (rc != 0)
        snprintf(why, why_size, "the outbox refused the transfer");
    return rc == 0;
}

static bool send_email(deliver_t *self, const Passerelle__Subscription *sub, flight_t *flight,
                       char *why, size_t why_size)
{
    if (!self->smtp_url[0]) {
        snprintf(why, why_size, "no SMTP server is configured (PASSERELLE_SMTP_URL)");
        return false;
    }
    ProtobufCMessage *data = cloudevent_data(flight->delivery->event);
    if (!data || data->descriptor != &passerelle__digest__descriptor) {
        snprintf(why, why_size, "an e-mail subscription only takes digests");
        if (data)
            protobuf_c_message_free_unpacked(data, NULL);
        return false;
    }
    size_t len = 0;
    char *message = digest_render_email((const Passerelle__Digest *)data, self->smtp_from,
                                        sub->email, flight->delivery->id, &len);
    protobuf_c_message_free_unpacked(data, NULL);
    if (!message) {
        snprintf(why, why_size, "out of memory");
        return false;
    }
    outbox_mail_t mail = {
        .key = sub->id,
        .url = self->smtp_url,
        .from = self->smtp_from,
        .to = sub->email,
        .message = message,
        .message_len = len,
        .tag = flight,
    };
    int rc = outbox_mail(self->outbox, &mail);
    free(message);
    if (rc != 0)
        snprintf(why, why_size, "the outbox refused the transfer");
    return rc == 0;
}

static void on_finished(void *arg, const outbox_result_t *result)
{
    deliver_t *self = arg;
    if (self->finished_count == self->finished_size) {
        size_t size = self->finished_size ? 2 * self->finished_size : 64;
        finished_t *grown = realloc(self->finished, size * sizeof *grown);
        if (!grown) {
            /* Not recorded: the lease brings the delivery back. */
            flight_free(self, result->tag);
            return;
        }
        self->finished = grown;
        self->finished_size = size;
    }
    finished_t *f = &self->finished[self->finished_count++];
    f->flight = result->tag;
    f->result = *result;
}

/* ====================================================================== */
/* Outcomes                                                               */
/* ====================================================================== */

static int64_t jittered_ms(double scale, int64_t delay_s)
{
    /* +-10%: endpoints that failed together do not all come back at once. */
    double jitter = 0.9 + 0.2 * ((double)randombytes_uniform(1000001) / 1000000.0);
    return notify_scaled_ms(scale, (int64_t)((double)delay_s * 1000.0 * jitter));
}

/* Disables a subscription for good reason, with its endpoint.disabled
 * event. A stale commit (someone changed it meanwhile) is left: the next
 * failure decides again. */
static void subscription_disable(deliver_t *self, const char *sub_id, const char *reason)
{
    char key[NOTIFY_KEY_MAX];
    notify_key_sub(sub_id, key);
    uint64_t version = 0;
    uint8_t *data = NULL;
    size_t len = 0;
    if (store_record_get(self->store, key, &version, &data, &len) != STORE_OK || version == 0) {
        free(data);
        return;
    }
    Passerelle__Subscription *sub = passerelle__subscription__unpack(NULL, len, data);
    free(data);
    if (!sub)
        return;
    if (sub->state == PASSERELLE__SUBSCRIPTION_STATE__SUBSCRIPTION_ACTIVE) {
        char now[TIME_RFC3339_LEN], subject[NOTIFY_KEY_MAX];
        time_now_rfc3339(now);
        snprintf(subject, sizeof subject, "subscriptions/%s", sub_id);
        Passerelle__Subscription changed = *sub;
        changed.state = PASSERELLE__SUBSCRIPTION_STATE__SUBSCRIPTION_DISABLED;
        changed.state_reason = (char *)reason;
        changed.updated_at = now;
        changed.version = version + 1;
        txn_t *txn = txn_new(NULL, NULL, 0);
        txn_put_message(txn, key, version + 1, &changed.base);
        txn_index_add(txn, NOTIFY_INACTIVE, sub_id);
        txn_counter_add(txn, NOTIFY_META_KEY, NOTIFY_META_SUBS, 1);
        Passerelle__Subscription view = changed;
        view.secret = view.previous_secret = view.previous_secret_until = NULL;
        txn_event(txn, NOTIFY_STREAM, NOTIFY_SOURCE, "endpoint.disabled", subject, &view.base);
        txn_result_t res = txn_commit(txn, self->store, NULL, 0, NULL, NULL, NULL);
        if (res == TXN_COMMITTED)
            log_warn("endpoint disabled", "{s:s, s:s, s:s, s:s}", "subscription", sub_id, "url",
                     sub->url ? sub->url : "", "owner", sub->owner_party ? sub->owner_party : "",
                     "reason", reason);
        txn_destroy(&txn);
    }
    protobuf_c_message_free_unpacked(&sub->base, NULL);
}

/* What one finished (or unstartable) attempt means, ready to record. */
typedef struct {
    flight_t *flight;
    Passerelle__Delivery updated; /* a copy: the unpacked one's strings are its own */
    const char *op;
    bool ok, gone;
    long status;
    uint32_t duration_ms;
    char error[256];
    char next_at[TIME_RFC3339_LEN], dead_at[TIME_RFC3339_LEN];
    uint8_t *attempt; /* packed DeliveryAttempt */
    size_t attempt_len;
    outcome_args_t args;
    /* For the metrics: the subscription's channel when the attempt ended
     * ("webhook", "email"; "deleted" if it is gone from the cache),
     * whether a transfer ran (its duration is one), and commit to delivery
     * in ms (-1: not delivered, or no event time). */
    const char *channel;
    bool transferred;
    int64_t latency_ms;
} outcome_t;

/* Decides what the attempt means and packs what deliver.lua records.
 * result may be NULL with why set: the attempt could not even start.
 * False (nothing to free) if out of memory: the lease brings it back. */
static bool outcome_prepare(deliver_t *self, outcome_t *o, flight_t *flight,
                            const outbox_result_t *result, const char *why)
{
    memset(o, 0, sizeof *o);
    o->flight = flight;
    o->updated = *flight->delivery;
    Passerelle__Delivery *d = &o->updated;
    long status = result ? result->status : 0;
    o->status = status;
    o->duration_ms = result ? result->duration_ms : 0;
    snprintf(o->error, sizeof o->error, "%s",
             result && result->error[0] ? result->error
             : why                      ? why
                                        : "");
    o->ok = result && !result->error[0] && status >= 200 && status < 300;
    const Passerelle__Subscription *sub = subcache_find(self->subs, flight->sub_id);
    o->gone =
        result && sub && sub->channel == PASSERELLE__CHANNEL__CHANNEL_WEBHOOK && status == 410;
    o->channel = !sub                                                 ? "deleted"
                 : sub->channel == PASSERELLE__CHANNEL__CHANNEL_EMAIL ? "email"
                                                                      : "webhook";
    o->transferred = result != NULL;
    int64_t now = time_now_ms();
    uint32_t attempt_no = d->attempts + 1;
    d->has_attempts = true;
    d->attempts = attempt_no;

    int64_t next_ms = 0;
    if (o->ok) {
        o->op = "delivered";
        d->state = PASSERELLE__DELIVERY_STATE__DELIVERY_DELIVERED;
    } else if (attempt_no > NOTIFY_RETRY_COUNT && !o->gone) {
        o->op = "dead";
        d->state = PASSERELLE__DELIVERY_STATE__DELIVERY_DEAD;
        time_rfc3339(now, o->dead_at);
        d->dead_at = o->dead_at;
        d->next_attempt_at = NULL;
    } else {
        o->op = "retry";
        uint32_t step = attempt_no <= NOTIFY_RETRY_COUNT ? attempt_no - 1 : NOTIFY_RETRY_COUNT - 1;
        int64_t delay = jittered_ms(self->cfg.clock_scale, notify_retry_schedule_s[step]);
        if (result && result->retry_after_s >= 0 && (status == 429 || status == 503)) {
            int64_t after = result->retry_after_s > RETRY_AFTER_MAX_S ? RETRY_AFTER_MAX_S
                                                                      : result->retry_after_s;
            delay = notify_scaled_ms(self->cfg.clock_scale, after * 1000);
        }
        next_ms = now + delay;
        time_rfc3339(next_ms, o->next_at);
        d->next_attempt_at = o->next_at;
        d->state = PASSERELLE__DELIVERY_STATE__DELIVERY_PENDING;
    }

    Passerelle__DeliveryAttempt at = PASSERELLE__DELIVERY_ATTEMPT__INIT;
    at.delivery_id = d->id;
    at.event_type = d->event ? d->event->type : NULL;
    at.subject = (char *)delivery_subject(d);
    at.has_attempt = true;
    at.attempt = attempt_no;
    at.at = flight->at;
    at.has_http_status = true;
    at.http_status = (int32_t)status;
    at.has_duration_ms = true;
    at.duration_ms = o->duration_ms;
    at.response = result && result->response[0] ? (char *)result->response : NULL;
    at.error = o->error[0] ? o->error : NULL;
    at.outcome = o->gone ? "disabled" : (char *)o->op;
    at.next_attempt_at = o->next_at[0] ? o->next_at : NULL;
    o->attempt_len = passerelle__delivery_attempt__get_packed_size(&at);
    o->attempt = malloc(o->attempt_len ? o->attempt_len : 1);
    if (!o->attempt)
        return false;
    passerelle__delivery_attempt__pack(&at, o->attempt);

    int64_t latency = -1, committed = 0;
    if (o->ok && d->event && time_parse_rfc3339(d->event->time, &committed))
        latency = now - committed < 0 ? 0 : now - committed;
    o->latency_ms = latency;
    if (!outcome_args(&o->args, o->op, d, next_ms, o->attempt, o->attempt_len, latency)) {
        free(o->attempt);
        return false;
    }
    return true;
}

/* After the outcome is recorded (or not): the log line, and disabling an
 * endpoint that is gone or has failed too long. */
static void outcome_finish(deliver_t *self, outcome_t *o, const char *store_error,
                           int64_t failing_since)
{
    bool recorded = store_error == NULL;
    const Passerelle__Delivery *d = &o->updated;
    const char *sub_id = o->flight->sub_id;
    log_info("delivery attempt", "{s:s, s:s, s:s, s:i, s:i, s:i, s:s, s:s}", "delivery", d->id,
             "subscription", sub_id, "type", d->event && d->event->type ? d->event->type : "",
             "attempt", (int)d->attempts, "status", (int)o->status, "duration_ms",
             (int)o->duration_ms, "outcome", o->gone ? "disabled" : o->op, "error", o->error);
    if (!recorded) {
        /* The lease brings it back: sent again, same webhook-id. */
        log_warn("outcome not recorded: the store failed", "{s:s, s:s}", "delivery", d->id, "error",
                 store_error);
        return;
    }
    /* Counted once recorded: an outcome the store lost is not one, the
     * attempt is made again and counted then. The outcome is the attempts
     * log's word (delivered, retry, dead; disabled for a 410 Gone). */
    metric_add(self->deliveries_total, (const char *[]){o->channel, o->gone ? "disabled" : o->op},
               1);
    if (o->transferred)
        metric_observe(self->attempt_seconds, (const char *[]){o->channel},
                       (double)o->duration_ms / 1000);
    if (o->latency_ms >= 0 && d->event && d->event->type &&
        strcmp(d->event->type, "convention.envisaged") == 0)
        metric_observe(self->envisaged_seconds, NULL, (double)o->latency_ms / 1000);
    const Passerelle__Subscription *sub = subcache_find(self->subs, sub_id);
    if (o->gone) {
        subscription_disable(self, sub_id, "the endpoint answered 410 Gone");
    } else if (!o->ok && failing_since > 0 && sub) {
        /* Failing since the later of its first failure and its last
         * change (a resume starts the count again). */
        int64_t changed = 0;
        if (time_parse_rfc3339(sub->updated_at, &changed) && changed > failing_since)
            failing_since = changed;
        int64_t limit = notify_scaled_ms(self->cfg.clock_scale, self->cfg.disable_after_ms);
        int64_t now = time_now_ms();
        if (now - failing_since >= limit) {
            char reason[128];
            snprintf(reason, sizeof reason, "the endpoint has failed for %lld s",
                     (long long)((now - failing_since) / 1000));
            subscription_disable(self, sub_id, reason);
        }
    }
}

static void outcome_free(outcome_t *o)
{
    free(o->attempt);
    free(o->args.packed);
}

/* ====================================================================== */
/* The loop                                                               */
/* ====================================================================== */

/* How many of a subscription's deliveries wait in the ready list. */
static unsigned ready_of(const deliver_t *self, const char *sub_id)
{
    unsigned n = 0;
    for (const flight_t *f = self->ready_head; f; f = f->ready_next)
        n += strcmp(f->sub_id, sub_id) == 0;
    return n;
}

/* Whether a due member (a subject's queue) is held already, in flight or
 * waiting. Linear: at most CLAIM_AHEAD * total_max are held. */
static bool held_member(const deliver_t *self, const char *member)
{
    for (const flight_t *f = self->flights; f; f = f->next)
        if (strcmp(f->member, member) == 0)
            return true;
    return false;
}

/* The deliveries a claim answered (from element first on, in threes) into
 * the ready list. Returns how many. */
static size_t claimed_take(deliver_t *self, const redisReply *r, size_t first)
{
    size_t taken = 0;
    for (size_t i = first; i + 2 < r->elements; i += 3) {
        const redisReply *member = r->element[i], *packed = r->element[i + 2];
        if (member->type != REDIS_REPLY_STRING || packed->type != REDIS_REPLY_STRING)
            continue;
        /* Its lease ran out while it was still ours (a very slow
         * endpoint): it is held already, once is enough. */
        if (held_member(self, member->str))
            continue;
        flight_t *flight = flight_new(self);
        if (!flight)
            break;
        snprintf(flight->member, sizeof flight->member, "%s", member->str);
        flight->delivery =
            passerelle__delivery__unpack(NULL, packed->len, (const uint8_t *)packed->str);
        if (!flight->delivery || !flight->delivery->subscription_id || !flight->delivery->id) {
            log_error("a delivery does not decode: left to its lease", "{s:s}", "member",
                      member->str);
            flight_free(self, flight);
            continue;
        }
        snprintf(flight->sub_id, sizeof flight->sub_id, "%s", flight->delivery->subscription_id);
        taken++;
        flight->ready = true;
        if (self->ready_tail)
            self->ready_tail->ready_next = flight;
        else
            self->ready_head = flight;
        self->ready_tail = flight;
        self->ready_count++;
    }
    return taken;
}

/* One pass's call of deliver.lua and what it needs until it is answered:
 * the count outcomes of the transfers that ended (recorded together: one
 * fsync for all, however many ended), then, if room > 0, a claim of what
 * is due. */
typedef struct {
    outcome_t *outcomes; /* owned, count */
    size_t count;
    unsigned room;
    outcome_args_t *args;
    /* Copies, since the call may run on another thread (the recorder). */
    char (*sub_ids)[ID_LEN];
    const char **subs; /* into sub_ids */
    char (*rooms)[12];
    call_args_t call;
} pass_t;

static void pass_free(pass_t *p)
{
    call_args_free(&p->call);
    free(p->outcomes);
    free(p->args);
    free(p->sub_ids);
    free(p->subs);
    free(p->rooms);
    memset(p, 0, sizeof *p);
}

/* Builds the call; takes outcomes (count, malloc'd or NULL). False if out
 * of memory: the outcomes are then finished as not recorded. */
static bool pass_begin(deliver_t *self, pass_t *p, outcome_t *outcomes, size_t count, bool claim)
{
    memset(p, 0, sizeof *p);
    p->outcomes = outcomes;
    p->count = count;
    unsigned held = outbox_total(self->outbox) + (unsigned)self->ready_count;
    unsigned capacity = CLAIM_AHEAD * self->cfg.total_max;
    p->room = claim && capacity > held ? capacity - held : 0;
    unsigned per_sub = CLAIM_AHEAD * self->cfg.per_endpoint;

    /* The room of each subscription with deliveries held; the others
     * have the whole bound. */
    size_t n_subs = p->room > 0 ? subcache_count(self->subs) : 0, n_rooms = 0;
    p->sub_ids = calloc(n_subs ? n_subs : 1, sizeof *p->sub_ids);
    p->subs = calloc(n_subs ? n_subs : 1, sizeof *p->subs);
    p->rooms = calloc(n_subs ? n_subs : 1, sizeof *p->rooms);
    p->args = calloc(count ? count : 1, sizeof *p->args);
    if (!p->sub_ids || !p->subs || !p->rooms || !p->args)
        return false;
    for (size_t i = 0; i < n_subs; i++) {
        const Passerelle__Subscription *sub = subcache_at(self->subs, i);
        unsigned held_sub = outbox_in_flight(self->outbox, sub->id) + ready_of(self, sub->id);
        if (held_sub == 0)
            continue;
        snprintf(p->rooms[n_rooms], sizeof p->rooms[n_rooms], "%u",
                 held_sub < per_sub ? per_sub - held_sub : 0);
        snprintf(p->sub_ids[n_rooms], sizeof p->sub_ids[n_rooms], "%s", sub->id);
        p->subs[n_rooms] = p->sub_ids[n_rooms];
        n_rooms++;
    }
    for (size_t i = 0; i < count; i++)
        p->args[i] = outcomes[i].args;
    return call_args_make(&p->call, time_now_ms(), self->cfg.attempts_kept, p->args, count,
                          CLAIM_AHEAD * self->cfg.timeout_ms + LEASE_MARGIN_MS, p->room, per_sub,
                          p->subs, p->rooms, n_rooms);
}

/* What the call's answer (r, owned, may be NULL; res) means: the outcomes
 * finished (their flights freed), what was claimed in the ready list.
 * Frees p. Returns the ms until something is due that this worker could
 * take (0: claim again soon), at most IDLE_WAIT_MS. */
static int pass_end(deliver_t *self, pass_t *p, store_result_t res, redisReply *r)
{
    if (res == STORE_OK && !call_reply_ok(r, p->count)) {
        log_error("the delivery script answered out of shape", NULL);
        res = STORE_REFUSED;
    }
    /* The call may have run on the recorder's connection: say what
     * happened, not that connection's last error (another thread's). */
    const char *store_error = res == STORE_OK     ? NULL
                              : res == STORE_LOST ? "no answer from Redis"
                                                  : "Redis refused the call";
    if (res != STORE_OK && p->room > 0)
        log_warn("cannot take due deliveries: the store failed", "{s:s}", "error", store_error);
    for (size_t i = 0; i < p->count; i++) {
        outcome_finish(self, &p->outcomes[i], store_error,
                       res == STORE_OK ? call_reply_int(r, 4 + 2 * i) : 0);
        outcome_free(&p->outcomes[i]);
        flight_free(self, p->outcomes[i].flight);
    }
    int wait = IDLE_WAIT_MS;
    if (res == STORE_OK) {
        long long earliest = call_reply_int(r, 0);
        if (earliest >= 0) {
            long long until = earliest - time_now_ms();
            wait = until <= 0 ? 0 : until < IDLE_WAIT_MS ? (int)until : IDLE_WAIT_MS;
        }
        /* The answer says whether the subscriptions changed: the cache is
         * reloaded then, and only then, before anything taken is looked up
         * in it, so a subscription made a moment ago is known. Unknown
         * subscriptions cannot be told from deleted ones: if the reload
         * fails, what was taken is left to its lease. */
        if (p->room > 0) {
            if (subcache_sync(self->subs, self->store, call_reply_int(r, 1)) == STORE_OK)
                claimed_take(self, r, 3 + 2 * p->count);
            else
                wait = IDLE_WAIT_MS;
        }
    }
    if (r)
        freeReplyObject(r);
    pass_free(p);
    return wait;
}

/* A pass run at once on the worker's own connection. */
static int pass_run(deliver_t *self, outcome_t *outcomes, size_t count, bool claim)
{
    pass_t p;
    redisReply *r = NULL;
    store_result_t res = STORE_REFUSED;
    if (pass_begin(self, &p, outcomes, count, claim))
        res = store_script_run(self->store, self->script, &r, CALL_KEYS, p.call.argc, p.call.argv,
                               p.call.lens);
    return pass_end(self, &p, res, r);
}

/* ====================================================================== */
/* The recorder                                                           */
/* ====================================================================== */

/* The passes of the loop are run by a thread of their own, on a connection
 * of its own, so that the transfers go on while Redis answers (a pass
 * costs a round trip and an fsync, several times a transfer to a nearby
 * endpoint): what was claimed ahead starts as soon as a slot frees. One
 * pass at a time is handed over; the outcomes that end meanwhile go in the
 * next, so a pass records as many as ended during the one before. */
typedef struct {
    pthread_t thread;
    bool running;
    pthread_mutex_t lock;
    pthread_cond_t cond;          /* to the thread: a pass handed over, or stop */
    pthread_cond_t answered_cond; /* from the thread: the pass is answered */
    bool stop;                    /* under lock */
    bool pending;                 /* a pass handed over and not yet answered (under lock) */
    bool answered;                /* its answer is in reply/result (under lock) */
    pass_t *pass;                 /* the pass handed over, owned by the worker */
    redisReply *reply;
    store_result_t result;
    store_t *store; /* the recorder's own, used by its thread only */
    int script;
    outbox_t *outbox; /* woken when a pass is answered */
} recorder_t;

static void *recorder_run(void *arg)
{
    recorder_t *rec = arg;
    pthread_mutex_lock(&rec->lock);
    while (true) {
        while (!rec->stop && !(rec->pending && !rec->answered))
            pthread_cond_wait(&rec->cond, &rec->lock);
        if (!(rec->pending && !rec->answered))
            break; /* stopping, nothing handed over */
        pass_t *p = rec->pass;
        pthread_mutex_unlock(&rec->lock);
        redisReply *r = NULL;
        store_result_t res = store_script_run(rec->store, rec->script, &r, CALL_KEYS, p->call.argc,
                                              p->call.argv, p->call.lens);
        pthread_mutex_lock(&rec->lock);
        rec->reply = r;
        rec->result = res;
        rec->answered = true;
        pthread_cond_signal(&rec->answered_cond);
        outbox_wakeup(rec->outbox);
    }
    pthread_mutex_unlock(&rec->lock);
    return NULL;
}

static bool recorder_start(recorder_t *rec, const store_config_t *cfg, outbox_t *outbox)
{
    memset(rec, 0, sizeof *rec);
    rec->outbox = outbox;
    rec->store = store_new(cfg);
    rec->script = rec->store ? store_script_add(rec->store, notify_deliver_lua) : -1;
    if (rec->script < 0) {
        store_destroy(&rec->store);
        return false;
    }
    pthread_mutex_init(&rec->lock, NULL);
    pthread_cond_init(&rec->cond, NULL);
    pthread_cond_init(&rec->answered_cond, NULL);
    rec->running = pthread_create(&rec->thread, NULL, recorder_run, rec) == 0;
    if (!rec->running) {
        pthread_mutex_destroy(&rec->lock);
        pthread_cond_destroy(&rec->cond);
        pthread_cond_destroy(&rec->answered_cond);
        store_destroy(&rec->store);
    }
    return rec->running;
}

/* Hands p over (the recorder must have none pending). */
static void recorder_submit(recorder_t *rec, pass_t *p)
{
    pthread_mutex_lock(&rec->lock);
    rec->pass = p;
    rec->pending = true;
    rec->answered = false;
    pthread_cond_signal(&rec->cond);
    pthread_mutex_unlock(&rec->lock);
}

/* The pending pass's answer if it is there (or, with wait, once it is):
 * true, with *res and *r (owned by the caller); the recorder has nothing
 * pending then. */
static bool recorder_take(recorder_t *rec, bool wait, store_result_t *res, redisReply **r)
{
    pthread_mutex_lock(&rec->lock);
    while (wait && rec->pending && !rec->answered)
        pthread_cond_wait(&rec->answered_cond, &rec->lock);
    bool got = rec->pending && rec->answered;
    if (got) {
        *res = rec->result;
        *r = rec->reply;
        rec->reply = NULL;
        rec->pending = rec->answered = false;
        rec->pass = NULL;
    }
    pthread_mutex_unlock(&rec->lock);
    return got;
}

/* Stops the thread after the call it runs, if any; an answer not taken is
 * dropped (its outcomes were not recorded as far as the worker knows: the
 * leases bring the deliveries back). */
static void recorder_stop(recorder_t *rec)
{
    if (!rec->running)
        return;
    pthread_mutex_lock(&rec->lock);
    rec->stop = true;
    pthread_cond_signal(&rec->cond);
    pthread_mutex_unlock(&rec->lock);
    pthread_join(rec->thread, NULL);
    if (rec->reply)
        freeReplyObject(rec->reply);
    rec->reply = NULL;
    pthread_mutex_destroy(&rec->lock);
    pthread_cond_destroy(&rec->cond);
    pthread_cond_destroy(&rec->answered_cond);
    store_destroy(&rec->store);
    rec->running = false;
}

/* One attempt that could not start, recorded on its own. */
static void record_unstarted(deliver_t *self, flight_t *flight, const char *why)
{
    outcome_t o;
    if (outcome_prepare(self, &o, flight, NULL, why))
        pass_run(self, &o, 1, false);
    else
        flight_free(self, flight);
}

/* A delivery taken but not sent, and no attempt made (no room, a deleted
 * subscription): op "release" (due again) or "drop" (gone with its
 * subscription). Frees the flight. */
static void release_flight(deliver_t *self, flight_t *flight, const char *op)
{
    outcome_args_t a;
    if (outcome_args(&a, op, flight->delivery, 0, NULL, 0, -1)) {
        outcomes_run(self->store, self->script, &a, 1, self->cfg.attempts_kept, NULL);
        free(a.packed);
    }
    flight_free(self, flight);
}

/* Starts what was taken, oldest first, as far as the bounds allow. Returns
 * how many started. */
static size_t start_ready(deliver_t *self)
{
    size_t started = 0;
    flight_t *next = NULL;
    for (flight_t *flight = self->ready_head; flight; flight = next) {
        next = flight->ready_next;
        if (outbox_total(self->outbox) >= self->cfg.total_max)
            break;
        const Passerelle__Subscription *sub = subcache_find(self->subs, flight->sub_id);
        if (!sub) {
            /* Deleted: what it had queued goes with it. */
            release_flight(self, flight, "drop");
            continue;
        }
        if (sub->state != PASSERELLE__SUBSCRIPTION_STATE__SUBSCRIPTION_ACTIVE) {
            /* Paused or disabled since it was taken: due again at once, so
             * that it goes as soon as the subscription is resumed (the
             * claim passes over it until then). */
            release_flight(self, flight, "release");
            continue;
        }
        if (outbox_in_flight(self->outbox, sub->id) >= self->cfg.per_endpoint)
            continue;
        ready_remove(self, flight);
        flight->started_ms = time_now_ms();
        time_rfc3339(flight->started_ms, flight->at);
        char why[256] = "";
        bool sent = sub->channel == PASSERELLE__CHANNEL__CHANNEL_EMAIL
                        ? send_email(self, sub, flight, why, sizeof why)
                        : send_webhook(self, sub, flight, why, sizeof why);
        if (sent)
            started++;
        else
            record_unstarted(self, flight, why);
    }
    return started;
}

/* The start of a drain (deliver_drain): what was taken and not started
 * goes back to the due set at once, rather than when its lease runs out,
 * so that the restarted worker or a replica sends it without waiting. All
 * of it in one call (one round trip, one fsync), as outcomes are: the
 * grace period is for the transfers in flight. What could not go back
 * (memory, Redis) is left to its lease. Returns how many were sent back. */
static size_t deliver_drain_begin(deliver_t *self)
{
    size_t n = self->ready_count, made = 0;
    outcome_args_t *args = calloc(n ? n : 1, sizeof *args);
    if (args) {
        for (flight_t *f = self->ready_head; f && made < n; f = f->ready_next) {
            if (!outcome_args(&args[made], "release", f->delivery, 0, NULL, 0, -1))
                break;
            made++;
        }
        if (made > 0 && outcomes_run(self->store, self->script, args, made, self->cfg.attempts_kept,
                                     NULL) != STORE_OK)
            made = 0;
    }
    for (size_t i = 0; args && i < n; i++)
        free(args[i].packed);
    while (self->ready_head)
        flight_free(self, self->ready_head);
    free(args);
    return made;
}

/* The outcomes of the transfers that ended in this pass, prepared for
 * pass_run; *count is how many (the others' flights are freed: the lease
 * brings them back). NULL (count 0) if none ended. */
static outcome_t *finished_prepare(deliver_t *self, size_t *count)
{
    *count = 0;
    if (self->finished_count == 0)
        return NULL;
    outcome_t *outcomes = calloc(self->finished_count, sizeof *outcomes);
    for (size_t i = 0; i < self->finished_count; i++) {
        flight_t *flight = self->finished[i].flight;
        if (outcomes &&
            outcome_prepare(self, &outcomes[*count], flight, &self->finished[i].result, NULL))
            (*count)++;
        else
            flight_free(self, flight); /* the lease brings it back */
    }
    self->finished_count = 0;
    return outcomes;
}

/* The answer of the pass handed to the recorder, if it is there (or, with
 * wait, once it is): the pass ended. */
static void pass_collect(deliver_t *self, recorder_t *rec, pass_t *pass, bool *outstanding,
                         bool wait)
{
    store_result_t res = STORE_LOST;
    redisReply *r = NULL;
    if (!*outstanding || !recorder_take(rec, wait, &res, &r))
        return;
    bool claimed = pass->room > 0;
    int until = pass_end(self, pass, res, r);
    if (claimed)
        self->next_claim_ms = zclock_mono() + until;
    *outstanding = false;
}

/* Records, at once, the outcomes of the transfers that have ended and not
 * been recorded yet: on the way out, so that what was delivered is not
 * sent again when its lease runs out. */
static void deliver_settle(deliver_t *self)
{
    size_t n = 0;
    outcome_t *outcomes = finished_prepare(self, &n);
    if (n > 0)
        pass_run(self, outcomes, n, false);
    else
        free(outcomes);
}

static void deliver_actor(zsock_t *pipe, void *arg)
{
    deliver_t *self = arg;
    recorder_t rec;
    pass_t pass;
    bool outstanding = false; /* pass is with the recorder */
    memset(&rec, 0, sizeof rec);
    self->store = store_new(&self->store_cfg);
    self->subs = subcache_new();
    self->script = self->store ? store_script_add(self->store, notify_deliver_lua) : -1;
    self->started = self->store && self->subs && self->script >= 0 &&
                    recorder_start(&rec, &self->store_cfg, self->outbox);
    zsock_signal(pipe, 0);
    if (!self->started)
        goto out;

    zpoller_t *poller = zpoller_new(pipe, NULL);
    /* A SIGTERM must not stop the poller: $TERM is how this actor stops. */
    zpoller_set_nonstop(poller, true);
    int wait = 0;
    /* Draining (deliver_drain): until when, on zclock_mono; -1 when not. */
    int64_t drain_until_ms = -1, drain_began_ms = 0;
    size_t drain_released = 0, drain_finished = 0;
    self->next_claim_ms = 0;
    while (true) {
        if (zpoller_wait(poller, 0) == pipe) {
            zmsg_t *msg = zmsg_recv(pipe);
            char *command = msg ? zmsg_popstr(msg) : NULL;
            bool drain = command && streq(command, "DRAIN");
            bool term = !command || streq(command, "$TERM");
            if (drain && drain_until_ms < 0) {
                char *until = zmsg_popstr(msg);
                drain_began_ms = zclock_mono();
                drain_until_ms = until ? strtoll(until, NULL, 10) : drain_began_ms;
                zstr_free(&until);
                /* What the pass under way claims goes back with the rest. */
                pass_collect(self, &rec, &pass, &outstanding, true);
                drain_released = deliver_drain_begin(self);
            }
            zstr_free(&command);
            zmsg_destroy(&msg);
            if (term)
                break;
        }
        if (drain_until_ms >= 0 &&
            ((outbox_total(self->outbox) == 0 && self->finished_count == 0 && !outstanding) ||
             zclock_mono() >= drain_until_ms)) {
            pass_collect(self, &rec, &pass, &outstanding, true);
            drain_finished += self->finished_count;
            deliver_settle(self);
            log_info("deliveries drained", "{s:i, s:i, s:i, s:i}", "finished", (int)drain_finished,
                     "released", (int)drain_released, "abandoned", (int)outbox_total(self->outbox),
                     "took_ms", (int)(zclock_mono() - drain_began_ms));
            zsock_signal(pipe, 0);
            actor_await_term(pipe); /* deliver_destroy */
            break;
        }
        if (drain_until_ms >= 0) {
            int64_t left_ms = drain_until_ms - zclock_mono();
            wait = left_ms < wait ? (int)left_ms : wait;
        }
        /* Cap the wait so that $TERM is seen within a tenth of a second. */
        outbox_run(self->outbox, wait > 100 ? 100 : wait, on_finished, self);
        /* Whatever else has ended by now goes in the same pass. */
        while (self->finished_count > 0 && outbox_total(self->outbox) > 0 &&
               outbox_run(self->outbox, 0, on_finished, self) > 0)
            ;
        pass_collect(self, &rec, &pass, &outstanding, false);
        if (!outstanding) {
            drain_finished += drain_until_ms >= 0 ? self->finished_count : 0;
            size_t n = 0;
            outcome_t *outcomes = finished_prepare(self, &n);
            /* Look at the due sets when something may have become
             * takeable: a transfer ended (room), something was queued
             * (deliver_wake), or the time the last look gave has come (a
             * retry due, at least every IDLE_WAIT_MS). Draining, nothing
             * more is taken. */
            bool woken = atomic_exchange(&self->woken, false);
            bool claim = drain_until_ms < 0 &&
                         (n > 0 || woken || zclock_mono() >= self->next_claim_ms) &&
                         self->ready_count < self->cfg.total_max;
            if (n > 0 || claim) {
                if (pass_begin(self, &pass, outcomes, n, claim)) {
                    recorder_submit(&rec, &pass);
                    outstanding = true;
                } else {
                    pass_end(self, &pass, STORE_REFUSED, NULL);
                }
            } else {
                free(outcomes);
            }
            /* No look now with the ready list full: the next is when a
             * transfer ends, which also ends outbox_run's wait. */
            if (!claim && zclock_mono() >= self->next_claim_ms)
                self->next_claim_ms = zclock_mono() + IDLE_WAIT_MS;
        }
        if (drain_until_ms >= 0) {
            /* Draining: no transfer starts. */
            wait = outstanding ? 1 : IDLE_WAIT_MS;
            continue;
        }
        start_ready(self);
        /* With a pass under way, its answer wakes outbox_run. */
        int64_t left_ms = self->next_claim_ms - zclock_mono();
        wait = outstanding              ? IDLE_WAIT_MS
               : left_ms <= 0           ? 0
               : left_ms < IDLE_WAIT_MS ? (int)left_ms
                                        : IDLE_WAIT_MS;
    }
    zpoller_destroy(&poller);
    /* The pass under way ends first: the recorder runs it to its end. Then
     * what ended is recorded and what was taken but not started is put
     * back, so that neither waits for its lease. */
    pass_collect(self, &rec, &pass, &outstanding, true);
    deliver_settle(self);
    deliver_drain_begin(self);
out:
    recorder_stop(&rec);
    /* Transfers still in the air are abandoned: their leases bring them
     * back, to this process after a restart or to another replica. */
    while (self->flights)
        flight_free(self, self->flights);
    free(self->finished);
    self->finished = NULL;
    subcache_destroy(&self->subs);
    store_destroy(&self->store);
}

void deliver_wake(void *arg)
{
    deliver_t *self = arg;
    if (self && self->outbox) {
        atomic_store(&self->woken, true);
        outbox_wakeup(self->outbox);
    }
}

deliver_t *deliver_new(const deliver_config_t *cfg)
{
    deliver_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->cfg = *cfg;
    self->store_cfg = *cfg->store;
    self->cfg.store = &self->store_cfg;
    if (self->cfg.timeout_ms <= 0)
        self->cfg.timeout_ms = 15000;
    if (self->cfg.per_endpoint == 0)
        self->cfg.per_endpoint = 4;
    if (self->cfg.total_max == 0)
        self->cfg.total_max = 64;
    if (self->cfg.attempts_kept == 0)
        self->cfg.attempts_kept = 1000;
    snprintf(self->smtp_url, sizeof self->smtp_url, "%s", cfg->smtp_url ? cfg->smtp_url : "");
    snprintf(self->smtp_from, sizeof self->smtp_from, "%s",
             cfg->smtp_from && *cfg->smtp_from ? cfg->smtp_from : "passerelle@localhost");
    if (cfg->metrics) {
        static const char *const by_channel_outcome[] = {"channel", "outcome"};
        static const char *const by_channel[] = {"channel"};
        /* Up to the transfer timeout (15 s by default). */
        static const double attempt_s[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                           0.5,   1,    2.5,   5,    10,  30};
        /* The aim is tens of milliseconds; an endpoint that was down makes
         * it minutes or days, retries included. */
        static const double promise_s[] = {0.005, 0.01, 0.02, 0.05, 0.1,  0.25, 0.5,
                                           1,     5,    30,   300,  3600, 86400};
        self->deliveries_total = metrics_counter(
            cfg->metrics, "passerelle_deliveries_total",
            "Delivery attempts recorded, by channel and outcome.", by_channel_outcome, 2);
        self->attempt_seconds =
            metrics_histogram(cfg->metrics, "passerelle_delivery_attempt_seconds",
                              "Time of one delivery transfer (webhook POST, e-mail), by channel.",
                              by_channel, 1, attempt_s, sizeof attempt_s / sizeof attempt_s[0]);
        self->envisaged_seconds =
            metrics_histogram(cfg->metrics, "passerelle_envisaged_delivery_seconds",
                              "Time from a convention.envisaged commit to its successful delivery.",
                              NULL, 0, promise_s, sizeof promise_s / sizeof promise_s[0]);
    }
    outbox_config_t ocfg = {
        .timeout_ms = self->cfg.timeout_ms,
        .per_key_max = self->cfg.per_endpoint,
        .total_max = self->cfg.total_max,
        .policy = cfg->policy,
    };
    self->outbox = outbox_new(&ocfg);
    if (!self->outbox) {
        free(self);
        return NULL;
    }
    self->actor = zactor_new(deliver_actor, self);
    if (!self->actor || !self->started) {
        log_error("the delivery worker did not start", NULL);
        deliver_destroy(&self);
    }
    return self;
}

void deliver_drain(deliver_t *self, int grace_ms)
{
    if (self)
        actor_drain(self->actor, grace_ms);
}

void deliver_destroy(deliver_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    deliver_t *self = *self_p;
    zactor_destroy(&self->actor);
    outbox_destroy(&self->outbox);
    free(self);
    *self_p = NULL;
}
