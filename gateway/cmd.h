/*
 * cmd.h: the subcommands of deletion-gateway, one file each (cmd_NAME.c),
 * and the little they share (cmd.c).
 *
 * Every command is called like a main(): argv[0] is the command's name,
 * the rest its arguments, parsed with getopt_long. Each has one usage
 * text, printed on stdout for -h/--help (exit 0) and on stderr after a
 * usage error (exit 2). The exit code is the return value.
 */
#ifndef DG_CMD_H
#define DG_CMD_H

#include <stddef.h>

#include <openssl/evp.h>

struct config;
struct secret;

/* Exit codes: the same meaning in every command. */
#define CMD_OK 0
#define CMD_FAILED 1 /* the command ran and the answer is no */
#define CMD_USAGE 2  /* usage, configuration or connection error */

int cmd_serve(int argc, char **argv);   /* cmd_serve.c */
int cmd_check(int argc, char **argv);   /* cmd_check.c */
int cmd_sign(int argc, char **argv);    /* cmd_sign.c */
int cmd_audit(int argc, char **argv);   /* cmd_audit.c */
int cmd_receipt(int argc, char **argv); /* cmd_receipt.c */
int cmd_ctl(int argc, char **argv);     /* cmd_ctl.c */
int cmd_health(int argc, char **argv);  /* cmd_health.c */

/* "http(s)://HOST:PORT/healthz" for cfg's public listener, which health
 * -c probes: https when listen.tls is set; a listen.address of 0.0.0.0 or
 * :: is probed on 127.0.0.1 or ::1. Returns 0, or -1 when url is too
 * short. */
int cmd_health_config_url(const struct config *cfg, char *url, size_t urllen);

/* Starts a getopt_long loop from argv[1]. getopt keeps its place between
 * calls; a command run twice in one process (the unit tests) must not
 * start where the last run stopped. */
void cmd_getopt_reset(void);

/* usage on stdout, CMD_OK (for --help). */
int cmd_help(const char *usage);

/* After getopt_long returned ch ('?' unknown option, ':' missing value;
 * the option string must start with ':'): names the option on stderr,
 * then the usage. CMD_USAGE. */
int cmd_bad_option(const char *name, const char *usage, int ch, char **argv);

/* "deletion-gateway NAME: why" and the usage, on stderr. CMD_USAGE. */
int cmd_usage_error(const char *name, const char *usage, const char *why);

/* Loads the config at path (and its secrets when resolve), saying why not
 * on stderr. 0 or -1; config_free(cfg) either way. */
int cmd_load_config(struct config *cfg, const char *path, int resolve);

/* A secret given on the command line: the text itself, env:NAME or
 * file:PATH (so it need not appear in the process list). 0 or -1 after
 * saying why; secret_wipe(s) either way. */
int cmd_secret_arg(const char *arg, struct secret *s);

/* All of path ("-" or NULL: stdin), at most max bytes, NUL-terminated.
 * NULL after saying why. */
char *cmd_read_input(const char *path, size_t max, size_t *len);

/* The receipts' key as the config says: receipts.signing_key, else the
 * key file the gateway made in its data directory (made here only when
 * create, that is by serve). *key stays NULL when receipts are off.
 * *where says which, for the log. 0 or -1 with err. */
int cmd_receipt_key(const struct config *cfg, int create, EVP_PKEY **key, char *where, size_t wlen,
                    char *err, size_t errlen);

#endif
