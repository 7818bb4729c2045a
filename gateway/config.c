/*
 * config.c: the configuration file (see config.h).
 *
 * Map of the file:
 *   - string checks (base_url, ids, paths) and the key tables: one row per
 *     key with its type, place in struct config, default (as JSON text),
 *     bounds and one-line meaning; arrays of objects (webhooks.rules,
 *     clients) point at a table of their own;
 *   - loading: refuse unknown keys, then set every row from the file or
 *     from its default through the same parser, then checks across keys;
 *   - secrets: reference syntax at load, reading at config_resolve_secrets;
 *   - output: config_print (`check`), config_print_reference (docs),
 *     config_key_name; config_free.
 *
 * Defaults go through the same parser as the file, so a default that broke
 * its own bounds would fail every load (and the unit tests) at once.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#define CONFIG_MAX_FILE_BYTES (1024 * 1024)
#define SECRET_MAX_BYTES (64 * 1024)
#define READ_CAP (SECRET_MAX_BYTES + 3)
#define PATH_MAX_LEN 160

enum ktype {
    K_STR,     /* char *, length bounds */
    K_IDBUF,   /* char[max + 1] inside the struct, length bounds */
    K_INT,     /* int */
    K_I64,     /* int64_t */
    K_NUM,     /* double */
    K_BOOL,    /* bool */
    K_SECRET,  /* struct secret */
    K_SECRETS, /* struct secret[], count in n_off, entry bounds */
    K_DELETES, /* unsigned RULE_DELETE_* mask from ["run", "file"] */
    K_LIST,    /* array of objects described by sub, count in n_off */
};

#define KF_NULLABLE 1u /* JSON null is accepted (NULL pointer / no secret) */
#define KF_REQUIRED 2u /* no default: must be given (only inside list elements) */

struct key;

struct keytab {
    const struct key *keys;
    size_t n;
    size_t elem_size;
};

struct key {
    const char *name; /* dotted, relative to its table */
    enum ktype type;
    size_t off;
    size_t n_off;    /* K_SECRETS, K_LIST: offset of the int count */
    const char *def; /* default as JSON text; NULL with KF_REQUIRED */
    int64_t min, max;
    unsigned flags;
    /* Extra check of a string value; may shorten it in place. */
    int (*scheck)(const char *path, char *s, char *err, size_t errlen);
    /* Extra check of a resolved secret's bytes. */
    int (*rcheck)(const char *path, const struct secret *s, char *err, size_t errlen);
    const struct keytab *sub;
    const char *doc;
};

static int fail_at(char *err, size_t errlen, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail_at(char *err, size_t errlen, const char *path, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (err == NULL || errlen == 0)
        return -1;
    n = snprintf(err, errlen, "%s: ", path);
    if (n < 0 || (size_t)n >= errlen)
        return -1;
    va_start(ap, fmt);
    vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- string checks ---------------------------------------------------- */

static int is_id_char(int c, const char *extra)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != 0 && strchr(extra, c) != NULL);
}

/* http:// is only for a test double on this machine: anything else would
 * send the Extend token in clear text. */
static int check_base_url(const char *path, char *s, char *err, size_t errlen)
{
    const char *host, *end, *port;
    size_t hlen;
    int https;

    if (strncmp(s, "https://", 8) == 0) {
        https = 1;
        host = s + 8;
    } else if (strncmp(s, "http://", 7) == 0) {
        https = 0;
        host = s + 7;
    } else {
        return fail_at(err, errlen, path, "must start with https://");
    }
    if (strpbrk(s, "?#@ \\") != NULL)
        return fail_at(err, errlen, path, "must not contain a query, fragment, user or space");
    end = host + strcspn(host, "/");
    if (*host == '[') {
        const char *rb = memchr(host, ']', (size_t)(end - host));
        if (rb == NULL)
            return fail_at(err, errlen, path, "unterminated IPv6 address");
        hlen = (size_t)(rb - host) + 1;
    } else {
        hlen = strcspn(host, ":/");
    }
    if (hlen == 0)
        return fail_at(err, errlen, path, "has no host");
    port = host + hlen;
    if (port < end) {
        int64_t pn;
        char digits[8];
        size_t plen = (size_t)(end - port) - 1;

        if (*port != ':' || plen == 0 || plen >= sizeof(digits))
            return fail_at(err, errlen, path, "bad port");
        memcpy(digits, port + 1, plen);
        digits[plen] = '\0';
        for (size_t i = 0; i < plen; i++)
            if (!isdigit((unsigned char)digits[i]))
                return fail_at(err, errlen, path, "bad port");
        pn = strtoll(digits, NULL, 10);
        if (pn < 1 || pn > 65535)
            return fail_at(err, errlen, path, "bad port");
    }
    if (!https) {
        int loop = (hlen == 9 && strncmp(host, "127.0.0.1", 9) == 0) ||
                   (hlen == 9 && strncasecmp(host, "localhost", 9) == 0) ||
                   (hlen == 5 && strncmp(host, "[::1]", 5) == 0);
        if (!loop)
            return fail_at(err, errlen, path,
                           "http:// is only allowed for 127.0.0.1, localhost or [::1]; use "
                           "https://");
    }
    /* Paths are appended as "/extract_runs/...": keep no trailing slash. */
    for (size_t n = strlen(s); n > 0 && s[n - 1] == '/' && s + n - 1 >= end; n--)
        s[n - 1] = '\0';
    return 0;
}

/* Sent as an HTTP header value: keep it to plain token characters. */
static int check_header_token(const char *path, char *s, char *err, size_t errlen)
{
    for (const char *p = s; *p; p++)
        if (!is_id_char((unsigned char)*p, "._-"))
            return fail_at(err, errlen, path, "may only hold A-Z a-z 0-9 . _ -");
    return 0;
}

static int check_workspace_id(const char *path, char *s, char *err, size_t errlen)
{
    for (const char *p = s; *p; p++)
        if (!is_id_char((unsigned char)*p, "_-"))
            return fail_at(err, errlen, path, "may only hold A-Z a-z 0-9 _ -");
    return 0;
}

static int check_webhook_path(const char *path, char *s, char *err, size_t errlen)
{
    static const char *const reserved[] = {"/v1/deletions", "/healthz", "/readyz", "/metrics"};

    if (s[0] != '/')
        return fail_at(err, errlen, path, "must start with '/'");
    for (const char *p = s; *p; p++)
        if (!is_id_char((unsigned char)*p, "/._~-"))
            return fail_at(err, errlen, path, "may only hold A-Z a-z 0-9 / . _ ~ -");
    for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++) {
        size_t n = strlen(reserved[i]);
        if (strncmp(s, reserved[i], n) == 0 && (s[n] == '\0' || s[n] == '/'))
            return fail_at(err, errlen, path, "must not be the gateway's own route %s",
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
            return fail_at(err, errlen, path,
                           "may only hold A-Z a-z 0-9 . _ : - and end in '*' for a prefix");
    }
    return 0;
}

static int check_client_id(const char *path, char *s, char *err, size_t errlen)
{
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '-'))
            return fail_at(err, errlen, path, "may only hold a-z 0-9 _ -");
    /* "extend" is the webhooks' namespace for idempotency keys and audit
     * records, "operator" the admin's: a client so named could pass for them. */
    if (strcmp(s, "extend") == 0 || strcmp(s, "operator") == 0)
        return fail_at(err, errlen, path, "\"%s\" is reserved", s);
    return 0;
}

static int check_backend(const char *path, char *s, char *err, size_t errlen)
{
    if (strcmp(s, "sqlite") != 0 && strcmp(s, "postgres") != 0)
        return fail_at(err, errlen, path, "\"%.32s\" is not a backend: \"sqlite\" or \"postgres\"",
                       s);
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
        return fail_at(err, errlen, path,
                       "holds a password; put it in queue.password (env:/file:) or a PGPASSFILE");
    return 0;
}

static int check_replica_id(const char *path, char *s, char *err, size_t errlen)
{
    for (const char *p = s; *p != '\0'; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_' || *p == '.'))
            return fail_at(err, errlen, path, "only A-Z a-z 0-9 . _ -");
    }
    return 0;
}

static int check_log_level(const char *path, char *s, char *err, size_t errlen)
{
    if (strcmp(s, "debug") != 0 && strcmp(s, "info") != 0 && strcmp(s, "warn") != 0 &&
        strcmp(s, "error") != 0)
        return fail_at(err, errlen, path, "must be one of debug, info, warn, error");
    return 0;
}

static int check_whsec(const char *path, const struct secret *s, char *err, size_t errlen);
static int check_ed25519_pem(const char *path, const struct secret *s, char *err, size_t errlen);

/* ---- the tables ------------------------------------------------------- */

#define C(m) offsetof(struct config, m)

/* K_IDBUF writes up to max characters plus the NUL into client.id. */
_Static_assert(sizeof(((struct client *)0)->id) == CONFIG_CLIENT_ID_MAX + 1,
               "client id buffer must match its table bound");

static const struct key rule_keys[] = {
    {"event", K_STR, offsetof(struct rule, event), 0, NULL, 1, 127, KF_REQUIRED, check_event, NULL,
     NULL, "Event type to match, e.g. extract_run.processed; a trailing '*' matches a prefix."},
    {"delete", K_DELETES, offsetof(struct rule, deletes), 0, "[\"run\"]", 1, 2, 0, NULL, NULL, NULL,
     "What to delete: \"run\" (the event's run) and/or \"file\" (its files)."},
    {"delay_seconds", K_I64, offsetof(struct rule, delay_seconds), 0, "0", 0, 31536000, 0, NULL,
     NULL, NULL, "Retention delay before the deletion is sent."},
};
static const struct keytab rule_tab = {rule_keys, sizeof(rule_keys) / sizeof(rule_keys[0]),
                                       sizeof(struct rule)};

static const struct key client_keys[] = {
    {"id", K_IDBUF, offsetof(struct client, id), 0, NULL, 1, CONFIG_CLIENT_ID_MAX, KF_REQUIRED,
     check_client_id, NULL, NULL, "Client name, unique; recorded in the audit log."},
    {"secrets", K_SECRETS, offsetof(struct client, secrets), offsetof(struct client, n_secrets),
     NULL, 1, CONFIG_MAX_SECRETS, KF_REQUIRED, NULL, check_whsec, NULL,
     "Standard Webhooks secrets (whsec_ + base64, >= 16 bytes); any one verifies."},
    {"cert_subject", K_STR, offsetof(struct client, cert_subject), 0, "null", 1, 255, KF_NULLABLE,
     NULL, NULL, NULL, "mTLS certificate subject CN this client must present; null = any."},
};
static const struct keytab client_tab = {client_keys, sizeof(client_keys) / sizeof(client_keys[0]),
                                         sizeof(struct client)};

static const struct key config_keys[] = {
    {"listen.address", K_STR, C(listen.address), 0, "\"127.0.0.1\"", 1, 255, 0, NULL, NULL, NULL,
     "Address of the public listener (webhooks, internal API, health)."},
    {"listen.port", K_INT, C(listen.port), 0, "8080", 1, 65535, 0, NULL, NULL, NULL,
     "Port of the public listener."},
    {"listen.tls.cert_file", K_STR, C(listen.tls.cert_file), 0, "null", 1, 4096, KF_NULLABLE, NULL,
     NULL, NULL, "PEM certificate chain; with key_file the listener speaks HTTPS. null = HTTP."},
    {"listen.tls.key_file", K_STR, C(listen.tls.key_file), 0, "null", 1, 4096, KF_NULLABLE, NULL,
     NULL, NULL, "PEM private key; set together with cert_file."},
    {"listen.tls.client_ca_file", K_STR, C(listen.tls.client_ca_file), 0, "null", 1, 4096,
     KF_NULLABLE, NULL, NULL, NULL,
     "CA bundle for client certificates (mTLS); needs cert_file. null = none asked."},
    {"admin.address", K_STR, C(admin.address), 0, "\"127.0.0.1\"", 1, 255, 0, NULL, NULL, NULL,
     "Address of the admin listener (ctl commands)."},
    {"admin.port", K_INT, C(admin.port), 0, "8081", 0, 65535, 0, NULL, NULL, NULL,
     "Port of the admin listener; 0 = off."},
    {"admin.token", K_SECRET, C(admin.token), 0, "\"env:DG_ADMIN_TOKEN\"", 0, 0, KF_NULLABLE, NULL,
     NULL, NULL, "Bearer token for the admin listener; null = admin listener off."},
    {"admin.max_connections", K_INT, C(admin.max_connections), 0, "16", 1, 1024, 0, NULL, NULL,
     NULL, "Most open connections on the admin listener (kept apart from the public one's)."},
    {"extend.base_url", K_STR, C(extend.base_url), 0, "\"https://api.extend.ai\"", 1, 2048, 0,
     check_base_url, NULL, NULL,
     "Extend API base URL; https://, or http:// only to 127.0.0.1, localhost or [::1]."},
    {"extend.api_version", K_STR, C(extend.api_version), 0, "\"2026-02-09\"", 1, 64, 0,
     check_header_token, NULL, NULL, "Sent as x-extend-api-version."},
    {"extend.token", K_SECRET, C(extend.token), 0, "\"env:EXTEND_API_TOKEN\"", 0, 0, 0, NULL, NULL,
     NULL, "Extend API bearer token."},
    {"extend.workspace_id", K_STR, C(extend.workspace_id), 0, "null", 1, 128, KF_NULLABLE,
     check_workspace_id, NULL, NULL, "Workspace id header, A-Z a-z 0-9 _ -; null = not sent."},
    {"extend.ca_file", K_STR, C(extend.ca_file), 0, "null", 1, 4096, KF_NULLABLE, NULL, NULL, NULL,
     "Extra CA bundle to trust for base_url; null = system CAs only."},
    {"extend.timeout_ms", K_INT, C(extend.timeout_ms), 0, "30000", 100, 300000, 0, NULL, NULL, NULL,
     "Whole-request time-out of one DELETE."},
    {"extend.connect_timeout_ms", K_INT, C(extend.connect_timeout_ms), 0, "10000", 100, 60000, 0,
     NULL, NULL, NULL, "Connect (TCP + TLS) time-out."},
    {"extend.rate_per_second", K_NUM, C(extend.rate_per_second), 0, "8", 0, 1000, 0, NULL, NULL,
     NULL, "Most DELETEs per second (fractions allowed); 0 = no rate limit."},
    {"extend.max_in_flight", K_INT, C(extend.max_in_flight), 0, "4", 1, 256, 0, NULL, NULL, NULL,
     "Most DELETEs outstanding at once."},
    {"extend.dry_run", K_BOOL, C(extend.dry_run), 0, "false", 0, 0, 0, NULL, NULL, NULL,
     "Do everything but send the DELETE (for rollouts)."},
    {"webhooks.path", K_STR, C(webhooks.path), 0, "\"/webhooks/extend\"", 1, 128, 0,
     check_webhook_path, NULL, NULL,
     "Route that receives Extend webhooks; must start with '/', not a gateway route."},
    {"webhooks.signing_secrets", K_SECRETS, C(webhooks.signing_secrets),
     C(webhooks.n_signing_secrets), "[\"env:EXTEND_WEBHOOK_SECRET\"]", 1, CONFIG_MAX_SECRETS, 0,
     NULL, NULL, NULL,
     "Extend webhook signing secrets (wss_...), used as raw bytes; any one verifies."},
    {"webhooks.max_age_seconds", K_INT, C(webhooks.max_age_seconds), 0, "300", 1, 86400, 0, NULL,
     NULL, NULL, "Oldest webhook timestamp accepted."},
    {"webhooks.max_future_seconds", K_INT, C(webhooks.max_future_seconds), 0, "60", 0, 3600, 0,
     NULL, NULL, NULL, "Furthest a webhook timestamp may be ahead of our clock."},
    {"webhooks.rules", K_LIST, C(webhooks.rules), C(webhooks.n_rules),
     "[{\"event\": \"extract_run.processed\", \"delete\": [\"run\"], \"delay_seconds\": 0}, "
     "{\"event\": \"extract_run.failed\", \"delete\": [\"run\"], \"delay_seconds\": 0}]",
     0, CONFIG_MAX_RULES, 0, NULL, NULL, &rule_tab,
     "Which events cause which deletions; an event with no rule is ignored."},
    {"internal.timestamp_tolerance_seconds", K_INT, C(internal.timestamp_tolerance_seconds), 0,
     "300", 1, 3600, 0, NULL, NULL, NULL,
     "Allowed clock skew of internal requests' webhook-timestamp, both ways."},
    {"internal.max_batch_items", K_INT, C(internal.max_batch_items), 0, "1000", 1, 1000, 0, NULL,
     NULL, NULL, "Most items in one internal request."},
    {"clients", K_LIST, C(clients), C(n_clients), "[]", 0, CONFIG_MAX_CLIENTS, 0, NULL, NULL,
     &client_tab, "Internal services allowed to POST /v1/deletions."},
    {"queue.backend", K_STR, C(queue.backend), 0, "\"sqlite\"", 1, 32, 0, check_backend, NULL, NULL,
     "\"sqlite\" (one node, embedded) or \"postgres\" (several replicas share one queue)."},
    {"queue.path", K_STR, C(queue.path), 0, "\"var/queue.db\"", 1, 4096, 0, NULL, NULL, NULL,
     "SQLite database file."},
    {"queue.url", K_STR, C(queue.url), 0, "null", 1, 1024, KF_NULLABLE, check_pg_url, NULL, NULL,
     "PostgreSQL conninfo or URI (sslmode, sslrootcert as libpq takes them), without a "
     "password; required with backend postgres."},
    {"queue.password", K_SECRET, C(queue.password), 0, "null", 0, 0, KF_NULLABLE, NULL, NULL, NULL,
     "PostgreSQL password (env:/file:); null = libpq's own means (PGPASSFILE, peer)."},
    {"queue.replica_id", K_STR, C(queue.replica_id), 0, "null", 1, 64, KF_NULLABLE,
     check_replica_id, NULL, NULL,
     "This replica's name in a shared queue (its audit chain's position is kept under it); "
     "null = the host name."},
    {"queue.lease_slack_seconds", K_I64, C(queue.lease_slack_seconds), 0, "60", 1, 3600, 0, NULL,
     NULL, NULL,
     "How much longer than a DELETE's time-outs a claim's lease lasts; with several replicas, "
     "the jobs of one that died are taken by another once their leases end."},
    {"queue.idempotency_ttl_seconds", K_I64, C(queue.idempotency_ttl_seconds), 0, "604800", 3600,
     31536000, 0, NULL, NULL, NULL, "How long eventIds and webhook-ids are remembered."},
    {"queue.retention_days", K_NUM, C(queue.retention_days), 0, "400", 0, 36500, 0, NULL, NULL,
     NULL,
     "Finished deletions, their jobs and attempts are pruned after this many days (fractions "
     "allowed); 0 = kept for ever. The audit log keeps the evidence."},
    {"retry.initial_ms", K_I64, C(retry.initial_ms), 0, "1000", 10, 3600000, 0, NULL, NULL, NULL,
     "First retry delay (doubles each time, with jitter)."},
    {"retry.max_ms", K_I64, C(retry.max_ms), 0, "300000", 10, 86400000, 0, NULL, NULL, NULL,
     "Longest retry delay; at least retry.initial_ms."},
    {"retry.give_up_after_seconds", K_I64, C(retry.give_up_after_seconds), 0, "259200", 1, 31536000,
     0, NULL, NULL, NULL, "A deletion still failing after this long is dead."},
    {"audit.path", K_STR, C(audit.path), 0, "\"var/audit.jsonl\"", 1, 4096, 0, NULL, NULL, NULL,
     "Audit log (JSON Lines, HMAC chain)."},
    {"audit.key", K_SECRET, C(audit.key), 0, "\"env:DG_AUDIT_KEY\"", 0, 0, 0, NULL, NULL, NULL,
     "HMAC key of the audit chain."},
    {"audit.rotate_bytes", K_I64, C(audit.rotate_bytes), 0, "67108864", 65536, 17179869184LL, 0,
     NULL, NULL, NULL, "Audit file size that starts a new file."},
    {"receipts.enabled", K_BOOL, C(receipts.enabled), 0, "true", 0, 0, 0, NULL, NULL, NULL,
     "Signed deletion receipts; false turns them off."},
    {"receipts.signing_key", K_SECRET, C(receipts.signing_key), 0, "null", 0, 0, KF_NULLABLE, NULL,
     check_ed25519_pem, NULL,
     "PEM Ed25519 private key that signs receipts; null = a key the gateway makes once, "
     "receipt-key.pem beside queue.path (mode 0600)."},
    {"limits.max_body_bytes", K_I64, C(limits.max_body_bytes), 0, "1048576", 1024, 67108864, 0,
     NULL, NULL, NULL, "Largest request body accepted (413 above)."},
    {"limits.max_header_bytes", K_I64, C(limits.max_header_bytes), 0, "16384", 1024, 1048576, 0,
     NULL, NULL, NULL, "Largest request header block accepted."},
    {"limits.request_timeout_seconds", K_INT, C(limits.request_timeout_seconds), 0, "30", 1, 300, 0,
     NULL, NULL, NULL, "Time a client has to send its whole request (408 after)."},
    {"limits.max_connections", K_INT, C(limits.max_connections), 0, "1024", 1, 1000000, 0, NULL,
     NULL, NULL,
     "Most open connections on the public listener; lowered at start to fit the file "
     "descriptor limit. At the cap the slowest unfinished request is shed (503)."},
    {"log.level", K_STR, C(log.level), 0, "\"info\"", 1, 16, 0, check_log_level, NULL, NULL,
     "Lowest level logged: debug, info, warn or error."},
};
static const struct keytab config_tab = {config_keys, sizeof(config_keys) / sizeof(config_keys[0]),
                                         sizeof(struct config)};

#define FIELD(base, off, T) ((T *)(void *)((char *)(base) + (off)))
#define CFIELD(base, off, T) ((const T *)(const void *)((const char *)(base) + (off)))

/* ---- loading ---------------------------------------------------------- */

/* Builds a key path for messages; long paths are cut, never overflowed. */
static void path_fmt(char *out, size_t outlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void path_fmt(char *out, size_t outlen, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(out, outlen, fmt, ap);
    va_end(ap);
}

static void join_path(char *out, size_t outlen, const char *prefix, const char *name)
{
    if (prefix == NULL || prefix[0] == '\0')
        path_fmt(out, outlen, "%s", name);
    else
        path_fmt(out, outlen, "%s.%s", prefix, name);
}

/* Refuses any key the table does not know. rel is the path relative to the
 * table (to match names), shown is the full path (for the message). */
static int check_unknown(const struct keytab *tab, const json_t *obj, const char *rel,
                         const char *shown, char *err, size_t errlen)
{
    const char *k;
    json_t *v;

    json_object_foreach((json_t *)obj, k, v)
    {
        char r[PATH_MAX_LEN], s[PATH_MAX_LEN];
        size_t rlen;
        int leaf = 0, section = 0;

        join_path(r, sizeof(r), rel, k);
        join_path(s, sizeof(s), shown, k);
        rlen = strlen(r);
        for (size_t i = 0; i < tab->n; i++) {
            const char *name = tab->keys[i].name;
            if (strcmp(name, r) == 0)
                leaf = 1;
            else if (strncmp(name, r, rlen) == 0 && name[rlen] == '.')
                section = 1;
        }
        if (leaf)
            continue;
        if (!section)
            return fail_at(err, errlen, s, "unknown key");
        if (!json_is_object(v))
            return fail_at(err, errlen, s, "must be an object");
        if (check_unknown(tab, v, r, s, err, errlen) == -1)
            return -1;
    }
    return 0;
}

static json_t *lookup(const json_t *obj, const char *dotted)
{
    char part[PATH_MAX_LEN];
    const char *p = dotted;

    while (obj != NULL && json_is_object(obj)) {
        size_t n = strcspn(p, ".");
        if (n >= sizeof(part))
            return NULL;
        memcpy(part, p, n);
        part[n] = '\0';
        obj = json_object_get(obj, part);
        if (p[n] == '\0')
            return (json_t *)obj;
        p += n + 1;
    }
    return NULL;
}

/* Secrets are references only: a literal token in the file would end up in
 * backups, tickets and version control. The value is never echoed. */
static int parse_secret_ref(const char *path, const json_t *v, struct secret *out, char *err,
                            size_t errlen)
{
    const char *s;
    int ok = 0;

    if (!json_is_string(v))
        return fail_at(err, errlen, path, "must be a string \"env:NAME\" or \"file:/path\"");
    s = json_string_value(v);
    if (strncmp(s, "env:", 4) == 0) {
        const char *n = s + 4;
        ok = (*n == '_' || isalpha((unsigned char)*n)) && strlen(n) <= 128;
        for (; ok && *n; n++)
            ok = *n == '_' || isalnum((unsigned char)*n);
    } else if (strncmp(s, "file:", 5) == 0) {
        ok = s[5] != '\0' && strlen(s) <= 4096;
        for (const char *p = s; ok && *p; p++)
            ok = (unsigned char)*p >= 0x20 && *p != 0x7f;
    }
    if (!ok)
        return fail_at(err, errlen, path,
                       "must be \"env:NAME\" or \"file:/path\"; secrets are never written in "
                       "the config file itself");
    out->ref = strdup(s);
    if (out->ref == NULL)
        return fail_at(err, errlen, path, "out of memory");
    return 0;
}

static int parse_value(const struct key *k, void *base, const json_t *v, const char *path,
                       char *err, size_t errlen);

static int parse_string(const struct key *k, const json_t *v, const char *path, char **out,
                        char *err, size_t errlen)
{
    const char *s;
    size_t len;

    *out = NULL;
    if (json_is_null(v) && (k->flags & KF_NULLABLE))
        return 0;
    if (!json_is_string(v))
        return fail_at(err, errlen, path,
                       (k->flags & KF_NULLABLE) ? "must be a string or null" : "must be a string");
    s = json_string_value(v);
    len = json_string_length(v);
    if ((int64_t)len < k->min || (int64_t)len > k->max)
        return fail_at(err, errlen, path, "must be %lld to %lld characters long", (long long)k->min,
                       (long long)k->max);
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return fail_at(err, errlen, path, "must not contain control characters");
    *out = strdup(s);
    if (*out == NULL)
        return fail_at(err, errlen, path, "out of memory");
    if (k->scheck != NULL && k->scheck(path, *out, err, errlen) == -1) {
        free(*out);
        *out = NULL;
        return -1;
    }
    return 0;
}

static int parse_list(const struct key *k, void *base, const json_t *v, const char *path, char *err,
                      size_t errlen)
{
    const struct keytab *sub = k->sub;
    int *count = FIELD(base, k->n_off, int);
    size_t n;

    if (!json_is_array(v))
        return fail_at(err, errlen, path, "must be an array");
    n = json_array_size(v);
    if ((int64_t)n < k->min || (int64_t)n > k->max)
        return fail_at(err, errlen, path, "must have %lld to %lld entries", (long long)k->min,
                       (long long)k->max);
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(v, i);
        void *elem = (char *)base + k->off + i * sub->elem_size;
        char ep[PATH_MAX_LEN];

        path_fmt(ep, sizeof(ep), "%s[%zu]", path, i);
        if (!json_is_object(e))
            return fail_at(err, errlen, ep, "must be an object");
        if (check_unknown(sub, e, "", ep, err, errlen) == -1)
            return -1;
        /* Counted before it is filled so that config_free sees it. */
        *count = (int)i + 1;
        for (size_t j = 0; j < sub->n; j++) {
            const struct key *sk = &sub->keys[j];
            char fp[PATH_MAX_LEN];

            join_path(fp, sizeof(fp), ep, sk->name);
            if (parse_value(sk, elem, lookup(e, sk->name), fp, err, errlen) == -1)
                return -1;
        }
    }
    return 0;
}

/* Parses one key's JSON value (NULL = absent: use the default) into its
 * field. */
static int parse_value(const struct key *k, void *base, const json_t *v, const char *path,
                       char *err, size_t errlen)
{
    json_t *def = NULL;
    int rc = -1;

    if (v == NULL) {
        json_error_t jerr;

        if (k->def == NULL)
            return fail_at(err, errlen, path, "required");
        def = json_loads(k->def, JSON_DECODE_ANY, &jerr);
        if (def == NULL)
            return fail_at(err, errlen, path, "bad built-in default: %s", jerr.text);
        v = def;
    }
    switch (k->type) {
    case K_STR:
        rc = parse_string(k, v, path, FIELD(base, k->off, char *), err, errlen);
        break;
    case K_IDBUF: {
        char *s = NULL;
        rc = parse_string(k, v, path, &s, err, errlen);
        if (rc == 0 && s != NULL)
            snprintf(FIELD(base, k->off, char), (size_t)k->max + 1, "%s", s);
        free(s);
        break;
    }
    case K_INT:
    case K_I64: {
        json_int_t n;
        if (!json_is_integer(v)) {
            rc = fail_at(err, errlen, path, "must be an integer");
            break;
        }
        n = json_integer_value(v);
        if (n < k->min || n > k->max) {
            rc = fail_at(err, errlen, path, "must be between %lld and %lld", (long long)k->min,
                         (long long)k->max);
            break;
        }
        if (k->type == K_INT)
            *FIELD(base, k->off, int) = (int)n;
        else
            *FIELD(base, k->off, int64_t) = (int64_t)n;
        rc = 0;
        break;
    }
    case K_NUM: {
        double d;
        if (!json_is_number(v)) {
            rc = fail_at(err, errlen, path, "must be a number");
            break;
        }
        d = json_number_value(v);
        if (!(d >= (double)k->min && d <= (double)k->max)) {
            rc = fail_at(err, errlen, path, "must be between %lld and %lld", (long long)k->min,
                         (long long)k->max);
            break;
        }
        *FIELD(base, k->off, double) = d;
        rc = 0;
        break;
    }
    case K_BOOL:
        if (!json_is_boolean(v)) {
            rc = fail_at(err, errlen, path, "must be true or false");
            break;
        }
        *FIELD(base, k->off, bool) = json_is_true(v);
        rc = 0;
        break;
    case K_SECRET:
        if (json_is_null(v) && (k->flags & KF_NULLABLE))
            rc = 0;
        else
            rc = parse_secret_ref(path, v, FIELD(base, k->off, struct secret), err, errlen);
        break;
    case K_SECRETS: {
        struct secret *arr = FIELD(base, k->off, struct secret);
        int *count = FIELD(base, k->n_off, int);
        size_t n;

        if (!json_is_array(v)) {
            rc = fail_at(err, errlen, path, "must be an array of \"env:NAME\" or \"file:/path\"");
            break;
        }
        n = json_array_size(v);
        if ((int64_t)n < k->min || (int64_t)n > k->max) {
            rc = fail_at(err, errlen, path, "must have %lld to %lld entries", (long long)k->min,
                         (long long)k->max);
            break;
        }
        rc = 0;
        for (size_t i = 0; i < n && rc == 0; i++) {
            char ep[PATH_MAX_LEN];
            path_fmt(ep, sizeof(ep), "%s[%zu]", path, i);
            rc = parse_secret_ref(ep, json_array_get(v, i), &arr[i], err, errlen);
            if (rc == 0)
                *count = (int)i + 1;
        }
        break;
    }
    case K_DELETES: {
        unsigned mask = 0;
        size_t n;

        if (!json_is_array(v)) {
            rc = fail_at(err, errlen, path, "must be an array of \"run\" and/or \"file\"");
            break;
        }
        n = json_array_size(v);
        if (n == 0) {
            rc = fail_at(err, errlen, path, "must name \"run\", \"file\" or both");
            break;
        }
        rc = 0;
        for (size_t i = 0; i < n && rc == 0; i++) {
            const char *s = json_string_value(json_array_get(v, i));
            unsigned bit = 0;

            if (s != NULL && strcmp(s, "run") == 0)
                bit = RULE_DELETE_RUN;
            else if (s != NULL && strcmp(s, "file") == 0)
                bit = RULE_DELETE_FILE;
            if (bit == 0)
                rc = fail_at(err, errlen, path, "entry %zu must be \"run\" or \"file\"", i);
            else if (mask & bit)
                rc = fail_at(err, errlen, path, "\"%s\" is listed twice", s);
            mask |= bit;
        }
        if (rc == 0)
            *FIELD(base, k->off, unsigned) = mask;
        break;
    }
    case K_LIST:
        rc = parse_list(k, base, v, path, err, errlen);
        break;
    }
    json_decref(def);
    return rc;
}

/* Rules that tie two keys together. */
static int check_across(const struct config *cfg, char *err, size_t errlen)
{
    const struct tls_config *tls = &cfg->listen.tls;

    if ((tls->cert_file == NULL) != (tls->key_file == NULL))
        return fail_at(err, errlen, tls->cert_file ? "listen.tls.key_file" : "listen.tls.cert_file",
                       "listen.tls.cert_file and listen.tls.key_file must be set together");
    if (tls->client_ca_file != NULL && tls->cert_file == NULL)
        return fail_at(err, errlen, "listen.tls.client_ca_file",
                       "needs listen.tls.cert_file and key_file (client certificates need TLS)");
    if (cfg->admin.port != 0 && cfg->admin.port == cfg->listen.port &&
        strcmp(cfg->admin.address, cfg->listen.address) == 0)
        return fail_at(err, errlen, "admin.port", "must differ from listen.port");
    if (!cfg->receipts.enabled && cfg->receipts.signing_key.ref != NULL)
        return fail_at(err, errlen, "receipts.signing_key",
                       "is set while receipts.enabled is false: drop one of them");
    if (cfg->retry.max_ms < cfg->retry.initial_ms)
        return fail_at(err, errlen, "retry.max_ms", "must be at least retry.initial_ms (%lld)",
                       (long long)cfg->retry.initial_ms);
    if (strcmp(cfg->queue.backend, "postgres") == 0 && cfg->queue.url == NULL)
        return fail_at(err, errlen, "queue.url", "is required with queue.backend \"postgres\"");
    for (int i = 0; i < cfg->n_clients; i++)
        for (int j = 0; j < i; j++)
            if (strcmp(cfg->clients[i].id, cfg->clients[j].id) == 0) {
                char p[PATH_MAX_LEN];
                path_fmt(p, sizeof(p), "clients[%d].id", i);
                return fail_at(err, errlen, p, "duplicate client id \"%s\"", cfg->clients[i].id);
            }
    return 0;
}

static int load_json(struct config *cfg, json_t *root, char *err, size_t errlen)
{
    memset(cfg, 0, sizeof(*cfg));
    if (!json_is_object(root)) {
        fail_at(err, errlen, "config", "must be a JSON object");
        goto fail;
    }
    if (check_unknown(&config_tab, root, "", "", err, errlen) == -1)
        goto fail;
    for (size_t i = 0; i < config_tab.n; i++) {
        const struct key *k = &config_keys[i];
        if (parse_value(k, cfg, lookup(root, k->name), k->name, err, errlen) == -1)
            goto fail;
    }
    if (check_across(cfg, err, errlen) == -1)
        goto fail;
    return 0;
fail:
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

/* ---- secrets ---------------------------------------------------------- */

static void secret_wipe_value(unsigned char **value, size_t *len)
{
    if (*value != NULL) {
        OPENSSL_cleanse(*value, *len);
        free(*value);
    }
    *value = NULL;
    *len = 0;
}

/* Reads one reference into a fresh buffer. Messages name the path and the
 * reference, never a byte of the value. */
static int secret_read(const char *path, const char *ref, unsigned char **out, size_t *outlen,
                       char *err, size_t errlen)
{
    unsigned char *buf = NULL, *val = NULL;
    size_t len = 0;
    int fd = -1;

    *out = NULL;
    *outlen = 0;
    if (strncmp(ref, "env:", 4) == 0) {
        const char *e = getenv(ref + 4);
        if (e == NULL || e[0] == '\0')
            return fail_at(err, errlen, path, "%s: environment variable is not set or empty", ref);
        len = strlen(e);
        if (len > SECRET_MAX_BYTES)
            return fail_at(err, errlen, path, "%s: longer than %d bytes", ref, SECRET_MAX_BYTES);
        buf = malloc(len + 1);
        if (buf == NULL)
            return fail_at(err, errlen, path, "out of memory");
        memcpy(buf, e, len);
    } else {
        struct stat st;
        ssize_t n;

        fd = open(ref + 5, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd == -1) {
            fail_at(err, errlen, path, "%s: cannot open: %s", ref, strerror(errno));
            goto fail;
        }
        /* A FIFO or device could block or never end: only plain files. */
        if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
            fail_at(err, errlen, path, "%s: not a regular file", ref);
            goto fail;
        }
        /* Room for the largest value, its "\r\n" and one byte to notice more. */
        buf = malloc(READ_CAP);
        if (buf == NULL) {
            fail_at(err, errlen, path, "out of memory");
            goto fail;
        }
        while (len < READ_CAP) {
            n = read(fd, buf + len, READ_CAP - len);
            if (n == 0)
                break;
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                fail_at(err, errlen, path, "%s: cannot read: %s", ref, strerror(errno));
                goto fail;
            }
            len += (size_t)n;
        }
        close(fd);
        fd = -1;
        if (len == READ_CAP) {
            fail_at(err, errlen, path, "%s: larger than %d bytes", ref, SECRET_MAX_BYTES);
            goto fail;
        }
    }
    /* Editors and `echo` add one newline; it is never part of the secret. */
    if (len > 0 && buf[len - 1] == '\n') {
        len--;
        if (len > 0 && buf[len - 1] == '\r')
            len--;
    }
    if (len > SECRET_MAX_BYTES) {
        fail_at(err, errlen, path, "%s: larger than %d bytes", ref, SECRET_MAX_BYTES);
        goto fail;
    }
    if (len == 0) {
        fail_at(err, errlen, path, "%s: is empty", ref);
        goto fail;
    }
    val = malloc(len + 1);
    if (val == NULL) {
        fail_at(err, errlen, path, "out of memory");
        goto fail;
    }
    memcpy(val, buf, len);
    val[len] = '\0';
    OPENSSL_cleanse(buf, len);
    free(buf);
    *out = val;
    *outlen = len;
    return 0;
fail:
    if (fd != -1)
        close(fd);
    if (buf != NULL) {
        OPENSSL_cleanse(buf, len);
        free(buf);
    }
    return -1;
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
        return fail_at(err, errlen, path, "out of memory");
    n = EVP_DecodeBlock(out, (const unsigned char *)b, (int)len);
    OPENSSL_cleanse(out, len / 4 * 3 + 1);
    free(out);
    if (n < 0 || (size_t)n < pad || (size_t)n - pad < 16)
        goto bad;
    return 0;
bad:
    return fail_at(err, errlen, path,
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
        return fail_at(err, errlen, path, "%s: not an unencrypted PEM Ed25519 private key", s->ref);
    return 0;
}

struct pending {
    struct secret *s;
    const struct key *k;
    char path[PATH_MAX_LEN];
    unsigned char *value;
    size_t len;
};

struct pending_list {
    struct pending *items;
    size_t n, cap;
};

static int pending_add(struct pending_list *pl, struct secret *s, const struct key *k,
                       const char *path)
{
    if (s->ref == NULL)
        return 0;
    if (pl->n == pl->cap) {
        size_t cap = pl->cap ? pl->cap * 2 : 32;
        struct pending *p = realloc(pl->items, cap * sizeof(*p));
        if (p == NULL)
            return -1;
        pl->items = p;
        pl->cap = cap;
    }
    memset(&pl->items[pl->n], 0, sizeof(pl->items[0]));
    pl->items[pl->n].s = s;
    pl->items[pl->n].k = k;
    snprintf(pl->items[pl->n].path, PATH_MAX_LEN, "%s", path);
    pl->n++;
    return 0;
}

static int collect_secrets(const struct keytab *tab, void *base, const char *prefix,
                           struct pending_list *pl)
{
    for (size_t i = 0; i < tab->n; i++) {
        const struct key *k = &tab->keys[i];
        char p[PATH_MAX_LEN];

        join_path(p, sizeof(p), prefix, k->name);
        if (k->type == K_SECRET) {
            if (pending_add(pl, FIELD(base, k->off, struct secret), k, p) == -1)
                return -1;
        } else if (k->type == K_SECRETS || k->type == K_LIST) {
            int n = *FIELD(base, k->n_off, int);
            for (int j = 0; j < n; j++) {
                char ep[PATH_MAX_LEN];
                path_fmt(ep, sizeof(ep), "%s[%d]", p, j);
                if (k->type == K_SECRETS) {
                    if (pending_add(pl, FIELD(base, k->off, struct secret) + j, k, ep) == -1)
                        return -1;
                } else if (collect_secrets(k->sub,
                                           (char *)base + k->off + (size_t)j * k->sub->elem_size,
                                           ep, pl) == -1) {
                    return -1;
                }
            }
        }
    }
    return 0;
}

int config_resolve_secrets(struct config *cfg, char *err, size_t errlen)
{
    struct pending_list pl = {NULL, 0, 0};
    int rc = -1;

    if (collect_secrets(&config_tab, cfg, "", &pl) == -1) {
        snprintf(err, errlen, "config: out of memory");
        goto fail;
    }
    /* Read everything first, so that a failed reload keeps the old values. */
    for (size_t i = 0; i < pl.n; i++) {
        struct pending *p = &pl.items[i];
        if (secret_read(p->path, p->s->ref, &p->value, &p->len, err, errlen) == -1)
            goto fail;
        if (p->k->rcheck != NULL) {
            struct secret tmp = {p->s->ref, p->value, p->len};
            if (p->k->rcheck(p->path, &tmp, err, errlen) == -1)
                goto fail;
        }
    }
    for (size_t i = 0; i < pl.n; i++) {
        struct pending *p = &pl.items[i];
        secret_wipe_value(&p->s->value, &p->s->len);
        p->s->value = p->value;
        p->s->len = p->len;
        p->value = NULL;
        p->len = 0;
    }
    rc = 0;
fail:
    for (size_t i = 0; i < pl.n; i++)
        secret_wipe_value(&pl.items[i].value, &pl.items[i].len);
    free(pl.items);
    return rc;
}

int config_resolve_ref(const char *ref, struct secret *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    return secret_read("secret", ref, &out->value, &out->len, err, errlen);
}

/* ---- output ----------------------------------------------------------- */

static json_t *secret_json(const struct secret *s)
{
    if (s->ref == NULL)
        return json_null();
    return json_pack("{s:s, s:s}", "ref", s->ref, "value", "(redacted)");
}

static json_t *str_json(const char *s)
{
    return s != NULL ? json_string(s) : json_null();
}

static json_t *table_json(const struct keytab *tab, const void *base);

static json_t *value_json(const struct key *k, const void *base)
{
    json_t *a;

    switch (k->type) {
    case K_STR:
        return str_json(*CFIELD(base, k->off, char *));
    case K_IDBUF:
        return json_string(CFIELD(base, k->off, char));
    case K_INT:
        return json_integer(*CFIELD(base, k->off, int));
    case K_I64:
        return json_integer(*CFIELD(base, k->off, int64_t));
    case K_NUM: {
        double d = *CFIELD(base, k->off, double);
        if (d == (double)(json_int_t)d)
            return json_integer((json_int_t)d);
        return json_real(d);
    }
    case K_BOOL:
        return json_boolean(*CFIELD(base, k->off, bool));
    case K_SECRET:
        return secret_json(CFIELD(base, k->off, struct secret));
    case K_SECRETS:
        a = json_array();
        for (int i = 0; a != NULL && i < *CFIELD(base, k->n_off, int); i++)
            json_array_append_new(a, secret_json(CFIELD(base, k->off, struct secret) + i));
        return a;
    case K_DELETES: {
        unsigned m = *CFIELD(base, k->off, unsigned);
        a = json_array();
        if (a != NULL && (m & RULE_DELETE_RUN))
            json_array_append_new(a, json_string("run"));
        if (a != NULL && (m & RULE_DELETE_FILE))
            json_array_append_new(a, json_string("file"));
        return a;
    }
    case K_LIST:
        a = json_array();
        for (int i = 0; a != NULL && i < *CFIELD(base, k->n_off, int); i++)
            json_array_append_new(
                a, table_json(k->sub, (const char *)base + k->off + (size_t)i * k->sub->elem_size));
        return a;
    }
    return json_null();
}

/* Builds the nested object for a table, sections made from dotted names. */
static json_t *table_json(const struct keytab *tab, const void *base)
{
    json_t *root = json_object();

    for (size_t i = 0; root != NULL && i < tab->n; i++) {
        const struct key *k = &tab->keys[i];
        const char *p = k->name, *dot;
        json_t *obj = root;

        while ((dot = strchr(p, '.')) != NULL) {
            char part[PATH_MAX_LEN];
            json_t *next;

            snprintf(part, sizeof(part), "%.*s", (int)(dot - p), p);
            next = json_object_get(obj, part);
            if (next == NULL) {
                next = json_object();
                json_object_set_new(obj, part, next);
            }
            obj = next;
            p = dot + 1;
        }
        json_object_set_new(obj, p, value_json(k, base));
    }
    return root;
}

void config_print(const struct config *cfg, FILE *out)
{
    json_t *root = table_json(&config_tab, cfg);

    if (root == NULL)
        return;
    json_dumpf(root, out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    fputc('\n', out);
    json_decref(root);
}

static const char *type_name(const struct key *k)
{
    switch (k->type) {
    case K_STR:
    case K_IDBUF:
        return (k->flags & KF_NULLABLE) ? "string or null" : "string";
    case K_INT:
    case K_I64:
        return "integer";
    case K_NUM:
        return "number";
    case K_BOOL:
        return "boolean";
    case K_SECRET:
        return (k->flags & KF_NULLABLE) ? "secret ref or null" : "secret ref";
    case K_SECRETS:
        return "array of secret refs";
    case K_DELETES:
        return "array of strings";
    case K_LIST:
        return "array of objects";
    }
    return "?";
}

static void reference_rows(const struct keytab *tab, const char *prefix, FILE *out)
{
    for (size_t i = 0; i < tab->n; i++) {
        const struct key *k = &tab->keys[i];
        char bounds[64] = "";

        switch (k->type) {
        case K_STR:
        case K_IDBUF:
            snprintf(bounds, sizeof(bounds), "%lld..%lld chars", (long long)k->min,
                     (long long)k->max);
            break;
        case K_INT:
        case K_I64:
        case K_NUM:
            snprintf(bounds, sizeof(bounds), "%lld..%lld", (long long)k->min, (long long)k->max);
            break;
        case K_SECRETS:
        case K_LIST:
            snprintf(bounds, sizeof(bounds), "%lld..%lld entries", (long long)k->min,
                     (long long)k->max);
            break;
        case K_DELETES:
            snprintf(bounds, sizeof(bounds), "\"run\", \"file\"");
            break;
        case K_BOOL:
        case K_SECRET:
            snprintf(bounds, sizeof(bounds), "-");
            break;
        }
        fprintf(out, "| `%s%s` | %s | %s%s%s | %s | %s |\n", prefix, k->name, type_name(k),
                k->def ? "`" : "", k->def ? k->def : "(required)", k->def ? "`" : "", bounds,
                k->doc);
        if (k->type == K_LIST) {
            char p[PATH_MAX_LEN];
            path_fmt(p, sizeof(p), "%s%s[].", prefix, k->name);
            reference_rows(k->sub, p, out);
        }
    }
}

void config_print_reference(FILE *out)
{
    fprintf(out, "| key | type | default | bounds | meaning |\n");
    fprintf(out, "|---|---|---|---|---|\n");
    reference_rows(&config_tab, "", out);
}

int config_key_name(size_t i, char *out, size_t outlen)
{
    size_t at = 0;

    for (size_t j = 0; j < config_tab.n; j++) {
        const struct key *k = &config_keys[j];

        if (at++ == i) {
            snprintf(out, outlen, "%s", k->name);
            return 0;
        }
        if (k->type != K_LIST)
            continue;
        for (size_t s = 0; s < k->sub->n; s++)
            if (at++ == i) {
                snprintf(out, outlen, "%s[].%s", k->name, k->sub->keys[s].name);
                return 0;
            }
    }
    return -1;
}

/* ---- freeing ---------------------------------------------------------- */

static void secret_free(struct secret *s)
{
    secret_wipe_value(&s->value, &s->len);
    free(s->ref);
    s->ref = NULL;
}

static void table_free(const struct keytab *tab, void *base)
{
    for (size_t i = 0; i < tab->n; i++) {
        const struct key *k = &tab->keys[i];
        int n;

        switch (k->type) {
        case K_STR:
            free(*FIELD(base, k->off, char *));
            *FIELD(base, k->off, char *) = NULL;
            break;
        case K_SECRET:
            secret_free(FIELD(base, k->off, struct secret));
            break;
        case K_SECRETS:
            n = *FIELD(base, k->n_off, int);
            for (int j = 0; j < n; j++)
                secret_free(FIELD(base, k->off, struct secret) + j);
            *FIELD(base, k->n_off, int) = 0;
            break;
        case K_LIST:
            n = *FIELD(base, k->n_off, int);
            for (int j = 0; j < n; j++)
                table_free(k->sub, (char *)base + k->off + (size_t)j * k->sub->elem_size);
            *FIELD(base, k->n_off, int) = 0;
            break;
        default:
            break;
        }
    }
}

void config_free(struct config *cfg)
{
    if (cfg == NULL)
        return;
    table_free(&config_tab, cfg);
    OPENSSL_cleanse(cfg, sizeof(*cfg));
}
