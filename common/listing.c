/* Paginated listings over the sorted-set indexes of the services
 * (listing.h). */
#include "listing.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The result of a command whose reply must be of this type; frees the reply
 * when it is not (the caller frees it on LISTING_OK). */
static listing_result_t command_result(store_result_t result, redisReply *r, int type)
{
    if (result == STORE_OK && r->type == type)
        return LISTING_OK;
    if (r)
        freeReplyObject(r);
    return result == STORE_LOST ? LISTING_LOST : LISTING_REFUSED;
}

/* Reads the record of member through the listing's callback. A member that
 * is not an id of the listing's kind reads as absent. */
static listing_result_t read_member(const listing_t *listing, const redisReply *member,
                                    ProtobufCMessage **msg_p)
{
    *msg_p = NULL;
    if (member->type != REDIS_REPLY_STRING || !id_valid(listing->id_prefix, member->str))
        return LISTING_OK;
    return listing->read(listing->read_arg, member->str, msg_p);
}

listing_result_t listing_page(store_t *store, const listing_t *listing, const char *after,
                              unsigned page_size, listing_page_t *page)
{
    memset(page, 0, sizeof *page);
    page->items = calloc(page_size ? page_size : 1, sizeof *page->items);
    if (!page->items)
        return LISTING_NO_MEMORY;
    listing_result_t failed = LISTING_OK;
    char start[ID_LEN + 1];
    if (after && after[0])
        snprintf(start, sizeof start, "(%s", after);
    else
        snprintf(start, sizeof start, "-");
    long batch = (long)page_size + 1;

    while (!page->more && !failed) {
        redisReply *r = NULL;
        store_result_t result = store_command(store, &r, "ZRANGEBYLEX %s %s + LIMIT 0 %ld",
                                              listing->index, start, batch);
        failed = command_result(result, r, REDIS_REPLY_ARRAY);
        if (failed)
            break;
        for (size_t i = 0; i < r->elements && !failed; i++) {
            const redisReply *member = r->element[i];
            if (member->type == REDIS_REPLY_STRING && id_valid(listing->id_prefix, member->str) &&
                page->count == page_size) {
                page->more = true;
                break;
            }
            ProtobufCMessage *msg = NULL;
            failed = read_member(listing, member, &msg);
            if (!msg)
                continue;
            if (!failed && (!listing->match || listing->match(msg, listing->match_arg))) {
                page->items[page->count++] = msg;
                snprintf(page->last_id, sizeof page->last_id, "%s", member->str);
            } else {
                protobuf_c_message_free_unpacked(msg, NULL);
            }
        }
        bool last_batch = r->elements < (size_t)batch;
        if (r->elements > 0 && r->element[r->elements - 1]->type == REDIS_REPLY_STRING)
            snprintf(start, sizeof start, "(%s", r->element[r->elements - 1]->str);
        freeReplyObject(r);
        if (last_batch)
            break;
    }
    if (failed)
        listing_page_free(page);
    return failed;
}

listing_result_t listing_all(store_t *store, const listing_t *listing, listing_page_t *page)
{
    memset(page, 0, sizeof *page);
    redisReply *r = NULL;
    store_result_t result = store_command(store, &r, "ZRANGE %s 0 -1", listing->index);
    listing_result_t failed = command_result(result, r, REDIS_REPLY_ARRAY);
    if (failed)
        return failed;
    page->items = calloc(r->elements ? r->elements : 1, sizeof *page->items);
    if (!page->items)
        failed = LISTING_NO_MEMORY;
    for (size_t i = 0; !failed && i < r->elements; i++) {
        ProtobufCMessage *msg = NULL;
        failed = read_member(listing, r->element[i], &msg);
        if (msg)
            page->items[page->count++] = msg;
    }
    freeReplyObject(r);
    if (failed)
        listing_page_free(page);
    return failed;
}

char *listing_page_token(listing_page_t *page)
{
    return page->more && page->count > 0 ? page->last_id : NULL;
}

void listing_page_free(listing_page_t *page)
{
    for (size_t i = 0; i < page->count; i++)
        protobuf_c_message_free_unpacked(page->items[i], NULL);
    free(page->items);
    memset(page, 0, sizeof *page);
}

listing_result_t listing_count(store_t *store, const char *key, long long *out)
{
    redisReply *r = NULL;
    store_result_t result = store_command(store, &r, "ZCARD %s", key);
    listing_result_t failed = command_result(result, r, REDIS_REPLY_INTEGER);
    if (failed)
        return failed;
    *out = r->integer;
    freeReplyObject(r);
    return LISTING_OK;
}

listing_result_t listing_smallest_index(store_t *store, const char *const *keys, size_t n,
                                        size_t *best)
{
    *best = n - 1; /* the catch-all, if nothing narrower is named */
    long long best_size = -1;
    for (size_t i = 0; i + 1 < n; i++) {
        long long size = 0;
        listing_result_t failed = listing_count(store, keys[i], &size);
        if (failed)
            return failed;
        if (best_size < 0 || size < best_size) {
            best_size = size;
            *best = i;
        }
    }
    return LISTING_OK;
}
