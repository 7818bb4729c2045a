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
 *        ?account=ID                     of one account only
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

#include "config.h"
#include "dispatch.h"
#include "http_admin.h"
#include "http_reply.h"
#include "http_view.h"
#include "log.h"
#include "queue.h"
#include "readiness.h"
#include "receipt.h"
#include "resource.h"
#include "util.h"

/* One operator request waiting for the queue's answer. */
struct admin_ctx {
    struct http_req r;
    char what[16];
    int with_receipts; /* export */
    int account;       /* pause, resume: an index in cfg->accounts, -1 = all */
};

static struct admin_ctx *admin_ctx_new(const struct http_req *r, const char *what)
{
    struct admin_ctx *a = calloc(1, sizeof(*a));

    if (a == NULL) {
        http_reply_error(r, 503, "queue_unavailable", "out of memory");
        return NULL;
    }
    a->r = *r;
    snprintf(a->what, sizeof(a->what), "%s", what);
    http_reply_hold(r);
    return a;
}

static void admin_ctx_free(struct admin_ctx *a)
{
    http_reply_release(&a->r);
    free(a);
}

/* After a was handed to the queue: rc != 0 says the queue refused it
 * (closing), so nobody will answer but us. */
static void admin_handed(struct admin_ctx *a, int rc)
{
    struct http_req r;

    if (a == NULL || rc == 0)
        return;
    r = a->r;
    admin_ctx_free(a);
    http_reply_error(&r, 503, "queue_unavailable", "the gateway is stopping");
}

static void stats_done(const struct queue_stats *st, int failed, void *arg)
{
    struct admin_ctx *a = arg;
    const struct http_ctx *ctx = a->r.ctx;
    const struct config *cfg = ctx->cfg;
    json_t *o, *counts;
    int64_t now = util_now_ms();
    char when[40];

    if (failed) {
        http_reply_error(&a->r, 503, "queue_unavailable", "the queue did not answer");
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
    /* The ETA assumes the configured rates are what Extend will take; an
     * account without a limit makes it unknown. */
    double rate = 0;
    int unlimited = 0;
    json_t *accts = json_array();
    for (int i = 0; i < cfg->n_accounts; i++) {
        struct dispatch_state ds;
        rate += cfg->accounts[i].rate_per_second;
        unlimited |= cfg->accounts[i].rate_per_second <= 0;
        dispatch_account_state(ctx->dispatch, i, &ds);
        json_array_append_new(
            accts, json_pack("{s:s, s:f, s:b, s:b, s:b, s:i}", "id", cfg->accounts[i].id,
                             "rate_per_second", cfg->accounts[i].rate_per_second, "paused",
                             ds.paused, "breaker_open", ds.breaker_open, "upstream_unreachable",
                             ds.unreachable, "in_flight", ds.in_flight));
    }
    if (rate > 0 && !unlimited)
        json_object_set_new(o, "eta_seconds", json_real((double)st->jobs_pending / rate));
    else
        json_object_set_new(o, "eta_seconds", json_null());
    json_object_set_new(o, "rate_per_second", json_real(unlimited ? 0 : rate));
    json_object_set_new(o, "accounts", accts);
    json_object_set_new(o, "paused", json_boolean(dispatch_paused(ctx->dispatch)));
    json_object_set_new(o, "breaker_open", json_boolean(readiness_breaker_open(ctx->ready)));
    json_object_set_new(o, "upstream_unreachable",
                        json_boolean(dispatch_unreachable(ctx->dispatch)));
    json_object_set_new(o, "in_flight", json_integer(dispatch_in_flight(ctx->dispatch)));
    http_reply_value(&a->r, 200, o);
    admin_ctx_free(a);
}

/* The receipt of a deleted or not_found row as compact JSON (free it), or
 * NULL for other states and on failure. receipt_make writes it indented,
 * for a person; here it is one member of a compact page. */
static char *row_receipt(EVP_PKEY *key, const struct queue_deletion_view *v, int64_t now)
{
    char *text = NULL, *compact = NULL;
    json_t *r;

    if ((v->state != DEL_DELETED && v->state != DEL_NOT_FOUND) ||
        receipt_make(key, v, now, &text) != 0)
        return NULL;
    r = json_loads(text, 0, NULL);
    free(text);
    if (r != NULL)
        compact = json_dumps(r, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(r);
    return compact;
}

/* A list or an export page: {"count", "deletions"[, "next_cursor"]}; next
 * NULL for a list, "" for the last page of an export. With key, each
 * deleted or not_found row also gets its receipt, signed now for what the
 * row says now: the statement GET /v1/deletions/ID/receipt would hand out
 * (null for other states). */
static void send_rows(struct admin_ctx *a, const struct queue_deletion_view *views, int n,
                      int failed, const char *next, EVP_PKEY *key)
{
    struct evbuffer *out = evhttp_request_get_output_buffer(a->r.req);
    int64_t now = util_now_ms();
    int bad = 0;

    if (failed) {
        http_reply_error(&a->r, 503, "queue_unavailable", "the queue did not answer");
        admin_ctx_free(a);
        return;
    }
    bad |= evbuffer_add_printf(out, "{\"count\":%d,\"deletions\":[", n) < 0;
    for (int i = 0; !bad && i < n; i++) {
        const struct queue_deletion_view *v = &views[i];
        const char *member = NULL; /* no "receipt" member */
        char *receipt = NULL;

        if (key != NULL)
            member = (receipt = row_receipt(key, v, now)) != NULL ? receipt : "null";
        bad |= (i > 0 && evbuffer_add(out, ",", 1) != 0) || http_view_write(out, v, 0, member) != 0;
        free(receipt);
    }
    bad |= evbuffer_add(out, "]", 1) != 0;
    if (next != NULL) {
        char cursor[160] = "null";
        if (next[0] != '\0')
            util_json_escape(next, cursor, sizeof(cursor));
        bad |= evbuffer_add_printf(out, ",\"next_cursor\":%s", cursor) < 0;
    }
    bad |= evbuffer_add(out, "}", 1) != 0;
    if (bad) {
        evbuffer_drain(out, evbuffer_get_length(out));
        http_reply_error(&a->r, 503, "queue_unavailable", "out of memory");
    } else {
        http_reply_written(&a->r, 200);
    }
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

    send_rows(a, views, n, failed, next, a->with_receipts ? a->r.ctx->receipt_key : NULL);
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

/* GET /admin/export: checks every parameter, then asks the queue for one
 * page. */
static void admin_export(struct http_req *r, const char *arg)
{
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(r->req));
    struct admin_ctx *a = NULL;
    struct evkeyvalq q;
    struct queue_export_query eq = {.state = -1};
    const char *since, *until, *st, *lim, *cursor, *rcp, *bad = NULL;
    enum deletion_state state;
    int64_t limit = 500, ms, seq;
    int with_receipts = 0, rc = 0;

    (void)arg;
    TAILQ_INIT(&q);
    if (evhttp_parse_query_str(query != NULL ? query : "", &q) != 0) {
        http_reply_error(r, 400, "invalid_query", "the query string is malformed");
        return;
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
        http_reply_error(r, 400, "invalid_query", "%s", bad);
        goto done;
    }
    if (st != NULL)
        eq.state = (int)state;
    with_receipts = rcp != NULL && strcmp(rcp, "true") == 0;
    if (with_receipts && r->ctx->receipt_key == NULL) {
        http_reply_error(r, 409, "receipts_disabled", "receipts are turned off");
        goto done;
    }
    if ((a = admin_ctx_new(r, "export")) != NULL) {
        a->with_receipts = with_receipts;
        rc = queue_export(r->ctx->queue, &eq, cursor, (int)limit, export_done, a);
    }
done:
    evhttp_clear_headers(&q);
    admin_handed(a, rc);
}

static void get_done(const struct queue_deletion_view *v, int failed, void *arg)
{
    struct admin_ctx *a = arg;

    if (failed)
        http_reply_error(&a->r, 503, "queue_unavailable", "the queue did not answer");
    else if (v == NULL)
        http_reply_error(&a->r, 404, "not_found", "no deletion with this id");
    else
        http_reply_view(&a->r, v);
    admin_ctx_free(a);
}

static void pause_done(int failed, void *arg)
{
    struct admin_ctx *a = arg;
    int pause = strcmp(a->what, "pause") == 0;
    char body[96];

    if (failed) {
        http_reply_error(&a->r, 503, "queue_unavailable", "the queue did not record the %s",
                         a->what);
    } else {
        /* A shared queue's stored pause holds every replica's claims,
         * this one's too, and a resume through any replica ends it: the
         * hold here was only until the commit. */
        if (!pause || queue_shared(a->r.ctx->queue))
            dispatch_set_paused(a->r.ctx->dispatch, a->account, 0);
        if (a->account < 0) {
            log_info(a->r.rid, "admin: dispatching %s", pause ? "paused" : "resumed");
            snprintf(body, sizeof(body), "{\"paused\":%s}", pause ? "true" : "false");
        } else {
            const char *id = a->r.ctx->cfg->accounts[a->account].id;
            log_info(a->r.rid, "admin: dispatching %s for account %s", pause ? "paused" : "resumed",
                     id);
            /* Account ids are [a-z0-9_-]: no escaping. */
            snprintf(body, sizeof(body), "{\"paused\":%s,\"account\":\"%s\"}",
                     pause ? "true" : "false", id);
        }
        http_reply_json(&a->r, 200, body);
    }
    admin_ctx_free(a);
}

static void count_done(int64_t count, int failed, void *arg)
{
    struct admin_ctx *a = arg;

    if (failed) {
        http_reply_error(&a->r, 503, "queue_unavailable", "the queue did not answer");
    } else if (count == 0 && strcmp(a->what, "retry-dead") != 0) {
        http_reply_error(&a->r, 409, "not_applicable", "%s applies to %s deletions only", a->what,
                         strcmp(a->what, "cancel") == 0 ? "queued" : "dead or rejected");
    } else {
        log_info(a->r.rid, "admin: %s changed %lld deletion(s)", a->what, (long long)count);
        http_reply_value(&a->r, 200,
                         json_pack("{s:s,s:I}", "action", a->what, "changed", (json_int_t)count));
    }
    admin_ctx_free(a);
}

int http_admin_guard(const struct http_req *r, const char *path)
{
    const struct secret *tok = &r->ctx->cfg->admin.token;
    const char *h;
    size_t n;

    if (path == NULL || strncmp(path, "/admin/", 7) != 0) {
        http_reply_error(r, 404, "not_found", "no such route");
        return -1;
    }
    h = evhttp_find_header(evhttp_request_get_input_headers(r->req), "Authorization");
    if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0 || tok->value == NULL)
        goto deny;
    h += 7;
    n = strlen(h);
    if (n == tok->len && CRYPTO_memcmp(h, tok->value, n) == 0)
        return 0;
deny:
    http_reply_error(r, 401, "unauthorized", "a valid admin bearer token is required");
    return -1;
}

static void admin_queue(struct http_req *r, const char *arg)
{
    struct admin_ctx *a = admin_ctx_new(r, "stats");

    (void)arg;
    if (a != NULL)
        admin_handed(a, queue_stats(r->ctx->queue, stats_done, a));
}

static void admin_list(struct http_req *r, const char *arg)
{
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(r->req));
    struct admin_ctx *a;
    struct evkeyvalq q;
    const char *st, *lim;
    enum deletion_state state = DEL_DEAD;
    int64_t limit = 100;

    (void)arg;
    TAILQ_INIT(&q);
    evhttp_parse_query_str(query != NULL ? query : "", &q);
    st = evhttp_find_header(&q, "state");
    lim = evhttp_find_header(&q, "limit");
    if ((st != NULL && deletion_state_from_name(st, &state) != 0) ||
        (lim != NULL && util_parse_int64(lim, 1, QUEUE_LIST_MAX, &limit) != 0)) {
        evhttp_clear_headers(&q);
        http_reply_error(r, 400, "invalid_body", "state must be a deletion state, limit 1..%d",
                         QUEUE_LIST_MAX);
        return;
    }
    evhttp_clear_headers(&q);
    if ((a = admin_ctx_new(r, "list")) != NULL)
        admin_handed(a, queue_list(r->ctx->queue, state, (int)limit, list_done, a));
}

static void admin_retry_dead(struct http_req *r, const char *arg)
{
    struct admin_ctx *a = admin_ctx_new(r, "retry-dead");

    (void)arg;
    if (a != NULL)
        admin_handed(a, queue_retry(r->ctx->queue, NULL, "admin", util_now_ms(), count_done, a));
}

/* A pause holds sending at once; the answer waits for the commit that
 * makes it outlive a restart. A resume sends only once it is committed,
 * so a restart cannot undo it either. */
/* ?account=ID: the index of that account, -1 without one; -2 with the
 * answer sent (400 unknown_account). */
static int admin_account_arg(const struct http_req *r)
{
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(r->req));
    struct evkeyvalq q;
    const char *id;
    int a = -1;

    TAILQ_INIT(&q);
    if (query == NULL)
        return -1;
    if (evhttp_parse_query_str(query, &q) != 0) {
        http_reply_error(r, 400, "invalid_query", "the query string is malformed");
        return -2;
    }
    id = evhttp_find_header(&q, "account");
    if (id != NULL && (a = config_account_find(r->ctx->cfg, id, 0)) < 0) {
        http_reply_error(r, 400, "unknown_account", "no account \"%.32s\" is configured", id);
        a = -2;
    }
    evhttp_clear_headers(&q);
    return a;
}

/* A pause of one account (?account=ID) or of all holds sending at once;
 * the answer waits for the commit that makes it outlive a restart and, in
 * a shared queue, hold every replica. A resume sends only once it is
 * committed, so a restart cannot undo it either. */
static void admin_set_paused(struct http_req *r, int pause)
{
    struct admin_ctx *a;
    int account = admin_account_arg(r);

    if (account == -2)
        return;
    if (pause)
        dispatch_set_paused(r->ctx->dispatch, account, 1);
    if ((a = admin_ctx_new(r, pause ? "pause" : "resume")) == NULL)
        return;
    a->account = account;
    admin_handed(a, queue_set_paused(r->ctx->queue,
                                     account < 0 ? NULL : r->ctx->cfg->accounts[account].id, pause,
                                     "admin", pause_done, a));
}

static void admin_pause(struct http_req *r, const char *arg)
{
    (void)arg;
    admin_set_paused(r, 1);
}

static void admin_resume(struct http_req *r, const char *arg)
{
    (void)arg;
    admin_set_paused(r, 0);
}

static void admin_show(struct http_req *r, const char *id)
{
    struct admin_ctx *a = admin_ctx_new(r, "show");

    if (a != NULL)
        admin_handed(a, queue_get(r->ctx->queue, id, get_done, a));
}

static void admin_retry(struct http_req *r, const char *id)
{
    struct admin_ctx *a = admin_ctx_new(r, "retry");

    if (a != NULL)
        admin_handed(a, queue_retry(r->ctx->queue, id, "admin", util_now_ms(), count_done, a));
}

static void admin_cancel(struct http_req *r, const char *id)
{
    struct admin_ctx *a = admin_ctx_new(r, "cancel");

    if (a != NULL)
        admin_handed(a, queue_cancel(r->ctx->queue, id, "admin", util_now_ms(), count_done, a));
}

/* A malformed id is a 404 whatever follows it; a known path asked with
 * another method is a 405; the last entry counts every other /admin/ path
 * under the admin label and answers 404. */
const struct http_route http_admin_routes[] = {
    {HTTP_GET, HTTP_EXACT, "/admin/queue", NULL, NULL, admin_queue, MR_ADMIN},
    {HTTP_GET, HTTP_EXACT, "/admin/deletions", NULL, NULL, admin_list, MR_ADMIN},
    {HTTP_GET, HTTP_EXACT, "/admin/export", NULL, NULL, admin_export, MR_ADMIN},
    {HTTP_POST, HTTP_EXACT, "/admin/retry-dead", NULL, NULL, admin_retry_dead, MR_ADMIN},
    {HTTP_POST, HTTP_EXACT, "/admin/pause", NULL, NULL, admin_pause, MR_ADMIN},
    {HTTP_POST, HTTP_EXACT, "/admin/resume", NULL, NULL, admin_resume, MR_ADMIN},
    {HTTP_GET, HTTP_ID, "/admin/deletions/", NULL, http_view_id_valid, admin_show, MR_ADMIN},
    {HTTP_POST, HTTP_ID, "/admin/deletions/", "/retry", http_view_id_valid, admin_retry, MR_ADMIN},
    {HTTP_POST, HTTP_ID, "/admin/deletions/", "/cancel", http_view_id_valid, admin_cancel,
     MR_ADMIN},
    {0, HTTP_PREFIX, "/admin/", NULL, NULL, NULL, MR_ADMIN},
};
const size_t http_admin_n_routes = sizeof(http_admin_routes) / sizeof(http_admin_routes[0]);
