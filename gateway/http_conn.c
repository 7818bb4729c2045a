/*
 * http_conn.c: a bufferevent filter in front of evhttp on every accepted
 * connection (see http_conn.h).
 *
 *   conn_in      raw bytes -> framing check -> evhttp, one request at a time
 *   conn_out     evhttp's answers -> socket; wakes the next request
 *   refuse       our own JSON answer written under evhttp, then close
 *   admission    the connection cap: shed the slowest unfinished request
 *   accept_error EMFILE/ENFILE: stop accepting for a while, do not spin
 *
 * The filter holds a request head until it is complete and checked, then
 * hands evhttp the head and the body (chunk lines only once checked), and
 * nothing more until evhttp has answered: evhttp never sees a byte the
 * check has not passed, and a refusal never interleaves with an answer.
 * Everything refused here is answered by us, in JSON, with
 * Connection: close; nothing after it on that connection is read.
 *
 * libevent frees a connection's bufferevent in two steps: evhttp's free
 * clears its callbacks at once, the memory (and our context) goes in a
 * finalizer later. conn_alive() tells the two apart for our own timers.
 */
#include "http_conn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "http_reply.h"
#include "http_route.h"
#include "log.h"
#include "metrics.h"
#include "tls.h"
#include "util.h"

enum conn_state {
    C_IDLE,    /* between requests, nothing read */
    C_HEAD,    /* reading a head */
    C_BODY,    /* head passed to evhttp, body on its way */
    C_AWAIT,   /* whole request with evhttp; later bytes wait */
    C_REFUSE,  /* accepted over the cap: to be refused once set up */
    C_CLOSING, /* our refusal is written; waiting for it to drain */
};

struct conn {
    TAILQ_ENTRY(conn) link;
    struct http_conn_listener *l;
    struct bufferevent *bev;   /* the filter, evhttp's */
    struct bufferevent *under; /* socket or TLS */
    enum conn_state state;
    char *head;
    size_t head_len, head_cap;
    struct hf_head hp;
    struct hf_chunked cp;
    uint64_t body_left;
    enum metrics_route route;
    int64_t since_ms;       /* start of the request (C_HEAD, C_BODY) or of idleness */
    struct event *timer;    /* request deadline; then the end of a refusal */
    struct event *kick;     /* resumes reading once evhttp has answered */
    struct event *flush;    /* moves evhttp's answer on (see on_out_added) */
    struct event *writable; /* plain TCP: the socket can take more */
    struct evbuffer_cb_entry *out_added;
    struct evbuffer_cb_entry *drain;
    int linger_ms;
};

struct http_conn_listener {
    struct event_base *base;
    struct evhttp *http;
    struct evconnlistener *lev;
    struct event *backoff;
    int backoff_ms;
    int paused; /* at the cap: not accepting until a connection closes */
    struct http_conn_options o;
    char name[16];
    int n_conns;
    TAILQ_HEAD(, conn) conns;
    struct log_limiter log; /* refusals and accept errors: a flood logs a few */
};

/* libevent calls an accept error callback with the argument evhttp gave
 * its listener (the struct evhttp), and offers no way to attach ours: the
 * only way back from an evconnlistener to its http_conn_listener is a
 * process-wide table. Written only by attach and free, on the loop. */
#define MAX_LISTENERS 4
static struct http_conn_listener *listeners[MAX_LISTENERS];

/* A refusal that lingers waits this long for the client to read it and
 * close; a shed connection does not wait. */
#define LINGER_MS 1000
#define DRAIN_MAX_MS 5000
/* Chunked bodies are checked in pieces of at most this. */
#define CHUNK_PEEK 16384

static int conn_alive(const struct conn *c)
{
    bufferevent_event_cb ecb = NULL;

    bufferevent_getcb(c->bev, NULL, NULL, &ecb, NULL);
    return ecb != NULL;
}

static void conn_arm(struct conn *c, int ms)
{
    struct timeval tv = {ms / 1000, (suseconds_t)(ms % 1000) * 1000};

    evtimer_add(c->timer, &tv);
}

static void head_reset(struct conn *c)
{
    http_framing_head_init(&c->hp);
    c->head_len = 0;
    /* An idle keep-alive connection should not keep a large buffer. */
    if (c->head_cap > 4096) {
        free(c->head);
        c->head = NULL;
        c->head_cap = 0;
    }
}

static const char *reason_phrase(int status)
{
    switch (status) {
    case 400:
        return "Bad Request";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 417:
        return "Expectation Failed";
    case 431:
        return "Request Header Fields Too Large";
    default:
        return "Service Unavailable";
    }
}

/* The metrics route of the request being read, from its target. */
static enum metrics_route conn_route(struct conn *c)
{
    char path[256];
    size_t n = c->hp.target_len;
    const char *q;

    if (c->state != C_HEAD || n == 0 || c->hp.target_off + n > c->head_len)
        return c->state == C_BODY ? c->route : MR_OTHER;
    if (n >= sizeof(path))
        n = sizeof(path) - 1;
    memcpy(path, c->head + c->hp.target_off, n);
    path[n] = '\0';
    if ((q = strchr(path, '?')) != NULL)
        path[q - path] = '\0';
    return http_route_label(c->l->o.routes, c->l->o.n_routes, path);
}

static void on_drain(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    struct conn *c = arg;

    if (info->n_deleted == 0 || evbuffer_get_length(buf) > 0 || !conn_alive(c))
        return;
    evbuffer_cb_clear_flags(buf, c->drain, EVBUFFER_CB_ENABLED);
    /* The answer is with the kernel: FIN after it, then give the client a
     * moment to read it before the close (a close with unread input
     * would send RST, which can destroy the answer in flight). */
    shutdown(bufferevent_getfd(c->under), SHUT_WR);
    conn_arm(c, c->linger_ms);
}

/* Answers status/code in JSON under evhttp and closes the connection. */
static void refuse(struct conn *c, int status, const char *code, const char *why, int linger_ms)
{
    struct evbuffer *out = bufferevent_get_output(c->under);
    char rid[HTTP_REQUEST_ID_MAX], body[1600];
    enum metrics_route route = conn_route(c);
    int n;

    http_reply_new_id(rid, sizeof(rid));
    n = http_reply_error_body(body, sizeof(body), code, why, rid);
    evbuffer_add_printf(out,
                        "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                        "Cache-Control: no-store\r\nx-request-id: %s\r\nConnection: close\r\n"
                        "Content-Length: %d\r\n\r\n%s\n",
                        status, reason_phrase(status), rid, n + 1, body);
    metrics_request(route, status);
    metrics_rejection(code);
    log_limited(&c->l->log, LOG_INFO, rid, "%d %s: %s (%s listener)", status, code, why,
                c->l->name);
    c->state = C_CLOSING;
    c->linger_ms = linger_ms;
    c->drain = evbuffer_add_cb(out, on_drain, c);
    /* Bounds the wait for a client that reads nothing (or, over TLS,
     * never finishes its handshake). */
    conn_arm(c, DRAIN_MAX_MS);
}

static void refuse_framing(struct conn *c, enum hf_error e, const char *why)
{
    refuse(c, http_framing_status(e), http_framing_code(e), why ? why : "malformed request",
           LINGER_MS);
}

static void to_await(struct conn *c)
{
    c->state = C_AWAIT;
    evtimer_del(c->timer);
}

static enum bufferevent_filter_result head_step(struct conn *c, struct evbuffer *src,
                                                struct evbuffer *dst)
{
    const struct hf_limits *lim = &c->l->o.limits;
    size_t avail = evbuffer_get_length(src), room, n, before;
    int rc;

    if (avail == 0)
        return BEV_NEED_MORE;
    if (c->state == C_IDLE) {
        c->state = C_HEAD;
        c->since_ms = util_mono_ms();
        conn_arm(c, c->l->o.request_timeout_seconds * 1000);
    }
    /* One byte past the limit is enough for the parser to refuse. */
    room = lim->max_head + 1 - c->head_len;
    n = avail < room ? avail : room;
    if (c->head_len + n > c->head_cap) {
        size_t cap = c->head_cap ? c->head_cap : 1024;
        char *p;

        while (cap < c->head_len + n)
            cap *= 2;
        if (cap > lim->max_head + 1)
            cap = lim->max_head + 1;
        p = realloc(c->head, cap);
        if (p == NULL) {
            evbuffer_drain(src, avail);
            refuse(c, 503, "too_many_connections", "out of memory", 0);
            return BEV_NEED_MORE;
        }
        c->head = p;
        c->head_cap = cap;
    }
    evbuffer_copyout(src, c->head + c->head_len, n);
    before = c->head_len;
    c->head_len += n;
    rc = http_framing_head_feed(&c->hp, c->head, c->head_len, lim);
    if (rc == HF_ERROR) {
        evbuffer_drain(src, avail);
        refuse_framing(c, c->hp.error, c->hp.why);
        return BEV_NEED_MORE;
    }
    if (rc == HF_NEED_MORE) {
        evbuffer_drain(src, n);
        return BEV_OK; /* progress: evhttp's idle time-out starts again */
    }
    /* The head ends inside what was just copied; the rest stays in src. */
    evbuffer_drain(src, c->hp.pos - before);
    c->route = conn_route(c);
    evbuffer_add(dst, c->head + c->hp.skip, c->hp.head_len);
    switch (c->hp.body) {
    case HF_BODY_LENGTH:
        c->state = C_BODY;
        c->body_left = c->hp.content_length;
        break;
    case HF_BODY_CHUNKED:
        c->state = C_BODY;
        c->body_left = 0;
        http_framing_chunked_init(&c->cp);
        break;
    default:
        to_await(c);
        break;
    }
    return BEV_OK;
}

static enum bufferevent_filter_result body_step(struct conn *c, struct evbuffer *src,
                                                struct evbuffer *dst)
{
    size_t avail = evbuffer_get_length(src), used = 0, take;
    const char *p;
    int rc;

    if (avail == 0)
        return BEV_NEED_MORE;
    if (c->hp.body == HF_BODY_LENGTH) {
        take = (uint64_t)avail < c->body_left ? avail : (size_t)c->body_left;
        evbuffer_remove_buffer(src, dst, take);
        c->body_left -= take;
        if (c->body_left == 0)
            to_await(c);
        return BEV_OK;
    }
    take = avail < CHUNK_PEEK ? avail : CHUNK_PEEK;
    p = (const char *)evbuffer_pullup(src, (ev_ssize_t)take);
    if (p == NULL)
        return BEV_ERROR;
    rc = http_framing_chunked_feed(&c->cp, p, take, &used, &c->l->o.limits);
    if (used > 0)
        evbuffer_remove_buffer(src, dst, used);
    if (rc == HF_ERROR) {
        evbuffer_drain(src, evbuffer_get_length(src));
        refuse_framing(c, c->cp.error, c->cp.why);
        return used > 0 ? BEV_OK : BEV_NEED_MORE;
    }
    if (rc == HF_DONE)
        to_await(c);
    return used > 0 ? BEV_OK : BEV_NEED_MORE;
}

static enum bufferevent_filter_result conn_in(struct evbuffer *src, struct evbuffer *dst,
                                              ev_ssize_t limit, enum bufferevent_flush_mode mode,
                                              void *arg)
{
    struct conn *c = arg;

    (void)limit, (void)mode;
    switch (c->state) {
    case C_IDLE:
    case C_HEAD:
        return head_step(c, src, dst);
    case C_BODY:
        return body_step(c, src, dst);
    case C_AWAIT:
        return BEV_NEED_MORE;
    default:
        /* Refused: nothing more is ever executed; read and forget. */
        evbuffer_drain(src, evbuffer_get_length(src));
        return BEV_NEED_MORE;
    }
}

/* libevent's own error pages are the only HTML the gateway can send; they
 * are counted with the rest (the framing check leaves evhttp nothing to
 * refuse, so this is a backstop). */
static void count_foreign_answer(struct evbuffer *src)
{
    size_t len = evbuffer_get_length(src);
    char head[1024];
    size_t n = len < sizeof(head) - 1 ? len : sizeof(head) - 1;
    int status;

    if (n < 12)
        return;
    evbuffer_copyout(src, head, n);
    head[n] = '\0';
    if (strncmp(head, "HTTP/1.", 7) != 0 || strstr(head, "\r\nContent-Type: text/html") == NULL)
        return;
    status = atoi(head + 9);
    metrics_request(MR_OTHER, status);
    metrics_rejection("http_error");
}

static void on_writable(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;

    (void)fd, (void)what;
    if (conn_alive(c))
        bufferevent_trigger(c->under, EV_WRITE, BEV_TRIG_IGNORE_WATERMARKS);
}

static void want_writable(struct conn *c)
{
    if (c->writable == NULL)
        c->writable = event_new(c->l->base, bufferevent_getfd(c->under), EV_WRITE, on_writable, c);
    if (c->writable != NULL)
        event_add(c->writable, NULL);
}

/* TLS: OpenSSL's bufferevent would only schedule the write; write the
 * records to the socket now (its buffer below is empty, so the order of
 * records is kept). Bytes written, 0 to wait for the socket, or -1 after
 * handing everything to the bufferevent (handshake not done, or an error
 * it will report). */
static int tls_write_now(struct conn *c, struct evbuffer *src, struct evbuffer *dst)
{
    SSL *ssl = bufferevent_openssl_get_ssl(c->under);
    size_t n = evbuffer_get_length(src);
    unsigned char *p;
    int r, e;

    if (ssl == NULL || !SSL_is_init_finished(ssl)) {
        evbuffer_add_buffer(dst, src);
        return -1;
    }
    if (n > 16384)
        n = 16384;
    p = evbuffer_pullup(src, (ev_ssize_t)n);
    if (p == NULL)
        return 0;
    r = SSL_write(ssl, p, (int)n);
    if (r > 0) {
        evbuffer_drain(src, (size_t)r);
        if (evbuffer_get_length(src) > 0)
            want_writable(c);
        return r;
    }
    e = SSL_get_error(ssl, r);
    ERR_clear_error();
    if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
        want_writable(c);
        return 0;
    }
    evbuffer_add_buffer(dst, src);
    return -1;
}

/* evhttp takes an answer as sent once the filter's output is empty, and
 * may close the socket right then (Connection: close): bytes still in a
 * buffer below would be lost. So the filter lets output go only as fast
 * as the socket takes it: on plain TCP written straight to the socket
 * (the rest waits for it to become writable), over TLS as records
 * written at once (tls_write_now). */
static enum bufferevent_filter_result conn_out(struct evbuffer *src, struct evbuffer *dst,
                                               ev_ssize_t limit, enum bufferevent_flush_mode mode,
                                               void *arg)
{
    struct conn *c = arg;
    size_t n = evbuffer_get_length(src);
    int wrote;

    (void)mode, (void)limit;
    if (n == 0 || evbuffer_get_length(dst) > 0)
        return BEV_NEED_MORE;
    count_foreign_answer(src);
    if (c->l->o.tls != NULL) {
        if (tls_write_now(c, src, dst) <= 0)
            return BEV_NEED_MORE;
    } else {
        wrote = evbuffer_write(src, bufferevent_getfd(c->under));
        if (wrote <= 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            /* The peer is gone: let the socket report it. */
            evbuffer_add_buffer(dst, src);
        } else if (evbuffer_get_length(src) > 0) {
            want_writable(c);
            if (c->writable == NULL) /* out of memory: the buffer below will do */
                evbuffer_add_buffer(dst, src);
            if (wrote <= 0)
                return BEV_NEED_MORE;
        }
    }
    /* An answer went out: once evhttp is done with it, the next request
     * may go in. */
    if (c->state == C_AWAIT && evbuffer_get_length(src) == 0) {
        /* A timer, not event_active: it runs after evhttp's deferred
         * write callback has finished with the answer. */
        struct timeval now = {0, 0};

        evtimer_add(c->kick, &now);
    }
    return BEV_OK;
}

/* evhttp adds its answer to the filter's output while writing is still
 * disabled and enables it afterwards; a filter only moves output when
 * data is added or the socket below reports it drained, so an answer on
 * a connection whose socket has nothing pending would sit there. Move it
 * on from the loop, once evhttp's call has returned. */
static void on_out_added(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    struct conn *c = arg;

    (void)buf;
    if (info->n_added > 0)
        event_active(c->flush, EV_TIMEOUT, 1);
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;

    (void)fd, (void)what;
    if (!conn_alive(c) || evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
        return;
    bufferevent_trigger(c->under, EV_WRITE, BEV_TRIG_IGNORE_WATERMARKS);
    /* c may be gone here (the answer was the last on the connection). */
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    bufferevent_data_cb rcb = NULL;
    struct timeval later = {0, 1000};

    (void)fd, (void)what;
    if (!conn_alive(c))
        return;
    if (c->state == C_REFUSE) {
        refuse(c, 503, "too_many_connections", "the gateway is at its connection limit", 0);
        return;
    }
    if (c->state != C_AWAIT)
        return;
    bufferevent_getcb(c->bev, &rcb, NULL, NULL, NULL);
    if (rcb == NULL) {
        /* evhttp is still writing the answer. */
        evtimer_add(c->kick, &later);
        return;
    }
    if (!(bufferevent_get_enabled(c->bev) & EV_READ))
        return; /* still working on it; its answer kicks again */
    c->state = C_IDLE;
    c->since_ms = util_mono_ms();
    head_reset(c);
    if (evbuffer_get_length(bufferevent_get_input(c->under)) > 0)
        bufferevent_trigger(c->under, EV_READ, BEV_TRIG_IGNORE_WATERMARKS);
    /* c may be gone here (a pipelined request answered and closed). */
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;

    (void)fd, (void)what;
    if (!conn_alive(c))
        return;
    if (c->state == C_CLOSING) {
        /* As if the client had closed: evhttp frees the connection. */
        bufferevent_trigger_event(c->bev, BEV_EVENT_EOF | BEV_EVENT_READING, 0);
        return;
    }
    if (c->state == C_HEAD || c->state == C_BODY)
        refuse(c, 408, "request_timeout",
               "the request was not received within limits.request_timeout_seconds", LINGER_MS);
}

static void conn_free(void *arg)
{
    struct conn *c = arg;

    if (c->drain != NULL)
        evbuffer_remove_cb_entry(bufferevent_get_output(c->under), c->drain);
    if (c->out_added != NULL)
        evbuffer_remove_cb_entry(bufferevent_get_output(c->bev), c->out_added);
    if (c->flush != NULL)
        event_free(c->flush);
    if (c->writable != NULL)
        event_free(c->writable);
    if (c->timer != NULL)
        event_free(c->timer);
    if (c->kick != NULL)
        event_free(c->kick);
    if (c->l != NULL) {
        struct http_conn_listener *l = c->l;

        TAILQ_REMOVE(&l->conns, c, link);
        l->n_conns--;
        if (l->paused && l->n_conns <= l->o.max_connections && l->lev != NULL &&
            !evtimer_pending(l->backoff, NULL)) {
            l->paused = 0;
            evconnlistener_enable(l->lev);
        }
    }
    free(c->head);
    free(c);
}

/* At the cap: who goes. A refusal already on its way out first, then the
 * unfinished request that started longest ago (a slow client holds a
 * descriptor the longest for the least), then the connection idle
 * longest. Connections whose answer the gateway still owes stay. */
static struct conn *pick_victim(struct http_conn_listener *l, const struct conn *except)
{
    struct conn *c, *closing = NULL, *slow = NULL, *idle = NULL;

    TAILQ_FOREACH(c, &l->conns, link)
    {
        if (c == except || !conn_alive(c))
            continue;
        if (c->state == C_CLOSING || c->state == C_REFUSE) {
            if (closing == NULL)
                closing = c;
        } else if (c->state == C_HEAD || c->state == C_BODY) {
            if (slow == NULL || c->since_ms < slow->since_ms)
                slow = c;
        } else if (c->state == C_IDLE) {
            if (idle == NULL || c->since_ms < idle->since_ms)
                idle = c;
        }
    }
    return closing ? closing : slow ? slow : idle;
}

static void shed(struct conn *v)
{
    /* Closing already, or nothing was asked on it (idle): a plain close is
     * the HTTP way. */
    if (v->state == C_CLOSING || v->state == C_REFUSE || v->state == C_IDLE) {
        v->state = C_CLOSING;
        conn_arm(v, 0);
    } else {
        refuse(v, 503, "too_many_connections",
               "the gateway is at its connection limit and this request was the slowest", 0);
    }
}

static int closing_exists(struct http_conn_listener *l)
{
    struct conn *c;

    TAILQ_FOREACH(c, &l->conns, link)
    {
        if (c->state == C_CLOSING || c->state == C_REFUSE)
            return 1;
    }
    return 0;
}

/* One connection over the cap at most: its arrival sheds one, and the
 * listener pauses until that one's descriptor is closed (conn_free), so
 * a burst of connects cannot run the process out of descriptors. */
static void admit(struct http_conn_listener *l, struct conn *c)
{
    struct conn *v;

    if (l->n_conns <= l->o.max_connections)
        return;
    if (l->lev != NULL) {
        evconnlistener_disable(l->lev);
        l->paused = 1;
    }
    if (closing_exists(l))
        return; /* one is already on its way out */
    v = pick_victim(l, c);
    if (v != NULL) {
        shed(v);
        return;
    }
    c->state = C_REFUSE;
    /* The socket is given to the bufferevent only after this hook
     * returns; answer from the loop. */
    event_active(c->kick, EV_TIMEOUT, 1);
}

static struct bufferevent *conn_bevcb(struct event_base *base, void *arg)
{
    struct http_conn_listener *l = arg;
    struct bufferevent *under, *bev;
    struct conn *c;

    l->backoff_ms = 0; /* an accept worked */
    under = l->o.tls != NULL ? tls_server_bevcb(base, l->o.tls)
                             : bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (under == NULL)
        return NULL;
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        bufferevent_free(under);
        return NULL;
    }
    /* Deferred callbacks: evhttp may free the connection from its write
     * callback, and a filter that called it synchronously would re-arm
     * its write time-out on the freed bufferevent afterwards (libevent
     * 2.1 finalizes only one of a bufferevent's events). */
    bev = bufferevent_filter_new(under, conn_in, conn_out,
                                 BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS, conn_free, c);
    if (bev == NULL) {
        bufferevent_free(under);
        free(c);
        return NULL;
    }
    c->bev = bev;
    c->under = under;
    c->l = l;
    c->state = C_IDLE;
    c->since_ms = util_mono_ms();
    http_framing_head_init(&c->hp);
    TAILQ_INSERT_TAIL(&l->conns, c, link);
    l->n_conns++;
    c->timer = evtimer_new(base, on_timer, c);
    c->kick = evtimer_new(base, on_kick, c);
    c->flush = evtimer_new(base, on_flush, c);
    c->out_added = evbuffer_add_cb(bufferevent_get_output(bev), on_out_added, c);
    if (c->timer == NULL || c->kick == NULL || c->flush == NULL || c->out_added == NULL) {
        bufferevent_free(bev); /* conn_free runs from libevent's finalizer */
        return NULL;
    }
    admit(l, c);
    return bev;
}

static void on_backoff(evutil_socket_t fd, short what, void *arg)
{
    struct http_conn_listener *l = arg;

    (void)fd, (void)what;
    if (l->lev != NULL && l->n_conns <= l->o.max_connections) {
        l->paused = 0;
        evconnlistener_enable(l->lev);
    } else {
        l->paused = 1; /* conn_free enables it */
    }
}

static void accept_error(struct evconnlistener *lev, void *arg)
{
    struct http_conn_listener *l = NULL;
    int err = EVUTIL_SOCKET_ERROR();
    struct timeval tv;
    struct conn *v;

    (void)arg;
    for (int i = 0; i < MAX_LISTENERS; i++) {
        if (listeners[i] != NULL && listeners[i]->lev == lev)
            l = listeners[i];
    }
    if (l == NULL)
        return;
    if (err != EMFILE && err != ENFILE && err != ENOBUFS && err != ENOMEM) {
        log_limited(&l->log, LOG_WARN, NULL, "%s listener: accept: %s", l->name, strerror(err));
        return;
    }
    /* The pending connection stays in the kernel's queue and the socket
     * stays readable: accepting again at once would spin. Wait, and free
     * a descriptor meanwhile by shedding one of ours. */
    evconnlistener_disable(lev);
    l->backoff_ms = l->backoff_ms == 0 ? 50 : l->backoff_ms * 2 > 1000 ? 1000 : l->backoff_ms * 2;
    tv.tv_sec = l->backoff_ms / 1000;
    tv.tv_usec = (suseconds_t)(l->backoff_ms % 1000) * 1000;
    evtimer_add(l->backoff, &tv);
    log_limited(&l->log, LOG_WARN, NULL,
                "%s listener: accept: %s; not accepting for %d ms (%d connections open)", l->name,
                strerror(err), l->backoff_ms, l->n_conns);
    if ((v = pick_victim(l, NULL)) != NULL)
        shed(v);
}

int http_conn_attach(struct http_conn_listener **out, struct event_base *base, struct evhttp *http,
                     struct evhttp_bound_socket *bound, const struct http_conn_options *o)
{
    struct http_conn_listener *l = calloc(1, sizeof(*l));
    int slot = -1;

    *out = NULL;
    for (int i = 0; i < MAX_LISTENERS; i++) {
        if (listeners[i] == NULL) {
            slot = i;
            break;
        }
    }
    if (l == NULL || slot < 0)
        goto fail;
    l->base = base;
    l->http = http;
    l->o = *o;
    l->log = (struct log_limiter){1000, 10, 0, 0, 0};
    snprintf(l->name, sizeof(l->name), "%s", o->name);
    l->o.name = l->name;
    TAILQ_INIT(&l->conns);
    l->backoff = evtimer_new(base, on_backoff, l);
    if (l->backoff == NULL)
        goto fail;
    l->lev = evhttp_bound_socket_get_listener(bound);
    evconnlistener_set_error_cb(l->lev, accept_error);
    evhttp_set_bevcb(http, conn_bevcb, l);
    listeners[slot] = l;
    *out = l;
    return 0;

fail:
    free(l);
    return -1;
}

void http_conn_stop(struct http_conn_listener *l)
{
    if (l == NULL)
        return;
    if (l->backoff != NULL)
        event_free(l->backoff);
    l->backoff = NULL;
    l->lev = NULL;
}

void http_conn_free(struct http_conn_listener *l)
{
    struct conn *c;

    if (l == NULL)
        return;
    http_conn_stop(l);
    /* Connections still listed were never finalized by libevent: unhook
     * them so nothing points here any more. */
    while ((c = TAILQ_FIRST(&l->conns)) != NULL) {
        TAILQ_REMOVE(&l->conns, c, link);
        c->l = NULL;
    }
    for (int i = 0; i < MAX_LISTENERS; i++) {
        if (listeners[i] == l)
            listeners[i] = NULL;
    }
    free(l);
}
