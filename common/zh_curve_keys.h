/*  zh_curve_keys.h — CURVE keys from zcert files, and a watch on a
    connecting socket's ZMTP handshake.

    Where it sits: beside every client that attaches to a frontend with
    `--curve-secret` (the broker's CURVE server, broker/zh_curve.c): the C
    proc runtime's zhost_proc_attach_curve and zhost-ctl's --curve-server /
    --curve-cert. The broker loads its own certificate with zh_cert_load.
    The handshake watch is a libzmq socket monitor, read only while a
    client waits for its BOOTSTRAP: a refused key or a mechanism mismatch
    shows up there within milliseconds, where the socket itself would only
    stay silent (libzmq drops the connection and retries).
*/
#ifndef ZH_CURVE_KEYS_H
#define ZH_CURVE_KEYS_H

#include <czmq.h>
#include <stdbool.h>

#include "zh_error.h"

#define ZH_Z85_KEY_LEN 40

//  A client's CURVE keys, Z85 text (40 characters and a NUL each).
typedef struct {
    char server_public[ZH_Z85_KEY_LEN + 1]; //  the broker's public key
    char public_key[ZH_Z85_KEY_LEN + 1];    //  this client's
    char secret_key[ZH_Z85_KEY_LEN + 1];
} zh_curve_keys_t;

//  Load a zcert certificate given by either of its files (NAME or
//  NAME_secret). With need_secret, a certificate without its secret part
//  is refused. what names the flag or argument in the message (err code
//  2, a usage error). NULL on failure.
zcert_t *zh_cert_load (const char *file, bool need_secret, const char *what, zh_error_t *err);

//  Fill keys from the broker's certificate (its public file is enough) and
//  this client's certificate (its secret file must be beside it, as
//  `zhost-ctl keygen` writes them). 0, or -1 with err naming the file.
int zh_curve_keys_load (zh_curve_keys_t *keys, const char *server_cert, const char *client_cert,
                        zh_error_t *err);

//  Check that each key is 40 characters of valid Z85. 0 or -1 (err).
int zh_curve_keys_check (const zh_curve_keys_t *keys, zh_error_t *err);

//  Make sock a CURVE client with keys (before zmq_connect). 0 or -1.
int zh_curve_keys_apply (const zh_curve_keys_t *keys, void *sock);

//  ---------------------------------------------------------------------
//  The handshake watch

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
