/* passerelle-bench: how far Passerelle is from the limits it is built on.
 *
 * Absolute times on a small shared machine are noise, so every figure is
 * set against limits measured in the same run, on the same processes:
 *   - the bare ZeroMQ round trip: a DEALER and a ROUTER echo server with
 *     CURVE, the service's own certificates, the client's framing; and the
 *     same with K clients at once;
 *   - bare Redis calls on the redis-server the service uses (AOF,
 *     appendfsync always): a read shaped like the service's record read;
 *     one commit.lua call with a transaction shaped like the measured write
 *     (same numbers of keys and arguments, similar bytes), which pays one
 *     fsync; the same calls pipelined 16 deep, a plain pipeline, which
 *     Redis reads a buffer at a time (about 20 KB), fsyncing after each
 *     read; the same 16 between MULTI and EXEC, as the service commits a
 *     batch (store.h), which share one fsync; and K of them so;
 *   - through the real service binary: unit.get, and reservation.create
 *     (STOCK, on private units registered, envisaged and signed in the
 *     setup, each reserved once), each from 1 client and from K at once.
 *     Without reservation.create in the service, unit.register stands in
 *     for it, and the output says so.
 * Then it prints a table, the ratios against the aims, and one JSON line
 * (the last line of stdout). The aims:
 *   - K-client writes reach at least 0.5 x the pipelined-script rate (the
 *     service commits the requests that wait together: group commit);
 *   - a 1-client write costs at most 1.3 x (round trip + one script call);
 *   - 1-client reads reach at least 0.7 x 1 / (round trip + read).
 *
 * Pinning. On this 2-vCPU machine a loopback round trip costs 2-4x more
 * across vCPUs than on one, so each process is pinned and every limit is
 * measured across the same vCPU boundary as the path it bounds: the echo
 * server runs on the service's vCPU, and the bare Redis calls are made from
 * the service's vCPU, where the service makes its own (the commit.lua
 * limits excepted: see measure()). Children inherit the
 * affinity of the thread that forks them, which is how redis-server and the
 * service, started by the test harness, get theirs.
 *
 * The echo server is a child process forked before this process touches
 * CZMQ, so that it has a ZeroMQ context (and I/O thread) of its own, on its
 * own vCPU, as the service does. */
#define _GNU_SOURCE
#include "bench_util.h"
#include "harness.h"

#include "envelope.pb-c.h"
#include "identity.h"
#include "ids.h"
#include "reservations.pb-c.h"
#include "store.h"
#include "txn.h"

#include <czmq.h>
#include <errno.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BENCH_DEFAULT_ITERATIONS 2000
#define BENCH_DEFAULT_CLIENTS    8
#define BENCH_MAX_CLIENTS        256
#define BENCH_ZMQ_FRAME_BYTES    200
#define BENCH_REDIS_VALUE_BYTES  300
/* Generous, so that a run under valgrind does not time out; a bench call
 * that gets no reply is a failure, never a silent retry. */
#define BENCH_CALL_TIMEOUT_MS 20000

/* ====================================================================== */
/* Options and pinning                                                    */
/* ====================================================================== */

typedef struct {
    int iterations;
    int clients;
    int warmup; /* per measurement, derived from iterations */
    bool pin;
    int cpu_bench, cpu_redis, cpu_service;
} options_t;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: passerelle-bench [--iterations N] [--clients K] [--cpus B,R,S | --no-pin]\n"
            "  --iterations N  measured calls per figure (default %d)\n"
            "  --clients K     concurrent clients of the write test (default %d)\n"
            "  --cpus B,R,S    vCPUs of the bench, redis-server and the service\n"
            "                  (default: first allowed vCPU, second, second)\n"
            "  --no-pin        leave scheduling to the kernel\n"
            "The service binary is looked for under $PASSERELLE_TEST_BIN_DIR\n"
            "(default: the build tree this was built in).\n",
            BENCH_DEFAULT_ITERATIONS, BENCH_DEFAULT_CLIENTS);
}

/* The default layout: the bench on the first allowed vCPU, the service and
 * redis-server on the second, so that the bench's calls cross vCPUs and
 * the service's Redis calls do not, for the limits as for Passerelle.
 * redis-server on the bench's vCPU was tried: about 1% of its calls, reads
 * included, then stalled for 4-8 ms, which drowned every p99. */
static void default_cpus(options_t *opt)
{
    bench_default_cpus(&opt->cpu_bench, &opt->cpu_service);
    opt->cpu_redis = opt->cpu_service;
}

static int parse_options(int argc, char *argv[], options_t *opt)
{
    opt->iterations = BENCH_DEFAULT_ITERATIONS;
    opt->clients = BENCH_DEFAULT_CLIENTS;
    opt->pin = true;
    default_cpus(opt);
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            usage(stdout);
            exit(0);
        } else if (strcmp(arg, "--no-pin") == 0) {
            opt->pin = false;
        } else if (strcmp(arg, "--iterations") == 0 && value) {
            if (!bench_parse_int(value, 1, 1000000, &opt->iterations))
                return -1;
            i++;
        } else if (strcmp(arg, "--clients") == 0 && value) {
            if (!bench_parse_int(value, 1, BENCH_MAX_CLIENTS, &opt->clients))
                return -1;
            i++;
        } else if (strcmp(arg, "--cpus") == 0 && value) {
            int *const cpus[] = {&opt->cpu_bench, &opt->cpu_redis, &opt->cpu_service};
            if (!bench_parse_cpus(value, cpus, 3))
                return -1;
            i++;
        } else {
            return -1;
        }
    }
    /* Enough to open connections, finish CURVE handshakes and fill caches,
     * without doubling the run. */
    opt->warmup = opt->iterations / 10;
    if (opt->warmup < 20)
        opt->warmup = 20;
    if (opt->warmup > 500)
        opt->warmup = 500;
    return 0;
}

/* ====================================================================== */
/* Samples                                                                */
/* ====================================================================== */

/* One measured figure: latencies in µs, and the wall time they took. */
typedef struct {
    const char *name;  /* JSON key */
    const char *label; /* table row */
    double *us;        /* owned */
    size_t count;
    double wall_s;
    double median_us, p99_us, ops_per_s;
} figure_t;

static int figure_init(figure_t *fig, const char *name, const char *label, size_t count)
{
    memset(fig, 0, sizeof *fig);
    fig->name = name;
    fig->label = label;
    fig->count = count;
    fig->us = calloc(count ? count : 1, sizeof *fig->us);
    return fig->us ? 0 : -1;
}

/* Sorts the samples in place (their order is not needed afterwards). */
static void figure_summarise(figure_t *fig)
{
    bench_samples_summarise(fig->us, fig->count, &fig->median_us, &fig->p99_us);
    fig->ops_per_s = fig->wall_s > 0 ? (double)fig->count / fig->wall_s : 0;
}

static void figure_free(figure_t *fig)
{
    free(fig->us);
    fig->us = NULL;
}

/* ====================================================================== */
/* The bare ZeroMQ limit: an echo server in a child process               */
/* ====================================================================== */

typedef struct {
    pid_t pid;
    int go_fd;    /* parent writes one byte once the keys exist */
    int ready_fd; /* child writes its port (int), or -1 */
} echo_t;

/* The child: a ROUTER bound with the service's certificate, behind a zauth
 * that accepts the same authorized keys, echoing every message back. Runs
 * until SIGTERM. Returns the process exit code. */
static int echo_serve(const char *keys_dir, int go_fd, int ready_fd)
{
    char go;
    if (read(go_fd, &go, 1) != 1)
        return 1;
    char authorized[512], server_cert[512];
    keydir_authorized_dir(keys_dir, authorized, sizeof authorized);
    keydir_server_cert_path(keys_dir, server_cert, sizeof server_cert);

    int port = -1, rc = 1;
    zcert_t *cert = zcert_load(server_cert);
    zactor_t *auth = zactor_new(zauth, NULL);
    zsock_t *router = NULL;
    if (cert && auth) {
        zstr_sendx(auth, "CURVE", authorized, NULL);
        zsock_wait(auth);
        router = zsock_new(ZMQ_ROUTER);
    }
    if (router) {
        zsock_set_linger(router, 0);
        zcert_apply(cert, router);
        zsock_set_curve_server(router, 1);
        zsock_set_zap_domain(router, "bench");
        /* Wakes the loop now and then so that SIGTERM is noticed. */
        zsock_set_rcvtimeo(router, 200);
        port = zsock_bind(router, "tcp://127.0.0.1:*");
    }
    if (write(ready_fd, &port, sizeof port) != (ssize_t)sizeof port)
        port = -1;
    if (port > 0) {
        rc = 0;
        while (!zsys_interrupted) {
            zmsg_t *msg = zmsg_recv(router);
            if (!msg)
                continue;
            if (zmsg_send(&msg, router) != 0)
                zmsg_destroy(&msg);
        }
    }
    zsock_destroy(&router);
    zactor_destroy(&auth);
    zcert_destroy(&cert);
    return rc;
}

/* Forks the echo server, pinned to cpu; it waits for echo_go. 0 or -1. */
static int echo_fork(echo_t *echo, const char *keys_dir, const options_t *opt, int cpu)
{
    int go[2], ready[2];
    if (pipe(go) != 0)
        return -1;
    if (pipe(ready) != 0) {
        close(go[0]);
        close(go[1]);
        return -1;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == -1) {
        close(go[0]);
        close(go[1]);
        close(ready[0]);
        close(ready[1]);
        return -1;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        close(go[1]);
        close(ready[0]);
        int rc = bench_pin(opt->pin, cpu) == 0 ? echo_serve(keys_dir, go[0], ready[1]) : 1;
        close(go[0]);
        close(ready[1]);
        /* exit (not _exit) runs CZMQ's own shutdown; the parent had not
         * started CZMQ when it forked, so nothing of its runs here. */
        exit(rc);
    }
    close(go[0]);
    close(ready[1]);
    echo->pid = pid;
    echo->go_fd = go[1];
    echo->ready_fd = ready[0];
    return 0;
}

/* Lets the echo server load the keys and bind; returns its port or -1. */
static int echo_go(echo_t *echo)
{
    char go = 'g';
    int port = -1;
    if (write(echo->go_fd, &go, 1) != 1)
        return -1;
    if (read(echo->ready_fd, &port, sizeof port) != (ssize_t)sizeof port)
        return -1;
    return port;
}

/* Stops the echo server; returns its exit code (non-zero: it failed, or
 * valgrind found something in it). */
static int echo_stop(echo_t *echo)
{
    if (echo->pid <= 0)
        return 0;
    close(echo->go_fd);
    close(echo->ready_fd);
    kill(echo->pid, SIGTERM);
    int status = 0;
    while (waitpid(echo->pid, &status, 0) == -1 && errno == EINTR)
        ;
    echo->pid = 0;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* A DEALER with the given client's certificate, framed as client.c frames
 * requests ([empty][payload]), so that the only difference left with a
 * Passerelle call is what the service does. */
typedef struct {
    zcert_t *server;
    zcert_t *cert;
    zsock_t *dealer;
    int sent;
} echo_client_t;

static void echo_client_close(echo_client_t *ec)
{
    zsock_destroy(&ec->dealer);
    zcert_destroy(&ec->cert);
    zcert_destroy(&ec->server);
}

static int echo_client_open(echo_client_t *ec, const char *keys_dir, const char *endpoint)
{
    char server_public[512], client_cert[512];
    memset(ec, 0, sizeof *ec);
    keydir_server_public_path(keys_dir, server_public, sizeof server_public);
    keydir_client_cert_path(keys_dir, "operator", client_cert, sizeof client_cert);
    ec->server = zcert_load(server_public);
    ec->cert = zcert_load(client_cert);
    if (!ec->server || !ec->cert) {
        fprintf(stderr, "passerelle-bench: cannot load certificates from %s\n", keys_dir);
        echo_client_close(ec);
        return -1;
    }
    ec->dealer = zsock_new(ZMQ_DEALER);
    if (!ec->dealer) {
        echo_client_close(ec);
        return -1;
    }
    zsock_set_linger(ec->dealer, 0);
    zsock_set_rcvtimeo(ec->dealer, BENCH_CALL_TIMEOUT_MS);
    zcert_apply(ec->cert, ec->dealer);
    zsock_set_curve_serverkey(ec->dealer, zcert_public_txt(ec->server));
    if (zsock_connect(ec->dealer, "%s", endpoint) != 0) {
        echo_client_close(ec);
        return -1;
    }
    return 0;
}

/* count round trips, each checked to come back intact; latencies into us
 * and the time taken added to *wall_s, unless us is NULL (warm-up). */
static int echo_round_trips(echo_client_t *ec, int count, double *us, double *wall_s)
{
    void *socket = zsock_resolve(ec->dealer);
    uint8_t payload[BENCH_ZMQ_FRAME_BYTES];
    int64_t started = bench_now_ns();
    for (int i = 0; i < count; i++) {
        /* A different payload each time, so that a stale echo shows. */
        memset(payload, 'a' + ec->sent++ % 26, sizeof payload);
        int64_t t0 = bench_now_ns();
        if (zmq_send(socket, "", 0, ZMQ_SNDMORE) != 0 ||
            zmq_send(socket, payload, sizeof payload, 0) != (int)sizeof payload)
            return -1;
        zmsg_t *msg = zmsg_recv(ec->dealer);
        int64_t t1 = bench_now_ns();
        zframe_t *last = msg ? zmsg_last(msg) : NULL;
        bool echoed = last && zframe_size(last) == sizeof payload &&
                      memcmp(zframe_data(last), payload, sizeof payload) == 0;
        zmsg_destroy(&msg);
        if (!echoed) {
            fprintf(stderr, "passerelle-bench: echo round trip %d failed\n", ec->sent);
            return -1;
        }
        if (us)
            us[i] = (double)(t1 - t0) / 1000.0;
    }
    if (us)
        *wall_s += (double)(bench_now_ns() - started) / 1e9;
    return 0;
}

/* ====================================================================== */
/* The bare Redis limits                                                  */
/* ====================================================================== */

typedef enum {
    REDIS_OP_HSET,  /* a record write, shaped like the store's: v and pb */
    REDIS_OP_HMGET, /* the store's record read */
    REDIS_OP_XADD,  /* an event append */
} redis_op_t;

/* Runs one command; true if Redis answered it as expected. Records are
 * keyed by n so that reads find what the writes wrote. */
static bool redis_op(redisContext *ctx, redis_op_t op, const char *prefix, int n,
                     const uint8_t *value)
{
    redisReply *r = NULL;
    bool ok = false;
    switch (op) {
    case REDIS_OP_HSET:
        r = redisCommand(ctx, "HSET bench:%s:%d v 1 pb %b", prefix, n, value,
                         (size_t)BENCH_REDIS_VALUE_BYTES);
        ok = r && r->type == REDIS_REPLY_INTEGER;
        break;
    case REDIS_OP_HMGET:
        r = redisCommand(ctx, "HMGET bench:%s:%d v pb", prefix, n);
        ok = r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
             r->element[1]->type == REDIS_REPLY_STRING &&
             r->element[1]->len == BENCH_REDIS_VALUE_BYTES;
        break;
    case REDIS_OP_XADD:
        r = redisCommand(ctx, "XADD bench:%s:events * type unit.registered data %b", prefix, value,
                         (size_t)BENCH_REDIS_VALUE_BYTES);
        ok = r && r->type == REDIS_REPLY_STRING;
        break;
    }
    if (r)
        freeReplyObject(r);
    return ok;
}

/* count calls of op on records from..from+count-1 under prefix; latencies
 * into us and the time taken added to *wall_s, unless us is NULL. -1 on
 * the first failure. */
static int redis_ops(redisContext *ctx, redis_op_t op, const char *prefix, int from, int count,
                     double *us, double *wall_s)
{
    uint8_t value[BENCH_REDIS_VALUE_BYTES];
    memset(value, 'v', sizeof value);
    int64_t started = bench_now_ns();
    for (int i = 0; i < count; i++) {
        int64_t t0 = bench_now_ns();
        bool ok = redis_op(ctx, op, prefix, from + i, value);
        if (!ok) {
            fprintf(stderr, "passerelle-bench: redis call failed: %s\n",
                    ctx->err ? ctx->errstr : "unexpected reply");
            return -1;
        }
        if (us)
            us[i] = (double)(bench_now_ns() - t0) / 1000.0;
    }
    if (us)
        *wall_s += (double)(bench_now_ns() - started) / 1e9;
    return 0;
}

/* ====================================================================== */
/* Concurrency                                                            */
/* ====================================================================== */

typedef struct {
    const char *endpoint;
    const char *keys_dir;
} target_t;

/* A crew of workers started together from a barrier, each with its own
 * connection and its own slice of the samples, so that the wall time from
 * the first start to the last finish measures the server under as many
 * outstanding calls as there are workers. */
typedef struct {
    const harness_redis_t *redis; /* bare Redis workers */
    const target_t *target;       /* Passerelle workers */
    pthread_barrier_t *barrier;
    int round; /* with index, makes keys and references unique */
    int index;
    int op;    /* service workers: op_t */
    int first; /* setup workers: first pool slot of this worker */
    int warmup;
    double *us; /* this worker's slice */
    int count;
    int64_t started_ns, finished_ns;
    int rc;
} worker_t;

/* Runs fn on k threads that make count calls between them (the first
 * take the remainder), after warmup calls each on their new connections;
 * latencies into us, and the time from the first start to the last finish
 * added to *wall_s. */
static int run_crew(void *(*fn)(void *), const harness_redis_t *redis, const target_t *target,
                    int op, int round, int k, int warmup, int count, double *us, double *wall_s)
{
    worker_t *workers = calloc((size_t)k, sizeof *workers);
    pthread_t *threads = calloc((size_t)k, sizeof *threads);
    pthread_barrier_t barrier;
    if (!workers || !threads || pthread_barrier_init(&barrier, NULL, (unsigned)k) != 0) {
        free(workers);
        free(threads);
        return -1;
    }
    int offset = 0;
    for (int i = 0; i < k; i++) {
        workers[i].redis = redis;
        workers[i].target = target;
        workers[i].barrier = &barrier;
        workers[i].round = round;
        workers[i].index = i;
        workers[i].warmup = warmup;
        workers[i].op = op;
        workers[i].count = count / k + (i < count % k ? 1 : 0);
        workers[i].first = offset;
        workers[i].us = us ? us + offset : NULL;
        offset += workers[i].count;
    }
    for (int i = 0; i < k; i++)
        if (pthread_create(&threads[i], NULL, fn, &workers[i]) != 0) {
            /* The barrier would never open for the others. */
            fprintf(stderr, "passerelle-bench: cannot start %d threads\n", k);
            exit(1);
        }
    for (int i = 0; i < k; i++)
        pthread_join(threads[i], NULL);
    pthread_barrier_destroy(&barrier);

    int rc = 0;
    int64_t first = 0, last = 0;
    for (int i = 0; i < k; i++) {
        if (workers[i].rc != 0)
            rc = -1;
        if (workers[i].count == 0)
            continue;
        if (!first || workers[i].started_ns < first)
            first = workers[i].started_ns;
        if (workers[i].finished_ns > last)
            last = workers[i].finished_ns;
    }
    *wall_s += (double)(last - first) / 1e9;
    free(workers);
    free(threads);
    return rc;
}

/* ====================================================================== */
/* Passerelle                                                             */
/* ====================================================================== */

/* Registers one unit with a reference unique to (tag, n); the new unit's
 * id goes into id_out (ID_LEN) if not NULL. 0, or -1 with a message. */
static int unit_register(client_t *client, const char *tag, int n, char *id_out)
{
    char ref[64], address[64], landlord[32];
    snprintf(ref, sizeof ref, "BENCH-%s-%07d", tag, n);
    snprintf(address, sizeof address, "%d rue Voltaire", 1 + n % 200);
    snprintf(landlord, sizeof landlord, "OWNER-%s-%d", tag, n);
    Passerelle__UnitRegisterRequest req = PASSERELLE__UNIT_REGISTER_REQUEST__INIT;
    req.external_ref = ref;
    req.address = address;
    req.commune = "84089"; /* Pertuis */
    req.has_stock = true;
    req.stock = PASSERELLE__STOCK__STOCK_PRIVATE;
    req.has_typology = true;
    req.typology = PASSERELLE__TYPOLOGY__TYPOLOGY_T3;
    req.has_surface_m2 = true;
    req.surface_m2 = 64.5;
    req.landlord = landlord;
    req.has_energy_class = true;
    req.energy_class = PASSERELLE__ENERGY_CLASS__ENERGY_D;

    Passerelle__Reply *reply = NULL;
    if (client_call(client, "unit.register", &req.base, NULL, &reply) != 0) {
        fprintf(stderr, "passerelle-bench: unit.register %s: no reply\n", ref);
        return -1;
    }
    int rc = -1;
    if (reply->status != PASSERELLE__STATUS__STATUS_OK) {
        fprintf(stderr, "passerelle-bench: unit.register %s: status %d %s\n", ref, reply->status,
                reply->message ? reply->message : "");
    } else if (id_out) {
        Passerelle__Unit *unit =
            reply->has_body ? passerelle__unit__unpack(NULL, reply->body.len, reply->body.data)
                            : NULL;
        if (unit && unit->id && id_valid('U', unit->id)) {
            snprintf(id_out, ID_LEN, "%s", unit->id);
            rc = 0;
        } else {
            fprintf(stderr, "passerelle-bench: unit.register %s: reply without a unit\n", ref);
        }
        if (unit)
            passerelle__unit__free_unpacked(unit, NULL);
    } else {
        rc = 0;
    }
    passerelle__reply__free_unpacked(reply, NULL);
    return rc;
}

static int unit_get(client_t *client, const char *id)
{
    Passerelle__UnitGetRequest req = PASSERELLE__UNIT_GET_REQUEST__INIT;
    req.id = (char *)id;
    Passerelle__Reply *reply = NULL;
    if (client_call(client, "unit.get", &req.base, NULL, &reply) != 0) {
        fprintf(stderr, "passerelle-bench: unit.get %s: no reply\n", id);
        return -1;
    }
    int rc = 0;
    if (reply->status != PASSERELLE__STATUS__STATUS_OK || !reply->has_body ||
        reply->body.len == 0) {
        fprintf(stderr, "passerelle-bench: unit.get %s: status %d %s\n", id, reply->status,
                reply->message ? reply->message : "");
        rc = -1;
    }
    passerelle__reply__free_unpacked(reply, NULL);
    return rc;
}

static client_t *target_client(const target_t *target)
{
    return harness_client(target->endpoint, target->keys_dir, "admin", BENCH_CALL_TIMEOUT_MS, 0);
}

/* 0 if the call got an OK reply; else -1 with a message. */
static int call_ok(client_t *client, const char *type, const ProtobufCMessage *body,
                   const char *what)
{
    Passerelle__Reply *reply = NULL;
    if (client_call(client, type, body, NULL, &reply) != 0) {
        fprintf(stderr, "passerelle-bench: %s %s: no reply\n", type, what);
        return -1;
    }
    int rc = 0;
    if (reply->status != PASSERELLE__STATUS__STATUS_OK) {
        fprintf(stderr, "passerelle-bench: %s %s: status %d %s\n", type, what, reply->status,
                reply->message ? reply->message : "");
        rc = -1;
    }
    passerelle__reply__free_unpacked(reply, NULL);
    return rc;
}

/* The units the writes reserve, each once: private, with a signed LOC2
 * convention, made in the setup. */
typedef struct {
    char (*ids)[ID_LEN];
    int count;
    int next;      /* atomic: the next unit to reserve */
    bool fallback; /* no reservation.create: writes are unit.register */
} pool_t;

static pool_t pool;

/* A unit registered, envisaged and signed: what a STOCK reservation of a
 * private unit needs. */
static int unit_conventioned(client_t *client, const char *tag, int n, char *id_out)
{
    if (unit_register(client, tag, n, id_out) != 0)
        return -1;
    Passerelle__ConventionEnvisageRequest envisage = PASSERELLE__CONVENTION_ENVISAGE_REQUEST__INIT;
    envisage.unit = id_out;
    envisage.has_level = true;
    envisage.level = PASSERELLE__CONVENTION_LEVEL__LEVEL_LOC2;
    envisage.has_rent_ceiling_eur_m2 = true;
    envisage.rent_ceiling_eur_m2 = 9.5;
    if (call_ok(client, "convention.envisage", &envisage.base, id_out) != 0)
        return -1;
    Passerelle__ConventionStepRequest sign = PASSERELLE__CONVENTION_STEP_REQUEST__INIT;
    sign.unit = id_out;
    return call_ok(client, "convention.sign", &sign.base, id_out);
}

/* A year from now: within the 6 years of a convention signed today. */
static void reservation_end_date(char out[16])
{
    time_t later = time(NULL) + 365L * 86400;
    struct tm tm;
    gmtime_r(&later, &tm);
    strftime(out, 16, "%Y-%m-%d", &tm);
}

/* The measured write: a STOCK reservation of the next unit of the pool,
 * or the stand-in. */
static int write_one(client_t *client, const char *tag, int n)
{
    if (pool.fallback)
        return unit_register(client, tag, n, NULL);
    int index = __atomic_fetch_add(&pool.next, 1, __ATOMIC_SEQ_CST);
    if (index >= pool.count) {
        fprintf(stderr, "passerelle-bench: no conventioned unit left to reserve\n");
        return -1;
    }
    Passerelle__ReservationCreateRequest req = PASSERELLE__RESERVATION_CREATE_REQUEST__INIT;
    req.has_mode = true;
    req.mode = PASSERELLE__RESERVATION_MODE__MODE_STOCK;
    req.unit = pool.ids[index];
    char end_date[16];
    reservation_end_date(end_date);
    req.end_date = end_date;
    return call_ok(client, "reservation.create", &req.base, pool.ids[index]);
}

/* One setup worker: conventioned units for its slice of the pool. */
static void *setup_worker_run(void *arg)
{
    worker_t *w = arg;
    w->rc = -1;
    client_t *client = target_client(w->target);
    pthread_barrier_wait(w->barrier);
    char tag[32];
    snprintf(tag, sizeof tag, "P%d", w->index);
    int i = 0;
    w->started_ns = bench_now_ns();
    for (; client && i < w->count && !zsys_interrupted; i++)
        if (unit_conventioned(client, tag, i, pool.ids[w->first + i]) != 0)
            break;
    w->finished_ns = bench_now_ns();
    w->rc = client && i == w->count ? 0 : -1;
    client_destroy(&client);
    return NULL;
}

/* One client, one call at a time: count calls of op, latencies into us and
 * the time taken added to *wall_s, unless us is NULL. */
typedef enum { OP_WRITE, OP_GET } op_t;

static int service_calls(client_t *client, op_t op, const char *tag, int from, int count,
                         double *us, double *wall_s)
{
    int64_t started = bench_now_ns();
    for (int i = 0; i < count; i++) {
        int64_t t0 = bench_now_ns();
        int rc = op == OP_WRITE ? write_one(client, tag, from + i)
                                : unit_get(client, pool.ids[(from + i) % pool.count]);
        if (zsys_interrupted || rc != 0)
            return -1;
        if (us)
            us[i] = (double)(bench_now_ns() - t0) / 1000.0;
    }
    if (us)
        *wall_s += (double)(bench_now_ns() - started) / 1e9;
    return 0;
}

/* One of the K concurrent clients of the service. */
static void *service_worker_run(void *arg)
{
    worker_t *w = arg;
    char tag[32];
    w->rc = -1;
    client_t *client = target_client(w->target);
    /* Every worker reaches the barrier, even a failed one, or the others
     * would wait for it for ever. */
    bool ready = client != NULL;
    snprintf(tag, sizeof tag, "WC%d-%d-%d", w->op, w->round, w->index);
    if (ready)
        ready =
            service_calls(client, (op_t)w->op, tag, w->index * 1000, w->warmup, NULL, NULL) == 0;
    pthread_barrier_wait(w->barrier);
    if (ready) {
        snprintf(tag, sizeof tag, "C%d-%d-%d", w->op, w->round, w->index);
        double wall = 0;
        w->started_ns = bench_now_ns();
        int rc = service_calls(client, (op_t)w->op, tag, w->index * 100000, w->count, w->us, &wall);
        w->finished_ns = bench_now_ns();
        w->rc = rc;
    }
    client_destroy(&client);
    return NULL;
}

/* One of the K concurrent clients of the echo server (the target's
 * endpoint is the echo server's). */
static void *echo_worker_run(void *arg)
{
    worker_t *w = arg;
    echo_client_t echo;
    w->rc = -1;
    bool ready = echo_client_open(&echo, w->target->keys_dir, w->target->endpoint) == 0;
    if (ready)
        ready = echo_round_trips(&echo, w->warmup, NULL, NULL) == 0;
    pthread_barrier_wait(w->barrier);
    if (ready) {
        double wall = 0;
        w->started_ns = bench_now_ns();
        w->rc = echo_round_trips(&echo, w->count, w->us, &wall);
        w->finished_ns = bench_now_ns();
        echo_client_close(&echo);
    }
    return NULL;
}

/* ====================================================================== */
/* The bare script limits                                                 */
/* ====================================================================== */

/* The shape of the measured write's transaction, for the bare script
 * calls: counts of each kind of key, and sizes read back from a real one
 * after the setup (bytes of the records and of the event). */
typedef struct {
    int puts, adds, counters;
    size_t record_bytes[2], event_bytes;
} shape_t;

static shape_t shape;

/* A transaction of that shape on fresh keys (every put creates), with an
 * idempotency key, as a request's. */
static txn_t *shaped_txn(const char *tag, int n)
{
    char key[128], idem[128];
    snprintf(idem, sizeof idem, "bench:idem:%s:%d", tag, n);
    txn_t *txn =
        txn_new(idem, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", 86400);
    static uint8_t filler[4096];
    memset(filler, 'r', sizeof filler);
    for (int p = 0; p < shape.puts; p++) {
        snprintf(key, sizeof key, "bench:rec%d:%s:%d", p, tag, n);
        size_t len = shape.record_bytes[p < 2 ? p : 1];
        txn_put(txn, key, 1, filler, len < sizeof filler ? len : sizeof filler);
    }
    for (int a = 0; a < shape.adds; a++) {
        snprintf(key, sizeof key, "bench:index%d", a);
        char member[64];
        snprintf(member, sizeof member, "R%s%08d", tag, n);
        txn_index_add(txn, key, member);
    }
    for (int c = 0; c < shape.counters; c++) {
        snprintf(key, sizeof key, "bench:progress%d", c);
        txn_counter_add(txn, key, "reserved", 1);
    }
    Passerelle__Event data = PASSERELLE__EVENT__INIT;
    data.has_data = true;
    data.data.data = filler;
    data.data.len = shape.event_bytes > 200 ? shape.event_bytes - 200 : shape.event_bytes;
    txn_event(txn, "bench:events", "/passerelle/bench", "reservation.created", "units/U1",
              &data.base);
    return txn;
}

#define BENCH_PIPELINE_DEPTH 16
/* Bytes of the reply stored under the idempotency key, as a write's. */
#define BENCH_STORED_REPLY_BYTES 600

/* count bare script calls, one at a time (depth 1) or in pipelines of
 * depth; us gets one latency per call (the pipeline's, for each of its
 * calls) and *wall_s the time taken. */
static int script_calls(store_t *store, const char *tag, int from, int count, int depth, double *us,
                        double *wall_s)
{
    static char reply[BENCH_STORED_REPLY_BYTES];
    memset(reply, 'p', sizeof reply);
    int64_t started = bench_now_ns();
    for (int i = 0; i < count; i += depth) {
        int m = count - i < depth ? count - i : depth;
        txn_t *txns[BENCH_MAX_CLIENTS];
        txn_batch_item_t items[BENCH_MAX_CLIENTS];
        memset(items, 0, sizeof items);
        for (int j = 0; j < m; j++) {
            txns[j] = shaped_txn(tag, from + i + j);
            items[j].txn = txns[j];
            items[j].reply = reply;
            items[j].reply_len = sizeof reply;
        }
        int64_t t0 = bench_now_ns();
        bool ok = true;
        if (depth == 1) {
            ok = txn_commit(txns[0], store, reply, sizeof reply, NULL, NULL, NULL) == TXN_COMMITTED;
        } else {
            txn_commit_batch(items, (size_t)m, store);
            for (int j = 0; j < m; j++)
                ok = ok && items[j].result == TXN_COMMITTED;
        }
        double elapsed_us = (double)(bench_now_ns() - t0) / 1000.0;
        for (int j = 0; j < m; j++) {
            free(items[j].stored);
            txn_destroy(&txns[j]);
            if (us)
                us[i + j] = elapsed_us;
        }
        if (!ok) {
            fprintf(stderr, "passerelle-bench: bare commit.lua call failed: %s\n",
                    store_last_error(store));
            return -1;
        }
    }
    if (us)
        *wall_s += (double)(bench_now_ns() - started) / 1e9;
    return 0;
}

/* Reads the shape of a real write back from Redis: the record sizes of the
 * last reservation and its unit, and the size of the last event. */
static void shape_measure(store_t *store)
{
    shape.puts = 2;
    shape.adds = 5;
    shape.counters = 3;
    shape.record_bytes[0] = 300;
    shape.record_bytes[1] = 300;
    shape.event_bytes = 800;
    if (pool.fallback) {
        shape.counters = 0;
        shape.record_bytes[1] = 26; /* the reference record: a unit id */
    }
    redisReply *r = NULL;
    if (store_command(store, &r, "XREVRANGE reservations:events + - COUNT 1") == STORE_OK &&
        r->type == REDIS_REPLY_ARRAY && r->elements == 1) {
        const redisReply *fields = r->element[0]->element[1];
        for (size_t f = 0; f + 1 < fields->elements; f += 2)
            if (strcmp(fields->element[f]->str, "event") == 0) {
                shape.event_bytes = fields->element[f + 1]->len;
                Passerelle__Event *ev =
                    passerelle__event__unpack(NULL, fields->element[f + 1]->len,
                                              (const uint8_t *)fields->element[f + 1]->str);
                if (ev && ev->has_data) {
                    shape.record_bytes[0] = ev->data.len;
                    shape.record_bytes[1] = pool.fallback ? 26 : ev->data.len / 2;
                }
                if (ev)
                    passerelle__event__free_unpacked(ev, NULL);
            }
    }
    if (r)
        freeReplyObject(r);
}

/* ====================================================================== */
/* Report                                                                 */
/* ====================================================================== */

enum {
    FIG_ZMQ,
    FIG_ZMQ_K,
    FIG_REDIS_READ,
    FIG_SCRIPT,
    FIG_SCRIPT_PIPELINED,
    FIG_SCRIPT_MULTI,
    FIG_SCRIPT_K,
    FIG_GET,
    FIG_GET_K,
    FIG_WRITE,
    FIG_WRITE_K,
    FIG_COUNT,
};

static void report(const options_t *opt, figure_t figs[FIG_COUNT])
{
    const char *write_name = pool.fallback ? "unit.register" : "reservation.create";
    /* K-client writes against the pipelined script rate: aim >= 0.5 */
    double writes_k =
        bench_ratio(figs[FIG_WRITE_K].ops_per_s, figs[FIG_SCRIPT_PIPELINED].ops_per_s);
    double writes_k_multi =
        bench_ratio(figs[FIG_WRITE_K].ops_per_s, figs[FIG_SCRIPT_MULTI].ops_per_s);
    /* 1-client write against one round trip + one script call: aim <= 1.3 */
    double write_1 = bench_ratio(figs[FIG_WRITE].median_us,
                                 figs[FIG_ZMQ].median_us + figs[FIG_SCRIPT].median_us);
    double write_1_p99 =
        bench_ratio(figs[FIG_WRITE].p99_us, figs[FIG_ZMQ].p99_us + figs[FIG_SCRIPT].p99_us);
    /* 1-client reads against 1 / (round trip + read): aim >= 0.7 */
    double read_limit_ops =
        bench_ratio(1e6, figs[FIG_ZMQ].median_us + figs[FIG_REDIS_READ].median_us);
    double reads = bench_ratio(figs[FIG_GET].ops_per_s, read_limit_ops);
    /* What the service's vCPU must do for K-client writes at the least:
     * their messages (the echo server's work with K clients) and their
     * commits K to an fsync (the script K deep), back to back. The
     * service's own work comes on top; only an overlap of the two could
     * beat it. */
    double bare_k_ops = bench_ratio(1.0, bench_ratio(1.0, figs[FIG_ZMQ_K].ops_per_s) +
                                             bench_ratio(1.0, figs[FIG_SCRIPT_K].ops_per_s));
    double ceiling_k = bench_ratio(bare_k_ops, figs[FIG_SCRIPT_PIPELINED].ops_per_s);

    if (opt->pin)
        printf("passerelle-bench: %d iterations, %d clients; vCPUs: bench %d, redis-server %d, "
               "service %d (echo server and redis reads on the service's, commit.lua calls on the "
               "bench's)\n",
               opt->iterations, opt->clients, opt->cpu_bench, opt->cpu_redis, opt->cpu_service);
    else
        printf("passerelle-bench: %d iterations, %d clients; not pinned\n", opt->iterations,
               opt->clients);
    if (pool.fallback)
        printf("NOTE: the service does not answer reservation.create yet: unit.register is "
               "measured in its place\n");
    printf("write: %s; bare script shape: %d puts (%zu, %zu B), %d index adds, %d counters, "
           "event %zu B, idempotency record\n",
           write_name, shape.puts, shape.record_bytes[0], shape.record_bytes[1], shape.adds,
           shape.counters, shape.event_bytes);
    printf("%-44s %10s %10s %10s\n", "", "median us", "p99 us", "ops/s");
    for (int i = 0; i < FIG_COUNT; i++)
        printf("%-44s %10.1f %10.1f %10.0f\n", figs[i].label, figs[i].median_us, figs[i].p99_us,
               figs[i].ops_per_s);
    printf("writes, %d clients / pipelined script rate:        %.2f  (aim >= 0.50: %s)\n",
           opt->clients, writes_k, bench_verdict(writes_k >= 0.5));
    printf(
        "  ceiling: %d-client round trips and %d-deep scripts, back to back: %.0f ops/s = %.2f\n",
        opt->clients, opt->clients, bare_k_ops, ceiling_k);
    printf("  against the 16 calls in MULTI/EXEC instead:    %.2f\n", writes_k_multi);
    printf("write, 1 client / (zmq rtt + script call):       %.2f  (aim <= 1.30: %s; p99 %.2f)\n",
           write_1, bench_verdict(write_1 <= 1.3), write_1_p99);
    printf("reads, 1 client / (1 / (zmq rtt + redis read)):  %.2f  (aim >= 0.70: %s)\n", reads,
           bench_verdict(reads >= 0.7));
    printf("scaling, %d clients / 1 client: writes %.2f, reads %.2f\n", opt->clients,
           bench_ratio(figs[FIG_WRITE_K].ops_per_s, figs[FIG_WRITE].ops_per_s),
           bench_ratio(figs[FIG_GET_K].ops_per_s, figs[FIG_GET].ops_per_s));

    json_t *results = json_object();
    for (int i = 0; i < FIG_COUNT; i++)
        json_object_set_new(results, figs[i].name,
                            json_pack("{s:f, s:f, s:f, s:I}", "median_us", figs[i].median_us,
                                      "p99_us", figs[i].p99_us, "ops_per_s", figs[i].ops_per_s,
                                      "count", (json_int_t)figs[i].count));
    json_t *ratios = json_object();
    json_object_set_new(ratios, "writes_concurrent_vs_pipelined_script", json_real(writes_k));
    json_object_set_new(ratios, "write_vs_rtt_plus_script", json_real(write_1));
    json_object_set_new(ratios, "write_vs_rtt_plus_script_p99", json_real(write_1_p99));
    json_object_set_new(ratios, "reads_vs_rtt_plus_read", json_real(reads));
    json_object_set_new(ratios, "writes_concurrent_ceiling", json_real(ceiling_k));
    json_object_set_new(ratios, "writes_concurrent_vs_multi_script", json_real(writes_k_multi));
    /* "o" hands results and ratios over to root, even if packing fails. */
    json_t *root =
        json_pack("{s:s, s:s, s:i, s:i, s:b, s:{s:i, s:i, s:i}, s:o, s:o}", "bench", "passerelle",
                  "write", write_name, "iterations", opt->iterations, "clients", opt->clients,
                  "pinned", opt->pin, "cpus", "bench", opt->cpu_bench, "redis", opt->cpu_redis,
                  "service", opt->cpu_service, "results", results, "ratios", ratios);
    bench_print_json(root);
}

/* ====================================================================== */
/* Measuring                                                              */
/* ====================================================================== */

/* The load of this shared machine drifts (fsync times most of all, with
 * other processes writing to the same disk), so the figures are measured
 * in interleaved rounds: each round takes its share of every figure, and a
 * drift weighs on the limits and on Passerelle alike. */
#define BENCH_ROUNDS 10
/* Calls each new connection of a crew makes before the measured ones:
 * enough to connect and finish the CURVE handshake. */
#define BENCH_CREW_WARMUP 3

/* Makes the pool of conventioned units (K clients at once), or finds out
 * that reservation.create is not there and falls back. */
static int pool_make(const options_t *opt, const target_t *target, client_t *client)
{
    int k = opt->clients;
    int rounds = opt->iterations < BENCH_ROUNDS ? opt->iterations : BENCH_ROUNDS;
    /* every write reserves one unit: the measured ones, the warmups, and
     * one to find out whether reservation.create is there */
    pool.count = 2 * opt->iterations + opt->warmup + rounds * k * BENCH_CREW_WARMUP + 1;
    pool.ids = calloc((size_t)pool.count, ID_LEN);
    if (!pool.ids)
        return -1;
    double wall = 0;
    if (run_crew(setup_worker_run, NULL, target, 0, 0, k, 0, pool.count, NULL, &wall) != 0)
        return -1;
    Passerelle__ReservationCreateRequest req = PASSERELLE__RESERVATION_CREATE_REQUEST__INIT;
    req.has_mode = true;
    req.mode = PASSERELLE__RESERVATION_MODE__MODE_STOCK;
    req.unit = pool.ids[pool.next++];
    char end_date[16];
    reservation_end_date(end_date);
    req.end_date = end_date;
    Passerelle__Reply *reply = NULL;
    if (client_call(client, "reservation.create", &req.base, NULL, &reply) != 0)
        return -1;
    pool.fallback = reply->status != PASSERELLE__STATUS__STATUS_OK;
    if (pool.fallback)
        fprintf(stderr,
                "passerelle-bench: reservation.create answered %d (%s): measuring "
                "unit.register instead\n",
                reply->status, reply->message ? reply->message : "");
    passerelle__reply__free_unpacked(reply, NULL);
    return 0;
}

/* Runs every measurement into figs. Long-lived connections are opened
 * first, on the bench's vCPU, so that the ZeroMQ I/O thread the first
 * socket starts runs there too. */
static int measure(const options_t *opt, const harness_redis_t *redis, const char *keys_dir,
                   int echo_port, const target_t *target, figure_t figs[FIG_COUNT])
{
    int rc = -1, n = opt->iterations, k = opt->clients;
    echo_client_t echo;
    bool echo_open = false;
    client_t *client = NULL;
    redisContext *ctx = NULL;
    store_t *store = NULL, *plain = NULL;
    if (bench_pin(opt->pin, opt->cpu_bench) != 0)
        goto done;
    char echo_endpoint[64];
    snprintf(echo_endpoint, sizeof echo_endpoint, "tcp://127.0.0.1:%d", echo_port);
    const target_t echo_target = {.endpoint = echo_endpoint, .keys_dir = keys_dir};
    echo_open = echo_client_open(&echo, keys_dir, echo_endpoint) == 0;
    client = target_client(target);
    ctx = bench_redis_open(redis, BENCH_CALL_TIMEOUT_MS);
    store_config_t scfg;
    harness_redis_config(redis, &scfg);
    scfg.command_timeout_ms = BENCH_CALL_TIMEOUT_MS;
    store = store_new(&scfg);
    scfg.plain_pipelines = true;
    plain = store_new(&scfg);
    if (!echo_open || !client || !ctx || !store || !plain || pool_make(opt, target, client) != 0)
        goto done;

    /* Bare Redis from the service's vCPU, where the service calls it; the
     * writes before the reads, so that the reads find the records. */
    if (bench_pin(opt->pin, opt->cpu_service) != 0 ||
        redis_ops(ctx, REDIS_OP_HSET, "record", 0, n, NULL, NULL) != 0 ||
        redis_ops(ctx, REDIS_OP_HMGET, "record", 0, opt->warmup, NULL, NULL) != 0)
        goto done;
    if (bench_pin(opt->pin, opt->cpu_bench) != 0 ||
        echo_round_trips(&echo, opt->warmup, NULL, NULL) != 0 ||
        service_calls(client, OP_WRITE, "W", 0, opt->warmup, NULL, NULL) != 0 ||
        service_calls(client, OP_GET, "W", 0, opt->warmup, NULL, NULL) != 0)
        goto done;
    shape_measure(store);
    if (bench_pin(opt->pin, opt->cpu_service) != 0 ||
        script_calls(store, "warm", 0, opt->warmup, 1, NULL, NULL) != 0 ||
        script_calls(plain, "warmp", 0, opt->warmup, 1, NULL, NULL) != 0)
        goto done;

    int rounds = n < BENCH_ROUNDS ? n : BENCH_ROUNDS;
    for (int r = 0; r < rounds; r++) {
        int from = (int)((int64_t)n * r / rounds);
        int count = (int)((int64_t)n * (r + 1) / rounds) - from;
        figure_t *f = figs;
        char tag[16];
        snprintf(tag, sizeof tag, "s%d", r);
        /* The script limits are called from the bench's vCPU: from the
         * service's (Redis's) one, a bare call was measured 4-6x slower
         * (about 2 ms) than the service's own commit of the same shape from
         * there, which would make a flattering, not a limiting, figure. */
        if (bench_pin(opt->pin, opt->cpu_service) != 0 ||
            redis_ops(ctx, REDIS_OP_HMGET, "record", from, count, f[FIG_REDIS_READ].us + from,
                      &f[FIG_REDIS_READ].wall_s) != 0 ||
            bench_pin(opt->pin, opt->cpu_bench) != 0 ||
            script_calls(plain, tag, from, count, 1, f[FIG_SCRIPT].us + from,
                         &f[FIG_SCRIPT].wall_s) != 0 ||
            script_calls(plain, "p", from, count, BENCH_PIPELINE_DEPTH,
                         f[FIG_SCRIPT_PIPELINED].us + from, &f[FIG_SCRIPT_PIPELINED].wall_s) != 0 ||
            script_calls(store, "m", from, count, BENCH_PIPELINE_DEPTH,
                         f[FIG_SCRIPT_MULTI].us + from, &f[FIG_SCRIPT_MULTI].wall_s) != 0 ||
            script_calls(store, "k", from, count, k, f[FIG_SCRIPT_K].us + from,
                         &f[FIG_SCRIPT_K].wall_s) != 0)
            goto done;
        if (bench_pin(opt->pin, opt->cpu_bench) != 0 ||
            echo_round_trips(&echo, count, f[FIG_ZMQ].us + from, &f[FIG_ZMQ].wall_s) != 0 ||
            run_crew(echo_worker_run, NULL, &echo_target, 0, r, k, BENCH_CREW_WARMUP, count,
                     f[FIG_ZMQ_K].us + from, &f[FIG_ZMQ_K].wall_s) != 0 ||
            service_calls(client, OP_WRITE, "S", from, count, f[FIG_WRITE].us + from,
                          &f[FIG_WRITE].wall_s) != 0 ||
            service_calls(client, OP_GET, "S", from, count, f[FIG_GET].us + from,
                          &f[FIG_GET].wall_s) != 0 ||
            run_crew(service_worker_run, NULL, target, OP_WRITE, r, k, BENCH_CREW_WARMUP, count,
                     f[FIG_WRITE_K].us + from, &f[FIG_WRITE_K].wall_s) != 0 ||
            run_crew(service_worker_run, NULL, target, OP_GET, r, k, BENCH_CREW_WARMUP, count,
                     f[FIG_GET_K].us + from, &f[FIG_GET_K].wall_s) != 0)
            goto done;
    }
    rc = zsys_interrupted ? -1 : 0;
done:
    if (ctx)
        redisFree(ctx);
    store_destroy(&store);
    store_destroy(&plain);
    client_destroy(&client);
    if (echo_open)
        echo_client_close(&echo);
    return rc;
}

/* ====================================================================== */
/* main                                                                   */
/* ====================================================================== */

int main(int argc, char *argv[])
{
    options_t opt;
    if (parse_options(argc, argv, &opt) != 0) {
        usage(stderr);
        return 2;
    }
    bench_init("passerelle-bench", "bench");

    figure_t figs[FIG_COUNT];
    memset(figs, 0, sizeof figs);
    int rc = 1;
    bench_stack_t stack;
    if (bench_stack_init(&stack, "bench") != 0)
        return 1;
    echo_t echo = {.pid = 0};
    int echo_port = -1;

    /* Before anything here starts CZMQ: see the file comment. */
    if (echo_fork(&echo, stack.keys, &opt, opt.cpu_service) != 0) {
        fprintf(stderr, "passerelle-bench: cannot fork the echo server\n");
        goto done;
    }
    if (bench_stack_start(&stack, "reservations", opt.pin, opt.cpu_redis, opt.cpu_service, NULL) !=
        0)
        goto done;
    /* The keys exist now. */
    echo_port = echo_go(&echo);
    if (echo_port <= 0) {
        fprintf(stderr, "passerelle-bench: the echo server did not start\n");
        goto done;
    }

    const struct {
        const char *name, *label;
    } names[FIG_COUNT] = {
        [FIG_ZMQ] = {"zmq_rtt", "zmq round trip (curve, 200 B)"},
        [FIG_ZMQ_K] = {"zmq_rtt_concurrent", "zmq round trips, K clients"},
        [FIG_REDIS_READ] = {"redis_read", "redis read (HMGET)"},
        [FIG_SCRIPT] = {"script", "commit.lua, one call (fsync)"},
        [FIG_SCRIPT_PIPELINED] = {"script_pipelined", "commit.lua, pipelined 16 deep"},
        [FIG_SCRIPT_MULTI] = {"script_multi", "commit.lua, 16 deep in MULTI/EXEC"},
        [FIG_SCRIPT_K] = {"script_k_deep", "commit.lua, K deep in MULTI/EXEC"},
        [FIG_GET] = {"unit_get", "passerelle unit.get, 1 client"},
        [FIG_GET_K] = {"unit_get_concurrent", "passerelle unit.get, K clients"},
        [FIG_WRITE] = {"write", "passerelle write, 1 client"},
        [FIG_WRITE_K] = {"write_concurrent", "passerelle write, K clients"},
    };
    for (int i = 0; i < FIG_COUNT; i++)
        if (figure_init(&figs[i], names[i].name, names[i].label, (size_t)opt.iterations) != 0)
            goto done;

    target_t target = {.endpoint = stack.service.endpoint, .keys_dir = stack.keys};
    if (measure(&opt, &stack.redis, stack.keys, echo_port, &target, figs) != 0)
        goto done;

    for (int i = 0; i < FIG_COUNT; i++)
        figure_summarise(&figs[i]);
    report(&opt, figs);
    rc = 0;
done:
    /* An echo server never let go exits 1 by design: only a started one's
     * exit code says something. */
    if (echo_stop(&echo) != 0 && echo_port > 0) {
        fprintf(stderr, "passerelle-bench: the echo server exited with an error\n");
        rc = 1;
    }
    if (bench_stack_stop(&stack) != 0)
        rc = 1;
    for (int i = 0; i < FIG_COUNT; i++)
        figure_free(&figs[i]);
    free(pool.ids);
    bench_stack_remove(&stack);
    return rc;
}
