/* The need side of the partnership, kept by this service: the economic
 * projects the Métropole shares (a company or a sector settling or growing
 * in a commune, with the jobs it expects and the housing its employees
 * will need) and the demand figures Action Logement shares (per period,
 * territory and priority public: housing requests, aids granted,
 * candidates housed - aggregates, never people).
 *
 * Every write is one transaction (txn.h) holding the records, their index
 * entries and their events in this service's stream, which the projection
 * reads back like any other stream (indicators.h):
 *   economic_project.created / .updated   data EconomicProject,
 *                                         subject projects/<id>
 *   demand.figures_replaced               data DemandPeriod (the period as
 *                                         now stored), subject
 *                                         demand/<period>, one per period
 *                                         an import names
 *
 * The file has two halves: the rules, pure functions that decide from a
 * request and the records read (no Redis, no clock), and the handlers,
 * which validate, read, ask the rules, build the reply and commit.
 *
 * Keys (indicators.h lists every key of the service):
 *   indicators:project:<id>          EconomicProject record
 *   indicators:project-ref:<ref>     record holding the project's id
 *   indicators:projects              every project (ids, score 0)
 *   indicators:projects:territory:<CTn>
 *   indicators:demand:<period>       DemandPeriod record
 *   indicators:demands               the periods ever imported */
#include "indicators.h"
#include "indicators.pb-c.h"

#include "ids.h"
#include "listing.h"
#include "periods.h"
#include "projection.h"
#include "refdata.h"
#include "txn.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NEED_KEY_MAX 192

#define PROJECT_PREFIX        'J'
#define PROJECT_KEY_PREFIX    "indicators:project:"
#define PROJECT_REF_PREFIX    "indicators:project-ref:"
#define PROJECTS_INDEX        "indicators:projects"
#define DEMAND_KEY_PREFIX     "indicators:demand:"
#define DEMANDS_INDEX         "indicators:demands"
#define PROJECT_SUBJECT_FMT   "projects/%s"
#define DEMAND_SUBJECT_FMT    "demand/%s"
#define EVENT_PROJECT_CREATED "economic_project.created"
#define EVENT_PROJECT_UPDATED "economic_project.updated"
#define EVENT_DEMAND_REPLACED "demand.figures_replaced"

/* Limits of a project, in bytes for text. */
#define PROJECT_REF_MAX      64
#define PROJECT_COMPANY_MAX  128
#define PROJECT_SECTOR_MAX   64
#define PROJECT_NEEDS_MAX    64
#define PROJECT_JOBS_MAX     1000000u
#define PROJECT_YEAR_MIN     2000u
#define PROJECT_YEAR_MAX     2100u
#define NEED_UNITS_MAX       100000u
#define PROJECT_PAGE_DEFAULT 50u
#define PROJECT_PAGE_MAX     500u

/* Limits of a demand import. A batch is a file of a few hundred lines in
 * practice (six territories, seven publics, twelve months); the caps keep
 * one request's transaction and reply well under the request size limit. */
#define DEMAND_ROWS_MAX    10000u
#define DEMAND_PERIODS_MAX 240u /* twenty years of months */
#define DEMAND_FIGURE_MAX  10000000u
#define DEMAND_REPORT_MAX  500 /* bytes of the line-by-line refusal */
#define DEMAND_LINE_MAX    200 /* bytes of one line's problems */

/* ====================================================================== */
/* The rules                                                              */
/* ====================================================================== */

/* Why a rule said no: the reply's status, field and message. */
typedef struct {
    status_t status;
    char field[64];
    char message[512];
} need_error_t;

static bool need_fail(need_error_t *err, status_t status, const char *field, const char *format,
                      ...) __attribute__((format(printf, 4, 5)));

static bool need_fail(need_error_t *err, status_t status, const char *field, const char *format,
                      ...)
{
    err->status = status;
    snprintf(err->field, sizeof err->field, "%s", field ? field : "");
    va_list args;
    va_start(args, format);
    vsnprintf(err->message, sizeof err->message, format, args);
    va_end(args);
    return false;
}

static bool blank(const char *s)
{
    return s == NULL || *s == '\0';
}

static bool same_text(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

/* Free text a record may hold: no control characters, which would corrupt
 * logs and exports, and at most max bytes. */
static bool free_text_valid(const char *text, size_t max)
{
    if (strlen(text) > max)
        return false;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return false;
    return true;
}

/* A project reference: printable ASCII, no space at either end, at most
 * PROJECT_REF_MAX bytes, and not something that reads as a project id
 * (requests name a project by id or by reference). */
static bool project_ref_valid(const char *ref)
{
    size_t len = strlen(ref);
    if (len == 0 || len > PROJECT_REF_MAX || ref[0] == ' ' || ref[len - 1] == ' ')
        return false;
    for (size_t i = 0; i < len; i++)
        if (ref[i] < 0x20 || ref[i] > 0x7e)
            return false;
    return !id_valid(PROJECT_PREFIX, ref);
}

static bool enum_known(const ProtobufCEnumDescriptor *desc, int value)
{
    return protobuf_c_enum_descriptor_get_value(desc, value) != NULL;
}

/* "CONFIRMED" for PROJECT_CONFIRMED: the name the figures' status axis
 * uses too. */
static const char *project_status_name(int status)
{
    switch (status) {
    case PASSERELLE__PROJECT_STATUS__PROJECT_PROSPECT:
        return "PROSPECT";
    case PASSERELLE__PROJECT_STATUS__PROJECT_CONFIRMED:
        return "CONFIRMED";
    case PASSERELLE__PROJECT_STATUS__PROJECT_SETTLED:
        return "SETTLED";
    case PASSERELLE__PROJECT_STATUS__PROJECT_DROPPED:
        return "DROPPED";
    default:
        return "UNSPECIFIED";
    }
}

/* A commune by INSEE code or name. A Marseille arrondissement (13207, or
 * its name) counts as Marseille, the commune the figures are kept for; a
 * bare number is not taken for an arrondissement, so that a mistyped
 * INSEE code is not silently Marseille. */
static const commune_t *commune_resolve(const char *text)
{
    const commune_t *commune = refdata_commune(text);
    if (commune)
        return commune;
    if (isdigit((unsigned char)text[0]) && strlen(text) != 5)
        return NULL;
    if (!refdata_arrondissement(text))
        return NULL;
    return refdata_commune(REFDATA_MARSEILLE_INSEE);
}

static bool commune_set(const char *text, Passerelle__EconomicProject *project, need_error_t *err)
{
    if (blank(text))
        return need_fail(err, ST_INVALID_ARGUMENT, "commune",
                         "commune is required (INSEE code or name)");
    const commune_t *commune = commune_resolve(text);
    if (!commune)
        return need_fail(err, ST_INVALID_ARGUMENT, "commune",
                         "commune '%.64s' is not one of the Métropole's 92 communes", text);
    /* The reference table is static: its strings outlive any record. */
    project->commune_insee = (char *)commune->insee;
    project->commune_name = (char *)commune->name;
    project->territory = (char *)commune->territory;
    return true;
}

static bool horizon_valid(uint32_t year, need_error_t *err)
{
    if (year < PROJECT_YEAR_MIN || year > PROJECT_YEAR_MAX)
        return need_fail(err, ST_INVALID_ARGUMENT, "horizon_year",
                         "horizon_year %" PRIu32 " is not a year in %u..%u", year, PROJECT_YEAR_MIN,
                         PROJECT_YEAR_MAX);
    return true;
}

static bool jobs_valid(uint32_t jobs, need_error_t *err)
{
    if (jobs > PROJECT_JOBS_MAX)
        return need_fail(err, ST_INVALID_ARGUMENT, "expected_jobs",
                         "expected_jobs %" PRIu32 " is above %u", jobs, PROJECT_JOBS_MAX);
    return true;
}

/* Each need: 1..NEED_UNITS_MAX units of a known typology and public
 * (either may be unspecified: any). */
static bool needs_valid(Passerelle__HousingNeed *const *needs, size_t count, need_error_t *err)
{
    if (count > PROJECT_NEEDS_MAX)
        return need_fail(err, ST_INVALID_ARGUMENT, "needs", "a project has at most %d needs",
                         PROJECT_NEEDS_MAX);
    for (size_t i = 0; i < count; i++) {
        const Passerelle__HousingNeed *need = needs[i];
        uint32_t units = need->has_units ? need->units : 0;
        if (units < 1 || units > NEED_UNITS_MAX)
            return need_fail(err, ST_INVALID_ARGUMENT, "needs",
                             "needs[%zu].units must be in 1..%u (got %" PRIu32 ")", i,
                             NEED_UNITS_MAX, units);
        if (need->has_typology && !enum_known(&passerelle__typology__descriptor, need->typology))
            return need_fail(err, ST_INVALID_ARGUMENT, "needs",
                             "needs[%zu].typology %d is not a typology (T1..T7)", i,
                             (int)need->typology);
        if (need->has_public_ &&
            !enum_known(&passerelle__priority_public__descriptor, need->public_))
            return need_fail(err, ST_INVALID_ARGUMENT, "needs",
                             "needs[%zu].public %d is not a priority public", i,
                             (int)need->public_);
    }
    return true;
}

/* The project a create request describes, into project (strings and needs
 * borrowed from req and the reference table); id, times and version are
 * the handler's. */
static bool project_from_create(const Passerelle__ProjectCreateRequest *req,
                                Passerelle__EconomicProject *project, need_error_t *err)
{
    if (blank(req->ref))
        return need_fail(err, ST_INVALID_ARGUMENT, "ref",
                         "ref is required (the Métropole's reference of the project)");
    if (!project_ref_valid(req->ref))
        return need_fail(err, ST_INVALID_ARGUMENT, "ref",
                         "ref '%.80s' must be 1..%d printable ASCII characters, without a space "
                         "at either end, and not a project id",
                         req->ref, PROJECT_REF_MAX);
    if (blank(req->company) && blank(req->sector))
        return need_fail(err, ST_INVALID_ARGUMENT, "company",
                         "company or sector is required (who settles or grows)");
    if (!blank(req->company) && !free_text_valid(req->company, PROJECT_COMPANY_MAX))
        return need_fail(err, ST_INVALID_ARGUMENT, "company",
                         "company is at most %d bytes, without control characters",
                         PROJECT_COMPANY_MAX);
    if (!blank(req->sector) && !free_text_valid(req->sector, PROJECT_SECTOR_MAX))
        return need_fail(err, ST_INVALID_ARGUMENT, "sector",
                         "sector is at most %d bytes, without control characters",
                         PROJECT_SECTOR_MAX);
    if (!commune_set(req->commune, project, err))
        return false;
    uint32_t jobs = req->has_expected_jobs ? req->expected_jobs : 0;
    if (!jobs_valid(jobs, err))
        return false;
    if (!req->has_horizon_year || req->horizon_year == 0)
        return need_fail(err, ST_INVALID_ARGUMENT, "horizon_year",
                         "horizon_year is required (the year the jobs are expected, %u..%u)",
                         PROJECT_YEAR_MIN, PROJECT_YEAR_MAX);
    if (!horizon_valid(req->horizon_year, err))
        return false;
    if (!needs_valid(req->needs, req->n_needs, err))
        return false;
    int status = req->has_status ? (int)req->status : 0;
    if (status == PASSERELLE__PROJECT_STATUS__PROJECT_STATUS_UNSPECIFIED)
        status = PASSERELLE__PROJECT_STATUS__PROJECT_PROSPECT;
    if (!enum_known(&passerelle__project_status__descriptor, status))
        return need_fail(err, ST_INVALID_ARGUMENT, "status", "status %d is not a project status",
                         status);
    if (status == PASSERELLE__PROJECT_STATUS__PROJECT_DROPPED)
        return need_fail(err, ST_INVALID_ARGUMENT, "status",
                         "a project is not created DROPPED: create it, then drop it");

    project->ref = req->ref;
    project->company = blank(req->company) ? NULL : req->company;
    project->sector = blank(req->sector) ? NULL : req->sector;
    project->has_expected_jobs = true;
    project->expected_jobs = jobs;
    project->has_horizon_year = true;
    project->horizon_year = req->horizon_year;
    project->needs = req->needs;
    project->n_needs = req->n_needs;
    project->has_status = true;
    project->status = status;
    return true;
}

static bool needs_same(const Passerelle__EconomicProject *a, const Passerelle__EconomicProject *b)
{
    if (a->n_needs != b->n_needs)
        return false;
    for (size_t i = 0; i < a->n_needs; i++) {
        const Passerelle__HousingNeed *x = a->needs[i], *y = b->needs[i];
        if ((x->has_typology ? x->typology : 0) != (y->has_typology ? y->typology : 0) ||
            (x->has_public_ ? x->public_ : 0) != (y->has_public_ ? y->public_ : 0) ||
            (x->has_units ? x->units : 0) != (y->has_units ? y->units : 0))
            return false;
    }
    return true;
}

/* The first field in which a stored project differs from the one a create
 * request describes, NULL when it is the same project (a repeat). */
static const char *project_differs(const Passerelle__EconomicProject *stored,
                                   const Passerelle__EconomicProject *asked)
{
    if (!same_text(stored->company, asked->company))
        return "company";
    if (!same_text(stored->sector, asked->sector))
        return "sector";
    if (!same_text(stored->commune_insee, asked->commune_insee))
        return "commune";
    if (stored->expected_jobs != asked->expected_jobs)
        return "expected_jobs";
    if (stored->horizon_year != asked->horizon_year)
        return "horizon_year";
    if (!needs_same(stored, asked))
        return "needs";
    if (stored->status != asked->status)
        return "status";
    return NULL;
}

/* Status moves forward (PROSPECT, CONFIRMED, SETTLED: a step may be
 * skipped, as when the Métropole learns late that a company has settled),
 * or to DROPPED from anywhere; DROPPED is final. */
static bool status_move_allowed(int from, int to, const char *id, need_error_t *err)
{
    if (from == PASSERELLE__PROJECT_STATUS__PROJECT_DROPPED)
        return need_fail(err, ST_FAILED_PRECONDITION, "status",
                         "project %s is DROPPED: a dropped project is final", id);
    if (to == from || to == PASSERELLE__PROJECT_STATUS__PROJECT_DROPPED)
        return true;
    if (to < from)
        return need_fail(err, ST_FAILED_PRECONDITION, "status",
                         "project %s is %s: it cannot go back to %s", id, project_status_name(from),
                         project_status_name(to));
    return true;
}

/* The project an update makes of current, into next (a shallow copy of
 * current whose changed fields point into req or the reference table).
 * *changed says whether anything differs. */
static bool project_apply_update(const Passerelle__EconomicProject *current,
                                 const Passerelle__ProjectUpdateRequest *req,
                                 Passerelle__EconomicProject *next, bool *changed,
                                 need_error_t *err)
{
    *next = *current;
    *changed = false;
    if (current->status == PASSERELLE__PROJECT_STATUS__PROJECT_DROPPED)
        return need_fail(err, ST_FAILED_PRECONDITION, "status",
                         "project %s is DROPPED: a dropped project is final", current->id);
    /* Unspecified means "unchanged" here: a request names the status it
     * moves to, or none. */
    if (req->has_status && req->status != PASSERELLE__PROJECT_STATUS__PROJECT_STATUS_UNSPECIFIED) {
        if (!enum_known(&passerelle__project_status__descriptor, req->status))
            return need_fail(err, ST_INVALID_ARGUMENT, "status",
                             "status %d is not a project status", (int)req->status);
        if (!status_move_allowed(current->status, req->status, current->id, err))
            return false;
        next->status = req->status;
    }
    if (req->has_expected_jobs) {
        if (!jobs_valid(req->expected_jobs, err))
            return false;
        next->has_expected_jobs = true;
        next->expected_jobs = req->expected_jobs;
    }
    if (req->has_horizon_year) {
        if (!horizon_valid(req->horizon_year, err))
            return false;
        next->has_horizon_year = true;
        next->horizon_year = req->horizon_year;
    }
    if (!blank(req->commune) && !commune_set(req->commune, next, err))
        return false;
    if (req->n_needs && !(req->has_replace_needs && req->replace_needs))
        return need_fail(err, ST_INVALID_ARGUMENT, "replace_needs",
                         "needs are replaced as a whole: set replace_needs with them");
    if (req->has_replace_needs && req->replace_needs) {
        if (!needs_valid(req->needs, req->n_needs, err))
            return false;
        next->needs = req->needs;
        next->n_needs = req->n_needs;
    }
    *changed = project_differs(current, next) != NULL;
    return true;
}

/* --- project listings --- */

typedef struct {
    char territory[4]; /* "" for any */
    int status;        /* 0 for any */
    uint32_t horizon_year;
    unsigned page_size;
    char after[ID_LEN];
} project_filter_t;

static bool project_filter_parse(const Passerelle__ProjectListRequest *req,
                                 project_filter_t *filter, need_error_t *err)
{
    memset(filter, 0, sizeof *filter);
    if (!blank(req->territory)) {
        if (!refdata_is_territory(req->territory))
            return need_fail(err, ST_INVALID_ARGUMENT, "territory",
                             "territory '%.16s' is not one of CT1..CT6", req->territory);
        for (size_t i = 0; i < 3; i++)
            filter->territory[i] = (char)toupper((unsigned char)req->territory[i]);
    }
    if (req->has_status && req->status != PASSERELLE__PROJECT_STATUS__PROJECT_STATUS_UNSPECIFIED) {
        if (!enum_known(&passerelle__project_status__descriptor, req->status))
            return need_fail(err, ST_INVALID_ARGUMENT, "status",
                             "status %d is not a project status", (int)req->status);
        filter->status = req->status;
    }
    if (req->has_horizon_year && req->horizon_year != 0) {
        if (!horizon_valid(req->horizon_year, err))
            return false;
        filter->horizon_year = req->horizon_year;
    }
    filter->page_size = PROJECT_PAGE_DEFAULT;
    if (req->has_page_size && req->page_size != 0) {
        if (req->page_size > PROJECT_PAGE_MAX)
            return need_fail(err, ST_INVALID_ARGUMENT, "page_size", "page_size is at most %u",
                             PROJECT_PAGE_MAX);
        filter->page_size = req->page_size;
    }
    if (!blank(req->page_token)) {
        if (!id_valid(PROJECT_PREFIX, req->page_token))
            return need_fail(err, ST_INVALID_ARGUMENT, "page_token",
                             "page_token must be the next_page_token of a previous page");
        snprintf(filter->after, sizeof filter->after, "%s", req->page_token);
    }
    return true;
}

static bool project_filter_match(const ProtobufCMessage *msg, void *arg)
{
    const project_filter_t *filter = arg;
    const Passerelle__EconomicProject *project = (const Passerelle__EconomicProject *)msg;
    if (filter->status && (int)project->status != filter->status)
        return false;
    if (filter->horizon_year && project->horizon_year != filter->horizon_year)
        return false;
    return true;
}

/* --- demand figures --- */

/* The line a row is reported under: the file's line when the client said,
 * else its position in the batch, from 1. */
static uint32_t demand_line(const Passerelle__DemandRow *row, size_t index)
{
    return row->has_line && row->line > 0 ? row->line : (uint32_t)(index + 1);
}

/* Appends ", "-separated text to a line's problems, cut at DEMAND_LINE_MAX. */
static void problem_add(char *out, const char *format, ...) __attribute__((format(printf, 2, 3)));

static void problem_add(char *out, const char *format, ...)
{
    size_t len = strlen(out);
    if (len + 1 >= DEMAND_LINE_MAX)
        return;
    if (len) {
        snprintf(out + len, DEMAND_LINE_MAX - len, ", ");
        len = strlen(out);
    }
    va_list args;
    va_start(args, format);
    vsnprintf(out + len, DEMAND_LINE_MAX - len, format, args);
    va_end(args);
}

/* What is wrong with one row on its own, into out (DEMAND_LINE_MAX bytes;
 * "" when nothing). */
static void demand_row_problems(const Passerelle__DemandRow *row, char *out)
{
    out[0] = '\0';
    period_kind_t kind;
    if (blank(row->period))
        problem_add(out, "period is missing");
    else if (!demand_period_kind(row->period, &kind))
        problem_add(out,
                    "period '%.16s' is not a month (2026-04), quarter (2026-Q2) or year (2026)",
                    row->period);
    if (blank(row->territory))
        problem_add(out, "territory is missing");
    else if (!refdata_is_territory(row->territory))
        problem_add(out, "territory '%.16s' is not one of CT1..CT6", row->territory);
    if (row->has_public_ && !enum_known(&passerelle__priority_public__descriptor, row->public_))
        problem_add(out, "public %d is not a priority public", (int)row->public_);
    const struct {
        const char *name;
        bool has;
        uint32_t value;
    } figures[] = {
        {"housing_requests", row->has_housing_requests, row->housing_requests},
        {"aids_visale", row->has_aids_visale, row->aids_visale},
        {"aids_loca_pass", row->has_aids_loca_pass, row->aids_loca_pass},
        {"aids_mobility", row->has_aids_mobility, row->aids_mobility},
        {"aids_other", row->has_aids_other, row->aids_other},
        {"housed", row->has_housed, row->housed},
    };
    for (size_t i = 0; i < sizeof figures / sizeof figures[0]; i++)
        if (figures[i].has && figures[i].value > DEMAND_FIGURE_MAX)
            problem_add(out, "%s %" PRIu32 " is above %u", figures[i].name, figures[i].value,
                        DEMAND_FIGURE_MAX);
}

/* A row's identity within a batch, for finding repeats. */
typedef struct {
    const char *period;
    char territory[4];
    int public_;
    size_t index;
} demand_key_t;

static int demand_key_compare(const void *a, const void *b)
{
    const demand_key_t *x = a, *y = b;
    int c = strcmp(x->period, y->period);
    if (c == 0)
        c = strcmp(x->territory, y->territory);
    if (c == 0)
        c = (x->public_ > y->public_) - (x->public_ < y->public_);
    if (c == 0)
        c = (x->index > y->index) - (x->index < y->index);
    return c;
}

/* For every row that repeats an earlier one (same period, territory and
 * public), the line of the first: repeat_of[i], 0 for none. Rows whose
 * period or territory is malformed are left out (already reported).
 * Sorting makes this O(n log n) rather than comparing every pair. False
 * when out of memory. */
static bool demand_find_repeats(Passerelle__DemandRow *const *rows, size_t count,
                                uint32_t *repeat_of)
{
    demand_key_t *keys = calloc(count ? count : 1, sizeof *keys);
    if (!keys)
        return false;
    size_t n = 0;
    for (size_t i = 0; i < count; i++) {
        const Passerelle__DemandRow *row = rows[i];
        period_kind_t kind;
        repeat_of[i] = 0;
        if (blank(row->period) || !demand_period_kind(row->period, &kind) ||
            blank(row->territory) || !refdata_is_territory(row->territory))
            continue;
        keys[n].period = row->period;
        for (size_t c = 0; c < 3; c++)
            keys[n].territory[c] = (char)toupper((unsigned char)row->territory[c]);
        keys[n].public_ = row->has_public_ ? (int)row->public_ : 0;
        keys[n].index = i;
        n++;
    }
    qsort(keys, n, sizeof *keys, demand_key_compare);
    for (size_t i = 1, first = 0; i < n; i++) {
        if (strcmp(keys[i].period, keys[first].period) == 0 &&
            strcmp(keys[i].territory, keys[first].territory) == 0 &&
            keys[i].public_ == keys[first].public_)
            repeat_of[keys[i].index] = demand_line(rows[keys[first].index], keys[first].index);
        else
            first = i;
    }
    free(keys);
    return true;
}

/* Checks every row of a batch. On refusal, err's message lists the bad
 * lines in batch order ("line 4: territory 'CT9' is not one of CT1..CT6;
 * line 7: ..."), cut with "... and N more" to fit DEMAND_REPORT_MAX bytes,
 * and names the field "rows". */
static bool demand_rows_valid(Passerelle__DemandRow *const *rows, size_t count, need_error_t *err)
{
    if (count == 0)
        return need_fail(err, ST_INVALID_ARGUMENT, "rows", "rows is empty: nothing to import");
    if (count > DEMAND_ROWS_MAX)
        return need_fail(err, ST_INVALID_ARGUMENT, "rows",
                         "an import has at most %u rows (got %zu): split the file by period",
                         DEMAND_ROWS_MAX, count);
    uint32_t *repeat_of = calloc(count, sizeof *repeat_of);
    if (!repeat_of || !demand_find_repeats(rows, count, repeat_of)) {
        free(repeat_of);
        return need_fail(err, ST_INTERNAL, NULL, "out of memory");
    }

    /* Two passes: the first counts the bad lines, so that the second knows
     * whether the "... and N more" tail needs room when it places each. */
    char problems[DEMAND_LINE_MAX];
    size_t bad = 0;
    for (size_t i = 0; i < count; i++) {
        demand_row_problems(rows[i], problems);
        if (problems[0] || repeat_of[i])
            bad++;
    }
    if (bad == 0) {
        free(repeat_of);
        return true;
    }

    char report[DEMAND_REPORT_MAX + 1] = "";
    size_t len = 0, seen = 0, shown = 0;
    for (size_t i = 0; i < count; i++) {
        demand_row_problems(rows[i], problems);
        if (repeat_of[i])
            problem_add(problems, "repeats line %" PRIu32 " (same period, territory and public)",
                        repeat_of[i]);
        if (!problems[0])
            continue;
        seen++;
        char entry[DEMAND_LINE_MAX + 48];
        snprintf(entry, sizeof entry, "%sline %" PRIu32 ": %s", shown ? "; " : "",
                 demand_line(rows[i], i), problems);
        /* Room for the tail unless this is the last bad line. */
        char tail[48] = "";
        if (seen < bad)
            snprintf(tail, sizeof tail, "; ... and %zu more", bad - seen);
        if (len + strlen(entry) + strlen(tail) > DEMAND_REPORT_MAX)
            break;
        memcpy(report + len, entry, strlen(entry) + 1);
        len += strlen(entry);
        shown++;
    }
    if (shown < bad) {
        char tail[48];
        snprintf(tail, sizeof tail, "%s... and %zu more", shown ? "; " : "", bad - shown);
        snprintf(report + len, sizeof report - len, "%s", tail);
    }
    free(repeat_of);
    return need_fail(err, ST_INVALID_ARGUMENT, "rows", "%s", report);
}

/* ====================================================================== */
/* Reading records                                                        */
/* ====================================================================== */

static void reply_need_error(reply_t *reply, const need_error_t *err)
{
    reply_error(reply, err->status, err->field[0] ? err->field : NULL, "%s", err->message);
}

static void project_key(const char *id, char out[NEED_KEY_MAX])
{
    snprintf(out, NEED_KEY_MAX, PROJECT_KEY_PREFIX "%s", id);
}

static void project_territory_index(const char *territory, char out[NEED_KEY_MAX])
{
    snprintf(out, NEED_KEY_MAX, PROJECTS_INDEX ":territory:%s", territory);
}

static void demand_key(const char *period, char out[NEED_KEY_MAX])
{
    snprintf(out, NEED_KEY_MAX, DEMAND_KEY_PREFIX "%s", period);
}

static read_result_t project_read(store_t *store, const char *id,
                                  Passerelle__EconomicProject **project_p, uint64_t *version,
                                  reply_t *reply)
{
    char key[NEED_KEY_MAX];
    project_key(id, key);
    return record_read(store, key, &passerelle__economic_project__descriptor,
                       (ProtobufCMessage **)project_p, version, reply);
}

/* The project id a reference points to, into id. */
static read_result_t project_ref_read(store_t *store, const char *ref, char id[ID_LEN],
                                      reply_t *reply)
{
    char key[NEED_KEY_MAX];
    snprintf(key, sizeof key, PROJECT_REF_PREFIX "%s", ref);
    return record_read_ref(store, key, PROJECT_PREFIX, "project", id, reply);
}

/* The project a request names in `field`, by id or by reference:
 * INVALID_ARGUMENT when blank, NOT_FOUND when there is none, both naming
 * the field. On success the caller frees *project_p. */
static bool project_find(store_t *store, const char *id_or_ref, const char *field,
                         Passerelle__EconomicProject **project_p, uint64_t *version, reply_t *reply)
{
    *project_p = NULL;
    if (blank(id_or_ref)) {
        reply_error(reply, ST_INVALID_ARGUMENT, field, "%s is required (a project id or reference)",
                    field);
        return false;
    }
    char id[ID_LEN];
    read_result_t found = READ_ABSENT;
    if (id_valid(PROJECT_PREFIX, id_or_ref)) {
        snprintf(id, sizeof id, "%s", id_or_ref);
        found = READ_FOUND;
    } else if (project_ref_valid(id_or_ref)) {
        found = project_ref_read(store, id_or_ref, id, reply);
    }
    if (found == READ_FOUND) {
        found = project_read(store, id, project_p, version, reply);
        if (found == READ_ABSENT && !id_valid(PROJECT_PREFIX, id_or_ref)) {
            reply_error(reply, ST_INTERNAL, field, "ref %s points to project %s, which is missing",
                        id_or_ref, id);
            return false;
        }
    }
    if (found == READ_ABSENT)
        reply_error(reply, ST_NOT_FOUND, field, "no project has the id or ref '%.80s'", id_or_ref);
    return found == READ_FOUND;
}

/* ====================================================================== */
/* Writing                                                                */
/* ====================================================================== */

static txn_t *txn_for(const call_t *call)
{
    return txn_new(call->idempotency_key, call->fingerprint, call->idempotency_ttl_s);
}

/* Commits txn with the reply built so far; the server logs the write once
 * it is durable (group commit, server.h). */
static void commit(indicators_t *self, const call_t *call, txn_t *txn, reply_t *reply,
                   const char *event_type, const char *subject)
{
    reply_log_commit(reply, event_type, subject);
    reply_commit(reply, call, self->store, txn);
}

/* ====================================================================== */
/* project.create                                                         */
/* ====================================================================== */

INDICATORS_HANDLER(handle_project_create)
{
    indicators_t *self = ctx;
    const Passerelle__ProjectCreateRequest *req = (const Passerelle__ProjectCreateRequest *)request;
    Passerelle__EconomicProject project = PASSERELLE__ECONOMIC_PROJECT__INIT;
    need_error_t err;
    if (!project_from_create(req, &project, &err)) {
        reply_need_error(reply, &err);
        return;
    }

    /* A known reference is a repeat (the project as it is, nothing
     * written) or a clash (another project under that reference). */
    char existing_id[ID_LEN];
    read_result_t found = project_ref_read(self->store, project.ref, existing_id, reply);
    if (found == READ_FAILED)
        return;
    if (found == READ_FOUND) {
        Passerelle__EconomicProject *existing = NULL;
        uint64_t version = 0;
        found = project_read(self->store, existing_id, &existing, &version, reply);
        if (found == READ_ABSENT)
            reply_error(reply, ST_INTERNAL, "ref", "ref %s points to project %s, which is missing",
                        project.ref, existing_id);
        if (found != READ_FOUND)
            return;
        const char *differs = project_differs(existing, &project);
        if (differs)
            reply_error(reply, ST_ALREADY_EXISTS, "ref",
                        "ref %s is already project %s, with another %s", project.ref, existing_id,
                        differs);
        else
            reply_set_body(reply, &existing->base);
        protobuf_c_message_free_unpacked(&existing->base, NULL);
        return;
    }

    char id[ID_LEN], now[TIME_RFC3339_LEN], key[NEED_KEY_MAX], ref_key[NEED_KEY_MAX],
        index[NEED_KEY_MAX], subject[NEED_KEY_MAX];
    id_new(PROJECT_PREFIX, id);
    time_now_rfc3339(now);
    project.id = id;
    project.created_at = now;
    project.updated_at = now;
    project.has_version = true;
    project.version = 1;
    project_key(id, key);
    snprintf(ref_key, sizeof ref_key, PROJECT_REF_PREFIX "%s", project.ref);
    project_territory_index(project.territory, index);
    snprintf(subject, sizeof subject, PROJECT_SUBJECT_FMT, id);

    txn_t *txn = txn_for(call);
    txn_put_message(txn, key, 1, &project.base);
    /* Version 1 guards absence: of two creations under one reference, the
     * second goes stale and, run again, finds the first. */
    txn_put(txn, ref_key, 1, id, strlen(id));
    txn_index_add(txn, PROJECTS_INDEX, id);
    txn_index_add(txn, index, id);
    txn_event(txn, INDICATORS_STREAM, INDICATORS_SOURCE, EVENT_PROJECT_CREATED, subject,
              &project.base);
    reply_set_body(reply, &project.base);
    commit(self, call, txn, reply, EVENT_PROJECT_CREATED, subject);
    txn_destroy(&txn);
}

/* ====================================================================== */
/* project.update                                                         */
/* ====================================================================== */

INDICATORS_HANDLER(handle_project_update)
{
    indicators_t *self = ctx;
    const Passerelle__ProjectUpdateRequest *req = (const Passerelle__ProjectUpdateRequest *)request;
    Passerelle__EconomicProject *current = NULL;
    uint64_t version = 0;
    if (!project_find(self->store, req->id, "id", &current, &version, reply))
        return;

    Passerelle__EconomicProject next;
    bool changed = false;
    need_error_t err;
    if (!project_apply_update(current, req, &next, &changed, &err)) {
        reply_need_error(reply, &err);
    } else if (!changed) {
        /* Nothing to change (a repeat, or an update to what is already
         * there): the project as it is, no version, no event. */
        reply_set_body(reply, &current->base);
    } else {
        char now[TIME_RFC3339_LEN], key[NEED_KEY_MAX], subject[NEED_KEY_MAX];
        time_now_rfc3339(now);
        next.updated_at = now;
        next.has_version = true;
        next.version = version + 1;
        project_key(current->id, key);
        snprintf(subject, sizeof subject, PROJECT_SUBJECT_FMT, current->id);

        /* The put is guarded at the version read: of two concurrent
         * updates, the second runs again on what the first wrote. */
        txn_t *txn = txn_for(call);
        txn_put_message(txn, key, next.version, &next.base);
        if (!same_text(current->territory, next.territory)) {
            char index[NEED_KEY_MAX];
            project_territory_index(current->territory, index);
            txn_index_remove(txn, index, current->id);
            project_territory_index(next.territory, index);
            txn_index_add(txn, index, current->id);
        }
        txn_event(txn, INDICATORS_STREAM, INDICATORS_SOURCE, EVENT_PROJECT_UPDATED, subject,
                  &next.base);
        reply_set_body(reply, &next.base);
        commit(self, call, txn, reply, EVENT_PROJECT_UPDATED, subject);
        txn_destroy(&txn);
    }
    protobuf_c_message_free_unpacked(&current->base, NULL);
}

/* ====================================================================== */
/* project.get, project.list                                              */
/* ====================================================================== */

INDICATORS_HANDLER(handle_project_get)
{
    (void)call;
    indicators_t *self = ctx;
    const Passerelle__ProjectGetRequest *req = (const Passerelle__ProjectGetRequest *)request;
    Passerelle__EconomicProject *project = NULL;
    uint64_t version = 0;
    if (!project_find(self->store, req->id, "id", &project, &version, reply))
        return;
    reply_set_body(reply, &project->base);
    protobuf_c_message_free_unpacked(&project->base, NULL);
}

/* Walks the territory's index (or every project's), keeping the projects
 * of the status and horizon asked. A page costs O(members walked): the
 * partnership shares projects by the hundred, not by the million. */
INDICATORS_HANDLER(handle_project_list)
{
    (void)call;
    indicators_t *self = ctx;
    const Passerelle__ProjectListRequest *req = (const Passerelle__ProjectListRequest *)request;
    project_filter_t filter;
    need_error_t err;
    if (!project_filter_parse(req, &filter, &err)) {
        reply_need_error(reply, &err);
        return;
    }
    char index[NEED_KEY_MAX];
    if (filter.territory[0])
        project_territory_index(filter.territory, index);
    else
        snprintf(index, sizeof index, "%s", PROJECTS_INDEX);
    record_lister_t lister = {self->store, PROJECT_KEY_PREFIX,
                              &passerelle__economic_project__descriptor, reply};
    listing_t listing = {index,   PROJECT_PREFIX,       record_list_read,
                         &lister, project_filter_match, &filter};
    listing_page_t page;
    if (!reply_listing_result(
            reply, self->store,
            listing_page(self->store, &listing, filter.after, filter.page_size, &page)))
        return;
    Passerelle__ProjectList list = PASSERELLE__PROJECT_LIST__INIT;
    list.projects = (Passerelle__EconomicProject **)page.items;
    list.n_projects = page.count;
    list.next_page_token = listing_page_token(&page);
    reply_set_body(reply, &list.base);
    listing_page_free(&page);
}

/* ====================================================================== */
/* demand.import, demand.get                                              */
/* ====================================================================== */

static int period_compare(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* What an import writes, built from a valid batch: the distinct periods
 * (sorted), and for each the period record as it will be stored. The rows
 * are copies of the request's (territory upper-cased, line dropped: it
 * only meant something in the file), whose strings point into the
 * request. */
typedef struct {
    size_t count;
    const char **periods;              /* borrowed from the request */
    Passerelle__DemandPeriod *records; /* count of them */
    Passerelle__DemandPeriod **record_ptrs;
    Passerelle__DemandRow *rows; /* every row, grouped by period */
    Passerelle__DemandRow **row_ptrs;
    char (*territories)[4];
} demand_batch_t;

static void demand_batch_free(demand_batch_t *batch)
{
    free(batch->periods);
    free(batch->records);
    free(batch->record_ptrs);
    free(batch->rows);
    free(batch->row_ptrs);
    free(batch->territories);
    memset(batch, 0, sizeof *batch);
}

/* Groups the valid rows by period. False when out of memory. */
static bool demand_batch_build(Passerelle__DemandRow *const *rows, size_t count,
                               demand_batch_t *batch)
{
    memset(batch, 0, sizeof *batch);
    batch->periods = calloc(count, sizeof *batch->periods);
    batch->rows = calloc(count, sizeof *batch->rows);
    batch->row_ptrs = calloc(count, sizeof *batch->row_ptrs);
    batch->territories = calloc(count, sizeof *batch->territories);
    if (!batch->periods || !batch->rows || !batch->row_ptrs || !batch->territories)
        return false;
    for (size_t i = 0; i < count; i++)
        batch->periods[i] = rows[i]->period;
    qsort(batch->periods, count, sizeof *batch->periods, period_compare);
    size_t distinct = 0;
    for (size_t i = 0; i < count; i++)
        if (distinct == 0 || strcmp(batch->periods[distinct - 1], batch->periods[i]) != 0)
            batch->periods[distinct++] = batch->periods[i];
    batch->count = distinct;
    batch->records = calloc(distinct, sizeof *batch->records);
    batch->record_ptrs = calloc(distinct, sizeof *batch->record_ptrs);
    if (!batch->records || !batch->record_ptrs)
        return false;

    /* Rows in batch order within each period: one walk per period, fine
     * for the few periods a batch names. */
    size_t placed = 0;
    for (size_t p = 0; p < distinct; p++) {
        Passerelle__DemandPeriod init = PASSERELLE__DEMAND_PERIOD__INIT;
        Passerelle__DemandPeriod *record = &batch->records[p];
        *record = init;
        record->period = (char *)batch->periods[p];
        record->rows = &batch->row_ptrs[placed];
        for (size_t i = 0; i < count; i++) {
            if (strcmp(rows[i]->period, batch->periods[p]) != 0)
                continue;
            Passerelle__DemandRow *row = &batch->rows[placed];
            *row = *rows[i];
            row->base.unknown_fields = NULL;
            row->base.n_unknown_fields = 0;
            row->has_line = false;
            row->line = 0;
            for (size_t c = 0; c < 3; c++)
                batch->territories[placed][c] = (char)toupper((unsigned char)rows[i]->territory[c]);
            row->territory = batch->territories[placed];
            if (row->has_public_ && row->public_ == PASSERELLE__PRIORITY_PUBLIC__PUBLIC_UNSPECIFIED)
                row->has_public_ = false;
            batch->row_ptrs[placed] = row;
            placed++;
            record->n_rows++;
        }
        batch->record_ptrs[p] = record;
    }
    return true;
}

/* The import is all or nothing: every row is checked first and one bad
 * row refuses the batch; then every period it names is replaced, in one
 * transaction with one event per period. Replacing, not adding: a batch
 * sent again with corrected figures leaves the corrected figures, which is
 * what the figures of a period must be. */
INDICATORS_HANDLER(handle_demand_import)
{
    indicators_t *self = ctx;
    const Passerelle__DemandImportRequest *req = (const Passerelle__DemandImportRequest *)request;
    need_error_t err;
    if (!demand_rows_valid(req->rows, req->n_rows, &err)) {
        reply_need_error(reply, &err);
        return;
    }
    demand_batch_t batch;
    if (!demand_batch_build(req->rows, req->n_rows, &batch)) {
        demand_batch_free(&batch);
        reply_error(reply, ST_INTERNAL, NULL, "out of memory");
        return;
    }
    if (batch.count > DEMAND_PERIODS_MAX) {
        reply_error(reply, ST_INVALID_ARGUMENT, "rows",
                    "an import names at most %u periods (got %zu): split the file",
                    DEMAND_PERIODS_MAX, batch.count);
        demand_batch_free(&batch);
        return;
    }

    /* The versions the puts are guarded at: of two imports of one period,
     * the second runs again after the first and replaces it in turn. */
    uint64_t *versions = calloc(batch.count, sizeof *versions);
    if (!versions) {
        demand_batch_free(&batch);
        reply_error(reply, ST_INTERNAL, NULL, "out of memory");
        return;
    }
    /* Every period is asked for before a deferred read is answered: inside
     * the server's snapshot a key not read yet answers STORE_LOST at once
     * and is noted as missed, so asking for them all lets one pipeline fill
     * every period, where stopping at the first would cost a round trip per
     * period. A failure the snapshot did not note (Redis refused, or is
     * down outside a snapshot) stops the loop: going on would only try to
     * reconnect once per period. */
    char key[NEED_KEY_MAX];
    store_result_t failure = STORE_OK;
    for (size_t p = 0; p < batch.count; p++) {
        uint8_t *data = NULL;
        size_t len = 0;
        demand_key(batch.periods[p], key);
        size_t misses = store_snapshot_misses(self->store);
        store_result_t result = store_record_get(self->store, key, &versions[p], &data, &len);
        free(data);
        if (result == STORE_OK)
            continue;
        if (failure == STORE_OK)
            failure = result;
        if (store_snapshot_misses(self->store) == misses)
            break;
    }
    if (failure != STORE_OK) {
        reply_store_failure(reply, self->store, failure);
        free(versions);
        demand_batch_free(&batch);
        return;
    }

    char now[TIME_RFC3339_LEN], subject[NEED_KEY_MAX], first_subject[NEED_KEY_MAX] = "";
    time_now_rfc3339(now);
    const char *imported_by = call->caller && call->caller->name[0]
                                  ? call->caller->name
                                  : party_name(call->caller ? call->caller->party : PARTY_NONE);
    txn_t *txn = txn_for(call);
    txn_allow_events(txn, batch.count);
    for (size_t p = 0; p < batch.count; p++) {
        Passerelle__DemandPeriod *record = &batch.records[p];
        record->imported_at = now;
        record->imported_by = (char *)imported_by;
        record->has_version = true;
        record->version = versions[p] + 1;
        demand_key(record->period, key);
        snprintf(subject, sizeof subject, DEMAND_SUBJECT_FMT, record->period);
        if (p == 0)
            snprintf(first_subject, sizeof first_subject, "%s", subject);
        txn_put_message(txn, key, record->version, &record->base);
        txn_index_add(txn, DEMANDS_INDEX, record->period);
        txn_event(txn, INDICATORS_STREAM, INDICATORS_SOURCE, EVENT_DEMAND_REPLACED, subject,
                  &record->base);
    }
    Passerelle__DemandImportReply answer = PASSERELLE__DEMAND_IMPORT_REPLY__INIT;
    answer.periods = batch.record_ptrs;
    answer.n_periods = batch.count;
    reply_set_body(reply, &answer.base);
    commit(self, call, txn, reply, EVENT_DEMAND_REPLACED, first_subject);
    txn_destroy(&txn);
    free(versions);
    demand_batch_free(&batch);
}

INDICATORS_HANDLER(handle_demand_get)
{
    (void)call;
    indicators_t *self = ctx;
    const Passerelle__DemandGetRequest *req = (const Passerelle__DemandGetRequest *)request;
    period_kind_t kind;
    if (blank(req->period)) {
        reply_error(reply, ST_INVALID_ARGUMENT, "period",
                    "period is required (a month 2026-04, quarter 2026-Q2 or year 2026)");
        return;
    }
    if (!demand_period_kind(req->period, &kind)) {
        reply_error(reply, ST_INVALID_ARGUMENT, "period",
                    "period '%.16s' is not a month (2026-04), quarter (2026-Q2) or year (2026)",
                    req->period);
        return;
    }
    char key[NEED_KEY_MAX];
    demand_key(req->period, key);
    Passerelle__DemandPeriod *record = NULL;
    uint64_t version = 0;
    read_result_t found = record_read(self->store, key, &passerelle__demand_period__descriptor,
                                      (ProtobufCMessage **)&record, &version, reply);
    if (found == READ_ABSENT)
        reply_error(reply, ST_NOT_FOUND, "period", "no demand figures were imported for %s",
                    req->period);
    if (found != READ_FOUND)
        return;
    reply_set_body(reply, &record->base);
    protobuf_c_message_free_unpacked(&record->base, NULL);
}
