/*
 * audit_int.h: what the audit_*.c files share and nobody else sees: the
 * writer's state, the line format's constants, and the helpers that read
 * a line or handle the log's files.
 *
 *   audit.c         open (continue the chain), append, marks, position, close
 *   audit_sync.c    write + fsync, rotate, cut a failed write back, notice a
 *                   deleted or renamed file and write a deleted one back;
 *                   health for other threads
 *   audit_line.c    the mac of a line, checking one line
 *   audit_file.c    directories, fsync of a directory, rotated files
 *   audit_verify.c  `audit verify`: every file oldest first, first bad line
 */
#ifndef DG_AUDIT_INT_H
#define DG_AUDIT_INT_H

#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#include "audit.h"
#include "hmac.h"

#define AUDIT_KEY_MIN 16
#define AUDIT_KEY_MAX 1024
#define AUDIT_FIELD_MAX 512  /* bytes of one string field, before escaping */
#define AUDIT_LINE_MAX 65536 /* longest line accepted when reading */
#define AUDIT_MAX_FILES 100000
#define AUDIT_N_FIELDS 17
/* How far back start-up looks for the last commit mark: further than the
 * records of any one commit reach. */
#define AUDIT_TAIL_SCAN (32 << 20)
/* ,"mac":"<64 hex>"} ends every line (before its newline). */
#define MAC_TAG ",\"mac\":\""
#define MAC_SUFFIX_LEN (sizeof(MAC_TAG) - 1 + 64 + 2)

/* prev of the first record. */
extern const char audit_zero_mac[65];

struct audit {
    char *path;
    int fd;
    int64_t file_size; /* bytes of the current file known written and fsynced */
    int64_t rotate_bytes;
    unsigned char key[AUDIT_KEY_MAX];
    size_t key_len;
    uint64_t seq;  /* last record appended (buffered or not) */
    char prev[65]; /* its mac */
    uint64_t synced_seq;
    char synced_mac[65];
    struct hmac_key *mac; /* the key set up once at open, for every record */
    char *buf;            /* records appended since the last sync */
    size_t len, cap;
    uint64_t committed; /* the queue's committed position (audit_set_committed) */
    dev_t dev;          /* the open file, to notice when the path no longer names it */
    ino_t ino;
    int cut_pending;    /* a failed write is not cut back yet: write nothing */
    int no_file;        /* a rotation renamed the file but made no new one */
    int missing;        /* the path does not name the open file */
    int64_t checked_ms; /* last check of the path, monotonic */
    /* Read by other threads. The file's identity goes with a count that is
     * odd while it changes, so a reader never takes a rotation's rename
     * for a deleted file. */
    atomic_int fault;        /* enum audit_fault */
    atomic_int check_wanted; /* a reader saw the path not name the file */
    atomic_uint_least64_t faults[AUDIT_FAULT_COUNT];
    atomic_uint_least64_t id_gen, id_dev, id_ino;
};

/* audit_line.c */
/* HMAC-SHA256 of data under key as 64 hex + NUL. 0 or -1. */
int audit_line_mac(const unsigned char *key, size_t key_len, const char *data, size_t len,
                   char out[65]);
/* The writer's mac, under the key set up at open. 0 or -1. */
int audit_line_mac_keyed(const struct hmac_key *k, const char *data, size_t len, char out[65]);
int audit_line_hex64(const char *s, size_t len);
/* The seq a line claims, read from its fixed prefix, for error messages
 * about lines that cannot be parsed; 0 if even that is unreadable. */
uint64_t audit_line_seq(const char *line, size_t len);
/* Checks one line (without its newline): shape, mac under key, fields.
 * 0 with seq, prev and mac set, or -1 with why. */
int audit_line_check(const char *line, size_t len, const unsigned char *key, size_t key_len,
                     uint64_t *seq, char prev[65], char mac[65], const char **why);

/* audit_file.c */
/* Rotated numbers K of path.K, ascending. 0 or -1. */
int audit_file_rotated(const char *path, long **nums, int *n);
char *audit_file_rotated_name(const char *path, long k);
int audit_file_write_all(int fd, const char *p, size_t n);

#endif
