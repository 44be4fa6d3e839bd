/* passerelle-indbench: how far the indicators are from the Redis they are
 * kept in.
 *
 * The real indicators and reservations services run through the test
 * harness, on a redis-server with the durable configuration (AOF,
 * appendfsync always). Three figures, each next to its limit measured in
 * the same run:
 *   1. Keeping up: K clients write units through the reservations service
 *      as fast as it takes them for S seconds, while the group's backlog
 *      (XINFO GROUPS: entries not yet read plus entries read and not yet
 *      acknowledged) is sampled every 50 ms. The projection keeps up if the
 *      backlog stays bounded - its largest value is under a second of
 *      writes - and is gone soon after the writers stop; the figures are
 *      then checked against the number of units written.
 *   2. A query: indicator.series of 36 monthly points (conventions.signed in
 *      CT4, counters planted in the current generation), p50/p99 over Q
 *      calls from one client, next to a bare read of the same 36 counters
 *      (one pipeline of HGETs). Aim: p99 under 1 ms.
 *   3. A rebuild of N events (default one million: units registered,
 *      conventions envisaged and signed, reservations, over two years),
 *      appended straight into the reservations stream while the indicators
 *      service is stopped and then skipped by its group (XGROUP SETID), so
 *      that only the rebuild reads them; its time from the request to the
 *      switch, next to a bare read of the same stream in pages of 1000
 *      (XRANGE). Aim: half the bare read's speed or more.
 *
 * Pinning (the default; --no-pin to let the kernel place everything):
 * redis-server and the services on the second allowed vCPU, the bench and
 * its clients on the first, so that the service's calls and the bare ones
 * cross the same boundary; the bare stream read runs on the services'
 * vCPU, where the rebuild that it is compared with reads.
 *
 * Output: a table, the ratios against the aims, and one JSON line (the
 * last line of stdout). Exit code 0 when every figure came back right, 1
 * otherwise; the aims never fail it. */
#define _GNU_SOURCE
#include "bench_util.h"
#include "harness.h"

#include "client.h"
#include "envelope.pb-c.h"
#include "ids.h"
#include "indicators.pb-c.h"
#include "periods.h"
#include "reservations.pb-c.h"

#include <czmq.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define STREAM       "reservations:events"
#define GROUP        "indicators"
#define QUERY_MONTHS 36
#define XRANGE_PAGE  1000
#define CALL_TIMEOUT 10000
#define CLIENTS_MAX  16
#define SAMPLES_MAX  100000
/* How long the rebuild may take before the bench gives up on it: a floor,
 * plus this many times the bare read of the same stream. A rebuild that
 * much slower than reading its input is stuck or broken, not slow, and a
 * bench must end with a verdict either way. */
#define REBUILD_DEADLINE_MIN_S 60
#define REBUILD_DEADLINE_BARE  100

typedef struct {
    int events;  /* rebuild: events appended */
    int queries; /* series calls */
    int write_s; /* keeping up: seconds of writes */
    int clients; /* keeping up: writers */
    bool pin;
    int cpu_bench, cpu_service;
} options_t;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: passerelle-indbench [--events N] [--queries N] [--write-s S] [--clients K]\n"
            "                           [--cpus BENCH,SERVICE] [--no-pin] [--quick]\n"
            "  --events N    events a rebuild reads (default 1000000)\n"
            "  --queries N   series queries timed (default 2000)\n"
            "  --write-s S   seconds of writes while the backlog is watched (default 10)\n"
            "  --clients K   writers (default 4)\n"
            "  --quick       a smoke run: 5000 events, 100 queries, 2 s of writes\n");
}

static int parse_options(int argc, char *argv[], options_t *opt)
{
    *opt =
        (options_t){.events = 1000000, .queries = 2000, .write_s = 10, .clients = 4, .pin = true};
    bench_default_cpus(&opt->cpu_bench, &opt->cpu_service);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int *target = NULL, min = 1, max = 0;
        if (strcmp(a, "--quick") == 0) {
            opt->events = 5000;
            opt->queries = 100;
            opt->write_s = 2;
            continue;
        } else if (strcmp(a, "--no-pin") == 0) {
            opt->pin = false;
            continue;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        } else if (strcmp(a, "--cpus") == 0 && v) {
            int *cpus[2] = {&opt->cpu_bench, &opt->cpu_service};
            if (!bench_parse_cpus(v, cpus, 2)) {
                fprintf(stderr, "%s: --cpus wants BENCH,SERVICE\n", bench_program());
                return -1;
            }
            i++;
            continue;
        } else if (strcmp(a, "--events") == 0) {
            target = &opt->events, max = 20000000;
        } else if (strcmp(a, "--queries") == 0) {
            target = &opt->queries, max = SAMPLES_MAX;
        } else if (strcmp(a, "--write-s") == 0) {
            target = &opt->write_s, max = 600;
        } else if (strcmp(a, "--clients") == 0) {
            target = &opt->clients, max = CLIENTS_MAX;
        }
        if (!target || !v || !bench_parse_int(v, min, max, target)) {
            usage(stderr);
            return -1;
        }
        i++;
    }
    return 0;
}

/* ====================================================================== */
/* Redis, bare                                                            */
/* ====================================================================== */

/* The generation queries read (indicators:current; 0 when absent). */
static uint64_t current_generation(redisContext *ctx)
{
    redisReply *r = redisCommand(ctx, "GET indicators:current");
    uint64_t gen = 0;
    if (r && r->type == REDIS_REPLY_STRING)
        gen = strtoull(r->str, NULL, 10);
    if (r)
        freeReplyObject(r);
    return gen;
}

/* The group's backlog: entries not read yet (lag) plus read and not
 * acknowledged (pending); -1 if Redis does not say. */
static long long group_backlog(redisContext *ctx)
{
    redisReply *r = redisCommand(ctx, "XINFO GROUPS %s", STREAM);
    long long backlog = -1;
    if (r && r->type == REDIS_REPLY_ARRAY) {
        for (size_t g = 0; g < r->elements; g++) {
            const redisReply *info = r->element[g];
            long long pending = -1, lag = -1;
            bool ours = false;
            for (size_t i = 0; i + 1 < info->elements; i += 2) {
                const char *name = info->element[i]->str;
                const redisReply *val = info->element[i + 1];
                if (strcmp(name, "name") == 0)
                    ours = val->type == REDIS_REPLY_STRING && strcmp(val->str, GROUP) == 0;
                else if (strcmp(name, "pending") == 0 && val->type == REDIS_REPLY_INTEGER)
                    pending = val->integer;
                else if (strcmp(name, "lag") == 0 && val->type == REDIS_REPLY_INTEGER)
                    lag = val->integer;
            }
            if (ours && pending >= 0 && lag >= 0)
                backlog = pending + lag;
        }
    }
    if (r)
        freeReplyObject(r);
    return backlog;
}

/* A counter field of the current generation, 0 if absent. */
static long long counter_read(redisContext *ctx, const char *counter, const char *scope,
                              const char *period, const char *field)
{
    uint64_t gen = current_generation(ctx);
    redisReply *r = redisCommand(ctx, "HGET indicators:g%" PRIu64 ":c:%s:%s:%s %s", gen, counter,
                                 scope, period, field);
    long long v = 0;
    if (r && r->type == REDIS_REPLY_STRING)
        v = strtoll(r->str, NULL, 10);
    if (r)
        freeReplyObject(r);
    return v;
}

/* ====================================================================== */
/* 1. Keeping up with the reservations service                            */
/* ====================================================================== */

typedef struct {
    client_t *client; /* made by the main thread: CZMQ's set-up is not for racing threads */
    int index;
    atomic_bool *stop;
    long written;
    bool failed;
} writer_t;

/* Communes of five territories, with their territory. */
static const char *const communes[] = {"13001", "13103", "13005", "13056", "13047", "84089"};
static const char *const territories[] = {"CT2", "CT3", "CT4", "CT6", "CT5", "CT2"};

static void *writer_run(void *arg)
{
    writer_t *w = arg;
    client_t *client = w->client;
    char ref[64];
    while (!atomic_load(w->stop)) {
        Passerelle__UnitRegisterRequest req = PASSERELLE__UNIT_REGISTER_REQUEST__INIT;
        snprintf(ref, sizeof ref, "BENCH-%d-%ld", w->index, w->written);
        harness_unit_request(&req, ref);
        req.commune = (char *)communes[(w->written + w->index) % 6];
        Passerelle__Reply *reply = NULL;
        if (client_call(client, "unit.register", &req.base, NULL, &reply) != 0 || !reply ||
            reply->status != PASSERELLE__STATUS__STATUS_OK) {
            fprintf(stderr, "%s: unit.register failed: %s\n", bench_program(),
                    reply && reply->message ? reply->message : "no reply");
            w->failed = true;
            if (reply)
                passerelle__reply__free_unpacked(reply, NULL);
            break;
        }
        passerelle__reply__free_unpacked(reply, NULL);
        w->written++;
    }
    return NULL;
}

typedef struct {
    long written;
    double write_rate; /* units/s */
    long long backlog_max;
    long long backlog_end; /* when the writers stopped */
    double catch_up_s;     /* from the writers' stop to an empty backlog */
    bool counted_right;
} keepup_t;

static int keep_up(const options_t *opt, const harness_redis_t *redis, const char *keys,
                   const char *endpoint, keepup_t *out)
{
    memset(out, 0, sizeof *out);
    redisContext *ctx = bench_redis_open(redis, CALL_TIMEOUT);
    if (!ctx)
        return -1;
    long long before = counter_read(ctx, "units.registered", "all", "all", "*");
    atomic_bool stop = false;
    writer_t writers[CLIENTS_MAX];
    pthread_t threads[CLIENTS_MAX];
    int started = 0;
    int made = 0;
    for (; made < opt->clients; made++) {
        writers[made] = (writer_t){.index = made, .stop = &stop};
        writers[made].client = harness_client(endpoint, keys, "admin", CALL_TIMEOUT, 2);
        if (!writers[made].client)
            break;
    }
    for (int i = 0; made == opt->clients && i < opt->clients; i++) {
        if (pthread_create(&threads[i], NULL, writer_run, &writers[i]) != 0)
            break;
        started++;
    }
    double t0 = bench_now_s();
    int rc = 0;
    while (bench_now_s() - t0 < opt->write_s) {
        long long b = group_backlog(ctx);
        if (b > out->backlog_max)
            out->backlog_max = b;
        usleep(50000);
    }
    atomic_store(&stop, true);
    for (int i = 0; i < started; i++) {
        pthread_join(threads[i], NULL);
        out->written += writers[i].written;
        if (writers[i].failed)
            rc = -1;
    }
    for (int i = 0; i < made; i++)
        client_destroy(&writers[i].client);
    if (started < opt->clients)
        rc = -1;
    double t1 = bench_now_s();
    out->write_rate = out->written / (t1 - t0);
    out->backlog_end = group_backlog(ctx);
    for (;;) {
        long long b = group_backlog(ctx);
        if (b == 0)
            break;
        if (bench_now_s() - t1 > 60) {
            fprintf(stderr, "%s: the projection did not catch up within 60 s\n", bench_program());
            rc = -1;
            break;
        }
        usleep(2000);
    }
    out->catch_up_s = bench_now_s() - t1;
    /* The backlog is empty once the last batch is acknowledged, which
     * happens after its counts are written. */
    long long after = counter_read(ctx, "units.registered", "all", "all", "*");
    out->counted_right = after - before == out->written;
    if (!out->counted_right) {
        fprintf(stderr, "%s: %ld units written, %lld counted\n", bench_program(), out->written,
                after - before);
        rc = -1;
    }
    redisFree(ctx);
    return rc;
}

/* ====================================================================== */
/* 2. A query of 36 monthly points                                        */
/* ====================================================================== */

typedef struct {
    double service_p50, service_p99, bare_p50, bare_p99;
    bool right;
} query_t;

static void month_key(unsigned i, char out[PERIOD_KEY_LEN])
{
    snprintf(out, PERIOD_KEY_LEN, "%04u-%02u", 2024 + i / 12 % 100, i % 12 + 1);
}

static int query_measure(const options_t *opt, const harness_redis_t *redis, const char *keys,
                         const char *endpoint, query_t *out)
{
    memset(out, 0, sizeof *out);
    redisContext *ctx = bench_redis_open(redis, CALL_TIMEOUT);
    if (!ctx)
        return -1;
    uint64_t gen = current_generation(ctx);
    char key[256], period[PERIOD_KEY_LEN];
    long long expected[QUERY_MONTHS];
    for (int i = 0; i < QUERY_MONTHS; i++) {
        month_key((unsigned)i, period);
        expected[i] = 1 + (i * 7) % 13;
        snprintf(key, sizeof key, "indicators:g%" PRIu64 ":c:conventions.signed:CT4:%s", gen,
                 period);
        redisReply *r = redisCommand(ctx, "HSET %s * %lld", key, expected[i]);
        if (r)
            freeReplyObject(r);
    }

    double *service = calloc((size_t)opt->queries, sizeof *service);
    double *bare = calloc((size_t)opt->queries, sizeof *bare);
    client_t *client = harness_client(endpoint, keys, "partner", CALL_TIMEOUT, 0);
    int rc = service && bare && client ? 0 : -1;
    out->right = true;

    Passerelle__Scope scope = PASSERELLE__SCOPE__INIT;
    scope.territory = "CT4";
    Passerelle__SeriesRequest req = PASSERELLE__SERIES_REQUEST__INIT;
    req.indicator = "conventions.signed";
    req.period_kind = "month";
    req.from = "2024-01";
    req.to = "2026-12";
    req.scope = &scope;
    for (int q = 0; rc == 0 && q < opt->queries; q++) {
        Passerelle__Reply *reply = NULL;
        int64_t t = bench_now_ns();
        if (client_call(client, "indicator.series", &req.base, NULL, &reply) != 0 || !reply ||
            reply->status != PASSERELLE__STATUS__STATUS_OK) {
            fprintf(stderr, "%s: indicator.series failed: %s\n", bench_program(),
                    reply && reply->message ? reply->message : "no reply");
            rc = -1;
        }
        service[q] = (bench_now_ns() - t) / 1e3;
        if (rc == 0 && q == 0) {
            Passerelle__Series *s =
                passerelle__series__unpack(NULL, reply->body.len, reply->body.data);
            if (!s || s->n_points != QUERY_MONTHS)
                out->right = false;
            for (size_t i = 0; s && out->right && i < s->n_points; i++)
                if ((long long)s->points[i]->value != expected[i])
                    out->right = false;
            if (s)
                passerelle__series__free_unpacked(s, NULL);
            if (!out->right) {
                fprintf(stderr, "%s: the series does not hold the planted counters\n",
                        bench_program());
                rc = -1;
            }
        }
        if (reply)
            passerelle__reply__free_unpacked(reply, NULL);
    }
    for (int q = 0; rc == 0 && q < opt->queries; q++) {
        int64_t t = bench_now_ns();
        for (int i = 0; i < QUERY_MONTHS; i++) {
            month_key((unsigned)i, period);
            redisAppendCommand(ctx, "HGET indicators:g%" PRIu64 ":c:conventions.signed:CT4:%s *",
                               gen, period);
        }
        for (int i = 0; i < QUERY_MONTHS; i++) {
            redisReply *r = NULL;
            if (redisGetReply(ctx, (void **)&r) != REDIS_OK || !r) {
                rc = -1;
                break;
            }
            freeReplyObject(r);
        }
        bare[q] = (bench_now_ns() - t) / 1e3;
    }
    if (rc == 0) {
        bench_samples_summarise(service, (size_t)opt->queries, &out->service_p50,
                                &out->service_p99);
        bench_samples_summarise(bare, (size_t)opt->queries, &out->bare_p50, &out->bare_p99);
    }
    client_destroy(&client);
    free(service);
    free(bare);
    redisFree(ctx);
    return rc;
}

/* ====================================================================== */
/* 3. A rebuild of N events                                               */
/* ====================================================================== */

/* One event of the synthetic history: the i-th of the kinds below, each a
 * real record as the reservations service writes it, at a time spread over
 * two years. */
static size_t event_pack(long i, uint8_t *buf, size_t cap, const char **type)
{
    char id[ID_LEN], unit_id[ID_LEN], time_text[32], subject[64];
    id_new('E', id);
    snprintf(unit_id, sizeof unit_id, "U%025ld", i / 4);
    time_t at = 1704067200 + (time_t)(i % 1000000) * 63; /* from 2024-01-01 */
    struct tm tm;
    gmtime_r(&at, &tm);
    strftime(time_text, sizeof time_text, "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(subject, sizeof subject, "units/%s", unit_id);
    const char *commune = communes[i % 6];
    const char *territory = territories[i % 6];

    Passerelle__Unit unit = PASSERELLE__UNIT__INIT;
    unit.id = unit_id;
    unit.commune_insee = (char *)commune;
    unit.territory = (char *)territory;
    unit.has_stock = true;
    unit.stock = PASSERELLE__STOCK__STOCK_PRIVATE;
    Passerelle__Convention conv = PASSERELLE__CONVENTION__INIT;
    conv.unit_id = unit_id;
    conv.has_level = true;
    conv.level = (Passerelle__ConventionLevel)(1 + i % 3);
    conv.envisaged_on = "2024-01-10";
    conv.signed_on = "2024-03-01";
    conv.unit = &unit;
    Passerelle__Reservation res = PASSERELLE__RESERVATION__INIT;
    res.has_reservataire = true;
    res.reservataire = PASSERELLE__RESERVATAIRE__RESERVATAIRE_ACTION_LOGEMENT;
    res.has_mode = true;
    res.mode = PASSERELLE__RESERVATION_MODE__MODE_STOCK;
    res.unit_id = unit_id;
    res.has_year = true;
    res.year = (uint32_t)(1900 + tm.tm_year);
    res.has_units = true;
    res.units = 1;
    res.territory = (char *)territory;
    res.unit = &unit;

    const ProtobufCMessage *data;
    switch (i % 4) {
    case 0:
        *type = "unit.registered";
        data = &unit.base;
        break;
    case 1:
        *type = "convention.envisaged";
        data = &conv.base;
        break;
    case 2:
        *type = "convention.signed";
        data = &conv.base;
        break;
    default:
        *type = "reservation.created";
        data = &res.base;
        break;
    }
    uint8_t packed[1024];
    size_t len = protobuf_c_message_get_packed_size(data);
    if (len > sizeof packed)
        return 0;
    protobuf_c_message_pack(data, packed);
    Passerelle__Event ev = PASSERELLE__EVENT__INIT;
    ev.id = id;
    ev.source = "/passerelle/reservations";
    ev.type = (char *)*type;
    ev.subject = subject;
    ev.time = time_text;
    ev.datacontenttype = "application/protobuf";
    ev.dataschema = (char *)data->descriptor->name;
    ev.has_data = true;
    ev.data.data = packed;
    ev.data.len = len;
    ev.specversion = "1.0";
    size_t total = protobuf_c_message_get_packed_size(&ev.base);
    if (total > cap)
        return 0;
    return protobuf_c_message_pack(&ev.base, buf);
}

static int history_append(redisContext *ctx, int count)
{
    uint8_t buf[2048];
    const int batch = 1000;
    for (int done = 0; done < count;) {
        int n = count - done < batch ? count - done : batch;
        for (int k = 0; k < n; k++) {
            const char *type = NULL;
            size_t len = event_pack(done + k, buf, sizeof buf, &type);
            if (!len)
                return -1;
            redisAppendCommand(ctx, "XADD %s * type %s event %b", STREAM, type, buf, len);
        }
        for (int k = 0; k < n; k++) {
            redisReply *r = NULL;
            if (redisGetReply(ctx, (void **)&r) != REDIS_OK || !r || r->type == REDIS_REPLY_ERROR) {
                if (r)
                    freeReplyObject(r);
                return -1;
            }
            freeReplyObject(r);
        }
        done += n;
    }
    return 0;
}

/* Reads the whole stream in pages, as a rebuild must; returns entries
 * read, -1 on failure. */
static long stream_read_bare(redisContext *ctx)
{
    char after[64] = "-";
    long read = 0;
    for (;;) {
        redisReply *r = redisCommand(ctx, "XRANGE %s %s + COUNT %d", STREAM, after, XRANGE_PAGE);
        if (!r || r->type != REDIS_REPLY_ARRAY) {
            if (r)
                freeReplyObject(r);
            return -1;
        }
        size_t n = r->elements;
        if (n > 0)
            snprintf(after, sizeof after, "(%s", r->element[n - 1]->element[0]->str);
        read += (long)n;
        freeReplyObject(r);
        if (n < XRANGE_PAGE)
            return read;
    }
}

typedef struct {
    long stream_len;
    double bare_s, rebuild_s;
    bool right;
} rebuild_fig_t;

static Passerelle__RebuildStatus *rebuild_call(client_t *client, const char *type)
{
    Passerelle__RebuildRequest req = PASSERELLE__REBUILD_REQUEST__INIT;
    Passerelle__Reply *reply = NULL;
    Passerelle__RebuildStatus *status = NULL;
    if (client_call(client, type, &req.base, NULL, &reply) == 0 && reply &&
        reply->status == PASSERELLE__STATUS__STATUS_OK)
        status = passerelle__rebuild_status__unpack(NULL, reply->body.len, reply->body.data);
    else
        fprintf(stderr, "%s: %s failed: %s\n", bench_program(), type,
                reply && reply->message ? reply->message : "no reply");
    if (reply)
        passerelle__reply__free_unpacked(reply, NULL);
    return status;
}

static int rebuild_measure(const options_t *opt, bench_stack_t *stack, rebuild_fig_t *out)
{
    memset(out, 0, sizeof *out);
    /* The history goes in while the indicators service is down, and its
     * group then skips it: only the rebuild reads it. */
    if (harness_service_stop(&stack->service, SIGTERM) != 0)
        fprintf(stderr, "%s: the indicators service did not stop cleanly\n", bench_program());
    redisContext *ctx = bench_redis_open(&stack->redis, CALL_TIMEOUT);
    if (!ctx)
        return -1;
    int rc = history_append(ctx, opt->events);
    redisReply *r = redisCommand(ctx, "XGROUP SETID %s %s $", STREAM, GROUP);
    if (!r || r->type == REDIS_REPLY_ERROR)
        rc = -1;
    if (r)
        freeReplyObject(r);
    r = redisCommand(ctx, "XLEN %s", STREAM);
    out->stream_len = r && r->type == REDIS_REPLY_INTEGER ? (long)r->integer : -1;
    if (r)
        freeReplyObject(r);
    if (rc != 0 || harness_service_restart(&stack->service, stack->dir, NULL) != 0) {
        redisFree(ctx);
        return -1;
    }

    /* The bare read, twice (the first warms what a first read warms), from
     * the vCPU the rebuild reads from: the service's, beside Redis. */
    long read = -1;
    if (bench_pin(opt->pin, opt->cpu_service) == 0) {
        read = stream_read_bare(ctx);
        double t0 = bench_now_s();
        read = stream_read_bare(ctx);
        out->bare_s = bench_now_s() - t0;
    }
    if (read != out->stream_len || bench_pin(opt->pin, opt->cpu_bench) != 0)
        rc = -1;

    client_t *client =
        harness_client(stack->service.endpoint, stack->keys, "admin", CALL_TIMEOUT, 0);
    Passerelle__RebuildStatus *status = client ? rebuild_call(client, "indicator.rebuild") : NULL;
    double t = bench_now_s();
    uint64_t target = status ? status->generation : 0;
    if (status)
        passerelle__rebuild_status__free_unpacked(status, NULL);
    else
        rc = -1;
    double last_report = t;
    double deadline = t + REBUILD_DEADLINE_MIN_S + REBUILD_DEADLINE_BARE * out->bare_s;
    while (rc == 0) {
        if (bench_now_s() > deadline) {
            fprintf(stderr, "%s: the rebuild did not end within %.0f s; giving up\n",
                    bench_program(), deadline - t);
            rc = -1;
            break;
        }
        status = rebuild_call(client, "indicator.rebuild_status");
        if (!status) {
            rc = -1;
            break;
        }
        bool done = strcmp(status->state ? status->state : "", "done") == 0 &&
                    status->current_generation >= target;
        bool failed = strcmp(status->state ? status->state : "", "failed") == 0;
        if (bench_now_s() - last_report > 5) {
            fprintf(stderr, "%s: rebuild: %" PRIu64 " of %" PRIu64 " events\n", bench_program(),
                    status->events_read, status->events_total);
            last_report = bench_now_s();
        }
        passerelle__rebuild_status__free_unpacked(status, NULL);
        if (done)
            break;
        if (failed) {
            fprintf(stderr, "%s: the rebuild failed\n", bench_program());
            rc = -1;
        }
        /* Often enough to time it to 1%, seldom enough not to weigh on the
         * vCPU the rebuild runs on. */
        usleep(10000);
    }
    out->rebuild_s = bench_now_s() - t;
    client_destroy(&client);

    /* Every synthetic unit.registered is counted after the rebuild, on top
     * of the units the keeping-up phase wrote. */
    if (rc == 0) {
        long long units = counter_read(ctx, "units.registered", "all", "all", "*");
        out->right = units >= (opt->events + 3) / 4;
        if (!out->right) {
            fprintf(stderr, "%s: after the rebuild, %lld units counted, %d at least expected\n",
                    bench_program(), units, (opt->events + 3) / 4);
            rc = -1;
        }
    }
    redisFree(ctx);
    return rc;
}

/* ====================================================================== */
/* main                                                                   */
/* ====================================================================== */

int main(int argc, char *argv[])
{
    bench_init("passerelle-indbench", "indbench");
    options_t opt;
    if (parse_options(argc, argv, &opt) != 0)
        return 2;

    bench_stack_t stack;
    if (bench_stack_init(&stack, "indbench") != 0)
        return 1;
    char *env[] = {"PASSERELLE_INDICATORS_STREAMS=" STREAM, NULL};
    int rc =
        bench_stack_start(&stack, "indicators", opt.pin, opt.cpu_service, opt.cpu_service, env);
    harness_service_t reservations = {0};
    bool reservations_up = false;
    if (rc == 0) {
        rc = harness_service_start(&reservations, "reservations", stack.dir, NULL);
        reservations_up = rc == 0;
    }
    if (rc == 0)
        rc = bench_pin(opt.pin, opt.cpu_bench);

    keepup_t keep;
    query_t query;
    rebuild_fig_t rebuild;
    memset(&keep, 0, sizeof keep);
    memset(&query, 0, sizeof query);
    memset(&rebuild, 0, sizeof rebuild);
    if (rc == 0) {
        fprintf(stderr, "%s: %d s of writes from %d clients...\n", bench_program(), opt.write_s,
                opt.clients);
        rc = keep_up(&opt, &stack.redis, stack.keys, reservations.endpoint, &keep);
    }
    if (rc == 0) {
        fprintf(stderr, "%s: %d series queries...\n", bench_program(), opt.queries);
        rc = query_measure(&opt, &stack.redis, stack.keys, stack.service.endpoint, &query);
    }
    if (rc == 0) {
        fprintf(stderr, "%s: a rebuild of %d events...\n", bench_program(), opt.events);
        rc = rebuild_measure(&opt, &stack, &rebuild);
    }

    if (reservations_up && !harness_service_stop_clean(&reservations))
        rc = -1;
    if (bench_stack_stop(&stack) != 0)
        rc = -1;
    bench_stack_remove(&stack);

    double behind_s = keep.write_rate > 0 ? keep.backlog_max / keep.write_rate : 0;
    bool bounded = keep.counted_right && behind_s < 1.0;
    double bare_rate = rebuild.bare_s > 0 ? rebuild.stream_len / rebuild.bare_s : 0;
    double rebuild_rate = rebuild.rebuild_s > 0 ? rebuild.stream_len / rebuild.rebuild_s : 0;
    double rebuild_ratio = bench_ratio(rebuild_rate, bare_rate);

    printf("%-50s %12s %12s\n", "", "p50 us", "p99 us");
    printf("%-50s %12.1f %12.1f\n", "bare redis read, 36 counters (pipeline)", query.bare_p50,
           query.bare_p99);
    printf("%-50s %12.1f %12.1f\n", "indicator.series, 36 monthly points", query.service_p50,
           query.service_p99);
    printf("\n%-50s %12s %12s\n", "", "events", "events/s");
    printf("%-50s %12ld %12.0f\n", "bare stream read (XRANGE, pages of 1000)", rebuild.stream_len,
           bare_rate);
    printf("%-50s %12ld %12.0f\n", "rebuild (request to switch)", rebuild.stream_len, rebuild_rate);
    printf("\nkeeping up: %ld units written in %d s by %d clients (%.0f/s); backlog at most "
           "%lld events (%.2f s of writes), %lld when the writes stopped, gone %.3f s later\n",
           keep.written, opt.write_s, opt.clients, keep.write_rate, keep.backlog_max, behind_s,
           keep.backlog_end, keep.catch_up_s);
    printf("query p99 %.3f ms (aim < 1 ms: %s); service p99 / bare p99: %.2f\n",
           query.service_p99 / 1000,
           bench_verdict(query.service_p99 > 0 && query.service_p99 < 1000),
           bench_ratio(query.service_p99, query.bare_p99));
    printf("rebuild / bare read speed: %.2f (aim >= 0.50: %s)\n", rebuild_ratio,
           bench_verdict(rebuild_ratio >= 0.5));
    printf("projection keeps up: %s (backlog under a second of writes)\n", bench_verdict(bounded));

    json_t *root = json_pack(
        "{s:s, s:{s:f, s:f, s:f, s:f}, s:{s:I, s:f, s:f, s:f}, s:{s:I, s:f, s:I, s:I, s:f, s:b}}",
        "bench", "indicators", "query", "bare_p50_us", query.bare_p50, "bare_p99_us",
        query.bare_p99, "service_p50_us", query.service_p50, "service_p99_us", query.service_p99,
        "rebuild", "events", (json_int_t)rebuild.stream_len, "bare_s", rebuild.bare_s, "rebuild_s",
        rebuild.rebuild_s, "ratio", rebuild_ratio, "keep_up", "written", (json_int_t)keep.written,
        "write_rate", keep.write_rate, "backlog_max", (json_int_t)keep.backlog_max, "backlog_end",
        (json_int_t)keep.backlog_end, "catch_up_s", keep.catch_up_s, "bounded", bounded);
    bench_print_json(root);
    return rc == 0 ? 0 : 1;
}
