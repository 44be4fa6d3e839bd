/* passerelle-sink: a local webhook receiver, for the README's tour and the
 * tests. It accepts POSTs, checks their Standard Webhooks signature against
 * a secret if given one, answers as its mode says (ok, flaky, fail,
 * timeout, 429, 410 - switchable while it runs through a mode file), and
 * tells what it received: one readable line per request on stdout, and one
 * JSON line per request in an --out file that tests read.
 *
 * libmicrohttpd runs one thread per connection so that a request held in
 * timeout mode does not stop the others from being answered. Each request's
 * lines are written before its answer leaves, so whoever got the answer
 * finds the line already there. */
#include "ids.h"
#include "log.h"
#include "webhook.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BODY_MAX              (1024 * 1024) /* larger bodies get 413 */
#define TOLERANCE_S           300           /* the specification's five minutes */
#define DEFAULT_HOLD_MS       60000
#define DEFAULT_RETRY_AFTER_S 2
#define CONNECTION_LIMIT      256 /* one thread each: a bound on threads */
#define MODE_WORD_MAX         16
#define DRAIN_MS              2000 /* on stop, how long requests under way may take */

typedef enum {
    MODE_OK,      /* 200 */
    MODE_FLAKY,   /* odd-numbered requests 503, the others 200 */
    MODE_FAIL,    /* 500 */
    MODE_TIMEOUT, /* hold, then 200 */
    MODE_429,     /* 429 with Retry-After */
    MODE_410,     /* 410 Gone: the endpoint is no more */
} sink_mode_t;

static const struct {
    const char *name;
    sink_mode_t mode;
} mode_names[] = {
    {"ok", MODE_OK},           {"flaky", MODE_FLAKY}, {"fail", MODE_FAIL},
    {"timeout", MODE_TIMEOUT}, {"429", MODE_429},     {"410", MODE_410},
};

typedef struct {
    /* Options, fixed once the daemon runs. */
    const char *host;
    unsigned port;
    const char *secret;
    sink_mode_t mode;
    const char *mode_file;
    const char *out_path;
    int64_t hold_ms;
    int retry_after_s;
    bool quiet;

    int out_fd;                /* -1 without --out */
    pthread_mutex_t out_lock;  /* one request's lines at a time */
    atomic_uint_fast64_t seen; /* requests received so far */

    /* Held requests wait on this, and are let go at once on stop; the
     * stop waits on it for the requests under way to be answered. */
    pthread_mutex_t hold_lock;
    pthread_cond_t hold_cond;
    bool stopping;
    int active; /* requests begun and not yet completed */
} sink_t;

/* One request, from its headers to its completion; freed by
 * request_completed(). */
typedef struct {
    uint64_t n; /* 1 for the first request the sink received */
    char *body;
    size_t body_len;
    size_t body_cap;
    bool too_large;
} request_t;

/* What the lines tell of one request. */
typedef struct {
    const request_t *req;
    int64_t received_at_ms;
    const char *method;
    const char *path;
    const char *content_type;
    const char *webhook_id;
    const char *webhook_timestamp;
    const char *signature; /* verification result, or "not checked" */
    unsigned status;
    json_t *body_json; /* the body parsed, or NULL */
} exchange_t;

/* --------------------------------------------------------------------------
 * Modes
 * -------------------------------------------------------------------------- */

static bool mode_parse(const char *word, sink_mode_t *out)
{
    for (size_t i = 0; i < sizeof mode_names / sizeof mode_names[0]; i++)
        if (strcasecmp(word, mode_names[i].name) == 0) {
            *out = mode_names[i].mode;
            return true;
        }
    return false;
}

/* The mode for this request: the mode file's first word if the file exists
 * and names a mode, else --mode. Read at every request so a test can
 * switch the sink's behaviour without restarting it. */
static sink_mode_t mode_now(const sink_t *sink)
{
    if (!sink->mode_file)
        return sink->mode;
    FILE *f = fopen(sink->mode_file, "r");
    if (!f)
        return sink->mode;
    char word[MODE_WORD_MAX];
    sink_mode_t mode = sink->mode;
    if (fscanf(f, "%15s", word) == 1)
        mode_parse(word, &mode); /* a word that is no mode leaves --mode */
    fclose(f);
    return mode;
}

static unsigned mode_status(sink_mode_t mode, uint64_t n)
{
    switch (mode) {
    case MODE_OK:
    case MODE_TIMEOUT:
        return MHD_HTTP_OK;
    case MODE_FLAKY:
        return n % 2 == 1 ? MHD_HTTP_SERVICE_UNAVAILABLE : MHD_HTTP_OK;
    case MODE_FAIL:
        return MHD_HTTP_INTERNAL_SERVER_ERROR;
    case MODE_429:
        return MHD_HTTP_TOO_MANY_REQUESTS;
    case MODE_410:
        return MHD_HTTP_GONE;
    }
    return MHD_HTTP_OK;
}

/* The monotonic time delay_ms from now, for pthread_cond_timedwait. */
static struct timespec deadline_in(int64_t delay_ms)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += (time_t)(delay_ms / 1000);
    deadline.tv_nsec += (long)(delay_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    return deadline;
}

/* Waits hold_ms, or less if the sink stops meanwhile. */
static void hold(sink_t *sink)
{
    struct timespec deadline = deadline_in(sink->hold_ms);
    pthread_mutex_lock(&sink->hold_lock);
    while (!sink->stopping &&
           pthread_cond_timedwait(&sink->hold_cond, &sink->hold_lock, &deadline) != ETIMEDOUT)
        ;
    pthread_mutex_unlock(&sink->hold_lock);
}

/* --------------------------------------------------------------------------
 * Lines
 * -------------------------------------------------------------------------- */

/* A JSON string of text from the wire, which may not be UTF-8: bytes
 * jansson refuses become '?'. NULL text gives JSON null. */
static json_t *json_text(const char *text)
{
    if (!text)
        return json_null();
    json_t *value = json_string(text);
    if (value)
        return value;
    char *copy = strdup(text);
    if (!copy)
        return NULL;
    for (char *p = copy; *p; p++)
        if ((unsigned char)*p >= 0x80)
            *p = '?';
    value = json_string(copy);
    free(copy);
    return value;
}

/* The string member key of a JSON object, or NULL. */
static const char *json_member(const json_t *object, const char *key)
{
    return json_string_value(json_object_get(object, key));
}

static void write_json_line(sink_t *sink, const exchange_t *ex)
{
    const json_t *ce = json_is_object(ex->body_json) ? ex->body_json : NULL;
    json_t *line = json_object();
    if (!line)
        return;
    json_object_set_new(line, "n", json_integer((json_int_t)ex->req->n));
    json_object_set_new(line, "received_at_ms", json_integer(ex->received_at_ms));
    json_object_set_new(line, "method", json_text(ex->method));
    json_object_set_new(line, "path", json_text(ex->path));
    json_object_set_new(line, "content_type", json_text(ex->content_type));
    json_object_set_new(line, "webhook_id", json_text(ex->webhook_id));
    json_object_set_new(line, "webhook_timestamp", json_text(ex->webhook_timestamp));
    json_object_set_new(line, "signature", json_text(ex->signature));
    json_object_set_new(line, "answered", json_integer(ex->status));
    json_object_set_new(line, "id", json_text(json_member(ce, "id")));
    json_object_set_new(line, "type", json_text(json_member(ce, "type")));
    json_object_set_new(line, "subject", json_text(json_member(ce, "subject")));
    json_object_set_new(line, "time", json_text(json_member(ce, "time")));
    if (ex->body_json) {
        json_object_set(line, "body", ex->body_json);
    } else {
        /* Not JSON: the raw text, or its base64 if it is not even text
         * (JSON strings cannot hold invalid UTF-8). */
        json_t *raw = json_stringn(ex->req->body ? ex->req->body : "", ex->req->body_len);
        if (raw) {
            json_object_set_new(line, "body", raw);
        } else {
            size_t b64_size = (ex->req->body_len + 2) / 3 * 4 + 1;
            char *b64 = malloc(b64_size);
            if (b64) {
                sodium_bin2base64(b64, b64_size, (const unsigned char *)ex->req->body,
                                  ex->req->body_len, sodium_base64_VARIANT_ORIGINAL);
                json_object_set_new(line, "body", json_null());
                json_object_set_new(line, "body_base64", json_string(b64));
                free(b64);
            }
        }
    }
    char *text = json_dumps(line, JSON_COMPACT);
    json_decref(line);
    if (!text)
        return;
    size_t len = strlen(text);
    char *with_newline = realloc(text, len + 2);
    if (!with_newline) {
        free(text);
        return;
    }
    with_newline[len] = '\n';
    with_newline[len + 1] = '\0';
    /* One write(2) on an O_APPEND file: a line is never split, even by
     * another process appending to the same file. */
    ssize_t written = write(sink->out_fd, with_newline, len + 1);
    if (written != (ssize_t)(len + 1))
        log_warn("short write to the out file", "{s:s, s:s}", "path", sink->out_path, "error",
                 written < 0 ? strerror(errno) : "partial");
    free(with_newline);
}

/* "10:42:07 convention.envisaged units/U01J... signature verified -> 200";
 * a digest also says its territory and how many units it lists. */
static void print_readable_line(const exchange_t *ex)
{
    char clock[16] = "--:--:--";
    time_t now_s = (time_t)(ex->received_at_ms / 1000);
    struct tm local;
    if (localtime_r(&now_s, &local))
        strftime(clock, sizeof clock, "%H:%M:%S", &local);

    if (strcmp(ex->method, MHD_HTTP_METHOD_POST) != 0) {
        printf("%s %s %s -> %u\n", clock, ex->method, ex->path, ex->status);
    } else if (ex->req->too_large) {
        printf("%s POST %s body over %d bytes -> %u\n", clock, ex->path, BODY_MAX, ex->status);
    } else {
        const json_t *ce = json_is_object(ex->body_json) ? ex->body_json : NULL;
        const char *type = json_member(ce, "type");
        const char *subject = json_member(ce, "subject");
        char digest[96] = "";
        if (type && strcmp(type, "digest.ready") == 0) {
            const json_t *data = json_object_get(ce, "data");
            const char *territory = json_member(data, "territory");
            snprintf(digest, sizeof digest, " %.16s, %zu envisaged", territory ? territory : "-",
                     json_array_size(json_object_get(data, "envisaged")));
        }
        printf("%s %s %s%s signature %s -> %u\n", clock, type ? type : "(not a CloudEvent)",
               subject ? subject : "-", digest, ex->signature, ex->status);
    }
    fflush(stdout);
}

static void tell(sink_t *sink, const exchange_t *ex)
{
    pthread_mutex_lock(&sink->out_lock);
    if (sink->out_fd >= 0)
        write_json_line(sink, ex);
    if (!sink->quiet)
        print_readable_line(ex);
    pthread_mutex_unlock(&sink->out_lock);
}

/* --------------------------------------------------------------------------
 * HTTP
 * -------------------------------------------------------------------------- */

static enum MHD_Result answer(struct MHD_Connection *conn, unsigned status, const char *extra_name,
                              const char *extra_value)
{
    char text[64];
    snprintf(text, sizeof text, "%u\n", status);
    struct MHD_Response *response =
        MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_COPY);
    if (!response)
        return MHD_NO;
    MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain");
    if (extra_name)
        MHD_add_response_header(response, extra_name, extra_value);
    enum MHD_Result result = MHD_queue_response(conn, status, response);
    MHD_destroy_response(response);
    return result;
}

static const char *header(struct MHD_Connection *conn, const char *name)
{
    return MHD_lookup_connection_value(conn, MHD_HEADER_KIND, name);
}

/* The request is whole (or refused early): verify, decide, tell, answer. */
static enum MHD_Result respond(sink_t *sink, struct MHD_Connection *conn, const request_t *req,
                               const char *method, const char *path)
{
    exchange_t ex = {
        .req = req,
        .received_at_ms = time_now_ms(),
        .method = method,
        .path = path,
        .content_type = header(conn, MHD_HTTP_HEADER_CONTENT_TYPE),
        .webhook_id = header(conn, "webhook-id"),
        .webhook_timestamp = header(conn, "webhook-timestamp"),
        .signature = "not checked",
    };
    const char *signature_header = header(conn, "webhook-signature");

    if (strcmp(method, MHD_HTTP_METHOD_POST) != 0) {
        ex.status = MHD_HTTP_METHOD_NOT_ALLOWED;
        tell(sink, &ex);
        return answer(conn, ex.status, MHD_HTTP_HEADER_ALLOW, MHD_HTTP_METHOD_POST);
    }
    if (req->too_large) {
        ex.status = MHD_HTTP_CONTENT_TOO_LARGE;
        tell(sink, &ex);
        return answer(conn, ex.status, NULL, NULL);
    }

    if (sink->secret)
        ex.signature = webhook_verify_name(
            webhook_verify(sink->secret, ex.webhook_id, ex.webhook_timestamp, req->body,
                           req->body_len, signature_header, (int64_t)time(NULL), TOLERANCE_S));
    if (req->body_len > 0)
        ex.body_json = json_loadb(req->body, req->body_len, JSON_DECODE_ANY, NULL);

    sink_mode_t mode = mode_now(sink);
    ex.status = mode_status(mode, req->n);
    /* Told before the hold, so a test sees the request arrive without
     * waiting for the answer its sender may have given up on. */
    tell(sink, &ex);
    json_decref(ex.body_json);

    if (mode == MODE_TIMEOUT)
        hold(sink);
    if (ex.status == MHD_HTTP_TOO_MANY_REQUESTS) {
        char retry_after[16];
        snprintf(retry_after, sizeof retry_after, "%d", sink->retry_after_s);
        return answer(conn, ex.status, MHD_HTTP_HEADER_RETRY_AFTER, retry_after);
    }
    return answer(conn, ex.status, NULL, NULL);
}

/* Appends a piece of the body, up to BODY_MAX; beyond, the rest is read
 * and dropped so that the client can be told 413. */
static void body_append(request_t *req, const char *data, size_t len)
{
    if (req->too_large)
        return;
    if (len > BODY_MAX - req->body_len) {
        req->too_large = true;
        free(req->body);
        req->body = NULL;
        req->body_len = req->body_cap = 0;
        return;
    }
    if (req->body_len + len > req->body_cap) {
        size_t cap = req->body_cap ? req->body_cap : 4096;
        while (cap < req->body_len + len)
            cap *= 2;
        if (cap > BODY_MAX)
            cap = BODY_MAX;
        char *grown = realloc(req->body, cap);
        if (!grown) {
            /* Out of memory: treated as too large rather than cut. */
            req->too_large = true;
            return;
        }
        req->body = grown;
        req->body_cap = cap;
    }
    memcpy(req->body + req->body_len, data, len);
    req->body_len += len;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls)
{
    (void)version;
    sink_t *sink = cls;
    request_t *req = *req_cls;
    if (!req) {
        /* First call: headers only. */
        req = calloc(1, sizeof *req);
        if (!req)
            return MHD_NO;
        req->n = atomic_fetch_add(&sink->seen, 1) + 1;
        *req_cls = req;
        pthread_mutex_lock(&sink->hold_lock);
        sink->active++;
        pthread_mutex_unlock(&sink->hold_lock);
        /* A declared length over the limit is refused before the body is
         * sent: with "Expect: 100-continue" the client never sends it. */
        const char *length = header(conn, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (length && strcmp(method, MHD_HTTP_METHOD_POST) == 0) {
            char *end = NULL;
            errno = 0;
            unsigned long long declared = strtoull(length, &end, 10);
            if (errno == 0 && end != length && declared > BODY_MAX) {
                req->too_large = true;
                return respond(sink, conn, req, method, url);
            }
        }
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        body_append(req, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    return respond(sink, conn, req, method, url);
}

/* Called once the answer is sent (or the connection lost). */
static void request_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                              enum MHD_RequestTerminationCode code)
{
    (void)conn;
    (void)code;
    sink_t *sink = cls;
    request_t *req = *req_cls;
    if (!req)
        return;
    free(req->body);
    free(req);
    *req_cls = NULL;
    pthread_mutex_lock(&sink->hold_lock);
    sink->active--;
    pthread_cond_broadcast(&sink->hold_cond);
    pthread_mutex_unlock(&sink->hold_lock);
}

/* --------------------------------------------------------------------------
 * Options and main
 * -------------------------------------------------------------------------- */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: passerelle-sink [--port N] [--secret whsec_...] [--mode M] [--mode-file F]\n"
            "                       [--out F] [--hold-ms MS] [--retry-after S] [--host A]\n"
            "                       [--quiet]\n"
            "A local webhook receiver. Prints \"listening on http://HOST:PORT/\" first, then\n"
            "one line per request; stops on SIGINT or SIGTERM.\n"
            "  --port N         port to listen on; 0 (default) picks a free one\n"
            "  --host A         IPv4 address to listen on (default 127.0.0.1)\n"
            "  --secret S       whsec_ secret to verify signatures with (default: not checked)\n"
            "  --mode M         ok (200, default) | flaky (odd-numbered requests 503, others\n"
            "                   200) | fail (500) | timeout (hold --hold-ms, then 200) |\n"
            "                   429 (with Retry-After: --retry-after) | 410 (Gone)\n"
            "  --mode-file F    if F exists, its first word is the mode, read at every request\n"
            "  --out F          append one JSON line per request to F\n"
            "  --hold-ms MS     how long timeout mode holds a request (default %d)\n"
            "  --retry-after S  Retry-After seconds of mode 429 (default %d)\n"
            "  --quiet          no line per request on stdout\n"
            "  --new-secret     print a fresh whsec_ secret and exit\n"
            "Only POST is accepted (405 otherwise); bodies over %d bytes get 413.\n"
            "Signatures older or newer than %d seconds are out of tolerance.\n",
            DEFAULT_HOLD_MS, DEFAULT_RETRY_AFTER_S, BODY_MAX, TOLERANCE_S);
}

static bool parse_long(const char *text, long min, long max, long *out)
{
    if (!text || !*text)
        return false;
    char *end = NULL;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno != 0 || *end != '\0' || value < min || value > max)
        return false;
    *out = value;
    return true;
}

/* Fills sink from the command line; on a bad option writes why on stderr
 * and returns false. */
static bool parse_options(int argc, char *argv[], sink_t *sink)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        if (strcmp(arg, "--quiet") == 0) {
            sink->quiet = true;
            continue;
        }
        if (strcmp(arg, "--new-secret") == 0) {
            /* For a subscriber who sets the secret of its subscription
             * itself (ADMIN): the same kind the service makes. */
            char secret[WEBHOOK_SECRET_MAX];
            webhook_secret_new(secret);
            printf("%s\n", secret);
            exit(0);
        }
        const char *value = i + 1 < argc ? argv[++i] : NULL;
        long number = 0;
        if (!value) {
            fprintf(stderr, "passerelle-sink: %s needs a value\n", arg);
            return false;
        } else if (strcmp(arg, "--port") == 0) {
            if (!parse_long(value, 0, 65535, &number)) {
                fprintf(stderr, "passerelle-sink: --port: 0 to 65535, not \"%s\"\n", value);
                return false;
            }
            sink->port = (unsigned)number;
        } else if (strcmp(arg, "--host") == 0) {
            sink->host = value;
        } else if (strcmp(arg, "--secret") == 0) {
            if (!webhook_secret_valid(value)) {
                fprintf(stderr,
                        "passerelle-sink: --secret: not a whsec_ secret (whsec_ + base64 of 16 "
                        "to 64 bytes)\n");
                return false;
            }
            sink->secret = value;
        } else if (strcmp(arg, "--mode") == 0) {
            if (!mode_parse(value, &sink->mode)) {
                fprintf(stderr, "passerelle-sink: --mode: ok, flaky, fail, timeout, 429 or 410\n");
                return false;
            }
        } else if (strcmp(arg, "--mode-file") == 0) {
            sink->mode_file = value;
        } else if (strcmp(arg, "--out") == 0) {
            sink->out_path = value;
        } else if (strcmp(arg, "--hold-ms") == 0) {
            if (!parse_long(value, 0, 24L * 3600 * 1000, &number)) {
                fprintf(stderr, "passerelle-sink: --hold-ms: 0 to 86400000\n");
                return false;
            }
            sink->hold_ms = number;
        } else if (strcmp(arg, "--retry-after") == 0) {
            if (!parse_long(value, 0, 86400, &number)) {
                fprintf(stderr, "passerelle-sink: --retry-after: 0 to 86400 seconds\n");
                return false;
            }
            sink->retry_after_s = (int)number;
        } else {
            fprintf(stderr, "passerelle-sink: unknown option %s\n", arg);
            return false;
        }
    }
    return true;
}

int main(int argc, char *argv[])
{
    log_init("sink");
    static sink_t sink = {
        .host = "127.0.0.1",
        .mode = MODE_OK,
        .hold_ms = DEFAULT_HOLD_MS,
        .retry_after_s = DEFAULT_RETRY_AFTER_S,
        .out_fd = -1,
        .out_lock = PTHREAD_MUTEX_INITIALIZER,
        .hold_lock = PTHREAD_MUTEX_INITIALIZER,
    };
    if (!parse_options(argc, argv, &sink)) {
        usage(stderr);
        return 2;
    }

    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)sink.port)};
    if (inet_pton(AF_INET, sink.host, &addr.sin_addr) != 1) {
        fprintf(stderr, "passerelle-sink: --host: not an IPv4 address: %s\n", sink.host);
        return 2;
    }
    if (sink.out_path) {
        sink.out_fd = open(sink.out_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (sink.out_fd < 0) {
            log_error("cannot open the out file", "{s:s, s:s}", "path", sink.out_path, "error",
                      strerror(errno));
            return 1;
        }
    }
    /* Held requests time out on the monotonic clock: a clock step must not
     * shorten or stretch a hold. */
    pthread_condattr_t cond_attr;
    pthread_condattr_init(&cond_attr);
    pthread_condattr_setclock(&cond_attr, CLOCK_MONOTONIC);
    pthread_cond_init(&sink.hold_cond, &cond_attr);
    pthread_condattr_destroy(&cond_attr);
    tzset();

    /* The signals are blocked in every thread (the daemon's inherit the
     * mask) and taken by sigwait() below: no handler runs in the middle of
     * a request. A reader gone from stdout must not kill the sink. */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    /* A shell starts background jobs with SIGINT ignored, and an ignored
     * signal is dropped, never waited for: the sink asks for it back. */
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGPIPE, SIG_IGN);

    struct MHD_Daemon *daemon = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ERROR_LOG, 0,
        NULL, NULL, on_request, &sink, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_NOTIFY_COMPLETED, request_completed, &sink, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)CONNECTION_LIMIT, MHD_OPTION_END);
    if (!daemon) {
        log_error("cannot listen", "{s:s, s:i}", "host", sink.host, "port", (int)sink.port);
        if (sink.out_fd >= 0)
            close(sink.out_fd);
        return 1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_BIND_PORT);
    unsigned port = info ? info->port : sink.port;
    printf("listening on http://%s:%u/\n", sink.host, port);
    fflush(stdout);

    int signal_number = 0;
    while (sigwait(&stop_signals, &signal_number) != 0)
        ;

    /* Let held requests go and give the requests under way a moment to be
     * answered: MHD_stop_daemon shuts every connection down at once, so a
     * request still being answered then would get nothing. */
    pthread_mutex_lock(&sink.hold_lock);
    sink.stopping = true;
    pthread_cond_broadcast(&sink.hold_cond);
    struct timespec deadline = deadline_in(DRAIN_MS);
    while (sink.active > 0 &&
           pthread_cond_timedwait(&sink.hold_cond, &sink.hold_lock, &deadline) != ETIMEDOUT)
        ;
    pthread_mutex_unlock(&sink.hold_lock);
    MHD_stop_daemon(daemon);
    if (sink.out_fd >= 0)
        close(sink.out_fd);
    pthread_cond_destroy(&sink.hold_cond);
    if (!sink.quiet) {
        printf("stopped after %" PRIuFAST64 " requests\n", atomic_load(&sink.seen));
        fflush(stdout);
    }
    return 0;
}
