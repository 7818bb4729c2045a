/*
 * api_error.h: an error answered to a caller: HTTP status, a stable code
 * that clients can switch on, and a human message (never a secret).
 */
#ifndef DG_API_ERROR_H
#define DG_API_ERROR_H

#include <stdio.h>

struct api_error {
    int status;       /* 400, 401, 413, 415, 503... */
    const char *code; /* stable: "invalid_signature", "invalid_id"... */
    char message[256];
};

#define api_error_set(e, st, cd, ...)                                                              \
    do {                                                                                           \
        (e)->status = (st);                                                                        \
        (e)->code = (cd);                                                                          \
        snprintf((e)->message, sizeof((e)->message), __VA_ARGS__);                                 \
    } while (0)

#endif
