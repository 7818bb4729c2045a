/* test_audit.c: the audit chain: format, reopen, rotation, torn tails,
 * every kind of tampering that audit_verify_files must name, and the log
 * recovering from failed writes and a deleted or renamed file. */
#define _GNU_SOURCE
#include "audit.h"
#include "check.h"
#include "util.h"

#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

static const unsigned char key[] = "test-audit-key-0123456789abcdef";
static const unsigned char wrong_key[] = "some-other-key-0123456789abcdef";
#define KEY_LEN (sizeof(key) - 1)
static char dir[64];

static void path_in_dir(char *out, size_t len, const char *name)
{
    snprintf(out, len, "%s/%s", dir, name);
}

static struct audit_record rec(const char *event, int i)
{
    static char rid[64];
    struct audit_record r = {0};

    snprintf(rid, sizeof(rid), "exr_run%04d", i);
    r.event = event;
    r.time_ms = 1795944904123 + i; /* 2026-11-29T09:35:04.123Z */
    r.deletion_id = "del_aaaaaaaaaaaaaaaaaaaaaaaaaa";
    r.job_id = i;
    r.resource = "extract_run";
    r.resource_id = rid;
    r.source = "crm";
    r.key = "msg_1";
    return r;
}

/* Appends n records and syncs once; returns 0 when every call worked. */
static int append_n(struct audit *a, int first, int n)
{
    for (int i = first; i < first + n; i++) {
        struct audit_record r = rec(i % 2 ? "attempt" : "accepted", i);
        if (audit_append(a, &r, NULL, NULL) != 0)
            return -1;
    }
    return audit_sync(a);
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n;

    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)n + 1);
    if (buf != NULL && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    if (buf != NULL)
        buf[n] = '\0';
    *len = (size_t)n;
    fclose(f);
    return buf;
}

static void spit(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (f != NULL) {
        fwrite(data, 1, len, f);
        fclose(f);
    }
}

/* Runs the verifier on paths and returns its printed line. */
static int verify(const char *const *paths, int n, const unsigned char *k, char *text,
                  size_t textlen)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    int rc = audit_verify_files(paths, n, k, KEY_LEN, mem);

    fclose(mem);
    snprintf(text, textlen, "%s", buf ? buf : "");
    free(buf);
    return rc;
}

static int verify_one(const char *path, char *text, size_t textlen)
{
    const char *paths[1] = {path};
    return verify(paths, 1, key, text, textlen);
}

static void hmac_hex(const unsigned char *k, const char *data, size_t len, char out[65])
{
    unsigned char md[32];
    unsigned int md_len = 0;
    HMAC(EVP_sha256(), k, (int)KEY_LEN, (const unsigned char *)data, len, md, &md_len);
    util_hex(md, 32, out);
}

static void test_format_is_canonical_and_chained(void)
{
    char path[128], err[256], mac1[65], mac2[65], want[65], text[512];
    struct audit *a = NULL;
    struct audit_record r = rec("deleted", 1);
    uint64_t seq = 0;
    size_t len;
    struct stat st;

    path_in_dir(path, sizeof(path), "fmt/sub/audit.jsonl");
    CHECK(audit_open(&a, path, key, KEY_LEN, 0, err, sizeof(err)) == 0);
    if (a == NULL)
        return;
    r.request_id = "req_1";
    r.http_status = 204;
    r.upstream_request_id = "xreq_9";
    CHECK(audit_append(a, &r, &seq, mac1) == 0 && seq == 1);
    struct audit_record r2 = {
        .event = "config_loaded", .time_ms = 1795944904000, .detail = "say \"hi\"\n\xff"};
    CHECK(audit_append(a, &r2, &seq, mac2) == 0 && seq == 2);
    /* nothing reaches the file before audit_sync */
    CHECK(stat(path, &st) == 0 && st.st_size == 0 && (st.st_mode & 0777) == 0600);
    CHECK(audit_sync(a) == 0);
    audit_close(a);

    char *data = slurp(path, &len);
    CHECK(data != NULL);
    if (data == NULL)
        return;
    const char *line1 =
        "{\"seq\":1,\"time\":\"2026-11-29T09:35:04.124Z\",\"event\":\"deleted\","
        "\"deletion_id\":\"del_aaaaaaaaaaaaaaaaaaaaaaaaaa\",\"job_id\":1,\"resource\":"
        "\"extract_run\",\"resource_id\":\"exr_run0001\",\"source\":\"crm\",\"key\":\"msg_1\","
        "\"request_id\":\"req_1\",\"http_status\":204,\"upstream_request_id\":\"xreq_9\","
        "\"committed\":0,\"prev\":"
        "\"0000000000000000000000000000000000000000000000000000000000000000\"";
    CHECK(strncmp(data, line1, strlen(line1)) == 0);
    hmac_hex(key, line1, strlen(line1), want);
    CHECK_STR(mac1, want);
    CHECK(strncmp(data + strlen(line1), ",\"mac\":\"", 8) == 0);
    CHECK(strncmp(data + strlen(line1) + 8, mac1, 64) == 0);
    /* second line: escaped, one line, chained onto the first */
    char *line2 = strchr(data, '\n') + 1;
    const char *want2 = "{\"seq\":2,\"time\":\"2026-11-29T09:35:04.000Z\",\"event\":"
                        "\"config_loaded\",\"detail\":\"say \\\"hi\\\"\\u000a?\",\"prev\":\"";
    CHECK(strncmp(line2, want2, strlen(want2)) == 0);
    CHECK(strncmp(line2 + strlen(want2), mac1, 64) == 0);
    CHECK(strchr(line2, '\n') == data + len - 1);
    /* the key never appears in the file, raw or hex */
    char key_hex[2 * KEY_LEN + 1];
    util_hex(key, KEY_LEN, key_hex);
    CHECK(memmem(data, len, key, KEY_LEN) == NULL);
    CHECK(memmem(data, len, key_hex, strlen(key_hex)) == NULL);
    CHECK(verify_one(path, text, sizeof(text)) == 0);
    char ok[200];
    snprintf(ok, sizeof(ok), "ok: 2 records, last seq 2, last mac %s\n", mac2);
    CHECK_STR(text, ok);
    free(data);
}

static void test_reopen_continues_the_chain(void)
{
    char path[128], err[256], mac[65], text[512];
    struct audit *a = NULL, *b = NULL;
    struct audit_record r = rec("accepted", 9);
    uint64_t seq = 0;

    path_in_dir(path, sizeof(path), "reopen.jsonl");
    CHECK(audit_open(&a, path, key, KEY_LEN, 0, err, sizeof(err)) == 0);
    CHECK(append_n(a, 1, 5) == 0);
    /* a second writer is kept out while the first holds the file */
    CHECK(audit_open(&b, path, key, KEY_LEN, 0, err, sizeof(err)) == -1 && b == NULL);
    CHECK(strstr(err, "in use") != NULL);
    /* buffered but never synced: lost, and the chain does not count it */
    CHECK(audit_append(a, &r, &seq, mac) == 0 && seq == 6);
    audit_close(a);

    CHECK(audit_open(&a, path, key, KEY_LEN, 0, err, sizeof(err)) == 0);
    CHECK(audit_append(a, &r, &seq, mac) == 0 && seq == 6);
    CHECK(audit_sync(a) == 0);
    audit_close(a);
    CHECK(verify_one(path, text, sizeof(text)) == 0);
    CHECK(strncmp(text, "ok: 6 records, last seq 6, last mac ", 36) == 0);
    CHECK(strstr(text, mac) != NULL);

    /* wrong key: refused at start, before anything is written */
    CHECK(audit_open(&a, path, wrong_key, KEY_LEN, 0, err, sizeof(err)) == -1 && a == NULL);
    CHECK(strstr(err, "audit.key does not match the existing audit log") != NULL);
    CHECK(audit_open(&a, path, key, 8, 0, err, sizeof(err)) == -1);
}

static void test_torn_last_line_is_cut_at_open(void)
{
    char path[128], err[256], text[512];
    struct audit *a = NULL;
    uint64_t seq = 0;
    struct audit_record r = rec("deleted", 4);

    path_in_dir(path, sizeof(path), "torn.jsonl");
    CHECK(audit_open(&a, path, key, KEY_LEN, 0, err, sizeof(err)) == 0);
    CHECK(append_n(a, 1, 3) == 0);
    audit_close(a);
    /* a crash in the middle of write(2) */
    int fd = open(path, O_WRONLY | O_APPEND);
    CHECK(write(fd, "{\"seq\":4,\"time\":\"2026", 22) == 22);
    close(fd);
    CHECK(verify_one(path, text, sizeof(text)) == 1);
    CHECK(strstr(text, "torn.jsonl:4: seq 4: truncated line") != NULL);

    CHECK(audit_open(&a, path, key, KEY_LEN, 0, err, sizeof(err)) == 0);
    CHECK(audit_append(a, &r, &seq, NULL) == 0 && seq == 4);
    CHECK(audit_sync(a) == 0);
    audit_close(a);
    CHECK(verify_one(path, text, sizeof(text)) == 0);
    CHECK(strncmp(text, "ok: 4 records, last seq 4", 25) == 0);
}

static void test_rotation_keeps_the_chain(void)
{
    char path[128], err[256], text[512], **files = NULL;
    struct audit *a = NULL;
    int n = 0;
    uint64_t seq = 0;
    struct audit_record r = rec("accepted", 99);

    path_in_dir(path, sizeof(path), "rot/audit.jsonl");
    CHECK(audit_open(&a, path, key, KEY_LEN, 1200, err, sizeof(err)) == 0);
    for (int i = 0; i < 6; i++)
        CHECK(append_n(a, 1 + 5 * i, 5) == 0);
    /* a rotation's rename is no missing file */
    CHECK(audit_healthy(a, NULL) == 1);
    CHECK(audit_fault_count(a, AUDIT_FAULT_MISSING) == 0);
    audit_close(a);
    CHECK(audit_list_files(path, &files, &n) == 0);
    CHECK(n >= 4);
    if (n < 4)
        return;
    char want[160];
    for (int i = 0; i < n - 1; i++) {
        struct stat st;
        snprintf(want, sizeof(want), "%s.%d", path, i + 1);
        CHECK_STR(files[i], want);
        CHECK(stat(files[i], &st) == 0 && st.st_size <= 1200 && st.st_size > 0);
    }
    CHECK_STR(files[n - 1], path);
    CHECK(verify((const char *const *)files, n, key, text, sizeof(text)) == 0);
    CHECK(strncmp(text, "ok: 30 records, last seq 30, last mac ", 38) == 0);
    /* the newest file alone does not start at seq 1 */
    CHECK(verify((const char *const *)files + n - 1, 1, key, text, sizeof(text)) == 1);
    CHECK(strstr(text, "does not start at seq 1") != NULL);
    /* dropping a middle file breaks the chain at the next file's first line */
    const char *gap[3] = {files[0], files[2], files[3]};
    CHECK(verify(gap, 3, key, text, sizeof(text)) == 1);
    snprintf(want, sizeof(want), "%s:1: seq ", files[2]);
    CHECK(strncmp(text, want, strlen(want)) == 0 && strstr(text, "out of sequence") != NULL);

    /* a crash right after a rotation's rename leaves no current file: the
     * chain goes on from the newest rotated one */
    char moved[160];
    snprintf(moved, sizeof(moved), "%s.%d", path, n);
    CHECK(rename(path, moved) == 0);
    CHECK(audit_open(&a, path, key, KEY_LEN, 1200, err, sizeof(err)) == 0);
    CHECK(audit_append(a, &r, &seq, NULL) == 0 && seq == 31);
    CHECK(audit_sync(a) == 0);
    audit_close(a);
    audit_free_files(files, n);
    CHECK(audit_list_files(path, &files, &n) == 0);
    CHECK(verify((const char *const *)files, n, key, text, sizeof(text)) == 0);
    CHECK(strncmp(text, "ok: 31 records, last seq 31,", 28) == 0);
    audit_free_files(files, n);
}

/* A clean six-record log, split into lines, to make tampered copies of. */
struct lines {
    char *data;
    char *line[8];
    size_t len[8];
    int n;
};

static void split(char *data, struct lines *l)
{
    char *p = data;
    l->data = data;
    l->n = 0;
    while (*p != '\0' && l->n < 8) {
        char *nl = strchr(p, '\n');
        l->line[l->n] = p;
        l->len[l->n] = (size_t)(nl - p) + 1;
        l->n++;
        p = nl + 1;
    }
}

/* Writes the lines in the given order (-1 ends) to the copy file. */
static void write_order(const char *path, struct lines *l, const int *order)
{
    FILE *f = fopen(path, "wb");
    for (int i = 0; order[i] >= 0; i++)
        fwrite(l->line[order[i]], 1, l->len[order[i]], f);
    fclose(f);
}

static void test_tampering_is_named(void)
{
    char path[128], copy[128], err[256], text[512], want[256];
    struct audit *a = NULL;
    struct lines l;
    size_t len;

    path_in_dir(path, sizeof(path), "clean.jsonl");
    path_in_dir(copy, sizeof(copy), "copy.jsonl");
    CHECK(audit_open(&a, path, key, KEY_LEN, 0, err, sizeof(err)) == 0);
    CHECK(append_n(a, 1, 6) == 0);
    audit_close(a);
    char *data = slurp(path, &len);
    if (data == NULL)
        return;
    split(data, &l);
    CHECK(l.n == 6);
    if (l.n != 6)
        return;

    /* untouched copy verifies */
    spit(copy, data, len);
    CHECK(verify_one(copy, text, sizeof(text)) == 0);

    /* one byte edited in line 3 (exr_run0003 -> exr_run0009) */
    char *edited = strdup(data);
    char *hit = strstr(edited, "exr_run0003");
    hit[10] = '9';
    spit(copy, edited, len);
    CHECK(verify_one(copy, text, sizeof(text)) == 1);
    snprintf(want, sizeof(want), "%s:3: seq 3: mac mismatch\n", copy);
    CHECK_STR(text, want);
    free(edited);

    /* line 3 deleted */
    write_order(copy, &l, (int[]){0, 1, 3, 4, 5, -1});
    CHECK(verify_one(copy, text, sizeof(text)) == 1);
    snprintf(want, sizeof(want), "%s:3: seq 4: out of sequence", copy);
    CHECK(strncmp(text, want, strlen(want)) == 0);
    CHECK(strstr(text, "(expected seq 3)") != NULL);

    /* the first line deleted */
    write_order(copy, &l, (int[]){1, 2, 3, 4, 5, -1});
    CHECK(verify_one(copy, text, sizeof(text)) == 1);
    snprintf(want, sizeof(want), "%s:1: seq 2: the log does not start at seq 1", copy);
    CHECK(strncmp(text, want, strlen(want)) == 0);

    /* lines 2 and 3 swapped */
    write_order(copy, &l, (int[]){0, 2, 1, 3, 4, 5, -1});
    CHECK(verify_one(copy, text, sizeof(text)) == 1);
    snprintf(want, sizeof(want), "%s:2: seq 3: out of sequence", copy);
    CHECK(strncmp(text, want, strlen(want)) == 0);

    /* a forged line 3 inserted: right seq and prev, mac under another key */
    {
        char forged[1024], mac[65];
        const char *tag = strstr(l.line[2], ",\"mac\":\"");
        size_t body = (size_t)(tag - l.line[2]);
        memcpy(forged, l.line[2], body);
        hmac_hex(wrong_key, forged, body, mac);
        snprintf(forged + body, sizeof(forged) - body, ",\"mac\":\"%s\"}\n", mac);
        FILE *f = fopen(copy, "wb");
        fwrite(data, 1, (size_t)(l.line[2] - data), f);
        fputs(forged, f);
        fwrite(l.line[2], 1, len - (size_t)(l.line[2] - data), f);
        fclose(f);
        CHECK(verify_one(copy, text, sizeof(text)) == 1);
        snprintf(want, sizeof(want), "%s:3: seq 3: mac mismatch\n", copy);
        CHECK_STR(text, want);
    }

    /* line 3 taken from another log under the same key: its own mac holds,
     * but it does not chain onto this log's line 2 */
    {
        char other[128];
        struct lines o;
        size_t olen;
        path_in_dir(other, sizeof(other), "other.jsonl");
        CHECK(audit_open(&a, other, key, KEY_LEN, 0, err, sizeof(err)) == 0);
        CHECK(append_n(a, 11, 6) == 0);
        audit_close(a);
        char *odata = slurp(other, &olen);
        split(odata, &o);
        FILE *f = fopen(copy, "wb");
        fwrite(data, 1, (size_t)(l.line[2] - data), f);
        fwrite(o.line[2], 1, o.len[2], f);
        fwrite(l.line[3], 1, len - (size_t)(l.line[3] - data), f);
        fclose(f);
        CHECK(verify_one(copy, text, sizeof(text)) == 1);
        snprintf(want, sizeof(want), "%s:3: seq 3: prev does not match the previous record's mac\n",
                 copy);
        CHECK_STR(text, want);
        free(odata);
    }

    /* the last line truncated */
    spit(copy, data, len - 30);
    CHECK(verify_one(copy, text, sizeof(text)) == 1);
    snprintf(want, sizeof(want), "%s:6: seq 6: truncated line", copy);
    CHECK(strncmp(text, want, strlen(want)) == 0);

    /* a line that is not a record at all */
    {
        FILE *f = fopen(copy, "wb");
        fwrite(data, 1, (size_t)(l.line[1] - data), f);
        fputs("hello\n", f);
        fwrite(l.line[1], 1, len - (size_t)(l.line[1] - data), f);
        fclose(f);
        CHECK(verify_one(copy, text, sizeof(text)) == 1);
        snprintf(want, sizeof(want), "%s:2: seq 2: malformed line\n", copy);
        CHECK_STR(text, want);
    }

    /* verifying under the wrong key fails at the first record */
    spit(copy, data, len);
    const char *one[1] = {copy};
    CHECK(verify(one, 1, wrong_key, text, sizeof(text)) == 1);
    CHECK(strstr(text, ":1: seq 1: mac mismatch") != NULL);

    /* a missing file cannot be read */
    const char *missing[1] = {"/nonexistent/audit.jsonl"};
    CHECK(verify(missing, 1, key, text, sizeof(text)) == -1);
    free(data);
}

/* The descriptor the log writes through, found by the file it names. */
static int log_fd(const char *path)
{
    char link[64], target[256];
    struct stat want, st;

    if (stat(path, &want) != 0)
        return -1;
    for (int fd = 3; fd < 1024; fd++) {
        snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
        ssize_t n = readlink(link, target, sizeof(target) - 1);
        if (n <= 0 || fstat(fd, &st) != 0)
            continue;
        if (st.st_dev == want.st_dev && st.st_ino == want.st_ino && (fcntl(fd, F_GETFL) & O_APPEND))
            return fd;
    }
    return -1;
}

static void test_uncuttable_file_takes_no_record_but_keeps_the_chain(void)
{
    char err[256];
    const char *why = NULL;
    struct audit *a = NULL;
    struct audit_record r = rec("accepted", 1);

    /* /dev/full fails every write and cannot be truncated back */
    if (access("/dev/full", W_OK) != 0)
        return;
    CHECK(audit_open(&a, "/dev/full", key, KEY_LEN, 0, err, sizeof(err)) == 0);
    if (a == NULL)
        return;
    CHECK(audit_append(a, &r, NULL, NULL) == 0);
    CHECK(audit_sync(a) == -1);
    CHECK(audit_healthy(a, &why) == 0);
    CHECK_STR(why, "audit_write_failed");
    /* records are taken again, chained onto the last durable one, but
     * none is written while the failed write cannot be cut back */
    uint64_t seq = 0;
    CHECK(audit_append(a, &r, &seq, NULL) == 0 && seq == 1);
    CHECK(audit_sync(a) == -1);
    CHECK(audit_fault_count(a, AUDIT_FAULT_WRITE_FAILED) == 1);
    audit_close(a);
}

/* The failure chattr +i gives: writes and ftruncate both refused. Made
 * here by swapping a read-only descriptor of the same file in under the
 * log (root ignores file modes), then putting the real one back. */
static void test_failed_write_recovers_once_the_file_is_writable(void)
{
    char path[128], err[256], text[512];
    const char *why = NULL;
    struct audit *a = NULL;
    struct audit_record r = rec("deleted", 9);
    uint64_t seq = 0;

    path_in_dir(path, sizeof(path), "recover.jsonl");
    CHECK(audit_open(&a, path, key, KEY_LEN, 0, err, sizeof(err)) == 0);
    if (a == NULL)
        return;
    CHECK(append_n(a, 1, 2) == 0);
    int fd = log_fd(path), saved = fd >= 0 ? dup(fd) : -1, ro = open(path, O_RDONLY);
    CHECK(fd >= 0 && saved >= 0 && ro >= 0);
    if (fd < 0 || saved < 0 || ro < 0)
        goto done;
    CHECK(dup2(ro, fd) == fd);
    CHECK(append_n(a, 3, 2) == -1);
    CHECK(audit_healthy(a, &why) == 0);
    CHECK_STR(why, "audit_write_failed");
    CHECK(append_n(a, 3, 1) == -1); /* still cannot cut: nothing written */

    CHECK(dup2(saved, fd) == fd); /* the cause is gone */
    CHECK(audit_append(a, &r, &seq, NULL) == 0 && seq == 3);
    CHECK(audit_sync(a) == 0);
    CHECK(audit_healthy(a, &why) == 1);
    CHECK_STR(why, "ok");
    CHECK(audit_fault_count(a, AUDIT_FAULT_WRITE_FAILED) == 1);
    CHECK(verify_one(path, text, sizeof(text)) == 0);
    CHECK(strncmp(text, "ok: 3 records, last seq 3,", 26) == 0);
done:
    if (saved >= 0)
        close(saved);
    if (ro >= 0)
        close(ro);
    audit_close(a);
}

/* A full disk stops a write part way through a record: the part is cut
 * off and the next write, once there is room, chains on without a gap. */
static void test_partial_write_is_cut_back_and_retried(void)
{
    char path[128], err[256], text[512], detail[400];
    struct audit *a = NULL;
    struct audit_record r = rec("rejected", 5);
    struct rlimit old, lim;
    struct stat before, after;

    path_in_dir(path, sizeof(path), "partial.jsonl");
    CHECK(audit_open(&a, path, key, KEY_LEN, 0, err, sizeof(err)) == 0);
    if (a == NULL)
        return;
    CHECK(append_n(a, 1, 2) == 0);
    CHECK(stat(path, &before) == 0);
    memset(detail, 'x', sizeof(detail) - 1);
    detail[sizeof(detail) - 1] = '\0';
    r.detail = detail;
    signal(SIGXFSZ, SIG_IGN);
    CHECK(getrlimit(RLIMIT_FSIZE, &old) == 0);
    lim = old;
    lim.rlim_cur = (rlim_t)before.st_size + 100;
    CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    CHECK(audit_append(a, &r, NULL, NULL) == 0);
    CHECK(audit_sync(a) == -1);
    CHECK(setrlimit(RLIMIT_FSIZE, &old) == 0);
    signal(SIGXFSZ, SIG_DFL);
    CHECK(stat(path, &after) == 0 && after.st_size == before.st_size);
    CHECK(audit_healthy(a, NULL) == 1); /* cut back: nothing wrong on disk */
    CHECK(audit_append(a, &r, NULL, NULL) == 0);
    CHECK(audit_sync(a) == 0);
    CHECK(verify_one(path, text, sizeof(text)) == 0);
    CHECK(strncmp(text, "ok: 3 records, last seq 3,", 26) == 0);
    audit_close(a);
}

static void test_deleted_file_is_written_back_before_anything_is_acknowledged(void)
{
    char path[128], err[256], text[512];
    const char *why = NULL;
    struct audit *a = NULL;

    path_in_dir(path, sizeof(path), "deleted.jsonl");
    CHECK(audit_open(&a, path, key, KEY_LEN, 0, err, sizeof(err)) == 0);
    if (a == NULL)
        return;
    CHECK(append_n(a, 1, 3) == 0);
    CHECK(unlink(path) == 0);
    /* seen at once by other threads, before any write */
    CHECK(audit_healthy(a, &why) == 0);
    CHECK_STR(why, "audit_log_missing");
    /* the sync that follows finds it and writes the whole file back */
    CHECK(append_n(a, 4, 2) == 0);
    CHECK(audit_healthy(a, &why) == 1);
    CHECK(audit_fault_count(a, AUDIT_FAULT_MISSING) == 1);
    CHECK(verify_one(path, text, sizeof(text)) == 0);
    CHECK(strncmp(text, "ok: 5 records, last seq 5,", 26) == 0);
    /* and the restored file is the one written to from now on */
    CHECK(append_n(a, 6, 1) == 0);
    CHECK(verify_one(path, text, sizeof(text)) == 0);
    CHECK(strncmp(text, "ok: 6 records, last seq 6,", 26) == 0);
    audit_close(a);
    /* a second writer is still kept out of the restored file */
    CHECK(audit_open(&a, path, key, KEY_LEN, 0, err, sizeof(err)) == 0);
    audit_close(a);
}

static void test_renamed_or_replaced_file_takes_no_record_until_back(void)
{
    char path[128], moved[160], err[256], text[512];
    const char *why = NULL;
    struct audit *a = NULL;

    path_in_dir(path, sizeof(path), "moved.jsonl");
    snprintf(moved, sizeof(moved), "%s.away", path);
    CHECK(audit_open(&a, path, key, KEY_LEN, 0, err, sizeof(err)) == 0);
    if (a == NULL)
        return;
    CHECK(append_n(a, 1, 2) == 0);

    /* renamed: no copy (that would fork the trail), no record */
    CHECK(rename(path, moved) == 0);
    CHECK(append_n(a, 3, 1) == -1);
    CHECK(audit_healthy(a, &why) == 0);
    CHECK_STR(why, "audit_log_missing");
    CHECK(access(path, F_OK) != 0);
    CHECK(append_n(a, 3, 1) == -1);
    CHECK(rename(moved, path) == 0);
    CHECK(append_n(a, 3, 1) == 0);
    CHECK(audit_healthy(a, NULL) == 1);

    /* deleted, and another file put at the path: it is not replaced */
    CHECK(unlink(path) == 0);
    spit(path, "", 0);
    CHECK(append_n(a, 4, 1) == -1);
    CHECK(audit_healthy(a, &why) == 0);
    CHECK_STR(why, "audit_log_missing");
    CHECK(unlink(path) == 0); /* once it is gone, the log is written back */
    CHECK(append_n(a, 4, 1) == 0);
    CHECK(audit_fault_count(a, AUDIT_FAULT_MISSING) == 2);
    CHECK(verify_one(path, text, sizeof(text)) == 0);
    CHECK(strncmp(text, "ok: 4 records, last seq 4,", 26) == 0);
    audit_close(a);
}

int main(void)
{
    char cmd[128];

    snprintf(dir, sizeof(dir), "/tmp/dg_audit_XXXXXX");
    if (mkdtemp(dir) == NULL)
        return 1;
    test_format_is_canonical_and_chained();
    test_reopen_continues_the_chain();
    test_torn_last_line_is_cut_at_open();
    test_rotation_keeps_the_chain();
    test_tampering_is_named();
    test_uncuttable_file_takes_no_record_but_keeps_the_chain();
    test_failed_write_recovers_once_the_file_is_writable();
    test_partial_write_is_cut_back_and_retried();
    test_deleted_file_is_written_back_before_anything_is_acknowledged();
    test_renamed_or_replaced_file_takes_no_record_until_back();
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        return 1;
    return check_done();
}
