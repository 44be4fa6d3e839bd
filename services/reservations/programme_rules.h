/* The rules of programmes (PIG, OPAH, OPAH-RU, NPNRU, social housing and
 * social ownership operations), of the units attached to them and of
 * Action Logement's objectives in them.
 *
 * Pure, as domain.h: no Redis, no sockets, no clock (today is an argument).
 * The handlers (programmes.c) read, ask these functions, and write what they
 * decide; tests/test_programme_rules.c proves every refusal and its field. */
#ifndef RESERVATIONS_PROGRAMME_RULES_H
#define RESERVATIONS_PROGRAMME_RULES_H

#include "domain.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROGRAMME_NAME_MAX_CHARS    200 /* characters, not bytes: names are UTF-8 */
#define PROGRAMME_OPERATOR_MAX      128 /* bytes */
#define PROGRAMME_COMMUNES_MAX      92  /* every commune of the Métropole */
#define PROGRAMME_LIST_PAGE_DEFAULT 50
#define PROGRAMME_LIST_PAGE_MAX     500

#define OBJECTIVE_YEAR_MIN  2000
#define OBJECTIVE_YEAR_MAX  2100
#define OBJECTIVE_UNITS_MAX 100000

/* "PIG", "OPAH", "OPAH_RU", "NPNRU", "SOCIAL_HOUSING", "SOCIAL_OWNERSHIP";
 * "UNKNOWN" for anything else. Static. */
const char *programme_kind_name(int kind);
/* "LOC1".."LOC3" and "PLAI".."LLI"; "UNKNOWN" otherwise. Static. */
const char *convention_level_name(int level);
const char *financing_name(int financing);

/* --- programme.create --------------------------------------------------- */

/* What a validated programme points into besides the request: its
 * territory, upper-cased, and its communes as INSEE codes (pointing into
 * the reference tables), without duplicates. */
typedef struct {
    char territory[4];
    char *communes[PROGRAMME_COMMUNES_MAX];
    Passerelle__NpnruCounterparts npnru;
} programme_scratch_t;

/* Validates a creation request and fills prog with what is created (strings
 * point into req, scratch or the reference tables: prog is valid while both
 * live). Identity, timestamps and version are left to the caller.
 * INVALID_ARGUMENT naming the field:
 *   name        1-200 characters, no control characters;
 *   kind        one of the six;
 *   territory   CT1..CT6; required when no communes are given;
 *   communes    each one of the 92 by INSEE code or name, all in one
 *               territory, and that of `territory` when both are given;
 *   start_date  required, YYYY-MM-DD;
 *   end_date    required, YYYY-MM-DD, after start_date;
 *   operator    required for PIG, OPAH and OPAH-RU; at most 128 bytes;
 *   ownership_scheme  PSLA or BRS, required for SOCIAL_OWNERSHIP, refused
 *               for any other kind;
 *   npnru       for NPNRU only (its used_* counts are replies' and are
 *               ignored); land_surface_m2 finite and not negative. */
bool programme_validate(const Passerelle__ProgrammeCreateRequest *req, Passerelle__Programme *prog,
                        programme_scratch_t *scratch, domain_error_t *err);

/* True if the programme covers the unit's place: one of its communes, or,
 * when it names none, its territory. */
bool programme_covers(const Passerelle__Programme *prog, const Passerelle__Unit *unit);

typedef enum {
    ATTACH_NEW,     /* attach it */
    ATTACH_ALREADY, /* already in this programme: nothing to write */
    ATTACH_REFUSED, /* err says why */
} attach_decision_t;

/* May the unit join the programme? CONFLICT field "unit" when it is in
 * another programme (named); FAILED_PRECONDITION field "unit" when its
 * commune is outside the programme's communes or territory. */
attach_decision_t programme_attach_decide(const Passerelle__Programme *prog,
                                          const Passerelle__Unit *unit, domain_error_t *err);

/* --- programme.list ----------------------------------------------------- */

typedef struct {
    char territory[4]; /* "" for any */
    int kind;          /* 0 for any */
    unsigned page_size;
    char after[ID_LEN]; /* page token: the last id of the previous page */
} programme_filter_t;

/* INVALID_ARGUMENT naming territory, kind, page_size or page_token. */
bool programme_filter_parse(const Passerelle__ProgrammeListRequest *req, programme_filter_t *filter,
                            domain_error_t *err);
bool programme_filter_match(const programme_filter_t *filter, const Passerelle__Programme *prog);

#define PROGRAMME_INDEX_KEY_MAX 96

/* The index sorted sets a programme belongs to: every programme, its
 * territory's, its kind's. */
#define PROGRAMME_INDEX_COUNT 3
void programme_index_keys(const Passerelle__Programme *prog,
                          char keys[PROGRAMME_INDEX_COUNT][PROGRAMME_INDEX_KEY_MAX]);
/* The index a filtered listing walks: the territory's, else the kind's,
 * else every programme's. */
void programme_filter_index(const programme_filter_t *filter, char key[PROGRAMME_INDEX_KEY_MAX]);
/* The index of the units attached to a programme. */
void programme_units_key(const char *programme_id, char key[PROGRAMME_INDEX_KEY_MAX]);

/* --- objective.set ------------------------------------------------------ */

/* Validates an objective: programme (a programme id), year 2000-2100,
 * level LOC1-3 or financing PLAI..LLI or neither but not both, units
 * required (0 clears an objective, at most 100000). INVALID_ARGUMENT
 * naming the field. */
bool objective_validate(const Passerelle__ObjectiveSetRequest *req, domain_error_t *err);

#define OBJECTIVE_KEY_MAX 128

/* reservations:objective:<programme>:<year>:<level>:<financing> (numbers,
 * 0 for none): one record per objective, which a new objective.set for the
 * same four replaces. */
void objective_key(const char *programme_id, unsigned year, int level, int financing,
                   char key[OBJECTIVE_KEY_MAX]);
/* reservations:objectives:<year>: index of that year's objectives, members
 * "<programme>:<level>:<financing>". */
void objective_year_index_key(unsigned year, char key[OBJECTIVE_KEY_MAX]);
void objective_member(const char *programme_id, int level, int financing,
                      char member[OBJECTIVE_KEY_MAX]);
/* Parses such a member; false if it is not one. */
bool objective_member_parse(const char *member, char programme_id[ID_LEN], int *level,
                            int *financing);

/* --- progress.get ------------------------------------------------------- */

typedef struct {
    char programme_id[ID_LEN]; /* "" for none */
    char territory[4];         /* "" for none */
    unsigned year;
} progress_scope_t;

/* programme (an id) or territory (CT1..CT6) or neither, not both; year
 * 2000-2100, default today's. INVALID_ARGUMENT naming the field. */
bool progress_scope_parse(const Passerelle__ProgressRequest *req, date_t today,
                          progress_scope_t *scope, domain_error_t *err);

#endif
