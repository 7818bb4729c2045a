/*
 * cmd_audit.c: `deletion-gateway audit verify`, the audit log's HMAC chain
 * checked offline, across its rotated files, with the key the gateway
 * wrote it with.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "cmd.h"
#include "config.h"

static const char usage[] =
    "usage: deletion-gateway audit verify [-c FILE | --key REF] [AUDIT_FILE...]\n"
    "\n"
    "Checks the audit log's HMAC chain, files given oldest first (default:\n"
    "audit.path of FILE and its rotated files). Prints \"ok: N records, last seq S,\n"
    "last mac M\", or the first record that does not fit.\n"
    "\n"
    "  -c FILE      the gateway's config: its audit.key, and its audit.path when no\n"
    "               AUDIT_FILE is given (every secret of FILE must resolve)\n"
    "  --key REF    the audit key as env:NAME, file:PATH or the text itself\n"
    "               (without -c and --key: the environment's DG_AUDIT_KEY)\n"
    "  -h, --help   this text\n"
    "\n"
    "Exit: 0 intact, 1 broken, 2 usage, no key or unreadable files.\n";

static const struct option options[] = {
    {"key", required_argument, NULL, 'k'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* The key to check with: -c's audit.key, else --key, else DG_AUDIT_KEY.
 * 0 or -1 after saying why. */
static int audit_key(const char *cfg_path, const char *key_ref, struct config *cfg,
                     struct secret *key)
{
    const char *env = getenv("DG_AUDIT_KEY");

    if (cfg_path != NULL) {
        if (cmd_load_config(cfg, cfg_path, 1) != 0)
            return -1;
        /* Borrowed: config_free wipes it. */
        key->value = cfg->audit.key.value;
        key->len = cfg->audit.key.len;
        return 0;
    }
    if (key_ref != NULL)
        return cmd_secret_arg(key_ref, key);
    if (env == NULL || *env == '\0') {
        fprintf(stderr,
                "deletion-gateway: audit verify needs -c FILE, --key REF or DG_AUDIT_KEY\n");
        return -1;
    }
    return cmd_secret_arg("env:DG_AUDIT_KEY", key);
}

int cmd_audit(int argc, char **argv)
{
    const char *cfg_path = NULL, *key_ref = NULL;
    struct config cfg;
    struct secret key = {NULL, NULL, 0};
    char **listed = NULL;
    int ch, n_listed = 0, rc = CMD_USAGE;

    memset(&cfg, 0, sizeof(cfg));
    cmd_getopt_reset();
    while ((ch = getopt_long(argc, argv, ":c:h", options, NULL)) != -1) {
        switch (ch) {
        case 'c':
            cfg_path = optarg;
            break;
        case 'k':
            key_ref = optarg;
            break;
        case 'h':
            return cmd_help(usage);
        default:
            return cmd_bad_option("audit", usage, ch, argv);
        }
    }
    if (optind >= argc || strcmp(argv[optind], "verify") != 0)
        return cmd_usage_error("audit", usage, "say verify");
    optind++;
    if (audit_key(cfg_path, key_ref, &cfg, &key) != 0)
        goto fail;
    if (optind == argc && cfg_path == NULL) {
        fprintf(stderr, "deletion-gateway: no audit file given\n");
        goto fail;
    }
    if (optind < argc) {
        rc = audit_verify_files((const char *const *)(argv + optind), argc - optind, key.value,
                                key.len, stdout);
    } else {
        if (audit_list_files(cfg.audit.path, &listed, &n_listed) != 0) {
            fprintf(stderr, "deletion-gateway: cannot list %s\n", cfg.audit.path);
            goto fail;
        }
        rc = audit_verify_files((const char *const *)listed, n_listed, key.value, key.len, stdout);
    }
    rc = rc == 0 ? CMD_OK : rc == 1 ? CMD_FAILED : CMD_USAGE;
fail:
    audit_free_files(listed, n_listed);
    if (cfg_path == NULL)
        secret_wipe(&key);
    config_free(&cfg);
    return rc;
}
