/* The territory digest over a real redis-server and the real reservations
 * service: the projection lists exactly the envisaged, unsigned units of
 * each territory, whatever the order and the number of times events come;
 * the clock cuts a digest per territory, each holding the changes since
 * the previous one; the "digest.send" request, directly and through the
 * real notifications service, makes one digest per territory and none
 * more on a retry; the e-mail is well-formed quoted-printable. The
 * schedule is checked as pure functions across the clock changes. */
#include "digest.h"
#include "harness.h"
#include "ids.h"
#include "log.h"
#include "notifications.pb-c.h"
#include "notify.h"
#include "reservations.pb-c.h"
#include "txn.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#define OK               PASSERELLE__STATUS__STATUS_OK
#define INVALID_ARGUMENT PASSERELLE__STATUS__STATUS_INVALID_ARGUMENT
#define RESERVATIONS     "reservations:events"
#define DONE_PREFIX      RESERVATIONS ":done:" DIGEST_GROUP ":"
#define DEADLINE_MS      10000
#define MAX_DIGESTS      512

/* The stack comes first: harness_fixture_setup makes and starts it. */
typedef struct {
    harness_stack_t stack;
    store_config_t store_cfg;
    store_t *store; /* the test's own connection */
    digest_t *digest;
} fixture_t;

/* ======================== helpers ====================================== */

static void sleep_ms(int ms)
{
    struct timespec pause = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&pause, NULL);
}

/* The digest actor of the fixture, its clock fast (a cut every second) or
 * still (the daily cut twelve hours away). */
static void digest_start(fixture_t *f, bool fast)
{
    int64_t now_ms = time_now_ms();
    time_t now_s = (time_t)(now_ms / 1000);
    time_t local_s = now_s + time_paris_offset_s(now_s);
    int minute_now = (int)((local_s % 86400) / 60);
    digest_config_t cfg = {
        .store = &f->store_cfg,
        .stream = RESERVATIONS,
        .consumer = "digest-test",
        .interval_s = 86400,
        .at_minute = fast ? 7 * 60 : (minute_now + 12 * 60) % 1440,
        .clock_scale = fast ? 86400.0 : 1.0,
    };
    f->digest = digest_new(&cfg);
    assert_non_null(f->digest);
}

static int setup_with(void **state, bool fast)
{
    log_set_level(LOG_LEVEL_WARN);
    if (harness_fixture_setup(state, sizeof(fixture_t), "digest", "operator") != 0)
        return -1;
    fixture_t *f = *state;
    harness_redis_config(&f->stack.redis, &f->store_cfg);
    f->store = store_new(&f->store_cfg);
    if (!f->store)
        return -1;
    digest_start(f, fast);
    return 0;
}

static int setup_still(void **state)
{
    return setup_with(state, false);
}

static int setup_fast(void **state)
{
    return setup_with(state, true);
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    if (f) {
        digest_destroy(&f->digest);
        store_destroy(&f->store);
    }
    return harness_fixture_teardown(state);
}

__attribute__((format(printf, 2, 3))) static redisReply *command(store_t *store, const char *format,
                                                                 ...)
{
    va_list args;
    va_start(args, format);
    char text[512];
    vsnprintf(text, sizeof text, format, args);
    va_end(args);
    redisReply *reply = NULL;
    /* Split on spaces: the tests' commands have no spaces in arguments. */
    const char *argv[16];
    char *save = NULL;
    int argc = 0;
    for (char *word = strtok_r(text, " ", &save); word && argc < 16;
         word = strtok_r(NULL, " ", &save))
        argv[argc++] = word;
    assert_int_equal(store_command_argv(store, &reply, argc, argv, NULL), STORE_OK);
    return reply;
}

static void register_unit(fixture_t *f, const char *ref, const char *commune,
                          const char *arrondissement, char id[ID_LEN])
{
    Passerelle__UnitRegisterRequest req;
    harness_unit_request(&req, ref);
    req.commune = (char *)commune;
    req.arrondissement = (char *)arrondissement;
    Passerelle__Reply *reply = harness_call(f->stack.client, "unit.register", &req.base, OK, NULL);
    Passerelle__Unit *unit = passerelle__unit__unpack(NULL, reply->body.len, reply->body.data);
    passerelle__reply__free_unpacked(reply, NULL);
    assert_non_null(unit);
    snprintf(id, ID_LEN, "%s", unit->id);
    passerelle__unit__free_unpacked(unit, NULL);
}

static void convention_call(fixture_t *f, const char *type, const ProtobufCMessage *req,
                            char conv_id[ID_LEN])
{
    Passerelle__Reply *reply = harness_call(f->stack.client, type, req, OK, NULL);
    Passerelle__Convention *conv =
        passerelle__convention__unpack(NULL, reply->body.len, reply->body.data);
    passerelle__reply__free_unpacked(reply, NULL);
    assert_non_null(conv);
    if (conv_id)
        snprintf(conv_id, ID_LEN, "%s", conv->id);
    passerelle__convention__free_unpacked(conv, NULL);
}

static void envisage(fixture_t *f, const char *unit_id, char conv_id[ID_LEN])
{
    Passerelle__ConventionEnvisageRequest req = PASSERELLE__CONVENTION_ENVISAGE_REQUEST__INIT;
    req.unit = (char *)unit_id;
    req.has_level = true;
    req.level = PASSERELLE__CONVENTION_LEVEL__LEVEL_LOC2;
    convention_call(f, "convention.envisage", &req.base, conv_id);
}

/* convention.sign, convention.abandon, ... of a unit's latest convention. */
static void step(fixture_t *f, const char *type, const char *unit_id)
{
    Passerelle__ConventionStepRequest req = PASSERELLE__CONVENTION_STEP_REQUEST__INIT;
    req.unit = (char *)unit_id;
    convention_call(f, type, &req.base, NULL);
}

/* Waits until every event of the reservations stream has its done marker
 * for the digest's group and the group holds none pending: the projection
 * has applied them all and acknowledged them (a cut counts an event only
 * once acknowledged, and the markers are set a round trip before). */
static void wait_projected(fixture_t *f)
{
    int64_t deadline = time_now_ms() + DEADLINE_MS;
    for (;;) {
        redisReply *range = command(f->store, "XRANGE %s - +", RESERVATIONS);
        size_t missing = 0;
        for (size_t i = 0; i < range->elements; i++) {
            const redisReply *fields = range->element[i]->element[1];
            for (size_t j = 0; j + 1 < fields->elements; j += 2) {
                if (strcmp(fields->element[j]->str, "event") != 0)
                    continue;
                Passerelle__Event *event =
                    passerelle__event__unpack(NULL, fields->element[j + 1]->len,
                                              (const uint8_t *)fields->element[j + 1]->str);
                assert_non_null(event);
                redisReply *exists = command(f->store, "EXISTS %s%s", DONE_PREFIX, event->id);
                missing += exists->integer == 0;
                freeReplyObject(exists);
                passerelle__event__free_unpacked(event, NULL);
            }
        }
        freeReplyObject(range);
        if (missing == 0) {
            /* Every event marked: the group exists. */
            redisReply *pending = command(f->store, "XPENDING %s %s", RESERVATIONS, DIGEST_GROUP);
            if (pending->type == REDIS_REPLY_ARRAY && pending->elements > 0 &&
                pending->element[0]->integer > 0)
                missing++;
            freeReplyObject(pending);
        }
        if (missing == 0)
            return;
        if (time_now_ms() > deadline)
            fail_msg("%zu events not projected in time", missing);
        sleep_ms(20);
    }
}

/* The units listed for a territory, as "unit id=convention id" sorted,
 * joined by spaces; the DigestUnit of `unit` into *found when asked. */
static char *listed(fixture_t *f, const char *territory, const char *unit,
                    Passerelle__DigestUnit **found)
{
    redisReply *all = command(f->store, "HGETALL notifications:digest:envisaged:%s", territory);
    size_t n = all->elements / 2;
    char **items = calloc(n + 1, sizeof *items);
    assert_non_null(items);
    if (found)
        *found = NULL;
    for (size_t i = 0; i < n; i++) {
        const redisReply *value = all->element[2 * i + 1];
        Passerelle__DigestUnit *u =
            passerelle__digest_unit__unpack(NULL, value->len, (const uint8_t *)value->str);
        assert_non_null(u);
        assert_string_equal(u->unit_id, all->element[2 * i]->str);
        assert_non_null(items[i] = malloc(2 * ID_LEN + 2));
        snprintf(items[i], 2 * ID_LEN + 2, "%s=%s", u->unit_id, u->convention_id);
        if (found && unit && strcmp(u->unit_id, unit) == 0)
            *found = u;
        else
            passerelle__digest_unit__free_unpacked(u, NULL);
    }
    freeReplyObject(all);
    for (size_t i = 0; i + 1 < n; i++) /* a handful: insertion sort */
        for (size_t j = i + 1; j < n; j++)
            if (strcmp(items[j], items[i]) < 0) {
                char *t = items[i];
                items[i] = items[j];
                items[j] = t;
            }
    char *text = calloc(1, n * (2 * ID_LEN + 2) + 1);
    assert_non_null(text);
    for (size_t i = 0; i < n; i++) {
        if (i)
            strcat(text, " ");
        strcat(text, items[i]);
        free(items[i]);
    }
    free(items);
    return text;
}

static void expect_listed(fixture_t *f, const char *territory, const char *expected)
{
    char *text = listed(f, territory, NULL, NULL);
    if (strcmp(text, expected) != 0)
        fail_msg("%s lists '%s', expected '%s'", territory, text, expected);
    free(text);
}

static int line_order(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Everything the projection holds, as text: one sorted line per hash field
 * or set member (binary values in hex), so that two dumps compare whatever
 * order Redis keeps them in. */
static char *projection_dump(fixture_t *f)
{
    size_t n_lines = 0, capacity = 64, total = 1;
    char **lines = malloc(capacity * sizeof *lines);
    assert_non_null(lines);
    const char *kinds[] = {"envisaged", "conventions", "changes"};
    for (int t = 1; t <= 6; t++)
        for (int k = 0; k < 3; k++) {
            redisReply *reply =
                k < 2 ? command(f->store, "HGETALL notifications:digest:%s:CT%d", kinds[k], t)
                      : command(f->store, "ZRANGE notifications:digest:%s:CT%d 0 -1 WITHSCORES",
                                kinds[k], t);
            for (size_t i = 0; i + 1 < reply->elements; i += 2) {
                /* A hash: field, value; a sorted set: member, score. */
                const redisReply *text = reply->element[k < 2 ? i : i + 1];
                const redisReply *bytes = reply->element[k < 2 ? i + 1 : i];
                size_t size = 64 + text->len + 2 * bytes->len;
                char *line = malloc(size);
                assert_non_null(line);
                int n = snprintf(line, size, "%s CT%d %s ", kinds[k], t, text->str);
                for (size_t b = 0; b < bytes->len; b++)
                    n += snprintf(line + n, size - (size_t)n, "%02x", (unsigned char)bytes->str[b]);
                if (n_lines == capacity) {
                    capacity *= 2;
                    lines = realloc(lines, capacity * sizeof *lines);
                    assert_non_null(lines);
                }
                lines[n_lines++] = line;
                total += (size_t)n + 1;
            }
            freeReplyObject(reply);
        }
    qsort(lines, n_lines, sizeof *lines, line_order);
    char *out = calloc(1, total);
    assert_non_null(out);
    for (size_t i = 0; i < n_lines; i++) {
        strcat(out, lines[i]);
        strcat(out, "\n");
        free(lines[i]);
    }
    free(lines);
    return out;
}

/* Appends a convention event as the reservations service does, for a unit
 * in Salon-de-Provence (CT3) unless territory says otherwise. */
static void append_convention(fixture_t *f, const char *type, int state, const char *conv_id,
                              const char *unit_id, const char *territory)
{
    Passerelle__Unit unit = PASSERELLE__UNIT__INIT;
    unit.id = (char *)unit_id;
    unit.external_ref = "FAKE-REF";
    unit.address = "1 place Morgan";
    unit.commune_name = "Salon-de-Provence";
    unit.territory = (char *)territory;
    Passerelle__Convention conv = PASSERELLE__CONVENTION__INIT;
    conv.id = (char *)conv_id;
    conv.unit_id = (char *)unit_id;
    conv.has_state = true;
    conv.state = state;
    conv.has_level = true;
    conv.level = PASSERELLE__CONVENTION_LEVEL__LEVEL_LOC1;
    conv.envisaged_on = "2026-01-05";
    conv.unit = &unit;
    char subject[64];
    snprintf(subject, sizeof subject, "units/%s", unit_id);
    txn_t *txn = txn_new(NULL, NULL, 0);
    txn_event(txn, RESERVATIONS, "/passerelle/reservations", type, subject, &conv.base);
    assert_int_equal(txn_commit(txn, f->store, NULL, 0, NULL, NULL, NULL), TXN_COMMITTED);
    txn_destroy(&txn);
}

/* --- the digests made ---------------------------------------------------- */

typedef struct {
    char event_id[ID_LEN];
    char subject[64];
    Passerelle__Digest *digest;
} made_t;

typedef struct {
    made_t items[MAX_DIGESTS];
    size_t count;
} made_list_t;

/* Every digest.ready of the notifications stream, in stream order. */
static void digests_read(fixture_t *f, made_list_t *list)
{
    list->count = 0;
    redisReply *range = command(f->store, "XRANGE %s - +", NOTIFY_STREAM);
    for (size_t i = 0; i < range->elements && list->count < MAX_DIGESTS; i++) {
        const redisReply *fields = range->element[i]->element[1];
        for (size_t j = 0; j + 1 < fields->elements; j += 2) {
            if (strcmp(fields->element[j]->str, "event") != 0)
                continue;
            Passerelle__Event *event = passerelle__event__unpack(
                NULL, fields->element[j + 1]->len, (const uint8_t *)fields->element[j + 1]->str);
            assert_non_null(event);
            if (strcmp(event->type, "digest.ready") == 0) {
                assert_string_equal(event->source, NOTIFY_SOURCE);
                assert_string_equal(event->dataschema, "passerelle.Digest");
                made_t *made = &list->items[list->count++];
                snprintf(made->event_id, ID_LEN, "%s", event->id);
                snprintf(made->subject, sizeof made->subject, "%s", event->subject);
                made->digest = passerelle__digest__unpack(NULL, event->data.len, event->data.data);
                assert_non_null(made->digest);
            }
            passerelle__event__free_unpacked(event, NULL);
        }
    }
    freeReplyObject(range);
}

static void digests_free(made_list_t *list)
{
    for (size_t i = 0; i < list->count; i++)
        passerelle__digest__free_unpacked(list->items[i].digest, NULL);
    list->count = 0;
}

static const made_t *digest_by_id(const made_list_t *list, const char *event_id)
{
    const made_t *found = NULL;
    for (size_t i = 0; i < list->count; i++)
        if (strcmp(list->items[i].event_id, event_id) == 0) {
            assert_null(found); /* once */
            found = &list->items[i];
        }
    assert_non_null(found);
    return found;
}

static size_t digests_of(const made_list_t *list, const char *territory)
{
    size_t n = 0;
    for (size_t i = 0; i < list->count; i++)
        n += strcmp(list->items[i].digest->territory, territory) == 0;
    return n;
}

static int64_t parse_ms(const char *text)
{
    int y, mo, d, h, mi, s, ms;
    assert_int_equal(sscanf(text, "%d-%d-%dT%d:%d:%d.%dZ", &y, &mo, &d, &h, &mi, &s, &ms), 7);
    struct tm tm = {.tm_year = y - 1900,
                    .tm_mon = mo - 1,
                    .tm_mday = d,
                    .tm_hour = h,
                    .tm_min = mi,
                    .tm_sec = s};
    return (int64_t)timegm(&tm) * 1000 + ms;
}

/* ======================== the schedule ================================= */

static int64_t at(const char *text)
{
    return parse_ms(text);
}

static void expect_time(int64_t got_ms, const char *expected)
{
    char text[TIME_RFC3339_LEN];
    time_rfc3339(got_ms, text);
    assert_string_equal(text, expected);
}

static void test_schedule(void **state)
{
    (void)state;
    /* Daily at 07:00 Paris: 06:00Z in winter, 05:00Z in summer, and the
     * day of each change (29 March and 25 October 2026) too. */
    expect_time(digest_next_cut_ms(at("2026-01-10T05:00:00.000Z"), 86400, 420, 1),
                "2026-01-10T06:00:00.000Z");
    expect_time(digest_next_cut_ms(at("2026-01-10T06:00:00.000Z"), 86400, 420, 1),
                "2026-01-11T06:00:00.000Z");
    expect_time(digest_next_cut_ms(at("2026-03-28T12:00:00.000Z"), 86400, 420, 1),
                "2026-03-29T05:00:00.000Z");
    expect_time(digest_next_cut_ms(at("2026-10-24T12:00:00.000Z"), 86400, 420, 1),
                "2026-10-25T06:00:00.000Z");
    expect_time(digest_cut_at_or_before_ms(at("2026-01-10T06:00:00.000Z"), 86400, 420, 1),
                "2026-01-10T06:00:00.000Z");
    expect_time(digest_cut_at_or_before_ms(at("2026-01-10T05:59:59.999Z"), 86400, 420, 1),
                "2026-01-09T06:00:00.000Z");
    expect_time(digest_cut_at_or_before_ms(at("2026-03-30T04:00:00.000Z"), 86400, 420, 1),
                "2026-03-29T05:00:00.000Z");
    /* The tests' clock: a day in a second, on whole seconds. */
    expect_time(digest_next_cut_ms(at("2026-01-10T12:34:56.789Z"), 86400, 420, 86400),
                "2026-01-10T12:34:57.000Z");
    expect_time(digest_cut_at_or_before_ms(at("2026-01-10T12:34:56.789Z"), 86400, 420, 86400),
                "2026-01-10T12:34:56.000Z");
    /* Hourly, on the hour of 07:00 local. */
    expect_time(digest_next_cut_ms(at("2026-07-01T12:34:00.000Z"), 3600, 420, 1),
                "2026-07-01T13:00:00.000Z");
    /* Weekly: 07:00 local, seven days apart. */
    int64_t week1 = digest_next_cut_ms(at("2026-01-10T12:00:00.000Z"), 7 * 86400, 420, 1);
    int64_t week2 = digest_next_cut_ms(week1, 7 * 86400, 420, 1);
    assert_int_equal(week2 - week1, 7LL * 86400000);
    assert_int_equal((week1 / 1000 + 3600) % 86400, 7 * 3600);
    /* Around both changes of 2026, every few minutes: prev <= t < next,
     * and nothing between them. */
    const int64_t intervals[] = {86400, 3600, 5400, 7 * 86400, 86400};
    const double scales[] = {1, 1, 1, 1, 86400};
    const char *starts[] = {"2026-03-27T00:00:00.000Z", "2026-10-23T00:00:00.000Z"};
    for (size_t k = 0; k < 5; k++)
        for (size_t s = 0; s < 2; s++)
            for (int64_t t = at(starts[s]); t < at(starts[s]) + 4 * 86400000LL;
                 t += 7 * 60000 + 13) {
                int64_t prev = digest_cut_at_or_before_ms(t, intervals[k], 420, scales[k]);
                int64_t next = digest_next_cut_ms(t, intervals[k], 420, scales[k]);
                assert_true(prev <= t);
                assert_true(next > t);
                assert_int_equal(digest_next_cut_ms(prev, intervals[k], 420, scales[k]), next);
            }
}

/* ======================== the e-mail =================================== */

/* Decodes a quoted-printable body (CRLF lines) into text with '\n'. */
static char *qp_decode(const char *in)
{
    char *out = malloc(strlen(in) + 1);
    assert_non_null(out);
    size_t n = 0;
    for (const char *p = in; *p;) {
        if (p[0] == '=' && p[1] == '\r' && p[2] == '\n') {
            p += 3;
        } else if (p[0] == '=') {
            unsigned value = 0;
            assert_int_equal(sscanf(p + 1, "%2X", &value), 1);
            out[n++] = (char)value;
            p += 3;
        } else if (p[0] == '\r' && p[1] == '\n') {
            out[n++] = '\n';
            p += 2;
        } else {
            assert_true(*p == ' ' || *p == '\t' || (*p >= 33 && *p <= 126));
            out[n++] = *p++;
        }
    }
    out[n] = '\0';
    return out;
}

static void email_digest(Passerelle__Digest *digest, Passerelle__DigestUnit *units,
                         Passerelle__DigestUnit **unit_ptrs, size_t n_units,
                         Passerelle__DigestChange *change, Passerelle__DigestChange **change_ptr)
{
    passerelle__digest__init(digest);
    digest->territory = "CT4";
    digest->since = "2026-11-28T06:00:00.000Z";
    digest->until = "2026-11-29T06:00:00.000Z";
    static const char *refs[] = {"ANAH-13-0001", "ANAH-13-0002", "ANAH-13-0003"};
    static const char *addresses[] = {
        "Chemin de l'Étang, résidence « Les Pins », bâtiment B, escalier 4, 3e étage, porte "
        "gauche",
        "12 rue\r\nBcc: intruder@example.test", "3 avenue Jeanne d'Arc"};
    for (size_t i = 0; i < n_units; i++) {
        passerelle__digest_unit__init(&units[i]);
        units[i].unit_id = i == 0 ? "U01JDVAAAAAAAAAAAAAAAAAAA1" : "U01JDVAAAAAAAAAAAAAAAAAAA2";
        units[i].external_ref = (char *)refs[i % 3];
        units[i].commune_name = "Aubagne";
        units[i].address = (char *)addresses[i % 3];
        units[i].convention_id = "C01JDVAAAAAAAAAAAAAAAAAAA1";
        units[i].has_level = true;
        units[i].level = PASSERELLE__CONVENTION_LEVEL__LEVEL_LOC3;
        units[i].envisaged_on = "2026-11-20";
        unit_ptrs[i] = &units[i];
    }
    digest->n_envisaged = n_units;
    digest->envisaged = unit_ptrs;
    passerelle__digest_change__init(change);
    change->time = "2026-11-28T13:03:00.000Z";
    change->type = "convention.signed";
    change->unit_id = "U01JDVAAAAAAAAAAAAAAAAAAA9";
    change->external_ref = "ANAH-13-0009";
    change->commune_name = "La Penne-sur-Huveaune";
    *change_ptr = change;
    digest->n_changes = 1;
    digest->changes = change_ptr;
}

static void test_email(void **state)
{
    (void)state;
    Passerelle__Digest digest;
    Passerelle__DigestUnit units[3], *unit_ptrs[3];
    Passerelle__DigestChange change, *change_ptr;
    email_digest(&digest, units, unit_ptrs, 3, &change, &change_ptr);

    size_t len = 0;
    char *mail = digest_render_email(&digest, "Passerelle <digest@passerelle.test>",
                                     "ct4@al.example.test", "msg_E01JDVAAAA", &len);
    assert_non_null(mail);
    assert_int_equal(strlen(mail), len);

    /* Every line ends in CRLF and is at most 76 characters. */
    for (const char *line = mail; *line;) {
        const char *end = strstr(line, "\r\n");
        assert_non_null(end);
        assert_true(end - line <= 76);
        assert_null(memchr(line, '\n', (size_t)(end - line)));
        line = end + 2;
    }
    char *body = strstr(mail, "\r\n\r\n");
    assert_non_null(body);
    *body = '\0';
    body += 4;
    const char *headers[] = {
        "From: Passerelle <digest@passerelle.test>\r\n",
        "To: ct4@al.example.test\r\n",
        "Subject: Passerelle - CT4 - 3 units with an envisaged ANAH convention\r\n",
        "Date: Sun, 29 Nov 2026 07:00:00 +0100\r\n",
        "Message-ID: <msg_E01JDVAAAA@passerelle>\r\n",
        "MIME-Version: 1.0\r\n",
        "Content-Type: text/plain; charset=UTF-8\r\n",
        "Content-Transfer-Encoding: quoted-printable\r\n",
    };
    char all_headers[2048];
    snprintf(all_headers, sizeof all_headers, "%s\r\n", mail);
    size_t headers_len = 0;
    for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
        harness_assert_contains(all_headers, headers[i]);
        headers_len += strlen(headers[i]);
    }
    assert_int_equal(strlen(all_headers), headers_len); /* nothing else */

    char *text = qp_decode(body);
    harness_assert_contains(text, "CT4 - Pays d'Aubagne et de l'Étoile");
    harness_assert_contains(text, "from 2026-11-28 07:00 to 2026-11-29 07:00");
    harness_assert_contains(text, "ANAH-13-0001");
    harness_assert_contains(text, "ANAH-13-0002");
    harness_assert_contains(text, "ANAH-13-0003");
    harness_assert_contains(text, "résidence « Les Pins », bâtiment B");
    harness_assert_contains(text, "U01JDVAAAAAAAAAAAAAAAAAAA1");
    harness_assert_contains(text, "LOC3");
    harness_assert_contains(text, "2026-11-20");
    harness_assert_contains(text, "2026-11-28 14:03");
    harness_assert_contains(text, "signed");
    harness_assert_contains(text, "La Penne-sur-Huveaune");
    harness_assert_contains(text, "Source: Passerelle");
    /* A line break in the data stays inside its line of the body. */
    harness_assert_contains(text, "12 rue  Bcc: intruder@example.test");
    assert_null(strstr(text, "\nBcc:"));
    free(text);
    free(mail);

    /* One unit, none, and addresses that would write headers. */
    email_digest(&digest, units, unit_ptrs, 1, &change, &change_ptr);
    mail =
        digest_render_email(&digest, "digest@passerelle.test", "ct4@al.example.test", "m1", &len);
    harness_assert_contains(mail, "Subject: Passerelle - CT4 - 1 unit with an envisaged");
    free(mail);
    email_digest(&digest, units, unit_ptrs, 0, &change, &change_ptr);
    digest.since = "";
    mail =
        digest_render_email(&digest, "digest@passerelle.test", "ct4@al.example.test", "m2", &len);
    harness_assert_contains(mail, "Subject: Passerelle - CT4 - 0 units with an envisaged");
    text = qp_decode(strstr(mail, "\r\n\r\n") + 4);
    harness_assert_contains(text, "the first digest");
    harness_assert_contains(text, "None at the end of the period.");
    free(text);
    free(mail);
    assert_null(digest_render_email(&digest, "digest@passerelle.test",
                                    "ct4@al.example.test\r\nBcc: intruder@example.test", "m3",
                                    &len));
    assert_null(digest_render_email(&digest, "digest@passerelle.test", "ct4@al.example.test",
                                    "m4>\r\nX-Evil: 1", &len));
}

/* ======================== the projection =============================== */

static void test_projection(void **state)
{
    fixture_t *f = *state;
    char a[ID_LEN], b[ID_LEN], c[ID_LEN], d[ID_LEN], e[ID_LEN];
    char conv_a[ID_LEN], conv_c[ID_LEN], conv_e[ID_LEN];
    register_unit(f, "DIG-A", "Pertuis", NULL, a);  /* CT2 */
    register_unit(f, "DIG-B", "Marseille", "7", b); /* CT1 */
    register_unit(f, "DIG-C", "Aubagne", NULL, c);  /* CT4 */
    register_unit(f, "DIG-D", "Pertuis", NULL, d);  /* CT2 */
    register_unit(f, "DIG-E", "Pertuis", NULL, e);  /* CT2 */
    envisage(f, a, conv_a);
    envisage(f, b, NULL);
    envisage(f, c, conv_c);
    envisage(f, d, NULL);
    step(f, "convention.sign", b);
    step(f, "convention.abandon", d);
    /* Abandoned, then envisaged again: listed with its new convention. */
    envisage(f, e, NULL);
    step(f, "convention.abandon", e);
    envisage(f, e, conv_e);
    wait_projected(f);

    char expected[128];
    snprintf(expected, sizeof expected, "%s=%s %s=%s", a, conv_a, e, conv_e);
    if (strcmp(a, e) > 0)
        snprintf(expected, sizeof expected, "%s=%s %s=%s", e, conv_e, a, conv_a);
    expect_listed(f, "CT2", expected);
    expect_listed(f, "CT1", "");
    snprintf(expected, sizeof expected, "%s=%s", c, conv_c);
    expect_listed(f, "CT4", expected);
    expect_listed(f, "CT3", "");

    Passerelle__DigestUnit *unit = NULL;
    free(listed(f, "CT2", a, &unit));
    assert_non_null(unit);
    assert_string_equal(unit->external_ref, "DIG-A");
    assert_string_equal(unit->commune_name, "Pertuis");
    assert_string_equal(unit->address, "12 rue de la Republique");
    assert_int_equal(unit->level, PASSERELLE__CONVENTION_LEVEL__LEVEL_LOC2);
    assert_true(date_parse(unit->envisaged_on, &(date_t){0}));
    passerelle__digest_unit__free_unpacked(unit, NULL);

    /* Every convention event is a change: 6 in CT2, 2 in CT1 (Marseille
     * by its arrondissement), 1 in CT4. */
    redisReply *changes = command(f->store, "ZRANGE notifications:digest:changes:CT2 0 -1");
    assert_int_equal(changes->elements, 6);
    freeReplyObject(changes);
    changes = command(f->store, "ZRANGE notifications:digest:changes:CT1 0 -1");
    assert_int_equal(changes->elements, 2);
    const redisReply *member = changes->element[1];
    const char *colon = memchr(member->str, ':', member->len);
    assert_non_null(colon);
    Passerelle__DigestChange *change = passerelle__digest_change__unpack(
        NULL, member->len - (size_t)(colon + 1 - member->str), (const uint8_t *)colon + 1);
    assert_non_null(change);
    assert_string_equal(change->type, "convention.signed");
    assert_string_equal(change->unit_id, b);
    assert_string_equal(change->commune_name, "Marseille 7e Arrondissement");
    passerelle__digest_change__free_unpacked(change, NULL);
    freeReplyObject(changes);

    /* Redelivery, as after a crash between the effect and the XACK, and
     * even with the done markers gone: nothing changes. */
    char *before = projection_dump(f);
    digest_destroy(&f->digest);
    freeReplyObject(command(f->store, "XGROUP SETID %s %s 0", RESERVATIONS, DIGEST_GROUP));
    redisReply *done = command(f->store, "KEYS %s*", DONE_PREFIX);
    assert_int_equal(done->elements, 14);
    for (size_t i = 0; i < done->elements; i++)
        freeReplyObject(command(f->store, "DEL %s", done->element[i]->str));
    freeReplyObject(done);
    digest_start(f, false);
    wait_projected(f);
    char *after = projection_dump(f);
    assert_string_equal(after, before);
    free(after);

    /* The same once more with the done markers there: skipped. */
    digest_destroy(&f->digest);
    freeReplyObject(command(f->store, "XGROUP SETID %s %s 0", RESERVATIONS, DIGEST_GROUP));
    digest_start(f, false);
    sleep_ms(300); /* nothing to wait for: it must change nothing */
    wait_projected(f);
    after = projection_dump(f);
    assert_string_equal(after, before);
    free(after);
    free(before);
}

/* Events of one unit out of order, as an entry left pending and taken
 * again after later ones would come. */
static void test_out_of_order(void **state)
{
    fixture_t *f = *state;
    const int ENVISAGED = PASSERELLE__CONVENTION_STATE__CONVENTION_ENVISAGED;
    char unit1[ID_LEN], unit2[ID_LEN], unit3[ID_LEN];
    char conv1[ID_LEN], older[ID_LEN], newer[ID_LEN], conv3[ID_LEN];
    id_new('U', unit1);
    id_new('U', unit2);
    id_new('U', unit3);
    id_new('C', conv1);
    id_new('C', older);
    id_new('C', newer);
    id_new('C', conv3);

    /* Signed seen before envisaged: never listed. */
    append_convention(f, "convention.signed", PASSERELLE__CONVENTION_STATE__CONVENTION_SIGNED,
                      conv1, unit1, "CT3");
    append_convention(f, "convention.envisaged", ENVISAGED, conv1, unit1, "CT3");
    /* A later convention, then the end of an earlier one: the later stays,
     * and the earlier one's late envisaged does not come back. */
    append_convention(f, "convention.envisaged", ENVISAGED, newer, unit2, "CT3");
    append_convention(f, "convention.abandoned", PASSERELLE__CONVENTION_STATE__CONVENTION_ABANDONED,
                      older, unit2, "CT3");
    append_convention(f, "convention.envisaged", ENVISAGED, older, unit2, "CT3");
    /* Envisaged then ended: gone. */
    append_convention(f, "convention.envisaged", ENVISAGED, conv3, unit3, "CT3");
    append_convention(f, "convention.ended", PASSERELLE__CONVENTION_STATE__CONVENTION_EXPIRED,
                      conv3, unit3, "CT3");
    /* No territory: nothing to list it under, and not left pending. */
    append_convention(f, "convention.envisaged", ENVISAGED, conv3, unit3, "");
    wait_projected(f);

    char expected[64];
    snprintf(expected, sizeof expected, "%s=%s", unit2, newer);
    expect_listed(f, "CT3", expected);
    redisReply *changes = command(f->store, "ZCARD notifications:digest:changes:CT3");
    assert_int_equal(changes->integer, 7);
    freeReplyObject(changes);
    redisReply *pending = command(f->store, "XPENDING %s %s", RESERVATIONS, DIGEST_GROUP);
    assert_int_equal(pending->element[0]->integer, 0);
    freeReplyObject(pending);
}

/* ======================== the clock ==================================== */

/* The changes of a territory's digests, each "type unit" once, in order. */
static void expect_changes(const made_list_t *list, const char *territory,
                           const char *const *expected, size_t n_expected)
{
    size_t seen = 0;
    for (size_t i = 0; i < list->count; i++) {
        const Passerelle__Digest *digest = list->items[i].digest;
        if (strcmp(digest->territory, territory) != 0)
            continue;
        for (size_t j = 0; j < digest->n_changes; j++, seen++) {
            char text[128];
            snprintf(text, sizeof text, "%s %s", digest->changes[j]->type,
                     digest->changes[j]->unit_id);
            assert_true(seen < n_expected);
            assert_string_equal(text, expected[seen]);
        }
    }
    assert_int_equal(seen, n_expected);
}

/* Reads the digests until every territory has `count` of them cut after
 * after_ms (or, with exact, one cut exactly at after_ms). */
static void wait_digests(fixture_t *f, made_list_t *list, int64_t after_ms, size_t count,
                         bool exact)
{
    int64_t deadline = time_now_ms() + DEADLINE_MS;
    for (;;) {
        digests_read(f, list);
        bool enough = true;
        for (int t = 1; t <= 6; t++) {
            char territory[8];
            snprintf(territory, sizeof territory, "CT%d", t);
            size_t seen = 0;
            for (size_t i = 0; i < list->count; i++) {
                int64_t until_ms = parse_ms(list->items[i].digest->until);
                seen += strcmp(list->items[i].digest->territory, territory) == 0 &&
                        (exact ? until_ms == after_ms : until_ms > after_ms);
            }
            enough &= seen >= count;
        }
        if (enough)
            return;
        if (time_now_ms() > deadline)
            fail_msg("digests not made on schedule (%zu so far)", list->count);
        digests_free(list);
        sleep_ms(50);
    }
}

/* The index in the list of the digest holding this change, or -1. */
static int holding(const made_list_t *list, const char *type, const char *unit_id)
{
    for (size_t i = 0; i < list->count; i++)
        for (size_t j = 0; j < list->items[i].digest->n_changes; j++)
            if (strcmp(list->items[i].digest->changes[j]->type, type) == 0 &&
                strcmp(list->items[i].digest->changes[j]->unit_id, unit_id) == 0)
                return (int)i;
    return -1;
}

static void test_clock(void **state)
{
    fixture_t *f = *state;
    char a[ID_LEN], b[ID_LEN], c[ID_LEN], conv_a[ID_LEN];
    register_unit(f, "CLK-A", "Pertuis", NULL, a); /* CT2 */
    register_unit(f, "CLK-B", "Pertuis", NULL, b); /* CT2 */
    register_unit(f, "CLK-C", "Istres", NULL, c);  /* CT5 */
    envisage(f, a, conv_a);
    envisage(f, b, NULL);
    envisage(f, c, NULL);
    made_list_t *list = calloc(1, sizeof *list);
    assert_non_null(list);
    /* A cut after these, then one more change. */
    wait_digests(f, list, time_now_ms(), 1, false);
    digests_free(list);
    step(f, "convention.sign", b);
    int64_t quiet_ms = time_now_ms();
    /* Two cuts after the last change, for every territory. */
    wait_digests(f, list, quiet_ms, 2, false);

    /* Per territory: one after the other, each from the previous cut; the
     * cuts after the changes on whole seconds (a day in a second). */
    for (int t = 1; t <= 6; t++) {
        char territory[8], subject[32];
        snprintf(territory, sizeof territory, "CT%d", t);
        snprintf(subject, sizeof subject, "territories/CT%d", t);
        const Passerelle__Digest *previous = NULL;
        for (size_t i = 0; i < list->count; i++) {
            const Passerelle__Digest *digest = list->items[i].digest;
            if (strcmp(digest->territory, territory) != 0)
                continue;
            assert_string_equal(list->items[i].subject, subject);
            assert_string_equal(digest->since, previous ? previous->until : "");
            int64_t until_ms = parse_ms(digest->until);
            if (previous)
                assert_true(until_ms > parse_ms(previous->until));
            if (until_ms > quiet_ms)
                assert_int_equal(until_ms % 1000, 0);
            previous = digest;
        }
        assert_true(digests_of(list, territory) >= 3);
        /* The last one lists what is envisaged now. */
        size_t expected_units = t == 2 || t == 5 ? 1 : 0;
        assert_int_equal(previous->n_envisaged, expected_units);
        if (t == 2) {
            assert_string_equal(previous->envisaged[0]->unit_id, a);
            assert_string_equal(previous->envisaged[0]->convention_id, conv_a);
            assert_string_equal(previous->envisaged[0]->external_ref, "CLK-A");
        }
        if (t == 5)
            assert_string_equal(previous->envisaged[0]->unit_id, c);
        assert_int_equal(previous->n_changes, 0);
    }
    /* Every change in exactly one digest, in order; the signature in a
     * later digest than the envisaged units, which it does not repeat. */
    char ea[64], eb[64], sb[64], ec[64];
    snprintf(ea, sizeof ea, "convention.envisaged %s", a);
    snprintf(eb, sizeof eb, "convention.envisaged %s", b);
    snprintf(sb, sizeof sb, "convention.signed %s", b);
    snprintf(ec, sizeof ec, "convention.envisaged %s", c);
    const char *ct2[] = {ea, eb, sb};
    const char *ct5[] = {ec};
    expect_changes(list, "CT2", ct2, 3);
    expect_changes(list, "CT5", ct5, 1);
    for (int t = 1; t <= 6; t++) {
        char territory[8];
        snprintf(territory, sizeof territory, "CT%d", t);
        if (t != 2 && t != 5)
            expect_changes(list, territory, NULL, 0);
    }
    int envisaged_at = holding(list, "convention.envisaged", b);
    int signed_at = holding(list, "convention.signed", b);
    assert_true(envisaged_at >= 0 && signed_at > envisaged_at);
    assert_int_equal(list->items[signed_at].digest->n_changes, 1);
    digests_free(list);

    /* What a digest cut is dropped from the projection's changes. */
    redisReply *left = command(f->store, "ZCARD notifications:digest:changes:CT2");
    assert_int_equal(left->integer, 0);
    freeReplyObject(left);

    /* Down over a few cuts: back, it owes the latest one it missed. */
    digest_destroy(&f->digest);
    sleep_ms(2500);
    int64_t missed_ms;
    for (;;) {
        /* The cut it owes is the one before its start: a start on a
         * second's edge would leave that unclear, so it starts again. */
        missed_ms = time_now_ms() / 1000 * 1000;
        digest_start(f, true);
        if (time_now_ms() / 1000 * 1000 == missed_ms)
            break;
        digest_destroy(&f->digest);
    }
    wait_digests(f, list, missed_ms, 1, true);
    digests_free(list);
    free(list);
}

/* ======================== the request ================================== */

typedef struct {
    caller_t caller;
    call_t call;
    reply_t reply;
} request_t;

static void request_init(request_t *r, const char *key, const char *fingerprint)
{
    memset(r, 0, sizeof *r);
    r->caller.party = PARTY_METROPOLE;
    snprintf(r->caller.name, sizeof r->caller.name, "metropole");
    r->call.caller = &r->caller;
    r->call.type = "digest.send";
    r->call.request_id = "req-1";
    r->call.idempotency_key = key;
    r->call.fingerprint = fingerprint;
    r->call.idempotency_ttl_s = 3600;
}

/* Runs the handler; returns the reply's event ids (caller frees with
 * passerelle__digest_send_reply__free_unpacked), from the body or, for a
 * repeat, from the stored first reply. */
static Passerelle__DigestSendReply *send_digest(fixture_t *f, const char *territory,
                                                const char *key, const char *fingerprint,
                                                int status, const char *field)
{
    notify_t notify = {.store = f->store};
    Passerelle__DigestSendRequest req = PASSERELLE__DIGEST_SEND_REQUEST__INIT;
    req.territory = (char *)territory;
    request_t r;
    request_init(&r, key, fingerprint);
    handle_digest_send(&notify, &r.call, &req.base, &r.reply);
    Passerelle__DigestSendReply *sent = NULL;
    if (r.reply.stored) {
        Passerelle__Reply *stored =
            passerelle__reply__unpack(NULL, r.reply.stored_len, r.reply.stored);
        assert_non_null(stored);
        assert_int_equal(stored->status, status);
        sent = passerelle__digest_send_reply__unpack(NULL, stored->body.len, stored->body.data);
        passerelle__reply__free_unpacked(stored, NULL);
    } else {
        if ((int)r.reply.status != status)
            fail_msg("status %d (%s: %s), expected %d", r.reply.status, r.reply.field,
                     r.reply.message, status);
        if (field)
            assert_string_equal(r.reply.field, field);
        if (status == OK)
            sent = passerelle__digest_send_reply__unpack(NULL, r.reply.body_len, r.reply.body);
    }
    assert_false(r.reply.retry);
    free(r.reply.body);
    free(r.reply.stored);
    if (status == OK)
        assert_non_null(sent);
    return sent;
}

static void test_send(void **state)
{
    fixture_t *f = *state;
    char a[ID_LEN];
    register_unit(f, "SND-A", "Pertuis", NULL, a);
    envisage(f, a, NULL);
    wait_projected(f);

    /* One territory. */
    Passerelle__DigestSendReply *one =
        send_digest(f, "CT2", "notifications:idem:test:one", "fp-one", OK, NULL);
    assert_int_equal(one->n_event_ids, 1);
    made_list_t *list = calloc(1, sizeof *list);
    assert_non_null(list);
    digests_read(f, list);
    assert_int_equal(list->count, 1);
    const Passerelle__Digest *digest = digest_by_id(list, one->event_ids[0])->digest;
    assert_string_equal(digest->territory, "CT2");
    assert_string_equal(digest->since, "");
    assert_int_equal(digest->n_envisaged, 1);
    assert_string_equal(digest->envisaged[0]->unit_id, a);
    assert_int_equal(digest->n_changes, 1);
    assert_string_equal(digest->changes[0]->type, "convention.envisaged");
    char first_until[TIME_RFC3339_LEN];
    snprintf(first_until, sizeof first_until, "%s", digest->until);
    digests_free(list);

    /* Retried: the first reply, no second digest. */
    Passerelle__DigestSendReply *again =
        send_digest(f, "CT2", "notifications:idem:test:one", "fp-one", OK, NULL);
    assert_int_equal(again->n_event_ids, 1);
    assert_string_equal(again->event_ids[0], one->event_ids[0]);
    passerelle__digest_send_reply__free_unpacked(again, NULL);
    digests_read(f, list);
    assert_int_equal(list->count, 1);
    digests_free(list);

    /* Another request (any case): from the first's cut, nothing changed. */
    Passerelle__DigestSendReply *next =
        send_digest(f, "ct2", "notifications:idem:test:two", "fp-two", OK, NULL);
    digests_read(f, list);
    assert_int_equal(list->count, 2);
    digest = digest_by_id(list, next->event_ids[0])->digest;
    assert_string_equal(digest->since, first_until);
    assert_int_equal(digest->n_changes, 0);
    assert_int_equal(digest->n_envisaged, 1);
    digests_free(list);
    passerelle__digest_send_reply__free_unpacked(next, NULL);

    /* Every territory, each one digest, even with nothing to say. */
    Passerelle__DigestSendReply *all =
        send_digest(f, NULL, "notifications:idem:test:all", "fp-all", OK, NULL);
    assert_int_equal(all->n_event_ids, 6);
    digests_read(f, list);
    assert_int_equal(list->count, 8);
    for (size_t i = 0; i < 6; i++) {
        const made_t *made = digest_by_id(list, all->event_ids[i]);
        char subject[32];
        snprintf(subject, sizeof subject, "territories/CT%zu", i + 1);
        assert_string_equal(made->subject, subject);
        assert_int_equal(made->digest->n_envisaged, i == 1 ? 1 : 0);
    }
    digests_free(list);
    Passerelle__DigestSendReply *all_again =
        send_digest(f, "", "notifications:idem:test:all", "fp-all", OK, NULL);
    assert_int_equal(all_again->n_event_ids, 6);
    for (size_t i = 0; i < 6; i++)
        assert_string_equal(all_again->event_ids[i], all->event_ids[i]);
    passerelle__digest_send_reply__free_unpacked(all_again, NULL);
    digests_read(f, list);
    assert_int_equal(list->count, 8);
    digests_free(list);

    /* A key used for another request, and territories that are none. */
    send_digest(f, NULL, "notifications:idem:test:one", "fp-other", INVALID_ARGUMENT,
                "idempotency_key");
    send_digest(f, "CT7", "notifications:idem:test:bad", "fp-bad", INVALID_ARGUMENT, "territory");
    send_digest(f, "Pertuis", "notifications:idem:test:bad2", "fp-bad2", INVALID_ARGUMENT,
                "territory");
    digests_read(f, list);
    assert_int_equal(list->count, 8);
    digests_free(list);
    free(list);
    passerelle__digest_send_reply__free_unpacked(one, NULL);
    passerelle__digest_send_reply__free_unpacked(all, NULL);
}

/* A change not yet projected when a digest is cut: the cut stops short of
 * it, so that it is in the next digest rather than in none. */
static void test_watermark(void **state)
{
    fixture_t *f = *state;
    char a[ID_LEN];
    register_unit(f, "WM-A", "Pertuis", NULL, a);
    wait_projected(f); /* the group exists and is up to date */
    digest_destroy(&f->digest);
    envisage(f, a, NULL);
    redisReply *last = command(f->store, "XREVRANGE %s + - COUNT 1", RESERVATIONS);
    int64_t envisaged_ms = strtoll(last->element[0]->element[0]->str, NULL, 10);
    freeReplyObject(last);

    Passerelle__DigestSendReply *early =
        send_digest(f, "CT2", "notifications:idem:test:early", "fp-early", OK, NULL);
    made_list_t *list = calloc(1, sizeof *list);
    assert_non_null(list);
    digests_read(f, list);
    const Passerelle__Digest *digest = digest_by_id(list, early->event_ids[0])->digest;
    assert_true(parse_ms(digest->until) < envisaged_ms);
    assert_int_equal(digest->n_changes, 0);
    assert_int_equal(digest->n_envisaged, 0);
    char early_until[TIME_RFC3339_LEN];
    snprintf(early_until, sizeof early_until, "%s", digest->until);
    digests_free(list);

    digest_start(f, false);
    wait_projected(f);
    Passerelle__DigestSendReply *late =
        send_digest(f, "CT2", "notifications:idem:test:late", "fp-late", OK, NULL);
    digests_read(f, list);
    digest = digest_by_id(list, late->event_ids[0])->digest;
    assert_string_equal(digest->since, early_until);
    assert_int_equal(digest->n_changes, 1);
    assert_string_equal(digest->changes[0]->unit_id, a);
    assert_int_equal(digest->n_envisaged, 1);
    digests_free(list);
    free(list);
    passerelle__digest_send_reply__free_unpacked(early, NULL);
    passerelle__digest_send_reply__free_unpacked(late, NULL);
}

/* The request through the real notifications service: its server runs
 * the handler over its snapshot and commits in groups. */
static void test_send_service(void **state)
{
    fixture_t *f = *state;
    char a[ID_LEN];
    register_unit(f, "SVC-A", "Martigues", NULL, a); /* CT6 */
    envisage(f, a, NULL);

    /* Its own clock still: its daily cut twelve hours away. */
    time_t now_s = time(NULL);
    time_t local_s = now_s + time_paris_offset_s(now_s) + 12 * 3600;
    char at_env[64];
    snprintf(at_env, sizeof at_env, "PASSERELLE_DIGEST_AT=%02d:%02d", (int)(local_s % 86400 / 3600),
             (int)(local_s % 3600 / 60));
    char *env[] = {"PASSERELLE_NOTIFY_CLOCK_SCALE=1", at_env, NULL};
    harness_service_t service;
    assert_int_equal(harness_notify_start(&f->stack, &service, env), 0);
    client_t *metropole = harness_notify_client(&f->stack, &service, "metropole");
    assert_non_null(metropole);
    wait_projected(f);

    Passerelle__DigestSendRequest req = PASSERELLE__DIGEST_SEND_REQUEST__INIT;
    req.territory = "CT6";
    Passerelle__DigestSendReply *replies[4];
    for (int i = 0; i < 4; i++) {
        /* One territory, then all; each sent twice with one key. */
        req.territory = i < 2 ? "CT6" : NULL;
        Passerelle__Reply *reply = harness_call_keyed(metropole, "digest.send", &req.base,
                                                      i < 2 ? "svc-one" : "svc-all", OK, NULL);
        replies[i] = passerelle__digest_send_reply__unpack(NULL, reply->body.len, reply->body.data);
        passerelle__reply__free_unpacked(reply, NULL);
        assert_non_null(replies[i]);
    }
    assert_int_equal(replies[0]->n_event_ids, 1);
    assert_string_equal(replies[1]->event_ids[0], replies[0]->event_ids[0]);
    assert_int_equal(replies[2]->n_event_ids, 6);
    assert_int_equal(replies[3]->n_event_ids, 6);
    for (size_t i = 0; i < 6; i++)
        assert_string_equal(replies[3]->event_ids[i], replies[2]->event_ids[i]);

    made_list_t *list = calloc(1, sizeof *list);
    assert_non_null(list);
    digests_read(f, list);
    assert_int_equal(list->count, 7);
    const Passerelle__Digest *digest = digest_by_id(list, replies[0]->event_ids[0])->digest;
    assert_int_equal(digest->n_envisaged, 1);
    assert_string_equal(digest->envisaged[0]->unit_id, a);
    assert_string_equal(digest->envisaged[0]->commune_name, "Martigues");
    digest = digest_by_id(list, replies[2]->event_ids[5])->digest;
    assert_string_equal(digest->territory, "CT6");
    assert_string_equal(digest->since, digest_by_id(list, replies[0]->event_ids[0])->digest->until);
    digests_free(list);
    free(list);
    for (int i = 0; i < 4; i++)
        passerelle__digest_send_reply__free_unpacked(replies[i], NULL);

    req.territory = "CT0";
    harness_call_refused(metropole, "digest.send", &req.base, INVALID_ARGUMENT, "territory");
    client_destroy(&metropole);
    assert_true(harness_service_stop_clean(&service));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schedule),
        cmocka_unit_test(test_email),
        cmocka_unit_test_setup_teardown(test_projection, setup_still, teardown),
        cmocka_unit_test_setup_teardown(test_out_of_order, setup_still, teardown),
        cmocka_unit_test_setup_teardown(test_clock, setup_fast, teardown),
        cmocka_unit_test_setup_teardown(test_send, setup_still, teardown),
        cmocka_unit_test_setup_teardown(test_watermark, setup_still, teardown),
        cmocka_unit_test_setup_teardown(test_send_service, setup_still, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
