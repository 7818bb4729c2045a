/*
 * cmd_health.c: `deletion-gateway health`, the container's HEALTHCHECK, so
 * the image needs no curl program: exit 0 only when /healthz answers 200.
 *
 * The probe runs next to the gateway, against its own listener, and sends
 * nothing secret: over https it checks the server certificate only when
 * given --cacert, and presents a client certificate (--cert, --key) when
 * the listener requires one. With -c it reads the gateway's own config
 * file for where that listener is, and resolves none of its secrets: the
 * probe must not fail, nor read key files, for values it never uses.
 */
#include <arpa/inet.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cmd.h"
#include "config.h"
#include "probe.h"
#include "util.h"

#define HEALTH_DEFAULT_URL "http://127.0.0.1:8080/healthz"
#define HEALTH_MAX_TIMEOUT_MS 60000

static const char usage[] =
    "usage: deletion-gateway health [-c FILE | --url URL] [--timeout-ms N]\n"
    "                               [--cacert FILE] [--cert FILE --key FILE]\n"
    "\n"
    "GETs URL and prints \"healthy\" when it answers 200: the container's probe.\n"
    "\n"
    "  -c FILE          probe the /healthz of the public listener FILE describes\n"
    "                   (http or https, 0.0.0.0 and :: on loopback); no secret of\n"
    "                   FILE is read\n"
    "  --url URL        http(s)://HOST[:PORT][/PATH]\n"
    "                   (default " HEALTH_DEFAULT_URL ")\n"
    "  --timeout-ms N   give up after N ms, 1..60000 (default 3000)\n"
    "  --cacert FILE    https: verify the server against this CA (default: the server\n"
    "                   is not verified)\n"
    "  --cert FILE      https: the client certificate a listener with\n"
    "  --key FILE       listen.tls.client_ca_file asks for, and its key\n"
    "  -h, --help       this text\n"
    "\n"
    "Exit: 0 answered 200, 1 any other answer or none, 2 usage or a config that does\n"
    "not load.\n";

static const struct option options[] = {
    {"url", required_argument, NULL, 'u'},
    {"timeout-ms", required_argument, NULL, 't'},
    {"cacert", required_argument, NULL, 'a'},
    {"cert", required_argument, NULL, 'e'},
    {"key", required_argument, NULL, 'k'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

int cmd_health_config_url(const struct config *cfg, char *url, size_t urllen)
{
    const char *host = cfg->listen.address;
    struct in_addr a4;
    struct in6_addr a6;
    int v6 = inet_pton(AF_INET6, host, &a6) == 1, n;

    /* A listener on every address is reached on loopback, of its family:
     * one bound to :: may refuse IPv4. */
    if (inet_pton(AF_INET, host, &a4) == 1 && a4.s_addr == htonl(INADDR_ANY))
        host = "127.0.0.1";
    else if (v6 && IN6_IS_ADDR_UNSPECIFIED(&a6))
        host = "::1";
    n = snprintf(url, urllen, "%s://%s%s%s:%d/healthz",
                 cfg->listen.tls.cert_file != NULL ? "https" : "http", v6 ? "[" : "", host,
                 v6 ? "]" : "", cfg->listen.port);
    return n > 0 && (size_t)n < urllen ? 0 : -1;
}

/* The URL to probe from the config file at path, into url; mtls is set
 * when the listener asks for client certificates. 0, or -1 after saying
 * why. */
static int url_from_config(const char *path, char *url, size_t urllen, int *mtls)
{
    struct config cfg;
    char err[512];
    int rc = -1;

    if (config_load(&cfg, path, err, sizeof(err)) != 0) {
        fprintf(stderr, "health: %s: %s\n", path, err);
        return -1;
    }
    *mtls = cfg.listen.tls.client_ca_file != NULL;
    if (cmd_health_config_url(&cfg, url, urllen) != 0) {
        fprintf(stderr, "health: %s: listen.address is too long for a URL\n", path);
        goto fail;
    }
    rc = 0;
fail:
    config_free(&cfg);
    return rc;
}

int cmd_health(int argc, char **argv)
{
    struct probe_request rq = {
        .method = "GET",
        .agent = "deletion-gateway-health",
        .timeout_ms = 3000,
        .insecure = 1,
    };
    struct probe_answer a = {0};
    const char *url = NULL, *cfg_path = NULL;
    int64_t timeout_ms = 3000;
    char host[256], port[8], path[512], cfg_url[320], err[256];
    int ch, tls, mtls = 0;

    cmd_getopt_reset();
    while ((ch = getopt_long(argc, argv, ":c:h", options, NULL)) != -1) {
        switch (ch) {
        case 'c':
            cfg_path = optarg;
            break;
        case 'u':
            url = optarg;
            break;
        case 't':
            if (util_parse_int64(optarg, 1, HEALTH_MAX_TIMEOUT_MS, &timeout_ms) != 0)
                return cmd_usage_error("health", usage, "--timeout-ms must be 1..60000");
            break;
        case 'a':
            rq.cacert = optarg;
            break;
        case 'e':
            rq.cert = optarg;
            break;
        case 'k':
            rq.key = optarg;
            break;
        case 'h':
            return cmd_help(usage);
        default:
            return cmd_bad_option("health", usage, ch, argv);
        }
    }
    if (optind < argc)
        return cmd_usage_error("health", usage, "unexpected argument");
    if (url != NULL && cfg_path != NULL)
        return cmd_usage_error("health", usage, "-c and --url both name what to probe");
    if (cfg_path != NULL) {
        if (url_from_config(cfg_path, cfg_url, sizeof(cfg_url), &mtls) != 0)
            return CMD_USAGE;
        url = cfg_url;
    } else if (url == NULL) {
        url = HEALTH_DEFAULT_URL;
    }
    if (probe_parse_url(url, &tls, host, sizeof(host), port, sizeof(port), path, sizeof(path)) != 0)
        return cmd_usage_error("health", usage, "--url must be http(s)://HOST[:PORT][/PATH]");
    /* A server that closes during the TLS write must not kill the probe. */
    signal(SIGPIPE, SIG_IGN);
    rq.url = url;
    rq.timeout_ms = (long)timeout_ms;
    if (probe_http(&rq, &a, err, sizeof(err)) == 0 && a.status == 200) {
        probe_answer_free(&a);
        printf("healthy\n");
        return CMD_OK;
    }
    if (a.status > 0)
        fprintf(stderr, "health: %s answered %ld\n", url, a.status);
    else if (mtls && rq.cert == NULL)
        fprintf(stderr,
                "health: no answer from %s: listen.tls.client_ca_file is set, so the "
                "listener wants a client certificate (--cert FILE --key FILE)\n",
                url);
    else
        fprintf(stderr, "health: no answer from %s (%s)\n", url, err);
    probe_answer_free(&a);
    return CMD_FAILED;
}
