/* The request client: one DEALER socket to a service, with a timeout and
 * retries (the zguide's Lazy Pirate pattern): if no reply comes within
 * timeout_ms, the socket is closed and reopened and the same request, with
 * the same request id and idempotency key, is sent again, at most retries
 * times. A reply saying UNAVAILABLE is retried the same way after a short
 * pause. This is safe because every write is idempotent. Replies to earlier
 * attempts are recognised by request id and dropped.
 *
 * While the services' key is rotated, a client may know two server keys
 * (server.key and server.next.key): it uses the one that last worked, and
 * moves to the other when the service does not take it. A CURVE handshake
 * with the wrong server key is dropped by the service, so this is seen as
 * a failed handshake (a socket monitor reports it at once) or, failing
 * that, as an attempt that times out without a handshake: the same request
 * is then sent with the other key, inside the same attempt in the first
 * case, at the next attempt in the second. The key that answers is kept
 * for the rest of the client's life. */
#ifndef PASSERELLE_CLIENT_H
#define PASSERELLE_CLIENT_H

#include "envelope.pb-c.h"

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct {
    const char *endpoint;           /* "tcp://127.0.0.1:7401" */
    const char *server_public_path; /* server.key (public certificate) */
    /* server.next.key during a rotation of the services' key: tried when
     * server_public_path's is not taken. NULL, or a file that does not
     * exist: none. */
    const char *server_next_public_path;
    const char *client_cert_path; /* the caller's .key_secret */
    bool insecure;                /* plain text, no certificates */
    int timeout_ms;               /* per attempt; <=0 default 3000 */
    int retries;                  /* after the first attempt: 0 none, <0 default 2 */
} client_config_t;

typedef struct client_t client_t;

/* Loads the certificates and connects (lazily, as ZeroMQ does). NULL with a
 * message in err if a certificate cannot be read. */
client_t *client_new(const client_config_t *cfg, char *err, size_t err_size);
void client_destroy(client_t **self_p);

/* Sends one request and waits for its reply. idempotency_key may be NULL: a
 * fresh one is made and kept across the retries of this call. body may be
 * NULL for an empty request. Returns 0 with *reply_p set (free with
 * passerelle__reply__free_unpacked(reply, NULL)), or -1 if no reply came
 * after all attempts (unreachable). */
int client_call(client_t *self, const char *type, const ProtobufCMessage *body,
                const char *idempotency_key, Passerelle__Reply **reply_p);

/* Which server key the client uses now: false server_public_path's,
 * true server_next_public_path's. */
bool client_uses_next_key(const client_t *self);

/* How many attempts the last client_call made (1: answered at the first;
 * 0 before any call). */
int client_last_attempts(const client_t *self);

/* Sends raw bytes as a request frame and waits for one reply frame, without
 * retries (tests of malformed and oversized frames). Returns 0 with *reply_p,
 * or -1 on timeout. */
int client_call_raw(client_t *self, const void *frame, size_t len, Passerelle__Reply **reply_p);

/* ---- several requests in flight ----
 * For a transfer that keeps a window of requests outstanding (a document's
 * chunks or ranges: the zguide's credit-based flow control). A request is
 * sent without waiting for its reply; replies are taken as they come, the
 * caller matching each to its request by request id. Nothing is retried
 * here: when a reply is overdue, the caller reopens the socket
 * (client_reopen drops whatever is still queued on it) and sends again,
 * with the same request ids and idempotency keys, what it still waits for,
 * as client_call does for one request. Send one request with client_call
 * first, so that a rotation of the server key is settled there. */

/* Sends one request under request_id (an id the caller made, ids.h 'Q');
 * idempotency_key NULL for none (a request idempotent by itself). Returns
 * 0, or -1 if it could not be queued. */
int client_send_request(client_t *self, const char *request_id, const char *type,
                        const ProtobufCMessage *body, const char *idempotency_key);

/* Waits up to timeout_ms (<= 0: the client's own timeout) for the next
 * reply, whichever request it answers. Returns 0 with *reply_p (free with
 * passerelle__reply__free_unpacked), or -1 on timeout. */
int client_receive_reply(client_t *self, int timeout_ms, Passerelle__Reply **reply_p);

/* Closes and reopens the socket after a reply did not come in time (the
 * server key switches as after a timeout of client_call). */
void client_reopen(client_t *self);

#endif
