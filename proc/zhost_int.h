/*  zhost_int.h — libzhost's private structures, shared by its files.

    zhost_proc.c    the connection: boot, attach, send queue, the loop,
                    control commands (READY, PING, STOP, BYE), stop
    zhost_actor.c   actors and ports, dispatch of SEND and RETURN, posts,
                    RETURNs this proc makes (NO_SUCH_ACTOR / NO_SUCH_PORT)
    zhost_request.c request/reply on once-ports, timeouts

    Nothing here is part of the contract (that is zhost/zhost.h).
*/
#ifndef ZHOST_INT_H
#define ZHOST_INT_H

#include <zmq.h>

#include "zh_addr.h"
#include "zh_log.h"
#include "zh_proto.h"
#include "zhost/zhost.h"

#define ZHOST_ADDR_CACHE 256 //  longer addresses are parsed every time (LZ-1)

//  One open port of an actor.
typedef struct {
    uint64_t number;
    zhost_handler_fn *handler;
    void *arg;
    bool once; //  closes after its first message
} zhost_port_t;

struct _zhost_actor_t {
    zhost_proc_t *proc;
    char name[ZH_ID_MAX + 1];
    char addr[ZH_ADDR_MAX + 1];
    zhost_actor_handlers_t handlers;
    void *arg;
    zhost_port_t *ports;
    size_t port_count;
    size_t port_cap;
};

//  A message waiting in the proc's own queue (the socket's was full).
typedef struct _zhost_outmsg_t {
    struct _zhost_outmsg_t *next;
    size_t count;
    zmq_msg_t frames[];
} zhost_outmsg_t;

//  One request waiting for its answer on a once-port.
typedef struct _zhost_request_t {
    struct _zhost_request_t *next;
    zhost_actor_t *actor;
    uint64_t port;
    int64_t deadline; //  ms, monotonic; 0 = none
    zhost_reply_fn *cb;
    void *arg;
} zhost_request_t;

struct _zhost_proc_t {
    void *ctx;
    void *sock;
    bool spawned;    //  booted from ZHOST_* (else attached)
    bool ready_sent; //  READY (spawned) written to the socket
    zhost_status_t status;
    char addr[ZH_ADDR_MAX + 1];         //  this proc's address
    char proc_id[ZH_ID_MAX + 1];        //  the part before '@'
    char host[ZH_ENDPOINT_MAX + 1];     //  endpoint of every local address
    char endpoint[ZH_ENDPOINT_MAX + 1]; //  what the DEALER connects to
    int heartbeat_ms;
    uint64_t max_msg_bytes; //  0 = unknown (spawned procs)
    int64_t last_send;      //  ms, monotonic: last message written
    int64_t last_recv;      //  ms, monotonic: last message read
    bool silent_logged;     //  a spawned proc's broker silence was logged
    zhost_actor_t **actors;
    size_t actor_count;
    size_t actor_cap;
    uint64_t next_once;
    int64_t next_seq;
    zhost_request_t *requests;
    zhost_outmsg_t *outq_head;
    zhost_outmsg_t *outq_tail;
    size_t outq_count;
    bool failed;         //  an actor handler returned nonzero
    bool stop_requested; //  STOP or a signal seen; done at depth 0
    int depth;           //  nesting of zhost_proc_step (requests in handlers)
    char reason[256];    //  why it stopped or closed
    uint64_t dropped;    //  SENDs dropped (unflagged, or after stop)
    //  LZ-1 (caches vouch only for identical bytes): the last dest a post
    //  accepted, and the last dest a SEND was dispatched to with the actor
    //  it named (actors live as long as their proc) and its port number.
    //  Bytes identical to those get the same verdict without a parse.
    char post_dest[ZHOST_ADDR_CACHE];
    size_t post_dest_len; //  0: empty
    char recv_dest[ZHOST_ADDR_CACHE];
    size_t recv_dest_len; //  0: empty
    zhost_actor_t *recv_actor;
    uint64_t recv_port;
    //  BATCH (docs/protocol.md §14). batch_want: we offer it (ZHOST_BATCH
    //  is not 0); batch_max: the bound the broker gave (BOOTSTRAP batch_max_bytes, or
    //  ZHOST_BATCH_MAX_BYTES), capped; 0 = this proc sends no BATCH.
    //  While a step runs (depth > 0) or the program corked, a one-frame
    //  SEND or RETURN waits here: the first in batch_first (sent lone if
    //  no other joins it), then all of them in batch_buf (allocated once,
    //  batch_max bytes, reused), batch_used bytes so far.
    bool batch_want;
    bool corked; //  zhost_proc_cork, until zhost_proc_flush
    size_t batch_max;
    size_t batch_count; //  elements waiting: 0, 1 (in batch_first) or more (in batch_buf)
    zmq_msg_t batch_first;
    uint8_t *batch_buf;
    size_t batch_used;
};

//  zhost_proc.c
int64_t zhost_now_ms (void);
void zhost_error_put (zhost_error_t *err, zhost_errno_t code, const char *format, ...)
    __attribute__ ((format (printf, 3, 4)));
//  Send frames (taken over: each is closed or moved) in order, queueing
//  them when the socket is full. 0 or -1 (socket gone).
//  A one-frame SEND or RETURN made while the proc is corked (a step
//  runs, or zhost_proc_cork) joins the proc's batch instead; anything
//  else sends the batch first, so order is kept. -1 with EAGAIN when the
//  proc's queue is full (batched or not).
int zhost_send_frames (zhost_proc_t *self, zmq_msg_t *frames, size_t count);
bool zhost_proc_open (zhost_proc_t *self);

//  zhost_actor.c
void zhost_dispatch_send (zhost_proc_t *self, zmq_msg_t *frames, size_t count,
                          const zh_head_t *head);
void zhost_dispatch_return (zhost_proc_t *self, zmq_msg_t *frames, size_t count,
                            const zh_head_t *head);
void zhost_actor_destroy (zhost_actor_t **self_p);
void zhost_actors_stop (zhost_proc_t *self);
void zhost_note_result (zhost_actor_t *actor, int rc, const char *what);
//  Fill a zhost_msg_t from a decoded head and its frames. Buffers for the
//  strings and the parts array are the caller's (valid during dispatch).
typedef struct {
    char dest[ZH_ADDR_MAX + 1];
    char src[ZH_ADDR_MAX + 1];
    char reply[ZH_ADDR_MAX + 1];
    zhost_part_t small[8];
    zhost_part_t *parts;
    uint8_t *headers; //  malloc'd re-pack of meta.headers
    zhost_msg_t msg;
} zhost_msgbuf_t;
int zhost_msgbuf_fill (zhost_msgbuf_t *buf, const zh_head_t *head, const uint8_t *meta,
                       size_t meta_len, zmq_msg_t *frames, size_t count);
void zhost_msgbuf_release (zhost_msgbuf_t *buf);

//  zhost_request.c
//  A RETURN whose original meta names one of our request once-ports:
//  complete that request. True if it was one.
bool zhost_request_returned (zhost_proc_t *self, zhost_actor_t *actor,
                             const zhost_undeliverable_t *u);
void zhost_requests_expire (zhost_proc_t *self, int64_t now);
void zhost_requests_fail_all (zhost_proc_t *self, zhost_errno_t status, const char *why);
int64_t zhost_requests_next_deadline (zhost_proc_t *self);

#endif
