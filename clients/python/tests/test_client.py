"""The zhost Python client against the real broker: scenarios a user would check.

Each test starts its own broker (conftest.broker) and attaches clients with
zhost.attach(); every wait has a bound.
"""

import os
import signal
import time

import pytest

import zhost
from conftest import wait_until
from zhost import protocol as P

MiB = 1 << 20


def test_attach_gets_a_bootstrap_with_every_field(broker, clients):
    b = broker()
    alice = clients(b.frontend, label="alice")
    boot = alice.bootstrap
    addr = zhost.parse_address(boot["proc"], "proc")
    assert addr.endpoint == b.ep and addr.proc.startswith("alice<")
    assert alice.address == boot["proc"] and alice.id == addr.proc and alice.endpoint == b.ep
    assert boot["host"] == b.ep
    assert boot["agent"] == "host_agent.service@" + b.ep == alice.agent.address
    assert boot["heartbeat_ms"] == 1000 == alice.heartbeat_ms
    assert boot["max_msg_bytes"] == 16 * MiB == alice.max_msg_bytes
    assert isinstance(boot["hwm"], int) and boot["hwm"] > 0
    assert isinstance(boot["incarnation"], int) and 0 <= boot["incarnation"] < 1 << 64
    rid = alice.routing_id
    assert len(rid) == 16 and rid[0] != 0

    anon = clients(b.frontend)
    assert anon.id.startswith("remote<") and anon.id != alice.id
    assert anon.routing_id != rid
    assert anon.bootstrap["incarnation"] == boot["incarnation"]
    # actors are named on the assigned proc
    assert alice.actor("inbox").port(7).address == "inbox.%s:7@%s" % (alice.id, b.ep)
    assert alice.main.address == "client.%s@%s" % (alice.id, b.ep)


def test_attach_errors(broker):
    b = broker()
    with pytest.raises(zhost.AddressError):
        zhost.attach(b.frontend, label="Bad-Label")
    with pytest.raises(zhost.Timeout):
        zhost.attach("tcp://127.0.0.1:1", timeout=0.3)  # nothing listens there


def test_two_clients_exchange_parts(broker, clients):
    b = broker()
    alice = clients(b.frontend, label="alice")
    bob = clients(b.frontend, label="bob")
    inbox = bob.actor("inbox").port(1)
    big = os.urandom(MiB)
    payloads = [
        [b"hello, bob"],                                  # one inline part
        [b"x" * 5000, b"y" * 7000],                      # frames only (first part > 4 KiB)
        [b"head", b"second", b"third"],                  # inline + frames
        [b"\0nul\0", b"\0\0\0", bytes(range(256))],      # binary with NUL bytes
        [big],                                           # a 1 MiB part
        [b"", b""],                                      # empty parts
        ["text is UTF-8 \u00e9"],                        # str parts
    ]
    for parts in payloads:
        seq = alice.send(inbox, *parts, headers={"k": "v"})
        msg = inbox.recv(timeout=5)
        want = [p.encode() if isinstance(p, str) else p for p in parts]
        assert msg.parts == want
        assert msg.src == alice.main.address and msg.dest == inbox.address
        assert msg.seq == seq and msg.headers == {"k": "v"}
        assert msg.ttl == 63 and msg.returnable
    # and back the other way, from a named actor
    back = alice.actor("replies").port(5)
    bob.actor("inbox").send(back, b"hi alice", big)
    msg = back.recv(timeout=5)
    assert msg.parts == [b"hi alice", big] and msg.src == "inbox.%s@%s" % (bob.id, b.ep)


def test_request_reply_and_callbacks(broker, clients):
    b = broker()
    alice = clients(b.frontend, label="alice")
    bob = clients(b.frontend, label="bob")
    seen = []

    @bob.actor("upper").port(1).on_message
    def upper(msg):
        seen.append(msg)
        msg.respond(*[p.upper() for p in msg.parts])

    dest = bob.actor("upper").port(1)
    # bob answers from inside his own library calls: drive him from a
    # callback-free loop by polling both (single thread)
    import threading
    stop = threading.Event()
    t = threading.Thread(target=lambda: [bob.poll(0.05) for _ in iter(stop.is_set, True)])
    t.start()
    try:
        assert alice.request(dest, b"abc", b"\0def", timeout=5) == [b"ABC", b"\0DEF"]
        msg = alice.request(dest, b"x" * 6000, timeout=5, message=True)
        assert msg.parts == [b"X" * 6000] and msg.src == "upper.%s@%s" % (bob.id, b.ep)
        assert msg.port.once and msg.port.closed
    finally:
        stop.set()
        t.join(5)
    assert len(seen) == 2 and zhost.parse_address(seen[0].reply).actor == "client"


def test_undeliverable_to_a_missing_proc_is_raised(broker, clients):
    b = broker()
    alice = clients(b.frontend)
    dest = "echo.nobody:1@" + b.ep
    with pytest.raises(zhost.Undeliverable) as info:
        alice.request(dest, b"hi", b"\0frame" * 1000, timeout=5)
    e = info.value
    assert e.code == "NO_SUCH_PROC" and e.at == b.ep and e.reason
    assert e.dest == dest and e.payload == [b"hi", b"\0frame" * 1000]
    assert e.failures[0]["code"] == "NO_SUCH_PROC" and e.bouncer == "service@" + b.ep
    assert e.sender == alice.main.address and "reply" in e.meta
    # a plain send: the RETURN is raised from the next call that reads it
    seq = alice.send(dest, b"plain")
    with pytest.raises(zhost.Undeliverable) as info:
        alice.poll(3)
    assert info.value.seq == seq and info.value.payload == [b"plain"]
    # unflagged: dropped by the broker, nothing comes back
    alice.send(dest, b"quiet", undeliverable=False)
    assert alice.poll(0.3) == 0


def test_undeliverable_passed_to_callbacks(broker, clients):
    b = broker()
    alice = clients(b.frontend)
    proc_wide, per_actor = [], []
    alice.on_undeliverable(proc_wide.append)
    worker = alice.actor("worker")
    worker.on_undeliverable(per_actor.append)
    alice.send("echo.nobody:1@" + b.ep, b"a")
    worker.send("echo.nobody:2@" + b.ep, b"b", b"c")
    assert wait_until(lambda: proc_wide and per_actor, 5, procs=[alice])
    assert [e.payload for e in proc_wide] == [[b"a"]]
    assert [e.payload for e in per_actor] == [[b"b", b"c"]]
    assert per_actor[0].code == "NO_SUCH_PROC" and per_actor[0].dest == "echo.nobody:2@" + b.ep
    assert per_actor[0].sender == worker.address
    # a request still raises (its RETURN belongs to the request)
    with pytest.raises(zhost.Undeliverable):
        worker.request("echo.nobody:3@" + b.ep, b"d", timeout=5)


def test_duplex_undeliverable_from_client(broker, clients):
    """client -> a missing actor on the service proc -> NO_SUCH_ACTOR back."""
    b = broker()
    alice = clients(b.frontend)
    dest = "no-such-actor.service:0@" + b.ep
    with pytest.raises(zhost.Undeliverable) as info:
        alice.request(dest, b"ping?", timeout=5)
    assert info.value.code == "NO_SUCH_ACTOR"
    assert zhost.parse_address(info.value.dest).actor == "no-such-actor"
    with pytest.raises(zhost.Undeliverable) as info:
        alice.request("host_agent.service:9@" + b.ep, b"x", timeout=5)
    assert info.value.code == "NO_SUCH_PORT"


def test_duplex_undeliverable_from_host(broker, clients):
    """Another client sends to a missing actor / port on this attached proc:
    the client library answers NO_SUCH_ACTOR / NO_SUCH_PORT itself."""
    b = broker()
    remote = clients(b.frontend, label="remote")
    remote.actor("real").port(1)
    sender = clients(b.frontend, label="sender")
    got = []
    sender.on_undeliverable(got.append)
    ghost = "ghost-actor.%s:0@%s" % (remote.id, b.ep)
    sender.send(ghost, b"boo")
    sender.send("real.%s:2@%s" % (remote.id, b.ep), b"no port")
    assert wait_until(lambda: len(got) == 2, 5, procs=[remote, sender])
    by_code = {e.code: e for e in got}
    e = by_code["NO_SUCH_ACTOR"]
    assert zhost.parse_address(e.dest).actor == "ghost-actor" and e.payload == [b"boo"]
    assert e.at == remote.address and e.bouncer == remote.address
    assert by_code["NO_SUCH_PORT"].payload == [b"no port"]
    # unflagged sends to a ghost are dropped quietly
    sender.send(ghost, b"quiet", undeliverable=False)
    remote.poll(0.2)
    assert sender.poll(0.3) == 0


def test_request_timeout_is_bounded(broker, clients):
    b = broker()
    alice = clients(b.frontend)
    bob = clients(b.frontend)
    mute = bob.actor("mute").port(1)   # takes requests, never answers
    t0 = time.monotonic()
    with pytest.raises(zhost.Timeout):
        alice.request(mute, b"anyone?", timeout=0.5)
    assert 0.45 <= time.monotonic() - t0 < 2.0
    assert mute.recv(timeout=2).parts == [b"anyone?"]


def test_agent_ping_stats_list_and_errors(broker, clients):
    b = broker()
    alice = clients(b.frontend)
    pong = alice.agent.ping()
    assert pong["ok"] and pong["host"] == b.ep and isinstance(pong["incarnation"], int)
    assert pong["incarnation"] == alice.incarnation and "version" in pong
    assert alice.agent.list() == []
    stats = alice.agent.stats()
    assert isinstance(stats["routed"], int) and stats["routed"] >= 1
    assert alice.id in stats["procs"]
    with pytest.raises(zhost.AgentError) as info:
        alice.agent.spawn("x", argv=["/bin/true"])
    assert info.value.code == "NOT_ALLOWED"
    with pytest.raises(zhost.AgentError) as info:
        alice.agent.call("no_such_op")
    assert info.value.code == "UNKNOWN_OP"


def test_broker_error_for_a_forged_src(broker, clients):
    b = broker()
    alice = clients(b.frontend)
    bob = clients(b.frontend)
    inbox = bob.actor("inbox").port(1)
    seq = alice.send(inbox, b"forged", src="client.%s@%s" % (bob.id, b.ep))
    with pytest.raises(zhost.BrokerError) as info:
        alice.poll(3)
    assert info.value.code == 403 and info.value.dest == inbox.address
    assert info.value.seq == seq
    with pytest.raises(zhost.Timeout):
        inbox.recv(timeout=0.3)   # never routed
    # a client with an on_error handler keeps going
    errors = []
    alice.on_error(errors.append)
    alice.send(inbox, b"forged", src="client.%s@%s" % (bob.id, b.ep))
    assert wait_until(lambda: errors, 3, procs=[alice]) and errors[0].code == 403


def test_broker_bye_at_sigterm_closes_the_client(broker, clients):
    b = broker()
    alice = clients(b.frontend)
    inbox = alice.actor("inbox").port(1)
    os.kill(b.proc.pid, signal.SIGTERM)
    with pytest.raises(zhost.Closed) as info:
        inbox.recv(timeout=5)
    assert info.value.reason == "shutdown"
    with pytest.raises(zhost.Closed):
        alice.send(inbox, b"too late")
    with pytest.raises(zhost.Closed):
        alice.poll(0)
    assert b.proc.wait(10) == 0
    alice.close()    # nothing to wait for: closes at once
    assert alice.closed == "shutdown"


def test_close_is_lossless(broker, clients):
    """2000 messages then close() over ipc (the control socket): all arrive."""
    b = broker()
    receiver = clients(b.frontend)
    sink = receiver.actor("sink").port(1)
    sender = zhost.attach(b.control)
    n = 2000
    for i in range(n):
        sender.send(sink, b"%d" % i, b"x" * 100, undeliverable=False)
    t0 = time.monotonic()
    assert sender.close() is True       # the broker's BYE came back
    assert time.monotonic() - t0 < 3.0
    got = []
    deadline = time.monotonic() + 20
    while len(got) < n and time.monotonic() < deadline:
        try:
            got.append(sink.recv(timeout=1).parts[0])
        except zhost.Timeout:
            pass
    assert got == [b"%d" % i for i in range(n)]
    with pytest.raises(zhost.Closed):
        sender.send(sink, b"after close")


def test_context_manager_closes_with_bye(broker):
    b = broker()
    with zhost.attach(b.frontend, label="brief") as p:
        proc_id = p.id
    assert p.closed == "bye" and p.sock.closed
    with zhost.attach(b.frontend) as q:
        with pytest.raises(zhost.Undeliverable) as info:
            q.request("x.%s:1@%s" % (proc_id, b.ep), b"hi", timeout=5)
        assert info.value.code == "PROC_GONE"


def test_heartbeats_keep_an_idle_client_attached(broker, clients):
    """--heartbeat 100ms: a client that only waits in the library, and one
    that sleeps with heartbeat="thread", stay attached for 10 heartbeats;
    one with heartbeat=False is dropped (PROC_GONE)."""
    b = broker("--heartbeat", "100ms")
    prober = clients(b.frontend, heartbeat="thread")
    waiter = clients(b.frontend, label="waiter")
    sleeper = clients(b.frontend, label="sleeper", heartbeat="thread")
    silent = clients(b.frontend, label="silent", heartbeat=False)
    assert waiter.heartbeat_ms == 100
    ports = {p: p.actor("inbox").port(1) for p in (waiter, sleeper, silent)}
    t0 = time.monotonic()
    waiter.poll(1.0)                       # 10 x heartbeat, idle inside the library
    time.sleep(max(0.0, 1.0 - (time.monotonic() - t0)))  # sleeper/silent: outside it
    for p in (waiter, sleeper):
        prober.send(ports[p], b"still there?")
        assert ports[p].recv(timeout=3).parts == [b"still there?"]
    with pytest.raises(zhost.Undeliverable) as info:
        prober.request(ports[silent], b"gone?", timeout=3)
    assert info.value.code == "PROC_GONE"
    with pytest.raises(zhost.Closed) as info:
        silent.poll(1)
    assert info.value.reason == "heartbeat expired"


def test_send_checks(broker, clients):
    b = broker("--max-msg-bytes", "64K")
    alice = clients(b.frontend)
    assert alice.max_msg_bytes == 64 * 1024
    with pytest.raises(ValueError):
        alice.send("a.b:1@" + b.ep, b"x" * (64 * 1024))
    with pytest.raises(zhost.AddressError):
        alice.send("a.b@" + b.ep, b"x")         # an actor, not a port
    with pytest.raises(zhost.AddressError):
        alice.send("a.b:01@" + b.ep, b"x")
    with pytest.raises(TypeError):
        alice.send("a.b:1@" + b.ep, 42)
    assert P.INLINE_MAX == 4096


def test_client_reattaches_after_a_broker_crash(broker, clients):
    """The broker dies without a BYE and comes back on the same endpoint: the
    client, silent-broker detection or ERROR 401, ATTACHes again (same
    routing id) and carries on under the new incarnation's proc id."""
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    ep = "tcp://127.0.0.1:%d" % s.getsockname()[1]
    s.close()
    first = broker("--heartbeat", "100ms", frontend=ep)
    alice = clients(ep)
    old_id, old_inc, rid = alice.id, alice.incarnation, alice.routing_id
    first.kill()
    alice.poll(0.5)                       # > 3 heartbeats of silence
    broker("--heartbeat", "100ms", frontend=ep)
    assert alice.agent.ping(timeout=5)["incarnation"] == alice.incarnation != old_inc
    assert alice.id != old_id and alice.routing_id == rid
    inbox = alice.actor("inbox").port(1)
    alice.send(inbox, b"to myself")
    assert inbox.recv(timeout=3).parts == [b"to myself"]


def test_error_401_after_a_quick_broker_restart_then_reattach(broker, clients):
    """A broker restarted before the client noticed: the first request is
    refused with ERROR 401 (raised as BrokerError), the client ATTACHes again
    and the retry works."""
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    ep = "tcp://127.0.0.1:%d" % s.getsockname()[1]
    s.close()
    first = broker(frontend=ep)
    alice = clients(ep)
    old_inc = alice.incarnation
    first.kill()
    b2 = broker(frontend=ep)
    deadline = time.monotonic() + 10
    errors = []
    while time.monotonic() < deadline:
        try:
            pong = alice.agent.ping(timeout=2)
            break
        except zhost.BrokerError as e:
            errors.append(e.code)
        except zhost.Timeout:
            errors.append("timeout")
    assert errors == [401], errors
    assert pong["incarnation"] == alice.incarnation != old_inc and b2.ep == ep


def _curve_dirs(tmp_path):
    """zcert pairs (as zhost-ctl keygen writes them) for broker, alice,
    mallory; alice's public certificate in the allow directory."""
    import zmq.auth
    keys, allow = tmp_path / "keys", tmp_path / "allow"
    keys.mkdir()
    allow.mkdir()
    for name in ("broker", "alice", "mallory"):
        zmq.auth.create_certificates(str(keys), name)
    (allow / "alice.key").write_bytes((keys / "alice.key").read_bytes())
    return keys, allow


def test_attach_over_curve(broker, clients, tmp_path):
    """load_curve + attach(curve=...): an allowed key is served end to end;
    a key not allowed and a client without CURVE get HandshakeFailed at once
    (not the attach timeout); bad certificate files are ValueErrors."""
    keys, allow = _curve_dirs(tmp_path)
    b = broker("--curve-secret", str(keys / "broker.key_secret"), "--curve-allow", str(allow))
    curve = zhost.load_curve(keys / "broker.key", keys / "alice.key")
    assert curve == zhost.load_curve(keys / "broker.key_secret", keys / "alice.key_secret")
    alice = clients(b.frontend, label="alice", curve=curve)
    bob = clients(b.frontend, label="bob", curve=curve)
    inbox = bob.actor("inbox").port(1)
    alice.send(inbox, b"over curve")
    assert inbox.recv(timeout=5).parts == [b"over curve"]

    for kw, said in (({"curve": zhost.load_curve(keys / "broker.key", keys / "mallory.key")},
                      "refused this client's CURVE key"),
                     ({}, "CURVE")):
        start = time.monotonic()
        with pytest.raises(zhost.HandshakeFailed) as e:
            zhost.attach(b.frontend, label="m", timeout=10.0, **kw)
        assert said in str(e.value) and b.frontend in str(e.value)
        assert time.monotonic() - start < 5.0

    with pytest.raises(ValueError, match="no secret key"):
        zhost.load_curve(keys / "broker.key", allow / "alice.key")
    with pytest.raises(ValueError, match="nope.key"):
        zhost.load_curve(keys / "nope.key", keys / "alice.key")
    (keys / "junk.key_secret").write_text("not a certificate\n")
    with pytest.raises(ValueError, match="junk.key: not a zcert certificate"):
        zhost.load_curve(keys / "broker.key", keys / "junk.key")
    # a _secret file whose secret part is missing
    (keys / "half.key_secret").write_bytes((keys / "alice.key").read_bytes())
    with pytest.raises(ValueError, match="no secret key in"):
        zhost.load_curve(keys / "broker.key", keys / "half.key")


def test_curve_keys_against_a_plain_broker(broker, tmp_path):
    keys, _ = _curve_dirs(tmp_path)
    b = broker()
    with pytest.raises(zhost.HandshakeFailed, match="CURVE"):
        zhost.attach(b.frontend, curve=zhost.load_curve(keys / "broker.key",
                                                         keys / "alice.key"), timeout=10.0)
