/* test_http_framing.c: the strict request framing check: each RFC 9112
 * rule, the same verdict however the bytes are split, bounds. */
#include "check.h"
#include "http_framing.h"

#include <stdlib.h>
#include <string.h>

static const struct hf_limits lim = {8192, 16384, 1048576};

/* Feeds text whole; returns the verdict, *h filled. */
static int head(const char *text, size_t len, struct hf_head *h)
{
    http_framing_head_init(h);
    return http_framing_head_feed(h, text, len, &lim);
}

#define HEAD(s, h) head((s), sizeof(s) - 1, (h))

/* Feeds text one byte more each time, as a trickling client would. */
static int head_bytewise(const char *text, size_t len, struct hf_head *h)
{
    int rc = HF_NEED_MORE;

    http_framing_head_init(h);
    for (size_t i = 1; i <= len && rc == HF_NEED_MORE; i++)
        rc = http_framing_head_feed(h, text, i, &lim);
    return rc;
}

static void test_good_heads(void)
{
    struct hf_head h;

    CHECK(HEAD("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", &h) == HF_DONE);
    CHECK(h.body == HF_BODY_NONE && h.minor == 1);
    CHECK_STR(http_framing_method_name(h.method), "GET");
    CHECK(h.head_len == 34 && h.pos == 34);
    CHECK(
        HEAD("POST /v1/deletions?a=b HTTP/1.1\r\nHost: gw:8080\r\nContent-Length: 0012\r\n\r\nxyz",
             &h) == HF_DONE);
    CHECK(h.body == HF_BODY_LENGTH && h.content_length == 12 && h.n_content_length == 1);
    CHECK(h.target_len == 17);
    CHECK(HEAD("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:  Chunked \r\n\r\n", &h) ==
          HF_DONE);
    CHECK(h.body == HF_BODY_CHUNKED);
    CHECK(HEAD("GET / HTTP/1.0\r\n\r\n", &h) == HF_DONE);
    CHECK(h.minor == 0);
    CHECK(HEAD("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", &h) == HF_DONE);
    CHECK(HEAD("POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
               &h) == HF_DONE);
    /* Leading empty lines are skipped, not handed on. */
    CHECK(HEAD("\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", &h) == HF_DONE);
    CHECK(h.skip == 4 && h.head_len == 27);
    /* obs-text and HTAB in a value are fine. */
    CHECK(HEAD("GET / HTTP/1.1\r\nHost: x\r\nX-A: a\tb\xe9\r\n\r\n", &h) == HF_DONE);
    CHECK(HEAD("GET / HTTP/1.1\r\nHost: x\r\n", &h) == HF_NEED_MORE);
    CHECK(HEAD("GET / HTTP/1.1\r\nHost: x\r\n\r", &h) == HF_NEED_MORE);
}

static void test_each_rule(void)
{
    static const struct {
        const char *text;
        enum hf_error e;
    } bad[] = {
        {"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
         HFE_CONTENT_LENGTH},
        {"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1, 1\r\n\r\n", HFE_CONTENT_LENGTH},
        {"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", HFE_CONTENT_LENGTH},
        {"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: \r\n\r\n", HFE_CONTENT_LENGTH},
        {"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1234567890123456789\r\n\r\n",
         HFE_CONTENT_LENGTH},
        {"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n", HFE_BODY_TOO_LARGE},
        {"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
         HFE_TRANSFER_ENCODING},
        {"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
         "chunked\r\n\r\n",
         HFE_TRANSFER_ENCODING},
        {"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", HFE_TRANSFER_ENCODING},
        {"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
         HFE_TRANSFER_ENCODING},
        {"GET / HTTP/1.1\r\n\r\n", HFE_HOST},
        {"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", HFE_HOST},
        {"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", HFE_HOST},
        {"GET / HTTP/1.1\r\nHost: x\r\nX-A : b\r\n\r\n", HFE_HEADER},
        {"GET / HTTP/1.1\r\nHost: x\r\n b\r\n\r\n", HFE_HEADER},
        {"GET / HTTP/1.1\r\nHost: x\r\nX-A: b\rc\r\n\r\n", HFE_HEADER},
        {"GET / HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n", HFE_HEADER},
        {"GET / HTTP/1.1\r\nHost: x\r\nX-A: \x1b\r\n\r\n", HFE_HEADER},
        {"GET / HTTP/1.1\r\nHost: x\r\nnocolon\r\n\r\n", HFE_HEADER},
        {"GET / HTTP/1.1\r\nHost: x\r\n: v\r\n\r\n", HFE_HEADER},
        {"GET / HTTP/1.1\r\nHost: x\r\nX(A): v\r\n\r\n", HFE_HEADER},
        {"GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue, x\r\n\r\n", HFE_EXPECT},
        {"HEAD / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n", HFE_UNEXPECTED_BODY},
        {"GET / HTTP/1.3\r\nHost: x\r\n\r\n", HFE_VERSION},
        {"GET / HTTP/3.0\r\nHost: x\r\n\r\n", HFE_VERSION},
        {"GET / HTTP/1.10\r\nHost: x\r\n\r\n", HFE_REQUEST_LINE},
        {"GET / HTTPS/1.1\r\nHost: x\r\n\r\n", HFE_REQUEST_LINE},
        {"GET /\r\n\r\n", HFE_REQUEST_LINE},
        {"GET / HTTP/1.1 \r\nHost: x\r\n\r\n", HFE_REQUEST_LINE},
        {" GET / HTTP/1.1\r\nHost: x\r\n\r\n", HFE_REQUEST_LINE},
        {"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", HFE_REQUEST_LINE},
        {"GET /a\tb HTTP/1.1\r\nHost: x\r\n\r\n", HFE_REQUEST_LINE},
        {"GET /a\x00 HTTP/1.1\r\nHost: x\r\n\r\n", HFE_REQUEST_LINE},
        {"GET /%4 HTTP/1.1\r\nHost: x\r\n\r\n", HFE_REQUEST_LINE},
        {"GET /# HTTP/1.1\r\nHost: x\r\n\r\n", HFE_REQUEST_LINE},
        {"GET * HTTP/1.1\r\nHost: x\r\n\r\n", HFE_REQUEST_LINE},
        {"GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n", HFE_REQUEST_LINE},
        {"PROPFIND / HTTP/1.1\r\nHost: x\r\n\r\n", HFE_METHOD},
        {"get / HTTP/1.1\r\nHost: x\r\n\r\n", HFE_METHOD},
        {"TRACE / HTTP/1.1\r\nHost: x\r\n\r\n", HFE_METHOD},
        {"G@T / HTTP/1.1\r\nHost: x\r\n\r\n", HFE_REQUEST_LINE},
    };
    struct hf_head h;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t len = strlen(bad[i].text);
        int whole, bytewise;
        enum hf_error e;

        /* The NUL case is cut by strlen: give it its real length. */
        if (strstr(bad[i].text, "/a") == bad[i].text + 4 && bad[i].text[6] == '\0')
            len = 30;
        whole = head(bad[i].text, len, &h);
        e = h.error;
        bytewise = head_bytewise(bad[i].text, len, &h);
        if (whole != HF_ERROR || e != bad[i].e || bytewise != HF_ERROR || h.error != e)
            fprintf(stderr, "case %zu: %d/%d error %d/%d, want %d\n", i, whole, bytewise, (int)e,
                    (int)h.error, (int)bad[i].e);
        CHECK(whole == HF_ERROR && e == bad[i].e);
        CHECK(bytewise == HF_ERROR && h.error == e);
        CHECK(h.why != NULL);
    }
    CHECK(http_framing_status(HFE_METHOD) == 405);
    CHECK(http_framing_status(HFE_BODY_TOO_LARGE) == 413);
    CHECK(http_framing_status(HFE_HEADERS_TOO_LARGE) == 431);
    CHECK_STR(http_framing_code(HFE_CHUNK), "invalid_chunk");
}

static void test_limits(void)
{
    struct hf_limits small = {64, 128, 1024};
    char buf[512];
    struct hf_head h;

    /* 100 bytes of a request line whose target alone passes the limit. */
    snprintf(buf, sizeof(buf), "GET /%0150d", 0);
    http_framing_head_init(&h);
    CHECK(http_framing_head_feed(&h, buf, 100, &small) == HF_ERROR);
    CHECK(h.error == HFE_URI_TOO_LONG);
    snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: x\r\nX: %0150d\r\n\r\n", 1);
    http_framing_head_init(&h);
    CHECK(http_framing_head_feed(&h, buf, strlen(buf), &small) == HF_ERROR);
    CHECK(h.error == HFE_HEADERS_TOO_LARGE);
    /* Exactly at the limit is fine. */
    snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    small.max_head = strlen(buf);
    http_framing_head_init(&h);
    CHECK(http_framing_head_feed(&h, buf, strlen(buf), &small) == HF_DONE);
}

/* Feeds a chunked body in pieces of step bytes; returns the verdict and
 * the body's length. */
static int chunked(const char *b, size_t len, size_t step, size_t *body_len, enum hf_error *e)
{
    struct hf_chunked c;
    size_t off = 0, used = 0;
    int rc = HF_NEED_MORE;

    http_framing_chunked_init(&c);
    while (off < len && rc == HF_NEED_MORE) {
        size_t n = len - off < step ? len - off : step;

        rc = http_framing_chunked_feed(&c, b + off, n, &used, &lim);
        off += used;
        if (rc == HF_NEED_MORE && used != n)
            return -2; /* NEED_MORE must consume everything */
    }
    *body_len = off;
    *e = c.error;
    return rc;
}

static void test_chunked(void)
{
    static const char good[] = "5\r\nhello\r\n00A\r\n0123456789\r\n0\r\n\r\nGET /next";
    static const char *const bad[] = {
        "5;ext=1\r\nhello\r\n0\r\n\r\n", "+5\r\nhello\r\n0\r\n\r\n", "0x5\r\nhello\r\n0\r\n\r\n",
        " 5\r\nhello\r\n0\r\n\r\n",      "5 \r\nhello\r\n0\r\n\r\n", "5\nhello\r\n0\r\n\r\n",
        "5\r\nhelloX\r\n0\r\n\r\n",      "5\r\nhello\n0\r\n\r\n",    "\r\n",
        "0\r\nX-Trailer: 1\r\n\r\n",     "5\r\nhello\r\n0\r\n\rX",   "1000000000000000\r\n",
    };
    size_t len;
    enum hf_error e;

    for (size_t step = 1; step <= sizeof(good); step++) {
        REQUIRE(chunked(good, sizeof(good) - 1, step, &len, &e) == HF_DONE);
        CHECK(len == sizeof(good) - 1 - strlen("GET /next"));
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        for (size_t step = 1; step < 8; step++) {
            int rc = chunked(bad[i], strlen(bad[i]), step, &len, &e);

            if (rc != HF_ERROR)
                fprintf(stderr, "chunked case %zu step %zu: %d\n", i, step, rc);
            CHECK(rc == HF_ERROR && (e == HFE_CHUNK || e == HFE_BODY_TOO_LARGE));
        }
    }
    /* Over the body limit, declared in a chunk size or summed. */
    CHECK(chunked("100001\r\n", 8, 3, &len, &e) == HF_ERROR && e == HFE_BODY_TOO_LARGE);
    {
        size_t n = 2 * 600000 + 64;
        char *b = malloc(n);
        size_t off;

        CHECK(b != NULL);
        if (b != NULL) {
            off = (size_t)snprintf(b, n, "%x\r\n", 600000);
            memset(b + off, 'x', 600000);
            off += 600000;
            off += (size_t)snprintf(b + off, n - off, "\r\n%x\r\n", 600000);
            CHECK(chunked(b, off, 4096, &len, &e) == HF_ERROR && e == HFE_BODY_TOO_LARGE);
            free(b);
        }
    }
}

int main(void)
{
    test_good_heads();
    test_each_rule();
    test_limits();
    test_chunked();
    return check_done();
}
