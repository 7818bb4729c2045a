/*
 * retry.h: what an answer from Extend means for a deletion, and when to
 * try again. Pure functions; the clock and the randomness are passed in.
 */
#ifndef DG_RETRY_H
#define DG_RETRY_H

#include <stdint.h>

enum retry_class {
    RETRY_DELETED,      /* 2xx */
    RETRY_NOT_FOUND,    /* 404: already gone, done */
    RETRY_REJECTED,     /* 400, 422 and other 4xx: terminal for this deletion */
    RETRY_TRANSIENT,    /* 408, 5xx, no answer: back off, counts toward giving up */
    RETRY_RATE_LIMITED, /* 429: back off, does not use up the retry budget */
    RETRY_CREDENTIALS,  /* 401, 402, 403: the account is the problem: open the breaker */
};

/* http_status 0 means no HTTP answer (connection, TLS, time-out). */
enum retry_class retry_classify(int http_status);

/* Exponential backoff with jitter for the attempt'th retry (1 = first):
 * base = min(max_ms, initial_ms * 2^(attempt-1)), result uniformly drawn in
 * [base/2, base] from random_u32. Never overflows, never below 1 ms. */
int64_t retry_backoff_ms(int attempt, int64_t initial_ms, int64_t max_ms, uint32_t random_u32);

/* Retry-After: delta seconds ("120") or an HTTP date ("Wed, 21 Oct 2015
 * 07:28:00 GMT"). 0 with *delay_ms (>= 0) set, or -1 if absent/invalid. */
int retry_parse_retry_after(const char *value, int64_t now_ms, int64_t *delay_ms);

/* X-RateLimit-Reset as Extend's SDK reads it: Unix seconds when the window
 * resets. 0 with *delay_ms (>= 0), or -1. */
int retry_parse_ratelimit_reset(const char *value, int64_t now_ms, int64_t *delay_ms);

/* When to try next after a transient or rate-limited answer: the server's
 * hint (Retry-After first, then X-RateLimit-Reset) when present, else the
 * backoff; clamped to [1 ms, max_ms] unless the server asked for longer
 * (a server's wait is honoured up to 1 hour). */
int64_t retry_next_delay_ms(const char *retry_after, const char *ratelimit_reset, int attempt,
                            int64_t initial_ms, int64_t max_ms, int64_t now_ms,
                            uint32_t random_u32);

/* The shortest hold after a 429, whatever the server says. Retry-After
 * counts whole seconds, so "0" (or a reset time already past) only says
 * the window reopens within the second: sending again at once spends that
 * window on requests refused again, hundreds of them a second. One second
 * is the least a seconds-granular hint can mean. */
#define RETRY_RATE_LIMIT_FLOOR_MS 1000

/* How long all sending holds after the streak'th 429 in a row (1 = the
 * first; any other answer ends the row): the longer of the server's hint
 * (as in retry_next_delay_ms, capped at an hour or max_ms) and a backoff of
 * its own, max(initial_ms, the floor) doubling with each 429 of the row up
 * to max_ms, so a hint that keeps proving too short (or no hint) is not
 * obeyed forever. Never below RETRY_RATE_LIMIT_FLOOR_MS. No jitter: one
 * hold for the whole account, not many jobs to spread apart. */
int64_t retry_rate_limit_hold_ms(const char *retry_after, const char *ratelimit_reset, int streak,
                                 int64_t initial_ms, int64_t max_ms, int64_t now_ms);

/* Why all sending is held and one probe request at a time is sent. */
enum retry_hold {
    RETRY_HOLD_CREDENTIALS, /* Extend refuses the credentials or the account (401, 402, 403) */
    RETRY_HOLD_UNREACHABLE, /* no HTTP answer at all: connect, DNS, TLS, time-out */
};

/* The longest wait between two probes while Extend cannot be reached: the
 * backlog waits for the probe that finds Extend back, and a probe costs one
 * connection attempt. */
#define RETRY_UNREACHABLE_PROBE_MAX_MS 5000

/* The wait before the next probe after the failed'th failure in a row (1 =
 * the one that started the hold): min(initial_ms, 1 s), doubling, up to
 * max_ms for credentials (someone has to fix them, and a bad token is not
 * presented often) or up to min(max_ms, RETRY_UNREACHABLE_PROBE_MAX_MS)
 * while Extend is unreachable. */
int64_t retry_probe_interval_ms(enum retry_hold why, int failed, int64_t initial_ms,
                                int64_t max_ms);

/* The rate limit's window: at most *per_window starts in any *window_us.
 * rate >= 1: floor(rate) in floor(rate)/rate s (10 -> 10 in 1 s; 7.5 -> 7
 * in 0.933 s); below 1: one in 1/rate s. The single node's pacing and the
 * shared PostgreSQL limiter both count by it. */
#define RETRY_RATE_WINDOW_MAX 1000 /* the config's highest rate_per_second */
void retry_rate_window(double rate_per_second, int *per_window, int64_t *window_us);

/* One account's DELETE starts under its rate limit. */
#define RETRY_RATE_LATE_US 10000
struct retry_rate {
    int64_t next_us;                       /* even spacing: no start before this */
    int64_t starts[RETRY_RATE_WINDOW_MAX]; /* the last starts, a ring, oldest at head */
    int head, n;
};

/* Whether a DELETE may start at now_us under rate_per_second: 0 and the
 * start recorded, or 1 and *wait_until_us set to when to ask again.
 *
 * Starts are spaced 1/rate apart, by a schedule rather than from each
 * actual start: a timer that fires a millisecond late (they all do) would
 * otherwise lose that millisecond on every start, and 75/s would drain at
 * 62/s. Late by less than RETRY_RATE_LATE_US, the schedule holds (at high
 * rates the starts missed meanwhile go at once); later than that (nothing
 * to send, or a stall), it starts afresh from now: no burst makes up for
 * time nobody sent in. A schedule alone could crowd rate + 1 starts into a second
 * (one late, the next on time), so the window is checked as well, over
 * the last per_window starts: it is what bounds every second.
 * rate_per_second <= 0: no limit, always 0. */
int retry_rate_take(struct retry_rate *r, double rate_per_second, int64_t now_us,
                    int64_t *wait_until_us);

/* ---- the whole decision for one answer ---- */

/* One account's sending state, as the answers so far left it. The
 * dispatcher keeps one per account and changes it only through
 * retry_decide; everything else reads it. */
struct retry_account {
    int64_t hold_until_ms;  /* after a 429: nothing is sent before this */
    int rl_streak;          /* 429s in a row, each to a request sent after the one before */
    int64_t rl_last_ms;     /* when the last 429 arrived */
    int breaker_open;       /* Extend refuses the credentials */
    int unreachable;        /* Extend does not answer at all */
    int probes_failed;      /* failures in a row since the hold began */
    int64_t probe_at_ms;    /* the next probe is not sent before this */
    int64_t last_answer_ms; /* when any HTTP answer last arrived */
};

/* One attempt and what came back. */
struct retry_answer {
    int http_status;         /* 0: no HTTP answer */
    const char *retry_after; /* the answer's headers, or NULL */
    const char *ratelimit_reset;
    int64_t started_ms; /* when the request went out */
    int probe;          /* it was sent while all sending was held */
    int attempts;       /* attempts counted for the job before this one */
    int give_up;        /* the job's give-up time has passed */
};

enum retry_verdict_kind {
    RETRY_V_DELETED,
    RETRY_V_NOT_FOUND,
    RETRY_V_REJECTED,
    RETRY_V_AGAIN,   /* queued again, due at retry_at_ms */
    RETRY_V_GIVE_UP, /* dead: failures past the give-up time */
};

/* What changed in the account, for logs, metrics and readiness. */
#define RETRY_EV_BREAKER_OPENED 0x1
#define RETRY_EV_BREAKER_CLOSED 0x2
#define RETRY_EV_UNREACHABLE_OPENED 0x4
#define RETRY_EV_UNREACHABLE_CLOSED 0x8
#define RETRY_EV_UNREACHABLE_SEEN 0x10 /* this answer was a sign of it (keep its detail) */

struct retry_verdict {
    enum retry_class cls;
    enum retry_verdict_kind kind;
    int64_t retry_at_ms;   /* RETRY_V_AGAIN and RETRY_V_GIVE_UP */
    int counts_as_attempt; /* 0 for 429s and credential holds */
    unsigned events;       /* RETRY_EV_* */
};

/*
 * The dispatch policy for one answer: the job's verdict, and the account's
 * state moved on (the 429 streak and hold, the credentials breaker, the
 * unreachable hold and its probes). A 429 holds the whole account and
 * does not use the job's retry budget; 401/402/403 open the breaker and
 * keep the job queued; no answer at all, with no answer to anything sent
 * since, holds the account behind probes and caps the job's own backoff at
 * the next probe; any HTTP answer ends the unreachable hold, and any but a
 * 401/402/403 the breaker. Pure: the clock and the randomness come in.
 */
void retry_decide(struct retry_account *acct, const struct retry_answer *ans, int64_t initial_ms,
                  int64_t max_ms, int64_t now_ms, uint32_t random_u32, struct retry_verdict *v);

#endif
