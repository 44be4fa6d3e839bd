/* Which subscriptions an event goes to: pure rules, and a cache of the
 * subscriptions each thread that routes events keeps.
 *
 * An event goes to a subscription when:
 *   - its type matches one of the subscription's patterns (none: every
 *     type): "*", an exact type, or "prefix.*" (every type under prefix.);
 *   - its territory is one of the subscription's (none: every territory);
 *     an event about no territory reaches only subscriptions without one;
 *   - it is not private to another party: a PRIVATE document's events
 *     reach only its owner party and ADMIN, and the service's own events
 *     about a subscription (subscription.*, endpoint.disabled) reach only
 *     the subscription's owner party and ADMIN;
 *   - and for the channel: WEBHOOK takes any event; EMAIL takes only the
 *     digest ("digest.ready") of its territories; FEED selects what enters
 *     the partner feed, which no private event ever does.
 * An endpoint.disabled event also reaches every other subscription of the
 * disabled one's owner party, whatever their filters, so the owner hears of
 * it on their other channels; never the disabled subscription itself. */
#ifndef NOTIFY_MATCH_H
#define NOTIFY_MATCH_H

#include "envelope.pb-c.h"
#include "notifications.pb-c.h"
#include "store.h"

#include <stdbool.h>
#include <stddef.h>

#define MATCH_TERRITORY_MAX 8
#define MATCH_PARTY_MAX     32

/* What routing needs to know of an event, read once (match_facts). */
typedef struct {
    const char *type;
    char territory[MATCH_TERRITORY_MAX];
    char private_to[MATCH_PARTY_MAX]; /* "" for an event every party may see */
    char about_subscription[40];      /* subscription.* / endpoint.disabled: its id */
    bool endpoint_disabled;
} match_facts_t;

void match_facts(const Passerelle__Event *event, match_facts_t *facts);

/* A pattern: "*", "a.b", "a.*"; lower-case letters, digits, '_', '.'. */
bool match_pattern_valid(const char *pattern);
bool match_type(const char *pattern, const char *type);

/* Whether the event reaches the subscription (any state; the caller decides
 * what a paused one does). */
bool match_subscription(const Passerelle__Subscription *sub, const match_facts_t *facts);

/* --- the cache --------------------------------------------------------------- */

typedef struct subcache_t subcache_t;

subcache_t *subcache_new(void);
void subcache_destroy(subcache_t **self_p);

/* Reloads every subscription if they changed since the last load (the
 * change counter in notifications:meta). STORE_OK, or the store's failure
 * (the cache keeps what it had). */
store_result_t subcache_refresh(subcache_t *self, store_t *store);

/* Reloads every subscription if counter (the change counter as read by
 * the caller, e.g. in a script's answer) is not the one of the last load. */
store_result_t subcache_sync(subcache_t *self, store_t *store, long long counter);

/* The change counter of the last load; -1 before the first. */
long long subcache_counter(const subcache_t *self);

size_t subcache_count(const subcache_t *self);
const Passerelle__Subscription *subcache_at(const subcache_t *self, size_t i);
/* By id; NULL if unknown. */
const Passerelle__Subscription *subcache_find(const subcache_t *self, const char *id);

/* The key of the change counter and its field. */
#define NOTIFY_META_KEY   "notifications:meta"
#define NOTIFY_META_SUBS  "subs"
#define NOTIFY_SUBS_INDEX "notifications:subs"
#define NOTIFY_INACTIVE   "notifications:inactive"

#endif
