/*  zh_curve_keys.h — CURVE keys from zcert files, for clients.

    Where it sits: beside every client that attaches to a frontend with
    `--curve-secret` (the broker's CURVE server, broker/zh_curve.c): the C
    proc runtime's zhost_proc_attach_curve and zhost-ctl's --curve-server /
    --curve-cert. The broker loads its own certificate with zh_cert_load.
    zh_handshake.h tells such a client when the broker refuses its keys.
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

#endif
