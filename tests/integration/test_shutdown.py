"""SIGTERM / SIGINT (docs/broker.md "Liveness and close", docs/design.md
"Shutdown"): BYE {"reason": "shutdown"} to every connection, frontends
unbound, exit 0 within --linger plus a margin."""

import os
import signal
import time

import pytest

import zhp

LINGER = 0.5
MARGIN = 3.0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_sends_bye_shutdown_and_exits_0(broker, client, sig):
    b = broker("--linger", "500ms")
    clients = [client(b, label="front1"), client(b, label="front2"),
               client(b, via="control", label="ctl")]
    t0 = time.monotonic()
    deadline = t0 + LINGER + MARGIN
    b.signal(sig)
    byes = {}
    for c in clients:
        try:
            bye = c.wait_for(lambda m: m.cmd == zhp.BYE,
                             timeout=max(0.05, deadline - time.monotonic()))
            byes[c.name] = bye.body.get("reason")
        except zhp.Timeout:
            byes[c.name] = None
    rc = b.wait(max(0.05, deadline - time.monotonic()))
    b.expect_exit = rc
    assert rc is not None, "still running %.1fs after %s" % (LINGER + MARGIN,
                                                           signal.Signals(sig).name)
    assert rc == 0, "exit %r after %s" % (rc, signal.Signals(sig).name)
    assert byes == {c.name: "shutdown" for c in clients}, "BYE reasons received: %r" % byes


def test_linger_phase_answers(broker, client, zctx):
    """After BYE shutdown, for at most --linger (kept open by traffic): PING
    is answered with PONG, BYE with BYE, a new ATTACH with ERROR 503, a
    flagged SEND with RETURN SHUTDOWN."""
    b = broker("--linger", "2s")
    c = client(b, via="control")
    talker = client(b, label="talker")
    b.signal(signal.SIGTERM)
    c.wait_for(lambda m: m.cmd == zhp.BYE, timeout=LINGER + MARGIN)
    talker.wait_for(lambda m: m.cmd == zhp.BYE, timeout=LINGER + MARGIN)
    late = zhp.Client(zctx, b.frontend[0], name="late-frontend")
    late_ctl = zhp.Client(zctx, b.control, name="late-control")
    try:
        late.send_frames(zhp.control(zhp.ATTACH))
        late_ctl.send_frames(zhp.control(zhp.ATTACH))
        pongs = 0
        answers = {}
        t_end = time.monotonic() + 0.4
        while time.monotonic() < t_end:
            c.send_frames(zhp.control(zhp.PING))  # keeps the linger phase open
            msg = c.try_recv(0.01, auto_pong=False)
            if msg is not None:
                assert msg.cmd == zhp.PONG, "PING while lingering: %r" % msg
                pongs += 1
            for x in (late, late_ctl):
                msg = x.try_recv(0)
                if msg is not None:
                    answers[x.name] = msg
        assert pongs > 0, "no PONG while lingering"
        for name, msg in sorted(answers.items()):
            assert msg.cmd == zhp.ERROR and msg.body["code"] == 503, (name, msg)
        assert "late-control" in answers, "no ERROR 503 to an ATTACH while lingering"
        sent = c.send(c.port(), [b"too late"], meta={"seq": 9})
        zhp.check_return(c.wait_for(lambda m: m.cmd == zhp.RETURN, 1.0),
                         "SHUTDOWN", sent, b.ep)
        body, _ = c.bye("me too", timeout=1.0)
    finally:
        late.close()
        late_ctl.close()
    b.expect_exit = b.wait(2.0 + MARGIN)
    assert b.expect_exit == 0


def test_sigterm_with_idle_broker_exits_promptly(broker):
    b = broker("--linger", "500ms")
    t0 = time.monotonic()
    b.signal(signal.SIGTERM)
    b.expect_exit = b.wait(LINGER + MARGIN)
    assert b.expect_exit == 0
    assert time.monotonic() - t0 < LINGER + MARGIN


def test_runtime_dir_reusable_after_clean_exit(broker, client, tmp_path):
    b = broker("--linger", "200ms")
    b.signal(signal.SIGTERM)
    b.expect_exit = b.wait(5.0)
    assert b.expect_exit == 0
    again = broker(runtime_dir=tmp_path / "rt")
    assert client(again, via="control").request("ping")["ok"] is True


def test_messages_before_sigterm_are_delivered(broker, client):
    """No message the broker accepted is lost: a burst sent before SIGTERM
    reaches the receiver (or comes back), then BYE."""
    b = broker("--linger", "2s", "--hwm", "100000")
    a = client(b, via="control")
    r = client(b, rcvhwm=0)
    n = 2000
    for i in range(n):
        a.send(r.port(), [b"x"], meta={"seq": i})
    # let the broker take the burst in, then stop it
    assert a.request("ping", timeout=5.0)["ok"] is True
    b.signal(signal.SIGTERM)
    got = set()
    bye = None
    deadline = time.monotonic() + 2.0 + MARGIN
    while bye is None and time.monotonic() < deadline:
        msg = r.try_recv(0.1)
        if msg is None:
            continue
        if msg.cmd == zhp.SEND:
            got.add(msg.meta["seq"])
        elif msg.cmd == zhp.BYE:
            bye = msg
    assert len(got) == n, "%d of %d delivered before BYE" % (len(got), n)
    assert bye is not None and bye.body.get("reason") == "shutdown"
    b.expect_exit = b.wait(2.0 + MARGIN)
    assert b.expect_exit == 0
