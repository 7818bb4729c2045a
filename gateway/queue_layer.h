/*
 * queue_layer.h: the neutral queue layer's own state, shared by queue.c
 * (the worker, delivery, open and close) and queue_calls.c (the public
 * calls). Backends never see it: they get a struct cycle and their store.
 */
#ifndef DG_QUEUE_LAYER_H
#define DG_QUEUE_LAYER_H

#include "queue_backend.h"

#include <pthread.h>
#include <stdint.h>

struct queue {
    const struct queue_backend *be;
    struct queue_store *store;
    struct audit *audit;
    int64_t (*clock_ms)(void);
    uint64_t audit_committed; /* worker: seq of the last audit record committed */
    int64_t stale_total;      /* worker: completions and releases dropped, since open */
    int64_t pruned_total;     /* worker: finished jobs pruned, since open */
    /* Loop thread: the accounts an operator paused (bit i: account_ids[i]),
     * kept across restarts. */
    unsigned paused;
    int n_accounts;
    char account_ids[QUEUE_MAX_ACCOUNTS][QUEUE_ACCOUNT_MAX + 1];

    struct event *ev_done;
    struct event *ev_maintain; /* every second: queue_maintain */
    int maintain_pending;      /* loop thread: one housekeeping op at a time */
    pthread_t worker;
    int worker_started;

    pthread_mutex_t mu; /* guards everything below */
    pthread_cond_t cv;
    struct op *pending, **pending_tail;
    struct op *done, **done_tail;
    int stopping;
    int64_t notify_due; /* earliest due among jobs made due, INT64_MAX = none */
    uint64_t commits;

    queue_notify_cb notify_cb; /* loop thread only, like the three below */
    void *notify_arg;
    int draining; /* callbacks are being delivered */
    int closed;   /* queue_close was called */
};

#endif
