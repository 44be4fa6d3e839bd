/* The envelope codec: request and reply envelopes to and from frames.
 *
 * A request frame larger than the service's limit, or one that does not
 * decode, or one without a type, is answered with INVALID_ARGUMENT (field
 * "frame", or "type") and the service goes on. (A frame beyond the socket's
 * hard limit, several times larger, is dropped by ZeroMQ itself, which
 * disconnects the peer: that is the memory bound.) */
#ifndef PASSERELLE_ENVELOPE_H
#define PASSERELLE_ENVELOPE_H

#include "envelope.pb-c.h"
#include "status.h"

#include <stddef.h>
#include <stdint.h>

/* Decodes a request frame. Returns the envelope (free with
 * passerelle__request__free_unpacked(req, NULL)) or NULL, in which case
 * *status, field (at least 32 bytes) and message (at least 256 bytes) say
 * why. */
Passerelle__Request *envelope_decode_request(const uint8_t *data, size_t len, size_t max_len,
                                             status_t *status, char *field, char *message);

/* Packs a reply envelope into a malloc'd buffer; *len_p gets its length. */
uint8_t *envelope_encode_reply(const char *request_id, status_t status, const char *message,
                               const char *field, const uint8_t *body, size_t body_len,
                               size_t *len_p);

/* Packs a request envelope; body is packed from msg (NULL: empty body). */
uint8_t *envelope_encode_request(const char *request_id, const char *type,
                                 const char *idempotency_key, const ProtobufCMessage *msg,
                                 size_t *len_p);

/* Replaces the request id of a packed reply (a stored reply being returned
 * to a retry). Returns a new malloc'd buffer, or NULL if it doesn't decode. */
uint8_t *envelope_rebrand_reply(const uint8_t *reply, size_t len, const char *request_id,
                                size_t *len_p);

#endif
