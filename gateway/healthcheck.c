/*
 * healthcheck.c: `deletion-gateway health`, the container's HEALTHCHECK.
 *
 *   healthcheck_parse_url()  http://HOST[:PORT][/PATH] into its parts
 *   healthcheck_get()        one GET over a socket, with a deadline
 *   healthcheck_main()       the command: exit 0 only for "HTTP/1.x 200"
 *
 * Plain HTTP only: the probe runs inside the container against the
 * gateway's own listener, and keeping TLS out keeps it a few dozen lines.
 * With TLS on the listener, point it at the admin listener or override the
 * HEALTHCHECK.
 */
#include "healthcheck.h"
#include "util.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define HC_DEFAULT_URL "http://127.0.0.1:8080/healthz"
#define HC_MAX_TIMEOUT_MS 60000

static int hc_copy(char *out, size_t outlen, const char *s, size_t n)
{
    if (n == 0 || n >= outlen)
        return -1;
    memcpy(out, s, n);
    out[n] = '\0';
    return 0;
}

int healthcheck_parse_url(const char *url, char *host, size_t hostlen, char *port, size_t portlen,
                          char *path, size_t pathlen)
{
    const char *p, *end, *colon;

    if (strncmp(url, "http://", 7) != 0)
        return -1;
    p = url + 7;
    end = p + strcspn(p, "/");
    if (*p == '[') { /* [v6]:port */
        const char *close = memchr(p, ']', (size_t)(end - p));
        if (close == NULL || hc_copy(host, hostlen, p + 1, (size_t)(close - p - 1)) != 0)
            return -1;
        colon = close + 1 < end && close[1] == ':' ? close + 1 : NULL;
        if (colon == NULL && close + 1 != end)
            return -1;
    } else {
        colon = memchr(p, ':', (size_t)(end - p));
        if (hc_copy(host, hostlen, p, (size_t)((colon != NULL ? colon : end) - p)) != 0)
            return -1;
    }
    if (colon != NULL) {
        char digits[8];
        int64_t n;
        if (hc_copy(digits, sizeof(digits), colon + 1, (size_t)(end - colon - 1)) != 0 ||
            util_parse_int64(digits, 1, 65535, &n) != 0 ||
            hc_copy(port, portlen, digits, strlen(digits)) != 0)
            return -1;
    } else if (hc_copy(port, portlen, "80", 2) != 0) {
        return -1;
    }
    if (*end == '\0')
        end = "/";
    if (hc_copy(path, pathlen, end, strlen(end)) != 0 || strpbrk(path, " \r\n") != NULL)
        return -1;
    return 0;
}

/* Waits for fd to become ready for events until deadline (monotonic ms). */
static int hc_wait(int fd, short events, int64_t deadline)
{
    struct pollfd pfd = {.fd = fd, .events = events};
    int64_t left = deadline - util_mono_ms();

    if (left <= 0)
        return -1;
    if (poll(&pfd, 1, (int)left) != 1)
        return -1;
    return 0;
}

/* Connects, sends one GET and reads the status line. Returns the HTTP
 * status or -1. */
static int healthcheck_get(const char *host, const char *port, const char *path, int timeout_ms)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL, *ai;
    int64_t deadline = util_mono_ms() + timeout_ms;
    char req[1024], buf[64];
    size_t got = 0;
    int fd = -1, status = -1, n;

    if (getaddrinfo(host, port, &hints, &res) != 0)
        return -1;
    for (ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 &&
            (errno != EINPROGRESS || hc_wait(fd, POLLOUT, deadline) != 0)) {
            close(fd);
            fd = -1;
            continue;
        }
        int soerr = 0;
        socklen_t len = sizeof(soerr);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0 || soerr != 0) {
            close(fd);
            fd = -1;
        }
    }
    if (fd < 0)
        goto fail;

    n = snprintf(req, sizeof(req),
                 "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: deletion-gateway-health\r\n"
                 "Connection: close\r\n\r\n",
                 path, host);
    if (n < 0 || (size_t)n >= sizeof(req))
        goto fail;
    for (int sent = 0; sent < n;) {
        ssize_t w;
        if (hc_wait(fd, POLLOUT, deadline) != 0)
            goto fail;
        w = send(fd, req + sent, (size_t)(n - sent), MSG_NOSIGNAL);
        if (w < 0 && errno != EAGAIN && errno != EINTR)
            goto fail;
        if (w > 0)
            sent += (int)w;
    }
    /* "HTTP/1.1 200 " is all that is needed; the rest is not read. */
    while (got < 13) {
        ssize_t r;
        if (hc_wait(fd, POLLIN, deadline) != 0)
            goto fail;
        r = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);
        if (r == 0)
            break;
        if (r < 0 && errno != EAGAIN && errno != EINTR)
            goto fail;
        if (r > 0)
            got += (size_t)r;
    }
    buf[got] = '\0';
    if (got >= 12 && strncmp(buf, "HTTP/1.", 7) == 0 && buf[8] == ' ') {
        int64_t code;
        char digits[4] = {buf[9], buf[10], buf[11], '\0'};
        if (util_parse_int64(digits, 100, 599, &code) == 0)
            status = (int)code;
    }

fail:
    if (fd >= 0)
        close(fd);
    freeaddrinfo(res);
    return status;
}

int healthcheck_main(int argc, char **argv)
{
    const char *url = HC_DEFAULT_URL;
    int64_t timeout_ms = 3000;
    char host[256], port[8], path[512];
    int status;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--url") == 0 && i + 1 < argc) {
            url = argv[++i];
        } else if (strcmp(argv[i], "--timeout-ms") == 0 && i + 1 < argc) {
            if (util_parse_int64(argv[++i], 1, HC_MAX_TIMEOUT_MS, &timeout_ms) != 0) {
                fprintf(stderr, "health: --timeout-ms must be 1..%d\n", HC_MAX_TIMEOUT_MS);
                return 2;
            }
        } else {
            fprintf(stderr, "usage: deletion-gateway health [--url http://HOST:PORT/PATH] "
                            "[--timeout-ms N]\n");
            return 2;
        }
    }
    if (healthcheck_parse_url(url, host, sizeof(host), port, sizeof(port), path, sizeof(path)) !=
        0) {
        fprintf(stderr, "health: --url must be http://HOST[:PORT][/PATH]\n");
        return 2;
    }
    status = healthcheck_get(host, port, path, (int)timeout_ms);
    if (status == 200) {
        printf("healthy\n");
        return 0;
    }
    if (status < 0)
        fprintf(stderr, "health: no answer from %s\n", url);
    else
        fprintf(stderr, "health: %s answered %d\n", url, status);
    return 1;
}
