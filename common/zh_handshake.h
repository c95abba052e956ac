/*  zh_handshake.h — a watch on a connecting socket's ZMTP handshake.

    Where it sits: in a client between its connect and the broker's
    BOOTSTRAP (libzhost's attach, zhost-ctl --connect). A libzmq socket
    monitor reports each handshake; a refused CURVE key or a mechanism
    mismatch shows up there within milliseconds, where the socket itself
    would only stay silent (libzmq drops the connection and retries).
*/
#ifndef ZH_HANDSHAKE_H
#define ZH_HANDSHAKE_H

#include <stdbool.h>
#include <stddef.h>

typedef struct _zh_handshake_t zh_handshake_t;

//  Start watching sock's handshakes (before zmq_connect); curve says
//  whether the client offers CURVE, for the messages. NULL on failure
//  (the caller then simply waits without it).
zh_handshake_t *zh_handshake_new (void *ctx, void *sock, bool curve);

//  Stop the monitor and free; sets *self_p NULL. Safe on NULL.
void zh_handshake_destroy (zh_handshake_t **self_p);

//  The socket to poll for ZMQ_POLLIN.
void *zh_handshake_socket (zh_handshake_t *self);

//  Read the events waiting. 1: a handshake succeeded; -1: one failed, and
//  why (a sentence naming the endpoint) is in why; 0: nothing decisive.
int zh_handshake_read (zh_handshake_t *self, char *why, size_t why_size);

//  True once a handshake has succeeded.
bool zh_handshake_succeeded (zh_handshake_t *self);

#endif
