/*  zh_coalesce.c — the BATCH being built toward one connection (see
    zh_coalesce.h for CO-1 and CO-2).

    Where it sits: owned by a zh_conn_t, filled and emptied by the router.
    Hand-written on purpose: it is on the hot path of batched traffic, and
    the work per message is one memcpy into a buffer kept from batch to
    batch (zh_batch_put, the codec's writer).
*/
#include "zh_coalesce.h"

#include <stdlib.h>
#include <string.h>

#include "zh_proto.h"

#define S_FIRST_ROOM 8192 //  bytes the buffer starts with; it doubles up to max

struct _zh_coalesce_t {
    size_t max;     //  the largest BATCH frame, header included
    uint8_t *buf;   //  the BATCH frame being built (header first)
    size_t used;    //  bytes of buf in use (0: no frame yet)
    size_t room;    //  bytes of buf
    size_t count;   //  messages held (in held, or in buf)
    zmq_msg_t held; //  CO-1: the first message, as it came
    bool holding;   //  held is in use (count is 1)
};

zh_coalesce_t *
zh_coalesce_new (size_t max)
{
    zh_coalesce_t *self = (zh_coalesce_t *)calloc (1, sizeof (zh_coalesce_t));
    if (!self) return NULL;
    self->max = max;
    zmq_msg_init (&self->held);
    return self;
}

void
zh_coalesce_destroy (zh_coalesce_t **self_p)
{
    if (!self_p || !*self_p) return;
    zh_coalesce_t *self = *self_p;
    zmq_msg_close (&self->held);
    free (self->buf);
    free (self);
    *self_p = NULL;
}

//  Bytes of a BATCH holding what is held plus len more.
static size_t
s_need (const zh_coalesce_t *self, size_t len)
{
    size_t now = self->used ? self->used
                 : self->holding
                     ? ZH_HEADER_SIZE + ZH_BATCH_LEN_SIZE + zmq_msg_size ((zmq_msg_t *)&self->held)
                     : ZH_HEADER_SIZE;
    return now + ZH_BATCH_LEN_SIZE + len;
}

bool
zh_coalesce_fits (const zh_coalesce_t *self, size_t len)
{
    return len > 0 && s_need (self, len) <= self->max;
}

static int
s_room (zh_coalesce_t *self, size_t need)
{
    if (need <= self->room) return 0;
    size_t room = self->room ? self->room : S_FIRST_ROOM;
    while (room < need)
        room *= 2;
    if (room > self->max) room = self->max;
    uint8_t *buf = (uint8_t *)realloc (self->buf, room);
    if (!buf) return -1;
    self->buf = buf;
    self->room = room;
    return 0;
}

int
zh_coalesce_add (zh_coalesce_t *self, zmq_msg_t *msg, const uint8_t *data, size_t len)
{
    if (msg) {
        data = (const uint8_t *)zmq_msg_data (msg);
        len = zmq_msg_size (msg);
    }
    if (!zh_coalesce_fits (self, len)) return -1;
    if (self->count == 0) {
        //  CO-1: keep the first as it is.
        if (msg)
            zmq_msg_move (&self->held, msg);
        else if (zmq_msg_init_size (&self->held, len) != 0)
            return -1;
        else
            memcpy (zmq_msg_data (&self->held), data, len);
        self->holding = true;
        self->count = 1;
        return 0;
    }
    if (s_room (self, s_need (self, len)) != 0) return -1;
    if (self->holding) {
        //  A second message: the first goes into the frame too.
        zh_header_write (self->buf, ZH_BATCH, 0, 0);
        self->used = ZH_HEADER_SIZE;
        zh_batch_put (self->buf, self->room, &self->used,
                      (const uint8_t *)zmq_msg_data (&self->held), zmq_msg_size (&self->held));
        zmq_msg_close (&self->held);
        zmq_msg_init (&self->held);
        self->holding = false;
    }
    zh_batch_put (self->buf, self->room, &self->used, data, len);
    self->count++;
    return 0;
}

size_t
zh_coalesce_count (const zh_coalesce_t *self)
{
    return self->count;
}

int
zh_coalesce_take (zh_coalesce_t *self, zmq_msg_t *out, size_t *count)
{
    *count = self->count;
    int rc = 0;
    if (self->holding) {
        zmq_msg_init (out);
        zmq_msg_move (out, &self->held);
        self->holding = false;
    } else if (self->count == 0)
        rc = zmq_msg_init (out);
    else if (zmq_msg_init_size (out, self->used) != 0) {
        zmq_msg_init (out);
        rc = -1;
    } else
        memcpy (zmq_msg_data (out), self->buf, self->used);
    self->used = 0;
    self->count = 0;
    return rc;
}
