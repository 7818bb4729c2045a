/*
 * queue_pg_schema.c: the PostgreSQL queue's tables, as numbered
 * migrations applied forward at open. Replicas that start together take
 * turns under an advisory lock, so each finds the schema either untouched
 * or complete.
 */
#include "queue_pg.h"

#include <stdio.h>

#define PG_LOCK_KEY "7310472183049221" /* pg_advisory_lock key of the migrations */

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
    /* v2: jobs and submissions belong to an Extend account, what was queued
     * before to "default"; one pending job per resource in each account;
     * each account's claims read their own jobs by due time. */
    "ALTER TABLE dg_jobs ADD COLUMN account text NOT NULL DEFAULT 'default';"
    "ALTER TABLE dg_submissions ADD COLUMN account text NOT NULL DEFAULT 'default';"
    "DROP INDEX dg_jobs_pending;"
    "CREATE UNIQUE INDEX dg_jobs_pending ON dg_jobs (account, resource, resource_id)"
    " WHERE state IN ('queued', 'in_flight');"
    "CREATE INDEX dg_jobs_account_queued_due ON dg_jobs (account, due_ms) WHERE state = 'queued';"
    "CREATE INDEX dg_jobs_account_leased_due ON dg_jobs (account, due_ms)"
    " WHERE state = 'in_flight';",
};
#define SCHEMA_VERSION ((int)(sizeof(migrations) / sizeof(migrations[0])))

const char *const queue_pg_count_names[DEL_STATE_COUNT + 1] = {
    "queued", "in_flight", "deleted", "not_found", "rejected", "dead", "cancelled", "jobs_pending"};

/* Replicas that start together must not migrate at once: an advisory lock
 * held for the migration makes the others wait, then find it done. */
int queue_pg_migrate(struct queue_store *q, char *err, size_t errlen)
{
    PGresult *r;
    int64_t version = 0;
    int rc = -1;

    if (queue_pg_do(q, "SELECT pg_advisory_lock(" PG_LOCK_KEY ")", NULL) != 0)
        goto fail;
    if (queue_pg_do(q, "BEGIN", NULL) != 0 ||
        queue_pg_do(
            q,
            "CREATE TABLE IF NOT EXISTS dg_meta (id int PRIMARY KEY DEFAULT 1 CHECK (id = 1),"
            " schema_version int NOT NULL)",
            NULL) != 0 ||
        queue_pg_do(q, "INSERT INTO dg_meta (schema_version) VALUES (0) ON CONFLICT DO NOTHING",
                    NULL) != 0 ||
        (r = queue_pg_exec(q, "SELECT schema_version FROM dg_meta", NULL)) == NULL)
        goto sql_fail;
    version = queue_pg_i64(r, 0, 0);
    PQclear(r);
    if (version > SCHEMA_VERSION || version < 0) {
        snprintf(err, errlen,
                 "queue database schema version %lld is newer than this gateway knows (%d): "
                 "run a newer gateway",
                 (long long)version, SCHEMA_VERSION);
        goto rollback;
    }
    for (int v = (int)version; v < SCHEMA_VERSION; v++) {
        if (queue_pg_do(q, migrations[v], NULL) != 0)
            goto sql_fail;
    }
    {
        struct pg_args a = {.n = 0};
        arg_i64(&a, SCHEMA_VERSION);
        if (queue_pg_do(q, "UPDATE dg_meta SET schema_version = $1", &a) != 0)
            goto sql_fail;
    }
    for (size_t i = 0; i < sizeof(queue_pg_count_names) / sizeof(queue_pg_count_names[0]); i++) {
        struct pg_args a = {.n = 0};
        arg_text(&a, q->replica);
        arg_text(&a, queue_pg_count_names[i]);
        if (queue_pg_do(
                q, "INSERT INTO dg_counts (replica, name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &a) != 0)
            goto sql_fail;
    }
    if (q->adopt_default[0] != '\0') {
        struct pg_args a = {.n = 0};
        arg_text(&a, q->adopt_default);
        if (queue_pg_do(q, "UPDATE dg_jobs SET account = $1 WHERE account = 'default'", &a) != 0)
            goto sql_fail;
    }
    /* One limiter row per configured account, shared by every replica. */
    for (int i = 0; i < q->n_accounts; i++) {
        struct pg_args a = {.n = 0};
        arg_text(&a, q->accounts[i].id);
        if (queue_pg_do(q, "INSERT INTO dg_limiter (account) VALUES ($1) ON CONFLICT DO NOTHING",
                        &a) != 0)
            goto sql_fail;
    }
    if (q->adopt_default[0] != '\0') {
        /* An operator's pause of "default" goes with its jobs. */
        struct pg_args a = {.n = 0};
        arg_text(&a, q->adopt_default);
        if (queue_pg_do(q,
                        "UPDATE dg_limiter SET paused = true WHERE account = $1 AND EXISTS"
                        " (SELECT 1 FROM dg_limiter WHERE account = 'default' AND paused)",
                        &a) != 0 ||
            queue_pg_do(q, "UPDATE dg_limiter SET paused = false WHERE account = 'default'",
                        NULL) != 0)
            goto sql_fail;
    }
    if (queue_pg_do(q, "COMMIT", NULL) != 0)
        goto sql_fail;
    rc = 0;
    goto unlock;
sql_fail:
    snprintf(err, errlen, "queue database: could not create or migrate the schema (logged)");
rollback:
    (void)queue_pg_do(q, "ROLLBACK", NULL);
unlock:
    (void)queue_pg_do(q, "SELECT pg_advisory_unlock(" PG_LOCK_KEY ")", NULL);
fail:
    return rc;
}
