/*
 * audit.h: the audit trail, an append-only JSON Lines file whose records
 * are chained with HMAC-SHA256 under the audit key. One record per line,
 * its fields always in this order, empty ones left out:
 *
 *   {"seq":N,"time":"RFC 3339 ms","event":"...","deletion_id":...,"job_id":N,
 *    "resource":...,"resource_id":...,"source":...,"key":...,"request_id":...,
 *    "http_status":N,"upstream_request_id":...,"error_code":...,"detail":...,
 *    "committed":N,"prev":"<64 hex>","mac":"<64 hex>"}
 *
 *   mac_n = HMAC-SHA256(key, the line's bytes from '{' up to ,"mac":)
 *   prev of record n = mac_(n-1), 64 zeros for record 1
 *
 * so the mac covers prev, and editing, deleting, inserting or reordering
 * any line breaks the chain at that line; `deletion-gateway audit verify`
 * names it. When a file would exceed rotate_bytes it is renamed path.K
 * (path.1 is the oldest, each rotation takes the next number in one atomic
 * rename) and the chain goes on in a fresh file: seq and prev carry over.
 *
 * Single writer: one thread (the queue worker) appends, so there is no
 * locking inside; an flock() on the file keeps a second process out. Only
 * the health accessors below may be called from other threads.
 * Records go to a buffer; audit_sync() writes and fsyncs them. A record
 * never holds a token, a secret or a payload's output: only ids, states,
 * statuses.
 */
#ifndef DG_AUDIT_H
#define DG_AUDIT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct audit;

struct audit_record {
    const char *event; /* accepted, duplicate, ignored, attempt, deleted,
                          not_found, rejected, dead, cancelled, retried,
                          config_loaded */
    int64_t time_ms;
    const char *deletion_id; /* NULL when not about one deletion */
    int64_t job_id;          /* 0 when none */
    const char *resource;    /* "extract_run" */
    const char *resource_id;
    const char *account;             /* Extend account; NULL or "default": not written, so
                                        the records of one legacy account read as before */
    const char *source;              /* "extend", a client id, or "operator" */
    const char *key;                 /* eventId, webhook-id, or operator name */
    const char *request_id;          /* the gateway's request id */
    int http_status;                 /* upstream status, 0 if none */
    const char *upstream_request_id; /* Extend's x-extend-request-id */
    const char *error_code;
    const char *detail;
};

/* Opens the log (creating it 0600 and its directory 0700 if missing) and
 * continues the chain from its last record, or from the newest rotated
 * file when the current one is empty. A torn last line (a crash during a
 * write, never acknowledged) is cut off with a warning. The last record's
 * mac is checked, so a wrong key fails here. key_len >= 16;
 * rotate_bytes <= 0 never rotates. 0, or -1 with err. */
int audit_open(struct audit **out, const char *path, const unsigned char *key, size_t key_len,
               int64_t rotate_bytes, char *err, size_t errlen);

/* Buffers one record and gives its seq and mac (64 hex + NUL). 0 or -1. */
int audit_append(struct audit *a, const struct audit_record *r, uint64_t *seq_out,
                 char mac_out[65]);

/* A point in the buffered, not yet synced records; rewinding to it drops
 * the records appended since, as if never written (a rolled-back change
 * must leave no record). Only valid until the next audit_sync(). */
struct audit_mark {
    size_t len;
    uint64_t seq;
    char prev[65];
};
void audit_mark(const struct audit *a, struct audit_mark *m);
void audit_rewind(struct audit *a, const struct audit_mark *m);

/* Writes every buffered record and fsyncs. 0 or -1 (the records are lost
 * from the buffer either way; the caller fails the whole cycle).
 *
 * A failed write is cut back to the last durable record, so the next sync
 * can write again once the cause is gone (disk space freed, an immutable
 * flag lifted); if even the cut failed, every later sync retries it before
 * writing anything, and fails until it works: the chain never gets a gap.
 * After each write (and at most once a second otherwise) the path must
 * still name the open file. A file deleted while open is written back at
 * the path, byte for byte, from the open descriptor, and the log goes on;
 * a file renamed or replaced at the path takes no record until the path
 * names it again. Never a fresh chain at seq 1. */
int audit_sync(struct audit *a);

/* The queue and the log are cross-checked at start (queue_sqlite.c).
 * Records are synced before the commit they describe, so after a crash
 * the log may run ahead of the queue by the records of commits that never
 * happened; a queue that lost commits (a deleted WAL, a restored backup)
 * looks the same from the positions alone. The difference is kept in the
 * log: the first record after each sync carries "committed", how far the
 * queue had committed then (audit_set_committed). If the last such mark
 * equals the queue's position, everything after it is uncommitted; if it
 * is beyond, the queue has lost commits.
 *
 * audit_position: the last durable record's seq and mac (0 and zeros for
 * an empty log). audit_last_committed: the last mark, looking back over
 * the current file and the newest rotated one (32 MiB at most): 1 found,
 * 0 none, -1 cannot read. */
void audit_position(const struct audit *a, uint64_t *seq, char mac[65]);
void audit_set_committed(struct audit *a, uint64_t seq);
int audit_last_committed(const struct audit *a, uint64_t *committed);
/* Why the log takes no record now; the names appear in /readyz and as
 * the reason label of dg_audit_errors_total. */
enum audit_fault {
    AUDIT_FAULT_NONE,
    AUDIT_FAULT_WRITE_FAILED, /* a write failed (counted); a health state only
                                 while the file could not be put back */
    AUDIT_FAULT_MISSING,      /* the path does not name the open file */
    AUDIT_FAULT_COUNT
};
const char *audit_fault_name(enum audit_fault f);

/* Any thread (the writer publishes its state atomically). 1 when the log
 * takes records, else 0 with *reason an audit_fault_name. Also stat()s the
 * path, so a deleted file shows before the next write, and then asks the
 * writer to check at its next sync, idle or not. */
int audit_healthy(struct audit *a, const char **reason);

/* Faults of kind f the writer met since open. Any thread. */
uint64_t audit_fault_count(const struct audit *a, enum audit_fault f);

/* Wipes the key and closes. */
void audit_close(struct audit *a);

/* Checks the chain across files given oldest first. The first record must
 * be seq 1 with a zero prev, so a missing oldest file is reported too.
 * Prints "ok: N records, last seq S, last mac M" or the first bad record
 * ("path:line: seq N: mac mismatch") on out.
 * 0 = intact, 1 = broken, -1 = cannot read. */
int audit_verify_files(const char *const *paths, int n_paths, const unsigned char *key,
                       size_t key_len, FILE *out);

/* The files of the log at path, oldest first: path.1, path.2, ... then path
 * itself (each only if it exists). 0 with *files (free with
 * audit_free_files) and *n set, or -1. */
int audit_list_files(const char *path, char ***files, int *n);
void audit_free_files(char **files, int n);

#endif
