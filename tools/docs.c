/* passerelle docs: the document store's side of the command-line client.
 *
 * Unlike the table-driven commands of passerelle.c, a transfer is a loop of
 * requests, so each sub-command here is a function of its own:
 *
 *   put   upload.begin (size, no SHA-256), then upload.chunk of the
 *         session's chunk_max bytes read from the file, as many in flight as
 *         the session's window (the service's credit: each reply allows one
 *         more), hashing each chunk the first time it is read, then
 *         upload.commit naming the SHA-256 (a trailing checksum, as S3's
 *         x-amz-trailer: the file is read once, and its hashing overlaps
 *         the transfer instead of delaying its start). The service takes
 *         chunks in order; each reply says how far it got (received). With
 *         --hash-first the file is hashed before the begin, which names
 *         the SHA-256 (as before trailing checksums; so does the fallback
 *         for a service that refuses a begin without one). A file of at
 *         most one chunk goes whole in its upload.begin instead, with its
 *         SHA-256: one request, stored and committed by it.
 *   get   document.read by ranges, the first alone (it says the version,
 *         its size, its SHA-256 and the window), then up to the window in
 *         flight, into a temporary file beside the target, written and
 *         hashed in order as they come, renamed only when size and SHA-256
 *         match. A refusal (DATA_LOSS from a corrupt blob, a withdrawn
 *         version) leaves no file behind.
 * A reply overdue sends again, on a new socket, everything in flight (the
 * same request ids: Lazy Pirate, client.h), at most --retries times.
 *
 * Memory: a window of chunks per transfer (a put reads each chunk from the
 * file again when it must resend it); nothing holds a whole file. */
#define _GNU_SOURCE
#include "docs.h"

#include "cli_common.h"
#include "inflight.h"
#include "docstore.pb-c.h"
#include "envelope.pb-c.h"
#include "ids.h"
#include "pbjson.h"
#include "sha256.h"
#include "status.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <limits.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DOCS_DEFAULT_ENDPOINT "tcp://127.0.0.1:7404"
#define READ_LENGTH           (1024u * 1024u) /* bytes asked per document.read */
#define HASH_BUFFER           (256u * 1024u)
#define PROGRESS_MIN_BYTES    (4ull * 1024 * 1024)
#define PROGRESS_INTERVAL_S   0.1
#define MAX_TAGS              64
#define MAX_STALLS            3 /* resyncs in a row that bring no progress */
/* A file this size or smaller goes whole in its upload.begin: the service's
 * chunk size (chunk_max), which a begin's reply would tell too late. */
#define WHOLE_MAX (1024u * 1024u)

/* ==========================================================================
 * Sub-commands and their flags
 * ======================================================================== */

typedef struct docs_ctx_t docs_ctx_t;

typedef struct {
    const char *name;
    const char *usage;
    const char *summary;
    /* Flags this sub-command takes, without "--", space separated; a
     * trailing '*' marks the repeatable one. */
    const char *flags;
    int positionals; /* how many positional arguments it requires */
    int (*run)(docs_ctx_t *ctx);
} docs_command_t;

#define MAX_FLAGS 16

struct docs_ctx_t {
    const cli_options_t *opts;
    const docs_command_t *cmd;
    cli_service_t service; /* the document store */
    const char *positional[2];
    /* flag values by their position in cmd->flags; NULL when not given */
    const char *values[MAX_FLAGS];
    const char *tags[MAX_TAGS];
    size_t n_tags;
};

static int run_put(docs_ctx_t *ctx);
static int run_get(docs_ctx_t *ctx);
static int run_list(docs_ctx_t *ctx);
static int run_show(docs_ctx_t *ctx);
static int run_versions(docs_ctx_t *ctx);
static int run_withdraw(docs_ctx_t *ctx);
static int run_fsck(docs_ctx_t *ctx);

static const docs_command_t docs_commands[] = {
    {"put", "docs put FILE [flags]",
     "Publish FILE as a new document (--title, --kind, --theme required), or as\n"
     "a new version of one (--document F01..., owner party only).",
     "title kind theme territory visibility tag* document media-type filename hash-first", 1,
     run_put},
    {"get", "docs get ID [--version N] [-o FILE]",
     "Download a version (default: the latest not withdrawn), checked against\n"
     "its SHA-256, to FILE (default: its file name; '-o -': standard output).",
     "version output", 1, run_get},
    {"list", "docs list [flags]",
     "List the documents you may read, one line each; --all follows the pages.",
     "kind theme territory owner tag words page-size page-token all", 0, run_list},
    {"show", "docs show ID", "Show a document and its versions.", "", 1, run_show},
    {"versions", "docs versions ID", "List a document's versions, one line each.", "", 1,
     run_versions},
    {"withdraw", "docs withdraw ID [--version N] [--reason TEXT]",
     "Withdraw a version (default: the latest not withdrawn); its history stays.", "version reason",
     1, run_withdraw},
    {"fsck", "docs fsck",
     "Check every blob; lists corrupt, missing and orphaned ones (exit 1 if any).", "", 0,
     run_fsck},
};

#define DOCS_COMMAND_COUNT (sizeof docs_commands / sizeof docs_commands[0])

static int usage_error(const docs_command_t *cmd, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

/* "docs" or "docs <command>": what a usage error points at. */
static void help_topic(const docs_command_t *cmd, char out[32])
{
    snprintf(out, 32, "docs%s%s", cmd ? " " : "", cmd ? cmd->name : "");
}

static int usage_error(const docs_command_t *cmd, const char *format, ...)
{
    char topic[32];
    help_topic(cmd, topic);
    va_list args;
    va_start(args, format);
    int rc = cli_usage_verror(topic, format, args);
    va_end(args);
    return rc;
}

static void print_command_help(FILE *out, const docs_command_t *cmd)
{
    fprintf(out, "  %s\n", cmd->usage);
    cli_print_indented(out, cmd->summary);
    if (!*cmd->flags)
        return;
    fputs("      flags:", out);
    for (const char *f = cmd->flags; *f;) {
        size_t len = strcspn(f, " ");
        bool repeated = f[len - 1] == '*';
        fprintf(out, " --%.*s%s", (int)(repeated ? len - 1 : len), f,
                repeated ? " (repeatable)" : "");
        f += len;
        while (*f == ' ')
            f++;
    }
    fputc('\n', out);
}

void docs_print_help(FILE *out)
{
    fprintf(out, "Documents (endpoint: --endpoint, or PASSERELLE_DOCSTORE_ENDPOINT,\n"
                 "default " DOCS_DEFAULT_ENDPOINT "):\n");
    for (size_t c = 0; c < DOCS_COMMAND_COUNT; c++) {
        print_command_help(out, &docs_commands[c]);
        fputc('\n', out);
    }
    fprintf(out, "  put: --kind study|employment_housing_diagnostic|convention|amendment|\n"
                 "       minutes|annual_review|brochure|other; --theme 1|2|3; --territory\n"
                 "       CT1..CT6; --visibility shared|private. A file over 1 MiB is\n"
                 "       hashed as its chunks are sent, its SHA-256 sent with the commit;\n"
                 "       --hash-first hashes it before the upload begins instead (one more\n"
                 "       read of the file before any byte is sent). A progress bar shows on\n"
                 "       transfers above 4 MiB when standard error is a terminal.\n");
}

/* Fills ctx's positionals and flag values from args. "-o" is --output;
 * "--all" takes no value. Returns 0 or CLI_EXIT_USAGE. */
static int parse_args(docs_ctx_t *ctx, char **args, int count)
{
    const docs_command_t *cmd = ctx->cmd;
    int positionals = 0;
    for (int i = 0; i < count; i++) {
        const char *arg = args[i], *name = NULL, *value = NULL;
        size_t name_len = 0;
        if (!cli_flag_split(arg, &name, &name_len, &value)) {
            if (positionals >= cmd->positionals)
                return usage_error(cmd, "unexpected argument '%s' for 'docs %s'", arg, cmd->name);
            ctx->positional[positionals++] = arg;
            continue;
        }
        bool repeated = false;
        int index = cli_flag_index(cmd->flags, name, name_len, &repeated);
        if (index < 0 || index >= MAX_FLAGS)
            return usage_error(cmd, "unknown flag %s for 'docs %s'", arg, cmd->name);
        if ((name_len == 3 && strncmp(name, "all", 3) == 0) ||
            (name_len == 10 && strncmp(name, "hash-first", 10) == 0)) {
            if (value)
                return usage_error(cmd, "--%.*s takes no value", (int)name_len, name);
            ctx->values[index] = "";
            continue;
        }
        if (!value && !(value = cli_flag_next_value(args, count, &i)))
            return usage_error(cmd, "%s needs a value", arg);
        if (repeated) {
            /* "--tag a,b" is "--tag a --tag b" */
            for (const char *item = value;;) {
                size_t len = strcspn(item, ",");
                if (len == 0)
                    return usage_error(cmd, "%s: an empty item in '%s'", arg, value);
                if (ctx->n_tags >= MAX_TAGS)
                    return usage_error(cmd, "%s: at most %d", arg, MAX_TAGS);
                ctx->tags[ctx->n_tags++] = strndup(item, len);
                item += len;
                if (!*item)
                    break;
                item++;
            }
            ctx->values[index] = value;
            continue;
        }
        if (ctx->values[index])
            return usage_error(cmd, "%s given twice", arg);
        ctx->values[index] = value;
    }
    if (positionals < cmd->positionals)
        return usage_error(cmd, "'docs %s' needs %s", cmd->name,
                           strcmp(cmd->name, "put") == 0 ? "a FILE" : "a document ID");
    return 0;
}

/* The value of flag name, or NULL. */
static const char *flag(const docs_ctx_t *ctx, const char *name)
{
    int index = cli_flag_index(ctx->cmd->flags, name, strlen(name), NULL);
    return index < 0 ? NULL : ctx->values[index];
}

static bool parse_u64(const char *text, uint64_t min, uint64_t max, uint64_t *out)
{
    if (!text || !isdigit((unsigned char)*text))
        return false;
    char *end;
    errno = 0;
    unsigned long long value = strtoull(text, &end, 10);
    if (errno || *end || value < min || value > max)
        return false;
    *out = value;
    return true;
}

/* An enum value by its short name ("study") or full name, any case
 * (pbjson_enum_value); false for the unspecified one or an unknown word. */
static bool enum_parse(const ProtobufCEnumDescriptor *desc, const char *text, int *out)
{
    int value = 0;
    if (!pbjson_enum_value(desc, text, &value) || value == 0)
        return false;
    *out = value;
    return true;
}

/* The short enum name in lower case, into out. */
static const char *enum_word(const ProtobufCEnumDescriptor *desc, int value, char *out,
                             size_t out_size)
{
    const char *name = pbjson_enum_name(desc, value);
    if (!name || value == 0)
        name = "-";
    size_t i = 0;
    for (; name[i] && i + 1 < out_size; i++)
        out[i] = (char)tolower((unsigned char)name[i]);
    out[i] = '\0';
    return out;
}

/* ==========================================================================
 * Calls
 * ======================================================================== */

/* One request, with a fresh idempotency key each (a transfer's chunks are
 * distinct writes): cli_service_call. */
static int docs_call(docs_ctx_t *ctx, const char *type, const ProtobufCMessage *request,
                     const ProtobufCMessageDescriptor *reply_desc, ProtobufCMessage **result_p,
                     int *status_out)
{
    return cli_service_call(&ctx->service, type, request, NULL, reply_desc, result_p, status_out);
}

/* ==========================================================================
 * Readable output
 * ======================================================================== */

static void human_size(uint64_t bytes, char *out, size_t out_size)
{
    if (bytes < 1024)
        snprintf(out, out_size, "%llu B", (unsigned long long)bytes);
    else if (bytes < 1024ull * 1024)
        snprintf(out, out_size, "%.1f KiB", (double)bytes / 1024.0);
    else if (bytes < 1024ull * 1024 * 1024)
        snprintf(out, out_size, "%.1f MiB", (double)bytes / (1024.0 * 1024.0));
    else
        snprintf(out, out_size, "%.2f GiB", (double)bytes / (1024.0 * 1024.0 * 1024.0));
}

static const char *text_or(const char *text, const char *fallback)
{
    return text && *text ? text : fallback;
}

/* id, kind, theme, territory, owner, visibility, title, then the latest
 * version: number, size, the start of its SHA-256. */
static void print_summary(FILE *out, const Passerelle__Document *doc)
{
    char kind[64], visibility[32], size[32];
    enum_word(&passerelle__document_kind__descriptor, doc->kind, kind, sizeof kind);
    enum_word(&passerelle__visibility__descriptor, doc->visibility, visibility, sizeof visibility);
    fprintf(out, "%s  %s  theme %u  %s  %s  %s  \"%s\"", text_or(doc->id, "-"), kind, doc->theme,
            text_or(doc->territory, "all"), text_or(doc->owner, "-"), visibility,
            text_or(doc->title, ""));
    if (doc->n_versions) {
        const Passerelle__DocumentVersion *v = doc->versions[doc->n_versions - 1];
        human_size(v->size, size, sizeof size);
        fprintf(out, "  v%u %s sha256:%.12s%s", v->number, size, text_or(v->sha256, "-"),
                v->withdrawn ? " (withdrawn)" : "");
    }
    fputc('\n', out);
}

static void print_version(FILE *out, const Passerelle__DocumentVersion *v, const char *indent)
{
    char size[32];
    human_size(v->size, size, sizeof size);
    fprintf(out, "%sv%u  %s  %s  %s  %s  %s  by %s", indent, v->number, text_or(v->added_at, "-"),
            size, text_or(v->sha256, "-"), text_or(v->filename, "-"), text_or(v->media_type, "-"),
            text_or(v->added_by, "-"));
    if (v->withdrawn)
        fprintf(out, "  WITHDRAWN %s%s%s", text_or(v->withdrawn_at, ""),
                v->withdrawal_reason && *v->withdrawal_reason ? ": " : "",
                text_or(v->withdrawal_reason, ""));
    fputc('\n', out);
}

static void print_document(FILE *out, const Passerelle__Document *doc)
{
    print_summary(out, doc);
    if (doc->n_tags) {
        fputs("  tags:", out);
        for (size_t i = 0; i < doc->n_tags; i++)
            fprintf(out, "%s%s", i ? ", " : " ", doc->tags[i]);
        fputc('\n', out);
    }
    fprintf(out, "  created: %s  updated: %s\n", text_or(doc->created_at, "-"),
            text_or(doc->updated_at, "-"));
    fprintf(out, "  versions:\n");
    for (size_t i = 0; i < doc->n_versions; i++)
        print_version(out, doc->versions[i], "    ");
}

/* How put, show and withdraw print the document they end with. */
static void output_document(const docs_ctx_t *ctx, const Passerelle__Document *doc)
{
    if (ctx->opts->id_only)
        printf("%s\n", text_or(doc->id, ""));
    else if (ctx->opts->json)
        cli_print_message_json(&doc->base);
    else
        print_document(stdout, doc);
}

/* ==========================================================================
 * Progress bar
 * ======================================================================== */

typedef struct {
    bool on;
    const char *label;
    uint64_t total;
    double started_s;
    double drawn_s;
} progress_t;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Only above a few megabytes, and only for a person watching: a log file
 * or a pipe gets no carriage returns. */
static void progress_start(progress_t *p, const char *label, uint64_t total)
{
    memset(p, 0, sizeof *p);
    p->on = total > PROGRESS_MIN_BYTES && isatty(STDERR_FILENO);
    p->label = label;
    p->total = total;
    p->started_s = now_s();
}

static void progress_draw(progress_t *p, uint64_t done, bool force)
{
    if (!p->on)
        return;
    double now = now_s();
    if (!force && now - p->drawn_s < PROGRESS_INTERVAL_S)
        return;
    p->drawn_s = now;
    enum { WIDTH = 30 };
    unsigned filled = p->total ? (unsigned)((double)done / (double)p->total * WIDTH) : WIDTH;
    char bar[WIDTH + 1];
    for (unsigned i = 0; i < WIDTH; i++)
        bar[i] = i < filled ? '#' : '.';
    bar[WIDTH] = '\0';
    char done_text[32], total_text[32], rate_text[32];
    human_size(done, done_text, sizeof done_text);
    human_size(p->total, total_text, sizeof total_text);
    double elapsed = now - p->started_s;
    human_size(elapsed > 0 ? (uint64_t)((double)done / elapsed) : 0, rate_text, sizeof rate_text);
    fprintf(stderr, "\r%s [%s] %3u%%  %s / %s  %s/s ", p->label, bar,
            p->total ? (unsigned)(done * 100 / p->total) : 100, done_text, total_text, rate_text);
    fflush(stderr);
}

static void progress_end(progress_t *p, uint64_t done)
{
    if (!p->on)
        return;
    progress_draw(p, done, true);
    fputc('\n', stderr);
    p->on = false;
}

/* ==========================================================================
 * Several requests in flight
 * ======================================================================== */

/* After a wait that brought no reply: one more attempt, on a new socket,
 * unless the retries are spent (then says so and returns the exit code). */
static int transfer_timeout(docs_ctx_t *ctx, int *attempts)
{
    if (++*attempts > ctx->opts->retries) {
        long tries = ctx->opts->retries + 1;
        fprintf(stderr, "error: UNAVAILABLE: no reply from %s after %ld attempt%s\n",
                ctx->service.endpoint, tries, tries > 1 ? "s" : "");
        return CLI_EXIT_UNREACHABLE;
    }
    client_reopen(ctx->service.client);
    return 0;
}

/* ==========================================================================
 * put
 * ======================================================================== */

/* A media type from the file name's extension; the service keeps it to
 * hand back on download. */
static const char *media_type_guess(const char *filename)
{
    static const struct {
        const char *ext;
        const char *type;
    } types[] = {
        {"pdf", "application/pdf"},
        {"odt", "application/vnd.oasis.opendocument.text"},
        {"ods", "application/vnd.oasis.opendocument.spreadsheet"},
        {"doc", "application/msword"},
        {"docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"},
        {"xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"},
        {"pptx", "application/vnd.openxmlformats-officedocument.presentationml.presentation"},
        {"csv", "text/csv"},
        {"txt", "text/plain"},
        {"md", "text/markdown"},
        {"html", "text/html"},
        {"json", "application/json"},
        {"png", "image/png"},
        {"jpg", "image/jpeg"},
        {"jpeg", "image/jpeg"},
        {"svg", "image/svg+xml"},
        {"zip", "application/zip"},
    };
    const char *dot = strrchr(filename, '.');
    if (dot)
        for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
            if (strcasecmp(dot + 1, types[i].ext) == 0)
                return types[i].type;
    return "application/octet-stream";
}

/* SHA-256 of the whole file, read from the start in HASH_BUFFER pieces.
 * Returns 0, or -1 with errno. */
static int hash_file(int fd, uint64_t size, char hex[65])
{
    unsigned char *buf = malloc(HASH_BUFFER);
    if (!buf)
        return -1;
    sha256_t *hash = sha256_new();
    if (!hash) {
        free(buf);
        errno = ENOMEM;
        return -1;
    }
    uint64_t offset = 0;
    while (offset < size) {
        size_t want = size - offset < HASH_BUFFER ? (size_t)(size - offset) : HASH_BUFFER;
        ssize_t got = pread(fd, buf, want, (off_t)offset);
        if (got <= 0) {
            if (got == 0)
                errno = EIO; /* the file shrank under us */
            sha256_destroy(&hash);
            free(buf);
            return -1;
        }
        sha256_update(hash, buf, (size_t)got);
        offset += (uint64_t)got;
    }
    free(buf);
    int rc = sha256_final_hex(hash, hex);
    sha256_destroy(&hash);
    if (rc < 0)
        errno = EIO;
    return rc;
}

/* The SHA-256 of the file as its chunks are read to be sent, for the
 * commit to name (a trailing checksum). Bytes are hashed once, in order:
 * a chunk read again (a resend, a resync that went back) is not fed again,
 * and one read past what is hashed (the service said it held more than was
 * sent in this run) first has the gap read and hashed, so the digest is the
 * file's whatever the transfer went through. NULL hash: nothing to do (the
 * begin named the SHA-256). */
typedef struct {
    sha256_t *hash;
    uint64_t hashed; /* bytes [0, hashed) fed, in order */
} trailing_hash_t;

/* Reads and hashes [t->hashed, end) with buf (of buf_size bytes) as the
 * scratch. Returns 0, or -1 with errno. */
static int trailing_catch_up(trailing_hash_t *t, int fd, unsigned char *buf, size_t buf_size,
                             uint64_t end)
{
    while (t->hash && t->hashed < end) {
        size_t want = end - t->hashed < buf_size ? (size_t)(end - t->hashed) : buf_size;
        ssize_t got = pread(fd, buf, want, (off_t)t->hashed);
        if (got <= 0) {
            if (got == 0)
                errno = EIO; /* the file shrank under us */
            return -1;
        }
        sha256_update(t->hash, buf, (size_t)got);
        t->hashed += (uint64_t)got;
    }
    return 0;
}

/* Feeds the chunk [offset, offset + len) just read into buf if it is the
 * next to hash. */
static void trailing_feed(trailing_hash_t *t, const unsigned char *buf, uint64_t offset, size_t len)
{
    if (t->hash && offset == t->hashed) {
        sha256_update(t->hash, buf, len);
        t->hashed += len;
    }
}

/* Fills the begin request from the flags. Returns 0 or CLI_EXIT_USAGE. */
static int put_request(docs_ctx_t *ctx, Passerelle__UploadBeginRequest *req)
{
    const docs_command_t *cmd = ctx->cmd;
    const char *document = flag(ctx, "document");
    const char *title = flag(ctx, "title"), *kind = flag(ctx, "kind"), *theme = flag(ctx, "theme"),
               *visibility = flag(ctx, "visibility");
    if (document) {
        req->document = (char *)document;
    } else {
        if (!title || !*title)
            return usage_error(cmd, "--title is required for a new document");
        if (!kind)
            return usage_error(cmd, "--kind is required for a new document");
        if (!theme)
            return usage_error(cmd, "--theme is required for a new document");
    }
    if (title)
        req->title = (char *)title;
    if (kind) {
        int value;
        if (!enum_parse(&passerelle__document_kind__descriptor, kind, &value))
            return usage_error(cmd, "--kind: '%s' is not a document kind", kind);
        req->has_kind = true;
        req->kind = (Passerelle__DocumentKind)value;
    }
    if (theme) {
        uint64_t value;
        if (!parse_u64(theme, 1, 3, &value))
            return usage_error(cmd, "--theme: '%s' is not 1, 2 or 3", theme);
        req->has_theme = true;
        req->theme = (uint32_t)value;
    }
    if (flag(ctx, "territory"))
        req->territory = (char *)flag(ctx, "territory");
    if (visibility) {
        int value;
        if (!enum_parse(&passerelle__visibility__descriptor, visibility, &value))
            return usage_error(cmd, "--visibility: '%s' is not shared or private", visibility);
        req->has_visibility = true;
        req->visibility = (Passerelle__Visibility)value;
    }
    req->n_tags = ctx->n_tags;
    req->tags = (char **)ctx->tags;
    return 0;
}

/* Sends one chunk [offset, offset + len) of the file under the slot's
 * request id (kept for a resend), hashing it if it comes next (trailing,
 * whose buffer buf is too: buf holds chunk_max bytes). 0, or the exit
 * code. */
static int chunk_send(docs_ctx_t *ctx, int fd, const char *upload_id, unsigned char *buf,
                      size_t buf_size, trailing_hash_t *trailing, const inflight_t *slot)
{
    if (trailing_catch_up(trailing, fd, buf, buf_size, slot->offset) != 0) {
        fprintf(stderr, "error: cannot read the file to hash it: %s\n", strerror(errno));
        return CLI_EXIT_REPLY_ERROR;
    }
    ssize_t got = pread(fd, buf, slot->len, (off_t)slot->offset);
    if (got != (ssize_t)slot->len) {
        fprintf(stderr, "error: cannot read the file at offset %llu: %s\n",
                (unsigned long long)slot->offset, got < 0 ? strerror(errno) : "it shrank");
        return CLI_EXIT_REPLY_ERROR;
    }
    trailing_feed(trailing, buf, slot->offset, slot->len);
    Passerelle__UploadChunkRequest chunk = PASSERELLE__UPLOAD_CHUNK_REQUEST__INIT;
    chunk.upload_id = (char *)upload_id;
    chunk.has_offset = true;
    chunk.offset = slot->offset;
    chunk.has_data = true;
    chunk.data.data = buf;
    chunk.data.len = slot->len;
    /* Not queued: the socket is down; the wait for the reply times out and
     * sends it again. */
    (void)client_send_request(ctx->service.client, slot->request_id, "upload.chunk", &chunk.base,
                              NULL);
    return 0;
}

/* Where the upload stands, asked the one way that is always accepted: its
 * first byte again (a repeat, or the first write). 0 with *received, or the
 * exit code. */
static int chunk_resync(docs_ctx_t *ctx, int fd, const char *upload_id, uint64_t *received)
{
    unsigned char first;
    if (pread(fd, &first, 1, 0) != 1) {
        fprintf(stderr, "error: cannot read the file: %s\n", strerror(errno));
        return CLI_EXIT_REPLY_ERROR;
    }
    Passerelle__UploadChunkRequest chunk = PASSERELLE__UPLOAD_CHUNK_REQUEST__INIT;
    chunk.upload_id = (char *)upload_id;
    chunk.has_offset = chunk.has_data = true;
    chunk.offset = 0;
    chunk.data.data = &first;
    chunk.data.len = 1;
    ProtobufCMessage *result = NULL;
    int rc = docs_call(ctx, "upload.chunk", &chunk.base, &passerelle__upload_session__descriptor,
                       &result, NULL);
    if (rc)
        return rc;
    *received = ((Passerelle__UploadSession *)result)->received;
    protobuf_c_message_free_unpacked(result, NULL);
    return 0;
}

/* Sends the file from session->received (with ask_first, from where the
 * service says the upload stands) to its end, up to the session's window
 * of chunks in flight: each reply is the credit for one more. The service
 * takes chunks in order only, so when one is refused as not the next (the
 * service restarted and holds less than it acknowledged, or a chunk before
 * it failed), or the service is stopping, the chunks in flight are given
 * up and the upload goes on from where the service says it stands
 * (chunk_resync). Each chunk read the first time feeds trailing; at the
 * end trailing has hashed the whole file. Returns 0 or the exit code. */
static int put_chunks(docs_ctx_t *ctx, int fd, uint64_t size, const Passerelle__UploadSession *s,
                      bool ask_first, trailing_hash_t *trailing)
{
    if (size == 0)
        return 0;
    if (s->chunk_max == 0 || !s->upload_id) {
        fprintf(stderr, "error: INTERNAL: the upload session has no chunk_max or upload_id\n");
        return CLI_EXIT_REPLY_ERROR;
    }
    unsigned char *buf = malloc(s->chunk_max);
    if (!buf) {
        fprintf(stderr, "error: out of memory for a chunk of %u bytes\n", s->chunk_max);
        return CLI_EXIT_REPLY_ERROR;
    }
    unsigned window = inflight_window(s->has_window, s->window);
    inflight_t slots[INFLIGHT_MAX];
    memset(slots, 0, sizeof slots);
    progress_t progress;
    progress_start(&progress, "put", size);
    uint64_t next = s->received, acked = s->received;
    int rc = 0, stalls = 0, attempts = 0;
    if (ask_first) {
        rc = chunk_resync(ctx, fd, s->upload_id, &acked);
        next = acked;
    }
    while (rc == 0 && acked < size) {
        inflight_t *slot;
        while (rc == 0 && (slot = inflight_take(slots, window, &next, size, s->chunk_max)))
            rc = chunk_send(ctx, fd, s->upload_id, buf, s->chunk_max, trailing, slot);
        if (rc)
            break;
        Passerelle__Reply *reply = NULL;
        if (client_receive_reply(ctx->service.client, 0, &reply) != 0) {
            /* Overdue: a new socket, and everything in flight again. */
            rc = transfer_timeout(ctx, &attempts);
            for (unsigned i = 0; rc == 0 && i < window; i++)
                if (slots[i].used)
                    rc = chunk_send(ctx, fd, s->upload_id, buf, s->chunk_max, trailing, &slots[i]);
            continue;
        }
        slot = inflight_find(slots, window, reply->request_id);
        if (!slot) { /* the answer to a chunk given up on */
            passerelle__reply__free_unpacked(reply, NULL);
            continue;
        }
        inflight_clear(slot);
        attempts = 0;
        bool resync = false;
        if (reply->status == PASSERELLE__STATUS__STATUS_OK) {
            Passerelle__UploadSession *ack =
                passerelle__upload_session__unpack(NULL, reply->body.len, reply->body.data);
            if (!ack || ack->received > size) {
                fprintf(stderr, "error: INTERNAL: %s\n",
                        ack ? "the service says it received more than the file holds"
                            : "a chunk's reply does not decode");
                rc = CLI_EXIT_REPLY_ERROR;
            } else if (ack->received > acked) {
                acked = ack->received;
                stalls = 0;
            }
            if (ack)
                passerelle__upload_session__free_unpacked(ack, NULL);
        } else if (reply->status == PASSERELLE__STATUS__STATUS_UNAVAILABLE ||
                   (reply->status == PASSERELLE__STATUS__STATUS_INVALID_ARGUMENT && reply->field &&
                    strcmp(reply->field, "offset") == 0)) {
            resync = true;
        } else {
            cli_print_reply_error(reply);
            rc = CLI_EXIT_REPLY_ERROR;
        }
        passerelle__reply__free_unpacked(reply, NULL);
        if (resync) {
            for (unsigned i = 0; i < window; i++)
                inflight_clear(&slots[i]);
            uint64_t received = 0;
            rc = chunk_resync(ctx, fd, s->upload_id, &received);
            if (rc == 0 && received > size) {
                fprintf(stderr,
                        "error: INTERNAL: the service says it received %llu bytes of "
                        "%llu\n",
                        (unsigned long long)received, (unsigned long long)size);
                rc = CLI_EXIT_REPLY_ERROR;
            }
            if (rc == 0 && received <= acked && ++stalls >= MAX_STALLS) {
                fprintf(stderr, "error: the upload makes no progress at offset %llu\n",
                        (unsigned long long)received);
                rc = CLI_EXIT_REPLY_ERROR;
            } else if (received > acked) {
                stalls = 0;
            }
            next = acked = received;
        }
        progress_draw(&progress, acked, false);
    }
    /* Bytes the service held without this run sending them (it said so
     * at the start) are hashed here: the commit names the whole file's. */
    if (rc == 0 && trailing_catch_up(trailing, fd, buf, s->chunk_max, size) != 0) {
        fprintf(stderr, "error: cannot read the file to hash it: %s\n", strerror(errno));
        rc = CLI_EXIT_REPLY_ERROR;
    }
    if (rc == 0)
        progress_end(&progress, acked);
    else if (progress.on)
        fputc('\n', stderr);
    for (unsigned i = 0; i < window; i++)
        inflight_clear(&slots[i]);
    free(buf);
    return rc;
}

/* Prints the document a put made or extended. */
static int put_show(docs_ctx_t *ctx, const char *document)
{
    if (ctx->opts->id_only) {
        printf("%s\n", document);
        return 0;
    }
    Passerelle__DocumentGetRequest get = PASSERELLE__DOCUMENT_GET_REQUEST__INIT;
    get.id = (char *)document;
    ProtobufCMessage *doc = NULL;
    int rc =
        docs_call(ctx, "document.get", &get.base, &passerelle__document__descriptor, &doc, NULL);
    if (rc == 0) {
        output_document(ctx, (Passerelle__Document *)doc);
        protobuf_c_message_free_unpacked(doc, NULL);
    }
    return rc;
}

/* Commits the upload, naming sha (NULL: the begin named it), then prints
 * the document it made or extended (the commit answers with the session,
 * which names it). A commit refused because the service holds less than
 * the whole file (it restarted after a reboot of its machine, and lost the
 * chunks since it last recorded them) is said in *short_out instead of as
 * an error: the caller sends the rest and commits again. Returns 0 or the
 * exit code. */
static int put_commit(docs_ctx_t *ctx, const char *upload_id, const char *sha, bool *short_out)
{
    *short_out = false;
    Passerelle__UploadCommitRequest commit = PASSERELLE__UPLOAD_COMMIT_REQUEST__INIT;
    commit.upload_id = (char *)upload_id;
    commit.sha256 = (char *)sha;
    Passerelle__Reply *reply = NULL;
    if (client_call(ctx->service.client, "upload.commit", &commit.base, NULL, &reply) != 0) {
        long tries = ctx->opts->retries + 1;
        fprintf(stderr, "error: UNAVAILABLE: no reply from %s after %ld attempt%s\n",
                ctx->service.endpoint, tries, tries > 1 ? "s" : "");
        return CLI_EXIT_UNREACHABLE;
    }
    int rc = 0;
    Passerelle__UploadSession *done = NULL;
    /* FAILED_PRECONDITION on upload_id: the bytes are not all there. */
    if (reply->status == PASSERELLE__STATUS__STATUS_FAILED_PRECONDITION && reply->field &&
        strcmp(reply->field, "upload_id") == 0) {
        *short_out = true;
    } else if (reply->status != PASSERELLE__STATUS__STATUS_OK) {
        cli_print_reply_error(reply);
        rc = CLI_EXIT_REPLY_ERROR;
    } else if (!(done =
                     passerelle__upload_session__unpack(NULL, reply->body.len, reply->body.data)) ||
               !done->document || !*done->document) {
        fprintf(stderr, "error: INTERNAL: upload %s committed without a document\n", upload_id);
        rc = CLI_EXIT_REPLY_ERROR;
    } else {
        rc = put_show(ctx, done->document);
    }
    if (done)
        passerelle__upload_session__free_unpacked(done, NULL);
    passerelle__reply__free_unpacked(reply, NULL);
    return rc;
}

/* A file of at most WHOLE_MAX bytes, read whole and hashed in one pass,
 * for its upload.begin to carry. NULL (errno set) if it cannot be read. */
static unsigned char *read_whole(int fd, uint64_t size, char sha[65])
{
    unsigned char *buf = malloc(size ? (size_t)size : 1);
    if (!buf)
        return NULL;
    for (uint64_t done = 0; done < size;) {
        ssize_t got = pread(fd, buf + done, (size_t)(size - done), (off_t)done);
        if (got <= 0) {
            if (got == 0)
                errno = EIO; /* the file shrank under us */
            free(buf);
            return NULL;
        }
        done += (uint64_t)got;
    }
    if (sha256_hex(buf, (size_t)size, sha) != 0) {
        free(buf);
        errno = EIO;
        return NULL;
    }
    return buf;
}

/* Sends the begin. A begin without a SHA-256 refused for lacking one (a
 * service that predates trailing checksums) is said in *wants_sha instead
 * of as an error: the caller hashes the file first and begins again.
 * Returns 0 with *session_p (the caller frees it), or the exit code. */
static int put_begin(docs_ctx_t *ctx, const Passerelle__UploadBeginRequest *begin,
                     Passerelle__UploadSession **session_p, bool *wants_sha)
{
    *session_p = NULL;
    *wants_sha = false;
    Passerelle__Reply *reply = NULL;
    if (client_call(ctx->service.client, "upload.begin", &begin->base, NULL, &reply) != 0) {
        long tries = ctx->opts->retries + 1;
        fprintf(stderr, "error: UNAVAILABLE: no reply from %s after %ld attempt%s\n",
                ctx->service.endpoint, tries, tries > 1 ? "s" : "");
        return CLI_EXIT_UNREACHABLE;
    }
    int rc = 0;
    if (!begin->sha256 && reply->status == PASSERELLE__STATUS__STATUS_INVALID_ARGUMENT &&
        reply->field && strcmp(reply->field, "sha256") == 0) {
        *wants_sha = true;
    } else if (reply->status != PASSERELLE__STATUS__STATUS_OK) {
        cli_print_reply_error(reply);
        rc = CLI_EXIT_REPLY_ERROR;
    } else if (!(*session_p = passerelle__upload_session__unpack(
                     NULL, reply->has_body ? reply->body.len : 0, reply->body.data))) {
        fprintf(stderr, "error: INTERNAL: the reply to upload.begin does not decode\n");
        rc = CLI_EXIT_REPLY_ERROR;
    }
    passerelle__reply__free_unpacked(reply, NULL);
    return rc;
}

static int run_put(docs_ctx_t *ctx)
{
    const char *path = ctx->positional[0];
    Passerelle__UploadBeginRequest begin = PASSERELLE__UPLOAD_BEGIN_REQUEST__INIT;
    int rc = put_request(ctx, &begin);
    if (rc)
        return rc;

    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return usage_error(ctx->cmd, "FILE: cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return usage_error(ctx->cmd, "FILE: '%s' is not a regular file", path);
    }
    uint64_t size = (uint64_t)st.st_size;
    /* A small file is read and hashed whole for its begin; a larger one is
     * hashed as it is sent (trailing), unless asked first. */
    bool hash_first = flag(ctx, "hash-first") != NULL;
    char sha[65] = "";
    unsigned char *whole = NULL;
    bool unreadable = size <= WHOLE_MAX ? !(whole = read_whole(fd, size, sha))
                                        : hash_first && hash_file(fd, size, sha) != 0;
    if (unreadable) {
        fprintf(stderr, "error: cannot read '%s': %s\n", path, strerror(errno));
        close(fd);
        return CLI_EXIT_REPLY_ERROR;
    }

    char *path_copy = strdup(path);
    const char *filename = flag(ctx, "filename");
    if (!filename)
        filename = path_copy ? basename(path_copy) : "file";
    const char *media_type = flag(ctx, "media-type");
    begin.has_size = true;
    begin.size = size;
    begin.sha256 = sha[0] ? sha : NULL;
    begin.filename = (char *)filename;
    begin.media_type = (char *)(media_type ? media_type : media_type_guess(filename));
    if (whole) {
        begin.has_data = true;
        begin.data.data = whole;
        begin.data.len = (size_t)size;
    }

    Passerelle__UploadSession *session = NULL;
    bool wants_sha = false;
    rc = put_begin(ctx, &begin, &session, &wants_sha);
    if (rc == 0 && wants_sha) {
        /* The service wants the SHA-256 before the bytes: hashed first. */
        if (hash_file(fd, size, sha) != 0) {
            fprintf(stderr, "error: cannot read '%s': %s\n", path, strerror(errno));
            rc = CLI_EXIT_REPLY_ERROR;
        } else {
            begin.sha256 = sha;
            rc = put_begin(ctx, &begin, &session, &wants_sha);
        }
    }
    free(path_copy);
    free(whole);
    if (rc) {
        close(fd);
        return rc;
    }
    trailing_hash_t trailing = {NULL, 0};
    if (session->document && *session->document) {
        /* Stored and committed by the begin itself. */
        rc = put_show(ctx, session->document);
    } else if (!begin.sha256 && !(trailing.hash = sha256_new())) {
        fprintf(stderr, "error: out of memory for the SHA-256\n");
        rc = CLI_EXIT_REPLY_ERROR;
    } else {
        /* An upload to send (or a service that predates whole documents:
         * the same, from its first byte). */
        bool short_of_bytes = false;
        rc = put_chunks(ctx, fd, size, session, false, &trailing);
        if (rc == 0 && trailing.hash && sha256_final_hex(trailing.hash, sha) != 0) {
            fprintf(stderr, "error: the SHA-256 of '%s' failed\n", path);
            rc = CLI_EXIT_REPLY_ERROR;
        }
        /* The commit names the SHA-256 when the begin did not. */
        const char *trailing_sha = trailing.hash ? sha : NULL;
        sha256_destroy(&trailing.hash);
        for (int commits = 0; rc == 0; commits++) {
            rc = put_commit(ctx, session->upload_id, trailing_sha, &short_of_bytes);
            if (rc || !short_of_bytes)
                break;
            if (commits >= MAX_STALLS) {
                fprintf(stderr, "error: the service keeps losing the bytes of upload %s\n",
                        session->upload_id);
                rc = CLI_EXIT_REPLY_ERROR;
                break;
            }
            rc = put_chunks(ctx, fd, size, session, true, &trailing);
        }
    }
    close(fd);
    passerelle__upload_session__free_unpacked(session, NULL);
    return rc;
}

/* ==========================================================================
 * get
 * ======================================================================== */

/* A file name the service gave that is safe to create in the current
 * folder: no folder part, not "." or "..", printable. */
static bool filename_safe(const char *name)
{
    if (!name || !*name || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return false;
    for (const char *p = name; *p; p++)
        if (*p == '/' || (unsigned char)*p < 0x20)
            return false;
    return strlen(name) < 256;
}

/* The download under way: where the bytes go and what they must hash to. */
typedef struct {
    FILE *out;       /* file.out, or stdout */
    cli_file_t file; /* the temporary file beside the target */
    bool to_stdout;
    sha256_t *hash; /* of the bytes written so far */
    uint64_t written;
} download_t;

static int download_write(download_t *d, const ProtobufCBinaryData *data)
{
    if (data->len && fwrite(data->data, 1, data->len, d->out) != data->len) {
        fprintf(stderr, "error: cannot write %s: %s\n",
                d->to_stdout ? "standard output" : d->file.temp_path, strerror(errno));
        return CLI_EXIT_REPLY_ERROR;
    }
    sha256_update(d->hash, data->data, data->len);
    d->written += data->len;
    return 0;
}

/* The file name of version number of doc id, for the default target:
 * a malloc'd copy, or NULL (then the id is used). */
static char *version_filename(docs_ctx_t *ctx, const char *id, uint32_t number)
{
    Passerelle__DocumentGetRequest req = PASSERELLE__DOCUMENT_GET_REQUEST__INIT;
    req.id = (char *)id;
    ProtobufCMessage *result = NULL;
    if (docs_call(ctx, "document.get", &req.base, &passerelle__document__descriptor, &result,
                  NULL) != 0)
        return NULL;
    const Passerelle__Document *doc = (const Passerelle__Document *)result;
    char *name = NULL;
    for (size_t i = 0; i < doc->n_versions; i++)
        if (doc->versions[i]->number == number && filename_safe(doc->versions[i]->filename))
            name = strdup(doc->versions[i]->filename);
    protobuf_c_message_free_unpacked(result, NULL);
    return name;
}

/* Asks for bytes [offset, offset + READ_LENGTH) of the version. */
static int read_range(docs_ctx_t *ctx, const char *id, uint32_t version, uint64_t offset,
                      Passerelle__DocumentReadReply **reply_p)
{
    Passerelle__DocumentReadRequest req = PASSERELLE__DOCUMENT_READ_REQUEST__INIT;
    req.id = (char *)id;
    if (version) {
        req.has_version = true;
        req.version = version;
    }
    req.has_offset = true;
    req.offset = offset;
    req.has_length = true;
    req.length = READ_LENGTH;
    int status = 0;
    int rc =
        docs_call(ctx, "document.read", &req.base, &passerelle__document_read_reply__descriptor,
                  (ProtobufCMessage **)reply_p, &status);
    if (status == ST_DATA_LOSS)
        fprintf(stderr, "error: the stored copy of %s is damaged; nothing was written\n", id);
    return rc;
}

/* Asks for the slot's range of the version, under its request id. */
static void range_send(docs_ctx_t *ctx, const char *id, uint32_t version, const inflight_t *slot)
{
    Passerelle__DocumentReadRequest req = PASSERELLE__DOCUMENT_READ_REQUEST__INIT;
    req.id = (char *)id;
    req.has_version = true;
    req.version = version;
    req.has_offset = true;
    req.offset = slot->offset;
    req.has_length = true;
    req.length = (uint32_t)slot->len;
    /* Not queued: the socket is down; the wait times out and asks again. */
    (void)client_send_request(ctx->service.client, slot->request_id, "document.read", &req.base,
                              NULL);
}

/* The ranges after the first, up to window of them in flight (the credit
 * the first reply gave); each reply is kept until the bytes before it are
 * written, so the file and its hash take them in order. Returns 0 or the
 * exit code. */
static int get_ranges(docs_ctx_t *ctx, download_t *d, const char *id, uint32_t number,
                      uint64_t size, unsigned window, progress_t *progress)
{
    inflight_t slots[INFLIGHT_MAX];
    memset(slots, 0, sizeof slots);
    uint64_t next = d->written;
    int rc = 0, attempts = 0;
    while (rc == 0 && d->written < size) {
        inflight_t *slot;
        while ((slot = inflight_take(slots, window, &next, size, READ_LENGTH)))
            range_send(ctx, id, number, slot);
        Passerelle__Reply *reply = NULL;
        if (client_receive_reply(ctx->service.client, 0, &reply) != 0) {
            rc = transfer_timeout(ctx, &attempts);
            for (unsigned i = 0; rc == 0 && i < window; i++)
                if (slots[i].used && !slots[i].range)
                    range_send(ctx, id, number, &slots[i]);
            continue;
        }
        slot = inflight_find(slots, window, reply->request_id);
        if (!slot || slot->range) { /* given up on, or answered twice */
            passerelle__reply__free_unpacked(reply, NULL);
            continue;
        }
        if (reply->status == PASSERELLE__STATUS__STATUS_OK) {
            attempts = 0;
            Passerelle__DocumentReadReply *range =
                passerelle__document_read_reply__unpack(NULL, reply->body.len, reply->body.data);
            if (!range || range->offset != slot->offset || range->version != number ||
                range->data.len != slot->len) {
                fprintf(stderr,
                        "error: INTERNAL: asked for %zu bytes at offset %llu of version %u, "
                        "got something else\n",
                        slot->len, (unsigned long long)slot->offset, number);
                if (range)
                    protobuf_c_message_free_unpacked(&range->base, NULL);
                rc = CLI_EXIT_REPLY_ERROR;
            } else {
                slot->range = range;
            }
        } else if (reply->status == PASSERELLE__STATUS__STATUS_UNAVAILABLE &&
                   ++slot->unavailable > ctx->opts->retries) {
            /* Its store down for longer than the retries: say so, as
             * client_call would, rather than ask for ever. */
            cli_print_reply_error(reply);
            rc = CLI_EXIT_UNREACHABLE;
        } else if (reply->status == PASSERELLE__STATUS__STATUS_UNAVAILABLE) {
            /* The service is stopping, or its store is down: ask again in a
             * moment, as client_call would. */
            struct timespec pause = {0, 200 * 1000000L};
            nanosleep(&pause, NULL);
            id_new('Q', slot->request_id);
            range_send(ctx, id, number, slot);
        } else {
            if (reply->status == PASSERELLE__STATUS__STATUS_DATA_LOSS)
                fprintf(stderr, "error: the stored copy of %s is damaged; nothing was written\n",
                        id);
            cli_print_reply_error(reply);
            rc = CLI_EXIT_REPLY_ERROR;
        }
        passerelle__reply__free_unpacked(reply, NULL);
        /* Whatever is next in the file and has come, in order. */
        for (bool wrote = true; rc == 0 && wrote;) {
            wrote = false;
            for (unsigned i = 0; rc == 0 && i < window; i++) {
                if (!slots[i].used || !slots[i].range || slots[i].offset != d->written)
                    continue;
                rc = download_write(d, &slots[i].range->data);
                inflight_clear(&slots[i]);
                progress_draw(progress, d->written, false);
                wrote = true;
            }
        }
    }
    for (unsigned i = 0; i < window; i++)
        inflight_clear(&slots[i]);
    return rc;
}

static int run_get(docs_ctx_t *ctx)
{
    const char *id = ctx->positional[0];
    const char *version_text = flag(ctx, "version"), *target = flag(ctx, "output");
    uint64_t version = 0;
    if (version_text && !parse_u64(version_text, 1, UINT32_MAX, &version))
        return usage_error(ctx->cmd, "--version: '%s' is not a version number", version_text);
    if (target && !*target)
        return usage_error(ctx->cmd, "-o: an empty file name");

    /* The first range says which version the default is, its size and its
     * SHA-256; the following ones ask for that version by number, so a
     * version added meanwhile cannot mix into this download. */
    Passerelle__DocumentReadReply *first = NULL;
    int rc = read_range(ctx, id, (uint32_t)version, 0, &first);
    if (rc)
        return rc;
    uint32_t number = first->version;
    uint64_t size = first->size;
    char expected[65];
    snprintf(expected, sizeof expected, "%s", text_or(first->sha256, ""));

    download_t d;
    memset(&d, 0, sizeof d);
    d.hash = sha256_new();
    if (!d.hash) {
        protobuf_c_message_free_unpacked(&first->base, NULL);
        fprintf(stderr, "error: SHA-256 unavailable (out of memory or no OpenSSL provider)\n");
        return CLI_EXIT_REPLY_ERROR;
    }
    char *default_name = NULL;
    if (target && strcmp(target, "-") == 0) {
        d.to_stdout = true;
        d.out = stdout;
    } else {
        if (!target) {
            default_name = version_filename(ctx, id, number);
            target = default_name ? default_name : id;
        }
        rc = cli_file_begin(&d.file, target);
        d.out = d.file.out;
    }
    progress_t progress;
    progress_start(&progress, "get", size);
    unsigned window = inflight_window(first->has_window, first->window);
    if (rc == 0 && (first->offset != 0 || first->version != number ||
                    (first->data.len == 0 && size > 0) || first->data.len > size)) {
        fprintf(stderr, "error: INTERNAL: asked for offset 0, got %zu bytes at %llu of %u\n",
                first->data.len, (unsigned long long)first->offset, first->version);
        rc = CLI_EXIT_REPLY_ERROR;
    }
    if (rc == 0)
        rc = download_write(&d, &first->data);
    protobuf_c_message_free_unpacked(&first->base, NULL);
    if (rc == 0)
        rc = get_ranges(ctx, &d, id, number, size, window, &progress);
    if (rc == 0)
        progress_end(&progress, d.written);
    else if (progress.on)
        fputc('\n', stderr);

    if (rc == 0) {
        char got[SHA256_HEX_LEN];
        if (sha256_final_hex(d.hash, got) < 0)
            snprintf(got, sizeof got, "(SHA-256 failed)");
        if (d.written != size || strcmp(got, expected) != 0) {
            fprintf(stderr,
                    "error: DATA_LOSS: version %u of %s arrived as %llu bytes with SHA-256 %s, "
                    "expected %llu bytes with %s; nothing was written\n",
                    number, id, (unsigned long long)d.written, got, (unsigned long long)size,
                    expected);
            rc = CLI_EXIT_REPLY_ERROR;
        }
    }
    if (rc == 0 && !d.to_stdout) {
        rc = cli_file_commit(&d.file);
    } else if (d.to_stdout && fflush(stdout) != 0) {
        fprintf(stderr, "error: cannot write standard output: %s\n", strerror(errno));
        rc = CLI_EXIT_REPLY_ERROR;
    }
    if (rc)
        cli_file_discard(&d.file);
    else if (!d.to_stdout)
        fprintf(stderr, "%s: version %u, %llu bytes, sha256 %s\n", target, number,
                (unsigned long long)size, expected);
    sha256_destroy(&d.hash);
    free(default_name);
    return rc;
}

/* ==========================================================================
 * list, show, versions, withdraw, fsck
 * ======================================================================== */

static int run_list(docs_ctx_t *ctx)
{
    Passerelle__DocumentListRequest req = PASSERELLE__DOCUMENT_LIST_REQUEST__INIT;
    const char *kind = flag(ctx, "kind"), *theme = flag(ctx, "theme"),
               *page_size = flag(ctx, "page-size");
    if (kind) {
        int value;
        if (!enum_parse(&passerelle__document_kind__descriptor, kind, &value))
            return usage_error(ctx->cmd, "--kind: '%s' is not a document kind", kind);
        req.has_kind = true;
        req.kind = (Passerelle__DocumentKind)value;
    }
    if (theme) {
        uint64_t value;
        if (!parse_u64(theme, 1, 3, &value))
            return usage_error(ctx->cmd, "--theme: '%s' is not 1, 2 or 3", theme);
        req.has_theme = true;
        req.theme = (uint32_t)value;
    }
    if (page_size) {
        uint64_t value;
        if (!parse_u64(page_size, 1, 1000, &value))
            return usage_error(ctx->cmd, "--page-size: '%s' is not in 1..1000", page_size);
        req.has_page_size = true;
        req.page_size = (uint32_t)value;
    }
    if (ctx->n_tags > 1)
        return usage_error(ctx->cmd, "--tag: one tag at a time");
    req.territory = (char *)flag(ctx, "territory");
    req.owner = (char *)flag(ctx, "owner");
    req.tag = (char *)flag(ctx, "tag");
    req.words = (char *)flag(ctx, "words");
    req.page_token = (char *)flag(ctx, "page-token");
    bool all = flag(ctx, "all") != NULL;

    json_t *gathered = ctx->opts->json ? json_array() : NULL;
    char *token = NULL;
    int rc = 0;
    for (;;) {
        ProtobufCMessage *result = NULL;
        rc = docs_call(ctx, "document.list", &req.base, &passerelle__document_list__descriptor,
                       &result, NULL);
        if (rc)
            break;
        const Passerelle__DocumentList *list = (const Passerelle__DocumentList *)result;
        for (size_t i = 0; i < list->n_documents; i++) {
            if (ctx->opts->id_only)
                printf("%s\n", text_or(list->documents[i]->id, ""));
            else if (gathered)
                json_array_append_new(gathered, pbjson_from_message(&list->documents[i]->base));
            else
                print_summary(stdout, list->documents[i]);
        }
        const char *next = text_or(list->next_page_token, "");
        /* A token handed back unchanged would loop forever: stop there. */
        bool done = !all || !*next || (token && strcmp(token, next) == 0);
        if (!all && *next && !ctx->opts->id_only && !gathered)
            printf("(more: --page-token %s, or --all)\n", next);
        free(token);
        token = done ? NULL : strdup(next);
        req.page_token = token;
        if (gathered && !all && *next) {
            json_t *out = json_pack("{s:O, s:s}", "documents", gathered, "next_page_token", next);
            json_dumpf(out, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
            fputc('\n', stdout);
            json_decref(out);
            json_decref(gathered);
            gathered = NULL;
        }
        protobuf_c_message_free_unpacked(result, NULL);
        if (done)
            break;
    }
    free(token);
    if (gathered && rc == 0) {
        json_t *out = json_pack("{s:O}", "documents", gathered);
        json_dumpf(out, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        fputc('\n', stdout);
        json_decref(out);
    }
    json_decref(gathered);
    return rc;
}

static int get_document(docs_ctx_t *ctx, Passerelle__Document **doc_p)
{
    Passerelle__DocumentGetRequest req = PASSERELLE__DOCUMENT_GET_REQUEST__INIT;
    req.id = (char *)ctx->positional[0];
    return docs_call(ctx, "document.get", &req.base, &passerelle__document__descriptor,
                     (ProtobufCMessage **)doc_p, NULL);
}

static int run_show(docs_ctx_t *ctx)
{
    Passerelle__Document *doc = NULL;
    int rc = get_document(ctx, &doc);
    if (rc)
        return rc;
    output_document(ctx, doc);
    protobuf_c_message_free_unpacked(&doc->base, NULL);
    return 0;
}

static int run_versions(docs_ctx_t *ctx)
{
    Passerelle__Document *doc = NULL;
    int rc = get_document(ctx, &doc);
    if (rc)
        return rc;
    if (ctx->opts->json) {
        json_t *json = pbjson_from_message(&doc->base);
        json_t *out = json_pack(
            "{s:s, s:O}", "id", text_or(doc->id, ""), "versions",
            json_object_get(json, "versions") ? json_object_get(json, "versions") : json_array());
        json_dumpf(out, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        fputc('\n', stdout);
        json_decref(out);
        json_decref(json);
    } else {
        for (size_t i = 0; i < doc->n_versions; i++)
            if (ctx->opts->id_only)
                printf("%u\n", doc->versions[i]->number);
            else
                print_version(stdout, doc->versions[i], "");
    }
    protobuf_c_message_free_unpacked(&doc->base, NULL);
    return 0;
}

static int run_withdraw(docs_ctx_t *ctx)
{
    Passerelle__DocumentWithdrawRequest req = PASSERELLE__DOCUMENT_WITHDRAW_REQUEST__INIT;
    req.id = (char *)ctx->positional[0];
    const char *version_text = flag(ctx, "version");
    if (version_text) {
        uint64_t version;
        if (!parse_u64(version_text, 1, UINT32_MAX, &version))
            return usage_error(ctx->cmd, "--version: '%s' is not a version number", version_text);
        req.has_version = true;
        req.version = (uint32_t)version;
    }
    req.reason = (char *)flag(ctx, "reason");
    ProtobufCMessage *result = NULL;
    int rc = docs_call(ctx, "document.withdraw", &req.base, &passerelle__document__descriptor,
                       &result, NULL);
    if (rc)
        return rc;
    output_document(ctx, (Passerelle__Document *)result);
    protobuf_c_message_free_unpacked(result, NULL);
    return 0;
}

static int run_fsck(docs_ctx_t *ctx)
{
    Passerelle__FsckRequest req = PASSERELLE__FSCK_REQUEST__INIT;
    ProtobufCMessage *result = NULL;
    int rc =
        docs_call(ctx, "docs.fsck", &req.base, &passerelle__fsck_reply__descriptor, &result, NULL);
    if (rc)
        return rc;
    const Passerelle__FsckReply *fsck = (const Passerelle__FsckReply *)result;
    if (ctx->opts->json) {
        cli_print_message_json(result);
    } else {
        for (size_t i = 0; i < fsck->n_corrupt; i++)
            printf("corrupt   %s\n", fsck->corrupt[i]);
        for (size_t i = 0; i < fsck->n_missing; i++)
            printf("missing   %s\n", fsck->missing[i]);
        for (size_t i = 0; i < fsck->n_orphaned; i++)
            printf("orphaned  %s\n", fsck->orphaned[i]);
        char size[32];
        human_size(fsck->bytes_checked, size, sizeof size);
        printf("%u blobs checked (%s): %zu corrupt, %zu missing, %zu orphaned\n",
               fsck->blobs_checked, size, fsck->n_corrupt, fsck->n_missing, fsck->n_orphaned);
    }
    bool clean = fsck->n_corrupt == 0 && fsck->n_missing == 0 && fsck->n_orphaned == 0;
    protobuf_c_message_free_unpacked(result, NULL);
    return clean ? 0 : CLI_EXIT_REPLY_ERROR;
}

/* ==========================================================================
 * Entry
 * ======================================================================== */

int docs_main(const cli_options_t *opts, char **args, int count)
{
    if (count == 0) {
        if (opts->help) {
            docs_print_help(stdout);
            return CLI_EXIT_OK;
        }
        docs_print_help(stderr);
        return usage_error(NULL, "'docs' needs a command: put, get, list, show, versions, "
                                 "withdraw or fsck");
    }
    const docs_command_t *cmd = NULL;
    for (size_t c = 0; c < DOCS_COMMAND_COUNT; c++)
        if (strcmp(args[0], docs_commands[c].name) == 0)
            cmd = &docs_commands[c];
    if (!cmd)
        return usage_error(NULL,
                           "unknown command 'docs %s'; try put, get, list, show, versions, "
                           "withdraw or fsck",
                           args[0]);
    if (opts->help) {
        print_command_help(stdout, cmd);
        return CLI_EXIT_OK;
    }
    if (sodium_init() < 0) {
        fprintf(stderr, "error: libsodium cannot start\n");
        return CLI_EXIT_REPLY_ERROR;
    }

    docs_ctx_t ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.opts = opts;
    ctx.cmd = cmd;
    cli_service_init(&ctx.service, opts, "PASSERELLE_DOCSTORE_ENDPOINT", DOCS_DEFAULT_ENDPOINT);
    int rc = parse_args(&ctx, args + 1, count - 1);
    if (rc == 0) {
        char topic[32];
        help_topic(cmd, topic);
        rc = cli_service_connect(&ctx.service, topic);
    }
    if (rc == 0)
        rc = cmd->run(&ctx);
    cli_service_close(&ctx.service);
    for (size_t i = 0; i < ctx.n_tags; i++)
        free((char *)ctx.tags[i]);
    return rc;
}
