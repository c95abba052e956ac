"""SIGHUP: the broker rereads its settings (flags > env > config file) and
applies what can change while it runs: log-level and the CURVE key
directories (docs/broker.md, "Reloading"; broker/zh_broker.c).

Scenarios, as an operator sees them: a new log-level in the file takes
effect and the `config` op reports it with its source; a change that needs
a restart is logged as such and not applied; a file that no longer parses
changes nothing and the broker keeps serving; a client key added to
--curve-allow may attach after SIGHUP, and one removed is disconnected
(BYE) and refused from then on; a broker key added to --curve-peers lets
links to that broker work without a restart.
"""

import os
import shutil
import subprocess
import time

import zmq
import zmq.auth

import zhp
from conftest import BUILD_DIR
from test_peers import wait_ready
from test_peers_curve import Site, curve_raw

CTL = os.path.join(BUILD_DIR, "zhost-ctl")
ECHO = os.path.join(BUILD_DIR, "zhost-echo")


def settings(c):
    answer = c.request("config")
    assert answer["ok"], answer
    return {s["key"]: (s["value"], s["source"]) for s in answer["settings"]}


def hup(b, done_count):
    """SIGHUP, then wait (bounded) for the done_count-th reload result line."""
    b.signal(1)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        text = b.stderr_text()
        if text.count("reload result=") >= done_count:
            return text
        time.sleep(0.02)
    raise AssertionError("no reload result line:\n" + b.stderr_tail())


def test_a_new_log_level_applies_and_a_restart_setting_is_named(broker, client, tmp_path):
    conf = tmp_path / "zhost.conf"
    conf.write_text("log-level = info\nheartbeat = 1s\n")
    b = broker("--config", str(conf))
    ctl = client(b, via="control")
    assert settings(ctl)["log-level"] == ("info", "file")
    conf.write_text("# now louder\nlog-level = debug\nheartbeat = 2s\n")
    text = hup(b, 1)
    assert 'reload key=log-level old=info new=debug action=applied' in text
    assert 'reload key=heartbeat old=1s new=2s action="needs a restart"' in text
    assert "reload result=done applied=1 restart_needed=1" in text
    s = settings(ctl)
    assert s["log-level"] == ("debug", "file")
    assert s["heartbeat"] == ("1s", "file")  # still the running value
    # debug lines now appear: a request to the agent is logged at debug
    before = b.stderr_text().count(" debug ")
    ctl.request("ping")
    c = client(b, "x")
    c.send("nosuch.x:1@" + b.ep, [b"lost"])
    c.expect(zhp.RETURN)
    deadline = time.monotonic() + 5
    while b.stderr_text().count(" debug ") == before:
        assert time.monotonic() < deadline, "no debug line after the reload"
        time.sleep(0.02)


def test_a_flag_still_wins_over_the_reloaded_file(broker, client, tmp_path):
    conf = tmp_path / "zhost.conf"
    conf.write_text("log-level = info\n")
    b = broker("--config", str(conf), "--log-level", "info")
    conf.write_text("log-level = debug\n")
    text = hup(b, 1)
    assert "reload key=log-level" not in text
    assert "reload result=done applied=0 restart_needed=0" in text
    assert settings(client(b, via="control"))["log-level"] == ("info", "flag")


def test_a_broken_file_changes_nothing(broker, client, tmp_path):
    conf = tmp_path / "zhost.conf"
    conf.write_text("log-level = info\n")
    b = broker("--config", str(conf))
    conf.write_text("log-level = debug\nhwm = lots\n")
    text = hup(b, 1)
    assert "reload result=refused" in text and ":2:hwm: 'lots' is not a whole number" in text
    conf.unlink()
    text = hup(b, 2)
    assert text.count("reload result=refused") == 2 and "No such file" in text
    ctl = client(b, via="control")
    assert settings(ctl)["log-level"] == ("info", "file")
    assert ctl.request("ping")["ok"]


def keygen(root, name, *extra):
    subprocess.run([CTL, "keygen", name, "--out", str(root), *extra], check=True,
                   stdout=subprocess.DEVNULL)
    return root / (name + ".key"), root / (name + ".key_secret")


def curve_client(zctx, b, secret, server_public, name):
    pub, sec = zmq.auth.load_certificate(str(secret))
    server, _ = zmq.auth.load_certificate(str(server_public))
    return zhp.Client(zctx, b.frontend[0], name=name, curve=(pub, sec, server))


def test_client_keys_added_and_removed_take_effect_on_sighup(broker, zctx, tmp_path):
    """alice is allowed at start; bob's certificate is added and alice's
    removed, then SIGHUP: alice gets BYE and cannot attach again; bob
    attaches."""
    keys = tmp_path / "keys"
    keys.mkdir()
    allow = tmp_path / "allow"
    allow.mkdir()
    server_pub, server_sec = keygen(keys, "broker")
    alice_pub, alice_sec = keygen(keys, "alice")
    bob_pub, bob_sec = keygen(keys, "bob")
    shutil.copy(alice_pub, allow / "alice.key")
    b = broker("--curve-secret", str(server_sec), "--curve-allow", str(allow))
    alice = curve_client(zctx, b, alice_sec, server_pub, "alice")
    alice.attach("alice")
    shutil.copy(bob_pub, allow / "bob.key")
    (allow / "alice.key").unlink()
    text = hup(b, 1)
    assert "curve=reloaded" in text and "revoked=1" in text, text
    bye = alice.expect(zhp.BYE, timeout=5)
    assert "revoked" in bye.body["reason"], bye
    # Her old session is gone (a SEND on it is refused as not attached),
    # and a new connection under her key fails its CURVE handshake: the
    # broker denies it and nothing ever comes back.
    alice.send(alice.port(2), [b"still here?"])
    alice.expect_error(401, timeout=5)
    again = curve_client(zctx, b, alice_sec, server_pub, "alice-again")
    again.send_frames(zhp.control(zhp.ATTACH, {"label": "alice"}))
    deadline = time.monotonic() + 5
    while "curve-denied" not in b.stderr_text():
        assert time.monotonic() < deadline, "the new handshake was not denied"
        time.sleep(0.02)
    assert again.try_recv(timeout=0.3) is None
    bob = curve_client(zctx, b, bob_sec, server_pub, "bob")
    bob.attach("bob")
    bob.send(bob.port(2), [b"to myself"])
    assert bob.expect(zhp.SEND, timeout=5).parts == [b"to myself"]


def test_a_peer_key_added_on_sighup_lets_the_link_work(broker, client, zctx, tmp_path):
    """A starts without B's certificate: a SEND for B is HOST_UNREACHABLE
    at once. B's certificate goes into A's --curve-peers and A gets
    SIGHUP: the same SEND reaches B's echo."""
    (tmp_path / "keys").mkdir()
    allow = tmp_path / "allow"
    allow.mkdir()
    alice_pub, alice_sec = keygen(tmp_path / "keys", "alice")
    shutil.copy(alice_pub, allow / "alice.key")
    a_site, b_site = Site(tmp_path, "a"), Site(tmp_path, "b")
    b_site.trust(a_site)
    b = broker(*b_site.args(allow), "--spawn", "echo=" + ECHO, frontend=(b_site.ep,))
    a = broker(*a_site.args(allow), frontend=(a_site.ep,))
    wait_ready(client(b, via="control"), "echo")
    alice = curve_client(zctx, a, alice_sec, a_site.public, "alice")
    alice.attach("alice")
    sent = alice.send("echo.echo:2@" + b.ep, [b"before"], meta={"reply": alice.port(1)})
    failure = zhp.check_return(alice.expect(zhp.RETURN, timeout=5), "HOST_UNREACHABLE", sent,
                               a.ep)
    assert "no CURVE key for that broker" in failure["reason"], failure
    a_site.trust(b_site)
    text = hup(a, 1)
    assert "curve=reloaded peers=1" in text, text
    alice.send("echo.echo:2@" + b.ep, [b"after"], meta={"reply": alice.port(1)})
    got = alice.expect(zhp.SEND, timeout=10)
    assert got.parts == [b"after"] and got.src == "echo.echo@" + b.ep, got


def test_a_peer_key_removed_on_sighup_ends_that_peers_session(broker, client, zctx, tmp_path):
    """B's HELLO'd connection on A is BYE'd when B's certificate leaves A's
    --curve-peers, and B's next HELLO is refused."""
    (tmp_path / "keys").mkdir()
    allow = tmp_path / "allow"
    allow.mkdir()
    a_site, b_site = Site(tmp_path, "a"), Site(tmp_path, "b")
    a_site.trust(b_site)
    a = broker(*a_site.args(allow), frontend=(a_site.ep,))
    raw = curve_raw(zctx, a, a_site, b_site)
    raw.send_frames(zhp.control(zhp.HELLO, {"endpoint": b_site.ep, "incarnation": 7}))
    raw.expect(zhp.WELCOME, timeout=5)
    (a_site.peers / b_site.public.name).unlink()
    text = hup(a, 1)
    assert "revoked=1" in text, text
    assert "revoked" in raw.expect(zhp.BYE, timeout=5).body["reason"]
    raw.send_frames(zhp.control(zhp.HELLO, {"endpoint": b_site.ep, "incarnation": 7}))
    raw.expect_error(403, timeout=5)


def test_a_bad_certificate_keeps_the_keys_in_use(broker, client, zctx, tmp_path):
    """A stray file in --curve-peers: SIGHUP reads the directories all or
    nothing, so it logs result=partial naming the file, the peer key in use
    stays (its HELLO is still welcomed) and nothing is revoked."""
    (tmp_path / "keys").mkdir()
    allow = tmp_path / "allow"
    allow.mkdir()
    a_site, b_site = Site(tmp_path, "a"), Site(tmp_path, "b")
    a_site.trust(b_site)
    a = broker(*a_site.args(allow), frontend=(a_site.ep,))
    raw = curve_raw(zctx, a, a_site, b_site)
    raw.send_frames(zhp.control(zhp.HELLO, {"endpoint": b_site.ep, "incarnation": 7}))
    raw.expect(zhp.WELCOME, timeout=5)
    (a_site.peers / "junk.key").write_text("not a certificate\n")
    text = hup(a, 1)
    assert "reload result=partial" in text and "junk.key" in text, text
    assert "curve=reloaded" not in text
    assert raw.try_recv(0.3) is None  # no BYE: nothing was revoked
    again = curve_raw(zctx, a, a_site, b_site)
    again.send_frames(zhp.control(zhp.HELLO, {"endpoint": b_site.ep, "incarnation": 8}))
    again.expect(zhp.WELCOME, timeout=5)
