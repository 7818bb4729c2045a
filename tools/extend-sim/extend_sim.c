/*
 * extend_sim.c: a stand-in for the Extend API (api.extend.ai) that every
 * end-to-end test and benchmark of the gateway talks to, and that
 * `make run` uses when no EXTEND_API_TOKEN is set.
 *
 * It answers DELETE /{collection}/{id} as extend-api.md sections 2 and 3
 * describe (Bearer token, x-extend-api-version, 200 {"id"} then 404, the
 * {"code","message","retryable","requestId"} error body, an
 * x-extend-request-id on every answer), and lets a test inject faults and
 * read back what it received, over plain routes on the same port:
 *
 *   POST /_sim/faults    append rules (JSON array or one object)
 *   GET  /_sim/faults    the rules and what is left of their counts
 *   POST /_sim/reset     forget faults, request log, deleted ids, counters
 *   GET  /_sim/requests  every DELETE received, in order (?since=SEQ)
 *   GET  /_sim/stats     counters
 *
 * Map: answers in Extend's format, the DELETE path (receive -> optional
 * delay -> finish), routing, TLS, options and main. The request log, the
 * deleted-id set, the fault rules and the /_sim/ routes are in
 * sim_control.c. One event loop, one thread: fast enough for thousands of
 * DELETEs per second over keep-alive TLS; "at once" in the stats means
 * "received and not yet answered".
 */
#include "sim.h"

static const char *const sim_collections[] = {"extract_runs", "parse_runs", "classify_runs",
                                              "split_runs",   "edit_runs",  "workflow_runs",
                                              "files"};
static const char *const sim_logged_headers[] = {
    "authorization", "x-extend-api-version", "x-extend-workspace-id",
    "accept",        "user-agent",           "content-length"};

/* ---------- small helpers ---------- */

static int64_t sim_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int sim_parse_int(const char *s, int64_t min, int64_t max, int64_t *out)
{
    char *end;
    long long v;
    if (s == NULL || *s == '\0')
        return -1;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

void sim_copy(char *dst, size_t len, const char *src)
{
    snprintf(dst, len, "%s", src ? src : "");
}

static void sim_request_id(struct sim *s, char *out, size_t len)
{
    snprintf(out, len, "req_sim%08" PRIx32 "%012" PRIu64, s->boot_tag, ++s->req_counter);
}

static const char *sim_default_code(int status)
{
    switch (status) {
    case 401:
    case 403:
        return "UNAUTHORIZED";
    case 402:
        return "USAGE_BLOCKED";
    case 404:
        return "NOT_FOUND";
    case 410:
        return "ENDPOINT_REMOVED";
    case 429:
        return "RATE_LIMIT_EXCEEDED";
    default:
        return status >= 500 ? "INTERNAL_ERROR" : "INVALID_REQUEST";
    }
}

static const char *sim_reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 402:
        return "Payment Required";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 422:
        return "Unprocessable Entity";
    case 429:
        return "Too Many Requests";
    case 500:
        return "Internal Server Error";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return status < 400 ? "OK" : "Error";
    }
}

/* Sends a JSON value (stolen) with the given status. */
void sim_send_json(struct evhttp_request *req, int status, json_t *v)
{
    struct evbuffer *buf = evbuffer_new();
    char *text = json_dumps(v, JSON_COMPACT);
    json_decref(v);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    if (buf != NULL && text != NULL)
        evbuffer_add(buf, text, strlen(text));
    evhttp_send_reply(req, status, sim_reason(status), buf);
    free(text);
    if (buf != NULL)
        evbuffer_free(buf);
}

void sim_send_text(struct evhttp_request *req, int status, const char *text)
{
    struct evbuffer *buf = evbuffer_new();
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain; charset=utf-8");
    if (buf != NULL)
        evbuffer_add_printf(buf, "%s", text);
    evhttp_send_reply(req, status, sim_reason(status), buf);
    if (buf != NULL)
        evbuffer_free(buf);
}

/* An error in Extend's format (extend-api.md section 3), with its request id. */
void sim_send_error(struct sim *s, struct evhttp_request *req, int status, const char *code,
                    const char *message)
{
    char rid[64];
    sim_request_id(s, rid, sizeof(rid));
    evhttp_add_header(evhttp_request_get_output_headers(req), "x-extend-request-id", rid);
    sim_send_json(req, status,
                  json_pack("{s:s, s:s, s:b, s:s}", "code", code ? code : sim_default_code(status),
                            "message", message, "retryable", status == 429 || status >= 500,
                            "requestId", rid));
}

/* ---------- the DELETE path ---------- */

static void sim_pending_free(struct pending *p)
{
    struct sim *s = p->sim;
    if (p->prev)
        p->prev->next = p->next;
    else if (s->pending == p)
        s->pending = p->next;
    if (p->next)
        p->next->prev = p->prev;
    if (p->timer)
        event_free(p->timer);
    json_decref(p->rec);
    free(p->id);
    free(p);
    s->in_flight--;
}

/* Final bookkeeping of one DELETE: status into its record, the record into
 * the log (memory and --log file), counters. status 0 = dropped. */
static void sim_record(struct sim *s, struct pending *p, int status)
{
    char *line;
    if (status == 0)
        s->dropped++;
    else if (status > 0 && status < 600)
        s->by_status[status]++;
    json_object_set_new(p->rec, "status", status ? json_integer(status) : json_null());
    line = json_dumps(p->rec, JSON_COMPACT);
    if (line != NULL && s->log != NULL) {
        fprintf(s->log, "%s\n", line);
        s->log_dirty = true;
    }
    if (p->slot >= 0 && p->slot < s->n_slots) {
        json_decref(s->slots[p->slot].record);
        s->slots[p->slot].record = NULL;
        s->slots[p->slot].line = line;
    } else {
        free(line);
    }
}

static bool sim_bearer_ok(struct sim *s, const char *auth)
{
    const char *tok;
    size_t n;
    if (auth == NULL || strncasecmp(auth, "Bearer ", 7) != 0)
        return false;
    tok = auth + 7;
    n = strlen(tok);
    if (n == 0)
        return false;
    if (s->token == NULL)
        return true;
    return n == strlen(s->token) && CRYPTO_memcmp(tok, s->token, n) == 0;
}

/* Answers one DELETE: the injected fault if any, else what Extend would say. */
static void sim_finish(struct pending *p)
{
    struct sim *s = p->sim;
    struct evhttp_request *req = p->req;
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    const struct fault *f = &p->fault;
    char msg[SIM_TEXT * 2];
    int status;

    if (f->status >= 0 && f->action == ACT_DROP) {
        /* No answer at all: the client sees the connection close. */
        struct evhttp_connection *evcon = p->evcon;
        sim_record(s, p, 0);
        sim_pending_free(p);
        evhttp_connection_free(evcon);
        return;
    }
    if (f->status > 0) {
        status = f->status;
        if (f->retry_after[0])
            evhttp_add_header(out, "Retry-After", f->retry_after);
        if (f->ratelimit_reset[0])
            evhttp_add_header(out, "X-RateLimit-Reset", f->ratelimit_reset);
        if (f->action == ACT_PLAIN) {
            /* What a proxy in front of Extend says: no JSON, no request id. */
            snprintf(msg, sizeof(msg), "%d %s\n", status, sim_reason(status));
            sim_send_text(req, status, msg);
        } else {
            snprintf(msg, sizeof(msg), "Injected fault: %d", status);
            sim_send_error(s, req, status, f->code[0] ? f->code : NULL, msg);
        }
        goto done;
    }
    if (!sim_bearer_ok(s, evhttp_find_header(in, "Authorization"))) {
        status = 401;
        sim_send_error(s, req, status, "UNAUTHORIZED", "Invalid or missing API key.");
        goto done;
    }
    if (evhttp_find_header(in, "x-extend-api-version") == NULL) {
        status = 400;
        sim_send_error(s, req, status, "INVALID_REQUEST",
                       "The x-extend-api-version header is required.");
        goto done;
    }
    if (strncmp(p->id, "missing_", 8) != 0) {
        size_t klen = strlen(p->collection) + strlen(p->id) + 2;
        char *key = malloc(klen);
        int seen = -1;
        if (key != NULL) {
            snprintf(key, klen, "%s/%s", p->collection, p->id);
            seen = sim_deleted_add(s, key);
            free(key);
        }
        if (seen < 0) {
            status = 500;
            sim_send_error(s, req, status, "INTERNAL_ERROR", "Out of memory.");
            goto done;
        }
        if (seen == 0) {
            char rid[64];
            status = 200;
            sim_request_id(s, rid, sizeof(rid));
            evhttp_add_header(out, "x-extend-request-id", rid);
            sim_send_json(req, status, json_pack("{s:s}", "id", p->id));
            goto done;
        }
    }
    status = 404;
    snprintf(msg, sizeof(msg), "No %.40s found with that id.", p->collection);
    sim_send_error(s, req, status, "NOT_FOUND", msg);
done:
    sim_record(s, p, status);
    sim_pending_free(p);
}

static void sim_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sim_finish(arg);
}

/* The client went away (or the loop is ending): forget its waiting DELETEs
 * so a timer never touches a freed request. */
static void sim_conn_closed(struct evhttp_connection *evcon, void *arg)
{
    struct sim *s = arg;
    struct pending *p = s->pending, *next;
    for (; p != NULL; p = next) {
        next = p->next;
        if (p->evcon == evcon) {
            sim_record(s, p, 0);
            sim_pending_free(p);
        }
    }
}

/* --rate-limit: a token bucket of N per second with a burst of N, as
 * Extend limits an organisation; an injected fault takes precedence. */
static bool sim_rate_ok(struct sim *s)
{
    struct timespec ts;
    double now;
    if (s->rate_limit <= 0)
        return true;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    now = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    if (s->rate_last > 0)
        s->rate_tokens += (now - s->rate_last) * s->rate_limit;
    else
        s->rate_tokens = s->rate_limit;
    if (s->rate_tokens > s->rate_limit)
        s->rate_tokens = s->rate_limit;
    s->rate_last = now;
    if (s->rate_tokens < 1.0)
        return false;
    s->rate_tokens -= 1.0;
    return true;
}

static void sim_rate_fault(struct fault *f)
{
    memset(f, 0, sizeof(*f));
    f->status = 429;
    sim_copy(f->retry_after, sizeof(f->retry_after), "1");
    snprintf(f->ratelimit_reset, sizeof(f->ratelimit_reset), "%lld",
             (long long)sim_now_ms() / 1000 + 1);
}

static json_t *sim_new_record(struct sim *s, struct evhttp_request *req, const char *path,
                              const char *collection, const char *id)
{
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    json_t *h = json_object(), *rec;
    for (size_t i = 0; i < sizeof(sim_logged_headers) / sizeof(*sim_logged_headers); i++) {
        const char *v = evhttp_find_header(in, sim_logged_headers[i]);
        if (v != NULL)
            json_object_set_new(h, sim_logged_headers[i], json_string(v));
    }
    rec = json_pack("{s:I, s:I, s:s, s:s?, s:s?, s:s?, s:n, s:o}", "seq", (json_int_t)++s->seq,
                    "time_ms", (json_int_t)sim_now_ms(), "method", "DELETE", "path", path, "id", id,
                    "collection", collection, "status", "headers", h);
    return rec;
}

static void sim_handle_delete(struct sim *s, struct evhttp_request *req, const char *path)
{
    const char *collection = NULL;
    const char *seg = path + 1, *slash = strchr(seg, '/');
    char *id = NULL;
    size_t idlen = 0;
    struct pending *p = NULL;
    struct fault *f;
    int delay;

    s->deletes++;
    if (slash != NULL && slash[1] != '\0' && strchr(slash + 1, '/') == NULL) {
        for (size_t i = 0; i < sizeof(sim_collections) / sizeof(*sim_collections); i++) {
            size_t n = strlen(sim_collections[i]);
            if ((size_t)(slash - seg) == n && strncmp(seg, sim_collections[i], n) == 0)
                collection = sim_collections[i];
        }
    }
    if (collection != NULL)
        id = evhttp_uridecode(slash + 1, 0, &idlen);

    p = calloc(1, sizeof(*p));
    if (p == NULL)
        goto fail;
    p->sim = s;
    p->req = req;
    p->evcon = evhttp_request_get_connection(req);
    p->collection = collection;
    p->id = id;
    id = NULL;
    p->fault.status = -1;
    p->rec = sim_new_record(s, req, path, collection, p->id);
    if (p->rec == NULL)
        goto fail;
    p->slot = sim_log_reserve(s, p->rec);
    p->next = s->pending;
    if (s->pending)
        s->pending->prev = p;
    s->pending = p;
    if (++s->in_flight > s->max_concurrent)
        s->max_concurrent = s->in_flight;

    if (collection == NULL) {
        /* Extend's router answers unknown paths in plain text. */
        char rid[64];
        sim_request_id(s, rid, sizeof(rid));
        evhttp_add_header(evhttp_request_get_output_headers(req), "x-extend-request-id", rid);
        sim_send_text(req, 404, "Not Found");
        sim_record(s, p, 404);
        sim_pending_free(p);
        return;
    }
    if (p->id == NULL || strlen(p->id) != idlen || idlen > SIM_MAX_ID) {
        sim_send_error(s, req, 400, "INVALID_REQUEST", "Malformed id.");
        sim_record(s, p, 400);
        sim_pending_free(p);
        return;
    }
    if ((f = sim_match_fault(s, p->id)) != NULL)
        p->fault = *f;
    else if (!sim_rate_ok(s))
        sim_rate_fault(&p->fault);
    delay = s->latency_ms + (f ? f->delay_ms : 0);
    if (delay == 0 && !(f != NULL && f->action == ACT_DROP)) {
        sim_finish(p);
        return;
    }
    /* Waiting DELETEs, and every drop, are answered from a timer, so a
     * connection is never freed inside its own request callback. */
    evhttp_connection_set_closecb(p->evcon, sim_conn_closed, s);
    p->timer = evtimer_new(s->base, sim_timer_cb, p);
    if (p->timer != NULL) {
        struct timeval tv = {delay / 1000, (delay % 1000) * 1000L};
        if (evtimer_add(p->timer, &tv) == 0)
            return;
    }
    sim_send_error(s, req, 500, "INTERNAL_ERROR", "Out of memory.");
    sim_record(s, p, 500);
    sim_pending_free(p);
    return;
fail:
    free(id);
    if (p != NULL) {
        json_decref(p->rec);
        free(p->id);
        free(p);
    }
    sim_send_text(req, 500, "out of memory");
}

static void sim_handle(struct evhttp_request *req, void *arg)
{
    struct sim *s = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);

    if (path == NULL || path[0] != '/') {
        sim_send_text(req, 400, "Bad Request");
        return;
    }
    if (cmd == EVHTTP_REQ_DELETE) {
        sim_handle_delete(s, req, path);
    } else if (strcmp(path, "/_sim/faults") == 0 &&
               (cmd == EVHTTP_REQ_POST || cmd == EVHTTP_REQ_GET)) {
        sim_handle_faults(s, req);
    } else if (strcmp(path, "/_sim/reset") == 0 && cmd == EVHTTP_REQ_POST) {
        sim_handle_reset(s, req);
    } else if (strcmp(path, "/_sim/requests") == 0 && cmd == EVHTTP_REQ_GET) {
        sim_handle_requests(s, req, evhttp_uri_get_query(uri));
    } else if (strcmp(path, "/_sim/stats") == 0 && cmd == EVHTTP_REQ_GET) {
        sim_handle_stats(s, req);
    } else {
        sim_send_text(req, 404, "Not Found");
    }
}

/* ---------- connections and TLS ---------- */

/* evhttp puts an answer's head and body in the output as two pieces, and
 * the TLS bufferevent writes each piece as its own TLS record and write():
 * twice the records and syscalls on both ends of every DELETE, which is
 * most of what a DELETE costs on loopback. Writing is off while evhttp
 * builds the answer, so joining the pieces as they arrive makes it one. */
static void sim_one_record(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    (void)arg;
    if (info->n_added > 0)
        evbuffer_pullup(buf, -1);
}

static struct bufferevent *sim_bevcb(struct event_base *base, void *arg)
{
    struct sim *s = arg;
    struct bufferevent *bev;
    SSL *ssl;

    s->connections_opened++;
    if (s->ssl_ctx == NULL)
        return bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    if ((ssl = SSL_new(s->ssl_ctx)) == NULL)
        return NULL;
    bev = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                         BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL) {
        SSL_free(ssl);
        return NULL;
    }
    /* Clients that hang up without close_notify are normal, not errors. */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    evbuffer_add_cb(bufferevent_get_output(bev), sim_one_record, NULL);
    return bev;
}

static SSL_CTX *sim_tls_open(const char *cert, const char *key)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL)
        goto fail;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1)
        goto fail;
    return ctx;
fail:
    ERR_print_errors_fp(stderr);
    SSL_CTX_free(ctx);
    return NULL;
}

static void sim_signal_cb(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    event_base_loopexit(arg, NULL);
}

static void sim_flush_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sim *s = arg;
    (void)fd;
    (void)what;
    if (s->log != NULL && s->log_dirty) {
        fflush(s->log);
        s->log_dirty = false;
    }
}

/* ---------- options and main ---------- */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: extend-sim --port P [--address 127.0.0.1]\n"
            "                  [--cert server.pem --key server.key | --plain]\n"
            "                  [--token TOKEN] [--log FILE] [--idle-close-ms N] [--latency-ms N]\n"
            "                  [--rate-limit N]\n"
            "A stand-in for the Extend API's DELETE endpoints, with fault injection on\n"
            "POST /_sim/faults and inspection on GET /_sim/requests and /_sim/stats.\n");
}

int main(int argc, char **argv)
{
    struct sim *s = calloc(1, sizeof(*s));
    const char *address = "127.0.0.1", *cert = NULL, *key = NULL, *log_path = NULL;
    int64_t port = -1, idle_ms = 0, latency = 0, rate = 0;
    bool plain = false;
    struct evhttp_bound_socket *bound;
    struct sockaddr_storage ss;
    socklen_t sslen = sizeof(ss);
    struct event *sigterm = NULL, *sigint = NULL, *flush = NULL;
    char host[INET6_ADDRSTRLEN] = "";
    int rc = 1, bound_port = 0, one = 1;

    if (s == NULL)
        return 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            rc = 0;
            goto out;
        } else if (strcmp(a, "--plain") == 0) {
            plain = true;
            continue;
        }
        if (v == NULL)
            goto bad;
        i++;
        if (strcmp(a, "--port") == 0) {
            if (sim_parse_int(v, 0, 65535, &port) < 0)
                goto bad;
        } else if (strcmp(a, "--address") == 0) {
            address = v;
        } else if (strcmp(a, "--cert") == 0) {
            cert = v;
        } else if (strcmp(a, "--key") == 0) {
            key = v;
        } else if (strcmp(a, "--token") == 0) {
            s->token = strdup(v);
        } else if (strcmp(a, "--log") == 0) {
            log_path = v;
        } else if (strcmp(a, "--idle-close-ms") == 0) {
            if (sim_parse_int(v, 0, 3600000, &idle_ms) < 0)
                goto bad;
        } else if (strcmp(a, "--rate-limit") == 0) {
            if (sim_parse_int(v, 0, 1000000, &rate) < 0)
                goto bad;
        } else if (strcmp(a, "--latency-ms") == 0) {
            if (sim_parse_int(v, 0, SIM_MAX_DELAY_MS, &latency) < 0)
                goto bad;
        } else {
            goto bad;
        }
    }
    if (port < 0 || (plain && (cert || key)) || (!plain && (!cert || !key)))
        goto bad;
    s->latency_ms = (int)latency;
    s->rate_limit = (double)rate;
    if (RAND_bytes((unsigned char *)&s->boot_tag, sizeof(s->boot_tag)) != 1)
        s->boot_tag = (uint32_t)time(NULL);
    signal(SIGPIPE, SIG_IGN);

    if (log_path != NULL && (s->log = fopen(log_path, "a")) == NULL) {
        fprintf(stderr, "extend-sim: %s: %s\n", log_path, strerror(errno));
        goto out;
    }
    if (!plain && (s->ssl_ctx = sim_tls_open(cert, key)) == NULL) {
        fprintf(stderr, "extend-sim: cannot load %s / %s\n", cert, key);
        goto out;
    }
    if ((s->base = event_base_new()) == NULL || (s->http = evhttp_new(s->base)) == NULL)
        goto out;
    evhttp_set_gencb(s->http, sim_handle, s);
    evhttp_set_bevcb(s->http, sim_bevcb, s);
    evhttp_set_max_body_size(s->http, SIM_MAX_BODY);
    evhttp_set_max_headers_size(s->http, 65536);
    evhttp_set_allowed_methods(s->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_DELETE |
                                            EVHTTP_REQ_PUT | EVHTTP_REQ_HEAD);
    if (idle_ms > 0) {
        /* evhttp's read timeout runs only while it waits for the next
         * request on a kept-alive connection (reading is off while an answer
         * is pending), so it is exactly an idle close: the server hangs up
         * and a client that reuses the connection at that moment meets the
         * classic stale keep-alive race. */
        struct timeval tv = {idle_ms / 1000, (idle_ms % 1000) * 1000};
        evhttp_set_timeout_tv(s->http, &tv);
    }
    if ((bound = evhttp_bind_socket_with_handle(s->http, address, (uint16_t)port)) == NULL) {
        fprintf(stderr, "extend-sim: cannot listen on %s:%d\n", address, (int)port);
        goto out;
    }
    /* Accepted sockets inherit TCP_NODELAY from the listener (Linux). Without
     * it an answer written in two pieces waits for the client's delayed ACK:
     * 40 ms per request on a kept-alive connection. */
    setsockopt(evhttp_bound_socket_get_fd(bound), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (getsockname(evhttp_bound_socket_get_fd(bound), (struct sockaddr *)&ss, &sslen) == 0) {
        if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
            inet_ntop(AF_INET6, &a6->sin6_addr, host, sizeof(host));
            bound_port = ntohs(a6->sin6_port);
        } else {
            struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
            inet_ntop(AF_INET, &a4->sin_addr, host, sizeof(host));
            bound_port = ntohs(a4->sin_port);
        }
    }
    sigterm = evsignal_new(s->base, SIGTERM, sim_signal_cb, s->base);
    sigint = evsignal_new(s->base, SIGINT, sim_signal_cb, s->base);
    flush = event_new(s->base, -1, EV_PERSIST, sim_flush_cb, s);
    if (!sigterm || !sigint || !flush || evsignal_add(sigterm, NULL) || evsignal_add(sigint, NULL))
        goto out;
    {
        struct timeval tv = {0, 200000};
        event_add(flush, &tv);
    }
    printf("extend-sim listening on %s://%s%s%s:%d\n", plain ? "http" : "https",
           strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "", bound_port);
    fflush(stdout);

    if (event_base_dispatch(s->base) < 0)
        goto out;
    rc = 0;
out:
    /* The head is unlinked here rather than left to sim_pending_free, so
     * the loop visibly moves on whatever the list holds. */
    for (struct pending *p; (p = s->pending) != NULL;) {
        s->pending = p->next;
        sim_pending_free(p);
    }
    if (s->http)
        evhttp_free(s->http);
    if (sigterm)
        event_free(sigterm);
    if (sigint)
        event_free(sigint);
    if (flush)
        event_free(flush);
    if (s->base)
        event_base_free(s->base);
    SSL_CTX_free(s->ssl_ctx);
    if (s->log)
        fclose(s->log);
    sim_log_clear(s);
    sim_deleted_clear(s);
    if (s->token) {
        OPENSSL_cleanse(s->token, strlen(s->token));
        free(s->token);
    }
    free(s);
    return rc;
bad:
    usage(stderr);
    rc = 2;
    goto out;
}
