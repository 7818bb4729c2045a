/*
 * audit.c: the HMAC-chained audit log (see audit.h for the format and
 * audit_int.h for the family of files).
 *
 *   open            continue the chain from the last record, cut a torn tail
 *   append          build the canonical line in the buffer, chain its mac
 *   marks           rewind what a rolled-back change appended
 *   position        the last durable record, the last commit mark
 *
 * The lines are written by hand, not by a JSON serializer, so the bytes
 * under the mac are fixed by this file alone and never change with a
 * library version.
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
#include "secret.h"
#include "util.h"

/* ---- open ---- */

/* Finds the last line of fd that ends before end: 0 with *line_len = 0
 * when there is none, -1 if it is longer than AUDIT_LINE_MAX. line needs
 * AUDIT_LINE_MAX + 1 bytes. */
static int read_last_line(int fd, int64_t end, char *line, size_t *line_len)
{
    size_t want = end > AUDIT_LINE_MAX ? AUDIT_LINE_MAX + 1 : (size_t)end;
    ssize_t got;
    size_t i;

    *line_len = 0;
    if (end == 0)
        return 0;
    got = pread(fd, line, want, end - (int64_t)want);
    if (got != (ssize_t)want || line[want - 1] != '\n')
        return -1;
    for (i = want - 1; i > 0 && line[i - 1] != '\n'; i--)
        ;
    if (i == 0 && (int64_t)want < end)
        return -1;
    *line_len = want - 1 - i;
    memmove(line, line + i, *line_len);
    line[*line_len] = '\0';
    return 0;
}

/* Where the file's complete lines end. A last line without its newline
 * was torn by a crash during write(2); its sync never returned, so the
 * step it recorded was never acknowledged and it can go. */
static int cut_torn_tail(int fd, int64_t size, const char *path, int64_t *end)
{
    char *tail;
    size_t want = size > AUDIT_LINE_MAX ? AUDIT_LINE_MAX + 1 : (size_t)size;
    size_t i;

    *end = size;
    if (size == 0)
        return 0;
    tail = malloc(want);
    if (tail == NULL || pread(fd, tail, want, size - (int64_t)want) != (ssize_t)want)
        goto fail;
    if (tail[want - 1] == '\n') {
        free(tail);
        return 0;
    }
    for (i = want; i > 0 && tail[i - 1] != '\n'; i--)
        ;
    if (i == 0 && (int64_t)want < size)
        goto fail;
    *end = size - (int64_t)want + (int64_t)i;
    if (ftruncate(fd, *end) != 0 || fsync(fd) != 0)
        goto fail;
    log_warn(NULL, "audit log %s: cut a torn last line of %" PRId64 " bytes left by a crash", path,
             size - *end);
    free(tail);
    return 0;
fail:
    free(tail);
    return -1;
}

/* Reads the last record of fd (complete lines end at end) and continues
 * the chain from it. */
static int continue_from(struct audit *a, int fd, int64_t end, const char *name, char *err,
                         size_t errlen)
{
    char *line = malloc(AUDIT_LINE_MAX + 1), prev[65], mac[65];
    size_t len;
    uint64_t seq;
    const char *why = NULL;
    int rc = -1;

    if (line == NULL || read_last_line(fd, end, line, &len) != 0) {
        snprintf(err, errlen, "audit log %s: cannot read its last line", name);
        goto fail;
    }
    if (len == 0) {
        rc = 0;
        goto fail;
    }
    if (audit_line_check(line, len, a->key, a->key_len, &seq, prev, mac, &why) != 0) {
        if (strcmp(why, "mac mismatch") == 0)
            snprintf(err, errlen, "audit.key does not match the existing audit log %s", name);
        else
            snprintf(err, errlen, "audit log %s: last record: %s", name, why);
        goto fail;
    }
    a->seq = seq;
    memcpy(a->prev, mac, 65);
    rc = 0;
fail:
    free(line);
    return rc;
}

int audit_open(struct audit **out, const char *path, const unsigned char *key, size_t key_len,
               int64_t rotate_bytes, char *err, size_t errlen)
{
    struct audit *a = NULL;
    struct stat st;
    int64_t end;
    long *nums = NULL;
    int n_rot = 0, created = 0;

    *out = NULL;
    if (path == NULL || *path == '\0' || key == NULL || key_len < AUDIT_KEY_MIN ||
        key_len > AUDIT_KEY_MAX) {
        snprintf(err, errlen, "audit.key must be %d to %d bytes", AUDIT_KEY_MIN, AUDIT_KEY_MAX);
        return -1;
    }
    a = calloc(1, sizeof(*a));
    if (a == NULL || (a->path = strdup(path)) == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    a->fd = -1;
    memcpy(a->key, key, key_len);
    a->key_len = key_len;
    if ((a->mac = hmac_key_new(key, key_len)) == NULL) {
        snprintf(err, errlen, "cannot set up HMAC-SHA256");
        goto fail;
    }
    a->rotate_bytes = rotate_bytes;
    memcpy(a->prev, audit_zero_mac, 65);
    if (util_mkdirs(path) != 0) {
        snprintf(err, errlen, "audit.path %s: cannot create its directory: %s", path,
                 strerror(errno));
        goto fail;
    }
    a->fd = open(path, O_RDWR | O_APPEND | O_CLOEXEC);
    if (a->fd < 0 && errno == ENOENT) {
        a->fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        created = 1;
    }
    if (a->fd < 0) {
        snprintf(err, errlen, "audit.path %s: %s", path, strerror(errno));
        goto fail;
    }
    /* Two writers would fork the chain; the second one must not start. */
    if (flock(a->fd, LOCK_EX | LOCK_NB) != 0) {
        snprintf(err, errlen, "audit.path %s: in use by another process", path);
        goto fail;
    }
    if (created && util_sync_dir(path) != 0) {
        snprintf(err, errlen, "audit.path %s: cannot sync its directory", path);
        goto fail;
    }
    if (fstat(a->fd, &st) != 0 || cut_torn_tail(a->fd, st.st_size, path, &end) != 0) {
        snprintf(err, errlen, "audit log %s: cannot read or repair its end", path);
        goto fail;
    }
    a->file_size = end;
    a->dev = st.st_dev;
    a->ino = st.st_ino;
    atomic_store(&a->id_dev, (uint64_t)st.st_dev);
    atomic_store(&a->id_ino, (uint64_t)st.st_ino);
    a->checked_ms = util_mono_ms();
    if (end > 0) {
        if (continue_from(a, a->fd, end, path, err, errlen) != 0)
            goto fail;
    } else {
        /* Empty after a rotation: the chain goes on from the newest file. */
        if (audit_file_rotated(path, &nums, &n_rot) != 0) {
            snprintf(err, errlen, "audit.path %s: cannot list rotated files", path);
            goto fail;
        }
        if (n_rot > 0) {
            char *name = audit_file_rotated_name(path, nums[n_rot - 1]);
            int rfd = name ? open(name, O_RDONLY | O_CLOEXEC) : -1;
            int rc = -1;

            if (rfd >= 0 && fstat(rfd, &st) == 0)
                rc = continue_from(a, rfd, st.st_size, name, err, errlen);
            else
                snprintf(err, errlen, "audit log %s: cannot open", name ? name : path);
            if (rfd >= 0)
                close(rfd);
            free(name);
            if (rc != 0)
                goto fail;
        }
    }
    a->synced_seq = a->seq;
    memcpy(a->synced_mac, a->prev, 65);
    free(nums);
    *out = a;
    return 0;
fail:
    free(nums);
    audit_close(a);
    return -1;
}

/* ---- append ---- */

/* Appends s as a JSON string, cut at AUDIT_FIELD_MAX bytes. Bytes outside
 * printable ASCII become '?' (controls are escaped by util_json_escape), so
 * every line is valid UTF-8 whatever an upstream sent us. */
static void put_string(struct audit *a, const char *s)
{
    char clean[AUDIT_FIELD_MAX + 1];
    size_t n = 0;

    for (; n < AUDIT_FIELD_MAX && s[n] != '\0'; n++) {
        unsigned char c = (unsigned char)s[n];
        clean[n] = c >= 0x7f ? '?' : (char)c;
    }
    clean[n] = '\0';
    a->len += util_json_escape(clean, a->buf + a->len, a->cap - a->len);
}

static void put_raw(struct audit *a, const char *s)
{
    size_t n = strlen(s);

    memcpy(a->buf + a->len, s, n);
    a->len += n;
}

static void put_field(struct audit *a, const char *name, const char *value)
{
    if (value == NULL || *value == '\0')
        return;
    put_raw(a, ",\"");
    put_raw(a, name);
    put_raw(a, "\":");
    put_string(a, value);
}

int audit_append(struct audit *a, const struct audit_record *r, uint64_t *seq_out, char mac_out[65])
{
    /* Every field at its escaped worst case, plus names and numbers. */
    size_t need = AUDIT_N_FIELDS * (6 * AUDIT_FIELD_MAX + 64) + 256;
    size_t start;
    char ts[40], mac[65];
    uint64_t seq;

    if (a == NULL || r == NULL || r->event == NULL || *r->event == '\0')
        return -1;
    if (a->cap - a->len < need) {
        size_t ncap = a->cap ? a->cap : 8192;
        char *nbuf;

        while (ncap - a->len < need)
            ncap *= 2;
        nbuf = realloc(a->buf, ncap);
        if (nbuf == NULL)
            return -1;
        a->buf = nbuf;
        a->cap = ncap;
    }
    start = a->len;
    seq = a->seq + 1;
    util_format_time_ms(r->time_ms ? r->time_ms : util_now_ms(), ts, sizeof(ts));
    a->len += (size_t)snprintf(a->buf + a->len, a->cap - a->len,
                               "{\"seq\":%" PRIu64 ",\"time\":\"%s\",\"event\":", seq, ts);
    put_string(a, r->event);
    put_field(a, "deletion_id", r->deletion_id);
    if (r->job_id != 0)
        a->len +=
            (size_t)snprintf(a->buf + a->len, a->cap - a->len, ",\"job_id\":%" PRId64, r->job_id);
    put_field(a, "resource", r->resource);
    put_field(a, "resource_id", r->resource_id);
    if (r->account != NULL && strcmp(r->account, "default") != 0)
        put_field(a, "account", r->account);
    put_field(a, "source", r->source);
    put_field(a, "key", r->key);
    put_field(a, "request_id", r->request_id);
    if (r->http_status != 0)
        a->len += (size_t)snprintf(a->buf + a->len, a->cap - a->len, ",\"http_status\":%d",
                                   r->http_status);
    put_field(a, "upstream_request_id", r->upstream_request_id);
    put_field(a, "error_code", r->error_code);
    put_field(a, "detail", r->detail);
    /* The first record after a sync opens a commit's records: it says how
     * far the queue had committed, so start-up can tell records of a commit
     * that never happened from a queue that lost commits (audit.h). */
    if (start == 0)
        a->len += (size_t)snprintf(a->buf + a->len, a->cap - a->len, ",\"committed\":%" PRIu64,
                                   a->committed);
    put_raw(a, ",\"prev\":\"");
    put_raw(a, a->prev);
    put_raw(a, "\"");
    if (audit_line_mac_keyed(a->mac, a->buf + start, a->len - start, mac) != 0) {
        a->len = start;
        return -1;
    }
    put_raw(a, MAC_TAG);
    put_raw(a, mac);
    put_raw(a, "\"}\n");
    a->seq = seq;
    memcpy(a->prev, mac, 65);
    if (seq_out != NULL)
        *seq_out = seq;
    if (mac_out != NULL)
        memcpy(mac_out, mac, 65);
    return 0;
}

/* ---- marks ---- */

void audit_mark(const struct audit *a, struct audit_mark *m)
{
    m->len = a->len;
    m->seq = a->seq;
    memcpy(m->prev, a->prev, sizeof(m->prev));
}

void audit_rewind(struct audit *a, const struct audit_mark *m)
{
    if (m->len > a->len)
        return; /* a sync happened since the mark: nothing of it is buffered */
    a->len = m->len;
    a->seq = m->seq;
    memcpy(a->prev, m->prev, sizeof(a->prev));
}

/* ---- the queue's position ---- */

void audit_position(const struct audit *a, uint64_t *seq, char mac[65])
{
    *seq = a->synced_seq;
    memcpy(mac, a->synced_mac, 65);
}

void audit_set_committed(struct audit *a, uint64_t seq)
{
    a->committed = seq;
}

/* The value of the last ,"committed": mark in the size bytes of fd before
 * end, if the window holds one on a whole line. 1 found, 0 not, -1 error. */
static int last_committed_mark(int fd, int64_t end, size_t size, uint64_t *committed)
{
    static const char tag[] = ",\"committed\":";
    char *buf = malloc(size + 1), *p, *last = NULL;
    int rc = -1;

    if (buf == NULL || pread(fd, buf, size, end - (int64_t)size) != (ssize_t)size)
        goto fail;
    buf[size] = '\0';
    p = buf;
    if ((int64_t)size < end) {
        /* The window may start inside a line: only whole lines count. */
        p = memchr(buf, '\n', size);
        p = p != NULL ? p + 1 : buf + size;
    }
    /* A quote inside a string field is always escaped, so the tag can only
     * be the field itself. */
    for (; (p = memchr(p, ',', (size_t)(buf + size - p))) != NULL; p++) {
        if ((size_t)(buf + size - p) >= sizeof(tag) - 1 && memcmp(p, tag, sizeof(tag) - 1) == 0)
            last = p;
    }
    rc = 0;
    if (last != NULL) {
        *committed = 0;
        for (p = last + sizeof(tag) - 1; *p >= '0' && *p <= '9' && *committed < UINT64_MAX / 10;
             p++)
            *committed = *committed * 10 + (uint64_t)(*p - '0');
        rc = 1;
    }
fail:
    free(buf);
    return rc;
}

int audit_last_committed(const struct audit *a, uint64_t *committed)
{
    int64_t size = a->file_size;
    long *nums = NULL;
    int n = 0, rc;

    rc = last_committed_mark(a->fd, size, (size_t)(size < AUDIT_TAIL_SCAN ? size : AUDIT_TAIL_SCAN),
                             committed);
    if (rc != 0 || size >= AUDIT_TAIL_SCAN)
        return rc;
    /* A commit's records may begin in the file rotated just before. */
    if (audit_file_rotated(a->path, &nums, &n) != 0)
        return -1;
    if (n > 0) {
        char *name = audit_file_rotated_name(a->path, nums[n - 1]);
        int fd = name != NULL ? open(name, O_RDONLY | O_CLOEXEC) : -1;
        struct stat st;

        rc = -1;
        if (fd >= 0 && fstat(fd, &st) == 0) {
            int64_t left = AUDIT_TAIL_SCAN - size;
            rc = last_committed_mark(fd, st.st_size,
                                     (size_t)(st.st_size < left ? st.st_size : left), committed);
        }
        if (fd >= 0)
            close(fd);
        free(name);
    }
    free(nums);
    return rc;
}

void audit_close(struct audit *a)
{
    if (a == NULL)
        return;
    if (a->fd >= 0)
        close(a->fd);
    secret_cleanse(a->key, sizeof(a->key));
    hmac_key_free(a->mac);
    free(a->path);
    free(a->buf);
    free(a);
}
