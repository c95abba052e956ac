"""Spawned procs over raw ZHP (docs/protocol.md §6 Spawn, §8; docs/broker.md "Procs and
their process groups"): a proc spawned from the control socket connects to the backend
with ROUTING_ID = its proc id, sends READY, and is routable; stop ends it.

The proc here is a few lines of python speaking ZHP with zhp.py: it echoes
each SEND to meta `reply` and exits 0 on STOP."""

import os
import signal
import sys
import time

import pytest

import zhp

PY = "/usr/bin/python3"
HERE = os.path.dirname(os.path.abspath(__file__))

ECHO_PROC = r"""
import os, sys, time
sys.path.insert(0, %r)
import zmq, zhp
proc = os.environ["ZHOST_PROC"]
pid_text, ep = zhp.split_addr(proc)
ctx = zmq.Context()
s = ctx.socket(zmq.DEALER)
s.setsockopt(zmq.LINGER, 1000)
s.setsockopt(zmq.ROUTING_ID, pid_text.encode())
s.connect(os.environ["ZHOST_BACKEND"])
s.send_multipart(zhp.control(zhp.READY, {"proc": proc, "pid": os.getpid()}))
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    if not s.poll(100):
        continue
    m = zhp.decode(s.recv_multipart())
    if m.cmd == zhp.SEND and m.meta and m.meta.get("reply"):
        s.send_multipart(zhp.encode_send(m.meta["reply"], "echo." + proc, m.parts,
                                         {"seq": m.meta.get("seq", 0)}))
    elif m.cmd == zhp.PING:
        s.send_multipart(zhp.control(zhp.PONG))
    elif m.cmd == zhp.STOP:
        break
s.close()
ctx.term()
sys.exit(0)
""" % HERE


def ok(ans):
    assert ans["ok"] is True, ans
    return ans


def test_spawn_route_stop(broker, client):
    b = broker("--terminate-timeout", "2s")
    ctl = client(b, via="control")
    ans = ok(ctl.request("spawn", name="echo1", argv=[PY, "-c", ECHO_PROC], timeout=15.0))
    assert ans["proc"] == "echo1@" + b.ep
    assert isinstance(ans["pid"], int) and ans["pid"] > 0
    st = ok(ctl.request("status", name="echo1"))["proc"]
    assert st["name"] == "echo1" and st["status"] == "ready" and st["pid"] == ans["pid"], st

    front = client(b)
    sent = front.send("echo.echo1:1@" + b.ep, [b"hello", b"\x00frame"],
                      meta={"reply": front.port(3), "seq": 5})
    msg = front.expect(zhp.SEND, timeout=5.0)
    assert msg.dest == front.port(3) and msg.src == "echo.echo1@" + b.ep
    assert msg.parts == [b"hello", b"\x00frame"] and msg.meta == {"seq": 5}

    ans = ok(ctl.request("stop", name="echo1", timeout=15.0))
    assert ans["status"] == "stopped", ans
    assert ans["proc"]["status"] == "stopped" and ans["proc"].get("exit_code") == 0, ans
    sent = front.send("echo.echo1:1@" + b.ep, [b"late"], meta={"seq": 6})
    zhp.check_return(front.expect(zhp.RETURN), "PROC_GONE", sent, b.ep)
    procs = {p["name"]: p for p in ok(ctl.request("list"))["procs"]}
    assert procs["echo1"]["status"] == "stopped"


def test_spawn_same_name_twice(broker, client):
    b = broker("--terminate-timeout", "2s")
    ctl = client(b, via="control")
    ok(ctl.request("spawn", name="dup", argv=[PY, "-c", ECHO_PROC], timeout=15.0))
    ans = ctl.request("spawn", name="dup", argv=[PY, "-c", ECHO_PROC], timeout=15.0)
    assert ans["ok"] is False and ans["error"]["code"] == "PROC_EXISTS", ans
    ok(ctl.request("kill", name="dup", timeout=15.0))
    # a terminated name can be spawned again
    ok(ctl.request("spawn", name="dup", argv=[PY, "-c", ECHO_PROC], timeout=15.0))


def test_ready_timeout(broker, client):
    b = broker()
    ctl = client(b, via="control")
    ans = ctl.request("spawn", name="mute", argv=["/bin/sleep", "30"], ready_timeout_ms=300,
                      timeout=10.0)
    assert ans["ok"] is False and ans["error"]["code"] == "READY_TIMEOUT", ans
    st = ok(ctl.request("status", name="mute"))["proc"]
    assert st["status"] == "failed" and st.get("reason") == "READY_TIMEOUT", st
    assert isinstance(st.get("detail"), str), st


def test_child_exiting_before_ready(broker, client):
    b = broker()
    ctl = client(b, via="control")
    ans = ctl.request("spawn", name="quick", timeout=10.0,
                      argv=["/bin/sh", "-c", "echo out-marker-1; echo err-marker-2 >&2; exit 3"])
    assert ans["ok"] is False and ans["error"]["code"] == "SPAWN_FAILED", ans
    # the failure names what the child said
    assert "out-marker-1" in ans["error"]["message"], ans
    assert "err-marker-2" in ans["error"]["message"], ans
    st = ok(ctl.request("status", name="quick"))
    assert st["proc"]["status"] == "stopped" and st["proc"].get("exit_code") == 3, st
    assert "out-marker-1" in st["tail"] and "err-marker-2" in st["tail"], st


def test_status_tail_of_a_running_proc(broker, client):
    b = broker("--terminate-timeout", "2s")
    ctl = client(b, via="control")
    script = "print('hello-from-proc', flush=True)\n" + ECHO_PROC
    ok(ctl.request("spawn", name="talky", argv=[PY, "-c", script], timeout=15.0))
    deadline = time.monotonic() + 5.0
    while True:
        st = ok(ctl.request("status", name="talky"))
        if "hello-from-proc" in st.get("tail", "") or time.monotonic() > deadline:
            break
        time.sleep(0.05)   # poll interval
    assert "hello-from-proc" in st["tail"], st


# A proc slow to stop: its 1 s sleep after STOP is the scenario itself (the
# broker's shutdown phase one must last while it runs), not a wait.
SLOW_STOP_PROC = ECHO_PROC.replace("    elif m.cmd == zhp.STOP:\n        break",
                                   "    elif m.cmd == zhp.STOP:\n        time.sleep(1.0)\n"
                                   "        break")


def test_shutdown_phase_one(broker, client, zctx):
    """SIGTERM: while spawned procs stop, routing goes on, a new ATTACH gets
    ERROR 503 and admin ops SHUTTING_DOWN; then BYE shutdown, exit 0."""
    assert SLOW_STOP_PROC != ECHO_PROC
    b = broker("--terminate-timeout", "5s", "--linger", "300ms")
    ctl = client(b, via="control")
    a, bob = client(b, label="a"), client(b, label="bob")
    ok(ctl.request("spawn", name="slow", argv=[PY, "-c", SLOW_STOP_PROC], timeout=15.0))
    b.signal(signal.SIGTERM)
    # phase one has begun: the broker sent "slow" its STOP and waits for it
    b.wait_stderr(r"proc name=slow from=ready to=stopping", timeout=5.0)
    assert b.alive()
    a.send(bob.port(), [b"during phase 1"])
    msg = bob.recv(timeout=1.0)
    assert msg.cmd == zhp.SEND and msg.parts == [b"during phase 1"], msg
    late = zhp.Client(zctx, b.frontend[0], name="late")
    try:
        late.send_frames(zhp.control(zhp.ATTACH))
        late.expect_error(503, timeout=1.0)
    finally:
        late.close()
    ans = ctl.request("spawn", name="another", argv=[PY, "-c", ECHO_PROC], timeout=2.0)
    assert ans["ok"] is False and ans["error"]["code"] == "SHUTTING_DOWN", ans
    for x in (ctl, a, bob):
        bye = x.wait_for(lambda m: m.cmd == zhp.BYE, timeout=5.0)
        assert bye.body.get("reason") == "shutdown"
    b.expect_exit = b.wait(5.0)
    assert b.expect_exit == 0


def test_sigterm_stops_spawned_procs(broker, client):
    b = broker("--terminate-timeout", "1s", "--linger", "300ms")
    ctl = client(b, via="control")
    pid = ok(ctl.request("spawn", name="e2", argv=[PY, "-c", ECHO_PROC], timeout=15.0))["pid"]
    b.signal(signal.SIGTERM)
    b.expect_exit = b.wait(10.0)
    assert b.expect_exit == 0
    assert not os.path.exists("/proc/%d" % pid) or \
        open("/proc/%d/stat" % pid).read().split(")")[1].split()[0] == "Z", \
        "spawned proc %d outlived the broker" % pid
