/*
 * fuzz_upstream_answer.c: libFuzzer target for what Extend (or anything
 * pretending to be it) answers: header lines as libcurl hands them over
 * (x-extend-request-id, Retry-After, X-RateLimit-Reset), the retry delay
 * worked out from the two hints, and the JSON error body. The delay must
 * stay within its documented bounds whatever the server says.
 *
 * Input: header lines up to the first empty line, then the body.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "retry.h"
#include "upstream.h"

#define NOW_MS 1795944904000LL

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct upstream_result res;
    const char *p = (const char *)data, *end = p + size, *nl;
    int64_t d;

    memset(&res, 0, sizeof(res));
    while (p < end) {
        nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL)
            nl = end;
        if (nl == p || (nl == p + 1 && p[0] == '\r')) {
            p = nl < end ? nl + 1 : end;
            break;
        }
        upstream_parse_header(p, (size_t)(nl < end ? nl + 1 - p : nl - p), &res);
        p = nl < end ? nl + 1 : end;
    }
    upstream_parse_error_body(p, (size_t)(end - p), &res);
    if (memchr(res.retry_after, '\0', sizeof(res.retry_after)) == NULL ||
        memchr(res.error_code, '\0', sizeof(res.error_code)) == NULL ||
        memchr(res.error_message, '\0', sizeof(res.error_message)) == NULL)
        abort();
    if (retry_parse_retry_after(res.retry_after, NOW_MS, &d) == 0 && d < 0)
        abort();
    if (retry_parse_ratelimit_reset(res.ratelimit_reset, NOW_MS, &d) == 0 && d < 0)
        abort();
    d = retry_next_delay_ms(res.retry_after[0] ? res.retry_after : NULL,
                            res.ratelimit_reset[0] ? res.ratelimit_reset : NULL, 3, 1000, 300000,
                            NOW_MS, 12345);
    if (d < 1 || d > 3600000)
        abort();
    return 0;
}
