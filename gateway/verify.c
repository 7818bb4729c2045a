/*
 * verify.c: the two signature schemes (see verify.h).
 *
 *   parse_timestamp, hex_decode_32, b64_decode, b64_encode: strict parsers
 *   verify_extend_signature / verify_sign_extend: Extend's "v0" scheme
 *   verify_standard_webhook / verify_sign_standard: Standard Webhooks "v1"
 *
 * Both verifiers check the signature before the time window. A sender
 * without a secret therefore gets the same answer (invalid_signature) for
 * any timestamp and learns nothing about our clock or the window; only a
 * correctly signed request can be told that it is stale or early.
 */
#include "verify.h"

#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "hmac.h"
#include "util.h"

#define MAC_LEN ((size_t)HMAC_SHA256_LEN)
#define TS_DIGITS_MAX 12
#define STD_SIG_HEADER_MAX 4096
#define STD_SIG_ENTRIES_MAX 16
#define STD_ID_MAX 255
#define STD_PREFIX "whsec_"
/* A decoded Standard Webhooks key; the spec's keys are 24..64 bytes. */
#define STD_KEY_MAX 256

const char *verify_result_code(enum verify_result r)
{
    switch (r) {
    case VERIFY_OK:
        return "ok";
    case VERIFY_MALFORMED:
        return "malformed_signature";
    case VERIFY_BAD_SIGNATURE:
        return "invalid_signature";
    case VERIFY_STALE:
        return "stale_timestamp";
    case VERIFY_FUTURE:
        return "future_timestamp";
    }
    return "invalid_signature";
}

/* 1..12 ASCII digits and nothing else: no sign, no spaces, no exponent.
 * Twelve digits reach the year 33658, far beyond any honest clock, and
 * keep every later subtraction far from overflow. */
static int parse_timestamp(const char *s, int64_t *out)
{
    int64_t v = 0;
    size_t i;

    if (s == NULL)
        return -1;
    for (i = 0; s[i] != '\0'; i++) {
        if (i >= TS_DIGITS_MAX || s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (i == 0)
        return -1;
    *out = v;
    return 0;
}

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Exactly 64 hex digits, either case, into 32 bytes. */
static int hex_decode_32(const char *s, unsigned char out[MAC_LEN])
{
    for (size_t i = 0; i < MAC_LEN; i++) {
        int hi, lo;

        if (s[2 * i] == '\0' || s[2 * i + 1] == '\0')
            return -1;
        hi = hex_value((unsigned char)s[2 * i]);
        lo = hex_value((unsigned char)s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return s[2 * MAC_LEN] == '\0' ? 0 : -1;
}

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Standard base64 (RFC 4648 section 4) with its padding, nothing else:
 * no whitespace, no URL alphabet. Returns the decoded length or -1. */
static long b64_decode(const char *s, size_t len, unsigned char *out, size_t outlen)
{
    size_t n = 0;

    if (len == 0 || len % 4 != 0)
        return -1;
    for (size_t i = 0; i < len; i += 4) {
        int v[4], pad = 0;
        int last = i + 4 == len;

        for (int k = 0; k < 4; k++) {
            unsigned char c = (unsigned char)s[i + k];

            if (c == '=' && last && k >= 2) {
                pad++;
                v[k] = 0;
                continue;
            }
            if (pad > 0)
                return -1; /* data after padding */
            v[k] = b64_value(c);
            if (v[k] < 0)
                return -1;
        }
        if (n + 3 - (size_t)pad > outlen)
            return -1;
        out[n++] = (unsigned char)(v[0] << 2 | v[1] >> 4);
        if (pad < 2)
            out[n++] = (unsigned char)((v[1] & 15) << 4 | v[2] >> 2);
        if (pad < 1)
            out[n++] = (unsigned char)((v[2] & 3) << 6 | v[3]);
    }
    return (long)n;
}

/* out needs 4 * ceil(len / 3) + 1 bytes; returns -1 if it has less. */
static int b64_encode(const unsigned char *in, size_t len, char *out, size_t outlen)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = 0;

    if (outlen < 4 * ((len + 2) / 3) + 1)
        return -1;
    for (size_t i = 0; i < len; i += 3) {
        unsigned v = (unsigned)in[i] << 16;

        if (i + 1 < len)
            v |= (unsigned)in[i + 1] << 8;
        if (i + 2 < len)
            v |= in[i + 2];
        out[n++] = alphabet[v >> 18 & 63];
        out[n++] = alphabet[v >> 12 & 63];
        out[n++] = alphabet[v >> 6 & 63];
        out[n++] = alphabet[v & 63];
        if (i + 1 >= len)
            out[n - 2] = '=';
        if (i + 2 >= len)
            out[n - 1] = '=';
    }
    out[n] = '\0';
    return 0;
}

static enum verify_result check_window(int64_t ts, int64_t now_s, int max_age_s, int max_future_s)
{
    if (now_s - ts > max_age_s)
        return VERIFY_STALE;
    if (ts - now_s > max_future_s)
        return VERIFY_FUTURE;
    return VERIFY_OK;
}

static int extend_mac(const unsigned char *key, size_t key_len, const char *ts, const void *body,
                      size_t body_len, unsigned char out[MAC_LEN])
{
    struct hmac_piece pieces[4] = {{"v0:", 3}, {ts, strlen(ts)}, {":", 1}, {body, body_len}};

    return hmac_sha256(key, key_len, pieces, 4, out);
}

enum verify_result verify_extend_signature(const struct secret *secrets, int n_secrets,
                                           const char *timestamp_header,
                                           const char *signature_header, const void *body,
                                           size_t body_len, int64_t now_s, int max_age_s,
                                           int max_future_s)
{
    unsigned char got[MAC_LEN], want[MAC_LEN];
    int64_t ts;
    int matched = 0;

    if (body == NULL && body_len > 0)
        return VERIFY_MALFORMED;
    if (parse_timestamp(timestamp_header, &ts) != 0 || signature_header == NULL ||
        hex_decode_32(signature_header, got) != 0)
        return VERIFY_MALFORMED;
    if (n_secrets > SECRET_LIST_MAX)
        n_secrets = SECRET_LIST_MAX;
    /* Every secret is tried, even after a match, so the time taken does
     * not tell which secret of a rotation pair signed the request. */
    for (int i = 0; i < n_secrets; i++) {
        if (extend_mac(secrets[i].value, secrets[i].len, timestamp_header, body, body_len, want) !=
            0)
            continue;
        if (CRYPTO_memcmp(got, want, MAC_LEN) == 0)
            matched = 1;
    }
    secret_cleanse(want, sizeof(want));
    if (!matched)
        return VERIFY_BAD_SIGNATURE;
    return check_window(ts, now_s, max_age_s, max_future_s);
}

int verify_sign_extend(const void *secret, size_t secret_len, int64_t timestamp, const void *body,
                       size_t body_len, char hex_out[65])
{
    unsigned char mac[MAC_LEN];
    char ts[24];

    if (timestamp < 0 || (body == NULL && body_len > 0))
        return -1;
    snprintf(ts, sizeof(ts), "%lld", (long long)timestamp);
    if (extend_mac(secret, secret_len, ts, body, body_len, mac) != 0)
        return -1;
    util_hex(mac, MAC_LEN, hex_out);
    secret_cleanse(mac, sizeof(mac));
    return 0;
}

/* The client's key: base64 after "whsec_", or the whole text decoded when
 * there is no prefix. Returns the key length, or -1. */
static long standard_key(const unsigned char *secret, size_t len, unsigned char *out, size_t outlen)
{
    const char *s = (const char *)secret;
    size_t plen = strlen(STD_PREFIX);

    if (s == NULL)
        return -1;
    if (len >= plen && memcmp(s, STD_PREFIX, plen) == 0) {
        s += plen;
        len -= plen;
    }
    return b64_decode(s, len, out, outlen);
}

static int standard_mac(const unsigned char *key, size_t key_len, const char *id, const char *ts,
                        const void *body, size_t body_len, unsigned char out[MAC_LEN])
{
    struct hmac_piece pieces[5] = {
        {id, strlen(id)}, {".", 1}, {ts, strlen(ts)}, {".", 1}, {body, body_len}};

    return hmac_sha256(key, key_len, pieces, 5, out);
}

/* webhook-id: 1..255 characters of [A-Za-z0-9_.:-]. It becomes the
 * idempotency key, so nothing that could confuse a log or a path. */
static int standard_id_ok(const char *id)
{
    size_t i;

    if (id == NULL)
        return 0;
    for (i = 0; id[i] != '\0'; i++) {
        unsigned char c = (unsigned char)id[i];

        if (i >= STD_ID_MAX)
            return 0;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == ':' || c == '-'))
            return 0;
    }
    return i > 0;
}

enum verify_result verify_standard_webhook(const struct secret *secrets, int n_secrets,
                                           const char *id_header, const char *timestamp_header,
                                           const char *signature_header, const void *body,
                                           size_t body_len, int64_t now_s, int tolerance_s)
{
    unsigned char want[SECRET_LIST_MAX][MAC_LEN], key[STD_KEY_MAX], got[48];
    int have[SECRET_LIST_MAX] = {0};
    int well_formed = 0, matched = 0, examined = 0;
    enum verify_result result;
    const char *p;
    int64_t ts;

    if (body == NULL && body_len > 0)
        return VERIFY_MALFORMED;
    if (!standard_id_ok(id_header) || parse_timestamp(timestamp_header, &ts) != 0 ||
        signature_header == NULL || strnlen(signature_header, STD_SIG_HEADER_MAX + 1) == 0 ||
        strnlen(signature_header, STD_SIG_HEADER_MAX + 1) > STD_SIG_HEADER_MAX)
        return VERIFY_MALFORMED;
    if (n_secrets > SECRET_LIST_MAX)
        n_secrets = SECRET_LIST_MAX;
    for (int i = 0; i < n_secrets; i++) {
        long klen = standard_key(secrets[i].value, secrets[i].len, key, sizeof(key));

        have[i] = klen > 0 && standard_mac(key, (size_t)klen, id_header, timestamp_header, body,
                                           body_len, want[i]) == 0;
    }
    secret_cleanse(key, sizeof(key));

    /* Entries are "version,signature" separated by spaces; other versions
     * (v1a asymmetric signatures...) are skipped, not refused. */
    p = signature_header;
    while (*p != '\0' && examined < STD_SIG_ENTRIES_MAX) {
        const char *end, *comma;

        while (*p == ' ')
            p++;
        if (*p == '\0')
            break;
        end = strchr(p, ' ');
        if (end == NULL)
            end = p + strlen(p);
        examined++;
        comma = memchr(p, ',', (size_t)(end - p));
        if (comma != NULL && comma - p == 2 && memcmp(p, "v1", 2) == 0) {
            long glen = b64_decode(comma + 1, (size_t)(end - comma - 1), got, sizeof(got));
            if (glen == MAC_LEN) {
                well_formed = 1;
                for (int i = 0; i < n_secrets; i++) {
                    if (have[i] && CRYPTO_memcmp(got, want[i], MAC_LEN) == 0)
                        matched = 1;
                }
            }
        }
        p = end;
    }
    secret_cleanse(want, sizeof(want));
    if (matched)
        result = check_window(ts, now_s, tolerance_s, tolerance_s);
    else
        result = well_formed ? VERIFY_BAD_SIGNATURE : VERIFY_MALFORMED;
    return result;
}

int verify_sign_standard(const char *secret, const char *id, int64_t timestamp, const void *body,
                         size_t body_len, char *out, size_t outlen)
{
    unsigned char key[STD_KEY_MAX], mac[MAC_LEN];
    char ts[24];
    long klen;
    int rc = -1;

    if (secret == NULL || id == NULL || timestamp < 0 || (body == NULL && body_len > 0) ||
        outlen < 4)
        goto fail;
    klen = standard_key((const unsigned char *)secret, strlen(secret), key, sizeof(key));
    if (klen <= 0)
        goto fail;
    snprintf(ts, sizeof(ts), "%lld", (long long)timestamp);
    if (standard_mac(key, (size_t)klen, id, ts, body, body_len, mac) != 0)
        goto fail;
    memcpy(out, "v1,", 3);
    if (b64_encode(mac, MAC_LEN, out + 3, outlen - 3) != 0)
        goto fail;
    rc = 0;
fail:
    secret_cleanse(key, sizeof(key));
    secret_cleanse(mac, sizeof(mac));
    if (rc != 0 && out != NULL && outlen > 0)
        out[0] = '\0';
    return rc;
}
