/* Configuration from PASSERELLE_* environment variables. Every variable
 * read anywhere is listed in the README's configuration table (a test
 * checks it). A value that does not parse is an error the caller reports
 * and exits on: a service must not run on a guess. */
#ifndef PASSERELLE_CONFIG_H
#define PASSERELLE_CONFIG_H

#include <stdbool.h>

/* The variable's value, or fallback when unset or empty. Not owned. */
const char *config_str(const char *name, const char *fallback);

/* Reads an integer in [min, max] into *out (fallback when unset).
 * Returns false, and logs which variable is wrong, when the value is not
 * an integer or is out of range. */
bool config_int(const char *name, long fallback, long min, long max, long *out);

/* Reads a boolean: 1/true/yes/on or 0/false/no/off, any case. Returns false
 * and logs when the value is none of these. */
bool config_bool(const char *name, bool fallback, bool *out);

/* A secret: the value of name, or else the content of the file that
 * name_FILE names (a container's mounted secret, so that the secret is in
 * neither the environment nor the image), its final newline removed.
 * *out is NULL when neither is set. A file is read once per process and
 * kept for its life (not owned). Returns false, and logs which variable
 * is wrong, when the file cannot be read or is empty; a service must not
 * start without the secret it was told to use. */
bool config_secret(const char *name, const char **out);

#endif
