/* Test harness: real processes on loopback, on ports chosen at run time.
 *
 * Starts redis-server (AOF with appendfsync always, a password, data in a
 * fresh temporary folder), the real service binaries from the build tree
 * (PASSERELLE_TEST_BIN_DIR), and makes key directories with one client per
 * party. Everything a test starts it stops; temporary folders are removed
 * unless PASSERELLE_TEST_KEEP=1. */
#ifndef PASSERELLE_HARNESS_H
#define PASSERELLE_HARNESS_H

#include "client.h"
#include "store.h"

#include <stdbool.h>
#include <sys/types.h>

/* A free TCP port on 127.0.0.1 (bound to port 0, read back, closed). */
int harness_free_port(void);

/* A new empty temporary folder (malloc'd path; caller frees), tagged for
 * easier debugging; harness_rmtree removes it and everything in it. */
char *harness_tempdir(const char *tag);
void harness_rmtree(const char *path);

/* --- Redis ------------------------------------------------------------ */

typedef struct {
    pid_t pid;
    int port;
    char dir[256]; /* data folder (AOF) */
    char password[33];
} harness_redis_t;

/* Starts redis-server on a free port and waits until it answers PING.
 * Returns 0, or -1 (message on stderr). */
int harness_redis_start(harness_redis_t *redis);
/* SIGKILL (a crash): the data folder stays, restart reopens it. */
void harness_redis_kill(harness_redis_t *redis);
/* Starts again on the same port and folder; 0 or -1. */
int harness_redis_restart(harness_redis_t *redis);
/* Stops (SIGTERM, wait) and removes the data folder. */
void harness_redis_stop(harness_redis_t *redis);
/* Fills a store configuration pointing at it (strings point into redis). */
void harness_redis_config(const harness_redis_t *redis, store_config_t *cfg);
/* Sets PASSERELLE_REDIS_HOST/PORT/PASSWORD in this process's environment,
 * for services started afterwards. */
void harness_redis_setenv(const harness_redis_t *redis);

/* --- keys --------------------------------------------------------------- */

/* Makes a key directory: the server certificate and one client per party,
 * named after the party in lower case ("metropole", "action_logement",
 * "operator", "partner", "admin", "service"). 0 or -1. */
int harness_keys_make(const char *dir);

/* A client of the endpoint using the named client's certificate from dir;
 * timeout_ms per attempt and retries as in client.h. NULL on failure. */
client_t *harness_client(const char *endpoint, const char *keys_dir, const char *name,
                         int timeout_ms, int retries);

/* --- services ----------------------------------------------------------- */

typedef struct {
    pid_t pid;
    char name[32];      /* "reservations" */
    char log_path[512]; /* its stderr, JSON lines */
    char endpoint[64];  /* "tcp://127.0.0.1:41234", read from its log */
    int port;
} harness_service_t;

/* Starts $PASSERELLE_TEST_BIN_DIR/services/<name>/passerelle-<name> with
 * this process's environment plus extra_env ("NAME=value" strings,
 * NULL-terminated, may be NULL), its endpoint variable
 * (PASSERELLE_<NAME>_ENDPOINT) set to tcp://127.0.0.1:* unless extra_env
 * sets it, its stderr to log_dir/<name>.log, and waits (up to 10 s) for its
 * "listening" log line, from which it reads the endpoint. 0 or -1. */
int harness_service_start(harness_service_t *service, const char *name, const char *log_dir,
                          char *const extra_env[]);
/* Sends sig and waits for the process; returns its wait status. */
int harness_service_stop(harness_service_t *service, int sig);
/* Restarts on the same endpoint (port) after a stop; 0 or -1. */
int harness_service_restart(harness_service_t *service, const char *log_dir,
                            char *const extra_env[]);

/* Path of a binary of the build tree, e.g. "tools/passerelle" (static
 * buffer). */
const char *harness_bin(const char *relative);

#endif
