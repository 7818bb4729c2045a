/*
 * claim_probe.c: what claiming the next jobs costs on a queue of a given
 * size, to show that it does not grow with the backlog. Opens an existing
 * SQLite queue (the gateway stopped: the file is flocked while it runs),
 * or fills a fresh one with FILL queued jobs first, resumes it if it is
 * paused, then ROUNDS times claims up to 16 due jobs as the dispatcher
 * does and hands them straight back (queue_release, due now), so the
 * queue keeps its size and the next claim takes the next oldest. Prints
 * one "BENCH ..." line: the median and p90 wall time of a claim (its
 * commit and fsync included), the CPU time per claim and release, and how
 * many jobs a claim got.
 *
 *   claim_probe PATH [ROUNDS] [FILL]     (defaults: 200 rounds, no fill)
 *
 * With CLAIM_PROBE_PG_URL (a conninfo) the queue is that PostgreSQL
 * database instead and PATH is not read; the wall time is then what to
 * compare, since the claim's work runs in the server, not in this process.
 *
 * No audit log: claims and releases write no audit record.
 */
#include "queue.h"
#include "util.h"

#include <event2/event.h>
#include <event2/thread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define CLAIM_MAX 16
#define FILL_BATCH 1000

static struct event_base *base;
static struct queue *q;
static int rounds, round_no, pending, failed;
static int64_t fill_left, claimed_total;
static double *claim_us, t_claim;

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void claim_next(void);

static void on_release(int bad, void *arg)
{
    (void)arg;
    failed += bad;
    if (--pending == 0)
        claim_next();
}

static void on_claim(const struct queue_job *jobs, int n, int64_t next_due_ms, int bad, void *arg)
{
    (void)next_due_ms, (void)arg;
    claim_us[round_no++] = now_us() - t_claim;
    claimed_total += n;
    if (bad || n == 0) {
        failed += bad || n == 0;
        event_base_loopbreak(base);
        return;
    }
    pending = n;
    for (int i = 0; i < n; i++) {
        if (queue_release(q, jobs[i].job_id, jobs[i].lease, util_now_ms(), on_release, NULL) != 0) {
            failed++;
            pending--;
        }
    }
    if (pending == 0)
        claim_next();
}

static void claim_next(void)
{
    if (round_no >= rounds) {
        event_base_loopbreak(base);
        return;
    }
    t_claim = now_us();
    if (queue_claim(q, CLAIM_MAX, 600000, on_claim, NULL) != 0) {
        failed++;
        event_base_loopbreak(base);
    }
}

/* The backlog is loaded with dispatching paused, and a paused account's
 * claims get nothing on PostgreSQL (the pause is kept with the queue):
 * resume first. */
static void on_resumed(int bad, void *arg)
{
    (void)arg;
    failed += bad;
    event_base_loopbreak(base);
}

static void fill_next(void);

static void on_fill(const struct queue_submit_result *res, void *arg)
{
    (void)arg;
    if (res->status != QUEUE_SUBMIT_OK) {
        failed++;
        event_base_loopbreak(base);
        return;
    }
    fill_next();
}

/* One submission of up to FILL_BATCH distinct runs, as an internal batch. */
static void fill_next(void)
{
    static struct queue_item items[FILL_BATCH];
    static int64_t seq;
    char key[40];
    int n = fill_left > FILL_BATCH ? FILL_BATCH : (int)fill_left;

    if (n == 0) {
        event_base_loopbreak(base);
        return;
    }
    fill_left -= n;
    memset(items, 0, sizeof(items));
    for (int i = 0; i < n; i++) {
        items[i].resource = RES_EXTRACT_RUN;
        util_sortable_id("del_", util_now_ms(), items[i].deletion_id, sizeof(items[i].deletion_id));
        snprintf(items[i].resource_id, sizeof(items[i].resource_id), "exr_probe_%08llx%08lx",
                 (unsigned long long)seq++, (unsigned long)random());
    }
    snprintf(key, sizeof(key), "msg_probe_%lld", (long long)seq);
    struct queue_submission sub = {.source = "probe",
                                   .key = key,
                                   .request_id = "req_probe",
                                   .now_ms = util_now_ms(),
                                   .items = items,
                                   .n_items = n,
                                   .response_status = 202,
                                   .response_body = "{}"};
    if (queue_submit(q, &sub, on_fill, NULL) != 0) {
        failed++;
        event_base_loopbreak(base);
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    char err[256];
    if (argc < 2) {
        fprintf(stderr, "usage: claim_probe PATH [ROUNDS] [FILL]\n");
        return 2;
    }
    rounds = argc > 2 ? atoi(argv[2]) : 200;
    fill_left = argc > 3 ? atoll(argv[3]) : 0;
    if (rounds < 1 || rounds > 100000 || fill_left < 0 || fill_left > 100000000) {
        fprintf(stderr, "claim_probe: ROUNDS 1..100000, FILL 0..100000000\n");
        return 2;
    }
    claim_us = calloc((size_t)rounds, sizeof(*claim_us));
    if (claim_us == NULL || evthread_use_pthreads() != 0 || (base = event_base_new()) == NULL)
        return 1;
    struct queue_options o = {
        .path = argv[1], .idempotency_ttl_ms = 86400000, .accept_audit_mismatch = 1};
    const char *pg_url = getenv("CLAIM_PROBE_PG_URL");
    if (pg_url != NULL && pg_url[0] != '\0') {
        o.backend = "postgres";
        o.path = pg_url;
    }
    if (queue_open(&q, base, &o, err, sizeof(err)) != 0) {
        fprintf(stderr, "queue_open: %s\n", err);
        return 1;
    }
    if (fill_left > 0) {
        fill_next();
        event_base_loop(base, EVLOOP_NO_EXIT_ON_EMPTY);
    }
    if (queue_set_paused(q, NULL, 0, "claim_probe", on_resumed, NULL) != 0)
        failed++;
    else
        event_base_loop(base, EVLOOP_NO_EXIT_ON_EMPTY);
    double cpu0 = cpu_seconds();
    claim_next();
    event_base_loop(base, EVLOOP_NO_EXIT_ON_EMPTY);
    double cpu = cpu_seconds() - cpu0;
    queue_close(q);
    event_base_free(base);

    int n = round_no;
    qsort(claim_us, (size_t)n, sizeof(*claim_us), cmp_double);
    printf("BENCH rounds=%d claim_median_us=%.0f claim_p90_us=%.0f cpu_us_per_round=%.0f "
           "jobs_per_claim=%.1f failed=%d\n",
           n, n > 0 ? claim_us[n / 2] : 0.0, n > 0 ? claim_us[(n * 9) / 10] : 0.0,
           n > 0 ? cpu * 1e6 / n : 0.0, n > 0 ? (double)claimed_total / n : 0.0, failed);
    free(claim_us);
    return failed == 0 ? 0 : 1;
}
