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
#include "util.h"

struct admin_ctx {
    struct evhttp_request *req;
    struct gateway *gw;
    char rid[48];
    char what[16];
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
    json_object_set_new(o, "in_flight", json_integer(dispatch_in_flight(a->gw->dispatch)));
    send_json_value(a->req, a->rid, 200, o);
    admin_ctx_free(a);
}

static void list_done(const struct queue_deletion_view *views, int n, int failed, void *arg)
{
    struct admin_ctx *a = arg;
    json_t *arr;

    if (failed) {
        http_send_error(a->req, a->rid, 503, "queue_unavailable", "the queue did not answer");
        admin_ctx_free(a);
        return;
    }
    arr = json_array();
    for (int i = 0; i < n; i++) {
        char *text = http_render_view(&views[i], 0);
        json_t *v = text != NULL ? json_loads(text, 0, NULL) : NULL;

        free(text);
        if (v != NULL)
            json_array_append_new(arr, v);
    }
    send_json_value(a->req, a->rid, 200, json_pack("{s:i,s:o}", "count", n, "deletions", arr));
    admin_ctx_free(a);
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

static void pause_done(int ok, void *arg)
{
    struct admin_ctx *a = arg;
    int pause = strcmp(a->what, "pause") == 0;

    if (!ok) {
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

static void count_done(int64_t count, void *arg)
{
    struct admin_ctx *a = arg;

    if (count < 0) {
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
                                        "/admin/pause", "/admin/resume"};
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
    if (http_attach_conns(gw, gw->admin, gw->admin_socket, "admin", gw->admin_max_connections,
                          NULL, &gw->admin_conns) != 0)
        return -1;
    log_info(NULL, "admin listening on http://%s:%d", cfg->admin.address, cfg->admin.port);
    return 0;
}
