"""Liveness and close (docs/protocol.md §7, docs/broker.md "Liveness and close"):
PING/PONG, dropping silent clients, BYE answered with BYE after everything
sent before it was routed (the clean detach of libzmq#4660)."""

import time

import pytest
import zmq

import zhp


def test_broker_pings_a_silent_client(broker, client):
    b = broker("--heartbeat", "100ms")
    c = client(b)
    c.auto_pong = False
    t0 = time.monotonic()
    msg = c.recv(timeout=2.0, auto_pong=False)
    elapsed = time.monotonic() - t0
    assert msg.cmd == zhp.PING, msg
    assert elapsed < 1.0, "PING after %.2fs with a 100ms heartbeat" % elapsed
    assert msg.ttl == 0 and msg.flags == 0


def test_broker_answers_ping_with_pong(broker, client):
    b = broker()
    c = client(b)
    for _ in range(3):
        c.send_frames(zhp.control(zhp.PING))
        msg = c.expect(zhp.PONG, timeout=2.0)
        assert msg.frames[0] == zhp.header(zhp.PONG)


def test_silent_client_dropped_after_liveness_x_heartbeat(broker, client):
    b = broker("--heartbeat", "100ms")
    other = client(b)
    silent = client(b)
    t_last = time.monotonic()  # the ATTACH was its last message
    port = silent.port(3)
    pings = 0
    bye = None
    deadline = time.monotonic() + 3.0
    while bye is None and time.monotonic() < deadline:
        msg = silent.try_recv(0.05, auto_pong=False, keepalive=[other])
        if msg is None:
            continue
        if msg.cmd == zhp.PING:
            pings += 1
        elif msg.cmd == zhp.BYE:
            bye = msg
    elapsed = time.monotonic() - t_last
    assert bye is not None, "silent client not dropped within 3s (heartbeat 100ms, liveness 3)"
    assert bye.body.get("reason") == "heartbeat expired", bye
    assert elapsed >= 0.25, "dropped after %.2fs, before 3 x 100ms" % elapsed
    assert pings >= 1, "the broker PINGs before it gives up"
    sent = other.send(port, [b"hello?"], meta={"seq": 1})
    ret = other.wait_for(lambda m: m.cmd == zhp.RETURN, timeout=2.0)
    zhp.check_return(ret, "PROC_GONE", sent, b.ep)
    # the other client, which answered its PINGs, is still attached
    assert other.request("ping")["ok"] is True


def test_client_answering_pings_is_kept(broker, client):
    b = broker("--heartbeat", "100ms")
    a, bob = client(b), client(b)
    # 1.2 s = 12 heartbeats: both heartbeat as live clients do (PING when
    # silent, PONG to PINGs) and stay attached
    assert bob.drain(1.2, keepalive=[a]) == []
    a.send(bob.port(), [b"still here"])
    assert bob.expect(zhp.SEND).parts == [b"still here"]


def test_liveness_flag(broker, client):
    b = broker("--heartbeat", "100ms", "--liveness", "8")
    other = client(b)
    silent = client(b)
    t0 = time.monotonic()
    bye = None
    deadline = t0 + 4.0
    while bye is None and time.monotonic() < deadline:
        msg = silent.try_recv(0.05, auto_pong=False, keepalive=[other])
        if msg is not None and msg.cmd == zhp.BYE:
            bye = msg
    elapsed = time.monotonic() - t0
    assert bye is not None and bye.body.get("reason") == "heartbeat expired"
    assert elapsed >= 0.7, "dropped after %.2fs with liveness 8 x 100ms" % elapsed


def test_any_message_is_a_sign_of_life(broker, client):
    b = broker("--heartbeat", "100ms")
    a, bob = client(b), client(b)
    a.auto_pong = False
    # a never answers PINGs but sends to bob every 50 ms for 1 s
    t_end = time.monotonic() + 1.0
    n = 0
    while time.monotonic() < t_end:
        a.send(bob.port(), [b"%d" % n], returnable=False)
        n += 1
        msg = a.try_recv(0.05, auto_pong=False, keepalive=[bob])
        assert msg is None or msg.cmd == zhp.PING, msg
    got = bob.drain(0.2)
    assert len([m for m in got if m.cmd == zhp.SEND]) == n
    assert not [m for m in got if m.cmd == zhp.BYE]
    bob.send(a.port(), [b"you are alive"])
    msg = a.wait_for(lambda m: m.cmd != zhp.PING, timeout=2.0)
    assert msg.cmd == zhp.SEND, msg


def test_bye_is_answered_with_bye_and_route_goes(broker, client):
    b = broker()
    a, bob = client(b), client(b)
    body, before = bob.bye("done")
    assert isinstance(body.get("reason"), str)
    sent = a.send(bob.port(), [b"x"])
    zhp.check_return(a.expect(zhp.RETURN), "PROC_GONE", sent, b.ep)
    # after BYE, a SEND from that connection needs a new handshake
    bob.send(a.port(), [b"after bye"], meta={"seq": 4})
    bob.expect_error(401)


@pytest.mark.parametrize("via", ["control", "frontend"])
def test_burst_before_bye_is_all_delivered(broker, client, via):
    """libzmq#4660: a DEALER closed right after a burst can lose its tail over
    ipc. With BYE -> BYE the sender closes (linger 0) only once the broker has
    routed all of it."""
    n = 5000
    b = broker("--hwm", "100000")
    receiver = client(b, rcvhwm=0)
    sender = client(b, via=via, sndhwm=0, linger=0)
    dest = receiver.port(1)
    for i in range(n):
        sender.send(dest, [b"burst-%d" % i], meta={"seq": i}, returnable=False)
    body, before = sender.bye("burst done", timeout=10.0)
    assert before == [], before[:3]
    sender.close()
    seqs = []
    deadline = time.monotonic() + 20.0
    while len(seqs) < n and time.monotonic() < deadline:
        msg = receiver.try_recv(0.5)
        if msg is not None:
            assert msg.cmd == zhp.SEND, msg
            seqs.append(msg.meta["seq"])
    assert len(seqs) == n, "received %d of %d before the BYE" % (len(seqs), n)
    assert seqs == list(range(n))


def test_repeated_bursts_over_ipc_then_bye(broker, client):
    """Several short-lived control clients, each a burst then BYE, linger 0."""
    b = broker("--hwm", "100000")
    receiver = client(b, rcvhwm=0)
    total = 0
    for round_ in range(10):
        s = client(b, via="control", sndhwm=0, linger=0)
        for i in range(500):
            s.send(receiver.port(), [b"r"], meta={"seq": round_ * 1000 + i}, returnable=False)
            total += 1
        s.bye("round %d" % round_, timeout=10.0)
        s.close()
    got = 0
    deadline = time.monotonic() + 20.0
    while got < total and time.monotonic() < deadline:
        if receiver.try_recv(0.5) is not None:
            got += 1
    assert got == total, "%d of %d delivered" % (got, total)
