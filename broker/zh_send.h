/*  zh_send.h — everything the broker sends: control commands, ERRORs,
    BYEs, RETURNs, forwarded messages; and the outbox.

    Where it sits: below the router, the handshakes, the agent and the
    lifecycle, above the sockets (which zh_runtime binds and the loop
    owns) and the counters (zh_stats). Sends never block (DONTWAIT): a
    full queue is EAGAIN, a vanished routing id EHOSTUNREACH.

    The outbox: a part below the router never routes a message itself. The
    host agent's answers and watch events, and anything else the broker
    makes for a proc address, are posted here; the router routes them in
    order when the part that posted them has returned (zh_router_flush),
    through the same checks and counters as any message.

    Invariants:
    - BR-2 (no bounce of a bounce): a RETURN that cannot be delivered is
      dropped, logged and counted as abandoned, never returned.
    - SD-1 (counted refusals): every ERROR sent is counted by its code.
*/
#ifndef ZH_SEND_H
#define ZH_SEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

#include "zh_conn.h"
#include "zh_error.h"
#include "zh_proto.h"
#include "zh_stats.h"

typedef struct _zh_send_t zh_send_t;

//  socks: the broker's ROUTERs (borrowed); stats: the counter table;
//  self_endpoint: the advertised endpoint RETURNs name as `at`;
//  service_addr: the src of the RETURNs the broker makes; ttl: of the
//  messages it makes.
zh_send_t *zh_send_new (void *const socks[ZH_SOCK_COUNT], zh_stats_t *stats,
                        const char *self_endpoint, const char *service_addr, uint8_t ttl);
void zh_send_destroy (zh_send_t **self_p);

//  A control command with an optional body to one peer of a socket.
//  0 or -1 (errno).
int zh_send_command (zh_send_t *self, zh_sock_t sock, const uint8_t *rid, size_t rid_len,
                     uint8_t command, const zh_body_t *body);

//  The same with a body already encoded (BOOTSTRAP's, kept for re-ATTACH).
int zh_send_encoded (zh_send_t *self, zh_sock_t sock, const uint8_t *rid, size_t rid_len,
                     uint8_t command, const uint8_t *body, size_t body_size);

//  True if a socket of the broker has input waiting (ZMQ_EVENTS).
bool zh_send_input_waiting (zh_send_t *self, zh_sock_t sock);

//  BYE {reason}.
void zh_send_bye (zh_send_t *self, zh_sock_t sock, const uint8_t *rid, size_t rid_len,
                  const char *reason);

//  Refuse a message with ERROR code (a ZH_ERR_*), counted (SD-1). head,
//  when the refused message was a SEND/RETURN whose head could be read,
//  adds its dest and meta seq.
void zh_send_error (zh_send_t *self, zh_sock_t sock, const uint8_t *rid, size_t rid_len, int code,
                    const char *reason, const zh_head_t *head);

//  Send frames[0..count) to a connection: [rid][frames…]. 0, or -1 with
//  errno EHOSTUNREACH (routing id gone) or EAGAIN (its queue is full); on
//  failure no frame was sent or consumed. now: the loop's clock, kept as
//  the connection's last_send.
int zh_send_frames (zh_send_t *self, zh_conn_t *to, zmq_msg_t *frames, size_t count, int64_t now);

//  Make a RETURN of a message (frames[0] is its head, decoded as head)
//  for code rc and send it to `to`, the connection it came from (NULL:
//  the broker made it). A RETURN is never returned (BR-2); a SEND without
//  RETURN_UNDELIVERABLE is dropped. Counts and logs either way.
void zh_send_return (zh_send_t *self, zh_conn_t *to, zmq_msg_t *frames, size_t count,
                     const zh_head_t *head, zh_rc_t rc, const char *reason, int64_t now);

//  ---------------------------------------------------------------------
//  The outbox

//  Post a one-frame SEND the broker made (a head with INLINE): dest, src
//  and meta (NULL/0: none) and the inline part. Copied. 0, or -1 when it
//  could not be built (counted as agent_unanswerable).
int zh_send_post (zh_send_t *self, const char *dest, size_t dest_len, const char *src,
                  const uint8_t *meta, size_t meta_len, const uint8_t *part, size_t part_len);

//  Post an answer of the host agent: dest the reply port, src the agent's
//  address, meta {"seq": *seq} when seq is not NULL (answers echo the
//  request's seq), the answer bytes as the inline part.
int zh_send_answer (zh_send_t *self, const char *reply, size_t reply_len, const char *src,
                    const int64_t *seq, const uint8_t *answer, size_t answer_size);

//  A posted message: its frames (a malloc'd array).
typedef struct {
    zmq_msg_t *frames; //  the frames, head first
    size_t count;      //  frames in it
} zh_outmsg_t;

//  Post a message (its frames are moved in; the caller closes its now
//  empty frames as usual). 0, or -1 on allocation failure (nothing moved).
int zh_send_post_frames (zh_send_t *self, zmq_msg_t *frames, size_t count);

//  Make the RETURN of a message the broker held (a peer link's pending
//  SEND past its delivery timeout) and post it: its dest is the original
//  src, so the router takes it home. Counted as zh_send_return does.
void zh_send_return_post (zh_send_t *self, zmq_msg_t *frames, size_t count, const zh_head_t *head,
                          zh_rc_t rc, const char *reason);

//  Take the oldest posted message (the caller closes it with
//  zh_outmsg_close). true, or false when the outbox is empty.
bool zh_send_take (zh_send_t *self, zh_outmsg_t *out);

//  True if something was posted and not taken yet.
bool zh_send_pending (zh_send_t *self);
void zh_outmsg_close (zh_outmsg_t *msg);

//  The outbox's depth: now, and the most it held at once (metrics).
void zh_send_outbox_depth (zh_send_t *self, size_t *now, size_t *peak);

#endif
