/* The pieces every part of the passerelle CLI shares (cli_common.h). */
#include "cli_common.h"

#include "config.h"
#include "identity.h"
#include "pbjson.h"
#include "status.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ==========================================================================
 * Words on stderr
 * ======================================================================== */

int cli_usage_verror(const char *topic, const char *format, va_list args)
{
    fputs("error: ", stderr);
    vfprintf(stderr, format, args);
    fprintf(stderr, "\n(see 'passerelle help%s%s')\n", topic ? " " : "", topic ? topic : "");
    return CLI_EXIT_USAGE;
}

int cli_usage_error(const char *topic, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    int rc = cli_usage_verror(topic, format, args);
    va_end(args);
    return rc;
}

void cli_print_reply_error(const Passerelle__Reply *reply)
{
    fprintf(stderr, "error: %s: %s", status_name(reply->status),
            reply->message && *reply->message ? reply->message : "(no message)");
    if (reply->field && *reply->field)
        fprintf(stderr, " (field: %s)", reply->field);
    fputc('\n', stderr);
}

/* ==========================================================================
 * One service
 * ======================================================================== */

void cli_service_init(cli_service_t *svc, const cli_options_t *opts, const char *variable,
                      const char *fallback)
{
    svc->opts = opts;
    svc->endpoint = opts->endpoint ? opts->endpoint : config_str(variable, fallback);
    svc->client = NULL;
}

int cli_service_connect(cli_service_t *svc, const char *topic)
{
    const cli_options_t *opts = svc->opts;
    if (!opts->insecure && !identity_name_valid(opts->as))
        return cli_usage_error(topic, "--as: '%s' is not a key name", opts->as);
    char server_public[1024], server_next[1024], client_cert[1024], err[512] = "";
    keydir_server_public_path(opts->keys_dir, server_public, sizeof server_public);
    /* During a rotation of the services' key: the client tries it when the
     * service does not take server.key (absent: none). */
    keydir_server_next_public_path(opts->keys_dir, server_next, sizeof server_next);
    keydir_client_cert_path(opts->keys_dir, opts->as, client_cert, sizeof client_cert);
    client_config_t cfg = {
        .endpoint = svc->endpoint,
        .server_public_path = server_public,
        .server_next_public_path = server_next,
        .client_cert_path = client_cert,
        .insecure = opts->insecure,
        .timeout_ms = (int)opts->timeout_ms,
        .retries = (int)opts->retries,
    };
    svc->client = client_new(&cfg, err, sizeof err);
    if (!svc->client) {
        fprintf(stderr, "error: %s\n(keys: %s, as: %s; see 'passerelle help keygen')\n",
                *err ? err : "cannot set up the client", opts->keys_dir, opts->as);
        return CLI_EXIT_USAGE;
    }
    return 0;
}

int cli_service_call(cli_service_t *svc, const char *type, const ProtobufCMessage *request,
                     const char *idempotency_key, const ProtobufCMessageDescriptor *reply_desc,
                     ProtobufCMessage **result_p, int *status_out)
{
    Passerelle__Reply *reply = NULL;
    *result_p = NULL;
    if (status_out)
        *status_out = -1;
    if (client_call(svc->client, type, request, idempotency_key, &reply) != 0) {
        long retries = svc->opts->retries;
        fprintf(stderr, "error: UNAVAILABLE: no reply from %s after %ld attempt%s\n", svc->endpoint,
                retries + 1, retries ? "s" : "");
        return CLI_EXIT_UNREACHABLE;
    }
    if (status_out)
        *status_out = reply->status;
    if (reply->status != PASSERELLE__STATUS__STATUS_OK) {
        cli_print_reply_error(reply);
        passerelle__reply__free_unpacked(reply, NULL);
        return CLI_EXIT_REPLY_ERROR;
    }
    ProtobufCMessage *result = protobuf_c_message_unpack(
        reply_desc, NULL, reply->has_body ? reply->body.len : 0, reply->body.data);
    passerelle__reply__free_unpacked(reply, NULL);
    if (!result) {
        fprintf(stderr, "error: INTERNAL: the reply to %s does not decode as %s\n", type,
                reply_desc->name);
        return CLI_EXIT_REPLY_ERROR;
    }
    *result_p = result;
    return 0;
}

void cli_service_close(cli_service_t *svc)
{
    client_destroy(&svc->client);
}

/* ==========================================================================
 * Output
 * ======================================================================== */

void cli_print_json(const json_t *json)
{
    if (!json) {
        fprintf(stderr, "error: out of memory\n");
        return;
    }
    json_dumpf(json, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    fputc('\n', stdout);
}

void cli_print_message_json(const ProtobufCMessage *msg)
{
    json_t *json = pbjson_from_message(msg);
    cli_print_json(json);
    json_decref(json);
}

void cli_print_indented(FILE *out, const char *text)
{
    for (const char *line = text; *line;) {
        size_t len = strcspn(line, "\n");
        fprintf(out, "      %.*s\n", (int)len, line);
        line += len;
        if (*line == '\n')
            line++;
    }
}

/* ==========================================================================
 * A file written whole
 * ======================================================================== */

int cli_file_begin(cli_file_t *file, const char *target)
{
    file->out = NULL;
    file->target = target;
    file->temp_path[0] = '\0';
    const char *slash = strrchr(target, '/');
    const char *name = slash ? slash + 1 : target;
    /* The folder as written: "" for a file at the root, "." for none. */
    int dir_len = slash ? (int)(slash - target) : 1;
    const char *dir = slash ? target : ".";
    int n = snprintf(file->temp_path, sizeof file->temp_path, "%.*s/.%s.part-XXXXXX", dir_len, dir,
                     name);
    if (n < 0 || (size_t)n >= sizeof file->temp_path) {
        file->temp_path[0] = '\0';
        fprintf(stderr, "error: the path '%s' is too long\n", target);
        return CLI_EXIT_USAGE;
    }
    int fd = mkstemp(file->temp_path);
    if (fd < 0) {
        fprintf(stderr, "error: cannot create a file beside '%s': %s\n", target, strerror(errno));
        file->temp_path[0] = '\0';
        return CLI_EXIT_REPLY_ERROR;
    }
    /* mkstemp makes it 0600; the file gets the mode any new file gets */
    mode_t mask = umask(0);
    umask(mask);
    if (fchmod(fd, 0666 & ~mask) != 0 || !(file->out = fdopen(fd, "wb"))) {
        fprintf(stderr, "error: cannot create a file beside '%s': %s\n", target, strerror(errno));
        close(fd);
        unlink(file->temp_path);
        file->temp_path[0] = '\0';
        return CLI_EXIT_REPLY_ERROR;
    }
    return 0;
}

/* Makes the rename itself durable: without it a crash may bring back the
 * old target (or none) although the command said it was written. Best
 * effort: a folder that cannot be opened for reading is still written. */
static void sync_folder_of(const char *target)
{
    const char *slash = strrchr(target, '/');
    char dir[PATH_MAX];
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if ((size_t)(slash - target) >= sizeof dir)
        return;
    else
        snprintf(dir, sizeof dir, "%.*s", slash == target ? 1 : (int)(slash - target), target);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

int cli_file_commit(cli_file_t *file)
{
    if (!file->out)
        return CLI_EXIT_REPLY_ERROR;
    FILE *out = file->out;
    file->out = NULL;
    bool ok = !ferror(out) && fflush(out) == 0 && fsync(fileno(out)) == 0;
    int saved = errno;
    if (fclose(out) != 0 && ok) {
        ok = false;
        saved = errno;
    }
    if (ok && rename(file->temp_path, file->target) != 0) {
        saved = errno;
        fprintf(stderr, "error: cannot rename %s to %s: %s\n", file->temp_path, file->target,
                strerror(saved));
        unlink(file->temp_path);
        return CLI_EXIT_REPLY_ERROR;
    }
    if (!ok) {
        /* ferror without a failing call leaves no errno of its own */
        fprintf(stderr, "error: cannot write %s: %s\n", file->target,
                saved ? strerror(saved) : "write error");
        unlink(file->temp_path);
        return CLI_EXIT_REPLY_ERROR;
    }
    sync_folder_of(file->target);
    return 0;
}

void cli_file_discard(cli_file_t *file)
{
    if (!file->out)
        return;
    fclose(file->out);
    file->out = NULL;
    unlink(file->temp_path);
}

/* ==========================================================================
 * Flags
 * ======================================================================== */

int cli_flag_index(const char *flags, const char *name, size_t name_len, bool *repeatable)
{
    int index = 0;
    for (const char *f = flags; *f; index++) {
        size_t len = strcspn(f, " ");
        bool star = f[len - 1] == '*';
        size_t bare = star ? len - 1 : len;
        if (bare == name_len && strncmp(f, name, name_len) == 0) {
            if (repeatable)
                *repeatable = star;
            return index;
        }
        f += len;
        while (*f == ' ')
            f++;
    }
    return -1;
}

bool cli_flag_split(const char *arg, const char **name, size_t *name_len, const char **value)
{
    *value = NULL;
    if (strcmp(arg, "-o") == 0) {
        *name = "output";
        *name_len = 6;
        return true;
    }
    if (strncmp(arg, "--", 2) != 0 || !arg[2])
        return false;
    *name = arg + 2;
    const char *eq = strchr(*name, '=');
    *name_len = eq ? (size_t)(eq - *name) : strlen(*name);
    *value = eq ? eq + 1 : NULL;
    return true;
}

const char *cli_flag_next_value(char **args, int count, int *i)
{
    if (*i + 1 >= count || strncmp(args[*i + 1], "--", 2) == 0)
        return NULL;
    return args[++*i];
}
