/*
 * test_queue_sqlite_scale.c: the SQLite backend's promises that only a big
 * queue or a bulk load shows.
 *
 * Plans: the statements on the paths an operator, a scrape or the
 * dispatcher hits cost what their limit allows, not what the queue holds.
 * Each is planned (EXPLAIN QUERY PLAN) on a queue's real schema and must
 * neither sort ("USE TEMP B-TREE": every matching row read before the
 * first comes out) nor scan a table without an index. A million queued
 * jobs make either a second on the worker, which holds up every commit
 * behind it.
 *
 * WAL: concurrent bulk batches of random ids (a retention sweep from many
 * senders) make each commit large and each checkpoint pass long; the WAL
 * must stay bounded all the same.
 */
#include "check.h"
#include "queue.h"
#include "queue_sqlite.h"
#include "util.h"

#include <event2/event.h>
#include <event2/thread.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Bounded by their limit, or by a key that names a few rows. */
static const enum stmt_id bounded[] = {
    S_JOB_FIND_PENDING,  S_CLAIM_SELECT,   S_NEXT_DUE,       S_VIEW_GET,   S_VIEW_ATTEMPTS,
    S_LIST_BY_JOB_STATE, S_LIST_CANCELLED, S_STATS_PENDING,  S_DEL_TARGET, S_JOB_LIVE_COUNT,
    S_DEAD_JOBS,         S_PRUNE_PICK,     S_PRUNE_OWN_PICK, S_SUB_PRUNE,  S_EXPORT_SCAN,
};

/* Small tables of a fixed size: a scan of one is a few rows. */
static int small_table_scan(const char *detail)
{
    return strcmp(detail, "SCAN counts") == 0 || strcmp(detail, "SCAN meta") == 0 ||
           strcmp(detail, "SCAN CONSTANT ROW") == 0;
}

/* 0 when the statement's plan has neither a sort nor an unindexed scan. */
static int plan_ok(sqlite3 *db, enum stmt_id id)
{
    char sql[4096];
    sqlite3_stmt *st = NULL;
    int ok = 1;

    snprintf(sql, sizeof(sql), "EXPLAIN QUERY PLAN %s", sq_stmt_sql[id]);
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "cannot plan %s: %s\n", sq_stmt_sql[id], sqlite3_errmsg(db));
        return -1;
    }
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *d = (const char *)sqlite3_column_text(st, 3);
        int sorts = strstr(d, "TEMP B-TREE") != NULL;
        int scans =
            strncmp(d, "SCAN ", 5) == 0 && strstr(d, " INDEX ") == NULL && !small_table_scan(d);
        if (sorts || scans) {
            fprintf(stderr, "plan of \"%s\": %s\n", sq_stmt_sql[id], d);
            ok = 0;
        }
    }
    sqlite3_finalize(st);
    return ok ? 0 : -1;
}

static void remove_queue(const char *dir, const char *path)
{
    const char *suffix[] = {"", "-wal", "-shm", ".lock"};
    for (size_t i = 0; i < sizeof(suffix) / sizeof(suffix[0]); i++) {
        char f[160];
        snprintf(f, sizeof(f), "%s%s", path, suffix[i]);
        unlink(f);
    }
    rmdir(dir);
}

static void test_operator_and_dispatch_statements_walk_indexes(void)
{
    char dir[] = "/tmp/dg_plans_XXXXXX", path[128], err[256];
    struct event_base *base = event_base_new();
    struct queue *q = NULL;
    sqlite3 *db = NULL;

    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/queue.db", dir);
    struct queue_options o = {.path = path, .idempotency_ttl_ms = 86400000};
    /* The queue makes the schema, at its current version. */
    CHECK(queue_open(&q, base, &o, err, sizeof(err)) == 0);
    queue_close(q);
    CHECK(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
    for (size_t i = 0; i < sizeof(bounded) / sizeof(bounded[0]); i++)
        CHECK(plan_ok(db, bounded[i]) == 0);
    sqlite3_close(db);
    event_base_free(base);
    remove_queue(dir, path);
}

/* ---- the WAL under concurrent bulk batches ---- */

enum { BULK_BATCH = 1000, BULK_BATCHES = 240, BULK_SENDERS = 16 };

static struct bulk {
    struct event_base *base;
    struct queue *q;
    struct queue_item *items;
    char wal[160];
    int sent, done, failed;
    int64_t wal_max;
} bulk;

static void bulk_send(void);

static void on_bulk(const struct queue_submit_result *res, void *arg)
{
    struct stat st;

    (void)arg;
    bulk.done++;
    bulk.failed += res->status != QUEUE_SUBMIT_OK;
    if (stat(bulk.wal, &st) == 0 && st.st_size > bulk.wal_max)
        bulk.wal_max = st.st_size;
    if (bulk.sent < BULK_BATCHES)
        bulk_send();
    else if (bulk.done == BULK_BATCHES)
        event_base_loopbreak(bulk.base);
}

/* One batch of distinct, random run ids: each lands on its own page of
 * the resource index, as real ids do. */
static void bulk_send(void)
{
    char key[32];
    int b = bulk.sent++;

    snprintf(key, sizeof(key), "bulk-%d", b);
    memset(bulk.items, 0, BULK_BATCH * sizeof(*bulk.items));
    for (int i = 0; i < BULK_BATCH; i++) {
        struct queue_item *it = &bulk.items[i];
        it->resource = RES_EXTRACT_RUN;
        snprintf(it->deletion_id, sizeof(it->deletion_id), "del_b%05dx%04d", b, i);
        snprintf(it->resource_id, sizeof(it->resource_id), "exr_%08lx%08lx%04d",
                 (unsigned long)random(), (unsigned long)random(), i);
        snprintf(it->reason, sizeof(it->reason), "retention sweep");
    }
    struct queue_submission sub = {.source = "crm",
                                   .key = key,
                                   .request_id = "req_bulk",
                                   .now_ms = util_now_ms(),
                                   .items = bulk.items,
                                   .n_items = BULK_BATCH,
                                   .response_status = 202,
                                   .response_body = "{}"};
    if (queue_submit(bulk.q, &sub, on_bulk, NULL) != 0) {
        bulk.done++;
        bulk.failed++;
    }
}

static void test_wal_stays_bounded_under_concurrent_bulk_batches(void)
{
    char dir[] = "/tmp/dg_bulk_XXXXXX", path[128], err[256];

    memset(&bulk, 0, sizeof(bulk));
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/queue.db", dir);
    snprintf(bulk.wal, sizeof(bulk.wal), "%s-wal", path);
    bulk.base = event_base_new();
    bulk.items = calloc(BULK_BATCH, sizeof(*bulk.items));
    struct queue_options o = {.path = path, .idempotency_ttl_ms = 86400000};
    CHECK(bulk.base != NULL && bulk.items != NULL);
    CHECK(queue_open(&bulk.q, bulk.base, &o, err, sizeof(err)) == 0);
    for (int i = 0; i < BULK_SENDERS; i++)
        bulk_send();
    /* The queue's completion event is only ever activated, never pending. */
    event_base_loop(bulk.base, EVLOOP_NO_EXIT_ON_EMPTY);
    queue_close(bulk.q);
    /* 240,000 deletions from 16 senders: commits of up to 16,000 rows.
     * The writer waits out a checkpoint pass and restarts the WAL itself
     * at 32 Ki frames (34 MB with headers); one commit may come on top.
     * Without that wait the WAL grew behind each long pass: 150 MB and
     * more by 200,000 queued. */
    fprintf(stderr, "wal: max %lld bytes\n", (long long)bulk.wal_max);
    CHECK(bulk.failed == 0);
    CHECK(bulk.done == BULK_BATCHES);
    CHECK(bulk.wal_max < 64LL * 1024 * 1024);
    free(bulk.items);
    event_base_free(bulk.base);
    remove_queue(dir, path);
}

int main(void)
{
    if (evthread_use_pthreads() != 0)
        return 1;
    test_operator_and_dispatch_statements_walk_indexes();
    test_wal_stays_bounded_under_concurrent_bulk_batches();
    return check_done();
}
