/*  zh_send.c — everything the broker sends, and the outbox (see
    zh_send.h).

    Where it sits: below every part that answers or forwards; above the
    sockets (zh_wire for control commands, zmq_msg_send for the rest) and
    the counters.
*/
#include "zh_send.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zh_log.h"
#include "zh_pack.h"
#include "zh_wire.h"

struct _zh_send_t {
    void *socks[ZH_SOCK_COUNT]; //  the broker's ROUTERs (borrowed)
    zh_stats_t *stats;          //  the counter table (borrowed)
    char *self_endpoint;        //  `at` of the RETURNs made here
    char *service_addr;         //  src of the RETURNs made here
    uint8_t ttl;                //  ttl of the messages made here
    zh_outmsg_t *outbox;        //  ring of posted messages
    size_t out_head;            //  index of the oldest in outbox
    size_t out_count;           //  messages in outbox
    size_t out_room;            //  slots of outbox
    size_t out_peak;            //  the most messages the outbox held at once
};

zh_send_t *
zh_send_new (void *const socks[ZH_SOCK_COUNT], zh_stats_t *stats, const char *self_endpoint,
             const char *service_addr, uint8_t ttl)
{
    zh_send_t *self = (zh_send_t *)calloc (1, sizeof (zh_send_t));
    if (!self) return NULL;
    memcpy (self->socks, socks, sizeof self->socks);
    self->stats = stats;
    self->self_endpoint = strdup (self_endpoint);
    self->service_addr = strdup (service_addr);
    self->ttl = ttl;
    if (!self->self_endpoint || !self->service_addr) zh_send_destroy (&self);
    return self;
}

void
zh_send_destroy (zh_send_t **self_p)
{
    if (!self_p || !*self_p) return;
    zh_send_t *self = *self_p;
    zh_outmsg_t msg;
    while (zh_send_take (self, &msg))
        zh_outmsg_close (&msg);
    free (self->outbox);
    free (self->self_endpoint);
    free (self->service_addr);
    free (self);
    *self_p = NULL;
}

//  ---------------------------------------------------------------------
//  Control commands

int
zh_send_command (zh_send_t *self, zh_sock_t sock, const uint8_t *rid, size_t rid_len,
                 uint8_t command, const zh_body_t *body)
{
    return zh_wire_send_command (self->socks[sock], rid, rid_len, command, body, ZMQ_DONTWAIT);
}

int
zh_send_encoded (zh_send_t *self, zh_sock_t sock, const uint8_t *rid, size_t rid_len,
                 uint8_t command, const uint8_t *body, size_t body_size)
{
    void *socket = self->socks[sock];
    uint8_t header[ZH_HEADER_SIZE];
    zh_header_write (header, command, 0, 0);
    if (zmq_send (socket, rid, rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) == -1) return -1;
    if (zmq_send (socket, header, sizeof header, (body_size ? ZMQ_SNDMORE : 0) | ZMQ_DONTWAIT) ==
        -1)
        return -1;
    if (body_size && zmq_send (socket, body, body_size, ZMQ_DONTWAIT) == -1) return -1;
    return 0;
}

bool
zh_send_input_waiting (zh_send_t *self, zh_sock_t sock)
{
    int events = 0;
    size_t size = sizeof events;
    return zmq_getsockopt (self->socks[sock], ZMQ_EVENTS, &events, &size) == 0 &&
           (events & ZMQ_POLLIN);
}

void
zh_send_bye (zh_send_t *self, zh_sock_t sock, const uint8_t *rid, size_t rid_len,
             const char *reason)
{
    zh_body_t body = {.command = ZH_BYE, .present = ZH_F_REASON, .reason = zh_span_of (reason)};
    zh_send_command (self, sock, rid, rid_len, ZH_BYE, &body);
}

void
zh_send_error (zh_send_t *self, zh_sock_t sock, const uint8_t *rid, size_t rid_len, int code,
               const char *reason, const zh_head_t *head)
{
    zh_stats_count_reject (self->stats, code); //  SD-1
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
    zh_send_command (self, sock, rid, rid_len, ZH_ERROR, &body);
    if (zh_log_enabled (ZH_LOG_DEBUG)) {
        char name[80], q[240];
        zh_conn_t tmp = {.rid_len = rid_len < ZH_RID_MAX ? rid_len : ZH_RID_MAX};
        memcpy (tmp.rid, rid, tmp.rid_len);
        zh_debug ("reject", "socket=%s from=%s code=%d reason=%s", zh_sock_name (sock),
                  zh_conn_name (&tmp, name, sizeof name), code,
                  zh_log_quote (q, sizeof q, reason, strlen (reason)));
    }
}

//  ---------------------------------------------------------------------
//  Messages

int
zh_send_frames (zh_send_t *self, zh_conn_t *to, zmq_msg_t *frames, size_t count, int64_t now)
{
    void *socket = to->link_socket ? to->link_socket : self->socks[to->sock];
    //  A peer link is a DEALER: no routing id; a full queue is EAGAIN on
    //  the first frame, so nothing is half sent either way.
    if (to->link_socket) {
        if (zmq_msg_send (&frames[0], socket, (count > 1 ? ZMQ_SNDMORE : 0) | ZMQ_DONTWAIT) == -1)
            return -1;
        for (size_t i = 1; i < count; i++)
            zmq_msg_send (&frames[i], socket, (i + 1 < count ? ZMQ_SNDMORE : 0) | ZMQ_DONTWAIT);
        to->last_send = now;
        return 0;
    }
    if (zmq_send (socket, to->rid, to->rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) == -1) return -1;
    for (size_t i = 0; i < count; i++)
        zmq_msg_send (&frames[i], socket, (i + 1 < count ? ZMQ_SNDMORE : 0) | ZMQ_DONTWAIT);
    to->last_send = now;
    return 0;
}

//  Turn frames[0] (a SEND's head) into the head of its RETURN for rc.
//  0, or -1 when no RETURN is made (BR-2, an unflagged SEND, or out of
//  memory), counted and logged; no_sender: nobody to return it to.
static int
s_make_return (zh_send_t *self, zmq_msg_t *frames, const zh_head_t *head, zh_rc_t rc,
               const char *reason, bool no_sender)
{
    char dest[ZH_ADDR_MAX + 1], q[240];
    snprintf (dest, sizeof dest, "%.*s", (int)head->dest_len, (const char *)head->dest);
    if (head->hdr.command == ZH_RETURN) {
        self->stats->abandoned++; //  BR-2: never bounce a bounce
        zh_info ("abandoned", "dest=%s code=%s reason=%s", dest, zh_rc_name (rc),
                 zh_log_quote (q, sizeof q, reason, strlen (reason)));
        return -1;
    }
    if (!(head->hdr.flags & ZH_FLAG_RETURN_UNDELIVERABLE) || no_sender) {
        self->stats->dropped++;
        zh_debug ("dropped", "dest=%s code=%s reason=%s", dest, zh_rc_name (rc),
                  zh_log_quote (q, sizeof q, reason, strlen (reason)));
        return -1;
    }
    size_t meta_size = 0;
    uint8_t *meta = zh_return_meta_encode (NULL, 0, zh_rc_name (rc), reason, self->self_endpoint,
                                           (const char *)head->dest, head->dest_len, head->meta,
                                           head->meta_len, &meta_size);
    uint8_t flags = head->hdr.flags & ZH_FLAG_INLINE;
    size_t src_len = strlen (self->service_addr);
    size_t inline_len = (flags & ZH_FLAG_INLINE) ? head->inline_len : 0;
    size_t size = zh_head_size (head->src_len, src_len, meta_size, inline_len);
    zmq_msg_t ret;
    long written = -1;
    if (meta && zmq_msg_init_size (&ret, size) == 0) {
        written = zh_head_write ((uint8_t *)zmq_msg_data (&ret), size, ZH_RETURN, self->ttl, flags,
                                 (const char *)head->src, head->src_len, self->service_addr,
                                 src_len, meta, meta_size, head->inline_part, inline_len);
        if (written < 0) zmq_msg_close (&ret);
    }
    free (meta);
    if (written < 0) {
        self->stats->abandoned++;
        zh_warn ("abandoned", "dest=%s code=%s reason=\"return head too large or out of memory\"",
                 dest, zh_rc_name (rc));
        return -1;
    }
    //  The RETURN takes the head's place; payload frames follow, moved.
    zmq_msg_move (&frames[0], &ret);
    zmq_msg_close (&ret);
    return 0;
}

void
zh_send_return (zh_send_t *self, zh_conn_t *to, zmq_msg_t *frames, size_t count,
                const zh_head_t *head, zh_rc_t rc, const char *reason, int64_t now)
{
    if (s_make_return (self, frames, head, rc, reason, to == NULL) != 0) return;
    if (zh_send_frames (self, to, frames, count, now) == 0) {
        self->stats->returned[rc]++;
        zh_debug ("returned", "code=%s to=%s", zh_rc_name (rc), to->proc_id);
    } else {
        self->stats->abandoned++;
        zh_info ("abandoned", "code=%s reason=%s", zh_rc_name (rc),
                 errno == EAGAIN ? "sender-queue-full" : "sender-gone");
    }
}

void
zh_send_return_post (zh_send_t *self, zmq_msg_t *frames, size_t count, const zh_head_t *head,
                     zh_rc_t rc, const char *reason)
{
    if (s_make_return (self, frames, head, rc, reason, false) != 0) return;
    if (zh_send_post_frames (self, frames, count) == 0)
        self->stats->returned[rc]++;
    else
        self->stats->abandoned++;
}

//  ---------------------------------------------------------------------
//  The outbox: a ring of messages (each a malloc'd array of frames) that
//  grows by doubling

static int
s_outbox_grow (zh_send_t *self)
{
    size_t room = self->out_room ? 2 * self->out_room : 16;
    zh_outmsg_t *ring = (zh_outmsg_t *)malloc (room * sizeof (zh_outmsg_t));
    if (!ring) return -1;
    for (size_t i = 0; i < self->out_count; i++)
        ring[i] = self->outbox[(self->out_head + i) % self->out_room];
    free (self->outbox);
    self->outbox = ring;
    self->out_head = 0;
    self->out_room = room;
    return 0;
}

int
zh_send_post_frames (zh_send_t *self, zmq_msg_t *frames, size_t count)
{
    zmq_msg_t *copy = (zmq_msg_t *)malloc (count * sizeof (zmq_msg_t));
    if (!copy || (self->out_count == self->out_room && s_outbox_grow (self) != 0)) {
        free (copy);
        return -1;
    }
    for (size_t i = 0; i < count; i++) {
        zmq_msg_init (&copy[i]);
        zmq_msg_move (&copy[i], &frames[i]);
    }
    self->outbox[(self->out_head + self->out_count) % self->out_room] =
        (zh_outmsg_t){.frames = copy, .count = count};
    self->out_count++;
    if (self->out_count > self->out_peak) self->out_peak = self->out_count;
    return 0;
}

int
zh_send_post (zh_send_t *self, const char *dest, size_t dest_len, const char *src,
              const uint8_t *meta, size_t meta_len, const uint8_t *part, size_t part_len)
{
    size_t src_len = strlen (src);
    size_t size = zh_head_size (dest_len, src_len, meta_len, part_len);
    zmq_msg_t msg;
    if (zmq_msg_init_size (&msg, size) != 0) {
        self->stats->agent_unanswerable++;
        return -1;
    }
    if (zh_head_write ((uint8_t *)zmq_msg_data (&msg), size, ZH_SEND, self->ttl, ZH_FLAG_INLINE,
                       dest, dest_len, src, src_len, meta, meta_len, part, part_len) < 0 ||
        zh_send_post_frames (self, &msg, 1) != 0) {
        zmq_msg_close (&msg);
        self->stats->agent_unanswerable++;
        return -1;
    }
    zmq_msg_close (&msg);
    return 0;
}

int
zh_send_answer (zh_send_t *self, const char *reply, size_t reply_len, const char *src,
                const int64_t *seq, const uint8_t *answer, size_t answer_size)
{
    uint8_t meta[16];
    size_t meta_len = 0;
    if (seq) {
        msgpack_sbuffer sbuf;
        msgpack_sbuffer_init (&sbuf);
        msgpack_packer pk;
        msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
        msgpack_pack_map (&pk, 1);
        zh_pack_kv_int (&pk, "seq", *seq);
        if (sbuf.size <= sizeof meta) {
            memcpy (meta, sbuf.data, sbuf.size);
            meta_len = sbuf.size;
        }
        msgpack_sbuffer_destroy (&sbuf);
    }
    return zh_send_post (self, reply, reply_len, src, meta_len ? meta : NULL, meta_len, answer,
                         answer_size);
}

bool
zh_send_take (zh_send_t *self, zh_outmsg_t *out)
{
    if (self->out_count == 0) return false;
    *out = self->outbox[self->out_head];
    self->out_head = (self->out_head + 1) % self->out_room;
    self->out_count--;
    return true;
}

void
zh_outmsg_close (zh_outmsg_t *msg)
{
    for (size_t i = 0; i < msg->count; i++)
        zmq_msg_close (&msg->frames[i]);
    free (msg->frames);
    msg->frames = NULL;
    msg->count = 0;
}

void
zh_send_outbox_depth (zh_send_t *self, size_t *now, size_t *peak)
{
    *now = self->out_count;
    *peak = self->out_peak;
}

bool
zh_send_pending (zh_send_t *self)
{
    return self->out_count > 0;
}
