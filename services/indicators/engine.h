/* The engine: projectors that keep the figures up with the event streams,
 * and the rebuild that recomputes them from the start (indicators.h says
 * how generations make both safe).
 *
 * A projector is an actor with its own Redis connection, reading one
 * stream with the indicators consumer group (eventlog.h, batch mode). For
 * each batch it tallies what the events count (tally.h) and applies it in
 * one Lua script with the events' done markers, all or nothing, in the
 * current generation: an event is never counted twice, even if a crash
 * comes between the script and the XACK, and several replicas can read
 * side by side.
 *
 * A rebuild reads every stream from its start in pages (XRANGE), tallies
 * in memory, writes the sums into a fresh generation, reads again what was
 * appended meanwhile, and when a read finds nothing new switches
 * indicators:current in one script that checks every stream still ends
 * where it read. One rebuild at a time across replicas (a lease). A rebuild
 * that dies leaves a generation nobody reads, removed by the next. */
#ifndef INDICATORS_ENGINE_H
#define INDICATORS_ENGINE_H

#include "indicators.h"
#include "store.h"

typedef struct projector_t projector_t;

typedef struct {
    const store_config_t *store; /* copied; the projector opens its own connection */
    const char *stream;          /* "reservations:events" */
    const char *consumer;        /* this process's consumer name */
} projector_config_t;

/* Starts a projector actor. NULL (logged) on failure. */
projector_t *projector_new(const projector_config_t *cfg);
void projector_destroy(projector_t **self_p);

/* Starts a rebuild in a thread of its own (ctx->rebuild), unless one runs
 * here or elsewhere. Returns ST_OK, or FAILED_PRECONDITION with message if
 * a rebuild is already running, or UNAVAILABLE. */
/* (the handlers handle_indicator_rebuild and handle_indicator_rebuild_status
 * are declared in indicators.h) */

/* Stops this process's rebuild if one runs (it is abandoned, its lease
 * released) and frees it; for main's shutdown. */
void rebuild_stop(rebuild_t **self_p);

/* Loads the engine's scripts on store (the server thread's connection
 * uses them for rebuild status). Returns false if the table is full. */
bool engine_scripts_add(store_t *store);

#endif
