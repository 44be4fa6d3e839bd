/* Paginated listings over a sorted-set index (listing.h) against a real
 * redis-server: pages that follow their tokens to the end, filters, members
 * that are not ids or whose record is gone, a failing read, a refused and a
 * lost Redis, the whole index at once, and the choice of the smallest
 * index. */
#include "harness.h"
#include "ids.h"
#include "listing.h"
#include "reservations.pb-c.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define MAX_RECORDS 16

static harness_redis_t redis;
static store_t *store;

/* The records of one test: record i is "test:rec:<ids[i]>", a
 * HealthReply whose uptime_s is i, indexed in the test's own index. */
typedef struct {
    char index[64];
    char ids[MAX_RECORDS][ID_LEN];
    size_t count;
    const char *fail_id; /* the read of this id fails */
    size_t reads;        /* how many reads the listing asked for */
} records_t;

/* A key of the wrong type for a listing. */
static void string_set(const char *key)
{
    redisReply *reply = NULL;
    assert_int_equal(store_command(store, &reply, "SET %s text", key), STORE_OK);
    freeReplyObject(reply);
}

static void index_add(const char *index, const char *member)
{
    redisReply *reply = NULL;
    assert_int_equal(store_command(store, &reply, "ZADD %s 0 %s", index, member), STORE_OK);
    freeReplyObject(reply);
}

/* Makes count records in a fresh index named after the test. */
static void records_make(records_t *records, const char *name, size_t count)
{
    memset(records, 0, sizeof *records);
    snprintf(records->index, sizeof records->index, "test:%s", name);
    for (size_t i = 0; i < count; i++) {
        id_new('U', records->ids[i]);
        Passerelle__HealthReply msg = PASSERELLE__HEALTH_REPLY__INIT;
        msg.service = "listing";
        msg.has_uptime_s = true;
        msg.uptime_s = i;
        uint8_t packed[64];
        size_t len = passerelle__health_reply__pack(&msg, packed);
        char key[64];
        snprintf(key, sizeof key, "test:rec:%s", records->ids[i]);
        redisReply *reply = NULL;
        assert_int_equal(store_command(store, &reply, "HSET %s v 1 pb %b", key, packed, len),
                         STORE_OK);
        freeReplyObject(reply);
        index_add(records->index, records->ids[i]);
    }
    records->count = count;
}

static listing_result_t read_record(void *arg, const char *id, ProtobufCMessage **msg_p)
{
    records_t *records = arg;
    records->reads++;
    *msg_p = NULL;
    if (records->fail_id && strcmp(id, records->fail_id) == 0)
        return LISTING_READ_FAILED;
    char key[64];
    snprintf(key, sizeof key, "test:rec:%s", id);
    uint64_t version = 0;
    uint8_t *data = NULL;
    size_t len = 0;
    store_result_t result = store_record_get(store, key, &version, &data, &len);
    if (result != STORE_OK)
        return LISTING_READ_FAILED;
    if (version > 0)
        *msg_p = (ProtobufCMessage *)passerelle__health_reply__unpack(NULL, len, data);
    free(data);
    return LISTING_OK;
}

static bool even_uptime(const ProtobufCMessage *msg, void *arg)
{
    (void)arg;
    return ((const Passerelle__HealthReply *)msg)->uptime_s % 2 == 0;
}

static uint64_t uptime_of(const listing_page_t *page, size_t i)
{
    return ((const Passerelle__HealthReply *)page->items[i])->uptime_s;
}

/* One page of the listing after `after` (NULL from the start) of
 * page_size: checks that it holds the records of uptimes expected[0..n-1],
 * in that order, and writes its token into token ("" when none). */
static void page_check(const listing_t *listing, const char *after, unsigned page_size,
                       const uint64_t *expected, size_t n, char token[ID_LEN])
{
    listing_page_t page;
    assert_int_equal(listing_page(store, listing, after, page_size, &page), LISTING_OK);
    assert_int_equal(page.count, n);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(uptime_of(&page, i), expected[i]);
    assert_int_equal(page.more, listing_page_token(&page) != NULL);
    const char *next = listing_page_token(&page);
    snprintf(token, ID_LEN, "%s", next ? next : "");
    listing_page_free(&page);
    assert_null(page.items);
}

#define UPTIMES(...)                                                                               \
    (const uint64_t[]){__VA_ARGS__}, sizeof((const uint64_t[]){__VA_ARGS__}) / sizeof(uint64_t)

static void test_pages_follow_their_tokens(void **state)
{
    (void)state;
    records_t records;
    records_make(&records, "pages", 7);
    listing_t listing = {records.index, 'U', read_record, &records, NULL, NULL};
    char token[ID_LEN];
    page_check(&listing, NULL, 3, UPTIMES(0, 1, 2), token);
    assert_string_equal(token, records.ids[2]);
    page_check(&listing, token, 3, UPTIMES(3, 4, 5), token);
    assert_string_equal(token, records.ids[5]);
    page_check(&listing, token, 3, UPTIMES(6), token);
    assert_string_equal(token, "");

    /* A page exactly as large as what is left says nothing follows. */
    page_check(&listing, records.ids[3], 3, UPTIMES(4, 5, 6), token);
    assert_string_equal(token, "");

    /* An index that does not exist is an empty listing. */
    listing.index = "test:nothing";
    page_check(&listing, "", 3, NULL, 0, token);
    assert_string_equal(token, "");
}

static void test_filter_and_skipped_members(void **state)
{
    (void)state;
    records_t records;
    records_make(&records, "filter", 9);
    /* Neither a member that is not a unit id nor one whose record is gone
     * is listed. */
    index_add(records.index, "not-an-id");
    char gone[ID_LEN];
    id_new('U', gone);
    index_add(records.index, gone);
    char other_kind[ID_LEN];
    id_new('P', other_kind);
    index_add(records.index, other_kind);

    /* 0 2 4 6 8 kept, by pages of 2: the walk reads on through rejected
     * members to fill each page. */
    listing_t listing = {records.index, 'U', read_record, &records, even_uptime, NULL};
    char token[ID_LEN];
    page_check(&listing, NULL, 2, UPTIMES(0, 2), token);
    assert_string_equal(token, records.ids[2]);
    page_check(&listing, token, 2, UPTIMES(4, 6), token);
    assert_string_equal(token, records.ids[6]);
    records.reads = 0;
    page_check(&listing, token, 2, UPTIMES(8), token);
    assert_string_equal(token, "");
    /* 7, 8 and the gone one: the other members are not read at all */
    assert_int_equal(records.reads, 3);
}

static void test_last_page_may_be_empty(void **state)
{
    (void)state;
    records_t records;
    records_make(&records, "empty-last", 3);
    listing_t listing = {records.index, 'U', read_record, &records, even_uptime, NULL};
    /* 0 fills the first page and 1 follows it, so a token is given; the
     * next page walks past 1 to 2, and nothing follows... */
    char token[ID_LEN];
    page_check(&listing, NULL, 1, UPTIMES(0), token);
    assert_string_equal(token, records.ids[0]);
    page_check(&listing, token, 1, UPTIMES(2), token);
    assert_string_equal(token, "");

    /* ...and when the member that follows fails the filter, the next page
     * is empty, the price of not reading ahead. */
    records_t odd;
    records_make(&odd, "empty-last-odd", 2); /* 0 kept, 1 rejected */
    listing.index = odd.index;
    listing.read_arg = &odd;
    page_check(&listing, NULL, 1, UPTIMES(0), token);
    assert_string_equal(token, odd.ids[0]);
    page_check(&listing, token, 1, NULL, 0, token);
    assert_string_equal(token, "");
}

static void test_failures_leave_the_page_empty(void **state)
{
    (void)state;
    records_t records;
    records_make(&records, "failing", 5);
    records.fail_id = records.ids[3];
    listing_t listing = {records.index, 'U', read_record, &records, NULL, NULL};
    listing_page_t page;
    assert_int_equal(listing_page(store, &listing, NULL, 10, &page), LISTING_READ_FAILED);
    assert_int_equal(page.count, 0);
    assert_null(page.items);
    assert_int_equal(listing_all(store, &listing, &page), LISTING_READ_FAILED);
    assert_int_equal(page.count, 0);
    assert_null(page.items);
    /* before the failing member, all is well */
    assert_int_equal(listing_page(store, &listing, NULL, 3, &page), LISTING_OK);
    assert_int_equal(page.count, 3);
    listing_page_free(&page);

    /* An index of the wrong type is refused by Redis. */
    string_set("test:not-a-zset");
    listing.index = "test:not-a-zset";
    assert_int_equal(listing_page(store, &listing, NULL, 3, &page), LISTING_REFUSED);
    assert_null(page.items);
    assert_int_equal(listing_all(store, &listing, &page), LISTING_REFUSED);
    assert_null(page.items);
    long long size = 0;
    assert_int_equal(listing_count(store, "test:not-a-zset", &size), LISTING_REFUSED);
}

static void test_all_ignores_the_filter(void **state)
{
    (void)state;
    records_t records;
    records_make(&records, "all", 6);
    index_add(records.index, "not-an-id");
    listing_t listing = {records.index, 'U', read_record, &records, even_uptime, NULL};
    listing_page_t page;
    assert_int_equal(listing_all(store, &listing, &page), LISTING_OK);
    assert_int_equal(page.count, 6);
    for (size_t i = 0; i < page.count; i++)
        assert_int_equal(uptime_of(&page, i), i);
    assert_false(page.more);
    assert_null(listing_page_token(&page));
    listing_page_free(&page);

    listing.index = "test:nothing";
    assert_int_equal(listing_all(store, &listing, &page), LISTING_OK);
    assert_int_equal(page.count, 0);
    listing_page_free(&page);
}

static void test_smallest_index(void **state)
{
    (void)state;
    records_t large, small, all;
    records_make(&large, "large", 5);
    records_make(&small, "small", 2);
    records_make(&all, "every", 1);
    long long size = 0;
    assert_int_equal(listing_count(store, large.index, &size), LISTING_OK);
    assert_int_equal(size, 5);
    assert_int_equal(listing_count(store, "test:nothing", &size), LISTING_OK);
    assert_int_equal(size, 0);

    const char *keys[] = {large.index, small.index, all.index};
    size_t best = 99;
    assert_int_equal(listing_smallest_index(store, keys, 3, &best), LISTING_OK);
    assert_int_equal(best, 1);
    /* the first of equal sizes */
    const char *ties[] = {small.index, small.index, all.index};
    assert_int_equal(listing_smallest_index(store, ties, 3, &best), LISTING_OK);
    assert_int_equal(best, 0);
    /* an empty index named is the smallest */
    const char *empty[] = {large.index, "test:nothing", all.index};
    assert_int_equal(listing_smallest_index(store, empty, 3, &best), LISTING_OK);
    assert_int_equal(best, 1);

    /* The catch-all is not measured: alone, it is chosen without asking
     * Redis (a key of the wrong type shows it). */
    string_set("test:catch-all");
    const char *alone[] = {"test:catch-all"};
    assert_int_equal(listing_smallest_index(store, alone, 1, &best), LISTING_OK);
    assert_int_equal(best, 0);
    const char *refused[] = {"test:catch-all", all.index};
    assert_int_equal(listing_smallest_index(store, refused, 2, &best), LISTING_REFUSED);
}

static void test_lost_redis(void **state)
{
    (void)state;
    records_t records;
    records_make(&records, "lost", 2);
    listing_t listing = {records.index, 'U', read_record, &records, NULL, NULL};
    listing_page_t page;
    harness_redis_kill(&redis);
    assert_int_equal(listing_page(store, &listing, NULL, 3, &page), LISTING_LOST);
    assert_null(page.items);
    assert_int_equal(listing_all(store, &listing, &page), LISTING_LOST);
    long long size = 0;
    assert_int_equal(listing_count(store, records.index, &size), LISTING_LOST);
    assert_int_equal(harness_redis_restart(&redis), 0);
    /* the store reconnects by itself */
    assert_int_equal(listing_page(store, &listing, NULL, 3, &page), LISTING_OK);
    assert_int_equal(page.count, 2);
    listing_page_free(&page);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pages_follow_their_tokens),
        cmocka_unit_test(test_filter_and_skipped_members),
        cmocka_unit_test(test_last_page_may_be_empty),
        cmocka_unit_test(test_failures_leave_the_page_empty),
        cmocka_unit_test(test_all_ignores_the_filter),
        cmocka_unit_test(test_smallest_index),
        cmocka_unit_test(test_lost_redis),
    };
    return harness_store_tests(tests, &redis, &store);
}
