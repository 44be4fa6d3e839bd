/* The services' server keys during a rotation, and a socket monitor that
 * tells whether the service took the one in use (see serverkeys.h).
 *
 * The service drops a HELLO it cannot decrypt and closes the connection,
 * which libzmq 4.3 reports to a socket monitor as
 * HANDSHAKE_FAILED_NO_DETAIL (or _PROTOCOL) within a round trip, and again
 * at every reconnection. A failure of ZAP (HANDSHAKE_FAILED_AUTH) comes
 * after the service read our HELLO, so it says the server key was right. */
#include "serverkeys.h"
#include "identity.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct serverkeys_t {
    /* [0] server.key's, [1] server.next.key's during a rotation */
    char keys[2][KEY_Z85_LEN + 1];
    int count;
    int index;        /* the key in use */
    zsock_t *monitor; /* the watched socket's handshake events */
    zsock_t *watched; /* not ours: the caller's socket */
};

serverkeys_t *serverkeys_new(const char *public_path, const char *next_public_path, char *err,
                             size_t err_size)
{
    serverkeys_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    if (!public_path || !identity_cert_public_key(public_path, self->keys[0])) {
        snprintf(err, err_size, "cannot read the server certificate %s",
                 public_path ? public_path : "(none)");
        free(self);
        return NULL;
    }
    self->count = 1;
    if (next_public_path && access(next_public_path, F_OK) == 0) {
        if (!identity_cert_public_key(next_public_path, self->keys[1])) {
            snprintf(err, err_size, "cannot read the server's next certificate %s",
                     next_public_path);
            free(self);
            return NULL;
        }
        /* the same key twice (the rotation's last step): nothing to try */
        if (strcmp(self->keys[0], self->keys[1]) != 0)
            self->count = 2;
    }
    return self;
}

void serverkeys_destroy(serverkeys_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    serverkeys_monitor_stop(*self_p);
    free(*self_p);
    *self_p = NULL;
}

int serverkeys_count(const serverkeys_t *self)
{
    return self->count;
}

const char *serverkeys_current(const serverkeys_t *self)
{
    return self->keys[self->index];
}

bool serverkeys_uses_next(const serverkeys_t *self)
{
    return self->index == 1;
}

const char *serverkeys_current_name(const serverkeys_t *self)
{
    return self->index == 0 ? "server.key" : "server.next.key";
}

void serverkeys_switch(serverkeys_t *self)
{
    if (self->count > 1)
        self->index = 1 - self->index;
}

/* ------------------------------------------------------------------------
 * The monitor */

/* Each monitor has an inproc endpoint of its own: libzmq lets go of a name
 * some time after the socket bound to it is closed, and monitors are
 * started from several threads. */
static atomic_ulong serverkeys_monitors;

int serverkeys_monitor_start(serverkeys_t *self, zsock_t *socket)
{
    serverkeys_monitor_stop(self);
    unsigned long number =
        atomic_fetch_add_explicit(&serverkeys_monitors, 1, memory_order_relaxed) + 1;
    char endpoint[64];
    snprintf(endpoint, sizeof endpoint, "inproc://passerelle-serverkeys-monitor-%lu", number);
    int events = ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                 ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH;
    if (zmq_socket_monitor(zsock_resolve(socket), endpoint, events) != 0)
        return -1;
    self->monitor = zsock_new(ZMQ_PAIR);
    if (!self->monitor || zsock_connect(self->monitor, "%s", endpoint) != 0) {
        zmq_socket_monitor(zsock_resolve(socket), NULL, 0);
        zsock_destroy(&self->monitor);
        return -1;
    }
    self->watched = socket;
    return 0;
}

void serverkeys_monitor_stop(serverkeys_t *self)
{
    if (!self->monitor)
        return;
    if (self->watched)
        zmq_socket_monitor(zsock_resolve(self->watched), NULL, 0);
    zsock_destroy(&self->monitor);
    self->watched = NULL;
}

zsock_t *serverkeys_monitor(const serverkeys_t *self)
{
    return self->monitor;
}

serverkeys_event_t serverkeys_monitor_read(serverkeys_t *self, int *detail)
{
    if (detail)
        *detail = 0;
    if (!self->monitor)
        return SERVERKEYS_OTHER;
    zmsg_t *msg = zmsg_recv(self->monitor);
    if (!msg)
        return SERVERKEYS_OTHER;
    /* libzmq 4's event frame: a 16-bit event and a 32-bit value */
    zframe_t *frame = zmsg_first(msg);
    uint16_t event = 0;
    uint32_t value = 0;
    if (frame && zframe_size(frame) == 6) {
        memcpy(&event, zframe_data(frame), sizeof event);
        memcpy(&value, zframe_data(frame) + 2, sizeof value);
    }
    zmsg_destroy(&msg);
    if (detail)
        *detail = (int)value;
    switch (event) {
    case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
        return SERVERKEYS_SUCCEEDED;
    case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
    case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
        return SERVERKEYS_WRONG_KEY;
    case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
        return SERVERKEYS_AUTH_REFUSED;
    default:
        return SERVERKEYS_OTHER;
    }
}
