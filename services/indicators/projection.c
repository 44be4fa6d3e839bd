/* What an event counts (projection.h): the triples of an increment, and
 * the increments of every event type the catalog counts.
 *
 * Everything here is a pure function of the event, so that a projector
 * and a rebuild reading the same event always count the same thing: no
 * clock, no lookup, no state. What an event needs to be counted (the
 * territory, the commune, the level, the publics) travels in its data,
 * which is the record after the change.
 *
 * Data that cannot be counted (it does not decode, its schema is not the
 * one its type carries, its time does not parse) is logged and gives an
 * empty projection: the event is acknowledged rather than retried forever,
 * since reading it again would not change what it says.
 *
 * A rebuild counts a million events in a row, as fast as Redis hands them
 * over: so what an event counts is handed out as increments, not expanded
 * (a tally sums them, and expands each distinct one once), times and keys
 * are read and written by hand, and messages are read off the wire into an
 * arena (projection_message_read) rather than decoded field by field with
 * a malloc each; protobuf-c's decoder stays the judge of anything unusual. */
#include "projection.h"

#include "catalog.h"
#include "docstore.pb-c.h"
#include "ids.h"
#include "indicators.pb-c.h"
#include "log.h"
#include "reservations.pb-c.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ====================================================================== */
/* Triples                                                                */
/* ====================================================================== */

void triples_init(triples_t *t)
{
    t->items = NULL;
    t->count = 0;
    t->cap = 0;
}

/* Also false, with nothing added, for a key or a field too long to hold:
 * projection_expand checks lengths first, so only a direct caller meets
 * it. */
bool triples_add(triples_t *t, const char *key, const char *field, int64_t delta)
{
    size_t key_len = strlen(key), field_len = strlen(field);
    if (key_len >= sizeof t->items[0].key || field_len >= sizeof t->items[0].field)
        return false;
    if (t->count == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 32;
        triple_t *items = realloc(t->items, cap * sizeof *items);
        if (!items)
            return false;
        t->items = items;
        t->cap = cap;
    }
    triple_t *item = &t->items[t->count++];
    memcpy(item->key, key, key_len + 1);
    memcpy(item->field, field, field_len + 1);
    item->delta = delta;
    return true;
}

void triples_free(triples_t *t)
{
    if (!t)
        return;
    free(t->items);
    triples_init(t);
}

static int triple_order(const void *a, const void *b)
{
    const triple_t *x = a, *y = b;
    int by_key = strcmp(x->key, y->key);
    return by_key ? by_key : strcmp(x->field, y->field);
}

/* Sums the moves of one (key, field) into one and drops those that sum
 * to zero: a replacement is stored with its record and undone later, so
 * it should hold each counter field once. O(n log n). */
static void triples_merge(triples_t *t)
{
    if (t->count < 2)
        return;
    qsort(t->items, t->count, sizeof t->items[0], triple_order);
    size_t kept = 0;
    for (size_t i = 0; i < t->count; i++) {
        if (kept > 0 && triple_order(&t->items[kept - 1], &t->items[i]) == 0) {
            t->items[kept - 1].delta += t->items[i].delta;
            continue;
        }
        if (kept > 0 && t->items[kept - 1].delta == 0)
            kept--;
        if (kept != i)
            t->items[kept] = t->items[i];
        kept++;
    }
    if (kept > 0 && t->items[kept - 1].delta == 0)
        kept--;
    t->count = kept;
}

/* ====================================================================== */
/* Expansion: scopes x periods x fields                                   */
/* ====================================================================== */

/* Scopes become key parts, so only the shapes the reference data has
 * are taken: anything else would make keys no query ever reads. */
static bool territory_valid(const char *s)
{
    return s && s[0] == 'C' && s[1] == 'T' && s[2] >= '1' && s[2] <= '6' && s[3] == '\0';
}

/* An INSEE commune code: five characters, digits (or 2A/2B in Corsica). */
static bool commune_valid(const char *s)
{
    if (!s || strlen(s) != 5)
        return false;
    for (size_t i = 0; i < 5; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (i == 1 && (s[i] == 'A' || s[i] == 'B'))))
            return false;
    return true;
}

/* Whether the catalog keeps the counter per commune: the catalog is the
 * one place that says so, for the queries as for the projection. */
static bool counter_per_commune(const char *counter)
{
    for (size_t i = 0; i < catalog_count; i++)
        if (catalog[i].counter && strcmp(catalog[i].counter, counter) == 0 && catalog[i].communes)
            return true;
    return false;
}

/* The fields an increment moves ("*" unless dims_only, then each distinct
 * dim: a public named twice still counts once), after checking the
 * increment is well formed. False if it is not. */
static bool increment_fields(const increment_t *inc, const char *fields[PROJ_DIMS_MAX + 1],
                             size_t *field_count)
{
    if (!inc || !inc->counter || !*inc->counter || inc->dim_count > PROJ_DIMS_MAX)
        return false;
    /* "c:" counter ":" scope ":" period: the longest scope and period
     * are short and fixed, only the counter name can overflow a key. */
    if (strlen(inc->counter) + 2 + 1 + 5 + 1 + PERIOD_KEY_LEN > INDICATORS_KEY_MAX)
        return false;
    if (inc->stated_period) {
        period_kind_t from = inc->stated_kind;
        if (from < PERIOD_DAY || from > PERIOD_YEAR || !period_key_valid(from, inc->stated_period))
            return false;
    }
    size_t n = 0;
    if (!inc->dims_only)
        fields[n++] = "*";
    for (size_t i = 0; i < inc->dim_count; i++) {
        const char *dim = inc->dims[i];
        if (!dim || !*dim)
            continue;
        if (strlen(dim) >= PROJ_FIELD_MAX || !strchr(dim, '='))
            return false;
        bool seen = false;
        for (size_t j = 0; j < n && !seen; j++)
            seen = strcmp(fields[j], dim) == 0;
        if (!seen)
            fields[n++] = dim;
    }
    *field_count = n;
    return true;
}

bool projection_check(const increment_t *inc)
{
    const char *fields[PROJ_DIMS_MAX + 1];
    size_t field_count;
    return increment_fields(inc, fields, &field_count);
}

/* The scopes of an increment: the Métropole, the territory if known, the
 * commune if known and the counter is kept per commune. */
typedef struct {
    const char *names[3];
    bool commune[3];
    size_t count;
} scopes_t;

static void scopes_of(const increment_t *inc, scopes_t *scopes)
{
    scopes->count = 0;
    scopes->names[scopes->count] = SCOPE_ALL;
    scopes->commune[scopes->count++] = false;
    if (territory_valid(inc->territory)) {
        scopes->names[scopes->count] = inc->territory;
        scopes->commune[scopes->count++] = false;
    }
    if (commune_valid(inc->commune) && counter_per_commune(inc->counter)) {
        scopes->names[scopes->count] = inc->commune;
        scopes->commune[scopes->count++] = true;
    }
}

typedef struct {
    char keys[PERIOD_KINDS + 1][PERIOD_KEY_LEN];
    bool is_day[PERIOD_KINDS + 1];
    size_t count;
} period_set_t;

/* key is a period key (at most PERIOD_KEY_LEN - 1 characters) or "all". */
static void period_set_add(period_set_t *set, const char *key, bool is_day)
{
    memcpy(set->keys[set->count], key, strlen(key) + 1);
    set->is_day[set->count] = is_day;
    set->count++;
}

/* The key of the longer period `to` that contains the valid key `key` of
 * kind `from` (to >= from): the key syntax nests, so it is read off the
 * text. */
static void containing_key(period_kind_t from, const char *key, period_kind_t to,
                           char out[PERIOD_KEY_LEN])
{
    if (to == from) {
        memcpy(out, key, strlen(key) + 1);
        return;
    }
    switch (to) {
    case PERIOD_MONTH: /* from a day "2026-04-01" */
        memcpy(out, key, 7);
        out[7] = '\0';
        break;
    case PERIOD_QUARTER: { /* from a day or a month: "2026-04..." */
        int month = (key[5] - '0') * 10 + (key[6] - '0');
        memcpy(out, key, 4);
        out[4] = '-';
        out[5] = 'Q';
        out[6] = (char)('1' + (month - 1) / 3);
        out[7] = '\0';
        break;
    }
    default:
        memcpy(out, key, 4);
        out[4] = '\0';
        break;
    }
}

/* The periods of a well-formed increment, longest last ("all"). */
static void periods_of(const increment_t *inc, period_set_t *set)
{
    set->count = 0;
    char key[PERIOD_KEY_LEN];
    if (!inc->stated_period) {
        if (inc->days) {
            period_key(PERIOD_DAY, inc->at_ms, key);
            period_set_add(set, key, true);
        }
        for (int kind = PERIOD_MONTH; kind <= PERIOD_YEAR; kind++) {
            period_key((period_kind_t)kind, inc->at_ms, key);
            period_set_add(set, key, false);
        }
    } else {
        period_kind_t from = inc->stated_kind;
        for (int kind = from; kind <= PERIOD_YEAR; kind++) {
            containing_key(from, inc->stated_period, (period_kind_t)kind, key);
            period_set_add(set, key, kind == PERIOD_DAY);
        }
    }
    period_set_add(set, PERIOD_ALL, false);
}

bool projection_expand_each(const increment_t *inc, projection_key_fn *fn, void *arg)
{
    const char *fields[PROJ_DIMS_MAX + 1];
    size_t field_count;
    if (!increment_fields(inc, fields, &field_count))
        return false;
    if (inc->amount == 0 || field_count == 0)
        return true;
    period_set_t periods;
    periods_of(inc, &periods);
    scopes_t scopes;
    scopes_of(inc, &scopes);

    /* The layout of indicators_counter_key, "c:<counter>:<scope>:<period>",
     * put together with memcpy: the counter part once, then each scope
     * and period after it. increment_fields checked that it fits. */
    char key[INDICATORS_KEY_MAX];
    size_t counter_len = strlen(inc->counter);
    memcpy(key, "c:", 2);
    memcpy(key + 2, inc->counter, counter_len);
    key[2 + counter_len] = ':';
    char *scope_at = key + 3 + counter_len;
    for (size_t s = 0; s < scopes.count; s++) {
        size_t scope_len = strlen(scopes.names[s]);
        memcpy(scope_at, scopes.names[s], scope_len);
        scope_at[scope_len] = ':';
        char *period_at = scope_at + scope_len + 1;
        for (size_t p = 0; p < periods.count; p++) {
            /* Day keys for the Métropole and territories only: by commune
             * they would be most of the key space and few would read them. */
            if (periods.is_day[p] && scopes.commune[s])
                continue;
            memcpy(period_at, periods.keys[p], strlen(periods.keys[p]) + 1);
            if (!fn(arg, key, fields, field_count, inc->amount))
                return false;
        }
    }
    return true;
}

static bool append_triples(void *arg, const char *key, const char *const *fields,
                           size_t field_count, int64_t amount)
{
    triples_t *out = arg;
    for (size_t f = 0; f < field_count; f++)
        if (!triples_add(out, key, fields[f], amount))
            return false;
    return true;
}

bool projection_expand(const increment_t *inc, triples_t *out)
{
    if (!out)
        return false;
    size_t start = out->count;
    if (projection_expand_each(inc, append_triples, out))
        return true;
    out->count = start; /* all of inc or nothing */
    return false;
}

size_t projection_triple_count(const increment_t *inc)
{
    const char *fields[PROJ_DIMS_MAX + 1];
    size_t field_count;
    if (!increment_fields(inc, fields, &field_count) || inc->amount == 0)
        return 0;
    /* As periods_of and scopes_of make them, without the keys. */
    size_t periods, days;
    if (!inc->stated_period) {
        days = inc->days ? 1 : 0;
        periods = days + 3 + 1;
    } else {
        days = inc->stated_kind == PERIOD_DAY ? 1 : 0;
        periods = (size_t)(PERIOD_YEAR - inc->stated_kind) + 1 + 1;
    }
    scopes_t scopes;
    scopes_of(inc, &scopes);
    size_t keys = 0;
    for (size_t s = 0; s < scopes.count; s++)
        keys += scopes.commune[s] ? periods - days : periods;
    return keys * field_count;
}

/* ====================================================================== */
/* Increments held with their text                                        */
/* ====================================================================== */

struct increments_text_t {
    increments_text_t *next;
    size_t used, size;
    char data[];
};

/* Text chunks: one holds what a few events' increments name. */
#define INCREMENTS_TEXT_CHUNK 4096

void increments_init(increments_t *l)
{
    memset(l, 0, sizeof *l);
}

void increments_reset(increments_t *l)
{
    l->count = 0;
    /* Keep one ordinary chunk, emptied: most events fit in it. */
    increments_text_t *keep = NULL;
    for (increments_text_t *chunk = l->text, *next; chunk; chunk = next) {
        next = chunk->next;
        if (!keep && chunk->size == INCREMENTS_TEXT_CHUNK) {
            keep = chunk;
            keep->next = NULL;
            keep->used = 0;
        } else {
            free(chunk);
        }
    }
    l->text = keep;
}

void increments_free(increments_t *l)
{
    if (!l)
        return;
    increments_reset(l);
    free(l->text);
    free(l->items);
    increments_init(l);
}

/* Room for len bytes in l's text, which stays put until increments_reset;
 * NULL when out of memory. */
static char *increments_room(increments_t *l, size_t len)
{
    increments_text_t *chunk = l->text;
    if (!chunk || chunk->size - chunk->used < len) {
        size_t size = len > INCREMENTS_TEXT_CHUNK ? len : INCREMENTS_TEXT_CHUNK;
        chunk = malloc(sizeof *chunk + size);
        if (!chunk)
            return NULL;
        chunk->used = 0;
        chunk->size = size;
        chunk->next = l->text;
        l->text = chunk;
    }
    char *room = chunk->data + chunk->used;
    chunk->used += len;
    return room;
}

/* Copies s, of length len, at *at and moves *at past it; NULL stays NULL. */
static const char *text_put(char **at, const char *s, size_t len)
{
    if (!s)
        return NULL;
    char *copy = *at;
    memcpy(copy, s, len + 1);
    *at += len + 1;
    return copy;
}

/* ====================================================================== */
/* Axis values                                                            */
/* ====================================================================== */

/* The axis values of one increment, as (axis, value) pairs: count makes
 * the "axis=VALUE" fields. The strings are borrowed (enum names, the
 * event's data, buffers of the caller). */
typedef struct {
    const char *axis[PROJ_DIMS_MAX];
    const char *value[PROJ_DIMS_MAX];
    size_t count;
} dims_t;

/* Adds axis=value unless value is NULL or empty (no value: the increment
 * counts in "*" only), or the dims are full. */
static void dims_add(dims_t *d, const char *axis, const char *value)
{
    if (!value || !*value || d->count >= PROJ_DIMS_MAX)
        return;
    d->axis[d->count] = axis;
    d->value[d->count] = value;
    d->count++;
}

/* "axis=value" into out, cut to the buffer as snprintf would cut it (the
 * values counted here are enum names and checked tokens, far shorter). By
 * hand: this runs for every axis value of every event a rebuild reads. */
static void field_format(const char *axis, const char *value, char out[PROJ_FIELD_MAX])
{
    size_t axis_len = strlen(axis), value_len = strlen(value);
    if (axis_len > PROJ_FIELD_MAX - 2)
        axis_len = PROJ_FIELD_MAX - 2;
    if (value_len > PROJ_FIELD_MAX - 2 - axis_len)
        value_len = PROJ_FIELD_MAX - 2 - axis_len;
    memcpy(out, axis, axis_len);
    out[axis_len] = '=';
    memcpy(out + axis_len + 1, value, value_len);
    out[axis_len + 1 + value_len] = '\0';
}

/* The axis value of an enum: its name without the enum's prefix
 * (LEVEL_LOC2 -> LOC2); NULL for 0 (unspecified in every enum counted
 * here) or a value the descriptor does not know. */
static const char *enum_axis_value(const ProtobufCEnumDescriptor *desc, bool has, int value,
                                   const char *prefix)
{
    if (!has || value == 0)
        return NULL;
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(desc, value);
    if (!v)
        return NULL;
    size_t n = strlen(prefix);
    return strncmp(v->name, prefix, n) == 0 ? v->name + n : v->name;
}

static const char *public_value(int value)
{
    return enum_axis_value(&passerelle__priority_public__descriptor, true, value, "PUBLIC_");
}

/* Unspecified means Action Logement, as in requests (and in the
 * reservations service's progress). */
static const char *reservataire_value(const Passerelle__Reservation *r)
{
    const char *name = enum_axis_value(&passerelle__reservataire__descriptor, r->has_reservataire,
                                       (int)r->reservataire, "RESERVATAIRE_");
    return name ? name : "ACTION_LOGEMENT";
}

static const char *ineligibility_reason(const Passerelle__Proposal *p)
{
    switch (p->has_employer_sector ? p->employer_sector
                                   : PASSERELLE__EMPLOYER_SECTOR__SECTOR_UNSPECIFIED) {
    case PASSERELLE__EMPLOYER_SECTOR__SECTOR_PRIVATE_NON_AGRICULTURAL:
        return "HEADCOUNT_PRIVATE";
    case PASSERELLE__EMPLOYER_SECTOR__SECTOR_AGRICULTURAL:
        return "HEADCOUNT_AGRICULTURAL";
    case PASSERELLE__EMPLOYER_SECTOR__SECTOR_PUBLIC:
        return "PUBLIC_EMPLOYER";
    default:
        return "SECTOR_UNKNOWN";
    }
}

/* Identifiers that go into fields and identities: what ids.h makes, and
 * nothing that could spill into another key or field. */
static bool token_valid(const char *s, size_t max)
{
    if (!s || !*s || strlen(s) > max)
        return false;
    for (const char *c = s; *c; c++)
        if (!((*c >= '0' && *c <= '9') || (*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') ||
              *c == '-' || *c == '_'))
            return false;
    return true;
}

#define TOKEN_MAX 48

static bool year_valid(uint32_t year)
{
    return year >= 1900 && year <= 9999;
}

static const char *text(const char *s)
{
    return s ? s : "";
}

static bool blank(const char *s)
{
    return !s || !*s;
}

/* A year's period key "2026" (year_valid years). */
static void year_key_of(uint32_t year, char out[PERIOD_KEY_LEN])
{
    for (int i = 3; i >= 0; i--) {
        out[i] = (char)('0' + year % 10u);
        year /= 10u;
    }
    out[4] = '\0';
}

/* n >= 0 in decimal, into out (room for any int64_t). */
static void decimal_of(int64_t n, char out[24])
{
    char digits[24];
    size_t len = 0;
    uint64_t v = (uint64_t)n;
    do {
        digits[len++] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v);
    for (size_t i = 0; i < len; i++)
        out[i] = digits[len - 1 - i];
    out[len] = '\0';
}

/* ====================================================================== */
/* Counting one event                                                     */
/* ====================================================================== */

/* Where an event's adds go (projection_count_each). */
typedef struct {
    projection_add_fn *fn;
    void *arg;
} adds_t;

/* Where and when one event's increments count: its adds, handed out as
 * increments, or a replacement's triples. */
typedef struct {
    const Passerelle__Event *event;
    const adds_t *adds; /* or NULL, and: */
    triples_t *into;    /* a replacement's triples */
    int64_t at_ms;
    const char *territory;
    const char *commune;
    const char *stated; /* a stated period, or NULL: event time */
    period_kind_t stated_kind;
} counting_t;

/* projection_count's sink: appends a copy of inc to the list arg, its
 * strings copied into the list's text in one piece (its counter, a static
 * string, is not). False when out of memory (nothing appended). */
static bool increments_add(void *arg, const increment_t *inc)
{
    increments_t *l = arg;
    if (l->count == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        increment_t *items = realloc(l->items, cap * sizeof *items);
        if (!items)
            return false;
        l->items = items;
        l->cap = cap;
    }
    size_t territory_len = inc->territory ? strlen(inc->territory) : 0;
    size_t commune_len = inc->commune ? strlen(inc->commune) : 0;
    size_t stated_len = inc->stated_period ? strlen(inc->stated_period) : 0;
    size_t dim_len[PROJ_DIMS_MAX];
    size_t total = territory_len + commune_len + stated_len + 3;
    for (size_t i = 0; i < inc->dim_count; i++) {
        dim_len[i] = inc->dims[i] ? strlen(inc->dims[i]) : 0;
        total += dim_len[i] + 1;
    }
    char *at = increments_room(l, total);
    if (!at)
        return false;
    increment_t *copy = &l->items[l->count];
    *copy = *inc;
    copy->territory = text_put(&at, inc->territory, territory_len);
    copy->commune = text_put(&at, inc->commune, commune_len);
    copy->stated_period = text_put(&at, inc->stated_period, stated_len);
    for (size_t i = 0; i < inc->dim_count; i++)
        copy->dims[i] = text_put(&at, inc->dims[i], dim_len[i]);
    l->count++;
    return true;
}

static bool count(const counting_t *c, const char *counter, int64_t amount, const dims_t *d,
                  bool dims_only)
{
    /* An add that moves no field (no amount, or only dims and none) is
     * left out here: a tally would only hold it. */
    if (c->adds && (amount == 0 || (dims_only && (!d || d->count == 0))))
        return true;
    increment_t inc = {
        .counter = counter,
        .territory = c->territory,
        .commune = c->commune,
        .amount = amount,
        .at_ms = c->at_ms,
        .stated_period = c->stated,
        .stated_kind = c->stated_kind,
        .days = c->stated == NULL,
        .dims_only = dims_only,
    };
    char fields[PROJ_DIMS_MAX][PROJ_FIELD_MAX];
    for (size_t i = 0; d && i < d->count; i++) {
        field_format(d->axis[i], d->value[i], fields[i]);
        inc.dims[inc.dim_count++] = fields[i];
    }
    if (c->adds ? c->adds->fn(c->adds->arg, &inc) : projection_expand(&inc, c->into))
        return true;
    /* Every value was checked before it got here, so a refusal is memory
     * running out - or a mistake here, which the log names. */
    log_warn("projection: increment refused", "{s:s, s:s, s:s}", "event", text(c->event->id),
             "type", text(c->event->type), "counter", counter);
    return false;
}

static replacement_t *replacement_new(projection_t *p, const char *identity, uint64_t version)
{
    replacement_t *grown = realloc(p->replacements, (p->replacement_count + 1) * sizeof *grown);
    if (!grown)
        return NULL;
    p->replacements = grown;
    replacement_t *r = &grown[p->replacement_count++];
    snprintf(r->identity, sizeof r->identity, "%s", identity);
    r->version = version;
    triples_init(&r->triples);
    return r;
}

static void warn_event(const Passerelle__Event *event, const char *msg)
{
    log_warn(msg, "{s:s, s:s, s:s}", "event", text(event->id), "type", text(event->type),
             "dataschema", text(event->dataschema));
}

/* What one event type counts: into out->adds (event time) or as
 * replacements. counter is the type's own counter from the table below.
 * False only when out of memory. */
typedef bool(project_fn)(const Passerelle__Event *event, const ProtobufCMessage *data,
                         const char *counter, int64_t at_ms, const adds_t *adds, projection_t *out);

/* --- the reservations stream ------------------------------------------- */

static bool project_unit(const Passerelle__Event *event, const ProtobufCMessage *data,
                         const char *counter, int64_t at_ms, const adds_t *adds, projection_t *out)
{
    (void)out;
    const Passerelle__Unit *unit = (const Passerelle__Unit *)data;
    counting_t c = {event, adds, NULL, at_ms, unit->territory, unit->commune_insee, NULL, 0};
    dims_t d = {.count = 0};
    dims_add(&d, "stock",
             enum_axis_value(&passerelle__stock__descriptor, unit->has_stock, (int)unit->stock,
                             "STOCK_"));
    return count(&c, counter, 1, &d, false);
}

/* The days from envisaged to signed, or -1 if either date is missing or
 * they are out of order (the observation is then left out). */
static int64_t delay_to_sign_days(const Passerelle__Convention *conv)
{
    date_t envisaged, signed_on;
    if (!conv->envisaged_on || !conv->signed_on || !date_parse(conv->envisaged_on, &envisaged) ||
        !date_parse(conv->signed_on, &signed_on))
        return -1;
    int64_t days = date_to_days(signed_on) - date_to_days(envisaged);
    return days >= 0 ? days : -1;
}

static bool project_convention(const Passerelle__Event *event, const ProtobufCMessage *data,
                               const char *counter, int64_t at_ms, const adds_t *adds,
                               projection_t *out)
{
    (void)out;
    const Passerelle__Convention *conv = (const Passerelle__Convention *)data;
    const Passerelle__Unit *unit = conv->unit;
    counting_t c = {
        event, adds, NULL, at_ms, unit ? unit->territory : NULL, unit ? unit->commune_insee : NULL,
        NULL,  0};
    dims_t d = {.count = 0};
    dims_add(&d, "level",
             enum_axis_value(&passerelle__convention_level__descriptor, conv->has_level,
                             (int)conv->level, "LEVEL_"));
    if (!count(&c, counter, 1, &d, false))
        return false;

    /* Active: signed and not yet ended (SIGNED or IN_FORCE). */
    if (strcmp(event->type, "convention.signed") == 0) {
        if (!count(&c, "conventions.active", 1, &d, false))
            return false;
        int64_t days = delay_to_sign_days(conv);
        if (days < 0) {
            warn_event(event, "projection: a signed convention without a delay to sign");
            return true;
        }
        dims_t delay = {.count = 0};
        char value[24];
        decimal_of(days, value);
        dims_add(&delay, "v", value);
        return count(&c, "conventions.delay_to_sign", 1, &delay, false);
    }
    if (strcmp(event->type, "convention.ended") == 0)
        return count(&c, "conventions.active", -1, &d, false);
    return true;
}

/* Units reserved for Action Logement: what the reservations service's
 * progress counts (progress.c), so the two agree. */
static bool count_al_units(const Passerelle__Event *event, const Passerelle__Reservation *r,
                           const char *territory, int sign, const adds_t *adds)
{
    bool for_al = !r->has_reservataire ||
                  r->reservataire == PASSERELLE__RESERVATAIRE__RESERVATAIRE_UNSPECIFIED ||
                  r->reservataire == PASSERELLE__RESERVATAIRE__RESERVATAIRE_ACTION_LOGEMENT;
    if (!for_al)
        return true;
    uint32_t year = r->has_year ? r->year : 0;
    date_t start;
    if (year == 0 && r->start_date && date_parse(r->start_date, &start))
        year = (uint32_t)start.year;
    if (!year_valid(year)) {
        warn_event(event, "projection: a reservation without a year");
        return true;
    }
    bool stock = r->has_mode && r->mode == PASSERELLE__RESERVATION_MODE__MODE_STOCK;
    int64_t units = stock ? 1 : (int64_t)r->units;

    char year_key[PERIOD_KEY_LEN];
    year_key_of(year, year_key);
    counting_t c = {event, adds, NULL, 0, territory, NULL, year_key, PERIOD_YEAR};
    dims_t d = {.count = 0};
    if (token_valid(r->programme_id, TOKEN_MAX))
        dims_add(&d, "programme", r->programme_id);
    dims_add(&d, "mode",
             enum_axis_value(&passerelle__reservation_mode__descriptor, r->has_mode, (int)r->mode,
                             "MODE_"));
    return count(&c, "reservations.al_units", sign * units, &d, false);
}

static bool project_reservation(const Passerelle__Event *event, const ProtobufCMessage *data,
                                const char *counter, int64_t at_ms, const adds_t *adds,
                                projection_t *out)
{
    (void)out;
    const Passerelle__Reservation *r = (const Passerelle__Reservation *)data;
    bool stock = r->has_mode && r->mode == PASSERELLE__RESERVATION_MODE__MODE_STOCK;
    const char *territory = !blank(r->territory) ? r->territory
                            : r->unit            ? r->unit->territory
                                                 : NULL;
    const char *commune = stock && r->unit ? r->unit->commune_insee : NULL;
    counting_t c = {event, adds, NULL, at_ms, territory, commune, NULL, 0};

    const char *mode = enum_axis_value(&passerelle__reservation_mode__descriptor, r->has_mode,
                                       (int)r->mode, "MODE_");
    /* A FLOW reservation has no unit, so no neighbourhood to be in. */
    const char *qpv = r->has_in_qpv ? (r->in_qpv ? "IN" : "OUT") : NULL;
    dims_t d = {.count = 0};
    dims_add(&d, "mode", mode);
    dims_add(&d, "reservataire", reservataire_value(r));
    dims_t with_qpv = d;
    dims_add(&with_qpv, "qpv", qpv);

    bool created = strcmp(event->type, "reservation.created") == 0;
    if (!count(&c, counter, 1, created ? &with_qpv : &d, false))
        return false;
    if (!count(&c, "reservations.active", created ? 1 : -1, &with_qpv, false))
        return false;
    /* A released reservation was used: it stays achieved. */
    if (created)
        return count_al_units(event, r, territory, 1, adds);
    if (strcmp(event->type, "reservation.cancelled") == 0)
        return count_al_units(event, r, territory, -1, adds);
    return true;
}

static bool project_objective(const Passerelle__Event *event, const ProtobufCMessage *data,
                              const char *counter, int64_t at_ms, const adds_t *adds,
                              projection_t *out)
{
    (void)adds;
    (void)at_ms;
    const Passerelle__Objective *o = (const Passerelle__Objective *)data;
    /* Objectives per level or financing are parts of the total, and
     * records of their own: replacing under the total's identity would
     * undo the total. */
    if ((o->has_level && o->level != PASSERELLE__CONVENTION_LEVEL__LEVEL_UNSPECIFIED) ||
        (o->has_financing && o->financing != PASSERELLE__FINANCING__FINANCING_UNSPECIFIED))
        return true;
    uint32_t year = o->has_year ? o->year : 0;
    if (!token_valid(o->programme_id, TOKEN_MAX) || !year_valid(year)) {
        warn_event(event, "projection: an objective without a programme or a year");
        return true;
    }
    char identity[PROJ_IDENTITY_MAX], year_key[PERIOD_KEY_LEN];
    year_key_of(year, year_key);
    snprintf(identity, sizeof identity, "objective:%s:%s", o->programme_id, year_key);
    replacement_t *r = replacement_new(out, identity, o->has_version ? o->version : 0);
    if (!r)
        return false;
    counting_t c = {event, NULL, &r->triples, 0, o->territory, NULL, year_key, PERIOD_YEAR};
    dims_t d = {.count = 0};
    dims_add(&d, "programme", o->programme_id);
    return count(&c, counter, o->has_units ? o->units : 0, &d, false);
}

static void dims_add_publics(dims_t *d, const Passerelle__Proposal *p)
{
    for (size_t i = 0; i < p->n_publics; i++)
        dims_add(d, "public", public_value((int)p->publics[i]));
}

static bool project_proposal(const Passerelle__Event *event, const ProtobufCMessage *data,
                             const char *counter, int64_t at_ms, const adds_t *adds,
                             projection_t *out)
{
    (void)out;
    const Passerelle__Proposal *p = (const Passerelle__Proposal *)data;
    counting_t c = {event, adds, NULL, at_ms, p->territory, NULL, NULL, 0};
    dims_t d = {.count = 0};
    dims_add_publics(&d, p);
    if (p->has_eligible)
        dims_add(&d, "eligible", p->eligible ? "YES" : "NO");
    if (!count(&c, counter, 1, &d, false))
        return false;
    if (!p->has_eligible || p->eligible)
        return true;
    dims_t reason = {.count = 0};
    dims_add(&reason, "reason", ineligibility_reason(p));
    return count(&c, "proposals.ineligible", 1, &reason, false);
}

static bool project_attribution(const Passerelle__Event *event, const ProtobufCMessage *data,
                                const char *counter, int64_t at_ms, const adds_t *adds,
                                projection_t *out)
{
    (void)out;
    const Passerelle__Proposal *p = (const Passerelle__Proposal *)data;
    counting_t c = {event, adds, NULL, at_ms, p->territory, NULL, NULL, 0};
    dims_t publics = {.count = 0};
    dims_add_publics(&publics, p);
    dims_t d = publics;
    dims_add(&d, "decision",
             enum_axis_value(&passerelle__decision__descriptor, p->has_decision, (int)p->decision,
                             "DECISION_"));
    if (!count(&c, counter, 1, &d, false))
        return false;
    if (p->has_decision && p->decision == PASSERELLE__DECISION__DECISION_ATTRIBUTED)
        return count(&c, "candidates.housed", 1, &publics, false);
    return true;
}

/* --- the document store's stream --------------------------------------- */

static bool project_document(const Passerelle__Event *event, const ProtobufCMessage *data,
                             const char *counter, int64_t at_ms, const adds_t *adds,
                             projection_t *out)
{
    (void)out;
    const Passerelle__Document *doc = (const Passerelle__Document *)data;
    /* No territory: a document of the whole Métropole, counted there only. */
    counting_t c = {event, adds, NULL, at_ms, doc->territory, NULL, NULL, 0};
    dims_t d = {.count = 0};
    /* Borrowed by d until counted. */
    char theme[2] = {'\0', '\0'};
    if (doc->has_theme && doc->theme >= 1 && doc->theme <= 3) {
        theme[0] = (char)('0' + doc->theme);
        dims_add(&d, "theme", theme);
    }
    dims_add(&d, "kind",
             enum_axis_value(&passerelle__document_kind__descriptor, doc->has_kind, (int)doc->kind,
                             "DOCUMENT_"));
    return count(&c, counter, 1, &d, false);
}

/* --- this service's own stream ----------------------------------------- */

static bool project_economic_project(const Passerelle__Event *event, const ProtobufCMessage *data,
                                     const char *counter, int64_t at_ms, const adds_t *adds,
                                     projection_t *out)
{
    (void)adds;
    (void)counter;
    (void)at_ms;
    const Passerelle__EconomicProject *project = (const Passerelle__EconomicProject *)data;
    if (!token_valid(project->id, TOKEN_MAX)) {
        warn_event(event, "projection: an economic project without a valid id");
        return true;
    }
    char identity[PROJ_IDENTITY_MAX];
    snprintf(identity, sizeof identity, "project:%s", project->id);
    /* One replacement holds all the project counts, so a new version
     * (another horizon, commune, status or needs) moves all of them. */
    replacement_t *r = replacement_new(out, identity, project->has_version ? project->version : 0);
    if (!r)
        return false;

    Passerelle__ProjectStatus status = project->has_status
                                           ? project->status
                                           : PASSERELLE__PROJECT_STATUS__PROJECT_STATUS_UNSPECIFIED;
    /* A dropped project counts nothing at all; its replacement with no
     * triples undoes what it counted before. */
    if (status == PASSERELLE__PROJECT_STATUS__PROJECT_DROPPED)
        return true;
    uint32_t year = project->has_horizon_year ? project->horizon_year : 0;
    if (!year_valid(year)) {
        warn_event(event, "projection: an economic project without a horizon year");
        return true;
    }
    char year_key[PERIOD_KEY_LEN];
    year_key_of(year, year_key);
    counting_t c = {
        event,    NULL,       &r->triples, 0, project->territory, project->commune_insee,
        year_key, PERIOD_YEAR};

    /* Unspecified is a prospect, as in requests. */
    const char *status_value =
        enum_axis_value(&passerelle__project_status__descriptor, true, (int)status, "PROJECT_");
    dims_t d = {.count = 0};
    dims_add(&d, "status", status_value ? status_value : "PROSPECT");
    if (!count(&c, "projects.count", 1, &d, false) ||
        !count(&c, "projects.expected_jobs",
               project->has_expected_jobs ? project->expected_jobs : 0, &d, false))
        return false;
    for (size_t i = 0; i < project->n_needs; i++) {
        const Passerelle__HousingNeed *need = project->needs[i];
        dims_t nd = {.count = 0};
        dims_add(&nd, "typology",
                 enum_axis_value(&passerelle__typology__descriptor, need->has_typology,
                                 (int)need->typology, "TYPOLOGY_"));
        dims_add(&nd, "public", need->has_public_ ? public_value((int)need->public_) : NULL);
        if (!count(&c, "projects.housing_need", need->has_units ? need->units : 0, &nd, false))
            return false;
    }
    triples_merge(&r->triples);
    return true;
}

bool demand_period_kind(const char *key, period_kind_t *kind)
{
    static const period_kind_t kinds[] = {PERIOD_MONTH, PERIOD_QUARTER, PERIOD_YEAR};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (period_key_valid(kinds[i], key)) {
            *kind = kinds[i];
            return true;
        }
    return false;
}

/* One row of demand figures. A row without a public is the total of
 * every public: it counts in "*", and its aids by kind in "aid=X". A row
 * of one public counts in "public=X" only: one employee may belong to
 * several publics, so the publics' rows do not add up to the total. */
static bool count_demand_row(const counting_t *c, const Passerelle__DemandRow *row)
{
    int64_t visale = row->has_aids_visale ? row->aids_visale : 0;
    int64_t loca_pass = row->has_aids_loca_pass ? row->aids_loca_pass : 0;
    int64_t mobility = row->has_aids_mobility ? row->aids_mobility : 0;
    int64_t other = row->has_aids_other ? row->aids_other : 0;
    int64_t requests = row->has_housing_requests ? row->housing_requests : 0;
    int64_t housed = row->has_housed ? row->housed : 0;

    const char *public = row->has_public_ ? public_value((int)row->public_) : NULL;
    dims_t d = {.count = 0};
    dims_add(&d, "public", public);
    bool by_public = d.count > 0;
    if (!count(c, "demand.requests", requests, &d, by_public) ||
        !count(c, "demand.aids_granted", visale + loca_pass + mobility + other, &d, by_public) ||
        !count(c, "demand.housed", housed, &d, by_public))
        return false;
    if (by_public)
        return true;
    const struct {
        const char *aid;
        int64_t amount;
    } aids[] = {
        {"VISALE", visale}, {"LOCA_PASS", loca_pass}, {"MOBILITY", mobility}, {"OTHER", other}};
    for (size_t i = 0; i < sizeof aids / sizeof aids[0]; i++) {
        dims_t aid = {.count = 0};
        dims_add(&aid, "aid", aids[i].aid);
        if (!count(c, "demand.aids_granted", aids[i].amount, &aid, true))
            return false;
    }
    return true;
}

static bool project_demand(const Passerelle__Event *event, const ProtobufCMessage *data,
                           const char *counter, int64_t at_ms, const adds_t *adds,
                           projection_t *out)
{
    (void)adds;
    (void)counter;
    (void)at_ms;
    const Passerelle__DemandPeriod *period = (const Passerelle__DemandPeriod *)data;
    period_kind_t kind;
    if (blank(period->period) || !demand_period_kind(period->period, &kind)) {
        warn_event(event, "projection: demand figures without a valid period");
        return true;
    }
    char identity[PROJ_IDENTITY_MAX];
    snprintf(identity, sizeof identity, "demand:%s", period->period);
    /* The whole period as now stored: what it counted before goes, its
     * rows count anew. */
    replacement_t *r = replacement_new(out, identity, period->has_version ? period->version : 0);
    if (!r)
        return false;
    for (size_t i = 0; i < period->n_rows; i++) {
        const Passerelle__DemandRow *row = period->rows[i];
        /* A row belongs to the period its batch replaced; one naming
         * another would count where that period's replacement cannot undo
         * it. */
        if (!blank(row->period) && strcmp(row->period, period->period) != 0) {
            warn_event(event, "projection: a demand row of another period, left out");
            continue;
        }
        counting_t c = {event, NULL, &r->triples, 0, row->territory, NULL, period->period, kind};
        if (!count_demand_row(&c, row))
            return false;
    }
    triples_merge(&r->triples);
    return true;
}

/* ====================================================================== */
/* Reading messages off the wire                                          */
/* ====================================================================== */

/* A varint of at most max bytes at *i; false if it runs past len or is
 * longer (protobuf-c's own limits: 5 bytes for tags and lengths, 10 for
 * values). */
static bool wire_varint(const uint8_t *p, size_t len, size_t *i, int max, uint64_t *out)
{
    uint64_t v = 0;
    for (int k = 0; k < max && *i < len; k++) {
        uint8_t b = p[(*i)++];
        v |= (uint64_t)(b & 0x7f) << (7 * k);
        if (!(b & 0x80)) {
            *out = v;
            return true;
        }
    }
    return false;
}

/* What message_read makes of a message. */
typedef enum {
    READ_DONE,
    READ_OTHER, /* not a message it reads: protobuf-c decides */
    READ_NO_MEMORY,
} read_outcome_t;

/* A scalar field's value from the wire into member, as protobuf-c stores
 * it (parse_required_member). READ_OTHER when the wire type is not the
 * field's (protobuf-c refuses the message; a bool it reads from any). */
static read_outcome_t read_scalar(const ProtobufCFieldDescriptor *f, unsigned wire,
                                  const uint8_t *p, size_t len, size_t *i, void *member)
{
    if (wire == 0) {
        size_t start = *i;
        uint64_t v;
        if (!wire_varint(p, len, i, 10, &v))
            return READ_OTHER;
        switch (f->type) {
        case PROTOBUF_C_TYPE_INT32:
        case PROTOBUF_C_TYPE_UINT32:
        case PROTOBUF_C_TYPE_ENUM:
            *(uint32_t *)member = (uint32_t)v; /* the low 32 bits */
            return READ_DONE;
        case PROTOBUF_C_TYPE_SINT32: {
            uint32_t u = (uint32_t)v;
            *(int32_t *)member = (int32_t)(u >> 1) ^ -(int32_t)(u & 1);
            return READ_DONE;
        }
        case PROTOBUF_C_TYPE_INT64:
        case PROTOBUF_C_TYPE_UINT64:
            *(uint64_t *)member = v;
            return READ_DONE;
        case PROTOBUF_C_TYPE_SINT64:
            *(int64_t *)member = (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
            return READ_DONE;
        case PROTOBUF_C_TYPE_BOOL: {
            /* True if any bit is set, even past the 64th. */
            protobuf_c_boolean set = 0;
            for (size_t k = start; k < *i; k++)
                set = set || (p[k] & 0x7f);
            *(protobuf_c_boolean *)member = set;
            return READ_DONE;
        }
        default:
            return READ_OTHER;
        }
    }
    size_t width = wire == 5 ? 4 : wire == 1 ? 8 : 0;
    bool fits =
        (wire == 5 && (f->type == PROTOBUF_C_TYPE_FIXED32 || f->type == PROTOBUF_C_TYPE_SFIXED32 ||
                       f->type == PROTOBUF_C_TYPE_FLOAT)) ||
        (wire == 1 && (f->type == PROTOBUF_C_TYPE_FIXED64 || f->type == PROTOBUF_C_TYPE_SFIXED64 ||
                       f->type == PROTOBUF_C_TYPE_DOUBLE));
    if (!fits || len - *i < width)
        return READ_OTHER;
    memcpy(member, p + *i, width); /* little-endian, as on the wire */
    *i += width;
    return READ_DONE;
}

/* Reads a message of desc off the wire into *out, allocated in the arena,
 * as protobuf-c's unpack would: optional fields (not of a oneof) of any
 * scalar type, strings (copied into the arena), bytes (left in packed),
 * messages given once, read the same way; fields this build does not know
 * are skipped (protobuf-c keeps them aside, which counting never reads).
 * Anything else is READ_OTHER: a repeated or required field, a message
 * field given twice (protobuf-c merges them), a wire type that is not the
 * field's, a group, a field number or length out of the usual, a message
 * cut short. */
static read_outcome_t message_read(const ProtobufCMessageDescriptor *desc, const uint8_t *packed,
                                   size_t len, ProtobufCAllocator *allocator,
                                   ProtobufCMessage **out)
{
    if (!desc->message_init)
        return READ_OTHER;
    ProtobufCMessage *msg = allocator->alloc(allocator->allocator_data, desc->sizeof_message);
    if (!msg)
        return READ_NO_MEMORY;
    desc->message_init(msg);
    size_t i = 0;
    while (i < len) {
        uint64_t tag, n;
        if (!wire_varint(packed, len, &i, 5, &tag) || tag >> 3 == 0 || tag >> 3 > 0x1fffffff)
            return READ_OTHER;
        unsigned wire = (unsigned)(tag & 7), number = (unsigned)(tag >> 3);
        if (wire == 3 || wire == 4 || wire > 5)
            return READ_OTHER;
        /* Fields are mostly numbered from 1 in order: found by index,
         * others looked up. */
        const ProtobufCFieldDescriptor *f =
            number <= desc->n_fields && desc->fields[number - 1].id == number
                ? &desc->fields[number - 1]
                : protobuf_c_message_descriptor_get_field(desc, number);
        if (f &&
            (f->label != PROTOBUF_C_LABEL_OPTIONAL || (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)))
            return READ_OTHER;
        void *member = f ? (char *)msg + f->offset : NULL;
        if (wire != 2) {
            if (f) {
                read_outcome_t scalar = read_scalar(f, wire, packed, len, &i, member);
                if (scalar != READ_DONE)
                    return scalar;
                if (f->quantifier_offset)
                    *(protobuf_c_boolean *)((char *)msg + f->quantifier_offset) = 1;
            } else if (wire == 0) {
                if (!wire_varint(packed, len, &i, 10, &n))
                    return READ_OTHER;
            } else {
                size_t width = wire == 1 ? 8 : 4;
                if (len - i < width)
                    return READ_OTHER;
                i += width;
            }
            continue;
        }
        if (!wire_varint(packed, len, &i, 5, &n) || n > INT32_MAX || n > len - i)
            return READ_OTHER;
        if (!f) {
            i += (size_t)n;
            continue;
        }
        switch (f->type) {
        case PROTOBUF_C_TYPE_STRING: {
            char *text = allocator->alloc(allocator->allocator_data, (size_t)n + 1);
            if (!text)
                return READ_NO_MEMORY;
            memcpy(text, packed + i, (size_t)n);
            text[n] = '\0';
            *(char **)member = text;
            break;
        }
        case PROTOBUF_C_TYPE_BYTES: {
            ProtobufCBinaryData *bytes = member;
            bytes->data = n ? (uint8_t *)(packed + i) : NULL;
            bytes->len = (size_t)n;
            break;
        }
        case PROTOBUF_C_TYPE_MESSAGE: {
            ProtobufCMessage **sub = member;
            if (*sub && *sub != f->default_value)
                return READ_OTHER;
            read_outcome_t inner =
                message_read(f->descriptor, packed + i, (size_t)n, allocator, sub);
            if (inner != READ_DONE)
                return inner;
            break;
        }
        default:
            return READ_OTHER; /* a packed scalar: only repeated fields are */
        }
        if (f->quantifier_offset)
            *(protobuf_c_boolean *)((char *)msg + f->quantifier_offset) = 1;
        i += (size_t)n;
    }
    *out = msg;
    return READ_DONE;
}

/* The messages as the services write them (projection.h): read here,
 * field by field, with the rules of protobuf-c's own decoder, so that
 * what it takes it reads the same; at the first thing it does not take,
 * the decoder starts again and decides. */
ProtobufCMessage *projection_message_read(const ProtobufCMessageDescriptor *desc,
                                          const uint8_t *packed, size_t len,
                                          ProtobufCAllocator *allocator)
{
    if (!allocator)
        return protobuf_c_message_unpack(desc, NULL, len, packed);
    ProtobufCMessage *msg = NULL;
    switch (message_read(desc, packed, len, allocator, &msg)) {
    case READ_DONE:
        return msg;
    case READ_NO_MEMORY:
        return NULL;
    default:
        return protobuf_c_message_unpack(desc, allocator, len, packed);
    }
}

/* ====================================================================== */
/* Event types                                                            */
/* ====================================================================== */

/* Every event type counted, the message its data carries, the counter
 * it feeds first, and whether it counts at event time (its time must
 * then parse). Any other type counts nothing. */
static const struct {
    const char *type;
    const ProtobufCMessageDescriptor *schema;
    const char *counter;
    bool event_time;
    project_fn *project;
} event_types[] = {
    {"unit.registered", &passerelle__unit__descriptor, "units.registered", true, project_unit},
    {"convention.envisaged", &passerelle__convention__descriptor, "conventions.envisaged", true,
     project_convention},
    {"convention.signed", &passerelle__convention__descriptor, "conventions.signed", true,
     project_convention},
    {"convention.in_force", &passerelle__convention__descriptor, "conventions.in_force", true,
     project_convention},
    {"convention.ended", &passerelle__convention__descriptor, "conventions.ended", true,
     project_convention},
    {"convention.abandoned", &passerelle__convention__descriptor, "conventions.abandoned", true,
     project_convention},
    {"reservation.created", &passerelle__reservation__descriptor, "reservations.created", true,
     project_reservation},
    {"reservation.released", &passerelle__reservation__descriptor, "reservations.released", true,
     project_reservation},
    {"reservation.cancelled", &passerelle__reservation__descriptor, "reservations.cancelled", true,
     project_reservation},
    {"objective.set", &passerelle__objective__descriptor, "objectives.units", false,
     project_objective},
    {"proposal.recorded", &passerelle__proposal__descriptor, "proposals.recorded", true,
     project_proposal},
    {"attribution.decided", &passerelle__proposal__descriptor, "attributions.decided", true,
     project_attribution},
    {"document.published", &passerelle__document__descriptor, "documents.published", true,
     project_document},
    {"economic_project.created", &passerelle__economic_project__descriptor, "projects.count", false,
     project_economic_project},
    {"economic_project.updated", &passerelle__economic_project__descriptor, "projects.count", false,
     project_economic_project},
    {"demand.figures_replaced", &passerelle__demand_period__descriptor, "demand.requests", false,
     project_demand},
};

static void projection_init(projection_t *p)
{
    triples_init(&p->adds);
    p->replacements = NULL;
    p->replacement_count = 0;
}

void projection_free(projection_t *p)
{
    if (!p)
        return;
    triples_free(&p->adds);
    for (size_t i = 0; i < p->replacement_count; i++)
        triples_free(&p->replacements[i].triples);
    free(p->replacements);
    projection_init(p);
}

bool projection_count_each(const Passerelle__Event *event, ProtobufCAllocator *allocator,
                           projection_add_fn *add, void *arg, projection_t *out)
{
    projection_init(out);
    if (!event || !event->type)
        return true;
    size_t i = 0;
    while (i < sizeof event_types / sizeof event_types[0] &&
           strcmp(event_types[i].type, event->type) != 0)
        i++;
    if (i == sizeof event_types / sizeof event_types[0])
        return true;

    const ProtobufCMessageDescriptor *schema = event_types[i].schema;
    const char *dataschema = event->dataschema;
    if (dataschema && *dataschema == '.')
        dataschema++;
    if (!blank(dataschema) && strcmp(dataschema, schema->name) != 0) {
        warn_event(event, "projection: data is not the message its event type carries");
        return true;
    }
    int64_t at_ms = 0;
    if (event_types[i].event_time && (!event->time || !time_parse_rfc3339(event->time, &at_ms))) {
        warn_event(event, "projection: event time does not parse");
        return true;
    }
    size_t data_len = event->has_data ? event->data.len : 0;
    const uint8_t *data_bytes = event->has_data ? event->data.data : NULL;
    ProtobufCMessage *data = allocator
                                 ? projection_message_read(schema, data_bytes, data_len, allocator)
                                 : protobuf_c_message_unpack(schema, NULL, data_len, data_bytes);
    if (!data) {
        warn_event(event, "projection: event data does not decode");
        return true;
    }
    adds_t adds = {add, arg};
    bool ok = event_types[i].project(event, data, event_types[i].counter, at_ms, &adds, out);
    if (!allocator)
        protobuf_c_message_free_unpacked(data, NULL);
    if (!ok)
        projection_free(out);
    return ok;
}

bool projection_count(const Passerelle__Event *event, ProtobufCAllocator *allocator,
                      increments_t *adds, projection_t *out)
{
    size_t before = adds->count;
    if (projection_count_each(event, allocator, increments_add, adds, out))
        return true;
    adds->count = before;
    return false;
}

bool projection_of(const Passerelle__Event *event, projection_t *out)
{
    increments_t adds;
    increments_init(&adds);
    bool ok = projection_count(event, NULL, &adds, out);
    for (size_t i = 0; ok && i < adds.count; i++)
        ok = projection_expand(&adds.items[i], &out->adds);
    increments_free(&adds);
    if (!ok)
        projection_free(out);
    return ok;
}
