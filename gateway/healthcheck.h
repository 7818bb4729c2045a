/*
 * healthcheck.h: `deletion-gateway health`, a tiny HTTP probe so the
 * container image needs no curl for its HEALTHCHECK.
 */
#ifndef DG_HEALTHCHECK_H
#define DG_HEALTHCHECK_H

#include <stddef.h>

/* deletion-gateway health [--url http://HOST:PORT/PATH] [--timeout-ms N]
 * GETs the URL (default http://127.0.0.1:8080/healthz) over plain HTTP.
 * argv[0] is "health". Returns 0 for a 200 answer, 1 for any other answer
 * or failure, 2 for a usage error: main() returns it as the exit code. */
int healthcheck_main(int argc, char **argv);

/* Splits "http://HOST[:PORT][/PATH]" (HOST may be [v6]). Returns 0 or -1;
 * https and anything else are refused. For tests and healthcheck_main. */
int healthcheck_parse_url(const char *url, char *host, size_t hostlen, char *port, size_t portlen,
                          char *path, size_t pathlen);

#endif
