#!/usr/bin/python3
"""grandchild_proc.py — a spawned proc that leaves a grandchild behind.

Where it sits: the broker spawns it (the spawn op, argv = [python3,
grandchild_proc.py]). Before READY it starts `sleep 300` as a child of its
own, in its own process group (no new session: the group the broker made
for the proc), with stdin, stdout and stderr on /dev/null so that only the
group ties it to the proc, and prints "grandchild <pid>" (read from the
proc's status tail). Then it does what docs/protocol.md §6 asks of a proc:
DEALER to $ZHOST_BACKEND with ROUTING_ID = its proc id, READY {proc, pid},
PONG to PING; on STOP it says BYE and exits 0, leaving `sleep` running. A
SEND to it (any actor, any port) makes it exit 0 at once, also leaving
`sleep` running: a leader that ends on its own.
"""

import os
import struct
import subprocess
import sys

import msgpack
import zmq

READY, SEND, PING, PONG, BYE, STOP = 0x03, 0x10, 0x20, 0x21, 0x22, 0x30


def control(cmd, body=None):
    frames = [b"ZH" + struct.pack("BBBB", 1, cmd, 0, 0)]
    if body is not None:
        frames.append(msgpack.packb(body, use_bin_type=True))
    return frames


def main():
    grandchild = subprocess.Popen(["sleep", "300"], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print("grandchild %d" % grandchild.pid, flush=True)
    proc = os.environ["ZHOST_PROC"]
    proc_id = proc.split("@", 1)[0]
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.ROUTING_ID, proc_id.encode())
    sock.setsockopt(zmq.LINGER, 1000)
    sock.connect(os.environ["ZHOST_BACKEND"])
    sock.send_multipart(control(READY, {"proc": proc, "pid": os.getpid()}))
    while True:
        head = sock.recv_multipart()[0]
        if len(head) < 6 or head[:2] != b"ZH":
            continue
        if head[3] == PING:
            sock.send_multipart(control(PONG))
        elif head[3] == STOP:
            sock.send_multipart(control(BYE, {"reason": "stopped"}))
            break
        elif head[3] in (SEND, BYE):
            break
    sock.close()
    ctx.term()
    print("leader %d exits, grandchild %d left running" % (os.getpid(), grandchild.pid),
          flush=True)
    os._exit(0)   # no interpreter teardown: nothing waits for the grandchild


if __name__ == "__main__":
    sys.exit(main())
