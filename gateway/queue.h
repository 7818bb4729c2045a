/*
 * queue.h: the durable queue of deletions, behind one small interface so
 * that backends (queue_sqlite.c now, queue_pg.c for replicas) are
 * interchangeable: queue.c does what is the same for all of them, each
 * backend only its storage (queue_backend.h).
 *
 * Model. A *deletion* is one request to delete one resource: it has a
 * public id ("del_..."), who asked and why. A *job* is the work of deleting
 * one resource at Extend: two deletions of the same resource that arrive
 * while a job for it is still pending (queued or in_flight) share that job
 * ("coalesce"), so Extend sees one DELETE. A deletion's state is its job's.
 *
 *   queued -> in_flight -> deleted | not_found | rejected | dead
 *   queued -> cancelled (operator);  dead | rejected -> queued (operator retry)
 *   in_flight -> queued (retry later, handed back unsent, or lease expired)
 *
 * Leases. A claim moves a job to in_flight with a lease that ends at the
 * backend's clock plus lease_ms, and a lease token that changes with every
 * claim. A completion or release names the token: if the job was claimed
 * again since (its lease ended and someone else took it), the late one is
 * dropped and counted, so it can never overwrite newer news.
 *
 * Every call is asynchronous: it copies its arguments, returns at once,
 * and its callback runs later on the event loop thread of the base passed
 * to queue_open(). A call returns -1 only when the queue is closing (its
 * callback will not run); every callback says whether the operation
 * failed with an int failed argument (or, for submit, status
 * QUEUE_SUBMIT_FAILED). The worker thread groups
 * every operation that arrived during one commit into the next commit, so
 * an fsync is shared by many requests. A submit callback with
 * QUEUE_SUBMIT_OK runs only after the rows are committed and fsynced: only
 * then may the caller answer 2xx.
 *
 * Audit: when given an audit log, the backend appends one record per state
 * change (accepted, duplicate, ignored, attempt, deleted, not_found,
 * rejected, dead, cancelled, retried) and syncs it in the same cycle,
 * before the commit and so before any callback acknowledges the change.
 *
 * Threads: the worker posts results to the loop with event_active(), so
 * the process must call
 * evthread_use_pthreads() before it creates the event_base.
 */
#ifndef DG_QUEUE_H
#define DG_QUEUE_H

#include <stdint.h>

#include "erasure.h"
#include "resource.h"

struct event_base;
struct audit;
struct queue;

enum deletion_state {
    DEL_QUEUED,
    DEL_IN_FLIGHT,
    DEL_DELETED,
    DEL_NOT_FOUND,
    DEL_REJECTED,
    DEL_DEAD,
    DEL_CANCELLED,
    DEL_STATE_COUNT
};

const char *deletion_state_name(enum deletion_state s); /* "queued"... */
int deletion_state_from_name(const char *name, enum deletion_state *out);

#define QUEUE_DELETION_ID_MAX 39 /* "del_" + 26 base32 characters, with room */
#define QUEUE_SOURCE_MAX 64      /* "extend" or a client id */
#define QUEUE_KEY_MAX 255        /* eventId or webhook-id */
/* Jobs belong to one Extend account (config.h's account ids); "" given by
 * a caller is the account "default", the one a queue from before accounts
 * holds everything in. */
#define QUEUE_ACCOUNT_MAX RESOURCE_ACCOUNT_ID_MAX
#define QUEUE_DEFAULT_ACCOUNT "default"

struct queue_account_limits {
    const char *id;
    double rate_per_second;
    int max_in_flight;
};

#define QUEUE_MAX_ACCOUNTS 16

struct queue_options {
    const char *backend;    /* "sqlite" (NULL: the same) or "postgres" */
    const char *path;       /* SQLite file, or PostgreSQL conninfo / URI */
    const char *password;   /* PostgreSQL: NULL = libpq's own means */
    const char *replica_id; /* PostgreSQL: this replica's name; NULL = the host name */
    /* PostgreSQL: the account's limits, held for every replica together
     * (claims grant no more); 0 = none. SQLite leaves them to the
     * dispatcher, the only one sending. */
    double rate_per_second;
    int max_in_flight;
    /* PostgreSQL with several accounts: each one's limits, held in its own
     * limiter row (made at open if missing). n_accounts 0: the one account
     * "default" with the two limits above. */
    const struct queue_account_limits *accounts;
    int n_accounts;
    /* The default (first) account's id when no account is named "default":
     * jobs queued before accounts, or under the legacy extend block, are
     * the account "default"'s, and are given to this one at open so that
     * some dispatcher claims them. NULL = none to adopt. */
    const char *adopt_default;
    int64_t idempotency_ttl_ms; /* how long submission keys are remembered */
    int64_t retention_ms;       /* finished deletions are pruned after this; 0 = kept */
    struct audit *audit;        /* NULL = no audit records (unit tests) */
    /* With audit: the record that opens this run (config_loaded), written
     * with the start's recovery; NULL detail = none. */
    const char *open_event, *open_detail;
    /* Start even when the queue and the audit log disagree (a lost log,
     * a rolled-back queue); the trail records that the operator chose to. */
    int accept_audit_mismatch;
    /* The clock claims and leases are reckoned by; NULL: util_now_ms.
     * Tests pass their own. */
    int64_t (*clock_ms)(void);
};

int queue_open(struct queue **out, struct event_base *base, const struct queue_options *opts,
               char *err, size_t errlen);
/* Runs every operation already submitted (their callbacks fire), then
 * stops the worker and closes the database. Call with the loop stopped or
 * running; callbacks that cannot run any more are not called. */
void queue_close(struct queue *q);

/* ---- ingest ---- */

struct queue_item {
    char deletion_id[QUEUE_DELETION_ID_MAX + 1];
    char account[QUEUE_ACCOUNT_MAX + 1]; /* "" = "default"; coalescing is per account */
    enum resource resource;
    char resource_id[RESOURCE_ID_MAX + 1];
    char reason[ERASURE_REASON_MAX + 1];
    int64_t not_before_ms; /* 0 = now */
};

struct queue_submission {
    const char *source;     /* "extend" for webhooks, else the client id */
    const char *account;    /* the account the request came for; NULL = "default" */
    const char *key;        /* eventId or webhook-id: unique within source */
    const char *request_id; /* the gateway's id of the inbound request */
    int64_t now_ms;
    const struct queue_item *items;
    int n_items;         /* 0 records the key only (an ignored event) */
    int response_status; /* answer to replay if this key comes again */
    const char *response_body;
};

enum queue_submit_status { QUEUE_SUBMIT_OK, QUEUE_SUBMIT_DUPLICATE, QUEUE_SUBMIT_FAILED };

struct queue_submit_result {
    enum queue_submit_status status;
    int stored_status;       /* DUPLICATE: the first submission's answer */
    const char *stored_body; /* valid only during the callback */
};

typedef void (*queue_submit_cb)(const struct queue_submit_result *res, void *arg);

/* -1 when the queue is closing (answer 503); else the callback will run. */
int queue_submit(struct queue *q, const struct queue_submission *sub, queue_submit_cb cb,
                 void *arg);

/* Called on the loop thread after a commit that made jobs due, with the
 * earliest due time, so the dispatcher need not poll. */
typedef void (*queue_notify_cb)(int64_t earliest_due_ms, void *arg);
void queue_set_notify(struct queue *q, queue_notify_cb cb, void *arg);

/* ---- dispatch ---- */

struct queue_job {
    int64_t job_id;
    char account[QUEUE_ACCOUNT_MAX + 1];
    int64_t lease;      /* this claim's token: name it in queue_complete / queue_release */
    int64_t send_at_ms; /* a shared queue's limiter: not before this (0 = now), and not
                           later than QUEUE_SEND_SLACK_MS after it, or the rate may slip */
    enum resource resource;
    char resource_id[RESOURCE_ID_MAX + 1];
    int attempts;           /* attempts counted so far (429s and breaker holds excluded) */
    int64_t clock_start_ms; /* give-up clock: first due (accepted, or its not_before),
                               or last operator retry */
};

/* jobs is valid only during the callback. next_due_ms: the earliest time
 * another job becomes claimable (INT64_MAX if none). */
typedef void (*queue_claim_cb)(const struct queue_job *jobs, int n, int64_t next_due_ms, int failed,
                               void *arg);

/* Moves up to max_jobs due jobs (queued with due <= now, or in_flight whose
 * lease ended before now, now by the backend's clock) to in_flight with a
 * lease of lease_ms and a new token. */
int queue_claim(struct queue *q, int max_jobs, int64_t lease_ms, queue_claim_cb cb, void *arg);
/* The same for one account's jobs only (each account has its own
 * dispatcher); next_due_ms is that account's too. */
int queue_claim_account(struct queue *q, const char *account, int max_jobs, int64_t lease_ms,
                        queue_claim_cb cb, void *arg);

/* How late after its send_at_ms a granted job may go out before it can
 * crowd the next second (the limiter keeps this much in hand). */
#define QUEUE_SEND_SLACK_MS 40

struct queue_outcome {
    int64_t job_id;
    int64_t lease;             /* the claim's token */
    enum deletion_state state; /* DEL_QUEUED = try again at retry_at_ms */
    int64_t retry_at_ms;
    int counts_as_attempt; /* 0 for 429s and breaker holds */
    int http_status;       /* 0 = no HTTP answer (or not sent) */
    char upstream_request_id[128];
    char error_code[64]; /* Extend's code, or "timeout", "connect_failed"... */
    char detail[256];
    int64_t started_ms;
    int64_t finished_ms;
};

typedef void (*queue_done_cb)(int failed, void *arg);

/* Records an attempt (when started_ms != 0) and moves the job, if the
 * lease is still the caller's (else dropped, counted, not a failure). */
int queue_complete(struct queue *q, const struct queue_outcome *o, queue_done_cb cb, void *arg);

/* Hands a claimed job back unsent (a stop, a pause, a hold): queued again,
 * claimable from due_ms, no attempt counted. Fenced like a completion. */
int queue_release(struct queue *q, int64_t job_id, int64_t lease, int64_t due_ms, queue_done_cb cb,
                  void *arg);

/* ---- reading ---- */

#define QUEUE_VIEW_ATTEMPTS 20

struct queue_attempt_view {
    int64_t started_ms;
    int64_t finished_ms;
    int http_status;
    char upstream_request_id[128];
    char error_code[64];
    char detail[256];
};

struct queue_deletion_view {
    char deletion_id[QUEUE_DELETION_ID_MAX + 1];
    int64_t job_id;
    char account[QUEUE_ACCOUNT_MAX + 1];
    enum resource resource;
    char resource_id[RESOURCE_ID_MAX + 1];
    enum deletion_state state;
    char source[QUEUE_SOURCE_MAX + 1]; /* who asked: "extend" or client id */
    char key[QUEUE_KEY_MAX + 1];       /* their eventId / webhook-id */
    char request_id[64];               /* the gateway request that accepted it */
    char reason[ERASURE_REASON_MAX + 1];
    int attempts;
    int last_http_status;
    char last_upstream_request_id[128];
    char last_error[64];
    int64_t accepted_ms;
    int64_t not_before_ms;
    int64_t updated_ms;
    int64_t next_attempt_ms;  /* queued: when; else 0 */
    int64_t completed_ms;     /* terminal states: when; else 0 */
    uint64_t final_audit_seq; /* audit record of the terminal state, 0 if none */
    char final_audit_mac[65];
    int n_attempts; /* most recent first, at most QUEUE_VIEW_ATTEMPTS */
    struct queue_attempt_view attempt[QUEUE_VIEW_ATTEMPTS];
};

/* view is NULL when the id is unknown (or on failure: failed = 1). */
typedef void (*queue_get_cb)(const struct queue_deletion_view *view, int failed, void *arg);
int queue_get(struct queue *q, const char *deletion_id, queue_get_cb cb, void *arg);

/* Appends one audit record about no deletion (the config reloaded on
 * SIGHUP), written and synced with the next cycle. cb may be NULL. */
int queue_audit_note(struct queue *q, const char *event, const char *source, const char *detail,
                     queue_done_cb cb, void *arg);

/* ---- operators ---- */

/* Records an operator's pause or resume of one account's dispatching
 * (account NULL: every account's), with an audit record naming actor, so
 * that it survives a restart and, in a shared store, holds every replica.
 * cb runs once it is committed. -1 for an account the queue was not
 * opened with. queue_paused: the state committed last (read at open) of
 * one account, or (NULL) whether every account is paused. */
int queue_set_paused(struct queue *q, const char *account, int paused, const char *actor,
                     queue_done_cb cb, void *arg);
int queue_paused(const struct queue *q, const char *account);

struct queue_stats {
    int64_t count[DEL_STATE_COUNT]; /* deletions by state */
    int64_t jobs_pending;           /* jobs queued or in_flight */
    int64_t oldest_pending_ms;      /* accepted time of the oldest pending job, 0 if none */
    int64_t wal_bytes;              /* size of the write-ahead log, if the backend has one */
    int64_t checkpoint_failures;    /* checkpoints that failed or did nothing since open */
    int64_t stale_dropped;          /* completions and releases whose lease was taken, since open */
    int64_t pruned;                 /* finished jobs pruned after the retention time, since open */
};
typedef void (*queue_stats_cb)(const struct queue_stats *stats, int failed, void *arg);
int queue_stats(struct queue *q, queue_stats_cb cb, void *arg);

/* Deletions in one state, up to limit (attempt lists empty), in the order
 * the queue's indexes give: by due time (queued: next try; in flight:
 * lease end; finished: when it finished), cancelled ones by acceptance.
 * QUEUE_LIST_MAX is the largest limit applied, and so the largest one the
 * admin route and `ctl list --limit` may accept: a caller that accepted
 * more would silently get fewer rows than it asked for. */
#define QUEUE_LIST_MAX 1000
typedef void (*queue_list_cb)(const struct queue_deletion_view *views, int n, int failed,
                              void *arg);
int queue_list(struct queue *q, enum deletion_state state, int limit, queue_list_cb cb, void *arg);

/* ---- compliance export ---- */

/* Which deletions an export reads: accepted in [since_ms, until_ms), and
 * optionally one source (who asked), one resource id, one state. */
struct queue_export_query {
    int64_t since_ms;        /* 0 = from the first */
    int64_t until_ms;        /* 0 = up to now and later */
    const char *source;      /* NULL = any */
    const char *resource_id; /* NULL = any; looked up by index, not scanned */
    int state;               /* -1 = any, else an enum deletion_state */
};

/* Pages are read in accepted order by a keyset cursor, so each page costs
 * its own rows whatever the table's size. A page reads at most
 * QUEUE_EXPORT_SCAN rows: with a narrow filter it may hold fewer than
 * limit rows, even none, while next_cursor is not empty. The export is
 * complete when next_cursor is "". */
#define QUEUE_EXPORT_MAX 1000
#define QUEUE_EXPORT_SCAN 20000
#define QUEUE_CURSOR_MAX 48

/* The cursor as text ("<accepted_ms>-<seq>", opaque to callers), and back:
 * 0, or -1 when s is not one. */
int queue_cursor_parse(const char *s, int64_t *accepted_ms, int64_t *seq);
void queue_cursor_format(int64_t accepted_ms, int64_t seq, char out[QUEUE_CURSOR_MAX + 1]);

/* views and next_cursor are valid only during the callback (attempt lists
 * empty). failed = 1: nothing was read. */
typedef void (*queue_export_cb)(const struct queue_deletion_view *views, int n,
                                const char *next_cursor, int failed, void *arg);
/* cursor NULL or "" starts at since_ms; limit is clamped to 1..QUEUE_EXPORT_MAX. */
int queue_export(struct queue *q, const struct queue_export_query *query, const char *cursor,
                 int limit, queue_export_cb cb, void *arg);

/* Operator actions; actor names the operator for the audit trail.
 * retry: a dead or rejected deletion (or, with deletion_id NULL, every dead
 * one) goes back to queued, due now, its give-up clock restarted.
 * cancel: a queued deletion becomes cancelled (its job too when no other
 * pending deletion shares it). count = rows changed. */
typedef void (*queue_count_cb)(int64_t count, int failed, void *arg);
int queue_retry(struct queue *q, const char *deletion_id, const char *actor, int64_t now_ms,
                queue_count_cb cb, void *arg);
int queue_cancel(struct queue *q, const char *deletion_id, const char *actor, int64_t now_ms,
                 queue_count_cb cb, void *arg);

/* Housekeeping in small batches: finished jobs past the retention time go,
 * with their deletions and attempts. queue_open runs it every second by
 * itself; count = jobs pruned. */
int queue_maintain(struct queue *q, queue_count_cb cb, void *arg);

/* 1 when the backend itself holds the account's limits for all the
 * replicas sharing it (claims return no more than they allow), so the
 * dispatcher need not space its DELETEs, and must look for work others
 * queued now and then. */
int queue_shared(const struct queue *q);

/* Commits made since queue_open (metrics, benchmarks). Any thread. */
uint64_t queue_commits(struct queue *q);

#endif
