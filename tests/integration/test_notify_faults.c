/* Notifications under faults, end to end: real Redis, the real
 * reservations and notifications binaries, a webhook sink and the reference
 * feed subscriber, with processes killed while the work is under way.
 *
 *   1. The notifications service SIGKILLed two or three times, at random
 *      moments, while some 150 convention events reach a flaky endpoint:
 *      every event is answered 2xx at least once, and every request for
 *      one event carries the same webhook-id.
 *   2. The partner feed across restarts of its subscriber and of the
 *      service (on the same feed port): the subscriber prints every feed
 *      event once, in the feed's order.
 *   3. Redis killed for a moment during deliveries: the same processes
 *      deliver everything once it is back.
 *   4. The order of one unit's events when a reader died holding one of
 *      them, made deterministic.
 *   5. Two replicas, the first SIGKILLed halfway: the second takes over
 *      the routing and the deliveries.
 *
 * Per unit, the first successful deliveries come in the stream's order
 * whatever crashed (deliver.h, fanout.h): 1, 3, 4 and 5 check it.
 *
 * Nothing here asserts a duration. The deadlines are generous because a
 * delivery in flight at a crash comes back only when its lease ends
 * (twice the attempt timeout + 5 s), and a dead reader's stream is routed
 * again only when its routing lease runs out (5 s).
 *
 * The kill moments come from a seed printed at the start;
 * PASSERELLE_TEST_SEED=<n> runs the same plan again. */
#include "harness.h"

#include "ids.h"
#include "notifications.pb-c.h"
#include "reservations.pb-c.h"
#include "status.h"
#include "store.h"

#include <hiredis/hiredis.h>

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

/* Per poll of a file or a list. */
#define POLL_MS 20
/* Every convention event delivered after the last fault: leases (7 s),
 * claims of what a dead reader held (30 s), retries of a flaky endpoint. */
#define DELIVERED_WAIT_MS 180000
/* Waiting for the deliveries to reach the next kill moment. */
#define PROGRESS_WAIT_MS 60000
/* A feed subscriber catching up (it asks again every second while the
 * service is away). */
#define FEED_WAIT_MS 60000
/* A write retried through a Redis outage. */
#define CALL_WAIT_MS 30000

#define UNITS       15
#define UNIT_STEPS  10
#define KILLS_MAX   3
#define REF_MAX     32
#define COMMUNE_MAX 3

typedef struct {
    harness_stack_t stack; /* Redis + reservations, client "operator" */
    harness_service_t notify;
    char *notify_env[8]; /* the service's settings, the same at every restart */
    char request_setting[96], feed_setting[96];
    char feed_endpoint[64];
    client_t *al, *partner;
    harness_proc_t sink;
    char sink_out[512];
    harness_proc_t subscriber;
    unsigned seed;
} fixture_t;

static const char *const communes[COMMUNE_MAX] = {"La Ciotat", "Cassis", "Pertuis"};

/* ====================================================================== */
/* Fixture                                                                */
/* ====================================================================== */

static unsigned seed_from_env(void)
{
    const char *text = getenv("PASSERELLE_TEST_SEED");
    if (text && *text)
        return (unsigned)strtoul(text, NULL, 10);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (unsigned)(now.tv_nsec ^ (now.tv_sec << 8) ^ getpid());
}

/* The stack, then the notifications service with the settings in
 * f->notify_env (kept for restarts), and its clients. */
static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    *state = f;
    if (!f || harness_stack_start(&f->stack, "notify-faults", "operator", NULL) != 0)
        return -1;
    f->seed = seed_from_env();
    fprintf(stderr, "seed %u (PASSERELLE_TEST_SEED=%u runs this plan again)\n", f->seed, f->seed);
    /* Both endpoints on ports of the system's choosing, the same after a
     * restart: a port left to CZMQ ("*") comes first free from 49152 up, so
     * a test running beside this one would take it while the service is
     * down. */
    snprintf(f->request_setting, sizeof f->request_setting,
             "PASSERELLE_NOTIFICATIONS_ENDPOINT=tcp://127.0.0.1:%d", harness_free_port());
    snprintf(f->feed_endpoint, sizeof f->feed_endpoint, "tcp://127.0.0.1:%d", harness_free_port());
    snprintf(f->feed_setting, sizeof f->feed_setting, "PASSERELLE_FEED_ENDPOINT=%s",
             f->feed_endpoint);
    size_t n = 0;
    f->notify_env[n++] = f->request_setting;
    f->notify_env[n++] = f->feed_setting;
    /* Endpoints that fail for long stay enabled: every event must arrive.
     * Retries come 10000 times sooner (0.5 ms, 30 ms, ... 8.6 s): a
     * delivery never runs through its ten attempts while the sink is
     * flaky, and what is left when it turns healthy goes within seconds.
     * Leases are not scaled: they follow the attempt timeout. */
    f->notify_env[n++] = "PASSERELLE_NOTIFY_DISABLE_AFTER_S=31536000";
    f->notify_env[n++] = "PASSERELLE_NOTIFY_CLOCK_SCALE=10000";
    /* Digests (into the feed) seldom: a cut every 31 days / 10000. */
    f->notify_env[n++] = "PASSERELLE_DIGEST_INTERVAL_S=2678400";
    f->notify_env[n] = NULL;
    if (harness_notify_start(&f->stack, &f->notify, f->notify_env) != 0)
        return -1;
    f->al = harness_notify_client(&f->stack, &f->notify, "action_logement");
    f->partner = harness_notify_client(&f->stack, &f->notify, "partner");
    return f->al && f->partner ? 0 : -1;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    if (!f)
        return 0;
    client_destroy(&f->al);
    client_destroy(&f->partner);
    harness_proc_stop(&f->subscriber, SIGTERM);
    bool clean = f->notify.pid <= 0 || harness_service_stop_clean(&f->notify);
    harness_proc_stop(&f->sink, SIGTERM);
    /* Under PASSERELLE_SANITIZE=ON each process reports into its output. */
    const char *outputs[] = {f->notify.log_path, f->subscriber.stdout_path, f->sink.stdout_path};
    bool sane = true;
    for (size_t i = 0; i < sizeof outputs / sizeof outputs[0]; i++)
        sane &= !outputs[i][0] || !harness_log_has_sanitizer_report(outputs[i]);
    bool stack_clean = harness_stack_stop(&f->stack);
    free(f);
    return clean && sane && stack_clean ? 0 : -1;
}

/* SIGKILL, a pause of pause_ms (events pile up in the stream meanwhile),
 * and the same service again on the same ports. */
static void notify_crash(fixture_t *f, int pause_ms)
{
    harness_service_stop(&f->notify, SIGKILL);
    if (pause_ms > 0)
        usleep((useconds_t)pause_ms * 1000);
    assert_int_equal(harness_notify_restart(&f->stack, &f->notify, f->notify_env), 0);
}

/* ====================================================================== */
/* Writes that survive a Redis outage                                     */
/* ====================================================================== */

/* Sends one request until it is answered OK, under one idempotency key, so
 * that a write whose reply was lost in an outage is not made twice.
 * Returns the reply (caller frees). */
static Passerelle__Reply *call_ok(client_t *client, const char *type, const ProtobufCMessage *body)
{
    char key[ID_LEN];
    id_new('K', key);
    Passerelle__Reply *reply = NULL;
    for (int waited = 0; waited < CALL_WAIT_MS; waited += 100) {
        if (client_call(client, type, body, key, &reply) == 0) {
            if (reply->status == PASSERELLE__STATUS__STATUS_OK)
                return reply;
            if (reply->status != PASSERELLE__STATUS__STATUS_UNAVAILABLE) {
                harness_expect_status(reply, PASSERELLE__STATUS__STATUS_OK, NULL);
                return reply;
            }
            passerelle__reply__free_unpacked(reply, NULL);
            reply = NULL;
        }
        usleep(100 * 1000);
    }
    fail_msg("%s not answered OK within %d ms", type, CALL_WAIT_MS);
    return NULL;
}

/* Registers a private unit in commune; its id into unit_id (ID_LEN). */
static void unit_register(client_t *client, const char *ref, const char *commune, char *unit_id)
{
    Passerelle__UnitRegisterRequest req;
    harness_unit_request(&req, ref);
    req.commune = (char *)commune;
    Passerelle__Reply *reply = call_ok(client, "unit.register", &req.base);
    Passerelle__Unit *unit = passerelle__unit__unpack(NULL, reply->body.len, reply->body.data);
    assert_non_null(unit);
    snprintf(unit_id, ID_LEN, "%s", unit->id);
    passerelle__unit__free_unpacked(unit, NULL);
    passerelle__reply__free_unpacked(reply, NULL);
}

static void convention_envisage(client_t *client, const char *unit_id)
{
    Passerelle__ConventionEnvisageRequest req = PASSERELLE__CONVENTION_ENVISAGE_REQUEST__INIT;
    req.unit = (char *)unit_id;
    req.has_level = true;
    req.level = PASSERELLE__CONVENTION_LEVEL__LEVEL_LOC2;
    passerelle__reply__free_unpacked(call_ok(client, "convention.envisage", &req.base), NULL);
}

/* A later step of the unit's latest convention ("convention.sign", ...). */
static void convention_step(client_t *client, const char *type, const char *unit_id)
{
    Passerelle__ConventionStepRequest req = PASSERELLE__CONVENTION_STEP_REQUEST__INIT;
    req.unit = (char *)unit_id;
    if (strcmp(type, "convention.end") == 0)
        req.reason = "terminated";
    passerelle__reply__free_unpacked(call_ok(client, type, &req.base), NULL);
}

/* ====================================================================== */
/* Reading what the sink received                                         */
/* ====================================================================== */

static const char *str(const json_t *obj, const char *key)
{
    const char *value = json_string_value(json_object_get(obj, key));
    return value ? value : "";
}

static bool answered_2xx(const json_t *line)
{
    json_int_t answered = json_integer_value(json_object_get(line, "answered"));
    return answered >= 200 && answered < 300;
}

/* Lines in a file so far (each sink request is one). */
static size_t file_lines(const char *path)
{
    size_t len = 0, n = 0;
    char *text = harness_file_read(path, &len);
    for (size_t i = 0; i < len; i++)
        n += text[i] == '\n';
    free(text);
    return n;
}

/* The convention events of the reservations stream, in stream order. */
typedef struct {
    harness_events_t all;
    size_t count;
    const Passerelle__Event **events; /* into all */
} conventions_t;

static void conventions_read(fixture_t *f, conventions_t *out)
{
    memset(out, 0, sizeof *out);
    harness_events_read(f->stack.client, NULL, &out->all);
    out->events = calloc(out->all.count ? out->all.count : 1, sizeof *out->events);
    assert_non_null(out->events);
    for (size_t i = 0; i < out->all.count; i++) {
        const Passerelle__Event *event = out->all.entries[i]->event;
        if (event->type && strncmp(event->type, "convention.", 11) == 0)
            out->events[out->count++] = event;
    }
}

static void conventions_free(conventions_t *c)
{
    free(c->events);
    harness_events_free(&c->all);
}

/* How many of the events have been answered 2xx at least once. */
static size_t delivered_count(const json_t *lines, const conventions_t *c)
{
    json_t *ok = json_object();
    size_t i;
    json_t *line;
    json_array_foreach(lines, i, line)
    {
        if (answered_2xx(line))
            json_object_set_new(ok, str(line, "id"), json_true());
    }
    size_t n = 0;
    for (size_t k = 0; k < c->count; k++)
        n += json_object_get(ok, c->events[k]->id) != NULL;
    json_decref(ok);
    return n;
}

/* Waits until every event of c has been answered 2xx; returns the sink's
 * lines (caller decrefs). */
static json_t *wait_all_delivered(fixture_t *f, const conventions_t *c)
{
    json_t *lines = NULL;
    size_t n = 0;
    for (int waited = 0;; waited += 100) {
        json_decref(lines);
        lines = harness_jsonl_read(f->sink_out);
        n = delivered_count(lines, c);
        if (n == c->count || waited >= DELIVERED_WAIT_MS)
            break;
        /* The sink writes on into a file nobody can read any more. */
        if (access(f->sink_out, F_OK) != 0)
            fail_msg("%s is gone: was the test's folder removed while it ran?", f->sink_out);
        usleep(100 * 1000);
    }
    if (n != c->count)
        fail_msg("%zu of %zu convention events answered 2xx within %d ms (see %s)", n, c->count,
                 DELIVERED_WAIT_MS, f->sink_out);
    return lines;
}

/* What every delivery must show, whatever failed in between:
 *   - only the stream's convention events were sent;
 *   - each event's requests all carry one webhook-id, "msg_" + its id;
 *   - per subject (unit), the first 2xx of each event comes in
 *     the stream's order: an event is never first delivered after a later
 *     one of the same unit. */
static void check_deliveries(const json_t *lines, const conventions_t *c)
{
    json_t *subject_of = json_object(); /* event id -> subject */
    json_t *queues = json_object();     /* subject -> [event ids in stream order] */
    json_t *next = json_object();       /* subject -> index of the next first 2xx */
    json_t *done = json_object();
    for (size_t k = 0; k < c->count; k++) {
        const Passerelle__Event *event = c->events[k];
        assert_non_null(event->subject);
        json_object_set_new(subject_of, event->id, json_string(event->subject));
        json_t *queue = json_object_get(queues, event->subject);
        if (!queue) {
            queue = json_array();
            json_object_set_new(queues, event->subject, queue);
            json_object_set_new(next, event->subject, json_integer(0));
        }
        json_array_append_new(queue, json_string(event->id));
    }

    size_t i;
    json_t *line;
    json_array_foreach(lines, i, line)
    {
        const char *id = str(line, "id");
        const json_t *subject = json_object_get(subject_of, id);
        if (!subject)
            fail_msg("line %zu: event %s (%s) is not a convention event of the stream", i, id,
                     str(line, "type"));
        char expected_id[ID_LEN + 8];
        snprintf(expected_id, sizeof expected_id, "msg_%s", id);
        const char *webhook_id = str(line, "webhook_id");
        if (strcmp(webhook_id, expected_id) != 0)
            fail_msg("line %zu: event %s came with webhook-id '%s'", i, id, webhook_id);
        if (!answered_2xx(line) || json_object_get(done, id))
            continue;
        const char *s = json_string_value(subject);
        json_t *queue = json_object_get(queues, s);
        json_int_t at = json_integer_value(json_object_get(next, s));
        const char *due = json_string_value(json_array_get(queue, (size_t)at));
        if (!due || strcmp(due, id) != 0)
            fail_msg("line %zu: %s %s first delivered while %s, earlier on %s, was not", i,
                     str(line, "type"), id, due ? due : "(nothing)", s);
        json_object_set_new(next, s, json_integer(at + 1));
        json_object_set_new(done, id, json_true());
    }
    assert_int_equal(json_object_size(done), c->count);
    json_decref(subject_of);
    json_decref(queues);
    json_decref(next);
    json_decref(done);
}

/* ====================================================================== */
/* 1. SIGKILL during deliveries                                           */
/* ====================================================================== */

/* When to kill: after the sink has seen so many requests. A flaky sink
 * answers every other one 503, so 150 events take some 300 requests: the
 * moments fall well before the end. */
typedef struct {
    size_t at_lines[KILLS_MAX];
    int pause_ms[KILLS_MAX];
    int count;
    int done;
} kill_plan_t;

static void kill_plan_make(unsigned *seed, kill_plan_t *plan)
{
    memset(plan, 0, sizeof *plan);
    plan->count = 2 + (int)(rand_r(seed) % 2);
    size_t at = 0;
    for (int k = 0; k < plan->count; k++) {
        at += (k == 0 ? 10 : 30) + (size_t)(rand_r(seed) % 40);
        plan->at_lines[k] = at;
        plan->pause_ms[k] = (int)(rand_r(seed) % 300);
    }
}

/* Kills and restarts the service if the sink has reached the next kill
 * moment; true if it did. */
static bool kill_if_due(fixture_t *f, kill_plan_t *plan)
{
    if (plan->done == plan->count)
        return false;
    size_t seen = file_lines(f->sink_out);
    if (seen < plan->at_lines[plan->done])
        return false;
    fprintf(stderr, "kill %d of %d after %zu requests, down for %d ms\n", plan->done + 1,
            plan->count, seen, plan->pause_ms[plan->done]);
    notify_crash(f, plan->pause_ms[plan->done]);
    plan->done++;
    return true;
}

static void test_sigkill_during_deliveries(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(
        harness_sink_start(&f->sink, f->stack.dir, "flaky", NULL, "flaky", f->sink_out), 0);
    char sub[ID_LEN];
    harness_notify_webhook(f->al, f->sink.url, "convention.*", "", sub, NULL);
    kill_plan_t plan;
    kill_plan_make(&f->seed, &plan);

    /* Ten convention events per unit, the units taken in turn so that
     * their deliveries interleave: two abandoned conventions, one signed,
     * in force and terminated, and a last one abandoned. */
    static const char *const steps[UNIT_STEPS] = {
        "convention.envisage", "convention.abandon", "convention.envisage", "convention.abandon",
        "convention.envisage", "convention.sign",    "convention.in_force", "convention.end",
        "convention.envisage", "convention.abandon",
    };
    char units[UNITS][ID_LEN];
    for (int u = 0; u < UNITS; u++) {
        char ref[REF_MAX];
        snprintf(ref, sizeof ref, "ANAH-FLT-%04d", u);
        unit_register(f->stack.client, ref, communes[u % COMMUNE_MAX], units[u]);
    }
    for (int s = 0; s < UNIT_STEPS; s++) {
        for (int u = 0; u < UNITS; u++) {
            if (strcmp(steps[s], "convention.envisage") == 0)
                convention_envisage(f->stack.client, units[u]);
            else
                convention_step(f->stack.client, steps[s], units[u]);
            kill_if_due(f, &plan);
        }
    }
    /* The moments not reached while writing come during the deliveries. */
    for (int waited = 0; plan.done < plan.count; waited += POLL_MS) {
        if (waited >= PROGRESS_WAIT_MS)
            fail_msg("the sink saw %zu requests, short of the kill moment %zu, within %d ms",
                     file_lines(f->sink_out), plan.at_lines[plan.done], PROGRESS_WAIT_MS);
        if (!kill_if_due(f, &plan))
            usleep(POLL_MS * 1000);
    }
    /* The faults are over: the endpoint heals, and what is left goes at its
     * next attempt rather than through every retry against a coin toss. */
    harness_sink_mode(f->stack.dir, "flaky", "ok");

    conventions_t c;
    conventions_read(f, &c);
    assert_int_equal(c.count, UNITS * UNIT_STEPS);
    json_t *lines = wait_all_delivered(f, &c);
    check_deliveries(lines, &c);
    json_decref(lines);
    conventions_free(&c);
}

/* ====================================================================== */
/* 2. The feed across restarts                                            */
/* ====================================================================== */

/* Registers and envisages n units: two feed events each. */
static void make_units(fixture_t *f, const char *batch, int n)
{
    for (int u = 0; u < n; u++) {
        char ref[REF_MAX], unit[ID_LEN];
        snprintf(ref, sizeof ref, "ANAH-FEED-%s-%02d", batch, u);
        unit_register(f->stack.client, ref, communes[u % COMMUNE_MAX], unit);
        convention_envisage(f->stack.client, unit);
    }
}

/* Every position of the feed, in order, read back with feed.replay page
 * by page; the event ids into ids when not NULL. Caller decrefs. */
static json_t *feed_positions(client_t *client, json_t *ids)
{
    json_t *positions = json_array();
    char after[64] = "0";
    for (int page = 0; page < 1000; page++) {
        Passerelle__FeedReplayRequest req = PASSERELLE__FEED_REPLAY_REQUEST__INIT;
        req.after = after;
        req.has_limit = true;
        req.limit = 1000;
        Passerelle__Reply *reply = harness_call(client, "feed.replay", &req.base, 0, NULL);
        Passerelle__EventListReply *list = passerelle__event_list_reply__unpack(
            NULL, reply->has_body ? reply->body.len : 0, reply->body.data);
        passerelle__reply__free_unpacked(reply, NULL);
        assert_non_null(list);
        size_t n = list->n_events;
        for (size_t i = 0; i < n; i++) {
            json_array_append_new(positions, json_string(list->events[i]->position));
            if (ids)
                json_array_append_new(ids, json_string(list->events[i]->event->id));
        }
        if (n > 0 && list->last_position)
            snprintf(after, sizeof after, "%s", list->last_position);
        passerelle__event_list_reply__free_unpacked(list, NULL);
        if (n == 0)
            return positions;
    }
    fail_msg("feed.replay never reached the end of the feed");
    return positions;
}

/* Starts the reference subscriber, its output in dir/<tag>.out, its
 * position in dir/feed.state: the first run starts from the feed's
 * beginning, the later ones from the state. */
static void subscriber_start(fixture_t *f, const char *tag)
{
    char state[600];
    snprintf(state, sizeof state, "%s/feed.state", f->stack.dir);
    const char *args[] = {"--feed",     f->feed_endpoint,
                          "--endpoint", f->notify.endpoint,
                          "--keys",     f->stack.keys,
                          "--as",       "partner",
                          "--state",    state,
                          "--json",     "--from",
                          "0",          NULL};
    assert_int_equal(
        harness_proc_start(&f->subscriber, "tools/passerelle-feed", f->stack.dir, tag, args, false),
        0);
}

/* What the subscriber printed over its runs (tags[0..n)), in order: the
 * lines with a position (its log lines share the file). */
static json_t *subscriber_printed(fixture_t *f, const char *const *tags, int n)
{
    json_t *printed = json_array();
    for (int t = 0; t < n; t++) {
        char path[600];
        snprintf(path, sizeof path, "%s/%s.out", f->stack.dir, tags[t]);
        json_t *lines = harness_jsonl_read(path);
        size_t i;
        json_t *line;
        json_array_foreach(lines, i, line)
        {
            if (json_is_string(json_object_get(line, "position")))
                json_array_append(printed, line);
        }
        json_decref(lines);
    }
    return printed;
}

/* Waits until the subscriber has printed as many events as the feed holds
 * and saved the last one's position: it is idle then, and a SIGKILL
 * cannot fall between a print and its save. */
static void subscriber_wait_caught_up(fixture_t *f, const char *const *tags, int n)
{
    char state_path[600];
    snprintf(state_path, sizeof state_path, "%s/feed.state", f->stack.dir);
    size_t printed_n = 0, feed_n = 0;
    for (int waited = 0; waited < FEED_WAIT_MS; waited += 50) {
        json_t *feed = feed_positions(f->partner, NULL);
        json_t *printed = subscriber_printed(f, tags, n);
        feed_n = json_array_size(feed);
        printed_n = json_array_size(printed);
        const char *last = json_string_value(json_array_get(feed, feed_n - 1));
        char *state = harness_file_read(state_path, NULL);
        bool saved = last && state && strncmp(state, last, strlen(last)) == 0 &&
                     (state[strlen(last)] == '\n' || state[strlen(last)] == '\0');
        free(state);
        json_decref(feed);
        json_decref(printed);
        if (feed_n > 0 && printed_n >= feed_n && saved)
            return;
        usleep(50 * 1000);
    }
    fail_msg("the subscriber printed %zu of the feed's %zu events within %d ms", printed_n, feed_n,
             FEED_WAIT_MS);
}

static void test_feed_across_restarts(void **state)
{
    fixture_t *f = *state;
    Passerelle__SubscriptionCreateRequest req = PASSERELLE__SUBSCRIPTION_CREATE_REQUEST__INIT;
    char *every[] = {"*"};
    req.has_channel = true;
    req.channel = PASSERELLE__CHANNEL__CHANNEL_FEED;
    req.n_event_types = 1;
    req.event_types = every;
    passerelle__reply__free_unpacked(
        harness_call(f->partner, "subscription.create", &req.base, 0, NULL), NULL);

    static const char *const tags[] = {"feed1", "feed2"};
    subscriber_start(f, tags[0]);
    make_units(f, "A", 3);
    subscriber_wait_caught_up(f, tags, 1);

    /* The subscriber away: what it misses is replayed from its state. */
    harness_proc_stop(&f->subscriber, SIGKILL);
    make_units(f, "B", 3);
    subscriber_start(f, tags[1]);
    subscriber_wait_caught_up(f, tags, 2);

    /* The service away: events wait in the reservations stream, and enter
     * the feed when it is back, on the same feed port. */
    harness_service_stop(&f->notify, SIGKILL);
    make_units(f, "C", 3);
    assert_int_equal(harness_notify_restart(&f->stack, &f->notify, f->notify_env), 0);
    make_units(f, "D", 2);
    /* The restarted service routes once the dead one's lease has run out:
     * wait for the feed to hold every event before judging the subscriber. */
    for (int waited = 0;; waited += 50) {
        json_t *feed_now = feed_positions(f->partner, NULL);
        size_t n = json_array_size(feed_now);
        json_decref(feed_now);
        if (n >= 2 * (3 + 3 + 3 + 2))
            break;
        if (waited >= FEED_WAIT_MS)
            fail_msg("the feed holds %zu events, not all %d, after %d ms", n, 2 * (3 + 3 + 3 + 2),
                     FEED_WAIT_MS);
        usleep(50 * 1000);
    }
    subscriber_wait_caught_up(f, tags, 2);

    /* Exactly the feed, in its order, each event once. */
    json_t *ids = json_array();
    json_t *feed = feed_positions(f->partner, ids);
    json_t *printed = subscriber_printed(f, tags, 2);
    assert_int_equal(json_array_size(printed), json_array_size(feed));
    size_t i;
    json_t *line;
    json_array_foreach(printed, i, line)
    {
        const char *want = json_string_value(json_array_get(feed, i));
        if (strcmp(str(line, "position"), want) != 0 ||
            strcmp(str(line, "id"), json_string_value(json_array_get(ids, i))) != 0)
            fail_msg("printed #%zu is %s (%s), the feed's is %s (%s)", i, str(line, "position"),
                     str(line, "id"), want, json_string_value(json_array_get(ids, i)));
    }
    /* And the feed holds the reservations stream, in its order: nothing
     * lost on the way. (A digest the clock cuts enters the feed too.) */
    harness_events_t events;
    harness_events_read(f->stack.client, NULL, &events);
    assert_int_equal(events.count, 2 * (3 + 3 + 3 + 2));
    size_t k = 0;
    json_array_foreach(printed, i, line)
    {
        if (strcmp(str(line, "type"), "digest.ready") == 0)
            continue;
        assert_true(k < events.count);
        assert_string_equal(str(line, "id"), events.entries[k]->event->id);
        k++;
    }
    assert_int_equal(k, events.count);
    harness_events_free(&events);
    json_decref(ids);
    json_decref(feed);
    json_decref(printed);
}

/* ====================================================================== */
/* 3. Redis killed during deliveries                                      */
/* ====================================================================== */

#define REDIS_UNITS 10

/* Kills Redis once the sink has seen at_lines requests (deliveries are
 * under way), keeps it down for down_ms, and starts it again on its data;
 * true once done. */
static bool redis_kill_if_due(fixture_t *f, size_t at_lines, int down_ms)
{
    size_t seen = file_lines(f->sink_out);
    if (seen < at_lines)
        return false;
    fprintf(stderr, "Redis killed after %zu requests, down for %d ms\n", seen, down_ms);
    harness_redis_kill(&f->stack.redis);
    usleep((useconds_t)down_ms * 1000);
    assert_int_equal(harness_redis_restart(&f->stack.redis), 0);
    return true;
}

static void test_redis_killed_during_deliveries(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(
        harness_sink_start(&f->sink, f->stack.dir, "flaky", NULL, "flaky", f->sink_out), 0);
    harness_notify_webhook(f->al, f->sink.url, "convention.*", "", NULL, NULL);
    pid_t notify_pid = f->notify.pid, reservations_pid = f->stack.service.pid;
    size_t kill_at = 3 + (size_t)(rand_r(&f->seed) % 10);
    int down_ms = 200 + (int)(rand_r(&f->seed) % 400);
    bool killed = false;

    static const char *const steps[3] = {"convention.envisage", "convention.sign",
                                         "convention.in_force"};
    char units[REDIS_UNITS][ID_LEN];
    for (int u = 0; u < REDIS_UNITS; u++) {
        char ref[REF_MAX];
        snprintf(ref, sizeof ref, "ANAH-RDS-%02d", u);
        unit_register(f->stack.client, ref, communes[u % COMMUNE_MAX], units[u]);
    }
    for (int s = 0; s < 3; s++) {
        for (int u = 0; u < REDIS_UNITS; u++) {
            if (s == 0)
                convention_envisage(f->stack.client, units[u]);
            else
                convention_step(f->stack.client, steps[s], units[u]);
            killed = killed || redis_kill_if_due(f, kill_at, down_ms);
        }
    }
    for (int waited = 0; !killed; waited += POLL_MS) {
        if (waited >= PROGRESS_WAIT_MS)
            fail_msg("the sink saw %zu requests, short of %zu, within %d ms",
                     file_lines(f->sink_out), kill_at, PROGRESS_WAIT_MS);
        killed = redis_kill_if_due(f, kill_at, down_ms);
        if (!killed)
            usleep(POLL_MS * 1000);
    }
    harness_sink_mode(f->stack.dir, "flaky", "ok");

    conventions_t c;
    conventions_read(f, &c);
    assert_int_equal(c.count, 3 * REDIS_UNITS);
    json_t *lines = wait_all_delivered(f, &c);
    check_deliveries(lines, &c);
    json_decref(lines);
    conventions_free(&c);
    /* Recovered by themselves: the same processes. */
    assert_int_equal(f->notify.pid, notify_pid);
    assert_int_equal(f->stack.service.pid, reservations_pid);
    assert_int_equal(kill(notify_pid, 0), 0);
}

/* ====================================================================== */
/* 4. The order of a unit's events when a reader died holding one         */
/* ====================================================================== */

/* What a SIGKILL between a fan-out reader's XREADGROUP and its fan-out
 * script leaves in Redis, made on purpose: the unit's second event pending
 * on a consumer that is gone, its third one new. Routed in the stream's
 * order, the second is delivered before the third: the restarted reader
 * takes every pending event, whoever held it, before any new one. */
static void test_order_when_a_reader_died_holding_an_event(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(harness_sink_start(&f->sink, f->stack.dir, "ok", NULL, "ok", f->sink_out), 0);
    harness_notify_webhook(f->al, f->sink.url, "convention.*", "", NULL, NULL);
    char unit[ID_LEN];
    unit_register(f->stack.client, "ANAH-ORD-0001", "La Ciotat", unit);
    convention_envisage(f->stack.client, unit);
    json_t *lines = harness_jsonl_wait(f->sink_out, 1, DELIVERED_WAIT_MS);
    assert_int_equal(json_array_size(lines), 1);
    json_decref(lines);

    harness_service_stop(&f->notify, SIGKILL);
    convention_step(f->stack.client, "convention.sign", unit);
    store_config_t cfg;
    harness_redis_config(&f->stack.redis, &cfg);
    store_t *store = store_new(&cfg);
    assert_non_null(store);
    redisReply *read = NULL;
    assert_int_equal(store_command(store, &read,
                                   "XREADGROUP GROUP notifications gone:1 COUNT 1 STREAMS "
                                   "reservations:events >"),
                     STORE_OK);
    /* [[stream, [[id, fields]]]]: the signing, now pending on "gone:1". */
    assert_int_equal(read->type, REDIS_REPLY_ARRAY);
    assert_int_equal(read->element[0]->element[1]->elements, 1);
    freeReplyObject(read);
    store_destroy(&store);
    convention_step(f->stack.client, "convention.in_force", unit);
    assert_int_equal(harness_notify_restart(&f->stack, &f->notify, f->notify_env), 0);

    conventions_t c;
    conventions_read(f, &c);
    assert_int_equal(c.count, 3);
    lines = wait_all_delivered(f, &c);
    check_deliveries(lines, &c);
    json_decref(lines);
    conventions_free(&c);
}

/* ====================================================================== */
/* 5. Two replicas, one of them killed                                    */
/* ====================================================================== */

#define REPLICA_UNITS 10

/* Two notifications services on one Redis: one routes each stream (its
 * lease), both take deliveries (claims). The first is SIGKILLed halfway;
 * the second routes and delivers everything, one webhook-id per event, in
 * order per unit, and stops cleanly. */
static void test_two_replicas_one_killed(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(
        harness_sink_start(&f->sink, f->stack.dir, "flaky", NULL, "flaky", f->sink_out), 0);
    harness_notify_webhook(f->al, f->sink.url, "convention.*", "", NULL, NULL);

    /* The second replica: the first's settings, on ports of its own, its
     * log in a folder of its own. */
    char *env[16];
    size_t n = 0;
    env[n++] = "PASSERELLE_NOTIFY_ALLOWLIST=127.0.0.1";
    env[n++] = "PASSERELLE_FEED_ENDPOINT=tcp://127.0.0.1:*";
    env[n++] = "PASSERELLE_NOTIFY_TIMEOUT_MS=2000";
    for (size_t i = 2; f->notify_env[i] && n < 15; i++)
        env[n++] = f->notify_env[i];
    env[n] = NULL;
    char dir[600];
    snprintf(dir, sizeof dir, "%s/second", f->stack.dir);
    assert_int_equal(mkdir(dir, 0755), 0);
    harness_service_t second;
    assert_int_equal(harness_service_start(&second, "notifications", dir, env), 0);

    static const char *const steps[3] = {"convention.envisage", "convention.sign",
                                         "convention.in_force"};
    char units[REPLICA_UNITS][ID_LEN];
    for (int u = 0; u < REPLICA_UNITS; u++) {
        char ref[REF_MAX];
        snprintf(ref, sizeof ref, "ANAH-RPL-%02d", u);
        unit_register(f->stack.client, ref, communes[u % COMMUNE_MAX], units[u]);
    }
    for (int s = 0; s < 3; s++) {
        for (int u = 0; u < REPLICA_UNITS; u++) {
            if (s == 0)
                convention_envisage(f->stack.client, units[u]);
            else
                convention_step(f->stack.client, steps[s], units[u]);
        }
        if (s == 1) {
            /* Halfway: whatever the first held (the routing lease, claims
             * in flight) is left to run out. */
            harness_service_stop(&f->notify, SIGKILL);
        }
    }
    harness_sink_mode(f->stack.dir, "flaky", "ok");

    conventions_t c;
    conventions_read(f, &c);
    assert_int_equal(c.count, 3 * REPLICA_UNITS);
    json_t *lines = wait_all_delivered(f, &c);
    check_deliveries(lines, &c);
    json_decref(lines);
    conventions_free(&c);
    assert_true(harness_service_stop_clean(&second));
    assert_false(harness_log_has_sanitizer_report(second.log_path));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sigkill_during_deliveries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_feed_across_restarts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redis_killed_during_deliveries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_replicas_one_killed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_order_when_a_reader_died_holding_an_event, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
