/*
 * audit_line.c: the mac of a line and checking one line (see audit.h for
 * the format). The writer builds lines by hand (audit.c); reading them
 * back uses jansson.
 */
#include "audit_int.h"

#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "secret.h"
#include "util.h"

const char audit_zero_mac[65] = "0000000000000000000000000000000000000000000000000000000000000000";

int audit_line_mac(const unsigned char *key, size_t key_len, const char *data, size_t len,
                   char out[65])
{
    struct hmac_piece piece = {data, len};
    unsigned char md[HMAC_SHA256_LEN];
    int rc = hmac_sha256(key, key_len, &piece, 1, md);

    if (rc == 0)
        util_hex(md, HMAC_SHA256_LEN, out);
    secret_cleanse(md, sizeof(md));
    return rc;
}

int audit_line_mac_keyed(const struct hmac_key *k, const char *data, size_t len, char out[65])
{
    unsigned char md[HMAC_SHA256_LEN];
    int rc = hmac_key_sign(k, data, len, md);

    if (rc == 0)
        util_hex(md, HMAC_SHA256_LEN, out);
    secret_cleanse(md, sizeof(md));
    return rc;
}

int audit_line_hex64(const char *s, size_t len)
{
    if (len != 64)
        return 0;
    for (size_t i = 0; i < 64; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    }
    return 1;
}

uint64_t audit_line_seq(const char *line, size_t len)
{
    static const char prefix[] = "{\"seq\":";
    uint64_t v = 0;
    size_t i = sizeof(prefix) - 1;

    if (len < i || memcmp(line, prefix, i) != 0)
        return 0;
    for (; i < len && line[i] >= '0' && line[i] <= '9' && v < UINT64_MAX / 10 - 10; i++)
        v = v * 10 + (uint64_t)(line[i] - '0');
    return v;
}

int audit_line_check(const char *line, size_t len, const unsigned char *key, size_t key_len,
                     uint64_t *seq, char prev[65], char mac[65], const char **why)
{
    char want[65];
    const char *tag;
    json_t *root = NULL, *jseq, *jprev, *jmac, *jtime, *jevent;
    json_error_t jerr;
    int rc = -1;

    if (len < MAC_SUFFIX_LEN + 2 || line[0] != '{' || line[len - 2] != '"' ||
        line[len - 1] != '}') {
        *why = "malformed line";
        goto fail;
    }
    tag = line + len - MAC_SUFFIX_LEN;
    if (memcmp(tag, MAC_TAG, sizeof(MAC_TAG) - 1) != 0 ||
        !audit_line_hex64(tag + sizeof(MAC_TAG) - 1, 64)) {
        *why = "malformed line: no mac at its end";
        goto fail;
    }
    if (audit_line_mac(key, key_len, line, (size_t)(tag - line), want) != 0) {
        *why = "cannot compute mac";
        goto fail;
    }
    if (CRYPTO_memcmp(want, tag + sizeof(MAC_TAG) - 1, 64) != 0) {
        *why = "mac mismatch";
        goto fail;
    }
    root = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
    jseq = json_object_get(root, "seq");
    jprev = json_object_get(root, "prev");
    jmac = json_object_get(root, "mac");
    jtime = json_object_get(root, "time");
    jevent = json_object_get(root, "event");
    if (!json_is_object(root) || !json_is_integer(jseq) || json_integer_value(jseq) < 1 ||
        !json_is_string(jprev) ||
        !audit_line_hex64(json_string_value(jprev), json_string_length(jprev)) ||
        !json_is_string(jmac) || !json_is_string(jtime) || !json_is_string(jevent)) {
        *why = "malformed record";
        goto fail;
    }
    *seq = (uint64_t)json_integer_value(jseq);
    memcpy(prev, json_string_value(jprev), 65);
    memcpy(mac, want, 65);
    rc = 0;
fail:
    json_decref(root);
    return rc;
}
