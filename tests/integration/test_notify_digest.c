/* The correspondents' seed and the territory digest, end to end: real
 * Redis, the real reservations and notifications binaries, a webhook sink
 * (tools/passerelle-sink) verifying the seeded secret, and an SMTP sink
 * (tools/passerelle-smtp-sink) keeping each message in a folder.
 *
 *   1. A correspondents file seeds Action Logement's subscriptions (CT1: an
 *      e-mail digest and a webhook with its secret; CT2: an e-mail digest),
 *      once: a restart finds them rather than making them again.
 *   2. CT1's webhook receives CT1's convention events, signed with the
 *      seeded secret; digest.send for CT1 mails CT1's correspondent the
 *      units still envisaged (not the signed one) and the changes; CT2's
 *      correspondent hears only when CT2's digest is sent.
 *   3. An SMTP server that refuses the first message: the digest arrives
 *      at a later attempt, and the attempts log shows the refusal.
 *   4. The schedule, on a fast clock: digests come without any request.
 *
 * The messages are quoted-printable: they are decoded here before being
 * searched. */
#include "harness.h"

#include "ids.h"
#include "notifications.pb-c.h"
#include "reservations.pb-c.h"
#include "store.h"
#include "webhook.h"

#include <dirent.h>
#include <hiredis/hiredis.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#define WAIT_MS       30000
#define POLL_MS       50
#define MAILS_MAX     4096
#define NOTIFY_ENV    8
#define CT1_ADDRESS   "ct1@example.org"
#define CT2_ADDRESS   "ct2@example.org"
#define CT1_EMAIL_REF "correspondent-CT1-email"
#define CT1_HOOK_REF  "correspondent-CT1-webhook"
#define CT2_EMAIL_REF "correspondent-CT2-email"

typedef struct {
    harness_stack_t stack; /* Redis + reservations, client "operator" */
    harness_service_t notify;
    char *notify_env[NOTIFY_ENV]; /* the same at a restart */
    char seed_setting[700];
    char smtp_setting[200];
    char request_setting[96];
    char secret[WEBHOOK_SECRET_MAX]; /* CT1's webhook, agreed beforehand */
    harness_proc_t hook, smtp;
    char hook_out[512];
    char mail_dir[600];
    client_t *admin, *al, *metropole;
} fixture_t;

typedef struct {
    int reject_first;   /* messages the SMTP sink refuses first */
    bool fast_schedule; /* a cut every 300 ms */
} options_t;

/* ====================================================================== */
/* Fixture                                                                */
/* ====================================================================== */

/* The correspondents' file, as operations would write it, with CT1's
 * webhook pointing at the test's sink. */
static int write_correspondents(fixture_t *f, char *path, size_t size)
{
    snprintf(path, size, "%s/correspondents.csv", f->stack.dir);
    FILE *file = fopen(path, "w");
    if (!file)
        return -1;
    fprintf(file,
            "# Action Logement's correspondents, one line per territory\n"
            "territory,name,email,webhook_url,webhook_secret\n"
            "CT1,Correspondant Marseille-Provence," CT1_ADDRESS ",%s,%s\n"
            "\n"
            "CT2,Correspondant Pays d'Aix," CT2_ADDRESS "\n",
            f->hook.url, f->secret);
    return fclose(file) == 0 ? 0 : -1;
}

static int fixture_start(void **state, const options_t *opts)
{
    fixture_t *f = calloc(1, sizeof *f);
    *state = f;
    if (!f || harness_stack_start(&f->stack, "notify-digest", "operator", NULL) != 0)
        return -1;
    webhook_secret_new(f->secret);
    if (harness_sink_start(&f->hook, f->stack.dir, "ct1-hook", f->secret, "ok", f->hook_out) != 0)
        return -1;
    snprintf(f->mail_dir, sizeof f->mail_dir, "%s/mail", f->stack.dir);
    if (mkdir(f->mail_dir, 0755) != 0)
        return -1;
    char reject[16];
    snprintf(reject, sizeof reject, "%d", opts->reject_first);
    const char *smtp_args[] = {"--port", "0", "--out", f->mail_dir, "--reject-first", reject, NULL};
    if (harness_proc_start(&f->smtp, "tools/passerelle-smtp-sink", f->stack.dir, "smtp", smtp_args,
                           true) != 0)
        return -1;

    char path[600];
    if (write_correspondents(f, path, sizeof path) != 0)
        return -1;
    snprintf(f->seed_setting, sizeof f->seed_setting, "PASSERELLE_NOTIFY_CORRESPONDENTS=%s", path);
    snprintf(f->smtp_setting, sizeof f->smtp_setting, "PASSERELLE_SMTP_URL=%s", f->smtp.url);
    /* A port of the system's choosing, the same after a restart (one left
     * to CZMQ comes first free from 49152 up: a test running beside this
     * one would take it while the service is down). */
    snprintf(f->request_setting, sizeof f->request_setting,
             "PASSERELLE_NOTIFICATIONS_ENDPOINT=tcp://127.0.0.1:%d", harness_free_port());
    size_t n = 0;
    f->notify_env[n++] = f->request_setting;
    f->notify_env[n++] = f->seed_setting;
    f->notify_env[n++] = f->smtp_setting;
    if (opts->fast_schedule) {
        /* digest.c: a step of interval / scale = 60 s / 200 = 300 ms, the
         * cuts every step from 07:00 Paris time each day. */
        f->notify_env[n++] = "PASSERELLE_DIGEST_INTERVAL_S=60";
        f->notify_env[n++] = "PASSERELLE_NOTIFY_CLOCK_SCALE=200";
    } else {
        /* Hardly ever a cut by the clock (every 31 days / 10 = 3.1 days,
         * counted from 1970), and retries ten times sooner (0.5 s). */
        f->notify_env[n++] = "PASSERELLE_DIGEST_INTERVAL_S=2678400";
        f->notify_env[n++] = "PASSERELLE_NOTIFY_CLOCK_SCALE=10";
    }
    f->notify_env[n] = NULL;
    if (harness_notify_start(&f->stack, &f->notify, f->notify_env) != 0)
        return -1;
    f->admin = harness_notify_client(&f->stack, &f->notify, "admin");
    f->al = harness_notify_client(&f->stack, &f->notify, "action_logement");
    f->metropole = harness_notify_client(&f->stack, &f->notify, "metropole");
    return f->admin && f->al && f->metropole ? 0 : -1;
}

static int setup(void **state)
{
    const options_t opts = {0};
    return fixture_start(state, &opts);
}

static int setup_reject_first(void **state)
{
    const options_t opts = {.reject_first = 1};
    return fixture_start(state, &opts);
}

static int setup_fast_schedule(void **state)
{
    const options_t opts = {.fast_schedule = true};
    return fixture_start(state, &opts);
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    if (!f)
        return 0;
    client_destroy(&f->admin);
    client_destroy(&f->al);
    client_destroy(&f->metropole);
    bool clean = f->notify.pid <= 0 || harness_service_stop_clean(&f->notify);
    harness_proc_stop(&f->hook, SIGTERM);
    harness_proc_stop(&f->smtp, SIGTERM);
    /* Under PASSERELLE_SANITIZE=ON each process reports into its output. */
    const char *outputs[] = {f->notify.log_path, f->hook.stdout_path, f->smtp.stdout_path};
    bool sane = true;
    for (size_t i = 0; i < sizeof outputs / sizeof outputs[0]; i++)
        sane &= !outputs[i][0] || !harness_log_has_sanitizer_report(outputs[i]);
    bool stack_clean = harness_stack_stop(&f->stack);
    free(f);
    return clean && sane && stack_clean ? 0 : -1;
}

/* ====================================================================== */
/* Subscriptions                                                          */
/* ====================================================================== */

/* Every subscription the client may see (one page: a test has few).
 * Caller frees with passerelle__subscription_list__free_unpacked. */
static Passerelle__SubscriptionList *subs_list(client_t *client)
{
    Passerelle__SubscriptionListRequest req = PASSERELLE__SUBSCRIPTION_LIST_REQUEST__INIT;
    req.has_page_size = true;
    req.page_size = 500;
    Passerelle__Reply *reply = harness_call(client, "subscription.list", &req.base, 0, NULL);
    Passerelle__SubscriptionList *list =
        passerelle__subscription_list__unpack(NULL, reply->body.len, reply->body.data);
    passerelle__reply__free_unpacked(reply, NULL);
    assert_non_null(list);
    return list;
}

static const Passerelle__Subscription *sub_by_ref(const Passerelle__SubscriptionList *list,
                                                  const char *ref)
{
    for (size_t i = 0; i < list->n_subscriptions; i++)
        if (list->subscriptions[i]->ref && strcmp(list->subscriptions[i]->ref, ref) == 0)
            return list->subscriptions[i];
    return NULL;
}

/* The id (ID_LEN) of the seeded subscription ref, as ADMIN sees it. */
static void seeded_id(fixture_t *f, const char *ref, char *id)
{
    Passerelle__SubscriptionList *list = subs_list(f->admin);
    const Passerelle__Subscription *sub = sub_by_ref(list, ref);
    assert_non_null(sub);
    snprintf(id, ID_LEN, "%s", sub->id);
    passerelle__subscription_list__free_unpacked(list, NULL);
}

/* ====================================================================== */
/* Events and the digest's projection                                     */
/* ====================================================================== */

static void convention_sign(fixture_t *f, const char *unit)
{
    Passerelle__ConventionStepRequest req = PASSERELLE__CONVENTION_STEP_REQUEST__INIT;
    req.unit = (char *)unit;
    passerelle__reply__free_unpacked(
        harness_call(f->stack.client, "convention.sign", &req.base, 0, NULL), NULL);
}

/* The string value of a field of a flat [name, value, ...] reply. */
static const char *flat_str(const redisReply *fields, const char *name)
{
    for (size_t i = 0; fields && i + 1 < fields->elements; i += 2)
        if (fields->element[i]->type == REDIS_REPLY_STRING &&
            strcmp(fields->element[i]->str, name) == 0 &&
            fields->element[i + 1]->type == REDIS_REPLY_STRING)
            return fields->element[i + 1]->str;
    return NULL;
}

static long long flat_int(const redisReply *fields, const char *name)
{
    for (size_t i = 0; fields && i + 1 < fields->elements; i += 2)
        if (fields->element[i]->type == REDIS_REPLY_STRING &&
            strcmp(fields->element[i]->str, name) == 0 &&
            fields->element[i + 1]->type == REDIS_REPLY_INTEGER)
            return fields->element[i + 1]->integer;
    return -1;
}

/* True when the digest's consumer group has taken and finished every entry
 * of the reservations stream. */
static bool projection_caught_up(store_t *store)
{
    redisReply *last = NULL, *groups = NULL;
    bool done = false;
    if (store_command(store, &last, "XREVRANGE reservations:events + - COUNT 1") == STORE_OK &&
        store_command(store, &groups, "XINFO GROUPS reservations:events") == STORE_OK &&
        last->type == REDIS_REPLY_ARRAY && last->elements == 1 &&
        groups->type == REDIS_REPLY_ARRAY) {
        const char *last_id = last->element[0]->element[0]->str;
        for (size_t i = 0; i < groups->elements; i++) {
            const redisReply *group = groups->element[i];
            const char *name = flat_str(group, "name");
            const char *delivered = flat_str(group, "last-delivered-id");
            if (name && strcmp(name, "notifications.digest") == 0 && delivered &&
                strcmp(delivered, last_id) == 0 && flat_int(group, "pending") == 0)
                done = true;
        }
    }
    if (last)
        freeReplyObject(last);
    if (groups)
        freeReplyObject(groups);
    return done;
}

/* Waits until the digest has applied every event so far, so that a digest
 * asked for now holds them all (a cut stops at what is applied). */
static void wait_projection(fixture_t *f)
{
    store_config_t cfg;
    harness_redis_config(&f->stack.redis, &cfg);
    store_t *store = store_new(&cfg);
    assert_non_null(store);
    bool done = false;
    for (int waited = 0; !done && waited < WAIT_MS; waited += POLL_MS) {
        done = projection_caught_up(store);
        if (!done)
            usleep(POLL_MS * 1000);
    }
    store_destroy(&store);
    if (!done)
        fail_msg("the digest did not apply the reservations stream within %d ms", WAIT_MS);
}

/* digest.send for a territory by client; the event made into event_id. */
static void digest_send(client_t *client, const char *territory, char *event_id)
{
    Passerelle__DigestSendRequest req = PASSERELLE__DIGEST_SEND_REQUEST__INIT;
    req.territory = (char *)territory;
    Passerelle__Reply *reply = harness_call(client, "digest.send", &req.base, 0, NULL);
    Passerelle__DigestSendReply *sent =
        passerelle__digest_send_reply__unpack(NULL, reply->body.len, reply->body.data);
    passerelle__reply__free_unpacked(reply, NULL);
    assert_non_null(sent);
    assert_int_equal(sent->n_event_ids, 1);
    snprintf(event_id, ID_LEN, "%s", sent->event_ids[0]);
    passerelle__digest_send_reply__free_unpacked(sent, NULL);
}

/* ====================================================================== */
/* The messages                                                           */
/* ====================================================================== */

/* One message the SMTP sink kept: its envelope recipient, headers, and
 * body decoded from quoted-printable into UTF-8 lines ending in '\n'. */
typedef struct {
    char to[128];
    char *headers;
    char *body;
} mail_t;

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Quoted-printable (RFC 2045) to bytes: "=XX" is a byte, "=" at a line's
 * end a soft break; CRLF becomes '\n'. malloc'd, NUL-terminated. */
static char *qp_decode(const char *in, size_t len)
{
    char *out = malloc(len + 1);
    assert_non_null(out);
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        if (in[i] == '=') {
            if (i + 2 < len && in[i + 1] == '\r' && in[i + 2] == '\n') {
                i += 3;
                continue;
            }
            if (i + 1 < len && in[i + 1] == '\n') {
                i += 2;
                continue;
            }
            int high = i + 2 < len ? hex_value(in[i + 1]) : -1;
            int low = i + 2 < len ? hex_value(in[i + 2]) : -1;
            if (high >= 0 && low >= 0) {
                out[n++] = (char)(high * 16 + low);
                i += 3;
                continue;
            }
        }
        if (in[i] == '\r' && i + 1 < len && in[i + 1] == '\n') {
            out[n++] = '\n';
            i += 2;
            continue;
        }
        out[n++] = in[i++];
    }
    out[n] = '\0';
    return out;
}

/* The value of a header line "Name: value" (up to its CRLF), into out. */
static void header_value(const char *headers, const char *name, char *out, size_t size)
{
    out[0] = '\0';
    size_t name_len = strlen(name);
    for (const char *line = headers; line && *line;) {
        if (strncmp(line, name, name_len) == 0 && line[name_len] == ':') {
            const char *value = line + name_len + 1;
            while (*value == ' ')
                value++;
            size_t len = strcspn(value, "\r\n");
            snprintf(out, size, "%.*s", (int)(len < size ? len : size - 1), value);
            return;
        }
        line = strchr(line, '\n');
        if (line)
            line++;
    }
}

static int name_order(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every message kept so far, in the order received (NNNNNN.eml). Returns
 * how many; mails_free releases them. */
static size_t mails_read(const fixture_t *f, mail_t *mails, size_t max)
{
    DIR *dir = opendir(f->mail_dir);
    assert_non_null(dir);
    char *names[MAILS_MAX];
    size_t n_names = 0;
    struct dirent *entry;
    while ((entry = readdir(dir)) && n_names < MAILS_MAX) {
        size_t len = strlen(entry->d_name);
        if (entry->d_name[0] != '.' && len > 4 && strcmp(entry->d_name + len - 4, ".eml") == 0)
            names[n_names++] = strdup(entry->d_name);
    }
    closedir(dir);
    qsort(names, n_names, sizeof names[0], name_order);
    size_t n = 0;
    for (size_t i = 0; i < n_names; i++) {
        char path[800];
        snprintf(path, sizeof path, "%s/%s", f->mail_dir, names[i]);
        free(names[i]);
        if (n == max)
            continue;
        size_t len = 0;
        char *text = harness_file_read(path, &len);
        char *split = strstr(text, "\r\n\r\n");
        assert_non_null(split);
        mail_t *mail = &mails[n++];
        mail->headers = strndup(text, (size_t)(split - text) + 2);
        const char *body = split + 4;
        mail->body = qp_decode(body, len - (size_t)(body - text));
        header_value(mail->headers, "X-Sink-Envelope-To", mail->to, sizeof mail->to);
        free(text);
    }
    return n;
}

static void mails_free(mail_t *mails, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(mails[i].headers);
        free(mails[i].body);
    }
}

/* How many messages went to address. */
static size_t mails_to(const mail_t *mails, size_t n, const char *address)
{
    size_t count = 0;
    for (size_t i = 0; i < n; i++)
        count += strcmp(mails[i].to, address) == 0;
    return count;
}

/* Waits until at least count messages went to address; returns how many
 * messages there are in all (mails filled, up to max). */
static size_t mails_wait(const fixture_t *f, const char *address, size_t count, mail_t *mails,
                         size_t max)
{
    size_t n = 0;
    for (int waited = 0;; waited += POLL_MS) {
        n = mails_read(f, mails, max);
        if (mails_to(mails, n, address) >= count || waited >= WAIT_MS)
            break;
        mails_free(mails, n);
        usleep(POLL_MS * 1000);
    }
    if (mails_to(mails, n, address) < count)
        fail_msg("%zu message(s) for %s within %d ms, not %zu", mails_to(mails, n, address),
                 address, WAIT_MS, count);
    return n;
}

/* The body's part about the listed units, and the part about the changes
 * (split at the changes' heading; each malloc'd). */
static void body_parts(const char *body, char **listed, char **changes)
{
    const char *heading = strstr(body, "Changes during the period");
    assert_non_null(heading);
    *listed = strndup(body, (size_t)(heading - body));
    *changes = strdup(heading);
}

/* The line of text holding both needles, or false. */
static bool line_with(const char *text, const char *a, const char *b)
{
    for (const char *line = text; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        char *copy = strndup(line, len);
        bool found = strstr(copy, a) && strstr(copy, b);
        free(copy);
        if (found)
            return true;
        line = end ? end + 1 : NULL;
    }
    return false;
}

/* ====================================================================== */
/* 1. The seed                                                            */
/* ====================================================================== */

static void expect_seeded(const Passerelle__SubscriptionList *list, const fixture_t *f)
{
    assert_int_equal(list->n_subscriptions, 3);
    const Passerelle__Subscription *mail1 = sub_by_ref(list, CT1_EMAIL_REF);
    const Passerelle__Subscription *hook1 = sub_by_ref(list, CT1_HOOK_REF);
    const Passerelle__Subscription *mail2 = sub_by_ref(list, CT2_EMAIL_REF);
    assert_non_null(mail1);
    assert_non_null(hook1);
    assert_non_null(mail2);
    assert_null(sub_by_ref(list, "correspondent-CT2-webhook"));
    for (size_t i = 0; i < list->n_subscriptions; i++) {
        const Passerelle__Subscription *sub = list->subscriptions[i];
        assert_string_equal(sub->owner_party, "ACTION_LOGEMENT");
        assert_int_equal(sub->state, PASSERELLE__SUBSCRIPTION_STATE__SUBSCRIPTION_ACTIVE);
        assert_int_equal(sub->n_territories, 1);
        assert_null(sub->secret);
    }
    assert_int_equal(mail1->channel, PASSERELLE__CHANNEL__CHANNEL_EMAIL);
    assert_string_equal(mail1->email, CT1_ADDRESS);
    assert_string_equal(mail1->territories[0], "CT1");
    assert_int_equal(mail2->channel, PASSERELLE__CHANNEL__CHANNEL_EMAIL);
    assert_string_equal(mail2->email, CT2_ADDRESS);
    assert_string_equal(mail2->territories[0], "CT2");
    assert_int_equal(hook1->channel, PASSERELLE__CHANNEL__CHANNEL_WEBHOOK);
    assert_string_equal(hook1->url, f->hook.url);
    assert_string_equal(hook1->territories[0], "CT1");
    assert_int_equal(hook1->n_event_types, 1);
    assert_string_equal(hook1->event_types[0], "convention.*");
}

static void test_seed_makes_the_subscriptions_once(void **state)
{
    fixture_t *f = *state;
    Passerelle__SubscriptionList *before = subs_list(f->admin);
    expect_seeded(before, f);
    /* They are Action Logement's own. */
    Passerelle__SubscriptionList *own = subs_list(f->al);
    assert_int_equal(own->n_subscriptions, 3);
    passerelle__subscription_list__free_unpacked(own, NULL);

    /* A restart reads the same file and finds them by their refs. */
    assert_true(harness_service_stop_clean(&f->notify));
    assert_int_equal(harness_notify_restart(&f->stack, &f->notify, f->notify_env), 0);
    Passerelle__SubscriptionList *after = subs_list(f->admin);
    expect_seeded(after, f);
    static const char *const refs[] = {CT1_EMAIL_REF, CT1_HOOK_REF, CT2_EMAIL_REF};
    for (size_t i = 0; i < 3; i++)
        assert_string_equal(sub_by_ref(after, refs[i])->id, sub_by_ref(before, refs[i])->id);
    passerelle__subscription_list__free_unpacked(before, NULL);
    passerelle__subscription_list__free_unpacked(after, NULL);
}

/* ====================================================================== */
/* 2. Webhook and digest of a territory                                   */
/* ====================================================================== */

static const char *str(const json_t *obj, const char *path)
{
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    const json_t *at = obj;
    char *save = NULL;
    for (char *k = strtok_r(buf, ".", &save); k && at; k = strtok_r(NULL, ".", &save))
        at = json_object_get(at, k);
    return at && json_is_string(at) ? json_string_value(at) : "";
}

static void test_webhook_and_digest_of_a_territory(void **state)
{
    fixture_t *f = *state;
    char ciotat[ID_LEN], cassis[ID_LEN], pertuis[ID_LEN];
    harness_envisaged_unit(f->stack.client, "ANAH-13-DG01", "La Ciotat", ciotat);
    harness_envisaged_unit(f->stack.client, "ANAH-13-DG02", "Cassis", cassis);
    harness_envisaged_unit(f->stack.client, "ANAH-84-DG03", "Pertuis", pertuis);
    convention_sign(f, cassis);

    /* CT1's webhook: its three convention events, signed with the secret
     * of the correspondents' file; nothing of CT2. */
    json_t *lines = harness_jsonl_wait(f->hook_out, 3, WAIT_MS);
    assert_int_equal(json_array_size(lines), 3);
    /* Two units: their events may come in either order between them, but
     * Cassis's signing comes after its envisaging. */
    int ciotat_envisaged = -1, cassis_envisaged = -1, cassis_signed = -1;
    size_t i;
    json_t *line;
    json_array_foreach(lines, i, line)
    {
        assert_string_equal(str(line, "signature"), "verified");
        assert_int_equal(json_integer_value(json_object_get(line, "answered")), 200);
        assert_string_equal(str(line, "body.data.unit.territory"), "CT1");
        const char *type = str(line, "type"), *unit = str(line, "body.data.unit.id");
        if (strcmp(type, "convention.envisaged") == 0 && strcmp(unit, ciotat) == 0)
            ciotat_envisaged = (int)i;
        else if (strcmp(type, "convention.envisaged") == 0 && strcmp(unit, cassis) == 0)
            cassis_envisaged = (int)i;
        else if (strcmp(type, "convention.signed") == 0 && strcmp(unit, cassis) == 0)
            cassis_signed = (int)i;
        else
            fail_msg("unexpected delivery: %s about %s", type, unit);
    }
    assert_true(ciotat_envisaged >= 0 && cassis_envisaged >= 0);
    assert_true(cassis_signed > cassis_envisaged);
    json_decref(lines);

    wait_projection(f);
    char event_id[ID_LEN];
    digest_send(f->metropole, "CT1", event_id);
    mail_t mails[8];
    size_t n = mails_wait(f, CT1_ADDRESS, 1, mails, 8);
    assert_int_equal(n, 1);
    char to[128], subject[256];
    header_value(mails[0].headers, "To", to, sizeof to);
    header_value(mails[0].headers, "Subject", subject, sizeof subject);
    assert_string_equal(to, CT1_ADDRESS);
    assert_string_equal(subject, "Passerelle - CT1 - 1 unit with an envisaged ANAH convention");
    char *listed = NULL, *changes = NULL;
    body_parts(mails[0].body, &listed, &changes);
    /* The unit still envisaged, not the signed one... */
    harness_assert_contains(listed, "Territory: CT1");
    harness_assert_contains(listed, "not yet signed: 1\n");
    assert_true(line_with(listed, "ANAH-13-DG01", "La Ciotat"));
    harness_assert_contains(listed, ciotat);
    assert_null(strstr(listed, "ANAH-13-DG02"));
    assert_null(strstr(listed, "ANAH-84-DG03"));
    /* ...and every change of the territory. */
    harness_assert_contains(changes, "Changes during the period: 3\n");
    assert_true(line_with(changes, "envisaged", "ANAH-13-DG01"));
    assert_true(line_with(changes, "envisaged", "ANAH-13-DG02"));
    assert_true(line_with(changes, "signed", "ANAH-13-DG02"));
    assert_null(strstr(changes, "ANAH-84-DG03"));
    /* Decoded whole: soft line breaks joined, UTF-8 escapes made bytes. */
    harness_assert_contains(changes, "the Métropole Aix-Marseille-Provence and its");
    free(listed);
    free(changes);
    mails_free(mails, n);

    /* CT2's correspondent was not written to, nor tried. */
    char ct2_mail[ID_LEN];
    seeded_id(f, CT2_EMAIL_REF, ct2_mail);
    Passerelle__AttemptList *tried = harness_notify_attempts(f->al, ct2_mail);
    assert_int_equal(tried->n_attempts, 0);
    passerelle__attempt_list__free_unpacked(tried, NULL);

    /* Until CT2's digest is sent. */
    digest_send(f->admin, "CT2", event_id);
    n = mails_wait(f, CT2_ADDRESS, 1, mails, 8);
    assert_int_equal(n, 2);
    assert_string_equal(mails[1].to, CT2_ADDRESS);
    body_parts(mails[1].body, &listed, &changes);
    assert_true(line_with(listed, "ANAH-84-DG03", "Pertuis"));
    assert_null(strstr(listed, "ANAH-13-"));
    assert_true(line_with(changes, "envisaged", "ANAH-84-DG03"));
    free(listed);
    free(changes);
    mails_free(mails, n);

    /* The digests are for e-mail: the webhook took convention events only. */
    lines = harness_jsonl_read(f->hook_out);
    assert_int_equal(json_array_size(lines), 3);
    json_decref(lines);
}

/* ====================================================================== */
/* 3. The SMTP server refuses the first message                           */
/* ====================================================================== */

static void test_refused_mail_is_retried(void **state)
{
    fixture_t *f = *state;
    char unit[ID_LEN], event_id[ID_LEN], ct1_mail[ID_LEN];
    harness_envisaged_unit(f->stack.client, "ANAH-13-DG11", "La Ciotat", unit);
    wait_projection(f);
    digest_send(f->metropole, "CT1", event_id);

    mail_t mails[8];
    size_t n = mails_wait(f, CT1_ADDRESS, 1, mails, 8);
    assert_int_equal(n, 1);
    assert_true(line_with(mails[0].body, "ANAH-13-DG11", "La Ciotat"));
    mails_free(mails, n);

    /* The log: the refusal, then the delivery (recorded just after the
     * message is kept: waited for). */
    seeded_id(f, CT1_EMAIL_REF, ct1_mail);
    Passerelle__AttemptList *log = NULL;
    for (int waited = 0; waited < WAIT_MS; waited += POLL_MS) {
        log = harness_notify_attempts(f->al, ct1_mail);
        if (log->n_attempts >= 2 && strcmp(log->attempts[0]->outcome, "delivered") == 0)
            break;
        passerelle__attempt_list__free_unpacked(log, NULL);
        log = NULL;
        usleep(POLL_MS * 1000);
    }
    assert_non_null(log);
    assert_int_equal(log->n_attempts, 2);
    const Passerelle__DeliveryAttempt *refused = log->attempts[1], *sent = log->attempts[0];
    assert_string_equal(refused->outcome, "retry");
    assert_int_equal(refused->attempt, 1);
    assert_int_equal(refused->http_status, 451);
    assert_non_null(refused->next_attempt_at);
    assert_string_equal(sent->outcome, "delivered");
    assert_int_equal(sent->attempt, 2);
    assert_int_equal(sent->http_status, 250);
    /* The same delivery both times: a retried digest is the same message. */
    assert_string_equal(refused->delivery_id, sent->delivery_id);
    assert_string_equal(sent->event_type, "digest.ready");
    passerelle__attempt_list__free_unpacked(log, NULL);
}

/* ====================================================================== */
/* 4. The schedule                                                        */
/* ====================================================================== */

static void test_scheduled_digest_comes_unasked(void **state)
{
    fixture_t *f = *state;
    char unit[ID_LEN];
    harness_envisaged_unit(f->stack.client, "ANAH-84-DG21", "Pertuis", unit);
    /* No digest.send: the clock cuts a digest of every territory each
     * 300 ms. The first that lists the unit is enough. */
    static mail_t mails[MAILS_MAX];
    bool listed = false;
    size_t n = 0;
    for (int waited = 0; !listed && waited < WAIT_MS; waited += POLL_MS) {
        n = mails_read(f, mails, MAILS_MAX);
        for (size_t i = 0; i < n && !listed; i++)
            listed = strcmp(mails[i].to, CT2_ADDRESS) == 0 &&
                     line_with(mails[i].body, "ANAH-84-DG21", "Pertuis");
        mails_free(mails, n);
        if (!listed)
            usleep(POLL_MS * 1000);
    }
    if (!listed)
        fail_msg("no digest listing the unit reached %s within %d ms (%zu messages)", CT2_ADDRESS,
                 WAIT_MS, n);
    /* CT1's correspondent is told too, that there is nothing. */
    n = mails_wait(f, CT1_ADDRESS, 1, mails, MAILS_MAX);
    bool told = false;
    for (size_t i = 0; i < n; i++)
        told |= strcmp(mails[i].to, CT1_ADDRESS) == 0 &&
                strstr(mails[i].body, "not yet signed: 0\n") != NULL;
    mails_free(mails, n);
    assert_true(told);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_seed_makes_the_subscriptions_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_webhook_and_digest_of_a_territory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_mail_is_retried, setup_reject_first, teardown),
        cmocka_unit_test_setup_teardown(test_scheduled_digest_comes_unasked, setup_fast_schedule,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
