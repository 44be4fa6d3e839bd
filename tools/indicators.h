/* passerelle indicators, passerelle demand import: the indicators service's
 * commands that are more than one request printed as it comes back.
 *
 *   indicators          the snapshot of the Métropole and of each territory
 *                       at a date, as one table (indicators down, scopes
 *                       across): seven snapshot requests, one table;
 *   indicators series   one indicator as "period value" lines;
 *   indicators export   the figures as CSV or JSON, to a file or stdout;
 *   demand import       Action Logement's demand figures from a CSV file,
 *                       every line checked here first, then one request.
 *
 * The one-request commands (project create, demand get, indicator list...)
 * are rows of passerelle.c's command table. passerelle.c parses the global
 * options and hands the rest here when indicators_command() says so. */
#ifndef PASSERELLE_TOOLS_INDICATORS_H
#define PASSERELLE_TOOLS_INDICATORS_H

#include "cli_common.h"

#include <stdbool.h>
#include <stdio.h>

/* True if the command words (global options already taken out) are one of
 * the commands above: "indicators" alone or with flags, "indicators
 * series", "indicators export", "demand import". Other "indicators ..."
 * words ("indicators list") are the command table's. */
bool indicators_command(char **words, int count);

/* Runs the command the words name (words as given to indicators_command).
 * Returns the exit code: 0 OK, 1 the service refused (or, for demand
 * import, a line of the file is bad: nothing is sent then), 2 usage error,
 * 3 no reply after the retries (cli_common.h). The endpoint is --endpoint,
 * or PASSERELLE_INDICATORS_ENDPOINT; demand import sends
 * --idempotency-key when given. */
int indicators_main(const cli_options_t *opts, char **words, int count);

/* These commands' part of `passerelle help`. */
void indicators_print_help(FILE *out);

#endif
