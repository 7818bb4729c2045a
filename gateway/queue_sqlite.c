/*
 * queue_sqlite.c: the queue's storage on one SQLite file (queue_backend.h;
 * queue.c does the rest: the worker, group commit, the audit log around
 * each cycle, delivery). This file holds every statement, the ops of the
 * hot path (submit, claim, complete, release, retention) and the backend
 * table; queue_sqlite.h names the rest of the family.
 *
 * The worker thread owns the main connection once the queue is open; the
 * checkpointer has a connection of its own, so no commit waits for a
 * checkpoint. Counts of deletions by state are kept in a table, moved by
 * the ops themselves and written once per commit (count_moves), so
 * queue_stats reads a few rows whatever the queue's size.
 */
#include "queue_sqlite.h"
#include "log.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- statements ---- */

#define VIEW_COLS                                                                                  \
    "d.id, d.job_id, j.resource, j.resource_id, coalesce(d.state, j.state), d.source, d.key,"      \
    " d.request_id, d.reason, j.attempts, j.last_http_status, j.last_upstream_request_id,"         \
    " j.last_error, d.accepted_ms, d.not_before_ms, max(j.updated_ms, d.updated_ms), j.due_ms,"    \
    " j.completed_ms, d.state, d.updated_ms, j.final_audit_seq, j.final_audit_mac,"                \
    " d.final_audit_seq, d.final_audit_mac, j.account"

const char *const sq_stmt_sql[S_COUNT] = {
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_SAVEPOINT] = "SAVEPOINT op",
    [S_RELEASE] = "RELEASE op",
    [S_ROLLBACK_TO] = "ROLLBACK TO op",
    /* A key older than the TTL is taken over by the new submission. */
    [S_SUB_UPSERT] = "INSERT INTO submissions (source, key, status, body, created_ms, account)"
                     " VALUES (?1, ?2, ?3, ?4, ?5, ?7) ON CONFLICT (source, key) DO UPDATE SET"
                     " status = excluded.status, body = excluded.body,"
                     " created_ms = excluded.created_ms, account = excluded.account"
                     " WHERE submissions.created_ms <= ?6",
    [S_SUB_GET] = "SELECT status, body FROM submissions WHERE source = ?1 AND key = ?2",
    [S_SUB_PRUNE] = "DELETE FROM submissions WHERE rowid IN (SELECT rowid FROM submissions"
                    " WHERE created_ms <= ?1 ORDER BY created_ms LIMIT ?2)",
    /* A resource has one pending job at most in each account: every insert
     * looks first. */
    [S_JOB_FIND_PENDING] = "SELECT id, state, due_ms FROM jobs INDEXED BY jobs_resource_id"
                           " WHERE resource_id = ?2 AND resource = ?1 AND account = ?3"
                           " AND state IN ('queued', 'in_flight')",
    [S_JOB_INSERT] = "INSERT INTO jobs (resource, resource_id, state, due_ms, clock_start_ms,"
                     " created_ms, updated_ms, account)"
                     " VALUES (?1, ?2, 'queued', ?3, ?3, ?4, ?4, ?5)",
    [S_JOB_SET_DUE] = "UPDATE jobs SET due_ms = ?2, updated_ms = ?3 WHERE id = ?1",
    [S_DEL_INSERT] = "INSERT INTO deletions (id, job_id, source, key, request_id, reason,"
                     " not_before_ms, accepted_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [S_CLAIM_SELECT] = "SELECT id, resource, resource_id, attempts, clock_start_ms, due_ms, lease,"
                       " account FROM jobs WHERE state = ?1 AND due_ms <= ?2 ORDER BY due_ms"
                       " LIMIT ?3",
    /* One account's dispatcher: index (account, state, due_ms), so another
     * account's backlog is never scanned. */
    [S_CLAIM_SELECT_ACCOUNT] = "SELECT id, resource, resource_id, attempts, clock_start_ms, due_ms,"
                               " lease, account FROM jobs WHERE account = ?4 AND state = ?1"
                               " AND due_ms <= ?2 ORDER BY due_ms LIMIT ?3",
    [S_CLAIM_UPDATE] = "UPDATE jobs SET state = 'in_flight', due_ms = ?2, lease_until_ms = ?2,"
                       " updated_ms = ?3, lease = ?4 WHERE id = ?1",
    [S_NEXT_DUE] = "SELECT due_ms FROM jobs WHERE state = ?1 ORDER BY due_ms LIMIT 1",
    [S_NEXT_DUE_ACCOUNT] = "SELECT due_ms FROM jobs WHERE account = ?2 AND state = ?1"
                           " ORDER BY due_ms LIMIT 1",
    [S_JOB_GET] = "SELECT state, resource, resource_id, lease, account FROM jobs WHERE id = ?1",
    [S_ATTEMPT_INSERT] = "INSERT INTO attempts (job_id, started_ms, finished_ms, http_status,"
                         " upstream_request_id, error_code, detail)"
                         " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    /* ?7 = 1 when an attempt was made: only then do the last_* fields move. */
    [S_JOB_COMPLETE] = "UPDATE jobs SET state = ?2, due_ms = ?3, lease_until_ms = 0,"
                       " attempts = attempts + ?4, updated_ms = ?5, completed_ms = ?6,"
                       " last_http_status = iif(?7, ?8, last_http_status),"
                       " last_upstream_request_id = iif(?7, ?9, last_upstream_request_id),"
                       " last_error = iif(?7, ?10, last_error),"
                       " final_audit_seq = ?11, final_audit_mac = ?12 WHERE id = ?1",
    [S_COUNT_ADD] = "UPDATE counts SET n = n + ?2 WHERE name = ?1",
    [S_VIEW_GET] = "SELECT " VIEW_COLS " FROM deletions d JOIN jobs j ON j.id = d.job_id"
                   " WHERE d.id = ?1",
    [S_VIEW_ATTEMPTS] = "SELECT started_ms, finished_ms, http_status, upstream_request_id,"
                        " error_code, detail FROM attempts WHERE job_id = ?1"
                        " ORDER BY id DESC LIMIT ?2",
    /* In the order jobs_state_due holds them (due time, then job id), each
     * job's deletions in rowid order: a walk of two indexes that stops at
     * the limit. Ordered by accepted time it sorted every job of the state
     * first (1.8 s with a million queued, on the worker, holding up every
     * commit): queued ones thus come in the order they will be sent,
     * finished ones in the order they finished (docs/http-api.md). */
    [S_LIST_BY_JOB_STATE] = "SELECT " VIEW_COLS " FROM jobs j INDEXED BY jobs_state_due"
                            " JOIN deletions d ON d.job_id = j.id WHERE j.state = ?1"
                            " AND d.state IS NULL ORDER BY j.due_ms, j.id, d.rowid LIMIT ?2",
    [S_LIST_CANCELLED] = "SELECT " VIEW_COLS " FROM deletions d JOIN jobs j ON j.id = d.job_id"
                         " WHERE d.state = 'cancelled' ORDER BY d.accepted_ms, d.rowid"
                         " LIMIT ?1",
    [S_STATS_STATES] = "SELECT name, n FROM counts",
    /* INDEXED BY: left to itself the planner searches jobs_state_due and
     * sorts every pending job (a second per scrape with a million queued,
     * on the worker, holding up every commit); the partial index gives the
     * oldest in one step, and if it ever could not, the statement would
     * fail to prepare at open rather than turn slow. */
    [S_STATS_PENDING] = "SELECT (SELECT n FROM counts WHERE name = 'jobs_pending'),"
                        " coalesce((SELECT created_ms FROM jobs INDEXED BY jobs_pending_created"
                        " WHERE state IN ('queued', 'in_flight') ORDER BY created_ms LIMIT 1), 0)",
    [S_DEL_TARGET] = "SELECT d.job_id, d.state, j.state, j.resource, j.resource_id"
                     " FROM deletions d JOIN jobs j ON j.id = d.job_id WHERE d.id = ?1",
    [S_DEL_CANCEL] = "UPDATE deletions SET state = 'cancelled', updated_ms = ?2,"
                     " final_audit_seq = ?3, final_audit_mac = ?4 WHERE id = ?1",
    [S_JOB_LIVE_COUNT] = "SELECT count(*) FROM deletions WHERE job_id = ?1 AND state IS NULL",
    [S_JOB_CANCEL] = "UPDATE jobs SET state = 'cancelled', updated_ms = ?2, completed_ms = ?2"
                     " WHERE id = ?1",
    /* Dead jobs whose deletions all moved or were cancelled are left alone,
     * so "retry every dead one" always runs out of work. */
    [S_DEAD_JOBS] = "SELECT j.id FROM jobs j WHERE j.state = 'dead' AND EXISTS (SELECT 1"
                    " FROM deletions d WHERE d.job_id = j.id AND d.state IS NULL)"
                    " ORDER BY j.due_ms LIMIT ?1",
    [S_JOB_REQUEUE] = "UPDATE jobs SET state = 'queued', due_ms = ?2, lease_until_ms = 0,"
                      " clock_start_ms = ?2, updated_ms = ?2, completed_ms = 0,"
                      " final_audit_seq = 0, final_audit_mac = '' WHERE id = ?1",
    [S_DEL_MOVE] = "UPDATE deletions SET job_id = ?2 WHERE job_id = ?1 AND state IS NULL",
    [S_META_AUDIT] = "UPDATE meta SET audit_seq = ?1, audit_mac = ?2",
    [S_META_PAUSED] = "UPDATE meta SET paused = ?1",
    [S_META_READ] = "SELECT audit_seq, audit_mac, paused FROM meta",
    [S_PAUSE_ADD] = "INSERT OR IGNORE INTO paused_accounts (account) VALUES (?1)",
    [S_PAUSE_DEL] = "DELETE FROM paused_accounts WHERE account = ?1 OR ?1 = ''",
    [S_PAUSE_HAS] = "SELECT 1 FROM paused_accounts WHERE account = ?1",
    [S_JOB_RELEASE] = "UPDATE jobs SET state = 'queued', due_ms = ?2, lease_until_ms = 0,"
                      " updated_ms = ?3 WHERE id = ?1",
    [S_PRUNE_PICK] = "SELECT id, state FROM jobs INDEXED BY jobs_finished WHERE state NOT IN"
                     " ('queued', 'in_flight') AND completed_ms <= ?1 ORDER BY completed_ms"
                     " LIMIT ?2",
    [S_PRUNE_LIVE] = "SELECT count(*) FILTER (WHERE state IS NULL), count(*) FILTER (WHERE state"
                     " = 'cancelled') FROM deletions WHERE job_id = ?1",
    [S_PRUNE_ATTEMPTS] = "DELETE FROM attempts WHERE job_id = ?1",
    [S_PRUNE_DELETIONS] = "DELETE FROM deletions WHERE job_id = ?1",
    [S_PRUNE_JOB] = "DELETE FROM jobs WHERE id = ?1",
    /* Deletions cancelled on their own while their job went on. */
    [S_PRUNE_OWN_PICK] = "SELECT id FROM deletions INDEXED BY deletions_own_state WHERE state IS"
                         " NOT NULL AND updated_ms <= ?1 ORDER BY accepted_ms LIMIT ?2",
    [S_PRUNE_OWN] = "DELETE FROM deletions WHERE id = ?1",
    /* Keyset pages in (accepted_ms, rowid) order. INDEXED BY makes a plan
     * that lost the index fail at open instead of scanning every row. */
    [S_EXPORT_SCAN] = "SELECT " VIEW_COLS ", d.rowid FROM deletions d INDEXED BY"
                      " deletions_accepted JOIN jobs j ON j.id = d.job_id"
                      " WHERE (d.accepted_ms, d.rowid) > (?1, ?2) AND d.accepted_ms < ?3"
                      " ORDER BY d.accepted_ms, d.rowid",
    /* One resource's deletions are few: sorting them is cheap. */
    [S_EXPORT_RESOURCE] = "SELECT " VIEW_COLS ", d.rowid FROM jobs j INDEXED BY jobs_resource_id"
                          " JOIN deletions d ON d.job_id = j.id WHERE j.resource_id = ?4"
                          " AND (d.accepted_ms, d.rowid) > (?1, ?2) AND d.accepted_ms < ?3"
                          " ORDER BY d.accepted_ms, d.rowid",
};

/* ---- small SQLite helpers (worker thread) ---- */

void sq_sql_error(struct queue_store *q, const char *what)
{
    log_error(NULL, "queue: %s: %s", what, sqlite3_errmsg(q->db));
}

/* Runs a statement that returns no row, then resets it. */
int sq_done(struct queue_store *q, enum stmt_id id)
{
    sqlite3_stmt *st = q->st[id];
    int rc = sqlite3_step(st);

    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        sq_sql_error(q, sq_stmt_sql[id]);
        return -1;
    }
    return 0;
}

void sq_bind_text(sqlite3_stmt *st, int i, const char *s)
{
    sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
}

void sq_col_copy(sqlite3_stmt *st, int i, char *buf, size_t size)
{
    const unsigned char *s = sqlite3_column_text(st, i);

    snprintf(buf, size, "%s", s != NULL ? (const char *)s : "");
}

/* ---- operations (worker thread, inside the cycle's transaction) ---- */

static int q_op_submit(struct queue_store *q, struct cycle *c, struct op *op)
{
    const struct submit_in *in = &op->in.submit;
    sqlite3_stmt *st = q->st[S_SUB_UPSERT];
    struct audit_record r = {.time_ms = op->now_ms,
                             .account = in->account,
                             .source = in->source,
                             .key = in->key,
                             .request_id = in->request_id};

    c->n_submits++;
    sq_bind_text(st, 1, in->source);
    sq_bind_text(st, 2, in->key);
    sqlite3_bind_int(st, 3, in->status);
    sq_bind_text(st, 4, in->body);
    sqlite3_bind_int64(st, 5, op->now_ms);
    sqlite3_bind_int64(st, 6, q->ttl_ms > 0 ? op->now_ms - q->ttl_ms : INT64_MIN);
    sq_bind_text(st, 7, in->account);
    if (sq_done(q, S_SUB_UPSERT) != 0)
        return -1;

    if (sqlite3_changes(q->db) == 0) {
        /* A key we remember: replay the first answer, change nothing. */
        st = q->st[S_SUB_GET];
        sq_bind_text(st, 1, in->source);
        sq_bind_text(st, 2, in->key);
        if (sqlite3_step(st) != SQLITE_ROW) {
            sq_sql_error(q, "submission lookup");
            sqlite3_reset(st);
            return -1;
        }
        op->out.submit.stored_status = sqlite3_column_int(st, 0);
        const unsigned char *body = sqlite3_column_text(st, 1);
        op->out.submit.stored_body = strdup(body != NULL ? (const char *)body : "");
        sqlite3_reset(st);
        if (op->out.submit.stored_body == NULL)
            return -1;
        op->out.submit.status = QUEUE_SUBMIT_DUPLICATE;
        r.event = "duplicate";
        return queue_cycle_audit(c, &r, NULL, NULL);
    }

    if (in->n_items == 0) {
        r.event = "ignored";
        if (queue_cycle_audit(c, &r, NULL, NULL) != 0)
            return -1;
    }
    for (int i = 0; i < in->n_items; i++) {
        const struct queue_item *it = &in->items[i];
        const char *res = resource_name(it->resource);
        int64_t due = it->not_before_ms > op->now_ms ? it->not_before_ms : op->now_ms;
        int64_t job_id;

        /* A new job, unless the resource has a pending one already. */
        st = q->st[S_JOB_FIND_PENDING];
        sq_bind_text(st, 1, res);
        sq_bind_text(st, 2, it->resource_id);
        sq_bind_text(st, 3, it->account);
        int rc = sqlite3_step(st);
        if (rc == SQLITE_DONE) {
            sqlite3_reset(st);
            st = q->st[S_JOB_INSERT];
            sq_bind_text(st, 1, res);
            sq_bind_text(st, 2, it->resource_id);
            sqlite3_bind_int64(st, 3, due);
            sqlite3_bind_int64(st, 4, op->now_ms);
            sq_bind_text(st, 5, it->account);
            if (sq_done(q, S_JOB_INSERT) != 0)
                return -1;
            job_id = sqlite3_last_insert_rowid(q->db);
            queue_cycle_note_due(c, due);
            c->moves.state[DEL_QUEUED]++;
            c->moves.jobs_pending++;
        } else {
            /* Coalesce: one DELETE serves both. An urgent erasure is not held
             * back by an earlier request's retention delay. */
            if (rc != SQLITE_ROW) {
                sqlite3_reset(st);
                sq_sql_error(q, "pending job lookup");
                return -1;
            }
            job_id = sqlite3_column_int64(st, 0);
            int queued = strcmp((const char *)sqlite3_column_text(st, 1), "queued") == 0;
            int64_t old_due = sqlite3_column_int64(st, 2);
            sqlite3_reset(st);
            c->moves.state[queued ? DEL_QUEUED : DEL_IN_FLIGHT]++;
            if (queued && due < old_due) {
                st = q->st[S_JOB_SET_DUE];
                sqlite3_bind_int64(st, 1, job_id);
                sqlite3_bind_int64(st, 2, due);
                sqlite3_bind_int64(st, 3, op->now_ms);
                if (sq_done(q, S_JOB_SET_DUE) != 0)
                    return -1;
                queue_cycle_note_due(c, due);
            }
        }

        st = q->st[S_DEL_INSERT];
        sq_bind_text(st, 1, it->deletion_id);
        sqlite3_bind_int64(st, 2, job_id);
        sq_bind_text(st, 3, in->source);
        sq_bind_text(st, 4, in->key);
        sq_bind_text(st, 5, in->request_id);
        sq_bind_text(st, 6, it->reason);
        sqlite3_bind_int64(st, 7, it->not_before_ms);
        sqlite3_bind_int64(st, 8, op->now_ms);
        if (sq_done(q, S_DEL_INSERT) != 0)
            return -1;

        r.event = "accepted";
        r.deletion_id = it->deletion_id;
        r.job_id = job_id;
        r.resource = res;
        r.resource_id = it->resource_id;
        r.account = it->account;
        if (queue_cycle_audit(c, &r, NULL, NULL) != 0)
            return -1;
    }
    op->out.submit.status = QUEUE_SUBMIT_OK;
    return 0;
}

/* Writes the cycle's count changes, one UPDATE per count that moved. */
int sq_count_flush(struct queue_store *q, const struct count_moves *m)
{
    for (int i = 0; i <= DEL_STATE_COUNT; i++) {
        int64_t n = i < DEL_STATE_COUNT ? m->state[i] : m->jobs_pending;
        if (n == 0)
            continue;
        sq_bind_text(q->st[S_COUNT_ADD], 1,
                     i < DEL_STATE_COUNT ? deletion_state_name((enum deletion_state)i)
                                         : "jobs_pending");
        sqlite3_bind_int64(q->st[S_COUNT_ADD], 2, n);
        if (sq_done(q, S_COUNT_ADD) != 0)
            return -1;
    }
    return 0;
}

/* A job moves from one state to another: its live deletions (those with no
 * state of their own) move with it. */
int sq_count_job_move(struct queue_store *q, struct cycle *c, int64_t job_id,
                      enum deletion_state from, enum deletion_state to)
{
    sqlite3_stmt *st = q->st[S_JOB_LIVE_COUNT];
    int64_t live;

    if (from == to)
        return 0;
    sqlite3_bind_int64(st, 1, job_id);
    if (sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_reset(st);
        sq_sql_error(q, "live deletions");
        return -1;
    }
    live = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    c->moves.state[from] -= live;
    c->moves.state[to] += live;
    c->moves.jobs_pending +=
        (to == DEL_QUEUED || to == DEL_IN_FLIGHT) - (from == DEL_QUEUED || from == DEL_IN_FLIGHT);
    return 0;
}

struct claim_row {
    struct queue_job job;
    int64_t due_ms;
    enum deletion_state from; /* queued, or in_flight with an ended lease */
};

static int q_claim_row_cmp(const void *a, const void *b)
{
    const struct claim_row *x = a, *y = b;

    if (x->due_ms != y->due_ms)
        return x->due_ms < y->due_ms ? -1 : 1;
    return x->job.job_id < y->job.job_id ? -1 : x->job.job_id > y->job.job_id;
}

/* Reads up to max claimable jobs in one state into rows (index (state,
 * due_ms): a range scan that stops at the limit). -1 on failure. */
static int q_claim_read(struct queue_store *q, const char *account, enum deletion_state state,
                        int64_t now, int max, struct claim_row *rows)
{
    sqlite3_stmt *st = q->st[account[0] != '\0' ? S_CLAIM_SELECT_ACCOUNT : S_CLAIM_SELECT];
    int n = 0, rc = SQLITE_DONE;

    sq_bind_text(st, 1, deletion_state_name(state));
    sqlite3_bind_int64(st, 2, now);
    sqlite3_bind_int(st, 3, max);
    if (account[0] != '\0')
        sq_bind_text(st, 4, account);
    while (n < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct claim_row *r = &rows[n];
        memset(r, 0, sizeof(*r));
        r->from = state;
        r->job.job_id = sqlite3_column_int64(st, 0);
        if (resource_from_name((const char *)sqlite3_column_text(st, 1), &r->job.resource) != 0)
            continue; /* not written by this code: leave it for an operator */
        sq_col_copy(st, 2, r->job.resource_id, sizeof(r->job.resource_id));
        r->job.attempts = sqlite3_column_int(st, 3);
        r->job.clock_start_ms = sqlite3_column_int64(st, 4);
        r->due_ms = sqlite3_column_int64(st, 5);
        r->job.lease = sqlite3_column_int64(st, 6);
        sq_col_copy(st, 7, r->job.account, sizeof(r->job.account));
        n++;
    }
    if (n < max && rc != SQLITE_DONE) {
        sq_sql_error(q, "claim");
        n = -1;
    }
    sqlite3_reset(st);
    return n;
}

static int q_next_due(struct queue_store *q, const char *account, const char *state, int64_t *due)
{
    sqlite3_stmt *st = q->st[account[0] != '\0' ? S_NEXT_DUE_ACCOUNT : S_NEXT_DUE];
    int rc;

    sq_bind_text(st, 1, state);
    if (account[0] != '\0')
        sq_bind_text(st, 2, account);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && sqlite3_column_int64(st, 0) < *due)
        *due = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

/* Claimable: queued and due, or in_flight with an ended lease (their
 * due_ms is the lease end). Two index range scans, merged by due time. */
static int q_op_claim(struct queue_store *q, struct cycle *c, struct op *op)
{
    int max = op->in.claim.max_jobs, nq, ni, n;
    int64_t now = queue_clock_ms(c), lease_until = now + op->in.claim.lease_ms;
    struct claim_row *rows = malloc(2 * (size_t)max * sizeof(*rows));

    if (rows == NULL)
        return -1;
    nq = q_claim_read(q, op->in.claim.account, DEL_QUEUED, now, max, rows);
    ni = nq < 0 ? -1 : q_claim_read(q, op->in.claim.account, DEL_IN_FLIGHT, now, max, rows + nq);
    if (ni < 0)
        goto fail;
    n = nq + ni;
    qsort(rows, (size_t)n, sizeof(*rows), q_claim_row_cmp);
    if (n > max)
        n = max;
    op->out.claim.jobs = malloc((size_t)(n > 0 ? n : 1) * sizeof(struct queue_job));
    if (op->out.claim.jobs == NULL)
        goto fail;
    for (int i = 0; i < n; i++) {
        sqlite3_stmt *st = q->st[S_CLAIM_UPDATE];
        rows[i].job.lease++;
        sqlite3_bind_int64(st, 1, rows[i].job.job_id);
        sqlite3_bind_int64(st, 2, lease_until);
        sqlite3_bind_int64(st, 3, now);
        sqlite3_bind_int64(st, 4, rows[i].job.lease);
        if (sq_done(q, S_CLAIM_UPDATE) != 0 ||
            sq_count_job_move(q, c, rows[i].job.job_id, rows[i].from, DEL_IN_FLIGHT) != 0)
            goto fail;
        op->out.claim.jobs[i] = rows[i].job;
    }
    op->out.claim.n = n;
    op->out.claim.next_due_ms = INT64_MAX;
    if (q_next_due(q, op->in.claim.account, "queued", &op->out.claim.next_due_ms) != 0 ||
        q_next_due(q, op->in.claim.account, "in_flight", &op->out.claim.next_due_ms) != 0)
        goto fail;
    free(rows);
    return 0;
fail:
    free(rows);
    return -1;
}

/* Whether job_id is still in flight under this lease (*owned), with its
 * resource. A completion or release that comes after the lease ended and
 * the job was claimed again, or an operator moved it, must not overwrite
 * newer news: it is dropped and counted, and it is no failure, since there
 * is nothing for the caller to redo. */
static int q_job_leased(struct queue_store *q, struct cycle *c, int64_t job_id, int64_t lease,
                        char *res, size_t res_size, char *rid, size_t rid_size,
                        char *account /* NULL, or QUEUE_ACCOUNT_MAX + 1 */, int *owned)
{
    sqlite3_stmt *st = q->st[S_JOB_GET];

    *owned = 0;
    sqlite3_bind_int64(st, 1, job_id);
    if (sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_reset(st);
        log_warn(NULL, "queue: completion for unknown job %lld", (long long)job_id);
        return -1;
    }
    *owned = strcmp((const char *)sqlite3_column_text(st, 0), "in_flight") == 0 &&
             sqlite3_column_int64(st, 3) == lease;
    sq_col_copy(st, 1, res, res_size);
    sq_col_copy(st, 2, rid, rid_size);
    if (account != NULL)
        sq_col_copy(st, 4, account, QUEUE_ACCOUNT_MAX + 1);
    sqlite3_reset(st);
    if (!*owned)
        c->stale++;
    return 0;
}

static int q_op_complete(struct queue_store *q, struct cycle *c, struct op *op)
{
    const struct queue_outcome *o = &op->in.complete;
    sqlite3_stmt *st;
    char res[32] = "", rid[RESOURCE_ID_MAX + 1] = "";
    int owned, attempted = o->started_ms != 0;
    int64_t due = o->retry_at_ms > 0 ? o->retry_at_ms : op->now_ms;
    char account[QUEUE_ACCOUNT_MAX + 1] = "";
    struct audit_record r = queue_outcome_record(op, res, rid, account);

    if (q_job_leased(q, c, o->job_id, o->lease, res, sizeof(res), rid, sizeof(rid), account,
                     &owned) != 0)
        return -1;
    op->out.ok = 1;
    if (!owned)
        return 0;

    if (attempted) {
        st = q->st[S_ATTEMPT_INSERT];
        sqlite3_bind_int64(st, 1, o->job_id);
        sqlite3_bind_int64(st, 2, o->started_ms);
        sqlite3_bind_int64(st, 3, o->finished_ms);
        sqlite3_bind_int(st, 4, o->http_status);
        sq_bind_text(st, 5, o->upstream_request_id);
        sq_bind_text(st, 6, o->error_code);
        sq_bind_text(st, 7, o->detail);
        if (sq_done(q, S_ATTEMPT_INSERT) != 0)
            return -1;
        /* A try that ends the job is told by its terminal record, which
         * carries the same status and request id; an "attempt" record is
         * for the tries that will be made again. */
        r.event = "attempt";
        if (o->state == DEL_QUEUED && queue_cycle_audit(c, &r, NULL, NULL) != 0)
            return -1;
    }

    /* Terminal: the job row keeps the seq and mac of the audit record that
     * proves the outcome, so a deletion's answer can cite it. The record is
     * made first; if the update then fails, the op's rollback drops it. */
    uint64_t seq = 0;
    char mac[65] = "";
    if (o->state != DEL_QUEUED) {
        r.event = deletion_state_name(o->state);
        if (queue_cycle_audit(c, &r, &seq, mac) != 0)
            return -1;
    }
    st = q->st[S_JOB_COMPLETE];
    sqlite3_bind_int64(st, 1, o->job_id);
    sq_bind_text(st, 2, deletion_state_name(o->state));
    sqlite3_bind_int64(st, 3, o->state == DEL_QUEUED ? due : op->now_ms);
    sqlite3_bind_int(st, 4, o->counts_as_attempt ? 1 : 0);
    sqlite3_bind_int64(st, 5, op->now_ms);
    sqlite3_bind_int64(st, 6, o->state == DEL_QUEUED ? 0 : op->now_ms);
    sqlite3_bind_int(st, 7, attempted);
    sqlite3_bind_int(st, 8, o->http_status);
    sq_bind_text(st, 9, o->upstream_request_id);
    sq_bind_text(st, 10, o->error_code);
    sqlite3_bind_int64(st, 11, (sqlite3_int64)seq);
    sq_bind_text(st, 12, mac);
    if (sq_done(q, S_JOB_COMPLETE) != 0 ||
        sq_count_job_move(q, c, o->job_id, DEL_IN_FLIGHT, o->state) != 0)
        return -1;
    if (o->state == DEL_QUEUED)
        queue_cycle_note_due(c, due);
    return 0;
}

/* Handed back unsent: queued again from due_ms, no attempt, no record (no
 * state a reader would see changed: the job was pending and stays so). */
static int q_op_release(struct queue_store *q, struct cycle *c, struct op *op)
{
    sqlite3_stmt *st = q->st[S_JOB_RELEASE];
    int64_t due = op->in.release.due_ms > op->now_ms ? op->in.release.due_ms : op->now_ms;
    char res[32] = "", rid[RESOURCE_ID_MAX + 1] = "";
    int owned;

    if (q_job_leased(q, c, op->in.release.job_id, op->in.release.lease, res, sizeof(res), rid,
                     sizeof(rid), NULL, &owned) != 0)
        return -1;
    op->out.ok = 1;
    if (!owned)
        return 0;
    sqlite3_bind_int64(st, 1, op->in.release.job_id);
    sqlite3_bind_int64(st, 2, due);
    sqlite3_bind_int64(st, 3, op->now_ms);
    if (sq_done(q, S_JOB_RELEASE) != 0 ||
        sq_count_job_move(q, c, op->in.release.job_id, DEL_IN_FLIGHT, DEL_QUEUED) != 0)
        return -1;
    queue_cycle_note_due(c, due);
    return 0;
}

#define Q_PRUNE_BATCH 200 /* jobs per housekeeping op: a few milliseconds of the worker */

static int q_prune_job(struct queue_store *q, struct cycle *c, int64_t job_id,
                       enum deletion_state state)
{
    sqlite3_stmt *st = q->st[S_PRUNE_LIVE];

    sqlite3_bind_int64(st, 1, job_id);
    if (sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_reset(st);
        sq_sql_error(q, "prune");
        return -1;
    }
    c->moves.state[state] -= sqlite3_column_int64(st, 0);
    c->moves.state[DEL_CANCELLED] -= sqlite3_column_int64(st, 1);
    sqlite3_reset(st);
    for (enum stmt_id id = S_PRUNE_ATTEMPTS; id <= S_PRUNE_JOB; id++) {
        sqlite3_bind_int64(q->st[id], 1, job_id);
        if (sq_done(q, id) != 0)
            return -1;
    }
    return 0;
}

/* Retention: finished jobs past it go, with their deletions and attempts,
 * a bounded batch at a time so ingest and claims never wait long behind
 * it. The audit log keeps the evidence; a receipt verifies without the
 * queue. Pending jobs, and deletions waiting for their not_before, are
 * never finished, so never pruned. */
static int q_op_maintain(struct queue_store *q, struct cycle *c, struct op *op)
{
    int64_t cutoff = queue_clock_ms(c) - q->retention_ms, ids[Q_PRUNE_BATCH];
    enum deletion_state states[Q_PRUNE_BATCH];
    sqlite3_stmt *st;
    int n = 0, rc;

    op->out.count = 0;
    if (q->retention_ms <= 0)
        return 0;
    st = q->st[S_PRUNE_PICK];
    sqlite3_bind_int64(st, 1, cutoff);
    sqlite3_bind_int(st, 2, Q_PRUNE_BATCH);
    rc = SQLITE_DONE;
    while (n < Q_PRUNE_BATCH && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (deletion_state_from_name((const char *)sqlite3_column_text(st, 1), &states[n]) == 0)
            ids[n++] = sqlite3_column_int64(st, 0);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        sq_sql_error(q, sq_stmt_sql[S_PRUNE_PICK]);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        if (q_prune_job(q, c, ids[i], states[i]) != 0)
            return -1;
    }
    op->out.count = n;

    st = q->st[S_PRUNE_OWN_PICK];
    sqlite3_bind_int64(st, 1, cutoff);
    sqlite3_bind_int(st, 2, Q_PRUNE_BATCH);
    char own[Q_PRUNE_BATCH][QUEUE_DELETION_ID_MAX + 1];
    n = 0;
    rc = SQLITE_DONE;
    while (n < Q_PRUNE_BATCH && (rc = sqlite3_step(st)) == SQLITE_ROW)
        sq_col_copy(st, 0, own[n++], sizeof(own[0]));
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        sq_sql_error(q, sq_stmt_sql[S_PRUNE_OWN_PICK]);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        sq_bind_text(q->st[S_PRUNE_OWN], 1, own[i]);
        if (sq_done(q, S_PRUNE_OWN) != 0)
            return -1;
        c->moves.state[DEL_CANCELLED]--;
    }
    return 0;
}

static int q_meta_audit(struct queue_store *q, uint64_t seq, const char *mac)
{
    sqlite3_stmt *st = q->st[S_META_AUDIT];

    sqlite3_bind_int64(st, 1, (int64_t)seq);
    sq_bind_text(st, 2, mac);
    return sq_done(q, S_META_AUDIT);
}

/* ---- the backend ---- */

static int q_begin(struct queue_store *q)
{
    return sq_done(q, S_BEGIN);
}

static int q_commit(struct queue_store *q)
{
    return sq_done(q, S_COMMIT);
}

static void q_rollback(struct queue_store *q)
{
    (void)sq_done(q, S_ROLLBACK);
}

static int q_savepoint(struct queue_store *q)
{
    return sq_done(q, S_SAVEPOINT);
}

static int q_release_savepoint(struct queue_store *q)
{
    return sq_done(q, S_RELEASE);
}

static int q_rollback_savepoint(struct queue_store *q)
{
    return sq_done(q, S_ROLLBACK_TO);
}

static int q_in_transaction(struct queue_store *q)
{
    return !sqlite3_get_autocommit(q->db);
}

/* Forgets idempotency keys past their TTL, a bounded number per cycle
 * (more than a cycle can add, so the table cannot grow without end), and
 * writes the cycle's count moves. */
static int q_end_cycle(struct queue_store *q, struct cycle *c)
{
    if (q->ttl_ms > 0) {
        sqlite3_stmt *st = q->st[S_SUB_PRUNE];
        sqlite3_bind_int64(st, 1, util_now_ms() - q->ttl_ms);
        sqlite3_bind_int(st, 2, 64 + 4 * c->n_submits);
        if (sq_done(q, S_SUB_PRUNE) != 0)
            return -1;
    }
    return sq_count_flush(q, &c->moves);
}

/* meta.paused is how a version before per-account pauses kept a pause of
 * all: it still pauses every account until the next pause or resume. */
static int q_meta_read(struct queue_store *q, int64_t *audit_seq, char audit_mac[65],
                       unsigned *paused)
{
    sqlite3_stmt *st = q->st[S_META_READ];
    int rc = sqlite3_step(st), all = 0;

    if (rc == SQLITE_ROW) {
        *audit_seq = sqlite3_column_int64(st, 0);
        sq_col_copy(st, 1, audit_mac, 65);
        all = sqlite3_column_int(st, 2) != 0;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_ROW)
        return -1;
    *paused = 0;
    for (int i = 0; i < q->n_accounts; i++) {
        st = q->st[S_PAUSE_HAS];
        sq_bind_text(st, 1, q->account_ids[i]);
        rc = sqlite3_step(st);
        sqlite3_reset(st);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
            return -1;
        if (all || rc == SQLITE_ROW)
            *paused |= 1u << i;
    }
    return 0;
}

const struct queue_backend queue_sqlite_backend = {
    .name = "sqlite",
    .open = sq_store_open,
    .close = sq_store_free,
    .begin = q_begin,
    .commit = q_commit,
    .rollback = q_rollback,
    .savepoint = q_savepoint,
    .release_savepoint = q_release_savepoint,
    .rollback_savepoint = q_rollback_savepoint,
    .in_transaction = q_in_transaction,
    .run =
        {
            [OP_SUBMIT] = q_op_submit,
            [OP_CLAIM] = q_op_claim,
            [OP_COMPLETE] = q_op_complete,
            [OP_RELEASE] = q_op_release,
            [OP_GET] = sq_op_get,
            [OP_STATS] = sq_op_stats,
            [OP_LIST] = sq_op_list,
            [OP_RETRY] = sq_op_retry,
            [OP_CANCEL] = sq_op_cancel,
            [OP_NOTE] = queue_op_note,
            [OP_PAUSE] = sq_op_pause,
            [OP_MAINTAIN] = q_op_maintain,
            [OP_EXPORT] = sq_op_export,
        },
    .end_cycle = q_end_cycle,
    .meta_read = q_meta_read,
    .meta_write_audit = q_meta_audit,
};
