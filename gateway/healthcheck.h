/*
 * healthcheck.h: `deletion-gateway health`, a tiny HTTP(S) probe so the
 * container image needs no curl for its HEALTHCHECK.
 */
#ifndef DG_HEALTHCHECK_H
#define DG_HEALTHCHECK_H

#include <stddef.h>

struct config;

/* deletion-gateway health [-c FILE | --url URL] [--timeout-ms N]
 *                         [--cacert FILE] [--cert FILE --key FILE]
 * GETs URL (default http://127.0.0.1:8080/healthz), or with -c the public
 * listener's /healthz as the config FILE describes it (its secrets are not
 * resolved). For https the server is verified only when --cacert is given,
 * and --cert/--key present a client certificate to a listener that
 * requires one. argv holds the options only, as main() passes every
 * subcommand (argc may be 0). Returns 0 for a 200 answer, 1 for any other
 * answer or failure, 2 for a usage error or a config that does not load:
 * main() returns it as the exit code. */
int healthcheck_main(int argc, char **argv);

/* "http(s)://HOST:PORT/healthz" for cfg's public listener: https when
 * listen.tls is set; a listen.address of 0.0.0.0 or :: is probed on
 * 127.0.0.1 or ::1. Returns 0, or -1 when url is too short. */
int healthcheck_config_url(const struct config *cfg, char *url, size_t urllen);

/* Splits "http(s)://HOST[:PORT][/PATH]" (HOST may be [v6]); *tls is 1 for
 * https. Returns 0 or -1 for anything else. */
int healthcheck_parse_url(const char *url, int *tls, char *host, size_t hostlen, char *port,
                          size_t portlen, char *path, size_t pathlen);

#endif
