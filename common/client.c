/* The request client: the zguide's Lazy Pirate over a DEALER socket.
 *
 * A DEALER, unlike a REQ, does not lock up when a reply is lost, but replies
 * to attempts we gave up on can still arrive: each carries its request id,
 * and anything that is not the reply to the current call is dropped. The
 * socket is still closed and reopened after a timeout, so that requests
 * queued for a peer that went away are thrown out (linger 0) instead of
 * being delivered late.
 *
 * Two server keys (a rotation of the services' key, see client.h and
 * serverkeys.h): a socket monitor sees a failed handshake within a round
 * trip, and again at every reconnection. So with two keys the socket gets
 * a monitor, and a failed handshake sends the request again at once on a
 * socket with the other key: the switch costs a round trip, not a
 * timeout. An attempt that times out without any handshake having
 * succeeded switches too, for whatever the monitor cannot see. A failure of
 * ZAP (HANDSHAKE_FAILED_AUTH) says the server key was right and our own is
 * refused: no switch. With one key nothing of this runs: no monitor. */
#include "client.h"
#include "envelope.h"
#include "ids.h"
#include "log.h"
#include "serverkeys.h"
#include "status.h"

#include <czmq.h>
#include <jansson.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CLIENT_DEFAULT_TIMEOUT_MS 3000
#define CLIENT_DEFAULT_RETRIES    2
/* Pause before retrying an UNAVAILABLE reply: the dependency needs a moment,
 * but the pause stays well inside one attempt's timeout. */
#define CLIENT_UNAVAILABLE_PAUSE_MS 200

struct client_t {
    char *endpoint;
    bool insecure;
    int timeout_ms;
    int retries;
    zcert_t *cert;
    /* the services' keys, the one in use being the one that last worked;
     * with two, they watch the dealer's handshakes. NULL when insecure. */
    serverkeys_t *keys;
    zsock_t *dealer;
    bool handshake_ok; /* the dealer's last handshake succeeded */
    int last_attempts;
};

/* ------------------------------------------------------------------------
 * The socket and its monitor */

/* With two server keys: the dealer's handshakes are watched. */
static bool client_rotating(const client_t *self)
{
    return self->keys && serverkeys_count(self->keys) > 1;
}

static void client_close(client_t *self)
{
    if (self->keys)
        serverkeys_monitor_stop(self->keys);
    zsock_destroy(&self->dealer);
    self->handshake_ok = false;
}

static int client_open(client_t *self)
{
    client_close(self);
    self->dealer = zsock_new(ZMQ_DEALER);
    if (!self->dealer)
        return -1;
    zsock_set_linger(self->dealer, 0);
    if (!self->insecure) {
        zcert_apply(self->cert, self->dealer);
        zsock_set_curve_serverkey(self->dealer, serverkeys_current(self->keys));
        if (client_rotating(self) && serverkeys_monitor_start(self->keys, self->dealer) != 0)
            /* the timeouts still switch keys, one attempt later */
            log_warn("cannot watch the handshakes; a server key not taken is seen at a timeout",
                     "{s:s, s:s}", "endpoint", self->endpoint, "error", zmq_strerror(zmq_errno()));
    }
    if (zsock_connect(self->dealer, "%s", self->endpoint) != 0) {
        log_error("cannot connect", "{s:s, s:s}", "endpoint", self->endpoint, "error",
                  zmq_strerror(zmq_errno()));
        client_close(self);
        return -1;
    }
    return 0;
}

/* Moves to the other server key; the caller reopens the socket. */
static void client_switch_key(client_t *self, const char *reason)
{
    const char *from = serverkeys_current_name(self->keys);
    serverkeys_switch(self->keys);
    log_info("server key not taken, trying the other", "{s:s, s:s, s:s, s:s}", "endpoint",
             self->endpoint, "from", from, "to", serverkeys_current_name(self->keys), "reason",
             reason);
}

/* Reads one monitor event: true if it says the server refused our server
 * key (a failed handshake that is not a ZAP refusal). Keeps handshake_ok. */
static bool client_monitor_read(client_t *self)
{
    int detail = 0;
    switch (serverkeys_monitor_read(self->keys, &detail)) {
    case SERVERKEYS_SUCCEEDED:
        self->handshake_ok = true;
        return false;
    case SERVERKEYS_WRONG_KEY:
        self->handshake_ok = false;
        log_debug("handshake failed", "{s:s, s:s, s:i}", "endpoint", self->endpoint, "key",
                  serverkeys_current_name(self->keys), "detail", detail);
        return true;
    case SERVERKEYS_AUTH_REFUSED:
        /* the service read our HELLO, so its key is right; ours is not
         * authorized, which the other server key would not change */
        self->handshake_ok = false;
        log_debug("the service refused our key", "{s:s, s:i}", "endpoint", self->endpoint, "status",
                  detail);
        return false;
    default:
        return false;
    }
}

/* ------------------------------------------------------------------------
 * Making one */

client_t *client_new(const client_config_t *cfg, char *err, size_t err_size)
{
    if (!cfg || !cfg->endpoint) {
        snprintf(err, err_size, "no endpoint");
        return NULL;
    }
    client_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    self->endpoint = strdup(cfg->endpoint);
    self->insecure = cfg->insecure;
    self->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : CLIENT_DEFAULT_TIMEOUT_MS;
    self->retries = cfg->retries >= 0 ? cfg->retries : CLIENT_DEFAULT_RETRIES;
    if (!self->endpoint) {
        snprintf(err, err_size, "out of memory");
        client_destroy(&self);
        return NULL;
    }
    if (!self->insecure) {
        if (!cfg->client_cert_path || !cfg->server_public_path) {
            snprintf(err, err_size,
                     "client and server certificates are needed without "
                     "PASSERELLE_INSECURE");
            client_destroy(&self);
            return NULL;
        }
        self->cert = zcert_load(cfg->client_cert_path);
        if (!self->cert ||
            streq(zcert_secret_txt(self->cert), "0000000000000000000000000000000000000000")) {
            snprintf(err, err_size, "cannot read the client secret certificate %s",
                     cfg->client_cert_path);
            client_destroy(&self);
            return NULL;
        }
        self->keys =
            serverkeys_new(cfg->server_public_path, cfg->server_next_public_path, err, err_size);
        if (!self->keys) {
            client_destroy(&self);
            return NULL;
        }
    }
    if (client_open(self) != 0) {
        snprintf(err, err_size, "cannot connect to %s", cfg->endpoint);
        client_destroy(&self);
        return NULL;
    }
    return self;
}

void client_destroy(client_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    client_t *self = *self_p;
    client_close(self);
    serverkeys_destroy(&self->keys);
    zcert_destroy(&self->cert);
    free(self->endpoint);
    free(self);
    *self_p = NULL;
}

bool client_uses_next_key(const client_t *self)
{
    return self && self->keys && serverkeys_uses_next(self->keys);
}

int client_last_attempts(const client_t *self)
{
    return self ? self->last_attempts : 0;
}

/* ------------------------------------------------------------------------
 * Calls */

/* [empty][payload], as a REQ socket would frame it. */
static int client_send(client_t *self, const void *frame, size_t len)
{
    if (!self->dealer && client_open(self) != 0)
        return -1;
    void *socket = zsock_resolve(self->dealer);
    if (zmq_send(socket, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT) != 0)
        return -1;
    return zmq_send(socket, frame, len, ZMQ_DONTWAIT) < 0 ? -1 : 0;
}

/* Receives one reply until deadline_ms (absolute, zclock_mono). Returns the
 * unpacked reply, or NULL on timeout, or NULL with *key_refused set when the
 * monitor saw the service refuse the server key. A message that is not a
 * reply envelope is dropped and the wait goes on. */
static Passerelle__Reply *client_receive(client_t *self, int64_t deadline_ms, bool *key_refused)
{
    *key_refused = false;
    while (true) {
        int64_t left = deadline_ms - zclock_mono();
        if (left <= 0)
            return NULL;
        zsock_t *monitor = self->keys ? serverkeys_monitor(self->keys) : NULL;
        zmq_pollitem_t items[2] = {{zsock_resolve(self->dealer), 0, ZMQ_POLLIN, 0},
                                   {monitor ? zsock_resolve(monitor) : NULL, 0, ZMQ_POLLIN, 0}};
        int rc = zmq_poll(items, monitor ? 2 : 1, (long)left);
        if (rc < 0) {
            if (zmq_errno() == EINTR && !zsys_interrupted)
                continue;
            return NULL;
        }
        if (rc == 0)
            continue;
        if (!(items[0].revents & ZMQ_POLLIN)) {
            /* the monitor's turn only when no reply waits: a reply is the
             * better news */
            if (monitor && (items[1].revents & ZMQ_POLLIN) && client_monitor_read(self)) {
                *key_refused = true;
                return NULL;
            }
            continue;
        }
        zmsg_t *msg = zmsg_recv(self->dealer);
        if (!msg)
            return NULL;
        zframe_t *payload = zmsg_last(msg);
        Passerelle__Reply *reply =
            payload ? passerelle__reply__unpack(NULL, zframe_size(payload), zframe_data(payload))
                    : NULL;
        if (!reply)
            log_debug("dropping a reply that does not decode", "{s:I}", "frames",
                      (json_int_t)zmsg_size(msg));
        zmsg_destroy(&msg);
        if (reply)
            return reply;
    }
}

/* One attempt: sends frame and waits until deadline_ms for the reply to
 * request_id (NULL: the first reply). A server key the service refuses
 * moves to the other key once, and the frame goes again on a new socket
 * within the same deadline. Returns the reply, or NULL on timeout;
 * *sent false when the frame could not even be queued. */
static Passerelle__Reply *client_attempt(client_t *self, const void *frame, size_t len,
                                         const char *request_id, int64_t deadline_ms, bool *sent)
{
    *sent = client_send(self, frame, len) == 0;
    if (!*sent)
        return NULL;
    bool switched = false;
    while (true) {
        bool key_refused = false;
        Passerelle__Reply *reply = client_receive(self, deadline_ms, &key_refused);
        if (reply) {
            if (!request_id || (reply->request_id && strcmp(reply->request_id, request_id) == 0))
                return reply;
            log_debug("dropping a reply to an earlier request", "{s:s}", "request_id",
                      reply->request_id ? reply->request_id : "");
            passerelle__reply__free_unpacked(reply, NULL);
            continue;
        }
        if (!key_refused)
            return NULL;
        /* Once per attempt: when neither key is taken, the wait goes on
         * (the service may be mid-restart) rather than flip between them. */
        if (switched || !client_rotating(self))
            continue;
        switched = true;
        client_switch_key(self, "handshake failed");
        if (client_open(self) != 0 || client_send(self, frame, len) != 0)
            return NULL;
    }
}

/* After an attempt without a reply: a socket whose handshake never
 * succeeded may hold the wrong server key (the handshake failed unseen),
 * so the next attempt tries the other. */
static void client_after_timeout(client_t *self)
{
    if (client_rotating(self) && !self->handshake_ok)
        client_switch_key(self, "no handshake before the timeout");
    client_open(self);
}

int client_call(client_t *self, const char *type, const ProtobufCMessage *body,
                const char *idempotency_key, Passerelle__Reply **reply_p)
{
    *reply_p = NULL;
    self->last_attempts = 0;
    char request_id[ID_LEN], fresh_key[ID_LEN];
    id_new('Q', request_id);
    if (!idempotency_key || !*idempotency_key) {
        id_new('K', fresh_key);
        idempotency_key = fresh_key;
    }
    size_t len = 0;
    uint8_t *frame = envelope_encode_request(request_id, type, idempotency_key, body, &len);
    if (!frame)
        return -1;

    int attempts = self->retries + 1;
    Passerelle__Reply *answer = NULL;
    for (int attempt = 1; attempt <= attempts && !answer; attempt++) {
        if (zsys_interrupted)
            break;
        self->last_attempts = attempt;
        int64_t deadline = zclock_mono() + self->timeout_ms;
        bool sent = false;
        Passerelle__Reply *reply = client_attempt(self, frame, len, request_id, deadline, &sent);
        if (!sent) {
            /* could not even queue it: wait out the attempt so the retry
             * schedule stays the same as for a lost reply */
            zclock_sleep((int)(deadline - zclock_mono()));
            client_open(self);
            continue;
        }
        if (!reply) {
            log_debug("no reply, reconnecting", "{s:s, s:s, s:i, s:i}", "type", type, "endpoint",
                      self->endpoint, "attempt", attempt, "timeout_ms", self->timeout_ms);
            client_after_timeout(self);
            continue;
        }
        if (reply->has_status && reply->status == PASSERELLE__STATUS__STATUS_UNAVAILABLE &&
            attempt < attempts) {
            log_debug("service unavailable, retrying", "{s:s, s:s}", "type", type, "message",
                      reply->message ? reply->message : "");
            passerelle__reply__free_unpacked(reply, NULL);
            int pause = CLIENT_UNAVAILABLE_PAUSE_MS;
            if (pause > self->timeout_ms / 2)
                pause = self->timeout_ms / 2;
            zclock_sleep(pause);
            continue;
        }
        answer = reply;
    }
    free(frame);
    if (!answer)
        return -1;
    *reply_p = answer;
    return 0;
}

int client_call_raw(client_t *self, const void *frame, size_t len, Passerelle__Reply **reply_p)
{
    *reply_p = NULL;
    int64_t deadline = zclock_mono() + self->timeout_ms;
    bool sent = false;
    Passerelle__Reply *reply = client_attempt(self, frame, len, NULL, deadline, &sent);
    if (!reply) {
        if (sent)
            client_after_timeout(self);
        else
            client_open(self);
        return -1;
    }
    *reply_p = reply;
    return 0;
}

/* ------------------------------------------------------------------------
 * Several requests in flight (client.h) */

int client_send_request(client_t *self, const char *request_id, const char *type,
                        const ProtobufCMessage *body, const char *idempotency_key)
{
    size_t len = 0;
    uint8_t *frame = envelope_encode_request(request_id, type, idempotency_key, body, &len);
    if (!frame)
        return -1;
    int rc = client_send(self, frame, len);
    free(frame);
    return rc;
}

int client_receive_reply(client_t *self, int timeout_ms, Passerelle__Reply **reply_p)
{
    *reply_p = NULL;
    if (!self->dealer)
        return -1;
    int64_t deadline = zclock_mono() + (timeout_ms > 0 ? timeout_ms : self->timeout_ms);
    bool key_refused = false;
    /* A refused server key shows here as a wait that ends without a reply:
     * the caller's client_reopen then moves to the other key. */
    *reply_p = client_receive(self, deadline, &key_refused);
    return *reply_p ? 0 : -1;
}

void client_reopen(client_t *self)
{
    client_after_timeout(self);
}
