/*
 * cmd_serve.c: `deletion-gateway serve`, the daemon: its start (config,
 * audit log, queue, upstream, receipts' key, TLS, descriptor plan,
 * dispatch, listeners, signals), its run, and its orderly stop.
 *
 *   SIGTERM, SIGINT  stop accepting, let requests waiting for the queue be
 *                    answered and DELETEs in flight finish (bounded), exit 0
 *   SIGHUP           re-read every secret and the TLS certificate
 *
 * The one running gateway and its stop timer live here, and only here:
 * signal callbacks reach them without an argument to carry them.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/thread.h>
#include <openssl/evp.h>

#include "audit.h"
#include "cmd.h"
#include "config.h"
#include "dispatch.h"
#include "fdlimit.h"
#include "gateway.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "queue.h"
#include "receipt.h"
#include "tls.h"
#include "upstream.h"
#include "util.h"

static const char usage[] =
    "usage: deletion-gateway serve -c FILE [--accept-audit-mismatch]\n"
    "\n"
    "Runs the gateway configured by FILE (see check -c FILE) in the foreground,\n"
    "logging to stderr.\n"
    "\n"
    "  -c FILE                  the config (every secret it names must resolve)\n"
    "  --accept-audit-mismatch  start even though the queue and the audit log\n"
    "                           disagree (a restored backup, a lost log); the start\n"
    "                           is recorded in the audit log\n"
    "  -h, --help               this text\n"
    "\n"
    "Signals: SIGTERM or SIGINT stop accepting, let requests in flight finish (up\n"
    "to min(extend.timeout_ms, 8 s)) and exit 0; SIGHUP re-reads every secret and\n"
    "the TLS certificate, keeping the old ones if that fails.\n"
    "Exit: 0 stopped by a signal, 1 could not start, 2 usage.\n";

static const struct option options[] = {
    {"accept-audit-mismatch", no_argument, NULL, 'a'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

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
    int64_t wait_ms = 0;

    /* The longest DELETE any account may still be waiting for, up to 8 s. */
    for (int i = 0; i < gw.cfg->n_accounts; i++)
        if (gw.cfg->accounts[i].timeout_ms > wait_ms)
            wait_ms = gw.cfg->accounts[i].timeout_ms;
    wait_ms = wait_ms < 8000 ? wait_ms : 8000;

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
    for (int i = 0; i < gw.cfg->n_accounts; i++) {
        if (upstream_set_token(gw.upstream[i], &gw.cfg->accounts[i].token) != 0) {
            log_error(NULL,
                      "SIGHUP: account %s: token refused (empty, too long or not visible "
                      "ASCII); its DELETEs keep the previous token",
                      gw.cfg->accounts[i].id);
            ok = 0;
        }
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

int cmd_serve(int argc, char **argv)
{
    static struct config cfg;
    struct queue_options qo;
    struct queue_account_limits limits[CONFIG_MAX_ACCOUNTS];
    const char *account_ids[CONFIG_MAX_ACCOUNTS];
    long in_flight_total = 0;
    struct event *sig_term = NULL, *sig_int = NULL, *sig_hup = NULL;
    char err[4400], detail[256], where[4300], key_id[17];
    int ch, accept_audit_mismatch = 0, rc = CMD_FAILED;

    cmd_getopt_reset();
    while ((ch = getopt_long(argc, argv, ":c:h", options, NULL)) != -1) {
        switch (ch) {
        case 'c':
            config_path = optarg;
            break;
        case 'a':
            accept_audit_mismatch = 1;
            break;
        case 'h':
            return cmd_help(usage);
        default:
            return cmd_bad_option("serve", usage, ch, argv);
        }
    }
    if (optind < argc)
        return cmd_usage_error("serve", usage, "unexpected argument");
    if (config_path == NULL)
        return cmd_usage_error("serve", usage, "-c FILE is required");
    if (cmd_load_config(&cfg, config_path, 1) != 0)
        return CMD_FAILED;
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
    qo.rate_per_second = cfg.accounts[0].rate_per_second;
    qo.max_in_flight = cfg.accounts[0].max_in_flight;
    for (int i = 0; i < cfg.n_accounts; i++)
        limits[i] = (struct queue_account_limits){
            cfg.accounts[i].id, cfg.accounts[i].rate_per_second, cfg.accounts[i].max_in_flight};
    qo.accounts = limits;
    qo.n_accounts = cfg.n_accounts;
    qo.adopt_default =
        config_account_find(&cfg, QUEUE_DEFAULT_ACCOUNT, 0) < 0 ? cfg.accounts[0].id : NULL;
    qo.idempotency_ttl_ms = cfg.queue.idempotency_ttl_seconds * 1000;
    qo.retention_ms = (int64_t)(cfg.queue.retention_days * 86400000.0);
    qo.audit = gw.audit;
    qo.open_event = "config_loaded";
    qo.open_detail = detail;
    qo.accept_audit_mismatch = accept_audit_mismatch;
    if (queue_open(&gw.queue, gw.base, &qo, err, sizeof(err)) != 0) {
        log_error(NULL, "queue.path: %s", err);
        goto done;
    }
    for (int i = 0; i < cfg.n_accounts; i++) {
        if (upstream_open(&gw.upstream[i], gw.base, &cfg.accounts[i], err, sizeof(err)) != 0) {
            log_error(NULL, "account %s: %s", cfg.accounts[i].id, err);
            goto done;
        }
        in_flight_total += cfg.accounts[i].max_in_flight;
        account_ids[i] = cfg.accounts[i].id;
    }
    metrics_set_accounts(account_ids, cfg.n_accounts);
    readiness_set_accounts(&gw.ready, cfg.n_accounts);
    /* After the queue: the key file goes in the directory it owns. */
    if (cmd_receipt_key(&cfg, 1, &gw.receipt_key, where, sizeof(where), err, sizeof(err)) != 0) {
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
                     16 + 2L * in_flight_total, &gw.max_connections, &gw.admin_max_connections, err,
                     sizeof(err)) != 0) {
        log_error(NULL, "limits.max_connections: %s", err);
        goto done;
    }
    struct dispatch_deps deps = {.cfg = gw.cfg,
                                 .base = gw.base,
                                 .queue = gw.queue,
                                 .upstream = gw.upstream,
                                 .ready = &gw.ready};
    if (dispatch_open(&gw.dispatch, &deps) != 0 || http_open(&gw.http, &gw) != 0)
        goto done;
    drain_timer = evtimer_new(gw.base, drain_check, NULL);
    sig_term = evsignal_new(gw.base, SIGTERM, on_stop, NULL);
    sig_int = evsignal_new(gw.base, SIGINT, on_stop, NULL);
    sig_hup = evsignal_new(gw.base, SIGHUP, on_reload, NULL);
    if (drain_timer == NULL || sig_term == NULL || sig_int == NULL || sig_hup == NULL ||
        evsignal_add(sig_term, NULL) || evsignal_add(sig_int, NULL) || evsignal_add(sig_hup, NULL))
        goto done;
    /* A shared queue holds a paused account's claims itself, for every
     * replica, until a resume through any of them. */
    if (queue_paused(gw.queue, NULL)) {
        if (!queue_shared(gw.queue))
            dispatch_set_paused(gw.dispatch, -1, 1);
        log_warn(NULL, "dispatching is paused (by an operator, before the last stop): "
                       "`deletion-gateway ctl resume` sends again");
    } else {
        for (int i = 0; i < cfg.n_accounts; i++) {
            if (!queue_paused(gw.queue, cfg.accounts[i].id))
                continue;
            if (!queue_shared(gw.queue))
                dispatch_set_paused(gw.dispatch, i, 1);
            log_warn(NULL,
                     "dispatching to account %s is paused (by an operator, before the last "
                     "stop): `deletion-gateway ctl resume --account %s` sends again",
                     cfg.accounts[i].id, cfg.accounts[i].id);
        }
    }
    dispatch_start(gw.dispatch);
    /* queue.url holds no password (config refuses one there). */
    log_info(NULL, "deletion-gateway %s started: queue %s%s, Extend %s%s", DG_VERSION,
             strcmp(cfg.queue.backend, "postgres") == 0 ? "postgres " : "", qo.path,
             cfg.accounts[0].base_url, cfg.accounts[0].dry_run ? " (dry run)" : "");
    for (int i = 1; i < cfg.n_accounts; i++)
        log_info(NULL, "account %s: Extend %s%s", cfg.accounts[i].id, cfg.accounts[i].base_url,
                 cfg.accounts[i].dry_run ? " (dry run)" : "");
    event_base_dispatch(gw.base);
    log_info(NULL, "stopped");
    rc = CMD_OK;
done:
    /* Order matters: stop sending, abort what is in flight (those jobs stay
     * leased and are re-queued at the next start), let the queue finish the
     * operations it holds, then close the audit log it writes to. */
    for (int i = 0; i < CONFIG_MAX_ACCOUNTS; i++)
        if (gw.upstream[i] != NULL)
            upstream_close(gw.upstream[i]);
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
