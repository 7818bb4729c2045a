/*
 * cmd_check.c: `deletion-gateway check`, a config validated the way serve
 * would load it (secrets resolved too, so a missing environment variable
 * shows here and not at start), then printed with every secret redacted;
 * or the reference of every key, from the table that drives validation.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cmd.h"
#include "config.h"

static const char usage[] =
    "usage: deletion-gateway check -c FILE\n"
    "       deletion-gateway check --reference\n"
    "\n"
    "  -c FILE       validate FILE as serve would load it (secrets resolved too),\n"
    "                then print the effective config as JSON, every secret redacted\n"
    "  --reference   print every config key (type, default, bounds) as a Markdown\n"
    "                table\n"
    "  -h, --help    this text\n"
    "\n"
    "Exit: 0 valid, 1 invalid (the message names the offending key), 2 usage.\n";

static const struct option options[] = {
    {"reference", no_argument, NULL, 'r'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

int cmd_check(int argc, char **argv)
{
    const char *path = NULL;
    struct config cfg;
    int ch, reference = 0, rc;

    cmd_getopt_reset();
    while ((ch = getopt_long(argc, argv, ":c:h", options, NULL)) != -1) {
        switch (ch) {
        case 'c':
            path = optarg;
            break;
        case 'r':
            reference = 1;
            break;
        case 'h':
            return cmd_help(usage);
        default:
            return cmd_bad_option("check", usage, ch, argv);
        }
    }
    if (optind < argc)
        return cmd_usage_error("check", usage, "unexpected argument");
    if (reference) {
        config_print_reference(stdout);
        return CMD_OK;
    }
    if (path == NULL)
        return cmd_usage_error("check", usage, "-c FILE is required");
    memset(&cfg, 0, sizeof(cfg));
    rc = cmd_load_config(&cfg, path, 1);
    if (rc == 0)
        config_print(&cfg, stdout);
    config_free(&cfg);
    return rc == 0 ? CMD_OK : CMD_FAILED;
}
