/* The outgoing URL allowlist; see url_policy.h.
 *
 * Two checks, at two moments. When a subscription is made (and again before
 * each delivery), the URL's host must match an entry: names match name
 * entries, IP literals match address and network entries. When curl is
 * about to connect, the address it resolved is classified: a public
 * address passes (its name was checked already), an internal one passes
 * only if an address or network entry covers it. The second check is the
 * one that stops a name pointed at 169.254.169.254 or 127.0.0.1, which no
 * check of the name alone can see.
 *
 * Entries are few (an operator writes them by hand), so both checks walk
 * the whole list. */
#include "url_policy.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longer URLs are refused: no endpoint needs them, and they end up in
 * records and logs. */
#define URL_POLICY_URL_MAX   2048
#define URL_POLICY_ENTRY_MAX 300
#define URL_POLICY_HOST_MAX  253

typedef enum {
    ENTRY_NAME,     /* partner.example.org */
    ENTRY_WILDCARD, /* *.example.org: name holds "example.org" */
    ENTRY_NETWORK,  /* an address is a network of its full length */
} entry_kind_t;

/* An address, IPv4 or IPv6; IPv4-mapped IPv6 addresses are kept as IPv4,
 * so that both spellings of one address compare equal. */
typedef struct {
    int family;        /* AF_INET or AF_INET6 */
    uint8_t bytes[16]; /* network order; IPv4 in the first 4 */
} ip_t;

typedef struct {
    entry_kind_t kind;
    char *name;      /* lower case; ENTRY_NAME and ENTRY_WILDCARD */
    ip_t net;        /* ENTRY_NETWORK, host bits zero */
    unsigned prefix; /* ENTRY_NETWORK: bits that count */
    unsigned port;   /* 0: any port */
} entry_t;

struct url_policy_t {
    entry_t *entries;
    size_t count;
};

/* ======================== addresses ===================================== */

static unsigned ip_bits(const ip_t *ip)
{
    return ip->family == AF_INET ? 32 : 128;
}

/* True if the first `bits` bits of a and b are equal. */
static bool bits_equal(const uint8_t *a, const uint8_t *b, unsigned bits)
{
    unsigned whole = bits / 8, rest = bits % 8;
    if (memcmp(a, b, whole) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a[whole] & mask) == (b[whole] & mask);
}

static bool ip_in(const ip_t *ip, const ip_t *net, unsigned prefix)
{
    return ip->family == net->family && bits_equal(ip->bytes, net->bytes, prefix);
}

static const uint8_t v4_mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* Folds ::ffff:a.b.c.d into a.b.c.d. */
static void ip_fold_mapped(ip_t *ip)
{
    if (ip->family == AF_INET6 && memcmp(ip->bytes, v4_mapped_prefix, 12) == 0) {
        memmove(ip->bytes, ip->bytes + 12, 4);
        memset(ip->bytes + 4, 0, 12);
        ip->family = AF_INET;
    }
}

/* Parses a bare address (no brackets); true on success, folded. */
static bool ip_parse(const char *text, ip_t *ip)
{
    memset(ip, 0, sizeof *ip);
    if (inet_pton(AF_INET, text, ip->bytes) == 1) {
        ip->family = AF_INET;
        return true;
    }
    if (inet_pton(AF_INET6, text, ip->bytes) == 1) {
        ip->family = AF_INET6;
        ip_fold_mapped(ip);
        return true;
    }
    return false;
}

static void ip_format(const ip_t *ip, char *out, size_t out_size)
{
    if (!inet_ntop(ip->family, ip->bytes, out, (socklen_t)out_size))
        snprintf(out, out_size, "?");
}

/* A range no webhook should reach unless the operator says so. */
typedef struct {
    int family;
    uint8_t bytes[16];
    unsigned prefix;
    const char *name;
} internal_range_t;

#define V4(a, b, c, d)                                                                             \
    {                                                                                              \
        a, b, c, d                                                                                 \
    }
static const internal_range_t internal_ranges[] = {
    {AF_INET, V4(0, 0, 0, 0), 8, "this network"},
    {AF_INET, V4(10, 0, 0, 0), 8, "private"},
    {AF_INET, V4(100, 64, 0, 0), 10, "shared address space"},
    {AF_INET, V4(127, 0, 0, 0), 8, "loopback"},
    {AF_INET, V4(169, 254, 0, 0), 16, "link-local"},
    {AF_INET, V4(172, 16, 0, 0), 12, "private"},
    {AF_INET, V4(192, 168, 0, 0), 16, "private"},
    {AF_INET, V4(255, 255, 255, 255), 32, "broadcast"},
    {AF_INET, V4(224, 0, 0, 0), 4, "multicast"},
    {AF_INET, V4(240, 0, 0, 0), 4, "reserved"},
    {AF_INET6, {0}, 128, "unspecified"},
    {AF_INET6, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 128, "loopback"},
    {AF_INET6, {0xfc}, 7, "unique-local"},
    {AF_INET6, {0xfe, 0x80}, 10, "link-local"},
    {AF_INET6, {0xfe, 0xc0}, 10, "site-local"},
    {AF_INET6, {0xff}, 8, "multicast"},
};
#undef V4

/* The internal range ip is in, or NULL. */
static const char *ip_internal_range(const ip_t *ip)
{
    for (size_t i = 0; i < sizeof internal_ranges / sizeof internal_ranges[0]; i++) {
        const internal_range_t *range = &internal_ranges[i];
        if (ip->family == range->family && bits_equal(ip->bytes, range->bytes, range->prefix))
            return range->name;
    }
    return NULL;
}

/* The IPv4 address some IPv6 forms carry and route to (IPv4-compatible
 * ::a.b.c.d, NAT64 64:ff9b::a.b.c.d, 6to4 2002:aabb:ccdd::); false for
 * other addresses. Mapped addresses are folded before this. */
static bool ip_embedded_v4(const ip_t *ip, ip_t *v4)
{
    static const uint8_t nat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
    static const uint8_t zero[12] = {0};
    if (ip->family != AF_INET6)
        return false;
    const uint8_t *src = NULL;
    if (memcmp(ip->bytes, zero, 12) == 0) {
        /* :: and ::1 are themselves, not 0.0.0.0 and 0.0.0.1. */
        if (ip->bytes[12] == 0 && ip->bytes[13] == 0 && ip->bytes[14] == 0 && ip->bytes[15] <= 1)
            return false;
        src = ip->bytes + 12;
    } else if (memcmp(ip->bytes, nat64, 12) == 0)
        src = ip->bytes + 12;
    else if (ip->bytes[0] == 0x20 && ip->bytes[1] == 0x02)
        src = ip->bytes + 2;
    if (!src)
        return false;
    memset(v4, 0, sizeof *v4);
    v4->family = AF_INET;
    memcpy(v4->bytes, src, 4);
    return true;
}

/* ======================== parsing ======================================= */

static bool parse_port(const char *text, unsigned *port)
{
    if (!*text || strlen(text) > 5)
        return false;
    unsigned value = 0;
    for (const char *p = text; *p; p++) {
        if (!isdigit((unsigned char)*p))
            return false;
        value = value * 10 + (unsigned)(*p - '0');
    }
    if (value == 0 || value > 65535)
        return false;
    *port = value;
    return true;
}

/* A host name of letters, digits and hyphens in labels of 1-63 (lower
 * case by now). A last label of digits only is refused: that is an
 * address written wrong (256.1.1.1), not a name. */
static bool hostname_valid(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > URL_POLICY_HOST_MAX)
        return false;
    const char *label = name;
    bool last_numeric = false;
    while (true) {
        const char *dot = strchr(label, '.');
        size_t label_len = dot ? (size_t)(dot - label) : strlen(label);
        if (label_len == 0 || label_len > 63 || label[0] == '-' || label[label_len - 1] == '-')
            return false;
        last_numeric = true;
        for (size_t i = 0; i < label_len; i++) {
            unsigned char c = (unsigned char)label[i];
            if (!(isdigit(c) || (c >= 'a' && c <= 'z') || c == '-'))
                return false;
            if (!isdigit(c))
                last_numeric = false;
        }
        if (!dot)
            break;
        label = dot + 1;
    }
    return !last_numeric;
}

static void lower(char *s)
{
    for (; *s; s++)
        *s = (char)tolower((unsigned char)*s);
}

/* Parses one trimmed entry into *entry; NULL, or what is wrong with it. */
static const char *entry_parse(char *text, entry_t *entry)
{
    memset(entry, 0, sizeof *entry);
    if (strstr(text, "://"))
        return "a host, address or network, not a URL";
    char *host = text;
    char *port = NULL;

    if (text[0] == '[') {
        /* [v6] or [v6]:port */
        char *close = strchr(text, ']');
        if (!close)
            return "missing ']'";
        *close = '\0';
        host = text + 1;
        if (close[1] == ':')
            port = close + 2;
        else if (close[1] != '\0')
            return "unexpected text after ']'";
        if (!ip_parse(host, &entry->net) || strchr(host, ':') == NULL)
            return "not an IPv6 address in brackets";
    } else {
        char *slash = strchr(text, '/');
        if (slash) {
            /* a network: address/prefix, no port */
            *slash = '\0';
            ip_t ip;
            if (!ip_parse(text, &ip))
                return "not an address before '/'";
            bool was_v6 = strchr(text, ':') != NULL;
            unsigned written_bits = was_v6 ? 128 : 32;
            const char *digits = slash + 1;
            if (!*digits || strlen(digits) > 3)
                return "not a prefix length after '/'";
            unsigned prefix = 0;
            for (const char *p = digits; *p; p++) {
                if (!isdigit((unsigned char)*p))
                    return "not a prefix length after '/'";
                prefix = prefix * 10 + (unsigned)(*p - '0');
            }
            if (prefix > written_bits)
                return "prefix length too long for the address";
            if (was_v6 && ip.family == AF_INET) {
                /* ::ffff:a.b.c.d/n is the IPv4 network a.b.c.d/(n-96). */
                if (prefix < 96)
                    return "an IPv4-mapped network needs a prefix of at least 96";
                prefix -= 96;
            }
            ip_t masked = {.family = ip.family};
            memcpy(masked.bytes, ip.bytes, prefix / 8);
            if (prefix % 8)
                masked.bytes[prefix / 8] =
                    ip.bytes[prefix / 8] & (uint8_t)(0xff << (8 - prefix % 8));
            if (memcmp(masked.bytes, ip.bytes, sizeof ip.bytes) != 0)
                return "address has bits set beyond the prefix length";
            entry->kind = ENTRY_NETWORK;
            entry->net = ip;
            entry->prefix = prefix;
            return NULL;
        }
        char *first_colon = strchr(text, ':');
        if (first_colon && strchr(first_colon + 1, ':')) {
            /* a bare IPv6 address: no port (that needs brackets) */
            if (!ip_parse(text, &entry->net))
                return "not an IPv6 address (write [address]:port for a port)";
        } else {
            if (first_colon) {
                *first_colon = '\0';
                port = first_colon + 1;
            }
            if (ip_parse(host, &entry->net)) {
                /* an IPv4 address */
            } else {
                lower(host);
                bool wildcard = strncmp(host, "*.", 2) == 0;
                const char *name = wildcard ? host + 2 : host;
                if (!hostname_valid(name))
                    return wildcard ? "not a host name after '*.'"
                                    : "not a host name, address or network";
                entry->kind = wildcard ? ENTRY_WILDCARD : ENTRY_NAME;
                entry->name = strdup(name);
                if (!entry->name)
                    return "out of memory";
            }
        }
    }
    if (!entry->name) {
        entry->kind = ENTRY_NETWORK;
        entry->prefix = ip_bits(&entry->net);
    }
    if (port && !parse_port(port, &entry->port)) {
        free(entry->name);
        entry->name = NULL;
        return "port must be a number from 1 to 65535";
    }
    return NULL;
}

url_policy_t *url_policy_new(const char *allowlist, char *err, size_t err_size)
{
    if (err && err_size)
        err[0] = '\0';
    url_policy_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    if (!allowlist)
        return self;

    size_t capacity = 1;
    for (const char *p = allowlist; *p; p++)
        if (*p == ',')
            capacity++;
    self->entries = calloc(capacity, sizeof *self->entries);
    if (!self->entries) {
        snprintf(err, err_size, "out of memory");
        url_policy_destroy(&self);
        return NULL;
    }

    const char *p = allowlist;
    while (true) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        while (len && isspace((unsigned char)*p)) {
            p++;
            len--;
        }
        while (len && isspace((unsigned char)p[len - 1]))
            len--;
        /* Empty entries (a trailing comma, ",,") are nothing, not errors. */
        if (len > 0) {
            if (len > URL_POLICY_ENTRY_MAX) {
                snprintf(err, err_size, "allowlist entry \"%.40s...\": longer than %d characters",
                         p, URL_POLICY_ENTRY_MAX);
                url_policy_destroy(&self);
                return NULL;
            }
            char text[URL_POLICY_ENTRY_MAX + 1];
            memcpy(text, p, len);
            text[len] = '\0';
            char scratch[URL_POLICY_ENTRY_MAX + 1];
            memcpy(scratch, text, len + 1);
            const char *problem = entry_parse(scratch, &self->entries[self->count]);
            if (problem) {
                snprintf(err, err_size, "allowlist entry \"%s\": %s", text, problem);
                url_policy_destroy(&self);
                return NULL;
            }
            self->count++;
        }
        if (!comma)
            break;
        p = comma + 1;
    }
    return self;
}

void url_policy_destroy(url_policy_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    url_policy_t *self = *self_p;
    for (size_t i = 0; i < self->count; i++)
        free(self->entries[i].name);
    free(self->entries);
    free(self);
    *self_p = NULL;
}

/* ======================== checks ======================================== */

static bool entry_port_ok(const entry_t *entry, unsigned port)
{
    return entry->port == 0 || entry->port == port;
}

/* An address or network entry covering ip at port (at any port when
 * any_port: to tell a wrong port from a wrong host). */
static bool covered(const url_policy_t *self, const ip_t *ip, unsigned port, bool any_port)
{
    for (size_t i = 0; self && i < self->count; i++) {
        const entry_t *entry = &self->entries[i];
        if (entry->kind == ENTRY_NETWORK && (any_port || entry_port_ok(entry, port)) &&
            ip_in(ip, &entry->net, entry->prefix))
            return true;
    }
    return false;
}

/* 1: a name entry matches host and port; 0: none matches the host;
 * -1: one matches the host but not the port. */
static int name_match(const url_policy_t *self, const char *host, unsigned port)
{
    size_t host_len = strlen(host);
    int found = 0;
    for (size_t i = 0; self && i < self->count; i++) {
        const entry_t *entry = &self->entries[i];
        bool host_ok = false;
        if (entry->kind == ENTRY_NAME)
            host_ok = strcmp(entry->name, host) == 0;
        else if (entry->kind == ENTRY_WILDCARD) {
            size_t suffix_len = strlen(entry->name);
            host_ok = host_len > suffix_len + 1 &&
                      strcmp(host + host_len - suffix_len, entry->name) == 0 &&
                      host[host_len - suffix_len - 1] == '.';
        }
        if (!host_ok)
            continue;
        if (entry_port_ok(entry, port))
            return 1;
        found = -1;
    }
    return found;
}

/* The URL parts the check needs: scheme, host, port; false with why. */
static bool url_parts(const char *url, char *scheme, size_t scheme_size, char *host,
                      size_t host_size, unsigned *port, char *why, size_t why_size)
{
    bool ok = false;
    char *part = NULL;
    CURLU *u = curl_url();
    if (!u) {
        snprintf(why, why_size, "out of memory");
        return false;
    }
    CURLUcode rc = curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME);
    if (rc != CURLUE_OK) {
        snprintf(why, why_size, "not a valid URL (%s)", curl_url_strerror(rc));
        goto done;
    }
    if (curl_url_get(u, CURLUPART_SCHEME, &part, 0) != CURLUE_OK || strlen(part) >= scheme_size) {
        snprintf(why, why_size, "scheme must be http or https");
        goto done;
    }
    snprintf(scheme, scheme_size, "%s", part);
    lower(scheme);
    curl_free(part);
    part = NULL;
    if (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0) {
        snprintf(why, why_size, "scheme must be http or https");
        goto done;
    }
    /* Credentials in a URL end up in records and logs, and a user part
     * is how "http://allowed.example@evil/" fools a reader. */
    if (curl_url_get(u, CURLUPART_USER, &part, 0) == CURLUE_OK ||
        curl_url_get(u, CURLUPART_PASSWORD, &part, 0) == CURLUE_OK) {
        snprintf(why, why_size, "URL must not carry user information");
        goto done;
    }
    if (curl_url_get(u, CURLUPART_ZONEID, &part, 0) == CURLUE_OK) {
        snprintf(why, why_size, "URL must not carry an IPv6 zone");
        goto done;
    }
    if (curl_url_get(u, CURLUPART_HOST, &part, 0) != CURLUE_OK || !*part) {
        snprintf(why, why_size, "URL has no host");
        goto done;
    }
    size_t len = strlen(part);
    const char *start = part;
    if (len >= 2 && part[0] == '[' && part[len - 1] == ']') {
        start = part + 1;
        len -= 2;
    }
    /* "example.org." is the same host as "example.org". */
    if (len > 1 && start[len - 1] == '.')
        len--;
    if (len >= host_size) {
        snprintf(why, why_size, "host name too long");
        goto done;
    }
    memcpy(host, start, len);
    host[len] = '\0';
    lower(host);
    curl_free(part);
    part = NULL;
    if (curl_url_get(u, CURLUPART_PORT, &part, CURLU_DEFAULT_PORT) != CURLUE_OK ||
        !parse_port(part, port)) {
        snprintf(why, why_size, "URL has no valid port");
        goto done;
    }
    ok = true;
done:
    curl_free(part);
    curl_url_cleanup(u);
    return ok;
}

bool url_policy_check_url(const url_policy_t *self, const char *url, char *why, size_t why_size)
{
    char scratch[8];
    if (!why || why_size == 0) {
        why = scratch;
        why_size = sizeof scratch;
    }
    why[0] = '\0';
    if (!url || !*url) {
        snprintf(why, why_size, "URL is empty");
        return false;
    }
    if (strlen(url) > URL_POLICY_URL_MAX) {
        snprintf(why, why_size, "URL is longer than %d characters", URL_POLICY_URL_MAX);
        return false;
    }
    char scheme[16], host[URL_POLICY_HOST_MAX + 1];
    unsigned port = 0;
    if (!url_parts(url, scheme, sizeof scheme, host, sizeof host, &port, why, why_size))
        return false;

    ip_t ip;
    if (ip_parse(host, &ip)) {
        if (covered(self, &ip, port, false))
            return true;
        char text[INET6_ADDRSTRLEN];
        ip_format(&ip, text, sizeof text);
        if (covered(self, &ip, port, true))
            snprintf(why, why_size, "port %u of host %s is not on the allowlist", port, text);
        else
            snprintf(why, why_size, "host %s is not on the allowlist", text);
        return false;
    }
    if (!hostname_valid(host)) {
        snprintf(why, why_size, "host %s is not a valid host name or address", host);
        return false;
    }
    int match = name_match(self, host, port);
    if (match == 1)
        return true;
    if (match == -1)
        snprintf(why, why_size, "port %u of host %s is not on the allowlist", port, host);
    else
        snprintf(why, why_size, "host %s is not on the allowlist", host);
    return false;
}

bool url_policy_check_address(const url_policy_t *self, const struct sockaddr *addr,
                              socklen_t addr_len, char *why, size_t why_size)
{
    char scratch[8];
    if (!why || why_size == 0) {
        why = scratch;
        why_size = sizeof scratch;
    }
    why[0] = '\0';
    ip_t ip = {0};
    unsigned port = 0;
    if (addr && addr->sa_family == AF_INET && addr_len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)addr;
        ip.family = AF_INET;
        memcpy(ip.bytes, &sin->sin_addr, 4);
        port = ntohs(sin->sin_port);
    } else if (addr && addr->sa_family == AF_INET6 &&
               addr_len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)addr;
        ip.family = AF_INET6;
        memcpy(ip.bytes, &sin6->sin6_addr, 16);
        port = ntohs(sin6->sin6_port);
        ip_fold_mapped(&ip);
    } else {
        snprintf(why, why_size, "not an IPv4 or IPv6 address");
        return false;
    }

    const char *range = ip_internal_range(&ip);
    ip_t v4;
    bool embedded = !range && ip_embedded_v4(&ip, &v4);
    if (embedded)
        range = ip_internal_range(&v4);
    if (!range)
        return true;
    if (covered(self, &ip, port, false) || (embedded && covered(self, &v4, port, false)))
        return true;
    char text[INET6_ADDRSTRLEN];
    ip_format(&ip, text, sizeof text);
    snprintf(why, why_size, "address %s port %u is internal (%s%s) and not on the allowlist", text,
             port, range, embedded ? ", embedded IPv4" : "");
    return false;
}
