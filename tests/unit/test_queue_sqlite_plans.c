/*
 * test_queue_sqlite_plans.c: the SQLite backend's statements on the paths
 * an operator, a scrape or the dispatcher hits cost what their limit
 * allows, not what the queue holds. Each is planned (EXPLAIN QUERY PLAN)
 * on a queue's real schema and must neither sort ("USE TEMP B-TREE":
 * every matching row read before the first comes out) nor scan a table
 * without an index. A million queued jobs make either a second on the
 * worker, which holds up every commit behind it.
 */
#include "check.h"
#include "queue.h"
#include "queue_sqlite.h"

#include <event2/event.h>
#include <sqlite3.h>
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

    const char *suffix[] = {"", "-wal", "-shm", ".lock"};
    for (size_t i = 0; i < sizeof(suffix) / sizeof(suffix[0]); i++) {
        char f[160];
        snprintf(f, sizeof(f), "%s%s", path, suffix[i]);
        unlink(f);
    }
    rmdir(dir);
}

int main(void)
{
    test_operator_and_dispatch_statements_walk_indexes();
    return check_done();
}
