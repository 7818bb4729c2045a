/*
 * test_erasure.c: internal erasure request bodies, single and batch, and
 * every refusal with its code and the field it names.
 */
#include "check.h"
#include "erasure.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NOW 1795944904000LL /* 2026-11-29T09:35:04Z */
#define DAY_MS (86400LL * 1000)

static struct erasure_item *ITEMS;
static int N;

static int parse(const char *body, int max_items, struct api_error *err)
{
    free(ITEMS);
    ITEMS = NULL;
    N = -1;
    memset(err, 0, sizeof(*err));
    return erasure_parse(body, strlen(body), max_items, NOW, &ITEMS, &N, err);
}

/* Parses body, expects a refusal with code; the message must start with
 * prefix. */
static void refused(const char *body, const char *code, const char *prefix)
{
    struct api_error e;

    CHECK(parse(body, 1000, &e) == -1);
    CHECK(e.status == 400);
    CHECK_STR(e.code, code);
    if (strncmp(e.message, prefix, strlen(prefix)) != 0) {
        fprintf(stderr, "message \"%s\" does not start with \"%s\"\n", e.message, prefix);
        CHECK(0);
    }
    CHECK(ITEMS == NULL && N == 0);
}

static void test_single_item(void)
{
    struct api_error e;

    CHECK(parse("{\"resource\":\"extract_run\",\"id\":\"exr_1\",\"reason\":\"gdpr erasure #123\","
                "\"not_before\":\"2026-12-01T00:00:00Z\"}",
                1000, &e) == 0);
    REQUIRE(N == 1 && ITEMS != NULL);
    CHECK(ITEMS[0].resource == RES_EXTRACT_RUN);
    CHECK_STR(ITEMS[0].id, "exr_1");
    CHECK_STR(ITEMS[0].reason, "gdpr erasure #123");
    CHECK(ITEMS[0].not_before_ms == 1796083200000LL);

    CHECK(parse("{\"id\":\"file_9\",\"resource\":\"file\"}", 1000, &e) == 0);
    CHECK(N == 1 && ITEMS[0].resource == RES_FILE);
    CHECK_STR(ITEMS[0].reason, "");
    CHECK(ITEMS[0].not_before_ms == 0);
    /* null means absent for the optional fields. */
    CHECK(parse("{\"resource\":\"parse_run\",\"id\":\"pr_1\",\"reason\":null,\"not_before\":null}",
                1000, &e) == 0);
    CHECK(N == 1 && ITEMS[0].not_before_ms == 0);
}

static void test_batch(void)
{
    struct api_error e;

    CHECK(parse("{\"items\":[{\"resource\":\"extract_run\",\"id\":\"exr_1\"},"
                "{\"resource\":\"file\",\"id\":\"file_1\",\"reason\":\"offboarding\"},"
                "{\"resource\":\"extract_run\",\"id\":\"exr_1\"}]}",
                1000, &e) == 0);
    CHECK(N == 3);
    CHECK(ITEMS[1].resource == RES_FILE);
    CHECK_STR(ITEMS[1].reason, "offboarding");
    /* Duplicates are kept: the queue coalesces them. */
    CHECK(ITEMS[2].resource == RES_EXTRACT_RUN);
    CHECK_STR(ITEMS[2].id, "exr_1");
}

static char *batch_of(int n)
{
    size_t cap = 32 + (size_t)n * 48, len;
    char *b = malloc(cap);

    len = (size_t)snprintf(b, cap, "{\"items\":[");
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(b + len, cap - len, "%s{\"resource\":\"file\",\"id\":\"f_%d\"}",
                                i ? "," : "", i);
    snprintf(b + len, cap - len, "]}");
    return b;
}

static void test_batch_bounds(void)
{
    struct api_error e;
    char *b;

    b = batch_of(1000);
    CHECK(parse(b, 1000, &e) == 0);
    CHECK(N == 1000);
    CHECK_STR(ITEMS[999].id, "f_999");
    free(b);
    b = batch_of(1001);
    CHECK(parse(b, 1000, &e) == -1);
    CHECK_STR(e.code, "batch_too_large");
    CHECK(ITEMS == NULL && N == 0);
    free(b);
    b = batch_of(3);
    CHECK(parse(b, 2, &e) == -1);
    CHECK_STR(e.code, "batch_too_large");
    free(b);
    refused("{\"items\":[]}", "empty_batch", "items:");
    refused("{\"items\":{}}", "invalid_body", "items:");
    refused("{\"items\":null}", "invalid_body", "items:");
    refused("{\"items\":[{\"resource\":\"file\",\"id\":\"f\"}],\"reason\":\"x\"}", "invalid_body",
            "body:");
    refused("{\"items\":[{\"resource\":\"file\",\"id\":\"f\"},7]}", "invalid_body", "items[1]:");
}

static void test_resource_errors(void)
{
    refused("{\"resource\":\"extract_runs\",\"id\":\"exr_1\"}", "unknown_resource", "resource:");
    refused("{\"resource\":\"batch_processor_run\",\"id\":\"bpr_1\"}", "unknown_resource",
            "resource:");
    refused("{\"id\":\"exr_1\"}", "unknown_resource", "resource:");
    refused("{\"resource\":7,\"id\":\"exr_1\"}", "unknown_resource", "resource:");
    refused(
        "{\"items\":[{\"resource\":\"file\",\"id\":\"f\"},{\"resource\":\"File\",\"id\":\"f\"}]}",
        "unknown_resource", "items[1].resource:");
}

static void test_id_errors(void)
{
    const char *ids[] = {"\"../x\"",       "\"a/b\"", "\"%2e\"", "\"\"",       "\"a b\"",
                         "\"caf\\u00e9\"", "17",      "null",    "[\"exr_1\"]"};
    char body[512], big[300];

    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        snprintf(body, sizeof(body), "{\"resource\":\"extract_run\",\"id\":%s}", ids[i]);
        refused(body, "invalid_id", "id:");
    }
    refused("{\"resource\":\"extract_run\"}", "invalid_id", "id:");
    memset(big, 'x', sizeof(big));
    snprintf(body, sizeof(body), "{\"resource\":\"file\",\"id\":\"%.256s\"}", big);
    refused(body, "invalid_id", "id:");
    snprintf(body, sizeof(body),
             "{\"items\":[{\"resource\":\"file\",\"id\":\"f\"},"
             "{\"resource\":\"file\",\"id\":\"f\"},"
             "{\"resource\":\"file\",\"id\":\"f\"},"
             "{\"resource\":\"file\",\"id\":\"a/b\"}]}");
    refused(body, "invalid_id", "items[3].id:");
}

static void test_reason_bounds(void)
{
    struct api_error e;
    char body[1024], r[300];

    memset(r, 'r', sizeof(r));
    snprintf(body, sizeof(body), "{\"resource\":\"file\",\"id\":\"f\",\"reason\":\"%.256s\"}", r);
    CHECK(parse(body, 1000, &e) == 0 && strlen(ITEMS[0].reason) == 256);
    snprintf(body, sizeof(body), "{\"resource\":\"file\",\"id\":\"f\",\"reason\":\"%.257s\"}", r);
    refused(body, "invalid_reason", "reason:");
    refused("{\"resource\":\"file\",\"id\":\"f\",\"reason\":\"a\\nb\"}", "invalid_reason",
            "reason:");
    refused("{\"resource\":\"file\",\"id\":\"f\",\"reason\":\"a\\u007fb\"}", "invalid_reason",
            "reason:");
    refused("{\"resource\":\"file\",\"id\":\"f\",\"reason\":\"a\\u0085b\"}", "invalid_reason",
            "reason:");
    refused("{\"resource\":\"file\",\"id\":\"f\",\"reason\":42}", "invalid_reason", "reason:");
    /* Non-ASCII text is fine. */
    CHECK(parse("{\"resource\":\"file\",\"id\":\"f\",\"reason\":\"L\xc3\xb6schung \\u00e9\"}", 1000,
                &e) == 0);
    CHECK_STR(ITEMS[0].reason, "L\xc3\xb6schung \xc3\xa9");
}

static void test_not_before(void)
{
    struct api_error e;

    CHECK(
        parse("{\"resource\":\"file\",\"id\":\"f\",\"not_before\":\"2026-11-29T10:35:04.5+01:00\"}",
              1000, &e) == 0);
    CHECK(ITEMS[0].not_before_ms == NOW + 500);
    /* In the past: as soon as possible, stored as now. */
    CHECK(parse("{\"resource\":\"file\",\"id\":\"f\",\"not_before\":\"2001-01-01T00:00:00Z\"}",
                1000, &e) == 0);
    CHECK(ITEMS[0].not_before_ms == NOW);
    /* 366 days ahead is the last moment allowed. */
    CHECK(parse("{\"resource\":\"file\",\"id\":\"f\",\"not_before\":\"2027-11-30T09:35:04Z\"}",
                1000, &e) == 0);
    CHECK(ITEMS[0].not_before_ms == NOW + 366 * DAY_MS);
    refused("{\"resource\":\"file\",\"id\":\"f\",\"not_before\":\"2027-11-30T09:35:04.001Z\"}",
            "invalid_not_before", "not_before:");
    const char *bad[] = {"\"2026-11-29\"",
                         "\"2026-11-29T09:35:04\"",
                         "\"2026-11-29 09:35:04Z\"",
                         "\"tomorrow\"",
                         "\"1795944904\"",
                         "1795944904",
                         "\"\"",
                         "true",
                         "\"2026-11-29T09:35:04.1234567891234567891234567891234Z\""};
    char body[256];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(body, sizeof(body), "{\"resource\":\"file\",\"id\":\"f\",\"not_before\":%s}",
                 bad[i]);
        refused(body, "invalid_not_before", "not_before:");
    }
    refused("{\"items\":[{\"resource\":\"file\",\"id\":\"f\",\"not_before\":\"9999-01-01T00:00:"
            "00Z\"}]}",
            "invalid_not_before", "items[0].not_before:");
}

static void test_unknown_keys_and_shapes(void)
{
    refused("{\"resource\":\"file\",\"id\":\"f\",\"not_befor\":\"2026-12-01T00:00:00Z\"}",
            "invalid_body", "\"not_befor\": unknown key");
    refused("{\"items\":[{\"resource\":\"file\",\"id\":\"f\",\"ID\":\"g\"}]}", "invalid_body",
            "items[0].\"ID\": unknown key");
    refused("[{\"resource\":\"file\",\"id\":\"f\"}]", "invalid_body", "body:");
    refused("\"file\"", "invalid_body", "body:");
    refused("{}", "unknown_resource", "resource:");
    refused("{\"resource\":\"file\",\"id\":\"f\",\"id\":\"g\"}", "malformed_json", "body:");
    refused("{\"resource\":\"file\",\"id\":\"\xff\"}", "malformed_json", "body:");
    refused("{\"resource\":\"file\",", "malformed_json", "body:");
    refused("", "malformed_json", "body:");
}

static void test_account_per_request_and_per_item(void)
{
    struct api_error e;

    CHECK(parse("{\"resource\":\"file\",\"id\":\"file_1\",\"account\":\"eu-1\"}", 1000, &e) == 0);
    CHECK(N == 1 && strcmp(ITEMS[0].account, "eu-1") == 0);
    CHECK(parse("{\"resource\":\"file\",\"id\":\"file_1\"}", 1000, &e) == 0);
    CHECK(N == 1 && ITEMS[0].account[0] == '\0');
    /* The batch's account serves items that name none; an item's own wins. */
    CHECK(parse("{\"account\":\"us\",\"items\":[{\"resource\":\"file\",\"id\":\"f1\"},"
                "{\"resource\":\"file\",\"id\":\"f2\",\"account\":\"eu\"}]}",
                1000, &e) == 0);
    CHECK(N == 2 && strcmp(ITEMS[0].account, "us") == 0 && strcmp(ITEMS[1].account, "eu") == 0);
    CHECK(parse("{\"items\":[{\"resource\":\"file\",\"id\":\"f1\"}]}", 1000, &e) == 0);
    CHECK(N == 1 && ITEMS[0].account[0] == '\0');
    refused("{\"resource\":\"file\",\"id\":\"f\",\"account\":\"EU\"}", "invalid_account",
            "account: \"EU\" is not 1..32 characters");
    refused("{\"resource\":\"file\",\"id\":\"f\",\"account\":\"\"}", "invalid_account",
            "account: ");
    refused("{\"resource\":\"file\",\"id\":\"f\",\"account\":7}", "invalid_account",
            "account: must be a string");
    refused("{\"resource\":\"file\",\"id\":\"f\",\"account\":"
            "\"a23456789012345678901234567890123\"}",
            "invalid_account", "account: ");
    refused("{\"account\":\"eu/x\",\"items\":[{\"resource\":\"file\",\"id\":\"f1\"}]}",
            "invalid_account", "account: ");
    refused("{\"items\":[{\"resource\":\"file\",\"id\":\"f1\",\"account\":\"a b\"}]}",
            "invalid_account", "items[0].account: ");
    refused(
        "{\"account\":\"eu\",\"reason\":\"x\",\"items\":[{\"resource\":\"file\",\"id\":\"f\"}]}",
        "invalid_body", "body: \"items\" can only be combined with \"account\"");
}

int main(void)
{
    test_single_item();
    test_batch();
    test_batch_bounds();
    test_resource_errors();
    test_id_errors();
    test_reason_bounds();
    test_not_before();
    test_unknown_keys_and_shapes();
    test_account_per_request_and_per_item();
    free(ITEMS);
    return check_done();
}
