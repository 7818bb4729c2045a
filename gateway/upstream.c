/*
 * upstream.c: DELETE requests to Extend through libcurl's multi-socket
 * interface, driven by the gateway's own libevent loop.
 *
 *   upstream_global_init   curl_global_init, once, before threads start
 *   upstream_open          checks base_url, loads the CA bundle, one multi handle
 *   upstream_set_token     a new shared header list; the old one is wiped once unused
 *   upstream_delete        one easy handle per DELETE
 *   upstream_close         aborts without calling back, frees everything
 *
 * The glue is the classic hiperfifo pattern:
 *   on_curl_socket  CURLMOPT_SOCKETFUNCTION: one persistent event per socket
 *   on_curl_timer   CURLMOPT_TIMERFUNCTION: arms the single evtimer, nothing
 *                   more (libcurl must not be re-entered from its callbacks)
 *   on_socket_event / on_timer_event: curl_multi_socket_action, then
 *   drain_done      curl_multi_info_read -> upstream_result -> the caller
 *
 * Callbacks reach the caller only from drain_done or from a deferred
 * failure event, both on the loop, never from inside upstream_delete.
 *
 * Connection reuse: libcurl keeps the connections in the multi handle's
 * cache. A connection the server closed while idle is noticed before reuse;
 * one that dies after the request went out with no byte of answer is
 * retried by libcurl on a fresh connection (Curl_retry_request, up to 5
 * times), which is safe for a DELETE without a body. tests/unit/
 * test_upstream.c checks both.
 *
 * Proxies: nothing here sets CURLOPT_PROXY or CURLOPT_NOPROXY, so libcurl
 * reads HTTPS_PROXY / https_proxy / NO_PROXY from the environment as usual;
 * the TLS session to Extend is still end to end through a CONNECT tunnel.
 */
#include "upstream.h"
#include "base_url.h"
#include "log.h"
#include "secret.h"
#include "util.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdbool.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <jansson.h>
#include <openssl/crypto.h>

#define UP_BODY_MAX 8192        /* error bodies kept for parsing */
#define UP_TOKEN_MAX 4096       /* longer is not an API key */
#define UP_HEADER_VALUE_MAX 256 /* x-extend-api-version, workspace id */
#define UP_BASE_URL_MAX 2048
#define UP_SYSTEM_CA_DIR "/etc/ssl/certs" /* Debian's hashed CA directory */

/* The header list every request carries, shared and reference counted so
 * upstream_set_token can swap it while older requests still use theirs. It
 * holds the token, so it is wiped before it is freed. */
struct up_headers {
    struct curl_slist *list;
    int refs;
};

struct up_sock {
    struct upstream *u;
    struct event *ev;
    struct up_sock *prev, *next;
};

struct up_req {
    struct upstream *u;
    CURL *easy;
    struct up_headers *hdrs;
    upstream_done_cb cb;
    void *arg;
    struct event *defer; /* non-NULL: failed before libcurl ran it */
    int64_t started_ms;
    struct upstream_result res;
    char errbuf[CURL_ERROR_SIZE];
    char body[UP_BODY_MAX + 1];
    size_t body_len;
    struct up_req *prev, *next;
};

struct upstream {
    struct event_base *base;
    CURLM *multi;
    struct event *timer;
    char *base_url; /* without trailing '/' */
    const char *protocols;
    char *ca_file; /* extend.ca_file, trusted beside the system's CAs; NULL = none */
    char *api_version;
    char *workspace_id;
    long timeout_ms;
    long connect_timeout_ms;
    struct up_headers *hdrs;
    struct up_req *reqs;
    struct up_sock *socks;
    CURL **idle; /* finished easy handles, reset, for the next requests */
    int n_idle, cap_idle;
    int in_flight;
    int busy;    /* > 0 while a caller's callback runs */
    int closing; /* upstream_close ran inside a callback: free on the way out */
};

static int up_global_done;

int upstream_global_init(void)
{
    const curl_version_info_data *v;

    if (up_global_done)
        return 0;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return -1;
    /* CURLOPT_PROTOCOLS_STR needs 7.85; CAINFO_BLOB 7.77. */
    v = curl_version_info(CURLVERSION_NOW);
    if (v == NULL || v->version_num < 0x075500 || !(v->features & CURL_VERSION_SSL)) {
        log_error(NULL, "libcurl %s is too old or has no TLS: 7.85 or later is needed",
                  v ? v->version : "?");
        return -1;
    }
    up_global_done = 1;
    return 0;
}

/* ---- small helpers ------------------------------------------------------ */

static void headers_unref(struct up_headers *h)
{
    if (h == NULL || --h->refs > 0)
        return;
    for (struct curl_slist *s = h->list; s != NULL; s = s->next)
        secret_cleanse(s->data, strlen(s->data));
    curl_slist_free_all(h->list);
    free(h);
}

/* Visible ASCII only: a value must never smuggle a CR/LF into a header. */
static int header_value_ok(const unsigned char *s, size_t len, size_t max)
{
    if (len == 0 || len > max)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (s[i] < 0x21 || s[i] > 0x7e)
            return 0;
    return 1;
}

static int append_header(struct curl_slist **list, const char *name, const char *value)
{
    char line[UP_HEADER_VALUE_MAX + 64];
    struct curl_slist *n;

    if ((size_t)snprintf(line, sizeof(line), "%s: %s", name, value) >= sizeof(line))
        return -1;
    n = curl_slist_append(*list, line);
    if (n == NULL)
        return -1;
    *list = n;
    return 0;
}

static struct up_headers *headers_build(struct upstream *u, const struct secret *token)
{
    struct up_headers *h = NULL;
    char *auth = NULL;
    size_t authlen = 0;
    struct curl_slist *n;

    if (token == NULL || token->value == NULL ||
        !header_value_ok(token->value, token->len, UP_TOKEN_MAX))
        goto fail;
    h = calloc(1, sizeof(*h));
    authlen = sizeof("Authorization: Bearer ") + token->len;
    auth = malloc(authlen);
    if (h == NULL || auth == NULL)
        goto fail;
    h->refs = 1;
    snprintf(auth, authlen, "Authorization: Bearer %s", (const char *)token->value);
    n = curl_slist_append(NULL, auth);
    if (n == NULL)
        goto fail;
    h->list = n;
    if (append_header(&h->list, "x-extend-api-version", u->api_version) != 0 ||
        (u->workspace_id != NULL &&
         append_header(&h->list, "x-extend-workspace-id", u->workspace_id) != 0) ||
        append_header(&h->list, "Accept", "application/json") != 0 ||
        append_header(&h->list, "User-Agent", "deletion-gateway/" DG_VERSION) != 0)
        goto fail;
    secret_cleanse(auth, authlen);
    free(auth);
    return h;
fail:
    if (auth != NULL) {
        secret_cleanse(auth, authlen);
        free(auth);
    }
    if (h != NULL) {
        h->refs = 1;
        headers_unref(h);
    }
    return NULL;
}

/*
 * extend.ca_file adds to the system's trust, it does not replace it: it
 * becomes CURLOPT_CAINFO, and the system's hashed certificate directory
 * becomes CURLOPT_CAPATH, from which OpenSSL loads a CA only when a chain
 * needs it. libcurl caches the store built from these files across
 * connections; a blob holding the whole system bundle would be parsed
 * again for every new TLS connection.
 */
static int set_ca(struct upstream *u, const char *ca_file, char *err, size_t errlen)
{
    FILE *f = fopen(ca_file, "r");
    char line[256];
    int pem = 0;

    if (f == NULL) {
        snprintf(err, errlen, "extend.ca_file: cannot read %s", ca_file);
        return -1;
    }
    while (!pem && fgets(line, sizeof(line), f) != NULL)
        pem = strncmp(line, "-----BEGIN CERTIFICATE-----", 27) == 0;
    fclose(f);
    if (!pem) {
        snprintf(err, errlen, "extend.ca_file: %s holds no PEM certificate", ca_file);
        return -1;
    }
    if ((u->ca_file = strdup(ca_file)) == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

/* The same rule as config validation (base_url.c): a config that `check`
 * passes opens here, and a struct filled by hand meets the same checks. */
static int check_base_url(struct upstream *u, const char *url, char *err, size_t errlen)
{
    const char *why = "not a valid URL";
    size_t keep;
    bool https;

    if (url == NULL || strlen(url) > UP_BASE_URL_MAX ||
        base_url_check(url, &https, &keep, &why) != 0) {
        snprintf(err, errlen, "extend.base_url: %s", why);
        return -1;
    }
    u->protocols = https ? "https" : "http";
    u->base_url = strndup(url, keep);
    if (u->base_url == NULL) {
        snprintf(err, errlen, "extend.base_url: out of memory");
        return -1;
    }
    return 0;
}

/* Stable names the dispatcher, metrics and the audit log rely on. */
static const char *transport_name(CURLcode rc)
{
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
        return "timeout";
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return "connect_failed";
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CLIENTCERT:
        return "tls_failed";
    case CURLE_GOT_NOTHING:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return "connection_closed";
    default:
        return "other";
    }
}

/* Bounded copy that keeps a value printable: header values and error
 * messages end up in logs and the audit trail. */
static void copy_printable(char *out, size_t outlen, const char *in, size_t inlen)
{
    size_t n = inlen < outlen - 1 ? inlen : outlen - 1;

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)in[i];
        out[i] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    out[n] = '\0';
}

/* ---- libcurl callbacks --------------------------------------------------- */

void upstream_parse_header(const char *buf, size_t len, struct upstream_result *res)
{
    size_t nlen, vlen;
    const char *colon, *v;

    /* A new status line starts a new header block (after a 1xx, or a
     * retried request): forget what the previous one said. */
    if (len >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
        res->request_id[0] = '\0';
        res->retry_after[0] = '\0';
        res->ratelimit_reset[0] = '\0';
        return;
    }
    colon = memchr(buf, ':', len);
    if (colon == NULL)
        return;
    nlen = (size_t)(colon - buf);
    v = colon + 1;
    vlen = len - nlen - 1;
    while (vlen > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        vlen--;
    }
    while (vlen > 0 && isspace((unsigned char)v[vlen - 1]))
        vlen--;
#define UP_IS(name) (nlen == sizeof(name) - 1 && strncasecmp(buf, name, nlen) == 0)
    if (UP_IS("x-extend-request-id"))
        copy_printable(res->request_id, sizeof(res->request_id), v, vlen);
    else if (UP_IS("retry-after"))
        copy_printable(res->retry_after, sizeof(res->retry_after), v, vlen);
    else if (UP_IS("x-ratelimit-reset"))
        copy_printable(res->ratelimit_reset, sizeof(res->ratelimit_reset), v, vlen);
#undef UP_IS
}

static size_t on_header(char *buf, size_t size, size_t nitems, void *arg)
{
    struct up_req *req = arg;

    upstream_parse_header(buf, size * nitems, &req->res);
    return size * nitems;
}

/* Keeps the first 8 KiB (Extend's error bodies are small) and swallows the
 * rest, so a large answer is never a failed transfer. */
static size_t on_body(char *buf, size_t size, size_t nmemb, void *arg)
{
    struct up_req *req = arg;
    size_t len = size * nmemb, room = UP_BODY_MAX - req->body_len;
    size_t n = len < room ? len : room;

    memcpy(req->body + req->body_len, buf, n);
    req->body_len += n;
    return len;
}

void upstream_parse_error_body(const char *body, size_t len, struct upstream_result *res)
{
    json_t *root, *code, *msg;

    root = json_loadb(body, len, 0, NULL);
    if (root == NULL)
        return; /* plain text from a proxy: no code */
    code = json_object_get(root, "code");
    msg = json_object_get(root, "message");
    if (json_is_string(code))
        copy_printable(res->error_code, sizeof(res->error_code), json_string_value(code),
                       json_string_length(code));
    if (json_is_string(msg))
        copy_printable(res->error_message, sizeof(res->error_message), json_string_value(msg),
                       json_string_length(msg));
    json_decref(root);
}

/* ---- requests ------------------------------------------------------------ */

static void req_unlink(struct up_req *req)
{
    struct upstream *u = req->u;

    if (req->prev != NULL)
        req->prev->next = req->next;
    else
        u->reqs = req->next;
    if (req->next != NULL)
        req->next->prev = req->prev;
    req->prev = req->next = NULL;
    u->in_flight--;
}

/* An easy handle costs more to make than a request costs to send, so
 * finished ones are reset and kept for the next requests. */
static CURL *easy_acquire(struct upstream *u)
{
    return u->n_idle > 0 ? u->idle[--u->n_idle] : curl_easy_init();
}

static void easy_release(struct upstream *u, CURL *easy)
{
    if (u->n_idle < u->cap_idle) {
        curl_easy_reset(easy);
        u->idle[u->n_idle++] = easy;
    } else {
        curl_easy_cleanup(easy);
    }
}

static void req_free(struct up_req *req)
{
    if (req->easy != NULL)
        easy_release(req->u, req->easy);
    if (req->defer != NULL)
        event_free(req->defer);
    headers_unref(req->hdrs);
    free(req);
}

static void destroy(struct upstream *u);

/* Hands the result to the caller, then frees the request. The callback may
 * start new requests or even close u: busy/closing make that safe. */
static void complete(struct up_req *req)
{
    struct upstream *u = req->u;

    req_unlink(req);
    req->res.elapsed_ms = util_mono_ms() - req->started_ms;
    u->busy++;
    req->cb(&req->res, req->arg);
    u->busy--;
    req_free(req);
}

static void fill_result(struct up_req *req, CURLcode rc)
{
    long status = 0;

    curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &status);
    /* A status with a transport error (answer cut short after its headers)
     * keeps the status: for a DELETE, a 2xx header means it happened. */
    req->res.http_status = status >= 100 && status <= 999 ? (int)status : 0;
    if (rc != CURLE_OK) {
        snprintf(req->res.transport_error, sizeof(req->res.transport_error), "%s",
                 transport_name(rc));
        snprintf(req->res.transport_detail, sizeof(req->res.transport_detail), "%s",
                 req->errbuf[0] ? req->errbuf : curl_easy_strerror(rc));
    }
    if (req->res.http_status >= 400)
        upstream_parse_error_body(req->body, req->body_len, &req->res);
}

static void drain_done(struct upstream *u)
{
    CURLMsg *m;
    int left;

    while (!u->closing && (m = curl_multi_info_read(u->multi, &left)) != NULL) {
        struct up_req *req = NULL;
        CURL *easy = m->easy_handle;
        CURLcode rc = m->data.result;

        if (m->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&req);
        curl_multi_remove_handle(u->multi, easy);
        if (req == NULL) {
            curl_easy_cleanup(easy);
            continue;
        }
        fill_result(req, rc);
        complete(req);
    }
    if (u->closing && u->busy == 0)
        destroy(u);
}

static void on_defer(evutil_socket_t fd, short what, void *arg)
{
    struct up_req *req = arg;
    struct upstream *u = req->u;

    (void)fd;
    (void)what;
    complete(req);
    if (u->closing && u->busy == 0)
        destroy(u);
}

/* ---- the libevent <-> libcurl glue -------------------------------------- */

static void on_timer_event(evutil_socket_t fd, short what, void *arg)
{
    struct upstream *u = arg;
    int running;

    (void)fd;
    (void)what;
    curl_multi_socket_action(u->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    drain_done(u);
}

static void on_socket_event(evutil_socket_t fd, short what, void *arg)
{
    struct upstream *u = arg;
    int running, action = 0;

    if (what & EV_READ)
        action |= CURL_CSELECT_IN;
    if (what & EV_WRITE)
        action |= CURL_CSELECT_OUT;
    curl_multi_socket_action(u->multi, fd, action, &running);
    drain_done(u);
}

/* -1 deletes the timer; 0 means "as soon as possible", which an evtimer of
 * zero does on the next loop turn, outside libcurl. */
static int on_curl_timer(CURLM *multi, long timeout_ms, void *arg)
{
    struct upstream *u = arg;
    struct timeval tv;

    (void)multi;
    if (timeout_ms < 0)
        return evtimer_del(u->timer) == 0 ? 0 : -1;
    tv.tv_sec = timeout_ms / 1000;
    tv.tv_usec = (timeout_ms % 1000) * 1000;
    return evtimer_add(u->timer, &tv) == 0 ? 0 : -1;
}

static void sock_free(struct upstream *u, struct up_sock *s)
{
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        u->socks = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    event_free(s->ev);
    free(s);
}

static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *arg, void *sockp)
{
    struct upstream *u = arg;
    struct up_sock *s = sockp;
    short kind = EV_PERSIST;

    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (s != NULL)
            sock_free(u, s);
        return 0;
    }
    if (what & CURL_POLL_IN)
        kind |= EV_READ;
    if (what & CURL_POLL_OUT)
        kind |= EV_WRITE;
    if (s == NULL) {
        s = calloc(1, sizeof(*s));
        if (s == NULL)
            return -1;
        s->u = u;
        s->ev = event_new(u->base, fd, kind, on_socket_event, u);
        if (s->ev == NULL) {
            free(s);
            return -1;
        }
        s->next = u->socks;
        if (u->socks != NULL)
            u->socks->prev = s;
        u->socks = s;
        curl_multi_assign(u->multi, fd, s);
    } else {
        event_del(s->ev);
        if (event_assign(s->ev, u->base, fd, kind, on_socket_event, u) != 0)
            return -1;
    }
    return event_add(s->ev, NULL) == 0 ? 0 : -1;
}

/* ---- the API ------------------------------------------------------------- */

int upstream_open(struct upstream **out, struct event_base *base, const struct account *acct,
                  char *err, size_t errlen)
{
    struct upstream *u = NULL;
    const char *ws;
    int max = acct != NULL && acct->max_in_flight > 0 ? acct->max_in_flight : 1;

    *out = NULL;
    if (base == NULL || acct == NULL) {
        snprintf(err, errlen, "extend: no configuration");
        return -1;
    }
    if (upstream_global_init() != 0) {
        snprintf(err, errlen, "extend: libcurl could not be initialised");
        return -1;
    }
    u = calloc(1, sizeof(*u));
    if (u == NULL) {
        snprintf(err, errlen, "extend: out of memory");
        return -1;
    }
    u->base = base;
    if (check_base_url(u, acct->base_url, err, errlen) != 0)
        goto fail;
    if (acct->api_version == NULL ||
        !header_value_ok((const unsigned char *)acct->api_version, strlen(acct->api_version),
                         UP_HEADER_VALUE_MAX)) {
        snprintf(err, errlen, "extend.api_version: must be set, visible ASCII");
        goto fail;
    }
    ws = acct->workspace_id;
    if (ws != NULL && ws[0] != '\0' &&
        !header_value_ok((const unsigned char *)ws, strlen(ws), UP_HEADER_VALUE_MAX)) {
        snprintf(err, errlen, "extend.workspace_id: must be visible ASCII");
        goto fail;
    }
    u->api_version = strdup(acct->api_version);
    u->workspace_id = ws != NULL && ws[0] != '\0' ? strdup(ws) : NULL;
    if (u->api_version == NULL || (ws != NULL && ws[0] != '\0' && u->workspace_id == NULL)) {
        snprintf(err, errlen, "extend: out of memory");
        goto fail;
    }
    if (acct->ca_file != NULL && set_ca(u, acct->ca_file, err, errlen) != 0)
        goto fail;
    u->timeout_ms = acct->timeout_ms > 0 ? acct->timeout_ms : 30000;
    u->connect_timeout_ms =
        acct->connect_timeout_ms > 0 ? acct->connect_timeout_ms : 0; /* within timeout_ms */
    u->hdrs = headers_build(u, &acct->token);
    if (u->hdrs == NULL) {
        snprintf(err, errlen, "extend.token: missing, empty, too long or not visible ASCII");
        goto fail;
    }
    u->timer = evtimer_new(base, on_timer_event, u);
    u->cap_idle = max;
    u->idle = calloc((size_t)max, sizeof(*u->idle));
    u->multi = curl_multi_init();
    if (u->timer == NULL || u->multi == NULL || u->idle == NULL ||
        curl_multi_setopt(u->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket) != CURLM_OK ||
        curl_multi_setopt(u->multi, CURLMOPT_SOCKETDATA, u) != CURLM_OK ||
        curl_multi_setopt(u->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer) != CURLM_OK ||
        curl_multi_setopt(u->multi, CURLMOPT_TIMERDATA, u) != CURLM_OK ||
        curl_multi_setopt(u->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX) != CURLM_OK ||
        curl_multi_setopt(u->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)max) != CURLM_OK ||
        curl_multi_setopt(u->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)max) != CURLM_OK ||
        /* The idle connection cache defaults to four per easy handle still
         * added; ours are removed as each DELETE ends, so without this the
         * cache shrinks and closes the connections it should reuse. */
        curl_multi_setopt(u->multi, CURLMOPT_MAXCONNECTS, (long)max) != CURLM_OK ||
        curl_multi_setopt(u->multi, CURLMOPT_MAX_CONCURRENT_STREAMS, (long)max) != CURLM_OK) {
        snprintf(err, errlen, "extend: cannot set up libcurl");
        goto fail;
    }
    *out = u;
    return 0;
fail:
    destroy(u);
    return -1;
}

int upstream_set_token(struct upstream *u, const struct secret *token)
{
    struct up_headers *h;

    if (u == NULL || u->closing)
        return -1;
    h = headers_build(u, token);
    if (h == NULL)
        return -1;
    headers_unref(u->hdrs);
    u->hdrs = h;
    return 0;
}

#define UP_SETOPT(easy, opt, val)                                                                  \
    do {                                                                                           \
        if (curl_easy_setopt((easy), (opt), (val)) != CURLE_OK)                                    \
            goto fail;                                                                             \
    } while (0)

static int setup_easy(struct upstream *u, struct up_req *req, const char *url)
{
    CURL *e = req->easy;

    UP_SETOPT(e, CURLOPT_URL, url);
    UP_SETOPT(e, CURLOPT_CUSTOMREQUEST, "DELETE");
    UP_SETOPT(e, CURLOPT_HTTPHEADER, req->hdrs->list);
    UP_SETOPT(e, CURLOPT_PROTOCOLS_STR, u->protocols);
    UP_SETOPT(e, CURLOPT_FOLLOWLOCATION, 0L);
    UP_SETOPT(e, CURLOPT_SSL_VERIFYPEER, 1L);
    UP_SETOPT(e, CURLOPT_SSL_VERIFYHOST, 2L);
    UP_SETOPT(e, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    if (u->ca_file != NULL) {
        UP_SETOPT(e, CURLOPT_CAINFO, u->ca_file);
        UP_SETOPT(e, CURLOPT_CAPATH, UP_SYSTEM_CA_DIR);
    }
    UP_SETOPT(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    /* Wait for an HTTP/2 connection to multiplex on rather than opening
     * a parallel one while its handshake is still running. */
    UP_SETOPT(e, CURLOPT_PIPEWAIT, 1L);
    UP_SETOPT(e, CURLOPT_TIMEOUT_MS, u->timeout_ms);
    if (u->connect_timeout_ms > 0)
        UP_SETOPT(e, CURLOPT_CONNECTTIMEOUT_MS, u->connect_timeout_ms);
    UP_SETOPT(e, CURLOPT_NOSIGNAL, 1L);
    UP_SETOPT(e, CURLOPT_TCP_KEEPALIVE, 1L);
    UP_SETOPT(e, CURLOPT_HEADERFUNCTION, on_header);
    UP_SETOPT(e, CURLOPT_HEADERDATA, req);
    UP_SETOPT(e, CURLOPT_WRITEFUNCTION, on_body);
    UP_SETOPT(e, CURLOPT_WRITEDATA, req);
    UP_SETOPT(e, CURLOPT_ERRORBUFFER, req->errbuf);
    UP_SETOPT(e, CURLOPT_PRIVATE, req);
    return 0;
fail:
    return -1;
}

int upstream_delete(struct upstream *u, enum resource r, const char *id, upstream_done_cb cb,
                    void *arg)
{
    char seg[3 * RESOURCE_ID_MAX + 1];
    char *url = NULL;
    size_t idlen, urllen;
    struct up_req *req = NULL;
    CURLMcode mrc;

    if (u == NULL || u->closing || cb == NULL || id == NULL || (int)r < 0 || r >= RES_COUNT)
        return -1;
    idlen = strnlen(id, RESOURCE_ID_MAX + 1);
    if (!resource_id_valid(id, idlen) || resource_encode_segment(id, seg, sizeof(seg)) != 0)
        return -1;
    urllen = strlen(u->base_url) + strlen(resource_collection(r)) + strlen(seg) + 3;
    url = malloc(urllen);
    req = calloc(1, sizeof(*req));
    if (url == NULL || req == NULL)
        goto fail;
    snprintf(url, urllen, "%s/%s/%s", u->base_url, resource_collection(r), seg);
    req->u = u;
    req->cb = cb;
    req->arg = arg;
    req->started_ms = util_mono_ms();
    req->hdrs = u->hdrs;
    req->hdrs->refs++;
    req->easy = easy_acquire(u);
    if (req->easy == NULL || setup_easy(u, req, url) != 0)
        goto fail;

    /* Linked first, so a deferred failure below is aborted by close too. */
    req->next = u->reqs;
    if (u->reqs != NULL)
        u->reqs->prev = req;
    u->reqs = req;
    u->in_flight++;
    free(url);

    mrc = curl_multi_add_handle(u->multi, req->easy);
    if (mrc != CURLM_OK) {
        /* Report on the loop, like every other failure. */
        static const struct timeval now = {0, 0};
        snprintf(req->res.transport_error, sizeof(req->res.transport_error), "other");
        snprintf(req->res.transport_detail, sizeof(req->res.transport_detail), "%s",
                 curl_multi_strerror(mrc));
        req->defer = evtimer_new(u->base, on_defer, req);
        if (req->defer == NULL || evtimer_add(req->defer, &now) != 0) {
            req_unlink(req);
            req_free(req);
            return -1;
        }
    }
    return 0;
fail:
    free(url);
    if (req != NULL)
        req_free(req);
    return -1;
}

int upstream_in_flight(const struct upstream *u)
{
    return u != NULL ? u->in_flight : 0;
}

/* Removes every request without calling back. */
static void abort_all(struct upstream *u)
{
    struct up_req *req = u->reqs, *next;

    u->reqs = NULL;
    for (; req != NULL; req = next) {
        next = req->next;
        if (req->defer == NULL)
            curl_multi_remove_handle(u->multi, req->easy);
        req_free(req);
    }
    u->in_flight = 0;
}

static void destroy(struct upstream *u)
{
    if (u == NULL)
        return;
    if (u->multi != NULL) {
        abort_all(u);
        /* May still call on_curl_socket / on_curl_timer: both need u. */
        curl_multi_cleanup(u->multi);
    }
    /* Sockets libcurl never told us to remove (none expected). */
    for (struct up_sock *s = u->socks, *next; s != NULL; s = next) {
        next = s->next;
        event_free(s->ev);
        free(s);
    }
    u->socks = NULL;
    if (u->timer != NULL)
        event_free(u->timer);
    while (u->n_idle > 0)
        curl_easy_cleanup(u->idle[--u->n_idle]);
    free(u->idle);
    headers_unref(u->hdrs);
    free(u->ca_file);
    free(u->base_url);
    free(u->api_version);
    free(u->workspace_id);
    free(u);
}

void upstream_close(struct upstream *u)
{
    if (u == NULL)
        return;
    abort_all(u);
    if (u->busy > 0) {
        /* Inside a callback: drain_done / on_defer frees u on the way out. */
        u->closing = 1;
        return;
    }
    destroy(u);
}
