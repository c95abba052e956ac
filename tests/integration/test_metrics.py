"""--metrics: Prometheus text at /metrics and health at /healthz
(broker/zh_metrics.c MX-1..MX-3; docs/broker.md, "Metrics").

Scenarios, as an operator and a monitoring system see them: it is off by
default and a bare port binds loopback; every series is well-formed text
format with HELP and TYPE, prefixed zhost_; the counters follow the
traffic (routed, returned by code, rejected by ERROR code, per-proc in and
out, procs by status, connections by kind); a link to another broker has
its state, pending and reconnect series; /healthz turns 503 the moment a
shutdown starts; hostile HTTP (garbage, oversize headers, more idle
connections than allowed, POST) never stalls routing or crashes the
broker; bad --metrics values and a taken port are start-up errors.
"""

import os
import re
import socket
import time
import urllib.error
import urllib.request

import pytest

import zhp
from conftest import BUILD_DIR, run_broker
from test_peers import free_port, wait_ready

ECHO = os.path.join(BUILD_DIR, "zhost-echo")
TEST_PROC = os.path.join(BUILD_DIR, "zh-test-proc")

SAMPLE = re.compile(r'^(zhost_[a-z_]+)(\{[^}]*\})? (\S+)$')
LABEL = re.compile(r'([a-z_]+)="((?:[^"\\]|\\.)*)"')


def http(addr, path, method="GET", timeout=5.0):
    """(status, headers, body text) of one request to HOST:PORT."""
    req = urllib.request.Request("http://%s%s" % (addr, path), method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def scrape(b):
    """Parse /metrics: {(name, frozenset(labels)): value}, checking the
    text format on the way (every sample named zhost_*, after its HELP and
    TYPE lines; no name typed twice)."""
    status, headers, text = http(b.metrics, "/metrics")
    assert status == 200, (status, text)
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4"), headers
    assert text.endswith("\n")
    typed, helped, samples = {}, set(), {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split()[2]
            assert name not in helped, "HELP twice: %s" % name
            helped.add(name)
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert name in helped and name not in typed, line
            assert kind in ("counter", "gauge"), line
            typed[name] = kind
        else:
            m = SAMPLE.match(line)
            assert m, "not a sample line: %r" % line
            name, labels, value = m.groups()
            assert name in typed, "sample before its TYPE: %r" % line
            if typed[name] == "counter":
                assert name.endswith("_total"), name
            key = (name, frozenset(LABEL.findall(labels or "")))
            assert key not in samples, "sample twice: %r" % line
            samples[key] = float(value)
    return samples


def value(samples, name, **labels):
    return samples[(name, frozenset(labels.items()))]


def test_off_by_default_and_a_bare_port_is_loopback(broker):
    """Without --metrics nothing listens; --metrics 0 takes a free port on
    127.0.0.1 (the `metrics` line of the start-up output says which) and
    logs the URLs."""
    plain = broker()
    assert plain.metrics is None
    b = broker("--metrics", "0")
    host, port = b.metrics.rsplit(":", 1)
    assert host == "127.0.0.1" and int(port) > 0, b.metrics
    assert "metrics=http://%s/metrics" % b.metrics in b.stderr_text()
    status, _, body = http(b.metrics, "/healthz")
    assert (status, body) == (200, "serving\n")
    status, _, body = http(b.metrics, "/")
    assert status == 200 and "/metrics" in body


def test_series_follow_the_traffic(broker, client):
    """After ten requests to a spawned echo, one SEND to a proc that does
    not exist and one malformed frame, the counters say exactly that."""
    b = broker("--metrics", "0", "--spawn", "echo=" + ECHO)
    ctl = client(b, via="control")
    wait_ready(ctl, "echo")
    c = client(b, "asker")
    for i in range(10):
        c.send("echo.echo:2@" + b.ep, [b"hi %d" % i], meta={"reply": c.port(1)})
        assert c.expect(zhp.SEND, timeout=5).parts == [b"hi %d" % i]
    c.send("nosuch.x:1@" + b.ep, [b"lost"])
    c.expect(zhp.RETURN)
    c.send_frames([b"not a header"])
    c.expect_error(400)
    s = scrape(b)
    assert value(s, "zhost_proc_messages_in_total", proc="echo", kind="spawned") == 10
    assert value(s, "zhost_proc_messages_out_total", proc="echo", kind="spawned") == 10
    assert value(s, "zhost_proc_messages_in_total", proc=zhp.proc_id(c.proc), kind="client") == 11
    # out counts what was routed to it; the RETURN the broker made itself
    # is in zhost_messages_returned_total
    assert value(s, "zhost_proc_messages_out_total", proc=zhp.proc_id(c.proc), kind="client") == 10
    assert value(s, "zhost_messages_routed_total") >= 21
    assert value(s, "zhost_messages_returned_total", code="NO_SUCH_PROC") == 1
    assert value(s, "zhost_messages_returned_total", code="TTL_EXPIRED") == 0
    assert value(s, "zhost_rejected_total", code="400") == 1
    assert value(s, "zhost_procs", status="ready") == 1
    assert value(s, "zhost_procs", status="failed") == 0
    assert value(s, "zhost_connections", kind="client") == 2  # c and ctl
    assert value(s, "zhost_connections", kind="proc") == 1
    assert value(s, "zhost_connections", kind="link") == 0
    assert value(s, "zhost_process_resident_memory_bytes") > 1e6
    assert value(s, "zhost_uptime_seconds") > 0
    assert value(s, "zhost_process_open_fds") > 3
    build = [k for k in s if k[0] == "zhost_build_info"]
    assert len(build) == 1 and ("protocol", "ZHP/1") in build[0][1], build
    info = dict([k for k in s if k[0] == "zhost_broker_info"][0][1])
    assert info["host"] == b.ep and info["phase"] == "serving", info
    # A proc that ends changes the status counts; a scrape is counted.
    ctl.request("stop", name="echo", timeout=10)
    s2 = scrape(b)
    assert value(s2, "zhost_procs", status="ready") == 0
    assert value(s2, "zhost_procs", status="stopped") == 1
    assert value(s2, "zhost_metrics_scrapes_total") == value(s, "zhost_metrics_scrapes_total") + 1


def test_a_link_to_another_broker_has_its_series(broker, client):
    """A client on A asks an echo on B: A's link to B is up and counts what
    it forwarded; B counts A as a peer connection. A link to a broker that
    is not there holds its messages as pending."""
    b = broker("--metrics", "0", "--spawn", "echo=" + ECHO)
    a = broker("--metrics", "0", "--delivery-timeout", "30s")
    wait_ready(client(b, via="control"), "echo")
    c = client(a, "asker")
    c.send("echo.echo:2@" + b.ep, [b"across"], meta={"reply": c.port(1)})
    assert c.expect(zhp.SEND, timeout=10).parts == [b"across"]
    sa, sb = scrape(a), scrape(b)
    assert value(sa, "zhost_peer_state", endpoint=b.ep, state="up") == 1
    assert value(sa, "zhost_peer_state", endpoint=b.ep, state="closed") == 0
    assert value(sa, "zhost_peer_forwarded_total", endpoint=b.ep) == 1
    assert value(sa, "zhost_peer_received_total", endpoint=b.ep) == 1
    assert value(sa, "zhost_peer_pending_messages", endpoint=b.ep) == 0
    assert value(sa, "zhost_connections", kind="link") == 1
    assert value(sb, "zhost_connections", kind="peer") == 1
    nobody = "tcp://127.0.0.1:%d" % free_port()
    for i in range(3):
        c.send("x.y:1@" + nobody, [b"wait %d" % i])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        sa = scrape(a)
        if sa.get(("zhost_peer_pending_messages", frozenset({("endpoint", nobody)}))) == 3:
            break
        time.sleep(0.05)
    assert value(sa, "zhost_peer_pending_messages", endpoint=nobody) == 3
    assert value(sa, "zhost_peer_pending_bytes", endpoint=nobody) > 0
    assert value(sa, "zhost_queue_depth", queue="peer_pending") == 3
    assert value(sa, "zhost_peer_state", endpoint=nobody, state="up") == 0


def test_healthz_is_503_from_the_start_of_a_shutdown(broker, client):
    """A proc that takes 3 s to stop keeps the broker in `stopping`: all
    that time /healthz answers 503 and names the phase; /metrics still
    answers; the broker then exits 0."""
    if not os.access(TEST_PROC, os.X_OK):
        pytest.skip("no zh-test-proc in %s" % BUILD_DIR)
    b = broker("--metrics", "0", "--spawn", "slow=%s --stop-delay 3000" % TEST_PROC)
    wait_ready(client(b, via="control"), "slow")
    assert http(b.metrics, "/healthz")[0] == 200
    t0 = time.monotonic()
    b.signal(15)
    deadline = t0 + 2.5
    status, body = None, None
    while time.monotonic() < deadline:
        status, _, body = http(b.metrics, "/healthz")
        if status == 503:
            break
        time.sleep(0.02)
    assert (status, body) == (503, "shutting down (stopping)\n")
    assert time.monotonic() - t0 < 2.5  # well before the proc let go
    s = scrape(b)
    assert dict([k for k in s if k[0] == "zhost_broker_info"][0][1])["phase"] == "stopping"
    assert b.wait(15) == 0


def test_hostile_http_never_stalls_routing(broker, client):
    """Garbage, a 200 KB header, a request that never ends, and more idle
    connections than the server takes: meanwhile requests to an echo are
    answered at once, and afterwards /metrics answers and the broker is
    whole. POST is 405, an unknown path 404, HEAD has no body."""
    b = broker("--metrics", "0", "--spawn", "echo=" + ECHO)
    wait_ready(client(b, via="control"), "echo")
    host, port = b.metrics.rsplit(":", 1)
    port = int(port)
    assert http(b.metrics, "/metrics", method="POST")[0] == 405
    status, headers, _ = http(b.metrics, "/metrics", method="PUT")
    assert status == 405 and headers.get("Allow") == "GET, HEAD"
    assert http(b.metrics, "/nope")[0] == 404
    status, _, body = http(b.metrics, "/metrics", method="HEAD")
    assert status == 200 and body == ""
    held = []
    for payload in (b"\x00\xff garbage \r\n\r\n", b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 200000,
                    b"GET /metrics HTTP/1.1\r\nHost: x\r\n"):  # the last never ends
        s = socket.create_connection((host, port), timeout=5)
        try:
            s.sendall(payload)
        except OSError:
            pass  # the server may close on us mid-send: that is its right
        held.append(s)
    for _ in range(40):  # past ZH_METRICS_CONNECTIONS and the per-address bound
        try:
            held.append(socket.create_connection((host, port), timeout=5))
        except OSError:
            pass
    c = client(b, "asker")
    for i in range(20):
        t0 = time.monotonic()
        c.send("echo.echo:2@" + b.ep, [b"%d" % i], meta={"reply": c.port(1)})
        assert c.expect(zhp.SEND, timeout=5).parts == [b"%d" % i]
        assert time.monotonic() - t0 < 1.0
    for s in held:
        s.close()
    deadline = time.monotonic() + 10
    while True:  # the server frees the slots as it sees the closes
        try:
            s = scrape(b)
            break
        except (OSError, urllib.error.URLError):
            assert time.monotonic() < deadline, "metrics never answered again"
            time.sleep(0.05)
    assert value(s, "zhost_proc_messages_in_total", proc="echo", kind="spawned") == 20
    assert b.alive()


@pytest.mark.parametrize("addr,needle", [
    ("abc", "the port must be a number"),
    ("70000", "the port must be a number"),
    ("::1:9100", "is not PORT, HOST:PORT or [IPV6]:PORT"),
    (":9100", "is not PORT, HOST:PORT or [IPV6]:PORT"),
    ("no.such.host.invalid:9100", "cannot resolve"),
])
def test_bad_metrics_addresses_exit_2(tmp_path, addr, needle):
    r = run_broker(["--frontend", "tcp://127.0.0.1:0", "--runtime-dir",
                    str(tmp_path / "rt"), "--metrics", addr])
    rc, err = r.returncode, r.stderr
    assert rc == 2 and needle in err and "--metrics" in err, (rc, err)


def test_a_taken_metrics_port_exits_1_naming_it(tmp_path):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        r = run_broker(["--frontend", "tcp://127.0.0.1:0", "--runtime-dir",
                        str(tmp_path / "rt"), "--metrics", str(port)])
    finally:
        taken.close()
    rc, err = r.returncode, r.stderr
    assert rc == 1 and "--metrics %d: cannot listen" % port in err, (rc, err)
    assert "in use" in err, err


def test_a_peer_that_only_sends_to_us_is_counted(broker, client):
    """B never sends to A, so B has no link of its own to A: what A's link
    brought in still shows under A's endpoint, and B counts no link."""
    b = broker("--metrics", "0")
    a = broker()
    r = client(b, "r")
    s = client(a, "s")
    for i in range(4):
        s.send(r.port(1), [b"one way %d" % i], returnable=False)
        assert r.expect(zhp.SEND, timeout=10).parts == [b"one way %d" % i]
    sb = scrape(b)
    assert value(sb, "zhost_peer_received_total", endpoint=a.ep) == 4
    assert value(sb, "zhost_connections", kind="link") == 0
    assert value(sb, "zhost_connections", kind="peer") == 1
    assert not [k for k in sb if k[0] == "zhost_peer_state"]


def test_an_ipv6_address_binds_and_answers(broker):
    """[::1]:0 listens on IPv6 loopback and says where, bracketed."""
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        probe.close()
    except OSError as e:
        pytest.skip("this machine has no IPv6 loopback: %s" % e)
    b = broker("--metrics", "[::1]:0")
    assert b.metrics.startswith("[::1]:"), b.metrics
    status, _, body = http(b.metrics, "/healthz")
    assert (status, body) == (200, "serving\n")
