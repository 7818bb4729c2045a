/*
 * audit_sync.c: getting buffered records onto the disk and keeping the
 * file findable (see audit.h, audit_sync).
 *
 *   audit_sync      whole records up to rotate_bytes, write + fsync, rotate
 *   cut_back        a failed write is cut back to the last durable record
 *   check_file      the path must still name the open file; restore writes
 *                   a deleted one back from the open descriptor
 *   repair          all of the above before anything is written
 *   audit_healthy   the writer's state, published for other threads
 */
#include "audit_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

static const char *const fault_names[AUDIT_FAULT_COUNT] = {"ok", "audit_write_failed",
                                                           "audit_log_missing"};

const char *audit_fault_name(enum audit_fault f)
{
    return (unsigned)f < AUDIT_FAULT_COUNT ? fault_names[f] : "unknown";
}

static void publish_fault(struct audit *a)
{
    enum audit_fault f = a->cut_pending || a->no_file ? AUDIT_FAULT_WRITE_FAILED
                         : a->missing                 ? AUDIT_FAULT_MISSING
                                                      : AUDIT_FAULT_NONE;

    atomic_store(&a->fault, (int)f);
}

/* Between these two the file's identity changes (a rename, a new fd). */
static void identity_begin(struct audit *a)
{
    atomic_fetch_add(&a->id_gen, 1);
}

static void identity_end(struct audit *a)
{
    atomic_store(&a->id_dev, (uint64_t)a->dev);
    atomic_store(&a->id_ino, (uint64_t)a->ino);
    atomic_fetch_add(&a->id_gen, 1);
}

/* fd, locked, is the log's file from now on. */
static void adopt(struct audit *a, int fd, const struct stat *st)
{
    close(a->fd);
    a->fd = fd;
    a->dev = st->st_dev;
    a->ino = st->st_ino;
}

/* A new, empty current file at the path, continuing the chain from the
 * one a rotation just renamed (as audit_open does after a crash there). An
 * empty file already there is taken (left by an earlier try); anything
 * else is someone else's and is not. */
static int open_fresh(struct audit *a)
{
    struct stat st;
    int fd = open(a->path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600), saved;

    if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) != 0 || fstat(fd, &st) != 0 ||
        util_sync_dir(a->path) != 0)
        goto fail;
    if (st.st_size != 0) {
        errno = EEXIST;
        goto fail;
    }
    adopt(a, fd, &st);
    a->file_size = 0;
    a->no_file = 0;
    return 0;
fail:
    saved = errno;
    if (fd >= 0)
        close(fd);
    errno = saved;
    return -1;
}

/* The current file is complete and fsynced: it becomes path.K (one atomic
 * rename, K one above the highest existing) and a fresh file takes its
 * place. A crash between the rename and the create leaves no current
 * file, and audit_open continues from path.K; a failed create is tried
 * again at the next sync, and until it works no record is written. */
static int rotate(struct audit *a)
{
    long *nums = NULL;
    int n = 0, rc = -1;
    char *name = NULL;

    if (audit_file_rotated(a->path, &nums, &n) != 0)
        goto fail;
    name = audit_file_rotated_name(a->path, n > 0 ? nums[n - 1] + 1 : 1);
    if (name == NULL)
        goto fail;
    identity_begin(a);
    if (rename(a->path, name) == 0) {
        a->no_file = 1;
        rc = open_fresh(a);
    }
    identity_end(a);
    if (rc != 0)
        goto fail;
    free(name);
    free(nums);
    return 0;
fail:
    log_error(NULL, "audit log %s: rotation failed: %s", a->path, strerror(errno));
    atomic_fetch_add(&a->faults[AUDIT_FAULT_WRITE_FAILED], 1);
    free(name);
    free(nums);
    return -1;
}

/* Cuts whatever a failed write left past the last durable record. */
static int cut_back(struct audit *a)
{
    a->cut_pending = ftruncate(a->fd, a->file_size) != 0 || fsync(a->fd) != 0;
    return a->cut_pending ? -1 : 0;
}

/* The open file was deleted (no name left): its durable bytes are copied
 * to a new file that is linked at the path only if nothing is there, so
 * every record, acknowledged ones included, is again where operators and
 * audit_open look, and the chain goes on unbroken. */
static int restore(struct audit *a)
{
    size_t tlen = strlen(a->path) + sizeof(".restore");
    char *tmp = malloc(tlen), *buf = malloc(65536);
    struct stat st;
    int fd = -1, linked = 0, saved;

    if (tmp == NULL || buf == NULL)
        goto fail;
    snprintf(tmp, tlen, "%s.restore", a->path);
    (void)unlink(tmp); /* left by a crash during an earlier try */
    fd = open(tmp, O_RDWR | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) != 0)
        goto fail;
    for (int64_t off = 0; off < a->file_size;) {
        int64_t left = a->file_size - off;
        ssize_t got = pread(a->fd, buf, left > 65536 ? 65536 : (size_t)left, off);

        if (got <= 0 || audit_file_write_all(fd, buf, (size_t)got) != 0)
            goto fail;
        off += got;
    }
    /* link() never replaces: a file someone put at the path stays. */
    if (fsync(fd) != 0 || fstat(fd, &st) != 0 || link(tmp, a->path) != 0)
        goto fail;
    linked = 1;
    (void)unlink(tmp);
    identity_begin(a);
    adopt(a, fd, &st);
    identity_end(a);
    fd = -1;
    a->cut_pending = 0; /* only durable bytes were copied */
    if (util_sync_dir(a->path) != 0)
        goto fail;
    free(tmp);
    free(buf);
    return 0;
fail:
    saved = errno;
    if (fd >= 0)
        close(fd);
    if (tmp != NULL && !linked)
        (void)unlink(tmp);
    free(tmp);
    free(buf);
    errno = saved;
    return -1;
}

/* 0 when the path names the open file (again, or restored). Records in a
 * file nobody can find are as good as lost, so a deleted file is written
 * back; a renamed or replaced one is left alone (an operator moved it, and
 * a copy would fork the trail) and takes no record until the path names
 * it again. Logged once per fault, not per try. */
static int check_file(struct audit *a, int64_t now)
{
    struct stat st, own;
    int found, absent, deleted, first;

    a->checked_ms = now;
    found = stat(a->path, &st) == 0;
    absent = !found && errno == ENOENT;
    if (found && st.st_dev == a->dev && st.st_ino == a->ino) {
        if (a->missing)
            log_warn(NULL, "audit log %s: the path names the open log again; records go on",
                     a->path);
        a->missing = 0;
        return 0;
    }
    first = !a->missing;
    if (first)
        atomic_fetch_add(&a->faults[AUDIT_FAULT_MISSING], 1);
    a->missing = 1;
    deleted = fstat(a->fd, &own) == 0 && own.st_nlink == 0;
    if (deleted && absent) {
        if (restore(a) == 0) {
            log_error(NULL,
                      "audit log %s was deleted while open; wrote its %" PRId64
                      " bytes back from the open file, the chain goes on after seq %" PRIu64,
                      a->path, a->file_size, a->synced_seq);
            a->missing = 0;
            return 0;
        }
        if (first)
            log_error(NULL,
                      "audit log %s was deleted while open and cannot be written back (%s); "
                      "every change is refused until it can",
                      a->path, strerror(errno));
    } else if (first) {
        log_error(NULL,
                  "audit log %s: %s; every change is refused until the path names the open "
                  "log again",
                  a->path,
                  deleted ? "the open log was deleted and another file is at the path"
                          : "the open log was renamed or replaced");
    }
    return -1;
}

/* Before anything is written: a file at the path, nothing past the last
 * durable record, the path naming the open file. Cheap when all is well:
 * one stat() per write (nothing beside its fsync), one a second when idle. */
static int repair(struct audit *a)
{
    int64_t now = util_mono_ms();
    int was = atomic_load(&a->fault), rc = -1;

    if (a->no_file) {
        identity_begin(a);
        rc = open_fresh(a);
        identity_end(a);
        if (rc != 0)
            goto done;
    }
    if (a->cut_pending && cut_back(a) != 0)
        goto done;
    if ((a->missing || a->len > 0 || atomic_exchange(&a->check_wanted, 0) ||
         now - a->checked_ms >= 1000) &&
        check_file(a, now) != 0)
        goto done;
    if (was == AUDIT_FAULT_WRITE_FAILED)
        log_warn(NULL, "audit log %s: writable again; records go on after seq %" PRIu64, a->path,
                 a->synced_seq);
    rc = 0;
done:
    publish_fault(a);
    return rc;
}

int audit_sync(struct audit *a)
{
    size_t pos = 0;
    int wrote = 0, write_failed = 0;

    if (a == NULL)
        return -1;
    if (repair(a) != 0)
        goto fail;
    while (pos < a->len) {
        size_t end = pos;

        /* Whole records only, as many as fit under rotate_bytes; one record
         * always goes into an empty file however long it is. */
        while (end < a->len) {
            const char *nl = memchr(a->buf + end, '\n', a->len - end);
            size_t next = (size_t)(nl - a->buf) + 1;

            if (a->rotate_bytes > 0 && a->file_size + (int64_t)(next - pos) > a->rotate_bytes &&
                (end > pos || a->file_size > 0))
                break;
            end = next;
        }
        if (end == pos) {
            if (rotate(a) != 0)
                goto fail;
            continue;
        }
        if (audit_file_write_all(a->fd, a->buf + pos, end - pos) != 0 || fsync(a->fd) != 0) {
            log_error(NULL, "audit log %s: write failed: %s", a->path, strerror(errno));
            atomic_fetch_add(&a->faults[AUDIT_FAULT_WRITE_FAILED], 1);
            write_failed = 1;
            goto fail;
        }
        wrote = 1;
        a->file_size += (int64_t)(end - pos);
        /* The last record of this chunk is durable: remember where the
         * chain on disk ends, in case a later chunk fails. */
        size_t last = end - 1;
        while (last > pos && a->buf[last - 1] != '\n')
            last--;
        a->synced_seq = audit_line_seq(a->buf + last, end - last);
        memcpy(a->synced_mac, a->buf + end - 3 - 64, 64);
        a->synced_mac[64] = '\0';
        pos = end;
    }
    /* Durable, but only findable if the path still names this file; the
     * path may have gone during the write, and the caller acknowledges
     * nothing before this returns. */
    if (wrote && check_file(a, util_mono_ms()) != 0)
        goto fail;
    a->len = 0;
    publish_fault(a);
    return 0;
fail:
    /* Cut any part of a record that reached the file and go back to the
     * last durable record, so the next records chain onto what is on disk.
     * If the cut fails, the next sync tries it again before writing: a gap
     * in the chain would be indistinguishable from tampering. */
    if (write_failed && cut_back(a) != 0)
        log_error(NULL,
                  "audit log %s: cannot cut a failed write back: %s; no record is written "
                  "until it can be",
                  a->path, strerror(errno));
    publish_fault(a);
    a->seq = a->synced_seq;
    memcpy(a->prev, a->synced_mac, 65);
    a->len = 0;
    return -1;
}

int audit_healthy(struct audit *a, const char **reason)
{
    struct stat st;
    enum audit_fault f = AUDIT_FAULT_NONE;

    if (a != NULL)
        f = (enum audit_fault)atomic_load(&a->fault);
    if (a != NULL && f == AUDIT_FAULT_NONE) {
        /* The writer checks the path only when it runs; this shows a
         * deleted file at once. A read overlapping a rotation is not
         * trusted: its rename is no fault. */
        uint64_t gen = atomic_load(&a->id_gen);
        int gone = stat(a->path, &st) != 0 || (uint64_t)st.st_dev != atomic_load(&a->id_dev) ||
                   (uint64_t)st.st_ino != atomic_load(&a->id_ino);

        if (gone && gen % 2 == 0 && atomic_load(&a->id_gen) == gen) {
            f = AUDIT_FAULT_MISSING;
            atomic_store(&a->check_wanted, 1);
        }
    }
    if (reason != NULL)
        *reason = audit_fault_name(f);
    return f == AUDIT_FAULT_NONE;
}

uint64_t audit_fault_count(const struct audit *a, enum audit_fault f)
{
    if (a == NULL || (unsigned)f >= AUDIT_FAULT_COUNT)
        return 0;
    return atomic_load(&a->faults[f]);
}
