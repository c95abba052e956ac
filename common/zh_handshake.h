/*  zh_handshake.h — a watch on a connecting socket's ZMTP handshake.

    Where it sits: in a client between its connect and the broker's
    BOOTSTRAP (libzhost's attach, zhost-ctl --connect). A libzmq socket
    monitor reports each handshake; a refused CURVE key or a mechanism
    mismatch shows up there within milliseconds, where the socket itself
    would only stay silent (libzmq drops the connection and retries).

    HS-1 (every report names a cause): libzmq reports the same refusal in
    more than one way, depending on which side notices first: a CURVE
    client at a plain broker sees a mechanism mismatch, a failure with no
    detail, or only the connection closing. Whatever arrives, the sentence
    says what to check (the broker's CURVE, the server key, the allow
    directories), never just "failed".
*/
#ifndef ZH_HANDSHAKE_H
#define ZH_HANDSHAKE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct _zh_handshake_t zh_handshake_t;

//  Start watching sock's handshakes (before zmq_connect); curve says
//  whether the client offers CURVE, for the messages. NULL on failure
//  (the caller then simply waits without it).
zh_handshake_t *zh_handshake_new (void *ctx, void *sock, bool curve);

//  Stop the monitor and free; sets *self_p NULL. Safe on NULL.
void zh_handshake_destroy (zh_handshake_t **self_p);

//  The socket to poll for ZMQ_POLLIN.
void *zh_handshake_socket (zh_handshake_t *self);

//  Read the events waiting. 1: a handshake succeeded; -1: one failed (or
//  a connection closed before any handshake succeeded), and why (a
//  sentence naming the endpoint and the cause to check) is in why; 0:
//  nothing decisive.
int zh_handshake_read (zh_handshake_t *self, char *why, size_t why_size);

//  True once a handshake has succeeded.
bool zh_handshake_succeeded (zh_handshake_t *self);

//  True once a connection was made (the peer accepted it), handshake or not.
bool zh_handshake_connected (zh_handshake_t *self);

//  What one monitor event means (HS-1), for zh_handshake_read and the
//  tests: 1 ZMQ_EVENT_HANDSHAKE_SUCCEEDED; -1 a failure (the three
//  ZMQ_EVENT_HANDSHAKE_FAILED_* events, or ZMQ_EVENT_DISCONNECTED, which
//  the caller passes only while no handshake has succeeded), with why
//  set; 0 anything else. value is the event's value (a ZAP status, a
//  ZMQ_PROTOCOL_ERROR_*, an errno); curve: the client offers CURVE.
int zh_handshake_explain (bool curve, uint16_t event, uint32_t value, const char *endpoint,
                          char *why, size_t why_size);

#endif
