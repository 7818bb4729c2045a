/*
 * erasure.h: the body of an internal erasure request, parsed and checked.
 *
 * One deletion:  {"resource": "extract_run", "id": "exr_...",
 *                 "reason": "gdpr erasure #123", "not_before": "RFC 3339"}
 * or a batch:    {"items": [ {...}, ... ]}  (1..max_items)
 * Either may name the Extend account ("account": "eu"), a batch once for
 * all its items, an item for itself; the caller maps it to a configured
 * account ("" = none named: the default).
 * reason is optional (at most 256 bytes of printable text), not_before is
 * optional and at most 366 days ahead of now_ms. Unknown keys are refused
 * so typos do not silently change what
 * is deleted. The whole request is refused if any item is bad, and the
 * error names the item ("items[3].id: ...").
 */
#ifndef DG_ERASURE_H
#define DG_ERASURE_H

#include <stddef.h>
#include <stdint.h>

#include "api_error.h"
#include "resource.h"

#define ERASURE_REASON_MAX 256
#define ERASURE_ACCOUNT_MAX RESOURCE_ACCOUNT_ID_MAX

struct erasure_item {
    enum resource resource;
    char id[RESOURCE_ID_MAX + 1];
    char reason[ERASURE_REASON_MAX + 1];   /* "" when absent */
    int64_t not_before_ms;                 /* 0 when absent */
    char account[ERASURE_ACCOUNT_MAX + 1]; /* [a-z0-9_-]; "" when absent */
};

/* 0 with *items (malloc'd, caller frees) and *n set, or -1 with *err:
 * 400 malformed_json | invalid_body | unknown_resource | invalid_id |
 * invalid_reason | invalid_not_before | invalid_account | batch_too_large |
 * empty_batch. */
int erasure_parse(const char *body, size_t len, int max_items, int64_t now_ms,
                  struct erasure_item **items, int *n, struct api_error *err);

#endif
