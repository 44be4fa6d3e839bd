/* Reading event streams with a consumer group.
 *
 * Each producing service appends its events to one stream (txn_event). A
 * consumer reads with a group, so every group sees every event and, within
 * a group, each event goes to one consumer. The reader:
 *   - on start, first re-reads this consumer's own pending entries;
 *   - takes over entries another consumer left pending longer than
 *     claim_idle_ms (it died), with XAUTOCLAIM;
 *   - then waits for new entries (XREADGROUP BLOCK);
 *   - skips an event whose "done" marker exists (already processed, e.g.
 *     processed then crashed before XACK), and acknowledges it;
 *   - after the handler returns 0, sets the done marker and XACKs.
 * An effect that lives in Redis should set the done marker in its own atomic
 * write (the key is handed to the handler): then even a crash between the
 * effect and the XACK cannot double it.
 * An entry delivered more than max_deliveries times without success is moved
 * to the dead-letter stream "<stream>:dead:<group>", logged and acknowledged,
 * so one poison event cannot stall the group. */
#ifndef PASSERELLE_EVENTLOG_H
#define PASSERELLE_EVENTLOG_H

#include "envelope.pb-c.h"
#include "store.h"

typedef struct {
    const char *stream;   /* "reservations:events" */
    const char *group;    /* "indicators" */
    const char *consumer; /* unique per process, e.g. host:pid */
    int claim_idle_ms;    /* default 30000 */
    int max_deliveries;   /* default 10 */
    int batch;            /* entries per read, default 64 */
    int done_ttl_s;       /* lifetime of done markers, default 7 days */
    /* Strict stream order: before any new entry, every pending entry of
     * the group (whoever holds it, however recently) is taken and handled,
     * oldest first. For the one reader of a group that must never handle
     * an event ahead of an earlier one (the notifications fan-out, which
     * holds a lease so that it is the only one). claim_idle_ms is then not
     * used. */
    bool ordered;
} consumer_config_t;

typedef struct consumer_t consumer_t;

/* The handler: called once per entry not yet processed by the group.
 * position is the stream entry id; done_key the Redis key of the event's
 * done marker (set it in your own atomic write if you can). Return 0 when
 * the effect is durable, -1 to leave the entry pending (it comes back). */
typedef int(consumer_fn)(void *arg, const char *position, const Passerelle__Event *event,
                         const char *done_key);

/* Creates the group if needed (from the start of the stream, MKSTREAM) at
 * the first poll. store is borrowed and must be this consumer's own. */
consumer_t *consumer_new(store_t *store, const consumer_config_t *cfg);
void consumer_destroy(consumer_t **self_p);

/* Processes what is available (own pending, then abandoned, then new,
 * waiting up to block_ms for new ones; block_ms must be below the store's
 * command timeout). Returns the number of entries handled (skipped ones
 * included), or -1 if Redis is unavailable (the caller waits and polls
 * again). An entry that does not decode as an Event is dead-lettered. */
int consumer_poll(consumer_t *self, int block_ms, consumer_fn *fn, void *arg);

/* One entry of a batch (consumer_poll_batch). */
typedef struct {
    const char *position;
    const Passerelle__Event *event;
    const char *done_key;
} consumer_entry_t;

/* A batch handler: results[i] = 0 when the effect of entries[i] is durable
 * AND its done marker is set by the handler itself (in the same atomic
 * write), anything else to leave it pending. Each results[i] starts at -1. */
typedef void(consumer_batch_fn)(void *arg, const consumer_entry_t *entries, size_t count,
                                int *results);

/* consumer_poll for a handler that takes the entries read together (up to
 * cfg->batch) at once, so that it can write their effects in one pipeline:
 * the consumer then only acknowledges them (one XACK for all). */
int consumer_poll_batch(consumer_t *self, int block_ms, consumer_batch_fn *fn, void *arg);

/* The done-marker key of an event id for this group (written into out). */
void consumer_done_key(const consumer_t *self, const char *event_id, char *out, size_t out_size);

/* --- health --------------------------------------------------------------
 * Every consumer of the process has a slot in a process-wide table, kept
 * by stream and group, in which it beats: when it is made, and at the end
 * of each poll that Redis answered (a BLOCK that timed out included; a
 * poll finds Redis away returns -1 and does not beat). Polls come every
 * fraction of a second, so a consumer that has not beaten for seconds is
 * stuck (a handler that does not return, Redis away or refusing its reads)
 * and one destroyed has stopped. The operations port reads the table for
 * /readyz and /metrics (httpd.h, ops_watch_consumer). */

typedef enum {
    CONSUMER_ABSENT,  /* none of this stream and group was made in the process */
    CONSUMER_RUNNING, /* at least one is alive */
    CONSUMER_STOPPED, /* every one made has been destroyed */
} consumer_state_t;

typedef struct {
    consumer_state_t state;
    int64_t idle_ms;        /* RUNNING: since the oldest last beat among the live ones */
    uint64_t handled;       /* entries handled, skipped ones included, by all of them */
    uint64_t dead_lettered; /* entries they moved to the dead-letter stream */
} consumer_health_t;

/* The health of this process's consumers of stream and group (a
 * laggard among several shows in idle_ms). Safe from any thread. */
void consumer_health(const char *stream, const char *group, consumer_health_t *out);

/* A beat without a poll: for a reader whose loop passes without reading
 * by choice (standing by while another replica reads the stream), so
 * that it is not taken for stuck. */
void consumer_beat(consumer_t *self);

/* Reads up to limit entries after position (exclusive; "0" or "" for the
 * start) without a group: for the event.list request. Fills reply's events
 * (caller frees with eventlog_list_free). */
store_result_t eventlog_list(store_t *store, const char *stream, const char *after, unsigned limit,
                             Passerelle__EventListReply *reply);
void eventlog_list_free(Passerelle__EventListReply *reply);

#endif
