/* JSON-lines logging. Kept deliberately small: no buffering (a log line
 * must survive a SIGKILL that follows it), one write(2) per line. */
#include "log.h"
#include "ids.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static char log_service[64] = "passerelle";
static log_level_t log_threshold = LOG_LEVEL_INFO;
static const char *level_names[] = {"debug", "info", "warn", "error"};

void log_init(const char *service)
{
    if (service)
        snprintf(log_service, sizeof log_service, "%s", service);
    const char *level = getenv("PASSERELLE_LOG_LEVEL");
    if (!level || !*level)
        return;
    for (int i = 0; i < 4; i++)
        if (strcasecmp(level, level_names[i]) == 0) {
            log_threshold = (log_level_t)i;
            return;
        }
    log_warn("unknown PASSERELLE_LOG_LEVEL, keeping info", "{s:s}", "value", level);
}

void log_set_level(log_level_t level)
{
    log_threshold = level;
}

bool log_enabled(log_level_t level)
{
    return level >= log_threshold;
}

void log_emit(log_level_t level, const char *msg, const char *fields, ...)
{
    if (level < log_threshold || level > LOG_LEVEL_ERROR)
        return;
    char now[TIME_RFC3339_LEN];
    time_now_rfc3339(now);
    json_t *line = json_object();
    json_object_set_new(line, "time", json_string(now));
    json_object_set_new(line, "level", json_string(level_names[level]));
    json_object_set_new(line, "service", json_string(log_service));
    /* json_string refuses bytes that are not UTF-8: keep the line anyway. */
    json_t *text_msg = json_string(msg ? msg : "");
    json_object_set_new(line, "msg", text_msg ? text_msg : json_string("(message not UTF-8)"));
    if (fields) {
        va_list ap;
        va_start(ap, fields);
        json_error_t error;
        json_t *extra = json_vpack_ex(&error, 0, fields, ap);
        va_end(ap);
        /* The caller's fields never replace time, level, service or msg. */
        if (extra && json_is_object(extra))
            json_object_update_missing(line, extra);
        else
            json_object_set_new(line, "log_format_error",
                                json_string(extra ? "fields are not an object" : error.text));
        json_decref(extra);
    }
    char *text = json_dumps(line, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(line);
    if (!text)
        return;
    size_t len = strlen(text);
    char *out = malloc(len + 2);
    if (out) {
        memcpy(out, text, len);
        out[len] = '\n';
        ssize_t ignored = write(STDERR_FILENO, out, len + 1);
        (void)ignored;
        free(out);
    }
    free(text);
}
