#!/usr/bin/python3
"""demo.py — two raw-zmq clients exchange a message through zhost-broker.

Speaks ZHP/1 by hand (see docs/protocol.md) so the protocol is visible:
alice and bob ATTACH, alice SENDs "hello, bob" to bob's port 1 asking for
a reply, bob answers at the reply port, and both ask the host agent for
the broker's stats. Run by scripts/demo.sh; usage: demo.py FRONTEND
"""
import os
import struct
import sys

import msgpack
import zmq

ATTACH, BOOTSTRAP, SEND, RETURN, BYE = 0x01, 0x02, 0x10, 0x11, 0x22
INLINE, RETURN_UNDELIVERABLE = 0x02, 0x01


def header(cmd, ttl=0, flags=0):
    return bytes([0x5A, 0x48, 1, cmd, ttl, flags])


def head(dest, src, meta, part, flags=INLINE | RETURN_UNDELIVERABLE):
    d, s = dest.encode(), src.encode()
    m = msgpack.packb(meta) if meta else b""
    return (header(SEND, 64, flags) + struct.pack(">H", len(d)) + d
            + struct.pack(">H", len(s)) + s + struct.pack(">I", len(m)) + m + part)


def parse_head(frame):
    d = struct.unpack_from(">H", frame, 6)[0]
    dest = frame[8:8 + d].decode()
    s = struct.unpack_from(">H", frame, 8 + d)[0]
    src = frame[10 + d:10 + d + s].decode()
    m = struct.unpack_from(">I", frame, 10 + d + s)[0]
    meta = msgpack.unpackb(frame[14 + d + s:14 + d + s + m]) if m else {}
    return frame[3], dest, src, meta, frame[14 + d + s + m:]


class Client:
    def __init__(self, ctx, frontend, label):
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.ROUTING_ID, b"\x01" + os.urandom(15))
        self.sock.setsockopt(zmq.LINGER, 1000)
        self.sock.connect(frontend)
        self.sock.send_multipart([header(ATTACH), msgpack.packb({"label": label, "lang": "python"})])
        frames = self.recv()
        assert frames[0][3] == BOOTSTRAP, frames
        boot = msgpack.unpackb(frames[1])
        self.proc, self.agent = boot["proc"], boot["agent"]
        self.proc_id, self.endpoint = self.proc.split("@", 1)

    def recv(self, timeout_ms=3000):
        if not self.sock.poll(timeout_ms):
            sys.exit("demo: no answer from the broker within %d ms" % timeout_ms)
        return self.sock.recv_multipart()

    def port(self, actor, port):
        return "%s.%s:%d@%s" % (actor, self.proc_id, port, self.endpoint)

    def send(self, dest, part, meta=None):
        src = "main.%s@%s" % (self.proc_id, self.endpoint)
        self.sock.send(head(dest, src, meta, part))

    def close(self):
        self.sock.send(header(BYE) + b"", zmq.SNDMORE)
        self.sock.send(msgpack.packb({"reason": "demo done"}))
        self.recv()
        self.sock.close()


def main():
    frontend = sys.argv[1] if len(sys.argv) > 1 else "tcp://127.0.0.1:7100"
    ctx = zmq.Context()
    alice, bob = Client(ctx, frontend, "alice"), Client(ctx, frontend, "bob")
    print("demo: alice is %s\ndemo: bob   is %s" % (alice.proc, bob.proc))

    alice.send(bob.port("main", 1), b"hello, bob", {"reply": alice.port("main", 2), "seq": 1})
    cmd, dest, src, meta, part = parse_head(bob.recv()[0])
    print("demo: bob   got %r from %s (reply to %s)" % (part.decode(), src, meta["reply"]))
    bob.send(meta["reply"], b"hello, alice")
    cmd, dest, src, meta, part = parse_head(alice.recv()[0])
    print("demo: alice got %r from %s" % (part.decode(), src))

    alice.send(alice.agent.replace("@", ":1@", 1), msgpack.packb({"op": "stats"}),
               {"reply": alice.port("main", 3)})
    cmd, dest, src, meta, part = parse_head(alice.recv()[0])
    stats = msgpack.unpackb(part)
    print("demo: host agent says routed=%d connections=%d" % (stats["routed"], stats["connections"]))
    alice.close()
    bob.close()
    ctx.term()
    print("demo: ok")


if __name__ == "__main__":
    main()
