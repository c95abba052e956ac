/*  zh_wire.h — sending a ZHP/1 control command over a ZeroMQ socket.

    Where it sits: just above the codec. Every part that speaks ZHP/1
    sends its control commands (ATTACH, READY, BYE, PING, ERROR, …) as
    [header][body?] through these two calls: the broker on its ROUTERs
    (with the peer's routing id first), libzhost, zhost-ctl, zhost-bench
    and the test programs on DEALERs. One of the two socket files of
    common/ (zh_curve_keys.c is the other): the codec itself stays pure.
*/
#ifndef ZH_WIRE_H
#define ZH_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

#include "zh_proto.h"

#ifdef __cplusplus
extern "C" {
#endif

//  Build a control command as frames: frames[0] the header, frames[1] the
//  body when body is not NULL and has fields. *count is 1 or 2. The frames
//  are initialised here; the caller sends or closes them. 0, or -1 on
//  allocation failure (nothing left open).
int zh_wire_command_frames (zmq_msg_t frames[2], size_t *count, uint8_t command,
                            const zh_body_t *body);

//  Send a control command on socket: [rid] first when rid is not NULL (a
//  ROUTER), then [header][body?]. body may be NULL (no body frame);
//  otherwise body->command must be command. flags is 0 or ZMQ_DONTWAIT.
//  0, or -1 with errno (zmq_send's, or ENOMEM); nothing is half sent
//  when the first frame is refused.
int zh_wire_send_command (void *socket, const void *rid, size_t rid_len, uint8_t command,
                          const zh_body_t *body, int flags);

#ifdef __cplusplus
}
#endif
#endif
