/*
 * main.c: the deletion-gateway command line. It only finds the command
 * in the table below and runs it; each command is a file of its own
 * (cmd_NAME.c, see cmd.h) with its options and its --help.
 */
#include <stdio.h>
#include <string.h>

#include "cmd.h"

struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *synopsis; /* its arguments, for the usage below */
    const char *summary;  /* one line */
};

static const struct command commands[] = {
    {"serve", cmd_serve, "-c FILE [--accept-audit-mismatch]", "run the gateway"},
    {"check", cmd_check, "-c FILE | --reference", "validate FILE, print it with secrets redacted"},
    {"sign", cmd_sign, "extend|internal --secret S [--id ID] [--timestamp T] < body",
     "print the headers a sender would attach"},
    {"audit", cmd_audit, "verify [-c FILE | --key REF] [AUDIT_FILE...]", "check the audit chain"},
    {"receipt", cmd_receipt, "pubkey -c FILE | verify (--pubkey PEM_FILE | -c FILE) [RECEIPT_FILE]",
     "receipts' public key; check a receipt offline"},
    {"ctl", cmd_ctl,
     "[-c FILE] [--url URL] [--json | --table] show queue | show ID |\n"
     "list STATE | retry ID | retry --all-dead | cancel ID | pause | resume |\n"
     "find RESOURCE_ID | export ...",
     "operator commands against the admin listener"},
    {"health", cmd_health, "[-c FILE | --url URL]", "exit 0 if /healthz answers 200"},
};
#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

/* Each synopsis line under its command's name, the summary in a column
 * of its own (on the next line when the synopsis is too wide for it). */
static void print_usage(FILE *out)
{
    fputs("usage: deletion-gateway COMMAND [options]\n\n", out);
    for (size_t i = 0; i < N_COMMANDS; i++) {
        const struct command *c = &commands[i];
        const char *line = c->synopsis;
        size_t width = 0;

        for (int first = 1; *line != '\0'; first = 0) {
            size_t n = strcspn(line, "\n");

            if (first)
                fprintf(out, "  %s %.*s", c->name, (int)n, line);
            else
                fprintf(out, "\n      %.*s", (int)n, line);
            width = (first ? 3 + strlen(c->name) : 6) + n;
            line += n + (line[n] == '\n');
        }
        if (width > 32)
            fprintf(out, "\n%33s", "");
        else
            fprintf(out, "%*s", (int)(33 - width), "");
        fprintf(out, "%s\n", c->summary);
    }
    fputs("  help [COMMAND]                 this text, or COMMAND's (as COMMAND --help)\n"
          "  --version                      print the version\n"
          "\n"
          "Every command answers -h or --help with its options and exit codes.\n",
          out);
}

static const struct command *find_command(const char *name)
{
    for (size_t i = 0; i < N_COMMANDS; i++) {
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    }
    return NULL;
}

int main(int argc, char **argv)
{
    const char *name = argc > 1 ? argv[1] : "--help";
    const struct command *c;

    if (strcmp(name, "--version") == 0 || strcmp(name, "version") == 0) {
        printf("deletion-gateway %s\n", DG_VERSION);
        return CMD_OK;
    }
    if (strcmp(name, "help") == 0 && argc > 2) {
        char help[] = "--help";
        char *args[] = {argv[2], help, NULL};

        if ((c = find_command(argv[2])) != NULL)
            return c->run(2, args);
        name = argv[2];
    } else if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 ||
               strcmp(name, "help") == 0) {
        print_usage(stdout);
        return CMD_OK;
    } else if ((c = find_command(name)) != NULL) {
        return c->run(argc - 1, argv + 1);
    }
    fprintf(stderr, "deletion-gateway: unknown command '%s'\n\n", name);
    print_usage(stderr);
    return CMD_USAGE;
}
