/*
 * http_conn.h: what sits between an accepted socket and evhttp: the
 * strict framing check on the raw bytes (http_framing.c), the whole-request
 * deadline, the cap on open connections with shedding of the slowest, and
 * the accept back-off when descriptors run out.
 */
#ifndef DG_HTTP_CONN_H
#define DG_HTTP_CONN_H

#include <stddef.h>

#include "http_framing.h"

struct event_base;
struct evhttp;
struct evhttp_bound_socket;
struct tls_server;
struct http_conn_listener;
struct http_route;

struct http_conn_options {
    const char *name; /* "public", "admin": for logs */
    int max_connections;
    int request_timeout_seconds;
    struct hf_limits limits;
    struct tls_server *tls; /* NULL = plain TCP */
    /* The listener's route table: a refusal made here is counted under
     * the label the router would have given the request. */
    const struct http_route *routes;
    size_t n_routes;
};

/* Installs the per-connection hook on http (before any connection is
 * accepted) and the accept error handler on bound. 0 or -1. */
int http_conn_attach(struct http_conn_listener **out, struct event_base *base, struct evhttp *http,
                     struct evhttp_bound_socket *bound, const struct http_conn_options *o);

/* Before the bound socket goes (stop accepting): drops the back-off timer. */
void http_conn_stop(struct http_conn_listener *l);

/* After event_base_free, once evhttp has freed every connection. */
void http_conn_free(struct http_conn_listener *l);

#endif
