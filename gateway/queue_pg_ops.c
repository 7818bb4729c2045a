/*
 * queue_pg_ops.c: the PostgreSQL queue's reads (get, list, stats, export)
 * and the operator's changes (retry, cancel, pause), and retention.
 */
#include "queue_pg.h"

#include <stdlib.h>
#include <string.h>

#define PG_RETRY_ALL_MAX 10000
#define PG_PRUNE_BATCH 200

/* Views read by one statement into a fresh array of at most max; -1 on
 * failure. */
static int pg_views(struct queue_store *q, const char *sql, const struct pg_args *a, int max,
                    struct queue_deletion_view **out, int *n)
{
    PGresult *r = queue_pg_exec(q, sql, a);
    int rows;

    *out = NULL;
    *n = 0;
    if (r == NULL)
        return -1;
    rows = PQntuples(r) < max ? PQntuples(r) : max;
    *out = malloc((size_t)(rows > 0 ? rows : 1) * sizeof(**out));
    if (*out == NULL) {
        PQclear(r);
        return -1;
    }
    for (int i = 0; i < rows; i++) {
        if (queue_pg_view_read(r, i, &(*out)[*n]) == 0)
            (*n)++;
    }
    PQclear(r);
    return 0;
}

int queue_pg_op_get(struct queue_store *q, struct cycle *c, struct op *op)
{
    struct pg_args a = {.n = 0};
    struct queue_deletion_view *v;
    PGresult *r;
    (void)c;

    arg_text(&a, op->in.target.id);
    if (pg_views(q,
                 "SELECT " PG_VIEW_COLS " FROM dg_deletions d JOIN dg_jobs j ON j.id = d.job_id"
                 " WHERE d.id = $1",
                 &a, 1, &op->out.view.views, &op->out.view.n) != 0)
        return -1;
    if (op->out.view.n == 0) {
        free(op->out.view.views); /* unknown id: view NULL, not a failure */
        op->out.view.views = NULL;
        return 0;
    }
    v = op->out.view.views;
    a.n = 0;
    arg_i64(&a, v->job_id);
    arg_i64(&a, QUEUE_VIEW_ATTEMPTS);
    r = queue_pg_exec(
        q,
        "SELECT started_ms, finished_ms, http_status, upstream_request_id, error_code,"
        " detail FROM dg_attempts WHERE job_id = $1 ORDER BY id DESC LIMIT $2",
        &a);
    if (r == NULL)
        return -1;
    for (int i = 0; i < PQntuples(r) && v->n_attempts < QUEUE_VIEW_ATTEMPTS; i++) {
        struct queue_attempt_view *at = &v->attempt[v->n_attempts++];
        at->started_ms = queue_pg_i64(r, i, 0);
        at->finished_ms = queue_pg_i64(r, i, 1);
        at->http_status = (int)queue_pg_i64(r, i, 2);
        queue_pg_copy(at->upstream_request_id, sizeof(at->upstream_request_id), r, i, 3);
        queue_pg_copy(at->error_code, sizeof(at->error_code), r, i, 4);
        queue_pg_copy(at->detail, sizeof(at->detail), r, i, 5);
    }
    PQclear(r);
    return 0;
}

/* Counts summed over every replica's rows: a few rows per replica,
 * whatever the queue's size. */
/* LIMIT 1 rather than min(), as queue_pg_next_due_sql. */
const char queue_pg_oldest_pending_sql[] =
    "SELECT coalesce((SELECT created_ms FROM dg_jobs WHERE state IN ('queued', 'in_flight')"
    " ORDER BY created_ms LIMIT 1), 0)";

int queue_pg_op_stats(struct queue_store *q, struct cycle *c, struct op *op)
{
    struct queue_stats *s = &op->out.stats;
    PGresult *r;
    (void)c;

    memset(s, 0, sizeof(*s));
    r = queue_pg_exec(q, "SELECT name, sum(n) FROM dg_counts GROUP BY name", NULL);
    if (r == NULL)
        return -1;
    for (int i = 0; i < PQntuples(r); i++) {
        enum deletion_state ds;
        if (strcmp(PQgetvalue(r, i, 0), "jobs_pending") == 0)
            s->jobs_pending = queue_pg_i64(r, i, 1);
        else if (deletion_state_from_name(PQgetvalue(r, i, 0), &ds) == 0)
            s->count[ds] = queue_pg_i64(r, i, 1);
    }
    PQclear(r);
    r = queue_pg_exec(q, queue_pg_oldest_pending_sql, NULL);
    if (r == NULL)
        return -1;
    s->oldest_pending_ms = queue_pg_i64(r, 0, 0);
    PQclear(r);
    return 0;
}

/* In the order SQLite's index gives (docs/http-api.md): queued by next
 * try, in flight by lease end, finished by when they finished. */
int queue_pg_op_list(struct queue_store *q, struct cycle *c, struct op *op)
{
    struct pg_args a = {.n = 0};
    int cancelled = op->in.list.state == DEL_CANCELLED;
    (void)c;

    if (!cancelled)
        arg_text(&a, deletion_state_name(op->in.list.state));
    arg_i64(&a, op->in.list.limit);
    return pg_views(q,
                    cancelled ? "SELECT " PG_VIEW_COLS " FROM dg_deletions d JOIN dg_jobs j"
                                " ON j.id = d.job_id WHERE d.state = 'cancelled'"
                                " ORDER BY d.accepted_ms, d.seq LIMIT $1"
                              : "SELECT " PG_VIEW_COLS " FROM dg_jobs j JOIN dg_deletions d"
                                " ON d.job_id = j.id WHERE j.state = $1 AND d.state IS NULL"
                                " ORDER BY j.due_ms, j.id, d.seq LIMIT $2",
                    &a, op->in.list.limit, &op->out.view.views, &op->out.view.n);
}

/* As queue_sqlite.c: a dead or rejected job's live deletions go back to
 * work, joining a pending job for the same resource if there is one. */
static int pg_retry_job(struct queue_store *q, struct cycle *c, struct op *op, int64_t job_id,
                        const char *deletion_id, int64_t *count)
{
    struct pg_args a = {.n = 0};
    char res[32] = "", rid[RESOURCE_ID_MAX + 1] = "", account[QUEUE_ACCOUNT_MAX + 1] = "";
    int64_t live, target = job_id;
    enum deletion_state from;
    PGresult *r;
    struct audit_record rec = queue_operator_record(op, "retried", deletion_id, res, rid);

    arg_i64(&a, job_id);
    r = queue_pg_exec(
        q,
        "SELECT state, resource, resource_id, (SELECT count(*) FROM dg_deletions WHERE"
        " job_id = $1 AND state IS NULL), account FROM dg_jobs WHERE id = $1 FOR UPDATE",
        &a);
    if (r == NULL || PQntuples(r) != 1 ||
        deletion_state_from_name(PQgetvalue(r, 0, 0), &from) != 0) {
        PQclear(r);
        return -1;
    }
    queue_pg_copy(res, sizeof(res), r, 0, 1);
    queue_pg_copy(rid, sizeof(rid), r, 0, 2);
    live = queue_pg_i64(r, 0, 3);
    queue_pg_copy(account, sizeof(account), r, 0, 4);
    PQclear(r);
    if (live == 0)
        return 0;
    a.n = 0;
    arg_text(&a, res);
    arg_text(&a, rid);
    arg_text(&a, account);
    r = queue_pg_exec(
        q,
        "SELECT id, state, due_ms FROM dg_jobs WHERE resource = $1 AND resource_id = $2"
        " AND account = $3 AND state IN ('queued', 'in_flight') FOR UPDATE",
        &a);
    if (r == NULL)
        return -1;
    if (PQntuples(r) == 1) {
        int queued = strcmp(PQgetvalue(r, 0, 1), "queued") == 0;
        int64_t due = queue_pg_i64(r, 0, 2);

        target = queue_pg_i64(r, 0, 0);
        PQclear(r);
        c->moves.state[from] -= live;
        c->moves.state[queued ? DEL_QUEUED : DEL_IN_FLIGHT] += live;
        a.n = 0;
        arg_i64(&a, job_id);
        arg_i64(&a, target);
        if (queue_pg_do(q,
                        "UPDATE dg_deletions SET job_id = $2 WHERE job_id = $1 AND state IS NULL",
                        &a) != 0)
            return -1;
        a.n = 0;
        arg_i64(&a, target);
        arg_i64(&a, op->now_ms);
        if (queued && due > op->now_ms &&
            queue_pg_do(q, "UPDATE dg_jobs SET due_ms = $2, updated_ms = $2 WHERE id = $1", &a) !=
                0)
            return -1;
    } else {
        PQclear(r);
        a.n = 0;
        arg_i64(&a, job_id);
        arg_i64(&a, op->now_ms);
        if (queue_pg_do(
                q,
                "UPDATE dg_jobs SET state = 'queued', due_ms = $2, lease_until_ms = 0,"
                " clock_start_ms = $2, updated_ms = $2, completed_ms = 0, final_audit_seq = 0,"
                " final_audit_mac = '' WHERE id = $1",
                &a) != 0)
            return -1;
        c->moves.state[from] -= live;
        c->moves.state[DEL_QUEUED] += live;
        c->moves.jobs_pending++;
    }
    queue_cycle_note_due(c, op->now_ms);
    rec.job_id = target;
    if (queue_cycle_audit(c, &rec, NULL, NULL) != 0)
        return -1;
    *count += live;
    return 0;
}

int queue_pg_op_retry(struct queue_store *q, struct cycle *c, struct op *op)
{
    struct pg_args a = {.n = 0};
    PGresult *r;
    int total = 0, n;

    op->out.count = 0;
    if (op->in.target.id[0] != '\0') {
        arg_text(&a, op->in.target.id);
        r = queue_pg_exec(
            q,
            "SELECT d.job_id FROM dg_deletions d JOIN dg_jobs j ON j.id = d.job_id"
            " WHERE d.id = $1 AND d.state IS NULL AND j.state IN ('dead', 'rejected')",
            &a);
        if (r == NULL)
            return -1;
        int64_t job_id = PQntuples(r) == 1 ? queue_pg_i64(r, 0, 0) : 0;
        PQclear(r);
        return job_id == 0 ? 0 : pg_retry_job(q, c, op, job_id, op->in.target.id, &op->out.count);
    }
    /* Every dead deletion, in batches, since each retry changes the set. */
    do {
        a.n = 0;
        arg_i64(&a, 256);
        r = queue_pg_exec(
            q,
            "SELECT j.id FROM dg_jobs j WHERE j.state = 'dead' AND EXISTS (SELECT 1 FROM"
            " dg_deletions d WHERE d.job_id = j.id AND d.state IS NULL) ORDER BY j.due_ms"
            " LIMIT $1",
            &a);
        if (r == NULL)
            return -1;
        n = PQntuples(r);
        for (int i = 0; i < n; i++) {
            if (pg_retry_job(q, c, op, queue_pg_i64(r, i, 0), NULL, &op->out.count) != 0) {
                PQclear(r);
                return -1;
            }
        }
        PQclear(r);
        total += n;
    } while (n > 0 && total < PG_RETRY_ALL_MAX);
    return 0;
}

/* Only a queued deletion can be cancelled: once in flight the DELETE may
 * already have reached Extend. */
int queue_pg_op_cancel(struct queue_store *q, struct cycle *c, struct op *op)
{
    struct pg_args a = {.n = 0};
    char res[32], rid[RESOURCE_ID_MAX + 1], mac[65];
    int64_t job_id, live;
    uint64_t seq;
    PGresult *r;

    op->out.count = 0;
    arg_text(&a, op->in.target.id);
    r = queue_pg_exec(
        q,
        "SELECT d.job_id, j.resource, j.resource_id FROM dg_deletions d JOIN dg_jobs j"
        " ON j.id = d.job_id WHERE d.id = $1 AND d.state IS NULL AND j.state = 'queued'"
        " FOR UPDATE",
        &a);
    if (r == NULL)
        return -1;
    if (PQntuples(r) != 1) {
        PQclear(r);
        return 0;
    }
    job_id = queue_pg_i64(r, 0, 0);
    queue_pg_copy(res, sizeof(res), r, 0, 1);
    queue_pg_copy(rid, sizeof(rid), r, 0, 2);
    PQclear(r);
    struct audit_record rec = queue_operator_record(op, "cancelled", op->in.target.id, res, rid);
    rec.job_id = job_id;
    if (queue_cycle_audit(c, &rec, &seq, mac) != 0)
        return -1;
    a.n = 0;
    arg_text(&a, op->in.target.id);
    arg_i64(&a, op->now_ms);
    arg_i64(&a, (int64_t)seq);
    arg_text(&a, mac);
    if (queue_pg_do(
            q,
            "UPDATE dg_deletions SET state = 'cancelled', updated_ms = $2, final_audit_seq = $3,"
            " final_audit_mac = $4 WHERE id = $1",
            &a) != 0)
        return -1;
    c->moves.state[DEL_QUEUED]--;
    c->moves.state[DEL_CANCELLED]++;
    a.n = 0;
    arg_i64(&a, job_id);
    r = queue_pg_exec(q, "SELECT count(*) FROM dg_deletions WHERE job_id = $1 AND state IS NULL",
                      &a);
    if (r == NULL)
        return -1;
    live = queue_pg_i64(r, 0, 0);
    PQclear(r);
    if (live == 0) {
        arg_i64(&a, op->now_ms);
        if (queue_pg_do(q,
                        "UPDATE dg_jobs SET state = 'cancelled', updated_ms = $2, completed_ms = $2"
                        " WHERE id = $1",
                        &a) != 0)
            return -1;
        c->moves.jobs_pending--; /* no live deletion left to move with it */
    }
    op->out.count = 1;
    return 0;
}

/* A pause holds every replica: their claims of that account (of every
 * account, with none named) get nothing while it lasts. */
int queue_pg_op_pause(struct queue_store *q, struct cycle *c, struct op *op)
{
    struct pg_args a = {.n = 0};

    arg_text(&a, op->in.note.paused ? "t" : "f");
    arg_text(&a, op->in.note.account);
    if (queue_pg_do(q, "UPDATE dg_limiter SET paused = $1 WHERE account = $2 OR $2 = ''", &a) != 0)
        return -1;
    return queue_op_note(q, c, op);
}

/* Retention, as queue_sqlite.c: finished jobs past it go, a bounded batch
 * at a time, with their deletions and attempts. */
int queue_pg_op_maintain(struct queue_store *q, struct cycle *c, struct op *op)
{
    struct pg_args a = {.n = 0};
    PGresult *r;

    op->out.count = 0;
    if (q->retention_ms <= 0)
        return 0;
    arg_now(q, &a);
    arg_i64(&a, q->retention_ms);
    arg_i64(&a, PG_PRUNE_BATCH);
    r = queue_pg_exec(
        q,
        "WITH gone AS MATERIALIZED (SELECT id, state FROM dg_jobs WHERE state IN"
        " ('deleted', 'not_found', 'rejected', 'dead', 'cancelled') AND completed_ms <="
        " coalesce($1::bigint, dg_now_ms()) - $2 ORDER BY completed_ms LIMIT $3"
        " FOR UPDATE SKIP LOCKED), att AS (DELETE FROM dg_attempts WHERE job_id IN"
        " (SELECT id FROM gone)), dels AS (DELETE FROM dg_deletions d USING gone"
        " WHERE d.job_id = gone.id RETURNING coalesce(d.state, gone.state) AS s)"
        " SELECT s, count(*) FROM dels GROUP BY s",
        &a);
    if (r == NULL)
        return -1;
    for (int i = 0; i < PQntuples(r); i++) {
        enum deletion_state ds;
        if (deletion_state_from_name(PQgetvalue(r, i, 0), &ds) == 0)
            c->moves.state[ds] -= queue_pg_i64(r, i, 1);
    }
    PQclear(r);
    r = queue_pg_exec(
        q,
        "DELETE FROM dg_jobs WHERE id IN (SELECT id FROM dg_jobs WHERE state IN"
        " ('deleted', 'not_found', 'rejected', 'dead', 'cancelled') AND completed_ms <="
        " coalesce($1::bigint, dg_now_ms()) - $2 AND NOT EXISTS (SELECT 1 FROM"
        " dg_deletions d WHERE d.job_id = dg_jobs.id) ORDER BY completed_ms LIMIT $3"
        " FOR UPDATE SKIP LOCKED)",
        &a);
    if (r == NULL)
        return -1;
    op->out.count = queue_pg_affected(r);
    PQclear(r);
    /* Deletions cancelled on their own while their job went on. */
    r = queue_pg_exec(
        q,
        "DELETE FROM dg_deletions WHERE id IN (SELECT id FROM dg_deletions WHERE state IS"
        " NOT NULL AND updated_ms <= coalesce($1::bigint, dg_now_ms()) - $2 LIMIT $3)",
        &a);
    if (r == NULL)
        return -1;
    c->moves.state[DEL_CANCELLED] -= queue_pg_affected(r);
    PQclear(r);
    return 0;
}

/* One page of an export, as queue_sqlite.c: keyset on (accepted_ms, seq),
 * at most QUEUE_EXPORT_SCAN rows read, filtered here. */
int queue_pg_op_export(struct queue_store *q, struct cycle *c, struct op *op)
{
    int by_resource = op->in.export.resource_id[0] != '\0', limit = op->in.export.limit, n = 0;
    struct pg_args a = {.n = 0};
    struct queue_deletion_view *v = malloc((size_t)limit * sizeof(*v));
    int64_t last_ms = op->in.export.after_ms, last_seq = op->in.export.after_seq;
    PGresult *r;
    int rows, i;
    (void)c;

    if (v == NULL)
        return -1;
    arg_i64(&a, last_ms);
    arg_i64(&a, last_seq);
    arg_i64(&a, op->in.export.until_ms);
    arg_i64(&a, QUEUE_EXPORT_SCAN);
    if (by_resource)
        arg_text(&a, op->in.export.resource_id);
    r = queue_pg_exec(
        q,
        by_resource ? "SELECT " PG_VIEW_COLS ", d.seq FROM dg_jobs j JOIN dg_deletions d ON"
                      " d.job_id = j.id WHERE j.resource_id = $5 AND (d.accepted_ms, d.seq) >"
                      " ($1, $2) AND d.accepted_ms < $3 ORDER BY d.accepted_ms, d.seq LIMIT $4"
                    : "SELECT " PG_VIEW_COLS ", d.seq FROM dg_deletions d JOIN dg_jobs j ON"
                      " j.id = d.job_id WHERE (d.accepted_ms, d.seq) > ($1, $2) AND"
                      " d.accepted_ms < $3 ORDER BY d.accepted_ms, d.seq LIMIT $4",
        &a);
    if (r == NULL) {
        free(v);
        return -1;
    }
    rows = PQntuples(r);
    for (i = 0; i < rows && n < limit; i++) {
        last_ms = queue_pg_i64(r, i, 13);
        last_seq = queue_pg_i64(r, i, 25);
        if (queue_pg_view_read(r, i, &v[n]) != 0)
            continue;
        if ((op->in.export.state >= 0 && (int)v[n].state != op->in.export.state) ||
            (op->in.export.source[0] != '\0' && strcmp(v[n].source, op->in.export.source) != 0))
            continue;
        n++;
    }
    PQclear(r);
    op->out.export.views = v;
    op->out.export.n = n;
    if (i == rows && rows < QUEUE_EXPORT_SCAN)
        op->out.export.next[0] = '\0';
    else
        queue_cursor_format(last_ms, last_seq, op->out.export.next);
    return 0;
}
