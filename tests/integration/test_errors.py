"""ERROR answers (docs/protocol.md §3 check order, §7 codes): each code, and that
an ERROR refusing a SEND names its dest and seq."""

import os
import struct

import pytest
import zmq

import zhp
from zhp import SEND, header


def head_bytes(dest, src, meta_raw=b"", tail=b"", flags=zhp.F_RETURN, d_len=None, s_len=None,
               m_len=None):
    d, s = dest.encode(), src.encode()
    return (header(SEND, 64, flags)
            + struct.pack(">H", len(d) if d_len is None else d_len) + d
            + struct.pack(">H", len(s) if s_len is None else s_len) + s
            + struct.pack(">I", len(meta_raw) if m_len is None else m_len) + meta_raw + tail)


@pytest.fixture
def attached(broker, client):
    b = broker("--max-msg-bytes", "8192")
    return b, client(b, label="errs"), client(b, label="peer")


def test_short_header(attached):
    b, c, _ = attached
    for frame in (b"", b"Z", b"ZH\x01", b"ZH\x01\x20\x00"):
        c.send_frames([frame])
        c.expect_error(400)


def test_short_header_before_attach(broker, client):
    b = broker()
    c = client(b, attach=False)
    c.send_frames([b"ZH"])
    c.expect_error(400)


def test_bad_magic(attached):
    b, c, _ = attached
    for frame in (b"XX\x01\x20\x00\x00", b"HZ\x01\x20\x00\x00", b"zh\x01\x01\x00\x00"):
        c.send_frames([frame])
        c.expect_error(400)


def test_bad_head_lengths(attached):
    b, c, peer = attached
    dest, src = peer.port(), c.actor
    bad = {
        "D zero": head_bytes(dest, src, d_len=0),
        "D over 1024": header(SEND, 64, 1) + struct.pack(">H", 1025) + b"d" * 1025
        + struct.pack(">H", len(src)) + src.encode() + b"\0\0\0\0",
        "D past end": head_bytes(dest, src, d_len=5000),
        "S zero": head_bytes(dest, src, s_len=0),
        "S past end": head_bytes(dest, src, s_len=900),
        "M past end": head_bytes(dest, src, meta_raw=b"\x80", m_len=100),
        "no M": header(SEND, 64, 1) + struct.pack(">H", len(dest)) + dest.encode()
        + struct.pack(">H", len(src)) + src.encode(),
        "header only": header(SEND, 64, 1),
    }
    for what, frame in bad.items():
        c.send_frames([frame, b"payload"])
        msg = c.recv()
        assert msg.cmd == zhp.ERROR and msg.body["code"] == 400, (what, msg)
    assert peer.try_recv(0.1) is None


@pytest.mark.parametrize("meta_raw", [
    zhp.pack([1, 2]), zhp.pack(7), zhp.pack("str"), b"\xc0", b"\x90",
])
def test_meta_not_a_map(attached, meta_raw):
    b, c, peer = attached
    c.send_frames([head_bytes(peer.port(), c.actor, meta_raw=meta_raw)])
    c.expect_error(400)
    assert peer.try_recv(0.1) is None


def test_inline_bytes_without_inline_flag(attached):
    b, c, peer = attached
    c.send_frames([head_bytes(peer.port(), c.actor, tail=b"stray", flags=zhp.F_RETURN)])
    c.expect_error(400)
    assert peer.try_recv(0.1) is None
    # the same bytes with INLINE set are a fine SEND
    c.send_frames([head_bytes(peer.port(), c.actor, tail=b"stray",
                              flags=zhp.F_RETURN | zhp.F_INLINE)])
    assert peer.expect(zhp.SEND).parts == [b"stray"]


def test_control_command_with_extra_frames(attached):
    b, c, _ = attached
    c.send_frames([header(zhp.PING), b"", b"extra"])
    c.expect_error(400)
    c.send_frames(zhp.control(zhp.ATTACH, {"label": "errs"}) + [b"more"])
    c.expect_error(400)


def test_control_body_not_a_map(broker, client):
    b = broker()
    c = client(b, attach=False)
    c.send_frames(zhp.control(zhp.ATTACH, raw_body=zhp.pack(["label", "x"])))
    c.expect_error(400)
    c.send_frames(zhp.control(zhp.ATTACH, raw_body=b"\xc1\xc1"))
    c.expect_error(400)
    # a zero-length body is an empty map
    c.send_frames(zhp.control(zhp.ATTACH, raw_body=b""))
    assert c.expect(zhp.BOOTSTRAP).body["proc"].startswith("remote<")


@pytest.mark.parametrize("dest", [
    "nonsense", "x.y:1", "@tcp://127.0.0.1:1", "x.Y:1@{ep}", "x.y:1@", "x.y:notanumber@{ep}",
    "x..y:1@{ep}",
])
def test_bad_dest_address(attached, dest):
    b, c, peer = attached
    sent = c.send(dest.format(ep=b.ep), [b"x"], meta={"seq": 5})
    err = c.recv()
    assert err.cmd == zhp.ERROR and err.body["code"] == 400, (dest, err)
    assert peer.try_recv(0.1) is None


def test_send_before_attach_is_401_with_dest_and_seq(broker, client):
    b = broker()
    c = client(b, attach=False)
    dest = "x.somebody:1@" + b.ep
    c.send_frames(zhp.encode_send(dest, "c.remote<2>@" + b.ep, [b"early"], {"seq": 31}))
    err = c.expect_error(401)
    assert err.body.get("dest") == dest
    assert err.body.get("seq") == 31
    # a RETURN before attach too
    c.send_frames(zhp.encode_send(dest, "c.remote<2>@" + b.ep, [b"r"], cmd=zhp.RETURN))
    c.expect_error(401)


def test_spoofed_src_is_403_and_victim_gets_nothing(attached, client):
    b, mallory, victim = attached
    bystander = client(b, label="bystander")
    # claims to be the victim, writing to a third party
    dest = bystander.port(2)
    mallory.send(dest, [b"spoof"], src=victim.actor, meta={"seq": 77})
    err = mallory.expect_error(403)
    assert err.body.get("dest") == dest and err.body.get("seq") == 77
    assert bystander.try_recv(0.2) is None
    # claims to be the victim, writing to itself: the RETURN would reach the victim
    mallory.send("x.nobody:1@" + b.ep, [b"spoof"], src=victim.actor, meta={"seq": 78})
    err = mallory.expect_error(403)
    assert err.body.get("seq") == 78
    assert victim.try_recv(0.2) is None, "the victim receives nothing"
    # claims the right proc id at another endpoint
    mallory.send(dest, [b"x"], src=zhp.actor_addr(
        zhp.proc_id(mallory.proc) + "@tcp://10.1.2.3:7100", "a"))
    mallory.expect_error(403)
    # a seq that is not an integer is not echoed
    mallory.send(dest, [b"x"], src=victim.actor, meta={"seq": "nope"})
    err = mallory.expect_error(403)
    assert "seq" not in err.body


def test_ready_from_a_proc_not_spawned_is_403(broker, zctx):
    b = broker()
    s = zctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.ROUTING_ID, b"impostor")
    s.connect(b.backend)
    try:
        s.send_multipart(zhp.control(zhp.READY, {"proc": "impostor@" + b.ep, "pid": os.getpid()}))
        assert s.poll(3000), "no answer to READY"
        msg = zhp.decode(s.recv_multipart())
        assert msg.cmd == zhp.ERROR and msg.body["code"] == 403, msg
    finally:
        s.close(0)


def test_unknown_command_is_404(broker, client):
    b = broker()
    c = client(b, attach=False)
    for cmd in (0x00, 0x06, 0x13, 0x7E, 0xFF):
        c.send_frames([header(cmd)])
        msg = c.recv()
        assert msg.cmd == zhp.ERROR and msg.body["code"] == 404, (hex(cmd), msg)


def test_version_2_is_426(broker, client):
    b = broker()
    c = client(b, attach=False)
    c.send_frames([header(zhp.ATTACH, version=2)])
    c.expect_error(426)
    c.send_frames([header(0x7E, version=2)])  # version is checked before command
    c.expect_error(426)
    c.attach()
    c.send_frames([zhp.encode_head("x.y:1@" + b.ep, c.actor)[:2] + b"\x02"
                   + zhp.encode_head("x.y:1@" + b.ep, c.actor)[3:]])
    c.expect_error(426)


def test_control_command_over_max_msg_bytes_is_413(attached):
    b, c, _ = attached
    c.send_frames(zhp.control(zhp.PING, {"pad": b"p" * 9000}))
    c.expect_error(413)
    # under the limit the same command is fine
    c.send_frames(zhp.control(zhp.PING, {"pad": b"p" * 100}))
    assert c.expect(zhp.PONG)


def test_check_order(broker, client):
    """header -> version -> command -> handshake -> layout -> principal."""
    b = broker()
    c = client(b, attach=False)
    c.send_frames([b"XX\x02\x7e\x00\x00"])
    c.expect_error(400)      # magic before version
    c.send_frames([b"ZH\x02\x7e\x00\x00"])
    c.expect_error(426)      # version before command
    c.send_frames([b"ZH\x01\x7e\x00\x00"])
    c.expect_error(404)      # command before handshake
    c.send_frames([header(SEND, 64, 1) + b"\x00\x00"])
    c.expect_error(401)      # handshake before layout
    c.attach()
    c.send_frames([head_bytes("x.y:1@" + b.ep, "a.remote<2>@" + b.ep, m_len=99)])
    c.expect_error(400)      # layout before principal


def test_errors_do_not_disturb_routing(attached):
    b, c, peer = attached
    c.send_frames([b"junk"])
    c.expect_error(400)
    c.send(peer.port(), [b"still fine"])
    assert peer.expect(zhp.SEND).parts == [b"still fine"]


@pytest.mark.parametrize("cmd, code", [(zhp.BOOTSTRAP, 400), (zhp.WELCOME, 400),
                                       (zhp.STOP, 400), (zhp.READY, 403)])
def test_command_not_for_the_frontend_is_refused(attached, cmd, code):
    """docs/broker.md: only SEND, RETURN, PING, PONG, BYE, ERROR and the
    socket's handshake command are accepted; any other valid command is 400,
    but READY is 403 (docs/protocol.md §6: the broker accepts READY only from a
    proc it is spawning; others get ERROR 403)."""
    b, c, _ = attached
    c.send_frames(zhp.control(cmd, {"proc": c.proc, "pid": 1}))
    c.expect_error(code)


def test_hello_on_control_and_attach_on_backend_are_400(broker, client, zctx):
    b = broker()
    ctl = client(b, via="control", attach=False)
    ctl.send_frames(zhp.control(zhp.HELLO, {"endpoint": "tcp://127.0.0.1:9", "incarnation": 1}))
    ctl.expect_error(400)
    back = zhp.Client(zctx, b.backend, routing_id=b"someproc", name="backend")
    try:
        back.send_frames(zhp.control(zhp.ATTACH))
        back.expect_error(400)
    finally:
        back.close()
