/* JSON-lines logging on stderr: one object per line with the time, the
 * level, the service, a message and the caller's extra fields, e.g.
 *   {"time":"2026-11-29T10:00:00.123Z","level":"info","service":"reservations",
 *    "msg":"listening","endpoint":"tcp://127.0.0.1:7401"}
 * Lines are written with one write(2), so lines of several threads or
 * processes sharing stderr do not interleave. */
#ifndef PASSERELLE_LOG_H
#define PASSERELLE_LOG_H

#include <stdbool.h>

typedef enum {
    LOG_LEVEL_DEBUG = 0,
    LOG_LEVEL_INFO = 1,
    LOG_LEVEL_WARN = 2,
    LOG_LEVEL_ERROR = 3,
} log_level_t;

/* Names the service in every line and reads PASSERELLE_LOG_LEVEL
 * (debug, info, warn, error; default info). Call once at start; logging
 * before it works, with service "passerelle". */
void log_init(const char *service);

/* Sets the threshold directly (tests). */
void log_set_level(log_level_t level);
bool log_enabled(log_level_t level);

/* Writes one line. fields is a jansson json_pack() format describing an
 * object of extra fields ("{s:s, s:i}", "key", value, ...), or NULL. A
 * format that does not pack is logged as such rather than lost. */
void log_emit(log_level_t level, const char *msg, const char *fields, ...);

#define log_debug(msg, ...) log_emit(LOG_LEVEL_DEBUG, (msg), __VA_ARGS__)
#define log_info(msg, ...)  log_emit(LOG_LEVEL_INFO, (msg), __VA_ARGS__)
#define log_warn(msg, ...)  log_emit(LOG_LEVEL_WARN, (msg), __VA_ARGS__)
#define log_error(msg, ...) log_emit(LOG_LEVEL_ERROR, (msg), __VA_ARGS__)

#endif
