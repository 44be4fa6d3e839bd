/* Webhooks end to end: real Redis, the real reservations and notifications
 * binaries, and webhook sinks (tools/passerelle-sink) that verify the
 * Standard Webhooks signature of what they receive. An envisaged
 * convention reaches its territory's subscriber, signed, as a CloudEvent;
 * filters by type and territory hold; per-subject order holds across
 * retries; Retry-After, dead letters and their replay (same webhook-id);
 * 410 disables the endpoint and the owner hears of it on another channel;
 * the allowlist and the owner-only rule refuse what they must; a paused
 * subscription holds its deliveries until resumed; a rotated secret keeps
 * the old one signing; an endpoint that does not answer in time is tried
 * again; a crash between a claim and its outcome sends the delivery again,
 * same webhook-id, still ahead of the unit's next event; the due set of
 * earlier versions is taken over. */
#include "harness.h"

#include "ids.h"
#include "notifications.pb-c.h"
#include "store.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <unistd.h>

#include <cmocka.h>

#define WAIT_MS             20000
#define NOTIFY_KEY_MAX_TEST 320

typedef struct {
    harness_stack_t stack; /* Redis + reservations, client "operator" */
    harness_service_t notify;
    client_t *admin, *al, *partner;
    harness_proc_t sinks[3];
    char out[3][512];
} fixture_t;

static int fixture_start(void **state, char *const extra_env[])
{
    fixture_t *f = calloc(1, sizeof *f);
    *state = f;
    if (!f || harness_stack_start(&f->stack, "notify", "operator", NULL) != 0)
        return -1;
    if (harness_notify_start(&f->stack, &f->notify, extra_env) != 0)
        return -1;
    f->admin = harness_notify_client(&f->stack, &f->notify, "admin");
    f->al = harness_notify_client(&f->stack, &f->notify, "action_logement");
    f->partner = harness_notify_client(&f->stack, &f->notify, "partner");
    return f->admin && f->al && f->partner ? 0 : -1;
}

static int setup(void **state)
{
    return fixture_start(state, NULL);
}

/* Retries all spent within a second; endpoints never disabled for failing
 * long (the dead-letter path needs every attempt). */
static int setup_fast(void **state)
{
    static char *env[] = {"PASSERELLE_NOTIFY_CLOCK_SCALE=1000000",
                          "PASSERELLE_NOTIFY_DISABLE_AFTER_S=31536000", NULL};
    return fixture_start(state, env);
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    if (!f)
        return 0;
    client_destroy(&f->admin);
    client_destroy(&f->al);
    client_destroy(&f->partner);
    bool clean = f->notify.pid <= 0 || harness_service_stop_clean(&f->notify);
    for (int i = 0; i < 3; i++)
        harness_proc_stop(&f->sinks[i], SIGTERM);
    bool stack_clean = harness_stack_stop(&f->stack);
    free(f);
    return clean && stack_clean ? 0 : -1;
}

static void sink(fixture_t *f, int i, const char *secret, const char *mode)
{
    char tag[16];
    snprintf(tag, sizeof tag, "sink%d", i);
    assert_int_equal(harness_sink_start(&f->sinks[i], f->stack.dir, tag, secret, mode, f->out[i]),
                     0);
}

static void sink_mode(fixture_t *f, int i, const char *mode)
{
    char tag[16];
    snprintf(tag, sizeof tag, "sink%d", i);
    harness_sink_mode(f->stack.dir, tag, mode);
}

static const char *str(const json_t *obj, const char *path)
{
    /* "a.b.c" into nested objects */
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    const json_t *at = obj;
    char *save = NULL;
    for (char *k = strtok_r(buf, ".", &save); k && at; k = strtok_r(NULL, ".", &save))
        at = json_object_get(at, k);
    return at && json_is_string(at) ? json_string_value(at) : "";
}

/* The lines of a sink answered 2xx. */
static size_t delivered(const json_t *lines, json_t *out)
{
    size_t i, n = 0;
    json_t *line;
    json_array_foreach(lines, i, line)
    {
        json_int_t answered = json_integer_value(json_object_get(line, "answered"));
        if (answered >= 200 && answered < 300) {
            if (out)
                json_array_append(out, line);
            n++;
        }
    }
    return n;
}

/* Waits until the sink has answered 2xx to at least count requests; returns
 * those lines. */
static json_t *wait_delivered(fixture_t *f, int i, size_t count)
{
    json_t *ok = json_array();
    for (int waited = 0; waited < WAIT_MS; waited += 50) {
        json_t *lines = harness_jsonl_read(f->out[i]);
        json_array_clear(ok);
        size_t n = delivered(lines, ok);
        json_decref(lines);
        if (n >= count)
            return ok;
        usleep(50 * 1000);
    }
    return ok;
}

static Passerelle__Subscription *sub_get(client_t *c, const char *id, int status)
{
    Passerelle__SubscriptionGetRequest req = PASSERELLE__SUBSCRIPTION_GET_REQUEST__INIT;
    req.id = (char *)id;
    Passerelle__Reply *reply = harness_call(c, "subscription.get", &req.base, status, NULL);
    Passerelle__Subscription *sub =
        status == 0 ? passerelle__subscription__unpack(NULL, reply->body.len, reply->body.data)
                    : NULL;
    passerelle__reply__free_unpacked(reply, NULL);
    return sub;
}

/* ====================================================================== */

static void test_envisaged_reaches_its_territory(void **state)
{
    fixture_t *f = *state;
    char secret_a[128], secret_b[128], sa[ID_LEN], sb[ID_LEN], u1[ID_LEN], u2[ID_LEN];
    /* A subscriber learns its secret when it subscribes; the sink is then
     * started with it on a port the test chose beforehand. */
    int port_a = harness_free_port(), port_b = harness_free_port();
    char url_a[64], url_b[64], pa[16], pb[16];
    snprintf(url_a, sizeof url_a, "http://127.0.0.1:%d/hook", port_a);
    snprintf(url_b, sizeof url_b, "http://127.0.0.1:%d/hook", port_b);
    snprintf(pa, sizeof pa, "%d", port_a);
    snprintf(pb, sizeof pb, "%d", port_b);
    harness_notify_webhook(f->al, url_a, "convention.*", "CT1", sa, secret_a);
    harness_notify_webhook(f->al, url_b, "convention.envisaged", "CT2", sb, secret_b);
    snprintf(f->out[0], sizeof f->out[0], "%s/a.jsonl", f->stack.dir);
    snprintf(f->out[1], sizeof f->out[1], "%s/b.jsonl", f->stack.dir);
    const char *args_a[] = {"--port", pa, "--secret", secret_a, "--out", f->out[0], NULL};
    const char *args_b[] = {"--port", pb, "--secret", secret_b, "--out", f->out[1], NULL};
    assert_int_equal(
        harness_proc_start(&f->sinks[0], "tools/passerelle-sink", f->stack.dir, "a", args_a, true),
        0);
    assert_int_equal(
        harness_proc_start(&f->sinks[1], "tools/passerelle-sink", f->stack.dir, "b", args_b, true),
        0);

    harness_envisaged_unit(f->stack.client, "ANAH-13-0001", "La Ciotat", u1);
    json_t *got = wait_delivered(f, 0, 1);
    assert_int_equal(json_array_size(got), 1);
    json_t *line = json_array_get(got, 0);
    assert_string_equal(str(line, "signature"), "verified");
    assert_string_equal(str(line, "content_type"), "application/cloudevents+json");
    assert_string_equal(str(line, "type"), "convention.envisaged");
    assert_string_equal(str(line, "body.specversion"), "1.0");
    assert_string_equal(str(line, "body.data.unit.territory"), "CT1");
    assert_string_equal(str(line, "body.data.unit.id"), u1);
    assert_true(strncmp(str(line, "webhook_id"), "msg_E", 5) == 0);
    json_decref(got);

    /* CT2's subscriber gets CT2's envisaged convention, and only that. */
    harness_envisaged_unit(f->stack.client, "ANAH-84-0002", "Pertuis", u2);
    got = wait_delivered(f, 1, 1);
    assert_int_equal(json_array_size(got), 1);
    assert_string_equal(str(json_array_get(got, 0), "body.data.unit.id"), u2);
    assert_string_equal(str(json_array_get(got, 0), "signature"), "verified");
    json_decref(got);
    /* unit.registered matched neither; CT1's sink still has one. */
    json_t *lines = harness_jsonl_read(f->out[0]);
    assert_int_equal(json_array_size(lines), 1);
    json_decref(lines);
}

static void convention_step(fixture_t *f, const char *type, const char *unit)
{
    Passerelle__ConventionStepRequest req = PASSERELLE__CONVENTION_STEP_REQUEST__INIT;
    req.unit = (char *)unit;
    Passerelle__Reply *reply = harness_call(f->stack.client, type, &req.base, 0, NULL);
    passerelle__reply__free_unpacked(reply, NULL);
}

static void test_order_kept_across_retries(void **state)
{
    fixture_t *f = *state;
    sink(f, 0, NULL, "flaky");
    char id[ID_LEN], units[3][ID_LEN];
    harness_notify_webhook(f->al, f->sinks[0].url, "convention.*", "", id, NULL);
    const char *refs[3] = {"ANAH-13-0101", "ANAH-13-0102", "ANAH-13-0103"};
    for (int u = 0; u < 3; u++)
        harness_envisaged_unit(f->stack.client, refs[u], "La Ciotat", units[u]);
    for (int u = 0; u < 3; u++) {
        convention_step(f, "convention.sign", units[u]);
        convention_step(f, "convention.in_force", units[u]);
    }
    json_t *got = wait_delivered(f, 0, 9);
    assert_int_equal(json_array_size(got), 9);
    json_decref(got);
    /* Per unit, in the order they happened, whatever failed in between. */
    json_t *lines = harness_jsonl_read(f->out[0]);
    const char *order[3] = {"convention.envisaged", "convention.signed", "convention.in_force"};
    for (int u = 0; u < 3; u++) {
        int next = 0;
        size_t i;
        json_t *line;
        json_array_foreach(lines, i, line)
        {
            if (strcmp(str(line, "body.data.unit.id"), units[u]) != 0)
                continue;
            const char *type = str(line, "type");
            int k = 0;
            while (k < 3 && strcmp(order[k], type) != 0)
                k++;
            assert_true(k < 3);
            /* A repeat of the one before is fine; a later one first is not. */
            assert_true(k <= next);
            json_int_t answered = json_integer_value(json_object_get(line, "answered"));
            if (k == next && answered >= 200 && answered < 300)
                next++;
        }
        assert_int_equal(next, 3);
    }
    json_decref(lines);

    /* The attempts log shows the failures and the successes. */
    Passerelle__AttemptListRequest req = PASSERELLE__ATTEMPT_LIST_REQUEST__INIT;
    req.subscription_id = id;
    req.has_limit = true;
    req.limit = 1000;
    Passerelle__Reply *reply = harness_call(f->al, "attempt.list", &req.base, 0, NULL);
    Passerelle__AttemptList *list =
        passerelle__attempt_list__unpack(NULL, reply->body.len, reply->body.data);
    assert_non_null(list);
    int failed = 0, ok = 0;
    for (size_t i = 0; i < list->n_attempts; i++) {
        if (list->attempts[i]->http_status == 503)
            failed++;
        if (list->attempts[i]->http_status == 200 &&
            strcmp(list->attempts[i]->outcome, "delivered") == 0)
            ok++;
    }
    assert_true(failed >= 1);
    assert_int_equal(ok, 9);
    passerelle__attempt_list__free_unpacked(list, NULL);
    passerelle__reply__free_unpacked(reply, NULL);
}

static void test_retry_after_then_dead_letter_and_replay(void **state)
{
    fixture_t *f = *state;
    sink(f, 0, NULL, "429");
    char id[ID_LEN], unit[ID_LEN];
    harness_notify_webhook(f->al, f->sinks[0].url, "convention.envisaged", "", id, NULL);
    harness_envisaged_unit(f->stack.client, "ANAH-13-0201", "La Ciotat", unit);

    /* Every attempt refused: after the last, a dead letter. */
    Passerelle__DeadLetterListRequest lreq = PASSERELLE__DEAD_LETTER_LIST_REQUEST__INIT;
    lreq.subscription_id = id;
    Passerelle__DeadLetterList *dead = NULL;
    for (int waited = 0; waited < WAIT_MS; waited += 50) {
        Passerelle__Reply *reply = harness_call(f->al, "deadletter.list", &lreq.base, 0, NULL);
        dead = passerelle__dead_letter_list__unpack(NULL, reply->body.len, reply->body.data);
        passerelle__reply__free_unpacked(reply, NULL);
        if (dead && dead->n_deliveries == 1)
            break;
        passerelle__dead_letter_list__free_unpacked(dead, NULL);
        dead = NULL;
        usleep(50 * 1000);
    }
    assert_non_null(dead);
    assert_int_equal(dead->n_deliveries, 1);
    assert_int_equal(dead->deliveries[0]->state, PASSERELLE__DELIVERY_STATE__DELIVERY_DEAD);
    assert_int_equal(dead->deliveries[0]->attempts, 10);
    char delivery_id[64];
    snprintf(delivery_id, sizeof delivery_id, "%s", dead->deliveries[0]->id);
    passerelle__dead_letter_list__free_unpacked(dead, NULL);
    json_t *lines = harness_jsonl_read(f->out[0]);
    assert_int_equal(json_array_size(lines), 10);
    json_decref(lines);

    /* Replayed once the endpoint is back: delivered with the same id. */
    sink_mode(f, 0, "ok");
    Passerelle__DeadLetterReplayRequest rreq = PASSERELLE__DEAD_LETTER_REPLAY_REQUEST__INIT;
    rreq.subscription_id = id;
    rreq.delivery_id = "msg_nothing";
    harness_call_refused(f->al, "deadletter.replay", &rreq.base, 5, "delivery_id");
    rreq.delivery_id = NULL;
    rreq.since = "2000-01-01T00:00:00Z";
    harness_call_refused(f->partner, "deadletter.replay", &rreq.base, 7, "subscription_id");
    Passerelle__Reply *reply = harness_call(f->al, "deadletter.replay", &rreq.base, 0, NULL);
    Passerelle__DeadLetterReplayReply *replayed =
        passerelle__dead_letter_replay_reply__unpack(NULL, reply->body.len, reply->body.data);
    assert_int_equal(replayed->replayed, 1);
    passerelle__dead_letter_replay_reply__free_unpacked(replayed, NULL);
    passerelle__reply__free_unpacked(reply, NULL);
    json_t *got = wait_delivered(f, 0, 1);
    assert_int_equal(json_array_size(got), 1);
    lines = harness_jsonl_read(f->out[0]);
    size_t i;
    json_t *line;
    json_array_foreach(lines, i, line) assert_string_equal(str(line, "webhook_id"), delivery_id);
    json_decref(lines);
    json_decref(got);
}

static void test_gone_disables_and_tells_the_owner(void **state)
{
    fixture_t *f = *state;
    sink(f, 0, NULL, "410");
    sink(f, 1, NULL, "ok");
    sink(f, 2, NULL, "ok");
    char gone[ID_LEN], other[ID_LEN], stranger[ID_LEN], unit[ID_LEN];
    harness_notify_webhook(f->al, f->sinks[0].url, "convention.*", "", gone, NULL);
    /* The owner's other channel listens to something else entirely. */
    harness_notify_webhook(f->al, f->sinks[1].url, "programme.created", "", other, NULL);
    harness_notify_webhook(f->partner, f->sinks[2].url, "*", "", stranger, NULL);
    harness_envisaged_unit(f->stack.client, "ANAH-13-0301", "La Ciotat", unit);

    json_t *got = wait_delivered(f, 1, 1);
    assert_int_equal(json_array_size(got), 1);
    json_t *line = json_array_get(got, 0);
    assert_string_equal(str(line, "type"), "endpoint.disabled");
    assert_string_equal(str(line, "body.data.id"), gone);
    assert_string_equal(str(line, "body.data.state"), "DISABLED");
    /* Secrets never travel in events. */
    assert_null(json_object_get(json_object_get(json_object_get(line, "body"), "data"), "secret"));
    json_decref(got);

    Passerelle__Subscription *sub = sub_get(f->al, gone, 0);
    assert_int_equal(sub->state, PASSERELLE__SUBSCRIPTION_STATE__SUBSCRIPTION_DISABLED);
    assert_non_null(strstr(sub->state_reason, "410"));
    passerelle__subscription__free_unpacked(sub, NULL);

    /* The partner's catch-all saw the convention, never the other party's
     * endpoint news. */
    json_t *partner = wait_delivered(f, 2, 2);
    size_t i;
    json_array_foreach(partner, i, line)
        assert_string_not_equal(str(line, "type"), "endpoint.disabled");
    json_decref(partner);
}

static void test_allowlist_and_owner_only(void **state)
{
    fixture_t *f = *state;
    Passerelle__SubscriptionCreateRequest req = PASSERELLE__SUBSCRIPTION_CREATE_REQUEST__INIT;
    req.has_channel = true;
    req.channel = PASSERELLE__CHANNEL__CHANNEL_WEBHOOK;
    const char *refused[] = {"http://10.1.2.3/hook",          "http://localhost:8080/",
                             "http://169.254.169.254/latest", "ftp://127.0.0.1/x",
                             "http://user:pw@127.0.0.1/",     "not a url"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        req.url = (char *)refused[i];
        harness_call_refused(f->al, "subscription.create", &req.base, 3, "url");
    }
    char *bad_types[] = {"convention.**"};
    req.url = "http://127.0.0.1:9/hook";
    req.n_event_types = 1;
    req.event_types = bad_types;
    harness_call_refused(f->al, "subscription.create", &req.base, 3, "event_types");
    req.n_event_types = 0;
    char *bad_territory[] = {"CT9"};
    req.n_territories = 1;
    req.territories = bad_territory;
    harness_call_refused(f->al, "subscription.create", &req.base, 3, "territories");
    req.n_territories = 0;
    req.owner_party = "METROPOLE";
    harness_call_refused(f->al, "subscription.create", &req.base, 7, "owner_party");
    req.owner_party = NULL;

    char id[ID_LEN], secret[128];
    harness_notify_webhook(f->al, "http://127.0.0.1:9/hook", "", "", id, secret);
    assert_true(strncmp(secret, "whsec_", 6) == 0);
    /* The owner and ADMIN read it, without its secret; others may not. */
    Passerelle__Subscription *sub = sub_get(f->al, id, 0);
    assert_null(sub->secret);
    assert_string_equal(sub->owner_party, "ACTION_LOGEMENT");
    passerelle__subscription__free_unpacked(sub, NULL);
    sub = sub_get(f->admin, id, 0);
    assert_null(sub->secret);
    passerelle__subscription__free_unpacked(sub, NULL);
    Passerelle__SubscriptionGetRequest get = PASSERELLE__SUBSCRIPTION_GET_REQUEST__INIT;
    get.id = id;
    harness_call_refused(f->partner, "subscription.get", &get.base, 7, "id");
    Passerelle__SubscriptionStepRequest step = PASSERELLE__SUBSCRIPTION_STEP_REQUEST__INIT;
    step.id = id;
    harness_call_refused(f->partner, "subscription.pause", &step.base, 7, "id");
    harness_call_refused(f->partner, "subscription.delete", &step.base, 7, "id");
    Passerelle__AttemptListRequest attempts = PASSERELLE__ATTEMPT_LIST_REQUEST__INIT;
    attempts.subscription_id = id;
    harness_call_refused(f->partner, "attempt.list", &attempts.base, 7, "subscription_id");

    /* Lists: a party sees its own; ADMIN sees every one. */
    Passerelle__SubscriptionListRequest list_req = PASSERELLE__SUBSCRIPTION_LIST_REQUEST__INIT;
    Passerelle__Reply *reply =
        harness_call(f->partner, "subscription.list", &list_req.base, 0, NULL);
    Passerelle__SubscriptionList *list =
        passerelle__subscription_list__unpack(NULL, reply->body.len, reply->body.data);
    assert_int_equal(list->n_subscriptions, 0);
    passerelle__subscription_list__free_unpacked(list, NULL);
    passerelle__reply__free_unpacked(reply, NULL);
    reply = harness_call(f->admin, "subscription.list", &list_req.base, 0, NULL);
    list = passerelle__subscription_list__unpack(NULL, reply->body.len, reply->body.data);
    assert_int_equal(list->n_subscriptions, 1);
    assert_null(list->subscriptions[0]->secret);
    passerelle__subscription_list__free_unpacked(list, NULL);
    passerelle__reply__free_unpacked(reply, NULL);

    /* Deleted: gone for everyone. */
    reply = harness_call(f->al, "subscription.delete", &step.base, 0, NULL);
    passerelle__reply__free_unpacked(reply, NULL);
    harness_call_refused(f->al, "subscription.get", &get.base, 5, "id");
}

static void test_pause_resume_and_rotation(void **state)
{
    fixture_t *f = *state;
    /* The subscriber knows its secret before its sink starts. */
    int port = harness_free_port();
    char url[64], port_text[16], id[ID_LEN], secret[128], unit[ID_LEN], barrier[ID_LEN];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", port);
    snprintf(port_text, sizeof port_text, "%d", port);
    harness_notify_webhook(f->al, url, "convention.envisaged", "", id, secret);
    snprintf(f->out[0], sizeof f->out[0], "%s/rot.jsonl", f->stack.dir);
    const char *args[] = {"--port", port_text, "--secret", secret, "--out", f->out[0], NULL};
    assert_int_equal(
        harness_proc_start(&f->sinks[0], "tools/passerelle-sink", f->stack.dir, "rot", args, true),
        0);
    sink(f, 1, NULL, "ok");
    harness_notify_webhook(f->admin, f->sinks[1].url, "convention.envisaged", "", barrier, NULL);

    Passerelle__SubscriptionStepRequest step = PASSERELLE__SUBSCRIPTION_STEP_REQUEST__INIT;
    step.id = id;
    step.reason = "maintenance";
    Passerelle__Reply *reply = harness_call(f->al, "subscription.pause", &step.base, 0, NULL);
    passerelle__reply__free_unpacked(reply, NULL);
    harness_call_refused(f->al, "subscription.pause", &step.base, 9, "id");

    harness_envisaged_unit(f->stack.client, "ANAH-13-0401", "La Ciotat", unit);
    json_t *got = wait_delivered(f, 1, 1); /* the active one has it... */
    assert_int_equal(json_array_size(got), 1);
    json_decref(got);
    json_t *lines = harness_jsonl_read(f->out[0]); /* ...the paused one not */
    assert_int_equal(json_array_size(lines), 0);
    json_decref(lines);

    reply = harness_call(f->al, "subscription.resume", &step.base, 0, NULL);
    passerelle__reply__free_unpacked(reply, NULL);
    got = wait_delivered(f, 0, 1);
    assert_int_equal(json_array_size(got), 1);
    assert_string_equal(str(json_array_get(got, 0), "body.data.unit.id"), unit);
    assert_string_equal(str(json_array_get(got, 0), "signature"), "verified");
    json_decref(got);

    /* Rotated: the new secret comes back once, and the old one still
     * signs during the overlap, so the sink that knows only it verifies. */
    reply = harness_call(f->al, "subscription.rotate_secret", &step.base, 0, NULL);
    Passerelle__Subscription *sub =
        passerelle__subscription__unpack(NULL, reply->body.len, reply->body.data);
    assert_non_null(sub->secret);
    assert_string_not_equal(sub->secret, secret);
    passerelle__subscription__free_unpacked(sub, NULL);
    passerelle__reply__free_unpacked(reply, NULL);
    harness_envisaged_unit(f->stack.client, "ANAH-13-0402", "La Ciotat", unit);
    got = wait_delivered(f, 0, 2);
    assert_int_equal(json_array_size(got), 2);
    assert_string_equal(str(json_array_get(got, 1), "body.data.unit.id"), unit);
    assert_string_equal(str(json_array_get(got, 1), "signature"), "verified");
    json_decref(got);
}

static void test_timeout_then_delivered(void **state)
{
    fixture_t *f = *state;
    /* The sink holds each request past the service's 2 s attempt timeout. */
    sink(f, 0, NULL, "timeout");
    char id[ID_LEN], unit[ID_LEN];
    harness_notify_webhook(f->al, f->sinks[0].url, "convention.envisaged", "", id, NULL);
    harness_envisaged_unit(f->stack.client, "ANAH-13-0501", "Cassis", unit);

    bool timed_out = false;
    for (int waited = 0; waited < WAIT_MS && !timed_out; waited += 100) {
        Passerelle__AttemptList *list = harness_notify_attempts(f->al, id);
        for (size_t i = 0; i < list->n_attempts; i++)
            if (list->attempts[i]->http_status == 0 && list->attempts[i]->error &&
                strcmp(list->attempts[i]->outcome, "retry") == 0 &&
                list->attempts[i]->duration_ms >= 1500)
                timed_out = true;
        passerelle__attempt_list__free_unpacked(list, NULL);
        usleep(100 * 1000);
    }
    assert_true(timed_out);

    sink_mode(f, 0, "ok");
    bool delivered = false;
    for (int waited = 0; waited < WAIT_MS && !delivered; waited += 100) {
        Passerelle__AttemptList *list = harness_notify_attempts(f->al, id);
        delivered = list->n_attempts > 0 && list->attempts[0]->http_status == 200 &&
                    strcmp(list->attempts[0]->outcome, "delivered") == 0;
        passerelle__attempt_list__free_unpacked(list, NULL);
        usleep(100 * 1000);
    }
    assert_true(delivered);
}

/* Every request of the sink for the events of one unit, in arrival order:
 * type and webhook-id, and whether it was answered 2xx. */
typedef struct {
    char type[64], webhook_id[96];
    bool ok;
} seen_t;

static size_t seen_for_unit(fixture_t *f, int sink_i, const char *unit, seen_t *out, size_t max)
{
    json_t *lines = harness_jsonl_read(f->out[sink_i]);
    size_t i, n = 0;
    json_t *line;
    json_array_foreach(lines, i, line)
    {
        if (n == max || strcmp(str(line, "body.data.unit.id"), unit) != 0)
            continue;
        json_int_t answered = json_integer_value(json_object_get(line, "answered"));
        snprintf(out[n].type, sizeof out[n].type, "%s", str(line, "type"));
        snprintf(out[n].webhook_id, sizeof out[n].webhook_id, "%s", str(line, "webhook_id"));
        out[n].ok = answered >= 200 && answered < 300;
        n++;
    }
    json_decref(lines);
    return n;
}

/* The service killed after it took a delivery and started sending it, and
 * before it recorded what became of it: the claim's lease brings the
 * delivery back after the restart, with the same webhook-id, and the next
 * event of the same unit, queued behind it, is not sent before it. */
static void test_crash_between_claim_and_outcome(void **state)
{
    fixture_t *f = *state;
    /* The sink holds every request past the attempt timeout: the claim is
     * recorded, the outcome is not (yet) when the service dies. */
    sink(f, 0, NULL, "timeout");
    char id[ID_LEN], unit[ID_LEN];
    harness_notify_webhook(f->al, f->sinks[0].url, "convention.*", "", id, NULL);
    harness_envisaged_unit(f->stack.client, "ANAH-13-0601", "Cassis", unit);
    convention_step(f, "convention.sign", unit);
    json_t *first = harness_jsonl_wait(f->out[0], 1, WAIT_MS);
    assert_int_equal(json_array_size(first), 1);
    json_decref(first);
    harness_service_stop(&f->notify, SIGKILL);
    sink_mode(f, 0, "ok");
    assert_int_equal(harness_notify_restart(&f->stack, &f->notify, NULL), 0);

    /* The lease is four attempt timeouts (2 s here) and 5 s. */
    seen_t seen[16];
    size_t n = 0;
    bool both = false;
    for (int waited = 0; waited < 3 * WAIT_MS && !both; waited += 100) {
        n = seen_for_unit(f, 0, unit, seen, 16);
        bool signed_ok = false;
        for (size_t i = 0; i < n; i++)
            signed_ok |= seen[i].ok && strcmp(seen[i].type, "convention.signed") == 0;
        both = signed_ok;
        if (!both)
            usleep(100 * 1000);
    }
    assert_true(both);
    /* The envisaged event first, every time with one webhook-id, and
     * delivered before the signed one was ever sent. */
    assert_string_equal(seen[0].type, "convention.envisaged");
    bool envisaged_ok = false;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(seen[i].type, "convention.envisaged") == 0) {
            assert_string_equal(seen[i].webhook_id, seen[0].webhook_id);
            envisaged_ok |= seen[i].ok;
        } else {
            assert_true(envisaged_ok);
        }
    }
    assert_true(envisaged_ok);
}

/* A due set written by a version before per-subscription due sets (one
 * zset of "<sub> <subject>") is moved over by the next claim, and what it
 * held is delivered. */
static void test_due_set_of_earlier_versions(void **state)
{
    fixture_t *f = *state;
    sink(f, 0, NULL, "fail");
    char id[ID_LEN], unit[ID_LEN];
    harness_notify_webhook(f->al, f->sinks[0].url, "convention.envisaged", "", id, NULL);
    harness_envisaged_unit(f->stack.client, "ANAH-13-0701", "Cassis", unit);
    json_t *first = harness_jsonl_wait(f->out[0], 1, WAIT_MS);
    assert_true(json_array_size(first) >= 1);
    json_decref(first);
    assert_true(harness_service_stop_clean(&f->notify));

    /* The state as the earlier version kept it. */
    store_config_t cfg;
    harness_redis_config(&f->stack.redis, &cfg);
    store_t *store = store_new(&cfg);
    char due[NOTIFY_KEY_MAX_TEST];
    snprintf(due, sizeof due, "notifications:due:%s", id);
    redisReply *r = NULL;
    assert_int_equal(store_command(store, &r, "ZRANGE %s 0 -1 WITHSCORES", due), STORE_OK);
    assert_int_equal(r->elements, 2);
    char member[NOTIFY_KEY_MAX_TEST];
    snprintf(member, sizeof member, "%s %s", id, r->element[0]->str);
    redisReply *z = NULL;
    assert_int_equal(
        store_command(store, &z, "ZADD notifications:due %s %s", r->element[1]->str, member),
        STORE_OK);
    freeReplyObject(z);
    freeReplyObject(r);
    assert_int_equal(store_command(store, &r, "DEL %s notifications:duesubs", due), STORE_OK);
    freeReplyObject(r);

    sink_mode(f, 0, "ok");
    assert_int_equal(harness_notify_restart(&f->stack, &f->notify, NULL), 0);
    json_t *got = wait_delivered(f, 0, 1);
    assert_int_equal(json_array_size(got), 1);
    assert_string_equal(str(json_array_get(got, 0), "body.data.unit.id"), unit);
    json_decref(got);
    assert_int_equal(store_command(store, &r, "EXISTS notifications:due"), STORE_OK);
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
    store_destroy(&store);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_envisaged_reaches_its_territory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_order_kept_across_retries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_after_then_dead_letter_and_replay, setup_fast,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_gone_disables_and_tells_the_owner, setup, teardown),
        cmocka_unit_test_setup_teardown(test_allowlist_and_owner_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pause_resume_and_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_then_delivered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_between_claim_and_outcome, setup, teardown),
        cmocka_unit_test_setup_teardown(test_due_set_of_earlier_versions, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
