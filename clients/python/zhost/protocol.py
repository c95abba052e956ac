"""zhost.protocol — ZHP/1 addresses and frames, without sockets.

Everything here follows docs/protocol.md (the shared contract) and docs/protocol.md
(the project's account of it):

* addresses (§2): ``id``, ``proc``, ``actor`` and ``port`` addresses with the
  exact grammar, the base58 alphabet and zhost's one-spelling rule (ADDR-1:
  no leading ``1`` in a uid58 unless it is ``1``, no leading zero in a port
  number, nothing above 2**64-1);
* frames (§3, §4, §5): the 6-byte header, control commands with a msgpack
  body, and the SEND/RETURN head ``header D dest S src M meta [inline]``
  (big-endian lengths) followed by payload frames;
* BATCH (§14): one frame ``[header 0x12 0 0]`` then ``[u32 L][element]`` per
  element, each element a one-frame SEND or RETURN.

The module is pure: it turns values into lists of ``bytes`` frames and back.
"""

import re
import struct
from collections import namedtuple

import msgpack

__all__ = [
    "MAGIC", "VERSION", "HEADER_SIZE", "DEFAULT_TTL", "INLINE_MAX",
    "ATTACH", "BOOTSTRAP", "READY", "HELLO", "WELCOME", "SEND", "RETURN", "BATCH",
    "BATCH_LEN_SIZE", "DEFAULT_BATCH_MAX_BYTES", "DEFAULT_LIVENESS", "PING", "PONG",
    "BYE", "ERROR", "STOP", "COMMAND_NAMES",
    "F_RETURN_UNDELIVERABLE", "F_INLINE", "RETURN_CODES", "ERROR_CODES",
    "BASE58", "UINT64_MAX", "AddressError", "ProtocolError",
    "uid58_encode", "uid58_decode", "is_label", "check_label", "check_id",
    "check_endpoint", "Address", "parse_address", "proc_address",
    "actor_address", "port_address", "make_id",
    "pack", "unpack", "check_msgpack", "header", "encode_control", "encode_send",
    "encode_return", "Head", "decode_head", "Message", "decode",
    "encode_batch", "batch_size", "batch_walk", "decode_element", "batch_elements",
]

# --- constants (§3) ---------------------------------------------------------

MAGIC = b"ZH"
VERSION = 1
HEADER_SIZE = 6
DEFAULT_TTL = 64
#: a first payload part up to this size travels inside the head frame
INLINE_MAX = 4096
FIELD_MAX = 1024          # D and S: 1..1024 bytes
ENDPOINT_MAX = 1000
LABEL_MAX = 63
UINT64_MAX = (1 << 64) - 1

ATTACH = 0x01
BOOTSTRAP = 0x02
READY = 0x03
HELLO = 0x04
WELCOME = 0x05
SEND = 0x10
RETURN = 0x11
BATCH = 0x12
PING = 0x20
PONG = 0x21
BYE = 0x22
ERROR = 0x23
STOP = 0x30

COMMAND_NAMES = {
    ATTACH: "ATTACH", BOOTSTRAP: "BOOTSTRAP", READY: "READY", HELLO: "HELLO",
    WELCOME: "WELCOME", SEND: "SEND", RETURN: "RETURN", BATCH: "BATCH", PING: "PING",
    PONG: "PONG", BYE: "BYE", ERROR: "ERROR", STOP: "STOP",
}

#: BATCH (§14): bytes of an element's length; batch_max_bytes when BOOTSTRAP
#: says batch without one (the broker's default)
BATCH_LEN_SIZE = 4
DEFAULT_BATCH_MAX_BYTES = 256 << 10
#: BOOTSTRAP `liveness` when absent: heartbeats of silence before a drop
DEFAULT_LIVENESS = 3

F_RETURN_UNDELIVERABLE = 0x01
F_INLINE = 0x02

RETURN_CODES = ("NO_SUCH_PROC", "PROC_GONE", "NO_SUCH_ACTOR", "NO_SUCH_PORT",
                "HOST_UNREACHABLE", "TTL_EXPIRED", "OVERLOADED", "TOO_LARGE",
                "SHUTDOWN")

ERROR_CODES = {
    400: "malformed", 401: "handshake required", 403: "forbidden",
    404: "unknown command", 413: "too large", 426: "unsupported version",
    503: "shutting down",
}


class AddressError(ValueError):
    """Text that is not a valid (canonical) ZHP/1 address, id or endpoint."""


class ProtocolError(ValueError):
    """Frames that cannot be read as ZHP/1."""


# --- addresses (§2) ---------------------------------------------------------

BASE58 = "123456789abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ"
_B58_VALUE = {ch: i for i, ch in enumerate(BASE58)}
_LABEL_RE = re.compile(r"[a-z](?:[a-z0-9_-]{0,61}[a-z0-9])?\Z")


def uid58_encode(value):
    """The uid58 spelling of a u64, most significant digit first (0 is "1")."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= UINT64_MAX:
        raise AddressError("uid58: %r is not a u64" % (value,))
    if value == 0:
        return BASE58[0]
    out = []
    while value:
        value, r = divmod(value, 58)
        out.append(BASE58[r])
    return "".join(reversed(out))


def uid58_decode(text):
    """The u64 of a canonical uid58; AddressError otherwise."""
    if not text:
        raise AddressError("uid58: empty")
    if len(text) > 1 and text[0] == BASE58[0]:
        raise AddressError("uid58: %r has a leading '1' (non-canonical)" % text)
    n = 0
    for i, ch in enumerate(text):
        d = _B58_VALUE.get(ch)
        if d is None:
            raise AddressError("uid58: %r at %d of %r is not a base58 digit" % (ch, i, text))
        n = n * 58 + d
        if n > UINT64_MAX:
            raise AddressError("uid58: %r is beyond u64" % text)
    return n


def is_label(text):
    return isinstance(text, str) and _LABEL_RE.match(text) is not None


def check_label(text):
    if not is_label(text):
        raise AddressError("label: %r is not 1..63 of [a-z0-9_-], first a letter, "
                           "last a letter or digit" % (text,))
    return text


def check_id(text):
    """Check `id = label | label "<" uid58 ">" | "<" uid58 ">"`; returns text."""
    if not isinstance(text, str) or not text:
        raise AddressError("id: empty")
    lt = text.find("<")
    if lt < 0:
        if not is_label(text):
            raise AddressError("id: %r is not a label" % text)
        return text
    if not text.endswith(">"):
        raise AddressError("id: %r has text after '>' or no '>'" % text)
    label, uid = text[:lt], text[lt + 1:-1]
    if label and not is_label(label):
        raise AddressError("id: %r: %r is not a label" % (text, label))
    uid58_decode(uid)
    return text


def make_id(label=None, uid=None):
    """An id from a label and/or a u64: make_id("worker", 1) == "worker<2>"."""
    if uid is None:
        return check_label(label)
    return "%s<%s>" % (check_label(label) if label else "", uid58_encode(uid))


def check_endpoint(text):
    """Check a ZeroMQ endpoint the way zhost does; returns text."""
    if not isinstance(text, str) or not text:
        raise AddressError("endpoint: empty")
    if len(text.encode("utf-8")) > ENDPOINT_MAX:
        raise AddressError("endpoint: more than %d bytes" % ENDPOINT_MAX)
    for scheme in ("tcp://", "ipc://", "inproc://"):
        if text.startswith(scheme):
            rest = text[len(scheme):]
            break
    else:
        raise AddressError("endpoint: %r: unknown scheme (tcp://, ipc:// or inproc://)" % text)
    if not rest:
        raise AddressError("endpoint: %r: nothing after the scheme" % text)
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in rest):
        raise AddressError("endpoint: %r holds a control character" % text)
    if scheme != "tcp://":
        return text
    host, colon, port = rest.rpartition(":")
    if not colon:
        raise AddressError("endpoint: %r: tcp needs host:port" % text)
    if not host:
        raise AddressError("endpoint: %r: empty tcp host" % text)
    if host.startswith("["):
        if not host.endswith("]") or len(host) == 2:
            raise AddressError("endpoint: %r: bad [IPv6] host" % text)
    elif ":" in host:
        raise AddressError("endpoint: %r: ':' in tcp host (IPv6 needs [brackets])" % text)
    if not port.isdigit() or not port.isascii() or port[0] == "0" or int(port) > 65535:
        raise AddressError("endpoint: %r: tcp port is not 1..65535 (no leading zero)" % text)
    return text


class Address(namedtuple("Address", "kind actor proc port endpoint")):
    """A parsed address. kind is "proc", "actor" or "port"; actor and port are
    None where the kind has none. str(address) gives back the text."""

    __slots__ = ()

    def __str__(self):
        if self.kind == "proc":
            return "%s@%s" % (self.proc, self.endpoint)
        if self.kind == "actor":
            return "%s.%s@%s" % (self.actor, self.proc, self.endpoint)
        return "%s.%s:%d@%s" % (self.actor, self.proc, self.port, self.endpoint)

    @property
    def proc_address(self):
        return "%s@%s" % (self.proc, self.endpoint)

    @property
    def actor_address(self):
        if self.actor is None:
            raise AddressError("%s has no actor" % self)
        return "%s.%s@%s" % (self.actor, self.proc, self.endpoint)


def parse_address(text, kind=None):
    """Parse a proc, actor or port address (split at the first '@').

    kind, if given ("proc", "actor", "port" or a tuple of them), is the kind
    expected; anything else raises AddressError.
    """
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise AddressError("address: not UTF-8: %r" % (text,))
    if not isinstance(text, str):
        raise AddressError("address: %r is not text" % (text,))
    if not 1 <= len(text.encode("utf-8")) <= FIELD_MAX:
        raise AddressError("address: length is not 1..%d bytes" % FIELD_MAX)
    at = text.find("@")
    if at < 0:
        raise AddressError("address: %r has no '@endpoint'" % text)
    local, endpoint = text[:at], text[at + 1:]
    check_endpoint(endpoint)
    port = None
    colon = local.find(":")
    if colon >= 0:
        digits = local[colon + 1:]
        local = local[:colon]
        if not digits or not digits.isdigit() or not digits.isascii():
            raise AddressError("address: %r: port is not a decimal u64" % text)
        if len(digits) > 1 and digits[0] == "0":
            raise AddressError("address: %r: port has a leading zero (non-canonical)" % text)
        port = int(digits)
        if port > UINT64_MAX:
            raise AddressError("address: %r: port beyond u64" % text)
    ids = local.split(".")
    if len(ids) > 2:
        raise AddressError("address: %r has more than two ids" % text)
    for i in ids:
        try:
            check_id(i)
        except AddressError as e:
            raise AddressError("address: %r: %s" % (text, e))
    if len(ids) == 1:
        if port is not None:
            raise AddressError("address: %r: a port needs an actor id" % text)
        addr = Address("proc", None, ids[0], None, endpoint)
    else:
        addr = Address("port" if port is not None else "actor", ids[0], ids[1], port, endpoint)
    if kind is not None:
        kinds = (kind,) if isinstance(kind, str) else tuple(kind)
        if addr.kind not in kinds:
            raise AddressError("address: %r is a %s address, not %s" % (
                text, addr.kind, " or ".join(kinds)))
    return addr


def proc_address(proc_id, endpoint):
    return str(parse_address("%s@%s" % (proc_id, endpoint), "proc"))


def actor_address(actor, proc):
    """actor id + a proc (or actor/port) address -> actor address."""
    p = parse_address(proc)
    return str(parse_address("%s.%s@%s" % (actor, p.proc, p.endpoint), "actor"))


def port_address(actor, port):
    """An actor (or port) address + a port number -> port address."""
    a = parse_address(actor, ("actor", "port"))
    return str(parse_address("%s.%s:%d@%s" % (a.actor, a.proc, int(port), a.endpoint), "port"))


# --- msgpack ----------------------------------------------------------------
#
# MSG-1: no declared length or count from the wire reserves memory. msgpack
# builds a list or dict at the size its header declares before it reads a
# single element, so b"\xdd\xff\xff\xff\xff" (array32 of 2**32-1, five bytes)
# would ask for 32 GiB. unpack() therefore (1) walks the bytes first without
# building anything and refuses them when the containers open at any point
# declare more elements than there are bytes left (each element takes at
# least one byte): this bounds nested claims too, which msgpack's own
# per-container limits do not (a nest of array32 headers, each under the
# limit, reserves the limit once per level); and (2) passes max_str_len,
# max_bin_len, max_array_len, max_map_len and max_ext_len set from the
# input's length to msgpack.unpackb (the same in msgpack 1.0.3, Debian 12's
# python3-msgpack, and later: 1.0 took them from len(packed) by default,
# other versions need not). max_buffer_size concerns the streaming
# Unpacker, which this module does not use.

_FIXED = {0xC0: 0, 0xC2: 0, 0xC3: 0, 0xCA: 4, 0xCB: 8, 0xCC: 1, 0xCD: 2, 0xCE: 4,
          0xCF: 8, 0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8, 0xD4: 2, 0xD5: 3, 0xD6: 5,
          0xD7: 9, 0xD8: 17}              # marker -> bytes after it (fixext: type + data)
_SIZED = {0xC4: (1, 0), 0xC5: (2, 0), 0xC6: (4, 0),      # bin 8/16/32
          0xC7: (1, 1), 0xC8: (2, 1), 0xC9: (4, 1),      # ext 8/16/32: + type byte
          0xD9: (1, 0), 0xDA: (2, 0), 0xDB: (4, 0)}      # str 8/16/32
_COUNTED = {0xDC: (2, 1), 0xDD: (4, 1), 0xDE: (2, 2), 0xDF: (4, 2)}  # array/map 16/32


def check_msgpack(data):
    """Raise ProtocolError unless data is one msgpack object whose declared
    lengths fit in data and whose open containers never claim more elements
    than bytes remain (MSG-1). Builds nothing; cost is per object."""
    data = bytes(data)
    end = len(data)
    pos = 0
    need = 1                                 # elements still owed by open containers

    def length(at, size):
        if at + size > end:
            raise ProtocolError("msgpack: a length runs past the end (%d bytes)" % end)
        return int.from_bytes(data[at:at + size], "big")

    while need:
        if need > end - pos:
            raise ProtocolError("msgpack: %d elements declared, %d bytes left" % (
                need, end - pos))
        b = data[pos]
        pos += 1
        need -= 1
        if b <= 0x7F or b >= 0xE0:
            continue
        if b <= 0x8F:
            need += 2 * (b & 0x0F)
        elif b <= 0x9F:
            need += b & 0x0F
        elif b <= 0xBF:
            pos += b & 0x1F
        elif b in _FIXED:
            pos += _FIXED[b]
        elif b in _SIZED:
            size, extra = _SIZED[b]
            pos += size + extra + length(pos, size)
        elif b in _COUNTED:
            size, per = _COUNTED[b]
            need += per * length(pos, size)
            pos += size
        else:
            raise ProtocolError("msgpack: byte 0x%02x is not a type" % b)
        if pos > end:
            raise ProtocolError("msgpack: a value runs past the end (%d bytes)" % end)
    if pos != end:
        raise ProtocolError("msgpack: %d bytes after the object" % (end - pos))


def pack(obj):
    return msgpack.packb(obj, use_bin_type=True)


def unpack(data):
    """Decode wire bytes: the one msgpack decoder of the client (MSG-1).
    ProtocolError for anything that is not one well-formed, bounded object."""
    data = bytes(data)
    check_msgpack(data)
    n = len(data)
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False,
                               max_str_len=n, max_bin_len=n, max_array_len=n,
                               max_map_len=n // 2, max_ext_len=n)
    except Exception as e:  # noqa: BLE001 - ExtraData, FormatError, StackError, unhashable keys...
        raise ProtocolError("msgpack: %s: %s" % (type(e).__name__, e))


# --- frames (§3-§5) ---------------------------------------------------------

def header(cmd, ttl=0, flags=0):
    return MAGIC + bytes((VERSION, cmd, ttl, flags))


def encode_control(cmd, body=None):
    """[header] or [header][msgpack body] for a control command."""
    if cmd in (SEND, RETURN):
        raise ValueError("SEND and RETURN are not control commands")
    frames = [header(cmd)]
    if body:
        frames.append(pack(body))
    return frames


def _addr_bytes(addr, what):
    b = str(addr).encode("utf-8")
    if not 1 <= len(b) <= FIELD_MAX:
        raise AddressError("%s: %d bytes, not 1..%d" % (what, len(b), FIELD_MAX))
    return b


def _encode_head(cmd, dest, src, meta_bytes, flags, ttl, inline):
    d = _addr_bytes(dest, "dest")
    s = _addr_bytes(src, "src")
    parts = [header(cmd, ttl, flags), struct.pack(">H", len(d)), d,
             struct.pack(">H", len(s)), s, struct.pack(">I", len(meta_bytes)), meta_bytes]
    if inline is not None:
        parts.append(inline)
    return b"".join(parts)


def _as_bytes(part):
    if isinstance(part, str):
        return part.encode("utf-8")
    if isinstance(part, (bytes, bytearray, memoryview)):
        return bytes(part)
    raise TypeError("a payload part is bytes or str, not %s" % type(part).__name__)


def encode_send(dest, src, parts=(), meta=None, undeliverable=True, ttl=DEFAULT_TTL,
                inline_max=INLINE_MAX, cmd=SEND):
    """Frames of a SEND: [head][payload frame]*.

    The first part rides inline in the head when it is at most inline_max
    bytes; every other part is a frame of its own. str parts are UTF-8.
    """
    parts = [_as_bytes(p) for p in parts]
    meta_bytes = pack(meta) if meta else b""
    flags = F_RETURN_UNDELIVERABLE if undeliverable else 0
    inline = None
    if parts and len(parts[0]) <= inline_max:
        inline = parts.pop(0)
        flags |= F_INLINE
    return [_encode_head(cmd, dest, src, meta_bytes, flags, ttl, inline)] + parts


def encode_return(original, code, reason, at, src, ttl=DEFAULT_TTL):
    """Frames of a RETURN (§5) bouncing a received Message back to its src."""
    if original.cmd != SEND:
        raise ValueError("only a SEND is returned")
    failures = list(original.failures_before()) + [
        {"code": code, "reason": reason, "at": at}]
    meta = {"failures": failures, "dest": original.dest, "meta": original.meta or {}}
    flags = original.flags & F_INLINE
    inline = original.inline if flags & F_INLINE else None
    head = _encode_head(RETURN, original.src, src, pack(meta), flags, ttl, inline)
    return [head] + list(original.frames[1:])


def _is_map_marker(b):
    return 0x80 <= b <= 0x8F or b in (0xDE, 0xDF)


class Head(namedtuple("Head", "cmd ttl flags dest src meta_raw inline")):
    """The fields of a SEND/RETURN head frame."""
    __slots__ = ()


def decode_head(frame):
    frame = bytes(frame)
    if len(frame) < HEADER_SIZE or frame[:2] != MAGIC:
        raise ProtocolError("short header or bad magic")
    if frame[2] != VERSION:
        raise ProtocolError("version %d" % frame[2])
    cmd, ttl, flags = frame[3], frame[4], frame[5]
    pos = HEADER_SIZE

    def take(n, what):
        nonlocal pos
        if pos + n > len(frame):
            raise ProtocolError("%s runs past the end of the head" % what)
        chunk = frame[pos:pos + n]
        pos += n
        return chunk

    (d,) = struct.unpack(">H", take(2, "D"))
    if not 1 <= d <= FIELD_MAX:
        raise ProtocolError("D=%d outside 1..%d" % (d, FIELD_MAX))
    dest = take(d, "dest").decode("utf-8", "replace")
    (s,) = struct.unpack(">H", take(2, "S"))
    if not 1 <= s <= FIELD_MAX:
        raise ProtocolError("S=%d outside 1..%d" % (s, FIELD_MAX))
    src = take(s, "src").decode("utf-8", "replace")
    (m,) = struct.unpack(">I", take(4, "M"))
    meta_raw = take(m, "meta")
    if m and not _is_map_marker(meta_raw[0]):
        raise ProtocolError("meta is not a msgpack map")
    rest = frame[pos:]
    if flags & F_INLINE:
        inline = rest
    elif rest:
        raise ProtocolError("bytes after meta while INLINE is clear")
    else:
        inline = None
    return Head(cmd, ttl, flags, dest, src, meta_raw, inline)


class Message(object):
    """One received ZHP/1 message.

    Every message: cmd, name, ttl, flags, frames. SEND/RETURN: dest, src,
    meta (a dict; {} when empty or unreadable), parts (the payload: the
    inline part, then each payload frame). Control commands: body (a dict).
    BATCH: elements (the Messages a lone one-frame SEND or RETURN of the
    same bytes decodes to, in order); a BATCH with any fault, in the
    container or in one element, is refused whole (batch_elements() walks
    one element by element instead).
    """

    __slots__ = ("frames", "cmd", "ttl", "flags", "dest", "src", "meta", "inline",
                 "parts", "body", "port", "proc", "elements")

    def __init__(self, frames):
        self.frames = [bytes(f) for f in frames]
        if not self.frames:
            raise ProtocolError("no frames")
        first = self.frames[0]
        if len(first) < HEADER_SIZE or first[:2] != MAGIC:
            raise ProtocolError("short header or bad magic")
        if first[2] != VERSION:
            raise ProtocolError("unsupported version %d" % first[2])
        self.cmd, self.ttl, self.flags = first[3], first[4], first[5]
        self.port = None
        self.proc = None
        self.dest = self.src = self.inline = self.parts = None
        self.meta = None
        self.body = None
        self.elements = None
        if self.cmd == BATCH:
            if len(self.frames) != 1:
                raise ProtocolError("BATCH: %d frames, a BATCH is one frame" % len(self.frames))
            elements = []
            for item in batch_elements(first):
                if isinstance(item, ProtocolError):
                    raise item
                elements.append(item)
            self.elements = elements
        elif self.cmd in (SEND, RETURN):
            h = decode_head(first)
            self.dest, self.src, self.inline = h.dest, h.src, h.inline
            try:
                meta = unpack(h.meta_raw) if h.meta_raw else {}
            except Exception:  # noqa: BLE001 - a broker forwards meta unread
                meta = {}
            self.meta = meta if isinstance(meta, dict) else {}
            self.parts = ([h.inline] if h.inline is not None else []) + self.frames[1:]
        else:
            if len(self.frames) > 2:
                raise ProtocolError("control command with %d frames" % len(self.frames))
            body = {}
            if len(self.frames) == 2 and self.frames[1]:
                try:
                    body = unpack(self.frames[1])
                except Exception as e:  # noqa: BLE001
                    raise ProtocolError("control body does not decode: %s" % e)
                if not isinstance(body, dict):
                    raise ProtocolError("control body is not a map")
            self.body = body

    @property
    def name(self):
        return COMMAND_NAMES.get(self.cmd, "0x%02x" % self.cmd)

    @property
    def reply(self):
        """The port address in meta `reply`, or None."""
        r = self.meta.get("reply") if self.meta else None
        return r if isinstance(r, str) else None

    @property
    def seq(self):
        s = self.meta.get("seq") if self.meta else None
        return s if isinstance(s, int) else None

    @property
    def headers(self):
        h = self.meta.get("headers") if self.meta else None
        return h if isinstance(h, dict) else {}

    @property
    def returnable(self):
        return bool(self.flags & F_RETURN_UNDELIVERABLE)

    def respond(self, *parts, **kw):
        """Answer at meta `reply` (a message received by a zhost.Proc)."""
        if self.proc is None:
            raise ValueError("respond() is for messages received by a zhost.Proc")
        return self.proc.reply(self, *parts, **kw)

    def failures_before(self):
        """Failures a SEND already carries (none for a plain SEND)."""
        return ()

    def __repr__(self):
        if self.elements is not None:
            return "<BATCH of %d: %r>" % (len(self.elements), self.elements)
        if self.parts is not None:
            return "<%s %s -> %s meta=%r parts=%r>" % (
                self.name, self.src, self.dest, self.meta,
                [p if len(p) <= 32 else p[:32] + b"..." for p in self.parts])
        return "<%s %r>" % (self.name, self.body)


def decode(frames):
    """The Message of a list of frames; ProtocolError when they are not ZHP/1."""
    return Message(frames)


# --- BATCH (§14) -------------------------------------------------------------

def _element_bytes(element):
    """An element given as bytes or as a one-frame message (encode_send's list)."""
    if isinstance(element, (list, tuple)):
        if len(element) != 1:
            raise ValueError("a message with %d frames is never batched (only one-frame "
                             "SENDs and RETURNs)" % len(element))
        element = element[0]
    e = _as_bytes(element)
    if len(e) < HEADER_SIZE or e[:2] != MAGIC or e[2] != VERSION or e[3] not in (SEND, RETURN):
        raise ValueError("a BATCH element is a one-frame SEND or RETURN")
    if len(e) > 0xFFFFFFFF:
        raise ValueError("a BATCH element is at most 2**32-1 bytes")
    return e


def batch_size(elements):
    """The bytes of the BATCH frame encode_batch(elements) writes."""
    return HEADER_SIZE + sum(BATCH_LEN_SIZE + len(_element_bytes(e)) for e in elements)


def encode_batch(elements):
    """[frame] of a BATCH: [header 0x12 0 0] then [u32 length][element] for
    each element in order. An element is the one frame of a SEND or RETURN
    (bytes, or the one-frame list encode_send / encode_return give);
    ValueError for none, for a message with payload frames of its own, or
    for anything that is not a SEND or RETURN."""
    elements = [_element_bytes(e) for e in elements]
    if not elements:
        raise ValueError("a BATCH holds at least one element")
    out = [header(BATCH)]
    for e in elements:
        out.append(struct.pack(">I", len(e)))
        out.append(e)
    return [b"".join(out)]


def batch_walk(frame):
    """Yield the bytes of each element of a BATCH frame, in order, without
    decoding them. The header must be a BATCH of version 1 with ttl and
    flags 0 (ProtocolError before anything is yielded). A container fault
    (no elements, a length of 0, a length running past the frame, bytes
    left over that cannot hold a length) raises ProtocolError when the walk
    reaches it: the elements before it have been yielded (the broker
    handles those, then answers ERROR 400)."""
    frame = bytes(frame)
    if len(frame) < HEADER_SIZE or frame[:2] != MAGIC:
        raise ProtocolError("short header or bad magic")
    if frame[2] != VERSION:
        raise ProtocolError("unsupported version %d" % frame[2])
    if frame[3] != BATCH:
        raise ProtocolError("not a BATCH: command 0x%02x" % frame[3])
    if frame[4] or frame[5]:
        raise ProtocolError("BATCH: ttl and flags must be 0")
    end = len(frame)
    if end == HEADER_SIZE:
        raise ProtocolError("BATCH: no elements")
    pos = HEADER_SIZE
    index = 0
    while pos < end:
        left = end - pos
        if left < BATCH_LEN_SIZE:
            raise ProtocolError("BATCH: %d bytes left after element %d, too few for a length"
                                % (left, index))
        (n,) = struct.unpack_from(">I", frame, pos)
        if n == 0:
            raise ProtocolError("BATCH: element %d has length 0" % (index + 1))
        if n > left - BATCH_LEN_SIZE:
            raise ProtocolError("BATCH: element %d claims %d bytes, %d are left"
                                % (index + 1, n, left - BATCH_LEN_SIZE))
        pos += BATCH_LEN_SIZE
        index += 1
        yield frame[pos:pos + n]
        pos += n


def decode_element(data):
    """The Message of one BATCH element: a one-frame SEND or RETURN, decoded
    exactly as that message arriving alone. ProtocolError otherwise (a
    control command or an unknown one is not batched)."""
    data = bytes(data)
    if len(data) < HEADER_SIZE or data[:2] != MAGIC:
        raise ProtocolError("short header or bad magic")
    if data[2] != VERSION:
        raise ProtocolError("unsupported version %d" % data[2])
    if data[3] not in (SEND, RETURN):
        raise ProtocolError("%s: only SEND and RETURN are batched"
                            % COMMAND_NAMES.get(data[3], "command 0x%02x" % data[3]))
    return Message([data])


def batch_elements(frame):
    """Walk a BATCH frame element by element: yields, in order, the Message
    of each element, or a ProtocolError (naming the element) for an element
    that does not decode, and goes on with the next; a container fault
    raises ProtocolError where the walk meets it (see batch_walk). This is
    what a receiver dispatches from; decode() refuses such a BATCH whole."""
    for index, data in enumerate(batch_walk(frame), 1):
        try:
            yield decode_element(data)
        except ProtocolError as e:
            yield ProtocolError("BATCH element %d: %s" % (index, e))
