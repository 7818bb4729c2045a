/*
 * main.c: the deletion-gateway command line, and the daemon's start,
 * signals and orderly stop.
 *
 *   serve -c FILE        run the gateway
 *   check -c FILE        validate a config, print it with secrets redacted
 *   sign extend|internal print the headers a sender would attach
 *   audit verify         check the audit chain
 *   receipt pubkey|verify  receipts' public key, offline verification
 *   ctl ...              operator commands against the admin listener
 *   health               exit 0 when /healthz answers 200 (container probe)
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/thread.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "audit.h"
#include "config.h"
#include "ctl.h"
#include "dispatch.h"
#include "fdlimit.h"
#include "gateway.h"
#include "healthcheck.h"
#include "http.h"
#include "log.h"
#include "queue.h"
#include "receipt.h"
#include "tls.h"
#include "upstream.h"
#include "util.h"
#include "verify.h"

static const char usage[] =
    "usage: deletion-gateway COMMAND [options]\n"
    "\n"
    "  serve -c FILE [--accept-audit-mismatch]\n"
    "                                 run the gateway (the flag: start even though the\n"
    "                                 queue and the audit log disagree; recorded)\n"
    "  check -c FILE                  validate FILE, print the effective config (secrets\n"
    "                                 redacted); exit 1 naming the offending key\n"
    "  check --reference              print every config key as a Markdown table\n"
    "  sign extend --secret S [--timestamp T] < body\n"
    "                                 print the headers Extend would send for body\n"
    "  sign internal --secret S [--id ID] [--timestamp T] < body\n"
    "                                 print Standard Webhooks headers for body\n"
    "                                 (S may be the secret, env:NAME or file:PATH)\n"
    "  audit verify [-c FILE] [AUDIT_FILE...]\n"
    "                                 check the audit chain (files oldest first; default:\n"
    "                                 audit.path of FILE and its rotated files)\n"
    "  receipt pubkey -c FILE         print the receipts' public key (PEM)\n"
    "  receipt verify (--pubkey PEM_FILE | -c FILE) [RECEIPT_FILE]\n"
    "                                 check a receipt offline (default: stdin)\n"
    "  ctl [-c FILE] [--url URL] [--json | --table] show queue | show ID |\n"
    "      list STATE [--limit N] | retry ID | retry --all-dead | cancel ID | pause |\n"
    "      resume | find RESOURCE_ID | export [--since T] [--until T] [--source S]\n"
    "      [--resource-id ID] [--state S] [--format csv|jsonl] [--receipts]\n"
    "                                 operator commands (token: DG_ADMIN_TOKEN or admin.token);\n"
    "                                 exit 0 done, 1 refused, 2 usage or connection error\n"
    "  health [-c FILE | --url URL]   exit 0 if the /healthz of FILE's public listener, or\n"
    "                                 URL (default http://127.0.0.1:8080/healthz), answers 200\n"
    "  --version, --help\n";

/* ---- small helpers ---- */

static const char *opt_value(int argc, char **argv, const char *name)
{
    for (int i = 0; i + 1 < argc; i++) {
        if (strcmp(argv[i], name) == 0)
            return argv[i + 1];
    }
    return NULL;
}

static int opt_present(int argc, char **argv, const char *name)
{
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], name) == 0)
            return 1;
    }
    return 0;
}

static int load_config(struct config *cfg, const char *path, int resolve)
{
    char err[512];

    if (path == NULL) {
        fprintf(stderr, "deletion-gateway: -c FILE is required\n");
        return -1;
    }
    if (config_load(cfg, path, err, sizeof(err)) != 0 ||
        (resolve && config_resolve_secrets(cfg, err, sizeof(err)) != 0)) {
        fprintf(stderr, "deletion-gateway: %s: %s\n", path, err);
        return -1;
    }
    return 0;
}

/* Reads all of stdin, bounded. */
static char *read_stdin(size_t max, size_t *len)
{
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);

    while (buf != NULL) {
        size_t got;

        if (n == cap) {
            char *bigger;

            if (cap >= max) {
                fprintf(stderr, "deletion-gateway: input larger than %zu bytes\n", max);
                free(buf);
                return NULL;
            }
            cap *= 2;
            bigger = realloc(buf, cap + 1);
            if (bigger == NULL)
                break;
            buf = bigger;
        }
        got = fread(buf + n, 1, cap - n, stdin);
        n += got;
        if (got == 0) {
            buf[n] = '\0';
            *len = n;
            return buf;
        }
    }
    free(buf);
    return NULL;
}

/* A secret given on the command line: the text itself, env:NAME or
 * file:PATH (so it need not appear in the process list). */
static int cli_secret(const char *arg, struct secret *s)
{
    char err[256];

    memset(s, 0, sizeof(*s));
    if (strncmp(arg, "env:", 4) != 0 && strncmp(arg, "file:", 5) != 0) {
        s->len = strlen(arg);
        s->value = (unsigned char *)strdup(arg);
        return s->value != NULL ? 0 : -1;
    }
    if (config_resolve_ref(arg, s, err, sizeof(err)) != 0) {
        fprintf(stderr, "deletion-gateway: %s\n", err);
        return -1;
    }
    return 0;
}

static void secret_wipe(struct secret *s)
{
    if (s->value != NULL) {
        OPENSSL_cleanse(s->value, s->len);
        free(s->value);
    }
    s->value = NULL;
}

/* ---- sign ---- */

static int cmd_sign(int argc, char **argv)
{
    const char *kind = argc > 0 ? argv[0] : "";
    const char *secret_arg = opt_value(argc, argv, "--secret");
    const char *ts_arg = opt_value(argc, argv, "--timestamp");
    const char *id_arg = opt_value(argc, argv, "--id");
    int64_t ts = util_now_ms() / 1000;
    struct secret s;
    char *body = NULL, id[64], out[256];
    size_t len;
    int rc = 1;

    if (secret_arg == NULL || (strcmp(kind, "extend") != 0 && strcmp(kind, "internal") != 0)) {
        fputs(usage, stderr);
        return 2;
    }
    if (ts_arg != NULL && util_parse_int64(ts_arg, 0, 999999999999LL, &ts) != 0) {
        fprintf(stderr, "deletion-gateway: --timestamp must be Unix seconds\n");
        return 2;
    }
    if (cli_secret(secret_arg, &s) != 0)
        return 1;
    if ((body = read_stdin(64u << 20, &len)) == NULL)
        goto done;
    if (strcmp(kind, "extend") == 0) {
        if (verify_sign_extend(s.value, s.len, ts, body, len, out) != 0)
            goto done;
        printf("x-extend-request-timestamp: %lld\nx-extend-request-signature: %s\n", (long long)ts,
               out);
    } else {
        if (id_arg == NULL) {
            util_random_id("msg_", id, sizeof(id));
            id_arg = id;
        }
        if (verify_sign_standard((const char *)s.value, id_arg, ts, body, len, out, sizeof(out)) !=
            0) {
            fprintf(stderr, "deletion-gateway: the secret is not whsec_ + base64\n");
            goto done;
        }
        printf("webhook-id: %s\nwebhook-timestamp: %lld\nwebhook-signature: %s\n", id_arg,
               (long long)ts, out);
    }
    rc = 0;
done:
    free(body);
    secret_wipe(&s);
    return rc;
}

/* ---- check ---- */

static int cmd_check(int argc, char **argv)
{
    struct config cfg;
    int rc;

    if (opt_present(argc, argv, "--reference")) {
        config_print_reference(stdout);
        return 0;
    }
    memset(&cfg, 0, sizeof(cfg));
    rc = load_config(&cfg, opt_value(argc, argv, "-c"), 1);
    if (rc == 0)
        config_print(&cfg, stdout);
    config_free(&cfg);
    return rc == 0 ? 0 : 1;
}

/* ---- audit verify ---- */

static int cmd_audit(int argc, char **argv)
{
    const char *cfg_path = opt_value(argc, argv, "-c");
    const char *key_ref = opt_value(argc, argv, "--key");
    struct config cfg;
    struct secret key;
    char **listed = NULL;
    const char **files = NULL;
    int n = 0, n_listed = 0, rc = 2;

    memset(&cfg, 0, sizeof(cfg));
    memset(&key, 0, sizeof(key));
    if (argc < 1 || strcmp(argv[0], "verify") != 0) {
        fputs(usage, stderr);
        return 2;
    }
    if (cfg_path != NULL) {
        if (load_config(&cfg, cfg_path, 1) != 0)
            goto done;
        key.value = cfg.audit.key.value;
        key.len = cfg.audit.key.len;
    } else if (key_ref != NULL) {
        if (cli_secret(key_ref, &key) != 0)
            goto done;
    } else {
        const char *env = getenv("DG_AUDIT_KEY");

        if (env == NULL || *env == '\0') {
            fprintf(stderr, "deletion-gateway: audit verify needs -c FILE, --key REF or "
                            "DG_AUDIT_KEY\n");
            goto done;
        }
        if (cli_secret("env:DG_AUDIT_KEY", &key) != 0)
            goto done;
    }
    files = calloc((size_t)argc + 1, sizeof(*files));
    if (files == NULL)
        goto done;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--key") == 0) {
            i++;
            continue;
        }
        files[n++] = argv[i];
    }
    if (n == 0 && cfg_path != NULL) {
        if (audit_list_files(cfg.audit.path, &listed, &n_listed) != 0) {
            fprintf(stderr, "deletion-gateway: cannot list %s\n", cfg.audit.path);
            goto done;
        }
        rc = audit_verify_files((const char *const *)listed, n_listed, key.value, key.len, stdout);
    } else if (n > 0) {
        rc = audit_verify_files(files, n, key.value, key.len, stdout);
    } else {
        fprintf(stderr, "deletion-gateway: no audit file given\n");
        goto done;
    }
    rc = rc == 0 ? 0 : rc == 1 ? 1 : 2;
done:
    audit_free_files(listed, n_listed);
    free(files);
    if (cfg_path == NULL)
        secret_wipe(&key);
    config_free(&cfg);
    return rc;
}

/* ---- receipts ---- */

/* The receipts' key as the config says: receipts.signing_key, else the
 * key file the gateway made in its data directory (made here only when
 * create, that is by serve). *key stays NULL when receipts are off.
 * *where says which, for the log. 0 or -1 with err. */
static int receipt_key_of(const struct config *cfg, int create, EVP_PKEY **key, char *where,
                          size_t wlen, char *err, size_t errlen)
{
    char path[4200], why[256];
    int created = 0, rc;

    *key = NULL;
    if (!cfg->receipts.enabled) {
        snprintf(where, wlen, "receipts.enabled is false");
        return 0;
    }
    if (cfg->receipts.signing_key.value != NULL) {
        snprintf(where, wlen, "receipts.signing_key");
        if (receipt_load_key(cfg->receipts.signing_key.value, cfg->receipts.signing_key.len, key,
                             why, sizeof(why)) == 0)
            return 0;
        snprintf(err, errlen, "receipts.signing_key: %s", why);
        return -1;
    }
    if (receipt_default_key_path(cfg->queue.path, path, sizeof(path)) != 0) {
        snprintf(err, errlen, "receipts: the key path beside queue.path is too long");
        return -1;
    }
    rc = receipt_key_file(path, create, key, &created, why, sizeof(why));
    if (rc != 0 && !create && access(path, F_OK) != 0)
        snprintf(err, errlen,
                 "receipts: no key at %s yet: the gateway makes it at its first start "
                 "(or set receipts.signing_key)",
                 path);
    else if (rc != 0)
        snprintf(err, errlen, "receipts: %s", why);
    snprintf(where, wlen, "%s %s", created ? "generated" : "from", path);
    return rc;
}

/* The config's receipt key, reading only receipts.signing_key's secret:
 * checking a receipt needs no Extend token. */
static int receipt_key_from_config(const char *cfg_path, EVP_PKEY **key)
{
    struct config cfg;
    struct secret s = {NULL, NULL, 0};
    char err[4400], where[4300];
    int rc = -1;

    if (config_load(&cfg, cfg_path, err, sizeof(err)) != 0 ||
        (cfg.receipts.signing_key.ref != NULL &&
         config_resolve_ref(cfg.receipts.signing_key.ref, &s, err, sizeof(err)) != 0)) {
        fprintf(stderr, "deletion-gateway: %s: %s\n", cfg_path, err);
        goto done;
    }
    /* config_free wipes and frees it with the rest. */
    cfg.receipts.signing_key.value = s.value;
    cfg.receipts.signing_key.len = s.len;
    if (receipt_key_of(&cfg, 0, key, where, sizeof(where), err, sizeof(err)) != 0)
        fprintf(stderr, "deletion-gateway: %s\n", err);
    else if (*key == NULL)
        fprintf(stderr, "deletion-gateway: receipts are off (receipts.enabled is false)\n");
    else
        rc = 0;
done:
    config_free(&cfg);
    return rc;
}

/* Reads a whole file, bounded like stdin. */
static char *read_file(const char *path, size_t max, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = malloc(max + 1);

    *len = 0;
    if (f == NULL || buf == NULL) {
        fprintf(stderr, "deletion-gateway: %s: %s\n", path, f ? "out of memory" : strerror(errno));
        goto fail;
    }
    *len = fread(buf, 1, max + 1, f);
    if (ferror(f) || *len > max) {
        fprintf(stderr, "deletion-gateway: %s: unreadable or larger than %zu bytes\n", path, max);
        goto fail;
    }
    buf[*len] = '\0';
    fclose(f);
    return buf;
fail:
    if (f != NULL)
        fclose(f);
    free(buf);
    return NULL;
}

static int cmd_receipt(int argc, char **argv)
{
    const char *cfg_path = opt_value(argc, argv, "-c"), *pub = opt_value(argc, argv, "--pubkey");
    const char *file = NULL;
    EVP_PKEY *key = NULL;
    char *text = NULL, err[256];
    size_t len;
    int rc = 1;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--pubkey") == 0)
            i++;
        else if (file == NULL)
            file = argv[i];
        else
            goto usage;
    }
    if (argc >= 1 && strcmp(argv[0], "pubkey") == 0) {
        if (cfg_path == NULL || file != NULL)
            goto usage;
        if (receipt_key_from_config(cfg_path, &key) == 0 &&
            receipt_write_public_pem(key, stdout) == 0)
            rc = 0;
    } else if (argc >= 1 && strcmp(argv[0], "verify") == 0) {
        FILE *f;

        if ((pub == NULL) == (cfg_path == NULL)) {
            fprintf(stderr,
                    "deletion-gateway: receipt verify needs --pubkey PEM_FILE or -c FILE\n");
            return 2;
        }
        if (cfg_path != NULL) {
            if (receipt_key_from_config(cfg_path, &key) != 0)
                return 2;
        } else if ((f = fopen(pub, "r")) == NULL) {
            fprintf(stderr, "deletion-gateway: %s: %s\n", pub, strerror(errno));
            return 2;
        } else {
            key = PEM_read_PUBKEY(f, NULL, NULL, NULL);
            fclose(f);
            if (key == NULL) {
                fprintf(stderr, "deletion-gateway: %s: not a PEM public key\n", pub);
                return 2;
            }
        }
        text = file != NULL && strcmp(file, "-") != 0 ? read_file(file, 1u << 20, &len)
                                                      : read_stdin(1u << 20, &len);
        if (text == NULL)
            rc = 2;
        else if (receipt_verify(text, len, key, err, sizeof(err)) == 0) {
            printf("receipt ok\n");
            rc = 0;
        } else {
            printf("receipt INVALID: %s\n", err);
        }
    } else {
        goto usage;
    }
    free(text);
    EVP_PKEY_free(key);
    return rc;
usage:
    EVP_PKEY_free(key);
    fputs(usage, stderr);
    return 2;
}

/* What a config_loaded audit record says: the binary's version and the
 * config file's SHA-256 (never its content). 0 or -1. */
static int config_digest_detail(const char *path, char *detail, size_t len)
{
    unsigned char buf[65536], md[32];
    char hex[65];
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned int mdlen = 0;
    FILE *f = fopen(path, "rb");
    size_t n;
    int ok = ctx != NULL && f != NULL && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1;

    while (ok && (n = fread(buf, 1, sizeof(buf), f)) > 0)
        ok = EVP_DigestUpdate(ctx, buf, n) == 1;
    ok = ok && EVP_DigestFinal_ex(ctx, md, &mdlen) == 1;
    if (f != NULL)
        fclose(f);
    EVP_MD_CTX_free(ctx);
    if (!ok)
        return -1;
    util_hex(md, sizeof(md), hex);
    snprintf(detail, len, "deletion-gateway %s; config %s sha256 %s", DG_VERSION, path, hex);
    return 0;
}

/* ---- serve ---- */

static struct gateway gw;
static const char *config_path;
static struct event *drain_timer;
static int64_t drain_deadline_ms;

static void drain_check(evutil_socket_t fd, short what, void *arg)
{
    struct timeval tick = {0, 50000};
    int busy = http_in_flight(gw.http) > 0 || dispatch_in_flight(gw.dispatch) > 0;

    (void)fd, (void)what, (void)arg;
    if (busy && util_mono_ms() < drain_deadline_ms) {
        evtimer_add(drain_timer, &tick);
        return;
    }
    if (busy)
        log_warn(NULL,
                 "stop: %d DELETE(s) still in flight at the deadline; they stay queued "
                 "and are sent again at the next start",
                 dispatch_in_flight(gw.dispatch));
    /* A moment for the last answers to leave their buffers. */
    tick.tv_usec = 100000;
    event_base_loopexit(gw.base, &tick);
}

static void on_stop(evutil_socket_t sig, short what, void *arg)
{
    struct timeval now = {0, 0};
    int64_t wait_ms = gw.cfg->extend.timeout_ms < 8000 ? gw.cfg->extend.timeout_ms : 8000;

    (void)what, (void)arg;
    if (readiness_stopping(&gw.ready))
        return;
    readiness_set_stopping(&gw.ready);
    log_info(NULL, "signal %d: no new requests; waiting up to %lld ms for requests in flight",
             (int)sig, (long long)wait_ms);
    http_stop_accepting(gw.http);
    dispatch_stop(gw.dispatch);
    drain_deadline_ms = util_mono_ms() + wait_ms;
    evtimer_add(drain_timer, &now);
}

static void on_reload(evutil_socket_t sig, short what, void *arg)
{
    char err[512], detail[256];
    int ok = 1;

    (void)sig, (void)what, (void)arg;
    /* Secrets come from files and the environment; files may have been
     * rotated. On failure the old values are kept and the error logged. */
    if (config_resolve_secrets(gw.cfg, err, sizeof(err)) != 0) {
        log_error(NULL, "SIGHUP: secrets not reloaded: %s", err);
        return;
    }
    if (upstream_set_token(gw.upstream, &gw.cfg->extend.token) != 0) {
        log_error(NULL, "SIGHUP: extend.token refused (empty, too long or not visible ASCII); "
                        "DELETEs keep the previous token");
        ok = 0;
    }
    if (gw.tls != NULL && tls_server_reload(gw.tls, err, sizeof(err)) != 0) {
        log_error(NULL, "SIGHUP: certificate not reloaded: %s", err);
        ok = 0;
    }
    log_info(NULL, "SIGHUP: %s",
             ok ? "secrets, token and certificates reloaded"
                : "reloaded, except what is logged above");
    /* The trail says from when the reloaded secrets were in force. */
    if (config_digest_detail(config_path, detail, sizeof(detail)) == 0)
        queue_audit_note(gw.queue, "config_loaded", "operator", detail, NULL, NULL);
}

/* The changelist folds the read/write enables and disables evhttp makes
 * around each request into at most one epoll_ctl per descriptor per loop
 * turn. */
static struct event_base *new_event_base(void)
{
    struct event_config *ec = event_config_new();
    struct event_base *base;

    if (ec == NULL)
        return NULL;
    event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    base = event_base_new_with_config(ec);
    event_config_free(ec);
    return base;
}

static int cmd_serve(int argc, char **argv)
{
    static struct config cfg;
    struct queue_options qo;
    struct event *sig_term = NULL, *sig_int = NULL, *sig_hup = NULL;
    char err[4400], detail[256], where[4300], key_id[17];
    int rc = 1;

    config_path = opt_value(argc, argv, "-c");
    if (load_config(&cfg, config_path, 1) != 0)
        return 1;
    log_set_level_name(cfg.log.level);
    signal(SIGPIPE, SIG_IGN);
    event_set_log_callback(log_libevent);
    fdlimit_raise();
    /* The queue's worker thread wakes the loop: libevent must be told
     * about threads before the base exists. */
    if (evthread_use_pthreads() != 0 || upstream_global_init() != 0 ||
        (gw.base = new_event_base()) == NULL) {
        log_error(NULL, "cannot start the event loop");
        goto done;
    }
    gw.cfg = &cfg;
    if (audit_open(&gw.audit, cfg.audit.path, cfg.audit.key.value, cfg.audit.key.len,
                   cfg.audit.rotate_bytes, err, sizeof(err)) != 0) {
        log_error(NULL, "audit.path: %s", err);
        goto done;
    }
    /* The first record of every run says which binary and which config
     * are in force from here on; the queue writes it at open, after it has
     * checked that it and the audit log agree. */
    if (config_digest_detail(config_path, detail, sizeof(detail)) != 0) {
        log_error(NULL, "cannot read %s to record its digest", config_path);
        goto done;
    }
    memset(&qo, 0, sizeof(qo));
    qo.backend = cfg.queue.backend;
    qo.path = strcmp(cfg.queue.backend, "postgres") == 0 ? cfg.queue.url : cfg.queue.path;
    qo.password = (const char *)cfg.queue.password.value;
    qo.replica_id = cfg.queue.replica_id;
    qo.rate_per_second = cfg.extend.rate_per_second;
    qo.max_in_flight = cfg.extend.max_in_flight;
    qo.idempotency_ttl_ms = cfg.queue.idempotency_ttl_seconds * 1000;
    qo.retention_ms = (int64_t)(cfg.queue.retention_days * 86400000.0);
    qo.audit = gw.audit;
    qo.open_event = "config_loaded";
    qo.open_detail = detail;
    qo.accept_audit_mismatch = opt_present(argc, argv, "--accept-audit-mismatch");
    if (queue_open(&gw.queue, gw.base, &qo, err, sizeof(err)) != 0) {
        log_error(NULL, "queue.path: %s", err);
        goto done;
    }
    if (upstream_open(&gw.upstream, gw.base, &cfg, err, sizeof(err)) != 0) {
        log_error(NULL, "extend: %s", err);
        goto done;
    }
    /* After the queue: the key file goes in the directory it owns. */
    if (receipt_key_of(&cfg, 1, &gw.receipt_key, where, sizeof(where), err, sizeof(err)) != 0) {
        log_error(NULL, "%s", err);
        goto done;
    }
    if (gw.receipt_key != NULL && receipt_key_id(gw.receipt_key, key_id) == 0)
        log_info(NULL, "receipts: signing with key id %s (%s)", key_id, where);
    else
        log_info(NULL, "receipts: off (%s)", where);
    if (cfg.listen.tls.cert_file != NULL &&
        tls_server_open(&gw.tls, &cfg.listen.tls, err, sizeof(err)) != 0) {
        log_error(NULL, "listen.tls: %s", err);
        goto done;
    }
    /* Planned once everything but the listeners is open; the reserve is
     * for upstream connections (and their resolver), audit rotation and
     * the queue's temporary files. */
    if (fdlimit_plan(cfg.limits.max_connections, cfg.admin.max_connections,
                     16 + 2L * cfg.extend.max_in_flight, &gw.max_connections,
                     &gw.admin_max_connections, err, sizeof(err)) != 0) {
        log_error(NULL, "limits.max_connections: %s", err);
        goto done;
    }
    if (dispatch_open(&gw.dispatch, &gw) != 0 || http_open(&gw.http, &gw) != 0)
        goto done;
    drain_timer = evtimer_new(gw.base, drain_check, NULL);
    sig_term = evsignal_new(gw.base, SIGTERM, on_stop, NULL);
    sig_int = evsignal_new(gw.base, SIGINT, on_stop, NULL);
    sig_hup = evsignal_new(gw.base, SIGHUP, on_reload, NULL);
    if (drain_timer == NULL || sig_term == NULL || sig_int == NULL || sig_hup == NULL ||
        evsignal_add(sig_term, NULL) || evsignal_add(sig_int, NULL) || evsignal_add(sig_hup, NULL))
        goto done;
    if (queue_paused(gw.queue)) {
        dispatch_set_paused(gw.dispatch, 1);
        log_warn(NULL, "dispatching is paused (by an operator, before the last stop): "
                       "`deletion-gateway ctl resume` sends again");
    }
    dispatch_start(gw.dispatch);
    log_info(NULL, "deletion-gateway %s started: queue %s, Extend %s%s", DG_VERSION, cfg.queue.path,
             cfg.extend.base_url, cfg.extend.dry_run ? " (dry run)" : "");
    event_base_dispatch(gw.base);
    log_info(NULL, "stopped");
    rc = 0;
done:
    /* Order matters: stop sending, abort what is in flight (those jobs stay
     * leased and are re-queued at the next start), let the queue finish the
     * operations it holds, then close the audit log it writes to. */
    if (gw.upstream != NULL)
        upstream_close(gw.upstream);
    if (gw.queue != NULL)
        queue_close(gw.queue);
    dispatch_close(gw.dispatch);
    http_close(gw.http);
    if (gw.audit != NULL)
        audit_close(gw.audit);
    if (gw.tls != NULL)
        tls_server_free(gw.tls);
    EVP_PKEY_free(gw.receipt_key);
    if (sig_term != NULL)
        event_free(sig_term);
    if (sig_int != NULL)
        event_free(sig_int);
    if (sig_hup != NULL)
        event_free(sig_hup);
    if (drain_timer != NULL)
        event_free(drain_timer);
    if (gw.base != NULL)
        event_base_free(gw.base);
    /* After the base: its finalizers free the connections, which point
     * at their listener. */
    http_free(gw.http);
    config_free(&cfg);
    curl_global_cleanup();
    return rc;
}

int main(int argc, char **argv)
{
    const char *cmd = argc > 1 ? argv[1] : "--help";

    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("deletion-gateway %s\n", DG_VERSION);
        return 0;
    }
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        fputs(usage, stdout);
        return 0;
    }
    if (strcmp(cmd, "serve") == 0)
        return cmd_serve(argc - 2, argv + 2);
    if (strcmp(cmd, "check") == 0)
        return cmd_check(argc - 2, argv + 2);
    if (strcmp(cmd, "sign") == 0)
        return cmd_sign(argc - 2, argv + 2);
    if (strcmp(cmd, "audit") == 0)
        return cmd_audit(argc - 2, argv + 2);
    if (strcmp(cmd, "receipt") == 0)
        return cmd_receipt(argc - 2, argv + 2);
    if (strcmp(cmd, "ctl") == 0)
        return ctl_main(argc - 2, argv + 2);
    if (strcmp(cmd, "health") == 0)
        return healthcheck_main(argc - 2, argv + 2);
    fprintf(stderr, "deletion-gateway: unknown command '%s'\n\n%s", cmd, usage);
    return 2;
}
