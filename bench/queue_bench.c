/*
 * queue_bench.c: how many durable submissions per second the queue takes
 * with grouped commits (SQLite; PostgreSQL when QUEUE_BENCH_PG_URL is set). 64 clients each submit
 * one single-item deletion, wait for its OK (committed and fsynced), then send the next, until N
 * are done. Each submission is what a webhook makes: a random event id as its key, and ITEMS
 * deletions (the run and its file) with random resource ids, every change audited. Prints
 * submissions/s, commits/s, the mean group and the process's CPU time per submission. Then it
 * drains what it queued as the dispatcher does (claims of up to 128 jobs, one completion per job,
 * "deleted") and prints the CPU time per job.
 *
 *   queue_bench [N] [DIR] [CLIENTS] [ITEMS]   (defaults: 20000, a fresh
 *                                      directory in /tmp, 64 clients, 2 items)
 *
 * ITEMS up to 1000: each submission is then an internal batch of that
 * many distinct runs (the bulk ingest's storage limit: items/s is
 * submissions/s times ITEMS).
 *
 * With one fsync per commit, each client waits about two commit times per
 * submission, so the rate is close to CLIENTS / (2 x fsync latency) until
 * the worker's CPU becomes the limit.
 */
#include "audit.h"
#include "queue.h"
#include "util.h"

#include <event2/event.h>
#include <event2/thread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static struct event_base *base;
static struct queue *q;
static int64_t n_total, n_sent, n_done, n_failed;
static int clients = 64;
static int n_items = 2;

static void submit_next(void);

/* The drain: one claim at a time, every claimed job completed at once. */
static int64_t n_jobs_done, n_outcomes_pending;
static int claiming;

static void claim_more(void);

static void on_outcome(int failed, void *arg)
{
    (void)arg;
    if (failed)
        n_failed++;
    n_outcomes_pending--;
    if (n_outcomes_pending == 0 && !claiming)
        claim_more();
}

static void on_claim(const struct queue_job *jobs, int n, int64_t next_due_ms, int failed,
                     void *arg)
{
    (void)next_due_ms, (void)arg;
    claiming = 0;
    if (failed || n == 0) {
        if (failed)
            n_failed++;
        event_base_loopbreak(base);
        return;
    }
    for (int i = 0; i < n; i++) {
        struct queue_outcome o = {.job_id = jobs[i].job_id,
                                  .lease = jobs[i].lease,
                                  .state = DEL_DELETED,
                                  .started_ms = util_now_ms(),
                                  .finished_ms = util_now_ms(),
                                  .http_status = 204,
                                  .counts_as_attempt = 1};
        snprintf(o.upstream_request_id, sizeof(o.upstream_request_id), "req_bench_%d", i);
        if (queue_complete(q, &o, on_outcome, NULL) == 0)
            n_outcomes_pending++;
        n_jobs_done++;
    }
    claim_more(); /* the next claim joins the completions' commit */
}

static void claim_more(void)
{
    claiming = 1;
    if (queue_claim(q, 128, 600000, on_claim, NULL) != 0) {
        claiming = 0;
        event_base_loopbreak(base);
    }
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void on_submit(const struct queue_submit_result *res, void *arg)
{
    (void)arg;
    n_done++;
    if (res->status != QUEUE_SUBMIT_OK)
        n_failed++;
    if (n_sent < n_total)
        submit_next();
    else if (n_done == n_total)
        event_base_loopbreak(base);
}

static void submit_next(void)
{
    static const enum resource kinds[] = {RES_EXTRACT_RUN, RES_FILE};
    static const char *const prefix[] = {"exr", "file"};
    static struct queue_item *items;
    char key[32];
    struct queue_submission sub = {.source = "extend",
                                   .key = key,
                                   .request_id = "req_bench",
                                   .n_items = n_items,
                                   .response_status = 200,
                                   .response_body = "{\"status\":\"accepted\"}"};
    /* Extend's ids are random, so every key lands on its own index page. */
    unsigned long long r = (unsigned long long)random() << 31 ^ (unsigned long long)random();

    if (items == NULL && (items = calloc((size_t)n_items, sizeof(*items))) == NULL) {
        n_done++;
        n_failed++;
        return;
    }
    sub.items = items;
    n_sent++;
    snprintf(key, sizeof(key), "evt_%016llx", r);
    memset(items, 0, (size_t)n_items * sizeof(*items));
    for (int k = 0; k < n_items; k++) {
        /* Two items: a webhook's run and file; more: an internal batch of
         * distinct runs, each id random. */
        unsigned long long rk = k < 2 ? r : (unsigned long long)random() << 31 ^ random();
        int webhook = n_items <= 2 && k < 2;
        items[k].resource = webhook ? kinds[k] : RES_EXTRACT_RUN;
        util_sortable_id("del_", util_now_ms(), items[k].deletion_id, sizeof(items[k].deletion_id));
        snprintf(items[k].resource_id, sizeof(items[k].resource_id), "%s_%016llx%04x",
                 webhook ? prefix[k] : "exr", rk, k);
    }
    sub.now_ms = util_now_ms();
    if (queue_submit(q, &sub, on_submit, NULL) != 0) {
        n_done++;
        n_failed++;
    }
}

int main(int argc, char **argv)
{
    char tmp[64] = "/tmp/dg_queue_bench_XXXXXX", path[512], err[256];
    const char *dir = argc > 2 && argv[2][0] != '\0' ? argv[2] : NULL;
    int64_t t0, t1;
    uint64_t commits;

    n_total = argc > 1 ? atoll(argv[1]) : 20000;
    clients = argc > 3 ? atoi(argv[3]) : 64;
    n_items = argc > 4 ? atoi(argv[4]) : 2;
    if (clients < 1 || clients > 100000 || n_total < clients || n_total > 100000000 ||
        n_items < 1 || n_items > 1000) {
        fprintf(stderr, "usage: queue_bench [N >= CLIENTS] [DIR] [CLIENTS] [ITEMS 1..1000]\n");
        return 2;
    }
    if (dir == NULL && (dir = mkdtemp(tmp)) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(path, sizeof(path), "%s/bench.db", dir);
    if (evthread_use_pthreads() != 0 || (base = event_base_new()) == NULL)
        return 1;
    static const unsigned char audit_key[32] = "queue_bench audit key, not real";
    struct audit *audit;
    char audit_path[512];
    snprintf(audit_path, sizeof(audit_path), "%s/audit.jsonl", dir);
    if (audit_open(&audit, audit_path, audit_key, sizeof(audit_key), 0, err, sizeof(err)) != 0) {
        fprintf(stderr, "audit_open: %s\n", err);
        return 1;
    }
    struct queue_options o = {.path = path, .idempotency_ttl_ms = 86400000, .audit = audit};
    /* The same load on the PostgreSQL backend: QUEUE_BENCH_PG_URL is a
     * conninfo whose database is emptied by the caller. */
    const char *pg_url = getenv("QUEUE_BENCH_PG_URL");
    if (pg_url != NULL && pg_url[0] != '\0') {
        o.backend = "postgres";
        o.path = pg_url;
    }
    if (queue_open(&q, base, &o, err, sizeof(err)) != 0) {
        fprintf(stderr, "queue_open: %s\n", err);
        return 1;
    }
    t0 = util_mono_ms();
    for (int c = 0; c < clients; c++)
        submit_next();
    /* The queue's completion event is never pending, only activated, so
     * the loop must not stop when it has nothing else to wait for. */
    event_base_loop(base, EVLOOP_NO_EXIT_ON_EMPTY);
    t1 = util_mono_ms();
    commits = queue_commits(q);
    double cpu = cpu_seconds();

    int64_t d0 = util_mono_ms();
    uint64_t c0 = queue_commits(q);
    claim_more();
    event_base_loop(base, EVLOOP_NO_EXIT_ON_EMPTY);
    while (n_outcomes_pending > 0 && event_base_loop(base, EVLOOP_ONCE) == 0)
        ;
    double drain_secs = (double)(util_mono_ms() - d0 > 0 ? util_mono_ms() - d0 : 1) / 1000.0;
    double drain_cpu = cpu_seconds() - cpu;
    uint64_t drain_commits = queue_commits(q) - c0;
    queue_close(q);
    audit_close(audit);
    event_base_free(base);

    double secs = (double)(t1 - t0 > 0 ? t1 - t0 : 1) / 1000.0;
    printf("%lld submissions (%lld failed) from %d clients in %.2f s: %.0f submissions/s, "
           "%llu commits (%.0f commits/s, %.1f per commit), CPU %.1f us per submission\n",
           (long long)n_total, (long long)n_failed, clients, secs, (double)n_total / secs,
           (unsigned long long)commits, (double)commits / secs,
           commits > 0 ? (double)n_total / (double)commits : 0.0, cpu * 1e6 / (double)n_total);
    printf("drained %lld jobs in %.2f s: %.0f jobs/s, %llu commits, CPU %.1f us per job\n",
           (long long)n_jobs_done, drain_secs, (double)n_jobs_done / drain_secs,
           (unsigned long long)drain_commits,
           n_jobs_done > 0 ? drain_cpu * 1e6 / (double)n_jobs_done : 0.0);
    printf(
        "BENCH submissions_per_s=%.0f items_per_s=%.0f cpu_us_per_item=%.1f drain_jobs_per_s=%.0f "
        "cpu_us_per_job=%.1f failed=%lld\n",
        (double)n_total / secs, (double)n_total * n_items / secs,
        cpu * 1e6 / ((double)n_total * n_items), (double)n_jobs_done / drain_secs,
        n_jobs_done > 0 ? drain_cpu * 1e6 / (double)n_jobs_done : 0.0, (long long)n_failed);
    if (dir == tmp) {
        const char *suffix[] = {"", "-wal", "-shm", ".lock"};
        unlink(audit_path);
        for (size_t i = 0; i < sizeof(suffix) / sizeof(suffix[0]); i++) {
            char f[600];
            snprintf(f, sizeof(f), "%s%s", path, suffix[i]);
            unlink(f);
        }
        rmdir(tmp);
    }
    return n_failed == 0 ? 0 : 1;
}
