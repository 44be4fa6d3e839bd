/* Environment-variable configuration; see config.h. */
#include "config.h"
#include "log.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *config_str(const char *name, const char *fallback)
{
    const char *value = getenv(name);
    return value && *value ? value : fallback;
}

bool config_int(const char *name, long fallback, long min, long max, long *out)
{
    const char *value = getenv(name);
    if (!value || !*value) {
        *out = fallback;
        return true;
    }
    char *end;
    errno = 0;
    long parsed = strtol(value, &end, 10);
    if (errno || *end || end == value || parsed < min || parsed > max) {
        log_error("bad configuration value", "{s:s, s:s, s:I, s:I}", "variable", name, "value",
                  value, "min", (json_int_t)min, "max", (json_int_t)max);
        return false;
    }
    *out = parsed;
    return true;
}

bool config_bool(const char *name, bool fallback, bool *out)
{
    const char *value = getenv(name);
    if (!value || !*value) {
        *out = fallback;
        return true;
    }
    static const char *yes[] = {"1", "true", "yes", "on"};
    static const char *no[] = {"0", "false", "no", "off"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(value, yes[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcasecmp(value, no[i]) == 0) {
            *out = false;
            return true;
        }
    }
    log_error("bad configuration value, expected true or false", "{s:s, s:s}", "variable", name,
              "value", value);
    return false;
}

/* Secrets read from files, kept for the process's life: a process reads a
 * handful (the Redis password), every store and tool of it asking again. */
typedef struct secret_s {
    struct secret_s *next;
    char *name;
    char *value;
} secret_t;

static secret_t *secrets;
static pthread_mutex_t secrets_lock = PTHREAD_MUTEX_INITIALIZER;

#define CONFIG_SECRET_MAX 4096

/* Reads path into a new string without its final newline; NULL with errno
 * (EFBIG for a file too large to be a secret, ENODATA for an empty one). */
static char *secret_read(const char *path)
{
    FILE *file = fopen(path, "re");
    if (!file)
        return NULL;
    char *value = malloc(CONFIG_SECRET_MAX + 1);
    size_t len = value ? fread(value, 1, CONFIG_SECRET_MAX + 1, file) : 0;
    int failed = value && ferror(file);
    fclose(file);
    if (!value)
        return NULL;
    if (failed || len > CONFIG_SECRET_MAX) {
        free(value);
        errno = failed ? EIO : EFBIG;
        return NULL;
    }
    while (len > 0 && (value[len - 1] == '\n' || value[len - 1] == '\r'))
        len--;
    value[len] = '\0';
    if (len == 0) {
        free(value);
        errno = ENODATA;
        return NULL;
    }
    return value;
}

bool config_secret(const char *name, const char **out)
{
    *out = NULL;
    const char *direct = getenv(name);
    if (direct && *direct) {
        *out = direct;
        return true;
    }
    char file_variable[128];
    snprintf(file_variable, sizeof file_variable, "%s_FILE", name);
    const char *path = getenv(file_variable);
    if (!path || !*path)
        return true;

    pthread_mutex_lock(&secrets_lock);
    for (secret_t *secret = secrets; secret; secret = secret->next) {
        if (strcmp(secret->name, name) == 0) {
            *out = secret->value;
            pthread_mutex_unlock(&secrets_lock);
            return true;
        }
    }
    char *value = secret_read(path);
    secret_t *secret = value ? calloc(1, sizeof *secret) : NULL;
    if (secret)
        secret->name = strdup(name);
    if (!secret || !secret->name) {
        int err = errno;
        pthread_mutex_unlock(&secrets_lock);
        log_error("cannot read the secret file", "{s:s, s:s, s:s}", "variable", file_variable,
                  "path", path, "error", strerror(err));
        free(value);
        if (secret)
            free(secret);
        return false;
    }
    secret->value = value;
    secret->next = secrets;
    secrets = secret;
    *out = value;
    pthread_mutex_unlock(&secrets_lock);
    return true;
}
