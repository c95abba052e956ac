"""BATCH: many one-frame messages in one frame (docs/protocol.md §14;
broker/zh_router.c BR-7, broker/zh_coalesce.c CO-1, CO-2).

Scenarios, as a client library sees the broker: batching is negotiated in
ATTACH/BOOTSTRAP (and READY for spawned procs, HELLO/WELCOME between
brokers) and off with --batch-max-bytes 0; a BATCH is refused whole before
the handshake (401), unnegotiated (400) or over batch_max_bytes (413), and
a malformed container after the good elements (400); every element is
handled as the same message alone (its own ERROR or RETURN, spoofed src
refused, ttl lowered); what a batch-capable receiver gets is coalesced
into BATCH frames, a receiver that did not negotiate gets lone SENDs, and
one sender's messages keep their order across lone and batched; counters
count messages; links between brokers batch too.
"""

import os
import struct
import time

import pytest

import zhp
from conftest import BUILD_DIR
from test_peers import wait_ready

ECHO = os.path.join(BUILD_DIR, "zhost-echo")


def attach_batch(client, b, label, batch=True):
    c = client(b, label, attach=False)
    c.attach(label, batch=batch)
    return c


def element(c, dest, text, seq=None, flags=zhp.F_RETURN, ttl=zhp.DEFAULT_TTL, src=None):
    meta = {"seq": seq} if seq is not None else None
    frames = zhp.encode_send(dest, src or c.actor, [text], meta, True, ttl, flags & zhp.F_RETURN)
    assert len(frames) == 1
    return frames[0]


def texts(c, n, timeout=5.0):
    got = []
    for _ in range(n):
        m = c.expect(zhp.SEND, timeout=timeout)
        got.append(m.parts[0])
    return got


def test_batching_is_negotiated_in_attach_and_bootstrap(broker, client):
    b = broker()
    yes = attach_batch(client, b, "yes")
    assert yes.bootstrap["batch"] is True
    assert yes.bootstrap["batch_max_bytes"] == 256 * 1024
    assert yes.bootstrap["liveness"] == 3
    no = attach_batch(client, b, "no", batch=False)
    assert no.bootstrap["batch"] is False
    plain = client(b, "plain")
    assert plain.bootstrap["batch"] is False
    # the latest ATTACH on a connection decides
    no.send_frames(zhp.control(zhp.ATTACH, {"label": "no", "batch": True}))
    again = no.expect(zhp.BOOTSTRAP)
    assert again.body["batch"] is True and again.body["proc"] == no.proc
    off = broker("--batch-max-bytes", "0")
    asked = attach_batch(client, off, "asked")
    assert asked.bootstrap["batch"] is False and asked.bootstrap["batch_max_bytes"] == 0
    low = broker("--max-msg-bytes", "4096")
    assert attach_batch(client, low, "low").bootstrap["batch_max_bytes"] == 4096
    assert "lowered to --max-msg-bytes" in low.stderr_text()


def test_refusals_of_the_whole_frame(broker, client, zctx):
    b = broker("--batch-max-bytes", "2048")
    raw = zhp.Client(zctx, b.frontend[0], name="raw")
    try:
        raw.send_frames([zhp.encode_batch([b"ZH\x01\x20\x00\x00"])])
        raw.expect_error(401)
    finally:
        raw.close()
    a = attach_batch(client, b, "a")
    plain = client(b, "plain")
    one = element(plain, a.port(1), b"x")
    plain.send_frames([zhp.encode_batch([one])])
    err = plain.expect_error(400)
    assert "did not negotiate" in err.body["reason"]
    big = element(a, a.port(1), b"y" * 2100)
    a.send_frames([zhp.encode_batch([big])])
    assert "batch_max_bytes" in a.expect_error(413).body["reason"]
    a.send_frames([zhp.encode_batch([element(a, a.port(1), b"z")]), b"extra"])
    a.expect_error(400)
    a.send_frames([zhp.header(zhp.BATCH)])
    assert "no elements" in a.expect_error(400).body["reason"]
    a.send_frames([zhp.encode_batch([element(a, a.port(1), b"t")], ttl=1)])
    a.expect_error(400)
    assert a.try_recv(0.2) is None  # nothing of any of them was delivered
    stats = client(b, via="control").request("stats")
    assert stats["rejected"]["413"] == 1 and stats["rejected"]["401"] == 1


def test_a_malformed_container_delivers_the_elements_before_the_fault(broker, client):
    b = broker()
    a = attach_batch(client, b, "a")
    good = [element(a, a.port(1), b"one"), element(a, a.port(1), b"two")]
    for tail, needle in ((struct.pack(">I", 0), "length 0"),
                         (struct.pack(">I", 999) + b"ZH", "claims 999 bytes"),
                         (b"\x00\x01", "too few for a length")):
        a.send_frames([zhp.encode_batch(good) + tail])
        assert texts(a, 2) == [b"one", b"two"]
        assert needle in a.expect_error(400).body["reason"]


def test_each_element_is_handled_as_a_lone_message(broker, client):
    """A PING element, an unknown command, a SEND of version 2, a spoofed src, ttl 0, a dest
    that does not exist: each gets its own answer, and the good elements
    around them are delivered in order."""
    b = broker()
    a = attach_batch(client, b, "a")
    victim = client(b, "victim")
    elements = [
        element(a, a.port(1), b"first", seq=1),
        zhp.header(zhp.PING),
        zhp.header(0x7f),
        b"ZH\x02" + element(a, a.port(1), b"version 2")[3:],
        element(a, a.port(1), b"spoofed", seq=2, src=victim.actor),
        element(a, a.port(1), b"expired", seq=3, ttl=0),
        element(a, "nosuch.x:1@" + b.ep, b"nowhere", seq=4),
        element(a, a.port(1), b"last", seq=5),
    ]
    a.send_frames([zhp.encode_batch(elements)])
    got = [a.recv(timeout=5) for _ in range(8)]
    assert [m.parts[0] for m in got if m.cmd == zhp.SEND] == [b"first", b"last"]
    errors = [m.body for m in got if m.cmd == zhp.ERROR]
    assert [e["code"] for e in errors] == [400, 404, 426, 403], errors
    assert errors[3]["seq"] == 2 and errors[3]["dest"] == a.port(1)
    returns = [m for m in got if m.cmd == zhp.RETURN]
    assert [r.meta["failures"][0]["code"] for r in returns] == ["TTL_EXPIRED", "NO_SUCH_PROC"]
    assert victim.try_recv(0.2) is None


def test_a_batch_receiver_gets_batches_in_order_and_counters_count_messages(broker, client):
    b = broker()
    a = attach_batch(client, b, "a")
    r = attach_batch(client, b, "r")
    ctl = client(b, via="control")
    before = ctl.request("stats")["routed"]
    a.send_frames([zhp.encode_batch([element(a, r.port(1), b"%d" % i) for i in range(200)])])
    assert texts(r, 200) == [b"%d" % i for i in range(200)]
    assert 1 <= r.batch_frames < 200, r.batch_frames  # coalesced, not 200 frames
    # every element was given the ttl one lower
    stats = ctl.request("stats")
    assert stats["routed"] - before >= 200
    procs = stats["procs"]
    assert procs[zhp.proc_id(a.proc)]["in"] == 200
    assert procs[zhp.proc_id(r.proc)]["out"] == 200


def test_a_receiver_that_did_not_negotiate_gets_lone_sends(broker, client):
    b = broker()
    a = attach_batch(client, b, "a")
    plain = client(b, "plain")
    a.send_frames([zhp.encode_batch([element(a, plain.port(1), b"%d" % i, ttl=9)
                                     for i in range(50)])])
    got = [plain.expect(zhp.SEND, timeout=5) for _ in range(50)]
    assert [m.parts[0] for m in got] == [b"%d" % i for i in range(50)]
    assert plain.batch_frames == 0
    assert all(m.ttl == 8 for m in got)  # lowered in place in each element


def test_one_senders_order_holds_across_lone_batched_and_multi_frame(broker, client):
    b = broker()
    a = attach_batch(client, b, "a")
    r = attach_batch(client, b, "r")
    want = []
    for round_ in range(20):
        a.send(r.port(1), [b"lone %d" % round_])
        want.append(b"lone %d" % round_)
        a.send_frames([zhp.encode_batch([element(a, r.port(1), b"b%d.%d" % (round_, i))
                                         for i in range(5)])])
        want += [b"b%d.%d" % (round_, i) for i in range(5)]
        a.send(r.port(1), [b"multi %d" % round_, b"second frame"], inline=False)
        want.append(b"multi %d" % round_)
    assert texts(r, len(want)) == want


def test_a_spawned_proc_is_told_the_limit(broker, client):
    b = broker("--batch-max-bytes", "100000", "--ready-timeout", "1s")
    ctl = client(b, via="control")
    ans = ctl.request("spawn", name="env", argv=["/bin/sh", "-c", "echo limit=$ZHOST_BATCH_MAX_BYTES"],
                      timeout=10)
    assert not ans["ok"]  # it never says READY
    tail = ctl.request("status", name="env")["tail"]
    assert "limit=100000" in tail, tail


def test_links_between_brokers_batch(broker, client):
    """A client on A sends a BATCH of 300 to a batch client on B: they
    arrive in order; A's link to B negotiated BATCH (WELCOME) and counts
    300 forwarded."""
    b = broker()
    a = broker()
    r = attach_batch(client, b, "r")
    s = attach_batch(client, a, "s")
    # the first message opens the link; wait until it is up
    s.send(r.port(1), [b"hello"])
    assert texts(r, 1, timeout=10) == [b"hello"]
    s.send_frames([zhp.encode_batch([element(s, r.port(1), b"%d" % i) for i in range(300)])])
    assert texts(r, 300, timeout=10) == [b"%d" % i for i in range(300)]
    link = client(a, via="control").request("stats")["peers"][b.ep]
    assert link["state"] == "up" and link["forwarded"] == 301, link
    assert r.batch_frames >= 1


def test_a_full_receiver_returns_each_flagged_element_overloaded(broker, client):
    """R stops reading; A keeps sending batches of flagged messages: once
    R's queue is full the broker's BATCH toward R is refused, and every
    element in it comes back OVERLOADED (none is lost silently)."""
    b = broker("--hwm", "2")
    a = attach_batch(client, b, "a", )
    r = attach_batch(client, b, "r")
    r.sock.setsockopt(__import__("zmq").RCVHWM, 1)
    sent = 0
    returned = []
    deadline = time.monotonic() + 20
    while not returned and time.monotonic() < deadline:
        a.send_frames([zhp.encode_batch([element(a, r.port(1), b"x" * 200, seq=sent + i)
                                         for i in range(100)])])
        sent += 100
        m = a.try_recv(0.01)
        while m is not None:
            if m.cmd == zhp.RETURN:
                returned.append(m)
            m = a.try_recv(0.0)
    assert returned, "no OVERLOADED after %d messages" % sent
    assert all(m.meta["failures"][0]["code"] == "OVERLOADED" for m in returned)
    stats = client(b, via="control").request("stats")
    assert stats["returned"]["OVERLOADED"] >= len(returned)


def test_mutated_batches_never_hurt_the_broker(broker, client):
    """300 BATCH frames with random bytes flipped, cut or grown (a fixed
    seed): the broker answers what it can, stays up, and afterwards routes
    a clean batch as before. Under the ASan build this also checks every
    element walk stays inside its frame."""
    import random
    rng = random.Random(1207)
    b = broker()
    a = attach_batch(client, b, "a")
    r = attach_batch(client, b, "r")
    good = [element(a, r.port(1), b"%d" % i, seq=i) for i in range(8)]
    base = bytearray(zhp.encode_batch(good))
    for n in range(300):
        frame = bytearray(base)
        for _ in range(rng.randint(1, 6)):
            op = rng.random()
            i = rng.randrange(len(frame))
            if op < 0.6:
                frame[i] = rng.randrange(256)
            elif op < 0.8:
                frame = frame[:i] if i > 6 else frame
            else:
                frame[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 9)))
        frame[0:4] = b"ZH\x01\x12"  # keep it a BATCH, so the walk is what is tried
        a.send_frames([bytes(frame)])
        if n % 50 == 49:
            a.drain(0.05)
            r.drain(0.05)
    a.drain(0.3)
    r.drain(0.3)
    assert b.alive()
    a.send_frames([zhp.encode_batch([element(a, r.port(1), b"after %d" % i) for i in range(5)])])
    got = []
    deadline = time.monotonic() + 5
    while len(got) < 5 and time.monotonic() < deadline:
        m = r.try_recv(0.2)
        if m is not None and m.cmd == zhp.SEND and m.parts[0].startswith(b"after"):
            got.append(m.parts[0])
    assert got == [b"after %d" % i for i in range(5)]


def test_a_batch_for_a_vanished_receiver_returns_each_flagged_element(broker, client):
    """R's socket closes without BYE: its connection is still listed (until
    liveness), but libzmq no longer has its routing id, so the BATCH the
    broker made for R is refused at send: each flagged element comes back
    PROC_GONE, the unflagged one is dropped and counted."""
    b = broker()
    a = attach_batch(client, b, "a")
    r = attach_batch(client, b, "r")
    port = r.port(1)
    r.close()
    ctl = client(b, via="control")
    dropped_before = ctl.request("stats")["dropped"]
    deadline = time.monotonic() + 10
    returned = []
    while not returned:
        assert time.monotonic() < deadline, "no PROC_GONE for a vanished receiver"
        a.send_frames([zhp.encode_batch([element(a, port, b"f1", seq=1),
                                         element(a, port, b"u", seq=2, flags=0),
                                         element(a, port, b"f3", seq=3)])])
        returned = [m for m in a.drain(0.2) if m.cmd == zhp.RETURN]
    assert [m.meta["meta"]["seq"] for m in returned][-2:] == [1, 3], returned
    assert all(m.meta["failures"][0]["code"] == "PROC_GONE" for m in returned)
    assert "connection is gone" in returned[-1].meta["failures"][0]["reason"]
    assert ctl.request("stats")["dropped"] > dropped_before
