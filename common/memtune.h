/* How a process that moves documents in chunks asks the C library to keep
 * its memory.
 *
 * A document travels in messages of a megabyte (docstore.h: chunk_max).
 * With glibc's defaults, each such buffer, freed after its message is sent
 * or written, goes back to the kernel (an mmap'd block unmapped, or a
 * heap's free top trimmed: threads other than the main one have heaps of
 * their own, trimmed with MADV_DONTNEED), and the next message faults and
 * zeroes the same pages in again: measured here, that page traffic halved
 * a download's throughput. Raising the mmap threshold above a chunk and
 * the trim threshold to a few chunks keeps those pages for the next
 * message. The cost is bounded: a heap keeps at most trim_threshold bytes
 * of free memory at its top, so a process's footprint grows by at most
 * that much per heap, whatever it transfers. */
#ifndef PASSERELLE_MEMTUNE_H
#define PASSERELLE_MEMTUNE_H

#include <stdbool.h>
#include <stddef.h>

/* Allocations up to this size come from the heaps, not from mmap. */
#define MEMTUNE_MMAP_THRESHOLD_BYTES (4u * 1024 * 1024)
/* Free memory a heap keeps at its top before giving it back. */
#define MEMTUNE_TRIM_THRESHOLD_BYTES (16u * 1024 * 1024)

/* Applies the two thresholds to this process (mallopt). Call it once, at
 * the start of main, before threads start. False when the C library
 * refused one of them (the process runs on, at glibc's defaults). */
bool memtune_for_chunks(void);

#endif
