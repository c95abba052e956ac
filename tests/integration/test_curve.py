"""CURVE on the frontend (docs/design.md, Security; broker/zh_curve.c).

Scenario: keys made with `zhost-ctl keygen`; the broker runs with
--curve-secret, --curve-allow (alice) and --curve-admin (root). alice
attaches and is served but may not run admin ops; root may (CU-1: an admin
key needs no allow entry); mallory's key and a client without CURVE never
get a BOOTSTRAP; the control socket is unchanged. Bad flag combinations
exit 2 naming the flag."""

import os
import subprocess

import pytest
import zmq
import zmq.auth
import zmq.utils.monitor

import zhp
from conftest import BUILD_DIR, run_broker

CTL = os.path.join(BUILD_DIR, "zhost-ctl")
TEST_PROC = os.path.join(BUILD_DIR, "zh-test-proc")


@pytest.fixture
def keys(tmp_path):
    if not os.access(CTL, os.X_OK):
        pytest.skip("no zhost-ctl in %s" % BUILD_DIR)
    d = tmp_path / "keys"
    allow, admin = tmp_path / "allow", tmp_path / "admin"
    for p in (d, allow, admin):
        p.mkdir()
    for name in ("broker", "alice", "root", "mallory"):
        subprocess.run([CTL, "keygen", name, "--out", str(d)], check=True,
                       stdout=subprocess.DEVNULL)
    (allow / "alice.key").write_bytes((d / "alice.key").read_bytes())
    (d / "pubonly").mkdir()
    (d / "pubonly" / "broker.key").write_bytes((d / "broker.key").read_bytes())
    (admin / "root.key").write_bytes((d / "root.key").read_bytes())
    return d, allow, admin


def curve_keys(keydir, name):
    """(public, secret, server public) for the client `name`."""
    pub, sec = zmq.auth.load_certificate(str(keydir / ("%s.key_secret" % name)))
    server, _ = zmq.auth.load_certificate(str(keydir / "broker.key"))
    return pub, sec, server


def curve_client(zctx, b, keydir, name):
    return zhp.Client(zctx, b.frontend[0], name=name, curve=curve_keys(keydir, name))


HANDSHAKE_EVENTS = (zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
                    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)


def handshake_outcome(zctx, endpoint, curve, timeout=5.0):
    """Attach with (public, secret, server) keys or none; return the first
    handshake event the client's socket reports, after checking that no
    BOOTSTRAP came. The ATTACH may not even be queued: libzmq drops a
    connecting DEALER's pipe when its handshake fails, which can happen
    before the send (the race that once made this test flaky)."""
    sock = zctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.ROUTING_ID, zhp.random_routing_id())
    if curve is not None:
        sock.curve_publickey, sock.curve_secretkey = curve[0], curve[1]
        sock.curve_serverkey = curve[2]
    mon = sock.get_monitor_socket(HANDSHAKE_EVENTS)
    try:
        sock.connect(endpoint)
        try:
            sock.send_multipart(zhp.control(zhp.ATTACH), flags=zmq.NOBLOCK)
        except zmq.Again:
            pass
        assert mon.poll(int(timeout * 1000)), "no handshake event within %.1fs" % timeout
        event = zmq.utils.monitor.recv_monitor_message(mon)["event"]
        assert sock.poll(500) == 0, "the broker answered a refused client"
        return event
    finally:
        sock.disable_monitor()
        mon.close(0)
        sock.close(0)


def test_allowed_admin_and_refused_keys(broker, zctx, keys, client):
    d, allow, admin = keys
    b = broker("--curve-secret", d / "broker.key_secret", "--curve-allow", allow,
               "--curve-admin", admin, "--terminate-timeout", "1s")
    assert "curve=on" in b.stderr_text()
    alice = curve_client(zctx, b, d, "alice")
    alice.attach("alice")
    assert alice.request("ping")["ok"] is True
    no = alice.request("spawn", name="x", argv=["/bin/true"])
    assert no["ok"] is False and no["error"]["code"] == "NOT_ALLOWED"

    root = curve_client(zctx, b, d, "root")
    root.attach("root")
    if os.access(TEST_PROC, os.X_OK):
        ans = root.request("spawn", name="w", argv=[TEST_PROC], timeout=10.0)
        assert ans["ok"] is True, ans
        assert root.request("stop", name="w", timeout=10.0)["status"] == "stopped"

    # alice and root talk to each other under CURVE
    alice.send(root.port(), [b"hi root"])
    assert root.expect(zhp.SEND).parts == [b"hi root"]

    # mallory's key is in neither directory (ZAP says no); a plain client
    # has no key at all (mechanism mismatch). Both see their handshake fail
    # and never get a BOOTSTRAP.
    assert handshake_outcome(zctx, b.frontend[0], curve_keys(d, "mallory")) \
        == zmq.EVENT_HANDSHAKE_FAILED_AUTH
    # (libzmq reports the mismatch as PROTOCOL or, when the broker hangs up
    # first, NO_DETAIL)
    assert handshake_outcome(zctx, b.frontend[0], None) in (
        zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
    assert "curve-denied" in b.stderr_text()

    # the control socket is not CURVE (0700 runtime dir) and stays admin
    ctl = client(b, via="control")
    assert ctl.request("list")["ok"] is True


@pytest.mark.parametrize("args, named", [
    (["--curve-allow", "{allow}"], "--curve-secret"),
    (["--curve-secret", "{keys}/broker.key_secret"], "--curve-allow"),
    (["--curve-secret", "{keys}/nonexistent", "--curve-allow", "{allow}"], "--curve-secret"),
    (["--curve-secret", "{keys}/pubonly/broker.key", "--curve-allow", "{allow}"],
     "--curve-secret"),
    (["--curve-secret", "{keys}/broker.key_secret", "--curve-allow", "{keys}/alice.key"],
     "--curve-allow"),
])
def test_bad_curve_flags_exit_2(keys, tmp_path, args, named):
    d, allow, admin = keys
    argv = [a.format(keys=d, allow=allow) for a in args]
    p = run_broker(argv + ["--runtime-dir", str(tmp_path / "rt"),
                           "--frontend", "tcp://127.0.0.1:0"])
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert named in p.stderr, p.stderr


def run_ctl(*args, timeout=30):
    return subprocess.run([CTL, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def test_ctl_over_curve(broker, keys):
    """zhost-ctl --connect with --curve-server/--curve-cert: an allowed key
    is served and refused admin ops (with the hint naming --curve-admin), an
    admin key may run them, a refused key and a missing key fail at once
    (exit 3, saying why), and bad key files are usage errors (exit 2)."""
    d, allow, admin = keys
    b = broker("--curve-secret", d / "broker.key_secret", "--curve-allow", allow,
               "--curve-admin", admin, "--terminate-timeout", "1s")
    fe = b.frontend[0]
    server = d / "broker.key"

    r = run_ctl("--connect", fe, "--curve-server", server, "--curve-cert", d / "alice.key",
                "--json", "ping")
    assert r.returncode == 0, r.stderr
    assert '"ok": true' in r.stdout
    r = run_ctl("--connect", fe, "--curve-server", server, "--curve-cert", d / "alice.key",
                "kill", "nobody")
    assert r.returncode == 1 and "NOT_ALLOWED" in r.stdout + r.stderr, (r.stdout, r.stderr)
    assert "--curve-admin" in r.stderr

    # root's key is in --curve-admin: admin ops pass the §8 rule
    r = run_ctl("--connect", fe, "--curve-server", server, "--curve-cert",
                d / "root.key_secret", "--json", "kill", "nobody")
    assert r.returncode == 1 and '"code": "NO_SUCH_PROC"' in r.stdout, (r.stdout, r.stderr)
    if os.access(TEST_PROC, os.X_OK):
        r = run_ctl("--connect", fe, "--curve-server", server, "--curve-cert",
                    d / "root.key", "spawn", "w", "--", TEST_PROC)
        assert r.returncode == 0, r.stderr
        r = run_ctl("--connect", fe, "--curve-server", server, "--curve-cert",
                    d / "root.key", "stop", "w")
        assert r.returncode == 0, r.stderr

    # refused at the handshake: said at once, not after the 10 s timeout
    for extra, said in ((["--curve-server", server, "--curve-cert", d / "mallory.key"],
                         "refused this client's CURVE key"),
                        # libzmq says mismatch, or (the broker hung up first) nothing
                        ([], "require")):
        r = run_ctl("--connect", fe, *extra, "--timeout", "20s", "ping", timeout=15)
        assert r.returncode == 3, (r.returncode, r.stderr)
        assert said in r.stderr and "CURVE" in r.stderr, r.stderr

    # usage errors: one flag without the other, keys for the control
    # socket, a certificate without its secret
    for argv, said in ((["--connect", fe, "--curve-server", server, "ping"], "go together"),
                       (["--runtime-dir", b.runtime_dir, "--curve-server", server,
                         "--curve-cert", d / "alice.key", "ping"], "--connect"),
                       (["--connect", fe, "--curve-server", server, "--curve-cert",
                         allow / "alice.key", "ping"], "no secret key"),
                       (["--connect", fe, "--curve-server", d / "nope.key", "--curve-cert",
                         d / "alice.key", "ping"], "nope.key")):
        r = run_ctl(*argv)
        assert r.returncode == 2, (argv, r.returncode, r.stderr)
        assert said in r.stderr, (argv, r.stderr)
