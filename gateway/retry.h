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

/* The rate limit's slots: whether a DELETE may start at now_us under a
 * limit of rate_per_second. 1 when it must wait (*next_send_us unchanged);
 * 0 when it may, with its slot taken: *next_send_us moves to now_us +
 * 1/rate. Spacing each start from the last one, rather than counting per
 * second, is what keeps every one-second window within the rate, whatever
 * the rate. rate_per_second <= 0: no limit, always 0. */
int retry_rate_slot(int64_t *next_send_us, double rate_per_second, int64_t now_us);

#endif
