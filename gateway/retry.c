/*
 * retry.c: what an answer from Extend means, and when to try again.
 *
 *   retry_classify              status code -> enum retry_class
 *   retry_backoff_ms            capped exponential backoff, jitter in [base/2, base]
 *   retry_parse_retry_after     delta seconds or IMF-fixdate HTTP date
 *   retry_parse_ratelimit_reset Unix seconds, as Extend's SDK reads it
 *   retry_next_delay_ms         the server's hint first, else the backoff
 *   retry_rate_limit_hold_ms    the account-wide hold after a 429: floored, growing
 *   retry_probe_interval_ms     spacing of probes while all sending is held
 *
 * Everything is a pure function of its arguments: the clock and the random
 * draw come from the caller, so every branch is unit-tested.
 */
#include "retry.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

/* A server may ask for a long pause, but never one that parks the queue for
 * longer than this. */
#define RETRY_HINT_CAP_MS (3600LL * 1000)
/* Header values longer than this are not numbers or dates we accept. */
#define RETRY_HEADER_MAX 64
/* Seconds beyond this (about 31 years) saturate instead of overflowing. */
#define RETRY_SECONDS_MAX 1000000000LL
/* Latest Unix second accepted for X-RateLimit-Reset: 9999-12-31T23:59:59Z. */
#define RETRY_UNIX_MAX 253402300799LL

enum retry_class retry_classify(int http_status)
{
    if (http_status >= 200 && http_status <= 299)
        return RETRY_DELETED;
    /* 410 Gone says the same as 404 for a deletion: nothing is left. */
    if (http_status == 404 || http_status == 410)
        return RETRY_NOT_FOUND;
    if (http_status == 429)
        return RETRY_RATE_LIMITED;
    if (http_status == 401 || http_status == 402 || http_status == 403)
        return RETRY_CREDENTIALS;
    if (http_status == 408)
        return RETRY_TRANSIENT;
    if (http_status >= 400 && http_status <= 499)
        return RETRY_REJECTED;
    /* 5xx, no answer (0), and anything Extend never sends on a DELETE (1xx,
     * 3xx from a misrouted proxy, >= 600): keep the job and back off, so a
     * surprise ends as `dead` with an audit record, never as a silent drop. */
    return RETRY_TRANSIENT;
}

int64_t retry_backoff_ms(int attempt, int64_t initial_ms, int64_t max_ms, uint32_t random_u32)
{
    int64_t base;
    uint64_t span, offset;

    if (max_ms < 1)
        max_ms = 1;
    if (initial_ms < 1)
        initial_ms = 1;
    if (attempt < 1)
        attempt = 1;
    base = initial_ms < max_ms ? initial_ms : max_ms;
    /* Doubling only while base <= max/2 keeps every step below max_ms, so
     * no attempt count can overflow. */
    for (int i = 1; i < attempt && base < max_ms; i++)
        base = base > max_ms / 2 ? max_ms : base * 2;

    /* offset = floor(span * random / UINT32_MAX) without a 128-bit product:
     * split span into q * UINT32_MAX + r; r * random < 2^64. */
    span = (uint64_t)(base - base / 2);
    offset = (span / UINT32_MAX) * random_u32 + ((span % UINT32_MAX) * random_u32) / UINT32_MAX;
    base = base / 2 + (int64_t)offset;
    return base < 1 ? 1 : base;
}

/* Copies value without surrounding blanks into out; -1 if empty or long. */
static int trim_copy(const char *value, char *out, size_t outlen)
{
    size_t len;

    if (value == NULL)
        return -1;
    while (*value == ' ' || *value == '\t')
        value++;
    len = strlen(value);
    while (len > 0 && (value[len - 1] == ' ' || value[len - 1] == '\t' || value[len - 1] == '\r' ||
                       value[len - 1] == '\n'))
        len--;
    if (len == 0 || len >= outlen)
        return -1;
    memcpy(out, value, len);
    out[len] = '\0';
    return 0;
}

/* All digits, saturating at cap instead of overflowing. */
static int parse_digits_sat(const char *s, int64_t cap, int64_t *out)
{
    int64_t v = 0;

    if (*s == '\0')
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        if (v < cap)
            v = v * 10 + (*s - '0');
        if (v > cap)
            v = cap;
    }
    *out = v;
    return 0;
}

static int fixed_int(const char *s, int n, int *out)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
 * days_from_civil), so no timegm() and no TZ environment is involved. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    int64_t era, yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* IMF-fixdate, RFC 9110 section 5.6.7: "Sun, 06 Nov 1994 08:49:37 GMT".
 * The obsolete RFC 850 and asctime forms are not accepted: Extend and
 * every current proxy send IMF-fixdate, and an unparsable hint only means
 * the gateway falls back to its own backoff. */
static int parse_imf_fixdate(const char *s, int64_t *unix_ms)
{
    static const char *const days[] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    int day, year, hour, min, sec, mon = -1, wd = -1;

    if (strlen(s) != 29)
        return -1;
    for (int i = 0; i < 7; i++)
        if (memcmp(s, days[i], 3) == 0)
            wd = i;
    for (int i = 0; i < 12; i++)
        if (memcmp(s + 8, months[i], 3) == 0)
            mon = i + 1;
    if (wd < 0 || mon < 0 || s[3] != ',' || s[4] != ' ' || s[7] != ' ' || s[11] != ' ' ||
        s[16] != ' ' || s[19] != ':' || s[22] != ':' || s[25] != ' ' ||
        memcmp(s + 26, "GMT", 3) != 0)
        return -1;
    if (fixed_int(s + 5, 2, &day) || fixed_int(s + 12, 4, &year) || fixed_int(s + 17, 2, &hour) ||
        fixed_int(s + 20, 2, &min) || fixed_int(s + 23, 2, &sec))
        return -1;
    if (day < 1 || day > 31 || hour > 23 || min > 59 || sec > 60)
        return -1;
    *unix_ms = ((days_from_civil(year, mon, day) * 24 + hour) * 60 + min) * 60000LL + sec * 1000LL;
    return 0;
}

int retry_parse_retry_after(const char *value, int64_t now_ms, int64_t *delay_ms)
{
    char buf[RETRY_HEADER_MAX];
    int64_t v;

    if (trim_copy(value, buf, sizeof(buf)) != 0)
        return -1;
    if (buf[0] >= '0' && buf[0] <= '9') {
        if (parse_digits_sat(buf, RETRY_SECONDS_MAX, &v) != 0)
            return -1;
        *delay_ms = v * 1000;
        return 0;
    }
    if (parse_imf_fixdate(buf, &v) != 0)
        return -1;
    *delay_ms = v > now_ms ? v - now_ms : 0;
    return 0;
}

int retry_parse_ratelimit_reset(const char *value, int64_t now_ms, int64_t *delay_ms)
{
    char buf[RETRY_HEADER_MAX];
    int64_t v;

    if (trim_copy(value, buf, sizeof(buf)) != 0 || parse_digits_sat(buf, INT64_MAX / 10, &v) ||
        v > RETRY_UNIX_MAX)
        return -1;
    v *= 1000;
    *delay_ms = v > now_ms ? v - now_ms : 0;
    return 0;
}

/* The server's hint (Retry-After first, then X-RateLimit-Reset): 0 with
 * *hint_ms capped, or -1 when neither parses. */
static int server_hint_ms(const char *retry_after, const char *ratelimit_reset, int64_t max_ms,
                          int64_t now_ms, int64_t *hint_ms)
{
    int64_t hint, cap;

    if (retry_parse_retry_after(retry_after, now_ms, &hint) != 0 &&
        retry_parse_ratelimit_reset(ratelimit_reset, now_ms, &hint) != 0)
        return -1;
    /* The server knows when its window reopens: wait that long even beyond
     * max_ms, but never more than an hour (or max_ms if the operator
     * configured a longer one). */
    cap = max_ms > RETRY_HINT_CAP_MS ? max_ms : RETRY_HINT_CAP_MS;
    *hint_ms = hint > cap ? cap : hint;
    return 0;
}

int64_t retry_next_delay_ms(const char *retry_after, const char *ratelimit_reset, int attempt,
                            int64_t initial_ms, int64_t max_ms, int64_t now_ms, uint32_t random_u32)
{
    int64_t hint;

    if (max_ms < 1)
        max_ms = 1;
    if (server_hint_ms(retry_after, ratelimit_reset, max_ms, now_ms, &hint) == 0)
        return hint < 1 ? 1 : hint;
    hint = retry_backoff_ms(attempt, initial_ms, max_ms, random_u32);
    return hint > max_ms ? max_ms : hint;
}

int64_t retry_rate_limit_hold_ms(const char *retry_after, const char *ratelimit_reset, int streak,
                                 int64_t initial_ms, int64_t max_ms, int64_t now_ms)
{
    int64_t hint = 0, base, grown;

    if (max_ms < RETRY_RATE_LIMIT_FLOOR_MS)
        max_ms = RETRY_RATE_LIMIT_FLOOR_MS; /* the floor beats a smaller max_ms */
    base = initial_ms > RETRY_RATE_LIMIT_FLOOR_MS ? initial_ms : RETRY_RATE_LIMIT_FLOOR_MS;
    /* The top of the jitter range is the plain doubling. */
    grown = retry_backoff_ms(streak, base, max_ms, UINT32_MAX);
    if (server_hint_ms(retry_after, ratelimit_reset, max_ms, now_ms, &hint) != 0)
        hint = 0;
    return hint > grown ? hint : grown;
}

int64_t retry_probe_interval_ms(enum retry_hold why, int failed, int64_t initial_ms, int64_t max_ms)
{
    int64_t first = initial_ms < 1000 ? initial_ms : 1000;

    if (why == RETRY_HOLD_UNREACHABLE && max_ms > RETRY_UNREACHABLE_PROBE_MAX_MS)
        max_ms = RETRY_UNREACHABLE_PROBE_MAX_MS;
    return retry_backoff_ms(failed, first, max_ms, UINT32_MAX);
}

void retry_rate_window(double rate_per_second, int *per_window, int64_t *window_us)
{
    int n = rate_per_second >= 1 ? (int)rate_per_second : 1;

    if (n > RETRY_RATE_WINDOW_MAX)
        n = RETRY_RATE_WINDOW_MAX;
    *per_window = n;
    /* Rounded up: a window a microsecond short would let one start too
     * many into a second. */
    *window_us = (int64_t)ceil(1e6 * n / rate_per_second);
}

int retry_rate_take(struct retry_rate *r, double rate_per_second, int64_t now_us,
                    int64_t *wait_until_us)
{
    int per_window;
    int64_t window_us, interval_us;

    if (rate_per_second <= 0)
        return 0;
    retry_rate_window(rate_per_second, &per_window, &window_us);
    if (now_us < r->next_us) {
        *wait_until_us = r->next_us;
        return 1;
    }
    if (r->n >= per_window) {
        int64_t oldest = r->starts[(r->head + r->n - per_window) % RETRY_RATE_WINDOW_MAX];

        if (oldest + window_us > now_us) {
            *wait_until_us = oldest + window_us;
            return 1;
        }
    }
    /* Rounded up, as the window: 1/3 s rounded to the nearest microsecond
     * is 333333, and four starts 333333 us apart fit in one second. */
    interval_us = (int64_t)ceil(1e6 / rate_per_second);
    r->next_us =
        now_us - r->next_us < RETRY_RATE_LATE_US ? r->next_us + interval_us : now_us + interval_us;
    if (r->n >= per_window) { /* only the last per_window starts count */
        r->head = (r->head + r->n - per_window + 1) % RETRY_RATE_WINDOW_MAX;
        r->n = per_window - 1;
    }
    r->starts[(r->head + r->n) % RETRY_RATE_WINDOW_MAX] = now_us;
    r->n++;
    return 0;
}

static int *hold_flag(struct retry_account *acct, enum retry_hold why)
{
    return why == RETRY_HOLD_CREDENTIALS ? &acct->breaker_open : &acct->unreachable;
}

/* Holds all sending behind one probe. The probe interval grows only with
 * probes that fail: the answers to requests already out when the hold
 * began say nothing new, and counting them would push the first probe out
 * by as many doublings. */
static void hold_open(struct retry_account *acct, int probe, enum retry_hold why,
                      int64_t initial_ms, int64_t max_ms, int64_t now_ms, unsigned *events)
{
    int *flag = hold_flag(acct, why);

    if (!acct->breaker_open && !acct->unreachable)
        acct->probes_failed = 1;
    else if (probe)
        acct->probes_failed += acct->probes_failed < 64;
    else if (*flag)
        return;
    if (!*flag)
        *events |=
            why == RETRY_HOLD_CREDENTIALS ? RETRY_EV_BREAKER_OPENED : RETRY_EV_UNREACHABLE_OPENED;
    *flag = 1;
    acct->probe_at_ms =
        now_ms + retry_probe_interval_ms(acct->unreachable ? RETRY_HOLD_UNREACHABLE : why,
                                         acct->probes_failed, initial_ms, max_ms);
}

static void hold_close(struct retry_account *acct, enum retry_hold why, unsigned *events)
{
    int *flag = hold_flag(acct, why);

    if (!*flag)
        return;
    *flag = 0;
    *events |=
        why == RETRY_HOLD_CREDENTIALS ? RETRY_EV_BREAKER_CLOSED : RETRY_EV_UNREACHABLE_CLOSED;
}

void retry_decide(struct retry_account *acct, const struct retry_answer *ans, int64_t initial_ms,
                  int64_t max_ms, int64_t now_ms, uint32_t random_u32, struct retry_verdict *v)
{
    int64_t delay;

    v->cls = retry_classify(ans->http_status);
    v->kind = RETRY_V_AGAIN;
    v->retry_at_ms = now_ms;
    v->counts_as_attempt = 1;
    v->events = 0;
    switch (v->cls) {
    case RETRY_DELETED:
        v->kind = RETRY_V_DELETED;
        break;
    case RETRY_NOT_FOUND:
        v->kind = RETRY_V_NOT_FOUND;
        break;
    case RETRY_REJECTED:
        v->kind = RETRY_V_REJECTED;
        break;
    case RETRY_RATE_LIMITED:
        v->counts_as_attempt = 0;
        /* The 429s to requests that were out together are one in the row. */
        if (ans->started_ms >= acct->rl_last_ms && acct->rl_streak < 64)
            acct->rl_streak++;
        acct->rl_last_ms = now_ms;
        delay = retry_rate_limit_hold_ms(ans->retry_after, ans->ratelimit_reset, acct->rl_streak,
                                         initial_ms, max_ms, now_ms);
        if (now_ms + delay > acct->hold_until_ms)
            acct->hold_until_ms = now_ms + delay;
        v->kind = ans->give_up ? RETRY_V_GIVE_UP : RETRY_V_AGAIN;
        v->retry_at_ms = acct->hold_until_ms;
        break;
    case RETRY_CREDENTIALS:
        v->counts_as_attempt = 0;
        hold_open(acct, ans->probe, RETRY_HOLD_CREDENTIALS, initial_ms, max_ms, now_ms, &v->events);
        break;
    case RETRY_TRANSIENT:
    default:
        delay = retry_next_delay_ms(ans->retry_after, ans->ratelimit_reset, ans->attempts + 1,
                                    initial_ms, max_ms, now_ms, random_u32);
        v->kind = ans->give_up ? RETRY_V_GIVE_UP : RETRY_V_AGAIN;
        v->retry_at_ms = now_ms + delay;
        /* No answer, and none to any request since this one was sent:
         * Extend is out of reach, not this job in trouble. Its own backoff
         * must not outlast the hold, or the backlog would wait for it
         * after Extend is back. A request that alone fails while others
         * are answered keeps its own backoff. */
        if (ans->http_status == 0 && ans->started_ms >= acct->last_answer_ms) {
            v->events |= RETRY_EV_UNREACHABLE_SEEN;
            hold_open(acct, ans->probe, RETRY_HOLD_UNREACHABLE, initial_ms, max_ms, now_ms,
                      &v->events);
            if (v->retry_at_ms > acct->probe_at_ms)
                v->retry_at_ms = acct->probe_at_ms;
        }
        break;
    }
    if (ans->http_status != 0) {
        acct->last_answer_ms = now_ms;
        hold_close(acct, RETRY_HOLD_UNREACHABLE, &v->events);
        /* Only an answer to a request sent after the last 429 says the
         * account's limit lets requests through again. */
        if (v->cls != RETRY_RATE_LIMITED && ans->started_ms >= acct->rl_last_ms)
            acct->rl_streak = 0;
    }
    if (v->cls != RETRY_CREDENTIALS && ans->http_status != 0)
        hold_close(acct, RETRY_HOLD_CREDENTIALS, &v->events);
    if (!acct->breaker_open && !acct->unreachable)
        acct->probes_failed = 0;
}
