/*
 * queue.c: the parts of the queue that do not depend on a backend: the
 * names of deletion states, as stored, audited and shown in the API, and
 * the export's cursor text.
 */
#include "queue.h"

#include <stdio.h>
#include <string.h>

#include "util.h"

static const char *const state_names[DEL_STATE_COUNT] = {
    [DEL_QUEUED] = "queued",       [DEL_IN_FLIGHT] = "in_flight", [DEL_DELETED] = "deleted",
    [DEL_NOT_FOUND] = "not_found", [DEL_REJECTED] = "rejected",   [DEL_DEAD] = "dead",
    [DEL_CANCELLED] = "cancelled",
};

const char *deletion_state_name(enum deletion_state s)
{
    if ((int)s < 0 || s >= DEL_STATE_COUNT)
        return "unknown";
    return state_names[s];
}

int deletion_state_from_name(const char *name, enum deletion_state *out)
{
    if (name == NULL)
        return -1;
    for (int i = 0; i < DEL_STATE_COUNT; i++) {
        if (strcmp(name, state_names[i]) == 0) {
            *out = (enum deletion_state)i;
            return 0;
        }
    }
    return -1;
}

int queue_cursor_parse(const char *s, int64_t *accepted_ms, int64_t *seq)
{
    char ms[24];
    const char *dash;
    size_t n;

    if (s == NULL || strlen(s) > QUEUE_CURSOR_MAX || (dash = strchr(s, '-')) == NULL)
        return -1;
    n = (size_t)(dash - s);
    if (n == 0 || n >= sizeof(ms))
        return -1;
    memcpy(ms, s, n);
    ms[n] = '\0';
    return util_parse_int64(ms, 0, INT64_MAX, accepted_ms) == 0 &&
                   util_parse_int64(dash + 1, 0, INT64_MAX, seq) == 0
               ? 0
               : -1;
}

void queue_cursor_format(int64_t accepted_ms, int64_t seq, char out[QUEUE_CURSOR_MAX + 1])
{
    snprintf(out, QUEUE_CURSOR_MAX + 1, "%lld-%lld", (long long)accepted_ms, (long long)seq);
}
