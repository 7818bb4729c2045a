/*
 * queue_backend.h: what a storage backend of the queue supplies, and what
 * the neutral layer (queue.c) gives it. Not for the queue's callers: they
 * use queue.h.
 *
 * queue.c owns everything that is the same whatever the storage: copying
 * and bounding the callers' arguments into an op, the worker thread that
 * takes every op that arrived during one commit into the next (group
 * commit), the audit records around each cycle, the cross-check of the
 * queue and the audit log at start, and the delivery of results to the
 * event loop. A backend owns only storage: its open and close, its
 * transactions, and one function per kind of op, run on the worker inside
 * the cycle's transaction.
 */
#ifndef DG_QUEUE_BACKEND_H
#define DG_QUEUE_BACKEND_H

#include "audit.h"
#include "queue.h"

#include <stdint.h>

enum op_kind {
    OP_SUBMIT,
    OP_CLAIM,
    OP_COMPLETE,
    OP_RELEASE,
    OP_GET,
    OP_STATS,
    OP_LIST,
    OP_RETRY,
    OP_CANCEL,
    OP_NOTE,
    OP_PAUSE,
    OP_MAINTAIN,
    OP_EXPORT,
    OP_KIND_COUNT
};

/* One call in flight between the threads: its arguments, copied at the
 * call; its results, filled by the backend on the worker. */
struct op {
    struct op *next;
    enum op_kind kind;
    int failed; /* the operation, or its whole cycle, failed */
    void *arg;
    union {
        queue_submit_cb submit;
        queue_claim_cb claim;
        queue_done_cb done;
        queue_get_cb get;
        queue_stats_cb stats;
        queue_list_cb list;
        queue_count_cb count;
        queue_export_cb export;
    } cb;
    int64_t now_ms;
    union {
        struct submit_in {
            const char *source, *key, *request_id, *body; /* point into this allocation */
            const char *account; /* never "": items' accounts are filled in too */
            int status;
            const struct queue_item *items;
            int n_items;
        } submit;
        struct {
            int max_jobs;
            int64_t lease_ms;
            char account[QUEUE_ACCOUNT_MAX + 1]; /* "" = any account */
        } claim;
        struct queue_outcome complete;
        struct {
            int64_t job_id, lease, due_ms;
        } release;
        struct {
            char id[QUEUE_DELETION_ID_MAX + 1]; /* "" = every dead deletion (retry) */
            char actor[QUEUE_KEY_MAX + 1];
        } target;
        struct {
            enum deletion_state state;
            int limit;
        } list;
        struct {
            char event[32], source[QUEUE_SOURCE_MAX + 1], detail[256];
            int paused;                          /* OP_PAUSE */
            char account[QUEUE_ACCOUNT_MAX + 1]; /* OP_PAUSE: "" = every account */
        } note;
        struct {
            int64_t after_ms, after_seq, until_ms; /* the keyset position and the end */
            char source[QUEUE_SOURCE_MAX + 1];     /* "" = any */
            char resource_id[RESOURCE_ID_MAX + 1]; /* "" = any */
            int state;                             /* -1 = any */
            int limit;
        } export;
    } in;
    union {
        struct {
            enum queue_submit_status status;
            int stored_status;
            char *stored_body;
        } submit;
        struct {
            struct queue_job *jobs;
            int n;
            int64_t next_due_ms;
            int paused; /* a shared store: an operator's pause of the account holds it */
        } claim;
        struct {
            struct queue_deletion_view *views;
            int n;
        } view; /* get: n = 0 for an unknown id */
        struct {
            struct queue_deletion_view *views;
            int n;
            char next[QUEUE_CURSOR_MAX + 1]; /* "" = the export is complete */
        } export;
        struct queue_stats stats;
        int64_t count;
        int ok;
    } out;
};

/* Moves between the counts of deletions by state and of pending jobs that
 * a cycle's ops made; the backend writes their sum once per commit. */
struct count_moves {
    int64_t state[DEL_STATE_COUNT];
    int64_t jobs_pending;
};

/* What one cycle gathers besides the ops' own results. */
struct cycle {
    struct queue *q;
    int64_t notify_due; /* earliest due time of the jobs it made due */
    int n_submits;
    struct count_moves moves;
    int fatal;      /* the transaction is lost or the audit failed: fail the cycle */
    int64_t stale;  /* completions and releases dropped: their lease was taken */
    int64_t pruned; /* finished jobs pruned */
};

struct queue_store; /* each backend's own */

struct queue_backend {
    const char *name;
    /* The store is shared by several replicas: it holds the account's
     * limits for all of them (queue_shared). */
    int shared;
    /* Opens the store on the opening thread, before the worker starts. A
     * backend that owns its store alone (SQLite, under its flock) puts
     * every job still in flight back in the queue here: nobody else can
     * hold their leases. A shared one must not: another process may; for
     * it, expired leases being claimable by anyone is the recovery. */
    int (*open)(const struct queue_options *o, struct queue_store **out, char *err, size_t errlen);
    void (*close)(struct queue_store *s);
    /* The cycle's transaction and, for a batch run isolated, a savepoint
     * per op. in_transaction: 0 once the store rolled back by itself. */
    int (*begin)(struct queue_store *s);
    int (*commit)(struct queue_store *s);
    void (*rollback)(struct queue_store *s);
    int (*savepoint)(struct queue_store *s);
    int (*release_savepoint)(struct queue_store *s);
    int (*rollback_savepoint)(struct queue_store *s);
    int (*in_transaction)(struct queue_store *s);
    /* One per op kind, inside the transaction: 0, or -1 with the op's
     * changes to be rolled back. */
    int (*run[OP_KIND_COUNT])(struct queue_store *s, struct cycle *c, struct op *op);
    /* Last in every cycle, before the audit sync: housekeeping and the
     * cycle's count moves. */
    int (*end_cycle)(struct queue_store *s, struct cycle *c);
    /* The queue's small state: where it last committed the audit log
     * (seq -1 = not known yet) and the operator's pauses: bit i of
     * *paused for account i of queue_options.accounts (bit 0 alone, for
     * "default", without them). */
    int (*meta_read)(struct queue_store *s, int64_t *audit_seq, char audit_mac[65],
                     unsigned *paused);
    int (*meta_write_audit)(struct queue_store *s, uint64_t seq, const char *mac);
    /* Optional, for a shared store: on the loop thread, call due() when
     * another replica made jobs due, so this one need not poll for them.
     * unwatch undoes it before close. */
    int (*watch)(struct queue_store *s, struct event_base *base, void (*due)(void *arg), void *arg);
    void (*unwatch)(struct queue_store *s);
};

extern const struct queue_backend queue_sqlite_backend;
extern const struct queue_backend queue_pg_backend;

/* One result row, as a backend's driver gives it, for the readers both
 * backends share. Columns are numbered from 0. */
struct queue_row {
    void *r;
    const char *(*text)(void *r, int col); /* "" for NULL */
    int64_t (*i64)(void *r, int col);
    int (*is_null)(void *r, int col);
};

/* The columns of a deletion view, in this order, in every backend's SQL:
 *   0 d.id, 1 d.job_id, 2 j.resource, 3 j.resource_id, 4 coalesce(d.state,
 *   j.state), 5 d.source, 6 d.key, 7 d.request_id, 8 d.reason, 9 j.attempts,
 *   10 j.last_http_status, 11 j.last_upstream_request_id, 12 j.last_error,
 *   13 d.accepted_ms, 14 d.not_before_ms, 15 the later of j.updated_ms and
 *   d.updated_ms, 16 j.due_ms, 17 j.completed_ms, 18 d.state, 19
 *   d.updated_ms, 20 j.final_audit_seq, 21 j.final_audit_mac, 22
 *   d.final_audit_seq, 23 d.final_audit_mac, 24 j.account
 * Fills v from such a row; -1 if it holds a state or resource this code
 * does not know. */
int queue_view_from_row(const struct queue_row *row, struct queue_deletion_view *v);

/* For the backends' ops, on the worker. The only door to the audit log:
 * a failure marks the cycle fatal, so nothing is acknowledged that the
 * trail does not hold. seq and mac may be NULL. */
int queue_cycle_audit(struct cycle *c, const struct audit_record *r, uint64_t *seq, char mac[65]);
void queue_cycle_note_due(struct cycle *c, int64_t due_ms);
/* The records both backends write, built one way. An operator's change
 * (event "retried", "cancelled") of deletion_id on resource res/rid; and a
 * completion's outcome (o = op->in.complete), its event left to set. */
struct audit_record queue_operator_record(const struct op *op, const char *event,
                                          const char *deletion_id, const char *res,
                                          const char *rid);
struct audit_record queue_outcome_record(const struct op *op, const char *res, const char *rid,
                                         const char *account);
/* OP_NOTE needs no storage: one audit record about no deletion, committed
 * with its cycle. Both backends' tables name it. */
int queue_op_note(struct queue_store *s, struct cycle *c, struct op *op);

/* The clock the backend claims by (queue_options.clock_ms). */
int64_t queue_clock_ms(const struct cycle *c);

#endif
