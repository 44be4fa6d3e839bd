/* Protobuf <-> JSON: round trips through the project's messages, lenient
 * scalars, and every refusal, each of which must free what it built (run
 * this binary under valgrind to see it). */
#include "pbjson.h"
#include "envelope.pb-c.h"
#include "reservations.pb-c.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* --------------------------------------------------------------------------
 * A message with every scalar type, repeated scalars and a oneof, which the
 * project's .proto files do not (yet) use: described by hand, the way
 * protoc-c would.
 * -------------------------------------------------------------------------- */

typedef struct {
    ProtobufCMessage base;
    protobuf_c_boolean has_a_i32;
    int32_t a_i32;
    protobuf_c_boolean has_b_s32;
    int32_t b_s32;
    protobuf_c_boolean has_c_sf32;
    int32_t c_sf32;
    protobuf_c_boolean has_d_u32;
    uint32_t d_u32;
    protobuf_c_boolean has_e_fx32;
    uint32_t e_fx32;
    protobuf_c_boolean has_f_i64;
    int64_t f_i64;
    protobuf_c_boolean has_g_s64;
    int64_t g_s64;
    protobuf_c_boolean has_h_sf64;
    int64_t h_sf64;
    protobuf_c_boolean has_i_u64;
    uint64_t i_u64;
    protobuf_c_boolean has_j_fx64;
    uint64_t j_fx64;
    protobuf_c_boolean has_k_float;
    float k_float;
    protobuf_c_boolean has_l_double;
    double l_double;
    protobuf_c_boolean has_m_bool;
    protobuf_c_boolean m_bool;
    size_t n_n_ints;
    int32_t *n_ints;
    size_t n_o_strings;
    char **o_strings;
    size_t n_p_bytes;
    ProtobufCBinaryData *p_bytes;
    size_t n_q_stocks;
    Passerelle__Stock *q_stocks;
    size_t n_r_units;
    Passerelle__Unit **r_units;
    uint32_t pick_case;
    union {
        char *s_name;
        int32_t t_number;
    };
} all_types_t;

static void all_types_init(ProtobufCMessage *msg);

#define SCALAR(name, id, type)                                                                     \
    {                                                                                              \
#name, id, PROTOBUF_C_LABEL_OPTIONAL, type, offsetof(all_types_t, has_##name),             \
            offsetof(all_types_t, name), NULL, NULL, 0, 0, NULL, NULL                              \
    }
#define REPEATED(name, id, type, desc)                                                             \
    {                                                                                              \
#name, id, PROTOBUF_C_LABEL_REPEATED, type, offsetof(all_types_t, n_##name),               \
            offsetof(all_types_t, name), desc, NULL, 0, 0, NULL, NULL                              \
    }

static const ProtobufCFieldDescriptor all_types_fields[] = {
    SCALAR(a_i32, 1, PROTOBUF_C_TYPE_INT32),
    SCALAR(b_s32, 2, PROTOBUF_C_TYPE_SINT32),
    SCALAR(c_sf32, 3, PROTOBUF_C_TYPE_SFIXED32),
    SCALAR(d_u32, 4, PROTOBUF_C_TYPE_UINT32),
    SCALAR(e_fx32, 5, PROTOBUF_C_TYPE_FIXED32),
    SCALAR(f_i64, 6, PROTOBUF_C_TYPE_INT64),
    SCALAR(g_s64, 7, PROTOBUF_C_TYPE_SINT64),
    SCALAR(h_sf64, 8, PROTOBUF_C_TYPE_SFIXED64),
    SCALAR(i_u64, 9, PROTOBUF_C_TYPE_UINT64),
    SCALAR(j_fx64, 10, PROTOBUF_C_TYPE_FIXED64),
    SCALAR(k_float, 11, PROTOBUF_C_TYPE_FLOAT),
    SCALAR(l_double, 12, PROTOBUF_C_TYPE_DOUBLE),
    SCALAR(m_bool, 13, PROTOBUF_C_TYPE_BOOL),
    REPEATED(n_ints, 14, PROTOBUF_C_TYPE_INT32, NULL),
    REPEATED(o_strings, 15, PROTOBUF_C_TYPE_STRING, NULL),
    REPEATED(p_bytes, 16, PROTOBUF_C_TYPE_BYTES, NULL),
    REPEATED(q_stocks, 17, PROTOBUF_C_TYPE_ENUM, &passerelle__stock__descriptor),
    REPEATED(r_units, 18, PROTOBUF_C_TYPE_MESSAGE, &passerelle__unit__descriptor),
    {"s_name", 19, PROTOBUF_C_LABEL_OPTIONAL, PROTOBUF_C_TYPE_STRING,
     offsetof(all_types_t, pick_case), offsetof(all_types_t, s_name), NULL, NULL,
     PROTOBUF_C_FIELD_FLAG_ONEOF, 0, NULL, NULL},
    {"t_number", 20, PROTOBUF_C_LABEL_OPTIONAL, PROTOBUF_C_TYPE_INT32,
     offsetof(all_types_t, pick_case), offsetof(all_types_t, t_number), NULL, NULL,
     PROTOBUF_C_FIELD_FLAG_ONEOF, 0, NULL, NULL},
};
/* The names above are in alphabetical order, as the lookup by name needs. */
static const unsigned all_types_by_name[] = {0,  1,  2,  3,  4,  5,  6,  7,  8,  9,
                                             10, 11, 12, 13, 14, 15, 16, 17, 18, 19};
static const ProtobufCIntRange all_types_ranges[] = {{1, 0}, {0, 20}};
static const ProtobufCMessageDescriptor all_types_descriptor = {
    PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC,
    "test.AllTypes",
    "AllTypes",
    "AllTypes",
    "test",
    sizeof(all_types_t),
    20,
    all_types_fields,
    all_types_by_name,
    1,
    all_types_ranges,
    all_types_init,
    NULL,
    NULL,
    NULL};

static void all_types_init(ProtobufCMessage *msg)
{
    memset(msg, 0, sizeof(all_types_t));
    msg->descriptor = &all_types_descriptor;
}

/* --------------------------------------------------------------------------
 * Helpers
 * -------------------------------------------------------------------------- */

static json_t *parse(const char *text)
{
    json_error_t error;
    json_t *json = json_loads(text, JSON_ALLOW_NUL, &error);
    if (!json)
        fail_msg("bad test JSON %s: %s", text, error.text);
    return json;
}

static ProtobufCMessage *from_text(const ProtobufCMessageDescriptor *desc, const char *text)
{
    json_t *json = parse(text);
    char err[256], field[128];
    ProtobufCMessage *msg = pbjson_to_message(desc, json, err, sizeof err, field, sizeof field);
    json_decref(json);
    if (!msg)
        fail_msg("%s refused: %s (field %s)", text, err, field);
    return msg;
}

/* Asserts that text is refused with an error on expected_field, and that
 * the message names the field. */
static void assert_refused(const ProtobufCMessageDescriptor *desc, const char *text,
                           const char *expected_field)
{
    json_t *json = parse(text);
    char err[256] = "untouched", field[128] = "untouched";
    ProtobufCMessage *msg = pbjson_to_message(desc, json, err, sizeof err, field, sizeof field);
    json_decref(json);
    if (msg) {
        protobuf_c_message_free_unpacked(msg, NULL);
        fail_msg("%s was accepted", text);
    }
    if (strcmp(field, expected_field) != 0)
        fail_msg("%s: field \"%s\", expected \"%s\" (%s)", text, field, expected_field, err);
    assert_non_null(strstr(err, expected_field));
    assert_true(strlen(err) > strlen(expected_field));
}

static char *dump(const json_t *json)
{
    return json_dumps(json, JSON_COMPACT | JSON_SORT_KEYS);
}

/* Packs both and compares bytes: equality of every field, generically. */
static void assert_same_message(const ProtobufCMessage *a, const ProtobufCMessage *b)
{
    size_t len_a = protobuf_c_message_get_packed_size(a);
    size_t len_b = protobuf_c_message_get_packed_size(b);
    assert_int_equal(len_a, len_b);
    uint8_t *buf_a = malloc(len_a + 1), *buf_b = malloc(len_b + 1);
    protobuf_c_message_pack(a, buf_a);
    protobuf_c_message_pack(b, buf_b);
    assert_memory_equal(buf_a, buf_b, len_a);
    free(buf_a);
    free(buf_b);
}

/* message -> JSON -> message, which must equal the original; returns the
 * JSON (caller decrefs). */
static json_t *round_trip(const ProtobufCMessage *msg)
{
    json_t *json = pbjson_from_message(msg);
    assert_non_null(json);
    assert_true(json_is_object(json));
    char err[256] = "", field[64] = "";
    ProtobufCMessage *back =
        pbjson_to_message(msg->descriptor, json, err, sizeof err, field, sizeof field);
    if (!back)
        fail_msg("round trip refused: %s", err);
    assert_same_message(msg, back);
    protobuf_c_message_free_unpacked(back, NULL);
    return json;
}

static void fill_unit(Passerelle__Unit *unit, const char *id)
{
    unit->id = (char *)id;
    unit->external_ref = "ANAH-2026-0042";
    unit->address = "12 rue d'Italie";
    unit->commune_insee = "13055";
    unit->commune_name = "Marseille";
    unit->arrondissement_insee = "13206";
    unit->territory = "CT1";
    unit->has_stock = 1;
    unit->stock = PASSERELLE__STOCK__STOCK_PRIVATE;
    unit->has_typology = 1;
    unit->typology = PASSERELLE__TYPOLOGY__TYPOLOGY_T3;
    unit->has_surface_m2 = 1;
    unit->surface_m2 = 61.25;
    unit->has_adapted_disability = 1;
    unit->adapted_disability = 0;
    unit->has_energy_class = 1;
    unit->energy_class = PASSERELLE__ENERGY_CLASS__ENERGY_D;
    unit->has_in_qpv = 1;
    unit->in_qpv = 1;
    unit->has_convention_state = 1;
    unit->convention_state = PASSERELLE__CONVENTION_STATE__CONVENTION_ENVISAGED;
    unit->created_at = "2026-11-29T10:00:00.123Z";
    unit->has_version = 1;
    unit->version = 3;
}

/* --------------------------------------------------------------------------
 * Round trips
 * -------------------------------------------------------------------------- */

static void test_unit_round_trip(void **state)
{
    (void)state;
    Passerelle__Unit unit = PASSERELLE__UNIT__INIT;
    fill_unit(&unit, "U01JDV0000000000000000000A");
    unit.address = "Place de l'Église, 13014 « Marseille »";
    json_t *json = round_trip(&unit.base);
    assert_string_equal(json_string_value(json_object_get(json, "stock")), "PRIVATE");
    assert_string_equal(json_string_value(json_object_get(json, "typology")), "T3");
    assert_string_equal(json_string_value(json_object_get(json, "energy_class")), "D");
    assert_string_equal(json_string_value(json_object_get(json, "convention_state")), "ENVISAGED");
    assert_true(json_is_real(json_object_get(json, "surface_m2")));
    assert_true(json_real_value(json_object_get(json, "surface_m2")) == 61.25);
    assert_true(json_is_false(json_object_get(json, "adapted_disability")));
    assert_true(json_is_true(json_object_get(json, "in_qpv")));
    assert_int_equal(json_integer_value(json_object_get(json, "version")), 3);
    assert_string_equal(json_string_value(json_object_get(json, "address")), unit.address);
    /* Unset optional fields are omitted. */
    assert_null(json_object_get(json, "financing"));
    assert_null(json_object_get(json, "landlord"));
    assert_null(json_object_get(json, "programme_id"));
    assert_null(json_object_get(json, "updated_at"));
    assert_int_equal(json_object_size(json), 16);
    json_decref(json);

    Passerelle__Unit empty = PASSERELLE__UNIT__INIT;
    json = round_trip(&empty.base);
    assert_int_equal(json_object_size(json), 0);
    json_decref(json);
}

static void test_convention_with_nested_unit(void **state)
{
    (void)state;
    Passerelle__Unit unit = PASSERELLE__UNIT__INIT;
    fill_unit(&unit, "U01JDV0000000000000000000B");
    Passerelle__Convention conv = PASSERELLE__CONVENTION__INIT;
    conv.id = "C01JDV0000000000000000000C";
    conv.unit_id = unit.id;
    conv.has_level = 1;
    conv.level = PASSERELLE__CONVENTION_LEVEL__LEVEL_LOC2;
    conv.has_with_works = 1;
    conv.with_works = 1;
    conv.has_intermediation = 1;
    conv.intermediation = PASSERELLE__INTERMEDIATION__INTERMEDIATION_MANAGEMENT_MANDATE;
    conv.has_rent_ceiling_eur_m2 = 1;
    conv.rent_ceiling_eur_m2 = 10.07;
    conv.has_state = 1;
    conv.state = PASSERELLE__CONVENTION_STATE__CONVENTION_SIGNED;
    conv.envisaged_on = "2026-11-29";
    conv.signed_on = "2026-12-15";
    conv.end_date = "2035-12-15";
    conv.unit = &unit;
    json_t *json = round_trip(&conv.base);
    assert_string_equal(json_string_value(json_object_get(json, "intermediation")),
                        "MANAGEMENT_MANDATE");
    assert_string_equal(json_string_value(json_object_get(json, "level")), "LOC2");
    json_t *nested = json_object_get(json, "unit");
    assert_true(json_is_object(nested));
    assert_string_equal(json_string_value(json_object_get(nested, "commune_insee")), "13055");
    json_decref(json);

    Passerelle__Convention *back = (Passerelle__Convention *)from_text(
        &passerelle__convention__descriptor,
        "{\"id\":\"C1\",\"unit\":{\"surface_m2\":\"45.5\",\"stock\":\"private\"},\"state\":3}");
    assert_string_equal(back->id, "C1");
    assert_non_null(back->unit);
    assert_true(back->unit->has_surface_m2);
    assert_true(back->unit->surface_m2 == 45.5);
    assert_int_equal(back->unit->stock, PASSERELLE__STOCK__STOCK_PRIVATE);
    assert_true(back->has_state);
    assert_int_equal(back->state, PASSERELLE__CONVENTION_STATE__CONVENTION_IN_FORCE);
    assert_false(back->has_level);
    protobuf_c_message_free_unpacked(&back->base, NULL);
}

static void test_unit_list_repeated_messages(void **state)
{
    (void)state;
    Passerelle__Unit units[3] = {PASSERELLE__UNIT__INIT, PASSERELLE__UNIT__INIT,
                                 PASSERELLE__UNIT__INIT};
    Passerelle__Unit *pointers[3];
    fill_unit(&units[0], "U1");
    fill_unit(&units[1], "U2");
    units[2].id = "U3"; /* sparse */
    for (int i = 0; i < 3; i++)
        pointers[i] = &units[i];
    Passerelle__UnitList list = PASSERELLE__UNIT_LIST__INIT;
    list.n_units = 3;
    list.units = pointers;
    list.next_page_token = "U3";
    json_t *json = round_trip(&list.base);
    json_t *array = json_object_get(json, "units");
    assert_true(json_is_array(array));
    assert_int_equal(json_array_size(array), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(array, 2), "id")), "U3");
    assert_int_equal(json_object_size(json_array_get(array, 2)), 1);
    json_decref(json);

    /* An empty list is omitted, and [] or null read back as empty. */
    Passerelle__UnitList empty = PASSERELLE__UNIT_LIST__INIT;
    json = pbjson_from_message(&empty.base);
    assert_int_equal(json_object_size(json), 0);
    json_decref(json);
    Passerelle__UnitList *back = (Passerelle__UnitList *)from_text(
        &passerelle__unit_list__descriptor, "{\"units\":[],\"next_page_token\":null}");
    assert_int_equal(back->n_units, 0);
    assert_null(back->units);
    assert_null(back->next_page_token);
    protobuf_c_message_free_unpacked(&back->base, NULL);
}

static void test_event_bytes(void **state)
{
    (void)state;
    uint8_t all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (uint8_t)i;
    Passerelle__Event event = PASSERELLE__EVENT__INIT;
    event.id = "E1";
    event.type = "convention.envisaged";
    event.has_data = 1;
    event.data.data = all;
    event.data.len = sizeof all;
    json_t *json = round_trip(&event.base);
    json_decref(json);

    event.data.data = (uint8_t *)"hello";
    event.data.len = 5;
    json = round_trip(&event.base);
    assert_string_equal(json_string_value(json_object_get(json, "data")), "aGVsbG8=");
    json_decref(json);

    /* Set but empty stays set. */
    event.data.data = NULL;
    event.data.len = 0;
    json = round_trip(&event.base);
    assert_string_equal(json_string_value(json_object_get(json, "data")), "");
    json_decref(json);

    /* Unpadded and URL-safe base64 are read too. */
    Passerelle__Event *back =
        (Passerelle__Event *)from_text(&passerelle__event__descriptor, "{\"data\":\"-_8\"}");
    assert_true(back->has_data);
    assert_int_equal(back->data.len, 2);
    assert_int_equal(back->data.data[0], 0xfb);
    assert_int_equal(back->data.data[1], 0xff);
    protobuf_c_message_free_unpacked(&back->base, NULL);
    back = (Passerelle__Event *)from_text(&passerelle__event__descriptor,
                                          "{\"data\":\"aGVs\\nbG8=\"}");
    assert_int_equal(back->data.len, 5);
    assert_memory_equal(back->data.data, "hello", 5);
    protobuf_c_message_free_unpacked(&back->base, NULL);
}

static void test_all_types_round_trip(void **state)
{
    (void)state;
    all_types_t msg;
    all_types_init(&msg.base);
    msg.has_a_i32 = msg.has_b_s32 = msg.has_c_sf32 = msg.has_d_u32 = msg.has_e_fx32 = 1;
    msg.a_i32 = INT32_MIN;
    msg.b_s32 = INT32_MAX;
    msg.c_sf32 = -7;
    msg.d_u32 = UINT32_MAX;
    msg.e_fx32 = 7;
    msg.has_f_i64 = msg.has_g_s64 = msg.has_h_sf64 = msg.has_i_u64 = msg.has_j_fx64 = 1;
    msg.f_i64 = INT64_MIN;
    msg.g_s64 = INT64_MAX;
    msg.h_sf64 = -1;
    msg.i_u64 = UINT64_MAX;
    msg.j_fx64 = (uint64_t)INT64_MAX;
    msg.has_k_float = msg.has_l_double = msg.has_m_bool = 1;
    msg.k_float = 1.5f;
    msg.l_double = -0.5;
    msg.m_bool = 1;
    int32_t ints[] = {1, -2, 3};
    char *strings[] = {"a", "", "ç"};
    ProtobufCBinaryData bytes[] = {{2, (uint8_t *)"\0\1"}, {0, NULL}};
    Passerelle__Stock stocks[] = {PASSERELLE__STOCK__STOCK_SOCIAL,
                                  PASSERELLE__STOCK__STOCK_PRIVATE};
    Passerelle__Unit unit = PASSERELLE__UNIT__INIT;
    unit.id = "U9";
    Passerelle__Unit *units[] = {&unit};
    msg.n_n_ints = 3;
    msg.n_ints = ints;
    msg.n_o_strings = 3;
    msg.o_strings = strings;
    msg.n_p_bytes = 2;
    msg.p_bytes = bytes;
    msg.n_q_stocks = 2;
    msg.q_stocks = stocks;
    msg.n_r_units = 1;
    msg.r_units = units;
    msg.pick_case = 19;
    msg.s_name = "chosen";

    json_t *json = pbjson_from_message(&msg.base);
    char *text = dump(json);
    assert_string_equal(
        text, "{\"a_i32\":-2147483648,\"b_s32\":2147483647,\"c_sf32\":-7,\"d_u32\":4294967295,"
              "\"e_fx32\":7,\"f_i64\":-9223372036854775808,\"g_s64\":9223372036854775807,"
              "\"h_sf64\":-1,\"i_u64\":\"18446744073709551615\",\"j_fx64\":9223372036854775807,"
              "\"k_float\":1.5,\"l_double\":-0.5,\"m_bool\":true,\"n_ints\":[1,-2,3],"
              "\"o_strings\":[\"a\",\"\",\"ç\"],\"p_bytes\":[\"AAE=\",\"\"],"
              "\"q_stocks\":[\"SOCIAL\",\"PRIVATE\"],\"r_units\":[{\"id\":\"U9\"}],"
              "\"s_name\":\"chosen\"}");
    free(text);

    char err[128], field[64];
    all_types_t *back = (all_types_t *)pbjson_to_message(&all_types_descriptor, json, err,
                                                         sizeof err, field, sizeof field);
    json_decref(json);
    if (!back)
        fail_msg("refused: %s", err);
    assert_int_equal(back->a_i32, INT32_MIN);
    assert_int_equal(back->b_s32, INT32_MAX);
    assert_int_equal(back->c_sf32, -7);
    assert_int_equal(back->d_u32, UINT32_MAX);
    assert_true(back->f_i64 == INT64_MIN && back->g_s64 == INT64_MAX && back->h_sf64 == -1);
    assert_true(back->i_u64 == UINT64_MAX && back->j_fx64 == (uint64_t)INT64_MAX);
    assert_true(back->has_k_float && back->k_float == 1.5f);
    assert_true(back->has_l_double && back->l_double == -0.5);
    assert_true(back->has_m_bool && back->m_bool);
    assert_int_equal(back->n_n_ints, 3);
    assert_memory_equal(back->n_ints, ints, sizeof ints);
    assert_int_equal(back->n_o_strings, 3);
    assert_string_equal(back->o_strings[2], "ç");
    assert_int_equal(back->n_p_bytes, 2);
    assert_int_equal(back->p_bytes[0].len, 2);
    assert_memory_equal(back->p_bytes[0].data, "\0\1", 2);
    assert_int_equal(back->p_bytes[1].len, 0);
    assert_int_equal(back->n_q_stocks, 2);
    assert_int_equal(back->q_stocks[0], PASSERELLE__STOCK__STOCK_SOCIAL);
    assert_int_equal(back->n_r_units, 1);
    assert_string_equal(back->r_units[0]->id, "U9");
    assert_int_equal(back->pick_case, 19);
    assert_string_equal(back->s_name, "chosen");
    protobuf_c_message_free_unpacked(&back->base, NULL);

    /* The other member of the oneof. */
    back = (all_types_t *)from_text(&all_types_descriptor, "{\"t_number\":\"-12\"}");
    assert_int_equal(back->pick_case, 20);
    assert_int_equal(back->t_number, -12);
    json = pbjson_from_message(&back->base);
    text = dump(json);
    assert_string_equal(text, "{\"t_number\":-12}");
    free(text);
    json_decref(json);
    protobuf_c_message_free_unpacked(&back->base, NULL);
}

/* --------------------------------------------------------------------------
 * Enums and lenient scalars
 * -------------------------------------------------------------------------- */

static void test_enum_names(void **state)
{
    (void)state;
    assert_string_equal(pbjson_enum_name(&passerelle__stock__descriptor, 1), "PRIVATE");
    assert_string_equal(pbjson_enum_name(&passerelle__stock__descriptor, 0), "UNSPECIFIED");
    assert_string_equal(pbjson_enum_name(&passerelle__typology__descriptor, 7), "T7");
    assert_string_equal(pbjson_enum_name(&passerelle__energy_class__descriptor, 1), "A");
    assert_string_equal(pbjson_enum_name(&passerelle__status__descriptor, 3), "INVALID_ARGUMENT");
    assert_string_equal(pbjson_enum_name(&passerelle__intermediation__descriptor, 2), "SUBLEASE");
    assert_string_equal(pbjson_enum_name(&passerelle__convention_state__descriptor, 3), "IN_FORCE");
    assert_null(pbjson_enum_name(&passerelle__stock__descriptor, 3));
    assert_null(pbjson_enum_name(&passerelle__stock__descriptor, -1));
    assert_null(pbjson_enum_name(NULL, 1));

    const char *privates[] = {"\"private\"",
                              "\"PRIVATE\"",
                              "\"Private\"",
                              "\"STOCK_PRIVATE\"",
                              "\"stock_private\"",
                              "1",
                              "\"1\"",
                              "\" private \"",
                              "1.0"};
    for (size_t i = 0; i < sizeof privates / sizeof privates[0]; i++) {
        char text[64];
        snprintf(text, sizeof text, "{\"stock\":%s}", privates[i]);
        Passerelle__Unit *unit = (Passerelle__Unit *)from_text(&passerelle__unit__descriptor, text);
        assert_true(unit->has_stock);
        assert_int_equal(unit->stock, PASSERELLE__STOCK__STOCK_PRIVATE);
        protobuf_c_message_free_unpacked(&unit->base, NULL);
    }
    Passerelle__Reply *reply = (Passerelle__Reply *)from_text(
        &passerelle__reply__descriptor, "{\"status\":\"not_found\",\"field\":\"unit\"}");
    assert_int_equal(reply->status, PASSERELLE__STATUS__STATUS_NOT_FOUND);
    protobuf_c_message_free_unpacked(&reply->base, NULL);

    /* A value the enum does not know goes out as its number. */
    Passerelle__Unit unit = PASSERELLE__UNIT__INIT;
    unit.has_stock = 1;
    unit.stock = 42;
    json_t *json = pbjson_from_message(&unit.base);
    assert_int_equal(json_integer_value(json_object_get(json, "stock")), 42);
    json_decref(json);
}

/* By name only, as the CLI's flags and CSV columns give enums. */
static void test_enum_values(void **state)
{
    (void)state;
    const ProtobufCEnumDescriptor *stock = &passerelle__stock__descriptor;
    const char *privates[] = {"private", "PRIVATE", "Private", "STOCK_PRIVATE", "stock_private"};
    for (size_t i = 0; i < sizeof privates / sizeof privates[0]; i++) {
        int value = -1;
        assert_true(pbjson_enum_value(stock, privates[i], &value));
        assert_int_equal(value, PASSERELLE__STOCK__STOCK_PRIVATE);
    }
    int value = -1;
    assert_true(pbjson_enum_value(stock, "unspecified", &value));
    assert_int_equal(value, 0);
    assert_true(pbjson_enum_value(&passerelle__status__descriptor, "not_found", &value));
    assert_int_equal(value, PASSERELLE__STATUS__STATUS_NOT_FOUND);
    /* Neither numbers, nor padding, nor a part of a name; *out untouched. */
    value = -1;
    assert_false(pbjson_enum_value(stock, "1", &value));
    assert_false(pbjson_enum_value(stock, " private", &value));
    assert_false(pbjson_enum_value(stock, "priv", &value));
    assert_false(pbjson_enum_value(stock, "", &value));
    assert_false(pbjson_enum_value(NULL, "private", &value));
    assert_int_equal(value, -1);
}

static void test_lenient_scalars(void **state)
{
    (void)state;
    Passerelle__Unit *unit = (Passerelle__Unit *)from_text(
        &passerelle__unit__descriptor,
        "{\"surface_m2\":\" 45.5 \",\"version\":\"12\",\"adapted_disability\":\"yes\","
        "\"in_qpv\":0,\"commune_insee\":13001,\"typology\":\"t2\"}");
    assert_true(unit->surface_m2 == 45.5);
    assert_true(unit->has_version && unit->version == 12);
    assert_true(unit->has_adapted_disability && unit->adapted_disability);
    assert_true(unit->has_in_qpv && !unit->in_qpv);
    assert_string_equal(unit->commune_insee, "13001");
    assert_int_equal(unit->typology, PASSERELLE__TYPOLOGY__TYPOLOGY_T2);
    protobuf_c_message_free_unpacked(&unit->base, NULL);

    const char *trues[] = {"true", "\"true\"", "\"TRUE\"", "\"yes\"", "\"Yes\"", "\"1\"", "1"};
    const char *falses[] = {"false", "\"false\"", "\"No\"", "\"no\"", "\"0\"", "0"};
    for (size_t i = 0; i < sizeof trues / sizeof trues[0] + sizeof falses / sizeof falses[0]; i++) {
        bool expected = i < sizeof trues / sizeof trues[0];
        const char *value = expected ? trues[i] : falses[i - sizeof trues / sizeof trues[0]];
        char text[64];
        snprintf(text, sizeof text, "{\"in_qpv\":%s}", value);
        unit = (Passerelle__Unit *)from_text(&passerelle__unit__descriptor, text);
        assert_true(unit->has_in_qpv);
        assert_int_equal(unit->in_qpv, expected);
        protobuf_c_message_free_unpacked(&unit->base, NULL);
    }

    unit = (Passerelle__Unit *)from_text(&passerelle__unit__descriptor,
                                         "{\"surface_m2\":45,\"version\":7.0}");
    assert_true(unit->surface_m2 == 45.0);
    assert_true(unit->version == 7);
    protobuf_c_message_free_unpacked(&unit->base, NULL);

    all_types_t *all = (all_types_t *)from_text(
        &all_types_descriptor,
        "{\"a_i32\":\"-2147483648\",\"d_u32\":\"4294967295\",\"f_i64\":\"-9223372036854775808\","
        "\"i_u64\":\"18446744073709551615\",\"k_float\":\"1e-3\",\"l_double\":\"-2.5E3\","
        "\"o_strings\":[\"x\",5],\"q_stocks\":[\"social\",1,\"STOCK_UNSPECIFIED\"]}");
    assert_int_equal(all->a_i32, INT32_MIN);
    assert_int_equal(all->d_u32, UINT32_MAX);
    assert_true(all->f_i64 == INT64_MIN);
    assert_true(all->i_u64 == UINT64_MAX);
    assert_true(all->k_float == 0.001f);
    assert_true(all->l_double == -2500.0);
    assert_string_equal(all->o_strings[1], "5");
    assert_int_equal(all->n_q_stocks, 3);
    assert_int_equal(all->q_stocks[1], PASSERELLE__STOCK__STOCK_PRIVATE);
    assert_int_equal(all->q_stocks[2], PASSERELLE__STOCK__STOCK_UNSPECIFIED);
    protobuf_c_message_free_unpacked(&all->base, NULL);
}

/* Text that is not valid UTF-8 (protobuf-c does not check) still makes
 * valid JSON. */
static void test_invalid_utf8_out(void **state)
{
    (void)state;
    Passerelle__Unit unit = PASSERELLE__UNIT__INIT;
    unit.address = "bad \xFF\xC3 end";
    json_t *json = pbjson_from_message(&unit.base);
    assert_non_null(json);
    assert_string_equal(json_string_value(json_object_get(json, "address")),
                        "bad \xEF\xBF\xBD\xEF\xBF\xBD end");
    json_decref(json);

    /* Non-finite numbers go out as text and are refused on the way in. */
    unit.address = NULL;
    unit.has_surface_m2 = 1;
    unit.surface_m2 = INFINITY;
    json = pbjson_from_message(&unit.base);
    assert_string_equal(json_string_value(json_object_get(json, "surface_m2")), "Infinity");
    char err[128], field[64];
    assert_null(pbjson_to_message(&passerelle__unit__descriptor, json, err, sizeof err, field,
                                  sizeof field));
    assert_string_equal(field, "surface_m2");
    json_decref(json);
    unit.surface_m2 = NAN;
    json = pbjson_from_message(&unit.base);
    assert_string_equal(json_string_value(json_object_get(json, "surface_m2")), "NaN");
    json_decref(json);
    assert_null(pbjson_from_message(NULL));
}

/* --------------------------------------------------------------------------
 * Refusals
 * -------------------------------------------------------------------------- */

static void test_refuses_bad_shapes(void **state)
{
    (void)state;
    const ProtobufCMessageDescriptor *u = &passerelle__unit__descriptor;
    assert_refused(u, "{\"colour\":\"red\"}", "colour");
    assert_refused(u, "{\"id\":\"U1\",\"Stock\":\"private\"}", "Stock");
    assert_refused(&passerelle__convention__descriptor, "{\"unit\":{\"shade\":1}}", "unit.shade");
    assert_refused(&passerelle__convention__descriptor, "{\"unit\":\"U1\"}", "unit");
    assert_refused(&passerelle__convention__descriptor, "{\"unit\":[]}", "unit");
    assert_refused(&passerelle__unit_list__descriptor, "{\"units\":{}}", "units");
    assert_refused(&passerelle__unit_list__descriptor, "{\"units\":[{\"id\":\"a\"},3]}",
                   "units[1]");

    /* Not an object at all: no field to name. */
    const char *not_objects[] = {"[]", "\"unit\"", "3", "null", "true"};
    for (size_t i = 0; i < sizeof not_objects / sizeof not_objects[0]; i++) {
        json_t *json = json_loads(not_objects[i], JSON_DECODE_ANY, NULL);
        char err[128] = "", field[64] = "x";
        assert_null(pbjson_to_message(u, json, err, sizeof err, field, sizeof field));
        assert_string_equal(field, "");
        assert_true(strlen(err) > 0);
        json_decref(json);
    }
    char err[128] = "", field[64] = "x";
    assert_null(pbjson_to_message(u, NULL, err, sizeof err, field, sizeof field));
    assert_null(pbjson_to_message(NULL, NULL, err, sizeof err, field, sizeof field));
}

static void test_refuses_wrong_types(void **state)
{
    (void)state;
    const ProtobufCMessageDescriptor *u = &passerelle__unit__descriptor;
    const char *not_numbers[] = {"true",    "[1]",           "{}",       "\"abc\"",
                                 "\"\"",    "\"45,5\"",      "\"1e\"",   "\"nan\"",
                                 "\"inf\"", "\"-Infinity\"", "\"0x10\"", "\"4 5\""};
    for (size_t i = 0; i < sizeof not_numbers / sizeof not_numbers[0]; i++) {
        char text[64];
        snprintf(text, sizeof text, "{\"id\":\"U1\",\"surface_m2\":%s}", not_numbers[i]);
        assert_refused(u, text, "surface_m2");
    }
    const char *not_bools[] = {"\"maybe\"", "2", "-1", "1.5", "\"\"", "[]", "{}", "\"on\""};
    for (size_t i = 0; i < sizeof not_bools / sizeof not_bools[0]; i++) {
        char text[64];
        snprintf(text, sizeof text, "{\"in_qpv\":%s}", not_bools[i]);
        assert_refused(u, text, "in_qpv");
    }
    const char *not_strings[] = {"12.5", "true", "{}", "[\"a\"]", "\"a\\u0000b\""};
    for (size_t i = 0; i < sizeof not_strings / sizeof not_strings[0]; i++) {
        char text[64];
        snprintf(text, sizeof text, "{\"id\":\"U1\",\"address\":%s}", not_strings[i]);
        assert_refused(u, text, "address");
    }
    const char *not_integers[] = {"1.5", "\"1.5\"", "\"12abc\"", "true", "[]", "\"\"", "\"+-1\""};
    for (size_t i = 0; i < sizeof not_integers / sizeof not_integers[0]; i++) {
        char text[64];
        snprintf(text, sizeof text, "{\"version\":%s}", not_integers[i]);
        assert_refused(u, text, "version");
        snprintf(text, sizeof text, "{\"a_i32\":%s}", not_integers[i]);
        assert_refused(&all_types_descriptor, text, "a_i32");
    }
    assert_refused(&passerelle__event__descriptor, "{\"data\":\"not base64!\"}", "data");
    assert_refused(&passerelle__event__descriptor, "{\"data\":\"aGVsb\"}", "data"); /* 5 chars */
    assert_refused(&passerelle__event__descriptor, "{\"data\":5}", "data");
    assert_refused(&passerelle__event__descriptor, "{\"id\":\"E\",\"data\":[\"aGk=\"]}", "data");
}

static void test_refuses_out_of_range(void **state)
{
    (void)state;
    const ProtobufCMessageDescriptor *a = &all_types_descriptor;
    assert_refused(a, "{\"a_i32\":2147483648}", "a_i32");
    assert_refused(a, "{\"a_i32\":-2147483649}", "a_i32");
    assert_refused(a, "{\"b_s32\":\"2147483648\"}", "b_s32");
    assert_refused(a, "{\"c_sf32\":1e10}", "c_sf32");
    assert_refused(a, "{\"d_u32\":-1}", "d_u32");
    assert_refused(a, "{\"d_u32\":\"-1\"}", "d_u32");
    assert_refused(a, "{\"e_fx32\":4294967296}", "e_fx32");
    assert_refused(a, "{\"f_i64\":\"9223372036854775808\"}", "f_i64");
    assert_refused(a, "{\"g_s64\":\"-9223372036854775809\"}", "g_s64");
    assert_refused(a, "{\"h_sf64\":1e19}", "h_sf64");
    assert_refused(a, "{\"i_u64\":\"18446744073709551616\"}", "i_u64");
    assert_refused(a, "{\"i_u64\":-1}", "i_u64");
    assert_refused(a, "{\"k_float\":1e39}", "k_float");
    assert_refused(a, "{\"k_float\":\"-1e39\"}", "k_float");
    assert_refused(a, "{\"l_double\":\"1e309\"}", "l_double");
    assert_refused(&passerelle__event_list_request__descriptor, "{\"limit\":-1}", "limit");
    assert_refused(&passerelle__event_list_request__descriptor, "{\"limit\":4294967296}", "limit");
    assert_refused(&passerelle__unit__descriptor, "{\"version\":-1}", "version");
    assert_refused(&passerelle__health_reply__descriptor, "{\"uptime_s\":\"-5\"}", "uptime_s");
}

static void test_refuses_unknown_enums(void **state)
{
    (void)state;
    const ProtobufCMessageDescriptor *u = &passerelle__unit__descriptor;
    const char *bad[] = {"\"public\"", "\"STOCK_\"", "\"STOCK\"",       "\"\"",
                         "3",          "-1",         "\"3\"",           "1.5",
                         "true",       "{}",         "\"TYPOLOGY_T1\"", "2147483648"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[64];
        snprintf(text, sizeof text, "{\"stock\":%s}", bad[i]);
        assert_refused(u, text, "stock");
    }
    char err[128], field[64];
    json_t *json = parse("{\"stock\":\"public\"}");
    assert_null(pbjson_to_message(u, json, err, sizeof err, field, sizeof field));
    assert_non_null(strstr(err, "Stock"));
    json_decref(json);
}

/* Errors after some fields were allocated (strings, nested messages,
 * repeated elements) must free them: valgrind checks this test. */
static void test_refusals_free_partial_work(void **state)
{
    (void)state;
    assert_refused(&passerelle__convention__descriptor,
                   "{\"id\":\"C1\",\"envisaged_on\":\"2026-01-01\",\"unit\":{\"id\":\"U1\","
                   "\"address\":\"somewhere\",\"surface_m2\":\"big\"}}",
                   "unit.surface_m2");
    assert_refused(&passerelle__convention__descriptor,
                   "{\"unit\":{\"id\":\"U1\",\"stock\":\"private\"},\"level\":\"LOC9\"}", "level");
    assert_refused(&passerelle__unit_list__descriptor,
                   "{\"next_page_token\":\"x\",\"units\":[{\"id\":\"U1\",\"address\":\"a\"},"
                   "{\"id\":\"U2\"},{\"id\":\"U3\",\"typology\":\"T9\"}]}",
                   "units[2].typology");
    assert_refused(&passerelle__event__descriptor,
                   "{\"id\":\"E1\",\"data\":\"aGVsbG8=\",\"source\":false}", "source");
    assert_refused(&all_types_descriptor, "{\"o_strings\":[\"a\",\"b\",true]}", "o_strings[2]");
    assert_refused(&all_types_descriptor, "{\"p_bytes\":[\"aGk=\",\"!!\"]}", "p_bytes[1]");
    assert_refused(&all_types_descriptor, "{\"n_ints\":[1,\"x\"]}", "n_ints[1]");
    assert_refused(&all_types_descriptor, "{\"r_units\":[{\"id\":\"a\"},{\"version\":-1}]}",
                   "r_units[1].version");
    assert_refused(&all_types_descriptor, "{\"s_name\":\"a\",\"t_number\":1}", "t_number");
    assert_refused(&all_types_descriptor, "{\"n_ints\":5}", "n_ints");
}

static void test_error_buffers(void **state)
{
    (void)state;
    json_t *json = parse("{\"unit\":{\"surface_m2\":\"big\"}}");
    char err[8], field[6];
    memset(err, 'x', sizeof err);
    memset(field, 'x', sizeof field);
    assert_null(pbjson_to_message(&passerelle__convention__descriptor, json, err, sizeof err, field,
                                  sizeof field));
    assert_int_equal(strlen(err), sizeof err - 1);
    assert_string_equal(field, "unit.");
    /* NULL buffers are allowed. */
    assert_null(pbjson_to_message(&passerelle__convention__descriptor, json, NULL, 0, NULL, 0));
    char full[128], full_field[64];
    assert_null(pbjson_to_message(&passerelle__convention__descriptor, json, full, sizeof full,
                                  full_field, sizeof full_field));
    assert_string_equal(full_field, "unit.surface_m2");
    assert_string_equal(full, "unit.surface_m2: expected a number");
    json_decref(json);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unit_round_trip),
        cmocka_unit_test(test_convention_with_nested_unit),
        cmocka_unit_test(test_unit_list_repeated_messages),
        cmocka_unit_test(test_event_bytes),
        cmocka_unit_test(test_all_types_round_trip),
        cmocka_unit_test(test_enum_names),
        cmocka_unit_test(test_enum_values),
        cmocka_unit_test(test_lenient_scalars),
        cmocka_unit_test(test_invalid_utf8_out),
        cmocka_unit_test(test_refuses_bad_shapes),
        cmocka_unit_test(test_refuses_wrong_types),
        cmocka_unit_test(test_refuses_out_of_range),
        cmocka_unit_test(test_refuses_unknown_enums),
        cmocka_unit_test(test_refusals_free_partial_work),
        cmocka_unit_test(test_error_buffers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
