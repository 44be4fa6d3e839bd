/* CloudEvents JSON of the project's events: every attribute and the data
 * decoded through its schema, the bytes kept as data_base64 when they
 * cannot be, the territory found at the top of the data or one message
 * down, and the owner of private data. The registry is checked against the
 * .proto files themselves, so a message added there and forgotten here
 * fails. */
#include "cloudevent.h"
#include "docstore.pb-c.h"
#include "notifications.pb-c.h"
#include "reservations.pb-c.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <ctype.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define UNIT_ID       "U01JDVZ8Q4X9G7M2K5T3W6R1AB"
#define CONVENTION_ID "C01JDVZ9A1B2C3D4E5F6G7H8JK"

/* An event as a producer writes it (txn.c), with data packed from msg into
 * a malloc'd buffer the caller frees with event_free(). */
static Passerelle__Event event_of(const ProtobufCMessage *msg, const char *type,
                                  const char *subject)
{
    Passerelle__Event event = PASSERELLE__EVENT__INIT;
    event.id = "E01JDW0000000000000000000A";
    event.source = "/passerelle/reservations";
    event.type = (char *)type;
    event.subject = (char *)subject;
    event.time = "2026-11-29T10:00:00.123Z";
    event.datacontenttype = "application/protobuf";
    event.dataschema = (char *)msg->descriptor->name;
    event.specversion = "1.0";
    event.has_data = 1;
    event.data.len = protobuf_c_message_get_packed_size(msg);
    event.data.data = malloc(event.data.len ? event.data.len : 1);
    assert_non_null(event.data.data);
    protobuf_c_message_pack(msg, event.data.data);
    return event;
}

static void event_free(Passerelle__Event *event)
{
    free(event->data.data);
    event->data.data = NULL;
}

/* The event's JSON, parsed; checks the length reported. */
static json_t *json_of(const Passerelle__Event *event)
{
    size_t len = 0;
    char *text = cloudevent_json(event, &len);
    assert_non_null(text);
    assert_int_equal(len, strlen(text));
    /* Compact: no blank between tokens (none of the values here has one). */
    assert_null(strstr(text, "\": "));
    json_error_t error;
    json_t *json = json_loads(text, 0, &error);
    if (!json)
        fail_msg("not JSON (%s): %s", error.text, text);
    free(text);
    return json;
}

static const char *string_at(const json_t *json, const char *key)
{
    const json_t *value = json_object_get(json, key);
    if (!value || !json_is_string(value))
        fail_msg("no string \"%s\"", key);
    return json_string_value(value);
}

static void territory_of(const Passerelle__Event *event, const char *want)
{
    char territory[16] = "junk";
    cloudevent_territory(event, territory, sizeof territory);
    assert_string_equal(territory, want);
}

static void owner_of(const Passerelle__Event *event, const char *want)
{
    char owner[32] = "junk";
    cloudevent_private_owner(event, owner, sizeof owner);
    assert_string_equal(owner, want);
}

/* --------------------------------------------------------------------------
 * Registry
 * -------------------------------------------------------------------------- */

static void test_schema_lookup(void **state)
{
    (void)state;
    assert_ptr_equal(cloudevent_schema("passerelle.Convention"),
                     &passerelle__convention__descriptor);
    assert_ptr_equal(cloudevent_schema(".passerelle.Convention"),
                     &passerelle__convention__descriptor);
    assert_ptr_equal(cloudevent_schema("passerelle.Document"), &passerelle__document__descriptor);
    assert_ptr_equal(cloudevent_schema("passerelle.Digest"), &passerelle__digest__descriptor);
    assert_ptr_equal(cloudevent_schema("passerelle.Event"), &passerelle__event__descriptor);
    assert_null(cloudevent_schema("Convention"));
    assert_null(cloudevent_schema("passerelle.convention"));
    assert_null(cloudevent_schema("passerelle.Nope"));
    assert_null(cloudevent_schema(""));
    assert_null(cloudevent_schema(NULL));
}

/* Every top-level message of every .proto file is known to the registry. */
static void test_registry_covers_every_proto_message(void **state)
{
    (void)state;
    const char *source_dir = getenv("PASSERELLE_TEST_SOURCE_DIR");
    if (!source_dir)
        skip(); /* set by ctest; a hand run without it checks the rest */
    const char *files[] = {"envelope", "reservations", "docstore", "notifications"};
    int messages = 0;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/proto/%s.proto", source_dir, files[i]);
        FILE *f = fopen(path, "r");
        if (!f)
            fail_msg("cannot read %s", path);
        char line[512];
        while (fgets(line, sizeof line, f)) {
            if (strncmp(line, "message ", 8) != 0)
                continue;
            char full_name[256] = "passerelle.";
            size_t at = strlen(full_name);
            for (const char *p = line + 8;
                 (isalnum((unsigned char)*p) || *p == '_') && at + 1 < sizeof full_name; p++)
                full_name[at++] = *p;
            full_name[at] = '\0';
            if (!cloudevent_schema(full_name))
                fail_msg("%s (%s.proto) is not in the registry", full_name, files[i]);
            messages++;
        }
        fclose(f);
    }
    assert_true(messages > 50);
}

/* --------------------------------------------------------------------------
 * JSON
 * -------------------------------------------------------------------------- */

static void test_convention_with_unit(void **state)
{
    (void)state;
    Passerelle__Unit unit = PASSERELLE__UNIT__INIT;
    unit.id = UNIT_ID;
    unit.external_ref = "ANAH-13-2026-0042";
    unit.commune_insee = "13001";
    unit.commune_name = "Aix-en-Provence";
    unit.territory = "CT2";
    unit.has_stock = 1;
    unit.stock = PASSERELLE__STOCK__STOCK_PRIVATE;
    Passerelle__Convention convention = PASSERELLE__CONVENTION__INIT;
    convention.id = CONVENTION_ID;
    convention.unit_id = UNIT_ID;
    convention.has_level = 1;
    convention.level = PASSERELLE__CONVENTION_LEVEL__LEVEL_LOC2;
    convention.has_state = 1;
    convention.state = PASSERELLE__CONVENTION_STATE__CONVENTION_ENVISAGED;
    convention.envisaged_on = "2026-11-29";
    convention.unit = &unit;
    Passerelle__Event event = event_of(&convention.base, "convention.envisaged", "units/" UNIT_ID);

    json_t *json = json_of(&event);
    assert_string_equal(string_at(json, "specversion"), "1.0");
    assert_string_equal(string_at(json, "id"), "E01JDW0000000000000000000A");
    assert_string_equal(string_at(json, "source"), "/passerelle/reservations");
    assert_string_equal(string_at(json, "type"), "convention.envisaged");
    assert_string_equal(string_at(json, "subject"), "units/" UNIT_ID);
    assert_string_equal(string_at(json, "time"), "2026-11-29T10:00:00.123Z");
    assert_string_equal(string_at(json, "datacontenttype"), "application/json");
    assert_string_equal(string_at(json, "dataschema"),
                        "urn:passerelle:proto:passerelle.Convention");
    assert_null(json_object_get(json, "data_base64"));
    assert_int_equal(json_object_size(json), 9);

    json_t *data = json_object_get(json, "data");
    assert_true(json_is_object(data));
    assert_string_equal(string_at(data, "id"), CONVENTION_ID);
    assert_string_equal(string_at(data, "level"), "LOC2");
    assert_string_equal(string_at(data, "state"), "ENVISAGED");
    json_t *unit_json = json_object_get(data, "unit");
    assert_true(json_is_object(unit_json));
    assert_string_equal(string_at(unit_json, "territory"), "CT2");
    assert_string_equal(string_at(unit_json, "commune_name"), "Aix-en-Provence");
    assert_string_equal(string_at(unit_json, "stock"), "PRIVATE");
    json_decref(json);

    /* Without len_out too. */
    char *text = cloudevent_json(&event, NULL);
    assert_non_null(text);
    free(text);

    /* The data unpacked is the convention that went in. */
    ProtobufCMessage *msg = cloudevent_data(&event);
    assert_non_null(msg);
    assert_ptr_equal(msg->descriptor, &passerelle__convention__descriptor);
    Passerelle__Convention *back = (Passerelle__Convention *)msg;
    assert_string_equal(back->unit->territory, "CT2");
    protobuf_c_message_free_unpacked(msg, NULL);

    territory_of(&event, "CT2");
    owner_of(&event, "");
    event_free(&event);
}

static void test_missing_attributes(void **state)
{
    (void)state;
    Passerelle__Unit unit = PASSERELLE__UNIT__INIT;
    unit.territory = "CT1";
    Passerelle__Event event = event_of(&unit.base, "unit.registered", NULL);
    event.id = NULL;
    event.time = NULL;
    event.specversion = NULL;
    /* Invalid UTF-8 from the wire still gives valid JSON. */
    event.source = "/passerelle/\xff\xfe";

    json_t *json = json_of(&event);
    assert_string_equal(string_at(json, "specversion"), "1.0");
    assert_string_equal(string_at(json, "id"), "");
    assert_string_equal(string_at(json, "source"), "/passerelle/\xEF\xBF\xBD\xEF\xBF\xBD");
    assert_null(json_object_get(json, "subject"));
    assert_null(json_object_get(json, "time"));
    assert_string_equal(string_at(json_object_get(json, "data"), "territory"), "CT1");
    json_decref(json);
    event_free(&event);

    assert_null(cloudevent_json(NULL, NULL));
}

static void test_undecodable_data_as_base64(void **state)
{
    (void)state;
    Passerelle__Unit unit = PASSERELLE__UNIT__INIT;
    unit.id = UNIT_ID;
    unit.territory = "CT3";
    Passerelle__Event event = event_of(&unit.base, "unit.registered", "units/" UNIT_ID);

    /* An unknown dataschema: the bytes go out as they are. */
    event.dataschema = "passerelle.FromTheFuture";
    json_t *json = json_of(&event);
    assert_null(json_object_get(json, "data"));
    assert_string_equal(string_at(json, "datacontenttype"), "application/protobuf");
    assert_string_equal(string_at(json, "dataschema"),
                        "urn:passerelle:proto:passerelle.FromTheFuture");
    const char *b64 = string_at(json, "data_base64");
    unsigned char decoded[256];
    size_t decoded_len = 0;
    assert_int_equal(sodium_base642bin(decoded, sizeof decoded, b64, strlen(b64), NULL,
                                       &decoded_len, NULL, sodium_base64_VARIANT_ORIGINAL),
                     0);
    assert_int_equal(decoded_len, event.data.len);
    assert_memory_equal(decoded, event.data.data, decoded_len);
    json_decref(json);
    assert_null(cloudevent_data(&event));
    territory_of(&event, "");

    /* A known schema, bytes that do not decode (a truncated varint). */
    event.dataschema = "passerelle.Unit";
    uint8_t garbage[] = {0x0a, 0xff, 0xff, 0xff};
    uint8_t *packed = event.data.data;
    event.data.data = garbage;
    event.data.len = sizeof garbage;
    assert_null(cloudevent_data(&event));
    json = json_of(&event);
    assert_null(json_object_get(json, "data"));
    assert_string_equal(string_at(json, "data_base64"), "Cv///w==");
    json_decref(json);
    territory_of(&event, "");
    event.data.data = packed;

    /* Not protobuf by its content type: not decoded, whatever the schema. */
    event.datacontenttype = "text/plain";
    assert_null(cloudevent_data(&event));
    json = json_of(&event);
    assert_string_equal(string_at(json, "datacontenttype"), "text/plain");
    assert_non_null(json_object_get(json, "data_base64"));
    json_decref(json);
    event_free(&event);
}

/* --------------------------------------------------------------------------
 * Routing attributes
 * -------------------------------------------------------------------------- */

static void test_territory_top_level_and_nested(void **state)
{
    (void)state;
    /* At the top: a unit. */
    Passerelle__Unit unit = PASSERELLE__UNIT__INIT;
    unit.id = UNIT_ID;
    unit.territory = "CT5";
    Passerelle__Event event = event_of(&unit.base, "unit.registered", "units/" UNIT_ID);
    territory_of(&event, "CT5");
    event_free(&event);

    /* At the top: a digest, whose listed units are not messages with a
     * territory of their own. */
    Passerelle__DigestUnit listed = PASSERELLE__DIGEST_UNIT__INIT;
    listed.unit_id = UNIT_ID;
    Passerelle__DigestUnit *envisaged[] = {&listed};
    Passerelle__Digest digest = PASSERELLE__DIGEST__INIT;
    digest.territory = "CT6";
    digest.n_envisaged = 1;
    digest.envisaged = envisaged;
    event = event_of(&digest.base, "digest.ready", "territories/CT6");
    territory_of(&event, "CT6");
    json_t *json = json_of(&event);
    assert_int_equal(json_array_size(json_object_get(json_object_get(json, "data"), "envisaged")),
                     1);
    json_decref(json);
    event_free(&event);

    /* One level down: a convention's unit. */
    Passerelle__Convention convention = PASSERELLE__CONVENTION__INIT;
    convention.id = CONVENTION_ID;
    convention.unit = &unit;
    unit.territory = "CT4";
    event = event_of(&convention.base, "convention.signed", "units/" UNIT_ID);
    territory_of(&event, "CT4");
    event_free(&event);

    /* A convention without its unit has none. */
    convention.unit = NULL;
    event = event_of(&convention.base, "convention.signed", "units/" UNIT_ID);
    territory_of(&event, "");
    event_free(&event);

    /* The same for any message with a unit: a STOCK reservation. */
    Passerelle__Reservation reservation = PASSERELLE__RESERVATION__INIT;
    reservation.unit = &unit;
    reservation.territory = "";
    event = event_of(&reservation.base, "reservation.created", "units/" UNIT_ID);
    territory_of(&event, "CT4");
    event_free(&event);

    /* Its own territory (a FLOW reservation's) comes first. */
    reservation.territory = "CT1";
    event = event_of(&reservation.base, "reservation.created", "units/" UNIT_ID);
    territory_of(&event, "CT1");
    event_free(&event);

    /* A document for the whole Métropole has none. */
    Passerelle__Document document = PASSERELLE__DOCUMENT__INIT;
    document.id = "F01JDVZ8Q4X9G7M2K5T3W6R1AB";
    document.territory = "";
    event = event_of(&document.base, "document.published", NULL);
    territory_of(&event, "");
    event_free(&event);

    /* The answer is cut to the room given, never overflowing it. */
    unit.territory = "CT5-and-more";
    event = event_of(&unit.base, "unit.registered", NULL);
    char small[4] = "xxx";
    cloudevent_territory(&event, small, sizeof small);
    assert_string_equal(small, "CT5");
    event_free(&event);
}

static void test_private_owner(void **state)
{
    (void)state;
    Passerelle__Document document = PASSERELLE__DOCUMENT__INIT;
    document.id = "F01JDVZ8Q4X9G7M2K5T3W6R1AB";
    document.title = "Diagnostic emploi-logement, Pays d'Aix";
    document.territory = "CT2";
    document.owner = "METROPOLE";
    document.has_visibility = 1;
    document.visibility = PASSERELLE__VISIBILITY__VISIBILITY_PRIVATE;
    Passerelle__Event event = event_of(&document.base, "document.published", NULL);
    owner_of(&event, "METROPOLE");
    territory_of(&event, "CT2");
    event_free(&event);

    document.visibility = PASSERELLE__VISIBILITY__VISIBILITY_SHARED;
    event = event_of(&document.base, "document.published", NULL);
    owner_of(&event, "");
    event_free(&event);

    /* Unset visibility means shared. */
    document.has_visibility = 0;
    event = event_of(&document.base, "document.published", NULL);
    owner_of(&event, "");
    event_free(&event);

    /* A unit's PRIVATE stock is not a visibility. */
    Passerelle__Unit unit = PASSERELLE__UNIT__INIT;
    unit.has_stock = 1;
    unit.stock = PASSERELLE__STOCK__STOCK_PRIVATE;
    unit.landlord = "OWNER-REF-1";
    event = event_of(&unit.base, "unit.registered", NULL);
    owner_of(&event, "");
    event_free(&event);

    /* Data that does not decode has no owner to tell. */
    document.has_visibility = 1;
    document.visibility = PASSERELLE__VISIBILITY__VISIBILITY_PRIVATE;
    event = event_of(&document.base, "document.published", NULL);
    event.dataschema = "passerelle.Unknown";
    owner_of(&event, "");
    event_free(&event);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schema_lookup),
        cmocka_unit_test(test_registry_covers_every_proto_message),
        cmocka_unit_test(test_convention_with_unit),
        cmocka_unit_test(test_missing_attributes),
        cmocka_unit_test(test_undecodable_data_as_base64),
        cmocka_unit_test(test_territory_top_level_and_nested),
        cmocka_unit_test(test_private_owner),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
