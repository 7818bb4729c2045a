/*
 * http_reply.h: what every route includes: the parts it may use (struct
 * http_ctx), the request it answers (struct http_req) and the ways to
 * answer. Every answer is JSON (metrics excepted), carries x-request-id,
 * which also appears in every log line about it, and is counted under the
 * label its route table gave it.
 *
 * A leaf: it knows no route and no listener, so routes and the router
 * both include it without including each other.
 */
#ifndef DG_HTTP_REPLY_H
#define DG_HTTP_REPLY_H

#include <stddef.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "metrics.h"

struct audit;
struct config;
struct dispatch;
struct evhttp_request;
struct queue;
struct queue_deletion_view;
struct readiness;
struct tls_server;

/* The gateway's parts as the routes see them; one for both listeners,
 * filled once by http_open and read-only afterwards, but for in_flight. */
struct http_ctx {
    const struct config *cfg;
    struct queue *queue;
    struct dispatch *dispatch;
    struct audit *audit;
    struct readiness *ready;
    struct tls_server *tls; /* the public listener's; NULL = plain TCP */
    EVP_PKEY *receipt_key;  /* NULL = receipts not configured */
    /* Answers owed after an asynchronous step (the queue's callback): a
     * stop waits for them. Written by http_reply_hold/_release only. */
    int in_flight;
};

#define HTTP_REQUEST_ID_MAX 48

/* One request being answered; copied by value into a route's context
 * when the answer comes from a callback. */
struct http_req {
    struct evhttp_request *req;
    struct http_ctx *ctx;
    enum metrics_route label;
    char rid[HTTP_REQUEST_ID_MAX];
};

/* Gives the request its id ("req_...", set as x-request-id on the answer)
 * and the label its answer is counted under. */
void http_reply_init(struct http_req *r, struct evhttp_request *req, struct http_ctx *ctx,
                     enum metrics_route label);

/* A route that answers from a callback holds the request from its hand-off
 * to its answer; release once, after the answer is sent or refused. */
void http_reply_hold(const struct http_req *r);
void http_reply_release(const struct http_req *r);
int http_reply_in_flight(const struct http_ctx *ctx);

/* Sends a JSON body (NUL-terminated text) with the given status. */
void http_reply_json(const struct http_req *r, int status, const char *body);

/* Sends the JSON body the route wrote into the request's output buffer. */
void http_reply_written(const struct http_req *r, int status);

/* Sends one deletion, with its attempt history (200). */
void http_reply_view(const struct http_req *r, const struct queue_deletion_view *v);

/* Sends v (its reference taken) as compact JSON, keys in order. */
void http_reply_value(const struct http_req *r, int status, json_t *v);

/* Sends what the output buffer holds, with the headers already set; the
 * body is left out of a HEAD answer. Not counted: the caller counts it
 * with metrics_request(r->label, status) (the metrics exposition does so
 * before rendering, to include its own request). */
void http_reply_send(const struct http_req *r, int status);

/* Sends {"error":{"code":...,"message":...,"request_id":...}}. */
void http_reply_error(const struct http_req *r, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The value of a header that must appear exactly once: 0, or -1 with an
 * error already sent (missing_header or duplicate_header). */
int http_reply_header_once(const struct http_req *r, const char *name, const char **value);

/* Checks Content-Type is application/json (parameters allowed); else sends
 * 415 and returns -1. */
int http_reply_require_json(const struct http_req *r);

/* The body, contiguous; *len set. No NUL-terminated copy is made. */
const char *http_reply_body(const struct http_req *r, size_t *len);

/* ---- shared with http_conn.c, which answers under evhttp ---- */

/* A new request id into buf ("req_unknown" if randomness fails). */
const char *http_reply_new_id(char *buf, size_t len);

/* The error body, without a newline, into buf; its length (snprintf's). */
int http_reply_error_body(char *buf, size_t len, const char *code, const char *msg,
                          const char *rid);

#endif
