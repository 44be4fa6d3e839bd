/* Reference data: the 92 communes of the Métropole Aix-Marseille-Provence
 * with their territory (CT1..CT6), and Marseille's 16 arrondissements. The
 * tables are the project's copy in data/, embedded in the binary at build
 * time and parsed once, on first use (thread-safe).
 *
 * Names are compared without regard to case, accents, or the separators
 * ' ', '-', '\'' and '’': "BERRE L ETANG" finds Berre-l'Étang. */
#ifndef PASSERELLE_REFDATA_H
#define PASSERELLE_REFDATA_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    const char *insee;     /* "13001" */
    const char *name;      /* "Aix-en-Provence", as in the table (UTF-8) */
    const char *territory; /* "CT2"; for an arrondissement, Marseille's */
} commune_t;

#define REFDATA_MARSEILLE_INSEE "13055"

/* A commune by INSEE code or by name; NULL if it is not one of the 92.
 * An arrondissement code (13201) is not a commune: see below. */
const commune_t *refdata_commune(const char *code_or_name);

/* A Marseille arrondissement by INSEE code ("13207"), by number ("7",
 * "07", "7e", "1er") or by name ("Marseille 7e Arrondissement"); NULL if
 * none. */
const commune_t *refdata_arrondissement(const char *text);

/* True for "CT1".."CT6" (any case). The name is "Marseille-Provence" etc.;
 * NULL for an unknown code. */
bool refdata_is_territory(const char *code);
const char *refdata_territory_name(const char *code);

/* Iteration over the communes, in table order (INSEE code). */
size_t refdata_commune_count(void);
const commune_t *refdata_commune_at(size_t index);

/* Folds a UTF-8 name for comparison: lower case, accents removed, runs of
 * separators made one space, trimmed. Writes at most out_size bytes
 * including the NUL. Exposed for tests. */
void refdata_fold_name(const char *name, char *out, size_t out_size);

#endif
