/*
 * queue_calls.c: the public calls of queue.h (loop thread). Each checks
 * and copies its arguments into one op, so nothing the caller owns is
 * read after it returns, and bounds what it takes, so one request cannot
 * make a cycle huge; queue.c's worker runs the op.
 */
#include "queue_layer.h"
#include "log.h"
#include "resource.h"
#include "util.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bounds on what callers hand in, so one request cannot make a cycle huge. */
#define Q_MAX_ITEMS 10000
#define Q_MAX_BODY (1 << 20) /* a 1000-item batch answer is about 110 KB */
#define Q_REQUEST_ID_MAX 63
#define Q_CLAIM_MAX 1000
#define Q_LEASE_MAX_MS (7 * 86400000LL)

/* Queues op for the worker; frees it and returns -1 once closing. */
static int q_enqueue(struct queue *q, struct op *op)
{
    pthread_mutex_lock(&q->mu);
    if (q->stopping) {
        pthread_mutex_unlock(&q->mu);
        free(op);
        return -1;
    }
    op->next = NULL;
    *q->pending_tail = op;
    q->pending_tail = &op->next;
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
    return 0;
}

static struct op *q_op_new(enum op_kind kind, size_t extra, void *arg)
{
    struct op *op = calloc(1, sizeof(*op) + extra);

    if (op == NULL)
        return NULL;
    op->kind = kind;
    op->arg = arg;
    op->now_ms = util_now_ms();
    return op;
}

static int q_str_ok(const char *s, size_t min, size_t max)
{
    size_t n;

    if (s == NULL)
        return min == 0;
    n = strnlen(s, max + 1);
    return n >= min && n <= max;
}

/* An account id as config.c allows them, or "" (the default). */
static int q_account_ok(const char *s, size_t min)
{
    size_t n = s != NULL ? strnlen(s, QUEUE_ACCOUNT_MAX + 1) : 0;

    return q_str_ok(s, min, QUEUE_ACCOUNT_MAX) && (n == 0 || resource_account_id_valid(s, n));
}

static int q_items_ok(const struct queue_item *items, int n)
{
    for (int i = 0; i < n; i++) {
        const struct queue_item *it = &items[i];
        if (!q_str_ok(it->deletion_id, 1, QUEUE_DELETION_ID_MAX) || !q_account_ok(it->account, 0) ||
            (int)it->resource < 0 || it->resource >= RES_COUNT ||
            !resource_id_valid(it->resource_id, strnlen(it->resource_id, RESOURCE_ID_MAX + 1)) ||
            !q_str_ok(it->reason, 0, ERASURE_REASON_MAX))
            return 0;
    }
    return 1;
}

int queue_submit(struct queue *q, const struct queue_submission *sub, queue_submit_cb cb, void *arg)
{
    int valid =
        sub->n_items >= 0 && sub->n_items <= Q_MAX_ITEMS &&
        (sub->n_items == 0 || sub->items != NULL) && q_str_ok(sub->source, 1, QUEUE_SOURCE_MAX) &&
        q_str_ok(sub->key, 1, QUEUE_KEY_MAX) && q_str_ok(sub->request_id, 0, Q_REQUEST_ID_MAX) &&
        q_str_ok(sub->response_body, 0, Q_MAX_BODY) && q_account_ok(sub->account, 0) &&
        q_items_ok(sub->items, sub->n_items);
    size_t n_items = valid ? (size_t)sub->n_items : 0;
    size_t ls = 0, lk = 0, lr = 0, lb = 0, la = 0, items_size = n_items * sizeof(struct queue_item);
    const char *account =
        sub->account != NULL && sub->account[0] != '\0' ? sub->account : QUEUE_DEFAULT_ACCOUNT;
    struct op *op;
    char *p;

    if (valid) {
        ls = strlen(sub->source) + 1;
        lk = strlen(sub->key) + 1;
        lr = (sub->request_id != NULL ? strlen(sub->request_id) : 0) + 1;
        lb = (sub->response_body != NULL ? strlen(sub->response_body) : 0) + 1;
        la = strlen(account) + 1;
    }
    /* One allocation holds the op, its items and its strings. */
    op = q_op_new(OP_SUBMIT, items_size + ls + lk + lr + lb + la, arg);
    if (op == NULL)
        return -1;
    op->cb.submit = cb;
    if (!valid) {
        log_warn(sub->request_id, "queue: submission out of bounds refused");
        op->failed = 1;
        return q_enqueue(q, op);
    }
    if (sub->now_ms > 0)
        op->now_ms = sub->now_ms;
    p = (char *)(op + 1);
    if (n_items > 0)
        memcpy(p, sub->items, items_size);
    for (size_t i = 0; i < n_items; i++) {
        struct queue_item *it = (struct queue_item *)(void *)p + i;
        if (it->account[0] == '\0')
            snprintf(it->account, sizeof(it->account), "%s", QUEUE_DEFAULT_ACCOUNT);
    }
    op->in.submit.items = (const struct queue_item *)p;
    op->in.submit.n_items = (int)n_items;
    p += items_size;
    op->in.submit.source = memcpy(p, sub->source, ls);
    p += ls;
    op->in.submit.key = memcpy(p, sub->key, lk);
    p += lk;
    op->in.submit.request_id = memcpy(p, sub->request_id != NULL ? sub->request_id : "", lr);
    p += lr;
    op->in.submit.body = memcpy(p, sub->response_body != NULL ? sub->response_body : "", lb);
    p += lb;
    op->in.submit.account = memcpy(p, account, la);
    op->in.submit.status = sub->response_status;
    return q_enqueue(q, op);
}

void queue_set_notify(struct queue *q, queue_notify_cb cb, void *arg)
{
    q->notify_cb = cb;
    q->notify_arg = arg;
}

int queue_claim(struct queue *q, int max_jobs, int64_t lease_ms, queue_claim_cb cb, void *arg)
{
    return queue_claim_account(q, "", max_jobs, lease_ms, cb, arg);
}

int queue_claim_account(struct queue *q, const char *account, int max_jobs, int64_t lease_ms,
                        queue_claim_cb cb, void *arg)
{
    struct op *op = q_op_new(OP_CLAIM, 0, arg);

    if (op == NULL)
        return -1;
    op->cb.claim = cb;
    if (!q_account_ok(account, 0)) {
        op->failed = 1;
        return q_enqueue(q, op);
    }
    snprintf(op->in.claim.account, sizeof(op->in.claim.account), "%s", account);
    op->in.claim.max_jobs = max_jobs < 1 ? 1 : max_jobs > Q_CLAIM_MAX ? Q_CLAIM_MAX : max_jobs;
    op->in.claim.lease_ms = lease_ms < 1                ? 1
                            : lease_ms > Q_LEASE_MAX_MS ? Q_LEASE_MAX_MS
                                                        : lease_ms;
    return q_enqueue(q, op);
}

int queue_complete(struct queue *q, const struct queue_outcome *o, queue_done_cb cb, void *arg)
{
    struct op *op = q_op_new(OP_COMPLETE, 0, arg);

    if (op == NULL)
        return -1;
    op->cb.done = cb;
    op->in.complete = *o;
    /* The fixed-size strings are the caller's: make sure they end. */
    op->in.complete.upstream_request_id[sizeof(o->upstream_request_id) - 1] = '\0';
    op->in.complete.error_code[sizeof(o->error_code) - 1] = '\0';
    op->in.complete.detail[sizeof(o->detail) - 1] = '\0';
    if (o->state == DEL_IN_FLIGHT || (int)o->state < 0 || o->state >= DEL_STATE_COUNT)
        op->failed = 1;
    return q_enqueue(q, op);
}

int queue_release(struct queue *q, int64_t job_id, int64_t lease, int64_t due_ms, queue_done_cb cb,
                  void *arg)
{
    struct op *op = q_op_new(OP_RELEASE, 0, arg);

    if (op == NULL)
        return -1;
    op->cb.done = cb;
    op->in.release.job_id = job_id;
    op->in.release.lease = lease;
    op->in.release.due_ms = due_ms;
    return q_enqueue(q, op);
}

/* get, retry and cancel name one deletion (retry: NULL = every dead one). */
static struct op *q_target(enum op_kind kind, const char *deletion_id, const char *actor,
                           int64_t now_ms, void *arg)
{
    struct op *op = q_op_new(kind, 0, arg);

    if (op == NULL)
        return NULL;
    if (now_ms > 0)
        op->now_ms = now_ms;
    if ((deletion_id == NULL && kind != OP_RETRY) ||
        !q_str_ok(deletion_id, kind == OP_RETRY ? 0 : 1, QUEUE_DELETION_ID_MAX) ||
        !q_str_ok(actor, 0, QUEUE_KEY_MAX))
        op->failed = 1;
    else {
        snprintf(op->in.target.id, sizeof(op->in.target.id), "%s",
                 deletion_id != NULL ? deletion_id : "");
        snprintf(op->in.target.actor, sizeof(op->in.target.actor), "%s",
                 actor != NULL ? actor : "");
    }
    if (kind == OP_RETRY && deletion_id != NULL && deletion_id[0] == '\0')
        op->failed = 1; /* "" must not mean "every dead one" */
    return op;
}

int queue_get(struct queue *q, const char *deletion_id, queue_get_cb cb, void *arg)
{
    struct op *op = q_target(OP_GET, deletion_id, NULL, 0, arg);

    if (op == NULL)
        return -1;
    op->cb.get = cb;
    return q_enqueue(q, op);
}

int queue_stats(struct queue *q, queue_stats_cb cb, void *arg)
{
    struct op *op = q_op_new(OP_STATS, 0, arg);

    if (op == NULL)
        return -1;
    op->cb.stats = cb;
    return q_enqueue(q, op);
}

int queue_list(struct queue *q, enum deletion_state state, int limit, queue_list_cb cb, void *arg)
{
    struct op *op = q_op_new(OP_LIST, 0, arg);

    if (op == NULL)
        return -1;
    op->cb.list = cb;
    op->in.list.state = state;
    op->in.list.limit = limit < 0 ? 0 : limit > QUEUE_LIST_MAX ? QUEUE_LIST_MAX : limit;
    if ((int)state < 0 || state >= DEL_STATE_COUNT)
        op->failed = 1;
    return q_enqueue(q, op);
}

int queue_cursor_parse(const char *s, int64_t *accepted_ms, int64_t *seq)
{
    char ms[24];
    const char *dash;
    size_t n;

    if (s == NULL || strlen(s) > QUEUE_CURSOR_MAX || (dash = strchr(s, '-')) == NULL)
        return -1;
    n = (size_t)(dash - s);
    if (n == 0 || n >= sizeof(ms))
        return -1;
    memcpy(ms, s, n);
    ms[n] = '\0';
    return util_parse_int64(ms, 0, INT64_MAX, accepted_ms) == 0 &&
                   util_parse_int64(dash + 1, 0, INT64_MAX, seq) == 0
               ? 0
               : -1;
}

void queue_cursor_format(int64_t accepted_ms, int64_t seq, char out[QUEUE_CURSOR_MAX + 1])
{
    snprintf(out, QUEUE_CURSOR_MAX + 1, "%lld-%lld", (long long)accepted_ms, (long long)seq);
}

int queue_export(struct queue *q, const struct queue_export_query *query, const char *cursor,
                 int limit, queue_export_cb cb, void *arg)
{
    struct op *op = q_op_new(OP_EXPORT, 0, arg);
    int64_t after_ms = 0, after_seq = 0;

    if (op == NULL)
        return -1;
    op->cb.export = cb;
    op->in.export.limit = limit < 1 ? 1 : limit > QUEUE_EXPORT_MAX ? QUEUE_EXPORT_MAX : limit;
    op->in.export.state = query->state;
    op->in.export.until_ms = query->until_ms > 0 ? query->until_ms : INT64_MAX;
    /* rowids start at 1: (since_ms, 0) is just before the first row of since_ms. */
    op->in.export.after_ms = query->since_ms > 0 ? query->since_ms : 0;
    if (cursor != NULL && cursor[0] != '\0') {
        if (queue_cursor_parse(cursor, &after_ms, &after_seq) != 0)
            op->failed = 1;
        /* A cursor from another query cannot reach before since_ms. */
        if (after_ms >= op->in.export.after_ms) {
            op->in.export.after_ms = after_ms;
            op->in.export.after_seq = after_seq;
        }
    }
    if (query->state < -1 || query->state >= DEL_STATE_COUNT ||
        !q_str_ok(query->source, 0, QUEUE_SOURCE_MAX) ||
        !q_str_ok(query->resource_id, 0, RESOURCE_ID_MAX))
        op->failed = 1;
    else {
        snprintf(op->in.export.source, sizeof(op->in.export.source), "%s",
                 query->source != NULL ? query->source : "");
        snprintf(op->in.export.resource_id, sizeof(op->in.export.resource_id), "%s",
                 query->resource_id != NULL ? query->resource_id : "");
    }
    return q_enqueue(q, op);
}

/* retry and cancel: an operator's action on one deletion, answered with a count. */
static int q_operator(struct queue *q, enum op_kind kind, const char *deletion_id,
                      const char *actor, int64_t now_ms, queue_count_cb cb, void *arg)
{
    struct op *op = q_target(kind, deletion_id, actor, now_ms, arg);

    if (op == NULL)
        return -1;
    op->cb.count = cb;
    return q_enqueue(q, op);
}

int queue_retry(struct queue *q, const char *deletion_id, const char *actor, int64_t now_ms,
                queue_count_cb cb, void *arg)
{
    return q_operator(q, OP_RETRY, deletion_id, actor, now_ms, cb, arg);
}

int queue_cancel(struct queue *q, const char *deletion_id, const char *actor, int64_t now_ms,
                 queue_count_cb cb, void *arg)
{
    return q_operator(q, OP_CANCEL, deletion_id, actor, now_ms, cb, arg);
}

/* A note (config_loaded on SIGHUP) and a pause are both one audit record;
 * a pause also changes the queue's stored state. */
static int q_note(struct queue *q, enum op_kind kind, const char *event, const char *source,
                  const char *detail, int paused, const char *account, queue_done_cb cb, void *arg)
{
    struct op *op = q_op_new(kind, 0, arg);

    if (op == NULL)
        return -1;
    op->cb.done = cb;
    op->in.note.paused = paused;
    snprintf(op->in.note.account, sizeof(op->in.note.account), "%s", account ? account : "");
    if (!q_str_ok(event, 1, sizeof(op->in.note.event) - 1) ||
        !q_str_ok(source, kind == OP_PAUSE, QUEUE_SOURCE_MAX) ||
        !q_str_ok(detail, 0, sizeof(op->in.note.detail) - 1))
        op->failed = 1;
    else {
        snprintf(op->in.note.event, sizeof(op->in.note.event), "%s", event);
        snprintf(op->in.note.source, sizeof(op->in.note.source), "%s", source ? source : "");
        snprintf(op->in.note.detail, sizeof(op->in.note.detail), "%s", detail ? detail : "");
    }
    return q_enqueue(q, op);
}

/* One account's pause is recorded as the operator's action with the
 * account named in its detail, as "account ID". */
int queue_set_paused(struct queue *q, const char *account, int paused, const char *actor,
                     queue_done_cb cb, void *arg)
{
    char detail[64] = "";
    int known = account == NULL;

    for (int i = 0; !known && i < q->n_accounts; i++)
        known = strcmp(account, q->account_ids[i]) == 0;
    if (!known)
        return -1;
    if (account != NULL)
        snprintf(detail, sizeof(detail), "account %s", account);
    return q_note(q, OP_PAUSE, paused ? "paused" : "resumed", actor, account ? detail : NULL,
                  paused != 0, account, cb, arg);
}

int queue_paused(const struct queue *q, const char *account)
{
    unsigned all = q->n_accounts >= 32 ? ~0u : (1u << q->n_accounts) - 1;

    for (int i = 0; account != NULL && i < q->n_accounts; i++)
        if (strcmp(account, q->account_ids[i]) == 0)
            return (q->paused >> i) & 1;
    return account == NULL && (q->paused & all) == all;
}

int queue_audit_note(struct queue *q, const char *event, const char *source, const char *detail,
                     queue_done_cb cb, void *arg)
{
    return q_note(q, OP_NOTE, event, source, detail, 0, NULL, cb, arg);
}

int queue_maintain(struct queue *q, queue_count_cb cb, void *arg)
{
    struct op *op = q_op_new(OP_MAINTAIN, 0, arg);

    if (op == NULL)
        return -1;
    op->cb.count = cb;
    q->maintain_pending = 1;
    return q_enqueue(q, op);
}
