"""libzhost end to end: real C procs (examples/) and clients through the real broker.

The seed's scenarios (seed/host.rs), with real processes:

- two spawned procs talk through the broker (zhost-pipeline front → upper),
  with the asynchronous and the blocking request forms;
- the service proc reaches a proc (host agent answers to a C client and, via
  front, to a spawned C proc);
- an attached client asks a spawned echo and gets the reply (zhost-ping);
- a send to a missing actor returns to the sender's undeliverable handler,
  from the client side and from the host side (zhost-collector, the seed's
  UndeliverableCollector: test_duplex_undeliverable_from_client / _from_host);
- reply ports, request timeouts, late answers to a closed once-port;
- a proc's own RETURNs (NO_SUCH_ACTOR / NO_SUCH_PORT) honour the flag;
- STOP: on_stop runs, exit 0 (1 when a handler failed); a broker's BYE ends an
  attached proc with a closed status; SIGTERM detaches cleanly; boot errors
  name the variable.

The C programs come from $ZHOST_BUILD_DIR (zhost-echo, zhost-ping,
zhost-pipeline, zhost-collector); tests skip when they are not built.
"""

import os
import re
import signal
import subprocess
import threading
import time

import pytest

import zhp
from conftest import BUILD_DIR, SANITIZER_MARKS, broker_env

ECHO = os.path.join(BUILD_DIR, "zhost-echo")
PING = os.path.join(BUILD_DIR, "zhost-ping")
PIPELINE = os.path.join(BUILD_DIR, "zhost-pipeline")
COLLECTOR = os.path.join(BUILD_DIR, "zhost-collector")


@pytest.fixture(autouse=True)
def _need_examples():
    for path in (ECHO, PING, PIPELINE, COLLECTOR):
        if not os.access(path, os.X_OK):
            pytest.skip("no %s (build the examples; set ZHOST_BUILD_DIR)" % path)


def ok(ans):
    assert ans["ok"] is True, ans
    return ans


class CProc(object):
    """A C program run by the test (an attached client): its stdout lines,
    read by a thread, and bounded waits on them."""

    def __init__(self, argv):
        self.argv = argv
        self.lines = []
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, env=broker_env())
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.stderr = b""

    def _read(self):
        for raw in self.proc.stdout:
            with self._cond:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_line(self, pattern, timeout=5.0):
        """The first stdout line matching pattern (a regex), within timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines:
                    m = re.search(pattern, line)
                    if m:
                        return m
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError("%s: no line /%s/ within %.1fs: %r" % (
                        self.argv[0], pattern, timeout, self.lines))
                self._cond.wait(min(left, 0.1))

    def wait(self, timeout=10.0):
        rc = self.proc.wait(timeout)
        self._reader.join(2.0)
        self.stderr = self.proc.stderr.read()
        return rc

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5.0)


@pytest.fixture
def cproc():
    made = []

    def start(*argv):
        p = CProc([str(a) for a in argv])
        made.append(p)
        return p

    yield start
    for p in made:
        p.kill()
        if not p.stderr:
            p.stderr = p.proc.stderr.read()
        p.proc.stdout.close()
        p.proc.stderr.close()
        no_sanitizer_report(p.argv[0], p.stderr.decode("utf-8", "replace"))


def no_sanitizer_report(name, text):
    for mark in SANITIZER_MARKS:
        assert mark not in text, "%s: sanitizer report:\n%s" % (name, text[-3000:])


def run(*argv, timeout=30.0):
    r = subprocess.run([str(a) for a in argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       stdin=subprocess.DEVNULL, text=True, timeout=timeout, env=broker_env())
    no_sanitizer_report(argv[0], r.stderr)
    return r


def spawn(ctl, name, *argv):
    return ok(ctl.request("spawn", name=name, argv=[str(a) for a in argv], timeout=15.0))


def stop(ctl, name):
    """Stop a proc; its list entry (status, exit_code)."""
    ans = ok(ctl.request("stop", name=name, timeout=15.0))
    return ans["proc"]


def attached_collector(cproc, b, label="remote"):
    c = cproc(COLLECTOR, "--attach", b.frontend[0], "--label", label)
    addr = c.wait_line(r"^proc (\S+)$").group(1)
    return c, addr


# --- the echo proc's contract ---------------------------------------------------

def test_echo_contract_ports_1_and_2_and_stop(broker, client):
    """port 1: own address as text at `reply`; port 2: the parts unchanged;
    seq echoed; STOP: exit 0."""
    b = broker("--terminate-timeout", "3s")
    ctl = client(b, via="control")
    spawn(ctl, "e1", ECHO)
    me = client(b, label="tester")

    me.send("echo.e1:1@" + b.ep, [b"who"], meta={"reply": me.port(7), "seq": 41})
    msg = me.expect(zhp.SEND, timeout=5.0)
    assert msg.dest == me.port(7) and msg.src == "echo.e1@" + b.ep
    assert msg.parts == [("echo.e1@" + b.ep).encode()] and msg.meta.get("seq") == 41, msg

    big = bytes(range(256)) * 300  # 76,800 bytes: over the inline threshold
    parts = [b"small", b"", big, b"\x00tail"]
    me.send("echo.e1:2@" + b.ep, parts, meta={"reply": me.port(8), "seq": 42})
    msg = me.expect(zhp.SEND, timeout=5.0)
    assert msg.dest == me.port(8) and msg.parts == parts and msg.meta.get("seq") == 42
    # a big first part is not inlined by the C proc: it travels as a frame
    me.send("echo.e1:2@" + b.ep, [big], meta={"reply": me.port(9)})
    msg = me.expect(zhp.SEND, timeout=5.0)
    assert msg.parts == [big] and not (msg.flags & zhp.F_INLINE) and len(msg.frames) == 2

    # no reply in meta: nothing comes back
    me.send("echo.e1:1@" + b.ep, [b"who"])
    assert me.try_recv(0.3) is None

    entry = stop(ctl, "e1")
    assert entry["status"] == "stopped" and entry.get("exit_code") == 0, entry


# --- two spawned procs -----------------------------------------------------------

@pytest.mark.parametrize("mode", ["async", "blocking"])
def test_two_spawned_procs_work_together(broker, client, mode):
    """client → front.fr → (request) upper.up → front.fr → client."""
    b = broker("--terminate-timeout", "3s")
    ctl = client(b, via="control")
    spawn(ctl, "up", PIPELINE, "upper")
    extra = ["--blocking"] if mode == "blocking" else []
    spawn(ctl, "fr", PIPELINE, "front", "upper.up", *extra)
    me = client(b)
    for i in range(5):
        me.send("front.fr:1@" + b.ep, [b"hello %d" % i], meta={"reply": me.port(3), "seq": i})
    got = sorted((m.meta["seq"], m.parts) for m in
                 (me.expect(zhp.SEND, timeout=5.0) for _ in range(5)))
    assert got == [(i, [b"HELLO %d" % i]) for i in range(5)], got

    # the same with the C client
    r = run(PING, "-c", "2", "-i", "50", "-t", "pipeline", b.frontend[0], "front.fr@" + b.ep)
    assert r.returncode == 0, r
    assert r.stdout.count('"PIPELINE"') == 2, r.stdout

    # upper gone: front answers with the RETURN's code
    assert stop(ctl, "up")["exit_code"] == 0
    me.send("front.fr:1@" + b.ep, [b"x"], meta={"reply": me.port(4)})
    msg = me.expect(zhp.SEND, timeout=5.0)
    assert msg.parts == [b"error: PROC_GONE"], msg
    assert stop(ctl, "fr")["exit_code"] == 0


def test_pipeline_from_broker_spawn_flags(broker, client):
    """--spawn NAME=COMMAND at broker start, as a user would write it."""
    b = broker("--terminate-timeout", "3s",
               "--spawn", "up=%s upper" % PIPELINE,
               "--spawn", "fr=%s front upper.up" % PIPELINE)
    ctl = client(b, via="control")
    deadline = time.monotonic() + 10.0
    while True:
        procs = {p["name"]: p["status"] for p in ok(ctl.request("list"))["procs"]}
        if procs.get("up") == "ready" and procs.get("fr") == "ready":
            break
        assert time.monotonic() < deadline, procs
        time.sleep(0.05)   # poll interval
    r = run(PING, "-t", "abc", b.frontend[0], "front.fr@" + b.ep)
    assert r.returncode == 0 and '"ABC"' in r.stdout, r


# --- the service proc reaches a proc ---------------------------------------------

def test_service_proc_reaches_procs(broker, client):
    """The host agent answers a C client (frontend and control socket) and a
    spawned C proc (front asks host_agent.service for its client)."""
    b = broker("--terminate-timeout", "3s")
    r = run(PING, "-c", "2", "-i", "20", b.frontend[0], "agent")
    assert r.returncode == 0 and r.stdout.count("reply from host_agent.service@" + b.ep) == 2, r
    r = run(PING, b.control, "agent")
    assert r.returncode == 0 and "reply from host_agent.service@" in r.stdout, r

    ctl = client(b, via="control")
    spawn(ctl, "fr", PIPELINE, "front", "host_agent.service")
    me = client(b)
    me.send("front.fr:1@" + b.ep, [zhp.pack({"op": "ping"})], meta={"reply": me.port(5)})
    msg = me.expect(zhp.SEND, timeout=5.0)
    answer = zhp.unpack(msg.parts[0])
    assert answer["ok"] is True and answer["host"] == b.ep, answer


# --- attached client asks a spawned echo -----------------------------------------

def test_attached_client_asks_spawned_echo(broker, client):
    b = broker("--terminate-timeout", "3s")
    ctl = client(b, via="control")
    spawn(ctl, "e1", ECHO)
    r = run(PING, "-c", "3", "-i", "20", b.frontend[0], "echo.e1@" + b.ep)
    assert r.returncode == 0, r
    lines = [l for l in r.stdout.splitlines() if l.startswith("reply from")]
    assert len(lines) == 3 and all('"echo.e1@%s"' % b.ep in l for l in lines), r.stdout
    assert "3 sent, 3 answered" in r.stdout
    # port 2 with a payload bigger than the inline threshold, both ways C
    r = run(PING, "-c", "2", "-i", "20", "-p", "2", "-s", "100000", b.frontend[0],
            "echo.e1@" + b.ep)
    assert r.returncode == 0 and r.stdout.count("bytes=100000") == 2, r
    # the client detached with BYE (clean), not by silence
    assert "reason=bye" in b.stderr_text()


# --- undeliverable, both directions ----------------------------------------------

def report(me, timeout=5.0):
    msg = me.expect(zhp.SEND, timeout=timeout)
    line = msg.parts[0].decode()
    return dict(kv.split("=", 1) for kv in line.split()[1:])


def test_duplex_undeliverable_from_client(broker, client, cproc):
    """An attached C proc's collector sends to missing actors; the RETURNs
    reach its undeliverable handler (seed: ..._from_client)."""
    b = broker("--terminate-timeout", "3s")
    ctl = client(b, via="control")
    spawn(ctl, "e1", ECHO)
    coll, remote = attached_collector(cproc, b)
    coll_port = zhp.port_addr(zhp.actor_addr(remote, "collector"), 1)
    me = client(b)

    # the service proc has no such actor: the broker bounces it
    bogus = "no-such-actor.service:0@" + b.ep
    me.send(coll_port, [bogus.encode()], meta={"reply": me.port(2)})
    rep = report(me)
    assert rep == {"dest": bogus, "code": "NO_SUCH_ACTOR", "at": b.ep, "parts": "1"}, rep

    # a spawned C proc has no such actor / port: the proc itself bounces it
    ghost = "ghost.e1:0@" + b.ep
    me.send(coll_port, [ghost.encode()], meta={"reply": me.port(2)})
    rep = report(me)
    assert rep == {"dest": ghost, "code": "NO_SUCH_ACTOR", "at": "e1@" + b.ep, "parts": "1"}
    port9 = "echo.e1:9@" + b.ep
    me.send(coll_port, [port9.encode()], meta={"reply": me.port(2)})
    rep = report(me)
    assert rep["code"] == "NO_SUCH_PORT" and rep["dest"] == port9 and rep["at"] == "e1@" + b.ep

    coll.proc.send_signal(signal.SIGTERM)  # a clean detach: on_stop, BYE, exit 0
    assert coll.wait(10.0) == 0, coll.stderr
    assert "stopping" in coll.lines


def test_duplex_undeliverable_from_host(broker, client, cproc):
    """A spawned C proc's collector sends to a missing actor on an attached
    C proc, which returns it NO_SUCH_ACTOR (seed: ..._from_host)."""
    b = broker("--terminate-timeout", "3s")
    ctl = client(b, via="control")
    spawn(ctl, "host1", COLLECTOR)
    remote_coll, remote = attached_collector(cproc, b)
    me = client(b)
    bogus = zhp.port_addr(zhp.actor_addr(remote, "ghost-actor"), 0)
    me.send("collector.host1:1@" + b.ep, [bogus.encode()], meta={"reply": me.port(2)})
    rep = report(me)
    assert rep == {"dest": bogus, "code": "NO_SUCH_ACTOR", "at": remote, "parts": "1"}, rep
    # the attached proc did not hand it to any handler of its own
    assert not any(l.startswith("undeliverable") for l in remote_coll.lines)
    assert stop(ctl, "host1")["exit_code"] == 0


def test_proc_returns_honour_the_flag(broker, client):
    """A C proc bounces a SEND for a missing actor/port only when asked, as
    the broker does: dest = original src, src/at = the proc, INLINE kept,
    original meta and payload frames unchanged."""
    b = broker("--terminate-timeout", "3s")
    ctl = client(b, via="control")
    spawn(ctl, "e1", ECHO)
    me = client(b)
    me.send("ghost.e1:1@" + b.ep, [b"quiet"], returnable=False)
    me.send("echo.e1:5@" + b.ep, [b"quiet"], returnable=False)
    assert me.try_recv(0.5) is None

    for dest, code in (("ghost.e1:1@" + b.ep, "NO_SUCH_ACTOR"),
                       ("echo.e1:5@" + b.ep, "NO_SUCH_PORT")):
        sent = me.send(dest, [b"head part", b"frame part"], meta={"seq": 3, "headers": {"k": "v"}})
        msg = me.expect(zhp.RETURN, timeout=5.0)
        root = msg.meta["failures"][0]
        assert root["code"] == code and root["at"] == "e1@" + b.ep and root["reason"], msg
        assert msg.dest == me.actor and msg.src == "e1@" + b.ep
        assert msg.meta["dest"] == dest and msg.meta["meta"] == {"seq": 3, "headers": {"k": "v"}}
        assert msg.flags == zhp.F_INLINE and msg.ttl == zhp.DEFAULT_TTL - 1
        assert msg.parts == [b"head part", b"frame part"] and len(msg.frames) == len(sent)


# --- reply ports and request timeouts --------------------------------------------

def test_request_timeout_and_late_answer_to_a_closed_once_port(broker, client, cproc):
    """zhost-ping asks a python actor that answers the first request too late
    (TIMEOUT; the late answer finds the once-port closed: NO_SUCH_PORT) and
    the second in time."""
    b = broker()
    me = client(b)
    ping = cproc(PING, "-c", "2", "-i", "1000", "-W", "300", b.frontend[0], me.actor)
    req = me.expect(zhp.SEND, timeout=5.0, keepalive=())
    reply = req.meta["reply"]
    seq = req.meta["seq"]
    assert zhp.split_addr(reply)[0].startswith("ping.ping<"), reply
    port = int(zhp.split_addr(reply)[0].rsplit(":", 1)[1])
    assert port >= 1 << 32, "once-ports come from the high range"
    t0 = time.monotonic()
    ping.wait_line(r"^seq=1 TIMEOUT")
    assert time.monotonic() - t0 < 2.0
    me.send(reply, [b"late"], meta={"seq": seq})
    ret = me.expect(zhp.RETURN, timeout=3.0)
    assert ret.meta["failures"][0]["code"] == "NO_SUCH_PORT" and ret.meta["dest"] == reply, ret

    req2 = me.expect(zhp.SEND, timeout=5.0)
    assert req2.meta["reply"] != reply  # a fresh once-port per request
    me.send(req2.meta["reply"], [b"in time"], meta={"seq": req2.meta["seq"]})
    ping.wait_line(r'^reply from %s: seq=2 .*"in time"' % re.escape(me.actor))
    assert ping.wait(10.0) == 1  # one of two answered
    assert "1 answered" in ping.lines[-1]


def test_request_returned_fails_fast(broker, client):
    b = broker("--terminate-timeout", "3s")
    ctl = client(b, via="control")
    spawn(ctl, "e1", ECHO)
    t0 = time.monotonic()
    r = run(PING, "-W", "5000", b.frontend[0], "nobody.e1@" + b.ep)
    assert r.returncode == 1 and "seq=1 NO_SUCH_ACTOR" in r.stdout, r
    r = run(PING, "-W", "5000", b.frontend[0], "echo.gone@" + b.ep)
    assert r.returncode == 1 and "seq=1 NO_SUCH_PROC" in r.stdout, r
    assert time.monotonic() - t0 < 4.0, "a RETURN ends a request before its timeout"


# --- lifecycle ---------------------------------------------------------------------

def test_stop_runs_on_stop_and_a_failed_handler_exits_1(broker, client):
    b = broker("--terminate-timeout", "3s")
    ctl = client(b, via="control")
    spawn(ctl, "c1", COLLECTOR)
    me = client(b)
    me.send("collector.c1:3@" + b.ep, [b"fail please"])
    # the handler ran and failed: libzhost says so on stderr, in the tail
    deadline = time.monotonic() + 5.0
    while "handler-failed" not in ok(ctl.request("status", name="c1"))["tail"]:
        assert time.monotonic() < deadline, "c1 never reported handler-failed"
        time.sleep(0.05)   # poll interval
    entry = stop(ctl, "c1")
    assert entry["status"] == "stopped" and entry.get("exit_code") == 1, entry
    tail = ok(ctl.request("status", name="c1"))["tail"]
    assert "stopping" in tail and "handler-failed" in tail, tail


def test_broker_bye_closes_an_attached_proc(broker, cproc):
    """BYE {shutdown} from the broker: the attached proc ends, status closed,
    exit 2, no retry loop."""
    b = broker("--linger", "300ms")
    coll, _ = attached_collector(cproc, b)
    b.signal(signal.SIGTERM)
    assert coll.wait(10.0) == 2
    assert any(l.startswith("exit 2 BYE from the broker: shutdown") for l in coll.lines), coll.lines
    b.expect_exit = b.wait(10.0)
    assert b.expect_exit == 0


def test_heartbeats_keep_an_idle_client_attached(broker, client, cproc):
    """With a 200 ms heartbeat, a client idle for 1.5 s stays attached (it
    PINGs), and its proc id survives."""
    b = broker("--heartbeat", "200ms")
    r = run(PING, "-c", "2", "-i", "1500", b.frontend[0], "agent")
    assert r.returncode == 0 and "2 answered" in r.stdout, r
    coll, remote = attached_collector(cproc, b)
    time.sleep(1.5)   # the scenario itself: idle for longer than 3 heartbeats (600 ms)
    me = client(b)
    bogus = zhp.port_addr(zhp.actor_addr(remote, "nobody"), 0)
    me.send(zhp.port_addr(zhp.actor_addr(remote, "collector"), 1), [bogus.encode()],
            meta={"reply": me.port(2)})
    assert report(me)["code"] == "NO_SUCH_ACTOR"
    assert "heartbeat expired" not in b.stderr_text()


def test_boot_errors_name_the_variable(broker):
    env = broker_env()
    r = subprocess.run([ECHO], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=10)
    assert r.returncode == 2 and "ZHOST_PROC is not set" in r.stderr, r
    env.update(ZHOST_PROC="e1@tcp://127.0.0.1:1", ZHOST_BACKEND="ipc:///nonexistent/backend",
               ZHOST_HOST="tcp://127.0.0.1:1", ZHOST_HEARTBEAT_MS="soon")
    r = subprocess.run([ECHO], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=10)
    assert r.returncode == 2 and "ZHOST_HEARTBEAT_MS=soon" in r.stderr, r
    env.update(ZHOST_PROC="E1@tcp://127.0.0.1:1", ZHOST_HEARTBEAT_MS="100")
    r = subprocess.run([ECHO], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=10)
    assert r.returncode == 2 and "ZHOST_PROC=E1@" in r.stderr, r
    r = run(PING, "tcp://127.0.0.1:1", "agent", timeout=20)
    assert r.returncode == 2 and "no BOOTSTRAP" in r.stderr, r
