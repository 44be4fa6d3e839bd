/* Queries of the figures: one indicator as a series, a snapshot of every
 * indicator at a date, exports (CSV, JSON). Reads go through one Lua
 * script that resolves the current generation and reads the counters in
 * one round trip, so a series of 36 points is one call. */
#ifndef INDICATORS_QUERY_H
#define INDICATORS_QUERY_H

#include "store.h"

/* Registers the read script on store; returns its handle or -1. */
int query_scripts_add(store_t *store);

#endif
