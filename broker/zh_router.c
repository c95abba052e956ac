/*  zh_router.c — the hot path (see zh_router.h), in the order a message
    travels:

        drain → handshake done? → head decode → dest (cached) → src and
        principal (cached) → size → phase → ttl (lowered in place) →
        route: a local connection, the host agent, or a RETURN

    Payload frames are moved, never copied; meta and payload are never
    decoded here. Sends never block (DONTWAIT): a full queue is
    OVERLOADED, a vanished routing id PROC_GONE.

    Invariants:
    - BR-1 (principal): a SEND/RETURN is routed only if its src proc id and
      endpoint are its connection's principal; a mismatch is ERROR 403 and
      nothing reaches the victim.
    - BR-3 (accounted): every message received is routed, returned,
      dropped (unflagged, counted) or refused with ERROR (counted).
    - BR-4 (one clock read per turn): `now` is read once per loop turn by
      the loop, so liveness bookkeeping costs a store per message.
    - BR-5 (caches vouch only for identical bytes): a connection remembers
      the last src that passed the checks and the last dest it parsed; a
      message whose src/dest bytes are identical skips the parse (and the
      principal check), since the verdict would be the same. Cached
      connections and routes are used only while the routes' `gen`,
      bumped on every change to them, is unchanged.
    - BR-6 (a routing id is not a principal): with CURVE, every message on
      the frontend must arrive under the CURVE key its connection attached
      with, and admin rights follow the key of the message itself (libzmq's
      User-Id property, set by our ZAP handler), so a connection that took
      over a routing id (ROUTER_HANDOVER) inherits neither.
*/
#include "zh_router.h"

#include <czmq.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zh_log.h"

#define S_FRAMES_CAP (ZH_MAX_FRAMES + 1)

struct _zh_router_t {
    const zh_config_t *config;      //  max_msg_bytes
    zh_router_parts_t parts;        //  where messages go
    int64_t now;                    //  the loop's clock for this drain
    int64_t last_activity;          //  when a message was last read
    zmq_msg_t rid;                  //  receive buffer: the routing id
    zmq_msg_t frames[S_FRAMES_CAP]; //  receive buffers: the frames
};

zh_router_t *
zh_router_new (const zh_config_t *config, const zh_router_parts_t *parts)
{
    zh_router_t *self = (zh_router_t *)calloc (1, sizeof (zh_router_t));
    if (!self) return NULL;
    self->config = config;
    self->parts = *parts;
    zmq_msg_init (&self->rid);
    for (int i = 0; i < S_FRAMES_CAP; i++)
        zmq_msg_init (&self->frames[i]);
    return self;
}

void
zh_router_destroy (zh_router_t **self_p)
{
    if (!self_p || !*self_p) return;
    zh_router_t *self = *self_p;
    zmq_msg_close (&self->rid);
    for (int i = 0; i < S_FRAMES_CAP; i++)
        zmq_msg_close (&self->frames[i]);
    free (self);
    *self_p = NULL;
}

int64_t
zh_router_last_activity (zh_router_t *self)
{
    return self->last_activity;
}

//  ---------------------------------------------------------------------
//  Route: a message whose head passed every check

//  True if the message may run admin ops: it came over the control socket,
//  or under a --curve-admin key (BR-6).
static bool
s_admin (zh_router_t *self, const zh_conn_t *from, const char *key)
{
    if (from->sock == ZH_SOCK_CONTROL) return true;
    return from->sock == ZH_SOCK_FRONTEND && self->parts.curve && key &&
           zh_curve_is_admin (self->parts.curve, key);
}

//  `from` is NULL for a message the broker made itself (the outbox).
static void
s_route (zh_router_t *self, zh_conn_t *from, zmq_msg_t *frames, size_t count, const zh_head_t *head,
         const zh_addr_t *dest, const char *key)
{
    zh_routes_t *routes = self->parts.routes;
    zh_send_t *send = self->parts.send;
    //  BR-5: the route of the connection's cached dest, if still valid.
    bool cached = from && dest == &from->dest_addr;
    zh_conn_t *to = NULL;
    if (cached && from->dest_to && from->dest_to_gen == routes->gen)
        to = from->dest_to;
    else if (!zh_routes_is_self (routes, dest->endpoint.ptr, dest->endpoint.len)) {
        if (from && from->kind == ZH_CONN_PEER)
            zh_send_return (send, from, frames, count, head, ZH_RC_NO_SUCH_PROC,
                            "dest is not at this broker and peers' messages are not relayed",
                            self->now);
        else {
            zh_rc_t rc;
            const char *reason;
            if (zh_peers_forward (self->parts.peers, dest->endpoint.ptr, dest->endpoint.len, frames,
                                  count, self->now, &rc, &reason) == 0)
                self->parts.stats->routed++;
            else
                zh_send_return (send, from, frames, count, head, rc, reason, self->now);
        }
        return;
    } else {
        to = zh_routes_lookup (routes, dest->proc.text.ptr, dest->proc.text.len);
        if (cached && to) {
            from->dest_to = to;
            from->dest_to_gen = routes->gen;
        }
    }
    if (to) {
        if (zh_send_frames (send, to, frames, count, self->now) == 0) {
            self->parts.stats->routed++;
            to->msgs_out++;
        } else if (errno == EAGAIN)
            zh_send_return (send, from, frames, count, head, ZH_RC_OVERLOADED,
                            "the receiver's queue is full", self->now);
        else
            zh_send_return (send, from, frames, count, head, ZH_RC_PROC_GONE,
                            "the proc's connection is gone", self->now);
        return;
    }
    if (zh_span_eq (dest->proc.text, "service")) {
        if (from) {
            zh_agent_deliver (self->parts.agent, from, s_admin (self, from, key), frames, count,
                              head, dest, self->now);
            //  AT-3: an op may take a while (spawn waits for exec): later
            //  messages of this drain are stamped with a fresh clock.
            self->now = zclock_mono ();
        } else
            self->parts.stats->dropped++; //  the broker never asks itself
    } else if (zh_span_eq (dest->proc.text, "local"))
        zh_send_return (send, from, frames, count, head, ZH_RC_NO_SUCH_ACTOR,
                        "the local proc has no actors", self->now);
    else if (zh_routes_is_gone (routes, dest->proc.text.ptr, dest->proc.text.len))
        zh_send_return (send, from, frames, count, head, ZH_RC_PROC_GONE,
                        "the proc stopped or detached", self->now);
    else
        zh_send_return (send, from, frames, count, head, ZH_RC_NO_SUCH_PROC,
                        "no proc of that id at this broker", self->now);
}

//  ---------------------------------------------------------------------
//  Checks

static void
s_rebase (zh_span_t *span, const char *from, char *to)
{
    if (span->ptr) span->ptr = to + (span->ptr - from);
}

//  The dest of a head, parsed: from the connection's cache when the bytes
//  are the same as last time (BR-5), else parsed and cached. NULL with
//  err when it is not an address of the kind the command needs (the
//  codec's rule: zh_head_parse_dest, zh_head_dest_kind_ok).
static const zh_addr_t *
s_check_dest (zh_conn_t *conn, const zh_head_t *head, zh_error_t *err)
{
    const zh_addr_t *dest = &conn->dest_addr;
    if (head->dest_len != conn->dest_cache_len ||
        memcmp (head->dest, conn->dest_cache, head->dest_len) != 0) {
        zh_addr_t parsed;
        const char *text = (const char *)head->dest;
        if (zh_head_parse_dest (head, &parsed, err) != 0) return NULL; //  the codec's rule
        if (head->dest_len > ZH_ADDR_CACHE) {
            conn->dest_cache_len = 0;
            conn->dest_addr = parsed; //  spans into the head: good for this message
        } else {
            memcpy (conn->dest_cache, text, head->dest_len);
            conn->dest_cache_len = head->dest_len;
            conn->dest_addr = parsed;
            zh_span_t *spans[] = {&conn->dest_addr.actor.text, &conn->dest_addr.actor.label,
                                  &conn->dest_addr.proc.text,  &conn->dest_addr.proc.label,
                                  &conn->dest_addr.endpoint,   &conn->dest_addr.text};
            for (size_t i = 0; i < sizeof spans / sizeof spans[0]; i++)
                s_rebase (spans[i], text, conn->dest_cache);
        }
        conn->dest_to = NULL;
    } else if (!zh_head_dest_kind_ok (head->hdr.command, dest->kind)) {
        //  The same bytes as last time, under another command: the codec
        //  words the refusal.
        zh_addr_t again;
        zh_head_parse_dest (head, &again, err);
        return NULL;
    }
    return dest;
}

//  Check the src of a head: an actor or proc address of the connection's
//  principal (BR-1). 0, 400 (not such an address) or 403 (someone
//  else's), with err. Bytes identical to the last src that passed are not
//  checked again (BR-5).
static int
s_check_src (zh_router_t *self, zh_conn_t *conn, const zh_head_t *head, zh_error_t *err)
{
    if (head->src_len == conn->src_cache_len &&
        memcmp (head->src, conn->src_cache, head->src_len) == 0)
        return 0;
    zh_addr_t src;
    if (zh_head_parse_src (head, &src, err) != 0) return ZH_ERR_MALFORMED;
    if (!zh_routes_principal_ok (self->parts.routes, conn, &src)) {
        zh_error_set (err, ZH_ERR_FORBIDDEN, 0, "src does not belong to this connection");
        return ZH_ERR_FORBIDDEN;
    }
    if (head->src_len <= ZH_ADDR_CACHE) {
        memcpy (conn->src_cache, head->src, head->src_len);
        conn->src_cache_len = head->src_len;
    }
    return 0;
}

//  Refuse a message from a connection with ERROR code (counted). A link
//  of ours gets no ERROR back (the peer would only log it): logged here.
static void
s_refuse (zh_router_t *self, zh_conn_t *conn, int code, const char *reason, const zh_head_t *head)
{
    if (conn->link_socket) {
        zh_stats_count_reject (self->parts.stats, code);
        zh_warn ("peer-refused", "endpoint=%s code=%d reason=\"%s\"", conn->peer_endpoint, code,
                 reason);
        return;
    }
    zh_send_error (self->parts.send, conn->sock, conn->rid, conn->rid_len, code, reason, head);
}

//  A SEND or RETURN from a connection that finished its handshake; its
//  head frame (frames[0]) is data/size, not checked yet.
static void
s_handle_send (zh_router_t *self, zh_conn_t *conn, uint8_t *data, size_t size, size_t count,
               size_t total, const char *key)
{
    zmq_msg_t *frames = self->frames;
    zh_send_t *send = self->parts.send;
    zh_head_t head;
    zh_error_t err;
    if (zh_head_decode (&head, data, size, &err) != 0) {
        s_refuse (self, conn, err.code, err.reason, NULL);
        return;
    }
    const zh_addr_t *dest = s_check_dest (conn, &head, &err);
    if (!dest) {
        s_refuse (self, conn, ZH_ERR_MALFORMED, err.reason, &head);
        return;
    }
    int verdict = s_check_src (self, conn, &head, &err);
    if (verdict != 0) {
        if (verdict == ZH_ERR_FORBIDDEN) {
            char name[ZH_ADDR_MAX + 1], q[ZH_ADDR_MAX + 8];
            zh_warn ("spoof", "socket=%s from=%s src=%s", zh_sock_name (conn->sock),
                     zh_conn_name (conn, name, sizeof name),
                     zh_log_quote (q, sizeof q, (const char *)head.src, head.src_len));
        }
        s_refuse (self, conn, verdict, err.reason, &head);
        return;
    }
    conn->msgs_in++;
    if (total > (size_t)self->config->max_msg_bytes) {
        zh_send_return (send, conn, frames, count, &head, ZH_RC_TOO_LARGE,
                        "message is larger than max_msg_bytes", self->now);
        return;
    }
    if (self->parts.me->phase >= ZH_PHASE_DRAINING) {
        zh_send_return (send, conn, frames, count, &head, ZH_RC_SHUTDOWN,
                        "the broker is shutting down", self->now);
        return;
    }
    if (head.hdr.ttl == 0) {
        zh_send_return (send, conn, frames, count, &head, ZH_RC_TTL_EXPIRED,
                        "the hop limit ran out", self->now);
        return;
    }
    data[head.ttl_offset]--;
    head.hdr.ttl--;
    s_route (self, conn, frames, count, &head, dest, key);
}

//  ---------------------------------------------------------------------
//  One message, then the drain

//  One message from one socket: self->rid (rid_len bytes) and
//  self->frames[0..count), the first of size0 bytes.
static void
s_handle_message (zh_router_t *self, zh_sock_t sock, size_t rid_len, size_t size0, size_t count,
                  size_t total, bool overflow)
{
    zh_send_t *send = self->parts.send;
    const uint8_t *rid = (const uint8_t *)zmq_msg_data (&self->rid);
    zh_conn_t *conn = zh_routes_conn (self->parts.routes, sock, rid, rid_len);
    if (count == 0) {
        zh_send_error (send, sock, rid, rid_len, ZH_ERR_MALFORMED, "empty message: no header frame",
                       NULL);
        return;
    }
    //  BR-6: the key this message arrived under (CURVE on the frontend).
    const char *key = NULL;
    if (sock == ZH_SOCK_FRONTEND && self->parts.curve) {
        key = zmq_msg_gets (&self->frames[0], "User-Id");
        if (conn && !zh_conn_key_matches (conn, key)) {
            zh_warn ("hijack",
                     "socket=frontend proc=%s note=\"a message under another CURVE key "
                     "on this routing id\"",
                     conn->proc_id_len ? conn->proc_id : "-");
            zh_send_error (send, sock, rid, rid_len, ZH_ERR_FORBIDDEN,
                           "this routing id is attached under another CURVE key", NULL);
            return;
        }
    }
    if (conn) conn->last_recv = self->now;
    uint8_t *data = (uint8_t *)zmq_msg_data (&self->frames[0]);
    if (size0 >= ZH_HEADER_SIZE && zh_command_has_head (data[3])) {
        //  SEND/RETURN: zh_head_decode checks the header itself.
        if (!conn) {
            //  §3's order: header (400, 426, 404), then handshake (401).
            zh_head_t head;
            zh_error_t err;
            if (zh_header_check (NULL, data, size0, &err) != 0)
                zh_send_error (send, sock, rid, rid_len, err.code, err.reason, NULL);
            else {
                bool readable = zh_head_decode (&head, data, size0, NULL) == 0;
                zh_send_error (send, sock, rid, rid_len, ZH_ERR_HANDSHAKE,
                               "handshake required before SEND or RETURN", readable ? &head : NULL);
            }
            return;
        }
        if (overflow) {
            zh_send_error (send, sock, rid, rid_len, ZH_ERR_MALFORMED, "too many payload frames",
                           NULL);
            return;
        }
        s_handle_send (self, conn, data, size0, count, total, key);
        return;
    }
    zh_header_t hdr;
    zh_error_t err;
    if (zh_header_check (&hdr, data, size0, &err) != 0) {
        zh_send_error (send, sock, rid, rid_len, err.code, err.reason, NULL);
        return;
    }
    //  What earlier messages of this drain posted goes first: a BYE right
    //  after a request must follow the request's answer (docs/broker.md).
    zh_router_flush (self, self->now);
    zh_attach_command (self->parts.attach, sock, rid, rid_len, conn, &hdr, self->frames, count,
                       total, key, self->now);
}

void
zh_router_drain (zh_router_t *self, zh_sock_t sock, int64_t now)
{
    self->now = now;
    void *socket = self->parts.socks[sock];
    for (int n = 0; n < ZH_ROUTER_BATCH; n++) {
        int rid_len = zmq_msg_recv (&self->rid, socket, ZMQ_DONTWAIT);
        if (rid_len == -1) break;
        size_t count = 0, total = 0, size0 = 0;
        bool overflow = false;
        while (zmq_msg_more (count ? &self->frames[count - 1] : &self->rid)) {
            if (count == S_FRAMES_CAP) {
                //  Keep reading the parts of this message, but drop them.
                zmq_msg_t extra;
                zmq_msg_init (&extra);
                zmq_msg_recv (&extra, socket, 0);
                bool more = zmq_msg_more (&extra);
                zmq_msg_close (&extra);
                overflow = true;
                if (!more) break;
                continue;
            }
            int size = zmq_msg_recv (&self->frames[count], socket, 0);
            if (size < 0) break;
            if (count == 0) size0 = (size_t)size;
            total += (size_t)size;
            count++;
        }
        self->last_activity = now;
        s_handle_message (self, sock, (size_t)rid_len, size0, count, total, overflow);
    }
    zh_router_flush (self, now);
}

void
zh_router_drain_link (zh_router_t *self, zh_conn_t *link, int64_t now)
{
    self->now = now;
    for (int n = 0; n < ZH_ROUTER_BATCH && link->link_socket; n++) {
        void *socket = link->link_socket;
        size_t count = 0, total = 0, size0 = 0;
        bool overflow = false, more = true;
        while (more) {
            zmq_msg_t *frame = count < S_FRAMES_CAP ? &self->frames[count] : NULL;
            zmq_msg_t extra;
            if (!frame) {
                zmq_msg_init (&extra);
                frame = &extra;
            }
            int size = zmq_msg_recv (frame, socket, count ? 0 : ZMQ_DONTWAIT);
            if (size < 0) {
                if (frame == &extra) zmq_msg_close (&extra);
                break;
            }
            more = zmq_msg_more (frame);
            if (frame == &extra) {
                zmq_msg_close (&extra);
                overflow = true;
                continue;
            }
            if (count == 0) size0 = (size_t)size;
            total += (size_t)size;
            count++;
        }
        if (count == 0) break;
        self->last_activity = now;
        link->last_recv = now;
        uint8_t *data = (uint8_t *)zmq_msg_data (&self->frames[0]);
        if (size0 >= ZH_HEADER_SIZE && zh_command_has_head (data[3])) {
            if (overflow)
                s_refuse (self, link, ZH_ERR_MALFORMED, "too many payload frames", NULL);
            else
                s_handle_send (self, link, data, size0, count, total, NULL);
            continue;
        }
        zh_header_t hdr;
        zh_error_t err;
        if (zh_header_check (&hdr, data, size0, &err) != 0)
            s_refuse (self, link, err.code, err.reason, NULL);
        else
            zh_peers_command (self->parts.peers, link, &hdr, self->frames, count, now);
    }
    zh_router_flush (self, now);
}

//  ---------------------------------------------------------------------
//  The outbox

void
zh_router_flush (zh_router_t *self, int64_t now)
{
    self->now = now;
    zh_outmsg_t msg;
    while (zh_send_take (self->parts.send, &msg)) {
        zh_head_t head;
        zh_addr_t dest;
        const uint8_t *data = (const uint8_t *)zmq_msg_data (&msg.frames[0]);
        if (zh_head_decode (&head, data, zmq_msg_size (&msg.frames[0]), NULL) != 0 ||
            zh_head_parse_dest (&head, &dest, NULL) != 0)
            self->parts.stats->dropped++;
        else
            s_route (self, NULL, msg.frames, msg.count, &head, &dest, NULL);
        zh_outmsg_close (&msg);
    }
}
