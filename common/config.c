/* Environment-variable configuration; see config.h. */
#include "config.h"
#include "log.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <strings.h>

const char *config_str(const char *name, const char *fallback)
{
    const char *value = getenv(name);
    return value && *value ? value : fallback;
}

bool config_int(const char *name, long fallback, long min, long max, long *out)
{
    const char *value = getenv(name);
    if (!value || !*value) {
        *out = fallback;
        return true;
    }
    char *end;
    errno = 0;
    long parsed = strtol(value, &end, 10);
    if (errno || *end || end == value || parsed < min || parsed > max) {
        log_error("bad configuration value", "{s:s, s:s, s:I, s:I}", "variable", name, "value",
                  value, "min", (json_int_t)min, "max", (json_int_t)max);
        return false;
    }
    *out = parsed;
    return true;
}

bool config_bool(const char *name, bool fallback, bool *out)
{
    const char *value = getenv(name);
    if (!value || !*value) {
        *out = fallback;
        return true;
    }
    static const char *yes[] = {"1", "true", "yes", "on"};
    static const char *no[] = {"0", "false", "no", "off"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(value, yes[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcasecmp(value, no[i]) == 0) {
            *out = false;
            return true;
        }
    }
    log_error("bad configuration value, expected true or false", "{s:s, s:s}", "variable", name,
              "value", value);
    return false;
}
