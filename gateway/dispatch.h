/*
 * dispatch.h: takes due jobs from the queue and deletes them at Extend, one
 * lane per configured account, each with its own upstream, limits, hold
 * and breaker, claiming only its account's jobs,
 * politely (rate_per_second, max_in_flight, a global hold after a 429) and
 * persistently (backoff, give-up only after retry.give_up_after_seconds).
 * A 401, 402 or 403 means the credentials or the account are wrong, not
 * the deletion: the circuit breaker opens, every job stays queued, and one
 * probe request is sent now and then until Extend accepts again. When
 * Extend does not answer at all (connect, DNS, TLS, time-out), sending is
 * held the same way until a probe gets an answer; the jobs stay due, so
 * the backlog drains at the configured rate at once.
 */
#ifndef DG_DISPATCH_H
#define DG_DISPATCH_H

struct config;
struct event_base;
struct queue;
struct readiness;
struct upstream;
struct dispatch;

/* What the dispatcher reads (cfg), drives (queue, upstream, on base) and
 * reports (ready: queue failing, breaker open). All outlive it. */
struct dispatch_deps {
    const struct config *cfg;
    struct event_base *base;
    struct queue *queue;
    struct upstream *const *upstream; /* one per cfg->accounts[i] */
    struct readiness *ready;
};

int dispatch_open(struct dispatch **out, const struct dispatch_deps *dep);
/* Subscribes to the queue and starts sending. */
void dispatch_start(struct dispatch *d);
/* Stops claiming new jobs; requests in flight finish (SIGTERM). */
void dispatch_stop(struct dispatch *d);
void dispatch_close(struct dispatch *d);

/* Operator pause of one account (its index in cfg->accounts) or, with
 * account -1, of all: nothing new is sent until resumed; jobs stay queued.
 * -1 for an index past the last account. */
int dispatch_set_paused(struct dispatch *d, int account, int paused);

struct dispatch_state {
    int paused, breaker_open, unreachable, in_flight;
};
/* One account's lane. 0, or -1 for an index past the last. */
int dispatch_account_state(const struct dispatch *d, int account, struct dispatch_state *st);

/* Over all accounts: paused when every one is; breaker_open and
 * unreachable when any one is; in_flight their sum. */
int dispatch_paused(const struct dispatch *d);
int dispatch_breaker_open(const struct dispatch *d);
/* 1 while Extend cannot be reached and sending is held behind probes. */
int dispatch_unreachable(const struct dispatch *d);
int dispatch_in_flight(const struct dispatch *d);

#endif
