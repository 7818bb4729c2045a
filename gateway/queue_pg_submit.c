/*
 * queue_pg_submit.c: submissions on PostgreSQL: the key, then a job or the
 * pending job it joins, then the deletion, one statement at a time.
 */
#include "queue_pg.h"

#include <stdlib.h>
#include <string.h>

int queue_pg_op_submit(struct queue_store *q, struct cycle *c, struct op *op)
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
    res = queue_pg_exec(
        q,
        "INSERT INTO dg_submissions (source, key, status, body, created_ms)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (source, key) DO UPDATE SET"
        " status = excluded.status, body = excluded.body, created_ms = excluded.created_ms"
        " WHERE dg_submissions.created_ms <= $6",
        &a);
    if (res == NULL)
        return -1;
    changed = queue_pg_affected(res);
    PQclear(res);
    if (changed == 0) {
        /* A key we remember: replay the first answer, change nothing. */
        a.n = 2;
        res = queue_pg_exec(
            q, "SELECT status, body FROM dg_submissions WHERE source = $1 AND key = $2", &a);
        if (res == NULL || PQntuples(res) != 1) {
            PQclear(res);
            return -1;
        }
        op->out.submit.stored_status = (int)queue_pg_i64(res, 0, 0);
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
        res = queue_pg_exec(
            q,
            "INSERT INTO dg_jobs (resource, resource_id, state, due_ms, clock_start_ms,"
            " created_ms, updated_ms) VALUES ($1, $2, 'queued', $3, $3, $4, $4)"
            " ON CONFLICT (resource, resource_id) WHERE state IN ('queued', 'in_flight')"
            " DO NOTHING RETURNING id",
            &a);
        if (res == NULL)
            return -1;
        if (PQntuples(res) == 1) {
            job_id = queue_pg_i64(res, 0, 0);
            PQclear(res);
            queue_cycle_note_due(c, due);
            c->moves.state[DEL_QUEUED]++;
            c->moves.jobs_pending++;
        } else {
            /* Coalesce: one DELETE serves both. An urgent erasure is not
             * held back by an earlier request's retention delay. */
            PQclear(res);
            a.n = 2;
            res = queue_pg_exec(q,
                                "SELECT id, state, due_ms FROM dg_jobs WHERE resource = $1 AND"
                                " resource_id = $2 AND state IN ('queued', 'in_flight') FOR UPDATE",
                                &a);
            if (res == NULL || PQntuples(res) != 1) {
                PQclear(res);
                return -1;
            }
            job_id = queue_pg_i64(res, 0, 0);
            int queued = strcmp(PQgetvalue(res, 0, 1), "queued") == 0;
            int64_t old_due = queue_pg_i64(res, 0, 2);
            PQclear(res);
            c->moves.state[queued ? DEL_QUEUED : DEL_IN_FLIGHT]++;
            if (queued && due < old_due) {
                a.n = 0;
                arg_i64(&a, job_id);
                arg_i64(&a, due);
                arg_i64(&a, op->now_ms);
                if (queue_pg_do(q, "UPDATE dg_jobs SET due_ms = $2, updated_ms = $3 WHERE id = $1",
                                &a) != 0)
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
        if (queue_pg_do(q,
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
