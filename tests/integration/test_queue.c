/*
 * test_queue.c: the queue's contract on a real event loop, for the
 * backend named by DG_QUEUE_BACKEND (default sqlite): submit and
 * idempotency, coalescing, due times and leases, fenced completions and
 * releases, operator calls, stats, the cross-check with the audit log.
 * The SQLite backend's own promises (reopening, ownership of the file,
 * kill safety, a bounded WAL, migrations) are tested here too, only for
 * it.
 *
 * Every call goes through a wrapper that checks the callback did not run
 * inside the call, then runs the loop until it does.
 */
#include "audit.h"
#include "check.h"
#include "queue.h"
#include "queue_pg.h"
#include "util.h"

#include <dirent.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static struct event_base *base;
static char dir[64];
static const char *backend; /* NULL: sqlite */
static int sqlite_backend;  /* the SQLite-only checks run */
static const char *pg_base; /* postgres: DG_QUEUE_URL, a conninfo string */

/* The queue's clock: a claim is made "at" the time a test names. */
static int64_t fake_now;

static int64_t test_clock(void)
{
    return fake_now != 0 ? fake_now : util_now_ms();
}

/* The lease token of each job's last claim, so completions name it. */
#define MAX_JOBS 4096

#define SCHEMA_NOW 11 /* the queue's schema version */
static int64_t leases[MAX_JOBS];

/* ---- loop helpers ---- */

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
}

/* Runs the loop until *flag is set (or the deadline passes, which fails
 * the caller's CHECK on the flag). The tick keeps EVLOOP_ONCE from
 * blocking forever. PostgreSQL takes a round trip per statement: a
 * 10,000-item batch takes seconds there. */
static void run_until(const int *flag)
{
    int64_t deadline = util_mono_ms() + (sqlite_backend ? 5000 : 120000);

    while (!*flag && util_mono_ms() < deadline)
        event_base_loop(base, EVLOOP_ONCE);
}

/* A store per test: a file in dir, or, for PostgreSQL, a schema of its
 * own, made empty the first time a test names it. */
static void db_path(const char *name, char *out, size_t outlen)
{
    static char made[64][40];
    static int n_made;
    char schema[40];
    int i;

    if (sqlite_backend) {
        snprintf(out, outlen, "%s/%s", dir, name);
        return;
    }
    snprintf(schema, sizeof(schema), "t_%.*s", (int)strcspn(name, "."), name);
    snprintf(out, outlen, "%s options='-csearch_path=%s'", pg_base, schema);
    for (i = 0; i < n_made && strcmp(made[i], schema) != 0; i++)
        ;
    if (i < n_made || n_made == 64)
        return;
    snprintf(made[n_made++], sizeof(made[0]), "%s", schema);
    PGconn *c = PQconnectdb(pg_base);
    char sql[128];
    snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS %s CASCADE; CREATE SCHEMA %s", schema,
             schema);
    PGresult *r = PQexec(c, sql);
    CHECK(PQresultStatus(r) == PGRES_COMMAND_OK);
    PQclear(r);
    PQfinish(c);
}

/* The store named name, opened with o (its backend, path and clock set
 * here). */
static struct queue *open_with(const char *name, struct queue_options *o)
{
    char path[512], err[256] = "";
    struct queue *q = NULL;

    db_path(name, path, sizeof(path));
    o->backend = backend;
    o->path = path;
    o->clock_ms = test_clock;
    if (queue_open(&q, base, o, err, sizeof(err)) != 0)
        fprintf(stderr, "queue_open %s: %s\n", path, err);
    CHECK(q != NULL);
    return q;
}

static struct queue *open_q_kept(const char *name, int64_t ttl_ms, int64_t retention_ms)
{
    struct queue_options o = {.idempotency_ttl_ms = ttl_ms, .retention_ms = retention_ms};

    return open_with(name, &o);
}

static struct queue *open_q(const char *name, int64_t ttl_ms)
{
    return open_q_kept(name, ttl_ms, 0);
}

/* ---- synchronous wrappers ---- */

struct sub_res {
    int done;
    enum queue_submit_status status;
    int stored_status;
    char body[128];
};

static void on_submit(const struct queue_submit_result *r, void *arg)
{
    struct sub_res *s = arg;

    s->done = 1;
    s->status = r->status;
    s->stored_status = r->stored_status;
    snprintf(s->body, sizeof(s->body), "%s", r->stored_body != NULL ? r->stored_body : "");
}

static void make_item(struct queue_item *it, const char *del_id, const char *rid,
                      int64_t not_before)
{
    memset(it, 0, sizeof(*it));
    snprintf(it->deletion_id, sizeof(it->deletion_id), "%s", del_id);
    it->resource = RES_EXTRACT_RUN;
    /* rid is NULL only with del_id NULL, and submit1 makes no item then. */
    // cppcheck-suppress ctunullpointer
    snprintf(it->resource_id, sizeof(it->resource_id), "%s", rid);
    snprintf(it->reason, sizeof(it->reason), "test");
    it->not_before_ms = not_before;
}

/* del_id NULL submits no item (an ignored event). */
static enum queue_submit_status submit1(struct queue *q, const char *source, const char *key,
                                        const char *del_id, const char *rid, int64_t not_before,
                                        int64_t now, const char *body, struct sub_res *res)
{
    struct queue_item it;
    struct queue_submission sub = {.source = source,
                                   .key = key,
                                   .request_id = "req_test",
                                   .now_ms = now,
                                   .items = &it,
                                   .n_items = del_id ? 1 : 0,
                                   .response_status = 202,
                                   .response_body = body};

    if (del_id != NULL)
        make_item(&it, del_id, rid, not_before);
    memset(res, 0, sizeof(*res));
    res->status = -1;
    CHECK(queue_submit(q, &sub, on_submit, res) == 0);
    CHECK(res->done == 0); /* never inside the call */
    run_until(&res->done);
    CHECK(res->done == 1);
    return res->status;
}

struct claim_res {
    int done, n;
    int64_t next_due;
    struct queue_job jobs[8];
};

static void on_claim(const struct queue_job *jobs, int n, int64_t next_due, int failed, void *arg)
{
    struct claim_res *c = arg;

    c->done = 1;
    c->n = failed ? -1 : n;
    c->next_due = next_due;
    for (int i = 0; i < n; i++) {
        if (i < 8)
            c->jobs[i] = jobs[i];
        if (jobs[i].job_id >= 0 && jobs[i].job_id < MAX_JOBS)
            leases[jobs[i].job_id] = jobs[i].lease;
    }
}

static int claim(struct queue *q, int64_t now, int max, int64_t lease, struct claim_res *c)
{
    memset(c, 0, sizeof(*c));
    fake_now = now;
    CHECK(queue_claim(q, max, lease, on_claim, c) == 0);
    CHECK(c->done == 0);
    run_until(&c->done);
    CHECK(c->done == 1);
    fake_now = 0;
    return c->n;
}

struct done_res {
    int done, ok;
};

static void on_done(int failed, void *arg)
{
    struct done_res *d = arg;

    d->done = 1;
    d->ok = !failed;
}

static int complete(struct queue *q, int64_t job_id, enum deletion_state state, int64_t retry_at,
                    int counts, int http_status, const char *error_code)
{
    struct queue_outcome o = {.job_id = job_id,
                              .lease = job_id >= 0 && job_id < MAX_JOBS ? leases[job_id] : 0,
                              .state = state,
                              .retry_at_ms = retry_at,
                              .counts_as_attempt = counts,
                              .http_status = http_status};
    struct done_res d = {0};

    snprintf(o.upstream_request_id, sizeof(o.upstream_request_id), "xreq_%d", http_status);
    snprintf(o.error_code, sizeof(o.error_code), "%s", error_code);
    o.started_ms = util_now_ms();
    o.finished_ms = o.started_ms + 5;
    CHECK(queue_complete(q, &o, on_done, &d) == 0);
    CHECK(d.done == 0);
    run_until(&d.done);
    CHECK(d.done == 1);
    return d.ok;
}

struct get_res {
    int done, failed, found;
    struct queue_deletion_view v;
};

static void on_get(const struct queue_deletion_view *v, int failed, void *arg)
{
    struct get_res *g = arg;

    g->done = 1;
    g->failed = failed;
    g->found = v != NULL;
    if (v != NULL)
        g->v = *v;
}

/* Returns 1 when found, with *g filled. */
static int get(struct queue *q, const char *id, struct get_res *g)
{
    memset(g, 0, sizeof(*g));
    CHECK(queue_get(q, id, on_get, g) == 0);
    CHECK(g->done == 0);
    run_until(&g->done);
    CHECK(g->done == 1 && g->failed == 0);
    return g->found;
}

struct count_res {
    int done;
    int64_t count;
};

static void on_count(int64_t count, int failed, void *arg)
{
    struct count_res *c = arg;

    if (failed)
        count = -1;
    c->done = 1;
    c->count = count;
}

static int64_t retry(struct queue *q, const char *id, int64_t now)
{
    struct count_res c = {0};

    CHECK(queue_retry(q, id, "alice", now, on_count, &c) == 0);
    CHECK(c.done == 0);
    run_until(&c.done);
    CHECK(c.done == 1);
    return c.count;
}

static int64_t cancel(struct queue *q, const char *id, int64_t now)
{
    struct count_res c = {0};

    CHECK(queue_cancel(q, id, "alice", now, on_count, &c) == 0);
    CHECK(c.done == 0);
    run_until(&c.done);
    CHECK(c.done == 1);
    return c.count;
}

struct stats_res {
    int done, failed;
    struct queue_stats s;
};

static void on_stats(const struct queue_stats *s, int failed, void *arg)
{
    struct stats_res *r = arg;

    r->done = 1;
    r->failed = failed;
    if (s != NULL)
        r->s = *s;
}

static void stats(struct queue *q, struct stats_res *r)
{
    memset(r, 0, sizeof(*r));
    CHECK(queue_stats(q, on_stats, r) == 0);
    CHECK(r->done == 0);
    run_until(&r->done);
    CHECK(r->done == 1 && r->failed == 0);
}

struct list_res {
    int done, failed, n;
    char ids[8][QUEUE_DELETION_ID_MAX + 1];
};

static void on_list(const struct queue_deletion_view *v, int n, int failed, void *arg)
{
    struct list_res *r = arg;

    r->done = 1;
    r->failed = failed;
    r->n = n;
    for (int i = 0; i < n && i < 8; i++)
        snprintf(r->ids[i], sizeof(r->ids[i]), "%s", v[i].deletion_id);
}

static int list(struct queue *q, enum deletion_state s, int limit, struct list_res *r)
{
    memset(r, 0, sizeof(*r));
    CHECK(queue_list(q, s, limit, on_list, r) == 0);
    CHECK(r->done == 0);
    run_until(&r->done);
    CHECK(r->done == 1 && r->failed == 0);
    return r->n;
}

struct notify_res {
    int calls;
    int64_t due;
};

static void on_notify(int64_t due, void *arg)
{
    struct notify_res *n = arg;

    n->calls++;
    n->due = due;
}

/* ---- tests ---- */

static void test_submit_ok_duplicate_and_sources(void)
{
    struct queue *q = open_q("submit.db", 60000);
    struct sub_res r, r2;
    int64_t now = util_now_ms();

    if (q == NULL)
        return;
    CHECK(submit1(q, "extend", "evt_1", "del_1", "exr_1", 0, now, "first", &r) == QUEUE_SUBMIT_OK);
    CHECK(submit1(q, "extend", "evt_1", "del_2", "exr_2", 0, now, "second", &r) ==
          QUEUE_SUBMIT_DUPLICATE);
    CHECK(r.stored_status == 202);
    CHECK_STR(r.body, "first");
    struct get_res g;
    CHECK(get(q, "del_2", &g) == 0); /* a duplicate changes nothing */
    CHECK(get(q, "del_1", &g) == 1);
    CHECK_STR(g.v.source, "extend");
    CHECK_STR(g.v.key, "evt_1");
    CHECK_STR(g.v.request_id, "req_test");
    CHECK_STR(g.v.reason, "test");
    CHECK(g.v.state == DEL_QUEUED && g.v.accepted_ms == now);

    /* The same key from another source is another request. */
    CHECK(submit1(q, "crm", "evt_1", "del_3", "exr_3", 0, now, "crm", &r) == QUEUE_SUBMIT_OK);

    /* An ignored event records its key only. */
    CHECK(submit1(q, "extend", "evt_2", NULL, NULL, 0, now, "ignored", &r) == QUEUE_SUBMIT_OK);
    CHECK(submit1(q, "extend", "evt_2", NULL, NULL, 0, now, "x", &r) == QUEUE_SUBMIT_DUPLICATE);
    CHECK_STR(r.body, "ignored");

    /* Past the TTL a key is forgotten and the submission is new. */
    CHECK(submit1(q, "extend", "evt_3", "del_4", "exr_4", 0, now, "a", &r) == QUEUE_SUBMIT_OK);
    CHECK(submit1(q, "extend", "evt_3", "del_5", "exr_5", 0, now + 61000, "b", &r) ==
          QUEUE_SUBMIT_OK);

    /* Out of bounds: refused through the callback, not inline. */
    CHECK(submit1(q, "extend", "evt_4", "del_6", "a/b", 0, now, "c", &r) == QUEUE_SUBMIT_FAILED);

    /* A failing operation fails alone: del_1 again (primary key clash)
     * queued back to back with a good one. */
    struct queue_item bad, good;
    make_item(&bad, "del_1", "exr_9", 0);
    make_item(&good, "del_7", "exr_7", 0);
    struct queue_submission s1 = {.source = "crm",
                                  .key = "k_bad",
                                  .now_ms = now,
                                  .items = &bad,
                                  .n_items = 1,
                                  .response_status = 202,
                                  .response_body = "b"};
    struct queue_submission s2 = {.source = "crm",
                                  .key = "k_good",
                                  .now_ms = now,
                                  .items = &good,
                                  .n_items = 1,
                                  .response_status = 202,
                                  .response_body = "g"};
    memset(&r, 0, sizeof(r));
    memset(&r2, 0, sizeof(r2));
    CHECK(queue_submit(q, &s1, on_submit, &r) == 0);
    CHECK(queue_submit(q, &s2, on_submit, &r2) == 0);
    CHECK(r.done == 0 && r2.done == 0);
    run_until(&r.done);
    run_until(&r2.done);
    CHECK(r.status == QUEUE_SUBMIT_FAILED);
    CHECK(r2.status == QUEUE_SUBMIT_OK);
    /* The failed one left no key behind: it may be sent again. */
    make_item(&bad, "del_8", "exr_9", 0);
    CHECK(submit1(q, "crm", "k_bad", "del_8", "exr_9", 0, now, "b", &r) == QUEUE_SUBMIT_OK);

    /* The same in the middle of a crowd, most of it in the failing one's
     * transaction (a batch first runs without a savepoint per operation,
     * then again with them): only the clash fails, the others answer once
     * each, and every one of their deletions and keys is there after. */
    {
        enum { CROWD = 21 };
        struct queue_item items[CROWD];
        struct queue_submission subs[CROWD];
        struct sub_res res[CROWD];
        char keys[CROWD][16], dels[CROWD][16], rids[CROWD][16];

        for (int i = 0; i < CROWD; i++) {
            snprintf(keys[i], sizeof(keys[i]), "k_crowd%d", i);
            snprintf(dels[i], sizeof(dels[i]), i == CROWD / 2 ? "del_1" : "del_c%d", i);
            snprintf(rids[i], sizeof(rids[i]), "exr_c%d", i);
            make_item(&items[i], dels[i], rids[i], 0);
            subs[i] = (struct queue_submission){.source = "crm",
                                                .key = keys[i],
                                                .now_ms = now,
                                                .items = &items[i],
                                                .n_items = 1,
                                                .response_status = 202,
                                                .response_body = keys[i]};
            memset(&res[i], 0, sizeof(res[i]));
        }
        for (int i = 0; i < CROWD; i++)
            CHECK(queue_submit(q, &subs[i], on_submit, &res[i]) == 0);
        for (int i = 0; i < CROWD; i++) {
            run_until(&res[i].done);
            CHECK(res[i].status == (i == CROWD / 2 ? QUEUE_SUBMIT_FAILED : QUEUE_SUBMIT_OK));
        }
        for (int i = 0; i < CROWD; i++) {
            memset(&r, 0, sizeof(r));
            if (i == CROWD / 2) {
                CHECK(submit1(q, "crm", keys[i], "del_c99", rids[i], 0, now, "x", &r) ==
                      QUEUE_SUBMIT_OK);
            } else {
                CHECK(submit1(q, "crm", keys[i], "del_c98", rids[i], 0, now, "x", &r) ==
                      QUEUE_SUBMIT_DUPLICATE);
                CHECK_STR(r.body, keys[i]);
            }
        }
    }
    queue_close(q);
}

static void test_coalescing(void)
{
    struct queue *q = open_q("coalesce.db", 0);
    struct sub_res r;
    struct get_res g1, g2, g3;
    struct claim_res c;
    int64_t now = util_now_ms();

    if (q == NULL)
        return;
    CHECK(submit1(q, "extend", "e1", "del_a1", "exr_A", 0, now, "", &r) == QUEUE_SUBMIT_OK);
    CHECK(submit1(q, "crm", "w1", "del_a2", "exr_A", 0, now, "", &r) == QUEUE_SUBMIT_OK);
    REQUIRE(get(q, "del_a1", &g1) && get(q, "del_a2", &g2));
    CHECK(g1.v.job_id != 0 && g1.v.job_id == g2.v.job_id);
    CHECK(claim(q, now, 10, 60000, &c) == 1);
    CHECK(c.jobs[0].job_id == g1.v.job_id);
    CHECK_STR(c.jobs[0].resource_id, "exr_A");
    CHECK(c.jobs[0].resource == RES_EXTRACT_RUN);

    /* While in flight, a third request still shares the job. */
    CHECK(submit1(q, "crm", "w2", "del_a3", "exr_A", 0, now, "", &r) == QUEUE_SUBMIT_OK);
    CHECK(get(q, "del_a3", &g3) && g3.v.job_id == g1.v.job_id && g3.v.state == DEL_IN_FLIGHT);
    CHECK(complete(q, g1.v.job_id, DEL_DELETED, 0, 1, 204, "") == 1);
    CHECK(get(q, "del_a2", &g2) && g2.v.state == DEL_DELETED && g2.v.completed_ms != 0);

    /* Once deleted, a new request makes a new job. */
    CHECK(submit1(q, "crm", "w3", "del_a4", "exr_A", 0, now, "", &r) == QUEUE_SUBMIT_OK);
    CHECK(get(q, "del_a4", &g3) && g3.v.job_id != g1.v.job_id && g3.v.state == DEL_QUEUED);

    /* Coalescing into a delayed job: the earlier due time wins. */
    CHECK(submit1(q, "crm", "w4", "del_b1", "exr_B", now + 3600000, now, "", &r) ==
          QUEUE_SUBMIT_OK);
    CHECK(get(q, "del_b1", &g1) && g1.v.next_attempt_ms == now + 3600000);
    CHECK(g1.v.not_before_ms == now + 3600000);
    CHECK(submit1(q, "crm", "w5", "del_b2", "exr_B", 0, now + 10, "", &r) == QUEUE_SUBMIT_OK);
    CHECK(get(q, "del_b1", &g1) && g1.v.next_attempt_ms == now + 10);
    /* ... and a later one does not push it back. */
    CHECK(submit1(q, "crm", "w6", "del_b3", "exr_B", now + 7200000, now + 20, "", &r) ==
          QUEUE_SUBMIT_OK);
    CHECK(get(q, "del_b3", &g2) && g2.v.job_id == g1.v.job_id && g2.v.next_attempt_ms == now + 10);
    queue_close(q);
}

static int claim_account(struct queue *q, const char *account, int64_t now, int max,
                         struct claim_res *c)
{
    memset(c, 0, sizeof(*c));
    fake_now = now;
    CHECK(queue_claim_account(q, account, max, 60000, on_claim, c) == 0);
    run_until(&c->done);
    CHECK(c->done == 1);
    fake_now = 0;
    return c->n;
}

/* Jobs belong to an account: the same resource in two accounts is two
 * jobs, coalescing happens within one account, and each account's claims
 * take its own jobs only. Items that name no account are "default"'s. */
static int set_paused(struct queue *q, const char *account, int paused)
{
    struct done_res d = {0};

    if (queue_set_paused(q, account, paused, "test", on_done, &d) != 0)
        return 0;
    run_until(&d.done);
    return d.done && d.ok;
}

static struct queue *open_accounts(const char *name)
{
    static const struct queue_account_limits acc[] = {{"eu", 0, 0}, {"us", 0, 0}, {"apac", 0, 0}};
    struct queue_options o = {.accounts = acc, .n_accounts = 3};

    return open_with(name, &o);
}

/* An operator's pause of one account, or of all, is stored: a reopened
 * queue (a restart, or another replica) reads it back, one account's
 * resume leaves the others paused, and an account the queue does not
 * know is refused. */
static void test_pauses_per_account_outlive_a_reopen(void)
{
    struct queue *q = open_accounts("pauses.db");

    if (q == NULL)
        return;
    CHECK(!queue_paused(q, "eu") && !queue_paused(q, NULL));
    CHECK(set_paused(q, "us", 1));
    CHECK(queue_paused(q, "us") && !queue_paused(q, "eu") && !queue_paused(q, NULL));
    CHECK(queue_set_paused(q, "mars", 1, "test", on_done, NULL) == -1);
    queue_close(q);
    REQUIRE((q = open_accounts("pauses.db")) != NULL);
    CHECK(queue_paused(q, "us") && !queue_paused(q, "eu") && !queue_paused(q, "apac"));
    /* All, then one back: the other two stay paused across a reopen. */
    CHECK(set_paused(q, NULL, 1) && queue_paused(q, NULL));
    CHECK(set_paused(q, "eu", 0));
    CHECK(!queue_paused(q, "eu") && queue_paused(q, "us") && queue_paused(q, "apac"));
    queue_close(q);
    REQUIRE((q = open_accounts("pauses.db")) != NULL);
    CHECK(!queue_paused(q, "eu") && queue_paused(q, "us") && queue_paused(q, "apac"));
    CHECK(!queue_paused(q, NULL));
    CHECK(set_paused(q, NULL, 0));
    queue_close(q);
    REQUIRE((q = open_accounts("pauses.db")) != NULL);
    CHECK(!queue_paused(q, "eu") && !queue_paused(q, "us") && !queue_paused(q, "apac"));
    queue_close(q);
    if (sqlite_backend) {
        /* The pause of all that an earlier version kept in meta pauses
         * every account, and resuming one turns it into the others'. */
        char path[512];
        sqlite3 *db;

        db_path("pauses.db", path, sizeof(path));
        REQUIRE(sqlite3_open(path, &db) == SQLITE_OK);
        CHECK(sqlite3_exec(db, "UPDATE meta SET paused = 1", NULL, NULL, NULL) == SQLITE_OK);
        sqlite3_close(db);
        REQUIRE((q = open_accounts("pauses.db")) != NULL);
        CHECK(queue_paused(q, NULL));
        CHECK(set_paused(q, "apac", 0));
        queue_close(q);
        REQUIRE((q = open_accounts("pauses.db")) != NULL);
        CHECK(queue_paused(q, "eu") && queue_paused(q, "us") && !queue_paused(q, "apac"));
        queue_close(q);
    }
}

static void test_accounts_coalesce_and_claim_apart(void)
{
    static const struct queue_account_limits acc[] = {{"eu", 0, 0}, {"us", 0, 0}};
    char path[512], err[256] = "";
    struct queue_options o = {
        .backend = backend, .path = path, .accounts = acc, .n_accounts = 2, .clock_ms = test_clock};
    struct queue *q = NULL;
    struct queue_item it[3];
    struct sub_res r;
    struct get_res ge1, ge2, gu1, gd;
    struct claim_res c;
    int64_t now = util_now_ms();

    db_path("accounts.db", path, sizeof(path));
    if (queue_open(&q, base, &o, err, sizeof(err)) != 0)
        fprintf(stderr, "queue_open %s: %s\n", path, err);
    CHECK(q != NULL);
    if (q == NULL)
        return;
    make_item(&it[0], "del_e1", "exr_A", 0);
    snprintf(it[0].account, sizeof(it[0].account), "eu");
    make_item(&it[1], "del_u1", "exr_A", 0);
    snprintf(it[1].account, sizeof(it[1].account), "us");
    struct queue_submission sub = {.source = "crm",
                                   .account = "eu",
                                   .key = "k1",
                                   .request_id = "req_test",
                                   .now_ms = now,
                                   .items = it,
                                   .n_items = 2,
                                   .response_status = 202,
                                   .response_body = ""};
    memset(&r, 0, sizeof(r));
    CHECK(queue_submit(q, &sub, on_submit, &r) == 0);
    run_until(&r.done);
    CHECK(r.status == QUEUE_SUBMIT_OK);
    make_item(&it[2], "del_e2", "exr_A", 0);
    snprintf(it[2].account, sizeof(it[2].account), "eu");
    sub.key = "k2";
    sub.items = &it[2];
    sub.n_items = 1;
    memset(&r, 0, sizeof(r));
    CHECK(queue_submit(q, &sub, on_submit, &r) == 0);
    run_until(&r.done);
    CHECK(r.status == QUEUE_SUBMIT_OK);
    CHECK(submit1(q, "crm", "k3", "del_d1", "exr_A", 0, now, "", &r) == QUEUE_SUBMIT_OK);

    REQUIRE(get(q, "del_e1", &ge1) && get(q, "del_e2", &ge2) && get(q, "del_u1", &gu1) &&
            get(q, "del_d1", &gd));
    CHECK(ge1.v.job_id == ge2.v.job_id);
    CHECK(gu1.v.job_id != ge1.v.job_id && gd.v.job_id != ge1.v.job_id &&
          gd.v.job_id != gu1.v.job_id);
    CHECK_STR(ge1.v.account, "eu");
    CHECK_STR(gu1.v.account, "us");
    CHECK_STR(gd.v.account, "default");

    /* Each account's claim takes its own job, and only that. */
    CHECK(claim_account(q, "us", now, 10, &c) == 1);
    CHECK(c.jobs[0].job_id == gu1.v.job_id);
    CHECK_STR(c.jobs[0].account, "us");
    CHECK(claim_account(q, "us", now, 10, &c) == 0);
    CHECK(claim_account(q, "eu", now, 10, &c) == 1);
    CHECK(c.jobs[0].job_id == ge1.v.job_id);
    CHECK_STR(c.jobs[0].account, "eu");
    /* The in-flight eu job still takes a third eu request; us's does not. */
    make_item(&it[0], "del_e3", "exr_A", 0);
    snprintf(it[0].account, sizeof(it[0].account), "eu");
    sub.key = "k4";
    sub.items = it;
    sub.n_items = 1;
    memset(&r, 0, sizeof(r));
    CHECK(queue_submit(q, &sub, on_submit, &r) == 0);
    run_until(&r.done);
    CHECK(get(q, "del_e3", &ge2) && ge2.v.job_id == ge1.v.job_id && ge2.v.state == DEL_IN_FLIGHT);
    /* A claim of any account takes what is left: default's. */
    CHECK(claim(q, now, 10, 60000, &c) == 1);
    CHECK(c.jobs[0].job_id == gd.v.job_id);
    CHECK_STR(c.jobs[0].account, "default");
    /* An account id out of bounds fails the call. */
    CHECK(claim_account(q, "EU!", now, 10, &c) == -1);
    snprintf(it[0].account, sizeof(it[0].account), "Bad");
    sub.key = "k5";
    memset(&r, 0, sizeof(r));
    CHECK(queue_submit(q, &sub, on_submit, &r) == 0);
    run_until(&r.done);
    CHECK(r.status == QUEUE_SUBMIT_FAILED);
    queue_close(q);
}

/* Submissions that reach the queue together share one commit (and, on
 * PostgreSQL, are stored a whole run at a time): each must still be
 * answered as if it had run alone, in order. The same key twice, the same
 * resource in two submissions and twice in one, joining a queued and an
 * in-flight job from an earlier commit, an ignored event and its repeat,
 * a key from an earlier commit, and a read in the middle of the crowd. */
static void test_one_commit_answers_each_submission_as_alone(void)
{
    struct queue *q = open_q("crowd.db", 60000);
    int64_t now = util_now_ms();
    struct sub_res r;
    struct get_res g, g2;
    struct claim_res c;
    struct stats_res st0;

    if (q == NULL)
        return;
    CHECK(submit1(q, "crm", "k_old", "del_o1", "exr_P", now + 3600000, now, "old", &r) ==
          QUEUE_SUBMIT_OK);
    CHECK(submit1(q, "crm", "k_fly", "del_o2", "exr_Q", 0, now, "fly", &r) == QUEUE_SUBMIT_OK);
    CHECK(claim(q, now, 10, 60000, &c) == 1 && strcmp(c.jobs[0].resource_id, "exr_Q") == 0);
    CHECK(get(q, "del_o1", &g) == 1);
    int64_t job_p = g.v.job_id, job_q = c.jobs[0].job_id;
    stats(q, &st0);

    enum { N = 10 };
    struct queue_item it[N][2];
    struct queue_submission s[N];
    struct sub_res res[N];
    static const struct {
        const char *key, *body, *del[2], *rid[2];
        int64_t due[2];
    } in[N] = {
        /* k1 again: a duplicate. x3 joins x1 and brings it forward. x5 and
         * x6, one resource twice, join x4 and bring it forward. */
        {"k1", "one", {"del_x1"}, {"exr_X"}, {3600000}},
        {"k1", "one again", {"del_x2"}, {"exr_Z"}, {0}},
        {"k2", "two", {"del_x3", "del_x4"}, {"exr_X", "exr_Y"}, {10, 50}},
        {"k3", "three", {"del_x5", "del_x6"}, {"exr_Y", "exr_Y"}, {40, 0}},
        {"k4", "four", {"del_x7"}, {"exr_P"}, {20}}, /* joins a queued job of an earlier commit */
        {"k5", "five", {"del_x8"}, {"exr_Q"}, {0}},  /* joins an in-flight one */
        {"k6", "ignored", {NULL}, {NULL}, {0}},
        {"k6", "ignored again", {NULL}, {NULL}, {0}},
        {"k_old", "old again", {"del_x9"}, {"exr_W"}, {0}}, /* a key of an earlier commit */
        {"k2", "two again", {"del_x10"}, {"exr_W"}, {0}},   /* after the read below */
    };
    struct stats_res lead = {0}, mid = {0};
    for (int i = 0; i < N; i++) {
        int n = 0;
        for (; n < 2 && in[i].del[n] != NULL; n++)
            make_item(&it[i][n], in[i].del[n], in[i].rid[n], in[i].due[n] ? now + in[i].due[n] : 0);
        s[i] = (struct queue_submission){.source = "crm",
                                         .key = in[i].key,
                                         .request_id = "req_crowd",
                                         .now_ms = now,
                                         .items = it[i],
                                         .n_items = n,
                                         .response_status = 202,
                                         .response_body = in[i].body};
        memset(&res[i], 0, sizeof(res[i]));
    }
    /* The worker takes the lead read alone; the crowd queues up behind it
     * and goes into the next commit, all of it. */
    CHECK(queue_stats(q, on_stats, &lead) == 0);
    for (int i = 0; i < N; i++) {
        if (i == N - 1)
            CHECK(queue_stats(q, on_stats, &mid) == 0);
        CHECK(queue_submit(q, &s[i], on_submit, &res[i]) == 0);
    }
    for (int i = 0; i < N; i++)
        run_until(&res[i].done);
    run_until(&mid.done);
    run_until(&lead.done);
    static const struct {
        enum queue_submit_status status;
        const char *body;
    } want[N] = {{QUEUE_SUBMIT_OK, ""},           {QUEUE_SUBMIT_DUPLICATE, "one"},
                 {QUEUE_SUBMIT_OK, ""},           {QUEUE_SUBMIT_OK, ""},
                 {QUEUE_SUBMIT_OK, ""},           {QUEUE_SUBMIT_OK, ""},
                 {QUEUE_SUBMIT_OK, ""},           {QUEUE_SUBMIT_DUPLICATE, "ignored"},
                 {QUEUE_SUBMIT_DUPLICATE, "old"}, {QUEUE_SUBMIT_DUPLICATE, "two"}};
    for (int i = 0; i < N; i++) {
        CHECK(res[i].done == 1 && res[i].status == want[i].status);
        CHECK_STR(res[i].body, want[i].body);
        if (want[i].status == QUEUE_SUBMIT_DUPLICATE)
            CHECK(res[i].stored_status == 202);
    }
    /* Duplicates stored nothing. */
    CHECK(get(q, "del_x2", &g) == 0 && get(q, "del_x9", &g) == 0 && get(q, "del_x10", &g) == 0);
    /* x1 and x3 share a job, brought forward to x3's due time. */
    CHECK(get(q, "del_x1", &g) == 1 && get(q, "del_x3", &g2) == 1);
    CHECK(g.v.job_id == g2.v.job_id && g.v.next_attempt_ms == now + 10);
    CHECK(g.v.state == DEL_QUEUED && g.v.not_before_ms == now + 3600000);
    /* x4, x5 and x6 share another, due when the earliest of them asks. */
    CHECK(get(q, "del_x4", &g) == 1 && get(q, "del_x5", &g2) == 1 && g.v.job_id == g2.v.job_id);
    CHECK(get(q, "del_x6", &g2) == 1 && g.v.job_id == g2.v.job_id && g.v.next_attempt_ms == now);
    CHECK_STR(g2.v.key, "k3");
    CHECK_STR(g2.v.request_id, "req_crowd");
    /* The earlier commit's jobs were joined, not doubled. */
    CHECK(get(q, "del_x7", &g) == 1 && g.v.job_id == job_p && g.v.next_attempt_ms == now + 20);
    CHECK(get(q, "del_x8", &g) == 1 && g.v.job_id == job_q && g.v.state == DEL_IN_FLIGHT);
    /* Counted once each: 6 more queued deletions, one more in flight, 2 more jobs. */
    struct stats_res st;
    stats(q, &st);
    CHECK(st.s.count[DEL_QUEUED] == st0.s.count[DEL_QUEUED] + 6);
    CHECK(st.s.count[DEL_IN_FLIGHT] == st0.s.count[DEL_IN_FLIGHT] + 1);
    CHECK(st.s.jobs_pending == st0.s.jobs_pending + 2);
    CHECK(mid.done == 1 && mid.failed == 0);
    /* Each of them is one job to claim: P (now + 20), X (now + 10), Y. */
    CHECK(claim(q, now + 30, 10, 60000, &c) == 3);
    for (int i = 0; i < c.n; i++) {
        /* A job's clock starts with its first deletion's due time. */
        if (strcmp(c.jobs[i].resource_id, "exr_Y") == 0)
            CHECK(c.jobs[i].clock_start_ms == now + 50);
        else
            CHECK(c.jobs[i].clock_start_ms == now + 3600000);
    }
    queue_close(q);
}

static void test_due_limit_and_lease(void)
{
    struct queue *q = open_q("claim.db", 0);
    struct sub_res r;
    struct claim_res c;
    struct notify_res nt = {0};
    int64_t now = util_now_ms(), first, second, third;

    if (q == NULL)
        return;
    queue_set_notify(q, on_notify, &nt);
    CHECK(submit1(q, "crm", "k0", "del_late", "exr_late", now + 10000, now, "", &r) ==
          QUEUE_SUBMIT_OK);
    CHECK(nt.calls == 1 && nt.due == now + 10000);
    CHECK(claim(q, now, 10, 5000, &c) == 0);
    CHECK(c.next_due == now + 10000);

    CHECK(submit1(q, "crm", "k1", "del_1", "exr_1", 0, now - 300, "", &r) == QUEUE_SUBMIT_OK);
    CHECK(nt.calls == 2 && nt.due == now - 300);
    CHECK(submit1(q, "crm", "k2", "del_2", "exr_2", 0, now - 200, "", &r) == QUEUE_SUBMIT_OK);
    CHECK(submit1(q, "crm", "k3", "del_3", "exr_3", 0, now - 100, "", &r) == QUEUE_SUBMIT_OK);

    /* Oldest due first, at most max_jobs. */
    CHECK(claim(q, now, 2, 5000, &c) == 2);
    CHECK_STR(c.jobs[0].resource_id, "exr_1");
    CHECK_STR(c.jobs[1].resource_id, "exr_2");
    CHECK(c.jobs[0].attempts == 0 && c.jobs[0].clock_start_ms == now - 300);
    CHECK(c.next_due == now - 100);
    first = c.jobs[0].job_id;
    second = c.jobs[1].job_id;

    /* Leased jobs are not claimed again before the lease ends. */
    CHECK(claim(q, now + 1000, 10, 5000, &c) == 1);
    CHECK_STR(c.jobs[0].resource_id, "exr_3");
    third = c.jobs[0].job_id;
    CHECK(c.next_due == now + 5000); /* the first two leases end then */
    CHECK(claim(q, now + 4999, 10, 5000, &c) == 0);

    /* After it, they are claimable again (a worker that died). */
    CHECK(claim(q, now + 5000, 10, 5000, &c) == 2);
    CHECK(c.jobs[0].job_id == first && c.jobs[1].job_id == second);
    CHECK(claim(q, now + 6000, 10, 5000, &c) == 1 && c.jobs[0].job_id == third);

    CHECK(complete(q, first, DEL_DELETED, 0, 1, 204, "") == 1);
    CHECK(complete(q, second, DEL_DELETED, 0, 1, 204, "") == 1);
    CHECK(complete(q, third, DEL_DELETED, 0, 1, 204, "") == 1);

    /* The delayed job becomes claimable at its not_before. */
    CHECK(claim(q, now + 9999, 10, 5000, &c) == 0);
    CHECK(claim(q, now + 10000, 10, 5000, &c) == 1);
    CHECK_STR(c.jobs[0].resource_id, "exr_late");
    queue_close(q);
}

static int release(struct queue *q, int64_t job_id, int64_t lease, int64_t due)
{
    struct done_res d = {0};

    CHECK(queue_release(q, job_id, lease, due, on_done, &d) == 0);
    CHECK(d.done == 0);
    run_until(&d.done);
    CHECK(d.done == 1);
    return d.ok;
}

/* A completion from a lease that ended and was taken over must not touch
 * the job: the late sender's news is older than the new holder's. */
static void test_stale_completion_after_reclaim_is_dropped(void)
{
    struct queue *q = open_q("fence.db", 0);
    struct sub_res r;
    struct claim_res c;
    struct stats_res st;
    struct get_res g;
    int64_t now = util_now_ms(), job, first_lease;

    if (q == NULL)
        return;
    CHECK(submit1(q, "crm", "f1", "del_f1", "exr_f1", 0, now, "", &r) == QUEUE_SUBMIT_OK);
    CHECK(claim(q, now, 1, 1000, &c) == 1);
    job = c.jobs[0].job_id;
    first_lease = c.jobs[0].lease;
    /* The first holder stalls past its lease; another claims the job. */
    CHECK(claim(q, now + 1000, 1, 60000, &c) == 1 && c.jobs[0].job_id == job);
    CHECK(c.jobs[0].lease != first_lease);
    leases[job] = first_lease;
    CHECK(complete(q, job, DEL_REJECTED, 0, 1, 400, "INVALID_REQUEST") == 1); /* not a failure */
    CHECK(get(q, "del_f1", &g) && g.v.state == DEL_IN_FLIGHT && g.v.attempts == 0);
    stats(q, &st);
    CHECK(st.s.stale_dropped == 1);
    CHECK(release(q, job, first_lease, now) == 1); /* a stale release is dropped too */
    CHECK(get(q, "del_f1", &g) && g.v.state == DEL_IN_FLIGHT);
    leases[job] = c.jobs[0].lease;
    CHECK(complete(q, job, DEL_DELETED, 0, 1, 204, "") == 1);
    CHECK(get(q, "del_f1", &g) && g.v.state == DEL_DELETED && g.v.attempts == 1);
    stats(q, &st);
    CHECK(st.s.stale_dropped == 2);
    queue_close(q);
}

/* A job handed back unsent is queued again from the given time, and no
 * attempt is counted. */
static void test_release_hands_a_job_back_unsent(void)
{
    struct queue *q = open_q("release.db", 0);
    struct sub_res r;
    struct claim_res c;
    struct stats_res st;
    struct get_res g;
    int64_t now = util_now_ms(), job;

    if (q == NULL)
        return;
    CHECK(submit1(q, "crm", "r1", "del_r1", "exr_r1", 0, now, "", &r) == QUEUE_SUBMIT_OK);
    CHECK(claim(q, now, 1, 60000, &c) == 1);
    job = c.jobs[0].job_id;
    CHECK(release(q, job, c.jobs[0].lease, now + 5000) == 1);
    CHECK(get(q, "del_r1", &g) && g.v.state == DEL_QUEUED && g.v.attempts == 0 &&
          g.v.next_attempt_ms == now + 5000);
    stats(q, &st);
    CHECK(st.s.count[DEL_QUEUED] == 1 && st.s.count[DEL_IN_FLIGHT] == 0 && st.s.jobs_pending == 1);
    CHECK(claim(q, now + 4999, 1, 60000, &c) == 0);
    CHECK(claim(q, now + 5000, 1, 60000, &c) == 1 && c.jobs[0].job_id == job);
    CHECK(complete(q, job, DEL_DELETED, 0, 1, 204, "") == 1);
    queue_close(q);
}

static int64_t maintain(struct queue *q, int64_t now)
{
    struct count_res c = {0};

    fake_now = now;
    CHECK(queue_maintain(q, on_count, &c) == 0);
    run_until(&c.done);
    CHECK(c.done == 1);
    fake_now = 0;
    return c.count;
}

/* Retention prunes finished jobs, with their deletions, once past it; a
 * pending job, one waiting a year for its not_before, never. */
/* The most rows any scan of plan reads (EXPLAIN ANALYZE, JSON). */
static double plan_rows_read(json_t *plan)
{
    double worst = 0, n;
    const char *type = json_string_value(json_object_get(plan, "Node Type"));
    json_t *sub;
    size_t i;

    if (type != NULL && strstr(type, "Scan") != NULL)
        worst = json_number_value(json_object_get(plan, "Actual Rows")) *
                json_number_value(json_object_get(plan, "Actual Loops"));
    json_array_foreach(json_object_get(plan, "Plans"), i, sub)
    {
        if ((n = plan_rows_read(sub)) > worst)
            worst = n;
    }
    return worst;
}

/* The statements on every claim and every scrape read one index entry,
 * even on a table that autovacuum analysed when nothing was queued and
 * that has filled since: the planner then believes no job is queued, and
 * min() over the index would read all of them. */
static void test_pg_next_due_reads_one_entry_under_stale_statistics(void)
{
    static const struct {
        const char *sql;
        int with_account;
    } reads[] = {
        {queue_pg_next_due_sql, 1},
        {queue_pg_next_due_any_sql, 0},
        {queue_pg_oldest_pending_sql, 0},
    };
    char path[512];
    struct queue *q = open_q("plans.db", 3600000);
    PGconn *c;
    PGresult *r;

    queue_close(q);
    db_path("plans.db", path, sizeof(path));
    c = PQconnectdb(path);
    r = PQexec(c,
               "INSERT INTO dg_jobs (resource, resource_id, state, due_ms, clock_start_ms,"
               " created_ms, updated_ms) VALUES ('file', 'file_leased', 'in_flight', 1, 1, 1, 1);"
               "ANALYZE dg_jobs;"
               "INSERT INTO dg_jobs (resource, resource_id, state, due_ms, clock_start_ms,"
               " created_ms, updated_ms) SELECT 'file', 'file_' || g, 'queued', g, g, g, g"
               " FROM generate_series(1, 20000) g");
    CHECK(PQresultStatus(r) == PGRES_COMMAND_OK);
    PQclear(r);
    for (size_t i = 0; i < sizeof(reads) / sizeof(reads[0]); i++) {
        char sql[1024];
        const char *account = "default";
        json_t *plan;
        double most;

        snprintf(sql, sizeof(sql), "EXPLAIN (ANALYZE, FORMAT JSON) %s", reads[i].sql);
        r = PQexecParams(c, sql, reads[i].with_account, NULL, &account, NULL, NULL, 0);
        CHECK(PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1);
        plan = PQntuples(r) == 1 ? json_loads(PQgetvalue(r, 0, 0), 0, NULL) : NULL;
        most = plan_rows_read(json_object_get(json_array_get(plan, 0), "Plan"));
        if (most > 2)
            fprintf(stderr, "%s reads %.0f rows\n", reads[i].sql, most);
        CHECK(plan != NULL && most <= 2);
        json_decref(plan);
        PQclear(r);
    }
    PQfinish(c);
}

static void test_retention_prunes_finished_jobs_only(void)
{
    struct queue *q = open_q_kept("retain.db", 0, 1000);
    struct sub_res r;
    struct claim_res c;
    struct stats_res st;
    struct get_res g;
    int64_t now = util_now_ms(), year = 365LL * 86400000;

    if (q == NULL)
        return;
    CHECK(submit1(q, "crm", "k1", "d_ok", "exr_ok", 0, now, "", &r) == QUEUE_SUBMIT_OK);
    CHECK(submit1(q, "crm", "k2", "d_bad", "exr_bad", 0, now, "", &r) == QUEUE_SUBMIT_OK);
    CHECK(submit1(q, "crm", "k3", "d_cx", "exr_cx", 0, now, "", &r) == QUEUE_SUBMIT_OK);
    CHECK(submit1(q, "crm", "k4", "d_year", "exr_year", now + year, now, "", &r) ==
          QUEUE_SUBMIT_OK);
    CHECK(cancel(q, "d_cx", now) == 1);
    CHECK(claim(q, now, 10, 60000, &c) == 2);
    for (int i = 0; i < 2; i++) {
        int ok = strcmp(c.jobs[i].resource_id, "exr_ok") == 0;
        CHECK(complete(q, c.jobs[i].job_id, ok ? DEL_DELETED : DEL_REJECTED, 0, 1, ok ? 204 : 400,
                       ok ? "" : "INVALID_REQUEST") == 1);
    }
    CHECK(maintain(q, now + 500) == 0); /* not past retention yet */
    CHECK(get(q, "d_ok", &g) && get(q, "d_cx", &g));
    CHECK(maintain(q, now + 1500) == 3);
    CHECK(!get(q, "d_ok", &g) && !get(q, "d_bad", &g) && !get(q, "d_cx", &g));
    CHECK(get(q, "d_year", &g) && g.v.state == DEL_QUEUED);
    stats(q, &st);
    CHECK(st.s.count[DEL_DELETED] == 0 && st.s.count[DEL_REJECTED] == 0 &&
          st.s.count[DEL_CANCELLED] == 0 && st.s.count[DEL_QUEUED] == 1);
    CHECK(st.s.pruned == 3 && st.s.jobs_pending == 1);
    CHECK(maintain(q, now + year + year) == 0); /* pending: never pruned */
    CHECK(get(q, "d_year", &g));
    queue_close(q);
}

static void test_complete_attempts_and_retry_at(void)
{
    struct queue *q = open_q("complete.db", 0);
    struct sub_res r;
    struct claim_res c;
    struct get_res g;
    struct notify_res nt = {0};
    int64_t now = util_now_ms(), job;

    if (q == NULL)
        return;
    CHECK(submit1(q, "crm", "k1", "del_c1", "exr_c1", 0, now, "", &r) == QUEUE_SUBMIT_OK);
    CHECK(claim(q, now, 1, 60000, &c) == 1);
    job = c.jobs[0].job_id;
    queue_set_notify(q, on_notify, &nt);

    /* A 503: counted, retried at retry_at. */
    CHECK(complete(q, job, DEL_QUEUED, now + 2000, 1, 503, "server_error") == 1);
    CHECK(nt.calls == 1 && nt.due == now + 2000);
    CHECK(get(q, "del_c1", &g));
    CHECK(g.v.state == DEL_QUEUED && g.v.attempts == 1 && g.v.last_http_status == 503);
    CHECK(g.v.next_attempt_ms == now + 2000 && g.v.n_attempts == 1);
    CHECK_STR(g.v.last_upstream_request_id, "xreq_503");
    CHECK_STR(g.v.last_error, "server_error");
    CHECK(claim(q, now + 1999, 1, 60000, &c) == 0 && c.next_due == now + 2000);
    CHECK(claim(q, now + 2000, 1, 60000, &c) == 1 && c.jobs[0].attempts == 1);

    /* A 429: recorded, not counted. */
    CHECK(complete(q, job, DEL_QUEUED, now + 3000, 0, 429, "rate_limited") == 1);
    CHECK(get(q, "del_c1", &g) && g.v.attempts == 1 && g.v.n_attempts == 2);
    CHECK(g.v.attempt[0].http_status == 429 && g.v.attempt[1].http_status == 503);
    CHECK_STR(g.v.attempt[0].error_code, "rate_limited");
    CHECK(g.v.attempt[0].finished_ms == g.v.attempt[0].started_ms + 5);

    /* Completing a job that is not in flight changes nothing. */
    CHECK(complete(q, job, DEL_DELETED, 0, 1, 204, "") == 1);
    CHECK(get(q, "del_c1", &g) && g.v.state == DEL_QUEUED && g.v.n_attempts == 2);

    CHECK(claim(q, now + 3000, 1, 60000, &c) == 1);
    CHECK(complete(q, job, DEL_REJECTED, 0, 1, 422, "invalid_id") == 1);
    CHECK(get(q, "del_c1", &g) && g.v.state == DEL_REJECTED && g.v.attempts == 2);
    CHECK(g.v.completed_ms != 0 && g.v.next_attempt_ms == 0 && g.v.n_attempts == 3);
    CHECK(g.v.final_audit_seq == 0); /* no audit log in this test */

    /* An unknown job fails. */
    CHECK(complete(q, job + 1000, DEL_DELETED, 0, 1, 204, "") == 0);

    /* 404 means it is gone already. */
    CHECK(submit1(q, "crm", "k2", "del_c2", "exr_c2", 0, now, "", &r) == QUEUE_SUBMIT_OK);
    CHECK(claim(q, now + 4000, 1, 60000, &c) == 1);
    CHECK(complete(q, c.jobs[0].job_id, DEL_NOT_FOUND, 0, 1, 404, "") == 1);
    CHECK(get(q, "del_c2", &g) && g.v.state == DEL_NOT_FOUND);
    queue_close(q);
}

/* A list comes in the queue's order, not acceptance order: queued
 * deletions next try first, so an operator sees what goes out next. */
static void test_list_in_send_order(void)
{
    struct queue *q = open_q("order.db", 0);
    struct sub_res r;
    struct list_res l;
    int64_t now = util_now_ms();

    if (q == NULL)
        return;
    CHECK(submit1(q, "crm", "k1", "late", "exr_late", now + 200000, now - 30, "", &r) ==
          QUEUE_SUBMIT_OK);
    CHECK(submit1(q, "crm", "k2", "now", "exr_now", 0, now - 20, "", &r) == QUEUE_SUBMIT_OK);
    CHECK(submit1(q, "crm", "k3", "soon", "exr_soon", now + 1000, now - 10, "", &r) ==
          QUEUE_SUBMIT_OK);
    CHECK(list(q, DEL_QUEUED, 10, &l) == 3);
    CHECK_STR(l.ids[0], "now");
    CHECK_STR(l.ids[1], "soon");
    CHECK_STR(l.ids[2], "late");
    queue_close(q);
}

static void test_stats_list_retry_cancel(void)
{
    struct queue *q = open_q("ops.db", 0);
    struct sub_res r;
    struct claim_res c;
    struct get_res g;
    struct stats_res st;
    struct list_res l;
    int64_t now = util_now_ms();

    if (q == NULL)
        return;
    /* d1, d2 share exr_1; d3 on exr_3; d4 on exr_4; d5 on exr_5. */
    CHECK(submit1(q, "crm", "k1", "d1", "exr_1", 0, now - 50, "", &r) == QUEUE_SUBMIT_OK);
    CHECK(submit1(q, "crm", "k2", "d2", "exr_1", 0, now - 40, "", &r) == QUEUE_SUBMIT_OK);
    CHECK(submit1(q, "crm", "k3", "d3", "exr_3", 0, now - 30, "", &r) == QUEUE_SUBMIT_OK);
    CHECK(submit1(q, "crm", "k4", "d4", "exr_4", 0, now - 20, "", &r) == QUEUE_SUBMIT_OK);
    CHECK(submit1(q, "crm", "k5", "d5", "exr_5", now + 100000, now - 10, "", &r) ==
          QUEUE_SUBMIT_OK);

    stats(q, &st);
    CHECK(st.s.count[DEL_QUEUED] == 5 && st.s.jobs_pending == 4);
    CHECK(st.s.oldest_pending_ms == now - 50);
    CHECK(list(q, DEL_QUEUED, 10, &l) == 5);
    CHECK_STR(l.ids[0], "d1");
    CHECK_STR(l.ids[4], "d5");
    CHECK(list(q, DEL_QUEUED, 2, &l) == 2);

    /* Cancel one of two deletions sharing a job: the job goes on. */
    CHECK(cancel(q, "d1", now) == 1);
    CHECK(cancel(q, "d1", now) == 0);
    CHECK(get(q, "d1", &g) && g.v.state == DEL_CANCELLED && g.v.completed_ms == now);
    CHECK(get(q, "d2", &g) && g.v.state == DEL_QUEUED);
    CHECK(cancel(q, "nope", now) == 0);

    /* Claim exr_1, exr_3 and exr_4; exr_1 in flight cannot be cancelled. */
    CHECK(claim(q, now, 3, 60000, &c) == 3);
    CHECK(cancel(q, "d2", now) == 0);
    CHECK(complete(q, c.jobs[0].job_id, DEL_DEAD, 0, 1, 503, "server_error") == 1);
    CHECK(complete(q, c.jobs[1].job_id, DEL_DEAD, 0, 1, 503, "server_error") == 1);
    CHECK(complete(q, c.jobs[2].job_id, DEL_REJECTED, 0, 1, 400, "bad_request") == 1);
    CHECK(cancel(q, "d3", now) == 0); /* terminal */

    /* Cancel the only deletion of the delayed job: the job is cancelled. */
    CHECK(cancel(q, "d5", now) == 1);
    stats(q, &st);
    CHECK(st.s.count[DEL_CANCELLED] == 2 && st.s.count[DEL_DEAD] == 2);
    CHECK(st.s.count[DEL_REJECTED] == 1 && st.s.count[DEL_QUEUED] == 0);
    CHECK(st.s.jobs_pending == 0 && st.s.oldest_pending_ms == 0);
    CHECK(list(q, DEL_CANCELLED, 10, &l) == 2);
    CHECK_STR(l.ids[0], "d1");
    CHECK_STR(l.ids[1], "d5");
    CHECK(list(q, DEL_DEAD, 10, &l) == 2);

    /* Retry one rejected deletion: queued, due now, clock restarted. */
    CHECK(retry(q, "d4", now + 500) == 1);
    CHECK(retry(q, "d4", now + 500) == 0); /* queued now: nothing to retry */
    CHECK(get(q, "d4", &g) && g.v.state == DEL_QUEUED && g.v.next_attempt_ms == now + 500);
    CHECK(claim(q, now + 500, 10, 60000, &c) == 1 && c.jobs[0].clock_start_ms == now + 500);
    CHECK(retry(q, "", now) == -1);

    /* Retry every dead one: d2 (d1 stays cancelled) and d3. */
    CHECK(retry(q, NULL, now + 600) == 2);
    CHECK(get(q, "d2", &g) && g.v.state == DEL_QUEUED);
    CHECK(get(q, "d1", &g) && g.v.state == DEL_CANCELLED);
    CHECK(retry(q, NULL, now + 600) == 0);
    stats(q, &st);
    CHECK(st.s.count[DEL_QUEUED] == 2 && st.s.count[DEL_IN_FLIGHT] == 1);
    CHECK(st.s.count[DEL_DEAD] == 0);

    /* Retrying a dead deletion whose resource has a pending job again:
     * it joins that job (one pending job per resource). */
    CHECK(submit1(q, "crm", "k6", "d6", "exr_6", 0, now, "", &r) == QUEUE_SUBMIT_OK);
    CHECK(claim(q, now + 700, 10, 60000, &c) == 3);
    for (int i = 0; i < 3; i++)
        CHECK(complete(q, c.jobs[i].job_id, DEL_DEAD, 0, 1, 503, "") == 1);
    CHECK(submit1(q, "crm", "k7", "d7", "exr_6", now + 100000, now, "", &r) == QUEUE_SUBMIT_OK);
    struct get_res g7;
    CHECK(get(q, "d7", &g7) && g7.v.state == DEL_QUEUED);
    CHECK(retry(q, "d6", now + 800) == 1);
    CHECK(get(q, "d6", &g) && g.v.job_id == g7.v.job_id && g.v.state == DEL_QUEUED);
    CHECK(g.v.next_attempt_ms == now + 800); /* the retry pulls the delayed job in */

    /* Completing with a state a completion cannot have fails. */
    CHECK(complete(q, g7.v.job_id, DEL_IN_FLIGHT, 0, 1, 0, "") == 0);

    if (!sqlite_backend) {
        queue_close(q);
        return;
    }
    /* SQLite, whose file is this process's alone: jobs in flight at a stop
     * go back to the queue at the next open, and their deletions' counts
     * with them. */
    CHECK(submit1(q, "crm", "k8", "d8", "exr_8", 0, now, "", &r) == QUEUE_SUBMIT_OK);
    CHECK(claim(q, now + 900, 10, 60000, &c) == 2); /* d6 and d7's job, d8's */
    stats(q, &st);
    CHECK(st.s.count[DEL_IN_FLIGHT] == 4 && st.s.count[DEL_QUEUED] == 0);
    queue_close(q);
    q = open_q("ops.db", 0);
    if (q == NULL)
        return;
    stats(q, &st);
    queue_close(q);

    /* The counts kept as rows change agree with counting the rows. */
    char path[512];
    sqlite3 *db = NULL;
    sqlite3_stmt *sq = NULL;
    int64_t counted[DEL_STATE_COUNT] = {0};
    db_path("ops.db", path, sizeof(path));
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    CHECK(sqlite3_prepare_v2(db,
                             "SELECT coalesce(d.state, j.state), count(*) FROM deletions d"
                             " JOIN jobs j ON j.id = d.job_id GROUP BY 1",
                             -1, &sq, NULL) == SQLITE_OK);
    while (sqlite3_step(sq) == SQLITE_ROW) {
        enum deletion_state ds;
        CHECK(deletion_state_from_name((const char *)sqlite3_column_text(sq, 0), &ds) == 0);
        counted[ds] = sqlite3_column_int64(sq, 1);
    }
    sqlite3_finalize(sq);
    sqlite3_close(db);
    for (int i = 0; i < DEL_STATE_COUNT; i++)
        CHECK(counted[i] == st.s.count[i]);
    CHECK(st.s.count[DEL_QUEUED] == 4 && st.s.count[DEL_IN_FLIGHT] == 0);
    CHECK(st.s.count[DEL_DEAD] == 2);
}

/* Keys past the TTL are pruned from the table, not only ignored. */
static void test_expired_keys_are_pruned(void)
{
    struct queue *q = open_q("prune.db", 1000);
    struct sub_res r;
    int64_t now = util_now_ms();
    char path[512];
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;

    if (q == NULL)
        return;
    CHECK(submit1(q, "crm", "old1", NULL, NULL, 0, now - 5000, "", &r) == QUEUE_SUBMIT_OK);
    CHECK(submit1(q, "crm", "old2", NULL, NULL, 0, now - 5000, "", &r) == QUEUE_SUBMIT_OK);
    CHECK(submit1(q, "crm", "new", NULL, NULL, 0, now, "", &r) == QUEUE_SUBMIT_OK);
    queue_close(q);
    db_path("prune.db", path, sizeof(path));
    if (!sqlite_backend) {
        PGconn *c = PQconnectdb(path);
        PGresult *pr = PQexec(c, "SELECT string_agg(key, ',') FROM dg_submissions");
        CHECK(PQresultStatus(pr) == PGRES_TUPLES_OK && PQntuples(pr) == 1);
        if (PQntuples(pr) == 1)
            CHECK_STR(PQgetvalue(pr, 0, 0), "new");
        PQclear(pr);
        PQfinish(c);
        return;
    }
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    CHECK(sqlite3_prepare_v2(db, "SELECT group_concat(key) FROM submissions", -1, &st, NULL) ==
          SQLITE_OK);
    CHECK(sqlite3_step(st) == SQLITE_ROW);
    CHECK_STR((const char *)sqlite3_column_text(st, 0), "new");
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static void test_reopen_keeps_rows_and_requeues_in_flight(void)
{
    struct queue *q = open_q("reopen.db", 0);
    struct sub_res r;
    struct claim_res c;
    struct get_res g;
    int64_t now = util_now_ms();
    char path[512], err[256] = "";

    if (q == NULL)
        return;
    CHECK(submit1(q, "crm", "k1", "d1", "exr_1", 0, now, "body1", &r) == QUEUE_SUBMIT_OK);
    CHECK(submit1(q, "crm", "k2", "d2", "exr_2", now + 100000, now, "", &r) == QUEUE_SUBMIT_OK);
    CHECK(claim(q, now, 10, 3600000, &c) == 1);
    queue_close(q);

    q = open_q("reopen.db", 0);
    if (q == NULL)
        return;
    CHECK(get(q, "d1", &g) && g.v.state == DEL_QUEUED); /* in flight at the stop */
    CHECK(get(q, "d2", &g) && g.v.state == DEL_QUEUED && g.v.next_attempt_ms == now + 100000);
    CHECK(submit1(q, "crm", "k1", "dx", "exr_x", 0, now, "", &r) == QUEUE_SUBMIT_DUPLICATE);
    CHECK_STR(r.body, "body1");
    CHECK(claim(q, util_now_ms() + 1, 10, 60000, &c) == 1);
    CHECK_STR(c.jobs[0].resource_id, "exr_1");
    queue_close(q);

    /* The schema carries its version; a newer one is refused. */
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    db_path("reopen.db", path, sizeof(path));
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    CHECK(sqlite3_prepare_v2(db, "SELECT schema_version FROM meta", -1, &st, NULL) == SQLITE_OK);
    CHECK(sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == SCHEMA_NOW);
    sqlite3_finalize(st);
    /* A write to jobs evaluates every partial index's predicate; none may
     * need an ephemeral table (an IN list of more than two values does),
     * or each claim and completion builds one per index. */
    CHECK(sqlite3_prepare_v2(db, "EXPLAIN UPDATE jobs SET state = 'deleted' WHERE id = 1", -1, &st,
                             NULL) == SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW)
        CHECK(strcmp((const char *)sqlite3_column_text(st, 1), "OpenEphemeral") != 0);
    sqlite3_finalize(st);
    /* A version 1 file (its count triggers still there, nothing of v4 and
     * after) is taken to the current version at open, and its counts keep
     * working. */
    CHECK(sqlite3_exec(db,
                       "CREATE TRIGGER count_job_insert AFTER INSERT ON jobs BEGIN SELECT 1; END;"
                       "CREATE TRIGGER count_deletion_insert AFTER INSERT ON deletions BEGIN"
                       " SELECT 1; END; UPDATE meta SET schema_version = 1;"
                       "ALTER TABLE meta DROP COLUMN audit_seq; ALTER TABLE meta DROP COLUMN"
                       " audit_mac; ALTER TABLE meta DROP COLUMN paused;"
                       "ALTER TABLE jobs DROP COLUMN lease; DROP INDEX jobs_finished;"
                       "DROP INDEX jobs_account_due; ALTER TABLE jobs DROP COLUMN account;"
                       "ALTER TABLE submissions DROP COLUMN account;"
                       "DROP INDEX deletions_accepted; DROP INDEX jobs_resource_id;"
                       "DROP TABLE paused_accounts;"
                       "CREATE TRIGGER count_job_state AFTER UPDATE OF state ON jobs BEGIN"
                       " SELECT 1; END;"
                       "CREATE TRIGGER count_deletion_change AFTER UPDATE OF state ON deletions"
                       " BEGIN SELECT 1; END;",
                       NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    q = open_q("reopen.db", 0);
    CHECK(q != NULL);
    if (q != NULL) {
        struct stats_res before, after;
        stats(q, &before);
        CHECK(submit1(q, "crm", "k9", "d9", "exr_9", 0, util_now_ms(), "", &r) == QUEUE_SUBMIT_OK);
        stats(q, &after);
        CHECK(after.s.count[DEL_QUEUED] == before.s.count[DEL_QUEUED] + 1);
        CHECK(after.s.jobs_pending == before.s.jobs_pending + 1);
        queue_close(q);
    }
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    CHECK(sqlite3_prepare_v2(db,
                             "SELECT (SELECT schema_version FROM meta), (SELECT count(*) FROM"
                             " sqlite_master WHERE type = 'trigger')",
                             -1, &st, NULL) == SQLITE_OK);
    /* Counts are kept one way, by the code: no trigger is left. */
    CHECK(sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == SCHEMA_NOW &&
          sqlite3_column_int(st, 1) == 0);
    sqlite3_finalize(st);
    CHECK(sqlite3_exec(db, "UPDATE meta SET schema_version = 99", NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    struct queue_options o = {.backend = backend, .path = path, .clock_ms = test_clock};
    q = NULL;
    CHECK(queue_open(&q, base, &o, err, sizeof(err)) == -1 && q == NULL);
    CHECK(strstr(err, "newer") != NULL);
}

static void test_second_open_fails(void)
{
    struct queue *q1 = open_q("owned.db", 0), *q2 = NULL;
    char path[512], err[256] = "";
    struct queue_options o = {.backend = backend, .path = path, .clock_ms = test_clock};

    db_path("owned.db", path, sizeof(path));
    CHECK(queue_open(&q2, base, &o, err, sizeof(err)) == -1 && q2 == NULL);
    CHECK(strstr(err, "in use") != NULL);
    queue_close(q1);
    CHECK(queue_open(&q2, base, &o, err, sizeof(err)) == 0);
    queue_close(q2);
}

/* A process that gets OK and dies without closing: the row must be there. */
static void test_kill_after_ok_keeps_row(void)
{
    pid_t pid = fork();
    struct get_res g;
    int status = 0;

    CHECK(pid >= 0);
    if (pid == 0) {
        struct queue *q;
        struct sub_res r;
        base = event_base_new();
        q = open_q("kill.db", 0);
        if (q == NULL)
            _exit(2);
        if (submit1(q, "crm", "k1", "del_kill", "exr_k", 0, util_now_ms(), "", &r) !=
            QUEUE_SUBMIT_OK)
            _exit(1);
        _exit(0); /* no close, no flush: as good as a kill */
    }
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    struct queue *q = open_q("kill.db", 0);
    if (q == NULL)
        return;
    CHECK(get(q, "del_kill", &g) && g.v.state == DEL_QUEUED);
    queue_close(q);
}

/* close answers what was already submitted, then refuses new work. */
static void test_close_answers_pending(void)
{
    struct queue *q = open_q("close.db", 0);
    struct queue_item it;
    struct queue_submission sub = {.source = "crm",
                                   .key = "k1",
                                   .now_ms = util_now_ms(),
                                   .items = &it,
                                   .n_items = 1,
                                   .response_body = ""};
    struct sub_res r = {0};

    if (q == NULL)
        return;
    make_item(&it, "d1", "exr_1", 0);
    CHECK(queue_submit(q, &sub, on_submit, &r) == 0);
    queue_close(q);
    CHECK(r.done == 1 && r.status == QUEUE_SUBMIT_OK);
}

struct close_ctx {
    struct queue *q;
    int calls, ok;
};

static void on_submit_close(const struct queue_submit_result *r, void *arg)
{
    struct close_ctx *x = arg;
    struct queue *q = x->q;

    x->calls++;
    x->ok += r->status == QUEUE_SUBMIT_OK;
    x->q = NULL;
    if (q != NULL)
        queue_close(q); /* from inside a callback, with another answer due */
}

static void test_close_from_a_callback(void)
{
    struct close_ctx x = {.q = open_q("close_cb.db", 0)};
    struct queue_item a, b;
    struct queue_submission s1 = {.source = "crm",
                                  .key = "k1",
                                  .now_ms = util_now_ms(),
                                  .items = &a,
                                  .n_items = 1,
                                  .response_body = ""};
    struct queue_submission s2 = s1;

    if (x.q == NULL)
        return;
    make_item(&a, "d1", "exr_1", 0);
    make_item(&b, "d2", "exr_2", 0);
    s2.key = "k2";
    s2.items = &b;
    CHECK(queue_submit(x.q, &s1, on_submit_close, &x) == 0);
    CHECK(queue_submit(x.q, &s2, on_submit_close, &x) == 0);
    /* The first answer closes the queue; the close answers the second
     * before it returns, so both are in once the loop has run once. */
    run_until(&x.calls);
    CHECK(x.calls == 2 && x.ok == 2);
}

static void test_state_names(void)
{
    enum deletion_state s;

    for (int i = 0; i < DEL_STATE_COUNT; i++)
        CHECK(deletion_state_from_name(deletion_state_name((enum deletion_state)i), &s) == 0 &&
              (int)s == i);
    CHECK_STR(deletion_state_name(DEL_IN_FLIGHT), "in_flight");
    CHECK(deletion_state_from_name("gone", &s) == -1);
    CHECK(deletion_state_from_name(NULL, &s) == -1);
}

static void remove_dir(void)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[512];

    if (d == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

static int64_t file_size(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 ? (int64_t)st.st_size : 0;
}

/* Sustained ingest: the checkpointer folds the WAL back into the database
 * file, so the WAL stays near its wake-up size while the database grows.
 * A checkpointer that does nothing lets the WAL hold everything. */
static void test_wal_stays_bounded_under_ingest(void)
{
    enum { BATCH = 1000, BATCHES = 200 };
    struct queue *q = open_q("wal.db", 0);
    struct queue_item *items = calloc(BATCH, sizeof(*items));
    char path[512], wal[540];
    int64_t wal_max = 0;

    CHECK(items != NULL);
    db_path("wal.db", path, sizeof(path));
    snprintf(wal, sizeof(wal), "%s-wal", path);
    for (int b = 0; b < BATCHES; b++) {
        char key[32];
        struct sub_res res = {.status = -1};
        struct queue_submission sub = {.source = "crm",
                                       .key = key,
                                       .request_id = "req_test",
                                       .now_ms = util_now_ms(),
                                       .items = items,
                                       .n_items = BATCH,
                                       .response_status = 202,
                                       .response_body = "{}"};

        snprintf(key, sizeof(key), "bulk-%d", b);
        for (int i = 0; i < BATCH; i++) {
            char del[32], rid[32];
            snprintf(del, sizeof(del), "del_w%dx%d", b, i);
            snprintf(rid, sizeof(rid), "exr_w%dx%d", b, i);
            make_item(&items[i], del, rid, 0);
        }
        CHECK(queue_submit(q, &sub, on_submit, &res) == 0);
        run_until(&res.done);
        CHECK(res.status == QUEUE_SUBMIT_OK);
        if (file_size(wal) > wal_max)
            wal_max = file_size(wal);
    }
    /* 200,000 deletions write about 60 MB of WAL frames. The checkpointer
     * wakes at 4 MiB of WAL and holds the writer back at 16 Ki frames
     * (17 MB with their headers); the writer itself starts the WAL over
     * at twice that if the checkpointer did not get to run. */
    fprintf(stderr, "wal: max %lld bytes, database %lld bytes\n", (long long)wal_max,
            (long long)file_size(path));
    CHECK(wal_max < 40LL * 1024 * 1024);
    CHECK(file_size(path) > 30LL * 1024 * 1024);
    {
        struct stats_res r;
        stats(q, &r);
        CHECK(r.s.checkpoint_failures == 0);
        CHECK(r.s.wal_bytes == file_size(wal));
        CHECK(r.s.count[DEL_QUEUED] == (int64_t)BATCH * BATCHES);
    }
    queue_close(q);
    free(items);
}

static int file_contains(const char *path, const char *needle)
{
    FILE *f = fopen(path, "rb");
    char line[4096];
    int found = 0;

    while (f != NULL && !found && fgets(line, sizeof(line), f) != NULL)
        found = strstr(line, needle) != NULL;
    if (f != NULL)
        fclose(f);
    return found;
}

static int open_with_audit(const char *name, struct audit *a, int accept, struct queue **q,
                           char *err, size_t errlen)
{
    char path[512];
    struct queue_options o = {
        .backend = backend, .path = path, .audit = a, .accept_audit_mismatch = accept};

    db_path(name, path, sizeof(path));
    *q = NULL;
    return queue_open(q, base, &o, err, errlen);
}

/* Records synced for a commit that then never happened (a crash between
 * the audit's fsync and COMMIT) are normal: the next start says so in the
 * trail and goes on. The same records with a commit mark the queue never
 * reached mean the queue lost commits: the start is refused, unless the
 * operator accepts it, which the trail records too. */
static void test_audit_ahead_of_the_queue(void)
{
    static const unsigned char key[] = "queue-test-audit-key-0123456789";
    char apath[128], err[1024] = "";
    struct audit *a = NULL;
    struct queue *q = NULL;
    struct sub_res r;
    struct audit_record rec = {.event = "accepted", .deletion_id = "del_lost", .source = "crm"};
    uint64_t seq;
    char mac[65];

    /* The audit log is a file for every backend; only the queue is a
     * schema on PostgreSQL. */
    snprintf(apath, sizeof(apath), "%s/ahead.jsonl", dir);
    CHECK(audit_open(&a, apath, key, sizeof(key) - 1, 0, err, sizeof(err)) == 0);
    if (a == NULL)
        return;
    CHECK(open_with_audit("ahead.db", a, 0, &q, err, sizeof(err)) == 0);
    if (q == NULL)
        goto done;
    CHECK(submit1(q, "crm", "k1", "d1", "exr_1", 0, util_now_ms(), "", &r) == QUEUE_SUBMIT_OK);
    queue_close(q);

    /* What the worker would have synced just before a crash. */
    audit_position(a, &seq, mac);
    CHECK(audit_append(a, &rec, NULL, NULL) == 0 && audit_sync(a) == 0);
    CHECK(open_with_audit("ahead.db", a, 0, &q, err, sizeof(err)) == 0);
    if (q == NULL)
        goto done;
    queue_close(q);
    {
        char want[128];
        snprintf(want, sizeof(want), "records %llu to %llu were written for a commit",
                 (unsigned long long)seq + 1, (unsigned long long)seq + 1);
        CHECK(file_contains(apath, "\"event\":\"uncommitted\""));
        CHECK(file_contains(apath, want));
    }

    /* Now records whose mark says the queue had committed further than it
     * has: commits were lost. */
    audit_position(a, &seq, mac);
    audit_set_committed(a, seq + 1);
    CHECK(audit_append(a, &rec, NULL, NULL) == 0 && audit_sync(a) == 0);
    err[0] = '\0';
    CHECK(open_with_audit("ahead.db", a, 0, &q, err, sizeof(err)) == -1 && q == NULL);
    CHECK(strstr(err, "the queue lost commits") != NULL);
    CHECK(open_with_audit("ahead.db", a, 1, &q, err, sizeof(err)) == 0);
    if (q != NULL)
        queue_close(q);
    CHECK(file_contains(apath, "\"event\":\"mismatch_accepted\""));
    /* Accepted once, the queue and the log agree again. */
    CHECK(open_with_audit("ahead.db", a, 0, &q, err, sizeof(err)) == 0);
    if (q != NULL)
        queue_close(q);
done:
    audit_close(a);
}

/* ---- export ---- */

struct export_res {
    int done, failed, n;
    char next[QUEUE_CURSOR_MAX + 1];
    char ids[64][QUEUE_DELETION_ID_MAX + 1];
};

static void on_export(const struct queue_deletion_view *v, int n, const char *next, int failed,
                      void *arg)
{
    struct export_res *r = arg;

    r->done = 1;
    r->failed = failed;
    r->n = n;
    snprintf(r->next, sizeof(r->next), "%s", next);
    for (int i = 0; i < n && i < 64; i++)
        snprintf(r->ids[i], sizeof(r->ids[i]), "%s", v[i].deletion_id);
}

static void export_page(struct queue *q, const struct queue_export_query *qq, const char *cursor,
                        int limit, struct export_res *r)
{
    memset(r, 0, sizeof(*r));
    CHECK(queue_export(q, qq, cursor, limit, on_export, r) == 0);
    CHECK(r->done == 0);
    run_until(&r->done);
    CHECK(r->done == 1);
}

/* n items from one source, all accepted at the same millisecond. */
static void submit_many(struct queue *q, const char *source, const char *key, const char *prefix,
                        int n, int64_t now)
{
    struct queue_item *items = calloc((size_t)n, sizeof(*items));
    struct queue_submission sub = {.source = source,
                                   .key = key,
                                   .request_id = "req_many",
                                   .now_ms = now,
                                   .items = items,
                                   .n_items = n,
                                   .response_status = 202,
                                   .response_body = ""};
    struct sub_res res = {0};
    char id[QUEUE_DELETION_ID_MAX + 1], rid[64];

    CHECK(items != NULL);
    if (items == NULL)
        return;
    for (int i = 0; i < n; i++) {
        snprintf(id, sizeof(id), "del_%s%06d", prefix, i);
        snprintf(rid, sizeof(rid), "exr_%s%06d", prefix, i);
        make_item(&items[i], id, rid, 0);
    }
    CHECK(queue_submit(q, &sub, on_submit, &res) == 0);
    run_until(&res.done);
    CHECK(res.done == 1 && res.status == QUEUE_SUBMIT_OK);
    free(items);
}

/* The shared limit holds however many grants it has made: at 50/s a
 * minute is 3,000 of them, more than the limiter row keeps, and the row
 * must then drop the oldest, not the newest that the window counts.
 * Claims every 20 ms of the queue's clock for 40 s, each job completed at
 * once; no one second may hold more than 50 of the moments granted. */
static void test_pg_shared_rate_holds_past_a_thousand_grants(void)
{
    enum { RATE = 50, SPAN_MS = 40000, STEP_MS = 20 };
    struct queue_options o = {.rate_per_second = RATE, .idempotency_ttl_ms = 86400000};
    struct queue *q = open_with("rate.db", &o);
    static int64_t at[RATE * SPAN_MS / 1000 * 2];
    int n = 0, worst = 0;
    int64_t t0 = util_now_ms();

    if (q == NULL)
        return;
    submit_many(q, "crm", "k_rate", "rate", 2 * RATE * SPAN_MS / 1000, t0);
    for (int64_t t = t0; t < t0 + SPAN_MS && n < (int)(sizeof(at) / sizeof(at[0])); t += STEP_MS) {
        struct claim_res c;

        if (claim(q, t, 8, 60000, &c) <= 0)
            continue;
        for (int i = 0; i < c.n && n < (int)(sizeof(at) / sizeof(at[0])); i++) {
            at[n++] = c.jobs[i].send_at_ms;
            fake_now = t;
            CHECK(complete(q, c.jobs[i].job_id, DEL_DELETED, 0, 1, 200, ""));
        }
    }
    fake_now = 0;
    for (int i = 0, j = 0; i < n; i++) {
        while (at[i] - at[j] >= 1000)
            j++;
        if (i - j + 1 > worst)
            worst = i - j + 1;
    }
    if (worst > RATE || n < RATE * SPAN_MS / 1000 * 9 / 10)
        fprintf(stderr, "shared rate %d/s: %d granted in %d s, %d in the busiest second\n", RATE, n,
                SPAN_MS / 1000, worst);
    CHECK(worst <= RATE);
    CHECK(n >= RATE * SPAN_MS / 1000 * 9 / 10);
    queue_close(q);
}

static void test_export_pages_filters_and_cursor(void)
{
    struct queue *q = open_q("export.db", 86400000);
    struct queue_export_query all = {.state = -1};
    struct export_res r;
    char cursor[QUEUE_CURSOR_MAX + 1] = "";
    int64_t ms, seq;
    int total = 0, pages = 0, fewer = 0;

    CHECK(queue_cursor_parse("1700000000000-42", &ms, &seq) == 0 && ms == 1700000000000LL &&
          seq == 42);
    CHECK(queue_cursor_parse("", &ms, &seq) != 0);
    CHECK(queue_cursor_parse("12", &ms, &seq) != 0);
    CHECK(queue_cursor_parse("-1-2", &ms, &seq) != 0);
    CHECK(queue_cursor_parse("1--2", &ms, &seq) != 0);
    CHECK(queue_cursor_parse("1-2-3", &ms, &seq) != 0);
    CHECK(queue_cursor_parse("1-2x", &ms, &seq) != 0);
    CHECK(queue_cursor_parse("99999999999999999999-1", &ms, &seq) != 0);

    /* Three batches: 50 at t=1000 (crm), 30 at t=2000 (billing), 20 at t=3000 (crm). */
    submit_many(q, "crm", "k1", "a", 50, 1000);
    submit_many(q, "billing", "k2", "b", 30, 2000);
    submit_many(q, "crm", "k3", "c", 20, 3000);

    /* Pages of 7 cross rows of the same millisecond without loss or repeat. */
    do {
        export_page(q, &all, cursor, 7, &r);
        CHECK(r.failed == 0);
        for (int i = 0; i < r.n; i++) {
            char want[QUEUE_DELETION_ID_MAX + 1];
            int k = total + i;

            snprintf(want, sizeof(want), "del_%s%06d",
                     k < 50   ? "a"
                     : k < 80 ? "b"
                              : "c",
                     k < 50   ? k
                     : k < 80 ? k - 50
                              : k - 80);
            CHECK_STR(r.ids[i], want);
        }
        total += r.n;
        snprintf(cursor, sizeof(cursor), "%s", r.next);
    } while (cursor[0] != '\0' && ++pages < 100);
    CHECK(total == 100);

    /* Window and source filters. */
    struct queue_export_query win = {.since_ms = 2000, .until_ms = 3000, .state = -1};
    export_page(q, &win, NULL, 1000, &r);
    CHECK(r.n == 30 && r.next[0] == '\0');
    CHECK_STR(r.ids[0], "del_b000000");
    struct queue_export_query crm = {.source = "crm", .state = DEL_QUEUED};
    total = 0;
    cursor[0] = '\0';
    do {
        export_page(q, &crm, cursor, 64, &r);
        total += r.n;
        snprintf(cursor, sizeof(cursor), "%s", r.next);
    } while (cursor[0] != '\0');
    CHECK(total == 70);
    struct queue_export_query none = {.state = DEL_DELETED};
    export_page(q, &none, NULL, 10, &r);
    CHECK(r.n == 0 && r.next[0] == '\0' && r.failed == 0);

    /* One resource, found by its id; a cursor cannot reach before since. */
    struct queue_export_query one = {.resource_id = "exr_b000007", .state = -1};
    export_page(q, &one, NULL, 10, &r);
    CHECK(r.n == 1 && r.next[0] == '\0');
    CHECK_STR(r.ids[0], "del_b000007");
    export_page(q, &win, "0-0", 1000, &r);
    CHECK(r.n == 30);
    CHECK_STR(r.ids[0], "del_b000000");
    export_page(q, &all, "nonsense", 10, &r);
    CHECK(r.failed == 1);

    /* A filter that matches nothing in a large table still answers each
     * page after QUEUE_EXPORT_SCAN rows, moving the cursor on. */
    submit_many(q, "crm", "k4", "d", 10000, 4000);
    submit_many(q, "crm", "k5", "e", 10000, 4001);
    submit_many(q, "crm", "k6", "f", 10000, 4002);
    struct queue_export_query nobody = {.source = "nobody", .state = -1};
    export_page(q, &nobody, NULL, 10, &r);
    CHECK(r.n == 0 && r.next[0] != '\0');
    snprintf(cursor, sizeof(cursor), "%s", r.next);
    for (pages = 0; cursor[0] != '\0' && pages < 10; pages++) {
        export_page(q, &nobody, cursor, 10, &r);
        fewer += r.n;
        snprintf(cursor, sizeof(cursor), "%s", r.next);
    }
    CHECK(fewer == 0 && cursor[0] == '\0' && pages == 1);
    queue_close(q);
}

int main(void)
{
    struct event *tick;
    struct timeval tv = {0, 20000};

    if (evthread_use_pthreads() != 0)
        return 1;
    backend = getenv("DG_QUEUE_BACKEND");
    int sqlite = backend == NULL || strcmp(backend, "sqlite") == 0;
    sqlite_backend = sqlite;
    pg_base = getenv("DG_QUEUE_URL");
    if (!sqlite && pg_base == NULL) {
        fprintf(stderr, "DG_QUEUE_BACKEND=%s needs DG_QUEUE_URL\n", backend);
        return 1;
    }
    snprintf(dir, sizeof(dir), "/tmp/dg_queue_XXXXXX");
    if (mkdtemp(dir) == NULL)
        return 1;
    test_state_names();
    base = event_base_new();
    tick = event_new(base, -1, EV_PERSIST, on_tick, NULL);
    event_add(tick, &tv);
    if (sqlite)
        test_kill_after_ok_keeps_row(); /* first: fork before any thread exists */
    test_submit_ok_duplicate_and_sources();
    test_coalescing();
    test_accounts_coalesce_and_claim_apart();
    test_pauses_per_account_outlive_a_reopen();
    test_one_commit_answers_each_submission_as_alone();
    test_due_limit_and_lease();
    test_complete_attempts_and_retry_at();
    test_stats_list_retry_cancel();
    test_list_in_send_order();
    test_expired_keys_are_pruned();
    test_close_answers_pending();
    test_close_from_a_callback();
    test_stale_completion_after_reclaim_is_dropped();
    test_release_hands_a_job_back_unsent();
    test_audit_ahead_of_the_queue();
    test_retention_prunes_finished_jobs_only();
    test_export_pages_filters_and_cursor();
    if (sqlite) {
        /* The store is this process's alone, in one file. */
        test_reopen_keeps_rows_and_requeues_in_flight();
        test_second_open_fails();
        test_wal_stays_bounded_under_ingest();
    } else {
        test_pg_next_due_reads_one_entry_under_stale_statistics();
        test_pg_shared_rate_holds_past_a_thousand_grants();
    }
    event_free(tick);
    event_base_free(base);
    remove_dir();
    return check_done();
}
