/* The one table of which party may send which request. Every request type of
 * every service is in acl.c; a type not in the table is refused to all. */
#ifndef PASSERELLE_ACL_H
#define PASSERELLE_ACL_H

#include "identity.h"

#include <stdbool.h>

/* The parties allowed to send this request type (a party_t mask); 0 if the
 * type is unknown. */
unsigned acl_parties(const char *request_type);

bool acl_allows(const char *request_type, party_t party);

#endif
