/* passerelle-reservations: the register of housing units and their ANAH
 * conventions. Reads its configuration from the environment, connects the
 * store lazily (it may start while Redis is down), serves requests until
 * SIGINT/SIGTERM, and tears down in reverse order.
 *
 * Configuration (besides the store's and the server's common variables):
 *   PASSERELLE_RESERVATIONS_ENDPOINT   where to bind (tcp://127.0.0.1:7401)
 *   PASSERELLE_RESERVATIONS_HTTP_ENDPOINT health, readiness and metrics
 *       over HTTP (127.0.0.1:9401; off for none)
 *   PASSERELLE_CONVENTION_ENERGY_RULES the worst energy class a unit may
 *       have for a convention to be signed, over time (E,2028-01-01:D)
 *   PASSERELLE_ELIGIBILITY_MIN_HEADCOUNT_PRIVATE      the fewest employees a
 *       private non-agricultural employer may have for its employees to be
 *       eligible candidates (10)
 *   PASSERELLE_ELIGIBILITY_MIN_HEADCOUNT_AGRICULTURAL the same for
 *       agricultural employers (50) */
#include "config.h"
#include "handlers.h"
#include "httpd.h"
#include "log.h"
#include "metrics.h"
#include "proposal_rules.h"
#include "server.h"
#include "store.h"

#include <stdlib.h>
#include <string.h>

int main(void)
{
    log_init("reservations");

    reservations_t reservations;
    memset(&reservations, 0, sizeof reservations);
    const char *rules_text = config_str("PASSERELLE_CONVENTION_ENERGY_RULES", ENERGY_RULES_DEFAULT);
    char err[256];
    if (!energy_rules_parse(rules_text, &reservations.energy_rules, err, sizeof err)) {
        log_error("bad configuration", "{s:s, s:s, s:s}", "variable",
                  "PASSERELLE_CONVENTION_ENERGY_RULES", "value", rules_text, "error", err);
        return 1;
    }

    /* The convention's thresholds: a value out of range stops the start,
     * since candidates judged on a guess would be judged wrongly. */
    long min_private = 0, min_agricultural = 0;
    if (!config_int("PASSERELLE_ELIGIBILITY_MIN_HEADCOUNT_PRIVATE",
                    ELIGIBILITY_MIN_HEADCOUNT_PRIVATE_DEFAULT, 1, ELIGIBILITY_MIN_HEADCOUNT_LIMIT,
                    &min_private) ||
        !config_int("PASSERELLE_ELIGIBILITY_MIN_HEADCOUNT_AGRICULTURAL",
                    ELIGIBILITY_MIN_HEADCOUNT_AGRICULTURAL_DEFAULT, 1,
                    ELIGIBILITY_MIN_HEADCOUNT_LIMIT, &min_agricultural))
        return 1;
    reservations.eligibility_min_headcount_private = (unsigned)min_private;
    reservations.eligibility_min_headcount_agricultural = (unsigned)min_agricultural;

    store_config_t store_cfg;
    memset(&store_cfg, 0, sizeof store_cfg);
    server_config_t server_cfg;
    memset(&server_cfg, 0, sizeof server_cfg);
    if (!store_config_from_env(&store_cfg) || !server_config_from_env(&server_cfg)) {
        log_error("bad configuration: see the variable logged above", NULL);
        return 1;
    }

    store_t *store = store_new(&store_cfg);
    if (!store) {
        log_error("cannot create the store", NULL);
        return 1;
    }
    reservations.store = store;

    server_cfg.service = "reservations";
    server_cfg.endpoint = config_str("PASSERELLE_RESERVATIONS_ENDPOINT", "tcp://127.0.0.1:7401");
    server_cfg.routes = reservations_routes;
    server_cfg.route_count = reservations_route_count;
    server_cfg.ctx = &reservations;
    server_cfg.store = store;
    server_cfg.stream = RESERVATIONS_STREAM;

    /* The operations port: health, readiness and metrics. */
    ops_t *ops = ops_start("PASSERELLE_RESERVATIONS_HTTP_ENDPOINT", "127.0.0.1:9401", &store_cfg);
    if (!ops) {
        store_destroy(&store);
        return 1;
    }
    server_cfg.metrics = ops_metrics(ops);

    server_t *server = server_new(&server_cfg);
    if (!server) {
        /* server_new has logged why (bind, certificate, authentication). */
        log_error("cannot start the server", "{s:s}", "endpoint", server_cfg.endpoint);
        ops_destroy(&ops);
        store_destroy(&store);
        return 1;
    }
    ops_keys_loaded(ops, server_cfg.keys_dir, server_cfg.insecure);
    server_wait_for_signal(server);
    ops_stopping(ops);
    /* Answer what is in flight, refuse what comes, within the grace. */
    server_drain(server, server_cfg.shutdown_grace_ms);
    server_destroy(&server);
    ops_destroy(&ops);
    store_destroy(&store);
    log_info("stopped", NULL);
    return 0;
}
