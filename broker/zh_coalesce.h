/*  zh_coalesce.h — the BATCH being built toward one connection
    (docs/protocol.md §14).

    Where it sits: each batch-capable connection (zh_conn_t's `out`) owns
    one; the router appends the one-frame messages it forwards to that
    connection during a loop turn and takes the result when the turn's
    drain ends, never waiting for more (batching adds no latency).

    CO-1 (zero copy alone): the first message is kept as it arrived (a
    zmq_msg_t, moved in); if nothing joins it, it leaves as the same lone
    SEND, uncopied. Only when a second message comes are both copied
    into the BATCH frame.
    CO-2 (bounded): the frame never grows past max bytes (the
    connection's batch_max_bytes); a message that would take it past is
    refused, and the caller takes the batch first. The buffer is reused
    from one batch to the next: nothing is allocated per message.
*/
#ifndef ZH_COALESCE_H
#define ZH_COALESCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

//  A message this big or bigger goes alone (copying it into a batch
//  costs more than the frame it saves).
#define ZH_COALESCE_ELEM_MAX 16384

typedef struct _zh_coalesce_t zh_coalesce_t;

//  max: the largest BATCH frame toward the connection.
zh_coalesce_t *zh_coalesce_new (size_t max);
void zh_coalesce_destroy (zh_coalesce_t **self_p);

//  True if a message of len bytes can join what is held (always, when
//  nothing is held and len fits a BATCH of one).
bool zh_coalesce_fits (const zh_coalesce_t *self, size_t len);

//  Add a one-frame SEND or RETURN: msg is moved in (it is left empty), or
//  its bytes copied when data is given instead (msg NULL). 0, or -1 when
//  it does not fit or memory ran out (nothing taken).
int zh_coalesce_add (zh_coalesce_t *self, zmq_msg_t *msg, const uint8_t *data, size_t len);

//  Messages held.
size_t zh_coalesce_count (const zh_coalesce_t *self);

//  Take what is held as one frame into out (initialised here): the lone
//  message when there is one (CO-1), else the BATCH. *count gets the
//  messages in it. 0, or -1 when memory ran out (what was held is lost,
//  *count says how much). Empties self.
int zh_coalesce_take (zh_coalesce_t *self, zmq_msg_t *out, size_t *count);

#endif
