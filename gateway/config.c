/*
 * config.c: the gateway's keys (see config.h).
 *
 * Map of the file:
 *   - checks of single values the types alone do not catch (ids, paths,
 *     the base URL rule of base_url.c, secret formats);
 *   - the key table: one row per key with its type, place in struct
 *     config, default, bounds and one-line meaning; arrays of objects
 *     (webhooks.rules, clients) point at a table of their own;
 *   - checks across keys, then the public calls, each a thin layer over
 *     the engine in config_schema.c (loading, secrets, `check` output,
 *     the reference table, freeing).
 *
 * A key added here is validated, printed by `check`, listed by
 * `check --reference` and freed with no other change.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "base_url.h"
#include "config_schema.h"
#include "resource.h"

#define CONFIG_MAX_FILE_BYTES 1048576 /* 1 MiB */

/* ---- checks of one value ------------------------------------------------ */

static int is_id_char(int c, const char *extra)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != 0 && strchr(extra, c) != NULL);
}

static int check_base_url(const char *path, char *s, char *err, size_t errlen)
{
    const char *why;
    size_t keep;
    bool https;

    if (base_url_check(s, &https, &keep, &why) != 0)
        return schema_fail(err, errlen, path, "%s", why);
    s[keep] = '\0';
    return 0;
}

/* Sent as an HTTP header value: keep it to plain token characters. */
static int check_header_token(const char *path, char *s, char *err, size_t errlen)
{
    for (const char *p = s; *p; p++)
        if (!is_id_char((unsigned char)*p, "._-"))
            return schema_fail(err, errlen, path, "may only hold A-Z a-z 0-9 . _ -");
    return 0;
}

static int check_workspace_id(const char *path, char *s, char *err, size_t errlen)
{
    for (const char *p = s; *p; p++)
        if (!is_id_char((unsigned char)*p, "_-"))
            return schema_fail(err, errlen, path, "may only hold A-Z a-z 0-9 _ -");
    return 0;
}

static int check_webhook_path(const char *path, char *s, char *err, size_t errlen)
{
    static const char *const reserved[] = {"/v1/deletions", "/healthz", "/readyz", "/metrics"};

    if (s[0] != '/')
        return schema_fail(err, errlen, path, "must start with '/'");
    for (const char *p = s; *p; p++)
        if (!is_id_char((unsigned char)*p, "/._~-"))
            return schema_fail(err, errlen, path, "may only hold A-Z a-z 0-9 / . _ ~ -");
    for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++) {
        size_t n = strlen(reserved[i]);
        if (strncmp(s, reserved[i], n) == 0 && (s[n] == '\0' || s[n] == '/'))
            return schema_fail(err, errlen, path, "must not be the gateway's own route %s",
                               reserved[i]);
    }
    return 0;
}

static int check_event(const char *path, char *s, char *err, size_t errlen)
{
    for (const char *p = s; *p; p++) {
        if (*p == '*' && p[1] == '\0')
            break;
        if (!is_id_char((unsigned char)*p, "._:-"))
            return schema_fail(err, errlen, path,
                               "may only hold A-Z a-z 0-9 . _ : - and end in '*' for a prefix");
    }
    return 0;
}

static int check_client_id(const char *path, char *s, char *err, size_t errlen)
{
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '-'))
            return schema_fail(err, errlen, path, "may only hold a-z 0-9 _ -");
    /* "extend" is the webhooks' namespace for idempotency keys and audit
     * records, "operator" the admin's: a client so named could pass for them. */
    if (strcmp(s, "extend") == 0 || strcmp(s, "operator") == 0)
        return schema_fail(err, errlen, path, "\"%s\" is reserved", s);
    return 0;
}

static int check_account_id(const char *path, char *s, char *err, size_t errlen)
{
    size_t n = strlen(s);

    if (n < 1 || n > CONFIG_ACCOUNT_ID_MAX)
        return schema_fail(err, errlen, path, "must be 1 to %d characters long",
                           CONFIG_ACCOUNT_ID_MAX);
    if (!resource_account_id_valid(s, n))
        return schema_fail(err, errlen, path, "may only hold a-z 0-9 _ -");
    return 0;
}

static int check_backend(const char *path, char *s, char *err, size_t errlen)
{
    if (strcmp(s, "sqlite") != 0 && strcmp(s, "postgres") != 0)
        return schema_fail(err, errlen, path,
                           "\"%.32s\" is not a backend: \"sqlite\" or \"postgres\"", s);
    return 0;
}

/* A password in the URL would be printed by check and could reach a log:
 * it belongs in queue.password (env:/file:) or libpq's PGPASSFILE. */
static int check_pg_url(const char *path, char *s, char *err, size_t errlen)
{
    const char *at = strchr(s, '@'), *scheme = strstr(s, "://");

    if (strstr(s, "password") != NULL ||
        (scheme != NULL && at != NULL &&
         memchr(scheme + 3, ':', (size_t)(at - scheme - 3)) != NULL))
        return schema_fail(
            err, errlen, path,
            "holds a password; put it in queue.password (env:/file:) or a PGPASSFILE");
    return 0;
}

static int check_replica_id(const char *path, char *s, char *err, size_t errlen)
{
    for (const char *p = s; *p != '\0'; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_' || *p == '.'))
            return schema_fail(err, errlen, path, "only A-Z a-z 0-9 . _ -");
    }
    return 0;
}

static int check_log_level(const char *path, char *s, char *err, size_t errlen)
{
    if (strcmp(s, "debug") != 0 && strcmp(s, "info") != 0 && strcmp(s, "warn") != 0 &&
        strcmp(s, "error") != 0)
        return schema_fail(err, errlen, path, "must be one of debug, info, warn, error");
    return 0;
}

/* Standard Webhooks secrets are "whsec_" + base64 of at least 128 bits. */
static int check_whsec(const char *path, const struct secret *s, char *err, size_t errlen)
{
    const char *b = (const char *)s->value;
    size_t len = s->len, pad = 0;
    unsigned char *out;
    int n;

    if (len > 6 && strncmp(b, "whsec_", 6) == 0) {
        b += 6;
        len -= 6;
    }
    if (len == 0 || len % 4 != 0)
        goto bad;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)b[i];
        if (c == '=') {
            if (i < len - 2)
                goto bad;
            pad++;
        } else if (!(isalnum(c) || c == '+' || c == '/') || pad > 0) {
            goto bad;
        }
    }
    out = malloc(len / 4 * 3 + 1);
    if (out == NULL)
        return schema_fail(err, errlen, path, "out of memory");
    n = EVP_DecodeBlock(out, (const unsigned char *)b, (int)len);
    secret_cleanse(out, len / 4 * 3 + 1);
    free(out);
    if (n < 0 || (size_t)n < pad || (size_t)n - pad < 16)
        goto bad;
    return 0;
bad:
    return schema_fail(err, errlen, path,
                       "%s: not a whsec_ secret (base64 of at least 16 bytes, padded)", s->ref);
}

static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return 0;
}

static int check_ed25519_pem(const char *path, const struct secret *s, char *err, size_t errlen)
{
    BIO *bio;
    EVP_PKEY *pkey = NULL;
    int ok = 0;

    if (s->len > INT32_MAX)
        goto done;
    bio = BIO_new_mem_buf(s->value, (int)s->len);
    if (bio != NULL) {
        pkey = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
        BIO_free(bio);
    }
    ok = pkey != NULL && EVP_PKEY_is_a(pkey, "ED25519");
    EVP_PKEY_free(pkey);
done:
    ERR_clear_error();
    if (!ok)
        return schema_fail(err, errlen, path, "%s: not an unencrypted PEM Ed25519 private key",
                           s->ref);
    return 0;
}

/* ---- the tables ---------------------------------------------------------- */

#define C(m) offsetof(struct config, m)
#define R(m) offsetof(struct rule, m)
#define CL(m) offsetof(struct client, m)
#define A(m) offsetof(struct account, m)

/* K_IDBUF writes up to max characters plus the NUL into client.id. */
_Static_assert(sizeof(((struct client *)0)->id) == CONFIG_CLIENT_ID_MAX + 1,
               "client id buffer must match its table bound");
_Static_assert(sizeof(((struct account *)0)->id) == CONFIG_ACCOUNT_ID_MAX + 1,
               "account id buffer must match its table bound");
_Static_assert(CONFIG_MAX_ACCOUNTS <= 32, "client.account_mask has one bit per account");
_Static_assert(CONFIG_ACCOUNT_ID_MAX == RESOURCE_ACCOUNT_ID_MAX, "one account id rule");
/* names[i] of a flags key is bit i of its mask. */
_Static_assert(RULE_DELETE_RUN == 1u << 0 && RULE_DELETE_FILE == 1u << 1,
               "rule_deletes must list the RULE_DELETE_* bits in order");

static const char *const rule_deletes[] = {"run", "file", NULL};

/* clang-format off */
static const struct key rule_keys[] = {
    KEY_STR_REQUIRED("event", R(event), 1, 127, check_event,
        "Event type to match, e.g. extract_run.processed; a trailing '*' matches a prefix."),
    KEY_FLAGS("delete", R(deletes), rule_deletes, "[\"run\"]",
        "What to delete: \"run\" (the event's run) and/or \"file\" (its files)."),
    KEY_I64("delay_seconds", R(delay_seconds), 0, 0, 31536000,
        "Retention delay before the deletion is sent."),
};
static const struct keytab rule_tab = KEYTAB(rule_keys, struct rule);

static const struct key client_keys[] = {
    KEY_IDBUF_REQUIRED("id", CL(id), 1, CONFIG_CLIENT_ID_MAX, check_client_id,
        "Client name, unique; recorded in the audit log."),
    KEY_SECRETS_REQUIRED("secrets", CL(secrets), CL(n_secrets), 1, CONFIG_MAX_SECRETS, check_whsec,
        "Standard Webhooks secrets (whsec_ + base64, >= 16 bytes); any one verifies."),
    KEY_STR_OR_NULL("cert_subject", CL(cert_subject), 1, 255, NULL,
        "mTLS certificate subject CN this client must present; null = any."),
    KEY_STRS_OR_NULL("accounts", CL(accounts), CL(n_accounts), 1, CONFIG_MAX_ACCOUNTS,
        check_account_id, "Account ids this client may name (403 otherwise); null = all."),
};
static const struct keytab client_tab = KEYTAB(client_keys, struct client);

/*
 * What an account's DELETEs need, the same rows under accounts[] and under
 * the legacy `extend` block (P is "" or "extend."), so the two forms cannot
 * drift apart. The token and the webhook secrets follow, with a default
 * only in the legacy form.
 */
#define ACCOUNT_UPSTREAM_KEYS(P)                                                                   \
    KEY_STR(P "base_url", A(base_url), "https://api.extend.ai", 1, 2048, check_base_url,           \
        "Extend API base URL; https://, or http:// only to 127.0.0.1, localhost or [::1]."),       \
    KEY_STR(P "api_version", A(api_version), "2026-02-09", 1, 64, check_header_token,              \
        "Sent as x-extend-api-version."),                                                          \
    KEY_STR_OR_NULL(P "workspace_id", A(workspace_id), 1, 128, check_workspace_id,                 \
        "Sent as x-extend-workspace-id, A-Z a-z 0-9 _ -; null = not sent."),                       \
    KEY_STR_OR_NULL(P "ca_file", A(ca_file), 1, 4096, NULL,                                        \
        "Extra CA bundle to trust for base_url; null = system CAs only."),                         \
    KEY_INT(P "timeout_ms", A(timeout_ms), 30000, 100, 300000,                                     \
        "Whole-request time-out of one DELETE."),                                                  \
    KEY_INT(P "connect_timeout_ms", A(connect_timeout_ms), 10000, 100, 60000,                      \
        "Connect (TCP + TLS) time-out."),                                                          \
    KEY_NUM(P "rate_per_second", A(rate_per_second), 8, 0, 1000,                                   \
        "Most DELETEs per second (fractions allowed); 0 = no rate limit."),                        \
    KEY_INT(P "max_in_flight", A(max_in_flight), 4, 1, 256,                                        \
        "Most DELETEs outstanding at once."),                                                      \
    KEY_BOOL(P "dry_run", A(dry_run), false,                                                       \
        "Do everything but send the DELETE (for rollouts).")

static const struct key account_keys[] = {
    KEY_IDBUF_REQUIRED("id", A(id), 1, CONFIG_ACCOUNT_ID_MAX, check_account_id,
        "Account name, a-z 0-9 _ -, unique; webhooks come to webhooks.path/ID, internal "
        "requests name it in \"account\"; the first account is the default."),
    ACCOUNT_UPSTREAM_KEYS(""),
    {.name = "token", .type = K_SECRET, .off = A(token), .flags = KF_REQUIRED,
        .doc = "This account's Extend API bearer token."},
    KEY_SECRETS_REQUIRED("signing_secrets", A(signing_secrets), A(n_signing_secrets), 1,
        CONFIG_MAX_SECRETS, NULL,
        "Signing secrets of this account's webhook endpoint (wss_...), raw bytes; any one "
        "verifies."),
};
static const struct keytab account_tab = KEYTAB(account_keys, struct account);

/* The legacy form: one account, "default", its keys where they always were. */
static const struct key legacy_keys[] = {
    ACCOUNT_UPSTREAM_KEYS("extend."),
    KEY_SECRET("extend.token", A(token), "env:EXTEND_API_TOKEN",
        "Extend API bearer token."),
    KEY_SECRETS("webhooks.signing_secrets", A(signing_secrets), A(n_signing_secrets),
        "[\"env:EXTEND_WEBHOOK_SECRET\"]", 1, CONFIG_MAX_SECRETS,
        "Extend webhook signing secrets (wss_...), used as raw bytes; any one verifies."),
};
static const struct keytab legacy_tab = KEYTAB(legacy_keys, struct account);

static const struct key config_keys[] = {
    /* listen */
    KEY_STR("listen.address", C(listen.address), "127.0.0.1", 1, 255, NULL,
        "Address of the public listener (webhooks, internal API, health)."),
    KEY_INT("listen.port", C(listen.port), 8080, 1, 65535,
        "Port of the public listener."),
    KEY_STR_OR_NULL("listen.tls.cert_file", C(listen.tls.cert_file), 1, 4096, NULL,
        "PEM certificate chain; with key_file the listener speaks HTTPS. null = HTTP."),
    KEY_STR_OR_NULL("listen.tls.key_file", C(listen.tls.key_file), 1, 4096, NULL,
        "PEM private key; set together with cert_file."),
    KEY_STR_OR_NULL("listen.tls.client_ca_file", C(listen.tls.client_ca_file), 1, 4096, NULL,
        "CA bundle for client certificates (mTLS); needs cert_file. null = none asked."),
    /* admin */
    KEY_STR("admin.address", C(admin.address), "127.0.0.1", 1, 255, NULL,
        "Address of the admin listener (ctl commands)."),
    KEY_INT("admin.port", C(admin.port), 8081, 0, 65535,
        "Port of the admin listener; 0 = off."),
    KEY_SECRET_NULLABLE("admin.token", C(admin.token), "env:DG_ADMIN_TOKEN",
        "Bearer token for the admin listener; null = admin listener off."),
    KEY_INT("admin.max_connections", C(admin.max_connections), 16, 1, 1024,
        "Most open connections on the admin listener (kept apart from the public one's)."),
    /* accounts (or the legacy extend block, legacy_keys) */
    KEY_LIST("accounts", C(accounts), C(n_accounts), "[]", CONFIG_MAX_ACCOUNTS, &account_tab,
        "Extend accounts, each with its own upstream, limits and webhook endpoint; absent = the "
        "one account \"default\" from the `extend` block and webhooks.signing_secrets."),
    /* webhooks */
    KEY_STR("webhooks.path", C(webhooks.path), "/webhooks/extend", 1, 128, check_webhook_path,
        "Route that receives Extend webhooks; must start with '/', not a gateway route."),
    KEY_INT("webhooks.max_age_seconds", C(webhooks.max_age_seconds), 300, 1, 86400,
        "Oldest webhook timestamp accepted."),
    KEY_INT("webhooks.max_future_seconds", C(webhooks.max_future_seconds), 60, 0, 3600,
        "Furthest a webhook timestamp may be ahead of our clock."),
    KEY_LIST("webhooks.rules", C(webhooks.rules), C(webhooks.n_rules),
        "[{\"event\": \"extract_run.processed\", \"delete\": [\"run\"], \"delay_seconds\": 0}, "
        "{\"event\": \"extract_run.failed\", \"delete\": [\"run\"], \"delay_seconds\": 0}]",
        CONFIG_MAX_RULES, &rule_tab,
        "Which events cause which deletions; an event with no rule is ignored."),
    /* internal clients */
    KEY_INT("internal.timestamp_tolerance_seconds", C(internal.timestamp_tolerance_seconds), 300,
        1, 3600, "Allowed clock skew of internal requests' webhook-timestamp, both ways."),
    KEY_INT("internal.max_batch_items", C(internal.max_batch_items), 1000, 1, 1000,
        "Most items in one internal request."),
    KEY_LIST("clients", C(clients), C(n_clients), "[]", CONFIG_MAX_CLIENTS, &client_tab,
        "Internal services allowed to POST /v1/deletions."),
    /* queue */
    KEY_STR("queue.backend", C(queue.backend), "sqlite", 1, 32, check_backend,
        "\"sqlite\" (one node, embedded) or \"postgres\" (several replicas share one queue)."),
    KEY_STR("queue.path", C(queue.path), "var/queue.db", 1, 4096, NULL,
        "SQLite database file."),
    KEY_STR_OR_NULL("queue.url", C(queue.url), 1, 1024, check_pg_url,
        "PostgreSQL conninfo or URI (sslmode, sslrootcert as libpq takes them), without a "
        "password; required with backend postgres."),
    KEY_SECRET_OR_NULL("queue.password", C(queue.password), NULL,
        "PostgreSQL password (env:/file:); null = libpq's own means (PGPASSFILE, peer)."),
    KEY_STR_OR_NULL("queue.replica_id", C(queue.replica_id), 1, 64, check_replica_id,
        "This replica's name in a shared queue (its audit chain's position is kept under it); "
        "null = the host name."),
    KEY_I64("queue.lease_slack_seconds", C(queue.lease_slack_seconds), 60, 1, 3600,
        "How much longer than a DELETE's time-outs a claim's lease lasts; with several replicas, "
        "the jobs of one that died are taken by another once their leases end."),
    KEY_I64("queue.idempotency_ttl_seconds", C(queue.idempotency_ttl_seconds), 604800, 3600,
        31536000, "How long eventIds and webhook-ids are remembered."),
    KEY_NUM("queue.retention_days", C(queue.retention_days), 400, 0, 36500,
        "Finished deletions, their jobs and attempts are pruned after this many days (fractions "
        "allowed); 0 = kept for ever. The audit log keeps the evidence."),
    /* retry */
    KEY_I64("retry.initial_ms", C(retry.initial_ms), 1000, 10, 3600000,
        "First retry delay (doubles each time, with jitter)."),
    KEY_I64("retry.max_ms", C(retry.max_ms), 300000, 10, 86400000,
        "Longest retry delay; at least retry.initial_ms."),
    KEY_I64("retry.give_up_after_seconds", C(retry.give_up_after_seconds), 259200, 1, 31536000,
        "A deletion still failing after this long is dead."),
    /* audit and receipts */
    KEY_STR("audit.path", C(audit.path), "var/audit.jsonl", 1, 4096, NULL,
        "Audit log (JSON Lines, HMAC chain)."),
    KEY_SECRET("audit.key", C(audit.key), "env:DG_AUDIT_KEY",
        "HMAC key of the audit chain."),
    KEY_I64("audit.rotate_bytes", C(audit.rotate_bytes), 67108864, 65536, 17179869184LL,
        "Audit file size that starts a new file."),
    KEY_BOOL("receipts.enabled", C(receipts.enabled), true,
        "Signed deletion receipts; false turns them off."),
    KEY_SECRET_OR_NULL("receipts.signing_key", C(receipts.signing_key), check_ed25519_pem,
        "PEM Ed25519 private key that signs receipts; null = a key the gateway makes once, "
        "receipt-key.pem beside queue.path (mode 0600)."),
    /* limits and log */
    KEY_I64("limits.max_body_bytes", C(limits.max_body_bytes), 1048576, 1024, 67108864,
        "Largest request body accepted (413 above)."),
    KEY_I64("limits.max_header_bytes", C(limits.max_header_bytes), 16384, 1024, 1048576,
        "Largest request header block accepted."),
    KEY_INT("limits.request_timeout_seconds", C(limits.request_timeout_seconds), 30, 1, 300,
        "Time a client has to send its whole request (408 after)."),
    KEY_INT("limits.max_connections", C(limits.max_connections), 1024, 1, 1000000,
        "Most open connections on the public listener; lowered at start to fit the file "
        "descriptor limit. At the cap the slowest unfinished request is shed (503)."),
    KEY_STR("log.level", C(log.level), "info", 1, 16, check_log_level,
        "Lowest level logged: debug, info, warn or error."),
};
/* clang-format on */
static const struct keytab config_tab = KEYTAB(config_keys, struct config);

/* ---- checks across keys and the public calls ----------------------------- */

/* Rules that tie two keys together. */
static int check_across(const struct config *cfg, char *err, size_t errlen)
{
    const struct tls_config *tls = &cfg->listen.tls;

    if ((tls->cert_file == NULL) != (tls->key_file == NULL))
        return schema_fail(err, errlen,
                           tls->cert_file ? "listen.tls.key_file" : "listen.tls.cert_file",
                           "listen.tls.cert_file and listen.tls.key_file must be set together");
    if (tls->client_ca_file != NULL && tls->cert_file == NULL)
        return schema_fail(
            err, errlen, "listen.tls.client_ca_file",
            "needs listen.tls.cert_file and key_file (client certificates need TLS)");
    if (cfg->admin.port != 0 && cfg->admin.port == cfg->listen.port &&
        strcmp(cfg->admin.address, cfg->listen.address) == 0)
        return schema_fail(err, errlen, "admin.port", "must differ from listen.port");
    if (!cfg->receipts.enabled && cfg->receipts.signing_key.ref != NULL)
        return schema_fail(err, errlen, "receipts.signing_key",
                           "is set while receipts.enabled is false: drop one of them");
    if (cfg->retry.max_ms < cfg->retry.initial_ms)
        return schema_fail(err, errlen, "retry.max_ms", "must be at least retry.initial_ms (%lld)",
                           (long long)cfg->retry.initial_ms);
    if (strcmp(cfg->queue.backend, "postgres") == 0 && cfg->queue.url == NULL)
        return schema_fail(err, errlen, "queue.url", "is required with queue.backend \"postgres\"");
    for (int i = 0; i < cfg->n_clients; i++)
        for (int j = 0; j < i; j++)
            if (strcmp(cfg->clients[i].id, cfg->clients[j].id) == 0) {
                char p[32];
                snprintf(p, sizeof(p), "clients[%d].id", i);
                return schema_fail(err, errlen, p, "duplicate client id \"%s\"",
                                   cfg->clients[i].id);
            }
    return 0;
}

/* Splits the legacy keys (`extend`, webhooks.signing_secrets) out of a
 * copy of root into *legacy; refuses them beside `accounts`, where each
 * account carries its own. */
static int split_legacy(json_t *root, json_t **legacy, char *err, size_t errlen)
{
    json_t *ext = json_object_get(root, "extend"), *wh = json_object_get(root, "webhooks");
    json_t *ss = json_is_object(wh) ? json_object_get(wh, "signing_secrets") : NULL;

    *legacy = NULL;
    if (json_object_get(root, "accounts") != NULL) {
        if (ext != NULL)
            return schema_fail(err, errlen, "extend",
                               "is the legacy form of one account: with accounts, move it into "
                               "an entry of accounts");
        if (ss != NULL)
            return schema_fail(err, errlen, "webhooks.signing_secrets",
                               "with accounts, each account has its own signing_secrets");
        return 0;
    }
    *legacy = json_object();
    if (*legacy == NULL)
        return schema_fail(err, errlen, "config", "out of memory");
    if (ext != NULL) {
        json_object_set(*legacy, "extend", ext);
        json_object_del(root, "extend");
    }
    if (ss != NULL) {
        json_object_set_new(*legacy, "webhooks", json_pack("{s:O}", "signing_secrets", ss));
        json_object_del(wh, "signing_secrets");
    }
    return 0;
}

/* Account ids, and the accounts each client names. */
static int check_accounts(struct config *cfg, char *err, size_t errlen)
{
    char p[64];

    if (cfg->n_accounts < 1)
        return schema_fail(err, errlen, "accounts", "must have 1 to %d entries",
                           CONFIG_MAX_ACCOUNTS);
    for (int i = 0; i < cfg->n_accounts; i++)
        for (int j = 0; j < i; j++)
            if (strcmp(cfg->accounts[i].id, cfg->accounts[j].id) == 0) {
                snprintf(p, sizeof(p), "accounts[%d].id", i);
                return schema_fail(err, errlen, p, "duplicate account id \"%s\"",
                                   cfg->accounts[i].id);
            }
    for (int c = 0; c < cfg->n_clients; c++) {
        struct client *cl = &cfg->clients[c];

        cl->account_mask = cl->n_accounts == 0 ? UINT32_MAX : 0;
        for (int k = 0; k < cl->n_accounts; k++) {
            int a = config_account_find(cfg, cl->accounts[k], 0);
            if (a < 0) {
                snprintf(p, sizeof(p), "clients[%d].accounts[%d]", c, k);
                return schema_fail(err, errlen, p, "no account \"%s\" is configured",
                                   cl->accounts[k]);
            }
            cl->account_mask |= 1u << a;
        }
    }
    return 0;
}

static int load_json(struct config *cfg, const json_t *orig, char *err, size_t errlen)
{
    json_t *root = NULL, *legacy = NULL;

    memset(cfg, 0, sizeof(*cfg));
    if (!json_is_object(orig)) {
        schema_fail(err, errlen, "config", "must be a JSON object");
        goto fail;
    }
    root = json_deep_copy(orig);
    if (root == NULL) {
        schema_fail(err, errlen, "config", "out of memory");
        goto fail;
    }
    if (split_legacy(root, &legacy, err, errlen) == -1)
        goto fail;
    if (legacy != NULL) {
        /* Counted before it is filled so that config_free sees it. */
        cfg->n_accounts = 1;
        cfg->legacy_extend = true;
        snprintf(cfg->accounts[0].id, sizeof(cfg->accounts[0].id), "default");
        if (schema_load(&legacy_tab, &cfg->accounts[0], legacy, err, errlen) == -1)
            goto fail;
    }
    if (schema_load(&config_tab, cfg, root, err, errlen) == -1)
        goto fail;
    if (check_across(cfg, err, errlen) == -1 || check_accounts(cfg, err, errlen) == -1)
        goto fail;
    json_decref(root);
    json_decref(legacy);
    return 0;
fail:
    json_decref(root);
    json_decref(legacy);
    config_free(cfg);
    return -1;
}

int config_load_string(struct config *cfg, const char *json, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *root;
    int rc;

    root = json_loads(json, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        memset(cfg, 0, sizeof(*cfg));
        snprintf(err, errlen, "config: line %d column %d: %s", jerr.line, jerr.column, jerr.text);
        return -1;
    }
    rc = load_json(cfg, root, err, errlen);
    json_decref(root);
    return rc;
}

int config_load(struct config *cfg, const char *path, char *err, size_t errlen)
{
    json_error_t jerr;
    struct stat st;
    json_t *root;
    int rc;

    memset(cfg, 0, sizeof(*cfg));
    if (stat(path, &st) == -1) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode) || st.st_size > CONFIG_MAX_FILE_BYTES) {
        snprintf(err, errlen, "%s: not a regular file of at most %d bytes", path,
                 CONFIG_MAX_FILE_BYTES);
        return -1;
    }
    root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        snprintf(err, errlen, "%s: line %d column %d: %s", path, jerr.line, jerr.column, jerr.text);
        return -1;
    }
    rc = load_json(cfg, root, err, errlen);
    json_decref(root);
    return rc;
}

int config_resolve_secrets(struct config *cfg, char *err, size_t errlen)
{
    static const char pre[] = "accounts[0].";
    char rest[256];

    if (schema_resolve_secrets(&config_tab, cfg, err, errlen) == 0)
        return 0;
    /* A legacy file's keys are named as the file spells them. */
    if (cfg->legacy_extend && strncmp(err, pre, sizeof(pre) - 1) == 0) {
        snprintf(rest, sizeof(rest), "%s", err + sizeof(pre) - 1);
        snprintf(err, errlen, "%s%s",
                 strncmp(rest, "signing_secrets", 15) == 0 ? "webhooks." : "extend.", rest);
    }
    return -1;
}

void config_print(const struct config *cfg, FILE *out)
{
    json_t *root = schema_to_json(&config_tab, cfg);

    if (root == NULL)
        return;
    /* The legacy form also shows its keys where the file has them. */
    if (cfg->legacy_extend && cfg->n_accounts > 0) {
        json_t *l = schema_to_json(&legacy_tab, &cfg->accounts[0]);
        json_t *wh = json_object_get(root, "webhooks");

        if (l != NULL && json_is_object(wh)) {
            json_object_set(root, "extend", json_object_get(l, "extend"));
            json_object_set(wh, "signing_secrets",
                            json_object_get(json_object_get(l, "webhooks"), "signing_secrets"));
        }
        json_decref(l);
    }
    json_dumpf(root, out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    fputc('\n', out);
    json_decref(root);
}

void config_print_reference(FILE *out)
{
    schema_print_reference(&config_tab, out);
    fprintf(out,
            "\nThe legacy form of one account, named `default` (refused beside `accounts`):\n\n");
    schema_print_reference(&legacy_tab, out);
}

int config_account_find(const struct config *cfg, const char *id, size_t len)
{
    if (len == 0)
        len = strlen(id);
    for (int i = 0; i < cfg->n_accounts; i++)
        if (strlen(cfg->accounts[i].id) == len && memcmp(cfg->accounts[i].id, id, len) == 0)
            return i;
    return -1;
}

int config_key_name(size_t i, char *out, size_t outlen)
{
    return schema_key_name(&config_tab, i, out, outlen);
}

void config_free(struct config *cfg)
{
    if (cfg == NULL)
        return;
    schema_free(&config_tab, cfg);
    secret_cleanse(cfg, sizeof(*cfg));
}
