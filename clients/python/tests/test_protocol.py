"""zhost.protocol without a broker: addresses (docs/protocol.md §2, docs/protocol.md
§2) and frames (§3-§6), checked against the worked examples of docs/protocol.md."""

import pytest

from zhost import protocol as P
from zhost.protocol import AddressError, parse_address, uid58_decode, uid58_encode


@pytest.mark.parametrize("value,text", [
    (0, "1"), (1, "2"), (57, "Z"), (58, "21"), (3364, "211"),
    (0xDEADBEEF, "6G8Bpn"), (5633604528062, "3xZ9kLmN"),
    ((1 << 64) - 1, "JPwcyDCgEup"),
])
def test_uid58_table(value, text):
    assert uid58_encode(value) == text
    assert uid58_decode(text) == value


def test_uid58_alphabet_and_canonical_spelling():
    assert P.BASE58 == "123456789abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ"
    assert len(set(P.BASE58)) == 58 and not set("0OIl") & set(P.BASE58)
    for bad in ("", "12", "0", "l", "JPwcyDCgEuq", "JPwcyDCgEupp"):
        with pytest.raises(AddressError):
            uid58_decode(bad)
    for bad in (-1, 1 << 64, "1"):
        with pytest.raises(AddressError):
            uid58_encode(bad)


@pytest.mark.parametrize("text,kind,actor,proc,port,endpoint", [
    ("worker@tcp://10.0.0.5:7100", "proc", None, "worker", None, "tcp://10.0.0.5:7100"),
    ("<3xZ9kLmN>@tcp://10.0.0.5:7100", "proc", None, "<3xZ9kLmN>", None, "tcp://10.0.0.5:7100"),
    ("remote<3xZ9kLmN>@tcp://host-a:7100", "proc", None, "remote<3xZ9kLmN>", None,
     "tcp://host-a:7100"),
    ("echo.worker@tcp://10.0.0.5:7100", "actor", "echo", "worker", None, "tcp://10.0.0.5:7100"),
    ("echo.worker:7@tcp://10.0.0.5:7100", "port", "echo", "worker", 7, "tcp://10.0.0.5:7100"),
    ("host_agent.service:1@tcp://host-a:7100", "port", "host_agent", "service", 1,
     "tcp://host-a:7100"),
    ("echo.e1:0@tcp://127.0.0.1:7100", "port", "echo", "e1", 0, "tcp://127.0.0.1:7100"),
    ("a.b@ipc://@zhost@x", "actor", "a", "b", None, "ipc://@zhost@x"),
    ("a.w:18446744073709551615@inproc://x", "port", "a", "w", (1 << 64) - 1, "inproc://x"),
])
def test_valid_addresses_parse_and_print_back(text, kind, actor, proc, port, endpoint):
    a = parse_address(text)
    assert (a.kind, a.actor, a.proc, a.port, a.endpoint) == (kind, actor, proc, port, endpoint)
    assert str(a) == text


@pytest.mark.parametrize("text", [
    "Worker@tcp://h:1", "1worker@tcp://h:1", "worker-@tcp://h:1", "w<12>@tcp://h:1",
    "w<0>@tcp://h:1", "w<>@tcp://h:1", "w<2>x@tcp://h:1", "a.w:007@tcp://h:1",
    "a.b.c@tcp://h:1", "worker", "a.w@udp://h:1", "w@tcp://h", "w@tcp://h:0",
    "w@tcp://h:070", "w@", "a" * 64 + "@tcp://h:1", "w:1@tcp://h:1",
    "a.w:18446744073709551616@tcp://h:1", "w@tcp://a:b:1",
])
def test_refused_addresses(text):
    with pytest.raises(AddressError):
        parse_address(text)


def test_address_helpers_and_kinds():
    assert P.actor_address("echo", "e1@tcp://h:1") == "echo.e1@tcp://h:1"
    assert P.port_address("echo.e1@tcp://h:1", 2) == "echo.e1:2@tcp://h:1"
    assert P.make_id("worker", 1) == "worker<2>"
    assert P.make_id(None, 0) == "<1>"
    with pytest.raises(AddressError):
        parse_address("echo.e1@tcp://h:1", "port")
    assert parse_address("echo.e1:3@tcp://h:1").proc_address == "e1@tcp://h:1"


# docs/protocol.md §5.2: the 89-byte SEND
SEND_EXAMPLE = bytes.fromhex("".join("""
5a 48 01 10 40 03 00 1e 65 63 68 6f 2e 65 31 3a
31 40 74 63 70 3a 2f 2f 31 32 37 2e 30 2e 30 2e
31 3a 37 31 30 30 00 25 63 6c 69 65 6e 74 2e 72
65 6d 6f 74 65 3c 32 3e 40 74 63 70 3a 2f 2f 31
32 37 2e 30 2e 30 2e 31 3a 37 31 30 30 00 00 00
06 81 a3 73 65 71 01 68 69""".split()))

# docs/protocol.md §6.2: the 200-byte RETURN
RETURN_EXAMPLE = bytes.fromhex("".join("""
5a 48 01 11 40 02 00 25 63 6c 69 65 6e 74 2e 72
65 6d 6f 74 65 3c 32 3e 40 74 63 70 3a 2f 2f 31
32 37 2e 30 2e 30 2e 31 3a 37 31 30 30 00 1c 73
65 72 76 69 63 65 40 74 63 70 3a 2f 2f 31 32 37
2e 30 2e 30 2e 31 3a 37 31 30 30 00 00 00 77 83
a8 66 61 69 6c 75 72 65 73 91 83 a4 63 6f 64 65
ac 4e 4f 5f 53 55 43 48 5f 50 52 4f 43 a6 72 65
61 73 6f 6e aa 6e 6f 20 70 72 6f 63 20 65 31 a2
61 74 b4 74 63 70 3a 2f 2f 31 32 37 2e 30 2e 30
2e 31 3a 37 31 30 30 a4 64 65 73 74 be 65 63 68
6f 2e 65 31 3a 31 40 74 63 70 3a 2f 2f 31 32 37
2e 30 2e 30 2e 31 3a 37 31 30 30 a4 6d 65 74 61
81 a3 73 65 71 01 68 69""".split()))


def test_send_worked_example_bytes():
    frames = P.encode_send("echo.e1:1@tcp://127.0.0.1:7100",
                           "client.remote<2>@tcp://127.0.0.1:7100", [b"hi"], {"seq": 1})
    assert frames == [SEND_EXAMPLE] and len(SEND_EXAMPLE) == 89
    msg = P.decode(frames)
    assert (msg.name, msg.ttl, msg.flags, msg.parts, msg.seq) == ("SEND", 64, 3, [b"hi"], 1)


def test_return_worked_example_decodes_and_reencodes():
    assert len(RETURN_EXAMPLE) == 200
    msg = P.decode([RETURN_EXAMPLE])
    assert msg.name == "RETURN" and msg.flags == P.F_INLINE and msg.parts == [b"hi"]
    assert msg.meta["failures"][0]["code"] == "NO_SUCH_PROC"
    assert msg.meta["meta"] == {"seq": 1}
    original = P.decode([SEND_EXAMPLE])
    again = P.encode_return(original, "NO_SUCH_PROC", "no proc e1", "tcp://127.0.0.1:7100",
                            "service@tcp://127.0.0.1:7100")
    assert again == [RETURN_EXAMPLE]


def test_parts_inline_and_frames():
    dest, src = "a.b:1@tcp://h:1", "c.d@tcp://h:1"
    big = b"\0" * 5000
    cases = [
        ([], 1, None),                         # no part: INLINE clear, no frame
        ([b""], 1, b""),                       # one empty part inline
        ([b"x", b"y\0z"], 2, b"x"),            # first inline, the rest as frames
        ([big, b"t"], 3, None),                # a first part over 4 KiB is a frame
        ([b"a" * 4096], 1, b"a" * 4096),       # exactly 4 KiB still inline
    ]
    for parts, nframes, inline in cases:
        frames = P.encode_send(dest, src, parts, undeliverable=False)
        assert len(frames) == nframes, parts
        msg = P.decode(frames)
        assert msg.parts == parts and msg.inline == inline
        assert not msg.returnable and bool(msg.flags & P.F_INLINE) == (inline is not None)


def test_control_frames_and_malformed_heads():
    assert P.encode_control(P.PING) == [b"ZH\x01\x20\x00\x00"]
    attach = P.encode_control(P.ATTACH, {"pid": 4242, "lang": "python"})
    assert attach[1] == bytes.fromhex("82a3706964cd1092a46c616e67a6707974686f6e")
    assert P.decode(attach).body == {"pid": 4242, "lang": "python"}
    head = SEND_EXAMPLE
    for bad in (head[:5], b"XX" + head[2:], head[:9],
                head[:5] + b"\x00" + head[6:],               # trailing bytes, INLINE clear
                head[:77] + b"\x00\x00\x00\x01\x01" + head[82:]):  # meta not a map
        with pytest.raises(P.ProtocolError):
            P.decode([bad])


# --- BATCH (§14) -------------------------------------------------------------

def _batch_of(*elements):
    return b"ZH\x01\x12\x00\x00" + b"".join(len(e).to_bytes(4, "big") + e for e in elements)


def test_batch_encode_decode_round_trip():
    dest, src = "echo.e1:2@tcp://h:1", "client.c<2>@tcp://h:1"
    a = P.encode_send(dest, src, [b"one"], {"seq": 1})
    b = P.encode_send(dest, src, [b""], undeliverable=False, ttl=3)
    orig = P.decode(P.encode_send(src.replace("@", ":1@"), dest, [b"x"], {"seq": 7}))
    r = P.encode_return(orig, "NO_SUCH_PORT", "gone", "c<2>@tcp://h:1", dest)
    frames = P.encode_batch([a, b[0], r])            # one-frame lists or bytes
    assert frames == [_batch_of(a[0], b[0], r[0])]
    assert P.batch_size([a, b, r]) == len(frames[0]) == 6 + 12 + len(a[0] + b[0] + r[0])
    msg = P.decode(frames)
    assert (msg.cmd, msg.name, msg.ttl, msg.flags) == (P.BATCH, "BATCH", 0, 0)
    assert msg.body is None and msg.parts is None and len(msg.elements) == 3
    for el, lone in zip(msg.elements, (a, b, r)):
        alone = P.decode(lone)                        # the same as each arriving alone
        assert el.frames == lone
        assert (el.cmd, el.ttl, el.flags, el.dest, el.src, el.meta, el.parts) == (
            alone.cmd, alone.ttl, alone.flags, alone.dest, alone.src, alone.meta, alone.parts)
    assert msg.elements[0].seq == 1 and msg.elements[1].ttl == 3
    assert msg.elements[2].cmd == P.RETURN and msg.elements[2].meta["failures"][0]["code"] == \
        "NO_SUCH_PORT"
    assert [m.parts for m in P.batch_elements(frames[0])] == [[b"one"], [b""], [b"x"]]


def test_batch_encoder_refuses_what_is_never_batched():
    dest, src = "a.b:1@tcp://h:1", "c.d@tcp://h:1"
    with pytest.raises(ValueError):
        P.encode_batch([])                                          # no elements
    with pytest.raises(ValueError):
        P.encode_batch([P.encode_send(dest, src, [b"x", b"frame"])])  # payload frames
    with pytest.raises(ValueError):
        P.encode_batch([P.encode_control(P.PING)[0]])                 # a control command
    with pytest.raises(ValueError):
        P.encode_batch([b"ZH"])                                     # not a message
    with pytest.raises(ValueError):
        P.encode_batch([_batch_of(P.encode_send(dest, src, [b"x"])[0])])  # no nesting


def test_batch_container_faults():
    el = P.encode_send("a.b:1@tcp://h:1", "c.d@tcp://h:1", [b"x"])[0]
    good = _batch_of(el, el)
    assert len(P.decode([good]).elements) == 2
    cases = [                                       # (frame, elements before the fault)
        (b"ZH\x01\x12\x00\x00", 0),                 # no elements
        (_batch_of(el) + b"\x00\x00\x00\x00", 1),   # a length of 0
        (_batch_of(el) + b"\x00\x00\x01\x00" + el, 1),   # a length past the frame
        (_batch_of(el) + b"\x00\x00", 1),           # bytes left over
        (good[:-1], 1),                             # the last element cut short
    ]
    for frame, before in cases:
        with pytest.raises(P.ProtocolError):
            P.decode([frame])
        got = []
        with pytest.raises(P.ProtocolError):
            for item in P.batch_elements(frame):
                got.append(item)
        assert len(got) == before and all(isinstance(m, P.Message) for m in got), frame
    for bad in (b"ZH\x01\x12\x40\x00" + good[6:], b"ZH\x01\x12\x00\x02" + good[6:],
                b"ZH\x02\x12\x00\x00" + good[6:]):   # ttl, flags, version
        with pytest.raises(P.ProtocolError):
            P.decode([bad])
        with pytest.raises(P.ProtocolError):
            list(P.batch_walk(bad))
    with pytest.raises(P.ProtocolError):
        P.decode([good, b"payload"])                # a BATCH is one frame


def test_batch_element_faults_are_per_element():
    el = P.encode_send("a.b:1@tcp://h:1", "c.d@tcp://h:1", [b"x"])[0]
    ping = P.encode_control(P.PING)[0]
    frame = _batch_of(el, ping, el[:12], b"ZH\x01\x7f\x00\x00", el)
    with pytest.raises(P.ProtocolError):
        P.decode([frame])                           # decode() refuses it whole
    items = list(P.batch_elements(frame))           # the walk goes on past each
    assert [type(i).__name__ for i in items] == [
        "Message", "ProtocolError", "ProtocolError", "ProtocolError", "Message"]
    assert "element 2" in str(items[1]) and "element 4" in str(items[3])
    with pytest.raises(P.ProtocolError):
        P.decode_element(ping)
    assert P.decode_element(el).parts == [b"x"]


def test_batch_body_fields():
    attach = P.encode_control(P.ATTACH, {"lang": "python", "batch": True})
    assert attach[1] == bytes.fromhex("82a46c616e67a6707974686f6ea56261746368c3")
    boot = P.decode(P.encode_control(P.BOOTSTRAP, {
        "proc": "c<2>@tcp://h:1", "liveness": 3, "batch": True, "batch_max_bytes": 262144}))
    assert boot.body["batch"] is True and boot.body["batch_max_bytes"] == \
        P.DEFAULT_BATCH_MAX_BYTES and boot.body["liveness"] == P.DEFAULT_LIVENESS
    ready = P.decode(P.encode_control(P.READY, {"proc": "w@tcp://h:1", "pid": 1, "batch": True}))
    assert ready.body == {"proc": "w@tcp://h:1", "pid": 1, "batch": True}
