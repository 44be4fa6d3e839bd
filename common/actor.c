/* The drain command of the services' actors; see actor.h. */
#include "actor.h"

#include <stdio.h>

void actor_drain(zactor_t *actor, int grace_ms)
{
    if (!actor)
        return;
    int64_t deadline_ms = zclock_mono() + (grace_ms > 0 ? grace_ms : 0);
    char deadline[24];
    snprintf(deadline, sizeof deadline, "%lld", (long long)deadline_ms);
    if (zstr_sendx(actor, "DRAIN", deadline, NULL) != 0)
        return;
    while (zsock_wait(actor) < 0 && zmq_errno() == EINTR)
        ;
}

void actor_await_term(zsock_t *pipe)
{
    for (;;) {
        zmsg_t *msg = zmsg_recv(pipe);
        char *command = msg ? zmsg_popstr(msg) : NULL;
        bool again = command && streq(command, "DRAIN");
        zstr_free(&command);
        zmsg_destroy(&msg);
        if (!again)
            return;
        zsock_signal(pipe, 0);
    }
}
