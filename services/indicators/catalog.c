/* The indicators (catalog.h): the one table the queries, the exports, the
 * report and the README's definitions come from, and the projection's
 * word on which counters are kept per commune.
 *
 * Several indicators may read one counter (units.registered as a flow and
 * as a level, the delay as its median and its 90th percentile); they then
 * agree on whether it is kept per commune, which test_catalog checks. */
#include "catalog.h"

#include <stdlib.h>
#include <string.h>

#define FLOW   PASSERELLE__INDICATOR_KIND__INDICATOR_FLOW
#define LEVEL  PASSERELLE__INDICATOR_KIND__INDICATOR_LEVEL
#define MEDIAN PASSERELLE__INDICATOR_KIND__INDICATOR_MEDIAN
#define P90    PASSERELLE__INDICATOR_KIND__INDICATOR_P90
#define RATIO  PASSERELLE__INDICATOR_KIND__INDICATOR_RATIO
#define VALUE  PASSERELLE__INDICATOR_KIND__INDICATOR_VALUE

/* An indicator read from a counter. */
#define COUNTED(name_, kind_, counter_, unit_, axes_, communes_, stated_, source_, definition_)    \
    {                                                                                              \
        .name = (name_), .kind = (kind_), .counter = (counter_), .unit = (unit_), .axes = (axes_), \
        .communes = (communes_), .stated_period = (stated_), .source = (source_),                  \
        .definition = (definition_)                                                                \
    }

/* One indicator divided by another. */
#define DIVIDED(name_, numerator_, denominator_, axes_, source_, definition_)                      \
    {                                                                                              \
        .name = (name_), .kind = RATIO, .numerator = (numerator_), .denominator = (denominator_),  \
        .unit = "ratio", .axes = (axes_), .communes = false, .stated_period = true,                \
        .source = (source_), .definition = (definition_)                                           \
    }

const indicator_def_t catalog[] = {
    /* --- Units and ANAH conventions (reservations stream) --------------- */
    COUNTED("units.registered", FLOW, "units.registered", "units", "stock", true, false,
            "unit.registered events",
            "Housing units registered in the period, by stock (private or social)."),
    COUNTED("units.total", LEVEL, "units.registered", "units", "stock", true, false,
            "unit.registered events",
            "Housing units registered up to the end of the period (or up to the date), "
            "by stock."),
    COUNTED("conventions.envisaged", FLOW, "conventions.envisaged", "conventions", "level", true,
            false, "convention.envisaged events",
            "ANAH conventions envisaged on private units in the period, by level "
            "(LOC1, LOC2, LOC3)."),
    COUNTED("conventions.signed", FLOW, "conventions.signed", "conventions", "level", true, false,
            "convention.signed events", "ANAH conventions signed in the period, by level."),
    COUNTED("conventions.in_force", FLOW, "conventions.in_force", "conventions", "level", true,
            false, "convention.in_force events",
            "ANAH conventions that came into force (first lease signed) in the period, by level."),
    COUNTED("conventions.ended", FLOW, "conventions.ended", "conventions", "level", true, false,
            "convention.ended events",
            "ANAH conventions that ended (expired or terminated) in the period, by level."),
    COUNTED("conventions.abandoned", FLOW, "conventions.abandoned", "conventions", "level", true,
            false, "convention.abandoned events",
            "Envisaged ANAH conventions abandoned before signing in the period, by level."),
    COUNTED("conventions.active", LEVEL, "conventions.active", "conventions", "level", true, false,
            "convention.signed and convention.ended events",
            "ANAH conventions signed or in force at the end of the period (or at the date), "
            "by level."),
    COUNTED("conventions.delay_to_sign.median", MEDIAN, "conventions.delay_to_sign", "days", "",
            false, false, "convention.signed events (envisaged_on and signed_on)",
            "Median number of days from envisaged to signed, over the conventions signed in the "
            "period."),
    COUNTED("conventions.delay_to_sign.p90", P90, "conventions.delay_to_sign", "days", "", false,
            false, "convention.signed events (envisaged_on and signed_on)",
            "90th percentile of the number of days from envisaged to signed, over the "
            "conventions signed in the period."),

    /* --- Reservations and objectives (reservations stream) -------------- */
    COUNTED("reservations.created", FLOW, "reservations.created", "reservations",
            "mode,reservataire,qpv", true, false, "reservation.created events",
            "Reservation rights created in the period, by management mode (STOCK or FLOW), "
            "reservataire, and unit inside or outside a priority neighbourhood (QPV; STOCK "
            "only)."),
    COUNTED("reservations.released", FLOW, "reservations.released", "reservations",
            "mode,reservataire", false, false, "reservation.released events",
            "Reservation rights released (the right ended) in the period, by mode and "
            "reservataire."),
    COUNTED("reservations.cancelled", FLOW, "reservations.cancelled", "reservations",
            "mode,reservataire", false, false, "reservation.cancelled events",
            "Reservation rights cancelled (recorded in error) in the period, by mode and "
            "reservataire."),
    COUNTED("reservations.active", LEVEL, "reservations.active", "reservations",
            "mode,reservataire,qpv", false, false,
            "reservation.created, reservation.released and reservation.cancelled events",
            "Reservation rights active at the end of the period (or at the date): created and "
            "neither released nor cancelled, by mode, reservataire and QPV."),
    COUNTED("reservations.al_units", VALUE, "reservations.al_units", "units", "programme,mode",
            false, true, "reservation.created and reservation.cancelled events",
            "Units reserved for Action Logement in the year the reservation states (a STOCK "
            "reservation counts one unit, a FLOW one its number of units), by programme and "
            "mode; a cancelled reservation no longer counts, a released one still does."),
    COUNTED("objectives.units", VALUE, "objectives.units", "units", "programme", false, true,
            "objective.set events",
            "Units to reserve for Action Logement that the programmes' objectives set for the "
            "year, by programme (total objectives only, not those per convention level or "
            "financing)."),
    DIVIDED("objectives.achievement", "reservations.al_units", "objectives.units", "programme",
            "reservations.al_units / objectives.units",
            "Units reserved for Action Logement divided by the objective for the year; with "
            "programme=P, that programme's progress."),

    /* --- Proposals and attributions (reservations stream) --------------- */
    COUNTED("proposals.recorded", FLOW, "proposals.recorded", "proposals", "public,eligible", false,
            false, "proposal.recorded events",
            "Candidates Action Logement proposed for reserved units in the period, by priority "
            "public (a proposal naming several publics counts once in each) and eligibility."),
    COUNTED("proposals.ineligible", FLOW, "proposals.ineligible", "proposals", "reason", false,
            false, "proposal.recorded events",
            "Proposals recorded in the period whose employer does not meet the convention's "
            "rules, by reason: headcount of a private non-agricultural employer, headcount of "
            "an agricultural employer, public employer, or sector unknown."),
    COUNTED("attributions.decided", FLOW, "attributions.decided", "decisions", "decision,public",
            false, false, "attribution.decided events",
            "Decisions taken on proposals in the period, by decision (attributed, ranked, "
            "refused, withdrawn) and priority public."),
    COUNTED("candidates.housed", FLOW, "candidates.housed", "candidates", "public", false, false,
            "attribution.decided events with decision ATTRIBUTED",
            "Candidates to whom a reserved unit was attributed in the period, by priority "
            "public."),

    /* --- Shared documents (docstore stream) ----------------------------- */
    COUNTED("documents.published", FLOW, "documents.published", "documents", "theme,kind", false,
            false, "document.published events",
            "Documents first published in the shared document store in the period, by theme "
            "of the convention (1, 2, 3) and kind."),

    /* --- The need side (this service's stream) -------------------------- */
    COUNTED("projects.count", VALUE, "projects.count", "projects", "status", true, true,
            "economic_project.created and economic_project.updated events",
            "Economic projects whose horizon is the year, by status (prospect, confirmed, "
            "settled); dropped projects are not counted."),
    COUNTED("projects.expected_jobs", VALUE, "projects.expected_jobs", "jobs", "status", true, true,
            "economic_project.created and economic_project.updated events",
            "Jobs expected by the economic projects whose horizon is the year, by status; "
            "dropped projects are not counted."),
    COUNTED("projects.housing_need", VALUE, "projects.housing_need", "units", "typology,public",
            true, true, "economic_project.created and economic_project.updated events",
            "Housing units the economic projects whose horizon is the year are estimated to "
            "need, by typology and priority public; dropped projects are not counted."),
    COUNTED("demand.requests", VALUE, "demand.requests", "requests", "public", false, true,
            "demand.figures_replaced events",
            "Employees' housing requests Action Logement reported for the period; with "
            "public=X, those of one priority public (publics overlap, so they do not add up "
            "to the total)."),
    COUNTED("demand.aids_granted", VALUE, "demand.aids_granted", "aids", "public,aid", false, true,
            "demand.figures_replaced events",
            "Aids Action Logement reported granted for the period (Visale guarantees, "
            "Loca-Pass advances, mobility aids, others), by kind of aid or priority public."),
    COUNTED("demand.housed", VALUE, "demand.housed", "candidates", "public", false, true,
            "demand.figures_replaced events",
            "Candidates Action Logement reported housed for the period, by priority public."),

    /* --- Need against supply -------------------------------------------- */
    DIVIDED("need_supply.requests_per_reserved_unit", "demand.requests", "reservations.al_units",
            "", "demand.requests / reservations.al_units",
            "Employees' housing requests per unit reserved for Action Logement, in the same "
            "scope and period."),
    DIVIDED("need_supply.jobs_per_reserved_unit", "projects.expected_jobs", "reservations.al_units",
            "", "projects.expected_jobs / reservations.al_units",
            "Jobs expected by economic projects per unit reserved for Action Logement, in the "
            "same scope and year."),
    DIVIDED("need_supply.housed_per_request", "demand.housed", "demand.requests", "public",
            "demand.housed / demand.requests",
            "Candidates housed per employees' housing request Action Logement reported, in the "
            "same scope and period."),
};

const size_t catalog_count = sizeof catalog / sizeof catalog[0];

const indicator_def_t *catalog_find(const char *name)
{
    for (size_t i = 0; name && i < catalog_count; i++)
        if (strcmp(catalog[i].name, name) == 0)
            return &catalog[i];
    return NULL;
}

bool catalog_has_axis(const indicator_def_t *def, const char *axis)
{
    if (!def || !axis || !*axis)
        return false;
    size_t len = strlen(axis);
    for (const char *p = def->axes; p && *p;) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n == len && strncmp(p, axis, len) == 0)
            return true;
        if (!end)
            break;
        p = end + 1;
    }
    return false;
}

/* The basis a def's figures are counted on: demand figures state any
 * period, the other records a year. A ratio takes its numerator's. */
static const char *period_basis(const indicator_def_t *def)
{
    if (def->kind == RATIO) {
        const indicator_def_t *numerator = catalog_find(def->numerator);
        if (numerator)
            def = numerator;
    }
    if (!def->stated_period)
        return "event time";
    return def->counter && strncmp(def->counter, "demand.", 7) == 0 ? "stated period"
                                                                    : "stated year";
}

bool catalog_to_message(const indicator_def_t *def, Passerelle__IndicatorDef *msg, char ***axes_p)
{
    *axes_p = NULL;
    /* One allocation: the pointers, then the names they point into, so
     * the caller frees one block. */
    size_t count = 0, text = def->axes ? strlen(def->axes) + 1 : 0;
    if (text > 1)
        for (const char *p = def->axes, *end; p; p = end ? end + 1 : NULL, count++)
            end = strchr(p, ',');
    char **axes = NULL;
    if (count > 0) {
        axes = malloc(count * sizeof *axes + text);
        if (!axes)
            return false;
        char *names = (char *)(axes + count);
        memcpy(names, def->axes, text);
        size_t i = 0;
        for (char *p = names, *end; p && i < count; p = end ? end + 1 : NULL) {
            end = strchr(p, ',');
            if (end)
                *end = '\0';
            axes[i++] = p;
        }
    }
    *axes_p = axes;

    msg->name = (char *)def->name;
    msg->has_kind = true;
    msg->kind = def->kind;
    msg->unit = (char *)def->unit;
    msg->n_axes = count;
    msg->axes = axes;
    msg->definition = (char *)def->definition;
    msg->source = (char *)def->source;
    msg->has_communes = true;
    msg->communes = def->communes;
    msg->period_basis = (char *)period_basis(def);
    return true;
}
