/*
 * http_view.c: a deletion rendered as JSON (see http_view.h). Written as
 * text, not built as a json_t: a page of a thousand was a tree of some
 * 30,000 nodes, its dump and its free, most of an admin list's time. The
 * bytes are those jansson writes with JSON_COMPACT | JSON_PRESERVE_ORDER
 * (test_http_view.c parses and dumps each back to check).
 */
#include "http_view.h"

#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>

#include "queue.h"
#include "resource.h"
#include "util.h"

int http_view_id_valid(const char *id, size_t len)
{
    if (len < 5 || len > QUEUE_DELETION_ID_MAX || strncmp(id, "del_", 4) != 0)
        return 0;
    for (size_t i = 4; i < len; i++) {
        if (!((id[i] >= 'a' && id[i] <= 'z') || (id[i] >= '0' && id[i] <= '9')))
            return 0;
    }
    return 1;
}

/* The writer: runs of bytes gathered here and handed to the evbuffer in
 * pieces, since a call to evbuffer_add per member would cost more than
 * the member. failed is sticky: the caller checks it once at the end. */
struct view_out {
    struct evbuffer *b;
    size_t n;
    int failed;
    char buf[8192];
};

static void out_flush(struct view_out *o)
{
    if (o->n > 0 && evbuffer_add(o->b, o->buf, o->n) != 0)
        o->failed = 1;
    o->n = 0;
}

static void out_put(struct view_out *o, const char *s, size_t len)
{
    if (o->n + len > sizeof(o->buf))
        out_flush(o);
    if (len > sizeof(o->buf)) {
        if (evbuffer_add(o->b, s, len) != 0)
            o->failed = 1;
        return;
    }
    memcpy(o->buf + o->n, s, len);
    o->n += len;
}

#define OUT_LIT(o, lit) out_put((o), (lit), sizeof(lit) - 1)

/* The length of the valid UTF-8 sequence at s (1 to 4), or 0: a stray or
 * truncated continuation, an overlong form, a surrogate, past U+10FFFF. */
static size_t utf8_len(const unsigned char *s)
{
    unsigned c = s[0];
    size_t len;
    unsigned cp;

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return len;
}

/* s as a JSON string, escaped as jansson escapes it without
 * JSON_ENSURE_ASCII: quote, backslash and the control characters, the
 * rest as it is. A byte that is not valid UTF-8 (jansson would refuse the
 * whole string) becomes U+FFFD, so the answer stays valid JSON. */
static void out_string(struct view_out *o, const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0, from = 0; /* s[from, i): bytes that go out as they are */

    OUT_LIT(o, "\"");
    while (s[i] != '\0') {
        size_t len = utf8_len(s + i);
        unsigned c = s[i];
        char esc[8] = {'\\', 0};
        const char *e = esc;
        size_t elen = 2;

        if (len > 0 && c != '"' && c != '\\' && c >= 0x20) {
            i += len;
            continue;
        }
        out_put(o, str + from, i - from);
        if (len == 0) {
            e = "\xef\xbf\xbd"; /* U+FFFD, as jansson writes it */
            elen = 3;
        } else if (c == '"' || c == '\\') {
            esc[1] = (char)c;
        } else if (c == '\b' || c == '\f' || c == '\n' || c == '\r' || c == '\t') {
            esc[1] = c == '\b' ? 'b' : c == '\f' ? 'f' : c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
        } else {
            elen = (size_t)snprintf(esc, sizeof(esc), "\\u%04X", c);
        }
        out_put(o, e, elen);
        from = ++i;
    }
    out_put(o, str + from, i - from);
    OUT_LIT(o, "\"");
}

/* The string, or null when it is empty (nothing recorded). */
static void out_string_or_null(struct view_out *o, const char *s)
{
    if (s[0] == '\0')
        OUT_LIT(o, "null");
    else
        out_string(o, s);
}

static void out_int(struct view_out *o, long long v)
{
    char buf[24];
    out_put(o, buf, (size_t)snprintf(buf, sizeof(buf), "%lld", v));
}

/* A status, or null when none was received. */
static void out_status(struct view_out *o, int status)
{
    if (status == 0)
        OUT_LIT(o, "null");
    else
        out_int(o, status);
}

/* RFC 3339 with milliseconds, or null for a time not reached (0). */
static void out_time(struct view_out *o, int64_t ms)
{
    char buf[40];

    if (ms <= 0) {
        OUT_LIT(o, "null");
        return;
    }
    util_format_time_ms(ms, buf, sizeof(buf));
    out_string(o, buf);
}

static void out_attempts(struct view_out *o, const struct queue_deletion_view *v)
{
    OUT_LIT(o, "[");
    for (int i = 0; i < v->n_attempts; i++) {
        const struct queue_attempt_view *a = &v->attempt[i];

        out_put(o, i == 0 ? "{\"started_at\":" : ",{\"started_at\":", i == 0 ? 14 : 15);
        out_time(o, a->started_ms);
        OUT_LIT(o, ",\"finished_at\":");
        out_time(o, a->finished_ms);
        OUT_LIT(o, ",\"upstream_status\":");
        out_status(o, a->http_status);
        OUT_LIT(o, ",\"upstream_request_id\":");
        out_string_or_null(o, a->upstream_request_id);
        OUT_LIT(o, ",\"error\":");
        out_string_or_null(o, a->error_code);
        OUT_LIT(o, ",\"detail\":");
        out_string_or_null(o, a->detail);
        OUT_LIT(o, "}");
    }
    OUT_LIT(o, "]");
}

int http_view_write(struct evbuffer *b, const struct queue_deletion_view *v, int with_attempts,
                    const char *receipt)
{
    struct view_out o = {.b = b};

    OUT_LIT(&o, "{\"id\":");
    out_string(&o, v->deletion_id);
    OUT_LIT(&o, ",\"state\":");
    out_string(&o, deletion_state_name(v->state));
    OUT_LIT(&o, ",\"resource\":");
    out_string(&o, resource_name(v->resource));
    OUT_LIT(&o, ",\"resource_id\":");
    out_string(&o, v->resource_id);
    OUT_LIT(&o, ",\"account\":");
    out_string(&o, v->account);
    if (strcmp(v->source, "extend") == 0) {
        OUT_LIT(&o, ",\"requested_by\":{\"type\":\"extend_webhook\",\"event_id\":");
        out_string(&o, v->key);
    } else {
        OUT_LIT(&o, ",\"requested_by\":{\"type\":\"client\",\"client_id\":");
        out_string(&o, v->source);
        OUT_LIT(&o, ",\"webhook_id\":");
        out_string(&o, v->key);
    }
    OUT_LIT(&o, "},\"reason\":");
    out_string_or_null(&o, v->reason);
    OUT_LIT(&o, ",\"request_id\":");
    out_string_or_null(&o, v->request_id);
    OUT_LIT(&o, ",\"attempts\":");
    out_int(&o, v->attempts);
    OUT_LIT(&o, ",\"last_upstream_status\":");
    out_status(&o, v->last_http_status);
    OUT_LIT(&o, ",\"last_upstream_request_id\":");
    out_string_or_null(&o, v->last_upstream_request_id);
    OUT_LIT(&o, ",\"last_error\":");
    out_string_or_null(&o, v->last_error);
    OUT_LIT(&o, ",\"accepted_at\":");
    out_time(&o, v->accepted_ms);
    OUT_LIT(&o, ",\"not_before\":");
    out_time(&o, v->not_before_ms);
    OUT_LIT(&o, ",\"updated_at\":");
    out_time(&o, v->updated_ms);
    OUT_LIT(&o, ",\"next_attempt_at\":");
    out_time(&o, v->next_attempt_ms);
    OUT_LIT(&o, ",\"completed_at\":");
    out_time(&o, v->completed_ms);
    if (v->final_audit_seq > 0) {
        OUT_LIT(&o, ",\"audit\":{\"seq\":");
        out_int(&o, (long long)v->final_audit_seq);
        OUT_LIT(&o, ",\"mac\":");
        out_string(&o, v->final_audit_mac);
        OUT_LIT(&o, "}");
    }
    if (with_attempts) {
        OUT_LIT(&o, ",\"attempt_history\":");
        out_attempts(&o, v);
    }
    if (receipt != NULL) {
        OUT_LIT(&o, ",\"receipt\":");
        out_put(&o, receipt, strlen(receipt));
    }
    OUT_LIT(&o, "}");
    out_flush(&o);
    return o.failed ? -1 : 0;
}
