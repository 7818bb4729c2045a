/* test_retry.c: status classes, backoff bounds, server hints and their
 * precedence, the holds and probes, and the rate limit's slots. */
#include "check.h"
#include "retry.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* 1994-11-06T08:49:37Z, the RFC's example date. */
#define RFC_DATE_MS 784111777000LL

static void test_classify_table(void)
{
    static const struct {
        int status;
        enum retry_class cls;
    } table[] = {
        {200, RETRY_DELETED},     {202, RETRY_DELETED},      {204, RETRY_DELETED},
        {299, RETRY_DELETED},     {404, RETRY_NOT_FOUND},    {410, RETRY_NOT_FOUND},
        {0, RETRY_TRANSIENT},     {408, RETRY_TRANSIENT},    {500, RETRY_TRANSIENT},
        {502, RETRY_TRANSIENT},   {503, RETRY_TRANSIENT},    {504, RETRY_TRANSIENT},
        {599, RETRY_TRANSIENT},   {429, RETRY_RATE_LIMITED}, {401, RETRY_CREDENTIALS},
        {402, RETRY_CREDENTIALS}, {403, RETRY_CREDENTIALS},  {400, RETRY_REJECTED},
        {409, RETRY_REJECTED},    {413, RETRY_REJECTED},     {422, RETRY_REJECTED},
        {499, RETRY_REJECTED},    {301, RETRY_TRANSIENT},    {100, RETRY_TRANSIENT},
        {600, RETRY_TRANSIENT},   {-1, RETRY_TRANSIENT},
    };

    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        if (retry_classify(table[i].status) != table[i].cls)
            fprintf(stderr, "status %d misclassified\n", table[i].status);
        CHECK(retry_classify(table[i].status) == table[i].cls);
    }
}

static void test_backoff_bounds_every_attempt(void)
{
    const int64_t initial = 1000, max = 300000;

    for (int a = 1; a <= 64; a++) {
        int64_t base = initial;
        for (int i = 1; i < a && base < max; i++)
            base = base * 2 > max ? max : base * 2;
        int64_t lo = retry_backoff_ms(a, initial, max, 0);
        int64_t hi = retry_backoff_ms(a, initial, max, UINT32_MAX);
        int64_t mid = retry_backoff_ms(a, initial, max, UINT32_MAX / 2);
        CHECK(lo == base / 2);
        CHECK(hi == base);
        CHECK(mid >= lo && mid <= hi);
    }
    CHECK(retry_backoff_ms(1, 1000, 300000, UINT32_MAX) == 1000);
    CHECK(retry_backoff_ms(2, 1000, 300000, UINT32_MAX) == 2000);
    CHECK(retry_backoff_ms(9, 1000, 300000, UINT32_MAX) == 256000);
    CHECK(retry_backoff_ms(10, 1000, 300000, UINT32_MAX) == 300000);
    CHECK(retry_backoff_ms(10, 1000, 300000, 0) == 150000);
}

static void test_backoff_extremes_do_not_overflow(void)
{
    /* Huge bounds: doubling and the jitter product must stay in range. */
    for (int a = 1; a <= 64; a++) {
        int64_t hi = retry_backoff_ms(a, INT64_MAX / 3, INT64_MAX, UINT32_MAX);
        int64_t lo = retry_backoff_ms(a, INT64_MAX / 3, INT64_MAX, 0);
        CHECK(hi > 0 && lo > 0 && lo <= hi);
    }
    CHECK(retry_backoff_ms(64, 1, INT64_MAX, UINT32_MAX) == INT64_MAX);
    CHECK(retry_backoff_ms(INT32_MAX, 1000, 300000, UINT32_MAX) == 300000);
    /* Nonsense inputs still give at least 1 ms. */
    CHECK(retry_backoff_ms(0, 0, 0, 0) == 1);
    CHECK(retry_backoff_ms(-5, -1, -1, UINT32_MAX) == 1);
    CHECK(retry_backoff_ms(1, 1, 1, 0) == 1);
    /* initial above max is capped to max. */
    CHECK(retry_backoff_ms(1, 5000, 2000, UINT32_MAX) == 2000);
}

static void test_retry_after_forms(void)
{
    int64_t d = -7;

    CHECK(retry_parse_retry_after("120", 0, &d) == 0 && d == 120000);
    CHECK(retry_parse_retry_after("  7 ", 0, &d) == 0 && d == 7000);
    CHECK(retry_parse_retry_after("0", 0, &d) == 0 && d == 0);
    CHECK(retry_parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", RFC_DATE_MS - 5000, &d) == 0 &&
          d == 5000);
    CHECK(retry_parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", RFC_DATE_MS + 5000, &d) == 0 &&
          d == 0);
    CHECK(retry_parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412480000LL - 1, &d) == 0 &&
          d == 1);
    CHECK(retry_parse_retry_after("Thu, 29 Feb 2024 00:00:00 GMT", 1709164800000LL, &d) == 0 &&
          d == 0);
    /* Huge delta saturates, it does not wrap. */
    CHECK(retry_parse_retry_after("99999999999999999999999", 0, &d) == 0 && d > 0);
    d = -7;
    CHECK(retry_parse_retry_after(NULL, 0, &d) == -1);
    CHECK(retry_parse_retry_after("", 0, &d) == -1);
    CHECK(retry_parse_retry_after("   ", 0, &d) == -1);
    CHECK(retry_parse_retry_after("-5", 0, &d) == -1);
    CHECK(retry_parse_retry_after("5s", 0, &d) == -1);
    CHECK(retry_parse_retry_after("1.5", 0, &d) == -1);
    CHECK(retry_parse_retry_after("soon", 0, &d) == -1);
    CHECK(retry_parse_retry_after("Sun, 06 Nov 1994 08:49:37 UTC", 0, &d) == -1);
    CHECK(retry_parse_retry_after("Sun, 06 Foo 1994 08:49:37 GMT", 0, &d) == -1);
    CHECK(retry_parse_retry_after("Sun, 06 Nov 1994 25:49:37 GMT", 0, &d) == -1);
    CHECK(retry_parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", 0, &d) == -1);
    CHECK(d == -7);
}

static void test_ratelimit_reset(void)
{
    int64_t d = -7;

    CHECK(retry_parse_ratelimit_reset("1700000010", 1700000000000LL, &d) == 0 && d == 10000);
    CHECK(retry_parse_ratelimit_reset("1700000000", 1700000005000LL, &d) == 0 && d == 0);
    CHECK(retry_parse_ratelimit_reset(" 1700000001 ", 1700000000500LL, &d) == 0 && d == 500);
    d = -7;
    CHECK(retry_parse_ratelimit_reset("", 0, &d) == -1);
    CHECK(retry_parse_ratelimit_reset(NULL, 0, &d) == -1);
    CHECK(retry_parse_ratelimit_reset("-1", 0, &d) == -1);
    CHECK(retry_parse_ratelimit_reset("abc", 0, &d) == -1);
    CHECK(retry_parse_ratelimit_reset("99999999999999999999999", 0, &d) == -1);
    CHECK(d == -7);
}

static void test_next_delay_precedence(void)
{
    const int64_t now = 1700000000000LL;

    /* Retry-After wins over X-RateLimit-Reset. */
    CHECK(retry_next_delay_ms("3", "1700000010", 1, 1000, 300000, now, 0) == 3000);
    /* Unparsable Retry-After falls through to the reset time. */
    CHECK(retry_next_delay_ms("later", "1700000010", 1, 1000, 300000, now, 0) == 10000);
    /* Neither: backoff. */
    CHECK(retry_next_delay_ms(NULL, NULL, 3, 1000, 300000, now, UINT32_MAX) == 4000);
    CHECK(retry_next_delay_ms("", "", 3, 1000, 300000, now, 0) == 2000);
    /* A server asking for longer than max_ms is honoured up to an hour. */
    CHECK(retry_next_delay_ms("600", NULL, 1, 1000, 300000, now, 0) == 600000);
    CHECK(retry_next_delay_ms("86400", NULL, 1, 1000, 300000, now, 0) == 3600000);
    CHECK(retry_next_delay_ms("99999999999999999999", NULL, 1, 1000, 300000, now, 0) == 3600000);
    /* ... or up to max_ms when the operator allows longer than an hour. */
    CHECK(retry_next_delay_ms("86400", NULL, 1, 1000, 7200000, now, 0) == 7200000);
    /* Zero or a past reset never means "no wait at all". */
    CHECK(retry_next_delay_ms("0", NULL, 1, 1000, 300000, now, 0) == 1);
    CHECK(retry_next_delay_ms(NULL, "1600000000", 1, 1000, 300000, now, 0) == 1);
    /* The backoff path stays within max_ms. */
    CHECK(retry_next_delay_ms(NULL, NULL, 64, 1000, 300000, now, UINT32_MAX) == 300000);
}

static void test_rate_limit_hold_has_a_floor(void)
{
    const int64_t now = 1700000000000LL;

    /* "Retry-After: 0", a past reset, or a hint under a second still hold
     * for the floor, even with a tiny initial_ms or max_ms. */
    CHECK(retry_rate_limit_hold_ms("0", NULL, 1, 100, 300000, now) == RETRY_RATE_LIMIT_FLOOR_MS);
    CHECK(retry_rate_limit_hold_ms(NULL, "1600000000", 1, 100, 300000, now) ==
          RETRY_RATE_LIMIT_FLOOR_MS);
    CHECK(retry_rate_limit_hold_ms(NULL, "1700000000", 1, 10, 10, now + 300) ==
          RETRY_RATE_LIMIT_FLOOR_MS);
    CHECK(retry_rate_limit_hold_ms(NULL, NULL, 1, 10, 10, now) == RETRY_RATE_LIMIT_FLOOR_MS);
    CHECK(retry_rate_limit_hold_ms(NULL, NULL, 64, 10, 10, now) == RETRY_RATE_LIMIT_FLOOR_MS);
    /* A longer hint is honoured as before, beyond max_ms up to an hour. */
    CHECK(retry_rate_limit_hold_ms("2", NULL, 1, 100, 300000, now) == 2000);
    CHECK(retry_rate_limit_hold_ms(NULL, "1700000010", 1, 100, 300000, now) == 10000);
    CHECK(retry_rate_limit_hold_ms("600", NULL, 1, 1000, 300000, now) == 600000);
    CHECK(retry_rate_limit_hold_ms("86400", NULL, 1, 1000, 300000, now) == 3600000);
    /* A larger initial_ms is the first hold. */
    CHECK(retry_rate_limit_hold_ms(NULL, NULL, 1, 5000, 300000, now) == 5000);
}

static void test_rate_limit_hold_grows_with_the_streak(void)
{
    const int64_t now = 1700000000000LL;
    int64_t prev = 0;

    /* No hint (or "0"): 1 s, 2 s, 4 s ... up to max_ms, no jitter. */
    for (int n = 1; n <= 12; n++) {
        int64_t a = retry_rate_limit_hold_ms(NULL, NULL, n, 100, 300000, now);
        int64_t b = retry_rate_limit_hold_ms("0", NULL, n, 100, 300000, now);
        int64_t want = 1000LL << (n - 1);
        CHECK(a == (want < 300000 ? want : 300000));
        CHECK(b == a);
        CHECK(a >= prev);
        prev = a;
    }
    CHECK(retry_rate_limit_hold_ms(NULL, NULL, 2, 1000, 300000, now) == 2000);
    CHECK(retry_rate_limit_hold_ms(NULL, NULL, 4, 1000, 300000, now) == 8000);
    CHECK(retry_rate_limit_hold_ms(NULL, NULL, 9, 1000, 300000, now) == 256000);
    CHECK(retry_rate_limit_hold_ms(NULL, NULL, 10, 1000, 300000, now) == 300000);
    CHECK(retry_rate_limit_hold_ms(NULL, NULL, INT32_MAX, 1000, 300000, now) == 300000);
    /* A hint that keeps being followed by another 429 is outgrown. */
    CHECK(retry_rate_limit_hold_ms("2", NULL, 2, 1000, 300000, now) == 2000);
    CHECK(retry_rate_limit_hold_ms("2", NULL, 3, 1000, 300000, now) == 4000);
    /* Nonsense streaks are the first 429. */
    CHECK(retry_rate_limit_hold_ms(NULL, NULL, 0, 1000, 300000, now) == 1000);
    CHECK(retry_rate_limit_hold_ms(NULL, NULL, -3, 1000, 300000, now) == 1000);
}

static void test_probe_intervals(void)
{
    /* Credentials: min(initial, 1 s), doubling up to max_ms. */
    CHECK(retry_probe_interval_ms(RETRY_HOLD_CREDENTIALS, 1, 100, 2000) == 100);
    CHECK(retry_probe_interval_ms(RETRY_HOLD_CREDENTIALS, 1, 5000, 300000) == 1000);
    CHECK(retry_probe_interval_ms(RETRY_HOLD_CREDENTIALS, 2, 5000, 300000) == 2000);
    CHECK(retry_probe_interval_ms(RETRY_HOLD_CREDENTIALS, 9, 1000, 300000) == 256000);
    CHECK(retry_probe_interval_ms(RETRY_HOLD_CREDENTIALS, 30, 1000, 300000) == 300000);
    /* Unreachable: the same start, but never more than 5 s apart, so the
     * end of an outage is noticed within seconds. */
    CHECK(retry_probe_interval_ms(RETRY_HOLD_UNREACHABLE, 1, 1000, 300000) == 1000);
    CHECK(retry_probe_interval_ms(RETRY_HOLD_UNREACHABLE, 3, 1000, 300000) == 4000);
    CHECK(retry_probe_interval_ms(RETRY_HOLD_UNREACHABLE, 4, 1000, 300000) ==
          RETRY_UNREACHABLE_PROBE_MAX_MS);
    CHECK(retry_probe_interval_ms(RETRY_HOLD_UNREACHABLE, INT32_MAX, 1000, 300000) ==
          RETRY_UNREACHABLE_PROBE_MAX_MS);
    CHECK(retry_probe_interval_ms(RETRY_HOLD_UNREACHABLE, 9, 100, 2000) == 2000);
    CHECK(retry_probe_interval_ms(RETRY_HOLD_UNREACHABLE, 0, 100, 2000) == 100);
}

/* Starts granted by retry_rate_take to a caller that asks every step_us,
 * or (step_us 0) when it was told to, late_us late, for span_us; the
 * largest number in any one-second window goes to *worst. */
static int rate_starts(double rate, int64_t step_us, int64_t late_us, int64_t span_us, int *worst)
{
    static int64_t at[20000];
    static struct retry_rate r;
    int64_t until = 0;
    int n = 0, j = 0;

    memset(&r, 0, sizeof(r));
    *worst = 0;
    for (int64_t now = 1000000; now < 1000000 + span_us && n < 20000;) {
        if (retry_rate_take(&r, rate, now, &until) == 0) {
            at[n++] = now;
            now += step_us;
        } else {
            CHECK(until > now);
            now = step_us > 0 ? now + step_us : until + late_us;
        }
    }
    for (int i = 0; i < n; i++) {
        while (at[i] - at[j] >= 1000000)
            j++;
        if (i - j + 1 > *worst)
            *worst = i - j + 1;
    }
    return n;
}

static void test_rate_starts_keep_every_second_within_the_rate(void)
{
    static const double rates[] = {0.5, 1, 3, 7, 7.5, 8, 50, 75, 333, 1000};
    static struct retry_rate r;
    int64_t until = 0;
    int worst, per_window;
    int64_t window_us;

    /* No limit: every start may go, and nothing is counted. */
    CHECK(retry_rate_take(&r, 0, 5, &until) == 0 && r.n == 0);
    CHECK(retry_rate_take(&r, -1, 5, &until) == 0 && r.n == 0);
    /* The window: floor(rate) in floor(rate)/rate s, one in 1/rate s below 1. */
    retry_rate_window(10, &per_window, &window_us);
    CHECK(per_window == 10 && window_us == 1000000);
    retry_rate_window(7.5, &per_window, &window_us);
    CHECK(per_window == 7 && window_us == 933334);
    retry_rate_window(0.5, &per_window, &window_us);
    CHECK(per_window == 1 && window_us == 2000000);
    /* 4 per second: a start every 250 ms, the first at once. */
    CHECK(retry_rate_take(&r, 4, 1000000, &until) == 0);
    CHECK(retry_rate_take(&r, 4, 1000001, &until) == 1 && until == 1250000);
    CHECK(retry_rate_take(&r, 4, 1249999, &until) == 1 && until == 1250000);
    /* Asked 3 ms late, the schedule holds: the next is still at 1.5 s. */
    CHECK(retry_rate_take(&r, 4, 1253000, &until) == 0);
    CHECK(retry_rate_take(&r, 4, 1499999, &until) == 1 && until == 1500000);
    CHECK(retry_rate_take(&r, 4, 1500000, &until) == 0);
    CHECK(retry_rate_take(&r, 4, 1750000, &until) == 0);
    /* At 2.25 s the schedule would put a fifth start in the second that
     * began with the late one at 1.253 s: the window holds it to 2.253 s. */
    CHECK(retry_rate_take(&r, 4, 2000000, &until) == 0);
    CHECK(retry_rate_take(&r, 4, 2250000, &until) == 1 && until == 2253000);
    CHECK(retry_rate_take(&r, 4, 2253000, &until) == 0);
    /* A start far behind the schedule begins it afresh: no burst makes up
     * for time nobody sent in. */
    CHECK(retry_rate_take(&r, 4, 9000000, &until) == 0);
    CHECK(retry_rate_take(&r, 4, 9000000, &until) == 1 && until == 9250000);
    for (size_t i = 0; i < sizeof(rates) / sizeof(rates[0]); i++) {
        double rate = rates[i];
        /* At most ceil(rate) in any second (7.5/s is 8 in some). */
        int most = (int)ceil(rate), n;

        /* Asked every microsecond for ten seconds: the rate is reached and
         * no one-second window holds more. */
        n = rate_starts(rate, 1, 0, 10000000, &worst);
        if (worst > most || n < (int)(rate * 10) - 1)
            fprintf(stderr, "rate %g: %d starts, %d in the worst second\n", rate, n, worst);
        CHECK(worst <= most);
        CHECK(n >= (int)(rate * 10) - 1);
        /* A timer that fires 2 ms late every time loses nothing: 99% of the
         * rate still, and still no second over it. */
        n = rate_starts(rate, 0, 2000, 10000000, &worst);
        if (worst > most || n < (int)(rate * 10 * 0.99) - 1)
            fprintf(stderr, "rate %g, 2 ms late: %d starts, %d in the worst second\n", rate, n,
                    worst);
        CHECK(worst <= most);
        CHECK(n >= (int)(rate * 10 * 0.99) - 1);
    }
}

/* ---- retry_decide: the whole policy for one answer ---- */

#define INIT_MS 1000
#define MAX_MS 300000

static struct retry_verdict decide_at(struct retry_account *acct, int status, int64_t started,
                                      int64_t now, int probe, int give_up)
{
    struct retry_answer ans = {.http_status = status,
                               .started_ms = started,
                               .probe = probe,
                               .attempts = 2,
                               .give_up = give_up};
    struct retry_verdict v;

    retry_decide(acct, &ans, INIT_MS, MAX_MS, now, 0x12345678u, &v);
    return v;
}

static void test_decide_terminal_answers(void)
{
    struct retry_account acct = {0};

    CHECK(decide_at(&acct, 204, 0, 10, 0, 0).kind == RETRY_V_DELETED);
    CHECK(decide_at(&acct, 404, 0, 10, 0, 0).kind == RETRY_V_NOT_FOUND);
    CHECK(decide_at(&acct, 422, 0, 10, 0, 1).kind == RETRY_V_REJECTED);
    struct retry_verdict v = decide_at(&acct, 503, 0, 10, 0, 0);
    CHECK(v.kind == RETRY_V_AGAIN && v.counts_as_attempt && v.retry_at_ms > 10);
    CHECK(decide_at(&acct, 503, 0, 10, 0, 1).kind == RETRY_V_GIVE_UP);
    CHECK(acct.last_answer_ms == 10 && !acct.breaker_open && !acct.unreachable);
}

static void test_decide_429_holds_the_account_and_keeps_the_budget(void)
{
    struct retry_account acct = {0};
    struct retry_verdict v = decide_at(&acct, 429, 100, 1000, 0, 0);

    CHECK(v.kind == RETRY_V_AGAIN && v.counts_as_attempt == 0);
    CHECK(acct.rl_streak == 1 && acct.hold_until_ms >= 1000 + RETRY_RATE_LIMIT_FLOOR_MS);
    CHECK(v.retry_at_ms == acct.hold_until_ms);
    /* A 429 to a request that was out with the first: the same one in the row. */
    v = decide_at(&acct, 429, 500, 1200, 0, 0);
    CHECK(acct.rl_streak == 1 && v.retry_at_ms == acct.hold_until_ms);
    /* One sent after it: the row grows, and so does the hold. */
    int64_t first = acct.hold_until_ms;
    v = decide_at(&acct, 429, 1300, 3000, 0, 0);
    CHECK(acct.rl_streak == 2 && acct.hold_until_ms > first && v.retry_at_ms == acct.hold_until_ms);
    /* A 429 past the give-up time still gives up; one answer that is not a
     * 429, to a request sent after the last 429, ends the row. */
    CHECK(decide_at(&acct, 429, 3100, 3200, 0, 1).kind == RETRY_V_GIVE_UP);
    decide_at(&acct, 200, 2000, 3300, 0, 0);
    CHECK(acct.rl_streak == 3); /* sent before the last 429: says nothing */
    decide_at(&acct, 200, 3250, 3400, 0, 0);
    CHECK(acct.rl_streak == 0);
}

static void test_decide_credentials_open_the_breaker_until_an_answer(void)
{
    struct retry_account acct = {0};
    struct retry_verdict v = decide_at(&acct, 401, 0, 1000, 0, 1);

    /* Never dead for the account's fault, and no attempt counted. */
    CHECK(v.kind == RETRY_V_AGAIN && v.counts_as_attempt == 0 && v.retry_at_ms == 1000);
    CHECK(acct.breaker_open && (v.events & RETRY_EV_BREAKER_OPENED));
    CHECK(acct.probes_failed == 1);
    int64_t probe1 = acct.probe_at_ms;
    CHECK(probe1 == 1000 + retry_probe_interval_ms(RETRY_HOLD_CREDENTIALS, 1, INIT_MS, MAX_MS));
    /* More 401s to requests already out: nothing new, nothing moves. */
    v = decide_at(&acct, 403, 0, 1100, 0, 0);
    CHECK(v.events == 0 && acct.probes_failed == 1 && acct.probe_at_ms == probe1);
    /* A failed probe doubles the wait. */
    v = decide_at(&acct, 401, 1200, 1300, 1, 0);
    CHECK(acct.probes_failed == 2 && acct.probe_at_ms > probe1 && v.events == 0);
    /* Any other answer closes it. */
    v = decide_at(&acct, 404, 1400, 1500, 1, 0);
    CHECK(!acct.breaker_open && (v.events & RETRY_EV_BREAKER_CLOSED) && acct.probes_failed == 0);
}

static void test_decide_no_answer_holds_behind_probes(void)
{
    struct retry_account acct = {.last_answer_ms = 500};
    /* No answer to a request sent before the last answer: its own trouble. */
    struct retry_verdict v = decide_at(&acct, 0, 400, 1000, 0, 0);

    CHECK(v.events == 0 && !acct.unreachable && v.kind == RETRY_V_AGAIN);
    /* None to one sent after it: Extend is out of reach. */
    v = decide_at(&acct, 0, 600, 1000, 0, 0);
    CHECK(acct.unreachable && (v.events & RETRY_EV_UNREACHABLE_OPENED) &&
          (v.events & RETRY_EV_UNREACHABLE_SEEN));
    CHECK(v.retry_at_ms <= acct.probe_at_ms && v.counts_as_attempt == 1);
    /* Still nothing, past the give-up time: dead, the hold stays. */
    v = decide_at(&acct, 0, 700, 1100, 0, 1);
    CHECK(v.kind == RETRY_V_GIVE_UP && acct.unreachable &&
          !(v.events & RETRY_EV_UNREACHABLE_OPENED));
    /* Any HTTP answer, even a 500, ends the hold. */
    v = decide_at(&acct, 500, 1200, 1300, 1, 0);
    CHECK(!acct.unreachable && (v.events & RETRY_EV_UNREACHABLE_CLOSED) && acct.probes_failed == 0);
}

int main(void)
{
    test_classify_table();
    test_backoff_bounds_every_attempt();
    test_backoff_extremes_do_not_overflow();
    test_retry_after_forms();
    test_ratelimit_reset();
    test_next_delay_precedence();
    test_rate_limit_hold_has_a_floor();
    test_rate_limit_hold_grows_with_the_streak();
    test_probe_intervals();
    test_rate_starts_keep_every_second_within_the_rate();
    test_decide_terminal_answers();
    test_decide_429_holds_the_account_and_keeps_the_budget();
    test_decide_credentials_open_the_breaker_until_an_answer();
    test_decide_no_answer_holds_behind_probes();
    return check_done();
}
