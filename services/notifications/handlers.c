/* The notifications requests: subscriptions (create, get, list, pause,
 * resume, delete, rotate_secret), the attempts log, dead letters and their
 * replay, and the commit-to-delivery latency. The feed's replay and the
 * digest are answered by feed.c and digest.c; the route table is here.
 *
 * A subscription is a record (commit.lua) like any other; every change
 * bumps the change counter the routing caches watch, and appends its event
 * (subscription.created, ...) to the service's stream, with the secrets
 * left out: the event is delivered to others, the secret never is. */
#include "notify.h"

#include "acl.h"
#include "cloudevent.h"
#include "deliver.h"
#include "digest.h"
#include "feed.h"
#include "ids.h"
#include "listing.h"
#include "log.h"
#include "match.h"
#include "notifications.pb-c.h"
#include "refdata.h"
#include "url_policy.h"
#include "webhook.h"

#include <hiredis/hiredis.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const int64_t notify_retry_schedule_s[NOTIFY_RETRY_COUNT] = {
    5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 14 * 3600, 20 * 3600, 24 * 3600,
};

/* ====================================================================== */
/* Keys                                                                   */
/* ====================================================================== */

/* A subscription's record: the prefix and its id (the listing reads them
 * by the prefix). */
#define NOTIFY_SUB_KEY_PREFIX "notifications:sub:"

void notify_key_sub(const char *sub_id, char *out)
{
    snprintf(out, NOTIFY_KEY_MAX, NOTIFY_SUB_KEY_PREFIX "%s", sub_id);
}

void notify_key_queue(const char *sub_id, const char *subject, char *out)
{
    snprintf(out, NOTIFY_KEY_MAX, "notifications:q:%s:%s", sub_id, subject);
}

void notify_key_due(const char *sub_id, char *out)
{
    snprintf(out, NOTIFY_KEY_MAX, "notifications:due:%s", sub_id);
}

void notify_key_delivery(const char *delivery_id, const char *sub_id, char *out)
{
    snprintf(out, NOTIFY_KEY_MAX, "notifications:dlv:%s:%s", delivery_id, sub_id);
}

void notify_key_dead(const char *sub_id, char *out)
{
    snprintf(out, NOTIFY_KEY_MAX, "notifications:dead:%s", sub_id);
}

void notify_key_attempts(const char *sub_id, char *out)
{
    snprintf(out, NOTIFY_KEY_MAX, "notifications:attempts:%s", sub_id);
}

void notify_key_health(const char *sub_id, char *out)
{
    snprintf(out, NOTIFY_KEY_MAX, "notifications:health:%s", sub_id);
}

void notify_key_latency(const char *event_type, const char *territory, char *out)
{
    snprintf(out, NOTIFY_KEY_MAX, "notifications:latency:%s:%s", event_type,
             territory && *territory ? territory : "all");
}

int64_t notify_scaled_ms(double clock_scale, int64_t delay_ms)
{
    if (clock_scale > 1.0)
        delay_ms = (int64_t)((double)delay_ms / clock_scale);
    return delay_ms < 1 ? 1 : delay_ms;
}

/* ====================================================================== */
/* Helpers                                                                */
/* ====================================================================== */

static void subject_of(const char *sub_id, char out[NOTIFY_KEY_MAX])
{
    snprintf(out, NOTIFY_KEY_MAX, "subscriptions/%s", sub_id);
}

static bool is_admin(const call_t *call)
{
    return call->caller->party == PARTY_ADMIN;
}

static bool owns(const call_t *call, const Passerelle__Subscription *sub)
{
    return is_admin(call) ||
           (sub->owner_party && strcmp(sub->owner_party, party_name(call->caller->party)) == 0);
}

/* A copy of sub without its secrets, for replies and events: the fields
 * point into sub, nothing is allocated. */
static Passerelle__Subscription public_view(const Passerelle__Subscription *sub)
{
    Passerelle__Subscription view = *sub;
    view.secret = NULL;
    view.previous_secret = NULL;
    view.previous_secret_until = NULL;
    return view;
}

/* Reads a subscription by the id in `field`, whoever owns it: READ_FAILED
 * with the reply saying why (INVALID_ARGUMENT naming the field, the store's
 * failure, a record that does not decode); on READ_FOUND the caller frees
 * *sub_p. */
static read_result_t sub_read(notify_t *self, const char *id, const char *field,
                              Passerelle__Subscription **sub_p, uint64_t *version, reply_t *reply)
{
    *sub_p = NULL;
    if (!id || !id_valid('S', id)) {
        reply_error(reply, ST_INVALID_ARGUMENT, field, "%s must be a subscription id (S...)",
                    field);
        return READ_FAILED;
    }
    char key[NOTIFY_KEY_MAX];
    notify_key_sub(id, key);
    return record_read(self->store, key, &passerelle__subscription__descriptor,
                       (ProtobufCMessage **)sub_p, version, reply);
}

/* PERMISSION_DENIED naming the field unless the caller owns sub. */
static bool sub_owned(const call_t *call, const Passerelle__Subscription *sub, const char *field,
                      reply_t *reply)
{
    if (owns(call, sub))
        return true;
    reply_error(reply, ST_PERMISSION_DENIED, field,
                "subscription %s belongs to %s: only it and ADMIN may see or change it", sub->id,
                sub->owner_party ? sub->owner_party : "?");
    return false;
}

/* Reads a subscription the caller owns, by the id in `field`:
 * INVALID_ARGUMENT, NOT_FOUND and PERMISSION_DENIED name the field. The
 * caller frees *sub_p on success. */
static bool sub_get(notify_t *self, const call_t *call, const char *id, const char *field,
                    Passerelle__Subscription **sub_p, uint64_t *version, reply_t *reply)
{
    read_result_t read = sub_read(self, id, field, sub_p, version, reply);
    if (read == READ_ABSENT)
        reply_error(reply, ST_NOT_FOUND, field, "subscription %s not found", id);
    if (read != READ_FOUND)
        return false;
    if (sub_owned(call, *sub_p, field, reply))
        return true;
    protobuf_c_message_free_unpacked(&(*sub_p)->base, NULL);
    *sub_p = NULL;
    return false;
}

static txn_t *txn_for(const call_t *call)
{
    return txn_new(call->idempotency_key, call->fingerprint, call->idempotency_ttl_s);
}

/* ====================================================================== */
/* subscription.create                                                    */
/* ====================================================================== */

static bool email_valid(const char *email)
{
    if (!email || strlen(email) > 254)
        return false;
    const char *at = strchr(email, '@');
    if (!at || at == email || strchr(at + 1, '@') || !strchr(at + 1, '.'))
        return false;
    for (const char *p = email; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == '<' || *p == '>' || *p == ',' || *p == ';')
            return false;
    return at[1] != '.' && email[strlen(email) - 1] != '.';
}

static bool ref_valid(const char *ref)
{
    if (strlen(ref) > 100)
        return false;
    for (const char *p = ref; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == ':')
            return false;
    return true;
}

/* The request's rules, with the field at fault. */
static bool create_validate(notify_t *self, const call_t *call,
                            const Passerelle__SubscriptionCreateRequest *req, const char **owner,
                            reply_t *reply)
{
    *owner = party_name(call->caller->party);
    if (req->owner_party && *req->owner_party) {
        party_t party = party_parse(req->owner_party);
        if (party == PARTY_NONE) {
            reply_error(reply, ST_INVALID_ARGUMENT, "owner_party", "unknown party %s",
                        req->owner_party);
            return false;
        }
        if (!is_admin(call) && party != call->caller->party) {
            reply_error(reply, ST_PERMISSION_DENIED, "owner_party",
                        "only ADMIN may create a subscription for another party");
            return false;
        }
        *owner = party_name(party);
    }
    if (req->ref && *req->ref && !ref_valid(req->ref)) {
        reply_error(reply, ST_INVALID_ARGUMENT, "ref",
                    "ref must be at most 100 characters, without spaces or ':'");
        return false;
    }
    char why[256];
    switch (req->channel) {
    case PASSERELLE__CHANNEL__CHANNEL_WEBHOOK:
        if (!req->url || !*req->url) {
            reply_error(reply, ST_INVALID_ARGUMENT, "url", "a webhook needs a url");
            return false;
        }
        if (strlen(req->url) > 2000 ||
            !url_policy_check_url(self->policy, req->url, why, sizeof why)) {
            reply_error(reply, ST_INVALID_ARGUMENT, "url", "url refused: %s",
                        strlen(req->url) > 2000 ? "longer than 2000 characters" : why);
            return false;
        }
        break;
    case PASSERELLE__CHANNEL__CHANNEL_EMAIL:
        if (!email_valid(req->email)) {
            reply_error(reply, ST_INVALID_ARGUMENT, "email",
                        "an e-mail digest needs a valid address (name@domain)");
            return false;
        }
        break;
    case PASSERELLE__CHANNEL__CHANNEL_FEED:
        break;
    default:
        reply_error(reply, ST_INVALID_ARGUMENT, "channel",
                    "channel must be webhook, feed or email");
        return false;
    }
    if (req->channel != PASSERELLE__CHANNEL__CHANNEL_WEBHOOK && req->url && *req->url) {
        reply_error(reply, ST_INVALID_ARGUMENT, "url", "only a webhook has a url");
        return false;
    }
    if (req->channel != PASSERELLE__CHANNEL__CHANNEL_EMAIL && req->email && *req->email) {
        reply_error(reply, ST_INVALID_ARGUMENT, "email", "only an e-mail digest has an email");
        return false;
    }
    if (req->secret && *req->secret) {
        if (!is_admin(call)) {
            reply_error(reply, ST_PERMISSION_DENIED, "secret", "only ADMIN may set a secret");
            return false;
        }
        if (req->channel != PASSERELLE__CHANNEL__CHANNEL_WEBHOOK ||
            !webhook_secret_valid(req->secret)) {
            reply_error(reply, ST_INVALID_ARGUMENT, "secret",
                        "a secret is a webhook's, \"whsec_\" and base64 of 16 to 64 bytes");
            return false;
        }
    }
    if (req->n_event_types > 32) {
        reply_error(reply, ST_INVALID_ARGUMENT, "event_types", "at most 32 event types");
        return false;
    }
    for (size_t i = 0; i < req->n_event_types; i++)
        if (!match_pattern_valid(req->event_types[i])) {
            reply_error(reply, ST_INVALID_ARGUMENT, "event_types",
                        "event type %s is not a type or a pattern (\"*\", \"convention.*\", "
                        "\"convention.envisaged\")",
                        req->event_types[i]);
            return false;
        }
    for (size_t i = 0; i < req->n_territories; i++)
        if (!refdata_is_territory(req->territories[i])) {
            reply_error(reply, ST_INVALID_ARGUMENT, "territories",
                        "territory %s is not one of CT1..CT6", req->territories[i]);
            return false;
        }
    if (req->description && strlen(req->description) > 500) {
        reply_error(reply, ST_INVALID_ARGUMENT, "description", "at most 500 characters");
        return false;
    }
    return true;
}

static void ref_key_of(const char *owner, const char *ref, char out[NOTIFY_KEY_MAX])
{
    snprintf(out, NOTIFY_KEY_MAX, "notifications:subref:%s:%s", owner, ref);
}

/* An existing ref answers with its subscription (without the secret: it
 * was given once, to whoever created it). */
static bool answer_existing_ref(notify_t *self, const call_t *call, const char *ref_key,
                                reply_t *reply)
{
    char id[ID_LEN];
    read_result_t read = record_read_ref(self->store, ref_key, 'S', "subscription", id, reply);
    if (read == READ_ABSENT)
        return false;
    if (read == READ_FAILED)
        return true;
    Passerelle__Subscription *sub = NULL;
    uint64_t sub_version = 0;
    if (sub_get(self, call, id, "ref", &sub, &sub_version, reply)) {
        Passerelle__Subscription view = public_view(sub);
        reply_set_body(reply, &view.base);
        protobuf_c_message_free_unpacked(&sub->base, NULL);
    }
    return true;
}

void handle_subscription_create(void *ctx, const call_t *call, const ProtobufCMessage *request,
                                reply_t *reply)
{
    notify_t *self = ctx;
    const Passerelle__SubscriptionCreateRequest *req =
        (const Passerelle__SubscriptionCreateRequest *)request;
    const char *owner = NULL;
    if (!create_validate(self, call, req, &owner, reply))
        return;

    char ref_key[NOTIFY_KEY_MAX] = "";
    if (req->ref && *req->ref) {
        ref_key_of(owner, req->ref, ref_key);
        if (answer_existing_ref(self, call, ref_key, reply))
            return;
    }

    char id[ID_LEN], now[TIME_RFC3339_LEN], key[NOTIFY_KEY_MAX], subject[NOTIFY_KEY_MAX];
    char secret[WEBHOOK_SECRET_MAX];
    id_new('S', id);
    time_now_rfc3339(now);
    Passerelle__Subscription sub = PASSERELLE__SUBSCRIPTION__INIT;
    sub.id = id;
    sub.ref = req->ref && *req->ref ? req->ref : NULL;
    sub.owner_party = (char *)owner;
    sub.owner_name = (char *)call->caller->name;
    sub.has_channel = true;
    sub.channel = req->channel;
    sub.url = req->channel == PASSERELLE__CHANNEL__CHANNEL_WEBHOOK ? req->url : NULL;
    sub.email = req->channel == PASSERELLE__CHANNEL__CHANNEL_EMAIL ? req->email : NULL;
    sub.n_event_types = req->n_event_types;
    sub.event_types = req->event_types;
    sub.n_territories = req->n_territories;
    sub.territories = req->territories;
    sub.has_state = true;
    sub.state = PASSERELLE__SUBSCRIPTION_STATE__SUBSCRIPTION_ACTIVE;
    sub.description = req->description && *req->description ? req->description : NULL;
    sub.created_at = now;
    sub.updated_at = now;
    sub.has_version = true;
    sub.version = 1;
    if (req->channel == PASSERELLE__CHANNEL__CHANNEL_WEBHOOK) {
        if (req->secret && *req->secret)
            snprintf(secret, sizeof secret, "%s", req->secret);
        else
            webhook_secret_new(secret);
        sub.secret = secret;
    }
    notify_key_sub(id, key);
    subject_of(id, subject);

    txn_t *txn = txn_for(call);
    txn_put_message(txn, key, 1, &sub.base);
    /* Version 1 guards absence: of two creations with one ref, the second
     * goes stale and, run again, finds the first. */
    if (ref_key[0])
        txn_put(txn, ref_key, 1, id, strlen(id));
    txn_index_add(txn, NOTIFY_SUBS_INDEX, id);
    txn_counter_add(txn, NOTIFY_META_KEY, NOTIFY_META_SUBS, 1);
    Passerelle__Subscription view = public_view(&sub);
    txn_event(txn, NOTIFY_STREAM, NOTIFY_SOURCE, "subscription.created", subject, &view.base);
    reply_set_body(reply, &sub.base); /* the one reply that carries the secret */
    reply_log_commit(reply, "subscription.created", subject);
    reply_commit(reply, call, self->store, txn);
    txn_destroy(&txn);
}

/* ====================================================================== */
/* subscription.get, subscription.list                                    */
/* ====================================================================== */

void handle_subscription_get(void *ctx, const call_t *call, const ProtobufCMessage *request,
                             reply_t *reply)
{
    notify_t *self = ctx;
    const Passerelle__SubscriptionGetRequest *req =
        (const Passerelle__SubscriptionGetRequest *)request;
    Passerelle__Subscription *sub = NULL;
    uint64_t version = 0;
    if (!sub_get(self, call, req->id, "id", &sub, &version, reply))
        return;
    Passerelle__Subscription view = public_view(sub);
    reply_set_body(reply, &view.base);
    protobuf_c_message_free_unpacked(&sub->base, NULL);
}

/* What subscription.list keeps: the caller's filters. */
typedef struct {
    const char *owner; /* NULL: every owner (ADMIN) */
    const Passerelle__SubscriptionListRequest *req;
} list_ctx_t;

static bool list_match(const ProtobufCMessage *msg, void *arg)
{
    const list_ctx_t *lc = arg;
    const Passerelle__Subscription *sub = (const Passerelle__Subscription *)msg;
    if (lc->owner && (!sub->owner_party || strcmp(sub->owner_party, lc->owner) != 0))
        return false;
    if (lc->req->channel && sub->channel != lc->req->channel)
        return false;
    if (lc->req->state && sub->state != lc->req->state)
        return false;
    return true;
}

void handle_subscription_list(void *ctx, const call_t *call, const ProtobufCMessage *request,
                              reply_t *reply)
{
    notify_t *self = ctx;
    const Passerelle__SubscriptionListRequest *req =
        (const Passerelle__SubscriptionListRequest *)request;
    list_ctx_t lc = {NULL, req};
    if (req->owner_party && *req->owner_party) {
        party_t party = party_parse(req->owner_party);
        if (party == PARTY_NONE) {
            reply_error(reply, ST_INVALID_ARGUMENT, "owner_party", "unknown party %s",
                        req->owner_party);
            return;
        }
        if (!is_admin(call) && party != call->caller->party) {
            reply_error(reply, ST_PERMISSION_DENIED, "owner_party",
                        "only ADMIN may list another party's subscriptions");
            return;
        }
        lc.owner = party_name(party);
    } else if (!is_admin(call)) {
        lc.owner = party_name(call->caller->party);
    }
    unsigned page_size = req->has_page_size && req->page_size ? req->page_size : 50;
    if (page_size > 500) {
        reply_error(reply, ST_INVALID_ARGUMENT, "page_size", "page_size is at most 500");
        return;
    }
    if (req->page_token && *req->page_token && !id_valid('S', req->page_token)) {
        reply_error(reply, ST_INVALID_ARGUMENT, "page_token", "not a page token of this listing");
        return;
    }
    record_lister_t lister = {self->store, NOTIFY_SUB_KEY_PREFIX,
                              &passerelle__subscription__descriptor, reply};
    listing_t listing = {NOTIFY_SUBS_INDEX, 'S', record_list_read, &lister, list_match, &lc};
    listing_page_t page;
    if (!reply_listing_result(
            reply, self->store,
            listing_page(self->store, &listing, req->page_token, page_size, &page)))
        return;
    Passerelle__SubscriptionList list = PASSERELLE__SUBSCRIPTION_LIST__INIT;
    Passerelle__Subscription *views = calloc(page.count ? page.count : 1, sizeof *views);
    Passerelle__Subscription **ptrs = calloc(page.count ? page.count : 1, sizeof *ptrs);
    if (!views || !ptrs) {
        reply_error(reply, ST_INTERNAL, NULL, "out of memory");
    } else {
        for (size_t i = 0; i < page.count; i++) {
            views[i] = public_view((const Passerelle__Subscription *)page.items[i]);
            ptrs[i] = &views[i];
        }
        list.n_subscriptions = page.count;
        list.subscriptions = ptrs;
        list.next_page_token = listing_page_token(&page);
        reply_set_body(reply, &list.base);
    }
    free(ptrs);
    free(views);
    listing_page_free(&page);
}

/* ====================================================================== */
/* pause, resume, delete, rotate_secret                                   */
/* ====================================================================== */

typedef enum { STEP_PAUSE, STEP_RESUME, STEP_DELETE, STEP_ROTATE } step_t;

static const char *state_name(Passerelle__SubscriptionState state)
{
    switch (state) {
    case PASSERELLE__SUBSCRIPTION_STATE__SUBSCRIPTION_ACTIVE:
        return "ACTIVE";
    case PASSERELLE__SUBSCRIPTION_STATE__SUBSCRIPTION_PAUSED:
        return "PAUSED";
    case PASSERELLE__SUBSCRIPTION_STATE__SUBSCRIPTION_DISABLED:
        return "DISABLED";
    default:
        return "UNSPECIFIED";
    }
}

static void subscription_step(notify_t *self, const call_t *call, const ProtobufCMessage *request,
                              reply_t *reply, step_t step)
{
    const Passerelle__SubscriptionStepRequest *req =
        (const Passerelle__SubscriptionStepRequest *)request;
    if (req->reason && strlen(req->reason) > 300) {
        reply_error(reply, ST_INVALID_ARGUMENT, "reason", "at most 300 characters");
        return;
    }
    uint32_t overlap_s = req->has_overlap_s && req->overlap_s ? req->overlap_s : 86400;
    if (step == STEP_ROTATE && overlap_s > 7 * 86400) {
        reply_error(reply, ST_INVALID_ARGUMENT, "overlap_s",
                    "overlap_s is at most 604800 (7 days)");
        return;
    }
    Passerelle__Subscription *sub = NULL;
    uint64_t version = 0;
    if (!sub_get(self, call, req->id, "id", &sub, &version, reply))
        return;

    char now[TIME_RFC3339_LEN], until[TIME_RFC3339_LEN], key[NOTIFY_KEY_MAX],
        subject[NOTIFY_KEY_MAX], secret[WEBHOOK_SECRET_MAX];
    time_now_rfc3339(now);
    notify_key_sub(sub->id, key);
    subject_of(sub->id, subject);
    Passerelle__Subscription changed = *sub;
    changed.updated_at = now;
    changed.version = version + 1;
    const char *event = NULL;
    Passerelle__SubscriptionState from = sub->state;

    switch (step) {
    case STEP_PAUSE:
        if (from != PASSERELLE__SUBSCRIPTION_STATE__SUBSCRIPTION_ACTIVE) {
            reply_error(reply, ST_FAILED_PRECONDITION, "id",
                        "subscription %s is %s: only an ACTIVE one can be paused", sub->id,
                        state_name(from));
            goto out;
        }
        changed.state = PASSERELLE__SUBSCRIPTION_STATE__SUBSCRIPTION_PAUSED;
        changed.state_reason = req->reason && *req->reason ? req->reason : "paused by its owner";
        event = "subscription.paused";
        break;
    case STEP_RESUME:
        if (from == PASSERELLE__SUBSCRIPTION_STATE__SUBSCRIPTION_ACTIVE) {
            reply_error(reply, ST_FAILED_PRECONDITION, "id", "subscription %s is already ACTIVE",
                        sub->id);
            goto out;
        }
        changed.state = PASSERELLE__SUBSCRIPTION_STATE__SUBSCRIPTION_ACTIVE;
        changed.state_reason = NULL;
        event = "subscription.resumed";
        break;
    case STEP_DELETE:
        event = "subscription.deleted";
        break;
    case STEP_ROTATE:
        if (sub->channel != PASSERELLE__CHANNEL__CHANNEL_WEBHOOK) {
            reply_error(reply, ST_FAILED_PRECONDITION, "id",
                        "subscription %s is not a webhook: it has no secret", sub->id);
            goto out;
        }
        webhook_secret_new(secret);
        time_rfc3339(time_now_ms() + (int64_t)overlap_s * 1000, until);
        changed.previous_secret = sub->secret;
        changed.previous_secret_until = until;
        changed.secret = secret;
        event = "subscription.secret_rotated";
        break;
    }

    txn_t *txn = txn_for(call);
    if (step == STEP_DELETE) {
        txn_delete(txn, key, version);
        if (sub->ref && *sub->ref) {
            char ref_key[NOTIFY_KEY_MAX];
            ref_key_of(sub->owner_party ? sub->owner_party : "", sub->ref, ref_key);
            txn_delete(txn, ref_key, 1);
        }
        txn_index_remove(txn, NOTIFY_SUBS_INDEX, sub->id);
        txn_index_remove(txn, NOTIFY_INACTIVE, sub->id);
    } else {
        txn_put_message(txn, key, version + 1, &changed.base);
        if (changed.state == PASSERELLE__SUBSCRIPTION_STATE__SUBSCRIPTION_ACTIVE) {
            txn_index_remove(txn, NOTIFY_INACTIVE, sub->id);
            /* Active again: back in the index of subscriptions with
             * something due (a claim takes an inactive one out), so that
             * the next claim looks at its due set, and takes it out again
             * if that is empty. */
            if (sub->state != PASSERELLE__SUBSCRIPTION_STATE__SUBSCRIPTION_ACTIVE)
                txn_index_add(txn, NOTIFY_DUE_SUBS, sub->id);
        } else
            txn_index_add(txn, NOTIFY_INACTIVE, sub->id);
    }
    txn_counter_add(txn, NOTIFY_META_KEY, NOTIFY_META_SUBS, 1);
    Passerelle__Subscription view = public_view(&changed);
    txn_event(txn, NOTIFY_STREAM, NOTIFY_SOURCE, event, subject, &view.base);
    /* Only a rotation answers with a secret: the new one. */
    if (step == STEP_ROTATE) {
        Passerelle__Subscription answer = view;
        answer.secret = secret;
        reply_set_body(reply, &answer.base);
    } else {
        reply_set_body(reply, &view.base);
    }
    reply_log_commit(reply, event, subject);
    reply_commit(reply, call, self->store, txn);
    txn_destroy(&txn);
out:
    protobuf_c_message_free_unpacked(&sub->base, NULL);
}

void handle_subscription_pause(void *ctx, const call_t *call, const ProtobufCMessage *request,
                               reply_t *reply)
{
    subscription_step(ctx, call, request, reply, STEP_PAUSE);
}

void handle_subscription_resume(void *ctx, const call_t *call, const ProtobufCMessage *request,
                                reply_t *reply)
{
    subscription_step(ctx, call, request, reply, STEP_RESUME);
}

void handle_subscription_delete(void *ctx, const call_t *call, const ProtobufCMessage *request,
                                reply_t *reply)
{
    subscription_step(ctx, call, request, reply, STEP_DELETE);
}

void handle_subscription_rotate_secret(void *ctx, const call_t *call,
                                       const ProtobufCMessage *request, reply_t *reply)
{
    subscription_step(ctx, call, request, reply, STEP_ROTATE);
}

/* ====================================================================== */
/* attempt.list                                                           */
/* ====================================================================== */

/* The subscription a delivery request names, which the caller must own:
 * still there, or deleted (then only ADMIN may look at what is left). */
static bool delivery_owner_check(notify_t *self, const call_t *call, const char *sub_id,
                                 reply_t *reply)
{
    Passerelle__Subscription *sub = NULL;
    uint64_t version = 0;
    switch (sub_read(self, sub_id, "subscription_id", &sub, &version, reply)) {
    case READ_ABSENT:
        if (is_admin(call))
            return true;
        reply_error(reply, ST_NOT_FOUND, "subscription_id", "subscription %s not found", sub_id);
        return false;
    case READ_FOUND: {
        bool owned = sub_owned(call, sub, "subscription_id", reply);
        protobuf_c_message_free_unpacked(&sub->base, NULL);
        return owned;
    }
    default:
        return false;
    }
}

void handle_attempt_list(void *ctx, const call_t *call, const ProtobufCMessage *request,
                         reply_t *reply)
{
    notify_t *self = ctx;
    const Passerelle__AttemptListRequest *req = (const Passerelle__AttemptListRequest *)request;
    unsigned limit = req->has_limit && req->limit ? req->limit : 50;
    if (limit > 1000) {
        reply_error(reply, ST_INVALID_ARGUMENT, "limit", "limit is at most 1000");
        return;
    }
    if (!delivery_owner_check(self, call, req->subscription_id, reply))
        return;
    char key[NOTIFY_KEY_MAX];
    notify_key_attempts(req->subscription_id, key);
    redisReply *r = NULL;
    store_result_t res = store_command(self->store, &r, "XREVRANGE %s + - COUNT %u", key, limit);
    if (res != STORE_OK) {
        reply_store_failure(reply, self->store, res);
        return;
    }
    Passerelle__AttemptList list = PASSERELLE__ATTEMPT_LIST__INIT;
    size_t n = r->type == REDIS_REPLY_ARRAY ? r->elements : 0;
    Passerelle__DeliveryAttempt **attempts = calloc(n ? n : 1, sizeof *attempts);
    for (size_t i = 0; attempts && i < n; i++) {
        const redisReply *entry = r->element[i];
        if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 2)
            continue;
        const redisReply *fields = entry->element[1];
        for (size_t f = 0; f + 1 < fields->elements; f += 2)
            if (strcmp(fields->element[f]->str, "pb") == 0) {
                attempts[list.n_attempts] = passerelle__delivery_attempt__unpack(
                    NULL, fields->element[f + 1]->len,
                    (const uint8_t *)fields->element[f + 1]->str);
                if (attempts[list.n_attempts])
                    list.n_attempts++;
            }
    }
    list.attempts = attempts;
    reply_set_body(reply, &list.base);
    for (size_t i = 0; i < list.n_attempts; i++)
        protobuf_c_message_free_unpacked(&attempts[i]->base, NULL);
    free(attempts);
    freeReplyObject(r);
}

/* ====================================================================== */
/* deadletter.list, deadletter.replay                                     */
/* ====================================================================== */

void handle_deadletter_list(void *ctx, const call_t *call, const ProtobufCMessage *request,
                            reply_t *reply)
{
    notify_t *self = ctx;
    const Passerelle__DeadLetterListRequest *req =
        (const Passerelle__DeadLetterListRequest *)request;
    unsigned limit = req->has_limit && req->limit ? req->limit : 100;
    if (limit > 1000) {
        reply_error(reply, ST_INVALID_ARGUMENT, "limit", "limit is at most 1000");
        return;
    }
    if (!delivery_owner_check(self, call, req->subscription_id, reply))
        return;
    Passerelle__Delivery **items = NULL;
    size_t count = 0;
    store_result_t res =
        deliver_dead_list(self->store, req->subscription_id, 0, limit, &items, &count);
    if (res != STORE_OK) {
        reply_store_failure(reply, self->store, res);
        return;
    }
    Passerelle__DeadLetterList list = PASSERELLE__DEAD_LETTER_LIST__INIT;
    list.n_deliveries = count;
    list.deliveries = items;
    reply_set_body(reply, &list.base);
    deliver_list_free(items, count);
}

void handle_deadletter_replay(void *ctx, const call_t *call, const ProtobufCMessage *request,
                              reply_t *reply)
{
    notify_t *self = ctx;
    const Passerelle__DeadLetterReplayRequest *req =
        (const Passerelle__DeadLetterReplayRequest *)request;
    bool one = req->delivery_id && *req->delivery_id;
    bool since = req->since && *req->since;
    if (one == since) {
        reply_error(reply, ST_INVALID_ARGUMENT, one ? "since" : "delivery_id",
                    "give either delivery_id (one) or since (every one dead since then)");
        return;
    }
    int64_t since_ms = 0;
    if (since && !time_parse_rfc3339(req->since, &since_ms)) {
        reply_error(reply, ST_INVALID_ARGUMENT, "since",
                    "since must be an RFC 3339 UTC time (2026-11-29T10:00:00Z)");
        return;
    }
    if (one && strlen(req->delivery_id) > 64) {
        reply_error(reply, ST_INVALID_ARGUMENT, "delivery_id", "not a delivery id");
        return;
    }
    if (!delivery_owner_check(self, call, req->subscription_id, reply))
        return;
    unsigned replayed = 0;
    bool found = true;
    store_result_t res = deliver_replay(self->store, self->outcome_script, req->subscription_id,
                                        one ? req->delivery_id : NULL, since_ms, &replayed, &found);
    if (res != STORE_OK) {
        reply_store_failure(reply, self->store, res);
        return;
    }
    if (one && !found) {
        reply_error(reply, ST_NOT_FOUND, "delivery_id",
                    "delivery %s is not among the dead letters of %s", req->delivery_id,
                    req->subscription_id);
        return;
    }
    log_info("dead letters replayed", "{s:s, s:i, s:s}", "subscription", req->subscription_id,
             "replayed", (int)replayed, "by", call->caller->name);
    Passerelle__DeadLetterReplayReply out = PASSERELLE__DEAD_LETTER_REPLAY_REPLY__INIT;
    out.has_replayed = true;
    out.replayed = replayed;
    reply_set_body(reply, &out.base);
}

/* ====================================================================== */
/* latency.get                                                            */
/* ====================================================================== */

void handle_latency_get(void *ctx, const call_t *call, const ProtobufCMessage *request,
                        reply_t *reply)
{
    (void)call;
    notify_t *self = ctx;
    const Passerelle__LatencyRequest *req = (const Passerelle__LatencyRequest *)request;
    const char *territory = req->territory && *req->territory ? req->territory : NULL;
    if (territory && !refdata_is_territory(territory)) {
        reply_error(reply, ST_INVALID_ARGUMENT, "territory", "territory %s is not one of CT1..CT6",
                    territory);
        return;
    }
    const char *type =
        req->event_type && *req->event_type ? req->event_type : "convention.envisaged";
    if (!match_pattern_valid(type) || strchr(type, '*')) {
        reply_error(reply, ST_INVALID_ARGUMENT, "event_type", "not an event type");
        return;
    }
    deliver_latency_t lat;
    store_result_t res = deliver_latency_read(self->store, type, territory, &lat);
    if (res != STORE_OK) {
        reply_store_failure(reply, self->store, res);
        return;
    }
    Passerelle__LatencyReply out = PASSERELLE__LATENCY_REPLY__INIT;
    out.territory = (char *)(territory ? territory : "");
    out.event_type = (char *)type;
    out.has_count = out.has_p50_ms = out.has_p99_ms = out.has_max_ms = true;
    out.count = lat.count;
    out.p50_ms = lat.p50_ms;
    out.p99_ms = lat.p99_ms;
    out.max_ms = lat.max_ms;
    reply_set_body(reply, &out.base);
}

/* ====================================================================== */
/* The route table                                                        */
/* ====================================================================== */

const route_t notify_routes[] = {
    {"subscription.create", &passerelle__subscription_create_request__descriptor,
     handle_subscription_create, true},
    {"subscription.get", &passerelle__subscription_get_request__descriptor, handle_subscription_get,
     false},
    {"subscription.list", &passerelle__subscription_list_request__descriptor,
     handle_subscription_list, false},
    {"subscription.pause", &passerelle__subscription_step_request__descriptor,
     handle_subscription_pause, true},
    {"subscription.resume", &passerelle__subscription_step_request__descriptor,
     handle_subscription_resume, true},
    {"subscription.delete", &passerelle__subscription_step_request__descriptor,
     handle_subscription_delete, true},
    {"subscription.rotate_secret", &passerelle__subscription_step_request__descriptor,
     handle_subscription_rotate_secret, true},
    {"attempt.list", &passerelle__attempt_list_request__descriptor, handle_attempt_list, false},
    {"deadletter.list", &passerelle__dead_letter_list_request__descriptor, handle_deadletter_list,
     false},
    /* Not recorded under an idempotency key: a replay moves what is dead
     * back to its queue, so a repeat finds nothing left to move. */
    {"deadletter.replay", &passerelle__dead_letter_replay_request__descriptor,
     handle_deadletter_replay, false},
    {"feed.replay", &passerelle__feed_replay_request__descriptor, handle_feed_replay, false},
    {"digest.send", &passerelle__digest_send_request__descriptor, handle_digest_send, true},
    {"latency.get", &passerelle__latency_request__descriptor, handle_latency_get, false},
};

const size_t notify_route_count = sizeof notify_routes / sizeof notify_routes[0];
