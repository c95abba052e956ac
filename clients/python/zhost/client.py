"""zhost.client — attached clients and spawned procs speaking ZHP/1.

One :class:`Proc` owns one DEALER socket to one broker. It hosts
:class:`Actor` objects, each with numbered :class:`Port` mailboxes, sends
SENDs, answers the broker's PINGs, bounces SENDs for actors or ports it does
not have (RETURN NO_SUCH_ACTOR / NO_SUCH_PORT) and turns RETURNs into
:class:`Undeliverable` exceptions or callbacks.

There is no background thread by default: the library reads the socket, sends
heartbeats and runs callbacks only inside calls into it (``poll``,
``Port.recv``, ``request``, ``run``, ``send``...). A client must therefore call
into the library at least once per heartbeat (``heartbeat_ms`` from BOOTSTRAP,
1 s by default), or the broker drops it after 3 heartbeats of silence. A
program that computes for longer between calls passes ``heartbeat="thread"``:
a small thread then PINGs for it (it does not read or run callbacks).

Everything that waits takes a timeout; a proc is not thread-safe beyond that
heartbeat thread (use one proc per thread).

BATCH (docs/protocol.md §14): a proc asks for batching (ATTACH, or READY of a
spawned proc, with batch: true) unless batch=False. Once the broker agreed,
posts made while the library dispatches received messages (in a handler) or
between cork() and flush() (``with proc.batch():``) are held and leave
together as BATCH frames of at most batch_max_bytes when that step ends; a
post outside any step leaves at once. Received BATCHes are dispatched element
by element, exactly as the same messages arriving alone.
"""

import collections
import contextlib
import os
import threading
import time

import zmq

from . import protocol as P
from .protocol import AddressError, Message, parse_address

__all__ = ["ZhostError", "Undeliverable", "Timeout", "BrokerError", "AgentError",
           "Closed", "BootError", "HandshakeFailed", "Proc", "Actor", "Port", "Agent",
           "attach", "boot", "load_curve"]

ONCE_PORT_BASE = 1 << 32      # once ports are numbered from here, per proc
STEP_MAX_FRAMES = 256         # frames one dispatch step reads before its posts leave
DEFAULT_HEARTBEAT_MS = 1000
LIVENESS = 3


# --- errors -----------------------------------------------------------------

class ZhostError(Exception):
    """Base of every zhost error."""


class Undeliverable(ZhostError):
    """A message came back as a RETURN (docs/protocol.md §5).

    code, reason, at: the root cause (failures[0]); failures: the whole list;
    dest: the original dest; payload: the original parts; meta: the original
    meta; sender: the original src (one of ours); bouncer: the RETURN's src.
    """

    def __init__(self, code, reason, at, failures, dest, payload, meta=None, sender=None,
                 bouncer=None):
        self.code = code
        self.reason = reason
        self.at = at
        self.failures = failures
        self.dest = dest
        self.payload = payload
        self.meta = meta if meta is not None else {}
        self.sender = sender
        self.bouncer = bouncer
        super().__init__("%s: %s (at %s, to %s)" % (code, reason, at, dest))

    @property
    def seq(self):
        s = self.meta.get("seq")
        return s if isinstance(s, int) else None

    @classmethod
    def from_message(cls, msg):
        meta = msg.meta or {}
        failures = meta.get("failures")
        if not isinstance(failures, list):
            failures = []
        failures = [f for f in failures if isinstance(f, dict)]
        root = failures[0] if failures else {}
        orig = meta.get("meta")
        return cls(root.get("code", "UNKNOWN"), root.get("reason", ""), root.get("at", ""),
                   failures, meta.get("dest"), list(msg.parts),
                   orig if isinstance(orig, dict) else {}, msg.dest, msg.src)


class Timeout(ZhostError, TimeoutError):
    """A bounded wait ran out."""


class HandshakeFailed(ZhostError):
    """The broker's frontend refused the ZMTP handshake: a CURVE key it does
    not allow (event zmq.EVENT_HANDSHAKE_FAILED_AUTH), or CURVE on one side
    only. Raised by attach() at once, where the socket would stay silent."""

    def __init__(self, endpoint, event, value, reason):
        self.endpoint = endpoint
        self.event = event
        self.value = value
        self.reason = reason
        super().__init__("%s: %s" % (endpoint, reason))


class BrokerError(ZhostError):
    """The broker refused something with ERROR (code 400, 401, 403, 413, 503...)."""

    def __init__(self, code, reason, dest=None, seq=None):
        self.code = code
        self.reason = reason
        self.dest = dest
        self.seq = seq
        super().__init__("ERROR %s: %s%s" % (code, reason, " (dest %s)" % dest if dest else ""))


class AgentError(ZhostError):
    """The host agent answered {"ok": false, "error": {code, message}}."""

    def __init__(self, op, code, message, answer=None):
        self.op = op
        self.code = code
        self.message = message
        self.answer = answer
        super().__init__("%s: %s: %s" % (op, code, message))


class Closed(ZhostError):
    """The connection is closed: by close(), or by the broker's BYE."""

    def __init__(self, reason):
        self.reason = reason
        super().__init__("closed: %s" % reason)


class BootError(ZhostError, ValueError):
    """A spawned proc's ZHOST_* environment is missing or invalid."""

    def __init__(self, variable, problem):
        self.variable = variable
        super().__init__("%s: %s" % (variable, problem))


# --- ports and actors -------------------------------------------------------

class Port(object):
    """A numbered mailbox of an actor.

    Messages wait in the port until recv() takes them, unless a callback was
    given: then each message is passed to callback(message) as it arrives
    (inside whatever library call read it). A once port takes one message
    and closes itself.
    """

    def __init__(self, actor, number, once=False, callback=None):
        self.actor = actor
        self.number = number
        self.once = once
        self.callback = callback
        self.closed = False
        self._queue = collections.deque()

    @property
    def address(self):
        return "%s.%s:%d@%s" % (self.actor.name, self.actor.proc.id, self.number,
                                self.actor.proc.endpoint)

    def __str__(self):
        return self.address

    def __repr__(self):
        return "<Port %s%s>" % (self.address, " once" if self.once else "")

    def __len__(self):
        return len(self._queue)

    def on_message(self, callback):
        """Pass every message to callback(message) instead of queueing it.
        Usable as a decorator."""
        self.callback = callback
        while self._queue and self.callback is callback:
            callback(self._queue.popleft())
        return callback

    def recv(self, timeout=None):
        """The next message (a protocol.Message; .parts is the payload).
        timeout in seconds (None: wait as long as it takes); Timeout when
        nothing came; Closed when the broker said BYE meanwhile."""
        if self._queue:
            return self._queue.popleft()
        if self.closed and not self.once:
            raise ZhostError("%s is closed" % self.address)
        proc = self.actor.proc
        proc._pump(timeout, lambda: bool(self._queue))
        if self._queue:
            return self._queue.popleft()
        raise Timeout("nothing at %s within %ss" % (self.address, timeout))

    def close(self):
        """Stop receiving: later SENDs here are returned NO_SUCH_PORT."""
        self.closed = True
        if self.actor._ports.get(self.number) is self:
            del self.actor._ports[self.number]

    def _deliver(self, msg):
        msg.port = self
        if self.once:
            self.close()
        if self.callback is not None:
            self.callback(msg)
        else:
            self._queue.append(msg)


class Actor(object):
    """A named actor on a proc: a set of ports plus an undeliverable handler."""

    def __init__(self, proc, name):
        self.proc = proc
        self.name = name
        self._ports = {}
        self._undeliverable = None

    @property
    def address(self):
        return "%s.%s@%s" % (self.name, self.proc.id, self.proc.endpoint)

    def __str__(self):
        return self.address

    def __repr__(self):
        return "<Actor %s>" % self.address

    def port(self, number, callback=None):
        """Port `number` of this actor (made on first use)."""
        if not isinstance(number, int) or not 0 <= number <= P.UINT64_MAX:
            raise ValueError("a port number is a u64, not %r" % (number,))
        port = self._ports.get(number)
        if port is None:
            port = self._ports[number] = Port(self, number)
        if callback is not None:
            port.on_message(callback)
        return port

    def once_port(self, callback=None):
        """A fresh port that takes one message and closes (for replies)."""
        number = self.proc._next_once()
        port = self._ports[number] = Port(self, number, once=True, callback=callback)
        return port

    def on_undeliverable(self, callback):
        """Pass RETURNs of messages this actor sent to callback(Undeliverable)
        instead of raising them. Usable as a decorator; None restores raising."""
        self._undeliverable = callback
        return callback

    def send(self, dest, *parts, **kw):
        kw["src"] = self
        return self.proc.send(dest, *parts, **kw)

    def request(self, dest, *parts, **kw):
        kw["src"] = self
        return self.proc.request(dest, *parts, **kw)

    def close(self):
        """Remove the actor: later SENDs to it are returned NO_SUCH_ACTOR."""
        for port in list(self._ports.values()):
            port.close()
        if self.proc._actors.get(self.name) is self:
            del self.proc._actors[self.name]


# --- the host agent ---------------------------------------------------------

class Agent(object):
    """The host agent's control API (docs/protocol.md §8) as methods.

    Admin ops (spawn, stop, kill, stop_all, shutdown) are allowed only to a
    client attached to the control socket: zhost.attach("ipc://<runtime>/control").
    """

    def __init__(self, proc):
        self.proc = proc

    @property
    def address(self):
        return self.proc.agent_address

    def call(self, op, timeout=10.0, **args):
        """One request; returns the answer map. AgentError when ok is false."""
        req = {"op": op}
        req.update({k: v for k, v in args.items() if v is not None})
        parts = self.proc.request(P.port_address(self.address, 1), P.pack(req),
                                  timeout=timeout)
        if not parts:
            raise ZhostError("%s: empty answer" % op)
        try:
            answer = P.unpack(parts[0])
        except P.ProtocolError as e:
            raise ZhostError("%s: answer is not msgpack: %s" % (op, e))
        if not isinstance(answer, dict) or not isinstance(answer.get("ok"), bool):
            raise ZhostError("%s: answer is not {ok: bool, ...}: %r" % (op, answer))
        if not answer["ok"]:
            err = answer.get("error") or {}
            raise AgentError(op, err.get("code"), err.get("message"), answer)
        return answer

    def ping(self, timeout=10.0):
        return self.call("ping", timeout)

    def stats(self, timeout=10.0):
        return self.call("stats", timeout)

    def list(self, timeout=10.0):
        """The procs, as a list of {name, proc, status, pid, ...}."""
        return self.call("list", timeout)["procs"]

    def status(self, name, timeout=10.0):
        return self.call("status", timeout, name=name)

    def spawn(self, name, argv=None, env=None, ready_timeout_ms=None, timeout=None):
        if timeout is None:
            timeout = 35.0 if ready_timeout_ms is None else ready_timeout_ms / 1000.0 + 5.0
        return self.call("spawn", timeout, name=name, argv=list(argv) if argv else None,
                         env=env, ready_timeout_ms=ready_timeout_ms)

    def stop(self, name, timeout_ms=None, reason=None, timeout=None):
        if timeout is None:
            timeout = 30.0 if timeout_ms is None else 2 * timeout_ms / 1000.0 + 5.0
        return self.call("stop", timeout, name=name, timeout_ms=timeout_ms, reason=reason)

    def kill(self, name, timeout=10.0):
        return self.call("kill", timeout, name=name)

    def stop_all(self, timeout_ms=None, max_in_flight=None, reason=None, timeout=60.0):
        return self.call("stop_all", timeout, timeout_ms=timeout_ms,
                         max_in_flight=max_in_flight, reason=reason)

    def shutdown(self, timeout_ms=None, max_in_flight=None, timeout=60.0):
        return self.call("shutdown", timeout, timeout_ms=timeout_ms,
                         max_in_flight=max_in_flight)


# --- the proc ---------------------------------------------------------------

class _Pending(object):
    __slots__ = ("port", "error")

    def __init__(self, port):
        self.port = port
        self.error = None


class Proc(object):
    """One connection to a broker: an attached client or a spawned proc.

    Made by zhost.attach() or zhost.boot(), not directly. Attributes:
    address (proc address), id (proc id), endpoint (the broker's advertised
    endpoint, the "@..." of every local address), heartbeat_ms,
    max_msg_bytes, bootstrap (the BOOTSTRAP body, attached clients),
    agent (an Agent), actor(name) for actors, batch_max_bytes (0 unless
    the broker agreed to BATCH, §14) and batching (whether it did).
    """

    def __init__(self, connect_to, routing_id, kind, default_actor, heartbeat, context,
                 linger_ms=1000, curve=None, batch=True):
        if heartbeat not in (True, False, "thread"):
            raise ValueError("heartbeat is True, False or \"thread\"")
        self.kind = kind                      # "attached" or "spawned"
        self.connect_to = connect_to
        self.routing_id = routing_id
        self.address = None
        self.id = None
        self.endpoint = None
        self.bootstrap = None
        self.heartbeat_ms = DEFAULT_HEARTBEAT_MS
        self.liveness = LIVENESS             # heartbeats of silence before a drop
        self.max_msg_bytes = 16 << 20
        self.hwm = None
        self.incarnation = None
        self.agent_address = None
        self.agent = Agent(self)
        self.stop_request = None              # the STOP body, once one came
        self.closed = None                    # reason, once closed
        self.returned = []                    # RETURNs read during close() with no handler
        self._heartbeat_mode = heartbeat
        self.batch_wanted = bool(batch)       # ask for BATCH (ATTACH / READY)
        self.batch_max_bytes = 0              # > 0 once the broker takes BATCH
        self._inbox = collections.deque()     # read, not yet dispatched (BATCH elements)
        self._step_depth = 0                  # dispatch steps under way (nested pumps)
        self._corks = 0                       # cork() without its flush()
        self._held = []                       # elements held for the next BATCH
        self._held_bytes = P.HEADER_SIZE      # the BATCH frame they make
        self._held_timeout = 0.0
        self._actors = {}
        self._default_actor = default_actor
        self._undeliverable = None
        self._on_stop = None
        self._on_error = None
        self._pending = {}
        self._seq = 0
        self._once = ONCE_PORT_BASE
        self._lock = threading.RLock()
        self._closing = False
        self._ready_sent = False
        self._attach_pending = False
        self._bye_received = False
        self._last_attach = 0.0
        self._label = None
        self._hb_thread = None
        self._hb_stop = threading.Event()
        self._ctx = context or zmq.Context.instance()
        self.sock = self._ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, linger_ms)
        self.sock.setsockopt(zmq.ROUTING_ID, routing_id)
        self.sock.setsockopt(zmq.RCVHWM, 0)
        if curve is not None:
            server_public, public, secret = curve
            self.sock.setsockopt(zmq.CURVE_SERVERKEY, server_public)
            self.sock.setsockopt(zmq.CURVE_PUBLICKEY, public)
            self.sock.setsockopt(zmq.CURVE_SECRETKEY, secret)
        # attach() watches the handshake until BOOTSTRAP (see _handshake_failure)
        self._monitor = (self.sock.get_monitor_socket(_HANDSHAKE_EVENTS)
                         if kind == "attached" else None)
        self._curve = curve is not None
        self.sock.connect(connect_to)
        now = time.monotonic()
        self._last_sent = now
        self._last_recv = now

    # -- naming ---------------------------------------------------------------

    def _set_address(self, proc_address):
        a = parse_address(proc_address, "proc")
        self.address = str(a)
        self.id = a.proc
        self.endpoint = a.endpoint

    def __repr__(self):
        return "<zhost.Proc %s %s%s>" % (self.kind, self.address,
                                          " closed" if self.closed else "")

    @property
    def heartbeat(self):
        """The heartbeat in seconds."""
        return self.heartbeat_ms / 1000.0

    def actor(self, name):
        """The actor `name` on this proc (made on first use)."""
        a = self._actors.get(name)
        if a is None:
            P.check_id(name)
            a = self._actors[name] = Actor(self, name)
        return a

    @property
    def main(self):
        """The default actor: src of proc.send() and proc.request()."""
        return self.actor(self._default_actor)

    def actors(self):
        return dict(self._actors)

    # -- handlers -------------------------------------------------------------

    def on_undeliverable(self, callback):
        """RETURNs of messages sent by any actor without a handler of its own
        go to callback(Undeliverable) instead of being raised."""
        self._undeliverable = callback
        return callback

    def on_stop(self, callback):
        """callback(body) when the broker sends STOP (spawned procs)."""
        self._on_stop = callback
        return callback

    def on_error(self, callback):
        """callback(BrokerError) for ERRORs not tied to a pending request,
        instead of raising them."""
        self._on_error = callback
        return callback

    # -- sending --------------------------------------------------------------

    def _check_open(self):
        if self.closed is not None:
            raise Closed(self.closed)

    def _send_frames(self, frames, timeout=10.0):
        with self._lock:
            if self.sock.closed:
                raise Closed(self.closed or "socket closed")
            deadline = time.monotonic() + timeout
            while True:
                try:
                    self.sock.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
                    self._last_sent = time.monotonic()
                    return
                except zmq.Again:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise Timeout("could not hand a message to the socket within %ss"
                                      % timeout)
                    self.sock.poll(min(100, int(left * 1000) + 1), zmq.POLLOUT)

    def _src_of(self, src):
        if src is None:
            return self.main.address
        if isinstance(src, Actor):
            return src.address
        return str(src)

    def send(self, dest, *parts, meta=None, reply=None, undeliverable=True, src=None,
             headers=None, ttl=P.DEFAULT_TTL, timeout=10.0):
        """SEND parts (bytes or str) to a port address; returns the message's seq.

        The first part travels inline when it is at most 4 KiB, the others as
        frames of their own. reply (a Port or port address) goes into meta
        `reply`; undeliverable=True asks for a RETURN on failure (raised as
        Undeliverable, or passed to an on_undeliverable callback).
        """
        self._check_open()
        if self._attach_pending and self.bootstrap is not None:
            # re-attaching (the broker went silent or said 401): a src on the
            # old proc id would be refused, so wait (bounded) for BOOTSTRAP
            self._pump(self.liveness * self.heartbeat, lambda: not self._attach_pending)
        dest = str(dest)
        parse_address(dest, "port")
        m = dict(meta) if meta else {}
        if reply is not None:
            reply = str(reply)
            parse_address(reply, "port")
            m["reply"] = reply
        if headers is not None:
            m["headers"] = dict(headers)
        if "seq" not in m:
            self._seq += 1
            m["seq"] = self._seq
        frames = P.encode_send(dest, self._src_of(src), parts, m, undeliverable, ttl)
        size = sum(len(f) for f in frames)
        if size > self.max_msg_bytes:
            raise ValueError("message of %d bytes is over max_msg_bytes (%d)"
                             % (size, self.max_msg_bytes))
        self._post(frames, timeout)
        return m["seq"]

    # -- batching (§14) ----------------------------------------------------------

    @property
    def batching(self):
        """True when the broker takes BATCH from this proc (and sends them)."""
        return self.batch_max_bytes > 0

    @property
    def corked(self):
        """True while posts are held for a BATCH: inside a handler, or
        between cork() and flush() (only when batching was negotiated)."""
        return self.batching and (self._step_depth > 0 or self._corks > 0)

    def cork(self):
        """Hold posts (send, reply, request, bounces) until flush(): they then
        leave together as BATCH frames. Nests; without negotiated batching
        posts still leave at once. Returns the proc."""
        self._corks += 1
        return self

    def flush(self):
        """End the latest cork(): when no other cork() and no handler holds
        posts any more, what is held leaves now (BATCH frames of at most
        batch_max_bytes; a single held message as a lone SEND). flush()
        without a cork() sends what is held at once, even inside a handler.
        Raises Timeout, as send() does, when the socket takes nothing within
        the posts' timeout (those messages are then not sent)."""
        if self._corks > 0:
            self._corks -= 1
            if self._corks > 0 or self._step_depth > 0:
                return          # the enclosing cork() or dispatch step sends them
        self._flush_held()

    @contextlib.contextmanager
    def batch(self):
        """with proc.batch(): ... — cork() on entry, flush() on exit (also
        when the block raises)."""
        self.cork()
        try:
            yield self
        finally:
            self.flush()

    def _post(self, frames, timeout):
        """Send a message now, or hold it for a BATCH while corked. A message
        with payload frames, or too big for a BATCH, goes alone after what is
        held (so that order is kept)."""
        if self.corked and len(frames) == 1:
            need = P.BATCH_LEN_SIZE + len(frames[0])
            if P.HEADER_SIZE + need <= self.batch_max_bytes:
                with self._lock:
                    if self._held_bytes + need > self.batch_max_bytes:
                        self._flush_held()        # full: that BATCH leaves now
                    self._held.append(frames[0])
                    self._held_bytes += need
                    self._held_timeout = max(self._held_timeout, timeout)
                return
        self._flush_held()
        self._send_frames(frames, timeout)

    def _flush_held(self):
        if not self._held:
            return
        with self._lock:
            held, timeout = self._held, self._held_timeout
            self._held, self._held_bytes, self._held_timeout = [], P.HEADER_SIZE, 0.0
            if len(held) == 1 or not self.batching:
                for frame in held:          # lone (batching ended by a new BOOTSTRAP)
                    self._send_frames([frame], timeout)
            else:
                self._send_frames(P.encode_batch(held), timeout)

    def reply(self, msg, *parts, **kw):
        """Answer a received message at its meta `reply` port, from the actor
        it was sent to, with the request's `seq` in meta."""
        if msg.reply is None:
            raise ValueError("the message has no reply port")
        if msg.port is not None:
            kw.setdefault("src", msg.port.actor)
        meta = dict(kw.get("meta") or {})
        if msg.seq is not None:
            meta.setdefault("seq", msg.seq)   # an answer carries its request's seq
        kw["meta"] = meta
        return self.send(msg.reply, *parts, **kw)

    def request(self, dest, *parts, timeout=5.0, meta=None, src=None, headers=None,
                message=False):
        """Send parts to dest with a fresh once port in meta `reply` and wait
        for the answer: its parts (the Message itself with message=True).

        Raises Undeliverable when the request is returned, BrokerError when
        the broker refuses it, Timeout when nothing comes within timeout
        seconds (a late answer is then returned NO_SUCH_PORT or dropped).
        """
        actor = src if isinstance(src, Actor) else self.main if src is None else None
        if actor is None:
            raise ValueError("request src must be an Actor of this proc")
        port = actor.once_port()
        try:
            seq = self.send(dest, *parts, meta=meta, reply=port, src=actor, headers=headers)
        except BaseException:
            port.close()
            raise
        pending = self._pending[seq] = _Pending(port)
        try:
            self._pump(timeout, lambda: bool(port._queue) or pending.error is not None)
        finally:
            del self._pending[seq]
            port.close()
        if port._queue:
            msg = port._queue.popleft()
            return msg if message else msg.parts
        if pending.error is not None:
            raise pending.error
        raise Timeout("no answer from %s within %ss" % (dest, timeout))

    # -- receiving ------------------------------------------------------------

    def poll(self, timeout=0.0):
        """Read and dispatch what arrives within timeout seconds (answering
        PINGs, sending heartbeats, running callbacks). Returns the number of
        messages read."""
        return self._pump(timeout, None, count=True)

    def run(self, timeout=None):
        """Serve (callbacks) until STOP arrives (returns its body), or until
        timeout seconds passed (returns None). Raises Closed on the broker's BYE."""
        self._pump(timeout, lambda: self.stop_request is not None)
        return self.stop_request

    @property
    def stopping(self):
        return self.stop_request is not None

    def _maybe_ping(self):
        if self._heartbeat_mode and not self._closing and \
                time.monotonic() - self._last_sent >= self.heartbeat:
            try:
                self.sock.send_multipart(P.encode_control(P.PING), flags=zmq.NOBLOCK)
                self._last_sent = time.monotonic()
            except zmq.Again:
                pass

    def _maybe_reattach(self):
        # a broker silent for `liveness` heartbeats may have restarted: ask
        # again (the same routing id gets the same BOOTSTRAP from a live broker)
        if self.kind != "attached" or not self._heartbeat_mode or self._closing:
            return
        now = time.monotonic()
        limit = self.liveness * self.heartbeat
        if now - self._last_recv >= limit and now - self._last_attach >= limit:
            self._send_attach()

    def _send_attach(self):
        body = {"pid": os.getpid(), "lang": "python"}
        if self._label:
            body["label"] = self._label
        if self.batch_wanted:
            body["batch"] = True
        self._last_attach = time.monotonic()
        try:
            self.sock.send_multipart(P.encode_control(P.ATTACH, body), flags=zmq.NOBLOCK)
            self._last_sent = self._last_attach
            self._attach_pending = True
        except zmq.Again:
            pass

    def _pump(self, timeout, until, count=False):
        """Dispatch incoming messages until until() is true or timeout runs out."""
        with self._lock:
            if until is not None and until():
                return True
            self._check_open()
            deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
            n = 0
            while True:
                self._maybe_ping()
                got, more = self._step(until)
                n += got
                if until is not None and until():
                    return n if count else True
                if more:
                    continue     # the step stopped at its bound: read on first
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    return n if count else False
                wait = self.heartbeat / 2 if self._heartbeat_mode else 1.0
                if deadline is not None:
                    wait = min(wait, deadline - now)
                self._flush_held()   # nothing waits while we wait (nested pumps)
                if not self.sock.poll(max(0, int(wait * 1000))) & zmq.POLLIN:
                    self._maybe_reattach()   # only when really nothing came

    def _step(self, until):
        """One dispatch step: the messages already read (the rest of a BATCH),
        then what the socket holds, without waiting, at most STEP_MAX_FRAMES
        frames; posts made meanwhile leave together when the step ends.
        Returns (messages dispatched, whether it stopped at its bound)."""
        n = frames_read = 0
        more = False
        self._step_depth += 1
        try:
            while True:
                if not self._inbox:
                    if frames_read >= STEP_MAX_FRAMES:
                        more = True
                        break
                    try:
                        frames = self.sock.recv_multipart(flags=zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    frames_read += 1
                    self._last_recv = time.monotonic()
                    self._read(frames)
                    if not self._inbox:
                        continue
                msg = self._inbox.popleft()
                n += 1
                self._dispatch_msg(msg)
                self._maybe_ping()   # a flood in must not silence us
                if until is not None and until():
                    break
        finally:
            self._step_depth -= 1
            if self._step_depth == 0 and self._corks == 0:
                self._flush_held()
        return n, more

    def _read(self, frames):
        """Queue what one read gave for dispatch: a message, or each element
        of a BATCH in order (an element that does not decode is dropped, as a
        lone message would be; elements before a container fault stand)."""
        try:
            if len(frames) >= 1 and frames[0][3:4] == bytes((P.BATCH,)):
                if len(frames) != 1:
                    return
                for item in P.batch_elements(frames[0]):
                    if not isinstance(item, P.ProtocolError):
                        self._inbox.append(item)
                return
            self._inbox.append(Message(frames))
        except P.ProtocolError:
            return  # not ZHP/1: nothing sensible to answer

    def _dispatch(self, frames):
        """Dispatch one multipart message as read (a BATCH: its elements)."""
        self._read(frames)
        while self._inbox:
            self._dispatch_msg(self._inbox.popleft())

    def _dispatch_msg(self, msg):
        cmd = msg.cmd
        if cmd == P.SEND:
            self._on_send(msg)
        elif cmd == P.RETURN:
            self._on_return(msg)
        elif cmd == P.PING:
            try:
                self.sock.send_multipart(P.encode_control(P.PONG), flags=zmq.NOBLOCK)
                self._last_sent = time.monotonic()
            except zmq.Again:
                pass
        elif cmd == P.PONG:
            pass
        elif cmd == P.BYE:
            self._bye_received = True
            if not self._closing:
                self.closed = str(msg.body.get("reason", "bye"))
                raise Closed(self.closed)
        elif cmd == P.ERROR:
            self._on_broker_error(msg.body)
        elif cmd == P.BOOTSTRAP:
            self._on_bootstrap(msg.body)
        elif cmd == P.STOP:
            self.stop_request = dict(msg.body)
            if self._on_stop is not None:
                self._on_stop(self.stop_request)

    def _on_bootstrap(self, body):
        proc = body.get("proc")
        try:
            if not isinstance(proc, str):
                raise P.AddressError("BOOTSTRAP has no proc address")
            P.parse_address(proc, "proc")
        except P.AddressError:
            # A BOOTSTRAP we cannot use is ignored like any malformed body:
            # the attach goes on waiting (and times out, saying so).
            return
        self._attach_pending = False
        self.bootstrap = dict(body)
        self._set_address(proc)
        if isinstance(body.get("heartbeat_ms"), int) and body["heartbeat_ms"] > 0:
            self.heartbeat_ms = body["heartbeat_ms"]
        liveness = body.get("liveness")
        if isinstance(liveness, int) and not isinstance(liveness, bool) and liveness > 0:
            self.liveness = liveness
        if isinstance(body.get("max_msg_bytes"), int):
            self.max_msg_bytes = body["max_msg_bytes"]
        self.hwm = body.get("hwm")
        self.incarnation = body.get("incarnation")
        # §14: BATCH both ways only when the broker says batch: true (to an
        # ATTACH that asked); batch_max_bytes bounds the frames, never over
        # max_msg_bytes
        limit = body.get("batch_max_bytes")
        if not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0:
            limit = P.DEFAULT_BATCH_MAX_BYTES
        self.batch_max_bytes = (min(limit, self.max_msg_bytes)
                                if self.batch_wanted and body.get("batch") is True else 0)
        self.agent_address = body.get("agent") or "host_agent.service@%s" % self.endpoint

    def _on_broker_error(self, body):
        err = BrokerError(body.get("code"), body.get("reason", ""), body.get("dest"),
                          body.get("seq"))
        if err.code == 401 and self.kind == "attached" and not self._closing:
            self._send_attach()   # the broker restarted and forgot us
        if err.code == 403 and self.kind == "spawned" and err.dest is None and self._ready_sent:
            # READY refused (READY is otherwise unanswered): the broker is not
            # spawning us, e.g. it began stopping while we started. Nothing
            # will ever be routed here: stop.
            self.closed = "READY refused: %s" % err.reason
            raise Closed(self.closed)
        pending = self._pending.get(err.seq) if err.seq is not None else None
        if pending is not None:
            pending.error = err
        elif self._on_error is not None:
            self._on_error(err)
        elif not self._closing:
            raise err

    def _bounce(self, msg, code, reason):
        if not msg.returnable:
            return
        try:
            frames = P.encode_return(msg, code, reason, self.address, self.address)
            self._post(frames, timeout=1.0)
        except (AddressError, ValueError, Timeout, Closed):
            pass

    def _on_send(self, msg):
        try:
            dest = parse_address(msg.dest, "port")
        except AddressError:
            return
        actor = self._actors.get(dest.actor)
        if actor is None:
            self._bounce(msg, "NO_SUCH_ACTOR", "no actor %s on %s" % (dest.actor, self.address))
            return
        port = actor._ports.get(dest.port)
        if port is None:
            self._bounce(msg, "NO_SUCH_PORT", "no port %d on %s" % (dest.port, actor.address))
            return
        msg.proc = self
        port._deliver(msg)

    def _on_return(self, msg):
        exc = Undeliverable.from_message(msg)
        seq = exc.seq
        pending = self._pending.get(seq) if seq is not None else None
        if pending is not None and exc.meta.get("reply") == pending.port.address:
            pending.error = exc
            return
        handler = None
        try:
            a = parse_address(msg.dest)
            if a.actor is not None and a.actor in self._actors:
                handler = self._actors[a.actor]._undeliverable
        except AddressError:
            pass
        handler = handler or self._undeliverable
        if handler is not None:
            handler(exc)
        elif self._closing:
            self.returned.append(exc)
        else:
            raise exc

    # -- lifecycle ------------------------------------------------------------

    def _next_once(self):
        self._once += 1
        return self._once

    def ready(self):
        """Spawned procs: send READY once the actors are installed."""
        if self.kind != "spawned":
            raise ZhostError("READY is for spawned procs")
        self._check_open()
        body = {"proc": self.address, "pid": os.getpid()}
        if self.batching:
            body["batch"] = True     # the broker's limit came in ZHOST_BATCH_MAX_BYTES
        self._send_frames(P.encode_control(P.READY, body))
        self._ready_sent = True
        return self

    def _start_heartbeat_thread(self):
        if self._heartbeat_mode != "thread" or self._hb_thread is not None:
            return

        def beat():
            while not self._hb_stop.wait(self.heartbeat / 2):
                if not self._lock.acquire(timeout=self.heartbeat / 4):
                    continue   # someone is inside the library: it heartbeats
                try:
                    if self.closed is None and not self.sock.closed:
                        self._maybe_ping()
                finally:
                    self._lock.release()

        self._hb_thread = threading.Thread(target=beat, name="zhost-heartbeat", daemon=True)
        self._hb_thread.start()

    def close(self, reason="bye", timeout=None):
        """Leave cleanly: BYE, wait for the broker's BYE (at most timeout,
        default 3 heartbeats) so that everything sent before is routed, then
        close the socket. Messages read meanwhile are still dispatched.
        Returns True when the broker confirmed. Safe to call twice."""
        with self._lock:
            if self.sock.closed:
                return self._bye_received
            self._closing = True
            confirmed = self._bye_received
            try:
                self._corks = 0
                self._flush_held()     # what is held leaves before BYE
                if not confirmed:
                    if timeout is None:
                        timeout = self.liveness * self.heartbeat
                    self._send_frames(P.encode_control(P.BYE, {"reason": reason}),
                                      timeout=timeout)
                    try:
                        self._pump(timeout, lambda: self._bye_received)
                    except Closed:
                        pass
                    confirmed = self._bye_received
            except (Timeout, Closed, ZhostError):
                pass
            finally:
                if self.closed is None:
                    self.closed = reason
                self._hb_stop.set()
                self.sock.close(linger=0 if confirmed else None)
        if self._hb_thread is not None and self._hb_thread is not threading.current_thread():
            self._hb_thread.join(2.0)
        return confirmed

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        try:
            if not self.sock.closed:
                self.sock.close(linger=0)
        except Exception:  # noqa: BLE001
            pass


# --- entry points -----------------------------------------------------------

_HANDSHAKE_EVENTS = (zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
                     | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                     | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)


def _handshake_failure(proc):
    """Read the attach's monitor: a HandshakeFailed for a failed handshake,
    else None. The words match libzhost's and zhost-ctl's."""
    from zmq.utils.monitor import recv_monitor_message
    while proc._monitor.poll(0):
        ev = recv_monitor_message(proc._monitor)
        event, value = ev["event"], ev["value"]
        endpoint = ev.get("endpoint", b"")
        endpoint = endpoint.decode("utf-8", "replace") if isinstance(endpoint, bytes) \
            else str(endpoint)
        if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            continue
        if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            why = ("refused this client's CURVE key (ZAP status %d): is its public "
                   "certificate in the broker's --curve-allow or --curve-admin directory?"
                   % value)
        elif value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
            why = ("security mechanism mismatch: " +
                   ("this client offers CURVE and the broker does not run it" if proc._curve
                    else "the broker requires CURVE (give attach() curve=...)"))
        elif event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
            why = "ZMTP handshake failed (protocol error 0x%08x)" % value
        else:
            why = "ZMTP handshake failed " + (
                "(is the server key the broker's, and does it run CURVE?)" if proc._curve
                else "(does the broker require CURVE?)")
        return HandshakeFailed(endpoint, event, value, why)
    return None


def _stop_monitor(proc):
    if proc._monitor is not None:
        try:
            proc.sock.disable_monitor()
        except zmq.ZMQError:
            pass
        proc._monitor.close(linger=0)
        proc._monitor = None


def load_curve(server_cert, client_cert):
    """The curve= tuple of attach() from zcert files as `zhost-ctl keygen`
    writes them: the broker's certificate (NAME.key; public is enough) and
    this client's (NAME.key with NAME.key_secret beside it, either name).
    ValueError names a file that is not a certificate or lacks its secret."""
    import zmq.auth

    def load(path, need_secret):
        # a NAME_secret file holds both keys, NAME the public one only
        path = str(path)
        base = path[:-len("_secret")] if path.endswith("_secret") else path
        name = base + "_secret" if need_secret else path
        if not os.path.exists(name):
            if need_secret and os.path.exists(path):
                raise ValueError("%s: no secret key (is %s_secret beside it?)" % (path, base))
            raise ValueError("%s: no such certificate file" % path)
        try:
            public, secret = zmq.auth.load_certificate(name)
        except (ValueError, OSError) as e:
            raise ValueError("%s: not a zcert certificate (%s)" % (path, e))
        if need_secret and not secret:
            raise ValueError("%s: no secret key in %s" % (path, name))
        return public, secret

    server_public, _ = load(server_cert, False)
    public, secret = load(client_cert, True)
    return server_public, public, secret


def _routing_id():
    raw = bytearray(os.urandom(16))
    while raw[0] == 0:
        raw[0] = os.urandom(1)[0]
    return bytes(raw)


def attach(endpoint, label=None, heartbeat=True, timeout=5.0, actor="client", context=None,
           curve=None, batch=True):
    """Attach to a broker's frontend (or its control socket, for admin ops).

    Sends ATTACH and waits for BOOTSTRAP (at most timeout seconds). label
    names the proc `label<uid58>`; heartbeat is True (PINGs sent from within
    library calls), "thread" (from a background thread) or False. curve is
    (server public key, client public key, client secret key) when the
    frontend requires CURVE (load_curve() reads it from certificate files).
    Returns the Proc; its default actor is `actor`. A refused handshake (a
    key the broker does not allow, CURVE on one side only) raises
    HandshakeFailed at once; no answer at all raises Timeout. batch=True
    asks for BATCH (§14; proc.batching says whether the broker agreed);
    batch=False never sends BATCH and asks for none.
    """
    P.check_endpoint(endpoint)
    if label is not None:
        P.check_label(label)
    proc = Proc(endpoint, _routing_id(), "attached", actor, heartbeat, context, curve=curve,
                batch=batch)
    proc._label = label
    try:
        proc._send_attach()
        deadline = time.monotonic() + timeout
        poller = zmq.Poller()
        poller.register(proc.sock, zmq.POLLIN)
        if proc._monitor is not None:
            poller.register(proc._monitor, zmq.POLLIN)
        while proc.bootstrap is None:
            left = deadline - time.monotonic()
            ready = dict(poller.poll(int(left * 1000) + 1)) if left > 0 else {}
            if proc._monitor is not None and proc._monitor in ready:
                failed = _handshake_failure(proc)
                if failed is not None:
                    raise failed
            if proc.sock not in ready:
                if time.monotonic() >= deadline:
                    raise Timeout("no BOOTSTRAP from %s within %ss" % (endpoint, timeout))
                continue
            try:
                msg = Message(proc.sock.recv_multipart())
            except P.ProtocolError:
                continue   # not ZHP/1 (e.g. a body that does not decode): dropped
            proc._last_recv = time.monotonic()
            if msg.cmd == P.BOOTSTRAP:
                proc._on_bootstrap(msg.body)
            elif msg.cmd == P.ERROR:
                raise BrokerError(msg.body.get("code"), msg.body.get("reason", ""))
            elif msg.cmd == P.BYE:
                raise Closed(msg.body.get("reason", "bye"))
            elif msg.cmd == P.PING:
                proc._send_frames(P.encode_control(P.PONG))
    except BaseException:
        _stop_monitor(proc)
        proc.sock.close(linger=0)
        raise
    _stop_monitor(proc)
    proc._start_heartbeat_thread()
    return proc


def boot(actor="main", heartbeat=True, context=None, environ=None, batch=True):
    """Connect a spawned proc to its broker from ZHOST_PROC, ZHOST_BACKEND,
    ZHOST_HOST, ZHOST_HEARTBEAT_MS and ZHOST_BATCH_MAX_BYTES. Install actors,
    then call proc.ready(). BootError names a missing or invalid variable.
    With ZHOST_BATCH_MAX_BYTES set and not 0 (and batch=True), READY says
    batch: true and the proc sends and takes BATCH frames up to that size."""
    env = os.environ if environ is None else environ

    def need(name):
        value = env.get(name)
        if not value:
            raise BootError(name, "not set (is this process spawned by zhost-broker?)")
        return value

    proc_text = need("ZHOST_PROC")
    try:
        pa = parse_address(proc_text, "proc")
    except AddressError as e:
        raise BootError("ZHOST_PROC", "%r is not a proc address: %s" % (proc_text, e))
    backend = need("ZHOST_BACKEND")
    try:
        P.check_endpoint(backend)
    except AddressError as e:
        raise BootError("ZHOST_BACKEND", str(e))
    host = need("ZHOST_HOST")
    try:
        P.check_endpoint(host)
    except AddressError as e:
        raise BootError("ZHOST_HOST", str(e))
    hb_text = env.get("ZHOST_HEARTBEAT_MS")
    heartbeat_ms = DEFAULT_HEARTBEAT_MS
    if hb_text is not None:
        if not hb_text.isdigit() or int(hb_text) <= 0:
            raise BootError("ZHOST_HEARTBEAT_MS", "%r is not a positive integer" % hb_text)
        heartbeat_ms = int(hb_text)
    bm_text = env.get("ZHOST_BATCH_MAX_BYTES")
    batch_max_bytes = 0                        # absent or 0: the broker takes no BATCH
    if bm_text:
        if not bm_text.isdigit() or not bm_text.isascii():
            raise BootError("ZHOST_BATCH_MAX_BYTES", "%r is not a non-negative integer"
                            % bm_text)
        batch_max_bytes = int(bm_text)
    proc = Proc(backend, pa.proc.encode("utf-8"), "spawned", actor, heartbeat, context,
                batch=batch)
    if batch:
        proc.batch_max_bytes = batch_max_bytes
    proc._set_address(str(pa))
    if pa.endpoint != host:
        # addresses use the frontend endpoint (ZHOST_HOST)
        proc._set_address("%s@%s" % (pa.proc, host))
    proc.heartbeat_ms = heartbeat_ms
    proc.agent_address = "host_agent.service@%s" % host
    proc._start_heartbeat_thread()
    return proc
