/* Identity: who is calling, from the CURVE key it authenticated with.
 *
 * The key directory (PASSERELLE_KEYS_DIR, default ./var/keys):
 *   server.key, server.key_secret   the services' certificate
 *   authorized/<name>.key           public certificates of every allowed
 *                                   caller, with metadata "party" and "name";
 *                                   zauth accepts exactly these keys
 *   clients/<name>.key_secret       secret certificates of local clients (the
 *                                   CLI's), made by `passerelle keygen`
 * The party in a caller's certificate is the only source of its role: a
 * party written in a message is never trusted. */
#ifndef PASSERELLE_IDENTITY_H
#define PASSERELLE_IDENTITY_H

#include <stdbool.h>
#include <stddef.h>

typedef enum {
    PARTY_NONE = 0,
    PARTY_METROPOLE = 1 << 0,       /* Métropole housing staff */
    PARTY_ACTION_LOGEMENT = 1 << 1, /* AL's correspondents */
    PARTY_OPERATOR = 1 << 2,        /* PIG/OPAH operators mandated by the Métropole */
    PARTY_PARTNER = 1 << 3,         /* partner systems (ADIL, ARHLM, ...) */
    PARTY_ADMIN = 1 << 4,           /* operations */
    PARTY_SERVICE = 1 << 5,         /* another Passerelle service */
} party_t;

#define PARTY_ANY                                                                                  \
    (PARTY_METROPOLE | PARTY_ACTION_LOGEMENT | PARTY_OPERATOR | PARTY_PARTNER | PARTY_ADMIN |      \
     PARTY_SERVICE)

/* "ACTION_LOGEMENT" etc.; "NONE" for anything else. */
const char *party_name(party_t party);
/* Any case; PARTY_NONE if unknown. */
party_t party_parse(const char *name);

#define KEY_Z85_LEN 40

typedef struct {
    party_t party;
    char name[64];             /* certificate's "name" metadata */
    char key[KEY_Z85_LEN + 1]; /* public key, Z85; "" in insecure mode */
} caller_t;

typedef struct keydir_t keydir_t;

/* Opens a key directory (does not need to exist yet). */
keydir_t *keydir_new(const char *dir);
void keydir_destroy(keydir_t **self_p);

/* Finds the caller with this public key among the authorized keys (the
 * directory is re-read when it changes). False if unknown or its party
 * metadata is missing or invalid. */
bool keydir_lookup(keydir_t *self, const char *public_key_z85, caller_t *out);

/* The same lookup in two steps, for a server naming many callers at once:
 * keydir_refresh() checks the directory (a stat, or more: see
 * keydir_lookup), keydir_lookup_fresh() then names callers from the cache
 * without any system call, except that a key it does not know still
 * reloads the directory (rate-limited) as keydir_lookup does. A key removed
 * from the directory stops being named at the next refresh. */
void keydir_refresh(keydir_t *self);
bool keydir_lookup_fresh(keydir_t *self, const char *public_key_z85, caller_t *out);

/* Paths inside the directory, written into out. */
void keydir_server_cert_path(const char *dir, char *out, size_t out_size); /* secret */
void keydir_server_public_path(const char *dir, char *out, size_t out_size);
void keydir_authorized_dir(const char *dir, char *out, size_t out_size);
void keydir_client_cert_path(const char *dir, const char *name, char *out, size_t out_size);

/* Makes a client key pair: clients/<name>.key_secret (+ .key) and
 * authorized/<name>.key, with metadata name and party. Refuses to overwrite
 * an existing name. Returns 0, or -1 with a message in err. */
int identity_keygen_client(const char *dir, const char *name, party_t party, char *err,
                           size_t err_size);

/* Makes the server certificate if there is none. Returns 0 (made or already
 * there), or -1 with a message in err. */
int identity_keygen_server(const char *dir, char *err, size_t err_size);

/* True if name is usable as a key name: [A-Za-z0-9._-]{1,63}, not starting
 * with '.'. */
bool identity_name_valid(const char *name);

#endif
