/* passerelle report: the yearly review of the partnership as one
 * self-contained HTML file (inline CSS and SVG, nothing fetched), for the
 * whole Métropole and each territory, month by month, every figure read
 * from the indicators service's series. passerelle.c parses the global
 * options and hands the rest here. */
#ifndef PASSERELLE_TOOLS_REPORT_H
#define PASSERELLE_TOOLS_REPORT_H

#include "cli_common.h"

#include <stdio.h>

/* Runs `report [--year Y] [-o FILE] [--territory CTn]` (args: what follows
 * the word "report"). Writes the file (default report-<Y>.html in the
 * current folder) and prints its path. Returns the exit code: 0 OK, 1 the
 * service refused a query (or the file cannot be written), 2 usage error,
 * 3 no reply after the retries (cli_common.h). The endpoint is --endpoint,
 * or PASSERELLE_INDICATORS_ENDPOINT. */
int report_main(const cli_options_t *opts, char **args, int count);

/* The report's part of `passerelle help`. */
void report_print_help(FILE *out);

#endif
