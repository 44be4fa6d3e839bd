/* The request client: the zguide's Lazy Pirate over a DEALER socket.
 *
 * A DEALER, unlike a REQ, does not lock up when a reply is lost, but replies
 * to attempts we gave up on can still arrive: each carries its request id,
 * and anything that is not the reply to the current call is dropped. The
 * socket is still closed and reopened after a timeout, so that requests
 * queued for a peer that went away are thrown out (linger 0) instead of
 * being delivered late. */
#include "client.h"
#include "envelope.h"
#include "ids.h"
#include "log.h"
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
    char server_key[41];
    zsock_t *dealer;
};

static int client_open(client_t *self)
{
    zsock_destroy(&self->dealer);
    self->dealer = zsock_new(ZMQ_DEALER);
    if (!self->dealer)
        return -1;
    zsock_set_linger(self->dealer, 0);
    if (!self->insecure) {
        zcert_apply(self->cert, self->dealer);
        zsock_set_curve_serverkey(self->dealer, self->server_key);
    }
    if (zsock_connect(self->dealer, "%s", self->endpoint) != 0) {
        log_error("cannot connect", "{s:s, s:s}", "endpoint", self->endpoint, "error",
                  zmq_strerror(zmq_errno()));
        zsock_destroy(&self->dealer);
        return -1;
    }
    return 0;
}

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
        zcert_t *server = zcert_load(cfg->server_public_path);
        if (!server) {
            snprintf(err, err_size, "cannot read the server certificate %s",
                     cfg->server_public_path);
            client_destroy(&self);
            return NULL;
        }
        snprintf(self->server_key, sizeof self->server_key, "%s", zcert_public_txt(server));
        zcert_destroy(&server);
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
    zsock_destroy(&self->dealer);
    zcert_destroy(&self->cert);
    free(self->endpoint);
    free(self);
    *self_p = NULL;
}

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
 * unpacked reply, or NULL on timeout. A message that is not a reply
 * envelope is dropped and the wait goes on. */
static Passerelle__Reply *client_receive(client_t *self, int64_t deadline_ms)
{
    void *socket = zsock_resolve(self->dealer);
    while (true) {
        int64_t left = deadline_ms - zclock_mono();
        if (left <= 0)
            return NULL;
        zmq_pollitem_t item = {socket, 0, ZMQ_POLLIN, 0};
        int rc = zmq_poll(&item, 1, (long)left);
        if (rc < 0) {
            if (zmq_errno() == EINTR && !zsys_interrupted)
                continue;
            return NULL;
        }
        if (rc == 0)
            continue;
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

int client_call(client_t *self, const char *type, const ProtobufCMessage *body,
                const char *idempotency_key, Passerelle__Reply **reply_p)
{
    *reply_p = NULL;
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
        int64_t deadline = zclock_mono() + self->timeout_ms;
        if (client_send(self, frame, len) != 0) {
            /* could not even queue it: wait out the attempt so the retry
             * schedule stays the same as for a lost reply */
            zclock_sleep((int)(deadline - zclock_mono()));
            client_open(self);
            continue;
        }
        Passerelle__Reply *reply = NULL;
        while ((reply = client_receive(self, deadline))) {
            if (reply->request_id && strcmp(reply->request_id, request_id) == 0)
                break;
            log_debug("dropping a reply to an earlier request", "{s:s}", "request_id",
                      reply->request_id ? reply->request_id : "");
            passerelle__reply__free_unpacked(reply, NULL);
        }
        if (!reply) {
            log_debug("no reply, reconnecting", "{s:s, s:s, s:i, s:i}", "type", type, "endpoint",
                      self->endpoint, "attempt", attempt, "timeout_ms", self->timeout_ms);
            client_open(self);
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
    if (client_send(self, frame, len) != 0) {
        client_open(self);
        return -1;
    }
    Passerelle__Reply *reply = client_receive(self, deadline);
    if (!reply) {
        client_open(self);
        return -1;
    }
    *reply_p = reply;
    return 0;
}
