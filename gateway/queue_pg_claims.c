/*
 * queue_pg_claims.c: claims (FOR UPDATE SKIP LOCKED, a lease token per
 * claim, the lease end by the database clock) and the completions and
 * releases fenced by that token.
 */
#include "queue_pg.h"
#include "log.h"

#include <stdlib.h>
#include <string.h>

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
#define PG_CLAIM(where)                                                                            \
    "WITH picked AS MATERIALIZED (SELECT id FROM dg_jobs WHERE state = $1 AND"                     \
    " due_ms <= $2" where " ORDER BY due_ms LIMIT $3 FOR UPDATE SKIP LOCKED)"                      \
    " UPDATE dg_jobs j SET state = 'in_flight', due_ms = $4, lease_until_ms = $4,"                 \
    " updated_ms = $2, lease = j.lease + 1 FROM picked WHERE j.id = picked.id"                     \
    " RETURNING j.id, j.resource, j.resource_id, j.attempts, j.clock_start_ms, j.lease,"           \
    " j.account"
    /* One account's claims read its own index (account, due_ms); a claim of
     * any account the plain one. */
    if (op->in.claim.account[0] != '\0')
        arg_text(&a, op->in.claim.account);
    r = queue_pg_exec(
        q, op->in.claim.account[0] != '\0' ? PG_CLAIM(" AND account = $5") : PG_CLAIM(""), &a);
#undef PG_CLAIM
    if (r == NULL)
        return -1;
    got = PQntuples(r);
    for (int i = 0; i < got; i++) {
        struct queue_job *job = &op->out.claim.jobs[op->out.claim.n];

        job->job_id = queue_pg_i64(r, i, 0);
        if (resource_from_name(PQgetvalue(r, i, 1), &job->resource) != 0)
            continue; /* not written by this code: it stays leased for an operator */
        queue_pg_copy(job->resource_id, sizeof(job->resource_id), r, i, 2);
        job->attempts = (int)queue_pg_i64(r, i, 3);
        job->clock_start_ms = queue_pg_i64(r, i, 4);
        job->lease = queue_pg_i64(r, i, 5);
        queue_pg_copy(job->account, sizeof(job->account), r, i, 6);
        if (queue_pg_count_job_move(q, c, job->job_id, from, DEL_IN_FLIGHT) != 0) {
            PQclear(r);
            return -1;
        }
        op->out.claim.n++;
    }
    PQclear(r);
    return got;
}

/* When the next job of an account ($1), or of any, falls due. ORDER BY
 * ... LIMIT 1, not min(): while a table fills faster than autovacuum
 * analyses it, the planner believes it holds a row or two and aggregates
 * over the whole partial index instead of reading its first entry (10 ms
 * at 40,000 queued, on every claim). */
const char queue_pg_next_due_sql[] =
    "SELECT least((SELECT due_ms FROM dg_jobs WHERE account = $1 AND state = 'queued'"
    " ORDER BY due_ms LIMIT 1), (SELECT due_ms FROM dg_jobs WHERE account = $1"
    " AND state = 'in_flight' ORDER BY due_ms LIMIT 1))";
const char queue_pg_next_due_any_sql[] =
    "SELECT least((SELECT due_ms FROM dg_jobs WHERE state = 'queued' ORDER BY due_ms LIMIT 1),"
    " (SELECT due_ms FROM dg_jobs WHERE state = 'in_flight' ORDER BY due_ms LIMIT 1))";

int queue_pg_op_claim(struct queue_store *q, struct cycle *c, struct op *op)
{
    int max = op->in.claim.max_jobs, allow = 0, rescued;
    const struct pg_account *acct = queue_pg_account(q, op->in.claim.account);
    struct pg_args a = {.n = 0};
    int64_t wake;
    struct pg_limit lim;
    PGresult *r;

    op->out.claim.jobs = malloc((size_t)(max > 0 ? max : 1) * sizeof(struct queue_job));
    if (op->out.claim.jobs == NULL || queue_pg_limit_read(q, acct, &lim, max, &allow, &wake) != 0)
        return -1;
    op->out.claim.n = 0;
    /* Expired leases first: their jobs have waited longest. */
    rescued = allow > 0 ? pg_claim_some(q, c, op, DEL_IN_FLIGHT, lim.now, allow) : 0;
    if (rescued < 0 ||
        (allow > rescued && pg_claim_some(q, c, op, DEL_QUEUED, lim.now, allow - rescued) < 0) ||
        queue_pg_limit_write(q, acct, &lim, op->out.claim.n) != 0)
        return -1;
    for (int i = 0; i < op->out.claim.n; i++)
        op->out.claim.jobs[i].send_at_ms = lim.at > lim.now ? lim.at : 0;
    op->out.claim.paused = lim.paused;
    if (op->in.claim.account[0] != '\0') {
        arg_text(&a, op->in.claim.account);
        r = queue_pg_exec(q, queue_pg_next_due_sql, &a);
    } else {
        r = queue_pg_exec(q, queue_pg_next_due_any_sql, NULL);
    }
    if (r == NULL)
        return -1;
    op->out.claim.next_due_ms = PQgetisnull(r, 0, 0) ? INT64_MAX : queue_pg_i64(r, 0, 0);
    PQclear(r);
    /* Jobs are due but the limiter said no: ask again when it may say yes. */
    if (op->out.claim.n == 0 && op->out.claim.next_due_ms <= lim.now)
        op->out.claim.next_due_ms = wake;
    return 0;
}

/* Whether job_id is still in flight under this lease (*owned), locked,
 * with its resource; a late one is dropped and counted (queue.h). */
static int pg_job_leased(struct queue_store *q, struct cycle *c, int64_t job_id, int64_t lease,
                         char *res, size_t res_size, char *rid, size_t rid_size,
                         char account[QUEUE_ACCOUNT_MAX + 1], int *owned)
{
    struct pg_args a = {.n = 0};
    PGresult *r;

    *owned = 0;
    arg_i64(&a, job_id);
    r = queue_pg_exec(
        q,
        "SELECT state, resource, resource_id, lease, account FROM dg_jobs WHERE id = $1 FOR UPDATE",
        &a);
    if (r == NULL || PQntuples(r) != 1) {
        PQclear(r);
        log_warn(NULL, "queue: completion for unknown job %lld", (long long)job_id);
        return -1;
    }
    *owned = strcmp(PQgetvalue(r, 0, 0), "in_flight") == 0 && queue_pg_i64(r, 0, 3) == lease;
    queue_pg_copy(res, res_size, r, 0, 1);
    queue_pg_copy(rid, rid_size, r, 0, 2);
    queue_pg_copy(account, QUEUE_ACCOUNT_MAX + 1, r, 0, 4);
    PQclear(r);
    if (!*owned)
        c->stale++;
    return 0;
}

int queue_pg_op_complete(struct queue_store *q, struct cycle *c, struct op *op)
{
    const struct queue_outcome *o = &op->in.complete;
    char res[32] = "", rid[RESOURCE_ID_MAX + 1] = "", mac[65] = "",
         account[QUEUE_ACCOUNT_MAX + 1] = "";
    int owned, attempted = o->started_ms != 0;
    int64_t due = o->retry_at_ms > 0 ? o->retry_at_ms : op->now_ms;
    uint64_t seq = 0;
    struct pg_args a = {.n = 0};
    struct audit_record r = queue_outcome_record(op, res, rid, account);

    if (pg_job_leased(q, c, o->job_id, o->lease, res, sizeof(res), rid, sizeof(rid), account,
                      &owned) != 0)
        return -1;
    op->out.ok = 1;
    if (queue_pg_limiter_learn(q, account, o, op->now_ms) != 0)
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
        if (queue_pg_do(
                q,
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
    if (queue_pg_do(q,
                    "UPDATE dg_jobs SET state = $2, due_ms = $3, lease_until_ms = 0,"
                    " attempts = attempts + $4, updated_ms = $5, completed_ms = $6,"
                    " last_http_status = CASE WHEN $7::boolean THEN $8 ELSE last_http_status END,"
                    " last_upstream_request_id = CASE WHEN $7::boolean THEN $9"
                    " ELSE last_upstream_request_id END,"
                    " last_error = CASE WHEN $7::boolean THEN $10 ELSE last_error END,"
                    " final_audit_seq = $11, final_audit_mac = $12 WHERE id = $1",
                    &a) != 0 ||
        queue_pg_count_job_move(q, c, o->job_id, DEL_IN_FLIGHT, o->state) != 0)
        return -1;
    if (o->state == DEL_QUEUED)
        queue_cycle_note_due(c, due);
    return 0;
}

int queue_pg_op_release(struct queue_store *q, struct cycle *c, struct op *op)
{
    int64_t due = op->in.release.due_ms > op->now_ms ? op->in.release.due_ms : op->now_ms;
    char res[32], rid[RESOURCE_ID_MAX + 1], account[QUEUE_ACCOUNT_MAX + 1];
    struct pg_args a = {.n = 0};
    int owned;

    if (pg_job_leased(q, c, op->in.release.job_id, op->in.release.lease, res, sizeof(res), rid,
                      sizeof(rid), account, &owned) != 0)
        return -1;
    op->out.ok = 1;
    if (!owned)
        return 0;
    arg_i64(&a, op->in.release.job_id);
    arg_i64(&a, due);
    arg_i64(&a, op->now_ms);
    if (queue_pg_do(q,
                    "UPDATE dg_jobs SET state = 'queued', due_ms = $2, lease_until_ms = 0,"
                    " updated_ms = $3 WHERE id = $1",
                    &a) != 0 ||
        queue_pg_count_job_move(q, c, op->in.release.job_id, DEL_IN_FLIGHT, DEL_QUEUED) != 0)
        return -1;
    queue_cycle_note_due(c, due);
    return 0;
}
