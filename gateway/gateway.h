/*
 * gateway.h: the running daemon's parts, wired together by main.c.
 *
 * One event loop owns everything here; only the queue's worker thread runs
 * beside it, and it talks to the loop through queue callbacks alone.
 */
#ifndef DG_GATEWAY_H
#define DG_GATEWAY_H

#include <openssl/evp.h>

#include "config.h"

struct event_base;
struct evhttp;
struct evhttp_bound_socket;
struct queue;
struct upstream;
struct dispatch;
struct audit;
struct tls_server;
struct http_conn_listener;

struct gateway {
    struct config *cfg;
    struct event_base *base;
    struct queue *queue;
    struct upstream *upstream;
    struct dispatch *dispatch;
    struct audit *audit;
    struct tls_server *tls;
    EVP_PKEY *receipt_key; /* NULL = receipts not configured */
    struct evhttp *http;   /* public listener: webhooks, internal API, health */
    struct evhttp *admin;  /* operators, NULL when off */
    struct evhttp_bound_socket *http_socket;
    struct evhttp_bound_socket *admin_socket;
    struct http_conn_listener *http_conns; /* framing, deadline, cap (http_conn.c) */
    struct http_conn_listener *admin_conns;
    int max_connections;       /* public listener's cap, planned at start */
    int admin_max_connections; /* the admin listener's */
    int pending;               /* requests waiting for the queue's answer */
    int queue_failed;          /* the last queue commit failed: not ready */
    int shutting_down;
};

#endif
