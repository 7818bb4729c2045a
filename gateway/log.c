/*
 * log.c: JSON lines on stderr. One write(2) per line so lines from the
 * queue worker thread and the event loop never interleave.
 */
#include "log.h"
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static enum log_level log_min = LOG_INFO;
static const char *const log_names[] = {"debug", "info", "warn", "error"};

void log_set_level(enum log_level level)
{
    log_min = level;
}

int log_set_level_name(const char *name)
{
    for (size_t i = 0; i < sizeof(log_names) / sizeof(log_names[0]); i++) {
        if (strcmp(name, log_names[i]) == 0) {
            log_min = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

void log_msg(enum log_level level, const char *request_id, const char *fmt, ...)
{
    char msg[2048], line[6144], ts[40];
    size_t n = 0;
    va_list ap;

    if (level < log_min)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    util_format_time_ms(util_now_ms(), ts, sizeof(ts));
    n += (size_t)snprintf(line + n, sizeof(line) - n, "{\"ts\":\"%s\",\"level\":\"%s\"", ts,
                          log_names[level]);
    if (request_id != NULL && *request_id != '\0') {
        n += (size_t)snprintf(line + n, sizeof(line) - n, ",\"request_id\":");
        n += util_json_escape(request_id, line + n, sizeof(line) - n);
    }
    n += (size_t)snprintf(line + n, sizeof(line) - n, ",\"msg\":");
    n += util_json_escape(msg, line + n, sizeof(line) - n);
    if (n + 3 > sizeof(line))
        n = sizeof(line) - 3;
    line[n++] = '}';
    line[n++] = '\n';
    (void)!write(STDERR_FILENO, line, n);
}
