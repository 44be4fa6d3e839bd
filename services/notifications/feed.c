/* The partner feed's publisher (see feed.h): an actor that tails the feed
 * stream and publishes each entry on a PUB socket, and the "feed.replay"
 * request that reads the same stream back for a subscriber that missed
 * something.
 *
 * The actor owns its Redis connection because XREAD BLOCK holds it. Its
 * block is short (FEED_BLOCK_MS) rather than as long as the command timeout
 * allows: the actor has no other way to hear $TERM or to send a heartbeat
 * while Redis holds it, and a 200 ms read costs Redis nothing when the feed
 * is quiet.
 *
 * The one thing the publisher must get right is the chain of positions:
 * each message names the position before it, and the publisher only ever
 * moves forward from the last position it published, whatever happens to
 * Redis in between. A subscriber can then trust that a message whose
 * `previous` it has seen follows what it has, and replay otherwise. */
#include "feed.h"
#include "eventlog.h"
#include "identity.h"
#include "log.h"
#include "notify.h"
#include "notifications.pb-c.h"

#include <czmq.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FEED_POSITION_MAX      48 /* "<ms>-<seq>": two 20-digit numbers and a dash */
#define FEED_HEARTBEAT_DEFAULT 1000
/* How long one XREAD waits for new entries: the actor's reaction time to
 * $TERM and its heartbeat accuracy while the feed is quiet. */
#define FEED_BLOCK_MS 200
/* Entries read per XREAD: a burst goes out in a few reads, and one read's
 * reply stays small. */
#define FEED_READ_COUNT 256
/* The pause before trying Redis again after it failed. */
#define FEED_RETRY_MS 500
/* Messages a subscriber may fall behind before ZeroMQ drops them for it: a
 * burst of fan-out (a programme's worth of units) fits; past it the
 * subscriber replays. */
#define FEED_SEND_HWM 100000
/* What a subscriber may send to a PUB socket is subscriptions: small. */
#define FEED_MAX_INBOUND_BYTES (64 * 1024)
/* Messages still queued when the publisher stops get this long to leave. */
#define FEED_LINGER_MS 200

struct feed_t {
    zactor_t *actor;
    char *endpoint_cfg;
    bool insecure;
    int heartbeat_ms;
    int block_ms;
    zcert_t *cert;
    store_t *store; /* used by the actor only */
    /* Written by the actor before it signals, read after zactor_new. */
    bool bound;
    char endpoint[256];
};

/* ------------------------------------------------------------------------
 * The tail: where the publisher is in the stream, and the Redis side */

typedef struct {
    feed_t *feed;
    zsock_t *pub;
    char last[FEED_POSITION_MAX]; /* the last position published (or passed) */
    bool started;                 /* last holds the start position */
    bool store_down;              /* logged once per outage */
    uint64_t published;
} tail_t;

/* A failure of Redis: logged at the first of a run of failures only, so that
 * an outage is one line and not one every FEED_RETRY_MS. */
static void tail_store_failed(tail_t *tail, store_result_t result, const char *doing)
{
    if (tail->store_down)
        return;
    tail->store_down = true;
    log_warn("feed: store unavailable, retrying", "{s:s, s:s, s:s, s:s}", "doing", doing, "error",
             store_last_error(tail->feed->store), "kind", result == STORE_LOST ? "lost" : "refused",
             "position", tail->last);
}

static void tail_store_ok(tail_t *tail)
{
    if (!tail->store_down)
        return;
    tail->store_down = false;
    log_info("feed: store reachable again", "{s:s}", "position", tail->last);
}

/* The stream's last entry becomes the start: the feed publishes what is
 * appended from now on; what came before is there for replay. */
static bool tail_find_start(tail_t *tail)
{
    redisReply *reply = NULL;
    store_result_t result =
        store_command(tail->feed->store, &reply, "XREVRANGE %s + - COUNT 1", NOTIFY_FEED_STREAM);
    if (result != STORE_OK || reply->type != REDIS_REPLY_ARRAY) {
        tail_store_failed(tail, result == STORE_OK ? STORE_REFUSED : result, "XREVRANGE");
        if (reply)
            freeReplyObject(reply);
        return false;
    }
    const char *start = "0-0";
    if (reply->elements > 0) {
        const redisReply *entry = reply->element[0];
        if (entry->type == REDIS_REPLY_ARRAY && entry->elements >= 1 &&
            entry->element[0]->type == REDIS_REPLY_STRING &&
            entry->element[0]->len < FEED_POSITION_MAX)
            start = entry->element[0]->str;
    }
    snprintf(tail->last, sizeof tail->last, "%s", start);
    freeReplyObject(reply);
    tail->started = true;
    tail_store_ok(tail);
    log_info("feed: publishing", "{s:s, s:s}", "endpoint", tail->feed->endpoint, "after",
             tail->last);
    return true;
}

static const redisReply *tail_field(const redisReply *fields, const char *name)
{
    if (!fields || fields->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (size_t i = 0; i + 1 < fields->elements; i += 2) {
        const redisReply *key = fields->element[i];
        const redisReply *value = fields->element[i + 1];
        if (key->type == REDIS_REPLY_STRING && strcmp(key->str, name) == 0 &&
            value->type == REDIS_REPLY_STRING)
            return value;
    }
    return NULL;
}

/* Publishes one entry [id, fields] and moves the tail past it. An entry
 * without an event is not published, but the tail still moves: the next
 * message then names it as `previous`, the subscriber replays, and the
 * replay passes over it the same way (eventlog_list). */
static void tail_publish(tail_t *tail, const redisReply *entry)
{
    if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 2 ||
        entry->element[0]->type != REDIS_REPLY_STRING ||
        entry->element[0]->len >= FEED_POSITION_MAX)
        return;
    const char *position = entry->element[0]->str;
    const redisReply *type = tail_field(entry->element[1], "type");
    const redisReply *event = tail_field(entry->element[1], "event");
    if (!event) {
        log_warn("feed: stream entry is not an event, not published", "{s:s, s:s}", "stream",
                 NOTIFY_FEED_STREAM, "position", position);
    } else {
        zmsg_t *msg = zmsg_new();
        zmsg_addstr(msg, type ? type->str : "");
        zmsg_addstr(msg, position);
        zmsg_addstr(msg, tail->last);
        zmsg_addmem(msg, event->str, event->len);
        /* A PUB socket never blocks: a subscriber past its high-water mark
         * loses the message and finds the gap by `previous`. */
        if (zmsg_send(&msg, tail->pub) != 0) {
            log_warn("feed: cannot send", "{s:s, s:s}", "position", position, "error",
                     zmq_strerror(zmq_errno()));
            zmsg_destroy(&msg);
        }
        tail->published++;
    }
    snprintf(tail->last, sizeof tail->last, "%s", position);
}

/* One XREAD after the last position, waiting up to block_ms. False if Redis
 * failed (the caller pauses and comes back: the tail has not moved). */
static bool tail_read(tail_t *tail, int block_ms)
{
    redisReply *reply = NULL;
    store_result_t result =
        store_command(tail->feed->store, &reply, "XREAD COUNT %d BLOCK %d STREAMS %s %s",
                      FEED_READ_COUNT, block_ms, NOTIFY_FEED_STREAM, tail->last);
    if (result != STORE_OK ||
        (reply->type != REDIS_REPLY_ARRAY && reply->type != REDIS_REPLY_NIL)) {
        tail_store_failed(tail, result == STORE_OK ? STORE_REFUSED : result, "XREAD");
        if (reply)
            freeReplyObject(reply);
        return false;
    }
    tail_store_ok(tail);
    /* [[stream, [[id, fields], ...]]], or nil when the block timed out */
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements > 0 &&
        reply->element[0]->type == REDIS_REPLY_ARRAY && reply->element[0]->elements == 2) {
        const redisReply *entries = reply->element[0]->element[1];
        if (entries->type == REDIS_REPLY_ARRAY)
            for (size_t i = 0; i < entries->elements; i++)
                tail_publish(tail, entries->element[i]);
    }
    freeReplyObject(reply);
    return true;
}

/* Tells subscribers the last position even when nothing happens, so that
 * one that missed the end of a burst does not wait for the next event to
 * learn it. Not before the start is known: a heartbeat promises that the
 * position it names is the publisher's own. */
static void tail_heartbeat(tail_t *tail)
{
    if (!tail->started)
        return;
    zmsg_t *msg = zmsg_new();
    zmsg_addstr(msg, FEED_HEARTBEAT_TOPIC);
    zmsg_addstr(msg, tail->last);
    if (zmsg_send(&msg, tail->pub) != 0)
        zmsg_destroy(&msg);
}

/* ------------------------------------------------------------------------
 * The actor */

/* The address a local subscriber can connect to: a wildcard bind is
 * reachable on loopback. */
static void feed_connectable(const char *bound, int port, char *out, size_t out_size)
{
    if (strncmp(bound, "tcp://0.0.0.0:", 14) == 0 || strncmp(bound, "tcp://[::]:", 11) == 0 ||
        strncmp(bound, "tcp://*:", 8) == 0)
        snprintf(out, out_size, "tcp://127.0.0.1:%d", port);
    else
        snprintf(out, out_size, "%s", bound);
}

static zsock_t *feed_bind(feed_t *self)
{
    zsock_t *pub = zsock_new(ZMQ_PUB);
    if (!pub)
        return NULL;
    zsock_set_sndhwm(pub, FEED_SEND_HWM);
    zsock_set_maxmsgsize(pub, FEED_MAX_INBOUND_BYTES);
    zsock_set_linger(pub, FEED_LINGER_MS);
    if (!self->insecure) {
        zcert_apply(self->cert, pub);
        zsock_set_curve_server(pub, 1);
        zsock_set_zap_domain(pub, "notifications");
    }
    int port = zsock_bind(pub, "%s", self->endpoint_cfg);
    if (port < 0) {
        log_error("feed: cannot bind", "{s:s, s:s}", "endpoint", self->endpoint_cfg, "error",
                  zmq_strerror(zmq_errno()));
        zsock_destroy(&pub);
        return NULL;
    }
    const char *bound = zsock_endpoint(pub);
    feed_connectable(bound ? bound : self->endpoint_cfg, port, self->endpoint,
                     sizeof self->endpoint);
    return pub;
}

/* True if the pipe asks the actor to stop. */
static bool feed_pipe_says_stop(zsock_t *pipe)
{
    zmsg_t *msg = zmsg_recv(pipe);
    char *command = msg ? zmsg_popstr(msg) : NULL;
    bool stop = !command || streq(command, "$TERM");
    zstr_free(&command);
    zmsg_destroy(&msg);
    return stop;
}

static void feed_actor(zsock_t *pipe, void *args)
{
    feed_t *self = args;
    zsock_t *pub = feed_bind(self);
    self->bound = pub != NULL;
    zsock_signal(pipe, 0);
    if (!pub) {
        /* wait for $TERM so that zactor_destroy finds us */
        char *command = zstr_recv(pipe);
        zstr_free(&command);
        return;
    }
    zpoller_t *poller = zpoller_new(pipe, NULL);
    /* The process's signal handling is main's: it destroys the feed. */
    zpoller_set_nonstop(poller, true);
    tail_t tail = {.feed = self, .pub = pub};
    snprintf(tail.last, sizeof tail.last, "0-0");
    int64_t next_heartbeat_ms = zclock_mono() + self->heartbeat_ms;
    int64_t redis_due_ms = 0; /* when to use Redis next (after a failure) */
    bool running = true;
    while (running) {
        int64_t now_ms = zclock_mono();
        /* Without Redis work due, wait on the pipe until there is some or a
         * heartbeat is due; otherwise only look at it. */
        int64_t wait_ms = redis_due_ms - now_ms;
        if (next_heartbeat_ms - now_ms < wait_ms)
            wait_ms = next_heartbeat_ms - now_ms;
        void *which = zpoller_wait(poller, wait_ms > 0 ? (int)wait_ms : 0);
        if (which == pipe) {
            if (feed_pipe_says_stop(pipe))
                running = false;
            continue;
        }
        if (!which && !zpoller_expired(poller) && zmq_errno() == ETERM)
            break;
        now_ms = zclock_mono();
        if (now_ms >= next_heartbeat_ms) {
            tail_heartbeat(&tail);
            next_heartbeat_ms = now_ms + self->heartbeat_ms;
        }
        if (now_ms < redis_due_ms)
            continue;
        bool ok;
        if (!tail.started) {
            ok = tail_find_start(&tail);
        } else {
            /* Never past the next heartbeat, and at least 1 ms: BLOCK 0
             * would wait for ever. */
            int64_t block_ms = next_heartbeat_ms - now_ms;
            if (block_ms > self->block_ms)
                block_ms = self->block_ms;
            if (block_ms < 1)
                block_ms = 1;
            ok = tail_read(&tail, (int)block_ms);
        }
        redis_due_ms = ok ? 0 : zclock_mono() + FEED_RETRY_MS;
    }
    log_info("feed: stopped", "{s:s, s:s, s:I}", "endpoint", self->endpoint, "position", tail.last,
             "published", (json_int_t)tail.published);
    zpoller_destroy(&poller);
    zsock_destroy(&pub);
}

/* ------------------------------------------------------------------------
 * Public API */

static void feed_free(feed_t *self)
{
    store_destroy(&self->store);
    zcert_destroy(&self->cert);
    free(self->endpoint_cfg);
    free(self);
}

feed_t *feed_new(const feed_config_t *cfg)
{
    if (!cfg || !cfg->store)
        return NULL;
    feed_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->endpoint_cfg = strdup(cfg->endpoint ? cfg->endpoint : "tcp://127.0.0.1:*");
    self->insecure = cfg->insecure;
    self->heartbeat_ms = cfg->heartbeat_ms > 0 ? cfg->heartbeat_ms : FEED_HEARTBEAT_DEFAULT;
    /* XREAD BLOCK must end well before the store's command timeout, or the
     * read fails and the connection is dropped. */
    int command_timeout_ms =
        cfg->store->command_timeout_ms > 0 ? cfg->store->command_timeout_ms : 2000;
    self->block_ms =
        FEED_BLOCK_MS < command_timeout_ms / 2 ? FEED_BLOCK_MS : command_timeout_ms / 2;
    if (self->block_ms < 1)
        self->block_ms = 1;
    self->store = store_new(cfg->store);
    if (!self->endpoint_cfg || !self->store) {
        feed_free(self);
        return NULL;
    }
    if (self->insecure) {
        log_warn("INSECURE MODE: the feed is published in plain text to anyone who connects",
                 "{s:s, s:b}", "endpoint", self->endpoint_cfg, "insecure", 1);
    } else {
        char path[PATH_MAX];
        keydir_server_cert_path(cfg->keys_dir ? cfg->keys_dir : "./var/keys", path, sizeof path);
        self->cert = zcert_load(path);
        if (!self->cert ||
            streq(zcert_secret_txt(self->cert), "0000000000000000000000000000000000000000")) {
            log_error("feed: server certificate missing or without its secret key", "{s:s}", "path",
                      path);
            feed_free(self);
            return NULL;
        }
    }
    self->actor = zactor_new(feed_actor, self);
    if (!self->actor || !self->bound) {
        zactor_destroy(&self->actor);
        feed_free(self);
        return NULL;
    }
    log_info("feed: listening", "{s:s, s:b, s:i}", "endpoint", self->endpoint, "curve",
             !self->insecure, "heartbeat_ms", self->heartbeat_ms);
    return self;
}

void feed_destroy(feed_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    feed_t *self = *self_p;
    zactor_destroy(&self->actor);
    feed_free(self);
    *self_p = NULL;
}

const char *feed_endpoint(const feed_t *self)
{
    return self ? self->endpoint : "";
}

/* ------------------------------------------------------------------------
 * feed.replay */

void handle_feed_replay(void *ctx, const call_t *call, const ProtobufCMessage *request,
                        reply_t *reply)
{
    (void)call;
    notify_t *notify = ctx;
    const Passerelle__FeedReplayRequest *req = (const Passerelle__FeedReplayRequest *)request;
    reply_stream_entries(reply, notify->store, NOTIFY_FEED_STREAM, req->after, req->has_limit,
                         req->limit);
}
