/*
 * queue_pg.h: what the files of the PostgreSQL queue backend share, and
 * nothing else includes: the store, the statement helpers and the calls
 * between the files of the family.
 *
 *   queue_pg.c          the store: connection, statements, transactions,
 *                       counts, LISTEN, the backend table
 *   queue_pg_schema.c   the migrations, applied under an advisory lock
 *   queue_pg_limiter.c  the account's shared limits (one row per account)
 *   queue_pg_submit.c   submissions, set-based for a whole cycle
 *   queue_pg_claims.c   claims, completions and releases (leases)
 *   queue_pg_ops.c      reads, operator changes, retention, export
 */
#ifndef DG_QUEUE_PG_H
#define DG_QUEUE_PG_H

#include "queue_backend.h"

#include <libpq-fe.h>
#include <stdint.h>
#include <stdio.h>

#define PG_MAX_PARAMS 16
#define PG_DEFER_MAX 16  /* statements sent together with the next one */
#define PG_RING_MAX 1000 /* grants remembered: rate_per_second is at most 1000 */

/* The columns queue_view_from_row reads, in its order. */
#define PG_VIEW_COLS                                                                               \
    "d.id, d.job_id, j.resource, j.resource_id, coalesce(d.state, j.state), d.source, d.key,"      \
    " d.request_id, d.reason, j.attempts, j.last_http_status, j.last_upstream_request_id,"         \
    " j.last_error, d.accepted_ms, d.not_before_ms, greatest(j.updated_ms, d.updated_ms),"         \
    " j.due_ms, j.completed_ms, d.state, d.updated_ms, j.final_audit_seq, j.final_audit_mac,"      \
    " d.final_audit_seq, d.final_audit_mac, j.account"

/* A statement held back to go with the next one (queue_pg.c). */
struct pg_deferred {
    const char *sql;
    char *v[PG_MAX_PARAMS];
    int n;
};

struct queue_store {
    PGconn *conn;
    char *url;
    char *password; /* wiped at close */
    char replica[65];
    int64_t ttl_ms, retention_ms;
    /* Each account's limits for all replicas (0 = none), by its row in
     * dg_limiter; accounts[0] also serves claims that name no account. */
    struct pg_account {
        char id[QUEUE_ACCOUNT_MAX + 1];
        double rate;
        int max_in_flight;
    } accounts[QUEUE_MAX_ACCOUNTS];
    int n_accounts;
    char adopt_default[QUEUE_ACCOUNT_MAX + 1]; /* queue_options.adopt_default, "" = none */
    int64_t (*clock_ms)(void);                 /* NULL: the database's clock */
    int64_t last_connect_ms;

    /* The loop thread's own connection, LISTENing for the other replicas'
     * "jobs are due" (NOTIFY dg_due, sent by a commit that made some). */
    PGconn *listen;
    struct event *ev_listen, *ev_relisten;
    void (*due)(void *arg);
    void *due_arg;

    /* The cycle's run of submissions, stored at its first op and answered
     * op by op (queue_pg_submit.c); isolated: each op in a savepoint, so
     * runs of one. Both are reset with each transaction. */
    struct pg_run *run;
    int isolated;

    /* Statements whose answer only the COMMIT needs, sent with the next
     * statement in one pipeline: one round trip for several. */
    struct pg_deferred deferred[PG_DEFER_MAX];
    int n_deferred;
};

/* Text parameters for one statement. */
struct pg_args {
    const char *v[PG_MAX_PARAMS];
    char num[PG_MAX_PARAMS][24];
    int n;
};

static inline void arg_text(struct pg_args *a, const char *s)
{
    a->v[a->n++] = s;
}

static inline void arg_i64(struct pg_args *a, int64_t x)
{
    snprintf(a->num[a->n], sizeof(a->num[0]), "%lld", (long long)x);
    a->v[a->n] = a->num[a->n];
    a->n++;
}

static inline void arg_null(struct pg_args *a)
{
    a->v[a->n++] = NULL;
}

/* $1 of the statements that need "now": the test clock, or NULL, which
 * their SQL turns into the database's clock. */
static inline void arg_now(struct queue_store *q, struct pg_args *a)
{
    if (q->clock_ms != NULL)
        arg_i64(a, q->clock_ms());
    else
        arg_null(a);
}

/* statements (queue_pg.c) */
PGresult *queue_pg_exec(struct queue_store *q, const char *sql, const struct pg_args *a);
int queue_pg_do(struct queue_store *q, const char *sql, const struct pg_args *a);
int64_t queue_pg_i64(const PGresult *r, int row, int col);
long queue_pg_affected(const PGresult *r);
int queue_pg_view_read(const PGresult *r, int row, struct queue_deletion_view *v);
void queue_pg_copy(char *dst, size_t size, const PGresult *r, int row, int col);
int queue_pg_count_job_move(struct queue_store *q, struct cycle *c, int64_t job_id,
                            enum deletion_state from, enum deletion_state to);

/* Forgets the cycle's run of submissions (queue_pg_submit.c). */
void queue_pg_submit_reset(struct queue_store *q);

/* schema (queue_pg_schema.c) */
extern const char *const queue_pg_count_names[DEL_STATE_COUNT + 1];
int queue_pg_migrate(struct queue_store *q, char *err, size_t errlen);

/* limiter (queue_pg_limiter.c) */
/* The limiter row, as one claim read it. */
struct pg_limit {
    int64_t now;
    int64_t at;                /* when the jobs this claim is granted go out */
    int64_t ring[PG_RING_MAX]; /* recent grant times */
    int n_ring;
    int64_t probe_at, interval;
    int probing; /* this claim may take the breaker's one probe */
    int paused;  /* an operator paused the account */
};
int queue_pg_limit_read(struct queue_store *q, const struct pg_account *acct, struct pg_limit *l,
                        int want, int *allow, int64_t *wake);
int queue_pg_limit_write(struct queue_store *q, const struct pg_account *acct,
                         const struct pg_limit *l, int taken);
int queue_pg_limiter_learn(struct queue_store *q, const char *account,
                           const struct queue_outcome *o, int64_t now);
/* The account's limits (accounts[0] for "" or one not configured). */
const struct pg_account *queue_pg_account(const struct queue_store *q, const char *id);

/* ops, one per kind (queue_pg_submit.c, queue_pg_claims.c, queue_pg_ops.c) */
/* Read on every claim and every scrape; the tests plan them on a table
 * whose statistics lag behind (test_queue.c). */
extern const char queue_pg_next_due_sql[]; /* $1: the account */
extern const char queue_pg_next_due_any_sql[];
extern const char queue_pg_oldest_pending_sql[];

int queue_pg_op_submit(struct queue_store *q, struct cycle *c, struct op *op);
int queue_pg_op_claim(struct queue_store *q, struct cycle *c, struct op *op);
int queue_pg_op_complete(struct queue_store *q, struct cycle *c, struct op *op);
int queue_pg_op_release(struct queue_store *q, struct cycle *c, struct op *op);
int queue_pg_op_get(struct queue_store *q, struct cycle *c, struct op *op);
int queue_pg_op_stats(struct queue_store *q, struct cycle *c, struct op *op);
int queue_pg_op_list(struct queue_store *q, struct cycle *c, struct op *op);
int queue_pg_op_retry(struct queue_store *q, struct cycle *c, struct op *op);
int queue_pg_op_cancel(struct queue_store *q, struct cycle *c, struct op *op);
int queue_pg_op_pause(struct queue_store *q, struct cycle *c, struct op *op);
int queue_pg_op_maintain(struct queue_store *q, struct cycle *c, struct op *op);
int queue_pg_op_export(struct queue_store *q, struct cycle *c, struct op *op);

#endif
