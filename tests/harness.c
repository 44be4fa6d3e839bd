/* Test harness: starts and stops real redis-server and service processes on
 * ports chosen at run time, makes key directories, and holds the fixture and
 * the checked calls the integration tests share; see harness.h.
 *
 * Children get PR_SET_PDEATHSIG so that a test that crashes or is killed by
 * ctest's timeout does not leave a Redis or a service running behind it. */
#define _GNU_SOURCE
#include "harness.h"
#include "identity.h"
#include "ids.h"
#include "log.h"
#include "status.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
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

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

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

/* fork() for a child that must not outlive this process; -1 with a
 * message. */
static pid_t fork_child(void)
{
    pid_t pid = fork();
    if (pid == -1)
        fprintf(stderr, "harness: fork: %s\n", strerror(errno));
    else if (pid == 0)
        prctl(PR_SET_PDEATHSIG, SIGKILL);
    return pid;
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
    pid_t pid = fork_child();
    if (pid == -1)
        return -1;
    if (pid == 0) {
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

    /* A port the kernel hands out, not "*": CZMQ gives "*" the first free
     * port from 49152 up, the same one to every service starting at that
     * moment, and takes a killed service's port for the next one to start,
     * so that a restart on it would find it gone. */
    char fallback[64];
    snprintf(fallback, sizeof fallback, "tcp://127.0.0.1:%d", harness_free_port());
    /* The operations port on one the kernel picks too (the service logs
     * it): at its default, every service of a parallel test, or of a
     * running ./dev up, would want the same one. extra_env may set it. */
    char http_variable[80];
    snprintf(http_variable, sizeof http_variable, "%.*s_HTTP_ENDPOINT",
             (int)(strlen(variable) - strlen("_ENDPOINT")), variable);
    pid_t pid = fork_child();
    if (pid == -1)
        return -1;
    if (pid == 0) {
        setenv(variable, fallback, 1);
        setenv(http_variable, "127.0.0.1:0", 1);
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
    /* The free port may be taken before the service binds it: another is
     * tried, as for Redis. */
    for (int attempt = 0; attempt < 3; attempt++) {
        int spawned = service_spawn(service, log_dir, extra_env, NULL);
        if (spawned == 0)
            return 0;
        if (spawned == -2)
            break;
    }
    return -1;
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

bool harness_service_stop_clean(harness_service_t *service)
{
    int status = harness_service_stop(service, SIGTERM);
    if (status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return true;
    fprintf(stderr, "harness: %s stopped with wait status %d\n", service->name, status);
    return false;
}

bool harness_service_stop_checked(harness_service_t *service)
{
    if (service->pid <= 0)
        return true;
    bool clean = harness_service_stop_clean(service);
    return !harness_log_has_sanitizer_report(service->log_path) && clean;
}

/* --- a Redis with a store -------------------------------------------------- */

int harness_store_start(harness_redis_t *redis, store_t **store_p)
{
    *store_p = NULL;
    if (harness_redis_start(redis) != 0)
        return -1;
    store_config_t cfg;
    harness_redis_config(redis, &cfg);
    *store_p = store_new(&cfg);
    return *store_p ? 0 : -1;
}

void harness_store_stop(harness_redis_t *redis, store_t **store_p)
{
    store_destroy(store_p);
    harness_redis_stop(redis);
}

/* cmocka's group setup takes no argument of ours: the run's Redis and store
 * wait here, one group at a time. */
static harness_redis_t *store_group_redis;
static store_t **store_group_store;

static int store_group_setup(void **state)
{
    (void)state;
    return harness_store_start(store_group_redis, store_group_store);
}

static int store_group_teardown(void **state)
{
    (void)state;
    harness_store_stop(store_group_redis, store_group_store);
    return 0;
}

int harness_run_store_tests(const char *group, const struct CMUnitTest *tests, size_t count,
                            harness_redis_t *redis, store_t **store_p)
{
    log_set_level(LOG_LEVEL_ERROR);
    store_group_redis = redis;
    store_group_store = store_p;
    return _cmocka_run_group_tests(group, tests, count, store_group_setup, store_group_teardown);
}

/* --- a whole stack ----------------------------------------------------------- */

/* A NULL-terminated copy of env (NULL stays NULL). */
static char **env_copy(char *const env[])
{
    if (!env)
        return NULL;
    size_t count = 0;
    while (env[count])
        count++;
    char **copy = calloc(count + 1, sizeof *copy);
    if (!copy)
        return NULL;
    for (size_t i = 0; i < count; i++)
        if (!(copy[i] = strdup(env[i])))
            return copy; /* truncated, still terminated */
    return copy;
}

static void env_free(char ***env_p)
{
    if (!*env_p)
        return;
    for (char **entry = *env_p; *entry; entry++)
        free(*entry);
    free(*env_p);
    *env_p = NULL;
}

int harness_stack_start(harness_stack_t *stack, const char *tag, const char *client_name,
                        char *const extra_env[])
{
    memset(stack, 0, sizeof *stack);
    stack->dir = harness_tempdir(tag);
    if (!stack->dir)
        return -1;
    int n = snprintf(stack->keys, sizeof stack->keys, "%s/keys", stack->dir);
    if (n < 0 || (size_t)n >= sizeof stack->keys) {
        fprintf(stderr, "harness: folder name too long: %s\n", stack->dir);
        return -1;
    }
    if (harness_keys_make(stack->keys) != 0 || harness_redis_start(&stack->redis) != 0)
        return -1;
    harness_redis_setenv(&stack->redis);
    setenv("PASSERELLE_KEYS_DIR", stack->keys, 1);
    stack->env = env_copy(extra_env);
    if (harness_service_start(&stack->service, "reservations", stack->dir, stack->env) != 0)
        return -1;
    if (!client_name)
        return 0;
    stack->client = harness_stack_client(stack, client_name, HARNESS_STACK_CLIENT_TIMEOUT_MS,
                                         HARNESS_STACK_CLIENT_RETRIES);
    return stack->client ? 0 : -1;
}

bool harness_stack_stop(harness_stack_t *stack)
{
    client_destroy(&stack->client);
    bool clean = true;
    if (stack->service.pid > 0)
        clean = harness_service_stop_clean(&stack->service);
    harness_redis_stop(&stack->redis);
    env_free(&stack->env);
    if (stack->dir) {
        harness_rmtree(stack->dir);
        free(stack->dir);
        stack->dir = NULL;
    }
    return clean;
}

int harness_fixture_setup(void **state, size_t size, const char *tag, const char *client_name)
{
    harness_stack_t *stack = calloc(1, size < sizeof *stack ? sizeof *stack : size);
    *state = stack;
    return stack ? harness_stack_start(stack, tag, client_name, NULL) : -1;
}

int harness_stack_teardown(void **state)
{
    harness_stack_t *stack = *state;
    return !stack || harness_stack_stop(stack) ? 0 : -1;
}

int harness_fixture_teardown(void **state)
{
    int rc = harness_stack_teardown(state);
    free(*state);
    *state = NULL;
    return rc;
}

client_t *harness_stack_client(const harness_stack_t *stack, const char *name, int timeout_ms,
                               int retries)
{
    return harness_client(stack->service.endpoint, stack->keys, name, timeout_ms, retries);
}

int harness_stack_restart(harness_stack_t *stack)
{
    return harness_service_restart(&stack->service, stack->dir, stack->env);
}

int harness_stack_service_start(const harness_stack_t *stack, harness_service_t *service,
                                const char *subdir, char *const extra_env[])
{
    char log_dir[1024];
    int n = snprintf(log_dir, sizeof log_dir, "%s/%s", stack->dir, subdir);
    if (n < 0 || (size_t)n >= sizeof log_dir || mkdir(log_dir, 0700) != 0) {
        fprintf(stderr, "harness: cannot make %s/%s\n", stack->dir, subdir);
        memset(service, 0, sizeof *service);
        return -1;
    }
    return harness_service_start(service, "reservations", log_dir, extra_env);
}

/* --- calls ------------------------------------------------------------------- */

static const char *str_or_empty(const char *s)
{
    return s ? s : "";
}

void harness_expect_status(const Passerelle__Reply *reply, int status, const char *field)
{
    assert_non_null(reply);
    if ((int)reply->status != status || (field && strcmp(str_or_empty(reply->field), field) != 0))
        fprintf(stderr, "expected %s field '%s', got %s field '%s': %s\n", status_name(status),
                field ? field : "(any)", status_name((int)reply->status),
                str_or_empty(reply->field), str_or_empty(reply->message));
    assert_int_equal(reply->status, status);
    if (field)
        assert_string_equal(str_or_empty(reply->field), field);
}

Passerelle__Reply *harness_call_keyed(client_t *client, const char *type,
                                      const ProtobufCMessage *body, const char *idempotency_key,
                                      int status, const char *field)
{
    Passerelle__Reply *reply = NULL;
    assert_int_equal(client_call(client, type, body, idempotency_key, &reply), 0);
    harness_expect_status(reply, status, field);
    return reply;
}

Passerelle__Reply *harness_call(client_t *client, const char *type, const ProtobufCMessage *body,
                                int status, const char *field)
{
    return harness_call_keyed(client, type, body, NULL, status, field);
}

ProtobufCMessage *harness_call_ok(client_t *client, const char *type, const ProtobufCMessage *body,
                                  const ProtobufCMessageDescriptor *reply_desc)
{
    Passerelle__Reply *reply =
        harness_call(client, type, body, PASSERELLE__STATUS__STATUS_OK, NULL);
    ProtobufCMessage *msg = NULL;
    if (reply_desc) {
        msg = protobuf_c_message_unpack(reply_desc, NULL, reply->has_body ? reply->body.len : 0,
                                        reply->body.data);
        if (!msg)
            fprintf(stderr, "the reply to %s does not decode as %s\n", type, reply_desc->name);
        assert_non_null(msg);
    }
    passerelle__reply__free_unpacked(reply, NULL);
    return msg;
}

void harness_call_refused(client_t *client, const char *type, const ProtobufCMessage *body,
                          int status, const char *field)
{
    Passerelle__Reply *reply = harness_call(client, type, body, status, field);
    assert_non_null(reply->message);
    assert_true(strlen(reply->message) > 0);
    passerelle__reply__free_unpacked(reply, NULL);
}

void harness_unit_request(Passerelle__UnitRegisterRequest *req, const char *external_ref)
{
    passerelle__unit_register_request__init(req);
    req->external_ref = (char *)external_ref;
    req->address = "12 rue de la Republique";
    req->commune = "Pertuis";
    req->has_stock = true;
    req->stock = PASSERELLE__STOCK__STOCK_PRIVATE;
    req->has_typology = true;
    req->typology = PASSERELLE__TYPOLOGY__TYPOLOGY_T3;
    req->has_surface_m2 = true;
    req->surface_m2 = 62.5;
    req->landlord = "owner-7f3a";
    req->has_energy_class = true;
    req->energy_class = PASSERELLE__ENERGY_CLASS__ENERGY_D;
}

void harness_unit_social(Passerelle__UnitRegisterRequest *req, const char *landlord)
{
    req->has_stock = true;
    req->stock = PASSERELLE__STOCK__STOCK_SOCIAL;
    req->landlord = (char *)landlord;
    req->has_financing = true;
    req->financing = PASSERELLE__FINANCING__FINANCING_PLUS;
}

void harness_unit_register(client_t *client, const Passerelle__UnitRegisterRequest *req, char *id)
{
    Passerelle__Unit *unit = (Passerelle__Unit *)harness_call_ok(
        client, "unit.register", &req->base, &passerelle__unit__descriptor);
    if (id)
        snprintf(id, ID_LEN, "%s", unit->id);
    passerelle__unit__free_unpacked(unit, NULL);
}

void harness_pig_programme(client_t *client, const char *name, const char *commune, int first_year,
                           int last_year, char *id)
{
    char *communes[] = {(char *)commune};
    char start[DATE_LEN], end[DATE_LEN];
    snprintf(start, sizeof start, "%04u-01-01", (unsigned)first_year % 10000u);
    snprintf(end, sizeof end, "%04u-12-31", (unsigned)last_year % 10000u);
    Passerelle__ProgrammeCreateRequest req = PASSERELLE__PROGRAMME_CREATE_REQUEST__INIT;
    req.name = (char *)name;
    req.has_kind = true;
    req.kind = PASSERELLE__PROGRAMME_KIND__PROGRAMME_PIG;
    req.communes = communes;
    req.n_communes = 1;
    req.start_date = start;
    req.end_date = end;
    req.operator_ = "Soliha";
    Passerelle__Programme *p = (Passerelle__Programme *)harness_call_ok(
        client, "programme.create", &req.base, &passerelle__programme__descriptor);
    snprintf(id, ID_LEN, "%s", p->id);
    passerelle__programme__free_unpacked(p, NULL);
}

/* --- the event stream -------------------------------------------------------- */

/* The most event.list returns at once. */
#define HARNESS_EVENT_PAGE 1000
/* A stream that never ends is a bug of the service, not a long test. */
#define HARNESS_EVENT_MAX_PAGES 1000

void harness_events_read(client_t *client, const char *after, harness_events_t *events)
{
    memset(events, 0, sizeof *events);
    snprintf(events->last_position, sizeof events->last_position, "%s",
             after && *after ? after : "0");
    for (;;) {
        if (events->n_pages == HARNESS_EVENT_MAX_PAGES)
            fail_msg("event.list never reached the end of the stream");
        Passerelle__EventListRequest req = PASSERELLE__EVENT_LIST_REQUEST__INIT;
        req.after = events->last_position;
        req.has_limit = true;
        req.limit = HARNESS_EVENT_PAGE;
        Passerelle__Reply *reply =
            harness_call(client, "event.list", &req.base, PASSERELLE__STATUS__STATUS_OK, NULL);
        Passerelle__EventListReply *page = passerelle__event_list_reply__unpack(
            NULL, reply->has_body ? reply->body.len : 0, reply->body.data);
        passerelle__reply__free_unpacked(reply, NULL);
        assert_non_null(page);
        if (page->n_events == 0) {
            passerelle__event_list_reply__free_unpacked(page, NULL);
            return;
        }
        Passerelle__EventListReply **pages =
            realloc(events->pages, (events->n_pages + 1) * sizeof *pages);
        Passerelle__StreamEvent **entries =
            pages ? realloc(events->entries, (events->count + page->n_events) * sizeof *entries)
                  : NULL;
        if (pages)
            events->pages = pages;
        if (!entries)
            passerelle__event_list_reply__free_unpacked(page, NULL);
        assert_non_null(entries);
        events->entries = entries;
        events->pages[events->n_pages++] = page;
        for (size_t i = 0; i < page->n_events; i++) {
            assert_non_null(page->events[i]->event);
            assert_non_null(page->events[i]->position);
            events->entries[events->count++] = page->events[i];
        }
        assert_non_null(page->last_position);
        snprintf(events->last_position, sizeof events->last_position, "%s", page->last_position);
    }
}

void harness_events_free(harness_events_t *events)
{
    for (size_t i = 0; i < events->n_pages; i++)
        passerelle__event_list_reply__free_unpacked(events->pages[i], NULL);
    free(events->pages);
    free(events->entries);
    memset(events, 0, sizeof *events);
}

int harness_events_count_units(const harness_events_t *events, const char *type,
                               const char *external_ref)
{
    int count = 0;
    for (size_t i = 0; i < events->count; i++) {
        const Passerelle__Event *event = events->entries[i]->event;
        if (strcmp(str_or_empty(event->type), type) != 0)
            continue;
        assert_string_equal(str_or_empty(event->dataschema), "passerelle.Unit");
        Passerelle__Unit *unit = passerelle__unit__unpack(NULL, event->data.len, event->data.data);
        assert_non_null(unit);
        if (!external_ref || strcmp(str_or_empty(unit->external_ref), external_ref) == 0)
            count++;
        passerelle__unit__free_unpacked(unit, NULL);
    }
    return count;
}

/* --- running the CLI ------------------------------------------------------- */

void harness_cli_init(harness_cli_t *cli, const char *out_dir, const char *cwd, int deadline_ms)
{
    memset(cli, 0, sizeof *cli);
    snprintf(cli->binary, sizeof cli->binary, "%s", harness_bin("tools/passerelle"));
    snprintf(cli->out_dir, sizeof cli->out_dir, "%s", out_dir);
    snprintf(cli->cwd, sizeof cli->cwd, "%s", cwd ? cwd : "");
    cli->deadline_ms = deadline_ms;
}

char *harness_file_read(const char *path, size_t *len_out)
{
    if (len_out)
        *len_out = 0;
    FILE *file = fopen(path, "rb");
    if (!file)
        return strdup("");
    fseek(file, 0, SEEK_END);
    long size = ftell(file);
    fseek(file, 0, SEEK_SET);
    char *text = calloc(1, (size_t)(size > 0 ? size : 0) + 1);
    if (size > 0 && fread(text, 1, (size_t)size, file) != (size_t)size)
        text[0] = '\0';
    else if (len_out && size > 0)
        *len_out = (size_t)size;
    fclose(file);
    return text;
}

/* In the child: output to the files, the folder, the environment, exec. */
static void cli_exec(const harness_cli_t *cli, const char *out_path, const char *err_path,
                     const char *const *env, const char *const *argv)
{
    int out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int err = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (out < 0 || err < 0 || (cli->cwd[0] && chdir(cli->cwd) != 0))
        _exit(127);
    dup2(out, STDOUT_FILENO);
    dup2(err, STDERR_FILENO);
    close(out);
    close(err);
    /* The test's own environment must not leak into what is tested. */
    unsetenv("PASSERELLE_RESERVATIONS_ENDPOINT");
    unsetenv("PASSERELLE_DOCSTORE_ENDPOINT");
    unsetenv("PASSERELLE_NOTIFICATIONS_ENDPOINT");
    unsetenv("PASSERELLE_INDICATORS_ENDPOINT");
    unsetenv("PASSERELLE_KEYS_DIR");
    unsetenv("PASSERELLE_CLIENT");
    unsetenv("PASSERELLE_INSECURE");
    for (int i = 0; env && env[i]; i++)
        putenv((char *)env[i]);
    execv(argv[0], (char *const *)argv);
    _exit(127);
}

void harness_cli_service(harness_cli_t *cli, const char *variable, const char *endpoint,
                         const char *keys_dir)
{
    snprintf(cli->endpoint_variable, sizeof cli->endpoint_variable, "%s", variable ? variable : "");
    snprintf(cli->endpoint, sizeof cli->endpoint, "%s", endpoint);
    snprintf(cli->keys_dir, sizeof cli->keys_dir, "%s", keys_dir);
}

/* Runs the program with the arguments `before` (n_before of them), then
 * first and what follows it in args up to a NULL (harness_run_cli). */
static harness_run_t cli_run(const harness_cli_t *cli, const char *const *env,
                             const char *const *before, int n_before, const char *first,
                             va_list args)
{
    const char *argv[HARNESS_CLI_MAX_ARGS + 2];
    int argc = 0;
    argv[argc++] = cli->binary;
    for (int i = 0; i < n_before && argc <= HARNESS_CLI_MAX_ARGS; i++)
        argv[argc++] = before[i];
    for (const char *arg = first; arg && argc <= HARNESS_CLI_MAX_ARGS;
         arg = va_arg(args, const char *))
        argv[argc++] = arg;
    argv[argc] = NULL;

    char out_path[1024], err_path[1024];
    snprintf(out_path, sizeof out_path, "%s/cli.out", cli->out_dir);
    snprintf(err_path, sizeof err_path, "%s/cli.err", cli->out_dir);
    harness_run_t run = {-1, NULL, NULL};
    pid_t pid = fork_child();
    if (pid == 0)
        cli_exec(cli, out_path, err_path, env, argv);
    assert_true(pid > 0);
    int status = wait_for_exit(pid, cli->deadline_ms);
    if (status == -1) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    run.out = harness_file_read(out_path, NULL);
    run.err = harness_file_read(err_path, NULL);
    if (getenv("PASSERELLE_TEST_VERBOSE"))
        fprintf(stderr, "[cli %s ...] exit %d\n--- stdout\n%s--- stderr\n%s",
                argc > 1 ? argv[1] : "", run.exit_code, run.out, run.err);
    return run;
}

harness_run_t harness_run_cli(const harness_cli_t *cli, const char *const *env, const char *first,
                              ...)
{
    va_list args;
    va_start(args, first);
    harness_run_t run = cli_run(cli, env, NULL, 0, first, args);
    va_end(args);
    return run;
}

harness_run_t harness_run_cli_as(const harness_cli_t *cli, const char *name, const char *first, ...)
{
    char endpoint_env[200], keys_env[600];
    const char *env[3] = {NULL};
    const char *before[6];
    int n_before = 0;
    if (cli->endpoint_variable[0]) {
        snprintf(endpoint_env, sizeof endpoint_env, "%s=%s", cli->endpoint_variable, cli->endpoint);
        snprintf(keys_env, sizeof keys_env, "PASSERELLE_KEYS_DIR=%s", cli->keys_dir);
        env[0] = endpoint_env;
        env[1] = keys_env;
    } else {
        before[n_before++] = "--endpoint";
        before[n_before++] = cli->endpoint;
        before[n_before++] = "--keys";
        before[n_before++] = cli->keys_dir;
    }
    before[n_before++] = "--as";
    before[n_before++] = name;
    va_list args;
    va_start(args, first);
    harness_run_t run = cli_run(cli, env, before, n_before, first, args);
    va_end(args);
    return run;
}

void harness_run_free(harness_run_t *run)
{
    free(run->out);
    free(run->err);
    memset(run, 0, sizeof *run);
}

void harness_assert_exit(const harness_run_t *run, int code)
{
    if (run->exit_code != code) {
        fprintf(stderr, "exit %d, expected %d\n--- stdout\n%s--- stderr\n%s", run->exit_code, code,
                run->out, run->err);
        fail();
    }
}

void harness_assert_contains(const char *haystack, const char *needle)
{
    if (!strstr(haystack, needle)) {
        fprintf(stderr, "expected to find \"%s\" in:\n%s\n", needle, haystack);
        fail();
    }
}

json_t *harness_parse_json(const char *text)
{
    json_error_t error;
    json_t *json = json_loads(text, 0, &error);
    if (!json)
        fprintf(stderr, "not JSON (%s): %s\n", error.text, text);
    assert_non_null(json);
    return json;
}

/* --- the document store's protocol ------------------------------------- */

void harness_hex32(const unsigned char digest[32], char out[65])
{
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", digest[i]);
}

void harness_sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char digest[32];
    crypto_hash_sha256(digest, data, len);
    harness_hex32(digest, out);
}

uint8_t *harness_pattern(size_t len, unsigned seed, unsigned shift)
{
    uint8_t *buf = malloc(len ? len : 1);
    assert_non_null(buf);
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)((i * 2654435761u + seed) >> shift);
    return buf;
}

void harness_doc_begin_request(Passerelle__UploadBeginRequest *req, const char *title,
                               uint64_t size, const char *sha, uint32_t theme)
{
    passerelle__upload_begin_request__init(req);
    req->title = (char *)title;
    req->has_kind = req->has_theme = req->has_size = true;
    req->kind = PASSERELLE__DOCUMENT_KIND__DOCUMENT_STUDY;
    req->theme = theme;
    req->size = size;
    req->sha256 = (char *)sha;
}

Passerelle__UploadSession *harness_doc_session_call(client_t *c, const char *type,
                                                    const ProtobufCMessage *body)
{
    Passerelle__Reply *reply = harness_call(c, type, body, PASSERELLE__STATUS__STATUS_OK, NULL);
    Passerelle__UploadSession *s =
        passerelle__upload_session__unpack(NULL, reply->body.len, reply->body.data);
    passerelle__reply__free_unpacked(reply, NULL);
    assert_non_null(s);
    return s;
}

char *harness_doc_begin(client_t *c, const Passerelle__UploadBeginRequest *req, uint32_t *chunk_max)
{
    Passerelle__UploadSession *s = harness_doc_session_call(c, "upload.begin", &req->base);
    assert_true(id_valid('L', s->upload_id));
    assert_int_equal(s->received, 0);
    if (chunk_max)
        *chunk_max = s->chunk_max;
    char *id = strdup(s->upload_id);
    passerelle__upload_session__free_unpacked(s, NULL);
    return id;
}

uint64_t harness_doc_chunk(client_t *c, const char *upload, uint64_t offset, const void *data,
                           size_t len)
{
    Passerelle__UploadChunkRequest req = PASSERELLE__UPLOAD_CHUNK_REQUEST__INIT;
    req.upload_id = (char *)upload;
    req.has_offset = req.has_data = true;
    req.offset = offset;
    req.data.data = (uint8_t *)data;
    req.data.len = len;
    Passerelle__UploadSession *s = harness_doc_session_call(c, "upload.chunk", &req.base);
    uint64_t received = s->received;
    passerelle__upload_session__free_unpacked(s, NULL);
    return received;
}

uint64_t harness_doc_send_range(client_t *c, const char *upload, const void *data, uint64_t offset,
                                uint64_t len, bool strict)
{
    uint64_t received = 0, end = offset + len;
    do {
        size_t n = end - offset < HARNESS_DOC_CHUNK ? (size_t)(end - offset) : HARNESS_DOC_CHUNK;
        received = harness_doc_chunk(c, upload, offset, (const uint8_t *)data + offset, n);
        if (strict)
            assert_int_equal(received, offset + n);
        offset += n;
    } while (offset < end);
    return received;
}

char *harness_doc_commit(client_t *c, const char *upload)
{
    Passerelle__UploadCommitRequest req = PASSERELLE__UPLOAD_COMMIT_REQUEST__INIT;
    req.upload_id = (char *)upload;
    Passerelle__UploadSession *s = harness_doc_session_call(c, "upload.commit", &req.base);
    assert_true(id_valid('F', s->document));
    char *id = strdup(s->document);
    passerelle__upload_session__free_unpacked(s, NULL);
    return id;
}

char *harness_doc_put(client_t *c, Passerelle__UploadBeginRequest *req, const void *data,
                      size_t len, char sha[65])
{
    char own[65];
    char *digest = sha ? sha : own;
    harness_sha256_hex(data, len, digest);
    char *before = req->sha256;
    req->has_size = true;
    req->size = len;
    req->sha256 = digest;
    char *upload = harness_doc_begin(c, req, NULL);
    req->sha256 = before;
    harness_doc_send_range(c, upload, data, 0, len, true);
    char *id = harness_doc_commit(c, upload);
    free(upload);
    return id;
}

Passerelle__Reply *harness_doc_read_call(client_t *c, const char *id, uint32_t version,
                                         uint64_t offset, uint32_t length, int status)
{
    Passerelle__DocumentReadRequest req = PASSERELLE__DOCUMENT_READ_REQUEST__INIT;
    req.id = (char *)id;
    req.has_version = version != 0;
    req.version = version;
    req.has_offset = true;
    req.offset = offset;
    req.has_length = length != 0;
    req.length = length;
    return harness_call(c, "document.read", &req.base, status, NULL);
}

Passerelle__DocumentReadReply *harness_doc_read(client_t *c, const char *id, uint32_t version,
                                                uint64_t offset, uint32_t length)
{
    Passerelle__Reply *reply =
        harness_doc_read_call(c, id, version, offset, length, PASSERELLE__STATUS__STATUS_OK);
    Passerelle__DocumentReadReply *r =
        passerelle__document_read_reply__unpack(NULL, reply->body.len, reply->body.data);
    passerelle__reply__free_unpacked(reply, NULL);
    assert_non_null(r);
    return r;
}

uint64_t harness_doc_read_all(client_t *c, const char *id, uint32_t version, char sha[65],
                              void (*on_chunk)(void *arg), void *arg)
{
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    uint64_t offset = 0, size = 0;
    do {
        Passerelle__DocumentReadReply *r =
            harness_doc_read(c, id, version, offset, HARNESS_DOC_CHUNK);
        size = r->size;
        assert_int_equal(r->offset, offset);
        crypto_hash_sha256_update(&st, r->data.data, r->data.len);
        offset += r->data.len;
        bool empty = r->data.len == 0;
        passerelle__document_read_reply__free_unpacked(r, NULL);
        if (empty)
            break;
        if (on_chunk)
            on_chunk(arg);
    } while (offset < size);
    unsigned char digest[32];
    crypto_hash_sha256_final(&st, digest);
    harness_hex32(digest, sha);
    return offset;
}

Passerelle__FsckReply *harness_doc_fsck(client_t *c)
{
    Passerelle__FsckRequest req = PASSERELLE__FSCK_REQUEST__INIT;
    Passerelle__Reply *reply =
        harness_call(c, "docs.fsck", &req.base, PASSERELLE__STATUS__STATUS_OK, NULL);
    Passerelle__FsckReply *r =
        passerelle__fsck_reply__unpack(NULL, reply->body.len, reply->body.data);
    passerelle__reply__free_unpacked(reply, NULL);
    assert_non_null(r);
    return r;
}

void harness_doc_blob_path(const char *volume, const char *sha, const char *suffix, char *out,
                           size_t size)
{
    snprintf(out, size, "%s/blobs/%.2s/%s%s", volume, sha, sha, suffix);
}

void harness_doc_plant_blob(const char *volume, const void *bytes, size_t len, char sha[65])
{
    harness_sha256_hex(bytes, len, sha);
    char dir[1024], path[1024];
    snprintf(dir, sizeof dir, "%s/blobs/%.2s", volume, sha);
    mkdir(dir, 0755);
    harness_doc_blob_path(volume, sha, "", path, sizeof path);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(bytes, 1, len, f), len);
    fclose(f);
    /* One block: its hash is the blob's. */
    harness_doc_blob_path(volume, sha, ".blocks", path, sizeof path);
    f = fopen(path, "wb");
    assert_non_null(f);
    fprintf(f, "%s\n", sha);
    fclose(f);
}

/* --- helper processes --------------------------------------------------------- */

int harness_proc_start(harness_proc_t *proc, const char *tool, const char *dir, const char *tag,
                       const char *const *args, bool wait_listening)
{
    memset(proc, 0, sizeof *proc);
    snprintf(proc->stdout_path, sizeof proc->stdout_path, "%s/%s.out", dir, tag);
    char binary[1024];
    snprintf(binary, sizeof binary, "%s", harness_bin(tool));
    size_t n = 0;
    while (args && args[n])
        n++;
    pid_t pid = fork_child();
    if (pid == -1)
        return -1;
    if (pid == 0) {
        int fd = open(proc->stdout_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int null = open("/dev/null", O_RDWR);
        if (fd == -1 || null == -1)
            _exit(126);
        dup2(null, STDIN_FILENO);
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        char **argv = calloc(n + 2, sizeof *argv);
        if (!argv)
            _exit(126);
        argv[0] = binary;
        for (size_t i = 0; i < n; i++)
            argv[i + 1] = (char *)args[i];
        execv(binary, argv);
        fprintf(stderr, "harness: exec %s: %s\n", binary, strerror(errno));
        _exit(127);
    }
    proc->pid = pid;
    if (!wait_listening)
        return 0;
    for (int waited = 0; waited < HARNESS_START_WAIT_MS; waited += HARNESS_POLL_MS) {
        char *text = harness_file_read(proc->stdout_path, NULL);
        const char *line = text ? strstr(text, "listening on ") : NULL;
        if (line && strchr(line, '\n')) {
            sscanf(line, "listening on %127s", proc->url);
            const char *colon = strrchr(proc->url, ':');
            proc->port = colon ? atoi(colon + 1) : 0;
            free(text);
            return proc->port > 0 ? 0 : -1;
        }
        free(text);
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            fprintf(stderr, "harness: %s exited before listening (see %s)\n", tool,
                    proc->stdout_path);
            proc->pid = 0;
            return -1;
        }
        sleep_ms(HARNESS_POLL_MS);
    }
    fprintf(stderr, "harness: %s did not say where it listens (see %s)\n", tool, proc->stdout_path);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    proc->pid = 0;
    return -1;
}

int harness_proc_stop(harness_proc_t *proc, int sig)
{
    if (proc->pid <= 0)
        return -1;
    kill(proc->pid, sig);
    int status = wait_for_exit(proc->pid, 10000);
    if (status == -1) {
        kill(proc->pid, SIGKILL);
        waitpid(proc->pid, &status, 0);
    }
    proc->pid = 0;
    return status;
}

json_t *harness_jsonl_read(const char *path)
{
    json_t *array = json_array();
    char *text = harness_file_read(path, NULL);
    if (!text)
        return array;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_t *value = json_loads(line, 0, NULL);
        if (value)
            json_array_append_new(array, value);
    }
    free(text);
    return array;
}

json_t *harness_jsonl_wait(const char *path, size_t count, int timeout_ms)
{
    json_t *array = NULL;
    for (int waited = 0;; waited += HARNESS_POLL_MS) {
        json_decref(array);
        array = harness_jsonl_read(path);
        if (json_array_size(array) >= count || waited >= timeout_ms)
            return array;
        sleep_ms(HARNESS_POLL_MS);
    }
}

/* --- notifications -------------------------------------------------------------- */

int harness_notify_start(const harness_stack_t *stack, harness_service_t *service,
                         char *const extra_env[])
{
    static char *defaults[] = {
        "PASSERELLE_NOTIFY_ALLOWLIST=127.0.0.1",
        "PASSERELLE_FEED_ENDPOINT=tcp://127.0.0.1:*",
        "PASSERELLE_NOTIFY_CLOCK_SCALE=1000",
        "PASSERELLE_NOTIFY_TIMEOUT_MS=2000",
    };
    size_t n_defaults = sizeof defaults / sizeof defaults[0], n_extra = 0;
    while (extra_env && extra_env[n_extra])
        n_extra++;
    char **env = calloc(n_defaults + n_extra + 1, sizeof *env);
    if (!env)
        return -1;
    for (size_t i = 0; i < n_defaults; i++)
        env[i] = defaults[i];
    for (size_t i = 0; i < n_extra; i++)
        env[n_defaults + i] = extra_env[i];
    int rc = harness_service_start(service, "notifications", stack->dir, env);
    free(env);
    return rc;
}

client_t *harness_notify_client(const harness_stack_t *stack, const harness_service_t *service,
                                const char *name)
{
    return harness_client(service->endpoint, stack->keys, name, HARNESS_STACK_CLIENT_TIMEOUT_MS,
                          HARNESS_STACK_CLIENT_RETRIES);
}

/* Splits a comma-separated list in place into at most max items. */
static size_t split_list(char *text, char **items, size_t max)
{
    size_t n = 0;
    char *save = NULL;
    for (char *t = strtok_r(text, ",", &save); t && n < max; t = strtok_r(NULL, ",", &save))
        items[n++] = t;
    return n;
}

void harness_notify_webhook(client_t *client, const char *url, const char *types,
                            const char *territories, char *id, char *secret)
{
    char types_buf[512], territories_buf[128];
    snprintf(types_buf, sizeof types_buf, "%s", types ? types : "");
    snprintf(territories_buf, sizeof territories_buf, "%s", territories ? territories : "");
    char *type_items[16], *territory_items[8];
    Passerelle__SubscriptionCreateRequest req = PASSERELLE__SUBSCRIPTION_CREATE_REQUEST__INIT;
    req.has_channel = true;
    req.channel = PASSERELLE__CHANNEL__CHANNEL_WEBHOOK;
    req.url = (char *)url;
    req.n_event_types = split_list(types_buf, type_items, 16);
    req.event_types = type_items;
    req.n_territories = split_list(territories_buf, territory_items, 8);
    req.territories = territory_items;
    Passerelle__Reply *reply = harness_call(client, "subscription.create", &req.base, 0, NULL);
    Passerelle__Subscription *sub =
        passerelle__subscription__unpack(NULL, reply->body.len, reply->body.data);
    assert_non_null(sub);
    assert_non_null(sub->secret);
    if (id)
        snprintf(id, ID_LEN, "%s", sub->id);
    if (secret)
        snprintf(secret, 128, "%s", sub->secret);
    passerelle__subscription__free_unpacked(sub, NULL);
    passerelle__reply__free_unpacked(reply, NULL);
}

void harness_envisaged_unit(client_t *client, const char *external_ref, const char *commune,
                            char *unit_id)
{
    Passerelle__UnitRegisterRequest unit;
    harness_unit_request(&unit, external_ref);
    unit.commune = (char *)commune;
    Passerelle__Reply *reply = harness_call(client, "unit.register", &unit.base, 0, NULL);
    Passerelle__Unit *made = passerelle__unit__unpack(NULL, reply->body.len, reply->body.data);
    assert_non_null(made);
    snprintf(unit_id, ID_LEN, "%s", made->id);
    passerelle__unit__free_unpacked(made, NULL);
    passerelle__reply__free_unpacked(reply, NULL);
    Passerelle__ConventionEnvisageRequest env = PASSERELLE__CONVENTION_ENVISAGE_REQUEST__INIT;
    env.unit = unit_id;
    env.has_level = true;
    env.level = PASSERELLE__CONVENTION_LEVEL__LEVEL_LOC2;
    reply = harness_call(client, "convention.envisage", &env.base, 0, NULL);
    passerelle__reply__free_unpacked(reply, NULL);
}

int harness_sink_start(harness_proc_t *sink, const char *dir, const char *tag, const char *secret,
                       const char *mode, char *out_path)
{
    char mode_path[512];
    snprintf(out_path, 512, "%s/%s.jsonl", dir, tag);
    snprintf(mode_path, sizeof mode_path, "%s/%s.mode", dir, tag);
    const char *args[16];
    size_t n = 0;
    args[n++] = "--port";
    args[n++] = "0";
    args[n++] = "--out";
    args[n++] = out_path;
    args[n++] = "--mode-file";
    args[n++] = mode_path;
    args[n++] = "--mode";
    args[n++] = mode ? mode : "ok";
    args[n++] = "--hold-ms";
    args[n++] = "5000";
    if (secret) {
        args[n++] = "--secret";
        args[n++] = secret;
    }
    args[n] = NULL;
    return harness_proc_start(sink, "tools/passerelle-sink", dir, tag, args, true);
}

void harness_sink_mode(const char *dir, const char *tag, const char *mode)
{
    char path[512], tmp[520];
    snprintf(path, sizeof path, "%s/%s.mode", dir, tag);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    assert_non_null(f);
    fprintf(f, "%s\n", mode);
    fclose(f);
    assert_int_equal(rename(tmp, path), 0);
}

/* --- notifications: restarts and fault checks ----------------------------- */

/* Attempts at restarting on the old port; each may wait for the "listening"
 * line, so they are few. */
#define HARNESS_NOTIFY_RESTART_TRIES 10

int harness_notify_restart(const harness_stack_t *stack, harness_service_t *service,
                           char *const extra_env[])
{
    if (service->pid > 0 || service->port <= 0)
        return -1;
    /* harness_notify_start, so that the test settings are the same ones,
     * with the request endpoint pinned last: it wins over any other. */
    char endpoint[96];
    snprintf(endpoint, sizeof endpoint, "PASSERELLE_NOTIFICATIONS_ENDPOINT=tcp://127.0.0.1:%d",
             service->port);
    size_t n_extra = 0;
    while (extra_env && extra_env[n_extra])
        n_extra++;
    char **env = calloc(n_extra + 2, sizeof *env);
    if (!env)
        return -1;
    for (size_t i = 0; i < n_extra; i++)
        env[i] = extra_env[i];
    env[n_extra] = endpoint;
    int rc = -1;
    for (int attempt = 0; attempt < HARNESS_NOTIFY_RESTART_TRIES && rc != 0; attempt++) {
        if (attempt > 0)
            sleep_ms(100);
        rc = harness_notify_start(stack, service, env);
    }
    free(env);
    return rc;
}

bool harness_log_has_sanitizer_report(const char *log_path)
{
    static const char *const marks[] = {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                                        "runtime error:", "WARNING: AddressSanitizer"};
    char *text = harness_file_read(log_path, NULL);
    bool found = false;
    for (size_t i = 0; text && !found && i < sizeof marks / sizeof marks[0]; i++) {
        const char *at = strstr(text, marks[i]);
        if (at) {
            const char *end = strchr(at, '\n');
            fprintf(stderr, "harness: %s: %.*s\n", log_path,
                    (int)(end ? end - at : (ptrdiff_t)strlen(at)), at);
            found = true;
        }
    }
    free(text);
    return found;
}

Passerelle__AttemptList *harness_notify_attempts(client_t *client, const char *sub_id)
{
    Passerelle__AttemptListRequest req = PASSERELLE__ATTEMPT_LIST_REQUEST__INIT;
    req.subscription_id = (char *)sub_id;
    req.has_limit = true;
    req.limit = 1000;
    Passerelle__Reply *reply = harness_call(client, "attempt.list", &req.base, 0, NULL);
    Passerelle__AttemptList *list =
        passerelle__attempt_list__unpack(NULL, reply->body.len, reply->body.data);
    passerelle__reply__free_unpacked(reply, NULL);
    assert_non_null(list);
    return list;
}

/* --- indicators -------------------------------------------------------------- */

int harness_indicators_start(const harness_stack_t *stack, harness_service_t *service,
                             char *const extra_env[])
{
    return harness_service_start(service, "indicators", stack->dir, extra_env);
}

client_t *harness_indicators_client(const harness_stack_t *stack, const harness_service_t *service,
                                    const char *name)
{
    return harness_client(service->endpoint, stack->keys, name, HARNESS_STACK_CLIENT_TIMEOUT_MS,
                          HARNESS_STACK_CLIENT_RETRIES);
}

int harness_indicators_setup(void **state, size_t size, const char *tag, char *const extra_env[])
{
    if (size < sizeof(harness_indicators_t))
        size = sizeof(harness_indicators_t);
    if (harness_fixture_setup(state, size, tag, "admin") != 0)
        return -1;
    harness_indicators_t *f = *state;
    if (harness_indicators_start(&f->stack, &f->indicators, extra_env) != 0)
        return -1;
    f->admin = harness_indicators_client(&f->stack, &f->indicators, "admin");
    f->partner = harness_indicators_client(&f->stack, &f->indicators, "partner");
    store_config_t cfg;
    harness_redis_config(&f->stack.redis, &cfg);
    f->store = store_new(&cfg);
    return f->admin && f->partner && f->store ? 0 : -1;
}

int harness_indicators_teardown(void **state)
{
    harness_indicators_t *f = *state;
    bool clean = true;
    if (f) {
        client_destroy(&f->admin);
        client_destroy(&f->partner);
        store_destroy(&f->store);
        clean = harness_service_stop_checked(&f->indicators);
    }
    int rc = harness_fixture_teardown(state);
    return clean ? rc : -1;
}

uint64_t harness_indicators_generation(store_t *store)
{
    redisReply *r = NULL;
    assert_int_equal(store_command(store, &r, "GET indicators:current"), STORE_OK);
    uint64_t gen = r->type == REDIS_REPLY_STRING ? strtoull(r->str, NULL, 10) : 0;
    freeReplyObject(r);
    return gen;
}

long long harness_indicators_counter(store_t *store, const char *suffix, const char *field)
{
    redisReply *r = NULL;
    assert_int_equal(store_command(store, &r, "HGET indicators:g%" PRIu64 ":%s %s",
                                   harness_indicators_generation(store), suffix, field),
                     STORE_OK);
    long long v = r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10) : 0;
    freeReplyObject(r);
    return v;
}

void harness_indicators_expect_counter(store_t *store, const char *suffix, const char *field,
                                       long long want, int timeout_ms)
{
    int64_t deadline = time_now_ms() + timeout_ms;
    long long got;
    while ((got = harness_indicators_counter(store, suffix, field)) != want &&
           time_now_ms() < deadline)
        sleep_ms(HARNESS_POLL_MS);
    if (got != want)
        fail_msg("%s %s is %lld, expected %lld", suffix, field, got, want);
}

/* True if the "indicators" group has read stream up to end and holds
 * nothing pending (XINFO GROUPS: last-delivered-id and pending). */
static bool indicators_group_done(const redisReply *groups, const char *end)
{
    bool done = false;
    for (size_t g = 0; groups->type == REDIS_REPLY_ARRAY && g < groups->elements; g++) {
        const redisReply *info = groups->element[g];
        const char *name = NULL, *delivered = NULL;
        long long pending = -1;
        for (size_t i = 0; i + 1 < info->elements; i += 2) {
            const char *k = info->element[i]->str;
            const redisReply *v = info->element[i + 1];
            if (strcmp(k, "name") == 0)
                name = v->str;
            else if (strcmp(k, "last-delivered-id") == 0)
                delivered = v->str;
            else if (strcmp(k, "pending") == 0)
                pending = v->integer;
        }
        if (name && strcmp(name, "indicators") == 0)
            done = delivered && strcmp(delivered, end) == 0 && pending == 0;
    }
    return done;
}

void harness_indicators_wait_caught_up(store_t *store, const char *stream, int timeout_ms)
{
    int64_t deadline = time_now_ms() + timeout_ms;
    for (;;) {
        redisReply *last = NULL, *groups = NULL;
        assert_int_equal(store_command(store, &last, "XREVRANGE %s + - COUNT 1", stream), STORE_OK);
        /* An empty stream has nothing to wait for. */
        bool caught_up = last->elements == 0;
        if (!caught_up && store_command(store, &groups, "XINFO GROUPS %s", stream) == STORE_OK)
            caught_up = indicators_group_done(groups, last->element[0]->element[0]->str);
        freeReplyObject(last);
        if (groups)
            freeReplyObject(groups);
        if (caught_up)
            return;
        if (time_now_ms() > deadline)
            fail_msg("the indicators group did not catch up with %s", stream);
        sleep_ms(HARNESS_POLL_MS);
    }
}

/* Adds each counter hash of keys (one pipeline) to all as
 * {suffix: {field: value}}, zeros left out; prefix_len is the length of
 * "indicators:g<gen>:" the suffix follows. */
static void counters_add(store_t *store, const redisReply *keys, size_t prefix_len, json_t *all)
{
    size_t n = keys->elements;
    if (n == 0)
        return;
    store_cmd_t *cmds = calloc(n, sizeof *cmds);
    const char **argv = calloc(2 * n, sizeof *argv);
    redisReply **replies = calloc(n, sizeof *replies);
    store_result_t *results = calloc(n, sizeof *results);
    assert_true(cmds && argv && replies && results);
    for (size_t i = 0; i < n; i++) {
        argv[2 * i] = "HGETALL";
        argv[2 * i + 1] = keys->element[i]->str;
        cmds[i] = (store_cmd_t){2, &argv[2 * i], NULL};
    }
    store_command_many(store, cmds, n, replies, results);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(results[i], STORE_OK);
        const redisReply *hash = replies[i];
        json_t *fields = json_object();
        for (size_t k = 0; k + 1 < hash->elements; k += 2) {
            long long v = strtoll(hash->element[k + 1]->str, NULL, 10);
            if (v != 0)
                json_object_set_new(fields, hash->element[k]->str, json_integer(v));
        }
        if (json_object_size(fields) > 0)
            json_object_set_new(all, keys->element[i]->str + prefix_len, fields);
        else
            json_decref(fields);
        freeReplyObject(replies[i]);
    }
    free(cmds);
    free(argv);
    free(replies);
    free(results);
}

json_t *harness_indicators_counters(store_t *store, uint64_t gen)
{
    json_t *all = json_object();
    char pattern[64], cursor[32] = "0";
    snprintf(pattern, sizeof pattern, "indicators:g%" PRIu64 ":c:*", gen);
    size_t prefix_len = strlen(pattern) - 3; /* up to "c:" */
    do {
        redisReply *scan = NULL;
        assert_int_equal(
            store_command(store, &scan, "SCAN %s MATCH %s COUNT 1000", cursor, pattern), STORE_OK);
        snprintf(cursor, sizeof cursor, "%s", scan->element[0]->str);
        counters_add(store, scan->element[1], prefix_len, all);
        freeReplyObject(scan);
    } while (strcmp(cursor, "0") != 0);
    return all;
}

void harness_indicators_expect_same_counters(json_t *a, json_t *b, const char *what)
{
    if (json_equal(a, b))
        return;
    int shown = 0;
    const char *key;
    json_t *fields;
    json_object_foreach(a, key, fields)
    {
        json_t *other = json_object_get(b, key);
        if (!json_equal(fields, other) && shown++ < 10) {
            char *x = json_dumps(fields, JSON_COMPACT | JSON_SORT_KEYS);
            char *y = other ? json_dumps(other, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
            fprintf(stderr, "%s: %s: %s vs %s\n", what, key, x, y ? y : "(absent)");
            free(x);
            free(y);
        }
    }
    json_object_foreach(b, key, fields)
    {
        if (!json_object_get(a, key) && shown++ < 10)
            fprintf(stderr, "%s: %s only in the second\n", what, key);
    }
    fail_msg("%s: the counters differ (%zu keys vs %zu)", what, json_object_size(a),
             json_object_size(b));
}

/* How many keys match the pattern. */
static size_t store_count_keys(store_t *store, const char *pattern)
{
    size_t n = 0;
    char cursor[32] = "0";
    do {
        redisReply *scan = NULL;
        assert_int_equal(
            store_command(store, &scan, "SCAN %s MATCH %s COUNT 1000", cursor, pattern), STORE_OK);
        snprintf(cursor, sizeof cursor, "%s", scan->element[0]->str);
        n += scan->element[1]->elements;
        freeReplyObject(scan);
    } while (strcmp(cursor, "0") != 0);
    return n;
}

void harness_store_expect_no_keys(store_t *store, const char *pattern, int timeout_ms)
{
    int64_t deadline = time_now_ms() + timeout_ms;
    size_t left;
    while ((left = store_count_keys(store, pattern)) > 0 && time_now_ms() < deadline)
        sleep_ms(HARNESS_POLL_MS);
    if (left > 0)
        fail_msg("%zu keys %s are left after %d ms", left, pattern, timeout_ms);
}

Passerelle__RebuildStatus *harness_indicators_rebuild_call(client_t *client, const char *type,
                                                           int status, char *message,
                                                           size_t message_size)
{
    Passerelle__RebuildRequest req = PASSERELLE__REBUILD_REQUEST__INIT;
    Passerelle__Reply *reply = harness_call(client, type, &req.base, status, NULL);
    Passerelle__RebuildStatus *s = NULL;
    if (status == PASSERELLE__STATUS__STATUS_OK) {
        s = passerelle__rebuild_status__unpack(NULL, reply->body.len, reply->body.data);
        assert_non_null(s);
    }
    if (message)
        snprintf(message, message_size, "%s", str_or_empty(reply->message));
    passerelle__reply__free_unpacked(reply, NULL);
    return s;
}

Passerelle__RebuildStatus *harness_indicators_rebuild_wait(client_t *client, int timeout_ms)
{
    int64_t deadline = time_now_ms() + timeout_ms;
    for (;;) {
        Passerelle__RebuildStatus *s = harness_indicators_rebuild_call(
            client, "indicator.rebuild_status", PASSERELLE__STATUS__STATUS_OK, NULL, 0);
        if (strcmp(s->state, "running") != 0)
            return s;
        passerelle__rebuild_status__free_unpacked(s, NULL);
        if (time_now_ms() > deadline)
            fail_msg("the rebuild did not end within %d ms", timeout_ms);
        sleep_ms(HARNESS_POLL_MS);
    }
}

Passerelle__Series *harness_indicators_series(client_t *client, const char *indicator,
                                              const char *territory, const char *commune,
                                              const char *filter, const char *kind,
                                              const char *from, const char *to)
{
    Passerelle__SeriesRequest req = PASSERELLE__SERIES_REQUEST__INIT;
    Passerelle__Scope scope = PASSERELLE__SCOPE__INIT;
    req.indicator = (char *)indicator;
    req.period_kind = (char *)kind;
    req.from = (char *)from;
    req.to = (char *)to;
    if (filter && *filter)
        req.filter = (char *)filter;
    scope.territory = (char *)territory;
    scope.commune = (char *)commune;
    req.scope = &scope;
    return (Passerelle__Series *)harness_call_ok(client, "indicator.series", &req.base,
                                                 &passerelle__series__descriptor);
}

Passerelle__DemandRow harness_demand_row(unsigned line, const char *period, const char *territory,
                                         int public_, unsigned requests, unsigned visale,
                                         unsigned loca_pass, unsigned mobility, unsigned other,
                                         unsigned housed)
{
    Passerelle__DemandRow row = PASSERELLE__DEMAND_ROW__INIT;
    row.has_line = line != 0;
    row.line = line;
    row.period = (char *)period;
    row.territory = (char *)territory;
    row.has_public_ = public_ != 0;
    row.public_ = public_;
    row.has_housing_requests = true;
    row.housing_requests = requests;
    row.has_aids_visale = true;
    row.aids_visale = visale;
    row.has_aids_loca_pass = true;
    row.aids_loca_pass = loca_pass;
    row.has_aids_mobility = true;
    row.aids_mobility = mobility;
    row.has_aids_other = true;
    row.aids_other = other;
    row.has_housed = true;
    row.housed = housed;
    return row;
}
