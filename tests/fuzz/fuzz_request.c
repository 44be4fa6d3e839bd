/* Fuzz target: whatever bytes a peer sends go through the same path as a
 * request frame — the envelope codec, the body decoded as every request
 * type of the reservations service, the document store, notifications and
 * indicators, the protobuf-JSON mapping both ways (the CLI's and the
 * webhooks' path), what an event counts as indicators (an event is input
 * too: any producer may append to a stream), and the pure validators a handler calls before it
 * touches Redis or the disk. Nothing here may crash, leak, or read out of bounds.
 *
 * Built two ways: with clang's libFuzzer (-DPASSERELLE_FUZZ=ON, then
 * `build-fuzz/tests/fuzz_request -max_total_time=60 tests/fuzz/corpus`),
 * and as a plain program that replays the corpus files given on its command
 * line, which ctest runs on every build. */
#include "cloudevent.h"
#include "digest.h"
#include "doc_rules.h"
#include "docstore.pb-c.h"
#include "domain.h"
#include "envelope.h"
#include "indicators.pb-c.h"
#include "match.h"
#include "projection.h"
#include "notifications.pb-c.h"
#include "pbjson.h"
#include "reservations.pb-c.h"
#include "url_policy.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_MAX_FRAME (64 * 1024)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The message through JSON and back: both directions must cope with
 * anything protobuf-c accepted (unknown enum numbers, odd doubles, bytes). */
static void json_round_trip(const ProtobufCMessage *msg)
{
    json_t *json = pbjson_from_message(msg);
    if (!json)
        return;
    char err[256], field[64];
    ProtobufCMessage *back =
        pbjson_to_message(msg->descriptor, json, err, sizeof err, field, sizeof field);
    if (back)
        protobuf_c_message_free_unpacked(back, NULL);
    json_decref(json);
}

static void validate_document(const ProtobufCMessage *msg)
{
    doc_error_t err;
    if (msg->descriptor == &passerelle__upload_begin_request__descriptor) {
        const Passerelle__UploadBeginRequest *req = (const Passerelle__UploadBeginRequest *)msg;
        doc_metadata_valid(req, &err);
        doc_upload_valid(req, 512u << 20, &err);
        if (req->title)
            doc_words(req->title, NULL, NULL);
    } else if (msg->descriptor == &passerelle__upload_commit_request__descriptor) {
        /* The SHA-256 it may name, against a begin that named none and one
         * that named one. */
        const Passerelle__UploadCommitRequest *req = (const Passerelle__UploadCommitRequest *)msg;
        char sha[65];
        doc_commit_sha("", req->sha256, sha, &err);
        doc_commit_sha("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                       req->sha256, sha, &err);
    } else if (msg->descriptor == &passerelle__upload_chunk_request__descriptor) {
        const Passerelle__UploadChunkRequest *req = (const Passerelle__UploadChunkRequest *)msg;
        doc_chunk_check(1u << 20, 4096, req->offset, req->data.len, 1u << 20, &err);
    } else if (msg->descriptor == &passerelle__document__descriptor) {
        const Passerelle__Document *doc = (const Passerelle__Document *)msg;
        size_t index;
        doc_may_see(doc, PARTY_PARTNER);
        doc_version_pick(doc, 0, false, &index, &err);
        doc_version_pick(doc, 2, true, &index, &err);
    }
}

/* What the notifications service does with what it is sent or reads: a
 * subscription's URL and patterns, an event as CloudEvents JSON and as
 * routing facts, a digest as an e-mail. */
static void validate_notification(const ProtobufCMessage *msg)
{
    static url_policy_t *policy;
    if (!policy) {
        char err[128];
        policy = url_policy_new("127.0.0.1,*.example.org,10.1.0.0/16", err, sizeof err);
    }
    if (msg->descriptor == &passerelle__subscription_create_request__descriptor) {
        const Passerelle__SubscriptionCreateRequest *req =
            (const Passerelle__SubscriptionCreateRequest *)msg;
        char why[256];
        if (req->url && policy)
            url_policy_check_url(policy, req->url, why, sizeof why);
        for (size_t i = 0; i < req->n_event_types; i++)
            if (match_pattern_valid(req->event_types[i]))
                match_type(req->event_types[i], "convention.envisaged");
    } else if (msg->descriptor == &passerelle__event__descriptor) {
        const Passerelle__Event *event = (const Passerelle__Event *)msg;
        size_t len = 0;
        free(cloudevent_json(event, &len));
        match_facts_t facts;
        match_facts(event, &facts);
        Passerelle__Subscription sub = PASSERELLE__SUBSCRIPTION__INIT;
        sub.owner_party = "PARTNER";
        sub.has_channel = true;
        sub.channel = PASSERELLE__CHANNEL__CHANNEL_WEBHOOK;
        match_subscription(&sub, &facts);
    } else if (msg->descriptor == &passerelle__digest__descriptor) {
        size_t len = 0;
        free(digest_render_email((const Passerelle__Digest *)msg, "a@example.org", "b@example.org",
                                 "msg_E1", &len));
    }
}

static void validate(const ProtobufCMessage *msg)
{
    domain_error_t err;
    date_t today = {2026, 11, 29};
    validate_document(msg);
    validate_notification(msg);
    if (msg->descriptor == &passerelle__unit_register_request__descriptor) {
        Passerelle__Unit unit = PASSERELLE__UNIT__INIT;
        unit_validate((const Passerelle__UnitRegisterRequest *)msg, &unit, &err);
    } else if (msg->descriptor == &passerelle__unit_list_request__descriptor) {
        unit_filter_t filter;
        unit_filter_parse((const Passerelle__UnitListRequest *)msg, &filter, &err);
    } else if (msg->descriptor == &passerelle__convention_envisage_request__descriptor) {
        date_t on;
        convention_envisage_validate((const Passerelle__ConventionEnvisageRequest *)msg, today, &on,
                                     &err);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const ProtobufCMessageDescriptor *bodies[] = {
        &passerelle__unit_register_request__descriptor,
        &passerelle__unit_get_request__descriptor,
        &passerelle__unit_list_request__descriptor,
        &passerelle__convention_envisage_request__descriptor,
        &passerelle__convention_step_request__descriptor,
        &passerelle__convention_get_request__descriptor,
        &passerelle__event_list_request__descriptor,
        &passerelle__unit__descriptor,
        &passerelle__convention__descriptor,
        &passerelle__event__descriptor,
        &passerelle__upload_begin_request__descriptor,
        &passerelle__upload_chunk_request__descriptor,
        &passerelle__upload_commit_request__descriptor,
        &passerelle__document_read_request__descriptor,
        &passerelle__document_list_request__descriptor,
        &passerelle__document_withdraw_request__descriptor,
        &passerelle__document__descriptor,
        &passerelle__subscription_create_request__descriptor,
        &passerelle__subscription_list_request__descriptor,
        &passerelle__subscription_step_request__descriptor,
        &passerelle__dead_letter_replay_request__descriptor,
        &passerelle__attempt_list_request__descriptor,
        &passerelle__latency_request__descriptor,
        &passerelle__digest_send_request__descriptor,
        &passerelle__subscription__descriptor,
        &passerelle__delivery__descriptor,
        &passerelle__digest__descriptor,
        &passerelle__project_create_request__descriptor,
        &passerelle__project_update_request__descriptor,
        &passerelle__project_list_request__descriptor,
        &passerelle__demand_import_request__descriptor,
        &passerelle__series_request__descriptor,
        &passerelle__snapshot_request__descriptor,
        &passerelle__export_request__descriptor,
        &passerelle__economic_project__descriptor,
        &passerelle__demand_period__descriptor,
    };
    status_t status;
    char field[64], message[256];
    Passerelle__Request *req =
        envelope_decode_request(data, size, FUZZ_MAX_FRAME, &status, field, message);
    /* The frame as an envelope, and also (whatever the envelope said) as a
     * body of each type, so the corpus need not be wrapped to reach them. */
    const uint8_t *body = data;
    size_t body_len = size;
    if (req && req->has_body) {
        body = req->body.data;
        body_len = req->body.len;
    }
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        ProtobufCMessage *msg = protobuf_c_message_unpack(bodies[i], NULL, body_len, body);
        if (!msg)
            continue;
        json_round_trip(msg);
        validate(msg);
        protobuf_c_message_free_unpacked(msg, NULL);
    }
    if (req)
        passerelle__request__free_unpacked(req, NULL);

    /* The bytes as an event of a stream, counted as the indicators count it. */
    Passerelle__Event *event = passerelle__event__unpack(NULL, size, data);
    if (event) {
        projection_t counted;
        if (projection_of(event, &counted))
            projection_free(&counted);
        passerelle__event__free_unpacked(event, NULL);
    }

    /* The same bytes as JSON text, as the CLI would feed them. */
    json_error_t jerr;
    json_t *json = json_loadb((const char *)data, size, JSON_DISABLE_EOF_CHECK, &jerr);
    if (json) {
        char err[256];
        for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
            ProtobufCMessage *msg =
                pbjson_to_message(bodies[i], json, err, sizeof err, field, sizeof field);
            if (msg) {
                validate(msg);
                protobuf_c_message_free_unpacked(msg, NULL);
            }
        }
        json_decref(json);
    }
    return 0;
}

#ifndef PASSERELLE_LIBFUZZER
/* Replays files: each argument is one input. */
int main(int argc, char **argv)
{
    int replayed = 0;
    for (int i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (!f) {
            fprintf(stderr, "fuzz_request: cannot open %s\n", argv[i]);
            return 1;
        }
        uint8_t *buf = malloc(FUZZ_MAX_FRAME * 2);
        size_t n = buf ? fread(buf, 1, FUZZ_MAX_FRAME * 2, f) : 0;
        fclose(f);
        if (!buf)
            return 1;
        LLVMFuzzerTestOneInput(buf, n);
        free(buf);
        replayed++;
    }
    printf("fuzz_request: %d inputs replayed\n", replayed);
    return replayed > 0 ? 0 : 1;
}
#endif
