"""Three brokers on three hosts (network namespaces joined by a switch in a
namespace of its own, all made and removed by the test; it needs root and
skips without): each broker listens on tcp://0.0.0.0:7100 and advertises
its host's address, as docker-compose runs them. A client on A asks the
echo on C and the echo on B, B's asks A's; then C's cable is pulled (its
veth down): a request to C comes back HOST_UNREACHABLE at the delivery
timeout, and once the cable is back, requests to C are answered again
without restarting anything.

Two more scenarios on the same hosts (test_peers.py has them on loopback):
B killed and started again in its namespace is a new incarnation to A, and
the old B's proc addresses are answered NO_SUCH_PROC; a hostile peer on C
that HELLOs as C and sends as B is refused ERROR 403, and a peer's message
for a third broker is not relayed.
"""

import contextlib
import os
import signal
import subprocess
import textwrap
import time

import pytest

import zhp
from conftest import BROKER_BIN, BUILD_DIR, Broker, broker_env
from test_netns import sh  # a command, its output, bounded
from test_peers import send_until_it_arrives

HERE = os.path.dirname(os.path.abspath(__file__))

ECHO = os.path.join(BUILD_DIR, "zhost-echo")
PING = os.path.join(BUILD_DIR, "zhost-ping")
ADDR = {"a": "10.213.1.1", "b": "10.213.1.2", "c": "10.213.1.3"}


@contextlib.contextmanager
def switched_hosts(addrs, tag=None):
    """Hosts on one switch: for each name in addrs ({name: address}) a
    namespace zh-<name>-<tag> whose eth0 (address/24) is cabled to a bridge
    in a switch namespace of its own. Yields {"hosts": {name: namespace},
    "switch": namespace, "cables": {name: the switch end of its veth}};
    removes every namespace it made, however it ends. Skips without root or
    where namespaces cannot be made. test_compose.py uses it too."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    tag = tag or "%d" % (os.getpid() % 100000)
    sw = "zh-sw-" + tag
    hosts = {h: "zh-%s-%s" % (h, tag) for h in addrs}
    cables = {h: "zh%d-%s" % (i, tag) for i, h in enumerate(addrs)}  # <= 15 chars
    made = []
    try:
        for ns in [sw] + list(hosts.values()):
            if sh("ip", "netns", "add", ns).returncode != 0:
                pytest.skip("cannot create network namespaces here")
            made.append(ns)
        steps = [("ip", "-n", sw, "link", "add", "br0", "type", "bridge"),
                 ("ip", "-n", sw, "link", "set", "br0", "up")]
        for h, ns in hosts.items():
            cable = cables[h]
            steps += [
                ("ip", "-n", sw, "link", "add", cable, "type", "veth", "peer", "name", "eth0",
                 "netns", ns),
                ("ip", "-n", sw, "link", "set", cable, "master", "br0"),
                ("ip", "-n", sw, "link", "set", cable, "up"),
                ("ip", "-n", ns, "addr", "add", addrs[h] + "/24", "dev", "eth0"),
                ("ip", "-n", ns, "link", "set", "eth0", "up"),
                ("ip", "-n", ns, "link", "set", "lo", "up"),
            ]
        for step in steps:
            r = sh(*step)
            if r.returncode != 0:
                pytest.skip("%s: %s" % (" ".join(step), r.stderr.strip()))
        yield {"hosts": hosts, "switch": sw, "cables": cables}
    finally:
        for ns in made:
            sh("ip", "netns", "del", ns)


@pytest.fixture
def mesh():
    """{host: namespace}, plus the switch namespace and each host's cable."""
    with switched_hosts(ADDR) as m:
        yield m


def ep(h):
    return "tcp://%s:7100" % ADDR[h]


def ping(mesh, host, actor, count=1, wait_ms=2000, timeout=30):
    return subprocess.run(["ip", "netns", "exec", mesh["hosts"][host], PING, "-c", str(count),
                           "-W", str(wait_ms), ep(host), actor], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=timeout)


def test_three_brokers_route_and_survive_a_partition(mesh, tmp_path):
    for path in (ECHO, PING):
        if not os.access(path, os.X_OK):
            pytest.skip("no %s (build the examples)" % path)
    brokers = {}
    try:
        for h, ns in mesh["hosts"].items():
            rt = tmp_path / ("rt-" + h)
            argv = ["ip", "netns", "exec", ns, BROKER_BIN, "--frontend", "tcp://0.0.0.0:7100",
                    "--advertise", ep(h), "--runtime-dir", str(rt), "--heartbeat", "250ms",
                    "--delivery-timeout", "2s", "--linger", "500ms", "--spawn", "echo=" + ECHO]
            brokers[h] = Broker(argv, rt, tmp_path / ("broker-%s.log" % h), broker_env())
        for b in brokers.values():
            b.wait_ready()

        def answered(host, to, tries=40):
            """A's (host's) zhost-ping to echo on `to`, retried while the
            echo may still be starting."""
            r = None
            for _ in range(tries):
                r = ping(mesh, host, "echo.echo@" + ep(to))
                if r.returncode == 0:
                    return r
                time.sleep(0.25)  # poll interval: echo starting, or link coming back
            return r

        for host, to in (("a", "c"), ("a", "b"), ("b", "a")):
            r = answered(host, to)
            assert r.returncode == 0, (host, to, r.stdout, r.stderr)
            assert "reply from echo.echo@%s" % ep(to) in r.stdout

        # pull C's cable: a request to C waits, then is HOST_UNREACHABLE
        sw, cable = mesh["switch"], mesh["cables"]["c"]
        assert sh("ip", "-n", sw, "link", "set", cable, "down").returncode == 0
        time.sleep(1.0)  # the scenario: let A's link to C go silent (liveness 750 ms)
        t0 = time.monotonic()
        r = ping(mesh, "a", "echo.echo@" + ep("c"), wait_ms=8000)
        waited = time.monotonic() - t0
        assert r.returncode != 0 and "HOST_UNREACHABLE" in r.stdout + r.stderr, \
            (r.stdout, r.stderr)
        assert 1.9 <= waited < 8.0, waited

        # put it back: C is answered again, nobody restarted
        assert sh("ip", "-n", sw, "link", "set", cable, "up").returncode == 0
        r = answered("a", "c")
        assert r.returncode == 0, (r.stdout, r.stderr)
        for b in brokers.values():
            assert b.alive()
    finally:
        problems = []
        for b in brokers.values():
            problems += b.stop()
    assert not problems, problems


def start(mesh, h, tmp_path, *extra, rt=None):
    """A broker on host h as docker-compose runs it (tcp://0.0.0.0:7100,
    advertising h's address), ready."""
    rt = rt or tmp_path / ("rt-" + h)
    n = len(list(tmp_path.glob("broker-%s*.log" % h)))
    argv = ["ip", "netns", "exec", mesh["hosts"][h], BROKER_BIN, "--frontend",
            "tcp://0.0.0.0:7100", "--advertise", ep(h), "--runtime-dir", str(rt),
            "--linger", "500ms"] + list(extra)
    return Broker(argv, rt, tmp_path / ("broker-%s%d.log" % (h, n)), broker_env()).wait_ready()


def test_b_killed_and_started_again_is_a_new_incarnation(mesh, tmp_path, client):
    """B dies (SIGKILL, no BYE) and is started again in its namespace, on
    the same address and runtime dir, as a container restart does: A's
    link finds the new B by itself (401 or silence, then HELLO), traffic
    from A flows again without restarting A, A's stats show a new
    incarnation, and an address of a proc on the old B is NO_SUCH_PROC."""
    brokers = []
    try:
        a = start(mesh, "a", tmp_path, "--heartbeat", "200ms")
        b = start(mesh, "b", tmp_path, "--heartbeat", "200ms")
        brokers += [a, b]
        sender = client(a, via="control")   # the ipc socket: reachable from here
        old = client(b, via="control")
        assert old.proc.endswith("@" + ep("b")), old.proc
        sender.send(old.port(1), [b"before"])
        assert old.expect(zhp.SEND, timeout=10).parts == [b"before"]
        first = client(a, via="control").request("stats")["peers"][ep("b")]["incarnation"]
        old_port = old.port(1)

        b.signal(signal.SIGKILL)
        assert b.wait(5.0) is not None, "B did not die"
        b2 = start(mesh, "b", tmp_path, "--heartbeat", "200ms", rt=tmp_path / "rt-b")
        brokers.append(b2)
        fresh = client(b2, via="control")
        send_until_it_arrives(sender, fresh, timeout=15)
        link = client(a, via="control").request("stats")["peers"][ep("b")]
        assert link["state"] == "up" and link["incarnation"] != first, link
        sent = sender.send(old_port, [b"to the old B"])
        msg = sender.wait_for(lambda m: m.cmd == zhp.RETURN, timeout=5)
        zhp.check_return(msg, "NO_SUCH_PROC", sent, ep("b"), ttl=63)
        a.wait_stderr(r"state=restarted")
        assert a.alive()
    finally:
        problems = []
        for br in brokers:
            problems += br.stop()
    assert not problems, problems


HOSTILE = textwrap.dedent("""
    # A peer that lies: HELLO as one endpoint, SEND as another (run in C's namespace).
    import sys
    sys.path.insert(0, %r)
    import zmq, zhp
    frontend, own_ep, other_ep, victim_port, third = sys.argv[1:6]
    ctx = zmq.Context()
    h = zhp.Client(ctx, frontend, name="hostile")
    h.send_frames(zhp.control(zhp.HELLO, {"endpoint": own_ep, "incarnation": 1}))
    print("welcome", h.expect(zhp.WELCOME, timeout=10.0).body["endpoint"], flush=True)
    h.send(victim_port, [b"spoof"], src="x.y@" + other_ep)
    e = h.expect_error(403, timeout=5.0)
    print("error 403", flush=True)
    h.send(victim_port, [b"fine"], src="x.y@" + own_ep)
    sent = h.send(third, [b"relay me"], src="x.y@" + own_ep)
    r = h.expect(zhp.RETURN, timeout=5.0)
    print("return", r.meta["failures"][0]["code"], r.meta["failures"][0]["at"], flush=True)
    h.close()
    ctx.destroy(linger=0)
""") % HERE


def test_a_hostile_peer_on_another_host_is_refused_403(mesh, tmp_path, client):
    """A process on host C dials A's frontend and says HELLO as C's
    endpoint, then sends as B: ERROR 403 and the victim on A gets nothing;
    sent as C, the message is delivered; a message for B's broker is not
    relayed by A (RETURN NO_SUCH_PROC from A, and A never dials B)."""
    brokers = []
    try:
        a = start(mesh, "a", tmp_path)
        b = start(mesh, "b", tmp_path)
        brokers += [a, b]
        victim = client(a, via="control")
        r = subprocess.run(["ip", "netns", "exec", mesh["hosts"]["c"], "/usr/bin/python3", "-c",
                            HOSTILE, ep("a"), ep("c"), ep("b"), victim.port(2),
                            "x.z:1@" + ep("b")],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr
        assert r.stdout.splitlines() == ["welcome " + ep("a"), "error 403",
                                         "return NO_SUCH_PROC " + ep("a")], r.stdout
        got = victim.expect(zhp.SEND, timeout=5)
        assert got.parts == [b"fine"] and got.src == "x.y@" + ep("c"), got
        assert victim.try_recv(0.3) is None
        stats = client(a, via="control").request("stats")
        assert ep("b") not in stats["peers"], stats["peers"]
        assert stats["rejected"].get("403", 0) >= 1, stats["rejected"]
    finally:
        problems = []
        for br in brokers:
            problems += br.stop()
    assert not problems, problems
