"""zhp.py — a small pure-python ZHP/1 codec and client for the integration tests.

Written from /work/shared/docs/protocol.md alone (not from the broker's code), so
that the tests check the broker against the contract, the way any client in
another language would see it:

    header  = 'Z' 'H' version command ttl flags                     (§3)
    control = [header][msgpack map body?]
    SEND    = [head][payload frame]*                                 (§4)
    head    = header D:u16 dest S:u16 src M:u32 meta [inline part]   (big-endian)
    RETURN  = a SEND head back to the original src, meta
              {"failures": [...], "dest": ..., "meta": ...}          (§5)

Client wraps a DEALER socket: attach(), send(), recv() with a timeout
(answering the broker's PINGs unless told not to), request() to the host
agent (§8) and bye() (§7). Every wait is bounded.
"""

import collections
import os
import struct
import time

import msgpack
import zmq

# --- constants (§3) ---------------------------------------------------------

MAGIC = b"ZH"
VERSION = 1
HEADER_SIZE = 6

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

F_RETURN = 0x01  # RETURN_UNDELIVERABLE
F_INLINE = 0x02

DEFAULT_TTL = 64
FIELD_MAX = 1024  # D and S: 1..1024

# RETURN codes (§5)
RETURN_CODES = ("NO_SUCH_PROC", "PROC_GONE", "NO_SUCH_ACTOR", "NO_SUCH_PORT",
                "HOST_UNREACHABLE", "TTL_EXPIRED", "OVERLOADED", "TOO_LARGE",
                "SHUTDOWN")
# ERROR codes (§7)
E_MALFORMED = 400
E_HANDSHAKE = 401
E_FORBIDDEN = 403
E_UNKNOWN_COMMAND = 404
E_TOO_LARGE = 413
E_VERSION = 426
E_SHUTTING_DOWN = 503

BASE58 = "123456789abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ"


class MalformedError(ValueError):
    """A frame this codec cannot read as ZHP/1."""


class Timeout(AssertionError):
    """A bounded wait ran out."""


# --- msgpack ----------------------------------------------------------------

def pack(obj):
    return msgpack.packb(obj, use_bin_type=True)


def unpack(data):
    # surrogateescape: a str with invalid UTF-8 (echoed from a sender's meta)
    # still decodes, and compares equal to what that sender packed
    return msgpack.unpackb(data, raw=False, strict_map_key=False,
                           unicode_errors="surrogateescape")


# --- addresses (§2) ---------------------------------------------------------

def uid58_encode(n):
    if not 0 <= n < 1 << 64:
        raise ValueError("uid58 is a u64")
    if n == 0:
        return BASE58[0]
    out = []
    while n:
        n, r = divmod(n, 58)
        out.append(BASE58[r])
    return "".join(reversed(out))


def uid58_decode(text):
    n = 0
    for ch in text:
        i = BASE58.find(ch)
        if i < 0:
            raise ValueError("not base58: %r" % text)
        n = n * 58 + i
    if n >= 1 << 64:
        raise ValueError("uid58 over u64: %r" % text)
    return n


LABEL_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_-")


def is_label(text):
    return (1 <= len(text) <= 63 and set(text) <= LABEL_CHARS
            and text[0].isalpha() and text[-1].isalnum())


def is_id(text):
    """id = label | label "<" uid58 ">" | "<" uid58 ">"."""
    if text.endswith(">") and "<" in text:
        label, uid = text[:-1].split("<", 1)
        if label and not is_label(label):
            return False
        try:
            uid58_decode(uid)
        except ValueError:
            return False
        return len(uid) > 0
    return is_label(text)


def split_addr(addr):
    """Split at the first '@': (local part, endpoint)."""
    i = addr.index("@")
    return addr[:i], addr[i + 1:]


def proc_of(addr):
    """The proc address ("id@endpoint") of a proc, actor or port address."""
    local, ep = split_addr(addr)
    local = local.split(":", 1)[0]
    if "." in local:
        local = local.split(".", 1)[1]
    return "%s@%s" % (local, ep)


def proc_id(addr):
    return split_addr(proc_of(addr))[0]


def actor_addr(proc, actor):
    pid, ep = split_addr(proc_of(proc))
    return "%s.%s@%s" % (actor, pid, ep)


def port_addr(proc_or_actor, port=1, actor=None):
    """A port address on the proc (or actor) given: actor.proc:port@ep."""
    local, ep = split_addr(proc_or_actor)
    local = local.split(":", 1)[0]
    if "." in local:
        a, pid = local.split(".", 1)
    else:
        a, pid = "a", local
    if actor is not None:
        a = actor
    return "%s.%s:%d@%s" % (a, pid, port, ep)


# --- frames (§3, §4) --------------------------------------------------------

def header(cmd, ttl=0, flags=0, version=VERSION, magic=MAGIC):
    return bytes(magic) + bytes([version, cmd, ttl, flags])


def control(cmd, body=None, raw_body=None, **hdr):
    """Frames of a control command: [header] or [header][msgpack body]."""
    frames = [header(cmd, **hdr)]
    if raw_body is not None:
        frames.append(raw_body)
    elif body is not None:
        frames.append(pack(body))
    return frames


def encode_meta(meta):
    if meta is None or meta == {}:
        return b""
    return pack(meta)


def encode_head(dest, src, meta=None, inline=None, ttl=DEFAULT_TTL, flags=0,
                cmd=SEND, version=VERSION, meta_raw=None):
    """The head frame of a SEND/RETURN. inline=None leaves INLINE clear."""
    d = dest.encode() if isinstance(dest, str) else bytes(dest)
    s = src.encode() if isinstance(src, str) else bytes(src)
    m = encode_meta(meta) if meta_raw is None else bytes(meta_raw)
    if inline is not None:
        flags |= F_INLINE
    out = [header(cmd, ttl, flags, version),
           struct.pack(">H", len(d)), d,
           struct.pack(">H", len(s)), s,
           struct.pack(">I", len(m)), m]
    if inline is not None:
        out.append(bytes(inline))
    return b"".join(out)


def encode_send(dest, src, parts=(), meta=None, inline=True, ttl=DEFAULT_TTL,
                returnable=True, cmd=SEND, flags=0, meta_raw=None):
    """Frames of a SEND: the first part inline (if inline and any), the rest as frames."""
    parts = [bytes(p) for p in parts]
    if returnable:
        flags |= F_RETURN
    if inline and parts:
        head = encode_head(dest, src, meta, parts[0], ttl, flags, cmd, meta_raw=meta_raw)
        return [head] + parts[1:]
    head = encode_head(dest, src, meta, None, ttl, flags, cmd, meta_raw=meta_raw)
    return [head] + parts


def is_map_marker(b):
    return 0x80 <= b <= 0x8F or b in (0xDE, 0xDF)


class Head(object):
    __slots__ = ("version", "cmd", "ttl", "flags", "dest", "src", "meta_raw",
                 "meta", "inline")  # meta: a dict, or None when it does not decode

    def __repr__(self):
        return "Head(%s ttl=%d flags=%#x dest=%r src=%r meta=%r inline=%r)" % (
            COMMAND_NAMES.get(self.cmd, self.cmd), self.ttl, self.flags,
            self.dest, self.src, self.meta, _short(self.inline))


def decode_header(frame):
    if len(frame) < HEADER_SIZE or frame[:2] != MAGIC:
        raise MalformedError("short header or bad magic: %r" % _short(frame))
    return frame[2], frame[3], frame[4], frame[5]


def decode_head(frame):
    """Parse a SEND/RETURN head frame; MalformedError on any §3 violation."""
    frame = bytes(frame)
    version, cmd, ttl, flags = decode_header(frame)
    h = Head()
    h.version, h.cmd, h.ttl, h.flags = version, cmd, ttl, flags
    pos = HEADER_SIZE

    def take(n, what):
        nonlocal pos
        if pos + n > len(frame):
            raise MalformedError("%s runs past the end of the head" % what)
        chunk = frame[pos:pos + n]
        pos += n
        return chunk

    (d,) = struct.unpack(">H", take(2, "D"))
    if not 1 <= d <= FIELD_MAX:
        raise MalformedError("D=%d outside 1..1024" % d)
    h.dest = take(d, "dest").decode("utf-8", "replace")
    (s,) = struct.unpack(">H", take(2, "S"))
    if not 1 <= s <= FIELD_MAX:
        raise MalformedError("S=%d outside 1..1024" % s)
    h.src = take(s, "src").decode("utf-8", "replace")
    (m,) = struct.unpack(">I", take(4, "M"))
    h.meta_raw = take(m, "meta")
    if m == 0:
        h.meta = {}
    else:
        if not is_map_marker(h.meta_raw[0]):
            raise MalformedError("meta is not a msgpack map")
        try:
            h.meta = unpack(h.meta_raw)
        except Exception:  # noqa: BLE001
            # a broker checks only the map marker (§3) and forwards the
            # rest as it came: a sender's broken meta arrives broken
            h.meta = None
    rest = frame[pos:]
    if flags & F_INLINE:
        h.inline = rest
    else:
        if rest:
            raise MalformedError("bytes after meta while INLINE is clear")
        h.inline = None
    return h


class Msg(object):
    """One received message. For SEND/RETURN: head fields and parts; else body."""

    def __init__(self, frames):
        self.frames = [bytes(f) for f in frames]
        first = self.frames[0] if self.frames else b""
        self.version, self.cmd, self.ttl, self.flags = decode_header(first)
        self.head = None
        self.body = None
        self.parts = None
        self.elements = None
        if self.cmd == BATCH:  # §14: one frame of [u32 L][one-frame SEND/RETURN]...
            if len(self.frames) != 1:
                raise MalformedError("BATCH with %d frames" % len(self.frames))
            self.elements = [Msg([e]) for e in split_batch(first)]
        elif self.cmd in (SEND, RETURN):
            self.head = decode_head(first)
            self.parts = ([self.head.inline] if self.head.inline is not None else []) \
                + self.frames[1:]
        else:
            if len(self.frames) > 2:
                raise MalformedError("control command with %d frames" % len(self.frames))
            if len(self.frames) == 2 and self.frames[1]:
                try:
                    self.body = unpack(self.frames[1])
                except Exception as e:  # noqa: BLE001
                    raise MalformedError("control body does not decode: %s" % e)
                if not isinstance(self.body, dict):
                    raise MalformedError("control body is not a map")
            else:
                self.body = {}

    @property
    def name(self):
        return COMMAND_NAMES.get(self.cmd, "0x%02x" % self.cmd)

    dest = property(lambda self: self.head.dest)
    src = property(lambda self: self.head.src)
    meta = property(lambda self: self.head.meta)

    def __repr__(self):
        if self.head is not None:
            return "<%s %r parts=%r>" % (self.name, self.head,
                                         [_short(p) for p in self.parts])
        return "<%s %r>" % (self.name, self.body)


def decode(frames):
    return Msg(frames)


def encode_batch(elements, ttl=0, flags=0):
    """A BATCH frame (§14) of one-frame SENDs/RETURNs (each bytes, or a
    one-element frame list as encode_send returns it)."""
    out = header(BATCH, ttl, flags)
    for e in elements:
        if isinstance(e, (list, tuple)):
            assert len(e) == 1, "only one-frame messages are batched"
            e = e[0]
        out += struct.pack(">I", len(e)) + e
    return out


def split_batch(frame):
    """The elements of a BATCH frame, or MalformedError."""
    off, out = HEADER_SIZE, []
    if len(frame) == HEADER_SIZE:
        raise MalformedError("BATCH without elements")
    while off < len(frame):
        if len(frame) - off < 4:
            raise MalformedError("BATCH: bytes left over")
        (n,) = struct.unpack(">I", frame[off:off + 4])
        if n == 0 or n > len(frame) - off - 4:
            raise MalformedError("BATCH: bad length %d" % n)
        out.append(frame[off + 4:off + 4 + n])
        off += 4 + n
    return out


def _short(b, n=40):
    if b is None or len(b) <= n:
        return b
    return bytes(b[:n]) + b"...(%d bytes)" % len(b)


# --- client -----------------------------------------------------------------

def random_routing_id(rng=None):
    """16 random bytes, first byte non-zero (§1)."""
    raw = bytearray(rng.randbytes(16) if rng is not None else os.urandom(16))
    if raw[0] == 0:
        raw[0] = 1
    return bytes(raw)


class Client(object):
    """A DEALER speaking ZHP/1 to a broker's frontend or control socket.

    recv() answers PING with PONG and skips it unless auto_pong is False;
    messages read while waiting for something else are kept in an inbox and
    handed out first by the next recv().
    """

    def __init__(self, ctx, endpoint, routing_id=None, rcvhwm=None, sndhwm=None,
                 linger=0, name=None, curve=None, sockopts=None):
        self.endpoint = endpoint
        self.routing_id = routing_id or random_routing_id()
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, linger)
        self.sock.setsockopt(zmq.ROUTING_ID, self.routing_id)
        if rcvhwm is not None:
            self.sock.setsockopt(zmq.RCVHWM, rcvhwm)
        if sndhwm is not None:
            self.sock.setsockopt(zmq.SNDHWM, sndhwm)
        if curve is not None:   # (client public, client secret, server public)
            self.sock.curve_publickey, self.sock.curve_secretkey = curve[0], curve[1]
            self.sock.curve_serverkey = curve[2]
        for opt, value in (sockopts or {}).items():   # e.g. {zmq.RECONNECT_IVL: -1}
            self.sock.setsockopt(opt, value)
        self.sock.connect(endpoint)
        self.name = name or endpoint
        self.inbox = collections.deque()
        self.auto_pong = True   # a live client: answers PINGs, PINGs when silent (§7)
        self.pings = 0
        self.heartbeat = None   # seconds, from BOOTSTRAP
        self.last_sent = time.monotonic()
        self._own_pings = 0
        self.bootstrap = None
        self.batch_frames = 0   # BATCH frames received (their elements go to the inbox)
        self.proc = None
        self.actor = None
        self.host = None
        self.agent = None
        self._next_port = 100

    # raw frames

    def send_frames(self, frames, timeout=5.0):
        """Send a multipart message, waiting at most timeout for room."""
        frames = list(frames)
        if not frames:
            raise ValueError("nothing to send")
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock.send_multipart(frames, flags=zmq.NOBLOCK, copy=True)
                self.last_sent = time.monotonic()
                return
            except zmq.Again:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Timeout("%s: could not send within %.1fs" % (self.name, timeout))
                self.sock.poll(min(50, int(left * 1000) + 1), zmq.POLLOUT)

    def try_send_frames(self, frames):
        """Send without waiting; False when the socket's queue is full."""
        try:
            self.sock.send_multipart(list(frames), flags=zmq.NOBLOCK, copy=True)
            self.last_sent = time.monotonic()
            return True
        except zmq.Again:
            return False

    def recv_frames(self, timeout):
        """One raw multipart message, or None after timeout seconds."""
        if self.sock.poll(max(0, int(timeout * 1000))):
            return self.sock.recv_multipart(copy=True)
        return None

    # messages

    def _heartbeat(self, auto_pong):
        """A live client that has sent nothing for heartbeat_ms sends PING."""
        if auto_pong and self.heartbeat and \
                time.monotonic() - self.last_sent >= self.heartbeat:
            if self.try_send_frames(control(PING)):
                self._own_pings += 1

    def _handle(self, frames, auto_pong):
        msg = Msg(frames)
        if msg.cmd == PING:
            self.pings += 1
            if auto_pong:
                self.send_frames(control(PONG))
                return None
        elif msg.cmd == PONG and self._own_pings > 0:
            self._own_pings -= 1  # the answer to our own heartbeat
            return None
        return msg

    def try_recv(self, timeout=0.0, auto_pong=None, keepalive=()):
        """The next message within timeout, or None. PINGs are answered and
        skipped (unless auto_pong is False); clients in keepalive are pumped
        meanwhile so that they answer PINGs too."""
        if auto_pong is None:
            auto_pong = self.auto_pong
        if self.inbox:
            return self.inbox.popleft()
        deadline = time.monotonic() + timeout
        while True:
            for other in keepalive:
                other.pump()
            self._heartbeat(auto_pong)
            left = deadline - time.monotonic()
            step = min(left, 0.05) if (keepalive or self.heartbeat) else left
            frames = self.recv_frames(max(0.0, step))
            if frames is not None:
                msg = self._handle(frames, auto_pong)
                if msg is not None and msg.cmd == BATCH:
                    # §14: its elements, in order, as if each had come alone
                    self.batch_frames += 1
                    self.inbox.extend(msg.elements)
                    return self.inbox.popleft()
                if msg is not None:
                    return msg
                continue
            if time.monotonic() >= deadline:
                return None

    def recv(self, timeout=3.0, auto_pong=None, keepalive=()):
        msg = self.try_recv(timeout, auto_pong, keepalive)
        if msg is None:
            raise Timeout("%s: nothing received within %.1fs" % (self.name, timeout))
        return msg

    def expect(self, cmd, timeout=3.0, **kw):
        """The next message, which must be a `cmd`."""
        msg = self.recv(timeout, **kw)
        assert msg.cmd == cmd, "%s: expected %s, got %r" % (
            self.name, COMMAND_NAMES.get(cmd, cmd), msg)
        return msg

    def expect_error(self, code, timeout=3.0, **kw):
        msg = self.expect(ERROR, timeout, **kw)
        assert msg.body.get("code") == code, "%s: expected ERROR %d, got %r" % (
            self.name, code, msg)
        assert isinstance(msg.body.get("reason"), str) and msg.body["reason"], msg
        return msg

    def wait_for(self, pred, timeout=3.0, keepalive=()):
        """The first message matching pred; others stay in the inbox, in order."""
        deadline = time.monotonic() + timeout
        kept = []
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Timeout("%s: no matching message within %.1fs (saw %r)" % (
                        self.name, timeout, kept[:5]))
                msg = self.try_recv(left, keepalive=keepalive)
                if msg is None:
                    continue
                if pred(msg):
                    return msg
                kept.append(msg)
        finally:
            self.inbox.extendleft(reversed(kept))

    def pump(self):
        """Read whatever is there without waiting: answer PINGs, keep the rest."""
        self._heartbeat(self.auto_pong)
        while True:
            frames = self.recv_frames(0)
            if frames is None:
                return
            msg = self._handle(frames, self.auto_pong)
            if msg is not None:
                self.inbox.append(msg)

    def drain(self, duration, keepalive=()):
        """Every message (but answered PINGs) received within duration seconds."""
        out = list(self.inbox)
        self.inbox.clear()
        deadline = time.monotonic() + duration
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return out
            msg = self.try_recv(left, keepalive=keepalive)
            if msg is not None:
                out.append(msg)

    # handshake and commands

    def attach(self, label=None, timeout=5.0, **body):
        """ATTACH -> BOOTSTRAP; fills proc, actor, host, agent."""
        if label is not None:
            body["label"] = label
        body.setdefault("pid", os.getpid())
        body.setdefault("lang", "python")
        self.send_frames(control(ATTACH, body))
        msg = self.recv(timeout)
        assert msg.cmd == BOOTSTRAP, "%s: ATTACH answered with %r" % (self.name, msg)
        self.bootstrap = msg.body
        hb = msg.body.get("heartbeat_ms")
        self.heartbeat = hb / 1000.0 if isinstance(hb, int) and hb > 0 else None
        self.proc = msg.body["proc"]
        self.host = msg.body["host"]
        self.agent = msg.body["agent"]
        self.actor = actor_addr(self.proc, "client")
        return msg.body

    def port(self, n=1, actor="client"):
        return port_addr(self.proc, n, actor)

    def send(self, dest, parts=(b"",), meta=None, src=None, inline=True,
             ttl=DEFAULT_TTL, returnable=True, cmd=SEND, flags=0, timeout=5.0):
        frames = encode_send(dest, src or self.actor, parts, meta, inline, ttl,
                             returnable, cmd, flags)
        self.send_frames(frames, timeout)
        return frames

    def agent_port(self, port=1):
        return port_addr(self.agent, port)

    def request(self, op, timeout=3.0, body=None, keepalive=(), **args):
        """A host-agent request (§8); returns the decoded answer map."""
        req = dict(body) if body is not None else {"op": op}
        if body is None:
            req.update(args)
        self._next_port += 1
        reply = self.port(self._next_port)
        self.send(self.agent_port(), [pack(req)], meta={"reply": reply})
        msg = self.wait_for(lambda m: m.cmd in (SEND, RETURN) and m.dest == reply or
                            (m.cmd == RETURN and (m.meta or {}).get("dest") == self.agent_port()),
                            timeout, keepalive)
        assert msg.cmd == SEND, "request %r came back: %r" % (op, msg)
        assert msg.src == self.agent, "reply from %r, not the agent %r" % (msg.src, self.agent)
        assert len(msg.parts) == 1 and msg.flags & F_INLINE, "reply is one inline part: %r" % msg
        answer = unpack(msg.parts[0])
        assert isinstance(answer, dict) and isinstance(answer.get("ok"), bool), answer
        return answer

    def bye(self, reason="done", timeout=3.0):
        """BYE, then wait for the broker's BYE; returns (bye body, messages before it)."""
        self.send_frames(control(BYE, {"reason": reason}))
        before = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Timeout("%s: no BYE answer within %.1fs" % (self.name, timeout))
            msg = self.try_recv(left)
            if msg is None:
                continue
            if msg.cmd == BYE:
                return msg.body, before
            before.append(msg)

    def close(self):
        if not self.sock.closed:
            self.sock.close(0)


# --- assertions shared by the tests -----------------------------------------

def check_return(msg, code, sent_frames, ep, ttl=DEFAULT_TTL):
    """Assert msg is the broker's RETURN (§5) of the SEND `sent_frames`,
    root cause `code`, bounced by the broker advertised at ep."""
    orig = Msg(sent_frames)
    assert msg.cmd == RETURN, "expected RETURN %s, got %r" % (code, msg)
    assert isinstance(msg.meta, dict), "RETURN meta does not decode: %r" % msg.head.meta_raw
    failures = msg.meta.get("failures")
    assert isinstance(failures, list) and failures, msg.meta
    root = failures[0]
    assert root.get("code") == code, "root cause %r, expected %s (%r)" % (
        root.get("code"), code, msg.meta)
    assert isinstance(root.get("reason"), str), root
    assert root.get("at") == ep, "at=%r, expected the broker endpoint %r" % (root.get("at"), ep)
    assert msg.dest == orig.src, "RETURN goes to the original src"
    assert msg.src == "service@" + ep, "RETURN src %r" % msg.src
    assert msg.ttl == ttl, "RETURN ttl %d" % msg.ttl
    assert msg.flags == orig.flags & F_INLINE, "flags %#x from %#x" % (msg.flags, orig.flags)
    assert msg.meta.get("dest") == orig.dest, msg.meta
    assert msg.meta.get("meta") == orig.meta, (msg.meta.get("meta"), orig.meta)
    assert len(msg.frames) == len(sent_frames), "payload frames returned as they were"
    assert msg.parts == orig.parts, "payload parts returned unchanged"
    return root
