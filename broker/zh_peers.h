/*  zh_peers.h — links to other brokers: one DEALER per remote endpoint,
    dialled on first use.

    Where it sits: below the router, which forwards here every SEND or
    RETURN whose dest endpoint is not this broker's (and did not come from
    a peer: no relaying), and hands here the control commands that arrive
    on a link; above the sender (links send through zh_send_frames; a
    pending message past its delivery timeout is returned through the
    outbox, so only the router routes) and the counters.

    A link: DEALER to the peer's frontend (routing id 16 random bytes, as
    a client's) → HELLO {endpoint, incarnation} → WELCOME → up. Until it
    is up, messages wait in a pending FIFO, bounded by hwm messages and
    ZH_PEER_PENDING_BYTES; past either bound a message is refused
    OVERLOADED. The delivery timeout is fixed, so the FIFO is also sorted
    by deadline: its head is the first to expire.

    PL-1 (order): messages for one peer leave in the order they came,
    whether they waited or not: while anything is pending, new messages
    queue behind it.
    PL-2 (never early): a pending message is returned HOST_UNREACHABLE at
    its deadline (--delivery-timeout after it arrived) and never before,
    even when the connection is refused at once: the peer may be
    restarting.
    PL-3 (live links): a link silent for liveness heartbeats goes back to
    HELLO (new messages wait again); ERROR 401 from the peer (it restarted
    and forgot us) is HELLO again; BYE closes the link, dialled again on
    next use. libzmq redials the TCP connection itself, from a jittered
    first interval doubling up to ZH_PEER_BACKOFF_MAX_MS.
    PL-4 (CURVE): with a broker certificate, a link dials as a CURVE
    client with the server key --curve-peers holds for its endpoint; a
    message for an endpoint with no such key is refused HOST_UNREACHABLE
    at once (a configuration error, not an outage).
    PL-5 (bounded): at most --max-peers links. A link that is not up and
    has held nothing and been given nothing for the delivery timeout (at
    least ZH_PEER_IDLE_MIN_MS) is forgotten: its sockets close and its slot is
    free. Past the bound with none to forget, a message for a new endpoint
    is refused HOST_UNREACHABLE at once. A SEND to a made-up endpoint
    costs sockets for a delivery timeout, not for ever. A link's handshake is
    watched (a socket monitor): a refusal is logged once, and the
    messages that then wait out the delivery timeout are returned saying
    why (e.g. the peer does not know our key).
*/
#ifndef ZH_PEERS_H
#define ZH_PEERS_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

#include "zh_config.h"
#include "zh_conn.h"
#include "zh_curve.h"
#include "zh_proto.h"
#include "zh_self.h"
#include "zh_send.h"
#include "zh_stats.h"
#include "zh_watch.h"

#define ZH_PEER_PENDING_BYTES  (64 * 1024 * 1024) //  bytes waiting per link at most
#define ZH_PEER_BACKOFF_MAX_MS 5000               //  libzmq's redial interval at most
#define ZH_PEER_IDLE_MIN_MS    1000               //  PL-5's idle bound at least
#define ZH_PEER_SOCKETS        3 //  zmq sockets a link takes (DEALER, monitor pair)

typedef struct _zh_peers_t zh_peers_t;

//  curve: the broker's certificate and --curve-peers (PL-4), or NULL.
//  watch: told of every link that comes up, goes down or restarted.
zh_peers_t *zh_peers_new (void *ctx, const zh_config_t *config, const zh_self_t *me,
                          zh_send_t *send, zh_curve_t *curve, zh_watch_t *watch);
//  Closes every link; pending messages are dropped (counted as abandoned).
void zh_peers_destroy (zh_peers_t **self_p);

//  Forward a message to the broker at endpoint (ep, len: not self). 0 when
//  it was sent or queued (the frames are consumed), or -1 with *rc and
//  *reason when it is refused (OVERLOADED, HOST_UNREACHABLE): the caller
//  returns it.
int zh_peers_forward (zh_peers_t *self, const char *ep, size_t len, zmq_msg_t *frames, size_t count,
                      int64_t now, zh_rc_t *rc, const char **reason);

//  §14: the link to endpoint when the router may batch onto it directly
//  (it is up, nothing waits in its pending FIFO (PL-1), and the peer
//  takes BATCH), or NULL: forward with zh_peers_forward. What the router
//  batches onto a link counts in the link connection's msgs_out.
zh_conn_t *zh_peers_direct (zh_peers_t *self, const char *ep, size_t len);

//  The links, for the poll set: a link's connection carries its DEALER
//  (link_socket) and its principal (the peer's endpoint). i < count.
size_t zh_peers_count (zh_peers_t *self);
zh_conn_t *zh_peers_link (zh_peers_t *self, size_t i);

//  A control command that arrived on a link (WELCOME, PING, PONG, ERROR,
//  BYE): hdr checked, frames[0..count).
void zh_peers_command (zh_peers_t *self, zh_conn_t *link, const zh_header_t *hdr, zmq_msg_t *frames,
                       size_t count, int64_t now);

//  Heartbeats, liveness, delivery timeouts, and pending messages of links
//  that came up. Returns ms until the next deadline (-1: none).
int64_t zh_peers_tick (zh_peers_t *self, int64_t now);

//  The drain: every pending message is returned SHUTDOWN (flagged) or
//  dropped, and every open link gets BYE.
void zh_peers_bye_all (zh_peers_t *self, const char *reason);

//  One link as the metrics see it (zh_metrics): strings borrowed from
//  the link, valid until the next call into zh_peers.
typedef struct {
    const char *endpoint; //  the peer's frontend, as dialled
    const char *state;    //  "closed", "hello" or "up"
    size_t pending;       //  messages waiting
    size_t pending_bytes; //  their bytes
    uint64_t forwarded;   //  messages sent on the link
    uint64_t received;    //  messages that came in on it
    uint64_t returned;    //  messages refused or returned, every code
    uint64_t reconnects;  //  times it went back to HELLO or was dialled again
} zh_peer_info_t;

//  The states a link can be in, for an enum-style metric: names[0..n).
extern const char *const zh_peer_state_names[];
#define ZH_PEER_STATES 3

//  Link i (< zh_peers_count) into *info.
void zh_peers_info (zh_peers_t *self, size_t i, zh_peer_info_t *info);

//  {endpoint: {state, pending, forwarded, returned {code: n},
//  reconnects, incarnation}} for the stats op.
void zh_peers_pack (zh_peers_t *self, msgpack_packer *pk);

#endif
