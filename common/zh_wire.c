/*  zh_wire.c — sending a ZHP/1 control command over a ZeroMQ socket
    (see zh_wire.h).

    Where it sits: above the codec (zh_header_write, zh_body_encode) and
    below every part that sends control commands.
*/
#include "zh_wire.h"

#include <errno.h>
#include <stdlib.h>

static void
s_free_body (void *data, void *hint)
{
    (void)hint;
    free (data);
}

int
zh_wire_command_frames (zmq_msg_t frames[2], size_t *count, uint8_t command, const zh_body_t *body)
{
    uint8_t *data = NULL;
    size_t size = 0;
    if (body) {
        data = zh_body_encode (body, &size);
        if (!data) {
            errno = ENOMEM;
            return -1;
        }
    }
    if (zmq_msg_init_size (&frames[0], ZH_HEADER_SIZE) != 0) {
        free (data);
        errno = ENOMEM;
        return -1;
    }
    zh_header_write ((uint8_t *)zmq_msg_data (&frames[0]), command, 0, 0);
    *count = 1;
    //  An empty map is the same as no body (§3): send the header alone.
    if (data && size > 1) {
        if (zmq_msg_init_data (&frames[1], data, size, s_free_body, NULL) != 0) {
            free (data);
            zmq_msg_close (&frames[0]);
            errno = ENOMEM;
            return -1;
        }
        *count = 2;
    } else
        free (data);
    return 0;
}

int
zh_wire_send_command (void *socket, const void *rid, size_t rid_len, uint8_t command,
                      const zh_body_t *body, int flags)
{
    zmq_msg_t frames[2];
    size_t count = 0;
    if (zh_wire_command_frames (frames, &count, command, body) != 0) return -1;
    int rc = 0;
    if (rid && zmq_send (socket, rid, rid_len, ZMQ_SNDMORE | flags) == -1) rc = -1;
    for (size_t i = 0; i < count; i++) {
        if (rc == 0 &&
            zmq_msg_send (&frames[i], socket, (i + 1 < count ? ZMQ_SNDMORE : 0) | flags) == -1)
            rc = -1;
        zmq_msg_close (&frames[i]);
    }
    return rc;
}
