/*
 * queue_sqlite_store.c: the SQLite queue's file. The versioned schema and
 * its migrations, ownership (flock on "<path>.lock"), pragmas,
 * quick_check, crash recovery at open, and the checkpointer thread, which
 * copies committed WAL frames into the database on a connection of its
 * own so no commit waits for it (queue_sqlite.h).
 */
#include "queue_sqlite.h"
#include "log.h"
#include "util.h"
#include "wal_buffer.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define Q_BUSY_TIMEOUT_MS 5000
/* How long start-up may spend in PRAGMA quick_check: with the rest of a
 * start (the audit log's tail, the listeners) it keeps a million-job
 * queue's process start to /readyz under 2 s, which 1500 did not. */
#define Q_CHECK_MS 1000
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
     * adds and writes the sums once per commit (sq_count_flush): the
     * insert triggers were a sixth of a submission's cost. */
    "DROP TRIGGER IF EXISTS count_job_insert;"
    "DROP TRIGGER IF EXISTS count_deletion_insert;",
    /* v3: claims and outcomes (into and out of in_flight, two per DELETE)
     * are counted by the code too (sq_count_job_move); the trigger, whose
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
    /* v10: jobs and submissions belong to an Extend account; what an
     * earlier version queued belongs to the account "default" (the legacy
     * extend block's). Each account's dispatcher claims its own jobs by
     * (account, state, due_ms); a deletion's account is its job's. */
    "ALTER TABLE jobs ADD COLUMN account TEXT NOT NULL DEFAULT 'default';"
    "ALTER TABLE submissions ADD COLUMN account TEXT NOT NULL DEFAULT 'default';"
    "CREATE INDEX jobs_account_due ON jobs (account, state, due_ms);",
    /* v11: an operator pauses one account or all of them, and each pause
     * outlives a restart: a row per paused account. meta.paused, the
     * pause of all that came before, is turned into rows by the next
     * pause or resume (sq_op_pause). */
    "CREATE TABLE paused_accounts (account TEXT PRIMARY KEY) WITHOUT ROWID;",
};
#define SCHEMA_VERSION ((int)(sizeof(migrations) / sizeof(migrations[0])))

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
static int q_migrate(sqlite3 *db, int64_t now, const char *adopt, char *err, size_t errlen)
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
     * live deletions with them in the counts: sq_count_job_move's move, for
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
    if (adopt != NULL) {
        /* An operator's pause of "default" goes with its jobs. */
        char *sql = sqlite3_mprintf(
            "UPDATE OR IGNORE paused_accounts SET account = %Q WHERE account = 'default';"
            "DELETE FROM paused_accounts WHERE account = 'default';"
            "UPDATE jobs SET account = %Q WHERE account = 'default'",
            adopt, adopt);
        if (sql == NULL || q_exec(db, sql, err, errlen) != 0) {
            sqlite3_free(sql);
            goto fail;
        }
        sqlite3_free(sql);
        if (sqlite3_changes(db) > 0)
            log_info(NULL, "queue: %d job(s) of the account \"default\" are now %s's",
                     sqlite3_changes(db), adopt);
    }
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
 * (not the index-to-table cross-checks of integrity_check): a few
 * seconds for a million jobs (500 MB). Past Q_CHECK_MS it stops, so a
 * huge queue still starts, and says it checked only part. */
static int q_quick_check(sqlite3 *db, const char *path, char *err, size_t errlen)
{
    int64_t deadline = util_mono_ms() + Q_CHECK_MS;
    sqlite3_stmt *st = NULL;
    char result[200] = "";
    int rc;

    sqlite3_progress_handler(db, 10000, q_check_deadline, &deadline);
    rc = sqlite3_prepare_v2(db, "PRAGMA quick_check(1)", -1, &st, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW)
        sq_col_copy(st, 0, result, sizeof(result));
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

/* Called by SQLite on the worker after each commit (its write lock
 * released), with the WAL's size in frames: past Q_CKPT_FRAMES the
 * checkpointer is woken. */
static int q_wal_hook(void *arg, sqlite3 *db, const char *name, int frames)
{
    struct queue_store *q = arg;

    (void)name;
    pthread_mutex_lock(&q->ckpt_mu);
    if (frames >= 2 * Q_WAL_MAX_FRAMES) {
        /* The checkpointer fell behind: a long pass over a big database
         * (random pages, seconds each) while ingest kept appending, or it
         * was not scheduled at all (a loaded machine). The writer waits
         * for its pass to end, then copies the rest itself with the WAL
         * held still, so the WAL's bound is this, plus one commit, never
         * how fast another thread runs. Nothing commits meanwhile: ingest
         * slows to what the disk folds in. */
        while (q->ckpt_running)
            pthread_cond_wait(&q->ckpt_cv, &q->ckpt_mu);
        q->ckpt_running = 1;
        pthread_mutex_unlock(&q->ckpt_mu);
        int rc = sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_RESTART, NULL, NULL);
        if (rc != SQLITE_OK && rc != SQLITE_BUSY) {
            log_error(NULL, "queue: checkpoint failed: %s", sqlite3_errmsg(db));
            __atomic_add_fetch(&q->ckpt_failures, 1, __ATOMIC_RELAXED);
        }
        pthread_mutex_lock(&q->ckpt_mu);
        q->ckpt_running = 0;
        pthread_cond_broadcast(&q->ckpt_cv);
    } else if (frames >= Q_CKPT_FRAMES) {
        q->ckpt_wanted = 1;
        q->wal_frames = frames;
        pthread_cond_broadcast(&q->ckpt_cv);
    }
    pthread_mutex_unlock(&q->ckpt_mu);
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
        if (!q->ckpt_wanted || q->ckpt_running) {
            clock_gettime(CLOCK_MONOTONIC, &until);
            until.tv_sec += 1;
            pthread_cond_timedwait(&q->ckpt_cv, &q->ckpt_mu, &until);
        }
        if (q->ckpt_stop)
            break;
        if (q->ckpt_running)
            continue; /* the writer is copying (q_wal_hook) */
        q->ckpt_wanted = 0;
        int mode = q->wal_frames >= Q_WAL_MAX_FRAMES ? SQLITE_CHECKPOINT_RESTART
                                                     : SQLITE_CHECKPOINT_PASSIVE;
        q->wal_frames = 0;
        q->ckpt_running = 1;
        pthread_mutex_unlock(&q->ckpt_mu);
        int frames = 0, copied = 0;
        int rc = sqlite3_wal_checkpoint_v2(q->ckpt_db, NULL, mode, &frames, &copied);
        /* frames == -1 is SQLite saying this connection is not in WAL mode:
         * the checkpoint did nothing, and the WAL would grow for ever.
         * BUSY: the writer held on past the busy timeout; the next wake-up
         * tries again. */
        if (rc != SQLITE_OK && rc != SQLITE_BUSY) {
            log_error(NULL, "queue: checkpoint failed: %s", sqlite3_errmsg(q->ckpt_db));
            __atomic_add_fetch(&q->ckpt_failures, 1, __ATOMIC_RELAXED);
        } else if (rc == SQLITE_OK && frames < 0) {
            log_error(NULL, "queue: checkpoint failed: not in WAL mode");
            __atomic_add_fetch(&q->ckpt_failures, 1, __ATOMIC_RELAXED);
        }
        pthread_mutex_lock(&q->ckpt_mu);
        q->ckpt_running = 0;
        pthread_cond_broadcast(&q->ckpt_cv);
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
    pthread_cond_broadcast(&q->ckpt_cv);
    pthread_mutex_unlock(&q->ckpt_mu);
    pthread_join(q->ckpt, NULL);
    q->ckpt_started = 0;
}

void sq_store_free(struct queue_store *q)
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

int sq_store_open(const struct queue_options *opts, struct queue_store **out, char *err,
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
    q->n_accounts =
        opts->n_accounts > 0 && opts->n_accounts <= QUEUE_MAX_ACCOUNTS ? opts->n_accounts : 1;
    for (int i = 0; i < q->n_accounts; i++)
        snprintf(q->account_ids[i], sizeof(q->account_ids[i]), "%s",
                 opts->n_accounts > 0 ? opts->accounts[i].id : "default");
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
            sq_col_copy(st, 0, mode, sizeof(mode));
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
     * until the database is past 1 GiB), so that walk grows with the cache
     * and a bigger one slows every webhook's commit (bench/README.md has
     * the figures). Random index pages miss either way. */
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
        q_migrate(q->db, util_now_ms(), opts->adopt_default, err, errlen) != 0)
        goto fail;
    /* A connection learns that the file is in WAL mode only when it first
     * reads it; until then every checkpoint on it is a silent no-op. */
    if (q_exec(q->ckpt_db, "SELECT count(*) FROM sqlite_schema", err, errlen) != 0)
        goto fail;
    for (int i = 0; i < S_COUNT; i++) {
        if (sqlite3_prepare_v3(q->db, sq_stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &q->st[i],
                               NULL) != SQLITE_OK) {
            snprintf(err, errlen, "queue database: preparing \"%s\": %s", sq_stmt_sql[i],
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
    sq_store_free(q);
    return -1;
}
