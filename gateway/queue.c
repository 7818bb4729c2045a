/*
 * queue.c: the parts of the queue that do not depend on a backend: the
 * names of deletion states, as stored, audited and shown in the API.
 */
#include "queue.h"

#include <string.h>

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
