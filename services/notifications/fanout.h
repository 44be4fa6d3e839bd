/* The fan-out: one consumer group reader per event stream, turning each
 * event into one delivery per matching subscription (match.h).
 *
 * For each event, one Lua script (fanout.lua) records, all or nothing:
 * the delivery of every matching WEBHOOK and EMAIL subscription (queued
 * behind the earlier deliveries of the same subject to the same
 * subscription, due at once if it is first), the event in the partner feed
 * if a FEED subscription matches, and the event's done marker. A crash
 * before the script leaves the event pending (read again); after it, the
 * marker makes the repeat a no-op. Deliveries are keyed by event and
 * subscription, so even a repeat without the marker would not queue twice.
 * Paused and disabled subscriptions still get their deliveries queued:
 * nothing is lost while an endpoint is away; a deleted one gets nothing.
 *
 * Order. The queues keep the order in which events were routed, so events
 * must be routed in stream order: one reader per stream routes, among all
 * replicas (a lease in Redis, FANOUT_LEASE_MS, renewed as it reads; the
 * others stand by), and it reads in strict order (eventlog.h, `ordered`):
 * every event left pending - by its own failure, or by a reader that died
 * - is routed before any new one. A reader that dies is replaced when its
 * lease runs out; one that stops cleanly hands its lease back. */
#ifndef NOTIFY_FANOUT_H
#define NOTIFY_FANOUT_H

#include "store.h"

typedef struct fanout_t fanout_t;

typedef struct {
    const store_config_t *store; /* copied; the reader opens its own connection */
    const char *stream;          /* "reservations:events" */
    const char *consumer;        /* this process's consumer name */
    void (*wake)(void *arg);     /* called after deliveries were queued */
    void *wake_arg;
} fanout_config_t;

/* Starts the reader actor. NULL (logged) on failure. */
fanout_t *fanout_new(const fanout_config_t *cfg);
void fanout_destroy(fanout_t **self_p);

#endif
