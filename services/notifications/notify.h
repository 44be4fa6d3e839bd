/* The notifications service: what its pieces share.
 *
 * The process runs one thread per blocking resource, each an actor with its
 * own Redis connection, because each waits on something different:
 *   - the request server (server.h): subscriptions, attempts, dead letters,
 *     feed replay, digest, latency;
 *   - one fan-out reader per event stream (fanout.h): a consumer group
 *     blocked on XREADGROUP, which turns each event into one delivery per
 *     matching subscription, atomically with its done marker;
 *   - the delivery worker (deliver.h): libcurl multi, waiting on sockets,
 *     its Redis calls made by a thread of its own so that the transfers go
 *     on while Redis answers;
 *   - the partner feed (feed.h): a PUB socket tailing the feed stream;
 *   - the digest (digest.h): its own consumer group and a clock.
 *
 * Redis keys (every key this service writes):
 *   notifications:events                 its own event stream (subscription.*,
 *                                        endpoint.disabled, digest.ready)
 *   notifications:sub:<id>               a Subscription (commit.lua record)
 *   notifications:subs                   index of every subscription (zset)
 *   notifications:subref:<party>:<ref>   a subscription named by its owner's ref
 *   notifications:inactive               subscriptions paused or disabled (zset)
 *   notifications:meta                   hash: "subs" counts changes of
 *                                        subscriptions (caches reload on change)
 *   notifications:dlv:<delivery id>:<sub> a Delivery (packed)
 *   notifications:q:<sub>:<subject>      the queue of one subject (list of
 *                                        delivery ids); only its head is in flight
 *   notifications:due:<sub>              zset subject -> when the head of the
 *                                        subject's queue is due (ms); a claim
 *                                        pushes it to the end of the lease
 *   notifications:duesubs                zset sub -> no later than the first of
 *                                        its due set (deliver.lua); a claim
 *                                        looks at the subscriptions due only
 *   (notifications:due, the single due set "<sub> <subject>" -> ms of
 *   earlier versions, is moved into these by the first claim that finds it)
 *   notifications:dead:<sub>             dead deliveries (zset, ms)
 *   notifications:attempts:<sub>         the attempts log (stream, capped)
 *   notifications:health:<sub>           hash: failing_since, last_success, ...
 *   notifications:latency:<type>:<territory|all>  hash: histogram buckets of
 *                                        commit-to-delivery time
 *   notifications:feed                   the partner feed's stream
 *   notifications:digest:*               the digest's projection (digest.h)
 *   <stream>:done:<group>:<event id>     done markers (eventlog.h) */
#ifndef NOTIFY_H
#define NOTIFY_H

#include "server.h"
#include "store.h"

#include <stdbool.h>
#include <stdint.h>

#define NOTIFY_STREAM      "notifications:events"
#define NOTIFY_SOURCE      "/passerelle/notifications"
#define NOTIFY_FEED_STREAM "notifications:feed"
#define NOTIFY_GROUP       "notifications"

#define NOTIFY_KEY_MAX 320

/* The index of the subscriptions with something due (deliver.lua), and
 * the single due set it replaced, moved over when found. */
#define NOTIFY_DUE_SUBS   "notifications:duesubs"
#define NOTIFY_DUE_LEGACY "notifications:due"

/* The retry schedule of the issue: after 5 s, 5 min, 30 min, 2 h, 5 h,
 * 10 h, 14 h, 20 h and 24 h; then the delivery is dead. */
#define NOTIFY_RETRY_COUNT 9
extern const int64_t notify_retry_schedule_s[NOTIFY_RETRY_COUNT];

/* What the request handlers are handed as ctx. */
typedef struct url_policy_t url_policy_t;
typedef struct {
    store_t *store;             /* the server thread's connection */
    const url_policy_t *policy; /* the outgoing URL allowlist */
    int outcome_script;         /* deliver_scripts_add() on store */
} notify_t;

/* Request handlers, route table (handlers.c). */
extern const route_t notify_routes[];
extern const size_t notify_route_count;

#define NOTIFY_HANDLER(name)                                                                       \
    void name(void *ctx, const call_t *call, const ProtobufCMessage *request, reply_t *reply)
NOTIFY_HANDLER(handle_subscription_create);
NOTIFY_HANDLER(handle_subscription_get);
NOTIFY_HANDLER(handle_subscription_list);
NOTIFY_HANDLER(handle_subscription_pause);
NOTIFY_HANDLER(handle_subscription_resume);
NOTIFY_HANDLER(handle_subscription_delete);
NOTIFY_HANDLER(handle_subscription_rotate_secret);
NOTIFY_HANDLER(handle_attempt_list);
NOTIFY_HANDLER(handle_deadletter_list);
NOTIFY_HANDLER(handle_deadletter_replay);
NOTIFY_HANDLER(handle_latency_get);

/* Keys, written into out (NOTIFY_KEY_MAX). */
void notify_key_sub(const char *sub_id, char *out);
void notify_key_queue(const char *sub_id, const char *subject, char *out);
void notify_key_due(const char *sub_id, char *out);
void notify_key_delivery(const char *delivery_id, const char *sub_id, char *out);
void notify_key_dead(const char *sub_id, char *out);
void notify_key_attempts(const char *sub_id, char *out);
void notify_key_health(const char *sub_id, char *out);
void notify_key_latency(const char *event_type, const char *territory, char *out);

/* A delay of the schedule (or any delay) divided by the clock scale, in ms,
 * at least 1. */
int64_t notify_scaled_ms(double clock_scale, int64_t delay_ms);

#endif
