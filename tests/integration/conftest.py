"""Fixtures for the end-to-end tests: start the real zhost-broker, talk ZHP to it.

`broker(*args, ...)` starts $ZHOST_BUILD_DIR/zhost-broker (default
/work/main/build-broker) with `--frontend tcp://127.0.0.1:0 --runtime-dir
<tmp>/rt` plus args, waits (bounded) for `ready` on stdout and parses the
printed endpoints (docs/broker.md, Start). At teardown every broker still
running gets SIGTERM and must exit 0 within its linger plus a margin, leave no
child process behind and print no sanitizer report; a broker that does not
exit is SIGKILLed and the test errors.

`client(b, ...)` makes a zhp.Client on a broker's frontend (or control socket)
and attaches it unless told not to.
"""

import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import zhp  # noqa: E402

BUILD_DIR = os.environ.get("ZHOST_BUILD_DIR", "/work/main/build-broker")
BROKER_BIN = os.path.join(BUILD_DIR, "zhost-broker")
READY_TIMEOUT = 10.0
TEST_TIMEOUT = 120  # seconds; a hard bound on any one test (SIGALRM)
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                   "runtime error:", "WARNING: ThreadSanitizer")


def broker_env(extra=None):
    """The test's environment without ZHOST_* (so only flags configure the broker)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZHOST_")}
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
    if extra:
        env.update(extra)
    return env


def run_broker(args, timeout=10.0, env=None):
    """Run the broker to completion (for --help, bad flags, ...): CompletedProcess."""
    return subprocess.run([BROKER_BIN] + list(args), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=timeout,
                          env=broker_env(env), text=True, stdin=subprocess.DEVNULL)


def children_of(pid):
    """Pids whose parent is pid (from /proc)."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            out.append(int(name))
    return out


def pid_alive(pid):
    """True while pid exists and is not a zombie (from /proc)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


def parse_duration(text):
    m = re.fullmatch(r"(\d+)(ms|s|m)?", text)
    if not m:
        return None
    n = int(m.group(1))
    return n / 1000.0 if m.group(2) == "ms" else n * 60.0 if m.group(2) == "m" else float(n)


class Broker(object):
    """A running zhost-broker and what it printed."""

    def __init__(self, argv, runtime_dir, log_path, env):
        self.argv = argv
        self.runtime_dir = str(runtime_dir)
        self.log_path = str(log_path)
        self.lines = []
        self.frontend = []
        self.advertise = []
        self.backend = None
        self.control = None
        self.ready = False
        self.metrics = None  # HOST:PORT of --metrics, from the "metrics" line
        self.expect_exit = None  # set by tests that stop the broker themselves
        self.signalled = None
        self.linger = 2.0
        if "--linger" in argv:
            self.linger = parse_duration(argv[argv.index("--linger") + 1]) or 2.0
        self._cond = threading.Condition()
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self._log,
                                     stdin=subprocess.DEVNULL, env=env,
                                     start_new_session=True)
        self.pid = self.proc.pid
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()

    def _read_stdout(self):
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_ready(self, timeout=READY_TIMEOUT):
        deadline = time.monotonic() + timeout
        with self._cond:
            while "ready" not in self.lines:
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    break
                self._cond.wait(min(left, 0.1))
            lines = list(self.lines)
        if "ready" not in lines:
            raise AssertionError("broker not ready within %.0fs (rc=%r)\nstdout: %r\nstderr: %s" % (
                timeout, self.proc.poll(), lines, self.stderr_tail()))
        for line in lines[:lines.index("ready")]:
            key, _, value = line.partition(" ")
            if key == "frontend":
                self.frontend.append(value)
            elif key == "advertise":
                self.advertise.append(value)
            elif key == "backend":
                self.backend = value
            elif key == "control":
                self.control = value
            elif key == "metrics":
                self.metrics = value
        self.ready = True
        return self

    @property
    def ep(self):
        """The (first) advertised endpoint: procs here are id@ep."""
        return self.advertise[0]

    @property
    def agent(self):
        return "host_agent.service@%s" % self.ep

    def alive(self):
        return self.proc.poll() is None

    def signal(self, sig):
        self.signalled = sig
        os.kill(self.pid, sig)

    def wait(self, timeout):
        """Exit code within timeout seconds, or None."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def rss_kib(self):
        return rss_kib(self.pid)

    def sanitized(self):
        """True for an ASan build (its RSS is shadow memory and quarantine)."""
        try:
            with open("/proc/%d/maps" % self.pid) as f:
                return "libasan" in f.read()
        except OSError:
            return False

    def stderr_text(self):
        if not self._log.closed:
            self._log.flush()
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def wait_stderr(self, pattern, timeout=5.0):
        """The first match of pattern (a regex) in the broker's stderr, waiting
        at most timeout seconds for it; AssertionError naming it otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            m = re.search(pattern, self.stderr_text())
            if m:
                return m
            if time.monotonic() >= deadline:
                raise AssertionError("no %r in the broker's stderr within %.1fs:\n%s" % (
                    pattern, timeout, self.stderr_tail()))
            time.sleep(0.02)   # poll interval

    def stderr_tail(self, n=40):
        return "\n".join(self.stderr_text().splitlines()[-n:])

    def stop(self):
        """Teardown: SIGTERM if still running; returns a list of problems."""
        problems = []
        kids = []
        if self.proc.poll() is None:
            kids = children_of(self.pid)
            self.signal(signal.SIGTERM)
            rc = self.wait(self.linger + 5.0)
            if rc is None:
                self.proc.kill()
                self.wait(5.0)
                problems.append("broker %d did not exit within %.1fs of SIGTERM (SIGKILLed)"
                                % (self.pid, self.linger + 5.0))
            elif rc != 0:
                problems.append("broker exited %d after SIGTERM" % rc)
        elif self.expect_exit is None and self.signalled is None and self.ready:
            problems.append("broker exited early with %r" % self.proc.returncode)
        elif self.signalled in (signal.SIGTERM, signal.SIGINT) and self.proc.returncode != 0:
            problems.append("broker exited %r after %s" % (
                self.proc.returncode, signal.Signals(self.signalled).name))
        self._reader.join(2.0)
        self._log.close()
        deadline = time.monotonic() + 3.0
        while kids and time.monotonic() < deadline:
            kids = [k for k in kids if os.path.exists("/proc/%d" % k)]
            time.sleep(0.05)
        if kids:
            problems.append("child processes left behind: %r" % kids)
        text = self.stderr_text()
        for mark in SANITIZER_MARKS:
            if mark in text:
                problems.append("sanitizer report in stderr: %s" % mark)
        return problems


@pytest.fixture(autouse=True)
def _hard_timeout():
    """No test may hang: SIGALRM after TEST_TIMEOUT seconds."""
    def on_alarm(signum, frame):
        raise TimeoutError("test ran over %ds" % TEST_TIMEOUT)
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(TEST_TIMEOUT)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.fixture
def zctx():
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


def _need_binary():
    if not os.access(BROKER_BIN, os.X_OK):
        pytest.skip("no broker binary at %s (set ZHOST_BUILD_DIR)" % BROKER_BIN)


@pytest.fixture
def broker_bin():
    _need_binary()
    return BROKER_BIN


@pytest.fixture
def broker(tmp_path, request):
    """Factory: broker(*args, frontend=[...], runtime_dir=..., wait=True, env=None)."""
    _need_binary()
    started = []

    def start(*args, frontend=("tcp://127.0.0.1:0",), runtime_dir=None, wait=True,
              env=None):
        n = len(started)
        if runtime_dir is None:
            runtime_dir = tmp_path / ("rt" if n == 0 else "rt%d" % n)
        argv = [BROKER_BIN]
        for ep in frontend:
            argv += ["--frontend", ep]
        argv += ["--runtime-dir", str(runtime_dir)] + [str(a) for a in args]
        b = Broker(argv, runtime_dir, tmp_path / ("broker%d.log" % n), broker_env(env))
        started.append(b)
        if wait:
            b.wait_ready()
        return b

    yield start
    problems = []
    for b in started:
        p = b.stop()
        problems += p
        # shown by pytest only when the test fails
        print("--- broker %d (%s), log %s, tail ---\n%s" % (
            b.pid, " ".join(b.argv), b.log_path, b.stderr_tail(20)))
    assert not problems, "; ".join(problems)


@pytest.fixture
def client(zctx):
    """Factory: client(b, label=None, via="frontend"|"control", attach=True, **sockopts)."""
    made = []

    def make(b, label=None, via="frontend", attach=True, name=None, **kw):
        ep = b.frontend[0] if via == "frontend" else b.control if via == "control" else via
        c = zhp.Client(zctx, ep, name=name or "%s#%d" % (via, len(made)), **kw)
        made.append(c)
        if attach:
            c.attach(label)
        return c

    yield make
    for c in made:
        c.close()
