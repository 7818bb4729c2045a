/*
 * webhook.h: from a verified Extend event to the deletions it asks for.
 *
 * Pure: the caller passes the raw body (already signature-checked), the
 * rules and the clock. The envelope is {"eventId", "eventType", "payload"}.
 * A rule matches eventType exactly, or by prefix when its event ends in '*'.
 * "run" deletes the event's own run: payload.id, of the kind named by
 * payload.object, or, for a signed_data_url payload, by the eventType's
 * prefix ("extract_run.processed" -> extract_run). "file" deletes
 * payload.file.id and every payload.files[].id (null or absent is fine).
 * Run kinds the API cannot delete (batch_processor_run...) produce nothing.
 */
#ifndef DG_WEBHOOK_H
#define DG_WEBHOOK_H

#include <stddef.h>
#include <stdint.h>

#include "api_error.h"
#include "rule.h"
#include "resource.h"

#define WEBHOOK_EVENT_ID_MAX 255
#define WEBHOOK_EVENT_TYPE_MAX 127
#define WEBHOOK_MAX_DELETIONS 101 /* the run and up to 100 files */

struct planned_deletion {
    enum resource resource;
    char id[RESOURCE_ID_MAX + 1];
    int64_t not_before_ms; /* 0 = as soon as possible */
};

struct webhook_plan {
    char event_id[WEBHOOK_EVENT_ID_MAX + 1];
    char event_type[WEBHOOK_EVENT_TYPE_MAX + 1];
    int matched; /* 0: no rule matched the event type -> "ignored" */
    int n;
    struct planned_deletion items[WEBHOOK_MAX_DELETIONS];
};

/* 0 and *plan filled, or -1 with *err set (400 malformed_json, invalid_body,
 * invalid_id...). A matched rule that finds nothing to delete is n == 0
 * with matched == 1. */
int webhook_plan(const char *body, size_t len, const struct rule *rules, int n_rules,
                 int64_t now_ms, struct webhook_plan *plan, struct api_error *err);

#endif
