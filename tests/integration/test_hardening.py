"""Hardening: broker defects, each as the scenario a user would check
(docs/protocol.md §6 and §8 "Rules every answer follows"; docs/design.md "Security",
"Process manager").

- READY is accepted only from a proc being spawned: an attached client's
  READY, on the frontend or the control socket, is ERROR 403.
- Admin rights follow the CURVE key, never the routing id: a client that
  takes over an admin's routing id (ROUTER_HANDOVER) under a non-admin key
  cannot spawn or stop, and cannot send as the admin.
- The runtime dir is refused when it is a symlink, someone else's, not
  0700, or holds files that are not zhost's; the broker never chmods or
  empties it. A new path, or a dir zhost made before, is fine.
- A closed stderr pipe (SIGPIPE) never kills the broker.
- More than 256 procs, each printing more than a pipe holds before READY,
  all become ready.
- The host agent trusts no declared count: requests claiming huge
  containers are BAD_REQUEST, and the broker's VmPeak stays flat.
- `status` gives the output tail to admin callers only.
- `reply` must be a port of the requester's own principal; answers echo
  `seq`.
- A proc's grandchildren (its process group) end with it: at stop, kill,
  broker shutdown, and when its leader exits on its own.
- `stop` with a badly typed `timeout_ms` is BAD_REQUEST and stops nothing.

Every wait is bounded; none of these tests sleeps in place of a condition.
"""

import os
import re
import resource
import signal
import stat
import struct
import subprocess
import threading
import time

import pytest
import zmq
import zmq.auth

import zhp
from conftest import BROKER_BIN, BUILD_DIR, broker_env, pid_alive

PY = "/usr/bin/python3"
HERE = os.path.dirname(os.path.abspath(__file__))
TEST_PROC = os.path.join(BUILD_DIR, "zh-test-proc")
CTL = os.path.join(BUILD_DIR, "zhost-ctl")
GRANDCHILD_PROC = os.path.join(HERE, "procs", "grandchild_proc.py")
VMPEAK_GROWTH_BOUND_KIB = 64 * 1024

ARRAY32_HUGE = b"\xdd\xff\xff\xff\xff"      # array32 of 2**32-1 entries, in 5 bytes
MAP32_HUGE = b"\xdf\xff\xff\xff\xff"        # map32 of 2**32-1 pairs, in 5 bytes
# {"op": "ping", "x": array32 of 2**32-1}
MAP_WITH_HUGE_ARRAY = b"\x82\xa2op\xa4ping\xa1x" + ARRAY32_HUGE


# --- helpers -------------------------------------------------------------------

def need_test_proc():
    if not os.access(TEST_PROC, os.X_OK):
        pytest.skip("no %s (build the zh-test-proc target)" % TEST_PROC)


def ok(answer):
    assert answer["ok"] is True, answer
    return answer


def refused(answer, code):
    """{"ok": false, "error": {"code": code, "message": str}}."""
    assert answer["ok"] is False, "expected %s, got %r" % (code, answer)
    assert answer["error"]["code"] == code, "expected %s, got %r" % (code, answer)
    assert isinstance(answer["error"].get("message"), str), answer
    return answer


def procs_by_name(ctl):
    return {p["name"]: p for p in ok(ctl.request("list"))["procs"]}


def wait_status(ctl, name, want, timeout=10.0):
    """The status entry of `name` once its status is in want (a tuple)."""
    deadline = time.monotonic() + timeout
    while True:
        st = ok(ctl.request("status", name=name))["proc"]
        if st["status"] in want:
            return st
        assert time.monotonic() < deadline, "%s is %r, not %s" % (name, st, want)
        time.sleep(0.02)   # poll interval


alive = pid_alive  # exists and is not a zombie (conftest)


def wait_gone(pid, timeout=5.0):
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)   # poll interval
    return not alive(pid)


def vmpeak_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmPeak:"):
                return int(line.split()[1])
    raise AssertionError("no VmPeak for %d" % pid)


def agent_send(c, first_part, meta):
    """A raw host-agent request: first payload part as given, meta as given."""
    return c.send(c.agent_port(), [first_part], meta=meta)


def agent_answer(c, reply, timeout=5.0):
    """The agent's answer at the port `reply`, or an ERROR, whichever comes
    first: (message, decoded answer or None)."""
    msg = c.wait_for(lambda m: m.cmd == zhp.ERROR or
                     (m.cmd in (zhp.SEND, zhp.RETURN) and m.dest == reply), timeout)
    if msg.cmd == zhp.SEND:
        return msg, zhp.unpack(msg.parts[0])
    return msg, None


# --- a. READY from anyone not being spawned ----------------------------------------

@pytest.mark.parametrize("via", ["frontend", "control"])
def test_ready_from_an_attached_client_is_403(broker, client, via):
    """PROTOCOL §6: the broker accepts READY only from a proc it is spawning;
    an attached client's READY gets ERROR 403, on the frontend and on the
    control socket alike, and the client stays attached."""
    b = broker()
    c = client(b, via=via)
    c.send_frames(zhp.control(zhp.READY, {"proc": c.proc, "pid": os.getpid()}))
    c.expect_error(403)
    assert c.request("ping")["ok"] is True, "the %s client is still attached" % via


# --- b. admin rights follow the CURVE key --------------------------------------------

@pytest.fixture
def curve_keys(tmp_path):
    """zhost-ctl keygen: broker, alice (allowed), root (admin)."""
    if not os.access(CTL, os.X_OK):
        pytest.skip("no zhost-ctl in %s" % BUILD_DIR)
    d, allow, admin = tmp_path / "keys", tmp_path / "allow", tmp_path / "admin"
    for p in (d, allow, admin):
        p.mkdir()
    for name in ("broker", "alice", "root"):
        subprocess.run([CTL, "keygen", name, "--out", str(d)], check=True,
                       stdout=subprocess.DEVNULL)
    (allow / "alice.key").write_bytes((d / "alice.key").read_bytes())
    (admin / "root.key").write_bytes((d / "root.key").read_bytes())
    server, _ = zmq.auth.load_certificate(str(d / "broker.key"))

    def keys(name):
        pub, sec = zmq.auth.load_certificate(str(d / ("%s.key_secret" % name)))
        return pub, sec, server

    return d, allow, admin, keys


def test_a_routing_id_taken_over_under_another_key_has_no_admin_rights(
        broker, client, zctx, curve_keys):
    """root (an admin key) attaches with routing id R; alice (allowed, not
    admin) connects with the same R and asks the agent to spawn and to
    stop, writing root's address as src. With CURVE the frontend does not
    hand R over (docs/broker.md, Security): nothing alice sends is carried
    out or routed (at most she hears ERROR 403 or NOT_ALLOWED), her ATTACH
    does not get root's proc, and messages for root still reach root, not
    her."""
    need_test_proc()
    d, allow, admin, keys = curve_keys
    b = broker("--curve-secret", d / "broker.key_secret", "--curve-allow", allow,
               "--curve-admin", admin, "--terminate-timeout", "1s",
               "--heartbeat", "10s")   # root's quiet socket is not dropped meanwhile
    ctl = client(b, via="control")
    ok(ctl.request("spawn", name="victim", argv=[TEST_PROC], timeout=10.0))
    carol = zhp.Client(zctx, b.frontend[0], name="carol", curve=keys("alice"))
    carol.attach("carol")

    rid = zhp.random_routing_id()
    root = zhp.Client(zctx, b.frontend[0], routing_id=rid, name="root", curve=keys("root"),
                      sockopts={zmq.RECONNECT_IVL: -1})
    root.attach("root")
    assert root.request("ping")["ok"] is True
    alice = zhp.Client(zctx, b.frontend[0], routing_id=rid, name="alice", curve=keys("alice"))
    try:
        def refused_admin(op, **args):
            """alice's request in root's name: nothing, ERROR 403 or NOT_ALLOWED."""
            reply = root.port(500 + len(op))
            alice.try_send_frames(zhp.encode_send(root.agent_port(), root.actor,
                                                  [zhp.pack(dict(op=op, **args))],
                                                  meta={"reply": reply}))
            try:
                msg, answer = agent_answer(alice, reply, timeout=1.0)
            except zhp.Timeout:
                return  # not taken in at all
            if msg.cmd == zhp.ERROR:
                assert msg.body["code"] == 403, "%s: %r" % (op, msg)
            else:
                assert answer.get("ok") is not True, \
                    "alice's %s was carried out under root's routing id: %r" % (op, answer)
                refused(answer, "NOT_ALLOWED")

        refused_admin("spawn", name="hijacked", argv=[TEST_PROC])
        refused_admin("stop", name="victim")
        procs = procs_by_name(ctl)
        assert "hijacked" not in procs, "alice's spawn was carried out: %r" % procs["hijacked"]
        assert procs["victim"]["status"] == "ready", procs["victim"]

        # a plain SEND with root's src is never routed
        alice.try_send_frames(zhp.encode_send(carol.port(9), root.actor, [b"from root, honest"],
                                              meta={"seq": 31}))
        assert carol.try_recv(0.5) is None, "carol got a message in root's name"

        # an ATTACH on R does not hand alice root's proc
        alice.try_send_frames(zhp.control(zhp.ATTACH, {"label": "alice"}))
        msg = alice.try_recv(1.0)
        if msg is not None and msg.cmd == zhp.BOOTSTRAP:
            assert msg.body["proc"] != root.proc, "alice inherited root's proc id"
        elif msg is not None:
            assert msg.cmd == zhp.ERROR and msg.body["code"] == 403, msg

        # what is sent to root goes to root, not to alice
        carol.send(root.port(9), [b"for root"])
        got = root.wait_for(lambda m: m.cmd == zhp.SEND and m.dest == root.port(9), 5.0)
        assert got.parts == [b"for root"]
        assert alice.try_recv(0.3) is None, "alice received root's message"
    finally:
        for c in (alice, root, carol):
            c.close()


# --- c. runtime dir ---------------------------------------------------------------

def snapshot(path):
    """(mode, owner, sorted names) of a directory, through a symlink too."""
    st = os.stat(path)
    return stat.S_IMODE(st.st_mode), st.st_uid, sorted(os.listdir(path))


def start_refused(runtime_dir, timeout=5.0):
    """Run the broker on runtime_dir; it must exit non-zero within timeout.
    Returns its stderr."""
    p = subprocess.Popen([BROKER_BIN, "--frontend", "tcp://127.0.0.1:0",
                          "--runtime-dir", str(runtime_dir)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, env=broker_env(), text=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        out = None
    if out is None:
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=10.0)
        raise AssertionError("the broker took runtime dir %s (still running after %.0fs)\n%s"
                             % (runtime_dir, timeout, err[-2000:]))
    assert p.returncode != 0, "the broker ran on %s and exited 0\n%s" % (runtime_dir, err)
    assert "ready" not in out.split("\n"), out
    return err


# what stderr must say, besides the directory's name
RUNTIME_DIR_CAUSES = {
    "symlink": r"symlink|symbolic link",
    "other-owner": r"owne",
    "unrelated-file": r"notes\.txt|not empty|not a zhost",
    "mode-0755": r"0?755|mode",
}


@pytest.mark.parametrize("case", list(RUNTIME_DIR_CAUSES))
def test_runtime_dir_refused_and_left_as_it_was(tmp_path, case):
    """The runtime dir guards the backend and control sockets (docs/design.md
    Security): the broker refuses (1) a symlink to a dir of ours, (2) a dir
    owned by another user, (3) a dir that holds a file that is not zhost's,
    (4) a dir of ours with mode 0755. It exits non-zero at once, names the
    directory and the cause, and leaves the directory as it was: same mode,
    same owner, same contents (never chmodded, never emptied)."""
    if os.geteuid() != 0 and case == "other-owner":
        pytest.skip("needs root to chown a directory to another user")
    target = tmp_path / "target"
    target.mkdir(mode=0o700)
    os.chmod(target, 0o700)
    given = target
    if case == "symlink":
        given = tmp_path / "link"
        os.symlink(target, given)
    elif case == "other-owner":
        os.chown(target, 65534, 65534)
    elif case == "unrelated-file":
        (target / "notes.txt").write_text("my notes\n")
    elif case == "mode-0755":
        os.chmod(target, 0o755)
    before = snapshot(target)
    err = start_refused(given)
    assert str(given) in err, "stderr does not name %s: %s" % (given, err)
    cause = RUNTIME_DIR_CAUSES[case]
    assert re.search(cause, err, re.I), "stderr does not say why (%s): %s" % (cause, err)
    assert snapshot(target) == before, "the broker changed %s: %r -> %r" % (
        target, before, snapshot(target))
    if case == "symlink":
        assert os.path.islink(given)
    if case == "unrelated-file":
        assert (target / "notes.txt").read_text() == "my notes\n"


def test_runtime_dir_new_or_made_by_zhost_is_used(broker, tmp_path):
    """A path that does not exist is created mode 0700; after a clean exit
    the same dir (all that is left of the last run) serves the next broker;
    an empty 0700 dir does too."""
    fresh = tmp_path / "fresh" / "rt"
    fresh.parent.mkdir()
    first = broker(runtime_dir=fresh)
    assert stat.S_IMODE(os.stat(fresh).st_mode) == 0o700
    first.signal(signal.SIGTERM)
    first.expect_exit = first.wait(10.0)
    assert first.expect_exit == 0
    left = sorted(os.listdir(fresh))
    assert set(left) <= {"broker.pid"}, "left after a clean exit: %r" % left
    again = broker(runtime_dir=fresh)
    assert again.control and stat.S_IMODE(os.stat(fresh).st_mode) == 0o700
    empty = tmp_path / "empty"
    empty.mkdir(mode=0o700)
    os.chmod(empty, 0o700)
    assert broker(runtime_dir=empty).control


# --- d. SIGPIPE -------------------------------------------------------------------

def test_closed_stderr_pipe_does_not_kill_the_broker(tmp_path, zctx):
    """The broker logs to a pipe whose reader went away (docs/design.md: it
    ignores SIGPIPE). Made to log — a client attaches and sends, a proc is
    spawned and prints, stopped — it stays up and answers; SIGTERM still
    ends it cleanly: exit 0, its sockets and pid file gone from the runtime
    dir."""
    need_test_proc()
    rt = tmp_path / "rt"
    p = subprocess.Popen([BROKER_BIN, "--frontend", "tcp://127.0.0.1:0", "--runtime-dir",
                          str(rt), "--log-level", "debug", "--terminate-timeout", "1s"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, env=broker_env(), start_new_session=True)
    lines = []
    ready = threading.Event()

    def read_stdout():
        for raw in p.stdout:
            lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
            if lines[-1] == "ready":
                ready.set()
        ready.set()

    reader = threading.Thread(target=read_stdout, daemon=True)
    reader.start()
    clients = []
    try:
        assert ready.wait(10.0) and "ready" in lines, (p.poll(), lines)
        eps = dict(l.split(" ", 1) for l in lines if " " in l)
        p.stderr.close()   # the log's reader goes away
        try:
            make_it_log(zctx, eps, clients)
        except (AssertionError, zmq.ZMQError) as e:
            if p.poll() is None:
                raise
            raise AssertionError("the broker died with %r (-13 is SIGPIPE) while logging: %s"
                                 % (p.returncode, e)) from None
        assert p.poll() is None, "the broker died: %r" % p.returncode
        p.send_signal(signal.SIGTERM)
        rc = p.wait(10.0)
        assert rc == 0, "exit %r after SIGTERM (-13 is SIGPIPE)" % rc
        left = sorted(os.listdir(rt))
        assert not set(left) & {"backend", "control", "broker.pid"}, "left behind: %r" % left
    finally:
        for c in clients:
            c.close()
        if p.poll() is None:
            p.kill()
            p.wait(5.0)
        reader.join(2.0)


def make_it_log(zctx, eps, clients):
    """Things the broker logs: an attach, RETURNs, an ERROR, a proc that
    prints 200 KB, its spawn and stop; then both clients' pings answered."""
    front = zhp.Client(zctx, eps["frontend"], name="front")
    ctl = zhp.Client(zctx, eps["control"], name="ctl")
    clients += [front, ctl]
    front.attach("chatty")
    ctl.attach()
    for i in range(50):
        front.send("nobody.nowhere:1@" + eps["advertise"], [b"x" * 100], meta={"seq": i})
    front.send_frames([b"junk"])   # an ERROR, logged
    ok(ctl.request("spawn", name="talker", timeout=10.0,
                   argv=[TEST_PROC, "--print-before-ready", "200000"]))
    ok(ctl.request("stop", name="talker", timeout=10.0))
    for c in (front, ctl):
        assert c.request("ping")["ok"] is True


# --- e. many procs, each printing more than a pipe holds --------------------------------

def test_300_procs_printing_70k_before_ready_all_become_ready(broker, client):
    """300 procs (more than 256) each write 70000 bytes of lines to stdout
    (more than a 64 KiB pipe holds) before READY: the broker must drain
    every proc's pipes while it waits for them, so every spawn is answered
    ok and every proc is listed ready."""
    need_test_proc()
    n = 300
    # quiet log: the procs' 21 MB of lines need not be copied to the log
    # file for the pipes to be drained; many stops at once at teardown
    b = broker("--log-level", "warn", "--max-in-flight", "64", "--terminate-timeout", "2s")
    # 300 procs cost the broker about 3 fds each (stdout and stderr pipes,
    # the backend connection): lift its open-files limit above the common
    # 1024 so that the limit is not what this test measures
    soft, hard = resource.prlimit(b.pid, resource.RLIMIT_NOFILE)
    want = 8192 if hard == resource.RLIM_INFINITY else min(8192, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.prlimit(b.pid, resource.RLIMIT_NOFILE, (want, hard))
    ctl = client(b, via="control")
    argv = [TEST_PROC, "--print-before-ready", "70000"]
    name_of = {}   # reply port -> proc name
    for i in range(n):
        name_of[ctl.port(1000 + i)] = "p%d" % i
        ctl.send(ctl.agent_port(), [zhp.pack({"op": "spawn", "name": "p%d" % i, "argv": argv})],
                 meta={"reply": ctl.port(1000 + i)})
    answers = {}
    deadline = time.monotonic() + 45.0
    while len(answers) < n and time.monotonic() < deadline:
        m = ctl.try_recv(min(1.0, max(0.0, deadline - time.monotonic())))
        if m is not None and m.cmd == zhp.SEND:
            answers[m.dest] = zhp.unpack(m.parts[0])
    failed = {name_of[d]: a["error"]["code"] for d, a in answers.items()
              if a.get("ok") is not True}
    bad = len(failed) + n - len(answers)
    assert bad == 0, "%d of %d spawns answered within 45s, %d failed: %s" % (
        len(answers), n, len(failed), ", ".join(
            "%s %s" % kv for kv in sorted(failed.items(), key=lambda kv: int(kv[0][1:]))[:5]))
    procs = procs_by_name(ctl)
    not_ready = sorted(name for name, p in procs.items() if p["status"] != "ready")
    assert len(procs) == n and not not_ready, "%d procs not ready: %r" % (
        len(not_ready), not_ready[:10])


# --- f. host agent requests guarded ----------------------------------------------------

def test_agent_refuses_requests_claiming_huge_containers(broker, client):
    """A request's first part is a few bytes of msgpack that declare an
    array32 or map32 of 2**32-1 entries (alone, or as a value in the map):
    each answer is BAD_REQUEST, and the broker's VmPeak grows by less than
    64 MiB across the three (no declared count from the wire is trusted)."""
    b = broker()
    c = client(b)
    assert c.request("ping")["ok"] is True
    before = vmpeak_kib(b.pid)
    for i, part in enumerate((ARRAY32_HUGE, MAP32_HUGE, MAP_WITH_HUGE_ARRAY)):
        reply = c.port(60 + i)
        agent_send(c, part, {"reply": reply, "seq": 600 + i})
        msg, answer = agent_answer(c, reply)
        assert msg.cmd == zhp.SEND, "request %r: %r" % (part, msg)
        refused(answer, "BAD_REQUEST")
    grown = vmpeak_kib(b.pid) - before
    assert grown < VMPEAK_GROWTH_BOUND_KIB, "broker VmPeak grew by %d KiB" % grown
    assert c.request("ping")["ok"] is True


def test_agent_refuses_nested_claims(broker, client):
    """The same with nested claims: a map {"op": ..., "x": [[[...]]]} whose
    arrays are array32 headers each claiming as many entries as the request
    has bytes (each claim alone fits in the bytes; together they do not).
    BAD_REQUEST, VmPeak flat."""
    b = broker()
    c = client(b)
    size = 1 << 20
    nest = b"".join(b"\xdd" + struct.pack(">I", size) for _ in range(1000))
    part = b"\x82\xa2op\xa4ping\xa1x" + nest
    part += b"\xc0" * (size - len(part))
    before = vmpeak_kib(b.pid)
    reply = c.port(70)
    agent_send(c, part, {"reply": reply})
    msg, answer = agent_answer(c, reply, timeout=10.0)
    assert msg.cmd == zhp.SEND, msg
    refused(answer, "BAD_REQUEST")
    grown = vmpeak_kib(b.pid) - before
    assert grown < VMPEAK_GROWTH_BOUND_KIB, "broker VmPeak grew by %d KiB" % grown


# --- g. status tail for admins only ---------------------------------------------------

def test_status_tail_only_for_admin_callers(broker, client):
    """Proc output can hold secrets: a frontend client (no admin key) gets
    the proc entry from `status` but no `tail`; the control socket gets the
    tail with the proc's lines."""
    need_test_proc()
    b = broker("--terminate-timeout", "1s")
    ctl = client(b, via="control")
    ok(ctl.request("spawn", name="secretive", argv=[TEST_PROC], timeout=10.0))
    deadline = time.monotonic() + 5.0
    while True:
        st = ok(ctl.request("status", name="secretive"))
        if "up secretive@" in st.get("tail", ""):
            break
        assert time.monotonic() < deadline, "no 'up' line in the admin's tail: %r" % st
        time.sleep(0.02)   # poll interval
    front = client(b)
    st = ok(front.request("status", name="secretive"))
    assert st["proc"]["name"] == "secretive" and st["proc"]["status"] == "ready", st
    assert "tail" not in st, "a non-admin caller got the output tail: %r" % st["tail"]


# --- h. reply ports ------------------------------------------------------------------

def test_reply_must_be_the_requesters_own_port(broker, client):
    """The agent answers only to the requester's own ports: a request whose
    `reply` is another client's port gets ERROR 403 and no answer, and the
    other client receives nothing; with its own port it is answered, and
    the answer's meta echoes the request's seq."""
    b = broker()
    mallory, victim = client(b, label="mallory"), client(b, label="victim")
    target = zhp.port_addr(zhp.actor_addr(victim.proc, "inbox"), 3)
    agent_send(mallory, zhp.pack({"op": "ping"}), {"reply": target, "seq": 4710})
    msg = mallory.try_recv(5.0)
    if msg is None:
        raise AssertionError("no ERROR 403 for a reply to another client's port; the "
                             "victim got %r" % (victim.try_recv(0.5),))
    assert msg.cmd == zhp.ERROR and msg.body["code"] == 403, \
        "a request replying to another client's port: %r" % msg
    # answered with its own port, seq echoed
    own = mallory.port(7)
    agent_send(mallory, zhp.pack({"op": "ping"}), {"reply": own, "seq": 4711})
    msg, answer = agent_answer(mallory, own)
    assert msg.cmd == zhp.SEND and answer["ok"] is True, msg
    assert msg.meta.get("seq") == 4711, "answer meta %r" % msg.meta
    assert victim.try_recv(0.3) is None, "the agent sent the victim an unsolicited message"


# --- i. grandchildren end with their proc ------------------------------------------------

def spawn_with_grandchild(ctl, name):
    """Spawn grandchild_proc.py as `name`; the pid of its `sleep 300`."""
    ok(ctl.request("spawn", name=name, argv=[PY, GRANDCHILD_PROC], timeout=15.0))
    deadline = time.monotonic() + 5.0
    while True:
        m = re.search(r"grandchild (\d+)", ok(ctl.request("status", name=name)).get("tail", ""))
        if m:
            gpid = int(m.group(1))
            assert alive(gpid), "grandchild %d of %s is not running" % (gpid, name)
            return gpid
        assert time.monotonic() < deadline, "%s never printed its grandchild's pid" % name
        time.sleep(0.02)   # poll interval


@pytest.fixture
def grandchildren():
    """Pids to SIGKILL at teardown if a test left them running."""
    pids = []
    yield pids
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("op", ["stop", "kill"])
def test_grandchild_ends_with_its_proc(broker, client, grandchildren, op):
    """A proc started `sleep 300` in its process group; once `stop` (or
    `kill`) of the proc is answered, the grandchild is gone too."""
    b = broker("--terminate-timeout", "1s")
    ctl = client(b, via="control")
    gpid = spawn_with_grandchild(ctl, "parent")
    grandchildren.append(gpid)
    ans = ok(ctl.request(op, name="parent", timeout=10.0))
    assert ans["status"] in ("stopped", "killed"), ans
    assert wait_gone(gpid, 5.0), "grandchild %d outlived `%s parent`" % (gpid, op)


def test_grandchild_ends_at_broker_shutdown(broker, client, grandchildren):
    """SIGTERM to the broker: it stops its procs, and the grandchild of one
    of them is gone as well."""
    b = broker("--terminate-timeout", "1s", "--linger", "300ms")
    ctl = client(b, via="control")
    gpid = spawn_with_grandchild(ctl, "parent")
    grandchildren.append(gpid)
    b.signal(signal.SIGTERM)
    b.expect_exit = b.wait(10.0)
    assert b.expect_exit == 0
    assert wait_gone(gpid, 5.0), "grandchild %d outlived the broker" % gpid


def test_grandchild_ends_when_its_leader_exits_on_its_own(broker, client, grandchildren):
    """The proc's leader exits by itself (asked by a SEND), leaving its
    `sleep` running: once the broker records the leader's end, the rest of
    the group is ended."""
    b = broker("--terminate-timeout", "1s")
    ctl = client(b, via="control")
    gpid = spawn_with_grandchild(ctl, "parent")
    grandchildren.append(gpid)
    ctl.send("any.parent:1@" + b.ep, [b"exit now"])
    st = wait_status(ctl, "parent", ("stopped", "killed", "failed"))
    assert st["status"] == "stopped" and st.get("exit_code") == 0, st
    assert wait_gone(gpid, 5.0), "grandchild %d outlived its leader's end" % gpid


# --- j. stop's timeout_ms typed -------------------------------------------------------

@pytest.mark.parametrize("timeout_ms", ["soon", -5], ids=["string", "negative"])
def test_stop_with_a_badly_typed_timeout_is_bad_request(broker, client, timeout_ms):
    """`stop` with timeout_ms a string or a negative number: BAD_REQUEST,
    and the proc is still ready."""
    need_test_proc()
    b = broker("--terminate-timeout", "1s")
    ctl = client(b, via="control")
    ok(ctl.request("spawn", name="w", argv=[TEST_PROC], timeout=10.0))
    refused(ctl.request("stop", name="w", timeout_ms=timeout_ms, timeout=10.0), "BAD_REQUEST")
    st = ok(ctl.request("status", name="w"))["proc"]
    assert st["status"] == "ready", "the proc was stopped anyway: %r" % st


# --- found in review ---------------------------------------------------------------

def test_bye_right_after_a_request_comes_after_its_answer(broker, client):
    """docs/broker.md: BYE is answered after everything the client sent
    before it was routed, the agent's answers included (they wait in the
    outbox): 20 times, a request and a BYE sent back to back."""
    b = broker()
    for i in range(20):
        c = client(b, via="control")
        reply = c.port(7)
        c.send(c.agent_port(), [zhp.pack({"op": "ping"})], meta={"reply": reply, "seq": i})
        c.send_frames(zhp.control(zhp.BYE, {"reason": "done"}))
        seen = []
        while True:
            m = c.try_recv(3.0)
            assert m is not None, "no BYE back (round %d): %r" % (i, seen)
            if m.cmd == zhp.BYE:
                break
            seen.append(m)
        answers = [m for m in seen if m.cmd == zhp.SEND and m.dest == reply]
        assert len(answers) == 1 and answers[0].meta.get("seq") == i, (i, seen)
        c.close()


def test_a_client_busy_with_a_burst_of_spawns_is_not_dropped_as_silent(broker, client):
    """AT-3: 150 spawns sent at once take the broker longer than liveness ×
    heartbeat (100 ms here) to carry out; the control client that sent them
    is busy, not silent, and every spawn is answered."""
    need_test_proc()
    b = broker("--heartbeat", "100ms", "--max-in-flight", "64", "--terminate-timeout", "2s")
    c = client(b, via="control")
    n = 150
    for i in range(n):
        c.send(c.agent_port(), [zhp.pack({"op": "spawn", "name": "b%d" % i, "argv": [TEST_PROC]})],
               meta={"reply": c.port(1000 + i)})
    answers = {}
    deadline = time.monotonic() + 60
    while len(answers) < n and time.monotonic() < deadline:
        m = c.try_recv(0.5)
        assert m is None or m.cmd != zhp.BYE, "the client was dropped: %r" % m
        if m is not None and m.cmd == zhp.SEND:
            answers[m.dest] = zhp.unpack(m.parts[0])
    assert len(answers) == n, "%d of %d spawns answered" % (len(answers), n)
    assert all(a.get("ok") is True for a in answers.values()), \
        [a for a in answers.values() if not a.get("ok")][:3]
    assert "heartbeat-expired" not in b.stderr_tail(400)


def test_a_return_to_a_port_is_400_even_after_a_send_there(broker, client):
    """The codec's rule for a RETURN's dest (the original src: an actor or
    proc, never a port) holds on the router's cached path too: a SEND to a
    port, then a RETURN with the same dest bytes, is ERROR 400."""
    b = broker()
    c, peer = client(b), client(b)
    c.send(peer.port(4), [b"fine"])
    assert peer.expect(zhp.SEND).parts == [b"fine"]
    c.send(peer.port(4), [b"bounce"], cmd=zhp.RETURN)
    err = c.expect_error(400)
    assert "RETURN" in err.body["reason"] and "actor or proc" in err.body["reason"], err
    assert peer.try_recv(0.2) is None
    c.send(peer.port(4), [b"still fine"])  # the cache still serves SENDs
    assert peer.expect(zhp.SEND).parts == [b"still fine"]
