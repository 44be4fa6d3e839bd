/* bench_util: what passerelle-bench, passerelle-docbench and
 * passerelle-indbench share.
 *
 * Option parsing helpers, vCPU pinning, a monotonic clock, the summary of
 * latency samples (median, nearest-rank p99), the ratio and verdict of the
 * report, the JSON line that ends a bench's output, a bare Redis
 * connection, and the stack a bench measures: a temporary folder with
 * client keys, a redis-server and one service binary, each started on its
 * own vCPU.
 *
 * Every message goes to stderr, prefixed with the program name given to
 * bench_init (for example "passerelle-bench: cannot pin to vCPU 3"). */
#ifndef PASSERELLE_BENCH_UTIL_H
#define PASSERELLE_BENCH_UTIL_H

#include "harness.h"

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Names the program in messages ("passerelle-bench"), starts the log under
 * log_name at the WARN level (the client library logs retries at debug and
 * errors at error: only the errors belong in a benchmark's output), and
 * points $PASSERELLE_TEST_BIN_DIR at the build tree this was built in,
 * unless it is set already. */
void bench_init(const char *program, const char *log_name);

/* The program name given to bench_init, for messages. */
const char *bench_program(void);

/* --- options and pinning ---------------------------------------------- */

/* Parses a whole decimal int within [min, max] into *out; false (and *out
 * untouched) otherwise. */
bool bench_parse_int(const char *text, int min, int max, int *out);

/* Parses count vCPU numbers separated by commas ("0,1,1") into *cpus[0]
 * .. *cpus[count - 1]; each must be within [0, CPU_SETSIZE). As sscanf
 * reads them: what follows the last number is ignored. True if all were
 * read and valid. */
bool bench_parse_cpus(const char *text, int *const cpus[], int count);

/* The first two vCPUs this process may run on; both the first one when it
 * may run on only one. */
void bench_default_cpus(int *first, int *second);

/* Pins the calling thread (and what it forks or creates later) to cpu;
 * nothing when pin is false. 0, or -1 with a message. */
int bench_pin(bool pin, int cpu);

/* --- time and samples --------------------------------------------------- */

/* CLOCK_MONOTONIC, in ns and in seconds. */
int64_t bench_now_ns(void);
double bench_now_s(void);

/* Sorts the count latencies of samples in place (their order is lost) and
 * gives their median and p99: the smallest sample at or above 99% of them
 * (nearest rank). Both 0 when count is 0. */
void bench_samples_summarise(double *samples, size_t count, double *median, double *p99);

/* --- report ------------------------------------------------------------- */

/* a / b, or 0 when b is not positive. */
double bench_ratio(double a, double b);

/* "met" or "MISSED", as the report prints an aim. */
const char *bench_verdict(bool met);

/* Prints root as one compact JSON line (reals to 6 digits) on stdout and
 * flushes stdout; takes root over (NULL is allowed: a packing failure)
 * and says so on stderr if it cannot be formatted. */
void bench_print_json(json_t *root);

/* --- Redis, bare --------------------------------------------------------- */

/* A connection of the bench's own to redis (on 127.0.0.1), authenticated,
 * with timeout_ms for the connect and for every command; the caller frees
 * it with redisFree. NULL, with a message, when it cannot connect or the
 * password is refused. */
redisContext *bench_redis_open(const harness_redis_t *redis, int timeout_ms);

/* --- the stack: keys, redis-server, one service -------------------------- */

typedef struct {
    char *dir;             /* temporary folder, owned; logs go here */
    char keys[512];        /* dir/keys */
    harness_redis_t redis; /* once redis_up */
    bool redis_up;
    harness_service_t service; /* once service_up */
    bool service_up;
} bench_stack_t;

/* Makes the temporary folder (tag names it) and the keys path, without
 * creating the keys yet: a bench may fork before anything touches CZMQ.
 * 0, or -1 (nothing to undo). */
int bench_stack_init(bench_stack_t *stack, const char *tag);

/* Makes the keys, starts redis-server pinned to cpu_redis and the service
 * named service_name (services/<name>/passerelle-<name>) pinned to
 * cpu_service, with extra_env (as harness_service_start; may be NULL) and
 * PASSERELLE_KEYS_DIR and the Redis variables set in this process. Leaves
 * the calling thread pinned to cpu_service. 0 or -1; either way
 * bench_stack_stop and bench_stack_remove undo what was done. */
int bench_stack_start(bench_stack_t *stack, const char *service_name, bool pin, int cpu_redis,
                      int cpu_service, char *const extra_env[]);

/* Stops the service with SIGTERM and then redis-server. 0 if the service
 * exited with status 0 (or was not started), else -1 with a message that
 * names its log. */
int bench_stack_stop(bench_stack_t *stack);

/* Removes the temporary folder (kept with PASSERELLE_TEST_KEEP=1, as the
 * harness does) and frees it. */
void bench_stack_remove(bench_stack_t *stack);

#endif
