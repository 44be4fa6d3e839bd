/* The operations HTTP port (httpd.h) on libmicrohttpd's internal polling
 * thread: one thread answers every connection in turn, so the readiness
 * callback and the metrics rendering never run concurrently with
 * themselves; each answer is short (a PING, a render). */
#include "httpd.h"

#include "config.h"
#include "log.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
        char why[256] = "";
        bool ready = !self->ready || self->ready(self->ready_arg, why, sizeof why);
        char body[300];
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

/* Ready while Redis answers a PING on the store given as arg. */
static bool store_ready(void *arg, char *why, size_t why_size)
{
    store_t *store = arg;
    if (store_ping(store))
        return true;
    const char *error = store_last_error(store);
    snprintf(why, why_size, "redis: %s", error && *error ? error : "no answer to PING");
    return false;
}

struct ops_t {
    metrics_t *metrics;
    store_t *ready_store;
    httpd_t *httpd; /* NULL: off, or its port was taken */
};

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
    ops_t *self = calloc(1, sizeof *self);
    if (self) {
        self->metrics = metrics_new();
        self->ready_store = off ? NULL : store_new(store_cfg);
    }
    if (!self || !self->metrics || (!off && !self->ready_store)) {
        log_error("out of memory starting the operations port", NULL);
        ops_destroy(&self);
        return NULL;
    }
    if (off) {
        log_info("http off", "{s:s}", "variable", variable);
        return self;
    }
    self->httpd = httpd_new(endpoint, self->metrics, store_ready, self->ready_store);
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

void ops_destroy(ops_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    ops_t *self = *self_p;
    /* The HTTP thread reads the registry and the store: it stops first. */
    httpd_destroy(&self->httpd);
    store_destroy(&self->ready_store);
    metrics_destroy(&self->metrics);
    free(self);
    *self_p = NULL;
}
