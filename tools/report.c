/* passerelle report: the yearly review of the partnership.
 *
 * The convention asks the two parties to review the partnership every year
 * with figures. This command reads them from the indicators service, one
 * indicator.series per indicator, scope and filter (months of the year,
 * the year itself, or the year and the two before for the trends), and
 * writes one HTML file that needs nothing else: the CSS is inline, the
 * charts are inline SVG drawn here (rects, polylines, axes, labels), and
 * there is no script, font, image or stylesheet to fetch, so the file can
 * be mailed, archived and printed as it is.
 *
 * Every figure cell names what it shows in data attributes (indicator,
 * scope, period, filter, value, defined), so that a program can read the
 * tables back and hold them against the service's answers.
 *
 * All figures are read first and written after. Each reply names the
 * generation its figures came from; should a rebuild switch generations
 * while the report reads, the figures are read again (a few times), so
 * that one report shows one generation, and its header says which.
 *
 * Memory: the figures of every scope sit in one array (some hundred
 * kilobytes); the definitions are the unpacked indicator.list reply. The
 * file is written beside its target and renamed when complete, so a failed
 * run leaves no half report. */
#define _GNU_SOURCE
#include "report.h"

#include "cli_common.h"
#include "envelope.pb-c.h"
#include "ids.h"
#include "indicators.pb-c.h"
#include "periods.h"
#include "refdata.h"
#include "status.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h> /* isfinite: a macro, no libm */
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define REPORT_DEFAULT_ENDPOINT "tcp://127.0.0.1:7403"
#define MONTHS                  12
#define COLUMNS                 (MONTHS + 1) /* the months, then the year */
#define YEAR_COLUMN             MONTHS
#define TREND_YEARS             3 /* the year and the two before */
#define SCOPES_MAX              7 /* the Métropole and CT1..CT6 */
#define LINES_MAX               16
#define COLLECT_ATTEMPTS        3    /* reads of everything, should generations differ */
#define YEAR_MIN                1902 /* the trend's first year must be a period key */
#define YEAR_MAX                9999

/* ==========================================================================
 * What the report shows
 * ======================================================================== */

typedef enum {
    FMT_COUNT, /* integers (a fraction, should one come, with 2 decimals) */
    FMT_DAYS,  /* 1 decimal when not whole */
    FMT_RATIO, /* 2 decimals */
} format_t;

/* One row of a table: one indicator with one filter. */
typedef struct {
    const char *indicator;
    const char *filter; /* "axis=VALUE", or "" for the total */
    const char *label;
    format_t format;
} line_t;

typedef enum {
    BLOCK_STATES,
    BLOCK_LEVELS,
    BLOCK_ACTIVE,
    BLOCK_DELAY,
    BLOCK_OBJECTIVES,
    BLOCK_RESERVATIONS,
    BLOCK_PUBLICS,
    BLOCK_DOCUMENTS,
    BLOCK_NEED,
    BLOCK_COUNT,
} block_id_t;

/* One table (with its charts) of each scope's section. A trend block
 * reads years (the report's and the two before); the others read the
 * twelve months and the year. */
typedef struct {
    const char *anchor;
    const char *title;
    const char *note;
    bool trend;
    const line_t *lines;
    size_t n_lines;
} block_t;

static const line_t state_lines[] = {
    {"conventions.envisaged", "", "Envisaged", FMT_COUNT},
    {"conventions.signed", "", "Signed", FMT_COUNT},
    {"conventions.in_force", "", "In force (first lease)", FMT_COUNT},
    {"conventions.ended", "", "Ended (expired or terminated)", FMT_COUNT},
    {"conventions.abandoned", "", "Abandoned", FMT_COUNT},
};

#define STATE_COUNT 5
#define LEVEL_COUNT 3

static const char *const level_names[LEVEL_COUNT] = {"LOC1", "LOC2", "LOC3"};
static const char *const state_short[STATE_COUNT] = {"Envisaged", "Signed", "In force", "Ended",
                                                     "Abandoned"};

/* Level by level, each in the states' order (level_line() finds one). */
static const line_t level_lines[] = {
    {"conventions.envisaged", "level=LOC1", "LOC1 envisaged", FMT_COUNT},
    {"conventions.signed", "level=LOC1", "LOC1 signed", FMT_COUNT},
    {"conventions.in_force", "level=LOC1", "LOC1 in force", FMT_COUNT},
    {"conventions.ended", "level=LOC1", "LOC1 ended", FMT_COUNT},
    {"conventions.abandoned", "level=LOC1", "LOC1 abandoned", FMT_COUNT},
    {"conventions.envisaged", "level=LOC2", "LOC2 envisaged", FMT_COUNT},
    {"conventions.signed", "level=LOC2", "LOC2 signed", FMT_COUNT},
    {"conventions.in_force", "level=LOC2", "LOC2 in force", FMT_COUNT},
    {"conventions.ended", "level=LOC2", "LOC2 ended", FMT_COUNT},
    {"conventions.abandoned", "level=LOC2", "LOC2 abandoned", FMT_COUNT},
    {"conventions.envisaged", "level=LOC3", "LOC3 envisaged", FMT_COUNT},
    {"conventions.signed", "level=LOC3", "LOC3 signed", FMT_COUNT},
    {"conventions.in_force", "level=LOC3", "LOC3 in force", FMT_COUNT},
    {"conventions.ended", "level=LOC3", "LOC3 ended", FMT_COUNT},
    {"conventions.abandoned", "level=LOC3", "LOC3 abandoned", FMT_COUNT},
};

static const line_t active_lines[] = {
    {"conventions.active", "", "Every level", FMT_COUNT},
    {"conventions.active", "level=LOC1", "LOC1 (intermediate)", FMT_COUNT},
    {"conventions.active", "level=LOC2", "LOC2 (social)", FMT_COUNT},
    {"conventions.active", "level=LOC3", "LOC3 (very social)", FMT_COUNT},
};

static const line_t delay_lines[] = {
    {"conventions.delay_to_sign.median", "", "Median (days)", FMT_DAYS},
    {"conventions.delay_to_sign.p90", "", "90th percentile (days)", FMT_DAYS},
};

static const line_t objective_lines[] = {
    {"objectives.units", "", "Objectives (units for Action Logement)", FMT_COUNT},
    {"reservations.al_units", "", "Units reserved for Action Logement", FMT_COUNT},
    {"objectives.achievement", "", "Achievement (reserved / objectives)", FMT_RATIO},
};

static const line_t reservation_lines[] = {
    {"reservations.created", "", "Every mode", FMT_COUNT},
    {"reservations.created", "mode=STOCK", "Stock (one unit)", FMT_COUNT},
    {"reservations.created", "mode=FLOW", "Flow (released units)", FMT_COUNT},
};

#define PUBLIC_COUNT 6

static const char *const public_short[PUBLIC_COUNT] = {"Under 30", "Apprentices",   "Seasonal",
                                                       "Mobility", "In difficulty", "Disability"};

/* The housed, then the decisions: each a total, then the publics in
 * public_short's order. */
static const line_t public_lines[] = {
    {"candidates.housed", "", "Housed, every public", FMT_COUNT},
    {"candidates.housed", "public=UNDER_30", "Housed: under 30", FMT_COUNT},
    {"candidates.housed", "public=APPRENTICE", "Housed: apprentices", FMT_COUNT},
    {"candidates.housed", "public=SEASONAL", "Housed: seasonal workers", FMT_COUNT},
    {"candidates.housed", "public=MOBILITY", "Housed: professional mobility", FMT_COUNT},
    {"candidates.housed", "public=IN_DIFFICULTY", "Housed: employees in difficulty", FMT_COUNT},
    {"candidates.housed", "public=DISABILITY", "Housed: disability", FMT_COUNT},
    {"attributions.decided", "", "Decisions, every public", FMT_COUNT},
    {"attributions.decided", "public=UNDER_30", "Decisions: under 30", FMT_COUNT},
    {"attributions.decided", "public=APPRENTICE", "Decisions: apprentices", FMT_COUNT},
    {"attributions.decided", "public=SEASONAL", "Decisions: seasonal workers", FMT_COUNT},
    {"attributions.decided", "public=MOBILITY", "Decisions: professional mobility", FMT_COUNT},
    {"attributions.decided", "public=IN_DIFFICULTY", "Decisions: employees in difficulty",
     FMT_COUNT},
    {"attributions.decided", "public=DISABILITY", "Decisions: disability", FMT_COUNT},
};

#define DECIDED_FIRST (1 + PUBLIC_COUNT)

static const line_t document_lines[] = {
    {"documents.published", "", "Every theme", FMT_COUNT},
    {"documents.published", "theme=1", "Theme 1: knowledge of needs", FMT_COUNT},
    {"documents.published", "theme=2", "Theme 2: housing offer", FMT_COUNT},
    {"documents.published", "theme=3", "Theme 3: residential paths", FMT_COUNT},
};

#define NEED_FIGURES 4 /* the first lines of need_lines, charted as bars */
#define NEED_RATIOS  3 /* the last ones, charted as lines */

static const line_t need_lines[] = {
    {"projects.expected_jobs", "", "Expected jobs (economic projects)", FMT_COUNT},
    {"demand.requests", "", "Employees' housing requests", FMT_COUNT},
    {"reservations.al_units", "", "Units reserved for Action Logement", FMT_COUNT},
    {"demand.housed", "", "Candidates housed (Action Logement's figures)", FMT_COUNT},
    {"candidates.housed", "", "Candidates housed (attributions decided)", FMT_COUNT},
    {"need_supply.jobs_per_reserved_unit", "", "Expected jobs per reserved unit", FMT_RATIO},
    {"need_supply.requests_per_reserved_unit", "", "Requests per reserved unit", FMT_RATIO},
    {"need_supply.housed_per_request", "", "Housed per request", FMT_RATIO},
};

#define LINES(a) a, sizeof a / sizeof a[0]

_Static_assert(sizeof level_lines / sizeof level_lines[0] <= LINES_MAX, "level_lines");
_Static_assert(sizeof public_lines / sizeof public_lines[0] <= LINES_MAX, "public_lines");

static const block_t blocks[BLOCK_COUNT] = {
    [BLOCK_STATES] = {"conventions", "ANAH conventions by state",
                      "Conventions (conventionnements) that reached each state in the month.",
                      false, LINES(state_lines)},
    [BLOCK_LEVELS] = {"levels", "ANAH conventions by level",
                      "The same steps for each level: LOC1 intermediate, LOC2 social, "
                      "LOC3 very social. The chart shows the year.",
                      false, LINES(level_lines)},
    [BLOCK_ACTIVE] = {"active", "Conventions active at the end of each month",
                      "Conventions signed or in force on the last day of the month "
                      "(the year column: on 31 December).",
                      false, LINES(active_lines)},
    [BLOCK_DELAY] = {"delay", "Delay from envisaged to signed",
                     "Days between the envisaged date and the signature, for the conventions "
                     "signed in the month; a dash when none was signed.",
                     false, LINES(delay_lines)},
    [BLOCK_OBJECTIVES] = {"objectives", "Reservations against objectives",
                          "Units to reserve for Action Logement set in the programmes' "
                          "objectives, and those reserved, for each year.",
                          true, LINES(objective_lines)},
    [BLOCK_RESERVATIONS] = {"reservations", "Reservations created, by mode",
                            "Reservation rights taken in the month, every reservataire.", false,
                            LINES(reservation_lines)},
    [BLOCK_PUBLICS] = {"publics", "Attributions by priority public",
                       "Candidates housed (decision: attributed) and every decision taken, per "
                       "public the convention names; a candidate may belong to several. The "
                       "chart shows the year.",
                       false, LINES(public_lines)},
    [BLOCK_DOCUMENTS] = {"documents", "Documents published, by theme",
                         "Studies, diagnostics and other documents shared in the month.", false,
                         LINES(document_lines)},
    [BLOCK_NEED] = {"need", "Need against supply",
                    "Employment-linked housing need against the units reserved for Action "
                    "Logement, for the year and the two before; a dash where a ratio has "
                    "nothing to divide by.",
                    true, LINES(need_lines)},
};

static const char *const month_names[MONTHS] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/* Okabe and Ito's colours: told apart by most readers, and in print. */
static const char *const palette[] = {"#0072B2", "#E69F00", "#009E73", "#CC79A7",
                                      "#D55E00", "#56B4E9", "#999999"};

#define PALETTE_COUNT (sizeof palette / sizeof palette[0])

/* ==========================================================================
 * The figures
 * ======================================================================== */

typedef struct {
    char period[PERIOD_KEY_LEN];
    double value;
    bool defined;
    uint64_t observations;
} figure_t;

typedef struct {
    cli_service_t service; /* the indicators service */
    const char *path;      /* the file asked for */
    int year;
    /* months of the year still to come: from this month on (1-12; 13
     * none, a past year; 1 all, a future year) */
    int first_future_month;
    const char *scopes[SCOPES_MAX]; /* "all", "CT1".. */
    size_t n_scopes;
    figure_t *figures; /* [scope][block][line][column] */
    bool have_generation;
    uint64_t generation_min, generation_max;
    Passerelle__IndicatorList *definitions;
    char made_local[64];
    char made_utc[TIME_RFC3339_LEN];
} report_t;

static figure_t *figures_of(const report_t *r, size_t scope, block_id_t block, size_t line)
{
    size_t index = ((scope * BLOCK_COUNT + (size_t)block) * LINES_MAX + line) * COLUMNS;
    return &r->figures[index];
}

/* A scope's name as people read it. Scopes are named in the data
 * attributes as in the counters' keys: "all" is the whole Métropole (sent
 * to the service as an empty scope), "CT2" a territory. */
static const char *scope_label(const char *scope)
{
    if (strcmp(scope, "all") == 0)
        return "Métropole Aix-Marseille-Provence";
    const char *name = refdata_territory_name(scope);
    return name ? name : scope;
}

/* One request (cli_service_call), saying on failure also what was being
 * read. 0 with *result_p (the caller frees it), or an exit code. */
static int call(report_t *r, const char *type, const ProtobufCMessage *body,
                const ProtobufCMessageDescriptor *reply_desc, const char *what, const char *scope,
                ProtobufCMessage **result_p)
{
    int rc = cli_service_call(&r->service, type, body, NULL, reply_desc, result_p, NULL);
    if (rc)
        fprintf(stderr, "(while reading %s for %s from %s)\n", what, scope, r->service.endpoint);
    return rc;
}

/* Reads one series into out[0..n) whose periods are already set: each
 * period must be among the answer's points. 0 or an exit code. */
static int read_series(report_t *r, const char *scope, const line_t *line, const char *kind,
                       figure_t *out, size_t n)
{
    Passerelle__SeriesRequest req = PASSERELLE__SERIES_REQUEST__INIT;
    Passerelle__Scope scope_msg = PASSERELLE__SCOPE__INIT;
    req.indicator = (char *)line->indicator;
    req.period_kind = (char *)kind;
    req.from = out[0].period;
    req.to = out[n - 1].period;
    if (*line->filter)
        req.filter = (char *)line->filter;
    if (strcmp(scope, "all") != 0) {
        scope_msg.territory = (char *)scope;
        req.scope = &scope_msg;
    }
    char what[160];
    snprintf(what, sizeof what, "%s%s%s by %s", line->indicator, *line->filter ? " " : "",
             line->filter, kind);
    Passerelle__Series *series = NULL;
    int rc = call(r, "indicator.series", &req.base, &passerelle__series__descriptor, what, scope,
                  (ProtobufCMessage **)&series);
    if (rc)
        return rc;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const Passerelle__Point *found = NULL;
        for (size_t p = 0; p < series->n_points && !found; p++)
            if (series->points[p]->period && strcmp(series->points[p]->period, out[i].period) == 0)
                found = series->points[p];
        if (!found) {
            fprintf(stderr, "error: the indicators service answered %s for %s without %s\n", what,
                    scope, out[i].period);
            rc = CLI_EXIT_REPLY_ERROR;
            break;
        }
        out[i].value = found->value;
        /* An infinity or a NaN is no figure to print or plot: shown as
         * undefined, like a figure the service could not compute. */
        out[i].defined = (found->has_defined ? found->defined : true) && isfinite(found->value);
        out[i].observations = found->observations;
    }
    if (rc == 0) {
        uint64_t gen = series->generation;
        if (!r->have_generation) {
            r->generation_min = r->generation_max = gen;
            r->have_generation = true;
        }
        if (gen < r->generation_min)
            r->generation_min = gen;
        if (gen > r->generation_max)
            r->generation_max = gen;
    }
    passerelle__series__free_unpacked(series, NULL);
    return rc;
}

/* Every line of every block of one scope. */
static int collect_scope(report_t *r, size_t s)
{
    const char *scope = r->scopes[s];
    char months[MONTHS][PERIOD_KEY_LEN], years[TREND_YEARS][PERIOD_KEY_LEN];
    char first[PERIOD_KEY_LEN], last[PERIOD_KEY_LEN];
    snprintf(first, sizeof first, "%04d-01", r->year % 10000);
    snprintf(last, sizeof last, "%04d-12", r->year % 10000);
    if (period_series(PERIOD_MONTH, first, last, months, MONTHS) != MONTHS) {
        fprintf(stderr, "error: --year: cannot list the months of %d\n", r->year);
        return CLI_EXIT_USAGE;
    }
    for (int y = 0; y < TREND_YEARS; y++)
        snprintf(years[y], sizeof years[y], "%04d", (r->year - (TREND_YEARS - 1) + y) % 10000);

    for (int b = 0; b < BLOCK_COUNT; b++) {
        const block_t *block = &blocks[b];
        for (size_t l = 0; l < block->n_lines; l++) {
            figure_t *f = figures_of(r, s, (block_id_t)b, l);
            memset(f, 0, COLUMNS * sizeof *f);
            int rc;
            if (block->trend) {
                for (int y = 0; y < TREND_YEARS; y++)
                    memcpy(f[y].period, years[y], PERIOD_KEY_LEN);
                rc = read_series(r, scope, &block->lines[l], "year", f, TREND_YEARS);
            } else {
                for (int m = 0; m < MONTHS; m++)
                    memcpy(f[m].period, months[m], PERIOD_KEY_LEN);
                memcpy(f[YEAR_COLUMN].period, years[TREND_YEARS - 1], PERIOD_KEY_LEN);
                rc = read_series(r, scope, &block->lines[l], "month", f, MONTHS);
                if (rc == 0)
                    rc = read_series(r, scope, &block->lines[l], "year", f + YEAR_COLUMN, 1);
            }
            if (rc)
                return rc;
        }
    }
    return 0;
}

/* Reads everything, again while the replies came from more than one
 * generation (a rebuild switched in the middle). 0 or an exit code. */
static int collect(report_t *r)
{
    Passerelle__IndicatorListRequest list_req = PASSERELLE__INDICATOR_LIST_REQUEST__INIT;
    int rc = call(r, "indicator.list", &list_req.base, &passerelle__indicator_list__descriptor,
                  "the indicators' definitions", "all", (ProtobufCMessage **)&r->definitions);
    if (rc)
        return rc;

    for (int attempt = 0; attempt < COLLECT_ATTEMPTS; attempt++) {
        r->have_generation = false;
        for (size_t s = 0; s < r->n_scopes; s++) {
            rc = collect_scope(r, s);
            if (rc)
                return rc;
        }
        if (r->generation_min == r->generation_max)
            break;
    }
    return 0;
}

/* ==========================================================================
 * HTML
 * ======================================================================== */

/* Writes text escaped for HTML text and attribute values; control
 * characters (which HTML does not allow) become spaces. */
static void put_escaped(FILE *out, const char *text)
{
    for (const unsigned char *p = (const unsigned char *)text; p && *p; p++) {
        switch (*p) {
        case '&':
            fputs("&amp;", out);
            break;
        case '<':
            fputs("&lt;", out);
            break;
        case '>':
            fputs("&gt;", out);
            break;
        case '"':
            fputs("&quot;", out);
            break;
        case '\'':
            fputs("&#39;", out);
            break;
        default:
            fputc(*p < 0x20 && *p != '\n' && *p != '\t' ? ' ' : *p, out);
        }
    }
}

/* Whether v prints as an integer: in range before the cast (a cast of a
 * value long long cannot hold is undefined), and without a fraction. */
static bool whole_number(double v)
{
    return v > -1e15 && v < 1e15 && v == (double)(long long)v;
}

static void format_value(const figure_t *f, format_t format, char *out, size_t out_size)
{
    if (!f->defined) {
        snprintf(out, out_size, "\u2013");
        return;
    }
    double v = f->value;
    bool whole = whole_number(v);
    if (format == FMT_RATIO)
        snprintf(out, out_size, "%.2f", v);
    else if (whole)
        snprintf(out, out_size, "%lld", (long long)v);
    else
        snprintf(out, out_size, format == FMT_DAYS ? "%.1f" : "%.2f", v);
}

/* One figure cell, with the attributes that say what it shows. */
static void put_cell(FILE *out, const char *scope, const line_t *line, const figure_t *f,
                     const char *class_name)
{
    char text[64];
    format_value(f, line->format, text, sizeof text);
    fputs("<td", out);
    if (class_name || !f->defined) {
        fputs(" class=\"", out);
        if (class_name)
            fputs(class_name, out);
        if (!f->defined)
            fputs(class_name ? " undef" : "undef", out);
        fputc('"', out);
    }
    fputs(" data-indicator=\"", out);
    put_escaped(out, line->indicator);
    fputs("\" data-scope=\"", out);
    put_escaped(out, scope);
    fputs("\" data-period=\"", out);
    put_escaped(out, f->period);
    fputs("\" data-filter=\"", out);
    put_escaped(out, line->filter);
    fprintf(out, "\" data-defined=\"%s\"", f->defined ? "true" : "false");
    if (f->defined)
        fprintf(out, " data-value=\"%.17g\"", f->value);
    if (f->observations)
        fprintf(out, " data-observations=\"%" PRIu64 "\"", f->observations);
    fputc('>', out);
    put_escaped(out, text);
    fputs("</td>", out);
}

static void put_months_table(const report_t *r, FILE *out, size_t s, block_id_t b)
{
    const block_t *block = &blocks[b];
    fputs("<table class=\"fig\"><thead><tr><th></th>", out);
    for (int m = 0; m < MONTHS; m++)
        fprintf(out, "<th%s>%s</th>", m + 1 >= r->first_future_month ? " class=\"later\"" : "",
                month_names[m]);
    fprintf(out, "<th class=\"year\">%d</th></tr></thead><tbody>\n", r->year);
    for (size_t l = 0; l < block->n_lines; l++) {
        const figure_t *f = figures_of(r, s, b, l);
        fputs("<tr><th scope=\"row\">", out);
        put_escaped(out, block->lines[l].label);
        fputs("</th>", out);
        for (int c = 0; c < COLUMNS; c++)
            put_cell(out, r->scopes[s], &block->lines[l], &f[c], c == YEAR_COLUMN ? "year" : NULL);
        fputs("</tr>\n", out);
    }
    fputs("</tbody></table>\n", out);
}

static void put_trend_table(const report_t *r, FILE *out, size_t s, block_id_t b)
{
    const block_t *block = &blocks[b];
    fputs("<table class=\"fig\"><thead><tr><th></th>", out);
    for (int y = 0; y < TREND_YEARS; y++)
        fprintf(out, "<th%s>%d</th>", y == TREND_YEARS - 1 ? " class=\"year\"" : "",
                r->year - (TREND_YEARS - 1) + y);
    fputs("</tr></thead><tbody>\n", out);
    for (size_t l = 0; l < block->n_lines; l++) {
        const figure_t *f = figures_of(r, s, b, l);
        fputs("<tr><th scope=\"row\">", out);
        put_escaped(out, block->lines[l].label);
        fputs("</th>", out);
        for (int y = 0; y < TREND_YEARS; y++)
            put_cell(out, r->scopes[s], &block->lines[l], &f[y],
                     y == TREND_YEARS - 1 ? "year" : NULL);
        fputs("</tr>\n", out);
    }
    fputs("</tbody></table>\n", out);
}

/* ==========================================================================
 * SVG charts
 * ======================================================================== */

#define CHART_CATEGORIES_MAX 12
#define CHART_SERIES_MAX     6
#define CHART_WIDTH          520
#define CHART_HEIGHT         250
#define CHART_LEFT           48
#define CHART_RIGHT          12
#define CHART_BOTTOM         34
#define CHART_LEGEND_ROW     16

typedef enum {
    CHART_BARS,    /* bars side by side in each category */
    CHART_STACKED, /* bars on top of each other */
    CHART_LINES,   /* one polyline per series, broken where undefined */
} chart_style_t;

typedef struct {
    const char *name;
    double values[CHART_CATEGORIES_MAX];
    bool defined[CHART_CATEGORIES_MAX];
} chart_series_t;

typedef struct {
    const char *title; /* read by screen readers, shown on hover */
    chart_style_t style;
    bool whole_numbers; /* ticks on integers */
    const char *categories[CHART_CATEGORIES_MAX];
    size_t n_categories;
    chart_series_t series[CHART_SERIES_MAX];
    size_t n_series;
    /* bar charts: a word above a category's bars, or NULL */
    const char *notes[CHART_CATEGORIES_MAX];
} chart_t;

/* Copies column `column` of line `line` in (block b, scope s) as value
 * `category` of series `series`. */
static void chart_take(const report_t *r, chart_t *chart, size_t series, size_t category, size_t s,
                       block_id_t b, size_t line, size_t column)
{
    const figure_t *f = &figures_of(r, s, b, line)[column];
    chart->series[series].values[category] = f->defined ? f->value : 0;
    chart->series[series].defined[category] = f->defined;
}

/* The series line by line over the twelve months. */
static void chart_months(const report_t *r, chart_t *chart, size_t s, block_id_t b,
                         const size_t *lines, size_t n_lines)
{
    chart->n_categories = MONTHS;
    for (int m = 0; m < MONTHS; m++)
        chart->categories[m] = month_names[m];
    chart->n_series = n_lines;
    for (size_t i = 0; i < n_lines; i++) {
        chart->series[i].name = blocks[b].lines[lines[i]].label;
        for (int m = 0; m < MONTHS; m++)
            chart_take(r, chart, i, (size_t)m, s, b, lines[i], (size_t)m);
    }
}

/* A step of 1, 2 or 5 times a power of ten that splits max (finite, > 0:
 * an infinite one would never end the first loop) into at most five
 * intervals. */
static double nice_step(double max, bool whole_numbers)
{
    if (!isfinite(max) || max <= 0)
        return 1;
    double raw = max / 5;
    double magnitude = 1;
    while (magnitude * 10 <= raw)
        magnitude *= 10;
    while (magnitude > raw && magnitude > 1e-9)
        magnitude /= 10;
    double step = magnitude;
    if (step < raw)
        step = magnitude * 2;
    if (step < raw)
        step = magnitude * 5;
    if (step < raw)
        step = magnitude * 10;
    if (whole_numbers && step < 1)
        step = 1;
    return step;
}

static void put_number(FILE *out, double v)
{
    if (whole_number(v))
        fprintf(out, "%lld", (long long)v);
    else
        fprintf(out, "%.2g", v);
}

/* Writes the chart as an inline SVG element: a legend on top, the value
 * axis with its grid on the left, the categories below. */
static void put_chart(FILE *out, const chart_t *chart)
{
    /* legend rows: items laid left to right, wrapped at the width */
    int legend_rows = 1, x = CHART_LEFT;
    int item_x[CHART_SERIES_MAX], item_row[CHART_SERIES_MAX];
    for (size_t i = 0; i < chart->n_series; i++) {
        int width = 18 + 6 * (int)strlen(chart->series[i].name) + 14;
        if (x + width > CHART_WIDTH && x > CHART_LEFT) {
            legend_rows++;
            x = CHART_LEFT;
        }
        item_x[i] = x;
        item_row[i] = legend_rows - 1;
        x += width;
    }
    bool noted = false;
    for (size_t c = 0; c < chart->n_categories; c++)
        noted = noted || chart->notes[c];
    int top = 10 + legend_rows * CHART_LEGEND_ROW + (noted ? 14 : 0);
    int plot_w = CHART_WIDTH - CHART_LEFT - CHART_RIGHT;
    int plot_h = CHART_HEIGHT - top - CHART_BOTTOM;
    int base = top + plot_h;

    double max = 0;
    bool any = false;
    for (size_t c = 0; c < chart->n_categories; c++) {
        double sum = 0;
        for (size_t i = 0; i < chart->n_series; i++) {
            if (!chart->series[i].defined[c])
                continue;
            any = true;
            double v = chart->series[i].values[c];
            if (chart->style == CHART_STACKED)
                sum += v > 0 ? v : 0;
            else if (v > max)
                max = v;
        }
        if (sum > max)
            max = sum;
    }
    if (max <= 0)
        max = 1;
    else if (!isfinite(max)) /* a stack of finite values may overflow */
        max = DBL_MAX;
    double step = nice_step(max, chart->whole_numbers);
    long ticks = (long)(max / step);
    if ((double)ticks * step < max)
        ticks++;
    double top_value = (double)ticks * step;

    fprintf(out,
            "<svg class=\"chart\" viewBox=\"0 0 %d %d\" width=\"%d\" height=\"%d\" role=\"img\" "
            "aria-label=\"",
            CHART_WIDTH, CHART_HEIGHT, CHART_WIDTH, CHART_HEIGHT);
    put_escaped(out, chart->title);
    fputs("\"><title>", out);
    put_escaped(out, chart->title);
    fputs("</title>\n", out);

    for (size_t i = 0; i < chart->n_series; i++) {
        int ly = 10 + item_row[i] * CHART_LEGEND_ROW;
        const char *colour = palette[i % PALETTE_COUNT];
        if (chart->style == CHART_LINES)
            fprintf(out,
                    "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" "
                    "stroke-width=\"3\"/>",
                    item_x[i], ly + 5, item_x[i] + 14, ly + 5, colour);
        else
            fprintf(out, "<rect x=\"%d\" y=\"%d\" width=\"12\" height=\"10\" fill=\"%s\"/>",
                    item_x[i], ly, colour);
        fprintf(out, "<text x=\"%d\" y=\"%d\" class=\"legend\">", item_x[i] + 18, ly + 9);
        put_escaped(out, chart->series[i].name);
        fputs("</text>\n", out);
    }

    /* grid and value axis */
    for (long t = 0; t <= ticks; t++) {
        double y = base - (double)plot_h * ((double)t * step) / top_value;
        fprintf(out,
                "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" class=\"%s\"/>"
                "<text x=\"%d\" y=\"%.1f\" class=\"tick\" text-anchor=\"end\">",
                CHART_LEFT, y, CHART_LEFT + plot_w, y, t == 0 ? "axis" : "grid", CHART_LEFT - 5,
                y + 3.5);
        put_number(out, (double)t * step);
        fputs("</text>\n", out);
    }
    fprintf(out, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" class=\"axis\"/>\n", CHART_LEFT,
            top, CHART_LEFT, base);

    double band = (double)plot_w / (double)(chart->n_categories ? chart->n_categories : 1);
    for (size_t c = 0; c < chart->n_categories; c++) {
        fprintf(out, "<text x=\"%.1f\" y=\"%d\" class=\"cat\" text-anchor=\"middle\">",
                CHART_LEFT + band * ((double)c + 0.5), base + 15);
        put_escaped(out, chart->categories[c]);
        fputs("</text>\n", out);
    }

    if (chart->style == CHART_LINES) {
        for (size_t i = 0; i < chart->n_series; i++) {
            const chart_series_t *series = &chart->series[i];
            const char *colour = palette[i % PALETTE_COUNT];
            bool open = false;
            for (size_t c = 0; c <= chart->n_categories; c++) {
                bool here = c < chart->n_categories && series->defined[c];
                if (!here) {
                    if (open)
                        fputs("\"/>\n", out);
                    open = false;
                    continue;
                }
                double px = CHART_LEFT + band * ((double)c + 0.5);
                double py = base - (double)plot_h * series->values[c] / top_value;
                /* the first series (a total) wider, so that a part
                 * equal to it, drawn over it, leaves it visible */
                if (!open)
                    fprintf(out,
                            "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"%s\" "
                            "points=\"",
                            colour, i == 0 && chart->n_series > 1 ? "5" : "2.5");
                fprintf(out, "%s%.1f,%.1f", open ? " " : "", px, py);
                open = true;
            }
            for (size_t c = 0; c < chart->n_categories; c++) {
                if (!series->defined[c])
                    continue;
                double px = CHART_LEFT + band * ((double)c + 0.5);
                double py = base - (double)plot_h * series->values[c] / top_value;
                fprintf(out, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"><title>", px,
                        py, colour);
                put_escaped(out, series->name);
                fputs(", ", out);
                put_escaped(out, chart->categories[c]);
                fputs(": ", out);
                put_number(out, series->values[c]);
                fputs("</title></circle>\n", out);
            }
        }
    } else {
        size_t n = chart->n_series ? chart->n_series : 1;
        double group = band * 0.8;
        double width = chart->style == CHART_STACKED ? band * 0.6 : group / (double)n;
        for (size_t c = 0; c < chart->n_categories; c++) {
            double stack = 0, highest = 0;
            for (size_t i = 0; i < chart->n_series; i++) {
                const chart_series_t *series = &chart->series[i];
                if (!series->defined[c] || series->values[c] <= 0)
                    continue;
                double v = series->values[c];
                double h = (double)plot_h * v / top_value;
                double bx, by;
                if (chart->style == CHART_STACKED) {
                    bx = CHART_LEFT + band * (double)c + (band - width) / 2;
                    by = base - (double)plot_h * (stack + v) / top_value;
                    stack += v;
                } else {
                    bx = CHART_LEFT + band * (double)c + (band - group) / 2 + width * (double)i;
                    by = base - h;
                }
                if (base - by > highest)
                    highest = base - by;
                fprintf(out,
                        "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                        "fill=\"%s\"><title>",
                        bx, by, width, h, palette[i % PALETTE_COUNT]);
                put_escaped(out, series->name);
                fputs(", ", out);
                put_escaped(out, chart->categories[c]);
                fputs(": ", out);
                put_number(out, v);
                fputs("</title></rect>\n", out);
            }
            if (chart->notes[c]) {
                fprintf(out, "<text x=\"%.1f\" y=\"%.1f\" class=\"note\" text-anchor=\"middle\">",
                        CHART_LEFT + band * ((double)c + 0.5), base - highest - 5);
                put_escaped(out, chart->notes[c]);
                fputs("</text>\n", out);
            }
        }
    }
    if (!any)
        fprintf(out,
                "<text x=\"%d\" y=\"%d\" class=\"empty\" text-anchor=\"middle\">no figure"
                "</text>\n",
                CHART_LEFT + plot_w / 2, top + plot_h / 2);
    fputs("</svg>\n", out);
}

/* ==========================================================================
 * The sections
 * ======================================================================== */

static void put_block_head(const report_t *r, FILE *out, size_t s, block_id_t b)
{
    fprintf(out, "<div class=\"block\" id=\"%s-%s\">\n<h3>", r->scopes[s], blocks[b].anchor);
    put_escaped(out, blocks[b].title);
    fputs("</h3>\n<p class=\"note\">", out);
    put_escaped(out, blocks[b].note);
    fputs("</p>\n<div class=\"pair\">\n<div class=\"charts\">\n", out);
}

/* Between the charts and the table. */
static void put_block_middle(FILE *out)
{
    fputs("</div>\n<div class=\"table\">\n", out);
}

static void put_block_tail(FILE *out)
{
    fputs("</div>\n</div>\n</div>\n", out);
}

static void put_title(char *title, size_t size, const report_t *r, size_t s, const char *what)
{
    snprintf(title, size, "%s, %s, %d", what, scope_label(r->scopes[s]), r->year);
}

/* A block of a scope's section: its head, its charts, each titled
 * "<what>, <scope>, <year>", then its table (a trend block's years, or
 * the months and the year). */
static void put_block(const report_t *r, FILE *out, size_t s, block_id_t b, chart_t *charts,
                      const char *const *whats, size_t n_charts)
{
    put_block_head(r, out, s, b);
    for (size_t i = 0; i < n_charts; i++) {
        char title[256];
        put_title(title, sizeof title, r, s, whats[i]);
        charts[i].title = title;
        put_chart(out, &charts[i]);
        charts[i].title = NULL;
    }
    put_block_middle(out);
    if (blocks[b].trend)
        put_trend_table(r, out, s, b);
    else
        put_months_table(r, out, s, b);
    put_block_tail(out);
}

/* A block whose chart shows some of its lines (their indexes) month by
 * month. */
static void put_months_block(const report_t *r, FILE *out, size_t s, block_id_t b,
                             const size_t *lines, size_t n_lines, chart_style_t style,
                             bool whole_numbers, const char *what)
{
    chart_t chart;
    memset(&chart, 0, sizeof chart);
    chart_months(r, &chart, s, b, lines, n_lines);
    chart.style = style;
    chart.whole_numbers = whole_numbers;
    put_block(r, out, s, b, &chart, &what, 1);
}

/* The years of the trend blocks (the report's and the two before) as the
 * categories of a chart; names holds their text. */
static void chart_years(const report_t *r, chart_t *chart, char names[TREND_YEARS][8])
{
    chart->n_categories = TREND_YEARS;
    for (int y = 0; y < TREND_YEARS; y++) {
        snprintf(names[y], sizeof names[y], "%d", (r->year - (TREND_YEARS - 1) + y) % 10000);
        chart->categories[y] = names[y];
    }
}

static void put_scope_section(const report_t *r, FILE *out, size_t s)
{
    const char *scope = r->scopes[s];
    fprintf(out, "<section class=\"scope\" id=\"%s\">\n<h2>", scope);
    if (strcmp(scope, "all") != 0) {
        put_escaped(out, scope);
        fputs(" \u2014 ", out);
    }
    put_escaped(out, scope_label(scope));
    fputs("</h2>\n", out);

    /* conventions by state, month by month */
    static const size_t all_states[] = {0, 1, 2, 3, 4};
    put_months_block(r, out, s, BLOCK_STATES, all_states, STATE_COUNT, CHART_BARS, true,
                     "Conventions by state and month");

    /* by level: the year, states side by side */
    chart_t chart;
    memset(&chart, 0, sizeof chart);
    chart.n_categories = STATE_COUNT;
    chart.n_series = LEVEL_COUNT;
    for (int st = 0; st < STATE_COUNT; st++)
        chart.categories[st] = state_short[st];
    for (int lv = 0; lv < LEVEL_COUNT; lv++) {
        chart.series[lv].name = level_names[lv];
        for (int st = 0; st < STATE_COUNT; st++)
            chart_take(r, &chart, (size_t)lv, (size_t)st, s, BLOCK_LEVELS,
                       (size_t)(lv * STATE_COUNT + st), YEAR_COLUMN);
    }
    chart.whole_numbers = true;
    static const char *const levels_what[] = {"Conventions by level over the year"};
    put_block(r, out, s, BLOCK_LEVELS, &chart, levels_what, 1);

    /* active at the end of each month */
    static const size_t all_active[] = {0, 1, 2, 3};
    put_months_block(r, out, s, BLOCK_ACTIVE, all_active, 4, CHART_LINES, true,
                     "Conventions active at the end of each month");

    /* the delay to sign */
    static const size_t both_delays[] = {0, 1};
    put_months_block(r, out, s, BLOCK_DELAY, both_delays, 2, CHART_LINES, false,
                     "Days from envisaged to signed");

    /* objectives and what was reserved, over the three years */
    memset(&chart, 0, sizeof chart);
    char year_names[TREND_YEARS][8];
    chart_years(r, &chart, year_names);
    chart.n_series = 2;
    char achievement[TREND_YEARS][40];
    for (int y = 0; y < TREND_YEARS; y++) {
        const figure_t *f = &figures_of(r, s, BLOCK_OBJECTIVES, 2)[y];
        if (f->defined)
            snprintf(achievement[y], sizeof achievement[y], "achieved %.0f %%", f->value * 100);
        else
            snprintf(achievement[y], sizeof achievement[y], "no objective");
        chart.notes[y] = achievement[y];
    }
    for (size_t i = 0; i < 2; i++) {
        chart.series[i].name = i == 0 ? "Objectives" : "Reserved for Action Logement";
        for (int y = 0; y < TREND_YEARS; y++)
            chart_take(r, &chart, i, (size_t)y, s, BLOCK_OBJECTIVES, i, (size_t)y);
    }
    chart.whole_numbers = true;
    static const char *const objectives_what[] = {
        "Units reserved for Action Logement against objectives"};
    put_block(r, out, s, BLOCK_OBJECTIVES, &chart, objectives_what, 1);

    /* reservations created by mode */
    static const size_t modes[] = {1, 2};
    put_months_block(r, out, s, BLOCK_RESERVATIONS, modes, 2, CHART_STACKED, true,
                     "Reservations created by mode and month");

    /* attributions by public, the year */
    memset(&chart, 0, sizeof chart);
    chart.n_categories = PUBLIC_COUNT;
    chart.n_series = 2;
    chart.series[0].name = "Housed";
    chart.series[1].name = "Decisions";
    for (int p = 0; p < PUBLIC_COUNT; p++) {
        chart.categories[p] = public_short[p];
        chart_take(r, &chart, 0, (size_t)p, s, BLOCK_PUBLICS, (size_t)(1 + p), YEAR_COLUMN);
        chart_take(r, &chart, 1, (size_t)p, s, BLOCK_PUBLICS, (size_t)(DECIDED_FIRST + 1 + p),
                   YEAR_COLUMN);
    }
    chart.whole_numbers = true;
    static const char *const publics_what[] = {"Attributions by priority public over the year"};
    put_block(r, out, s, BLOCK_PUBLICS, &chart, publics_what, 1);

    /* documents by theme */
    static const size_t themes[] = {1, 2, 3};
    put_months_block(r, out, s, BLOCK_DOCUMENTS, themes, 3, CHART_STACKED, true,
                     "Documents published by theme and month");

    /* need against supply: the figures as bars, the ratios as lines */
    chart_t need[2];
    memset(need, 0, sizeof need);
    chart_years(r, &need[0], year_names);
    need[0].n_series = NEED_FIGURES;
    static const char *const need_short[NEED_FIGURES] = {"Expected jobs", "Requests",
                                                         "Reserved (AL)", "Housed (AL)"};
    for (size_t i = 0; i < NEED_FIGURES; i++) {
        need[0].series[i].name = need_short[i];
        for (int y = 0; y < TREND_YEARS; y++)
            chart_take(r, &need[0], i, (size_t)y, s, BLOCK_NEED, i, (size_t)y);
    }
    need[0].whole_numbers = true;
    chart_years(r, &need[1], year_names);
    need[1].n_series = NEED_RATIOS;
    need[1].style = CHART_LINES;
    static const char *const ratio_short[NEED_RATIOS] = {
        "Jobs per reserved unit", "Requests per reserved unit", "Housed per request"};
    size_t first_ratio = blocks[BLOCK_NEED].n_lines - NEED_RATIOS;
    for (size_t i = 0; i < NEED_RATIOS; i++) {
        need[1].series[i].name = ratio_short[i];
        for (int y = 0; y < TREND_YEARS; y++)
            chart_take(r, &need[1], i, (size_t)y, s, BLOCK_NEED, first_ratio + i, (size_t)y);
    }
    static const char *const need_what[] = {"Need and supply over three years",
                                            "Need against supply: the ratios' trend"};
    put_block(r, out, s, BLOCK_NEED, need, need_what, 2);

    fputs("</section>\n", out);
}

/* The overview: one row per scope, the year's key figures, each cell the
 * same figure (and attributes) as in the scope's own section. */
typedef struct {
    const char *heading;
    block_id_t block;
    size_t line;
    size_t column; /* YEAR_COLUMN, or the trend's last year */
} key_figure_t;

static const key_figure_t key_figures[] = {
    {"Conventions envisaged", BLOCK_STATES, 0, YEAR_COLUMN},
    {"Conventions signed", BLOCK_STATES, 1, YEAR_COLUMN},
    {"Active on 31 December", BLOCK_ACTIVE, 0, YEAR_COLUMN},
    {"Median days to sign", BLOCK_DELAY, 0, YEAR_COLUMN},
    {"Objectives (AL units)", BLOCK_OBJECTIVES, 0, TREND_YEARS - 1},
    {"Reserved for AL", BLOCK_OBJECTIVES, 1, TREND_YEARS - 1},
    {"Achievement", BLOCK_OBJECTIVES, 2, TREND_YEARS - 1},
    {"Reservations created", BLOCK_RESERVATIONS, 0, YEAR_COLUMN},
    {"Candidates housed", BLOCK_PUBLICS, 0, YEAR_COLUMN},
    {"Documents published", BLOCK_DOCUMENTS, 0, YEAR_COLUMN},
};

#define KEY_FIGURE_COUNT (sizeof key_figures / sizeof key_figures[0])

static void put_overview(const report_t *r, FILE *out)
{
    fprintf(out, "<section id=\"overview\">\n<h2>The year %d at a glance</h2>\n", r->year);
    fputs("<div class=\"block\">\n<div class=\"pair\">\n<div class=\"charts\">\n", out);

    /* the territories side by side (the Métropole too when it is alone
     * with one territory, as its totals would flatten the others) */
    chart_t chart;
    memset(&chart, 0, sizeof chart);
    chart.n_series = 3;
    chart.series[0].name = "Conventions envisaged";
    chart.series[1].name = "Conventions signed";
    chart.series[2].name = "Candidates housed";
    chart.whole_numbers = true;
    for (size_t s = r->n_scopes > 2 ? 1 : 0; s < r->n_scopes; s++) {
        size_t c = chart.n_categories++;
        chart.categories[c] = strcmp(r->scopes[s], "all") == 0 ? "Métropole" : r->scopes[s];
        chart_take(r, &chart, 0, c, s, BLOCK_STATES, 0, YEAR_COLUMN);
        chart_take(r, &chart, 1, c, s, BLOCK_STATES, 1, YEAR_COLUMN);
        chart_take(r, &chart, 2, c, s, BLOCK_PUBLICS, 0, YEAR_COLUMN);
    }
    char title[128];
    snprintf(title, sizeof title, "Conventions and candidates housed by territory, %d", r->year);
    chart.title = title;
    put_chart(out, &chart);
    put_block_middle(out);

    fputs("<table class=\"fig\"><thead><tr><th></th>", out);
    for (size_t k = 0; k < KEY_FIGURE_COUNT; k++) {
        fputs("<th>", out);
        put_escaped(out, key_figures[k].heading);
        fputs("</th>", out);
    }
    fputs("</tr></thead><tbody>\n", out);
    for (size_t s = 0; s < r->n_scopes; s++) {
        fprintf(out, "<tr><th scope=\"row\"><a href=\"#%s\">", r->scopes[s]);
        put_escaped(out, strcmp(r->scopes[s], "all") == 0 ? "Métropole" : r->scopes[s]);
        fputs("</a></th>", out);
        for (size_t k = 0; k < KEY_FIGURE_COUNT; k++) {
            const key_figure_t *key = &key_figures[k];
            const line_t *line = &blocks[key->block].lines[key->line];
            put_cell(out, r->scopes[s], line, &figures_of(r, s, key->block, key->line)[key->column],
                     NULL);
        }
        fputs("</tr>\n", out);
    }
    fputs("</tbody></table>\n", out);
    put_block_tail(out);
    fputs("</section>\n", out);
}

static const char *kind_word(Passerelle__IndicatorKind kind)
{
    switch (kind) {
    case PASSERELLE__INDICATOR_KIND__INDICATOR_FLOW:
        return "flow";
    case PASSERELLE__INDICATOR_KIND__INDICATOR_LEVEL:
        return "level";
    case PASSERELLE__INDICATOR_KIND__INDICATOR_MEDIAN:
        return "median";
    case PASSERELLE__INDICATOR_KIND__INDICATOR_P90:
        return "90th percentile";
    case PASSERELLE__INDICATOR_KIND__INDICATOR_RATIO:
        return "ratio";
    case PASSERELLE__INDICATOR_KIND__INDICATOR_VALUE:
        return "figure set for the period";
    default:
        return "";
    }
}

/* True if some block shows the indicator. */
static bool indicator_shown(const char *name)
{
    for (int b = 0; b < BLOCK_COUNT; b++)
        for (size_t l = 0; l < blocks[b].n_lines; l++)
            if (strcmp(blocks[b].lines[l].indicator, name) == 0)
                return true;
    return false;
}

/* The definitions of the indicators shown, as the service states them. */
static void put_definitions(const report_t *r, FILE *out)
{
    fputs("<section id=\"definitions\">\n<h2>Definitions</h2>\n<dl class=\"defs\">\n", out);
    for (size_t i = 0; r->definitions && i < r->definitions->n_indicators; i++) {
        const Passerelle__IndicatorDef *def = r->definitions->indicators[i];
        if (!def->name || !indicator_shown(def->name))
            continue;
        fputs("<dt><code>", out);
        put_escaped(out, def->name);
        fputs("</code> <span class=\"kind\">", out);
        put_escaped(out, kind_word(def->kind));
        if (def->unit && *def->unit) {
            fputs(", ", out);
            put_escaped(out, def->unit);
        }
        fputs("</span></dt>\n<dd>", out);
        put_escaped(out, def->definition);
        if (def->source && *def->source) {
            fputs(" <span class=\"source\">Source: ", out);
            put_escaped(out, def->source);
            fputs(".</span>", out);
        }
        fputs("</dd>\n", out);
    }
    fputs("</dl>\n</section>\n", out);
}

static const char report_css[] =
    "@page{size:A4 landscape;margin:12mm}\n"
    "body{font-family:\"DejaVu Sans\",\"Liberation Sans\",Arial,Helvetica,sans-serif;"
    "color:#111;background:#fff;margin:24px;font-size:13px;line-height:1.35}\n"
    "h1{font-size:24px;margin:0 0 6px}h2{font-size:19px;margin:28px 0 8px;"
    "border-bottom:2px solid #0072B2;padding-bottom:3px}h3{font-size:15px;margin:0 0 2px}\n"
    ".meta{color:#333;margin:2px 0}.note{color:#444;margin:0 0 6px;max-width:1100px}\n"
    ".block{margin:12px 0 22px;break-inside:avoid;page-break-inside:avoid}\n"
    ".pair{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}\n"
    ".charts{display:flex;flex-direction:column;gap:8px}\n"
    "svg.chart{display:block;max-width:100%;height:auto;background:#fff}\n"
    "svg text{font-family:inherit;fill:#222}svg .tick,svg .cat{font-size:10px}\n"
    "svg .legend{font-size:10.5px}svg .note{font-size:11px;font-weight:bold}svg "
    ".empty{font-size:13px;fill:#777}\n"
    "svg .grid{stroke:#ddd;stroke-width:1}svg .axis{stroke:#333;stroke-width:1}\n"
    "table.fig{border-collapse:collapse;font-size:11px;font-variant-numeric:tabular-nums}\n"
    "table.fig th,table.fig td{border:1px solid #bbb;padding:2px 5px;text-align:right}\n"
    "table.fig th[scope=row]{text-align:left;font-weight:normal;white-space:nowrap}\n"
    "table.fig thead th{background:#eef3f8}table.fig .year{font-weight:bold;background:#f6f6f6}\n"
    "table.fig th.later{color:#888}table.fig td.undef{color:#888}\n"
    "nav ul{columns:2;margin:4px 0}nav a,table.fig a{color:#0b4f8a}\n"
    "dl.defs dt{margin-top:6px;font-weight:bold}dl.defs dd{margin:0 0 0 18px}\n"
    ".kind,.source{color:#555;font-weight:normal}\n"
    /* on paper (A4 landscape), a chart and its table side by side, two
     * blocks a page */
    "@media print{body{margin:0;font-size:11px}section.scope{break-before:page}"
    "svg.chart{width:430px}table.fig{font-size:9.5px}.block{margin:4px 0 10px}"
    "h2{break-after:avoid}*{-webkit-print-color-adjust:exact;print-color-adjust:exact}}\n";

static void put_report(const report_t *r, FILE *out)
{
    fprintf(out,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            "<title>Passerelle: yearly review %d</title>\n<style>\n%s</style>\n"
            "</head>\n<body>\n<header>\n",
            r->year, report_css);
    fprintf(out, "<h1>Yearly review of the partnership, %d</h1>\n", r->year);
    fputs("<p class=\"meta\">Métropole Aix-Marseille-Provence and Action Logement: the shared "
          "indicators of employment-linked housing needs, for the whole Métropole and ",
          out);
    fputs(r->n_scopes > 2 ? "each territory" : "one territory", out);
    fputs(", month by month (Europe/Paris time).</p>\n", out);
    fputs("<p class=\"meta\" id=\"generation\">Figures read from generation ", out);
    if (r->generation_min == r->generation_max)
        fprintf(out, "<strong>%" PRIu64 "</strong>", r->generation_min);
    else
        fprintf(out,
                "<strong>%" PRIu64 " to %" PRIu64 "</strong> (a rebuild switched generations "
                "while the report was read)",
                r->generation_min, r->generation_max);
    fputs(" of the indicators service at <code>", out);
    put_escaped(out, r->service.endpoint);
    fputs("</code>.</p>\n<p class=\"meta\" id=\"made\">Made on ", out);
    put_escaped(out, r->made_local);
    fputs(" (Europe/Paris), <time datetime=\"", out);
    put_escaped(out, r->made_utc);
    fputs("\">", out);
    put_escaped(out, r->made_utc);
    fputs("</time>.", out);
    if (r->first_future_month <= MONTHS)
        fputs(" The months in grey had not begun when the report was made.", out);
    fputs("</p>\n<nav><ul>\n", out);
    for (size_t s = 0; s < r->n_scopes; s++) {
        fprintf(out, "<li><a href=\"#%s\">", r->scopes[s]);
        if (strcmp(r->scopes[s], "all") != 0) {
            put_escaped(out, r->scopes[s]);
            fputs(" \u2014 ", out);
        }
        put_escaped(out, scope_label(r->scopes[s]));
        fputs("</a></li>\n", out);
    }
    fputs("<li><a href=\"#definitions\">Definitions</a></li>\n</ul></nav>\n</header>\n", out);

    put_overview(r, out);
    for (size_t s = 0; s < r->n_scopes; s++)
        put_scope_section(r, out, s);
    put_definitions(r, out);
    fprintf(out, "<footer><p class=\"meta\">In the tables, the year column holds the year's "
                 "total for counts, the level on 31 December for levels, and the median or "
                 "percentile over the year for delays.</p></footer>\n</body>\n</html>\n");
}

/* Writes the report whole (cli_file_t: beside path, synced, then renamed
 * there). 0 or an exit code, said on stderr. */
static int write_report(const report_t *r)
{
    cli_file_t file;
    int rc = cli_file_begin(&file, r->path);
    if (rc)
        return rc;
    put_report(r, file.out);
    return cli_file_commit(&file); /* its ferror check sees a write put_report lost */
}

/* ==========================================================================
 * Entry
 * ======================================================================== */

void report_print_help(FILE *out)
{
    fprintf(out, "Yearly review (endpoint: --endpoint, or PASSERELLE_INDICATORS_ENDPOINT,\n"
                 "default " REPORT_DEFAULT_ENDPOINT "):\n"
                 "  report [--year Y] [-o FILE] [--territory CT1..CT6]\n"
                 "      Write the yearly review of the partnership as one self-contained HTML\n"
                 "      file (inline CSS and SVG charts, nothing fetched: it can be mailed and\n"
                 "      printed as it is) and print its path: for the Métropole and each\n"
                 "      territory (or the one asked), month by month, conventions by level\n"
                 "      and state, conventions active, the delay to sign, reservations\n"
                 "      against objectives, attributions by priority public, documents by\n"
                 "      theme, and need against supply over three years.\n"
                 "      flags: --year (default: this year), --output or -o (default\n"
                 "      report-<Y>.html here), --territory\n");
}

static int report_usage(const char *format, ...) __attribute__((format(printf, 1, 2)));

static int report_usage(const char *format, ...)
{
    va_list args;
    va_start(args, format);
    int rc = cli_usage_verror("report", format, args);
    va_end(args);
    return rc;
}

/* The flags, into r. 0 or CLI_EXIT_USAGE. */
static int parse_args(report_t *r, char **args, int count, const char **territory)
{
    const char *year_text = NULL;
    for (int i = 0; i < count; i++) {
        const char *arg = args[i], *name = NULL, *value = NULL;
        const char **target = NULL;
        size_t name_len = 0;
        if (!cli_flag_split(arg, &name, &name_len, &value))
            return report_usage(arg[0] == '-' ? "unknown flag %s for 'report'"
                                              : "unexpected argument '%s' for 'report'",
                                arg);
        if (name_len == 4 && strncmp(name, "year", 4) == 0)
            target = &year_text;
        else if (name_len == 6 && strncmp(name, "output", 6) == 0)
            target = &r->path;
        else if (name_len == 9 && strncmp(name, "territory", 9) == 0)
            target = territory;
        else
            return report_usage("unknown flag %s for 'report'", arg);
        /* the flag as given, without its value: "-o", "--year" */
        int shown = (int)strcspn(arg, "=");
        if (!value && !(value = cli_flag_next_value(args, count, &i)))
            return report_usage("%.*s needs a value", shown, arg);
        if (!*value)
            return report_usage("%.*s needs a value", shown, arg);
        *target = value;
    }
    if (year_text) {
        char *end;
        errno = 0;
        long year = strtol(year_text, &end, 10);
        if (errno || end == year_text || *end || year < YEAR_MIN || year > YEAR_MAX)
            return report_usage("--year: '%s' is not a year in %d..%d", year_text, YEAR_MIN,
                                YEAR_MAX);
        r->year = (int)year;
    } else {
        r->year = date_today_paris().year;
    }
    return 0;
}

/* When the report was made, in Paris and in UTC. */
static void stamp(report_t *r)
{
    int64_t now_ms = time_now_ms();
    time_rfc3339(now_ms, r->made_utc);
    time_t utc = (time_t)(now_ms / 1000);
    time_t local = utc + time_paris_offset_s(utc);
    struct tm tm;
    gmtime_r(&local, &tm);
    strftime(r->made_local, sizeof r->made_local, "%Y-%m-%d at %H:%M", &tm);
    date_t today = date_today_paris();
    if (r->year < today.year)
        r->first_future_month = MONTHS + 1;
    else if (r->year > today.year)
        r->first_future_month = 1;
    else
        r->first_future_month = today.month + 1;
}

int report_main(const cli_options_t *opts, char **args, int count)
{
    if (opts->help) {
        report_print_help(stdout);
        return CLI_EXIT_OK;
    }
    report_t r;
    memset(&r, 0, sizeof r);
    cli_service_init(&r.service, opts, "PASSERELLE_INDICATORS_ENDPOINT", REPORT_DEFAULT_ENDPOINT);
    const char *territory = NULL;
    int rc = parse_args(&r, args, count, &territory);
    if (rc)
        return rc;

    char territory_code[8] = "";
    if (territory) {
        size_t len = strlen(territory);
        for (size_t i = 0; i < len && i + 1 < sizeof territory_code; i++)
            territory_code[i] = (char)toupper((unsigned char)territory[i]);
        if (len >= sizeof territory_code || !refdata_is_territory(territory_code))
            return report_usage("--territory: '%s' is not one of CT1..CT6", territory);
    }
    r.scopes[r.n_scopes++] = "all";
    static const char *const territories[] = {"CT1", "CT2", "CT3", "CT4", "CT5", "CT6"};
    for (size_t t = 0; t < sizeof territories / sizeof territories[0]; t++)
        if (!territory || strcmp(territories[t], territory_code) == 0)
            r.scopes[r.n_scopes++] = territories[t];

    char default_path[32];
    if (!r.path) {
        snprintf(default_path, sizeof default_path, "report-%d.html", r.year % 10000);
        r.path = default_path;
    }

    r.figures = calloc((size_t)SCOPES_MAX * BLOCK_COUNT * LINES_MAX * COLUMNS, sizeof *r.figures);
    if (!r.figures) {
        fprintf(stderr, "error: out of memory for the report's figures\n");
        return CLI_EXIT_REPLY_ERROR;
    }
    rc = cli_service_connect(&r.service, "report");
    if (rc == 0)
        rc = collect(&r);
    if (rc == 0) {
        stamp(&r);
        rc = write_report(&r);
    }
    if (rc == 0) {
        char *full = realpath(r.path, NULL);
        printf("%s\n", full ? full : r.path);
        free(full);
    }
    cli_service_close(&r.service);
    if (r.definitions)
        passerelle__indicator_list__free_unpacked(r.definitions, NULL);
    free(r.figures);
    return rc;
}
