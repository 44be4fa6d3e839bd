/* Identity: who is calling, from the CURVE key it authenticated with.
 *
 * The key directory (PASSERELLE_KEYS_DIR, default ./var/keys):
 *   server.key, server.key_secret   the services' certificate
 *   server.next.key[_secret]        during a rotation, the certificate the
 *                                   services move to next (clients that hold
 *                                   server.next.key accept either)
 *   server.previous.key[_secret]    the certificate a promotion replaced
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

/* How many authorized certificates the folder holds that parse and name a
 * party: the callers who can be named (refreshed first, as keydir_lookup). */
size_t keydir_count(keydir_t *self);
bool keydir_lookup_fresh(keydir_t *self, const char *public_key_z85, caller_t *out);

/* Paths inside the directory, written into out. */
void keydir_server_cert_path(const char *dir, char *out, size_t out_size); /* secret */
void keydir_server_public_path(const char *dir, char *out, size_t out_size);
void keydir_authorized_dir(const char *dir, char *out, size_t out_size);
void keydir_client_cert_path(const char *dir, const char *name, char *out, size_t out_size);
void keydir_server_next_cert_path(const char *dir, char *out, size_t out_size); /* secret */
void keydir_server_next_public_path(const char *dir, char *out, size_t out_size);

/* The public key (Z85, KEY_Z85_LEN + 1 bytes) of the certificate file at
 * path, public or secret, into key. False if the file cannot be read or is
 * not a certificate; unlike CZMQ 4.2.1's zcert_load, a file that does not
 * parse leaks nothing. */
bool identity_cert_public_key(const char *path, char *key);

/* Makes a client key pair: clients/<name>.key_secret (+ .key) and
 * authorized/<name>.key, with metadata name and party. Refuses to overwrite
 * an existing name. Returns 0, or -1 with a message in err. */
int identity_keygen_client(const char *dir, const char *name, party_t party, char *err,
                           size_t err_size);

/* Makes the server certificate if there is none. Returns 0 (made or already
 * there), or -1 with a message in err. */
int identity_keygen_server(const char *dir, char *err, size_t err_size);

/* Makes the services' next certificate, server.next.key and
 * server.next.key_secret, beside the current one (which must be there: this
 * is the services' key folder). Refuses if either file exists. The files
 * appear whole (written beside, then renamed), the public one last, so a
 * client that sees server.next.key can read it. Returns 0, or -1 with a
 * message in err. */
int identity_keygen_server_next(const char *dir, char *err, size_t err_size);

/* Promotes the next certificate: the current server.key[_secret] is kept as
 * server.previous.key[_secret], then server.next.key[_secret] replace
 * server.key[_secret], each by one rename, the secret first. A service
 * reads only server.key_secret, which holds both halves, so one starting
 * meanwhile finds a whole certificate, the old or the new; a client sees
 * server.key and server.next.key as {old, new} until the last rename, then
 * {new}. Works on the services' folder (the next secret is there) and on a
 * client's (public halves only); *with_secret (may be NULL) says which it
 * was. Running it again after an interruption finishes the job. Returns 0,
 * or -1 with a message in err (nothing to promote, a folder holding the
 * services' secret but not the next one's, a file that is not a
 * certificate). */
int identity_promote_server_next(const char *dir, bool *with_secret, char *err, size_t err_size);

/* True if name is usable as a key name: [A-Za-z0-9._-]{1,63}, not starting
 * with '.'. */
bool identity_name_valid(const char *name);

#endif
