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

#endif
