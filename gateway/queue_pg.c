/*
 * queue_pg.c: the queue's storage on PostgreSQL, shared by several gateway
 * replicas (queue_backend.h; queue.c does the rest).
 *
 * Map of this file:
 *   schema      migrations[], applied forward at open under an advisory lock
 *               so replicas that start together take turns
 *   helpers     one call per statement, text parameters, reconnecting
 *   limiter     one row per Extend account that every replica's claim locks:
 *               the account's rate and in-flight limits, its 429 hold, its
 *               credentials breaker and the operator's pause hold for all
 *   operations  one function per kind of op
 *   backend     the table queue.c calls
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
#include "queue_backend.h"
#include "log.h"
#include "util.h"

#include <event2/event.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#define PG_MAX_PARAMS 16
#define PG_RECONNECT_MS 1000 /* at most one connection attempt a second */
#define PG_CONNECT_TIMEOUT "3"
#define PG_LOCK_KEY "7310472183049221" /* pg_advisory_lock key of the migrations */
#define PG_RETRY_ALL_MAX 10000
#define PG_PRUNE_BATCH 200
/* Grants are spread so that no one-second window holds more than the
 * rate: a window a little longer than a second absorbs the few
 * milliseconds between a grant and its DELETE leaving. */
#define PG_WINDOW_MARGIN_MS QUEUE_SEND_SLACK_MS
#define PG_RING_MAX 1000    /* grants remembered: rate_per_second is at most 1000 */
#define PG_FULL_RETRY_MS 25 /* every in-flight slot taken: when to ask again */
/* A grant is for a moment this far ahead, and the replica sends then, not
 * at once: its own commit (two fsyncs) and the hand-over to the loop take
 * a varying few milliseconds, which would otherwise let two replicas'
 * DELETEs crowd into one second. The grant's window is reckoned at that
 * moment. While it waits, the job counts as in flight. */
#define PG_SEND_DELAY_MS 100

/* ---- schema ---- */

static const char *const migrations[] = {
    /* v1 */
    "CREATE FUNCTION dg_now_ms() RETURNS bigint LANGUAGE sql VOLATILE AS"
    " $$ SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint $$;"
    "CREATE TABLE dg_submissions (source text NOT NULL, key text NOT NULL, status int NOT NULL,"
    " body text NOT NULL, created_ms bigint NOT NULL, PRIMARY KEY (source, key));"
    "CREATE INDEX dg_submissions_created ON dg_submissions (created_ms);"
    /* Hot: every request inserts, every DELETE updates twice. Room on each
     * page for the updated row (HOT updates) and vacuum that keeps up. */
    "CREATE TABLE dg_jobs (id bigserial PRIMARY KEY, resource text NOT NULL,"
    " resource_id text NOT NULL, state text NOT NULL, due_ms bigint NOT NULL,"
    " lease_until_ms bigint NOT NULL DEFAULT 0, lease bigint NOT NULL DEFAULT 0,"
    " attempts int NOT NULL DEFAULT 0, clock_start_ms bigint NOT NULL,"
    " created_ms bigint NOT NULL, updated_ms bigint NOT NULL,"
    " completed_ms bigint NOT NULL DEFAULT 0, last_http_status int NOT NULL DEFAULT 0,"
    " last_upstream_request_id text NOT NULL DEFAULT '', last_error text NOT NULL DEFAULT '',"
    " final_audit_seq bigint NOT NULL DEFAULT 0, final_audit_mac text NOT NULL DEFAULT '')"
    " WITH (fillfactor = 80, autovacuum_vacuum_scale_factor = 0.02,"
    " autovacuum_analyze_scale_factor = 0.02);"
    "CREATE UNIQUE INDEX dg_jobs_pending ON dg_jobs (resource, resource_id)"
    " WHERE state IN ('queued', 'in_flight');"
    /* Claims read only these two, however many finished jobs there are. */
    "CREATE INDEX dg_jobs_queued_due ON dg_jobs (due_ms) WHERE state = 'queued';"
    "CREATE INDEX dg_jobs_leased_due ON dg_jobs (due_ms) WHERE state = 'in_flight';"
    "CREATE INDEX dg_jobs_pending_created ON dg_jobs (created_ms)"
    " WHERE state IN ('queued', 'in_flight');"
    "CREATE INDEX dg_jobs_finished ON dg_jobs (completed_ms)"
    " WHERE state IN ('deleted', 'not_found', 'rejected', 'dead', 'cancelled');"
    "CREATE INDEX dg_jobs_resource_id ON dg_jobs (resource_id);"
    "CREATE TABLE dg_deletions (id text PRIMARY KEY, job_id bigint NOT NULL REFERENCES dg_jobs,"
    " source text NOT NULL, key text NOT NULL, request_id text NOT NULL, reason text NOT NULL,"
    " not_before_ms bigint NOT NULL, accepted_ms bigint NOT NULL, state text,"
    " updated_ms bigint NOT NULL DEFAULT 0, final_audit_seq bigint NOT NULL DEFAULT 0,"
    " final_audit_mac text NOT NULL DEFAULT '', seq bigserial NOT NULL)"
    " WITH (autovacuum_vacuum_scale_factor = 0.02);"
    "CREATE INDEX dg_deletions_job ON dg_deletions (job_id);"
    "CREATE INDEX dg_deletions_own ON dg_deletions (accepted_ms) WHERE state IS NOT NULL;"
    "CREATE INDEX dg_deletions_accepted ON dg_deletions (accepted_ms, seq);"
    "CREATE TABLE dg_attempts (id bigserial PRIMARY KEY, job_id bigint NOT NULL REFERENCES dg_jobs,"
    " started_ms bigint NOT NULL, finished_ms bigint NOT NULL, http_status int NOT NULL,"
    " upstream_request_id text NOT NULL, error_code text NOT NULL, detail text NOT NULL);"
    "CREATE INDEX dg_attempts_job ON dg_attempts (job_id);"
    /* Per replica, so replicas never queue behind each other's counts. */
    "CREATE TABLE dg_counts (replica text NOT NULL, name text NOT NULL,"
    " n bigint NOT NULL DEFAULT 0, PRIMARY KEY (replica, name));"
    /* Each replica keeps its own audit chain (its own file); the queue
     * keeps where each one's committed records end (queue.c). */
    "CREATE TABLE dg_audit_heads (replica text PRIMARY KEY, seq bigint NOT NULL,"
    " mac text NOT NULL);"
    "CREATE TABLE dg_limiter (account text PRIMARY KEY, grants bigint[] NOT NULL DEFAULT '{}',"
    " hold_until_ms bigint NOT NULL DEFAULT 0, breaker_open boolean NOT NULL DEFAULT false,"
    " probe_at_ms bigint NOT NULL DEFAULT 0, probe_interval_ms bigint NOT NULL DEFAULT 1000,"
    " paused boolean NOT NULL DEFAULT false);"
    "INSERT INTO dg_limiter (account) VALUES ('default');",
};
#define SCHEMA_VERSION ((int)(sizeof(migrations) / sizeof(migrations[0])))

static const char *const count_names[] = {"queued",   "in_flight", "deleted",   "not_found",
                                          "rejected", "dead",      "cancelled", "jobs_pending"};

/* The columns queue_view_from_row reads, in its order. */
#define PG_VIEW_COLS                                                                               \
    "d.id, d.job_id, j.resource, j.resource_id, coalesce(d.state, j.state), d.source, d.key,"      \
    " d.request_id, d.reason, j.attempts, j.last_http_status, j.last_upstream_request_id,"         \
    " j.last_error, d.accepted_ms, d.not_before_ms, greatest(j.updated_ms, d.updated_ms),"         \
    " j.due_ms, j.completed_ms, d.state, d.updated_ms, j.final_audit_seq, j.final_audit_mac,"      \
    " d.final_audit_seq, d.final_audit_mac"

/* ---- the store ---- */

struct queue_store {
    PGconn *conn;
    char *url;
    char *password; /* wiped at close */
    char replica[65];
    int64_t ttl_ms, retention_ms;
    double rate;               /* DELETEs per second for all replicas; 0 = no limit */
    int max_in_flight;         /* for all replicas; 0 = no limit */
    int64_t (*clock_ms)(void); /* NULL: the database's clock */
    int64_t last_connect_ms;

    /* The loop thread's own connection, LISTENing for the other replicas'
     * "jobs are due" (NOTIFY dg_due, sent by a commit that made some). */
    PGconn *listen;
    struct event *ev_listen, *ev_relisten;
    void (*due)(void *arg);
    void *due_arg;
};

/* Text parameters for one statement. */
struct pg_args {
    const char *v[PG_MAX_PARAMS];
    char num[PG_MAX_PARAMS][24];
    int n;
};

static void arg_text(struct pg_args *a, const char *s)
{
    a->v[a->n++] = s;
}

static void arg_i64(struct pg_args *a, int64_t x)
{
    snprintf(a->num[a->n], sizeof(a->num[0]), "%lld", (long long)x);
    a->v[a->n] = a->num[a->n];
    a->n++;
}

static void arg_null(struct pg_args *a)
{
    a->v[a->n++] = NULL;
}

/* $1 of the statements that need "now": the test clock, or NULL, which
 * their SQL turns into the database's clock. */
static void arg_now(struct queue_store *q, struct pg_args *a)
{
    if (q->clock_ms != NULL)
        arg_i64(a, q->clock_ms());
    else
        arg_null(a);
}

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

/* Runs one statement; NULL on failure (logged). The caller PQclear()s. */
static PGresult *pg_exec(struct queue_store *q, const char *sql, const struct pg_args *a)
{
    PGresult *r;
    ExecStatusType st;

    if (q->conn == NULL)
        return NULL;
    /* Without parameters, the simple protocol: it takes several commands
     * (the migrations). */
    r = a == NULL ? PQexec(q->conn, sql)
                  : PQexecParams(q->conn, sql, a->n, NULL, a->v, NULL, NULL, 0);
    st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        const char *msg = PQresultErrorMessage(r);
        log_error(NULL, "queue: PostgreSQL: %.*s", (int)strcspn(msg, "\n"), msg);
        PQclear(r);
        return NULL;
    }
    return r;
}

/* A statement whose rows are not needed: 0 or -1. */
static int pg_do(struct queue_store *q, const char *sql, const struct pg_args *a)
{
    PGresult *r = pg_exec(q, sql, a);

    if (r == NULL)
        return -1;
    PQclear(r);
    return 0;
}

static int64_t pg_i64(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static long pg_affected(const PGresult *r)
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

    return pg_i64(x->r, x->row, col);
}

static int pg_row_null(void *p, int col)
{
    const struct pg_row *x = p;

    return PQgetisnull(x->r, x->row, col);
}

static int pg_view_read(const PGresult *r, int row, struct queue_deletion_view *v)
{
    struct pg_row x = {r, row};
    struct queue_row qr = {&x, pg_row_text, pg_row_i64, pg_row_null};

    return queue_view_from_row(&qr, v);
}

static void pg_copy(char *dst, size_t size, const PGresult *r, int row, int col)
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
        arg_text(&a, count_names[i]);
        arg_i64(&a, n);
        if (pg_do(q, "UPDATE dg_counts SET n = n + $3 WHERE replica = $1 AND name = $2", &a) != 0)
            return -1;
    }
    return 0;
}

/* A job moves: its live deletions (no state of their own) move with it. */
static int pg_count_job_move(struct queue_store *q, struct cycle *c, int64_t job_id,
                             enum deletion_state from, enum deletion_state to)
{
    struct pg_args a = {.n = 0};
    PGresult *r;
    int64_t live;

    if (from == to)
        return 0;
    arg_i64(&a, job_id);
    r = pg_exec(q, "SELECT count(*) FROM dg_deletions WHERE job_id = $1 AND state IS NULL", &a);
    if (r == NULL)
        return -1;
    live = pg_i64(r, 0, 0);
    PQclear(r);
    c->moves.state[from] -= live;
    c->moves.state[to] += live;
    c->moves.jobs_pending +=
        (to == DEL_QUEUED || to == DEL_IN_FLIGHT) - (from == DEL_QUEUED || from == DEL_IN_FLIGHT);
    return 0;
}

/* ---- operations (worker thread, inside the cycle's transaction) ---- */

static int pg_op_submit(struct queue_store *q, struct cycle *c, struct op *op)
{
    const struct submit_in *in = &op->in.submit;
    struct audit_record r = {
        .time_ms = op->now_ms, .source = in->source, .key = in->key, .request_id = in->request_id};
    struct pg_args a = {.n = 0};
    PGresult *res;
    long changed;

    c->n_submits++;
    arg_text(&a, in->source);
    arg_text(&a, in->key);
    arg_i64(&a, in->status);
    arg_text(&a, in->body);
    arg_i64(&a, op->now_ms);
    arg_i64(&a, q->ttl_ms > 0 ? op->now_ms - q->ttl_ms : INT64_MIN);
    /* A key older than the TTL is taken over by the new submission. Two
     * replicas taking the same key: the second waits for the first's
     * commit, then finds the key. */
    res =
        pg_exec(q,
                "INSERT INTO dg_submissions (source, key, status, body, created_ms)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (source, key) DO UPDATE SET"
                " status = excluded.status, body = excluded.body, created_ms = excluded.created_ms"
                " WHERE dg_submissions.created_ms <= $6",
                &a);
    if (res == NULL)
        return -1;
    changed = pg_affected(res);
    PQclear(res);
    if (changed == 0) {
        /* A key we remember: replay the first answer, change nothing. */
        a.n = 2;
        res = pg_exec(q, "SELECT status, body FROM dg_submissions WHERE source = $1 AND key = $2",
                      &a);
        if (res == NULL || PQntuples(res) != 1) {
            PQclear(res);
            return -1;
        }
        op->out.submit.stored_status = (int)pg_i64(res, 0, 0);
        op->out.submit.stored_body = strdup(PQgetvalue(res, 0, 1));
        PQclear(res);
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
        const char *rname = resource_name(it->resource);
        int64_t due = it->not_before_ms > op->now_ms ? it->not_before_ms : op->now_ms, job_id;

        a.n = 0;
        arg_text(&a, rname);
        arg_text(&a, it->resource_id);
        arg_i64(&a, due);
        arg_i64(&a, op->now_ms);
        res = pg_exec(q,
                      "INSERT INTO dg_jobs (resource, resource_id, state, due_ms, clock_start_ms,"
                      " created_ms, updated_ms) VALUES ($1, $2, 'queued', $3, $3, $4, $4)"
                      " ON CONFLICT (resource, resource_id) WHERE state IN ('queued', 'in_flight')"
                      " DO NOTHING RETURNING id",
                      &a);
        if (res == NULL)
            return -1;
        if (PQntuples(res) == 1) {
            job_id = pg_i64(res, 0, 0);
            PQclear(res);
            queue_cycle_note_due(c, due);
            c->moves.state[DEL_QUEUED]++;
            c->moves.jobs_pending++;
        } else {
            /* Coalesce: one DELETE serves both. An urgent erasure is not
             * held back by an earlier request's retention delay. */
            PQclear(res);
            a.n = 2;
            res = pg_exec(q,
                          "SELECT id, state, due_ms FROM dg_jobs WHERE resource = $1 AND"
                          " resource_id = $2 AND state IN ('queued', 'in_flight') FOR UPDATE",
                          &a);
            if (res == NULL || PQntuples(res) != 1) {
                PQclear(res);
                return -1;
            }
            job_id = pg_i64(res, 0, 0);
            int queued = strcmp(PQgetvalue(res, 0, 1), "queued") == 0;
            int64_t old_due = pg_i64(res, 0, 2);
            PQclear(res);
            c->moves.state[queued ? DEL_QUEUED : DEL_IN_FLIGHT]++;
            if (queued && due < old_due) {
                a.n = 0;
                arg_i64(&a, job_id);
                arg_i64(&a, due);
                arg_i64(&a, op->now_ms);
                if (pg_do(q, "UPDATE dg_jobs SET due_ms = $2, updated_ms = $3 WHERE id = $1", &a) !=
                    0)
                    return -1;
                queue_cycle_note_due(c, due);
            }
        }
        a.n = 0;
        arg_text(&a, it->deletion_id);
        arg_i64(&a, job_id);
        arg_text(&a, in->source);
        arg_text(&a, in->key);
        arg_text(&a, in->request_id);
        arg_text(&a, it->reason);
        arg_i64(&a, it->not_before_ms);
        arg_i64(&a, op->now_ms);
        if (pg_do(q,
                  "INSERT INTO dg_deletions (id, job_id, source, key, request_id, reason,"
                  " not_before_ms, accepted_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                  &a) != 0)
            return -1;
        r.event = "accepted";
        r.deletion_id = it->deletion_id;
        r.job_id = job_id;
        r.resource = rname;
        r.resource_id = it->resource_id;
        if (queue_cycle_audit(c, &r, NULL, NULL) != 0)
            return -1;
    }
    op->out.submit.status = QUEUE_SUBMIT_OK;
    return 0;
}

/* ---- the limiter ---- */

/* The limiter row, as one claim read it. */
struct pg_limit {
    int64_t now;
    int64_t at;                /* when the jobs this claim is granted go out */
    int64_t ring[PG_RING_MAX]; /* recent grant times */
    int n_ring;
    int64_t probe_at, interval;
    int probing; /* this claim may take the breaker's one probe */
};

/* How many jobs the account lets this claim take now, by the limiter row
 * (locked until the cycle commits, so claims of all replicas take turns):
 * none while paused or held after a 429; one, to one replica, when the
 * breaker's probe is due; else what the in-flight cap and the rate window
 * leave. *wake: when to ask again if the answer is 0. */
static int pg_limit_read(struct queue_store *q, struct pg_limit *l, int want, int *allow,
                         int64_t *wake)
{
    struct pg_args a = {.n = 0};
    PGresult *r;
    int64_t hold, in_flight;
    int breaker, paused;

    arg_now(q, &a);
    r = pg_exec(q,
                "SELECT coalesce($1::bigint, dg_now_ms()), array_to_string(grants, ','),"
                " hold_until_ms, breaker_open, probe_at_ms, probe_interval_ms, paused,"
                " (SELECT count(*) FROM dg_jobs WHERE state = 'in_flight' AND"
                " due_ms > coalesce($1::bigint, dg_now_ms()))"
                " FROM dg_limiter WHERE account = 'default' FOR UPDATE",
                &a);
    if (r == NULL || PQntuples(r) != 1) {
        PQclear(r);
        return -1;
    }
    memset(l, 0, sizeof(*l));
    l->now = pg_i64(r, 0, 0);
    l->at = l->now + (q->rate > 0 ? PG_SEND_DELAY_MS : 0);
    for (const char *s = PQgetvalue(r, 0, 1); *s != '\0' && l->n_ring < PG_RING_MAX;) {
        char *end;
        long long v = strtoll(s, &end, 10);
        if (end == s)
            break;
        l->ring[l->n_ring++] = v;
        s = *end == ',' ? end + 1 : end;
    }
    hold = pg_i64(r, 0, 2);
    breaker = PQgetvalue(r, 0, 3)[0] == 't';
    l->probe_at = pg_i64(r, 0, 4);
    l->interval = pg_i64(r, 0, 5);
    paused = PQgetvalue(r, 0, 6)[0] == 't';
    in_flight = pg_i64(r, 0, 7);
    PQclear(r);

    *wake = INT64_MAX;
    *allow = want;
    if (q->max_in_flight > 0 && *allow > q->max_in_flight - in_flight) {
        *allow = (int)(q->max_in_flight - in_flight);
        /* Slots held by other replicas free as their answers come, which
         * nobody announces: look again soon. */
        if (*allow <= 0)
            *wake = l->now + PG_FULL_RETRY_MS;
    }
    if (paused || *allow < 0)
        *allow = 0;
    if (hold > l->now) {
        *allow = 0;
        *wake = hold;
    }
    if (breaker && *allow > 0) {
        if (l->probe_at > l->now) {
            *allow = 0;
            *wake = l->probe_at;
        } else {
            *allow = 1; /* one probe, for whichever replica asks first */
            l->probing = 1;
        }
    }
    if (q->rate > 0 && *allow > 0) {
        /* At most per_window grants in any window: rate 10 -> 10 in a
         * second; rate 0.5 -> 1 in two seconds. */
        int per_window = q->rate >= 1 ? (int)q->rate : 1, used = 0;
        int64_t window = (int64_t)(1000.0 * per_window / q->rate) + PG_WINDOW_MARGIN_MS;
        int64_t oldest = INT64_MAX;

        for (int i = 0; i < l->n_ring; i++) {
            if (l->ring[i] > l->at - window) {
                used++;
                oldest = l->ring[i] < oldest ? l->ring[i] : oldest;
            }
        }
        if (*allow > per_window - used)
            *allow = per_window - used;
        if (*allow <= 0) {
            *allow = 0;
            if (oldest != INT64_MAX)
                *wake = oldest + window - (l->at - l->now);
        }
    }
    return 0;
}

/* Records what the claim took: one grant per job in the rate window
 * (only grants still inside a minute are kept), and a probe taken. */
static int pg_limit_write(struct queue_store *q, const struct pg_limit *l, int taken)
{
    char buf[PG_RING_MAX * 21 + 2];
    size_t len = 0;
    struct pg_args a = {.n = 0};
    int kept = 0;

    if (taken == 0)
        return 0;
    buf[0] = '\0';
    for (int i = 0; i < l->n_ring && q->rate > 0; i++) {
        if (l->ring[i] > l->now - 60000 && kept < PG_RING_MAX - taken) {
            len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s%lld", len ? "," : "",
                                    (long long)l->ring[i]);
            kept++;
        }
    }
    for (int i = 0; i < taken && q->rate > 0; i++)
        len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s%lld", len ? "," : "",
                                (long long)l->at);
    arg_text(&a, buf);
    arg_i64(&a, l->probing ? l->now + l->interval : l->probe_at);
    arg_i64(&a, l->probing ? (l->interval * 2 > 60000 ? 60000 : l->interval * 2) : l->interval);
    return pg_do(q,
                 "UPDATE dg_limiter SET grants = coalesce(string_to_array(nullif($1, ''), "
                 "',')::bigint[], '{}'),"
                 " probe_at_ms = $2, probe_interval_ms = $3 WHERE account = 'default'",
                 &a);
}

/* An answer one replica got holds or frees every replica: a 429 holds all
 * sending until its hold ends, rejected credentials open the breaker, any
 * other answer closes it. */
static int pg_limiter_learn(struct queue_store *q, const struct queue_outcome *o, int64_t now)
{
    struct pg_args a = {.n = 0};

    if (o->http_status == 0)
        return 0;
    if (o->http_status == 429) {
        arg_i64(&a, o->retry_at_ms);
        return pg_do(q,
                     "UPDATE dg_limiter SET hold_until_ms = greatest(hold_until_ms, $1)"
                     " WHERE account = 'default'",
                     &a);
    }
    if (o->http_status == 401 || o->http_status == 402 || o->http_status == 403) {
        arg_i64(&a, now);
        return pg_do(
            q,
            "UPDATE dg_limiter SET breaker_open = true, probe_at_ms = greatest(probe_at_ms,"
            " $1 + probe_interval_ms) WHERE account = 'default' AND NOT breaker_open",
            &a);
    }
    return pg_do(q,
                 "UPDATE dg_limiter SET breaker_open = false, probe_interval_ms = 1000"
                 " WHERE account = 'default' AND breaker_open",
                 NULL);
}

/* ---- operations, continued ---- */

/* Takes up to n due jobs of one state (queued, or in flight with an ended
 * lease) with SKIP LOCKED, so replicas claiming together take different
 * jobs, in a materialised CTE, so the planner locks no more than the LIMIT. */
static int pg_claim_some(struct queue_store *q, struct cycle *c, struct op *op,
                         enum deletion_state from, int64_t now, int n)
{
    struct pg_args a = {.n = 0};
    PGresult *r;
    int got;

    arg_text(&a, deletion_state_name(from));
    arg_i64(&a, now);
    arg_i64(&a, n);
    arg_i64(&a, now + op->in.claim.lease_ms);
    r = pg_exec(q,
                "WITH picked AS MATERIALIZED (SELECT id FROM dg_jobs WHERE state = $1 AND"
                " due_ms <= $2 ORDER BY due_ms LIMIT $3 FOR UPDATE SKIP LOCKED)"
                " UPDATE dg_jobs j SET state = 'in_flight', due_ms = $4, lease_until_ms = $4,"
                " updated_ms = $2, lease = j.lease + 1 FROM picked WHERE j.id = picked.id"
                " RETURNING j.id, j.resource, j.resource_id, j.attempts, j.clock_start_ms, j.lease",
                &a);
    if (r == NULL)
        return -1;
    got = PQntuples(r);
    for (int i = 0; i < got; i++) {
        struct queue_job *job = &op->out.claim.jobs[op->out.claim.n];

        job->job_id = pg_i64(r, i, 0);
        if (resource_from_name(PQgetvalue(r, i, 1), &job->resource) != 0)
            continue; /* not written by this code: it stays leased for an operator */
        pg_copy(job->resource_id, sizeof(job->resource_id), r, i, 2);
        job->attempts = (int)pg_i64(r, i, 3);
        job->clock_start_ms = pg_i64(r, i, 4);
        job->lease = pg_i64(r, i, 5);
        if (pg_count_job_move(q, c, job->job_id, from, DEL_IN_FLIGHT) != 0) {
            PQclear(r);
            return -1;
        }
        op->out.claim.n++;
    }
    PQclear(r);
    return got;
}

static int pg_op_claim(struct queue_store *q, struct cycle *c, struct op *op)
{
    int max = op->in.claim.max_jobs, allow = 0, rescued;
    int64_t wake;
    struct pg_limit lim;
    PGresult *r;

    op->out.claim.jobs = malloc((size_t)(max > 0 ? max : 1) * sizeof(struct queue_job));
    if (op->out.claim.jobs == NULL || pg_limit_read(q, &lim, max, &allow, &wake) != 0)
        return -1;
    op->out.claim.n = 0;
    /* Expired leases first: their jobs have waited longest. */
    rescued = allow > 0 ? pg_claim_some(q, c, op, DEL_IN_FLIGHT, lim.now, allow) : 0;
    if (rescued < 0 ||
        (allow > rescued && pg_claim_some(q, c, op, DEL_QUEUED, lim.now, allow - rescued) < 0) ||
        pg_limit_write(q, &lim, op->out.claim.n) != 0)
        return -1;
    for (int i = 0; i < op->out.claim.n; i++)
        op->out.claim.jobs[i].send_at_ms = lim.at > lim.now ? lim.at : 0;
    r = pg_exec(q,
                "SELECT least((SELECT min(due_ms) FROM dg_jobs WHERE state = 'queued'),"
                " (SELECT min(due_ms) FROM dg_jobs WHERE state = 'in_flight'))",
                NULL);
    if (r == NULL)
        return -1;
    op->out.claim.next_due_ms = PQgetisnull(r, 0, 0) ? INT64_MAX : pg_i64(r, 0, 0);
    PQclear(r);
    /* Jobs are due but the limiter said no: ask again when it may say yes. */
    if (op->out.claim.n == 0 && op->out.claim.next_due_ms <= lim.now)
        op->out.claim.next_due_ms = wake;
    return 0;
}

/* Whether job_id is still in flight under this lease (*owned), locked,
 * with its resource; a late one is dropped and counted (queue.h). */
static int pg_job_leased(struct queue_store *q, struct cycle *c, int64_t job_id, int64_t lease,
                         char *res, size_t res_size, char *rid, size_t rid_size, int *owned)
{
    struct pg_args a = {.n = 0};
    PGresult *r;

    *owned = 0;
    arg_i64(&a, job_id);
    r = pg_exec(
        q, "SELECT state, resource, resource_id, lease FROM dg_jobs WHERE id = $1 FOR UPDATE", &a);
    if (r == NULL || PQntuples(r) != 1) {
        PQclear(r);
        log_warn(NULL, "queue: completion for unknown job %lld", (long long)job_id);
        return -1;
    }
    *owned = strcmp(PQgetvalue(r, 0, 0), "in_flight") == 0 && pg_i64(r, 0, 3) == lease;
    pg_copy(res, res_size, r, 0, 1);
    pg_copy(rid, rid_size, r, 0, 2);
    PQclear(r);
    if (!*owned)
        c->stale++;
    return 0;
}

static int pg_op_complete(struct queue_store *q, struct cycle *c, struct op *op)
{
    const struct queue_outcome *o = &op->in.complete;
    char res[32], rid[RESOURCE_ID_MAX + 1], mac[65] = "";
    int owned, attempted = o->started_ms != 0;
    int64_t due = o->retry_at_ms > 0 ? o->retry_at_ms : op->now_ms;
    uint64_t seq = 0;
    struct pg_args a = {.n = 0};
    struct audit_record r = {.time_ms = op->now_ms,
                             .job_id = o->job_id,
                             .resource = res,
                             .resource_id = rid,
                             .http_status = o->http_status,
                             .upstream_request_id = o->upstream_request_id,
                             .error_code = o->error_code,
                             .detail = o->detail};

    if (pg_job_leased(q, c, o->job_id, o->lease, res, sizeof(res), rid, sizeof(rid), &owned) != 0)
        return -1;
    op->out.ok = 1;
    if (pg_limiter_learn(q, o, op->now_ms) != 0)
        return -1;
    if (!owned)
        return 0;
    if (attempted) {
        arg_i64(&a, o->job_id);
        arg_i64(&a, o->started_ms);
        arg_i64(&a, o->finished_ms);
        arg_i64(&a, o->http_status);
        arg_text(&a, o->upstream_request_id);
        arg_text(&a, o->error_code);
        arg_text(&a, o->detail);
        if (pg_do(q,
                  "INSERT INTO dg_attempts (job_id, started_ms, finished_ms, http_status,"
                  " upstream_request_id, error_code, detail) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                  &a) != 0)
            return -1;
        /* A try that ends the job is told by its terminal record. */
        r.event = "attempt";
        if (o->state == DEL_QUEUED && queue_cycle_audit(c, &r, NULL, NULL) != 0)
            return -1;
    }
    if (o->state != DEL_QUEUED) {
        r.event = deletion_state_name(o->state);
        if (queue_cycle_audit(c, &r, &seq, mac) != 0)
            return -1;
    }
    a.n = 0;
    arg_i64(&a, o->job_id);
    arg_text(&a, deletion_state_name(o->state));
    arg_i64(&a, o->state == DEL_QUEUED ? due : op->now_ms);
    arg_i64(&a, o->counts_as_attempt ? 1 : 0);
    arg_i64(&a, op->now_ms);
    arg_i64(&a, o->state == DEL_QUEUED ? 0 : op->now_ms);
    arg_text(&a, attempted ? "t" : "f");
    arg_i64(&a, o->http_status);
    arg_text(&a, o->upstream_request_id);
    arg_text(&a, o->error_code);
    arg_i64(&a, (int64_t)seq);
    arg_text(&a, mac);
    if (pg_do(q,
              "UPDATE dg_jobs SET state = $2, due_ms = $3, lease_until_ms = 0,"
              " attempts = attempts + $4, updated_ms = $5, completed_ms = $6,"
              " last_http_status = CASE WHEN $7::boolean THEN $8 ELSE last_http_status END,"
              " last_upstream_request_id = CASE WHEN $7::boolean THEN $9"
              " ELSE last_upstream_request_id END,"
              " last_error = CASE WHEN $7::boolean THEN $10 ELSE last_error END,"
              " final_audit_seq = $11, final_audit_mac = $12 WHERE id = $1",
              &a) != 0 ||
        pg_count_job_move(q, c, o->job_id, DEL_IN_FLIGHT, o->state) != 0)
        return -1;
    if (o->state == DEL_QUEUED)
        queue_cycle_note_due(c, due);
    return 0;
}

static int pg_op_release(struct queue_store *q, struct cycle *c, struct op *op)
{
    int64_t due = op->in.release.due_ms > op->now_ms ? op->in.release.due_ms : op->now_ms;
    char res[32], rid[RESOURCE_ID_MAX + 1];
    struct pg_args a = {.n = 0};
    int owned;

    if (pg_job_leased(q, c, op->in.release.job_id, op->in.release.lease, res, sizeof(res), rid,
                      sizeof(rid), &owned) != 0)
        return -1;
    op->out.ok = 1;
    if (!owned)
        return 0;
    arg_i64(&a, op->in.release.job_id);
    arg_i64(&a, due);
    arg_i64(&a, op->now_ms);
    if (pg_do(q,
              "UPDATE dg_jobs SET state = 'queued', due_ms = $2, lease_until_ms = 0,"
              " updated_ms = $3 WHERE id = $1",
              &a) != 0 ||
        pg_count_job_move(q, c, op->in.release.job_id, DEL_IN_FLIGHT, DEL_QUEUED) != 0)
        return -1;
    queue_cycle_note_due(c, due);
    return 0;
}

/* Views read by one statement into a fresh array of at most max; -1 on
 * failure. */
static int pg_views(struct queue_store *q, const char *sql, const struct pg_args *a, int max,
                    struct queue_deletion_view **out, int *n)
{
    PGresult *r = pg_exec(q, sql, a);
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
        if (pg_view_read(r, i, &(*out)[*n]) == 0)
            (*n)++;
    }
    PQclear(r);
    return 0;
}

static int pg_op_get(struct queue_store *q, struct cycle *c, struct op *op)
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
    r = pg_exec(q,
                "SELECT started_ms, finished_ms, http_status, upstream_request_id, error_code,"
                " detail FROM dg_attempts WHERE job_id = $1 ORDER BY id DESC LIMIT $2",
                &a);
    if (r == NULL)
        return -1;
    for (int i = 0; i < PQntuples(r) && v->n_attempts < QUEUE_VIEW_ATTEMPTS; i++) {
        struct queue_attempt_view *at = &v->attempt[v->n_attempts++];
        at->started_ms = pg_i64(r, i, 0);
        at->finished_ms = pg_i64(r, i, 1);
        at->http_status = (int)pg_i64(r, i, 2);
        pg_copy(at->upstream_request_id, sizeof(at->upstream_request_id), r, i, 3);
        pg_copy(at->error_code, sizeof(at->error_code), r, i, 4);
        pg_copy(at->detail, sizeof(at->detail), r, i, 5);
    }
    PQclear(r);
    return 0;
}

/* Counts summed over every replica's rows: a few rows per replica,
 * whatever the queue's size. */
static int pg_op_stats(struct queue_store *q, struct cycle *c, struct op *op)
{
    struct queue_stats *s = &op->out.stats;
    PGresult *r;
    (void)c;

    memset(s, 0, sizeof(*s));
    r = pg_exec(q, "SELECT name, sum(n) FROM dg_counts GROUP BY name", NULL);
    if (r == NULL)
        return -1;
    for (int i = 0; i < PQntuples(r); i++) {
        enum deletion_state ds;
        if (strcmp(PQgetvalue(r, i, 0), "jobs_pending") == 0)
            s->jobs_pending = pg_i64(r, i, 1);
        else if (deletion_state_from_name(PQgetvalue(r, i, 0), &ds) == 0)
            s->count[ds] = pg_i64(r, i, 1);
    }
    PQclear(r);
    r = pg_exec(q,
                "SELECT coalesce(min(created_ms), 0) FROM dg_jobs WHERE state IN ('queued',"
                " 'in_flight')",
                NULL);
    if (r == NULL)
        return -1;
    s->oldest_pending_ms = pg_i64(r, 0, 0);
    PQclear(r);
    return 0;
}

static int pg_op_list(struct queue_store *q, struct cycle *c, struct op *op)
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
                                " ORDER BY d.accepted_ms, d.seq LIMIT $2",
                    &a, op->in.list.limit, &op->out.view.views, &op->out.view.n);
}

/* As queue_sqlite.c: a dead or rejected job's live deletions go back to
 * work, joining a pending job for the same resource if there is one. */
static int pg_retry_job(struct queue_store *q, struct cycle *c, struct op *op, int64_t job_id,
                        const char *deletion_id, int64_t *count)
{
    struct pg_args a = {.n = 0};
    char res[32], rid[RESOURCE_ID_MAX + 1];
    int64_t live, target = job_id;
    enum deletion_state from;
    PGresult *r;
    struct audit_record rec = {.event = "retried",
                               .time_ms = op->now_ms,
                               .deletion_id = deletion_id,
                               .resource = res,
                               .resource_id = rid,
                               .source = "operator",
                               .key = op->in.target.actor};

    arg_i64(&a, job_id);
    r = pg_exec(q,
                "SELECT state, resource, resource_id, (SELECT count(*) FROM dg_deletions WHERE"
                " job_id = $1 AND state IS NULL) FROM dg_jobs WHERE id = $1 FOR UPDATE",
                &a);
    if (r == NULL || PQntuples(r) != 1 ||
        deletion_state_from_name(PQgetvalue(r, 0, 0), &from) != 0) {
        PQclear(r);
        return -1;
    }
    pg_copy(res, sizeof(res), r, 0, 1);
    pg_copy(rid, sizeof(rid), r, 0, 2);
    live = pg_i64(r, 0, 3);
    PQclear(r);
    if (live == 0)
        return 0;
    a.n = 0;
    arg_text(&a, res);
    arg_text(&a, rid);
    r = pg_exec(q,
                "SELECT id, state, due_ms FROM dg_jobs WHERE resource = $1 AND resource_id = $2"
                " AND state IN ('queued', 'in_flight') FOR UPDATE",
                &a);
    if (r == NULL)
        return -1;
    if (PQntuples(r) == 1) {
        int queued = strcmp(PQgetvalue(r, 0, 1), "queued") == 0;
        int64_t due = pg_i64(r, 0, 2);

        target = pg_i64(r, 0, 0);
        PQclear(r);
        c->moves.state[from] -= live;
        c->moves.state[queued ? DEL_QUEUED : DEL_IN_FLIGHT] += live;
        a.n = 0;
        arg_i64(&a, job_id);
        arg_i64(&a, target);
        if (pg_do(q, "UPDATE dg_deletions SET job_id = $2 WHERE job_id = $1 AND state IS NULL",
                  &a) != 0)
            return -1;
        a.n = 0;
        arg_i64(&a, target);
        arg_i64(&a, op->now_ms);
        if (queued && due > op->now_ms &&
            pg_do(q, "UPDATE dg_jobs SET due_ms = $2, updated_ms = $2 WHERE id = $1", &a) != 0)
            return -1;
    } else {
        PQclear(r);
        a.n = 0;
        arg_i64(&a, job_id);
        arg_i64(&a, op->now_ms);
        if (pg_do(q,
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

static int pg_op_retry(struct queue_store *q, struct cycle *c, struct op *op)
{
    struct pg_args a = {.n = 0};
    PGresult *r;
    int total = 0, n;

    op->out.count = 0;
    if (op->in.target.id[0] != '\0') {
        arg_text(&a, op->in.target.id);
        r = pg_exec(q,
                    "SELECT d.job_id FROM dg_deletions d JOIN dg_jobs j ON j.id = d.job_id"
                    " WHERE d.id = $1 AND d.state IS NULL AND j.state IN ('dead', 'rejected')",
                    &a);
        if (r == NULL)
            return -1;
        int64_t job_id = PQntuples(r) == 1 ? pg_i64(r, 0, 0) : 0;
        PQclear(r);
        return job_id == 0 ? 0 : pg_retry_job(q, c, op, job_id, op->in.target.id, &op->out.count);
    }
    /* Every dead deletion, in batches, since each retry changes the set. */
    do {
        a.n = 0;
        arg_i64(&a, 256);
        r = pg_exec(q,
                    "SELECT j.id FROM dg_jobs j WHERE j.state = 'dead' AND EXISTS (SELECT 1 FROM"
                    " dg_deletions d WHERE d.job_id = j.id AND d.state IS NULL) ORDER BY j.due_ms"
                    " LIMIT $1",
                    &a);
        if (r == NULL)
            return -1;
        n = PQntuples(r);
        for (int i = 0; i < n; i++) {
            if (pg_retry_job(q, c, op, pg_i64(r, i, 0), NULL, &op->out.count) != 0) {
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
static int pg_op_cancel(struct queue_store *q, struct cycle *c, struct op *op)
{
    struct pg_args a = {.n = 0};
    char res[32], rid[RESOURCE_ID_MAX + 1], mac[65];
    int64_t job_id, live;
    uint64_t seq;
    PGresult *r;

    op->out.count = 0;
    arg_text(&a, op->in.target.id);
    r = pg_exec(q,
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
    job_id = pg_i64(r, 0, 0);
    pg_copy(res, sizeof(res), r, 0, 1);
    pg_copy(rid, sizeof(rid), r, 0, 2);
    PQclear(r);
    struct audit_record rec = {.event = "cancelled",
                               .time_ms = op->now_ms,
                               .deletion_id = op->in.target.id,
                               .job_id = job_id,
                               .resource = res,
                               .resource_id = rid,
                               .source = "operator",
                               .key = op->in.target.actor};
    if (queue_cycle_audit(c, &rec, &seq, mac) != 0)
        return -1;
    a.n = 0;
    arg_text(&a, op->in.target.id);
    arg_i64(&a, op->now_ms);
    arg_i64(&a, (int64_t)seq);
    arg_text(&a, mac);
    if (pg_do(q,
              "UPDATE dg_deletions SET state = 'cancelled', updated_ms = $2, final_audit_seq = $3,"
              " final_audit_mac = $4 WHERE id = $1",
              &a) != 0)
        return -1;
    c->moves.state[DEL_QUEUED]--;
    c->moves.state[DEL_CANCELLED]++;
    a.n = 0;
    arg_i64(&a, job_id);
    r = pg_exec(q, "SELECT count(*) FROM dg_deletions WHERE job_id = $1 AND state IS NULL", &a);
    if (r == NULL)
        return -1;
    live = pg_i64(r, 0, 0);
    PQclear(r);
    if (live == 0) {
        arg_i64(&a, op->now_ms);
        if (pg_do(q,
                  "UPDATE dg_jobs SET state = 'cancelled', updated_ms = $2, completed_ms = $2"
                  " WHERE id = $1",
                  &a) != 0)
            return -1;
        c->moves.jobs_pending--; /* no live deletion left to move with it */
    }
    op->out.count = 1;
    return 0;
}

/* A pause holds every replica: their claims get nothing while it lasts. */
static int pg_op_pause(struct queue_store *q, struct cycle *c, struct op *op)
{
    struct pg_args a = {.n = 0};

    arg_text(&a, op->in.note.paused ? "t" : "f");
    if (pg_do(q, "UPDATE dg_limiter SET paused = $1 WHERE account = 'default'", &a) != 0)
        return -1;
    return queue_op_note(q, c, op);
}

/* Retention, as queue_sqlite.c: finished jobs past it go, a bounded batch
 * at a time, with their deletions and attempts. */
static int pg_op_maintain(struct queue_store *q, struct cycle *c, struct op *op)
{
    struct pg_args a = {.n = 0};
    PGresult *r;

    op->out.count = 0;
    if (q->retention_ms <= 0)
        return 0;
    arg_now(q, &a);
    arg_i64(&a, q->retention_ms);
    arg_i64(&a, PG_PRUNE_BATCH);
    r = pg_exec(q,
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
            c->moves.state[ds] -= pg_i64(r, i, 1);
    }
    PQclear(r);
    r = pg_exec(q,
                "DELETE FROM dg_jobs WHERE id IN (SELECT id FROM dg_jobs WHERE state IN"
                " ('deleted', 'not_found', 'rejected', 'dead', 'cancelled') AND completed_ms <="
                " coalesce($1::bigint, dg_now_ms()) - $2 AND NOT EXISTS (SELECT 1 FROM"
                " dg_deletions d WHERE d.job_id = dg_jobs.id) ORDER BY completed_ms LIMIT $3"
                " FOR UPDATE SKIP LOCKED)",
                &a);
    if (r == NULL)
        return -1;
    op->out.count = pg_affected(r);
    PQclear(r);
    /* Deletions cancelled on their own while their job went on. */
    r = pg_exec(q,
                "DELETE FROM dg_deletions WHERE id IN (SELECT id FROM dg_deletions WHERE state IS"
                " NOT NULL AND updated_ms <= coalesce($1::bigint, dg_now_ms()) - $2 LIMIT $3)",
                &a);
    if (r == NULL)
        return -1;
    c->moves.state[DEL_CANCELLED] -= pg_affected(r);
    PQclear(r);
    return 0;
}

/* One page of an export, as queue_sqlite.c: keyset on (accepted_ms, seq),
 * at most QUEUE_EXPORT_SCAN rows read, filtered here. */
static int pg_op_export(struct queue_store *q, struct cycle *c, struct op *op)
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
    r = pg_exec(q,
                by_resource
                    ? "SELECT " PG_VIEW_COLS ", d.seq FROM dg_jobs j JOIN dg_deletions d ON"
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
        last_ms = pg_i64(r, i, 13);
        last_seq = pg_i64(r, i, 24);
        if (pg_view_read(r, i, &v[n]) != 0)
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

/* ---- open and close ---- */

/* Replicas that start together must not migrate at once: an advisory lock
 * held for the migration makes the others wait, then find it done. */
static int pg_migrate(struct queue_store *q, char *err, size_t errlen)
{
    PGresult *r;
    int64_t version = 0;
    int rc = -1;

    if (pg_do(q, "SELECT pg_advisory_lock(" PG_LOCK_KEY ")", NULL) != 0)
        goto fail;
    if (pg_do(q, "BEGIN", NULL) != 0 ||
        pg_do(q,
              "CREATE TABLE IF NOT EXISTS dg_meta (id int PRIMARY KEY DEFAULT 1 CHECK (id = 1),"
              " schema_version int NOT NULL)",
              NULL) != 0 ||
        pg_do(q, "INSERT INTO dg_meta (schema_version) VALUES (0) ON CONFLICT DO NOTHING", NULL) !=
            0 ||
        (r = pg_exec(q, "SELECT schema_version FROM dg_meta", NULL)) == NULL)
        goto sql_fail;
    version = pg_i64(r, 0, 0);
    PQclear(r);
    if (version > SCHEMA_VERSION || version < 0) {
        snprintf(err, errlen,
                 "queue database schema version %lld is newer than this gateway knows (%d): "
                 "run a newer gateway",
                 (long long)version, SCHEMA_VERSION);
        goto rollback;
    }
    for (int v = (int)version; v < SCHEMA_VERSION; v++) {
        if (pg_do(q, migrations[v], NULL) != 0)
            goto sql_fail;
    }
    {
        struct pg_args a = {.n = 0};
        arg_i64(&a, SCHEMA_VERSION);
        if (pg_do(q, "UPDATE dg_meta SET schema_version = $1", &a) != 0)
            goto sql_fail;
    }
    for (size_t i = 0; i < sizeof(count_names) / sizeof(count_names[0]); i++) {
        struct pg_args a = {.n = 0};
        arg_text(&a, q->replica);
        arg_text(&a, count_names[i]);
        if (pg_do(q, "INSERT INTO dg_counts (replica, name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                  &a) != 0)
            goto sql_fail;
    }
    if (pg_do(q, "COMMIT", NULL) != 0)
        goto sql_fail;
    rc = 0;
    goto unlock;
sql_fail:
    snprintf(err, errlen, "queue database: could not create or migrate the schema (logged)");
rollback:
    (void)pg_do(q, "ROLLBACK", NULL);
unlock:
    (void)pg_do(q, "SELECT pg_advisory_unlock(" PG_LOCK_KEY ")", NULL);
fail:
    return rc;
}

static void pg_store_free(struct queue_store *q)
{
    if (q == NULL)
        return;
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
    q->rate = opts->rate_per_second;
    q->max_in_flight = opts->max_in_flight;
    q->clock_ms = opts->clock_ms;
    if (pg_connect(q, err, errlen) != 0 || pg_migrate(q, err, errlen) != 0)
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
    if (pg_ensure(q) != 0)
        return -1;
    return pg_do(q, "BEGIN", NULL);
}

static int pg_commit(struct queue_store *q)
{
    /* COMMIT returns once the server has made the transaction durable
     * (synchronous_commit, as the operator set it: on by default). */
    return pg_do(q, "COMMIT", NULL);
}

static void pg_rollback(struct queue_store *q)
{
    if (q->conn != NULL && PQtransactionStatus(q->conn) != PQTRANS_IDLE)
        (void)pg_do(q, "ROLLBACK", NULL);
}

static int pg_savepoint(struct queue_store *q)
{
    return pg_do(q, "SAVEPOINT op", NULL);
}

static int pg_release_savepoint(struct queue_store *q)
{
    return pg_do(q, "RELEASE SAVEPOINT op", NULL);
}

static int pg_rollback_savepoint(struct queue_store *q)
{
    return pg_do(q, "ROLLBACK TO SAVEPOINT op", NULL);
}

/* An error inside the transaction leaves it open but failed: a savepoint
 * can still be rolled back to. A lost connection has no transaction. */
static int pg_in_transaction(struct queue_store *q)
{
    PGTransactionStatusType st = q->conn != NULL ? PQtransactionStatus(q->conn) : PQTRANS_UNKNOWN;

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
        if (pg_do(q, "SELECT pg_notify('dg_due', $1)", &a) != 0)
            return -1;
    }
    if (q->ttl_ms > 0) {
        struct pg_args a = {.n = 0};
        arg_i64(&a, util_now_ms() - q->ttl_ms);
        arg_i64(&a, 64 + 4 * c->n_submits);
        if (pg_do(q,
                  "DELETE FROM dg_submissions WHERE ctid IN (SELECT ctid FROM dg_submissions"
                  " WHERE created_ms <= $1 ORDER BY created_ms LIMIT $2)",
                  &a) != 0)
            return -1;
    }
    return pg_count_flush(q, &c->moves);
}

static int pg_meta_read(struct queue_store *q, int64_t *audit_seq, char audit_mac[65], int *paused)
{
    struct pg_args a = {.n = 0};
    PGresult *r;

    arg_text(&a, q->replica);
    r = pg_exec(q,
                "SELECT (SELECT seq FROM dg_audit_heads WHERE replica = $1), (SELECT mac FROM"
                " dg_audit_heads WHERE replica = $1), (SELECT paused FROM dg_limiter WHERE"
                " account = 'default')",
                &a);
    if (r == NULL)
        return -1;
    /* No row yet: a replica's first start adopts its log's position. */
    *audit_seq = PQgetisnull(r, 0, 0) ? -1 : pg_i64(r, 0, 0);
    snprintf(audit_mac, 65, "%s", PQgetvalue(r, 0, 1));
    *paused = PQgetvalue(r, 0, 2)[0] == 't';
    PQclear(r);
    return 0;
}

static int pg_meta_write_audit(struct queue_store *q, uint64_t seq, const char *mac)
{
    struct pg_args a = {.n = 0};

    arg_text(&a, q->replica);
    arg_i64(&a, (int64_t)seq);
    arg_text(&a, mac);
    return pg_do(q,
                 "INSERT INTO dg_audit_heads (replica, seq, mac) VALUES ($1, $2, $3) ON CONFLICT"
                 " (replica) DO UPDATE SET seq = excluded.seq, mac = excluded.mac",
                 &a);
}

/* ---- the other replicas' news (loop thread) ---- */

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
            [OP_SUBMIT] = pg_op_submit,
            [OP_CLAIM] = pg_op_claim,
            [OP_COMPLETE] = pg_op_complete,
            [OP_RELEASE] = pg_op_release,
            [OP_GET] = pg_op_get,
            [OP_STATS] = pg_op_stats,
            [OP_LIST] = pg_op_list,
            [OP_RETRY] = pg_op_retry,
            [OP_CANCEL] = pg_op_cancel,
            [OP_NOTE] = queue_op_note,
            [OP_PAUSE] = pg_op_pause,
            [OP_MAINTAIN] = pg_op_maintain,
            [OP_EXPORT] = pg_op_export,
        },
    .end_cycle = pg_end_cycle,
    .meta_read = pg_meta_read,
    .meta_write_audit = pg_meta_write_audit,
    .watch = pg_watch,
    .unwatch = pg_unwatch,
};
