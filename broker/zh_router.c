/*  zh_router.c — the hot path (see zh_router.h), in the order a message
    travels:

        drain → handshake done? → head decode → dest (cached) → src and
        principal (cached) → size → phase → ttl (lowered in place) →
        route: a local connection, the host agent, or a RETURN

    Payload frames are moved, never copied; meta and payload are never
    decoded here. Sends never block (DONTWAIT): a full queue is
    OVERLOADED, a vanished routing id PROC_GONE.

    BATCH (docs/protocol.md §14): a BATCH frame from a connection that
    negotiated it is walked element by element (zh_batch_next: no
    allocation, no decoding but the lengths), and each element goes the
    same way as a lone one-frame message, checks, caches and counters
    included. Toward a connection that negotiated BATCH, one-frame
    messages are coalesced (zh_coalesce) and the batches leave when the
    drain ends (zh_router_flush), so nothing waits for more to come.
    - BR-7 (order across batching): a connection's batch leaves before
      any message to it that is not batched, and every batch leaves
      before a handshake or agent command is handled (they may change or
      remove connections), so a sender's messages to one receiver keep
      their order, lone or batched.

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

//  A message being routed: received frames, or one element of a BATCH
//  (its bytes inside the BATCH frame, made into a frame only where a
//  frame is needed: a RETURN, the agent, a lone send).
typedef struct {
    zmq_msg_t *frames; //  the frames, or NULL for an element not made into one yet
    size_t count;      //  frames (1 for an element)
    uint8_t *data;     //  the first frame's bytes (the element's)
    size_t size;       //  their size
    zmq_msg_t *spare;  //  an element: where s_frames makes its frame (the caller's)
} s_msg_t;

struct _zh_router_t {
    const zh_config_t *config;      //  max_msg_bytes, batch_max_bytes
    zh_router_parts_t parts;        //  where messages go
    zh_conn_t **batches;            //  connections whose coalesced batch waits to leave
    size_t batch_count;             //  of them
    size_t batch_room;              //  slots of batches
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
    free (self->batches);
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

//  The message's frames, making an element into one frame if needed. NULL
//  when memory ran out (the element is then dropped, counted).
static zmq_msg_t *
s_frames (zh_router_t *self, s_msg_t *m)
{
    if (m->frames) return m->frames;
    if (zmq_msg_init_size (m->spare, m->size) != 0) {
        zmq_msg_init (m->spare);
        self->parts.stats->dropped++;
        zh_warn ("batch", "error=\"out of memory for an element\"");
        return NULL;
    }
    memcpy (zmq_msg_data (m->spare), m->data, m->size);
    m->frames = m->spare;
    m->count = 1;
    return m->frames;
}

//  Send (or RETURN, on failure) the batch coalesced toward one
//  connection. Counted when it leaves: every message in it is routed.
static void
s_batch_send (zh_router_t *self, zh_conn_t *to)
{
    zh_send_t *send = self->parts.send;
    zmq_msg_t msg;
    size_t n = 0;
    if (zh_coalesce_take (to->out, &msg, &n) != 0) {
        self->parts.stats->dropped += n;
        zh_warn ("batch", "error=\"out of memory for a BATCH\" dropped=%zu", n);
        zmq_msg_close (&msg);
        return;
    }
    if (n == 0) {
        zmq_msg_close (&msg);
        return;
    }
    if (zh_send_frames (send, to, &msg, 1, self->now) == 0) {
        self->parts.stats->routed += n;
        to->msgs_out += n;
        zmq_msg_close (&msg);
        return;
    }
    //  §14: a BATCH refused for a full queue returns each flagged element.
    zh_rc_t rc = errno == EAGAIN ? ZH_RC_OVERLOADED : ZH_RC_PROC_GONE;
    const char *reason = to->link_socket          ? "the link to that broker is full"
                         : rc == ZH_RC_OVERLOADED ? "the receiver's queue is full"
                                                  : "the proc's connection is gone";
    const uint8_t *data = (const uint8_t *)zmq_msg_data (&msg);
    size_t size = zmq_msg_size (&msg);
    zh_batch_iter_t it;
    if (n == 1 || zh_batch_begin (&it, data, size, NULL) != 0) {
        zh_head_t head;
        if (zh_head_decode (&head, data, size, NULL) == 0)
            zh_send_return_post (send, &msg, 1, &head, rc, reason);
        else
            self->parts.stats->dropped++;
    } else {
        const uint8_t *elem;
        size_t len;
        while (zh_batch_next (&it, &elem, &len, NULL) == 1) {
            zmq_msg_t one;
            zh_head_t head;
            if (zmq_msg_init_size (&one, len) != 0) {
                self->parts.stats->dropped++;
                continue;
            }
            memcpy (zmq_msg_data (&one), elem, len);
            if (zh_head_decode (&head, (const uint8_t *)zmq_msg_data (&one), len, NULL) == 0)
                zh_send_return_post (send, &one, 1, &head, rc, reason);
            else
                self->parts.stats->dropped++;
            zmq_msg_close (&one);
        }
    }
    zmq_msg_close (&msg);
}

//  Every coalesced batch leaves (BR-7).
static void
s_batches_send (zh_router_t *self)
{
    for (size_t i = 0; i < self->batch_count; i++) {
        zh_conn_t *to = self->batches[i];
        to->out_queued = false;
        if (to->out) s_batch_send (self, to);
    }
    self->batch_count = 0;
}

//  Add a one-frame message to the batch toward `to`. True when it was
//  taken; false when it must go alone (too big, or out of memory), after
//  what the batch held has left (BR-7).
static bool
s_batch_add (zh_router_t *self, zh_conn_t *to, s_msg_t *m)
{
    if (m->count != 1 || m->size >= ZH_COALESCE_ELEM_MAX) {
        if (to->out && zh_coalesce_count (to->out)) s_batch_send (self, to);
        return false;
    }
    if (!to->out && !(to->out = zh_coalesce_new (to->batch_max))) return false;
    if (!to->out_queued) {
        if (self->batch_count == self->batch_room) {
            size_t room = self->batch_room ? self->batch_room * 2 : 64;
            zh_conn_t **more = (zh_conn_t **)realloc (self->batches, room * sizeof *more);
            if (!more) return false;
            self->batches = more;
            self->batch_room = room;
        }
        self->batches[self->batch_count++] = to;
        to->out_queued = true;
    }
    //  An element's bytes are copied; a received frame is moved in (CO-1).
    //  Full (CO-2): the batch leaves and a new one starts with this one.
    zmq_msg_t *frame = m->frames ? &m->frames[0] : NULL;
    if (zh_coalesce_add (to->out, frame, m->data, m->size) == 0) return true;
    if (zh_coalesce_count (to->out) == 0) return false; //  fits in no batch
    s_batch_send (self, to);
    return zh_coalesce_add (to->out, frame, m->data, m->size) == 0;
}

//  Before a lone message to conn (a RETURN, an ERROR): its batch leaves
//  first, so what the broker sends it keeps its order (BR-7).
static void
s_batch_before (zh_router_t *self, zh_conn_t *conn)
{
    if (conn && conn->out && zh_coalesce_count (conn->out)) s_batch_send (self, conn);
}

//  RETURN to the sender (zh_send_return), after its batch (BR-7).
static void
s_return (zh_router_t *self, zh_conn_t *to, zmq_msg_t *frames, size_t count, const zh_head_t *head,
          zh_rc_t rc, const char *reason)
{
    s_batch_before (self, to);
    zh_send_return (self->parts.send, to, frames, count, head, rc, reason, self->now);
}

//  `from` is NULL for a message the broker made itself (the outbox).
static void
s_route (zh_router_t *self, zh_conn_t *from, s_msg_t *m, const zh_head_t *head,
         const zh_addr_t *dest, const char *key)
{
    zh_routes_t *routes = self->parts.routes;
    zh_send_t *send = self->parts.send;
    zmq_msg_t *frames;
    //  BR-5: the route of the connection's cached dest, if still valid.
    bool cached = from && dest == &from->dest_addr;
    zh_conn_t *to = NULL;
    if (cached && from->dest_to && from->dest_to_gen == routes->gen)
        to = from->dest_to;
    else if (!zh_routes_is_self (routes, dest->endpoint.ptr, dest->endpoint.len)) {
        if (from && from->kind == ZH_CONN_PEER) {
            if ((frames = s_frames (self, m)))
                s_return (self, from, frames, m->count, head, ZH_RC_NO_SUCH_PROC,
                          "dest is not at this broker and peers' messages are not relayed");
            return;
        }
        //  §14: onto the link's batch when it is up and takes BATCH.
        zh_conn_t *link =
            zh_peers_direct (self->parts.peers, dest->endpoint.ptr, dest->endpoint.len);
        if (link && s_batch_add (self, link, m)) return;
        if (!(frames = s_frames (self, m))) return;
        zh_rc_t rc;
        const char *reason;
        if (zh_peers_forward (self->parts.peers, dest->endpoint.ptr, dest->endpoint.len, frames,
                              m->count, self->now, &rc, &reason) == 0)
            self->parts.stats->routed++;
        else
            s_return (self, from, frames, m->count, head, rc, reason);
        return;
    } else {
        to = zh_routes_lookup (routes, dest->proc.text.ptr, dest->proc.text.len);
        if (cached && to) {
            from->dest_to = to;
            from->dest_to_gen = routes->gen;
        }
    }
    if (to) {
        if (to->batch && s_batch_add (self, to, m)) return;
        if (!(frames = s_frames (self, m))) return;
        if (zh_send_frames (send, to, frames, m->count, self->now) == 0) {
            self->parts.stats->routed++;
            to->msgs_out++;
        } else if (errno == EAGAIN)
            s_return (self, from, frames, m->count, head, ZH_RC_OVERLOADED,
                      "the receiver's queue is full");
        else
            s_return (self, from, frames, m->count, head, ZH_RC_PROC_GONE,
                      "the proc's connection is gone");
        return;
    }
    if (!(frames = s_frames (self, m))) return;
    if (zh_span_eq (dest->proc.text, "service")) {
        if (from) {
            s_batches_send (self); //  BR-7: an op may change connections
            zh_agent_deliver (self->parts.agent, from, s_admin (self, from, key), frames, m->count,
                              head, dest, self->now);
            //  AT-3: an op may take a while (spawn waits for exec): later
            //  messages of this drain are stamped with a fresh clock.
            self->now = zclock_mono ();
        } else
            self->parts.stats->dropped++; //  the broker never asks itself
    } else if (zh_span_eq (dest->proc.text, "local"))
        s_return (self, from, frames, m->count, head, ZH_RC_NO_SUCH_ACTOR,
                  "the local proc has no actors");
    else if (zh_routes_is_gone (routes, dest->proc.text.ptr, dest->proc.text.len))
        s_return (self, from, frames, m->count, head, ZH_RC_PROC_GONE,
                  "the proc stopped or detached");
    else
        s_return (self, from, frames, m->count, head, ZH_RC_NO_SUCH_PROC,
                  "no proc of that id at this broker");
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
static void s_batch_before (zh_router_t *self, zh_conn_t *conn);

static void
s_refuse (zh_router_t *self, zh_conn_t *conn, int code, const char *reason, const zh_head_t *head)
{
    s_batch_before (self, conn); //  BR-7
    if (conn->link_socket) {
        zh_stats_count_reject (self->parts.stats, code);
        zh_warn ("peer-refused", "endpoint=%s code=%d reason=\"%s\"", conn->peer_endpoint, code,
                 reason);
        return;
    }
    zh_send_error (self->parts.send, conn->sock, conn->rid, conn->rid_len, code, reason, head);
}

//  A SEND or RETURN from a connection that finished its handshake: m is
//  its frames or a BATCH element; the head (m->data) is not checked yet.
static void
s_handle_send (zh_router_t *self, zh_conn_t *conn, s_msg_t *m, size_t total, const char *key)
{
    zh_head_t head;
    zh_error_t err;
    zmq_msg_t *frames;
    if (zh_head_decode (&head, m->data, m->size, &err) != 0) {
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
    zh_rc_t rc = ZH_RC_COUNT;
    const char *reason = NULL;
    if (total > (size_t)self->config->max_msg_bytes)
        rc = ZH_RC_TOO_LARGE, reason = "message is larger than max_msg_bytes";
    else if (self->parts.me->phase >= ZH_PHASE_DRAINING)
        rc = ZH_RC_SHUTDOWN, reason = "the broker is shutting down";
    else if (head.hdr.ttl == 0)
        rc = ZH_RC_TTL_EXPIRED, reason = "the hop limit ran out";
    if (rc != ZH_RC_COUNT) {
        if ((frames = s_frames (self, m)))
            s_return (self, conn, frames, m->count, &head, rc, reason);
        return;
    }
    m->data[head.ttl_offset]--; //  in place: in the frame, or in the BATCH's element
    head.hdr.ttl--;
    s_route (self, conn, m, &head, dest, key);
}

//  One element of a BATCH, exactly as the same message arriving alone.
static void
s_handle_element (zh_router_t *self, zh_conn_t *conn, uint8_t *data, size_t size, const char *key)
{
    if (size >= ZH_HEADER_SIZE && zh_command_has_head (data[3])) {
        //  As a lone SEND/RETURN: zh_head_decode checks the header itself.
        zmq_msg_t spare;
        s_msg_t m = {NULL, 1, data, size, &spare};
        s_handle_send (self, conn, &m, size, key);
        if (m.frames) zmq_msg_close (&spare); //  it was made (and maybe sent: closing is safe)
        return;
    }
    zh_header_t hdr;
    zh_error_t err;
    if (zh_header_check (&hdr, data, size, &err) != 0) {
        s_refuse (self, conn, err.code, err.reason, NULL);
        return;
    }
    char reason[80];
    snprintf (reason, sizeof reason, "a BATCH element is a SEND or RETURN, not %s",
              zh_command_name (hdr.command));
    s_refuse (self, conn, ZH_ERR_MALFORMED, reason, NULL);
}

//  A BATCH frame (§14) from a connection that finished its handshake: the
//  refusals first (nothing of it is handled), then every element in order;
//  a malformed container is one ERROR 400 after the elements before it.
static void
s_handle_batch (zh_router_t *self, zh_conn_t *conn, uint8_t *data, size_t size, size_t count,
                const char *key)
{
    zh_error_t err;
    if (!conn->batch || conn->link_socket) {
        s_refuse (self, conn, ZH_ERR_MALFORMED,
                  "BATCH on a connection that did not negotiate it (batch: true in ATTACH, "
                  "READY or HELLO, answered with batch: true)",
                  NULL);
        return;
    }
    if (count != 1) {
        s_refuse (self, conn, ZH_ERR_MALFORMED, "a BATCH is one frame: nothing may follow it",
                  NULL);
        return;
    }
    if (size > (size_t)self->config->batch_max_bytes) {
        char reason[96];
        snprintf (reason, sizeof reason, "BATCH of %zu bytes is over batch_max_bytes %lld", size,
                  (long long)self->config->batch_max_bytes);
        s_refuse (self, conn, ZH_ERR_TOO_LARGE, reason, NULL);
        return;
    }
    zh_batch_iter_t it;
    if (zh_batch_begin (&it, data, size, &err) != 0) {
        s_refuse (self, conn, err.code, err.reason, NULL);
        return;
    }
    const uint8_t *elem;
    size_t len;
    int rc;
    while ((rc = zh_batch_next (&it, &elem, &len, &err)) == 1)
        s_handle_element (self, conn, (uint8_t *)elem, len, key);
    if (rc < 0) s_refuse (self, conn, err.code, err.reason, NULL);
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
        s_msg_t m = {self->frames, count, data, size0, NULL};
        s_handle_send (self, conn, &m, total, key);
        return;
    }
    zh_header_t hdr;
    zh_error_t err;
    if (zh_header_check (&hdr, data, size0, &err) != 0) {
        zh_send_error (send, sock, rid, rid_len, err.code, err.reason, NULL);
        return;
    }
    if (hdr.command == ZH_BATCH) {
        //  §3's order: header (done), then handshake (401).
        if (!conn)
            zh_send_error (send, sock, rid, rid_len, ZH_ERR_HANDSHAKE,
                           "handshake required before BATCH", NULL);
        else if (overflow)
            zh_send_error (send, sock, rid, rid_len, ZH_ERR_MALFORMED,
                           "a BATCH is one frame: nothing may follow it", NULL);
        else
            s_handle_batch (self, conn, data, size0, count, key);
        return;
    }
    //  What earlier messages of this drain posted goes first: a BYE right
    //  after a request must follow the request's answer (docs/broker.md);
    //  and the batches (BR-7).
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
            else {
                s_msg_t m = {self->frames, count, data, size0, NULL};
                s_handle_send (self, link, &m, total, NULL);
            }
            continue;
        }
        zh_header_t hdr;
        zh_error_t err;
        if (zh_header_check (&hdr, data, size0, &err) != 0)
            s_refuse (self, link, err.code, err.reason, NULL);
        else if (hdr.command == ZH_BATCH)
            s_handle_batch (self, link, data, size0, count,
                            NULL); //  refused: links carry none back
        else {
            zh_router_flush (self, now); //  BR-7: the command may change the link
            zh_peers_command (self->parts.peers, link, &hdr, self->frames, count, now);
        }
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
    do {
        while (zh_send_take (self->parts.send, &msg)) {
            zh_head_t head;
            zh_addr_t dest;
            uint8_t *data = (uint8_t *)zmq_msg_data (&msg.frames[0]);
            size_t size = zmq_msg_size (&msg.frames[0]);
            if (zh_head_decode (&head, data, size, NULL) != 0 ||
                zh_head_parse_dest (&head, &dest, NULL) != 0)
                self->parts.stats->dropped++;
            else {
                s_msg_t m = {msg.frames, msg.count, data, size, NULL};
                s_route (self, NULL, &m, &head, &dest, NULL);
            }
            zh_outmsg_close (&msg);
        }
        //  The batches leave; one refused for a full queue posts RETURNs,
        //  which the next round routes (their own RETURNs are dropped, BR-2).
        s_batches_send (self);
    } while (zh_send_pending (self->parts.send));
}
