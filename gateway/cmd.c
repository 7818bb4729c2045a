/*
 * cmd.c: what the subcommands share (see cmd.h): getopt's reset and its
 * error messages, loading a config, secrets given on the command line,
 * bounded input, and the receipts' key as the config names it.
 */
#include "cmd.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "config.h"
#include "receipt.h"

void cmd_getopt_reset(void)
{
    /* glibc: 0 also clears its state inside a bundle of short options. */
    optind = 0;
    opterr = 0;
}

int cmd_help(const char *usage)
{
    fputs(usage, stdout);
    return CMD_OK;
}

int cmd_usage_error(const char *name, const char *usage, const char *why)
{
    fprintf(stderr, "deletion-gateway %s: %s\n", name, why);
    fputs(usage, stderr);
    return CMD_USAGE;
}

int cmd_bad_option(const char *name, const char *usage, int ch, char **argv)
{
    const char *opt = optind > 0 ? argv[optind - 1] : "";
    char why[160];

    /* A short option inside a bundle ("-xc") is not argv[optind - 1]
     * alone: name the letter getopt stopped at. */
    if (optopt != 0 && strncmp(opt, "--", 2) != 0)
        snprintf(why, sizeof(why), ch == ':' ? "-%c needs a value" : "unknown option -%c", optopt);
    else
        snprintf(why, sizeof(why), ch == ':' ? "%.100s needs a value" : "unknown option %.100s",
                 opt);
    return cmd_usage_error(name, usage, why);
}

int cmd_load_config(struct config *cfg, const char *path, int resolve)
{
    char err[512];

    if (config_load(cfg, path, err, sizeof(err)) != 0 ||
        (resolve && config_resolve_secrets(cfg, err, sizeof(err)) != 0)) {
        fprintf(stderr, "deletion-gateway: %s: %s\n", path, err);
        return -1;
    }
    return 0;
}

int cmd_secret_arg(const char *arg, struct secret *s)
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

char *cmd_read_input(const char *path, size_t max, size_t *len)
{
    int from_stdin = path == NULL || strcmp(path, "-") == 0;
    const char *name = from_stdin ? "stdin" : path, *why = "out of memory";
    FILE *f = from_stdin ? stdin : fopen(path, "rb");
    size_t cap = max < 4096 ? max : 4096, n = 0, got;
    char *buf = NULL, *bigger;
    char toobig[64];

    *len = 0;
    if (f == NULL) {
        fprintf(stderr, "deletion-gateway: %s: %s\n", name, strerror(errno));
        return NULL;
    }
    if ((buf = malloc(cap + 1)) == NULL)
        goto fail;
    while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n < cap)
            continue;
        if (cap == max) {
            /* Exactly max is allowed; one byte more is not. */
            if (fgetc(f) == EOF)
                break;
            snprintf(toobig, sizeof(toobig), "larger than %zu bytes", max);
            why = toobig;
            goto fail;
        }
        cap = cap > max / 2 ? max : cap * 2;
        if ((bigger = realloc(buf, cap + 1)) == NULL)
            goto fail;
        buf = bigger;
    }
    if (ferror(f)) {
        why = "unreadable";
        goto fail;
    }
    if (!from_stdin)
        fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
fail:
    fprintf(stderr, "deletion-gateway: %s: %s\n", name, why);
    if (!from_stdin)
        fclose(f);
    free(buf);
    return NULL;
}

int cmd_receipt_key(const struct config *cfg, int create, EVP_PKEY **key, char *where, size_t wlen,
                    char *err, size_t errlen)
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
