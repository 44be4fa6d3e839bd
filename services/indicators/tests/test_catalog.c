/* The catalog (catalog.h) against the projection (projection.h), without
 * Redis: every counter an indicator reads is fed by some event type, every
 * axis it offers appears in what the events count, every ratio divides
 * two indicators that exist and share its axes, and indicators reading
 * one counter agree on how it is kept. The events projected are one
 * sample of each type counted, with every axis given a value. */
#include "catalog.h"
#include "projection.h"

#include "docstore.pb-c.h"
#include "indicators.pb-c.h"
#include "log.h"
#include "reservations.pb-c.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define PROG "P01JTESTPROGRAMME000000000"
#define TIME "2026-05-12T08:00:00Z"

/* ====================================================================== */
/* Every triple of one sample event of each type                          */
/* ====================================================================== */

static void project_into(triples_t *all, const char *type, const ProtobufCMessage *msg)
{
    Passerelle__Event event = PASSERELLE__EVENT__INIT;
    event.id = "E01TESTCATALOG000000000000";
    event.type = (char *)type;
    event.time = TIME;
    event.dataschema = (char *)msg->descriptor->name;
    event.has_data = true;
    event.data.len = protobuf_c_message_get_packed_size(msg);
    event.data.data = malloc(event.data.len ? event.data.len : 1);
    assert_non_null(event.data.data);
    protobuf_c_message_pack(msg, event.data.data);

    projection_t p;
    assert_true(projection_of(&event, &p));
    /* Each sample counts something: a type the catalog lists but the
     * projection ignores would show here. */
    size_t before = all->count;
    for (size_t i = 0; i < p.adds.count; i++)
        assert_true(
            triples_add(all, p.adds.items[i].key, p.adds.items[i].field, p.adds.items[i].delta));
    for (size_t r = 0; r < p.replacement_count; r++)
        for (size_t i = 0; i < p.replacements[r].triples.count; i++) {
            const triple_t *t = &p.replacements[r].triples.items[i];
            assert_true(triples_add(all, t->key, t->field, t->delta));
        }
    if (all->count == before)
        fail_msg("a sample %s event counts nothing", type);
    projection_free(&p);
    free(event.data.data);
}

static void project_samples(triples_t *all)
{
    Passerelle__Unit unit = PASSERELLE__UNIT__INIT;
    unit.id = "U01JTESTUNIT00000000000000";
    unit.commune_insee = "13001";
    unit.territory = "CT2";
    unit.has_stock = true;
    unit.stock = PASSERELLE__STOCK__STOCK_PRIVATE;
    unit.has_in_qpv = true;
    unit.in_qpv = true;
    project_into(all, "unit.registered", &unit.base);

    Passerelle__Convention conv = PASSERELLE__CONVENTION__INIT;
    conv.id = "C01JTESTCONVENTION00000000";
    conv.has_level = true;
    conv.level = PASSERELLE__CONVENTION_LEVEL__LEVEL_LOC1;
    conv.envisaged_on = "2026-02-01";
    conv.signed_on = "2026-05-12";
    conv.unit = &unit;
    const char *steps[] = {"convention.envisaged", "convention.signed", "convention.in_force",
                           "convention.ended", "convention.abandoned"};
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++)
        project_into(all, steps[i], &conv.base);

    Passerelle__Reservation r = PASSERELLE__RESERVATION__INIT;
    r.has_reservataire = true;
    r.reservataire = PASSERELLE__RESERVATAIRE__RESERVATAIRE_ACTION_LOGEMENT;
    r.has_mode = true;
    r.mode = PASSERELLE__RESERVATION_MODE__MODE_STOCK;
    r.programme_id = PROG;
    r.has_year = true;
    r.year = 2026;
    r.territory = "CT2";
    r.has_in_qpv = true;
    r.in_qpv = true;
    r.unit = &unit;
    project_into(all, "reservation.created", &r.base);
    project_into(all, "reservation.released", &r.base);
    project_into(all, "reservation.cancelled", &r.base);

    Passerelle__Objective o = PASSERELLE__OBJECTIVE__INIT;
    o.programme_id = PROG;
    o.has_year = true;
    o.year = 2026;
    o.has_units = true;
    o.units = 30;
    o.territory = "CT2";
    o.has_version = true;
    o.version = 1;
    project_into(all, "objective.set", &o.base);

    Passerelle__PriorityPublic publics[] = {PASSERELLE__PRIORITY_PUBLIC__PUBLIC_SEASONAL};
    Passerelle__Proposal prop = PASSERELLE__PROPOSAL__INIT;
    prop.publics = publics;
    prop.n_publics = 1;
    prop.has_employer_sector = true;
    prop.employer_sector = PASSERELLE__EMPLOYER_SECTOR__SECTOR_AGRICULTURAL;
    prop.has_eligible = true;
    prop.eligible = false;
    prop.has_decision = true;
    prop.decision = PASSERELLE__DECISION__DECISION_ATTRIBUTED;
    prop.territory = "CT2";
    project_into(all, "proposal.recorded", &prop.base);
    project_into(all, "attribution.decided", &prop.base);

    Passerelle__Document doc = PASSERELLE__DOCUMENT__INIT;
    doc.has_kind = true;
    doc.kind = PASSERELLE__DOCUMENT_KIND__DOCUMENT_MINUTES;
    doc.has_theme = true;
    doc.theme = 2;
    doc.territory = "CT2";
    project_into(all, "document.published", &doc.base);

    Passerelle__HousingNeed need = PASSERELLE__HOUSING_NEED__INIT;
    need.has_typology = true;
    need.typology = PASSERELLE__TYPOLOGY__TYPOLOGY_T1;
    need.has_public_ = true;
    need.public_ = PASSERELLE__PRIORITY_PUBLIC__PUBLIC_APPRENTICE;
    need.has_units = true;
    need.units = 3;
    Passerelle__HousingNeed *needs[] = {&need};
    Passerelle__EconomicProject project = PASSERELLE__ECONOMIC_PROJECT__INIT;
    project.id = "J01JTESTPROJECT00000000000";
    project.commune_insee = "13001";
    project.territory = "CT2";
    project.has_expected_jobs = true;
    project.expected_jobs = 50;
    project.has_horizon_year = true;
    project.horizon_year = 2026;
    project.needs = needs;
    project.n_needs = 1;
    project.has_status = true;
    project.status = PASSERELLE__PROJECT_STATUS__PROJECT_SETTLED;
    project.has_version = true;
    project.version = 1;
    project_into(all, "economic_project.created", &project.base);
    project_into(all, "economic_project.updated", &project.base);

    Passerelle__DemandRow total = PASSERELLE__DEMAND_ROW__INIT;
    total.period = "2026";
    total.territory = "CT2";
    total.has_housing_requests = true;
    total.housing_requests = 10;
    total.has_aids_visale = true;
    total.aids_visale = 4;
    total.has_housed = true;
    total.housed = 2;
    Passerelle__DemandRow by_public = total;
    by_public.has_public_ = true;
    by_public.public_ = PASSERELLE__PRIORITY_PUBLIC__PUBLIC_IN_DIFFICULTY;
    Passerelle__DemandRow *rows[] = {&total, &by_public};
    Passerelle__DemandPeriod period = PASSERELLE__DEMAND_PERIOD__INIT;
    period.period = "2026";
    period.rows = rows;
    period.n_rows = 2;
    period.has_version = true;
    period.version = 1;
    project_into(all, "demand.figures_replaced", &period.base);
}

/* The counter and scope of a key "c:<counter>:<scope>:<period>". */
static void key_parts(const char *key, char *counter, size_t counter_size, char *scope,
                      size_t scope_size)
{
    assert_true(strncmp(key, "c:", 2) == 0);
    const char *c = key + 2, *end = strchr(c, ':');
    assert_non_null(end);
    snprintf(counter, counter_size, "%.*s", (int)(end - c), c);
    const char *s = end + 1, *send = strchr(s, ':');
    assert_non_null(send);
    snprintf(scope, scope_size, "%.*s", (int)(send - s), s);
}

static bool counter_seen(const triples_t *all, const char *counter)
{
    char c[128], s[32];
    for (size_t i = 0; i < all->count; i++) {
        key_parts(all->items[i].key, c, sizeof c, s, sizeof s);
        if (strcmp(c, counter) == 0)
            return true;
    }
    return false;
}

/* Whether some triple of counter has a field "axis=...". */
static bool axis_seen(const triples_t *all, const char *counter, const char *axis)
{
    char c[128], s[32], prefix[64];
    snprintf(prefix, sizeof prefix, "%s=", axis);
    for (size_t i = 0; i < all->count; i++) {
        key_parts(all->items[i].key, c, sizeof c, s, sizeof s);
        if (strcmp(c, counter) == 0 && strncmp(all->items[i].field, prefix, strlen(prefix)) == 0)
            return true;
    }
    return false;
}

/* ====================================================================== */
/* Tests                                                                  */
/* ====================================================================== */

static void test_table(void **state)
{
    (void)state;
    assert_true(catalog_count >= 31);
    for (size_t i = 0; i < catalog_count; i++) {
        const indicator_def_t *def = &catalog[i];
        assert_non_null(def->name);
        /* Unique names, each found by catalog_find. */
        assert_ptr_equal(catalog_find(def->name), def);
        assert_true(def->kind >= PASSERELLE__INDICATOR_KIND__INDICATOR_FLOW &&
                    def->kind <= PASSERELLE__INDICATOR_KIND__INDICATOR_VALUE);
        assert_true(def->unit && *def->unit);
        assert_non_null(def->axes);
        assert_true(def->source && *def->source);
        /* One sentence, as the README has it. */
        assert_true(def->definition && strlen(def->definition) > 20);
        assert_int_equal(def->definition[strlen(def->definition) - 1], '.');
        if (def->kind == PASSERELLE__INDICATOR_KIND__INDICATOR_RATIO) {
            assert_null(def->counter);
            assert_true(def->numerator && def->denominator);
        } else {
            assert_true(def->counter && *def->counter);
            assert_null(def->numerator);
            assert_null(def->denominator);
        }
    }
    assert_null(catalog_find("conventions"));
    assert_null(catalog_find("CONVENTIONS.SIGNED"));
    assert_null(catalog_find(""));
    assert_null(catalog_find(NULL));

    /* The indicators the partnership asks for are all there. */
    const char *wanted[] = {"units.registered",
                            "units.total",
                            "conventions.envisaged",
                            "conventions.signed",
                            "conventions.in_force",
                            "conventions.ended",
                            "conventions.abandoned",
                            "conventions.active",
                            "conventions.delay_to_sign.median",
                            "conventions.delay_to_sign.p90",
                            "reservations.created",
                            "reservations.released",
                            "reservations.cancelled",
                            "reservations.active",
                            "reservations.al_units",
                            "objectives.units",
                            "objectives.achievement",
                            "proposals.recorded",
                            "proposals.ineligible",
                            "attributions.decided",
                            "candidates.housed",
                            "documents.published",
                            "projects.count",
                            "projects.expected_jobs",
                            "projects.housing_need",
                            "demand.requests",
                            "demand.aids_granted",
                            "demand.housed",
                            "need_supply.requests_per_reserved_unit",
                            "need_supply.jobs_per_reserved_unit",
                            "need_supply.housed_per_request"};
    for (size_t i = 0; i < sizeof wanted / sizeof wanted[0]; i++)
        if (!catalog_find(wanted[i]))
            fail_msg("indicator %s is missing", wanted[i]);
}

static void test_axes(void **state)
{
    (void)state;
    const indicator_def_t *created = catalog_find("reservations.created");
    assert_non_null(created);
    assert_true(catalog_has_axis(created, "mode"));
    assert_true(catalog_has_axis(created, "reservataire"));
    assert_true(catalog_has_axis(created, "qpv"));
    assert_false(catalog_has_axis(created, "mod"));
    assert_false(catalog_has_axis(created, "reservataire,qpv"));
    assert_false(catalog_has_axis(created, "level"));
    assert_false(catalog_has_axis(created, ""));
    assert_false(catalog_has_axis(created, NULL));
    assert_false(catalog_has_axis(NULL, "mode"));
    const indicator_def_t *median = catalog_find("conventions.delay_to_sign.median");
    assert_false(catalog_has_axis(median, "level"));
    assert_false(catalog_has_axis(median, ""));
}

/* What the projection counts is what the catalog reads. */
static void test_counters_fed(void **state)
{
    (void)state;
    triples_t all;
    triples_init(&all);
    project_samples(&all);

    for (size_t i = 0; i < catalog_count; i++) {
        const indicator_def_t *def = &catalog[i];
        if (def->kind == PASSERELLE__INDICATOR_KIND__INDICATOR_RATIO)
            continue;
        if (!counter_seen(&all, def->counter))
            fail_msg("no event feeds counter %s of %s", def->counter, def->name);
        /* Every axis it offers appears in the triples. */
        char axes[128];
        snprintf(axes, sizeof axes, "%s", def->axes);
        char *save = NULL;
        for (char *axis = strtok_r(axes, ",", &save); axis; axis = strtok_r(NULL, ",", &save))
            if (!axis_seen(&all, def->counter, axis))
                fail_msg("axis %s of %s never appears in %s's triples", axis, def->name,
                         def->counter);
    }

    /* And the other way: every counter counted is read by an indicator,
     * every field is "*", a distribution's "v=", or an axis an indicator
     * reading it offers; a commune scope only for counters kept per
     * commune, and those do get one. */
    char c[128], s[32];
    for (size_t i = 0; i < all.count; i++) {
        key_parts(all.items[i].key, c, sizeof c, s, sizeof s);
        const char *field = all.items[i].field;
        bool read = false, field_known = strcmp(field, "*") == 0, per_commune = false;
        for (size_t j = 0; j < catalog_count; j++) {
            const indicator_def_t *def = &catalog[j];
            if (!def->counter || strcmp(def->counter, c) != 0)
                continue;
            read = true;
            per_commune = per_commune || def->communes;
            const char *eq = strchr(field, '=');
            if (!eq)
                continue; /* "*" */
            char axis[64];
            snprintf(axis, sizeof axis, "%.*s", (int)(eq - field), field);
            bool distribution = def->kind == PASSERELLE__INDICATOR_KIND__INDICATOR_MEDIAN ||
                                def->kind == PASSERELLE__INDICATOR_KIND__INDICATOR_P90;
            field_known = field_known || catalog_has_axis(def, axis) ||
                          (distribution && strcmp(axis, "v") == 0);
        }
        if (!read)
            fail_msg("counter %s is counted but no indicator reads it", c);
        if (!field_known)
            fail_msg("field %s of %s is no axis of its indicators", field, all.items[i].key);
        bool commune_scope = strcmp(s, "all") != 0 && strncmp(s, "CT", 2) != 0;
        if (commune_scope && !per_commune)
            fail_msg("%s has a commune scope but is not kept per commune", all.items[i].key);
    }
    for (size_t i = 0; i < catalog_count; i++) {
        const indicator_def_t *def = &catalog[i];
        if (!def->communes)
            continue;
        bool found = false;
        for (size_t j = 0; j < all.count && !found; j++) {
            key_parts(all.items[j].key, c, sizeof c, s, sizeof s);
            found = strcmp(c, def->counter) == 0 && strcmp(s, "13001") == 0;
        }
        if (!found)
            fail_msg("%s is kept per commune but no commune key was counted", def->name);
    }
    triples_free(&all);
}

/* Indicators reading one counter read it the same way. */
static void test_shared_counters(void **state)
{
    (void)state;
    for (size_t i = 0; i < catalog_count; i++)
        for (size_t j = i + 1; j < catalog_count; j++) {
            const indicator_def_t *a = &catalog[i], *b = &catalog[j];
            if (!a->counter || !b->counter || strcmp(a->counter, b->counter) != 0)
                continue;
            assert_int_equal(a->communes, b->communes);
            assert_int_equal(a->stated_period, b->stated_period);
            assert_string_equal(a->axes, b->axes);
        }
}

/* A ratio divides two counted indicators with the same filter, scope and
 * period: its axes are axes of both, and it is per commune or stated
 * only as they are. */
static void test_ratios(void **state)
{
    (void)state;
    size_t ratios = 0;
    for (size_t i = 0; i < catalog_count; i++) {
        const indicator_def_t *def = &catalog[i];
        if (def->kind != PASSERELLE__INDICATOR_KIND__INDICATOR_RATIO)
            continue;
        ratios++;
        const indicator_def_t *num = catalog_find(def->numerator);
        const indicator_def_t *den = catalog_find(def->denominator);
        if (!num || !den)
            fail_msg("ratio %s names an indicator that does not exist", def->name);
        assert_int_not_equal(num->kind, PASSERELLE__INDICATOR_KIND__INDICATOR_RATIO);
        assert_int_not_equal(den->kind, PASSERELLE__INDICATOR_KIND__INDICATOR_RATIO);
        assert_true(strstr(def->source, def->numerator) && strstr(def->source, def->denominator));
        char axes[128];
        snprintf(axes, sizeof axes, "%s", def->axes);
        char *save = NULL;
        for (char *axis = strtok_r(axes, ",", &save); axis; axis = strtok_r(NULL, ",", &save)) {
            assert_true(catalog_has_axis(num, axis));
            assert_true(catalog_has_axis(den, axis));
        }
        assert_true(!def->communes || (num->communes && den->communes));
        assert_int_equal(def->stated_period, num->stated_period && den->stated_period);
    }
    assert_int_equal(ratios, 4);
    const indicator_def_t *achievement = catalog_find("objectives.achievement");
    assert_string_equal(achievement->numerator, "reservations.al_units");
    assert_string_equal(achievement->denominator, "objectives.units");
}

static void test_to_message(void **state)
{
    (void)state;
    Passerelle__IndicatorDef msg = PASSERELLE__INDICATOR_DEF__INIT;
    char **axes = NULL;
    const indicator_def_t *def = catalog_find("reservations.created");
    assert_true(catalog_to_message(def, &msg, &axes));
    assert_string_equal(msg.name, "reservations.created");
    assert_true(msg.has_kind);
    assert_int_equal(msg.kind, PASSERELLE__INDICATOR_KIND__INDICATOR_FLOW);
    assert_string_equal(msg.unit, "reservations");
    assert_int_equal(msg.n_axes, 3);
    assert_ptr_equal(msg.axes, axes);
    assert_string_equal(msg.axes[0], "mode");
    assert_string_equal(msg.axes[1], "reservataire");
    assert_string_equal(msg.axes[2], "qpv");
    assert_string_equal(msg.definition, def->definition);
    assert_string_equal(msg.source, def->source);
    assert_true(msg.has_communes);
    assert_true(msg.communes);
    assert_string_equal(msg.period_basis, "event time");
    /* The message packs and reads back as it was filled. */
    size_t len = passerelle__indicator_def__get_packed_size(&msg);
    uint8_t *bytes = malloc(len);
    assert_non_null(bytes);
    passerelle__indicator_def__pack(&msg, bytes);
    Passerelle__IndicatorDef *back = passerelle__indicator_def__unpack(NULL, len, bytes);
    assert_non_null(back);
    assert_int_equal(back->n_axes, 3);
    assert_string_equal(back->axes[1], "reservataire");
    passerelle__indicator_def__free_unpacked(back, NULL);
    free(bytes);
    free(axes); /* one block: the names live in it */

    /* No axes: no array. */
    Passerelle__IndicatorDef none = PASSERELLE__INDICATOR_DEF__INIT;
    assert_true(catalog_to_message(catalog_find("conventions.delay_to_sign.p90"), &none, &axes));
    assert_int_equal(none.n_axes, 0);
    assert_null(axes);
    assert_int_equal(none.kind, PASSERELLE__INDICATOR_KIND__INDICATOR_P90);
    assert_string_equal(none.unit, "days");
    assert_false(none.communes);

    /* The basis a figure is counted on. */
    const struct {
        const char *name, *basis;
    } bases[] = {
        {"units.total", "event time"},
        {"objectives.units", "stated year"},
        {"reservations.al_units", "stated year"},
        {"projects.housing_need", "stated year"},
        {"demand.aids_granted", "stated period"},
        {"objectives.achievement", "stated year"},
        {"need_supply.housed_per_request", "stated period"},
    };
    for (size_t i = 0; i < sizeof bases / sizeof bases[0]; i++) {
        Passerelle__IndicatorDef m = PASSERELLE__INDICATOR_DEF__INIT;
        assert_true(catalog_to_message(catalog_find(bases[i].name), &m, &axes));
        assert_string_equal(m.period_basis, bases[i].basis);
        free(axes);
    }

    /* Every entry converts, with as many axes as its list names. */
    for (size_t i = 0; i < catalog_count; i++) {
        Passerelle__IndicatorDef m = PASSERELLE__INDICATOR_DEF__INIT;
        assert_true(catalog_to_message(&catalog[i], &m, &axes));
        size_t commas = 0;
        for (const char *p = catalog[i].axes; *p; p++)
            commas += *p == ',';
        assert_int_equal(m.n_axes, *catalog[i].axes ? commas + 1 : 0);
        for (size_t a = 0; a < m.n_axes; a++)
            assert_true(catalog_has_axis(&catalog[i], m.axes[a]));
        free(axes);
    }
}

int main(void)
{
    log_set_level(LOG_LEVEL_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),        cmocka_unit_test(test_axes),
        cmocka_unit_test(test_counters_fed), cmocka_unit_test(test_shared_counters),
        cmocka_unit_test(test_ratios),       cmocka_unit_test(test_to_message),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
