"""Routing between attached clients: SEND A -> broker -> B (docs/protocol.md §4).
The broker forwards the head and payload frames unchanged but for ttl."""

import pytest

import zhp
from zhp import F_INLINE, F_RETURN


def pair(broker, client, *args):
    b = broker(*args)
    return b, client(b, label="alice"), client(b, label="bob")


CASES = {
    "inline-only": (dict(parts=[b"\x00hello\xff"], inline=True)),
    "frames-only": (dict(parts=[b"one", b"\x00" * 1000, b"three"], inline=False)),
    "inline-and-frames": (dict(parts=[b"head part", bytes(range(256)) * 40, b"", b"z"],
                              inline=True)),
    "empty-inline": (dict(parts=[b""], inline=True)),
    "no-parts": (dict(parts=[], inline=False)),
    "big-frame": (dict(parts=[b"meta-ish", b"\xab" * (1 << 20)], inline=True)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_payload_parts_arrive_unchanged(broker, client, case):
    b, a, bob = pair(broker, client)
    kw = CASES[case]
    dest = bob.port(7, actor="inbox")
    meta = {"seq": 42, "headers": {"trace": "t-1"}, "ts": 1234567890123}
    sent = a.send(dest, meta=meta, **kw)
    msg = bob.expect(zhp.SEND)
    assert msg.dest == dest
    assert msg.src == a.actor
    assert msg.meta == meta
    assert msg.parts == list(kw["parts"])
    assert len(msg.frames) == len(sent), "payload frames stay frames"
    assert msg.frames[1:] == sent[1:]
    # the head is forwarded byte for byte except the ttl byte (offset 4)
    assert msg.frames[0][:4] == sent[0][:4] and msg.frames[0][5:] == sent[0][5:]
    expect_flags = F_RETURN | (F_INLINE if kw["inline"] and kw["parts"] else 0)
    assert msg.flags == expect_flags
    assert a.try_recv(0.1) is None, "the sender gets nothing back"


def test_ttl_lowered_exactly_once(broker, client):
    b, a, bob = pair(broker, client)
    for ttl_in in (64, 1, 255):
        a.send(bob.port(), [b"t"], ttl=ttl_in)
        msg = bob.expect(zhp.SEND)
        assert msg.ttl == ttl_in - 1, (ttl_in, msg.ttl)


def test_src_may_be_proc_or_any_actor_of_the_sender(broker, client):
    b, a, bob = pair(broker, client)
    for src in (a.proc, zhp.actor_addr(a.proc, "other"), zhp.actor_addr(a.proc, "x9")):
        a.send(bob.port(), [b"s"], src=src)
        msg = bob.expect(zhp.SEND)
        assert msg.src == src


def test_unflagged_send_is_delivered_with_flags_unchanged(broker, client):
    b, a, bob = pair(broker, client)
    a.send(bob.port(), [b"u"], returnable=False)
    msg = bob.expect(zhp.SEND)
    assert msg.flags == F_INLINE


def test_both_directions_and_order(broker, client):
    b, a, bob = pair(broker, client)
    n = 500
    for i in range(n):
        a.send(bob.port(), [b"%d" % i], meta={"seq": i})
    got = [bob.expect(zhp.SEND).meta["seq"] for _ in range(n)]
    assert got == list(range(n)), "one sender's messages keep their order"
    bob.send(a.port(2), [b"back"])
    assert a.expect(zhp.SEND).parts == [b"back"]


def test_send_to_self(broker, client):
    b, a, _ = pair(broker, client)
    a.send(a.port(9), [b"me"])
    msg = a.expect(zhp.SEND)
    assert msg.parts == [b"me"] and msg.dest == a.port(9)


def test_control_client_and_frontend_client_talk(broker, client):
    b = broker()
    front = client(b)
    ctl = client(b, via="control")
    front.send(ctl.port(), [b"to control"])
    assert ctl.expect(zhp.SEND).parts == [b"to control"]
    ctl.send(front.port(), [b"to frontend"])
    assert front.expect(zhp.SEND).parts == [b"to frontend"]


def test_second_frontend_is_self_too(broker, client):
    b = broker(frontend=("tcp://127.0.0.1:0", "tcp://127.0.0.1:0"))
    a = client(b)  # attached on frontend[0]
    c = zhp.Client(a.sock.context, b.frontend[1], name="second")
    try:
        c.attach()
        # a dest naming the peer by the other advertised endpoint is still local
        dest = "x.%s:1@%s" % (zhp.proc_id(c.proc), b.advertise[1])
        a.send(dest, [b"via second ep"])
        assert c.expect(zhp.SEND).parts == [b"via second ep"]
    finally:
        c.close()
