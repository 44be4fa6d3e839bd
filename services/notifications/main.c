/* passerelle-notifications: turns the event streams into deliveries that
 * people and systems can rely on (notify.h says how the pieces fit).
 * Reads its configuration from the environment, seeds the correspondents'
 * subscriptions, starts the request server, the partner feed, the delivery
 * worker, one fan-out reader per stream and the digest, serves until
 * SIGINT/SIGTERM, and stops in reverse order.
 *
 * Configuration (besides the store's and the server's common variables):
 *   PASSERELLE_NOTIFICATIONS_ENDPOINT  requests (tcp://127.0.0.1:7402)
 *   PASSERELLE_NOTIFICATIONS_HTTP_ENDPOINT health, readiness and metrics
 *                                      over HTTP (127.0.0.1:9402; off)
 *   PASSERELLE_FEED_ENDPOINT           the partner feed's PUB socket
 *                                      (tcp://127.0.0.1:7406)
 *   PASSERELLE_NOTIFY_STREAMS          the streams read
 *       (reservations:events,docstore:events,notifications:events)
 *   PASSERELLE_NOTIFY_ALLOWLIST        where webhooks may go (url_policy.h; empty)
 *   PASSERELLE_NOTIFY_TIMEOUT_MS       per webhook attempt (15000)
 *   PASSERELLE_NOTIFY_PER_ENDPOINT     attempts in flight per endpoint (4)
 *   PASSERELLE_NOTIFY_MAX_IN_FLIGHT    attempts in flight in all (64)
 *   PASSERELLE_NOTIFY_DISABLE_AFTER_S  an endpoint failing this long is
 *                                      disabled (432000: 5 days)
 *   PASSERELLE_NOTIFY_ATTEMPTS_KEPT    attempts logged per subscription (1000)
 *   PASSERELLE_NOTIFY_CLOCK_SCALE      divides every retry, disable and digest
 *                                      delay, for tests (1)
 *   PASSERELLE_NOTIFY_CORRESPONDENTS   a CSV file seeding one Action Logement
 *                                      correspondent per territory (none)
 *   PASSERELLE_SMTP_URL                where digests are mailed (none)
 *   PASSERELLE_SMTP_FROM               their sender (passerelle@localhost)
 *   PASSERELLE_DIGEST_INTERVAL_S       time between digests (86400)
 *   PASSERELLE_DIGEST_AT               local time of the first (07:00) */
#include "config.h"
#include "deliver.h"
#include "digest.h"
#include "fanout.h"
#include "feed.h"
#include "httpd.h"
#include "identity.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "refdata.h"
#include "server.h"
#include "store.h"
#include "url_policy.h"

#include <czmq.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STREAMS_MAX 8

/* ====================================================================== */
/* The correspondents' seed                                               */
/* ====================================================================== */

/* Creates (or finds, by ref) the subscriptions of one line of the seed:
 *   territory,name,email,webhook_url,webhook_secret
 * An e-mail digest when email is given; a webhook of the territory's
 * convention events when webhook_url is. */
static bool seed_one(notify_t *notify, const char *line, int line_no)
{
    char buf[2048];
    snprintf(buf, sizeof buf, "%s", line);
    char *fields[5] = {0};
    int n = 0;
    /* strsep, not strtok: an empty field ("CT1,name,mail,,") stays a field. */
    char *rest = buf;
    while (rest && n < 5) {
        char *tok = strsep(&rest, ",");
        while (*tok == ' ')
            tok++;
        size_t len = strlen(tok);
        while (len && (tok[len - 1] == ' ' || tok[len - 1] == '\r' || tok[len - 1] == '\n'))
            tok[--len] = '\0';
        fields[n++] = tok;
    }
    if (n < 3 || !refdata_is_territory(fields[0]) || !*fields[2]) {
        log_error("correspondents: a line is not territory,name,email[,webhook_url,secret]",
                  "{s:i}", "line", line_no);
        return false;
    }
    caller_t seeder = {.party = PARTY_ADMIN};
    snprintf(seeder.name, sizeof seeder.name, "correspondents-seed");
    call_t call = {.caller = &seeder, .type = "subscription.create", .request_id = "seed"};
    char *territories[1] = {fields[0]};
    char ref[128], description[256];
    bool ok = true;
    for (int kind = 0; kind < 2; kind++) {
        const char *target = kind == 0 ? fields[2] : (n >= 4 ? fields[3] : NULL);
        if (!target || !*target)
            continue;
        Passerelle__SubscriptionCreateRequest req = PASSERELLE__SUBSCRIPTION_CREATE_REQUEST__INIT;
        snprintf(ref, sizeof ref, "correspondent-%s-%s", fields[0],
                 kind == 0 ? "email" : "webhook");
        snprintf(description, sizeof description, "Action Logement correspondent for %s: %s",
                 fields[0], fields[1]);
        req.ref = ref;
        req.owner_party = "ACTION_LOGEMENT";
        req.description = description;
        req.n_territories = 1;
        req.territories = territories;
        req.has_channel = true;
        char *types[1] = {"convention.*"};
        if (kind == 0) {
            req.channel = PASSERELLE__CHANNEL__CHANNEL_EMAIL;
            req.email = (char *)target;
        } else {
            req.channel = PASSERELLE__CHANNEL__CHANNEL_WEBHOOK;
            req.url = (char *)target;
            req.n_event_types = 1;
            req.event_types = types;
            req.secret = n >= 5 ? fields[4] : NULL;
        }
        reply_t reply;
        memset(&reply, 0, sizeof reply);
        handle_subscription_create(notify, &call, &req.base, &reply);
        if (reply.status != ST_OK) {
            log_error("correspondents: a subscription could not be made", "{s:i, s:s, s:s, s:s}",
                      "line", line_no, "ref", ref, "field", reply.field, "error", reply.message);
            ok = false;
        }
        free(reply.body);
        free(reply.stored);
    }
    return ok;
}

static bool seed_correspondents(notify_t *notify, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        log_error("correspondents: cannot read the file", "{s:s}", "path", path);
        return false;
    }
    char line[2048];
    int line_no = 0, made = 0;
    bool ok = true;
    while (fgets(line, sizeof line, f)) {
        line_no++;
        const char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '#' || *p == '\n' || *p == '\r' || *p == '\0' ||
            strncmp(p, "territory,", 10) == 0)
            continue;
        if (seed_one(notify, p, line_no))
            made++;
        else
            ok = false;
    }
    fclose(f);
    log_info("correspondents seeded", "{s:s, s:i}", "path", path, "lines", made);
    return ok;
}

/* ====================================================================== */
/* main                                                                   */
/* ====================================================================== */

static bool parse_at(const char *text, int *minute)
{
    int h = 0, m = 0;
    char extra;
    if (sscanf(text, "%d:%d%c", &h, &m, &extra) != 2 || h < 0 || h > 23 || m < 0 || m > 59)
        return false;
    *minute = h * 60 + m;
    return true;
}

int main(void)
{
    log_init("notifications");

    store_config_t store_cfg;
    memset(&store_cfg, 0, sizeof store_cfg);
    server_config_t server_cfg;
    memset(&server_cfg, 0, sizeof server_cfg);
    if (!store_config_from_env(&store_cfg) || !server_config_from_env(&server_cfg)) {
        log_error("bad configuration: see the variable logged above", NULL);
        return 1;
    }

    long timeout_ms = 0, per_endpoint = 0, max_in_flight = 0, disable_after_s = 0, kept = 0,
         interval_s = 0;
    if (!config_int("PASSERELLE_NOTIFY_TIMEOUT_MS", 15000, 100, 120000, &timeout_ms) ||
        !config_int("PASSERELLE_NOTIFY_PER_ENDPOINT", 4, 1, 64, &per_endpoint) ||
        !config_int("PASSERELLE_NOTIFY_MAX_IN_FLIGHT", 64, 1, 4096, &max_in_flight) ||
        !config_int("PASSERELLE_NOTIFY_DISABLE_AFTER_S", 432000, 1, 365L * 86400,
                    &disable_after_s) ||
        !config_int("PASSERELLE_NOTIFY_ATTEMPTS_KEPT", 1000, 10, 1000000, &kept) ||
        !config_int("PASSERELLE_DIGEST_INTERVAL_S", 86400, 60, 31L * 86400, &interval_s))
        return 1;
    const char *scale_text = config_str("PASSERELLE_NOTIFY_CLOCK_SCALE", "1");
    char *end = NULL;
    double clock_scale = strtod(scale_text, &end);
    if (!end || *end || clock_scale < 1.0 || clock_scale > 1e7) {
        log_error("bad configuration", "{s:s, s:s, s:s}", "variable",
                  "PASSERELLE_NOTIFY_CLOCK_SCALE", "value", scale_text, "error",
                  "a number from 1 (real time) to 10000000");
        return 1;
    }
    if (clock_scale > 1.0)
        log_warn("the notification clock runs fast: for tests only", "{s:f}", "scale", clock_scale);
    int at_minute = 0;
    const char *at_text = config_str("PASSERELLE_DIGEST_AT", "07:00");
    if (!parse_at(at_text, &at_minute)) {
        log_error("bad configuration", "{s:s, s:s, s:s}", "variable", "PASSERELLE_DIGEST_AT",
                  "value", at_text, "error", "a local time HH:MM");
        return 1;
    }

    char err[256];
    url_policy_t *policy =
        url_policy_new(config_str("PASSERELLE_NOTIFY_ALLOWLIST", ""), err, sizeof err);
    if (!policy) {
        log_error("bad configuration", "{s:s, s:s}", "variable", "PASSERELLE_NOTIFY_ALLOWLIST",
                  "error", err);
        return 1;
    }

    char consumer[128], host[64] = "host";
    gethostname(host, sizeof host - 1);
    snprintf(consumer, sizeof consumer, "%s:%d", host, (int)getpid());

    store_t *store = store_new(&store_cfg);
    if (!store) {
        url_policy_destroy(&policy);
        return 1;
    }
    notify_t notify = {
        .store = store,
        .policy = policy,
        .outcome_script = deliver_scripts_add(store),
    };

    server_cfg.service = "notifications";
    server_cfg.endpoint = config_str("PASSERELLE_NOTIFICATIONS_ENDPOINT", "tcp://127.0.0.1:7402");
    server_cfg.routes = notify_routes;
    server_cfg.route_count = notify_route_count;
    server_cfg.ctx = &notify;
    server_cfg.store = store;
    server_cfg.stream = NOTIFY_STREAM;

    int rc = 1;
    /* When the stop's grace period ends (zclock_mono), once told to stop. */
    int64_t stop_by_ms = -1;
    fanout_t *fanouts[STREAMS_MAX] = {0};
    size_t n_fanouts = 0;
    feed_t *feed = NULL;
    deliver_t *deliver = NULL;
    digest_t *digest = NULL;
    store_t *seed_store = NULL;
    server_t *server = NULL;
    /* The operations port: health, readiness and metrics. */
    ops_t *ops = ops_start("PASSERELLE_NOTIFICATIONS_HTTP_ENDPOINT", "127.0.0.1:9402", &store_cfg);
    if (!ops)
        goto out;
    server_cfg.metrics = ops_metrics(ops);

    /* The seed before the server: once the service says it is listening,
     * a listing finds every correspondent's subscription. It writes
     * through the request handler, on a connection of its own (the
     * server's is the server thread's once it runs). */
    const char *seed = config_str("PASSERELLE_NOTIFY_CORRESPONDENTS", "");
    if (*seed) {
        seed_store = store_new(&store_cfg);
        notify_t seeder = notify;
        seeder.store = seed_store;
        if (!seed_store || !seed_correspondents(&seeder, seed))
            goto out;
    }

    server = server_new(&server_cfg);
    if (!server) {
        log_error("cannot start the server", "{s:s}", "endpoint", server_cfg.endpoint);
        goto out;
    }
    ops_keys_loaded(ops, server_cfg.keys_dir, server_cfg.insecure);

    feed_config_t feed_cfg = {
        .endpoint = config_str("PASSERELLE_FEED_ENDPOINT", "tcp://127.0.0.1:7406"),
        .keys_dir = server_cfg.keys_dir,
        .insecure = server_cfg.insecure,
        .store = &store_cfg,
    };
    feed = feed_new(&feed_cfg);
    if (!feed)
        goto out;

    deliver_config_t deliver_cfg = {
        .store = &store_cfg,
        .policy = policy,
        .clock_scale = clock_scale,
        .disable_after_ms = disable_after_s * 1000,
        .timeout_ms = timeout_ms,
        .per_endpoint = (unsigned)per_endpoint,
        .total_max = (unsigned)max_in_flight,
        .attempts_kept = (uint32_t)kept,
        .smtp_url = config_str("PASSERELLE_SMTP_URL", ""),
        .smtp_from = config_str("PASSERELLE_SMTP_FROM", "passerelle@localhost"),
        .metrics = ops_metrics(ops),
    };
    deliver = deliver_new(&deliver_cfg);
    if (!deliver)
        goto out;

    char streams[512];
    snprintf(streams, sizeof streams, "%s",
             config_str("PASSERELLE_NOTIFY_STREAMS",
                        "reservations:events,docstore:events,notifications:events"));
    char *save = NULL;
    for (char *s = strtok_r(streams, ",", &save); s; s = strtok_r(NULL, ",", &save)) {
        if (!*s)
            continue;
        if (n_fanouts == STREAMS_MAX) {
            log_error("too many streams", "{s:i}", "most", STREAMS_MAX);
            goto out;
        }
        fanout_config_t fcfg = {
            .store = &store_cfg,
            .stream = s,
            .consumer = consumer,
            .wake = deliver_wake,
            .wake_arg = deliver,
        };
        fanouts[n_fanouts] = fanout_new(&fcfg);
        if (!fanouts[n_fanouts])
            goto out;
        n_fanouts++;
        ops_watch_consumer(ops, s, NOTIFY_GROUP);
    }

    digest_config_t digest_cfg = {
        .store = &store_cfg,
        .stream = "reservations:events",
        .consumer = consumer,
        .interval_s = interval_s,
        .at_minute = at_minute,
        .clock_scale = clock_scale,
    };
    digest = digest_new(&digest_cfg);
    if (!digest)
        goto out;
    ops_watch_consumer(ops, digest_cfg.stream, DIGEST_GROUP);

    log_info("notifications running", "{s:s, s:s, s:i}", "endpoint", server_endpoint(server),
             "feed", feed_endpoint(feed), "streams", (int)n_fanouts);
    server_wait_for_signal(server);
    ops_stopping(ops);
    /* One grace period for the whole stop: the requests first (answered or
     * refused), then the readers, each finishing and acknowledging the
     * batch in hand, then the webhooks in flight, with what is left. */
    stop_by_ms = zclock_mono() + server_cfg.shutdown_grace_ms;
    server_drain(server, server_cfg.shutdown_grace_ms);
    rc = 0;
out:
    for (size_t i = n_fanouts; i-- > 0;)
        fanout_destroy(&fanouts[i]);
    digest_destroy(&digest);
    if (stop_by_ms >= 0) {
        int64_t left_ms = stop_by_ms - zclock_mono();
        deliver_drain(deliver, left_ms > 0 ? (int)left_ms : 0);
    }
    deliver_destroy(&deliver);
    feed_destroy(&feed);
    server_destroy(&server);
    ops_destroy(&ops);
    store_destroy(&seed_store);
    store_destroy(&store);
    url_policy_destroy(&policy);
    log_info("stopped", NULL);
    return rc;
}
