/* The fan-out reader (fanout.h): an actor per stream, blocked on its
 * consumer group most of the time. */
#include "fanout.h"

#include "eventlog.h"
#include "ids.h"
#include "log.h"
#include "match.h"
#include "notify.h"

#include <czmq.h>
#include <stdlib.h>
#include <string.h>

extern const char notify_fanout_lua[];

/* Short, so that $TERM is seen promptly; far below the store's command
 * timeout, which an XREADGROUP BLOCK must not reach. */
#define FANOUT_BLOCK_MS 200
/* How long a reader's routing lease lasts: a replica takes over a stream
 * this long after its reader died. */
#define FANOUT_LEASE_MS 5000
/* Most targets one event can have: every subscription could match. */
#define FANOUT_TARGETS_MAX 4096

struct fanout_t {
    zactor_t *actor;
    store_config_t store_cfg;
    char stream[128];
    char consumer[128];
    void (*wake)(void *arg);
    void *wake_arg;
    bool started; /* set by the actor before it signals */
    /* owned by the actor thread */
    store_t *store;
    int script;
    int lease_script;
    int64_t lease_until_ms; /* while the routing lease is ours */
    subcache_t *subs;
};

typedef struct {
    const char *sub_id; /* borrowed from the cache, which does not change meanwhile */
    char dlv_key[NOTIFY_KEY_MAX];
    char queue_key[NOTIFY_KEY_MAX];
    char due_key[NOTIFY_KEY_MAX];
    uint8_t *packed;
    size_t packed_len;
} target_t;

/* One event's call of fanout.lua, with the buffers its arguments point
 * into, so that a batch of them can wait in one pipeline. */
typedef struct {
    target_t *targets;
    size_t n_targets;
    uint8_t *event_packed;
    const char **argv;
    size_t *lens;
    size_t argc, nkeys;
    bool feed;
    char ttl[16], now_ms[24], count[16], counter[24], origin[256];
    char delivery_id[ID_LEN + 8];
} routing_t;

static void routing_free(routing_t *r)
{
    for (size_t i = 0; i < r->n_targets; i++)
        free(r->targets[i].packed);
    free(r->targets);
    free(r->event_packed);
    free(r->argv);
    free(r->lens);
    memset(r, 0, sizeof *r);
}

/* Chooses the event's targets from the cached subscriptions and builds its
 * call. False if out of memory. */
static bool routing_prepare(fanout_t *self, routing_t *r, const consumer_entry_t *entry)
{
    const Passerelle__Event *event = entry->event;
    memset(r, 0, sizeof *r);
    match_facts_t facts;
    match_facts(event, &facts);
    const char *subject = event->subject && *event->subject ? event->subject : event->id;

    size_t n_subs = subcache_count(self->subs);
    r->targets = calloc(n_subs ? n_subs : 1, sizeof *r->targets);
    if (!r->targets)
        return false;
    char now[TIME_RFC3339_LEN];
    time_now_rfc3339(now);
    snprintf(r->delivery_id, sizeof r->delivery_id, "msg_%s", event->id);
    snprintf(r->origin, sizeof r->origin, "%s %s", self->stream, entry->position);

    for (size_t i = 0; i < n_subs && r->n_targets < FANOUT_TARGETS_MAX; i++) {
        const Passerelle__Subscription *sub = subcache_at(self->subs, i);
        if (!match_subscription(sub, &facts))
            continue;
        if (sub->channel == PASSERELLE__CHANNEL__CHANNEL_FEED) {
            r->feed = true;
            continue;
        }
        Passerelle__Delivery dlv = PASSERELLE__DELIVERY__INIT;
        dlv.id = r->delivery_id;
        dlv.subscription_id = sub->id;
        dlv.event = (Passerelle__Event *)event;
        dlv.stream = self->stream;
        dlv.position = (char *)entry->position;
        dlv.has_attempts = true;
        dlv.created_at = now;
        dlv.has_state = true;
        dlv.state = PASSERELLE__DELIVERY_STATE__DELIVERY_PENDING;
        dlv.territory = facts.territory;
        target_t *t = &r->targets[r->n_targets];
        t->packed_len = passerelle__delivery__get_packed_size(&dlv);
        t->packed = malloc(t->packed_len ? t->packed_len : 1);
        if (!t->packed)
            return false;
        passerelle__delivery__pack(&dlv, t->packed);
        t->sub_id = sub->id;
        notify_key_delivery(r->delivery_id, sub->id, t->dlv_key);
        notify_key_queue(sub->id, subject, t->queue_key);
        notify_key_due(sub->id, t->due_key);
        r->n_targets++;
    }

    size_t n = r->n_targets;
    size_t event_len = passerelle__event__get_packed_size(event);
    r->event_packed = malloc(event_len ? event_len : 1);
    r->argv = calloc(4 + 3 * n + 10 + 2 * n, sizeof *r->argv);
    r->lens = calloc(4 + 3 * n + 10 + 2 * n, sizeof *r->lens);
    if (!r->event_packed || !r->argv || !r->lens)
        return false;
    passerelle__event__pack(event, r->event_packed);
    snprintf(r->ttl, sizeof r->ttl, "%d", 7 * 24 * 3600);
    snprintf(r->now_ms, sizeof r->now_ms, "%lld", (long long)time_now_ms());
    snprintf(r->count, sizeof r->count, "%zu", n);
    snprintf(r->counter, sizeof r->counter, "%lld", subcache_counter(self->subs));
    size_t k = 0;
#define ARG(s)     (r->argv[k] = (s), r->lens[k] = strlen(s), k++)
#define ARGB(p, l) (r->argv[k] = (const char *)(p), r->lens[k] = (l), k++)
    ARG(entry->done_key);
    ARG(NOTIFY_DUE_SUBS);
    ARG(NOTIFY_FEED_STREAM);
    ARG(NOTIFY_META_KEY);
    for (size_t i = 0; i < n; i++) {
        ARG(r->targets[i].dlv_key);
        ARG(r->targets[i].queue_key);
        ARG(r->targets[i].due_key);
    }
    r->nkeys = k;
    ARG(r->ttl);
    ARG(r->now_ms);
    ARG(r->feed ? "1" : "0");
    ARG(facts.type);
    ARGB(r->event_packed, event_len);
    ARG(r->origin);
    ARG(r->count);
    ARG(r->counter);
    ARG(subject);
    ARG(r->delivery_id);
    for (size_t i = 0; i < n; i++) {
        ARG(r->targets[i].sub_id);
        ARGB(r->targets[i].packed, r->targets[i].packed_len);
    }
#undef ARG
#undef ARGB
    r->argc = k;
    return true;
}

/* The consumer's batch handler (eventlog.h): routes the events read
 * together, their scripts in one pipeline (one fsync for all). The targets
 * are chosen from the cache; a script refuses them if the subscriptions
 * changed meanwhile, and those events are routed again on a fresh cache.
 * So the cache costs no round trip per event, and an event committed
 * after a subscription was made always sees it. */
static void fanout_batch(void *arg, const consumer_entry_t *entries, size_t count, int *results)
{
    fanout_t *self = arg;
    if (subcache_counter(self->subs) < 0 && subcache_refresh(self->subs, self->store) != STORE_OK)
        return; /* every entry stays pending */
    routing_t *routes = calloc(count, sizeof *routes);
    store_call_t *calls = calloc(count, sizeof *calls);
    size_t *which = calloc(count, sizeof *which);
    redisReply **replies = calloc(count, sizeof *replies);
    store_result_t *got = calloc(count, sizeof *got);
    if (!routes || !calls || !which || !replies || !got)
        goto out;
    bool wake = false;
    for (int round = 0; round < 5; round++) {
        size_t n = 0;
        for (size_t i = 0; i < count; i++) {
            if (results[i] == 0 || !entries[i].event->id)
                continue;
            routing_free(&routes[i]);
            if (!routing_prepare(self, &routes[i], &entries[i]))
                continue;
            calls[n] = (store_call_t){(int)routes[i].nkeys, (int)routes[i].argc, routes[i].argv,
                                      routes[i].lens};
            which[n++] = i;
        }
        if (n == 0)
            break;
        store_script_run_many(self->store, self->script, calls, n, replies, got);
        bool stale = false;
        for (size_t j = 0; j < n; j++) {
            size_t i = which[j];
            const redisReply *r = replies[j];
            if (got[j] == STORE_OK && r->type == REDIS_REPLY_INTEGER && r->integer < 0) {
                stale = true;
            } else if (got[j] == STORE_OK) {
                results[i] = 0;
                if (r->type == REDIS_REPLY_INTEGER && r->integer > 0)
                    wake = true;
                log_debug("event routed", "{s:s, s:s, s:i, s:b}", "event", entries[i].event->id,
                          "type", entries[i].event->type, "targets", (int)routes[i].n_targets,
                          "feed", routes[i].feed);
            } else {
                log_warn("event not routed yet: the store failed", "{s:s, s:s}", "event",
                         entries[i].event->id, "error", store_last_error(self->store));
            }
            if (replies[j])
                freeReplyObject(replies[j]);
            replies[j] = NULL;
        }
        if (!stale || subcache_refresh(self->subs, self->store) != STORE_OK)
            break;
    }
    if (wake && self->wake)
        self->wake(self->wake_arg);
out:
    for (size_t i = 0; routes && i < count; i++)
        routing_free(&routes[i]);
    free(routes);
    free(calls);
    free(which);
    free(replies);
    free(got);
}

/* The lease that makes one reader per stream route, among every replica:
 * taken if free, kept if ours. Returns 1 (ours), 0 (another's), -1 (no
 * store). */
static const char lease_lua[] = "local v = redis.call('GET', KEYS[1])\n"
                                "if v == ARGV[1] then\n"
                                "  redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
                                "  return 1\n"
                                "elseif not v then\n"
                                "  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])\n"
                                "  return 1\n"
                                "end\n"
                                "return 0\n";

static int lease_hold(fanout_t *self)
{
    int64_t now = time_now_ms();
    /* Renewed at a third of its life: a write (and an fsync) a few times
     * per lease, not one per poll. */
    if (self->lease_until_ms - now > 2 * FANOUT_LEASE_MS / 3)
        return 1;
    char key[NOTIFY_KEY_MAX], ms[16];
    snprintf(key, sizeof key, "notifications:fanout:%s", self->stream);
    snprintf(ms, sizeof ms, "%d", FANOUT_LEASE_MS);
    const char *argv[] = {key, self->consumer, ms};
    redisReply *r = NULL;
    store_result_t res = store_script_run(self->store, self->lease_script, &r, 1, 3, argv, NULL);
    if (res != STORE_OK)
        return -1;
    int ours = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);
    if (ours && self->lease_until_ms < now)
        log_info("routing the stream", "{s:s, s:s}", "stream", self->stream, "consumer",
                 self->consumer);
    self->lease_until_ms = ours ? now + FANOUT_LEASE_MS : 0;
    return ours;
}

static void fanout_actor(zsock_t *pipe, void *arg)
{
    fanout_t *self = arg;
    self->store = store_new(&self->store_cfg);
    self->subs = subcache_new();
    self->script = self->store ? store_script_add(self->store, notify_fanout_lua) : -1;
    self->lease_script = self->store ? store_script_add(self->store, lease_lua) : -1;
    /* Strict order: an event is never routed ahead of an earlier one of
     * the stream, even one left pending by a crash (this process's or a
     * replica's whose lease ran out). */
    consumer_config_t ccfg = {
        .stream = self->stream,
        .group = NOTIFY_GROUP,
        .consumer = self->consumer,
        .ordered = true,
    };
    consumer_t *consumer = self->store ? consumer_new(self->store, &ccfg) : NULL;
    self->started = consumer && self->subs && self->script >= 0 && self->lease_script >= 0;
    zsock_signal(pipe, 0);
    if (!self->started)
        goto out;

    zpoller_t *poller = zpoller_new(pipe, NULL);
    /* A SIGTERM must not stop the poller: $TERM is how this actor stops. */
    zpoller_set_nonstop(poller, true);
    bool down = false;
    while (true) {
        /* The pipe first, without waiting: the wait is XREADGROUP's. $TERM
         * is heard only between polls, so a poll's batch is always routed
         * and acknowledged before the actor stops: a clean stop leaves
         * nothing this reader took pending. */
        if (zpoller_wait(poller, 0) == pipe) {
            char *command = zstr_recv(pipe);
            bool term = !command || streq(command, "$TERM");
            zstr_free(&command);
            if (term)
                break;
        }
        int lease = lease_hold(self);
        if (lease == 0) {
            /* Another replica routes this stream: stand by, ready to take
             * over when its lease runs out. Standing by is running: the
             * beat says so to readiness (eventlog.h). */
            consumer_beat(consumer);
            if (zpoller_wait(poller, FANOUT_LEASE_MS / 4) == pipe) {
                char *command = zstr_recv(pipe);
                bool term = !command || streq(command, "$TERM");
                zstr_free(&command);
                if (term)
                    break;
            }
            continue;
        }
        int handled =
            lease < 0 ? -1 : consumer_poll_batch(consumer, FANOUT_BLOCK_MS, fanout_batch, self);
        if (handled < 0) {
            if (!down)
                log_warn("event stream unreadable: waiting for the store", "{s:s, s:s}", "stream",
                         self->stream, "error", store_last_error(self->store));
            down = true;
            /* Wait on the pipe, not blind, so a stop is prompt. */
            if (zpoller_wait(poller, 500) == pipe) {
                char *command = zstr_recv(pipe);
                bool term = !command || streq(command, "$TERM");
                zstr_free(&command);
                if (term)
                    break;
            }
        } else if (down) {
            log_info("event stream readable again", "{s:s}", "stream", self->stream);
            down = false;
        }
    }
    zpoller_destroy(&poller);
    if (self->lease_until_ms > time_now_ms()) {
        /* Stopping cleanly: the lease is handed back at once (it lasts a
         * millisecond more), so a replica or the next start takes over
         * without waiting for it to run out. */
        char key[NOTIFY_KEY_MAX];
        snprintf(key, sizeof key, "notifications:fanout:%s", self->stream);
        const char *argv[] = {key, self->consumer, "1"};
        redisReply *r = NULL;
        if (store_script_run(self->store, self->lease_script, &r, 1, 3, argv, NULL) == STORE_OK)
            freeReplyObject(r);
    }
out:
    consumer_destroy(&consumer);
    subcache_destroy(&self->subs);
    store_destroy(&self->store);
}

void fanout_destroy(fanout_t **self_p);

fanout_t *fanout_new(const fanout_config_t *cfg)
{
    fanout_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->store_cfg = *cfg->store;
    snprintf(self->stream, sizeof self->stream, "%s", cfg->stream);
    snprintf(self->consumer, sizeof self->consumer, "%s", cfg->consumer);
    self->wake = cfg->wake;
    self->wake_arg = cfg->wake_arg;
    self->actor = zactor_new(fanout_actor, self);
    if (!self->actor) {
        free(self);
        return NULL;
    }
    /* zactor_new waited for the actor's signal. */
    if (!self->started) {
        log_error("the event reader did not start", "{s:s}", "stream", self->stream);
        fanout_destroy(&self);
    }
    return self;
}

void fanout_destroy(fanout_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    fanout_t *self = *self_p;
    zactor_destroy(&self->actor);
    free(self);
    *self_p = NULL;
}
