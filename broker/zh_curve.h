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
    CU-2 (peers are brokers): a key in the peers directory (--curve-peers:
    other brokers' public certificates, each with metadata `endpoint`) may
    connect, and may say HELLO only as the endpoint its certificate names;
    HELLO under any other key is refused. A peer-only key cannot ATTACH.
    Links to other brokers dial as CURVE clients with this broker's
    certificate and the server key found for the endpoint they dial.
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
                          const char *admin_dir, const char *peers_dir, zh_error_t *err);
void zh_curve_destroy (zh_curve_t **self_p);

//  SIGHUP: read the key directories again (their paths may have changed;
//  NULL: none). All or nothing: on an error (err names the flag and the
//  file) the keys in use stay. The broker's own certificate is kept.
int zh_curve_reload (zh_curve_t *self, const char *allow_dir, const char *admin_dir,
                     const char *peers_dir, zh_error_t *err);

//  Make socket a CURVE server with the broker's keys (before bind). 0/-1.
int zh_curve_apply (zh_curve_t *self, void *socket);

//  The ZAP socket, to poll; zh_curve_handle answers one request.
void *zh_curve_zap_socket (zh_curve_t *self);
void zh_curve_handle (zh_curve_t *self);

//  True if user_id (a Z85 public key) is an admin key.
bool zh_curve_is_admin (zh_curve_t *self, const char *user_id);

//  True if user_id may ATTACH (a key in the allow or admin directory).
bool zh_curve_is_client (zh_curve_t *self, const char *user_id);

//  The endpoint a peer broker's key (Z85) is for, or NULL: not a peer key.
const char *zh_curve_peer_endpoint (zh_curve_t *self, const char *user_id);

//  Make socket a CURVE client of the broker at endpoint (before connect),
//  with this broker's certificate. 0, or -1 when --curve-peers holds no
//  certificate for that endpoint.
int zh_curve_apply_peer (zh_curve_t *self, void *socket, const char *endpoint);

//  True if --curve-peers holds a certificate for endpoint.
bool zh_curve_has_peer (zh_curve_t *self, const char *endpoint);

//  Certificates in --curve-peers (for the log).
size_t zh_curve_peer_count (zh_curve_t *self);

//  The broker's public key, Z85 (for the log and for clients).
const char *zh_curve_public_txt (zh_curve_t *self);

#endif
