/* bench_util: the helpers passerelle-bench and passerelle-docbench share;
 * see bench_util.h. Built into each bench executable, with that bench's
 * PASSERELLE_BENCH_BIN_DIR. */
#define _GNU_SOURCE
#include "bench_util.h"

#include "log.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef PASSERELLE_BENCH_BIN_DIR
#define PASSERELLE_BENCH_BIN_DIR "."
#endif

static const char *program_name = "bench";

void bench_init(const char *program, const char *log_name)
{
    program_name = program;
    log_init(log_name);
    log_set_level(LOG_LEVEL_WARN);
    if (!getenv("PASSERELLE_TEST_BIN_DIR"))
        setenv("PASSERELLE_TEST_BIN_DIR", PASSERELLE_BENCH_BIN_DIR, 1);
}

const char *bench_program(void)
{
    return program_name;
}

/* ====================================================================== */
/* Options and pinning                                                    */
/* ====================================================================== */

bool bench_parse_int(const char *text, int min, int max, int *out)
{
    char *end;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno || end == text || *end || value < min || value > max)
        return false;
    *out = (int)value;
    return true;
}

bool bench_parse_cpus(const char *text, int *const cpus[], int count)
{
    const char *p = text;
    for (int i = 0; i < count; i++) {
        int value, used = 0;
        if (sscanf(p, "%d%n", &value, &used) != 1 || value < 0 || value >= CPU_SETSIZE)
            return false;
        *cpus[i] = value;
        p += used;
        if (i + 1 < count && *p++ != ',')
            return false;
    }
    return true;
}

void bench_default_cpus(int *first, int *second)
{
    cpu_set_t set;
    int found[2] = {0, 0}, count = 0;
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        for (int cpu = 0; cpu < CPU_SETSIZE && count < 2; cpu++)
            if (CPU_ISSET(cpu, &set))
                found[count++] = cpu;
    *first = found[0];
    *second = count > 1 ? found[1] : found[0];
}

int bench_pin(bool pin, int cpu)
{
    if (!pin)
        return 0;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0) {
        fprintf(stderr, "%s: cannot pin to vCPU %d: %s\n", program_name, cpu, strerror(errno));
        return -1;
    }
    return 0;
}

/* ====================================================================== */
/* Time and samples                                                       */
/* ====================================================================== */

int64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

double bench_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

void bench_samples_summarise(double *samples, size_t count, double *median, double *p99)
{
    *median = 0;
    *p99 = 0;
    if (count == 0)
        return;
    qsort(samples, count, sizeof *samples, compare_double);
    *median = count % 2 ? samples[count / 2] : (samples[count / 2 - 1] + samples[count / 2]) / 2;
    size_t rank = (count * 99 + 99) / 100;
    *p99 = samples[rank > 0 ? rank - 1 : 0];
}

/* ====================================================================== */
/* Report                                                                 */
/* ====================================================================== */

double bench_ratio(double a, double b)
{
    return b > 0 ? a / b : 0;
}

const char *bench_verdict(bool met)
{
    return met ? "met" : "MISSED";
}

void bench_print_json(json_t *root)
{
    char *line = root ? json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(6)) : NULL;
    if (line)
        printf("%s\n", line);
    else
        fprintf(stderr, "%s: cannot format the JSON line\n", program_name);
    free(line);
    json_decref(root);
    fflush(stdout);
}

/* ====================================================================== */
/* Redis, bare                                                            */
/* ====================================================================== */

redisContext *bench_redis_open(const harness_redis_t *redis, int timeout_ms)
{
    struct timeval timeout = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    redisContext *ctx = redisConnectWithTimeout("127.0.0.1", redis->port, timeout);
    if (!ctx || ctx->err) {
        fprintf(stderr, "%s: cannot connect to redis: %s\n", program_name,
                ctx ? ctx->errstr : "out of memory");
        if (ctx)
            redisFree(ctx);
        return NULL;
    }
    redisSetTimeout(ctx, timeout);
    redisReply *auth = redisCommand(ctx, "AUTH %s", redis->password);
    bool ok = auth && auth->type == REDIS_REPLY_STATUS;
    if (auth)
        freeReplyObject(auth);
    if (!ok) {
        fprintf(stderr, "%s: redis refused the password\n", program_name);
        redisFree(ctx);
        return NULL;
    }
    return ctx;
}

/* ====================================================================== */
/* The stack                                                              */
/* ====================================================================== */

int bench_stack_init(bench_stack_t *stack, const char *tag)
{
    memset(stack, 0, sizeof *stack);
    stack->dir = harness_tempdir(tag);
    if (!stack->dir)
        return -1;
    snprintf(stack->keys, sizeof stack->keys, "%s/keys", stack->dir);
    return 0;
}

int bench_stack_start(bench_stack_t *stack, const char *service_name, bool pin, int cpu_redis,
                      int cpu_service, char *const extra_env[])
{
    /* Children inherit the affinity of the thread that forks them: that is
     * how redis-server and the service get theirs. */
    if (harness_keys_make(stack->keys) != 0 || bench_pin(pin, cpu_redis) != 0 ||
        harness_redis_start(&stack->redis) != 0)
        return -1;
    stack->redis_up = true;
    harness_redis_setenv(&stack->redis);
    setenv("PASSERELLE_KEYS_DIR", stack->keys, 1);
    if (bench_pin(pin, cpu_service) != 0 ||
        harness_service_start(&stack->service, service_name, stack->dir, extra_env) != 0)
        return -1;
    stack->service_up = true;
    return 0;
}

int bench_stack_stop(bench_stack_t *stack)
{
    int rc = 0;
    if (stack->service_up && !harness_service_stop_clean(&stack->service)) {
        fprintf(stderr, "%s: the service did not stop cleanly (see %s)\n", program_name,
                stack->service.log_path);
        rc = -1;
    }
    stack->service_up = false;
    if (stack->redis_up)
        harness_redis_stop(&stack->redis);
    stack->redis_up = false;
    return rc;
}

void bench_stack_remove(bench_stack_t *stack)
{
    if (stack->dir)
        harness_rmtree(stack->dir);
    free(stack->dir);
    stack->dir = NULL;
}
