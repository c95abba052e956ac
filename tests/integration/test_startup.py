"""Start-up: what zhost-broker prints, its flags, its runtime dir and its lock
(docs/broker.md "Start", docs/broker.md "Start")."""

import os
import re
import signal
import socket
import stat
import subprocess
import time

import pytest

import zhp
from conftest import run_broker


def test_prints_endpoints_then_ready(broker, tmp_path):
    b = broker()
    rt = str(tmp_path / "rt")
    # one line each, in this order, ready last
    assert [l.split(" ")[0] for l in b.lines[:5]] == [
        "frontend", "advertise", "backend", "control", "ready"], b.lines
    assert len(b.frontend) == 1 and len(b.advertise) == 1
    m = re.fullmatch(r"tcp://127\.0\.0\.1:(\d+)", b.frontend[0])
    assert m, b.frontend
    assert int(m.group(1)) != 0, "the printed port must be the one actually bound"
    assert b.advertise == b.frontend, "127.0.0.1 is advertised as itself"
    assert b.backend == "ipc://%s/backend" % rt
    assert b.control == "ipc://%s/control" % rt
    # the printed port is really listening
    s = socket.create_connection(("127.0.0.1", int(m.group(1))), timeout=2)
    s.close()


def test_printed_endpoints_answer(broker, client):
    b = broker()
    c = client(b)
    assert c.bootstrap["host"] == b.ep
    ctl = client(b, via="control")
    assert ctl.bootstrap["host"] == b.ep


def test_two_frontends_print_one_line_each(broker):
    b = broker(frontend=("tcp://127.0.0.1:0", "tcp://127.0.0.1:0"))
    assert len(b.frontend) == 2 and len(b.advertise) == 2, b.lines
    assert b.frontend[0] != b.frontend[1]


def test_star_host_is_advertised_with_host_name(broker):
    b = broker(frontend=("tcp://*:0",))
    assert b.frontend[0].startswith("tcp://"), b.lines
    host = socket.gethostname()
    assert re.fullmatch(r"tcp://%s:\d+" % re.escape(host), b.advertise[0]), (b.advertise, host)
    assert not b.advertise[0].endswith(":0")


def test_advertise_flag_sets_the_advertised_endpoint(broker, client):
    b = broker("--advertise", "tcp://zhost-a.example:7100")
    assert b.advertise == ["tcp://zhost-a.example:7100"], b.lines
    c = client(b)
    assert c.proc.endswith("@tcp://zhost-a.example:7100")
    assert c.bootstrap["agent"] == "host_agent.service@tcp://zhost-a.example:7100"


# Flags of docs/broker.md "Start" and docs/broker.md, with their defaults.
FLAG_DEFAULTS = {
    "--frontend": ["tcp://127.0.0.1:7100"],
    "--advertise": None,
    "--runtime-dir": None,
    "--heartbeat": ["1s"],
    "--delivery-timeout": ["30s"],
    "--ready-timeout": ["30s"],
    "--terminate-timeout": ["10s"],
    "--max-in-flight": ["16"],
    "--max-msg-bytes": ["16777216", "16MiB", "16 MiB", "16M"],
    "--hwm": ["10000", "10 000"],
    "--spawn": None,
    "--curve-secret": None,
    "--curve-allow": None,
    "--curve-admin": None,
    "--config": None,
    "--log-level": ["info"],
    "--liveness": ["3"],
    "--linger": ["2s"],
    "--ttl": ["64"],
}


def help_entries(text):
    """{flag: the text of its entry} — from a line naming the flag up to the next flag line."""
    entries = {}
    current = None
    for line in text.splitlines():
        m = re.match(r"\s*(?:-\w,\s*)?(--[a-z][a-z0-9-]*)", line)
        if m:
            current = m.group(1)
            entries.setdefault(current, "")
        if current:
            entries[current] += line + "\n"
    return entries


def test_help_lists_every_flag_with_env_and_default(broker_bin):
    r = run_broker(["--help"])
    assert r.returncode == 0, r
    entries = help_entries(r.stdout)
    missing = [f for f in FLAG_DEFAULTS if f not in entries]
    assert not missing, "flags missing from --help: %r\n%s" % (missing, r.stdout)
    for flag, defaults in FLAG_DEFAULTS.items():
        entry = entries[flag]
        env = "ZHOST_" + flag[2:].upper().replace("-", "_")
        if flag == "--spawn" and "no environment variable" in entry:
            pass  # a repeated NAME=COMMAND list: saying it has none is fine
        else:
            assert env in entry, "--help: %s does not name %s:\n%s" % (flag, env, entry)
        if defaults:
            assert any(d in entry for d in defaults), \
                "--help: %s does not show its default %s:\n%s" % (flag, defaults[0], entry)
    for flag in ("--version", "--help"):
        assert flag in r.stdout


def test_version_prints_and_exits_0(broker_bin):
    r = run_broker(["--version"])
    assert r.returncode == 0
    assert re.search(r"\d+\.\d+\.\d+", r.stdout), r.stdout


@pytest.mark.parametrize("flag,value", [
    ("--heartbeat", "banana"),
    ("--hwm", "lots"),
    ("--max-msg-bytes", "12abc"),
    ("--delivery-timeout", "-5s"),
    ("--liveness", "three"),
    ("--linger", "soon"),
])
def test_bad_flag_value_exits_2_naming_flag_and_value(broker_bin, tmp_path, flag, value):
    r = run_broker(["--frontend", "tcp://127.0.0.1:0", "--runtime-dir", str(tmp_path / "rt"),
                    flag, value])
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    out = r.stdout + r.stderr
    assert flag.lstrip("-") in out and value in out, out
    assert "ready" not in r.stdout.split()


def test_second_broker_on_same_runtime_dir_refused(broker, tmp_path, client):
    first = broker()
    second = broker(runtime_dir=tmp_path / "rt", wait=False)
    rc = second.wait(10.0)
    second.expect_exit = rc
    assert rc == 1, "second broker: rc=%r stdout=%r" % (rc, second.lines)
    assert str(first.pid) in second.stderr_text() + "\n".join(second.lines), \
        "message should name the live broker's pid %d: %s" % (first.pid, second.stderr_tail())
    assert "ready" not in second.lines
    assert first.alive()
    # the first still serves its control socket and frontend
    c = client(first, via="control")
    assert c.request("ping")["ok"] is True


def test_stale_runtime_dir_is_taken_over(broker, tmp_path, client):
    first = broker()
    first.signal(signal.SIGKILL)
    assert first.wait(5.0) == -signal.SIGKILL
    first.expect_exit = -signal.SIGKILL
    rt = tmp_path / "rt"
    assert (rt / "broker.pid").exists() or (rt / "control").exists()
    second = broker(runtime_dir=rt)
    assert second.control == "ipc://%s/control" % rt
    c = client(second, via="control")
    assert c.request("ping")["ok"] is True
    assert client(second).request("ping")["ok"] is True


def test_frontend_port_in_use_is_a_clear_error(broker, tmp_path):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    try:
        ep = "tcp://127.0.0.1:%d" % port
        b = broker(frontend=(ep,), wait=False)
        rc = b.wait(10.0)
        b.expect_exit = rc
        assert rc == 1, (rc, b.lines, b.stderr_tail())
        err = b.stderr_text() + "\n".join(b.lines)
        assert ep in err, err
        assert os.strerror(98) in err or "in use" in err.lower(), err
        assert "ready" not in b.lines
    finally:
        s.close()


def test_runtime_dir_mode_0700(broker, tmp_path):
    b = broker()
    st = os.stat(b.runtime_dir)
    assert stat.S_IMODE(st.st_mode) == 0o700, oct(st.st_mode)
    assert st.st_uid == os.getuid()
    for name in ("backend", "control"):
        assert stat.S_ISSOCK(os.stat(os.path.join(b.runtime_dir, name)).st_mode), name


def test_existing_runtime_dir_of_another_mode_is_refused_untouched(tmp_path):
    """docs/broker.md, Security: an existing runtime dir must already be
    0700; the broker says so and never chmods it."""
    rt = tmp_path / "loose"
    rt.mkdir()
    os.chmod(rt, 0o755)
    p = run_broker(["--frontend", "tcp://127.0.0.1:0", "--runtime-dir", str(rt)])
    assert p.returncode == 1, p.stderr
    assert str(rt) in p.stderr and "0755" in p.stderr and "0700" in p.stderr, p.stderr
    assert stat.S_IMODE(os.stat(rt).st_mode) == 0o755


def test_flag_values_reach_bootstrap(broker, client):
    b = broker("--heartbeat", "250ms", "--max-msg-bytes", "65536", "--hwm", "123")
    boot = client(b).bootstrap
    assert boot["heartbeat_ms"] == 250
    assert boot["max_msg_bytes"] == 65536
    assert boot["hwm"] == 123


def test_environment_configures_when_no_flag(broker, client):
    b = broker(env={"ZHOST_HEARTBEAT": "300ms", "ZHOST_HWM": "77"})
    boot = client(b).bootstrap
    assert boot["heartbeat_ms"] == 300 and boot["hwm"] == 77


def test_flag_beats_environment(broker, client):
    b = broker("--hwm", "55", env={"ZHOST_HWM": "77"})
    assert client(b).bootstrap["hwm"] == 55

