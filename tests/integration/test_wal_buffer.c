/*
 * test_wal_buffer.c: the WAL-buffering VFS loses nothing and corrupts
 * nothing. A database written through it (small and large commits, a
 * transaction that spills frames and rolls back, a checkpoint from a second
 * connection) reads back whole through the default VFS; and a writer killed
 * with SIGKILL at a random moment has every commit it saw succeed in the
 * file, which fails if xSync returned with frames still in memory.
 */
#include "check.h"
#include "wal_buffer.h"

#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char dir[] = "/tmp/dg_test_wal_buffer_XXXXXX";
static char path[256];

static sqlite3 *open_db(const char *vfs)
{
    sqlite3 *db = NULL;

    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs) != SQLITE_OK)
        return NULL;
    sqlite3_busy_timeout(db, 5000);
    return db;
}

static int exec(sqlite3 *db, const char *sql)
{
    return sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
}

static long long query_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    long long v = -1;

    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return -1;
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static int insert_rows(sqlite3 *db, int from, int n)
{
    sqlite3_stmt *st;
    int rc = 0;

    /* Random blobs under a random-ish key: many pages per commit, like the
     * queue's indexes keyed by random ids. */
    if (sqlite3_prepare_v2(db, "INSERT INTO t (k, v) VALUES (?1, randomblob(300))", -1, &st,
                           NULL) != SQLITE_OK)
        return -1;
    for (int i = from; i < from + n && rc == 0; i++) {
        sqlite3_bind_int64(st, 1, (long long)i * 2654435761LL % 1000003);
        rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    return rc;
}

static void unlink_db(void)
{
    const char *suffix[] = {"", "-wal", "-shm"};
    char f[300];

    for (size_t i = 0; i < sizeof(suffix) / sizeof(suffix[0]); i++) {
        snprintf(f, sizeof(f), "%s%s", path, suffix[i]);
        unlink(f);
    }
}

static void test_round_trip(void)
{
    sqlite3 *db, *other;

    unlink_db();
    db = open_db(WAL_BUFFER_VFS);
    CHECK(db != NULL);
    if (db == NULL)
        return;
    CHECK(exec(db, "PRAGMA page_size = 1024; PRAGMA journal_mode = WAL;"
                   " PRAGMA synchronous = FULL; PRAGMA cache_size = 50;"
                   " CREATE TABLE t (k INTEGER, v BLOB); CREATE INDEX t_k ON t (k)") == 0);
    sqlite3_wal_autocheckpoint(db, 0);
    /* Small commits, then one far larger than the buffer. */
    for (int i = 0; i < 50; i++)
        CHECK(exec(db, "BEGIN") == 0 && insert_rows(db, i * 10, 10) == 0 &&
              exec(db, "COMMIT") == 0);
    CHECK(exec(db, "BEGIN") == 0 && insert_rows(db, 500, 2000) == 0 && exec(db, "COMMIT") == 0);
    /* A transaction that outgrows the 50-page cache writes frames before
     * its commit; rolled back, none of it may show. */
    CHECK(exec(db, "BEGIN") == 0 && insert_rows(db, 100000, 3000) == 0 &&
          exec(db, "ROLLBACK") == 0);
    CHECK(exec(db, "BEGIN") == 0 && insert_rows(db, 2500, 100) == 0 && exec(db, "COMMIT") == 0);

    /* A second connection through the same VFS checkpoints and restarts
     * the WAL; the first keeps writing after it. */
    other = open_db(WAL_BUFFER_VFS);
    CHECK(other != NULL);
    if (other != NULL) {
        CHECK(query_int(other, "SELECT count(*) FROM t") == 2600);
        CHECK(exec(other, "PRAGMA wal_checkpoint(RESTART)") == 0);
        sqlite3_close(other);
    }
    CHECK(exec(db, "BEGIN") == 0 && insert_rows(db, 2600, 400) == 0 && exec(db, "COMMIT") == 0);
    sqlite3_close(db);

    db = open_db(NULL); /* the default VFS reads what ours wrote */
    CHECK(db != NULL);
    if (db == NULL)
        return;
    CHECK(query_int(db, "SELECT count(*) FROM t") == 3000);
    CHECK(query_int(db, "SELECT count(*) FROM t WHERE length(v) = 300") == 3000);
    sqlite3_stmt *st;
    CHECK(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) == SQLITE_OK);
    CHECK(sqlite3_step(st) == SQLITE_ROW &&
          strcmp((const char *)sqlite3_column_text(st, 0), "ok") == 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/* The child commits batch after batch and reports each commit's number on
 * the pipe once COMMIT has returned; it is killed at a random moment. */
static void writer_child(int fd)
{
    sqlite3 *db = open_db(WAL_BUFFER_VFS);

    if (db == NULL || exec(db, "PRAGMA synchronous = FULL") != 0)
        _exit(2);
    sqlite3_wal_autocheckpoint(db, 0);
    for (int b = 0;; b++) {
        char sql[64];
        snprintf(sql, sizeof(sql), "INSERT INTO batches (b) VALUES (%d)", b);
        if (exec(db, "BEGIN") != 0 || insert_rows(db, b * 40, 40) != 0 || exec(db, sql) != 0 ||
            exec(db, "COMMIT") != 0)
            _exit(3);
        if (write(fd, &b, sizeof(b)) != (ssize_t)sizeof(b))
            _exit(5);
    }
}

static void test_kill(void)
{
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    for (int round = 0; round < 10; round++) {
        sqlite3 *db;
        int fds[2], b, last = -1;
        pid_t pid;

        unlink_db();
        db = open_db(NULL);
        CHECK(db != NULL);
        if (db == NULL)
            return;
        CHECK(exec(db, "PRAGMA page_size = 1024; PRAGMA journal_mode = WAL;"
                       " CREATE TABLE t (k INTEGER, v BLOB); CREATE INDEX t_k ON t (k);"
                       " CREATE TABLE batches (b INTEGER)") == 0);
        sqlite3_close(db);
        CHECK(pipe(fds) == 0);
        pid = fork();
        if (pid == 0) {
            close(fds[0]);
            writer_child(fds[1]);
        }
        close(fds[1]);
        /* The kill lands at a random point after the first commit: a fixed
         * delay alone finds no commit done on a loaded machine. */
        if (read(fds[0], &b, sizeof(b)) == (ssize_t)sizeof(b))
            last = b;
        usleep(20000 + (useconds_t)(rand() % 100000));
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        while (read(fds[0], &b, sizeof(b)) == (ssize_t)sizeof(b))
            last = b;
        close(fds[0]);
        CHECK(last >= 0); /* the child got some commits done */

        db = open_db(NULL);
        CHECK(db != NULL);
        if (db == NULL)
            return;
        /* Every commit the child saw return is there; the one it was in the
         * middle of may be there too, whole or not at all. */
        long long rows = query_int(db, "SELECT count(*) FROM t");
        long long max_b = query_int(db, "SELECT coalesce(max(b), -1) FROM batches");
        CHECK(max_b >= last);
        CHECK(rows == (max_b + 1) * 40);
        if (max_b < last || rows != (max_b + 1) * 40)
            fprintf(stderr, "round %d: child saw commit %d; file has batch %lld, %lld rows\n",
                    round, last, max_b, rows);
        sqlite3_close(db);
    }
}

int main(void)
{
    CHECK(wal_buffer_register() == 0);
    CHECK(wal_buffer_register() == 0); /* twice is harmless */
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(path, sizeof(path), "%s/t.db", dir);
    test_round_trip();
    test_kill();
    unlink_db();
    rmdir(dir);
    return check_done();
}
