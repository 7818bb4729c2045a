/*
 * audit.h: the audit trail, an append-only JSON Lines file whose records
 * are chained with HMAC-SHA256 under the audit key:
 *
 *   mac_n = HMAC(key, prev || canonical record n without "mac")
 *   prev of record n = mac_(n-1), 64 zeros for the very first record
 *
 * so editing, deleting, inserting or reordering any line breaks the chain
 * at that line, and `deletion-gateway audit verify` names it. When a file
 * reaches rotate_bytes it is renamed (path.1, path.2, ... oldest highest)
 * and the chain goes on in the new file: seq and prev carry over.
 *
 * Single writer: one thread (the queue worker) appends. Records go to a
 * buffer; audit_sync() writes and fsyncs them. A record never holds a
 * token, a secret or a payload's output: only ids, states, statuses.
 */
#ifndef DG_AUDIT_H
#define DG_AUDIT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct audit;

struct audit_record {
    const char *event;               /* accepted, duplicate, ignored, attempt, deleted,
                                        not_found, rejected, dead, cancelled, retried,
                                        config_loaded */
    int64_t time_ms;
    const char *deletion_id;         /* NULL when not about one deletion */
    int64_t job_id;                  /* 0 when none */
    const char *resource;            /* "extract_run" */
    const char *resource_id;
    const char *source;              /* "extend", a client id, or "operator" */
    const char *key;                 /* eventId, webhook-id, or operator name */
    const char *request_id;          /* the gateway's request id */
    int http_status;                 /* upstream status, 0 if none */
    const char *upstream_request_id; /* Extend's x-extend-request-id */
    const char *error_code;
    const char *detail;
};

int audit_open(struct audit **out, const char *path, const unsigned char *key, size_t key_len,
               int64_t rotate_bytes, char *err, size_t errlen);

/* Buffers one record and gives its seq and mac (64 hex + NUL). 0 or -1. */
int audit_append(struct audit *a, const struct audit_record *r, uint64_t *seq_out,
                 char mac_out[65]);

/* Writes every buffered record and fsyncs. 0 or -1 (the records are lost
 * from the buffer either way; the caller fails the whole cycle). */
int audit_sync(struct audit *a);

/* Wipes the key and closes. */
void audit_close(struct audit *a);

/* Checks the chain across files given oldest first. Prints "ok: N records"
 * or the first bad record ("path:line: seq N: mac mismatch") on out.
 * 0 = intact, 1 = broken, -1 = cannot read. */
int audit_verify_files(const char *const *paths, int n_paths, const unsigned char *key,
                       size_t key_len, FILE *out);

#endif
