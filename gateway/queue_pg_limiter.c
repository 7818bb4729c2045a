/*
 * queue_pg_limiter.c: one row per Extend account that every replica's
 * claim locks, so the account's rate and in-flight limits, its 429 hold,
 * its credentials breaker and the operator's pause hold for all replicas
 * together.
 */
#include "queue_pg.h"
#include "retry.h"

#include <stdlib.h>
#include <string.h>

/* Grants are spread so that no one-second window holds more than the
 * rate: a window a little longer than a second absorbs the few
 * milliseconds between a grant and its DELETE leaving. */
#define PG_WINDOW_MARGIN_MS QUEUE_SEND_SLACK_MS
#define PG_FULL_RETRY_MS 25 /* every in-flight slot taken: when to ask again */
/* A grant is for a moment this far ahead, and the replica sends then, not
 * at once: its own commit (two fsyncs) and the hand-over to the loop take
 * a varying few milliseconds, which would otherwise let two replicas'
 * DELETEs crowd into one second. The grant's window is reckoned at that
 * moment. While it waits, the job counts as in flight. */
#define PG_SEND_DELAY_MS 100

/* How many jobs the account lets this claim take now, by the limiter row
 * (locked until the cycle commits, so claims of all replicas take turns):
 * none while paused or held after a 429; one, to one replica, when the
 * breaker's probe is due; else what the in-flight cap and the rate window
 * leave. *wake: when to ask again if the answer is 0. */
const struct pg_account *queue_pg_account(const struct queue_store *q, const char *id)
{
    for (int i = 0; id != NULL && i < q->n_accounts; i++)
        if (strcmp(q->accounts[i].id, id) == 0)
            return &q->accounts[i];
    return &q->accounts[0];
}

int queue_pg_limit_read(struct queue_store *q, const struct pg_account *acct, struct pg_limit *l,
                        int want, int *allow, int64_t *wake)
{
    struct pg_args a = {.n = 0};
    PGresult *r;
    int64_t hold, in_flight;
    int breaker, paused;
    double rate = acct->rate;

    arg_now(q, &a);
    arg_text(&a, acct->id);
    r = queue_pg_exec(q,
                      "SELECT coalesce($1::bigint, dg_now_ms()), array_to_string(grants, ','),"
                      " hold_until_ms, breaker_open, probe_at_ms, probe_interval_ms, paused,"
                      " (SELECT count(*) FROM dg_jobs WHERE account = $2 AND state = 'in_flight'"
                      " AND due_ms > coalesce($1::bigint, dg_now_ms()))"
                      " FROM dg_limiter WHERE account = $2 FOR UPDATE",
                      &a);
    if (r == NULL || PQntuples(r) != 1) {
        PQclear(r);
        return -1;
    }
    memset(l, 0, sizeof(*l));
    l->now = queue_pg_i64(r, 0, 0);
    l->at = l->now + (rate > 0 ? PG_SEND_DELAY_MS : 0);
    for (const char *s = PQgetvalue(r, 0, 1); *s != '\0' && l->n_ring < PG_RING_MAX;) {
        char *end;
        long long v = strtoll(s, &end, 10);
        if (end == s)
            break;
        l->ring[l->n_ring++] = v;
        s = *end == ',' ? end + 1 : end;
    }
    hold = queue_pg_i64(r, 0, 2);
    breaker = PQgetvalue(r, 0, 3)[0] == 't';
    l->probe_at = queue_pg_i64(r, 0, 4);
    l->interval = queue_pg_i64(r, 0, 5);
    paused = l->paused = PQgetvalue(r, 0, 6)[0] == 't';
    in_flight = queue_pg_i64(r, 0, 7);
    PQclear(r);

    *wake = INT64_MAX;
    *allow = want;
    if (acct->max_in_flight > 0 && *allow > acct->max_in_flight - in_flight) {
        *allow = (int)(acct->max_in_flight - in_flight);
        /* Slots held by other replicas free as their answers come, which
         * nobody announces: look again soon. */
        if (*allow <= 0)
            *wake = l->now + PG_FULL_RETRY_MS;
    }
    if (paused || *allow < 0)
        *allow = 0;
    if (hold > l->now) {
        *allow = 0;
        *wake = hold;
    }
    if (breaker && *allow > 0) {
        if (l->probe_at > l->now) {
            *allow = 0;
            *wake = l->probe_at;
        } else {
            *allow = 1; /* one probe, for whichever replica asks first */
            l->probing = 1;
        }
    }
    if (rate > 0 && *allow > 0) {
        /* At most per_window grants in any window (retry.h). */
        int per_window, used = 0;
        int64_t window, oldest = INT64_MAX;

        retry_rate_window(rate, &per_window, &window);
        window = (window + 999) / 1000 + PG_WINDOW_MARGIN_MS;

        for (int i = 0; i < l->n_ring; i++) {
            if (l->ring[i] > l->at - window) {
                used++;
                oldest = l->ring[i] < oldest ? l->ring[i] : oldest;
            }
        }
        if (*allow > per_window - used)
            *allow = per_window - used;
        if (*allow <= 0) {
            *allow = 0;
            if (oldest != INT64_MAX)
                *wake = oldest + window - (l->at - l->now);
        }
    }
    return 0;
}

/* Records what the claim took: one grant per job in the rate window, and
 * a probe taken. The row keeps the grants of the last minute, to show
 * what was granted, but never more than PG_RING_MAX: then the oldest go.
 * The newest must stay, whatever the rate: they are the window's, and a
 * row that kept the oldest instead would let the window look empty. */
int queue_pg_limit_write(struct queue_store *q, const struct pg_account *acct,
                         const struct pg_limit *l, int taken)
{
    char buf[PG_RING_MAX * 21 + 2];
    size_t len = 0;
    struct pg_args a = {.n = 0};
    int first = 0;

    if (taken == 0)
        return 0;
    buf[0] = '\0';
    if (taken > PG_RING_MAX)
        taken = PG_RING_MAX;
    /* The ring is in grant order, oldest first. */
    while (first < l->n_ring &&
           (l->ring[first] <= l->now - 60000 || l->n_ring - first > PG_RING_MAX - taken))
        first++;
    for (int i = first; i < l->n_ring && acct->rate > 0; i++)
        len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s%lld", len ? "," : "",
                                (long long)l->ring[i]);
    for (int i = 0; i < taken && acct->rate > 0; i++)
        len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s%lld", len ? "," : "",
                                (long long)l->at);
    arg_text(&a, buf);
    arg_i64(&a, l->probing ? l->now + l->interval : l->probe_at);
    arg_i64(&a, l->probing ? (l->interval * 2 > 60000 ? 60000 : l->interval * 2) : l->interval);
    arg_text(&a, acct->id);
    return queue_pg_do(q,
                       "UPDATE dg_limiter SET grants = coalesce(string_to_array(nullif($1, ''), "
                       "',')::bigint[], '{}'),"
                       " probe_at_ms = $2, probe_interval_ms = $3 WHERE account = $4",
                       &a);
}

/* An answer one replica got holds or frees every replica: a 429 holds all
 * sending until its hold ends, rejected credentials open the breaker, any
 * other answer closes it. */
int queue_pg_limiter_learn(struct queue_store *q, const char *account,
                           const struct queue_outcome *o, int64_t now)
{
    struct pg_args a = {.n = 0};

    if (o->http_status == 0)
        return 0;
    arg_text(&a, account);
    if (o->http_status == 429) {
        arg_i64(&a, o->retry_at_ms);
        return queue_pg_do(q,
                           "UPDATE dg_limiter SET hold_until_ms = greatest(hold_until_ms, $2)"
                           " WHERE account = $1",
                           &a);
    }
    if (o->http_status == 401 || o->http_status == 402 || o->http_status == 403) {
        arg_i64(&a, now);
        return queue_pg_do(
            q,
            "UPDATE dg_limiter SET breaker_open = true, probe_at_ms = greatest(probe_at_ms,"
            " $2 + probe_interval_ms) WHERE account = $1 AND NOT breaker_open",
            &a);
    }
    return queue_pg_do(q,
                       "UPDATE dg_limiter SET breaker_open = false, probe_interval_ms = 1000"
                       " WHERE account = $1 AND breaker_open",
                       &a);
}
