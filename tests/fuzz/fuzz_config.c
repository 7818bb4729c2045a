/*
 * fuzz_config.c: libFuzzer target for the config file: the JSON text of
 * gateway.json through the key table's loading and validation, then the
 * redacted print that `check` makes of whatever loaded. Secrets are not
 * resolved (no environment or file is read).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct config cfg;
    char err[512];
    char *text = malloc(size + 1);
    FILE *null;

    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    if (config_load_string(&cfg, text, err, sizeof(err)) == 0) {
        null = fopen("/dev/null", "w");
        if (null != NULL) {
            config_print(&cfg, null);
            fclose(null);
        }
        config_free(&cfg);
    } else if (memchr(err, '\0', sizeof(err)) == NULL) {
        abort(); /* the message must be a bounded string */
    }
    free(text);
    return 0;
}
