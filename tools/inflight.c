/* Requests of a document transfer in flight (inflight.h). */
#include "inflight.h"

#include <string.h>

unsigned inflight_window(bool has_window, uint32_t window)
{
    if (!has_window || window == 0)
        return 1;
    return window < INFLIGHT_MAX ? window : INFLIGHT_MAX;
}

inflight_t *inflight_find(inflight_t *slots, unsigned count, const char *request_id)
{
    for (unsigned i = 0; i < count; i++)
        if (slots[i].used && request_id && strcmp(slots[i].request_id, request_id) == 0)
            return &slots[i];
    return NULL;
}

inflight_t *inflight_free_slot(inflight_t *slots, unsigned count)
{
    for (unsigned i = 0; i < count; i++)
        if (!slots[i].used)
            return &slots[i];
    return NULL;
}

inflight_t *inflight_take(inflight_t *slots, unsigned window, uint64_t *next, uint64_t size,
                          size_t piece)
{
    inflight_t *slot = *next < size ? inflight_free_slot(slots, window) : NULL;
    if (!slot)
        return NULL;
    slot->used = true;
    id_new('Q', slot->request_id);
    slot->offset = *next;
    slot->len = size - *next < piece ? (size_t)(size - *next) : piece;
    *next += slot->len;
    return slot;
}

void inflight_clear(inflight_t *slot)
{
    if (slot->range)
        protobuf_c_message_free_unpacked(&slot->range->base, NULL);
    memset(slot, 0, sizeof *slot);
}
