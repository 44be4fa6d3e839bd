/* Paginated listings over an index: a Redis sorted set whose members are
 * record ids, all of score 0, so that ZRANGEBYLEX walks them in id order
 * (ULIDs: creation order) and a page token is simply the last id returned.
 *
 * Every service lists its records this way; what differs between them is
 * how a record is read (its key, its message, how a failure is reported)
 * and which records a request keeps, both given as callbacks. The listing
 * knows no key prefix and no reply: it returns why it stopped, and the
 * caller turns that into its answer. */
#ifndef PASSERELLE_LISTING_H
#define PASSERELLE_LISTING_H

#include "ids.h"
#include "store.h"

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>

typedef enum {
    LISTING_OK = 0,
    LISTING_REFUSED = STORE_REFUSED, /* Redis refused a ZRANGEBYLEX or ZCARD,
                                      * or answered with something else */
    LISTING_LOST = STORE_LOST,       /* Redis did not answer */
    LISTING_NO_MEMORY,
    LISTING_READ_FAILED, /* the read callback failed: it has said why */
} listing_result_t;

/* Reads the record of the member id. On LISTING_OK, *msg_p is the record
 * (owned by the listing from then on; freed with
 * protobuf_c_message_free_unpacked), or NULL when the record is absent (it
 * is skipped). Any other result stops the walk. */
typedef listing_result_t (*listing_read_fn)(void *arg, const char *id, ProtobufCMessage **msg_p);

/* Whether the listing keeps a record it read (the filters the index does
 * not serve). */
typedef bool (*listing_match_fn)(const ProtobufCMessage *msg, void *arg);

/* What a listing walks. */
typedef struct {
    const char *index;    /* the sorted set */
    char id_prefix;       /* members that are not ids of it (ids.h) are skipped */
    listing_read_fn read; /* required */
    void *read_arg;
    listing_match_fn match; /* NULL: every record read is kept */
    void *match_arg;
} listing_t;

/* One page of records, owned: free with listing_page_free. */
typedef struct {
    ProtobufCMessage **items;
    size_t count;
    bool more;            /* a member follows the last item in the index */
    char last_id[ID_LEN]; /* the last item's id */
} listing_page_t;

/* Walks the index in id order after the page token `after` (NULL or "" from
 * the start), reading each member's record and keeping those that match,
 * until page_size are kept.
 *
 * Cost: one ZRANGEBYLEX per batch of page_size + 1 (one more than a page
 * tells whether anything follows without a second round trip) and one
 * record read per member walked. Members the filter rejects are walked
 * too, so a page costs O(members walked), at worst the rest of the index.
 * On failure the page is left empty (nothing to free). */
listing_result_t listing_page(store_t *store, const listing_t *listing, const char *after,
                              unsigned page_size, listing_page_t *page);

/* Every record of the index (ZRANGE 0 -1, then one read per member), for
 * the small indexes a decision needs whole; listing->match is not used and
 * page->more stays false. On failure the page is left empty. */
listing_result_t listing_all(store_t *store, const listing_t *listing, listing_page_t *page);

/* The page's next_page_token: the last id returned, when a member follows
 * in the index (even if that member may then fail the filters: a last page
 * can be empty, the price of not reading ahead); NULL otherwise. Points
 * into page. */
char *listing_page_token(listing_page_t *page);

/* Frees the records and the array; the page is left empty. */
void listing_page_free(listing_page_t *page);

/* The size of a sorted set (ZCARD, O(1)) into *out. */
listing_result_t listing_count(store_t *store, const char *key, long long *out);

/* The index a listing walks: the smallest of keys[0..n-1] (n >= 1),
 * measured with ZCARD, so that the walk reads as few records as it can.
 * The last key is the catch-all and is not measured: it is chosen only
 * when no narrower one is named (n == 1). Its position goes into *best. */
listing_result_t listing_smallest_index(store_t *store, const char *const *keys, size_t n,
                                        size_t *best);

#endif
