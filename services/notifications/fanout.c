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
/* Most targets one event can have: every subscription could match. */
#define FANOUT_TARGETS_MAX 4096

struct fanout_t {
    zactor_t *actor;
    store_config_t store_cfg;
    char stream[128];
    char consumer[128];
    int claim_idle_ms;
    void (*wake)(void *arg);
    void *wake_arg;
    bool started; /* set by the actor before it signals */
    /* owned by the actor thread */
    store_t *store;
    int script;
    subcache_t *subs;
};

typedef struct {
    char member[NOTIFY_KEY_MAX];
    char dlv_key[NOTIFY_KEY_MAX];
    char queue_key[NOTIFY_KEY_MAX];
    uint8_t *packed;
    size_t packed_len;
} target_t;

/* The consumer's handler: route one event (eventlog.h). 0 when its
 * deliveries and done marker are durable, -1 to see it again later. */
static int fanout_event(void *arg, const char *position, const Passerelle__Event *event,
                        const char *done_key)
{
    fanout_t *self = arg;
    if (subcache_refresh(self->subs, self->store) != STORE_OK)
        return -1;

    match_facts_t facts;
    match_facts(event, &facts);
    const char *subject = event->subject && *event->subject ? event->subject : event->id;
    if (!subject || !event->id) {
        log_warn("an event without id: not routed", "{s:s, s:s}", "stream", self->stream,
                 "position", position);
        return 0;
    }

    size_t n_subs = subcache_count(self->subs);
    target_t *targets = calloc(n_subs ? n_subs : 1, sizeof *targets);
    if (!targets)
        return -1;
    bool feed = false;
    size_t n = 0;
    char now[TIME_RFC3339_LEN], delivery_id[ID_LEN + 8], origin[256];
    time_now_rfc3339(now);
    snprintf(delivery_id, sizeof delivery_id, "msg_%s", event->id);
    snprintf(origin, sizeof origin, "%s %s", self->stream, position);

    for (size_t i = 0; i < n_subs && n < FANOUT_TARGETS_MAX; i++) {
        const Passerelle__Subscription *sub = subcache_at(self->subs, i);
        if (!match_subscription(sub, &facts))
            continue;
        if (sub->channel == PASSERELLE__CHANNEL__CHANNEL_FEED) {
            feed = true;
            continue;
        }
        Passerelle__Delivery dlv = PASSERELLE__DELIVERY__INIT;
        dlv.id = delivery_id;
        dlv.subscription_id = sub->id;
        dlv.event = (Passerelle__Event *)event;
        dlv.stream = self->stream;
        dlv.position = (char *)position;
        dlv.has_attempts = true;
        dlv.created_at = now;
        dlv.has_state = true;
        dlv.state = PASSERELLE__DELIVERY_STATE__DELIVERY_PENDING;
        dlv.territory = facts.territory;
        target_t *t = &targets[n];
        t->packed_len = passerelle__delivery__get_packed_size(&dlv);
        t->packed = malloc(t->packed_len ? t->packed_len : 1);
        if (!t->packed)
            break;
        passerelle__delivery__pack(&dlv, t->packed);
        snprintf(t->member, sizeof t->member, "%s %s", sub->id, subject);
        notify_key_delivery(delivery_id, sub->id, t->dlv_key);
        notify_key_queue(sub->id, subject, t->queue_key);
        n++;
    }

    size_t event_len = passerelle__event__get_packed_size(event);
    uint8_t *event_packed = malloc(event_len ? event_len : 1);
    size_t argc = 3 + 2 * n + 7 + 3 * n;
    const char **argv = calloc(argc, sizeof *argv);
    size_t *lens = calloc(argc, sizeof *lens);
    int rc = -1;
    if (!event_packed || !argv || !lens)
        goto out;
    passerelle__event__pack(event, event_packed);

    char ttl[16], now_ms[24], count[16];
    snprintf(ttl, sizeof ttl, "%d", 7 * 24 * 3600);
    snprintf(now_ms, sizeof now_ms, "%lld", (long long)time_now_ms());
    snprintf(count, sizeof count, "%zu", n);
    size_t k = 0;
#define ARG(s)     (argv[k] = (s), lens[k] = strlen(s), k++)
#define ARGB(p, l) (argv[k] = (const char *)(p), lens[k] = (l), k++)
    ARG(done_key);
    ARG("notifications:due");
    ARG(NOTIFY_FEED_STREAM);
    for (size_t i = 0; i < n; i++) {
        ARG(targets[i].dlv_key);
        ARG(targets[i].queue_key);
    }
    ARG(ttl);
    ARG(now_ms);
    ARG(feed ? "1" : "0");
    ARG(facts.type);
    ARGB(event_packed, event_len);
    ARG(origin);
    ARG(count);
    for (size_t i = 0; i < n; i++) {
        ARG(targets[i].member);
        ARG(delivery_id);
        ARGB(targets[i].packed, targets[i].packed_len);
    }
#undef ARG
#undef ARGB
    redisReply *r = NULL;
    store_result_t res =
        store_script_run(self->store, self->script, &r, (int)(3 + 2 * n), (int)k, argv, lens);
    if (res == STORE_OK) {
        long long queued = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
        log_debug("event routed", "{s:s, s:s, s:i, s:b}", "event", event->id, "type", facts.type,
                  "queued", (int)queued, "feed", feed);
        if (queued > 0 && self->wake)
            self->wake(self->wake_arg);
        rc = 0;
    } else {
        log_warn("event not routed yet: the store failed", "{s:s, s:s}", "event", event->id,
                 "error", store_last_error(self->store));
    }
    if (r)
        freeReplyObject(r);
out:
    for (size_t i = 0; i < n; i++)
        free(targets[i].packed);
    free(targets);
    free(event_packed);
    free(argv);
    free(lens);
    return rc;
}

static void fanout_actor(zsock_t *pipe, void *arg)
{
    fanout_t *self = arg;
    self->store = store_new(&self->store_cfg);
    self->subs = subcache_new();
    self->script = self->store ? store_script_add(self->store, notify_fanout_lua) : -1;
    consumer_config_t ccfg = {
        .stream = self->stream,
        .group = NOTIFY_GROUP,
        .consumer = self->consumer,
        .claim_idle_ms = self->claim_idle_ms,
    };
    consumer_t *consumer = self->store ? consumer_new(self->store, &ccfg) : NULL;
    self->started = consumer && self->subs && self->script >= 0;
    zsock_signal(pipe, 0);
    if (!self->started)
        goto out;

    zpoller_t *poller = zpoller_new(pipe, NULL);
    /* A SIGTERM must not stop the poller: $TERM is how this actor stops. */
    zpoller_set_nonstop(poller, true);
    bool down = false;
    while (true) {
        /* The pipe first, without waiting: the wait is XREADGROUP's. */
        if (zpoller_wait(poller, 0) == pipe) {
            char *command = zstr_recv(pipe);
            bool term = !command || streq(command, "$TERM");
            zstr_free(&command);
            if (term)
                break;
        }
        int handled = consumer_poll(consumer, FANOUT_BLOCK_MS, fanout_event, self);
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
    self->claim_idle_ms = cfg->claim_idle_ms;
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
