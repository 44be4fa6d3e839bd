/* passerelle docs: the document store's commands (put, get, list, show,
 * versions, withdraw, fsck). Transfers go in chunks, the service's window
 * of them in flight, so neither the CLI nor the service ever holds a whole
 * file, and every download is checked against its SHA-256 before it is
 * given its name. passerelle.c parses the global options and hands the
 * rest here. */
#ifndef PASSERELLE_TOOLS_DOCS_H
#define PASSERELLE_TOOLS_DOCS_H

#include "cli_common.h"

#include <stdio.h>

/* Runs `docs <sub-command> [arguments]` (args: what follows the word
 * "docs"). Returns the exit code: 0 OK, 1 the service refused (or a
 * download failed its checks, or fsck found a problem), 2 usage error, 3 no
 * reply after the retries (cli_common.h). The endpoint is --endpoint, or
 * PASSERELLE_DOCSTORE_ENDPOINT. */
int docs_main(const cli_options_t *opts, char **args, int count);

/* The docs commands' part of `passerelle help`. */
void docs_print_help(FILE *out);

#endif
