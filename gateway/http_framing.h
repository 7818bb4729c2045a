/*
 * http_framing.h: the strict HTTP/1.x request framing check that runs on
 * the raw bytes of a connection before libevent parses them (RFC 9112).
 *
 * A proxy in front of the gateway and libevent must agree on where each
 * request starts and ends; where the two could disagree (two
 * Content-Lengths, an odd Transfer-Encoding, a NUL that libevent cuts a
 * value at) the request is refused instead. Two incremental parsers, both
 * pure functions of the bytes seen so far: one for the request head, one
 * for a chunked body. Neither allocates.
 */
#ifndef DG_HTTP_FRAMING_H
#define DG_HTTP_FRAMING_H

#include <stddef.h>
#include <stdint.h>

enum hf_error {
    HFE_NONE,
    HFE_REQUEST_LINE,      /* 400 invalid_request_line */
    HFE_VERSION,           /* 400 unsupported_http_version */
    HFE_METHOD,            /* 405 method_not_allowed */
    HFE_URI_TOO_LONG,      /* 414 uri_too_long */
    HFE_HEADERS_TOO_LARGE, /* 431 headers_too_large */
    HFE_HEADER,            /* 400 invalid_header */
    HFE_CONTENT_LENGTH,    /* 400 invalid_content_length */
    HFE_TRANSFER_ENCODING, /* 400 invalid_transfer_encoding */
    HFE_HOST,              /* 400 invalid_host */
    HFE_EXPECT,            /* 417 expectation_failed */
    HFE_UNEXPECTED_BODY,   /* 400 unexpected_body */
    HFE_BODY_TOO_LARGE,    /* 413 body_too_large */
    HFE_CHUNK,             /* 400 invalid_chunk */
    HFE_COUNT
};

/* Feed results. */
#define HF_NEED_MORE 0
#define HF_DONE 1
#define HF_ERROR (-1)

struct hf_limits {
    size_t max_line; /* request line, CRLF included (414 above) */
    size_t max_head; /* whole head, leading empty lines included (431 above) */
    uint64_t max_body;
};

enum hf_body { HF_BODY_NONE, HF_BODY_LENGTH, HF_BODY_CHUNKED };

struct hf_head {
    /* Progress: everything before pos has been checked. */
    size_t pos;
    size_t line_start;
    size_t skip; /* leading empty lines, not part of the head handed on */
    int lines;   /* complete lines of the head; 0 = request line pending */
    /* What the head says, once HF_DONE (target and method as soon as the
     * request line was read). */
    size_t head_len; /* from skip to the end of the empty line */
    size_t target_off, target_len;
    int method; /* index into http_framing_method_name */
    int minor;  /* HTTP/1.minor */
    int n_content_length, n_transfer_encoding, n_host;
    uint64_t content_length;
    enum hf_body body;
    enum hf_error error;
    const char *why; /* a short human reason for error; static text */
};

struct hf_chunked {
    int state;
    int digits;
    uint64_t size; /* of the chunk being read */
    uint64_t total;
    enum hf_error error;
    const char *why;
};

void http_framing_head_init(struct hf_head *h);

/* buf holds every byte of the connection since the head started (the
 * caller appends; the prefix never changes). Checks the bytes from h->pos
 * on and returns HF_NEED_MORE, HF_DONE (the head ends at buf[h->pos]; what
 * follows is the body or the next request) or HF_ERROR (h->error). */
int http_framing_head_feed(struct hf_head *h, const char *buf, size_t len,
                           const struct hf_limits *lim);

void http_framing_chunked_init(struct hf_chunked *c);

/* Consumes buf[0..len) of a chunked body; *used = bytes that belong to it.
 * HF_NEED_MORE (all consumed), HF_DONE (the body ends after *used bytes)
 * or HF_ERROR (c->error; the first *used bytes were valid). Trailer fields
 * are refused: nothing in the gateway reads them, and a proxy may drop or
 * merge them differently. */
int http_framing_chunked_feed(struct hf_chunked *c, const char *buf, size_t len, size_t *used,
                              const struct hf_limits *lim);

/* The answer for an error: HTTP status and stable error code. */
int http_framing_status(enum hf_error e);
const char *http_framing_code(enum hf_error e);

/* The methods that get past the framing check, by index. */
const char *http_framing_method_name(int method);

#endif
