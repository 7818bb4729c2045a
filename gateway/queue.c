/*
 * queue.c: the queue of queue.h, whatever the storage (queue_backend.h).
 *
 * Map of this file:
 *   names       deletion states as stored, audited and shown
 *   cycle       the worker loop: take every pending op, run them all in
 *               one transaction of the backend, sync the audit log, COMMIT,
 *               hand the results back to the event loop
 *   delivery    the loop-thread side: one table of callbacks per op kind
 *   open/close  the backend chosen by queue.backend, the start-up check of
 *               the queue against the audit log, the worker thread
 *
 * The public calls, which copy and bound their arguments into an op, are
 * in queue_calls.c; queue_layer.h is what the two files share.
 *
 * Threads. The event loop thread only copies arguments into an op and
 * appends it to `pending` under `mu`; the worker alone talks to the store.
 * Results travel back on `done` and one event_active() on an event of the
 * loop's base, which is why the process must call evthread_use_pthreads()
 * before creating that base. Callbacks therefore always run on the loop
 * thread and never inside the call that queued them.
 *
 * Group commit. Every op that arrives while a commit is running waits for
 * the next cycle, so one fsync serves all of them. A batch runs without a
 * savepoint per op; if one fails, the transaction and its audit records
 * are rolled back whole and the batch runs again with a savepoint per op,
 * so the failure stays its own. A failed COMMIT fails every op of the
 * cycle.
 */
#include "queue_layer.h"
#include "log.h"
#include "util.h"

#include <event2/event.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- names ---- */

static const char *const state_names[DEL_STATE_COUNT] = {
    [DEL_QUEUED] = "queued",       [DEL_IN_FLIGHT] = "in_flight", [DEL_DELETED] = "deleted",
    [DEL_NOT_FOUND] = "not_found", [DEL_REJECTED] = "rejected",   [DEL_DEAD] = "dead",
    [DEL_CANCELLED] = "cancelled",
};

const char *deletion_state_name(enum deletion_state s)
{
    if ((int)s < 0 || s >= DEL_STATE_COUNT)
        return "unknown";
    return state_names[s];
}

int deletion_state_from_name(const char *name, enum deletion_state *out)
{
    if (name == NULL)
        return -1;
    for (int i = 0; i < DEL_STATE_COUNT; i++) {
        if (strcmp(name, state_names[i]) == 0) {
            *out = (enum deletion_state)i;
            return 0;
        }
    }
    return -1;
}

/* ---- what the backends' ops call (worker thread) ---- */

int queue_cycle_audit(struct cycle *c, const struct audit_record *r, uint64_t *seq, char mac[65])
{
    uint64_t s = 0;
    char m[65] = "";

    if (c->q->audit != NULL && audit_append(c->q->audit, r, &s, m) != 0) {
        log_error(NULL, "queue: audit append failed (%s)", r->event);
        c->fatal = 1;
        return -1;
    }
    if (seq != NULL)
        *seq = s;
    if (mac != NULL)
        memcpy(mac, m, sizeof(m));
    return 0;
}

struct audit_record queue_operator_record(const struct op *op, const char *event,
                                          const char *deletion_id, const char *res, const char *rid)
{
    return (struct audit_record){.event = event,
                                 .time_ms = op->now_ms,
                                 .deletion_id = deletion_id,
                                 .resource = res,
                                 .resource_id = rid,
                                 .source = "operator",
                                 .key = op->in.target.actor};
}

struct audit_record queue_outcome_record(const struct op *op, const char *res, const char *rid,
                                         const char *account)
{
    const struct queue_outcome *o = &op->in.complete;

    return (struct audit_record){.time_ms = op->now_ms,
                                 .job_id = o->job_id,
                                 .resource = res,
                                 .resource_id = rid,
                                 .account = account,
                                 .http_status = o->http_status,
                                 .upstream_request_id = o->upstream_request_id,
                                 .error_code = o->error_code,
                                 .detail = o->detail};
}

void queue_cycle_note_due(struct cycle *c, int64_t due_ms)
{
    if (due_ms < c->notify_due)
        c->notify_due = due_ms;
}

int queue_op_note(struct queue_store *s, struct cycle *c, struct op *op)
{
    struct audit_record r;

    (void)s;
    memset(&r, 0, sizeof(r));
    r.event = op->in.note.event;
    r.time_ms = op->now_ms;
    r.source = op->in.note.source;
    r.detail = op->in.note.detail;
    if (queue_cycle_audit(c, &r, NULL, NULL) != 0)
        return -1;
    op->out.ok = 1;
    return 0;
}

int64_t queue_clock_ms(const struct cycle *c)
{
    return c->q->clock_ms();
}

static int q_is_terminal(enum deletion_state s)
{
    return s == DEL_DELETED || s == DEL_NOT_FOUND || s == DEL_REJECTED || s == DEL_DEAD ||
           s == DEL_CANCELLED;
}

static void q_copy(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src != NULL ? src : "");
}

int queue_view_from_row(const struct queue_row *row, struct queue_deletion_view *v)
{
    void *r = row->r;
    int own_state = !row->is_null(r, 18);

    memset(v, 0, sizeof(*v));
    q_copy(v->deletion_id, sizeof(v->deletion_id), row->text(r, 0));
    v->job_id = row->i64(r, 1);
    if (resource_from_name(row->text(r, 2), &v->resource) != 0 ||
        deletion_state_from_name(row->text(r, 4), &v->state) != 0)
        return -1;
    q_copy(v->resource_id, sizeof(v->resource_id), row->text(r, 3));
    q_copy(v->account, sizeof(v->account), row->text(r, 24));
    q_copy(v->source, sizeof(v->source), row->text(r, 5));
    q_copy(v->key, sizeof(v->key), row->text(r, 6));
    q_copy(v->request_id, sizeof(v->request_id), row->text(r, 7));
    q_copy(v->reason, sizeof(v->reason), row->text(r, 8));
    v->attempts = (int)row->i64(r, 9);
    v->last_http_status = (int)row->i64(r, 10);
    q_copy(v->last_upstream_request_id, sizeof(v->last_upstream_request_id), row->text(r, 11));
    q_copy(v->last_error, sizeof(v->last_error), row->text(r, 12));
    v->accepted_ms = row->i64(r, 13);
    v->not_before_ms = row->i64(r, 14);
    v->updated_ms = row->i64(r, 15);
    v->next_attempt_ms = v->state == DEL_QUEUED ? row->i64(r, 16) : 0;
    if (own_state) {
        /* Cancelled on its own while its job went on for others. */
        v->completed_ms = row->i64(r, 19);
        v->final_audit_seq = (uint64_t)row->i64(r, 22);
        q_copy(v->final_audit_mac, sizeof(v->final_audit_mac), row->text(r, 23));
    } else if (q_is_terminal(v->state)) {
        v->completed_ms = row->i64(r, 17);
        v->final_audit_seq = (uint64_t)row->i64(r, 20);
        q_copy(v->final_audit_mac, sizeof(v->final_audit_mac), row->text(r, 21));
    }
    return 0;
}

/* ---- the cycle (worker thread) ---- */

static void q_op_free_out(struct op *op);

static void q_fail_op(struct op *op)
{
    q_op_free_out(op);
    op->failed = 1;
}

/* Runs one batch in one transaction; with isolate, each op inside a
 * savepoint, so that a failing one fails alone. Returns 1 when, without
 * isolate, an op failed and the transaction was rolled back whole, nothing
 * answered: the batch is to run again isolated. Otherwise 0, and *due is
 * the earliest due time of the jobs the cycle made due (INT64_MAX if none
 * or if the cycle failed). */
static int q_try_cycle(struct queue *q, struct op *batch, int isolate, int64_t *due)
{
    const struct queue_backend *be = q->be;
    struct queue_store *s = q->store;
    struct cycle c = {.q = q, .notify_due = INT64_MAX};
    struct audit_mark cycle_mark, op_mark;
    struct op *op;
    uint64_t seq = 0;
    char mac[65];

    /* Audit records follow the rows: whatever the store rolls back, the
     * records appended for it are dropped too, before anything is synced. */
    if (q->audit != NULL)
        audit_mark(q->audit, &cycle_mark);
    if (be->begin(s) != 0)
        goto fail;
    for (op = batch; op != NULL; op = op->next) {
        if (op->failed)
            continue; /* refused at the door (bounds) */
        if (isolate && be->savepoint(s) != 0)
            goto fail;
        if (q->audit != NULL)
            audit_mark(q->audit, &op_mark);
        struct count_moves moves_before = c.moves;
        int64_t stale_before = c.stale;
        if (be->run[op->kind](s, &c, op) != 0) {
            c.moves = moves_before; /* rolled back with the op's rows */
            c.stale = stale_before;
            if (c.fatal || !be->in_transaction(s)) {
                q_fail_op(op);
                goto fail; /* audit broken, or the store rolled the transaction back */
            }
            if (!isolate) {
                be->rollback(s);
                if (q->audit != NULL)
                    audit_rewind(q->audit, &cycle_mark);
                return 1;
            }
            q_fail_op(op);
            if (be->rollback_savepoint(s) != 0)
                goto fail;
            if (q->audit != NULL)
                audit_rewind(q->audit, &op_mark);
        } else if (op->kind == OP_STATS) {
            op->out.stats.stale_dropped = q->stale_total + c.stale;
            op->out.stats.pruned = q->pruned_total + c.pruned;
        } else if (op->kind == OP_MAINTAIN) {
            c.pruned += op->out.count;
        }
        if (isolate && be->release_savepoint(s) != 0)
            goto fail;
    }
    if (be->end_cycle(s, &c) != 0)
        goto fail;

    /* The audit records of this cycle reach the disk before the rows that
     * they describe, so no acknowledged change is missing from the trail. */
    if (q->audit != NULL && audit_sync(q->audit) != 0) {
        log_error(NULL, "queue: audit sync failed, failing the cycle");
        goto fail_synced;
    }
    /* The queue's own copy of where the trail ends, in the same commit as
     * the changes the records describe (q_open_audit reads it). */
    if (q->audit != NULL) {
        audit_position(q->audit, &seq, mac);
        if (seq != q->audit_committed && be->meta_write_audit(s, seq, mac) != 0)
            goto fail_synced;
    }

    /* The durability point: the backend's COMMIT returns only once the
     * cycle is durable (SQLite: its WAL frames written and fsynced). A
     * crash before it loses the whole cycle, but no caller has been
     * answered yet (callbacks run after this function returns), so senders
     * retry and nothing acknowledged is lost. A crash after it and before
     * the callbacks keeps every row: the unanswered sender retries with the
     * same key and is told "duplicate", so nothing is done twice. */
    if (be->commit(s) != 0)
        goto fail_synced;
    if (q->audit != NULL && seq != q->audit_committed) {
        q->audit_committed = seq;
        audit_set_committed(q->audit, seq);
    }
    if (c.stale > 0)
        log_warn(NULL,
                 "queue: %lld completion(s) or release(s) dropped: their lease had been "
                 "taken over",
                 (long long)c.stale);
    q->stale_total += c.stale;
    q->pruned_total += c.pruned;
    *due = c.notify_due;
    return 0;

fail:
    if (q->audit != NULL)
        audit_rewind(q->audit, &cycle_mark);
fail_synced:
    /* After audit_sync() the records are on disk: written ahead, they may
     * tell of a change that a failed COMMIT then undid, never the reverse. */
    if (be->in_transaction(s))
        be->rollback(s);
    for (op = batch; op != NULL; op = op->next)
        q_fail_op(op);
    *due = INT64_MAX;
    return 0;
}

/* Most batches fail no op, so they first run without a savepoint per op
 * (opening and releasing them was a sixteenth of the worker's time per
 * request). When one fails, the batch runs again isolated, from the
 * answers it had before the first try. */
static int64_t q_run_cycle(struct queue *q, struct op *batch)
{
    int64_t due = INT64_MAX;

    if (q_try_cycle(q, batch, 0, &due) == 0)
        return due;
    for (struct op *op = batch; op != NULL; op = op->next) {
        if (!op->failed) {
            q_op_free_out(op);
            memset(&op->out, 0, sizeof(op->out));
        }
    }
    (void)q_try_cycle(q, batch, 1, &due);
    return due;
}

static void *q_worker(void *arg)
{
    struct queue *q = arg;

    pthread_mutex_lock(&q->mu);
    for (;;) {
        /* Whatever arrived during the last commit makes the next one, at
         * once: waiting for the loop to answer first (so its callers' next
         * requests join this commit) left the worker idle a third of the
         * time under load. */
        while (q->pending == NULL && !q->stopping)
            pthread_cond_wait(&q->cv, &q->mu);
        if (q->pending == NULL)
            break; /* stopping, and everything already submitted has run */
        struct op *batch = q->pending, *last;
        q->pending = NULL;
        q->pending_tail = &q->pending;
        pthread_mutex_unlock(&q->mu);

        int64_t due = q_run_cycle(q, batch);

        pthread_mutex_lock(&q->mu);
        for (last = batch; last->next != NULL; last = last->next)
            ;
        *q->done_tail = batch;
        q->done_tail = &last->next;
        q->commits++;
        if (due < q->notify_due)
            q->notify_due = due;
        pthread_mutex_unlock(&q->mu);
        event_active(q->ev_done, EV_READ, 0);
        pthread_mutex_lock(&q->mu);
    }
    pthread_mutex_unlock(&q->mu);
    return NULL;
}

/* ---- delivery (loop thread) ---- */

static void deliver_submit(struct queue *q, struct op *op)
{
    struct queue_submit_result res = {.status = QUEUE_SUBMIT_FAILED};

    (void)q;
    if (!op->failed) {
        res.status = op->out.submit.status;
        res.stored_status = op->out.submit.stored_status;
        res.stored_body = op->out.submit.stored_body;
    }
    if (op->cb.submit != NULL)
        op->cb.submit(&res, op->arg);
}

static void deliver_claim(struct queue *q, struct op *op)
{
    /* In a shared store another replica may have paused or resumed the
     * account since: each claim brings the stored state back. */
    for (int i = 0; q->be->shared && !op->failed && i < q->n_accounts; i++)
        if (strcmp(op->in.claim.account, q->account_ids[i]) == 0)
            q->paused = op->out.claim.paused ? q->paused | 1u << i : q->paused & ~(1u << i);
    if (op->cb.claim == NULL)
        return;
    if (op->failed)
        op->cb.claim(NULL, 0, INT64_MAX, 1, op->arg);
    else
        op->cb.claim(op->out.claim.jobs, op->out.claim.n, op->out.claim.next_due_ms, 0, op->arg);
}

static void deliver_done(struct queue *q, struct op *op)
{
    if (op->kind == OP_PAUSE && !op->failed) {
        unsigned bits = 0;

        for (int i = 0; i < q->n_accounts; i++)
            if (op->in.note.account[0] == '\0' ||
                strcmp(op->in.note.account, q->account_ids[i]) == 0)
                bits |= 1u << i;
        q->paused = op->in.note.paused ? q->paused | bits : q->paused & ~bits;
    }
    if (op->cb.done != NULL)
        op->cb.done(op->failed, op->arg);
}

static void deliver_view(struct queue *q, struct op *op)
{
    (void)q;
    if (op->kind == OP_GET && op->cb.get != NULL)
        op->cb.get(op->failed ? NULL : op->out.view.views, op->failed, op->arg);
    if (op->kind == OP_LIST && op->cb.list != NULL)
        op->cb.list(op->failed ? NULL : op->out.view.views, op->failed ? 0 : op->out.view.n,
                    op->failed, op->arg);
}

static void deliver_stats(struct queue *q, struct op *op)
{
    (void)q;
    if (op->cb.stats != NULL)
        op->cb.stats(op->failed ? NULL : &op->out.stats, op->failed, op->arg);
}

static void deliver_count(struct queue *q, struct op *op)
{
    if (op->kind == OP_MAINTAIN)
        q->maintain_pending = 0;
    if (op->cb.count != NULL)
        op->cb.count(op->failed ? 0 : op->out.count, op->failed, op->arg);
}

static void deliver_export(struct queue *q, struct op *op)
{
    (void)q;
    if (op->cb.export != NULL)
        op->cb.export(op->failed ? NULL : op->out.export.views, op->failed ? 0 : op->out.export.n,
                      op->failed ? "" : op->out.export.next, op->failed, op->arg);
}

static void free_submit(struct op *op)
{
    free(op->out.submit.stored_body);
    op->out.submit.stored_body = NULL;
}

static void free_claim(struct op *op)
{
    free(op->out.claim.jobs);
    op->out.claim.jobs = NULL;
}

static void free_view(struct op *op)
{
    free(op->out.view.views);
    op->out.view.views = NULL;
}

static void free_export(struct op *op)
{
    free(op->out.export.views);
    op->out.export.views = NULL;
}

/* What each kind of op hands back, and what its results hold. */
static const struct {
    void (*deliver)(struct queue *q, struct op *op);
    void (*free_out)(struct op *op); /* NULL: nothing allocated */
} op_kinds[OP_KIND_COUNT] = {
    [OP_SUBMIT] = {deliver_submit, free_submit}, [OP_CLAIM] = {deliver_claim, free_claim},
    [OP_COMPLETE] = {deliver_done, NULL},        [OP_RELEASE] = {deliver_done, NULL},
    [OP_GET] = {deliver_view, free_view},        [OP_STATS] = {deliver_stats, NULL},
    [OP_LIST] = {deliver_view, free_view},       [OP_RETRY] = {deliver_count, NULL},
    [OP_CANCEL] = {deliver_count, NULL},         [OP_NOTE] = {deliver_done, NULL},
    [OP_PAUSE] = {deliver_done, NULL},           [OP_MAINTAIN] = {deliver_count, NULL},
    [OP_EXPORT] = {deliver_export, free_export},
};

static void q_op_free_out(struct op *op)
{
    if (op_kinds[op->kind].free_out != NULL)
        op_kinds[op->kind].free_out(op);
}

static void q_finish(struct queue *q);

/* Delivers every op that has run. Returns whether the queue must now be
 * finished: a callback closed it, and nothing above still holds q. */
static int q_deliver(struct queue *q)
{
    struct op *list, *next;
    int64_t due;

    q->draining++;
    pthread_mutex_lock(&q->mu);
    list = q->done;
    q->done = NULL;
    q->done_tail = &q->done;
    due = q->notify_due;
    q->notify_due = INT64_MAX;
    pthread_mutex_unlock(&q->mu);

    for (; list != NULL; list = next) {
        next = list->next;
        op_kinds[list->kind].deliver(q, list);
        q_op_free_out(list);
        free(list);
    }
    if (due != INT64_MAX && q->notify_cb != NULL && !q->closed)
        q->notify_cb(due, q->notify_arg);
    return --q->draining == 0 && q->closed;
}

static void q_drain(struct queue *q)
{
    if (q_deliver(q))
        q_finish(q);
}

static void q_on_done(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    q_drain(arg);
}

/* Another replica made jobs due: tell the dispatcher as a local commit would. */
static void q_on_others_due(void *arg)
{
    struct queue *q = arg;

    if (q->notify_cb != NULL && !q->closed)
        q->notify_cb(util_now_ms(), q->notify_arg);
}

/* Housekeeping once a second, never two at once, so a slow one cannot pile
 * up behind itself. */
static void q_on_maintain(evutil_socket_t fd, short what, void *arg)
{
    struct queue *q = arg;

    (void)fd, (void)what;
    if (!q->maintain_pending && !q->closed)
        (void)queue_maintain(q, NULL, NULL);
}

int queue_shared(const struct queue *q)
{
    return q->be->shared;
}

uint64_t queue_commits(struct queue *q)
{
    uint64_t n;

    pthread_mutex_lock(&q->mu);
    n = q->commits;
    pthread_mutex_unlock(&q->mu);
    return n;
}

/* ---- open and close ---- */

/* Appends one record from the opening thread (the worker is not running). */
static int q_open_record(struct queue *q, const char *event, const char *source, const char *detail)
{
    struct audit_record r;

    memset(&r, 0, sizeof(r));
    r.event = event;
    r.time_ms = util_now_ms();
    r.source = source;
    r.detail = detail;
    return audit_append(q->audit, &r, NULL, NULL);
}

/* The queue and the audit log must tell the same story (audit.h). The
 * queue keeps the seq and mac of the last record it committed; the log
 * keeps, on the first record of each commit, how far the queue had
 * committed. So at start:
 *   log behind the queue (or another record at the queue's seq): the log
 *     was deleted, truncated or replaced, and going on would start a new
 *     chain that hides it;
 *   log ahead, its last commit mark at the queue's seq: the records after
 *     it were for a commit that never happened (a crash before COMMIT, or
 *     a failed one); the trail says so and goes on;
 *   log ahead, its last mark beyond the queue's seq (or none): the queue
 *     lost commits (a deleted WAL, an older copy restored), and with them
 *     acknowledged deletions.
 * A mismatch stops the start unless the operator accepts it knowingly,
 * which the trail records. Then the start's own record (config_loaded)
 * and the queue's new position commit together. */
static int q_open_audit(struct queue *q, const struct queue_options *opts, char *err, size_t errlen)
{
    const struct queue_backend *be = q->be;
    int64_t qseq = -1;
    uint64_t aseq = 0, mark = 0;
    char qmac[65] = "", amac[65], problem[400] = "", note[256] = "";
    int found = 0;
    unsigned paused = 0;

    if (be->begin(q->store) != 0 || be->meta_read(q->store, &qseq, qmac, &paused) != 0) {
        snprintf(err, errlen, "queue: cannot read its own state");
        goto fail;
    }
    audit_position(q->audit, &aseq, amac);
    if (qseq >= 0 && (uint64_t)qseq < aseq) {
        found = audit_last_committed(q->audit, &mark);
        if (found < 0) {
            snprintf(err, errlen, "audit log: cannot read its last records");
            goto fail;
        }
    }
    if (qseq < 0) {
        log_info(NULL, "queue: first start with a position check: the audit log ends at seq %llu",
                 (unsigned long long)aseq);
    } else if ((uint64_t)qseq > aseq ||
               ((uint64_t)qseq == aseq && qseq > 0 && strcmp(qmac, amac) != 0)) {
        snprintf(problem, sizeof(problem),
                 "the audit log ends at seq %llu but the queue committed records up to seq %lld: "
                 "the audit log was deleted, truncated or replaced",
                 (unsigned long long)aseq, (long long)qseq);
    } else if ((uint64_t)qseq < aseq && (found == 0 || mark != (uint64_t)qseq)) {
        snprintf(problem, sizeof(problem),
                 "the audit log has records up to seq %llu and shows commits up to seq %llu, but "
                 "the queue committed only up to seq %lld: the queue lost commits (its -wal file "
                 "deleted, or an older copy restored), and acknowledged deletions with them",
                 (unsigned long long)aseq, found ? (unsigned long long)mark : aseq,
                 (long long)qseq);
    } else if ((uint64_t)qseq < aseq) {
        snprintf(note, sizeof(note),
                 "records %lld to %llu were written for a commit that did not happen (a crash or "
                 "a failed commit): their changes are not in the queue",
                 (long long)qseq + 1, (unsigned long long)aseq);
        log_warn(NULL, "queue: %s", note);
    }
    audit_set_committed(q->audit, qseq < 0 ? aseq : (uint64_t)qseq);
    if (problem[0] != '\0') {
        if (!opts->accept_audit_mismatch) {
            snprintf(err, errlen,
                     "%s. Restore the missing file(s) from a backup, or start once with "
                     "--accept-audit-mismatch to go on knowingly (the audit log records it)",
                     problem);
            goto fail;
        }
        log_warn(NULL, "queue: accepted by the operator: %s", problem);
        if (q_open_record(q, "mismatch_accepted", "operator", problem) != 0)
            goto audit_fail;
    }
    if (note[0] != '\0' && q_open_record(q, "uncommitted", "gateway", note) != 0)
        goto audit_fail;
    if (opts->open_detail != NULL &&
        q_open_record(q, opts->open_event, "operator", opts->open_detail) != 0)
        goto audit_fail;
    if (audit_sync(q->audit) != 0)
        goto audit_fail;
    audit_position(q->audit, &aseq, amac);
    if (be->meta_write_audit(q->store, aseq, amac) != 0 || be->commit(q->store) != 0) {
        snprintf(err, errlen, "queue: cannot record the audit log's position");
        goto fail;
    }
    q->audit_committed = aseq;
    audit_set_committed(q->audit, aseq);
    return 0;
audit_fail:
    snprintf(err, errlen, "audit log: cannot write its records at start");
fail:
    if (be->in_transaction(q->store))
        be->rollback(q->store);
    return -1;
}

static const struct queue_backend *q_backend(const char *name)
{
    if (name == NULL || strcmp(name, "sqlite") == 0)
        return &queue_sqlite_backend;
    if (strcmp(name, "postgres") == 0)
        return &queue_pg_backend;
    return NULL;
}

static void q_free(struct queue *q)
{
    if (q->store != NULL && q->be->unwatch != NULL)
        q->be->unwatch(q->store);
    if (q->store != NULL)
        q->be->close(q->store);
    if (q->ev_done != NULL)
        event_free(q->ev_done);
    if (q->ev_maintain != NULL)
        event_free(q->ev_maintain);
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
    free(q);
}

int queue_open(struct queue **out, struct event_base *base, const struct queue_options *opts,
               char *err, size_t errlen)
{
    struct queue *q = NULL;
    int64_t qseq;
    char qmac[65];

    *out = NULL;
    q = calloc(1, sizeof(*q));
    if (q == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    q->audit = opts->audit;
    q->clock_ms = opts->clock_ms != NULL ? opts->clock_ms : util_now_ms;
    q->pending_tail = &q->pending;
    q->done_tail = &q->done;
    q->notify_due = INT64_MAX;
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    if (opts->n_accounts < 0 || opts->n_accounts > QUEUE_MAX_ACCOUNTS) {
        snprintf(err, errlen, "queue: %d accounts, at most %d", opts->n_accounts,
                 QUEUE_MAX_ACCOUNTS);
        goto fail;
    }
    q->n_accounts = opts->n_accounts > 0 ? opts->n_accounts : 1;
    for (int i = 0; i < q->n_accounts; i++)
        snprintf(q->account_ids[i], sizeof(q->account_ids[i]), "%s",
                 opts->n_accounts > 0 ? opts->accounts[i].id : "default");
    if ((q->be = q_backend(opts->backend)) == NULL) {
        snprintf(err, errlen, "queue.backend \"%s\" is not one this gateway has", opts->backend);
        goto fail;
    }
    if (q->be->open(opts, &q->store, err, errlen) != 0)
        goto fail;
    if (q->audit != NULL) {
        if (q_open_audit(q, opts, err, errlen) != 0)
            goto fail;
    }
    if (q->be->begin(q->store) != 0 || q->be->meta_read(q->store, &qseq, qmac, &q->paused) != 0) {
        snprintf(err, errlen, "queue: cannot read its own state");
        goto fail;
    }
    q->be->rollback(q->store);
    q->ev_done = event_new(base, -1, 0, q_on_done, q);
    q->ev_maintain = event_new(base, -1, EV_PERSIST, q_on_maintain, q);
    {
        struct timeval second = {1, 0};
        if (q->ev_done == NULL || q->ev_maintain == NULL ||
            event_add(q->ev_maintain, &second) != 0) {
            snprintf(err, errlen, "cannot create queue events");
            goto fail;
        }
    }
    if (q->be->watch != NULL && q->be->watch(q->store, base, q_on_others_due, q) != 0)
        log_warn(NULL, "queue: cannot listen for other replicas' work; looking once a second");
    if (pthread_create(&q->worker, NULL, q_worker, q) != 0) {
        snprintf(err, errlen, "cannot start queue worker");
        goto fail;
    }
    q->worker_started = 1;
    *out = q;
    return 0;
fail:
    q_free(q);
    return -1;
}

/* Answers everything that has run (callbacks that call queue_close again
 * find it closed) and frees the queue. */
static void q_finish(struct queue *q)
{
    (void)q_deliver(q);
    q_free(q);
}

void queue_close(struct queue *q)
{
    if (q == NULL || q->closed)
        return;
    q->closed = 1;
    if (q->ev_maintain != NULL)
        event_del(q->ev_maintain);
    pthread_mutex_lock(&q->mu);
    q->stopping = 1;
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
    if (q->worker_started)
        pthread_join(q->worker, NULL);
    /* Everything submitted has run; answer it here rather than leave
     * callers waiting on an event that will be freed. Called from inside
     * a queue callback, the delivery in progress does it when it ends. */
    if (q->draining == 0)
        q_finish(q);
}
