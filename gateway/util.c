/*
 * util.c: the clock, random ids, string helpers and directories (see util.h).
 */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

int64_t util_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t util_mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t util_mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void util_format_time_ms(int64_t ms, char *out, size_t outlen)
{
    /* Every log line and audit record carries a time, and most fall in the
     * same second as the one before: its date and time are kept per thread
     * and only the milliseconds are written anew. */
    static _Thread_local int64_t last_secs = -1;
    static _Thread_local char date[64]; /* room for any int year */
    int64_t secs, milli;

    if (ms < 0)
        ms = 0;
    secs = ms / 1000;
    milli = ms % 1000;

    if (secs != last_secs) {
        time_t t = (time_t)secs;
        struct tm tm;
        gmtime_r(&t, &tm);
        snprintf(date, sizeof(date), "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        last_secs = secs;
    }
    snprintf(out, outlen, "%s.%03dZ", date, (int)milli);
}

static int parse_digits(const char **p, int n, int *out)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        if ((*p)[i] < '0' || (*p)[i] > '9')
            return -1;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return 0;
}

static int days_in_month(int year, int mon)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;

    return mon == 2 && leap ? 29 : days[mon - 1];
}

int util_parse_rfc3339(const char *s, int64_t *ms_out)
{
    int year, mon, day, hour, min, sec, frac_ms = 0, off = 0;
    const char *p = s;
    struct tm tm;

    if (parse_digits(&p, 4, &year) || *p++ != '-' || parse_digits(&p, 2, &mon) || *p++ != '-' ||
        parse_digits(&p, 2, &day) || (*p != 'T' && *p != 't'))
        return -1;
    p++;
    if (parse_digits(&p, 2, &hour) || *p++ != ':' || parse_digits(&p, 2, &min) || *p++ != ':' ||
        parse_digits(&p, 2, &sec))
        return -1;
    if (*p == '.') {
        int digits = 0;

        p++;
        while (*p >= '0' && *p <= '9') {
            if (digits < 3)
                frac_ms = frac_ms * 10 + (*p - '0');
            digits++;
            p++;
        }
        if (digits == 0 || digits > 9)
            return -1;
        for (int i = digits; i < 3; i++)
            frac_ms *= 10;
    }
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p++ == '-' ? -1 : 1, oh, om;

        if (parse_digits(&p, 2, &oh) || *p++ != ':' || parse_digits(&p, 2, &om) || oh > 23 ||
            om > 59)
            return -1;
        off = sign * (oh * 3600 + om * 60);
    } else {
        return -1;
    }
    if (*p != '\0' || year < 1970 || year > 9999 || mon < 1 || mon > 12 || day < 1 ||
        day > days_in_month(year, mon) || hour > 23 || min > 59 || sec > 60)
        return -1;
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = year - 1900;
    tm.tm_mon = mon - 1;
    tm.tm_mday = day;
    tm.tm_hour = hour;
    tm.tm_min = min;
    tm.tm_sec = sec;
    *ms_out = ((int64_t)timegm(&tm) - off) * 1000 + frac_ms;
    return 0;
}

int util_random_bytes(void *out, size_t n)
{
    static _Thread_local unsigned char pool[1024];
    static _Thread_local size_t left;

    if (n > sizeof(pool))
        return RAND_bytes(out, (int)n) == 1 ? 0 : -1;
    if (left < n) {
        if (RAND_bytes(pool, sizeof(pool)) != 1)
            return -1;
        left = sizeof(pool);
    }
    memcpy(out, pool + sizeof(pool) - left, n);
    left -= n;
    return 0;
}

int util_random_id(const char *prefix, char *out, size_t outlen)
{
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz234567";
    unsigned char bytes[26];
    size_t plen = strlen(prefix);

    if (outlen < plen + 27 || util_random_bytes(bytes, sizeof(bytes)) != 0)
        return -1;
    memcpy(out, prefix, plen);
    for (size_t i = 0; i < sizeof(bytes); i++)
        out[plen + i] = alphabet[bytes[i] & 31];
    out[plen + 26] = '\0';
    return 0;
}

int util_sortable_id(const char *prefix, int64_t now_ms, char *out, size_t outlen)
{
    static const char alphabet[] = "0123456789abcdefghjkmnpqrstvwxyz";
    unsigned char bytes[16];
    size_t plen = strlen(prefix);
    uint64_t t = (uint64_t)(now_ms < 0 ? 0 : now_ms);

    if (outlen < plen + 27 || util_random_bytes(bytes, sizeof(bytes)) != 0)
        return -1;
    memcpy(out, prefix, plen);
    for (int i = 9; i >= 0; i--) {
        out[plen + (size_t)i] = alphabet[t & 31];
        t >>= 5;
    }
    for (size_t i = 0; i < sizeof(bytes); i++)
        out[plen + 10 + i] = alphabet[bytes[i] & 31];
    out[plen + 26] = '\0';
    return 0;
}

void util_hex(const unsigned char *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * len] = '\0';
}

size_t util_json_escape(const char *s, char *out, size_t outlen)
{
    size_t n = 0;

    if (outlen < 3) {
        if (outlen > 0)
            out[0] = '\0';
        return 0;
    }
    out[n++] = '"';
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        size_t elen;

        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            elen = 2;
        } else if (c < 0x20) {
            elen = (size_t)snprintf(esc, sizeof(esc), "\\u%04x", c);
        } else {
            esc[0] = (char)c;
            elen = 1;
        }
        if (n + elen + 2 > outlen)
            break;
        memcpy(out + n, esc, elen);
        n += elen;
    }
    out[n++] = '"';
    out[n] = '\0';
    return n;
}

/* util_json_indent's output, in runs rather than a call per byte. */
struct indent_out {
    FILE *f;
    size_t n;
    char buf[8192];
};

static void indent_put(struct indent_out *o, const char *s, size_t len)
{
    if (o->n + len > sizeof(o->buf)) {
        fwrite(o->buf, 1, o->n, o->f);
        o->n = 0;
    }
    if (len > sizeof(o->buf)) {
        fwrite(s, 1, len, o->f);
        return;
    }
    memcpy(o->buf + o->n, s, len);
    o->n += len;
}

static void indent_line(struct indent_out *o, int depth)
{
    static const char spaces[] = "                                ";

    indent_put(o, "\n", 1);
    for (int i = 0; i < 2 * depth; i += (int)sizeof(spaces) - 1)
        indent_put(o, spaces,
                   2 * depth - i < (int)sizeof(spaces) - 1 ? (size_t)(2 * depth - i)
                                                           : sizeof(spaces) - 1);
}

int util_json_indent(FILE *out, const char *s)
{
    /* Nesting deeper than this is no answer of ours. */
    char open[64];
    int depth = 0, bad = 0;
    struct indent_out o = {.f = out, .n = 0};

    s += strspn(s, " \t\r\n");
    if (*s == '\0')
        return -1;
    while (*s != '\0' && !bad) {
        const char *run = s;

        switch (*s) {
        case '"':
            for (s++; *s != '"'; s++) {
                if (*s == '\0' || (*s == '\\' && *++s == '\0'))
                    break;
            }
            if (*s == '\0') {
                bad = 1;
                break;
            }
            indent_put(&o, run, (size_t)(++s - run));
            break;
        case '{':
        case '[':
            if (s[1] == (*s == '{' ? '}' : ']')) {
                indent_put(&o, s, 2);
                s += 2;
                break;
            }
            if (depth == (int)sizeof(open)) {
                bad = 1;
                break;
            }
            open[depth++] = *s;
            indent_put(&o, s++, 1);
            indent_line(&o, depth);
            break;
        case '}':
        case ']':
            if (depth == 0 || open[depth - 1] != (*s == '}' ? '{' : '[')) {
                bad = 1;
                break;
            }
            indent_line(&o, --depth);
            indent_put(&o, s++, 1);
            break;
        case ',':
            indent_put(&o, s++, 1);
            indent_line(&o, depth);
            break;
        case ':':
            indent_put(&o, ": ", 2);
            s++;
            break;
        case ' ':
        case '\t':
        case '\r':
        case '\n':
            s++;
            break;
        default:
            while (*s != '\0' && strchr("\"{}[],: \t\r\n", *s) == NULL)
                s++;
            indent_put(&o, run, (size_t)(s - run));
        }
    }
    fwrite(o.buf, 1, o.n, out);
    return bad || depth != 0 ? -1 : 0;
}

char *util_dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');

    if (slash == NULL)
        return strdup(".");
    if (slash == path)
        return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

int util_sync_dir(const char *path)
{
    char *dir = util_dir_of(path);
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

int util_mkdirs(const char *path)
{
    char *dir = util_dir_of(path);
    int rc = 0;

    if (dir == NULL)
        return -1;
    for (char *p = dir + 1; rc == 0; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;
        *p = '\0';
        if (mkdir(dir, 0700) == 0)
            rc = util_sync_dir(dir);
        else if (errno != EEXIST)
            rc = -1;
        *p = c;
        if (c == '\0')
            break;
    }
    free(dir);
    return rc;
}

int util_parse_int64(const char *s, int64_t min, int64_t max, int64_t *out)
{
    char *end;
    long long v;

    if (s == NULL || *s == '\0' || (*s != '-' && (*s < '0' || *s > '9')))
        return -1;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}
