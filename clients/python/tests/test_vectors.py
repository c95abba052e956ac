"""The shared ZHP/1 test vectors (tests/vectors/, see its README.md) read
through zhost.protocol: every frame vector decodes to what it says, or is
refused; canonical ones re-encode to the same bytes; every address parses
to its parts and prints back, or is refused; uid58 values go both ways.

The client's decoder is not the broker's: it raises ProtocolError without a
code and leaves some of the broker's checks to the broker. The vectors it
accepts although the broker refuses them are listed in ACCEPTED below, each
asserted to be accepted, so a codec that grows stricter shows up here.

BATCH (§14): decode() gives the elements as the Messages the same bytes give
alone and refuses a BATCH with any fault whole; batch_elements(), which the
client dispatches from, yields the elements before a container fault and
then raises (`elements_before`), and yields a ProtocolError in place of an
element that does not decode and goes on (`batch-element` vectors). Both
are asserted for every BATCH vector.

Only json from the standard library and zhost.protocol; runs with Debian's
/usr/bin/python3 and needs no broker.
"""

import json
import os

import pytest

from zhost import protocol as P


def _vectors_dir():
    """tests/vectors of the repository this file is in, found by walking up
    (so it works wherever the Python client's directory sits)."""
    here = os.path.dirname(os.path.abspath(__file__))
    while True:
        candidate = os.path.join(here, "tests", "vectors")
        if os.path.isdir(candidate):
            return candidate
        parent = os.path.dirname(here)
        if parent == here:
            raise RuntimeError("no tests/vectors above %s" % __file__)
        here = parent


def _load(name, fmt, *keys):
    path = os.path.join(_vectors_dir(), name)
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    if doc.get("format") != fmt or doc.get("version") != 1:
        raise RuntimeError("%s: format %r version %r, want %r 1" % (
            path, doc.get("format"), doc.get("version"), fmt))
    for key in keys:
        if not isinstance(doc.get(key), list) or not doc[key]:
            raise RuntimeError("%s: no vectors under %r" % (path, key))
    return doc


# Loaded at import: a missing or empty file is a collection error, never a pass.
FRAMES = _load("frames.json", "zhost-test-vectors/frames", "vectors")["vectors"]
ADDRS = _load("addresses.json", "zhost-test-vectors/addresses", "addresses", "uid58")

# Vectors the broker refuses but this client's decoder accepts: checks the
# client leaves to the broker, by what it leaves out (tests/vectors/README.md).
ACCEPTED = {
    # header rules past magic and version: a client dispatches on known
    # commands and reads a header of any length
    "unknown-command-0x00": "command byte not checked",
    "unknown-command-0x7f": "command byte not checked",
    "unknown-command-0x13": "command byte not checked",
    "unknown-command-before-header-rules": "command byte not checked",
    "control-header-7-bytes": "control header length not checked",
    "control-nonzero-ttl": "control ttl/flags not checked",
    "control-nonzero-flags": "control ttl/flags not checked",
    "send-unknown-flag-bit": "unknown flag bits not checked",
    "return-unknown-flag-bit": "unknown flag bits not checked",
    "head-control-command-as-head": "control header length not checked",
    # no cap on payload frames
    "send-1025-payload-frames": "payload frame count not capped",
    # bodies are generic maps: no per-command field types, lengths or
    # required fields; msgpack keys need not be str; a repeated key is
    # the last value
    "body-non-string-key": "non-str map keys accepted",
    "body-label-wrong-type": "field types not checked",
    "body-label-as-bin": "field types not checked",
    "body-pid-as-string": "field types not checked",
    "body-pid-beyond-int64": "field types not checked",
    "body-heartbeat-negative": "field types not checked",
    "body-key-twice": "a repeated key is not refused",
    "body-string-4097": "string length not capped",
    "bootstrap-missing-incarnation": "required fields not checked",
    "ready-missing-proc": "required fields not checked",
    "ready-empty": "required fields not checked",
    "hello-missing-endpoint": "required fields not checked",
    "welcome-incarnation-string": "field types not checked",
    "error-missing-reason": "required fields not checked",
    # decode() does not parse the addresses of a head (parse_address does)
    "send-dest-actor-address": "head addresses not parsed",
    "send-dest-proc-address": "head addresses not parsed",
    "send-dest-not-an-address": "head addresses not parsed",
    "send-dest-uppercase-label": "head addresses not parsed",
    "send-dest-noncanonical-port": "head addresses not parsed",
    "send-dest-noncanonical-uid": "head addresses not parsed",
    "send-dest-not-utf8-label": "head addresses not parsed",
    "send-dest-nul-in-endpoint": "head addresses not parsed",
    "send-src-port-address": "head addresses not parsed",
    "send-src-bad-endpoint": "head addresses not parsed",
    "send-src-tcp-port-0": "head addresses not parsed",
    "return-dest-port-address": "head addresses not parsed",
    "batch-element-bad-dest": "head addresses not parsed (in a BATCH element too)",
    # the size limit is the broker's (after its principal check)
    "control-over-max-msg-bytes": "size is the broker's check",
}

ADDR_ACCEPTED = {}


def _py(value):
    """A JSON value of the vectors as the Python value msgpack gives."""
    if isinstance(value, dict):
        if set(value) == {"$int"}:
            return int(value["$int"])
        return {k: _py(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_py(v) for v in value]
    return value


def _frames(vector):
    return [bytes.fromhex(h) for h in vector["frames"]]


def _ids(vectors):
    return [v["id"] for v in vectors]


def test_vector_files_have_vectors_of_every_kind():
    assert any("decode" in v for v in FRAMES) and any("error" in v for v in FRAMES)
    assert len(set(_ids(FRAMES))) == len(FRAMES), "vector ids are unique"
    assert set(ACCEPTED) <= set(_ids(FRAMES)), "ACCEPTED names only existing vectors"
    names = {v["decode"]["name"] for v in FRAMES if "decode" in v}
    assert names == set(P.COMMAND_NAMES.values()), "every command has a vector"


def _check_message(msg, frames, want, canonical):
    """A decoded SEND or RETURN (lone, or a BATCH element) against its
    `decode`; canonical: the encoder writes the same frames from it."""
    assert (msg.cmd, msg.name, msg.ttl, msg.flags) == (
        want["command"], want["name"], want["ttl"], want["flags"])
    assert msg.dest == want["dest"] and msg.src == want["src"]
    assert P.decode_head(frames[0]).meta_raw.hex() == want["meta_hex"]
    assert msg.meta == (_py(want["meta"]) if want["meta"] is not None else {})
    assert [p.hex() for p in msg.parts] == want["parts"]
    if canonical:
        parts = [bytes.fromhex(p) for p in want["parts"]]
        inline = msg.flags & P.F_INLINE
        again = P.encode_send(
            want["dest"], want["src"], parts, _py(want["meta"]),
            undeliverable=bool(msg.flags & P.F_RETURN_UNDELIVERABLE), ttl=msg.ttl,
            inline_max=len(parts[0]) if inline else -1, cmd=msg.cmd)
        assert again == frames
        return again
    return None


@pytest.mark.parametrize("vector", [v for v in FRAMES if "decode" in v], ids=lambda v: v["id"])
def test_frame_decodes(vector):
    want = vector["decode"]
    frames = _frames(vector)
    msg = P.decode(frames)
    assert (msg.cmd, msg.name, msg.ttl, msg.flags) == (
        want["command"], want["name"], want["ttl"], want["flags"])
    if msg.cmd in (P.SEND, P.RETURN):
        _check_message(msg, frames, want, vector.get("canonical"))
    elif msg.cmd == P.BATCH:
        assert len(frames) == 1 and msg.body is None and msg.parts is None
        assert len(msg.elements) == len(want["elements"]) >= 1
        raw = list(P.batch_walk(frames[0]))
        walked = list(P.batch_elements(frames[0]))
        assert len(raw) == len(walked) == len(msg.elements)
        again = []
        for el, data, alone, el_want in zip(msg.elements, raw, walked, want["elements"]):
            # each element is exactly the lone one-frame message of its bytes
            assert el.frames == [data] == alone.frames
            lone = P.decode([data])
            assert (lone.cmd, lone.dest, lone.src, lone.meta, lone.parts) == (
                el.cmd, el.dest, el.src, el.meta, el.parts)
            again.append(_check_message(el, [data], el_want, vector.get("canonical")))
        if vector.get("canonical"):
            assert P.encode_batch(again) == frames
            assert P.batch_size(again) == len(frames[0])
    else:
        assert msg.body == _py(want["body"])
        if vector.get("canonical"):
            assert P.encode_control(msg.cmd, _py(want["body"])) == frames


@pytest.mark.parametrize("vector", [v for v in FRAMES if "error" in v], ids=lambda v: v["id"])
def test_frame_is_refused(vector):
    frames = _frames(vector)
    check = vector["error"].get("check")
    if vector["id"] in ACCEPTED:
        msg = P.decode(frames)  # accepted by this client: see ACCEPTED
        if check == "batch-element":
            assert all(isinstance(e, P.Message) for e in P.batch_elements(frames[0]))
            assert len(msg.elements) == len(list(P.batch_walk(frames[0])))
        return
    with pytest.raises(P.ProtocolError):
        P.decode(frames)     # a BATCH with any fault is refused whole
    if check == "batch":
        # the walk yields the elements before the container fault, then raises
        before = vector["error"]["elements_before"]
        got = []
        with pytest.raises(P.ProtocolError):
            for item in P.batch_elements(frames[0]):
                got.append(item)
        assert len(got) == before and all(isinstance(m, P.Message) for m in got)
        with pytest.raises(P.ProtocolError):
            list(P.batch_walk(frames[0]))
    elif check == "batch-element":
        # the container is sound: the walk yields every element, the faulty
        # one as a ProtocolError in its place, and goes on
        items = list(P.batch_elements(frames[0]))
        assert len(items) == len(list(P.batch_walk(frames[0])))
        errors = [i for i in items if isinstance(i, P.ProtocolError)]
        assert len(errors) == 1
        assert all(isinstance(i, P.Message) and i.cmd in (P.SEND, P.RETURN)
                   for i in items if i is not errors[0])
    elif frames[0][3:4] == bytes([P.BATCH]) and check in ("header", "version"):
        with pytest.raises(P.ProtocolError):
            next(P.batch_elements(frames[0]))   # refused before any element


def _addr_id(v):
    return v.get("text", v.get("hex"))[:60]


def _check_id(id_text, want):
    assert id_text == want["text"]
    uid = want["uid"]
    # the encoder side: the parts print back to the id
    assert P.make_id(want["label"] or None, int(uid) if uid is not None else None) == id_text


@pytest.mark.parametrize("vector", [v for v in ADDRS["addresses"] if "error" not in v],
                         ids=_addr_id)
def test_address_parses(vector):
    a = P.parse_address(vector["text"])
    assert a.kind == vector["kind"]
    _check_id(a.proc, vector["proc"])
    if vector["actor"] is None:
        assert a.actor is None
    else:
        _check_id(a.actor, vector["actor"])
    assert a.port == (int(vector["port"]) if vector["port"] is not None else None)
    assert a.endpoint == vector["endpoint"]
    assert str(a) == vector["text"]


@pytest.mark.parametrize("vector", [v for v in ADDRS["addresses"] if "error" in v], ids=_addr_id)
def test_address_is_refused(vector):
    text = bytes.fromhex(vector["hex"]) if "hex" in vector else vector["text"]
    if _addr_id(vector) in ADDR_ACCEPTED:
        P.parse_address(text)
        return
    with pytest.raises(P.AddressError):
        P.parse_address(text)


@pytest.mark.parametrize("vector", ADDRS["uid58"], ids=lambda v: v["text"] or "(empty)")
def test_uid58(vector):
    if "error" in vector:
        with pytest.raises(P.AddressError):
            P.uid58_decode(vector["text"])
        return
    assert P.uid58_decode(vector["text"]) == int(vector["value"])
    assert P.uid58_encode(int(vector["value"])) == vector["text"]
