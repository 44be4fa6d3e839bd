/* The indicators service's route table and key helpers. The handlers live
 * with what they serve: need.c (projects, demand figures), query.c (the
 * figures), engine.c (the rebuild). */
#include "indicators.h"
#include "indicators.pb-c.h"

#include <inttypes.h>
#include <stdio.h>

const route_t indicators_routes[] = {
    {"project.create", &passerelle__project_create_request__descriptor, handle_project_create,
     true},
    {"project.update", &passerelle__project_update_request__descriptor, handle_project_update,
     true},
    {"project.get", &passerelle__project_get_request__descriptor, handle_project_get, false},
    {"project.list", &passerelle__project_list_request__descriptor, handle_project_list, false},
    {"demand.import", &passerelle__demand_import_request__descriptor, handle_demand_import, true},
    {"demand.get", &passerelle__demand_get_request__descriptor, handle_demand_get, false},
    {"indicator.list", &passerelle__indicator_list_request__descriptor, handle_indicator_list,
     false},
    {"indicator.series", &passerelle__series_request__descriptor, handle_indicator_series, false},
    {"indicator.snapshot", &passerelle__snapshot_request__descriptor, handle_indicator_snapshot,
     false},
    {"indicator.export", &passerelle__export_request__descriptor, handle_indicator_export, false},
    /* Not a write for the server: it commits no transaction (so no
     * idempotency record would ever be stored), and a second start while
     * one runs is refused by the lease anyway. The ACL keeps it ADMIN. */
    {"indicator.rebuild", &passerelle__rebuild_request__descriptor, handle_indicator_rebuild,
     false},
    {"indicator.rebuild_status", &passerelle__rebuild_status_request__descriptor,
     handle_indicator_rebuild_status, false},
};

const size_t indicators_route_count = sizeof indicators_routes / sizeof indicators_routes[0];

void indicators_generation_prefix(uint64_t gen, char *out, size_t out_size)
{
    snprintf(out, out_size, "indicators:g%" PRIu64 ":", gen);
}

void indicators_counter_key(const char *counter, const char *scope, const char *period, char *out)
{
    snprintf(out, INDICATORS_KEY_MAX, "c:%s:%s:%s", counter, scope, period);
}
