/*
 * audit_verify.c: `deletion-gateway audit verify`: walks every file of the
 * log oldest first and names the first bad line (see audit.h).
 */
#include "audit_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

    memcpy(last, audit_zero_mac, 65);
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
            hint = audit_line_seq(line, len);
            if (hint == 0)
                hint = expected;
            if (st == LINE_TOO_LONG)
                why = "line too long";
            else if (st == LINE_NO_NEWLINE)
                why = "truncated line (no newline at the end of the file)";
            else if (audit_line_check(line, len, key, key_len, &seq, prev, mac, &why) == 0) {
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
