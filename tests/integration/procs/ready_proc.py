#!/usr/bin/python3
"""ready_proc.py — the smallest spawned proc, for the zhost-ctl tests.

Where it sits: the broker spawns it (zhost-ctl spawn NAME -- python3
ready_proc.py). It does what docs/protocol.md §6 asks of a spawned proc and no
more: connect a DEALER to $ZHOST_BACKEND with ROUTING_ID = its proc id (the
text of $ZHOST_PROC before the first '@'), send READY {proc, pid}, answer
PING with PONG, and on STOP (0x30) say BYE and exit 0. A BYE from the broker
also ends it (exit 0).

Flags, for the tests of failure paths:
    --no-ready        never send READY (the broker's ready timeout fires)
    --ignore-stop     ignore STOP (the broker escalates to SIGTERM)
    --exit N          exit with code N right away, before READY
    --chatter N       after READY, print "chatter I" N times, 20 ms apart,
                      even I to stdout and odd I to stderr (for `logs`)

On start it prints one line with $GREETING (to see spawn --env in a
status tail): "ready_proc <name> up GREETING=<value>".
"""

import os
import struct
import sys

import msgpack
import zmq

READY, PING, PONG, BYE, STOP = 0x03, 0x20, 0x21, 0x22, 0x30


def header(cmd):
    return b"ZH" + struct.pack("BBBB", 1, cmd, 0, 0)


def control(cmd, body=None):
    frames = [header(cmd)]
    if body is not None:
        frames.append(msgpack.packb(body, use_bin_type=True))
    return frames


def main(argv):
    if "--exit" in argv:
        print("ready_proc exiting with %s before READY" % argv[argv.index("--exit") + 1],
              flush=True)
        return int(argv[argv.index("--exit") + 1])
    proc = os.environ["ZHOST_PROC"]
    proc_id = proc.split("@", 1)[0]
    print("ready_proc %s up GREETING=%s" % (proc_id, os.environ.get("GREETING", "")),
          flush=True)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.ROUTING_ID, proc_id.encode())
    sock.setsockopt(zmq.LINGER, 1000)
    sock.connect(os.environ["ZHOST_BACKEND"])
    if "--no-ready" not in argv:
        sock.send_multipart(control(READY, {"proc": proc, "pid": os.getpid()}))
    code = 0
    chatter = int(argv[argv.index("--chatter") + 1]) if "--chatter" in argv else 0
    said = 0
    while True:
        if said < chatter and not sock.poll(20):
            print("chatter %d" % said, file=sys.stderr if said % 2 else sys.stdout, flush=True)
            said += 1
            continue
        frames = sock.recv_multipart()
        head = frames[0]
        if len(head) < 6 or head[:2] != b"ZH":
            continue
        cmd = head[3]
        if cmd == PING:
            sock.send_multipart(control(PONG))
        elif cmd == STOP and "--ignore-stop" not in argv:
            sock.send_multipart(control(BYE, {"reason": "stopped"}))
            break
        elif cmd == BYE:
            break
    sock.close()
    ctx.term()
    print("ready_proc %s done" % proc_id, flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
