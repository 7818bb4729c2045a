/*
 * http_admin.c: the operators' listener (loopback by default), every
 * route behind the bearer admin token, compared in constant time.
 *
 *   GET  /admin/queue                    counts by state, oldest job, ETA
 *   GET  /admin/deletions?state=S&limit=N  deletions in one state
 *   GET  /admin/deletions/ID             one deletion with its attempts
 *   POST /admin/deletions/ID/retry       dead or rejected -> queued
 *   POST /admin/deletions/ID/cancel      queued -> cancelled
 *   POST /admin/retry-dead               every dead deletion -> queued
 *   POST /admin/pause, /admin/resume     hold or restart dispatching
 *   GET  /admin/export?since=T&until=T&source=S&resource_id=ID&state=S
 *        &limit=N&cursor=C&receipts=true  one page of the compliance export
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <sys/queue.h>

#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <openssl/crypto.h>

#include "dispatch.h"
#include "http.h"
#include "http_routes.h"
#include "log.h"
#include "queue.h"
#include "receipt.h"
#include "resource.h"
#include "util.h"

struct admin_ctx {
    struct evhttp_request *req;
    struct gateway *gw;
    char rid[48];
    char what[16];
    int with_receipts; /* export */
};

static struct admin_ctx *admin_ctx_new(struct evhttp_request *req, struct gateway *gw,
                                       const char *rid, const char *what)
{
    struct admin_ctx *a = calloc(1, sizeof(*a));

    if (a == NULL) {
        http_send_error(req, rid, 503, "queue_unavailable", "out of memory");
        return NULL;
    }
    a->req = req;
    a->gw = gw;
    snprintf(a->rid, sizeof(a->rid), "%s", rid);
    snprintf(a->what, sizeof(a->what), "%s", what);
    gw->pending++;
    return a;
}

static void admin_ctx_free(struct admin_ctx *a)
{
    a->gw->pending--;
    free(a);
}

static void send_json_value(struct evhttp_request *req, const char *rid, int status, json_t *v)
{
    char *text = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);

    json_decref(v);
    if (text == NULL) {
        http_send_error(req, rid, 503, "queue_unavailable", "out of memory");
        return;
    }
    http_send_json(req, status, text);
    free(text);
}

static void stats_done(const struct queue_stats *st, int failed, void *arg)
{
    struct admin_ctx *a = arg;
    const struct config *cfg = a->gw->cfg;
    json_t *o, *counts;
    int64_t now = util_now_ms();
    char when[40];

    if (failed) {
        http_send_error(a->req, a->rid, 503, "queue_unavailable", "the queue did not answer");
        admin_ctx_free(a);
        return;
    }
    o = json_object();
    counts = json_object();
    for (int s = 0; s < DEL_STATE_COUNT; s++)
        json_object_set_new(counts, deletion_state_name((enum deletion_state)s),
                            json_integer(st->count[s]));
    json_object_set_new(o, "deletions", counts);
    json_object_set_new(o, "jobs_pending", json_integer(st->jobs_pending));
    if (st->oldest_pending_ms > 0) {
        util_format_time_ms(st->oldest_pending_ms, when, sizeof(when));
        json_object_set_new(o, "oldest_pending_accepted_at", json_string(when));
        json_object_set_new(o, "oldest_pending_age_seconds",
                            json_integer((now - st->oldest_pending_ms) / 1000));
    } else {
        json_object_set_new(o, "oldest_pending_accepted_at", json_null());
    }
    /* The ETA assumes the configured rate is what Extend will take. */
    if (cfg->extend.rate_per_second > 0)
        json_object_set_new(o, "eta_seconds",
                            json_real((double)st->jobs_pending / cfg->extend.rate_per_second));
    else
        json_object_set_new(o, "eta_seconds", json_null());
    json_object_set_new(o, "rate_per_second", json_real(cfg->extend.rate_per_second));
    json_object_set_new(o, "paused", json_boolean(dispatch_paused(a->gw->dispatch)));
    json_object_set_new(o, "breaker_open", json_boolean(dispatch_breaker_open(a->gw->dispatch)));
    json_object_set_new(o, "upstream_unreachable",
                        json_boolean(dispatch_unreachable(a->gw->dispatch)));
    json_object_set_new(o, "in_flight", json_integer(dispatch_in_flight(a->gw->dispatch)));
    send_json_value(a->req, a->rid, 200, o);
    admin_ctx_free(a);
}

/* A row as http_render_view writes it (malloc'd text), back as JSON. */
static json_t *view_json(const struct queue_deletion_view *v)
{
    char *text = http_render_view(v, 0);
    json_t *o = text != NULL ? json_loads(text, 0, NULL) : NULL;

    free(text);
    return o;
}

/* Rows as the API shows them; with key, each deleted or not_found row also
 * gets its receipt, signed now for what the row says now: the statement
 * GET /v1/deletions/ID/receipt would hand out (null for other states). */
static json_t *rows_json(const struct queue_deletion_view *views, int n, EVP_PKEY *key)
{
    json_t *arr = json_array(), *o;
    int64_t now = util_now_ms();

    for (int i = 0; arr != NULL && i < n; i++) {
        char *receipt = NULL;
        json_t *r = NULL;

        if ((o = view_json(&views[i])) == NULL)
            continue;
        if (key != NULL) {
            if ((views[i].state == DEL_DELETED || views[i].state == DEL_NOT_FOUND) &&
                receipt_make(key, &views[i], now, &receipt) == 0)
                r = json_loads(receipt, 0, NULL);
            json_object_set_new(o, "receipt", r != NULL ? r : json_null());
            free(receipt);
        }
        json_array_append_new(arr, o);
    }
    return arr;
}

/* A list or an export page: {"count", "deletions"[, "next_cursor"]}; next
 * NULL for a list, "" for the last page of an export. */
static void send_rows(struct admin_ctx *a, const struct queue_deletion_view *views, int n,
                      int failed, const char *next, EVP_PKEY *key)
{
    json_t *arr, *o;

    if (failed) {
        http_send_error(a->req, a->rid, 503, "queue_unavailable", "the queue did not answer");
        admin_ctx_free(a);
        return;
    }
    arr = rows_json(views, n, key);
    o = json_pack("{s:i,s:o}", "count", (int)json_array_size(arr), "deletions", arr);
    if (o != NULL && next != NULL)
        json_object_set_new(o, "next_cursor", next[0] != '\0' ? json_string(next) : json_null());
    send_json_value(a->req, a->rid, 200, o);
    admin_ctx_free(a);
}

static void list_done(const struct queue_deletion_view *views, int n, int failed, void *arg)
{
    send_rows(arg, views, n, failed, NULL, NULL);
}

static void export_done(const struct queue_deletion_view *views, int n, const char *next,
                        int failed, void *arg)
{
    struct admin_ctx *a = arg;

    send_rows(a, views, n, failed, next, a->with_receipts ? a->gw->receipt_key : NULL);
}

/* since/until: RFC 3339, or a date (midnight UTC). */
static int parse_when(const char *s, int64_t *ms)
{
    char full[40];

    if (s == NULL)
        return 0;
    if (strlen(s) == 10) {
        snprintf(full, sizeof(full), "%sT00:00:00Z", s);
        s = full;
    }
    return util_parse_rfc3339(s, ms);
}

/* Checks every parameter, then asks the queue for one page; on a refusal
 * the error is sent and *a stays NULL. */
static int route_export(struct evhttp_request *req, struct gateway *gw, const char *rid,
                        const char *query, struct admin_ctx **out)
{
    struct evkeyvalq q;
    struct queue_export_query eq = {.state = -1};
    const char *since, *until, *st, *lim, *cursor, *rcp, *bad = NULL;
    enum deletion_state state;
    int64_t limit = 500, ms, seq;
    int with_receipts = 0, rc = 0;

    *out = NULL;
    TAILQ_INIT(&q);
    if (evhttp_parse_query_str(query != NULL ? query : "", &q) != 0) {
        http_send_error(req, rid, 400, "invalid_query", "the query string is malformed");
        return 0;
    }
    since = evhttp_find_header(&q, "since");
    until = evhttp_find_header(&q, "until");
    st = evhttp_find_header(&q, "state");
    lim = evhttp_find_header(&q, "limit");
    cursor = evhttp_find_header(&q, "cursor");
    rcp = evhttp_find_header(&q, "receipts");
    eq.source = evhttp_find_header(&q, "source");
    eq.resource_id = evhttp_find_header(&q, "resource_id");
    if (parse_when(since, &eq.since_ms) != 0)
        bad = "since must be an RFC 3339 time or a date (YYYY-MM-DD)";
    else if (parse_when(until, &eq.until_ms) != 0)
        bad = "until must be an RFC 3339 time or a date (YYYY-MM-DD)";
    else if (until != NULL && eq.until_ms <= eq.since_ms)
        bad = "until must be after since";
    else if (st != NULL && deletion_state_from_name(st, &state) != 0)
        bad = "state must be a deletion state";
    else if (lim != NULL && util_parse_int64(lim, 1, QUEUE_EXPORT_MAX, &limit) != 0)
        bad = "limit must be 1..1000";
    else if (cursor != NULL && queue_cursor_parse(cursor, &ms, &seq) != 0)
        bad = "cursor must be a next_cursor this route handed out";
    else if (eq.source != NULL && (eq.source[0] == '\0' || strlen(eq.source) > QUEUE_SOURCE_MAX))
        bad = "source must be \"extend\" or a client id";
    else if (eq.resource_id != NULL && !resource_id_valid(eq.resource_id, strlen(eq.resource_id)))
        bad = "resource_id is not a valid resource id";
    else if (rcp != NULL && strcmp(rcp, "true") != 0 && strcmp(rcp, "false") != 0)
        bad = "receipts must be true or false";
    if (bad != NULL) {
        http_send_error(req, rid, 400, "invalid_query", "%s", bad);
        goto done;
    }
    if (st != NULL)
        eq.state = (int)state;
    with_receipts = rcp != NULL && strcmp(rcp, "true") == 0;
    if (with_receipts && gw->receipt_key == NULL) {
        http_send_error(req, rid, 409, "receipts_disabled", "receipts are turned off");
        goto done;
    }
    if ((*out = admin_ctx_new(req, gw, rid, "export")) != NULL) {
        (*out)->with_receipts = with_receipts;
        rc = queue_export(gw->queue, &eq, cursor, (int)limit, export_done, *out);
    }
done:
    evhttp_clear_headers(&q);
    return rc;
}

static void get_done(const struct queue_deletion_view *v, int failed, void *arg)
{
    struct admin_ctx *a = arg;
    char *text;

    if (failed)
        http_send_error(a->req, a->rid, 503, "queue_unavailable", "the queue did not answer");
    else if (v == NULL)
        http_send_error(a->req, a->rid, 404, "not_found", "no deletion with this id");
    else if ((text = http_render_view(v, 1)) != NULL) {
        http_send_json(a->req, 200, text);
        free(text);
    } else
        http_send_error(a->req, a->rid, 503, "queue_unavailable", "out of memory");
    admin_ctx_free(a);
}

static void pause_done(int failed, void *arg)
{
    struct admin_ctx *a = arg;
    int pause = strcmp(a->what, "pause") == 0;

    if (failed) {
        http_send_error(a->req, a->rid, 503, "queue_unavailable", "the queue did not record the %s",
                        a->what);
    } else {
        if (!pause)
            dispatch_set_paused(a->gw->dispatch, 0);
        log_info(a->rid, "admin: dispatching %s", pause ? "paused" : "resumed");
        http_send_json(a->req, 200, pause ? "{\"paused\":true}" : "{\"paused\":false}");
    }
    admin_ctx_free(a);
}

static void count_done(int64_t count, int failed, void *arg)
{
    struct admin_ctx *a = arg;

    if (failed) {
        http_send_error(a->req, a->rid, 503, "queue_unavailable", "the queue did not answer");
    } else if (count == 0 && strcmp(a->what, "retry-dead") != 0) {
        http_send_error(a->req, a->rid, 409, "not_applicable", "%s applies to %s deletions only",
                        a->what, strcmp(a->what, "cancel") == 0 ? "queued" : "dead or rejected");
    } else {
        log_info(a->rid, "admin: %s changed %lld deletion(s)", a->what, (long long)count);
        send_json_value(a->req, a->rid, 200,
                        json_pack("{s:s,s:I}", "action", a->what, "changed", (json_int_t)count));
    }
    admin_ctx_free(a);
}

static int authorized(struct evhttp_request *req, struct gateway *gw, const char *rid)
{
    const struct secret *tok = &gw->cfg->admin.token;
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    size_t n;

    if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0 || tok->value == NULL)
        goto deny;
    h += 7;
    n = strlen(h);
    if (n == tok->len && CRYPTO_memcmp(h, tok->value, n) == 0)
        return 1;
deny:
    http_send_error(req, rid, 401, "unauthorized", "a valid admin bearer token is required");
    return 0;
}

/* Whether path is one of the admin routes, whatever the method: a known
 * route asked with the wrong method is a 405, not a 404. */
static int admin_known_path(const char *path)
{
    static const char *const fixed[] = {"/admin/queue", "/admin/deletions", "/admin/retry-dead",
                                        "/admin/pause", "/admin/resume",    "/admin/export"};
    const char *rest, *slash;

    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
        if (strcmp(path, fixed[i]) == 0)
            return 1;
    }
    if (strncmp(path, "/admin/deletions/", 17) != 0)
        return 0;
    rest = path + 17;
    slash = strchr(rest, '/');
    return slash == NULL || strcmp(slash, "/retry") == 0 || strcmp(slash, "/cancel") == 0;
}

static void admin_not_found(struct evhttp_request *req, const char *rid, const char *path)
{
    if (admin_known_path(path))
        http_send_error(req, rid, 405, "method_not_allowed", "method not allowed on this route");
    else
        http_send_error(req, rid, 404, "not_found", "no such route");
}

static void admin_route(struct evhttp_request *req, void *arg)
{
    struct gateway *gw = arg;
    enum evhttp_cmd_type method = evhttp_request_get_command(req);
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    char rid[48], id[QUEUE_DELETION_ID_MAX + 1];
    struct admin_ctx *a = NULL;
    const char *rest, *slash;
    size_t idlen;
    int rc = 0;

    http_request_id(req, rid, sizeof(rid));
    if (path == NULL || strncmp(path, "/admin/", 7) != 0) {
        http_send_error(req, rid, 404, "not_found", "no such route");
        return;
    }
    if (!authorized(req, gw, rid))
        return;
    if (method == EVHTTP_REQ_GET && strcmp(path, "/admin/queue") == 0) {
        if ((a = admin_ctx_new(req, gw, rid, "stats")) != NULL)
            rc = queue_stats(gw->queue, stats_done, a);
    } else if (method == EVHTTP_REQ_GET && strcmp(path, "/admin/deletions") == 0) {
        struct evkeyvalq q;
        const char *st, *lim;
        enum deletion_state state = DEL_DEAD;
        int64_t limit = 100;

        TAILQ_INIT(&q);
        evhttp_parse_query_str(evhttp_uri_get_query(uri) ? evhttp_uri_get_query(uri) : "", &q);
        st = evhttp_find_header(&q, "state");
        lim = evhttp_find_header(&q, "limit");
        if ((st != NULL && deletion_state_from_name(st, &state) != 0) ||
            (lim != NULL && util_parse_int64(lim, 1, QUEUE_LIST_MAX, &limit) != 0)) {
            evhttp_clear_headers(&q);
            http_send_error(req, rid, 400, "invalid_body",
                            "state must be a deletion state, limit 1..%d", QUEUE_LIST_MAX);
            return;
        }
        evhttp_clear_headers(&q);
        if ((a = admin_ctx_new(req, gw, rid, "list")) != NULL)
            rc = queue_list(gw->queue, state, (int)limit, list_done, a);
    } else if (method == EVHTTP_REQ_GET && strcmp(path, "/admin/export") == 0) {
        rc = route_export(req, gw, rid, evhttp_uri_get_query(uri), &a);
    } else if (method == EVHTTP_REQ_POST && strcmp(path, "/admin/retry-dead") == 0) {
        if ((a = admin_ctx_new(req, gw, rid, "retry-dead")) != NULL)
            rc = queue_retry(gw->queue, NULL, "admin", util_now_ms(), count_done, a);
    } else if (method == EVHTTP_REQ_POST &&
               (strcmp(path, "/admin/pause") == 0 || strcmp(path, "/admin/resume") == 0)) {
        int pause = strcmp(path, "/admin/pause") == 0;

        /* A pause holds sending at once; the answer waits for the commit
         * that makes it outlive a restart. A resume sends only once it is
         * committed, so a restart cannot undo it either. */
        if (pause)
            dispatch_set_paused(gw->dispatch, 1);
        if ((a = admin_ctx_new(req, gw, rid, pause ? "pause" : "resume")) != NULL)
            rc = queue_set_paused(gw->queue, pause, "admin", pause_done, a);
    } else if (strncmp(path, "/admin/deletions/", 17) == 0) {
        rest = path + 17;
        slash = strchr(rest, '/');
        idlen = slash ? (size_t)(slash - rest) : strlen(rest);
        if (!http_deletion_id_valid(rest, idlen)) {
            http_send_error(req, rid, 404, "not_found", "no deletion with this id");
            return;
        }
        memcpy(id, rest, idlen);
        id[idlen] = '\0';
        if (method == EVHTTP_REQ_GET && slash == NULL) {
            if ((a = admin_ctx_new(req, gw, rid, "show")) != NULL)
                rc = queue_get(gw->queue, id, get_done, a);
        } else if (method == EVHTTP_REQ_POST && slash && strcmp(slash, "/retry") == 0) {
            if ((a = admin_ctx_new(req, gw, rid, "retry")) != NULL)
                rc = queue_retry(gw->queue, id, "admin", util_now_ms(), count_done, a);
        } else if (method == EVHTTP_REQ_POST && slash && strcmp(slash, "/cancel") == 0) {
            if ((a = admin_ctx_new(req, gw, rid, "cancel")) != NULL)
                rc = queue_cancel(gw->queue, id, "admin", util_now_ms(), count_done, a);
        } else {
            admin_not_found(req, rid, path);
            return;
        }
    } else {
        admin_not_found(req, rid, path);
        return;
    }
    if (a != NULL && rc != 0) {
        admin_ctx_free(a);
        http_send_error(req, rid, 503, "queue_unavailable", "the gateway is stopping");
    }
}

int http_admin_start(struct gateway *gw)
{
    const struct config *cfg = gw->cfg;

    if (cfg->admin.port == 0 || cfg->admin.token.value == NULL) {
        log_info(NULL, "admin listener off (admin.port 0 or no admin.token)");
        return 0;
    }
    gw->admin = evhttp_new(gw->base);
    if (gw->admin == NULL)
        return -1;
    http_apply_limits(gw->admin, cfg);
    evhttp_set_gencb(gw->admin, admin_route, gw);
    gw->admin_socket =
        evhttp_bind_socket_with_handle(gw->admin, cfg->admin.address, (ev_uint16_t)cfg->admin.port);
    if (gw->admin_socket == NULL) {
        log_error(NULL, "cannot listen on %s:%d (admin)", cfg->admin.address, cfg->admin.port);
        return -1;
    }
    if (http_attach_conns(gw, gw->admin, gw->admin_socket, "admin", gw->admin_max_connections, NULL,
                          &gw->admin_conns) != 0)
        return -1;
    log_info(NULL, "admin listening on http://%s:%d", cfg->admin.address, cfg->admin.port);
    return 0;
}
