/* passerelle-feed: the reference subscriber of the partner feed (see
 * services/notifications/feed.h), and the model for a partner's own.
 *
 * A PUB socket drops what a subscriber was not there to take, so the
 * subscriber does not trust the stream of messages: it trusts the chain of
 * positions. Each message names its own position and the one before it; the
 * subscriber remembers the last position it handled (in --state, across
 * restarts) and, for each message:
 *   - position <= last: already handled (a replay got there first): drop;
 *   - previous == last: the next one: handle it;
 *   - otherwise something was missed: read it back with "feed.replay" from
 *     last, then handle whatever the replay did not cover.
 * A heartbeat naming a position beyond last means the end of a burst was
 * missed: replay. It subscribes to every topic, whatever --types says,
 * because a gap can only be seen in the whole chain; --types filters what
 * is printed.
 *
 * During a rotation of the services' key (<keys>/server.next.key beside
 * server.key), the feed socket and the replay client each use the key that
 * last worked and move to the other when the service does not take it: a
 * socket monitor sees the failed CURVE handshake at once (the service drops
 * a HELLO it cannot decrypt and closes the connection); a socket that has
 * neither completed a handshake nor received anything for SUB_KEY_WAIT_MS
 * moves too, for whatever the monitor cannot see. A new socket may miss
 * messages, which the chain of positions finds as for any gap.
 *
 * Each event is printed, then its position saved (temporary file, fsync,
 * rename): a crash between the two prints that event again after a
 * restart, the only way to never lose one. Exit codes: 0 after --count
 * events or on SIGINT/SIGTERM (state saved), 1 the service refused the
 * replay or the state cannot be read or written, 2 usage error. */
#include "client.h"
#include "cloudevent.h"
#include "config.h"
#include "envelope.pb-c.h"
#include "identity.h"
#include "log.h"
#include "notifications.pb-c.h"
#include "serverkeys.h"
#include "status.h"

#include <czmq.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum {
    EXIT_FAILED = 1,
    EXIT_USAGE = 2,
};

#define FEED_HEARTBEAT_TOPIC "~heartbeat"
#define POSITION_MAX         48 /* "<ms>-<seq>": two 20-digit numbers and a dash */
/* Events per feed.replay page: the most the service gives. */
#define REPLAY_PAGE 1000
/* How long one wait for a message lasts: the reaction time to a signal. */
#define RECEIVE_WAIT_MS 200
/* The pause before asking again when the service does not answer. */
#define REPLAY_RETRY_MS 1000
/* Messages the socket keeps while a replay runs: a burst fits, and what
 * does not is found again by its position. */
#define RECEIVE_HWM 100000
/* The largest message taken from the publisher: an event is one record. */
#define RECEIVE_MAX_BYTES (16 * 1024 * 1024)
#define PREFIX_MAX        32
/* With two server keys: how long a feed socket may go without a handshake
 * or a message before it tries the other key (several heartbeats). */
#define SUB_KEY_WAIT_MS 5000

/* ==========================================================================
 * Options
 * ======================================================================== */

typedef struct {
    const char *feed;
    const char *endpoint;
    const char *keys_dir;
    const char *as;
    const char *state_path;
    const char *types;
    const char *from;
    long count; /* 0: no limit */
    bool insecure;
    bool json;
} options_t;

static void usage(FILE *out)
{
    fputs("usage: passerelle-feed [options]\n"
          "\n"
          "Prints the partner feed of the notifications service, each event once and\n"
          "in order, reading back with feed.replay whatever the live feed dropped.\n"
          "\n"
          "  --feed ENDPOINT     the feed (PUB) to subscribe to\n"
          "                      (default $PASSERELLE_FEED_ENDPOINT or tcp://127.0.0.1:7406)\n"
          "  --endpoint ENDPOINT the notifications service, for feed.replay (default\n"
          "                      $PASSERELLE_NOTIFICATIONS_ENDPOINT or tcp://127.0.0.1:7402)\n"
          "  --keys DIR          the key directory (default $PASSERELLE_KEYS_DIR or ./var/keys);\n"
          "                      while the services' key is rotated, its server.next.key\n"
          "                      is tried when server.key is not taken\n"
          "  --as NAME           whose key to use: <keys>/clients/NAME.key_secret\n"
          "                      (default $PASSERELLE_CLIENT or admin)\n"
          "  --insecure          plain text, no keys (a service run with PASSERELLE_INSECURE=1)\n"
          "  --state FILE        the last position handled: read at start, written after\n"
          "                      each event; a restart goes on from there\n"
          "  --from POSITION     with no position in the state file: print every event\n"
          "                      after POSITION first (0: the whole feed); without either,\n"
          "                      the first message received is the start\n"
          "  --types P[,P...]    print only the events whose type starts with one of these\n"
          "  --json              one JSON object per line: the position and the CloudEvent\n"
          "  --count N           exit after printing N events\n"
          "  --help              this help\n"
          "\n"
          "Lines: <position> <time> <type> <subject>. Exit codes: 0 done (--count) or\n"
          "stopped by SIGINT/SIGTERM, 1 the service refused the replay or the state file\n"
          "failed, 2 usage error.\n",
          out);
}

static int usage_error(const char *format, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *format, ...)
{
    va_list args;
    va_start(args, format);
    fputs("error: ", stderr);
    vfprintf(stderr, format, args);
    va_end(args);
    fputs("\n(see 'passerelle-feed --help')\n", stderr);
    return EXIT_USAGE;
}

/* ==========================================================================
 * Positions: Redis stream ids, "ms-seq", compared as two numbers
 * ======================================================================== */

typedef struct {
    uint64_t ms;
    uint64_t seq;
} position_t;

static bool position_number(const char **cursor, uint64_t *out)
{
    const char *s = *cursor;
    uint64_t value = 0;
    size_t digits = 0;
    for (; *s >= '0' && *s <= '9'; s++, digits++) {
        unsigned d = (unsigned)(*s - '0');
        if (value > (UINT64_MAX - d) / 10)
            return false;
        value = value * 10 + d;
    }
    *cursor = s;
    *out = value;
    return digits > 0;
}

/* "ms" or "ms-seq"; "ms" alone is "ms-0", as Redis reads it. */
static bool position_parse(const char *text, position_t *out)
{
    if (!text)
        return false;
    const char *s = text;
    position_t p = {0, 0};
    if (!position_number(&s, &p.ms))
        return false;
    if (*s == '-') {
        s++;
        if (!position_number(&s, &p.seq))
            return false;
    }
    if (*s != '\0')
        return false;
    *out = p;
    return true;
}

static int position_compare(position_t a, position_t b)
{
    if (a.ms != b.ms)
        return a.ms < b.ms ? -1 : 1;
    if (a.seq != b.seq)
        return a.seq < b.seq ? -1 : 1;
    return 0;
}

/* ==========================================================================
 * The state file
 * ======================================================================== */

/* Reads the saved position into out. 1 read, 0 no file (or empty), -1 a
 * file that cannot be read or does not hold a position (said on stderr). */
static int state_load(const char *path, char *out, size_t out_size)
{
    FILE *file = fopen(path, "r");
    if (!file) {
        if (errno == ENOENT)
            return 0;
        fprintf(stderr, "error: cannot read the state file %s: %s\n", path, strerror(errno));
        return -1;
    }
    char text[POSITION_MAX + 2] = "";
    size_t len = fread(text, 1, sizeof text - 1, file);
    fclose(file);
    text[len] = '\0';
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' '))
        text[--len] = '\0';
    if (len == 0)
        return 0;
    position_t p;
    if (!position_parse(text, &p) || len >= out_size) {
        fprintf(stderr, "error: the state file %s does not hold a feed position\n", path);
        return -1;
    }
    snprintf(out, out_size, "%s", text);
    return 1;
}

/* The folder holding path is fsynced after the rename, so that the rename
 * itself survives a crash of the machine. */
static void state_sync_folder(const char *path)
{
    char folder[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(folder, sizeof folder, ".");
    else if (slash == path)
        snprintf(folder, sizeof folder, "/");
    else if ((size_t)(slash - path) < sizeof folder)
        snprintf(folder, sizeof folder, "%.*s", (int)(slash - path), path);
    else
        return;
    int fd = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return;
    (void)fsync(fd);
    close(fd);
}

/* Replaces the state with position: a temporary file beside it, fsynced,
 * renamed over it, so that the file always holds a whole position. 0, or
 * -1 (said on stderr). */
static int state_save(const char *path, const char *position)
{
    char temp[PATH_MAX];
    int len = snprintf(temp, sizeof temp, "%s.tmp", path);
    if (len < 0 || (size_t)len >= sizeof temp) {
        fprintf(stderr, "error: state file path too long: %s\n", path);
        return -1;
    }
    int fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "error: cannot write %s: %s\n", temp, strerror(errno));
        return -1;
    }
    char line[POSITION_MAX + 2];
    int line_len = snprintf(line, sizeof line, "%s\n", position);
    bool ok = line_len > 0 && (size_t)line_len < sizeof line &&
              write(fd, line, (size_t)line_len) == line_len && fsync(fd) == 0;
    int saved_errno = errno;
    if (close(fd) != 0)
        ok = false;
    if (!ok || rename(temp, path) != 0) {
        fprintf(stderr, "error: cannot save the state in %s: %s\n", path,
                strerror(ok ? errno : saved_errno));
        unlink(temp);
        return -1;
    }
    state_sync_folder(path);
    return 0;
}

/* ==========================================================================
 * Printing
 * ======================================================================== */

/* One line on stdout, flushed before the position is saved. 0, or -1 if
 * stdout is gone. */
static int print_event(const options_t *opts, const char *position, const Passerelle__Event *event)
{
    int rc;
    if (opts->json) {
        /* {"position": ..., then the CloudEvent's attributes}: the
         * CloudEvent is parsed back so that the position comes first. */
        char *event_text = cloudevent_json(event, NULL);
        json_t *attributes = event_text ? json_loads(event_text, 0, NULL) : NULL;
        free(event_text);
        json_t *line = json_object();
        if (!line || !json_is_object(attributes)) {
            json_decref(line);
            json_decref(attributes);
            return -1;
        }
        json_object_set_new(line, "position", json_string(position));
        json_object_update(line, attributes);
        json_decref(attributes);
        char *text = json_dumps(line, JSON_COMPACT);
        json_decref(line);
        if (!text)
            return -1;
        rc = printf("%s\n", text);
        free(text);
    } else {
        rc = printf("%s %s %s %s\n", position, event->time && *event->time ? event->time : "-",
                    event->type && *event->type ? event->type : "-",
                    event->subject && *event->subject ? event->subject : "-");
    }
    if (rc < 0 || fflush(stdout) != 0)
        return -1;
    return 0;
}

/* ==========================================================================
 * The subscriber
 * ======================================================================== */

typedef struct {
    const options_t *opts;
    zsock_t *sub;
    client_t *client;
    /* The feed socket's keys: ours, and the services' (two during a
     * rotation, which then watch the socket's handshakes), the one in use
     * being the one that last worked. NULL with --insecure. */
    zcert_t *cert;
    serverkeys_t *keys;
    bool sub_heard;             /* a handshake or a message since the socket opened */
    int64_t sub_opened;         /* zclock_mono */
    int64_t switched_at;        /* the last switch no handshake has confirmed; 0 none */
    char *prefixes[PREFIX_MAX]; /* --types, split */
    size_t prefix_count;
    bool known; /* last holds a position */
    char last[POSITION_MAX];
    position_t last_position;
    long printed;
    bool finished; /* --count reached */
    int failure;   /* an exit code once something failed for good */
    bool unreachable_said;
} subscriber_t;

static bool subscriber_wants(const subscriber_t *self, const char *type)
{
    if (self->prefix_count == 0)
        return true;
    for (size_t i = 0; i < self->prefix_count; i++)
        if (strncmp(type ? type : "", self->prefixes[i], strlen(self->prefixes[i])) == 0)
            return true;
    return false;
}

/* Moves last to position (already checked to be after it) and saves it. */
static int subscriber_advance(subscriber_t *self, const char *position, position_t parsed)
{
    snprintf(self->last, sizeof self->last, "%s", position);
    self->last_position = parsed;
    self->known = true;
    if (self->opts->state_path && state_save(self->opts->state_path, position) != 0) {
        self->failure = EXIT_FAILED;
        return -1;
    }
    return 0;
}

/* Handles the event at position, the next after last: prints it if --types
 * wants it, then saves the position. event may be NULL (an entry that is
 * not an event: passed over). 0, or -1 on a failure for good. */
static int subscriber_handle(subscriber_t *self, const char *position, position_t parsed,
                             const Passerelle__Event *event)
{
    if (event && subscriber_wants(self, event->type)) {
        if (print_event(self->opts, position, event) != 0) {
            self->failure = EXIT_FAILED;
            return -1;
        }
        self->printed++;
    }
    if (subscriber_advance(self, position, parsed) != 0)
        return -1;
    if (self->opts->count > 0 && self->printed >= self->opts->count)
        self->finished = true;
    return 0;
}

/* Sleeps ms, or less if a signal comes. */
static void subscriber_pause(int ms)
{
    int64_t until = zclock_mono() + ms;
    while (!zsys_interrupted && zclock_mono() < until)
        zclock_sleep(50);
}

/* Asks for the events after last until a page brings nothing new, handling
 * each. A service that does not answer, or answers UNAVAILABLE, is asked
 * again after a pause, for as long as it takes: printing later is better
 * than printing out of order. 0 when caught up, finished or interrupted;
 * -1 on a failure for good (self->failure says which). */
static int subscriber_replay(subscriber_t *self)
{
    while (!self->finished && !zsys_interrupted) {
        char after[POSITION_MAX];
        snprintf(after, sizeof after, "%s", self->last);
        position_t after_position = self->last_position;
        Passerelle__FeedReplayRequest request = PASSERELLE__FEED_REPLAY_REQUEST__INIT;
        request.after = after;
        request.has_limit = true;
        request.limit = REPLAY_PAGE;
        Passerelle__Reply *reply = NULL;
        if (client_call(self->client, "feed.replay", &request.base, NULL, &reply) != 0) {
            if (zsys_interrupted)
                return 0;
            if (!self->unreachable_said)
                log_warn("feed.replay: no answer from the service, asking again", "{s:s, s:s}",
                         "endpoint", self->opts->endpoint, "after", after);
            self->unreachable_said = true;
            subscriber_pause(REPLAY_RETRY_MS);
            continue;
        }
        if (reply->status == PASSERELLE__STATUS__STATUS_UNAVAILABLE) {
            log_warn("feed.replay: service unavailable, asking again", "{s:s}", "message",
                     reply->message ? reply->message : "");
            passerelle__reply__free_unpacked(reply, NULL);
            subscriber_pause(REPLAY_RETRY_MS);
            continue;
        }
        if (self->unreachable_said)
            log_info("feed.replay: the service answers again", "{s:s}", "endpoint",
                     self->opts->endpoint);
        self->unreachable_said = false;
        if (reply->status != PASSERELLE__STATUS__STATUS_OK) {
            fprintf(stderr, "error: feed.replay: %s: %s%s%s%s\n", status_name(reply->status),
                    reply->message ? reply->message : "",
                    reply->field && *reply->field ? " (field: " : "",
                    reply->field && *reply->field ? reply->field : "",
                    reply->field && *reply->field ? ")" : "");
            passerelle__reply__free_unpacked(reply, NULL);
            self->failure = EXIT_FAILED;
            return -1;
        }
        Passerelle__EventListReply *list = passerelle__event_list_reply__unpack(
            NULL, reply->has_body ? reply->body.len : 0, reply->body.data);
        passerelle__reply__free_unpacked(reply, NULL);
        if (!list) {
            fprintf(stderr, "error: feed.replay: the reply does not decode as an event list\n");
            self->failure = EXIT_FAILED;
            return -1;
        }
        int rc = 0;
        for (size_t i = 0; i < list->n_events && !self->finished && rc == 0; i++) {
            const Passerelle__StreamEvent *item = list->events[i];
            position_t position;
            if (!item->position || !position_parse(item->position, &position) ||
                strlen(item->position) >= POSITION_MAX) {
                log_warn("feed.replay: an entry without a valid position, passed over", "{s:s}",
                         "after", self->last);
                continue;
            }
            if (position_compare(position, self->last_position) <= 0)
                continue;
            rc = subscriber_handle(self, item->position, position, item->event);
        }
        /* The page may end past its last event (entries that are not
         * events are passed over): start the next page there. */
        position_t end;
        if (rc == 0 && !self->finished && list->last_position &&
            strlen(list->last_position) < POSITION_MAX &&
            position_parse(list->last_position, &end) &&
            position_compare(end, self->last_position) > 0)
            rc = subscriber_advance(self, list->last_position, end);
        bool progressed = position_compare(self->last_position, after_position) > 0;
        passerelle__event_list_reply__free_unpacked(list, NULL);
        if (rc != 0)
            return -1;
        if (!progressed)
            return 0;
    }
    return 0;
}

/* The frames of a message as text, NUL-terminated; "" past the end. */
static void frame_text(zmsg_t *msg, size_t index, char *out, size_t out_size)
{
    out[0] = '\0';
    zframe_t *frame = zmsg_first(msg);
    for (size_t i = 0; frame && i < index; i++)
        frame = zmsg_next(msg);
    if (!frame || zframe_size(frame) >= out_size)
        return;
    memcpy(out, zframe_data(frame), zframe_size(frame));
    out[zframe_size(frame)] = '\0';
}

static int subscriber_heartbeat(subscriber_t *self, zmsg_t *msg)
{
    char text[POSITION_MAX];
    position_t position;
    frame_text(msg, 1, text, sizeof text);
    if (!position_parse(text, &position))
        return 0;
    if (!self->known)
        /* Nothing known: what the feed holds so far is before our start. */
        return subscriber_advance(self, text, position);
    if (position_compare(position, self->last_position) > 0)
        return subscriber_replay(self);
    return 0;
}

static int subscriber_event(subscriber_t *self, zmsg_t *msg)
{
    char text[POSITION_MAX], previous_text[POSITION_MAX];
    position_t position, previous;
    frame_text(msg, 1, text, sizeof text);
    frame_text(msg, 2, previous_text, sizeof previous_text);
    zframe_t *body = zmsg_last(msg);
    if (zmsg_size(msg) != 4 || !position_parse(text, &position) ||
        !position_parse(previous_text, &previous)) {
        log_warn("a feed message of the wrong shape, dropped", "{s:i}", "frames",
                 (int)zmsg_size(msg));
        return 0;
    }
    if (self->known) {
        if (position_compare(position, self->last_position) <= 0)
            return 0; /* handled already */
        if (position_compare(previous, self->last_position) != 0) {
            /* Something was missed between last and this one. */
            if (subscriber_replay(self) != 0)
                return -1;
            if (self->finished || zsys_interrupted ||
                position_compare(position, self->last_position) <= 0)
                return 0;
        }
    }
    Passerelle__Event *event =
        passerelle__event__unpack(NULL, zframe_size(body), zframe_data(body));
    if (!event)
        log_warn("a feed message whose event does not decode, passed over", "{s:s, s:i}",
                 "position", text, "length", (int)zframe_size(body));
    int rc = subscriber_handle(self, text, position, event);
    if (event)
        passerelle__event__free_unpacked(event, NULL);
    return rc;
}

/* ==========================================================================
 * Setting up
 * ======================================================================== */

/* With two server keys: the feed socket's handshakes are watched. */
static bool subscriber_rotating(const subscriber_t *self)
{
    return self->keys && serverkeys_count(self->keys) > 1;
}

static void subscriber_close_sub(subscriber_t *self)
{
    if (self->keys)
        serverkeys_monitor_stop(self->keys);
    zsock_destroy(&self->sub);
}

/* (Re)opens the feed socket with the server key in use. 0, or an exit
 * code after saying why. */
static int subscriber_open_sub(subscriber_t *self)
{
    const options_t *opts = self->opts;
    subscriber_close_sub(self);
    self->sub = zsock_new(ZMQ_SUB);
    if (!self->sub) {
        fprintf(stderr, "error: cannot make a socket\n");
        return EXIT_FAILED;
    }
    zsock_set_rcvhwm(self->sub, RECEIVE_HWM);
    zsock_set_maxmsgsize(self->sub, RECEIVE_MAX_BYTES);
    zsock_set_linger(self->sub, 0);
    if (!opts->insecure) {
        zcert_apply(self->cert, self->sub);
        zsock_set_curve_serverkey(self->sub, serverkeys_current(self->keys));
        /* a failure leaves the time limit to switch keys */
        if (subscriber_rotating(self) && serverkeys_monitor_start(self->keys, self->sub) != 0)
            log_warn("cannot watch the feed's handshakes; a server key not taken is seen later",
                     "{s:s}", "error", zmq_strerror(zmq_errno()));
    }
    /* Everything: gap detection needs every position (see the top). */
    zsock_set_subscribe(self->sub, "");
    self->sub_heard = false;
    self->sub_opened = zclock_mono();
    if (zsock_connect(self->sub, "%s", opts->feed) != 0) {
        fprintf(stderr, "error: cannot connect to %s: %s\n", opts->feed, zmq_strerror(zmq_errno()));
        return EXIT_USAGE;
    }
    return 0;
}

/* Moves the feed socket to the other server key. */
static int subscriber_switch_key(subscriber_t *self, const char *reason)
{
    const char *from = serverkeys_current_name(self->keys);
    serverkeys_switch(self->keys);
    self->switched_at = zclock_mono();
    log_info("feed: server key not taken, trying the other", "{s:s, s:s, s:s, s:s}", "feed",
             self->opts->feed, "from", from, "to", serverkeys_current_name(self->keys), "reason",
             reason);
    return subscriber_open_sub(self);
}

/* Reads one event of the feed socket's monitor; a failed handshake moves
 * to the other key. 0, or an exit code. */
static int subscriber_monitor_event(subscriber_t *self)
{
    serverkeys_event_t event = serverkeys_monitor_read(self->keys, NULL);
    if (event == SERVERKEYS_SUCCEEDED) {
        self->sub_heard = true;
        self->switched_at = 0;
        return 0;
    }
    /* a ZAP refusal says the server key is right: no switch */
    if (event != SERVERKEYS_WRONG_KEY)
        return 0;
    /* The other key failed as well just after a switch: neither is taken
     * (the service may be mid-restart). Rather than flip at every
     * reconnection, leave the next switch to the time limit. */
    if (self->switched_at && zclock_mono() - self->switched_at < SUB_KEY_WAIT_MS)
        return 0;
    return subscriber_switch_key(self, "handshake failed");
}

static int subscriber_connect(subscriber_t *self)
{
    const options_t *opts = self->opts;
    char server_public[PATH_MAX], server_next[PATH_MAX], client_cert[PATH_MAX], err[512] = "";
    keydir_server_public_path(opts->keys_dir, server_public, sizeof server_public);
    keydir_server_next_public_path(opts->keys_dir, server_next, sizeof server_next);
    keydir_client_cert_path(opts->keys_dir, opts->as, client_cert, sizeof client_cert);
    client_config_t cfg = {
        .endpoint = opts->endpoint,
        .server_public_path = server_public,
        .server_next_public_path = server_next,
        .client_cert_path = client_cert,
        .insecure = opts->insecure,
        .timeout_ms = 0,
        .retries = -1,
    };
    self->client = client_new(&cfg, err, sizeof err);
    if (!self->client) {
        fprintf(stderr, "error: %s\n(keys: %s, as: %s)\n", *err ? err : "cannot set up the client",
                opts->keys_dir, opts->as);
        return EXIT_USAGE;
    }

    if (!opts->insecure) {
        /* client_new read these already: they are there. */
        self->cert = zcert_load(client_cert);
        self->keys = serverkeys_new(server_public, server_next, err, sizeof err);
        if (!self->cert || !self->keys) {
            fprintf(stderr, "error: cannot read the certificates in %s\n", opts->keys_dir);
            return EXIT_USAGE;
        }
    }
    return subscriber_open_sub(self);
}

static int subscriber_split_types(subscriber_t *self, const char *types)
{
    const char *s = types;
    while (s && *s) {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        if (len > 0) {
            if (self->prefix_count == PREFIX_MAX)
                return usage_error("--types: at most %d prefixes", PREFIX_MAX);
            self->prefixes[self->prefix_count] = strndup(s, len);
            if (!self->prefixes[self->prefix_count])
                return EXIT_FAILED;
            self->prefix_count++;
        }
        s = comma ? comma + 1 : NULL;
    }
    return 0;
}

static void subscriber_close(subscriber_t *self)
{
    subscriber_close_sub(self);
    serverkeys_destroy(&self->keys);
    zcert_destroy(&self->cert);
    client_destroy(&self->client);
    for (size_t i = 0; i < self->prefix_count; i++)
        free(self->prefixes[i]);
    self->prefix_count = 0;
}

/* The start: the state file's position, else --from, else the first
 * message. */
static int subscriber_start_position(subscriber_t *self)
{
    const options_t *opts = self->opts;
    char saved[POSITION_MAX] = "";
    int loaded = opts->state_path ? state_load(opts->state_path, saved, sizeof saved) : 0;
    if (loaded < 0)
        return EXIT_FAILED;
    position_t position;
    if (loaded > 0 && position_parse(saved, &position)) {
        snprintf(self->last, sizeof self->last, "%s", saved);
    } else if (opts->from) {
        if (!position_parse(opts->from, &position))
            return usage_error("--from: '%s' is not a feed position such as 1700000000000-0",
                               opts->from);
        snprintf(self->last, sizeof self->last, "%" PRIu64 "-%" PRIu64, position.ms, position.seq);
    } else {
        return 0;
    }
    self->last_position = position;
    self->known = true;
    return 0;
}

static int subscriber_run(subscriber_t *self)
{
    if (self->known && subscriber_replay(self) != 0)
        return self->failure;
    while (!self->finished && !zsys_interrupted && !self->failure) {
        /* The sockets change when the server key does: polled afresh each
         * turn. */
        zsock_t *monitor = self->keys ? serverkeys_monitor(self->keys) : NULL;
        zmq_pollitem_t items[2] = {{zsock_resolve(self->sub), 0, ZMQ_POLLIN, 0},
                                   {monitor ? zsock_resolve(monitor) : NULL, 0, ZMQ_POLLIN, 0}};
        int rc = zmq_poll(items, monitor ? 2 : 1, RECEIVE_WAIT_MS);
        if (rc < 0 && zmq_errno() != EINTR)
            return EXIT_FAILED;
        bool message = rc > 0 && (items[0].revents & ZMQ_POLLIN);
        if (!message && rc > 0 && monitor && (items[1].revents & ZMQ_POLLIN)) {
            /* after the messages: a new socket would lose those queued */
            int failed = subscriber_monitor_event(self);
            if (failed)
                return failed;
            continue;
        }
        if (!message) {
            if (subscriber_rotating(self) && !self->sub_heard &&
                zclock_mono() - self->sub_opened >= SUB_KEY_WAIT_MS) {
                int failed = subscriber_switch_key(self, "no handshake or message in time");
                if (failed)
                    return failed;
            }
            continue;
        }
        zmsg_t *msg = zmsg_recv(self->sub);
        if (!msg)
            continue;
        self->sub_heard = true;
        char topic[128];
        frame_text(msg, 0, topic, sizeof topic);
        if (strcmp(topic, FEED_HEARTBEAT_TOPIC) == 0)
            subscriber_heartbeat(self, msg);
        else
            subscriber_event(self, msg);
        zmsg_destroy(&msg);
    }
    return self->failure;
}

/* ==========================================================================
 * main
 * ======================================================================== */

static int options_parse(options_t *opts, int argc, char **argv, bool *help)
{
    static const char *const valued[] = {"feed",  "endpoint", "keys", "as",
                                         "state", "types",    "from", "count"};
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strncmp(arg, "--", 2) != 0)
            return usage_error("unexpected argument '%s'", arg);
        const char *name = arg + 2;
        const char *value = NULL;
        char key[32];
        const char *equals = strchr(name, '=');
        size_t name_len = equals ? (size_t)(equals - name) : strlen(name);
        if (name_len >= sizeof key)
            return usage_error("unknown option '%s'", arg);
        memcpy(key, name, name_len);
        key[name_len] = '\0';
        bool takes_value = false;
        for (size_t v = 0; v < sizeof valued / sizeof valued[0]; v++)
            if (strcmp(key, valued[v]) == 0)
                takes_value = true;
        if (takes_value) {
            if (equals)
                value = equals + 1;
            else if (i + 1 < argc)
                value = argv[++i];
            else
                return usage_error("--%s needs a value", key);
        } else if (equals) {
            return usage_error("--%s takes no value", key);
        }
        if (strcmp(key, "feed") == 0) {
            opts->feed = value;
        } else if (strcmp(key, "endpoint") == 0) {
            opts->endpoint = value;
        } else if (strcmp(key, "keys") == 0) {
            opts->keys_dir = value;
        } else if (strcmp(key, "as") == 0) {
            opts->as = value;
        } else if (strcmp(key, "state") == 0) {
            opts->state_path = value;
        } else if (strcmp(key, "types") == 0) {
            opts->types = value;
        } else if (strcmp(key, "from") == 0) {
            opts->from = value;
        } else if (strcmp(key, "count") == 0) {
            char *end;
            errno = 0;
            long count = strtol(value, &end, 10);
            if (errno || end == value || *end || count < 1)
                return usage_error("--count: '%s' is not a positive integer", value);
            opts->count = count;
        } else if (strcmp(key, "insecure") == 0) {
            opts->insecure = true;
        } else if (strcmp(key, "json") == 0) {
            opts->json = true;
        } else if (strcmp(key, "help") == 0) {
            *help = true;
        } else {
            return usage_error("unknown option '%s'", arg);
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    log_init("passerelle-feed");
    /* CZMQ's signal handlers from the start, so that SIGINT/SIGTERM always
     * end the run through the loop (zsys_interrupted), state saved. */
    zsys_init();
    options_t opts = {
        .feed = config_str("PASSERELLE_FEED_ENDPOINT", "tcp://127.0.0.1:7406"),
        .endpoint = config_str("PASSERELLE_NOTIFICATIONS_ENDPOINT", "tcp://127.0.0.1:7402"),
        .keys_dir = config_str("PASSERELLE_KEYS_DIR", "./var/keys"),
        .as = config_str("PASSERELLE_CLIENT", "admin"),
    };
    if (!config_bool("PASSERELLE_INSECURE", false, &opts.insecure))
        return usage_error("PASSERELLE_INSECURE must be true or false");
    bool help = false;
    int rc = options_parse(&opts, argc, argv, &help);
    if (rc)
        return rc;
    if (help) {
        usage(stdout);
        return 0;
    }
    if (!opts.insecure && !identity_name_valid(opts.as))
        return usage_error("--as: '%s' is not a key name", opts.as);

    subscriber_t self = {.opts = &opts};
    rc = subscriber_split_types(&self, opts.types);
    if (!rc)
        rc = subscriber_start_position(&self);
    if (!rc)
        rc = subscriber_connect(&self);
    if (!rc)
        rc = subscriber_run(&self);
    subscriber_close(&self);
    if (!rc && zsys_interrupted)
        log_info("stopping on signal", "{s:s}", "position", self.known ? self.last : "");
    return rc;
}
