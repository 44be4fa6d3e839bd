/* The territory digest: the convention's "regular communication" to Action
 * Logement's correspondent of each territory - the units whose ANAH
 * convention is envisaged and not yet signed, and what changed since the
 * last digest.
 *
 * A projection kept by its own consumer group (DIGEST_GROUP) on the
 * reservations stream: convention.envisaged adds the unit to its
 * territory's list, convention.signed, .abandoned and .ended (and any later
 * state) remove it; every convention event is also a change. Each event's
 * effect and its done marker are one Lua script, so a crash never counts an
 * event twice.
 *
 * On schedule (every PASSERELLE_DIGEST_INTERVAL_S, default 86400, aligned
 * on PASSERELLE_DIGEST_AT local time, default 07:00 Europe/Paris) or on the
 * request "digest.send", the digest of each territory is committed as a
 * "digest.ready" event on NOTIFY_STREAM, its data a Digest, with the cut
 * recorded in the same transaction (guarded: two replicas or a retry make
 * one digest per cut). The fan-out then delivers it like any event: to
 * EMAIL subscriptions of the territory (rendered by digest_render_email)
 * and to webhooks whose filters match "digest.ready". */
#ifndef NOTIFY_DIGEST_H
#define NOTIFY_DIGEST_H

#include "notifications.pb-c.h"
#include "server.h"
#include "store.h"

#include <stddef.h>
#include <stdint.h>

#define DIGEST_GROUP "notifications.digest"

typedef struct digest_t digest_t;

typedef struct {
    const store_config_t *store; /* copied; the digest opens its own connections */
    const char *stream;          /* default "reservations:events" */
    const char *consumer;        /* this process's consumer name */
    int64_t interval_s;          /* default 86400 */
    int at_minute;               /* minutes after local midnight, default 7*60 */
    double clock_scale;          /* as notify_t's: >1 runs the schedule faster */
} digest_config_t;

/* Starts the digest actor (projection and schedule). NULL (logged) on
 * failure. */
digest_t *digest_new(const digest_config_t *cfg);
void digest_destroy(digest_t **self_p);

/* The "digest.send" request (DigestSendRequest -> DigestSendReply): commits
 * the digest of one territory now (every territory when none is named:
 * the reply lists the events made). ctx is a notify_t. */
void handle_digest_send(void *ctx, const call_t *call, const ProtobufCMessage *request,
                        reply_t *reply);

/* The schedule, pure functions exposed for tests. The cuts fall at
 * at_minute local time (Europe/Paris) and then every interval_s, divided by
 * clock_scale when it is above 1: an interval shorter than a day starts
 * again at at_minute each local day, an interval of whole days keeps to
 * at_minute on every n-th day (counted from 1970-01-01), any other repeats
 * from 1970-01-01 at at_minute. So the daily cut stays at 07:00 across the
 * clock changes. Times are epoch milliseconds. */
int64_t digest_next_cut_ms(int64_t after_ms, int64_t interval_s, int at_minute, double clock_scale);
/* The latest cut at or before t_ms (the one owed after a restart). */
int64_t digest_cut_at_or_before_ms(int64_t t_ms, int64_t interval_s, int at_minute,
                                   double clock_scale);

/* The e-mail of a digest: a whole RFC 5322 message (CRLF lines, UTF-8,
 * quoted-printable text), with Message-ID derived from message_id so that
 * a retried send is recognisably the same message. malloc'd, NUL-terminated;
 * length in *len_out. */
char *digest_render_email(const Passerelle__Digest *digest, const char *from, const char *to,
                          const char *message_id, size_t *len_out);

#endif
