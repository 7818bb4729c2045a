/*
 * dispatch.h: takes due jobs from the queue and deletes them at Extend,
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

#include "gateway.h"

struct dispatch;

int dispatch_open(struct dispatch **out, struct gateway *gw);
/* Subscribes to the queue and starts sending. */
void dispatch_start(struct dispatch *d);
/* Stops claiming new jobs; requests in flight finish (SIGTERM). */
void dispatch_stop(struct dispatch *d);
void dispatch_close(struct dispatch *d);

/* Operator pause: nothing new is sent until resumed; jobs stay queued. */
void dispatch_set_paused(struct dispatch *d, int paused);

int dispatch_paused(const struct dispatch *d);
int dispatch_breaker_open(const struct dispatch *d);
/* 1 while Extend cannot be reached and sending is held behind probes. */
int dispatch_unreachable(const struct dispatch *d);
int dispatch_in_flight(const struct dispatch *d);

#endif
