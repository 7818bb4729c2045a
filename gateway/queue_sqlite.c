/*
 * queue_sqlite.c: the queue's storage on one SQLite file (queue_backend.h;
 * queue.c does the rest: the worker, group commit, the audit log around
 * each cycle, delivery).
 *
 * Map of this file:
 *   schema      the versioned schema: migrations[] applied forward at open
 *   statements  every SQL statement, prepared once at open
 *   operations  one function per kind of op, run on the worker inside the
 *               cycle's transaction
 *   open/close  ownership (flock on "<path>.lock"), pragmas, quick_check,
 *               crash recovery, the checkpointer thread
 *   backend     the table queue.c calls
 *
 * The worker thread owns the main connection once the queue is open; the
 * checkpointer has a connection of its own, so no commit waits for a
 * checkpoint. Counts of deletions by state are kept in a table, moved by
 * the ops themselves and written once per commit (count_moves), so
 * queue_stats reads a few rows whatever the queue's size.
 */
#include "queue_backend.h"
#include "log.h"
#include "util.h"
#include "wal_buffer.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define Q_RETRY_ALL_MAX 10000
#define Q_BUSY_TIMEOUT_MS 5000
#define Q_CHECK_MS 1500    /* how long start-up may spend in PRAGMA quick_check */
#define Q_CKPT_FRAMES 4096 /* WAL frames (1 KiB pages) that wake the checkpointer */
/* A WAL this long makes the checkpointer hold the writer back until the
 * WAL starts again from its beginning (q_checkpointer); twice that, and
 * the writer does it itself (q_wal_hook). */
#define Q_WAL_MAX_FRAMES (4 * Q_CKPT_FRAMES)

/* ---- schema ---- */

/* migrations[i] takes the schema from version i to version i + 1; adding
 * version 2 is appending one string. Every step of one open runs in one
 * transaction, so a crash mid-upgrade leaves the old version intact. */
static const char *const migrations[] = {
    /* v1 */
    "CREATE TABLE submissions ("
    "  source TEXT NOT NULL, key TEXT NOT NULL,"
    "  status INTEGER NOT NULL, body TEXT NOT NULL, created_ms INTEGER NOT NULL,"
    "  PRIMARY KEY (source, key));"
    "CREATE INDEX submissions_created ON submissions (created_ms);"
    "CREATE TABLE jobs ("
    "  id INTEGER PRIMARY KEY,"
    "  resource TEXT NOT NULL, resource_id TEXT NOT NULL, state TEXT NOT NULL,"
    "  due_ms INTEGER NOT NULL," /* queued: next try; in_flight: lease end */
    "  lease_until_ms INTEGER NOT NULL DEFAULT 0,"
    "  attempts INTEGER NOT NULL DEFAULT 0,"
    "  clock_start_ms INTEGER NOT NULL, created_ms INTEGER NOT NULL,"
    "  updated_ms INTEGER NOT NULL, completed_ms INTEGER NOT NULL DEFAULT 0,"
    "  last_http_status INTEGER NOT NULL DEFAULT 0,"
    "  last_upstream_request_id TEXT NOT NULL DEFAULT '',"
    "  last_error TEXT NOT NULL DEFAULT '',"
    "  final_audit_seq INTEGER NOT NULL DEFAULT 0,"
    "  final_audit_mac TEXT NOT NULL DEFAULT '');"
    "CREATE UNIQUE INDEX jobs_pending ON jobs (resource, resource_id)"
    "  WHERE state IN ('queued', 'in_flight');"
    "CREATE INDEX jobs_state_due ON jobs (state, due_ms);"
    "CREATE TABLE deletions ("
    "  id TEXT PRIMARY KEY,"
    "  job_id INTEGER NOT NULL REFERENCES jobs (id),"
    "  source TEXT NOT NULL, key TEXT NOT NULL, request_id TEXT NOT NULL,"
    "  reason TEXT NOT NULL, not_before_ms INTEGER NOT NULL, accepted_ms INTEGER NOT NULL,"
    "  state TEXT," /* NULL: its job's; 'cancelled' on its own */
    "  updated_ms INTEGER NOT NULL DEFAULT 0,"
    "  final_audit_seq INTEGER NOT NULL DEFAULT 0,"
    "  final_audit_mac TEXT NOT NULL DEFAULT '');"
    "CREATE INDEX deletions_job ON deletions (job_id);"
    "CREATE INDEX deletions_own_state ON deletions (accepted_ms) WHERE state IS NOT NULL;"
    "CREATE TABLE attempts ("
    "  id INTEGER PRIMARY KEY,"
    "  job_id INTEGER NOT NULL REFERENCES jobs (id),"
    "  started_ms INTEGER NOT NULL, finished_ms INTEGER NOT NULL,"
    "  http_status INTEGER NOT NULL, upstream_request_id TEXT NOT NULL,"
    "  error_code TEXT NOT NULL, detail TEXT NOT NULL);"
    "CREATE INDEX attempts_job ON attempts (job_id);"
    /* Counts kept by triggers, in the same transaction as the change, so
     * queue_stats reads eight rows instead of joining every deletion. */
    "CREATE TABLE counts (name TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;"
    "INSERT INTO counts (name, n) VALUES ('queued', 0), ('in_flight', 0), ('deleted', 0),"
    "  ('not_found', 0), ('rejected', 0), ('dead', 0), ('cancelled', 0), ('jobs_pending', 0);"
    "CREATE INDEX jobs_pending_created ON jobs (created_ms)"
    "  WHERE state IN ('queued', 'in_flight');"
    "CREATE TRIGGER count_job_insert AFTER INSERT ON jobs BEGIN"
    "  UPDATE counts SET n = n + 1"
    "    WHERE name = 'jobs_pending' AND NEW.state IN ('queued', 'in_flight');"
    "END;"
    "CREATE TRIGGER count_job_state AFTER UPDATE OF state ON jobs"
    "  WHEN OLD.state <> NEW.state BEGIN"
    "  UPDATE counts SET n = n - (SELECT count(*) FROM deletions"
    "    WHERE job_id = NEW.id AND state IS NULL) WHERE name = OLD.state;"
    "  UPDATE counts SET n = n + (SELECT count(*) FROM deletions"
    "    WHERE job_id = NEW.id AND state IS NULL) WHERE name = NEW.state;"
    "  UPDATE counts SET n = n + (NEW.state IN ('queued', 'in_flight'))"
    "    - (OLD.state IN ('queued', 'in_flight')) WHERE name = 'jobs_pending';"
    "END;"
    "CREATE TRIGGER count_deletion_insert AFTER INSERT ON deletions BEGIN"
    "  UPDATE counts SET n = n + 1"
    "    WHERE name = coalesce(NEW.state, (SELECT state FROM jobs WHERE id = NEW.job_id));"
    "END;"
    "CREATE TRIGGER count_deletion_change AFTER UPDATE OF state, job_id ON deletions BEGIN"
    "  UPDATE counts SET n = n - 1"
    "    WHERE name = coalesce(OLD.state, (SELECT state FROM jobs WHERE id = OLD.job_id));"
    "  UPDATE counts SET n = n + 1"
    "    WHERE name = coalesce(NEW.state, (SELECT state FROM jobs WHERE id = NEW.job_id));"
    "END;",
    /* v2: rows are inserted only by a submission, which now counts what it
     * adds and writes the sums once per commit (q_count_flush): the
     * insert triggers were a sixth of a submission's cost. */
    "DROP TRIGGER IF EXISTS count_job_insert;"
    "DROP TRIGGER IF EXISTS count_deletion_insert;",
    /* v3: claims and outcomes (into and out of in_flight, two per DELETE)
     * are counted by the code too (q_count_job_move); the trigger, whose
     * every firing allocated a frame and ran five statements, was 40% of
     * the worker's time per DELETE. It stays for the operator's rare
     * changes (cancel, retry). */
    "DROP TRIGGER IF EXISTS count_job_state;"
    "CREATE TRIGGER count_job_state AFTER UPDATE OF state ON jobs"
    "  WHEN OLD.state <> NEW.state AND OLD.state <> 'in_flight' AND NEW.state <> 'in_flight'"
    "  BEGIN"
    "  UPDATE counts SET n = n - (SELECT count(*) FROM deletions"
    "    WHERE job_id = NEW.id AND state IS NULL) WHERE name = OLD.state;"
    "  UPDATE counts SET n = n + (SELECT count(*) FROM deletions"
    "    WHERE job_id = NEW.id AND state IS NULL) WHERE name = NEW.state;"
    "  UPDATE counts SET n = n + (NEW.state IN ('queued', 'in_flight'))"
    "    - (OLD.state IN ('queued', 'in_flight')) WHERE name = 'jobs_pending';"
    "END;",
    /* v4: the queue remembers the last audit record it committed, so start-up
     * can tell a lost audit log or a rolled-back queue (q_open_audit), and
     * whether an operator paused dispatching. -1: not known yet (a queue
     * from before v4), adopted from the log at the first start. */
    "ALTER TABLE meta ADD COLUMN audit_seq INTEGER NOT NULL DEFAULT -1;"
    "ALTER TABLE meta ADD COLUMN audit_mac TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE meta ADD COLUMN paused INTEGER NOT NULL DEFAULT 0;",
    /* v5: a lease token per job, changed by every claim, so a completion
     * or release from a lease that was taken over is dropped (fencing);
     * and counts kept one way: every op moves them in code, so the last
     * triggers go. */
    "ALTER TABLE jobs ADD COLUMN lease INTEGER NOT NULL DEFAULT 0;"
    "DROP TRIGGER IF EXISTS count_job_state;"
    "DROP TRIGGER IF EXISTS count_deletion_change;",
    /* v6: finished jobs by when they finished, for retention (q_op_maintain). */
    "CREATE INDEX jobs_finished ON jobs (completed_ms) WHERE state IN ('deleted', 'not_found',"
    " 'rejected', 'dead', 'cancelled');",
    /* v7: the compliance export reads deletions in accepted order and finds
     * every deletion of one resource; without these, one page of either
     * would scan the whole table (seconds with a million rows, on the
     * worker, holding up every commit). */
    "CREATE INDEX IF NOT EXISTS deletions_accepted ON deletions (accepted_ms);"
    "CREATE INDEX IF NOT EXISTS jobs_resource_id ON jobs (resource_id);",
    /* v8: one index by resource, not two. The partial unique one kept one
     * pending job per resource, and cost two random-page writes in each
     * job's life (in, and out when it finished) beside jobs_resource_id's
     * one. This backend has one writer (its flock), so a lookup before the
     * insert keeps the rule (q_op_submit). */
    "DROP INDEX IF EXISTS jobs_pending;",
    /* v9: the same finished-job index, with a predicate of two values.
     * SQLite evaluates a partial index's predicate on every write to the
     * table, and an IN list of more than two values is an ephemeral table
     * built each time: five states made every claim, completion and insert
     * build two, a quarter of the worker's instructions. */
    "DROP INDEX IF EXISTS jobs_finished;"
    "CREATE INDEX jobs_finished ON jobs (completed_ms) WHERE state NOT IN ('queued', 'in_flight');",
};
#define SCHEMA_VERSION ((int)(sizeof(migrations) / sizeof(migrations[0])))

/* ---- statements ---- */

enum stmt_id {
    S_BEGIN,
    S_COMMIT,
    S_ROLLBACK,
    S_SAVEPOINT,
    S_RELEASE,
    S_ROLLBACK_TO,
    S_SUB_UPSERT,
    S_SUB_GET,
    S_SUB_PRUNE,
    S_JOB_FIND_PENDING,
    S_JOB_INSERT,
    S_JOB_SET_DUE,
    S_DEL_INSERT,
    S_CLAIM_SELECT,
    S_CLAIM_UPDATE,
    S_NEXT_DUE,
    S_JOB_GET,
    S_ATTEMPT_INSERT,
    S_JOB_COMPLETE,
    S_COUNT_ADD,
    S_VIEW_GET,
    S_VIEW_ATTEMPTS,
    S_LIST_BY_JOB_STATE,
    S_LIST_CANCELLED,
    S_STATS_STATES,
    S_STATS_PENDING,
    S_DEL_TARGET,
    S_DEL_CANCEL,
    S_JOB_LIVE_COUNT,
    S_JOB_CANCEL,
    S_DEAD_JOBS,
    S_JOB_REQUEUE,
    S_DEL_MOVE,
    S_META_AUDIT,
    S_META_PAUSED,
    S_META_READ,
    S_JOB_RELEASE,
    S_PRUNE_PICK,
    S_PRUNE_LIVE,
    S_PRUNE_ATTEMPTS,
    S_PRUNE_DELETIONS,
    S_PRUNE_JOB,
    S_PRUNE_OWN_PICK,
    S_PRUNE_OWN,
    S_EXPORT_SCAN,
    S_EXPORT_RESOURCE,
    S_COUNT
};

#define VIEW_COLS                                                                                  \
    "d.id, d.job_id, j.resource, j.resource_id, coalesce(d.state, j.state), d.source, d.key,"      \
    " d.request_id, d.reason, j.attempts, j.last_http_status, j.last_upstream_request_id,"         \
    " j.last_error, d.accepted_ms, d.not_before_ms, max(j.updated_ms, d.updated_ms), j.due_ms,"    \
    " j.completed_ms, d.state, d.updated_ms, j.final_audit_seq, j.final_audit_mac,"                \
    " d.final_audit_seq, d.final_audit_mac"

static const char *const stmt_sql[S_COUNT] = {
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_SAVEPOINT] = "SAVEPOINT op",
    [S_RELEASE] = "RELEASE op",
    [S_ROLLBACK_TO] = "ROLLBACK TO op",
    /* A key older than the TTL is taken over by the new submission. */
    [S_SUB_UPSERT] = "INSERT INTO submissions (source, key, status, body, created_ms)"
                     " VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (source, key) DO UPDATE SET"
                     " status = excluded.status, body = excluded.body,"
                     " created_ms = excluded.created_ms WHERE submissions.created_ms <= ?6",
    [S_SUB_GET] = "SELECT status, body FROM submissions WHERE source = ?1 AND key = ?2",
    [S_SUB_PRUNE] = "DELETE FROM submissions WHERE rowid IN (SELECT rowid FROM submissions"
                    " WHERE created_ms <= ?1 ORDER BY created_ms LIMIT ?2)",
    /* A resource has one pending job at most: every insert looks first. */
    [S_JOB_FIND_PENDING] = "SELECT id, state, due_ms FROM jobs INDEXED BY jobs_resource_id"
                           " WHERE resource_id = ?2 AND resource = ?1"
                           " AND state IN ('queued', 'in_flight')",
    [S_JOB_INSERT] = "INSERT INTO jobs (resource, resource_id, state, due_ms, clock_start_ms,"
                     " created_ms, updated_ms) VALUES (?1, ?2, 'queued', ?3, ?3, ?4, ?4)",
    [S_JOB_SET_DUE] = "UPDATE jobs SET due_ms = ?2, updated_ms = ?3 WHERE id = ?1",
    [S_DEL_INSERT] = "INSERT INTO deletions (id, job_id, source, key, request_id, reason,"
                     " not_before_ms, accepted_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [S_CLAIM_SELECT] = "SELECT id, resource, resource_id, attempts, clock_start_ms, due_ms, lease"
                       " FROM jobs WHERE state = ?1 AND due_ms <= ?2 ORDER BY due_ms LIMIT ?3",
    [S_CLAIM_UPDATE] = "UPDATE jobs SET state = 'in_flight', due_ms = ?2, lease_until_ms = ?2,"
                       " updated_ms = ?3, lease = ?4 WHERE id = ?1",
    [S_NEXT_DUE] = "SELECT due_ms FROM jobs WHERE state = ?1 ORDER BY due_ms LIMIT 1",
    [S_JOB_GET] = "SELECT state, resource, resource_id, lease FROM jobs WHERE id = ?1",
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
    [S_LIST_BY_JOB_STATE] = "SELECT " VIEW_COLS " FROM jobs j JOIN deletions d"
                            " ON d.job_id = j.id WHERE j.state = ?1 AND d.state IS NULL"
                            " ORDER BY d.accepted_ms, d.rowid LIMIT ?2",
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

/* ---- the store ---- */

struct queue_store {
    sqlite3 *db;
    sqlite3_stmt *st[S_COUNT];
    int64_t ttl_ms;       /* idempotency keys older than this are forgotten */
    int64_t retention_ms; /* finished jobs older than this are pruned; 0 = kept */
    int lock_fd;

    /* The checkpointer: its own connection copies committed WAL frames
     * into the database beside the worker, so no commit waits for it. */
    sqlite3 *ckpt_db;
    pthread_t ckpt;
    int ckpt_started;
    pthread_mutex_t ckpt_mu; /* guards the two below */
    pthread_cond_t ckpt_cv;
    int ckpt_wanted, ckpt_stop;
    int wal_frames;         /* the WAL's length at the last wake-up */
    uint64_t ckpt_failures; /* atomic: checkpoints that failed or did nothing */
};

/* ---- small SQLite helpers (worker thread) ---- */

static void q_sql_error(struct queue_store *q, const char *what)
{
    log_error(NULL, "queue: %s: %s", what, sqlite3_errmsg(q->db));
}

/* Runs a statement that returns no row, then resets it. */
static int q_done(struct queue_store *q, enum stmt_id id)
{
    sqlite3_stmt *st = q->st[id];
    int rc = sqlite3_step(st);

    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        q_sql_error(q, stmt_sql[id]);
        return -1;
    }
    return 0;
}

static void q_bind_text(sqlite3_stmt *st, int i, const char *s)
{
    sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
}

static void q_col_copy(sqlite3_stmt *st, int i, char *buf, size_t size)
{
    const unsigned char *s = sqlite3_column_text(st, i);

    snprintf(buf, size, "%s", s != NULL ? (const char *)s : "");
}

/* ---- operations (worker thread, inside the cycle's transaction) ---- */

static int q_op_submit(struct queue_store *q, struct cycle *c, struct op *op)
{
    const struct submit_in *in = &op->in.submit;
    sqlite3_stmt *st = q->st[S_SUB_UPSERT];
    struct audit_record r = {
        .time_ms = op->now_ms, .source = in->source, .key = in->key, .request_id = in->request_id};

    c->n_submits++;
    q_bind_text(st, 1, in->source);
    q_bind_text(st, 2, in->key);
    sqlite3_bind_int(st, 3, in->status);
    q_bind_text(st, 4, in->body);
    sqlite3_bind_int64(st, 5, op->now_ms);
    sqlite3_bind_int64(st, 6, q->ttl_ms > 0 ? op->now_ms - q->ttl_ms : INT64_MIN);
    if (q_done(q, S_SUB_UPSERT) != 0)
        return -1;

    if (sqlite3_changes(q->db) == 0) {
        /* A key we remember: replay the first answer, change nothing. */
        st = q->st[S_SUB_GET];
        q_bind_text(st, 1, in->source);
        q_bind_text(st, 2, in->key);
        if (sqlite3_step(st) != SQLITE_ROW) {
            q_sql_error(q, "submission lookup");
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
        q_bind_text(st, 1, res);
        q_bind_text(st, 2, it->resource_id);
        int rc = sqlite3_step(st);
        if (rc == SQLITE_DONE) {
            sqlite3_reset(st);
            st = q->st[S_JOB_INSERT];
            q_bind_text(st, 1, res);
            q_bind_text(st, 2, it->resource_id);
            sqlite3_bind_int64(st, 3, due);
            sqlite3_bind_int64(st, 4, op->now_ms);
            if (q_done(q, S_JOB_INSERT) != 0)
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
                q_sql_error(q, "pending job lookup");
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
                if (q_done(q, S_JOB_SET_DUE) != 0)
                    return -1;
                queue_cycle_note_due(c, due);
            }
        }

        st = q->st[S_DEL_INSERT];
        q_bind_text(st, 1, it->deletion_id);
        sqlite3_bind_int64(st, 2, job_id);
        q_bind_text(st, 3, in->source);
        q_bind_text(st, 4, in->key);
        q_bind_text(st, 5, in->request_id);
        q_bind_text(st, 6, it->reason);
        sqlite3_bind_int64(st, 7, it->not_before_ms);
        sqlite3_bind_int64(st, 8, op->now_ms);
        if (q_done(q, S_DEL_INSERT) != 0)
            return -1;

        r.event = "accepted";
        r.deletion_id = it->deletion_id;
        r.job_id = job_id;
        r.resource = res;
        r.resource_id = it->resource_id;
        if (queue_cycle_audit(c, &r, NULL, NULL) != 0)
            return -1;
    }
    op->out.submit.status = QUEUE_SUBMIT_OK;
    return 0;
}

/* Writes the cycle's count changes, one UPDATE per count that moved. */
static int q_count_flush(struct queue_store *q, const struct count_moves *m)
{
    for (int i = 0; i <= DEL_STATE_COUNT; i++) {
        int64_t n = i < DEL_STATE_COUNT ? m->state[i] : m->jobs_pending;
        if (n == 0)
            continue;
        q_bind_text(q->st[S_COUNT_ADD], 1,
                    i < DEL_STATE_COUNT ? deletion_state_name((enum deletion_state)i)
                                        : "jobs_pending");
        sqlite3_bind_int64(q->st[S_COUNT_ADD], 2, n);
        if (q_done(q, S_COUNT_ADD) != 0)
            return -1;
    }
    return 0;
}

/* A job moves from one state to another: its live deletions (those with no
 * state of their own) move with it. */
static int q_count_job_move(struct queue_store *q, struct cycle *c, int64_t job_id,
                            enum deletion_state from, enum deletion_state to)
{
    sqlite3_stmt *st = q->st[S_JOB_LIVE_COUNT];
    int64_t live;

    if (from == to)
        return 0;
    sqlite3_bind_int64(st, 1, job_id);
    if (sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_reset(st);
        q_sql_error(q, "live deletions");
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
static int q_claim_read(struct queue_store *q, enum deletion_state state, int64_t now, int max,
                        struct claim_row *rows)
{
    sqlite3_stmt *st = q->st[S_CLAIM_SELECT];
    int n = 0, rc = SQLITE_DONE;

    q_bind_text(st, 1, deletion_state_name(state));
    sqlite3_bind_int64(st, 2, now);
    sqlite3_bind_int(st, 3, max);
    while (n < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct claim_row *r = &rows[n];
        memset(r, 0, sizeof(*r));
        r->from = state;
        r->job.job_id = sqlite3_column_int64(st, 0);
        if (resource_from_name((const char *)sqlite3_column_text(st, 1), &r->job.resource) != 0)
            continue; /* not written by this code: leave it for an operator */
        q_col_copy(st, 2, r->job.resource_id, sizeof(r->job.resource_id));
        r->job.attempts = sqlite3_column_int(st, 3);
        r->job.clock_start_ms = sqlite3_column_int64(st, 4);
        r->due_ms = sqlite3_column_int64(st, 5);
        r->job.lease = sqlite3_column_int64(st, 6);
        n++;
    }
    if (n < max && rc != SQLITE_DONE) {
        q_sql_error(q, "claim");
        n = -1;
    }
    sqlite3_reset(st);
    return n;
}

static int q_next_due(struct queue_store *q, const char *state, int64_t *due)
{
    sqlite3_stmt *st = q->st[S_NEXT_DUE];
    int rc;

    q_bind_text(st, 1, state);
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
    nq = q_claim_read(q, DEL_QUEUED, now, max, rows);
    ni = nq < 0 ? -1 : q_claim_read(q, DEL_IN_FLIGHT, now, max, rows + nq);
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
        if (q_done(q, S_CLAIM_UPDATE) != 0 ||
            q_count_job_move(q, c, rows[i].job.job_id, rows[i].from, DEL_IN_FLIGHT) != 0)
            goto fail;
        op->out.claim.jobs[i] = rows[i].job;
    }
    op->out.claim.n = n;
    op->out.claim.next_due_ms = INT64_MAX;
    if (q_next_due(q, "queued", &op->out.claim.next_due_ms) != 0 ||
        q_next_due(q, "in_flight", &op->out.claim.next_due_ms) != 0)
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
                        char *res, size_t res_size, char *rid, size_t rid_size, int *owned)
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
    q_col_copy(st, 1, res, res_size);
    q_col_copy(st, 2, rid, rid_size);
    sqlite3_reset(st);
    if (!*owned)
        c->stale++;
    return 0;
}

static int q_op_complete(struct queue_store *q, struct cycle *c, struct op *op)
{
    const struct queue_outcome *o = &op->in.complete;
    sqlite3_stmt *st;
    char res[32], rid[RESOURCE_ID_MAX + 1];
    int owned, attempted = o->started_ms != 0;
    int64_t due = o->retry_at_ms > 0 ? o->retry_at_ms : op->now_ms;
    struct audit_record r = {.time_ms = op->now_ms,
                             .job_id = o->job_id,
                             .resource = res,
                             .resource_id = rid,
                             .http_status = o->http_status,
                             .upstream_request_id = o->upstream_request_id,
                             .error_code = o->error_code,
                             .detail = o->detail};

    if (q_job_leased(q, c, o->job_id, o->lease, res, sizeof(res), rid, sizeof(rid), &owned) != 0)
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
        q_bind_text(st, 5, o->upstream_request_id);
        q_bind_text(st, 6, o->error_code);
        q_bind_text(st, 7, o->detail);
        if (q_done(q, S_ATTEMPT_INSERT) != 0)
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
    q_bind_text(st, 2, deletion_state_name(o->state));
    sqlite3_bind_int64(st, 3, o->state == DEL_QUEUED ? due : op->now_ms);
    sqlite3_bind_int(st, 4, o->counts_as_attempt ? 1 : 0);
    sqlite3_bind_int64(st, 5, op->now_ms);
    sqlite3_bind_int64(st, 6, o->state == DEL_QUEUED ? 0 : op->now_ms);
    sqlite3_bind_int(st, 7, attempted);
    sqlite3_bind_int(st, 8, o->http_status);
    q_bind_text(st, 9, o->upstream_request_id);
    q_bind_text(st, 10, o->error_code);
    sqlite3_bind_int64(st, 11, (sqlite3_int64)seq);
    q_bind_text(st, 12, mac);
    if (q_done(q, S_JOB_COMPLETE) != 0 ||
        q_count_job_move(q, c, o->job_id, DEL_IN_FLIGHT, o->state) != 0)
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
    char res[32], rid[RESOURCE_ID_MAX + 1];
    int owned;

    if (q_job_leased(q, c, op->in.release.job_id, op->in.release.lease, res, sizeof(res), rid,
                     sizeof(rid), &owned) != 0)
        return -1;
    op->out.ok = 1;
    if (!owned)
        return 0;
    sqlite3_bind_int64(st, 1, op->in.release.job_id);
    sqlite3_bind_int64(st, 2, due);
    sqlite3_bind_int64(st, 3, op->now_ms);
    if (q_done(q, S_JOB_RELEASE) != 0 ||
        q_count_job_move(q, c, op->in.release.job_id, DEL_IN_FLIGHT, DEL_QUEUED) != 0)
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
        q_sql_error(q, "prune");
        return -1;
    }
    c->moves.state[state] -= sqlite3_column_int64(st, 0);
    c->moves.state[DEL_CANCELLED] -= sqlite3_column_int64(st, 1);
    sqlite3_reset(st);
    for (enum stmt_id id = S_PRUNE_ATTEMPTS; id <= S_PRUNE_JOB; id++) {
        sqlite3_bind_int64(q->st[id], 1, job_id);
        if (q_done(q, id) != 0)
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
    while (n < Q_PRUNE_BATCH && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (deletion_state_from_name((const char *)sqlite3_column_text(st, 1), &states[n]) == 0)
            ids[n++] = sqlite3_column_int64(st, 0);
    }
    sqlite3_reset(st);
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
    while (n < Q_PRUNE_BATCH && (rc = sqlite3_step(st)) == SQLITE_ROW)
        q_col_copy(st, 0, own[n++], sizeof(own[0]));
    sqlite3_reset(st);
    for (int i = 0; i < n; i++) {
        q_bind_text(q->st[S_PRUNE_OWN], 1, own[i]);
        if (q_done(q, S_PRUNE_OWN) != 0)
            return -1;
        c->moves.state[DEL_CANCELLED]--;
    }
    return 0;
}

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

static int q_op_get(struct queue_store *q, struct cycle *c, struct op *op)
{
    sqlite3_stmt *st = q->st[S_VIEW_GET];
    struct queue_deletion_view *v;
    int rc = SQLITE_DONE;
    (void)c;

    q_bind_text(st, 1, op->in.target.id);
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
    sqlite3_bind_int64(st, 1, v->job_id);
    sqlite3_bind_int(st, 2, QUEUE_VIEW_ATTEMPTS);
    while (v->n_attempts < QUEUE_VIEW_ATTEMPTS && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct queue_attempt_view *a = &v->attempt[v->n_attempts++];
        a->started_ms = sqlite3_column_int64(st, 0);
        a->finished_ms = sqlite3_column_int64(st, 1);
        a->http_status = sqlite3_column_int(st, 2);
        q_col_copy(st, 3, a->upstream_request_id, sizeof(a->upstream_request_id));
        q_col_copy(st, 4, a->error_code, sizeof(a->error_code));
        q_col_copy(st, 5, a->detail, sizeof(a->detail));
    }
    sqlite3_reset(st);
    return 0;
}

/* Reads the trigger-kept counts: a few rows, whatever the queue's size,
 * so a metrics scrape never holds up a commit. */
static int q_op_stats(struct queue_store *q, struct cycle *c, struct op *op)
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

static int q_op_list(struct queue_store *q, struct cycle *c, struct op *op)
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
        q_bind_text(st, 1, deletion_state_name(op->in.list.state));
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
static int q_op_export(struct queue_store *q, struct cycle *c, struct op *op)
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
        q_bind_text(st, 4, op->in.export.resource_id);
    while (n < limit && scanned < QUEUE_EXPORT_SCAN && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        scanned++;
        last_ms = sqlite3_column_int64(st, 13);
        last_seq = sqlite3_column_int64(st, 24);
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
    char res[32], rid[RESOURCE_ID_MAX + 1];
    int64_t live, target = job_id;
    enum deletion_state from;
    struct audit_record r = {.event = "retried",
                             .time_ms = op->now_ms,
                             .deletion_id = deletion_id,
                             .resource = res,
                             .resource_id = rid,
                             .source = "operator",
                             .key = op->in.target.actor};

    sqlite3_bind_int64(st, 1, job_id);
    if (sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_reset(st);
        return -1;
    }
    if (deletion_state_from_name((const char *)sqlite3_column_text(st, 0), &from) != 0) {
        sqlite3_reset(st);
        return -1;
    }
    q_col_copy(st, 1, res, sizeof(res));
    q_col_copy(st, 2, rid, sizeof(rid));
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
    q_bind_text(st, 1, res);
    q_bind_text(st, 2, rid);
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
        if (q_done(q, S_DEL_MOVE) != 0)
            return -1;
        if (queued && due > op->now_ms) {
            st = q->st[S_JOB_SET_DUE];
            sqlite3_bind_int64(st, 1, target);
            sqlite3_bind_int64(st, 2, op->now_ms);
            sqlite3_bind_int64(st, 3, op->now_ms);
            if (q_done(q, S_JOB_SET_DUE) != 0)
                return -1;
        }
    } else {
        sqlite3_reset(st);
        if (rc != SQLITE_DONE)
            return -1;
        st = q->st[S_JOB_REQUEUE];
        sqlite3_bind_int64(st, 1, job_id);
        sqlite3_bind_int64(st, 2, op->now_ms);
        if (q_done(q, S_JOB_REQUEUE) != 0 || q_count_job_move(q, c, job_id, from, DEL_QUEUED) != 0)
            return -1;
    }
    queue_cycle_note_due(c, op->now_ms);
    r.job_id = target;
    if (queue_cycle_audit(c, &r, NULL, NULL) != 0)
        return -1;
    *count += live;
    return 0;
}

static int q_op_retry(struct queue_store *q, struct cycle *c, struct op *op)
{
    op->out.count = 0;
    if (op->in.target.id[0] != '\0') {
        sqlite3_stmt *st = q->st[S_DEL_TARGET];
        int rc;

        q_bind_text(st, 1, op->in.target.id);
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
static int q_op_cancel(struct queue_store *q, struct cycle *c, struct op *op)
{
    sqlite3_stmt *st = q->st[S_DEL_TARGET];
    char res[32], rid[RESOURCE_ID_MAX + 1];
    int64_t job_id, live;
    uint64_t seq;
    char mac[65];
    int rc, cancellable;

    op->out.count = 0;
    q_bind_text(st, 1, op->in.target.id);
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(st);
        return rc == SQLITE_DONE ? 0 : -1;
    }
    job_id = sqlite3_column_int64(st, 0);
    cancellable = sqlite3_column_type(st, 1) == SQLITE_NULL &&
                  strcmp((const char *)sqlite3_column_text(st, 2), "queued") == 0;
    q_col_copy(st, 3, res, sizeof(res));
    q_col_copy(st, 4, rid, sizeof(rid));
    sqlite3_reset(st);
    if (!cancellable)
        return 0;

    struct audit_record r = {.event = "cancelled",
                             .time_ms = op->now_ms,
                             .deletion_id = op->in.target.id,
                             .job_id = job_id,
                             .resource = res,
                             .resource_id = rid,
                             .source = "operator",
                             .key = op->in.target.actor};
    if (queue_cycle_audit(c, &r, &seq, mac) != 0)
        return -1;
    st = q->st[S_DEL_CANCEL];
    q_bind_text(st, 1, op->in.target.id);
    sqlite3_bind_int64(st, 2, op->now_ms);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)seq);
    q_bind_text(st, 4, mac);
    if (q_done(q, S_DEL_CANCEL) != 0)
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
        if (q_done(q, S_JOB_CANCEL) != 0)
            return -1;
        c->moves.jobs_pending--; /* no live deletion left to move with it */
    }
    op->out.count = 1;
    return 0;
}

/* The operator's pause outlives a restart: a paused gateway that comes
 * back must not start sending. */
static int q_op_pause(struct queue_store *q, struct cycle *c, struct op *op)
{
    sqlite3_stmt *st = q->st[S_META_PAUSED];

    sqlite3_bind_int(st, 1, op->in.note.paused);
    if (q_done(q, S_META_PAUSED) != 0)
        return -1;
    return queue_op_note(q, c, op);
}

static int q_meta_audit(struct queue_store *q, uint64_t seq, const char *mac)
{
    sqlite3_stmt *st = q->st[S_META_AUDIT];

    sqlite3_bind_int64(st, 1, (int64_t)seq);
    q_bind_text(st, 2, mac);
    return q_done(q, S_META_AUDIT);
}

/* One gateway per database: an flock on "<path>.lock", held for the life of
 * the queue. flock conflicts between two opens even inside one process, and
 * the kernel drops it when the process dies, so a crash never leaves the
 * file locked. The holder's pid is written in it for the error message. */
static int q_lock(struct queue_store *q, const char *path, char *err, size_t errlen)
{
    char lock_path[PATH_MAX], pid[32] = "";
    int n;

    if ((size_t)snprintf(lock_path, sizeof(lock_path), "%s.lock", path) >= sizeof(lock_path)) {
        snprintf(err, errlen, "queue path too long");
        return -1;
    }
    q->lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (q->lock_fd < 0) {
        snprintf(err, errlen, "cannot open %s: %s", lock_path, strerror(errno));
        return -1;
    }
    if (flock(q->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        n = (int)pread(q->lock_fd, pid, sizeof(pid) - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        if (e == EWOULDBLOCK)
            snprintf(err, errlen,
                     "queue database %s is in use by another gateway (pid %s): two gateways "
                     "must never share one SQLite file",
                     path, pid[0] != '\0' ? pid : "unknown");
        else
            snprintf(err, errlen, "cannot lock %s: %s", lock_path, strerror(e));
        return -1;
    }
    n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (ftruncate(q->lock_fd, 0) != 0 || pwrite(q->lock_fd, pid, (size_t)n, 0) != n)
        log_warn(NULL, "queue: cannot write pid to %s", lock_path);
    return 0;
}

static int q_exec(sqlite3 *db, const char *sql, char *err, size_t errlen)
{
    char *msg = NULL;

    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, errlen, "queue database: %s: %s", sql, msg != NULL ? msg : "error");
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

/* Runs sql with ?1 = bind (if it has a parameter): 1 with *out set from the
 * first column when it returned a row, 0 when it returned none, -1 on error. */
static int q_query_int(sqlite3 *db, const char *sql, int64_t bind, int64_t *out)
{
    sqlite3_stmt *st = NULL;
    int rc;

    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return -1;
    if (sqlite3_bind_parameter_count(st) > 0)
        sqlite3_bind_int64(st, 1, bind);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && out != NULL)
        *out = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

/* Brings the schema to SCHEMA_VERSION and puts jobs that were in flight at
 * a crash back in the queue, due now: this process owns the file, so no
 * one else can be working on them, and their DELETE is sent again (Extend
 * answers 404 if the first one did land, which counts as done). */
static int q_migrate(sqlite3 *db, int64_t now, char *err, size_t errlen)
{
    int64_t version = 0;
    int rc;

    if (q_exec(db, "BEGIN IMMEDIATE", err, errlen) != 0)
        return -1;
    if (q_exec(db, "CREATE TABLE IF NOT EXISTS meta (schema_version INTEGER NOT NULL)", err,
               errlen) != 0)
        goto fail;
    rc = q_query_int(db, "SELECT schema_version FROM meta", 0, &version);
    if (rc < 0)
        goto sql_fail;
    if (rc == 0 && q_exec(db, "INSERT INTO meta (schema_version) VALUES (0)", err, errlen) != 0)
        goto fail;
    if (version > SCHEMA_VERSION || version < 0) {
        snprintf(err, errlen,
                 "queue database schema version %lld is newer than this gateway knows (%d): "
                 "run a newer gateway",
                 (long long)version, SCHEMA_VERSION);
        goto fail;
    }
    for (int v = (int)version; v < SCHEMA_VERSION; v++) {
        if (q_exec(db, migrations[v], err, errlen) != 0)
            goto fail;
    }
    /* A new queue has committed no audit record; one from before v4 keeps
     * -1 until it learns where the log ends. */
    if (version == 0 && q_exec(db, "UPDATE meta SET audit_seq = 0", err, errlen) != 0)
        goto fail;
    if (version < SCHEMA_VERSION &&
        q_query_int(db, "UPDATE meta SET schema_version = ?1", SCHEMA_VERSION, NULL) != 0)
        goto sql_fail;
    /* Jobs in flight at the last stop go back to the queue (this store is
     * this process's alone: nobody else can hold their leases), and their
     * live deletions with them in the counts: q_count_job_move's move, for
     * all of them at once. */
    if (q_exec(db,
               "UPDATE counts SET n = n + (SELECT count(*) FROM deletions d JOIN jobs j"
               " ON j.id = d.job_id WHERE j.state = 'in_flight' AND d.state IS NULL)"
               " * iif(name = 'queued', 1, -1) WHERE name IN ('queued', 'in_flight')",
               err, errlen) != 0)
        goto fail;
    if (q_query_int(db,
                    "UPDATE jobs SET state = 'queued', due_ms = ?1, lease_until_ms = 0,"
                    " updated_ms = ?1 WHERE state = 'in_flight'",
                    now, NULL) != 0)
        goto sql_fail;
    if (sqlite3_changes(db) > 0)
        log_warn(NULL, "queue: %d job(s) in flight at the last stop are queued again",
                 sqlite3_changes(db));
    if (q_exec(db, "COMMIT", err, errlen) != 0)
        goto fail;
    return 0;
sql_fail:
    snprintf(err, errlen, "queue database: %s", sqlite3_errmsg(db));
fail:
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}

static int q_check_deadline(void *arg)
{
    return util_mono_ms() > *(const int64_t *)arg;
}

/* A damaged page found only later fails claims with jobs stuck behind it,
 * after the gateway has said yes to more. quick_check reads every page
 * (not the index-to-table cross-checks of integrity_check): a second or
 * so for a million jobs. Past Q_CHECK_MS it stops, so a huge queue still
 * starts, and says it checked only part. */
static int q_quick_check(sqlite3 *db, const char *path, char *err, size_t errlen)
{
    int64_t deadline = util_mono_ms() + Q_CHECK_MS;
    sqlite3_stmt *st = NULL;
    char result[200] = "";
    int rc;

    sqlite3_progress_handler(db, 10000, q_check_deadline, &deadline);
    rc = sqlite3_prepare_v2(db, "PRAGMA quick_check(1)", -1, &st, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW)
        q_col_copy(st, 0, result, sizeof(result));
    if (rc != SQLITE_ROW && rc != SQLITE_INTERRUPT)
        snprintf(result, sizeof(result), "%s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    sqlite3_progress_handler(db, 0, NULL, NULL);
    if (rc == SQLITE_INTERRUPT) {
        log_warn(NULL,
                 "queue: quick_check of %s did not finish within %d ms; only part of it was "
                 "checked",
                 path, Q_CHECK_MS);
        return 0;
    }
    if (rc == SQLITE_ROW && strcmp(result, "ok") == 0)
        return 0;
    snprintf(err, errlen,
             "queue database %s is damaged (quick_check: %s). Stop here: move it aside (with its "
             "-wal file) and restore a backup, or salvage it with `sqlite3 FILE .recover | sqlite3 "
             "NEW`; the audit log lists what was accepted",
             path, result);
    return -1;
}

/* Appends one record from the opening thread (the worker is not running). */

/* Called by SQLite on the worker after each commit, with the WAL's size
 * in frames: past Q_CKPT_FRAMES the checkpointer is woken. */
static int q_wal_hook(void *arg, sqlite3 *db, const char *name, int frames)
{
    struct queue_store *q = arg;

    (void)name;
    if (frames >= 2 * Q_WAL_MAX_FRAMES) {
        /* The checkpointer did not get to run (a loaded machine): the
         * writer copies the rest itself, so the WAL's bound never depends
         * on another thread being scheduled. BUSY: the checkpointer is at
         * it right now; the next commit tries again. */
        int rc = sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_RESTART, NULL, NULL);
        if (rc != SQLITE_OK && rc != SQLITE_BUSY) {
            log_error(NULL, "queue: checkpoint failed: %s", sqlite3_errmsg(db));
            __atomic_add_fetch(&q->ckpt_failures, 1, __ATOMIC_RELAXED);
        }
    } else if (frames >= Q_CKPT_FRAMES) {
        pthread_mutex_lock(&q->ckpt_mu);
        q->ckpt_wanted = 1;
        q->wal_frames = frames;
        pthread_cond_signal(&q->ckpt_cv);
        pthread_mutex_unlock(&q->ckpt_mu);
    }
    return SQLITE_OK;
}

/* PASSIVE checkpoints never block the writer: they copy what is committed
 * and return. Also once a second when idle, so a quiet gateway's WAL is
 * folded in too. But SQLite starts the WAL over only when a write begins
 * with every frame copied, which a busy writer never lets a passive
 * checkpoint reach: the WAL would grow for as long as ingest lasts, and
 * fill a small disk. Past Q_WAL_MAX_FRAMES a RESTART checkpoint holds the
 * writer back (its BEGIN waits, within the busy timeout) while this
 * thread copies the rest, so the next commit starts the WAL over: ingest
 * slows to what the disk can fold in, the WAL stays bounded. Copying here
 * rather than on the writer costs the writer a third less. */
static void *q_checkpointer(void *arg)
{
    struct queue_store *q = arg;
    struct timespec until;

    pthread_mutex_lock(&q->ckpt_mu);
    while (!q->ckpt_stop) {
        if (!q->ckpt_wanted) {
            clock_gettime(CLOCK_MONOTONIC, &until);
            until.tv_sec += 1;
            pthread_cond_timedwait(&q->ckpt_cv, &q->ckpt_mu, &until);
        }
        if (q->ckpt_stop)
            break;
        q->ckpt_wanted = 0;
        int mode = q->wal_frames >= Q_WAL_MAX_FRAMES ? SQLITE_CHECKPOINT_RESTART
                                                     : SQLITE_CHECKPOINT_PASSIVE;
        q->wal_frames = 0;
        pthread_mutex_unlock(&q->ckpt_mu);
        int frames = 0, copied = 0;
        int rc = sqlite3_wal_checkpoint_v2(q->ckpt_db, NULL, mode, &frames, &copied);
        /* frames == -1 is SQLite saying this connection is not in WAL mode:
         * the checkpoint did nothing, and the WAL would grow for ever.
         * BUSY: the writer held on past the busy timeout, or is
         * checkpointing itself (q_wal_hook); the next wake-up tries again. */
        if (rc != SQLITE_OK && rc != SQLITE_BUSY) {
            log_error(NULL, "queue: checkpoint failed: %s", sqlite3_errmsg(q->ckpt_db));
            __atomic_add_fetch(&q->ckpt_failures, 1, __ATOMIC_RELAXED);
        } else if (rc == SQLITE_OK && frames < 0) {
            log_error(NULL, "queue: checkpoint failed: not in WAL mode");
            __atomic_add_fetch(&q->ckpt_failures, 1, __ATOMIC_RELAXED);
        }
        pthread_mutex_lock(&q->ckpt_mu);
    }
    pthread_mutex_unlock(&q->ckpt_mu);
    return NULL;
}

static void q_checkpointer_stop(struct queue_store *q)
{
    if (!q->ckpt_started)
        return;
    pthread_mutex_lock(&q->ckpt_mu);
    q->ckpt_stop = 1;
    pthread_cond_signal(&q->ckpt_cv);
    pthread_mutex_unlock(&q->ckpt_mu);
    pthread_join(q->ckpt, NULL);
    q->ckpt_started = 0;
}

static void q_store_free(struct queue_store *q)
{
    if (q == NULL)
        return;
    q_checkpointer_stop(q);
    if (q->ckpt_db != NULL)
        sqlite3_close(q->ckpt_db);
    for (int i = 0; i < S_COUNT; i++)
        sqlite3_finalize(q->st[i]);
    if (q->db != NULL)
        sqlite3_close(q->db);
    if (q->lock_fd >= 0)
        close(q->lock_fd); /* releases the flock */
    pthread_mutex_destroy(&q->ckpt_mu);
    pthread_cond_destroy(&q->ckpt_cv);
    free(q);
}

static int q_store_open(const struct queue_options *opts, struct queue_store **out, char *err,
                        size_t errlen)
{
    struct queue_store *q = NULL;
    char mode[16] = "";

    *out = NULL;
    if (opts == NULL || opts->path == NULL || opts->path[0] == '\0') {
        snprintf(err, errlen, "queue path is empty");
        return -1;
    }
    q = calloc(1, sizeof(*q));
    if (q == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    q->lock_fd = -1;
    q->ttl_ms = opts->idempotency_ttl_ms;
    q->retention_ms = opts->retention_ms;
    pthread_mutex_init(&q->ckpt_mu, NULL);
    {
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&q->ckpt_cv, &ca);
        pthread_condattr_destroy(&ca);
    }

    if (q_lock(q, opts->path, err, errlen) != 0)
        goto fail;
    /* NOMUTEX: one thread at a time uses the connection (this one until
     * the worker starts, then only the worker). The VFS writes a commit's
     * WAL frames in one write (wal_buffer.c). SQLite's memory statistics
     * (which nothing here reads) take a process-wide mutex on every
     * allocation: off, the worker spends ~15% less per request. That only
     * works before SQLite's first use in the process; later it is refused
     * and harmless. */
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    if (wal_buffer_register() != 0) {
        snprintf(err, errlen, "cannot set up SQLite's file layer");
        goto fail;
    }
    if (sqlite3_open_v2(opts->path, &q->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        WAL_BUFFER_VFS) != SQLITE_OK) {
        snprintf(err, errlen, "cannot open queue database %s: %s", opts->path,
                 q->db != NULL ? sqlite3_errmsg(q->db) : "out of memory");
        goto fail;
    }
    sqlite3_busy_timeout(q->db, Q_BUSY_TIMEOUT_MS);
    /* Ownership is the flock on the lock file (q_lock); SQLite's own
     * locking stays normal so the checkpointer's connection can work beside
     * the worker's. synchronous=FULL fsyncs the WAL at every commit.
     * Small pages: every request inserts into indexes keyed by ids that
     * arrive in random order (eventIds, resource ids), so each insert
     * dirties its own leaf page, and the commit writes whole pages. With
     * 1 KiB pages a request writes a quarter of the bytes it would with
     * the 4 KiB default. Only takes effect when the file is created. */
    if (q_exec(q->db, "PRAGMA page_size = 1024", err, errlen) != 0)
        goto fail;
    {
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(q->db, "PRAGMA journal_mode = WAL", -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW)
            q_col_copy(st, 0, mode, sizeof(mode));
        sqlite3_finalize(st);
        if (strcmp(mode, "wal") != 0) {
            snprintf(err, errlen, "queue database %s: cannot use WAL mode (%s)", opts->path,
                     mode[0] != '\0' ? mode : sqlite3_errmsg(q->db));
            goto fail;
        }
    }
    /* A 4 MiB page cache, not more: every commit that splits a b-tree page
     * ends with SQLite walking its whole page-cache hash table (the split
     * parks a page under the pending-byte page number, 1048577 with 1 KiB
     * pages, and the cache's truncate at commit then scans every bucket
     * until the database is past 1 GiB). At 16 MiB that walk was 8% of the
     * worker; at 4 MiB, 3%. Random index pages miss either way. */
    if (q_exec(q->db,
               "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;"
               " PRAGMA cache_size = -4096; PRAGMA temp_store = MEMORY;"
               " PRAGMA journal_size_limit = 16777216", /* Q_WAL_MAX_FRAMES pages */
               err, errlen) != 0)
        goto fail;
    /* Commits never checkpoint: the checkpointer thread does, beside them. */
    sqlite3_wal_autocheckpoint(q->db, 0);
    sqlite3_wal_hook(q->db, q_wal_hook, q);
    if (sqlite3_open_v2(opts->path, &q->ckpt_db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                        WAL_BUFFER_VFS) != SQLITE_OK) {
        snprintf(err, errlen, "cannot open queue database %s for checkpoints", opts->path);
        goto fail;
    }
    sqlite3_busy_timeout(q->ckpt_db, Q_BUSY_TIMEOUT_MS);
    if (q_quick_check(q->db, opts->path, err, errlen) != 0 ||
        q_migrate(q->db, util_now_ms(), err, errlen) != 0)
        goto fail;
    /* A connection learns that the file is in WAL mode only when it first
     * reads it; until then every checkpoint on it is a silent no-op. */
    if (q_exec(q->ckpt_db, "SELECT count(*) FROM sqlite_schema", err, errlen) != 0)
        goto fail;
    for (int i = 0; i < S_COUNT; i++) {
        if (sqlite3_prepare_v3(q->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &q->st[i],
                               NULL) != SQLITE_OK) {
            snprintf(err, errlen, "queue database: preparing \"%s\": %s", stmt_sql[i],
                     sqlite3_errmsg(q->db));
            goto fail;
        }
    }
    if (pthread_create(&q->ckpt, NULL, q_checkpointer, q) != 0) {
        snprintf(err, errlen, "cannot start queue checkpointer");
        goto fail;
    }
    q->ckpt_started = 1;
    *out = q;
    return 0;
fail:
    q_store_free(q);
    return -1;
}

/* ---- the backend ---- */

static int q_begin(struct queue_store *q)
{
    return q_done(q, S_BEGIN);
}

static int q_commit(struct queue_store *q)
{
    return q_done(q, S_COMMIT);
}

static void q_rollback(struct queue_store *q)
{
    (void)q_done(q, S_ROLLBACK);
}

static int q_savepoint(struct queue_store *q)
{
    return q_done(q, S_SAVEPOINT);
}

static int q_release_savepoint(struct queue_store *q)
{
    return q_done(q, S_RELEASE);
}

static int q_rollback_savepoint(struct queue_store *q)
{
    return q_done(q, S_ROLLBACK_TO);
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
        if (q_done(q, S_SUB_PRUNE) != 0)
            return -1;
    }
    return q_count_flush(q, &c->moves);
}

static int q_meta_read(struct queue_store *q, int64_t *audit_seq, char audit_mac[65], int *paused)
{
    sqlite3_stmt *st = q->st[S_META_READ];
    int rc = sqlite3_step(st);

    if (rc == SQLITE_ROW) {
        *audit_seq = sqlite3_column_int64(st, 0);
        q_col_copy(st, 1, audit_mac, 65);
        *paused = sqlite3_column_int(st, 2) != 0;
    }
    sqlite3_reset(st);
    return rc == SQLITE_ROW ? 0 : -1;
}

const struct queue_backend queue_sqlite_backend = {
    .name = "sqlite",
    .open = q_store_open,
    .close = q_store_free,
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
            [OP_GET] = q_op_get,
            [OP_STATS] = q_op_stats,
            [OP_LIST] = q_op_list,
            [OP_RETRY] = q_op_retry,
            [OP_CANCEL] = q_op_cancel,
            [OP_NOTE] = queue_op_note,
            [OP_PAUSE] = q_op_pause,
            [OP_MAINTAIN] = q_op_maintain,
            [OP_EXPORT] = q_op_export,
        },
    .end_cycle = q_end_cycle,
    .meta_read = q_meta_read,
    .meta_write_audit = q_meta_audit,
};
