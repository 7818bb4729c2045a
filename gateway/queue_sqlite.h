/*
 * queue_sqlite.h: what the files of the SQLite backend share, and nothing
 * outside them includes. The family:
 *   queue_sqlite.c           statements, the ops of the hot path (submit,
 *                            claim, complete, release, retention) and the
 *                            backend table queue.c calls
 *   queue_sqlite_operator.c  what the API and ctl read and change: views,
 *                            stats, lists, export, retry, cancel, pause
 *   queue_sqlite_store.c     the schema and its migrations, the flock,
 *                            pragmas, quick_check, crash recovery and the
 *                            checkpointer thread
 * Names shared across the family start with sq_.
 */
#ifndef DG_QUEUE_SQLITE_H
#define DG_QUEUE_SQLITE_H

#include "queue_backend.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

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
    S_CLAIM_SELECT_ACCOUNT,
    S_CLAIM_UPDATE,
    S_NEXT_DUE,
    S_NEXT_DUE_ACCOUNT,
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
    S_PAUSE_ADD,
    S_PAUSE_DEL,
    S_PAUSE_HAS,
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

/* The SQL of each statement, prepared once at open (sq_store_open). */
extern const char *const sq_stmt_sql[S_COUNT];

/* ---- the store ---- */

struct queue_store {
    sqlite3 *db;
    sqlite3_stmt *st[S_COUNT];
    int64_t ttl_ms;       /* idempotency keys older than this are forgotten */
    int64_t retention_ms; /* finished jobs older than this are pruned; 0 = kept */
    int lock_fd;
    int n_accounts; /* the configured accounts, for the operator's pauses */
    char account_ids[QUEUE_MAX_ACCOUNTS][QUEUE_ACCOUNT_MAX + 1];

    /* The checkpointer: its own connection copies committed WAL frames
     * into the database beside the worker, so no commit waits for it. */
    sqlite3 *ckpt_db;
    pthread_t ckpt;
    int ckpt_started;
    pthread_mutex_t ckpt_mu; /* guards the four below */
    pthread_cond_t ckpt_cv;  /* broadcast: work wanted, stop, a checkpoint ended */
    int ckpt_wanted, ckpt_stop;
    int ckpt_running;       /* a checkpoint is under way (either thread's) */
    int wal_frames;         /* the WAL's length at the last wake-up */
    uint64_t ckpt_failures; /* atomic: checkpoints that failed or did nothing */
};

/* Small SQLite helpers (worker thread). sq_done runs a statement that
 * returns no row and resets it; on failure it logs the statement. */
void sq_sql_error(struct queue_store *q, const char *what);
int sq_done(struct queue_store *q, enum stmt_id id);
void sq_bind_text(sqlite3_stmt *st, int i, const char *s);
void sq_col_copy(sqlite3_stmt *st, int i, char *buf, size_t size);

/* Count moves (queue_sqlite.c): a job's deletions move from one state to
 * another inside the cycle; flushed once per commit. */
int sq_count_job_move(struct queue_store *q, struct cycle *c, int64_t job_id,
                      enum deletion_state from, enum deletion_state to);
int sq_count_flush(struct queue_store *q, const struct count_moves *m);

/* queue_sqlite_operator.c */
int sq_op_get(struct queue_store *q, struct cycle *c, struct op *op);
int sq_op_stats(struct queue_store *q, struct cycle *c, struct op *op);
int sq_op_list(struct queue_store *q, struct cycle *c, struct op *op);
int sq_op_export(struct queue_store *q, struct cycle *c, struct op *op);
int sq_op_retry(struct queue_store *q, struct cycle *c, struct op *op);
int sq_op_cancel(struct queue_store *q, struct cycle *c, struct op *op);
int sq_op_pause(struct queue_store *q, struct cycle *c, struct op *op);

/* queue_sqlite_store.c */
int sq_store_open(const struct queue_options *opts, struct queue_store **out, char *err,
                  size_t errlen);
void sq_store_free(struct queue_store *q);

#endif
