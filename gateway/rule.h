/*
 * rule.h: one webhook rule (webhooks.rules[] in the config), the type the
 * pure webhook core reads, apart from the whole config.
 */
#ifndef DG_RULE_H
#define DG_RULE_H

#include <stdint.h>

#define RULE_DELETE_RUN 1u  /* "run": the event's own run */
#define RULE_DELETE_FILE 2u /* "file": its files */

struct rule {
    char *event;      /* "extract_run.processed", or a prefix ending in '*' */
    unsigned deletes; /* RULE_DELETE_RUN | RULE_DELETE_FILE */
    int64_t delay_seconds;
};

#endif
