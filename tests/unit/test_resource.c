/* test_resource.c: the resource table, id rules and path encoding. */
#include "check.h"
#include "resource.h"
#include "util.h"

#include <stdint.h>

static void test_names_round_trip(void)
{
    for (int i = 0; i < RES_COUNT; i++) {
        enum resource r;
        CHECK(resource_from_name(resource_name((enum resource)i), &r) == 0 && (int)r == i);
    }
    CHECK_STR(resource_collection(RES_EXTRACT_RUN), "extract_runs");
    CHECK_STR(resource_collection(RES_FILE), "files");
    enum resource r;
    CHECK(resource_from_name("extract_runs", &r) == -1);
    CHECK(resource_from_name("", &r) == -1);
}

static void test_id_rules_refuse_path_tricks(void)
{
    char big[300];
    CHECK(resource_id_valid("exr_Xj8mK2pL9nR4vT7qY5wZ", 24));
    CHECK(resource_id_valid("workflow_run_abc-DEF", 20));
    CHECK(!resource_id_valid("", 0));
    CHECK(!resource_id_valid("a/b", 3));
    CHECK(!resource_id_valid("..", 2));
    CHECK(!resource_id_valid("a%2F", 4));
    CHECK(!resource_id_valid("a\nb", 3));
    CHECK(!resource_id_valid("caf\xc3\xa9", 5));
    CHECK(!resource_id_valid("a b", 3));
    memset(big, 'a', sizeof(big));
    CHECK(resource_id_valid(big, 255));
    CHECK(!resource_id_valid(big, 256));
}

static void test_segment_encoding(void)
{
    char out[64];
    CHECK(resource_encode_segment("exr_1-a", out, sizeof(out)) == 0);
    CHECK_STR(out, "exr_1-a");
    CHECK(resource_encode_segment("a/b c%", out, sizeof(out)) == 0);
    CHECK_STR(out, "a%2Fb%20c%25");
    CHECK(resource_encode_segment("abcdef", out, 4) == -1);
}

static void test_util_time_and_numbers(void)
{
    int64_t ms, v;
    char buf[40];
    CHECK(util_parse_rfc3339("2026-11-29T09:35:04Z", &ms) == 0 && ms == 1795944904000LL);
    CHECK(util_parse_rfc3339("2026-11-29T10:35:04.250+01:00", &ms) == 0 && ms == 1795944904250LL);
    CHECK(util_parse_rfc3339("2026-11-29 09:35:04Z", &ms) == -1);
    CHECK(util_parse_rfc3339("2026-13-29T09:35:04Z", &ms) == -1);
    CHECK(util_parse_rfc3339("2026-11-29T09:35:04", &ms) == -1);
    CHECK(util_parse_rfc3339("2026-02-31T00:00:00Z", &ms) == -1);
    CHECK(util_parse_rfc3339("2028-02-29T00:00:00Z", &ms) == 0);
    CHECK(util_parse_rfc3339("2026-02-29T00:00:00Z", &ms) == -1);
    util_format_time_ms(1795944904250LL, buf, sizeof(buf));
    CHECK_STR(buf, "2026-11-29T09:35:04.250Z");
    /* The same second again, the next, and another day: the cached date
     * must follow. */
    util_format_time_ms(1795944904007LL, buf, sizeof(buf));
    CHECK_STR(buf, "2026-11-29T09:35:04.007Z");
    util_format_time_ms(1795944905999LL, buf, sizeof(buf));
    CHECK_STR(buf, "2026-11-29T09:35:05.999Z");
    util_format_time_ms(1795944904000LL - 86400000LL, buf, sizeof(buf));
    CHECK_STR(buf, "2026-11-28T09:35:04.000Z");
    CHECK(util_parse_int64("42", 0, 100, &v) == 0 && v == 42);
    CHECK(util_parse_int64("101", 0, 100, &v) == -1);
    CHECK(util_parse_int64("4x", 0, 100, &v) == -1);
    CHECK(util_parse_int64("", 0, 100, &v) == -1);
    CHECK(util_parse_int64("99999999999999999999", 0, INT64_MAX, &v) == -1);
}

static void test_sortable_ids_order_by_time(void)
{
    char a[40], b[40], c[40];
    CHECK(util_sortable_id("del_", 1795944904000LL, a, sizeof(a)) == 0);
    CHECK(util_sortable_id("del_", 1795944904000LL, b, sizeof(b)) == 0);
    CHECK(util_sortable_id("del_", 1795944904001LL, c, sizeof(c)) == 0);
    CHECK(strlen(a) == 30 && strncmp(a, "del_", 4) == 0);
    CHECK(strncmp(a, b, 14) == 0 && strcmp(a, b) != 0); /* same time, different tails */
    CHECK(strncmp(a, c, 14) < 0);
    CHECK(strncmp(b, c, 14) < 0);
    for (const char *p = a + 4; *p; p++)
        CHECK((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z'));
    CHECK(util_sortable_id("del_", 0, a, 10) == -1);
}

static void test_random_ids_differ(void)
{
    char a[40], b[40];
    CHECK(util_random_id("del_", a, sizeof(a)) == 0);
    CHECK(util_random_id("del_", b, sizeof(b)) == 0);
    CHECK(strlen(a) == 30 && strncmp(a, "del_", 4) == 0);
    CHECK(strcmp(a, b) != 0);
    CHECK(util_random_id("del_", a, 10) == -1);
}

/* The pool hands out every byte once: across refills, no id repeats and
 * the bytes are not stuck (each bit is set about half the time). */
static void test_random_pool_draws_fresh_bytes(void)
{
    enum { N = 5000 };
    static char ids[N][40];
    unsigned char big[3000];
    long ones = 0;
    int repeats = 0;

    for (int i = 0; i < N; i++)
        CHECK(util_random_id("x_", ids[i], sizeof(ids[i])) == 0); /* ~127 refills */
    for (int i = 1; i < N; i++)
        repeats += strcmp(ids[i], ids[i - 1]) == 0;
    CHECK(repeats == 0);
    CHECK(util_random_bytes(big, sizeof(big)) == 0); /* more than the pool */
    for (size_t i = 0; i < sizeof(big); i++)
        ones += __builtin_popcount(big[i]);
    CHECK(ones > 4 * (long)sizeof(big) - 400 && ones < 4 * (long)sizeof(big) + 400);
    CHECK(memcmp(big, big + 1000, 1000) != 0);
}

int main(void)
{
    test_names_round_trip();
    test_id_rules_refuse_path_tricks();
    test_segment_encoding();
    test_util_time_and_numbers();
    test_random_ids_differ();
    test_random_pool_draws_fresh_bytes();
    test_sortable_ids_order_by_time();
    return check_done();
}
