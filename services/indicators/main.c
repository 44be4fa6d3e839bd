/* passerelle-indicators: the shared indicators of employment-linked housing
 * needs (indicators.h says how the pieces fit). Reads its configuration
 * from the environment, starts the request server and one projector per
 * stream, serves until SIGINT/SIGTERM, and stops in reverse order.
 *
 * Configuration (besides the store's and the server's common variables):
 *   PASSERELLE_INDICATORS_ENDPOINT  requests (tcp://127.0.0.1:7403)
 *   PASSERELLE_INDICATORS_HTTP_ENDPOINT health, readiness and metrics over
 *       HTTP (127.0.0.1:9403; off for none)
 *   PASSERELLE_INDICATORS_STREAMS   the streams projected
 *       (reservations:events,docstore:events,indicators:events) */
#include "config.h"
#include "engine.h"
#include "httpd.h"
#include "indicators.h"
#include "log.h"
#include "metrics.h"
#include "query.h"
#include "server.h"
#include "store.h"

#include <czmq.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STREAMS_MAX 8

int main(void)
{
    log_init("indicators");

    store_config_t store_cfg;
    memset(&store_cfg, 0, sizeof store_cfg);
    server_config_t server_cfg;
    memset(&server_cfg, 0, sizeof server_cfg);
    if (!store_config_from_env(&store_cfg) || !server_config_from_env(&server_cfg)) {
        log_error("bad configuration: see the variable logged above", NULL);
        return 1;
    }

    char process_name[128], host[64] = "host";
    gethostname(host, sizeof host - 1);
    snprintf(process_name, sizeof process_name, "%s:%d", host, (int)getpid());

    /* The streams, split in place: streams[] points into stream_text. */
    char stream_text[512];
    snprintf(stream_text, sizeof stream_text, "%s",
             config_str("PASSERELLE_INDICATORS_STREAMS",
                        "reservations:events,docstore:events,indicators:events"));
    const char *streams[STREAMS_MAX];
    size_t stream_count = 0;
    char *save = NULL;
    for (char *s = strtok_r(stream_text, ",", &save); s; s = strtok_r(NULL, ",", &save)) {
        if (!*s)
            continue;
        if (stream_count == STREAMS_MAX) {
            log_error("bad configuration", "{s:s, s:s}", "variable",
                      "PASSERELLE_INDICATORS_STREAMS", "error", "at most 8 streams");
            return 1;
        }
        streams[stream_count++] = s;
    }

    store_t *store = store_new(&store_cfg);
    if (!store)
        return 1;
    indicators_t ind = {
        .store = store,
        .store_cfg = &store_cfg,
        .streams = streams,
        .stream_count = stream_count,
        .process_name = process_name,
        .read_script = query_scripts_add(store),
    };
    if (ind.read_script < 0 || !engine_scripts_add(store)) {
        log_error("cannot register the scripts", NULL);
        store_destroy(&store);
        return 1;
    }

    server_cfg.service = "indicators";
    server_cfg.endpoint = config_str("PASSERELLE_INDICATORS_ENDPOINT", "tcp://127.0.0.1:7403");
    server_cfg.routes = indicators_routes;
    server_cfg.route_count = indicators_route_count;
    server_cfg.ctx = &ind;
    server_cfg.store = store;
    server_cfg.stream = INDICATORS_STREAM;

    int rc = 1;
    projector_t *projectors[STREAMS_MAX] = {0};
    size_t n_projectors = 0;
    server_t *server = NULL;
    /* The operations port: health, readiness and metrics. */
    ops_t *ops = ops_start("PASSERELLE_INDICATORS_HTTP_ENDPOINT", "127.0.0.1:9403", &store_cfg);
    if (!ops)
        goto out;
    server_cfg.metrics = ops_metrics(ops);
    server = server_new(&server_cfg);
    if (!server) {
        log_error("cannot start the server", "{s:s}", "endpoint", server_cfg.endpoint);
        goto out;
    }
    ops_keys_loaded(ops, server_cfg.keys_dir, server_cfg.insecure);
    for (size_t i = 0; i < stream_count; i++) {
        projector_config_t pcfg = {
            .store = &store_cfg,
            .stream = streams[i],
            .consumer = process_name,
        };
        projectors[n_projectors] = projector_new(&pcfg);
        if (!projectors[n_projectors])
            goto out;
        n_projectors++;
        ops_watch_consumer(ops, streams[i], INDICATORS_GROUP);
    }

    log_info("indicators running", "{s:s, s:i}", "endpoint", server_endpoint(server), "streams",
             (int)n_projectors);
    server_wait_for_signal(server);
    ops_stopping(ops);
    /* The requests first (answered or refused, within the grace), then the
     * projectors, each of which finishes and acknowledges the batch in
     * hand before it stops: no event it took stays pending. */
    server_drain(server, server_cfg.shutdown_grace_ms);
    rc = 0;
out:
    for (size_t i = n_projectors; i-- > 0;)
        projector_destroy(&projectors[i]);
    /* The server before the rebuild: no request may start a rebuild once
     * it is stopped. */
    server_destroy(&server);
    rebuild_stop(&ind.rebuild);
    ops_destroy(&ops);
    store_destroy(&store);
    log_info("stopped", NULL);
    return rc;
}
