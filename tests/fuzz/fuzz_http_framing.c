/*
 * fuzz_http_framing.c: libFuzzer target for the request framing check
 * (http_framing.c). Besides memory safety it checks the property the
 * gateway relies on: the verdict does not depend on how the bytes are
 * split (one client sends a request whole, another a byte at a time).
 *
 * Input: one byte choosing split points, then the raw connection bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http_framing.h"

static const struct hf_limits lim = {8192, 16384, 1048576};

static int head_split(const char *b, size_t n, size_t step, struct hf_head *h)
{
    int rc = HF_NEED_MORE;
    size_t len = 0;

    http_framing_head_init(h);
    while (rc == HF_NEED_MORE && len < n) {
        len = len + step < n ? len + step : n;
        rc = http_framing_head_feed(h, b, len, &lim);
    }
    return rc;
}

static int chunked_split(const char *b, size_t n, size_t step, size_t *body, enum hf_error *e)
{
    struct hf_chunked c;
    size_t off = 0, used;
    int rc = HF_NEED_MORE;

    http_framing_chunked_init(&c);
    while (rc == HF_NEED_MORE && off < n) {
        size_t k = n - off < step ? n - off : step;

        rc = http_framing_chunked_feed(&c, b + off, k, &used, &lim);
        if (used > k || (rc == HF_NEED_MORE && used != k))
            abort();
        off += used;
    }
    *body = off;
    *e = c.error;
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct hf_head a, b;
    size_t step, n, body_a, body_b;
    const char *p;
    enum hf_error ea, eb;
    int ra, rb;

    if (size < 1)
        return 0;
    step = (size_t)(data[0] % 17) + 1;
    p = (const char *)data + 1;
    n = size - 1;
    ra = head_split(p, n, n > 0 ? n : 1, &a);
    rb = head_split(p, n, step, &b);
    if (ra != rb || a.error != b.error ||
        (ra == HF_DONE &&
         (a.pos != b.pos || a.body != b.body || a.content_length != b.content_length)))
        abort();
    if (ra == HF_DONE) {
        if (a.pos > n || a.skip + a.head_len != a.pos || a.head_len > lim.max_head)
            abort();
        if (a.body == HF_BODY_CHUNKED) {
            ra = chunked_split(p + a.pos, n - a.pos, n, &body_a, &ea);
            rb = chunked_split(p + a.pos, n - a.pos, step, &body_b, &eb);
            if (ra != rb || ea != eb || (ra == HF_DONE && body_a != body_b))
                abort();
        }
    }
    if (ra == HF_ERROR && http_framing_code(a.error) == NULL)
        abort();
    return 0;
}
