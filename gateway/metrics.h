/*
 * metrics.h: counters and gauges for GET /metrics, in Prometheus text
 * format. Every label takes its values from a fixed list, so nothing from
 * outside can grow the series count. Updated on the loop thread only.
 */
#ifndef DG_METRICS_H
#define DG_METRICS_H

#include <stdint.h>

#include "queue.h"

struct audit;
struct evbuffer;

enum metrics_route {
    MR_WEBHOOK,
    MR_DELETIONS_CREATE,
    MR_DELETIONS_GET,
    MR_RECEIPT,
    MR_HEALTHZ,
    MR_READYZ,
    MR_METRICS,
    MR_ADMIN,
    MR_OTHER,
    MR_COUNT
};

void metrics_request(enum metrics_route route, int status);
/* A refused request, by its stable error code. */
void metrics_rejection(const char *code);
/* Webhooks and internal requests by result: accepted, ignored, duplicate. */
void metrics_ingest(const char *result);
/* One DELETE attempt: its outcome class and how long it took. */
/* The account label's values: the configured ids, set once at start
 * (ids[] must outlive the metrics); account below is an index into them.
 * The unlabelled series add every account up (breaker, unreachable and
 * paused: 1 when any account is). */
#define METRICS_MAX_ACCOUNTS 16
void metrics_set_accounts(const char *const *ids, int n);
void metrics_attempt(int account, const char *outcome, double seconds);
void metrics_set_breaker(int account, int open);
void metrics_set_unreachable(int account, int held);
void metrics_set_paused(int account, int paused);
void metrics_set_in_flight(int account, int n);
/* A DELETE a shared limiter granted went out later than its slack. */
void metrics_sent_late(void);
/* What /readyz would answer, set before each exposition (dg_ready). */
void metrics_set_ready(int ready);

/* Appends the exposition; stats may be NULL when the queue did not answer. */
void metrics_render(struct evbuffer *out, const struct queue_stats *stats, int64_t now_ms);
/* Appends the audit log's health and fault counts (read from the log
 * itself, which its writer thread keeps); a may be NULL. */
void metrics_render_audit(struct evbuffer *out, struct audit *a);

#endif
