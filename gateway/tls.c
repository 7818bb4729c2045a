/*
 * tls.c: the inbound listener's TLS context.
 *
 *   tls_build_ctx()        one SSL_CTX from the three files, hardened
 *   tls_server_open/reload the long-lived holder, swapped on SIGHUP
 *   tls_server_bevcb()     per-connection OpenSSL bufferevent for evhttp
 *   tls_peer_subject_cn()  the verified client certificate's CN for a request
 *
 * An SSL object keeps a reference to the SSL_CTX it was made from, so a
 * reload can drop the old context at once: connections already open finish
 * on it, and only new ones see the new certificate.
 */
#include "tls.h"
#include "log.h"

#include <stdlib.h>
#include <string.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/http.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

struct tls_server {
    SSL_CTX *ctx;
    char *cert_file;
    char *key_file;
    char *client_ca_file; /* NULL = no client certificates asked for */
};

/* TLS 1.2 suites: forward secrecy and AEAD only (ECDHE with AES-GCM or
 * ChaCha20-Poly1305). TLS 1.3 keeps OpenSSL's defaults, which are all AEAD. */
static const char tls12_ciphers[] = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                                    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                                    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

/* Session resumption with client certificates needs a context id, or
 * OpenSSL refuses to resume ("session id context uninitialized"). */
static const unsigned char tls_sid_ctx[] = "deletion-gateway";

/* Writes what failed, the file, and OpenSSL's first queued reason. */
static void tls_error(char *err, size_t errlen, const char *what, const char *file)
{
    unsigned long e = ERR_peek_last_error();
    char reason[256] = "unknown error";

    if (e != 0)
        ERR_error_string_n(e, reason, sizeof(reason));
    ERR_clear_error();
    snprintf(err, errlen, "%s %s: %s", what, file != NULL ? file : "", reason);
}

static SSL_CTX *tls_build_ctx(const struct tls_server *t, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    STACK_OF(X509_NAME) *names = NULL;

    if (ctx == NULL) {
        tls_error(err, errlen, "listen.tls: cannot create context", NULL);
        return NULL;
    }
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_cipher_list(ctx, tls12_ciphers) != 1) {
        tls_error(err, errlen, "listen.tls: cannot set protocol or ciphers", NULL);
        goto fail;
    }
    /* Compression leaks secrets (CRIME); renegotiation is a DoS lever and
     * never needed; a client closing without close_notify is ordinary and
     * must not turn into an error on a request that was fully answered. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (SSL_CTX_set_session_id_context(ctx, tls_sid_ctx, sizeof(tls_sid_ctx) - 1) != 1) {
        tls_error(err, errlen, "listen.tls: cannot set session id context", NULL);
        goto fail;
    }

    if (SSL_CTX_use_certificate_chain_file(ctx, t->cert_file) != 1) {
        tls_error(err, errlen, "listen.tls.cert_file: cannot load", t->cert_file);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, t->key_file, SSL_FILETYPE_PEM) != 1) {
        tls_error(err, errlen, "listen.tls.key_file: cannot load", t->key_file);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        tls_error(err, errlen, "listen.tls.key_file: does not match the certificate", t->key_file);
        goto fail;
    }

    if (t->client_ca_file != NULL) {
        if (SSL_CTX_load_verify_locations(ctx, t->client_ca_file, NULL) != 1) {
            tls_error(err, errlen, "listen.tls.client_ca_file: cannot load", t->client_ca_file);
            goto fail;
        }
        names = SSL_load_client_CA_file(t->client_ca_file);
        if (names == NULL) {
            tls_error(err, errlen, "listen.tls.client_ca_file: no certificate in",
                      t->client_ca_file);
            goto fail;
        }
        SSL_CTX_set_client_CA_list(ctx, names); /* takes ownership */
        /* With mTLS on, a client without a certificate is refused at the
         * handshake, before any byte of HTTP is read. */
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
        SSL_CTX_set_verify_depth(ctx, 4);
    }
    return ctx;

fail:
    SSL_CTX_free(ctx);
    return NULL;
}

static char *tls_strdup_opt(const char *s, bool *oom)
{
    char *copy;

    if (s == NULL)
        return NULL;
    copy = strdup(s);
    if (copy == NULL)
        *oom = true;
    return copy;
}

int tls_server_open(struct tls_server **out, const struct tls_config *cfg, char *err, size_t errlen)
{
    struct tls_server *t = NULL;
    bool oom = false;

    *out = NULL;
    if (cfg->cert_file == NULL || cfg->key_file == NULL) {
        snprintf(err, errlen, "listen.tls: cert_file and key_file are both required");
        return -1;
    }
    t = calloc(1, sizeof(*t));
    if (t == NULL) {
        snprintf(err, errlen, "listen.tls: out of memory");
        return -1;
    }
    t->cert_file = tls_strdup_opt(cfg->cert_file, &oom);
    t->key_file = tls_strdup_opt(cfg->key_file, &oom);
    t->client_ca_file = tls_strdup_opt(cfg->client_ca_file, &oom);
    if (oom) {
        snprintf(err, errlen, "listen.tls: out of memory");
        goto fail;
    }
    t->ctx = tls_build_ctx(t, err, errlen);
    if (t->ctx == NULL)
        goto fail;
    *out = t;
    return 0;

fail:
    tls_server_free(t);
    return -1;
}

int tls_server_reload(struct tls_server *t, char *err, size_t errlen)
{
    SSL_CTX *ctx = tls_build_ctx(t, err, errlen);

    if (ctx == NULL)
        return -1;
    SSL_CTX_free(t->ctx);
    t->ctx = ctx;
    return 0;
}

struct bufferevent *tls_server_bevcb(struct event_base *base, void *arg)
{
    struct tls_server *t = arg;
    struct bufferevent *bev;
    SSL *ssl = SSL_new(t->ctx);

    if (ssl == NULL) {
        ERR_clear_error();
        log_error(NULL, "tls: cannot create a connection: out of memory");
        return NULL;
    }
    /* On failure libevent frees ssl itself (BEV_OPT_CLOSE_ON_FREE). */
    bev = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                         BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL) {
        log_error(NULL, "tls: cannot create a connection: out of memory");
        return NULL;
    }
    /* A peer that drops the TCP connection without close_notify is a
     * normal end of a connection, not an error worth a log line. */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

static SSL *tls_request_ssl(struct evhttp_request *req)
{
    struct evhttp_connection *conn = evhttp_request_get_connection(req);
    struct bufferevent *bev;

    if (conn == NULL)
        return NULL;
    bev = evhttp_connection_get_bufferevent(conn);
    if (bev == NULL)
        return NULL;
    /* http_conn.c's framing filter sits on top of the TLS bufferevent. */
    if (bufferevent_get_underlying(bev) != NULL)
        bev = bufferevent_get_underlying(bev);
    return bufferevent_openssl_get_ssl(bev);
}

bool tls_request_is_tls(struct evhttp_request *req)
{
    return tls_request_ssl(req) != NULL;
}

int tls_peer_subject_cn(struct evhttp_request *req, char *out, size_t outlen)
{
    SSL *ssl = tls_request_ssl(req);
    X509 *cert;
    X509_NAME *name;
    ASN1_STRING *data;
    unsigned char *utf8 = NULL;
    int idx, len, rc = -1;

    if (outlen > 0)
        out[0] = '\0';
    if (ssl == NULL)
        return -1;
    cert = SSL_get0_peer_certificate(ssl);
    /* Only a certificate that chained to client_ca_file counts. */
    if (cert == NULL || SSL_get_verify_result(ssl) != X509_V_OK)
        return -1;
    name = X509_get_subject_name(cert);
    idx = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
    /* Two CNs would make "which one is the client" ambiguous: refuse. */
    if (idx < 0 || X509_NAME_get_index_by_NID(name, NID_commonName, idx) >= 0)
        return -1;
    data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx));
    len = ASN1_STRING_to_UTF8(&utf8, data);
    if (len <= 0)
        goto fail;
    if (memchr(utf8, '\0', (size_t)len) != NULL || (size_t)len >= outlen)
        goto fail;
    memcpy(out, utf8, (size_t)len);
    out[len] = '\0';
    rc = 0;

fail:
    OPENSSL_free(utf8);
    return rc;
}

void tls_server_free(struct tls_server *t)
{
    if (t == NULL)
        return;
    SSL_CTX_free(t->ctx);
    free(t->cert_file);
    free(t->key_file);
    free(t->client_ca_file);
    free(t);
}
