/* Reference data: communes, arrondissements and territories; see refdata.h.
 *
 * The two CSV tables are embedded by the build and parsed into fixed static
 * arrays on first use, so lookups never allocate and the tables live as
 * long as the process. With under 120 rows a linear scan is cheaper than
 * any index worth maintaining. */
#include "refdata.h"
#include "log.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

extern const unsigned char refdata_communes_csv[];
extern const size_t refdata_communes_csv_len;
extern const unsigned char refdata_arrondissements_csv[];
extern const size_t refdata_arrondissements_csv_len;

/* Room for the longest name of the tables with margin; a row that does not
 * fit is a broken table, reported at parse time. */
#define REFDATA_MAX_COMMUNES       128
#define REFDATA_MAX_ARRONDISSEMENT 32
#define REFDATA_NAME_MAX           96
#define REFDATA_FOLDED_MAX         (REFDATA_NAME_MAX * 2)

/* Longer input cannot be any name or code of the tables; refusing it early
 * keeps folding bounded and avoids matching a truncated prefix. */
#define REFDATA_INPUT_MAX 256

typedef struct {
    commune_t pub; /* points into the arrays below */
    char insee[8];
    char name[REFDATA_NAME_MAX];
    char territory[8];
    char folded[REFDATA_FOLDED_MAX];
} refdata_row_t;

static refdata_row_t communes[REFDATA_MAX_COMMUNES];
static size_t communes_count;
static refdata_row_t arrondissements[REFDATA_MAX_ARRONDISSEMENT];
static size_t arrondissements_count;
static pthread_once_t refdata_once = PTHREAD_ONCE_INIT;

static const struct {
    const char *code;
    const char *name;
} territories[] = {
    {"CT1", "Marseille-Provence"},    {"CT2", "Pays d'Aix"},
    {"CT3", "Pays Salonais"},         {"CT4", "Pays d'Aubagne et de l'\xC3\x89toile"},
    {"CT5", "Istres-Ouest Provence"}, {"CT6", "Pays de Martigues"},
};

/* --------------------------------------------------------------------------
 * Name folding
 * -------------------------------------------------------------------------- */

/* Folds of the two-byte UTF-8 sequences C3 80..C3 BF (Latin-1 letters):
 * NULL where the character has no ASCII fold and is kept as it is. */
static const char *latin1_folds[64] = {
    /* C3 80 À */ "a", "a", "a", "a", "a", "a", "ae", "c",
    /* C3 88 È */ "e", "e", "e", "e", "i", "i", "i",  "i",
    /* C3 90 Ð */ "d", "n", "o", "o", "o", "o", "o",  NULL,
    /* C3 98 Ø */ "o", "u", "u", "u", "u", "y", NULL, "ss",
    /* C3 A0 à */ "a", "a", "a", "a", "a", "a", "ae", "c",
    /* C3 A8 è */ "e", "e", "e", "e", "i", "i", "i",  "i",
    /* C3 B0 ð */ "d", "n", "o", "o", "o", "o", "o",  NULL,
    /* C3 B8 ø */ "o", "u", "u", "u", "u", "y", NULL, "y",
};

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if s does not start
 * one (bad lead byte, missing continuation, overlong, surrogate). */
static size_t utf8_sequence_length(const unsigned char *s)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned int min;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        min = 0x10000;
    } else
        return 0;
    unsigned int cp = c & (0x7F >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

typedef struct {
    char *out;
    size_t size; /* including the NUL */
    size_t len;
    bool full;
} fold_buffer_t;

/* Appends text whole or not at all, so that a truncated result never ends
 * in the middle of a character. */
static void fold_append(fold_buffer_t *buf, const char *text, size_t len)
{
    if (buf->full || buf->len + len + 1 > buf->size) {
        buf->full = true;
        return;
    }
    memcpy(buf->out + buf->len, text, len);
    buf->len += len;
}

void refdata_fold_name(const char *name, char *out, size_t out_size)
{
    if (!out || out_size == 0)
        return;
    fold_buffer_t buf = {out, out_size, 0, false};
    const unsigned char *s = (const unsigned char *)(name ? name : "");
    bool pending_separator = false;
    while (*s) {
        const char *fold = NULL;
        size_t fold_len = 0, consumed = 1;
        char ascii;
        bool separator = false;
        size_t seq = utf8_sequence_length(s);
        if (seq == 0) {
            /* Invalid UTF-8 is kept visible (and unmatchable) rather than
             * dropped, so that garbage never folds into a real name. */
            fold = "?";
            fold_len = 1;
        } else if (seq == 1) {
            if (*s == ' ' || *s == '-' || *s == '\'' || *s == '\t' || *s == '\n' || *s == '\r')
                separator = true;
            else {
                ascii = (char)tolower(*s);
                fold = &ascii;
                fold_len = 1;
            }
        } else {
            consumed = seq;
            if (s[0] == 0xC3 && latin1_folds[s[1] - 0x80])
                fold = latin1_folds[s[1] - 0x80];
            else if (s[0] == 0xC5 && (s[1] == 0x92 || s[1] == 0x93))
                fold = "oe";
            else if (s[0] == 0xC5 && s[1] == 0xB8)
                fold = "y";
            else if (s[0] == 0xE2 && s[1] == 0x80 && (s[2] == 0x98 || s[2] == 0x99))
                separator = true;
            else {
                fold = (const char *)s;
                fold_len = seq;
            }
            if (fold && fold != (const char *)s)
                fold_len = strlen(fold);
        }
        s += consumed;
        if (separator) {
            pending_separator = true;
            continue;
        }
        if (pending_separator && buf.len > 0)
            fold_append(&buf, " ", 1);
        pending_separator = false;
        fold_append(&buf, fold, fold_len);
    }
    out[buf.len] = '\0';
}

/* --------------------------------------------------------------------------
 * Table loading
 * -------------------------------------------------------------------------- */

/* Copies the next comma-separated cell of the line into cell; false if the
 * cell does not fit. The tables hold no quoted cells. */
static bool csv_cell(const char **cursor, const char *line_end, char *cell, size_t cell_size)
{
    const char *start = *cursor;
    const char *end = memchr(start, ',', (size_t)(line_end - start));
    if (!end)
        end = line_end;
    size_t len = (size_t)(end - start);
    if (len >= cell_size)
        return false;
    memcpy(cell, start, len);
    cell[len] = '\0';
    *cursor = end < line_end ? end + 1 : end;
    return true;
}

/* Parses a three-column table (header skipped) into rows; returns how many
 * rows were read. Column 3 lands in territory whatever it holds: the
 * caller fixes it up for the arrondissements, whose column 3 is the parent
 * commune. */
static size_t load_table(const char *table, const unsigned char *csv, size_t csv_len,
                         refdata_row_t *rows, size_t max_rows)
{
    const char *p = (const char *)csv, *end = p + csv_len;
    size_t count = 0;
    bool header = true;
    while (p < end) {
        const char *line_end = memchr(p, '\n', (size_t)(end - p));
        const char *next = line_end ? line_end + 1 : end;
        if (!line_end)
            line_end = end;
        if (line_end > p && line_end[-1] == '\r')
            line_end--;
        if (header || line_end == p) {
            header = false;
            p = next;
            continue;
        }
        if (count == max_rows) {
            log_error("reference table has too many rows", "{s:s}", "table", table);
            break;
        }
        refdata_row_t *row = &rows[count];
        const char *cursor = p;
        if (!csv_cell(&cursor, line_end, row->insee, sizeof row->insee) ||
            !csv_cell(&cursor, line_end, row->name, sizeof row->name) ||
            !csv_cell(&cursor, line_end, row->territory, sizeof row->territory) ||
            strlen(row->insee) != 5 || !row->name[0]) {
            log_error("malformed reference table row", "{s:s, s:i}", "table", table, "row",
                      (int)count + 1);
            p = next;
            continue;
        }
        refdata_fold_name(row->name, row->folded, sizeof row->folded);
        row->pub.insee = row->insee;
        row->pub.name = row->name;
        row->pub.territory = row->territory;
        count++;
        p = next;
    }
    return count;
}

static void refdata_load(void)
{
    communes_count = load_table("communes", refdata_communes_csv, refdata_communes_csv_len,
                                communes, REFDATA_MAX_COMMUNES);
    arrondissements_count =
        load_table("arrondissements", refdata_arrondissements_csv, refdata_arrondissements_csv_len,
                   arrondissements, REFDATA_MAX_ARRONDISSEMENT);

    /* Column 3 of the arrondissement table is the parent commune; what
     * callers want is the parent's territory. */
    const char *marseille_territory = "";
    for (size_t i = 0; i < communes_count; i++)
        if (strcmp(communes[i].insee, REFDATA_MARSEILLE_INSEE) == 0)
            marseille_territory = communes[i].territory;
    for (size_t i = 0; i < arrondissements_count; i++)
        snprintf(arrondissements[i].territory, sizeof arrondissements[i].territory, "%s",
                 marseille_territory);
}

static void refdata_ensure_loaded(void)
{
    pthread_once(&refdata_once, refdata_load);
}

/* --------------------------------------------------------------------------
 * Lookups
 * -------------------------------------------------------------------------- */

/* Copies text without surrounding ASCII white space; false if it is too
 * long to be anything in the tables. */
static bool trimmed_copy(const char *text, char *out, size_t out_size)
{
    if (!text)
        return false;
    size_t len = strnlen(text, REFDATA_INPUT_MAX + 1);
    if (len > REFDATA_INPUT_MAX)
        return false;
    while (len > 0 && isspace((unsigned char)*text)) {
        text++;
        len--;
    }
    while (len > 0 && isspace((unsigned char)text[len - 1]))
        len--;
    if (len + 1 > out_size)
        return false;
    memcpy(out, text, len);
    out[len] = '\0';
    return true;
}

static bool is_insee_code(const char *s)
{
    if (strlen(s) != 5)
        return false;
    for (int i = 0; i < 5; i++)
        if (!isdigit((unsigned char)s[i]))
            return false;
    return true;
}

/* Folds text and expands the abbreviations "st"/"ste" that addresses use
 * for Saint/Sainte, word by word. */
static void fold_for_lookup(const char *text, char *out, size_t out_size)
{
    char folded[REFDATA_FOLDED_MAX * 2];
    refdata_fold_name(text, folded, sizeof folded);
    size_t len = 0;
    out[0] = '\0';
    char *save = NULL;
    for (char *word = strtok_r(folded, " ", &save); word; word = strtok_r(NULL, " ", &save)) {
        const char *w = word;
        if (strcmp(word, "st") == 0)
            w = "saint";
        else if (strcmp(word, "ste") == 0)
            w = "sainte";
        int n = snprintf(out + len, out_size - len, "%s%s", len ? " " : "", w);
        if (n < 0 || (size_t)n >= out_size - len) {
            out[0] = '\0'; /* too long to be a name: match nothing */
            return;
        }
        len += (size_t)n;
    }
}

const commune_t *refdata_commune(const char *code_or_name)
{
    char text[REFDATA_INPUT_MAX + 1];
    if (!trimmed_copy(code_or_name, text, sizeof text) || !text[0])
        return NULL;
    refdata_ensure_loaded();
    if (is_insee_code(text)) {
        for (size_t i = 0; i < communes_count; i++)
            if (strcmp(communes[i].insee, text) == 0)
                return &communes[i].pub;
        return NULL;
    }
    char folded[REFDATA_FOLDED_MAX];
    fold_for_lookup(text, folded, sizeof folded);
    if (!folded[0])
        return NULL;
    for (size_t i = 0; i < communes_count; i++)
        if (strcmp(communes[i].folded, folded) == 0)
            return &communes[i].pub;
    return NULL;
}

/* The arrondissement number in "7", "07", "7e", "7eme", "1er", "1ere",
 * optionally followed by "arrondissement" and preceded by "marseille"
 * (text already folded); 0 if text is not of that shape. */
static int arrondissement_number(const char *folded)
{
    const char *p = folded;
    if (strncmp(p, "marseille ", 10) == 0)
        p += 10;
    int number = 0, digits = 0;
    while (isdigit((unsigned char)*p) && digits < 3) {
        number = number * 10 + (*p - '0');
        p++;
        digits++;
    }
    if (digits == 0 || digits > 2 || number < 1 || number > 16)
        return 0;
    static const char *suffixes[] = {"er", "ere", "e", "eme", ""};
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        size_t n = strlen(suffixes[i]);
        if (strncmp(p, suffixes[i], n) != 0)
            continue;
        if (i < 2 && number != 1)
            return 0; /* "7er" is not an ordinal */
        const char *rest = p + n;
        if (*rest == '\0' || strcmp(rest, " arrondissement") == 0 || strcmp(rest, " arr") == 0)
            return number;
    }
    return 0;
}

const commune_t *refdata_arrondissement(const char *text)
{
    char trimmed[REFDATA_INPUT_MAX + 1];
    if (!trimmed_copy(text, trimmed, sizeof trimmed) || !trimmed[0])
        return NULL;
    refdata_ensure_loaded();
    char code[8] = "";
    if (is_insee_code(trimmed))
        memcpy(code, trimmed, 6); /* five digits and the NUL */
    else {
        char folded[REFDATA_FOLDED_MAX];
        fold_for_lookup(trimmed, folded, sizeof folded);
        if (!folded[0])
            return NULL;
        for (size_t i = 0; i < arrondissements_count; i++)
            if (strcmp(arrondissements[i].folded, folded) == 0)
                return &arrondissements[i].pub;
        int number = arrondissement_number(folded);
        if (number == 0)
            return NULL;
        snprintf(code, sizeof code, "132%02d", number);
    }
    for (size_t i = 0; i < arrondissements_count; i++)
        if (strcmp(arrondissements[i].insee, code) == 0)
            return &arrondissements[i].pub;
    return NULL;
}

bool refdata_is_territory(const char *code)
{
    return refdata_territory_name(code) != NULL;
}

const char *refdata_territory_name(const char *code)
{
    if (!code)
        return NULL;
    for (size_t i = 0; i < sizeof territories / sizeof territories[0]; i++)
        if (strcasecmp(territories[i].code, code) == 0)
            return territories[i].name;
    return NULL;
}

size_t refdata_commune_count(void)
{
    refdata_ensure_loaded();
    return communes_count;
}

const commune_t *refdata_commune_at(size_t index)
{
    refdata_ensure_loaded();
    return index < communes_count ? &communes[index].pub : NULL;
}
