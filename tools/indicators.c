/* passerelle indicators, passerelle demand import (see indicators.h).
 *
 * The snapshot table asks the service once per scope (the Métropole, then
 * CT1..CT6) for the same date and lays the answers side by side: every
 * scope has the same indicators in the same order (the catalog's), so a
 * row is an indicator and a column a scope.
 *
 * The CSV import reads the whole file (a few hundred lines in practice;
 * capped at CSV_BYTES_MAX), parses it as RFC 4180 (quoted fields with ""
 * for a quote, line breaks inside quotes, CRLF or LF), and checks what can
 * be checked without the service: the header, the column count, whole
 * numbers, the public's name. Every bad line is reported, on stderr, and
 * nothing is sent if there is one: a half-imported file would be worse
 * than none. The service then checks the rest (periods, territories,
 * bounds, repeats) and refuses the whole batch with its own line-by-line
 * message, printed as it comes. */
#define _GNU_SOURCE
#include "indicators.h"

#include "cli_common.h"
#include "cli_print.h"
#include "envelope.pb-c.h"
#include "indicators.pb-c.h"
#include "pbjson.h"
#include "reservations.pb-c.h"
#include "status.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define INDICATORS_DEFAULT_ENDPOINT "tcp://127.0.0.1:7403"
#define MAX_FLAGS                   8
#define CSV_BYTES_MAX               (16u * 1024 * 1024)
#define CSV_COLUMNS                 9
#define CSV_ERRORS_SHOWN            200 /* lines reported before "... and N more" */
#define SNAPSHOT_SCOPES             7   /* the Métropole and CT1..CT6 */

/* ==========================================================================
 * Commands and their flags
 * ======================================================================== */

typedef struct ind_ctx_t ind_ctx_t;

typedef struct {
    const char *words; /* "indicators series" */
    const char *usage;
    const char *summary;
    const char *flags; /* without "--", space separated */
    int positionals;   /* required positional arguments (0 or 1) */
    int (*run)(ind_ctx_t *ctx);
} ind_command_t;

struct ind_ctx_t {
    const cli_options_t *opts;
    const ind_command_t *cmd;
    cli_service_t service; /* the indicators service */
    const char *positional;
    const char *values[MAX_FLAGS]; /* by position in cmd->flags; NULL when not given */
};

static int run_snapshot(ind_ctx_t *ctx);
static int run_series(ind_ctx_t *ctx);
static int run_export(ind_ctx_t *ctx);
static int run_demand_import(ind_ctx_t *ctx);

static const ind_command_t ind_commands[] = {
    {"indicators", "indicators [--territory CTn] [--date YYYY-MM-DD]",
     "Every indicator for the Métropole and each territory (or one --territory)\n"
     "at a date (default today, Europe/Paris), as one table: levels at the end\n"
     "of the day, flows, delays and ratios over the year up to the day, set\n"
     "figures (objectives, demand, projects) for the year. --json: the\n"
     "snapshots as the service sends them.",
     "territory date", 0, run_snapshot},
    {"indicators series",
     "indicators series NAME [--period-kind day|month|quarter|year] [--from P]\n"
     "      [--to P] [--territory CTn | --commune C] [--filter axis=value]",
     "One indicator over a range of periods (default: the last 12 months), one\n"
     "\"period value\" line each ('-' where it has no value, as a ratio over 0).\n"
     "--filter level=loc2 narrows it to one value of an axis ('indicator list'\n"
     "says which axes each has).",
     "period-kind from to territory commune filter", 1, run_series},
    {"indicators export",
     "indicators export [--format csv|json] [-o FILE] [--period-kind K] [--from P]\n"
     "      [--to P] [--territory CTn | --commune C] [--indicators a,b]",
     "The figures for the housing observatory: CSV (RFC 4180, a header row, one\n"
     "row per indicator, scope and period, totals only) or JSON (with each axis\n"
     "value), of the Métropole and every territory unless a scope is given, to\n"
     "FILE (written whole, then renamed) or standard output.",
     "format output period-kind from to territory commune indicators", 0, run_export},
    {"demand import", "demand import FILE.csv",
     "Replace Action Logement's demand figures of every period the file names\n"
     "by its lines (FILE '-': standard input). Header row:\n"
     "  period,territory,public,housing_requests,aids_visale,aids_loca_pass,\n"
     "  aids_mobility,aids_other,housed\n"
     "period 2026-04, 2026-Q2 or 2026; territory CT1..CT6; public under_30,\n"
     "apprentice, seasonal, mobility, in_difficulty, disability, or empty for\n"
     "all publics together; the rest whole numbers (empty: 0). Every line is\n"
     "checked first, and nothing is sent if one is bad; the service then\n"
     "refuses the whole file if a line breaks its rules (a territory other than\n"
     "CT1..CT6, a line repeated), naming each bad line. Safe to repeat with\n"
     "--idempotency-key.",
     "", 1, run_demand_import},
};

#define IND_COMMAND_COUNT (sizeof ind_commands / sizeof ind_commands[0])

static int usage_error(const ind_command_t *cmd, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

static int usage_error(const ind_command_t *cmd, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    int rc = cli_usage_verror(cmd ? cmd->words : "indicators", format, args);
    va_end(args);
    return rc;
}

static void print_command_help(FILE *out, const ind_command_t *cmd)
{
    fprintf(out, "  %s\n", cmd->usage);
    cli_print_indented(out, cmd->summary);
}

void indicators_print_help(FILE *out)
{
    fprintf(out, "Indicators, readable (endpoint: --endpoint, or "
                 "PASSERELLE_INDICATORS_ENDPOINT,\n"
                 "default " INDICATORS_DEFAULT_ENDPOINT "):\n");
    for (size_t c = 0; c < IND_COMMAND_COUNT; c++) {
        print_command_help(out, &ind_commands[c]);
        if (c + 1 < IND_COMMAND_COUNT)
            fputc('\n', out);
    }
}

bool indicators_command(char **words, int count)
{
    if (count >= 2 && strcmp(words[0], "demand") == 0 && strcmp(words[1], "import") == 0)
        return true;
    if (count < 1 || strcmp(words[0], "indicators") != 0)
        return false;
    return count == 1 || words[1][0] == '-' || strcmp(words[1], "series") == 0 ||
           strcmp(words[1], "export") == 0;
}

/* The command the words name and how many words it took. */
static const ind_command_t *command_find(char **words, int count, int *used)
{
    if (count >= 2 && strcmp(words[0], "demand") == 0 && strcmp(words[1], "import") == 0) {
        *used = 2;
        return &ind_commands[3];
    }
    if (count >= 2 && strcmp(words[1], "series") == 0) {
        *used = 2;
        return &ind_commands[1];
    }
    if (count >= 2 && strcmp(words[1], "export") == 0) {
        *used = 2;
        return &ind_commands[2];
    }
    *used = 1;
    return &ind_commands[0];
}

static const char *flag(const ind_ctx_t *ctx, const char *name)
{
    int index = cli_flag_index(ctx->cmd->flags, name, strlen(name), NULL);
    return index < 0 ? NULL : ctx->values[index];
}

/* Fills ctx's positional and flag values from args; "-o" is --output.
 * Returns 0 or CLI_EXIT_USAGE. */
static int parse_args(ind_ctx_t *ctx, char **args, int count)
{
    const ind_command_t *cmd = ctx->cmd;
    int positionals = 0;
    for (int i = 0; i < count; i++) {
        const char *arg = args[i], *name = NULL, *value = NULL;
        size_t name_len = 0;
        if (!cli_flag_split(arg, &name, &name_len, &value)) {
            if (positionals >= cmd->positionals)
                return usage_error(cmd, "unexpected argument '%s' for '%s'", arg, cmd->words);
            ctx->positional = arg;
            positionals++;
            continue;
        }
        int index = cli_flag_index(cmd->flags, name, name_len, NULL);
        if (index < 0 || index >= MAX_FLAGS)
            return usage_error(cmd, "unknown flag %s for '%s'", arg, cmd->words);
        if (!value && !(value = cli_flag_next_value(args, count, &i)))
            return usage_error(cmd, "%s needs a value", arg);
        if (ctx->values[index])
            return usage_error(cmd, "%s given twice", arg);
        ctx->values[index] = value;
    }
    if (positionals < cmd->positionals)
        return usage_error(cmd, "'%s' needs %s", cmd->words,
                           cmd->run == run_series ? "an indicator NAME (see 'indicator list')"
                                                  : "a FILE ('-' for standard input)");
    if (flag(ctx, "territory") && flag(ctx, "commune"))
        return usage_error(cmd, "give --territory or --commune, not both");
    const char *format = flag(ctx, "format");
    if (format && strcasecmp(format, "csv") != 0 && strcasecmp(format, "json") != 0)
        return usage_error(cmd, "--format: '%s' is not csv or json", format);
    return 0;
}

/* ==========================================================================
 * Calls
 * ======================================================================== */

/* The scope the flags name (the Métropole when neither). */
static void scope_from_flags(const ind_ctx_t *ctx, Passerelle__Scope *scope)
{
    passerelle__scope__init(scope);
    scope->territory = (char *)flag(ctx, "territory");
    scope->commune = (char *)flag(ctx, "commune");
}

/* ==========================================================================
 * indicators: the snapshot table
 * ======================================================================== */

/* Characters of UTF-8 text, for padding columns ("Métropole" is 9). */
static int text_width(const char *text)
{
    int n = 0;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++)
        if ((*p & 0xC0) != 0x80)
            n++;
    return n;
}

static void print_padded(const char *text, int width, bool right)
{
    int pad = width - text_width(text);
    if (right)
        printf("%*s%s", pad > 0 ? pad : 0, "", text);
    else
        printf("%s%*s", text, pad > 0 ? pad : 0, "");
}

/* The row of snapshot for indicator name: at index i when the scopes
 * agree on the order (they do: the catalog's), else found by name. */
static const Passerelle__SnapshotRow *snapshot_row(const Passerelle__Snapshot *snapshot, size_t i,
                                                   const char *name)
{
    if (i < snapshot->n_rows && snapshot->rows[i]->indicator &&
        strcmp(snapshot->rows[i]->indicator, name) == 0)
        return snapshot->rows[i];
    for (size_t k = 0; k < snapshot->n_rows; k++)
        if (snapshot->rows[k]->indicator && strcmp(snapshot->rows[k]->indicator, name) == 0)
            return snapshot->rows[k];
    return NULL;
}

static void print_snapshot_table(Passerelle__Snapshot *const *snapshots, const char *const *headers,
                                 size_t count)
{
    const Passerelle__Snapshot *first = snapshots[0];
    printf("Indicators at %s\n\n", first->date ? first->date : "?");
    if (first->n_rows == 0) {
        printf("(no indicator)\n");
        return;
    }
    int name_width = (int)strlen("indicator");
    for (size_t i = 0; i < first->n_rows; i++) {
        int len = text_width(first->rows[i]->indicator ? first->rows[i]->indicator : "");
        if (len > name_width)
            name_width = len;
    }
    /* Each column as wide as its header or its widest value. */
    int widths[SNAPSHOT_SCOPES];
    char value[48];
    for (size_t c = 0; c < count; c++) {
        widths[c] = text_width(headers[c]);
        for (size_t i = 0; i < first->n_rows; i++) {
            const Passerelle__SnapshotRow *row =
                snapshot_row(snapshots[c], i, first->rows[i]->indicator);
            cli_format_value(row ? row->value : 0, row && (!row->has_defined || row->defined), 2,
                             value, sizeof value);
            if (text_width(value) > widths[c])
                widths[c] = text_width(value);
        }
    }
    print_padded("indicator", name_width, false);
    for (size_t c = 0; c < count; c++) {
        fputs("  ", stdout);
        print_padded(headers[c], widths[c], true);
    }
    fputs("  basis\n", stdout);
    for (size_t i = 0; i < first->n_rows; i++) {
        const char *name = first->rows[i]->indicator ? first->rows[i]->indicator : "";
        print_padded(name, name_width, false);
        for (size_t c = 0; c < count; c++) {
            const Passerelle__SnapshotRow *row = snapshot_row(snapshots[c], i, name);
            cli_format_value(row ? row->value : 0, row && (!row->has_defined || row->defined), 2,
                             value, sizeof value);
            fputs("  ", stdout);
            print_padded(value, widths[c], true);
        }
        printf("  %s\n", first->rows[i]->basis ? first->rows[i]->basis : "");
    }
}

static int run_snapshot(ind_ctx_t *ctx)
{
    /* The Métropole (no territory) and each territory, or the one asked. */
    static const char *const every_scope[SNAPSHOT_SCOPES] = {NULL,  "CT1", "CT2", "CT3",
                                                             "CT4", "CT5", "CT6"};
    const char *one[1] = {flag(ctx, "territory")};
    const char *const *scopes = one[0] ? one : every_scope;
    size_t scope_count = one[0] ? 1 : SNAPSHOT_SCOPES;
    const char *headers[SNAPSHOT_SCOPES];
    Passerelle__Snapshot *snapshots[SNAPSHOT_SCOPES] = {0};
    size_t count = 0;
    int rc = 0;
    for (size_t s = 0; s < scope_count && rc == 0; s++) {
        Passerelle__Scope scope = PASSERELLE__SCOPE__INIT;
        scope.territory = (char *)scopes[s];
        Passerelle__SnapshotRequest req = PASSERELLE__SNAPSHOT_REQUEST__INIT;
        req.scope = &scope;
        req.date = (char *)flag(ctx, "date");
        ProtobufCMessage *result = NULL;
        rc = cli_service_call(&ctx->service, "indicator.snapshot", &req.base, NULL,
                              &passerelle__snapshot__descriptor, &result, NULL);
        if (rc == 0) {
            snapshots[count] = (Passerelle__Snapshot *)result;
            headers[count] = scopes[s] ? scopes[s] : "Métropole";
            count++;
        }
    }
    if (rc == 0 && ctx->opts->json) {
        json_t *json = json_object(), *list = json_array();
        json_object_set_new(json, "date",
                            json_string(snapshots[0]->date ? snapshots[0]->date : ""));
        for (size_t i = 0; i < count; i++)
            json_array_append_new(list, pbjson_from_message(&snapshots[i]->base));
        json_object_set_new(json, "snapshots", list);
        cli_print_json(json);
        json_decref(json);
    } else if (rc == 0) {
        print_snapshot_table(snapshots, headers, count);
    }
    for (size_t i = 0; i < count; i++)
        passerelle__snapshot__free_unpacked(snapshots[i], NULL);
    return rc;
}

/* ==========================================================================
 * indicators series, indicators export
 * ======================================================================== */

static int run_series(ind_ctx_t *ctx)
{
    Passerelle__Scope scope;
    scope_from_flags(ctx, &scope);
    Passerelle__SeriesRequest req = PASSERELLE__SERIES_REQUEST__INIT;
    req.indicator = (char *)ctx->positional;
    req.period_kind = (char *)flag(ctx, "period-kind");
    req.from = (char *)flag(ctx, "from");
    req.to = (char *)flag(ctx, "to");
    req.filter = (char *)flag(ctx, "filter");
    req.scope = &scope;
    ProtobufCMessage *result = NULL;
    int rc = cli_service_call(&ctx->service, "indicator.series", &req.base, NULL,
                              &passerelle__series__descriptor, &result, NULL);
    if (rc)
        return rc;
    if (ctx->opts->json) {
        cli_print_message_json(result);
    } else {
        cli_print_series(stdout, (const Passerelle__Series *)result);
    }
    protobuf_c_message_free_unpacked(result, NULL);
    return 0;
}

/* Writes len bytes to path whole (cli_file_t: beside it, synced, then
 * renamed), so that a reader never sees half an export. 0 or the exit
 * code, said on stderr. */
static int write_file(const char *path, const void *data, size_t len)
{
    cli_file_t file;
    int rc = cli_file_begin(&file, path);
    if (rc)
        return rc;
    if (len && fwrite(data, 1, len, file.out) != len) {
        fprintf(stderr, "error: cannot write %s: %s\n", file.temp_path, strerror(errno));
        cli_file_discard(&file);
        return CLI_EXIT_REPLY_ERROR;
    }
    return cli_file_commit(&file);
}

static int run_export(ind_ctx_t *ctx)
{
    const char *format = flag(ctx, "format"); /* checked by parse_args */
    Passerelle__Scope scope;
    scope_from_flags(ctx, &scope);
    /* --indicators a,b: one request field per name. */
    char *names_text = flag(ctx, "indicators") ? strdup(flag(ctx, "indicators")) : NULL;
    char *names[256];
    size_t n_names = 0;
    char *save = NULL;
    for (char *name = names_text ? strtok_r(names_text, ",", &save) : NULL; name;
         name = strtok_r(NULL, ",", &save)) {
        while (*name == ' ')
            name++;
        if (*name && n_names < sizeof names / sizeof names[0])
            names[n_names++] = name;
    }
    Passerelle__ExportRequest req = PASSERELLE__EXPORT_REQUEST__INIT;
    req.format = (char *)(format ? format : "csv");
    req.period_kind = (char *)flag(ctx, "period-kind");
    req.from = (char *)flag(ctx, "from");
    req.to = (char *)flag(ctx, "to");
    req.scope = scope.territory || scope.commune ? &scope : NULL;
    req.indicators = names;
    req.n_indicators = n_names;
    ProtobufCMessage *result = NULL;
    int rc = cli_service_call(&ctx->service, "indicator.export", &req.base, NULL,
                              &passerelle__export_reply__descriptor, &result, NULL);
    free(names_text);
    if (rc)
        return rc;
    const Passerelle__ExportReply *exported = (const Passerelle__ExportReply *)result;
    const char *output = flag(ctx, "output");
    const void *content = exported->has_content ? exported->content.data : NULL;
    size_t len = exported->has_content ? exported->content.len : 0;
    if (output && strcmp(output, "-") != 0) {
        rc = write_file(output, content ? content : "", len);
        if (rc == 0)
            printf("exported %" PRIu32 " rows (%s) to %s\n", exported->rows,
                   exported->media_type ? exported->media_type : "?", output);
    } else if (len && fwrite(content, 1, len, stdout) != len) {
        fprintf(stderr, "error: cannot write to standard output\n");
        rc = CLI_EXIT_REPLY_ERROR;
    } else if (len && ((const char *)content)[len - 1] != '\n') {
        fputc('\n', stdout); /* the JSON form ends without one; a shell prompt would follow it */
    }
    protobuf_c_message_free_unpacked(result, NULL);
    return rc;
}

/* ==========================================================================
 * demand import: the CSV file
 * ======================================================================== */

/* One record of the file: its fields (owned) and the line it starts on. */
typedef struct {
    char **fields;
    size_t count;
    uint32_t line;
} csv_record_t;

typedef struct {
    csv_record_t *records;
    size_t count, cap;
    /* Problems found while parsing or checking, "line N: ...", owned. */
    char **errors;
    size_t n_errors, errors_cap;
} csv_t;

static bool csv_error(csv_t *csv, uint32_t line, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

static bool csv_error(csv_t *csv, uint32_t line, const char *format, ...)
{
    if (csv->n_errors == csv->errors_cap) {
        size_t cap = csv->errors_cap ? csv->errors_cap * 2 : 16;
        char **grown = realloc(csv->errors, cap * sizeof *grown);
        if (!grown)
            return false;
        csv->errors = grown;
        csv->errors_cap = cap;
    }
    char text[512];
    int len = snprintf(text, sizeof text, "line %" PRIu32 ": ", line);
    va_list args;
    va_start(args, format);
    vsnprintf(text + len, sizeof text - (size_t)len, format, args);
    va_end(args);
    char *copy = strdup(text);
    if (!copy)
        return false;
    csv->errors[csv->n_errors++] = copy;
    return true;
}

static void csv_free(csv_t *csv)
{
    for (size_t r = 0; r < csv->count; r++) {
        for (size_t f = 0; f < csv->records[r].count; f++)
            free(csv->records[r].fields[f]);
        free(csv->records[r].fields);
    }
    free(csv->records);
    for (size_t i = 0; i < csv->n_errors; i++)
        free(csv->errors[i]);
    free(csv->errors);
    memset(csv, 0, sizeof *csv);
}

/* A growable field being read. */
typedef struct {
    char *data;
    size_t len, cap;
} buffer_t;

static bool buffer_put(buffer_t *b, char c)
{
    if (b->len + 1 >= b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 32;
        char *grown = realloc(b->data, cap);
        if (!grown)
            return false;
        b->data = grown;
        b->cap = cap;
    }
    b->data[b->len++] = c;
    b->data[b->len] = '\0';
    return true;
}

static bool record_push_field(csv_record_t *record, buffer_t *b, bool quoted, size_t *cap)
{
    char *text = b->data ? b->data : strdup("");
    b->data = NULL;
    b->len = b->cap = 0;
    if (!text)
        return false;
    if (!quoted) {
        /* Spaces around an unquoted field are layout, not data. */
        char *start = text;
        while (*start == ' ' || *start == '\t')
            start++;
        size_t len = strlen(start);
        while (len > 0 && (start[len - 1] == ' ' || start[len - 1] == '\t'))
            len--;
        memmove(text, start, len);
        text[len] = '\0';
    }
    if (record->count == *cap) {
        size_t grown_cap = *cap ? *cap * 2 : 12;
        char **grown = realloc(record->fields, grown_cap * sizeof *grown);
        if (!grown) {
            free(text);
            return false;
        }
        record->fields = grown;
        *cap = grown_cap;
    }
    record->fields[record->count++] = text;
    return true;
}

/* Parses text (RFC 4180, CRLF or LF) into records; blank lines are
 * skipped. A malformed record is reported and skipped. False only when out
 * of memory. */
static bool csv_parse(const char *text, size_t len, csv_t *csv)
{
    size_t pos = 0;
    uint32_t line = 1;
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0)
        pos = 3; /* the UTF-8 byte order mark spreadsheets write */
    while (pos < len) {
        csv_record_t record = {NULL, 0, line};
        size_t cap = 0;
        bool bad = false, end = false;
        while (!end) {
            buffer_t field = {0};
            bool quoted = false;
            if (pos < len && text[pos] == '"') {
                quoted = true;
                pos++;
                for (;;) {
                    if (pos >= len) {
                        free(field.data);
                        if (!csv_error(csv, record.line, "a quoted field is not closed"))
                            return false;
                        bad = end = true;
                        break;
                    }
                    char c = text[pos++];
                    if (c == '"') {
                        if (pos < len && text[pos] == '"') {
                            pos++;
                        } else {
                            break;
                        }
                    } else if (c == '\n') {
                        line++;
                    }
                    if (!buffer_put(&field, c)) {
                        free(field.data);
                        return false;
                    }
                }
                if (bad)
                    break;
                while (pos < len && (text[pos] == ' ' || text[pos] == '\t'))
                    pos++;
                if (pos < len && text[pos] != ',' && text[pos] != '\n' && text[pos] != '\r') {
                    if (!csv_error(csv, record.line, "text after the closing quote of a field")) {
                        free(field.data);
                        return false;
                    }
                    bad = true;
                }
            } else {
                while (pos < len && text[pos] != ',' && text[pos] != '\n' && text[pos] != '\r') {
                    if (text[pos] == '"' && !bad) {
                        if (!csv_error(csv, record.line,
                                       "a quote inside an unquoted field (quote the whole field, "
                                       "doubling its quotes)"))
                            return false;
                        bad = true;
                    }
                    if (!buffer_put(&field, text[pos++])) {
                        free(field.data);
                        return false;
                    }
                }
            }
            if (bad) {
                /* Resynchronise at the end of the physical line. */
                free(field.data);
                while (pos < len && text[pos] != '\n')
                    pos++;
            } else if (!record_push_field(&record, &field, quoted, &cap)) {
                return false;
            }
            if (pos >= len) {
                end = true;
            } else if (text[pos] == ',' && !bad) {
                pos++;
            } else {
                if (text[pos] == '\r')
                    pos++;
                if (pos < len && text[pos] == '\n')
                    pos++;
                line++;
                end = true;
            }
        }
        bool blank_line = !bad && record.count == 1 && record.fields[0][0] == '\0';
        if (bad || blank_line) {
            for (size_t f = 0; f < record.count; f++)
                free(record.fields[f]);
            free(record.fields);
            continue;
        }
        if (csv->count == csv->cap) {
            size_t grown_cap = csv->cap ? csv->cap * 2 : 64;
            csv_record_t *grown = realloc(csv->records, grown_cap * sizeof *grown);
            if (!grown) {
                for (size_t f = 0; f < record.count; f++)
                    free(record.fields[f]);
                free(record.fields);
                return false;
            }
            csv->records = grown;
            csv->cap = grown_cap;
        }
        csv->records[csv->count++] = record;
    }
    return true;
}

/* The columns of the file, in the order the header row gives them. */
static const char *const csv_columns[CSV_COLUMNS] = {
    "period",         "territory",     "public",     "housing_requests", "aids_visale",
    "aids_loca_pass", "aids_mobility", "aids_other", "housed",
};

enum {
    COL_PERIOD,
    COL_TERRITORY,
    COL_PUBLIC,
    COL_REQUESTS,
    COL_VISALE,
    COL_LOCA_PASS,
    COL_MOBILITY,
    COL_OTHER,
    COL_HOUSED,
};

/* Which field of a record holds each column (header_map[COL_x]). False
 * (reported) if the header is not the nine names, each once. */
static bool csv_header(csv_t *csv, const csv_record_t *header, size_t map[CSV_COLUMNS])
{
    bool ok = true;
    size_t found[CSV_COLUMNS];
    for (size_t c = 0; c < CSV_COLUMNS; c++)
        found[c] = SIZE_MAX;
    for (size_t f = 0; f < header->count; f++) {
        size_t c = 0;
        while (c < CSV_COLUMNS && strcasecmp(header->fields[f], csv_columns[c]) != 0)
            c++;
        if (c == CSV_COLUMNS) {
            csv_error(csv, header->line, "unknown column '%.40s' in the header", header->fields[f]);
            ok = false;
        } else if (found[c] != SIZE_MAX) {
            csv_error(csv, header->line, "column '%s' twice in the header", csv_columns[c]);
            ok = false;
        } else {
            found[c] = f;
        }
    }
    for (size_t c = 0; c < CSV_COLUMNS; c++) {
        if (found[c] == SIZE_MAX) {
            csv_error(csv, header->line, "column '%s' is missing from the header", csv_columns[c]);
            ok = false;
        }
        map[c] = found[c];
    }
    return ok;
}

/* A whole number 0..UINT32_MAX; "" is 0 (*has false). */
static bool parse_count(const char *text, uint32_t *out, bool *has)
{
    *has = false;
    *out = 0;
    if (!*text)
        return true;
    for (const char *p = text; *p; p++)
        if (!isdigit((unsigned char)*p))
            return false;
    errno = 0;
    unsigned long long value = strtoull(text, NULL, 10);
    if (errno || value > UINT32_MAX)
        return false;
    *out = (uint32_t)value;
    *has = true;
    return true;
}

/* A priority public by its short name ("under_30") or full name
 * ("PUBLIC_UNDER_30"), any case; "" is every public (*has false). */
static bool parse_public(const char *text, int *out, bool *has)
{
    *has = false;
    *out = 0;
    if (!*text)
        return true;
    int value = 0;
    if (!pbjson_enum_value(&passerelle__priority_public__descriptor, text, &value) || value == 0)
        return false;
    *out = value;
    *has = true;
    return true;
}

/* The rows of the request, pointing into csv's fields. */
typedef struct {
    Passerelle__DemandRow *rows;
    Passerelle__DemandRow **ptrs;
    size_t count;
} demand_rows_t;

/* Checks every data record and fills rows from the good ones; bad ones
 * are reported in csv->errors. False only when out of memory. */
static bool csv_rows(csv_t *csv, const size_t map[CSV_COLUMNS], demand_rows_t *out)
{
    size_t data = csv->count - 1;
    out->rows = calloc(data ? data : 1, sizeof *out->rows);
    out->ptrs = calloc(data ? data : 1, sizeof *out->ptrs);
    out->count = 0;
    if (!out->rows || !out->ptrs)
        return false;
    for (size_t r = 1; r < csv->count; r++) {
        const csv_record_t *record = &csv->records[r];
        if (record->count != CSV_COLUMNS) {
            if (!csv_error(csv, record->line, "%zu column%s, expected %d", record->count,
                           record->count == 1 ? "" : "s", CSV_COLUMNS))
                return false;
            continue;
        }
        Passerelle__DemandRow *row = &out->rows[out->count];
        passerelle__demand_row__init(row);
        row->has_line = true;
        row->line = record->line;
        row->period = record->fields[map[COL_PERIOD]];
        row->territory = record->fields[map[COL_TERRITORY]];
        char problems[400] = "";
        int public_ = 0;
        bool has_public = false;
        const char *text = record->fields[map[COL_PUBLIC]];
        if (!parse_public(text, &public_, &has_public))
            snprintf(problems, sizeof problems,
                     "public '%.32s' is not one of under_30, apprentice, seasonal, mobility, "
                     "in_difficulty, disability (or empty: all publics)",
                     text);
        row->has_public_ = has_public;
        row->public_ = public_;
        struct {
            int column;
            uint32_t *value;
            protobuf_c_boolean *has;
        } counts[] = {
            {COL_REQUESTS, &row->housing_requests, &row->has_housing_requests},
            {COL_VISALE, &row->aids_visale, &row->has_aids_visale},
            {COL_LOCA_PASS, &row->aids_loca_pass, &row->has_aids_loca_pass},
            {COL_MOBILITY, &row->aids_mobility, &row->has_aids_mobility},
            {COL_OTHER, &row->aids_other, &row->has_aids_other},
            {COL_HOUSED, &row->housed, &row->has_housed},
        };
        for (size_t k = 0; k < sizeof counts / sizeof counts[0]; k++) {
            bool has = false;
            text = record->fields[map[counts[k].column]];
            if (!parse_count(text, counts[k].value, &has)) {
                size_t len = strlen(problems);
                snprintf(problems + len, sizeof problems - len,
                         "%s%s '%.24s' is not a whole number (0 or more)", len ? ", " : "",
                         csv_columns[counts[k].column], text);
            }
            *counts[k].has = has;
        }
        if (problems[0]) {
            if (!csv_error(csv, record->line, "%s", problems))
                return false;
            continue;
        }
        out->ptrs[out->count] = row;
        out->count++;
    }
    return true;
}

static int error_line_compare(const void *a, const void *b)
{
    /* "line N: ...": by N, so that parse and check errors interleave in
     * file order. */
    unsigned long x = strtoul(*(const char *const *)a + 5, NULL, 10);
    unsigned long y = strtoul(*(const char *const *)b + 5, NULL, 10);
    return (x > y) - (x < y);
}

/* Reads the whole file (or standard input for "-"), at most CSV_BYTES_MAX
 * bytes. NULL with the reason printed. */
static char *read_all(const char *path, size_t *len_out)
{
    bool is_stdin = strcmp(path, "-") == 0;
    FILE *f = is_stdin ? stdin : fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "error: %s: %s\n", path, strerror(errno));
        return NULL;
    }
    size_t cap = 64 * 1024, len = 0;
    char *data = malloc(cap + 1);
    bool ok = data != NULL;
    while (ok) {
        if (len == cap) {
            if (cap >= CSV_BYTES_MAX) {
                fprintf(stderr, "error: %s: larger than %u MiB; split it by period\n", path,
                        CSV_BYTES_MAX / (1024 * 1024));
                ok = false;
                break;
            }
            cap *= 2;
            char *grown = realloc(data, cap + 1);
            if (!grown) {
                ok = false;
                break;
            }
            data = grown;
        }
        size_t n = fread(data + len, 1, cap - len, f);
        len += n;
        if (n == 0) {
            if (ferror(f)) {
                fprintf(stderr, "error: %s: %s\n", path, strerror(errno));
                ok = false;
            }
            break;
        }
    }
    if (!is_stdin)
        fclose(f);
    if (!ok) {
        free(data);
        return NULL;
    }
    data[len] = '\0';
    *len_out = len;
    return data;
}

static int run_demand_import(ind_ctx_t *ctx)
{
    const char *path = ctx->positional;
    size_t len = 0;
    char *text = read_all(path, &len);
    if (!text)
        return CLI_EXIT_REPLY_ERROR;
    csv_t csv = {0};
    demand_rows_t rows = {0};
    size_t map[CSV_COLUMNS];
    int rc = CLI_EXIT_OK;
    bool ok = csv_parse(text, len, &csv);
    free(text);
    if (ok && csv.count == 0 && csv.n_errors == 0) {
        fprintf(stderr, "error: %s is empty: a header row and data lines are expected\n", path);
        rc = CLI_EXIT_REPLY_ERROR;
        goto done;
    }
    if (ok && csv.count > 0) {
        /* The header is the first record; a file whose first line is not one
         * is all reported against it. */
        if (csv_header(&csv, &csv.records[0], map))
            ok = csv_rows(&csv, map, &rows);
    }
    if (!ok) {
        fprintf(stderr, "error: out of memory\n");
        rc = CLI_EXIT_REPLY_ERROR;
        goto done;
    }
    if (csv.n_errors) {
        qsort(csv.errors, csv.n_errors, sizeof *csv.errors, error_line_compare);
        size_t shown = csv.n_errors < CSV_ERRORS_SHOWN ? csv.n_errors : CSV_ERRORS_SHOWN;
        for (size_t i = 0; i < shown; i++)
            fprintf(stderr, "%s\n", csv.errors[i]);
        if (shown < csv.n_errors)
            fprintf(stderr, "... and %zu more\n", csv.n_errors - shown);
        /* Sorted by line: a line with several problems (the header) counts
         * once. */
        size_t bad_lines = 0;
        for (size_t i = 0; i < csv.n_errors; i++)
            if (i == 0 || error_line_compare(&csv.errors[i - 1], &csv.errors[i]) != 0)
                bad_lines++;
        fprintf(stderr, "error: %s: %zu bad line%s; nothing was sent\n", path, bad_lines,
                bad_lines == 1 ? "" : "s");
        rc = CLI_EXIT_REPLY_ERROR;
        goto done;
    }
    if (rows.count == 0) {
        fprintf(stderr, "error: %s has a header but no data line; nothing was sent\n", path);
        rc = CLI_EXIT_REPLY_ERROR;
        goto done;
    }

    rc = cli_service_connect(&ctx->service, ctx->cmd->words);
    if (rc)
        goto done;
    Passerelle__DemandImportRequest req = PASSERELLE__DEMAND_IMPORT_REQUEST__INIT;
    req.rows = rows.ptrs;
    req.n_rows = rows.count;
    ProtobufCMessage *result = NULL;
    rc = cli_service_call(&ctx->service, "demand.import", &req.base, ctx->opts->idempotency_key,
                          &passerelle__demand_import_reply__descriptor, &result, NULL);
    if (rc)
        goto done;
    if (ctx->opts->json) {
        cli_print_message_json(result);
    } else {
        const Passerelle__DemandImportReply *imported =
            (const Passerelle__DemandImportReply *)result;
        printf("imported %zu line%s into %zu period%s\n", rows.count, rows.count == 1 ? "" : "s",
               imported->n_periods, imported->n_periods == 1 ? "" : "s");
        cli_print_message(stdout, result, 0, NULL);
    }
    protobuf_c_message_free_unpacked(result, NULL);
done:
    free(rows.rows);
    free(rows.ptrs);
    csv_free(&csv);
    return rc;
}

/* ==========================================================================
 * Entry point
 * ======================================================================== */

int indicators_main(const cli_options_t *opts, char **words, int count)
{
    int used = 0;
    const ind_command_t *cmd = command_find(words, count, &used);
    if (opts->help) {
        print_command_help(stdout, cmd);
        return CLI_EXIT_OK;
    }
    ind_ctx_t ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.opts = opts;
    ctx.cmd = cmd;
    cli_service_init(&ctx.service, opts, "PASSERELLE_INDICATORS_ENDPOINT",
                     INDICATORS_DEFAULT_ENDPOINT);
    int rc = parse_args(&ctx, words + used, count - used);
    /* The import checks its file before it needs the service. */
    if (rc == 0 && cmd->run != run_demand_import)
        rc = cli_service_connect(&ctx.service, cmd->words);
    if (rc == 0)
        rc = cmd->run(&ctx);
    cli_service_close(&ctx.service);
    return rc;
}
