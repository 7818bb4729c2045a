/*
 * http.c: the public listener, its limits and routing, and the helpers
 * every route uses (request ids, JSON errors, header checks).
 *
 * evhttp gets every limit it has: body size, header size, read/write
 * time-outs (an idle client is cut off; none can hold the loop, which
 * never waits on a client), and the methods it will parse at all. A body over limits.max_body_bytes
 * is refused by evhttp itself with 413 before any of our code runs; libevent 2.1 gives no hook to
 * make that one answer JSON.
 */
#include "http.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <sys/queue.h>

#include <event2/keyvalq_struct.h>

#include "audit.h"
#include "dispatch.h"
#include "http_conn.h"
#include "http_routes.h"
#include "log.h"
#include "metrics.h"
#include "queue.h"
#include "tls.h"
#include "util.h"

const char *http_request_id(struct evhttp_request *req, char *buf, size_t len)
{
    if (util_random_id("req_", buf, len) != 0)
        snprintf(buf, len, "req_unknown");
    evhttp_add_header(evhttp_request_get_output_headers(req), "x-request-id", buf);
    return buf;
}

/* Set by http_start: the webhook route's configured path, for metrics. */
static const char *webhook_path = "/webhooks/extend";

/* The metrics route of a request path. Counting at the reply sees every
 * answer, errors and asynchronous ones included. */
enum metrics_route http_metrics_route(const char *path)
{
    size_t n;

    if (path == NULL)
        return MR_OTHER;
    if (strcmp(path, webhook_path) == 0)
        return MR_WEBHOOK;
    if (strcmp(path, "/v1/deletions") == 0)
        return MR_DELETIONS_CREATE;
    if (strncmp(path, "/v1/deletions/", 14) == 0) {
        n = strlen(path);
        return n > 8 && strcmp(path + n - 8, "/receipt") == 0 ? MR_RECEIPT : MR_DELETIONS_GET;
    }
    if (strcmp(path, "/healthz") == 0)
        return MR_HEALTHZ;
    if (strcmp(path, "/readyz") == 0)
        return MR_READYZ;
    if (strcmp(path, "/metrics") == 0)
        return MR_METRICS;
    if (strncmp(path, "/admin/", 7) == 0)
        return MR_ADMIN;
    return MR_OTHER;
}

static enum metrics_route route_of(struct evhttp_request *req)
{
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);

    return http_metrics_route(uri != NULL ? evhttp_uri_get_path(uri) : NULL);
}

/* evhttp leaves the body out of a HEAD answer's framing but still sends
 * what is in the output buffer; keep the length a GET would have, drop
 * the bytes. */
static void http_head_strip(struct evhttp_request *req)
{
    struct evbuffer *out = evhttp_request_get_output_buffer(req);
    char len[24];

    if (evhttp_request_get_command(req) != EVHTTP_REQ_HEAD)
        return;
    snprintf(len, sizeof(len), "%zu", evbuffer_get_length(out));
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Length", len);
    evbuffer_drain(out, evbuffer_get_length(out));
}

void http_send_json(struct evhttp_request *req, int status, const char *body)
{
    struct evbuffer *out = evhttp_request_get_output_buffer(req);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);

    evhttp_add_header(h, "Content-Type", "application/json");
    evhttp_add_header(h, "Cache-Control", "no-store");
    evbuffer_add(out, body, strlen(body));
    evbuffer_add(out, "\n", 1);
    http_head_strip(req);
    metrics_request(route_of(req), status);
    evhttp_send_reply(req, status, NULL, NULL);
}

void http_send_error(struct evhttp_request *req, const char *rid, int status, const char *code,
                     const char *fmt, ...)
{
    char msg[512], emsg[1100], ecode[160], erid[100], body[1600];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    util_json_escape(msg, emsg, sizeof(emsg));
    util_json_escape(code, ecode, sizeof(ecode));
    util_json_escape(rid, erid, sizeof(erid));
    snprintf(body, sizeof(body), "{\"error\":{\"code\":%s,\"message\":%s,\"request_id\":%s}}",
             ecode, emsg, erid);
    metrics_rejection(code);
    log_info(rid, "%d %s: %s", status, code, msg);
    http_send_json(req, status, body);
}

int http_single_header(struct evhttp_request *req, const char *rid, const char *name,
                       const char **value)
{
    struct evkeyvalq *headers = evhttp_request_get_input_headers(req);
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
        http_send_error(req, rid, 400, "missing_header", "header %s is required", name);
        return -1;
    }
    if (count > 1) {
        http_send_error(req, rid, 400, "duplicate_header", "header %s must appear once", name);
        return -1;
    }
    return 0;
}

int http_require_json(struct evhttp_request *req, const char *rid)
{
    const char *ct;
    size_t n = strlen("application/json");

    if (http_single_header(req, rid, "Content-Type", &ct) != 0)
        return -1;
    if (strncasecmp(ct, "application/json", n) != 0 ||
        (ct[n] != '\0' && ct[n] != ';' && ct[n] != ' ')) {
        http_send_error(req, rid, 415, "unsupported_media_type",
                        "Content-Type must be application/json");
        return -1;
    }
    return 0;
}

const char *http_body(struct evhttp_request *req, size_t *len)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);

    *len = evbuffer_get_length(in);
    if (*len == 0)
        return "";
    return (const char *)evbuffer_pullup(in, -1);
}

/* The path without the query; NULL when the URI is unusable. */
static const char *request_path(struct evhttp_request *req)
{
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);

    return uri != NULL ? evhttp_uri_get_path(uri) : NULL;
}

static void route_healthz(struct evhttp_request *req, struct gateway *gw)
{
    (void)gw;
    http_send_json(req, 200, "{\"status\":\"ok\"}");
}

/* A cycle that commits, as the dispatcher's claims do, says the queue and
 * the audit log take changes again (or still do not). */
static void readyz_cycle_done(const struct queue_stats *stats, int failed, void *arg)
{
    struct gateway *gw = arg;

    (void)stats;
    gw->queue_failed = failed;
}

/* One definition of ready, for /readyz and dg_ready alike; *audit_ok says
 * whether the audit log takes records. Extend out of reach leaves the
 * gateway ready: accepting and queueing through an outage is its job, and
 * nobody needs to act on the gateway. Rejected credentials and an audit log
 * that takes no record do need someone. */
static int gateway_ready(const struct gateway *gw, const char **audit, int *audit_ok)
{
    int ok = audit_healthy(gw->audit, audit);

    if (audit_ok != NULL)
        *audit_ok = ok;
    return ok && !gw->queue_failed && !dispatch_breaker_open(gw->dispatch) && !gw->shutting_down;
}

static void route_readyz(struct evhttp_request *req, struct gateway *gw)
{
    char body[320];
    const char *audit = "ok";
    int audit_ok, ready = gateway_ready(gw, &audit, &audit_ok);

    /* The audit log repairs itself, and a failed commit is found to work
     * again, only when the queue runs a cycle; an idle gateway runs none,
     * and one kept out of service by this answer gets no traffic to run
     * one. A read-only cycle gives them the chance. */
    if ((!audit_ok || gw->queue_failed) && !gw->shutting_down)
        (void)queue_stats(gw->queue, readyz_cycle_done, gw);
    snprintf(body, sizeof(body),
             "{\"status\":\"%s\",\"queue\":\"%s\",\"upstream_credentials\":\"%s\","
             "\"upstream_connection\":\"%s\",\"dispatch\":\"%s\",\"audit\":\"%s\"}",
             ready ? "ready" : "not_ready", gw->queue_failed ? "failing" : "ok",
             dispatch_breaker_open(gw->dispatch) ? "rejected" : "ok",
             dispatch_unreachable(gw->dispatch) ? "unreachable" : "ok",
             gw->shutting_down               ? "stopping"
             : dispatch_paused(gw->dispatch) ? "paused"
                                             : "running",
             audit);
    http_send_json(req, ready ? 200 : 503, body);
}

struct metrics_ctx {
    struct evhttp_request *req;
    struct gateway *gw;
};

static void metrics_stats_done(const struct queue_stats *stats, int failed, void *arg)
{
    struct metrics_ctx *mc = arg;
    struct evbuffer *out = evhttp_request_get_output_buffer(mc->req);

    mc->gw->pending--;
    metrics_request(MR_METRICS, 200);
    metrics_set_ready(gateway_ready(mc->gw, NULL, NULL));
    metrics_render(out, failed ? NULL : stats, util_now_ms());
    metrics_render_audit(out, mc->gw->audit);
    evhttp_add_header(evhttp_request_get_output_headers(mc->req), "Content-Type",
                      "text/plain; version=0.0.4; charset=utf-8");
    http_head_strip(mc->req);
    evhttp_send_reply(mc->req, 200, "OK", NULL);
    free(mc);
}

static void route_metrics(struct evhttp_request *req, struct gateway *gw, const char *rid)
{
    struct metrics_ctx *mc = malloc(sizeof(*mc));

    if (mc == NULL) {
        http_send_error(req, rid, 503, "queue_unavailable", "out of memory");
        return;
    }
    mc->req = req;
    mc->gw = gw;
    gw->pending++;
    if (queue_stats(gw->queue, metrics_stats_done, mc) != 0) {
        gw->pending--;
        free(mc);
        http_send_error(req, rid, 503, "queue_unavailable", "the queue is closing");
    }
}

static void http_route(struct evhttp_request *req, void *arg)
{
    struct gateway *gw = arg;
    enum evhttp_cmd_type method = evhttp_request_get_command(req);
    const char *path = request_path(req);
    char rid[48];

    http_request_id(req, rid, sizeof(rid));
    if (gw->tls != NULL && !tls_request_is_tls(req)) {
        /* evhttp falls back to plain TCP when a TLS bufferevent cannot be
         * made; never serve a TLS listener's routes in the clear. */
        http_send_error(req, rid, 400, "tls_required", "this listener requires TLS");
        return;
    }
    if (path == NULL) {
        http_send_error(req, rid, 400, "invalid_body", "unusable request URI");
        return;
    }
    if (strcmp(path, gw->cfg->webhooks.path) == 0) {
        if (method != EVHTTP_REQ_POST)
            goto not_allowed;
        http_route_webhook(req, gw, rid);
        return;
    }
    if (strcmp(path, "/v1/deletions") == 0) {
        if (method != EVHTTP_REQ_POST)
            goto not_allowed;
        http_route_deletions_create(req, gw, rid);
        return;
    }
    if (strncmp(path, "/v1/deletions/", 14) == 0) {
        if (method != EVHTTP_REQ_GET)
            goto not_allowed;
        http_route_deletions_get(req, gw, rid, path + 14);
        return;
    }
    if (strcmp(path, "/healthz") == 0 || strcmp(path, "/readyz") == 0 ||
        strcmp(path, "/metrics") == 0) {
        /* Probes use HEAD; evhttp sends HEAD answers without the body. */
        if (method != EVHTTP_REQ_GET && method != EVHTTP_REQ_HEAD)
            goto not_allowed;
        if (path[1] == 'h')
            route_healthz(req, gw);
        else if (path[1] == 'r')
            route_readyz(req, gw);
        else
            route_metrics(req, gw, rid);
        return;
    }
    http_send_error(req, rid, 404, "not_found", "no such route");
    return;
not_allowed:
    http_send_error(req, rid, 405, "method_not_allowed", "method not allowed on this route");
}

int http_attach_conns(struct gateway *gw, struct evhttp *http, struct evhttp_bound_socket *bound,
                      const char *name, int max_connections, struct tls_server *tls,
                      struct http_conn_listener **out)
{
    const struct config *cfg = gw->cfg;
    struct http_conn_options o;

    memset(&o, 0, sizeof(o));
    o.name = name;
    o.max_connections = max_connections > 0 ? max_connections : (int)cfg->limits.max_connections;
    o.request_timeout_seconds = cfg->limits.request_timeout_seconds;
    o.limits.max_head = (size_t)cfg->limits.max_header_bytes;
    /* A request line needs no more than 8 KiB (RFC 9112 3 recommends
     * supporting that much); longer is 414. */
    o.limits.max_line = o.limits.max_head < 8192 ? o.limits.max_head : 8192;
    o.limits.max_body = (uint64_t)cfg->limits.max_body_bytes;
    o.tls = tls;
    if (http_conn_attach(out, gw->base, http, bound, &o) != 0) {
        log_error(NULL, "%s listener: out of memory", name);
        return -1;
    }
    return 0;
}

void http_apply_limits(struct evhttp *http, const struct config *cfg)
{
    evhttp_set_max_body_size(http, (ev_ssize_t)cfg->limits.max_body_bytes);
    evhttp_set_max_headers_size(http, (ev_ssize_t)cfg->limits.max_header_bytes);
    /* The whole-request deadline is http_conn.c's, exactly
     * request_timeout_seconds from a request's first byte; evhttp's own
     * time-out (per read, per write, and for idle keep-alive connections)
     * is a second longer so the deadline answers first, in JSON. */
    evhttp_set_timeout(http, cfg->limits.request_timeout_seconds + 1);
    /* evhttp refuses other methods itself, with an HTML page; these it
     * passes on, so the router can refuse them in JSON (405). TRACE and
     * CONNECT never reach us. */
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                         EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_PATCH |
                                         EVHTTP_REQ_OPTIONS);
    evhttp_set_default_content_type(http, "application/json");
}

int http_start(struct gateway *gw)
{
    const struct config *cfg = gw->cfg;

    webhook_path = cfg->webhooks.path;
    gw->http = evhttp_new(gw->base);
    if (gw->http == NULL)
        return -1;
    http_apply_limits(gw->http, cfg);
    evhttp_set_gencb(gw->http, http_route, gw);
    gw->http_socket = evhttp_bind_socket_with_handle(gw->http, cfg->listen.address,
                                                     (ev_uint16_t)cfg->listen.port);
    if (gw->http_socket == NULL) {
        log_error(NULL, "cannot listen on %s:%d", cfg->listen.address, cfg->listen.port);
        return -1;
    }
    if (http_attach_conns(gw, gw->http, gw->http_socket, "public", gw->max_connections, gw->tls,
                          &gw->http_conns) != 0)
        return -1;
    log_info(NULL, "listening on %s://%s:%d", gw->tls ? "https" : "http", cfg->listen.address,
             cfg->listen.port);
    return 0;
}

void http_stop_accepting(struct gateway *gw)
{
    /* Closing the listening sockets refuses new connections at once, while
     * connections already open keep being served until their answers go. */
    http_conn_stop(gw->http_conns);
    http_conn_stop(gw->admin_conns);
    if (gw->http_socket != NULL)
        evhttp_del_accept_socket(gw->http, gw->http_socket);
    gw->http_socket = NULL;
    if (gw->admin_socket != NULL)
        evhttp_del_accept_socket(gw->admin, gw->admin_socket);
    gw->admin_socket = NULL;
}
