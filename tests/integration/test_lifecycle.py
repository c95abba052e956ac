"""Proc lifecycle through the real broker (issue 4; docs/design.md "Lifecycle of
a proc"; docs/protocol.md §6, §8), with tests/procs/zh-test-proc, a small C proc
that speaks just enough ZHP to be spawned.

Scenarios: every state a proc goes through as the host agent reports it;
a crash with exit code 3; a name reused after stop; SENDs to an ended proc
returned PROC_GONE; 100 procs stopped with max_in_flight 8, never more than
8 in their escalation at once (read from the broker's one-line-per-change
log); the broker SIGKILLed leaves no child alive within 1 s."""

import os
import re
import signal
import time

import pytest

import zhp
from conftest import BUILD_DIR, children_of

TEST_PROC = os.path.join(BUILD_DIR, "zh-test-proc")


@pytest.fixture(autouse=True)
def _need_test_proc():
    if not os.access(TEST_PROC, os.X_OK):
        pytest.skip("no %s (build the zh-test-proc target)" % TEST_PROC)


def ok(answer):
    assert answer["ok"] is True, answer
    return answer


def status(ctl, name):
    return ok(ctl.request("status", name=name))["proc"]


def wait_status(ctl, name, want, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        st = status(ctl, name)
        if st["status"] == want:
            return st
        assert time.monotonic() < deadline, "%s is %r, not %s" % (name, st, want)
        time.sleep(0.02)   # poll interval


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is not alive
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_every_state_of_a_proc(broker, client):
    # starting: spawned with --no-ready, asked before the ready timeout
    b = broker("--terminate-timeout", "300ms", "--ready-timeout", "10s")
    ctl = client(b, via="control")
    ctl.send(ctl.agent_port(), [zhp.pack({"op": "spawn", "name": "slow",
                                          "argv": [TEST_PROC, "--no-ready"]})],
             meta={"reply": ctl.port(90)})
    st = wait_status(ctl, "slow", "starting")
    assert st["pid"] > 0 and st["proc"] == "slow@" + b.ep
    # stopping: STOP is ignored; while the escalation runs it is stopping
    ans = ok(ctl.request("spawn", name="stubborn", argv=[TEST_PROC, "--ignore-stop"],
                         timeout=10.0))
    assert status(ctl, "stubborn")["status"] == "ready"
    ctl.send(ctl.agent_port(), [zhp.pack({"op": "stop", "name": "stubborn"})],
             meta={"reply": ctl.port(91)})
    wait_status(ctl, "stubborn", "stopping", timeout=2.0)
    # ... then SIGTERM ends it: killed{15}
    st = wait_status(ctl, "stubborn", "killed", timeout=5.0)
    assert st["signal"] == signal.SIGTERM and st["core_dumped"] is False
    assert not alive(ans["pid"])
    # stopped{0}: a clean STOP
    ok(ctl.request("spawn", name="good", argv=[TEST_PROC], timeout=10.0))
    ans = ok(ctl.request("stop", name="good", timeout=10.0))
    assert ans["status"] == "stopped" and ans["proc"]["exit_code"] == 0
    # failed{READY_TIMEOUT} is in test_spawn.py; a crash with exit code 3:
    ok(ctl.request("spawn", name="crash", argv=[TEST_PROC, "--crash-after", "100"],
                   timeout=10.0))
    st = wait_status(ctl, "crash", "stopped", timeout=5.0)
    assert st["exit_code"] == 3
    # killed{9} by the kill op, answered with the end state
    ok(ctl.request("spawn", name="victim", argv=[TEST_PROC], timeout=10.0))
    ans = ok(ctl.request("kill", name="victim", timeout=10.0))
    assert ans["status"] == "killed" and ans["proc"]["signal"] == signal.SIGKILL
    # the slow one is still starting; stop ends it (it never connected)
    ans = ok(ctl.request("stop", name="slow", timeout=10.0))
    assert ans["status"] in ("stopped", "killed")
    names = {p["name"]: p["status"] for p in ok(ctl.request("list"))["procs"]}
    assert names == {"slow": ans["status"], "stubborn": "killed", "good": "stopped",
                     "crash": "stopped", "victim": "killed"}
    # one log line per change, in order, for one proc
    text = b.stderr_text()
    changes = re.findall(r"info proc name=good from=(\w+) to=(\w+)", text)
    assert changes == [("none", "starting"), ("starting", "ready"), ("ready", "stopping"),
                       ("stopping", "stopped")], changes


def test_name_reused_and_gone_proc_returns(broker, client):
    b = broker("--terminate-timeout", "1s")
    ctl = client(b, via="control")
    c = client(b)
    first = ok(ctl.request("spawn", name="worker", argv=[TEST_PROC], timeout=10.0))
    # a live name is PROC_EXISTS
    again = ctl.request("spawn", name="worker", argv=[TEST_PROC], timeout=10.0)
    assert again["ok"] is False and again["error"]["code"] == "PROC_EXISTS"
    ok(ctl.request("stop", name="worker", timeout=10.0))
    # ended: SENDs to it are returned PROC_GONE
    c.send("a.worker:1@" + b.ep, [b"late"])
    ret = c.expect(zhp.RETURN)
    assert ret.meta["failures"][0]["code"] == "PROC_GONE"
    assert ret.parts == [b"late"]
    # the name can be spawned again: a new child, routable again
    second = ok(ctl.request("spawn", name="worker", argv=[TEST_PROC], timeout=10.0))
    assert second["pid"] != first["pid"]
    assert status(ctl, "worker")["status"] == "ready"


def test_stop_all_100_procs_at_most_8_in_flight(broker, client):
    b = broker("--terminate-timeout", "2s", "--max-in-flight", "16")
    ctl = client(b, via="control")
    n = 100
    # spawn them all, then collect the answers
    for i in range(n):
        ctl.send(ctl.agent_port(),
                 [zhp.pack({"op": "spawn", "name": "p%d" % i,
                            "argv": [TEST_PROC, "--stop-delay", "30"]})],
                 meta={"reply": ctl.port(1000 + i)})
    answers = 0
    deadline = time.monotonic() + 60
    while answers < n:
        assert time.monotonic() < deadline, "%d of %d spawns answered" % (answers, n)
        m = ctl.try_recv(1.0)
        if m is not None and m.cmd == zhp.SEND:
            assert ok(zhp.unpack(m.parts[0]))
            answers += 1
    procs = ok(ctl.request("list"))["procs"]
    pids = [p["pid"] for p in procs]
    assert len(procs) == n and all(p["status"] == "ready" for p in procs)

    ans = ok(ctl.request("stop_all", max_in_flight=8, timeout_ms=2000, timeout=60.0))
    assert (ans["attempted"], ans["stopped"], ans["failed"]) == (n, n, 0), ans
    assert not [p for p in pids if alive(p)]

    # Replay the broker's state-change log: never more than 8 stopping.
    stopping, peak = set(), 0
    for name, old, new in re.findall(r"info proc name=(p\d+) from=(\w+) to=(\w+)",
                                     b.stderr_text()):
        if new == "stopping":
            stopping.add(name)
        elif old == "stopping":
            stopping.discard(name)
        peak = max(peak, len(stopping))
    assert peak == 8, "at most %d procs were in their escalation at once" % peak


def test_broker_sigkilled_leaves_no_child(broker):
    b = broker("--spawn", "a=%s" % TEST_PROC, "--spawn", "b=%s --ignore-term" % TEST_PROC)
    deadline = time.monotonic() + 10
    kids = []
    while len(kids) < 2 and time.monotonic() < deadline:
        kids = children_of(b.pid)
        time.sleep(0.05)   # poll interval
    assert len(kids) == 2, kids
    b.signal(signal.SIGKILL)
    b.expect_exit = b.wait(5.0)
    # PR_SET_PDEATHSIG: they die with it, within a second
    deadline = time.monotonic() + 1.0
    while [k for k in kids if alive(k)] and time.monotonic() < deadline:
        time.sleep(0.02)   # poll interval
    assert [k for k in kids if alive(k)] == [], "children outlived the broker"


def test_proc_ignoring_stop_and_sigterm_is_killed_at_the_deadline(broker, client):
    # STOP → 300 ms → SIGTERM (ignored) → 300 ms → SIGKILL: killed{9} at ~600 ms
    b = broker("--terminate-timeout", "300ms")
    ctl = client(b, via="control")
    pid = ok(ctl.request("spawn", name="deaf",
                         argv=[TEST_PROC, "--ignore-stop", "--ignore-term"],
                         timeout=10.0))["pid"]
    t0 = time.monotonic()
    ans = ok(ctl.request("stop", name="deaf", timeout=10.0))
    took = time.monotonic() - t0
    assert ans["status"] == "killed" and ans["proc"]["signal"] == signal.SIGKILL, ans
    assert 0.55 <= took < 3.0, "killed after %.2fs" % took
    assert not alive(pid)
    # a second stop of the ended proc answers the same end at once
    again = ok(ctl.request("stop", name="deaf"))
    assert again["status"] == "killed" and again["proc"]["signal"] == signal.SIGKILL


def test_concurrent_stops_coalesce_into_one_outcome(broker, client):
    b = broker("--terminate-timeout", "300ms")
    ctl = client(b, via="control")
    other = client(b, via="control")
    ok(ctl.request("spawn", name="w", argv=[TEST_PROC, "--stop-delay", "100"], timeout=10.0))
    # two stops in flight at once, from two admin clients
    ctl.send(ctl.agent_port(), [zhp.pack({"op": "stop", "name": "w"})],
             meta={"reply": ctl.port(7)})
    other.send(other.agent_port(), [zhp.pack({"op": "stop", "name": "w", "timeout_ms": 50})],
               meta={"reply": other.port(7)})
    first = ok(zhp.unpack(ctl.wait_for(lambda m: m.cmd == zhp.SEND, 10.0).parts[0]))
    second = ok(zhp.unpack(other.wait_for(lambda m: m.cmd == zhp.SEND, 10.0).parts[0]))
    assert first == second
    assert first["status"] == "stopped" and first["proc"]["exit_code"] == 0
    # exactly one STOP reached the proc, and one end was logged
    text = b.stderr_text()
    assert len(re.findall(r"line=\"?stop w@", text)) == 1, text[-2000:]
    assert len(re.findall(r"info proc name=w from=stopping to=stopped", text)) == 1


def test_proc_stopped_while_starting_gets_stop_when_ready(broker, client):
    # The broker is SIGTERMed right after start, before its --spawn proc sent
    # READY; the proc's READY then gets it a STOP, not a wait for SIGTERM.
    b = broker("--spawn", "late=%s --ready-delay 500" % TEST_PROC, "--terminate-timeout", "10s")
    t0 = time.monotonic()
    b.signal(signal.SIGTERM)
    b.expect_exit = b.wait(8.0)
    assert b.expect_exit == 0, "broker still running %.1fs after SIGTERM" % (
        time.monotonic() - t0)
    assert time.monotonic() - t0 < 5.0
    text = b.stderr_text()
    assert "from=starting to=stopping" in text and "from=stopping to=stopped" in text, text
