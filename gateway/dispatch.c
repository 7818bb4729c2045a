/*
 * dispatch.c: the outbound half (see dispatch.h).
 *
 * The loop: pump() claims as many due jobs as the rate limit, the in-flight
 * limit and the breaker allow; each claimed job becomes one DELETE through
 * upstream.c; its answer is classified (retry.c) into an outcome that the
 * queue records; then pump() runs again. When nothing is due, one timer
 * waits for the next due job, and the queue's notify callback wakes the
 * dispatcher when new work is committed, so it never polls.
 *
 * Rate limit: starts are paced by retry_rate_take, evenly and never more
 * than rate_per_second in any second, counted when each DELETE starts
 * (not when it was claimed, since a claim's commit takes a variable
 * time). Jobs claimed ahead wait in `ready` for a slot, and go back to the
 * queue whenever sending stops, so no lease lapses in hand. A 429 holds all
 * sending until its Retry-After, at least a second, longer with each 429 in
 * a row: the limit is the account's, not a job's.
 *
 * Two other troubles are the account's, not a job's, and hold all sending
 * behind one probe request at a time until a probe gets through: Extend
 * refusing the credentials (401, 402, 403: the breaker) and Extend not
 * answering at all (no HTTP answer from any request since the failing one
 * was sent: unreachable). Jobs that fail so stay due, so the backlog drains
 * at the configured rate as soon as the probe gets through. A 5xx is an
 * answer, about one request: that job alone backs off.
 *
 * Crash safety: a claimed job is in_flight in the database with a lease
 * longer than any request can take; if the process dies, the job is
 * claimable again (the SQLite backend re-queues it at start), and the
 * DELETE is sent again: at least once, and a DELETE is idempotent.
 */
#include "dispatch.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/event.h>

#include "config.h"
#include "log.h"
#include "metrics.h"
#include "queue.h"
#include "readiness.h"
#include "retry.h"
#include "upstream.h"
#include "util.h"

struct lane {
    struct dispatch_deps dep;   /* what it reads and drives, owned by serve */
    const struct account *acct; /* whose jobs it claims, where they go, at what pace */
    int index;                  /* acct's place in cfg->accounts: metrics, readiness */
    struct upstream *upstream;
    struct event *timer;
    int64_t timer_at_ms; /* when the armed timer fires, 0 if not armed */
    int in_flight;
    int claiming;                              /* a claim is with the queue: one at a time */
    struct retry_rate pace;                    /* the rate limit's starts (mono us) */
    struct ready_job *ready;                   /* claimed, waiting for a free slot (prefetch): */
    int ready_head, n_ready;                   /* a ring of cap_ready, oldest at ready_head */
    LIST_HEAD(attempt_list, attempt) attempts; /* in flight, so a stop can free them */
    int cap_ready;
    int prefetch;    /* jobs to keep in hand beside those in flight */
    int claim_want;  /* how many the current claim asked for */
    int claim_short; /* the last claim took every due job; reset by timer and notify */
    /* The 429 hold, the breaker and the unreachable hold (one probe at a
     * time, see the top comment): changed only by retry_decide. */
    struct retry_account sending;
    char unreachable_error[64]; /* the last transport error, for jobs given up meanwhile */
    char unreachable_detail[200];
    int paused;
    int stopping;
};

/* A claimed job waiting for its slot; its lease runs from claimed_ms. */
struct ready_job {
    struct queue_job job;
    int64_t claimed_ms;
};

/* One DELETE in progress. */
struct attempt {
    struct lane *d;
    struct queue_job job;
    int64_t started_ms;
    int probe;                /* sent while all sending was held */
    LIST_ENTRY(attempt) link; /* in d->attempts */
    struct event *defer;      /* a start failure, reported from the loop */
};

#define SHARED_POLL_MS 1000 /* a shared queue: how often to look for others' work */

static void pump(struct lane *d);

static void attempt_unlink_free(struct attempt *a)
{
    LIST_REMOVE(a, link);
    if (a->defer != NULL)
        event_free(a->defer);
    free(a);
}

static int64_t lease_ms(const struct lane *d)
{
    /* Longer than any one request can take, so a job is never in flight
     * twice; the margin covers a slow commit of the outcome. */
    return (int64_t)d->acct->timeout_ms + d->acct->connect_timeout_ms +
           d->dep.cfg->queue.lease_slack_seconds * 1000;
}

static void arm(struct lane *d, int64_t delay_ms)
{
    int64_t at = util_now_ms() + (delay_ms < 0 ? 0 : delay_ms);
    struct timeval tv;

    if (d->timer_at_ms != 0 && d->timer_at_ms <= at && evtimer_pending(d->timer, NULL))
        return;
    d->timer_at_ms = at;
    delay_ms = delay_ms < 0 ? 0 : delay_ms;
    tv.tv_sec = (time_t)(delay_ms / 1000);
    tv.tv_usec = (suseconds_t)(delay_ms % 1000) * 1000;
    evtimer_add(d->timer, &tv);
}

static void timer_fired(evutil_socket_t fd, short what, void *arg)
{
    struct lane *d = arg;

    (void)fd, (void)what;
    d->timer_at_ms = 0;
    d->claim_short = 0;
    pump(d);
}

static uint32_t random_u32(void)
{
    uint32_t r = 0;

    if (util_random_bytes(&r, sizeof(r)) != 0)
        r = (uint32_t)util_mono_ms();
    return r;
}

static void outcome_committed(int failed, void *arg)
{
    struct lane *d = arg;

    readiness_set_queue_failing(d->dep.ready, failed);
    if (failed) {
        /* The outcome is not recorded: the job stays in_flight until its
         * lease ends and is then sent again. Nothing is lost. */
        log_error(NULL, "dispatch: could not record an outcome; the job will be retried");
    }
}

static int probing(const struct lane *d)
{
    return d->sending.breaker_open || d->sending.unreachable;
}

static void hold_set(struct lane *d, enum retry_hold why, int on)
{
    if (why == RETRY_HOLD_CREDENTIALS) {
        metrics_set_breaker(d->index, on);
        readiness_set_account_breaker(d->dep.ready, d->index, on);
    } else
        metrics_set_unreachable(d->index, on);
}

static int given_up(const struct config *cfg, const struct queue_job *job, int64_t now)
{
    return now - job->clock_start_ms >= cfg->retry.give_up_after_seconds * 1000;
}

static void dead_detail(struct queue_outcome *o, const struct config *cfg, const char *why)
{
    snprintf(o->detail, sizeof(o->detail), "gave up after %lld s of failures: %.180s",
             (long long)cfg->retry.give_up_after_seconds, why);
}

static const char *class_name(enum retry_class c)
{
    switch (c) {
    case RETRY_DELETED:
        return "deleted";
    case RETRY_NOT_FOUND:
        return "not_found";
    case RETRY_REJECTED:
        return "rejected";
    case RETRY_TRANSIENT:
        return "transient";
    case RETRY_RATE_LIMITED:
        return "rate_limited";
    case RETRY_CREDENTIALS:
    default:
        return "credentials";
    }
}

/* Turns Extend's answer into what the queue records (retry_decide, which
 * also moves the account's holds on), then says what changed. */
static void decide(struct lane *d, const struct attempt *a, const struct upstream_result *r,
                   int64_t now, struct queue_outcome *o)
{
    const struct config *cfg = d->dep.cfg;
    const struct retry_answer ans = {.http_status = r->http_status,
                                     .retry_after = r->retry_after,
                                     .ratelimit_reset = r->ratelimit_reset,
                                     .started_ms = a->started_ms,
                                     .probe = a->probe,
                                     .attempts = a->job.attempts,
                                     .give_up = given_up(cfg, &a->job, now)};
    struct retry_verdict v;
    static const enum deletion_state states[] = {[RETRY_V_DELETED] = DEL_DELETED,
                                                 [RETRY_V_NOT_FOUND] = DEL_NOT_FOUND,
                                                 [RETRY_V_REJECTED] = DEL_REJECTED,
                                                 [RETRY_V_AGAIN] = DEL_QUEUED,
                                                 [RETRY_V_GIVE_UP] = DEL_DEAD};

    retry_decide(&d->sending, &ans, cfg->retry.initial_ms, cfg->retry.max_ms, now, random_u32(),
                 &v);
    o->state = states[v.kind];
    o->retry_at_ms = v.retry_at_ms;
    o->counts_as_attempt = v.counts_as_attempt;
    if (v.events & RETRY_EV_BREAKER_OPENED) {
        log_error(NULL,
                  "dispatch: Extend answered %d: credentials or account rejected; holding every "
                  "job and probing",
                  r->http_status);
        hold_set(d, RETRY_HOLD_CREDENTIALS, 1);
    }
    if (v.events & RETRY_EV_UNREACHABLE_SEEN) {
        snprintf(d->unreachable_error, sizeof(d->unreachable_error), "%.63s", r->transport_error);
        snprintf(d->unreachable_detail, sizeof(d->unreachable_detail), "%.199s",
                 r->transport_detail);
    }
    if (v.events & RETRY_EV_UNREACHABLE_OPENED) {
        log_error(NULL, "dispatch: Extend unreachable (%s: %s); holding every job and probing",
                  r->transport_error, r->transport_detail);
        hold_set(d, RETRY_HOLD_UNREACHABLE, 1);
    }
    if (v.events & RETRY_EV_UNREACHABLE_CLOSED) {
        log_info(NULL, "dispatch: Extend answers again; resuming at the configured rate");
        hold_set(d, RETRY_HOLD_UNREACHABLE, 0);
    }
    if (v.events & RETRY_EV_BREAKER_CLOSED) {
        log_info(NULL, "dispatch: Extend accepts the credentials again; resuming at the "
                       "configured rate");
        hold_set(d, RETRY_HOLD_CREDENTIALS, 0);
    }
    if (o->state == DEL_DEAD)
        dead_detail(o, cfg, r->error_message[0] ? r->error_message : r->transport_detail);
}

static void upstream_done(const struct upstream_result *r, void *arg)
{
    struct attempt *a = arg;
    struct lane *d = a->d;
    struct queue_outcome o;
    int64_t now = util_now_ms();

    memset(&o, 0, sizeof(o));
    o.job_id = a->job.job_id;
    o.lease = a->job.lease;
    o.http_status = r->http_status;
    o.started_ms = a->started_ms;
    o.finished_ms = now;
    snprintf(o.upstream_request_id, sizeof(o.upstream_request_id), "%s", r->request_id);
    snprintf(o.error_code, sizeof(o.error_code), "%.63s",
             r->http_status != 0 ? r->error_code : r->transport_error);
    snprintf(o.detail, sizeof(o.detail), "%s",
             r->http_status != 0 ? r->error_message : r->transport_detail);
    decide(d, a, r, now, &o);

    metrics_attempt(d->index, class_name(retry_classify(r->http_status)),
                    (double)r->elapsed_ms / 1000.0);
    /* Successes are in the audit log; retries and failures are news. */
    log_msg(o.state == DEL_DELETED || o.state == DEL_NOT_FOUND ? LOG_DEBUG : LOG_INFO, NULL,
            "dispatch: DELETE %s %s -> %d%s%s (x-extend-request-id %s) => %s",
            resource_name(a->job.resource), a->job.resource_id, r->http_status,
            r->http_status ? "" : " ", r->http_status ? "" : r->transport_error,
            r->request_id[0] ? r->request_id : "-", deletion_state_name(o.state));

    d->in_flight--;
    metrics_set_in_flight(d->index, d->in_flight);
    if (queue_complete(d->dep.queue, &o, outcome_committed, d) != 0)
        log_warn(NULL, "dispatch: queue closing; job %lld stays leased and will be retried",
                 (long long)a->job.job_id);
    attempt_unlink_free(a);
    pump(d);
}

/* A DELETE that could not even be started is a transient failure; it is
 * reported from the loop, never from inside start_ready(). */
static void start_failed(evutil_socket_t fd, short what, void *arg)
{
    struct upstream_result r;

    (void)fd, (void)what;
    memset(&r, 0, sizeof(r));
    snprintf(r.transport_error, sizeof(r.transport_error), "other");
    snprintf(r.transport_detail, sizeof(r.transport_detail), "request could not be started");
    upstream_done(&r, arg);
}

static void start_attempt(struct lane *d, const struct queue_job *job)
{
    struct attempt *a = calloc(1, sizeof(*a));
    struct queue_outcome o;

    if (a == NULL)
        return; /* stays leased; retried when the lease ends */
    a->d = d;
    a->job = *job;
    a->started_ms = util_now_ms();
    a->probe = probing(d);
    LIST_INSERT_HEAD(&d->attempts, a, link);
    if (d->acct->dry_run) {
        /* Everything but the DELETE: the job ends cancelled, and the audit
         * trail says it was a dry run. */
        memset(&o, 0, sizeof(o));
        o.job_id = job->job_id;
        o.lease = job->lease;
        o.state = DEL_CANCELLED;
        o.started_ms = o.finished_ms = a->started_ms; /* recorded, not counted */
        snprintf(o.error_code, sizeof(o.error_code), "dry_run");
        snprintf(o.detail, sizeof(o.detail), "dry run: DELETE not sent");
        metrics_attempt(d->index, "dry_run", 0);
        log_info(NULL, "dispatch: dry run: would DELETE %s %s", resource_name(job->resource),
                 job->resource_id);
        queue_complete(d->dep.queue, &o, outcome_committed, d);
        attempt_unlink_free(a);
        return;
    }
    d->in_flight++;
    metrics_set_in_flight(d->index, d->in_flight);
    if (upstream_delete(d->upstream, job->resource, job->resource_id, upstream_done, a) != 0) {
        static const struct timeval now = {0, 0};

        a->defer = evtimer_new(d->dep.base, start_failed, a);
        if (a->defer == NULL || evtimer_add(a->defer, &now) != 0) {
            /* Out of memory: the job stays leased and is retried later. */
            d->in_flight--;
            attempt_unlink_free(a);
        }
    }
}

/* Under a rate limit: whether the next DELETE must wait (then *wait_ms
 * says how long); if not, its start is counted. */
static int rate_slot_taken(struct lane *d, int64_t *wait_ms)
{
    int64_t now = util_mono_us(), until;

    /* A shared queue grants each claim no more than the account's rate
     * leaves for all replicas together; pacing here as well would only
     * slow this one. */
    if (queue_shared(d->dep.queue))
        return 0;
    if (retry_rate_take(&d->pace, d->acct->rate_per_second, now, &until) == 0)
        return 0;
    *wait_ms = (until - now + 999) / 1000;
    return 1;
}

/*
 * How many claimed jobs to keep waiting beside those in flight. A claim is
 * a trip through the queue's commit, so without jobs in hand every DELETE
 * answered meanwhile leaves its slot empty until the claim is back. How
 * many that is depends on Extend's speed, so the depth adapts: a claim that
 * comes back to a starved dispatcher (free slots, nothing in hand) doubles
 * it, one that finds half of it still unused shrinks it by a quarter,
 * within max_in_flight .. PREFETCH_MAX x max_in_flight. Under a rate limit
 * one in hand is enough; behind an open breaker, none.
 */
#define PREFETCH_MAX 8

static int prefetch_target(const struct lane *d)
{

    /* In a shared queue a job in hand holds one of the in-flight slots
     * that all replicas share: take only what can be sent now. */
    if (probing(d) || queue_shared(d->dep.queue))
        return 0;
    return d->acct->rate_per_second > 0 ? 1 : d->prefetch;
}

static void prefetch_learn(struct lane *d)
{
    int max = d->acct->max_in_flight;

    if (d->n_ready == 0 && d->in_flight < max)
        d->prefetch *= 2;
    else if (d->n_ready > d->prefetch / 2)
        d->prefetch -= d->prefetch / 4;
    if (d->prefetch < max)
        d->prefetch = max;
    if (d->prefetch > PREFETCH_MAX * max)
        d->prefetch = PREFETCH_MAX * max;
}

/*
 * Hands every waiting job back to the queue, due again at `due_ms`, without
 * an attempt. Claimed jobs are leased; one that waits in hand past its lease
 * could be claimed a second time, so whenever sending stops for longer than
 * a moment (pause, a 429's hold, an open breaker, a stop, a slow rate) the
 * jobs in hand go back instead of waiting.
 */
static void release_ready(struct lane *d, int64_t due_ms)
{
    for (int i = 0; i < d->n_ready; i++) {
        const struct queue_job *job = &d->ready[(d->ready_head + i) % d->cap_ready].job;

        if (queue_release(d->dep.queue, job->job_id, job->lease, due_ms, outcome_committed, d) != 0)
            break; /* closing: the leases end and the jobs are claimable again */
    }
    d->n_ready = 0;
}

/*
 * While Extend is unreachable only probes are sent, so a job could outlive
 * its give-up deadline without ever failing again. Each probe's claim takes
 * a batch of due jobs (oldest due first; those not sent go back due at the
 * next probe, behind the rest), and those past their deadline end dead
 * here, unsent, as a job failing through the outage would have.
 */
static void give_up_unsent(struct lane *d, const struct queue_job *job)
{
    struct queue_outcome o;
    char why[256];

    memset(&o, 0, sizeof(o));
    o.job_id = job->job_id;
    o.lease = job->lease;
    o.state = DEL_DEAD;
    snprintf(o.error_code, sizeof(o.error_code), "%s", d->unreachable_error);
    snprintf(why, sizeof(why), "Extend unreachable: %s", d->unreachable_detail);
    dead_detail(&o, d->dep.cfg, why);
    log_info(NULL, "dispatch: %s %s given up while Extend is unreachable",
             resource_name(job->resource), job->resource_id);
    queue_complete(d->dep.queue, &o, outcome_committed, d);
}

static void claim_done(const struct queue_job *jobs, int n, int64_t next_due_ms, int failed,
                       void *arg)
{
    struct lane *d = arg;
    int64_t now = util_now_ms();

    d->claiming = 0;
    log_debug(NULL, "dispatch: claimed %d job(s); %d in flight, %d waiting, prefetch %d", n,
              d->in_flight, d->n_ready, d->prefetch);
    /* A short claim says the queue ran dry, not the trip; a held one
     * says nothing about the trip either. */
    if (n == d->claim_want && !probing(d))
        prefetch_learn(d);
    if (failed) {
        readiness_set_queue_failing(d->dep.ready, 1);
        arm(d, 1000);
        return;
    }
    readiness_set_queue_failing(d->dep.ready, 0);
    /* pump() never asks for more than the ring holds. */
    for (int i = 0; i < n; i++) {
        if (d->sending.unreachable && given_up(d->dep.cfg, &jobs[i], now)) {
            give_up_unsent(d, &jobs[i]);
            continue;
        }
        struct ready_job *r = &d->ready[(d->ready_head + d->n_ready) % d->cap_ready];
        r->job = jobs[i];
        r->claimed_ms = now;
        d->n_ready++;
    }
    if (next_due_ms != INT64_MAX && next_due_ms > now)
        arm(d, next_due_ms - now);
    /* Other replicas queue work this one is not told of: look again at
     * least once a second. */
    if (queue_shared(d->dep.queue))
        arm(d, SHARED_POLL_MS);
    d->claim_short = next_due_ms == INT64_MAX || next_due_ms > now;
    pump(d);
}

/* Starts waiting jobs while the limits allow. */
static void start_ready(struct lane *d)
{
    int64_t now = util_now_ms(), wait_ms;
    struct queue_job job;

    while (d->n_ready > 0) {
        if (d->in_flight >= d->acct->max_in_flight)
            return;
        if (probing(d) && (d->in_flight > 0 || now < d->sending.probe_at_ms))
            return; /* one probe at a time, when due */
        if (now - d->ready[d->ready_head].claimed_ms > lease_ms(d) / 2) {
            release_ready(d, now); /* waited too long in hand: claim afresh */
            return;
        }
        if (d->ready[d->ready_head].job.send_at_ms > now) {
            arm(d, d->ready[d->ready_head].job.send_at_ms - now);
            return; /* the shared limiter's moment for it is still to come */
        }
        if (rate_slot_taken(d, &wait_ms)) {
            arm(d, wait_ms);
            return;
        }
        /* Out of the ring before it starts: a start can lead back here. */
        job = d->ready[d->ready_head].job;
        if (job.send_at_ms != 0 && now - job.send_at_ms > QUEUE_SEND_SLACK_MS) {
            metrics_sent_late();
            log_warn(NULL,
                     "dispatch: %s %s goes out %lld ms after its moment; the account's "
                     "rate may slip into the next second",
                     resource_name(job.resource), job.resource_id,
                     (long long)(now - job.send_at_ms));
        }
        d->ready_head = (d->ready_head + 1) % d->cap_ready;
        d->n_ready--;
        start_attempt(d, &job);
    }
}

static void pump(struct lane *d)
{
    int64_t now = util_now_ms();
    int want;

    if (d->paused || d->stopping) {
        release_ready(d, now);
        return;
    }
    if (now < d->sending.hold_until_ms) {
        release_ready(d, d->sending.hold_until_ms);
        arm(d, d->sending.hold_until_ms - now);
        return;
    }
    if (probing(d) && d->in_flight == 0 && now < d->sending.probe_at_ms) {
        release_ready(d, d->sending.probe_at_ms);
        arm(d, d->sending.probe_at_ms - now);
        return;
    }
    start_ready(d);
    if (d->claiming)
        return;
    /* Free slots plus the prefetch, less what is already in hand. */
    want = d->acct->max_in_flight - d->in_flight + prefetch_target(d) - d->n_ready;
    /* Held: one probe; while unreachable, a batch to look for jobs past
     * their give-up deadline (see give_up_unsent). */
    if (probing(d))
        want = d->in_flight > 0 || d->n_ready > 0 ? 0 : d->sending.unreachable ? d->cap_ready : 1;
    if (want > d->cap_ready - d->n_ready)
        want = d->cap_ready - d->n_ready;
    /* After a claim that found everything due, nothing else is due until
     * the timer or the queue's notify says so: no empty claim per DELETE. */
    if (want <= 0 || d->claim_short)
        return;
    d->claiming = 1;
    d->claim_want = want;
    if (queue_claim_account(d->dep.queue, d->acct->id, want, lease_ms(d), claim_done, d) != 0)
        d->claiming = 0;
}

static void queue_notified(int64_t earliest_due_ms, void *arg)
{
    struct lane *d = arg;
    int64_t now = util_now_ms();

    if (earliest_due_ms <= now) {
        d->claim_short = 0;
        pump(d);
    } else
        arm(d, earliest_due_ms - now);
}

/* ---- the set: one lane per account ------------------------------------ */

struct dispatch {
    struct lane *lane[CONFIG_MAX_ACCOUNTS];
    int n;
};

static void lane_close(struct lane *d)
{
    if (d == NULL)
        return;
    /* DELETEs still out at a stop were aborted by upstream_close() without
     * a callback; their jobs stay leased and are re-queued at next start. */
    while (!LIST_EMPTY(&d->attempts))
        /* The analyzer does not see LIST_REMOVE move the head on. */
        attempt_unlink_free(LIST_FIRST(&d->attempts)); // NOLINT(clang-analyzer-unix.Malloc)
    event_free(d->timer);
    free(d->ready);
    free(d);
}

static int lane_open(struct lane **out, const struct dispatch_deps *dep, int index)
{
    struct lane *d = calloc(1, sizeof(*d));

    *out = d;
    if (d == NULL)
        return -1;
    d->dep = *dep;
    d->index = index;
    d->acct = &dep->cfg->accounts[index];
    d->upstream = dep->upstream[index];
    LIST_INIT(&d->attempts);
    d->prefetch = d->acct->max_in_flight;
    d->cap_ready = (PREFETCH_MAX + 1) * d->acct->max_in_flight + 1;
    d->ready = calloc((size_t)d->cap_ready, sizeof(*d->ready));
    d->timer = evtimer_new(dep->base, timer_fired, d);
    if (d->timer == NULL || d->ready == NULL) {
        if (d->timer != NULL)
            event_free(d->timer);
        free(d->ready);
        free(d);
        *out = NULL;
        return -1;
    }
    return 0;
}

/* The queue has one listener: it wakes every lane, and each claims its own. */
static void set_notified(int64_t earliest_due_ms, void *arg)
{
    struct dispatch *ds = arg;

    for (int i = 0; i < ds->n; i++)
        queue_notified(earliest_due_ms, ds->lane[i]);
}

int dispatch_open(struct dispatch **out, const struct dispatch_deps *dep)
{
    struct dispatch *ds = calloc(1, sizeof(*ds));

    *out = NULL;
    if (ds == NULL)
        return -1;
    for (int i = 0; i < dep->cfg->n_accounts; i++) {
        if (lane_open(&ds->lane[i], dep, i) != 0) {
            dispatch_close(ds);
            return -1;
        }
        ds->n = i + 1;
    }
    *out = ds;
    return 0;
}

void dispatch_start(struct dispatch *ds)
{
    queue_set_notify(ds->lane[0]->dep.queue, set_notified, ds);
    for (int i = 0; i < ds->n; i++)
        arm(ds->lane[i], 0);
}

void dispatch_stop(struct dispatch *ds)
{
    for (int i = 0; i < ds->n; i++) {
        struct lane *d = ds->lane[i];
        d->stopping = 1;
        release_ready(d, util_now_ms());
        evtimer_del(d->timer);
    }
}

void dispatch_close(struct dispatch *ds)
{
    if (ds == NULL)
        return;
    for (int i = 0; i < ds->n; i++)
        lane_close(ds->lane[i]);
    free(ds);
}

static void lane_set_paused(struct lane *d, int paused)
{
    d->paused = paused;
    metrics_set_paused(d->index, paused);
    if (!paused) {
        d->claim_short = 0;
        pump(d);
    }
}

/* Paused here, or, in a shared queue, by an operator through any replica
 * (the queue learns it with each claim; the claims get nothing). */
static int lane_paused(const struct lane *d)
{
    return d->paused || (queue_shared(d->dep.queue) && queue_paused(d->dep.queue, d->acct->id));
}

int dispatch_set_paused(struct dispatch *ds, int account, int paused)
{
    if (account >= ds->n)
        return -1;
    for (int i = 0; i < ds->n; i++)
        if (account < 0 || account == i)
            lane_set_paused(ds->lane[i], paused);
    return 0;
}

int dispatch_account_state(const struct dispatch *ds, int account, struct dispatch_state *st)
{
    const struct lane *d;

    memset(st, 0, sizeof(*st));
    if (account < 0 || account >= ds->n)
        return -1;
    d = ds->lane[account];
    st->paused = lane_paused(d);
    st->breaker_open = d->sending.breaker_open;
    st->unreachable = d->sending.unreachable;
    st->in_flight = d->in_flight;
    return 0;
}

/* Over every account: paused when all are, held when any is. */
int dispatch_paused(const struct dispatch *ds)
{
    int all = ds->n > 0;

    for (int i = 0; i < ds->n; i++)
        all = all && lane_paused(ds->lane[i]);
    return all;
}

int dispatch_breaker_open(const struct dispatch *ds)
{
    for (int i = 0; i < ds->n; i++)
        if (ds->lane[i]->sending.breaker_open)
            return 1;
    return 0;
}

int dispatch_unreachable(const struct dispatch *ds)
{
    for (int i = 0; i < ds->n; i++)
        if (ds->lane[i]->sending.unreachable)
            return 1;
    return 0;
}

int dispatch_in_flight(const struct dispatch *ds)
{
    int n = 0;

    for (int i = 0; i < ds->n; i++)
        n += ds->lane[i]->in_flight;
    return n;
}
