/*  zh_curve.h — CURVE on the frontend: the broker's certificate, the
    allowed and admin client keys, and a ZAP handler (RFC 27) that checks
    them.

    Where it sits: zh_broker.c creates it before the frontend is bound
    (docs/design.md, Security: --curve-secret, --curve-allow, --curve-admin),
    polls its ZAP socket in the loop, and the router asks, per message,
    whether the key it arrived under (libzmq's "User-Id" property, which our ZAP reply sets
    to the client's Z85 public key) is an admin key. Certificates are czmq
    zcert files (zhost-ctl keygen writes them); the key directories are
    read with zcertstore, which reloads a directory when it changes.

    CU-1 (admins are allowed): a key in the admin directory may connect
    even when it is not in the allow directory.
*/
#ifndef ZH_CURVE_H
#define ZH_CURVE_H

#include <stdbool.h>

#include "zh_error.h"

typedef struct _zh_curve_t zh_curve_t;

//  Load the broker's secret certificate (FILE or FILE_secret, as zcert
//  writes them) and the key directories, and bind the ZAP handler in ctx.
//  NULL with err (the flag, the path and what is wrong).
zh_curve_t *zh_curve_new (void *ctx, const char *secret_file, const char *allow_dir,
                          const char *admin_dir, zh_error_t *err);
void zh_curve_destroy (zh_curve_t **self_p);

//  Make socket a CURVE server with the broker's keys (before bind). 0/-1.
int zh_curve_apply (zh_curve_t *self, void *socket);

//  The ZAP socket, to poll; zh_curve_handle answers one request.
void *zh_curve_zap_socket (zh_curve_t *self);
void zh_curve_handle (zh_curve_t *self);

//  True if user_id (a Z85 public key) is an admin key.
bool zh_curve_is_admin (zh_curve_t *self, const char *user_id);

//  The broker's public key, Z85 (for the log and for clients).
const char *zh_curve_public_txt (zh_curve_t *self);

#endif
