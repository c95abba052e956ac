"""Two hosts in network namespaces (the docker-compose topology without a
Docker engine): the broker runs in namespace A as docker/Dockerfile runs it
(frontend tcp://0.0.0.0:7100, advertised under the address other hosts
dial); a client in namespace B, across a veth pair, attaches and talks with
a client in namespace A. The namespaces and addresses are this test's own
(10.213.0.0/24 exists only inside them); it needs root and skips without.
"""

import os
import subprocess
import sys
import textwrap

import pytest

from conftest import BROKER_BIN, Broker, broker_env

HERE = os.path.dirname(os.path.abspath(__file__))
A_ADDR, B_ADDR = "10.213.0.1", "10.213.0.2"


def sh(*args):
    return subprocess.run(list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=10)


@pytest.fixture
def two_hosts():
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    tag = "%d" % (os.getpid() % 100000)
    ns_a, ns_b = "zh-a-" + tag, "zh-b-" + tag
    veth_a, veth_b = "zha" + tag, "zhb" + tag
    if sh("ip", "netns", "add", ns_a).returncode != 0:
        pytest.skip("cannot create network namespaces here")
    try:
        steps = [
            ("ip", "netns", "add", ns_b),
            ("ip", "link", "add", veth_a, "type", "veth", "peer", "name", veth_b),
            ("ip", "link", "set", veth_a, "netns", ns_a),
            ("ip", "link", "set", veth_b, "netns", ns_b),
            ("ip", "-n", ns_a, "addr", "add", A_ADDR + "/24", "dev", veth_a),
            ("ip", "-n", ns_b, "addr", "add", B_ADDR + "/24", "dev", veth_b),
            ("ip", "-n", ns_a, "link", "set", veth_a, "up"),
            ("ip", "-n", ns_b, "link", "set", veth_b, "up"),
            ("ip", "-n", ns_a, "link", "set", "lo", "up"),
            ("ip", "-n", ns_b, "link", "set", "lo", "up"),
        ]
        for step in steps:
            r = sh(*step)
            if r.returncode != 0:
                pytest.skip("%s: %s" % (" ".join(step), r.stderr.strip()))
        yield ns_a, ns_b
    finally:
        sh("ip", "netns", "del", ns_a)
        sh("ip", "netns", "del", ns_b)


CLIENT = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, %r)
    import zmq, zhp
    role, endpoint = sys.argv[1], sys.argv[2]
    ctx = zmq.Context()
    c = zhp.Client(ctx, endpoint, name=role)
    c.attach(role)
    print("proc", c.proc, flush=True)
    if role == "bob":
        m = c.expect(zhp.SEND, timeout=10.0)
        c.send(m.meta["reply"], [b"pong:" + m.parts[0]])
    else:
        peer = sys.stdin.readline().split()[1]
        c.send(zhp.port_addr(peer, 1, actor="client"), [b"ping"], meta={"reply": c.port(2)})
        m = c.expect(zhp.SEND, timeout=10.0)
        print("got", m.parts[0].decode(), "from", m.src, flush=True)
    c.bye()
    ctx.destroy(linger=0)
""") % HERE


def test_client_on_another_host_talks_through_the_broker(two_hosts, tmp_path):
    ns_a, ns_b = two_hosts
    argv = ["ip", "netns", "exec", ns_a, BROKER_BIN, "--frontend", "tcp://0.0.0.0:7100",
            "--advertise", "tcp://%s:7100" % A_ADDR, "--runtime-dir", str(tmp_path / "rt"),
            "--linger", "500ms"]
    b = Broker(argv, tmp_path / "rt", tmp_path / "broker.log", broker_env())
    try:
        b.wait_ready()
        assert b.frontend == ["tcp://0.0.0.0:7100"]
        assert b.advertise == ["tcp://%s:7100" % A_ADDR]
        endpoint = "tcp://%s:7100" % A_ADDR
        py = "/usr/bin/python3"
        bob = subprocess.Popen(["ip", "netns", "exec", ns_b, py, "-c", CLIENT, "bob", endpoint],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        bob_line = bob.stdout.readline()
        assert bob_line.startswith("proc bob<") and bob_line.strip().endswith("@" + endpoint), \
            bob_line + bob.stderr.read()
        bob_proc = bob_line.split()[1]
        alice = subprocess.run(["ip", "netns", "exec", ns_a, py, "-c", CLIENT, "alice", endpoint],
                               input="proc %s\n" % bob_proc, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, timeout=30)
        assert alice.returncode == 0, alice.stderr
        lines = alice.stdout.splitlines()
        assert lines[-1] == "got pong:ping from client.%s" % bob_proc, lines
        assert bob.wait(timeout=10) == 0, bob.stderr.read()
    finally:
        problems = b.stop()
    assert not problems, problems
