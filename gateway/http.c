/*
 * http.c: the two listeners, their limits and the router.
 *
 * Each listener has a route table (http_route.h) and a guard that runs
 * before it: the public one refuses plain text on a TLS listener, the
 * admin one wants the bearer token. The router matches once, and the
 * match gives both the handler and the label the answer is counted under.
 *
 * evhttp gets every limit it has: body size, header size, read/write
 * time-outs (an idle client is cut off; none can hold the loop, which
 * never waits on a client), and the methods it will parse at all. A body
 * over limits.max_body_bytes is refused by evhttp itself with 413 before
 * any of our code runs; libevent 2.1 gives no hook to make that one
 * answer JSON.
 */
#include "http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/http.h>

#include "gateway.h"
#include "http_admin.h"
#include "http_conn.h"
#include "http_health.h"
#include "http_ingest.h"
#include "http_reply.h"
#include "http_route.h"
#include "log.h"
#include "resource.h"
#include "tls.h"

/* An account's webhook endpoint's last segment: an account id's syntax;
 * the handler answers 404 for one no account has. */
static int webhook_account_ok(const char *id, size_t len)
{
    return resource_account_id_valid(id, len);
}

/* The public routes; the webhook paths are the configured one (the default
 * account's) and that path with "/ID" (each account's), set at open. A
 * receipt is told from a plain read by its suffix, for its label. */
static const struct http_route public_routes[] = {
    {HTTP_POST, HTTP_EXACT, NULL, NULL, NULL, http_ingest_webhook, MR_WEBHOOK},
    {HTTP_POST, HTTP_ID, NULL, NULL, webhook_account_ok, http_ingest_webhook, MR_WEBHOOK},
    {HTTP_POST, HTTP_EXACT, "/v1/deletions", NULL, NULL, http_ingest_create, MR_DELETIONS_CREATE},
    {HTTP_GET, HTTP_PREFIX, "/v1/deletions/", "/receipt", NULL, http_ingest_get, MR_RECEIPT},
    {HTTP_GET, HTTP_PREFIX, "/v1/deletions/", NULL, NULL, http_ingest_get, MR_DELETIONS_GET},
    /* Probes use HEAD; the answer keeps its length and drops its body. */
    {HTTP_PROBE, HTTP_EXACT, "/healthz", NULL, NULL, http_health_live, MR_HEALTHZ},
    {HTTP_PROBE, HTTP_EXACT, "/readyz", NULL, NULL, http_health_ready, MR_READYZ},
    {HTTP_PROBE, HTTP_EXACT, "/metrics", NULL, NULL, http_health_metrics, MR_METRICS},
};
#define N_PUBLIC (sizeof(public_routes) / sizeof(public_routes[0]))

struct http_listener {
    const char *name; /* "public", "admin": for logs */
    struct evhttp *evh;
    struct evhttp_bound_socket *sock;
    struct http_conn_listener *conns; /* framing, deadline, cap (http_conn.c) */
    const struct http_route *routes;
    size_t n_routes;
    int (*guard)(const struct http_req *r, const char *path);
    struct http_ctx *ctx;
};

struct http {
    struct http_ctx ctx;
    struct http_route public_routes[N_PUBLIC];
    char webhook_prefix[160]; /* webhooks.path + "/" */
    struct http_listener pub;
    struct http_listener admin; /* evh NULL when off */
};

/* evhttp falls back to plain TCP when a TLS bufferevent cannot be made;
 * never serve a TLS listener's routes in the clear. */
static int public_guard(const struct http_req *r, const char *path)
{
    if (r->ctx->tls != NULL && !tls_request_is_tls(r->req)) {
        http_reply_error(r, 400, "tls_required", "this listener requires TLS");
        return -1;
    }
    if (path == NULL) {
        http_reply_error(r, 400, "invalid_body", "unusable request URI");
        return -1;
    }
    return 0;
}

static void on_request(struct evhttp_request *req, void *arg)
{
    struct http_listener *l = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
    struct http_match m;
    struct http_req r;

    http_route_match(l->routes, l->n_routes, (unsigned)evhttp_request_get_command(req), path, &m);
    http_reply_init(&r, req, l->ctx, m.label);
    if (l->guard(&r, path) != 0)
        return;
    switch (m.found) {
    case HTTP_FOUND:
        m.route->handler(&r, m.arg);
        break;
    case HTTP_NO_METHOD:
        http_reply_error(&r, 405, "method_not_allowed", "method not allowed on this route");
        break;
    case HTTP_BAD_ID:
        http_reply_error(&r, 404, "not_found", "no deletion with this id");
        break;
    case HTTP_NO_ROUTE:
    default:
        http_reply_error(&r, 404, "not_found", "no such route");
        break;
    }
}

/* Applies every evhttp limit of cfg (body, headers, time-outs, methods). */
static void apply_limits(struct evhttp *evh, const struct config *cfg)
{
    evhttp_set_max_body_size(evh, (ev_ssize_t)cfg->limits.max_body_bytes);
    evhttp_set_max_headers_size(evh, (ev_ssize_t)cfg->limits.max_header_bytes);
    /* The whole-request deadline is http_conn.c's, exactly
     * request_timeout_seconds from a request's first byte; evhttp's own
     * time-out (per read, per write, and for idle keep-alive connections)
     * is a second longer so the deadline answers first, in JSON. */
    evhttp_set_timeout(evh, cfg->limits.request_timeout_seconds + 1);
    /* evhttp refuses other methods itself, with an HTML page; these it
     * passes on, so the router can refuse them in JSON (405). TRACE and
     * CONNECT never reach us. */
    evhttp_set_allowed_methods(evh, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                        EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_PATCH |
                                        EVHTTP_REQ_OPTIONS);
    evhttp_set_default_content_type(evh, "application/json");
}

/* Binds one listener and puts http_conn.c's framing check, deadline and
 * connection cap in front of it. max_connections 0 = limits.max_connections. */
static int listener_open(struct http_listener *l, const struct gateway *gw, const char *address,
                         int port, int max_connections, struct tls_server *tls)
{
    const struct config *cfg = gw->cfg;
    struct http_conn_options o;

    if ((l->evh = evhttp_new(gw->base)) == NULL)
        return -1;
    apply_limits(l->evh, cfg);
    evhttp_set_gencb(l->evh, on_request, l);
    l->sock = evhttp_bind_socket_with_handle(l->evh, address, (ev_uint16_t)port);
    if (l->sock == NULL) {
        log_error(NULL, "cannot listen on %s:%d%s", address, port,
                  strcmp(l->name, "admin") == 0 ? " (admin)" : "");
        return -1;
    }
    memset(&o, 0, sizeof(o));
    o.name = l->name;
    o.max_connections = max_connections > 0 ? max_connections : (int)cfg->limits.max_connections;
    o.request_timeout_seconds = cfg->limits.request_timeout_seconds;
    o.limits.max_head = (size_t)cfg->limits.max_header_bytes;
    /* A request line needs no more than 8 KiB (RFC 9112 3 recommends
     * supporting that much); longer is 414. */
    o.limits.max_line = o.limits.max_head < 8192 ? o.limits.max_head : 8192;
    o.limits.max_body = (uint64_t)cfg->limits.max_body_bytes;
    o.tls = tls;
    o.routes = l->routes;
    o.n_routes = l->n_routes;
    if (http_conn_attach(&l->conns, gw->base, l->evh, l->sock, &o) != 0) {
        log_error(NULL, "%s listener: out of memory", l->name);
        return -1;
    }
    return 0;
}

int http_open(struct http **out, struct gateway *gw)
{
    const struct config *cfg = gw->cfg;
    struct http *h = calloc(1, sizeof(*h));

    *out = h;
    if (h == NULL)
        return -1;
    h->ctx.cfg = cfg;
    h->ctx.queue = gw->queue;
    h->ctx.dispatch = gw->dispatch;
    h->ctx.audit = gw->audit;
    h->ctx.ready = &gw->ready;
    h->ctx.tls = gw->tls;
    h->ctx.receipt_key = gw->receipt_key;
    memcpy(h->public_routes, public_routes, sizeof(public_routes));
    h->public_routes[0].path = cfg->webhooks.path;
    snprintf(h->webhook_prefix, sizeof(h->webhook_prefix), "%s/", cfg->webhooks.path);
    h->public_routes[1].path = h->webhook_prefix;
    h->pub = (struct http_listener){.name = "public",
                                    .routes = h->public_routes,
                                    .n_routes = N_PUBLIC,
                                    .guard = public_guard,
                                    .ctx = &h->ctx};
    h->admin = (struct http_listener){.name = "admin",
                                      .routes = http_admin_routes,
                                      .n_routes = http_admin_n_routes,
                                      .guard = http_admin_guard,
                                      .ctx = &h->ctx};
    if (listener_open(&h->pub, gw, cfg->listen.address, cfg->listen.port, gw->max_connections,
                      gw->tls) != 0)
        return -1;
    log_info(NULL, "listening on %s://%s:%d", gw->tls ? "https" : "http", cfg->listen.address,
             cfg->listen.port);
    if (cfg->admin.port == 0 || cfg->admin.token.value == NULL) {
        log_info(NULL, "admin listener off (admin.port 0 or no admin.token)");
        return 0;
    }
    if (listener_open(&h->admin, gw, cfg->admin.address, cfg->admin.port, gw->admin_max_connections,
                      NULL) != 0)
        return -1;
    log_info(NULL, "admin listening on http://%s:%d", cfg->admin.address, cfg->admin.port);
    return 0;
}

static void listener_stop(struct http_listener *l)
{
    /* Closing the listening socket refuses new connections at once, while
     * connections already open keep being served until their answers go. */
    http_conn_stop(l->conns);
    if (l->sock != NULL)
        evhttp_del_accept_socket(l->evh, l->sock);
    l->sock = NULL;
}

void http_stop_accepting(struct http *h)
{
    if (h == NULL)
        return;
    listener_stop(&h->pub);
    listener_stop(&h->admin);
}

int http_in_flight(const struct http *h)
{
    return h != NULL ? http_reply_in_flight(&h->ctx) : 0;
}

void http_close(struct http *h)
{
    if (h == NULL)
        return;
    http_conn_stop(h->pub.conns);
    http_conn_stop(h->admin.conns);
    if (h->pub.evh != NULL)
        evhttp_free(h->pub.evh);
    if (h->admin.evh != NULL)
        evhttp_free(h->admin.evh);
    h->pub.evh = h->admin.evh = NULL;
}

void http_free(struct http *h)
{
    if (h == NULL)
        return;
    http_conn_free(h->pub.conns);
    http_conn_free(h->admin.conns);
    free(h);
}
