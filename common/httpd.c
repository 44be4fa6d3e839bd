/* The operations HTTP port (httpd.h) on libmicrohttpd's internal polling
 * thread: one thread answers every connection in turn, so the readiness
 * callback and the metrics rendering never run concurrently with
 * themselves, and the operations port's Redis connection is that thread's
 * alone; each answer is short (a PING, a few XINFO, a render).
 *
 * What the HTTP thread shares with the service's threads: the registry
 * (its own lock), the stores' process-wide counts and the consumers'
 * beats (atomics, eventlog.c and store.c), and the lists the main
 * registers into (the ops lock). */
#include "httpd.h"

#include "config.h"
#include "eventlog.h"
#include "identity.h"
#include "log.h"

#include <arpa/inet.h>
#include <limits.h>
#include <math.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

struct _httpd_t {
    struct MHD_Daemon *daemon;
    metrics_t *metrics;
    httpd_ready_fn *ready;
    void *ready_arg;
    uint16_t port;
    char address[INET_ADDRSTRLEN + 8];
};

/* Parses "a.b.c.d:port" into addr; false if it is anything else. */
static bool endpoint_parse(const char *endpoint, struct sockaddr_in *addr)
{
    const char *colon = endpoint ? strrchr(endpoint, ':') : NULL;
    if (!colon || colon == endpoint || (size_t)(colon - endpoint) >= INET_ADDRSTRLEN)
        return false;
    char host[INET_ADDRSTRLEN];
    memcpy(host, endpoint, (size_t)(colon - endpoint));
    host[colon - endpoint] = '\0';
    char *end = NULL;
    if (colon[1] < '0' || colon[1] > '9')
        return false;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (*end != '\0' || port > 65535)
        return false;
    memset(addr, 0, sizeof *addr);
    addr->sin_family = AF_INET;
    addr->sin_port = htons((uint16_t)port);
    return inet_pton(AF_INET, host, &addr->sin_addr) == 1;
}

static enum MHD_Result respond(struct MHD_Connection *connection, unsigned int status,
                               const char *content_type, char *body,
                               enum MHD_ResponseMemoryMode mode)
{
    struct MHD_Response *response = MHD_create_response_from_buffer(strlen(body), body, mode);
    if (!response) {
        if (mode == MHD_RESPMEM_MUST_FREE)
            free(body);
        return MHD_NO;
    }
    MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    enum MHD_Result result = MHD_queue_response(connection, status, response);
    MHD_destroy_response(response);
    return result;
}

static enum MHD_Result answer(void *cls, struct MHD_Connection *connection, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **con_cls)
{
    (void)version;
    (void)upload_data;
    httpd_t *self = cls;
    /* A request with a body comes here more than once; the first call only
     * says it arrived, and the body is dropped: no path takes one. */
    if (*con_cls == NULL) {
        *con_cls = self;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        *upload_data_size = 0;
        return MHD_YES;
    }
    const char *text = "text/plain; charset=utf-8";
    bool known =
        strcmp(url, "/healthz") == 0 || strcmp(url, "/readyz") == 0 || strcmp(url, "/metrics") == 0;
    if (!known)
        return respond(connection, MHD_HTTP_NOT_FOUND, text, "not found\n", MHD_RESPMEM_PERSISTENT);
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
        struct MHD_Response *response = MHD_create_response_from_buffer(
            strlen("method not allowed\n"), "method not allowed\n", MHD_RESPMEM_PERSISTENT);
        if (!response)
            return MHD_NO;
        MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, text);
        MHD_add_response_header(response, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
        enum MHD_Result result =
            MHD_queue_response(connection, MHD_HTTP_METHOD_NOT_ALLOWED, response);
        MHD_destroy_response(response);
        return result;
    }
    if (strcmp(url, "/healthz") == 0)
        return respond(connection, MHD_HTTP_OK, text, "ok\n", MHD_RESPMEM_PERSISTENT);
    if (strcmp(url, "/readyz") == 0) {
        char why[1024] = "";
        bool ready = !self->ready || self->ready(self->ready_arg, why, sizeof why);
        char body[1100];
        if (ready)
            snprintf(body, sizeof body, "ready\n");
        else
            snprintf(body, sizeof body, "not ready: %s\n", why[0] ? why : "unknown");
        return respond(connection, ready ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, text, body,
                       MHD_RESPMEM_MUST_COPY);
    }
    char *page = self->metrics ? metrics_render(self->metrics) : strdup("");
    if (!page)
        return respond(connection, MHD_HTTP_INTERNAL_SERVER_ERROR, text, "out of memory\n",
                       MHD_RESPMEM_PERSISTENT);
    return respond(connection, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", page,
                   MHD_RESPMEM_MUST_FREE);
}

httpd_t *httpd_new(const char *endpoint, metrics_t *metrics, httpd_ready_fn *ready, void *ready_arg)
{
    struct sockaddr_in addr;
    if (!endpoint_parse(endpoint, &addr)) {
        log_error("http endpoint does not parse", "{s:s, s:s}", "endpoint",
                  endpoint ? endpoint : "", "expected", "a.b.c.d:port");
        return NULL;
    }
    httpd_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->metrics = metrics;
    self->ready = ready;
    self->ready_arg = ready_arg;
    self->daemon = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL, 0, NULL, NULL,
                                    answer, self, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
                                    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)10,
                                    MHD_OPTION_CONNECTION_LIMIT, (unsigned int)64, MHD_OPTION_END);
    if (!self->daemon) {
        log_error("http server cannot start", "{s:s}", "endpoint", endpoint);
        free(self);
        return NULL;
    }
    /* Port 0 asked the system for one: read which from the socket. */
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(self->daemon, MHD_DAEMON_INFO_LISTEN_FD);
    struct sockaddr_in bound;
    socklen_t bound_len = sizeof bound;
    if (!info || getsockname(info->listen_fd, (struct sockaddr *)&bound, &bound_len) != 0) {
        log_error("http server port unknown", "{s:s}", "endpoint", endpoint);
        MHD_stop_daemon(self->daemon);
        free(self);
        return NULL;
    }
    self->port = ntohs(bound.sin_port);
    char host[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &bound.sin_addr, host, sizeof host);
    snprintf(self->address, sizeof self->address, "%s:%u", host, (unsigned)self->port);
    return self;
}

void httpd_destroy(httpd_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    httpd_t *self = *self_p;
    MHD_stop_daemon(self->daemon);
    free(self);
    *self_p = NULL;
}

uint16_t httpd_port(const httpd_t *self)
{
    return self->port;
}

const char *httpd_address(const httpd_t *self)
{
    return self->address;
}

/* ======================== the operations port ========================== */

typedef struct {
    char name[32];
    ops_check_fn *fn;
    void *arg;
} ops_check_t;

typedef struct {
    char stream[192];
    char group[128];
} ops_watch_t;

typedef struct {
    ops_collect_fn *fn;
    void *arg;
} ops_collector_t;

struct ops_t {
    metrics_t *metrics;
    store_t *store; /* the HTTP thread's; NULL when off */
    httpd_t *httpd; /* NULL: off, or its port was taken */
    int64_t stall_ms;

    /* What the main registers, read by the HTTP thread: changed and read
     * under lock. Entries are only appended and never change once there,
     * so the HTTP thread copies the lists under the lock and works on the
     * copy without it (a scrape may wait seconds on Redis). */
    pthread_mutex_t lock;
    ops_check_t checks[OPS_CHECKS_MAX];
    size_t check_count;
    ops_watch_t watches[OPS_WATCHES_MAX];
    size_t watch_count;
    ops_collector_t collectors[OPS_COLLECTORS_MAX];
    size_t collector_count;
    bool keys_loaded;
    bool keys_insecure;
    char keys_dir[PATH_MAX];
    bool stopping; /* ops_stopping: not ready any more, whatever else says */
    /* The HTTP thread's own view of the key directory (keys_ready), for
     * the folder named by keys_dir when it was made. */
    keydir_t *keydir;
    char keydir_for[PATH_MAX];

    /* Declared at the start (the Redis families) or at the first watch;
     * the registry keeps them, these are handles. */
    metric_t *redis_errors;
    metric_t *redis_reconnects;
    metric_t *consumer_lag;
    metric_t *consumer_pending;
    metric_t *consumer_idle;
    metric_t *events_handled;
    metric_t *events_dead;
};

/* Appends "; " (unless first) and the formatted reason to why. */
static void why_append(char *why, size_t why_size, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

static void why_append(char *why, size_t why_size, const char *format, ...)
{
    size_t used = strlen(why);
    if (used > 0 && used + 2 < why_size) {
        memcpy(why + used, "; ", 3);
        used += 2;
    }
    if (used + 1 >= why_size)
        return;
    va_list ap;
    va_start(ap, format);
    vsnprintf(why + used, why_size - used, format, ap);
    va_end(ap);
}

/* The keys check: loaded, and in CURVE mode at least one authorized
 * certificate that parses and names a party, as the service itself reads
 * them (identity.h; the folder is checked again at each probe, cheaply, so
 * a folder emptied or spoilt by mistake shows at once). On the HTTP
 * thread: self->keydir is its own. */
static bool keys_ready(ops_t *self, const char *keys_dir, bool insecure, char *why, size_t why_size)
{
    if (insecure)
        return true;
    char authorized[PATH_MAX];
    keydir_authorized_dir(keys_dir, authorized, sizeof authorized);
    if (access(authorized, R_OK | X_OK) != 0) {
        snprintf(why, why_size, "cannot read %.200s", authorized);
        return false;
    }
    if (!self->keydir || strcmp(self->keydir_for, keys_dir) != 0) {
        keydir_destroy(&self->keydir);
        self->keydir = keydir_new(keys_dir);
        snprintf(self->keydir_for, sizeof self->keydir_for, "%s", keys_dir);
    }
    if (keydir_count(self->keydir) == 0) {
        snprintf(why, why_size, "no authorized key in %.200s", authorized);
        return false;
    }
    return true;
}

/* /readyz: every check, each failure named; see httpd.h. */
static bool ops_ready(void *arg, char *why, size_t why_size)
{
    ops_t *self = arg;
    why[0] = '\0';
    bool ready = true;

    pthread_mutex_lock(&self->lock);
    bool stopping = self->stopping;
    pthread_mutex_unlock(&self->lock);
    if (stopping) {
        why_append(why, why_size, "stopping: the service is draining after SIGTERM");
        ready = false;
    }

    if (!store_ping(self->store)) {
        const char *error = store_last_error(self->store);
        why_append(why, why_size, "redis: %s", error && *error ? error : "no answer to PING");
        ready = false;
    }

    pthread_mutex_lock(&self->lock);
    bool keys_loaded = self->keys_loaded, insecure = self->keys_insecure;
    char keys_dir[PATH_MAX];
    memcpy(keys_dir, self->keys_dir, sizeof keys_dir);
    size_t watch_count = self->watch_count, check_count = self->check_count;
    ops_watch_t watches[OPS_WATCHES_MAX];
    ops_check_t checks[OPS_CHECKS_MAX];
    memcpy(watches, self->watches, watch_count * sizeof *watches);
    memcpy(checks, self->checks, check_count * sizeof *checks);
    pthread_mutex_unlock(&self->lock);

    char reason[256] = "";
    if (!keys_loaded) {
        why_append(why, why_size, "keys: not loaded yet");
        ready = false;
    } else if (!keys_ready(self, keys_dir, insecure, reason, sizeof reason)) {
        why_append(why, why_size, "keys: %s", reason);
        ready = false;
    }

    for (size_t i = 0; i < watch_count; i++) {
        const ops_watch_t *watch = &watches[i];
        consumer_health_t health;
        consumer_health(watch->stream, watch->group, &health);
        if (health.state == CONSUMER_RUNNING && health.idle_ms < self->stall_ms)
            continue;
        ready = false;
        if (health.state == CONSUMER_ABSENT)
            why_append(why, why_size, "consumer %s@%s not started", watch->group, watch->stream);
        else if (health.state == CONSUMER_STOPPED)
            why_append(why, why_size, "consumer %s@%s stopped", watch->group, watch->stream);
        else
            why_append(why, why_size, "consumer %s@%s stalled %lld s", watch->group, watch->stream,
                       (long long)(health.idle_ms / 1000));
    }

    for (size_t i = 0; i < check_count; i++) {
        reason[0] = '\0';
        if (checks[i].fn(checks[i].arg, reason, sizeof reason))
            continue;
        why_append(why, why_size, "%s: %s", checks[i].name, reason[0] ? reason : "not ready");
        ready = false;
    }
    return ready;
}

/* A group's entry in an XINFO GROUPS reply (RESP2: a flat list of names
 * and values per group), or NULL. */
static const redisReply *group_info(const redisReply *groups, const char *group)
{
    for (size_t i = 0; groups->type == REDIS_REPLY_ARRAY && i < groups->elements; i++) {
        const redisReply *fields = groups->element[i];
        for (size_t f = 0; fields->type == REDIS_REPLY_ARRAY && f + 1 < fields->elements; f += 2) {
            const redisReply *name = fields->element[f], *value = fields->element[f + 1];
            if (name->type == REDIS_REPLY_STRING && strcmp(name->str, "name") == 0 &&
                value->type == REDIS_REPLY_STRING && strcmp(value->str, group) == 0)
                return fields;
        }
    }
    return NULL;
}

/* The integer field name of an XINFO group entry as a double; NaN when
 * it is absent or nil. */
static double group_number(const redisReply *fields, const char *name)
{
    for (size_t f = 0; f + 1 < fields->elements; f += 2) {
        const redisReply *key = fields->element[f], *value = fields->element[f + 1];
        if (key->type == REDIS_REPLY_STRING && strcmp(key->str, name) == 0)
            return value->type == REDIS_REPLY_INTEGER ? (double)value->integer : NAN;
    }
    return NAN;
}

/* One watched group's lag and pending count, read with XINFO GROUPS.
 *
 * Lag is Redis 7.0's own count of the entries the group has not been
 * delivered yet. Redis answers nil when it cannot tell: some entry after
 * the group's last delivered one was deleted (XDEL), so its counter of
 * entries added no longer says how many remain. The lag is then rendered
 * NaN, as it is when Redis cannot be asked at all: the series stays (an
 * absent series would look like a group nobody watches), a threshold
 * compared with NaN is never crossed, so an alert neither fires nor
 * clears on a guess, and the pending count beside it stays exact. Counting
 * the entries ourselves (XRANGE from the last delivered id) would cost a
 * transfer of every undelivered event at each scrape. A stream that does
 * not exist yet has nothing to deliver: lag and pending 0. */
static void collect_group(ops_t *self, const ops_watch_t *watch)
{
    const char *labels[] = {watch->stream, watch->group};
    double lag = NAN, pending = NAN;
    /* Asked first rather than read from XINFO's "no such key" refusal,
     * which the store would count among Redis's errors. */
    redisReply *reply = NULL;
    store_result_t result = store_command(self->store, &reply, "EXISTS %s", watch->stream);
    bool exists = result == STORE_OK && reply->type == REDIS_REPLY_INTEGER && reply->integer > 0;
    if (result == STORE_OK && !exists)
        lag = pending = 0;
    if (reply)
        freeReplyObject(reply);
    reply = NULL;
    if (exists &&
        store_command(self->store, &reply, "XINFO GROUPS %s", watch->stream) == STORE_OK) {
        const redisReply *fields = group_info(reply, watch->group);
        if (fields) {
            lag = group_number(fields, "lag");
            pending = group_number(fields, "pending");
        }
    }
    if (reply)
        freeReplyObject(reply);
    metric_set(self->consumer_lag, labels, lag);
    metric_set(self->consumer_pending, labels, pending);

    consumer_health_t health;
    consumer_health(watch->stream, watch->group, &health);
    metric_set(self->consumer_idle, labels,
               health.state == CONSUMER_RUNNING ? (double)health.idle_ms / 1000 : NAN);
    metric_set(self->events_handled, labels, (double)health.handled);
    metric_set(self->events_dead, labels, (double)health.dead_lettered);
}

/* The registry's collector: runs at each render of /metrics, on the HTTP
 * thread (the only one that renders this registry), so the port's store
 * is used by that thread alone. */
static void ops_collect_all(void *arg)
{
    ops_t *self = arg;
    if (self->store) {
        pthread_mutex_lock(&self->lock);
        size_t watch_count = self->watch_count, collector_count = self->collector_count;
        ops_watch_t watches[OPS_WATCHES_MAX];
        ops_collector_t collectors[OPS_COLLECTORS_MAX];
        memcpy(watches, self->watches, watch_count * sizeof *watches);
        memcpy(collectors, self->collectors, collector_count * sizeof *collectors);
        pthread_mutex_unlock(&self->lock);

        for (size_t i = 0; i < watch_count; i++)
            collect_group(self, &watches[i]);
        for (size_t i = 0; i < collector_count; i++)
            collectors[i].fn(collectors[i].arg, self->store, self->metrics);
    }
    /* Last, so that a failure of this scrape's own reads is in its counts. */
    store_counts_t counts;
    store_counts(&counts);
    metric_set(self->redis_errors, (const char *[]){"lost"}, (double)counts.lost);
    metric_set(self->redis_errors, (const char *[]){"refused"}, (double)counts.refused);
    metric_set(self->redis_reconnects, NULL, (double)counts.reconnects);
}

ops_t *ops_start(const char *variable, const char *default_endpoint,
                 const store_config_t *store_cfg)
{
    const char *endpoint = config_str(variable, default_endpoint);
    bool off = strcmp(endpoint, "off") == 0;
    struct sockaddr_in addr;
    if (!off && !endpoint_parse(endpoint, &addr)) {
        log_error("bad configuration", "{s:s, s:s, s:s}", "variable", variable, "value", endpoint,
                  "error", "expected a.b.c.d:port or off");
        return NULL;
    }
    long stall_s = 0;
    if (!config_int("PASSERELLE_CONSUMER_STALL_S", 30, 1, 3600, &stall_s))
        return NULL;
    ops_t *self = calloc(1, sizeof *self);
    if (self) {
        pthread_mutex_init(&self->lock, NULL);
        self->stall_ms = stall_s * 1000;
        self->metrics = metrics_new();
        self->store = off ? NULL : store_new(store_cfg);
    }
    static const char *const by_kind[] = {"kind"};
    if (self && self->metrics) {
        self->redis_errors = metrics_counter(
            self->metrics, "passerelle_redis_errors_total",
            "Redis calls of the process that failed: lost (no answer, no connection) or refused "
            "(an error answer).",
            by_kind, 1);
        self->redis_reconnects =
            metrics_counter(self->metrics, "passerelle_redis_reconnects_total",
                            "Redis connections of the process made again after a loss.", NULL, 0);
    }
    if (!self || !self->metrics || (!off && !self->store) || !self->redis_errors ||
        !self->redis_reconnects || !metrics_collector(self->metrics, ops_collect_all, self)) {
        log_error("out of memory starting the operations port", NULL);
        ops_destroy(&self);
        return NULL;
    }
    if (off) {
        log_info("http off", "{s:s}", "variable", variable);
        return self;
    }
    self->httpd = httpd_new(endpoint, self->metrics, ops_ready, self);
    if (!self->httpd) {
        /* The port is taken (another instance on this host): the service
         * still serves its requests; only its monitoring is missing, which
         * the scraper sees as a refused connection. */
        log_error("http unavailable: the service runs without its operations port", "{s:s, s:s}",
                  "variable", variable, "endpoint", endpoint);
        return self;
    }
    log_info("http listening", "{s:s, s:i}", "address", httpd_address(self->httpd), "port",
             (int)httpd_port(self->httpd));
    return self;
}

metrics_t *ops_metrics(const ops_t *self)
{
    return self->metrics;
}

uint16_t ops_port(const ops_t *self)
{
    return self && self->httpd ? httpd_port(self->httpd) : 0;
}

bool ops_ready_check(ops_t *self, const char *name, ops_check_fn *fn, void *arg)
{
    if (!self || !name || !fn)
        return false;
    pthread_mutex_lock(&self->lock);
    bool room = self->check_count < OPS_CHECKS_MAX;
    if (room) {
        ops_check_t *check = &self->checks[self->check_count++];
        snprintf(check->name, sizeof check->name, "%s", name);
        check->fn = fn;
        check->arg = arg;
    }
    pthread_mutex_unlock(&self->lock);
    return room;
}

void ops_stopping(ops_t *self)
{
    if (!self)
        return;
    pthread_mutex_lock(&self->lock);
    self->stopping = true;
    pthread_mutex_unlock(&self->lock);
}

void ops_keys_loaded(ops_t *self, const char *keys_dir, bool insecure)
{
    if (!self)
        return;
    pthread_mutex_lock(&self->lock);
    snprintf(self->keys_dir, sizeof self->keys_dir, "%s", keys_dir ? keys_dir : "");
    self->keys_insecure = insecure;
    self->keys_loaded = true;
    pthread_mutex_unlock(&self->lock);
}

bool ops_watch_consumer(ops_t *self, const char *stream, const char *group)
{
    if (!self || !stream || !group || strlen(stream) >= sizeof self->watches[0].stream ||
        strlen(group) >= sizeof self->watches[0].group)
        return false;
    static const char *const by_group[] = {"stream", "group"};
    /* Declared again at each watch: the registry hands back the one
     * already declared. */
    metric_t *lag = metrics_gauge(self->metrics, "passerelle_consumer_lag",
                                  "Entries of the stream not yet delivered to the consumer group "
                                  "(Redis's lag; NaN when Redis cannot tell).",
                                  by_group, 2);
    metric_t *pending = metrics_gauge(
        self->metrics, "passerelle_consumer_pending",
        "Entries delivered to the consumer group and not yet acknowledged.", by_group, 2);
    metric_t *idle = metrics_gauge(
        self->metrics, "passerelle_consumer_idle_seconds",
        "Time since the group's consumer in this process last passed (NaN when none runs).",
        by_group, 2);
    metric_t *handled =
        metrics_counter(self->metrics, "passerelle_events_handled_total",
                        "Stream entries this process's consumer handled.", by_group, 2);
    metric_t *dead = metrics_counter(self->metrics, "passerelle_events_dead_lettered_total",
                                     "Stream entries this process's consumer moved to the "
                                     "dead-letter stream.",
                                     by_group, 2);
    if (!lag || !pending || !idle || !handled || !dead)
        return false;
    pthread_mutex_lock(&self->lock);
    bool room = self->watch_count < OPS_WATCHES_MAX;
    if (room && !self->consumer_lag) {
        /* Set once, before the first watch is listed: the HTTP thread
         * only reads them for a listed watch, after taking the lock. */
        self->consumer_lag = lag;
        self->consumer_pending = pending;
        self->consumer_idle = idle;
        self->events_handled = handled;
        self->events_dead = dead;
    }
    if (room) {
        ops_watch_t *watch = &self->watches[self->watch_count++];
        snprintf(watch->stream, sizeof watch->stream, "%s", stream);
        snprintf(watch->group, sizeof watch->group, "%s", group);
    }
    pthread_mutex_unlock(&self->lock);
    return room;
}

bool ops_collect(ops_t *self, ops_collect_fn *fn, void *arg)
{
    if (!self || !fn)
        return false;
    pthread_mutex_lock(&self->lock);
    bool room = self->collector_count < OPS_COLLECTORS_MAX;
    if (room)
        self->collectors[self->collector_count++] = (ops_collector_t){fn, arg};
    pthread_mutex_unlock(&self->lock);
    return room;
}

void ops_destroy(ops_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    ops_t *self = *self_p;
    /* The HTTP thread reads the registry and the store: it stops first. */
    httpd_destroy(&self->httpd);
    keydir_destroy(&self->keydir);
    store_destroy(&self->store);
    metrics_destroy(&self->metrics);
    pthread_mutex_destroy(&self->lock);
    free(self);
    *self_p = NULL;
}
