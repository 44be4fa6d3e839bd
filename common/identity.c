/* Identity: the key directory, its certificates, and the mapping from an
 * authenticated CURVE public key to a party.
 *
 * zauth decides whether a key may connect at all (it reads authorized/ with
 * its own certificate store); this file only names a caller zauth already
 * let in. Both read the same folder, so a key added there is accepted and
 * named without a restart: the cache below is reloaded when the folder
 * changes, and once more whenever a key is not found (zauth only lets in keys
 * it found there, so a miss means our cache is behind). */
#include "identity.h"
#include "ids.h"

#include <czmq.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* Without a directory change, how often the files themselves are checked
 * (a certificate rewritten in place does not change the folder's mtime). */
#define KEYDIR_RECHECK_MS 1000
/* A miss reloads at most this often, so unknown keys cannot make every
 * request re-read the folder. */
#define KEYDIR_MISS_RELOAD_MS 100
/* A public certificate is about 300 bytes; anything far larger is not one. */
#define KEYDIR_CERT_MAX 16384

/* ------------------------------------------------------------------------
 * Parties */

static const struct {
    party_t party;
    const char *name;
} party_names[] = {
    {PARTY_METROPOLE, "METROPOLE"}, {PARTY_ACTION_LOGEMENT, "ACTION_LOGEMENT"},
    {PARTY_OPERATOR, "OPERATOR"},   {PARTY_PARTNER, "PARTNER"},
    {PARTY_ADMIN, "ADMIN"},         {PARTY_SERVICE, "SERVICE"},
};

const char *party_name(party_t party)
{
    for (size_t i = 0; i < sizeof party_names / sizeof party_names[0]; i++)
        if (party_names[i].party == party)
            return party_names[i].name;
    return "NONE";
}

party_t party_parse(const char *name)
{
    if (!name)
        return PARTY_NONE;
    for (size_t i = 0; i < sizeof party_names / sizeof party_names[0]; i++)
        if (strcasecmp(party_names[i].name, name) == 0)
            return party_names[i].party;
    return PARTY_NONE;
}

bool identity_name_valid(const char *name)
{
    if (!name || !*name || name[0] == '.')
        return false;
    size_t len = strlen(name);
    if (len > 63)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

/* ------------------------------------------------------------------------
 * Paths */

void keydir_server_cert_path(const char *dir, char *out, size_t out_size)
{
    snprintf(out, out_size, "%s/server.key_secret", dir);
}

void keydir_server_public_path(const char *dir, char *out, size_t out_size)
{
    snprintf(out, out_size, "%s/server.key", dir);
}

void keydir_authorized_dir(const char *dir, char *out, size_t out_size)
{
    snprintf(out, out_size, "%s/authorized", dir);
}

void keydir_client_cert_path(const char *dir, const char *name, char *out, size_t out_size)
{
    snprintf(out, out_size, "%s/clients/%s.key_secret", dir, name);
}

void keydir_server_next_cert_path(const char *dir, char *out, size_t out_size)
{
    snprintf(out, out_size, "%s/server.next.key_secret", dir);
}

void keydir_server_next_public_path(const char *dir, char *out, size_t out_size)
{
    snprintf(out, out_size, "%s/server.next.key", dir);
}

/* ------------------------------------------------------------------------
 * The key directory cache */

typedef struct {
    char key[KEY_Z85_LEN + 1];
    char name[64];
    party_t party;
} keydir_entry_t;

/* What the folder looked like at the last load: any difference reloads. */
typedef struct {
    bool exists;
    dev_t dev;
    ino_t ino;
    struct timespec mtime;
    size_t files;
    uint64_t bytes;
    int64_t newest_ns;
} keydir_signature_t;

struct keydir_t {
    char *dir;
    char authorized[PATH_MAX];
    keydir_entry_t *entries;
    size_t count;
    keydir_signature_t signature;
    bool loaded;
    int64_t checked_ms;     /* last full signature check */
    int64_t miss_reload_ms; /* last reload caused by a miss */
};

static bool keydir_is_public_cert(const char *file)
{
    size_t len = strlen(file);
    return file[0] != '.' && len > 4 && strcmp(file + len - 4, ".key") == 0;
}

/* Stats the folder and its certificates. O(files) system calls, which is
 * why it runs at most once a second unless the folder itself changed. */
static void keydir_signature_read(const char *path, bool with_files, keydir_signature_t *sig)
{
    memset(sig, 0, sizeof *sig);
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return;
    sig->exists = true;
    sig->dev = st.st_dev;
    sig->ino = st.st_ino;
    sig->mtime = st.st_mtim;
    if (!with_files)
        return;
    DIR *dir = opendir(path);
    if (!dir)
        return;
    struct dirent *entry;
    while ((entry = readdir(dir))) {
        if (!keydir_is_public_cert(entry->d_name))
            continue;
        char file[PATH_MAX];
        if (snprintf(file, sizeof file, "%s/%s", path, entry->d_name) >= (int)sizeof file ||
            stat(file, &st) != 0)
            continue;
        sig->files++;
        sig->bytes += (uint64_t)st.st_size;
        int64_t ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
        if (ns > sig->newest_ns)
            sig->newest_ns = ns;
    }
    closedir(dir);
}

static bool keydir_signature_equal(const keydir_signature_t *a, const keydir_signature_t *b,
                                   bool with_files)
{
    if (a->exists != b->exists || a->dev != b->dev || a->ino != b->ino ||
        a->mtime.tv_sec != b->mtime.tv_sec || a->mtime.tv_nsec != b->mtime.tv_nsec)
        return false;
    return !with_files ||
           (a->files == b->files && a->bytes == b->bytes && a->newest_ns == b->newest_ns);
}

/* Parses a certificate file. Not zcert_load: CZMQ 4.2.1 leaks the file
 * object whenever zconfig_load meets a file that does not parse, and this
 * runs at every reload, on whatever someone dropped in the folder. NULL if
 * the file cannot be read or does not parse; the caller destroys. */
static zconfig_t *identity_cert_parse(const char *path)
{
    FILE *file = fopen(path, "r");
    if (!file)
        return NULL;
    char text[KEYDIR_CERT_MAX + 1];
    size_t len = fread(text, 1, KEYDIR_CERT_MAX + 1, file);
    fclose(file);
    if (len == 0 || len > KEYDIR_CERT_MAX)
        return NULL;
    text[len] = '\0';
    return zconfig_str_load(text);
}

static bool keydir_read_public_cert(const char *path, keydir_entry_t *out)
{
    zconfig_t *root = identity_cert_parse(path);
    if (!root)
        return false;
    const char *key = zconfig_get(root, "/curve/public-key", NULL);
    const char *name = zconfig_get(root, "/metadata/name", "");
    const char *party = zconfig_get(root, "/metadata/party", NULL);
    bool ok = key && strlen(key) == KEY_Z85_LEN;
    if (ok) {
        snprintf(out->key, sizeof out->key, "%s", key);
        snprintf(out->name, sizeof out->name, "%s", name);
        /* A certificate without a valid party stays in the table as NONE so
         * that the lookup refuses it rather than treating it as unknown. */
        out->party = party_parse(party);
    }
    zconfig_destroy(&root);
    return ok;
}

static void keydir_load(keydir_t *self)
{
    free(self->entries);
    self->entries = NULL;
    self->count = 0;
    keydir_signature_read(self->authorized, true, &self->signature);
    self->loaded = true;
    self->checked_ms = time_now_ms();

    DIR *dir = opendir(self->authorized);
    if (!dir)
        return;
    size_t capacity = 0;
    struct dirent *entry;
    while ((entry = readdir(dir))) {
        if (!keydir_is_public_cert(entry->d_name))
            continue;
        char file[PATH_MAX];
        if (snprintf(file, sizeof file, "%s/%s", self->authorized, entry->d_name) >=
            (int)sizeof file)
            continue;
        keydir_entry_t found;
        if (!keydir_read_public_cert(file, &found))
            continue; /* not a certificate: zauth ignores it as well */
        if (self->count == capacity) {
            size_t grown = capacity ? capacity * 2 : 16;
            keydir_entry_t *more = realloc(self->entries, grown * sizeof *more);
            if (!more)
                break;
            self->entries = more;
            capacity = grown;
        }
        self->entries[self->count++] = found;
    }
    closedir(dir);
}

keydir_t *keydir_new(const char *dir)
{
    keydir_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->dir = strdup(dir ? dir : ".");
    if (!self->dir) {
        free(self);
        return NULL;
    }
    keydir_authorized_dir(self->dir, self->authorized, sizeof self->authorized);
    return self;
}

void keydir_destroy(keydir_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    keydir_t *self = *self_p;
    free(self->entries);
    free(self->dir);
    free(self);
    *self_p = NULL;
}

void keydir_refresh(keydir_t *self)
{
    if (!self)
        return;
    if (!self->loaded) {
        keydir_load(self);
        return;
    }
    keydir_signature_t now;
    keydir_signature_read(self->authorized, false, &now);
    if (!keydir_signature_equal(&now, &self->signature, false)) {
        keydir_load(self);
        return;
    }
    int64_t now_ms = time_now_ms();
    if (now_ms - self->checked_ms >= KEYDIR_RECHECK_MS) {
        keydir_signature_read(self->authorized, true, &now);
        self->checked_ms = now_ms;
        if (!keydir_signature_equal(&now, &self->signature, true))
            keydir_load(self);
    }
}

size_t keydir_count(keydir_t *self)
{
    if (!self)
        return 0;
    keydir_refresh(self);
    return self->count;
}

static const keydir_entry_t *keydir_find(const keydir_t *self, const char *key)
{
    for (size_t i = 0; i < self->count; i++)
        if (strcmp(self->entries[i].key, key) == 0)
            return &self->entries[i];
    return NULL;
}

bool keydir_lookup(keydir_t *self, const char *public_key_z85, caller_t *out)
{
    keydir_refresh(self);
    return keydir_lookup_fresh(self, public_key_z85, out);
}

bool keydir_lookup_fresh(keydir_t *self, const char *public_key_z85, caller_t *out)
{
    if (!self || !public_key_z85 || strlen(public_key_z85) != KEY_Z85_LEN)
        return false;
    if (!self->loaded)
        keydir_load(self);
    const keydir_entry_t *entry = keydir_find(self, public_key_z85);
    if (!entry) {
        int64_t now_ms = time_now_ms();
        if (now_ms - self->miss_reload_ms >= KEYDIR_MISS_RELOAD_MS) {
            self->miss_reload_ms = now_ms;
            keydir_load(self);
            entry = keydir_find(self, public_key_z85);
        }
    }
    if (!entry || entry->party == PARTY_NONE)
        return false;
    if (out) {
        out->party = entry->party;
        snprintf(out->name, sizeof out->name, "%s", entry->name);
        snprintf(out->key, sizeof out->key, "%s", entry->key);
    }
    return true;
}

/* ------------------------------------------------------------------------
 * Key generation */

static int identity_mkdir(const char *path, mode_t mode, char *err, size_t err_size)
{
    if (mkdir(path, mode) == 0 || errno == EEXIST) {
        struct stat st;
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
            return 0;
        snprintf(err, err_size, "%s exists and is not a folder", path);
        return -1;
    }
    snprintf(err, err_size, "cannot create %s: %s", path, strerror(errno));
    return -1;
}

static bool identity_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static zcert_t *identity_cert_new(const char *name, party_t party)
{
    zcert_t *cert = zcert_new();
    if (!cert)
        return NULL;
    zcert_set_meta(cert, "name", "%s", name);
    zcert_set_meta(cert, "party", "%s", party_name(party));
    return cert;
}

/* zcert_save_public writes in place; a reader (zauth, keydir) could see a
 * half-written file, so write beside it and rename. The temporary name
 * starts with a dot and lives in the parent folder, out of zauth's sight. */
static int identity_save_public_atomic(zcert_t *cert, const char *dir, const char *name,
                                       const char *final_path, char *err, size_t err_size)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s/.%s.key.%d.tmp", dir, name, (int)getpid());
    if (zcert_save_public(cert, tmp) != 0) {
        snprintf(err, err_size, "cannot write %s", tmp);
        return -1;
    }
    chmod(tmp, 0644);
    if (rename(tmp, final_path) != 0) {
        snprintf(err, err_size, "cannot rename %s to %s: %s", tmp, final_path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* zcert_save writes <path> (public) and <path>_secret; the secret must not
 * be readable by others whatever the process umask. */
static int identity_save_pair(zcert_t *cert, const char *path, char *err, size_t err_size)
{
    if (zcert_save(cert, path) != 0) {
        snprintf(err, err_size, "cannot write %s", path);
        return -1;
    }
    char secret[PATH_MAX + 8]; /* path + "_secret" */
    snprintf(secret, sizeof secret, "%s_secret", path);
    if (chmod(secret, 0600) != 0) {
        snprintf(err, err_size, "cannot protect %s: %s", secret, strerror(errno));
        return -1;
    }
    return 0;
}

int identity_keygen_client(const char *dir, const char *name, party_t party, char *err,
                           size_t err_size)
{
    if (!identity_name_valid(name)) {
        snprintf(err, err_size, "invalid key name \"%s\": use 1 to 63 of A-Z a-z 0-9 . _ -",
                 name ? name : "");
        return -1;
    }
    if (strcmp(party_name(party), "NONE") == 0) {
        snprintf(err, err_size, "invalid party");
        return -1;
    }
    char clients[PATH_MAX], authorized[PATH_MAX], pair[PATH_MAX], secret[PATH_MAX],
        public_path[PATH_MAX];
    /* zcert_load truncates file names at 255 bytes: keep well below */
    if (strlen(dir) > 120) {
        snprintf(err, err_size, "key folder path too long: %s", dir);
        return -1;
    }
    snprintf(clients, sizeof clients, "%s/clients", dir);
    keydir_authorized_dir(dir, authorized, sizeof authorized);
    snprintf(pair, sizeof pair, "%s/clients/%s.key", dir, name);
    keydir_client_cert_path(dir, name, secret, sizeof secret);
    snprintf(public_path, sizeof public_path, "%s/authorized/%s.key", dir, name);
    if (identity_mkdir(dir, 0700, err, err_size) || identity_mkdir(clients, 0700, err, err_size) ||
        identity_mkdir(authorized, 0755, err, err_size))
        return -1;
    if (identity_exists(pair) || identity_exists(secret) || identity_exists(public_path)) {
        snprintf(err, err_size, "a key named \"%s\" already exists in %s", name, dir);
        return -1;
    }
    zcert_t *cert = identity_cert_new(name, party);
    if (!cert) {
        snprintf(err, err_size, "cannot make a key pair");
        return -1;
    }
    int rc = identity_save_pair(cert, pair, err, err_size);
    if (rc == 0)
        rc = identity_save_public_atomic(cert, dir, name, public_path, err, err_size);
    zcert_destroy(&cert);
    return rc;
}

/* ------------------------------------------------------------------------
 * The services' certificate and its rotation
 *
 * A rotation has the services' key folder hold three certificates at most:
 * server.key (in use), server.next.key (made ahead, handed to clients) and
 * server.previous.key (what the last promotion replaced, kept to roll
 * back). Every file appears by rename, so a reader finds the old file or
 * the new one, never half of one. */

/* fsync of the folder, so that the renames in it survive a crash of the
 * machine; best effort (the files themselves were synced). */
static void identity_sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return;
    (void)fsync(fd);
    close(fd);
}

static int identity_sync_file(const char *path, char *err, size_t err_size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0) {
        snprintf(err, err_size, "cannot sync %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

static int identity_rename(const char *from, const char *to, char *err, size_t err_size)
{
    if (rename(from, to) == 0)
        return 0;
    snprintf(err, err_size, "cannot rename %s to %s: %s", from, to, strerror(errno));
    return -1;
}

/* Writes the pair of cert as dir/<base> (public, 0644) and dir/<base>_secret
 * (0600): both written under temporary names, synced, then renamed, the
 * secret first, so that whoever sees the public file finds the secret one
 * complete beside it. */
static int identity_save_pair_atomic(zcert_t *cert, const char *dir, const char *base, char *err,
                                     size_t err_size)
{
    char tmp[PATH_MAX], tmp_secret[PATH_MAX + 8], final[PATH_MAX], final_secret[PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s/.%s.%d.tmp", dir, base, (int)getpid());
    snprintf(tmp_secret, sizeof tmp_secret, "%s_secret", tmp);
    snprintf(final, sizeof final, "%s/%s", dir, base);
    snprintf(final_secret, sizeof final_secret, "%s_secret", final);
    int rc = -1;
    if (zcert_save(cert, tmp) != 0)
        snprintf(err, err_size, "cannot write %s", tmp);
    else if (chmod(tmp_secret, 0600) != 0 || chmod(tmp, 0644) != 0)
        snprintf(err, err_size, "cannot set the mode of %s: %s", tmp, strerror(errno));
    else if (identity_sync_file(tmp_secret, err, err_size) == 0 &&
             identity_sync_file(tmp, err, err_size) == 0 &&
             identity_rename(tmp_secret, final_secret, err, err_size) == 0 &&
             identity_rename(tmp, final, err, err_size) == 0)
        rc = 0;
    if (rc != 0) {
        unlink(tmp);
        unlink(tmp_secret);
    }
    identity_sync_dir(dir);
    return rc;
}

/* Copies dir/<from> to dir/<to> with mode, replacing it in one rename. */
static int identity_copy_atomic(const char *dir, const char *from, const char *to, mode_t mode,
                                char *err, size_t err_size)
{
    char source[PATH_MAX], target[PATH_MAX], tmp[PATH_MAX];
    snprintf(source, sizeof source, "%s/%s", dir, from);
    snprintf(target, sizeof target, "%s/%s", dir, to);
    snprintf(tmp, sizeof tmp, "%s/.%s.%d.tmp", dir, to, (int)getpid());
    char data[KEYDIR_CERT_MAX + 1];
    FILE *file = fopen(source, "r");
    if (!file) {
        snprintf(err, err_size, "cannot read %s: %s", source, strerror(errno));
        return -1;
    }
    size_t len = fread(data, 1, sizeof data, file);
    bool read_ok = !ferror(file);
    fclose(file);
    if (!read_ok || len > KEYDIR_CERT_MAX) {
        snprintf(err, err_size, "%s is not a certificate", source);
        return -1;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) {
        snprintf(err, err_size, "cannot write %s: %s", tmp, strerror(errno));
        return -1;
    }
    /* the umask may have taken bits away, never add any: set it whole */
    bool ok = fchmod(fd, mode) == 0 && write(fd, data, len) == (ssize_t)len && fsync(fd) == 0;
    int saved_errno = errno;
    if (close(fd) != 0)
        ok = false;
    if (!ok) {
        snprintf(err, err_size, "cannot write %s: %s", tmp, strerror(saved_errno));
        unlink(tmp);
        return -1;
    }
    if (identity_rename(tmp, target, err, err_size) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* The public key of the certificate at path into key (KEY_Z85_LEN + 1),
 * and whether the file holds its secret key too. False if it does not read
 * as a certificate. */
static bool identity_cert_keys(const char *path, char *key, bool *has_secret)
{
    zconfig_t *root = identity_cert_parse(path);
    if (!root)
        return false;
    const char *public_key = zconfig_get(root, "/curve/public-key", NULL);
    const char *secret_key = zconfig_get(root, "/curve/secret-key", NULL);
    bool ok = public_key && strlen(public_key) == KEY_Z85_LEN;
    if (ok)
        snprintf(key, KEY_Z85_LEN + 1, "%s", public_key);
    *has_secret = secret_key && strlen(secret_key) == KEY_Z85_LEN &&
                  strcmp(secret_key, "0000000000000000000000000000000000000000") != 0;
    zconfig_destroy(&root);
    return ok;
}

bool identity_cert_public_key(const char *path, char *key)
{
    bool has_secret = false;
    return path && identity_cert_keys(path, key, &has_secret);
}

int identity_keygen_server(const char *dir, char *err, size_t err_size)
{
    char secret[PATH_MAX], public_path[PATH_MAX];
    keydir_server_cert_path(dir, secret, sizeof secret);
    keydir_server_public_path(dir, public_path, sizeof public_path);
    if (strlen(dir) > 120) {
        snprintf(err, err_size, "key folder path too long: %s", dir);
        return -1;
    }
    if (identity_mkdir(dir, 0700, err, err_size))
        return -1;
    if (identity_exists(secret)) {
        /* Keep the existing key: clients trust its public half already.
         * Restore the public file if it went missing. */
        if (identity_exists(public_path))
            return 0;
        zcert_t *cert = zcert_load(public_path); /* reads the _secret */
        if (!cert) {
            snprintf(err, err_size, "%s is not a certificate", secret);
            return -1;
        }
        int rc = identity_save_public_atomic(cert, dir, "server", public_path, err, err_size);
        zcert_destroy(&cert);
        return rc;
    }
    zcert_t *cert = identity_cert_new("server", PARTY_SERVICE);
    if (!cert) {
        snprintf(err, err_size, "cannot make a key pair");
        return -1;
    }
    int rc = identity_save_pair_atomic(cert, dir, "server.key", err, err_size);
    zcert_destroy(&cert);
    return rc;
}

int identity_keygen_server_next(const char *dir, char *err, size_t err_size)
{
    char secret[PATH_MAX], next_secret[PATH_MAX], next_public[PATH_MAX];
    if (strlen(dir) > 120) {
        snprintf(err, err_size, "key folder path too long: %s", dir);
        return -1;
    }
    keydir_server_cert_path(dir, secret, sizeof secret);
    keydir_server_next_cert_path(dir, next_secret, sizeof next_secret);
    keydir_server_next_public_path(dir, next_public, sizeof next_public);
    if (!identity_exists(secret)) {
        snprintf(err, err_size,
                 "no server certificate in %s (server.key_secret): make it with keygen --server; "
                 "--next makes the one that replaces it, in the services' key folder",
                 dir);
        return -1;
    }
    if (identity_exists(next_secret) || identity_exists(next_public)) {
        snprintf(err, err_size,
                 "%s already holds a next server certificate (server.next.key): hand it out and "
                 "promote it, or remove both of its files to start over",
                 dir);
        return -1;
    }
    zcert_t *cert = identity_cert_new("server", PARTY_SERVICE);
    if (!cert) {
        snprintf(err, err_size, "cannot make a key pair");
        return -1;
    }
    int rc = identity_save_pair_atomic(cert, dir, "server.next.key", err, err_size);
    zcert_destroy(&cert);
    return rc;
}

/* Keeps dir/server.key[_secret], those that exist, as
 * server.previous.key[_secret]: copies, so that server.key never goes
 * missing. */
static int identity_keep_previous(const char *dir, char *err, size_t err_size)
{
    char path[PATH_MAX];
    keydir_server_cert_path(dir, path, sizeof path);
    if (identity_exists(path) &&
        identity_copy_atomic(dir, "server.key_secret", "server.previous.key_secret", 0600, err,
                             err_size) != 0)
        return -1;
    keydir_server_public_path(dir, path, sizeof path);
    if (identity_exists(path) &&
        identity_copy_atomic(dir, "server.key", "server.previous.key", 0644, err, err_size) != 0)
        return -1;
    return 0;
}

int identity_promote_server_next(const char *dir, bool *with_secret, char *err, size_t err_size)
{
    char secret[PATH_MAX], public_path[PATH_MAX], next_secret[PATH_MAX], next_public[PATH_MAX];
    char next_key[KEY_Z85_LEN + 1] = "", key[KEY_Z85_LEN + 1] = "";
    bool has_secret = false;
    if (with_secret)
        *with_secret = false;
    if (strlen(dir) > 120) {
        snprintf(err, err_size, "key folder path too long: %s", dir);
        return -1;
    }
    keydir_server_cert_path(dir, secret, sizeof secret);
    keydir_server_public_path(dir, public_path, sizeof public_path);
    keydir_server_next_cert_path(dir, next_secret, sizeof next_secret);
    keydir_server_next_public_path(dir, next_public, sizeof next_public);
    bool next_secret_there = identity_exists(next_secret);
    bool next_public_there = identity_exists(next_public);
    if (!next_secret_there && !next_public_there) {
        snprintf(err, err_size,
                 "no next server certificate in %s (server.next.key): nothing to "
                 "promote",
                 dir);
        return -1;
    }

    if (next_secret_there) {
        /* The services' folder. */
        if (!identity_cert_keys(next_secret, next_key, &has_secret) || !has_secret) {
            snprintf(err, err_size, "%s is not a secret certificate", next_secret);
            return -1;
        }
        if (next_public_there &&
            (!identity_cert_keys(next_public, key, &has_secret) || strcmp(key, next_key) != 0)) {
            snprintf(err, err_size, "%s and %s are not the two halves of one certificate",
                     next_public, next_secret);
            return -1;
        }
        if (!next_public_there) {
            /* Only the secret half was copied here: its public half is
             * written beside it first, so that the two renames below, and
             * their resumption if they are interrupted, are the same as
             * when both halves were copied. */
            zcert_t *cert = zcert_load(next_public); /* reads the _secret */
            int rc = cert ? identity_save_public_atomic(cert, dir, "server.next", next_public, err,
                                                        err_size)
                          : -1;
            if (!cert)
                snprintf(err, err_size, "%s is not a certificate", next_secret);
            zcert_destroy(&cert);
            if (rc != 0)
                return -1;
        }
        if (identity_keep_previous(dir, err, err_size) != 0 ||
            identity_rename(next_secret, secret, err, err_size) != 0 ||
            identity_rename(next_public, public_path, err, err_size) != 0)
            return -1;
        identity_sync_dir(dir);
        if (with_secret)
            *with_secret = true;
        return 0;
    }

    /* Only the public half of the next certificate. */
    if (!identity_cert_keys(next_public, next_key, &has_secret)) {
        snprintf(err, err_size, "%s is not a certificate", next_public);
        return -1;
    }
    if (identity_exists(secret)) {
        bool current_has_secret = false;
        if (identity_cert_keys(secret, key, &current_has_secret) && strcmp(key, next_key) == 0) {
            /* A promotion stopped between its two renames: the secret is
             * the next one already, only the public half is left to move
             * (server.previous.key was kept before either). */
            if (identity_rename(next_public, public_path, err, err_size) != 0)
                return -1;
            identity_sync_dir(dir);
            if (with_secret)
                *with_secret = true;
            return 0;
        }
        snprintf(err, err_size,
                 "%s holds the services' secret certificate but not the next one's "
                 "(server.next.key_secret): copy it here from the folder where keygen --server "
                 "--next made it, then promote",
                 dir);
        return -1;
    }
    if (identity_keep_previous(dir, err, err_size) != 0 ||
        identity_rename(next_public, public_path, err, err_size) != 0)
        return -1;
    identity_sync_dir(dir);
    return 0;
}
