/* What every part of the passerelle CLI shares: the command table of
 * passerelle.c and the modules with commands of their own (docs.c,
 * indicators.c, report.c) speak to their user, and to the services, the
 * same way.
 *
 *   - the exit codes, which scripts rely on;
 *   - the global options as passerelle.c parsed them;
 *   - the words of a usage error and of a service's refusal on stderr;
 *   - a client of one service made from the global options, and one call
 *     through it whose reply is checked and unpacked;
 *   - the pieces of the modules' own flag parsers and help.
 *
 * Everything here writes to stdout or stderr and returns an exit code (or
 * 0 to go on): a caller only has to pass the code up. */
#ifndef PASSERELLE_TOOLS_CLI_COMMON_H
#define PASSERELLE_TOOLS_CLI_COMMON_H

#include "client.h"
#include "envelope.pb-c.h"

#include <jansson.h>
#include <limits.h>
#include <protobuf-c/protobuf-c.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* Exit codes: part of the interface for scripts. */
enum {
    CLI_EXIT_OK = 0,
    CLI_EXIT_REPLY_ERROR = 1, /* the service refused, or a local check failed */
    CLI_EXIT_USAGE = 2,       /* usage or configuration error */
    CLI_EXIT_UNREACHABLE = 3, /* no reply after the retries */
};

/* The global options (strings borrowed from argv or the environment). */
typedef struct {
    const char *endpoint;        /* --endpoint; NULL: the command's service's own */
    const char *keys_dir;        /* --keys, PASSERELLE_KEYS_DIR */
    const char *as;              /* --as, PASSERELLE_CLIENT: the client key's name */
    const char *idempotency_key; /* --idempotency-key; NULL: a fresh key per write */
    long timeout_ms;             /* per attempt */
    long retries;                /* attempts after the first */
    bool insecure;               /* PASSERELLE_INSECURE: no CURVE */
    bool json;
    bool id_only;
    bool help;
} cli_options_t;

/* ---- words on stderr ---------------------------------------------------- */

/* "error: <message>" and "(see 'passerelle help <topic>')" (topic NULL:
 * the whole help). Returns CLI_EXIT_USAGE. */
int cli_usage_error(const char *topic, const char *format, ...)
    __attribute__((format(printf, 2, 3)));
int cli_usage_verror(const char *topic, const char *format, va_list args)
    __attribute__((format(printf, 2, 0)));

/* "error: <STATUS>: <message> (field: <field>)" for a reply that is not
 * OK. */
void cli_print_reply_error(const Passerelle__Reply *reply);

/* ---- one service --------------------------------------------------------- */

/* The service a command talks to: where, and the client once connected. */
typedef struct {
    const cli_options_t *opts;
    const char *endpoint; /* the one asked, which the messages name */
    client_t *client;     /* NULL until cli_service_connect */
} cli_service_t;

/* Points svc at --endpoint, else at the endpoint the environment variable
 * names, else at fallback (the service's local default). No I/O. */
void cli_service_init(cli_service_t *svc, const cli_options_t *opts, const char *variable,
                      const char *fallback);

/* Makes the client: the key --as names in the key directory (unless
 * insecure), the timeout and the retries. Returns 0, or CLI_EXIT_USAGE
 * after saying why: a name that is not a key name is a usage error
 * pointing at topic's help (cli_usage_error), keys that cannot be loaded
 * point at keygen's. */
int cli_service_connect(cli_service_t *svc, const char *topic);

/* One request (idempotency_key NULL: the client makes a fresh one for a
 * write). Returns 0 with *result_p, the reply's body unpacked as
 * reply_desc (the caller frees it with protobuf_c_message_free_unpacked),
 * or an exit code after saying why on stderr: CLI_EXIT_UNREACHABLE when no
 * reply came, CLI_EXIT_REPLY_ERROR for a refusal or a body that does not
 * decode. *status_out (may be NULL) gets the reply's status, -1 when none
 * came. */
int cli_service_call(cli_service_t *svc, const char *type, const ProtobufCMessage *request,
                     const char *idempotency_key, const ProtobufCMessageDescriptor *reply_desc,
                     ProtobufCMessage **result_p, int *status_out);

/* Destroys the client, if any. */
void cli_service_close(cli_service_t *svc);

/* ---- output -------------------------------------------------------------- */

/* json, indented, in its keys' order, on stdout ("out of memory" on stderr
 * for NULL). Does not take json. */
void cli_print_json(const json_t *json);

/* msg as pbjson maps it, printed as cli_print_json does: what --json
 * shows of a reply. */
void cli_print_message_json(const ProtobufCMessage *msg);

/* Each line of text (lines end with '\n' or the end) indented by six
 * spaces: a command's description under its usage line in the help. */
void cli_print_indented(FILE *out, const char *text);

/* ---- a file written whole ------------------------------------------------ */

/* A file the CLI writes (a download, an export, the report): its bytes go
 * to a temporary file beside the target, which is synced and renamed onto
 * it only when complete, so a reader never sees half a file and a failure
 * leaves the target as it was. */
typedef struct {
    FILE *out;                /* the temporary file; NULL when none is open */
    const char *target;       /* borrowed from the caller */
    char temp_path[PATH_MAX]; /* ".<name>.part-XXXXXX" in target's folder */
} cli_file_t;

/* Creates the temporary file in target's folder (one file system, so the
 * rename is atomic) with the mode any new file gets (0666 & ~umask).
 * Returns 0 with file->out open for writing, or an exit code after saying
 * why on stderr: CLI_EXIT_USAGE for a path too long, CLI_EXIT_REPLY_ERROR
 * for a file that cannot be made. */
int cli_file_begin(cli_file_t *file, const char *target);

/* Flushes and fsyncs the temporary file, closes it and renames it onto the
 * target (then syncs the folder). Returns 0, or CLI_EXIT_REPLY_ERROR after
 * saying why on stderr and removing the temporary file. The file is closed
 * either way. */
int cli_file_commit(cli_file_t *file);

/* Closes and removes the temporary file of a write that failed; nothing
 * when none is open. */
void cli_file_discard(cli_file_t *file);

/* ---- the flags of a module's commands --------------------------------- */

/* A command's flags are a space-separated list of names without "--"
 * ("title kind tag* document"), a trailing '*' marking a repeatable one.
 * Returns the position of the flag named name (name_len bytes) in the
 * list, or -1; *repeatable (may be NULL) says whether it is marked so. */
int cli_flag_index(const char *flags, const char *name, size_t name_len, bool *repeatable);

/* Splits arg when it is a flag: "-o" is --output, "--name" and
 * "--name=value" are themselves ("--" alone is not a flag). Returns false
 * for a positional argument; for a flag, sets *name (without "--") and
 * *name_len, and *value to the value given after '=' or NULL. */
bool cli_flag_split(const char *arg, const char **name, size_t *name_len, const char **value);

/* The value of the flag args[*i] when given as the next argument: that
 * argument, unless there is none or it starts with "--" ("-o -" is a
 * value: standard output); *i is moved onto it. NULL when none. */
const char *cli_flag_next_value(char **args, int count, int *i);

#endif
