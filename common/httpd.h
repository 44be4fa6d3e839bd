/* The operations HTTP port of a service (libmicrohttpd, its own thread):
 *   GET /healthz  200 "ok" while the process runs;
 *   GET /readyz   200 "ready", or 503 with what is not ready, as the
 *                 readiness callback says;
 *   GET /metrics  the registry's text (metrics.h), Content-Type
 *                 text/plain; version=0.0.4;
 * 404 for any other path, 405 for any other method. It answers monitoring,
 * not clients: bind it to loopback unless a scraper elsewhere needs it. */
#ifndef PASSERELLE_HTTPD_H
#define PASSERELLE_HTTPD_H

#include "metrics.h"
#include "store.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct _httpd_t httpd_t;

/* Says whether the service can serve; when not, writes a short reason
 * ("redis: connection refused") into why (why_size bytes). Called on the
 * HTTP thread, one call at a time. */
typedef bool(httpd_ready_fn)(void *arg, char *why, size_t why_size);

/* Starts a server on endpoint, "host:port" with an IPv4 host (port 0: one
 * the system picks), serving metrics (NULL: an empty page) and readiness
 * from ready (NULL: always ready). Logs and returns NULL when the endpoint
 * does not parse or the port cannot be bound. */
httpd_t *httpd_new(const char *endpoint, metrics_t *metrics, httpd_ready_fn *ready,
                   void *ready_arg);

/* Stops the server (waits for its thread) and NULLs *self_p. */
void httpd_destroy(httpd_t **self_p);

/* The bound port, read back from the socket (the one chosen for port 0). */
uint16_t httpd_port(const httpd_t *self);

/* The bound address, "127.0.0.1:9401". */
const char *httpd_address(const httpd_t *self);

/* A service's operations port, as its main starts it: the registry its
 * request server counts into, the HTTP server (endpoint from variable,
 * default_endpoint when unset, "off" for none), and a Redis connection of
 * its own (the server's belongs to the server thread), used only on the
 * HTTP thread, all owned together; "http listening" is logged with the
 * address and port. NULL (logged) when the endpoint does not parse, when
 * PASSERELLE_CONSUMER_STALL_S does not (1 to 3600, default 30), or memory
 * runs out. A port that cannot be bound (taken by another instance on the
 * host) is logged and the service runs on without it: its metrics are
 * still counted.
 *
 * /readyz is 200 when every check passes, else 503 naming each that
 * failed ("not ready: redis: connection refused; consumer
 * indicators@reservations:events stalled 12 s"). The checks, in order:
 *   redis     a PING answered on the port's connection;
 *   keys      the key directory is loaded (ops_keys_loaded);
 *   consumer  each watched consumer group (ops_watch_consumer) has a
 *             consumer in the process that beat (eventlog.h, health) less
 *             than PASSERELLE_CONSUMER_STALL_S ago: "not started",
 *             "stopped" or "stalled N s" otherwise;
 *   and those registered with ops_ready_check.
 * /metrics holds, besides what the service counts into the registry:
 *   passerelle_redis_errors_total{kind="lost"|"refused"} and
 *   passerelle_redis_reconnects_total, every store of the process
 *   (store_counts); for each watched group, passerelle_consumer_lag and
 *   passerelle_consumer_pending (XINFO GROUPS on the port's connection at
 *   the scrape), passerelle_consumer_idle_seconds,
 *   passerelle_events_handled_total and
 *   passerelle_events_dead_lettered_total, labelled {stream,group}; and
 *   what the ops_collect collectors set.
 * Everything the scrape asks Redis goes over the port's own connection on
 * the HTTP thread: a slow Redis slows the scrape, never the service.
 *
 * Registrations may come while the HTTP thread already answers (a main
 * starts its port first); they are taken under a lock. */
typedef struct ops_t ops_t;

ops_t *ops_start(const char *variable, const char *default_endpoint,
                 const store_config_t *store_cfg);
/* The registry to hand the request server (server_config_t.metrics). */
metrics_t *ops_metrics(const ops_t *self);
/* The HTTP port, 0 when off or not bound. */
uint16_t ops_port(const ops_t *self);

/* A readiness check, as httpd_ready_fn: true when ready, else a reason in
 * why. Runs on the HTTP thread at each /readyz. */
typedef httpd_ready_fn ops_check_fn;

#define OPS_CHECKS_MAX 16

/* Adds a check, named name in the 503 body ("name: why"); arg must
 * outlive the port. False when OPS_CHECKS_MAX are registered already. */
bool ops_ready_check(ops_t *self, const char *name, ops_check_fn *fn, void *arg);

/* Says that the server has read its key directory (server_new returned:
 * it loads the server certificate and starts authentication on the
 * authorized keys before it returns). Until then "keys: not loaded yet";
 * after, in CURVE mode, keys_dir/authorized must still hold at least one
 * certificate, since a service nobody is allowed to call is not ready;
 * insecure mode is always loaded. Strings copied. */
void ops_keys_loaded(ops_t *self, const char *keys_dir, bool insecure);

/* Says that the service is stopping (SIGTERM, before it drains): /readyz
 * answers 503 "stopping: ..." from now on, so that a load balancer or an
 * orchestrator sends nothing more while the requests in flight are
 * answered. /healthz stays 200: the process is alive and ending well. */
void ops_stopping(ops_t *self);

#define OPS_WATCHES_MAX 16

/* Watches the consumer group group of stream, which a consumer of this
 * process reads (eventlog.h): for readiness and the consumer metrics
 * above. Strings copied. False when OPS_WATCHES_MAX are watched already. */
bool ops_watch_consumer(ops_t *self, const char *stream, const char *group);

/* A collector: sets what it knows into the registry at each scrape, on
 * the HTTP thread, with the port's own Redis connection (never NULL). */
typedef void(ops_collect_fn)(void *arg, store_t *store, metrics_t *metrics);

#define OPS_COLLECTORS_MAX 4

/* Adds a collector (arg must outlive the port); false when
 * OPS_COLLECTORS_MAX are registered already. */
bool ops_collect(ops_t *self, ops_collect_fn *fn, void *arg);

/* Stops the HTTP server, then frees the store and the registry. */
void ops_destroy(ops_t **self_p);

#endif
