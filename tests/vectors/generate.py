#!/usr/bin/python3
"""tests/vectors/generate.py — writes addresses.json and frames.json.

The JSON files are the source of truth and are committed; this script is
only how they were written, kept so that adding a vector is one entry
here rather than hand-computed hex. Run it from anywhere:

    /usr/bin/python3 tests/vectors/generate.py      # rewrites both files

then run the readers (ctest -R 'vectors|python-client|node-client') to check
the new vectors against the codecs. Each entry states what zhost's broker
does (common/zh_proto.c, common/zh_addr.c); the C reader
(tests/unit/test_vectors.c) checks that, so a wrong expectation here fails
there. Needs only python3-msgpack (msgpack.packb, for meta and bodies).
"""

import json
import os
import struct

import msgpack

HERE = os.path.dirname(os.path.abspath(__file__))
EP = "tcp://127.0.0.1:7100"
DEST = "echo.e1:1@" + EP
SRC = "client.remote<2>@" + EP
U64_MAX = (1 << 64) - 1

ERR = {400: "malformed", 401: "handshake required", 403: "forbidden",
       404: "unknown command", 413: "too large", 426: "unsupported version",
       503: "shutting down"}
CMD = {"ATTACH": 0x01, "BOOTSTRAP": 0x02, "READY": 0x03, "HELLO": 0x04,
       "WELCOME": 0x05, "SEND": 0x10, "RETURN": 0x11, "BATCH": 0x12, "PING": 0x20, "PONG": 0x21,
       "BYE": 0x22, "ERROR": 0x23, "STOP": 0x30}
NAME = {v: k for k, v in CMD.items()}


def pack(obj):
    return msgpack.packb(obj, use_bin_type=True)


def jsonable(v):
    """A decoded msgpack value as JSON: ints beyond +-2**53 as {"$int": "..."}."""
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, int):
        return v if -(1 << 53) <= v <= (1 << 53) else {"$int": str(v)}
    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    if isinstance(v, list):
        return [jsonable(x) for x in v]
    raise TypeError(v)


def hdr(cmd, ttl=0, flags=0, version=1, magic=b"ZH"):
    return magic + bytes((version, cmd, ttl, flags))


def head(cmd, dest, src, meta=b"", inline=None, ttl=64, flags=None, d_len=None, s_len=None,
         m_len=None):
    d = dest.encode() if isinstance(dest, str) else dest
    s = src.encode() if isinstance(src, str) else src
    if flags is None:
        flags = 0x01 | (0x02 if inline is not None else 0)
    out = hdr(cmd, ttl, flags)
    out += struct.pack(">H", len(d) if d_len is None else d_len) + d
    out += struct.pack(">H", len(s) if s_len is None else s_len) + s
    out += struct.pack(">I", len(meta) if m_len is None else m_len) + meta
    if inline is not None:
        out += inline
    return out


FRAMES = []


def ok_control(id_, desc, cmd, body=None, body_bytes=None, extra=None, canonical=True,
               unknown=()):
    frames = [hdr(CMD[cmd])]
    if body_bytes is None and body is not None:
        body_bytes = pack(body)
    if body_bytes is not None:
        frames.append(body_bytes)
    if extra is not None:
        frames.append(extra)
    decoded = msgpack.unpackb(body_bytes, raw=False) if body_bytes else {}
    v = {"id": id_, "description": desc, "frames": [f.hex() for f in frames],
         "decode": {"command": CMD[cmd], "name": cmd, "ttl": 0, "flags": 0,
                    "body": jsonable(decoded)}}
    if unknown:
        v["decode"]["unknown_keys"] = list(unknown)
    v["canonical"] = canonical
    FRAMES.append(v)


def ok_head(id_, desc, cmd, dest, src, meta=None, meta_bytes=None, inline=None, frames=(),
            ttl=64, flags=None, canonical=True):
    if meta_bytes is None:
        meta_bytes = pack(meta) if meta else b""
    h = head(CMD[cmd], dest, src, meta_bytes, inline, ttl, flags)
    fl = h[5]
    all_frames = [h] + list(frames)
    try:
        m = msgpack.unpackb(meta_bytes, raw=False) if meta_bytes else {}
        m = jsonable(m) if isinstance(m, dict) else None
    except Exception:  # noqa: BLE001 - meta the broker forwards unread
        m = None
    parts = ([inline] if fl & 0x02 else []) + list(frames)
    FRAMES.append({"id": id_, "description": desc, "frames": [f.hex() for f in all_frames],
                   "decode": {"command": CMD[cmd], "name": cmd, "ttl": ttl, "flags": fl,
                              "dest": dest, "src": src, "meta_hex": meta_bytes.hex(),
                              "meta": m, "parts": [p.hex() for p in parts]},
                   "canonical": canonical})


def bad(id_, desc, frames, code, check, max_msg_bytes=None, elements_before=None):
    v = {"id": id_, "description": desc, "frames": [f.hex() for f in frames],
         "error": {"code": code, "name": ERR[code], "check": check}}
    if max_msg_bytes is not None:
        v["limits"] = {"max_msg_bytes": max_msg_bytes}
    if elements_before is not None:
        v["error"]["elements_before"] = elements_before
    FRAMES.append(v)


def batch(*elements, tail=b"", ttl=0, flags=0):
    """A BATCH frame (§14): [header 0x12][u32 L][element]... then tail."""
    out = hdr(0x12, ttl, flags)
    for e in elements:
        out += struct.pack(">I", len(e)) + e
    return out + tail


def element(cmd, dest, src, meta=None, inline=b"", ttl=64, flags=0x02):
    """A one-frame SEND or RETURN (INLINE set) and its decode."""
    meta_bytes = pack(meta) if meta else b""
    h = head(CMD[cmd], dest, src, meta_bytes, inline, ttl, flags)
    return h, {"command": CMD[cmd], "name": cmd, "ttl": ttl, "flags": h[5], "dest": dest,
               "src": src, "meta_hex": meta_bytes.hex(), "meta": jsonable(meta or {}),
               "parts": [inline.hex()] if h[5] & 0x02 else []}


def ok_batch(id_, desc, *elems):
    FRAMES.append({"id": id_, "description": desc,
                   "frames": [batch(*[e[0] for e in elems]).hex()],
                   "decode": {"command": 0x12, "name": "BATCH", "ttl": 0, "flags": 0,
                              "elements": [e[1] for e in elems]},
                   "canonical": True})


def batch_vectors():
    e1 = element("SEND", DEST, SRC, {"seq": 1, "reply": "client.remote<2>:9@" + EP}, b"one")
    e2 = element("SEND", "echo.e2:3@" + EP, SRC, None, b"", ttl=3)
    e3 = element("RETURN", SRC, "service@" + EP,
                 {"failures": [{"code": "NO_SUCH_PROC", "reason": "no proc of that id",
                                "at": EP}], "dest": DEST, "meta": {}}, b"lost", flags=0x02)
    ok_batch("batch-one-send", "a BATCH of one SEND (§14): [header 0x12 0 0][u32 L][element]", e1)
    ok_batch("batch-send-send-return", "three elements, SENDs and a RETURN, kept in order; each "
             "is byte for byte a one-frame message with its own ttl and flags", e1, e2, e3)
    ok_batch("batch-unflagged-empty-part", "an element without RETURN_UNDELIVERABLE and with an "
             "empty inline part", element("SEND", DEST, SRC, None, b"", flags=0x02))
    good = e1[0]
    bad("batch-no-elements", "a BATCH holding nothing", [batch()], 400, "batch",
        elements_before=0)
    bad("batch-length-zero", "an element length of 0, after a good element",
        [batch(good, tail=b"\x00\x00\x00\x00" + good)], 400, "batch", elements_before=1)
    bad("batch-length-past-end", "a length that runs past the frame",
        [batch(good, tail=struct.pack(">I", 500) + b"ZH")], 400, "batch", elements_before=1)
    bad("batch-bytes-left-over", "three bytes after the last element: too few for a length",
        [batch(good, tail=b"\x00\x00\x01")], 400, "batch", elements_before=1)
    bad("batch-nonzero-ttl", "the BATCH header's ttl must be 0", [batch(good, ttl=64)], 400,
        "header")
    bad("batch-nonzero-flags", "the BATCH header's flags must be 0", [batch(good, flags=2)], 400,
        "header")
    bad("batch-two-frames", "a BATCH is one frame: nothing follows it",
        [batch(good), b"payload"], 400, "layout")
    bad("batch-version-2", "the version is checked first, as for any frame",
        [hdr(0x12, version=2) + struct.pack(">I", len(good)) + good], 426, "version")
    bad("batch-element-control", "an element that is a PING, not a SEND or RETURN: the broker "
        "answers ERROR 400 for that element alone and goes on with the next",
        [batch(good, hdr(0x20), good)], 400, "batch-element")
    bad("batch-element-unknown-command", "an element of an unknown command: ERROR 404 for it "
        "alone", [batch(hdr(0x7f), good)], 404, "batch-element")
    bad("batch-element-bad-dest", "an element whose dest is not a port address: ERROR 400 for "
        "it alone", [batch(element("SEND", "nope", SRC, None, b"x")[0])], 400, "batch-element")
    bad("batch-element-truncated-head", "an element whose head runs past its own length",
        [batch(good[:12])], 400, "batch-element")


def frames_vectors():
    # --- control commands -------------------------------------------------
    ok_control("attach-empty", "ATTACH with no body frame: the empty map", "ATTACH")
    ok_control("attach-pid-lang", "docs/protocol.md §4's example: ATTACH {pid: 4242, lang: python}",
               "ATTACH", {"pid": 4242, "lang": "python"})
    ok_control("attach-label-pid-lang", "ATTACH with every field, in the C codec's order",
               "ATTACH", {"label": "mylabel", "pid": 4242, "lang": "python"})
    ok_control("attach-zero-length-body", "ATTACH with a zero-length body frame: the empty map",
               "ATTACH", body_bytes=b"", canonical=False)
    ok_control("attach-unknown-keys-ignored", "unknown keys, even of other types, are ignored",
               "ATTACH", {"pid": 7, "future": [1, 2, {"x": None}], "lang": "c"},
               canonical=False, unknown=["future"])
    ok_control("attach-negative-pid", "pid is any msgpack integer (int64)", "ATTACH",
               {"pid": -1})
    ok_control("bootstrap-full", "BOOTSTRAP with every required field", "BOOTSTRAP",
               {"proc": "remote<3xZ9kLmN>@" + EP, "host": EP,
                "agent": "host_agent.service@" + EP, "heartbeat_ms": 1000,
                "max_msg_bytes": 16777216, "hwm": 1000, "incarnation": 5633604528062})
    ok_control("bootstrap-max-incarnation", "incarnation is a u64: 2**64-1 fits", "BOOTSTRAP",
               {"proc": "remote<2>@" + EP, "host": EP, "agent": "host_agent.service@" + EP,
                "heartbeat_ms": 0, "max_msg_bytes": 0, "hwm": 0, "incarnation": U64_MAX})
    ok_control("bootstrap-batch-fields", "BOOTSTRAP with liveness and the batch fields (§14), "
               "in the C codec's order", "BOOTSTRAP",
               {"proc": "remote<2>@" + EP, "host": EP, "agent": "host_agent.service@" + EP,
                "heartbeat_ms": 1000, "max_msg_bytes": 16777216, "hwm": 1000,
                "incarnation": 1, "liveness": 3, "batch": True, "batch_max_bytes": 262144})
    ok_control("attach-batch", "ATTACH asking for BATCH (§14)", "ATTACH",
               {"lang": "c", "batch": True})
    ok_control("ready-batch", "READY of a spawned proc that takes BATCH", "READY",
               {"proc": "worker@" + EP, "batch": True})
    ok_control("welcome-batch", "WELCOME saying the broker takes BATCH up to 256 KiB",
               "WELCOME", {"incarnation": 9, "endpoint": "tcp://host-b:7100", "batch": True,
                           "batch_max_bytes": 262144})
    ok_control("ready-proc-pid", "READY from a spawned proc (pid first: the C codec's order)", "READY",
               {"pid": 31337, "proc": "worker@" + EP})
    ok_control("ready-proc-only", "READY needs only proc", "READY", {"proc": "worker<3xZ9kLmN>@" + EP})
    ok_control("hello", "HELLO between brokers", "HELLO",
               {"incarnation": 42, "endpoint": "tcp://host-a:7100"})
    ok_control("welcome", "WELCOME answering HELLO, in the C codec's order", "WELCOME",
               {"incarnation": 7, "endpoint": "tcp://host-b:7100"})
    ok_control("ping", "PING: a header and nothing else", "PING")
    ok_control("ping-empty-map", "PING with an explicit empty map body", "PING", body_bytes=b"\x80",
               canonical=False)
    ok_control("pong", "PONG", "PONG")
    ok_control("bye-reason", "BYE with a reason", "BYE", {"reason": "shutdown"})
    ok_control("bye-empty", "BYE without a body (reason is optional)", "BYE")
    ok_control("bye-unicode-reason", "strings are UTF-8: a reason in several scripts", "BYE",
               {"reason": "au revoir \u2014 \u0434\u043e \u0441\u0432\u0438\u0434\u0430\u043d\u0438\u044f \u2014 \u518d\u89c1 \U0001f44b"})
    ok_control("bye-reason-4096", "a string of exactly 4096 bytes is the longest allowed", "BYE",
               {"reason": "r" * 4096})
    ok_control("error-403-dest-seq", "ERROR refusing a SEND: code, reason, dest, seq", "ERROR",
               {"reason": "src is not yours", "code": 403, "dest": DEST, "seq": 1})
    ok_control("error-code-reason", "ERROR with only the required fields, code first", "ERROR",
               {"code": 400, "reason": "head: meta is not a msgpack map (first byte 0x90)"},
               canonical=False)
    ok_control("stop", "STOP to a spawned proc", "STOP", {"reason": "stop", "timeout_ms": 5000})

    # --- SEND -------------------------------------------------------------
    ok_head("send-worked-example", "docs/protocol.md §5.2: 'hi' inline, meta {seq: 1}, flags 3",
            "SEND", DEST, SRC, {"seq": 1}, inline=b"hi")
    ok_head("send-no-meta-inline", "M = 0 is the empty map", "SEND", DEST, SRC, inline=b"hello")
    ok_head("send-empty-inline-part", "INLINE with nothing after meta is one empty part", "SEND",
            DEST, SRC, {"seq": 2}, inline=b"")
    ok_head("send-no-payload", "no INLINE, no payload frames: an empty payload (zero parts)",
            "SEND", DEST, SRC, {"seq": 3}, flags=0x01)
    ok_head("send-frames-only", "payload as frames of their own, INLINE clear", "SEND", DEST, SRC,
            {"seq": 4}, frames=[b"part one", b"\x00\x01\x02\xff"], flags=0x01)
    ok_head("send-inline-and-frames", "an inline part then two frames, one of them empty", "SEND",
            DEST, SRC, None, inline=b"first", frames=[b"second", b""])
    ok_head("send-unflagged", "flags 0x02: INLINE without RETURN_UNDELIVERABLE", "SEND", DEST, SRC,
            inline=b"fire and forget", flags=0x02)
    ok_head("send-ttl-0", "ttl 0 decodes (the broker then returns it TTL_EXPIRED)", "SEND", DEST,
            SRC, inline=b"x", ttl=0)
    ok_head("send-ttl-255", "ttl is a byte: 255 decodes (the protocol does not cap it)", "SEND",
            DEST, SRC, inline=b"x", ttl=255)
    ok_head("send-meta-reply-headers-ts", "meta with every key the protocol names", "SEND", DEST,
            SRC, {"reply": "client.remote<2>:7@" + EP, "headers": {"trace": "abc", "n": "1"},
                  "seq": 123456789, "ts": 1733616000000000000}, inline=b"{}")
    ok_head("send-meta-empty-map-byte", "meta written as one empty map byte (M = 1)", "SEND", DEST,
            SRC, meta_bytes=b"\x80", inline=b"x", canonical=False)
    big_meta = {"headers": {"k%03d" % i: "v" * 40 for i in range(100)}, "seq": 9}
    ok_head("send-big-meta", "meta of several KiB (a map16 of headers)", "SEND", DEST, SRC,
            big_meta, inline=b"payload")
    ok_head("send-meta-not-decodable", "meta is only checked to start with a map marker: a "
            "truncated map is forwarded unread (clients see {})", "SEND", DEST, SRC,
            meta_bytes=b"\x82\xa3seq", inline=b"x", canonical=False)
    ok_head("send-unicode-endpoint", "addresses are UTF-8 text; an ipc path may hold any "
            "non-control character", "SEND", "a.b:1@ipc:///tmp/z\u00fcrich-\u00e9t\u00e9",
            "c.d@ipc:///tmp/z\u00fcrich-\u00e9t\u00e9", {"seq": 1}, inline=b"\xc3\xa9")
    ok_head("send-abstract-ipc", "split at the first '@': the endpoint ipc://@zhost@x holds '@'",
            "SEND", "a.b:0@ipc://@zhost@x", "c.d@ipc://@zhost@x", inline=b"")
    ok_head("send-port-u64-max", "the largest port number, uids at their widest", "SEND",
            "<JPwcyDCgEup>.w<JPwcyDCgEup>:18446744073709551615@" + EP, "<JPwcyDCgEup>@" + EP,
            inline=b"max")
    ok_head("send-dest-1024-bytes", "D = 1024, the longest dest", "SEND",
            "a" * 63 + "." + "b" * 63 + ":1@ipc:///" + "p" * (1024 - 137), SRC, inline=b"x")
    ok_head("send-src-proc-address", "a proc address is accepted as src", "SEND", DEST,
            "remote<2>@" + EP, inline=b"x")
    ok_head("send-binary-inline", "the inline part is bytes, not text", "SEND", DEST, SRC,
            inline=bytes(range(256)))

    # --- RETURN -----------------------------------------------------------
    rmeta = {"failures": [{"code": "NO_SUCH_PROC", "reason": "no proc e1", "at": EP}],
             "dest": DEST, "meta": {"seq": 1}}
    ok_head("return-worked-example", "docs/protocol.md §6.2: NO_SUCH_PROC for the §5.2 SEND",
            "RETURN", SRC, "service@" + EP, rmeta, inline=b"hi", flags=0x02)
    rmeta2 = {"failures": [{"code": "HOST_UNREACHABLE", "reason": "no answer", "at": "tcp://b:1"},
                           {"code": "PROC_GONE", "reason": "went", "at": "w@tcp://b:1"}],
              "dest": "e.w:3@tcp://b:1", "meta": {}}
    ok_head("return-two-failures-frames", "root cause first; payload frames come back unchanged",
            "RETURN", "c.d@" + EP, "service@" + EP, rmeta2, frames=[b"big part"], flags=0x00)
    ok_head("return-to-proc-address", "a RETURN's dest is the original src: a proc address is fine",
            "RETURN", "worker@" + EP, "service@" + EP,
            {"failures": [{"code": "TTL_EXPIRED", "reason": "ttl 0", "at": EP}],
             "dest": DEST, "meta": {}}, inline=b"", flags=0x02)

    # --- refused: header --------------------------------------------------
    bad("empty-first-frame", "a zero-length first frame", [b""], 400, "header")
    bad("header-5-bytes", "a header shorter than 6 bytes", [b"ZH\x01\x20\x00"], 400, "header")
    bad("bad-magic", "magic 'ZX'", [b"ZX\x01\x20\x00\x00"], 400, "header")
    bad("bad-magic-lowercase", "magic 'zh'", [b"zh\x01\x20\x00\x00"], 400, "header")
    bad("version-0", "version 0", [hdr(0x20, version=0)], 426, "version")
    bad("version-2", "version 2", [hdr(0x20, version=2)], 426, "version")
    bad("version-2-unknown-command", "the version is checked before the command", [hdr(0x7f, version=2)],
        426, "version")
    bad("unknown-command-0x00", "command 0x00", [hdr(0x00)], 404, "command")
    bad("unknown-command-0x7f", "command 0x7f", [hdr(0x7f)], 404, "command")
    bad("unknown-command-0x13", "command 0x13 (after BATCH)", [hdr(0x13)], 404, "command")
    bad("unknown-command-before-header-rules", "the command is checked before a control frame's "
        "length", [hdr(0x06) + b"junk"], 404, "command")
    bad("control-header-7-bytes", "a control command's first frame is exactly 6 bytes",
        [b"ZH\x01\x20\x00\x00\x00"], 400, "header")
    bad("control-nonzero-ttl", "PING with ttl 1", [hdr(0x20, ttl=1)], 400, "header")
    bad("control-nonzero-flags", "BYE with flags 1", [hdr(0x22, flags=1)], 400, "header")
    bad("send-unknown-flag-bit", "SEND with flag bit 2 set",
        [head(0x10, DEST, SRC, b"", b"x", flags=0x06)], 400, "header")
    bad("return-unknown-flag-bit", "RETURN with flag bit 7 set",
        [head(0x11, SRC, "service@" + EP, b"", None, flags=0x80)], 400, "header")

    # --- refused: layout and bodies ---------------------------------------
    bad("control-three-frames", "a control command has at most one body frame",
        [hdr(0x20), b"\x80", b"\x80"], 400, "layout")
    bad("send-1025-payload-frames", "more than 1024 payload frames",
        [head(0x10, DEST, SRC, b"", None, flags=0x01)] + [b""] * 1025, 400, "layout")
    bad("body-not-a-map", "a body that is an array", [hdr(0x01), pack([1, 2])], 400, "body")
    bad("body-not-msgpack", "0xc1 is never used in msgpack", [hdr(0x01), b"\xc1"], 400, "body")
    bad("body-truncated", "a map that declares 2 pairs and holds 1",
        [hdr(0x22), b"\x82\xa6reason\xa1x"], 400, "body")
    bad("body-trailing-bytes", "bytes after the map", [hdr(0x22), pack({"reason": "x"}) + b"\x00"],
        400, "body")
    bad("body-huge-declared-map", "map32 declaring 2**32-1 pairs in 5 bytes (no allocation)",
        [hdr(0x01), b"\xdf\xff\xff\xff\xff"], 400, "body")
    bad("body-huge-declared-str", "str32 declaring 4 GiB", [hdr(0x22), b"\x81\xa6reason\xdb\xff\xff\xff\xff"],
        400, "body")
    bad("body-non-string-key", "an integer key", [hdr(0x22), b"\x81\x01\xa1x"], 400, "body")
    bad("body-label-wrong-type", "ATTACH label given as an integer", [hdr(0x01), pack({"label": 5})],
        400, "field")
    bad("body-label-as-bin", "text values are msgpack str, never bin",
        [hdr(0x01), pack({"label": b"mylabel"})], 400, "field")
    bad("body-pid-as-string", "pid must be an integer", [hdr(0x01), pack({"pid": "42"})], 400, "field")
    bad("body-pid-beyond-int64", "pid 2**64-1 is outside int64", [hdr(0x01), pack({"pid": U64_MAX})],
        400, "field")
    bad("body-heartbeat-negative", "heartbeat_ms must be non-negative",
        [hdr(0x02), pack({"proc": "p@" + EP, "host": EP, "agent": "host_agent.service@" + EP,
                          "heartbeat_ms": -1, "max_msg_bytes": 1, "hwm": 1, "incarnation": 1})],
        400, "field")
    bad("body-key-twice", "a known key given twice", [hdr(0x22), b"\x82\xa6reason\xa1a\xa6reason\xa1b"],
        400, "field")
    bad("body-string-4097", "a string over 4096 bytes", [hdr(0x22), pack({"reason": "r" * 4097})],
        400, "field")
    bad("bootstrap-missing-incarnation", "BOOTSTRAP needs every field",
        [hdr(0x02), pack({"proc": "p@" + EP, "host": EP, "agent": "host_agent.service@" + EP,
                          "heartbeat_ms": 1000, "max_msg_bytes": 1, "hwm": 1})], 400, "field")
    bad("ready-missing-proc", "READY needs proc", [hdr(0x03), pack({"pid": 1})], 400, "field")
    bad("ready-empty", "READY with no body at all", [hdr(0x03)], 400, "field")
    bad("hello-missing-endpoint", "HELLO needs endpoint and incarnation",
        [hdr(0x04), pack({"incarnation": 1})], 400, "field")
    bad("welcome-incarnation-string", "incarnation must be an integer",
        [hdr(0x05), pack({"endpoint": EP, "incarnation": "1"})], 400, "field")
    bad("error-missing-reason", "ERROR needs code and reason", [hdr(0x23), pack({"code": 400})],
        400, "field")

    # --- refused: heads -----------------------------------------------------
    bad("head-only-header", "a SEND of just the 6-byte header",
        [hdr(0x10, 64, 0x03)], 400, "head")
    bad("head-ends-in-dest-length", "the frame ends inside D", [hdr(0x10, 64, 0x03) + b"\x00"], 400, "head")
    bad("head-dest-runs-past-end", "D = 200, far past the end of the frame",
        [head(0x10, DEST, SRC, b"", None, flags=0x01, d_len=200)], 400, "head")
    bad("head-dest-length-0", "D = 0", [head(0x10, b"", SRC, b"", None, flags=0x01)], 400, "head")
    bad("head-dest-length-1025", "D = 1025 (declared, with the bytes present)",
        [head(0x10, "a.b:1@ipc:///" + "p" * (1025 - 13), SRC, b"", None, flags=0x01)], 400, "head")
    bad("head-dest-length-65535", "D = 0xffff", [head(0x10, DEST, SRC, b"", None, flags=0x01,
                                                      d_len=0xFFFF)], 400, "head")
    bad("head-src-length-0", "S = 0", [head(0x10, DEST, b"", b"", None, flags=0x01)], 400, "head")
    bad("head-src-runs-past-end", "S = 300",
        [head(0x10, DEST, SRC, b"", None, flags=0x01, s_len=300)[:-4]], 400, "head")
    bad("head-ends-before-meta-length", "the frame ends inside M",
        [head(0x10, DEST, SRC, b"", None, flags=0x01)[:-2]], 400, "head")
    bad("head-meta-length-ffffffff", "M = 0xffffffff with one byte of meta",
        [head(0x10, DEST, SRC, b"\x80", None, flags=0x01, m_len=0xFFFFFFFF)], 400, "head")
    bad("head-meta-runs-past-end", "M = 1000 with one byte of meta",
        [head(0x10, DEST, SRC, b"\x80", None, flags=0x01, m_len=1000)], 400, "head")
    bad("head-meta-array", "meta that is an array", [head(0x10, DEST, SRC, pack([1]), b"x")], 400, "head")
    bad("head-meta-string", "meta that is a string", [head(0x10, DEST, SRC, pack("seq"), b"x")], 400, "head")
    bad("head-meta-nil", "meta that is nil", [head(0x10, DEST, SRC, b"\xc0", b"x")], 400, "head")
    bad("head-trailing-bytes-no-inline", "bytes after meta while INLINE is clear",
        [head(0x10, DEST, SRC, pack({"seq": 1}), None, flags=0x01) + b"junk"], 400, "head")
    bad("head-control-command-as-head", "a PING header followed by head bytes is a 7+ byte "
        "control frame", [head(0x10, DEST, SRC, b"", None, flags=0x01)[:3] + b"\x20\x00\x00" +
                          head(0x10, DEST, SRC, b"", None, flags=0x01)[6:]], 400, "header")

    # --- refused: addresses in a head ---------------------------------------
    bad("send-dest-actor-address", "a SEND's dest must be a port address",
        [head(0x10, "echo.e1@" + EP, SRC, b"", b"x")], 400, "address")
    bad("send-dest-proc-address", "a SEND's dest must be a port address",
        [head(0x10, "e1@" + EP, SRC, b"", b"x")], 400, "address")
    bad("send-dest-not-an-address", "dest without '@'", [head(0x10, "echo.e1:1", SRC, b"", b"x")],
        400, "address")
    bad("send-dest-uppercase-label", "dest with an upper-case label",
        [head(0x10, "Echo.e1:1@" + EP, SRC, b"", b"x")], 400, "address")
    bad("send-dest-noncanonical-port", "dest port 01", [head(0x10, "echo.e1:01@" + EP, SRC, b"", b"x")],
        400, "address")
    bad("send-dest-noncanonical-uid", "dest proc e1<12>", [head(0x10, "echo.e1<12>:1@" + EP, SRC, b"", b"x")],
        400, "address")
    bad("send-dest-not-utf8-label", "a byte 0xff in a label",
        [head(0x10, b"ech\xff.e1:1@" + EP.encode(), SRC, b"", b"x")], 400, "address")
    bad("send-dest-nul-in-endpoint", "a NUL byte in the endpoint",
        [head(0x10, "echo.e1:1@ipc://a\x00b", SRC, b"", b"x")], 400, "address")
    bad("send-src-port-address", "a src must be an actor or proc address",
        [head(0x10, DEST, "client.remote<2>:7@" + EP, b"", b"x")], 400, "address")
    bad("send-src-bad-endpoint", "src at udp://",
        [head(0x10, DEST, "client.remote<2>@udp://h:1", b"", b"x")], 400, "address")
    bad("send-src-tcp-port-0", "a tcp endpoint's port is 1..65535",
        [head(0x10, DEST, "client.remote<2>@tcp://h:0", b"", b"x")], 400, "address")
    bad("return-dest-port-address", "a RETURN's dest (the original src) is an actor or proc address",
        [head(0x11, "c.d:1@" + EP, "service@" + EP, b"", b"x", flags=0x02)], 400, "address")

    # --- size: decided after the codec (max_msg_bytes) ----------------------
    bad("control-over-max-msg-bytes", "a BYE of 6 + 13 bytes where max_msg_bytes is 16: ERROR 413 "
        "(the codec accepts it; the broker's size check after the principal check refuses it)",
        [hdr(0x22), pack({"reason": "too long"})], 413, "size", max_msg_bytes=16)


ADDRS = []


def id_json(text):
    if not text:
        return None
    lt = text.find("<")
    if lt < 0:
        return {"text": text, "label": text, "uid": None}
    digits = text[lt + 1:-1]
    alphabet = "123456789abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ"
    n = 0
    for ch in digits:
        n = n * 58 + alphabet.index(ch)
    return {"text": text, "label": text[:lt], "uid": str(n)}


def ok_addr(text, kind, desc=""):
    at = text.find("@")
    local, endpoint = text[:at], text[at + 1:]
    port = None
    if ":" in local:
        local, port = local.split(":", 1)
    ids = local.split(".")
    actor, proc = (ids[0], ids[1]) if len(ids) == 2 else (None, ids[0])
    v = {"text": text, "kind": kind, "actor": id_json(actor), "proc": id_json(proc),
         "port": port, "endpoint": endpoint}
    if desc:
        v["description"] = desc
    ADDRS.append(v)


def bad_addr(text, category, desc, hex_=None):
    v = {"text": text, "error": {"code": 400, "name": "malformed", "category": category},
         "description": desc}
    if hex_ is not None:
        v = {"hex": hex_, **v}
        del v["text"]
    ADDRS.append(v)


def address_vectors():
    ok_addr("worker@tcp://10.0.0.5:7100", "proc")
    ok_addr("<3xZ9kLmN>@tcp://10.0.0.5:7100", "proc", "uid-only id")
    ok_addr("remote<3xZ9kLmN>@tcp://host-a:7100", "proc", "a client attached without a label")
    ok_addr("echo.worker@tcp://10.0.0.5:7100", "actor")
    ok_addr("echo.worker:7@tcp://10.0.0.5:7100", "port")
    ok_addr("host_agent.service:1@tcp://host-a:7100", "port", "the control API")
    ok_addr("echo.e1:0@tcp://127.0.0.1:7100", "port", "port 0 is spelt 0")
    ok_addr("a.b@ipc://@zhost@x", "actor", "split at the first '@'")
    ok_addr("w<1>@tcp://h:1", "proc", "uid 0 is the single digit 1")
    ok_addr("w<JPwcyDCgEup>@tcp://h:1", "proc", "uid 2**64-1, 11 digits")
    ok_addr("a.w:18446744073709551615@tcp://h:65535", "port", "port 2**64-1, tcp port 65535")
    ok_addr("<2>.<3>:1@inproc://zhost-backend-1", "port", "uid-only actor and proc, inproc")
    ok_addr("a" * 63 + "@tcp://h:1", "proc", "a label of 63 bytes")
    ok_addr("a_b-c9.x--y@tcp://[::1]:7100", "actor", "'_' and '-' inside labels; IPv6 in brackets")
    ok_addr("w@tcp://*:7100", "proc", "a wildcard host is still an endpoint")
    ok_addr("w@ipc:///run/zhost/backend", "proc")
    ok_addr("w@ipc:///tmp/caf\u00e9-\u6771\u4eac", "proc", "non-ASCII in an ipc path (UTF-8)")
    ok_addr("w@tcp://h\u00f6st:1", "proc", "the tcp host is not checked beyond ':' and brackets")
    ok_addr("w@ipc://" + "p" * (1000 - 6), "proc", "an endpoint of 1000 bytes, the longest")

    bad_addr("Worker@tcp://h:1", "label", "upper case in a label")
    bad_addr("1worker@tcp://h:1", "label", "label starts with a digit")
    bad_addr("_w@tcp://h:1", "label", "label starts with '_'")
    bad_addr("worker-@tcp://h:1", "label", "label ends with '-'")
    bad_addr("a" * 64 + "@tcp://h:1", "label", "a label of 64 bytes")
    bad_addr("w\u00e9@tcp://h:1", "label", "a non-ASCII letter in a label")
    bad_addr("w<12>@tcp://h:1", "uid58", "uid58 with a leading '1'")
    bad_addr("w<0>@tcp://h:1", "uid58", "'0' is not in the alphabet")
    bad_addr("w<l>@tcp://h:1", "uid58", "'l' is not in the alphabet")
    bad_addr("w<>@tcp://h:1", "uid58", "empty uid58")
    bad_addr("w<JPwcyDCgEuq>@tcp://h:1", "uid58", "2**64, one beyond u64")
    bad_addr("w<2@tcp://h:1", "id", "unclosed '<'")
    bad_addr("w<2>x@tcp://h:1", "address", "text after '>'")
    bad_addr("a.w:007@tcp://h:1", "port", "port with leading zeros")
    bad_addr("a.w:18446744073709551616@tcp://h:1", "port", "port 2**64")
    bad_addr("a.w:@tcp://h:1", "port", "empty port")
    bad_addr("a.w:x@tcp://h:1", "port", "port not decimal")
    bad_addr("w:1@tcp://h:1", "address", "a port needs an actor id")
    bad_addr("a.b.c@tcp://h:1", "address", "at most two ids")
    bad_addr(".w@tcp://h:1", "id", "empty actor id")
    bad_addr("worker", "address", "no '@endpoint'")
    bad_addr("", "address", "empty")
    bad_addr("@tcp://h:1", "id", "empty proc id")
    bad_addr("a.w@udp://h:1", "endpoint", "not a tcp/ipc/inproc endpoint")
    bad_addr("w@tcp://", "endpoint", "nothing after the scheme")
    bad_addr("w@tcp://h", "endpoint", "tcp without a port")
    bad_addr("w@tcp://h:0", "endpoint", "tcp port 0")
    bad_addr("w@tcp://h:65536", "endpoint", "tcp port over 65535")
    bad_addr("w@tcp://h:07100", "endpoint", "tcp port with a leading zero")
    bad_addr("w@tcp://:1", "endpoint", "empty tcp host")
    bad_addr("w@tcp://::1:1", "endpoint", "IPv6 without brackets")
    bad_addr("w@ipc://a\tb", "endpoint", "a control character in the endpoint")
    bad_addr("w@ipc://" + "p" * (1001 - 6), "endpoint", "an endpoint of 1001 bytes")
    bad_addr("a.b:1@ipc:///" + "p" * (1025 - 13), "address", "1025 bytes, over the 1024-byte limit")
    bad_addr(None, "label", "a byte that is not UTF-8 (0xff) in a label", hex_=b"w\xff@tcp://h:1".hex())


UID58 = [
    (0, "1"), (1, "2"), (57, "Z"), (58, "21"), (3364, "211"), (0xDEADBEEF, "6G8Bpn"),
    (5633604528062, "3xZ9kLmN"), (U64_MAX, "JPwcyDCgEup"),
]
UID58_BAD = [("", "empty"), ("12", "leading '1'"), ("0", "not in the alphabet"),
             ("O", "not in the alphabet"), ("I", "not in the alphabet"), ("l", "not in the alphabet"),
             ("JPwcyDCgEuq", "2**64, beyond u64"), ("JPwcyDCgEupp", "12 digits, beyond u64")]


def main():
    frames_vectors()
    batch_vectors()
    address_vectors()
    ids = [v["id"] for v in FRAMES]
    assert len(ids) == len(set(ids)), "duplicate vector ids"
    frames_doc = {"format": "zhost-test-vectors/frames", "version": 1,
                  "protocol": "ZHP/1 (docs/protocol.md §3-§7, §14)", "vectors": FRAMES}
    addr_doc = {"format": "zhost-test-vectors/addresses", "version": 1,
                "protocol": "ZHP/1 addresses (docs/protocol.md §2)",
                "addresses": ADDRS,
                "uid58": [{"value": str(v), "text": t} for v, t in UID58] +
                         [{"text": t, "error": {"code": 400, "name": "malformed",
                                                "category": "uid58"}, "description": d}
                          for t, d in UID58_BAD]}
    for name, doc in (("frames.json", frames_doc), ("addresses.json", addr_doc)):
        with open(os.path.join(HERE, name), "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1, ensure_ascii=False)
            f.write("\n")
    print("frames: %d vectors, addresses: %d, uid58: %d" % (
        len(FRAMES), len(ADDRS), len(addr_doc["uid58"])))


if __name__ == "__main__":
    main()
