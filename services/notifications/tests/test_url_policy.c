/* The webhook allowlist: entries, URLs, and the address check made at
 * connection time. No sockets: addresses are built in memory. */
#include "url_policy.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

/* ======================== helpers ======================================= */

static url_policy_t *policy_ok(const char *allowlist)
{
    char err[256] = "unset";
    url_policy_t *policy = url_policy_new(allowlist, err, sizeof err);
    if (!policy)
        fail_msg("allowlist \"%s\" refused: %s", allowlist, err);
    assert_string_equal(err, "");
    return policy;
}

/* The URL's verdict; when refused, the reason must contain `because`. */
static void expect_url(const url_policy_t *policy, const char *url, bool accepted,
                       const char *because)
{
    char why[256] = "unset";
    bool ok = url_policy_check_url(policy, url, why, sizeof why);
    if (ok != accepted)
        fail_msg("%s: expected %s, got %s (%s)", url, accepted ? "accepted" : "refused",
                 ok ? "accepted" : "refused", why);
    if (accepted)
        assert_string_equal(why, "");
    else if (because && !strstr(why, because))
        fail_msg("%s: reason \"%s\" does not say \"%s\"", url, why, because);
}

/* A socket address of text (IPv4 or IPv6) and port. */
static socklen_t make_addr(const char *text, unsigned port, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, text, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        return sizeof *sin;
    }
    if (inet_pton(AF_INET6, text, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        return sizeof *sin6;
    }
    fail_msg("not an address: %s", text);
    return 0;
}

static void expect_address(const url_policy_t *policy, const char *text, unsigned port,
                           bool accepted, const char *because)
{
    struct sockaddr_storage ss;
    socklen_t len = make_addr(text, port, &ss);
    char why[256] = "unset";
    bool ok = url_policy_check_address(policy, (struct sockaddr *)&ss, len, why, sizeof why);
    if (ok != accepted)
        fail_msg("%s port %u: expected %s, got %s (%s)", text, port,
                 accepted ? "accepted" : "refused", ok ? "accepted" : "refused", why);
    if (accepted)
        assert_string_equal(why, "");
    else if (because && !strstr(why, because))
        fail_msg("%s: reason \"%s\" does not say \"%s\"", text, why, because);
}

/* ======================== parsing ======================================= */

static void test_good_entries(void **state)
{
    (void)state;
    const char *lists[] = {
        NULL,
        "",
        " , ,",
        "partner.example.org",
        "*.example.org",
        "partner.example.org:8443",
        "203.0.113.7",
        "10.1.0.0/16",
        "[::1]",
        "fd00::/8",
        "127.0.0.1:8080",
        "[2001:db8::1]:8443",
        "::1",
        "::ffff:10.0.0.0/104",
        "0.0.0.0/0",
        "::/0",
        "LOCALHOST",
        "a-b.example-1.org,  x.example , 192.0.2.1 ",
        "partner.example.org:1, partner.example.org:65535",
    };
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
        char err[256] = "unset";
        url_policy_t *policy = url_policy_new(lists[i], err, sizeof err);
        if (!policy)
            fail_msg("\"%s\" refused: %s", lists[i] ? lists[i] : "(null)", err);
        assert_string_equal(err, "");
        url_policy_destroy(&policy);
        assert_null(policy);
    }
    url_policy_destroy(NULL);
}

static void test_bad_entries(void **state)
{
    (void)state;
    struct {
        const char *entry;
        const char *reason;
    } cases[] = {
        {"exa mple.org", "not a host name"},
        {"exa_mple.org", "not a host name"},
        {"-bad.example.org", "not a host name"},
        {"bad-.example.org", "not a host name"},
        {"a..example.org", "not a host name"},
        {"*", "not a host name"},
        {"*.", "not a host name after '*.'"},
        {"foo.*.example.org", "not a host name"},
        {"**.example.org", "not a host name"},
        {"256.1.1.1", "not a host name"},
        {"1.2.3", "not a host name"},
        {"http://example.org", "not a URL"},
        {"example.org/hooks", "not an address before '/'"},
        {"partner.example.org:0", "port must be"},
        {"partner.example.org:65536", "port must be"},
        {"partner.example.org:http", "port must be"},
        {"partner.example.org:", "port must be"},
        {"10.0.0.0/33", "prefix length too long"},
        {"10.0.0.0/", "not a prefix length"},
        {"10.0.0.0/8x", "not a prefix length"},
        {"10.0.0.1/8", "bits set beyond the prefix"},
        {"fd00::/129", "prefix length too long"},
        {"fd00::1/8", "bits set beyond the prefix"},
        {"::ffff:10.0.0.0/64", "at least 96"},
        {"[::1", "missing ']'"},
        {"[::1]x", "unexpected text"},
        {"[::1]:0", "port must be"},
        {"[10.0.0.1]", "not an IPv6 address"},
        {"[example.org]", "not an IPv6 address"},
        {"fd00::zz", "not an IPv6 address"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[256] = "";
        url_policy_t *policy = url_policy_new(cases[i].entry, err, sizeof err);
        if (policy)
            fail_msg("\"%s\" accepted", cases[i].entry);
        char named[128];
        snprintf(named, sizeof named, "\"%s\"", cases[i].entry);
        if (!strstr(err, named) || !strstr(err, cases[i].reason))
            fail_msg("\"%s\": error \"%s\" should name it and say \"%s\"", cases[i].entry, err,
                     cases[i].reason);
    }

    /* In a list, the bad entry is the one named, trimmed. */
    char err[256] = "";
    assert_null(url_policy_new("good.example.org, 10.0.0.0/8 ,  bad entry , other.example", err,
                               sizeof err));
    assert_non_null(strstr(err, "\"bad entry\""));
    assert_null(strstr(err, "good.example.org"));

    /* An entry longer than anything sensible is refused, not cut. */
    char long_entry[400];
    memset(long_entry, 'a', sizeof long_entry - 1);
    long_entry[sizeof long_entry - 1] = '\0';
    assert_null(url_policy_new(long_entry, err, sizeof err));
    assert_non_null(strstr(err, "longer than"));

    /* A small error buffer is filled without overflow. */
    char tiny[8];
    assert_null(url_policy_new("bad entry", tiny, sizeof tiny));
    assert_int_equal(strlen(tiny), sizeof tiny - 1);
}

/* ======================== URLs ========================================== */

static void test_url_schemes_and_userinfo(void **state)
{
    (void)state;
    url_policy_t *policy = policy_ok("partner.example.org");
    expect_url(policy, "https://partner.example.org/hooks/passerelle", true, NULL);
    expect_url(policy, "http://partner.example.org/", true, NULL);
    expect_url(policy, "HTTPS://partner.example.org/", true, NULL);
    expect_url(policy, "ftp://partner.example.org/", false, "scheme must be http or https");
    expect_url(policy, "gopher://partner.example.org/", false, "scheme must be http or https");
    expect_url(policy, "file:///etc/passwd", false, NULL);
    expect_url(policy, "smtp://partner.example.org/", false, "scheme must be http or https");
    expect_url(policy, "partner.example.org/hooks", false, "not a valid URL");
    expect_url(policy, "", false, "empty");
    expect_url(policy, NULL, false, "empty");
    expect_url(policy, "https://", false, NULL);
    expect_url(policy, "https://user@partner.example.org/", false, "user information");
    expect_url(policy, "https://user:secret@partner.example.org/", false, "user information");
    expect_url(policy, "https://:secret@partner.example.org/", false, "user information");
    expect_url(policy, "https://partner.example.org@evil.example.com/", false, "user information");
    expect_url(policy, "https://partner.example.org /", false, NULL);

    char long_url[2200];
    int n = snprintf(long_url, sizeof long_url, "https://partner.example.org/");
    memset(long_url + n, 'x', sizeof long_url - (size_t)n - 1);
    long_url[sizeof long_url - 1] = '\0';
    expect_url(policy, long_url, false, "longer than");

    /* A NULL reason buffer is allowed. */
    assert_false(url_policy_check_url(policy, "ftp://partner.example.org/", NULL, 0));
    url_policy_destroy(&policy);
}

static void test_url_names_wildcards_ports_case(void **state)
{
    (void)state;
    url_policy_t *policy = policy_ok("partner.example.org, *.example.net, api.example.com:8443, "
                                     "hooks.example.com:443");
    expect_url(policy, "https://partner.example.org:9999/x", true, NULL);
    expect_url(policy, "https://PARTNER.Example.ORG/", true, NULL);
    expect_url(policy, "https://partner.example.org./", true, NULL);
    expect_url(policy, "https://evilpartner.example.org/", false, "not on the allowlist");
    expect_url(policy, "https://partner.example.org.evil.example/", false, "not on the allowlist");
    expect_url(policy, "https://sub.partner.example.org/", false, "not on the allowlist");

    expect_url(policy, "https://a.example.net/", true, NULL);
    expect_url(policy, "https://a.b.example.net:8080/", true, NULL);
    expect_url(policy, "https://A.EXAMPLE.NET/", true, NULL);
    expect_url(policy, "https://example.net/", false, "host example.net is not on the allowlist");
    expect_url(policy, "https://badexample.net/", false, "not on the allowlist");

    expect_url(policy, "https://api.example.com:8443/v1", true, NULL);
    expect_url(policy, "https://api.example.com/v1", false,
               "port 443 of host api.example.com is not on the allowlist");
    expect_url(policy, "http://api.example.com:8080/", false, "port 8080");
    /* The scheme's default port counts as named. */
    expect_url(policy, "https://hooks.example.com/", true, NULL);
    expect_url(policy, "http://hooks.example.com/", false, "port 80");
    expect_url(policy, "http://hooks.example.com:443/", true, NULL);

    /* Numbers that are not addresses are not names either. */
    expect_url(policy, "https://999.1.1.1/", false, NULL);
    url_policy_destroy(&policy);

    /* The empty allowlist accepts nothing. */
    url_policy_t *empty = policy_ok("");
    expect_url(empty, "https://partner.example.org/", false, "not on the allowlist");
    expect_url(empty, "https://203.0.113.7/", false, "not on the allowlist");
    url_policy_destroy(&empty);
}

static void test_url_addresses(void **state)
{
    (void)state;
    url_policy_t *policy = policy_ok("203.0.113.7, 198.51.100.0/24, [2001:db8::1]:8443, "
                                     "2001:db8:1::/48, 127.0.0.1:8080");
    expect_url(policy, "https://203.0.113.7/", true, NULL);
    expect_url(policy, "http://203.0.113.7:81/", true, NULL);
    expect_url(policy, "https://203.0.113.8/", false, "host 203.0.113.8 is not on the allowlist");
    expect_url(policy, "https://198.51.100.200/", true, NULL);
    expect_url(policy, "https://198.51.101.1/", false, "not on the allowlist");
    expect_url(policy, "https://[2001:db8::1]:8443/", true, NULL);
    expect_url(policy, "https://[2001:DB8:0::1]:8443/", true, NULL);
    expect_url(policy, "https://[2001:db8::1]/", false, "port 443 of host 2001:db8::1 is not");
    expect_url(policy, "https://[2001:db8::2]:8443/", false, "not on the allowlist");
    expect_url(policy, "https://[2001:db8:1:ffff::5]/", true, NULL);
    expect_url(policy, "https://[2001:db8:2::5]/", false, "not on the allowlist");
    expect_url(policy, "http://127.0.0.1:8080/hook", true, NULL);
    expect_url(policy, "http://127.0.0.1:8081/hook", false, "port 8081 of host 127.0.0.1");
    /* The mapped spelling is the same address. */
    expect_url(policy, "http://[::ffff:127.0.0.1]:8080/", true, NULL);
    expect_url(policy, "http://[::ffff:127.0.0.1]:6379/", false, "not on the allowlist");
    /* A name is not an address: it matches name entries only. */
    expect_url(policy, "http://localhost:8080/", false, "host localhost is not on the allowlist");
    /* Internal addresses are not special here: not listed, not accepted. */
    expect_url(policy, "http://10.0.0.1/", false, "host 10.0.0.1 is not on the allowlist");
    expect_url(policy, "http://169.254.169.254/latest/meta-data/", false, "not on the allowlist");
    expect_url(policy, "http://[fe80::1%25eth0]/", false, NULL);
    url_policy_destroy(&policy);
}

/* ======================== addresses ===================================== */

static void test_internal_addresses_refused(void **state)
{
    (void)state;
    struct {
        const char *address;
        const char *range;
    } internal[] = {
        {"0.0.0.0", "this network"},
        {"0.1.2.3", "this network"},
        {"10.0.0.1", "private"},
        {"10.255.255.255", "private"},
        {"100.64.0.1", "shared address space"},
        {"100.127.255.254", "shared address space"},
        {"127.0.0.1", "loopback"},
        {"127.255.0.1", "loopback"},
        {"169.254.169.254", "link-local"},
        {"172.16.0.1", "private"},
        {"172.31.255.255", "private"},
        {"192.168.1.1", "private"},
        {"224.0.0.1", "multicast"},
        {"239.255.255.250", "multicast"},
        {"240.0.0.1", "reserved"},
        {"255.255.255.254", "reserved"},
        {"255.255.255.255", "broadcast"},
        {"::", "unspecified"},
        {"::1", "loopback"},
        {"fc00::1", "unique-local"},
        {"fd12:3456::1", "unique-local"},
        {"fe80::1", "link-local"},
        {"febf::1", "link-local"},
        {"fec0::1", "site-local"},
        {"ff02::1", "multicast"},
        {"::ffff:127.0.0.1", "loopback"},
        {"::ffff:10.1.2.3", "private"},
        {"::ffff:169.254.169.254", "link-local"},
        {"::127.0.0.1", "loopback"},
        {"64:ff9b::a9fe:a9fe", "link-local"},
        {"2002:c0a8:0101::1", "private"},
    };
    url_policy_t *empty = policy_ok(NULL);
    /* Names are irrelevant to this check: a name entry covers nothing. */
    url_policy_t *names = policy_ok("localhost, *.internal.example");
    for (size_t i = 0; i < sizeof internal / sizeof internal[0]; i++) {
        expect_address(empty, internal[i].address, 443, false, internal[i].range);
        expect_address(names, internal[i].address, 80, false, "not on the allowlist");
    }
    /* The reason names the address as it is used. */
    expect_address(empty, "::ffff:127.0.0.1", 8080, false, "address 127.0.0.1 port 8080");
    url_policy_destroy(&empty);
    url_policy_destroy(&names);
}

static void test_public_addresses_pass(void **state)
{
    (void)state;
    const char *public[] = {
        "8.8.8.8",          "1.1.1.1",
        "100.63.255.255",   "100.128.0.0",
        "172.15.255.255",   "172.32.0.0",
        "192.169.0.1",      "169.255.0.1",
        "223.255.255.255",  "11.0.0.1",
        "126.255.255.255",  "128.0.0.1",
        "203.0.113.7",      "2a00:1450:4007::200e",
        "2001:db8::1",      "::ffff:8.8.8.8",
        "64:ff9b::808:808", "fbff::1",
        "fe7f::1",          "2002:0808:0808::1",
    };
    /* Public addresses pass the connection check without any entry: the
     * URL check is what decides which public hosts a webhook may reach. */
    url_policy_t *policy = policy_ok("partner.example.org");
    for (size_t i = 0; i < sizeof public / sizeof public[0]; i++)
        expect_address(policy, public[i], 443, true, NULL);
    expect_url(policy, "https://8.8.8.8/", false, "not on the allowlist");
    expect_url(policy, "https://[2a00:1450:4007::200e]/", false, "not on the allowlist");
    url_policy_destroy(&policy);
}

static void test_internal_addresses_covered(void **state)
{
    (void)state;
    url_policy_t *policy =
        policy_ok("127.0.0.1, 10.0.0.0/8, [::1], fd00::/8, "
                  "169.254.169.254:80, 192.168.1.10:8080, ::ffff:172.16.0.0/108");
    expect_address(policy, "127.0.0.1", 80, true, NULL);
    expect_address(policy, "127.0.0.1", 6379, true, NULL);
    expect_address(policy, "::ffff:127.0.0.1", 8080, true, NULL);
    expect_address(policy, "127.0.0.2", 80, false, "loopback");
    expect_address(policy, "10.9.9.9", 443, true, NULL);
    expect_address(policy, "11.0.0.1", 443, true, NULL); /* public anyway */
    expect_address(policy, "::1", 443, true, NULL);
    expect_address(policy, "fd00::5", 443, true, NULL);
    expect_address(policy, "fdff:ffff::1", 443, true, NULL);
    expect_address(policy, "fc00::1", 443, false, "unique-local");
    expect_address(policy, "169.254.169.254", 80, true, NULL);
    expect_address(policy, "169.254.169.254", 8080, false, "link-local");
    expect_address(policy, "192.168.1.10", 8080, true, NULL);
    expect_address(policy, "192.168.1.10", 80, false, "private");
    expect_address(policy, "172.16.5.5", 443, true, NULL);
    expect_address(policy, "172.31.0.1", 443, true, NULL);
    expect_address(policy, "192.168.0.1", 443, false, "private");
    /* An address embedded in IPv6 is covered by the IPv4 entry. */
    expect_address(policy, "64:ff9b::a01:203", 443, true, NULL);
    url_policy_destroy(&policy);
}

static void test_address_shapes(void **state)
{
    (void)state;
    url_policy_t *policy = policy_ok("0.0.0.0/0, ::/0");
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    char why[128] = "";
    assert_false(
        url_policy_check_address(policy, (struct sockaddr *)&un, sizeof un, why, sizeof why));
    assert_non_null(strstr(why, "not an IPv4 or IPv6 address"));

    struct sockaddr_storage ss;
    socklen_t len = make_addr("::1", 80, &ss);
    assert_true(url_policy_check_address(policy, (struct sockaddr *)&ss, len, why, sizeof why));
    assert_false(url_policy_check_address(policy, (struct sockaddr *)&ss,
                                          sizeof(struct sockaddr_in), why, sizeof why));
    assert_false(url_policy_check_address(policy, NULL, 0, why, sizeof why));
    assert_true(url_policy_check_address(policy, (struct sockaddr *)&ss, len, NULL, 0));
    url_policy_destroy(&policy);

    /* A NULL policy is the empty one. */
    expect_address(NULL, "127.0.0.1", 80, false, "loopback");
    expect_address(NULL, "8.8.8.8", 80, true, NULL);
    expect_url(NULL, "https://partner.example.org/", false, "not on the allowlist");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_entries),
        cmocka_unit_test(test_bad_entries),
        cmocka_unit_test(test_url_schemes_and_userinfo),
        cmocka_unit_test(test_url_names_wildcards_ports_case),
        cmocka_unit_test(test_url_addresses),
        cmocka_unit_test(test_internal_addresses_refused),
        cmocka_unit_test(test_public_addresses_pass),
        cmocka_unit_test(test_internal_addresses_covered),
        cmocka_unit_test(test_address_shapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
