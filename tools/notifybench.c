/* passerelle-notifybench: how far webhook delivery is from the HTTP it is
 * built on, and how long an event takes to reach its subscriber.
 *
 * The real notifications service runs through the test harness, on a
 * redis-server with the durable configuration (AOF, appendfsync always),
 * with webhooks allowed to 127.0.0.1. This process plays both ends:
 *   - the producer: events committed to "reservations:events" as the
 *     reservations service commits convention.envisaged (txn.h: the
 *     convention and unit records, the idempotency record, and the event, a
 *     passerelle.Convention carrying its Unit with a territory), each about
 *     a unit of its own, so that no two share a subject and every one may
 *     go at once;
 *   - the sink: a minimal HTTP server (libmicrohttpd) that answers 200 to
 *     everything, counts, and notes when each event first arrived (by its
 *     webhook-id). It does not verify signatures: what it costs is the same
 *     for the service and for the bare limit, and kept small.
 *
 * Figures:
 *   1. Throughput, end to end: deliveries per second from the first commit
 *      to the sink's receipt of the last 2xx-answered delivery, with 1 and
 *      8 subscriptions matching every event, against the bare limit
 *      measured in the same run: libcurl POSTs of the same body (a real
 *      event's CloudEvent JSON) and headers of the same sizes, to the same
 *      sink, kept alive, with the service's bound on transfers in flight
 *      (PASSERELLE_NOTIFY_PER_ENDPOINT per subscription), from a curl multi
 *      handle in one thread as the service's outbox does. Bare and service
 *      runs alternate in rounds so that a drift of the machine weighs on
 *      both. Aim: 1-subscription ratio >= 0.50.
 *   2. Latency at a steady rate (200 events/s for 10 s by default), one
 *      subscription: from the moment txn_commit returns to the sink's
 *      receipt, p50/p99/max; aim p99 < 20 ms. Beside it, the service's own
 *      figure (latency.get), measured from the event's time attribute
 *      (set before the commit, millisecond resolution, 10%-wide buckets).
 * Each phase uses a territory of its own (warm-up CT2, latency CT1,
 * throughput CT3 and CT5), so that latency.get can be asked about the
 * latency phase alone.
 *
 * Pinning (--pin). On this 2-vCPU machine a loopback round trip costs 2-4x
 * more across vCPUs than on one, so the paths compared cross the same
 * boundary: redis-server, the service and the bare curl thread on the
 * service's vCPU (the second allowed by default), the producer and the
 * sink on the bench's (the first). Both the service's transfers and the
 * bare ones thus go from the service's vCPU to the sink's. Children and
 * threads inherit the affinity of the thread that starts them, which is
 * how redis-server, the service and the sink's thread get theirs. Without
 * --pin the kernel places everything.
 *
 * Output: a table, the ratios against the aims, the service's attempts by
 * outcome (from its log: a retry is a delivery the sink did not see), the
 * Redis work per delivery (INFO commandstats over the 1-subscription
 * service rounds), and one JSON line (the last line of stdout). The exit
 * code is 0 when every event reached the sink as often as it should before
 * the waits gave up, 1 otherwise or on a failure; the aims never fail it. */
#define _GNU_SOURCE
#include "bench_util.h"
#include "harness.h"

#include "cloudevent.h"
#include "config.h"
#include "envelope.pb-c.h"
#include "ids.h"
#include "notifications.pb-c.h"
#include "reservations.pb-c.h"
#include "store.h"
#include "txn.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <czmq.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define PROGRAM "passerelle-notifybench"

#define DEFAULT_EVENTS  4000
#define DEFAULT_SECONDS 10
#define DEFAULT_RATE    200
#define QUICK_EVENTS    200
#define QUICK_SECONDS   2
#define QUICK_RATE      100
/* Subscriptions of the wide fan-out figure. */
#define WIDE_SUBS 8
/* Throughput rounds, bare and service alternating. */
#define ROUNDS 2
/* The stream the service reads, and one nobody reads (the producer's
 * ceiling). */
#define SERVICE_STREAM "reservations:events"
#define UNREAD_STREAM  "notifybench:unread:events"
/* Events committed per pipeline by the producer in the throughput runs. */
#define PRODUCER_BATCH 64
/* Warm-up events: connections opened, caches filled, before any figure. */
#define WARMUP_EVENTS 50
/* A wait for deliveries gives up when none has come for STALL_MS (the
 * rest are then waiting for a retry the service scheduled), or after
 * WAIT_MS in all; both generous for valgrind. What had not come then is
 * reported, and makes the exit code 1. */
#define WAIT_MS         120000
#define STALL_MS        30000
#define CALL_TIMEOUT_MS 20000

#define AIM_RATIO  0.50
#define AIM_P99_MS 20.0

#define EVENT_TYPE "convention.envisaged"

/* Phases of the run, each event belonging to one: warm-ups, the latency
 * run, each throughput round. */
#define PHASES_MAX 16

/* ====================================================================== */
/* Options                                                                */
/* ====================================================================== */

typedef struct {
    int events;  /* per 1-subscription throughput figure */
    int seconds; /* of the latency run */
    int rate;    /* events/s of the latency run */
    bool quick;
    bool pin;
    int cpu_bench, cpu_redis, cpu_service;
    int per_endpoint;  /* PASSERELLE_NOTIFY_PER_ENDPOINT, given to the service */
    int max_in_flight; /* PASSERELLE_NOTIFY_MAX_IN_FLIGHT, likewise */
} options_t;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: " PROGRAM " [--events N] [--seconds S] [--rate R] [--quick]\n"
            "                            [--pin] [--cpus B,R,S]\n"
            "  --events N   events per 1-subscription throughput figure (default %d;\n"
            "               the 8-subscription figure sends N/4, 2N deliveries)\n"
            "  --seconds S  length of the steady-rate latency run (default %d)\n"
            "  --rate R     events per second of that run (default %d)\n"
            "  --quick      small sizes, for a smoke run (%d events, %d s at %d/s)\n"
            "  --pin        pin: the bench (producer, sink) on the first allowed vCPU,\n"
            "               redis-server, the service and the bare curl client on the\n"
            "               second\n"
            "  --cpus B,R,S pin to these vCPUs: bench, redis-server, service\n"
            "PASSERELLE_NOTIFY_PER_ENDPOINT (default 4) and _MAX_IN_FLIGHT (64) are\n"
            "handed to the service and bound the bare client alike. The service binary\n"
            "is looked for under $PASSERELLE_TEST_BIN_DIR (default: the build tree this\n"
            "was built in).\n",
            DEFAULT_EVENTS, DEFAULT_SECONDS, DEFAULT_RATE, QUICK_EVENTS, QUICK_SECONDS, QUICK_RATE);
}

static int parse_options(int argc, char *argv[], options_t *opt)
{
    memset(opt, 0, sizeof *opt);
    opt->events = DEFAULT_EVENTS;
    opt->seconds = DEFAULT_SECONDS;
    opt->rate = DEFAULT_RATE;
    bench_default_cpus(&opt->cpu_bench, &opt->cpu_service);
    opt->cpu_redis = opt->cpu_service;
    bool events_set = false, seconds_set = false, rate_set = false;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            usage(stdout);
            exit(0);
        } else if (strcmp(arg, "--quick") == 0) {
            opt->quick = true;
        } else if (strcmp(arg, "--pin") == 0) {
            opt->pin = true;
        } else if (strcmp(arg, "--events") == 0 && value) {
            if (!bench_parse_int(value, 8, 1000000, &opt->events))
                return -1;
            events_set = true;
            i++;
        } else if (strcmp(arg, "--seconds") == 0 && value) {
            if (!bench_parse_int(value, 1, 3600, &opt->seconds))
                return -1;
            seconds_set = true;
            i++;
        } else if (strcmp(arg, "--rate") == 0 && value) {
            if (!bench_parse_int(value, 1, 100000, &opt->rate))
                return -1;
            rate_set = true;
            i++;
        } else if (strcmp(arg, "--cpus") == 0 && value) {
            int *const cpus[] = {&opt->cpu_bench, &opt->cpu_redis, &opt->cpu_service};
            if (!bench_parse_cpus(value, cpus, 3))
                return -1;
            opt->pin = true;
            i++;
        } else {
            return -1;
        }
    }
    /* --quick sets what the command line left unset. */
    if (opt->quick) {
        opt->events = events_set ? opt->events : QUICK_EVENTS;
        opt->seconds = seconds_set ? opt->seconds : QUICK_SECONDS;
        opt->rate = rate_set ? opt->rate : QUICK_RATE;
    }
    /* The service's own ranges and defaults (services/notifications/main.c). */
    long per_endpoint = 4, max_in_flight = 64;
    if (!config_int("PASSERELLE_NOTIFY_PER_ENDPOINT", 4, 1, 64, &per_endpoint) ||
        !config_int("PASSERELLE_NOTIFY_MAX_IN_FLIGHT", 64, 1, 4096, &max_in_flight))
        return -1;
    opt->per_endpoint = (int)per_endpoint;
    opt->max_in_flight = (int)max_in_flight;
    return 0;
}

/* ====================================================================== */
/* The sink                                                               */
/* ====================================================================== */

/* What the sink knows of the events: their ids in commit order (ULIDs made
 * by one process sort in creation order, so a binary search finds them),
 * published to the sink's thread by `published` (release/acquire), and
 * what arrived for each. */
typedef struct {
    struct MHD_Daemon *daemon;
    struct MHD_Response *ok; /* one empty 200 answer, queued every time */
    int port;
    char url[64]; /* http://127.0.0.1:<port> */

    char (*ids)[ID_LEN]; /* capacity, written by the producer only */
    uint8_t *phase_of;   /* the phase each event belongs to, written with its id */
    size_t capacity;
    size_t published;  /* atomic: ids[0 .. published) are readable */
    int64_t *first_ns; /* atomic: first receipt of event i, 0 before */
    uint32_t *hits;    /* atomic: deliveries of event i */
    /* atomic, per phase: deliveries of its events and the latest one's
     * receipt; a retry that lands late counts for its own phase. */
    uint64_t matched[PHASES_MAX];
    int64_t last_ns[PHASES_MAX];
    uint64_t other;        /* atomic: anything else (the bare POSTs) */
    int64_t other_last_ns; /* atomic: the latest of those */
} sink_t;

static long sink_find(sink_t *sink, const char *id)
{
    size_t lo = 0, hi = __atomic_load_n(&sink->published, __ATOMIC_ACQUIRE);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int cmp = strcmp(sink->ids[mid], id);
        if (cmp == 0)
            return (long)mid;
        if (cmp < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

static void atomic_max(int64_t *at, int64_t value)
{
    int64_t seen = __atomic_load_n(at, __ATOMIC_RELAXED);
    while (value > seen && !__atomic_compare_exchange_n(at, &seen, value, false, __ATOMIC_RELEASE,
                                                        __ATOMIC_RELAXED))
        ;
}

/* Notes one complete request. The receipt time is stored before the count
 * goes up, so that a reader who sees the count sees the time too. */
static void sink_note(sink_t *sink, const char *webhook_id)
{
    int64_t now = bench_now_ns();
    long index = -1;
    if (webhook_id && strncmp(webhook_id, "msg_", 4) == 0)
        index = sink_find(sink, webhook_id + 4);
    if (index < 0) {
        atomic_max(&sink->other_last_ns, now);
        __atomic_add_fetch(&sink->other, 1, __ATOMIC_RELEASE);
        return;
    }
    int phase = sink->phase_of[index];
    int64_t unset = 0;
    __atomic_compare_exchange_n(&sink->first_ns[index], &unset, now, false, __ATOMIC_RELAXED,
                                __ATOMIC_RELAXED);
    __atomic_add_fetch(&sink->hits[index], 1, __ATOMIC_RELAXED);
    atomic_max(&sink->last_ns[phase], now);
    __atomic_add_fetch(&sink->matched[phase], 1, __ATOMIC_RELEASE);
}

/* libmicrohttpd's handler: called once with the headers, once per piece of
 * body, and once more at its end, when the request is noted and answered.
 * The body is read and dropped: nothing here should cost more than the
 * HTTP itself. */
static enum MHD_Result sink_request(void *cls, struct MHD_Connection *connection, const char *url,
                                    const char *method, const char *version,
                                    const char *upload_data, size_t *upload_data_size,
                                    void **con_cls)
{
    (void)url;
    (void)method;
    (void)version;
    (void)upload_data;
    sink_t *sink = cls;
    static int started;
    if (*con_cls == NULL) {
        *con_cls = &started;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        *upload_data_size = 0;
        return MHD_YES;
    }
    sink_note(sink, MHD_lookup_connection_value(connection, MHD_HEADER_KIND, "webhook-id"));
    return MHD_queue_response(connection, MHD_HTTP_OK, sink->ok);
}

/* Starts the sink's thread, which inherits the calling thread's affinity.
 * capacity: the most events the run commits. 0 or -1. */
static int sink_start(sink_t *sink, size_t capacity)
{
    memset(sink, 0, sizeof *sink);
    sink->capacity = capacity;
    sink->ids = calloc(capacity, ID_LEN);
    sink->first_ns = calloc(capacity, sizeof *sink->first_ns);
    sink->hits = calloc(capacity, sizeof *sink->hits);
    sink->phase_of = calloc(capacity, sizeof *sink->phase_of);
    sink->ok = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
    if (!sink->ids || !sink->first_ns || !sink->hits || !sink->phase_of || !sink->ok)
        return -1;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* One thread polling every connection: as cheap a server as
     * libmicrohttpd makes, for the bare limit and the service alike. */
    sink->daemon =
        MHD_start_daemon(MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL,
                         sink_request, sink, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
                         MHD_OPTION_CONNECTION_LIMIT, (unsigned)1024, MHD_OPTION_END);
    if (!sink->daemon) {
        fprintf(stderr, PROGRAM ": the sink cannot listen on 127.0.0.1\n");
        return -1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(sink->daemon, MHD_DAEMON_INFO_BIND_PORT);
    sink->port = info ? (int)info->port : 0;
    if (sink->port <= 0) {
        fprintf(stderr, PROGRAM ": the sink's port is unknown\n");
        return -1;
    }
    snprintf(sink->url, sizeof sink->url, "http://127.0.0.1:%d", sink->port);
    return 0;
}

static void sink_stop(sink_t *sink)
{
    if (sink->daemon)
        MHD_stop_daemon(sink->daemon);
    sink->daemon = NULL;
    if (sink->ok)
        MHD_destroy_response(sink->ok);
    sink->ok = NULL;
    free(sink->ids);
    free(sink->first_ns);
    free(sink->hits);
    free(sink->phase_of);
    sink->phase_of = NULL;
    sink->ids = NULL;
    sink->first_ns = NULL;
    sink->hits = NULL;
}

static uint64_t sink_matched(sink_t *sink, int phase)
{
    return __atomic_load_n(&sink->matched[phase], __ATOMIC_ACQUIRE);
}

static int64_t sink_last_ns(sink_t *sink, int phase)
{
    return __atomic_load_n(&sink->last_ns[phase], __ATOMIC_ACQUIRE);
}

static uint64_t sink_other(sink_t *sink)
{
    return __atomic_load_n(&sink->other, __ATOMIC_ACQUIRE);
}

static int64_t sink_other_last_ns(sink_t *sink)
{
    return __atomic_load_n(&sink->other_last_ns, __ATOMIC_ACQUIRE);
}

/* Polls until the sink has noted target deliveries of the phase's events.
 * True if they all came; false (with a message) when they stopped coming
 * for STALL_MS, or after WAIT_MS in all. */
static bool sink_wait(sink_t *sink, int phase, uint64_t target, const char *what)
{
    int64_t now = bench_now_ns();
    int64_t deadline = now + (int64_t)WAIT_MS * 1000000, progress = now;
    uint64_t seen = sink_matched(sink, phase);
    while (seen < target) {
        now = bench_now_ns();
        if (now > deadline || now - progress > (int64_t)STALL_MS * 1000000 || zsys_interrupted) {
            fprintf(stderr,
                    PROGRAM ": %s: %llu of %llu deliveries arrived; none for the last %d s\n", what,
                    (unsigned long long)seen, (unsigned long long)target,
                    (int)((now - progress) / 1000000000));
            return false;
        }
        usleep(500);
        uint64_t more = sink_matched(sink, phase);
        if (more != seen)
            progress = now;
        seen = more;
    }
    return true;
}

/* ====================================================================== */
/* The producer                                                           */
/* ====================================================================== */

/* A commune per phase, so that each phase has its own territory. */
typedef struct {
    const char *insee, *name, *territory;
} commune_t;

static const commune_t COMMUNE_WARMUP = {"84089", "Pertuis", "CT2"};
static const commune_t COMMUNE_LATENCY = {"13028", "La Ciotat", "CT1"};
static const commune_t COMMUNE_NARROW = {"13103", "Salon-de-Provence", "CT3"};
static const commune_t COMMUNE_WIDE = {"13047", "Istres", "CT5"};

typedef struct {
    store_t *store;
    sink_t *sink;       /* where the event ids are published */
    size_t next;        /* index of the next event */
    int phase;          /* of the events committed now */
    int64_t *commit_ns; /* when txn_commit returned, per event (latency run) */
    double *commit_ms;  /* how long it took, per event (latency run) */
    uint64_t committed;
    double commit_s;    /* time spent committing, throughput runs */
    const char *stream; /* where the events go: the one the service reads */
} producer_t;

/* One event's transaction, built as convention.envisage builds its own:
 * the convention record, the unit record, the event carrying the
 * convention and its unit, the idempotency record with the reply (the
 * convention) to store. Publishes the event's id to the sink. *reply_p
 * (malloc'd) must outlive the commit. NULL when out of memory. */
static txn_t *event_txn(producer_t *p, const commune_t *commune, uint8_t **reply_p,
                        size_t *reply_len)
{
    char unit_id[ID_LEN], conv_id[ID_LEN], now[TIME_RFC3339_LEN], date[DATE_LEN];
    char ref[64], address[64], landlord[48], key[128], idem[128], subject[64];
    id_new('U', unit_id);
    id_new('C', conv_id);
    time_now_rfc3339(now);
    date_format(date_today_paris(), date);
    snprintf(ref, sizeof ref, "ANAH-BENCH-%07zu", p->next);
    snprintf(address, sizeof address, "%zu avenue Guillaume Dulac", 1 + p->next % 300);
    snprintf(landlord, sizeof landlord, "OWNER-%s", unit_id + 16);

    Passerelle__Unit unit = PASSERELLE__UNIT__INIT;
    unit.id = unit_id;
    unit.external_ref = ref;
    unit.address = address;
    unit.commune_insee = (char *)commune->insee;
    unit.commune_name = (char *)commune->name;
    unit.territory = (char *)commune->territory;
    unit.has_stock = true;
    unit.stock = PASSERELLE__STOCK__STOCK_PRIVATE;
    unit.has_typology = true;
    unit.typology = PASSERELLE__TYPOLOGY__TYPOLOGY_T3;
    unit.has_surface_m2 = true;
    unit.surface_m2 = 64.5;
    unit.landlord = landlord;
    unit.has_energy_class = true;
    unit.energy_class = PASSERELLE__ENERGY_CLASS__ENERGY_D;
    unit.convention_id = conv_id;
    unit.has_convention_state = true;
    unit.convention_state = PASSERELLE__CONVENTION_STATE__CONVENTION_ENVISAGED;
    unit.has_convention_level = true;
    unit.convention_level = PASSERELLE__CONVENTION_LEVEL__LEVEL_LOC2;
    unit.created_at = now;
    unit.updated_at = now;
    unit.has_version = true;
    unit.version = 2;

    Passerelle__Convention conv = PASSERELLE__CONVENTION__INIT;
    conv.id = conv_id;
    conv.unit_id = unit_id;
    conv.has_level = true;
    conv.level = PASSERELLE__CONVENTION_LEVEL__LEVEL_LOC2;
    conv.has_with_works = true;
    conv.has_intermediation = true;
    conv.intermediation = PASSERELLE__INTERMEDIATION__INTERMEDIATION_NONE;
    conv.has_rent_ceiling_eur_m2 = true;
    conv.rent_ceiling_eur_m2 = 9.5;
    conv.has_state = true;
    conv.state = PASSERELLE__CONVENTION_STATE__CONVENTION_ENVISAGED;
    conv.envisaged_on = date;
    conv.created_at = now;
    conv.updated_at = now;
    conv.has_version = true;
    conv.version = 1;

    snprintf(idem, sizeof idem, "notifybench:idem:%s", conv_id);
    txn_t *txn =
        txn_new(idem, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", 86400);
    snprintf(key, sizeof key, "notifybench:convention:%s", conv_id);
    txn_put_message(txn, key, 1, &conv.base);
    /* The records are fresh, so the unit is created (version 1) where the
     * service would update it: the same two writes. */
    snprintf(key, sizeof key, "notifybench:unit:%s", unit_id);
    txn_put_message(txn, key, 1, &unit.base);
    conv.unit = &unit;
    snprintf(subject, sizeof subject, "units/%s", unit_id);
    txn_event(txn, p->stream, "/passerelle/reservations", EVENT_TYPE, subject, &conv.base);

    *reply_len = passerelle__convention__get_packed_size(&conv);
    *reply_p = malloc(*reply_len ? *reply_len : 1);
    if (!*reply_p) {
        txn_destroy(&txn);
        return NULL;
    }
    passerelle__convention__pack(&conv, *reply_p);

    /* Published before the commit: the sink may see the event only after
     * it is committed, and by then it must find its id. */
    snprintf(p->sink->ids[p->next], ID_LEN, "%s", txn_event_id(txn));
    p->sink->phase_of[p->next] = (uint8_t)p->phase;
    p->next++;
    __atomic_store_n(&p->sink->published, p->next, __ATOMIC_RELEASE);
    return txn;
}

/* Commits count events one pipeline of up to PRODUCER_BATCH at a time.
 * 0, or -1 with a message. */
static int produce_batch(producer_t *p, const commune_t *commune, int count)
{
    int64_t started = bench_now_ns();
    for (int i = 0; i < count; i += PRODUCER_BATCH) {
        int m = count - i < PRODUCER_BATCH ? count - i : PRODUCER_BATCH;
        if (p->next + (size_t)m > p->sink->capacity) {
            fprintf(stderr, PROGRAM ": more events than planned\n");
            return -1;
        }
        txn_t *txns[PRODUCER_BATCH];
        uint8_t *replies[PRODUCER_BATCH];
        txn_batch_item_t items[PRODUCER_BATCH];
        memset(items, 0, sizeof items);
        int made = 0;
        for (; made < m; made++) {
            size_t len = 0;
            txns[made] = event_txn(p, commune, &replies[made], &len);
            if (!txns[made])
                break;
            items[made].txn = txns[made];
            items[made].reply = replies[made];
            items[made].reply_len = len;
        }
        if (made == m)
            txn_commit_batch(items, (size_t)m, p->store);
        bool ok = made == m;
        for (int j = 0; j < made; j++) {
            ok = ok && items[j].result == TXN_COMMITTED;
            free(items[j].stored);
            free(replies[j]);
            txn_destroy(&txns[j]);
        }
        if (!ok) {
            fprintf(stderr, PROGRAM ": an event was not committed: %s\n",
                    store_last_error(p->store));
            return -1;
        }
        p->committed += (uint64_t)m;
    }
    p->commit_s += (double)(bench_now_ns() - started) / 1e9;
    return 0;
}

/* Commits one event and notes when the commit returned. */
static int produce_one(producer_t *p, const commune_t *commune)
{
    if (p->next >= p->sink->capacity) {
        fprintf(stderr, PROGRAM ": more events than planned\n");
        return -1;
    }
    size_t index = p->next, len = 0;
    uint8_t *reply = NULL;
    txn_t *txn = event_txn(p, commune, &reply, &len);
    if (!txn)
        return -1;
    int64_t started = bench_now_ns();
    txn_result_t res = txn_commit(txn, p->store, reply, len, NULL, NULL, NULL);
    p->commit_ns[index] = bench_now_ns();
    p->commit_ms[index] = (double)(p->commit_ns[index] - started) / 1e6;
    free(reply);
    txn_destroy(&txn);
    if (res != TXN_COMMITTED) {
        fprintf(stderr, PROGRAM ": an event was not committed (%d): %s\n", (int)res,
                store_last_error(p->store));
        return -1;
    }
    p->committed++;
    return 0;
}

/* ====================================================================== */
/* The bare limit: libcurl POSTs from one multi handle                    */
/* ====================================================================== */

typedef struct {
    /* in */
    const char *url;
    const char *body;
    size_t body_len;
    const char *webhook_id; /* the length of a real one; the sink does not know it */
    int concurrency;
    int total;
    bool pin;
    int cpu;
    /* out */
    int64_t started_ns;
    int completed;
    int failed;
    char error[CURL_ERROR_SIZE + 64];
} bare_t;

static size_t bare_discard(char *data, size_t size, size_t count, void *arg)
{
    (void)data;
    (void)arg;
    return size * count;
}

/* The headers the service sends, values of the same lengths. */
static struct curl_slist *bare_headers(const char *webhook_id)
{
    char h_id[128];
    snprintf(h_id, sizeof h_id, "webhook-id: %s", webhook_id);
    const char *lines[] = {
        "Content-Type: application/cloudevents+json",
        h_id,
        "webhook-timestamp: 1767225600",
        "webhook-signature: v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=",
        "Expect:",
    };
    struct curl_slist *list = NULL;
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        struct curl_slist *more = curl_slist_append(list, lines[i]);
        if (!more) {
            curl_slist_free_all(list);
            return NULL;
        }
        list = more;
    }
    return list;
}

static CURL *bare_easy(const bare_t *bare, struct curl_slist *headers)
{
    CURL *e = curl_easy_init();
    if (!e)
        return NULL;
    bool ok =
        curl_easy_setopt(e, CURLOPT_URL, bare->url) == CURLE_OK &&
        curl_easy_setopt(e, CURLOPT_POST, 1L) == CURLE_OK &&
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, bare->body) == CURLE_OK &&
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)bare->body_len) == CURLE_OK &&
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers) == CURLE_OK &&
        curl_easy_setopt(e, CURLOPT_USERAGENT, "passerelle-notifications/bench") == CURLE_OK &&
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
        curl_easy_setopt(e, CURLOPT_PROXY, "") == CURLE_OK &&
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)CALL_TIMEOUT_MS) == CURLE_OK &&
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, bare_discard) == CURLE_OK;
    if (!ok) {
        curl_easy_cleanup(e);
        return NULL;
    }
    return e;
}

/* The thread: total POSTs, concurrency of them in flight, each handle put
 * back as soon as its transfer ends, so that the connections stay open. */
static void *bare_run(void *arg)
{
    bare_t *bare = arg;
    if (bench_pin(bare->pin, bare->cpu) != 0) {
        snprintf(bare->error, sizeof bare->error, "cannot pin");
        bare->failed = bare->total;
        return NULL;
    }
    CURLM *multi = curl_multi_init();
    struct curl_slist *headers = bare_headers(bare->webhook_id);
    CURL **handles = calloc((size_t)bare->concurrency, sizeof *handles);
    int started = 0, made = 0;
    if (multi && headers && handles)
        for (; made < bare->concurrency; made++)
            if (!(handles[made] = bare_easy(bare, headers)))
                break;
    if (made < bare->concurrency) {
        snprintf(bare->error, sizeof bare->error, "cannot set up libcurl");
        bare->failed = bare->total;
        goto out;
    }
    bare->started_ns = bench_now_ns();
    for (int i = 0; i < made && started < bare->total; i++, started++)
        curl_multi_add_handle(multi, handles[i]);
    while (bare->completed + bare->failed < started) {
        int running = 0;
        curl_multi_perform(multi, &running);
        CURLMsg *msg;
        int left = 0;
        while ((msg = curl_multi_info_read(multi, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            CURL *e = msg->easy_handle;
            CURLcode result = msg->data.result;
            long status = 0;
            curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
            if (result == CURLE_OK && status == 200) {
                bare->completed++;
            } else {
                bare->failed++;
                snprintf(bare->error, sizeof bare->error, "%s, HTTP %ld",
                         curl_easy_strerror(result), status);
            }
            curl_multi_remove_handle(multi, e);
            if (started < bare->total) {
                curl_multi_add_handle(multi, e);
                started++;
            }
        }
        if (bare->completed + bare->failed < started)
            curl_multi_poll(multi, NULL, 0, 100, NULL);
    }
out:
    for (int i = 0; i < made; i++) {
        curl_multi_remove_handle(multi, handles[i]);
        curl_easy_cleanup(handles[i]);
    }
    free(handles);
    curl_slist_free_all(headers);
    if (multi)
        curl_multi_cleanup(multi);
    return NULL;
}

/* ====================================================================== */
/* The service                                                            */
/* ====================================================================== */

/* Creates a webhook subscription to url for every convention.envisaged
 * (any territory). The type filter keeps the service's own events
 * (subscription.created, ...) away from the sink. 0 or -1. */
static int subscribe(client_t *client, const char *url)
{
    char *types[] = {EVENT_TYPE};
    Passerelle__SubscriptionCreateRequest req = PASSERELLE__SUBSCRIPTION_CREATE_REQUEST__INIT;
    req.has_channel = true;
    req.channel = PASSERELLE__CHANNEL__CHANNEL_WEBHOOK;
    req.url = (char *)url;
    req.n_event_types = 1;
    req.event_types = types;
    req.description = "notifications benchmark";
    Passerelle__Reply *reply = NULL;
    if (client_call(client, "subscription.create", &req.base, NULL, &reply) != 0) {
        fprintf(stderr, PROGRAM ": subscription.create: no reply\n");
        return -1;
    }
    int rc = 0;
    if (reply->status != PASSERELLE__STATUS__STATUS_OK) {
        fprintf(stderr, PROGRAM ": subscription.create: status %d %s\n", reply->status,
                reply->message ? reply->message : "");
        rc = -1;
    }
    passerelle__reply__free_unpacked(reply, NULL);
    return rc;
}

/* The service's own latency figure for the type in territory. 0 or -1. */
static int latency_get(client_t *client, const char *territory, Passerelle__LatencyReply **out)
{
    Passerelle__LatencyRequest req = PASSERELLE__LATENCY_REQUEST__INIT;
    req.territory = (char *)territory;
    req.event_type = EVENT_TYPE;
    Passerelle__Reply *reply = NULL;
    *out = NULL;
    if (client_call(client, "latency.get", &req.base, NULL, &reply) != 0) {
        fprintf(stderr, PROGRAM ": latency.get: no reply\n");
        return -1;
    }
    if (reply->status == PASSERELLE__STATUS__STATUS_OK && reply->has_body)
        *out = passerelle__latency_reply__unpack(NULL, reply->body.len, reply->body.data);
    if (!*out)
        fprintf(stderr, PROGRAM ": latency.get: status %d %s\n", reply->status,
                reply->message ? reply->message : "");
    passerelle__reply__free_unpacked(reply, NULL);
    return *out ? 0 : -1;
}

/* The CloudEvent JSON the service sends for the last event of the stream:
 * the bare POSTs carry a body of its size. malloc'd, or NULL. */
static char *last_event_body(store_t *store, size_t *len)
{
    char *body = NULL;
    redisReply *r = NULL;
    if (store_command(store, &r, "XREVRANGE reservations:events + - COUNT 1") == STORE_OK &&
        r->type == REDIS_REPLY_ARRAY && r->elements == 1) {
        const redisReply *fields = r->element[0]->element[1];
        for (size_t f = 0; f + 1 < fields->elements; f += 2)
            if (strcmp(fields->element[f]->str, "event") == 0) {
                Passerelle__Event *ev =
                    passerelle__event__unpack(NULL, fields->element[f + 1]->len,
                                              (const uint8_t *)fields->element[f + 1]->str);
                if (ev)
                    body = cloudevent_json(ev, len);
                if (ev)
                    passerelle__event__free_unpacked(ev, NULL);
            }
    }
    if (r)
        freeReplyObject(r);
    return body;
}

/* ====================================================================== */
/* Redis work per event                                                   */
/* ====================================================================== */

#define CMDSTATS_MAX 64

typedef struct {
    char name[48];
    double calls, usec;
} cmdstat_t;

typedef struct {
    cmdstat_t cmds[CMDSTATS_MAX];
    int count;
} cmdstats_t;

static cmdstat_t *cmdstats_slot(cmdstats_t *stats, const char *name)
{
    for (int i = 0; i < stats->count; i++)
        if (strcmp(stats->cmds[i].name, name) == 0)
            return &stats->cmds[i];
    if (stats->count == CMDSTATS_MAX)
        return NULL;
    cmdstat_t *slot = &stats->cmds[stats->count++];
    memset(slot, 0, sizeof *slot);
    snprintf(slot->name, sizeof slot->name, "%s", name);
    return slot;
}

/* Adds sign x INFO commandstats into stats: called with -1 before and +1
 * after a measured stretch, it sums what happened during it. */
static void cmdstats_add(store_t *store, cmdstats_t *stats, double sign)
{
    redisReply *r = NULL;
    if (store_command(store, &r, "INFO commandstats") != STORE_OK ||
        r->type != REDIS_REPLY_STRING) {
        if (r)
            freeReplyObject(r);
        return;
    }
    char *save = NULL;
    for (char *line = strtok_r(r->str, "\r\n", &save); line; line = strtok_r(NULL, "\r\n", &save)) {
        char name[48];
        double calls = 0, usec = 0;
        if (sscanf(line, "cmdstat_%47[^:]:calls=%lf,usec=%lf", name, &calls, &usec) != 3)
            continue;
        /* EXEC's time is that of the calls it runs, counted under their
         * own names already (a batch of script calls, store.h). */
        if (strcmp(name, "exec") == 0 || strcmp(name, "multi") == 0)
            continue;
        cmdstat_t *slot = cmdstats_slot(stats, name);
        if (slot) {
            slot->calls += sign * calls;
            slot->usec += sign * usec;
        }
    }
    freeReplyObject(r);
}

static int cmdstat_by_usec(const void *a, const void *b)
{
    double x = ((const cmdstat_t *)a)->usec, y = ((const cmdstat_t *)b)->usec;
    return (x < y) - (x > y);
}

/* INFO commandstats counts the commands a script calls under their own
 * names as well as the script's EVALSHA, whose time includes theirs: it
 * tells which commands the scripts spend on, not a total. The total, and
 * which script it goes to, come from SLOWLOG with a threshold of 0 over a
 * round of its own (logging costs Redis a little, so that round is not one
 * of the timed ones): it logs the commands clients sent, each with its
 * execution time, and the scripts' inner commands not at all. A script is
 * told from the others by its first key. */
static const char *slowlog_label(const redisReply *args)
{
    if (args->type != REDIS_REPLY_ARRAY || args->elements < 1 ||
        args->element[0]->type != REDIS_REPLY_STRING)
        return "?";
    const char *cmd = args->element[0]->str;
    if (strcasecmp(cmd, "evalsha") != 0 && strcasecmp(cmd, "eval") != 0)
        return cmd;
    const char *key = args->elements >= 4 && args->element[3]->type == REDIS_REPLY_STRING
                          ? args->element[3]->str
                          : "";
    long nkeys = args->elements >= 3 ? strtol(args->element[2]->str, NULL, 10) : 0;
    if (strstr(key, ":done:notifications:"))
        return "script fanout (route)";
    if (strncmp(key, "notifications:fanout:", 21) == 0)
        return "script routing lease";
    if (strcmp(key, "notifications:duesubs") == 0)
        return "script deliver (pass)";
    /* The scripts of versions before one per pass. */
    if (strcmp(key, "notifications:due") == 0)
        return nkeys == 3 ? "script claim" : "script outcome";
    if (strncmp(key, "notifications:", 14) == 0)
        return strncmp(key, "notifications:digest:", 21) == 0 ? "script digest"
                                                              : "script (notifications, other)";
    return "script commit (producer)";
}

/* Switches the log on (threshold 0 us, room for what a round logs). */
static void slowlog_start(store_t *store)
{
    const char *cmds[] = {"CONFIG SET slowlog-max-len 200000",
                          "CONFIG SET slowlog-log-slower-than 0", "SLOWLOG RESET"};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        redisReply *r = NULL;
        if (store_command(store, &r, cmds[i]) == STORE_OK)
            freeReplyObject(r);
    }
}

/* Adds what the log holds into stats (calls, usec per label), leaving out
 * the bench's own commands on this connection, and switches it back to
 * Redis's defaults. */
static void slowlog_collect(store_t *store, cmdstats_t *stats)
{
    redisReply *r = NULL;
    if (store_command(store, &r, "CONFIG SET slowlog-log-slower-than 10000") == STORE_OK)
        freeReplyObject(r);
    r = NULL;
    if (store_command(store, &r, "SLOWLOG GET -1") == STORE_OK && r->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < r->elements; i++) {
            const redisReply *e = r->element[i];
            /* [id, unix time, duration us, [args], client addr, client name] */
            if (e->type != REDIS_REPLY_ARRAY || e->elements < 4)
                continue;
            /* A script's own commands are logged too (Redis 7), from
             * its fake client, "?:0": they are in the script's time. */
            if (e->elements >= 5 && e->element[4]->type == REDIS_REPLY_STRING &&
                strcmp(e->element[4]->str, "?:0") == 0)
                continue;
            const redisReply *args = e->element[3];
            const char *label = slowlog_label(args);
            if (strcasecmp(label, "slowlog") == 0 || strcasecmp(label, "config") == 0)
                continue;
            cmdstat_t *slot = cmdstats_slot(stats, label);
            if (slot) {
                slot->calls += 1;
                slot->usec += (double)e->element[2]->integer;
            }
        }
    }
    if (r)
        freeReplyObject(r);
    const char *cmds[] = {"SLOWLOG RESET", "CONFIG SET slowlog-max-len 128"};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        r = NULL;
        if (store_command(store, &r, cmds[i]) == STORE_OK)
            freeReplyObject(r);
    }
}

/* ====================================================================== */
/* Measuring                                                              */
/* ====================================================================== */

/* A throughput figure: deliveries and the time they took, summed over the
 * rounds; missing counts those that had not come when the wait gave up. */
typedef struct {
    uint64_t deliveries, missing;
    double seconds;
} rate_t;

static double rate_per_s(const rate_t *r)
{
    return r->seconds > 0 ? (double)r->deliveries / r->seconds : 0;
}

typedef struct {
    const options_t *opt;
    sink_t *sink;
    producer_t *producer;
    client_t *client;
    char *body; /* a real event's CloudEvent JSON, malloc'd */
    size_t body_len;
    char webhook_id[64];
    int phases; /* phases used so far */
} run_t;

static int next_phase(run_t *run)
{
    if (run->phases == PHASES_MAX) {
        fprintf(stderr, PROGRAM ": too many phases\n");
        exit(1);
    }
    run->producer->phase = run->phases;
    return run->phases++;
}

/* One bare round: total POSTs, concurrency in flight, timed from the
 * first start to the sink's receipt of the last. */
static int measure_bare(run_t *run, int concurrency, int total, rate_t *out)
{
    char url[96];
    snprintf(url, sizeof url, "%s/bare", run->sink->url);
    bare_t bare = {
        .url = url,
        .body = run->body,
        .body_len = run->body_len,
        .webhook_id = run->webhook_id,
        .concurrency = concurrency,
        .total = total,
        .pin = run->opt->pin,
        .cpu = run->opt->cpu_service,
    };
    uint64_t before = sink_other(run->sink);
    pthread_t thread;
    if (pthread_create(&thread, NULL, bare_run, &bare) != 0) {
        fprintf(stderr, PROGRAM ": cannot start the bare client\n");
        return -1;
    }
    pthread_join(thread, NULL);
    if (bare.failed > 0 || bare.completed != total ||
        sink_other(run->sink) - before < (uint64_t)total) {
        fprintf(stderr, PROGRAM ": bare POSTs: %d of %d answered 200 (%s)\n", bare.completed, total,
                bare.error[0] ? bare.error : "the sink saw fewer");
        return -1;
    }
    out->deliveries += (uint64_t)total;
    out->seconds += (double)(sink_other_last_ns(run->sink) - bare.started_ns) / 1e9;
    return 0;
}

/* One service round: events committed as fast as the producer pipelines
 * them, timed from the first commit to the sink's receipt of the last of
 * their events x subs deliveries. Deliveries that do not come (the
 * service put them off for a retry) are counted as missing, and the time
 * runs to the last that came. -1 only on a failure of the bench. */
static int measure_service(run_t *run, const commune_t *commune, int events, int subs, rate_t *out)
{
    int phase = next_phase(run);
    uint64_t target = (uint64_t)events * (uint64_t)subs;
    int64_t started = bench_now_ns();
    if (produce_batch(run->producer, commune, events) != 0)
        return -1;
    sink_wait(run->sink, phase, target, "throughput");
    uint64_t got = sink_matched(run->sink, phase);
    out->deliveries += got;
    out->missing += target - got;
    if (got > 0)
        out->seconds += (double)(sink_last_ns(run->sink, phase) - started) / 1e9;
    return 0;
}

/* The producer alone: count events of the same shape, committed the same
 * way, to a stream nobody reads, then deleted. No delivery path can carry
 * events faster than they can be committed, so this rate over the bare
 * POST rate is a ceiling for the end-to-end ratio on this machine. Its
 * phase is never waited for. Events per second, or -1. */
static double measure_producer_alone(run_t *run, const commune_t *commune, int count)
{
    producer_t *p = run->producer;
    next_phase(run);
    double spent = p->commit_s;
    uint64_t committed = p->committed;
    p->stream = UNREAD_STREAM;
    int rc = produce_batch(p, commune, count);
    p->stream = SERVICE_STREAM;
    double seconds = p->commit_s - spent;
    uint64_t made = p->committed - committed;
    p->commit_s = spent;
    p->committed = committed;
    redisReply *r = NULL;
    if (store_command(p->store, &r, "DEL %s", UNREAD_STREAM) == STORE_OK)
        freeReplyObject(r);
    return rc == 0 && seconds > 0 ? (double)made / seconds : -1;
}

/* Warm-up: events through every subscription, one at a time, each waited
 * for: connections open and caches filled without a burst, which is what
 * the measured rounds are for. */
static int warm_up(run_t *run, int events, int subs)
{
    int phase = next_phase(run);
    for (int i = 0; i < events; i++)
        if (produce_one(run->producer, &COMMUNE_WARMUP) != 0 ||
            !sink_wait(run->sink, phase, (uint64_t)(i + 1) * (uint64_t)subs, "warm-up"))
            return -1;
    return 0;
}

typedef struct {
    int events;
    uint64_t missing;
    double p50_ms, p99_ms, max_ms;
    int behind; /* events sent more than one interval after their slot */
    double commit_p50_ms, commit_p99_ms, commit_max_ms; /* txn_commit itself */
    Passerelle__LatencyReply *service;
} latency_t;

/* The steady run: one event every 1/rate s on an absolute schedule, each
 * committed alone; then every latency from commit to receipt. An event
 * that never came counts as the longest wait of all (the run's length). */
static int measure_latency(run_t *run, latency_t *lat)
{
    const options_t *opt = run->opt;
    int phase = next_phase(run);
    int count = opt->rate * opt->seconds;
    size_t first = run->producer->next;
    int64_t interval_ns = 1000000000LL / opt->rate;
    int64_t start = bench_now_ns() + interval_ns;
    for (int i = 0; i < count; i++) {
        int64_t slot = start + (int64_t)i * interval_ns;
        int64_t now = bench_now_ns();
        if (now < slot) {
            struct timespec ts = {.tv_sec = (time_t)((slot - now) / 1000000000LL),
                                  .tv_nsec = (long)((slot - now) % 1000000000LL)};
            nanosleep(&ts, NULL);
        } else if (now - slot > interval_ns) {
            lat->behind++;
        }
        if (produce_one(run->producer, &COMMUNE_LATENCY) != 0 || zsys_interrupted)
            return -1;
    }
    sink_wait(run->sink, phase, (uint64_t)count, "latency");
    int64_t end = bench_now_ns();
    double *ms = calloc((size_t)count, sizeof *ms);
    if (!ms)
        return -1;
    for (int i = 0; i < count; i++) {
        size_t e = first + (size_t)i;
        int64_t received = __atomic_load_n(&run->sink->first_ns[e], __ATOMIC_ACQUIRE);
        if (received == 0) {
            lat->missing++;
            received = end;
        }
        int64_t d = received - run->producer->commit_ns[e];
        /* The sink may note an event a moment before the producer's thread
         * is back from its commit: that is no latency at all. */
        ms[i] = d > 0 ? (double)d / 1e6 : 0;
    }
    bench_samples_summarise(ms, (size_t)count, &lat->p50_ms, &lat->p99_ms);
    lat->max_ms = count > 0 ? ms[count - 1] : 0;
    lat->events = count;
    /* The durable write alone, for scale: a stall of the disk shows here
     * as much as in the delivery. */
    memcpy(ms, run->producer->commit_ms + first, (size_t)count * sizeof *ms);
    bench_samples_summarise(ms, (size_t)count, &lat->commit_p50_ms, &lat->commit_p99_ms);
    lat->commit_max_ms = count > 0 ? ms[count - 1] : 0;
    free(ms);
    return latency_get(run->client, COMMUNE_LATENCY.territory, &lat->service);
}

/* Deliveries that came more than once: at least once allows them, the
 * report shows them. */
static uint64_t repeats(const sink_t *sink, size_t from, size_t to, uint32_t expected)
{
    uint64_t n = 0;
    for (size_t i = from; i < to; i++) {
        uint32_t hits = __atomic_load_n(&sink->hits[i], __ATOMIC_ACQUIRE);
        if (hits > expected)
            n += hits - expected;
    }
    return n;
}

/* What the service's log says of its attempts: each one is a JSON line
 * "delivery attempt" with its outcome and error. */
typedef struct {
    uint64_t attempts, delivered, retried, refused;
} attempts_t;

#define OUTBOX_REFUSED "the outbox refused the transfer"

static void attempts_read(const char *log_path, attempts_t *out)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(log_path, "r");
    if (!f)
        return;
    char *line = NULL;
    size_t size = 0;
    while (getline(&line, &size, f) > 0) {
        if (!strstr(line, "\"delivery attempt\""))
            continue;
        json_t *doc = json_loads(line, 0, NULL);
        const char *outcome = json_string_value(json_object_get(doc, "outcome"));
        const char *error = json_string_value(json_object_get(doc, "error"));
        out->attempts++;
        if (outcome && strcmp(outcome, "delivered") == 0)
            out->delivered++;
        else if (outcome && strcmp(outcome, "retry") == 0)
            out->retried++;
        if (error && strcmp(error, OUTBOX_REFUSED) == 0)
            out->refused++;
        json_decref(doc);
    }
    free(line);
    fclose(f);
}

/* ====================================================================== */
/* Report                                                                 */
/* ====================================================================== */

typedef struct {
    rate_t bare_narrow, service_narrow, bare_wide, service_wide;
    int narrow_concurrency, wide_concurrency;
    double producer_rate;
    double producer_alone_rate; /* no consumer: the ceiling */
    latency_t latency;
    cmdstats_t cmdstats; /* over the 1-subscription service rounds */
    uint64_t cmdstats_deliveries;
    cmdstats_t slowlog; /* the commands clients sent, over a round of its own */
    uint64_t slowlog_deliveries;
    uint64_t repeated;
    attempts_t attempts;
} results_t;

static void print_rate(const char *label, const rate_t *r)
{
    printf("  %-44s %12.0f %10llu", label, rate_per_s(r), (unsigned long long)r->deliveries);
    if (r->missing)
        printf("  (%llu more still waiting for a retry)", (unsigned long long)r->missing);
    printf("\n");
}

static void report(const options_t *opt, const run_t *run, results_t *res)
{
    double narrow = bench_ratio(rate_per_s(&res->service_narrow), rate_per_s(&res->bare_narrow));
    double wide = bench_ratio(rate_per_s(&res->service_wide), rate_per_s(&res->bare_wide));
    const latency_t *lat = &res->latency;

    if (opt->pin)
        printf(PROGRAM ": vCPUs: bench (producer, sink) %d, redis-server %d, service and bare "
                       "curl %d\n",
               opt->cpu_bench, opt->cpu_redis, opt->cpu_service);
    else
        printf(PROGRAM ": not pinned (--pin to pin)\n");
    printf("body: %s CloudEvent JSON, %zu B; per-endpoint bound %d; redis AOF appendfsync "
           "always\n",
           EVENT_TYPE, run->body_len, opt->per_endpoint);
    printf("throughput, %d rounds, bare and service alternating (producer: pipelines of %d, "
           "%.0f events/s)\n",
           ROUNDS, PRODUCER_BATCH, res->producer_rate);
    printf("  %-44s %12s %10s\n", "", "deliveries/s", "count");
    char label[64];
    snprintf(label, sizeof label, "bare libcurl, %d in flight", res->narrow_concurrency);
    print_rate(label, &res->bare_narrow);
    print_rate("passerelle, 1 subscription", &res->service_narrow);
    snprintf(label, sizeof label, "bare libcurl, %d in flight", res->wide_concurrency);
    print_rate(label, &res->bare_wide);
    print_rate("passerelle, 8 subscriptions (8 per event)", &res->service_wide);
    printf("  %-44s %12.0f %10d\n", "producer alone, commits only (no consumer)",
           res->producer_alone_rate, opt->events);
    printf("1 subscription / bare:   %.2f  (aim >= %.2f: %s)\n", narrow, AIM_RATIO,
           bench_verdict(narrow >= AIM_RATIO && res->service_narrow.missing == 0));
    double ceiling = bench_ratio(res->producer_alone_rate, rate_per_s(&res->bare_narrow));
    printf("ceiling, producer alone / bare: %.2f  (no delivery path can beat its events' "
           "commits)\n",
           ceiling);
    printf("8 subscriptions / bare:  %.2f\n", wide);
    printf("latency, commit to receipt: %d events at %d/s, 1 subscription%s\n", lat->events,
           opt->rate, lat->behind ? " (the producer fell behind its schedule)" : "");
    printf("  %-44s %8s %8s %8s %8s\n", "", "count", "p50 ms", "p99 ms", "max ms");
    printf("  %-44s %8d %8.2f %8.2f %8.2f\n", "bench: txn_commit returned -> sink", lat->events,
           lat->p50_ms, lat->p99_ms, lat->max_ms);
    printf("  %-44s %8d %8.2f %8.2f %8.2f\n", "bench: txn_commit itself (for scale)", lat->events,
           lat->commit_p50_ms, lat->commit_p99_ms, lat->commit_max_ms);
    if (lat->service)
        printf("  %-44s %8llu %8.2f %8.2f %8.2f\n", "service latency.get: event time -> 2xx",
               (unsigned long long)lat->service->count, lat->service->p50_ms, lat->service->p99_ms,
               lat->service->max_ms);
    if (lat->missing)
        printf("  %llu events had not arrived when the wait gave up (counted at its end)\n",
               (unsigned long long)lat->missing);
    printf("p99 commit to receipt:   %.2f ms  (aim < %.0f ms: %s)\n", lat->p99_ms, AIM_P99_MS,
           bench_verdict(lat->p99_ms < AIM_P99_MS));
    const attempts_t *a = &res->attempts;
    printf("service attempts (its log): %llu, %llu delivered, %llu put off for a retry "
           "(%llu refused by its own outbox bound)\n",
           (unsigned long long)a->attempts, (unsigned long long)a->delivered,
           (unsigned long long)a->retried, (unsigned long long)a->refused);

    /* Redis's time per delivery, 1 subscription, by command sent (the
     * producer's commit, one script call per event, included), from the
     * logged round; then what the scripts call, from the timed rounds. */
    cmdstats_t *sl = &res->slowlog;
    qsort(sl->cmds, (size_t)sl->count, sizeof sl->cmds[0], cmdstat_by_usec);
    double per = res->slowlog_deliveries ? (double)res->slowlog_deliveries : 1;
    double total_usec = 0;
    for (int i = 0; i < sl->count; i++)
        total_usec += sl->cmds[i].usec;
    printf("redis per delivery, 1 subscription (the producer's commit included): %.1f us in "
           "commands (SLOWLOG, a round of %llu)\n",
           total_usec / per, (unsigned long long)res->slowlog_deliveries);
    double total_usec_sent = total_usec / per;
    for (int i = 0; i < sl->count && i < 10; i++)
        if (sl->cmds[i].calls > 0)
            printf("  %-30s %6.2f calls %8.1f us  (%.1f us a call)\n", sl->cmds[i].name,
                   sl->cmds[i].calls / per, sl->cmds[i].usec / per,
                   sl->cmds[i].usec / sl->cmds[i].calls);
    cmdstats_t *cs = &res->cmdstats;
    qsort(cs->cmds, (size_t)cs->count, sizeof cs->cmds[0], cmdstat_by_usec);
    per = res->cmdstats_deliveries ? (double)res->cmdstats_deliveries : 1;
    printf("inside them, per delivery (INFO commandstats over the timed rounds):\n");
    int shown = 0;
    for (int i = 0; i < cs->count && shown < 8; i++)
        if (cs->cmds[i].calls > 0 && strcmp(cs->cmds[i].name, "evalsha") != 0) {
            printf("  %-30s %6.2f calls %8.1f us\n", cs->cmds[i].name, cs->cmds[i].calls / per,
                   cs->cmds[i].usec / per);
            shown++;
        }
    if (res->repeated)
        printf("NOTE: %llu deliveries came more than once (at least once, by design)\n",
               (unsigned long long)res->repeated);

    json_t *service =
        lat->service ? json_pack("{s:I, s:f, s:f, s:f}", "count", (json_int_t)lat->service->count,
                                 "p50_ms", lat->service->p50_ms, "p99_ms", lat->service->p99_ms,
                                 "max_ms", lat->service->max_ms)
                     : json_null();
    json_t *root = json_pack(
        "{s:s, s:b, s:i, s:i, s:{s:f, s:f, s:f, s:f, s:I, s:I}, s:{s:f, s:f, s:f}, "
        "s:{s:i, s:i, s:f, s:f, s:f, s:f, s:I, s:o}, s:{s:I, s:I, s:I, s:I}, s:I}",
        "bench", "notifications", "pinned", opt->pin, "per_endpoint", opt->per_endpoint,
        "body_bytes", (int)run->body_len, "throughput", "bare_1", rate_per_s(&res->bare_narrow),
        "service_1", rate_per_s(&res->service_narrow), "bare_8", rate_per_s(&res->bare_wide),
        "service_8", rate_per_s(&res->service_wide), "missing_1",
        (json_int_t)res->service_narrow.missing, "missing_8", (json_int_t)res->service_wide.missing,
        "ratios", "subs_1", narrow, "subs_8", wide, "producer_alone_ceiling", ceiling, "latency",
        "events", lat->events, "rate", opt->rate, "p50_ms", lat->p50_ms, "p99_ms", lat->p99_ms,
        "max_ms", lat->max_ms, "commit_p99_ms", lat->commit_p99_ms, "missing",
        (json_int_t)lat->missing, "service", service, "attempts", "total", (json_int_t)a->attempts,
        "delivered", (json_int_t)a->delivered, "retried", (json_int_t)a->retried, "refused",
        (json_int_t)a->refused, "repeated", (json_int_t)res->repeated);
    json_object_set_new(root, "redis_us_per_delivery", json_real(total_usec_sent));
    bench_print_json(root);
}

/* ====================================================================== */
/* main                                                                   */
/* ====================================================================== */

/* Runs every phase and reports. 0 when every delivery came; 1 when some
 * were still waiting for a retry (reported); -1 on a failure. */
static int run_all(const options_t *opt, bench_stack_t *stack, sink_t *sink, results_t *res)
{
    int rc = -1;
    store_config_t scfg;
    harness_redis_config(&stack->redis, &scfg);
    scfg.command_timeout_ms = CALL_TIMEOUT_MS;
    store_t *store = store_new(&scfg);
    store_t *stats_store = store_new(&scfg);
    client_t *client =
        harness_client(stack->service.endpoint, stack->keys, "admin", CALL_TIMEOUT_MS, 0);
    int wide_events = opt->events / 4 > ROUNDS ? opt->events / 4 : ROUNDS;
    producer_t producer = {.store = store, .sink = sink, .stream = SERVICE_STREAM};
    producer.commit_ns = calloc(sink->capacity, sizeof *producer.commit_ns);
    producer.commit_ms = calloc(sink->capacity, sizeof *producer.commit_ms);
    run_t run = {.opt = opt, .sink = sink, .producer = &producer, .client = client};
    if (!store || !stats_store || !client || !producer.commit_ns || !producer.commit_ms)
        goto done;

    /* One subscription; connections and caches warmed. */
    char url[128];
    snprintf(url, sizeof url, "%s/hook/0", sink->url);
    if (subscribe(client, url) != 0 || warm_up(&run, WARMUP_EVENTS, 1) != 0)
        goto done;

    /* 2. Latency first, on a quiet service. */
    if (measure_latency(&run, &res->latency) != 0)
        goto done;

    /* 1. Throughput, 1 subscription. */
    run.body = last_event_body(store, &run.body_len);
    if (!run.body) {
        fprintf(stderr, PROGRAM ": cannot read an event back from the stream\n");
        goto done;
    }
    /* As long as a real one ("msg_" + an event id), and unknown to the sink. */
    snprintf(run.webhook_id, sizeof run.webhook_id, "bare_%s", sink->ids[0] + 1);
    res->narrow_concurrency =
        opt->per_endpoint < opt->max_in_flight ? opt->per_endpoint : opt->max_in_flight;
    res->producer_alone_rate = measure_producer_alone(&run, &COMMUNE_NARROW, opt->events);
    if (res->producer_alone_rate < 0)
        goto done;
    producer.commit_s = 0;
    uint64_t committed = producer.committed;
    size_t mark = producer.next;
    for (int r = 0; r < ROUNDS; r++) {
        int events = opt->events / ROUNDS + (r < opt->events % ROUNDS ? 1 : 0);
        if (measure_bare(&run, res->narrow_concurrency, events, &res->bare_narrow) != 0)
            goto done;
        cmdstats_add(stats_store, &res->cmdstats, -1);
        if (measure_service(&run, &COMMUNE_NARROW, events, 1, &res->service_narrow) != 0)
            goto done;
        cmdstats_add(stats_store, &res->cmdstats, +1);
        res->cmdstats_deliveries += (uint64_t)events;
    }
    res->producer_rate =
        producer.commit_s > 0 ? (double)(producer.committed - committed) / producer.commit_s : 0;
    /* Where Redis's time goes, per command sent, over one more round of
     * the same size: logged, so not timed. */
    {
        rate_t untimed = {0};
        int events = opt->events / ROUNDS;
        slowlog_start(stats_store);
        if (measure_service(&run, &COMMUNE_NARROW, events, 1, &untimed) != 0)
            goto done;
        slowlog_collect(stats_store, &res->slowlog);
        res->slowlog_deliveries = untimed.deliveries;
    }
    res->repeated += repeats(sink, mark, producer.next, 1);

    /* 1. Throughput, 8 subscriptions matching every event. */
    for (int s = 1; s < WIDE_SUBS; s++) {
        snprintf(url, sizeof url, "%s/hook/%d", sink->url, s);
        if (subscribe(client, url) != 0)
            goto done;
    }
    if (warm_up(&run, 8, WIDE_SUBS) != 0)
        goto done;
    res->wide_concurrency = WIDE_SUBS * opt->per_endpoint;
    if (res->wide_concurrency > opt->max_in_flight)
        res->wide_concurrency = opt->max_in_flight;
    mark = producer.next;
    for (int r = 0; r < ROUNDS; r++) {
        int events = wide_events / ROUNDS + (r < wide_events % ROUNDS ? 1 : 0);
        if (measure_bare(&run, res->wide_concurrency, events * WIDE_SUBS, &res->bare_wide) != 0 ||
            measure_service(&run, &COMMUNE_WIDE, events, WIDE_SUBS, &res->service_wide) != 0)
            goto done;
    }
    res->repeated += repeats(sink, mark, producer.next, WIDE_SUBS);
    attempts_read(stack->service.log_path, &res->attempts);
    report(opt, &run, res);
    if (zsys_interrupted)
        goto done;
    rc = res->service_narrow.missing || res->service_wide.missing || res->latency.missing ? 1 : 0;
    if (rc)
        fprintf(stderr,
                PROGRAM ": some deliveries had not come when the waits gave up: the service put "
                        "them off for a retry (see its attempts above)\n");
done:
    free(run.body);
    free(producer.commit_ns);
    free(producer.commit_ms);
    client_destroy(&client);
    store_destroy(&stats_store);
    store_destroy(&store);
    return rc;
}

int main(int argc, char *argv[])
{
    options_t opt;
    if (parse_options(argc, argv, &opt) != 0) {
        usage(stderr);
        return 2;
    }
    bench_init(PROGRAM, "notifybench");
    signal(SIGPIPE, SIG_IGN);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, PROGRAM ": cannot set up libcurl\n");
        return 1;
    }

    /* Every event the run commits: warm-ups, the latency run, the
     * producer alone, and the throughput rounds. */
    size_t capacity = (size_t)WARMUP_EVENTS + 8 + (size_t)opt.rate * (size_t)opt.seconds +
                      2 * (size_t)opt.events + (size_t)opt.events / ROUNDS +
                      (size_t)opt.events / 4 + 2 + 16;
    int rc = 1;
    sink_t sink;
    memset(&sink, 0, sizeof sink);
    results_t *res = calloc(1, sizeof *res);
    bench_stack_t stack;
    if (!res || bench_stack_init(&stack, "notifybench") != 0) {
        free(res);
        curl_global_cleanup();
        return 1;
    }
    /* The service as it ships, but for webhooks allowed to the loopback
     * and the feed on a port of its own. */
    char per_endpoint[64], max_in_flight[64];
    snprintf(per_endpoint, sizeof per_endpoint, "PASSERELLE_NOTIFY_PER_ENDPOINT=%d",
             opt.per_endpoint);
    snprintf(max_in_flight, sizeof max_in_flight, "PASSERELLE_NOTIFY_MAX_IN_FLIGHT=%d",
             opt.max_in_flight);
    char *env[] = {"PASSERELLE_NOTIFY_ALLOWLIST=127.0.0.1",
                   "PASSERELLE_FEED_ENDPOINT=tcp://127.0.0.1:*", per_endpoint, max_in_flight, NULL};
    if (bench_stack_start(&stack, "notifications", opt.pin, opt.cpu_redis, opt.cpu_service, env) !=
            0 ||
        bench_pin(opt.pin, opt.cpu_bench) != 0 || sink_start(&sink, capacity) != 0)
        goto done;
    rc = run_all(&opt, &stack, &sink, res) == 0 ? 0 : 1;
done:
    if (bench_stack_stop(&stack) != 0)
        rc = 1;
    sink_stop(&sink);
    if (res->latency.service)
        passerelle__latency_reply__free_unpacked(res->latency.service, NULL);
    free(res);
    bench_stack_remove(&stack);
    curl_global_cleanup();
    return rc;
}
