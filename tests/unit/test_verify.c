/*
 * test_verify.c: both signature schemes against an independent
 * implementation (the openssl command line), one published Standard
 * Webhooks vector, and every malformed, rotated, tampered and boundary case.
 */
#include "check.h"
#include "verify.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EXT_SECRET "wss_test_Zm9vYmFyYmF6"
#define EXT_OTHER "wss_other_secret_value"
#define STD_SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define STD_OTHER "whsec_c2Vjb25kLXNlY3JldC1mb3ItdGVzdHM="

static const char BODY[] = "{\"eventId\":\"evt_1\",\"x\":\"a\0b\n\"}";
#define BODY_LEN (sizeof(BODY) - 1) /* a NUL and a newline inside, on purpose */

static struct secret mk_secret(const char *s)
{
    struct secret sec = {NULL, (unsigned char *)s, strlen(s)};
    return sec;
}

/* Runs cmd and reads its first line into out. 0 or -1. */
static int run(const char *cmd, char *out, size_t outlen)
{
    FILE *p = popen(cmd, "r");
    int ok;

    if (p == NULL)
        return -1;
    ok = fgets(out, (int)outlen, p) != NULL;
    if (pclose(p) != 0 || !ok)
        return -1;
    out[strcspn(out, "\r\n")] = '\0';
    return 0;
}

/* Writes the concatenation of up to five pieces to a fresh temp file. */
static int write_tmp(char path[64], const char *a, const char *b, const char *c, const char *d,
                     const void *body, size_t body_len)
{
    const char *parts[4] = {a, b, c, d};
    FILE *f;
    int fd;

    strcpy(path, "/tmp/test_verify_XXXXXX");
    fd = mkstemp(path);
    if (fd < 0 || (f = fdopen(fd, "wb")) == NULL)
        return -1;
    for (int i = 0; i < 4; i++)
        fputs(parts[i], f);
    fwrite(body, 1, body_len, f);
    return fclose(f);
}

/* hex HMAC the way an Extend sender would compute it, via openssl. */
static int openssl_extend(const char *secret, const char *ts, const void *body, size_t len,
                          char hex[65])
{
    char path[64], cmd[256], line[256];
    int rc;

    if (write_tmp(path, "v0:", ts, ":", "", body, len) != 0)
        return -1;
    snprintf(cmd, sizeof(cmd), "openssl dgst -sha256 -hmac '%s' -r %s", secret, path);
    rc = run(cmd, line, sizeof(line));
    unlink(path);
    if (rc != 0 || strlen(line) < 64)
        return -1;
    memcpy(hex, line, 64);
    hex[64] = '\0';
    return 0;
}

/* "v1,<base64>" via openssl: the key is base64-decoded by openssl too. */
static int openssl_standard(const char *whsec, const char *id, const char *ts, const void *body,
                            size_t len, char *out, size_t outlen)
{
    char path[64], cmd[512], keyhex[256], line[128];
    int rc;

    snprintf(cmd, sizeof(cmd),
             "printf '%%s' '%s' | openssl base64 -d -A | od -An -tx1 | tr -d ' \\n'",
             whsec + strlen("whsec_"));
    if (run(cmd, keyhex, sizeof(keyhex)) != 0 || keyhex[0] == '\0')
        return -1;
    if (write_tmp(path, id, ".", ts, ".", body, len) != 0)
        return -1;
    snprintf(cmd, sizeof(cmd),
             "openssl dgst -sha256 -mac HMAC -macopt hexkey:%s -binary %s | openssl base64 -A",
             keyhex, path);
    rc = run(cmd, line, sizeof(line));
    unlink(path);
    if (rc != 0)
        return -1;
    if (strlen(line) + 4 > outlen)
        return -1;
    snprintf(out, outlen, "v1,%s", line);
    return 0;
}

static enum verify_result ext(const struct secret *s, int n, const char *ts, const char *sig,
                              const void *body, size_t len, int64_t now)
{
    return verify_extend_signature(s, n, ts, sig, body, len, now, 300, 60);
}

static void test_result_codes_are_stable(void)
{
    CHECK_STR(verify_result_code(VERIFY_OK), "ok");
    CHECK_STR(verify_result_code(VERIFY_MALFORMED), "malformed_signature");
    CHECK_STR(verify_result_code(VERIFY_BAD_SIGNATURE), "invalid_signature");
    CHECK_STR(verify_result_code(VERIFY_STALE), "stale_timestamp");
    CHECK_STR(verify_result_code(VERIFY_FUTURE), "future_timestamp");
}

static void test_extend_sign_matches_openssl(void)
{
    char mine[65], theirs[65];

    REQUIRE(verify_sign_extend(EXT_SECRET, strlen(EXT_SECRET), 1795944904, BODY, BODY_LEN, mine) ==
            0);
    REQUIRE(openssl_extend(EXT_SECRET, "1795944904", BODY, BODY_LEN, theirs) == 0);
    CHECK_STR(mine, theirs);
    CHECK(strlen(mine) == 64);
    /* An empty body is still signed ("v0:ts:"). */
    REQUIRE(verify_sign_extend(EXT_SECRET, strlen(EXT_SECRET), 7, "", 0, mine) == 0);
    REQUIRE(openssl_extend(EXT_SECRET, "7", "", 0, theirs) == 0);
    CHECK_STR(mine, theirs);
}

static void test_extend_accepts_lower_and_upper_hex(void)
{
    struct secret s = mk_secret(EXT_SECRET);
    char hex[65], upper[65];
    const int64_t now = 1795944904;

    REQUIRE(openssl_extend(EXT_SECRET, "1795944904", BODY, BODY_LEN, hex) == 0);
    CHECK(ext(&s, 1, "1795944904", hex, BODY, BODY_LEN, now) == VERIFY_OK);
    for (int i = 0; i < 65; i++)
        upper[i] = (hex[i] >= 'a' && hex[i] <= 'f') ? (char)(hex[i] - 32) : hex[i];
    CHECK(strcmp(upper, hex) != 0);
    CHECK(ext(&s, 1, "1795944904", upper, BODY, BODY_LEN, now) == VERIFY_OK);
}

static void test_extend_refuses_malformed_signatures(void)
{
    struct secret s = mk_secret(EXT_SECRET);
    char hex[65], buf[80];
    const int64_t now = 1795944904;

    REQUIRE(openssl_extend(EXT_SECRET, "1795944904", BODY, BODY_LEN, hex) == 0);
    memcpy(buf, hex, 63);
    buf[63] = '\0';
    CHECK(ext(&s, 1, "1795944904", buf, BODY, BODY_LEN, now) == VERIFY_MALFORMED);
    snprintf(buf, sizeof(buf), "%s0", hex);
    CHECK(ext(&s, 1, "1795944904", buf, BODY, BODY_LEN, now) == VERIFY_MALFORMED);
    snprintf(buf, sizeof(buf), "%s", hex);
    buf[10] = 'g';
    CHECK(ext(&s, 1, "1795944904", buf, BODY, BODY_LEN, now) == VERIFY_MALFORMED);
    snprintf(buf, sizeof(buf), " %s", hex);
    buf[64] = '\0';
    CHECK(ext(&s, 1, "1795944904", buf, BODY, BODY_LEN, now) == VERIFY_MALFORMED);
    snprintf(buf, sizeof(buf), "sha256=%s", hex);
    CHECK(ext(&s, 1, "1795944904", buf, BODY, BODY_LEN, now) == VERIFY_MALFORMED);
    CHECK(ext(&s, 1, "1795944904", "", BODY, BODY_LEN, now) == VERIFY_MALFORMED);
    CHECK(ext(&s, 1, "1795944904", NULL, BODY, BODY_LEN, now) == VERIFY_MALFORMED);
}

static void test_extend_wrong_secret_rotation_and_tampering(void)
{
    struct secret good = mk_secret(EXT_SECRET), other = mk_secret(EXT_OTHER);
    struct secret both[2] = {other, good}, unset = {NULL, NULL, 0};
    struct secret with_unset[2] = {unset, good};
    char hex[65], body[sizeof(BODY)];
    const int64_t now = 1795944904;

    REQUIRE(openssl_extend(EXT_SECRET, "1795944904", BODY, BODY_LEN, hex) == 0);
    CHECK(ext(&other, 1, "1795944904", hex, BODY, BODY_LEN, now) == VERIFY_BAD_SIGNATURE);
    CHECK(ext(both, 2, "1795944904", hex, BODY, BODY_LEN, now) == VERIFY_OK);
    CHECK(ext(with_unset, 2, "1795944904", hex, BODY, BODY_LEN, now) == VERIFY_OK);
    CHECK(ext(&good, 0, "1795944904", hex, BODY, BODY_LEN, now) == VERIFY_BAD_SIGNATURE);
    /* The prefix is part of the key: "wss_" stripped is another key. */
    struct secret stripped = mk_secret(EXT_SECRET + 4);
    CHECK(ext(&stripped, 1, "1795944904", hex, BODY, BODY_LEN, now) == VERIFY_BAD_SIGNATURE);
    for (size_t i = 0; i < BODY_LEN; i += 7) {
        memcpy(body, BODY, BODY_LEN);
        body[i] ^= 1;
        CHECK(ext(&good, 1, "1795944904", hex, body, BODY_LEN, now) == VERIFY_BAD_SIGNATURE);
    }
    CHECK(ext(&good, 1, "1795944904", hex, BODY, BODY_LEN - 1, now) == VERIFY_BAD_SIGNATURE);
    /* The timestamp is signed too: another one is a bad signature. */
    CHECK(ext(&good, 1, "1795944905", hex, BODY, BODY_LEN, now) == VERIFY_BAD_SIGNATURE);
}

static void test_extend_timestamp_syntax(void)
{
    struct secret s = mk_secret(EXT_SECRET);
    const char *bad[] = {"+1795944904",  "-1795944904",  " 1795944904", "1795944904 ",
                         "17959449e4",   "0x6B0A0F48",   "abc",         "",
                         "1795944904.0", "0000000000001"};
    char hex[65];

    REQUIRE(openssl_extend(EXT_SECRET, "1795944904", BODY, BODY_LEN, hex) == 0);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK(ext(&s, 1, bad[i], hex, BODY, BODY_LEN, 1795944904) == VERIFY_MALFORMED);
    CHECK(ext(&s, 1, NULL, hex, BODY, BODY_LEN, 1795944904) == VERIFY_MALFORMED);
    /* Twelve digits are syntactically fine, and then far in the future. */
    REQUIRE(openssl_extend(EXT_SECRET, "999999999999", BODY, BODY_LEN, hex) == 0);
    CHECK(ext(&s, 1, "999999999999", hex, BODY, BODY_LEN, 1795944904) == VERIFY_FUTURE);
    /* Leading zeros are digits too; the signed text is what was sent. */
    REQUIRE(openssl_extend(EXT_SECRET, "01795944904", BODY, BODY_LEN, hex) == 0);
    CHECK(ext(&s, 1, "01795944904", hex, BODY, BODY_LEN, 1795944904) == VERIFY_OK);
}

static void test_extend_window_boundaries(void)
{
    struct secret s = mk_secret(EXT_SECRET);
    const int64_t ts = 1795944904;
    char hex[65];

    REQUIRE(openssl_extend(EXT_SECRET, "1795944904", BODY, BODY_LEN, hex) == 0);
    CHECK(ext(&s, 1, "1795944904", hex, BODY, BODY_LEN, ts + 300) == VERIFY_OK);
    CHECK(ext(&s, 1, "1795944904", hex, BODY, BODY_LEN, ts + 301) == VERIFY_STALE);
    CHECK(ext(&s, 1, "1795944904", hex, BODY, BODY_LEN, ts - 60) == VERIFY_OK);
    CHECK(ext(&s, 1, "1795944904", hex, BODY, BODY_LEN, ts - 61) == VERIFY_FUTURE);
    /* The signature is judged first: a forger learns nothing of the window. */
    hex[0] = hex[0] == '0' ? '1' : '0';
    CHECK(ext(&s, 1, "1795944904", hex, BODY, BODY_LEN, ts + 100000) == VERIFY_BAD_SIGNATURE);
    CHECK(ext(&s, 1, "1795944904", hex, BODY, BODY_LEN, ts - 100000) == VERIFY_BAD_SIGNATURE);
}

static void test_standard_published_vector(void)
{
    /* The example from the Standard Webhooks reference libraries' tests. */
    const char *body = "{\"test\": 2432232314}";
    const char *want = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    struct secret s = mk_secret(STD_SECRET);
    char sig[64];

    REQUIRE(verify_sign_standard(STD_SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body,
                                 strlen(body), sig, sizeof(sig)) == 0);
    CHECK_STR(sig, want);
    CHECK(verify_standard_webhook(&s, 1, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", want, body,
                                  strlen(body), 1614265330, 300) == VERIFY_OK);
}

static enum verify_result std(const struct secret *s, int n, const char *id, const char *sig,
                              int64_t now)
{
    return verify_standard_webhook(s, n, id, "1795944904", sig, BODY, BODY_LEN, now, 300);
}

static void test_standard_sign_matches_openssl(void)
{
    char mine[64], theirs[128];

    REQUIRE(verify_sign_standard(STD_OTHER, "msg_2", 1795944904, BODY, BODY_LEN, mine,
                                 sizeof(mine)) == 0);
    REQUIRE(openssl_standard(STD_OTHER, "msg_2", "1795944904", BODY, BODY_LEN, theirs,
                             sizeof(theirs)) == 0);
    CHECK_STR(mine, theirs);
    /* Without the prefix, the whole text is the base64 key. */
    REQUIRE(verify_sign_standard(STD_OTHER + 6, "msg_2", 1795944904, BODY, BODY_LEN, mine,
                                 sizeof(mine)) == 0);
    CHECK_STR(mine, theirs);
    CHECK(verify_sign_standard("whsec_not base64!", "msg_2", 1, BODY, BODY_LEN, mine,
                               sizeof(mine)) == -1);
    CHECK(verify_sign_standard("whsec_", "msg_2", 1, BODY, BODY_LEN, mine, sizeof(mine)) == -1);
    CHECK(verify_sign_standard(STD_OTHER, "msg_2", 1, BODY, BODY_LEN, mine, 47) == -1);
    CHECK(verify_sign_standard(STD_OTHER, "msg_2", 1, BODY, BODY_LEN, mine, 48) == 0);
}

static void test_standard_entries_rotation_and_versions(void)
{
    struct secret good = mk_secret(STD_SECRET), other = mk_secret(STD_OTHER);
    struct secret both[2] = {other, good};
    const int64_t now = 1795944904;
    char sig[128], wrong[128], hdr[4200];

    REQUIRE(openssl_standard(STD_SECRET, "msg_1", "1795944904", BODY, BODY_LEN, sig, sizeof(sig)) ==
            0);
    REQUIRE(openssl_standard(STD_OTHER, "msg_1", "1795944904", BODY, BODY_LEN, wrong,
                             sizeof(wrong)) == 0);
    CHECK(std(&good, 1, "msg_1", sig, now) == VERIFY_OK);
    CHECK(std(&other, 1, "msg_1", sig, now) == VERIFY_BAD_SIGNATURE);
    CHECK(std(both, 2, "msg_1", sig, now) == VERIFY_OK);
    CHECK(std(&good, 1, "msg_2", sig, now) == VERIFY_BAD_SIGNATURE);

    /* Several entries: only the last one matches. */
    snprintf(hdr, sizeof(hdr), "%s %s  %s", wrong, wrong, sig);
    CHECK(std(&good, 1, "msg_1", hdr, now) == VERIFY_OK);
    /* Other versions are skipped, not refused, and never matched. */
    snprintf(hdr, sizeof(hdr), "v1a,%s %s", sig + 3, sig);
    CHECK(std(&good, 1, "msg_1", hdr, now) == VERIFY_OK);
    snprintf(hdr, sizeof(hdr), "v1a,%s", sig + 3);
    CHECK(std(&good, 1, "msg_1", hdr, now) == VERIFY_MALFORMED);
    snprintf(hdr, sizeof(hdr), "v2,%s", sig + 3);
    CHECK(std(&good, 1, "msg_1", hdr, now) == VERIFY_MALFORMED);
    /* A bad entry next to a good one does not spoil it. */
    snprintf(hdr, sizeof(hdr), "v1,!!!! %s", sig);
    CHECK(std(&good, 1, "msg_1", hdr, now) == VERIFY_OK);

    /* Only the first 16 entries are looked at. */
    hdr[0] = '\0';
    for (int i = 0; i < 16; i++) {
        strcat(hdr, wrong);
        strcat(hdr, " ");
    }
    strcat(hdr, sig);
    CHECK(std(&good, 1, "msg_1", hdr, now) == VERIFY_BAD_SIGNATURE);
    /* A header longer than 4096 bytes is refused whole. */
    memset(hdr, ' ', 4097);
    memcpy(hdr + 4097 - strlen(sig), sig, strlen(sig));
    hdr[4097] = '\0';
    CHECK(std(&good, 1, "msg_1", hdr, now) == VERIFY_MALFORMED);
    CHECK(std(&good, 1, "msg_1", hdr + 1, now) == VERIFY_OK);
}

static void test_standard_malformed_entries(void)
{
    struct secret good = mk_secret(STD_SECRET);
    const int64_t now = 1795944904;
    char sig[128], buf[160];

    REQUIRE(openssl_standard(STD_SECRET, "msg_1", "1795944904", BODY, BODY_LEN, sig, sizeof(sig)) ==
            0);
    CHECK(std(&good, 1, "msg_1", "v1,!!!!", now) == VERIFY_MALFORMED);
    CHECK(std(&good, 1, "msg_1", "v1,", now) == VERIFY_MALFORMED);
    CHECK(std(&good, 1, "msg_1", "v1", now) == VERIFY_MALFORMED);
    CHECK(std(&good, 1, "msg_1", "", now) == VERIFY_MALFORMED);
    CHECK(std(&good, 1, "msg_1", "   ", now) == VERIFY_MALFORMED);
    CHECK(std(&good, 1, "msg_1", NULL, now) == VERIFY_MALFORMED);
    /* 31 bytes of valid base64 is not a SHA-256 MAC. */
    CHECK(std(&good, 1, "msg_1", "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", now) ==
          VERIFY_MALFORMED);
    /* Padding dropped, or URL-safe alphabet: not standard base64. */
    snprintf(buf, sizeof(buf), "%s", sig);
    buf[strlen(buf) - 1] = '\0';
    CHECK(std(&good, 1, "msg_1", buf, now) == VERIFY_MALFORMED);
    snprintf(buf, sizeof(buf), "%s", sig);
    for (char *p = buf; *p; p++)
        *p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
    if (strcmp(buf, sig) != 0)
        CHECK(std(&good, 1, "msg_1", buf, now) == VERIFY_MALFORMED);
    /* Any other 32-byte value is well formed but wrong. */
    CHECK(std(&good, 1, "msg_1", "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", now) ==
          VERIFY_BAD_SIGNATURE);
}

static void test_standard_id_charset(void)
{
    struct secret good = mk_secret(STD_SECRET);
    const char *bad[] = {"", "msg/1", "msg 1", "msg\n1", "msg%2e", "m\xc3\xa9"};
    char id[300], sig[128];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        REQUIRE(verify_sign_standard(STD_SECRET, bad[i], 1795944904, BODY, BODY_LEN, sig,
                                     sizeof(sig)) == 0);
        CHECK(std(&good, 1, bad[i], sig, 1795944904) == VERIFY_MALFORMED);
    }
    CHECK(std(&good, 1, NULL, "v1,AAAA", 1795944904) == VERIFY_MALFORMED);
    memset(id, 'a', sizeof(id));
    id[0] = 'A', id[1] = '_', id[2] = '.', id[3] = ':', id[4] = '-', id[5] = '9';
    id[255] = '\0';
    REQUIRE(verify_sign_standard(STD_SECRET, id, 1795944904, BODY, BODY_LEN, sig, sizeof(sig)) ==
            0);
    CHECK(std(&good, 1, id, sig, 1795944904) == VERIFY_OK);
    id[255] = 'a';
    id[256] = '\0';
    REQUIRE(verify_sign_standard(STD_SECRET, id, 1795944904, BODY, BODY_LEN, sig, sizeof(sig)) ==
            0);
    CHECK(std(&good, 1, id, sig, 1795944904) == VERIFY_MALFORMED);
}

static void test_standard_timestamp_and_tolerance(void)
{
    struct secret good = mk_secret(STD_SECRET);
    const int64_t ts = 1795944904;
    char sig[128];

    REQUIRE(openssl_standard(STD_SECRET, "msg_1", "1795944904", BODY, BODY_LEN, sig, sizeof(sig)) ==
            0);
    CHECK(std(&good, 1, "msg_1", sig, ts + 300) == VERIFY_OK);
    CHECK(std(&good, 1, "msg_1", sig, ts + 301) == VERIFY_STALE);
    CHECK(std(&good, 1, "msg_1", sig, ts - 300) == VERIFY_OK);
    CHECK(std(&good, 1, "msg_1", sig, ts - 301) == VERIFY_FUTURE);
    CHECK(verify_standard_webhook(&good, 1, "msg_1", " 1795944904", sig, BODY, BODY_LEN, ts, 300) ==
          VERIFY_MALFORMED);
    CHECK(verify_standard_webhook(&good, 1, "msg_1", "+1795944904", sig, BODY, BODY_LEN, ts, 300) ==
          VERIFY_MALFORMED);
    CHECK(verify_standard_webhook(&good, 1, "msg_1", "1795944904x", sig, BODY, BODY_LEN, ts, 300) ==
          VERIFY_MALFORMED);
    CHECK(verify_standard_webhook(&good, 1, "msg_1", "1000000000000", sig, BODY, BODY_LEN, ts,
                                  300) == VERIFY_MALFORMED);
    /* A forged signature with an old timestamp says only "invalid". */
    CHECK(std(&good, 1, "msg_1", "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", ts + 9999) ==
          VERIFY_BAD_SIGNATURE);
    /* Tampered body. */
    char body[sizeof(BODY)];
    memcpy(body, BODY, BODY_LEN);
    body[3] ^= 0x20;
    CHECK(verify_standard_webhook(&good, 1, "msg_1", "1795944904", sig, body, BODY_LEN, ts, 300) ==
          VERIFY_BAD_SIGNATURE);
}

int main(void)
{
    test_result_codes_are_stable();
    test_extend_sign_matches_openssl();
    test_extend_accepts_lower_and_upper_hex();
    test_extend_refuses_malformed_signatures();
    test_extend_wrong_secret_rotation_and_tampering();
    test_extend_timestamp_syntax();
    test_extend_window_boundaries();
    test_standard_published_vector();
    test_standard_sign_matches_openssl();
    test_standard_entries_rotation_and_versions();
    test_standard_malformed_entries();
    test_standard_id_charset();
    test_standard_timestamp_and_tolerance();
    return check_done();
}
