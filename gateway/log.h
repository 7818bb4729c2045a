/*
 * log.h: structured logging, one JSON object per line on stderr.
 *
 * Every line carries the time, the level and a message; a line about an
 * inbound request also carries that request's id, so an error body and the
 * log can be matched. Never pass a secret, a token or a payload's output.
 */
#ifndef DG_LOG_H
#define DG_LOG_H

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Sets the lowest level written. Returns -1 for an unknown name. */
int log_set_level_name(const char *name);
void log_set_level(enum log_level level);

/* request_id may be NULL. The message is printf-formatted and JSON-escaped. */
void log_msg(enum log_level level, const char *request_id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_debug(rid, ...) log_msg(LOG_DEBUG, (rid), __VA_ARGS__)
#define log_info(rid, ...) log_msg(LOG_INFO, (rid), __VA_ARGS__)
#define log_warn(rid, ...) log_msg(LOG_WARN, (rid), __VA_ARGS__)
#define log_error(rid, ...) log_msg(LOG_ERROR, (rid), __VA_ARGS__)

#endif
