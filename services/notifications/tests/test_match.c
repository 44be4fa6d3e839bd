/* The routing rules (match.h), without Redis: type patterns, territories,
 * privacy (PRIVATE documents, the service's own events about a
 * subscription), endpoint.disabled reaching the owner's other channels,
 * e-mail taking only the digest, and the feed never taking a private
 * event. */
#include "match.h"

#include "docstore.pb-c.h"
#include "reservations.pb-c.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void test_patterns(void **state)
{
    (void)state;
    const char *good[] = {"*",     "convention.envisaged", "convention.*",
                          "a.b.*", "digest.ready",         "x_1.y"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        assert_true(match_pattern_valid(good[i]));
    const char *bad[] = {NULL, "",   "**", "convention.**", "*.envisaged", "Convention.x", "a..b",
                         ".a", "a.", "a*", "a.*b",          "a b"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_false(match_pattern_valid(bad[i]));

    assert_true(match_type("*", "unit.registered"));
    assert_true(match_type("convention.*", "convention.signed"));
    assert_false(match_type("convention.*", "convention"));
    assert_false(match_type("convention.*", "conventions.signed"));
    assert_true(match_type("convention.signed", "convention.signed"));
    assert_false(match_type("convention.signed", "convention.signed2"));
}

/* An event whose data is msg. */
static Passerelle__Event *event_of(const char *type, const ProtobufCMessage *msg)
{
    Passerelle__Event *event = calloc(1, sizeof *event);
    passerelle__event__init(event);
    event->id = "E01TEST";
    event->type = (char *)type;
    event->subject = "units/U1";
    event->dataschema = (char *)msg->descriptor->name;
    event->has_data = true;
    event->data.len = protobuf_c_message_get_packed_size(msg);
    event->data.data = malloc(event->data.len ? event->data.len : 1);
    protobuf_c_message_pack(msg, event->data.data);
    return event;
}

static void event_free(Passerelle__Event *event)
{
    free(event->data.data);
    free(event);
}

static Passerelle__Subscription sub_of(const char *id, const char *owner, Passerelle__Channel ch,
                                       char **types, size_t n_types, char **territories,
                                       size_t n_territories)
{
    Passerelle__Subscription sub = PASSERELLE__SUBSCRIPTION__INIT;
    sub.id = (char *)id;
    sub.owner_party = (char *)owner;
    sub.has_channel = true;
    sub.channel = ch;
    sub.event_types = types;
    sub.n_event_types = n_types;
    sub.territories = territories;
    sub.n_territories = n_territories;
    return sub;
}

static void test_types_and_territories(void **state)
{
    (void)state;
    Passerelle__Unit unit = PASSERELLE__UNIT__INIT;
    unit.id = "U1";
    unit.territory = "CT2";
    Passerelle__Convention conv = PASSERELLE__CONVENTION__INIT;
    conv.id = "C1";
    conv.unit = &unit;
    Passerelle__Event *event = event_of("convention.envisaged", &conv.base);
    match_facts_t facts;
    match_facts(event, &facts);
    assert_string_equal(facts.territory, "CT2");
    assert_string_equal(facts.private_to, "");

    char *conventions[] = {"convention.*"}, *units[] = {"unit.*"};
    char *ct2[] = {"CT2"}, *ct1[] = {"CT1", "CT3"};
    Passerelle__Subscription all =
        sub_of("S1", "PARTNER", PASSERELLE__CHANNEL__CHANNEL_WEBHOOK, NULL, 0, NULL, 0);
    Passerelle__Subscription conv_ct2 = sub_of(
        "S2", "ACTION_LOGEMENT", PASSERELLE__CHANNEL__CHANNEL_WEBHOOK, conventions, 1, ct2, 1);
    Passerelle__Subscription conv_ct1 = sub_of(
        "S3", "ACTION_LOGEMENT", PASSERELLE__CHANNEL__CHANNEL_WEBHOOK, conventions, 1, ct1, 2);
    Passerelle__Subscription unit_only =
        sub_of("S4", "PARTNER", PASSERELLE__CHANNEL__CHANNEL_WEBHOOK, units, 1, NULL, 0);
    Passerelle__Subscription feed =
        sub_of("S5", "PARTNER", PASSERELLE__CHANNEL__CHANNEL_FEED, conventions, 1, NULL, 0);
    Passerelle__Subscription email =
        sub_of("S6", "ACTION_LOGEMENT", PASSERELLE__CHANNEL__CHANNEL_EMAIL, NULL, 0, ct2, 1);
    assert_true(match_subscription(&all, &facts));
    assert_true(match_subscription(&conv_ct2, &facts));
    assert_false(match_subscription(&conv_ct1, &facts));
    assert_false(match_subscription(&unit_only, &facts));
    assert_true(match_subscription(&feed, &facts));
    /* E-mail takes the digest only. */
    assert_false(match_subscription(&email, &facts));
    event_free(event);

    Passerelle__Digest digest = PASSERELLE__DIGEST__INIT;
    digest.territory = "CT2";
    event = event_of("digest.ready", &digest.base);
    match_facts(event, &facts);
    assert_true(match_subscription(&email, &facts));
    assert_false(match_subscription(&conv_ct2, &facts));
    email.territories = ct1;
    email.n_territories = 2;
    assert_false(match_subscription(&email, &facts));
    event_free(event);

    /* An event about no territory reaches only those without one. */
    Passerelle__Programme programme = PASSERELLE__PROGRAMME__INIT;
    programme.id = "P1";
    event = event_of("programme.created", &programme.base);
    match_facts(event, &facts);
    assert_string_equal(facts.territory, "");
    assert_true(match_subscription(&all, &facts));
    Passerelle__Subscription all_ct2 =
        sub_of("S7", "PARTNER", PASSERELLE__CHANNEL__CHANNEL_WEBHOOK, NULL, 0, ct2, 1);
    assert_false(match_subscription(&all_ct2, &facts));
    event_free(event);
}

static void test_private_events(void **state)
{
    (void)state;
    Passerelle__Document doc = PASSERELLE__DOCUMENT__INIT;
    doc.id = "F1";
    doc.owner = "METROPOLE";
    doc.has_visibility = true;
    doc.visibility = PASSERELLE__VISIBILITY__VISIBILITY_PRIVATE;
    Passerelle__Event *event = event_of("document.published", &doc.base);
    match_facts_t facts;
    match_facts(event, &facts);
    assert_string_equal(facts.private_to, "METROPOLE");
    Passerelle__Subscription owner =
        sub_of("S1", "METROPOLE", PASSERELLE__CHANNEL__CHANNEL_WEBHOOK, NULL, 0, NULL, 0);
    Passerelle__Subscription admin =
        sub_of("S2", "ADMIN", PASSERELLE__CHANNEL__CHANNEL_WEBHOOK, NULL, 0, NULL, 0);
    Passerelle__Subscription other =
        sub_of("S3", "PARTNER", PASSERELLE__CHANNEL__CHANNEL_WEBHOOK, NULL, 0, NULL, 0);
    Passerelle__Subscription owner_feed =
        sub_of("S4", "METROPOLE", PASSERELLE__CHANNEL__CHANNEL_FEED, NULL, 0, NULL, 0);
    assert_true(match_subscription(&owner, &facts));
    assert_true(match_subscription(&admin, &facts));
    assert_false(match_subscription(&other, &facts));
    /* The feed is broadcast: no private event enters it. */
    assert_false(match_subscription(&owner_feed, &facts));
    event_free(event);

    doc.visibility = PASSERELLE__VISIBILITY__VISIBILITY_SHARED;
    event = event_of("document.published", &doc.base);
    match_facts(event, &facts);
    assert_true(match_subscription(&other, &facts));
    event_free(event);
}

static void test_endpoint_disabled(void **state)
{
    (void)state;
    Passerelle__Subscription disabled = PASSERELLE__SUBSCRIPTION__INIT;
    disabled.id = "S1";
    disabled.owner_party = "ACTION_LOGEMENT";
    Passerelle__Event *event = event_of("endpoint.disabled", &disabled.base);
    match_facts_t facts;
    match_facts(event, &facts);
    assert_true(facts.endpoint_disabled);
    assert_string_equal(facts.private_to, "ACTION_LOGEMENT");
    assert_string_equal(facts.about_subscription, "S1");

    char *units[] = {"unit.*"};
    Passerelle__Subscription itself =
        sub_of("S1", "ACTION_LOGEMENT", PASSERELLE__CHANNEL__CHANNEL_WEBHOOK, NULL, 0, NULL, 0);
    Passerelle__Subscription other_channel =
        sub_of("S2", "ACTION_LOGEMENT", PASSERELLE__CHANNEL__CHANNEL_WEBHOOK, units, 1, NULL, 0);
    Passerelle__Subscription admin_all =
        sub_of("S3", "ADMIN", PASSERELLE__CHANNEL__CHANNEL_WEBHOOK, NULL, 0, NULL, 0);
    Passerelle__Subscription admin_units =
        sub_of("S4", "ADMIN", PASSERELLE__CHANNEL__CHANNEL_WEBHOOK, units, 1, NULL, 0);
    Passerelle__Subscription stranger =
        sub_of("S5", "PARTNER", PASSERELLE__CHANNEL__CHANNEL_WEBHOOK, NULL, 0, NULL, 0);
    assert_false(match_subscription(&itself, &facts));
    /* The owner's other channel hears of it whatever its filters. */
    assert_true(match_subscription(&other_channel, &facts));
    /* ADMIN through its filters. */
    assert_true(match_subscription(&admin_all, &facts));
    assert_false(match_subscription(&admin_units, &facts));
    assert_false(match_subscription(&stranger, &facts));
    event_free(event);

    /* subscription.created is its owner's business too, filters apply. */
    event = event_of("subscription.created", &disabled.base);
    match_facts(event, &facts);
    assert_false(facts.endpoint_disabled);
    assert_false(match_subscription(&other_channel, &facts));
    assert_false(match_subscription(&stranger, &facts));
    assert_true(match_subscription(&admin_all, &facts));
    event_free(event);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_patterns),
        cmocka_unit_test(test_types_and_territories),
        cmocka_unit_test(test_private_events),
        cmocka_unit_test(test_endpoint_disabled),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
