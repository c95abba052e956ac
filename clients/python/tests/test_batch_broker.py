"""BATCH (docs/protocol.md §14) end to end: the Python client against the real
broker (conftest.broker), bursts batched both ways and answered in order.
The client's rule alone, against a fake broker, is in test_batch.py."""

import time

from conftest import PY_ECHO, PYTHON
from test_spawned import wait_ready


def count_frames(proc):
    """Count what proc reads: BATCH frames, their elements, lone messages."""
    seen = {"batch": 0, "elements": 0, "lone": 0}
    read = proc._read

    def counting(frames):
        before = len(proc._inbox)
        read(frames)
        if frames and frames[0][3:4] == b"\x12":
            seen["batch"] += 1
            seen["elements"] += len(proc._inbox) - before
        else:
            seen["lone"] += 1

    proc._read = counting
    return seen


def echo_client(proc, actor="echo"):
    """An attached client answering every message on port 2 with its parts."""
    port = proc.actor(actor).port(2)
    port.on_message(lambda m: m.respond(*m.parts))
    return port


def burst(asker, dest, n, answers, size=8):
    """n requests to dest, corked: answers come to the port `answers`."""
    with asker.batch():
        seqs = [asker.send(dest, b"%06d" % i + b"." * size, reply=answers) for i in range(n)]
    return seqs


def collect(asker, port, n, others=(), timeout=15.0):
    """n messages at port (queued, of asker), polling the others meanwhile."""
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        for p in others:
            p.poll(0.005)
        asker.poll(0.005)
        while len(port):
            got.append(port.recv(timeout=0))
    assert len(got) == n, "%d of %d within %ss" % (len(got), n, timeout)
    return got


def test_bootstrap_offers_batch(broker, clients):
    b = broker()
    a = clients(b.frontend)
    assert a.bootstrap.get("batch") is True and a.batching
    assert a.batch_max_bytes == a.bootstrap["batch_max_bytes"] == 262144
    assert a.bootstrap.get("liveness") == a.liveness == 3
    off = clients(b.frontend, batch=False)
    assert not off.batching and off.bootstrap.get("batch") is not True


def test_a_burst_to_an_echo_is_answered_batched_in_order(broker, clients):
    b = broker()
    asker = clients(b.frontend, label="asker")
    echo = clients(b.frontend, label="echo")
    port = echo_client(echo)
    answers = asker.actor("client").port(1)
    at_echo, at_asker = count_frames(echo), count_frames(asker)
    n = 500
    seqs = burst(asker, port.address, n, answers)
    got = collect(asker, answers, n, others=(echo,))
    assert [m.parts[0][:6] for m in got] == [b"%06d" % i for i in range(n)]
    assert [m.seq for m in got] == seqs
    assert all(m.src == "echo.%s@%s" % (echo.id, b.ep) for m in got)
    # both sides read BATCH frames: the asker's corked burst, the echo's
    # answers made in its handler (one step per read)
    assert at_echo["batch"] >= 1 and at_echo["elements"] + at_echo["lone"] >= n
    assert at_asker["batch"] >= 1 and at_asker["batch"] + at_asker["lone"] < n


def test_a_burst_to_a_spawned_python_echo(broker, clients):
    b = broker("--spawn", "pyecho=%s %s" % (PYTHON, PY_ECHO))
    asker = clients(b.frontend)
    wait_ready(asker, "pyecho")
    answers = asker.actor("client").port(1)
    seen = count_frames(asker)
    n = 300
    seqs = burst(asker, "echo.pyecho:2@" + b.ep, n, answers)
    got = collect(asker, answers, n)
    assert [m.parts[0][:6] for m in got] == [b"%06d" % i for i in range(n)]
    assert [m.seq for m in got] == seqs
    assert seen["batch"] >= 1, seen
    # request() one at a time still works (one-element steps)
    assert asker.request("echo.pyecho:2@" + b.ep, b"one", timeout=5) == [b"one"]


def test_small_batch_max_bytes_splits_and_keeps_order(broker, clients):
    b = broker("--batch-max-bytes", "2048")
    asker = clients(b.frontend)
    echo = clients(b.frontend)
    assert asker.batch_max_bytes == 2048
    port = echo_client(echo)
    answers = asker.actor("client").port(1)
    n = 200
    seqs = burst(asker, port.address, n, answers, size=300)
    got = collect(asker, answers, n, others=(echo,))
    assert [m.seq for m in got] == seqs
    # a message too big for a batch goes alone, in its place
    with asker.batch():
        asker.send(port.address, b"a", reply=answers)
        asker.send(port.address, b"B" * 3000, reply=answers)
        asker.send(port.address, b"c", b"frame", reply=answers)
        asker.send(port.address, b"d", reply=answers)
    got = collect(asker, answers, 4, others=(echo,))
    assert [m.parts for m in got] == [[b"a"], [b"B" * 3000], [b"c", b"frame"], [b"d"]]


def test_batching_off_at_the_broker(broker, clients):
    b = broker("--batch-max-bytes", "0")
    asker = clients(b.frontend)
    echo = clients(b.frontend)
    assert not asker.batching and asker.bootstrap.get("batch") is not True
    port = echo_client(echo)
    answers = asker.actor("client").port(1)
    seen = count_frames(asker)
    seqs = burst(asker, port.address, 100, answers)
    got = collect(asker, answers, 100, others=(echo,))
    assert [m.seq for m in got] == seqs and seen["batch"] == 0


def test_returns_of_a_batched_burst_come_back_in_order(broker, clients):
    b = broker()
    a = clients(b.frontend)
    returned = []
    a.on_undeliverable(returned.append)
    with a.batch():
        seqs = [a.send("x.ghost:1@" + b.ep, b"%d" % i) for i in range(50)]
    deadline_polls = 200
    while len(returned) < 50 and deadline_polls:
        a.poll(0.05)
        deadline_polls -= 1
    assert [e.seq for e in returned] == seqs
    assert {e.code for e in returned} == {"NO_SUCH_PROC"}


COUNTING_PROC = r'''
import zhost

proc = zhost.boot(actor="echo")
seen = {"batch": 0, "lone": 0}
read = proc._read


def counting(frames):
    seen["batch" if frames and frames[0][3:4] == b"\x12" else "lone"] += 1
    read(frames)


proc._read = counting
echo = proc.actor("echo")
echo.port(2, callback=lambda m: m.respond(*m.parts))
echo.port(3, callback=lambda m: m.respond(b"%d %d %d %d" % (
    proc.batching, proc.batch_max_bytes, seen["batch"], seen["lone"])))
proc.on_undeliverable(lambda e: None)
proc.ready()
proc.run()
proc.close()
'''


def test_a_spawned_python_proc_negotiates_batch_through_its_environment(broker, clients,
                                                                       tmp_path):
    script = tmp_path / "counting_proc.py"
    script.write_text(COUNTING_PROC)
    b = broker("--batch-max-bytes", "65536", "--spawn", "counter=%s %s" % (PYTHON, script))
    asker = clients(b.frontend)
    wait_ready(asker, "counter")
    answers = asker.actor("client").port(1)
    n = 300
    seqs = burst(asker, "echo.counter:2@" + b.ep, n, answers)
    got = collect(asker, answers, n)
    assert [m.seq for m in got] == seqs
    batching, limit, batches, lone = map(int, asker.request(
        "echo.counter:3@" + b.ep, b"?", timeout=5)[0].split())
    # ZHOST_BATCH_MAX_BYTES reached it, its READY said batch: true, and the
    # broker sent it BATCH frames
    assert (batching, limit) == (1, 65536)
    assert batches >= 1 and batches + lone < n, (batches, lone)
