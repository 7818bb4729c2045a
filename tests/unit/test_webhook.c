/*
 * test_webhook.c: which deletions an Extend event plans, and which bodies
 * are refused (with which code and field).
 */
#include "check.h"
#include "webhook.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NOW 1795944904000LL

static struct rule RULES[] = {
    {"extract_run.processed", RULE_DELETE_RUN | RULE_DELETE_FILE, 0},
    {"extract_run.failed", RULE_DELETE_RUN, 0},
    {"parse_run.processed", RULE_DELETE_RUN, 3600},
    {"batch_processor_run.*", RULE_DELETE_RUN, 0},
    {"classify_run.*", RULE_DELETE_FILE, 0},
    {"workflow_run.*", RULE_DELETE_RUN, 0},
};
#define N_RULES ((int)(sizeof(RULES) / sizeof(RULES[0])))

static int plan_of(const char *body, struct webhook_plan *plan, struct api_error *err)
{
    memset(err, 0, sizeof(*err));
    return webhook_plan(body, strlen(body), RULES, N_RULES, NOW, plan, err);
}

static int has(const struct webhook_plan *p, enum resource r, const char *id)
{
    for (int i = 0; i < p->n; i++) {
        if (p->items[i].resource == r && strcmp(p->items[i].id, id) == 0)
            return 1;
    }
    return 0;
}

static void test_processed_event_deletes_run_and_file(void)
{
    struct webhook_plan p;
    struct api_error e;
    const char *body =
        "{\"eventId\":\"evt_1\",\"eventType\":\"extract_run.processed\","
        "\"payload\":{\"object\":\"extract_run\",\"id\":\"exr_Xj8mK2pL9nR4vT7qY5wZ\","
        "\"status\":\"PROCESSED\",\"file\":{\"id\":\"file_A\",\"name\":\"a.pdf\"},"
        "\"metadata\":{\"id\":\"../not-this\"}}}";

    CHECK(plan_of(body, &p, &e) == 0);
    CHECK(p.matched == 1);
    CHECK_STR(p.event_id, "evt_1");
    CHECK_STR(p.event_type, "extract_run.processed");
    CHECK(p.n == 2);
    CHECK(p.items[0].resource == RES_EXTRACT_RUN);
    CHECK_STR(p.items[0].id, "exr_Xj8mK2pL9nR4vT7qY5wZ");
    CHECK(p.items[0].not_before_ms == 0);
    CHECK(p.items[1].resource == RES_FILE);
    CHECK_STR(p.items[1].id, "file_A");
}

static void test_failed_event_deletes_run_only(void)
{
    struct webhook_plan p;
    struct api_error e;
    const char *body = "{\"eventId\":\"evt_2\",\"eventType\":\"extract_run.failed\","
                       "\"payload\":{\"object\":\"extract_run\",\"id\":\"exr_2\","
                       "\"status\":\"FAILED\",\"file\":{\"id\":\"file_B\"}}}";

    CHECK(plan_of(body, &p, &e) == 0);
    CHECK(p.matched == 1 && p.n == 1);
    CHECK(has(&p, RES_EXTRACT_RUN, "exr_2"));
    CHECK(!has(&p, RES_FILE, "file_B"));
}

static void test_signed_data_url_uses_event_type_prefix(void)
{
    struct webhook_plan p;
    struct api_error e;
    const char *body = "{\"eventId\":\"evt_3\",\"eventType\":\"extract_run.processed\","
                       "\"payload\":{\"object\":\"signed_data_url\",\"id\":\"exr_big\","
                       "\"data\":\"https://example.invalid/x?sig=1\",\"metadata\":{}}}";

    CHECK(plan_of(body, &p, &e) == 0);
    CHECK(p.matched == 1 && p.n == 1);
    CHECK(has(&p, RES_EXTRACT_RUN, "exr_big"));

    body = "{\"eventId\":\"evt_3w\",\"eventType\":\"workflow_run.completed\","
           "\"payload\":{\"object\":\"signed_data_url\",\"id\":\"workflow_run_1\"}}";
    CHECK(plan_of(body, &p, &e) == 0);
    CHECK(p.n == 1 && has(&p, RES_WORKFLOW_RUN, "workflow_run_1"));

    /* A batch run cannot be deleted: the rule matches and plans nothing. */
    body = "{\"eventId\":\"evt_3b\",\"eventType\":\"batch_processor_run.processed\","
           "\"payload\":{\"object\":\"signed_data_url\",\"id\":\"bpr_1\"}}";
    CHECK(plan_of(body, &p, &e) == 0);
    CHECK(p.matched == 1 && p.n == 0);
    body = "{\"eventId\":\"evt_3c\",\"eventType\":\"batch_processor_run.processed\","
           "\"payload\":{\"object\":\"batch_processor_run\",\"id\":\"bpr_1\"}}";
    CHECK(plan_of(body, &p, &e) == 0);
    CHECK(p.matched == 1 && p.n == 0);
}

static void test_files_deduplicated_nulls_skipped(void)
{
    struct webhook_plan p;
    struct api_error e;
    const char *body = "{\"eventId\":\"evt_4\",\"eventType\":\"extract_run.processed\","
                       "\"payload\":{\"object\":\"extract_run\",\"id\":\"exr_4\","
                       "\"file\":{\"id\":\"file_1\"},\"files\":[{\"id\":\"file_2\"},null,"
                       "{\"id\":\"file_1\"},{\"id\":\"file_3\"},{\"id\":\"file_2\"}]}}";

    CHECK(plan_of(body, &p, &e) == 0);
    CHECK(p.n == 4);
    CHECK(has(&p, RES_EXTRACT_RUN, "exr_4"));
    CHECK(has(&p, RES_FILE, "file_1") && has(&p, RES_FILE, "file_2") &&
          has(&p, RES_FILE, "file_3"));

    body = "{\"eventId\":\"evt_5\",\"eventType\":\"extract_run.processed\","
           "\"payload\":{\"object\":\"extract_run\",\"id\":\"exr_5\",\"file\":null,"
           "\"files\":null}}";
    CHECK(plan_of(body, &p, &e) == 0);
    CHECK(p.n == 1 && has(&p, RES_EXTRACT_RUN, "exr_5"));

    /* A file-only rule. */
    body =
        "{\"eventId\":\"evt_6\",\"eventType\":\"classify_run.processed\","
        "\"payload\":{\"object\":\"classify_run\",\"id\":\"clr_1\",\"files\":[{\"id\":\"f1\"}]}}";
    CHECK(plan_of(body, &p, &e) == 0);
    CHECK(p.matched == 1 && p.n == 1 && has(&p, RES_FILE, "f1"));

    /* A matched rule with nothing to delete. */
    body = "{\"eventId\":\"evt_7\",\"eventType\":\"classify_run.processed\","
           "\"payload\":{\"object\":\"classify_run\",\"id\":\"clr_1\"}}";
    CHECK(plan_of(body, &p, &e) == 0);
    CHECK(p.matched == 1 && p.n == 0);

    body = "{\"eventId\":\"evt_8\",\"eventType\":\"classify_run.processed\","
           "\"payload\":{\"files\":[{\"id\":\"f1\"},{\"name\":\"no id\"}]}}";
    CHECK(plan_of(body, &p, &e) == -1);
    CHECK_STR(e.code, "invalid_id");
    CHECK(strstr(e.message, "payload.files[1].id") != NULL);
    body = "{\"eventId\":\"evt_8\",\"eventType\":\"classify_run.processed\","
           "\"payload\":{\"files\":{\"id\":\"f1\"}}}";
    CHECK(plan_of(body, &p, &e) == -1);
    CHECK_STR(e.code, "invalid_body");
    body = "{\"eventId\":\"evt_8\",\"eventType\":\"classify_run.processed\","
           "\"payload\":{\"file\":{\"id\":\"a.b\"}}}";
    CHECK(plan_of(body, &p, &e) == -1);
    CHECK_STR(e.code, "invalid_id");
    CHECK(strstr(e.message, "payload.file.id") != NULL);
}

/* files: n entries file_0..file_{n-1}, plus payload.file = file_0. */
static char *files_body(int n)
{
    size_t cap = 256 + (size_t)n * 32;
    char *b = malloc(cap);
    size_t len;

    len = (size_t)snprintf(b, cap,
                           "{\"eventId\":\"evt_f\",\"eventType\":\"extract_run.processed\","
                           "\"payload\":{\"object\":\"extract_run\",\"id\":\"exr_f\","
                           "\"file\":{\"id\":\"file_0\"},\"files\":[");
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(b + len, cap - len, "%s{\"id\":\"file_%d\"}", i ? "," : "", i);
    snprintf(b + len, cap - len, "]}}");
    return b;
}

static void test_file_count_bound(void)
{
    struct webhook_plan p;
    struct api_error e;
    char *b;

    b = files_body(100);
    CHECK(plan_of(b, &p, &e) == 0);
    CHECK(p.n == 101);
    free(b);
    b = files_body(101);
    CHECK(plan_of(b, &p, &e) == -1);
    CHECK_STR(e.code, "too_many_files");
    CHECK(e.status == 400);
    free(b);
}

static void test_unknown_event_is_ignored(void)
{
    struct webhook_plan p;
    struct api_error e;
    const char *body = "{\"eventId\":\"evt_9\",\"eventType\":\"extractor.created\","
                       "\"payload\":{\"object\":\"extractor\",\"id\":\"ex_1\"}}";

    CHECK(plan_of(body, &p, &e) == 0);
    CHECK(p.matched == 0 && p.n == 0);
    CHECK_STR(p.event_id, "evt_9");
    /* No rules at all. */
    CHECK(webhook_plan(body, strlen(body), NULL, 0, NOW, &p, &e) == 0 && p.matched == 0);
    /* An ignored event's payload is not judged. */
    body = "{\"eventId\":\"evt_9\",\"eventType\":\"new_thing.done\",\"payload\":{\"id\":\"../x\"}}";
    CHECK(plan_of(body, &p, &e) == 0 && p.matched == 0);
}

static void test_wildcard_and_first_rule_wins(void)
{
    struct rule rules[] = {
        {"extract_run.*", RULE_DELETE_FILE, 0},
        {"extract_run.processed", RULE_DELETE_RUN, 0},
        {"*", RULE_DELETE_RUN, 0},
    };
    struct webhook_plan p;
    struct api_error e;
    const char *body = "{\"eventId\":\"evt_w\",\"eventType\":\"extract_run.processed\","
                       "\"payload\":{\"object\":\"extract_run\",\"id\":\"exr_w\","
                       "\"file\":{\"id\":\"file_w\"}}}";

    CHECK(webhook_plan(body, strlen(body), rules, 3, NOW, &p, &e) == 0);
    CHECK(p.matched == 1 && p.n == 1 && has(&p, RES_FILE, "file_w"));
    body = "{\"eventId\":\"evt_w\",\"eventType\":\"edit_run.processed\","
           "\"payload\":{\"object\":\"edit_run\",\"id\":\"edr_1\"}}";
    CHECK(webhook_plan(body, strlen(body), rules, 3, NOW, &p, &e) == 0);
    CHECK(p.matched == 1 && p.n == 1 && has(&p, RES_EDIT_RUN, "edr_1"));
    /* A file event is not a run, even under a catch-all "run" rule. */
    body = "{\"eventId\":\"evt_w\",\"eventType\":\"file.created\","
           "\"payload\":{\"object\":\"file\",\"id\":\"file_new\"}}";
    CHECK(webhook_plan(body, strlen(body), rules, 3, NOW, &p, &e) == 0);
    CHECK(p.matched == 1 && p.n == 0);
    body = "{\"eventId\":\"evt_w\",\"eventType\":\"file.created\","
           "\"payload\":{\"object\":\"signed_data_url\",\"id\":\"file_new\"}}";
    CHECK(webhook_plan(body, strlen(body), rules, 3, NOW, &p, &e) == 0);
    CHECK(p.matched == 1 && p.n == 0);
    body = "{\"eventId\":\"evt_w\",\"eventType\":\"edit_run.processed\","
           "\"payload\":{\"object\":\"edit_run\",\"id\":\"edr_1\"}}";
    /* Without the catch-all, "extract_run.*" does not cover edit_run. */
    CHECK(webhook_plan(body, strlen(body), rules, 2, NOW, &p, &e) == 0 && p.matched == 0);
}

static void test_delay_sets_not_before(void)
{
    struct webhook_plan p;
    struct api_error e;
    const char *body = "{\"eventId\":\"evt_d\",\"eventType\":\"parse_run.processed\","
                       "\"payload\":{\"object\":\"parse_run\",\"id\":\"pr_1\"}}";

    CHECK(plan_of(body, &p, &e) == 0);
    CHECK(p.n == 1 && p.items[0].resource == RES_PARSE_RUN);
    CHECK(p.items[0].not_before_ms == NOW + 3600 * 1000LL);
}

static void test_bad_run_ids_name_the_field(void)
{
    const char *ids[] = {"\"../x\"", "\"a/b\"", "\"%2e\"", "\"\"", "42", "null", "\"a b\""};
    struct webhook_plan p;
    struct api_error e;
    char body[512];

    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        snprintf(body, sizeof(body),
                 "{\"eventId\":\"evt_b\",\"eventType\":\"extract_run.failed\","
                 "\"payload\":{\"object\":\"extract_run\",\"id\":%s}}",
                 ids[i]);
        CHECK(plan_of(body, &p, &e) == -1);
        CHECK(e.status == 400);
        CHECK_STR(e.code, "invalid_id");
        CHECK(strncmp(e.message, "payload.id:", 11) == 0);
        CHECK(p.n == 0);
    }
}

static void test_envelope_errors(void)
{
    struct webhook_plan p;
    struct api_error e;
    char body[1024], big[600];

    CHECK(plan_of("{\"eventId\":\"evt_1\",\"eventType\":\"extract_run.failed\",\"payload\":[]}", &p,
                  &e) == -1);
    CHECK_STR(e.code, "invalid_body");
    CHECK(strstr(e.message, "payload") != NULL);
    CHECK(plan_of("{\"eventId\":\"evt_1\",\"eventType\":\"extract_run.failed\"}", &p, &e) == -1);
    CHECK_STR(e.code, "invalid_body");
    CHECK(plan_of("{\"eventId\":\"evt_1\",\"eventType\":\"x\",\"payload\":\"s\"}", &p, &e) == -1);
    CHECK_STR(e.code, "invalid_body");
    CHECK(plan_of("[1,2]", &p, &e) == -1);
    CHECK_STR(e.code, "invalid_body");
    CHECK(plan_of("{\"eventId\":7,\"eventType\":\"x\",\"payload\":{}}", &p, &e) == -1);
    CHECK_STR(e.code, "invalid_body");
    CHECK(strncmp(e.message, "eventId", 7) == 0);
    CHECK(plan_of("{\"eventId\":\"evt/1\",\"eventType\":\"x\",\"payload\":{}}", &p, &e) == -1);
    CHECK_STR(e.code, "invalid_body");
    CHECK(plan_of("{\"eventId\":\"\",\"eventType\":\"x\",\"payload\":{}}", &p, &e) == -1);
    CHECK(plan_of("{\"eventId\":\"e\",\"eventType\":\"\",\"payload\":{}}", &p, &e) == -1);
    CHECK(plan_of("{\"eventId\":\"e\",\"eventType\":\"a\\u0001b\",\"payload\":{}}", &p, &e) == -1);
    CHECK_STR(e.code, "invalid_body");
    CHECK(strncmp(e.message, "eventType", 9) == 0);
    CHECK(plan_of("{\"eventId\":\"e\",\"eventType\":\"caf\\u00e9\",\"payload\":{}}", &p, &e) == -1);
    /* Lengths: 255 / 127 fit, one more does not. */
    memset(big, 'a', sizeof(big));
    snprintf(body, sizeof(body), "{\"eventId\":\"%.255s\",\"eventType\":\"%.127s\",\"payload\":{}}",
             big, big);
    CHECK(plan_of(body, &p, &e) == 0 && strlen(p.event_id) == 255 && strlen(p.event_type) == 127);
    snprintf(body, sizeof(body), "{\"eventId\":\"%.256s\",\"eventType\":\"x\",\"payload\":{}}",
             big);
    CHECK(plan_of(body, &p, &e) == -1);
    snprintf(body, sizeof(body), "{\"eventId\":\"e\",\"eventType\":\"%.128s\",\"payload\":{}}",
             big);
    CHECK(plan_of(body, &p, &e) == -1);
}

static void test_messages_quote_little_input(void)
{
    struct webhook_plan p;
    struct api_error e;
    char body[2048], id[1001];

    memset(id, 'Z', 1000);
    id[1000] = '\0';
    id[500] = '/';
    snprintf(body, sizeof(body),
             "{\"eventId\":\"evt_q\",\"eventType\":\"extract_run.failed\","
             "\"payload\":{\"object\":\"extract_run\",\"id\":\"%s\"}}",
             id);
    CHECK(plan_of(body, &p, &e) == -1);
    CHECK_STR(e.code, "invalid_id");
    CHECK(strstr(e.message, "ZZZZ") != NULL);
    CHECK(strstr(e.message, "ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ") ==
          NULL);
}

static void test_json_refusals(void)
{
    struct webhook_plan p;
    struct api_error e;
    const char dup[] = "{\"eventId\":\"e\",\"eventType\":\"extract_run.failed\",\"payload\":"
                       "{\"object\":\"extract_run\",\"id\":\"exr_a\",\"id\":\"exr_b\"}}";
    const char bad_utf8[] =
        "{\"eventId\":\"e\",\"eventType\":\"x\",\"payload\":{\"a\":\"\xc3\x28\"}}";
    const char nul[] = "{\"eventId\":\"e\",\"eventType\":\"x\",\"payload\":{\"a\":\"\\u0000\"}}";
    char raw_nul[] = "{\"eventId\":\"e\",\"eventType\":\"x\",\"payload\":{}}";

    CHECK(plan_of(dup, &p, &e) == -1);
    CHECK(e.status == 400);
    CHECK_STR(e.code, "malformed_json");
    CHECK(strstr(e.message, "duplicate") != NULL);
    CHECK(plan_of(bad_utf8, &p, &e) == -1);
    CHECK_STR(e.code, "malformed_json");
    CHECK(strstr(e.message, "UTF-8") != NULL);
    CHECK(plan_of(nul, &p, &e) == -1);
    CHECK_STR(e.code, "malformed_json");
    raw_nul[10] = '\0';
    CHECK(webhook_plan(raw_nul, sizeof(raw_nul) - 1, RULES, N_RULES, NOW, &p, &e) == -1);
    CHECK_STR(e.code, "malformed_json");
    CHECK(plan_of("", &p, &e) == -1);
    CHECK_STR(e.code, "malformed_json");
    CHECK(plan_of("{\"eventId\":\"e\"", &p, &e) == -1);
    CHECK_STR(e.code, "malformed_json");
    CHECK(webhook_plan(NULL, 0, RULES, N_RULES, NOW, &p, &e) == -1);
}

/* The extraction output is checked as JSON but not built: what it holds
 * cannot change the plan, bad bytes anywhere in it still refuse the body. */
static void test_output_is_checked_not_read(void)
{
    struct webhook_plan p;
    struct api_error e;
    const char *head = "{\"eventId\":\"e\",\"eventType\":\"extract_run.processed\",\"payload\":"
                       "{\"object\":\"extract_run\",\"id\":\"exr_a\",";
    char b[512];

    /* Duplicates inside the output are not looked at; a file whose member
     * name is written with an escape is still read. */
    snprintf(b, sizeof(b),
             "%s\"output\":{\"x\":1,\"x\":{\"id\":\"file_no\"}},"
             "\"fil\\u0065\":{\"id\":\"file_a\",\"pages\":[{\"n\":1}]}}}",
             head);
    CHECK(plan_of(b, &p, &e) == 0);
    CHECK(p.n == 2 && has(&p, RES_EXTRACT_RUN, "exr_a") && has(&p, RES_FILE, "file_a"));
    CHECK(!has(&p, RES_FILE, "file_no"));

    /* Duplicates in what is read are refused, deep in files too. */
    snprintf(b, sizeof(b), "%s\"files\":[{\"id\":\"file_a\",\"id\":\"file_b\"}]}}", head);
    CHECK(plan_of(b, &p, &e) == -1);
    CHECK(strstr(e.message, "duplicate") != NULL);

    /* Broken JSON inside the output, each named with its place. */
    static const struct {
        const char *output, *why;
    } bad[] = {
        {"{\"a\":[1,2,]}", "invalid JSON"},
        {"{\"a\":\"\xc3\x28\"}", "invalid UTF-8"},
        {"{\"a\":\"\xed\xa0\x80\"}", "invalid UTF-8"}, /* an encoded surrogate */
        {"{\"a\":\"\\u0000\"}", "NUL character"},
        {"{\"a\":\"\\udc00\"}", "invalid JSON"}, /* a low surrogate alone */
        {"{\"a\":01}", "invalid JSON"},
        {"{\"a\":tru}", "invalid JSON"},
        {"{\"a\" 1}", "invalid JSON"},
        {"{\"a\":\"tab\there\"}", "invalid JSON"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(b, sizeof(b), "%s\"output\":%s}}", head, bad[i].output);
        CHECK(plan_of(b, &p, &e) == -1);
        CHECK_STR(e.code, "malformed_json");
        CHECK(strstr(e.message, bad[i].why) != NULL && strstr(e.message, "line 1, column") != NULL);
        CHECK(p.n == 0);
    }
    /* The place is the offending character's, counted in characters. */
    CHECK(plan_of("{\"eventId\":\"\xc3\xa9\",\n \"x\": [1,,2]}", &p, &e) == -1);
    CHECK(strstr(e.message, "invalid JSON at line 2, column 10") != NULL);
}

static void test_deep_nesting_does_not_crash(void)
{
    struct webhook_plan p;
    struct api_error e;
    size_t depth = 100000, len = 0;
    char *b = malloc(2 * depth + 128);

    len += (size_t)sprintf(b, "{\"eventId\":\"e\",\"eventType\":\"x\",\"payload\":{\"a\":");
    memset(b + len, '[', depth);
    len += depth;
    memset(b + len, ']', depth);
    len += depth;
    memcpy(b + len, "}}", 3);
    len += 2;
    CHECK(webhook_plan(b, len, RULES, N_RULES, NOW, &p, &e) == -1);
    CHECK_STR(e.code, "malformed_json");
    free(b);
}

int main(void)
{
    test_processed_event_deletes_run_and_file();
    test_failed_event_deletes_run_only();
    test_signed_data_url_uses_event_type_prefix();
    test_files_deduplicated_nulls_skipped();
    test_file_count_bound();
    test_unknown_event_is_ignored();
    test_wildcard_and_first_rule_wins();
    test_delay_sets_not_before();
    test_bad_run_ids_name_the_field();
    test_envelope_errors();
    test_messages_quote_little_input();
    test_json_refusals();
    test_output_is_checked_not_read();
    test_deep_nesting_does_not_crash();
    return check_done();
}
