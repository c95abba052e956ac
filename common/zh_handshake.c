/*  zh_handshake.c — a watch on a connecting socket's ZMTP handshake (see
    zh_handshake.h).

    zmq_socket_monitor on an inproc PAIR with a name unique to the watched
    socket; libzmq reports every connection attempt, so the first decisive
    event wins. The monitor also reports connections made and closed: a
    close before any handshake succeeded is a failure too (HS-1), and a
    connection made tells the caller's timeout message that someone
    listened.
*/
#include "zh_handshake.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

struct _zh_handshake_t {
    void *watched;  //  the client's socket (not ours)
    void *pair;     //  receives the monitor's events
    bool curve;     //  the client offers CURVE
    bool connected; //  a connection was made
    bool succeeded; //  a handshake succeeded
};

#define S_EVENTS                                                                                   \
    (ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_HANDSHAKE_SUCCEEDED |                \
     ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |                  \
     ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)

zh_handshake_t *
zh_handshake_new (void *ctx, void *sock, bool curve)
{
    zh_handshake_t *self = (zh_handshake_t *)calloc (1, sizeof *self);
    if (!self) return NULL;
    char name[64];
    snprintf (name, sizeof name, "inproc://zh-handshake-%p", sock);
    self->watched = sock;
    self->curve = curve;
    if (zmq_socket_monitor (sock, name, S_EVENTS) != 0 ||
        !(self->pair = zmq_socket (ctx, ZMQ_PAIR)) || zmq_connect (self->pair, name) != 0) {
        zh_handshake_destroy (&self);
        return NULL;
    }
    return self;
}

void
zh_handshake_destroy (zh_handshake_t **self_p)
{
    if (!self_p || !*self_p) return;
    zh_handshake_t *self = *self_p;
    zmq_socket_monitor (self->watched, NULL, 0);
    if (self->pair) {
        int zero = 0;
        zmq_setsockopt (self->pair, ZMQ_LINGER, &zero, sizeof zero);
        zmq_close (self->pair);
    }
    free (self);
    *self_p = NULL;
}

void *
zh_handshake_socket (zh_handshake_t *self)
{
    return self->pair;
}

bool
zh_handshake_succeeded (zh_handshake_t *self)
{
    return self->succeeded;
}

bool
zh_handshake_connected (zh_handshake_t *self)
{
    return self->connected;
}

//  What the user should check, by whether the client offered CURVE (HS-1).
#define S_CHECK_CURVE "is the server key the broker's, and does it run CURVE?"
#define S_CHECK_PLAIN "does the broker require CURVE?"

int
zh_handshake_explain (bool curve, uint16_t event, uint32_t value, const char *endpoint, char *why,
                      size_t why_size)
{
    const char *check = curve ? S_CHECK_CURVE : S_CHECK_PLAIN;
    switch (event) {
    case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
        return 1;
    case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
        snprintf (why, why_size,
                  "%s refused this client's CURVE key (ZAP status %u): is its public "
                  "certificate in the broker's --curve-allow or --curve-admin directory?",
                  endpoint, value);
        return -1;
    case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
        if (value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH)
            snprintf (why, why_size, "%s: security mechanism mismatch: %s", endpoint,
                      curve ? "this client offers CURVE and the broker does not run it"
                            : "the broker requires CURVE (give the broker's certificate "
                              "and this client's)");
        else if (value == ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC ||
                 value == ZMQ_PROTOCOL_ERROR_ZMTP_KEY_EXCHANGE)
            snprintf (why, why_size, "%s: the CURVE handshake failed (0x%08x): %s", endpoint, value,
                      check);
        else
            snprintf (why, why_size, "%s: ZMTP handshake failed (protocol error 0x%08x; %s)",
                      endpoint, value, check);
        return -1;
    case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
        snprintf (why, why_size, "%s: ZMTP handshake failed (%s)", endpoint, check);
        return -1;
    case ZMQ_EVENT_DISCONNECTED:
        snprintf (why, why_size,
                  "%s: ZMTP handshake failed (the connection closed before it completed; %s)",
                  endpoint, check);
        return -1;
    default:
        return 0;
    }
}

int
zh_handshake_read (zh_handshake_t *self, char *why, size_t why_size)
{
    while (true) {
        zmq_msg_t head, addr;
        zmq_msg_init (&head);
        if (zmq_msg_recv (&head, self->pair, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close (&head);
            return 0;
        }
        //  [u16 event, u32 value][endpoint]
        uint16_t event = 0;
        uint32_t value = 0;
        if (zmq_msg_size (&head) >= 6) {
            memcpy (&event, zmq_msg_data (&head), 2);
            memcpy (&value, (uint8_t *)zmq_msg_data (&head) + 2, 4);
        }
        char endpoint[256] = "";
        zmq_msg_init (&addr);
        if (zmq_msg_more (&head) && zmq_msg_recv (&addr, self->pair, 0) >= 0) {
            size_t n = zmq_msg_size (&addr) < sizeof endpoint - 1 ? zmq_msg_size (&addr)
                                                                  : sizeof endpoint - 1;
            memcpy (endpoint, zmq_msg_data (&addr), n);
            endpoint[n] = 0;
        }
        zmq_msg_close (&addr);
        zmq_msg_close (&head);
        if (event == ZMQ_EVENT_CONNECTED) self->connected = true;
        //  A connection that closes after its handshake is the broker
        //  going away, not a refusal: libzmq reconnects.
        if (event == ZMQ_EVENT_DISCONNECTED && self->succeeded) continue;
        int rc = zh_handshake_explain (self->curve, event, value, endpoint, why, why_size);
        if (rc == 1) self->succeeded = true;
        if (rc != 0) return rc;
    }
}
