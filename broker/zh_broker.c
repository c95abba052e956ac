/*  zh_broker.c — zhost-broker: sockets, event loop, routing, handshakes,
    liveness and shutdown.

    Where it sits: the middle of everything. Messages arrive on one of
    three ROUTER sockets (frontend: clients and peer brokers; backend:
    spawned procs; control: local administration) and take this path, kept
    short on purpose (DESIGN.md, data flow):

        recv → header check → handshake → head decode → principal check
             → size → ttl (lowered in place) → dest lookup → send, or RETURN

    Payload frames are moved, never copied; meta and payload are never
    decoded on this path. Sends never block (DONTWAIT): a full queue is
    OVERLOADED, a vanished routing id PROC_GONE.

    Invariants:
    - BR-1 (principal): a SEND/RETURN is routed only if its src proc id and
      endpoint are its connection's principal; a mismatch is ERROR 403 and
      nothing reaches the victim.
    - BR-2 (no bounce of a bounce): a RETURN that cannot be delivered is
      dropped, logged and counted as abandoned, never returned.
    - BR-3 (accounted): every message received is routed, returned,
      dropped (unflagged, counted) or refused with ERROR (counted).
    - BR-4 (one clock read per turn): `now` is read once per loop turn, so
      liveness bookkeeping costs a store per message, not a syscall.
    - BR-5 (caches vouch only for identical bytes): a connection remembers
      the last src that passed the checks and the last dest it parsed; a
      message whose src/dest bytes are identical skips the parse (and the
      principal check), since the verdict would be the same. Cached
      connections and routes are used only while `gen`, bumped on every
      change to the connection and route tables, is unchanged.
*/
#include "zh_broker_int.h"

#include <czmq.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "zh_log.h"

const int zh_reject_codes[ZH_REJECT_KINDS] = {400, 401, 403, 404, 413, 426, 503};

static int inproc_counter = 0;

//  ---------------------------------------------------------------------
//  Small helpers

static uint64_t
s_random_u64 (void)
{
    uint64_t value = 0;
    if (getrandom (&value, sizeof value, 0) != (ssize_t)sizeof value)
        value = ((uint64_t)rand () << 32) ^ (uint64_t)rand () ^ (uint64_t)zclock_mono ();
    return value;
}

static char *
s_strndup (const void *data, size_t len)
{
    char *copy = (char *)malloc (len + 1);
    if (copy) {
        memcpy (copy, data, len);
        copy[len] = 0;
    }
    return copy;
}

static void
s_count_reject (zh_broker_t *self, int code)
{
    for (int i = 0; i < ZH_REJECT_KINDS; i++)
        if (zh_reject_codes[i] == code) {
            self->stats.rejected[i]++;
            return;
        }
}

static bool
s_is_self (zh_broker_t *self, const char *ep, size_t len)
{
    for (size_t i = 0; i < self->self_count; i++)
        if (self->self_ep_lens[i] == len && memcmp (self->self_eps[i], ep, len) == 0) return true;
    return false;
}

static const char *sock_names[ZH_SOCK_COUNT] = {"frontend", "backend", "control"};

//  ---------------------------------------------------------------------
//  Sending

//  Send a control command with an optional msgpack body to one peer.
static int
s_send_command (zh_broker_t *self, zh_sock_t sock, const uint8_t *rid, size_t rid_len,
                uint8_t command, const uint8_t *body, size_t body_size)
{
    void *socket = self->socks[sock];
    uint8_t header[ZH_HEADER_SIZE];
    zh_header_write (header, command, 0, 0);
    if (zmq_send (socket, rid, rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) == -1) return -1;
    if (body && body_size) {
        zmq_send (socket, header, sizeof header, ZMQ_SNDMORE | ZMQ_DONTWAIT);
        zmq_send (socket, body, body_size, ZMQ_DONTWAIT);
    } else
        zmq_send (socket, header, sizeof header, ZMQ_DONTWAIT);
    return 0;
}

//  Send a command whose body is built from a zh_body_t.
static int
s_send_body (zh_broker_t *self, zh_sock_t sock, const uint8_t *rid, size_t rid_len,
             const zh_body_t *body)
{
    size_t size = 0;
    uint8_t *bytes = zh_body_encode (body, &size);
    if (!bytes) return -1;
    int rc = s_send_command (self, sock, rid, rid_len, body->command, bytes, size);
    free (bytes);
    return rc;
}

static void
s_send_bye (zh_broker_t *self, zh_sock_t sock, const uint8_t *rid, size_t rid_len,
            const char *reason)
{
    zh_body_t body = {.command = ZH_BYE, .present = ZH_F_REASON, .reason = zh_span_of (reason)};
    s_send_body (self, sock, rid, rid_len, &body);
}

//  Refuse a message with ERROR code. head, when the refused message was a
//  SEND/RETURN whose head could be read, adds its dest and meta seq.
static void
s_reject (zh_broker_t *self, zh_sock_t sock, const uint8_t *rid, size_t rid_len, int code,
          const char *reason, const zh_head_t *head)
{
    s_count_reject (self, code);
    zh_body_t body = {.command = ZH_ERROR, .present = ZH_F_CODE | ZH_F_REASON, .code = code};
    body.reason = zh_span_of (reason);
    if (head && head->dest) {
        body.present |= ZH_F_DEST;
        body.dest.ptr = (const char *)head->dest;
        body.dest.len = head->dest_len;
        int64_t seq;
        if (head->meta_len && zh_meta_find_seq (head->meta, head->meta_len, &seq) == 0) {
            body.present |= ZH_F_SEQ;
            body.seq = seq;
        }
    }
    s_send_body (self, sock, rid, rid_len, &body);
    if (zh_log_enabled (ZH_LOG_DEBUG)) {
        char name[80], q[240];
        zh_conn_t tmp = {.rid_len = rid_len < ZH_RID_MAX ? rid_len : ZH_RID_MAX};
        memcpy (tmp.rid, rid, tmp.rid_len);
        zh_debug ("reject", "socket=%s from=%s code=%d reason=%s", sock_names[sock],
                  zh_conn_name (&tmp, name, sizeof name), code,
                  zh_log_quote (q, sizeof q, reason, strlen (reason)));
    }
}

int
zh_broker_send_body (zh_broker_t *self, zh_sock_t sock, const uint8_t *rid, size_t rid_len,
                     const zh_body_t *body)
{
    return s_send_body (self, sock, rid, rid_len, body);
}

void
zh_broker_reject (zh_broker_t *self, zh_sock_t sock, const uint8_t *rid, size_t rid_len, int code,
                  const char *reason)
{
    s_reject (self, sock, rid, rid_len, code, reason, NULL);
}

//  Send frames[0..count) to a connection: [rid][frames…]. Never blocks.
//  Returns 0, or -1 with errno EHOSTUNREACH (routing id gone) or EAGAIN
//  (its queue is full); on failure no frame was sent or consumed.
static int
s_send_frames (zh_broker_t *self, zh_conn_t *to, zmq_msg_t *frames, size_t count)
{
    void *socket = self->socks[to->sock];
    if (zmq_send (socket, to->rid, to->rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) == -1) return -1;
    for (size_t i = 0; i < count; i++)
        zmq_msg_send (&frames[i], socket, (i + 1 < count ? ZMQ_SNDMORE : 0) | ZMQ_DONTWAIT);
    to->last_send = self->now;
    return 0;
}

//  ---------------------------------------------------------------------
//  Connections and routes

static void
s_gone_remember (zh_broker_t *self, const char *proc_id, size_t len)
{
    if (zh_table_lookup (self->gone, proc_id, len)) return;
    if (self->gone_count == ZH_GONE_MAX) {
        //  Evict the oldest; its key goes only if the table still points at
        //  this slot (a name gone, spawned again and gone again has a newer
        //  slot, which keeps it).
        char *oldest = self->gone_ring[self->gone_head];
        size_t oldest_len = strlen (oldest);
        if (zh_table_lookup (self->gone, oldest, oldest_len) ==
            (void *)(uintptr_t)(self->gone_head + 1))
            zh_table_delete (self->gone, oldest, oldest_len);
        free (oldest);
        self->gone_ring[self->gone_head] = NULL;
        self->gone_head = (self->gone_head + 1) % ZH_GONE_MAX;
        self->gone_count--;
    }
    char *copy = s_strndup (proc_id, len);
    if (!copy) return;
    size_t slot = (self->gone_head + self->gone_count) % ZH_GONE_MAX;
    self->gone_ring[slot] = copy;
    self->gone_count++;
    zh_table_insert (self->gone, proc_id, len, (void *)(uintptr_t)(slot + 1));
}

static void
s_gone_forget (zh_broker_t *self, const char *proc_id, size_t len)
{
    //  The ring keeps its copy; its eviction leaves the key alone unless the
    //  table points at that slot.
    zh_table_delete (self->gone, proc_id, len);
}

//  Remove a connection: its route goes, its proc id is remembered as gone.
static void
s_conn_remove (zh_broker_t *self, zh_conn_t *conn, const char *why)
{
    char name[ZH_ADDR_MAX + 1];
    zh_conn_name (conn, name, sizeof name);
    if (conn->proc_id_len) {
        if (zh_table_lookup (self->routes, conn->proc_id, conn->proc_id_len) == conn)
            zh_table_delete (self->routes, conn->proc_id, conn->proc_id_len);
        s_gone_remember (self, conn->proc_id, conn->proc_id_len);
    }
    zh_table_delete (self->conns[conn->sock], conn->rid, conn->rid_len);
    self->gen++; //  BR-5: no cache may point at it any more
    zh_info ("detach", "socket=%s proc=%s reason=%s in=%llu out=%llu", sock_names[conn->sock], name,
             why, (unsigned long long)conn->msgs_in, (unsigned long long)conn->msgs_out);
    zh_conn_destroy (&conn);
}

zh_conn_t *
zh_broker_add_proc_conn (zh_broker_t *self, const uint8_t *rid, size_t rid_len, const char *proc_id)
{
    zh_conn_t *old = (zh_conn_t *)zh_table_lookup (self->conns[ZH_SOCK_BACKEND], rid, rid_len);
    if (old) s_conn_remove (self, old, "replaced");
    zh_conn_t *conn = zh_conn_new (ZH_SOCK_BACKEND, ZH_CONN_PROC, rid, rid_len);
    if (!conn) return NULL;
    zh_conn_set_proc_id (conn, proc_id);
    conn->last_recv = conn->last_send = self->now;
    zh_table_insert (self->conns[ZH_SOCK_BACKEND], rid, rid_len, conn);
    zh_table_insert (self->routes, conn->proc_id, conn->proc_id_len, conn);
    self->gen++;
    s_gone_forget (self, conn->proc_id, conn->proc_id_len);
    return conn;
}

void
zh_broker_proc_gone (zh_broker_t *self, const char *proc_id)
{
    size_t len = strlen (proc_id);
    zh_conn_t *conn = (zh_conn_t *)zh_table_lookup (self->routes, proc_id, len);
    if (conn)
        s_conn_remove (self, conn, "exited");
    else
        s_gone_remember (self, proc_id, len);
}

//  ---------------------------------------------------------------------
//  RETURNs

void
zh_broker_bounce (zh_broker_t *self, zh_conn_t *to, zmq_msg_t *frames, size_t count,
                  const zh_head_t *head, zh_rc_t rc, const char *reason)
{
    char dest[ZH_ADDR_MAX + 1], q[240];
    snprintf (dest, sizeof dest, "%.*s", (int)head->dest_len, (const char *)head->dest);
    if (head->hdr.command == ZH_RETURN) {
        //  BR-2: never bounce a bounce.
        self->stats.abandoned++;
        zh_info ("abandoned", "dest=%s code=%s reason=%s", dest, zh_rc_name (rc),
                 zh_log_quote (q, sizeof q, reason, strlen (reason)));
        return;
    }
    if (!(head->hdr.flags & ZH_FLAG_RETURN_UNDELIVERABLE) || !to) {
        self->stats.dropped++;
        zh_debug ("dropped", "dest=%s code=%s reason=%s", dest, zh_rc_name (rc),
                  zh_log_quote (q, sizeof q, reason, strlen (reason)));
        return;
    }
    size_t meta_size = 0;
    const char *at = self->advertised[0];
    uint8_t *meta =
        zh_return_meta_encode (NULL, 0, zh_rc_name (rc), reason, at, (const char *)head->dest,
                               head->dest_len, head->meta, head->meta_len, &meta_size);
    if (!meta) {
        self->stats.abandoned++;
        return;
    }
    uint8_t flags = head->hdr.flags & ZH_FLAG_INLINE;
    size_t src_len = strlen (self->service_addr);
    size_t inline_len = (flags & ZH_FLAG_INLINE) ? head->inline_len : 0;
    size_t size = zh_head_size (head->src_len, src_len, meta_size, inline_len);
    zmq_msg_t ret;
    zmq_msg_init_size (&ret, size);
    long written =
        zh_head_write ((uint8_t *)zmq_msg_data (&ret), size, ZH_RETURN, (uint8_t)self->config->ttl,
                       flags, (const char *)head->src, head->src_len, self->service_addr, src_len,
                       meta, meta_size, head->inline_part, inline_len);
    free (meta);
    if (written < 0) {
        zmq_msg_close (&ret);
        self->stats.abandoned++;
        zh_warn ("abandoned", "dest=%s code=%s reason=\"return head too large\"", dest,
                 zh_rc_name (rc));
        return;
    }
    //  The RETURN takes the head's place; payload frames follow, moved.
    zmq_msg_move (&frames[0], &ret);
    zmq_msg_close (&ret);
    if (s_send_frames (self, to, frames, count) == 0) {
        self->stats.returned[rc]++;
        zh_debug ("returned", "dest=%s code=%s to=%s", dest, zh_rc_name (rc), to->proc_id);
    } else {
        self->stats.abandoned++;
        zh_info ("abandoned", "dest=%s code=%s reason=%s", dest, zh_rc_name (rc),
                 errno == EAGAIN ? "sender-queue-full" : "sender-gone");
    }
}

//  ---------------------------------------------------------------------
//  Routing

//  Deliver a message whose head passed every check. `from` is NULL for a
//  message the broker made itself.
static void
s_route (zh_broker_t *self, zh_conn_t *from, zmq_msg_t *frames, size_t count, const zh_head_t *head,
         const zh_addr_t *dest)
{
    //  BR-5: the route of the connection's cached dest, if still valid.
    bool cached = from && dest == &from->dest_addr;
    zh_conn_t *to = NULL;
    if (cached && from->dest_to && from->dest_to_gen == self->gen)
        to = (zh_conn_t *)from->dest_to;
    else if (!s_is_self (self, dest->endpoint.ptr, dest->endpoint.len)) {
        if (from && from->kind == ZH_CONN_PEER)
            zh_broker_bounce (self, from, frames, count, head, ZH_RC_NO_SUCH_PROC,
                              "dest is not at this broker and peers' messages are not relayed");
        else
            zh_broker_bounce (self, from, frames, count, head, ZH_RC_HOST_UNREACHABLE,
                              "no link to that broker (peer links are not implemented yet)");
        return;
    } else {
        to = (zh_conn_t *)zh_table_lookup (self->routes, dest->proc.text.ptr, dest->proc.text.len);
        if (cached && to) {
            from->dest_to = to;
            from->dest_to_gen = self->gen;
        }
    }
    if (to) {
        if (s_send_frames (self, to, frames, count) == 0) {
            self->stats.routed++;
            to->msgs_out++;
        } else if (errno == EAGAIN)
            zh_broker_bounce (self, from, frames, count, head, ZH_RC_OVERLOADED,
                              "the receiver's queue is full");
        else
            zh_broker_bounce (self, from, frames, count, head, ZH_RC_PROC_GONE,
                              "the proc's connection is gone");
        return;
    }
    if (zh_span_eq (dest->proc.text, "service"))
        zh_agent_deliver (self, from, frames, count, head, dest);
    else if (zh_span_eq (dest->proc.text, "local"))
        zh_broker_bounce (self, from, frames, count, head, ZH_RC_NO_SUCH_ACTOR,
                          "the local proc has no actors");
    else if (zh_table_lookup (self->gone, dest->proc.text.ptr, dest->proc.text.len))
        zh_broker_bounce (self, from, frames, count, head, ZH_RC_PROC_GONE,
                          "the proc stopped or detached");
    else
        zh_broker_bounce (self, from, frames, count, head, ZH_RC_NO_SUCH_PROC,
                          "no proc of that id at this broker");
}

//  Parse a head's addresses: a SEND's dest is a port address; a RETURN's
//  dest is the original src (an actor or proc address, but any address
//  form is routed); src is an actor or proc address. 0, or -1 with reason.
static int
s_parse_addrs (const zh_head_t *head, zh_addr_t *dest, zh_addr_t *src, char *reason, size_t size)
{
    zh_error_t err;
    if (zh_addr_parse (dest, (const char *)head->dest, head->dest_len, &err) != 0) {
        snprintf (reason, size, "dest: %s", err.reason);
        return -1;
    }
    if (head->hdr.command == ZH_SEND && dest->kind != ZH_ADDR_PORT) {
        snprintf (reason, size, "dest: a SEND's dest must be a port address");
        return -1;
    }
    if (zh_addr_parse (src, (const char *)head->src, head->src_len, &err) != 0) {
        snprintf (reason, size, "src: %s", err.reason);
        return -1;
    }
    if (src->kind == ZH_ADDR_PORT) {
        snprintf (reason, size, "src: must be an actor or proc address");
        return -1;
    }
    return 0;
}

void
zh_broker_route_internal (zh_broker_t *self, zmq_msg_t *frames, size_t count)
{
    zh_head_t head;
    zh_addr_t dest, src;
    char reason[ZH_ERROR_REASON_MAX + 8];
    const uint8_t *data = (const uint8_t *)zmq_msg_data (&frames[0]);
    if (zh_head_decode (&head, data, zmq_msg_size (&frames[0]), NULL) != 0 ||
        s_parse_addrs (&head, &dest, &src, reason, sizeof reason) != 0) {
        self->stats.dropped++;
        return;
    }
    s_route (self, NULL, frames, count, &head, &dest);
}

//  True if src (an actor or proc address) belongs to the connection (BR-1).
static bool
s_principal_ok (zh_broker_t *self, const zh_conn_t *conn, const zh_addr_t *src)
{
    if (conn->kind == ZH_CONN_PEER)
        return src->endpoint.len == conn->peer_endpoint_len &&
               memcmp (src->endpoint.ptr, conn->peer_endpoint, src->endpoint.len) == 0;
    return src->proc.text.len == conn->proc_id_len &&
           memcmp (src->proc.text.ptr, conn->proc_id, conn->proc_id_len) == 0 &&
           s_is_self (self, src->endpoint.ptr, src->endpoint.len);
}

static void
s_rebase (zh_span_t *span, const char *from, char *to)
{
    if (span->ptr) span->ptr = to + (span->ptr - from);
}

//  The dest of a head, parsed: from the connection's cache when the bytes
//  are the same as last time (BR-5), else parsed and cached. NULL with
//  reason when it is not an address, or not a port address in a SEND.
static const zh_addr_t *
s_check_dest (zh_conn_t *conn, const zh_head_t *head, char *reason, size_t size)
{
    const zh_addr_t *dest = &conn->dest_addr;
    if (head->dest_len != conn->dest_cache_len ||
        memcmp (head->dest, conn->dest_cache, head->dest_len) != 0) {
        zh_error_t err;
        zh_addr_t parsed;
        const char *text = (const char *)head->dest;
        if (zh_addr_parse (&parsed, text, head->dest_len, &err) != 0) {
            snprintf (reason, size, "dest: %s", err.reason);
            return NULL;
        }
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
    }
    if (head->hdr.command == ZH_SEND && dest->kind != ZH_ADDR_PORT) {
        snprintf (reason, size, "dest: a SEND's dest must be a port address");
        return NULL;
    }
    return dest;
}

//  Check the src of a head: an actor or proc address of the connection's
//  principal (BR-1). 0, 400 (not such an address) or 403 (someone else's),
//  with reason. Bytes identical to the last src that passed are not
//  checked again (BR-5).
static int
s_check_src (zh_broker_t *self, zh_conn_t *conn, const zh_head_t *head, char *reason, size_t size)
{
    if (head->src_len == conn->src_cache_len &&
        memcmp (head->src, conn->src_cache, head->src_len) == 0)
        return 0;
    zh_addr_t src;
    zh_error_t err;
    if (zh_addr_parse (&src, (const char *)head->src, head->src_len, &err) != 0) {
        snprintf (reason, size, "src: %s", err.reason);
        return 400;
    }
    if (src.kind == ZH_ADDR_PORT) {
        snprintf (reason, size, "src: must be an actor or proc address");
        return 400;
    }
    if (!s_principal_ok (self, conn, &src)) {
        snprintf (reason, size, "src does not belong to this connection");
        return 403;
    }
    if (head->src_len <= ZH_ADDR_CACHE) {
        memcpy (conn->src_cache, head->src, head->src_len);
        conn->src_cache_len = head->src_len;
    }
    return 0;
}

//  A SEND or RETURN from a connection that finished its handshake; its
//  head frame (frames[0]) is data/size, not checked yet.
static void
s_handle_send (zh_broker_t *self, zh_conn_t *conn, uint8_t *data, size_t size, size_t count,
               size_t total)
{
    zmq_msg_t *frames = self->frames;
    zh_head_t head;
    zh_error_t err;
    if (zh_head_decode (&head, data, size, &err) != 0) {
        s_reject (self, conn->sock, conn->rid, conn->rid_len, err.code, err.reason, NULL);
        return;
    }
    char reason[ZH_ERROR_REASON_MAX + 8];
    const zh_addr_t *dest = s_check_dest (conn, &head, reason, sizeof reason);
    if (!dest) {
        s_reject (self, conn->sock, conn->rid, conn->rid_len, 400, reason, &head);
        return;
    }
    int verdict = s_check_src (self, conn, &head, reason, sizeof reason);
    if (verdict != 0) {
        if (verdict == 403) {
            char name[ZH_ADDR_MAX + 1], q[ZH_ADDR_MAX + 8];
            zh_warn ("spoof", "socket=%s from=%s src=%s", sock_names[conn->sock],
                     zh_conn_name (conn, name, sizeof name),
                     zh_log_quote (q, sizeof q, (const char *)head.src, head.src_len));
        }
        s_reject (self, conn->sock, conn->rid, conn->rid_len, verdict, reason, &head);
        return;
    }
    conn->msgs_in++;
    if (total > (size_t)self->config->max_msg_bytes) {
        zh_broker_bounce (self, conn, frames, count, &head, ZH_RC_TOO_LARGE,
                          "message is larger than max_msg_bytes");
        return;
    }
    if (self->shutting_down) {
        zh_broker_bounce (self, conn, frames, count, &head, ZH_RC_SHUTDOWN,
                          "the broker is shutting down");
        return;
    }
    if (head.hdr.ttl == 0) {
        zh_broker_bounce (self, conn, frames, count, &head, ZH_RC_TTL_EXPIRED,
                          "the hop limit ran out");
        return;
    }
    data[head.ttl_offset]--;
    head.hdr.ttl--;
    s_route (self, conn, frames, count, &head, dest);
}

//  ---------------------------------------------------------------------
//  Handshakes and control commands

static zh_conn_t *
s_conn_lookup (zh_broker_t *self, zh_sock_t sock, const uint8_t *rid, size_t rid_len)
{
    //  BR-5: a run of messages from one peer costs one hash lookup.
    if (self->last_gen[sock] == self->gen && self->last_rid_len[sock] == rid_len &&
        self->last_conn[sock] && memcmp (self->last_rid[sock], rid, rid_len) == 0)
        return self->last_conn[sock];
    zh_conn_t *conn = (zh_conn_t *)zh_table_lookup (self->conns[sock], rid, rid_len);
    if (conn && rid_len <= ZH_RID_MAX) {
        memcpy (self->last_rid[sock], rid, rid_len);
        self->last_rid_len[sock] = rid_len;
        self->last_conn[sock] = conn;
        self->last_gen[sock] = self->gen;
    }
    return conn;
}

static void
s_handle_attach (zh_broker_t *self, zh_sock_t sock, const uint8_t *rid, size_t rid_len,
                 zh_conn_t *conn, const zh_body_t *body)
{
    if (sock == ZH_SOCK_BACKEND) {
        s_reject (self, sock, rid, rid_len, 400, "ATTACH is for the frontend or control socket",
                  NULL);
        return;
    }
    if (conn && conn->kind == ZH_CONN_CLIENT) {
        //  A reconnect keeps its proc id: the same BOOTSTRAP again.
        s_send_command (self, sock, rid, rid_len, ZH_BOOTSTRAP, conn->bootstrap,
                        conn->bootstrap_size);
        return;
    }
    if (conn) {
        s_reject (self, sock, rid, rid_len, 400, "this connection is a peer broker", NULL);
        return;
    }
    char label[ZH_LABEL_MAX + 1] = "remote";
    if (body->present & ZH_F_LABEL) {
        zh_error_t err;
        if (zh_label_check (body->label.ptr, body->label.len, &err) != 0) {
            char reason[ZH_ERROR_REASON_MAX + 16];
            snprintf (reason, sizeof reason, "invalid label: %s", err.reason);
            s_reject (self, sock, rid, rid_len, 400, reason, NULL);
            return;
        }
        snprintf (label, sizeof label, "%.*s", (int)body->label.len, body->label.ptr);
    }
    char proc_id[ZH_ID_MAX + 1];
    do
        zh_id_format (proc_id, sizeof proc_id, label, true, s_random_u64 ());
    while (zh_table_lookup (self->routes, proc_id, strlen (proc_id)) ||
           zh_table_lookup (self->gone, proc_id, strlen (proc_id)));

    conn = zh_conn_new (sock, ZH_CONN_CLIENT, rid, rid_len);
    if (!conn) return;
    zh_conn_set_proc_id (conn, proc_id);
    //  Admin: the control socket, or a frontend client whose CURVE key is an
    //  admin key (our ZAP handler sets User-Id to the key).
    conn->admin = sock == ZH_SOCK_CONTROL ||
                  (self->curve &&
                   zh_curve_is_admin (self->curve, zmq_msg_gets (&self->frames[0], "User-Id")));
    conn->last_recv = conn->last_send = self->now;

    char proc_addr[ZH_ADDR_MAX + 1];
    zh_proc_addr_format (proc_addr, sizeof proc_addr, proc_id, self->advertised[0]);
    zh_body_t boot = {.command = ZH_BOOTSTRAP,
                      .present = ZH_F_PROC | ZH_F_HOST | ZH_F_AGENT | ZH_F_HEARTBEAT_MS |
                                 ZH_F_MAX_MSG_BYTES | ZH_F_HWM | ZH_F_INCARNATION,
                      .proc = zh_span_of (proc_addr),
                      .host = zh_span_of (self->advertised[0]),
                      .agent = zh_span_of (self->agent_addr),
                      .heartbeat_ms = (uint64_t)self->config->heartbeat_ms,
                      .max_msg_bytes = (uint64_t)self->config->max_msg_bytes,
                      .hwm = (uint64_t)self->config->hwm,
                      .incarnation = self->incarnation};
    size_t size = 0;
    uint8_t *bytes = zh_body_encode (&boot, &size);
    if (!bytes) {
        zh_conn_destroy (&conn);
        return;
    }
    zh_conn_set_bootstrap (conn, bytes, size);
    zh_table_insert (self->conns[sock], rid, rid_len, conn);
    zh_table_insert (self->routes, proc_id, strlen (proc_id), conn);
    self->gen++;
    s_send_command (self, sock, rid, rid_len, ZH_BOOTSTRAP, bytes, size);
    char q1[96];
    zh_info (
        "attach", "socket=%s proc=%s label=%s lang=%s pid=%lld", sock_names[sock], proc_id, label,
        (body->present & ZH_F_LANG) ? zh_log_quote (q1, sizeof q1, body->lang.ptr, body->lang.len)
                                    : "-",
        (body->present & ZH_F_PID) ? (long long)body->pid : -1LL);
}

static void
s_handle_hello (zh_broker_t *self, zh_sock_t sock, const uint8_t *rid, size_t rid_len,
                zh_conn_t *conn, const zh_body_t *body)
{
    if (sock != ZH_SOCK_FRONTEND) {
        s_reject (self, sock, rid, rid_len, 400, "HELLO is for the frontend", NULL);
        return;
    }
    zh_error_t err;
    if (zh_endpoint_check (body->endpoint.ptr, body->endpoint.len, &err) != 0) {
        char reason[ZH_ERROR_REASON_MAX + 16];
        snprintf (reason, sizeof reason, "HELLO endpoint: %s", err.reason);
        s_reject (self, sock, rid, rid_len, 400, reason, NULL);
        return;
    }
    if (s_is_self (self, body->endpoint.ptr, body->endpoint.len)) {
        s_reject (self, sock, rid, rid_len, 400, "HELLO endpoint is this broker's own", NULL);
        return;
    }
    if (conn && conn->kind != ZH_CONN_PEER) {
        s_reject (self, sock, rid, rid_len, 400, "this connection is an attached client", NULL);
        return;
    }
    if (!conn) {
        conn = zh_conn_new (sock, ZH_CONN_PEER, rid, rid_len);
        if (!conn) return;
        zh_table_insert (self->conns[sock], rid, rid_len, conn);
        self->gen++;
    }
    zh_conn_set_peer_endpoint (conn, body->endpoint.ptr, body->endpoint.len);
    conn->last_recv = conn->last_send = self->now;
    zh_body_t welcome = {.command = ZH_WELCOME,
                         .present = ZH_F_ENDPOINT | ZH_F_INCARNATION,
                         .endpoint = zh_span_of (self->advertised[0]),
                         .incarnation = self->incarnation};
    s_send_body (self, sock, rid, rid_len, &welcome);
    zh_info ("peer", "endpoint=%s incarnation=%llu", conn->peer_endpoint,
             (unsigned long long)body->incarnation);
}

static void
s_handle_bye (zh_broker_t *self, zh_sock_t sock, const uint8_t *rid, size_t rid_len,
              zh_conn_t *conn)
{
    //  Everything the client sent before BYE was routed already (one
    //  connection's messages are handled in order): answer, then detach.
    s_send_bye (self, sock, rid, rid_len, "bye");
    if (conn) s_conn_remove (self, conn, "bye");
}

//  One control command (everything but SEND and RETURN).
static void
s_handle_control (zh_broker_t *self, zh_sock_t sock, const uint8_t *rid, size_t rid_len,
                  zh_conn_t *conn, const zh_header_t *hdr, size_t count, size_t total)
{
    if (count > 2) {
        s_reject (self, sock, rid, rid_len, 400, "extra frames after the body", NULL);
        return;
    }
    zh_body_t body;
    zh_error_t err;
    const uint8_t *data = count == 2 ? (const uint8_t *)zmq_msg_data (&self->frames[1]) : NULL;
    size_t size = count == 2 ? zmq_msg_size (&self->frames[1]) : 0;
    if (zh_body_decode (&body, hdr->command, data, size, &err) != 0) {
        s_reject (self, sock, rid, rid_len, err.code ? err.code : 400, err.reason, NULL);
        return;
    }
    if (total > (size_t)self->config->max_msg_bytes) {
        s_reject (self, sock, rid, rid_len, 413, "command is larger than max_msg_bytes", NULL);
        return;
    }
    switch (hdr->command) {
    case ZH_PING:
        s_send_command (self, sock, rid, rid_len, ZH_PONG, NULL, 0);
        if (conn) conn->last_send = self->now;
        return;
    case ZH_PONG:
        return;
    case ZH_BYE:
        s_handle_bye (self, sock, rid, rid_len, conn);
        return;
    case ZH_ERROR: {
        char name[96], q[ZH_ERROR_REASON_MAX * 2];
        if (conn) zh_conn_name (conn, name, sizeof name);
        zh_info ("peer-error", "socket=%s from=%s code=%lld reason=%s", sock_names[sock],
                 conn ? name : "-", (long long)body.code,
                 zh_log_quote (q, sizeof q, body.reason.ptr, body.reason.len));
        return;
    }
    default:
        break;
    }
    if ((self->shutting_down || self->stopping_children) && hdr->command != ZH_READY) {
        s_reject (self, sock, rid, rid_len, 503, "the broker is shutting down", NULL);
        return;
    }
    switch (hdr->command) {
    case ZH_ATTACH:
        s_handle_attach (self, sock, rid, rid_len, conn, &body);
        break;
    case ZH_HELLO:
        s_handle_hello (self, sock, rid, rid_len, conn, &body);
        break;
    case ZH_READY:
        if (sock != ZH_SOCK_BACKEND)
            s_reject (self, sock, rid, rid_len, 400, "READY is for the backend socket", NULL);
        else
            zh_lifecycle_ready (self, rid, rid_len, &body);
        break;
    default: {
        char reason[64];
        snprintf (reason, sizeof reason, "%s is not accepted by a broker",
                  zh_command_name (hdr->command));
        s_reject (self, sock, rid, rid_len, 400, reason, NULL);
    }
    }
}

//  One message from one socket: self->rid (rid_len bytes) and
//  self->frames[0..count), the first of size0 bytes.
static void
s_handle_message (zh_broker_t *self, zh_sock_t sock, size_t rid_len, size_t size0, size_t count,
                  size_t total, bool overflow)
{
    const uint8_t *rid = (const uint8_t *)zmq_msg_data (&self->rid);
    zh_conn_t *conn = s_conn_lookup (self, sock, rid, rid_len);
    if (conn) conn->last_recv = self->now;
    if (count == 0) {
        s_reject (self, sock, rid, rid_len, 400, "empty message: no header frame", NULL);
        return;
    }
    uint8_t *data = (uint8_t *)zmq_msg_data (&self->frames[0]);
    if (size0 >= ZH_HEADER_SIZE && zh_command_has_head (data[3])) {
        //  SEND/RETURN: zh_head_decode checks the header itself.
        if (!conn) {
            //  §3's order: header (400, 426, 404), then handshake (401).
            zh_head_t head;
            zh_error_t err;
            if (zh_header_check (NULL, data, size0, &err) != 0)
                s_reject (self, sock, rid, rid_len, err.code, err.reason, NULL);
            else {
                bool readable = zh_head_decode (&head, data, size0, NULL) == 0;
                s_reject (self, sock, rid, rid_len, 401, "handshake required before SEND or RETURN",
                          readable ? &head : NULL);
            }
            return;
        }
        if (overflow) {
            s_reject (self, sock, rid, rid_len, 400, "too many payload frames", NULL);
            return;
        }
        s_handle_send (self, conn, data, size0, count, total);
        return;
    }
    zh_header_t hdr;
    zh_error_t err;
    if (zh_header_check (&hdr, data, size0, &err) != 0) {
        s_reject (self, sock, rid, rid_len, err.code, err.reason, NULL);
        return;
    }
    s_handle_control (self, sock, rid, rid_len, conn, &hdr, count, total);
}

//  Read up to ZH_BATCH messages from one socket without blocking.
static void
s_drain_socket (zh_broker_t *self, zh_sock_t sock)
{
    void *socket = self->socks[sock];
    for (int n = 0; n < ZH_BATCH; n++) {
        int rid_len = zmq_msg_recv (&self->rid, socket, ZMQ_DONTWAIT);
        if (rid_len == -1) return;
        size_t count = 0, total = 0, size0 = 0;
        bool overflow = false;
        while (zmq_msg_more (count ? &self->frames[count - 1] : &self->rid)) {
            if (count == ZH_FRAMES_CAP) {
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
        self->last_activity = self->now;
        s_handle_message (self, sock, (size_t)rid_len, size0, count, total, overflow);
    }
}

//  ---------------------------------------------------------------------
//  Liveness

static void
s_tick (zh_broker_t *self)
{
    int64_t hb = self->config->heartbeat_ms;
    int64_t expiry = hb * self->config->liveness;
    for (int s = 0; s < ZH_SOCK_COUNT; s++) {
        zh_conn_t *expired[64];
        size_t n_expired = 0;
        for (zh_conn_t *conn = (zh_conn_t *)zh_table_first (self->conns[s]); conn;
             conn = (zh_conn_t *)zh_table_next (self->conns[s])) {
            if (self->now - conn->last_recv >= expiry) {
                if (conn->kind == ZH_CONN_PROC) {
                    if (!conn->silent_logged)
                        zh_warn ("silent", "proc=%s silent_ms=%lld", conn->proc_id,
                                 (long long)(self->now - conn->last_recv));
                    conn->silent_logged = true;
                } else if (n_expired < 64)
                    expired[n_expired++] = conn;
                continue;
            }
            conn->silent_logged = false;
            if (self->now - conn->last_send >= hb) {
                s_send_command (self, (zh_sock_t)s, conn->rid, conn->rid_len, ZH_PING, NULL, 0);
                conn->last_send = self->now;
            }
        }
        for (size_t i = 0; i < n_expired; i++) {
            s_send_bye (self, (zh_sock_t)s, expired[i]->rid, expired[i]->rid_len,
                        "heartbeat expired");
            s_conn_remove (self, expired[i], "heartbeat-expired");
        }
    }
}

//  ---------------------------------------------------------------------
//  Shutdown

//  Phase 1: stop accepting connections (ATTACH and HELLO get ERROR 503;
//  the frontend stays bound, since unbinding a ROUTER endpoint would also
//  cut the connections it accepted before their BYE), stop every child (at most
//  max_in_flight at once); its end starts phase 2 (zh_broker_begin_drain).
static void
s_begin_shutdown (zh_broker_t *self, const char *why)
{
    if (self->stopping_children || self->shutting_down) return;
    self->stopping_children = true;
    zh_info ("shutdown", "reason=%s live_procs=%zu", why, zh_procs_live_count (self->procs));
    if (self->stop_all_pending) return; //  a shutdown op's bulk stop is already running
    zh_job_t *job = (zh_job_t *)calloc (1, sizeof (zh_job_t));
    if (!job) {
        zh_broker_begin_drain (self, why);
        return;
    }
    job->shutdown = true;
    self->stop_all_pending = true;
    zh_procs_stop_all (self->procs, self->config->terminate_timeout_ms, self->config->max_in_flight,
                       "broker shutdown", self->now, job);
}

//  Phase 2: BYE to every connection; SENDs from now on are returned
//  SHUTDOWN; the loop ends at the linger deadline or when all is quiet.
void
zh_broker_begin_drain (zh_broker_t *self, const char *why)
{
    if (self->shutting_down) return;
    self->stopping_children = true;
    self->shutting_down = true;
    self->shutdown_deadline = self->now + self->config->linger_ms;
    self->last_activity = self->now;
    zh_info ("drain", "reason=%s linger_ms=%lld", why, (long long)self->config->linger_ms);
    for (int s = 0; s < ZH_SOCK_COUNT; s++)
        for (zh_conn_t *conn = (zh_conn_t *)zh_table_first (self->conns[s]); conn;
             conn = (zh_conn_t *)zh_table_next (self->conns[s]))
            s_send_bye (self, (zh_sock_t)s, conn->rid, conn->rid_len, "shutdown");
}

static void
s_handle_signals (zh_broker_t *self)
{
    struct signalfd_siginfo info;
    while (read (self->signal_fd, &info, sizeof info) == (ssize_t)sizeof info) {
        if (info.ssi_signo == SIGTERM || info.ssi_signo == SIGINT)
            s_begin_shutdown (self, info.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
        else if (info.ssi_signo == SIGHUP)
            zh_info ("signal", "signal=SIGHUP action=ignored");
        else if (info.ssi_signo == SIGCHLD)
            zh_procs_reap (self->procs, self->now);
    }
}

//  ---------------------------------------------------------------------
//  The loop

#define ZH_POLL_MAX (ZH_SOCK_COUNT + 1 + 512)

int
zh_broker_run (zh_broker_t *self)
{
    zmq_pollitem_t items[ZH_POLL_MAX];
    int fds[ZH_POLL_MAX];
    int64_t tick_ms = self->config->heartbeat_ms / 4;
    if (tick_ms < 5) tick_ms = 5;
    self->now = zclock_mono ();
    self->next_tick = self->now + tick_ms;
    zh_procs_reap (self->procs, self->now); //  a --spawn child may have died already
    if (self->pinned) {
        char cpus[256];
        zh_cpu_list_format (&self->pin_cpus, cpus, sizeof cpus);
        int rc = pthread_setaffinity_np (pthread_self (), sizeof self->pin_cpus, &self->pin_cpus);
        if (rc == 0)
            zh_info ("cpu", "pinned=%s", cpus);
        else //  e.g. a cgroup took the CPUs away since start: run unpinned
            zh_warn ("cpu", "pinned=none wanted=%s error=\"%s\"", cpus, strerror (rc));
    }

    while (true) {
        self->now = zclock_mono ();
        if (self->stop_requested) s_begin_shutdown (self, "stop");
        if (self->shutting_down) {
            //  Done at the deadline, or once the connections went quiet.
            int64_t since = self->now - (self->shutdown_deadline - self->config->linger_ms);
            bool quiet = self->now - self->last_activity >= 50 && since >= 50;
            if (self->now >= self->shutdown_deadline || quiet) break;
        }
        if (self->now >= self->next_tick) {
            //  Reap here too: embedded, SIGCHLD may go to another thread.
            zh_procs_reap (self->procs, self->now);
            s_tick (self);
            self->next_tick = self->now + tick_ms;
        }
        int64_t timeout = self->next_tick - self->now;
        int64_t procs_due = zh_procs_tick (self->procs, self->now);
        if (procs_due >= 0 && procs_due < timeout) timeout = procs_due;
        if (self->shutting_down && timeout > 10) timeout = 10;
        if (timeout > 100)
            timeout = 100; //  zh_broker_stop from another thread is seen within 100 ms
        if (timeout < 0) timeout = 0;

        size_t n = 0;
        for (int s = 0; s < ZH_SOCK_COUNT; s++)
            items[n++] = (zmq_pollitem_t){self->socks[s], 0, ZMQ_POLLIN, 0};
        items[n++] = (zmq_pollitem_t){NULL, self->signal_fd, ZMQ_POLLIN, 0};
        size_t zap_item = n;
        if (self->curve)
            items[n++] = (zmq_pollitem_t){zh_curve_zap_socket (self->curve), 0, ZMQ_POLLIN, 0};
        size_t n_fds = zh_procs_fds (self->procs, fds, ZH_POLL_MAX - n);
        for (size_t i = 0; i < n_fds; i++)
            items[n++] = (zmq_pollitem_t){NULL, fds[i], ZMQ_POLLIN, 0};

        int rc = zmq_poll (items, (int)n, (long)timeout);
        if (rc == -1) {
            if (errno == EINTR) continue;
            zh_err ("poll", "error=%s", zmq_strerror (errno));
            return 1;
        }
        self->now = zclock_mono ();
        for (int s = 0; s < ZH_SOCK_COUNT; s++)
            if (items[s].revents & ZMQ_POLLIN) s_drain_socket (self, (zh_sock_t)s);
        if (items[ZH_SOCK_COUNT].revents & ZMQ_POLLIN) s_handle_signals (self);
        if (self->curve && (items[zap_item].revents & ZMQ_POLLIN)) zh_curve_handle (self->curve);
        size_t fd_items = zap_item + (self->curve ? 1 : 0);
        for (size_t i = 0; i < n_fds; i++)
            if (items[fd_items + i].revents & (ZMQ_POLLIN | ZMQ_POLLERR))
                zh_procs_read_fd (self->procs, fds[i]);
    }
    zh_info ("exit", "routed=%llu code=0", (unsigned long long)self->stats.routed);
    return 0;
}

int
zh_broker_spawn_thread (zh_broker_t *self, const char *name, zh_thread_main_fn *fn, void *arg,
                        int64_t ready_timeout_ms, zh_error_t *err)
{
    self->now = zclock_mono ();
    return zh_procs_spawn_thread (self->procs, name, fn, arg, ready_timeout_ms, self->now, err)
               ? 0
               : -1;
}

void
zh_broker_stop (zh_broker_t *self)
{
    self->stop_requested = 1;
}

//  ---------------------------------------------------------------------
//  Start-up: runtime dir, sockets, endpoints

int
zh_broker_block_signals (void)
{
    sigset_t set;
    sigemptyset (&set);
    sigaddset (&set, SIGTERM);
    sigaddset (&set, SIGINT);
    sigaddset (&set, SIGHUP);
    sigaddset (&set, SIGCHLD);
    return pthread_sigmask (SIG_BLOCK, &set, NULL) == 0 ? 0 : -1;
}

//  Make the runtime dir (0700, ours) and take its lock. A live broker
//  holding the lock is an error; a dead one's socket files are removed.
static int
s_take_runtime_dir (zh_broker_t *self, zh_error_t *err)
{
    const char *dir = self->config->runtime_dir;
    if (mkdir (dir, 0700) != 0 && errno != EEXIST)
        return zh_error_set (err, 1, 0, "--runtime-dir %s: cannot create: %s", dir,
                             strerror (errno));
    struct stat st;
    if (stat (dir, &st) != 0 || !S_ISDIR (st.st_mode))
        return zh_error_set (err, 1, 0, "--runtime-dir %s: not a directory", dir);
    if (st.st_uid != geteuid ())
        return zh_error_set (err, 1, 0, "--runtime-dir %s: owned by uid %d, not by us (uid %d)",
                             dir, (int)st.st_uid, (int)geteuid ());
    if ((st.st_mode & 0777) != 0700 && chmod (dir, 0700) != 0)
        return zh_error_set (err, 1, 0, "--runtime-dir %s: cannot set mode 0700: %s", dir,
                             strerror (errno));
    self->runtime_dir = strdup (dir);
    if (asprintf (&self->pid_path, "%s/broker.pid", dir) < 0)
        return zh_error_set (err, 1, 0, "out of memory");
    self->pid_fd = open (self->pid_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (self->pid_fd < 0)
        return zh_error_set (err, 1, 0, "%s: %s", self->pid_path, strerror (errno));
    if (flock (self->pid_fd, LOCK_EX | LOCK_NB) != 0) {
        char pid[32] = "";
        ssize_t n = pread (self->pid_fd, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = 0;
        pid[strcspn (pid, "\n")] = 0;
        close (self->pid_fd);
        self->pid_fd = -1;
        return zh_error_set (err, 1, 0,
                             "another broker (pid %s) is running with runtime dir %s; stop it "
                             "or use another --runtime-dir",
                             pid[0] ? pid : "?", dir);
    }
    char line[32];
    int len = snprintf (line, sizeof line, "%d\n", (int)getpid ());
    if (ftruncate (self->pid_fd, 0) != 0 || pwrite (self->pid_fd, line, (size_t)len, 0) != len)
        return zh_error_set (err, 1, 0, "%s: cannot write: %s", self->pid_path, strerror (errno));
    //  We hold the lock, so any socket file left here is a dead broker's.
    char path[4096];
    snprintf (path, sizeof path, "%s/backend", dir);
    unlink (path);
    snprintf (path, sizeof path, "%s/control", dir);
    unlink (path);
    return 0;
}

static void *
s_router (zh_broker_t *self, bool handover)
{
    void *socket = zmq_socket (self->ctx, ZMQ_ROUTER);
    if (!socket) return NULL;
    int one = 1, hwm = (int)self->config->hwm, zero = 0;
    //  libzmq drops a connection whose frame exceeds MAXMSGSIZE; keep that
    //  well above max_msg_bytes so oversize messages get TOO_LARGE / 413.
    int64_t max = self->config->max_msg_bytes * 2 + 65536;
    zmq_setsockopt (socket, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    if (handover) zmq_setsockopt (socket, ZMQ_ROUTER_HANDOVER, &one, sizeof one);
    zmq_setsockopt (socket, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt (socket, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt (socket, ZMQ_MAXMSGSIZE, &max, sizeof max);
    zmq_setsockopt (socket, ZMQ_LINGER, &zero, sizeof zero);
    return socket;
}

//  Advertise a bound endpoint: tcp://0.0.0.0:P (from tcp://*:P) becomes
//  tcp://<hostname>:P.
static char *
s_advertise_of (const char *bound)
{
    const char *wild[] = {"tcp://0.0.0.0:", "tcp://[::]:", "tcp://*:"};
    for (size_t i = 0; i < sizeof wild / sizeof wild[0]; i++) {
        size_t n = strlen (wild[i]);
        if (strncmp (bound, wild[i], n) == 0) {
            char host[256] = "localhost";
            gethostname (host, sizeof host - 1);
            char *out = NULL;
            if (asprintf (&out, "tcp://%s:%s", host, bound + n) < 0) return NULL;
            return out;
        }
    }
    return strdup (bound);
}

static void
s_add_self (zh_broker_t *self, const char *ep)
{
    if (self->self_count < ZH_SELF_MAX && !s_is_self (self, ep, strlen (ep))) {
        self->self_eps[self->self_count] = ep;
        self->self_ep_lens[self->self_count] = strlen (ep);
        self->self_count++;
    }
}

static int
s_bind_sockets (zh_broker_t *self, zh_error_t *err)
{
    const zh_config_t *config = self->config;
    self->socks[ZH_SOCK_FRONTEND] = s_router (self, true);
    self->socks[ZH_SOCK_BACKEND] = s_router (self, false);
    self->socks[ZH_SOCK_CONTROL] = s_router (self, false);
    for (int s = 0; s < ZH_SOCK_COUNT; s++)
        if (!self->socks[s])
            return zh_error_set (err, 1, 0, "cannot create sockets: %s", zmq_strerror (errno));

    if (self->curve && zh_curve_apply (self->curve, self->socks[ZH_SOCK_FRONTEND]) != 0)
        return zh_error_set (err, 1, 0,
                             "--curve-secret: cannot make the frontend a CURVE server: %s",
                             zmq_strerror (errno));
    for (size_t i = 0; i < config->frontend_count; i++) {
        const char *ep = config->frontends[i];
        if (zmq_bind (self->socks[ZH_SOCK_FRONTEND], ep) != 0)
            return zh_error_set (err, 1, 0, "--frontend %s: cannot bind: %s%s", ep,
                                 zmq_strerror (errno),
                                 errno == EADDRINUSE ? " (is another broker running?)" : "");
        char last[1024];
        size_t last_len = sizeof last;
        zmq_getsockopt (self->socks[ZH_SOCK_FRONTEND], ZMQ_LAST_ENDPOINT, last, &last_len);
        self->bound[self->bound_count++] = strdup (last);
    }
    if (asprintf (&self->backend_ipc, "ipc://%s/backend", self->runtime_dir) < 0 ||
        asprintf (&self->control_ipc, "ipc://%s/control", self->runtime_dir) < 0 ||
        asprintf (&self->backend_inproc, "inproc://zhost-backend-%d",
                  __atomic_fetch_add (&inproc_counter, 1, __ATOMIC_SEQ_CST)) < 0)
        return zh_error_set (err, 1, 0, "out of memory");
    if (strlen (self->backend_ipc) - 6 >= 108)
        return zh_error_set (err, 1, 0,
                             "--runtime-dir %s: path too long for an ipc socket (max ~100 bytes)",
                             self->runtime_dir);
    if (zmq_bind (self->socks[ZH_SOCK_BACKEND], self->backend_ipc) != 0)
        return zh_error_set (err, 1, 0, "%s: cannot bind: %s", self->backend_ipc,
                             zmq_strerror (errno));
    if (zmq_bind (self->socks[ZH_SOCK_BACKEND], self->backend_inproc) != 0)
        return zh_error_set (err, 1, 0, "%s: cannot bind: %s", self->backend_inproc,
                             zmq_strerror (errno));
    if (zmq_bind (self->socks[ZH_SOCK_CONTROL], self->control_ipc) != 0)
        return zh_error_set (err, 1, 0, "%s: cannot bind: %s", self->control_ipc,
                             zmq_strerror (errno));

    //  Advertised endpoints: --advertise, else each bound frontend.
    if (config->advertise_count) {
        for (size_t i = 0; i < config->advertise_count; i++)
            self->advertised[self->advertised_count++] = strdup (config->advertise[i]);
    } else
        for (size_t i = 0; i < self->bound_count; i++)
            self->advertised[self->advertised_count++] = s_advertise_of (self->bound[i]);
    for (size_t i = 0; i < self->advertised_count; i++) {
        zh_error_t ep_err;
        if (!self->advertised[i]) return zh_error_set (err, 1, 0, "out of memory");
        if (zh_endpoint_check (self->advertised[i], strlen (self->advertised[i]), &ep_err) != 0)
            return zh_error_set (err, 2, 0, "--advertise %s: %s", self->advertised[i],
                                 ep_err.reason);
        s_add_self (self, self->advertised[i]);
    }
    for (size_t i = 0; i < self->bound_count; i++)
        if (strncmp (self->bound[i], "tcp://0.0.0.0:", 14) != 0 &&
            strncmp (self->bound[i], "tcp://[::]:", 11) != 0)
            s_add_self (self, self->bound[i]);
    return 0;
}

//  --cpu: the CPUs of the list the broker may use (its start-up affinity
//  bounds them) become libzmq's threads' affinity now, before any socket
//  starts them; zh_broker_run pins the loop's thread. Children keep
//  start_cpus (zh_procs_set_child_cpus). 0, or -1 with err (exit 2).
static int
s_pin_setup (zh_broker_t *self, zh_error_t *err)
{
    cpu_set_t wanted;
    char have[256], asked[256], using[256];
    if (zh_cpu_list_parse (self->config->cpus, &wanted, err) != 0) return -1;
    if (sched_getaffinity (0, sizeof self->start_cpus, &self->start_cpus) != 0)
        return zh_error_set (err, 1, 0, "--cpu: sched_getaffinity: %s", strerror (errno));
    CPU_AND (&self->pin_cpus, &wanted, &self->start_cpus);
    if (CPU_COUNT (&self->pin_cpus) == 0)
        return zh_error_set (err, 2, 0,
                             "--cpu: none of %s is available to the broker (it may use %s)",
                             zh_cpu_list_format (&wanted, asked, sizeof asked),
                             zh_cpu_list_format (&self->start_cpus, have, sizeof have));
    if (!CPU_EQUAL (&self->pin_cpus, &wanted))
        zh_warn ("cpu", "asked=%s available=%s using=%s",
                 zh_cpu_list_format (&wanted, asked, sizeof asked),
                 zh_cpu_list_format (&self->start_cpus, have, sizeof have),
                 zh_cpu_list_format (&self->pin_cpus, using, sizeof using));
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
        if (CPU_ISSET (cpu, &self->pin_cpus) &&
            zmq_ctx_set (self->ctx, ZMQ_THREAD_AFFINITY_CPU_ADD, cpu) != 0)
            return zh_error_set (err, 1, 0, "--cpu: libzmq refused CPU %d: %s", cpu,
                                 zmq_strerror (errno));
    self->pinned = true;
    return 0;
}

zh_broker_t *
zh_broker_new (const zh_config_t *config, zh_error_t *err)
{
    zh_broker_t *self = (zh_broker_t *)calloc (1, sizeof (zh_broker_t));
    if (!self) return NULL;
    self->config = config;
    self->pid_fd = -1;
    self->signal_fd = -1;
    self->incarnation = s_random_u64 ();
    zmq_msg_init (&self->rid);
    for (int i = 0; i < ZH_FRAMES_CAP; i++)
        zmq_msg_init (&self->frames[i]);
    for (int s = 0; s < ZH_SOCK_COUNT; s++)
        self->conns[s] = zh_table_new ();
    self->routes = zh_table_new ();
    self->gone = zh_table_new ();

    if (config->frontend_count == 0) {
        zh_error_set (err, 2, 0, "--frontend: at least one endpoint is needed");
        goto fail;
    }
    if (s_take_runtime_dir (self, err) != 0) goto fail;
    self->ctx = zmq_ctx_new ();
    if (!self->ctx) {
        zh_error_set (err, 1, 0, "cannot create a ZeroMQ context: %s", zmq_strerror (errno));
        goto fail;
    }
    zmq_ctx_set (self->ctx, ZMQ_BLOCKY, 0);
    if (config->cpus && s_pin_setup (self, err) != 0) goto fail;
    if (config->curve_secret || config->curve_allow || config->curve_admin) {
        self->curve = zh_curve_new (self->ctx, config->curve_secret, config->curve_allow,
                                    config->curve_admin, err);
        if (!self->curve) goto fail;
    }
    if (s_bind_sockets (self, err) != 0) goto fail;
    zh_actor_addr_format (self->agent_addr, sizeof self->agent_addr, "host_agent", "service",
                          self->advertised[0]);
    zh_proc_addr_format (self->service_addr, sizeof self->service_addr, "service",
                         self->advertised[0]);

    sigset_t set;
    sigemptyset (&set);
    sigaddset (&set, SIGTERM);
    sigaddset (&set, SIGINT);
    sigaddset (&set, SIGHUP);
    sigaddset (&set, SIGCHLD);
    self->signal_fd = signalfd (-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (self->signal_fd < 0) {
        zh_error_set (err, 1, 0, "signalfd: %s", strerror (errno));
        goto fail;
    }
    self->procs =
        zh_procs_new (self->ctx, self->backend_ipc, self->backend_inproc, self->advertised[0],
                      config->heartbeat_ms, zh_lifecycle_events (self));
    if (!self->procs) {
        zh_error_set (err, 1, 0, "cannot create the process manager");
        goto fail;
    }
    if (self->pinned) zh_procs_set_child_cpus (self->procs, &self->start_cpus);
    self->now = zclock_mono ();
    if (zh_lifecycle_spawn_config (self, err) != 0) goto fail;
    if (self->curve) {
        char q[64];
        const char *key = zh_curve_public_txt (self->curve);
        zh_info ("security", "curve=on public_key=%s",
                 zh_log_quote (q, sizeof q, key, strlen (key)));
    } else
        zh_warn ("security", "curve=off note=\"the frontend is open to anyone who can reach it: "
                             "use it on a trusted network only\"");
    for (size_t i = 0; i < self->bound_count; i++)
        zh_info ("listen", "frontend=%s advertise=%s", self->bound[i],
                 self->advertised[i < self->advertised_count ? i : 0]);
    zh_info ("listen", "backend=%s control=%s incarnation=%llu", self->backend_ipc,
             self->control_ipc, (unsigned long long)self->incarnation);
    return self;
fail:
    zh_broker_destroy (&self);
    return NULL;
}

void
zh_broker_print_endpoints (zh_broker_t *self, FILE *out)
{
    for (size_t i = 0; i < self->bound_count; i++)
        fprintf (out, "frontend %s\n", self->bound[i]);
    for (size_t i = 0; i < self->advertised_count; i++)
        fprintf (out, "advertise %s\n", self->advertised[i]);
    fprintf (out, "backend %s\n", self->backend_ipc);
    fprintf (out, "control %s\n", self->control_ipc);
    fprintf (out, "ready\n");
    fflush (out);
}

static void
s_destroy_conns (zh_table_t *table)
{
    zh_conn_t *conns[1024];
    while (zh_table_size (table)) {
        size_t n = 0;
        for (zh_conn_t *c = (zh_conn_t *)zh_table_first (table); c && n < 1024;
             c = (zh_conn_t *)zh_table_next (table))
            conns[n++] = c;
        for (size_t i = 0; i < n; i++) {
            zh_table_delete (table, conns[i]->rid, conns[i]->rid_len);
            zh_conn_destroy (&conns[i]);
        }
    }
}

void
zh_broker_destroy (zh_broker_t **self_p)
{
    if (!self_p || !*self_p) return;
    zh_broker_t *self = *self_p;
    //  Children first: no child outlives the broker.
    zh_procs_destroy (&self->procs);
    //  Queued outbound messages (BYEs, last deliveries) get the linger.
    int linger = (int)self->config->linger_ms;
    for (int s = 0; s < ZH_SOCK_COUNT; s++)
        if (self->socks[s]) {
            zmq_setsockopt (self->socks[s], ZMQ_LINGER, &linger, sizeof linger);
            zmq_close (self->socks[s]);
        }
    zh_curve_destroy (&self->curve);
    if (self->ctx) zmq_ctx_term (self->ctx);
    for (int s = 0; s < ZH_SOCK_COUNT; s++) {
        if (self->conns[s]) s_destroy_conns (self->conns[s]);
        zh_table_destroy (&self->conns[s]);
    }
    zh_table_destroy (&self->routes);
    zh_table_destroy (&self->gone);
    for (size_t i = 0; i < self->gone_count; i++)
        free (self->gone_ring[(self->gone_head + i) % ZH_GONE_MAX]);
    zmq_msg_close (&self->rid);
    for (int i = 0; i < ZH_FRAMES_CAP; i++)
        zmq_msg_close (&self->frames[i]);
    for (size_t i = 0; i < self->bound_count; i++)
        free (self->bound[i]);
    for (size_t i = 0; i < self->advertised_count; i++)
        free (self->advertised[i]);
    if (self->signal_fd >= 0) close (self->signal_fd);
    if (self->pid_fd >= 0) {
        char path[4096];
        snprintf (path, sizeof path, "%s/backend", self->runtime_dir);
        unlink (path);
        snprintf (path, sizeof path, "%s/control", self->runtime_dir);
        unlink (path);
        unlink (self->pid_path);
        close (self->pid_fd);
    }
    free (self->backend_ipc);
    free (self->backend_inproc);
    free (self->control_ipc);
    free (self->runtime_dir);
    free (self->pid_path);
    free (self);
    *self_p = NULL;
}
