/* The services' server keys as a client knows them during a rotation of
 * the services' key: server.key, and server.next.key when it is there and
 * differs. The client uses one at a time (the one that last worked) and
 * moves to the other when the service does not take it.
 *
 * A CURVE handshake with the wrong server key is dropped by the service,
 * which a socket monitor reports at once as a failed handshake: this class
 * watches one socket's handshakes and tells what each event means. When to
 * switch keys is the caller's rule (a request client and a subscriber do
 * not wait the same way); switching only changes the key in use, the
 * caller then reopens its socket. */
#ifndef PASSERELLE_SERVERKEYS_H
#define PASSERELLE_SERVERKEYS_H

#include <czmq.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct serverkeys_t serverkeys_t;

/* What one handshake event says. */
typedef enum {
    SERVERKEYS_OTHER,        /* nothing about the keys */
    SERVERKEYS_SUCCEEDED,    /* the handshake succeeded: the key in use is taken */
    SERVERKEYS_WRONG_KEY,    /* failed: the service could not read our HELLO */
    SERVERKEYS_AUTH_REFUSED, /* failed at ZAP: the server key is right, our own
                              * is refused (the other server key would not help) */
} serverkeys_event_t;

/* Reads server.key's public key at public_path, and server.next.key's at
 * next_public_path when that is not NULL and the file exists. NULL with a
 * message in err when a file that is there cannot be read: better to say
 * so than to miss the rotation. */
serverkeys_t *serverkeys_new(const char *public_path, const char *next_public_path, char *err,
                             size_t err_size);
/* Stops the monitor (see serverkeys_monitor_stop) and frees. */
void serverkeys_destroy(serverkeys_t **self_p);

/* 2 during a rotation (two different keys), else 1. */
int serverkeys_count(const serverkeys_t *self);
/* The key in use (Z85), for zsock_set_curve_serverkey. */
const char *serverkeys_current(const serverkeys_t *self);
/* True when the key in use is server.next.key's. */
bool serverkeys_uses_next(const serverkeys_t *self);
/* "server.key" or "server.next.key": the key in use, for the logs. */
const char *serverkeys_current_name(const serverkeys_t *self);
/* Moves to the other key (with one key, stays). */
void serverkeys_switch(serverkeys_t *self);

/* Watches the handshakes of socket, not yet connected so that no event is
 * lost, on an inproc PAIR of its own; stops watching any earlier socket.
 * socket stays the caller's, who calls serverkeys_monitor_stop before
 * destroying it. 0, or -1 (zmq_errno says why) with nothing watched. */
int serverkeys_monitor_start(serverkeys_t *self, zsock_t *socket);
/* Stops watching; nothing when nothing is watched. */
void serverkeys_monitor_stop(serverkeys_t *self);
/* The monitor's socket to poll; NULL when nothing is watched. */
zsock_t *serverkeys_monitor(const serverkeys_t *self);
/* Reads one event from the monitor (call it when the monitor is readable).
 * *detail, when not NULL, gets the event's value (the ZMTP error or the
 * ZAP status). */
serverkeys_event_t serverkeys_monitor_read(serverkeys_t *self, int *detail);

#endif
