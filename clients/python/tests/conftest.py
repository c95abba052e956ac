"""Fixtures for the zhost Python client tests: a real zhost-broker per test.

The broker binary is $ZHOST_BUILD_DIR/zhost-broker (default
/work/main/build). It is started with --frontend tcp://127.0.0.1:0
--runtime-dir <tmp> --log-level warn (plus the test's flags), and a test
proceeds once it printed "ready"; the endpoints it printed before that are
read from stdout. At teardown it gets SIGTERM and must exit 0.

Every wait is bounded; an alarm fails any test running over TEST_TIMEOUT.
"""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(HERE)                      # clients/python
REPO = os.path.dirname(os.path.dirname(SRC))
# ZHOST_TEST_INSTALLED=1 (tests/run-venv.sh): test the zhost package
# installed in this interpreter, never the source tree beside the tests.
INSTALLED = os.environ.get("ZHOST_TEST_INSTALLED") == "1"
if not INSTALLED:
    sys.path.insert(0, SRC)

import zhost  # noqa: E402

if INSTALLED and os.path.realpath(zhost.__file__).startswith(os.path.realpath(SRC) + os.sep):
    raise ImportError("ZHOST_TEST_INSTALLED=1 but zhost comes from the source tree: %s"
                      % zhost.__file__)

BUILD_DIR = os.environ.get("ZHOST_BUILD_DIR", "/work/main/build")
BROKER_BIN = os.path.join(BUILD_DIR, "zhost-broker")
ECHO_BIN = os.path.join(BUILD_DIR, "zhost-echo")
PY_ECHO = os.path.join(REPO, "examples", "py_echo_proc.py")
# Spawned Python procs run with the interpreter running the tests (Debian's
# /usr/bin/python3 in ctest python-client, the venv's in python-client-venv).
PYTHON = sys.executable or "/usr/bin/python3"
TEST_TIMEOUT = 60


class Broker(object):
    """A running zhost-broker: frontend, advertise (= ep), backend, control."""

    def __init__(self, args, runtime_dir, log_path, frontend="tcp://127.0.0.1:0"):
        self.runtime_dir = str(runtime_dir)
        self.argv = [BROKER_BIN, "--frontend", frontend, "--runtime-dir",
                     self.runtime_dir, "--log-level", "warn"] + [str(a) for a in args]
        self.log_path = str(log_path)
        self._log = open(self.log_path, "wb")
        env = {k: v for k, v in os.environ.items() if not k.startswith("ZHOST_")}
        if not INSTALLED:
            env["PYTHONPATH"] = SRC    # for the Python procs it spawns
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=self._log,
                                     stdin=subprocess.DEVNULL, env=env,
                                     start_new_session=True)
        self.lines = []
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.frontend = self.ep = self.backend = self.control = None
        self.killed = False

    def kill(self):
        """SIGKILL: a crash (no BYE to anyone)."""
        self.killed = True
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(5)

    def _read(self):
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.lines.append(line)
            if line == "ready":
                self._ready.set()
        self._ready.set()

    def wait_ready(self, timeout=10.0):
        self._ready.wait(timeout)
        if "ready" not in self.lines:
            raise AssertionError("broker not ready within %ss (rc=%r): %r\n%s" % (
                timeout, self.proc.poll(), self.lines, self.stderr()))
        for line in self.lines[:self.lines.index("ready")]:
            key, _, value = line.partition(" ")
            if key == "frontend" and self.frontend is None:
                self.frontend = value
            elif key == "advertise" and self.ep is None:
                self.ep = value
            elif key == "backend":
                self.backend = value
            elif key == "control":
                self.control = value
        return self

    def stderr(self):
        self._log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def terminate(self, timeout=15.0):
        """SIGTERM; the exit code (None when it had to be killed)."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
            return None
        finally:
            self._reader.join(2.0)
            self._log.close()


@pytest.fixture(autouse=True)
def _hard_timeout():
    def on_alarm(signum, frame):
        raise TimeoutError("test ran over %ds" % TEST_TIMEOUT)
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(TEST_TIMEOUT)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.fixture
def broker(tmp_path):
    """Factory: broker(*flags, frontend=...) -> a ready Broker; SIGTERMed at teardown
    (one that a test killed is left alone)."""
    if not os.access(BROKER_BIN, os.X_OK):
        pytest.skip("no broker binary at %s (set ZHOST_BUILD_DIR)" % BROKER_BIN)
    started = []

    def start(*flags, frontend="tcp://127.0.0.1:0"):
        n = len(started)
        b = Broker(flags, tmp_path / ("rt%d" % n), tmp_path / ("broker%d.log" % n), frontend)
        started.append(b)
        return b.wait_ready()

    yield start
    problems = []
    for b in started:
        already = b.proc.poll()
        rc = b.terminate()
        if already is None and rc != 0 and not b.killed:
            problems.append("broker exited %r after SIGTERM\n%s" % (rc, b.stderr()[-3000:]))
    assert not problems, problems


@pytest.fixture
def clients():
    """Factory: clients(endpoint, **attach_kw) -> an attached zhost.Proc,
    closed (BYE) at teardown."""
    made = []

    def make(endpoint, **kw):
        p = zhost.attach(endpoint, **kw)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close(timeout=1.0)


def wait_until(pred, timeout, step=0.05, procs=()):
    """pred() true within timeout seconds (procs are polled meanwhile)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        if procs:
            for p in procs:
                p.poll(step / max(1, len(procs)))
        else:
            time.sleep(step)
    return pred()
