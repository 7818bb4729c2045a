/*
 * verify.h: the two signature schemes the gateway accepts, and the signing
 * side of each (for `deletion-gateway sign` and the tests).
 *
 * Extend webhooks (extend-api.md section 1):
 *   x-extend-request-timestamp: Unix seconds
 *   x-extend-request-signature: hex(HMAC-SHA256(secret, "v0:" ts ":" body))
 *   key = the whole secret string ("wss_..." included), hex in either case,
 *   exactly 32 bytes once decoded, compared in constant time.
 *
 * Internal clients, Standard Webhooks (standardwebhooks.com):
 *   webhook-id, webhook-timestamp (Unix seconds), webhook-signature: one or
 *   more space-separated "v1,<base64(HMAC-SHA256(key, id "." ts "." body))>";
 *   key = base64-decoded text after "whsec_" (the whole string decoded when
 *   it has no prefix). Any one matching signature under any one of the
 *   client's secrets is enough, so keys rotate without a gap.
 *
 * Both are pure functions of their inputs; the clock is passed in.
 */
#ifndef DG_VERIFY_H
#define DG_VERIFY_H

#include <stddef.h>
#include <stdint.h>

#include "secret.h"

enum verify_result {
    VERIFY_OK = 0,
    VERIFY_MALFORMED,     /* header missing, empty, or not in the scheme's format */
    VERIFY_BAD_SIGNATURE, /* well formed, but no secret produces it */
    VERIFY_STALE,         /* timestamp older than the allowed age */
    VERIFY_FUTURE,        /* timestamp too far ahead */
};

/* Stable error code for a result: "invalid_signature", "stale_timestamp"... */
const char *verify_result_code(enum verify_result r);

enum verify_result verify_extend_signature(const struct secret *secrets, int n_secrets,
                                           const char *timestamp_header,
                                           const char *signature_header, const void *body,
                                           size_t body_len, int64_t now_s, int max_age_s,
                                           int max_future_s);

enum verify_result verify_standard_webhook(const struct secret *secrets, int n_secrets,
                                           const char *id_header, const char *timestamp_header,
                                           const char *signature_header, const void *body,
                                           size_t body_len, int64_t now_s, int tolerance_s);

/* Writes 64 lowercase hex characters and a NUL into hex_out. 0 or -1. */
int verify_sign_extend(const void *secret, size_t secret_len, int64_t timestamp, const void *body,
                       size_t body_len, char hex_out[65]);

/* Writes "v1,<base64>" into out. secret is the client's "whsec_..." text.
 * 0, or -1 for a secret that is not valid base64 or a short buffer. */
int verify_sign_standard(const char *secret, const char *id, int64_t timestamp, const void *body,
                         size_t body_len, char *out, size_t outlen);

#endif
