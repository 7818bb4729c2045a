/*
 * log.h: structured logging, one JSON object per line on stderr.
 *
 * Every line carries the time, the level and a message; a line about an
 * inbound request also carries that request's id, so an error body and the
 * log can be matched. Never pass a secret, a token or a payload's output.
 */
#ifndef DG_LOG_H
#define DG_LOG_H

#include <stdint.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Sets the lowest level written. Returns -1 for an unknown name. */
int log_set_level_name(const char *name);
void log_set_level(enum log_level level);

/* request_id may be NULL. The message is printf-formatted and JSON-escaped. */
void log_msg(enum log_level level, const char *request_id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A rate limit for lines that outside traffic can cause (refused
 * connections, libevent's own messages): at most burst lines per
 * window_ms; the number held back is told in the next line let through.
 * Zero-initialise with the two bounds set. */
struct log_limiter {
    int64_t window_ms;
    int burst;
    int64_t start_ms;
    int used;
    long held_back;
};

void log_limited(struct log_limiter *ll, enum log_level level, const char *request_id,
                 const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* event_set_log_callback's hook: libevent's messages as JSON lines,
 * rate-limited (a descriptor shortage makes it warn on every accept). */
void log_libevent(int severity, const char *msg);

#define log_debug(rid, ...) log_msg(LOG_DEBUG, (rid), __VA_ARGS__)
#define log_info(rid, ...) log_msg(LOG_INFO, (rid), __VA_ARGS__)
#define log_warn(rid, ...) log_msg(LOG_WARN, (rid), __VA_ARGS__)
#define log_error(rid, ...) log_msg(LOG_ERROR, (rid), __VA_ARGS__)

#endif
