/*
 * gateway.h: the running daemon's parts, opened and wired together by
 * serve, which alone writes this struct. The modules it wires are handed
 * what they need when they open (http_open, dispatch_open) and keep their
 * own state; readiness is the one shared record, written through
 * readiness.h.
 *
 * One event loop owns everything here; only the queue's worker thread runs
 * beside it, and it talks to the loop through queue callbacks alone.
 */
#ifndef DG_GATEWAY_H
#define DG_GATEWAY_H

#include <openssl/evp.h>

#include "config.h"
#include "readiness.h"

struct event_base;
struct queue;
struct upstream;
struct dispatch;
struct audit;
struct tls_server;
struct http;

struct gateway {
    struct config *cfg;
    struct event_base *base;
    struct queue *queue;
    struct upstream *upstream[CONFIG_MAX_ACCOUNTS]; /* one per cfg->accounts[i] */
    struct dispatch *dispatch;
    struct audit *audit;
    struct tls_server *tls;
    EVP_PKEY *receipt_key;     /* NULL = receipts not configured */
    struct readiness ready;    /* queue failing, breaker, stopping */
    struct http *http;         /* both listeners and their routes (http.c) */
    int max_connections;       /* public listener's cap, planned at start */
    int admin_max_connections; /* the admin listener's */
};

#endif
