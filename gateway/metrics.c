/*
 * metrics.c: the gateway's Prometheus metrics (see metrics.h).
 *
 * Plain arrays indexed by fixed label values; rendering walks them. The
 * histogram buckets suit an API answering in milliseconds to seconds.
 */
#include "metrics.h"
#include "audit.h"

#include <stddef.h>
#include <string.h>

#include <event2/buffer.h>

static const char *const route_names[MR_COUNT] = {
    "webhook", "deletions_create", "deletions_get", "receipt", "healthz",
    "readyz",  "metrics",          "admin",         "other",
};

/* Status classes keep the label set small: 2xx, 4xx, 5xx and a few exact
 * codes that matter to operators. */
static const int status_codes[] = {200, 202, 400, 401, 403, 404, 405, 408,
                                   409, 413, 414, 415, 417, 431, 503};
#define N_STATUS (sizeof(status_codes) / sizeof(status_codes[0]) + 1) /* + "other" */

static const char *const rejection_codes[] = {
    "missing_header",
    "duplicate_header",
    "malformed_signature",
    "invalid_signature",
    "stale_timestamp",
    "future_timestamp",
    "unsupported_media_type",
    "malformed_json",
    "invalid_body",
    "invalid_id",
    "unknown_resource",
    "invalid_reason",
    "invalid_not_before",
    "invalid_account",
    "unknown_account",
    "account_not_allowed",
    "batch_too_large",
    "empty_batch",
    "too_many_files",
    "method_not_allowed",
    "not_found",
    "queue_unavailable",
    "tls_required",
    "client_certificate_mismatch",
    "unauthorized",
    "receipt_not_available",
    "receipts_disabled",
    "receipt_failed",
    "not_applicable",
    /* http_conn.c and http_framing.c: refused before any route ran */
    "invalid_request_line",
    "unsupported_http_version",
    "uri_too_long",
    "headers_too_large",
    "invalid_header",
    "invalid_content_length",
    "invalid_transfer_encoding",
    "invalid_host",
    "expectation_failed",
    "unexpected_body",
    "body_too_large",
    "invalid_chunk",
    "request_timeout",
    "too_many_connections",
    "http_error", /* libevent's own error page */
    "other",
};
#define N_REJECTIONS (sizeof(rejection_codes) / sizeof(rejection_codes[0]))

static const char *const ingest_results[] = {"accepted", "ignored", "duplicate"};
#define N_INGEST 3

static const char *const attempt_outcomes[] = {
    "deleted", "not_found", "rejected", "transient", "rate_limited", "credentials", "dry_run",
};
#define N_OUTCOMES (sizeof(attempt_outcomes) / sizeof(attempt_outcomes[0]))

static const double latency_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                         0.5,   1,    2.5,   5,    10,  30};
#define N_BUCKETS (sizeof(latency_buckets) / sizeof(latency_buckets[0]))

static struct {
    uint64_t requests[MR_COUNT][N_STATUS];
    uint64_t rejections[N_REJECTIONS];
    uint64_t ingest[N_INGEST];
    uint64_t attempts[N_OUTCOMES];
    uint64_t latency_bucket[N_BUCKETS];
    uint64_t latency_count;
    double latency_sum;
    int ready;
    uint64_t sent_late;
    /* Per account; the ids are the config's, so the label is bounded. */
    const char *const *account_ids;
    int n_accounts;
    struct account_metrics {
        uint64_t attempts[N_OUTCOMES];
        int breaker_open, unreachable, paused, in_flight;
    } a[METRICS_MAX_ACCOUNTS];
} m;

static const char *const default_ids[] = {"default"};

void metrics_set_accounts(const char *const *ids, int n)
{
    m.account_ids = ids;
    m.n_accounts = n < 0 ? 0 : n > METRICS_MAX_ACCOUNTS ? METRICS_MAX_ACCOUNTS : n;
}

static int account_ok(int account)
{
    if (m.n_accounts == 0) {
        m.account_ids = default_ids;
        m.n_accounts = 1;
    }
    return account >= 0 && account < m.n_accounts;
}

static int account_field(int account, size_t off)
{
    return *(const int *)(const void *)((const char *)&m.a[account] + off);
}

/* The sum of one int field over the accounts. */
static int accounts_sum(size_t off)
{
    int sum = 0;

    for (int i = 0; i < m.n_accounts; i++)
        sum += account_field(i, off);
    return sum;
}

#define AF(f) offsetof(struct account_metrics, f)

static size_t find(const char *const *names, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(names[i], name) == 0)
            return i;
    }
    return n;
}

void metrics_request(enum metrics_route route, int status)
{
    size_t i;

    if ((unsigned)route >= MR_COUNT)
        route = MR_OTHER;
    for (i = 0; i < N_STATUS - 1; i++) {
        if (status_codes[i] == status)
            break;
    }
    m.requests[route][i]++;
}

void metrics_rejection(const char *code)
{
    size_t i = find(rejection_codes, N_REJECTIONS, code);

    m.rejections[i < N_REJECTIONS ? i : N_REJECTIONS - 1]++;
}

void metrics_ingest(const char *result)
{
    size_t i = find(ingest_results, N_INGEST, result);

    if (i < N_INGEST)
        m.ingest[i]++;
}

void metrics_attempt(int account, const char *outcome, double seconds)
{
    size_t i = find(attempt_outcomes, N_OUTCOMES, outcome);

    if (i < N_OUTCOMES) {
        m.attempts[i]++;
        if (account_ok(account))
            m.a[account].attempts[i]++;
    }
    if (strcmp(outcome, "dry_run") == 0)
        return;
    for (size_t b = 0; b < N_BUCKETS; b++) {
        if (seconds <= latency_buckets[b])
            m.latency_bucket[b]++;
    }
    m.latency_count++;
    m.latency_sum += seconds;
}

void metrics_set_breaker(int account, int open)
{
    if (account_ok(account))
        m.a[account].breaker_open = open != 0;
}

void metrics_set_unreachable(int account, int held)
{
    if (account_ok(account))
        m.a[account].unreachable = held != 0;
}

void metrics_set_paused(int account, int paused)
{
    if (account_ok(account))
        m.a[account].paused = paused != 0;
}

void metrics_sent_late(void)
{
    m.sent_late++;
}

void metrics_set_in_flight(int account, int n)
{
    if (account_ok(account))
        m.a[account].in_flight = n;
}

static void render_accounts(struct evbuffer *out)
{
    static const struct {
        const char *name, *help;
        size_t off;
    } gauges[] = {
        {"dg_account_breaker_open", "1 while Extend rejects this account's credentials.",
         AF(breaker_open)},
        {"dg_account_upstream_unreachable", "1 while this account's Extend cannot be reached.",
         AF(unreachable)},
        {"dg_account_dispatch_paused", "1 while an operator has paused this account.", AF(paused)},
        {"dg_account_upstream_in_flight", "This account's DELETE requests in flight.",
         AF(in_flight)},
    };

    (void)account_ok(0);
    evbuffer_add_printf(out, "# HELP dg_account_upstream_attempts_total DELETE attempts at Extend "
                             "by account and outcome.\n"
                             "# TYPE dg_account_upstream_attempts_total counter\n");
    for (int a = 0; a < m.n_accounts; a++)
        for (size_t i = 0; i < N_OUTCOMES; i++)
            evbuffer_add_printf(out,
                                "dg_account_upstream_attempts_total{account=\"%s\",outcome=\"%s\"}"
                                " %llu\n",
                                m.account_ids[a], attempt_outcomes[i],
                                (unsigned long long)m.a[a].attempts[i]);
    for (size_t g = 0; g < sizeof(gauges) / sizeof(gauges[0]); g++) {
        evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s gauge\n", gauges[g].name, gauges[g].help,
                            gauges[g].name);
        for (int a = 0; a < m.n_accounts; a++)
            evbuffer_add_printf(out, "%s{account=\"%s\"} %d\n", gauges[g].name, m.account_ids[a],
                                account_field(a, gauges[g].off));
    }
}

void metrics_set_ready(int ready)
{
    m.ready = ready;
}

static void status_label(size_t i, char *out, size_t len)
{
    if (i < N_STATUS - 1)
        snprintf(out, len, "%d", status_codes[i]);
    else
        snprintf(out, len, "other");
}

void metrics_render(struct evbuffer *out, const struct queue_stats *stats, int64_t now_ms)
{
    char label[16];

    evbuffer_add_printf(out,
                        "# HELP dg_build_info Build information.\n"
                        "# TYPE dg_build_info gauge\n"
                        "dg_build_info{version=\"%s\"} 1\n",
                        DG_VERSION);

    evbuffer_add_printf(out, "# HELP dg_http_requests_total Inbound HTTP requests by route and "
                             "status.\n# TYPE dg_http_requests_total counter\n");
    for (size_t r = 0; r < MR_COUNT; r++) {
        for (size_t s = 0; s < N_STATUS; s++) {
            if (m.requests[r][s] == 0)
                continue;
            status_label(s, label, sizeof(label));
            evbuffer_add_printf(out, "dg_http_requests_total{route=\"%s\",status=\"%s\"} %llu\n",
                                route_names[r], label, (unsigned long long)m.requests[r][s]);
        }
    }

    evbuffer_add_printf(out, "# HELP dg_rejections_total Refused requests by error code.\n"
                             "# TYPE dg_rejections_total counter\n");
    for (size_t i = 0; i < N_REJECTIONS; i++)
        evbuffer_add_printf(out, "dg_rejections_total{reason=\"%s\"} %llu\n", rejection_codes[i],
                            (unsigned long long)m.rejections[i]);

    evbuffer_add_printf(out, "# HELP dg_ingested_total Accepted webhooks and erasure requests "
                             "by result.\n# TYPE dg_ingested_total counter\n");
    for (size_t i = 0; i < N_INGEST; i++)
        evbuffer_add_printf(out, "dg_ingested_total{result=\"%s\"} %llu\n", ingest_results[i],
                            (unsigned long long)m.ingest[i]);

    evbuffer_add_printf(out, "# HELP dg_upstream_attempts_total DELETE attempts at Extend by "
                             "outcome.\n# TYPE dg_upstream_attempts_total counter\n");
    for (size_t i = 0; i < N_OUTCOMES; i++)
        evbuffer_add_printf(out, "dg_upstream_attempts_total{outcome=\"%s\"} %llu\n",
                            attempt_outcomes[i], (unsigned long long)m.attempts[i]);

    evbuffer_add_printf(out, "# HELP dg_upstream_latency_seconds Time of DELETE requests to "
                             "Extend.\n# TYPE dg_upstream_latency_seconds histogram\n");
    for (size_t b = 0; b < N_BUCKETS; b++)
        evbuffer_add_printf(out, "dg_upstream_latency_seconds_bucket{le=\"%g\"} %llu\n",
                            latency_buckets[b], (unsigned long long)m.latency_bucket[b]);
    evbuffer_add_printf(out,
                        "dg_upstream_latency_seconds_bucket{le=\"+Inf\"} %llu\n"
                        "dg_upstream_latency_seconds_sum %.6f\n"
                        "dg_upstream_latency_seconds_count %llu\n",
                        (unsigned long long)m.latency_count, m.latency_sum,
                        (unsigned long long)m.latency_count);

    evbuffer_add_printf(out,
                        "# HELP dg_breaker_open 1 while Extend rejects the credentials and "
                        "dispatching is held.\n# TYPE dg_breaker_open gauge\n"
                        "dg_breaker_open %d\n"
                        "# HELP dg_upstream_unreachable 1 while Extend cannot be reached and "
                        "dispatching is held behind probes.\n"
                        "# TYPE dg_upstream_unreachable gauge\ndg_upstream_unreachable %d\n"
                        "# HELP dg_dispatch_paused 1 while an operator has paused dispatching.\n"
                        "# TYPE dg_dispatch_paused gauge\ndg_dispatch_paused %d\n"
                        "# HELP dg_upstream_in_flight DELETE requests in flight.\n"
                        "# TYPE dg_upstream_in_flight gauge\ndg_upstream_in_flight %d\n"
                        "# HELP dg_ready 1 while /readyz answers ready.\n"
                        "# TYPE dg_ready gauge\ndg_ready %d\n"
                        "# HELP dg_upstream_sent_late_total DELETEs a shared queue's limiter "
                        "granted that went out later than their slack (a stalled process).\n"
                        "# TYPE dg_upstream_sent_late_total counter\n"
                        "dg_upstream_sent_late_total %llu\n",
                        accounts_sum(AF(breaker_open)) > 0, accounts_sum(AF(unreachable)) > 0,
                        accounts_sum(AF(paused)) > 0, accounts_sum(AF(in_flight)), m.ready,
                        (unsigned long long)m.sent_late);
    render_accounts(out);

    if (stats == NULL)
        return;
    evbuffer_add_printf(out, "# HELP dg_deletions Deletions by state.\n"
                             "# TYPE dg_deletions gauge\n");
    for (int s = 0; s < DEL_STATE_COUNT; s++)
        evbuffer_add_printf(out, "dg_deletions{state=\"%s\"} %lld\n",
                            deletion_state_name((enum deletion_state)s),
                            (long long)stats->count[s]);
    evbuffer_add_printf(out,
                        "# HELP dg_jobs_pending Jobs queued or in flight (coalesced deletions "
                        "count once).\n# TYPE dg_jobs_pending gauge\ndg_jobs_pending %lld\n"
                        "# HELP dg_oldest_pending_age_seconds Age of the oldest pending job.\n"
                        "# TYPE dg_oldest_pending_age_seconds gauge\n"
                        "dg_oldest_pending_age_seconds %.3f\n",
                        (long long)stats->jobs_pending,
                        stats->oldest_pending_ms > 0 && now_ms > stats->oldest_pending_ms
                            ? (double)(now_ms - stats->oldest_pending_ms) / 1000.0
                            : 0.0);
    evbuffer_add_printf(out,
                        "# HELP dg_queue_wal_bytes Size of the queue's write-ahead log.\n"
                        "# TYPE dg_queue_wal_bytes gauge\ndg_queue_wal_bytes %lld\n"
                        "# HELP dg_queue_checkpoint_failures_total Checkpoints of the queue's "
                        "write-ahead log that failed or did nothing.\n"
                        "# TYPE dg_queue_checkpoint_failures_total counter\n"
                        "dg_queue_checkpoint_failures_total %lld\n"
                        "# HELP dg_queue_stale_dropped_total Completions and releases dropped "
                        "because their lease had been taken over.\n"
                        "# TYPE dg_queue_stale_dropped_total counter\n"
                        "dg_queue_stale_dropped_total %lld\n"
                        "# HELP dg_queue_pruned_total Finished jobs pruned after "
                        "queue.retention_days.\n"
                        "# TYPE dg_queue_pruned_total counter\ndg_queue_pruned_total %lld\n",
                        (long long)stats->wal_bytes, (long long)stats->checkpoint_failures,
                        (long long)stats->stale_dropped, (long long)stats->pruned);
}

void metrics_render_audit(struct evbuffer *out, struct audit *a)
{
    evbuffer_add_printf(out,
                        "# HELP dg_audit_healthy 1 while the audit log takes records at its "
                        "configured path.\n# TYPE dg_audit_healthy gauge\ndg_audit_healthy %d\n"
                        "# HELP dg_audit_errors_total Audit log faults by reason: failed writes, "
                        "the path no longer naming the open log.\n"
                        "# TYPE dg_audit_errors_total counter\n",
                        audit_healthy(a, NULL));
    for (int f = AUDIT_FAULT_NONE + 1; f < AUDIT_FAULT_COUNT; f++)
        evbuffer_add_printf(out, "dg_audit_errors_total{reason=\"%s\"} %llu\n",
                            audit_fault_name((enum audit_fault)f),
                            (unsigned long long)audit_fault_count(a, (enum audit_fault)f));
}
