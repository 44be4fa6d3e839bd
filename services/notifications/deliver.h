/* The delivery worker: takes the deliveries that are due, sends them
 * (outbox.h), and records each outcome.
 *
 * Ordering. Each subscription has one queue per subject (a unit, a
 * reservation): only its head is ever in flight, and it leaves the queue
 * when delivered or dead. So the events about one subject reach an endpoint
 * in the order they happened, retries included, while different subjects
 * go concurrently (up to the outbox's bound per endpoint).
 *
 * Claims. Each subscription's due set holds one member per queue whose
 * head is due, and an index lists the subscriptions with something due, so
 * that a claim looks at as many entries as it takes (and one per
 * subscription), not at everything due. Taking a member pushes its score to
 * the end of a lease longer than the transfer timeout, so another replica,
 * or this one after a crash, sends it again only if no outcome was recorded
 * in time: at least once, never lost. The same delivery keeps its
 * webhook-id on every attempt.
 *
 * One call of one script (deliver.lua) per pass of the worker records the
 * outcomes of every transfer that ended and then claims what is due, as
 * far as there is room: one round trip and one fsync per pass, made by a
 * thread of the worker's own (its own connection) while the transfers go
 * on; what ends meanwhile goes in the next pass. Outcomes: delivered
 * (2xx): dequeued, the next head due at once, latency recorded; failed: the
 * attempt counted and the next one scheduled after the retry schedule
 * (with +-10% jitter, or Retry-After when the endpoint sent one), or, after
 * the last, the delivery is dead (dead-letter list) and the queue moves on;
 * 410 Gone, or failing longer than the disable delay: the subscription is
 * disabled (endpoint.disabled event) and its queues wait. Every attempt is
 * logged in the subscription's attempts log. */
#ifndef NOTIFY_DELIVER_H
#define NOTIFY_DELIVER_H

#include "metrics.h"
#include "notifications.pb-c.h"
#include "store.h"
#include "url_policy.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct deliver_t deliver_t;

typedef struct {
    const store_config_t *store; /* copied; the worker opens its own connection */
    const url_policy_t *policy;  /* borrowed */
    double clock_scale;
    int64_t disable_after_ms; /* unscaled */
    long timeout_ms;          /* per transfer, default 15000 */
    unsigned per_endpoint;    /* transfers in flight per subscription, default 4 */
    unsigned total_max;       /* in all, default 64 */
    uint32_t attempts_kept;   /* attempts log length per subscription */
    const char *smtp_url;     /* e-mail digests: "smtp://127.0.0.1:25" */
    const char *smtp_from;
    /* Where to count the attempts (passerelle_deliveries_total by channel
     * and outcome, passerelle_delivery_attempt_seconds by channel) and the
     * measured promise (passerelle_envisaged_delivery_seconds); NULL for
     * nowhere. Borrowed: it must outlive the worker. */
    metrics_t *metrics;
} deliver_config_t;

deliver_t *deliver_new(const deliver_config_t *cfg);
void deliver_destroy(deliver_t **self_p);

/* The clean stop (SIGTERM), within grace_ms from this call; blocks until
 * done. The worker takes no more deliveries, puts those it took but had
 * not started back in the due set (due again at once), and lets the
 * transfers in flight end, recording their outcomes, until none is left or
 * grace_ms has passed. Those still in flight then are abandoned by
 * deliver_destroy: they stay scheduled, their claims' leases make them due
 * again, and they are sent after the restart or by another replica. */
void deliver_drain(deliver_t *self, int grace_ms);

/* Something was queued: look at the due set now. Safe from any thread. */
void deliver_wake(void *self);

/* --- for the request handlers (any store with deliver_scripts_add) ------------ */

/* Registers the outcome script on store; its handle for deliver_replay. */
int deliver_scripts_add(store_t *store);

/* A subscription's dead deliveries, oldest first, dead at or after since_ms,
 * at most limit. The caller frees with deliver_list_free. */
store_result_t deliver_dead_list(store_t *store, const char *sub_id, int64_t since_ms,
                                 unsigned limit, Passerelle__Delivery ***items, size_t *count);
void deliver_list_free(Passerelle__Delivery **items, size_t count);

/* Puts dead deliveries back at the end of their queues, attempts reset, the
 * same delivery id (webhook-id): one (delivery_id; *found false if it is not
 * dead) or every one dead since since_ms. */
store_result_t deliver_replay(store_t *store, int script, const char *sub_id,
                              const char *delivery_id, int64_t since_ms, unsigned *replayed,
                              bool *found);

typedef struct {
    uint64_t count;
    double p50_ms, p99_ms, max_ms;
} deliver_latency_t;

/* Commit-to-delivery latency of an event type, for a territory (NULL:
 * all). Percentiles from a histogram of 10% wide buckets (the value given
 * is the bucket's upper bound). */
store_result_t deliver_latency_read(store_t *store, const char *event_type, const char *territory,
                                    deliver_latency_t *out);

#endif
