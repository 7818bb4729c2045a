/*
 * http_reply.c: request ids, JSON answers and header checks (see
 * http_reply.h).
 */
#include "http_reply.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <sys/queue.h>

#include <event2/keyvalq_struct.h>

#include "http_view.h"
#include "log.h"
#include "util.h"

const char *http_reply_new_id(char *buf, size_t len)
{
    if (util_random_id("req_", buf, len) != 0)
        snprintf(buf, len, "req_unknown");
    return buf;
}

void http_reply_init(struct http_req *r, struct evhttp_request *req, struct http_ctx *ctx,
                     enum metrics_route label)
{
    r->req = req;
    r->ctx = ctx;
    r->label = label;
    http_reply_new_id(r->rid, sizeof(r->rid));
    evhttp_add_header(evhttp_request_get_output_headers(req), "x-request-id", r->rid);
}

void http_reply_hold(const struct http_req *r)
{
    r->ctx->in_flight++;
}

void http_reply_release(const struct http_req *r)
{
    r->ctx->in_flight--;
}

int http_reply_in_flight(const struct http_ctx *ctx)
{
    return ctx->in_flight;
}

void http_reply_send(const struct http_req *r, int status)
{
    struct evbuffer *out = evhttp_request_get_output_buffer(r->req);
    char len[24];

    /* evhttp leaves the body out of a HEAD answer's framing but still
     * sends what is in the output buffer; keep the length a GET would
     * have, drop the bytes. */
    if (evhttp_request_get_command(r->req) == EVHTTP_REQ_HEAD) {
        snprintf(len, sizeof(len), "%zu", evbuffer_get_length(out));
        evhttp_add_header(evhttp_request_get_output_headers(r->req), "Content-Length", len);
        evbuffer_drain(out, evbuffer_get_length(out));
    }
    evhttp_send_reply(r->req, status, NULL, NULL);
}

void http_reply_written(const struct http_req *r, int status)
{
    struct evbuffer *out = evhttp_request_get_output_buffer(r->req);
    struct evkeyvalq *h = evhttp_request_get_output_headers(r->req);

    evhttp_add_header(h, "Content-Type", "application/json");
    evhttp_add_header(h, "Cache-Control", "no-store");
    evbuffer_add(out, "\n", 1);
    /* Counting at the reply sees every answer, errors and asynchronous
     * ones included. */
    metrics_request(r->label, status);
    http_reply_send(r, status);
}

void http_reply_json(const struct http_req *r, int status, const char *body)
{
    evbuffer_add(evhttp_request_get_output_buffer(r->req), body, strlen(body));
    http_reply_written(r, status);
}

void http_reply_view(const struct http_req *r, const struct queue_deletion_view *v)
{
    struct evbuffer *out = evhttp_request_get_output_buffer(r->req);

    if (http_view_write(out, v, 1, NULL) != 0) {
        evbuffer_drain(out, evbuffer_get_length(out));
        http_reply_error(r, 503, "queue_unavailable", "out of memory");
        return;
    }
    http_reply_written(r, 200);
}

void http_reply_value(const struct http_req *r, int status, json_t *v)
{
    char *text = v != NULL ? json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;

    json_decref(v);
    if (text == NULL) {
        http_reply_error(r, 503, "queue_unavailable", "out of memory");
        return;
    }
    http_reply_json(r, status, text);
    free(text);
}

int http_reply_error_body(char *buf, size_t len, const char *code, const char *msg, const char *rid)
{
    char emsg[1100], ecode[160], erid[100];

    util_json_escape(msg, emsg, sizeof(emsg));
    util_json_escape(code, ecode, sizeof(ecode));
    util_json_escape(rid, erid, sizeof(erid));
    return snprintf(buf, len, "{\"error\":{\"code\":%s,\"message\":%s,\"request_id\":%s}}", ecode,
                    emsg, erid);
}

void http_reply_error(const struct http_req *r, int status, const char *code, const char *fmt, ...)
{
    char msg[512], body[1600];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    http_reply_error_body(body, sizeof(body), code, msg, r->rid);
    metrics_rejection(code);
    log_info(r->rid, "%d %s: %s", status, code, msg);
    http_reply_json(r, status, body);
}

int http_reply_header_once(const struct http_req *r, const char *name, const char **value)
{
    struct evkeyvalq *headers = evhttp_request_get_input_headers(r->req);
    struct evkeyval *kv;
    int count = 0;

    *value = NULL;
    TAILQ_FOREACH(kv, headers, next)
    {
        if (strcasecmp(kv->key, name) == 0) {
            count++;
            *value = kv->value;
        }
    }
    if (count == 0) {
        http_reply_error(r, 400, "missing_header", "header %s is required", name);
        return -1;
    }
    if (count > 1) {
        http_reply_error(r, 400, "duplicate_header", "header %s must appear once", name);
        return -1;
    }
    return 0;
}

int http_reply_require_json(const struct http_req *r)
{
    const char *ct;
    size_t n = strlen("application/json");

    if (http_reply_header_once(r, "Content-Type", &ct) != 0)
        return -1;
    if (strncasecmp(ct, "application/json", n) != 0 ||
        (ct[n] != '\0' && ct[n] != ';' && ct[n] != ' ')) {
        http_reply_error(r, 415, "unsupported_media_type", "Content-Type must be application/json");
        return -1;
    }
    return 0;
}

const char *http_reply_body(const struct http_req *r, size_t *len)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(r->req);

    *len = evbuffer_get_length(in);
    if (*len == 0)
        return "";
    return (const char *)evbuffer_pullup(in, -1);
}
