/*
 * http_health.c: liveness, readiness and the metrics exposition.
 *
 *   /healthz   the process answers
 *   /readyz    readiness.c's answer, with its parts
 *   /metrics   Prometheus text, with the queue's counts
 *
 * Probes use HEAD too; http_reply_send leaves the body out.
 */
#include "http_health.h"

#include <stdio.h>
#include <stdlib.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "audit.h"
#include "config.h"
#include "dispatch.h"
#include "http_reply.h"
#include "metrics.h"
#include "queue.h"
#include "readiness.h"
#include "util.h"

void http_health_live(struct http_req *r, const char *arg)
{
    (void)arg;
    http_reply_json(r, 200, "{\"status\":\"ok\"}");
}

/* A cycle that commits, as the dispatcher's claims do, says the queue and
 * the audit log take changes again (or still do not). */
static void ready_cycle_done(const struct queue_stats *stats, int failed, void *arg)
{
    struct readiness *ready = arg;

    (void)stats;
    readiness_set_queue_failing(ready, failed);
}

/* Ready, for /readyz and dg_ready alike; *audit names the audit log's
 * state and *audit_ok says whether it takes records. */
static int ready_now(const struct http_ctx *ctx, const char **audit, int *audit_ok)
{
    int ok = audit_healthy(ctx->audit, audit);

    if (audit_ok != NULL)
        *audit_ok = ok;
    return readiness_ready(ctx->ready, ok);
}

void http_health_ready(struct http_req *r, const char *arg)
{
    const struct http_ctx *ctx = r->ctx;
    const struct readiness *rd = ctx->ready;
    /* 16 accounts of at most 32 characters fit, with room. */
    char body[320 + CONFIG_MAX_ACCOUNTS * 160];
    const char *audit = "ok";
    int n;
    int audit_ok, ready = ready_now(ctx, &audit, &audit_ok);

    (void)arg;
    /* The audit log repairs itself, and a failed commit is found to work
     * again, only when the queue runs a cycle; an idle gateway runs none,
     * and one kept out of service by this answer gets no traffic to run
     * one. A read-only cycle gives them the chance. */
    if ((!audit_ok || readiness_queue_failing(rd)) && !readiness_stopping(rd))
        (void)queue_stats(ctx->queue, ready_cycle_done, ctx->ready);
    n = snprintf(body, sizeof(body),
                 "{\"status\":\"%s\",\"queue\":\"%s\",\"upstream_credentials\":\"%s\","
                 "\"upstream_connection\":\"%s\",\"dispatch\":\"%s\",\"audit\":\"%s\","
                 "\"accounts\":{",
                 ready ? "ready" : "not_ready", readiness_queue_failing(rd) ? "failing" : "ok",
                 readiness_breaker_open(rd) ? "rejected" : "ok",
                 dispatch_unreachable(ctx->dispatch) ? "unreachable" : "ok",
                 readiness_stopping(rd)           ? "stopping"
                 : dispatch_paused(ctx->dispatch) ? "paused"
                                                  : "running",
                 audit);
    /* Each account's own view: one account's rejected key leaves the
     * others delivering, and the gateway ready. Ids are [a-z0-9_-]. */
    for (int i = 0; i < ctx->cfg->n_accounts && n > 0 && (size_t)n < sizeof(body); i++) {
        struct dispatch_state ds;
        dispatch_account_state(ctx->dispatch, i, &ds);
        n += snprintf(body + n, sizeof(body) - (size_t)n,
                      "%s\"%s\":{\"upstream_credentials\":\"%s\",\"upstream_connection\":\"%s\","
                      "\"dispatch\":\"%s\"}",
                      i ? "," : "", ctx->cfg->accounts[i].id, ds.breaker_open ? "rejected" : "ok",
                      ds.unreachable ? "unreachable" : "ok",
                      readiness_stopping(rd) ? "stopping"
                      : ds.paused            ? "paused"
                                             : "running");
    }
    if (n > 0 && (size_t)n < sizeof(body))
        snprintf(body + n, sizeof(body) - (size_t)n, "}}");
    http_reply_json(r, ready ? 200 : 503, body);
}

struct metrics_ctx {
    struct http_req r;
};

static void metrics_stats_done(const struct queue_stats *stats, int failed, void *arg)
{
    struct metrics_ctx *mc = arg;
    const struct http_req *r = &mc->r;
    struct evbuffer *out = evhttp_request_get_output_buffer(r->req);

    http_reply_release(r);
    /* Counted before rendering, so the exposition includes itself. */
    metrics_request(r->label, 200);
    metrics_set_ready(ready_now(r->ctx, NULL, NULL));
    metrics_render(out, failed ? NULL : stats, util_now_ms());
    metrics_render_audit(out, r->ctx->audit);
    evhttp_add_header(evhttp_request_get_output_headers(r->req), "Content-Type",
                      "text/plain; version=0.0.4; charset=utf-8");
    http_reply_send(r, 200);
    free(mc);
}

void http_health_metrics(struct http_req *r, const char *arg)
{
    struct metrics_ctx *mc = malloc(sizeof(*mc));

    (void)arg;
    if (mc == NULL) {
        http_reply_error(r, 503, "queue_unavailable", "out of memory");
        return;
    }
    mc->r = *r;
    http_reply_hold(r);
    if (queue_stats(r->ctx->queue, metrics_stats_done, mc) != 0) {
        http_reply_release(r);
        free(mc);
        http_reply_error(r, 503, "queue_unavailable", "the queue is closing");
    }
}
