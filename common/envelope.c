/* Envelope codec: the only place that packs and unpacks the request and
 * reply envelopes of proto/envelope.proto.
 *
 * A request frame comes from outside and is treated as hostile: its size is
 * capped before protobuf-c sees it (protobuf-c has no nesting limit and would
 * allocate in proportion to the input), and its type must be a short
 * printable name, since it ends up in logs, Redis keys and error messages. */
#include "envelope.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ENVELOPE_TYPE_MAX 128

/* protobuf-c mallocs through its own allocator; a zero-length packed
 * message still needs a valid, freeable buffer. */
static uint8_t *envelope_pack(const ProtobufCMessage *msg, size_t *len_p)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        return NULL;
    protobuf_c_message_pack(msg, buf);
    *len_p = len;
    return buf;
}

static bool envelope_type_valid(const char *type)
{
    size_t len = strlen(type);
    if (len == 0 || len > ENVELOPE_TYPE_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (type[i] <= 0x20 || type[i] >= 0x7f)
            return false;
    return true;
}

Passerelle__Request *envelope_decode_request(const uint8_t *data, size_t len, size_t max_len,
                                             status_t *status, char *field, char *message)
{
    *status = ST_OK;
    field[0] = '\0';
    message[0] = '\0';
    if (len > max_len) {
        *status = ST_INVALID_ARGUMENT;
        snprintf(field, 32, "frame");
        snprintf(message, 256, "request frame of %zu bytes is over the limit of %zu bytes", len,
                 max_len);
        return NULL;
    }
    Passerelle__Request *req = passerelle__request__unpack(NULL, len, data);
    if (!req) {
        *status = ST_INVALID_ARGUMENT;
        snprintf(field, 32, "frame");
        snprintf(message, 256, "request frame of %zu bytes is not a request envelope", len);
        return NULL;
    }
    if (!req->type || !*req->type) {
        *status = ST_INVALID_ARGUMENT;
        snprintf(field, 32, "type");
        snprintf(message, 256, "request has no type");
        passerelle__request__free_unpacked(req, NULL);
        return NULL;
    }
    if (!envelope_type_valid(req->type)) {
        *status = ST_INVALID_ARGUMENT;
        snprintf(field, 32, "type");
        snprintf(message, 256, "request type must be 1 to %d printable characters without spaces",
                 ENVELOPE_TYPE_MAX);
        passerelle__request__free_unpacked(req, NULL);
        return NULL;
    }
    return req;
}

uint8_t *envelope_encode_reply(const char *request_id, status_t status, const char *message,
                               const char *field, const uint8_t *body, size_t body_len,
                               size_t *len_p)
{
    Passerelle__Reply reply = PASSERELLE__REPLY__INIT;
    /* protobuf-c's string fields are not const, but pack only reads them */
    reply.request_id = (char *)(request_id ? request_id : "");
    reply.has_status = true;
    reply.status = (Passerelle__Status)status;
    if (message && *message)
        reply.message = (char *)message;
    if (field && *field)
        reply.field = (char *)field;
    if (body && body_len) {
        reply.has_body = true;
        reply.body.data = (uint8_t *)body;
        reply.body.len = body_len;
    }
    return envelope_pack(&reply.base, len_p);
}

uint8_t *envelope_encode_request(const char *request_id, const char *type,
                                 const char *idempotency_key, const ProtobufCMessage *msg,
                                 size_t *len_p)
{
    Passerelle__Request req = PASSERELLE__REQUEST__INIT;
    req.request_id = (char *)(request_id ? request_id : "");
    req.type = (char *)type;
    if (idempotency_key && *idempotency_key)
        req.idempotency_key = (char *)idempotency_key;
    uint8_t *body = NULL;
    size_t body_len = 0;
    if (msg) {
        body = envelope_pack(msg, &body_len);
        if (!body)
            return NULL;
        if (body_len) {
            req.has_body = true;
            req.body.data = body;
            req.body.len = body_len;
        }
    }
    uint8_t *out = envelope_pack(&req.base, len_p);
    free(body);
    return out;
}

uint8_t *envelope_rebrand_reply(const uint8_t *reply, size_t len, const char *request_id,
                                size_t *len_p)
{
    Passerelle__Reply *stored = passerelle__reply__unpack(NULL, len, reply);
    if (!stored)
        return NULL;
    /* Swap the id in place and put the unpacked one back before freeing, so
     * the allocator frees what it allocated. */
    char *original = stored->request_id;
    stored->request_id = (char *)(request_id ? request_id : "");
    uint8_t *out = envelope_pack(&stored->base, len_p);
    stored->request_id = original;
    passerelle__reply__free_unpacked(stored, NULL);
    return out;
}
