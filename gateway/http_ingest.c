/*
 * http_ingest.c: the routes that accept deletions.
 *
 *   POST {webhooks.path}        Extend webhooks to the default account, v0 signature
 *   POST {webhooks.path}/ID     Extend webhooks to the account ID (its own secrets)
 *   POST /v1/deletions          internal clients, Standard Webhooks signature
 *   GET  /v1/deletions/ID       a deletion's state (signed the same way)
 *   GET  /v1/deletions/ID/receipt  a signed statement of a finished deletion
 *
 * A request is checked in order of cost and trust: headers, signature,
 * then the body. Nothing is queued unless every part of it is valid, and
 * the 2xx goes out only from the queue's callback, after the commit that
 * holds it has been fsynced. A crash before that callback loses nothing
 * the caller was told about: it got no answer and will send again.
 */
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <jansson.h>

#include "config.h"
#include "erasure.h"
#include "http_ingest.h"
#include "http_reply.h"
#include "http_view.h"
#include "log.h"
#include "metrics.h"
#include "queue.h"
#include "readiness.h"
#include "receipt.h"
#include "tls.h"
#include "util.h"
#include "verify.h"
#include "webhook.h"

/* One request waiting for the queue's answer. */
struct ingest_ctx {
    struct http_req r;
    int from_extend; /* webhook: a repeat answers "duplicate" */
    int n_items;
    char *ok_body; /* what to answer once committed */
    int ok_status;
    char event_id[WEBHOOK_EVENT_ID_MAX + 1];
};

static void ingest_ctx_free(struct ingest_ctx *c)
{
    free(c->ok_body);
    free(c);
}

static void ingest_done(const struct queue_submit_result *res, void *arg)
{
    struct ingest_ctx *c = arg;
    char body[700], eid[600];

    http_reply_release(&c->r);
    switch (res->status) {
    case QUEUE_SUBMIT_OK:
        readiness_set_queue_failing(c->r.ctx->ready, 0);
        metrics_ingest(c->n_items > 0 ? "accepted" : "ignored");
        /* Each acceptance is in the audit log already; at debug here. */
        log_debug(c->r.rid, "%s: %d deletion(s) queued", c->from_extend ? "webhook" : "erasure",
                  c->n_items);
        http_reply_json(&c->r, c->ok_status, c->ok_body);
        break;
    case QUEUE_SUBMIT_DUPLICATE:
        metrics_ingest("duplicate");
        if (c->from_extend) {
            util_json_escape(c->event_id, eid, sizeof(eid));
            snprintf(body, sizeof(body), "{\"status\":\"duplicate\",\"event_id\":%s}", eid);
            log_info(c->r.rid, "webhook: duplicate event, nothing queued");
            http_reply_json(&c->r, 200, body);
        } else {
            /* Idempotency: a repeated webhook-id gets the first answer. */
            evhttp_add_header(evhttp_request_get_output_headers(c->r.req), "Idempotent-Replayed",
                              "true");
            log_info(c->r.rid, "erasure: repeated webhook-id, first answer replayed");
            http_reply_json(&c->r, res->stored_status, res->stored_body);
        }
        break;
    case QUEUE_SUBMIT_FAILED:
    default:
        readiness_set_queue_failing(c->r.ctx->ready, 1);
        /* 503 makes Extend (and a well-behaved client) send again later. */
        http_reply_error(&c->r, 503, "queue_unavailable",
                         "the request could not be stored durably; retry later");
        break;
    }
    ingest_ctx_free(c);
}

/* Appends {"id":..,"resource":..,"resource_id":..,"not_before":..} items. */
static void render_items(struct evbuffer *out, const struct queue_item *items, int n)
{
    char esc[600], when[40];

    evbuffer_add_printf(out, "\"deletions\":[");
    for (int i = 0; i < n; i++) {
        evbuffer_add_printf(out,
                            "%s{\"id\":\"%s\",\"resource\":\"%s\",\"resource_id\":", i ? "," : "",
                            items[i].deletion_id, resource_name(items[i].resource));
        util_json_escape(items[i].resource_id, esc, sizeof(esc));
        /* Account ids are [a-z0-9_-] (config.c, queue_calls.c): no escaping. */
        evbuffer_add_printf(out, "%s,\"account\":\"%s\"", esc, items[i].account);
        if (items[i].not_before_ms > 0) {
            util_format_time_ms(items[i].not_before_ms, when, sizeof(when));
            evbuffer_add_printf(out, ",\"not_before\":\"%s\"", when);
        }
        evbuffer_add_printf(out, "}");
    }
    evbuffer_add_printf(out, "]");
}

static char *evbuffer_to_string(struct evbuffer *b)
{
    size_t n = evbuffer_get_length(b);
    char *s = malloc(n + 1);

    if (s != NULL) {
        evbuffer_remove(b, s, n);
        s[n] = '\0';
    }
    return s;
}

/* Hands a prepared submission to the queue; the answer comes later. */
static void ingest_submit(struct ingest_ctx *c, const char *source, const char *account,
                          const char *key, const struct queue_item *items, int n)
{
    struct queue_submission sub = {
        .source = source,
        .account = account,
        .key = key,
        .request_id = c->r.rid,
        .now_ms = util_now_ms(),
        .items = items,
        .n_items = n,
        .response_status = c->ok_status,
        /* A repeated eventId is answered "duplicate", never replayed, so
         * webhooks store no answer: fewer bytes in every commit. */
        .response_body = c->from_extend ? "" : c->ok_body,
    };

    http_reply_hold(&c->r);
    if (queue_submit(c->r.ctx->queue, &sub, ingest_done, c) != 0) {
        http_reply_release(&c->r);
        http_reply_error(&c->r, 503, "queue_unavailable", "the gateway is stopping");
        ingest_ctx_free(c);
    }
}

static struct ingest_ctx *ingest_ctx_new(const struct http_req *r)
{
    struct ingest_ctx *c = calloc(1, sizeof(*c));

    if (c == NULL) {
        http_reply_error(r, 503, "queue_unavailable", "out of memory");
        return NULL;
    }
    c->r = *r;
    return c;
}

static void send_api_error(const struct http_req *r, const struct api_error *e)
{
    http_reply_error(r, e->status, e->code, "%s", e->message);
}

static void send_verify_error(const struct http_req *r, enum verify_result vr)
{
    static const char *const why[] = {
        [VERIFY_MALFORMED] = "the signature headers are not in the expected format",
        [VERIFY_BAD_SIGNATURE] = "no configured secret produces this signature",
        [VERIFY_STALE] = "the timestamp is too old",
        [VERIFY_FUTURE] = "the timestamp is too far in the future",
    };

    http_reply_error(r, vr == VERIFY_BAD_SIGNATURE ? 401 : 400, verify_result_code(vr), "%s",
                     why[vr]);
}

/* Sets one item; its deletion id sorts by time (see util_sortable_id). */
static int item_set(struct queue_item *it, int64_t now_ms, const char *account, enum resource r,
                    const char *id, const char *reason, int64_t not_before_ms)
{
    if (util_sortable_id("del_", now_ms, it->deletion_id, sizeof(it->deletion_id)) != 0)
        return -1;
    snprintf(it->account, sizeof(it->account), "%s", account);
    it->resource = r;
    snprintf(it->resource_id, sizeof(it->resource_id), "%s", id);
    snprintf(it->reason, sizeof(it->reason), "%s", reason);
    it->not_before_ms = not_before_ms;
    return 0;
}

/* Renders the answer ({head, "deletions": [...]}) and hands the request
 * to the queue; c is owned by the queue's callback from here on. */
static void ingest_accept(struct ingest_ctx *c, const char *head, const char *source,
                          const char *account, const char *key, const struct queue_item *items,
                          int n)
{
    struct evbuffer *out = evbuffer_new();

    if (out != NULL) {
        evbuffer_add_printf(out, "{%s,", head);
        render_items(out, items, n);
        evbuffer_add_printf(out, "}");
        c->ok_body = evbuffer_to_string(out);
        evbuffer_free(out);
    }
    if (c->ok_body == NULL) {
        http_reply_error(&c->r, 503, "queue_unavailable", "out of memory");
        ingest_ctx_free(c);
        return;
    }
    c->n_items = n;
    ingest_submit(c, source, account, key, items, n);
}

/* arg: the account id of {webhooks.path}/ID, NULL for the default's path. */
void http_ingest_webhook(struct http_req *r, const char *arg)
{
    const struct config *cfg = r->ctx->cfg;
    const struct account *acct;
    int a = arg != NULL ? config_account_find(cfg, arg, 0) : 0;
    const char *ts, *sig, *body;
    struct webhook_plan *plan = NULL;
    struct queue_item *items = NULL;
    struct ingest_ctx *c = NULL;
    struct api_error err;
    enum verify_result vr;
    int64_t now_ms = util_now_ms();
    char head[700], eid[600], reason[ERASURE_REASON_MAX + 1];
    size_t len;
    int n;

    /* An endpoint no account has is no route, as any other unknown path. */
    if (a < 0) {
        http_reply_error(r, 404, "not_found", "no such route");
        return;
    }
    acct = &cfg->accounts[a];
    if (http_reply_require_json(r) != 0 ||
        http_reply_header_once(r, "x-extend-request-timestamp", &ts) != 0 ||
        http_reply_header_once(r, "x-extend-request-signature", &sig) != 0)
        return;
    body = http_reply_body(r, &len);
    vr = verify_extend_signature(acct->signing_secrets, acct->n_signing_secrets, ts, sig, body, len,
                                 now_ms / 1000, cfg->webhooks.max_age_seconds,
                                 cfg->webhooks.max_future_seconds);
    if (vr != VERIFY_OK) {
        send_verify_error(r, vr);
        return;
    }
    if ((plan = malloc(sizeof(*plan))) == NULL)
        goto oom;
    if (webhook_plan(body, len, cfg->webhooks.rules, cfg->webhooks.n_rules, now_ms, plan, &err) !=
        0) {
        send_api_error(r, &err);
        goto done;
    }
    n = plan->matched ? plan->n : 0;
    if (n > 0 && (items = calloc((size_t)n, sizeof(*items))) == NULL)
        goto oom;
    snprintf(reason, sizeof(reason), "extend webhook %s", plan->event_type);
    for (int i = 0; i < n; i++) {
        if (item_set(&items[i], now_ms, acct->id, plan->items[i].resource, plan->items[i].id,
                     reason, plan->items[i].not_before_ms) != 0)
            goto oom;
    }
    if ((c = ingest_ctx_new(r)) == NULL)
        goto done;
    c->from_extend = 1;
    c->ok_status = 200;
    memcpy(c->event_id, plan->event_id, sizeof(c->event_id));
    util_json_escape(plan->event_id, eid, sizeof(eid));
    snprintf(head, sizeof(head), "\"status\":\"%s\",\"event_id\":%s",
             n > 0 ? "accepted" : "ignored", eid);
    ingest_accept(c, head, "extend", acct->id, plan->event_id, items, n);
    goto done;
oom:
    http_reply_error(r, 503, "queue_unavailable", "out of memory");
done:
    free(items);
    free(plan);
}

/*
 * Finds the client whose secret signed the request. Secrets are tried per
 * client; a signature that matches but is stale still identifies the
 * client (and is refused). With mTLS, a client bound to a certificate
 * subject must present that certificate, and a certificate bound to one
 * client can never sign for another: a stolen HMAC secret alone is not
 * enough. Sends the error and returns NULL when nobody matches.
 */
static const struct client *authenticate_client(const struct http_req *r, const char *body,
                                                size_t len)
{
    const struct config *cfg = r->ctx->cfg;
    const struct client *found = NULL;
    const char *id, *ts, *sig;
    enum verify_result vr = VERIFY_BAD_SIGNATURE;
    char cn[256];
    int have_cn;

    if (http_reply_header_once(r, "webhook-id", &id) != 0 ||
        http_reply_header_once(r, "webhook-timestamp", &ts) != 0 ||
        http_reply_header_once(r, "webhook-signature", &sig) != 0)
        return NULL;
    for (int i = 0; i < cfg->n_clients; i++) {
        vr = verify_standard_webhook(cfg->clients[i].secrets, cfg->clients[i].n_secrets, id, ts,
                                     sig, body, len, util_now_ms() / 1000,
                                     cfg->internal.timestamp_tolerance_seconds);
        if (vr == VERIFY_MALFORMED)
            break;
        if (vr != VERIFY_BAD_SIGNATURE) {
            found = &cfg->clients[i];
            break;
        }
    }
    if (found == NULL || vr != VERIFY_OK) {
        send_verify_error(r, found == NULL && vr != VERIFY_MALFORMED ? VERIFY_BAD_SIGNATURE : vr);
        return NULL;
    }
    have_cn = r->ctx->tls != NULL && tls_peer_subject_cn(r->req, cn, sizeof(cn)) == 0;
    if (found->cert_subject != NULL && (!have_cn || strcmp(found->cert_subject, cn) != 0)) {
        http_reply_error(r, 403, "client_certificate_mismatch",
                         "client %s must present its bound client certificate", found->id);
        return NULL;
    }
    for (int i = 0; have_cn && i < cfg->n_clients; i++) {
        const struct client *other = &cfg->clients[i];

        if (other != found && other->cert_subject != NULL && strcmp(other->cert_subject, cn) == 0) {
            http_reply_error(r, 403, "client_certificate_mismatch",
                             "this client certificate belongs to another client");
            return NULL;
        }
    }
    return found;
}

/* Maps each item's account to a configured one ("" = the default) that
 * the client may name: 400 unknown_account, 403 account_not_allowed. The
 * request's own account is the first item's. 0, or -1 with the answer sent. */
static int resolve_accounts(const struct http_req *r, const struct client *client,
                            const struct erasure_item *parsed, int n, int *acct_of)
{
    const struct config *cfg = r->ctx->cfg;
    char where[40];

    for (int i = 0; i < n; i++) {
        int a = parsed[i].account[0] != '\0' ? config_account_find(cfg, parsed[i].account, 0) : 0;

        if (n > 1)
            snprintf(where, sizeof(where), "items[%d].account", i);
        else
            snprintf(where, sizeof(where), "account");
        if (a < 0) {
            http_reply_error(r, 400, "unknown_account", "%s: no account \"%s\" is configured",
                             where, parsed[i].account);
            return -1;
        }
        if (!(client->account_mask & (1u << a))) {
            http_reply_error(r, 403, "account_not_allowed",
                             "%s: client %s may not request deletions in account \"%s\"", where,
                             client->id, cfg->accounts[a].id);
            return -1;
        }
        acct_of[i] = a;
    }
    return 0;
}

void http_ingest_create(struct http_req *r, const char *arg)
{
    int *acct_of = NULL;
    const struct client *client;
    struct erasure_item *parsed = NULL;
    struct queue_item *items = NULL;
    struct ingest_ctx *c;
    struct api_error err;
    const char *body, *key;
    int64_t now_ms = util_now_ms();
    size_t len;
    int n = 0;

    (void)arg;
    if (http_reply_require_json(r) != 0)
        return;
    body = http_reply_body(r, &len);
    if ((client = authenticate_client(r, body, len)) == NULL)
        return;
    key = evhttp_find_header(evhttp_request_get_input_headers(r->req), "webhook-id");
    if (erasure_parse(body, len, r->ctx->cfg->internal.max_batch_items, now_ms, &parsed, &n,
                      &err) != 0) {
        send_api_error(r, &err);
        return;
    }
    if ((items = calloc((size_t)n, sizeof(*items))) == NULL ||
        (acct_of = calloc((size_t)n, sizeof(*acct_of))) == NULL)
        goto oom;
    if (resolve_accounts(r, client, parsed, n, acct_of) != 0)
        goto done;
    for (int i = 0; i < n; i++) {
        if (item_set(&items[i], now_ms, r->ctx->cfg->accounts[acct_of[i]].id, parsed[i].resource,
                     parsed[i].id, parsed[i].reason, parsed[i].not_before_ms) != 0)
            goto oom;
    }
    if ((c = ingest_ctx_new(r)) == NULL)
        goto done;
    c->ok_status = 202;
    ingest_accept(c, "\"status\":\"accepted\"", client->id, r->ctx->cfg->accounts[acct_of[0]].id,
                  key, items, n);
    goto done;
oom:
    http_reply_error(r, 503, "queue_unavailable", "out of memory");
done:
    free(acct_of);
    free(items);
    free(parsed);
}

struct get_ctx {
    struct http_req r;
    int receipt;
};

static void get_done(const struct queue_deletion_view *v, int failed, void *arg)
{
    struct get_ctx *g = arg;
    const struct http_req *r = &g->r;
    char *text = NULL;

    http_reply_release(r);
    if (failed) {
        http_reply_error(r, 503, "queue_unavailable", "the queue did not answer");
    } else if (v == NULL) {
        http_reply_error(r, 404, "not_found", "no deletion with this id");
    } else if (!g->receipt) {
        http_reply_view(r, v);
    } else if (r->ctx->receipt_key == NULL) {
        http_reply_error(r, 404, "receipts_disabled",
                         "receipts are turned off (receipts.enabled is false)");
    } else if (v->state != DEL_DELETED && v->state != DEL_NOT_FOUND) {
        http_reply_error(r, 409, "receipt_not_available",
                         "the deletion is %s; receipts exist for deleted or not_found",
                         deletion_state_name(v->state));
    } else if (receipt_make(r->ctx->receipt_key, v, util_now_ms(), &text) != 0) {
        http_reply_error(r, 503, "receipt_failed", "the receipt could not be signed");
    } else {
        http_reply_json(r, 200, text);
    }
    free(text);
    free(g);
}

void http_ingest_get(struct http_req *r, const char *rest)
{
    const char *slash = strchr(rest, '/');
    size_t idlen = slash != NULL ? (size_t)(slash - rest) : strlen(rest);
    char id[QUEUE_DELETION_ID_MAX + 1];
    struct get_ctx *g;

    if (slash != NULL && strcmp(slash, "/receipt") != 0) {
        http_reply_error(r, 404, "not_found", "no such route");
        return;
    }
    if (!http_view_id_valid(rest, idlen)) {
        http_reply_error(r, 404, "not_found", "no deletion with this id");
        return;
    }
    /* A read is signed like a write, over an empty body. */
    if (authenticate_client(r, "", 0) == NULL)
        return;
    memcpy(id, rest, idlen);
    id[idlen] = '\0';
    if ((g = calloc(1, sizeof(*g))) == NULL) {
        http_reply_error(r, 503, "queue_unavailable", "out of memory");
        return;
    }
    g->r = *r;
    g->receipt = slash != NULL;
    http_reply_hold(r);
    if (queue_get(r->ctx->queue, id, get_done, g) != 0) {
        http_reply_release(r);
        free(g);
        http_reply_error(r, 503, "queue_unavailable", "the gateway is stopping");
    }
}
