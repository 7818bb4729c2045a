/*
 * json_body.c: the one way request bodies are parsed and quoted back in
 * error messages (see json_body.h).
 */
#include "json_body.h"

#include <stdlib.h>
#include <string.h>

const char *json_body_show(const char *s, size_t len, char out[JSON_BODY_SHOW_MAX + 4])
{
    size_t n;

    for (n = 0; n < len && n < JSON_BODY_SHOW_MAX; n++) {
        unsigned char c = (unsigned char)s[n];
        out[n] = '?';
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
            out[n] = s[n];
    }
    if (n < len) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
    return out;
}

/* ---- the outline: one pass that checks everything, copies the outline ---- */

#define OUTLINE_MAX_DEPTH 2048 /* jansson's own limit */

enum outline_mode {
    OUTLINE_DECIDE, /* containers two levels down are left out unless kept */
    OUTLINE_WHOLE,  /* inside a kept member: everything is copied */
    OUTLINE_HIDDEN, /* inside a left-out container: checked only */
};

struct outline {
    const unsigned char *in;
    size_t len, pos;
    size_t copied; /* input before this is already in out (or left out) */
    char *out;
    size_t out_len;
    const char *const *keep;
    const char *why; /* the first error, at pos */
};

static int outline_fail(struct outline *o, const char *why)
{
    if (o->why == NULL)
        o->why = why;
    return -1;
}

static void outline_ws(struct outline *o)
{
    while (o->pos < o->len) {
        unsigned char c = o->in[o->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            return;
        o->pos++;
    }
}

static int outline_hex4(struct outline *o, unsigned *v)
{
    *v = 0;
    for (int i = 0; i < 4; i++, o->pos++) {
        unsigned char c = o->pos < o->len ? o->in[o->pos] : 0;
        unsigned d = c >= '0' && c <= '9'   ? (unsigned)(c - '0')
                     : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
                     : c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10)
                                            : 16u;
        if (d == 16)
            return outline_fail(o, "invalid JSON");
        *v = *v << 4 | d;
    }
    return 0;
}

/* One UTF-8 sequence at pos (RFC 3629: shortest form, no surrogates, at
 * most U+10FFFF). */
static int outline_utf8(struct outline *o)
{
    const unsigned char *p = o->in + o->pos;
    size_t left = o->len - o->pos;
    unsigned c = p[0], cp, n;

    if (c < 0x80)
        n = 1, cp = c;
    else if (c >= 0xc2 && c <= 0xdf)
        n = 2, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        n = 3, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 4, cp = c & 0x07;
    else
        return outline_fail(o, "invalid UTF-8");
    if (left < n)
        return outline_fail(o, "invalid UTF-8");
    for (unsigned i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return outline_fail(o, "invalid UTF-8");
        cp = cp << 6 | (p[i] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return outline_fail(o, "invalid UTF-8");
    o->pos += n;
    return 0;
}

/* A string, from its opening quote. */
static int outline_string(struct outline *o)
{
    o->pos++; /* the opening quote */
    for (;;) {
        if (o->pos >= o->len)
            return outline_fail(o, "invalid JSON");
        unsigned char c = o->in[o->pos];
        if (c == '"') {
            o->pos++;
            return 0;
        }
        if (c == '\0')
            return outline_fail(o, "NUL character");
        if (c < 0x20)
            return outline_fail(o, "invalid JSON");
        if (c != '\\') {
            if (outline_utf8(o) != 0)
                return -1;
            continue;
        }
        o->pos++;
        c = o->pos < o->len ? o->in[o->pos] : 0;
        if (c != 'u') {
            if (strchr("\"\\/bfnrt", c) == NULL || c == '\0')
                return outline_fail(o, "invalid JSON");
            o->pos++;
            continue;
        }
        unsigned v, low;
        o->pos++;
        if (outline_hex4(o, &v) != 0)
            return -1;
        if (v == 0)
            return outline_fail(o, "NUL character");
        if (v >= 0xdc00 && v <= 0xdfff)
            return outline_fail(o, "invalid JSON"); /* a low surrogate alone */
        if (v >= 0xd800 && v <= 0xdbff) {
            if (o->pos + 2 > o->len || o->in[o->pos] != '\\' || o->in[o->pos + 1] != 'u')
                return outline_fail(o, "invalid JSON");
            o->pos += 2;
            if (outline_hex4(o, &low) != 0)
                return -1;
            if (low < 0xdc00 || low > 0xdfff)
                return outline_fail(o, "invalid JSON");
        }
    }
}

static int outline_digits(struct outline *o)
{
    size_t start = o->pos;

    while (o->pos < o->len && o->in[o->pos] >= '0' && o->in[o->pos] <= '9')
        o->pos++;
    return o->pos > start ? 0 : outline_fail(o, "invalid JSON");
}

static int outline_number(struct outline *o)
{
    if (o->in[o->pos] == '-')
        o->pos++;
    if (o->pos < o->len && o->in[o->pos] == '0')
        o->pos++;
    else if (outline_digits(o) != 0)
        return -1;
    if (o->pos < o->len && o->in[o->pos] == '.') {
        o->pos++;
        if (outline_digits(o) != 0)
            return -1;
    }
    if (o->pos < o->len && (o->in[o->pos] == 'e' || o->in[o->pos] == 'E')) {
        o->pos++;
        if (o->pos < o->len && (o->in[o->pos] == '+' || o->in[o->pos] == '-'))
            o->pos++;
        if (outline_digits(o) != 0)
            return -1;
    }
    return 0;
}

static int outline_word(struct outline *o, const char *word)
{
    size_t n = strlen(word);

    if (o->len - o->pos < n || memcmp(o->in + o->pos, word, n) != 0)
        return outline_fail(o, "invalid JSON");
    o->pos += n;
    return 0;
}

/* Puts the input up to the current value in out, then null for it. */
static void outline_leave_out(struct outline *o)
{
    memcpy(o->out + o->out_len, o->in + o->copied, o->pos - o->copied);
    o->out_len += o->pos - o->copied;
    memcpy(o->out + o->out_len, "null", 4);
    o->out_len += 4;
}

/* Whether the member name in[key..key_end) (raw, escapes and all) is one
 * of keep, which holds ASCII names. */
static int outline_kept(const struct outline *o, size_t key, size_t key_end)
{
    char name[32] = "";
    size_t n = 0;

    for (size_t i = key; i < key_end; i++) {
        unsigned char c = o->in[i];
        if (c == '\\') {
            c = o->in[++i];
            if (c == 'u') {
                unsigned v = 0;
                for (int d = 0; d < 4; d++) {
                    unsigned char h = o->in[++i];
                    v = v << 4 | (unsigned)(h <= '9' ? h - '0' : (h | 0x20) - 'a' + 10);
                }
                if (v >= 0x80)
                    return 0; /* not ASCII, so no kept name */
                c = (unsigned char)v;
            } else {
                const char *from = "bfnrt", *to = "\b\f\n\r\t", *at = strchr(from, c);
                if (at != NULL)
                    c = (unsigned char)to[at - from]; /* else " \\ / stand for themselves */
            }
        }
        if (n == sizeof(name))
            return 0;
        name[n++] = (char)c;
    }
    for (const char *const *k = o->keep; k != NULL && *k != NULL; k++) {
        if (strlen(*k) == n && memcmp(*k, name, n) == 0)
            return 1;
    }
    return 0;
}

/* One value at pos, level containers down. For an object member,
 * in[key..key_end) is its name as written; key is 0 for any other value. */
static int outline_value(struct outline *o, int level, enum outline_mode mode, size_t key,
                         size_t key_end)
{
    outline_ws(o);
    if (o->pos >= o->len)
        return outline_fail(o, "invalid JSON");
    unsigned char c = o->in[o->pos];
    if (c == '"')
        return outline_string(o);
    if (c == '-' || (c >= '0' && c <= '9'))
        return outline_number(o);
    if (c == 't')
        return outline_word(o, "true");
    if (c == 'f')
        return outline_word(o, "false");
    if (c == 'n')
        return outline_word(o, "null");
    if (c != '{' && c != '[')
        return outline_fail(o, c == '\0' ? "NUL character" : "invalid JSON");
    if (level + 1 > OUTLINE_MAX_DEPTH)
        return outline_fail(o, "nested too deeply");

    enum outline_mode inner = mode;
    int left_out = 0;
    if (mode == OUTLINE_DECIDE && level >= 2) {
        if (key != 0 && outline_kept(o, key, key_end)) {
            inner = OUTLINE_WHOLE;
        } else {
            left_out = 1;
            inner = OUTLINE_HIDDEN;
        }
    }
    if (left_out)
        outline_leave_out(o);

    unsigned char close = c == '{' ? '}' : ']';
    o->pos++;
    outline_ws(o);
    if (o->pos < o->len && o->in[o->pos] == close) {
        o->pos++;
    } else {
        for (;;) {
            size_t k = 0, k_end = 0;
            outline_ws(o);
            if (close == '}') {
                if (o->pos >= o->len || o->in[o->pos] != '"')
                    return outline_fail(o, "invalid JSON");
                k = o->pos + 1;
                if (outline_string(o) != 0)
                    return -1;
                k_end = o->pos - 1;
                outline_ws(o);
                if (o->pos >= o->len || o->in[o->pos] != ':')
                    return outline_fail(o, "invalid JSON");
                o->pos++;
            }
            if (outline_value(o, level + 1, inner, k, k_end) != 0)
                return -1;
            outline_ws(o);
            if (o->pos < o->len && o->in[o->pos] == ',') {
                o->pos++;
                continue;
            }
            if (o->pos < o->len && o->in[o->pos] == close) {
                o->pos++;
                break;
            }
            return outline_fail(o, "invalid JSON");
        }
    }
    if (left_out)
        o->copied = o->pos;
    return 0;
}

/* Line and column (in characters, as jansson counts) of byte pos. */
static void outline_where(const char *body, size_t pos, int *line, int *column)
{
    *line = 1;
    *column = 0;
    for (size_t i = 0; i <= pos; i++) {
        unsigned char c = (unsigned char)body[i];
        if (c == '\n') {
            (*line)++;
            *column = 0;
        } else if ((c & 0xc0) != 0x80) {
            (*column)++;
        }
    }
}

json_t *json_body_load_outline(const char *body, size_t len, const char *const *keep,
                               struct api_error *err)
{
    struct outline o = {.in = (const unsigned char *)body, .len = len, .keep = keep};
    json_t *root;
    int line, column;

    if (body == NULL || len == 0)
        return json_body_load(body, len, err);
    /* Leaving a container out turns at least "[]" into "null": two bytes
     * more for every three of input at most ("[],"). */
    o.out = malloc(2 * len + 16);
    if (o.out == NULL) {
        api_error_set(err, 503, "overloaded", "out of memory");
        return NULL;
    }
    if (outline_value(&o, 0, OUTLINE_DECIDE, 0, 0) == 0) {
        outline_ws(&o);
        if (o.pos < o.len)
            outline_fail(&o, o.in[o.pos] == '\0' ? "NUL character" : "invalid JSON");
    }
    if (o.why != NULL) {
        free(o.out);
        outline_where(body, o.pos < len ? o.pos : len - 1, &line, &column);
        api_error_set(err, 400, "malformed_json", "body: %s at line %d, column %d", o.why, line,
                      column);
        return NULL;
    }
    memcpy(o.out + o.out_len, body + o.copied, len - o.copied);
    o.out_len += len - o.copied;
    root = json_body_load(o.out, o.out_len, err);
    free(o.out);
    return root;
}

json_t *json_body_load(const char *body, size_t len, struct api_error *err)
{
    json_error_t jerr;
    json_t *root;
    const char *why;

    if (body == NULL) {
        api_error_set(err, 400, "malformed_json", "body is empty");
        return NULL;
    }
    /* Duplicate keys are refused: {"id": "a", "id": "b"} must not mean
     * one thing here and another to the client that wrote it. */
    root = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (root != NULL)
        return root;
    switch (json_error_code(&jerr)) {
    case json_error_duplicate_key:
        why = "duplicate object key";
        break;
    case json_error_invalid_utf8:
        why = "invalid UTF-8";
        break;
    case json_error_null_character:
    case json_error_null_byte_in_key:
        why = "NUL character";
        break;
    case json_error_stack_overflow:
        why = "nested too deeply";
        break;
    default:
        why = "invalid JSON";
        break;
    }
    api_error_set(err, 400, "malformed_json", "body: %s at line %d, column %d", why, jerr.line,
                  jerr.column);
    return NULL;
}
