/*  zhost_actor.c — actors, ports, dispatch and posting.

    Where it sits: between the loop (zhost_proc.c) and the program's
    handlers. A SEND read by the loop comes here: dest actor → port →
    handler, or a RETURN this proc makes (NO_SUCH_ACTOR / NO_SUCH_PORT,
    only when the SEND asked for it). A RETURN read by the loop comes here
    too: a request's own RETURN completes the request (zhost_request.c);
    any other goes to the dest actor's undeliverable handler. Posts go
    the other way: head (+ payload frames) → zhost_send_frames.

    AC-1 (handler state is copied first): a handler may open and close
    ports, so the port table may move under it; dispatch copies the
    handler and its arg, and removes a once-port, before the call.

    AC-2 (meta from the wire is checked before it is read): the broker
    forwards meta unread but for its first byte, so a SEND's meta may
    declare counts it does not hold (an array32 of 2^32 elements in eight
    bytes), and msgpack-c reserves a container's elements as soon as it
    reads the count. Meta that is not exactly one well-formed map
    (zh_msgpack_check) is read as the empty map: the message is still
    delivered, with no meta, reply, seq or headers, and logged. Only
    checked meta reaches msgpack-c (zh_msgpack_unpack) or a handler.
*/
#include <errno.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zh_pack.h"
#include "zhost_int.h"

#define S_SMALL_FRAMES 16

//  ---------------------------------------------------------------------
//  Actors

zhost_actor_t *
zhost_proc_actor (zhost_proc_t *self, const char *name)
{
    for (size_t i = 0; i < self->actor_count; i++)
        if (strcmp (self->actors[i]->name, name) == 0) return self->actors[i];
    return NULL;
}

static zhost_actor_t *
s_actor_lookup (zhost_proc_t *self, const char *name, size_t len)
{
    for (size_t i = 0; i < self->actor_count; i++) {
        zhost_actor_t *actor = self->actors[i];
        if (strlen (actor->name) == len && memcmp (actor->name, name, len) == 0) return actor;
    }
    return NULL;
}

zhost_actor_t *
zhost_proc_spawn_actor (zhost_proc_t *self, const char *name,
                        const zhost_actor_handlers_t *handlers, void *arg)
{
    zh_id_t id;
    zh_error_t perr;
    if (!name || zh_id_parse (&id, name, strlen (name), &perr) != 0) {
        zh_warn ("spawn-actor", "proc=%s name=%s reason=\"%s\"", self->addr, name ? name : "-",
                 name ? perr.reason : "no name");
        return NULL;
    }
    if (zhost_proc_actor (self, name)) {
        zh_warn ("spawn-actor", "proc=%s name=%s reason=\"an actor of that name exists\"",
                 self->addr, name);
        return NULL;
    }
    zhost_actor_t *actor = (zhost_actor_t *)calloc (1, sizeof (zhost_actor_t));
    if (!actor) return NULL;
    actor->proc = self;
    snprintf (actor->name, sizeof actor->name, "%s", name);
    if (zh_actor_addr_format (actor->addr, sizeof actor->addr, name, self->proc_id, self->host) <
        0) {
        free (actor);
        return NULL;
    }
    if (handlers) actor->handlers = *handlers;
    actor->arg = arg;
    if (self->actor_count == self->actor_cap) {
        size_t cap = self->actor_cap ? self->actor_cap * 2 : 4;
        zhost_actor_t **grown =
            (zhost_actor_t **)realloc (self->actors, cap * sizeof (zhost_actor_t *));
        if (!grown) {
            free (actor);
            return NULL;
        }
        self->actors = grown;
        self->actor_cap = cap;
    }
    self->actors[self->actor_count++] = actor;
    return actor;
}

void
zhost_actor_destroy (zhost_actor_t **self_p)
{
    if (!*self_p) return;
    free ((*self_p)->ports);
    free (*self_p);
    *self_p = NULL;
}

const char *
zhost_actor_name (zhost_actor_t *self)
{
    return self->name;
}

const char *
zhost_actor_addr (zhost_actor_t *self)
{
    return self->addr;
}

zhost_proc_t *
zhost_actor_proc (zhost_actor_t *self)
{
    return self->proc;
}

int
zhost_actor_port_addr (zhost_actor_t *self, uint64_t port, char *buf, size_t size)
{
    return zh_port_addr_format (buf, size, self->name, self->proc->proc_id, port, self->proc->host);
}

void
zhost_note_result (zhost_actor_t *actor, int rc, const char *what)
{
    if (rc == 0) return;
    actor->proc->failed = true;
    zh_warn ("handler-failed", "actor=%s handler=%s rc=%d", actor->addr, what, rc);
}

//  Each actor's on_stop, in spawn order, once.
void
zhost_actors_stop (zhost_proc_t *self)
{
    for (size_t i = 0; i < self->actor_count; i++) {
        zhost_actor_t *actor = self->actors[i];
        zhost_stop_fn *on_stop = actor->handlers.on_stop;
        actor->handlers.on_stop = NULL;
        if (on_stop) zhost_note_result (actor, on_stop (actor, actor->arg), "on_stop");
    }
}

//  ---------------------------------------------------------------------
//  Ports

static zhost_port_t *
s_port_find (zhost_actor_t *self, uint64_t number)
{
    for (size_t i = 0; i < self->port_count; i++)
        if (self->ports[i].number == number) return &self->ports[i];
    return NULL;
}

static int
s_port_add (zhost_actor_t *self, uint64_t number, zhost_handler_fn *handler, void *arg, bool once)
{
    if (!handler || s_port_find (self, number)) return -1;
    if (self->port_count == self->port_cap) {
        size_t cap = self->port_cap ? self->port_cap * 2 : 4;
        zhost_port_t *grown = (zhost_port_t *)realloc (self->ports, cap * sizeof (zhost_port_t));
        if (!grown) return -1;
        self->ports = grown;
        self->port_cap = cap;
    }
    self->ports[self->port_count++] = (zhost_port_t){number, handler, arg, once};
    return 0;
}

int
zhost_actor_open_port (zhost_actor_t *self, uint64_t port, zhost_handler_fn *handler, void *arg)
{
    if (port >= ZHOST_ONCE_PORT_BASE) return -1;
    return s_port_add (self, port, handler, arg, false);
}

uint64_t
zhost_actor_open_once (zhost_actor_t *self, zhost_handler_fn *handler, void *arg)
{
    uint64_t number = self->proc->next_once++;
    return s_port_add (self, number, handler, arg, true) == 0 ? number : 0;
}

int
zhost_actor_close_port (zhost_actor_t *self, uint64_t port)
{
    zhost_port_t *found = s_port_find (self, port);
    if (!found) return -1;
    *found = self->ports[--self->port_count]; //  order does not matter
    return 0;
}

//  ---------------------------------------------------------------------
//  Messages as handlers see them

//  Re-pack meta.headers as its own msgpack bytes (NULL if absent).
static uint8_t *
s_headers (const uint8_t *meta, size_t meta_len, size_t *size)
{
    static const char key[] = "\xa7headers";
    if (!meta || !memmem (meta, meta_len, key, sizeof key - 1)) return NULL;
    msgpack_zone zone;
    if (!msgpack_zone_init (&zone, 1024)) return NULL;
    msgpack_object root;
    uint8_t *out = NULL;
    //  AC-2: the guard, then msgpack-c.
    if (zh_msgpack_unpack (meta, meta_len, &zone, &root) == 0 && root.type == MSGPACK_OBJECT_MAP) {
        for (uint32_t i = 0; i < root.via.map.size; i++) {
            msgpack_object_kv *kv = &root.via.map.ptr[i];
            if (kv->key.type != MSGPACK_OBJECT_STR || kv->key.via.str.size != 7 ||
                memcmp (kv->key.via.str.ptr, "headers", 7) != 0 ||
                kv->val.type != MSGPACK_OBJECT_MAP)
                continue;
            msgpack_sbuffer sbuf;
            msgpack_sbuffer_init (&sbuf);
            msgpack_packer pk;
            msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
            msgpack_pack_object (&pk, kv->val);
            out = (uint8_t *)sbuf.data; //  taken over: freed with free ()
            *size = sbuf.size;
            break;
        }
    }
    msgpack_zone_destroy (&zone);
    return out;
}

static void
s_span_copy (char *buf, size_t size, const void *ptr, size_t len)
{
    if (len >= size) len = size - 1;
    if (len) memcpy (buf, ptr, len);
    buf[len] = 0;
}

int
zhost_msgbuf_fill (zhost_msgbuf_t *buf, const zh_head_t *head, const uint8_t *meta, size_t meta_len,
                   zmq_msg_t *frames, size_t count)
{
    memset (&buf->msg, 0, sizeof buf->msg);
    buf->headers = NULL;
    zhost_msg_t *msg = &buf->msg;
    s_span_copy (buf->dest, sizeof buf->dest, head->dest, head->dest_len);
    s_span_copy (buf->src, sizeof buf->src, head->src, head->src_len);
    msg->dest = buf->dest;
    msg->src = buf->src;
    msg->ttl = head->hdr.ttl;
    msg->flags = head->hdr.flags;
    //  AC-2: unreadable meta is the empty map.
    if (meta_len && (!zh_msgpack_is_map (meta[0]) || zh_msgpack_check (meta, meta_len) != 0)) {
        char qd[ZH_ADDR_MAX + 8], qs[ZH_ADDR_MAX + 8];
        zh_warn ("bad-meta",
                 "dest=%s src=%s meta_bytes=%zu reason=\"not one well-formed msgpack map: read "
                 "as empty\"",
                 zh_log_quote (qd, sizeof qd, buf->dest, strlen (buf->dest)),
                 zh_log_quote (qs, sizeof qs, buf->src, strlen (buf->src)), meta_len);
        meta = NULL;
        meta_len = 0;
    }
    msg->meta = meta_len ? meta : NULL;
    msg->meta_size = meta_len;
    zh_span_t reply;
    if (meta_len && zh_meta_find_reply (meta, meta_len, &reply) == 0 && reply.len <= ZH_ADDR_MAX) {
        s_span_copy (buf->reply, sizeof buf->reply, reply.ptr, reply.len);
        msg->reply = buf->reply;
    }
    if (meta_len && zh_meta_find_seq (meta, meta_len, &msg->seq) == 0) msg->has_seq = true;
    buf->headers = s_headers (meta, meta_len, &msg->headers_size);
    msg->headers = buf->headers;
    bool has_inline = head->hdr.flags & ZH_FLAG_INLINE;
    size_t n = (has_inline ? 1 : 0) + (count - 1);
    buf->parts = n <= 8 ? buf->small : (zhost_part_t *)malloc (n * sizeof (zhost_part_t));
    if (!buf->parts) return -1;
    size_t k = 0;
    if (has_inline) buf->parts[k++] = (zhost_part_t){head->inline_part, head->inline_len};
    for (size_t i = 1; i < count; i++)
        buf->parts[k++] = (zhost_part_t){zmq_msg_data (&frames[i]), zmq_msg_size (&frames[i])};
    msg->parts = buf->parts;
    msg->part_count = n;
    return 0;
}

void
zhost_msgbuf_release (zhost_msgbuf_t *buf)
{
    if (buf->parts && buf->parts != buf->small) free (buf->parts);
    buf->parts = NULL;
    free (buf->headers);
    buf->headers = NULL;
}

//  ---------------------------------------------------------------------
//  RETURNs this proc makes

//  Bounce an undeliverable SEND to its src, built as the broker does (see
//  zh_broker_bounce): dest = original src, src = this proc, meta from
//  zh_return_meta_encode, INLINE kept, payload frames moved. Only when the
//  SEND asked for it (RETURN_UNDELIVERABLE); else dropped and counted.
static void
s_bounce (zhost_proc_t *self, zmq_msg_t *frames, size_t count, const zh_head_t *head, zh_rc_t rc,
          const char *reason)
{
    if (!(head->hdr.flags & ZH_FLAG_RETURN_UNDELIVERABLE)) {
        self->dropped++;
        zh_debug ("dropped", "proc=%s dest=%.*s code=%s", self->addr, (int)head->dest_len,
                  (const char *)head->dest, zh_rc_name (rc));
        return;
    }
    size_t meta_size = 0;
    uint8_t *meta = zh_return_meta_encode (NULL, 0, zh_rc_name (rc), reason, self->addr,
                                           (const char *)head->dest, head->dest_len, head->meta,
                                           head->meta_len, &meta_size);
    if (!meta) return;
    uint8_t flags = head->hdr.flags & ZH_FLAG_INLINE;
    size_t src_len = strlen (self->addr);
    size_t inline_len = flags ? head->inline_len : 0;
    size_t size = zh_head_size (head->src_len, src_len, meta_size, inline_len);
    zmq_msg_t ret;
    zmq_msg_init_size (&ret, size);
    long written = zh_head_write ((uint8_t *)zmq_msg_data (&ret), size, ZH_RETURN, ZH_TTL_DEFAULT,
                                  flags, (const char *)head->src, head->src_len, self->addr,
                                  src_len, meta, meta_size, head->inline_part, inline_len);
    free (meta);
    if (written < 0) {
        zmq_msg_close (&ret);
        return;
    }
    zmq_msg_move (&frames[0], &ret); //  the head is read: it may go now
    zmq_msg_close (&ret);
    if (zhost_send_frames (self, frames, count) != 0)
        zh_warn ("return-failed", "proc=%s code=%s", self->addr, zh_rc_name (rc));
}

//  ---------------------------------------------------------------------
//  Dispatch

//  The actor a SEND's dest names, and its port number: from the LZ-1
//  cache when the dest bytes are the last ones seen, else parsed (and
//  cached when the actor exists: one spawned later must be found). NULL
//  when the dest is not a port address (dropped) or names no actor here
//  (returned NO_SUCH_ACTOR): the message is dealt with.
static zhost_actor_t *
s_dest_actor (zhost_proc_t *self, zmq_msg_t *frames, size_t count, const zh_head_t *head,
              uint64_t *port)
{
    if (self->recv_dest_len && head->dest_len == self->recv_dest_len &&
        memcmp (head->dest, self->recv_dest, head->dest_len) == 0) {
        *port = self->recv_port;
        return self->recv_actor;
    }
    zh_addr_t dest;
    zh_error_t perr;
    if (zh_head_parse_dest (head, &dest, &perr) != 0) { //  the codec's rule: a port
        zh_warn ("bad-dest", "proc=%s reason=\"%s\"", self->addr, perr.reason);
        self->dropped++;
        return NULL;
    }
    zhost_actor_t *actor = s_actor_lookup (self, dest.actor.text.ptr, dest.actor.text.len);
    if (!actor) {
        char reason[ZH_ADDR_MAX + 64];
        snprintf (reason, sizeof reason, "no actor %.*s on proc %s", (int)dest.actor.text.len,
                  dest.actor.text.ptr, self->addr);
        s_bounce (self, frames, count, head, ZH_RC_NO_SUCH_ACTOR, reason);
        return NULL;
    }
    self->recv_dest_len = 0;
    if (head->dest_len <= sizeof self->recv_dest) {
        memcpy (self->recv_dest, head->dest, head->dest_len);
        self->recv_dest_len = head->dest_len;
        self->recv_actor = actor;
        self->recv_port = dest.port;
    }
    *port = dest.port;
    return actor;
}

void
zhost_dispatch_send (zhost_proc_t *self, zmq_msg_t *frames, size_t count, const zh_head_t *head)
{
    uint64_t number;
    zhost_actor_t *actor = s_dest_actor (self, frames, count, head, &number);
    if (!actor) return;
    zhost_port_t *port = s_port_find (actor, number);
    if (!port) {
        char reason[ZH_ADDR_MAX + 64];
        snprintf (reason, sizeof reason, "actor %s has no port %llu", actor->addr,
                  (unsigned long long)number);
        s_bounce (self, frames, count, head, ZH_RC_NO_SUCH_PORT, reason);
        return;
    }
    //  AC-1
    zhost_handler_fn *handler = port->handler;
    void *arg = port->arg;
    if (port->once) zhost_actor_close_port (actor, number);
    zhost_msgbuf_t buf;
    if (zhost_msgbuf_fill (&buf, head, head->meta, head->meta_len, frames, count) == 0) {
        buf.msg.port = number;
        zhost_note_result (actor, handler (actor, &buf.msg, arg), "port");
    }
    zhost_msgbuf_release (&buf);
}

static int
s_default_undeliverable (zhost_actor_t *actor, const zhost_undeliverable_t *u, void *arg)
{
    char q[300];
    const zhost_failure_t *root = u->failure_count ? &u->failures[0] : NULL;
    zh_warn ("undeliverable", "actor=%s dest=%s code=%s at=%s reason=%s", actor->addr, u->orig_dest,
             root ? root->code : "-", root ? root->at : "-",
             root ? zh_log_quote (q, sizeof q, root->reason, strlen (root->reason)) : "-");
    return 0;
}

//  Failures as NUL-terminated strings, in one block.
static char *
s_failures (const zh_return_meta_t *rm, zhost_failure_t *out)
{
    size_t total = 0;
    for (size_t i = 0; i < rm->failure_count; i++)
        total += rm->failures[i].code.len + rm->failures[i].reason.len + rm->failures[i].at.len + 3;
    char *block = (char *)malloc (total + 1);
    if (!block) return NULL;
    char *p = block;
    for (size_t i = 0; i < rm->failure_count; i++) {
        const zh_span_t *spans[3] = {&rm->failures[i].code, &rm->failures[i].reason,
                                     &rm->failures[i].at};
        const char **slots[3] = {&out[i].code, &out[i].reason, &out[i].at};
        for (int k = 0; k < 3; k++) {
            *slots[k] = p;
            if (spans[k]->len) memcpy (p, spans[k]->ptr, spans[k]->len);
            p += spans[k]->len;
            *p++ = 0;
        }
    }
    return block;
}

void
zhost_dispatch_return (zhost_proc_t *self, zmq_msg_t *frames, size_t count, const zh_head_t *head)
{
    zh_return_meta_t rm;
    zh_error_t perr;
    if (zh_return_meta_decode (&rm, head->meta, head->meta_len, &perr) != 0) {
        zh_warn ("bad-return", "proc=%s reason=\"%s\"", self->addr, perr.reason);
        return;
    }
    zh_addr_t dest;
    zhost_actor_t *actor = NULL;
    //  The codec's rule: a RETURN goes back to an actor or a proc.
    if (zh_head_parse_dest (head, &dest, &perr) == 0 && dest.kind == ZH_ADDR_ACTOR)
        actor = s_actor_lookup (self, dest.actor.text.ptr, dest.actor.text.len);
    zhost_failure_t failures[ZH_FAILURES_MAX];
    char *block = s_failures (&rm, failures);
    char orig_dest[ZH_ADDR_MAX + 1];
    s_span_copy (orig_dest, sizeof orig_dest, rm.dest.ptr, rm.dest.len);
    zhost_msgbuf_t buf;
    if (block && zhost_msgbuf_fill (&buf, head, rm.meta, rm.meta_len, frames, count) == 0) {
        zhost_undeliverable_t u = {orig_dest, rm.failure_count, failures, &buf.msg};
        if (!actor) {
            //  Sent with the proc address as src, or an actor we no longer have.
            char q[ZH_ADDR_MAX + 8];
            zh_warn ("undeliverable", "proc=%s to=%s dest=%s code=%s", self->addr,
                     zh_log_quote (q, sizeof q, buf.dest, strlen (buf.dest)), orig_dest,
                     rm.failure_count ? failures[0].code : "-");
        } else if (!zhost_request_returned (self, actor, &u)) {
            zhost_undeliverable_fn *fn = actor->handlers.on_undeliverable;
            if (!fn) fn = s_default_undeliverable;
            zhost_note_result (actor, fn (actor, &u, actor->arg), "on_undeliverable");
        }
        zhost_msgbuf_release (&buf);
    }
    free (block);
}

//  ---------------------------------------------------------------------
//  Posting

//  Meta map {reply?, seq?, headers?}; NULL/0 when empty.
static uint8_t *
s_meta_encode (const zhost_post_opts_t *opts, size_t *size)
{
    *size = 0;
    if (!opts) return NULL;
    //  Headers that are not one well-formed map are left out: the meta we
    //  write must stay readable (AC-2 at the receiver).
    bool headers = opts->headers && opts->headers_size && zh_msgpack_is_map (opts->headers[0]) &&
                   zh_msgpack_check (opts->headers, opts->headers_size) == 0;
    uint32_t n = (opts->reply ? 1 : 0) + (opts->has_seq ? 1 : 0) + (headers ? 1 : 0);
    if (n == 0) return NULL;
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, n);
    if (opts->reply) zh_pack_kv_str (&pk, "reply", opts->reply);
    if (opts->has_seq) zh_pack_kv_int (&pk, "seq", opts->seq);
    if (headers) {
        zh_pack_str (&pk, "headers");
        msgpack_sbuffer_write (&sbuf, (const char *)opts->headers, opts->headers_size);
    }
    *size = sbuf.size;
    return (uint8_t *)sbuf.data;
}

//  Frames of a SEND: the head (with the first part inline when small),
//  then the other parts. Returns the frame count, or 0 on failure.
static size_t
s_build (zhost_proc_t *self, zmq_msg_t *frames, const char *src, const char *dest,
         const zhost_part_t *parts, size_t count, const zhost_post_opts_t *opts, size_t *total)
{
    size_t meta_size;
    uint8_t *meta = s_meta_encode (opts, &meta_size);
    if (opts && opts->reply && !meta) return 0;
    bool inl = count > 0 && parts[0].size <= ZHOST_INLINE_MAX;
    uint8_t flags =
        (inl ? ZH_FLAG_INLINE : 0) | (opts && opts->no_return ? 0 : ZH_FLAG_RETURN_UNDELIVERABLE);
    size_t dest_len = strlen (dest), src_len = strlen (src);
    size_t inline_len = inl ? parts[0].size : 0;
    size_t size = zh_head_size (dest_len, src_len, meta_size, inline_len);
    zmq_msg_init_size (&frames[0], size);
    long written = zh_head_write (
        (uint8_t *)zmq_msg_data (&frames[0]), size, ZH_SEND, ZH_TTL_DEFAULT, flags, dest, dest_len,
        src, src_len, meta, meta_size, inl ? (const uint8_t *)parts[0].data : NULL, inline_len);
    free (meta);
    if (written < 0) {
        zmq_msg_close (&frames[0]);
        return 0;
    }
    *total = size;
    size_t n = 1;
    for (size_t i = inl ? 1 : 0; i < count; i++, n++) {
        zmq_msg_init_size (&frames[n], parts[i].size);
        if (parts[i].size) memcpy (zmq_msg_data (&frames[n]), parts[i].data, parts[i].size);
        *total += parts[i].size;
    }
    return n;
}

//  A post's dest must be a port address; the last one accepted is
//  remembered (LZ-1). 0, or -1 with err set.
static int
s_post_dest_check (zhost_proc_t *self, const char *dest, zhost_error_t *err)
{
    size_t len = dest ? strlen (dest) : 0;
    if (len && len == self->post_dest_len && memcmp (dest, self->post_dest, len) == 0) return 0;
    zh_addr_t addr;
    zh_error_t perr;
    if (!dest || zh_addr_parse_kind (&addr, ZH_ADDR_PORT, dest, len, &perr) != 0) {
        zhost_error_put (err, ZHOST_E_INVALID, "post: dest %s is not a port address: %s",
                         dest ? dest : "(null)", dest ? perr.reason : "missing");
        return -1;
    }
    if (len <= sizeof self->post_dest) {
        memcpy (self->post_dest, dest, len);
        self->post_dest_len = len;
    }
    return 0;
}

int
zhost_proc_post (zhost_proc_t *self, zhost_actor_t *from, const char *dest,
                 const zhost_part_t *parts, size_t count, const zhost_post_opts_t *opts,
                 zhost_error_t *err)
{
    if (!zhost_proc_open (self) || self->status == ZHOST_STOPPING) {
        zhost_error_put (err, self->status == ZHOST_CLOSED ? ZHOST_E_CLOSED : ZHOST_E_STOPPED,
                         "post to %s: the proc is %s", dest ? dest : "-",
                         self->status == ZHOST_CLOSED ? "closed" : "stopped");
        return -1;
    }
    if (s_post_dest_check (self, dest, err) != 0) return -1;
    if (count > ZH_MAX_FRAMES) {
        zhost_error_put (err, ZHOST_E_INVALID, "post to %s: %zu parts (at most %d)", dest, count,
                         ZH_MAX_FRAMES);
        return -1;
    }
    zhost_proc_ready (self);
    zmq_msg_t small[S_SMALL_FRAMES + 1];
    zmq_msg_t *frames =
        count < S_SMALL_FRAMES ? small : (zmq_msg_t *)malloc ((count + 1) * sizeof (zmq_msg_t));
    if (!frames) return -1;
    size_t total = 0;
    size_t n =
        s_build (self, frames, from ? from->addr : self->addr, dest, parts, count, opts, &total);
    int rc = -1;
    if (n == 0)
        zhost_error_put (err, ZHOST_E_INVALID, "post to %s: the head does not fit (meta?)", dest);
    else if (self->max_msg_bytes && total > self->max_msg_bytes)
        zhost_error_put (err, ZHOST_E_INVALID, "post to %s: %zu bytes is over max_msg_bytes %llu",
                         dest, total, (unsigned long long)self->max_msg_bytes);
    else if ((rc = zhost_send_frames (self, frames, n)) != 0)
        zhost_error_put (err, ZHOST_E_SOCKET, "post to %s: %s", dest,
                         errno == EAGAIN ? "the proc's send queue is full" : zmq_strerror (errno));
    for (size_t i = 0; i < n; i++)
        zmq_msg_close (&frames[i]);
    if (frames != small) free (frames);
    return rc;
}

int
zhost_actor_reply (zhost_actor_t *self, const zhost_msg_t *msg, const zhost_part_t *parts,
                   size_t count)
{
    if (!msg->reply) return -1;
    zhost_post_opts_t opts = {.has_seq = msg->has_seq, .seq = msg->seq};
    return zhost_proc_post (self->proc, self, msg->reply, parts, count, &opts, NULL);
}
