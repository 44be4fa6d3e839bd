/* Names of the reply status codes, for logs, the CLI and tests. */
#include "status.h"

#include <stddef.h>
#include <strings.h>

static const struct {
    status_t status;
    const char *name;
} status_names[] = {
    {ST_OK, "OK"},
    {ST_INVALID_ARGUMENT, "INVALID_ARGUMENT"},
    {ST_NOT_FOUND, "NOT_FOUND"},
    {ST_ALREADY_EXISTS, "ALREADY_EXISTS"},
    {ST_PERMISSION_DENIED, "PERMISSION_DENIED"},
    {ST_RESOURCE_EXHAUSTED, "RESOURCE_EXHAUSTED"},
    {ST_FAILED_PRECONDITION, "FAILED_PRECONDITION"},
    {ST_CONFLICT, "CONFLICT"},
    {ST_INTERNAL, "INTERNAL"},
    {ST_UNAVAILABLE, "UNAVAILABLE"},
    {ST_DATA_LOSS, "DATA_LOSS"},
    {ST_UNAUTHENTICATED, "UNAUTHENTICATED"},
};

const char *status_name(int status)
{
    for (size_t i = 0; i < sizeof status_names / sizeof status_names[0]; i++)
        if ((int)status_names[i].status == status)
            return status_names[i].name;
    return "UNKNOWN";
}

int status_parse(const char *name)
{
    if (!name)
        return -1;
    for (size_t i = 0; i < sizeof status_names / sizeof status_names[0]; i++)
        if (strcasecmp(status_names[i].name, name) == 0)
            return (int)status_names[i].status;
    return -1;
}
