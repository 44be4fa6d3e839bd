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
 * default_endpoint when unset, "off" for none), and readiness = a PING
 * of a Redis connection of its own (the server's belongs to the server
 * thread), all owned together; "http listening" is logged with the address
 * and port. NULL (logged) when the endpoint does not parse or memory runs
 * out. A port that cannot be bound (taken by another instance on the
 * host) is logged and the service runs on without it: its metrics are
 * still counted. */
typedef struct ops_t ops_t;

ops_t *ops_start(const char *variable, const char *default_endpoint,
                 const store_config_t *store_cfg);
/* The registry to hand the request server (server_config_t.metrics). */
metrics_t *ops_metrics(const ops_t *self);
/* Stops the HTTP server, then frees the store and the registry. */
void ops_destroy(ops_t **self_p);

#endif
