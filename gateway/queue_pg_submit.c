/*
 * queue_pg_submit.c: submissions on PostgreSQL, set-based per cycle.
 *
 * A cycle under load holds dozens of submissions in a row. Done one by
 * one, each took three statements and so three round trips to the server
 * (its key, its job, its deletion), and the worker spent its time waiting
 * for them, not for the commit. Here the first submission of a run of
 * consecutive ones stores the whole run in at most five statements, each
 * over arrays (unnest): the keys; the answers to replay, if some key was
 * known; the new jobs; the pending jobs joined, if any; the deletions.
 * Each submission of the run is then answered, audited and counted when
 * queue.c reaches it, in its order, as if it had run alone:
 *
 *   - a run never holds the same key twice: the second starts a new run,
 *     which finds the first one's row and replays its answer;
 *   - items of the run naming one resource share one job, made by the
 *     first, its due time lowered by the later ones as when coalescing;
 *   - a batch run isolated (a savepoint per op, queue.c) makes runs of
 *     one, so a failure stays the op's own.
 *
 * Keys and resources are sent sorted, so replicas storing the same ones
 * at once wait for each other in one order and never deadlock.
 */
#include "queue_pg.h"

#include <stdlib.h>
#include <string.h>

#define RUN_MAX_OPS 512
/* A run stops before it would exceed this, but takes one op at least. */
#define RUN_MAX_ITEMS 8192

/* One array parameter, in PostgreSQL's text form: {"a","b\"c"} or {1,2}. */
struct pg_array {
    char *p;
    size_t len, cap;
    int n, failed;
};

static void arr_put(struct pg_array *a, const char *s, size_t n)
{
    if (a->failed)
        return;
    if (a->len + n + 2 > a->cap) {
        size_t cap = a->cap > 0 ? a->cap : 256;
        while (a->len + n + 2 > cap)
            cap *= 2;
        char *p = realloc(a->p, cap);
        if (p == NULL) {
            a->failed = 1;
            return;
        }
        a->p = p;
        a->cap = cap;
    }
    memcpy(a->p + a->len, s, n);
    a->len += n;
    a->p[a->len] = '\0';
}

static void arr_sep(struct pg_array *a)
{
    arr_put(a, a->n++ == 0 ? "{" : ",", 1);
}

/* Quoted, with " and \ escaped: any text, JSON bodies included. */
static void arr_text(struct pg_array *a, const char *s)
{
    arr_sep(a);
    arr_put(a, "\"", 1);
    for (const char *run = s;; s++) {
        if (*s == '"' || *s == '\\' || *s == '\0') {
            arr_put(a, run, (size_t)(s - run));
            if (*s == '\0')
                break;
            arr_put(a, "\\", 1);
            run = s;
        }
    }
    arr_put(a, "\"", 1);
}

static void arr_i64(struct pg_array *a, int64_t x)
{
    char num[24];

    arr_sep(a);
    arr_put(a, num, (size_t)snprintf(num, sizeof(num), "%lld", (long long)x));
}

/* The finished literal, or NULL when out of memory. */
static const char *arr_end(struct pg_array *a)
{
    if (a->n == 0)
        arr_put(a, "{", 1);
    arr_put(a, "}", 1);
    return a->failed ? NULL : a->p;
}

static void arr_free(struct pg_array *v, int n)
{
    for (int i = 0; i < n; i++)
        free(v[i].p);
}

/* Ends a statement's arrays into its parameters; -1 when out of memory. */
static int arr_args(struct pg_array *v, int n, struct pg_args *a)
{
    for (int i = 0; i < n; i++) {
        const char *s = arr_end(&v[i]);
        if (s == NULL)
            return -1;
        arg_text(a, s);
    }
    return 0;
}

/* One resource of the run: the job all its items share. */
struct run_job {
    const char *account, *resource, *resource_id;
    int64_t first_due, first_now; /* of its first item: a new job's clock and creation */
    int64_t min_due, min_now;     /* its earliest due time, and the first item that asked for it */
    int64_t id;
    int is_new, queued, lowered;
};

/* One op of the run. */
struct run_op {
    struct op *op;
    int took;       /* its key was free: its items are stored */
    int replay;     /* row of the stored answer in replays, when !took */
    int first_item; /* its items in item_job[] */
};

struct pg_run {
    struct run_op ops[RUN_MAX_OPS];
    int n_ops, next;
    int *item_job; /* per item of the ops that took: its run_job */
    struct run_job *jobs;
    int n_jobs;
    PGresult *replays;
};

void queue_pg_submit_reset(struct queue_store *q)
{
    struct pg_run *r = q->run;

    if (r == NULL)
        return;
    free(r->item_job);
    free(r->jobs);
    PQclear(r->replays);
    free(r);
    q->run = NULL;
}

static int pair_cmp(const char *a1, const char *a2, const char *b1, const char *b2)
{
    int c = strcmp(a1, b1);

    return c != 0 ? c : strcmp(a2, b2);
}

static int op_key_cmp(const void *x, const void *y)
{
    const struct submit_in *a = &(*(struct run_op *const *)x)->op->in.submit;
    const struct submit_in *b = &(*(struct run_op *const *)y)->op->in.submit;

    return pair_cmp(a->source, a->key, b->source, b->key);
}

/* A job is one resource in one account: coalescing is per account. */
static int triple_cmp(const char *a0, const char *a1, const char *a2, const char *b0,
                      const char *b1, const char *b2)
{
    int c = strcmp(a0, b0);

    return c != 0 ? c : pair_cmp(a1, a2, b1, b2);
}

static int job_cmp(const void *x, const void *y)
{
    const struct run_job *a = x, *b = y;

    return triple_cmp(a->account, a->resource, a->resource_id, b->account, b->resource,
                      b->resource_id);
}

/* r->jobs is sorted (run_group_jobs). */
static struct run_job *job_find(struct pg_run *r, const char *acct, const char *res,
                                const char *rid)
{
    struct run_job key = {.account = acct, .resource = res, .resource_id = rid};

    return bsearch(&key, r->jobs, (size_t)r->n_jobs, sizeof(*r->jobs), job_cmp);
}

static int64_t item_due(const struct op *op, const struct queue_item *it)
{
    return it->not_before_ms > op->now_ms ? it->not_before_ms : op->now_ms;
}

/* The run that starts at op: the submissions after it up to the first op
 * of another kind, a key it already holds, or its bounds. */
static int run_collect(struct queue_store *q, struct pg_run *r, struct op *first, int *n_items)
{
    *n_items = 0;
    for (struct op *op = first; op != NULL && r->n_ops < RUN_MAX_OPS; op = op->next) {
        if (op->failed)
            continue; /* queue.c skips it */
        if (op->kind != OP_SUBMIT)
            break;
        if (r->n_ops > 0 && (q->isolated || *n_items + op->in.submit.n_items > RUN_MAX_ITEMS))
            break;
        const struct submit_in *in = &op->in.submit;
        int dup = 0;
        for (int i = 0; i < r->n_ops && !dup; i++) {
            const struct submit_in *o = &r->ops[i].op->in.submit;
            dup = strcmp(o->key, in->key) == 0 && strcmp(o->source, in->source) == 0;
        }
        if (dup)
            break;
        r->ops[r->n_ops++].op = op;
        *n_items += in->n_items;
    }
    return 0;
}

/* The keys, sorted: those that come back are taken by the run. */
static int run_store_keys(struct queue_store *q, struct pg_run *r)
{
    struct run_op *sorted[RUN_MAX_OPS] = {NULL};
    struct pg_array v[6] = {{0}};
    struct pg_args a = {.n = 0};
    PGresult *res = NULL;
    int rc = -1, n_left = 0;

    for (int i = 0; i < r->n_ops; i++)
        sorted[i] = &r->ops[i];
    /* An array of pointers, sorted as pointers. */
    // NOLINTNEXTLINE(bugprone-sizeof-expression)
    qsort(sorted, (size_t)r->n_ops, sizeof(sorted[0]), op_key_cmp);
    for (int i = 0; i < r->n_ops; i++) {
        const struct submit_in *in = &sorted[i]->op->in.submit;
        arr_text(&v[0], in->source);
        arr_text(&v[1], in->key);
        arr_i64(&v[2], in->status);
        arr_text(&v[3], in->body);
        arr_i64(&v[4], sorted[i]->op->now_ms);
        arr_text(&v[5], in->account);
    }
    if (arr_args(v, 6, &a) != 0)
        goto fail;
    arg_i64(&a, q->ttl_ms);
    /* A key older than the TTL is taken over by the new submission. Two
     * replicas taking the same key: the second waits for the first's
     * commit, then finds the key. */
    res = queue_pg_exec(q,
                        "INSERT INTO dg_submissions (source, key, status, body, created_ms,"
                        " account) SELECT * FROM unnest($1::text[], $2::text[], $3::int[],"
                        " $4::text[], $5::bigint[], $6::text[]) ON CONFLICT (source, key) DO"
                        " UPDATE SET status = excluded.status, body = excluded.body,"
                        " created_ms = excluded.created_ms, account = excluded.account"
                        " WHERE $7::bigint > 0 AND"
                        " dg_submissions.created_ms <= excluded.created_ms - $7"
                        " RETURNING source, key",
                        &a);
    if (res == NULL)
        goto fail;
    /* Rows come back in the order sent, as a rule: look there first. */
    for (int row = 0, at = 0; row < PQntuples(res); row++) {
        const char *src = PQgetvalue(res, row, 0), *key = PQgetvalue(res, row, 1);
        int i = at;
        while (i < r->n_ops && pair_cmp(sorted[i]->op->in.submit.source,
                                        sorted[i]->op->in.submit.key, src, key) != 0)
            i++;
        if (i == r->n_ops) {
            for (i = 0; i < at && pair_cmp(sorted[i]->op->in.submit.source,
                                           sorted[i]->op->in.submit.key, src, key) != 0;
                 i++)
                ;
            if (i == at)
                goto fail; /* a key the run did not send */
        } else {
            at = i + 1;
        }
        sorted[i]->took = 1;
    }
    for (int i = 0; i < r->n_ops; i++)
        n_left += !r->ops[i].took;
    if (n_left == 0) {
        rc = 0;
        goto fail;
    }

    /* Known keys: replay their first answer, change nothing. */
    PQclear(res);
    res = NULL;
    arr_free(v, 6);
    memset(v, 0, sizeof(v));
    a.n = 0;
    for (int i = 0; i < r->n_ops; i++) {
        if (!r->ops[i].took) {
            arr_text(&v[0], r->ops[i].op->in.submit.source);
            arr_text(&v[1], r->ops[i].op->in.submit.key);
        }
    }
    if (arr_args(v, 2, &a) != 0)
        goto fail;
    r->replays = queue_pg_exec(q,
                               "SELECT source, key, status, body FROM dg_submissions WHERE"
                               " (source, key) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
                               &a);
    if (r->replays == NULL)
        goto fail;
    for (int i = 0; i < r->n_ops; i++) {
        const struct submit_in *in = &r->ops[i].op->in.submit;
        int row = 0;
        if (r->ops[i].took)
            continue;
        while (row < PQntuples(r->replays) &&
               pair_cmp(PQgetvalue(r->replays, row, 0), PQgetvalue(r->replays, row, 1), in->source,
                        in->key) != 0)
            row++;
        if (row == PQntuples(r->replays))
            goto fail;
        r->ops[i].replay = row;
    }
    rc = 0;
fail:
    PQclear(res);
    arr_free(v, 6);
    return rc;
}

/* An item of an op that took, for grouping by resource. */
struct run_item {
    const char *account, *resource, *resource_id;
    int seq; /* its place in the run: the first of a resource makes its job */
    int op;
    int k;
};

static int item_cmp(const void *x, const void *y)
{
    const struct run_item *a = x, *b = y;
    int c = triple_cmp(a->account, a->resource, a->resource_id, b->account, b->resource,
                       b->resource_id);

    return c != 0 ? c : (a->seq > b->seq) - (a->seq < b->seq);
}

/* One job per resource named by the items of the ops that took, sorted:
 * the first item's due time starts its clock; the earliest one is its
 * due, asked for first by the item whose time is its updated_ms. */
static int run_group_jobs(struct pg_run *r, int n_items)
{
    size_t size = (size_t)(n_items > 0 ? n_items : 1);
    struct run_item *items = malloc(size * sizeof(*items));
    int n = 0;

    r->n_jobs = 0;
    r->item_job = malloc(size * sizeof(*r->item_job));
    r->jobs = malloc(size * sizeof(*r->jobs));
    if (items == NULL || r->item_job == NULL || r->jobs == NULL) {
        free(items);
        return -1;
    }
    for (int i = 0; i < r->n_ops; i++) {
        const struct submit_in *in = &r->ops[i].op->in.submit;
        for (int k = 0; r->ops[i].took && k < in->n_items; k++, n++)
            items[n] = (struct run_item){.account = in->items[k].account,
                                         .resource = resource_name(in->items[k].resource),
                                         .resource_id = in->items[k].resource_id,
                                         .seq = n,
                                         .op = i,
                                         .k = k};
    }
    qsort(items, (size_t)n, sizeof(*items), item_cmp);
    for (int x = 0; x < n; x++) {
        const struct op *op = r->ops[items[x].op].op;
        int64_t due = item_due(op, &op->in.submit.items[items[x].k]);
        struct run_job *j = &r->jobs[r->n_jobs - 1];

        if (x == 0 || triple_cmp(j->account, j->resource, j->resource_id, items[x].account,
                                 items[x].resource, items[x].resource_id) != 0) {
            j = &r->jobs[r->n_jobs++];
            *j = (struct run_job){.account = items[x].account,
                                  .resource = items[x].resource,
                                  .resource_id = items[x].resource_id,
                                  .first_due = due,
                                  .first_now = op->now_ms,
                                  .min_due = due,
                                  .min_now = op->now_ms};
        } else if (due < j->min_due) {
            j->min_due = due;
            j->min_now = op->now_ms;
        }
        r->item_job[r->ops[items[x].op].first_item + items[x].k] = r->n_jobs - 1;
    }
    free(items);
    return 0;
}

/* New jobs for the resources without a pending one; the others join the
 * pending job (one DELETE serves both), whose due time an urgent erasure
 * brings forward: it is not held back by an earlier retention delay. */
static int run_store_jobs(struct queue_store *q, struct pg_run *r)
{
    struct pg_array v[7] = {{0}};
    struct pg_args a = {.n = 0};
    PGresult *res = NULL;
    int rc = -1, n_old = 0, n_lowered = 0;

    for (int j = 0; j < r->n_jobs; j++) {
        arr_text(&v[0], r->jobs[j].resource);
        arr_text(&v[1], r->jobs[j].resource_id);
        arr_i64(&v[2], r->jobs[j].min_due);
        arr_i64(&v[3], r->jobs[j].first_due);
        arr_i64(&v[4], r->jobs[j].first_now);
        arr_i64(&v[5], r->jobs[j].min_now);
        arr_text(&v[6], r->jobs[j].account);
    }
    if (arr_args(v, 7, &a) != 0)
        goto fail;
    res = queue_pg_exec(
        q,
        "INSERT INTO dg_jobs (resource, resource_id, state, due_ms, clock_start_ms,"
        " created_ms, updated_ms, account) SELECT r, i, 'queued', d, s, c, u, acct FROM"
        " unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[],"
        " $5::bigint[], $6::bigint[], $7::text[]) AS t(r, i, d, s, c, u, acct)"
        " ON CONFLICT (account, resource, resource_id) WHERE state IN ('queued', 'in_flight')"
        " DO NOTHING RETURNING id, account, resource, resource_id",
        &a);
    if (res == NULL)
        goto fail;
    for (int row = 0; row < PQntuples(res); row++) {
        struct run_job *j =
            job_find(r, PQgetvalue(res, row, 1), PQgetvalue(res, row, 2), PQgetvalue(res, row, 3));
        if (j == NULL)
            goto fail;
        j->id = queue_pg_i64(res, row, 0);
        j->is_new = j->queued = 1;
    }
    for (int j = 0; j < r->n_jobs; j++)
        n_old += !r->jobs[j].is_new;
    if (n_old == 0) {
        rc = 0;
        goto fail;
    }

    PQclear(res);
    arr_free(v, 7);
    memset(v, 0, sizeof(v));
    a.n = 0;
    for (int j = 0; j < r->n_jobs; j++) {
        if (!r->jobs[j].is_new) {
            arr_text(&v[0], r->jobs[j].resource);
            arr_text(&v[1], r->jobs[j].resource_id);
            arr_text(&v[2], r->jobs[j].account);
        }
    }
    if (arr_args(v, 3, &a) != 0)
        goto fail;
    res = queue_pg_exec(q,
                        "SELECT id, account, resource, resource_id, state, due_ms FROM dg_jobs"
                        " WHERE (resource, resource_id, account) IN (SELECT * FROM"
                        " unnest($1::text[], $2::text[], $3::text[]))"
                        " AND state IN ('queued', 'in_flight') ORDER BY id FOR UPDATE",
                        &a);
    if (res == NULL || PQntuples(res) != n_old)
        goto fail; /* one went on meanwhile: the batch runs again, isolated */
    arr_free(v, 7);
    memset(v, 0, sizeof(v));
    a.n = 0;
    for (int row = 0; row < PQntuples(res); row++) {
        struct run_job *j =
            job_find(r, PQgetvalue(res, row, 1), PQgetvalue(res, row, 2), PQgetvalue(res, row, 3));
        if (j == NULL || j->is_new || j->id != 0)
            goto fail;
        j->id = queue_pg_i64(res, row, 0);
        j->queued = strcmp(PQgetvalue(res, row, 4), "queued") == 0;
        j->lowered = j->queued && j->min_due < queue_pg_i64(res, row, 5);
        if (j->lowered) {
            arr_i64(&v[0], j->id);
            arr_i64(&v[1], j->min_due);
            arr_i64(&v[2], j->min_now);
            n_lowered++;
        }
    }
    if (n_lowered > 0 &&
        (arr_args(v, 3, &a) != 0 ||
         queue_pg_do(q,
                     "UPDATE dg_jobs j SET due_ms = t.d, updated_ms = t.u FROM unnest($1::bigint[],"
                     " $2::bigint[], $3::bigint[]) AS t(id, d, u) WHERE j.id = t.id",
                     &a) != 0))
        goto fail;
    rc = 0;
fail:
    PQclear(res);
    arr_free(v, 7);
    return rc;
}

static int run_store_deletions(struct queue_store *q, struct pg_run *r)
{
    struct pg_array v[8] = {{0}};
    struct pg_args a = {.n = 0};
    int rc = -1, n = 0;

    for (int i = 0; i < r->n_ops; i++) {
        const struct op *op = r->ops[i].op;
        const struct submit_in *in = &op->in.submit;
        if (!r->ops[i].took)
            continue;
        for (int k = 0; k < in->n_items; k++) {
            const struct queue_item *it = &in->items[k];
            arr_text(&v[0], it->deletion_id);
            arr_i64(&v[1], r->jobs[r->item_job[r->ops[i].first_item + k]].id);
            arr_text(&v[2], in->source);
            arr_text(&v[3], in->key);
            arr_text(&v[4], in->request_id);
            arr_text(&v[5], it->reason);
            arr_i64(&v[6], it->not_before_ms);
            arr_i64(&v[7], op->now_ms);
            n++;
        }
    }
    if (n == 0)
        rc = 0;
    else if (arr_args(v, 8, &a) == 0)
        rc = queue_pg_do(q,
                         "INSERT INTO dg_deletions (id, job_id, source, key, request_id, reason,"
                         " not_before_ms, accepted_ms) SELECT * FROM unnest($1::text[],"
                         " $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[],"
                         " $7::bigint[], $8::bigint[])",
                         &a);
    arr_free(v, 8);
    return rc;
}

static int run_start(struct queue_store *q, struct op *op)
{
    struct pg_run *r;
    int n_items;

    queue_pg_submit_reset(q);
    if ((r = calloc(1, sizeof(*r))) == NULL)
        return -1;
    q->run = r;
    if (run_collect(q, r, op, &n_items) != 0 || run_store_keys(q, r) != 0)
        return -1;
    n_items = 0;
    for (int i = 0; i < r->n_ops; i++) {
        r->ops[i].first_item = n_items;
        n_items += r->ops[i].took ? r->ops[i].op->in.submit.n_items : 0;
    }
    if (run_group_jobs(r, n_items) != 0 || (r->n_jobs > 0 && run_store_jobs(q, r) != 0) ||
        run_store_deletions(q, r) != 0)
        return -1;
    return 0;
}

/* The answer of one op of the run, with its audit records and counts. */
static int run_answer(struct queue_store *q, struct cycle *c, struct run_op *ro)
{
    struct op *op = ro->op;
    const struct submit_in *in = &op->in.submit;
    struct audit_record rec = {.time_ms = op->now_ms,
                               .account = in->account,
                               .source = in->source,
                               .key = in->key,
                               .request_id = in->request_id};
    struct pg_run *r = q->run;

    c->n_submits++;
    if (!ro->took) {
        op->out.submit.stored_status = (int)queue_pg_i64(r->replays, ro->replay, 2);
        op->out.submit.stored_body = strdup(PQgetvalue(r->replays, ro->replay, 3));
        if (op->out.submit.stored_body == NULL)
            return -1;
        op->out.submit.status = QUEUE_SUBMIT_DUPLICATE;
        rec.event = "duplicate";
        return queue_cycle_audit(c, &rec, NULL, NULL);
    }
    if (in->n_items == 0) {
        rec.event = "ignored";
        if (queue_cycle_audit(c, &rec, NULL, NULL) != 0)
            return -1;
    }
    for (int k = 0; k < in->n_items; k++) {
        const struct queue_item *it = &in->items[k];
        struct run_job *j = &r->jobs[r->item_job[ro->first_item + k]];

        c->moves.state[j->queued ? DEL_QUEUED : DEL_IN_FLIGHT]++;
        if (j->is_new || j->lowered) {
            /* counted and noted once, by the job's first item */
            if (j->is_new)
                c->moves.jobs_pending++;
            queue_cycle_note_due(c, j->min_due);
            j->is_new = j->lowered = 0;
        }
        rec.event = "accepted";
        rec.deletion_id = it->deletion_id;
        rec.job_id = j->id;
        rec.resource = resource_name(it->resource);
        rec.resource_id = it->resource_id;
        rec.account = it->account;
        if (queue_cycle_audit(c, &rec, NULL, NULL) != 0)
            return -1;
    }
    op->out.submit.status = QUEUE_SUBMIT_OK;
    return 0;
}

int queue_pg_op_submit(struct queue_store *q, struct cycle *c, struct op *op)
{
    struct pg_run *r = q->run;

    if (r == NULL || r->next >= r->n_ops || r->ops[r->next].op != op) {
        if (run_start(q, op) != 0)
            return -1;
        r = q->run;
    }
    return run_answer(q, c, &r->ops[r->next++]);
}
