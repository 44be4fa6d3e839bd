/* Programme rules: what a valid programme, objective, listing and progress
 * request are, and whether a unit may join a programme. See
 * programme_rules.h; everything here is pure. */
#include "programme_rules.h"

#include "refdata.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define KIND_PIG              PASSERELLE__PROGRAMME_KIND__PROGRAMME_PIG
#define KIND_OPAH             PASSERELLE__PROGRAMME_KIND__PROGRAMME_OPAH
#define KIND_OPAH_RU          PASSERELLE__PROGRAMME_KIND__PROGRAMME_OPAH_RU
#define KIND_NPNRU            PASSERELLE__PROGRAMME_KIND__PROGRAMME_NPNRU
#define KIND_SOCIAL_HOUSING   PASSERELLE__PROGRAMME_KIND__PROGRAMME_SOCIAL_HOUSING
#define KIND_SOCIAL_OWNERSHIP PASSERELLE__PROGRAMME_KIND__PROGRAMME_SOCIAL_OWNERSHIP

/* ====================================================================== */
/* Names                                                                  */
/* ====================================================================== */

const char *programme_kind_name(int kind)
{
    static const char *const names[] = {
        "UNSPECIFIED", "PIG", "OPAH", "OPAH_RU", "NPNRU", "SOCIAL_HOUSING", "SOCIAL_OWNERSHIP"};
    if (kind <= 0 || kind >= (int)(sizeof names / sizeof names[0]))
        return "UNKNOWN";
    return names[kind];
}

const char *convention_level_name(int level)
{
    static const char *const names[] = {"UNSPECIFIED", "LOC1", "LOC2", "LOC3"};
    if (level <= 0 || level >= (int)(sizeof names / sizeof names[0]))
        return "UNKNOWN";
    return names[level];
}

const char *financing_name(int financing)
{
    static const char *const names[] = {"UNSPECIFIED", "PLAI", "PLUS", "PLS", "PLI", "LLI"};
    if (financing <= 0 || financing >= (int)(sizeof names / sizeof names[0]))
        return "UNKNOWN";
    return names[financing];
}

/* ====================================================================== */
/* programme.create                                                       */
/* ====================================================================== */

static void upper3(const char *in, char out[4])
{
    for (size_t i = 0; i < 3; i++)
        out[i] = (char)toupper((unsigned char)in[i]);
    out[3] = '\0';
}

/* Territory and communes: a programme covers either some communes, all in
 * one territory (derived, or checked against the one given), or a whole
 * territory. */
static bool programme_validate_place(const Passerelle__ProgrammeCreateRequest *req,
                                     Passerelle__Programme *prog, programme_scratch_t *scratch,
                                     domain_error_t *err)
{
    scratch->territory[0] = '\0';
    if (!text_blank(req->territory)) {
        if (!refdata_is_territory(req->territory))
            return domain_fail(err, ST_INVALID_ARGUMENT, "territory",
                               "territory '%.16s' is not one of CT1..CT6", req->territory);
        upper3(req->territory, scratch->territory);
    }
    if (req->n_communes > PROGRAMME_COMMUNES_MAX)
        return domain_fail(err, ST_INVALID_ARGUMENT, "communes",
                           "at most %d communes (the Métropole has 92)", PROGRAMME_COMMUNES_MAX);
    size_t count = 0;
    const char *first_territory = NULL;
    for (size_t i = 0; i < req->n_communes; i++) {
        const commune_t *commune =
            text_blank(req->communes[i]) ? NULL : refdata_commune(req->communes[i]);
        if (!commune)
            return domain_fail(err, ST_INVALID_ARGUMENT, "communes",
                               "commune '%.64s' is not one of the Métropole's 92 communes",
                               req->communes[i] ? req->communes[i] : "");
        if (first_territory && strcmp(first_territory, commune->territory) != 0)
            return domain_fail(err, ST_INVALID_ARGUMENT, "communes",
                               "communes span two territories: %s is in %s, %s in %s",
                               scratch->communes[0], first_territory, commune->insee,
                               commune->territory);
        first_territory = commune->territory;
        bool seen = false;
        for (size_t j = 0; j < count && !seen; j++)
            seen = strcmp(scratch->communes[j], commune->insee) == 0;
        if (!seen)
            scratch->communes[count++] = (char *)commune->insee;
    }
    if (first_territory) {
        if (scratch->territory[0] && strcmp(scratch->territory, first_territory) != 0)
            return domain_fail(err, ST_INVALID_ARGUMENT, "communes",
                               "the communes are in %s, not in territory %s", first_territory,
                               scratch->territory);
        snprintf(scratch->territory, sizeof scratch->territory, "%s", first_territory);
    }
    if (!scratch->territory[0])
        return domain_fail(err, ST_INVALID_ARGUMENT, "territory",
                           "territory (CT1..CT6) or communes is required");
    prog->territory = scratch->territory;
    prog->communes = count ? scratch->communes : NULL;
    prog->n_communes = count;
    return true;
}

static bool kind_needs_operator(int kind)
{
    return kind == KIND_PIG || kind == KIND_OPAH || kind == KIND_OPAH_RU;
}

bool programme_validate(const Passerelle__ProgrammeCreateRequest *req, Passerelle__Programme *prog,
                        programme_scratch_t *scratch, domain_error_t *err)
{
    if (text_blank(req->name))
        return domain_fail(err, ST_INVALID_ARGUMENT, "name", "name is required");
    if (text_utf8_length(req->name) > PROGRAMME_NAME_MAX_CHARS || !text_clean(req->name))
        return domain_fail(err, ST_INVALID_ARGUMENT, "name",
                           "name must be at most %d characters without control characters",
                           PROGRAMME_NAME_MAX_CHARS);
    if (!req->has_kind || req->kind < KIND_PIG || req->kind > KIND_SOCIAL_OWNERSHIP)
        return domain_fail(err, ST_INVALID_ARGUMENT, "kind",
                           "kind is required: PIG, OPAH, OPAH_RU, NPNRU, SOCIAL_HOUSING or "
                           "SOCIAL_OWNERSHIP");
    if (!programme_validate_place(req, prog, scratch, err))
        return false;

    date_t start, end;
    if (!domain_date_required(req->start_date, "start_date", &start, err) ||
        !domain_date_required(req->end_date, "end_date", &end, err))
        return false;
    if (date_compare(end, start) <= 0)
        return domain_fail(err, ST_INVALID_ARGUMENT, "end_date",
                           "end_date %s is not after start_date %s", req->end_date,
                           req->start_date);

    if (!text_blank(req->operator_)) {
        if (strlen(req->operator_) > PROGRAMME_OPERATOR_MAX || !text_clean(req->operator_))
            return domain_fail(err, ST_INVALID_ARGUMENT, "operator",
                               "operator must be at most %d bytes without control characters",
                               PROGRAMME_OPERATOR_MAX);
    } else if (kind_needs_operator(req->kind)) {
        return domain_fail(err, ST_INVALID_ARGUMENT, "operator", "operator is required for a %s",
                           programme_kind_name(req->kind));
    }

    bool has_scheme = req->has_ownership_scheme &&
                      req->ownership_scheme != PASSERELLE__OWNERSHIP_SCHEME__OWNERSHIP_UNSPECIFIED;
    if (req->kind == KIND_SOCIAL_OWNERSHIP) {
        if (!has_scheme || (req->ownership_scheme != PASSERELLE__OWNERSHIP_SCHEME__OWNERSHIP_PSLA &&
                            req->ownership_scheme != PASSERELLE__OWNERSHIP_SCHEME__OWNERSHIP_BRS))
            return domain_fail(err, ST_INVALID_ARGUMENT, "ownership_scheme",
                               "ownership_scheme (PSLA or BRS) is required for SOCIAL_OWNERSHIP");
    } else if (has_scheme) {
        return domain_fail(err, ST_INVALID_ARGUMENT, "ownership_scheme",
                           "ownership_scheme is for SOCIAL_OWNERSHIP only, not %s",
                           programme_kind_name(req->kind));
    }

    if (req->kind == KIND_NPNRU) {
        /* Always stored for an NPNRU, so that its replies show the rights
         * used even when no counterpart was negotiated yet. */
        Passerelle__NpnruCounterparts init = PASSERELLE__NPNRU_COUNTERPARTS__INIT;
        scratch->npnru = init;
        const Passerelle__NpnruCounterparts *in = req->npnru;
        if (in) {
            if (in->has_land_surface_m2 &&
                (!isfinite(in->land_surface_m2) || in->land_surface_m2 < 0))
                return domain_fail(err, ST_INVALID_ARGUMENT, "npnru",
                                   "npnru.land_surface_m2 must be a surface in m², not negative");
            scratch->npnru.has_rights_in_qpv = true;
            scratch->npnru.rights_in_qpv = in->rights_in_qpv;
            scratch->npnru.has_rights_outside_qpv = true;
            scratch->npnru.rights_outside_qpv = in->rights_outside_qpv;
            scratch->npnru.has_land_rights = true;
            scratch->npnru.land_rights = in->land_rights;
            scratch->npnru.has_land_surface_m2 = in->has_land_surface_m2;
            scratch->npnru.land_surface_m2 = in->land_surface_m2;
        }
        prog->npnru = &scratch->npnru;
    } else if (req->npnru) {
        return domain_fail(err, ST_INVALID_ARGUMENT, "npnru",
                           "npnru counterparts are for NPNRU only, not %s",
                           programme_kind_name(req->kind));
    }

    prog->name = req->name;
    prog->has_kind = true;
    prog->kind = req->kind;
    prog->start_date = req->start_date;
    prog->end_date = req->end_date;
    prog->operator_ = text_blank(req->operator_) ? NULL : req->operator_;
    prog->has_ownership_scheme = has_scheme;
    prog->ownership_scheme = req->ownership_scheme;
    return true;
}

/* ====================================================================== */
/* Attaching units                                                        */
/* ====================================================================== */

bool programme_covers(const Passerelle__Programme *prog, const Passerelle__Unit *unit)
{
    if (prog->n_communes == 0)
        return !text_blank(prog->territory) && !text_blank(unit->territory) &&
               strcasecmp(prog->territory, unit->territory) == 0;
    if (text_blank(unit->commune_insee))
        return false;
    for (size_t i = 0; i < prog->n_communes; i++)
        if (prog->communes[i] && strcmp(prog->communes[i], unit->commune_insee) == 0)
            return true;
    return false;
}

attach_decision_t programme_attach_decide(const Passerelle__Programme *prog,
                                          const Passerelle__Unit *unit, domain_error_t *err)
{
    if (!text_blank(unit->programme_id)) {
        if (strcmp(unit->programme_id, prog->id) == 0)
            return ATTACH_ALREADY;
        domain_fail(err, ST_CONFLICT, "unit", "unit %s is attached to programme %s", unit->id,
                    unit->programme_id);
        return ATTACH_REFUSED;
    }
    if (!programme_covers(prog, unit)) {
        if (prog->n_communes == 0)
            domain_fail(err, ST_FAILED_PRECONDITION, "unit",
                        "unit %s is in %s (%s), outside programme %s's territory %s", unit->id,
                        unit->commune_name ? unit->commune_name : "?",
                        unit->territory ? unit->territory : "?", prog->id, prog->territory);
        else
            domain_fail(err, ST_FAILED_PRECONDITION, "unit",
                        "unit %s is in %s (%s), not one of programme %s's communes", unit->id,
                        unit->commune_name ? unit->commune_name : "?",
                        unit->commune_insee ? unit->commune_insee : "?", prog->id);
        return ATTACH_REFUSED;
    }
    return ATTACH_NEW;
}

/* ====================================================================== */
/* programme.list                                                         */
/* ====================================================================== */

bool programme_filter_parse(const Passerelle__ProgrammeListRequest *req, programme_filter_t *filter,
                            domain_error_t *err)
{
    memset(filter, 0, sizeof *filter);
    if (!text_blank(req->territory)) {
        if (!refdata_is_territory(req->territory))
            return domain_fail(err, ST_INVALID_ARGUMENT, "territory",
                               "territory '%.16s' is not one of CT1..CT6", req->territory);
        upper3(req->territory, filter->territory);
    }
    if (req->has_kind && req->kind != PASSERELLE__PROGRAMME_KIND__PROGRAMME_KIND_UNSPECIFIED) {
        if (req->kind < KIND_PIG || req->kind > KIND_SOCIAL_OWNERSHIP)
            return domain_fail(err, ST_INVALID_ARGUMENT, "kind", "kind %d is not a programme kind",
                               req->kind);
        filter->kind = req->kind;
    }
    return domain_page_parse(req->has_page_size, req->page_size, req->page_token, 'P',
                             PROGRAMME_LIST_PAGE_DEFAULT, PROGRAMME_LIST_PAGE_MAX,
                             &filter->page_size, filter->after, err);
}

bool programme_filter_match(const programme_filter_t *filter, const Passerelle__Programme *prog)
{
    if (filter->territory[0] &&
        (text_blank(prog->territory) || strcasecmp(filter->territory, prog->territory) != 0))
        return false;
    if (filter->kind && prog->kind != (Passerelle__ProgrammeKind)filter->kind)
        return false;
    return true;
}

void programme_index_keys(const Passerelle__Programme *prog,
                          char keys[PROGRAMME_INDEX_COUNT][PROGRAMME_INDEX_KEY_MAX])
{
    snprintf(keys[0], PROGRAMME_INDEX_KEY_MAX, "reservations:programmes");
    snprintf(keys[1], PROGRAMME_INDEX_KEY_MAX, "reservations:programmes:territory:%.3s",
             prog->territory ? prog->territory : "");
    snprintf(keys[2], PROGRAMME_INDEX_KEY_MAX, "reservations:programmes:kind:%s",
             programme_kind_name(prog->kind));
}

void programme_filter_index(const programme_filter_t *filter, char key[PROGRAMME_INDEX_KEY_MAX])
{
    if (filter->territory[0])
        snprintf(key, PROGRAMME_INDEX_KEY_MAX, "reservations:programmes:territory:%s",
                 filter->territory);
    else if (filter->kind)
        snprintf(key, PROGRAMME_INDEX_KEY_MAX, "reservations:programmes:kind:%s",
                 programme_kind_name(filter->kind));
    else
        snprintf(key, PROGRAMME_INDEX_KEY_MAX, "reservations:programmes");
}

void programme_units_key(const char *programme_id, char key[PROGRAMME_INDEX_KEY_MAX])
{
    snprintf(key, PROGRAMME_INDEX_KEY_MAX, "reservations:programmes:units:%.40s", programme_id);
}

/* ====================================================================== */
/* Objectives                                                             */
/* ====================================================================== */

bool objective_validate(const Passerelle__ObjectiveSetRequest *req, domain_error_t *err)
{
    if (text_blank(req->programme))
        return domain_fail(err, ST_INVALID_ARGUMENT, "programme", "programme is required (its id)");
    if (!id_valid('P', req->programme))
        return domain_fail(err, ST_INVALID_ARGUMENT, "programme",
                           "programme '%.40s' is not a programme id", req->programme);
    if (!req->has_year || req->year < OBJECTIVE_YEAR_MIN || req->year > OBJECTIVE_YEAR_MAX)
        return domain_fail(err, ST_INVALID_ARGUMENT, "year", "year is required, %d-%d",
                           OBJECTIVE_YEAR_MIN, OBJECTIVE_YEAR_MAX);
    bool has_level =
        req->has_level && req->level != PASSERELLE__CONVENTION_LEVEL__LEVEL_UNSPECIFIED;
    bool has_financing =
        req->has_financing && req->financing != PASSERELLE__FINANCING__FINANCING_UNSPECIFIED;
    if (has_level && (req->level < PASSERELLE__CONVENTION_LEVEL__LEVEL_LOC1 ||
                      req->level > PASSERELLE__CONVENTION_LEVEL__LEVEL_LOC3))
        return domain_fail(err, ST_INVALID_ARGUMENT, "level", "level must be LOC1, LOC2 or LOC3");
    if (has_financing && (req->financing < PASSERELLE__FINANCING__FINANCING_PLAI ||
                          req->financing > PASSERELLE__FINANCING__FINANCING_LLI))
        return domain_fail(err, ST_INVALID_ARGUMENT, "financing",
                           "financing must be PLAI, PLUS, PLS, PLI or LLI");
    if (has_level && has_financing)
        return domain_fail(err, ST_INVALID_ARGUMENT, "financing",
                           "an objective is per convention level or per financing, not both");
    if (!req->has_units)
        return domain_fail(err, ST_INVALID_ARGUMENT, "units", "units is required (0 clears it)");
    if (req->units > OBJECTIVE_UNITS_MAX)
        return domain_fail(err, ST_INVALID_ARGUMENT, "units", "units is at most %d",
                           OBJECTIVE_UNITS_MAX);
    return true;
}

void objective_key(const char *programme_id, unsigned year, int level, int financing,
                   char key[OBJECTIVE_KEY_MAX])
{
    snprintf(key, OBJECTIVE_KEY_MAX, "reservations:objective:%.40s:%u:%d:%d", programme_id, year,
             level, financing);
}

void objective_year_index_key(unsigned year, char key[OBJECTIVE_KEY_MAX])
{
    snprintf(key, OBJECTIVE_KEY_MAX, "reservations:objectives:%u", year);
}

void objective_member(const char *programme_id, int level, int financing,
                      char member[OBJECTIVE_KEY_MAX])
{
    snprintf(member, OBJECTIVE_KEY_MAX, "%.40s:%d:%d", programme_id, level, financing);
}

bool objective_member_parse(const char *member, char programme_id[ID_LEN], int *level,
                            int *financing)
{
    const char *colon = strchr(member, ':');
    if (!colon || (size_t)(colon - member) != ID_LEN - 1)
        return false;
    memcpy(programme_id, member, ID_LEN - 1);
    programme_id[ID_LEN - 1] = '\0';
    if (!id_valid('P', programme_id))
        return false;
    char *end = NULL;
    long l = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end != ':' || l < 0 || l > 3)
        return false;
    const char *rest = end + 1;
    long f = strtol(rest, &end, 10);
    if (end == rest || *end != '\0' || f < 0 || f > 5)
        return false;
    *level = (int)l;
    *financing = (int)f;
    return true;
}

/* ====================================================================== */
/* progress.get                                                           */
/* ====================================================================== */

bool progress_scope_parse(const Passerelle__ProgressRequest *req, date_t today,
                          progress_scope_t *scope, domain_error_t *err)
{
    memset(scope, 0, sizeof *scope);
    if (!text_blank(req->programme) && !text_blank(req->territory))
        return domain_fail(err, ST_INVALID_ARGUMENT, "territory",
                           "give a programme or a territory, not both");
    if (!text_blank(req->programme)) {
        if (!id_valid('P', req->programme))
            return domain_fail(err, ST_INVALID_ARGUMENT, "programme",
                               "programme '%.40s' is not a programme id", req->programme);
        snprintf(scope->programme_id, sizeof scope->programme_id, "%s", req->programme);
    }
    if (!text_blank(req->territory)) {
        if (!refdata_is_territory(req->territory))
            return domain_fail(err, ST_INVALID_ARGUMENT, "territory",
                               "territory '%.16s' is not one of CT1..CT6", req->territory);
        upper3(req->territory, scope->territory);
    }
    scope->year = (unsigned)today.year;
    if (req->has_year && req->year != 0) {
        if (req->year < OBJECTIVE_YEAR_MIN || req->year > OBJECTIVE_YEAR_MAX)
            return domain_fail(err, ST_INVALID_ARGUMENT, "year", "year must be %d-%d",
                               OBJECTIVE_YEAR_MIN, OBJECTIVE_YEAR_MAX);
        scope->year = req->year;
    }
    return true;
}
