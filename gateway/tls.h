/*
 * tls.h: server-side TLS for the inbound evhttp listener.
 *
 * One tls_server holds the current SSL_CTX built from listen.tls (TLS 1.2
 * minimum, AEAD ciphers only, no compression, no renegotiation). When
 * client_ca_file is set, every client must present a certificate issued by
 * that CA or the handshake fails (mTLS). The HTTP server wires it in with
 *
 *     evhttp_set_bevcb(http, tls_server_bevcb, tls);
 *
 * and on SIGHUP calls tls_server_reload(). Everything here runs on the
 * event loop's thread.
 */
#ifndef DG_TLS_H
#define DG_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include "tls_config.h"

struct event_base;
struct bufferevent;
struct evhttp_request;
struct tls_server;

/* Builds the server context from cfg (cert_file and key_file required,
 * client_ca_file optional). The file names are copied: reload reads the
 * same files again. -1 with a message naming the file in err. */
int tls_server_open(struct tls_server **out, const struct tls_config *cfg, char *err,
                    size_t errlen);

/* Rebuilds the context from the same files. On failure the old context
 * stays in use and -1 is returned with the reason in err; on success new
 * connections use the new certificate, open ones keep the old. */
int tls_server_reload(struct tls_server *t, char *err, size_t errlen);

/* evhttp_set_bevcb() callback; arg is the struct tls_server. Returns a
 * server-side (accepting) OpenSSL bufferevent, or NULL when out of memory:
 * evhttp then falls back to a plain socket, so the HTTP server must refuse
 * any request for which tls_request_is_tls() is false. */
struct bufferevent *tls_server_bevcb(struct event_base *base, void *arg);

/* True when req arrived over a TLS connection. */
bool tls_request_is_tls(struct evhttp_request *req);

/* Copies the subject CN of the client certificate that was verified for
 * req's connection into out. -1 when there is none (no TLS, no mTLS, no or
 * unverified certificate), when the subject has no CN or more than one,
 * when the CN holds a NUL byte, or when it does not fit in outlen. */
int tls_peer_subject_cn(struct evhttp_request *req, char *out, size_t outlen);

/* Frees the context; connections still open keep their own reference. */
void tls_server_free(struct tls_server *t);

#endif
