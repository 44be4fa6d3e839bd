/* The drain command the services' actors answer (the request server, the
 * delivery worker): on SIGTERM a main tells each actor to stop taking work
 * and finish what it holds by a deadline, waits for it to say it is done,
 * then destroys it ($TERM) as any CZMQ actor.
 *
 *   main                          actor
 *   actor_drain(actor, grace) ->  "DRAIN" <deadline, zclock_mono ms>
 *                                 ... finishes its work ...
 *                             <-  zsock_signal(pipe, 0)
 *                                 actor_await_term(pipe)
 *   zactor_destroy            ->  $TERM: returns */
#ifndef PASSERELLE_ACTOR_H
#define PASSERELLE_ACTOR_H

#include <czmq.h>

/* Sends DRAIN with the deadline grace_ms from now (0 or less: now; the
 * deadline counts from this call, so the work in hand is part of the
 * grace) and waits until the actor signals it drained. A second signal to
 * the process interrupts the wait, not the drain. No-op on NULL. */
void actor_drain(zactor_t *actor, int grace_ms);

/* For an actor that drained and signalled it: waits for $TERM, answering
 * any further DRAIN at once (a second actor_drain returns), and returns
 * when told to stop or when the pipe goes. */
void actor_await_term(zsock_t *pipe);

#endif
