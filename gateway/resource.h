/*
 * resource.h: the kinds of Extend resources the gateway deletes, their
 * collections in the API, and the rules every resource id must follow.
 */
#ifndef DG_RESOURCE_H
#define DG_RESOURCE_H

#include <stddef.h>

enum resource {
    RES_EXTRACT_RUN,
    RES_PARSE_RUN,
    RES_CLASSIFY_RUN,
    RES_SPLIT_RUN,
    RES_EDIT_RUN,
    RES_WORKFLOW_RUN,
    RES_FILE,
    RES_COUNT
};

/* Longest resource id accepted (Extend ids are at most 255 characters). */
#define RESOURCE_ID_MAX 255

/* "extract_run" */
const char *resource_name(enum resource r);
/* "extract_runs": the path segment under the API base URL. */
const char *resource_collection(enum resource r);
/* 0 and *out set, or -1 for an unknown name. */
int resource_from_name(const char *name, enum resource *out);

/* An id is 1..255 characters of [A-Za-z0-9_-]. Prefixes are not enforced:
 * Extend may add or change them. Everything else ('/', '.', '%', controls,
 * non-ASCII) is refused so an id can never change the path it lands in. */
int resource_id_valid(const char *id, size_t len);

/* An Extend account's id (config.h's accounts[].id): 1..32 characters of
 * [a-z0-9_-], the one rule for the config, request bodies, webhook paths,
 * the queue and ctl. It is safe in a path, a label and JSON unescaped. */
#define RESOURCE_ACCOUNT_ID_MAX 32
int resource_account_id_valid(const char *id, size_t len);

/* Percent-encodes id as one path segment (RFC 3986 unreserved characters
 * pass, everything else becomes %XX). Returns 0, or -1 if out is too small;
 * out needs 3 * strlen(id) + 1 bytes at most. */
int resource_encode_segment(const char *id, char *out, size_t outlen);

#endif
