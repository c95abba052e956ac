"""The test client's own codec, checked against itself and against the byte
layouts of docs/protocol.md §3–§5 (no broker needed)."""

import struct

import pytest

import zhp
from zhp import F_INLINE, F_RETURN, MalformedError


EP = "tcp://127.0.0.1:7100"


def test_header_layout():
    assert zhp.header(zhp.PING) == b"ZH\x01\x20\x00\x00"
    assert zhp.header(zhp.SEND, 64, F_RETURN | F_INLINE) == b"ZH\x01\x10\x40\x03"
    assert zhp.decode_header(b"ZH\x02\x7f\x01\x02") == (2, 0x7F, 1, 2)
    for bad in (b"", b"ZH\x01", b"XH\x01\x20\x00\x00"):
        with pytest.raises(MalformedError):
            zhp.decode_header(bad)


def test_send_head_byte_layout():
    head = zhp.encode_head("a.b:1@" + EP, "c.d@" + EP, {"seq": 1}, b"xyz", 64, F_RETURN)
    d = ("a.b:1@" + EP).encode()
    s = ("c.d@" + EP).encode()
    m = zhp.pack({"seq": 1})
    expect = (b"ZH\x01\x10\x40\x03" + struct.pack(">H", len(d)) + d
              + struct.pack(">H", len(s)) + s + struct.pack(">I", len(m)) + m + b"xyz")
    assert head == expect


def test_send_roundtrip_inline_and_frames():
    parts = [b"inline\x00bytes", b"\xff" * 300, b""]
    frames = zhp.encode_send("e.w:7@" + EP, "c.me@" + EP, parts, {"seq": 9, "headers": {"k": "v"}})
    assert len(frames) == 3
    m = zhp.decode(frames)
    assert m.cmd == zhp.SEND and m.ttl == 64 and m.flags == F_RETURN | F_INLINE
    assert m.dest == "e.w:7@" + EP and m.src == "c.me@" + EP
    assert m.meta == {"seq": 9, "headers": {"k": "v"}}
    assert m.parts == parts


def test_send_roundtrip_frames_only_and_empty():
    frames = zhp.encode_send("e.w:7@" + EP, "c.me@" + EP, [b"a", b"b"], inline=False,
                             returnable=False)
    m = zhp.decode(frames)
    assert m.flags == 0 and m.head.inline is None and m.parts == [b"a", b"b"]
    assert m.meta == {} and m.head.meta_raw == b""
    # INLINE with nothing after meta is one empty part
    m = zhp.decode(zhp.encode_send("e.w:7@" + EP, "c.me@" + EP, [b""]))
    assert m.parts == [b""] and m.flags & F_INLINE
    # no parts at all
    m = zhp.decode(zhp.encode_send("e.w:7@" + EP, "c.me@" + EP, [], inline=False))
    assert m.parts == []


def test_malformed_heads_are_detected():
    good = zhp.encode_head("a.b:1@" + EP, "c.d@" + EP, {"seq": 1}, b"x")
    zhp.decode_head(good)
    with pytest.raises(MalformedError):  # D = 0
        zhp.decode_head(zhp.header(zhp.SEND, 64) + b"\x00\x00")
    with pytest.raises(MalformedError):  # D over 1024
        zhp.decode_head(zhp.encode_head("x" * 1025, "c.d@" + EP))
    with pytest.raises(MalformedError):  # truncated
        zhp.decode_head(good[:20])
    with pytest.raises(MalformedError):  # meta not a map
        zhp.decode_head(zhp.encode_head("a", "b", meta_raw=zhp.pack([1, 2])))
    with pytest.raises(MalformedError):  # bytes after meta without INLINE
        zhp.decode_head(zhp.encode_head("a", "b") + b"junk")
    # a map marker followed by garbage is a head the broker forwards: meta None
    h = zhp.decode_head(zhp.encode_head("a", "b", meta_raw=b"\x81\xc1"))
    assert h.meta is None and h.meta_raw == b"\x81\xc1"
    for marker in (0x80, 0x8F, 0xDE, 0xDF):
        assert zhp.is_map_marker(marker)
    for marker in (0x00, 0x7F, 0x90, 0xC0, 0xDD):
        assert not zhp.is_map_marker(marker)


def test_control_frames():
    assert zhp.control(zhp.PING) == [b"ZH\x01\x20\x00\x00"]
    frames = zhp.control(zhp.ATTACH, {"label": "x"})
    m = zhp.decode(frames)
    assert m.cmd == zhp.ATTACH and m.body == {"label": "x"}
    assert zhp.decode([zhp.header(zhp.PONG), b""]).body == {}
    with pytest.raises(MalformedError):
        zhp.decode([zhp.header(zhp.PONG), b"", b""])


def test_uid58():
    assert zhp.uid58_encode(0) == "1"
    assert zhp.uid58_encode(57) == "Z"
    assert zhp.uid58_encode(58) == "21"
    for n in (1, 12345, 2 ** 32, 2 ** 64 - 1):
        assert zhp.uid58_decode(zhp.uid58_encode(n)) == n
    with pytest.raises(ValueError):
        zhp.uid58_decode("0")
    with pytest.raises(ValueError):
        zhp.uid58_decode("l")


def test_labels_and_ids():
    for good in ("a", "worker", "w-1", "a_b9", "x" * 63):
        assert zhp.is_label(good), good
    for bad in ("", "1a", "a-", "A", "a.b", "x" * 64, "a b"):
        assert not zhp.is_label(bad), bad
    assert zhp.is_id("remote<3xZ9kLmN>") and zhp.is_id("<21>") and zhp.is_id("w")
    assert not zhp.is_id("remote<0>") and not zhp.is_id("remote<>")


def test_address_helpers():
    proc = "remote<3x>@" + EP
    assert zhp.proc_of("echo.remote<3x>:7@" + EP) == proc
    assert zhp.proc_of("echo.remote<3x>@" + EP) == proc
    assert zhp.proc_of(proc) == proc
    assert zhp.proc_id("a.w:1@ipc://@abs@x") == "w"
    assert zhp.split_addr("w@ipc://@abs@x") == ("w", "ipc://@abs@x")
    assert zhp.port_addr(proc, 7) == "a.remote<3x>:7@" + EP
    assert zhp.port_addr("host_agent.service@" + EP) == "host_agent.service:1@" + EP
    assert zhp.actor_addr(proc, "c") == "c.remote<3x>@" + EP
