/*
 * http.h: the gateway's inbound HTTP: the public listener (Extend
 * webhooks, the internal erasure API, health and metrics) and the admin
 * listener for operators. Every answer is JSON (metrics excepted) and
 * carries x-request-id, which also appears in every log line about it.
 */
#ifndef DG_HTTP_H
#define DG_HTTP_H

#include "gateway.h"
#include "metrics.h"

struct evhttp;
struct evhttp_request;

/* Binds the listeners of cfg and installs the routes. 0 or -1 (logged). */
int http_start(struct gateway *gw);
int http_admin_start(struct gateway *gw);

/* Stops accepting new connections (SIGTERM); answers in progress finish. */
void http_stop_accepting(struct gateway *gw);

/* ---- shared by the route files ---- */

struct evhttp_bound_socket;
struct http_conn_listener;
struct tls_server;

/* Puts http_conn.c's framing check, deadline and connection cap in front
 * of a bound listener. max_connections 0 = limits.max_connections. */
int http_attach_conns(struct gateway *gw, struct evhttp *http, struct evhttp_bound_socket *bound,
                      const char *name, int max_connections, struct tls_server *tls,
                      struct http_conn_listener **out);

/* Applies every evhttp limit of cfg (body, headers, time-outs, methods). */
void http_apply_limits(struct evhttp *http, const struct config *cfg);

/* The metrics route of a request path (query cut off). */
enum metrics_route http_metrics_route(const char *path);

/* A request's id ("req_..."), set as x-request-id on the answer. */
const char *http_request_id(struct evhttp_request *req, char *buf, size_t len);

/* Sends {"error":{"code":...,"message":...,"request_id":...}}. */
void http_send_error(struct evhttp_request *req, const char *rid, int status, const char *code,
                     const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Sends a JSON body (NUL-terminated text) with the given status. */
void http_send_json(struct evhttp_request *req, int status, const char *body);

/* The value of a header that must appear exactly once: 0, or -1 with an
 * error already sent (missing_header or duplicate_header). */
int http_single_header(struct evhttp_request *req, const char *rid, const char *name,
                       const char **value);

/* Checks Content-Type is application/json (parameters allowed); else sends
 * 415 and returns -1. */
int http_require_json(struct evhttp_request *req, const char *rid);

/* The body, contiguous; *len set. NUL-terminated copy not made. */
const char *http_body(struct evhttp_request *req, size_t *len);

#endif
