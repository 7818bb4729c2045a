/*
 * http_framing.c: the strict request framing check (see http_framing.h).
 *
 *   head parser    request line, header lines, the facts that frame a body
 *   chunk parser   chunk-size lines (hex digits only), data, the last chunk
 *   status/code    the JSON answer for each refusal
 *
 * Both parsers look at each byte once, whatever the pieces it arrives in,
 * so a client sending one byte at a time costs no more than one sending
 * the request whole. Lines end in CRLF only: a bare CR or LF, or any other
 * control byte, is exactly what two parsers read differently.
 */
#include "http_framing.h"

#include <string.h>
#include <strings.h>

static const char *const methods[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"};
#define N_METHODS (sizeof(methods) / sizeof(methods[0]))
#define M_HEAD 1
#define M_OPTIONS 6

static const struct {
    int status;
    const char *code;
} answers[HFE_COUNT] = {
    [HFE_NONE] = {400, "invalid_request_line"},
    [HFE_REQUEST_LINE] = {400, "invalid_request_line"},
    [HFE_VERSION] = {400, "unsupported_http_version"},
    [HFE_METHOD] = {405, "method_not_allowed"},
    [HFE_URI_TOO_LONG] = {414, "uri_too_long"},
    [HFE_HEADERS_TOO_LARGE] = {431, "headers_too_large"},
    [HFE_HEADER] = {400, "invalid_header"},
    [HFE_CONTENT_LENGTH] = {400, "invalid_content_length"},
    [HFE_TRANSFER_ENCODING] = {400, "invalid_transfer_encoding"},
    [HFE_HOST] = {400, "invalid_host"},
    [HFE_EXPECT] = {417, "expectation_failed"},
    [HFE_UNEXPECTED_BODY] = {400, "unexpected_body"},
    [HFE_BODY_TOO_LARGE] = {413, "body_too_large"},
    [HFE_CHUNK] = {400, "invalid_chunk"},
};

int http_framing_status(enum hf_error e)
{
    return (unsigned)e < HFE_COUNT ? answers[e].status : 400;
}

const char *http_framing_code(enum hf_error e)
{
    return (unsigned)e < HFE_COUNT ? answers[e].code : "invalid_request_line";
}

const char *http_framing_method_name(int method)
{
    return method >= 0 && (size_t)method < N_METHODS ? methods[method] : "";
}

/* RFC 9110 tchar. */
static int is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int is_hex(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    return (c | 0x20) - 'a' + 10;
}

/* A control byte that may not appear anywhere in a head (HTAB may, in
 * field values; CR only before LF, checked by the caller). */
static int is_ctl(unsigned char c)
{
    return (c < 0x20 && c != '\t') || c == 0x7f;
}

static int fail(struct hf_head *h, enum hf_error e, const char *why)
{
    h->error = e;
    h->why = why;
    return HF_ERROR;
}

void http_framing_head_init(struct hf_head *h)
{
    memset(h, 0, sizeof(*h));
    h->method = -1;
}

/* origin-form (RFC 9112 3.2.1) with RFC 3986 characters only, or "*" for
 * OPTIONS. Absolute-form is for proxies, and "//x" reads as an authority
 * to libevent's URI parser but as a path to most others. */
static int check_target(const unsigned char *t, size_t n, int method)
{
    if (n == 1 && t[0] == '*')
        return method == M_OPTIONS ? 0 : -1;
    if (n == 0 || t[0] != '/' || (n > 1 && t[1] == '/'))
        return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = t[i];

        if (c == '%') {
            if (i + 2 >= n || !is_hex(t[i + 1]) || !is_hex(t[i + 2]))
                return -1;
            i += 2;
            continue;
        }
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
            continue;
        if (strchr("-._~!$&'()*+,;=:@/?", c) == NULL || c == '\0')
            return -1;
    }
    return 0;
}

static int request_line(struct hf_head *h, const char *buf, size_t start, size_t n)
{
    const unsigned char *l = (const unsigned char *)buf + start;
    const unsigned char *sp1, *sp2, *v;
    size_t mlen, tlen, vlen, i;

    sp1 = memchr(l, ' ', n);
    if (sp1 == NULL)
        return fail(h, HFE_REQUEST_LINE, "the request line has no target");
    mlen = (size_t)(sp1 - l);
    sp2 = memchr(sp1 + 1, ' ', n - mlen - 1);
    if (sp2 == NULL)
        return fail(h, HFE_REQUEST_LINE, "the request line has no HTTP version");
    tlen = (size_t)(sp2 - sp1 - 1);
    v = sp2 + 1;
    vlen = n - mlen - tlen - 2;
    if (mlen == 0 || tlen == 0 || memchr(v, ' ', vlen) != NULL)
        return fail(h, HFE_REQUEST_LINE, "the request line needs single spaces");
    for (i = 0; i < mlen; i++) {
        if (!is_tchar(l[i]))
            return fail(h, HFE_REQUEST_LINE, "the method is not a token");
    }
    if (vlen != 8 || memcmp(v, "HTTP/", 5) != 0 || v[5] < '0' || v[5] > '9' || v[6] != '.' ||
        v[7] < '0' || v[7] > '9')
        return fail(h, HFE_REQUEST_LINE, "the request line does not end in HTTP/x.y");
    if (v[5] != '1' || (v[7] != '0' && v[7] != '1'))
        return fail(h, HFE_VERSION, "only HTTP/1.0 and HTTP/1.1 are served");
    h->minor = v[7] - '0';
    for (i = 0; i < N_METHODS; i++) {
        if (strlen(methods[i]) == mlen && memcmp(methods[i], l, mlen) == 0)
            break;
    }
    if (i == N_METHODS)
        return fail(h, HFE_METHOD, "method not allowed");
    h->method = (int)i;
    if (check_target(sp1 + 1, tlen, h->method) != 0)
        return fail(h, HFE_REQUEST_LINE, "the request target is not a plain path");
    h->target_off = start + mlen + 1;
    h->target_len = tlen;
    return HF_NEED_MORE;
}

/* Host's value: reg-name, IPv4 or [IPv6], optional port (RFC 3986). */
static int host_ok(const unsigned char *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = v[i];

        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
            continue;
        if (c == '\0' || strchr("-._~!$&'()*+,;=:[]%", c) == NULL)
            return 0;
    }
    return 1;
}

static int name_is(const unsigned char *name, size_t n, const char *want)
{
    return strlen(want) == n && strncasecmp((const char *)name, want, n) == 0;
}

static int header_line(struct hf_head *h, const char *buf, size_t start, size_t n)
{
    const unsigned char *l = (const unsigned char *)buf + start, *v;
    size_t nlen = 0, vlen;

    if (l[0] == ' ' || l[0] == '\t')
        return fail(h, HFE_HEADER, "folded header lines are not accepted");
    while (nlen < n && l[nlen] != ':') {
        if (!is_tchar(l[nlen]))
            return fail(h, HFE_HEADER,
                        l[nlen] == ' ' || l[nlen] == '\t' ? "whitespace before a header's colon"
                                                          : "a header name is not a token");
        nlen++;
    }
    if (nlen == n || nlen == 0)
        return fail(h, HFE_HEADER, "a header line has no name or no colon");
    v = l + nlen + 1;
    vlen = n - nlen - 1;
    while (vlen > 0 && (v[0] == ' ' || v[0] == '\t')) {
        v++;
        vlen--;
    }
    while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
        vlen--;
    for (size_t i = 0; i < vlen; i++) {
        if (is_ctl(v[i]))
            return fail(h, HFE_HEADER, "a control byte in a header value");
    }
    if (name_is(l, nlen, "content-length")) {
        uint64_t x = 0;

        if (++h->n_content_length > 1)
            return fail(h, HFE_CONTENT_LENGTH, "more than one Content-Length");
        if (vlen == 0 || vlen > 18)
            return fail(h, HFE_CONTENT_LENGTH, "Content-Length is not 1 to 18 digits");
        for (size_t i = 0; i < vlen; i++) {
            if (v[i] < '0' || v[i] > '9')
                return fail(h, HFE_CONTENT_LENGTH, "Content-Length is not plain digits");
            x = x * 10 + (uint64_t)(v[i] - '0');
        }
        h->content_length = x;
    } else if (name_is(l, nlen, "transfer-encoding")) {
        if (++h->n_transfer_encoding > 1)
            return fail(h, HFE_TRANSFER_ENCODING, "more than one Transfer-Encoding");
        if (vlen != 7 || strncasecmp((const char *)v, "chunked", 7) != 0)
            return fail(h, HFE_TRANSFER_ENCODING, "Transfer-Encoding other than chunked");
    } else if (name_is(l, nlen, "host")) {
        if (++h->n_host > 1)
            return fail(h, HFE_HOST, "more than one Host");
        if (!host_ok(v, vlen))
            return fail(h, HFE_HOST, "Host is not a host name");
    } else if (name_is(l, nlen, "expect")) {
        if (vlen != 12 || strncasecmp((const char *)v, "100-continue", 12) != 0)
            return fail(h, HFE_EXPECT, "only Expect: 100-continue is supported");
    }
    return HF_NEED_MORE;
}

/* The empty line: what the head as a whole says about the body. */
static int head_done(struct hf_head *h, const struct hf_limits *lim)
{
    if (h->minor == 1 && h->n_host == 0)
        return fail(h, HFE_HOST, "HTTP/1.1 requires Host");
    if (h->n_transfer_encoding > 0 && h->minor == 0)
        return fail(h, HFE_TRANSFER_ENCODING, "Transfer-Encoding on HTTP/1.0");
    if (h->n_transfer_encoding > 0 && h->n_content_length > 0)
        return fail(h, HFE_TRANSFER_ENCODING, "Transfer-Encoding with Content-Length");
    /* libevent reads no body after HEAD: a body would be taken for the
     * next request. */
    if (h->method == M_HEAD && (h->n_transfer_encoding > 0 || h->content_length > 0))
        return fail(h, HFE_UNEXPECTED_BODY, "a HEAD request has no body");
    if (h->content_length > lim->max_body)
        return fail(h, HFE_BODY_TOO_LARGE, "the body is larger than limits.max_body_bytes");
    if (h->n_transfer_encoding > 0)
        h->body = HF_BODY_CHUNKED;
    else if (h->content_length > 0)
        h->body = HF_BODY_LENGTH;
    else
        h->body = HF_BODY_NONE;
    return HF_DONE;
}

int http_framing_head_feed(struct hf_head *h, const char *buf, size_t len,
                           const struct hf_limits *lim)
{
    const unsigned char *b = (const unsigned char *)buf;
    int rc;

    if (h->error != HFE_NONE)
        return HF_ERROR;
    while (h->pos < len) {
        unsigned char c = b[h->pos];
        int in_request_line = h->lines == 0;

        if (h->pos > h->line_start && b[h->pos - 1] == '\r' && c != '\n')
            return fail(h, in_request_line ? HFE_REQUEST_LINE : HFE_HEADER,
                        "a CR not followed by LF");
        if (c == '\n') {
            size_t n;

            if (h->pos == h->line_start || b[h->pos - 1] != '\r')
                return fail(h, in_request_line ? HFE_REQUEST_LINE : HFE_HEADER,
                            "a line ends in a bare LF");
            n = h->pos - 1 - h->line_start;
            h->pos++;
            if (h->pos > lim->max_head)
                return fail(h, HFE_HEADERS_TOO_LARGE, "the request head is too large");
            if (n == 0 && in_request_line) {
                /* RFC 9112 2.2: empty lines before the request line are
                 * ignored (some clients send CRLF after a body). */
                h->skip = h->line_start = h->pos;
                continue;
            }
            if (n == 0) {
                h->head_len = h->pos - h->skip;
                return head_done(h, lim);
            }
            rc = in_request_line ? request_line(h, buf, h->line_start, n)
                                 : header_line(h, buf, h->line_start, n);
            if (rc == HF_ERROR)
                return rc;
            h->lines++;
            h->line_start = h->pos;
            continue;
        }
        if (c != '\r' && is_ctl(c))
            return fail(h, in_request_line ? HFE_REQUEST_LINE : HFE_HEADER,
                        "a control byte in the request head");
        h->pos++;
        if (in_request_line && h->pos - h->line_start > lim->max_line)
            return fail(h, HFE_URI_TOO_LONG, "the request line is too long");
        if (h->pos > lim->max_head)
            return fail(h, HFE_HEADERS_TOO_LARGE, "the request head is too large");
    }
    return HF_NEED_MORE;
}

/* ---- chunked bodies ----------------------------------------------------- */

enum {
    CS_SIZE,    /* hex digits of a chunk-size */
    CS_SIZE_LF, /* after the CR that ends a chunk-size */
    CS_DATA,
    CS_DATA_CR, /* the CRLF after chunk data */
    CS_DATA_LF,
    CS_LAST_CR, /* after "0\r\n": the empty line that ends the body */
    CS_LAST_LF,
    CS_DONE
};

void http_framing_chunked_init(struct hf_chunked *c)
{
    memset(c, 0, sizeof(*c));
}

static int chunk_fail(struct hf_chunked *c, enum hf_error e, const char *why)
{
    c->error = e;
    c->why = why;
    return HF_ERROR;
}

int http_framing_chunked_feed(struct hf_chunked *c, const char *buf, size_t len, size_t *used,
                              const struct hf_limits *lim)
{
    const unsigned char *b = (const unsigned char *)buf;
    size_t i = 0;

    *used = 0;
    if (c->error != HFE_NONE)
        return HF_ERROR;
    while (i < len && c->state != CS_DONE) {
        unsigned char ch = b[i];

        switch (c->state) {
        case CS_SIZE:
            if (is_hex(ch)) {
                /* 15 hex digits is far beyond any body limit; more could
                 * overflow, and only leading zeros could make them valid. */
                if (++c->digits > 15)
                    return chunk_fail(c, HFE_CHUNK, "a chunk size has too many digits");
                c->size = c->size * 16 + (uint64_t)hex_value(ch);
                if (c->size > lim->max_body || c->total + c->size > lim->max_body)
                    return chunk_fail(c, HFE_BODY_TOO_LARGE,
                                      "the body is larger than limits.max_body_bytes");
            } else if (ch == '\r' && c->digits > 0) {
                c->state = CS_SIZE_LF;
            } else {
                return chunk_fail(c, HFE_CHUNK, "a chunk size is not plain hex digits");
            }
            i++;
            break;
        case CS_SIZE_LF:
            if (ch != '\n')
                return chunk_fail(c, HFE_CHUNK, "a chunk size line does not end in CRLF");
            i++;
            c->total += c->size;
            c->state = c->size == 0 ? CS_LAST_CR : CS_DATA;
            break;
        case CS_DATA: {
            size_t n = len - i;

            if ((uint64_t)n > c->size)
                n = (size_t)c->size;
            c->size -= n;
            i += n;
            if (c->size == 0)
                c->state = CS_DATA_CR;
            break;
        }
        case CS_DATA_CR:
        case CS_LAST_CR:
            if (ch != '\r')
                return chunk_fail(c, HFE_CHUNK,
                                  c->state == CS_LAST_CR ? "trailer fields are not accepted"
                                                         : "chunk data is not followed by CRLF");
            c->state = c->state == CS_DATA_CR ? CS_DATA_LF : CS_LAST_LF;
            i++;
            break;
        case CS_DATA_LF:
        case CS_LAST_LF:
            if (ch != '\n')
                return chunk_fail(c, HFE_CHUNK, "a CR not followed by LF in a chunked body");
            if (c->state == CS_DATA_LF) {
                c->state = CS_SIZE;
                c->digits = 0;
                c->size = 0;
            } else {
                c->state = CS_DONE;
            }
            i++;
            break;
        default:
            break;
        }
        *used = i;
    }
    return c->state == CS_DONE ? HF_DONE : HF_NEED_MORE;
}
