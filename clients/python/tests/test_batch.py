"""BATCH (docs/protocol.md §14) in the Python client, against a fake broker: a
ZeroMQ ROUTER in the test that answers ATTACH with the BOOTSTRAP a test
chooses, sends BATCH frames and lone messages, and reads what the client
sends. The same against the real broker is in test_batch_broker.py.

The client rule under test: received BATCHes are dispatched element by
element exactly as lone messages; posts made in a handler or between
cork() and flush() leave together as BATCH frames (at most batch_max_bytes)
when that step ends; a post outside any step leaves at once; a message
with payload frames, or too big for a BATCH, goes alone after what is held.
"""

import threading
import time

import pytest
import zmq

import zhost
from zhost import protocol as P

MiB = 1 << 20


class FakeBroker(object):
    """A ROUTER speaking enough ZHP/1 for one attached client (or a spawned
    proc on its backend)."""

    def __init__(self):
        self.ctx = zmq.Context.instance()
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        # a spawned proc's routing id is its proc id: a second boot() with
        # the same id takes over from the first one's connection
        self.router.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self.router.bind("tcp://127.0.0.1:*")
        self.ep = self.router.getsockopt(zmq.LAST_ENDPOINT).decode()
        self.rid = None
        self.attach_body = None

    def close(self):
        self.router.close(linger=0)

    def attach(self, bootstrap=None, **kw):
        """zhost.attach() to this fake; BOOTSTRAP says batch: true (256 KiB)
        unless bootstrap gives other fields (None values are left out)."""
        result = {}

        def run():
            try:
                result["proc"] = zhost.attach(self.ep, heartbeat=False, timeout=5.0, **kw)
            except Exception as e:  # noqa: BLE001 - reported below
                result["error"] = e

        t = threading.Thread(target=run)
        t.start()
        try:
            frames = self.recv_raw(5.0)
            self.rid, frames = frames[0], frames[1:]
            msg = P.decode(frames)
            assert msg.cmd == P.ATTACH
            self.attach_body = msg.body
            body = {"proc": "c<2>@" + self.ep, "host": self.ep,
                    "agent": "host_agent.service@" + self.ep, "heartbeat_ms": 1000,
                    "liveness": 3, "max_msg_bytes": 16 * MiB, "hwm": 1000, "incarnation": 1,
                    "batch": True, "batch_max_bytes": P.DEFAULT_BATCH_MAX_BYTES}
            body.update(bootstrap or {})
            body = {k: v for k, v in body.items() if v is not None}
            self.router.send_multipart([self.rid] + P.encode_control(P.BOOTSTRAP, body))
        finally:
            t.join(6.0)
        if "error" in result:
            raise result["error"]
        return result["proc"]

    def send(self, frames):
        self.router.send_multipart([self.rid] + list(frames))

    def recv_raw(self, timeout=2.0):
        if not self.router.poll(int(timeout * 1000)):
            raise AssertionError("the fake broker got nothing within %ss" % timeout)
        return self.router.recv_multipart()

    def recv(self, timeout=2.0):
        """The next message the client sent (routing id dropped), decoded."""
        frames = self.recv_raw(timeout)
        assert frames[0] == self.rid
        return P.decode(frames[1:])

    def recv_all(self, quiet=0.2):
        """Every message until nothing came for `quiet` seconds."""
        out = []
        while self.router.poll(int(quiet * 1000)):
            frames = self.router.recv_multipart()
            out.append(P.decode(frames[1:]))
        return out

    # addresses on the fake's side
    def port(self, n, actor="peer", proc="p"):
        return "%s.%s:%d@%s" % (actor, proc, n, self.ep)


@pytest.fixture
def fake():
    f = FakeBroker()
    made = []
    orig = f.attach

    def attach(*a, **kw):
        p = orig(*a, **kw)
        made.append(p)
        return p

    f.attach = attach
    yield f
    for p in made:
        p.close(timeout=0.05)
    f.close()


def send_to(client_port, src, *parts, meta=None, undeliverable=True):
    """One one-frame SEND (bytes) from src to a port of the client."""
    frames = P.encode_send(client_port, src, parts, meta, undeliverable, ttl=63)
    assert len(frames) == 1
    return frames[0]


def batch(*elements):
    return P.encode_batch(elements)


def sends_of(msgs):
    """(command name, first part) of every SEND/RETURN in msgs, BATCH elements
    in their place, and the frame layout."""
    flat, layout = [], []
    for m in msgs:
        if m.cmd == P.BATCH:
            layout.append(("BATCH", len(m.elements)))
            flat.extend(m.elements)
        else:
            layout.append((m.name, 1))
            flat.append(m)
    return [(m.name, m.parts[0] if m.parts else None) for m in flat], layout


def poll_until(proc, pred, timeout=3.0):
    deadline = time.monotonic() + timeout
    while not pred() and time.monotonic() < deadline:
        proc.poll(0.05)
    return pred()


# --- negotiation ------------------------------------------------------------

def test_attach_asks_for_batch_and_bootstrap_decides(fake):
    c = fake.attach()
    assert fake.attach_body["batch"] is True and fake.attach_body["lang"] == "python"
    assert c.batching and c.batch_max_bytes == P.DEFAULT_BATCH_MAX_BYTES
    assert c.bootstrap["liveness"] == 3


def test_batch_max_bytes_is_bounded_by_max_msg_bytes(fake):
    c = fake.attach({"batch_max_bytes": 4 * MiB, "max_msg_bytes": MiB})
    assert c.batch_max_bytes == MiB


def test_attach_batch_false_asks_for_none_and_sends_none(fake):
    c = fake.attach(batch=False)
    assert "batch" not in fake.attach_body
    assert not c.batching and c.batch_max_bytes == 0   # although BOOTSTRAP said true
    with c.batch():
        c.send(fake.port(1), b"a")
        c.send(fake.port(1), b"b")
    assert sends_of(fake.recv_all())[1] == [("SEND", 1), ("SEND", 1)]


@pytest.mark.parametrize("bootstrap", [{"batch": False}, {"batch": None, "batch_max_bytes": None}])
def test_no_batch_when_bootstrap_says_batch_false(fake, bootstrap):
    c = fake.attach(bootstrap)
    assert not c.batching
    port = c.actor("svc").port(1)

    @port.on_message
    def three(msg):
        for i in range(3):
            c.send(fake.port(1), b"%d" % i)

    fake.send([send_to(port.address, fake.port(9), b"go")])
    assert poll_until(c, lambda: False, 0.3) is False
    got, layout = sends_of(fake.recv_all())
    assert layout == [("SEND", 1)] * 3 and got == [("SEND", b"0"), ("SEND", b"1"), ("SEND", b"2")]
    # a BATCH that comes anyway is still read (a client keeps accepting them)
    seen = []
    port.on_message(lambda m: seen.append(m.parts[0]))
    fake.send(batch(send_to(port.address, fake.port(9), b"x"),
                    send_to(port.address, fake.port(9), b"y")))
    assert poll_until(c, lambda: len(seen) == 2) and seen == [b"x", b"y"]


def test_spawned_proc_reads_zhost_batch_max_bytes_and_says_batch_in_ready():
    f = FakeBroker()
    try:
        env = {"ZHOST_PROC": "w1@tcp://127.0.0.1:7100", "ZHOST_BACKEND": f.ep,
               "ZHOST_HOST": "tcp://127.0.0.1:7100", "ZHOST_HEARTBEAT_MS": "1000"}
        for value, want in ((None, 0), ("0", 0), ("65536", 65536)):
            e = dict(env)
            if value is not None:
                e["ZHOST_BATCH_MAX_BYTES"] = value
            p = zhost.boot(actor="echo", heartbeat=False, environ=e)
            try:
                assert p.batch_max_bytes == want and p.batching == bool(want)
                p.ready()
                frames = f.recv_raw(3.0)
                assert frames[0] == b"w1"
                ready = P.decode(frames[1:])
                assert ready.cmd == P.READY and ready.body["proc"] == "w1@tcp://127.0.0.1:7100"
                assert ready.body.get("batch") == (True if want else None)
            finally:
                p.sock.close(linger=0)
        p = zhost.boot(heartbeat=False, environ=dict(env, ZHOST_BATCH_MAX_BYTES="65536"),
                       batch=False)
        assert not p.batching
        p.sock.close(linger=0)
        with pytest.raises(zhost.BootError) as info:
            zhost.boot(environ=dict(env, ZHOST_BATCH_MAX_BYTES="lots"))
        assert info.value.variable == "ZHOST_BATCH_MAX_BYTES"
    finally:
        f.close()


# --- receiving --------------------------------------------------------------

def test_batch_elements_are_dispatched_in_order(fake):
    c = fake.attach()
    port = c.actor("svc").port(1)
    seen = []
    port.on_message(lambda m: seen.append((m.parts, m.seq, m.src, m.port is port)))
    frame = batch(*[send_to(port.address, fake.port(9), b"m%d" % i, meta={"seq": i})
                    for i in range(20)])
    fake.send(frame)
    assert c.poll(0.3) == 20        # poll() counts messages, not frames
    assert seen == [([b"m%d" % i], i, fake.port(9), True) for i in range(20)]
    # queued ports get them in order too
    q = c.actor("svc").port(2)
    fake.send(batch(*[send_to(q.address, fake.port(9), b"q%d" % i) for i in range(5)]))
    assert [q.recv(timeout=2).parts[0] for _ in range(5)] == [b"q%d" % i for i in range(5)]


def test_lone_and_batched_interleave_in_order_with_returns(fake):
    c = fake.attach()
    port = c.actor("svc").port(1)
    events = []
    port.on_message(lambda m: events.append(m.parts[0]))
    c.on_undeliverable(lambda e: events.append(("returned", e.code, e.payload)))
    c.send(fake.port(5), b"lost")
    sent = fake.recv()
    ret = P.encode_return(sent, "NO_SUCH_PORT", "no port 5", "p@" + fake.ep, fake.port(5))
    assert len(ret) == 1
    src = fake.port(9)
    fake.send([send_to(port.address, src, b"a")])
    fake.send(batch(send_to(port.address, src, b"b"), ret[0], send_to(port.address, src, b"c")))
    fake.send([send_to(port.address, src, b"d")])
    fake.send(batch(send_to(port.address, src, b"e")))
    assert poll_until(c, lambda: len(events) == 6)
    assert events == [b"a", b"b", ("returned", "NO_SUCH_PORT", [b"lost"]), b"c", b"d", b"e"]


def test_a_raised_return_leaves_the_rest_of_the_batch_for_the_next_call(fake):
    c = fake.attach()
    port = c.actor("svc").port(1)
    seen = []
    port.on_message(lambda m: seen.append(m.parts[0]))
    c.send(fake.port(5), b"lost")
    ret = P.encode_return(fake.recv(), "PROC_GONE", "gone", "p@" + fake.ep, fake.port(5))
    src = fake.port(9)
    fake.send(batch(send_to(port.address, src, b"before"), ret[0],
                    send_to(port.address, src, b"after")))
    with pytest.raises(zhost.Undeliverable) as info:
        poll_until(c, lambda: False, 2.0)
    assert info.value.code == "PROC_GONE" and seen == [b"before"]
    assert c.poll(0) == 1 and seen == [b"before", b"after"]


def test_bounces_of_batched_sends_to_unknown_actors_and_ports(fake):
    c = fake.attach()
    c.actor("svc").port(1)
    src = fake.port(9)
    fake.send(batch(send_to("ghost.c<2>:1@" + fake.ep, src, b"g"),
                    send_to("svc.c<2>:7@" + fake.ep, src, b"p"),
                    send_to("ghost.c<2>:1@" + fake.ep, src, b"quiet", undeliverable=False)))
    c.poll(0.3)
    msgs = fake.recv_all()
    # the two RETURNs were made in one dispatch step: one BATCH of both
    assert [(m.name, len(m.elements)) for m in msgs] == [("BATCH", 2)]
    codes = [(r.name, zhost.Undeliverable.from_message(r).code, r.parts) for r in msgs[0].elements]
    assert codes == [("RETURN", "NO_SUCH_ACTOR", [b"g"]), ("RETURN", "NO_SUCH_PORT", [b"p"])]


def test_request_answered_inside_a_batch(fake):
    c = fake.attach()
    other = c.actor("svc").port(1)
    seen = []
    other.on_message(lambda m: seen.append(m.parts[0]))

    def answer(kind):
        req = fake.recv(3.0)
        if kind == "reply":
            fake.send(batch(send_to(other.address, fake.port(9), b"first"),
                            send_to(req.reply, fake.port(2), b"pong", meta={"seq": req.seq}),
                            send_to(other.address, fake.port(9), b"last")))
        else:
            ret = P.encode_return(req, "NO_SUCH_ACTOR", "none", "p@" + fake.ep, fake.port(2))
            fake.send(batch(send_to(other.address, fake.port(9), b"x"), ret[0]))

    t = threading.Thread(target=answer, args=("reply",))
    t.start()
    assert c.request(fake.port(2), b"ping", timeout=3) == [b"pong"]
    t.join(3)
    # the element before the answer was dispatched first; the one after waits
    assert seen == [b"first"]
    c.poll(0)
    assert seen == [b"first", b"last"]
    t = threading.Thread(target=answer, args=("return",))
    t.start()
    with pytest.raises(zhost.Undeliverable) as info:
        c.request(fake.port(2), b"ping", timeout=3)
    t.join(3)
    assert info.value.code == "NO_SUCH_ACTOR" and seen[-1] == b"x"


def test_malformed_batches_keep_what_stands(fake):
    c = fake.attach()
    port = c.actor("svc").port(1)
    seen = []
    port.on_message(lambda m: seen.append(m.parts[0]))
    src = fake.port(9)
    good = send_to(port.address, src, b"ok1")
    # an element that is a PING is dropped alone; a container fault keeps
    # the elements before it
    fake.send([b"ZH\x01\x12\x00\x00" + b"".join(
        len(e).to_bytes(4, "big") + e for e in (good, P.encode_control(P.PING)[0],
                                                  send_to(port.address, src, b"ok2")))])
    fake.send([P.encode_batch([send_to(port.address, src, b"ok3")])[0] + b"\x00\x00\x00\x00"])
    fake.send([send_to(port.address, src, b"ok4")])
    assert poll_until(c, lambda: len(seen) == 4)
    assert seen == [b"ok1", b"ok2", b"ok3", b"ok4"]


# --- sending ----------------------------------------------------------------

def test_posts_in_a_handler_leave_as_one_batch(fake):
    c = fake.attach()
    port = c.actor("svc").port(1)
    port.on_message(lambda m: m.respond(m.parts[0].upper()))
    src = fake.port(9)
    reqs = [send_to(port.address, src, b"r%d" % i, meta={"seq": i, "reply": fake.port(3)})
            for i in range(10)]
    fake.send(batch(*reqs[:6]))
    fake.send([reqs[6]])
    fake.send(batch(*reqs[7:]))
    time.sleep(0.1)                      # all three frames wait in the socket
    assert c.poll(0.5) == 10
    msgs = fake.recv_all()
    got, layout = sends_of(msgs)
    assert layout == [("BATCH", 10)]
    assert got == [("SEND", b"R%d" % i) for i in range(10)]
    assert [m.seq for m in msgs[0].elements] == list(range(10))
    assert all(m.src == "svc.c<2>@" + fake.ep and m.dest == fake.port(3)
               for m in msgs[0].elements)
    # one lone SEND whose handler posts three: one BATCH of three
    port.on_message(lambda m: [c.send(fake.port(4), b"%d" % i) for i in range(3)])
    fake.send([send_to(port.address, src, b"go")])
    c.poll(0.3)
    assert sends_of(fake.recv_all()) == ([("SEND", b"0"), ("SEND", b"1"), ("SEND", b"2")],
                                         [("BATCH", 3)])
    # one post in a handler: a one-element batch goes as a lone SEND
    port.on_message(lambda m: m.respond(b"only"))
    fake.send([reqs[0]])
    c.poll(0.3)
    assert sends_of(fake.recv_all()) == ([("SEND", b"only")], [("SEND", 1)])


def test_a_post_outside_any_step_leaves_at_once(fake):
    c = fake.attach()
    assert c.batching and not c.corked
    t0 = time.monotonic()
    c.send(fake.port(1), b"now")
    m = fake.recv(1.0)                   # without any further call into the client
    assert m.cmd == P.SEND and m.parts == [b"now"] and time.monotonic() - t0 < 0.5
    c.send(fake.port(1), b"again")
    assert fake.recv(1.0).parts == [b"again"]


def test_cork_flush_and_the_batch_context(fake):
    c = fake.attach()
    c.cork()
    assert c.corked
    for i in range(4):
        c.send(fake.port(1), b"c%d" % i)
    assert fake.recv_all(0.2) == []      # held
    c.flush()
    assert not c.corked
    assert sends_of(fake.recv_all()) == ([("SEND", b"c%d" % i) for i in range(4)],
                                         [("BATCH", 4)])
    with c.batch():
        c.send(fake.port(1), b"w0")
        with c.batch():                  # nested: held until the outer one ends
            c.send(fake.port(1), b"w1")
        assert fake.recv_all(0.1) == []
        c.send(fake.port(1), b"w2")
    assert sends_of(fake.recv_all()) == ([("SEND", b"w0"), ("SEND", b"w1"), ("SEND", b"w2")],
                                         [("BATCH", 3)])
    # flush() outside any cork sends what is held at once (here: nothing)
    c.flush()
    assert not c.corked and fake.recv_all(0.05) == []
    # the block raising still sends what it posted
    with pytest.raises(RuntimeError):
        with c.batch():
            c.send(fake.port(1), b"x0")
            c.send(fake.port(1), b"x1")
            raise RuntimeError("boom")
    assert sends_of(fake.recv_all())[1] == [("BATCH", 2)]


def test_payload_frames_and_big_messages_go_lone_after_what_is_held(fake):
    c = fake.attach({"batch_max_bytes": 2000})
    with c.batch():
        c.send(fake.port(1), b"a")
        c.send(fake.port(1), b"b")
        c.send(fake.port(1), b"big" * 2000, b"frame")      # payload frames: never batched
        c.send(fake.port(1), b"c")
        c.send(fake.port(1), b"d")
        c.send(fake.port(1), b"x" * 1990)                  # one frame, but over the limit
        c.send(fake.port(1), b"e")
    got, layout = sends_of(fake.recv_all())
    assert [p[:3] for _, p in got] == [b"a", b"b", b"big", b"c", b"d", b"xxx", b"e"]
    assert layout == [("BATCH", 2), ("SEND", 1), ("BATCH", 2), ("SEND", 1), ("SEND", 1)]


def test_batches_split_at_batch_max_bytes(fake):
    limit = 1000
    c = fake.attach({"batch_max_bytes": limit})
    assert c.batch_max_bytes == limit
    payload = b"p" * 200
    with c.batch():
        for i in range(20):
            c.send(fake.port(1), payload + b"%02d" % i)
    msgs = fake.recv_all()
    got, layout = sends_of(msgs)
    assert [p[-2:] for _, p in got] == [b"%02d" % i for i in range(20)]
    assert all(len(m.frames) == 1 and len(m.frames[0]) <= limit for m in msgs)
    assert len(msgs) > 1 and all(m.cmd == P.BATCH for m in msgs[:-1])
    # each frame was filled: the next element would not have fitted
    elem = len(msgs[0].elements[0].frames[0]) + P.BATCH_LEN_SIZE
    assert all(len(m.frames[0]) + elem > limit for m in msgs[:-1])
    # posts in a handler split the same way
    port = c.actor("svc").port(1)
    port.on_message(lambda m: [c.send(fake.port(1), payload) for _ in range(9)])
    fake.send([send_to(port.address, fake.port(9), b"go")])
    c.poll(0.3)
    msgs = fake.recv_all()
    assert sum(len(m.elements) if m.cmd == P.BATCH else 1 for m in msgs) == 9
    assert len(msgs) >= 3 and all(len(m.frames[0]) <= limit for m in msgs)


def test_a_request_in_a_handler_is_not_held_while_it_waits(fake):
    c = fake.attach()
    port = c.actor("svc").port(1)
    answers = []

    @port.on_message
    def ask(msg):
        c.send(fake.port(7), b"note")            # held ...
        answers.append(c.request(fake.port(2), b"q", timeout=3))   # ... flushed to wait

    def peer():
        got = []
        while len(got) < 2:
            m = fake.recv(3.0)
            got.extend(m.elements if m.cmd == P.BATCH else [m])
        assert [m.parts[0] for m in got] == [b"note", b"q"]
        fake.send([send_to(got[1].reply, fake.port(2), b"a", meta={"seq": got[1].seq})])

    t = threading.Thread(target=peer)
    t.start()
    fake.send([send_to(port.address, fake.port(9), b"go")])
    assert poll_until(c, lambda: answers, 3.0)
    t.join(3)
    assert answers == [[b"a"]]


def test_a_full_send_queue_times_out_as_a_lone_send_does(fake):
    c = fake.attach()
    c.sock.setsockopt(zmq.SNDHWM, 1)
    fake.router.close(linger=0)          # nobody reads: the pipe fills
    with pytest.raises(zhost.Timeout):
        for _ in range(100000):
            c.send(fake.port(1), b"z" * 1000, timeout=0.2)
    with pytest.raises(zhost.Timeout):
        with c.batch():
            for _ in range(3):
                c.send(fake.port(1), b"y", timeout=0.2)
    assert not c.corked and c._held == []
    fake.router = fake.ctx.socket(zmq.ROUTER)       # for the fixture's close()


def test_bootstrap_liveness_bounds_the_reattach(fake):
    c = fake.attach({"liveness": 5})
    assert c.liveness == 5
    d = FakeBroker()
    try:
        p = d.attach({"liveness": None})
        assert p.liveness == 3                                 # absent: the default
        p.close(timeout=0.05)
    finally:
        d.close()
