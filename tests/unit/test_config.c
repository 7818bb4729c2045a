/* test_config.c: the config table: defaults, errors that name their key,
 * secret references and their resolution, redaction in `check` output, and
 * the shipped config files and docs staying in step with the table. */
#include "check.h"
#include "config.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tmpdir[] = "/tmp/dg-test-config-XXXXXX";

/* Loads json and expects it refused with a message starting with prefix. */
static void expect_error(const char *json, const char *prefix)
{
    struct config cfg;
    char err[512] = "";

    int rc = config_load_string(&cfg, json, err, sizeof(err));
    CHECK(rc == -1);
    if (strncmp(err, prefix, strlen(prefix)) != 0) {
        check_failed++;
        fprintf(stderr, "expected error starting with \"%s\", got \"%s\" for %s\n", prefix, err,
                json);
    } else {
        check_passed++;
    }
    config_free(&cfg);
}

static int load_ok(struct config *cfg, const char *json)
{
    char err[512] = "";
    int rc = config_load_string(cfg, json, err, sizeof(err));

    if (rc != 0)
        fprintf(stderr, "unexpected error \"%s\" for %s\n", err, json);
    return rc;
}

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");

    CHECK(f != NULL);
    if (f == NULL)
        return;
    CHECK(fwrite(data, 1, len, f) == len);
    fclose(f);
}

static char *print_to_string(const struct config *cfg)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    if (f == NULL)
        return NULL;
    config_print(cfg, f);
    fclose(f);
    return buf;
}

#define TWO_ACCOUNTS                                                                               \
    "{\"accounts\": [{\"id\": \"eu\", \"base_url\": \"https://api.eu1.extend.ai\","                \
    " \"token\": \"env:EU_TOKEN\", \"workspace_id\": \"ws_eu\", \"rate_per_second\": 2,"           \
    " \"signing_secrets\": [\"env:EU_WSS\"]},"                                                     \
    " {\"id\": \"us-2\", \"token\": \"file:/run/us\", \"max_in_flight\": 9,"                       \
    " \"signing_secrets\": [\"env:US_WSS\", \"env:US_WSS_OLD\"]}]"

static void test_legacy_extend_block_is_the_account_default(void)
{
    struct config cfg;

    CHECK(load_ok(&cfg, "{\"extend\": {\"base_url\": \"https://api.eu1.extend.ai\","
                        " \"rate_per_second\": 3}, \"webhooks\": {\"signing_secrets\":"
                        " [\"env:W1\", \"env:W2\"]}}") == 0);
    CHECK(cfg.n_accounts == 1 && cfg.legacy_extend);
    CHECK_STR(cfg.accounts[0].id, "default");
    CHECK_STR(cfg.accounts[0].base_url, "https://api.eu1.extend.ai");
    CHECK(cfg.accounts[0].rate_per_second == 3.0 && cfg.accounts[0].max_in_flight == 4);
    CHECK(cfg.accounts[0].n_signing_secrets == 2);
    CHECK_STR(cfg.accounts[0].signing_secrets[1].ref, "env:W2");
    CHECK(config_account_find(&cfg, "default", 0) == 0);
    CHECK(config_account_find(&cfg, "eu", 0) == -1);
    /* check shows the block where the file has it, and the account. */
    char *out = print_to_string(&cfg);
    CHECK(out != NULL && strstr(out, "\"extend\"") != NULL && strstr(out, "\"accounts\"") != NULL);
    free(out);
    config_free(&cfg);
}

static void test_accounts_form_loads_each_account(void)
{
    struct config cfg;

    CHECK(load_ok(&cfg, TWO_ACCOUNTS ", \"clients\": [{\"id\": \"crm\", \"secrets\": [\"env:C\"],"
                                     " \"accounts\": [\"us-2\"]}, {\"id\": \"all\","
                                     " \"secrets\": [\"env:C\"]}]}") == 0);
    CHECK(cfg.n_accounts == 2 && !cfg.legacy_extend);
    CHECK_STR(cfg.accounts[0].id, "eu");
    CHECK_STR(cfg.accounts[0].workspace_id, "ws_eu");
    CHECK(cfg.accounts[0].rate_per_second == 2.0);
    CHECK_STR(cfg.accounts[1].id, "us-2");
    CHECK_STR(cfg.accounts[1].base_url, "https://api.extend.ai");
    CHECK_STR(cfg.accounts[1].token.ref, "file:/run/us");
    CHECK(cfg.accounts[1].max_in_flight == 9 && cfg.accounts[1].n_signing_secrets == 2);
    CHECK(config_account_find(&cfg, "us-2", 0) == 1);
    CHECK(config_account_find(&cfg, "us-2x", 4) == 1);
    CHECK(cfg.clients[0].n_accounts == 1 && cfg.clients[0].account_mask == 1u << 1);
    CHECK(cfg.clients[1].n_accounts == 0 && cfg.clients[1].account_mask == UINT32_MAX);
    /* check: every account, its token redacted; no legacy block. */
    char *out = print_to_string(&cfg);
    CHECK(out != NULL && strstr(out, "\"extend\"") == NULL);
    CHECK(out != NULL && strstr(out, "\"ref\": \"env:EU_TOKEN\"") != NULL);
    CHECK(out != NULL && strstr(out, "\"ref\": \"file:/run/us\"") != NULL);
    free(out);
    config_free(&cfg);
}

static void test_accounts_are_checked(void)
{
    /* The two forms are one or the other. */
    expect_error("{\"extend\": {\"rate_per_second\": 1}, \"accounts\": [{\"id\": \"a\","
                 " \"token\": \"env:T\", \"signing_secrets\": [\"env:W\"]}]}",
                 "extend: is the legacy form");
    expect_error("{\"webhooks\": {\"signing_secrets\": [\"env:W\"]}, \"accounts\": [{\"id\": \"a\","
                 " \"token\": \"env:T\", \"signing_secrets\": [\"env:W\"]}]}",
                 "webhooks.signing_secrets: with accounts");
    expect_error("{\"accounts\": []}", "accounts: must have 1 to 16 entries");
    expect_error("{\"accounts\": [{\"id\": \"a\", \"signing_secrets\": [\"env:W\"]}]}",
                 "accounts[0].token: required");
    expect_error("{\"accounts\": [{\"id\": \"a\", \"token\": \"env:T\"}]}",
                 "accounts[0].signing_secrets: required");
    expect_error("{\"accounts\": [{\"token\": \"env:T\", \"signing_secrets\": [\"env:W\"]}]}",
                 "accounts[0].id: required");
    expect_error("{\"accounts\": [{\"id\": \"a\", \"token\": \"env:T\", \"signing_secrets\":"
                 " [\"env:W\"], \"rate\": 1}]}",
                 "accounts[0].rate: unknown key");
    expect_error("{\"accounts\": [{\"id\": \"a\", \"token\": \"sk_live_x\", \"signing_secrets\":"
                 " [\"env:W\"]}]}",
                 "accounts[0].token: must be \"env:NAME\"");
    expect_error("{\"accounts\": [{\"id\": \"a\", \"token\": \"env:T\", \"signing_secrets\":"
                 " [\"env:W\"], \"base_url\": \"http://api.extend.ai\"}]}",
                 "accounts[0].base_url: ");
    /* Ids: [a-z0-9_-]{1,32}, unique. */
    static const char *const bad_ids[] = {"EU", "e u", "eu/1",
                                          "",   "é",   "a234567890123456789012345678901234"};
    for (size_t i = 0; i < sizeof(bad_ids) / sizeof(bad_ids[0]); i++) {
        char json[256];
        snprintf(json, sizeof(json),
                 "{\"accounts\": [{\"id\": \"%s\", \"token\": \"env:T\", \"signing_secrets\":"
                 " [\"env:W\"]}]}",
                 bad_ids[i]);
        expect_error(json, "accounts[0].id: ");
    }
    expect_error("{\"accounts\": [{\"id\": \"eu\", \"token\": \"env:T\", \"signing_secrets\":"
                 " [\"env:W\"]}, {\"id\": \"eu\", \"token\": \"env:U\", \"signing_secrets\":"
                 " [\"env:W\"]}]}",
                 "accounts[1].id: duplicate account id \"eu\"");
    /* clients[].accounts names configured accounts, once each. */
    expect_error(TWO_ACCOUNTS ", \"clients\": [{\"id\": \"crm\", \"secrets\": [\"env:C\"],"
                              " \"accounts\": [\"us\"]}]}",
                 "clients[0].accounts[0]: no account \"us\" is configured");
    expect_error(TWO_ACCOUNTS ", \"clients\": [{\"id\": \"crm\", \"secrets\": [\"env:C\"],"
                              " \"accounts\": [\"eu\", \"eu\"]}]}",
                 "clients[0].accounts: \"eu\" is listed twice");
    expect_error(TWO_ACCOUNTS ", \"clients\": [{\"id\": \"crm\", \"secrets\": [\"env:C\"],"
                              " \"accounts\": []}]}",
                 "clients[0].accounts: must have 1 to 16 entries");
    expect_error(TWO_ACCOUNTS ", \"clients\": [{\"id\": \"crm\", \"secrets\": [\"env:C\"],"
                              " \"accounts\": [\"EU\"]}]}",
                 "clients[0].accounts[0]: may only hold");
    /* Without accounts, a client may only name "default". */
    expect_error("{\"clients\": [{\"id\": \"crm\", \"secrets\": [\"env:C\"],"
                 " \"accounts\": [\"eu\"]}]}",
                 "clients[0].accounts[0]: no account \"eu\"");
}

static void test_account_secrets_resolve_per_account(void)
{
    struct config cfg;
    char err[512] = "";

    setenv("DGT_EU_TOKEN", "sk_eu_secret", 1);
    setenv("DGT_EU_WSS", "wss_eu", 1);
    unsetenv("DGT_US_TOKEN");
    CHECK(load_ok(&cfg, "{\"accounts\": [{\"id\": \"eu\", \"token\": \"env:DGT_EU_TOKEN\","
                        " \"signing_secrets\": [\"env:DGT_EU_WSS\"]}, {\"id\": \"us\","
                        " \"token\": \"env:DGT_US_TOKEN\", \"signing_secrets\":"
                        " [\"env:DGT_EU_WSS\"]}]}") == 0);
    CHECK(config_resolve_secrets(&cfg, err, sizeof(err)) == -1);
    CHECK(strncmp(err, "accounts[1].token: env:DGT_US_TOKEN", 35) == 0);
    setenv("DGT_US_TOKEN", "sk_us_secret", 1);
    CHECK(config_resolve_secrets(&cfg, err, sizeof(err)) == 0);
    CHECK(cfg.accounts[0].token.len == 12 && memcmp(cfg.accounts[0].token.value, "sk_eu", 5) == 0);
    CHECK(cfg.accounts[1].token.len == 12 && memcmp(cfg.accounts[1].token.value, "sk_us", 5) == 0);
    char *out = print_to_string(&cfg);
    CHECK(out != NULL && strstr(out, "sk_eu") == NULL && strstr(out, "sk_us") == NULL);
    free(out);
    config_free(&cfg);
}

static void test_defaults_are_the_documented_ones(void)
{
    struct config cfg;

    CHECK(load_ok(&cfg, "{}") == 0);
    CHECK_STR(cfg.listen.address, "127.0.0.1");
    CHECK(cfg.listen.port == 8080);
    CHECK(cfg.listen.tls.cert_file == NULL && cfg.listen.tls.key_file == NULL);
    CHECK(cfg.listen.tls.client_ca_file == NULL);
    CHECK_STR(cfg.admin.address, "127.0.0.1");
    CHECK(cfg.admin.port == 8081);
    CHECK_STR(cfg.admin.token.ref, "env:DG_ADMIN_TOKEN");
    CHECK(cfg.admin.token.value == NULL);
    CHECK_STR(cfg.accounts[0].base_url, "https://api.extend.ai");
    CHECK_STR(cfg.accounts[0].api_version, "2026-02-09");
    CHECK_STR(cfg.accounts[0].token.ref, "env:EXTEND_API_TOKEN");
    CHECK(cfg.accounts[0].workspace_id == NULL && cfg.accounts[0].ca_file == NULL);
    CHECK(cfg.accounts[0].timeout_ms == 30000 && cfg.accounts[0].connect_timeout_ms == 10000);
    CHECK(cfg.accounts[0].rate_per_second == 8.0 && cfg.accounts[0].max_in_flight == 4);
    CHECK(!cfg.accounts[0].dry_run);
    CHECK_STR(cfg.webhooks.path, "/webhooks/extend");
    CHECK(cfg.accounts[0].n_signing_secrets == 1);
    CHECK_STR(cfg.accounts[0].signing_secrets[0].ref, "env:EXTEND_WEBHOOK_SECRET");
    CHECK(cfg.webhooks.max_age_seconds == 300 && cfg.webhooks.max_future_seconds == 60);
    CHECK(cfg.webhooks.n_rules == 2);
    CHECK_STR(cfg.webhooks.rules[0].event, "extract_run.processed");
    CHECK_STR(cfg.webhooks.rules[1].event, "extract_run.failed");
    CHECK(cfg.webhooks.rules[0].deletes == RULE_DELETE_RUN);
    CHECK(cfg.webhooks.rules[1].deletes == RULE_DELETE_RUN);
    CHECK(cfg.webhooks.rules[0].delay_seconds == 0);
    CHECK(cfg.internal.timestamp_tolerance_seconds == 300);
    CHECK(cfg.internal.max_batch_items == 1000);
    CHECK(cfg.n_clients == 0);
    CHECK_STR(cfg.queue.backend, "sqlite");
    CHECK_STR(cfg.queue.path, "var/queue.db");
    CHECK(cfg.queue.idempotency_ttl_seconds == 604800);
    CHECK(cfg.retry.initial_ms == 1000 && cfg.retry.max_ms == 300000);
    CHECK(cfg.retry.give_up_after_seconds == 259200);
    CHECK_STR(cfg.audit.path, "var/audit.jsonl");
    CHECK_STR(cfg.audit.key.ref, "env:DG_AUDIT_KEY");
    CHECK(cfg.audit.rotate_bytes == 67108864);
    CHECK(cfg.receipts.signing_key.ref == NULL && cfg.receipts.enabled);
    CHECK(cfg.limits.max_body_bytes == 1048576 && cfg.limits.max_header_bytes == 16384);
    CHECK(cfg.limits.request_timeout_seconds == 30);
    CHECK_STR(cfg.log.level, "info");
    config_free(&cfg);
    config_free(&cfg); /* safe twice: a failed reload path frees again */
}

static void test_values_from_the_file_override_defaults(void)
{
    struct config cfg;

    CHECK(load_ok(&cfg, "{\"extend\": {\"rate_per_second\": 2.5, \"dry_run\": true,"
                        " \"workspace_id\": \"ws_A-1\"},"
                        " \"webhooks\": {\"rules\": [{\"event\": \"extract_run.*\","
                        " \"delete\": [\"file\", \"run\"], \"delay_seconds\": 86400}]},"
                        " \"clients\": [{\"id\": \"crm\", \"secrets\": [\"env:A\", \"file:/x\"],"
                        " \"cert_subject\": \"crm.internal\"}],"
                        " \"audit\": {\"rotate_bytes\": 17179869184},"
                        " \"receipts\": {\"signing_key\": \"file:var/receipt-key.pem\"}}") == 0);
    CHECK(cfg.accounts[0].rate_per_second == 2.5);
    CHECK(cfg.accounts[0].dry_run);
    CHECK_STR(cfg.accounts[0].workspace_id, "ws_A-1");
    CHECK(cfg.webhooks.n_rules == 1);
    CHECK_STR(cfg.webhooks.rules[0].event, "extract_run.*");
    CHECK(cfg.webhooks.rules[0].deletes == (RULE_DELETE_RUN | RULE_DELETE_FILE));
    CHECK(cfg.webhooks.rules[0].delay_seconds == 86400);
    CHECK(cfg.n_clients == 1 && cfg.clients[0].n_secrets == 2);
    CHECK_STR(cfg.clients[0].id, "crm");
    CHECK_STR(cfg.clients[0].secrets[1].ref, "file:/x");
    CHECK_STR(cfg.clients[0].cert_subject, "crm.internal");
    CHECK(cfg.audit.rotate_bytes == 17179869184LL);
    CHECK_STR(cfg.receipts.signing_key.ref, "file:var/receipt-key.pem");
    config_free(&cfg);

    /* An empty rule list is allowed: every webhook is then ignored. */
    CHECK(load_ok(&cfg, "{\"webhooks\": {\"rules\": []}, \"admin\": {\"token\": null}}") == 0);
    CHECK(cfg.webhooks.n_rules == 0 && cfg.admin.token.ref == NULL);
    config_free(&cfg);
}

static void test_unknown_keys_are_named(void)
{
    expect_error("{\"bogus\": 1}", "bogus: unknown key");
    /* Receipts on by default; turned off only in words, never half way. */
    expect_error("{\"receipts\": {\"enabled\": false, \"signing_key\": \"env:K\"}}",
                 "receipts.signing_key: is set while receipts.enabled is false");
    expect_error("{\"receipts\": {\"enabled\": \"no\"}}",
                 "receipts.enabled: must be true or false");
    expect_error("{\"listen\": {\"tls\": {\"cert\": \"x\"}}}", "listen.tls.cert: unknown key");
    expect_error("{\"extend\": {\"rate\": 1}}", "extend.rate: unknown key");
    expect_error("{\"webhooks\": {\"rules\": [{\"event\": \"a\", \"delete\": [\"run\"]},"
                 " {\"event\": \"b\", \"deletes\": [\"run\"]}]}}",
                 "webhooks.rules[1].deletes: unknown key");
    expect_error("{\"clients\": [{\"id\": \"a\", \"secrets\": [\"env:A\"], \"name\": \"x\"}]}",
                 "clients[0].name: unknown key");
    expect_error("{\"listen\": {\"port\": 1, \"port\": 2}}", "config: line");
    expect_error("[]", "config: must be a JSON object");
    expect_error("{", "config: line");
}

static void test_wrong_types_are_named(void)
{
    expect_error("{\"listen\": {\"port\": \"8080\"}}", "listen.port: must be an integer");
    expect_error("{\"listen\": {\"port\": 8080.0}}", "listen.port: must be an integer");
    expect_error("{\"listen\": 8080}", "listen: must be an object");
    expect_error("{\"listen\": {\"tls\": []}}", "listen.tls: must be an object");
    expect_error("{\"extend\": {\"dry_run\": 1}}", "extend.dry_run: must be true or false");
    expect_error("{\"extend\": {\"rate_per_second\": \"8\"}}",
                 "extend.rate_per_second: must be a number");
    expect_error("{\"extend\": {\"base_url\": null}}", "extend.base_url: must be a string");
    expect_error("{\"webhooks\": {\"rules\": {}}}", "webhooks.rules: must be an array");
    expect_error("{\"webhooks\": {\"rules\": [1]}}", "webhooks.rules[0]: must be an object");
    expect_error("{\"webhooks\": {\"signing_secrets\": \"env:A\"}}",
                 "webhooks.signing_secrets: must be an array");
    expect_error("{\"clients\": {}}", "clients: must be an array");
    expect_error("{\"audit\": {\"key\": null}}", "audit.key: must be a string");
}

static void test_reserved_client_ids(void)
{
    expect_error("{\"clients\": [{\"id\": \"extend\", \"secrets\": [\"env:X\"]}]}",
                 "clients[0].id: \"extend\" is reserved");
    expect_error("{\"clients\": [{\"id\": \"operator\", \"secrets\": [\"env:X\"]}]}",
                 "clients[0].id: \"operator\" is reserved");
}

static void test_bounds_are_named(void)
{
    expect_error("{\"extend\": {\"rate_per_second\": 1001}}",
                 "extend.rate_per_second: must be between 0 and 1000");
    expect_error("{\"extend\": {\"rate_per_second\": -0.5}}", "extend.rate_per_second: must be");
    expect_error("{\"listen\": {\"port\": 0}}", "listen.port: must be between 1 and 65535");
    expect_error("{\"admin\": {\"port\": 65536}}", "admin.port: must be between 0 and 65535");
    expect_error("{\"extend\": {\"timeout_ms\": 99}}", "extend.timeout_ms: must be between");
    expect_error("{\"internal\": {\"max_batch_items\": 1001}}", "internal.max_batch_items:");
    expect_error("{\"audit\": {\"rotate_bytes\": 17179869185}}", "audit.rotate_bytes:");
    expect_error("{\"retry\": {\"initial_ms\": 5000, \"max_ms\": 4000}}",
                 "retry.max_ms: must be at least retry.initial_ms");
    expect_error("{\"webhooks\": {\"rules\": [{\"event\": \"a\", \"delay_seconds\": 31536001}]}}",
                 "webhooks.rules[0].delay_seconds: must be between 0 and 31536000");
    expect_error("{\"webhooks\": {\"signing_secrets\": []}}",
                 "webhooks.signing_secrets: must have 1 to 8 entries");
    expect_error("{\"webhooks\": {\"signing_secrets\": [\"env:A\", \"env:A\", \"env:A\", "
                 "\"env:A\", \"env:A\", \"env:A\", \"env:A\", \"env:A\", \"env:A\"]}}",
                 "webhooks.signing_secrets: must have 1 to 8 entries");
    expect_error("{\"extend\": {\"workspace_id\": \"\"}}", "extend.workspace_id: must be 1 to 128");
    expect_error("{\"extend\": {\"workspace_id\": \"ws/1\"}}", "extend.workspace_id: may only");
    expect_error("{\"extend\": {\"api_version\": \"2026\\r\\nX: y\"}}",
                 "extend.api_version: must not contain control characters");
    expect_error("{\"log\": {\"level\": \"verbose\"}}", "log.level: must be one of");
    expect_error("{\"queue\": {\"backend\": \"mysql\"}}",
                 "queue.backend: \"mysql\" is not a backend");
    expect_error("{\"queue\": {\"backend\": \"postgres\"}}",
                 "queue.url: is required with queue.backend \"postgres\"");
    expect_error("{\"queue\": {\"backend\": \"postgres\", \"url\": "
                 "\"postgresql://dg:hunter2@db/dg\"}}",
                 "queue.url: holds a password");
    expect_error("{\"queue\": {\"url\": \"host=db password=hunter2\"}}",
                 "queue.url: holds a password");
    expect_error("{\"queue\": {\"replica_id\": \"a b\"}}", "queue.replica_id: only");
    expect_error("{\"webhooks\": {\"path\": \"webhooks\"}}", "webhooks.path: must start with '/'");
    expect_error("{\"webhooks\": {\"path\": \"/v1/deletions\"}}", "webhooks.path: must not be");
    expect_error("{\"listen\": {\"tls\": {\"cert_file\": \"c.pem\"}}}", "listen.tls.key_file:");
    expect_error("{\"listen\": {\"tls\": {\"client_ca_file\": \"ca.pem\"}}}",
                 "listen.tls.client_ca_file: needs");
    expect_error("{\"admin\": {\"port\": 8080}}", "admin.port: must differ");
}

static void test_rules_and_clients_are_checked_inside(void)
{
    expect_error(
        "{\"webhooks\": {\"rules\": [{\"event\": \"a\", \"delete\": [\"run\", \"run\"]}]}}",
        "webhooks.rules[0].delete: \"run\" is listed twice");
    expect_error("{\"webhooks\": {\"rules\": [{\"event\": \"a\", \"delete\": []}]}}",
                 "webhooks.rules[0].delete: must name");
    expect_error("{\"webhooks\": {\"rules\": [{\"event\": \"a\", \"delete\": [\"workflow\"]}]}}",
                 "webhooks.rules[0].delete: entry 0 must be");
    expect_error("{\"webhooks\": {\"rules\": [{\"delete\": [\"run\"]}]}}",
                 "webhooks.rules[0].event: required");
    expect_error("{\"webhooks\": {\"rules\": [{\"event\": \"extract_*.processed\"}]}}",
                 "webhooks.rules[0].event: may only");
    expect_error("{\"clients\": [{\"id\": \"crm\", \"secrets\": [\"env:A\"]},"
                 " {\"id\": \"crm\", \"secrets\": [\"env:B\"]}]}",
                 "clients[1].id: duplicate client id \"crm\"");
    expect_error("{\"clients\": [{\"id\": \"CRM\", \"secrets\": [\"env:A\"]}]}",
                 "clients[0].id: may only hold");
    expect_error("{\"clients\": [{\"id\": \"crm\"}]}", "clients[0].secrets: required");
    expect_error("{\"clients\": [{\"id\": \"crm\", \"secrets\": []}]}",
                 "clients[0].secrets: must have 1 to 8 entries");
    expect_error("{\"clients\": [{\"secrets\": [\"env:A\"]}]}", "clients[0].id: required");
}

static void test_literal_secrets_are_refused_without_echo(void)
{
    struct config cfg;
    char err[512] = "";
    const char *cases[][2] = {
        {"{\"extend\": {\"token\": \"sk_live_SuperSecret123\"}}", "extend.token: "},
        {"{\"webhooks\": {\"signing_secrets\": [\"env:A\", \"wss_SuperSecret123\"]}}",
         "webhooks.signing_secrets[1]: "},
        {"{\"clients\": [{\"id\": \"a\", \"secrets\": [\"whsec_SuperSecret123\"]}]}",
         "clients[0].secrets[0]: "},
        {"{\"audit\": {\"key\": \"env:1SuperSecret123\"}}", "audit.key: "},
        {"{\"admin\": {\"token\": \"env:Super Secret123\"}}", "admin.token: "},
        {"{\"admin\": {\"token\": \"file:\"}}", "admin.token: "},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        CHECK(config_load_string(&cfg, cases[i][0], err, sizeof(err)) == -1);
        CHECK(strncmp(err, cases[i][1], strlen(cases[i][1])) == 0);
        CHECK(strstr(err, "never written") != NULL);
        CHECK(strstr(err, "SuperSecret") == NULL);
        config_free(&cfg);
    }
}

static void test_base_url_rules(void)
{
    struct config cfg;

    expect_error("{\"extend\": {\"base_url\": \"http://api.extend.ai\"}}",
                 "extend.base_url: http:// is only allowed");
    expect_error("{\"extend\": {\"base_url\": \"http://127.0.0.1.evil.com\"}}",
                 "extend.base_url: http:// is only allowed");
    expect_error("{\"extend\": {\"base_url\": \"http://localhost@evil.com\"}}", "extend.base_url:");
    expect_error("{\"extend\": {\"base_url\": \"ftp://127.0.0.1\"}}", "extend.base_url:");
    expect_error("{\"extend\": {\"base_url\": \"https://\"}}", "extend.base_url: has no host");
    expect_error("{\"extend\": {\"base_url\": \"https://h:99999\"}}", "extend.base_url: bad port");
    /* A host libcurl would refuse is refused here, not at the first DELETE. */
    expect_error("{\"extend\": {\"base_url\": \"https://a{b}.example\"}}",
                 "extend.base_url: host may only hold");
    expect_error("{\"extend\": {\"base_url\": \"https://[]\"}}", "extend.base_url: has no host");

    CHECK(load_ok(&cfg, "{\"extend\": {\"base_url\": \"http://127.0.0.1:9000/\"}}") == 0);
    CHECK_STR(cfg.accounts[0].base_url, "http://127.0.0.1:9000");
    config_free(&cfg);
    CHECK(load_ok(&cfg, "{\"extend\": {\"base_url\": \"http://[::1]:9000/v1//\"}}") == 0);
    CHECK_STR(cfg.accounts[0].base_url, "http://[::1]:9000/v1");
    config_free(&cfg);
    CHECK(load_ok(&cfg, "{\"extend\": {\"base_url\": \"http://localhost\"}}") == 0);
    config_free(&cfg);
    CHECK(load_ok(&cfg, "{\"extend\": {\"base_url\": \"https://eu.api.extend.ai/\"}}") == 0);
    CHECK_STR(cfg.accounts[0].base_url, "https://eu.api.extend.ai");
    config_free(&cfg);
}

/* A config whose every secret points at the test's own env vars and files. */
static int load_secret_config(struct config *cfg, const char *audit_ref, const char *client_ref)
{
    char json[2048];

    snprintf(json, sizeof(json),
             "{\"admin\": {\"token\": \"env:DGT_ADMIN\"},"
             " \"extend\": {\"token\": \"file:%s/token\"},"
             " \"webhooks\": {\"signing_secrets\": [\"env:DGT_WSS\", \"file:%s/wss2\"]},"
             " \"audit\": {\"key\": \"%s\"},"
             " \"clients\": [{\"id\": \"crm\", \"secrets\": [\"%s\"]}]}",
             tmpdir, tmpdir, audit_ref, client_ref);
    return load_ok(cfg, json);
}

static void test_secret_resolution(void)
{
    struct config cfg;
    enum { SECRET_MAX = 64 * 1024 }; /* config_secret.c's limit */
    char path[256], ref[300], err[512];
    static char big[SECRET_MAX + 10];

    setenv("DGT_ADMIN", "admin-secret-value", 1);
    setenv("DGT_WSS", "wss_webhook-secret-value", 1);
    setenv("DGT_AUDIT", "audit-secret-value", 1);
    /* base64 of 24 bytes */
    setenv("DGT_CRM", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", 1);
    unsetenv("DGT_MISSING");
    snprintf(path, sizeof(path), "%s/token", tmpdir);
    write_file(path, "token-secret-value\r\n", 20);
    snprintf(path, sizeof(path), "%s/wss2", tmpdir);
    write_file(path, "two\n\n", 5);

    CHECK(load_secret_config(&cfg, "env:DGT_AUDIT", "env:DGT_CRM") == 0);
    CHECK(config_resolve_secrets(&cfg, err, sizeof(err)) == 0);
    CHECK_STR((char *)cfg.admin.token.value, "admin-secret-value");
    CHECK(cfg.admin.token.len == 18);
    CHECK_STR((char *)cfg.accounts[0].token.value, "token-secret-value"); /* "\r\n" dropped */
    CHECK(cfg.accounts[0].token.len == 18);
    CHECK_STR((char *)cfg.accounts[0].signing_secrets[1].value, "two\n"); /* only one dropped */
    CHECK(cfg.accounts[0].signing_secrets[1].len == 4);
    CHECK_STR((char *)cfg.clients[0].secrets[0].value, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    CHECK(cfg.receipts.signing_key.value == NULL); /* not configured, not read */

    /* `check` output shows references, never a byte of a value. */
    char *printed = print_to_string(&cfg);
    CHECK(printed != NULL);
    if (printed != NULL) {
        CHECK(strstr(printed, "secret-value") == NULL);
        CHECK(strstr(printed, "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw") == NULL);
        CHECK(strstr(printed, "two") == NULL);
        CHECK(strstr(printed, "\"ref\": \"env:DGT_ADMIN\"") != NULL);
        CHECK(strstr(printed, "\"value\": \"(redacted)\"") != NULL);
        CHECK(strstr(printed, "\"signing_key\": null") != NULL);
        free(printed);
    }

    /* A reload reads the new value; a failed one keeps the old values. */
    setenv("DGT_ADMIN", "admin-rotated", 1);
    CHECK(config_resolve_secrets(&cfg, err, sizeof(err)) == 0);
    CHECK_STR((char *)cfg.admin.token.value, "admin-rotated");
    setenv("DGT_ADMIN", "admin-third", 1);
    unsetenv("DGT_WSS");
    CHECK(config_resolve_secrets(&cfg, err, sizeof(err)) == -1);
    CHECK(strncmp(err, "webhooks.signing_secrets[0]: env:DGT_WSS", 40) == 0);
    CHECK_STR((char *)cfg.admin.token.value, "admin-rotated");
    CHECK_STR((char *)cfg.accounts[0].signing_secrets[0].value, "wss_webhook-secret-value");
    setenv("DGT_WSS", "wss_webhook-secret-value", 1);
    config_free(&cfg);

    /* A missing env var names the key and the reference. */
    CHECK(load_secret_config(&cfg, "env:DGT_MISSING", "env:DGT_CRM") == 0);
    CHECK(config_resolve_secrets(&cfg, err, sizeof(err)) == -1);
    CHECK(strstr(err, "audit.key: env:DGT_MISSING") == err);
    config_free(&cfg);

    /* An empty env var is as good as missing. */
    setenv("DGT_EMPTY", "", 1);
    CHECK(load_secret_config(&cfg, "env:DGT_EMPTY", "env:DGT_CRM") == 0);
    CHECK(config_resolve_secrets(&cfg, err, sizeof(err)) == -1);
    CHECK(strstr(err, "audit.key: env:DGT_EMPTY") == err);
    config_free(&cfg);

    /* Files: missing, empty, only a newline, too large. */
    const char *bad_files[] = {"nope", "empty", "newline", "big"};
    snprintf(path, sizeof(path), "%s/empty", tmpdir);
    write_file(path, "", 0);
    snprintf(path, sizeof(path), "%s/newline", tmpdir);
    write_file(path, "\n", 1);
    memset(big, 'k', sizeof(big));
    snprintf(path, sizeof(path), "%s/big", tmpdir);
    write_file(path, big, sizeof(big));
    for (size_t i = 0; i < sizeof(bad_files) / sizeof(bad_files[0]); i++) {
        snprintf(ref, sizeof(ref), "file:%s/%s", tmpdir, bad_files[i]);
        CHECK(load_secret_config(&cfg, ref, "env:DGT_CRM") == 0);
        CHECK(config_resolve_secrets(&cfg, err, sizeof(err)) == -1);
        CHECK(strncmp(err, "audit.key: file:", 16) == 0);
        CHECK(strstr(err, "kkkk") == NULL);
        config_free(&cfg);
    }
    /* Exactly 64 KiB plus a newline is still accepted. */
    big[SECRET_MAX] = '\n';
    write_file(path, big, SECRET_MAX + 1);
    snprintf(ref, sizeof(ref), "file:%s/big", tmpdir);
    CHECK(load_secret_config(&cfg, ref, "env:DGT_CRM") == 0);
    CHECK(config_resolve_secrets(&cfg, err, sizeof(err)) == 0);
    CHECK(cfg.audit.key.len == SECRET_MAX);
    config_free(&cfg);
}

static void test_client_secrets_must_be_whsec_base64(void)
{
    struct config cfg;
    char err[512];
    const char *bad[] = {
        "whsec_not*base64!!!!",
        "whsec_c2hvcnQ=",                         /* 5 bytes */
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS",  /* not a multiple of 4 */
        "whsec_MfKQ9r8GKYqrTwjU=D8ILPZIo2LaLaSw", /* padding in the middle */
        "plain-text-password-that-is-long",
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        setenv("DGT_CRM", bad[i], 1);
        CHECK(load_secret_config(&cfg, "env:DGT_AUDIT", "env:DGT_CRM") == 0);
        CHECK(config_resolve_secrets(&cfg, err, sizeof(err)) == -1);
        CHECK(strncmp(err, "clients[0].secrets[0]: env:DGT_CRM", 34) == 0);
        CHECK(strstr(err, bad[i] + 6) == NULL);
        config_free(&cfg);
    }
    /* Plain base64 without the prefix, 16 bytes exactly, is fine. */
    setenv("DGT_CRM", "AAECAwQFBgcICQoLDA0ODw==", 1);
    CHECK(load_secret_config(&cfg, "env:DGT_AUDIT", "env:DGT_CRM") == 0);
    CHECK(config_resolve_secrets(&cfg, err, sizeof(err)) == 0);
    config_free(&cfg);
    setenv("DGT_CRM", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", 1);
}

static void test_receipt_key_must_be_ed25519_pem(void)
{
    struct config cfg;
    char path[256], json[512], err[512];
    /* RFC 8410 section 10.3 example key. */
    const char *pem = "-----BEGIN PRIVATE KEY-----\n"
                      "MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n"
                      "-----END PRIVATE KEY-----\n";

    setenv("DG_ADMIN_TOKEN", "a", 1);
    setenv("EXTEND_API_TOKEN", "b", 1);
    setenv("EXTEND_WEBHOOK_SECRET", "c", 1);
    setenv("DG_AUDIT_KEY", "d", 1);
    snprintf(path, sizeof(path), "%s/receipt.pem", tmpdir);
    write_file(path, pem, strlen(pem));
    snprintf(json, sizeof(json), "{\"receipts\": {\"signing_key\": \"file:%s\"}}", path);
    CHECK(load_ok(&cfg, json) == 0);
    CHECK(config_resolve_secrets(&cfg, err, sizeof(err)) == 0);
    CHECK(cfg.receipts.signing_key.len == strlen(pem) - 1);
    config_free(&cfg);

    write_file(path, "not a key\n", 10);
    CHECK(load_ok(&cfg, json) == 0);
    CHECK(config_resolve_secrets(&cfg, err, sizeof(err)) == -1);
    CHECK(strncmp(err, "receipts.signing_key: file:", 27) == 0);
    CHECK(strstr(err, "not a key") == NULL);
    config_free(&cfg);
}

/* Walks a dotted key ("webhooks.rules[].event") through a JSON document,
 * taking the first element of arrays. */
static const json_t *find_key(const json_t *root, const char *key)
{
    char buf[256], *save = NULL;
    const json_t *v = root;

    snprintf(buf, sizeof(buf), "%s", key);
    for (char *part = strtok_r(buf, ".", &save); part != NULL && v != NULL;
         part = strtok_r(NULL, ".", &save)) {
        size_t n = strlen(part);
        int array = n > 2 && strcmp(part + n - 2, "[]") == 0;

        if (array)
            part[n - 2] = '\0';
        v = json_object_get(v, part);
        if (array)
            v = json_array_get(v, 0);
    }
    return v;
}

static void test_shipped_files(void)
{
    const char *src = getenv("DG_SOURCE_DIR");
    char path[1024], name[128], err[512];
    struct config ex, def, dev;
    json_error_t jerr;
    json_t *doc;

    CHECK(src != NULL);
    if (src == NULL)
        return;

    snprintf(path, sizeof(path), "%s/config/gateway.example.json", src);
    CHECK(config_load(&ex, path, err, sizeof(err)) == 0);
    doc = json_load_file(path, 0, &jerr);
    CHECK(doc != NULL);
    /* The example documents every key of the table. */
    for (size_t i = 0; config_key_name(i, name, sizeof(name)) == 0; i++) {
        if (find_key(doc, name) == NULL) {
            check_failed++;
            fprintf(stderr, "gateway.example.json lacks %s\n", name);
        } else {
            check_passed++;
        }
    }
    json_decref(doc);

    /* ... and every key but clients is at its default. */
    CHECK(load_ok(&def, "{}") == 0);
    char *a = print_to_string(&ex), *b = print_to_string(&def);
    json_t *ja = a ? json_loads(a, 0, &jerr) : NULL, *jb = b ? json_loads(b, 0, &jerr) : NULL;
    CHECK(ja != NULL && jb != NULL);
    if (ja != NULL && jb != NULL) {
        /* config_print writes every key too. */
        for (size_t i = 0; config_key_name(i, name, sizeof(name)) == 0; i++)
            if (find_key(ja, name) == NULL) {
                check_failed++;
                fprintf(stderr, "config_print lacks %s\n", name);
            }
        CHECK(json_array_size(json_object_get(ja, "clients")) == 1);
        json_object_del(ja, "clients");
        json_object_del(jb, "clients");
        /* The example is in the accounts form; "{}" is the legacy one,
         * whose print also shows its own keys. */
        json_object_del(jb, "extend");
        json_object_del(json_object_get(jb, "webhooks"), "signing_secrets");
        CHECK(json_equal(ja, jb));
    }
    json_decref(ja);
    json_decref(jb);
    free(a);
    free(b);
    config_free(&ex);
    config_free(&def);

    snprintf(path, sizeof(path), "%s/config/dev.json", src);
    CHECK(config_load(&dev, path, err, sizeof(err)) == 0);
    CHECK_STR(dev.accounts[0].base_url, "https://127.0.0.1:9443");
    CHECK(dev.n_clients == 1);
    CHECK_STR(dev.clients[0].id, "crm");
    config_free(&dev);

    snprintf(path, sizeof(path), "%s/config/missing.json", src);
    CHECK(config_load(&dev, path, err, sizeof(err)) == -1);
    CHECK(strstr(err, "missing.json") != NULL);
}

/* Every cut of a valid file is refused cleanly (no crash, no leak, a message). */
static void test_truncated_files_fail_cleanly(void)
{
    const char *full = "{\"listen\": {\"port\": 9000, \"tls\": {\"cert_file\": null}},"
                       " \"webhooks\": {\"rules\": [{\"event\": \"a*\", \"delete\": [\"file\"]}]},"
                       " \"clients\": [{\"id\": \"x\", \"secrets\": [\"env:X\", \"file:/y\"]}]}";
    char buf[512], err[256];
    size_t n = strlen(full);
    struct config cfg;

    CHECK(load_ok(&cfg, full) == 0);
    config_free(&cfg);
    for (size_t i = 0; i < n; i++) {
        memcpy(buf, full, i);
        buf[i] = '\0';
        err[0] = '\0';
        CHECK(config_load_string(&cfg, buf, err, sizeof(err)) == -1);
        CHECK(err[0] != '\0');
        config_free(&cfg);
    }
    /* A tiny error buffer is cut, not overrun. */
    CHECK(config_load_string(&cfg, "{\"bogus\": 1}", err, 4) == -1);
    CHECK(strlen(err) <= 3);
    CHECK(config_load_string(&cfg, "{\"bogus\": 1}", NULL, 0) == -1);
}

/* docs/configuration.md carries the reference table exactly as the code prints it. */
static void test_reference_doc_matches_table(void)
{
    const char *src = getenv("DG_SOURCE_DIR");
    char path[1024], *ref = NULL, *doc = NULL;
    size_t reflen = 0;
    long n;
    FILE *f;

    if (src == NULL)
        return;
    f = open_memstream(&ref, &reflen);
    CHECK(f != NULL);
    if (f == NULL)
        return;
    config_print_reference(f);
    fclose(f);
    CHECK(strstr(ref, "| `extend.rate_per_second` | number | `8` | 0..1000 |") != NULL);
    CHECK(strstr(ref, "| `clients[].id` |") != NULL);

    snprintf(path, sizeof(path), "%s/docs/configuration.md", src);
    f = fopen(path, "rb");
    CHECK(f != NULL);
    if (f != NULL && fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) > 0 && n < 1000000 &&
        fseek(f, 0, SEEK_SET) == 0 && (doc = calloc(1, (size_t)n + 1)) != NULL) {
        CHECK(fread(doc, 1, (size_t)n, f) == (size_t)n);
        if (strstr(doc, ref) == NULL) {
            check_failed++;
            fprintf(stderr, "docs/configuration.md does not carry the current reference table:\n%s",
                    ref);
        } else {
            check_passed++;
        }
    }
    if (f != NULL)
        fclose(f);
    free(doc);
    free(ref);
}

static void cleanup(void)
{
    const char *names[] = {"token", "wss2", "empty", "newline", "big", "receipt.pem"};
    char path[256];

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", tmpdir, names[i]);
        unlink(path);
    }
    rmdir(tmpdir);
}

int main(int argc, char **argv)
{
    /* `test_config --reference` prints the table for docs/configuration.md. */
    if (argc > 1 && strcmp(argv[1], "--reference") == 0) {
        config_print_reference(stdout);
        return 0;
    }
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    test_defaults_are_the_documented_ones();
    test_values_from_the_file_override_defaults();
    test_unknown_keys_are_named();
    test_wrong_types_are_named();
    test_bounds_are_named();
    test_reserved_client_ids();
    test_rules_and_clients_are_checked_inside();
    test_literal_secrets_are_refused_without_echo();
    test_base_url_rules();
    test_secret_resolution();
    test_client_secrets_must_be_whsec_base64();
    test_receipt_key_must_be_ed25519_pem();
    test_truncated_files_fail_cleanly();
    test_legacy_extend_block_is_the_account_default();
    test_accounts_form_loads_each_account();
    test_accounts_are_checked();
    test_account_secrets_resolve_per_account();
    test_shipped_files();
    test_reference_doc_matches_table();
    cleanup();
    return check_done();
}
