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

/* A service's operations port, as its main starts it: the endpoint from
 * variable (default_endpoint when unset; "off": none, *self_p stays NULL),
 * ready while a PING of ready_store succeeds (a store of its own, used by
 * the HTTP thread only: the server's is not thread-safe), and a log line
 * "http listening" with the address and port. ready_store and metrics must
 * outlive the server. False (logged) when the endpoint does not parse; a
 * port that cannot be bound (taken by another instance on the host) is
 * logged and leaves *self_p NULL: the service runs on without it. */
bool httpd_start_for_service(httpd_t **self_p, const char *variable, const char *default_endpoint,
                             metrics_t *metrics, store_t *ready_store);

#endif
