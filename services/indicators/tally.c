/* Counts gathered in memory (tally.h).
 *
 * A rebuild pushes a hundred or so triples per event through here, a
 * million events in a row, so this is built for that. Counter keys live
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
 * Replacements are few (one per record counted: objectives, projects,
 * demand periods) and kept in a table of their own, each a deep copy of
 * the newest version seen. */
#include "tally.h"

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

struct tally_t {
    chunk_t *chunks;        /* the current chunk first */
    table_t keys;           /* key_entry_t */
    table_t fields;         /* field_entry_t */
    key_entry_t **key_list; /* every key, in insertion order, for tally_each */
    size_t key_list_cap;
    size_t field_count;   /* every field, chained or in the table */
    table_t replacements; /* replacement_t (malloc'd, deep copies) */
};

/* ======================== hashing ====================================== */

/* A multiply-xor hash over 8-byte words (the strings are short, their
 * length known after one strlen), finished so that the low bits (the
 * table index) depend on every byte. Never 0. Writes the length of s
 * into *len. */
static uint64_t hash_str(const char *s, size_t *len)
{
    size_t n = strlen(s);
    *len = n;
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
    if (!table_init(&self->keys) || !table_init(&self->fields) ||
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
    free(self->keys.slots);
    free(self->fields.slots);
    free(self->replacements.slots);
    free(self->key_list);
    free(self);
    *self_p = NULL;
}

void tally_clear(tally_t *self)
{
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
    return self->field_count;
}

void tally_each(const tally_t *self, tally_fn *fn, void *arg)
{
    for (size_t i = 0; i < self->keys.count; i++) {
        const key_entry_t *k = self->key_list[i];
        for (const field_entry_t *f = k->fields; f; f = f->next_in_key)
            if (f->sum != 0)
                fn(arg, k->key, f->field, f->sum);
    }
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
