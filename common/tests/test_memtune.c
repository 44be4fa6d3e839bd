/* The chunk memory policy: after memtune_for_chunks(), a chunk-sized
 * buffer comes from the heap (no mmap), and freeing it keeps its pages for
 * the next one (no trim); before, glibc maps and unmaps it. Under a
 * sanitizer's or valgrind's allocator glibc's counters say nothing: skipped
 * there (the policy is then theirs). */
#include "memtune.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK_BYTES (1024 * 1024)

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_SANITIZER 1
#endif
#endif
#ifndef UNDER_SANITIZER
#define UNDER_SANITIZER 0
#endif

static void test_chunks_stay_in_the_heap(void **state)
{
    (void)state;
    /* glibc's default, in a fresh process: a 1 MiB block is mapped on its
     * own. Valgrind's and the sanitizers' allocators count no mapping:
     * there glibc's policy is not in play, and the test says nothing. */
    struct mallinfo2 before = mallinfo2();
    char *chunk = malloc(CHUNK_BYTES);
    assert_non_null(chunk);
    struct mallinfo2 during = mallinfo2();
    bool mapped = during.hblks == before.hblks + 1;
    free(chunk);
    if (UNDER_SANITIZER || !mapped)
        skip();

    assert_true(memtune_for_chunks());

    /* Now a few chunks' worth (3 MiB each, where glibc, having seen the
     * 1 MiB block above go, would map anything larger) come from the
     * heap... */
    enum { BLOCKS = 4 };
    const size_t block_bytes = 3u * CHUNK_BYTES;
    char *blocks[BLOCKS];
    before = mallinfo2();
    for (int i = 0; i < BLOCKS; i++) {
        blocks[i] = malloc(block_bytes);
        assert_non_null(blocks[i]);
        memset(blocks[i], i + 1, block_bytes);
    }
    during = mallinfo2();
    assert_int_equal(during.hblks, before.hblks);
    size_t arena_with_blocks = during.arena;
    /* ...and their 12 MiB stay in it once freed (glibc would trim a free
     * top above twice its threshold): the next ones find their pages. */
    for (int i = BLOCKS; i-- > 0;)
        free(blocks[i]);
    struct mallinfo2 after = mallinfo2();
    assert_int_equal(after.arena, arena_with_blocks);
    assert_true(after.keepcost >= (size_t)(BLOCKS - 1) * block_bytes);
    chunk = malloc(block_bytes);
    assert_non_null(chunk);
    assert_int_equal(mallinfo2().arena, arena_with_blocks);
    assert_int_equal(mallinfo2().hblks, before.hblks);
    free(chunk);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chunks_stay_in_the_heap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
