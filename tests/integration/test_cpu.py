"""--cpu LIST (docs/broker.md, Start): the broker's loop and libzmq's threads
run on those CPUs only; the procs it spawns, as processes, keep the CPUs the
broker started with. Bad lists exit 2 naming the flag.

Scenario: the broker starts pinned to the last CPU it may use, with a
--spawn proc; every thread of the broker shows that CPU in
/proc/PID/task/TID/status, every thread of the proc the broker's start-up
set (the test's own); a proc spawned later over the control socket too."""

import os
import time

import pytest

from conftest import BUILD_DIR, run_broker

TEST_PROC = os.path.join(BUILD_DIR, "zh-test-proc")


def format_cpu_list(cpus):
    """{0, 1, 3} -> "0-1,3", as the broker writes it."""
    items, run = [], []
    for c in sorted(cpus):
        if run and c == run[-1] + 1:
            run.append(c)
            continue
        if run:
            items.append(str(run[0]) if len(run) == 1 else "%d-%d" % (run[0], run[-1]))
        run = [c]
    if run:
        items.append(str(run[0]) if len(run) == 1 else "%d-%d" % (run[0], run[-1]))
    return ",".join(items)


def parse_cpu_list(text):
    out = set()
    for item in text.strip().split(","):
        lo, _, hi = item.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


def thread_cpus(pid):
    """{thread name: set of allowed CPUs} of every thread of pid."""
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        base = "/proc/%d/task/%s/" % (pid, tid)
        with open(base + "comm") as f:
            name = f.read().strip()
        with open(base + "status") as f:
            for line in f:
                if line.startswith("Cpus_allowed_list:"):
                    out["%s/%s" % (name, tid)] = parse_cpu_list(line.split(":", 1)[1])
    return out


def settled_thread_cpus(pid, want, timeout=10.0):
    """thread_cpus(pid) once every thread runs on `want` and libzmq's I/O
    thread exists, or the last snapshot after timeout. libzmq pins (and
    names) each of its threads as the thread's own first act, so a thread
    that has not been scheduled yet still shows the parent's name and CPUs
    (seen under ASan on a loaded machine)."""
    deadline = time.monotonic() + timeout
    while True:
        threads = thread_cpus(pid)
        settled = all(c == want for c in threads.values()) and \
            any(n.startswith("ZMQbg/IO") for n in threads)
        if settled or time.monotonic() >= deadline:
            return threads
        time.sleep(0.05)


def wait_for(cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    return None


def test_broker_threads_pinned_children_not(broker, client):
    if not os.access(TEST_PROC, os.X_OK):
        pytest.skip("no zh-test-proc in %s" % BUILD_DIR)
    mine = os.sched_getaffinity(0)
    pin = max(mine)
    b = broker("--cpu", str(pin), "--spawn", "w=%s" % TEST_PROC)
    assert "cpu pinned=%d" % pin in wait_for(
        lambda: "cpu pinned" in b.stderr_text() and b.stderr_text())
    threads = settled_thread_cpus(b.pid, {pin})
    assert any(n.startswith("ZMQbg/IO") for n in threads), threads
    for name, cpus in threads.items():
        assert cpus == {pin}, (name, cpus)

    ctl = client(b, via="control")
    status = wait_for(lambda: ctl.request("status", name="w")["proc"]["status"] == "ready")
    assert status
    ans = ctl.request("spawn", name="later", argv=[TEST_PROC], timeout=10.0)
    assert ans["ok"] is True, ans
    for name in ("w", "later"):
        pid = ctl.request("status", name=name)["proc"]["pid"]
        for thread, cpus in thread_cpus(pid).items():
            assert cpus == mine, (name, thread, cpus)


@pytest.mark.parametrize("value, says", [
    ("x", "is not a CPU list"),
    ("1,", "is not a CPU list"),
    ("3-1", "runs backwards"),
    ("100000", "is beyond"),
])
def test_bad_cpu_list_exits_2(tmp_path, value, says):
    p = run_broker(["--cpu", value, "--runtime-dir", str(tmp_path / "rt"),
                    "--frontend", "tcp://127.0.0.1:0"])
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert "--cpu" in p.stderr and says in p.stderr, p.stderr


def test_cpu_the_broker_may_not_use_exits_2(tmp_path):
    absent = max(os.sched_getaffinity(0)) + 1
    if absent >= 1024:
        pytest.skip("every CPU is available")
    p = run_broker(["--cpu", str(absent), "--runtime-dir", str(tmp_path / "rt"),
                    "--frontend", "tcp://127.0.0.1:0"])
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert "none of %d is available to the broker (it may use %s)" % (
        absent, format_cpu_list(os.sched_getaffinity(0))) in p.stderr, p.stderr


def test_cpus_the_broker_may_not_use_are_dropped_with_a_warning(broker):
    mine = os.sched_getaffinity(0)
    absent = max(mine) + 1
    if absent >= 1024:
        pytest.skip("every CPU is available")
    pin = min(mine)
    b = broker("--cpu", "%d,%d" % (pin, absent))
    text = wait_for(lambda: "cpu pinned" in b.stderr_text() and b.stderr_text())
    assert "warn cpu asked=%s available=%s using=%d" % (
        format_cpu_list({pin, absent}), format_cpu_list(mine), pin) in text, text
    assert "cpu pinned=%d" % pin in text
    for name, cpus in settled_thread_cpus(b.pid, {pin}).items():
        assert cpus == {pin}, (name, cpus)
