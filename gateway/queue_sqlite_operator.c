/*
 * queue_sqlite_operator.c: what the API and ctl read and change in the
 * SQLite queue: one deletion's view, stats, lists, the compliance export,
 * retry, cancel and pause. Run on the worker inside the cycle's
 * transaction, like every op (queue_sqlite.h).
 */
#include "queue_sqlite.h"
#include "log.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define Q_RETRY_ALL_MAX 10000

static const char *q_row_text(void *r, int col)
{
    const unsigned char *t = sqlite3_column_text(r, col);

    return t != NULL ? (const char *)t : "";
}

static int64_t q_row_i64(void *r, int col)
{
    return sqlite3_column_int64(r, col);
}

static int q_row_null(void *r, int col)
{
    return sqlite3_column_type(r, col) == SQLITE_NULL;
}

/* Fills a view from one VIEW_COLS row (queue_view_from_row). */
static int q_view_read(sqlite3_stmt *st, struct queue_deletion_view *v)
{
    struct queue_row row = {st, q_row_text, q_row_i64, q_row_null};

    return queue_view_from_row(&row, v);
}

int sq_op_get(struct queue_store *q, struct cycle *c, struct op *op)
{
    sqlite3_stmt *st = q->st[S_VIEW_GET];
    struct queue_deletion_view *v;
    int rc = SQLITE_DONE;
    (void)c;

    sq_bind_text(st, 1, op->in.target.id);
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(st);
        return rc == SQLITE_DONE ? 0 : -1; /* unknown id: view NULL, not a failure */
    }
    v = malloc(sizeof(*v));
    if (v == NULL || q_view_read(st, v) != 0) {
        sqlite3_reset(st);
        free(v);
        return -1;
    }
    sqlite3_reset(st);
    op->out.view.views = v;
    op->out.view.n = 1;

    st = q->st[S_VIEW_ATTEMPTS];
    rc = SQLITE_DONE;
    sqlite3_bind_int64(st, 1, v->job_id);
    sqlite3_bind_int(st, 2, QUEUE_VIEW_ATTEMPTS);
    while (v->n_attempts < QUEUE_VIEW_ATTEMPTS && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct queue_attempt_view *a = &v->attempt[v->n_attempts++];
        a->started_ms = sqlite3_column_int64(st, 0);
        a->finished_ms = sqlite3_column_int64(st, 1);
        a->http_status = sqlite3_column_int(st, 2);
        sq_col_copy(st, 3, a->upstream_request_id, sizeof(a->upstream_request_id));
        sq_col_copy(st, 4, a->error_code, sizeof(a->error_code));
        sq_col_copy(st, 5, a->detail, sizeof(a->detail));
    }
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        sq_sql_error(q, sq_stmt_sql[S_VIEW_ATTEMPTS]);
        return -1;
    }
    return 0;
}

/* Reads the trigger-kept counts: a few rows, whatever the queue's size,
 * so a metrics scrape never holds up a commit. */
int sq_op_stats(struct queue_store *q, struct cycle *c, struct op *op)
{
    sqlite3_stmt *st = q->st[S_STATS_STATES];
    struct queue_stats *s = &op->out.stats;
    int rc;
    (void)c;

    memset(s, 0, sizeof(*s));
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        enum deletion_state ds;
        if (deletion_state_from_name((const char *)sqlite3_column_text(st, 0), &ds) == 0)
            s->count[ds] = sqlite3_column_int64(st, 1);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return -1;
    st = q->st[S_STATS_PENDING];
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        s->jobs_pending = sqlite3_column_int64(st, 0);
        s->oldest_pending_ms = sqlite3_column_int64(st, 1);
    }
    sqlite3_reset(st);
    {
        struct stat wal;
        const char *wal_path = sqlite3_filename_wal(sqlite3_db_filename(q->db, "main"));

        s->wal_bytes = wal_path != NULL && stat(wal_path, &wal) == 0 ? (int64_t)wal.st_size : 0;
    }
    s->checkpoint_failures = (int64_t)__atomic_load_n(&q->ckpt_failures, __ATOMIC_RELAXED);
    return rc == SQLITE_ROW ? 0 : -1;
}

int sq_op_list(struct queue_store *q, struct cycle *c, struct op *op)
{
    int cancelled = op->in.list.state == DEL_CANCELLED, limit = op->in.list.limit, n = 0;
    int rc = SQLITE_DONE;
    sqlite3_stmt *st = q->st[cancelled ? S_LIST_CANCELLED : S_LIST_BY_JOB_STATE];
    struct queue_deletion_view *v = malloc((size_t)(limit > 0 ? limit : 1) * sizeof(*v));
    (void)c;

    if (v == NULL)
        return -1;
    if (cancelled) {
        sqlite3_bind_int(st, 1, limit);
    } else {
        sq_bind_text(st, 1, deletion_state_name(op->in.list.state));
        sqlite3_bind_int(st, 2, limit);
    }
    while (n < limit && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (q_view_read(st, &v[n]) == 0)
            n++;
    }
    sqlite3_reset(st);
    if (n < limit && rc != SQLITE_DONE) {
        free(v);
        return -1;
    }
    op->out.view.views = v;
    op->out.view.n = n;
    return 0;
}

/* One page of an export: rows after the cursor in (accepted_ms, rowid)
 * order, filtered here rather than in SQL so that a page reads at most
 * QUEUE_EXPORT_SCAN rows however few match; the cursor moves past every
 * row read, matched or not. */
int sq_op_export(struct queue_store *q, struct cycle *c, struct op *op)
{
    const struct queue_deletion_view *cur;
    int by_resource = op->in.export.resource_id[0] != '\0', limit = op->in.export.limit;
    sqlite3_stmt *st = q->st[by_resource ? S_EXPORT_RESOURCE : S_EXPORT_SCAN];
    struct queue_deletion_view *v = malloc((size_t)limit * sizeof(*v));
    int64_t last_ms = op->in.export.after_ms, last_seq = op->in.export.after_seq;
    int n = 0, scanned = 0, rc = SQLITE_DONE;
    (void)c;

    if (v == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, last_ms);
    sqlite3_bind_int64(st, 2, last_seq);
    sqlite3_bind_int64(st, 3, op->in.export.until_ms);
    if (by_resource)
        sq_bind_text(st, 4, op->in.export.resource_id);
    while (n < limit && scanned < QUEUE_EXPORT_SCAN && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        scanned++;
        last_ms = sqlite3_column_int64(st, 13);
        last_seq = sqlite3_column_int64(st, 25);
        if (q_view_read(st, &v[n]) != 0)
            continue;
        cur = &v[n];
        if ((op->in.export.state >= 0 && (int)cur->state != op->in.export.state) ||
            (op->in.export.source[0] != '\0' && strcmp(cur->source, op->in.export.source) != 0))
            continue;
        n++;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        free(v);
        return -1;
    }
    op->out.export.views = v;
    op->out.export.n = n;
    if (rc == SQLITE_DONE)
        op->out.export.next[0] = '\0';
    else
        queue_cursor_format(last_ms, last_seq, op->out.export.next);
    return 0;
}

/* Puts a dead or rejected job's live deletions back to work, due now with
 * the give-up clock restarted. If another job for the same resource is
 * pending already, the deletions join it instead (one pending job per
 * resource). Adds the deletions moved to *count. */
static int q_retry_job(struct queue_store *q, struct cycle *c, struct op *op, int64_t job_id,
                       const char *deletion_id, int64_t *count)
{
    sqlite3_stmt *st = q->st[S_JOB_GET];
    char res[32] = "", rid[RESOURCE_ID_MAX + 1] = "", account[QUEUE_ACCOUNT_MAX + 1] = "";
    int64_t live, target = job_id;
    enum deletion_state from;
    struct audit_record r = queue_operator_record(op, "retried", deletion_id, res, rid);

    sqlite3_bind_int64(st, 1, job_id);
    if (sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_reset(st);
        return -1;
    }
    if (deletion_state_from_name((const char *)sqlite3_column_text(st, 0), &from) != 0) {
        sqlite3_reset(st);
        return -1;
    }
    sq_col_copy(st, 1, res, sizeof(res));
    sq_col_copy(st, 2, rid, sizeof(rid));
    sq_col_copy(st, 4, account, sizeof(account));
    sqlite3_reset(st);

    st = q->st[S_JOB_LIVE_COUNT];
    sqlite3_bind_int64(st, 1, job_id);
    if (sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_reset(st);
        return -1;
    }
    live = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    if (live == 0)
        return 0;

    st = q->st[S_JOB_FIND_PENDING];
    sq_bind_text(st, 1, res);
    sq_bind_text(st, 2, rid);
    sq_bind_text(st, 3, account);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        target = sqlite3_column_int64(st, 0);
        int queued = strcmp((const char *)sqlite3_column_text(st, 1), "queued") == 0;
        int64_t due = sqlite3_column_int64(st, 2);
        sqlite3_reset(st);
        /* The live deletions join the pending job, in its state. */
        c->moves.state[from] -= live;
        c->moves.state[queued ? DEL_QUEUED : DEL_IN_FLIGHT] += live;
        st = q->st[S_DEL_MOVE];
        sqlite3_bind_int64(st, 1, job_id);
        sqlite3_bind_int64(st, 2, target);
        if (sq_done(q, S_DEL_MOVE) != 0)
            return -1;
        if (queued && due > op->now_ms) {
            st = q->st[S_JOB_SET_DUE];
            sqlite3_bind_int64(st, 1, target);
            sqlite3_bind_int64(st, 2, op->now_ms);
            sqlite3_bind_int64(st, 3, op->now_ms);
            if (sq_done(q, S_JOB_SET_DUE) != 0)
                return -1;
        }
    } else {
        sqlite3_reset(st);
        if (rc != SQLITE_DONE)
            return -1;
        st = q->st[S_JOB_REQUEUE];
        sqlite3_bind_int64(st, 1, job_id);
        sqlite3_bind_int64(st, 2, op->now_ms);
        if (sq_done(q, S_JOB_REQUEUE) != 0 ||
            sq_count_job_move(q, c, job_id, from, DEL_QUEUED) != 0)
            return -1;
    }
    queue_cycle_note_due(c, op->now_ms);
    r.job_id = target;
    if (queue_cycle_audit(c, &r, NULL, NULL) != 0)
        return -1;
    *count += live;
    return 0;
}

int sq_op_retry(struct queue_store *q, struct cycle *c, struct op *op)
{
    op->out.count = 0;
    if (op->in.target.id[0] != '\0') {
        sqlite3_stmt *st = q->st[S_DEL_TARGET];
        int rc;

        sq_bind_text(st, 1, op->in.target.id);
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW) {
            sqlite3_reset(st);
            return rc == SQLITE_DONE ? 0 : -1;
        }
        int64_t job_id = sqlite3_column_int64(st, 0);
        int own_state = sqlite3_column_type(st, 1) != SQLITE_NULL;
        const char *js = (const char *)sqlite3_column_text(st, 2);
        int retryable = !own_state && (strcmp(js, "dead") == 0 || strcmp(js, "rejected") == 0);
        sqlite3_reset(st);
        if (!retryable)
            return 0;
        return q_retry_job(q, c, op, job_id, op->in.target.id, &op->out.count);
    }

    /* Every dead deletion: in batches, since each retry changes the set. */
    int64_t ids[256];
    int total = 0, n;
    do {
        sqlite3_stmt *st = q->st[S_DEAD_JOBS];
        int rc = SQLITE_DONE, cap = (int)(sizeof(ids) / sizeof(ids[0]));

        n = 0;
        sqlite3_bind_int(st, 1, cap);
        while (n < cap && (rc = sqlite3_step(st)) == SQLITE_ROW)
            ids[n++] = sqlite3_column_int64(st, 0);
        sqlite3_reset(st);
        if (rc != SQLITE_DONE && rc != SQLITE_ROW)
            return -1;
        for (int i = 0; i < n; i++) {
            if (q_retry_job(q, c, op, ids[i], NULL, &op->out.count) != 0)
                return -1;
        }
        total += n;
    } while (n > 0 && total < Q_RETRY_ALL_MAX);
    return 0;
}

/* Only a queued deletion can be cancelled: once in flight the DELETE may
 * already have reached Extend. */
int sq_op_cancel(struct queue_store *q, struct cycle *c, struct op *op)
{
    sqlite3_stmt *st = q->st[S_DEL_TARGET];
    char res[32] = "", rid[RESOURCE_ID_MAX + 1] = "";
    int64_t job_id, live;
    uint64_t seq;
    char mac[65];
    int rc, cancellable;

    op->out.count = 0;
    sq_bind_text(st, 1, op->in.target.id);
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(st);
        return rc == SQLITE_DONE ? 0 : -1;
    }
    job_id = sqlite3_column_int64(st, 0);
    cancellable = sqlite3_column_type(st, 1) == SQLITE_NULL &&
                  strcmp((const char *)sqlite3_column_text(st, 2), "queued") == 0;
    sq_col_copy(st, 3, res, sizeof(res));
    sq_col_copy(st, 4, rid, sizeof(rid));
    sqlite3_reset(st);
    if (!cancellable)
        return 0;

    struct audit_record r = queue_operator_record(op, "cancelled", op->in.target.id, res, rid);
    r.job_id = job_id;
    if (queue_cycle_audit(c, &r, &seq, mac) != 0)
        return -1;
    st = q->st[S_DEL_CANCEL];
    sq_bind_text(st, 1, op->in.target.id);
    sqlite3_bind_int64(st, 2, op->now_ms);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)seq);
    sq_bind_text(st, 4, mac);
    if (sq_done(q, S_DEL_CANCEL) != 0)
        return -1;
    c->moves.state[DEL_QUEUED]--;
    c->moves.state[DEL_CANCELLED]++;

    st = q->st[S_JOB_LIVE_COUNT];
    sqlite3_bind_int64(st, 1, job_id);
    if (sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_reset(st);
        return -1;
    }
    live = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    if (live == 0) {
        st = q->st[S_JOB_CANCEL];
        sqlite3_bind_int64(st, 1, job_id);
        sqlite3_bind_int64(st, 2, op->now_ms);
        if (sq_done(q, S_JOB_CANCEL) != 0)
            return -1;
        c->moves.jobs_pending--; /* no live deletion left to move with it */
    }
    op->out.count = 1;
    return 0;
}

/* The operator's pause outlives a restart: a paused account whose
 * gateway comes back must not start sending. A row per paused account;
 * the old pause of all (meta.paused) becomes a row for each account
 * first, so that resuming one leaves the others paused. */
static int sq_pause_row(struct queue_store *q, const char *account, int paused)
{
    sqlite3_stmt *st = q->st[paused ? S_PAUSE_ADD : S_PAUSE_DEL];

    sq_bind_text(st, 1, account);
    return sq_done(q, paused ? S_PAUSE_ADD : S_PAUSE_DEL);
}

int sq_op_pause(struct queue_store *q, struct cycle *c, struct op *op)
{
    sqlite3_stmt *st = q->st[S_META_READ];
    const char *one = op->in.note.account;
    int rc = sqlite3_step(st), was = rc == SQLITE_ROW && sqlite3_column_int(st, 2) != 0;

    sqlite3_reset(st);
    if (rc != SQLITE_ROW)
        return -1;
    for (int i = 0; was && i < q->n_accounts; i++)
        if (sq_pause_row(q, q->account_ids[i], 1) != 0)
            return -1;
    sqlite3_bind_int(q->st[S_META_PAUSED], 1, 0);
    if (sq_done(q, S_META_PAUSED) != 0)
        return -1;
    if (one[0] != '\0' || !op->in.note.paused) {
        if (sq_pause_row(q, one, op->in.note.paused) != 0) /* "": every row */
            return -1;
    } else {
        for (int i = 0; i < q->n_accounts; i++)
            if (sq_pause_row(q, q->account_ids[i], 1) != 0)
                return -1;
    }
    return queue_op_note(q, c, op);
}
