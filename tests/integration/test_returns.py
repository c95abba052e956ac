"""Undeliverable SENDs come back as RETURN (docs/protocol.md §4, §5): every code the
broker can produce on its own, with its meta, and none for unflagged SENDs."""

import collections
import signal
import time

import pytest
import zmq

import zhp
from zhp import F_INLINE


META = {"seq": 17, "headers": {"trace": "abc", "n": 3}, "ts": 99}


@pytest.mark.parametrize("inline", [True, False])
def test_no_such_proc(broker, client, inline):
    b = broker()
    a = client(b)
    dest = "echo.nobody<2>:3@" + b.ep
    sent = a.send(dest, [b"first", b"\x00second", b""], meta=META, inline=inline)
    ret = a.expect(zhp.RETURN)
    zhp.check_return(ret, "NO_SUCH_PROC", sent, b.ep)
    assert ret.flags == (F_INLINE if inline else 0)


def test_return_of_empty_meta_is_empty_map(broker, client):
    b = broker()
    a = client(b)
    sent = a.send("x.nobody:1@" + b.ep, [b"p"], meta=None)
    assert zhp.decode(sent).head.meta_raw == b""
    ret = a.expect(zhp.RETURN)
    zhp.check_return(ret, "NO_SUCH_PROC", sent, b.ep)
    assert ret.meta["meta"] == {}


def test_no_return_for_unflagged_send(broker, client):
    b = broker()
    a = client(b)
    a.send("x.nobody:1@" + b.ep, [b"p"], meta=META, returnable=False)
    a.send("x.y:1@" + b.ep, [b"p"], ttl=0, returnable=False)
    assert a.try_recv(0.4) is None
    assert a.request("ping")["ok"] is True


def test_proc_gone_after_bye(broker, client):
    b = broker()
    a, gone = client(b), client(b)
    gone_port = gone.port(5)
    body, before = gone.bye("leaving")
    assert before == []
    sent = a.send(gone_port, [b"are you there"], meta=META)
    zhp.check_return(a.expect(zhp.RETURN), "PROC_GONE", sent, b.ep)


def test_proc_gone_after_heartbeat_expiry(broker, client):
    b = broker("--heartbeat", "100ms")
    a = client(b)
    silent = client(b)
    silent.auto_pong = False
    port = silent.port()
    bye = silent.wait_for(lambda m: m.cmd == zhp.BYE, timeout=3.0, keepalive=[a])
    assert bye.body.get("reason") == "heartbeat expired"
    sent = a.send(port, [b"late"], meta=META)
    ret = a.wait_for(lambda m: m.cmd == zhp.RETURN, timeout=2.0)
    zhp.check_return(ret, "PROC_GONE", sent, b.ep)


def test_ttl_expired(broker, client):
    b = broker()
    a, bob = client(b), client(b)
    sent = a.send(bob.port(), [b"old", b"frame"], meta=META, ttl=0)
    zhp.check_return(a.expect(zhp.RETURN), "TTL_EXPIRED", sent, b.ep)
    assert bob.try_recv(0.2) is None
    # ttl 1 still goes through, arriving with 0
    a.send(bob.port(), [b"young"], ttl=1)
    assert bob.expect(zhp.SEND).ttl == 0


def test_return_ttl_follows_ttl_flag(broker, client):
    b = broker("--ttl", "9")
    a = client(b)
    sent = a.send("x.nobody:1@" + b.ep, [b"p"])
    zhp.check_return(a.expect(zhp.RETURN), "NO_SUCH_PROC", sent, b.ep, ttl=9)


def test_overloaded(broker, client):
    """A receiver that does not read, a small --hwm: the broker never blocks,
    it returns OVERLOADED."""
    b = broker("--hwm", "8", "--heartbeat", "10s")
    a = client(b, sndhwm=100)
    slow = client(b, rcvhwm=1)
    payload = b"\x5a" * 16384
    sent_by_seq = {}
    returns = []
    delivered_max = 20000
    deadline = time.monotonic() + 20.0
    i = 0
    while not returns and i < delivered_max and time.monotonic() < deadline:
        frames = zhp.encode_send(slow.port(), a.actor, [b"hdr", payload], {"seq": i})
        if a.try_send_frames(frames):
            sent_by_seq[i] = frames
            i += 1
        else:
            a.sock.poll(5)
        msg = a.try_recv(0)
        while msg is not None:
            returns.append(msg)
            msg = a.try_recv(0)
    assert returns, "no OVERLOADED after %d SENDs of 16 KiB toward a reader that never reads" % i
    print("overloaded after %d SENDs" % i)
    ret = returns[0]
    assert ret.cmd == zhp.RETURN, ret
    seq = ret.meta["meta"]["seq"]
    zhp.check_return(ret, "OVERLOADED", sent_by_seq[seq], b.ep)
    # Read the rest of the RETURNs first: the broker queues at most --hwm
    # (8) messages toward a too, so an answer behind a full queue of them
    # would itself be refused (seen under ASan on a loaded machine).
    quiet_since, stop = time.monotonic(), time.monotonic() + 20.0
    while time.monotonic() - quiet_since < 0.5 and time.monotonic() < stop:
        msg = a.try_recv(0.05)
        if msg is not None:
            assert msg.cmd == zhp.RETURN and msg.meta["failures"][0]["code"] == "OVERLOADED", msg
            quiet_since = time.monotonic()
    # the broker is not stuck: it still answers
    assert a.request("ping", timeout=5.0)["ok"] is True


def test_too_large_flagged_is_returned(broker, client):
    limit = 4096
    b = broker("--max-msg-bytes", str(limit))
    a, bob = client(b), client(b)
    head = zhp.encode_send(bob.port(), a.actor, [], {"seq": 1}, inline=False)[0]
    # exactly at the limit (sum of frame sizes): delivered
    at_limit = [head, b"x" * (limit - len(head))]
    a.send_frames(at_limit)
    assert bob.expect(zhp.SEND).frames == [at_limit[0][:4] + b"\x3f" + at_limit[0][5:],
                                           at_limit[1]]
    # one byte over: TOO_LARGE, not delivered
    over = [head, b"x" * (limit - len(head) + 1)]
    a.send_frames(over)
    zhp.check_return(a.expect(zhp.RETURN), "TOO_LARGE", over, b.ep)
    assert bob.try_recv(0.2) is None
    # over in an inline part
    sent = a.send(bob.port(), [b"i" * limit], meta={"seq": 2})
    zhp.check_return(a.expect(zhp.RETURN), "TOO_LARGE", sent, b.ep)


def test_too_large_unflagged_is_dropped_and_counted(broker, client):
    limit = 4096
    b = broker("--max-msg-bytes", str(limit))
    a, bob = client(b), client(b)
    before = a.request("stats")["dropped"]
    a.send(bob.port(), [b"big", b"y" * limit], returnable=False)
    assert bob.try_recv(0.3) is None
    assert a.try_recv(0) is None
    after = a.request("stats")["dropped"]
    assert after - before == 1


def test_shutdown_returns_sends_arriving_after_sigterm(broker, client):
    """SIGTERM while a client keeps sending: what arrives after it is
    returned SHUTDOWN; nothing comes back twice."""
    b = broker("--linger", "1s")
    a = client(b, via="control", label="sender")
    seen = {}
    shutdown_returns = []
    bye = None
    i = 0
    t_end = time.monotonic() + 8.0
    signalled = False
    frames_by_seq = {}
    while time.monotonic() < t_end and i < 200000:
        if i == 300 and not signalled:
            b.signal(signal.SIGTERM)
            signalled = True
        if bye is None:
            frames = zhp.encode_send(a.port(1), a.actor, [b"p%d" % i], {"seq": i})
            if a.try_send_frames(frames):
                frames_by_seq[i] = frames
                i += 1
        msg = a.try_recv(0 if bye is None else 0.05)
        while msg is not None:
            if msg.cmd == zhp.BYE:
                bye = msg
                t_end = min(t_end, time.monotonic() + 1.5)
            elif msg.cmd == zhp.SEND:
                seq = msg.meta["seq"]
                assert seq not in seen, "seq %d twice" % seq
                seen[seq] = "delivered"
            elif msg.cmd == zhp.RETURN:
                seq = msg.meta["meta"]["seq"]
                assert seq not in seen, "seq %d twice" % seq
                seen[seq] = msg.meta["failures"][0]["code"]
                if seen[seq] == "SHUTDOWN":
                    shutdown_returns.append(msg)
            msg = a.try_recv(0)
        if b.proc.poll() is not None and bye is not None:
            break
    print("shutdown: %d sent, %r" % (i, sorted(collections.Counter(seen.values()).items())))
    assert signalled
    assert bye is not None and bye.body.get("reason") == "shutdown", "no BYE shutdown"
    assert shutdown_returns, "no RETURN SHUTDOWN among %d sent (%d answered)" % (i, len(seen))
    ret = shutdown_returns[0]
    zhp.check_return(ret, "SHUTDOWN", frames_by_seq[ret.meta["meta"]["seq"]], b.ep)
    b.expect_exit = b.wait(5.0)
    assert b.expect_exit == 0
