/* passerelle-probe: asks a service's operations port whether it is alive or
 * ready, for a container's HEALTHCHECK and for scripts that wait for a
 * service. It is plain libc (one HTTP/1.0 GET over a socket) so that an
 * image needs no curl or wget for its health check.
 *
 *   passerelle-probe reservations            GET /readyz on the port the
 *                                            service binds (the same
 *                                            variable and default it reads)
 *   passerelle-probe reservations /healthz   another path
 *   passerelle-probe 127.0.0.1:9401 /metrics an address, body printed
 *
 * Exit status: 0 when the answer is 200, 1 for another status (its body's
 * first line printed on stderr: what is not ready), 2 when nothing answers
 * or on bad usage. A service bound to every interface (0.0.0.0) is asked on
 * 127.0.0.1. */
#include <errno.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Long enough for a service whose Redis answers slowly (readiness pings it),
 * short enough for a HEALTHCHECK's default 30 s timeout. */
#define PROBE_TIMEOUT_MS 5000
#define PROBE_ANSWER_MAX 65536

static const struct {
    const char *service;
    const char *variable;
    const char *default_endpoint;
} SERVICES[] = {
    {"reservations", "PASSERELLE_RESERVATIONS_HTTP_ENDPOINT", "127.0.0.1:9401"},
    {"notifications", "PASSERELLE_NOTIFICATIONS_HTTP_ENDPOINT", "127.0.0.1:9402"},
    {"indicators", "PASSERELLE_INDICATORS_HTTP_ENDPOINT", "127.0.0.1:9403"},
    {"docstore", "PASSERELLE_DOCSTORE_HTTP_ENDPOINT", "127.0.0.1:9404"},
};

static int usage(void)
{
    fprintf(stderr, "usage: passerelle-probe SERVICE|HOST:PORT [PATH]\n"
                    "  SERVICE: reservations, notifications, indicators or docstore (its\n"
                    "  PASSERELLE_<SERVICE>_HTTP_ENDPOINT, or the default); PATH: /readyz\n"
                    "  by default. Exit 0 on 200, 1 on another status, 2 when nothing answers.\n");
    return 2;
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits until fd is ready for events or the deadline passes: 0, or -1 with
 * errno set (ETIMEDOUT). */
static int wait_for(int fd, short events, long long deadline_ms)
{
    for (;;) {
        long long left = deadline_ms - now_ms();
        if (left <= 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        struct pollfd pfd = {.fd = fd, .events = events};
        int rc = poll(&pfd, 1, (int)left);
        if (rc > 0)
            return 0;
        if (rc < 0 && errno != EINTR)
            return -1;
    }
}

/* Parses "a.b.c.d:port" into addr; "0.0.0.0" becomes the loopback. */
static bool parse_endpoint(const char *endpoint, struct sockaddr_in *addr)
{
    char host[64];
    const char *colon = strrchr(endpoint, ':');
    if (!colon || colon == endpoint || (size_t)(colon - endpoint) >= sizeof host)
        return false;
    memcpy(host, endpoint, (size_t)(colon - endpoint));
    host[colon - endpoint] = '\0';
    char *end = NULL;
    long port = strtol(colon + 1, &end, 10);
    if (*end != '\0' || port < 1 || port > 65535)
        return false;
    memset(addr, 0, sizeof *addr);
    addr->sin_family = AF_INET;
    addr->sin_port = htons((uint16_t)port);
    if (strcmp(host, "0.0.0.0") == 0 || strcmp(host, "*") == 0)
        strcpy(host, "127.0.0.1");
    return inet_pton(AF_INET, host, &addr->sin_addr) == 1;
}

/* Sends GET path and reads the whole answer (HTTP/1.0: the server closes)
 * into answer. The answer's length, or -1 with the reason on stderr. */
static ssize_t http_get(const struct sockaddr_in *addr, const char *endpoint, const char *path,
                        char *answer, size_t answer_size)
{
    long long deadline = now_ms() + PROBE_TIMEOUT_MS;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fprintf(stderr, "passerelle-probe: socket: %s\n", strerror(errno));
        return -1;
    }
    if (connect(fd, (const struct sockaddr *)addr, sizeof *addr) != 0) {
        int err = errno;
        socklen_t len = sizeof err;
        if (err != EINPROGRESS || wait_for(fd, POLLOUT, deadline) != 0 ||
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
            fprintf(stderr, "passerelle-probe: %s: %s\n", endpoint,
                    strerror(err == EINPROGRESS ? errno : err));
            close(fd);
            return -1;
        }
    }
    char request[512];
    int request_len = snprintf(
        request, sizeof request,
        "GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: passerelle-probe\r\n\r\n", path, endpoint);
    if (request_len < 0 || (size_t)request_len >= sizeof request) {
        fprintf(stderr, "passerelle-probe: path too long\n");
        close(fd);
        return -1;
    }
    for (int sent = 0; sent < request_len;) {
        ssize_t n = send(fd, request + sent, (size_t)(request_len - sent), MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (wait_for(fd, POLLOUT, deadline) == 0)
                continue;
        }
        if (n <= 0) {
            fprintf(stderr, "passerelle-probe: %s: sending: %s\n", endpoint, strerror(errno));
            close(fd);
            return -1;
        }
        sent += (int)n;
    }
    size_t got = 0;
    for (;;) {
        if (got + 1 >= answer_size)
            break; /* enough to judge; the rest is not ours to print */
        ssize_t n = recv(fd, answer + got, answer_size - 1 - got, 0);
        if (n > 0) {
            got += (size_t)n;
            continue;
        }
        if (n == 0)
            break;
        if ((errno == EAGAIN || errno == EINTR) && wait_for(fd, POLLIN, deadline) == 0)
            continue;
        fprintf(stderr, "passerelle-probe: %s: reading: %s\n", endpoint, strerror(errno));
        close(fd);
        return -1;
    }
    close(fd);
    answer[got] = '\0';
    return (ssize_t)got;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3 || argv[1][0] == '-')
        return usage();
    const char *target = argv[1];
    const char *path = argc == 3 ? argv[2] : "/readyz";
    if (path[0] != '/')
        return usage();

    const char *endpoint = NULL;
    for (size_t i = 0; i < sizeof SERVICES / sizeof SERVICES[0]; i++) {
        if (strcmp(target, SERVICES[i].service) == 0) {
            const char *value = getenv(SERVICES[i].variable);
            endpoint = value && *value ? value : SERVICES[i].default_endpoint;
            if (strcmp(endpoint, "off") == 0) {
                fprintf(stderr, "passerelle-probe: %s is off: no operations port to ask\n",
                        SERVICES[i].variable);
                return 2;
            }
        }
    }
    if (!endpoint)
        endpoint = target;
    struct sockaddr_in addr;
    if (!parse_endpoint(endpoint, &addr)) {
        fprintf(stderr, "passerelle-probe: '%s' is neither a service nor an IPv4 host:port\n",
                endpoint);
        return 2;
    }

    static char answer[PROBE_ANSWER_MAX];
    if (http_get(&addr, endpoint, path, answer, sizeof answer) < 0)
        return 2;
    int status = 0;
    if (sscanf(answer, "HTTP/%*d.%*d %d", &status) != 1) {
        fprintf(stderr, "passerelle-probe: %s: not an HTTP answer\n", endpoint);
        return 2;
    }
    const char *body = strstr(answer, "\r\n\r\n");
    body = body ? body + 4 : "";
    if (status == 200) {
        size_t len = strlen(body);
        fputs(body, stdout);
        if (len > 0 && body[len - 1] != '\n')
            putchar('\n');
        return 0;
    }
    size_t line = strcspn(body, "\r\n");
    fprintf(stderr, "passerelle-probe: %s%s: %d %.*s\n", endpoint, path, status, (int)line, body);
    return 1;
}
