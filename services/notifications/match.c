/* Routing rules and the subscription cache (match.h). */
#include "match.h"

#include "cloudevent.h"
#include "ids.h"
#include "log.h"
#include "notify.h"

#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>

/* ====================================================================== */
/* Facts and rules                                                        */
/* ====================================================================== */

void match_facts(const Passerelle__Event *event, match_facts_t *facts)
{
    memset(facts, 0, sizeof *facts);
    facts->type = event->type ? event->type : "";
    cloudevent_territory(event, facts->territory, sizeof facts->territory);
    cloudevent_private_owner(event, facts->private_to, sizeof facts->private_to);

    /* The service's own events about a subscription are its owner's
     * business: they name its endpoint and what it listens to. */
    if (event->dataschema && strcmp(event->dataschema, "passerelle.Subscription") == 0) {
        ProtobufCMessage *data = cloudevent_data(event);
        if (data) {
            const Passerelle__Subscription *sub = (const Passerelle__Subscription *)data;
            snprintf(facts->private_to, sizeof facts->private_to, "%s",
                     sub->owner_party ? sub->owner_party : "ADMIN");
            snprintf(facts->about_subscription, sizeof facts->about_subscription, "%s",
                     sub->id ? sub->id : "");
            protobuf_c_message_free_unpacked(data, NULL);
        } else {
            /* Undecodable: safest is to show it to operations only. */
            snprintf(facts->private_to, sizeof facts->private_to, "ADMIN");
        }
        facts->endpoint_disabled = strcmp(facts->type, "endpoint.disabled") == 0;
    }
}

bool match_pattern_valid(const char *pattern)
{
    if (!pattern || !*pattern || strlen(pattern) > 64)
        return false;
    if (strcmp(pattern, "*") == 0)
        return true;
    size_t len = strlen(pattern);
    for (size_t i = 0; i < len; i++) {
        char c = pattern[i];
        if (c == '*') {
            /* Only as the whole last segment: "a.*". */
            if (i != len - 1 || i < 2 || pattern[i - 1] != '.')
                return false;
        } else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.')) {
            return false;
        }
    }
    return pattern[0] != '.' && strstr(pattern, "..") == NULL && (pattern[len - 1] != '.');
}

bool match_type(const char *pattern, const char *type)
{
    if (strcmp(pattern, "*") == 0)
        return true;
    size_t len = strlen(pattern);
    if (len >= 2 && pattern[len - 1] == '*')
        return strncmp(pattern, type, len - 1) == 0 && type[len - 1] != '\0';
    return strcmp(pattern, type) == 0;
}

static bool types_match(const Passerelle__Subscription *sub, const char *type)
{
    if (sub->n_event_types == 0)
        return true;
    for (size_t i = 0; i < sub->n_event_types; i++)
        if (match_type(sub->event_types[i], type))
            return true;
    return false;
}

static bool territory_matches(const Passerelle__Subscription *sub, const char *territory)
{
    if (sub->n_territories == 0)
        return true;
    for (size_t i = 0; i < sub->n_territories; i++)
        if (strcmp(sub->territories[i], territory) == 0)
            return true;
    return false;
}

bool match_subscription(const Passerelle__Subscription *sub, const match_facts_t *facts)
{
    const char *owner = sub->owner_party ? sub->owner_party : "";
    bool admin = strcmp(owner, "ADMIN") == 0;

    if (facts->private_to[0]) {
        if (sub->channel == PASSERELLE__CHANNEL__CHANNEL_FEED)
            return false; /* the feed is broadcast */
        if (!admin && strcmp(owner, facts->private_to) != 0)
            return false;
    }
    if (facts->endpoint_disabled && facts->about_subscription[0]) {
        if (sub->id && strcmp(sub->id, facts->about_subscription) == 0)
            return false;
        /* The owner hears of it on every other channel it has. */
        if (strcmp(owner, facts->private_to) == 0 &&
            sub->channel == PASSERELLE__CHANNEL__CHANNEL_WEBHOOK)
            return true;
    }

    if (sub->channel == PASSERELLE__CHANNEL__CHANNEL_EMAIL)
        return strcmp(facts->type, "digest.ready") == 0 && territory_matches(sub, facts->territory);
    if (sub->channel != PASSERELLE__CHANNEL__CHANNEL_WEBHOOK &&
        sub->channel != PASSERELLE__CHANNEL__CHANNEL_FEED)
        return false;
    return types_match(sub, facts->type) && territory_matches(sub, facts->territory);
}

/* ====================================================================== */
/* The cache                                                              */
/* ====================================================================== */

struct subcache_t {
    Passerelle__Subscription **subs;
    size_t count;
    long long loaded; /* the change counter at the last load; -1: never */
};

subcache_t *subcache_new(void)
{
    subcache_t *self = calloc(1, sizeof *self);
    if (self)
        self->loaded = -1;
    return self;
}

static void subcache_clear(subcache_t *self)
{
    for (size_t i = 0; i < self->count; i++)
        protobuf_c_message_free_unpacked(&self->subs[i]->base, NULL);
    free(self->subs);
    self->subs = NULL;
    self->count = 0;
}

void subcache_destroy(subcache_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    subcache_clear(*self_p);
    free(*self_p);
    *self_p = NULL;
}

/* Cost: one HGET per refresh; on a change, one ZRANGE and one pipeline of
 * HGETs for every subscription (there are tens, not millions). */
store_result_t subcache_refresh(subcache_t *self, store_t *store)
{
    redisReply *r = NULL;
    store_result_t res = store_command(store, &r, "HGET %s %s", NOTIFY_META_KEY, NOTIFY_META_SUBS);
    if (res != STORE_OK)
        return res;
    long long counter = 0;
    if (r->type == REDIS_REPLY_STRING)
        counter = strtoll(r->str, NULL, 10);
    freeReplyObject(r);
    return subcache_sync(self, store, counter);
}

store_result_t subcache_sync(subcache_t *self, store_t *store, long long counter)
{
    if (counter == self->loaded)
        return STORE_OK;
    redisReply *r = NULL;
    store_result_t res = store_command(store, &r, "ZRANGE %s 0 -1", NOTIFY_SUBS_INDEX);
    if (res != STORE_OK)
        return res;
    if (r->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(r);
        return STORE_REFUSED;
    }
    size_t n = r->elements;
    Passerelle__Subscription **subs = calloc(n ? n : 1, sizeof *subs);
    store_cmd_t *cmds = calloc(n ? n : 1, sizeof *cmds);
    const char **argv = calloc(n ? 3 * n : 1, sizeof *argv);
    char(*keys)[NOTIFY_KEY_MAX] = calloc(n ? n : 1, sizeof *keys);
    redisReply **replies = calloc(n ? n : 1, sizeof *replies);
    store_result_t *results = calloc(n ? n : 1, sizeof *results);
    size_t got = 0;
    if (!subs || !cmds || !argv || !keys || !replies || !results) {
        res = STORE_REFUSED;
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        notify_key_sub(r->element[i]->str, keys[i]);
        argv[3 * i] = "HGET";
        argv[3 * i + 1] = keys[i];
        argv[3 * i + 2] = "pb";
        cmds[i].argc = 3;
        cmds[i].argv = &argv[3 * i];
    }
    if (n)
        store_command_many(store, cmds, n, replies, results);
    for (size_t i = 0; i < n; i++)
        if (results[i] != STORE_OK) {
            res = results[i];
            goto done;
        }
    for (size_t i = 0; i < n; i++) {
        if (!replies[i] || replies[i]->type != REDIS_REPLY_STRING)
            continue; /* deleted since the ZRANGE */
        Passerelle__Subscription *sub = passerelle__subscription__unpack(
            NULL, replies[i]->len, (const uint8_t *)replies[i]->str);
        if (sub)
            subs[got++] = sub;
        else
            log_warn("a subscription record does not decode", "{s:s}", "key", keys[i]);
    }
    subcache_clear(self);
    self->subs = subs;
    self->count = got;
    self->loaded = counter;
    subs = NULL;
done:
    for (size_t i = 0; i < n; i++)
        if (replies && replies[i])
            freeReplyObject(replies[i]);
    if (subs) {
        for (size_t i = 0; i < got; i++)
            protobuf_c_message_free_unpacked(&subs[i]->base, NULL);
        free(subs);
    }
    free(replies);
    free(results);
    free(keys);
    free(argv);
    free(cmds);
    freeReplyObject(r);
    return res;
}

long long subcache_counter(const subcache_t *self)
{
    return self->loaded;
}

size_t subcache_count(const subcache_t *self)
{
    return self->count;
}

const Passerelle__Subscription *subcache_at(const subcache_t *self, size_t i)
{
    return i < self->count ? self->subs[i] : NULL;
}

const Passerelle__Subscription *subcache_find(const subcache_t *self, const char *id)
{
    for (size_t i = 0; i < self->count; i++)
        if (self->subs[i]->id && strcmp(self->subs[i]->id, id) == 0)
            return self->subs[i];
    return NULL;
}
