/*  zh_attach.h — handshakes and the life of a connection: ATTACH →
    BOOTSTRAP, HELLO → WELCOME, READY (handed to the lifecycle), BYE,
    PING/PONG, and the liveness tick that pings the quiet and drops the
    silent.

    Where it sits: below the router, which hands it every control command
    (everything but SEND, RETURN and BATCH) once the header is valid; above
    the routes (a handshake adds a connection), the sender, the lifecycle
    and the CURVE keys. It never routes.

    AT-1 (one principal per connection): a connection's principal is fixed
    by its handshake: an attached client keeps its proc id for as long as
    the broker lives, even across reconnects (a re-ATTACH gets the same
    BOOTSTRAP); a connection that attached cannot HELLO, and a peer cannot
    ATTACH.
    AT-3 (busy is not silent): a socket with unread input expires nobody.
    AT-2 (a session belongs to its key): with CURVE, a re-ATTACH on a
    routing id attached under another key is refused 403 (the router
    refuses any other message of it the same way, BR-6).
*/
#ifndef ZH_ATTACH_H
#define ZH_ATTACH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

#include "zh_config.h"
#include "zh_curve.h"
#include "zh_conn.h"
#include "zh_lifecycle.h"
#include "zh_self.h"
#include "zh_proto.h"
#include "zh_routes.h"
#include "zh_send.h"

typedef struct _zh_attach_t zh_attach_t;

//  me: what BOOTSTRAP and WELCOME say about this broker, and its phase
//  (read only: the loop writes it). curve: CURVE on the frontend, or NULL;
//  with it ATTACH needs a client key and HELLO a peer key whose
//  certificate names the HELLO's endpoint (CU-2).
zh_attach_t *zh_attach_new (const zh_config_t *config, const zh_self_t *me, zh_routes_t *routes,
                            zh_send_t *send, zh_lifecycle_t *lifecycle, zh_curve_t *curve);
void zh_attach_destroy (zh_attach_t **self_p);

//  One control command from (sock, rid): conn is its connection or NULL,
//  hdr its checked header, frames[0..count) its frames (count >= 1),
//  total their size; key the CURVE key it arrived under (NULL: none).
void zh_attach_command (zh_attach_t *self, zh_sock_t sock, const uint8_t *rid, size_t rid_len,
                        zh_conn_t *conn, const zh_header_t *hdr, zmq_msg_t *frames, size_t count,
                        size_t total, const char *key, int64_t now);

//  Liveness: PING whoever we were quiet to for a heartbeat; drop a client
//  or peer silent for liveness heartbeats (BYE, then its route goes); a
//  silent spawned proc is only logged (its exit decides its fate).
void zh_attach_tick (zh_attach_t *self, int64_t now);

//  The drain: BYE to every connection.
void zh_attach_bye_all (zh_attach_t *self, const char *reason);

//  After the CURVE keys were reloaded (SIGHUP): every frontend connection
//  whose key may no longer speak as it does (a client key gone from
//  --curve-allow and --curve-admin, a peer key gone from --curve-peers or
//  now naming another endpoint) gets BYE and is removed; its next message
//  must attach again, and is refused. Returns how many went.
size_t zh_attach_revoke (zh_attach_t *self);

#endif
