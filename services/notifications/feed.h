/* The partner feed: every event a FEED subscription matches, published on
 * a ZeroMQ PUB socket behind CURVE, in the order of the feed stream
 * (NOTIFY_FEED_STREAM, appended by the fan-out with the event's delivery
 * records, atomically).
 *
 * A message has four frames:
 *   1. topic: the event type ("convention.envisaged"), so a subscriber may
 *      subscribe by prefix;
 *   2. position: the feed stream entry id of this event;
 *   3. previous: the entry id before it in the feed ("0-0" for the first), so
 *      a subscriber that did not see `previous` knows it missed something;
 *   4. the packed Event.
 * Every heartbeat_ms the publisher also sends a heartbeat, topic
 * FEED_HEARTBEAT_TOPIC, then the last position published: a subscriber that
 * missed the last events before a quiet spell learns it there.
 * What was missed is read back with the request "feed.replay" (an
 * EventListReply of the feed's entries after a position). A PUB socket drops
 * messages for a subscriber that is slow or away; gaps are found and filled
 * this way, never prevented.
 *
 * The publisher tails the feed stream (XREAD BLOCK) from its last entry at
 * start; several replicas each publish the whole feed on their own
 * endpoint. */
#ifndef NOTIFY_FEED_H
#define NOTIFY_FEED_H

#include "server.h"
#include "store.h"

#define FEED_HEARTBEAT_TOPIC "~heartbeat"

typedef struct feed_t feed_t;

typedef struct {
    const char *endpoint; /* PUB bind; "tcp://127.0.0.1:*" picks a port */
    const char *keys_dir; /* CURVE: the server certificate; zauth must run */
    bool insecure;
    const store_config_t *store; /* copied; the feed opens its own connection */
    int heartbeat_ms;            /* default 1000 */
} feed_config_t;

/* Starts the publisher actor. The process's zauth must be running (a
 * server_new() before this starts it). NULL (logged) if it cannot bind. */
feed_t *feed_new(const feed_config_t *cfg);
void feed_destroy(feed_t **self_p);

/* The bound endpoint ("tcp://127.0.0.1:41235"). */
const char *feed_endpoint(const feed_t *self);

/* The "feed.replay" request (FeedReplayRequest -> EventListReply); ctx is
 * a notify_t. */
void handle_feed_replay(void *ctx, const call_t *call, const ProtobufCMessage *request,
                        reply_t *reply);

#endif
