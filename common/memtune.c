/* Memory policy of the processes that move documents; see memtune.h. */
#include "memtune.h"

#include <malloc.h>

bool memtune_for_chunks(void)
{
    /* Setting either disables glibc's dynamic adjustment of both, which is
     * what keeps them where they are put. */
    int mmap_ok = mallopt(M_MMAP_THRESHOLD, (int)MEMTUNE_MMAP_THRESHOLD_BYTES);
    int trim_ok = mallopt(M_TRIM_THRESHOLD, (int)MEMTUNE_TRIM_THRESHOLD_BYTES);
    return mmap_ok == 1 && trim_ok == 1;
}
