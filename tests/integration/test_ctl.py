"""zhost-ctl against the real broker (docs/ctl.md, docs/broker.md "Start").

Each test starts zhost-broker (conftest's `broker` fixture: --frontend
tcp://127.0.0.1:0 --runtime-dir <tmp>/rt, waits for "ready") and runs
$ZHOST_BUILD_DIR/zhost-ctl as a user would: the control socket by
--runtime-dir (or ZHOST_RUNTIME_DIR), a frontend by --connect.

Scenarios: ping / stats / list / status for people and as JSON; an admin op
over a frontend is NOT_ALLOWED (exit 1) with a hint; bad command lines exit
2 naming what is wrong; so does a runtime dir it does not trust (a symlink,
another user's, open to group or others, a control entry that is not our
socket); no broker exits 3 saying where it looked; keygen
writes a zcert pair. The admin ops (spawn, stop, kill, stop-all, shutdown)
drive real children (tests/integration/procs/ready_proc.py, `sleep`); a
NOT_IMPLEMENTED answer fails them.
"""

import json
import os
import re
import socket
import subprocess
import sys
import time

import pytest
import zmq.auth

from conftest import BUILD_DIR, broker_env

CTL_BIN = os.environ.get("ZHOST_CTL") or os.path.join(BUILD_DIR, "zhost-ctl")
HERE = os.path.dirname(os.path.abspath(__file__))
READY_PROC = os.path.join(HERE, "procs", "ready_proc.py")
LIST_HEADER = ["NAME", "STATUS", "PID", "EXIT/SIGNAL/REASON", "PROC"]
ADMIN_COMMANDS = [
    ["spawn", "w", "--", "/bin/true"],
    ["stop", "w"],
    ["kill", "w"],
    ["stop-all"],
    ["shutdown"],
]


@pytest.fixture
def ctl_bin():
    if not os.access(CTL_BIN, os.X_OK):
        pytest.skip("no zhost-ctl at %s (set ZHOST_BUILD_DIR)" % CTL_BIN)
    return CTL_BIN


@pytest.fixture
def ctl(ctl_bin):
    """ctl(*args, b=None, env=None, timeout=30): run zhost-ctl; with a broker b,
    --runtime-dir b.runtime_dir goes first. Returns CompletedProcess (text)."""

    def run(*args, b=None, env=None, timeout=30.0, cwd=None):
        argv = [ctl_bin]
        if b is not None:
            argv += ["--runtime-dir", b.runtime_dir]
        argv += [str(a) for a in args]
        return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, text=True, timeout=timeout,
                              env=broker_env(env), cwd=cwd)

    return run


def ok(r):
    assert r.returncode == 0, "rc=%d\nstdout: %s\nstderr: %s" % (r.returncode, r.stdout, r.stderr)
    return r


def failed(r, code):
    """The op failed (exit 1) and stderr names the code."""
    assert r.returncode == 1, "rc=%d\nstdout: %s\nstderr: %s" % (r.returncode, r.stdout, r.stderr)
    assert code in r.stderr, "expected %s in stderr: %s" % (code, r.stderr)
    return r


def admin(r):
    """An admin op's result. The broker has them: a NOT_IMPLEMENTED answer (or
    an interim process manager saying "stub") fails the test, never skips it."""
    assert "NOT_IMPLEMENTED" not in r.stderr and not re.search(r"\bstub\b", r.stderr), \
        "the broker has no process manager: %s" % r.stderr.strip()
    return r


# --- read-only ops -------------------------------------------------------------

def test_ping_answers_with_the_broker_endpoint(broker, ctl):
    b = broker()
    r = ok(ctl("ping", b=b))
    assert "pong" in r.stdout and b.ep in r.stdout, r.stdout
    assert r.stderr == ""


def test_json_ping_has_host_incarnation_version(broker, ctl):
    b = broker()
    answer = json.loads(ok(ctl("--json", "ping", b=b)).stdout)
    assert answer["ok"] is True
    assert answer["host"] == b.ep
    assert isinstance(answer["incarnation"], int)
    assert isinstance(answer["version"], str) and answer["version"]
    # the same broker, the same incarnation
    again = json.loads(ok(ctl("ping", "--json", b=b)).stdout)
    assert again["incarnation"] == answer["incarnation"]


def test_runtime_dir_comes_from_the_environment(broker, ctl, tmp_path):
    b = broker()
    ok(ctl("ping", env={"ZHOST_RUNTIME_DIR": b.runtime_dir}))
    # XDG_RUNTIME_DIR/zhost when ZHOST_RUNTIME_DIR is unset (a real dir: a
    # symlink there is refused, see below)
    xdg = tmp_path / "xdg"
    xdg.mkdir(mode=0o700)
    broker(runtime_dir=xdg / "zhost")
    ok(ctl("ping", env={"XDG_RUNTIME_DIR": str(xdg)}))


def test_stats_prints_aligned_counters(broker, ctl):
    b = broker()
    r = ok(ctl("stats", b=b))
    lines = r.stdout.splitlines()
    names = [l.split()[0] for l in lines]
    assert "routed" in names and "connections" in names, r.stdout
    # one counter per line, values in one column
    columns = {len(re.match(r"(\S+\s+)\S", l).group(1)) for l in lines}
    assert len(columns) == 1, r.stdout
    answer = json.loads(ok(ctl("--json", "stats", b=b)).stdout)
    assert answer["ok"] is True and isinstance(answer["routed"], int), answer


def test_list_with_no_procs_is_the_header(broker, ctl):
    b = broker()
    r = ok(ctl("list", b=b))
    assert [l.split() for l in r.stdout.splitlines()] == [LIST_HEADER], r.stdout
    assert json.loads(ok(ctl("--json", "list", b=b)).stdout) == {"ok": True, "procs": []}


def test_status_of_an_unknown_name_is_no_such_proc(broker, ctl):
    b = broker()
    r = failed(ctl("status", "nobody", b=b), "NO_SUCH_PROC")
    assert "nobody" in r.stderr
    r = failed(ctl("--json", "status", "nobody", b=b), "NO_SUCH_PROC")
    answer = json.loads(r.stdout)
    assert answer["ok"] is False and answer["error"]["code"] == "NO_SUCH_PROC", answer


def test_ping_over_a_frontend(broker, ctl):
    b = broker()
    r = ok(ctl("--connect", b.frontend[0], "ping"))
    assert b.ep in r.stdout


@pytest.mark.parametrize("args", ADMIN_COMMANDS, ids=lambda a: a[0])
def test_admin_op_over_a_frontend_is_not_allowed(broker, ctl, args):
    b = broker()
    r = failed(ctl("--connect", b.frontend[0], *args), "NOT_ALLOWED")
    assert "control socket" in r.stderr, r.stderr   # the broker's message, then the hint
    assert "hint" in r.stderr and "--connect" in r.stderr, r.stderr
    assert b.alive()
    ok(ctl("ping", b=b))


# --- command-line errors: exit 2 -----------------------------------------------

@pytest.mark.parametrize("args, named", [
    ([], "no command"),
    (["bogus"], "bogus"),
    (["--bogus", "ping"], "--bogus"),
    (["ping", "extra"], "extra"),
    (["list", "--max-in-flight", "2"], "--max-in-flight"),
    (["status"], "NAME"),
    (["spawn", "w"], "COMMAND"),
    (["spawn", "w", "--ready-timeout", "soon", "--", "true"], "--ready-timeout"),
    (["spawn", "w", "--env", "NOEQUALS", "--", "true"], "NOEQUALS"),
    (["stop", "w", "--timeout", "10x"], "--timeout"),
    (["--timeout", "5", "ping"], "--timeout"),
    (["--timeout"], "--timeout"),
    (["stop-all", "--max-in-flight", "0"], "--max-in-flight"),
    (["shutdown", "--max-in-flight", "many"], "--max-in-flight"),
    (["--runtime-dir", "/tmp/a", "--connect", "tcp://127.0.0.1:1", "ping"], "--connect"),
    (["keygen"], "NAME"),
    (["keygen", "../evil"], "../evil"),
])
def test_usage_errors_exit_2(ctl, tmp_path, args, named):
    r = ctl(*args, cwd=str(tmp_path))
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert named in r.stderr, r.stderr
    assert "Try 'zhost-ctl --help'" in r.stderr, r.stderr
    assert r.stdout == ""


def test_help_lists_every_command_and_flag(ctl):
    r = ok(ctl("--help"))
    for word in ("ping", "list", "status", "spawn", "stop", "kill", "stop-all", "shutdown",
                 "stats", "keygen", "--runtime-dir", "--connect", "--json", "--timeout",
                 "--ready-timeout", "--env", "--reason", "--max-in-flight", "--out"):
        assert word in r.stdout, word


# --- a runtime dir it does not trust: exit 2 ---------------------------------------
#
# docs/design.md, Security: the control socket is trusted only in a directory that
# is not a symlink, is owned by our user and lets neither group nor others in,
# and only when the control entry there is a socket of ours. The tests run as
# root, so "another user" is uid 65534.

def refused(r, rt, said):
    """zhost-ctl refused the runtime dir rt (exit 2), naming it and why."""
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "refusing runtime dir %s" % rt in r.stderr, r.stderr
    assert said in r.stderr, r.stderr
    assert r.stdout == ""
    return r


def need_root():
    if os.geteuid() != 0:
        pytest.skip("chown to another user needs root")


def test_a_runtime_dir_that_is_a_symlink_is_refused(broker, ctl, tmp_path):
    b = broker()
    link = tmp_path / "link"
    os.symlink(b.runtime_dir, str(link))
    refused(ctl("--runtime-dir", link, "ping"), link, "symbolic link")
    refused(ctl("ping", env={"ZHOST_RUNTIME_DIR": str(link)}), link, "symbolic link")
    ok(ctl("ping", b=b))   # the real dir is fine


def test_a_runtime_dir_of_another_user_is_refused(broker, ctl):
    need_root()
    b = broker()
    os.chown(b.runtime_dir, 65534, 65534)
    try:
        refused(ctl("ping", b=b), b.runtime_dir, "owned by uid 65534, not by us (uid 0)")
    finally:
        os.chown(b.runtime_dir, 0, 0)
    ok(ctl("ping", b=b))


@pytest.mark.parametrize("mode", [0o755, 0o750, 0o701], ids=lambda m: "%04o" % m)
def test_a_runtime_dir_open_to_group_or_others_is_refused(broker, ctl, mode):
    b = broker()
    os.chmod(b.runtime_dir, mode)
    try:
        refused(ctl("ping", b=b), b.runtime_dir, "mode %04o" % mode)
    finally:
        os.chmod(b.runtime_dir, 0o700)
    ok(ctl("ping", b=b))


def test_a_runtime_dir_that_is_not_a_directory_is_refused(ctl, tmp_path):
    f = tmp_path / "file"
    f.write_text("")
    refused(ctl("--runtime-dir", f, "ping"), f, "not a directory")


@pytest.mark.parametrize("kind", ["symlink", "file", "socket of another user"])
def test_a_control_entry_that_is_not_our_socket_is_refused(broker, ctl, tmp_path, kind):
    b = broker()
    rt = tmp_path / "other"
    rt.mkdir(mode=0o700)
    control = rt / "control"
    if kind == "symlink":
        os.symlink(os.path.join(b.runtime_dir, "control"), str(control))
        said = "control is a symbolic link"
    elif kind == "file":
        control.write_text("")
        said = "control is not a socket"
    else:
        need_root()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(str(control))
        s.listen(1)
        os.chown(str(control), 65534, 65534)
        said = "control is owned by uid 65534"
    refused(ctl("--runtime-dir", rt, "ping"), rt, said)
    if kind == "socket of another user":
        s.close()


# --- no broker: exit 3 -----------------------------------------------------------

def test_no_broker_in_an_empty_runtime_dir(ctl, tmp_path):
    rt = tmp_path / "empty"
    rt.mkdir(mode=0o700)
    t0 = time.monotonic()
    r = ctl("--runtime-dir", str(rt), "ping")
    assert r.returncode == 3, (r.returncode, r.stderr)
    assert time.monotonic() - t0 < 5.0, "a missing socket is known at once"
    assert str(rt) in r.stderr, r.stderr
    assert "zhost-broker" in r.stderr and "--runtime-dir" in r.stderr, r.stderr
    assert r.stdout == ""


def test_no_broker_behind_a_stale_socket_file(ctl, tmp_path):
    rt = tmp_path / "stale"
    rt.mkdir(mode=0o700)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(rt / "control"))   # bound, never listening: connect is refused
    try:
        t0 = time.monotonic()
        r = ctl("--runtime-dir", str(rt), "list")
        assert r.returncode == 3, (r.returncode, r.stderr)
        assert time.monotonic() - t0 < 5.0
        assert str(rt) in r.stderr and "zhost-broker" in r.stderr, r.stderr
    finally:
        s.close()


def test_no_broker_at_a_frontend_within_the_timeout(ctl):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()   # nothing listens there now
    ep = "tcp://127.0.0.1:%d" % port
    t0 = time.monotonic()
    r = ctl("--connect", ep, "--timeout", "500ms", "ping")
    assert r.returncode == 3, (r.returncode, r.stderr)
    assert time.monotonic() - t0 < 5.0
    assert ep in r.stderr and "BOOTSTRAP" in r.stderr, r.stderr


# --- keygen ------------------------------------------------------------------------

def test_keygen_writes_a_zcert_pair(ctl, tmp_path):
    r = ok(ctl("keygen", "alice", cwd=str(tmp_path)))
    public, secret = tmp_path / "alice.key", tmp_path / "alice.key_secret"
    assert str(public.name) in r.stdout and str(secret.name) in r.stdout, r.stdout
    for path in (public, secret):
        text = path.read_text()
        assert text.startswith("#   ****  Generated on "), text[:80]
        assert "by CZMQ  ****" in text.splitlines()[0]
    assert "public-key" in public.read_text() and "secret-key" not in public.read_text()
    assert "secret-key" in secret.read_text()
    assert os.stat(str(secret)).st_mode & 0o077 == 0, "the secret is for its owner only"
    # the ZPL files load as a certificate pair (pyzmq reads zcert's format)
    pub_key, none = zmq.auth.load_certificate(str(public))
    pub_again, sec_key = zmq.auth.load_certificate(str(secret))
    assert none is None and pub_key == pub_again and len(pub_key) == 40 and len(sec_key) == 40


def test_keygen_out_dir_json_and_no_overwrite(ctl, tmp_path):
    out = tmp_path / "keys"
    out.mkdir()
    answer = json.loads(ok(ctl("--json", "keygen", "bob", "--out", str(out))).stdout)
    assert answer["public"] == str(out / "bob.key")
    assert answer["secret"] == str(out / "bob.key_secret")
    before = (out / "bob.key_secret").read_text()
    r = ctl("keygen", "bob", "--out", str(out))
    assert r.returncode == 1 and "--force" in r.stderr, r.stderr
    assert (out / "bob.key_secret").read_text() == before
    ok(ctl("keygen", "bob", "--out", str(out), "--force"))
    assert (out / "bob.key_secret").read_text() != before


# --- admin ops on real children ----------------------------------------------------

def spawn_ready(ctl, b, name, *proc_args, extra=()):
    r = admin(ctl("spawn", name, *extra, "--", sys.executable, READY_PROC, *proc_args, b=b))
    return ok(r)


def listed(ctl, b):
    """{name: row cells} from `list`."""
    lines = ok(ctl("list", b=b)).stdout.splitlines()
    assert lines[0].split() == LIST_HEADER, lines
    rows = {}
    for line in lines[1:]:
        cells = re.split(r"\s{2,}", line.strip())
        rows[cells[0]] = cells
    return rows


def test_spawn_list_status_stop(broker, ctl):
    """spawn: ctl → agent → fork/exec → READY → answer; then list, status, stop."""
    b = broker()
    r = spawn_ready(ctl, b, "w1", extra=("--env", "GREETING=hi there"))
    m = re.fullmatch(r"spawned w1 pid (\d+) \(proc (\S+)\)\n", r.stdout)
    assert m, r.stdout
    pid, proc = int(m.group(1)), m.group(2)
    assert proc == "w1@" + b.ep
    assert os.path.exists("/proc/%d" % pid)
    row = listed(ctl, b)["w1"]
    assert row[1:3] == ["ready", str(pid)] and row[-1] == proc, row
    st = ok(ctl("status", "w1", b=b)).stdout
    assert "status: ready" in st and "pid: %d" % pid in st, st
    assert "GREETING=hi there" in st, "spawn --env reaches the child (seen in its output tail)"
    r = ok(ctl("stop", "w1", b=b))
    assert r.stdout == "w1: stopped (exit 0)\n", r.stdout
    assert listed(ctl, b)["w1"][1:4] == ["stopped", str(pid), "exit 0"]


def test_spawn_json_and_name_taken(broker, ctl):
    b = broker()
    answer = json.loads(ok(admin(ctl("--json", "spawn", "w2", "--", sys.executable, READY_PROC,
                                     b=b))).stdout)
    assert answer["ok"] is True and answer["proc"] == "w2@" + b.ep and answer["pid"] > 0
    failed(ctl("spawn", "w2", "--", sys.executable, READY_PROC, b=b), "PROC_EXISTS")
    failed(ctl("spawn", "service", "--", "/bin/true", b=b), "INVALID_NAME")
    ok(ctl("stop", "w2", b=b))


def test_spawn_of_a_child_that_exits_is_spawn_failed(broker, ctl):
    b = broker()
    r = admin(ctl("spawn", "quitter", "--", sys.executable, READY_PROC, "--exit", "3", b=b))
    failed(r, "SPAWN_FAILED")
    assert listed(ctl, b)["quitter"][1:4] == ["stopped", listed(ctl, b)["quitter"][2], "exit 3"]


def test_spawn_that_never_gets_ready_is_ready_timeout(broker, ctl):
    b = broker()
    t0 = time.monotonic()
    r = admin(ctl("spawn", "sleeper", "--ready-timeout", "1s", "--", "sleep", "30", b=b))
    failed(r, "READY_TIMEOUT")
    assert time.monotonic() - t0 < 10.0
    row = listed(ctl, b)["sleeper"]
    assert row[1] == "failed" and "READY_TIMEOUT" in row[3], row


def test_kill_ends_with_signal_9(broker, ctl):
    b = broker()
    spawn_ready(ctl, b, "victim")
    r = ok(admin(ctl("kill", "victim", b=b)))
    assert r.stdout == "victim: killed (signal 9)\n", r.stdout
    answer = json.loads(ok(ctl("--json", "status", "victim", b=b)).stdout)
    assert answer["proc"]["status"] == "killed" and answer["proc"]["signal"] == 9, answer


def test_stop_escalates_to_sigterm(broker, ctl):
    """STOP ignored → after --timeout, SIGTERM to the group ends it."""
    b = broker()
    spawn_ready(ctl, b, "stubborn", "--ignore-stop")
    t0 = time.monotonic()
    r = ok(admin(ctl("stop", "stubborn", "--timeout", "500ms", "--reason", "test", b=b)))
    assert r.stdout == "stubborn: killed (signal 15)\n", r.stdout
    assert time.monotonic() - t0 < 5.0


def test_stop_of_an_unknown_name(broker, ctl):
    b = broker()
    failed(admin(ctl("stop", "ghost", b=b)), "NO_SUCH_PROC")


def test_stop_all_stops_every_proc(broker, ctl):
    b = broker()
    spawn_ready(ctl, b, "a1")
    spawn_ready(ctl, b, "a2")
    r = ok(admin(ctl("stop-all", "--max-in-flight", "1", "--timeout", "2s", b=b)))
    assert r.stdout == "stop-all: attempted 2, stopped 2, failed 0\n", r.stdout
    rows = listed(ctl, b)
    assert rows["a1"][1] == "stopped" and rows["a2"][1] == "stopped", rows
    answer = json.loads(ok(ctl("--json", "stop-all", b=b)).stdout)
    assert answer == {"ok": True, "attempted": 0, "stopped": 0, "failed": 0}, answer


def test_shutdown_stops_children_then_the_broker_exits(broker, ctl):
    b = broker()
    r = spawn_ready(ctl, b, "last")
    pid = int(re.search(r"pid (\d+)", r.stdout).group(1))
    b.expect_exit = 0
    r = ok(admin(ctl("shutdown", b=b)))
    assert r.stdout.startswith("shutdown: "), r.stdout
    assert b.wait(b.linger + 5.0) == 0, b.stderr_tail()
    assert not os.path.exists("/proc/%d" % pid) or "zombie" in open(
        "/proc/%d/status" % pid).read().lower()
    r = ctl("ping", b=b, timeout=30)
    assert r.returncode == 3, (r.returncode, r.stderr)
