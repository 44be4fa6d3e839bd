/* Status codes of a reply, after gRPC's. The numbers are those of the
 * Status enum in proto/envelope.proto, so a status_t travels as is. */
#ifndef PASSERELLE_STATUS_H
#define PASSERELLE_STATUS_H

typedef enum {
    ST_OK = 0,
    ST_INVALID_ARGUMENT = 3,
    ST_NOT_FOUND = 5,
    ST_ALREADY_EXISTS = 6,
    ST_PERMISSION_DENIED = 7,
    ST_RESOURCE_EXHAUSTED = 8,
    ST_FAILED_PRECONDITION = 9,
    ST_CONFLICT = 10,
    ST_INTERNAL = 13,
    ST_UNAVAILABLE = 14,
    ST_DATA_LOSS = 15,
    ST_UNAUTHENTICATED = 16,
} status_t;

/* "INVALID_ARGUMENT" for ST_INVALID_ARGUMENT; "UNKNOWN" for anything else.
 * The string is static. */
const char *status_name(int status);

/* Inverse of status_name, without regard to case; -1 if unknown. */
int status_parse(const char *name);

#endif
