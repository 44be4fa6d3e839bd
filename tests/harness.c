/* Test harness: starts and stops real redis-server and service processes on
 * ports chosen at run time, and makes key directories; see harness.h.
 *
 * Children get PR_SET_PDEATHSIG so that a test that crashes or is killed by
 * ctest's timeout does not leave a Redis or a service running behind it. */
#define _GNU_SOURCE
#include "harness.h"
#include "identity.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define HARNESS_START_WAIT_MS 10000
#define HARNESS_POLL_MS       20

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

static bool keep_temporary(void)
{
    const char *keep = getenv("PASSERELLE_TEST_KEEP");
    return keep && strcmp(keep, "1") == 0;
}

/* Waits up to timeout_ms for pid; returns its wait status, or -1 if it is
 * still running. */
static int wait_for_exit(pid_t pid, int timeout_ms)
{
    for (int waited = 0;; waited += 10) {
        int status;
        pid_t done = waitpid(pid, &status, WNOHANG);
        if (done == pid)
            return status;
        if (done == -1)
            return -1;
        if (waited >= timeout_ms)
            return -1;
        sleep_ms(10);
    }
}

int harness_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd == -1)
        return -1;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) == 0 &&
        getsockname(fd, (struct sockaddr *)&addr, &len) == 0)
        port = ntohs(addr.sin_port);
    close(fd);
    return port;
}

char *harness_tempdir(const char *tag)
{
    const char *base = getenv("TMPDIR");
    if (!base || !*base)
        base = "/tmp";
    char *path;
    if (asprintf(&path, "%s/passerelle-%s-XXXXXX", base, tag ? tag : "test") == -1)
        return NULL;
    if (!mkdtemp(path)) {
        fprintf(stderr, "harness: mkdtemp %s: %s\n", path, strerror(errno));
        free(path);
        return NULL;
    }
    return path;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    if (remove(path) == -1)
        fprintf(stderr, "harness: remove %s: %s\n", path, strerror(errno));
    return 0;
}

void harness_rmtree(const char *path)
{
    if (!path || !*path || keep_temporary())
        return;
    nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* --- Redis ------------------------------------------------------------- */

/* True once the server answers PING after AUTH. */
static bool redis_answers(const harness_redis_t *redis)
{
    struct timeval timeout = {0, 200000};
    redisContext *ctx = redisConnectWithTimeout("127.0.0.1", redis->port, timeout);
    if (!ctx)
        return false;
    bool ok = false;
    if (!ctx->err) {
        redisSetTimeout(ctx, timeout);
        redisReply *auth = redisCommand(ctx, "AUTH %s", redis->password);
        if (auth && auth->type == REDIS_REPLY_STATUS) {
            redisReply *pong = redisCommand(ctx, "PING");
            ok = pong && pong->type == REDIS_REPLY_STATUS && strcmp(pong->str, "PONG") == 0;
            if (pong)
                freeReplyObject(pong);
        }
        if (auth)
            freeReplyObject(auth);
    }
    redisFree(ctx);
    return ok;
}

/* Forks redis-server on redis->port and redis->dir, and waits until it
 * answers. Returns 0, -1 if it exited (the port was likely taken), or -2 if
 * it did not answer in time (no point trying again). */
static int redis_spawn(harness_redis_t *redis)
{
    char port[16], logfile[512];
    snprintf(port, sizeof port, "%d", redis->port);
    snprintf(logfile, sizeof logfile, "%s/redis.log", redis->dir);
    char *argv[] = {"redis-server",
                    "--port",
                    port,
                    "--bind",
                    "127.0.0.1",
                    "--dir",
                    redis->dir,
                    "--appendonly",
                    "yes",
                    "--appendfsync",
                    "always",
                    "--save",
                    "",
                    "--requirepass",
                    redis->password,
                    "--daemonize",
                    "no",
                    "--logfile",
                    logfile,
                    NULL};
    pid_t pid = fork();
    if (pid == -1) {
        fprintf(stderr, "harness: fork: %s\n", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int null = open("/dev/null", O_RDWR);
        if (null != -1) {
            dup2(null, STDIN_FILENO);
            dup2(null, STDOUT_FILENO);
        }
        execvp("redis-server", argv);
        fprintf(stderr, "harness: exec redis-server: %s\n", strerror(errno));
        _exit(127);
    }
    redis->pid = pid;
    for (int waited = 0; waited < HARNESS_START_WAIT_MS; waited += HARNESS_POLL_MS) {
        if (redis_answers(redis))
            return 0;
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            redis->pid = 0;
            return -1;
        }
        sleep_ms(HARNESS_POLL_MS);
    }
    fprintf(stderr, "harness: redis-server on port %d did not answer\n", redis->port);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    redis->pid = 0;
    return -2;
}

int harness_redis_start(harness_redis_t *redis)
{
    memset(redis, 0, sizeof *redis);
    char *dir = harness_tempdir("redis");
    if (!dir)
        return -1;
    snprintf(redis->dir, sizeof redis->dir, "%s", dir);
    free(dir);

    if (sodium_init() < 0)
        return -1;
    uint8_t random[16];
    randombytes_buf(random, sizeof random);
    sodium_bin2hex(redis->password, sizeof redis->password, random, sizeof random);

    /* The free port can be taken by someone else before Redis binds it:
     * another port is tried rather than failing the test. */
    for (int attempt = 0; attempt < 5; attempt++) {
        redis->port = harness_free_port();
        if (redis->port <= 0)
            continue;
        int spawned = redis_spawn(redis);
        if (spawned == 0)
            return 0;
        if (spawned == -2)
            break;
    }
    fprintf(stderr, "harness: could not start redis-server (see %s/redis.log)\n", redis->dir);
    harness_rmtree(redis->dir);
    return -1;
}

void harness_redis_kill(harness_redis_t *redis)
{
    if (redis->pid <= 0)
        return;
    kill(redis->pid, SIGKILL);
    waitpid(redis->pid, NULL, 0);
    redis->pid = 0;
}

int harness_redis_restart(harness_redis_t *redis)
{
    if (redis->pid > 0)
        return -1;
    /* The port may still be held briefly by the dying process's sockets. */
    for (int attempt = 0; attempt < 20; attempt++) {
        int spawned = redis_spawn(redis);
        if (spawned == 0)
            return 0;
        if (spawned == -2)
            break;
        sleep_ms(100);
    }
    fprintf(stderr, "harness: could not restart redis-server on port %d\n", redis->port);
    return -1;
}

void harness_redis_stop(harness_redis_t *redis)
{
    if (redis->pid > 0) {
        kill(redis->pid, SIGTERM);
        if (wait_for_exit(redis->pid, 10000) == -1) {
            kill(redis->pid, SIGKILL);
            waitpid(redis->pid, NULL, 0);
        }
        redis->pid = 0;
    }
    if (redis->dir[0]) {
        harness_rmtree(redis->dir);
        redis->dir[0] = '\0';
    }
}

void harness_redis_config(const harness_redis_t *redis, store_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->host = "127.0.0.1";
    cfg->port = redis->port;
    cfg->password = redis->password;
    cfg->connect_timeout_ms = 500;
    cfg->command_timeout_ms = 2000;
}

void harness_redis_setenv(const harness_redis_t *redis)
{
    char port[16];
    snprintf(port, sizeof port, "%d", redis->port);
    setenv("PASSERELLE_REDIS_HOST", "127.0.0.1", 1);
    setenv("PASSERELLE_REDIS_PORT", port, 1);
    setenv("PASSERELLE_REDIS_PASSWORD", redis->password, 1);
}

/* --- keys --------------------------------------------------------------- */

static const struct {
    const char *name;
    party_t party;
} harness_parties[] = {
    {"metropole", PARTY_METROPOLE}, {"action_logement", PARTY_ACTION_LOGEMENT},
    {"operator", PARTY_OPERATOR},   {"partner", PARTY_PARTNER},
    {"admin", PARTY_ADMIN},         {"service", PARTY_SERVICE},
};

int harness_keys_make(const char *dir)
{
    char err[256] = "";
    if (identity_keygen_server(dir, err, sizeof err) != 0) {
        fprintf(stderr, "harness: server key in %s: %s\n", dir, err);
        return -1;
    }
    for (size_t i = 0; i < sizeof harness_parties / sizeof harness_parties[0]; i++)
        if (identity_keygen_client(dir, harness_parties[i].name, harness_parties[i].party, err,
                                   sizeof err) != 0) {
            fprintf(stderr, "harness: client key %s in %s: %s\n", harness_parties[i].name, dir,
                    err);
            return -1;
        }
    return 0;
}

client_t *harness_client(const char *endpoint, const char *keys_dir, const char *name,
                         int timeout_ms, int retries)
{
    char server_public[512], client_cert[512], err[256] = "";
    keydir_server_public_path(keys_dir, server_public, sizeof server_public);
    keydir_client_cert_path(keys_dir, name, client_cert, sizeof client_cert);
    client_config_t cfg = {
        .endpoint = endpoint,
        .server_public_path = server_public,
        .client_cert_path = client_cert,
        .insecure = false,
        .timeout_ms = timeout_ms,
        .retries = retries,
    };
    client_t *client = client_new(&cfg, err, sizeof err);
    if (!client)
        fprintf(stderr, "harness: client %s of %s: %s\n", name, endpoint, err);
    return client;
}

/* --- services ----------------------------------------------------------- */

const char *harness_bin(const char *relative)
{
    static char path[1024];
    const char *dir = getenv("PASSERELLE_TEST_BIN_DIR");
    if (!dir || !*dir)
        dir = ".";
    snprintf(path, sizeof path, "%s/%s", dir, relative);
    return path;
}

/* PASSERELLE_<NAME>_ENDPOINT, the name in upper case with '-' as '_'. */
static void endpoint_variable(const char *name, char *out, size_t out_size)
{
    char upper[32];
    size_t i = 0;
    for (; name[i] && i < sizeof upper - 1; i++)
        upper[i] = isalnum((unsigned char)name[i]) ? (char)toupper((unsigned char)name[i]) : '_';
    upper[i] = '\0';
    snprintf(out, out_size, "PASSERELLE_%s_ENDPOINT", upper);
}

/* Scans the log from offset for the "listening" line; true with its
 * endpoint copied into service. */
static bool read_listening(harness_service_t *service, off_t offset)
{
    FILE *log = fopen(service->log_path, "r");
    if (!log)
        return false;
    bool found = false;
    if (fseeko(log, offset, SEEK_SET) == 0) {
        char *line = NULL;
        size_t cap = 0;
        while (!found && getline(&line, &cap, log) != -1) {
            json_t *obj = json_loads(line, 0, NULL);
            if (!obj)
                continue;
            const char *msg = json_string_value(json_object_get(obj, "msg"));
            const char *endpoint = json_string_value(json_object_get(obj, "endpoint"));
            if (msg && endpoint && strcmp(msg, "listening") == 0) {
                snprintf(service->endpoint, sizeof service->endpoint, "%s", endpoint);
                const char *colon = strrchr(endpoint, ':');
                service->port = colon ? atoi(colon + 1) : 0;
                found = true;
            }
            json_decref(obj);
        }
        free(line);
    }
    fclose(log);
    return found;
}

/* Starts the service; endpoint, when not NULL, overrides both the default
 * and anything in extra_env. Returns 0, -1 if it exited before listening,
 * or -2 if it did not log "listening" in time. */
static int service_spawn(harness_service_t *service, const char *log_dir, char *const extra_env[],
                         const char *endpoint)
{
    char variable[64], binary[1024];
    endpoint_variable(service->name, variable, sizeof variable);
    snprintf(service->log_path, sizeof service->log_path, "%s/%s.log", log_dir, service->name);
    char relative[128];
    snprintf(relative, sizeof relative, "services/%s/passerelle-%s", service->name, service->name);
    snprintf(binary, sizeof binary, "%s", harness_bin(relative));

    /* A restart appends to the same log: only lines after this offset
     * belong to the new process. */
    struct stat st;
    off_t offset = stat(service->log_path, &st) == 0 ? st.st_size : 0;
    service->endpoint[0] = '\0';
    service->port = 0;

    pid_t pid = fork();
    if (pid == -1) {
        fprintf(stderr, "harness: fork: %s\n", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        setenv(variable, "tcp://127.0.0.1:*", 1);
        for (size_t i = 0; extra_env && extra_env[i]; i++)
            putenv(extra_env[i]);
        if (endpoint)
            setenv(variable, endpoint, 1);
        int fd = open(service->log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        int null = open("/dev/null", O_RDWR);
        if (fd == -1 || null == -1)
            _exit(126);
        dup2(null, STDIN_FILENO);
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        char *argv[] = {binary, NULL};
        execv(binary, argv);
        fprintf(stderr, "harness: exec %s: %s\n", binary, strerror(errno));
        _exit(127);
    }
    service->pid = pid;
    for (int waited = 0; waited < HARNESS_START_WAIT_MS; waited += HARNESS_POLL_MS) {
        if (read_listening(service, offset))
            return 0;
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            fprintf(stderr, "harness: %s exited before listening (see %s)\n", service->name,
                    service->log_path);
            service->pid = 0;
            return -1;
        }
        sleep_ms(HARNESS_POLL_MS);
    }
    fprintf(stderr, "harness: %s did not log \"listening\" within %d ms (see %s)\n", service->name,
            HARNESS_START_WAIT_MS, service->log_path);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    service->pid = 0;
    return -2;
}

int harness_service_start(harness_service_t *service, const char *name, const char *log_dir,
                          char *const extra_env[])
{
    memset(service, 0, sizeof *service);
    snprintf(service->name, sizeof service->name, "%s", name);
    return service_spawn(service, log_dir, extra_env, NULL) == 0 ? 0 : -1;
}

int harness_service_stop(harness_service_t *service, int sig)
{
    if (service->pid <= 0)
        return -1;
    kill(service->pid, sig);
    /* A service that ignores the signal must not hang the test. */
    int status = wait_for_exit(service->pid, 10000);
    if (status == -1) {
        fprintf(stderr, "harness: %s did not exit on signal %d, killing it\n", service->name, sig);
        kill(service->pid, SIGKILL);
        waitpid(service->pid, &status, 0);
    }
    service->pid = 0;
    return status;
}

int harness_service_restart(harness_service_t *service, const char *log_dir,
                            char *const extra_env[])
{
    if (service->pid > 0 || !service->name[0])
        return -1;
    char endpoint[64];
    if (service->port > 0)
        snprintf(endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", service->port);
    else
        snprintf(endpoint, sizeof endpoint, "%s", service->endpoint);
    /* The old socket can linger a moment after the process died. */
    for (int attempt = 0; attempt < 20; attempt++) {
        int spawned = service_spawn(service, log_dir, extra_env, endpoint[0] ? endpoint : NULL);
        if (spawned == 0)
            return 0;
        if (spawned == -2)
            break;
        sleep_ms(100);
    }
    return -1;
}
