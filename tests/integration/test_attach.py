"""Attach: ATTACH -> BOOTSTRAP on the frontend and the control socket
(docs/protocol.md §3, §6; docs/broker.md "Connections and principals")."""

import re

import pytest

import zhp

UID58 = "[1-9a-km-zA-HJ-NP-Z]+"


def test_bootstrap_fields(broker, client):
    b = broker()
    c = client(b)
    boot = c.bootstrap
    m = re.fullmatch(r"remote<(%s)>@(.+)" % UID58, boot["proc"])
    assert m, boot["proc"]
    assert zhp.uid58_decode(m.group(1)) < 2 ** 64
    assert m.group(2) == b.ep
    assert boot["host"] == b.ep
    assert boot["agent"] == "host_agent.service@" + b.ep
    assert boot["heartbeat_ms"] == 1000
    assert boot["max_msg_bytes"] == 16 * 1024 * 1024
    assert boot["hwm"] == 10000
    assert isinstance(boot["incarnation"], int) and 0 <= boot["incarnation"] < 2 ** 64


def test_label_names_the_proc(broker, client):
    b = broker()
    c = client(b, label="mylabel")
    assert re.fullmatch(r"mylabel<%s>@%s" % (UID58, re.escape(b.ep)), c.proc), c.proc


def test_each_client_gets_its_own_proc_and_one_incarnation(broker, client):
    b = broker()
    cs = [client(b), client(b), client(b, label="x"), client(b, via="control")]
    procs = [c.proc for c in cs]
    assert len(set(procs)) == len(procs), procs
    assert len({c.bootstrap["incarnation"] for c in cs}) == 1


def test_incarnation_changes_with_each_start(broker, client):
    a = client(broker()).bootstrap["incarnation"]
    b = client(broker()).bootstrap["incarnation"]
    assert a != b


def test_control_socket_attach_is_named_at_the_frontend(broker, client):
    b = broker()
    c = client(b, via="control", label="ctl")
    assert re.fullmatch(r"ctl<%s>@%s" % (UID58, re.escape(b.ep)), c.proc), c.proc
    assert c.bootstrap["agent"] == "host_agent.service@" + b.ep


def test_repeated_attach_gets_the_same_bootstrap(broker, client):
    b = broker()
    c = client(b, label="again")
    first = c.bootstrap
    c.send_frames(zhp.control(zhp.ATTACH, {"label": "again"}))
    assert c.expect(zhp.BOOTSTRAP).body == first
    # even without the label, the same routing id is the same client
    c.send_frames(zhp.control(zhp.ATTACH))
    assert c.expect(zhp.BOOTSTRAP).body == first


def test_reconnect_with_same_routing_id_keeps_proc(broker, client):
    b = broker()
    c = client(b)
    proc = c.proc
    c.close()
    again = client(b, attach=False, routing_id=c.routing_id)
    assert again.attach()["proc"] == proc
    # and it is routable under that name
    other = client(b)
    other.send(again.port(3), [b"hello"])
    msg = again.expect(zhp.SEND)
    assert msg.parts == [b"hello"]


@pytest.mark.parametrize("label", [
    "Upper", "1digitfirst", "ends-", "has.dot", "has space", "x" * 64, "a<b>", "caf\u00e9",
])
def test_invalid_label_is_error_400(broker, client, label):
    b = broker()
    c = client(b, attach=False)
    c.send_frames(zhp.control(zhp.ATTACH, {"label": label}))
    c.expect_error(400)
    # not attached: a SEND is still refused as before a handshake
    c.send_frames(zhp.encode_send("a.b:1@" + b.ep, "a.remote<2>@" + b.ep, [b"x"]))
    c.expect_error(401)


def test_longest_valid_label(broker, client):
    b = broker()
    label = "a" * 62 + "9"
    c = client(b, label=label)
    assert c.proc.startswith(label + "<")
