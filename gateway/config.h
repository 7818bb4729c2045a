/*
 * config.h: the gateway's configuration, loaded from one JSON file.
 *
 * Every key is described once, in the table in config.c (key, type,
 * default, bounds, secret or not); the engine in config_schema.c drives
 * validation, `check` output and the reference from it. Unknown keys are
 * an error. A secret is never written in the file: "env:NAME" reads an
 * environment variable, "file:/path" reads a file (config_secret.c).
 */
#ifndef DG_CONFIG_H
#define DG_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "rule.h"
#include "secret.h"
#include "tls_config.h"

#define CONFIG_MAX_SECRETS SECRET_LIST_MAX
#define CONFIG_MAX_RULES 64
#define CONFIG_MAX_CLIENTS 64
#define CONFIG_CLIENT_ID_MAX 64
#define CONFIG_MAX_ACCOUNTS 16 /* fits client.account_mask */
#define CONFIG_ACCOUNT_ID_MAX 32

/* One Extend account: where its DELETEs go, with which credentials and at
 * which pace, and the secrets its webhook endpoint signs with. The legacy
 * `extend` block and webhooks.signing_secrets load as the one account
 * "default". */
struct account {
    char id[CONFIG_ACCOUNT_ID_MAX + 1]; /* [a-z0-9_-]{1,32} */
    char *base_url;                     /* https://..., or http:// only for loopback hosts */
    char *api_version;
    struct secret token;
    char *workspace_id; /* NULL = header not sent */
    char *ca_file;      /* extra CA bundle to trust, NULL = system CAs only */
    int timeout_ms;
    int connect_timeout_ms;
    double rate_per_second;
    int max_in_flight;
    bool dry_run;
    struct secret signing_secrets[CONFIG_MAX_SECRETS];
    int n_signing_secrets;
};

struct client {
    char id[CONFIG_CLIENT_ID_MAX + 1];
    struct secret secrets[CONFIG_MAX_SECRETS];
    int n_secrets;
    char *cert_subject;                  /* mTLS certificate CN bound to this client, or NULL */
    char *accounts[CONFIG_MAX_ACCOUNTS]; /* account ids it may name; none listed = all */
    int n_accounts;
    uint32_t account_mask; /* bit i: cfg->accounts[i] allowed (set by the load) */
};

struct config {
    struct {
        char *address;
        int port;
        struct tls_config tls;
    } listen;
    struct {
        char *address;
        int port; /* 0 = admin listener off */
        struct secret token;
        int max_connections;
    } admin;
    /* accounts[0] is the default one; n_accounts >= 1 after a load. */
    struct account accounts[CONFIG_MAX_ACCOUNTS];
    int n_accounts;
    bool legacy_extend; /* loaded from `extend`: `check` shows that block too */
    struct {
        char *path; /* "/webhooks/extend": the default account's; PATH/ID each account's */
        int max_age_seconds;
        int max_future_seconds;
        struct rule rules[CONFIG_MAX_RULES];
        int n_rules;
    } webhooks;
    struct {
        /* Standard Webhooks timestamp tolerance for internal clients, both
         * directions (the spec's libraries use 300 s). */
        int timestamp_tolerance_seconds;
        int max_batch_items;
    } internal;
    struct client clients[CONFIG_MAX_CLIENTS];
    int n_clients;
    struct {
        char *backend;                   /* "sqlite" or "postgres" */
        char *path;                      /* SQLite database file */
        char *url;                       /* PostgreSQL conninfo or URI, without a password */
        struct secret password;          /* PostgreSQL password, or none (libpq's own means) */
        char *replica_id;                /* this replica's name; NULL = the host name */
        int64_t lease_slack_seconds;     /* a lease outlasts a DELETE's time-outs by this */
        int64_t idempotency_ttl_seconds; /* how long eventIds / webhook-ids are remembered */
        double retention_days;           /* finished deletions kept this long; 0 = for ever */
    } queue;
    struct {
        int64_t initial_ms;
        int64_t max_ms;
        int64_t give_up_after_seconds;
    } retry;
    struct {
        char *path;
        struct secret key;
        int64_t rotate_bytes;
    } audit;
    struct {
        bool enabled;              /* false: no receipts at all */
        struct secret signing_key; /* PEM Ed25519 private key; NULL ref = the generated one */
    } receipts;
    struct {
        int64_t max_body_bytes;
        int64_t max_header_bytes;
        int request_timeout_seconds;
        int max_connections;
    } limits;
    struct {
        char *level; /* debug, info, warn, error */
    } log;
};

/* Loads and validates path. On error returns -1 and writes a message that
 * starts with the offending key ("extend.rate_per_second: must be ...")
 * into err, and cfg holds nothing to free. cfg is overwritten, so do not
 * pass a loaded one. Secrets are not resolved yet. */
int config_load(struct config *cfg, const char *path, char *err, size_t errlen);

/* Same, from a JSON text (for tests). */
int config_load_string(struct config *cfg, const char *json, char *err, size_t errlen);

/* Reads every secret reference (env: or file:). Called at start and again
 * on SIGHUP; old values are wiped. All or nothing: on error (-1, with the
 * key and reference named in err, never the value) the previous values are
 * kept. */
int config_resolve_secrets(struct config *cfg, char *err, size_t errlen);

/* Reads one "env:NAME" or "file:/path" reference outside any config (the
 * command line's --secret); out->ref stays NULL. Wipe and free out->value. */
int config_resolve_ref(const char *ref, struct secret *out, char *err, size_t errlen);

/* Prints the effective config as pretty JSON with every key present; a
 * secret is shown as {"ref": "env:NAME", "value": "(redacted)"}, or null
 * when not configured. No secret byte is ever written. */
void config_print(const struct config *cfg, FILE *out);

/* Prints the key table as a Markdown table (key | type | default | bounds |
 * meaning), for the README and config/README.md. */
void config_print_reference(FILE *out);

/* The i-th key of the table as a dotted path; keys inside array elements
 * read "webhooks.rules[].event". Returns 0, or -1 past the last key. */
int config_key_name(size_t i, char *out, size_t outlen);

/* The index of the account named id (NUL-terminated, or len bytes when
 * len > 0), or -1. */
int config_account_find(const struct config *cfg, const char *id, size_t len);

/* Wipes secrets (secret_free) and frees everything. */
void config_free(struct config *cfg);

#endif
