/*
 * cmd_sign.c: `deletion-gateway sign`, the headers a sender would attach
 * to a body read from stdin: Extend's webhook signature, or a Standard
 * Webhooks signature for the internal erasure API. For testing a setup
 * by hand and for scripts that send erasure requests.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "config.h"
#include "util.h"
#include "verify.h"

#define SIGN_BODY_MAX (64u << 20)

static const char usage[] =
    "usage: deletion-gateway sign extend --secret S [--timestamp T] < body\n"
    "       deletion-gateway sign internal --secret S [--id ID] [--timestamp T]\n"
    "                                      < body\n"
    "\n"
    "Prints the headers a sender would attach to body (read from stdin):\n"
    "  extend    x-extend-request-timestamp and x-extend-request-signature, as Extend\n"
    "            signs its webhooks\n"
    "  internal  webhook-id, webhook-timestamp and webhook-signature (Standard\n"
    "            Webhooks), as a client of the internal erasure API signs\n"
    "\n"
    "  --secret S     the signing secret: the text itself, env:NAME or file:PATH\n"
    "                 (internal: whsec_ + base64)\n"
    "  --timestamp T  Unix seconds to sign with (default: now)\n"
    "  --id ID        internal only: the webhook id (default: a random msg_...)\n"
    "  -h, --help     this text\n"
    "\n"
    "Exit: 0 printed, 1 the secret or the body cannot be used, 2 usage.\n";

static const struct option options[] = {
    {"secret", required_argument, NULL, 's'},
    {"timestamp", required_argument, NULL, 't'},
    {"id", required_argument, NULL, 'i'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

int cmd_sign(int argc, char **argv)
{
    const char *kind, *secret_arg = NULL, *ts_arg = NULL, *id_arg = NULL;
    int64_t ts = util_now_ms() / 1000;
    struct secret s = {NULL, NULL, 0};
    char *body = NULL, id[64], out[256];
    size_t len;
    int ch, rc = CMD_FAILED;

    cmd_getopt_reset();
    while ((ch = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
        switch (ch) {
        case 's':
            secret_arg = optarg;
            break;
        case 't':
            ts_arg = optarg;
            break;
        case 'i':
            id_arg = optarg;
            break;
        case 'h':
            return cmd_help(usage);
        default:
            return cmd_bad_option("sign", usage, ch, argv);
        }
    }
    if (optind + 1 != argc ||
        (strcmp(argv[optind], "extend") != 0 && strcmp(argv[optind], "internal") != 0))
        return cmd_usage_error("sign", usage, "say extend or internal");
    kind = argv[optind];
    if (secret_arg == NULL)
        return cmd_usage_error("sign", usage, "--secret is required");
    if (ts_arg != NULL && util_parse_int64(ts_arg, 0, 999999999999LL, &ts) != 0)
        return cmd_usage_error("sign", usage, "--timestamp must be Unix seconds");
    if (cmd_secret_arg(secret_arg, &s) != 0)
        goto fail;
    if ((body = cmd_read_input(NULL, SIGN_BODY_MAX, &len)) == NULL)
        goto fail;
    if (strcmp(kind, "extend") == 0) {
        if (verify_sign_extend(s.value, s.len, ts, body, len, out) != 0)
            goto fail;
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
            goto fail;
        }
        printf("webhook-id: %s\nwebhook-timestamp: %lld\nwebhook-signature: %s\n", id_arg,
               (long long)ts, out);
    }
    rc = CMD_OK;
fail:
    free(body);
    secret_wipe(&s);
    return rc;
}
