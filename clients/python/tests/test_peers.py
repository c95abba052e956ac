"""The Python client across brokers (docs/broker.md, "Peer links"): nothing
in the client changes; an address at another broker's endpoint is reached
through the brokers' link. alice attaches to A, bob to B; alice's request
to bob's actor is answered, and a missing proc on B is NO_SUCH_PROC from B,
not HOST_UNREACHABLE.
"""

import threading

import pytest

import zhost


def test_request_reply_across_two_brokers(broker, clients):
    a, b = broker(), broker()
    alice = clients(a.frontend, label="alice")
    bob = clients(b.frontend, label="bob")

    @bob.actor("upper").port(1).on_message
    def upper(msg):
        msg.respond(*[p.upper() for p in msg.parts])

    stop = threading.Event()
    t = threading.Thread(target=lambda: [bob.poll(0.05) for _ in iter(stop.is_set, True)])
    t.start()
    try:
        dest = bob.actor("upper").port(1)
        assert str(dest).endswith("@" + b.ep)
        assert alice.request(dest, b"abc", timeout=10) == [b"ABC"]
        msg = alice.request(dest, b"x" * 6000, b"\0frame", timeout=5, message=True)
        assert msg.parts == [b"X" * 6000, b"\0FRAME"]
        assert msg.src == "upper.%s@%s" % (bob.id, b.ep)
    finally:
        stop.set()
        t.join(5)


def test_missing_proc_on_the_other_broker_is_no_such_proc(broker, clients):
    a, b = broker(), broker()
    alice = clients(a.frontend)
    dest = "echo.nobody:1@" + b.ep
    with pytest.raises(zhost.Undeliverable) as info:
        alice.request(dest, b"hi", timeout=10)
    assert info.value.code == "NO_SUCH_PROC" and info.value.at == b.ep
