"""Brokers that talk to each other over peer links (docs/protocol.md §4, §6;
broker/zh_peers.c), on loopback: every broker here is its own process with
its own frontend on 127.0.0.1, so an address at another broker's endpoint
crosses a real TCP link, dialled on first use (HELLO → WELCOME).

Scenarios: a client on A asks an echo on B, and one on B asks an echo on A
(zhost-ping, unchanged); a missing proc on B is NO_SUCH_PROC, not
HOST_UNREACHABLE; a burst sent before the link is up arrives whole and in
order; a send toward a broker that is down is returned HOST_UNREACHABLE at
the delivery timeout and not before; a peer's messages are never relayed;
a peer that HELLOs as one endpoint and sends as another is refused 403;
B restarted is a new incarnation, its old procs are NO_SUCH_PROC, and the
link comes back without restarting A; per-peer counters in `stats`.
"""

import os
import socket
import subprocess
import time

import pytest

import zhp
from conftest import BUILD_DIR

ECHO = os.path.join(BUILD_DIR, "zhost-echo")
PING = os.path.join(BUILD_DIR, "zhost-ping")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def ping(frontend, actor, count=3, timeout=20):
    return subprocess.run([PING, "-c", str(count), frontend, actor], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=timeout)


def send_until_it_arrives(sender, receiver, timeout):
    """Until the sender's broker has said HELLO to a restarted peer, a SEND
    may be refused there (401, counted): send until one arrives, bounded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sender.send(receiver.port(1), [b"after"])
        m = receiver.try_recv(0.3)
        if m is not None and m.cmd == zhp.SEND and m.parts == [b"after"]:
            return
    raise AssertionError("no message crossed to the restarted broker")


@pytest.fixture
def two(broker):
    """Broker A (no procs) and broker B (a spawned zhost-echo named echo)."""
    b = broker("--spawn", "echo=" + ECHO)
    a = broker("--spawn", "echo=" + ECHO)
    return a, b


def wait_ready(c, name, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if c.request("status", name=name)["proc"]["status"] == "ready":
            return
        time.sleep(0.05)  # poll interval
    raise AssertionError("%s not ready" % name)


def test_clients_ask_echos_on_the_other_broker_both_ways(two, client):
    a, b = two
    for home in (a, b):
        wait_ready(client(home, via="control"), "echo")
    r = ping(a.frontend[0], "echo.echo@" + b.ep)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("reply from echo.echo@%s" % b.ep) == 3, r.stdout
    r = ping(b.frontend[0], "echo.echo@" + a.ep)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("reply from echo.echo@%s" % a.ep) == 3, r.stdout


def test_missing_proc_on_the_other_broker_is_no_such_proc(two):
    a, b = two
    r = ping(a.frontend[0], "echo.ghost@" + b.ep, count=1)
    assert r.returncode != 0
    assert "NO_SUCH_PROC" in r.stdout + r.stderr, r.stdout + r.stderr
    assert "HOST_UNREACHABLE" not in r.stdout + r.stderr


def test_a_burst_before_the_link_is_up_arrives_in_order(broker, client):
    """Order per sender→receiver holds across brokers (PL-1): 300 messages
    sent at once, before any link exists, arrive whole and in order."""
    a, b = broker(), broker()
    sender, receiver = client(a), client(b)
    dest = receiver.port(3)
    for i in range(300):
        sender.send(dest, [b"%d" % i])
    got = []
    deadline = time.monotonic() + 15
    while len(got) < 300 and time.monotonic() < deadline:
        m = receiver.try_recv(0.5)
        if m is not None and m.cmd == zhp.SEND:
            assert m.src == sender.actor
            got.append(int(m.parts[0]))
    assert got == list(range(300))
    stats = client(a, via="control").request("stats")
    link = stats["peers"][b.ep]
    assert link["state"] == "up" and link["pending"] == 0 and link["forwarded"] >= 300, link


def test_send_to_a_broker_that_is_down_returns_at_the_delivery_timeout(broker, client):
    """PL-2: HOST_UNREACHABLE at the delivery timeout and never before, even
    though the connection is refused at once."""
    a = broker("--delivery-timeout", "1500ms")
    c = client(a)
    down = "tcp://127.0.0.1:%d" % free_port()
    dest = "x.nobody:1@" + down
    t0 = time.monotonic()
    sent = c.send(dest, [b"hello?"], meta={"seq": 5})
    msg = c.expect(zhp.RETURN, timeout=10)
    waited = time.monotonic() - t0
    root = zhp.check_return(msg, "HOST_UNREACHABLE", sent, a.ep)
    assert down in root["reason"], root
    assert 1.45 <= waited < 6.0, waited
    link = client(a, via="control").request("stats")["peers"][down]
    assert link["returned"]["HOST_UNREACHABLE"] == 1 and link["state"] != "up", link


def test_a_peer_is_not_relayed_and_must_send_from_its_endpoint(broker, client, zctx):
    """A connection that says HELLO is a peer principal: its src must be at
    its HELLO endpoint (else ERROR 403, nothing routed), and a dest at a
    third broker is NO_SUCH_PROC (no relaying)."""
    a = broker()
    victim = client(a)
    peer_ep = "tcp://127.0.0.1:%d" % free_port()
    hostile = zhp.Client(zctx, a.frontend[0], name="hostile")
    try:
        hostile.send_frames(zhp.control(zhp.HELLO, {"endpoint": peer_ep, "incarnation": 1}))
        welcome = hostile.expect(zhp.WELCOME)
        assert welcome.body["endpoint"] == a.ep
        # src at another endpoint than its HELLO's: refused, never routed
        hostile.send(victim.port(2), [b"spoof"], src="x.y@tcp://127.0.0.1:1")
        hostile.expect_error(403)
        assert victim.try_recv(0.3) is None
        # src at its own endpoint: routed
        hostile.send(victim.port(2), [b"fine"], src="x.y@" + peer_ep)
        got = victim.expect(zhp.SEND)
        assert got.parts == [b"fine"] and got.src == "x.y@" + peer_ep
        # a dest at a third broker: not relayed
        third = "x.z:1@tcp://127.0.0.1:%d" % free_port()
        sent = hostile.send(third, [b"relay me"], src="x.y@" + peer_ep)
        zhp.check_return(hostile.expect(zhp.RETURN), "NO_SUCH_PROC", sent, a.ep)
    finally:
        hostile.close()


def test_a_restarted_peer_is_a_new_incarnation(broker, client, tmp_path):
    """B restarted on the same endpoint: A's link HELLOs again on its own
    (ERROR 401 from the new B, or silence), the old client ids of B are
    NO_SUCH_PROC, and traffic flows without restarting A."""
    port = free_port()
    b_ep = "tcp://127.0.0.1:%d" % port
    a = broker("--heartbeat", "200ms")
    b = broker("--heartbeat", "200ms", frontend=(b_ep,), runtime_dir=tmp_path / "b1")
    sender = client(a)
    old = client(b)
    sender.send(old.port(1), [b"before"])
    assert old.expect(zhp.SEND).parts == [b"before"]
    first = client(a, via="control").request("stats")["peers"][b_ep]["incarnation"]
    old_port = old.port(1)
    b.stop()
    b2 = broker("--heartbeat", "200ms", frontend=(b_ep,), runtime_dir=tmp_path / "b2")
    fresh = client(b2)
    send_until_it_arrives(sender, fresh, timeout=10)
    link = client(a, via="control").request("stats")["peers"][b_ep]
    assert link["state"] == "up" and link["incarnation"] != first, link
    assert link["reconnects"] >= 1, link
    sent = sender.send(old_port, [b"to the old id"])
    msg = sender.wait_for(lambda m: m.cmd == zhp.RETURN, timeout=5)
    zhp.check_return(msg, "NO_SUCH_PROC", sent, b_ep, ttl=63)
    assert "state=restarted" in a.stderr_tail(200)


def test_links_are_bounded_and_unused_dead_links_are_forgotten(broker, client):
    """PL-5: with --max-peers 3, SENDs to three made-up endpoints take the
    three links; a fourth endpoint is refused HOST_UNREACHABLE at once.
    Once the three have returned their messages and sat unused for the
    delivery timeout, they are forgotten (stats no longer lists them, the
    log says so) and the fourth endpoint gets a link."""
    b = broker("--max-peers", "3", "--delivery-timeout", "1s")
    c = client(b, "c")
    dead = ["tcp://127.0.0.1:%d" % free_port() for _ in range(4)]
    for ep in dead[:3]:
        c.send("x.y:1@" + ep, [b"to nobody"])
    t0 = time.monotonic()
    sent = c.send("x.y:1@" + dead[3], [b"one too many"])
    first = c.expect(zhp.RETURN, timeout=5)
    assert time.monotonic() - t0 < 0.9  # at once, not at the delivery timeout
    failure = zhp.check_return(first, "HOST_UNREACHABLE", sent, b.ep)
    assert "--max-peers" in failure["reason"], failure
    ctl = client(b, via="control")
    assert sorted(ctl.request("stats")["peers"]) == sorted(dead[:3])
    for _ in range(3):  # the three at their deadline
        assert c.expect(zhp.RETURN, timeout=5).meta["failures"][0]["code"] == "HOST_UNREACHABLE"
    deadline = time.monotonic() + 10
    while ctl.request("stats")["peers"]:
        assert time.monotonic() < deadline, ctl.request("stats")["peers"]
        time.sleep(0.05)  # poll interval
    assert b.stderr_text().count("state=forgotten") == 3
    c.send("x.y:1@" + dead[3], [b"now there is room"])
    assert list(ctl.request("stats")["peers"]) == [dead[3]]
    assert c.try_recv(0.5) is None  # waiting for its link, not refused
