/* Reservations domain rules: what a valid unit is, which convention step is
 * allowed when, the energy rule for signing, and the listing filters.
 *
 * These functions decide; they never read or write anything but their
 * arguments, so that every rule is tested without Redis or sockets and the
 * handlers stay a thin layer of read, decide, commit. */
#include "domain.h"

#include "refdata.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define STOCK_PRIVATE PASSERELLE__STOCK__STOCK_PRIVATE
#define STOCK_SOCIAL  PASSERELLE__STOCK__STOCK_SOCIAL

#define CS_NONE       PASSERELLE__CONVENTION_STATE__CONVENTION_NONE
#define CS_ENVISAGED  PASSERELLE__CONVENTION_STATE__CONVENTION_ENVISAGED
#define CS_SIGNED     PASSERELLE__CONVENTION_STATE__CONVENTION_SIGNED
#define CS_IN_FORCE   PASSERELLE__CONVENTION_STATE__CONVENTION_IN_FORCE
#define CS_EXPIRED    PASSERELLE__CONVENTION_STATE__CONVENTION_EXPIRED
#define CS_TERMINATED PASSERELLE__CONVENTION_STATE__CONVENTION_TERMINATED
#define CS_ABANDONED  PASSERELLE__CONVENTION_STATE__CONVENTION_ABANDONED

/* ====================================================================== */
/* Helpers of every rules file (domain.h)                                 */
/* ====================================================================== */

bool domain_fail(domain_error_t *err, status_t status, const char *field, const char *format, ...)
{
    err->status = status;
    snprintf(err->field, sizeof err->field, "%s", field ? field : "");
    va_list args;
    va_start(args, format);
    vsnprintf(err->message, sizeof err->message, format, args);
    va_end(args);
    return false;
}

bool text_blank(const char *s)
{
    return s == NULL || *s == '\0';
}

bool text_clean(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return false;
    return true;
}

bool text_same(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

bool text_only_spaces(const char *s)
{
    for (; *s; s++)
        if (*s != ' ')
            return false;
    return true;
}

size_t text_utf8_length(const char *s)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if ((*p & 0xC0) != 0x80)
            n++;
    return n;
}

bool domain_date_or_today(const char *text, const char *field, date_t today, date_t *out,
                          domain_error_t *err)
{
    if (text_blank(text)) {
        *out = today;
        return true;
    }
    if (!date_parse(text, out))
        return domain_fail(err, ST_INVALID_ARGUMENT, field, "%s '%.32s' is not a date (YYYY-MM-DD)",
                           field, text);
    return true;
}

bool domain_date_required(const char *text, const char *field, date_t *out, domain_error_t *err)
{
    if (text_blank(text))
        return domain_fail(err, ST_INVALID_ARGUMENT, field, "%s is required (YYYY-MM-DD)", field);
    return domain_date_or_today(text, field, (date_t){0}, out, err);
}

bool domain_page_parse(bool has_page_size, uint32_t page_size, const char *page_token,
                       char id_prefix, unsigned default_size, unsigned max_size, unsigned *size,
                       char after[ID_LEN], domain_error_t *err)
{
    *size = default_size;
    if (has_page_size && page_size != 0) {
        if (page_size > max_size)
            return domain_fail(err, ST_INVALID_ARGUMENT, "page_size", "page_size is at most %u",
                               max_size);
        *size = page_size;
    }
    after[0] = '\0';
    if (!text_blank(page_token)) {
        if (!id_valid(id_prefix, page_token))
            return domain_fail(err, ST_INVALID_ARGUMENT, "page_token",
                               "page_token must be the next_page_token of a previous page");
        snprintf(after, ID_LEN, "%s", page_token);
    }
    return true;
}

/* ====================================================================== */
/* Names                                                                  */
/* ====================================================================== */

const char *convention_state_name(int state)
{
    static const char *const names[] = {"NONE",    "ENVISAGED",  "SIGNED",   "IN_FORCE",
                                        "EXPIRED", "TERMINATED", "ABANDONED"};
    if (state < 0 || state >= (int)(sizeof names / sizeof names[0]))
        return "UNKNOWN";
    return names[state];
}

const char *stock_name(int stock)
{
    switch (stock) {
    case STOCK_PRIVATE:
        return "PRIVATE";
    case STOCK_SOCIAL:
        return "SOCIAL";
    case PASSERELLE__STOCK__STOCK_UNSPECIFIED:
        return "UNSPECIFIED";
    default:
        return "UNKNOWN";
    }
}

const char *energy_class_letter(int energy_class)
{
    static const char *const letters[] = {"A", "B", "C", "D", "E", "F", "G"};
    if (energy_class < 1 || energy_class > 7)
        return "unknown";
    return letters[energy_class - 1];
}

bool convention_state_live(int state)
{
    return state == CS_ENVISAGED || state == CS_SIGNED || state == CS_IN_FORCE;
}

/* ====================================================================== */
/* Energy rule                                                            */
/* ====================================================================== */

static int energy_class_parse(const char *s, size_t len)
{
    if (len != 1)
        return 0;
    int c = toupper((unsigned char)s[0]);
    return (c >= 'A' && c <= 'G') ? c - 'A' + 1 : 0;
}

bool energy_rules_parse(const char *text, energy_rules_t *out, char *err, size_t err_size)
{
    memset(out, 0, sizeof *out);
    if (text_blank(text)) {
        snprintf(err, err_size, "empty energy rule");
        return false;
    }
    const char *p = text;
    size_t len = strcspn(p, ",");
    out->base_class = energy_class_parse(p, len);
    if (!out->base_class) {
        snprintf(err, err_size, "'%.*s' is not an energy class A-G", (int)len, p);
        return false;
    }
    p += len;
    int previous_class = out->base_class;
    while (*p == ',') {
        p++;
        len = strcspn(p, ",");
        const char *colon = memchr(p, ':', len);
        if (!colon) {
            snprintf(err, err_size, "'%.*s' is not date:class", (int)len, p);
            return false;
        }
        char date_text[DATE_LEN + 1] = "";
        size_t date_len = (size_t)(colon - p);
        date_t from;
        if (date_len >= sizeof date_text) {
            snprintf(err, err_size, "'%.*s' is not a date YYYY-MM-DD", (int)date_len, p);
            return false;
        }
        memcpy(date_text, p, date_len);
        date_text[date_len] = '\0';
        if (!date_parse(date_text, &from)) {
            snprintf(err, err_size, "'%s' is not a date YYYY-MM-DD", date_text);
            return false;
        }
        int max_class = energy_class_parse(colon + 1, len - date_len - 1);
        if (!max_class) {
            snprintf(err, err_size, "'%.*s' is not an energy class A-G", (int)(len - date_len - 1),
                     colon + 1);
            return false;
        }
        if (out->step_count == ENERGY_RULES_MAX) {
            snprintf(err, err_size, "more than %d dated classes", ENERGY_RULES_MAX);
            return false;
        }
        if (out->step_count > 0 && date_compare(from, out->steps[out->step_count - 1].from) <= 0) {
            snprintf(err, err_size, "%s does not follow the previous date", date_text);
            return false;
        }
        if (max_class > previous_class) {
            snprintf(err, err_size, "class %s from %s is looser than %s before it",
                     energy_class_letter(max_class), date_text,
                     energy_class_letter(previous_class));
            return false;
        }
        out->steps[out->step_count].from = from;
        out->steps[out->step_count].max_class = max_class;
        out->step_count++;
        previous_class = max_class;
        p += len;
    }
    return true;
}

int energy_rules_max_class(const energy_rules_t *rules, date_t on)
{
    int max_class = rules->base_class;
    for (size_t i = 0; i < rules->step_count; i++)
        if (date_compare(on, rules->steps[i].from) >= 0)
            max_class = rules->steps[i].max_class;
    return max_class;
}

/* ====================================================================== */
/* Units                                                                  */
/* ====================================================================== */

bool unit_external_ref_valid(const char *text)
{
    if (text_blank(text))
        return false;
    size_t len = strlen(text);
    if (len > UNIT_EXTERNAL_REF_MAX || text[0] == ' ' || text[len - 1] == ' ')
        return false;
    for (size_t i = 0; i < len; i++)
        if (text[i] < 0x20 || text[i] > 0x7e)
            return false;
    return true;
}

/* A bare number ("7") names an arrondissement only where an arrondissement
 * is expected; as a commune it must be the full INSEE code (13207) or the
 * name, so that a typo in a commune code is not taken for Marseille. */
static const commune_t *arrondissement_as_commune(const char *text)
{
    if (isdigit((unsigned char)text[0]) && strlen(text) != 5)
        return NULL;
    return refdata_arrondissement(text);
}

static bool unit_resolve_commune(const Passerelle__UnitRegisterRequest *req, Passerelle__Unit *unit,
                                 domain_error_t *err)
{
    if (text_blank(req->commune))
        return domain_fail(err, ST_INVALID_ARGUMENT, "commune",
                           "commune is required (INSEE code or name)");
    const commune_t *commune = refdata_commune(req->commune);
    const commune_t *arrondissement = NULL;
    if (!commune) {
        arrondissement = arrondissement_as_commune(req->commune);
        if (!arrondissement)
            return domain_fail(err, ST_INVALID_ARGUMENT, "commune",
                               "commune '%.64s' is not one of the Métropole's 92 communes",
                               req->commune);
        commune = refdata_commune(REFDATA_MARSEILLE_INSEE);
        if (!commune)
            return domain_fail(err, ST_INTERNAL, "commune", "reference data lacks Marseille");
    }
    bool marseille = strcmp(commune->insee, REFDATA_MARSEILLE_INSEE) == 0;
    if (!text_blank(req->arrondissement)) {
        if (!marseille)
            return domain_fail(err, ST_INVALID_ARGUMENT, "arrondissement",
                               "%s (%s) has no arrondissements; only Marseille does", commune->name,
                               commune->insee);
        const commune_t *given = refdata_arrondissement(req->arrondissement);
        if (!given)
            return domain_fail(
                err, ST_INVALID_ARGUMENT, "arrondissement",
                "arrondissement '%.64s' is not one of Marseille's (13201-13216, 1-16 or "
                "name)",
                req->arrondissement);
        if (arrondissement && arrondissement != given)
            return domain_fail(err, ST_INVALID_ARGUMENT, "arrondissement",
                               "arrondissement %s contradicts commune %s", given->insee,
                               arrondissement->insee);
        arrondissement = given;
    }
    if (marseille && !arrondissement)
        return domain_fail(err, ST_INVALID_ARGUMENT, "arrondissement",
                           "a unit in Marseille (13055) needs its arrondissement (13201-13216)");
    unit->commune_insee = (char *)commune->insee;
    unit->commune_name = (char *)commune->name;
    unit->arrondissement_insee = arrondissement ? (char *)arrondissement->insee : NULL;
    unit->territory = (char *)commune->territory;
    return true;
}

bool unit_validate(const Passerelle__UnitRegisterRequest *req, Passerelle__Unit *unit,
                   domain_error_t *err)
{
    if (!unit_external_ref_valid(req->external_ref))
        return domain_fail(
            err, ST_INVALID_ARGUMENT, "external_ref",
            "external_ref is required: 1-%d printable ASCII characters, no surrounding "
            "spaces",
            UNIT_EXTERNAL_REF_MAX);
    unit->external_ref = req->external_ref;

    if (text_blank(req->address))
        return domain_fail(err, ST_INVALID_ARGUMENT, "address", "address is required");
    if (strlen(req->address) > UNIT_ADDRESS_MAX || !text_clean(req->address))
        return domain_fail(err, ST_INVALID_ARGUMENT, "address",
                           "address must be at most %d bytes without control characters",
                           UNIT_ADDRESS_MAX);
    unit->address = req->address;

    if (!unit_resolve_commune(req, unit, err))
        return false;

    if (!req->has_stock || (req->stock != STOCK_PRIVATE && req->stock != STOCK_SOCIAL))
        return domain_fail(err, ST_INVALID_ARGUMENT, "stock",
                           "stock is required: PRIVATE or SOCIAL");
    unit->has_stock = true;
    unit->stock = req->stock;

    if (!req->has_typology || req->typology < PASSERELLE__TYPOLOGY__TYPOLOGY_T1 ||
        req->typology > PASSERELLE__TYPOLOGY__TYPOLOGY_T7)
        return domain_fail(err, ST_INVALID_ARGUMENT, "typology", "typology is required: T1 to T7");
    unit->has_typology = true;
    unit->typology = req->typology;

    /* Written so that NaN fails too. */
    if (!req->has_surface_m2 || !(req->surface_m2 > 0 && req->surface_m2 <= UNIT_SURFACE_MAX_M2))
        return domain_fail(err, ST_INVALID_ARGUMENT, "surface_m2",
                           "surface_m2 is required, more than 0 and at most %.0f",
                           UNIT_SURFACE_MAX_M2);
    unit->has_surface_m2 = true;
    unit->surface_m2 = req->surface_m2;

    /* An organisation for social stock; for a private owner a pseudonymous
     * reference of the operator's file, never the owner's name. */
    if (text_blank(req->landlord))
        return domain_fail(err, ST_INVALID_ARGUMENT, "landlord",
                           "landlord is required (organisation, or pseudonymous owner reference)");
    if (strlen(req->landlord) > UNIT_LANDLORD_MAX || !text_clean(req->landlord))
        return domain_fail(err, ST_INVALID_ARGUMENT, "landlord",
                           "landlord must be at most %d bytes without control characters",
                           UNIT_LANDLORD_MAX);
    unit->landlord = req->landlord;

    if (req->has_financing && req->financing != PASSERELLE__FINANCING__FINANCING_UNSPECIFIED) {
        if (req->stock != STOCK_SOCIAL)
            return domain_fail(err, ST_INVALID_ARGUMENT, "financing",
                               "financing applies to SOCIAL stock only, not %s",
                               stock_name(req->stock));
        if (req->financing < PASSERELLE__FINANCING__FINANCING_PLAI ||
            req->financing > PASSERELLE__FINANCING__FINANCING_LLI)
            return domain_fail(err, ST_INVALID_ARGUMENT, "financing",
                               "financing must be PLAI, PLUS, PLS, PLI or LLI");
        unit->has_financing = true;
        unit->financing = req->financing;
    }

    if (req->has_energy_class &&
        req->energy_class != PASSERELLE__ENERGY_CLASS__ENERGY_UNSPECIFIED) {
        if (req->energy_class < PASSERELLE__ENERGY_CLASS__ENERGY_A ||
            req->energy_class > PASSERELLE__ENERGY_CLASS__ENERGY_G)
            return domain_fail(err, ST_INVALID_ARGUMENT, "energy_class",
                               "energy_class must be A to G");
        unit->has_energy_class = true;
        unit->energy_class = req->energy_class;
    }

    if (!text_blank(req->programme_id)) {
        if (strlen(req->programme_id) > UNIT_PROGRAMME_ID_MAX || !text_clean(req->programme_id))
            return domain_fail(err, ST_INVALID_ARGUMENT, "programme_id",
                               "programme_id must be at most %d bytes without control characters",
                               UNIT_PROGRAMME_ID_MAX);
        unit->programme_id = req->programme_id;
    }

    unit->has_adapted_disability = req->has_adapted_disability;
    unit->adapted_disability = req->adapted_disability;
    unit->has_in_qpv = req->has_in_qpv;
    unit->in_qpv = req->in_qpv;
    return true;
}

const char *unit_registration_differs(const Passerelle__Unit *a, const Passerelle__Unit *b)
{
    /* Absent and default are the same registration: a repeat that omits a
     * false flag is still a repeat. */
    if (!text_same(a->external_ref, b->external_ref))
        return "external_ref";
    if (!text_same(a->address, b->address))
        return "address";
    if (!text_same(a->commune_insee, b->commune_insee))
        return "commune";
    if (!text_same(a->arrondissement_insee, b->arrondissement_insee))
        return "arrondissement";
    if (a->stock != b->stock)
        return "stock";
    if (a->typology != b->typology)
        return "typology";
    if (a->surface_m2 != b->surface_m2)
        return "surface_m2";
    if (!text_same(a->landlord, b->landlord))
        return "landlord";
    if ((a->has_financing ? a->financing : 0) != (b->has_financing ? b->financing : 0))
        return "financing";
    if ((a->has_adapted_disability && a->adapted_disability) !=
        (b->has_adapted_disability && b->adapted_disability))
        return "adapted_disability";
    if ((a->has_energy_class ? a->energy_class : 0) != (b->has_energy_class ? b->energy_class : 0))
        return "energy_class";
    if ((a->has_in_qpv && a->in_qpv) != (b->has_in_qpv && b->in_qpv))
        return "in_qpv";
    /* A unit may be attached to a programme after it was registered: a
     * repeat that does not name a programme is still the same registration. */
    if (!text_blank(b->programme_id) && !text_same(a->programme_id, b->programme_id))
        return "programme_id";
    return NULL;
}

/* ====================================================================== */
/* Listing                                                                */
/* ====================================================================== */

bool unit_filter_parse(const Passerelle__UnitListRequest *req, unit_filter_t *filter,
                       domain_error_t *err)
{
    memset(filter, 0, sizeof *filter);
    if (!text_blank(req->territory)) {
        if (!refdata_is_territory(req->territory))
            return domain_fail(err, ST_INVALID_ARGUMENT, "territory",
                               "territory '%.16s' is not one of CT1..CT6", req->territory);
        for (size_t i = 0; i < 3; i++)
            filter->territory[i] = (char)toupper((unsigned char)req->territory[i]);
        filter->territory[3] = '\0';
    }
    if (!text_blank(req->commune)) {
        const commune_t *commune = refdata_commune(req->commune);
        if (!commune) {
            const commune_t *arrondissement = arrondissement_as_commune(req->commune);
            if (!arrondissement)
                return domain_fail(err, ST_INVALID_ARGUMENT, "commune",
                                   "commune '%.64s' is not one of the Métropole's 92 communes",
                                   req->commune);
            snprintf(filter->arrondissement_insee, sizeof filter->arrondissement_insee, "%s",
                     arrondissement->insee);
            snprintf(filter->commune_insee, sizeof filter->commune_insee, "%s",
                     REFDATA_MARSEILLE_INSEE);
        } else {
            snprintf(filter->commune_insee, sizeof filter->commune_insee, "%s", commune->insee);
        }
    }
    if (req->has_stock && req->stock != PASSERELLE__STOCK__STOCK_UNSPECIFIED) {
        if (req->stock != STOCK_PRIVATE && req->stock != STOCK_SOCIAL)
            return domain_fail(err, ST_INVALID_ARGUMENT, "stock",
                               "stock must be PRIVATE or SOCIAL");
        filter->stock = req->stock;
    }
    if (req->has_convention_state) {
        if (req->convention_state < CS_NONE || req->convention_state > CS_ABANDONED)
            return domain_fail(err, ST_INVALID_ARGUMENT, "convention_state",
                               "convention_state %d is not a convention state",
                               req->convention_state);
        filter->has_convention_state = true;
        filter->convention_state = req->convention_state;
    }
    return domain_page_parse(req->has_page_size, req->page_size, req->page_token, 'U',
                             UNIT_LIST_PAGE_DEFAULT, UNIT_LIST_PAGE_MAX, &filter->page_size,
                             filter->after, err);
}

bool unit_filter_match(const unit_filter_t *filter, const Passerelle__Unit *unit)
{
    if (filter->territory[0] && !text_same(filter->territory, unit->territory))
        return false;
    if (filter->commune_insee[0] && !text_same(filter->commune_insee, unit->commune_insee))
        return false;
    if (filter->arrondissement_insee[0] &&
        !text_same(filter->arrondissement_insee, unit->arrondissement_insee))
        return false;
    if (filter->stock && (int)unit->stock != filter->stock)
        return false;
    if (filter->has_convention_state && (int)unit->convention_state != filter->convention_state)
        return false;
    return true;
}

void unit_state_index_key(int state, char out[UNIT_INDEX_KEY_MAX])
{
    snprintf(out, UNIT_INDEX_KEY_MAX, "reservations:units:convention:%s",
             convention_state_name(state));
}

size_t unit_filter_indexes(const unit_filter_t *filter,
                           char keys[UNIT_INDEX_CANDIDATES][UNIT_INDEX_KEY_MAX])
{
    size_t n = 0;
    if (filter->territory[0])
        snprintf(keys[n++], UNIT_INDEX_KEY_MAX, "reservations:units:territory:%s",
                 filter->territory);
    if (filter->commune_insee[0])
        snprintf(keys[n++], UNIT_INDEX_KEY_MAX, "reservations:units:commune:%s",
                 filter->commune_insee);
    if (filter->stock)
        snprintf(keys[n++], UNIT_INDEX_KEY_MAX, "reservations:units:stock:%s",
                 stock_name(filter->stock));
    if (filter->has_convention_state)
        unit_state_index_key(filter->convention_state, keys[n++]);
    snprintf(keys[n++], UNIT_INDEX_KEY_MAX, "reservations:units");
    return n;
}

void unit_index_keys(const Passerelle__Unit *unit,
                     char keys[UNIT_INDEX_CANDIDATES][UNIT_INDEX_KEY_MAX])
{
    snprintf(keys[0], UNIT_INDEX_KEY_MAX, "reservations:units");
    snprintf(keys[1], UNIT_INDEX_KEY_MAX, "reservations:units:territory:%s",
             unit->territory ? unit->territory : "");
    snprintf(keys[2], UNIT_INDEX_KEY_MAX, "reservations:units:commune:%s",
             unit->commune_insee ? unit->commune_insee : "");
    snprintf(keys[3], UNIT_INDEX_KEY_MAX, "reservations:units:stock:%s", stock_name(unit->stock));
    unit_state_index_key(unit->convention_state, keys[4]);
    if (text_blank(unit->territory))
        keys[1][0] = '\0';
    if (text_blank(unit->commune_insee))
        keys[2][0] = '\0';
}

/* ====================================================================== */
/* Conventions                                                            */
/* ====================================================================== */

bool convention_envisage_validate(const Passerelle__ConventionEnvisageRequest *req, date_t today,
                                  date_t *envisaged_on, domain_error_t *err)
{
    if (text_blank(req->unit))
        return domain_fail(err, ST_INVALID_ARGUMENT, "unit",
                           "unit is required (unit id or external reference)");
    if (!req->has_level || req->level < PASSERELLE__CONVENTION_LEVEL__LEVEL_LOC1 ||
        req->level > PASSERELLE__CONVENTION_LEVEL__LEVEL_LOC3)
        return domain_fail(err, ST_INVALID_ARGUMENT, "level",
                           "level is required: LOC1, LOC2 or LOC3");
    if (req->has_intermediation &&
        (req->intermediation < PASSERELLE__INTERMEDIATION__INTERMEDIATION_NONE ||
         req->intermediation > PASSERELLE__INTERMEDIATION__INTERMEDIATION_SUBLEASE))
        return domain_fail(err, ST_INVALID_ARGUMENT, "intermediation",
                           "intermediation must be NONE, MANAGEMENT_MANDATE or SUBLEASE");
    if (req->has_rent_ceiling_eur_m2 &&
        !(req->rent_ceiling_eur_m2 > 0 &&
          req->rent_ceiling_eur_m2 <= CONVENTION_RENT_CEILING_MAX_EUR_M2))
        return domain_fail(err, ST_INVALID_ARGUMENT, "rent_ceiling_eur_m2",
                           "rent_ceiling_eur_m2 must be more than 0 and at most %.0f",
                           CONVENTION_RENT_CEILING_MAX_EUR_M2);
    return domain_date_or_today(req->envisaged_on, "envisaged_on", today, envisaged_on, err);
}

bool convention_may_envisage(const Passerelle__Unit *unit, domain_error_t *err)
{
    if (unit->stock != STOCK_PRIVATE)
        return domain_fail(err, ST_FAILED_PRECONDITION, "unit",
                           "unit %s is %s stock; ANAH conventions are for PRIVATE units", unit->id,
                           stock_name(unit->stock));
    if (convention_state_live(unit->convention_state))
        return domain_fail(err, ST_FAILED_PRECONDITION, "unit",
                           "unit %s already has convention %s, which is %s", unit->id,
                           unit->convention_id ? unit->convention_id : "?",
                           convention_state_name(unit->convention_state));
    return true;
}

const char *convention_step_request(convention_step_t step)
{
    switch (step) {
    case STEP_SIGN:
        return "convention.sign";
    case STEP_IN_FORCE:
        return "convention.in_force";
    case STEP_END:
        return "convention.end";
    case STEP_ABANDON:
        return "convention.abandon";
    }
    return "convention.?";
}

const char *convention_step_event(convention_step_t step)
{
    switch (step) {
    case STEP_SIGN:
        return "convention.signed";
    case STEP_IN_FORCE:
        return "convention.in_force";
    case STEP_END:
        return "convention.ended";
    case STEP_ABANDON:
        return "convention.abandoned";
    }
    return "convention.?";
}

int convention_step_needs(convention_step_t step)
{
    switch (step) {
    case STEP_SIGN:
    case STEP_ABANDON:
        return CS_ENVISAGED;
    case STEP_IN_FORCE:
        return CS_SIGNED;
    case STEP_END:
        return CS_IN_FORCE;
    }
    return -1;
}

int convention_transition(int from, convention_step_t step, bool terminated)
{
    if (from != convention_step_needs(step))
        return -1;
    switch (step) {
    case STEP_SIGN:
        return CS_SIGNED;
    case STEP_IN_FORCE:
        return CS_IN_FORCE;
    case STEP_END:
        return terminated ? CS_TERMINATED : CS_EXPIRED;
    case STEP_ABANDON:
        return CS_ABANDONED;
    }
    return -1;
}

date_t convention_end_date(date_t signed_on, bool with_works)
{
    return date_add_years(signed_on, with_works ? CONVENTION_YEARS_WORKS : CONVENTION_YEARS);
}

/* The date of the step before this one, which this one may not precede. */
static const char *previous_step_date(const Passerelle__Convention *conv, convention_step_t step)
{
    switch (step) {
    case STEP_SIGN:
    case STEP_ABANDON:
        return conv->envisaged_on;
    case STEP_IN_FORCE:
        return conv->signed_on;
    case STEP_END:
        return conv->in_force_on;
    }
    return NULL;
}

bool convention_step_decide(const Passerelle__Convention *conv, const Passerelle__Unit *unit,
                            convention_step_t step, const Passerelle__ConventionStepRequest *req,
                            date_t today, const energy_rules_t *rules,
                            convention_step_result_t *out, domain_error_t *err)
{
    memset(out, 0, sizeof *out);
    date_t on;
    if (!domain_date_or_today(req->date, "date", today, &on, err))
        return false;
    bool terminated = false;
    if (step == STEP_END) {
        if (!text_blank(req->reason) && strcasecmp(req->reason, "terminated") == 0)
            terminated = true;
        else if (text_blank(req->reason) || strcasecmp(req->reason, "expired") != 0)
            return domain_fail(err, ST_INVALID_ARGUMENT, "reason",
                               "reason is required: expired or terminated");
        out->end_reason = terminated ? "terminated" : "expired";
    } else if (!text_blank(req->reason)) {
        return domain_fail(err, ST_INVALID_ARGUMENT, "reason",
                           "reason applies to convention.end only");
    }

    out->state = convention_transition(conv->state, step, terminated);
    if (out->state < 0)
        return domain_fail(err, ST_FAILED_PRECONDITION, "id", "convention %s is %s; %s needs %s",
                           conv->id, convention_state_name(conv->state),
                           convention_step_request(step),
                           convention_state_name(convention_step_needs(step)));

    date_format(on, out->date);
    const char *previous_text = previous_step_date(conv, step);
    date_t previous;
    if (previous_text && date_parse(previous_text, &previous) && date_compare(on, previous) < 0)
        return domain_fail(err, ST_FAILED_PRECONDITION, "date",
                           "%s on %s would precede the previous step of convention %s, on %s",
                           convention_step_request(step), out->date, conv->id, previous_text);

    if (step == STEP_SIGN) {
        int max_class = energy_rules_max_class(rules, on);
        int energy = unit->has_energy_class ? unit->energy_class : 0;
        if (energy < PASSERELLE__ENERGY_CLASS__ENERGY_A ||
            energy > PASSERELLE__ENERGY_CLASS__ENERGY_G)
            return domain_fail(
                err, ST_FAILED_PRECONDITION, "energy_class",
                "unit %s has no known energy class; signing on %s needs %s or better", unit->id,
                out->date, energy_class_letter(max_class));
        if (energy > max_class)
            return domain_fail(err, ST_FAILED_PRECONDITION, "energy_class",
                               "unit %s is class %s; signing on %s needs %s or better", unit->id,
                               energy_class_letter(energy), out->date,
                               energy_class_letter(max_class));
        date_format(convention_end_date(on, conv->with_works), out->end_date);
    }

    if (step == STEP_END && !terminated) {
        date_t end;
        if (!conv->end_date || !date_parse(conv->end_date, &end))
            return domain_fail(err, ST_INTERNAL, "id", "convention %s has no end date", conv->id);
        if (date_compare(on, end) < 0)
            return domain_fail(err, ST_FAILED_PRECONDITION, "date",
                               "convention %s runs until %s; it cannot expire on %s (end it early "
                               "with reason terminated)",
                               conv->id, conv->end_date, out->date);
    }
    return true;
}

void convention_step_apply(Passerelle__Convention *conv, convention_step_t step,
                           const convention_step_result_t *result)
{
    conv->has_state = true;
    conv->state = result->state;
    switch (step) {
    case STEP_SIGN:
        conv->signed_on = (char *)result->date;
        conv->end_date = (char *)result->end_date;
        break;
    case STEP_IN_FORCE:
        conv->in_force_on = (char *)result->date;
        break;
    case STEP_END:
    case STEP_ABANDON:
        conv->ended_on = (char *)result->date;
        conv->end_reason = (char *)(step == STEP_END ? result->end_reason : "abandoned");
        break;
    }
}
