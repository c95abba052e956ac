"""CURVE between brokers (docs/protocol.md §6; broker/zh_peers.c PL-4,
broker/zh_curve.c CU-2), on loopback.

Each broker has its own certificate made by `zhost-ctl keygen NAME
--endpoint E`; its --curve-peers holds the public certificates of the
brokers it may link with. Scenarios: two CURVE brokers talk (a client on A
asks an echo on B); a broker whose key is not in the other's --curve-peers
cannot link, and its senders get HOST_UNREACHABLE at the delivery timeout
saying why; a SEND for an endpoint with no known key is returned at once;
the frontend accepts HELLO only from a peer key and only as the endpoint
its certificate names, and a peer key cannot ATTACH; bad --curve-peers
setups exit 2 naming the file or flag.
"""

import os
import shutil
import subprocess
import time

import pytest
import zmq
import zmq.auth

import zhp
from conftest import BUILD_DIR, run_broker
from test_peers import free_port, wait_ready

CTL = os.path.join(BUILD_DIR, "zhost-ctl")
ECHO = os.path.join(BUILD_DIR, "zhost-echo")


class Site(object):
    """A broker's name, endpoint and key files (not yet running)."""

    def __init__(self, root, name):
        self.name = name
        self.port = free_port()
        self.ep = "tcp://127.0.0.1:%d" % self.port
        self.peers = root / ("%s-peers" % name)
        self.peers.mkdir()
        self.secret = root / "keys" / ("%s.key_secret" % name)
        self.public = root / "keys" / ("%s.key" % name)
        subprocess.run([CTL, "keygen", name, "--out", str(root / "keys"), "--endpoint", self.ep],
                       check=True, stdout=subprocess.DEVNULL)

    def trust(self, other):
        """Put other's public certificate in this broker's --curve-peers."""
        shutil.copy(other.public, self.peers / other.public.name)

    def args(self, allow):
        return ["--curve-secret", self.secret, "--curve-peers", self.peers,
                "--curve-allow", allow]


@pytest.fixture
def sites(tmp_path):
    if not os.access(CTL, os.X_OK):
        pytest.skip("no zhost-ctl in %s" % BUILD_DIR)
    (tmp_path / "keys").mkdir()
    allow = tmp_path / "allow"
    allow.mkdir()
    subprocess.run([CTL, "keygen", "alice", "--out", str(tmp_path / "keys")], check=True,
                   stdout=subprocess.DEVNULL)
    shutil.copy(tmp_path / "keys" / "alice.key", allow / "alice.key")
    a, b, c = (Site(tmp_path, n) for n in ("a", "b", "c"))
    a.trust(b)
    b.trust(a)  # B knows A, not C
    c.trust(b)  # C knows B's key, so it can dial B
    return tmp_path, allow, a, b, c


def start(broker, site, allow, *extra):
    return broker(*site.args(allow), *extra, frontend=(site.ep,))


def alice_on(zctx, b, root, site):
    pub, sec = zmq.auth.load_certificate(str(root / "keys" / "alice.key_secret"))
    server, _ = zmq.auth.load_certificate(str(site.public))
    c = zhp.Client(zctx, b.frontend[0], name="alice", curve=(pub, sec, server))
    c.attach("alice")
    return c


def curve_raw(zctx, b, site, as_site):
    """A raw DEALER on b's frontend under as_site's broker key."""
    pub, sec = zmq.auth.load_certificate(str(as_site.secret))
    server, _ = zmq.auth.load_certificate(str(site.public))
    return zhp.Client(zctx, b.frontend[0], name="raw-" + as_site.name, curve=(pub, sec, server))


def test_two_curve_brokers_talk(broker, client, zctx, sites):
    """A client on A asks an echo on B; the link between them is CURVE
    (each dials with its own certificate and the other's server key)."""
    root, allow, a_site, b_site, _ = sites
    b = start(broker, b_site, allow, "--spawn", "echo=" + ECHO)
    a = start(broker, a_site, allow)
    assert "curve=on" in a.stderr_text() and "peers=1" in a.stderr_text()
    wait_ready(client(b, via="control"), "echo")
    alice = alice_on(zctx, a, root, a_site)
    for i in range(3):
        alice.send("echo.echo:2@" + b.ep, [b"across %d" % i],
                   meta={"reply": alice.port(1), "seq": i})
        got = alice.expect(zhp.SEND, timeout=10)
        assert got.parts == [b"across %d" % i], got
        assert got.src == "echo.echo@" + b.ep and got.dest == alice.port(1), got
    link = client(a, via="control").request("stats")["peers"][b.ep]
    assert link["state"] == "up" and link["forwarded"] >= 3, link
    # and the other way: B dials A's frontend with its own key
    b_alice = alice_on(zctx, b, root, b_site)
    b_alice.send(alice.port(4), [b"from b"])
    got = alice.expect(zhp.SEND, timeout=10)
    assert got.parts == [b"from b"] and got.src == b_alice.actor


def test_a_broker_not_in_the_others_peers_cannot_link(broker, client, zctx, sites):
    """C has B's certificate but B's --curve-peers has no C: B's ZAP refuses
    C's key, no link comes up, and C's flagged SEND is returned
    HOST_UNREACHABLE at the delivery timeout (not before), saying that the
    peer refused our key."""
    root, allow, _, b_site, c_site = sites
    b = start(broker, b_site, allow, "--spawn", "echo=" + ECHO)
    c = start(broker, c_site, allow, "--delivery-timeout", "1500ms")
    alice = alice_on(zctx, c, root, c_site)
    t0 = time.monotonic()
    sent = alice.send("echo.echo:2@" + b.ep, [b"let me in"], meta={"reply": alice.port(1)})
    msg = alice.expect(zhp.RETURN, timeout=10)
    waited = time.monotonic() - t0
    failure = zhp.check_return(msg, "HOST_UNREACHABLE", sent, c.ep)
    assert 1.45 <= waited < 6.0, waited
    assert "refused our CURVE key" in failure["reason"], failure
    assert "curve-peers" in failure["reason"], failure
    assert "curve-denied" in b.stderr_text()
    assert "refused our CURVE key" in c.stderr_text()
    link = client(c, via="control").request("stats")["peers"][b.ep]
    assert link["state"] != "up" and link["returned"]["HOST_UNREACHABLE"] == 1, link


def test_an_endpoint_with_no_key_is_returned_at_once(broker, client, zctx, sites):
    """A SEND for an endpoint --curve-peers has no certificate for is a
    configuration error: HOST_UNREACHABLE at once (the delivery timeout is
    30 s here), saying so; nothing is dialled."""
    root, allow, a_site, _, _ = sites
    a = start(broker, a_site, allow)
    alice = alice_on(zctx, a, root, a_site)
    unknown = "tcp://127.0.0.1:%d" % free_port()
    t0 = time.monotonic()
    sent = alice.send("x.y:1@" + unknown, [b"?"])
    msg = alice.expect(zhp.RETURN, timeout=5)
    assert time.monotonic() - t0 < 2.0
    failure = zhp.check_return(msg, "HOST_UNREACHABLE", sent, a.ep)
    assert "--curve-peers" in failure["reason"], failure
    link = client(a, via="control").request("stats")["peers"][unknown]
    assert link["state"] == "closed" and link["reconnects"] == 0, link


def test_hello_only_from_peer_keys_as_their_endpoint(broker, zctx, sites):
    """CU-2 on B's frontend: HELLO under a client key is 403; under A's
    broker key but as another endpoint is 403; as A's own endpoint it is
    welcomed. A broker key cannot ATTACH (403)."""
    root, allow, a_site, b_site, c_site = sites
    b = start(broker, b_site, allow)
    alice = alice_on(zctx, b, root, b_site)
    try:
        pub, sec = zmq.auth.load_certificate(str(root / "keys" / "alice.key_secret"))
        server, _ = zmq.auth.load_certificate(str(b_site.public))
        fresh = zhp.Client(zctx, b.frontend[0], name="alice-hello", curve=(pub, sec, server))
        fresh.send_frames(zhp.control(zhp.HELLO, {"endpoint": a_site.ep, "incarnation": 1}))
        err = fresh.expect_error(403)
        assert "--curve-peers" in err.body["reason"], err.body
        fresh.close()

        liar = curve_raw(zctx, b, b_site, a_site)
        liar.send_frames(zhp.control(zhp.HELLO, {"endpoint": c_site.ep, "incarnation": 1}))
        err = liar.expect_error(403)
        assert "certificate" in err.body["reason"], err.body
        liar.close()

        attacher = curve_raw(zctx, b, b_site, a_site)
        attacher.send_frames(zhp.control(zhp.ATTACH, {"label": "sneaky"}))
        attacher.expect_error(403)
        attacher.close()

        honest = curve_raw(zctx, b, b_site, a_site)
        honest.send_frames(zhp.control(zhp.HELLO, {"endpoint": a_site.ep, "incarnation": 1}))
        assert honest.expect(zhp.WELCOME).body["endpoint"] == b.ep
        honest.send(alice.port(2), [b"peer says hi"], src="x.y@" + a_site.ep)
        got = alice.expect(zhp.SEND)
        assert got.parts == [b"peer says hi"]
        honest.close()
    finally:
        alice.close()
    assert "peer-refused" in b.stderr_text()


def test_bad_curve_peers_setups_exit_2(sites, tmp_path):
    """--curve-peers without --curve-secret, a certificate without an
    endpoint, and two files naming one endpoint: exit 2, naming the cause."""
    root, allow, a_site, b_site, _ = sites
    rt = ["--runtime-dir", str(tmp_path / "rt"), "--frontend", "tcp://127.0.0.1:0"]
    p = run_broker(["--curve-peers", str(a_site.peers), "--curve-allow", str(allow)] + rt)
    assert p.returncode == 2 and "--curve-secret" in p.stderr, p.stderr

    subprocess.run([CTL, "keygen", "plain", "--out", str(root / "keys")], check=True,
                   stdout=subprocess.DEVNULL)
    shutil.copy(root / "keys" / "plain.key", a_site.peers / "plain.key")
    p = run_broker([str(x) for x in a_site.args(allow)] + rt)
    assert p.returncode == 2 and "plain.key" in p.stderr and "endpoint" in p.stderr, p.stderr
    os.unlink(a_site.peers / "plain.key")

    shutil.copy(b_site.public, a_site.peers / "b-again.key")
    p = run_broker([str(x) for x in a_site.args(allow)] + rt)
    assert p.returncode == 2 and "another file" in p.stderr, p.stderr
