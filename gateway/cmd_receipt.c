/*
 * cmd_receipt.c: `deletion-gateway receipt`, the receipts' public key as
 * PEM (to hand to whoever checks receipts), and a receipt checked offline
 * against such a key or against the gateway's own config.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/pem.h>

#include "cmd.h"
#include "config.h"
#include "receipt.h"

static const char usage[] =
    "usage: deletion-gateway receipt pubkey -c FILE\n"
    "       deletion-gateway receipt verify (--pubkey PEM_FILE | -c FILE)\n"
    "                                       [RECEIPT_FILE]\n"
    "\n"
    "  pubkey   print the receipts' public key (PEM) of the gateway FILE configures\n"
    "  verify   check a signed receipt offline (RECEIPT_FILE, or stdin when absent\n"
    "           or -); prints \"receipt ok\" or \"receipt INVALID: why\"\n"
    "\n"
    "  -c FILE             the gateway's config: receipts.signing_key, else the key\n"
    "                      file the gateway made beside queue.path (no other secret\n"
    "                      is read)\n"
    "  --pubkey PEM_FILE   verify: the public key, as pubkey printed it\n"
    "  -h, --help          this text\n"
    "\n"
    "Exit: 0 printed or valid, 1 invalid (or no key to print), 2 usage, no key or\n"
    "unreadable input.\n";

static const struct option options[] = {
    {"pubkey", required_argument, NULL, 'p'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* The config's receipt key, reading only receipts.signing_key's secret:
 * checking a receipt needs no Extend token. 0 or -1 after saying why. */
static int key_from_config(const char *cfg_path, EVP_PKEY **key)
{
    struct config cfg;
    struct secret s = {NULL, NULL, 0};
    char err[4400], where[4300];
    int rc = -1;

    if (config_load(&cfg, cfg_path, err, sizeof(err)) != 0 ||
        (cfg.receipts.signing_key.ref != NULL &&
         config_resolve_ref(cfg.receipts.signing_key.ref, &s, err, sizeof(err)) != 0)) {
        fprintf(stderr, "deletion-gateway: %s: %s\n", cfg_path, err);
        goto fail;
    }
    /* config_free wipes and frees it with the rest. */
    cfg.receipts.signing_key.value = s.value;
    cfg.receipts.signing_key.len = s.len;
    if (cmd_receipt_key(&cfg, 0, key, where, sizeof(where), err, sizeof(err)) != 0)
        fprintf(stderr, "deletion-gateway: %s\n", err);
    else if (*key == NULL)
        fprintf(stderr, "deletion-gateway: receipts are off (receipts.enabled is false)\n");
    else
        rc = 0;
fail:
    config_free(&cfg);
    return rc;
}

static int key_from_pem(const char *path, EVP_PKEY **key)
{
    FILE *f = fopen(path, "r");

    if (f == NULL) {
        fprintf(stderr, "deletion-gateway: %s: %s\n", path, strerror(errno));
        return -1;
    }
    *key = PEM_read_PUBKEY(f, NULL, NULL, NULL);
    fclose(f);
    if (*key == NULL) {
        fprintf(stderr, "deletion-gateway: %s: not a PEM public key\n", path);
        return -1;
    }
    return 0;
}

static int receipt_pubkey(const char *cfg_path)
{
    EVP_PKEY *key = NULL;
    int rc = CMD_FAILED;

    if (key_from_config(cfg_path, &key) == 0 && receipt_write_public_pem(key, stdout) == 0)
        rc = CMD_OK;
    EVP_PKEY_free(key);
    return rc;
}

static int receipt_check(const char *cfg_path, const char *pem_path, const char *file)
{
    EVP_PKEY *key = NULL;
    char *text = NULL, err[256];
    size_t len;
    int rc = CMD_USAGE;

    if ((cfg_path != NULL ? key_from_config(cfg_path, &key) : key_from_pem(pem_path, &key)) != 0)
        goto fail;
    if ((text = cmd_read_input(file, 1u << 20, &len)) == NULL)
        goto fail;
    if (receipt_verify(text, len, key, err, sizeof(err)) == 0) {
        printf("receipt ok\n");
        rc = CMD_OK;
    } else {
        printf("receipt INVALID: %s\n", err);
        rc = CMD_FAILED;
    }
fail:
    free(text);
    EVP_PKEY_free(key);
    return rc;
}

int cmd_receipt(int argc, char **argv)
{
    const char *cfg_path = NULL, *pem_path = NULL, *verb, *file;
    int ch;

    cmd_getopt_reset();
    while ((ch = getopt_long(argc, argv, ":c:h", options, NULL)) != -1) {
        switch (ch) {
        case 'c':
            cfg_path = optarg;
            break;
        case 'p':
            pem_path = optarg;
            break;
        case 'h':
            return cmd_help(usage);
        default:
            return cmd_bad_option("receipt", usage, ch, argv);
        }
    }
    verb = optind < argc ? argv[optind] : "";
    file = optind + 1 < argc ? argv[optind + 1] : NULL;
    if (optind + 2 < argc)
        return cmd_usage_error("receipt", usage, "one receipt at a time");
    if (strcmp(verb, "pubkey") == 0) {
        if (cfg_path == NULL || file != NULL)
            return cmd_usage_error("receipt", usage, "pubkey takes -c FILE and nothing else");
        return receipt_pubkey(cfg_path);
    }
    if (strcmp(verb, "verify") == 0) {
        if ((pem_path == NULL) == (cfg_path == NULL)) {
            fprintf(stderr,
                    "deletion-gateway: receipt verify needs --pubkey PEM_FILE or -c FILE\n");
            return CMD_USAGE;
        }
        return receipt_check(cfg_path, pem_path, file);
    }
    return cmd_usage_error("receipt", usage, "say pubkey or verify");
}
