/* Counts gathered in memory (tally.h).
 *
 * A rebuild pushes a million events' increments through here in a row,
 * and expands the distinct ones into tens of thousands of sums, so this
 * is built for that. Counter keys live
 * in an open-addressing table whose slots hold the hash next to the entry,
 * so a probe rarely leaves the slot array; a key's fields are chained to
 * it and, while they are few (most keys have "*" and a few axis values),
 * found by walking that short chain, which stays in the cache lines the
 * key lookup just brought in. A key with many fields (a distribution's
 * "v=<n>") moves its fields into a second table, keyed by (key, field).
 * A projection lists a key's fields one after the other, so most adds
 * skip the key lookup altogether. Entries and their strings are carved out
 * of large chunks (an arena): a new field costs no malloc, and clearing
 * costs a few frees. tally_each hands out the fields of one key one after
 * the other (the rebuild writes a key's fields in one command).
 *
 * Increments come before all that: an increment table keyed by the
 * increment packed into bytes (inc_pack), its Europe/Paris day standing
 * for its instant, holds the sum of their amounts. Expanding is linear in
 * the amount, so each distinct increment is expanded once, into the sums
 * above, when they are asked for (tally_expand): a rebuild's events share
 * their counter, territory, axis values and day by the thousand (a
 * million events of two years are some twenty thousand increments), and
 * expanding each event on its own would cost dozens of sums per event.
 *
 * Replacements are few (one per record counted: objectives, projects,
 * demand periods) and kept in a table of their own, each a deep copy of
 * the newest version seen. */
#include "tally.h"

#include "periods.h"

#include <stdlib.h>
#include <string.h>

/* Arena chunks: big enough that a million fields take a few hundred. */
#define ARENA_CHUNK (1024 * 1024)
/* Tables start at this many slots and double at half full. */
#define TABLE_MIN 1024

typedef struct field_entry_t field_entry_t;

/* A key whose chain grows past this many fields is looked up through the
 * field table instead. */
#define CHAIN_MAX 12

typedef struct {
    field_entry_t *fields; /* chained through next_in_key, newest first */
    uint32_t field_count;
    bool in_table; /* its fields are in the field table */
    char key[];
} key_entry_t;

struct field_entry_t {
    key_entry_t *key;
    field_entry_t *next_in_key;
    int64_t sum;
    uint64_t hash; /* of the field string alone */
    char field[];
};

/* A slot of a table: the entry and its hash (0 marks an empty slot; a
 * hash of 0 is made 1). */
typedef struct {
    uint64_t hash;
    void *entry;
} slot_t;

typedef struct {
    slot_t *slots;
    size_t cap; /* a power of two */
    size_t count;
} table_t;

typedef struct chunk_t {
    struct chunk_t *next;
    size_t used, size;
    char data[];
} chunk_t;

/* A distinct increment: its packed form and the sum of the amounts. */
typedef struct {
    int64_t amount;
    size_t len;
    unsigned char packed[];
} inc_entry_t;

struct tally_t {
    chunk_t *chunks;        /* the current chunk first */
    table_t increments;     /* inc_entry_t */
    size_t increment_bound; /* the triples the increments held expand to */
    /* The last instant added and its day: an event's increments, and
     * often the next event's, share them. */
    bool day_known;
    int64_t day_of_ms, day;
    table_t keys;           /* key_entry_t */
    table_t fields;         /* field_entry_t */
    key_entry_t **key_list; /* every key, in insertion order, for tally_each */
    size_t key_list_cap;
    size_t field_count;   /* every field, chained or in the table */
    table_t replacements; /* replacement_t (malloc'd, deep copies) */
};

/* ======================== hashing ====================================== */

/* A multiply-xor hash over 8-byte words (the strings are short),
 * finished so that the low bits (the table index) depend on every byte.
 * Never 0. */
static uint64_t hash_bytes(const void *bytes, size_t n)
{
    const unsigned char *s = bytes;
    uint64_t h = 0x9E3779B97F4A7C15ULL ^ (n * 0xFF51AFD7ED558CCDULL);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        h = (h ^ w) * 0xC4CEB9FE1A85EC53ULL;
        h ^= h >> 29;
    }
    if (i < n) {
        uint64_t w = 0;
        memcpy(&w, s + i, n - i);
        h = (h ^ w) * 0xC4CEB9FE1A85EC53ULL;
    }
    h ^= h >> 32;
    h *= 0x9E3779B97F4A7C15ULL;
    h ^= h >> 29;
    return h ? h : 1;
}

/* hash_bytes of the string s; writes its length into *len. */
static uint64_t hash_str(const char *s, size_t *len)
{
    *len = strlen(s);
    return hash_bytes(s, *len);
}

/* The hash of a (key, field) pair from the key entry's address and the
 * field's own hash. */
static uint64_t hash_pair(const key_entry_t *key, uint64_t field_hash)
{
    uint64_t h = (uint64_t)(uintptr_t)key * 0xC2B2AE3D27D4EB4FULL;
    h ^= field_hash + 0x165667B19E3779F9ULL + (h << 6) + (h >> 2);
    h ^= h >> 31;
    return h ? h : 1;
}

/* ======================== arena ======================================== */

/* size bytes, 8-aligned, from the current chunk or a new one; NULL when
 * out of memory. */
static void *arena_alloc(tally_t *self, size_t size)
{
    size = (size + 7) & ~(size_t)7;
    chunk_t *chunk = self->chunks;
    if (!chunk || chunk->size - chunk->used < size) {
        size_t want = size > ARENA_CHUNK ? size : ARENA_CHUNK;
        chunk = malloc(sizeof *chunk + want);
        if (!chunk)
            return NULL;
        chunk->next = self->chunks;
        chunk->used = 0;
        chunk->size = want;
        self->chunks = chunk;
    }
    void *p = chunk->data + chunk->used;
    chunk->used += size;
    return p;
}

/* Frees every chunk but one, emptied, which the next adds reuse. */
static void arena_reset(tally_t *self)
{
    chunk_t *keep = NULL;
    chunk_t *chunk = self->chunks;
    while (chunk) {
        chunk_t *next = chunk->next;
        if (!keep && chunk->size == ARENA_CHUNK) {
            keep = chunk;
            keep->next = NULL;
            keep->used = 0;
        } else {
            free(chunk);
        }
        chunk = next;
    }
    self->chunks = keep;
}

/* ======================== tables ======================================= */

static bool table_init(table_t *t)
{
    t->slots = calloc(TABLE_MIN, sizeof *t->slots);
    t->cap = TABLE_MIN;
    t->count = 0;
    return t->slots != NULL;
}

/* Doubles the table when it is half full. False when out of memory. */
static bool table_reserve(table_t *t)
{
    if ((t->count + 1) * 2 <= t->cap)
        return true;
    size_t cap = t->cap * 2;
    slot_t *slots = calloc(cap, sizeof *slots);
    if (!slots)
        return false;
    for (size_t i = 0; i < t->cap; i++) {
        if (!t->slots[i].hash)
            continue;
        size_t j = t->slots[i].hash & (cap - 1);
        while (slots[j].hash)
            j = (j + 1) & (cap - 1);
        slots[j] = t->slots[i];
    }
    free(t->slots);
    t->slots = slots;
    t->cap = cap;
    return true;
}

static void table_empty(table_t *t)
{
    memset(t->slots, 0, t->cap * sizeof *t->slots);
    t->count = 0;
}

/* ======================== life cycle =================================== */

tally_t *tally_new(void)
{
    tally_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    if (!table_init(&self->increments) || !table_init(&self->keys) || !table_init(&self->fields) ||
        !table_init(&self->replacements)) {
        tally_destroy(&self);
        return NULL;
    }
    return self;
}

static void replacement_free(replacement_t *r)
{
    free(r->triples.items);
    free(r);
}

static void replacements_clear(tally_t *self)
{
    table_t *t = &self->replacements;
    for (size_t i = 0; t->slots && i < t->cap; i++)
        if (t->slots[i].hash)
            replacement_free(t->slots[i].entry);
    if (t->slots)
        table_empty(t);
}

void tally_destroy(tally_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    tally_t *self = *self_p;
    replacements_clear(self);
    chunk_t *chunk = self->chunks;
    while (chunk) {
        chunk_t *next = chunk->next;
        free(chunk);
        chunk = next;
    }
    free(self->increments.slots);
    free(self->keys.slots);
    free(self->fields.slots);
    free(self->replacements.slots);
    free(self->key_list);
    free(self);
    *self_p = NULL;
}

void tally_clear(tally_t *self)
{
    table_empty(&self->increments);
    self->increment_bound = 0;
    table_empty(&self->keys);
    table_empty(&self->fields);
    replacements_clear(self);
    arena_reset(self);
    self->field_count = 0;
}

/* ======================== sums ========================================= */

/* The entry of key, made if new; NULL when out of memory. */
static key_entry_t *key_find(tally_t *self, const char *key)
{
    size_t len;
    uint64_t h = hash_str(key, &len);
    table_t *t = &self->keys;
    size_t i = h & (t->cap - 1);
    for (; t->slots[i].hash; i = (i + 1) & (t->cap - 1)) {
        key_entry_t *k = t->slots[i].entry;
        if (t->slots[i].hash == h && memcmp(k->key, key, len + 1) == 0)
            return k;
    }
    if (t->count == self->key_list_cap) {
        size_t cap = self->key_list_cap ? 2 * self->key_list_cap : TABLE_MIN;
        key_entry_t **list = realloc(self->key_list, cap * sizeof *list);
        if (!list)
            return NULL;
        self->key_list = list;
        self->key_list_cap = cap;
    }
    key_entry_t *k = arena_alloc(self, sizeof *k + len + 1);
    if (!k || !table_reserve(t))
        return NULL;
    k->fields = NULL;
    k->field_count = 0;
    k->in_table = false;
    memcpy(k->key, key, len + 1);
    /* The table may have grown: find the free slot again. */
    i = h & (t->cap - 1);
    while (t->slots[i].hash)
        i = (i + 1) & (t->cap - 1);
    t->slots[i] = (slot_t){h, k};
    self->key_list[t->count++] = k;
    return k;
}

/* Puts f into the field table (it is known not to be there). */
static bool field_table_put(tally_t *self, field_entry_t *f)
{
    table_t *t = &self->fields;
    if (!table_reserve(t))
        return false;
    uint64_t h = hash_pair(f->key, f->hash);
    size_t i = h & (t->cap - 1);
    while (t->slots[i].hash)
        i = (i + 1) & (t->cap - 1);
    t->slots[i] = (slot_t){h, f};
    t->count++;
    return true;
}

/* Adds delta to field of k, made if new. */
static bool key_add(tally_t *self, key_entry_t *k, const char *field, int64_t delta)
{
    if (!k->in_table) {
        for (field_entry_t *f = k->fields; f; f = f->next_in_key)
            if (f->field[0] == field[0] && strcmp(f->field, field) == 0) {
                f->sum += delta;
                return true;
            }
    }
    size_t len;
    uint64_t fh = hash_str(field, &len);
    if (k->in_table) {
        const table_t *t = &self->fields;
        uint64_t h = hash_pair(k, fh);
        for (size_t i = h & (t->cap - 1); t->slots[i].hash; i = (i + 1) & (t->cap - 1)) {
            field_entry_t *f = t->slots[i].entry;
            if (t->slots[i].hash == h && f->key == k && strcmp(f->field, field) == 0) {
                f->sum += delta;
                return true;
            }
        }
    }
    field_entry_t *f = arena_alloc(self, sizeof *f + len + 1);
    if (!f)
        return false;
    f->key = k;
    f->sum = delta;
    f->hash = fh;
    memcpy(f->field, field, len + 1);
    f->next_in_key = k->fields;
    k->fields = f;
    k->field_count++;
    self->field_count++;
    if (k->in_table)
        return field_table_put(self, f);
    if (k->field_count > CHAIN_MAX) {
        /* Too long a chain to walk: every field of the key into the table. */
        for (field_entry_t *g = k->fields; g; g = g->next_in_key)
            if (!field_table_put(self, g))
                return false;
        k->in_table = true;
    }
    return true;
}

bool tally_add(tally_t *self, const char *key, const char *field, int64_t delta)
{
    key_entry_t *k = key_find(self, key);
    return k && key_add(self, k, field, delta);
}

size_t tally_size(const tally_t *self)
{
    return self->field_count + self->increment_bound;
}

bool tally_each(tally_t *self, tally_fn *fn, void *arg)
{
    if (!tally_expand(self))
        return false;
    for (size_t i = 0; i < self->keys.count; i++) {
        const key_entry_t *k = self->key_list[i];
        for (const field_entry_t *f = k->fields; f; f = f->next_in_key)
            if (f->sum != 0)
                fn(arg, k->key, f->field, f->sum);
    }
    return true;
}

/* ======================== increments =================================== */

/* The packed form of an increment, all of it but the amount:
 *   [flags][stated kind][dim count][day, 8 bytes]
 *   counter \0 territory \0 commune \0 stated period \0 dim \0 ...
 * (a NULL string packed as ""; projection_expand takes NULL and "" alike).
 * An instant is packed as its Europe/Paris day, all that its periods are
 * read from, so the increments of one day sum into one. */
#define PACK_HEAD   11
#define PACK_DAYS   1
#define PACK_PARTS  2
#define PACK_STATED 4
#define PACK_INLINE 1024
#define DAY_MS      86400000LL

static void inc_strings(const increment_t *inc, const char *out[4])
{
    out[0] = inc->counter;
    out[1] = inc->territory ? inc->territory : "";
    out[2] = inc->commune ? inc->commune : "";
    out[3] = inc->stated_period ? inc->stated_period : "";
}

/* Appends s and its NUL at *used, if it fits in cap. */
static void pack_string(unsigned char *out, size_t cap, size_t *used, const char *s)
{
    size_t n = strlen(s) + 1;
    if (*used + n <= cap)
        memcpy(out + *used, s, n);
    *used += n;
}

/* Packs inc into out if it fits in cap; returns the packed length either
 * way (the caller packs again into a bigger buffer when it did not fit). */
static size_t inc_pack(const increment_t *inc, int64_t day, unsigned char *out, size_t cap)
{
    size_t used = PACK_HEAD;
    if (cap >= PACK_HEAD) {
        out[0] = (unsigned char)((inc->days ? PACK_DAYS : 0) | (inc->dims_only ? PACK_PARTS : 0) |
                                 (inc->stated_period ? PACK_STATED : 0));
        out[1] = (unsigned char)inc->stated_kind;
        out[2] = (unsigned char)inc->dim_count;
        memcpy(out + 3, &day, sizeof day);
    }
    const char *strings[4];
    inc_strings(inc, strings);
    for (size_t i = 0; i < 4; i++)
        pack_string(out, cap, &used, strings[i]);
    for (size_t i = 0; i < inc->dim_count; i++)
        pack_string(out, cap, &used, inc->dims[i] ? inc->dims[i] : "");
    return used;
}

/* The increment e holds, its strings pointing into e. Its instant is noon
 * UTC of its day, which is 13:00 or 14:00 of the same day in Paris. */
static void inc_unpack(const inc_entry_t *e, increment_t *inc)
{
    memset(inc, 0, sizeof *inc);
    const unsigned char *p = e->packed;
    inc->days = p[0] & PACK_DAYS;
    inc->dims_only = p[0] & PACK_PARTS;
    inc->stated_kind = (period_kind_t)p[1];
    inc->dim_count = p[2];
    int64_t day;
    memcpy(&day, p + 3, sizeof day);
    inc->at_ms = day * DAY_MS + DAY_MS / 2;
    const char *at = (const char *)p + PACK_HEAD;
    const char *strings[4];
    for (size_t i = 0; i < 4; i++) {
        strings[i] = at;
        at += strlen(at) + 1;
    }
    inc->counter = strings[0];
    inc->territory = strings[1];
    inc->commune = strings[2];
    inc->stated_period = p[0] & PACK_STATED ? strings[3] : NULL;
    for (size_t i = 0; i < inc->dim_count; i++) {
        inc->dims[i] = at;
        at += strlen(at) + 1;
    }
    inc->amount = e->amount;
}

/* Adds inc's amount to its entry, made if new. Only a new entry is
 * checked in full: an equal packed form means equal strings, so an
 * increment that matches one held is as well formed as it (what packing
 * would cut short is checked here). */
static bool increment_add(tally_t *self, const increment_t *inc, int64_t day)
{
    if (!inc->counter || inc->dim_count > PROJ_DIMS_MAX ||
        (inc->stated_period && (inc->stated_kind < PERIOD_DAY || inc->stated_kind > PERIOD_YEAR)))
        return false;
    unsigned char inline_buf[PACK_INLINE];
    unsigned char *packed = inline_buf;
    size_t len = inc_pack(inc, day, inline_buf, sizeof inline_buf);
    if (len > sizeof inline_buf) {
        packed = malloc(len);
        if (!packed)
            return false;
        inc_pack(inc, day, packed, len);
    }
    uint64_t h = hash_bytes(packed, len);
    table_t *t = &self->increments;
    size_t i = h & (t->cap - 1);
    bool ok = true;
    for (; t->slots[i].hash; i = (i + 1) & (t->cap - 1)) {
        inc_entry_t *e = t->slots[i].entry;
        if (t->slots[i].hash == h && e->len == len && memcmp(e->packed, packed, len) == 0) {
            e->amount += inc->amount;
            goto out;
        }
    }
    inc_entry_t *e = NULL;
    ok = projection_check(inc) && (e = arena_alloc(self, sizeof *e + len)) && table_reserve(t);
    if (!ok)
        goto out;
    e->amount = inc->amount;
    e->len = len;
    memcpy(e->packed, packed, len);
    i = h & (t->cap - 1);
    while (t->slots[i].hash)
        i = (i + 1) & (t->cap - 1);
    t->slots[i] = (slot_t){h, e};
    t->count++;
    self->increment_bound += projection_triple_count(inc);
out:
    if (packed != inline_buf)
        free(packed);
    return ok;
}

bool tally_add_increments(tally_t *self, const increment_t *incs, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        const increment_t *inc = &incs[i];
        if (inc->amount == 0)
            continue;
        if (!inc->stated_period && (!self->day_known || inc->at_ms != self->day_of_ms)) {
            self->day_of_ms = inc->at_ms;
            self->day = period_local_day(inc->at_ms);
            self->day_known = true;
        }
        if (!increment_add(self, inc, inc->stated_period ? 0 : self->day))
            return false;
    }
    return true;
}

/* projection_expand_each's callback: a key's fields into the sums. */
static bool expand_key(void *arg, const char *key, const char *const *fields, size_t field_count,
                       int64_t amount)
{
    tally_t *self = arg;
    key_entry_t *k = key_find(self, key);
    if (!k)
        return false;
    for (size_t f = 0; f < field_count; f++)
        if (!key_add(self, k, fields[f], amount))
            return false;
    return true;
}

bool tally_expand(tally_t *self)
{
    table_t *t = &self->increments;
    if (t->count == 0)
        return true;
    for (size_t i = 0; i < t->cap; i++) {
        if (!t->slots[i].hash)
            continue;
        increment_t inc;
        inc_unpack(t->slots[i].entry, &inc);
        /* Checked when added: a refusal is memory running out. */
        if (!projection_expand_each(&inc, expand_key, self))
            return false;
    }
    /* Their entries stay in the arena until tally_clear. */
    table_empty(t);
    self->increment_bound = 0;
    return true;
}

/* ======================== replacements ================================= */

/* A deep copy of r (its triples in an array of their own); NULL when out
 * of memory. */
static replacement_t *replacement_copy(const replacement_t *r)
{
    replacement_t *copy = malloc(sizeof *copy);
    if (!copy)
        return NULL;
    memcpy(copy->identity, r->identity, sizeof copy->identity);
    copy->identity[sizeof copy->identity - 1] = '\0';
    copy->version = r->version;
    copy->triples.count = r->triples.count;
    copy->triples.cap = r->triples.count;
    copy->triples.items = NULL;
    if (r->triples.count) {
        copy->triples.items = malloc(r->triples.count * sizeof *copy->triples.items);
        if (!copy->triples.items) {
            free(copy);
            return NULL;
        }
        memcpy(copy->triples.items, r->triples.items,
               r->triples.count * sizeof *copy->triples.items);
    }
    return copy;
}

/* Keeps r unless the replacement held for its identity is as new. */
static bool replacement_keep(tally_t *self, const replacement_t *r)
{
    table_t *t = &self->replacements;
    size_t len;
    uint64_t h = hash_str(r->identity, &len);
    size_t i = h & (t->cap - 1);
    for (; t->slots[i].hash; i = (i + 1) & (t->cap - 1)) {
        replacement_t *held = t->slots[i].entry;
        if (t->slots[i].hash != h || strcmp(held->identity, r->identity) != 0)
            continue;
        if (held->version >= r->version)
            return true;
        replacement_t *copy = replacement_copy(r);
        if (!copy)
            return false;
        replacement_free(held);
        t->slots[i].entry = copy;
        return true;
    }
    replacement_t *copy = replacement_copy(r);
    if (!copy)
        return false;
    if (!table_reserve(t)) {
        replacement_free(copy);
        return false;
    }
    i = h & (t->cap - 1);
    while (t->slots[i].hash)
        i = (i + 1) & (t->cap - 1);
    t->slots[i] = (slot_t){h, copy};
    t->count++;
    return true;
}

bool tally_add_projection(tally_t *self, const projection_t *p)
{
    key_entry_t *k = NULL;
    for (size_t i = 0; i < p->adds.count; i++) {
        const triple_t *m = &p->adds.items[i];
        /* The fields of a key come one after the other: compare with the
         * previous triple's key, in the cache line next to this one. */
        if (!k || strcmp(m->key, p->adds.items[i - 1].key) != 0)
            k = key_find(self, m->key);
        if (!k || !key_add(self, k, m->field, m->delta))
            return false;
    }
    for (size_t i = 0; i < p->replacement_count; i++)
        if (!replacement_keep(self, &p->replacements[i]))
            return false;
    return true;
}

size_t tally_replacement_count(const tally_t *self)
{
    return self->replacements.count;
}

void tally_each_replacement(const tally_t *self, tally_replacement_fn *fn, void *arg)
{
    const table_t *t = &self->replacements;
    for (size_t i = 0; i < t->cap; i++)
        if (t->slots[i].hash)
            fn(arg, t->slots[i].entry);
}
