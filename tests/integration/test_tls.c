/*
 * test_tls.c: the inbound TLS listener, end to end over loopback.
 *
 * Makes a throwaway CA, a server certificate and two client certificates
 * (one from the CA, one self-made) with OpenSSL in a temp dir, serves
 * evhttp with tls_server_bevcb on an event loop in a second thread, and
 * connects with blocking OpenSSL clients from the main thread. The handler
 * answers with the CN that tls_peer_subject_cn() reports.
 */
#include "check.h"
#include "cmd.h"
#include "tls.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/thread.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

static char dir[] = "/tmp/dg-test-tls-XXXXXX";

struct pki_item {
    EVP_PKEY *key;
    X509 *cert;
};

static void add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v3;
    X509_EXTENSION *ext;

    X509V3_set_ctx(&v3, issuer, cert, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    CHECK(ext != NULL);
    if (ext != NULL) {
        X509_add_ext(cert, ext, -1);
        X509_EXTENSION_free(ext);
    }
}

/* A P-256 key and a certificate for cn, signed by issuer (self-signed when
 * issuer is NULL). ca marks a CA certificate, san adds subjectAltName. */
static struct pki_item make_cert(const char *cn, const struct pki_item *issuer, int ca,
                                 const char *san, long serial)
{
    struct pki_item it = {EVP_EC_gen("P-256"), X509_new()};
    X509_NAME *name = X509_get_subject_name(it.cert);
    X509 *issuer_cert = issuer != NULL ? issuer->cert : it.cert;
    EVP_PKEY *issuer_key = issuer != NULL ? issuer->key : it.key;

    X509_set_version(it.cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(it.cert), serial);
    X509_gmtime_adj(X509_getm_notBefore(it.cert), -60);
    X509_gmtime_adj(X509_getm_notAfter(it.cert), 3600);
    X509_set_pubkey(it.cert, it.key);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(it.cert, X509_get_subject_name(issuer_cert));
    add_ext(it.cert, issuer_cert, NID_basic_constraints, ca ? "critical,CA:TRUE" : "CA:FALSE");
    add_ext(it.cert, issuer_cert, NID_subject_key_identifier, "hash");
    if (ca)
        add_ext(it.cert, issuer_cert, NID_key_usage, "critical,keyCertSign,cRLSign");
    if (san != NULL)
        add_ext(it.cert, issuer_cert, NID_subject_alt_name, san);
    CHECK(X509_sign(it.cert, issuer_key, EVP_sha256()) > 0);
    return it;
}

static void write_pem(const char *file, const struct pki_item *it, int with_key)
{
    char path[256];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s.pem", dir, file);
    f = fopen(path, "w");
    CHECK(f != NULL);
    if (f == NULL)
        return;
    CHECK(PEM_write_X509(f, it->cert) == 1);
    fclose(f);
    if (with_key) {
        snprintf(path, sizeof(path), "%s/%s.key", dir, file);
        f = fopen(path, "w");
        CHECK(f != NULL);
        if (f == NULL)
            return;
        CHECK(PEM_write_PrivateKey(f, it->key, NULL, NULL, 0, NULL, NULL) == 1);
        fclose(f);
    }
}

static void free_item(struct pki_item *it)
{
    EVP_PKEY_free(it->key);
    X509_free(it->cert);
}

static char *path_of(const char *name)
{
    static char bufs[32][256]; /* enough for every path one test holds at once */
    static int next;
    char *p = bufs[next++ % 32];

    snprintf(p, 256, "%s/%s", dir, name);
    return p;
}

/* ---- the server under test ---- */

static struct event_base *base;
static struct evhttp *http;
static struct tls_server *tls;
static int port;

static void handler(struct evhttp_request *req, void *arg)
{
    struct evbuffer *out = evhttp_request_get_output_buffer(req);
    char cn[128];

    (void)arg;
    if (!tls_request_is_tls(req)) {
        evhttp_send_reply(req, 421, "Not TLS", NULL);
        return;
    }
    if (tls_peer_subject_cn(req, cn, sizeof(cn)) == 0)
        evbuffer_add_printf(out, "cn=%s", cn);
    else
        evbuffer_add_printf(out, "cn=none");
    evhttp_send_reply(req, 200, "OK", out);
}

static void *serve(void *arg)
{
    (void)arg;
    event_base_dispatch(base);
    return NULL;
}

static int start_server(const struct tls_config *cfg, pthread_t *th)
{
    char err[512];
    struct evhttp_bound_socket *bound;
    struct sockaddr_in sin;
    socklen_t slen = sizeof(sin);

    if (tls_server_open(&tls, cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "tls_server_open: %s\n", err);
        return -1;
    }
    base = event_base_new();
    http = evhttp_new(base);
    evhttp_set_bevcb(http, tls_server_bevcb, tls);
    evhttp_set_gencb(http, handler, NULL);
    evhttp_set_timeout(http, 5);
    bound = evhttp_bind_socket_with_handle(http, "127.0.0.1", 0);
    if (bound == NULL)
        return -1;
    getsockname(evhttp_bound_socket_get_fd(bound), (struct sockaddr *)&sin, &slen);
    port = ntohs(sin.sin_port);
    return pthread_create(th, NULL, serve, NULL) == 0 ? 0 : -1;
}

/* Stops the loop thread so the main thread may touch the server, as the
 * daemon's SIGHUP handler does from inside its own loop. */
static void pause_server(pthread_t th)
{
    event_base_loopexit(base, NULL);
    pthread_join(th, NULL);
}

static void resume_server(pthread_t *th)
{
    CHECK(pthread_create(th, NULL, serve, NULL) == 0);
}

static void stop_server(pthread_t th)
{
    event_base_loopexit(base, NULL);
    pthread_join(th, NULL);
    evhttp_free(http);
    event_base_free(base);
    tls_server_free(tls);
}

/* ---- the client ---- */

struct client_opts {
    int min_version, max_version; /* 0 = library default */
    const char *cert, *key;       /* client certificate, or NULL */
    int legacy;                   /* allow TLS 1.0/1.1 on the client side */
};

struct result {
    int handshake_ok;
    unsigned long handshake_reason; /* ERR_GET_REASON of the failure */
    int version;                    /* negotiated, when the handshake passed */
    char body[256];                 /* the HTTP body, "" when none came back */
    char server_cn[128];
};

static int connect_loopback(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    struct timeval tv = {.tv_sec = 5};

    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static struct result request(const struct client_opts *o)
{
    struct result r = {0};
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = NULL;
    int fd = -1, n, total = 0;
    char buf[2048];
    const char *body;
    static const char get[] = "GET /who HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

    SSL_CTX_load_verify_locations(ctx, path_of("ca.pem"), NULL);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (o->legacy) {
        /* Lower the client's own floor so it really offers the old
         * version; refusing it is then the server's doing. */
        SSL_CTX_set_security_level(ctx, 0);
        SSL_CTX_set_cipher_list(ctx, "DEFAULT:@SECLEVEL=0");
    }
    if (o->min_version)
        SSL_CTX_set_min_proto_version(ctx, o->min_version);
    if (o->max_version)
        SSL_CTX_set_max_proto_version(ctx, o->max_version);
    if (o->cert != NULL) {
        CHECK(SSL_CTX_use_certificate_file(ctx, o->cert, SSL_FILETYPE_PEM) == 1);
        CHECK(SSL_CTX_use_PrivateKey_file(ctx, o->key, SSL_FILETYPE_PEM) == 1);
    }
    fd = connect_loopback();
    if (fd < 0)
        goto out;
    ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    SSL_set_tlsext_host_name(ssl, "localhost");
    SSL_set1_host(ssl, "localhost");
    ERR_clear_error();
    if (SSL_connect(ssl) != 1) {
        r.handshake_reason = ERR_GET_REASON(ERR_peek_last_error());
        goto out;
    }
    r.handshake_ok = 1;
    r.version = SSL_version(ssl);
    X509_NAME_get_text_by_NID(X509_get_subject_name(SSL_get0_peer_certificate(ssl)), NID_commonName,
                              r.server_cn, sizeof(r.server_cn));
    if (SSL_write(ssl, get, (int)strlen(get)) <= 0)
        goto out;
    while (total < (int)sizeof(buf) - 1 &&
           (n = SSL_read(ssl, buf + total, (int)sizeof(buf) - 1 - total)) > 0)
        total += n;
    buf[total] = '\0';
    body = strstr(buf, "\r\n\r\n");
    if (strncmp(buf, "HTTP/1.1 200", 12) == 0 && body != NULL)
        snprintf(r.body, sizeof(r.body), "%s", body + 4);
out:
    ERR_clear_error();
    SSL_free(ssl);
    if (fd >= 0)
        close(fd);
    SSL_CTX_free(ctx);
    return r;
}

/* `deletion-gateway health` against the TLS listener: extra options
 * come in pairs, NULL-terminated. */
static int probe(const char *opt1, const char *val1, const char *opt2, const char *val2,
                 const char *opt3, const char *val3)
{
    char url[64];
    char *argv[11] = {"health", "--url", url, "--timeout-ms", "3000"};
    int argc = 5;
    const char *extra[] = {opt1, val1, opt2, val2, opt3, val3};

    snprintf(url, sizeof(url), "https://127.0.0.1:%d/healthz", port);
    for (int i = 0; i < 6 && extra[i] != NULL; i++)
        argv[argc++] = (char *)extra[i];
    return cmd_health(argc, argv);
}

/* ---- the tests ---- */

static void test_open_rejects_bad_files(void)
{
    struct tls_server *t = NULL;
    char err[512] = "";
    struct tls_config missing = {path_of("nope.pem"), path_of("server.key"), NULL};
    struct tls_config mismatch = {path_of("server.pem"), path_of("client.key"), NULL};
    struct tls_config no_key = {path_of("server.pem"), NULL, NULL};
    struct tls_config bad_ca = {path_of("server.pem"), path_of("server.key"), path_of("nope.pem")};

    CHECK(tls_server_open(&t, &missing, err, sizeof(err)) == -1 && t == NULL);
    CHECK(strstr(err, "listen.tls.cert_file") != NULL && strstr(err, "nope.pem") != NULL);
    CHECK(tls_server_open(&t, &mismatch, err, sizeof(err)) == -1);
    CHECK(strstr(err, "listen.tls.key_file") != NULL);
    CHECK(tls_server_open(&t, &no_key, err, sizeof(err)) == -1);
    CHECK(tls_server_open(&t, &bad_ca, err, sizeof(err)) == -1);
    CHECK(strstr(err, "listen.tls.client_ca_file") != NULL);
}

static void test_versions_without_mtls(void)
{
    struct tls_config cfg = {path_of("server.pem"), path_of("server.key"), NULL};
    struct client_opts tls10 = {.max_version = TLS1_VERSION, .legacy = 1};
    struct client_opts tls11 = {
        .min_version = TLS1_1_VERSION, .max_version = TLS1_1_VERSION, .legacy = 1};
    struct client_opts tls12 = {.max_version = TLS1_2_VERSION};
    struct client_opts tls13 = {.min_version = TLS1_3_VERSION};
    struct client_opts with_cert = {.cert = path_of("client.pem"), .key = path_of("client.key")};
    struct result r;
    pthread_t th;

    if (start_server(&cfg, &th) != 0) {
        CHECK(!"server started");
        return;
    }

    /* The server itself must refuse: the alert says so, not a client-side
     * "no protocols available". */
    r = request(&tls10);
    CHECK(!r.handshake_ok);
    CHECK(r.handshake_reason == SSL_R_TLSV1_ALERT_PROTOCOL_VERSION);
    r = request(&tls11);
    CHECK(!r.handshake_ok);
    CHECK(r.handshake_reason == SSL_R_TLSV1_ALERT_PROTOCOL_VERSION);

    r = request(&tls12);
    CHECK(r.handshake_ok && r.version == TLS1_2_VERSION);
    CHECK_STR(r.body, "cn=none");
    CHECK_STR(r.server_cn, "localhost");

    r = request(&tls13);
    CHECK(r.handshake_ok && r.version == TLS1_3_VERSION);
    CHECK_STR(r.body, "cn=none");

    /* Without client_ca_file no certificate is asked for, so none is
     * reported even when the client has one. */
    r = request(&with_cert);
    CHECK_STR(r.body, "cn=none");

    /* The container probe over TLS: verified against the right CA (the
     * certificate names 127.0.0.1), refused with another, and unverified
     * when no CA is given. */
    CHECK(probe("--cacert", path_of("ca.pem"), NULL, NULL, NULL, NULL) == 0);
    CHECK(probe("--cacert", path_of("rogue.pem"), NULL, NULL, NULL, NULL) == 1);
    CHECK(probe(NULL, NULL, NULL, NULL, NULL, NULL) == 0);

    stop_server(th);
}

static void test_mtls(void)
{
    struct tls_config cfg = {path_of("server.pem"), path_of("server.key"), path_of("ca.pem")};
    struct client_opts none12 = {.max_version = TLS1_2_VERSION};
    struct client_opts none13 = {.min_version = TLS1_3_VERSION};
    struct client_opts good12 = {
        .max_version = TLS1_2_VERSION, .cert = path_of("client.pem"), .key = path_of("client.key")};
    struct client_opts good13 = {
        .min_version = TLS1_3_VERSION, .cert = path_of("client.pem"), .key = path_of("client.key")};
    struct client_opts rogue = {.cert = path_of("rogue.pem"), .key = path_of("rogue.key")};
    struct result r;
    pthread_t th;

    if (start_server(&cfg, &th) != 0) {
        CHECK(!"server started");
        return;
    }

    /* TLS 1.2: the server refuses inside the handshake. TLS 1.3: the client
     * finishes first and learns of the refusal on its first read; either
     * way no HTTP answer comes back. */
    r = request(&none12);
    CHECK(!r.handshake_ok);
    CHECK_STR(r.body, "");
    r = request(&none13);
    CHECK_STR(r.body, "");
    r = request(&rogue);
    CHECK_STR(r.body, "");

    r = request(&good12);
    CHECK(r.handshake_ok);
    CHECK_STR(r.body, "cn=crm-client");
    r = request(&good13);
    CHECK(r.handshake_ok && r.version == TLS1_3_VERSION);
    CHECK_STR(r.body, "cn=crm-client");

    /* The probe needs a client certificate here like everyone else. */
    CHECK(probe("--cacert", path_of("ca.pem"), NULL, NULL, NULL, NULL) == 1);
    CHECK(probe("--cacert", path_of("ca.pem"), "--cert", path_of("client.pem"), "--key",
                path_of("client.key")) == 0);

    stop_server(th);
}

static void copy_file(const char *from, const char *to)
{
    char buf[8192];
    FILE *in = fopen(from, "r"), *out = fopen(to, "w");
    size_t n;

    CHECK(in != NULL && out != NULL);
    while (in != NULL && out != NULL && (n = fread(buf, 1, sizeof(buf), in)) > 0)
        fwrite(buf, 1, n, out);
    if (in != NULL)
        fclose(in);
    if (out != NULL)
        fclose(out);
}

static void test_reload(void)
{
    char live_pem[256], live_key[256], err[512] = "";
    struct tls_config cfg = {live_pem, live_key, NULL};
    struct client_opts any = {0};
    struct result r;
    pthread_t th;
    FILE *f;

    snprintf(live_pem, sizeof(live_pem), "%s/live.pem", dir);
    snprintf(live_key, sizeof(live_key), "%s/live.key", dir);
    copy_file(path_of("server.pem"), live_pem);
    copy_file(path_of("server.key"), live_key);
    if (start_server(&cfg, &th) != 0) {
        CHECK(!"server started");
        return;
    }
    r = request(&any);
    CHECK_STR(r.server_cn, "localhost");

    /* A broken file on SIGHUP: reload fails, the old context serves on. */
    f = fopen(live_pem, "w");
    if (f != NULL) {
        fputs("-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n", f);
        fclose(f);
    }
    pause_server(th);
    CHECK(tls_server_reload(tls, err, sizeof(err)) == -1);
    CHECK(strstr(err, "listen.tls.cert_file") != NULL);
    resume_server(&th);
    r = request(&any);
    CHECK(r.handshake_ok);
    CHECK_STR(r.server_cn, "localhost");

    /* A renewed certificate: new connections see it. */
    copy_file(path_of("renewed.pem"), live_pem);
    copy_file(path_of("renewed.key"), live_key);
    pause_server(th);
    CHECK(tls_server_reload(tls, err, sizeof(err)) == 0);
    resume_server(&th);
    r = request(&any);
    CHECK(r.handshake_ok);
    CHECK_STR(r.server_cn, "renewed.localhost");

    stop_server(th);
}

int main(void)
{
    struct pki_item ca, server, renewed, client, rogue;
    char cmd[300];

    /* A refused client writes into a closed socket; the daemon ignores
     * SIGPIPE for the same reason. */
    signal(SIGPIPE, SIG_IGN);
    CHECK(mkdtemp(dir) != NULL);
    CHECK(evthread_use_pthreads() == 0);

    ca = make_cert("Test CA", NULL, 1, NULL, 1);
    server = make_cert("localhost", &ca, 0, "DNS:localhost,IP:127.0.0.1", 2);
    renewed = make_cert("renewed.localhost", &ca, 0, "DNS:localhost,IP:127.0.0.1", 3);
    client = make_cert("crm-client", &ca, 0, NULL, 4);
    rogue = make_cert("crm-client", NULL, 0, NULL, 5); /* same CN, wrong issuer */
    write_pem("ca", &ca, 0);
    write_pem("server", &server, 1);
    write_pem("renewed", &renewed, 1);
    write_pem("client", &client, 1);
    write_pem("rogue", &rogue, 1);

    test_open_rejects_bad_files();
    test_versions_without_mtls();
    test_mtls();
    test_reload();

    free_item(&ca);
    free_item(&server);
    free_item(&renewed);
    free_item(&client);
    free_item(&rogue);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    libevent_global_shutdown();
    return check_done();
}
