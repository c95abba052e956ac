"""Three brokers on three hosts (network namespaces joined by a switch in a
namespace of its own, all made and removed by the test; it needs root and
skips without): each broker listens on tcp://0.0.0.0:7100 and advertises
its host's address, as docker-compose runs them. A client on A asks the
echo on C and the echo on B, B's asks A's; then C's cable is pulled (its
veth down): a request to C comes back HOST_UNREACHABLE at the delivery
timeout, and once the cable is back, requests to C are answered again
without restarting anything.
"""

import os
import subprocess
import time

import pytest

from conftest import BROKER_BIN, BUILD_DIR, Broker, broker_env
from test_netns import sh  # a command, its output, bounded

ECHO = os.path.join(BUILD_DIR, "zhost-echo")
PING = os.path.join(BUILD_DIR, "zhost-ping")
ADDR = {"a": "10.213.1.1", "b": "10.213.1.2", "c": "10.213.1.3"}


@pytest.fixture
def mesh():
    """{host: namespace}, plus the switch namespace and each host's cable."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    tag = "%d" % (os.getpid() % 100000)
    sw = "zh-sw-" + tag
    hosts = {h: "zh-%s-%s" % (h, tag) for h in ADDR}
    cables = {h: "zh%s%s" % (h, tag) for h in ADDR}
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
                ("ip", "-n", ns, "addr", "add", ADDR[h] + "/24", "dev", "eth0"),
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
