/*
 * log.c: JSON lines on stderr. One write(2) per line so lines from the
 * queue worker thread and the event loop never interleave.
 */
#include "log.h"
#include "util.h"

#include <pthread.h>
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

static void log_write(enum log_level level, const char *request_id, const char *msg)
{
    char line[6144], ts[40];
    size_t n = 0;

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

void log_msg(enum log_level level, const char *request_id, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;

    if (level < log_min)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    log_write(level, request_id, msg);
}

/* Limiters are shared by the loop and the queue's worker thread (libevent
 * may warn from either). */
static pthread_mutex_t limit_lock = PTHREAD_MUTEX_INITIALIZER;

void log_limited(struct log_limiter *ll, enum log_level level, const char *request_id,
                 const char *fmt, ...)
{
    char msg[2048];
    int64_t now = util_mono_ms();
    long held = 0;
    int pass;
    size_t n;
    va_list ap;

    if (level < log_min)
        return;
    pthread_mutex_lock(&limit_lock);
    if (ll->start_ms == 0 || now - ll->start_ms >= ll->window_ms) {
        ll->start_ms = now;
        ll->used = 0;
    }
    pass = ll->used < ll->burst;
    if (pass) {
        ll->used++;
        held = ll->held_back;
        ll->held_back = 0;
    } else {
        ll->held_back++;
    }
    pthread_mutex_unlock(&limit_lock);
    if (!pass)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    n = strlen(msg);
    if (held > 0 && n < sizeof(msg))
        snprintf(msg + n, sizeof(msg) - n, " (%ld similar lines not logged)", held);
    log_write(level, request_id, msg);
}

void log_libevent(int severity, const char *msg)
{
    static struct log_limiter ll = {10000, 20, 0, 0, 0};
    /* EVENT_LOG_DEBUG, _MSG, _WARN, _ERR are 0..3, as log_level. */
    enum log_level level = severity >= 0 && severity <= 3 ? (enum log_level)severity : LOG_ERROR;

    log_limited(&ll, level, NULL, "libevent: %s", msg);
}
