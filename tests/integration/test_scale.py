"""scripts/scale.py, CI-sized: one broker with 100 spawned zhost-echo procs
and 500 attached clients (the benchmark's default is 1,000 and 5,000; see
docs/performance.md, Scale).

Scenarios: every proc is ready, every client attached and every request
answered, the figures the script reports exist, and the broker and all its
procs are gone afterwards; a proc that never sends READY makes the script
fail, saying how many became ready, instead of hanging; the bare-ROUTER
baseline (--router-baseline) answers every DEALER. Nothing here is
timed: the figures are only checked to exist (timed tests flake on shared
machines).
"""
import json
import os
import resource
import subprocess
import sys

import pytest

from conftest import BUILD_DIR, BROKER_BIN

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "scripts", "scale.py")


def run_scale(*args, build_dir=BUILD_DIR, timeout=90):
    out = subprocess.run([sys.executable, SCRIPT, "--build-dir", build_dir, "--json"] +
                         [str(a) for a in args], capture_output=True, text=True,
                         timeout=timeout, stdin=subprocess.DEVNULL)
    try:
        report = json.loads(out.stdout)
    except ValueError:
        raise AssertionError("scale.py printed no JSON (exit %d): %s" % (
            out.returncode, out.stderr[-2000:]))
    return out.returncode, report, out.stderr


def need_files(files):
    """scale.py raises RLIMIT_NOFILE itself, up to the hard limit (past it as root)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < files and os.geteuid() != 0:
        pytest.skip("RLIMIT_NOFILE hard limit %d < %d and not root" % (hard, files))


def need_binaries(files=1300):
    need_files(files)
    for name in ("zhost-broker", "zhost-echo", "zhost-ctl"):
        if not os.access(os.path.join(BUILD_DIR, name), os.X_OK):
            pytest.skip("no %s in %s (set ZHOST_BUILD_DIR)" % (name, BUILD_DIR))


def test_every_proc_ready_and_every_request_answered():
    need_binaries()
    rc, r, err = run_scale("--procs", 100, "--clients", 500, "--ctl-spawns", 5,
                           "--late-spawns", 2)
    assert rc == 0 and r["ok"], (r["error"], err[-2000:])
    assert r["procs_ready"] == 100
    assert r["clients_attached"] == 500
    assert r["requests_answered"] == 500
    req = r["requests"]
    assert req["sent"] == 500 and req["wrong"] == 0 and req["returned"] == {}
    # the broker saw them all: clients, procs, the late ones and the control client
    assert r["broker"]["stats"]["connections"] == 500 + 100 + 2 * 2 + 1
    # every figure is there (never what it is)
    f = r["figures"]
    for key in ("peak_rss_kib", "rss_end_kib", "rss_per_proc_kib", "rss_per_client_kib"):
        assert isinstance(f[key], (int, float)) and f[key] > 0, (key, f)
    sp = r["spawn"]
    assert sp["agent"]["n"] == 95 and sp["ctl"]["n"] == 5 and sp["failed"] == []
    assert sp["agent_loaded"]["n"] == 2 and sp["ctl_loaded"]["n"] == 2
    for s in (sp["agent"], sp["ctl"], r["attach"], req):
        assert s["p50"] > 0 and s["p99"] >= s["p50"], s
    for name in ("start", "procs", "clients", "requests"):
        assert r["broker"][name]["fds"] > 0
    assert r["broker"]["requests"]["fds"] >= 500 + 100
    # stopped cleanly; the script fails the run if any of its procs is left
    sd = r["shutdown"]
    assert sd["exit_code"] == 0 and sd["children_seen"] >= 100
    assert not os.path.exists("/proc/%d" % r["broker"]["pid"])


def test_a_proc_that_never_gets_ready_fails_the_run_and_says_how_far(tmp_path):
    need_binaries()
    build = tmp_path / "build"
    build.mkdir()
    os.symlink(BROKER_BIN, build / "zhost-broker")
    os.symlink(os.path.join(BUILD_DIR, "zhost-ctl"), build / "zhost-ctl")
    fake = build / "zhost-echo"   # never sends READY
    fake.write_text("#!/bin/sh\nexec sleep 30\n")
    fake.chmod(0o755)
    rc, r, err = run_scale("--procs", 3, "--clients", 5, "--ctl-spawns", 0,
                           "--ready-timeout", "0.5", build_dir=str(build))
    assert rc == 1 and not r["ok"]
    assert "0 of 3 procs ready" in r["error"], r["error"]
    assert "READY_TIMEOUT" in r["error"], r["error"]
    assert r["shutdown"]["exit_code"] == 0
    assert r.get("clients_attached") is None   # it stopped at the first failed phase


def test_router_baseline_answers_every_dealer():
    need_files(400)
    rc, r, err = run_scale("--router-baseline", "--clients", 50)
    assert rc == 0 and r["ok"], (r["error"], err[-2000:])
    assert r["router"]["answered"] == 50 and r["router"]["connected"]["fds"] >= 50
