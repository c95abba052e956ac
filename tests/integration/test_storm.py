"""A seeded storm of random and mutated frames from several connections
(docs/design.md "Security": every input bounded and validated, never a crash).
The broker stays up, answers ERRORs, only ever sends valid ZHP, keeps routing
between good clients, and its RSS stays bounded."""

import collections
import random
import struct
import time

import zmq

import zhp
from zhp import header

SEED = 1234
MESSAGES = 50000
TIME_BOUND = 45.0           # seconds for the storm itself
RSS_GROWTH_KIB = 64 * 1024  # < 64 MiB


def rand_obj(rng, depth=0):
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return rng.randrange(-2 ** 63, 2 ** 64)
    if kind == 1:
        return "".join(chr(rng.randrange(32, 0x250)) for _ in range(rng.randrange(12)))
    if kind == 2:
        return rng.randbytes(rng.randrange(16))
    if kind == 3:
        return rng.choice([None, True, False])
    if kind == 4:
        return rng.random() * 1e6
    if kind == 5:
        return rng.randrange(256)
    if kind == 6:
        return [rand_obj(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = ["op", "label", "reason", "code", "seq", "reply", "name", "proc", "pid",
            "endpoint", "incarnation", "x"]
    return {(rng.choice(keys) if rng.random() < 0.7 else rand_obj(rng, 3)): rand_obj(rng, depth + 1)
            for _ in range(rng.randrange(5))}


def rand_label(rng):
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789_-A.<>@ "
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 70)))


class Storm(object):
    def __init__(self, rng, b, conns, target):
        self.rng = rng
        self.b = b
        self.conns = conns
        self.target = target  # a good client, receiving some of the storm

    def src_for(self, c):
        rng = self.rng
        if c.proc and rng.random() < 0.8:
            return zhp.actor_addr(c.proc, rng.choice(["a", "b9", "client"]))
        return rng.choice([self.target.actor, "x.remote<2>@" + self.b.ep, "garbage",
                           "a.b@tcp://127.0.0.1:9"])

    def dest_for(self, c):
        rng = self.rng
        ep = self.b.ep
        return rng.choice([
            self.target.port(rng.randrange(1, 5)),
            "host_agent.service:1@" + ep,
            "host_agent.service:%d@%s" % (rng.randrange(2, 2 ** 40), ep),
            "other.service:1@" + ep,
            "x.local:1@" + ep,
            "x.nobody<%s>:1@%s" % (zhp.uid58_encode(rng.randrange(2 ** 64)), ep),
            zhp.port_addr(c.proc, 3) if c.proc else "a.b:1@" + ep,
            rand_label(rng) + "@" + ep,
        ])

    def valid_send(self, c):
        rng = self.rng
        dest = self.dest_for(c)
        meta = {"seq": rng.randrange(2 ** 31)} if rng.random() < 0.5 else rand_obj(rng, 2)
        if not isinstance(meta, dict):
            meta = {}
        if dest.startswith("host_agent.service:1@") and c.proc:
            meta["reply"] = zhp.port_addr(c.proc, 9)
            ops = ["ping", "list", "stats", "status", "nope"]
            if c.endpoint != self.b.control:
                # admin ops only where they are refused: from the control
                # socket they would really stop or spawn things
                ops += ["spawn", "stop", "kill", "stop_all", "shutdown"]
            parts = [zhp.pack({"op": rng.choice(ops), "name": rand_label(rng)})]
        else:
            parts = [rng.randbytes(rng.randrange(64)) for _ in range(rng.randrange(4))]
        frames = zhp.encode_send(dest, self.src_for(c), parts, meta,
                                 inline=rng.random() < 0.7,
                                 ttl=rng.choice([64, 64, 1, 0, 255]),
                                 returnable=rng.random() < 0.6,
                                 cmd=zhp.SEND if rng.random() < 0.9 else zhp.RETURN)
        return frames, dest

    def mutate(self, frames, dest):
        rng = self.rng
        head = bytearray(frames[0])
        # keep the dest endpoint intact: a mangled endpoint would make the
        # broker dial random hosts, which is not what this storm is about
        at = dest.find("@")
        protect = range(8 + at, 8 + len(dest.encode())) if at >= 0 else range(0)
        how = rng.randrange(5)
        if how == 0:
            for _ in range(rng.randrange(1, 5)):
                i = rng.randrange(len(head))
                if i not in protect:
                    head[i] ^= 1 << rng.randrange(8)
        elif how == 1:
            del head[rng.randrange(len(head)):]
        elif how == 2:
            head += rng.randbytes(rng.randrange(1, 32))
        elif how == 3:
            field = rng.choice([6, 8 + len(dest.encode())])
            if field + 2 <= len(head):
                head[field:field + 2] = struct.pack(">H", rng.choice([0, 1, 1025, 65535,
                                                                     rng.randrange(65536)]))
        else:
            head[5] = rng.randrange(256)  # flags
        out = [bytes(head)] + frames[1:]
        if rng.random() < 0.1:
            out.append(rng.randbytes(rng.randrange(8)))
        return out

    def control(self, c):
        rng = self.rng
        cmd = rng.choice([zhp.ATTACH, zhp.ATTACH, zhp.PING, zhp.PONG, zhp.READY, zhp.HELLO,
                          zhp.WELCOME, zhp.BOOTSTRAP, zhp.ERROR, zhp.STOP, zhp.BYE])
        if cmd == zhp.BYE and rng.random() < 0.8:
            cmd = zhp.PING
        if cmd == zhp.ATTACH:
            body = {"label": rand_label(rng)} if rng.random() < 0.5 else rand_obj(rng, 1)
        elif cmd == zhp.HELLO:
            body = {"endpoint": "tcp://127.0.0.1:9", "incarnation": rng.randrange(2 ** 64)}
        else:
            body = rand_obj(rng, 1)
        frames = [header(cmd)]
        r = rng.random()
        if r < 0.7:
            frames.append(zhp.pack(body))
        elif r < 0.8:
            frames.append(rng.randbytes(rng.randrange(20)))
        elif r < 0.85:
            frames += [b"", b"x"]
        return frames

    def random_frames(self):
        rng = self.rng
        frames = [rng.randbytes(rng.randrange(0, 80)) for _ in range(rng.randrange(1, 4))]
        if rng.random() < 0.5 and frames[0]:
            frames[0] = b"ZH" + frames[0][2:] if len(frames[0]) > 2 else b"ZH"
        if rng.random() < 0.3:
            frames[0] = header(rng.randrange(256), rng.randrange(256), rng.randrange(256),
                               version=rng.choice([0, 1, 1, 2, 255])) + frames[0][6:]
        return frames

    def next(self, c):
        rng = self.rng
        k = rng.randrange(10)
        if k < 2:
            return self.random_frames()
        if k < 4:
            return self.control(c)
        frames, dest = self.valid_send(c)
        if k < 6:
            return frames
        return self.mutate(frames, dest)


def drain(c, stats, target_ok=False):
    """Read everything c has without waiting; every message must be valid ZHP."""
    while True:
        frames = c.recv_frames(0)
        if frames is None:
            return
        try:
            msg = zhp.decode(frames)
        except Exception as e:  # noqa: BLE001 - anything unreadable is a finding
            stats["invalid"] += 1
            stats.setdefault("invalid_examples", []).append((frames[:2], str(e)))
            continue
        stats[msg.name] += 1
        if msg.cmd == zhp.ERROR:
            stats["error %s" % msg.body.get("code")] += 1
        elif msg.cmd == zhp.BOOTSTRAP:
            c.proc = msg.body.get("proc")
        elif msg.cmd == zhp.BYE:
            c.proc = None
        elif msg.cmd == zhp.PING:
            c.try_send_frames(zhp.control(zhp.PONG))


def test_storm(broker, client, zctx):
    b = broker("--delivery-timeout", "1s", "--max-msg-bytes", "65536")
    rng = random.Random(SEED)
    a = client(b, label="gooda")
    target = client(b, label="goodb", rcvhwm=0)
    conns = []
    for i in range(5):
        via = b.control if i == 4 else b.frontend[0]
        c = zhp.Client(zctx, via, routing_id=zhp.random_routing_id(rng), name="storm%d" % i,
                       sndhwm=2000)
        conns.append(c)
        if i % 2 == 0:
            c.attach()
    # warm up, then take the baseline
    assert a.request("stats")["ok"] is True
    rss0 = b.rss_kib()

    storm = Storm(rng, b, conns, target)
    stats = collections.Counter()
    t0 = time.monotonic()
    sent = 0
    skipped = 0
    try:
        while sent < MESSAGES and time.monotonic() - t0 < TIME_BOUND:
            c = conns[rng.randrange(len(conns))]
            frames = storm.next(c)
            if not c.try_send_frames(frames):
                drain(c, stats)
                c.sock.poll(10, zmq.POLLOUT)
                if not c.try_send_frames(frames):
                    skipped += 1
                    continue
            sent += 1
            if sent % 50 == 0:
                for x in conns:
                    drain(x, stats)
                target.pump()
                target.inbox.clear()
                a.pump()
                a.inbox.clear()
                if not b.alive():
                    break
        assert b.alive(), "broker died during the storm (rc=%r)\n%s" % (
            b.proc.poll(), b.stderr_tail())
        # settle: read what is left
        settle = time.monotonic() + 1.5
        while time.monotonic() < settle:
            for x in conns:
                drain(x, stats)
            target.pump()
            target.inbox.clear()
            a.pump()
            a.inbox.clear()
            time.sleep(0.02)
        elapsed = time.monotonic() - t0
        print("storm: %d sent, %d skipped in %.1fs; broker answered %r" % (
            sent, skipped, elapsed, dict(stats)))
        assert sent >= MESSAGES or elapsed >= TIME_BOUND
        assert b.alive(), b.stderr_tail()
        assert stats["invalid"] == 0, "broker sent invalid ZHP: %r" % stats["invalid_examples"][:3]
        assert stats["ERROR"] > sent // 10, "too few ERRORs for a storm: %r" % dict(stats)
        for code in (400, 401, 404, 426):
            assert stats["error %d" % code] > 0, "no ERROR %d in the storm: %r" % (code, dict(stats))
    finally:
        for c in conns:
            c.close()

    # routing between two good clients still works, old and new
    a.send(target.port(77), [b"after the storm"], meta={"seq": 1})
    msg = target.wait_for(lambda m: m.cmd == zhp.SEND and m.dest == target.port(77), 5.0)
    assert msg.parts == [b"after the storm"] and msg.src == a.actor
    x, y = client(b, label="fresh"), client(b, via="control", label="freshctl")
    x.send(y.port(), [b"fresh", b"frames"])
    assert y.expect(zhp.SEND).parts == [b"fresh", b"frames"]
    assert x.request("ping")["ok"] is True
    rss1 = b.rss_kib()
    print("storm: RSS %d KiB -> %d KiB" % (rss0, rss1))
    # under ASan, freed memory sits in a quarantine (256 MiB by default)
    bound = RSS_GROWTH_KIB + (512 * 1024 if b.sanitized() else 0)
    assert rss1 - rss0 < bound, "RSS grew %d KiB (%d -> %d)" % (rss1 - rss0, rss0, rss1)
