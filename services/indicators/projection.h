/* What an event counts: a pure function from an event to counter moves,
 * tested without Redis (tests/test_projection.c).
 *
 * A move is a triple (counter key without its generation prefix, field,
 * delta): indicators.h gives the key layout. Moves come in two sorts:
 *   - adds: counted once per event (the event's done marker makes sure);
 *   - replacements: what one record (an objective, an economic project, a
 *     period's demand figures) counts as of a version. A replacement
 *     undoes what the record counted before and counts anew, and only if
 *     its version is higher than the one counted: the newest version wins
 *     whatever order events are applied in.
 *
 * Every counter an increment touches is expanded here, in one place
 * (projection_expand): the scopes (the Métropole, the territory if known,
 * the commune if known and the counter is kept per commune), the periods
 * (an instant counts in its day - Métropole and territories only -,
 * month, quarter, year and "all", in Europe/Paris time; a stated period
 * counts in itself, the longer periods containing it, and "all"), and the
 * fields ("*" and one per axis value).
 *
 * Expansion is linear in the amount, so increments equal in all but their
 * amount can be summed first and expanded once: a rebuild or a projector's
 * batch takes an event's adds as increments (projection_count) and sums
 * them in a tally (tally.h), which expands each distinct one when it is
 * written. projection_of is the same counting with every add expanded. */
#ifndef INDICATORS_PROJECTION_H
#define INDICATORS_PROJECTION_H

#include "envelope.pb-c.h"
#include "indicators.h"
#include "periods.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROJ_FIELD_MAX    64
#define PROJ_IDENTITY_MAX 160
#define PROJ_DIMS_MAX     12

typedef struct {
    char key[INDICATORS_KEY_MAX]; /* "c:conventions.signed:CT2:2026-04" */
    char field[PROJ_FIELD_MAX];   /* "*", "level=LOC2", "v=42" */
    int64_t delta;
} triple_t;

/* A growable array of triples (owned). */
typedef struct {
    triple_t *items;
    size_t count;
    size_t cap;
} triples_t;

void triples_init(triples_t *t);
/* False when out of memory (nothing added). */
bool triples_add(triples_t *t, const char *key, const char *field, int64_t delta);
void triples_free(triples_t *t);

typedef struct {
    char identity[PROJ_IDENTITY_MAX]; /* "objective:P01...:2026", "project:J01...", "demand:2026-04"
                                       */
    uint64_t version;                 /* the record's version */
    triples_t triples;                /* what it counts as of that version */
} replacement_t;

typedef struct {
    triples_t adds;
    replacement_t *replacements; /* owned */
    size_t replacement_count;
} projection_t;

/* One increment before expansion. */
typedef struct {
    const char *counter;   /* "conventions.signed" */
    const char *territory; /* "CT2", or NULL/"" if unknown */
    /* INSEE code, or NULL/""; used only if the catalog keeps the counter
     * per commune (catalog.h), which projection_expand checks. */
    const char *commune;
    /* "axis=VALUE" fields besides "*"; an axis may appear with several
     * values (a proposal for two publics counts in both). */
    const char *dims[PROJ_DIMS_MAX];
    size_t dim_count;
    int64_t amount;
    /* When: an instant (UTC ms), or a stated period key (kind given). */
    int64_t at_ms;
    const char *stated_period; /* NULL: use at_ms */
    period_kind_t stated_kind;
    bool days; /* count day periods too (event-time counters) */
    /* Count in the dims' fields only, not in "*": a part of a total that
     * is given on its own (demand figures of one public, aids of one
     * kind), which summing into "*" would count twice. */
    bool dims_only;
} increment_t;

/* Appends every triple of inc to out. False, with nothing appended, when
 * out of memory or inc is malformed (a stated period that is not a valid
 * key of its kind, a dim that is not "axis=VALUE"). */
bool projection_expand(const increment_t *inc, triples_t *out);

/* True if inc is well formed: what projection_expand takes. */
bool projection_check(const increment_t *inc);

/* The kind of a period key of demand figures: a month, a quarter or a
 * year (a day is too fine for figures shared monthly at best). False, with
 * *kind untouched, for any other key. The import checks its rows with it
 * and the projection counts them with it, so both take the same keys. */
bool demand_period_kind(const char *key, period_kind_t *kind);

/* The same expansion one counter key at a time: fn gets each key of inc
 * with the fields inc moves there (each by inc->amount). The keys come in
 * the order projection_expand appends them. False when inc is malformed
 * (fn not called) or fn returned false (expansion stops there). */
typedef bool(projection_key_fn)(void *arg, const char *key, const char *const *fields,
                                size_t field_count, int64_t amount);
bool projection_expand_each(const increment_t *inc, projection_key_fn *fn, void *arg);

/* How many triples projection_expand would append for inc (0 if it is
 * malformed or counts nothing). */
size_t projection_triple_count(const increment_t *inc);

/* Increments and the text their strings point to, which stays put until
 * increments_reset (owned; reused from event to event). Counter names
 * are static strings. */
typedef struct increments_text_t increments_text_t;

typedef struct {
    increment_t *items;
    size_t count;
    size_t cap;
    increments_text_t *text;
} increments_t;

void increments_init(increments_t *l);
/* Forgets the increments held, keeping the memory for the next ones. */
void increments_reset(increments_t *l);
void increments_free(increments_t *l);

/* What event counts, with its adds left as increments: appended to adds
 * (their strings held there, not in the event), its replacements into out
 * (initialised here; out->adds stays empty; projection_free after). The
 * event's data is decoded with malloc when allocator is NULL, and freed
 * here; otherwise read with projection_message_read into allocator, which
 * must be an arena the caller drops as a whole: the data is left in it,
 * not freed field by field (a caller decoding many events reuses one). An event that counts nothing
 * gives nothing and returns true, as for projection_of; false only when out of memory, with adds as
 * they were. */
bool projection_count(const Passerelle__Event *event, ProtobufCAllocator *allocator,
                      increments_t *adds, projection_t *out);

/* Takes an event's adds one at a time (projection_count_each): inc and
 * its strings hold only during the call. False stops the counting (out of
 * memory). */
typedef bool(projection_add_fn)(void *arg, const increment_t *inc);

/* projection_count with the adds handed to add as they are made rather
 * than copied into a list: a tally takes them so (tally_add_increments).
 * False when out of memory or add returned false; what add took before
 * stays taken. */
bool projection_count_each(const Passerelle__Event *event, ProtobufCAllocator *allocator,
                           projection_add_fn *add, void *arg, projection_t *out);

/* The message of desc packed in packed (len bytes), as protobuf-c's
 * unpack decodes it, for a caller that decodes many with an arena
 * allocator, dropped as a whole: nothing here is freed field by field
 * (NULL: it is protobuf-c's unpack, free_unpacked after). Messages as the
 * services write them - optional fields of scalar,
 * string, bytes and message types, and fields this build does not know -
 * are read directly: strings copied into the arena, bytes pointing into
 * packed, which must outlive the message. protobuf-c scans, initialises
 * and copies every field, which costs more than counting the event does.
 * Anything else (a repeated or oneof field, a wire type that is not the
 * field's, a message cut short...) is decoded by protobuf-c, which
 * decides. Returns the message, or NULL when the bytes do not decode (or
 * the arena is out of memory). The rebuild reads its events so, and
 * projection_count their data when given an arena. */
ProtobufCMessage *projection_message_read(const ProtobufCMessageDescriptor *desc,
                                          const uint8_t *packed, size_t len,
                                          ProtobufCAllocator *allocator);

/* What event counts, into out (initialised here; projection_free after):
 * projection_count with every add expanded into out->adds.
 * An event of a type nothing counts, or whose data does not decode, gives
 * an empty projection and returns true (it is acknowledged and logged);
 * false only when out of memory. */
bool projection_of(const Passerelle__Event *event, projection_t *out);
void projection_free(projection_t *p);

#endif
