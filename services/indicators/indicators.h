/* The indicators service: what its pieces share.
 *
 * It holds the need side of the partnership (economic projects, Action
 * Logement's demand figures: need.c) and projects every event stream into
 * counters in Redis, per scope (the Métropole, a territory, a commune) and
 * period (Europe/Paris day, month, quarter, year), which the queries read
 * (query.c). One thread per blocking resource, each with its own Redis
 * connection:
 *   - the request server (server.h): queries, need-side writes, rebuild;
 *   - one projector per event stream (engine.h): a consumer group reader
 *     that applies a batch of events' counts, with their done markers, in
 *     one Lua script;
 *   - the rebuild, while one runs (engine.h).
 *
 * What an event counts is a pure function (projection.h), and counts only
 * ever add up: an event adds to counters, or replaces what a record
 * (an objective, a project, a period's demand figures) counted before,
 * newest record version winning. So the order in which events are applied
 * does not matter, which is what lets a rebuild and several projectors
 * write side by side.
 *
 * Key spaces. Figures live in a generation: indicators:g<N>:...; queries
 * and projectors use the generation named by indicators:current (absent:
 * 0). A rebuild fills generation N+1 from the start of the streams, then
 * switches indicators:current in one script once it has read every stream
 * to its end, recording in indicators:g<N+1>:cursor how far it counted;
 * a projector skips (only acknowledges) an event at or before that cursor.
 *
 * Redis keys (every key this service writes):
 *   indicators:events                    its own event stream
 *   indicators:project:<id>              an EconomicProject (commit.lua record)
 *   indicators:project-ref:<ref>         the id of the project with that ref
 *   indicators:projects[:territory:CT2]  project indexes (zsets, by id)
 *   indicators:demand:<period>           a DemandPeriod (commit.lua record)
 *   indicators:demands                   index of imported periods (zset)
 *   indicators:current                   the generation queries read
 *   indicators:generations               the last generation number handed out
 *   indicators:g<N>:c:<counter>:<scope>:<period>
 *                                        a counter hash: field "*" (total) or
 *                                        "<axis>=<VALUE>" -> integer; for a
 *                                        distribution "v=<n>" -> observations
 *   indicators:g<N>:r:<identity>         what a record last counted (its
 *                                        version and triples), to replace it
 *   indicators:g<N>:cursor               hash stream -> last position the
 *                                        rebuild that made N counted
 *   indicators:rebuild                   hash: the last rebuild's status
 *   indicators:rebuild:lease             the process rebuilding (PX lease)
 *   indicators:idem:<caller>:<key>       idempotency records
 *   <stream>:done:indicators:<event id>  done markers (eventlog.h)
 * <scope> is "all", a territory "CT2" or a commune INSEE code "13001";
 * <period> a period key (periods.h: "2026-04-01", "2026-04", "2026-Q2",
 * "2026") or "all" (every period together). Day keys exist for the
 * Métropole and the territories only: a commune is counted by month and
 * longer, which keeps the key count near 100 000 a year. */
#ifndef INDICATORS_H
#define INDICATORS_H

#include "server.h"
#include "store.h"

#include <stdbool.h>
#include <stdint.h>

#define INDICATORS_STREAM  "indicators:events"
#define INDICATORS_SOURCE  "/passerelle/indicators"
#define INDICATORS_GROUP   "indicators"
#define INDICATORS_CURRENT "indicators:current"

#define INDICATORS_KEY_MAX 256

/* Scope names in counter keys. */
#define SCOPE_ALL "all"
/* The period "every period together" in counter keys. */
#define PERIOD_ALL "all"

typedef struct rebuild_t rebuild_t;

/* What the request handlers are handed as ctx. */
typedef struct {
    store_t *store;                  /* the server thread's connection */
    const store_config_t *store_cfg; /* for threads that need their own */
    const char *const *streams;      /* the streams projected (a rebuild reads them) */
    size_t stream_count;
    const char *process_name; /* host:pid, names the rebuild's holder */
    int read_script;          /* query.c's read script on store (query_scripts_add) */
    rebuild_t *rebuild;       /* the rebuild this process runs, if any (engine.h) */
} indicators_t;

/* Request handlers, route table (handlers.c). */
extern const route_t indicators_routes[];
extern const size_t indicators_route_count;

#define INDICATORS_HANDLER(name)                                                                   \
    void name(void *ctx, const call_t *call, const ProtobufCMessage *request, reply_t *reply)

/* need.c: economic projects and demand figures */
INDICATORS_HANDLER(handle_project_create);
INDICATORS_HANDLER(handle_project_update);
INDICATORS_HANDLER(handle_project_get);
INDICATORS_HANDLER(handle_project_list);
INDICATORS_HANDLER(handle_demand_import);
INDICATORS_HANDLER(handle_demand_get);

/* query.c: the figures */
INDICATORS_HANDLER(handle_indicator_list);
INDICATORS_HANDLER(handle_indicator_series);
INDICATORS_HANDLER(handle_indicator_snapshot);
INDICATORS_HANDLER(handle_indicator_export);

/* engine.c: the rebuild */
INDICATORS_HANDLER(handle_indicator_rebuild);
INDICATORS_HANDLER(handle_indicator_rebuild_status);

/* The prefix of generation gen's keys: "indicators:g<gen>:" into out. */
void indicators_generation_prefix(uint64_t gen, char *out, size_t out_size);

/* A counter key without its generation prefix:
 * "c:<counter>:<scope>:<period>" into out (INDICATORS_KEY_MAX). */
void indicators_counter_key(const char *counter, const char *scope, const char *period, char *out);

#endif
