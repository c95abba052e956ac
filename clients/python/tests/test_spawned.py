"""Spawned procs: examples/py_echo_proc.py (a proc written in Python) and,
once it exists, the C zhost-echo, each asked by a Python client."""

import os
import time

import pytest

import zhost
from conftest import ECHO_BIN, PY_ECHO, PYTHON


def wait_ready(proc, name, timeout=10.0):
    """The agent's list entry for `name` once it is ready."""
    deadline = time.monotonic() + timeout
    entry = None
    while time.monotonic() < deadline:
        entry = proc.agent.status(name)["proc"]
        if entry["status"] == "ready":
            return entry
        assert entry["status"] == "starting", entry
        proc.poll(0.05)
    raise AssertionError("%s not ready within %ss: %r" % (name, timeout, entry))


def ask_echo(client, name, ep):
    """The echo contract: port 1 answers the actor's address; port 2 echoes parts."""
    actor = "echo.%s@%s" % (name, ep)
    assert client.request("echo.%s:1@%s" % (name, ep), b"who?", timeout=5) == [actor.encode()]
    big = os.urandom(1 << 20)
    for parts in ([b"hi"], [b"a", b"\0b\0", b""], [b"x" * 5000, big]):
        assert client.request("echo.%s:2@%s" % (name, ep), *parts, timeout=5) == parts
    answer = client.request("echo.%s:2@%s" % (name, ep), b"s", meta={"seq": 4242},
                            timeout=5, message=True)
    assert answer.seq == 4242 and answer.src == actor and answer.parts == [b"s"]
    return actor


def test_python_spawned_echo_proc(broker, clients):
    b = broker("--spawn", "pyecho=%s %s" % (PYTHON, PY_ECHO))
    alice = clients(b.frontend)
    entry = wait_ready(alice, "pyecho")
    assert entry["proc"] == "pyecho@" + b.ep and entry["pid"] > 0
    assert ask_echo(alice, "pyecho", b.ep) == "echo.pyecho@" + b.ep
    # the Python runtime bounces what it cannot deliver
    with pytest.raises(zhost.Undeliverable) as info:
        alice.request("ghost.pyecho:1@" + b.ep, b"boo", timeout=5)
    assert info.value.code == "NO_SUCH_ACTOR" and info.value.at == "pyecho@" + b.ep
    assert info.value.payload == [b"boo"]
    with pytest.raises(zhost.Undeliverable) as info:
        alice.request("echo.pyecho:3@" + b.ep, b"boo", timeout=5)
    assert info.value.code == "NO_SUCH_PORT"
    # stop over the control socket: STOP -> BYE -> exit 0
    with zhost.attach(b.control) as admin:
        t0 = time.monotonic()
        answer = admin.agent.stop("pyecho", timeout_ms=5000)
        assert time.monotonic() - t0 < 4.0
        assert answer["status"] == "stopped"
        assert answer["proc"]["status"] == "stopped" and answer["proc"]["exit_code"] == 0
        assert admin.agent.list()[0]["status"] == "stopped"
    with pytest.raises(zhost.Undeliverable) as info:
        alice.request("echo.pyecho:1@" + b.ep, b"who?", timeout=5)
    assert info.value.code == "PROC_GONE"


def test_spawn_python_proc_through_the_agent(broker):
    b = broker()
    with zhost.attach(b.control, label="admin") as admin:
        answer = admin.agent.spawn("pyecho2", argv=[PYTHON, PY_ECHO], ready_timeout_ms=10000)
        assert answer["proc"] == "pyecho2@" + b.ep and answer["pid"] > 0
        ask_echo(admin, "pyecho2", b.ep)
        status = admin.agent.status("pyecho2")
        assert "py_echo_proc echo.pyecho2@%s up" % b.ep in status["tail"]
        assert admin.agent.stop("pyecho2")["proc"]["exit_code"] == 0


def test_boot_names_the_missing_or_invalid_variable():
    good = {"ZHOST_PROC": "w1@tcp://127.0.0.1:7100", "ZHOST_BACKEND": "ipc:///tmp/nowhere/backend",
            "ZHOST_HOST": "tcp://127.0.0.1:7100", "ZHOST_HEARTBEAT_MS": "250"}
    for var, value in [("ZHOST_PROC", None), ("ZHOST_PROC", "w1"), ("ZHOST_PROC", "W@tcp://h:1"),
                       ("ZHOST_BACKEND", None), ("ZHOST_BACKEND", "udp://x"),
                       ("ZHOST_HOST", None), ("ZHOST_HEARTBEAT_MS", "soon"),
                       ("ZHOST_HEARTBEAT_MS", "0")]:
        env = dict(good)
        if value is None:
            del env[var]
        else:
            env[var] = value
        with pytest.raises(zhost.BootError) as info:
            zhost.boot(environ=env)
        assert info.value.variable == var and var in str(info.value)
    proc = zhost.boot(environ=good)   # connects lazily: nothing listens, no error
    try:
        assert proc.address == "w1@tcp://127.0.0.1:7100" and proc.routing_id == b"w1"
        assert proc.heartbeat_ms == 250 and proc.main.address == "main.w1@tcp://127.0.0.1:7100"
        assert proc.agent.address == "host_agent.service@tcp://127.0.0.1:7100"
    finally:
        proc.close(timeout=0.1)


@pytest.mark.skipif(not os.access(ECHO_BIN, os.X_OK),
                    reason="no C zhost-echo at %s yet (examples/zhost-echo.c)" % ECHO_BIN)
def test_python_client_and_c_echo_proc(broker, clients):
    """Python -> C (requests) and C -> Python (answers, RETURNs)."""
    b = broker("--spawn", "cecho=%s" % ECHO_BIN, "--spawn", "pyecho=%s %s" % (PYTHON, PY_ECHO))
    alice = clients(b.frontend)
    wait_ready(alice, "cecho")
    wait_ready(alice, "pyecho")
    assert ask_echo(alice, "cecho", b.ep) == "echo.cecho@" + b.ep
    assert ask_echo(alice, "pyecho", b.ep) == "echo.pyecho@" + b.ep
    with pytest.raises(zhost.Undeliverable) as info:
        alice.request("ghost.cecho:1@" + b.ep, b"boo", timeout=5)
    assert info.value.code == "NO_SUCH_ACTOR" and info.value.payload == [b"boo"]
    with zhost.attach(b.control) as admin:
        assert admin.agent.stop("cecho")["proc"]["exit_code"] == 0


def test_python_proc_stops_promptly_when_the_broker_shuts_down_at_once(broker):
    """SIGTERM right after "ready": whether the proc was still starting (its
    READY is then refused, 403, and the library closes) or ready (STOP), it
    exits 0 quickly, so the broker does not wait out its terminate timeout."""
    b = broker("--spawn", "pyecho=%s %s" % (PYTHON, PY_ECHO))
    t0 = time.monotonic()
    assert b.terminate(timeout=15) == 0
    assert time.monotonic() - t0 < 5.0, b.stderr()[-2000:]


PING_BIN = os.path.join(os.path.dirname(ECHO_BIN), "zhost-ping")


@pytest.mark.skipif(not os.access(PING_BIN, os.X_OK),
                    reason="no C zhost-ping at %s yet (examples/zhost-ping.c)" % PING_BIN)
def test_c_client_asks_the_python_proc(broker, clients):
    """C -> Python: zhost-ping (libzhost, attached) asks py_echo_proc; the
    Python runtime answers, and bounces a ghost actor NO_SUCH_ACTOR."""
    import subprocess
    b = broker("--spawn", "pyecho=%s %s" % (PYTHON, PY_ECHO))
    wait_ready(clients(b.frontend), "pyecho")

    def ping(*args):
        return subprocess.run([PING_BIN, "-c", "2", "-i", "50", "-W", "3000"] + list(args),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30,
                              text=True)

    actor = "echo.pyecho@" + b.ep
    r = ping(b.frontend, actor)
    assert r.returncode == 0, r.stdout
    assert r.stdout.count("reply from %s" % actor) == 2 and actor in r.stdout
    r = ping("-p", "2", "-s", "5000", b.frontend, actor)
    assert r.returncode == 0, r.stdout
    r = ping(b.frontend, "ghost.pyecho@" + b.ep)
    assert r.returncode == 1 and "NO_SUCH_ACTOR" in r.stdout, r.stdout
