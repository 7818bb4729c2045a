/*
 * queue_pg.c: the queue's storage on PostgreSQL, shared by several gateway
 * replicas (queue_backend.h; queue.c does the rest).
 *
 * Map of this file (the family is listed in queue_pg.h):
 *   helpers     one call per statement, text parameters, reconnecting
 *   counts      the per-replica counts behind queue_stats
 *   open/close  the store
 *   backend     transactions, the end of a cycle, the table queue.c calls
 *   LISTEN      the other replicas' news, on the loop thread
 *
 * The queue's worker thread is this backend's connection thread: it alone
 * uses the libpq connection, blocking, so the event loop never waits on
 * the database. Each cycle of the worker is one transaction, so a commit
 * serves every request that arrived during the last one.
 *
 * Clocks. What is due, when a lease ends and the limiter's windows are
 * reckoned by the database's clock (dg_now_ms()), one clock for every
 * replica; tests pass their own through queue_options.clock_ms.
 *
 * Shared rows and contention. A replica's ops lock only the rows they
 * change, and the counts behind queue_stats are kept per replica (each
 * commit adds to its own rows; stats sum them), so replicas never wait on
 * each other's commits except for the same job or the limiter row, which
 * only claims and outcomes that change it take.
 */
#include "queue_pg.h"
#include "log.h"
#include "util.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#define PG_RECONNECT_MS 1000 /* at most one connection attempt a second */
#define PG_CONNECT_TIMEOUT "3"

/* ---- helpers (worker thread) ---- */

static int pg_connect(struct queue_store *q, char *err, size_t errlen)
{
    const char *keys[] = {"dbname", "password", "connect_timeout", "application_name", NULL};
    const char *vals[] = {q->url, q->password, PG_CONNECT_TIMEOUT, "deletion-gateway", NULL};

    if (q->conn != NULL)
        PQfinish(q->conn);
    q->last_connect_ms = util_mono_ms();
    /* expand_dbname: url is a conninfo string or a URI; the password comes
     * apart, so it is never in a string that could be logged. */
    q->conn = PQconnectdbParams(keys, vals, 1);
    if (q->conn == NULL || PQstatus(q->conn) != CONNECTION_OK) {
        snprintf(err, errlen, "cannot connect to PostgreSQL: %s",
                 q->conn != NULL ? PQerrorMessage(q->conn) : "out of memory");
        /* libpq's message ends with a newline */
        size_t n = strlen(err);
        while (n > 0 && (err[n - 1] == '\n' || err[n - 1] == ' '))
            err[--n] = '\0';
        return -1;
    }
    return 0;
}

/* A connection lost while PostgreSQL restarts or fails over is made again
 * at the next cycle, at most once a second, so a database that is down
 * costs each cycle one quick failure (the request gets a 503 and is sent
 * again), never a stuck worker. */
static int pg_ensure(struct queue_store *q)
{
    char err[512];

    if (q->conn != NULL && PQstatus(q->conn) == CONNECTION_OK)
        return 0;
    if (util_mono_ms() - q->last_connect_ms < PG_RECONNECT_MS)
        return -1;
    if (pg_connect(q, err, sizeof(err)) != 0) {
        log_error(NULL, "queue: %s", err);
        return -1;
    }
    log_warn(NULL, "queue: connected to PostgreSQL again");
    return 0;
}

static void pg_log_result(const PGresult *r)
{
    const char *msg = r != NULL ? PQresultErrorMessage(r) : "out of memory";

    log_error(NULL, "queue: PostgreSQL: %.*s", (int)strcspn(msg, "\n"), msg);
}

static void pg_deferred_clear(struct queue_store *q)
{
    for (int i = 0; i < q->n_deferred; i++) {
        for (int k = 0; k < q->deferred[i].n; k++)
            free(q->deferred[i].v[k]);
    }
    q->n_deferred = 0;
}

/* The deferred statements, then sql (when not NULL), in one pipeline: one
 * round trip for all. The result of sql, or NULL if it or any of them
 * failed (logged; the statements after a failure are not run, and the
 * transaction has failed anyway). */
static PGresult *pg_pipeline(struct queue_store *q, const char *sql, const struct pg_args *a)
{
    PGresult *r, *last = NULL;
    int n = q->n_deferred + (sql != NULL), ok = 1;

    if (PQenterPipelineMode(q->conn) != 1) {
        pg_deferred_clear(q);
        return NULL;
    }
    for (int i = 0; i < q->n_deferred && ok; i++) {
        const struct pg_deferred *d = &q->deferred[i];
        ok = PQsendQueryParams(q->conn, d->sql, d->n, NULL, (const char *const *)d->v, NULL, NULL,
                               0) == 1;
    }
    pg_deferred_clear(q);
    if (ok && sql != NULL)
        ok = PQsendQueryParams(q->conn, sql, a != NULL ? a->n : 0, NULL, a != NULL ? a->v : NULL,
                               NULL, NULL, 0) == 1;
    if (!ok || PQpipelineSync(q->conn) != 1) {
        pg_log_result(NULL);
        /* What was sent is read below all the same, or the connection
         * is lost; either way the cycle fails. */
        (void)PQpipelineSync(q->conn);
        ok = 0;
    }
    /* Each statement's results end with a NULL; the sync's closes all. */
    for (int i = 0; i < n; i++) {
        while ((r = PQgetResult(q->conn)) != NULL) {
            ExecStatusType st = PQresultStatus(r);
            if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
                if (ok && st != PGRES_PIPELINE_ABORTED)
                    pg_log_result(r);
                ok = 0;
            }
            if (i == n - 1 && sql != NULL && last == NULL)
                last = r;
            else
                PQclear(r);
        }
        if (PQstatus(q->conn) != CONNECTION_OK)
            break;
    }
    while ((r = PQgetResult(q->conn)) != NULL) {
        int sync = PQresultStatus(r) == PGRES_PIPELINE_SYNC;
        PQclear(r);
        if (sync)
            break;
    }
    if (PQexitPipelineMode(q->conn) != 1)
        ok = 0;
    if (!ok) {
        PQclear(last);
        return NULL;
    }
    return last;
}

/* Runs one statement after the deferred ones; NULL on failure (logged).
 * The caller PQclear()s. */
PGresult *queue_pg_exec(struct queue_store *q, const char *sql, const struct pg_args *a)
{
    PGresult *r;
    ExecStatusType st;

    if (q->conn == NULL)
        return NULL;
    if (q->n_deferred > 0)
        return pg_pipeline(q, sql, a);
    /* Without parameters, the simple protocol: it takes several commands
     * (the migrations). */
    r = a == NULL ? PQexec(q->conn, sql)
                  : PQexecParams(q->conn, sql, a->n, NULL, a->v, NULL, NULL, 0);
    st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        pg_log_result(r);
        PQclear(r);
        return NULL;
    }
    return r;
}

/* A statement that fails only with its whole cycle (BEGIN, the cycle's
 * housekeeping, its counts): sent with the next statement that needs an
 * answer, or with the COMMIT, in one round trip. sql must outlive the
 * cycle (a literal); the parameters are copied. */
static int pg_defer(struct queue_store *q, const char *sql, const struct pg_args *a)
{
    struct pg_deferred *d;

    if (q->n_deferred == PG_DEFER_MAX) {
        PGresult *r = pg_pipeline(q, NULL, NULL);
        if (r == NULL && q->conn != NULL && PQtransactionStatus(q->conn) == PQTRANS_INERROR)
            return -1;
        PQclear(r);
    }
    d = &q->deferred[q->n_deferred];
    d->sql = sql;
    d->n = 0;
    for (int k = 0; a != NULL && k < a->n; k++) {
        if (a->v[k] != NULL && (d->v[k] = strdup(a->v[k])) == NULL) {
            q->n_deferred++;
            return -1;
        }
        if (a->v[k] == NULL)
            d->v[k] = NULL;
        d->n++;
    }
    q->n_deferred++;
    return 0;
}

/* A statement whose rows are not needed: 0 or -1. */
int queue_pg_do(struct queue_store *q, const char *sql, const struct pg_args *a)
{
    PGresult *r = queue_pg_exec(q, sql, a);

    if (r == NULL)
        return -1;
    PQclear(r);
    return 0;
}

int64_t queue_pg_i64(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

long queue_pg_affected(const PGresult *r)
{
    return strtol(PQcmdTuples((PGresult *)r), NULL, 10);
}

struct pg_row {
    const PGresult *r;
    int row;
};

static const char *pg_row_text(void *p, int col)
{
    const struct pg_row *x = p;

    return PQgetisnull(x->r, x->row, col) ? "" : PQgetvalue(x->r, x->row, col);
}

static int64_t pg_row_i64(void *p, int col)
{
    const struct pg_row *x = p;

    return queue_pg_i64(x->r, x->row, col);
}

static int pg_row_null(void *p, int col)
{
    const struct pg_row *x = p;

    return PQgetisnull(x->r, x->row, col);
}

int queue_pg_view_read(const PGresult *r, int row, struct queue_deletion_view *v)
{
    struct pg_row x = {r, row};
    struct queue_row qr = {&x, pg_row_text, pg_row_i64, pg_row_null};

    return queue_view_from_row(&qr, v);
}

void queue_pg_copy(char *dst, size_t size, const PGresult *r, int row, int col)
{
    snprintf(dst, size, "%s", PQgetisnull(r, row, col) ? "" : PQgetvalue(r, row, col));
}

/* ---- counts ---- */

static int pg_count_flush(struct queue_store *q, const struct count_moves *m)
{
    for (int i = 0; i <= DEL_STATE_COUNT; i++) {
        int64_t n = i < DEL_STATE_COUNT ? m->state[i] : m->jobs_pending;
        struct pg_args a = {.n = 0};

        if (n == 0)
            continue;
        arg_text(&a, q->replica);
        arg_text(&a, queue_pg_count_names[i]);
        arg_i64(&a, n);
        if (pg_defer(q, "UPDATE dg_counts SET n = n + $3 WHERE replica = $1 AND name = $2", &a) !=
            0)
            return -1;
    }
    return 0;
}

/* A job moves: its live deletions (no state of their own) move with it. */
int queue_pg_count_job_move(struct queue_store *q, struct cycle *c, int64_t job_id,
                            enum deletion_state from, enum deletion_state to)
{
    struct pg_args a = {.n = 0};
    PGresult *r;
    int64_t live;

    if (from == to)
        return 0;
    arg_i64(&a, job_id);
    r = queue_pg_exec(q, "SELECT count(*) FROM dg_deletions WHERE job_id = $1 AND state IS NULL",
                      &a);
    if (r == NULL)
        return -1;
    live = queue_pg_i64(r, 0, 0);
    PQclear(r);
    c->moves.state[from] -= live;
    c->moves.state[to] += live;
    c->moves.jobs_pending +=
        (to == DEL_QUEUED || to == DEL_IN_FLIGHT) - (from == DEL_QUEUED || from == DEL_IN_FLIGHT);
    return 0;
}

/* ---- open and close ---- */

static void pg_store_free(struct queue_store *q)
{
    if (q == NULL)
        return;
    queue_pg_submit_reset(q);
    pg_deferred_clear(q);
    if (q->conn != NULL)
        PQfinish(q->conn);
    if (q->password != NULL) {
        OPENSSL_cleanse(q->password, strlen(q->password));
        free(q->password);
    }
    free(q->url);
    free(q);
}

static int pg_store_open(const struct queue_options *opts, struct queue_store **out, char *err,
                         size_t errlen)
{
    struct queue_store *q = calloc(1, sizeof(*q));

    *out = NULL;
    if (q == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (opts->path == NULL || opts->path[0] == '\0') {
        snprintf(err, errlen, "queue.url is empty");
        goto fail;
    }
    if ((q->url = strdup(opts->path)) == NULL ||
        (opts->password != NULL && (q->password = strdup(opts->password)) == NULL)) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (opts->replica_id != NULL && opts->replica_id[0] != '\0')
        snprintf(q->replica, sizeof(q->replica), "%s", opts->replica_id);
    else if (gethostname(q->replica, sizeof(q->replica) - 1) != 0 || q->replica[0] == '\0')
        snprintf(q->replica, sizeof(q->replica), "replica");
    q->ttl_ms = opts->idempotency_ttl_ms;
    q->retention_ms = opts->retention_ms;
    if (opts->n_accounts < 0 || opts->n_accounts > QUEUE_MAX_ACCOUNTS) {
        snprintf(err, errlen, "too many accounts");
        goto fail;
    }
    q->n_accounts = opts->n_accounts > 0 ? opts->n_accounts : 1;
    if (opts->adopt_default != NULL)
        snprintf(q->adopt_default, sizeof(q->adopt_default), "%s", opts->adopt_default);
    for (int i = 0; i < q->n_accounts; i++) {
        const struct queue_account_limits *l = opts->n_accounts > 0 ? &opts->accounts[i] : NULL;
        snprintf(q->accounts[i].id, sizeof(q->accounts[i].id), "%s",
                 l != NULL ? l->id : QUEUE_DEFAULT_ACCOUNT);
        q->accounts[i].rate = l != NULL ? l->rate_per_second : opts->rate_per_second;
        q->accounts[i].max_in_flight = l != NULL ? l->max_in_flight : opts->max_in_flight;
    }
    q->clock_ms = opts->clock_ms;
    if (pg_connect(q, err, errlen) != 0 || queue_pg_migrate(q, err, errlen) != 0)
        goto fail;
    *out = q;
    return 0;
fail:
    pg_store_free(q);
    return -1;
}

/* ---- the backend ---- */

static int pg_begin(struct queue_store *q)
{
    queue_pg_submit_reset(q);
    q->isolated = 0;
    pg_deferred_clear(q);
    if (pg_ensure(q) != 0)
        return -1;
    return pg_defer(q, "BEGIN", NULL);
}

static int pg_commit(struct queue_store *q)
{
    queue_pg_submit_reset(q);
    /* COMMIT returns once the server has made the transaction durable
     * (synchronous_commit, as the operator set it: on by default). The
     * cycle's deferred statements go with it; if one failed, so does the
     * COMMIT. */
    return queue_pg_do(q, "COMMIT", NULL);
}

static void pg_rollback(struct queue_store *q)
{
    queue_pg_submit_reset(q);
    pg_deferred_clear(q);
    if (q->conn != NULL && PQtransactionStatus(q->conn) != PQTRANS_IDLE)
        (void)queue_pg_do(q, "ROLLBACK", NULL);
}

static int pg_savepoint(struct queue_store *q)
{
    q->isolated = 1;
    return queue_pg_do(q, "SAVEPOINT op", NULL);
}

static int pg_release_savepoint(struct queue_store *q)
{
    return queue_pg_do(q, "RELEASE SAVEPOINT op", NULL);
}

static int pg_rollback_savepoint(struct queue_store *q)
{
    queue_pg_submit_reset(q);
    return queue_pg_do(q, "ROLLBACK TO SAVEPOINT op", NULL);
}

/* An error inside the transaction leaves it open but failed: a savepoint
 * can still be rolled back to. A lost connection has no transaction. */
static int pg_in_transaction(struct queue_store *q)
{
    PGTransactionStatusType st = q->conn != NULL ? PQtransactionStatus(q->conn) : PQTRANS_UNKNOWN;

    if (q->n_deferred > 0 && st == PQTRANS_IDLE)
        return 1; /* its BEGIN is still to be sent */
    return st == PQTRANS_INTRANS || st == PQTRANS_INERROR;
}

static int pg_end_cycle(struct queue_store *q, struct cycle *c)
{
    /* Delivered at COMMIT, one per transaction however many jobs: the
     * other replicas claim at once instead of at their next poll. The
     * payload names the sender, which has told its own dispatcher. */
    if (c->notify_due != INT64_MAX) {
        struct pg_args a = {.n = 0};
        arg_text(&a, q->replica);
        if (pg_defer(q, "SELECT pg_notify('dg_due', $1)", &a) != 0)
            return -1;
    }
    if (q->ttl_ms > 0) {
        struct pg_args a = {.n = 0};
        arg_i64(&a, util_now_ms() - q->ttl_ms);
        arg_i64(&a, 64 + 4 * c->n_submits);
        if (pg_defer(q,
                     "DELETE FROM dg_submissions WHERE ctid IN (SELECT ctid FROM dg_submissions"
                     " WHERE created_ms <= $1 ORDER BY created_ms LIMIT $2)",
                     &a) != 0)
            return -1;
    }
    return pg_count_flush(q, &c->moves);
}

static int pg_meta_read(struct queue_store *q, int64_t *audit_seq, char audit_mac[65],
                        unsigned *paused)
{
    struct pg_args a = {.n = 0};
    PGresult *r;

    arg_text(&a, q->replica);
    r = queue_pg_exec(q,
                      "SELECT (SELECT seq FROM dg_audit_heads WHERE replica = $1), (SELECT mac FROM"
                      " dg_audit_heads WHERE replica = $1), (SELECT string_agg(account, ' ') FROM"
                      " dg_limiter WHERE paused)",
                      &a);
    if (r == NULL)
        return -1;
    /* No row yet: a replica's first start adopts its log's position. */
    *audit_seq = PQgetisnull(r, 0, 0) ? -1 : queue_pg_i64(r, 0, 0);
    snprintf(audit_mac, 65, "%s", PQgetvalue(r, 0, 1));
    *paused = 0;
    for (int i = 0; i < q->n_accounts; i++) {
        const char *list = PQgetvalue(r, 0, 2);
        size_t n = strlen(q->accounts[i].id);

        /* Account ids hold no space ([a-z0-9_-]). */
        for (const char *p = list; (p = strstr(p, q->accounts[i].id)) != NULL; p += n)
            if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
                *paused |= 1u << i;
    }
    PQclear(r);
    return 0;
}

static int pg_meta_write_audit(struct queue_store *q, uint64_t seq, const char *mac)
{
    struct pg_args a = {.n = 0};

    arg_text(&a, q->replica);
    arg_i64(&a, (int64_t)seq);
    arg_text(&a, mac);
    return pg_defer(q,
                    "INSERT INTO dg_audit_heads (replica, seq, mac) VALUES ($1, $2, $3) ON CONFLICT"
                    " (replica) DO UPDATE SET seq = excluded.seq, mac = excluded.mac",
                    &a);
}

/* ---- LISTEN: the other replicas' news (loop thread) ---- */

static void pg_listen_drop(struct queue_store *q)
{
    if (q->ev_listen != NULL)
        event_free(q->ev_listen);
    q->ev_listen = NULL;
    if (q->listen != NULL)
        PQfinish(q->listen);
    q->listen = NULL;
}

static void pg_on_listen(evutil_socket_t fd, short what, void *arg)
{
    struct queue_store *q = arg;
    PGnotify *n;
    int any = 0;

    (void)fd, (void)what;
    if (PQconsumeInput(q->listen) == 0) {
        /* Lost (a restart, a failover): listen again in a second; the
         * dispatcher's poll covers the gap. */
        pg_listen_drop(q);
        struct timeval second = {1, 0};
        evtimer_add(q->ev_relisten, &second);
        return;
    }
    while ((n = PQnotifies(q->listen)) != NULL) {
        any |= strcmp(n->extra, q->replica) != 0;
        PQfreemem(n);
    }
    if (any)
        q->due(q->due_arg);
}

/* Connecting blocks for a moment (connect_timeout): at open, and after a
 * loss at most once a second. */
static int pg_listen_start(struct queue_store *q, struct event_base *base)
{
    const char *keys[] = {"dbname", "password", "connect_timeout", "application_name", NULL};
    const char *vals[] = {q->url, q->password, PG_CONNECT_TIMEOUT, "deletion-gateway-listen", NULL};
    PGresult *r;

    q->listen = PQconnectdbParams(keys, vals, 1);
    if (q->listen == NULL || PQstatus(q->listen) != CONNECTION_OK)
        goto fail;
    r = PQexec(q->listen, "LISTEN dg_due");
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        PQclear(r);
        goto fail;
    }
    PQclear(r);
    if (PQsetnonblocking(q->listen, 1) != 0)
        goto fail;
    q->ev_listen = event_new(base, PQsocket(q->listen), EV_READ | EV_PERSIST, pg_on_listen, q);
    if (q->ev_listen == NULL || event_add(q->ev_listen, NULL) != 0)
        goto fail;
    return 0;
fail:
    pg_listen_drop(q);
    return -1;
}

static void pg_on_relisten(evutil_socket_t fd, short what, void *arg)
{
    struct queue_store *q = arg;
    struct timeval second = {1, 0};

    (void)fd, (void)what;
    if (pg_listen_start(q, event_get_base(q->ev_relisten)) != 0)
        evtimer_add(q->ev_relisten, &second);
    else
        q->due(q->due_arg); /* whatever was announced meanwhile */
}

static int pg_watch(struct queue_store *q, struct event_base *base, void (*due)(void *arg),
                    void *arg)
{
    q->due = due;
    q->due_arg = arg;
    q->ev_relisten = evtimer_new(base, pg_on_relisten, q);
    if (q->ev_relisten == NULL)
        return -1;
    if (pg_listen_start(q, base) != 0) {
        struct timeval second = {1, 0};
        evtimer_add(q->ev_relisten, &second);
        return -1;
    }
    return 0;
}

static void pg_unwatch(struct queue_store *q)
{
    pg_listen_drop(q);
    if (q->ev_relisten != NULL)
        event_free(q->ev_relisten);
    q->ev_relisten = NULL;
}

const struct queue_backend queue_pg_backend = {
    .name = "postgres",
    .shared = 1,
    .open = pg_store_open,
    .close = pg_store_free,
    .begin = pg_begin,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .savepoint = pg_savepoint,
    .release_savepoint = pg_release_savepoint,
    .rollback_savepoint = pg_rollback_savepoint,
    .in_transaction = pg_in_transaction,
    .run =
        {
            [OP_SUBMIT] = queue_pg_op_submit,
            [OP_CLAIM] = queue_pg_op_claim,
            [OP_COMPLETE] = queue_pg_op_complete,
            [OP_RELEASE] = queue_pg_op_release,
            [OP_GET] = queue_pg_op_get,
            [OP_STATS] = queue_pg_op_stats,
            [OP_LIST] = queue_pg_op_list,
            [OP_RETRY] = queue_pg_op_retry,
            [OP_CANCEL] = queue_pg_op_cancel,
            [OP_NOTE] = queue_op_note,
            [OP_PAUSE] = queue_pg_op_pause,
            [OP_MAINTAIN] = queue_pg_op_maintain,
            [OP_EXPORT] = queue_pg_op_export,
        },
    .end_cycle = pg_end_cycle,
    .meta_read = pg_meta_read,
    .meta_write_audit = pg_meta_write_audit,
    .watch = pg_watch,
    .unwatch = pg_unwatch,
};
