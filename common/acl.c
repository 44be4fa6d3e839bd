/* Who may send what: the single place where a request type meets the
 * parties allowed to send it. Services add their request types here; the
 * server checks every request against this table before its handler runs. */
#include "acl.h"

#include <stddef.h>
#include <string.h>

/* Those who keep the register of units and conventions: the Métropole and
 * the operators it mandates, and operations. */
#define REGISTER_KEEPERS (PARTY_METROPOLE | PARTY_OPERATOR | PARTY_ADMIN)
/* Those who read it: the keepers, Action Logement, and the other services. */
#define REGISTER_READERS (REGISTER_KEEPERS | PARTY_ACTION_LOGEMENT | PARTY_SERVICE)
/* The Métropole sets programmes and objectives. */
#define PROGRAMME_KEEPERS (PARTY_METROPOLE | PARTY_ADMIN)
/* Reservations are Action Logement's, and the Métropole records those of
 * the other reservataires (the handler checks which one a party may name). */
#define RESERVATION_KEEPERS (PARTY_ACTION_LOGEMENT | PARTY_METROPOLE | PARTY_ADMIN)
/* Decisions come from the allocation committees, recorded by the Métropole
 * or the operator; Action Logement may only withdraw its candidate (the
 * handler checks). */
#define DECISION_MAKERS (PARTY_METROPOLE | PARTY_OPERATOR | PARTY_ACTION_LOGEMENT | PARTY_ADMIN)

static const struct {
    const char *type;
    unsigned parties;
} acl_table[] = {
    /* every service */
    {"health", PARTY_ANY},
    {"event.list", REGISTER_READERS},

    /* reservations: units and ANAH conventions */
    {"unit.register", REGISTER_KEEPERS},
    {"unit.get", REGISTER_READERS},
    {"unit.list", REGISTER_READERS},
    {"convention.envisage", REGISTER_KEEPERS},
    {"convention.sign", REGISTER_KEEPERS},
    {"convention.in_force", REGISTER_KEEPERS},
    {"convention.end", REGISTER_KEEPERS},
    {"convention.abandon", REGISTER_KEEPERS},
    {"convention.get", REGISTER_READERS},

    /* reservations: programmes, objectives, reservations, proposals */
    {"programme.create", PROGRAMME_KEEPERS},
    {"programme.get", REGISTER_READERS},
    {"programme.list", REGISTER_READERS},
    {"programme.attach_unit", REGISTER_KEEPERS},
    {"objective.set", PROGRAMME_KEEPERS},
    {"progress.get", REGISTER_READERS},
    {"reservation.create", RESERVATION_KEEPERS},
    {"reservation.release", RESERVATION_KEEPERS},
    {"reservation.cancel", RESERVATION_KEEPERS},
    {"reservation.vacancy", RESERVATION_KEEPERS},
    {"reservation.get", REGISTER_READERS},
    {"reservation.list", REGISTER_READERS},
    {"proposal.record", PARTY_ACTION_LOGEMENT | PARTY_ADMIN},
    {"proposal.get", REGISTER_READERS},
    {"proposal.list", REGISTER_READERS},
    {"attribution.decide", DECISION_MAKERS},

    /* docstore: every party publishes and reads (the handlers apply the
     * owner and visibility rules); integrity checks are operations'. */
    {"upload.begin", PARTY_ANY},
    {"upload.chunk", PARTY_ANY},
    {"upload.commit", PARTY_ANY},
    {"document.get", PARTY_ANY},
    {"document.read", PARTY_ANY},
    {"document.list", PARTY_ANY},
    {"document.withdraw", PARTY_ANY},
    {"docs.fsck", PARTY_ADMIN},

    /* notifications: every party subscribes; the handlers let only the
     * owner party and ADMIN see or change a subscription and its
     * deliveries. The digest is the Métropole's communication. */
    {"subscription.create", PARTY_ANY},
    {"subscription.get", PARTY_ANY},
    {"subscription.list", PARTY_ANY},
    {"subscription.pause", PARTY_ANY},
    {"subscription.resume", PARTY_ANY},
    {"subscription.delete", PARTY_ANY},
    {"subscription.rotate_secret", PARTY_ANY},
    {"attempt.list", PARTY_ANY},
    {"deadletter.list", PARTY_ANY},
    {"deadletter.replay", PARTY_ANY},
    {"feed.replay", PARTY_ANY},
    {"digest.send", PARTY_METROPOLE | PARTY_ADMIN},
    {"latency.get", PARTY_ANY},

    /* indicators: the Métropole shares its economic projects, Action
     * Logement its demand figures; both are read by the parties of the
     * partnership, not by partner systems (a company's plans may not be
     * public yet). The figures are for everyone, partners included (the
     * housing observatory); only operations rebuild them. */
    {"project.create", PARTY_METROPOLE | PARTY_ADMIN},
    {"project.update", PARTY_METROPOLE | PARTY_ADMIN},
    {"project.get", REGISTER_READERS},
    {"project.list", REGISTER_READERS},
    {"demand.import", PARTY_ACTION_LOGEMENT | PARTY_ADMIN},
    {"demand.get", REGISTER_READERS},
    {"indicator.list", PARTY_ANY},
    {"indicator.series", PARTY_ANY},
    {"indicator.snapshot", PARTY_ANY},
    {"indicator.export", PARTY_ANY},
    {"indicator.rebuild", PARTY_ADMIN},
    {"indicator.rebuild_status", PARTY_ANY},
};

unsigned acl_parties(const char *request_type)
{
    if (!request_type)
        return 0;
    for (size_t i = 0; i < sizeof acl_table / sizeof acl_table[0]; i++)
        if (strcmp(acl_table[i].type, request_type) == 0)
            return acl_table[i].parties;
    return 0;
}

bool acl_allows(const char *request_type, party_t party)
{
    return party != PARTY_NONE && (acl_parties(request_type) & (unsigned)party) != 0;
}
