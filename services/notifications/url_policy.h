/* Where webhooks may go: an allowlist, so the service cannot be pointed at
 * internal addresses (the classic server-side request forgery).
 *
 * PASSERELLE_NOTIFY_ALLOWLIST, comma-separated entries:
 *   partner.example.org        that host, any port
 *   *.example.org              any host under example.org (not itself)
 *   partner.example.org:8443   that host, that port
 *   203.0.113.7  10.1.0.0/16  [::1]  fd00::/8   addresses and networks
 *   127.0.0.1:8080             an address and a port
 * A URL is accepted when its scheme is http or https, it has no user
 * information, and its host (and port, if the entry names one) matches an
 * entry. When curl connects, the address it resolved is checked again: an
 * internal address (loopback, private, link-local - the cloud metadata
 * address among them -, unique-local, unspecified, multicast, broadcast,
 * IPv4-mapped forms of these) is refused unless an address or network entry
 * covers it, whatever name led there. So a public name that resolves to an
 * internal address, or is re-pointed there later, is refused. Redirects are
 * never followed. An empty allowlist accepts no URL. */
#ifndef NOTIFY_URL_POLICY_H
#define NOTIFY_URL_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

typedef struct url_policy_t url_policy_t;

/* Parses an allowlist (NULL or "" gives the empty one). NULL with a message
 * naming the bad entry in err. */
url_policy_t *url_policy_new(const char *allowlist, char *err, size_t err_size);
void url_policy_destroy(url_policy_t **self_p);

/* Checks a URL as a subscription is created. False with the reason in why
 * ("scheme must be http or https", "host 10.0.0.1 is not on the
 * allowlist", ...). */
bool url_policy_check_url(const url_policy_t *self, const char *url, char *why, size_t why_size);

/* Checks the address a connection is about to be made to (see above).
 * False with the reason in why. */
bool url_policy_check_address(const url_policy_t *self, const struct sockaddr *addr,
                              socklen_t addr_len, char *why, size_t why_size);

#endif
