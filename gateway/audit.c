/*
 * audit.c: the HMAC-chained audit log (see audit.h for the format).
 *
 *   line helpers    mac computation, field escaping, checking one line
 *   files           directory creation and fsync, rotated file listing
 *   open            continue the chain from the last record, cut a torn tail
 *   append / sync   build canonical lines in a buffer, write + fsync, rotate
 *   faults          cut a failed write back, notice a deleted or renamed
 *                   file, write a deleted one back; health for other threads
 *   verify          walk every file oldest first and name the first bad line
 *
 * The lines are written by hand, not by a JSON serializer, so the bytes
 * under the mac are fixed by this file alone and never change with a
 * library version. Reading (open, verify) uses jansson.
 */
#include "audit.h"
#include "log.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

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

static const char zero_mac[65] = "0000000000000000000000000000000000000000000000000000000000000000";

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
    EVP_MAC_CTX *mac; /* HMAC-SHA256 keyed once at open; copied per record */
    char *buf;        /* records appended since the last sync */
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

/* ---- line helpers ---- */

static int compute_mac(const unsigned char *key, size_t key_len, const char *data, size_t len,
                       char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;

    if (HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)data, len, md, &md_len) ==
            NULL ||
        md_len != 32)
        return -1;
    util_hex(md, 32, out);
    OPENSSL_cleanse(md, sizeof(md));
    return 0;
}

/* The writer's mac: copying a context keyed once costs a third of
 * HMAC(), which looks up the digest and sets up the key on every call. */
static int keyed_mac(EVP_MAC_CTX *keyed, const char *data, size_t len, char out[65])
{
    EVP_MAC_CTX *c = EVP_MAC_CTX_dup(keyed);
    unsigned char md[EVP_MAX_MD_SIZE];
    size_t md_len = 0;
    int ok = c != NULL && EVP_MAC_update(c, (const unsigned char *)data, len) == 1 &&
             EVP_MAC_final(c, md, &md_len, sizeof(md)) == 1 && md_len == 32;

    EVP_MAC_CTX_free(c);
    if (ok)
        util_hex(md, 32, out);
    OPENSSL_cleanse(md, sizeof(md));
    return ok ? 0 : -1;
}

static EVP_MAC_CTX *keyed_mac_new(const unsigned char *key, size_t key_len)
{
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *c = mac != NULL ? EVP_MAC_CTX_new(mac) : NULL;
    OSSL_PARAM params[2];

    EVP_MAC_free(mac); /* the context holds its own reference */
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
    params[1] = OSSL_PARAM_construct_end();
    if (c != NULL && EVP_MAC_init(c, key, key_len, params) != 1) {
        EVP_MAC_CTX_free(c);
        c = NULL;
    }
    return c;
}

static int is_hex64(const char *s, size_t len)
{
    if (len != 64)
        return 0;
    for (size_t i = 0; i < 64; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    }
    return 1;
}

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

/* The seq a line claims, read from its fixed prefix, for error messages
 * about lines that cannot be parsed; 0 if even that is unreadable. */
static uint64_t seq_hint(const char *line, size_t len)
{
    static const char prefix[] = "{\"seq\":";
    uint64_t v = 0;
    size_t i = sizeof(prefix) - 1;

    if (len < i || memcmp(line, prefix, i) != 0)
        return 0;
    for (; i < len && line[i] >= '0' && line[i] <= '9' && v < UINT64_MAX / 10 - 10; i++)
        v = v * 10 + (uint64_t)(line[i] - '0');
    return v;
}

/* Checks one line (without its newline): shape, mac under key, fields.
 * 0 with seq, prev and mac set, or -1 with why. */
static int check_line(const char *line, size_t len, const unsigned char *key, size_t key_len,
                      uint64_t *seq, char prev[65], char mac[65], const char **why)
{
    char want[65];
    const char *tag;
    json_t *root = NULL, *jseq, *jprev, *jmac, *jtime, *jevent;
    json_error_t jerr;
    int rc = -1;

    if (len < MAC_SUFFIX_LEN + 2 || line[0] != '{' || line[len - 2] != '"' ||
        line[len - 1] != '}') {
        *why = "malformed line";
        goto fail;
    }
    tag = line + len - MAC_SUFFIX_LEN;
    if (memcmp(tag, MAC_TAG, sizeof(MAC_TAG) - 1) != 0 ||
        !is_hex64(tag + sizeof(MAC_TAG) - 1, 64)) {
        *why = "malformed line: no mac at its end";
        goto fail;
    }
    if (compute_mac(key, key_len, line, (size_t)(tag - line), want) != 0) {
        *why = "cannot compute mac";
        goto fail;
    }
    if (CRYPTO_memcmp(want, tag + sizeof(MAC_TAG) - 1, 64) != 0) {
        *why = "mac mismatch";
        goto fail;
    }
    root = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
    jseq = json_object_get(root, "seq");
    jprev = json_object_get(root, "prev");
    jmac = json_object_get(root, "mac");
    jtime = json_object_get(root, "time");
    jevent = json_object_get(root, "event");
    if (!json_is_object(root) || !json_is_integer(jseq) || json_integer_value(jseq) < 1 ||
        !json_is_string(jprev) || !is_hex64(json_string_value(jprev), json_string_length(jprev)) ||
        !json_is_string(jmac) || !json_is_string(jtime) || !json_is_string(jevent)) {
        *why = "malformed record";
        goto fail;
    }
    *seq = (uint64_t)json_integer_value(jseq);
    memcpy(prev, json_string_value(jprev), 65);
    memcpy(mac, want, 65);
    rc = 0;
fail:
    json_decref(root);
    return rc;
}

/* ---- files ---- */

static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');

    if (slash == NULL)
        return strdup(".");
    if (slash == path)
        return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

/* After a file is created or renamed its directory entry must reach the
 * disk too, or a crash could lose the whole file. */
static int fsync_dir(const char *path)
{
    char *dir = dir_of(path);
    int fd, rc = -1;

    if (dir == NULL)
        return -1;
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        rc = fsync(fd);
        close(fd);
    }
    free(dir);
    return rc;
}

static int mkdir_parents(const char *path)
{
    char *dir = dir_of(path);
    int rc = 0;

    if (dir == NULL)
        return -1;
    for (char *p = dir + 1; rc == 0; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;
        *p = '\0';
        /* a new directory's own entry must reach the disk as well */
        if (mkdir(dir, 0700) == 0)
            rc = fsync_dir(dir);
        else if (errno != EEXIST)
            rc = -1;
        *p = c;
        if (c == '\0')
            break;
    }
    free(dir);
    return rc;
}

/* Rotated numbers K of path.K, ascending. */
static int list_rotated(const char *path, long **nums, int *n)
{
    char *dir = dir_of(path);
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    size_t blen = strlen(base);
    DIR *d = NULL;
    struct dirent *de;
    long *v = NULL;
    int count = 0, cap = 0;

    *nums = NULL;
    *n = 0;
    if (dir == NULL)
        return -1;
    d = opendir(dir);
    if (d == NULL)
        goto fail;
    while ((de = readdir(d)) != NULL) {
        const char *s = de->d_name;
        int64_t k;

        if (strncmp(s, base, blen) != 0 || s[blen] != '.' || s[blen + 1] < '1' ||
            s[blen + 1] > '9' || strlen(s + blen + 1) > 9 ||
            util_parse_int64(s + blen + 1, 1, 999999999, &k) != 0)
            continue;
        if (count == AUDIT_MAX_FILES)
            goto fail;
        if (count == cap) {
            long *nv = realloc(v, (size_t)(cap ? cap * 2 : 16) * sizeof(*v));
            if (nv == NULL)
                goto fail;
            v = nv;
            cap = cap ? cap * 2 : 16;
        }
        /* insertion keeps the list sorted; rotated sets are small */
        int i = count++;
        while (i > 0 && v[i - 1] > k) {
            v[i] = v[i - 1];
            i--;
        }
        v[i] = (long)k;
    }
    closedir(d);
    free(dir);
    *nums = v;
    *n = count;
    return 0;
fail:
    if (d != NULL)
        closedir(d);
    free(dir);
    free(v);
    return -1;
}

static char *rotated_name(const char *path, long k)
{
    size_t len = strlen(path) + 16;
    char *s = malloc(len);

    if (s != NULL)
        snprintf(s, len, "%s.%ld", path, k);
    return s;
}

void audit_free_files(char **files, int n)
{
    for (int i = 0; files != NULL && i < n; i++)
        free(files[i]);
    free(files);
}

int audit_list_files(const char *path, char ***files, int *n)
{
    long *nums = NULL;
    int count = 0, k = 0;
    char **v = NULL;
    struct stat st;

    *files = NULL;
    *n = 0;
    if (list_rotated(path, &nums, &count) != 0)
        return -1;
    v = calloc((size_t)count + 1, sizeof(*v));
    if (v == NULL)
        goto fail;
    for (; k < count; k++) {
        if ((v[k] = rotated_name(path, nums[k])) == NULL)
            goto fail;
    }
    if (stat(path, &st) == 0) {
        if ((v[k] = strdup(path)) == NULL)
            goto fail;
        k++;
    }
    free(nums);
    *files = v;
    *n = k;
    return 0;
fail:
    free(nums);
    audit_free_files(v, k);
    return -1;
}

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
    if (check_line(line, len, a->key, a->key_len, &seq, prev, mac, &why) != 0) {
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
    if ((a->mac = keyed_mac_new(key, key_len)) == NULL) {
        snprintf(err, errlen, "cannot set up HMAC-SHA256");
        goto fail;
    }
    a->rotate_bytes = rotate_bytes;
    memcpy(a->prev, zero_mac, 65);
    if (mkdir_parents(path) != 0) {
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
    if (created && fsync_dir(path) != 0) {
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
        if (list_rotated(path, &nums, &n_rot) != 0) {
            snprintf(err, errlen, "audit.path %s: cannot list rotated files", path);
            goto fail;
        }
        if (n_rot > 0) {
            char *name = rotated_name(path, nums[n_rot - 1]);
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

/* ---- append / sync ---- */

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
    if (keyed_mac(a->mac, a->buf + start, a->len - start, mac) != 0) {
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

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* ---- faults ---- */

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
        fsync_dir(a->path) != 0)
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

    if (list_rotated(a->path, &nums, &n) != 0)
        goto fail;
    name = rotated_name(a->path, n > 0 ? nums[n - 1] + 1 : 1);
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

        if (got <= 0 || write_all(fd, buf, (size_t)got) != 0)
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
    if (fsync_dir(a->path) != 0)
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
        if (write_all(a->fd, a->buf + pos, end - pos) != 0 || fsync(a->fd) != 0) {
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
        a->synced_seq = seq_hint(a->buf + last, end - last);
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
    if (list_rotated(a->path, &nums, &n) != 0)
        return -1;
    if (n > 0) {
        char *name = rotated_name(a->path, nums[n - 1]);
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
    OPENSSL_cleanse(a->key, sizeof(a->key));
    EVP_MAC_CTX_free(a->mac);
    free(a->path);
    free(a->buf);
    free(a);
}

/* ---- verify ---- */

enum read_status { LINE_OK, LINE_EOF, LINE_NO_NEWLINE, LINE_TOO_LONG };

static enum read_status read_line(FILE *f, char *buf, size_t max, size_t *len)
{
    int c;

    *len = 0;
    while ((c = getc_unlocked(f)) != EOF) {
        if (c == '\n')
            return LINE_OK;
        if (*len == max) {
            while ((c = getc_unlocked(f)) != EOF && c != '\n')
                ;
            return LINE_TOO_LONG;
        }
        buf[(*len)++] = (char)c;
    }
    return *len == 0 ? LINE_EOF : LINE_NO_NEWLINE;
}

int audit_verify_files(const char *const *paths, int n_paths, const unsigned char *key,
                       size_t key_len, FILE *out)
{
    char *line = malloc(AUDIT_LINE_MAX + 1), last[65], prev[65], mac[65];
    uint64_t expected = 1, count = 0;
    int rc = -1;

    memcpy(last, zero_mac, 65);
    if (line == NULL || key == NULL || key_len == 0) {
        fprintf(out, "cannot verify: no memory or no key\n");
        goto done;
    }
    for (int i = 0; i < n_paths; i++) {
        FILE *f = fopen(paths[i], "rb");
        enum read_status st;
        size_t len;
        long lineno = 0;

        if (f == NULL) {
            fprintf(out, "%s: cannot open: %s\n", paths[i], strerror(errno));
            goto done;
        }
        while ((st = read_line(f, line, AUDIT_LINE_MAX, &len)) != LINE_EOF) {
            const char *why = NULL;
            uint64_t seq = 0, hint;

            lineno++;
            hint = seq_hint(line, len);
            if (hint == 0)
                hint = expected;
            if (st == LINE_TOO_LONG)
                why = "line too long";
            else if (st == LINE_NO_NEWLINE)
                why = "truncated line (no newline at the end of the file)";
            else if (check_line(line, len, key, key_len, &seq, prev, mac, &why) == 0) {
                hint = seq;
                if (seq != expected && count == 0)
                    why = "the log does not start at seq 1 (an older file is missing?)";
                else if (seq != expected)
                    why = "out of sequence: a record is missing, inserted or reordered";
                else if (memcmp(prev, last, 64) != 0)
                    why = "prev does not match the previous record's mac";
            }
            if (why != NULL) {
                if (seq != 0 && seq != expected)
                    fprintf(out, "%s:%ld: seq %" PRIu64 ": %s (expected seq %" PRIu64 ")\n",
                            paths[i], lineno, hint, why, expected);
                else
                    fprintf(out, "%s:%ld: seq %" PRIu64 ": %s\n", paths[i], lineno, hint, why);
                fclose(f);
                rc = 1;
                goto done;
            }
            memcpy(last, mac, 65);
            expected++;
            count++;
        }
        if (ferror(f)) {
            fprintf(out, "%s: read error\n", paths[i]);
            fclose(f);
            goto done;
        }
        fclose(f);
    }
    fprintf(out, "ok: %" PRIu64 " records, last seq %" PRIu64 ", last mac %s\n", count,
            expected - 1, last);
    rc = 0;
done:
    free(line);
    return rc;
}
