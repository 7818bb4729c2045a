/*
 * test_upstream.c: the DELETE client against servers in the same event
 * loop on 127.0.0.1 (plain http is allowed for loopback).
 *
 * An evhttp server answers according to the id in the path ("exr_429" is
 * answered with a 429, ...) and records what it received. A second, raw
 * server answers the first request of a connection and closes the
 * connection on the second, to prove a stale keep-alive is retried.
 */
#include "check.h"
#include "upstream.h"
#include "util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/bufferevent_ssl.h>
#include <event2/listener.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define TOKEN1 "sk_test_first_token"
#define TOKEN2 "sk_test_second_token"

static struct event_base *base;

/* ---- the scripted evhttp server ---------------------------------------- */

struct seen {
    int method_delete;
    char uri[512];
    char auth[128];
    char version[64];
    char workspace[64];
    char accept[64];
    char user_agent[64];
    int has_content_length_nonzero;
    size_t body_len;
};

struct server {
    struct evhttp *http;
    int port;
    struct seen last;
    int requests;
    int current, max_current;
    int slow_replied;
};

struct held {
    struct server *srv;
    struct evhttp_request *req;
    struct event *ev;
    int status;
};

static void copy_header(struct evkeyvalq *h, const char *name, char *out, size_t outlen)
{
    const char *v = evhttp_find_header(h, name);
    snprintf(out, outlen, "%s", v ? v : "");
}

static void reply(struct evhttp_request *req, int status, const char *ctype, const char *body)
{
    struct evbuffer *b = evbuffer_new();

    if (ctype != NULL)
        evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", ctype);
    if (body != NULL)
        evbuffer_add(b, body, strlen(body));
    evhttp_send_reply(req, status, "X", b);
    evbuffer_free(b);
}

static void on_held(evutil_socket_t fd, short what, void *arg)
{
    struct held *h = arg;

    (void)fd;
    (void)what;
    h->srv->current--;
    if (h->status == 504)
        h->srv->slow_replied++;
    reply(h->req, h->status, NULL, NULL);
    event_free(h->ev);
    free(h);
}

static void hold(struct server *srv, struct evhttp_request *req, int status, int ms)
{
    struct held *h = calloc(1, sizeof(*h));
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000L};

    h->srv = srv;
    h->req = req;
    h->status = status;
    h->ev = evtimer_new(base, on_held, h);
    evtimer_add(h->ev, &tv);
}

static void on_request(struct evhttp_request *req, void *arg)
{
    struct server *srv = arg;
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    const char *uri = evhttp_request_get_uri(req);
    const char *cl = evhttp_find_header(in, "Content-Length");
    const char *id = strrchr(uri, '/') ? strrchr(uri, '/') + 1 : uri;

    srv->requests++;
    if (strncmp(id, "exr_many", 8) != 0) {
        memset(&srv->last, 0, sizeof(srv->last));
        srv->last.method_delete = evhttp_request_get_command(req) == EVHTTP_REQ_DELETE;
        snprintf(srv->last.uri, sizeof(srv->last.uri), "%s", uri);
        copy_header(in, "Authorization", srv->last.auth, sizeof(srv->last.auth));
        copy_header(in, "x-extend-api-version", srv->last.version, sizeof(srv->last.version));
        copy_header(in, "x-extend-workspace-id", srv->last.workspace, sizeof(srv->last.workspace));
        copy_header(in, "Accept", srv->last.accept, sizeof(srv->last.accept));
        copy_header(in, "User-Agent", srv->last.user_agent, sizeof(srv->last.user_agent));
        srv->last.has_content_length_nonzero = cl != NULL && strcmp(cl, "0") != 0;
        srv->last.body_len = evbuffer_get_length(evhttp_request_get_input_buffer(req));
    }

    if (strcmp(id, "exr_ok") == 0) {
        evhttp_add_header(out, "x-extend-request-id", "  req_abc123  ");
        reply(req, 200, "application/json", "{\"id\":\"exr_ok\"}");
    } else if (strcmp(id, "exr_429") == 0) {
        evhttp_add_header(out, "retry-after", "7");
        evhttp_add_header(out, "X-RATELIMIT-RESET", "1700000010");
        reply(req, 429, "application/json",
              "{\"code\":\"RATE_LIMIT_EXCEEDED\",\"message\":\"slow down\",\"retryable\":true}");
    } else if (strcmp(id, "exr_500") == 0) {
        reply(req, 500, "application/json",
              "{\"code\":\"INTERNAL_ERROR\",\"message\":\"boom\\nline\",\"retryable\":true,"
              "\"requestId\":\"req_1\"}");
    } else if (strcmp(id, "exr_404") == 0) {
        reply(req, 404, "application/json", "{\"code\":\"NOT_FOUND\",\"message\":\"gone\"}");
    } else if (strcmp(id, "exr_502") == 0) {
        reply(req, 502, "text/plain", "Bad Gateway from a proxy");
    } else if (strcmp(id, "exr_big") == 0) {
        /* 100 KiB of JSON: only 8 KiB are kept, so it is not parsed, and
         * the transfer still succeeds. */
        enum { BIG = 100 * 1024 };
        static char big[BIG + 1];
        memset(big, ' ', BIG);
        big[BIG] = '\0';
        memcpy(big, "{\"code\":\"INVALID_REQUEST\",\"message\":\"x\"", 39);
        big[BIG - 1] = '}';
        reply(req, 400, "application/json", big);
    } else if (strcmp(id, "exr_slow") == 0) {
        srv->current++;
        hold(srv, req, 504, 900);
    } else if (strncmp(id, "exr_many", 8) == 0) {
        srv->current++;
        if (srv->current > srv->max_current)
            srv->max_current = srv->current;
        hold(srv, req, 200, 2);
    } else {
        reply(req, 418, NULL, NULL);
    }
}

static int server_start(struct server *srv)
{
    struct evhttp_bound_socket *bs;
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);

    memset(srv, 0, sizeof(*srv));
    srv->http = evhttp_new(base);
    evhttp_set_allowed_methods(srv->http, EVHTTP_REQ_GET | EVHTTP_REQ_DELETE | EVHTTP_REQ_POST);
    evhttp_set_gencb(srv->http, on_request, srv);
    bs = evhttp_bind_socket_with_handle(srv->http, "127.0.0.1", 0);
    if (bs == NULL)
        return -1;
    getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&sin, &len);
    srv->port = ntohs(sin.sin_port);
    return 0;
}

/* ---- the raw server that drops a reused connection ---------------------- */

struct raw_server {
    struct evconnlistener *lis;
    int port;
    int connections;
    int requests;
    int dropped;
};

struct raw_conn {
    struct raw_server *rs;
    int requests;
};

static void raw_event(struct bufferevent *bev, short what, void *arg)
{
    (void)what;
    free(arg);
    bufferevent_free(bev);
}

static void raw_read(struct bufferevent *bev, void *arg)
{
    struct raw_conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    struct evbuffer_ptr end;

    for (;;) {
        end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
        if (end.pos < 0)
            return;
        evbuffer_drain(in, (size_t)end.pos + 4);
        c->requests++;
        c->rs->requests++;
        if (c->requests == 2 && !c->rs->dropped) {
            /* What a server closing an idle keep-alive looks like when the
             * next request is already on the wire: no answer, just EOF. */
            c->rs->dropped = 1;
            free(c);
            bufferevent_free(bev);
            return;
        }
        bufferevent_write(bev, "HTTP/1.1 204 No Content\r\nx-extend-request-id: req_raw\r\n\r\n",
                          57);
    }
}

static void raw_accept(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa,
                       int salen, void *arg)
{
    struct raw_server *rs = arg;
    struct raw_conn *c = calloc(1, sizeof(*c));
    struct bufferevent *bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);

    (void)lis;
    (void)sa;
    (void)salen;
    rs->connections++;
    c->rs = rs;
    bufferevent_setcb(bev, raw_read, NULL, raw_event, c);
    bufferevent_enable(bev, EV_READ);
}

static int raw_start(struct raw_server *rs)
{
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);

    memset(rs, 0, sizeof(*rs));
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    rs->lis =
        evconnlistener_new_bind(base, raw_accept, rs, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, -1,
                                (struct sockaddr *)&sin, sizeof(sin));
    if (rs->lis == NULL)
        return -1;
    getsockname(evconnlistener_get_fd(rs->lis), (struct sockaddr *)&sin, &len);
    rs->port = ntohs(sin.sin_port);
    return 0;
}

/* ---- the client side ----------------------------------------------------- */

struct outcome {
    int done;
    struct upstream_result r;
};

static int in_delete;
static int callbacks_inside_delete;
static int callbacks;

static void on_done(const struct upstream_result *r, void *arg)
{
    struct outcome *o = arg;

    if (in_delete)
        callbacks_inside_delete++;
    callbacks++;
    o->done++;
    o->r = *r;
}

static int start(struct upstream *u, enum resource res, const char *id, struct outcome *o)
{
    int rc;

    in_delete = 1;
    rc = upstream_delete(u, res, id, on_done, o);
    in_delete = 0;
    return rc;
}

static void tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

/* Runs the loop until *count reaches target or 10 s pass. */
static void run_until(const int *count, int target)
{
    int64_t deadline = util_mono_ms() + 10000;

    while (*count < target && util_mono_ms() < deadline)
        event_base_loop(base, EVLOOP_ONCE);
}

static void base_config(struct config *cfg, char *url, size_t urllen, int port)
{
    memset(cfg, 0, sizeof(*cfg));
    snprintf(url, urllen, "http://127.0.0.1:%d/v1/", port);
    cfg->accounts[0].base_url = url;
    cfg->accounts[0].api_version = "2026-02-09";
    cfg->accounts[0].token.value = (unsigned char *)TOKEN1;
    cfg->accounts[0].token.len = strlen(TOKEN1);
    cfg->accounts[0].workspace_id = "ws_test";
    cfg->accounts[0].timeout_ms = 2000;
    cfg->accounts[0].connect_timeout_ms = 1000;
    cfg->accounts[0].max_in_flight = 4;
}

static void test_base_url_rules(void)
{
    static const struct {
        const char *url;
        int ok;
    } table[] = {
        {"https://api.extend.ai", 1},
        {"https://api.eu1.extend.ai/", 1},
        {"http://127.0.0.1:8080", 1},
        {"http://localhost:8080/base", 1},
        {"http://[::1]:9000", 1},
        {"http://api.extend.ai", 0},
        {"http://127.0.0.1.example.com", 0},
        {"http://10.0.0.1", 0},
        {"ftp://127.0.0.1", 0},
        {"https://user:pw@api.extend.ai", 0},
        {"https://api.extend.ai/?x=1", 0},
        {"not a url", 0},
    };
    struct config cfg;
    char url[128], err[256];
    struct upstream *u;

    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        base_config(&cfg, url, sizeof(url), 1);
        cfg.accounts[0].base_url = (char *)table[i].url;
        err[0] = '\0';
        int rc = upstream_open(&u, base, &cfg.accounts[0], err, sizeof(err));
        if ((rc == 0) != table[i].ok)
            fprintf(stderr, "base_url %s: rc %d (%s)\n", table[i].url, rc, err);
        CHECK((rc == 0) == table[i].ok);
        if (rc != 0)
            CHECK(strncmp(err, "extend.", 7) == 0);
        upstream_close(u);
    }

    /* Tokens that could inject a header line, and missing tokens. */
    base_config(&cfg, url, sizeof(url), 1);
    cfg.accounts[0].token.value = (unsigned char *)"sk_a\r\nX-Evil: 1";
    cfg.accounts[0].token.len = strlen((char *)cfg.accounts[0].token.value);
    CHECK(upstream_open(&u, base, &cfg.accounts[0], err, sizeof(err)) == -1 && u == NULL);
    cfg.accounts[0].token.value = NULL;
    cfg.accounts[0].token.len = 0;
    CHECK(upstream_open(&u, base, &cfg.accounts[0], err, sizeof(err)) == -1);

    /* ca_file must exist and hold a certificate; a real bundle is fine. */
    base_config(&cfg, url, sizeof(url), 1);
    cfg.accounts[0].ca_file = "/nonexistent/ca.pem";
    CHECK(upstream_open(&u, base, &cfg.accounts[0], err, sizeof(err)) == -1);
    CHECK(strstr(err, "extend.ca_file") != NULL);
    cfg.accounts[0].ca_file = "/etc/hostname";
    CHECK(upstream_open(&u, base, &cfg.accounts[0], err, sizeof(err)) == -1);
    if (access("/etc/ssl/certs/ca-certificates.crt", R_OK) == 0) {
        cfg.accounts[0].ca_file = "/etc/ssl/certs/ca-certificates.crt";
        CHECK(upstream_open(&u, base, &cfg.accounts[0], err, sizeof(err)) == 0);
        upstream_close(u);
    }
}

/* `check` passes a base_url exactly when the dispatcher can open it: both
 * go through one rule, so a config never validates and then fails at
 * start (or the other way round). */
static void test_config_and_upstream_agree_on_base_url(void)
{
    static const char *const urls[] = {
        "https://api.extend.ai",
        "https://api.extend.ai/v1/",
        "https://h_1.example:443",
        "http://127.0.0.1:9000/",
        "http://LOCALHOST:1",
        "http://[::1]:9000",
        "https://[::1]",
        "https://[]",
        "https://a{b}.example",
        "https://a%41.example",
        "https://a$b.example",
        "https://api.extend.ai:0",
        "https://api.extend.ai:65536",
        "https://api.extend.ai:",
        "HTTPS://api.extend.ai",
        "http://10.0.0.1",
        "https://user@api.extend.ai",
        "https://api.extend.ai/#x",
        "ftp://127.0.0.1",
    };
    char url[128], err[256], json[256];

    for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
        struct config loaded, cfg;
        struct upstream *u = NULL;
        int cfg_ok, up_ok;

        snprintf(json, sizeof(json), "{\"extend\": {\"base_url\": \"%s\"}}", urls[i]);
        cfg_ok = config_load_string(&loaded, json, err, sizeof(err)) == 0;
        if (cfg_ok)
            config_free(&loaded);
        base_config(&cfg, url, sizeof(url), 1);
        cfg.accounts[0].base_url = (char *)urls[i];
        up_ok = upstream_open(&u, base, &cfg.accounts[0], err, sizeof(err)) == 0;
        upstream_close(u);
        if (cfg_ok != up_ok)
            fprintf(stderr, "base_url %s: config %s it, upstream %s it\n", urls[i],
                    cfg_ok ? "accepts" : "refuses", up_ok ? "accepts" : "refuses");
        CHECK(cfg_ok == up_ok);
    }
}

static void test_scripted_answers(struct server *srv)
{
    struct config cfg;
    char url[128], err[256];
    struct upstream *u = NULL;
    struct outcome ok = {0}, rl = {0}, e500 = {0}, nf = {0}, e502 = {0}, big = {0};
    struct secret tok2 = {NULL, (unsigned char *)TOKEN2, strlen(TOKEN2)};

    base_config(&cfg, url, sizeof(url), srv->port);
    CHECK(upstream_open(&u, base, &cfg.accounts[0], err, sizeof(err)) == 0);
    if (u == NULL)
        return;

    /* 200: method, exact path, every header, no body. */
    CHECK(start(u, RES_EXTRACT_RUN, "exr_ok", &ok) == 0);
    CHECK(upstream_in_flight(u) == 1);
    CHECK(ok.done == 0);
    run_until(&ok.done, 1);
    CHECK(ok.done == 1);
    CHECK(ok.r.http_status == 200);
    CHECK_STR(ok.r.transport_error, "");
    CHECK_STR(ok.r.request_id, "req_abc123");
    CHECK_STR(ok.r.error_code, "");
    CHECK(ok.r.elapsed_ms >= 0 && ok.r.elapsed_ms < 2000);
    CHECK(srv->last.method_delete);
    CHECK_STR(srv->last.uri, "/v1/extract_runs/exr_ok");
    CHECK_STR(srv->last.auth, "Bearer " TOKEN1);
    CHECK_STR(srv->last.version, "2026-02-09");
    CHECK_STR(srv->last.workspace, "ws_test");
    CHECK_STR(srv->last.accept, "application/json");
    CHECK_STR(srv->last.user_agent, "deletion-gateway/" DG_VERSION);
    CHECK(!srv->last.has_content_length_nonzero);
    CHECK(srv->last.body_len == 0);
    CHECK(upstream_in_flight(u) == 0);

    /* 429 with both rate-limit hints, header names in any case. */
    CHECK(start(u, RES_FILE, "exr_429", &rl) == 0);
    run_until(&rl.done, 1);
    CHECK(rl.r.http_status == 429);
    CHECK_STR(rl.r.retry_after, "7");
    CHECK_STR(rl.r.ratelimit_reset, "1700000010");
    CHECK_STR(rl.r.error_code, "RATE_LIMIT_EXCEEDED");
    CHECK_STR(rl.r.error_message, "slow down");
    CHECK_STR(srv->last.uri, "/v1/files/exr_429");

    /* 500 with Extend's JSON error; control characters never pass. */
    CHECK(start(u, RES_PARSE_RUN, "exr_500", &e500) == 0);
    run_until(&e500.done, 1);
    CHECK(e500.r.http_status == 500);
    CHECK_STR(e500.r.error_code, "INTERNAL_ERROR");
    CHECK_STR(e500.r.error_message, "boom?line");
    CHECK_STR(e500.r.transport_error, "");

    /* 404, plain-text 502 (no code), oversized body. Started together. */
    CHECK(start(u, RES_EXTRACT_RUN, "exr_404", &nf) == 0);
    CHECK(start(u, RES_EXTRACT_RUN, "exr_502", &e502) == 0);
    CHECK(start(u, RES_EXTRACT_RUN, "exr_big", &big) == 0);
    CHECK(upstream_in_flight(u) == 3);
    run_until(&callbacks, callbacks + 3);
    run_until(&big.done, 1);
    CHECK(nf.r.http_status == 404);
    CHECK_STR(nf.r.error_code, "NOT_FOUND");
    CHECK(e502.r.http_status == 502);
    CHECK_STR(e502.r.error_code, "");
    CHECK_STR(e502.r.transport_error, "");
    CHECK(big.r.http_status == 400);
    CHECK_STR(big.r.transport_error, "");
    CHECK_STR(big.r.error_code, "");
    CHECK(upstream_in_flight(u) == 0);

    /* A new token applies to requests started afterwards. */
    CHECK(upstream_set_token(u, &tok2) == 0);
    memset(&ok, 0, sizeof(ok));
    CHECK(start(u, RES_EXTRACT_RUN, "exr_ok", &ok) == 0);
    run_until(&ok.done, 1);
    CHECK(ok.r.http_status == 200);
    CHECK_STR(srv->last.auth, "Bearer " TOKEN2);
    tok2.value = (unsigned char *)"bad token";
    tok2.len = 9;
    CHECK(upstream_set_token(u, &tok2) == -1);

    /* Ids that could change the path are refused up front, no callback. */
    struct outcome never = {0};
    CHECK(start(u, RES_EXTRACT_RUN, "../admin", &never) == -1);
    CHECK(start(u, RES_EXTRACT_RUN, "", &never) == -1);
    CHECK(start(u, RES_COUNT, "exr_ok", &never) == -1);
    CHECK(upstream_in_flight(u) == 0);

    upstream_close(u);
    CHECK(never.done == 0);
}

static void test_timeout_and_refused(struct server *srv)
{
    struct config cfg;
    char url[128], err[256];
    struct upstream *u = NULL, *u2 = NULL;
    struct outcome slow = {0}, refused = {0};
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);
    int fd, closed_port, bound;

    base_config(&cfg, url, sizeof(url), srv->port);
    cfg.accounts[0].timeout_ms = 300;
    CHECK(upstream_open(&u, base, &cfg.accounts[0], err, sizeof(err)) == 0);
    if (u == NULL)
        return;
    CHECK(start(u, RES_EXTRACT_RUN, "exr_slow", &slow) == 0);
    run_until(&slow.done, 1);
    CHECK(slow.r.http_status == 0);
    CHECK_STR(slow.r.transport_error, "timeout");
    CHECK(slow.r.transport_detail[0] != '\0');
    CHECK(slow.r.elapsed_ms >= 250 && slow.r.elapsed_ms < 2000);
    /* Let the server finish its late answer so nothing is left behind. */
    run_until(&srv->slow_replied, 1);
    upstream_close(u);

    /* A port nobody listens on any more. */
    fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bound = fd >= 0 && bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0 &&
            getsockname(fd, (struct sockaddr *)&sin, &len) == 0;
    closed_port = ntohs(sin.sin_port);
    if (fd >= 0)
        close(fd);
    /* Without a port of its own the refusal below would test port 0. */
    REQUIRE(bound);
    base_config(&cfg, url, sizeof(url), closed_port);
    CHECK(upstream_open(&u2, base, &cfg.accounts[0], err, sizeof(err)) == 0);
    if (u2 == NULL)
        return;
    CHECK(start(u2, RES_EXTRACT_RUN, "exr_ok", &refused) == 0);
    run_until(&refused.done, 1);
    CHECK(refused.done == 1);
    CHECK(refused.r.http_status == 0);
    CHECK_STR(refused.r.transport_error, "connect_failed");
    upstream_close(u2);
}

static void test_many_bounded_in_flight(struct server *srv)
{
    enum { N = 200 };
    struct config cfg;
    char url[128], err[256], id[32];
    struct upstream *u = NULL;
    static struct outcome o[N];
    int ok = 0, before = srv->requests;

    base_config(&cfg, url, sizeof(url), srv->port);
    CHECK(upstream_open(&u, base, &cfg.accounts[0], err, sizeof(err)) == 0);
    if (u == NULL)
        return;
    srv->max_current = 0;
    int target = callbacks + N;
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof(id), "exr_many%d", i);
        CHECK(start(u, RES_EXTRACT_RUN, id, &o[i]) == 0);
    }
    CHECK(upstream_in_flight(u) == N);
    run_until(&callbacks, target);
    for (int i = 0; i < N; i++)
        ok += o[i].done == 1 && o[i].r.http_status == 200;
    CHECK(ok == N);
    CHECK(srv->requests - before == N);
    CHECK(srv->max_current <= 4);
    CHECK(srv->max_current >= 2); /* they did overlap */
    CHECK(upstream_in_flight(u) == 0);
    upstream_close(u);
}

static void test_stale_keepalive_is_retried(void)
{
    struct raw_server rs;
    struct config cfg;
    char url[128], err[256];
    struct upstream *u = NULL;
    struct outcome a = {0}, b = {0};

    if (raw_start(&rs) != 0) {
        CHECK(0);
        return;
    }
    base_config(&cfg, url, sizeof(url), rs.port);
    CHECK(upstream_open(&u, base, &cfg.accounts[0], err, sizeof(err)) == 0);
    if (u != NULL) {
        CHECK(start(u, RES_EXTRACT_RUN, "exr_a", &a) == 0);
        run_until(&a.done, 1);
        CHECK(a.r.http_status == 204);
        CHECK_STR(a.r.request_id, "req_raw");
        /* Second request reuses the connection; the server closes it
         * without answering; libcurl must retry on a fresh one. */
        CHECK(start(u, RES_EXTRACT_RUN, "exr_b", &b) == 0);
        run_until(&b.done, 1);
        CHECK(b.r.http_status == 204);
        CHECK_STR(b.r.transport_error, "");
        CHECK(rs.dropped == 1);
        CHECK(rs.connections == 2);
        CHECK(rs.requests == 3);
        upstream_close(u);
    }
    evconnlistener_free(rs.lis);
}

/* ---- an https server with a throw-away self-signed certificate ---------- */

struct tls_server {
    struct server srv;
    SSL_CTX *ctx;
    char ca_path[64];
};

static struct bufferevent *tls_bevcb(struct event_base *b, void *arg)
{
    struct tls_server *ts = arg;

    return bufferevent_openssl_socket_new(b, -1, SSL_new(ts->ctx), BUFFEREVENT_SSL_ACCEPTING,
                                          BEV_OPT_CLOSE_ON_FREE);
}

static int add_ext(X509 *cert, int nid, const char *value)
{
    X509V3_CTX v3;
    X509_EXTENSION *ext;
    int rc;

    X509V3_set_ctx(&v3, cert, cert, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    if (ext == NULL)
        return -1;
    rc = X509_add_ext(cert, ext, -1) == 1 ? 0 : -1;
    X509_EXTENSION_free(ext);
    return rc;
}

/* A P-256 key and a certificate for 127.0.0.1, also written as the PEM
 * file extend.ca_file will point at. */
static int tls_start(struct tls_server *ts)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *cert = X509_new();
    X509_NAME *name;
    FILE *f;
    int fd, rc = -1;

    memset(ts, 0, sizeof(*ts));
    if (key == NULL || cert == NULL)
        goto fail;
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), -60);
    X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
    X509_set_pubkey(cert, key);
    name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"127.0.0.1", -1, -1,
                               0);
    X509_set_issuer_name(cert, name);
    if (add_ext(cert, NID_basic_constraints, "critical,CA:TRUE") != 0 ||
        add_ext(cert, NID_subject_alt_name, "IP:127.0.0.1") != 0 ||
        X509_sign(cert, key, EVP_sha256()) == 0)
        goto fail;
    ts->ctx = SSL_CTX_new(TLS_server_method());
    if (ts->ctx == NULL || SSL_CTX_use_certificate(ts->ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey(ts->ctx, key) != 1)
        goto fail;
    snprintf(ts->ca_path, sizeof(ts->ca_path), "/tmp/dg-test-ca-XXXXXX");
    fd = mkstemp(ts->ca_path);
    if (fd < 0 || (f = fdopen(fd, "w")) == NULL)
        goto fail;
    PEM_write_X509(f, cert);
    fclose(f);
    if (server_start(&ts->srv) != 0)
        goto fail;
    evhttp_set_bevcb(ts->srv.http, tls_bevcb, ts);
    rc = 0;
fail:
    X509_free(cert);
    EVP_PKEY_free(key);
    return rc;
}

static void tls_stop(struct tls_server *ts)
{
    if (ts->srv.http != NULL)
        evhttp_free(ts->srv.http);
    SSL_CTX_free(ts->ctx);
    if (ts->ca_path[0] != '\0')
        unlink(ts->ca_path);
}

static void test_tls_trust(void)
{
    struct tls_server ts;
    struct config cfg;
    char url[128], err[256];
    struct upstream *u = NULL;
    struct outcome untrusted = {0}, trusted = {0};

    if (tls_start(&ts) != 0) {
        CHECK(0);
        tls_stop(&ts);
        return;
    }
    base_config(&cfg, url, sizeof(url), ts.srv.port);
    snprintf(url, sizeof(url), "https://127.0.0.1:%d/v1", ts.srv.port);

    /* System CAs only: the self-signed server is refused. */
    CHECK(upstream_open(&u, base, &cfg.accounts[0], err, sizeof(err)) == 0);
    if (u != NULL) {
        CHECK(start(u, RES_EXTRACT_RUN, "exr_ok", &untrusted) == 0);
        run_until(&untrusted.done, 1);
        CHECK(untrusted.r.http_status == 0);
        CHECK_STR(untrusted.r.transport_error, "tls_failed");
        CHECK(ts.srv.requests == 0);
        upstream_close(u);
        u = NULL;
    }

    /* extend.ca_file adds the server's CA to the system bundle. */
    cfg.accounts[0].ca_file = ts.ca_path;
    CHECK(upstream_open(&u, base, &cfg.accounts[0], err, sizeof(err)) == 0);
    if (u != NULL) {
        CHECK(start(u, RES_EXTRACT_RUN, "exr_ok", &trusted) == 0);
        run_until(&trusted.done, 1);
        CHECK(trusted.r.http_status == 200);
        CHECK_STR(trusted.r.transport_error, "");
        CHECK_STR(trusted.r.request_id, "req_abc123");
        CHECK_STR(ts.srv.last.uri, "/v1/extract_runs/exr_ok");
        upstream_close(u);
    }
    tls_stop(&ts);
}

/* Closing from inside a callback aborts the rest without calling back. */
static struct upstream *closing_u;
static int close_cb_calls;

static void on_done_close(const struct upstream_result *r, void *arg)
{
    (void)r;
    (void)arg;
    close_cb_calls++;
    upstream_close(closing_u);
}

static void test_close_inside_callback(struct server *srv)
{
    struct config cfg;
    char url[128], err[256];

    base_config(&cfg, url, sizeof(url), srv->port);
    CHECK(upstream_open(&closing_u, base, &cfg.accounts[0], err, sizeof(err)) == 0);
    if (closing_u == NULL)
        return;
    CHECK(upstream_delete(closing_u, RES_EXTRACT_RUN, "exr_ok", on_done_close, NULL) == 0);
    CHECK(upstream_delete(closing_u, RES_EXTRACT_RUN, "exr_slow", on_done_close, NULL) == 0);
    run_until(&close_cb_calls, 1);
    /* The slow one is aborted: give it time to (wrongly) call back. */
    int64_t until = util_mono_ms() + 1200;
    while (util_mono_ms() < until)
        event_base_loop(base, EVLOOP_ONCE);
    CHECK(close_cb_calls == 1);
}

int main(void)
{
    struct server srv;
    struct event *ticker;
    struct timeval tv = {0, 20000};

    /* Loopback tests must not go through a proxy from the environment. */
    unsetenv("http_proxy");
    unsetenv("HTTP_PROXY");
    unsetenv("https_proxy");
    unsetenv("HTTPS_PROXY");
    unsetenv("all_proxy");
    unsetenv("ALL_PROXY");
    CHECK(upstream_global_init() == 0);
    CHECK(upstream_global_init() == 0);
    base = event_base_new();
    ticker = event_new(base, -1, EV_PERSIST, tick, NULL);
    event_add(ticker, &tv);
    if (server_start(&srv) != 0) {
        CHECK(0);
        return check_done();
    }

    test_base_url_rules();
    test_config_and_upstream_agree_on_base_url();
    test_scripted_answers(&srv);
    test_timeout_and_refused(&srv);
    test_many_bounded_in_flight(&srv);
    test_stale_keepalive_is_retried();
    test_close_inside_callback(&srv);
    test_tls_trust();
    CHECK(callbacks_inside_delete == 0);

    evhttp_free(srv.http);
    event_free(ticker);
    event_base_free(base);
    return check_done();
}
