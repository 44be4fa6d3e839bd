/* Protobuf <-> JSON, generic over protobuf-c descriptors; see pbjson.h.
 *
 * Every field is reached through its descriptor (offset, quantifier_offset,
 * label, type), so a message added to the .proto files needs no code here.
 * The JSON -> message direction allocates with malloc only, field by
 * field, and keeps the message consistent after each step: on any error
 * protobuf_c_message_free_unpacked() releases exactly what was built. */
#include "pbjson.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h> /* macros only: the library does not link libm */
#include <sodium.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Deeper JSON than this is refused rather than recursed into: no message
 * of ours nests more than a few levels. */
#define PBJSON_MAX_DEPTH 32
#define PBJSON_PATH_MAX  256

#define FIELD_PTR(msg, offset)  ((void *)((char *)(msg) + (offset)))
#define FIELD_CPTR(msg, offset) ((const void *)((const char *)(msg) + (offset)))

/* --------------------------------------------------------------------------
 * Enums
 * -------------------------------------------------------------------------- */

/* Length of the prefix all value names share, cut after its last '_' so
 * that "STOCK_UNSPECIFIED", "STOCK_PRIVATE" share "STOCK_". O(values x
 * name length) per call: enums are small, and a cache would need a lock. */
static size_t enum_prefix_length(const ProtobufCEnumDescriptor *desc)
{
    if (desc->n_values == 0)
        return 0;
    const char *first = desc->values[0].name;
    size_t common = strlen(first);
    for (unsigned i = 1; i < desc->n_values; i++) {
        const char *name = desc->values[i].name;
        size_t k = 0;
        while (k < common && name[k] == first[k])
            k++;
        common = k;
    }
    /* Never strip a whole name (a one-value enum shares all of it). */
    for (unsigned i = 0; i < desc->n_values; i++)
        if (strlen(desc->values[i].name) <= common)
            common = strlen(desc->values[i].name) - 1;
    while (common > 0 && first[common - 1] != '_')
        common--;
    return common;
}

const char *pbjson_enum_name(const ProtobufCEnumDescriptor *desc, int value)
{
    if (!desc)
        return NULL;
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(desc, value);
    if (!v)
        return NULL;
    return v->name + enum_prefix_length(desc);
}

bool pbjson_enum_value(const ProtobufCEnumDescriptor *desc, const char *text, int *out)
{
    if (!desc || !text)
        return false;
    size_t prefix = enum_prefix_length(desc);
    for (unsigned i = 0; i < desc->n_values; i++) {
        const char *name = desc->values[i].name;
        if (strcasecmp(text, name) == 0 || strcasecmp(text, name + prefix) == 0) {
            *out = desc->values[i].value;
            return true;
        }
    }
    return false;
}

/* --------------------------------------------------------------------------
 * Message -> JSON
 * -------------------------------------------------------------------------- */

/* Replaces invalid UTF-8 with U+FFFD, for strings that protobuf-c did not
 * validate on unpack. Caller frees. */
static char *utf8_sanitized(const char *s)
{
    size_t len = strlen(s);
    char *out = malloc(len * 3 + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned char c = *p;
        size_t seq = 0;
        unsigned int cp = 0, min = 0;
        if (c < 0x80)
            seq = 1;
        else if (c >= 0xC2 && c <= 0xDF)
            seq = 2, cp = c & 0x1F, min = 0x80;
        else if (c >= 0xE0 && c <= 0xEF)
            seq = 3, cp = c & 0x0F, min = 0x800;
        else if (c >= 0xF0 && c <= 0xF4)
            seq = 4, cp = c & 0x07, min = 0x10000;
        bool valid = seq > 0;
        for (size_t i = 1; valid && i < seq; i++) {
            if ((p[i] & 0xC0) != 0x80)
                valid = false;
            else
                cp = (cp << 6) | (p[i] & 0x3F);
        }
        if (valid && seq > 1 && (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)))
            valid = false;
        if (valid) {
            memcpy(out + o, p, seq);
            o += seq;
            p += seq;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            p++;
        }
    }
    out[o] = '\0';
    return out;
}

static json_t *json_from_string(const char *s)
{
    json_t *value = json_string(s);
    if (value)
        return value;
    char *clean = utf8_sanitized(s);
    if (!clean)
        return NULL;
    value = json_string(clean);
    free(clean);
    return value;
}

static json_t *json_from_bytes(const ProtobufCBinaryData *data)
{
    if (data->len > (SIZE_MAX - 1) / 4 * 3 - 3)
        return NULL;
    size_t b64_size = sodium_base64_encoded_len(data->len, sodium_base64_VARIANT_ORIGINAL);
    char *b64 = malloc(b64_size);
    if (!b64)
        return NULL;
    sodium_bin2base64(b64, b64_size, data->data, data->len, sodium_base64_VARIANT_ORIGINAL);
    json_t *value = json_string(b64);
    free(b64);
    return value;
}

/* JSON has no NaN or infinities: they go out as the strings proto3's JSON
 * mapping uses, and are refused on the way back in. */
static json_t *json_from_double(double d)
{
    if (isnan(d))
        return json_string("NaN");
    if (isinf(d))
        return json_string(d > 0 ? "Infinity" : "-Infinity");
    return json_real(d);
}

static json_t *json_from_message_at(const ProtobufCMessage *msg, int depth);

/* One value of a field; member points at the value (an element of a
 * repeated field, or the field itself). */
static json_t *json_from_value(const ProtobufCFieldDescriptor *f, const void *member, int depth)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        return json_integer(*(const int32_t *)member);
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        return json_integer(*(const uint32_t *)member);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        return json_integer(*(const int64_t *)member);
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: {
        uint64_t u = *(const uint64_t *)member;
        if (u <= (uint64_t)INT64_MAX)
            return json_integer((json_int_t)u);
        /* Beyond what a JSON integer holds in jansson: decimal text,
         * which the reverse direction accepts. */
        char text[24];
        snprintf(text, sizeof text, "%" PRIu64, u);
        return json_string(text);
    }
    case PROTOBUF_C_TYPE_FLOAT:
        return json_from_double(*(const float *)member);
    case PROTOBUF_C_TYPE_DOUBLE:
        return json_from_double(*(const double *)member);
    case PROTOBUF_C_TYPE_BOOL:
        return json_boolean(*(const protobuf_c_boolean *)member);
    case PROTOBUF_C_TYPE_ENUM: {
        int value = *(const int *)member;
        const char *name = pbjson_enum_name(f->descriptor, value);
        return name ? json_string(name) : json_integer(value);
    }
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)member;
        return json_from_string(s ? s : "");
    }
    case PROTOBUF_C_TYPE_BYTES:
        return json_from_bytes(member);
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *sub = *(ProtobufCMessage *const *)member;
        return sub ? json_from_message_at(sub, depth + 1) : json_object();
    }
    }
    return NULL;
}

static size_t field_element_size(const ProtobufCFieldDescriptor *f)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_ENUM:
        return 4;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return 8;
    case PROTOBUF_C_TYPE_FLOAT:
        return sizeof(float);
    case PROTOBUF_C_TYPE_DOUBLE:
        return sizeof(double);
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(ProtobufCMessage *);
    }
    return 0;
}

/* True for fields whose presence protobuf-c keeps in a has_ flag: proto2
 * optional scalars and bytes. Strings and messages use NULL instead. */
static bool field_has_flag(const ProtobufCFieldDescriptor *f)
{
    return f->label == PROTOBUF_C_LABEL_OPTIONAL && !(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
           f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_MESSAGE;
}

static bool value_is_zero(const ProtobufCFieldDescriptor *f, const void *member)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)member;
        return !s || !*s;
    }
    case PROTOBUF_C_TYPE_BYTES:
        return ((const ProtobufCBinaryData *)member)->len == 0;
    case PROTOBUF_C_TYPE_MESSAGE:
        return *(ProtobufCMessage *const *)member == NULL;
    default: {
        const unsigned char *bytes = member;
        for (size_t i = 0; i < field_element_size(f); i++)
            if (bytes[i])
                return false;
        return true;
    }
    }
}

/* Whether a singular field is set, whatever the way its presence is kept. */
static bool field_is_set(const ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f)
{
    const void *member = FIELD_CPTR(msg, f->offset);
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        return *(const uint32_t *)FIELD_CPTR(msg, f->quantifier_offset) == f->id;
    switch (f->label) {
    case PROTOBUF_C_LABEL_REQUIRED:
        return true;
    case PROTOBUF_C_LABEL_NONE: /* proto3 without presence */
        return !value_is_zero(f, member);
    default:
        break;
    }
    if (field_has_flag(f))
        return *(const protobuf_c_boolean *)FIELD_CPTR(msg, f->quantifier_offset) != 0;
    if (f->type == PROTOBUF_C_TYPE_STRING) {
        const char *s = *(char *const *)member;
        return s && s != (const char *)f->default_value;
    }
    return *(ProtobufCMessage *const *)member != NULL;
}

static json_t *json_from_message_at(const ProtobufCMessage *msg, int depth)
{
    json_t *obj = json_object();
    if (!obj || depth > PBJSON_MAX_DEPTH)
        return obj;
    const ProtobufCMessageDescriptor *desc = msg->descriptor;
    for (unsigned i = 0; i < desc->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &desc->fields[i];
        json_t *value;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)FIELD_CPTR(msg, f->quantifier_offset);
            if (n == 0)
                continue;
            const char *items = *(char *const *)FIELD_CPTR(msg, f->offset);
            value = json_array();
            size_t size = field_element_size(f);
            for (size_t k = 0; value && k < n; k++)
                if (json_array_append_new(value, json_from_value(f, items + k * size, depth))) {
                    json_decref(value);
                    value = NULL;
                }
        } else {
            if (!field_is_set(msg, f))
                continue;
            value = json_from_value(f, FIELD_CPTR(msg, f->offset), depth);
        }
        if (json_object_set_new(obj, f->name, value)) {
            json_decref(obj);
            return NULL;
        }
    }
    return obj;
}

json_t *pbjson_from_message(const ProtobufCMessage *msg)
{
    if (!msg || !msg->descriptor)
        return NULL;
    return json_from_message_at(msg, 0);
}

/* --------------------------------------------------------------------------
 * JSON -> message
 * -------------------------------------------------------------------------- */

typedef struct {
    char *err;
    size_t err_size;
    char *field;
    size_t field_size;
} pbjson_error_t;

static void set_error(pbjson_error_t *e, const char *path, const char *what)
{
    if (e->err && e->err_size)
        snprintf(e->err, e->err_size, "%s%s%s", path, *path ? ": " : "", what);
    if (e->field && e->field_size)
        snprintf(e->field, e->field_size, "%s", path);
}

/* Text of a scalar given as a JSON string, without surrounding spaces, in
 * buf; false if it does not fit (no number is that long). */
static bool scalar_text(const json_t *value, char *buf, size_t buf_size)
{
    const char *s = json_string_value(value);
    size_t len = json_string_length(value);
    if (memchr(s, '\0', len))
        return false;
    while (len && isspace((unsigned char)*s)) {
        s++;
        len--;
    }
    while (len && isspace((unsigned char)s[len - 1]))
        len--;
    if (len == 0 || len >= buf_size)
        return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    return true;
}

typedef enum { PARSE_OK, PARSE_TYPE, PARSE_RANGE } parse_result_t;

/* Signed integers: JSON integers, integral reals, decimal strings. */
static parse_result_t parse_signed(const json_t *value, int64_t min, int64_t max, int64_t *out)
{
    int64_t v;
    if (json_is_integer(value))
        v = json_integer_value(value);
    else if (json_is_real(value)) {
        /* Range first: the cast that tests for a fraction is only
         * defined in range. */
        double d = json_real_value(value);
        if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0))
            return PARSE_RANGE;
        v = (int64_t)d;
        if ((double)v != d)
            return PARSE_TYPE;
    } else if (json_is_string(value)) {
        char text[32], *end;
        if (!scalar_text(value, text, sizeof text))
            return PARSE_TYPE;
        errno = 0;
        long long parsed = strtoll(text, &end, 10);
        if (*end)
            return PARSE_TYPE;
        if (errno == ERANGE)
            return PARSE_RANGE;
        v = parsed;
    } else
        return PARSE_TYPE;
    if (v < min || v > max)
        return PARSE_RANGE;
    *out = v;
    return PARSE_OK;
}

static parse_result_t parse_unsigned(const json_t *value, uint64_t max, uint64_t *out)
{
    uint64_t v;
    if (json_is_integer(value)) {
        json_int_t i = json_integer_value(value);
        if (i < 0)
            return PARSE_RANGE;
        v = (uint64_t)i;
    } else if (json_is_real(value)) {
        double d = json_real_value(value);
        if (!(d >= 0 && d < 18446744073709551616.0))
            return PARSE_RANGE;
        v = (uint64_t)d;
        if ((double)v != d)
            return PARSE_TYPE;
    } else if (json_is_string(value)) {
        char text[32], *end;
        if (!scalar_text(value, text, sizeof text))
            return PARSE_TYPE;
        /* strtoull would take "-1" as a huge positive number. */
        if (text[0] == '-')
            return strspn(text + 1, "0123456789") == strlen(text + 1) && text[1] ? PARSE_RANGE
                                                                                 : PARSE_TYPE;
        errno = 0;
        unsigned long long parsed = strtoull(text, &end, 10);
        if (*end)
            return PARSE_TYPE;
        if (errno == ERANGE)
            return PARSE_RANGE;
        v = parsed;
    } else
        return PARSE_TYPE;
    if (v > max)
        return PARSE_RANGE;
    *out = v;
    return PARSE_OK;
}

static parse_result_t parse_double(const json_t *value, double max, double *out)
{
    double d;
    if (json_is_number(value))
        d = json_number_value(value);
    else if (json_is_string(value)) {
        char text[64], *end;
        if (!scalar_text(value, text, sizeof text))
            return PARSE_TYPE;
        /* Decimal only: strtod also takes hex floats, "nan" and "inf". */
        if (strspn(text, "0123456789+-.eE") != strlen(text))
            return PARSE_TYPE;
        errno = 0;
        d = strtod(text, &end);
        if (*end || end == text)
            return PARSE_TYPE;
        if (errno == ERANGE && (d > 1 || d < -1))
            return PARSE_RANGE;
    } else
        return PARSE_TYPE;
    if (!isfinite(d) || d > max || d < -max)
        return PARSE_RANGE;
    *out = d;
    return PARSE_OK;
}

static parse_result_t parse_bool(const json_t *value, protobuf_c_boolean *out)
{
    if (json_is_boolean(value)) {
        *out = json_is_true(value);
        return PARSE_OK;
    }
    if (json_is_integer(value)) {
        json_int_t i = json_integer_value(value);
        if (i != 0 && i != 1)
            return PARSE_TYPE;
        *out = i == 1;
        return PARSE_OK;
    }
    if (!json_is_string(value))
        return PARSE_TYPE;
    char text[8];
    if (!scalar_text(value, text, sizeof text))
        return PARSE_TYPE;
    static const char *yes[] = {"true", "yes", "1"}, *no[] = {"false", "no", "0"};
    for (int i = 0; i < 3; i++) {
        if (strcasecmp(text, yes[i]) == 0) {
            *out = 1;
            return PARSE_OK;
        }
        if (strcasecmp(text, no[i]) == 0) {
            *out = 0;
            return PARSE_OK;
        }
    }
    return PARSE_TYPE;
}

static parse_result_t parse_enum(const ProtobufCEnumDescriptor *desc, const json_t *value, int *out)
{
    if (json_is_string(value)) {
        char text[128];
        if (!scalar_text(value, text, sizeof text))
            return PARSE_TYPE;
        if (pbjson_enum_value(desc, text, out))
            return PARSE_OK;
        if (strspn(text, "-0123456789") != strlen(text))
            return PARSE_TYPE;
    } else if (!json_is_integer(value) && !json_is_real(value))
        return PARSE_TYPE;
    int64_t number;
    parse_result_t r = parse_signed(value, INT32_MIN, INT32_MAX, &number);
    if (r != PARSE_OK)
        return r;
    if (!protobuf_c_enum_descriptor_get_value(desc, (int)number))
        return PARSE_RANGE;
    *out = (int)number;
    return PARSE_OK;
}

static char *string_from_json(const json_t *value, parse_result_t *r)
{
    char text[32];
    if (json_is_string(value)) {
        size_t len = json_string_length(value);
        /* A NUL inside would silently cut the C string. */
        if (memchr(json_string_value(value), '\0', len)) {
            *r = PARSE_TYPE;
            return NULL;
        }
        *r = PARSE_OK;
        return strdup(json_string_value(value));
    }
    if (json_is_integer(value)) {
        /* Codes typed as numbers (an INSEE code, a postcode). */
        snprintf(text, sizeof text, "%" JSON_INTEGER_FORMAT, json_integer_value(value));
        *r = PARSE_OK;
        return strdup(text);
    }
    *r = PARSE_TYPE;
    return NULL;
}

static parse_result_t bytes_from_json(const json_t *value, ProtobufCBinaryData *out)
{
    if (!json_is_string(value))
        return PARSE_TYPE;
    const char *b64 = json_string_value(value);
    size_t b64_len = json_string_length(value);
    out->data = NULL;
    out->len = 0;
    if (b64_len == 0)
        return PARSE_OK;
    size_t max = b64_len / 4 * 3 + 3;
    unsigned char *bin = malloc(max);
    if (!bin)
        return PARSE_RANGE;
    static const int variants[] = {
        sodium_base64_VARIANT_ORIGINAL, sodium_base64_VARIANT_ORIGINAL_NO_PADDING,
        sodium_base64_VARIANT_URLSAFE, sodium_base64_VARIANT_URLSAFE_NO_PADDING};
    for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++) {
        size_t bin_len;
        const char *end;
        if (sodium_base642bin(bin, max, b64, b64_len, "\r\n", &bin_len, &end, variants[i]) == 0 &&
            end == b64 + b64_len) {
            out->data = bin;
            out->len = bin_len;
            return PARSE_OK;
        }
    }
    free(bin);
    return PARSE_TYPE;
}

static ProtobufCMessage *message_from_json(const ProtobufCMessageDescriptor *desc,
                                           const json_t *json, const char *path, int depth,
                                           pbjson_error_t *e);

/* Parses one value into member (a singular field, or an element of a
 * repeated one, zeroed). On failure sets the error and returns false;
 * member then owns nothing. */
static bool value_from_json(const ProtobufCFieldDescriptor *f, const json_t *value, void *member,
                            const char *path, int depth, pbjson_error_t *e)
{
    parse_result_t r = PARSE_TYPE;
    const char *expected = "a number";
    int64_t s;
    uint64_t u;
    double d;
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        expected = "an integer";
        if ((r = parse_signed(value, INT32_MIN, INT32_MAX, &s)) == PARSE_OK)
            *(int32_t *)member = (int32_t)s;
        break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        expected = "an integer";
        if ((r = parse_signed(value, INT64_MIN, INT64_MAX, &s)) == PARSE_OK)
            *(int64_t *)member = s;
        break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        expected = "a non-negative integer";
        if ((r = parse_unsigned(value, UINT32_MAX, &u)) == PARSE_OK)
            *(uint32_t *)member = (uint32_t)u;
        break;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        expected = "a non-negative integer";
        if ((r = parse_unsigned(value, UINT64_MAX, &u)) == PARSE_OK)
            *(uint64_t *)member = u;
        break;
    case PROTOBUF_C_TYPE_FLOAT:
        if ((r = parse_double(value, FLT_MAX, &d)) == PARSE_OK)
            *(float *)member = (float)d;
        break;
    case PROTOBUF_C_TYPE_DOUBLE:
        if ((r = parse_double(value, DBL_MAX, &d)) == PARSE_OK)
            *(double *)member = d;
        break;
    case PROTOBUF_C_TYPE_BOOL:
        expected = "true or false";
        r = parse_bool(value, (protobuf_c_boolean *)member);
        break;
    case PROTOBUF_C_TYPE_ENUM: {
        int v;
        expected = "a value of the enum";
        if ((r = parse_enum(f->descriptor, value, &v)) == PARSE_OK)
            *(int *)member = v;
        break;
    }
    case PROTOBUF_C_TYPE_STRING: {
        expected = "a string";
        char *str = string_from_json(value, &r);
        if (r == PARSE_OK && !str) {
            set_error(e, path, "out of memory");
            return false;
        }
        if (r == PARSE_OK)
            *(char **)member = str;
        break;
    }
    case PROTOBUF_C_TYPE_BYTES:
        expected = "base64 text";
        r = bytes_from_json(value, member);
        break;
    case PROTOBUF_C_TYPE_MESSAGE: {
        ProtobufCMessage *sub = message_from_json(f->descriptor, value, path, depth + 1, e);
        if (!sub)
            return false; /* the nested call named the field */
        *(ProtobufCMessage **)member = sub;
        return true;
    }
    }
    if (r == PARSE_OK)
        return true;
    char what[160];
    if (f->type == PROTOBUF_C_TYPE_ENUM && (r == PARSE_RANGE || json_is_string(value)))
        snprintf(what, sizeof what, "unknown value of %s",
                 ((const ProtobufCEnumDescriptor *)f->descriptor)->name);
    else if (r == PARSE_RANGE)
        snprintf(what, sizeof what, "out of range");
    else
        snprintf(what, sizeof what, "expected %s", expected);
    set_error(e, path, what);
    return false;
}

static bool repeated_from_json(ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f,
                               const json_t *array, const char *path, int depth, pbjson_error_t *e)
{
    if (!json_is_array(array)) {
        set_error(e, path, "expected an array");
        return false;
    }
    size_t n = json_array_size(array);
    if (n == 0)
        return true;
    size_t size = field_element_size(f);
    char *items = calloc(n, size);
    if (!items) {
        set_error(e, path, "out of memory");
        return false;
    }
    /* The array belongs to msg from here on, its count growing with each
     * element parsed, so free_unpacked frees exactly what exists. */
    size_t *count = FIELD_PTR(msg, f->quantifier_offset);
    *(char **)FIELD_PTR(msg, f->offset) = items;
    *count = 0;
    for (size_t k = 0; k < n; k++) {
        char element_path[PBJSON_PATH_MAX];
        /* A path too long for the buffer is cut: it only names the field. */
        if (snprintf(element_path, sizeof element_path, "%s[%zu]", path, k) < 0)
            element_path[0] = '\0';
        if (!value_from_json(f, json_array_get(array, k), items + k * size, element_path, depth, e))
            return false;
        *count = k + 1;
    }
    return true;
}

static ProtobufCMessage *message_from_json(const ProtobufCMessageDescriptor *desc,
                                           const json_t *json, const char *path, int depth,
                                           pbjson_error_t *e)
{
    if (!json_is_object(json)) {
        set_error(e, path, "expected a JSON object");
        return NULL;
    }
    if (depth > PBJSON_MAX_DEPTH) {
        set_error(e, path, "nested too deeply");
        return NULL;
    }
    ProtobufCMessage *msg = malloc(desc->sizeof_message);
    if (!msg) {
        set_error(e, path, "out of memory");
        return NULL;
    }
    desc->message_init(msg);
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)json, key, value)
    {
        char field_path[PBJSON_PATH_MAX];
        snprintf(field_path, sizeof field_path, "%s%s%s", path, *path ? "." : "", key);
        const ProtobufCFieldDescriptor *f =
            protobuf_c_message_descriptor_get_field_by_name(desc, key);
        if (!f) {
            set_error(e, field_path, "unknown field");
            goto fail;
        }
        if (json_is_null(value))
            continue; /* same as absent */
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            if (!repeated_from_json(msg, f, value, field_path, depth, e))
                goto fail;
            continue;
        }
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            uint32_t *which = FIELD_PTR(msg, f->quantifier_offset);
            if (*which != 0) {
                set_error(e, field_path, "another field of the same oneof is set");
                goto fail;
            }
        }
        /* Parse into a zeroed scratch value first, so that msg never holds
         * a half-written member. */
        union {
            char *str;
            ProtobufCBinaryData bytes;
            ProtobufCMessage *sub;
            uint64_t u64;
            double d;
        } scratch;
        memset(&scratch, 0, sizeof scratch);
        if (!value_from_json(f, value, &scratch, field_path, depth, e))
            goto fail;
        memcpy(FIELD_PTR(msg, f->offset), &scratch, field_element_size(f));
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
            *(uint32_t *)FIELD_PTR(msg, f->quantifier_offset) = f->id;
        else if (field_has_flag(f))
            *(protobuf_c_boolean *)FIELD_PTR(msg, f->quantifier_offset) = 1;
    }
    return msg;
fail:
    protobuf_c_message_free_unpacked(msg, NULL);
    return NULL;
}

ProtobufCMessage *pbjson_to_message(const ProtobufCMessageDescriptor *desc, const json_t *json,
                                    char *err, size_t err_size, char *field, size_t field_size)
{
    pbjson_error_t e = {err, err_size, field, field_size};
    if (err && err_size)
        err[0] = '\0';
    if (field && field_size)
        field[0] = '\0';
    if (!desc) {
        set_error(&e, "", "no message type");
        return NULL;
    }
    return message_from_json(desc, json, "", 0, &e);
}
