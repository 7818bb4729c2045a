/*
 * healthcheck.c: `deletion-gateway health`, the container's HEALTHCHECK.
 *
 *   healthcheck_parse_url()  http(s)://HOST[:PORT][/PATH] into its parts
 *   healthcheck_config_url() the public listener's /healthz, from a config
 *   hc_connect()             a TCP connection within the deadline
 *   hc_tls()                 the client side of TLS, for a TLS listener
 *   healthcheck_get()        one GET, the status line read back
 *   healthcheck_main()       the command: exit 0 only for "HTTP/1.x 200"
 *
 * The probe runs next to the gateway, against its own listener, and sends
 * nothing secret: over https it checks the server certificate only when
 * given --cacert, and presents a client certificate (--cert, --key) when
 * the listener requires one. With -c it reads the gateway's own config
 * file for where that listener is, and resolves none of its secrets: the
 * probe must not fail, nor read key files, for values it never uses.
 */
#include "healthcheck.h"
#include "config.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define HC_DEFAULT_URL "http://127.0.0.1:8080/healthz"
#define HC_MAX_TIMEOUT_MS 60000

struct hc_opts {
    const char *cacert; /* verify the server against this CA; NULL = do not verify */
    const char *cert;   /* client certificate for an mTLS listener, or NULL */
    const char *key;
};

static int hc_copy(char *out, size_t outlen, const char *s, size_t n)
{
    if (n == 0 || n >= outlen)
        return -1;
    memcpy(out, s, n);
    out[n] = '\0';
    return 0;
}

int healthcheck_parse_url(const char *url, int *tls, char *host, size_t hostlen, char *port,
                          size_t portlen, char *path, size_t pathlen)
{
    const char *p, *end, *colon;

    if (strncmp(url, "http://", 7) == 0) {
        *tls = 0;
        p = url + 7;
    } else if (strncmp(url, "https://", 8) == 0) {
        *tls = 1;
        p = url + 8;
    } else {
        return -1;
    }
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
    } else if (hc_copy(port, portlen, *tls ? "443" : "80", *tls ? 3 : 2) != 0) {
        return -1;
    }
    if (*end == '\0')
        end = "/";
    if (hc_copy(path, pathlen, end, strlen(end)) != 0 || strpbrk(path, " \r\n") != NULL)
        return -1;
    return 0;
}

int healthcheck_config_url(const struct config *cfg, char *url, size_t urllen)
{
    const char *host = cfg->listen.address;
    struct in_addr a4;
    struct in6_addr a6;
    int v6 = inet_pton(AF_INET6, host, &a6) == 1, n;

    /* A listener on every address is reached on loopback, of its family:
     * one bound to :: may refuse IPv4. */
    if (inet_pton(AF_INET, host, &a4) == 1 && a4.s_addr == htonl(INADDR_ANY))
        host = "127.0.0.1";
    else if (v6 && IN6_IS_ADDR_UNSPECIFIED(&a6))
        host = "::1";
    n = snprintf(url, urllen, "%s://%s%s%s:%d/healthz",
                 cfg->listen.tls.cert_file != NULL ? "https" : "http", v6 ? "[" : "", host,
                 v6 ? "]" : "", cfg->listen.port);
    return n > 0 && (size_t)n < urllen ? 0 : -1;
}

/* A connected, blocking socket whose reads and writes each time out at
 * what is left of the deadline; -1 when none could be made in time. */
static int hc_connect(const char *host, const char *port, int64_t deadline)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL, *ai;
    int fd = -1;

    if (getaddrinfo(host, port, &hints, &res) != 0)
        return -1;
    for (ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
        struct pollfd pfd;
        int soerr = 0;
        socklen_t len = sizeof(soerr);
        int64_t left = deadline - util_mono_ms();

        if (left <= 0)
            break;
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        pfd = (struct pollfd){.fd = fd, .events = POLLOUT};
        if ((connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 &&
             (errno != EINPROGRESS || poll(&pfd, 1, (int)left) != 1)) ||
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0 || soerr != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd >= 0) {
        int64_t left = deadline - util_mono_ms();
        struct timeval tv = {.tv_sec = left / 1000, .tv_usec = (left % 1000) * 1000};
        int flags = fcntl(fd, F_GETFL);

        /* Back to blocking: the socket time-outs bound each call. */
        if (left <= 0 || flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0 ||
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0 ||
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0) {
            close(fd);
            return -1;
        }
    }
    return fd;
}

/* The client side of a TLS handshake on fd, or NULL. Without a CA the
 * server is not authenticated: the probe only asks "are you up?". */
static SSL *hc_tls(SSL_CTX **ctx_out, int fd, const char *host, const struct hc_opts *o)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = NULL;

    *ctx_out = ctx;
    if (ctx == NULL || SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1)
        goto fail;
    if (o->cacert != NULL) {
        if (SSL_CTX_load_verify_locations(ctx, o->cacert, NULL) != 1) {
            fprintf(stderr, "health: cannot load --cacert %s\n", o->cacert);
            goto fail;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    }
    if (o->cert != NULL && (SSL_CTX_use_certificate_chain_file(ctx, o->cert) != 1 ||
                            SSL_CTX_use_PrivateKey_file(ctx, o->key != NULL ? o->key : o->cert,
                                                        SSL_FILETYPE_PEM) != 1)) {
        fprintf(stderr, "health: cannot load --cert/--key\n");
        goto fail;
    }
    ssl = SSL_new(ctx);
    if (ssl == NULL || SSL_set_fd(ssl, fd) != 1)
        goto fail;
    if (o->cacert != NULL) {
        X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
        /* An address in the URL is checked against the certificate's IP
         * entries, a name against its DNS entries. */
        if (X509_VERIFY_PARAM_set1_ip_asc(vp, host) != 1 && SSL_set1_host(ssl, host) != 1)
            goto fail;
    }
    if (strspn(host, "0123456789.:") != strlen(host))
        SSL_set_tlsext_host_name(ssl, host);
    if (SSL_connect(ssl) != 1)
        goto fail;
    return ssl;

fail:
    ERR_clear_error();
    SSL_free(ssl);
    return NULL;
}

static int hc_write(int fd, SSL *ssl, const char *buf, int n)
{
    int sent = 0;

    while (sent < n) {
        int w = ssl != NULL ? SSL_write(ssl, buf + sent, n - sent)
                            : (int)send(fd, buf + sent, (size_t)(n - sent), MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        sent += w;
    }
    return 0;
}

/* Connects, sends one GET and reads the status line. Returns the HTTP
 * status or -1. */
static int healthcheck_get(int tls, const char *host, const char *port, const char *path,
                           int timeout_ms, const struct hc_opts *o)
{
    int64_t deadline = util_mono_ms() + timeout_ms;
    SSL_CTX *ctx = NULL;
    SSL *ssl = NULL;
    char req[1024], buf[64];
    int fd, n, got = 0, status = -1;

    fd = hc_connect(host, port, deadline);
    if (fd < 0)
        return -1;
    if (tls && (ssl = hc_tls(&ctx, fd, host, o)) == NULL)
        goto fail;
    n = snprintf(req, sizeof(req),
                 "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: deletion-gateway-health\r\n"
                 "Connection: close\r\n\r\n",
                 path, host);
    if (n < 0 || (size_t)n >= sizeof(req) || hc_write(fd, ssl, req, n) != 0)
        goto fail;
    /* "HTTP/1.1 200 " is all that is needed; the rest is not read. */
    while (got < 13) {
        int r = ssl != NULL ? SSL_read(ssl, buf + got, (int)sizeof(buf) - 1 - got)
                            : (int)recv(fd, buf + got, sizeof(buf) - 1 - (size_t)got, 0);
        if (r <= 0)
            break;
        got += r;
    }
    buf[got] = '\0';
    if (got >= 12 && strncmp(buf, "HTTP/1.", 7) == 0 && buf[8] == ' ') {
        int64_t code;
        char digits[4] = {buf[9], buf[10], buf[11], '\0'};
        if (util_parse_int64(digits, 100, 599, &code) == 0)
            status = (int)code;
    }

fail:
    ERR_clear_error();
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(fd);
    return status;
}

static int hc_usage(void)
{
    fprintf(stderr, "usage: deletion-gateway health [-c FILE | --url http(s)://HOST:PORT/PATH] "
                    "[--timeout-ms N] [--cacert FILE] [--cert FILE --key FILE]\n");
    return 2;
}

/* The URL to probe from the config file at path, into url; mtls is set
 * when the listener asks for client certificates. 0, or -1 after saying
 * why. */
static int hc_url_from_file(const char *path, char *url, size_t urllen, int *mtls)
{
    struct config cfg;
    char err[512];
    int rc = -1;

    if (config_load(&cfg, path, err, sizeof(err)) != 0) {
        fprintf(stderr, "health: %s: %s\n", path, err);
        return -1;
    }
    *mtls = cfg.listen.tls.client_ca_file != NULL;
    if (healthcheck_config_url(&cfg, url, urllen) != 0) {
        fprintf(stderr, "health: %s: listen.address is too long for a URL\n", path);
        goto fail;
    }
    rc = 0;
fail:
    config_free(&cfg);
    return rc;
}

int healthcheck_main(int argc, char **argv)
{
    const char *url = NULL, *cfg_path = NULL;
    struct hc_opts o = {0};
    int64_t timeout_ms = 3000;
    char host[256], port[8], path[512], cfg_url[320];
    int status, tls, mtls = 0;

    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v == NULL)
            return hc_usage();
        i++;
        if (strcmp(a, "--url") == 0) {
            url = v;
        } else if (strcmp(a, "-c") == 0) {
            cfg_path = v;
        } else if (strcmp(a, "--cacert") == 0) {
            o.cacert = v;
        } else if (strcmp(a, "--cert") == 0) {
            o.cert = v;
        } else if (strcmp(a, "--key") == 0) {
            o.key = v;
        } else if (strcmp(a, "--timeout-ms") == 0) {
            if (util_parse_int64(v, 1, HC_MAX_TIMEOUT_MS, &timeout_ms) != 0) {
                fprintf(stderr, "health: --timeout-ms must be 1..%d\n", HC_MAX_TIMEOUT_MS);
                return 2;
            }
        } else {
            return hc_usage();
        }
    }
    if (url != NULL && cfg_path != NULL)
        return hc_usage();
    if (cfg_path != NULL) {
        if (hc_url_from_file(cfg_path, cfg_url, sizeof(cfg_url), &mtls) != 0)
            return 2;
        url = cfg_url;
    } else if (url == NULL) {
        url = HC_DEFAULT_URL;
    }
    if (healthcheck_parse_url(url, &tls, host, sizeof(host), port, sizeof(port), path,
                              sizeof(path)) != 0) {
        fprintf(stderr, "health: --url must be http(s)://HOST[:PORT][/PATH]\n");
        return 2;
    }
    /* A server that closes during the TLS write must not kill the probe. */
    signal(SIGPIPE, SIG_IGN);
    status = healthcheck_get(tls, host, port, path, (int)timeout_ms, &o);
    if (status == 200) {
        printf("healthy\n");
        return 0;
    }
    if (status < 0 && mtls && o.cert == NULL)
        fprintf(stderr,
                "health: no answer from %s: listen.tls.client_ca_file is set, so the "
                "listener wants a client certificate (--cert FILE --key FILE)\n",
                url);
    else if (status < 0)
        fprintf(stderr, "health: no answer from %s\n", url);
    else
        fprintf(stderr, "health: %s answered %d\n", url, status);
    return 1;
}
