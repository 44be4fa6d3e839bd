/* passerelle-smtp-sink: a local SMTP receiver for the tests and the
 * README's tour. It speaks as much SMTP as libcurl uses (EHLO/HELO, MAIL,
 * RCPT, DATA, RSET, NOOP, QUIT), keeps each message in a folder, and prints
 * one line per message, so that a digest sent by the notifications service
 * can be looked at without a real mail server.
 *
 *   passerelle-smtp-sink [--port N] [--out DIR] [--reject-first N]
 *                        [--max-size BYTES] [--quiet]
 *
 * The first line on stdout is "listening on smtp://127.0.0.1:PORT" (with
 * --port 0 the system picks the port: read it there). Each message is
 * saved as DIR/NNNNNN.eml, numbered after those already in DIR, written
 * to a temporary file and renamed, so that a reader never sees half of
 * one; two header lines give its envelope (X-Sink-Envelope-From,
 * X-Sink-Envelope-To). --reject-first N answers 451 to the first N
 * messages (a temporary failure: what a test of retries needs).
 *
 * One thread, poll(2) over the listening socket and the connections.
 * Lines and messages are bounded; a client that says nothing for five
 * minutes is dropped. SIGINT or SIGTERM: stops and exits 0. */
#define _GNU_SOURCE /* ppoll */

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SINK_NAME            "passerelle-smtp-sink"
#define SINK_LINE_MAX        8192  /* a command or text line, CRLF included */
#define SINK_OUT_HIGH        65536 /* stop reading a client that does not read its replies */
#define SINK_CONNECTIONS_MAX 256
#define SINK_RECIPIENTS_MAX  100
#define SINK_ADDRESS_MAX     320
#define SINK_SUBJECT_MAX     200
#define SINK_IDLE_S          300
#define SINK_DEFAULT_PORT    2525
#define SINK_DEFAULT_SIZE    (10L * 1024 * 1024)

typedef enum {
    PHASE_COMMANDS, /* between messages, or inside MAIL/RCPT */
    PHASE_DATA,     /* after 354, until the lone dot */
} phase_t;

typedef struct {
    int fd;
    phase_t phase;
    bool greeted;       /* HELO or EHLO seen */
    bool closing;       /* close once the replies are written */
    bool skipping_line; /* the rest of an over-long line is being dropped */
    time_t last_activity;

    char in[SINK_LINE_MAX];
    size_t in_len;
    char *out;
    size_t out_len, out_cap;

    /* the transaction */
    char *from; /* NULL until MAIL */
    char *rcpt[SINK_RECIPIENTS_MAX];
    size_t rcpt_count;
    char *msg;
    size_t msg_len, msg_cap;
    bool msg_too_big;
    bool msg_line_too_long;
} conn_t;

typedef struct {
    const char *out_dir; /* NULL: messages are not saved */
    long reject_left;
    long max_size;
    bool quiet;
    unsigned long next_number;
} sink_t;

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

/* ======================== replies ======================================= */

static void conn_reply(conn_t *conn, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 2, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    size_t len = (size_t)n < sizeof line - 2 ? (size_t)n : sizeof line - 3;
    line[len++] = '\r';
    line[len++] = '\n';
    if (conn->out_len + len > conn->out_cap) {
        size_t cap = conn->out_cap ? conn->out_cap * 2 : 1024;
        while (cap < conn->out_len + len)
            cap *= 2;
        char *out = realloc(conn->out, cap);
        if (!out) {
            conn->closing = true; /* cannot answer: drop the client */
            return;
        }
        conn->out = out;
        conn->out_cap = cap;
    }
    memcpy(conn->out + conn->out_len, line, len);
    conn->out_len += len;
}

/* Writes what it can; false if the connection is dead. */
static bool conn_flush(conn_t *conn)
{
    while (conn->out_len) {
        ssize_t n = send(conn->fd, conn->out, conn->out_len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN || errno == EWOULDBLOCK;
        }
        memmove(conn->out, conn->out + n, conn->out_len - (size_t)n);
        conn->out_len -= (size_t)n;
    }
    return true;
}

/* ======================== the transaction ============================== */

static void transaction_reset(conn_t *conn)
{
    free(conn->from);
    conn->from = NULL;
    for (size_t i = 0; i < conn->rcpt_count; i++)
        free(conn->rcpt[i]);
    conn->rcpt_count = 0;
    free(conn->msg);
    conn->msg = NULL;
    conn->msg_len = conn->msg_cap = 0;
    conn->msg_too_big = conn->msg_line_too_long = false;
}

/* The address of "FROM:<a@b> PARAMS" (after the verb's keyword) into
 * *addr (malloc'd; "" for the null sender <>), the parameters into
 * *params. False if it is not an address. */
static bool parse_path(const char *text, char **addr, const char **params)
{
    while (*text == ' ')
        text++;
    const char *start = text, *end;
    if (*text == '<') {
        start = text + 1;
        end = strchr(start, '>');
        if (!end)
            return false;
        *params = end + 1;
    } else {
        end = start + strcspn(start, " ");
        *params = end;
    }
    size_t len = (size_t)(end - start);
    if (len > SINK_ADDRESS_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)start[i] <= ' ' || start[i] == '<' || start[i] == 0x7f)
            return false;
    *addr = strndup(start, len);
    return *addr != NULL;
}

/* A "KEYWORD:" prefix, any case, spaces allowed before the colon's
 * argument; returns what follows, or NULL. */
static const char *after_keyword(const char *args, const char *keyword)
{
    size_t len = strlen(keyword);
    if (strncasecmp(args, keyword, len) != 0)
        return NULL;
    return args + len;
}

static void command_mail(sink_t *sink, conn_t *conn, const char *args)
{
    if (!conn->greeted) {
        conn_reply(conn, "503 5.5.1 Send EHLO or HELO first");
        return;
    }
    if (conn->from) {
        conn_reply(conn, "503 5.5.1 A transaction is already open (RSET first)");
        return;
    }
    const char *rest = after_keyword(args, "FROM:");
    char *addr = NULL;
    const char *params = NULL;
    if (!rest || !parse_path(rest, &addr, &params)) {
        conn_reply(conn, "501 5.5.4 Syntax: MAIL FROM:<address>");
        return;
    }
    /* SIZE=n lets a client learn of the bound before sending. */
    const char *size = strcasestr(params, "SIZE=");
    if (size && strtol(size + 5, NULL, 10) > sink->max_size) {
        free(addr);
        conn_reply(conn, "552 5.3.4 Message larger than %ld bytes", sink->max_size);
        return;
    }
    conn->from = addr;
    conn_reply(conn, "250 2.1.0 Sender OK");
}

static void command_rcpt(conn_t *conn, const char *args)
{
    if (!conn->from) {
        conn_reply(conn, "503 5.5.1 MAIL first");
        return;
    }
    const char *rest = after_keyword(args, "TO:");
    char *addr = NULL;
    const char *params = NULL;
    if (!rest || !parse_path(rest, &addr, &params) || !*addr) {
        free(addr);
        conn_reply(conn, "501 5.5.4 Syntax: RCPT TO:<address>");
        return;
    }
    if (conn->rcpt_count == SINK_RECIPIENTS_MAX) {
        free(addr);
        conn_reply(conn, "452 4.5.3 Too many recipients");
        return;
    }
    conn->rcpt[conn->rcpt_count++] = addr;
    conn_reply(conn, "250 2.1.5 Recipient OK");
}

static void command(sink_t *sink, conn_t *conn, char *line)
{
    char *args = line + strcspn(line, " ");
    if (*args)
        *args++ = '\0';
    while (*args == ' ')
        args++;
    const char *verb = line;

    if (strcasecmp(verb, "EHLO") == 0 || strcasecmp(verb, "HELO") == 0) {
        transaction_reset(conn);
        conn->greeted = true;
        if (toupper((unsigned char)verb[0]) == 'E') {
            conn_reply(conn, "250-" SINK_NAME " greets %.200s", *args ? args : "you");
            conn_reply(conn, "250-8BITMIME");
            conn_reply(conn, "250-SIZE %ld", sink->max_size);
            conn_reply(conn, "250 HELP");
        } else
            conn_reply(conn, "250 " SINK_NAME);
    } else if (strcasecmp(verb, "MAIL") == 0)
        command_mail(sink, conn, args);
    else if (strcasecmp(verb, "RCPT") == 0)
        command_rcpt(conn, args);
    else if (strcasecmp(verb, "DATA") == 0) {
        if (!conn->from || conn->rcpt_count == 0)
            conn_reply(conn, "503 5.5.1 MAIL and RCPT first");
        else {
            conn->phase = PHASE_DATA;
            conn_reply(conn, "354 End data with <CR><LF>.<CR><LF>");
        }
    } else if (strcasecmp(verb, "RSET") == 0) {
        transaction_reset(conn);
        conn_reply(conn, "250 2.0.0 Reset");
    } else if (strcasecmp(verb, "NOOP") == 0)
        conn_reply(conn, "250 2.0.0 OK");
    else if (strcasecmp(verb, "QUIT") == 0) {
        conn_reply(conn, "221 2.0.0 Bye");
        conn->closing = true;
    } else
        conn_reply(conn, "500 5.5.2 Command not recognised");
}

/* ======================== messages ===================================== */

/* The Subject header's value, unfolded, control characters as '.', at
 * most SINK_SUBJECT_MAX characters; "" if there is none. */
static void message_subject(const char *msg, size_t len, char *out, size_t out_size)
{
    out[0] = '\0';
    size_t pos = 0, o = 0;
    bool in_subject = false;
    while (pos < len) {
        const char *line = msg + pos;
        const char *eol = memchr(line, '\n', len - pos);
        size_t line_len = eol ? (size_t)(eol - line) : len - pos;
        pos += line_len + (eol ? 1 : 0);
        if (line_len && line[line_len - 1] == '\r')
            line_len--;
        if (line_len == 0)
            break; /* end of the header section */
        const char *value;
        size_t value_len;
        if (line[0] == ' ' || line[0] == '\t') {
            if (!in_subject)
                continue;
            value = line;
            value_len = line_len;
        } else {
            in_subject = line_len >= 8 && strncasecmp(line, "Subject:", 8) == 0;
            if (!in_subject)
                continue;
            value = line + 8;
            value_len = line_len - 8;
            while (value_len && (*value == ' ' || *value == '\t')) {
                value++;
                value_len--;
            }
        }
        for (size_t i = 0; i < value_len && o + 1 < out_size; i++) {
            unsigned char c = (unsigned char)value[i];
            out[o++] = c < 0x20 || c == 0x7f ? (c == '\t' ? ' ' : '.') : (char)c;
        }
        out[o] = '\0';
    }
}

static bool write_all(int fd, const char *data, size_t len)
{
    while (len) {
        ssize_t n = write(fd, data, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return false;
        }
        data += n;
        len -= (size_t)n;
    }
    return true;
}

static bool write_text(int fd, const char *text)
{
    return write_all(fd, text, strlen(text));
}

/* Writes the message as out_dir/NNNNNN.eml through a temporary file; false
 * (with the reason on stderr) if it cannot. */
static bool message_save(const sink_t *sink, const conn_t *conn, unsigned long number)
{
    char tmp[PATH_MAX], path[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s/.%06lu.eml.tmp", sink->out_dir, number);
    snprintf(path, sizeof path, "%s/%06lu.eml", sink->out_dir, number);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd == -1) {
        fprintf(stderr, SINK_NAME ": %s: %s\n", tmp, strerror(errno));
        return false;
    }
    bool ok = write_text(fd, "X-Sink-Envelope-From: ") &&
              write_text(fd, *conn->from ? conn->from : "<>") &&
              write_text(fd, "\r\nX-Sink-Envelope-To: ");
    for (size_t i = 0; ok && i < conn->rcpt_count; i++)
        ok = (i == 0 || write_text(fd, ", ")) && write_text(fd, conn->rcpt[i]);
    ok = ok && write_text(fd, "\r\n") && write_all(fd, conn->msg ? conn->msg : "", conn->msg_len);
    if (!ok)
        fprintf(stderr, SINK_NAME ": %s: %s\n", tmp, strerror(errno));
    if (close(fd) == -1 && ok) {
        fprintf(stderr, SINK_NAME ": %s: %s\n", tmp, strerror(errno));
        ok = false;
    }
    if (ok && rename(tmp, path) == -1) {
        fprintf(stderr, SINK_NAME ": %s: %s\n", path, strerror(errno));
        ok = false;
    }
    if (!ok)
        unlink(tmp);
    return ok;
}

/* The lone dot: the message is complete. */
static void message_end(sink_t *sink, conn_t *conn)
{
    conn->phase = PHASE_COMMANDS;
    if (conn->msg_line_too_long)
        conn_reply(conn, "552 5.3.4 A line is longer than %d bytes", SINK_LINE_MAX - 2);
    else if (conn->msg_too_big)
        conn_reply(conn, "552 5.3.4 Message larger than %ld bytes", sink->max_size);
    else if (sink->reject_left > 0) {
        sink->reject_left--;
        conn_reply(conn, "451 4.3.0 Rejected on purpose (--reject-first), try again");
    } else {
        unsigned long number = sink->next_number;
        if (sink->out_dir && !message_save(sink, conn, number))
            conn_reply(conn, "451 4.3.0 Cannot save the message");
        else {
            sink->next_number++;
            conn_reply(conn, "250 2.0.0 OK queued as %06lu", number);
            if (!sink->quiet) {
                char subject[SINK_SUBJECT_MAX + 1];
                message_subject(conn->msg ? conn->msg : "", conn->msg_len, subject, sizeof subject);
                printf("mail from %s to ", *conn->from ? conn->from : "<>");
                for (size_t i = 0; i < conn->rcpt_count; i++)
                    printf("%s%s", i ? ", " : "", conn->rcpt[i]);
                printf(", %zu bytes, Subject: %s\n", conn->msg_len, subject);
                fflush(stdout);
            }
        }
    }
    transaction_reset(conn);
}

/* One line of the message (its line end removed): dot-unstuffed and kept
 * with CRLF, within the size bound. */
static void message_line(sink_t *sink, conn_t *conn, const char *line, size_t len)
{
    if (len == 1 && line[0] == '.') {
        message_end(sink, conn);
        return;
    }
    if (len && line[0] == '.') {
        line++;
        len--;
    }
    if (conn->msg_too_big || conn->msg_line_too_long)
        return;
    if (conn->msg_len + len + 2 > (size_t)sink->max_size) {
        conn->msg_too_big = true;
        return;
    }
    if (conn->msg_len + len + 2 > conn->msg_cap) {
        size_t cap = conn->msg_cap ? conn->msg_cap : 4096;
        while (cap < conn->msg_len + len + 2)
            cap *= 2;
        char *msg = realloc(conn->msg, cap);
        if (!msg) {
            conn->msg_too_big = true;
            return;
        }
        conn->msg = msg;
        conn->msg_cap = cap;
    }
    memcpy(conn->msg + conn->msg_len, line, len);
    conn->msg[conn->msg_len + len] = '\r';
    conn->msg[conn->msg_len + len + 1] = '\n';
    conn->msg_len += len + 2;
}

/* ======================== connections ================================== */

/* Handles every complete line in the input buffer. */
static void conn_lines(sink_t *sink, conn_t *conn)
{
    size_t pos = 0;
    while (!conn->closing && pos < conn->in_len) {
        char *line = conn->in + pos;
        char *eol = memchr(line, '\n', conn->in_len - pos);
        if (!eol)
            break;
        size_t len = (size_t)(eol - line);
        pos += len + 1;
        if (conn->skipping_line) {
            /* the end of a line already answered as too long */
            conn->skipping_line = false;
            continue;
        }
        if (len && line[len - 1] == '\r')
            len--;
        if (conn->phase == PHASE_DATA)
            message_line(sink, conn, line, len);
        else {
            line[len] = '\0';
            command(sink, conn, line);
        }
    }
    memmove(conn->in, conn->in + pos, conn->in_len - pos);
    conn->in_len -= pos;
    if (conn->in_len == sizeof conn->in) {
        /* A full buffer without a line end: the line is too long. */
        conn->in_len = 0;
        if (!conn->skipping_line) {
            if (conn->phase == PHASE_DATA)
                conn->msg_line_too_long = true;
            else
                conn_reply(conn, "500 5.5.2 Line too long");
        }
        conn->skipping_line = true;
    }
}

/* Reads what is there; false when the client is gone. */
static bool conn_read(sink_t *sink, conn_t *conn)
{
    ssize_t n = recv(conn->fd, conn->in + conn->in_len, sizeof conn->in - conn->in_len, 0);
    if (n == 0)
        return false;
    if (n < 0)
        return errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK;
    conn->in_len += (size_t)n;
    conn->last_activity = time(NULL);
    conn_lines(sink, conn);
    return true;
}

static void conn_free(conn_t *conn)
{
    close(conn->fd);
    transaction_reset(conn);
    free(conn->out);
    free(conn);
}

/* ======================== main ========================================= */

/* The number after the highest NNNNNN.eml already in dir. */
static unsigned long first_number(const char *dir)
{
    unsigned long highest = 0;
    DIR *d = opendir(dir);
    if (!d)
        return 1;
    struct dirent *entry;
    while ((entry = readdir(d))) {
        const char *name = entry->d_name;
        if (strlen(name) != 10 || strcmp(name + 6, ".eml") != 0)
            continue;
        unsigned long number = 0;
        bool digits = true;
        for (int i = 0; i < 6; i++) {
            digits = digits && isdigit((unsigned char)name[i]);
            number = number * 10 + (unsigned long)(name[i] - '0');
        }
        if (digits && number > highest)
            highest = number;
    }
    closedir(d);
    return highest + 1;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: " SINK_NAME " [--port N] [--out DIR] [--reject-first N]\n"
            "                            [--max-size BYTES] [--quiet]\n"
            "  --port N          port on 127.0.0.1 (default %d; 0 picks a free one)\n"
            "  --out DIR         save each message as DIR/NNNNNN.eml\n"
            "  --reject-first N  answer 451 to the first N messages\n"
            "  --max-size BYTES  largest message accepted (default %ld)\n"
            "  --quiet           no line per message\n",
            SINK_DEFAULT_PORT, SINK_DEFAULT_SIZE);
}

static bool parse_long(const char *text, long min, long max, long *out)
{
    if (!text || !*text)
        return false;
    char *end;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno || *end || value < min || value > max)
        return false;
    *out = value;
    return true;
}

int main(int argc, char **argv)
{
    sink_t sink = {.max_size = SINK_DEFAULT_SIZE, .next_number = 1};
    long port = SINK_DEFAULT_PORT;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--quiet") == 0) {
            sink.quiet = true;
            continue;
        }
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        const char *value = i + 1 < argc ? argv[++i] : NULL;
        bool ok;
        if (strcmp(arg, "--port") == 0)
            ok = parse_long(value, 0, 65535, &port);
        else if (strcmp(arg, "--reject-first") == 0)
            ok = parse_long(value, 0, LONG_MAX, &sink.reject_left);
        else if (strcmp(arg, "--max-size") == 0)
            ok = parse_long(value, 1024, 1L << 30, &sink.max_size);
        else if (strcmp(arg, "--out") == 0) {
            ok = value && *value;
            sink.out_dir = value;
        } else {
            fprintf(stderr, SINK_NAME ": unknown option %s\n", arg);
            usage(stderr);
            return 2;
        }
        if (!ok) {
            fprintf(stderr, SINK_NAME ": bad or missing value for %s\n", arg);
            usage(stderr);
            return 2;
        }
    }
    if (sink.out_dir) {
        if (mkdir(sink.out_dir, 0755) == -1 && errno != EEXIST) {
            fprintf(stderr, SINK_NAME ": %s: %s\n", sink.out_dir, strerror(errno));
            return 1;
        }
        sink.next_number = first_number(sink.out_dir);
    }

    /* SIGINT/SIGTERM are blocked except inside ppoll, so a signal that
     * arrives between two waits is not lost: the next ppoll returns at
     * once. */
    struct sigaction action = {.sa_handler = on_signal};
    sigemptyset(&action.sa_mask);
    sigaction(SIGINT, &action, NULL);
    sigaction(SIGTERM, &action, NULL);
    signal(SIGPIPE, SIG_IGN);
    sigset_t blocked, wait_mask;
    sigemptyset(&blocked);
    sigaddset(&blocked, SIGINT);
    sigaddset(&blocked, SIGTERM);
    sigprocmask(SIG_BLOCK, &blocked, &wait_mask);
    sigdelset(&wait_mask, SIGINT);
    sigdelset(&wait_mask, SIGTERM);

    int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t addr_len = sizeof addr;
    if (listener == -1 || setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == -1 ||
        bind(listener, (struct sockaddr *)&addr, sizeof addr) == -1 || listen(listener, 64) == -1 ||
        getsockname(listener, (struct sockaddr *)&addr, &addr_len) == -1) {
        fprintf(stderr, SINK_NAME ": cannot listen on 127.0.0.1:%ld: %s\n", port, strerror(errno));
        return 1;
    }
    printf("listening on smtp://127.0.0.1:%u\n", ntohs(addr.sin_port));
    fflush(stdout);

    conn_t *conns[SINK_CONNECTIONS_MAX];
    size_t count = 0;
    struct pollfd fds[SINK_CONNECTIONS_MAX + 1];
    while (!stop_requested) {
        fds[0] = (struct pollfd){.fd = listener, .events = POLLIN};
        for (size_t i = 0; i < count; i++) {
            short events = 0;
            if (!conns[i]->closing && conns[i]->out_len < SINK_OUT_HIGH)
                events |= POLLIN;
            if (conns[i]->out_len)
                events |= POLLOUT;
            fds[i + 1] = (struct pollfd){.fd = conns[i]->fd, .events = events};
        }
        /* With clients, wake once a second to drop the idle ones. */
        struct timespec tick = {.tv_sec = 1};
        int ready = ppoll(fds, count + 1, count ? &tick : NULL, &wait_mask);
        if (ready < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, SINK_NAME ": poll: %s\n", strerror(errno));
            break;
        }
        time_t now = time(NULL);

        /* Connections first: accepting may move the array. */
        size_t kept = 0;
        for (size_t i = 0; i < count; i++) {
            conn_t *conn = conns[i];
            short revents = fds[i + 1].revents;
            bool alive = true;
            if (revents & POLLIN)
                alive = conn_read(&sink, conn);
            else if (revents & (POLLERR | POLLHUP | POLLNVAL))
                alive = false;
            if (alive)
                alive = conn_flush(conn);
            if (alive && conn->closing && conn->out_len == 0)
                alive = false;
            if (alive && now - conn->last_activity > SINK_IDLE_S) {
                conn_reply(conn, "421 4.4.2 Idle too long, closing");
                conn_flush(conn);
                alive = false;
            }
            if (alive)
                conns[kept++] = conn;
            else
                conn_free(conn);
        }
        count = kept;

        if (fds[0].revents & POLLIN) {
            int fd;
            while ((fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                conn_t *conn = count < SINK_CONNECTIONS_MAX ? calloc(1, sizeof *conn) : NULL;
                if (!conn) {
                    static const char busy[] = "421 4.3.2 Too many connections\r\n";
                    (void)!send(fd, busy, sizeof busy - 1, MSG_NOSIGNAL);
                    close(fd);
                    continue;
                }
                conn->fd = fd;
                conn->last_activity = now;
                conn_reply(conn, "220 " SINK_NAME " ESMTP ready");
                if (!conn_flush(conn)) {
                    conn_free(conn);
                    continue;
                }
                conns[count++] = conn;
            }
        }
    }

    for (size_t i = 0; i < count; i++)
        conn_free(conns[i]);
    close(listener);
    return 0;
}
