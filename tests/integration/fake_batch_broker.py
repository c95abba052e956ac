#!/usr/bin/python3
"""fake_batch_broker.py — a stand-in zhost-broker that speaks BATCH
(docs/protocol.md §14), for test_bench.py: zhost-bench runs it with
`--broker` as it runs the real one (`--frontend tcp://127.0.0.1:0 ...`,
"frontend ENDPOINT" and "ready" on stdout, SIGTERM to stop).

Just enough of ZHP/1 for the bench's raw clients: ATTACH → BOOTSTRAP (with
`batch: true` and `batch_max_bytes` when the client asked, unless
FAKE_BROKER_NO_BATCH is set: then it answers as a broker without §14 does),
SEND and BATCH routed by the proc id in dest, PING → PONG, BYE → BYE. What
one loop turn read for a batch-capable receiver goes as one BATCH frame
(a lone SEND when it is one element), as the real broker coalesces.

With FAKE_BROKER_STATS=PATH it writes, at exit, a JSON object: BATCH frames
and their elements received and sent, lone SENDs received and sent.
"""
import json
import os
import signal
import struct
import sys

import msgpack
import zmq

SEND, BATCH, ATTACH, BOOTSTRAP = 0x10, 0x12, 0x01, 0x02
PING, PONG, BYE, ERROR = 0x20, 0x21, 0x22, 0x23
BATCH_MAX = 262144
stop = False


def on_term(sig, frame):
    global stop
    stop = True


def header(cmd):
    return bytes([0x5A, 0x48, 1, cmd, 0, 0])


def dest_proc(elem):
    d = struct.unpack(">H", elem[6:8])[0]
    dest = elem[8:8 + d].decode()
    # b.<proc>:1@<endpoint>
    return dest.split("@", 1)[0].split(".", 1)[1].split(":", 1)[0]


def elements(frame):
    off, out = 6, []
    while off < len(frame):
        (n,) = struct.unpack(">I", frame[off:off + 4])
        out.append(frame[off + 4:off + 4 + n])
        off += 4 + n
    return out


def main():
    args = sys.argv[1:]
    frontend = args[args.index("--frontend") + 1] if "--frontend" in args else "tcp://127.0.0.1:0"
    signal.signal(signal.SIGTERM, on_term)
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.SNDHWM, 0)
    router.setsockopt(zmq.RCVHWM, 0)
    router.setsockopt(zmq.LINGER, 0)
    router.bind(frontend)
    endpoint = router.getsockopt(zmq.LAST_ENDPOINT).decode()
    print("frontend " + endpoint + "\nready", flush=True)
    no_batch = bool(os.environ.get("FAKE_BROKER_NO_BATCH"))
    stats = {"batch_in": 0, "elements_in": 0, "batch_out": 0, "elements_out": 0,
             "send_in": 0, "send_out": 0}
    routes, batching = {}, {}  # proc id -> routing id; routing id -> batch negotiated
    while not stop:
        if not router.poll(100):
            continue
        out = {}  # routing id -> elements read this turn
        for _ in range(1000):  # one turn: what is there, bounded
            try:
                msg = router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            rid, frame = msg[0], msg[1]
            cmd = frame[3]
            if cmd == ATTACH:
                body = msgpack.unpackb(msg[2]) if len(msg) > 2 and msg[2] else {}
                proc = "bench%d" % (len(routes) + 1)
                routes[proc] = rid
                batching[rid] = bool(body.get("batch")) and not no_batch
                boot = {"proc": proc + "@" + endpoint, "host": endpoint,
                        "agent": "host_agent.service@" + endpoint, "heartbeat_ms": 1000,
                        "liveness": 3, "max_msg_bytes": 16 << 20, "hwm": 1000000,
                        "incarnation": 1}
                if not no_batch:
                    boot.update(batch=batching[rid], batch_max_bytes=BATCH_MAX)
                router.send_multipart([rid, header(BOOTSTRAP), msgpack.packb(boot)])
            elif cmd == SEND:
                stats["send_in"] += 1
                out.setdefault(routes[dest_proc(frame)], []).append(frame)
            elif cmd == BATCH:
                if not batching.get(rid):
                    err = {"code": 400, "reason": "BATCH not negotiated"}
                    router.send_multipart([rid, header(ERROR), msgpack.packb(err)])
                    continue
                stats["batch_in"] += 1
                for e in elements(frame):
                    stats["elements_in"] += 1
                    out.setdefault(routes[dest_proc(e)], []).append(e)
            elif cmd == PING:
                router.send_multipart([rid, header(PONG)])
            elif cmd == BYE:
                router.send_multipart([rid, header(BYE), msgpack.packb({"reason": "bye"})])
        for rid, elems in out.items():
            while elems:
                if not batching.get(rid) or len(elems) == 1:
                    stats["send_out"] += 1
                    router.send_multipart([rid, elems.pop(0)])
                    continue
                frame, n = bytearray(header(BATCH)), 0
                while elems and len(frame) + 4 + len(elems[0]) <= BATCH_MAX:
                    e = elems.pop(0)
                    frame += struct.pack(">I", len(e)) + e
                    n += 1
                stats["batch_out"] += 1
                stats["elements_out"] += n
                router.send_multipart([rid, bytes(frame)])
    router.close()
    ctx.term()
    path = os.environ.get("FAKE_BROKER_STATS")
    if path:
        with open(path, "w") as f:
            json.dump(stats, f)


if __name__ == "__main__":
    main()
