/*  zh_peers.c — links to other brokers (see zh_peers.h).

    Where it sits: below the router, above the sender and the counters.
*/
#include "zh_peers.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zh_log.h"
#include "zh_pack.h"
#include "zh_table.h"
#include "zh_wire.h"

typedef enum { S_CLOSED = 0, S_HELLO, S_UP } s_state_t;
const char *const zh_peer_state_names[ZH_PEER_STATES] = {"closed", "hello", "up"};
#define s_state_names zh_peer_state_names

//  A message waiting for its link.
typedef struct {
    zh_outmsg_t msg;  //  its frames
    size_t bytes;     //  their size
    int64_t deadline; //  when it is returned HOST_UNREACHABLE (PL-2)
} s_pending_t;

typedef struct {
    char *endpoint;                 //  the peer's frontend, as dialled
    void *socket;                   //  the DEALER (NULL while closed)
    zh_conn_t *conn;                //  its principal and caches, for the router
    s_state_t state;                //  closed, HELLO sent, up
    s_pending_t *pending;           //  ring of waiting messages, oldest first
    size_t pend_head;               //  index of the oldest
    size_t pend_count;              //  messages waiting
    size_t pend_room;               //  slots of pending
    size_t pend_bytes;              //  bytes waiting
    int64_t hello_at;               //  when HELLO was last sent
    bool known;                     //  an incarnation was seen
    uint64_t incarnation;           //  the peer's, from WELCOME
    uint64_t forwarded;             //  messages sent on the link
    uint64_t returned[ZH_RC_COUNT]; //  messages refused or returned, by code
    uint64_t reconnects;            //  times it went back to HELLO or was dialled again
    bool dialled;                   //  it was dialled before
    void *monitor;                  //  PAIR reading the DEALER's handshake events (PL-4)
    char failure[100];              //  the last handshake failure, "" after a success
    int64_t last_used;              //  when it was last given or last held a message (PL-5)
} s_peer_t;

struct _zh_peers_t {
    void *ctx;                 //  the broker's zmq context
    const zh_config_t *config; //  hwm, heartbeat, liveness, delivery timeout
    const zh_self_t *me;       //  our endpoint and incarnation (HELLO)
    zh_send_t *send;           //  frames out, RETURNs to the outbox
    zh_curve_t *curve;         //  our certificate and the peers' keys (PL-4), or NULL
    zh_watch_t *watch;         //  link changes go there (watch op)
    s_peer_t **peers;          //  every link, in the order first used (the poll set's)
    size_t count, room;        //  links and slots
    zh_table_t *by_endpoint;   //  endpoint → link: the lookup of every forwarded message
    uint64_t monitors;         //  monitor endpoints made (each inproc name is new)
};

static void s_peer_free (s_peer_t *peer);
static bool s_reap (zh_peers_t *self, size_t i, int64_t now);

zh_peers_t *
zh_peers_new (void *ctx, const zh_config_t *config, const zh_self_t *me, zh_send_t *send,
              zh_curve_t *curve, zh_watch_t *watch)
{
    zh_peers_t *self = (zh_peers_t *)calloc (1, sizeof (zh_peers_t));
    if (!self) return NULL;
    self->ctx = ctx;
    self->config = config;
    self->me = me;
    self->send = send;
    self->curve = curve;
    self->watch = watch;
    if (!(self->by_endpoint = zh_table_new ())) {
        free (self);
        return NULL;
    }
    return self;
}

//  ---------------------------------------------------------------------
//  One link

static void
s_set_state (zh_peers_t *self, s_peer_t *peer, s_state_t state, const char *why)
{
    if (peer->state == state) return;
    zh_info ("peer-link", "endpoint=%s from=%s to=%s reason=\"%s\" pending=%zu", peer->endpoint,
             s_state_names[peer->state], s_state_names[state], why, peer->pend_count);
    bool was_up = peer->state == S_UP;
    peer->state = state;
    if (self->watch && (was_up || state == S_UP))
        zh_watch_peer (self->watch, peer->endpoint, state == S_UP ? "up" : "down",
                       peer->known ? peer->incarnation : 0);
}

static void
s_hello (zh_peers_t *self, s_peer_t *peer, int64_t now)
{
    zh_body_t hello = {.command = ZH_HELLO,
                       .present = ZH_F_ENDPOINT | ZH_F_INCARNATION | ZH_F_BATCH,
                       .endpoint = zh_span_of (self->me->host),
                       .incarnation = self->me->incarnation,
                       .batch = self->config->batch_max_bytes > 0};
    zh_wire_send_command (peer->socket, NULL, 0, ZH_HELLO, &hello, ZMQ_DONTWAIT);
    peer->hello_at = now;
    peer->conn->last_send = now;
    peer->conn->last_recv = now; //  liveness counts from the HELLO
}

//  PL-4: watch the link's handshakes. A monitor that cannot be made
//  leaves the link unwatched (refusals are then only timeouts).
static void
s_monitor (zh_peers_t *self, s_peer_t *peer, void *socket)
{
    char endpoint[64];
    snprintf (endpoint, sizeof endpoint, "inproc://zhost-peer-monitor-%llu",
              (unsigned long long)++self->monitors);
    int events = ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                 ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH;
    if (zmq_socket_monitor (socket, endpoint, events) != 0) return;
    void *pair = zmq_socket (self->ctx, ZMQ_PAIR);
    int zero = 0;
    if (pair) zmq_setsockopt (pair, ZMQ_LINGER, &zero, sizeof zero);
    if (!pair || zmq_connect (pair, endpoint) != 0) {
        if (pair) zmq_close (pair);
        zmq_socket_monitor (socket, NULL, 0);
        return;
    }
    peer->monitor = pair;
}

//  What a handshake failure event means, for the log and the RETURN.
static void
s_describe_failure (s_peer_t *peer, uint16_t event, uint32_t value)
{
    if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
        snprintf (peer->failure, sizeof peer->failure,
                  "the peer refused our CURVE key (ZAP %u): it is not in that broker's "
                  "--curve-peers",
                  value);
    else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL &&
             value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH)
        snprintf (peer->failure, sizeof peer->failure,
                  "security mismatch: one side uses CURVE and the other does not");
    else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL)
        snprintf (peer->failure, sizeof peer->failure,
                  "the handshake failed (ZMTP error 0x%x): is its key in --curve-peers right?",
                  value);
    else
        snprintf (peer->failure, sizeof peer->failure,
                  "the handshake failed (the connection closed during it)");
}

//  Read the link's handshake events; log a failure when it is new.
static void
s_read_monitor (s_peer_t *peer)
{
    for (int n = 0; peer->monitor && n < 64; n++) {
        zmq_msg_t ev, addr;
        zmq_msg_init (&ev);
        if (zmq_msg_recv (&ev, peer->monitor, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close (&ev);
            return;
        }
        uint16_t event = 0;
        uint32_t value = 0;
        if (zmq_msg_size (&ev) >= 6) {
            memcpy (&event, zmq_msg_data (&ev), 2);
            memcpy (&value, (uint8_t *)zmq_msg_data (&ev) + 2, 4);
        }
        bool more = zmq_msg_more (&ev);
        zmq_msg_close (&ev);
        while (more) { //  the endpoint frame
            zmq_msg_init (&addr);
            more = zmq_msg_recv (&addr, peer->monitor, ZMQ_DONTWAIT) >= 0 && zmq_msg_more (&addr);
            zmq_msg_close (&addr);
        }
        if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
            peer->failure[0] = 0;
            continue;
        }
        if (!event) continue;
        char before[sizeof peer->failure];
        memcpy (before, peer->failure, sizeof before);
        s_describe_failure (peer, event, value);
        if (strcmp (before, peer->failure) != 0)
            zh_warn ("peer-link", "endpoint=%s error=\"%s\"", peer->endpoint, peer->failure);
    }
}

//  Stop watching socket (the link's DEALER, or NULL when it is gone).
static void
s_unmonitor (s_peer_t *peer, void *socket)
{
    if (!peer->monitor) return;
    if (socket) zmq_socket_monitor (socket, NULL, 0);
    zmq_close (peer->monitor);
    peer->monitor = NULL;
}

//  A DEALER to the peer and HELLO on it. 0 or -1.
static int
s_dial (zh_peers_t *self, s_peer_t *peer, int64_t now)
{
    void *socket = zmq_socket (self->ctx, ZMQ_DEALER);
    if (!socket) return -1;
    uint8_t rid[16];
    uint64_t a = zh_random_u64 (), b = zh_random_u64 ();
    memcpy (rid, &a, 8);
    memcpy (rid + 8, &b, 8);
    rid[0] |= 1; //  first byte non-zero (libzmq reserves 0)
    int zero = 0, hwm = (int)self->config->hwm;
    //  PL-3: redial from a jittered first interval (50–150 ms), doubling.
    int ivl = 50 + (int)(zh_random_u64 () % 101), ivl_max = ZH_PEER_BACKOFF_MAX_MS;
    int64_t max = self->config->max_msg_bytes * 2 + 65536;
    zmq_setsockopt (socket, ZMQ_ROUTING_ID, rid, sizeof rid);
    zmq_setsockopt (socket, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt (socket, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt (socket, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt (socket, ZMQ_RECONNECT_IVL, &ivl, sizeof ivl);
    zmq_setsockopt (socket, ZMQ_RECONNECT_IVL_MAX, &ivl_max, sizeof ivl_max);
    zmq_setsockopt (socket, ZMQ_MAXMSGSIZE, &max, sizeof max);
    if (self->curve && zh_curve_apply_peer (self->curve, socket, peer->endpoint) != 0) {
        zmq_close (socket); //  checked by the caller; a key set that fails is not expected
        return -1;
    }
    s_monitor (self, peer, socket);
    if (zmq_connect (socket, peer->endpoint) != 0) {
        zh_warn ("peer-link", "endpoint=%s error=\"connect: %s\"", peer->endpoint,
                 zmq_strerror (errno));
        s_unmonitor (peer, socket);
        zmq_close (socket);
        return -1;
    }
    peer->socket = socket;
    peer->conn->link_socket = socket;
    if (peer->dialled) peer->reconnects++;
    peer->dialled = true;
    s_set_state (self, peer, S_HELLO, peer->reconnects ? "redial" : "dial");
    s_hello (self, peer, now);
    return 0;
}

static void
s_close (zh_peers_t *self, s_peer_t *peer, const char *why)
{
    s_set_state (self, peer, S_CLOSED, why);
    s_unmonitor (peer, peer->socket);
    if (peer->socket) zmq_close (peer->socket);
    peer->socket = NULL;
    peer->conn->link_socket = NULL;
}

static s_peer_t *
s_find (zh_peers_t *self, const char *ep, size_t len)
{
    return (s_peer_t *)zh_table_lookup (self->by_endpoint, ep, len);
}

static s_peer_t *
s_peer_new (zh_peers_t *self, const char *ep, size_t len)
{
    if (self->count == self->room) {
        size_t room = self->room ? 2 * self->room : 8;
        s_peer_t **peers = (s_peer_t **)realloc (self->peers, room * sizeof (s_peer_t *));
        if (!peers) return NULL;
        self->peers = peers;
        self->room = room;
    }
    s_peer_t *peer = (s_peer_t *)calloc (1, sizeof (s_peer_t));
    if (!peer) return NULL;
    peer->endpoint = (char *)malloc (len + 1);
    uint8_t rid[1] = {0};
    peer->conn = zh_conn_new (ZH_SOCK_FRONTEND, ZH_CONN_PEER, rid, 0);
    if (!peer->endpoint || !peer->conn || zh_conn_set_peer_endpoint (peer->conn, ep, len) != 0) {
        free (peer->endpoint);
        zh_conn_destroy (&peer->conn);
        free (peer);
        return NULL;
    }
    memcpy (peer->endpoint, ep, len);
    peer->endpoint[len] = 0;
    if (zh_table_insert (self->by_endpoint, peer->endpoint, len, peer) != 0) {
        s_peer_free (peer);
        return NULL;
    }
    self->peers[self->count++] = peer;
    return peer;
}

//  ---------------------------------------------------------------------
//  Pending (PL-1, PL-2)

static int
s_enqueue (zh_peers_t *self, s_peer_t *peer, zmq_msg_t *frames, size_t count, int64_t now)
{
    size_t bytes = 0;
    for (size_t i = 0; i < count; i++)
        bytes += zmq_msg_size (&frames[i]);
    if (peer->pend_count >= (size_t)self->config->hwm ||
        peer->pend_bytes + bytes > ZH_PEER_PENDING_BYTES)
        return -1;
    if (peer->pend_count == peer->pend_room) {
        size_t room = peer->pend_room ? 2 * peer->pend_room : 16;
        s_pending_t *ring = (s_pending_t *)malloc (room * sizeof (s_pending_t));
        if (!ring) return -1;
        for (size_t i = 0; i < peer->pend_count; i++)
            ring[i] = peer->pending[(peer->pend_head + i) % peer->pend_room];
        free (peer->pending);
        peer->pending = ring;
        peer->pend_head = 0;
        peer->pend_room = room;
    }
    zmq_msg_t *copy = (zmq_msg_t *)malloc (count * sizeof (zmq_msg_t));
    if (!copy) return -1;
    for (size_t i = 0; i < count; i++) {
        zmq_msg_init (&copy[i]);
        zmq_msg_move (&copy[i], &frames[i]);
    }
    peer->pending[(peer->pend_head + peer->pend_count) % peer->pend_room] =
        (s_pending_t){.msg = {.frames = copy, .count = count},
                      .bytes = bytes,
                      .deadline = now + self->config->delivery_timeout_ms};
    peer->pend_count++;
    peer->pend_bytes += bytes;
    return 0;
}

static s_pending_t
s_dequeue (s_peer_t *peer)
{
    s_pending_t head = peer->pending[peer->pend_head];
    peer->pend_head = (peer->pend_head + 1) % peer->pend_room;
    peer->pend_count--;
    peer->pend_bytes -= head.bytes;
    return head;
}

//  Send what waits while the link takes it (PL-1: in order).
static void
s_flush (zh_peers_t *self, s_peer_t *peer, int64_t now)
{
    while (peer->state == S_UP && peer->pend_count) {
        s_pending_t *head = &peer->pending[peer->pend_head];
        if (zh_send_frames (self->send, peer->conn, head->msg.frames, head->msg.count, now) != 0)
            return; //  the link's queue is full: the rest at the next tick
        peer->forwarded++;
        s_pending_t done = s_dequeue (peer);
        zh_outmsg_close (&done.msg);
    }
}

//  Return the oldest pending message for rc (or drop it, unflagged).
static void
s_return_head (zh_peers_t *self, s_peer_t *peer, zh_rc_t rc, const char *reason)
{
    s_pending_t late = s_dequeue (peer);
    zh_head_t head;
    const uint8_t *data = (const uint8_t *)zmq_msg_data (&late.msg.frames[0]);
    if (zh_head_decode (&head, data, zmq_msg_size (&late.msg.frames[0]), NULL) == 0) {
        peer->returned[rc]++;
        zh_send_return_post (self->send, late.msg.frames, late.msg.count, &head, rc, reason);
    }
    zh_outmsg_close (&late.msg);
}

//  Return (or drop, unflagged) the messages whose deadline passed (PL-2).
static void
s_expire (zh_peers_t *self, s_peer_t *peer, int64_t now)
{
    if (!peer->pend_count || peer->pending[peer->pend_head].deadline > now) return;
    s_read_monitor (peer);
    char reason[ZH_ERROR_REASON_MAX];
    if (peer->failure[0])
        snprintf (reason, sizeof reason, "no link to %.50s within the delivery timeout: %s",
                  peer->endpoint, peer->failure);
    else
        snprintf (reason, sizeof reason, "no link to %.100s within the delivery timeout (%s)",
                  peer->endpoint, s_state_names[peer->state]);
    while (peer->pend_count && peer->pending[peer->pend_head].deadline <= now)
        s_return_head (self, peer, ZH_RC_HOST_UNREACHABLE, reason);
}

void
zh_peers_bye_all (zh_peers_t *self, const char *reason)
{
    for (size_t i = 0; i < self->count; i++) {
        s_peer_t *peer = self->peers[i];
        while (peer->pend_count)
            s_return_head (self, peer, ZH_RC_SHUTDOWN, "the broker is shutting down");
        if (peer->socket) {
            zh_body_t bye = {
                .command = ZH_BYE, .present = ZH_F_REASON, .reason = zh_span_of (reason)};
            zh_wire_send_command (peer->socket, NULL, 0, ZH_BYE, &bye, ZMQ_DONTWAIT);
        }
    }
}

//  ---------------------------------------------------------------------
//  The interface

int
zh_peers_forward (zh_peers_t *self, const char *ep, size_t len, zmq_msg_t *frames, size_t count,
                  int64_t now, zh_rc_t *rc, const char **reason)
{
    s_peer_t *peer = s_find (self, ep, len);
    size_t max = (size_t)self->config->max_peers;
    if (!peer && self->count >= max) {
        //  PL-5: at the bound, a forgotten link makes room, or nothing does.
        for (size_t i = self->count; i-- > 0 && self->count >= max;)
            s_reap (self, i, now);
        if (self->count >= max) {
            *rc = ZH_RC_HOST_UNREACHABLE;
            *reason = "too many links to other brokers (--max-peers): none is idle enough to "
                      "forget";
            char q[ZH_ADDR_MAX + 8];
            zh_warn ("peer-link", "endpoint=%s refused=\"--max-peers %zu reached\"",
                     zh_log_quote (q, sizeof q, ep, len), max);
            return -1;
        }
    }
    if (!peer && !(peer = s_peer_new (self, ep, len))) {
        *rc = ZH_RC_HOST_UNREACHABLE;
        *reason = "out of memory for a peer link";
        return -1;
    }
    peer->last_used = now;
    if (peer->state == S_CLOSED && self->curve &&
        !zh_curve_has_peer (self->curve, peer->endpoint)) {
        //  PL-4: a configuration error, returned at once.
        *rc = ZH_RC_HOST_UNREACHABLE;
        *reason = "no CURVE key for that broker: its certificate is not in --curve-peers";
        peer->returned[*rc]++;
        return -1;
    }
    if (peer->state == S_CLOSED && s_dial (self, peer, now) != 0) {
        *rc = ZH_RC_HOST_UNREACHABLE;
        *reason = "the endpoint cannot be dialled";
        peer->returned[*rc]++;
        return -1;
    }
    if (peer->state == S_UP && peer->pend_count == 0) {
        if (zh_send_frames (self->send, peer->conn, frames, count, now) == 0) {
            peer->forwarded++;
            return 0;
        }
        *rc = ZH_RC_OVERLOADED;
        *reason = "the link to that broker is full";
        peer->returned[*rc]++;
        return -1;
    }
    if (s_enqueue (self, peer, frames, count, now) != 0) {
        *rc = ZH_RC_OVERLOADED;
        *reason = "too many messages wait for the link to that broker";
        peer->returned[*rc]++;
        return -1;
    }
    return 0;
}

size_t
zh_peers_count (zh_peers_t *self)
{
    return self->count;
}

zh_conn_t *
zh_peers_link (zh_peers_t *self, size_t i)
{
    return i < self->count ? self->peers[i]->conn : NULL;
}

static s_peer_t *
s_of_conn (zh_peers_t *self, const zh_conn_t *conn)
{
    for (size_t i = 0; i < self->count; i++)
        if (self->peers[i]->conn == conn) return self->peers[i];
    return NULL;
}

void
zh_peers_command (zh_peers_t *self, zh_conn_t *link, const zh_header_t *hdr, zmq_msg_t *frames,
                  size_t count, int64_t now)
{
    s_peer_t *peer = s_of_conn (self, link);
    if (!peer || !peer->socket) return;
    zh_body_t body;
    const uint8_t *data = count >= 2 ? (const uint8_t *)zmq_msg_data (&frames[1]) : NULL;
    size_t size = count >= 2 ? zmq_msg_size (&frames[1]) : 0;
    zh_error_t err;
    if (count > 2 || zh_body_decode (&body, hdr->command, data, size, &err) != 0) {
        zh_warn ("peer-link", "endpoint=%s note=\"a malformed %s from the peer: ignored\"",
                 peer->endpoint, zh_command_name (hdr->command));
        return;
    }
    switch (hdr->command) {
    case ZH_WELCOME: {
        if (peer->known && peer->incarnation != body.incarnation) {
            zh_info ("peer-link", "endpoint=%s state=restarted incarnation=%llu was=%llu",
                     peer->endpoint, (unsigned long long)body.incarnation,
                     (unsigned long long)peer->incarnation);
            if (self->watch)
                zh_watch_peer (self->watch, peer->endpoint, "restarted", body.incarnation);
        }
        peer->known = true;
        peer->incarnation = body.incarnation;
        //  §14: BATCH on the link if it takes them, no larger than either
        //  side's bound.
        size_t theirs = (body.present & ZH_F_BATCH_MAX_BYTES) ? (size_t)body.batch_max_bytes : 0;
        size_t ours = (size_t)self->config->batch_max_bytes;
        zh_conn_set_batch (link, (body.present & ZH_F_BATCH) && body.batch,
                           theirs < ours ? theirs : ours);
        s_set_state (self, peer, S_UP, "welcome");
        s_flush (self, peer, now);
        break;
    }
    case ZH_PING:
        zh_wire_send_command (peer->socket, NULL, 0, ZH_PONG, NULL, ZMQ_DONTWAIT);
        link->last_send = now;
        break;
    case ZH_PONG:
        break;
    case ZH_ERROR:
        zh_info ("peer-error", "endpoint=%s code=%lld reason=\"%.*s\"", peer->endpoint,
                 (long long)body.code, (int)(body.reason.len > 200 ? 200 : body.reason.len),
                 body.reason.ptr ? body.reason.ptr : "");
        if (body.code == ZH_ERR_HANDSHAKE) {
            //  PL-3: it restarted and forgot us: HELLO again.
            peer->reconnects++;
            s_set_state (self, peer, S_HELLO, "peer forgot us (401)");
            s_hello (self, peer, now);
        }
        break;
    case ZH_BYE:
        s_close (self, peer, "bye from the peer");
        break;
    default:
        zh_warn ("peer-link", "endpoint=%s note=\"%s on a link: ignored\"", peer->endpoint,
                 zh_command_name (hdr->command));
    }
}

//  PL-5: a link that is not up and has held nothing and been given
//  nothing for the idle bound is forgotten: its socket closes (no more redials of an
//  endpoint nobody uses) and its slot is free. Returns true if it went.
static bool
s_reap (zh_peers_t *self, size_t i, int64_t now)
{
    s_peer_t *peer = self->peers[i];
    int64_t idle = self->config->delivery_timeout_ms > ZH_PEER_IDLE_MIN_MS
                       ? self->config->delivery_timeout_ms
                       : ZH_PEER_IDLE_MIN_MS;
    if (peer->pend_count) peer->last_used = now; //  holding counts as use: idle from when it let go
    if (peer->state == S_UP || peer->pend_count || now - peer->last_used < idle) return false;
    zh_info ("peer-link", "endpoint=%s state=forgotten reason=\"not up and unused for %lld ms\"",
             peer->endpoint, (long long)(now - peer->last_used));
    zh_table_delete (self->by_endpoint, peer->endpoint, strlen (peer->endpoint));
    s_peer_free (peer);
    memmove (&self->peers[i], &self->peers[i + 1], (self->count - i - 1) * sizeof (s_peer_t *));
    self->count--;
    return true;
}

int64_t
zh_peers_tick (zh_peers_t *self, int64_t now)
{
    for (size_t i = self->count; i-- > 0;)
        s_reap (self, i, now);
    int64_t hb = self->config->heartbeat_ms;
    int64_t expiry = hb * self->config->liveness;
    int64_t next = -1;
    for (size_t i = 0; i < self->count; i++) {
        s_peer_t *peer = self->peers[i];
        zh_conn_t *conn = peer->conn;
        s_read_monitor (peer);
        int events = 0;
        size_t esize = sizeof events;
        bool unread = peer->socket &&
                      zmq_getsockopt (peer->socket, ZMQ_EVENTS, &events, &esize) == 0 &&
                      (events & ZMQ_POLLIN);
        if (peer->socket && !unread && now - conn->last_recv >= expiry) {
            //  PL-3: silent: HELLO again; what comes meanwhile waits.
            if (peer->state == S_UP) {
                peer->reconnects++;
                s_set_state (self, peer, S_HELLO, "silent");
            }
            s_hello (self, peer, now);
        } else if (peer->socket && now - conn->last_send >= hb) {
            zh_wire_send_command (peer->socket, NULL, 0, ZH_PING, NULL, ZMQ_DONTWAIT);
            conn->last_send = now;
        }
        s_flush (self, peer, now);
        s_expire (self, peer, now);
        if (peer->pend_count) {
            int64_t due = peer->pending[peer->pend_head].deadline - now;
            if (next < 0 || due < next) next = due < 0 ? 0 : due;
        }
    }
    return next;
}

zh_conn_t *
zh_peers_direct (zh_peers_t *self, const char *ep, size_t len)
{
    s_peer_t *peer = s_find (self, ep, len);
    return peer && peer->state == S_UP && peer->pend_count == 0 && peer->conn->batch ? peer->conn
                                                                                     : NULL;
}

void
zh_peers_info (zh_peers_t *self, size_t i, zh_peer_info_t *info)
{
    s_peer_t *peer = self->peers[i];
    uint64_t returned = 0;
    for (int rc = 0; rc < ZH_RC_COUNT; rc++)
        returned += peer->returned[rc];
    *info = (zh_peer_info_t){.endpoint = peer->endpoint,
                             .state = s_state_names[peer->state],
                             .pending = peer->pend_count,
                             .pending_bytes = peer->pend_bytes,
                             .forwarded = peer->forwarded + peer->conn->msgs_out,
                             .received = peer->conn->msgs_in,
                             .returned = returned,
                             .reconnects = peer->reconnects};
}

void
zh_peers_pack (zh_peers_t *self, msgpack_packer *pk)
{
    msgpack_pack_map (pk, self->count);
    for (size_t i = 0; i < self->count; i++) {
        s_peer_t *peer = self->peers[i];
        zh_pack_str (pk, peer->endpoint);
        msgpack_pack_map (pk, 7);
        zh_pack_kv_str (pk, "state", s_state_names[peer->state]);
        zh_pack_kv_uint (pk, "pending", peer->pend_count);
        zh_pack_kv_uint (pk, "forwarded", peer->forwarded + peer->conn->msgs_out);
        zh_pack_kv_uint (pk, "in", peer->conn->msgs_in);
        zh_pack_str (pk, "returned");
        msgpack_pack_map (pk, ZH_RC_COUNT);
        for (int rc = 0; rc < ZH_RC_COUNT; rc++)
            zh_pack_kv_uint (pk, zh_rc_name ((zh_rc_t)rc), peer->returned[rc]);
        zh_pack_kv_uint (pk, "reconnects", peer->reconnects);
        zh_pack_kv_uint (pk, "incarnation", peer->known ? peer->incarnation : 0);
    }
}

//  Close a link and free it (what waits is dropped: the caller says why).
static void
s_peer_free (s_peer_t *peer)
{
    while (peer->pend_count) {
        s_pending_t p = s_dequeue (peer);
        zh_outmsg_close (&p.msg);
    }
    free (peer->pending);
    s_unmonitor (peer, peer->socket);
    if (peer->socket) zmq_close (peer->socket);
    zh_conn_destroy (&peer->conn);
    free (peer->endpoint);
    free (peer);
}

void
zh_peers_destroy (zh_peers_t **self_p)
{
    if (!self_p || !*self_p) return;
    zh_peers_t *self = *self_p;
    for (size_t i = 0; i < self->count; i++) {
        s_peer_t *peer = self->peers[i];
        if (peer->pend_count)
            zh_warn ("peer-link", "endpoint=%s pending=%zu note=\"dropped at exit\"",
                     peer->endpoint, peer->pend_count);
        s_peer_free (peer);
    }
    free (self->peers);
    zh_table_destroy (&self->by_endpoint);
    free (self);
    *self_p = NULL;
}
