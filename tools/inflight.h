/* Requests of a document transfer in flight: the slots that `passerelle
 * docs put | get` and passerelle-docbench keep, up to the credit the
 * service gives (zguide chapter 7's file transfer), each remembering what
 * its request asked for until its reply comes. */
#ifndef PASSERELLE_TOOLS_INFLIGHT_H
#define PASSERELLE_TOOLS_INFLIGHT_H

#include "docstore.pb-c.h"

#include "ids.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The most requests a transfer keeps in flight, whatever the service says. */
#define INFLIGHT_MAX 64

/* A request whose reply has not come yet. */
typedef struct {
    bool used;
    char request_id[ID_LEN];
    uint64_t offset;
    size_t len;
    Passerelle__DocumentReadReply *range; /* get: the reply, kept until its turn */
    long unavailable;                     /* get: UNAVAILABLE answers to this range so far */
} inflight_t;

/* The credit a reply gives: its window, at most INFLIGHT_MAX; one when the
 * service does not say (it predates windows). */
unsigned inflight_window(bool has_window, uint32_t window);

/* The used slot of the first count whose request this is, or NULL. */
inflight_t *inflight_find(inflight_t *slots, unsigned count, const char *request_id);

/* A free slot of the first count, or NULL if all are used. */
inflight_t *inflight_free_slot(inflight_t *slots, unsigned count);

/* The next piece of a transfer of size bytes: a free slot of the first
 * window, given a new request id, the offset *next and at most piece
 * bytes, *next moved past them. NULL when all is asked or no slot is free. */
inflight_t *inflight_take(inflight_t *slots, unsigned window, uint64_t *next, uint64_t size,
                          size_t piece);

/* Frees what the slot holds and marks it free. */
void inflight_clear(inflight_t *slot);

#endif
